#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Installs what frichebot needs, and nothing twice: safe to run again and again.
#
#   deploy/install-deps.sh run    build tools, libraries and redis-server (for `make run`)
#   deploy/install-deps.sh test   all of the above, plus clang (libFuzzer, clang-format,
#                                 clang-tidy), Chromium (browser tests) and the Python
#                                 virtualenvs of the test harness (pytest, Synapse)
#   deploy/install-deps.sh bench  `run`, plus redis-benchmark (redis-tools)
#
# Debian packages come from apt (run as root, or with sudo available). npm packages (the communes
# data, the DSFR design system the web chat serves, playwright-core and axe-core for the browser
# tests) come from npm into node_modules/ (package-lock.json), in every mode. The Python test
# peers (pytest, websockets, matrix-nio) come from PyPI into .venv/ (or $FB_VENV), and the Matrix
# tests' homeserver, Synapse, into its own .venv-synapse/ (or $FB_SYNAPSE_VENV).
set -eu

mode=${1:-run}
top=$(cd "$(dirname "$0")/.." && pwd)
venv=${FB_VENV:-$top/.venv}
synapse_venv=${FB_SYNAPSE_VENV:-$top/.venv-synapse}

# Debian packages, by purpose. See the dependency table in README.md.
pkgs_build="build-essential cmake ninja-build pkg-config"
pkgs_libs="libuv1-dev libcurl4-openssl-dev libwebsockets-dev libwebsockets-evlib-uv libjansson-dev libhiredis-dev libyaml-dev"
pkgs_run="redis-server"
# chromium: the browser tests drive Debian's /usr/bin/chromium (playwright-core downloads no
# browser); fonts-dejavu-core gives it a fallback font (the page itself uses the DSFR's Marianne).
pkgs_test="redis-tools clang clang-format clang-tidy libclang-rt-14-dev python3 python3-venv graphviz chromium fonts-dejavu-core tzdata"
pkgs_bench="redis-tools curl" # curl: bench/run.sh polls the daemon's /healthz

case "$mode" in
  run) want="$pkgs_build $pkgs_libs $pkgs_run" ;;
  test) want="$pkgs_build $pkgs_libs $pkgs_run $pkgs_test" ;;
  bench) want="$pkgs_build $pkgs_libs $pkgs_run $pkgs_bench" ;;
  -h|--help) sed -n '4,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "install-deps.sh: unknown mode '$mode' (run, test or bench)" >&2; exit 2 ;;
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
if ! command -v npm >/dev/null 2>&1; then
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
# --ignore-scripts: no package runs code at install (none of ours needs to; playwright-core
# downloads no browser).
stamp="$top/node_modules/.package-lock.json"
if [ ! -f "$stamp" ] || [ "$top/package-lock.json" -nt "$stamp" ]; then
  echo "install-deps.sh: installing npm packages (package-lock.json)"
  (cd "$top" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi

if [ "$mode" = test ]; then
  # playwright-core (the browser tests) needs Node.js 20 or later; Debian 12's own nodejs is 18.
  node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  if [ "$node_major" -lt 20 ]; then
    echo "install-deps.sh: the browser tests need Node.js 20 or later (found: $(node --version 2>/dev/null || echo none)); install it (e.g. from NodeSource) and run again" >&2
    exit 1
  fi
  # The integration harness: pytest in a virtualenv made from Debian's python3.
  # Re-installed when requirements.txt changes (a stamp records the one installed).
  req="$top/tests/integration/requirements.txt"
  if [ ! -x "$venv/bin/python" ] || ! cmp -s "$req" "$venv/.requirements.txt"; then
    echo "install-deps.sh: installing the test virtualenv in $venv"
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check --require-hashes -r "$req"
    cp "$req" "$venv/.requirements.txt"
  fi
  # Synapse (tests/integration/synapse.py starts it for the Matrix tests), in a virtualenv of its
  # own so that its many dependencies never constrain the harness's. Same stamp logic.
  req="$top/tests/integration/requirements-synapse.txt"
  if [ ! -x "$synapse_venv/bin/python" ] || ! cmp -s "$req" "$synapse_venv/.requirements.txt"; then
    echo "install-deps.sh: installing Synapse in $synapse_venv"
    /usr/bin/python3 -m venv "$synapse_venv"
    "$synapse_venv/bin/pip" install -q --disable-pip-version-check --require-hashes -r "$req"
    cp "$req" "$synapse_venv/.requirements.txt"
  fi
fi
echo "install-deps.sh: $mode dependencies present"
