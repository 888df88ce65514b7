#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""fault_proxy.py - a fault-injecting TCP proxy between the daemon and a real server (Synapse in
tests/integration/test_matrix.py). Standard library only; listens on 127.0.0.1.

The server stays real: the proxy only breaks the path to it, as a network would.

    proxy = FaultProxy(("127.0.0.1", upstream_port)).start()
    proxy.url              # http://127.0.0.1:PORT, to give the daemon instead of the server's
    proxy.delay_ms = 200   # every chunk forwarded after this delay (both directions)
    proxy.cut()            # resets every open connection now (RST, like a crashed middlebox)
    proxy.refuse = True    # new connections are reset at once, until set back to False
    proxy.cut_after(n)     # the next connection is reset after n bytes of the server's answer
    proxy.hold = b"PUT /_matrix/client/v3/sendToDevice/"
                           # a request from the client holding these bytes is never forwarded,
                           # nor anything after it on its connection (a server that hangs):
                           # `held` counts them; None forwards again (new connections)
    proxy.stall = b"/keys/query"
                           # a request from the client holding these bytes waits at the proxy,
                           # with anything after it on its connection, until `stall` is set back
                           # to None: then it is forwarded (a slow server or network, not a failed
                           # request): `stalled` counts them, `stalling` those waiting now
    proxy.lose_answers(b"/send/m.room.message/", 1)
                           # the next request holding these bytes is forwarded, but nothing the
                           # server answers on its connection comes back (a reply lost on the
                           # way: the server acted, the client cannot know): `lost` counts them
    proxy.fail_requests(429, 10, match=b"/_matrix/client/", retry_after_ms=300)
                           # the next 10 HTTP requests holding `match` are answered by the proxy
                           # itself with this status (a JSON Matrix error; 429 with retry_after_ms
                           # and Retry-After), never forwarded, and their connection closed:
                           # `failed` counts them; a list of statuses is used in turn
    proxy.stop()

Counters (connections, cuts, bytes each way) are attributes, for the tests to show the faults
happened."""
import select
import socket
import struct
import threading
import time


class FaultProxy:
    def __init__(self, upstream, port=0):
        self.upstream = upstream
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.delay_ms = 0
        self.refuse = False
        self.lock = threading.Lock()
        self.pairs = set()
        self.cut_after_bytes = None
        self.hold = None
        self.held = 0
        self.stall = None
        self.stalled = 0
        self.stalling = 0
        self.fail_statuses = []
        self.fail_left = 0
        self.fail_match = b""
        self.fail_retry_after_ms = None
        self.failed = 0
        self.lose_match = None
        self.lose_left = 0
        self.lost = 0
        self.connections = 0
        self.cuts = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self.running = False
        self.thread = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.running = False
        self.listener.close()
        self.cut()
        if self.thread:
            self.thread.join(5)

    @staticmethod
    def _reset(sock):
        """Closes with an RST (SO_LINGER 0), not a polite FIN."""
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            sock.close()
        except OSError:
            pass

    def cut(self):
        """Resets every open connection, both sides."""
        with self.lock:
            pairs = list(self.pairs)
            self.pairs.clear()
            self.cuts += len(pairs)
        for client, server in pairs:
            self._reset(client)
            self._reset(server)

    def cut_after(self, n):
        with self.lock:
            self.cut_after_bytes = n

    def fail_requests(self, status, count, match=b"", retry_after_ms=None):
        """Answers the next `count` requests whose head holds `match` with `status` (an int, or a
        list used in turn) instead of forwarding them; 200 answers `{}`: the request is
        acknowledged and lost."""
        with self.lock:
            self.fail_statuses = list(status) if isinstance(status, (list, tuple)) else [status]
            self.fail_left = count
            self.fail_match = match
            self.fail_retry_after_ms = retry_after_ms

    def lose_answers(self, match, count=1):
        """Forwards the next `count` requests holding `match`, and swallows everything the server
        sends back on their connections."""
        with self.lock:
            self.lose_match = match
            self.lose_left = count

    def _take_loss(self, data):
        if not self.lose_left or self.lose_match is None or self.lose_match not in data:
            return False
        with self.lock:
            if self.lose_left <= 0:
                return False
            self.lose_left -= 1
            self.lost += 1
            return True

    def _wait_stall(self, data):
        """Keeps a chunk holding `stall` here until `stall` is None again (or the proxy stops)."""
        match = self.stall
        if match is None or match not in data:
            return
        with self.lock:
            self.stalled += 1
            self.stalling += 1
        try:
            while self.running and self.stall is not None:
                time.sleep(0.01)
        finally:
            with self.lock:
                self.stalling -= 1

    METHODS = (b"GET ", b"PUT ", b"POST ", b"DELETE ", b"HEAD ", b"OPTIONS ", b"PATCH ")

    def _take_failure(self, data):
        """The status to answer this chunk with, if it starts a request to fail, else None."""
        if not self.fail_left or not data.startswith(self.METHODS):
            return None
        with self.lock:
            if self.fail_left <= 0 or self.fail_match not in data.split(b"\r\n", 1)[0]:
                return None
            self.fail_left -= 1
            status = self.fail_statuses[self.failed % len(self.fail_statuses)]
            self.failed += 1
            return status

    def _answer(self, client, data, status):
        """Reads the rest of the request (headers, then a Content-Length body: a client that is
        still writing when the socket closes would get an RST instead of the answer), then answers
        it with `status` and closes."""
        client.settimeout(5)
        try:
            while b"\r\n\r\n" not in data:
                more = client.recv(65536)
                if not more:
                    return
                data += more
            head, body = data.split(b"\r\n\r\n", 1)
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip() or 0)
            while len(body) < length:
                more = client.recv(65536)
                if not more:
                    return
                body += more
            reason = {200: "OK", 429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
                      503: "Service Unavailable", 504: "Gateway Timeout"}.get(status, "Error")
            extra = ""
            if status == 429:
                ms = self.fail_retry_after_ms or 0
                payload = ('{"errcode":"M_LIMIT_EXCEEDED","error":"Too Many Requests","retry_after_ms":%d}'
                           % ms).encode()
                extra = "Retry-After: %d\r\n" % max(1, (ms + 999) // 1000) if ms else ""
            elif status == 200:  # acknowledged, never forwarded: a request lost on the way
                payload = b"{}"
            else:
                payload = b'{"errcode":"M_UNKNOWN","error":"injected by fault_proxy"}'
            client.sendall(("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                            "%sConnection: close\r\n\r\n" % (status, reason, len(payload), extra)).encode()
                           + payload)
            client.shutdown(socket.SHUT_WR)
        except (OSError, ValueError):
            pass

    def _accept(self):
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.refuse:
                self._reset(client)
                with self.lock:
                    self.cuts += 1
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                self._reset(client)
                continue
            with self.lock:
                self.connections += 1
                limit, self.cut_after_bytes = self.cut_after_bytes, None
                self.pairs.add((client, server))
            threading.Thread(target=self._pump, args=(client, server, limit), daemon=True).start()

    def _pump(self, client, server, limit):
        """Forwards both ways until either side closes, or the pair is cut."""
        down = 0
        holding = False
        losing = False
        try:
            while self.running:
                try:
                    ready, _, _ = select.select([client, server], [], [], 0.5)
                except (OSError, ValueError):
                    break
                for src in ready:
                    dst = server if src is client else client
                    data = src.recv(65536)
                    if not data:
                        raise EOFError
                    if src is client and not holding:
                        status = self._take_failure(data)
                        if status is not None:
                            self._answer(client, data, status)
                            raise EOFError
                    if src is client and (holding or (self.hold and self.hold in data)):
                        if not holding:
                            with self.lock:
                                self.held += 1
                        holding = True
                        continue
                    if src is client:
                        self._wait_stall(data)
                    if src is client and not losing:
                        losing = self._take_loss(data)
                    if src is server and losing:
                        continue
                    if self.delay_ms:
                        time.sleep(self.delay_ms / 1000)
                    if src is server and limit is not None and down + len(data) > limit:
                        dst.sendall(data[:max(0, limit - down)])
                        raise ConnectionResetError("cut after %d bytes" % limit)
                    dst.sendall(data)
                    with self.lock:
                        if src is client:
                            self.bytes_up += len(data)
                        else:
                            self.bytes_down += len(data)
                            down += len(data)
        except ConnectionResetError as e:
            if "cut after" in str(e):
                with self.lock:
                    self.cuts += 1
                self._reset(client)
                self._reset(server)
        except (EOFError, OSError):
            pass
        finally:
            with self.lock:
                self.pairs.discard((client, server))
            for s in (client, server):
                try:
                    s.close()
                except OSError:
                    pass
