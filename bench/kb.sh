#!/bin/sh
# SPDX-License-Identifier: MIT
#
# bench/kb.sh BUILD_DIR - the knowledge base's retrieval benchmark (`make bench`): the median time
# per question of fb_kb_search() over the whole base of dialogs/friche.yaml, on one core, beside
# the 50 us budget of issue #20. Without `connaissances:` in that dialog (before the base is
# merged), the small test base tests/data/dialogs/kb.yaml is measured instead, and said so.
# Environment: FB_BENCH_KB_ROUNDS (2000).
set -eu
build=${1:?usage: bench/kb.sh BUILD_DIR}
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$build/bench/bench_kb
[ -x "$bin" ] || { echo "bench: $bin not found: build first" >&2; exit 1; }
dialog=$top/dialogs/friche.yaml
if ! grep -q '^connaissances:' "$dialog"; then
  echo "bench kb: $dialog has no knowledge base; measuring tests/data/dialogs/kb.yaml" >&2
  dialog=$top/tests/data/dialogs/kb.yaml
fi
exec taskset -c 0 "$bin" "$dialog" -n "${FB_BENCH_KB_ROUNDS:-2000}"
