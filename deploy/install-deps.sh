#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Installs what frichebot needs, and nothing twice: safe to run again and again.
#
#   deploy/install-deps.sh run    build tools, libraries and redis-server (for `make run`)
#   deploy/install-deps.sh test   all of the above, plus clang (libFuzzer, clang-format,
#                                 clang-tidy) and the Python virtualenv of the test harness
#   deploy/install-deps.sh bench  `run`, plus redis-benchmark (redis-tools)
#
# Debian packages come from apt (run as root, or with sudo available). Data packages come from npm
# into node_modules/ (package-lock.json). The Python test peers (pytest, websockets, matrix-nio)
# come from PyPI into .venv/ (or $FB_VENV), and the Matrix tests' homeserver, Synapse, into its own
# .venv-synapse/ (or $FB_SYNAPSE_VENV). Later issues add the DSFR assets and Chromium here.
set -eu

mode=${1:-run}
top=$(cd "$(dirname "$0")/.." && pwd)
venv=${FB_VENV:-$top/.venv}
synapse_venv=${FB_SYNAPSE_VENV:-$top/.venv-synapse}

# Debian packages, by purpose. See the dependency table in README.md.
pkgs_build="build-essential cmake ninja-build pkg-config"
pkgs_libs="libuv1-dev libcurl4-openssl-dev libwebsockets-dev libwebsockets-evlib-uv libjansson-dev libhiredis-dev libyaml-dev"
pkgs_run="redis-server"
pkgs_test="redis-tools clang clang-format clang-tidy libclang-rt-14-dev python3 python3-venv graphviz"
pkgs_bench="redis-tools"

case "$mode" in
  run) want="$pkgs_build $pkgs_libs $pkgs_run" ;;
  test) want="$pkgs_build $pkgs_libs $pkgs_run $pkgs_test" ;;
  bench) want="$pkgs_build $pkgs_libs $pkgs_run $pkgs_bench" ;;
  -h|--help) sed -n '4,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "install-deps.sh: unknown mode '$mode' (run, test or bench)" >&2; exit 2 ;;
esac

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "install-deps.sh: not root and no sudo: install these packages yourself: $want" >&2
  fi
fi

# npm fetches the official communes data (@etalab/decoupage-administratif, pinned in
# package-lock.json), converted at build time. Debian's nodejs/npm unless some npm is there.
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

# npm packages: installed exactly as package-lock.json pins them, again only when the lock changed.
stamp="$top/node_modules/.package-lock.json"
if [ ! -f "$stamp" ] || [ "$top/package-lock.json" -nt "$stamp" ]; then
  echo "install-deps.sh: installing npm packages (package-lock.json)"
  (cd "$top" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi

if [ "$mode" = test ]; then
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
