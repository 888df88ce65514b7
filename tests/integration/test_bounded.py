# SPDX-License-Identifier: MIT
"""Bounded work and control characters (issue #18, points 4 and 5), against the real daemon and a
real redis-server; the homeserver is tests/support/fake_homeserver.py (no Synapse needed: the
daemon's application-service endpoint is driven directly, as Synapse would).

- One transaction of 5,000 events over 5,000 rooms, the homeserver answering every request in
  40 ms: the daemon's peak resident memory (VmHWM) stays under RSS_BOUND_MB, /healthz answers
  within HEALTHZ_MAX_MS all along (polled every 20 ms by a process of its own, from before the
  transaction to the last reply), and every event is answered exactly once (one reply group per
  room: the replies' transaction ids carry the hash of the event they answer).
- A message with control characters is cleaned before anything is stored, then answered: through
  the application service, and through the web chat, whose stored history holds the cleaned text
  the router accepted. A message of nothing but control characters is refused politely (French)
  and stores nothing.

Figures (2-core machine shared with other jobs, load average 7 to 12; max of about 6,000 polls):

  build                             peak RSS (start)   /healthz max        transaction   all replies
  main, ASan, 16 MB quarantine       414 MB (59)       9,749 ms, 503s         43.9 s        288 s
  main, ASan, default quarantine     812 MB (62)       5,709 ms, 503s          6.6 s        234 s
  bounded, ASan, 16 MB quarantine    105-109 MB (60)   53-150 ms              5.3-6.9 s     143-148 s
  bounded, Debug                      50 MB (26)       135 ms (65 in txn)      3.4 s        145 s

The replies take about 150 s because the HTTP client keeps 8 connections to the homeserver (40 ms
each: 200 requests/s for 10,000 replies). On main, thousands of typing and receipt requests queued
with the replies timed out and made replies resent; now courtesies beyond
matrix.max_best_effort_in_flight are dropped (about 16,800 of 20,000 here) and none time out.
The /healthz polls over 100 ms left are rare (none to 3 in 6,000: the best ASan run had a 53 ms
maximum) and come in the replies phase, when the daemon mostly waits for the homeserver; some
coincide with the poller's own Redis PING being slow too (the machine), not all. The test prints
both. With FB_TEST_TIMEOUT_MULTIPLIER=3 (`make test`'s sanitizer build) the bound is 300 ms."""
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid

import pytest
import yaml

from conftest import BINARY, Daemon, wait_until

SUPPORT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support")
sys.path.insert(0, SUPPORT)
from fake_homeserver import FakeHomeserver  # noqa: E402

AS_USER = "@frichebot:localhost"
EVENTS = 5000
HS_DELAY_S = 0.040
# /healthz's bound, as issue #18 asks; scaled by FB_TEST_TIMEOUT_MULTIPLIER like every timeout of the
# unit runner (`make test` sets 3 for its sanitizer build, whose code runs several times slower).
HEALTHZ_MAX_MS = 100.0 * float(os.environ.get("FB_TEST_TIMEOUT_MULTIPLIER") or 1)
# The daemon's peak resident memory over the 5,000-event transaction, the documented bound: 50 MB
# measured in a Debug build, 105 MB under AddressSanitizer (its shadow memory, with a 16 MB
# quarantine: start_as_daemon()); on main 215 MB plain (issue #18), 414 MB under ASan (same
# quarantine).
RSS_BOUND_MB = int(os.environ.get("FB_TEST_RSS_BOUND_MB", "160"))


def as_yaml(hs_url, registration, port, matrix_extra="", router_extra=""):
    return f"""matrix:
  enabled: true
  mode: appservice
  homeserver: "{hs_url}"
  user_id: "{AS_USER}"
{matrix_extra}  appservice:
    registration_file: "{registration}"
    id: "frichebot"
    url: "http://127.0.0.1:{port}"
router:
{router_extra}  outbox_retry:
    delays_ms: [100, 200, 500, 1000]
    jitter_percent: 0
    max_attempts: 0
"""


def start_as_daemon(tmp_path, redis, hs, matrix_extra=os.environ.get("FB_TEST_MATRIX_EXTRA", ""), router_extra=""):
    d = Daemon(tmp_path, redis.address, idle_timeout_s=60, max_body_bytes=8 << 20)
    registration = tmp_path / "registration.yaml"
    d.settings["extra"] = as_yaml(hs.url, registration, d.port, matrix_extra, router_extra)
    d.write_config()
    out = subprocess.run([BINARY, "matrix-registration", "-c", str(d.config_path)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    reg = yaml.safe_load(registration.read_text())
    # Under AddressSanitizer, freed memory waits in its quarantine (256 MB by default) before it is
    # reused: resident memory would then measure the sanitizer, not the daemon. A small quarantine
    # keeps the use-after-free checks; a plain build ignores the variable.
    asan = os.environ.get("ASAN_OPTIONS", "")
    d.start(env={"ASAN_OPTIONS": (asan + ":" if asan else "") + "quarantine_size_mb=16"})
    assert wait_until(lambda: adapter_state(d) == "ok", 20), d.read_log()[-3000:]
    return d, reg["hs_token"]


def adapter_state(d):
    try:
        status, health = d.json("/healthz")
    except OSError:
        return None
    return health.get("adapters", {}).get("matrix", {}).get("state") if status == 200 else None


def put_txn(d, txn_id, body, token, timeout=300):
    """PUTs a transaction as Synapse does: a retryable answer (429, 5xx, no answer) is retried
    with the same id after a back-off. Returns (status, body, attempts)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    delay, attempts, end = 0.2, 0, time.monotonic() + timeout
    while True:
        attempts += 1
        try:
            status, _, out = d.request(f"/_matrix/app/v1/transactions/{urllib.parse.quote(txn_id)}", "PUT",
                                       data, headers, timeout=120)
        except OSError:
            status, out = 0, b""
        if status == 200 or (status and status < 500 and status != 429) or time.monotonic() > end:
            return status, out, attempts
        time.sleep(delay)
        delay = min(delay * 2, 5)


def message(room, sender, text):
    return {"type": "m.room.message", "room_id": room, "sender": sender, "event_id": "$" + secrets.token_hex(12),
            "origin_server_ts": int(time.time() * 1000), "content": {"msgtype": "m.text", "body": text}}


def vm_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def metric(d, name):
    status, _, body = d.request("/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            yield line


def replies_by_room(hs):
    """room -> {event hash: set of reply indexes}: the reply txn ids are "<hash>.<index>", the hash
    that of the inbound event; one hash per room means one event answered, once."""
    out = {}
    for room, txn, _ in hs.snapshot("sends"):
        h, _, idx = txn.rpartition(".")
        out.setdefault(room, {}).setdefault(h, set()).add(idx)
    return out


@pytest.fixture
def homeserver():
    hs = FakeHomeserver(delay_s=HS_DELAY_S).start()
    yield hs
    hs.stop()


def test_one_transaction_of_5000_events_over_5000_rooms_stays_bounded(redis, homeserver, tmp_path):
    d, hs_token = start_as_daemon(tmp_path, redis, homeserver)
    poller = None
    try:
        nonce = secrets.token_hex(3)
        rooms = [f"!r{nonce}x{i}:loadtest" for i in range(EVENTS)]
        events = [message(room, f"@u{i}:loadtest", "bonjour") for i, room in enumerate(rooms)]
        body = json.dumps({"events": events}).encode()
        pid = d.proc.pid
        rss_start = vm_kib(pid, "VmRSS")

        # /healthz polled all along, from before the transaction to the last reply, by a process
        # of its own (the homeserver's threads share this one's interpreter lock).
        poller = subprocess.Popen([sys.executable, os.path.join(SUPPORT, "healthz_poller.py"), d.url("/healthz"),
                                   "0.02", str(redis.port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        time.sleep(2)  # a baseline: the daemon idle
        t0 = time.monotonic()
        status, out, attempts = put_txn(d, "load-" + nonce, body, hs_token)
        t_txn = time.monotonic() - t0
        assert status == 200, (status, out, d.read_log()[-3000:])
        done = wait_until(lambda: len(replies_by_room(homeserver)) >= EVENTS
                          and redis.cli("ZCARD", "fb:{g}:outbox:pending") == "0", 300, 0.2)
        t_all = time.monotonic() - t0
        time.sleep(0.5)
        out, _ = poller.communicate(timeout=30)
        rows = [line.split() for line in out.splitlines() if line.strip()]
        lat = [(float(ms), int(status), float(at)) for at, ms, status, _ in rows]
        redis_ms = [(float(rms), float(at)) for at, _, _, rms in rows]
        peak_kib = vm_kib(pid, "VmHWM")
        by_room = replies_by_room(homeserver)
        worst = max(ms for ms, _, _ in lat)
        print(f"\n5000 events: transaction answered in {t_txn:.1f} s ({attempts} attempt(s)), all replies in "
              f"{t_all:.1f} s; RSS {rss_start // 1024} MB at start, peak {peak_kib // 1024} MB; /healthz "
              f"max {worst:.1f} ms over {len(lat)} polls; homeserver: {len(homeserver.snapshot('sends'))} sends, "
              f"{len(homeserver.snapshot('typing'))} typing, {len(homeserver.snapshot('receipts'))} receipts, "
              f"peak {homeserver.peak_concurrent} requests at once")
        phases = {"before": [ms for ms, _, at in lat if at < t0],
                  "transaction": [ms for ms, _, at in lat if t0 <= at < t0 + t_txn],
                  "replies": [ms for ms, _, at in lat if at >= t0 + t_txn]}
        print("/healthz max by phase (ms):", {k: round(max(v or [0])) for k, v in phases.items()},
              "polls over 100 ms:", {k: sum(ms >= 100 for ms in v) for k, v in phases.items()},
              "polls over 50 ms (s after the PUT, ms):", [(round(at - t0, 2), round(ms)) for ms, _, at in lat if ms >= 50])
        print("Redis PING straight from the poller: max", round(max(ms for ms, _ in redis_ms)), "ms; over 50 ms:",
              [(round(at - t0, 2), round(ms)) for ms, at in redis_ms if ms >= 50])
        for line in list(metric(d, "frichebot_matrix_best_effort_dropped_total")) + \
                list(metric(d, "frichebot_outbox_sending")) + list(metric(d, "frichebot_router_busy_total")):
            print(line)
        assert done, (len(by_room), d.read_log()[-3000:])
        # Every room answered, each by the replies of one event (no event handled twice).
        assert len(by_room) == EVENTS
        twice = {room: groups for room, groups in by_room.items() if len(groups) != 1}
        assert not twice, list(twice.items())[:5]
        assert set(by_room) == set(rooms)
        assert all(status == 200 for _, status, _ in lat), [x for x in lat if x[1] != 200][:5]
        assert worst < HEALTHZ_MAX_MS, sorted(ms for ms, _, _ in lat)[-10:]
        assert peak_kib // 1024 < RSS_BOUND_MB, (rss_start, peak_kib)
    finally:
        if poller is not None and poller.poll() is None:
            poller.kill()
            poller.wait()
        rc, log = d.stop()
    d.check_clean(rc, log)


def test_a_full_router_answers_the_homeserver_503_then_takes_the_transaction(redis, tmp_path):
    """Backpressure: with room for one event in the router (router.max_queued_events: 1), a
    transaction whose first event finds it taken by another transaction's is answered 503 at once
    (retryable: the homeserver sends it again), counted, and handled when sent again; every event
    of both answered once."""
    hs = FakeHomeserver().start()
    d = None
    try:
        d, hs_token = start_as_daemon(tmp_path, redis, hs, matrix_extra="  max_events_in_flight: 1\n",
                                      router_extra="  max_queued_events: 1\n")
        nonce = secrets.token_hex(3)
        rooms_a = [f"!a{nonce}x{i}:bp" for i in range(300)]
        rooms_b = [f"!b{nonce}x{i}:bp" for i in range(3)]
        body_a = {"events": [message(r, "@u:bp", "bonjour") for r in rooms_a]}
        body_b = {"events": [message(r, "@v:bp", "bonjour") for r in rooms_b]}
        result_a = {}
        ta = threading.Thread(target=lambda: result_a.update(r=put_txn(d, "a-" + nonce, body_a, hs_token)))
        ta.start()
        # Once A is being handled (its first replies out), B: one attempt, as a homeserver makes it.
        assert wait_until(lambda: len(hs.snapshot("sends")) > 0, 30), d.read_log()[-3000:]
        status, _, out = d.request(f"/_matrix/app/v1/transactions/b-{nonce}", "PUT", json.dumps(body_b).encode(),
                                   {"Content-Type": "application/json", "Authorization": f"Bearer {hs_token}"})
        first_b = (status, out)
        refused = [line for line in metric(d, "frichebot_matrix_transactions_refused_total")
                   if 'reason="router_full"' in line]
        # Sent again (with back-off) until taken.
        status_b = put_txn(d, "b-" + nonce, body_b, hs_token)[0]
        ta.join(300)
        assert first_b[0] == 503 and json.loads(first_b[1])["errcode"] == "M_UNKNOWN", first_b
        assert refused and float(refused[0].split()[-1]) >= 1, refused
        assert result_a["r"][0] == 200 and status_b == 200, (result_a, status_b)
        assert wait_until(lambda: set(replies_by_room(hs)) >= set(rooms_a + rooms_b), 120), d.read_log()[-3000:]
        by_room = replies_by_room(hs)
        assert all(len(by_room[r]) == 1 for r in rooms_a + rooms_b)
    finally:
        if d is not None:
            rc, log = d.stop()
            d.check_clean(rc, log)
        hs.stop()


# -- control characters (issue #18, point 5) -----------------------------------------------------

CONTROLS = "\x02saint\x01 di\u0085zier\x1b\x7f\r\n"
CLEANED = "saint dizier\n"


def test_control_characters_through_the_appservice_are_cleaned_and_answered(redis, tmp_path):
    hs = FakeHomeserver().start()
    d = None
    try:
        d, hs_token = start_as_daemon(tmp_path, redis, hs)
        room = "!ctl" + secrets.token_hex(3) + ":localhost"
        me = "@owner:localhost"
        join = {"type": "m.room.member", "room_id": room, "sender": AS_USER, "state_key": AS_USER,
                "event_id": "$j" + secrets.token_hex(6), "content": {"membership": "join"}}
        assert put_txn(d, "j-" + secrets.token_hex(4), {"events": [join]}, hs_token)[0] == 200
        assert wait_until(lambda: any("Dans quelle commune" in (c or {}).get("body", "")
                                      for r, _, c in hs.snapshot("sends") if r == room), 20)
        assert put_txn(d, "c-" + secrets.token_hex(4), {"events": [message(room, me, CONTROLS)]}, hs_token)[0] == 200
        # Answered as "saint dizier": the next question of the friche dialog.
        assert wait_until(lambda: any("Pour qui faites-vous" in (c or {}).get("body", "")
                                      for r, _, c in hs.snapshot("sends") if r == room), 20), \
            ([c.get("body") for r, _, c in hs.snapshot("sends") if r == room], d.read_log()[-3000:])
        # Nothing but control characters: a polite notice, nothing stored, and the dialog unchanged.
        n = len([1 for r, _, _ in hs.snapshot("sends") if r == room])
        session = redis.cli("HGET", f"fb:{{c:matrix:{room}}}:session", "v")
        assert put_txn(d, "z-" + secrets.token_hex(4), {"events": [message(room, me, "\x01\x02\x1b\u0085")]},
                       hs_token)[0] == 200
        assert wait_until(lambda: len([1 for r, _, _ in hs.snapshot("sends") if r == room]) > n, 20)
        notice = [c for r, _, c in hs.snapshot("sends") if r == room][n:]
        assert any("caractères de contrôle" in (c or {}).get("body", "") for c in notice), notice
        assert redis.cli("HGET", f"fb:{{c:matrix:{room}}}:session", "v") == session
    finally:
        if d is not None:
            rc, log = d.stop()
            d.check_clean(rc, log)
        hs.stop()


def test_control_characters_through_the_web_chat_are_cleaned_before_the_history(redis, make_daemon):
    from test_webchat import Chat, history, start_daemon  # noqa: E402 (the web chat's helpers)
    d = start_daemon(make_daemon, redis, extra="dialogs:\n  path: \"" + os.path.join(
        os.environ.get("FB_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")),
        "dialogs", "friche.yaml") + "\"\n")
    chat = Chat(d)
    asked = chat.wait_bot("Dans quelle commune")
    mid = uuid.uuid4().hex
    chat.send({"type": "message", "id": mid, "text": CONTROLS})
    chat.wait_for(lambda f: f["type"] == "ack" and f["id"] == mid, what="ack")
    chat.wait_bot("Pour qui faites-vous", asked["seq"])
    entries = history(redis, chat.token)
    mine = [e for e in entries if e.get("from") == "user"]
    assert [e["text"] for e in mine] == [CLEANED], entries
    # Nothing but control characters: refused politely, nothing stored.
    n = len(entries)
    mid2 = uuid.uuid4().hex
    chat.send({"type": "message", "id": mid2, "text": "\x01\x02\x1b\u0085"})
    err = chat.wait_for(lambda f: f["type"] == "error" and f.get("id") == mid2, what="error")
    assert "caractères de contrôle" in err["message"], err
    time.sleep(0.3)
    assert len(history(redis, chat.token)) == n
    chat.close()
