"""Loopback ports for the servers the tests start (Redis, Synapse, the daemon, the proxies).

A port is chosen, then the server binds it later, sometimes seconds later (the appservice tests
write the daemon's port into Synapse's registration before either starts). A port the kernel
hands out for `bind(0)` comes from the ephemeral range (`net.ipv4.ip_local_port_range`), the
range every outgoing connection also draws its source port from: a client's or Synapse's
connection could take it in between, and the server then failed with "Address already in use"
(a fresh-clone CI run failed so, once in 423 tests). The ports here are drawn at random below
that range, where only listeners bind, checked free, and never handed out twice by one process.
"""
import random
import socket

_given = set()
_rng = random.SystemRandom()


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port():
    hi = _ephemeral_low() - 1
    lo = max(1024, hi - 12000)
    for _ in range(500):
        port = _rng.randint(lo, hi)
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {lo}-{hi}")
