#!/bin/sh
# SPDX-License-Identifier: MIT
#
# bench/engine.sh BUILD_DIR - the dialog engine benchmark (`make bench`).
#
# Replays the user turns of every transcript of the sample dialog (tests/transcripts/exemple-*),
# from fresh sessions, ROUNDS times per run, and prints the median engine steps per second over
# RUNS runs on one core, and the serialized session sizes. Targets (the dialog engine issue):
# at least 200,000 steps/s, sessions under 1 KiB. Environment: FB_BENCH_ROUNDS (300),
# FB_BENCH_RUNS (5).
set -eu
build=${1:?usage: bench/engine.sh BUILD_DIR}
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$build/bench/bench_engine
[ -x "$bin" ] || { echo "bench: $bin not found: build first" >&2; exit 1; }
# One core, as the target says.
exec taskset -c 0 "$bin" "$top/dialogs/exemple.yaml" "$top"/tests/transcripts/exemple-*.yaml \
  -n "${FB_BENCH_ROUNDS:-300}" -r "${FB_BENCH_RUNS:-5}"
