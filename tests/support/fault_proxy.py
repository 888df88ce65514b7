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
                    if src is client and (holding or (self.hold and self.hold in data)):
                        if not holding:
                            with self.lock:
                                self.held += 1
                        holding = True
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
