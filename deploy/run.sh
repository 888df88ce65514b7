#!/bin/sh
# SPDX-License-Identifier: MIT
#
# `make run`: runs the daemon in the foreground on the embedded default configuration.
#
#   deploy/run.sh BINARY
#
# Redis: when FRICHEBOT_REDIS is set (tcp://HOST:PORT or unix:/PATH) or a config file is given in
# FRICHEBOT_CONFIG, that Redis is used. Otherwise a private redis-server is started on a unix
# socket in .run/ (nothing listens on TCP), with AOF (appendonly yes, appendfsync everysec) so that
# conversations survive a restart, and stopped when the daemon stops. A Redis named by
# FRICHEBOT_REDIS or the configuration must persist with AOF too: the daemon refuses one that does
# not, unless the configuration sets redis.allow_volatile: true (docs/deploiement.md, 3.2).
# Other settings, each overriding the configuration file only when set:
#   FRICHEBOT_LISTEN  HOST:PORT to listen on (server.listen; the embedded default: 127.0.0.1:8080)
#   FRICHEBOT_LOG     log level (log.level; the embedded default: info)
# FRICHEBOT_RUNDIR (default .run/) is where the private Redis keeps its socket, data and log.
# The banner shows the address the daemon actually listens on, read from its own log line
# ("listening on http://HOST:PORT"), never guessed from the settings.
set -eu

bin=${1:?usage: deploy/run.sh BINARY}
top=$(cd "$(dirname "$0")/.." && pwd)
rundir=${FRICHEBOT_RUNDIR:-$top/.run}
redis_pid=""
fifo_dir=""

cleanup() {
  if [ -n "$redis_pid" ]; then
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
  if [ -n "$fifo_dir" ]; then
    rm -rf "$fifo_dir"
  fi
}
trap cleanup EXIT INT TERM

set -- serve
if [ -n "${FRICHEBOT_LISTEN:-}" ]; then
  set -- "$@" --listen "$FRICHEBOT_LISTEN"
fi
if [ -n "${FRICHEBOT_LOG:-}" ]; then
  set -- "$@" --log "$FRICHEBOT_LOG"
fi
if [ -n "${FRICHEBOT_CONFIG:-}" ]; then
  set -- "$@" -c "$FRICHEBOT_CONFIG"
elif [ -n "${FRICHEBOT_REDIS:-}" ]; then
  set -- "$@" --redis "$FRICHEBOT_REDIS"
else
  mkdir -p "$rundir"
  sock=$rundir/redis.sock
  redis-server --port 0 --unixsocket "$sock" --unixsocketperm 700 --dir "$rundir" \
    --save "" --appendonly yes --appendfsync everysec --daemonize no --loglevel warning \
    --logfile "$rundir/redis.log" &
  redis_pid=$!
  i=0
  until redis-cli -s "$sock" ping >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 100 ]; then
      echo "run.sh: the private redis-server did not start; see $rundir/redis.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "run.sh: private Redis on unix:$sock, with AOF in $rundir (stopped with the daemon)"
  set -- "$@" --redis "unix:$sock"
fi

# The daemon's output goes through a FIFO to a reader that copies it and prints the banner when
# the daemon says where it listens. The reader ignores SIGINT and SIGTERM: it ends when the daemon
# closes its output, so the daemon's last lines (the drain, "stopped cleanly") are never lost.
fifo_dir=$(mktemp -d "${TMPDIR:-/tmp}/frichebot-run.XXXXXX")
fifo=$fifo_dir/out
mkfifo "$fifo"
(
  trap '' INT TERM
  while IFS= read -r line; do
    printf '%s\n' "$line"
    case $line in
    *"listening on http://"*)
      url=${line##*listening on }
      url=${url%% *}
      url=${url%%\"*}
      echo
      echo "  frichebot is starting: open $url/"
      echo "  health: $url/healthz   metrics: $url/metrics"
      echo "  stop with Ctrl-C"
      echo
      break
      ;;
    esac
  done
  exec cat
) <"$fifo" &
reader_pid=$!
"$bin" "$@" >"$fifo" 2>&1 &
daemon_pid=$!
# Ctrl-C reaches the daemon directly (same process group); a SIGTERM sent to this script alone is
# forwarded. Either way the daemon drains and stops cleanly, and this script waits for it.
trap ':' INT
trap 'kill -TERM $daemon_pid 2>/dev/null || true' TERM
status=0
wait $daemon_pid || status=$?
# wait returns early when a trapped signal arrives: wait again for the daemon's real exit.
while kill -0 $daemon_pid 2>/dev/null; do wait $daemon_pid || status=$?; done
# A wait cut short by a signal (status 130) did not collect the daemon's exit status: collect it
# now (127: it was collected already, by the wait above).
if wait $daemon_pid; then status=0; else
  rc=$?
  [ $rc -eq 127 ] || status=$rc
fi
wait $reader_pid 2>/dev/null || true
trap - INT TERM
cleanup
redis_pid=""
fifo_dir=""
exit $status
