#!/bin/sh
# SPDX-License-Identifier: MIT
#
# The install script's own test: deploy/install-deps.sh builds both Python virtualenvs of the
# test harness into an empty directory, with the pip that Debian's `python3 -m venv` brings, as
# on a machine that never had them. Then each venv is complete (pip check), imports what the
# tests use, and a second run installs nothing (the stamp holds).
#
#   tests/deploy/venvs.sh [SOURCE_DIR]
set -eu
top=$(cd "${1:-$(dirname "$0")/../..}" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fb-venvs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
fail() { echo "venvs.sh: FAIL: $*" >&2; exit 1; }

export FB_VENV="$tmp/venv" FB_SYNAPSE_VENV="$tmp/venv-synapse"
echo "venvs.sh: building both virtualenvs in the empty directory $tmp"
"$top/deploy/install-deps.sh" venvs >"$tmp/first.log" 2>&1 || { cat "$tmp/first.log" >&2; fail "install-deps.sh venvs exited non-zero"; }
cat "$tmp/first.log"
grep -q "installing the test virtualenv in $FB_VENV" "$tmp/first.log" || fail "the test virtualenv was not built"
grep -q "installing Synapse in $FB_SYNAPSE_VENV" "$tmp/first.log" || fail "the Synapse virtualenv was not built"
echo "venvs.sh: $("$FB_VENV/bin/pip" --version --disable-pip-version-check)"

for v in "$FB_VENV" "$FB_SYNAPSE_VENV"; do
  "$v/bin/pip" check --disable-pip-version-check || fail "$v is incomplete (pip check)"
done
"$FB_VENV/bin/python" -c 'import pytest, websockets, nio, yaml, playwright.sync_api' ||
  fail "the test virtualenv lacks a package the tests import"
# matrix-nio's e2e extra (the encrypting advisors' client, tests/integration/e2ee/nioclient.py).
"$FB_VENV/bin/python" -c 'import vodozemac, peewee, cachetools, atomicwrites, nio.crypto; assert nio.crypto.ENCRYPTION_ENABLED' ||
  fail "the test virtualenv lacks a package the tests import"
# Playwright's own driver (the browser tests need no Node.js of the machine's).
"$FB_VENV/bin/python" -m playwright --version || fail "Playwright's driver does not run"
"$FB_SYNAPSE_VENV/bin/python" -c 'import synapse.app.homeserver' || fail "Synapse does not import"

"$top/deploy/install-deps.sh" venvs >"$tmp/second.log" 2>&1 || { cat "$tmp/second.log" >&2; fail "the second run failed"; }
if grep -q "installing" "$tmp/second.log"; then
  cat "$tmp/second.log" >&2
  fail "the second run installed again (the stamp did not hold)"
fi
echo "venvs.sh: both virtualenvs built from nothing, complete, and kept on a second run"
