# SPDX-License-Identifier: MIT
#
# The web chat's served files, built from adapters/web/static and the DSFR (@gouvfr/dsfr in
# node_modules) by cmake/FbWebAssetsBuild.cmake into ${FB_WEB_OUT}:
#
#   static/          the pages (index.html, donnees-personnelles.html), linking the hashed names
#                    below; chat.css, chat.js, stats.css under their plain names too
#   static/assets/   every file a page loads, named STEM.HASH.EXT (16 hex digits of its SHA-256):
#                    the DSFR subset (dsfr.min.HASH.css), the page's script and style sheet, the
#                    Marianne fonts (WOFF2), the icons and favicons the style sheets and pages name.
#                    Served at /assets/ with `Cache-Control: public, max-age=31536000, immutable`
#   dsfr/            the same DSFR subset as dsfr.min.css, favicon/, LICENSE.md: for the pages the
#                    daemon writes itself (/stats), served at /dsfr/ as before
#
# Every text file has FILE.gz (gzip -9) and FILE.br (Brotli, quality 11) beside it, made here
# once so that the daemon only picks one (io/http_encoding.h). Brotli comes from the `brotli`
# command (Debian package brotli, installed by deploy/install-deps.sh), else from fb_brotli
# (tools/fb_brotli.c) built against libbrotlienc, else there are only .gz files.
#
# The DSFR subset is the core (typography, grid, spacing, the Marianne faces) and the components
# below; a page that links a DSFR file the subset lacks fails the build, naming it.
#
# Include it from the top-level CMakeLists.txt after the frichebot target, before FbPaths.
set(FB_DSFR_DIST ${PROJECT_SOURCE_DIR}/node_modules/@gouvfr/dsfr/dist)
set(FB_WEB_SRC ${PROJECT_SOURCE_DIR}/adapters/web/static)
set(FB_WEB_OUT ${PROJECT_BINARY_DIR}/web)
# The DSFR components the pages use (adapters/web/static/*.html, chat.js, daemon/features/*.c):
# header, footer, skiplinks and logo (the bloc-marque), buttons, links, the text field, alerts,
# and the /stats page's tables. Add one here when a page starts using it.
set(FB_DSFR_COMPONENTS button link form input alert header footer logo skiplink table)
# The fr-icon-* classes the pages use (the components' own icons come with them).
set(FB_DSFR_ICONS arrow-left-line)

if(NOT EXISTS ${FB_DSFR_DIST}/core/core.main.min.css)
  message(FATAL_ERROR "The DSFR (@gouvfr/dsfr) is not installed in ${FB_DSFR_DIST}: the web "
                      "chat would have no style. Run deploy/install-deps.sh, then configure again.")
endif()
find_program(FB_GZIP_EXE gzip REQUIRED)
find_program(FB_BROTLI_EXE brotli)
if(FB_BROTLI_EXE)
  set(FB_BROTLI ${FB_BROTLI_EXE})
  set(FB_BROTLI_KIND cli)
  message(STATUS "Web assets: gzip and Brotli (${FB_BROTLI_EXE})")
else()
  pkg_check_modules(BROTLIENC IMPORTED_TARGET libbrotlienc)
  if(BROTLIENC_FOUND)
    add_executable(fb_brotli ${PROJECT_SOURCE_DIR}/tools/fb_brotli.c)
    target_link_libraries(fb_brotli PRIVATE PkgConfig::BROTLIENC)
    fb_target_warnings(fb_brotli)
    set(FB_BROTLI $<TARGET_FILE:fb_brotli>)
    set(FB_BROTLI_KIND tool)
    message(STATUS "Web assets: gzip and Brotli (no brotli command: tools/fb_brotli.c with "
                   "libbrotlienc ${BROTLIENC_VERSION})")
  else()
    set(FB_BROTLI "")
    set(FB_BROTLI_KIND none)
    message(WARNING "Neither the brotli command nor libbrotlienc found: the web chat's files are "
                    "precompressed with gzip only (browsers that prefer Brotli get gzip). Install "
                    "the Debian package brotli (deploy/install-deps.sh does) and configure again.")
  endif()
endif()

file(GLOB FB_WEB_SRC_FILES CONFIGURE_DEPENDS ${FB_WEB_SRC}/*)
set(FB_WEB_DSFR_INPUTS ${FB_DSFR_DIST}/core/core.main.min.css
                       ${FB_DSFR_DIST}/utility/icons/icons.main.min.css
                       ${FB_DSFR_DIST}/../package.json)
foreach(c ${FB_DSFR_COMPONENTS})
  list(APPEND FB_WEB_DSFR_INPUTS ${FB_DSFR_DIST}/component/${c}/${c}.main.min.css)
endforeach()
string(REPLACE ";" "," _fb_components "${FB_DSFR_COMPONENTS}")
string(REPLACE ";" "," _fb_icons "${FB_DSFR_ICONS}")
set(FB_WEB_STAMP ${FB_WEB_OUT}/.stamp)
add_custom_command(
  OUTPUT ${FB_WEB_STAMP}
  COMMAND ${CMAKE_COMMAND} -DSRC=${FB_WEB_SRC} -DDSFR=${FB_DSFR_DIST} -DOUT=${FB_WEB_OUT}
          -DCOMPONENTS=${_fb_components} -DICONS=${_fb_icons} -DGZIP=${FB_GZIP_EXE}
          -DBROTLI=${FB_BROTLI} -DBROTLI_KIND=${FB_BROTLI_KIND} -DSTAMP=${FB_WEB_STAMP}
          -P ${PROJECT_SOURCE_DIR}/cmake/FbWebAssetsBuild.cmake
  DEPENDS ${FB_WEB_SRC_FILES} ${FB_WEB_DSFR_INPUTS} ${PROJECT_SOURCE_DIR}/cmake/FbWebAssetsBuild.cmake
          $<$<STREQUAL:${FB_BROTLI_KIND},tool>:fb_brotli>
  COMMENT "Building the web chat's files (DSFR subset, hashed names, gzip and Brotli)"
  VERBATIM)
add_custom_target(fb_web_assets ALL DEPENDS ${FB_WEB_STAMP})
# Building the daemon builds the files it serves (make run, the tests).
add_dependencies(frichebot fb_web_assets)
