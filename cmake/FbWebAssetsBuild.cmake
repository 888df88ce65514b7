# SPDX-License-Identifier: MIT
#
# Builds the web chat's served files (run with cmake -P by cmake/FbWebAssets.cmake, which
# explains the layout): OUT/static/ (the pages, their own files, and assets/ with every file a
# page loads under a content-hashed name), OUT/dsfr/ (the DSFR subset under its usual names, for
# the pages the daemon writes itself), each text file with its .gz and .br beside it.
#
# Variables: SRC (adapters/web/static), DSFR (the package's dist/), OUT, COMPONENTS and ICONS
# (lists separated by ","), GZIP (the gzip program), BROTLI (a program, or empty: no .br) and
# BROTLI_KIND ("cli": the brotli command; "tool": fb_brotli IN OUT), STAMP (touched at the end).
cmake_minimum_required(VERSION 3.16)

foreach(v SRC DSFR OUT COMPONENTS GZIP STAMP)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "FbWebAssetsBuild.cmake: ${v} is not set")
  endif()
endforeach()
string(REPLACE "," ";" COMPONENTS "${COMPONENTS}")
string(REPLACE "," ";" ICONS "${ICONS}")

# Everything is made anew: a hashed name left from an earlier build would be served forever.
file(REMOVE_RECURSE ${OUT}/static ${OUT}/dsfr ${OUT}/tmp)
file(MAKE_DIRECTORY ${OUT}/static/assets ${OUT}/dsfr/favicon)

# fb_asset(FILE VAR): FILE copied to assets/ as STEM.HASH.EXT (16 hex digits of its SHA-256);
# VAR is set to its URL.
function(fb_asset file var)
  file(SHA256 ${file} hash)
  string(SUBSTRING ${hash} 0 16 hash)
  get_filename_component(stem ${file} NAME_WLE)
  get_filename_component(ext ${file} LAST_EXT)
  configure_file(${file} ${OUT}/static/assets/${stem}.${hash}${ext} COPYONLY)
  set(${var} /assets/${stem}.${hash}${ext} PARENT_SCOPE)
endfunction()

# fb_css_urls(CSS DIR VAR): the style sheet text CSS, whose relative url()s are relative to
# DIR, with each url() naming the hashed copy of its file in assets/ (an absolute URL, so the
# same text works under /assets/ and /dsfr/). The DSFR only refers to its files as ../x.
function(fb_css_urls css dir var)
  string(REGEX MATCHALL "url\\(['\"]?\\.\\.?/[^)'\"]*['\"]?\\)" urls "${css}")
  if(urls)
    list(REMOVE_DUPLICATES urls)
  endif()
  foreach(u IN LISTS urls)
    string(REGEX REPLACE "^url\\(['\"]?([^)'\"?#]*)[^)'\"]*['\"]?\\)$" "\\1" ref "${u}")
    get_filename_component(abs "${dir}/${ref}" ABSOLUTE)
    if(NOT EXISTS ${abs})
      message(FATAL_ERROR "${dir}: a style sheet refers to ${ref}, which does not exist")
    endif()
    fb_asset(${abs} url)
    string(REPLACE "${u}" "url(${url})" css "${css}")
  endforeach()
  set(${var} "${css}" PARENT_SCOPE)
endfunction()

# fb_css_file(FILE VAR): FILE's text, less the legal banner that every DSFR file repeats (kept
# once, at the top) and with its url()s rewritten.
function(fb_css_file file var)
  file(READ ${file} css)
  string(REGEX REPLACE "^/\\*![^*]*\\*+([^/*][^*]*\\*+)*/" "" css "${css}")
  get_filename_component(dir ${file} DIRECTORY)
  fb_css_urls("${css}" ${dir} css)
  set(${var} "${css}" PARENT_SCOPE)
endfunction()

# ---- The DSFR subset: core + the components and icons the pages use (main and print rules;
# the legacy files serve browsers without CSS variables, which the DSFR no longer supports).
file(READ ${DSFR}/core/core.main.min.css core)
string(REGEX MATCH "^/\\*![^*]*\\*+([^/*][^*]*\\*+)*/" banner "${core}")
# The fonts: Marianne in WOFF2 only (every browser that runs the page reads it; the WOFF copies
# are a fallback for older ones), without Spectral, the DSFR's serif for `--alt` texts, which no
# page uses (a browser downloads only the faces a page renders, but each is shipped and installed).
string(REGEX REPLACE "@font-face{[^}]*font-family:Spectral[^}]*}" "" core "${core}")
string(REGEX REPLACE ",url\\(\\.\\./fonts/[A-Za-z_-]+\\.woff\\) format\\(\"woff\"\\)" "" core "${core}")
if(core MATCHES "\\.woff\\)")
  message(FATAL_ERROR "core.main.min.css: a WOFF font is still referred to; update FbWebAssetsBuild.cmake")
endif()
fb_css_urls("${core}" ${DSFR}/core core)
set(dsfr_css "${core}")
fb_css_file(${DSFR}/core/core.print.min.css part)
string(APPEND dsfr_css "${part}")
foreach(c IN LISTS COMPONENTS)
  set(base ${DSFR}/component/${c}/${c})
  if(NOT EXISTS ${base}.main.min.css)
    message(FATAL_ERROR "DSFR component '${c}' not found (${base}.main.min.css)")
  endif()
  fb_css_file(${base}.main.min.css part)
  string(APPEND dsfr_css "${part}")
  if(EXISTS ${base}.print.min.css)
    fb_css_file(${base}.print.min.css part)
    string(APPEND dsfr_css "${part}")
  endif()
endforeach()
if(ICONS)
  file(READ ${DSFR}/utility/icons/icons.main.min.css icons)
  foreach(i IN LISTS ICONS)
    string(REGEX MATCH "\\.fr-icon-${i}:after,\\.fr-icon-${i}:before{[^}]*}" rule "${icons}")
    if(NOT rule)
      message(FATAL_ERROR "DSFR icon 'fr-icon-${i}' not found in utility/icons/icons.main.min.css")
    endif()
    fb_css_urls("${rule}" ${DSFR}/utility/icons rule)
    string(APPEND dsfr_css "${rule}")
  endforeach()
endif()
set(dsfr_css "${banner}\n${dsfr_css}")
file(WRITE ${OUT}/dsfr/dsfr.min.css "${dsfr_css}")
fb_asset(${OUT}/dsfr/dsfr.min.css dsfr_url)
configure_file(${DSFR}/../LICENSE.md ${OUT}/dsfr/LICENSE.md COPYONLY)

# The URLs the pages are written with, and what each becomes.
set(map_from /dsfr/dsfr.min.css)
set(map_to ${dsfr_url})
foreach(f favicon.svg apple-touch-icon.png)
  configure_file(${DSFR}/favicon/${f} ${OUT}/dsfr/favicon/${f} COPYONLY)
  fb_asset(${DSFR}/favicon/${f} url)
  list(APPEND map_from /dsfr/favicon/${f})
  list(APPEND map_to ${url})
endforeach()

# ---- The pages' own files: hashed copies, and the plain name too (the /stats page, which the
# daemon writes, links /static/stats.css).
file(GLOB own RELATIVE ${SRC} ${SRC}/*)
list(SORT own)
set(pages "")
foreach(f IN LISTS own)
  if(f MATCHES "\\.html$")
    list(APPEND pages ${f})
    continue()
  endif()
  configure_file(${SRC}/${f} ${OUT}/static/${f} COPYONLY)
  if(f MATCHES "\\.css$")
    # The page's style sheet may name DSFR files too (an icon): the same hashed copies.
    file(READ ${SRC}/${f} css)
    fb_css_urls("${css}" ${SRC} css)
    file(WRITE ${OUT}/tmp/${f} "${css}")
    fb_asset(${OUT}/tmp/${f} url)
    file(REMOVE_RECURSE ${OUT}/tmp)
  else()
    fb_asset(${SRC}/${f} url)
  endif()
  list(APPEND map_from /static/${f})
  list(APPEND map_to ${url})
endforeach()

# ---- The pages: every link to a file above names its hashed copy. A link to a DSFR file the
# subset does not have fails the build (the page would lose its style).
list(LENGTH map_from nmap)
math(EXPR last "${nmap} - 1")
foreach(p IN LISTS pages)
  file(READ ${SRC}/${p} html)
  foreach(i RANGE ${last})
    list(GET map_from ${i} from)
    list(GET map_to ${i} to)
    string(REPLACE "\"${from}\"" "\"${to}\"" html "${html}")
  endforeach()
  string(REGEX MATCHALL "\"/dsfr/[^\"]*\"" left "${html}")
  if(left)
    message(FATAL_ERROR "${SRC}/${p} links ${left}, which the DSFR subset does not ship: add the "
                        "component to FB_DSFR_COMPONENTS (cmake/FbWebAssets.cmake) or drop the link")
  endif()
  file(WRITE ${OUT}/static/${p} "${html}")
endforeach()

# ---- Precompression: every text file gets FILE.gz and FILE.br when they are smaller. Written
# after FILE, so they are never older than it (the server ignores a variant older than its file).
file(GLOB_RECURSE texts ${OUT}/static/*.html ${OUT}/static/*.css ${OUT}/static/*.js
     ${OUT}/static/*.svg ${OUT}/dsfr/*.css ${OUT}/dsfr/*.svg)
foreach(f IN LISTS texts)
  file(SIZE ${f} size)
  execute_process(COMMAND ${GZIP} -9 -n -c ${f} OUTPUT_FILE ${f}.gz RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${GZIP} failed on ${f}")
  endif()
  file(SIZE ${f}.gz zsize)
  if(NOT zsize LESS size)
    file(REMOVE ${f}.gz)
  endif()
  if(BROTLI)
    if(BROTLI_KIND STREQUAL "cli")
      execute_process(COMMAND ${BROTLI} -c -q 11 ${f} OUTPUT_FILE ${f}.br RESULT_VARIABLE rc)
    else()
      execute_process(COMMAND ${BROTLI} ${f} ${f}.br RESULT_VARIABLE rc)
    endif()
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "${BROTLI} failed on ${f}")
    endif()
    file(SIZE ${f}.br bsize)
    if(NOT bsize LESS size)
      file(REMOVE ${f}.br)
    endif()
  endif()
endforeach()
file(TOUCH ${STAMP})
