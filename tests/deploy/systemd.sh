#!/bin/sh
# SPDX-License-Identifier: MIT
#
# The systemd files of an install: `cmake --install` into an empty prefix, then
# `systemd-analyze verify` on the installed unit (it checks every setting and that ExecStart's
# binary exists), and on the same template configured for a configuration in /etc (the variant
# with ConfigurationDirectory=); `systemd-sysusers` creates the unit's User= from the installed
# sysusers.d file in a scratch root. Any message from systemd-analyze fails the test: an unknown
# or misspelt setting is only a warning to it.
#
#   tests/deploy/systemd.sh BUILD_DIR [SOURCE_DIR]
set -eu
build=$(cd "${1:?usage: systemd.sh BUILD_DIR [SOURCE_DIR]}" && pwd)
top=$(cd "${2:-$(dirname "$0")/../..}" && pwd)
cmake=${CMAKE:-cmake}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fb-systemd.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
fail() { echo "systemd.sh: FAIL: $*" >&2; exit 1; }
command -v systemd-analyze >/dev/null || fail "systemd-analyze is missing: run deploy/install-deps.sh test"

# verify UNIT: systemd-analyze verify, which must say nothing at all.
verify() {
  out=$(systemd-analyze verify --man=no "$1" 2>&1) || { echo "$out" >&2; fail "systemd-analyze verify $1"; }
  [ -z "$out" ] || { echo "$out" >&2; fail "systemd-analyze verify $1 has warnings"; }
  echo "systemd.sh: systemd-analyze verify $1: clean"
}

prefix="$tmp/prefix"
"$cmake" --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log" >&2; fail "cmake --install"; }
unit="$prefix/lib/systemd/system/frichebot.service"
[ -f "$unit" ] || fail "no $unit"
grep -qx "ExecStart=$prefix/bin/frichebot serve -c $prefix/etc/frichebot/frichebot.yaml" "$unit" ||
  fail "ExecStart does not name the prefix's binary and configuration"
grep -qx "Type=notify" "$unit" || fail "not Type=notify"
verify "$unit"

# The same install with its configuration in /etc: ConfigurationDirectory= appears.
"$cmake" -DIN="$top/deploy/frichebot.service.in" -DPREFIX="$prefix" -DBINDIR=bin -DSYSCONFDIR=/etc \
  -DDATADIR=share -DUNITDIR="$tmp/etc-variant" -P "$top/cmake/FbSystemd.cmake" >/dev/null
grep -qx "ConfigurationDirectory=frichebot" "$tmp/etc-variant/frichebot.service" ||
  fail "no ConfigurationDirectory= for a configuration in /etc"
grep -qx "ExecStart=$prefix/bin/frichebot serve -c /etc/frichebot/frichebot.yaml" \
  "$tmp/etc-variant/frichebot.service" || fail "the /etc variant's ExecStart"
verify "$tmp/etc-variant/frichebot.service"

# A unit that names a missing binary must fail, or the checks above prove nothing.
sed "s|^ExecStart=$prefix/bin/frichebot|ExecStart=$prefix/bin/missing|" "$unit" >"$tmp/broken.service"
if systemd-analyze verify --man=no "$tmp/broken.service" >/dev/null 2>&1; then
  fail "systemd-analyze verify accepts a unit whose binary is missing"
fi

# The user: systemd-sysusers creates it from the installed file, as User= and Group= name it.
mkdir -p "$tmp/root/etc"
systemd-sysusers --root="$tmp/root" "$prefix/lib/sysusers.d/frichebot.conf" >/dev/null 2>&1 ||
  fail "systemd-sysusers refuses lib/sysusers.d/frichebot.conf"
user=$(sed -n 's/^User=//p' "$unit")
group=$(sed -n 's/^Group=//p' "$unit")
grep -q "^$user:x:[0-9]*:[0-9]*:.*:/var/lib/frichebot:/usr/sbin/nologin$" "$tmp/root/etc/passwd" ||
  fail "user $user not created as a system user without login"
grep -q "^$group:x:" "$tmp/root/etc/group" || fail "group $group not created"
echo "systemd.sh: the unit verifies, and systemd-sysusers creates its user $user"
