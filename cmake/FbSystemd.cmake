# SPDX-License-Identifier: MIT
#
# The systemd integration of an install (docs/internals/DAEMON.md, README.md "Install"):
#  - deploy/frichebot.service.in, configured AT INSTALL TIME with the prefix given to
#    `cmake --install` (so `--prefix` and DESTDIR give a unit naming the right binary and
#    configuration), installed as FB_SYSTEMD_UNITDIR/frichebot.service;
#  - deploy/frichebot.sysusers, the frichebot system user, installed as
#    FB_SYSUSERSDIR/frichebot.conf (systemd-sysusers creates the user from it).
# FB_SYSTEMD_UNITDIR and FB_SYSUSERSDIR are relative to the prefix (lib/systemd/system and
# lib/sysusers.d, which systemd reads under /usr and /usr/local) or absolute.
#
# Include it from the top-level CMakeLists.txt after FbPaths: include(FbSystemd)
# The install script includes it again with FB_SYSTEMD_SCRIPT set, for fb_systemd_unit() alone.
# As a script it configures one unit (tests/deploy/systemd.sh):
#   cmake -DIN=TEMPLATE -DPREFIX=P -DBINDIR=D -DSYSCONFDIR=D -DDATADIR=D -DUNITDIR=D \
#         -P cmake/FbSystemd.cmake

# Configures the unit template `in` for an install under `prefix` whose bindir, sysconfdir and
# datadir are `bindir`, `sysconfdir` and `datadir` (relative to the prefix, or absolute), and
# writes it as `unitdir`/frichebot.service under $DESTDIR. The unit names the paths of the
# installed system, without DESTDIR. Hardening that would hide the install is relaxed: an
# install under /home, /root or /run/user gets ProtectHome=read-only, one under /tmp or /var/tmp
# PrivateTmp=no. ConfigurationDirectory= only names directories in /etc, so the unit has it when
# the configuration is in /etc/frichebot.
function(fb_systemd_unit in prefix bindir sysconfdir datadir unitdir)
  string(REGEX REPLACE "(.)/+$" "\\1" prefix "${prefix}")
  foreach(var bindir sysconfdir datadir unitdir)
    if(NOT IS_ABSOLUTE "${${var}}")
      set(${var} "${prefix}/${${var}}")
    endif()
  endforeach()
  set(FB_UNIT_BINDIR "${bindir}")
  set(FB_UNIT_CONFDIR "${sysconfdir}/frichebot")
  set(FB_UNIT_DATADIR "${datadir}/frichebot")
  if(sysconfdir STREQUAL "/etc")
    set(FB_UNIT_CONFIGURATION_DIRECTORY "ConfigurationDirectory=frichebot")
  else()
    set(FB_UNIT_CONFIGURATION_DIRECTORY "# No ConfigurationDirectory=: it only names \
directories in /etc, and the configuration is in ${FB_UNIT_CONFDIR}.")
  endif()
  set(FB_UNIT_PROTECT_HOME yes)
  set(FB_UNIT_PRIVATE_TMP yes)
  foreach(dir "${FB_UNIT_BINDIR}" "${FB_UNIT_CONFDIR}" "${FB_UNIT_DATADIR}")
    if(dir MATCHES "^/(home|root|run/user)(/|$)")
      set(FB_UNIT_PROTECT_HOME read-only)
    endif()
    if(dir MATCHES "^/(tmp|var/tmp)(/|$)")
      set(FB_UNIT_PRIVATE_TMP no)
    endif()
  endforeach()
  set(out "$ENV{DESTDIR}${unitdir}/frichebot.service")
  message(STATUS "Installing: ${out}")
  configure_file("${in}" "${out}" @ONLY)
  list(APPEND CMAKE_INSTALL_MANIFEST_FILES "${out}")
  set(CMAKE_INSTALL_MANIFEST_FILES "${CMAKE_INSTALL_MANIFEST_FILES}" PARENT_SCOPE)
endfunction()

if(CMAKE_SCRIPT_MODE_FILE STREQUAL CMAKE_CURRENT_LIST_FILE)
  fb_systemd_unit("${IN}" "${PREFIX}" "${BINDIR}" "${SYSCONFDIR}" "${DATADIR}" "${UNITDIR}")
  return()
endif()
if(FB_SYSTEMD_SCRIPT)
  return()
endif()

set(FB_SYSTEMD_UNITDIR lib/systemd/system
    CACHE STRING "Where `cmake --install` puts frichebot.service (relative to the prefix, or absolute)")
set(FB_SYSUSERSDIR lib/sysusers.d
    CACHE STRING "Where `cmake --install` puts the sysusers.d file (relative to the prefix, or absolute)")

# \${CMAKE_INSTALL_PREFIX} is read when the install runs: the prefix given to `cmake --install`.
install(CODE "
set(FB_SYSTEMD_SCRIPT ON)
include(\"${CMAKE_CURRENT_LIST_FILE}\")
fb_systemd_unit(\"${PROJECT_SOURCE_DIR}/deploy/frichebot.service.in\" \"\${CMAKE_INSTALL_PREFIX}\"
                \"${CMAKE_INSTALL_BINDIR}\" \"${CMAKE_INSTALL_SYSCONFDIR}\"
                \"${CMAKE_INSTALL_DATADIR}\" \"${FB_SYSTEMD_UNITDIR}\")
")
install(FILES ${PROJECT_SOURCE_DIR}/deploy/frichebot.sysusers DESTINATION ${FB_SYSUSERSDIR}
        RENAME frichebot.conf)
