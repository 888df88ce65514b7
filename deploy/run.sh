#!/bin/sh
# SPDX-License-Identifier: MIT
#
# `make run`: runs the daemon in the foreground on the embedded default configuration.
#
#   deploy/run.sh BINARY
#
# Redis: when FRICHEBOT_REDIS is set (tcp://HOST:PORT or unix:/PATH) or a config file is given in
# FRICHEBOT_CONFIG, that Redis is used. Otherwise a private redis-server is started on a unix
# socket in .run/ (nothing listens on TCP) and stopped when the daemon stops.
# Other settings: FRICHEBOT_LISTEN (default 127.0.0.1:8080), FRICHEBOT_LOG (default info),
# FRICHEBOT_RUNDIR (default .run/, where the private Redis keeps its socket and log).
set -eu

bin=${1:?usage: deploy/run.sh BINARY}
top=$(cd "$(dirname "$0")/.." && pwd)
rundir=${FRICHEBOT_RUNDIR:-$top/.run}
listen=${FRICHEBOT_LISTEN:-127.0.0.1:8080}
redis_pid=""

cleanup() {
  if [ -n "$redis_pid" ]; then
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT INT TERM

set -- serve --listen "$listen" --log "${FRICHEBOT_LOG:-info}"
if [ -n "${FRICHEBOT_CONFIG:-}" ]; then
  set -- "$@" -c "$FRICHEBOT_CONFIG"
elif [ -n "${FRICHEBOT_REDIS:-}" ]; then
  set -- "$@" --redis "$FRICHEBOT_REDIS"
else
  mkdir -p "$rundir"
  sock=$rundir/redis.sock
  redis-server --port 0 --unixsocket "$sock" --unixsocketperm 700 --dir "$rundir" \
    --save "" --appendonly no --daemonize no --loglevel warning \
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
  echo "run.sh: private Redis on unix:$sock (stopped with the daemon)"
  set -- "$@" --redis "unix:$sock"
fi

host=${listen%:*}
port=${listen##*:}
echo
echo "  frichebot is starting: open http://$host:$port/"
echo "  health: http://$host:$port/healthz   metrics: http://$host:$port/metrics"
echo "  stop with Ctrl-C"
echo
"$bin" "$@" &
daemon_pid=$!
# Ctrl-C reaches the daemon directly (same process group); a SIGTERM sent to this script alone is
# forwarded. Either way the daemon drains and stops cleanly, and this script waits for it.
trap ':' INT
trap 'kill -TERM $daemon_pid 2>/dev/null || true' TERM
status=0
wait $daemon_pid || status=$?
# wait returns early when a trapped signal arrives: wait again for the daemon's real exit.
while kill -0 $daemon_pid 2>/dev/null; do wait $daemon_pid || status=$?; done
trap - INT TERM
cleanup
redis_pid=""
exit $status
