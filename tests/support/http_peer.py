#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""http_peer.py - a small HTTP/1.1 keep-alive server for the HTTP client's unit tests.

tests/unit/test_http_client.c starts it with `python3 http_peer.py --port N`, waits until the
port accepts connections, and kills it at the end. Standard library only. Listens on 127.0.0.1.

Endpoints (query parameters in brackets; `id` keys per-test state so tests never share it):
  GET  /hello                     200 "hello world", Content-Type text/plain, X-Peer: yes
  ANY  /echo                      200 with the request body; Content-Type copied from the request;
                                  X-Method: the method; X-Got: the request's X-Test header
  GET  /flaky[id,fails,code]      `fails` times `code` (default 503), then 200 "ok after N"
                                  where N is the number of hits for this id
  GET  /retry-after[id,secs]      first hit 429 with Retry-After: secs, then 200 "ok"
  GET  /status/NNN                status NNN with body "status NNN"
  GET  /slow[ms]                  sleeps ms milliseconds, then 200 "slow"
  GET  /big[bytes,chunked]        `bytes` bytes of 'x'; with chunked=1 no Content-Length is sent
  GET  /port                      200 with the client's source port (connection reuse checks)
  GET  /hits[id]                  200 with the number of hits recorded for id
"""
import argparse
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HITS = {}
LOCK = threading.Lock()


def hit(key):
    with LOCK:
        HITS[key] = HITS.get(key, 0) + 1
        return HITS[key]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive by default

    def log_message(self, fmt, *args):  # quiet: the tests read their own output
        pass

    def reply(self, status, body=b"", headers=None, chunked=False):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            step = 16384
            for i in range(0, len(body), step):
                part = body[i:i + step]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    def handle_any(self):
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = url.path
        try:
            if path == "/hello":
                self.reply(200, "hello world", {"Content-Type": "text/plain", "X-Peer": "yes"})
            elif path == "/echo":
                self.reply(200, body, {
                    "Content-Type": self.headers.get("Content-Type", "none"),
                    "X-Method": self.command,
                    "X-Got": self.headers.get("X-Test", "none"),
                })
            elif path == "/flaky":
                n = hit(("flaky", q.get("id", "")))
                if n <= int(q.get("fails", "2")):
                    code = int(q.get("code", "503"))
                    self.reply(code, "failing %d" % n, {"Content-Type": "text/plain"})
                else:
                    self.reply(200, "ok after %d" % n, {"Content-Type": "text/plain"})
            elif path == "/retry-after":
                n = hit(("retry-after", q.get("id", "")))
                if n == 1:
                    self.reply(429, "slow down", {"Retry-After": q.get("secs", "1")})
                else:
                    self.reply(200, "ok")
            elif path.startswith("/status/"):
                code = int(path[len("/status/"):])
                self.reply(code, "status %d" % code, {"Content-Type": "text/plain"})
            elif path == "/slow":
                time.sleep(int(q.get("ms", "1000")) / 1000.0)
                self.reply(200, "slow")
            elif path == "/big":
                self.reply(200, b"x" * int(q.get("bytes", "1000")), chunked=q.get("chunked") == "1")
            elif path == "/port":
                self.reply(200, str(self.client_address[1]))
            elif path == "/hits":
                with LOCK:
                    n = sum(v for k, v in HITS.items() if k[1] == q.get("id", ""))
                self.reply(200, str(n))
            else:
                self.reply(404, "no such endpoint")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):  # client went away: not worth a trace
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    server = Server(("127.0.0.1", args.port), Handler)
    try:
        server.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
