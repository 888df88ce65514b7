#!/bin/sh
# SPDX-License-Identifier: MIT
#
# bench/memory.sh BUILD_DIR - Redis memory per conversation, and the daemon with a large keyspace
# (`make bench`; issue 17, point 4). Starts a private redis-server and the daemon of BUILD_DIR
# (the built-in friche dialog, reminders at any hour) on random loopback ports, then:
#   1. bench_memory -m walk: FB_BENCH_MN (50) whole friche conversations through the web chat;
#      Redis's used_memory per conversation, the conversation's keys by kind (MEMORY USAGE), and
#      the dedupe marks per message (they expire after router.dedupe_retention_hours);
#   2. bench_pipeline, closed loop, FB_BENCH_PD (10) s: messages/s with the walked keyspace;
#   3. bench_memory -m load: FB_BENCH_ML (100000) copies of a finished conversation (DUMP/RESTORE,
#      TTLs kept, their reminders scheduled a month ahead), as a deployment that served that many
#      would hold them;
#   4. bench_pipeline again: messages/s with them (the ratio to 2 is the slowdown);
#   5. bench_memory -m due: FB_BENCH_MD (1000) of the copies' reminders made due at once, and the
#      time until the scheduler, the router and the outbox handled all of them.
# Targets (issue 17): <= 2048 bytes per finished conversation without its dedupe marks (shown
# with and without the web chat's history, which holds the whole conversation), <= 100
# bytes per message for the marks; no slowdown with the loaded conversations (ratio >= 0.90 taken
# as "no slowdown": the spread between two runs of the pipeline bench on this machine).
# Environment: FB_REDIS_SERVER (redis-server).
set -eu

build=${1:?usage: bench/memory.sh BUILD_DIR}
daemon="$build/frichebot"
mbin="$build/bench/bench_memory"
pbin="$build/bench/bench_pipeline"
for b in "$daemon" "$mbin" "$pbin"; do
  [ -x "$b" ] || { echo "bench/memory.sh: $b is missing: build $build first" >&2; exit 1; }
done
server=${FB_REDIS_SERVER:-redis-server}
MN=${FB_BENCH_MN:-50}
ML=${FB_BENCH_ML:-100000}
MD=${FB_BENCH_MD:-1000}
PD=${FB_BENCH_PD:-10}
PC=${FB_BENCH_PC:-100}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/frichebot-memory.XXXXXX")
rpid=
dpid=
cleanup() {
  for p in $dpid $rpid; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die() {
  echo "bench/memory.sh: $*" >&2
  exit 1
}
rnd_port() {
  echo $(( $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 40000 + 20000 ))
}

rport=
for attempt in 1 2 3 4 5; do
  p=$(rnd_port)
  "$server" --port "$p" --bind 127.0.0.1 --dir "$tmp" --save '' --appendonly no \
    --daemonize no --loglevel warning >"$tmp/redis.log" 2>&1 &
  rpid=$!
  i=0
  while [ $i -lt 100 ]; do
    [ "$(redis-cli -h 127.0.0.1 -p "$p" ping 2>/dev/null)" = PONG ] && { rport=$p; break; }
    kill -0 "$rpid" 2>/dev/null || break
    sleep 0.05
    i=$((i + 1))
  done
  [ -n "$rport" ] && break
  kill "$rpid" 2>/dev/null || true
  wait "$rpid" 2>/dev/null || true
  rpid=
done
[ -n "$rport" ] || die "cannot start redis-server"

hport=
for attempt in 1 2 3 4 5; do
  p=$(rnd_port)
  # The private Redis is thrown away (allow_volatile); limits raised so that the bench measures
  # memory, not the anti-abuse limits; reminders at any hour, so that step 5 runs at night too.
  cat >"$tmp/frichebot.yaml" <<EOF
server:
  listen: "127.0.0.1:$p"
redis:
  address: "tcp://127.0.0.1:$rport"
  allow_volatile: true
log:
  level: warning
reminders:
  working_hours_only: false
  poll_interval_ms: 100
web:
  messages_per_minute: 10000
  max_connections_per_address: 100000
  new_conversations_per_minute: 100000
EOF
  "$daemon" serve -c "$tmp/frichebot.yaml" >"$tmp/daemon.log" 2>&1 &
  dpid=$!
  i=0
  while [ $i -lt 200 ]; do
    curl -fsS "http://127.0.0.1:$p/healthz" >/dev/null 2>&1 && { hport=$p; break; }
    kill -0 "$dpid" 2>/dev/null || break
    sleep 0.05
    i=$((i + 1))
  done
  [ -n "$hport" ] && break
  kill "$dpid" 2>/dev/null || true
  wait "$dpid" 2>/dev/null || true
  dpid=
done
[ -n "$hport" ] || { cat "$tmp/daemon.log" >&2; die "cannot start the daemon"; }

echo "bench: memory, $MN friche conversations through the daemon on 127.0.0.1:$hport" >&2
"$mbin" -m walk -p "$hport" -r "$rport" -n "$MN" -c 10 >"$tmp/walk" ||
  { cat "$tmp/daemon.log" >&2; die "bench_memory walk failed"; }
token=$(sed -n 's/^token=//p' "$tmp/walk")
rate() {
  "$pbin" -p "$hport" -c "$PC" -d "$PD" | sed -n 's/^messages_per_s=//p'
}
before=$(rate) || die "bench_pipeline failed"
echo "bench: loading $ML conversations" >&2
"$mbin" -m load -r "$rport" -t "$token" -l "$ML" >"$tmp/load" || die "bench_memory load failed"
after=$(rate) || die "bench_pipeline failed"
"$mbin" -m due -r "$rport" -t "$token" -l "$ML" -d "$MD" >"$tmp/due" ||
  { cat "$tmp/daemon.log" >&2; die "bench_memory due failed"; }
if grep -E 'ERROR|AddressSanitizer|runtime error' "$tmp/daemon.log" >&2; then
  die "the daemon reported errors"
fi

v() { sed -n "s/^$1=//p" "$2"; }
conv=$(v conversation_bytes_without_dedupe "$tmp/walk")
ded=$(v dedupe_bytes_per_message "$tmp/walk")
met() { if [ "$1" = 1 ]; then echo met; else echo "NOT met"; fi; }
printf "frichebot Redis memory benchmark: %s friche conversations of %s messages each (web chat)\n" \
  "$MN" "$(awk -v m="$(v messages "$tmp/walk")" -v n="$MN" 'BEGIN { printf "%d", m / n }')"
printf "  Redis used_memory per finished conversation: %s bytes (everything: keys, indexes, allocator)\n" \
  "$(v used_memory_per_conversation "$tmp/walk")"
printf "  its keys (MEMORY USAGE), %s per conversation:\n" "$(v keys_per_conversation "$tmp/walk")"
sed -n 's/^kind\.\([^=]*\)=\(.*\)$/    {c:KEY}:\1  \2/p' "$tmp/walk"
printf "  indexes and overhead per conversation (reminders:due, stats, allocator): %s bytes\n" \
  "$(v indexes_and_overhead_per_conversation "$tmp/walk")"
hist=$(v web_history_bytes "$tmp/walk")
bare=$(v conversation_bytes_without_dedupe_and_history "$tmp/walk")
printf "  per finished conversation, without the dedupe marks: %s bytes   (target <= 2048: %s)\n" \
  "$conv" "$(met "$(awk -v c="$conv" 'BEGIN { print (c <= 2048) }')")"
printf "    of which the web chat's history (the whole conversation, for a reload): %s bytes;\n" "$hist"
printf "    without it (session, reminders, months...): %s bytes   (target <= 2048: %s)\n" \
  "$bare" "$(met "$(awk -v c="$bare" 'BEGIN { print (c <= 2048) }')")"
printf "  dedupe marks: %s per message, %s bytes per message retained   (target <= 100: %s)\n" \
  "$(v dedupe_marks_per_message "$tmp/walk")" "$ded" \
  "$(met "$(awk -v d="$ded" 'BEGIN { print (d <= 100) }')")"
printf "  %s conversations loaded in %s s: Redis %s MiB, %s bytes each\n" \
  "$(v loaded "$tmp/load")" "$(v load_s "$tmp/load")" "$(v used_memory_loaded_mib "$tmp/load")" \
  "$(v used_memory_per_loaded_conversation "$tmp/load")"
printf "  pipeline (closed loop, %s conversations, %s s): %s msg/s before, %s msg/s with them: ratio %s   (target >= 0.90: %s)\n" \
  "$PC" "$PD" "$before" "$after" "$(awk -v a="$after" -v b="$before" 'BEGIN { printf "%.2f", a / b }')" \
  "$(met "$(awk -v a="$after" -v b="$before" 'BEGIN { print (a / b >= 0.90) }')")"
printf "  reminders: %s made due at once among %s stored: all handled in %s s (%s/s)\n" \
  "$(v reminders_due "$tmp/due")" "$ML" "$(v reminders_s "$tmp/due")" "$(v reminders_per_s "$tmp/due")"
