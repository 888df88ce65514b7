# SPDX-License-Identifier: MIT
#
# Built-in default paths of the configuration (daemon/config.c): the dialog served, the web chat's
# static files and the DSFR files, all in the source tree, so that `make run` works from a clone
# with the embedded default configuration. The communes index's default is FB_GEO_DEFAULT_PATH
# (cmake/FbGeo.cmake). An installed daemon sets dialogs.path, web.static_dir and web.dsfr_dir.
#
# Include it from the top-level CMakeLists.txt after fb_core is defined: include(FbPaths)
set(FB_DIALOG_DEFAULT_PATH ${PROJECT_SOURCE_DIR}/dialogs/exemple.yaml)
set(FB_WEB_STATIC_DIR ${PROJECT_SOURCE_DIR}/adapters/web/static)
set(FB_DSFR_DIR ${PROJECT_SOURCE_DIR}/node_modules/@gouvfr/dsfr/dist)
target_compile_definitions(fb_core PRIVATE FB_DIALOG_DEFAULT_PATH="${FB_DIALOG_DEFAULT_PATH}"
                                           FB_WEB_STATIC_DIR="${FB_WEB_STATIC_DIR}"
                                           FB_DSFR_DIR="${FB_DSFR_DIR}")
