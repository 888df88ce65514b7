# SPDX-License-Identifier: MIT
#
# Where the daemon's data lives (daemon/io/paths.c, docs/configuration.md "Paths"):
#
#  - installed: `cmake --install` (and `make install`) puts the binary in PREFIX/bin and its data
#    in PREFIX/share/frichebot: dialogs/ (the dialogs and their catalogues), communes.fbgeo (the
#    communes index built by cmake/FbGeo.cmake), web/ (the web chat's page) and dsfr/ (the DSFR
#    files that page uses), and the commented sample configuration in
#    PREFIX/etc/frichebot/frichebot.yaml.sample. The binary finds that directory from its own
#    location through FB_DATA_RELDIR, the path from the bindir to the data directory ("../share/
#    frichebot"), so the install is relocatable (`--prefix` at install time, DESTDIR staging);
#  - build tree: a binary with no such directory beside it (`make run`, the tests) uses the
#    source and build trees' paths compiled in here (FB_DIALOG_DEFAULT_PATH, FB_WEB_STATIC_DIR,
#    FB_DSFR_DIR, and FbGeo.cmake's FB_GEO_DEFAULT_PATH).
#
# Include it from the top-level CMakeLists.txt after fb_core, frichebot and FbGeo: include(FbPaths)
include(GNUInstallDirs)

set(FB_DIALOG_DEFAULT_PATH ${PROJECT_SOURCE_DIR}/dialogs/friche.yaml)
set(FB_WEB_STATIC_DIR ${PROJECT_SOURCE_DIR}/adapters/web/static)
set(FB_DSFR_DIR ${PROJECT_SOURCE_DIR}/node_modules/@gouvfr/dsfr/dist)

# The data directory, relative to the prefix (or absolute, when CMAKE_INSTALL_DATADIR is).
set(FB_INSTALL_DATADIR ${CMAKE_INSTALL_DATADIR}/frichebot)
set(FB_INSTALL_CONFDIR ${CMAKE_INSTALL_SYSCONFDIR}/frichebot)
file(RELATIVE_PATH FB_DATA_RELDIR ${CMAKE_INSTALL_FULL_BINDIR}
     ${CMAKE_INSTALL_FULL_DATADIR}/frichebot)

target_compile_definitions(fb_core PRIVATE FB_DIALOG_DEFAULT_PATH="${FB_DIALOG_DEFAULT_PATH}"
                                           FB_WEB_STATIC_DIR="${FB_WEB_STATIC_DIR}"
                                           FB_DSFR_DIR="${FB_DSFR_DIR}"
                                           FB_DATA_RELDIR="${FB_DATA_RELDIR}")

install(TARGETS frichebot RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/dialogs/ DESTINATION ${FB_INSTALL_DATADIR}/dialogs)
install(FILES ${FB_GEO_DEFAULT_PATH} DESTINATION ${FB_INSTALL_DATADIR})
install(DIRECTORY ${FB_WEB_STATIC_DIR}/ DESTINATION ${FB_INSTALL_DATADIR}/web)
install(FILES ${PROJECT_SOURCE_DIR}/deploy/frichebot.yaml.sample DESTINATION ${FB_INSTALL_CONFDIR})

# The DSFR: only what the daemon's pages use (adapters/web/static/*.html and daemon/features/stats.c link
# dsfr.min.css, dsfr.module.min.js, utility/icons/icons.min.css and favicon/; the two style sheets
# load fonts/ and icons/), about 7 MB of the package's 88 MB. tests/integration/test_install.py
# checks that every file the installed pages and style sheets refer to is installed.
if(NOT EXISTS ${FB_DSFR_DIR}/dsfr.min.css)
  message(WARNING "The DSFR (@gouvfr/dsfr) is not installed in ${FB_DSFR_DIR}: the web chat "
                  "has no style and `cmake --install` fails. Run deploy/install-deps.sh.")
endif()
install(FILES ${FB_DSFR_DIR}/dsfr.min.css ${FB_DSFR_DIR}/dsfr.module.min.js
        DESTINATION ${FB_INSTALL_DATADIR}/dsfr)
install(FILES ${FB_DSFR_DIR}/utility/icons/icons.min.css
        DESTINATION ${FB_INSTALL_DATADIR}/dsfr/utility/icons)
install(DIRECTORY ${FB_DSFR_DIR}/favicon ${FB_DSFR_DIR}/fonts ${FB_DSFR_DIR}/icons
        DESTINATION ${FB_INSTALL_DATADIR}/dsfr)
install(FILES ${FB_DSFR_DIR}/../LICENSE.md DESTINATION ${FB_INSTALL_DATADIR}/dsfr)
install(FILES ${PROJECT_SOURCE_DIR}/LICENSE DESTINATION ${CMAKE_INSTALL_DOCDIR})
