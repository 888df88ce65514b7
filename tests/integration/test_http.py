# SPDX-License-Identifier: MIT
"""The HTTP server of the running daemon: /healthz, /metrics, 404, 405, 413, header limits, idle
timeouts, and that it keeps serving after each refusal; request framing (RFC 9112: chunked bodies
read, ambiguous Content-Length / Transfer-Encoding refused with 400 and the connection closed)."""
import json
import re
import socket
import subprocess
import time

import pytest
import yaml

from conftest import BINARY, free_port, redis_connected, wait_until


def raw_request(port, data, timeout=10):
    """Sends raw bytes and returns everything the server answers until it closes or times out."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while True:
                c = s.recv(65536)
                if not c:
                    break
                chunks.append(c)
        except socket.timeout:
            pass
        return b"".join(chunks)


def test_healthz_reports_ok_and_redis(daemon):
    status, body = daemon.json("/healthz")
    assert status == 200
    assert body["status"] == "ok"
    assert body["redis"]["connected"] is True
    assert body["redis"]["ping"] == "ok"
    assert body["redis"]["ping_ms"] >= 0
    assert body["adapters"] == {"web": {"state": "ok", "connections": 0, "conversations_online": 0}}
    assert body["draining"] is False


def test_head_healthz_has_no_body(daemon):
    status, headers, body = daemon.request("/healthz", method="HEAD")
    assert status == 200
    assert body == b""


def test_metrics_prometheus_text(daemon):
    for _ in range(3):
        assert daemon.request("/healthz")[0] == 200
    daemon.request("/nowhere")
    status, headers, body = daemon.request("/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    assert "# TYPE frichebot_uptime_seconds gauge" in text
    assert 'frichebot_http_requests_total{route="healthz",status="200"} 3' in text
    assert 'frichebot_http_requests_total{route="unknown",status="404"} 1' in text
    # Each /healthz did a PING: the round-trip histogram counted them.
    count = [l for l in text.splitlines() if l.startswith("frichebot_redis_rtt_seconds_count")]
    assert count and int(count[0].split()[1]) >= 3
    assert "frichebot_events_processed_total" in text


def test_unknown_route_is_404_json(daemon):
    status, headers, body = daemon.request("/does-not-exist")
    assert status == 404
    assert json.loads(body)["error"] == "not_found"


def test_wrong_method_is_405_with_allow(daemon):
    status, headers, body = daemon.request("/healthz", method="DELETE")
    assert status == 405
    assert headers["allow"] == "GET, HEAD"
    assert json.loads(body)["error"] == "method_not_allowed"
    assert daemon.request("/healthz")[0] == 200


def test_oversized_body_is_413_and_daemon_still_serves(daemon):
    big = b"x" * (daemon.settings["max_body_bytes"] + 1)
    status, headers, body = daemon.request("/healthz", method="POST", body=big,
                                           headers={"Content-Type": "application/json"})
    assert status == 413
    assert json.loads(body)["error"] == "body_too_large"
    # Many at once, raw, without waiting for the answer to each.
    for _ in range(5):
        answer = raw_request(daemon.port, b"PUT /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n" + b"y" * 1000)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    status, body = daemon.json("/healthz")
    assert status == 200 and body["status"] == "ok"


def test_oversized_headers_are_refused_and_daemon_still_serves(daemon):
    huge = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    answer = raw_request(daemon.port, huge)
    # libwebsockets refuses a header block over max_http_header_data: never a 200.
    assert not answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert daemon.request("/healthz")[0] == 200


def test_silent_connection_is_cut_after_idle_timeout(daemon):
    idle = daemon.settings["idle_timeout_s"]
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=idle + 10) as s:
        start = time.monotonic()
        data = s.recv(1024)  # blocks until the server closes the connection
        elapsed = time.monotonic() - start
    # recv() returned b"": the server closed the connection (our own socket timeout would have
    # raised instead), and not before the idle timeout.
    assert data == b""
    assert elapsed >= idle - 0.5, elapsed
    assert daemon.request("/healthz")[0] == 200


def test_half_sent_request_is_cut_after_idle_timeout(daemon):
    idle = daemon.settings["idle_timeout_s"]
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=idle + 10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
        data = s.recv(1024)
    assert data == b"" or not data.startswith(b"HTTP/1.1 200")


def test_keepalive_connection_serves_several_requests(daemon):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=5)
    for _ in range(3):
        conn.request("GET", "/healthz")
        r = conn.getresponse()
        assert r.status == 200
        json.loads(r.read())
    conn.close()


def test_healthz_degraded_when_redis_is_down_then_recovers(redis, make_daemon):
    d = make_daemon(redis.address)
    assert wait_until(lambda: redis_connected(d), 20), d.read_log()
    assert d.json("/healthz")[0] == 200
    redis.stop()
    assert wait_until(lambda: d.json("/healthz")[0] == 503, 10)
    status, body = d.json("/healthz")
    assert body["status"] == "degraded" and body["redis"]["connected"] is False
    redis.start()
    assert wait_until(lambda: d.json("/healthz")[0] == 200, 15), d.read_log()


# -- Request framing (RFC 9112, section 6; issue #18) -------------------------------------------

TXN = "/_matrix/app/v1/transactions/"


def exchange(port, data, wait=5.0):
    """Sends `data` (bytes, or a list of bytes sent 50 ms apart) on one connection and reads until
    the server closes it or `wait` seconds pass. Returns (statuses, closed, raw): the answers'
    status codes in order, whether the server closed
    the connection within `wait` (the daemons of these tests keep idle connections for 30 s)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        for i, part in enumerate(data if isinstance(data, list) else [data]):
            if i:
                time.sleep(0.05)
            s.sendall(part)
        chunks, closed = [], False
        end = time.monotonic() + wait
        try:
            while time.monotonic() < end:
                s.settimeout(max(0.01, end - time.monotonic()))
                c = s.recv(65536)
                if not c:
                    closed = True
                    break
                chunks.append(c)
        except socket.timeout:
            pass
        except ConnectionResetError:
            closed = True
    raw = b"".join(chunks)
    # A status line may follow a body without a line break: look for every one.
    statuses = [int(m) for m in re.findall(rb"HTTP/1\.[01] (\d{3}) ", raw)]
    return statuses, closed, raw


@pytest.fixture
def slow_daemon(redis, make_daemon):
    """A daemon that keeps idle connections for 30 s: a close seen sooner is the daemon's own."""
    d = make_daemon(redis.address, idle_timeout_s=30, keepalive_timeout_s=30)
    assert wait_until(lambda: redis_connected(d), 20), d.read_log()
    return d


@pytest.fixture
def appservice_daemon(redis, make_daemon, tmp_path):
    """A daemon in appservice mode (its homeserver unreachable: transactions need none), with 30 s
    idle timeouts. Returns (daemon, hs_token)."""
    port = free_port()
    reg = tmp_path / "registration.yaml"
    extra = f"""matrix:
  enabled: true
  mode: appservice
  homeserver: "http://127.0.0.1:9"
  user_id: "@frichebot:localhost"
  appservice:
    registration_file: "{reg}"
    id: "frichebot"
    url: "http://127.0.0.1:{port}"
"""
    d = make_daemon(redis.address, start=False, listen=f"127.0.0.1:{port}", idle_timeout_s=30,
                    keepalive_timeout_s=30, extra=extra)
    d.port = port
    d.write_config()
    out = subprocess.run([BINARY, "matrix-registration", "-c", str(d.config_path)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    d.start()
    assert wait_until(lambda: redis_connected(d), 20), d.read_log()
    return d, yaml.safe_load(reg.read_text())["hs_token"]


def txn_head(hs, txn, framing):
    return (f"PUT {TXN}{txn} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {hs}\r\n"
            f"Content-Type: application/json\r\n{framing}\r\n").encode()


def chunked(*pieces, ext=b"", trailer=b""):
    """The chunked encoding of `pieces` (bytes), one chunk each, then the last chunk."""
    out = b"".join(b"%x%s\r\n%s\r\n" % (len(p), ext, p) for p in pieces)
    return out + b"0\r\n" + trailer + b"\r\n"


def test_chunked_transaction_is_read_and_answered(appservice_daemon):
    d, hs = appservice_daemon
    # One chunk per byte group, the framing split over several writes, a chunk extension and a
    # trailer field: the decoded body is the JSON document, answered 200 at once.
    body = chunked(b'{"eve', b'nts"', b":[]}", ext=b";note=x", trailer=b"X-Trailer: 1\r\n")
    start = time.monotonic()
    statuses, closed, raw = exchange(d.port, [txn_head(hs, "c1", "Transfer-Encoding: chunked\r\n"),
                                              body[:7], body[7:20], body[20:]])
    assert statuses == [200], raw[:400]
    assert time.monotonic() - start < 5
    # Upper-case hex sizes and a single chunk, all in one write.
    statuses, _, raw = exchange(d.port, txn_head(hs, "c2", "Transfer-Encoding: Chunked\r\n")
                                + b"D\r\n" + b'{"events":[]}' + b"\r\n0\r\n\r\n")
    assert statuses == [200], raw[:400]
    # What is decoded is what the handler reads: a chunked body that decodes to well-framed JSON
    # of the wrong shape is refused by the handler (a Matrix errcode), not by the framing.
    statuses, _, raw = exchange(d.port, txn_head(hs, "c3", "Transfer-Encoding: chunked\r\n")
                                + chunked(b'{"events":', b" 3}"))
    assert statuses == [400] and b'"errcode":"M_BAD_JSON"' in raw, raw[:600]
    # The daemon goes on serving on new connections.
    assert d.request("/healthz")[0] == 200


def test_chunked_body_limit_counts_the_decoded_bytes(appservice_daemon):
    """server.max_body_bytes bounds the decoded body: exactly the limit in many small chunks (the
    framing itself well past the limit) is read and answered; one byte more is 413."""
    d, hs = appservice_daemon
    limit = d.settings["max_body_bytes"]
    doc = b'{"events":[]}'
    exact = doc + b" " * (limit - len(doc))
    pieces = [exact[i:i + 100] for i in range(0, len(exact), 100)]
    statuses, _, raw = exchange(d.port, txn_head(hs, "exact", "Transfer-Encoding: chunked\r\n") + chunked(*pieces))
    assert statuses == [200], raw[:400]
    statuses, closed, raw = exchange(d.port, txn_head(hs, "over", "Transfer-Encoding: chunked\r\n")
                                     + chunked(*pieces, b" "))
    assert statuses == [413] and closed, raw[:400]


@pytest.mark.parametrize("body", [
    b"zz\r\n{}\r\n0\r\n\r\n",                       # not hexadecimal
    b"2\r\n{}0\r\n\r\n",                            # no CRLF after the chunk's data
    b"2\n{}\n0\n\n",                                # bare LF
    b"10000000000000002\r\n{}\r\n0\r\n\r\n",         # a size over 64 bits
    b" 2\r\n{}\r\n0\r\n\r\n",                       # white space before the size
    b"\r\n",                                        # no size at all
], ids=["hex", "crlf", "lf", "overflow", "space", "empty"])
def test_malformed_chunked_body_is_400_and_closed(appservice_daemon, body):
    d, hs = appservice_daemon
    smuggled = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    statuses, closed, raw = exchange(d.port, txn_head(hs, "bad", "Transfer-Encoding: chunked\r\n") + body + smuggled)
    assert statuses == [400] and closed, raw[:400]
    assert d.request("/healthz")[0] == 200


# Header blocks whose framing is ambiguous: each is refused with 400 and the connection closed,
# whatever follows it on the connection (here a request a front proxy might have framed as a
# second one) is never answered.
AMBIGUOUS = {
    "cl_twice_differ": "Content-Length: 0\r\nContent-Length: 40\r\n",
    "cl_twice_same": "Content-Length: 0\r\nContent-Length: 0\r\n",
    "cl_plus": "Content-Length: +0\r\n",
    "cl_list": "Content-Length: 0, 0\r\n",
    "cl_space_comma": "Content-Length:  0 ,0\r\n",
    "cl_empty": "Content-Length: \r\n",
    "cl_negative": "Content-Length: -1\r\n",
    "cl_overflow": "Content-Length: 99999999999999999999999\r\n",
    "cl_hex": "Content-Length: 0x0\r\n",
    "cl_name_space": "Content-Length : 40\r\n",
    "cl_and_te": "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n",
    "cl_and_te_name_space": "Content-Length: 0\r\nTransfer-Encoding : chunked\r\n",
    "cl_and_te_name_tab": "Content-Length: 0\r\nTransfer-Encoding\t: chunked\r\n",
    "cl_and_te_xchunked": "Content-Length: 0\r\nTransfer-Encoding: xchunked\r\n",
    "te_name_leading_space": "Host2: y\r\n Transfer-Encoding: chunked\r\n",
    "te_xchunked": "Transfer-Encoding: xchunked\r\n",
    "te_chunked_identity": "Transfer-Encoding: chunked, identity\r\n",
    "te_identity": "Transfer-Encoding: identity\r\n",
    "te_twice": "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
    "te_empty": "Transfer-Encoding: \r\n",
}


@pytest.mark.parametrize("framing", list(AMBIGUOUS.values()), ids=list(AMBIGUOUS))
def test_ambiguous_framing_is_400_and_closed(slow_daemon, framing):
    smuggled = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    request = f"GET /healthz HTTP/1.1\r\nHost: x\r\n{framing}\r\n".encode() + b"0\r\n\r\n" + smuggled
    statuses, closed, raw = exchange(slow_daemon.port, request)
    assert statuses == [400], raw[:600]
    assert closed, "the connection stayed open after a 400"
    assert b"frichebot_" not in raw  # the smuggled /metrics was never answered
    assert b"connection: close" in raw.lower()
    # And the daemon keeps serving.
    assert slow_daemon.request("/healthz")[0] == 200


def test_ambiguous_framing_on_a_transaction_is_400_and_not_handled(appservice_daemon):
    d, hs = appservice_daemon
    body = b'{"events":[]}'
    for framing in ("Content-Length: 13\r\nContent-Length: 13\r\n", "Content-Length: +13\r\n",
                    "Content-Length: 13\r\nTransfer-Encoding : chunked\r\n"):
        statuses, closed, raw = exchange(d.port, txn_head(hs, "amb", framing) + body
                                         + b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert statuses == [400] and closed, (framing, raw[:600])
    # None of them was handled: the same transaction id is still new, and answered now.
    statuses, _, raw = exchange(d.port, txn_head(hs, "amb", "Content-Length: 13\r\n") + body)
    assert statuses == [200], raw[:400]
    assert b'matrix_as_txn",status="200"} 1' in d.request("/metrics")[2]


def test_body_on_a_get_is_not_taken_for_a_second_request(slow_daemon):
    """A GET with a chunked body: the body is not read (no route takes one), so the connection
    closes after the answer: what follows is never answered as a request of its own."""
    request = (b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"24\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n\r\n0\r\n\r\n")
    statuses, closed, raw = exchange(slow_daemon.port, request)
    assert statuses == [200] and closed, raw[:600]
    assert b"frichebot_" not in raw


def test_pipelined_well_formed_requests_are_all_answered(slow_daemon):
    """Strict framing does not break pipelining: two well-formed requests in one write get two
    answers, in order, on a connection that stays open."""
    request = (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
               b"GET /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    statuses, closed, raw = exchange(slow_daemon.port, request, wait=2)
    assert statuses == [200, 404] and not closed, raw[:600]


def test_websocket_upgrade_with_a_body_is_400_and_closed(slow_daemon):
    """What follows an upgrade's headers is websocket frames to the daemon, and could be a body to a
    proxy in front: an upgrade with a body or ambiguous framing is refused, the connection closed."""
    head = ("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
    for framing in ("Content-Length: 5\r\n", "Transfer-Encoding: chunked\r\n",
                    "Content-Length: 0\r\nContent-Length: 5\r\n", "Transfer-Encoding : chunked\r\n"):
        statuses, closed, raw = exchange(slow_daemon.port, (head + framing + "\r\n").encode() + b"hello")
        assert statuses == [400] and closed, (framing, raw[:400])
    # Without a body (or with an explicit empty one) the upgrade goes through.
    for framing in ("", "Content-Length: 0\r\n"):
        statuses, closed, raw = exchange(slow_daemon.port, (head + framing + "\r\n").encode(), wait=1)
        assert statuses == [101] and not closed, (framing, raw[:400])
