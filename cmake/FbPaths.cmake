# SPDX-License-Identifier: MIT
#
# Where the daemon's data lives (daemon/io/paths.c, docs/configuration.md "Paths"):
#
#  - installed: `cmake --install` (and `make install`) puts the binary in PREFIX/bin and its data
#    in PREFIX/share/frichebot: dialogs/ (the dialogs and their catalogues), communes.fbgeo (the
#    communes index built by cmake/FbGeo.cmake), web/ (the web chat's pages and their hashed,
#    precompressed files) and dsfr/ (the DSFR subset), both built by cmake/FbWebAssets.cmake, and the commented sample configuration in
#    PREFIX/etc/frichebot/frichebot.yaml.sample. The binary finds that directory from its own
#    location through FB_DATA_RELDIR, the path from the bindir to the data directory ("../share/
#    frichebot"), so the install is relocatable (`--prefix` at install time, DESTDIR staging);
#  - build tree: a binary with no such directory beside it (`make run`, the tests) uses the
#    source and build trees' paths compiled in here (FB_DIALOG_DEFAULT_PATH, FB_WEB_STATIC_DIR,
#    FB_DSFR_DIR: the build tree's web/static and web/dsfr, and FbGeo.cmake's FB_GEO_DEFAULT_PATH).
#
# Include it from the top-level CMakeLists.txt after fb_core, frichebot, FbGeo and FbWebAssets.
include(GNUInstallDirs)

set(FB_DIALOG_DEFAULT_PATH ${PROJECT_SOURCE_DIR}/dialogs/friche.yaml)
set(FB_WEB_STATIC_DIR ${FB_WEB_OUT}/static)
set(FB_DSFR_DIR ${FB_WEB_OUT}/dsfr)

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
install(FILES ${PROJECT_SOURCE_DIR}/deploy/frichebot.yaml.sample DESTINATION ${FB_INSTALL_CONFDIR})
# The web chat's files as cmake/FbWebAssets.cmake builds them: only what the pages use of the
# DSFR (about 0.9 MB of the package's 88 MB), with their .gz and .br. The copies keep their
# modification times, so each .gz and .br stays as new as its file (the server ignores older ones).
# tests/integration/test_install.py checks that every file the installed pages and style sheets
# refer to is installed.
install(DIRECTORY ${FB_WEB_STATIC_DIR}/ DESTINATION ${FB_INSTALL_DATADIR}/web)
install(DIRECTORY ${FB_DSFR_DIR}/ DESTINATION ${FB_INSTALL_DATADIR}/dsfr)
install(FILES ${PROJECT_SOURCE_DIR}/LICENSE DESTINATION ${CMAKE_INSTALL_DOCDIR})
