# SPDX-License-Identifier: MIT
"""fake_homeserver.py - the client-server API side of a Matrix homeserver, as much of it as an
application service in frichebot's appservice mode calls, for load tests that do not need a real
Synapse (tests/integration/test_bounded.py). Standard library only; listens on 127.0.0.1.

Every request may be slowed down by `delay_s` (a homeserver under load: 40 ms in the issue #18
measurements). It records:
  - sends:    PUT .../rooms/ROOM/send/TYPE/TXN -> answered {"event_id": "$TXN"}; every PUT is kept
              as (room, txn, body), so a test can tell a resend (same txn) from a second reply;
  - typing:   PUT .../rooms/ROOM/typing/USER  -> {} (counted);
  - receipts: POST .../rooms/ROOM/receipt/... -> {} (counted);
  - anything else -> {} (counted under `other`, by path without the query).
The peak number of requests being served at once is `peak_concurrent`.
"""
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _any(self):
        hs = self.server.hs
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        hs._enter()
        try:
            if hs.delay_s:
                time.sleep(hs.delay_s)
            path = urllib.parse.urlsplit(self.path).path
            parts = [urllib.parse.unquote(p) for p in path.split("/")]
            out = {}
            # /_matrix/client/v3/rooms/ROOM/send/TYPE/TXN
            if len(parts) >= 9 and parts[4] == "rooms" and parts[6] == "send":
                room, txn = parts[5], parts[8]
                try:
                    content = json.loads(body or b"{}")
                except ValueError:
                    content = None
                hs._record("sends", (room, txn, content))
                out = {"event_id": "$" + txn}
            elif len(parts) >= 7 and parts[4] == "rooms" and parts[6] == "typing":
                hs._record("typing", parts[5])
            elif len(parts) >= 7 and parts[4] == "rooms" and parts[6] == "receipt":
                hs._record("receipts", parts[5])
            else:
                hs._record("other", self.command + " " + path)
            data = json.dumps(out).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            hs._leave()

    do_GET = do_POST = do_PUT = do_DELETE = _any


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def handle_error(self, request, client_address):
        pass


class FakeHomeserver:
    def __init__(self, delay_s=0.0):
        self.delay_s = delay_s
        self.lock = threading.Lock()
        self.sends = []
        self.typing = []
        self.receipts = []
        self.other = []
        self.concurrent = 0
        self.peak_concurrent = 0
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.hs = self
        self.thread = None

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.server.server_address[1]

    def start(self):
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def _record(self, what, item):
        with self.lock:
            getattr(self, what).append(item)

    def _enter(self):
        with self.lock:
            self.concurrent += 1
            self.peak_concurrent = max(self.peak_concurrent, self.concurrent)

    def _leave(self):
        with self.lock:
            self.concurrent -= 1

    def snapshot(self, what):
        with self.lock:
            return list(getattr(self, what))
