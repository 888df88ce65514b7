# SPDX-License-Identifier: MIT
"""The HTTP server of the running daemon: /healthz, /metrics, 404, 405, 413, header limits, idle
timeouts, and that it keeps serving after each refusal."""
import json
import socket
import time

from conftest import redis_connected, wait_until


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
