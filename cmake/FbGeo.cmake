# SPDX-License-Identifier: MIT
#
# The communes index (daemon/engine/geo.c, docs/internals/GEO.md): converts the JSON of the npm package
# @etalab/decoupage-administratif (pinned in package.json / package-lock.json, installed into
# node_modules/ by deploy/install-deps.sh) into the compact file ${FB_GEO_DEFAULT_PATH} at build
# time, and compiles that path into fb_core as FB_GEO_DEFAULT_PATH (fb_data_path(FB_DATA_GEO), io/paths.h).
#
# Include it from the top-level CMakeLists.txt after fb_core is defined: include(FbGeo)
set(FB_GEO_PACKAGE @etalab/decoupage-administratif)
set(FB_GEO_NPM_DIR ${PROJECT_SOURCE_DIR}/node_modules/${FB_GEO_PACKAGE})
set(FB_GEO_LOCK ${PROJECT_SOURCE_DIR}/package-lock.json)
set(FB_GEO_DEFAULT_PATH ${PROJECT_BINARY_DIR}/data/communes.fbgeo)

if(NOT EXISTS ${FB_GEO_NPM_DIR}/package.json OR NOT EXISTS ${FB_GEO_NPM_DIR}/data/communes.json)
  message(FATAL_ERROR
    "The communes data (${FB_GEO_PACKAGE}) is not installed in ${PROJECT_SOURCE_DIR}/node_modules.\n"
    "Run deploy/install-deps.sh (it runs `npm ci --ignore-scripts` in ${PROJECT_SOURCE_DIR}), "
    "then configure again.")
endif()

# The label stored in the index: the package and the exact version installed (package-lock.json
# pins it; node_modules must match it, which `npm ci` guarantees).
file(READ ${FB_GEO_NPM_DIR}/package.json FB_GEO_PACKAGE_JSON)
string(REGEX MATCH "\"version\"[ \t\r\n]*:[ \t\r\n]*\"([^\"]+)\"" _fb_geo_match "${FB_GEO_PACKAGE_JSON}")
set(FB_GEO_VERSION ${CMAKE_MATCH_1})
if(NOT FB_GEO_VERSION)
  message(FATAL_ERROR "Cannot read the version of ${FB_GEO_NPM_DIR}/package.json")
endif()
message(STATUS "Communes index from ${FB_GEO_PACKAGE} ${FB_GEO_VERSION}")
# Re-run configure when npm replaces the package (a new version changes the label).
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
             ${FB_GEO_NPM_DIR}/package.json ${FB_GEO_LOCK})

# The converter: a small C program that shares fb_text_fold() with the daemon. It compiles the
# two sources it needs rather than linking fb_core, which depends on its output.
add_executable(fbgeo_convert ${PROJECT_SOURCE_DIR}/tools/fbgeo_convert.c
                             ${PROJECT_SOURCE_DIR}/daemon/engine/text.c
                             ${PROJECT_SOURCE_DIR}/daemon/common/alloc.c)
target_include_directories(fbgeo_convert PRIVATE ${PROJECT_SOURCE_DIR}/include
                                                 ${PROJECT_SOURCE_DIR}/daemon)
target_compile_definitions(fbgeo_convert PRIVATE _POSIX_C_SOURCE=200809L _DEFAULT_SOURCE)
target_link_libraries(fbgeo_convert PRIVATE PkgConfig::JANSSON)
fb_target_warnings(fbgeo_convert)
if(NOT FB_FUZZ)
  fb_target_sanitizers(fbgeo_convert)
endif()

set(FB_GEO_INPUTS ${FB_GEO_NPM_DIR}/data/communes.json ${FB_GEO_NPM_DIR}/data/departements.json
                  ${FB_GEO_NPM_DIR}/data/regions.json ${FB_GEO_NPM_DIR}/data/epci.json)
add_custom_command(
  OUTPUT ${FB_GEO_DEFAULT_PATH}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${PROJECT_BINARY_DIR}/data
  COMMAND fbgeo_convert ${FB_GEO_NPM_DIR}/data ${FB_GEO_DEFAULT_PATH}
          "${FB_GEO_PACKAGE} ${FB_GEO_VERSION}"
  DEPENDS fbgeo_convert ${FB_GEO_LOCK} ${FB_GEO_INPUTS}
  COMMENT "Converting ${FB_GEO_PACKAGE} ${FB_GEO_VERSION} to the communes index"
  VERBATIM)
add_custom_target(fb_geo_data ALL DEPENDS ${FB_GEO_DEFAULT_PATH})

add_dependencies(fb_core fb_geo_data)
target_compile_definitions(fb_core PRIVATE FB_GEO_DEFAULT_PATH="${FB_GEO_DEFAULT_PATH}")
