#!/bin/sh
# SPDX-License-Identifier: MIT
#
# bench/engine.sh BUILD_DIR - the dialog engine benchmark (`make bench`).
#
# For each dialog, the sample (dialogs/exemple.yaml) and the friche dialog (dialogs/friche.yaml),
# replays the engine calls of every golden transcript of that dialog (tests/transcripts/), as
# `frichebot test` makes them (user turns, reminders fired by `avance:`, the transcript's clock,
# advisors and platform), from fresh sessions, ROUNDS times per run, and prints the median engine
# steps per second over RUNS runs on one core (by the thread's CPU time: the machine may be
# shared; the wall-clock rate is printed beside it), and the serialized session sizes. The friche
# transcripts are real answers, the commune step included (the lookup in the official communes
# index). Targets (issue #17): at least 400,000 steps/s on each dialog, sessions under 1 KiB.
# Environment: FB_BENCH_ROUNDS (300 for the sample, a fifth of it for the friche dialog, whose
# transcripts are about five times as many steps), FB_BENCH_RUNS (5).
set -eu
build=${1:?usage: bench/engine.sh BUILD_DIR}
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$build/bench/bench_engine
[ -x "$bin" ] || { echo "bench: $bin not found: build first" >&2; exit 1; }
rounds=${FB_BENCH_ROUNDS:-300}
runs=${FB_BENCH_RUNS:-5}
friche_rounds=$((rounds / 5))
[ "$friche_rounds" -ge 1 ] || friche_rounds=1
# One core, as the target says.
taskset -c 0 "$bin" "$top/dialogs/exemple.yaml" "$top"/tests/transcripts/exemple-*.yaml \
  -n "$rounds" -r "$runs"
taskset -c 0 "$bin" "$top/dialogs/friche.yaml" "$top"/tests/transcripts/friche-*.yaml \
  -n "$friche_rounds" -r "$runs"
