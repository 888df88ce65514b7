#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""healthz_poller.py URL INTERVAL_S [REDIS_PORT] - polls URL (a daemon's /healthz) every
INTERVAL_S seconds until its standard input is closed, and prints one line per request: the
request's start (time.monotonic(), seconds), its latency in milliseconds, the HTTP status (0: no
answer) and, with REDIS_PORT, the latency of a PING sent straight to that Redis just after (ms,
-1 without): /healthz includes a Redis PING, so a slow Redis (a disk busy with an AOF fsync)
shows in both, a busy daemon only in the first.

A process of its own, so that what it measures is the daemon's latency, not the wait for the
test process's interpreter lock (tests/integration/test_bounded.py runs a homeserver in threads
of its own process)."""
import http.client
import socket
import sys
import threading
import time
import urllib.parse


def main():
    url = urllib.parse.urlsplit(sys.argv[1])
    interval = float(sys.argv[2])
    rport = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    rsock = socket.create_connection(("127.0.0.1", rport), timeout=10) if rport else None
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    out = []
    while not stop.is_set():
        t0 = time.monotonic()
        status = 0
        try:
            c = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
            c.request("GET", url.path)
            r = c.getresponse()
            r.read()
            status = r.status
            c.close()
        except OSError:
            pass
        ms = (time.monotonic() - t0) * 1000
        rms = -1.0
        if rsock:
            t1 = time.monotonic()
            try:
                rsock.sendall(b"PING\r\n")
                rsock.recv(64)
                rms = (time.monotonic() - t1) * 1000
            except OSError:
                pass
        out.append("%.6f %.3f %d %.3f" % (t0, ms, status, rms))
        time.sleep(interval)
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
