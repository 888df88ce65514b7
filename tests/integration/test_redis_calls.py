# SPDX-License-Identifier: MIT
"""Redis work per web message and per Matrix appservice event (issue 17, point 1), read from
Redis's own `INFO commandstats`, so that a change that adds a round trip, a command or an EVAL to
the hot path fails here (the appservice's: test_appservice_message_redis_calls, at the end).

A dialog that answers every message with exactly one reply (the question again) runs on the real
daemon; one conversation sends N messages, each after the previous one's reply, as the page does.
Every command Redis ran while they went through is counted, those run inside scripts included
(commandstats counts them), the background's (the recovery scan, the durability beat and the
reminders' poll, slowed down here) being measured on the same Redis, idle, for as long, and taken
off. The daemon's own count of answered commands (`frichebot_redis_rtt_seconds_count`, one per
request it sent) gives the round trips.

What one message costs since issue 17 (READ, then COMMIT with the user's and the bot's history
entries written by the web adapter's fragment, the history being the replies' delivery: no
outbox, no POP; measured on this dialog: 10.0 commands, 2 round trips, no PEXPIRE (12.0 while
READ was a script and COMMIT looked at the dedupe mark again); 21.2, 3 and 1
while the replies still went through the outbox, 28.2 and 5 before the web history rode on
COMMIT, with an append script of its own for the user's message and for each reply; the code
before issue 17's work took 50.2 commands, 8 round trips of which 3 EVAL, and 11 PEXPIRE):
- no `EVAL` at all (the body sent and hashed at every call), only `EVALSHA`;
- at most BUDGET_COMMANDS commands, BUDGET_ROUND_TRIPS round trips, MAX_PEXPIRE `PEXPIRE`s.
The same dialog with an inactivity reminder (`relance`, re-armed at every question, as in the
real dialogs) costs 12.0: the schedule's `HSET` and `ZADD` (13.0 while every user event pushed
the armed reminders back itself, reading them with `HGETALL`, and 15.0 before READ went plain and
COMMIT stopped reading the dedupe mark again; the push-back is lazy since, done when a reminder
falls due: docs/internals/REMINDERS.md; 17.0 while that push-back also moved the reminder the
schedule sets again, and the schedule set the reminders' TTL every time).
The issue's targets: at most 12 commands and 3 round trips per message, both met (see
docs/internals/REDIS.md, "Redis work per message"); these budgets are what the code reaches
today, never raised without a reason in the commit."""
import os
import re
import subprocess
import sys
import time

import pytest
import yaml

from conftest import BINARY, redis_connected, wait_until
from test_bounded import AS_USER, adapter_state, as_yaml, message, put_txn
from test_webchat import Chat, new_id, web_yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from fake_homeserver import FakeHomeserver  # noqa: E402

N = 100
BUDGET_COMMANDS = 10.1   # issue 17 target: 12 (10.0 measured, plus the background's noise)
BUDGET_WITH_REMINDER = 12.1  # 12.0 measured: the schedule's HSET and ZADD (13.0 with the
                             # eager push-back's HGETALL)
BUDGET_ROUND_TRIPS = 2   # issue 17 target: 3 (READ and COMMIT)
MAX_PEXPIRE = 0.05       # only the TTLs' refresh every 1/100 of them (was 11 per message, then 1)
PENDING = "fb:{g}:outbox:pending"

ONE_REPLY = """\
dialogue: calls
debut: q
etats:
  q:
    question: "Votre message ?"
    type: texte
    max: 200
    suite: q
"""
WITH_REMINDER = ONE_REPLY.replace("debut: q\n", "debut: q\nrelance:\n  apres: 6 semaines\n")


def commandstats(redis):
    """{command: calls} from INFO commandstats (CONFIG and INFO themselves left out)."""
    out = {}
    for line in redis.cli("INFO", "commandstats").splitlines():
        m = re.match(r"cmdstat_([^:]+):calls=(\d+)", line.strip())
        if m and not m.group(1).startswith(("config", "info")):
            out[m.group(1)] = int(m.group(2))
    return out


def net_of_idle(redis, busy, elapsed, n):
    """The commands of a run (`busy`, counted since a RESETSTAT) less those an idle daemon and
    Redis make over as long (`elapsed` s, counted now), each and all divided by `n`:
    (work, {command: per unit}, commands per unit)."""
    redis.cli("CONFIG", "RESETSTAT")
    time.sleep(elapsed)
    idle = commandstats(redis)
    work = {k: v - idle.get(k, 0) for k, v in busy.items()}
    return work, {k: v / n for k, v in sorted(work.items()) if v > 0}, sum(work.values()) / n


def metric(d, name):
    """The integer value of the metric line `name` (with its labels) in /metrics."""
    status, _, body = d.request("/metrics")
    assert status == 200
    m = re.search(rb"^" + re.escape(name.encode()) + rb" (\d+)", body, re.M)
    assert m, f"no {name} in /metrics"
    return int(m.group(1))


def round_trips(d):
    return metric(d, "frichebot_redis_rtt_seconds_count")


def exchange(chat, text):
    """Sends `text`, waits for its echo, its ack and then the bot's reply after it."""
    mid = new_id()
    chat.send({"type": "message", "id": mid, "text": text})
    echo = chat.wait_for(lambda f: f["type"] == "msg" and f.get("id") == mid, what="the echo")
    chat.wait_for(lambda f: f["type"] == "ack" and f["id"] == mid, what=f"ack of {mid}")
    chat.wait_bot("Votre message", after=echo["seq"])


@pytest.mark.parametrize("text,budget", [(ONE_REPLY, BUDGET_COMMANDS),
                                         (WITH_REMINDER, BUDGET_WITH_REMINDER)],
                         ids=["no_reminder", "reminder"])
def test_web_message_redis_calls(redis, make_daemon, tmp_path, text, budget):
    dialog = tmp_path / "calls.yaml"
    dialog.write_text(text)
    extra = (f'dialogs:\n  path: "{dialog}"\n' + web_yaml(messages_per_minute=10000)
             + "reminders:\n  poll_interval_ms: 600000\n")
    d = make_daemon(redis.address, start=False, idle_timeout_s=120, extra=extra)
    d.start(env={"FB_TEST_REDIS_BEAT_MS": "3600000"})  # test builds: the durability beat, slowed
    assert wait_until(lambda: redis_connected(d), 20), d.read_log()
    chat = Chat(d)
    chat.wait_bot("Votre message")
    # Warm-up: every script of the path used once (a fresh Redis answers NOSCRIPT to the first
    # call of each, which the client answers with SCRIPT LOAD).
    for i in range(3):
        exchange(chat, f"warm-up {i}")
    assert wait_until(lambda: redis.cli("ZCARD", PENDING) == "0", 10)

    rt0 = round_trips(d)  # before the reset: /metrics runs the stats' script, not a message's work
    redis.cli("CONFIG", "RESETSTAT")
    t0 = time.monotonic()
    for i in range(N):
        exchange(chat, f"message {i}")
    assert wait_until(lambda: redis.cli("ZCARD", PENDING) == "0", 10), "the outbox did not drain"
    busy = commandstats(redis)
    elapsed = time.monotonic() - t0
    rt = round_trips(d) - rt0

    work, per_msg, commands = net_of_idle(redis, busy, elapsed, N)
    chat.close()

    print(f"\nper web message ({N} messages, one reply each): {commands:.2f} Redis commands, "
          f"{rt / N:.2f} round trips; {per_msg}")
    assert busy.get("eval", 0) == 0, f"EVAL on the hot path: {busy}"
    assert work.get("evalsha", 0) > 0, busy
    assert commands <= budget, f"{commands:.2f} commands per message: {per_msg}"
    assert rt / N <= BUDGET_ROUND_TRIPS + 0.2, f"{rt / N:.2f} round trips per message"
    assert work.get("pexpire", 0) / N <= MAX_PEXPIRE, per_msg


# ---- the Matrix application service (issue 17, point 1) ----
#
# One transaction of one m.room.message "aide" (the friche dialog: two replies, its inactivity
# reminder armed), as bench/bench_appservice.c sends, to a daemon in appservice mode whose
# homeserver is tests/support/fake_homeserver.py; each transaction after the previous one's two
# replies reached it. Measured per transaction: 12.0 commands, 3 round trips (READ, COMMIT with the
# transaction's mark, one POP for both replies), 2 EVALSHA, no PEXPIRE; 14.0 while every event
# pushed the armed reminder back (HGETALL, ZADD XX: the push-back is lazy since), 17.0 and 3
# EVALSHA while READ was a script, COMMIT looked at the dedupe mark again and POP read the
# entries before it trimmed them. Before (main, 7 December 2026): 23.0 commands, 6 round trips
# (the mark read first, its own script after, one POP per reply), 5 EVALSHA, 1 PEXPIRE (the
# outbox's, at every event). What is left: docs/internals/REDIS.md, "Redis work per Matrix event".
AS_N = 60
AS_BUDGET_COMMANDS = 12.1   # 12.0 measured, plus the background's noise (a scan: 0.05)
AS_BUDGET_ROUND_TRIPS = 3    # issue 17 target: 3
AS_BUDGET_EVALSHA = 2.0


def test_appservice_message_redis_calls(redis, make_daemon, tmp_path):
    hs = FakeHomeserver().start()
    try:
        d = make_daemon(redis.address, start=False, idle_timeout_s=120)
        registration = tmp_path / "registration.yaml"
        d.settings["extra"] = (as_yaml(hs.url, registration, d.port,
                                       matrix_extra="  typing: false\n  read_receipts: false\n")
                               + "reminders:\n  poll_interval_ms: 600000\n")
        d.write_config()
        out = subprocess.run([BINARY, "matrix-registration", "-c", str(d.config_path)],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        token = yaml.safe_load(registration.read_text())["hs_token"]
        d.start(env={"FB_TEST_REDIS_BEAT_MS": "3600000"})  # test builds: the durability beat, slowed
        assert wait_until(lambda: adapter_state(d) == "ok", 20), d.read_log()[-3000:]
        room, user = "!calls:localhost", "@owner:localhost"
        join = {"type": "m.room.member", "room_id": room, "sender": AS_USER, "state_key": AS_USER,
                "event_id": "$join-calls", "origin_server_ts": int(time.time() * 1000),
                "content": {"membership": "join"}}
        assert put_txn(d, "join-calls", {"events": [join]}, token)[0] == 200

        def sends():
            return len(hs.snapshot("sends"))

        assert wait_until(lambda: sends() >= 2, 10), d.read_log()[-3000:]  # the greeting

        outbox = f"fb:{{c:matrix:{room}}}:outbox"
        polls = [0]

        def drained():
            polls[0] += 1
            return redis.cli("EXISTS", outbox) == "0"

        def exchange(i):
            """One transaction, once the previous one's replies are sent and popped (a COMMIT
            answered while the outbox is busy hands it no head, and a HEAD reads it: the bench's
            closed loop pays that sometimes, this count does not)."""
            n = sends()
            assert put_txn(d, f"calls-{i}", {"events": [message(room, user, "aide")]}, token)[0] == 200
            assert wait_until(lambda: sends() >= n + 2, 10), (i, d.read_log()[-3000:])
            assert wait_until(drained, 10), (i, d.read_log()[-3000:])

        for i in range(3):  # warm-up: every script of the path loaded once
            exchange(f"w{i}")
        assert wait_until(lambda: redis.cli("ZCARD", PENDING) == "0", 10)

        rt0 = round_trips(d)
        redis.cli("CONFIG", "RESETSTAT")
        polls[0] = 0
        t0 = time.monotonic()
        for i in range(AS_N):
            exchange(i)
        busy = commandstats(redis)
        busy["exists"] = busy.get("exists", 0) - polls[0]  # this test's own polls
        assert redis.cli("ZCARD", PENDING) == "0"
        elapsed = time.monotonic() - t0
        rt = round_trips(d) - rt0
        work, per_event, commands = net_of_idle(redis, busy, elapsed, AS_N)
    finally:
        hs.stop()

    print(f"\nper appservice event ({AS_N} transactions of one \"aide\", two replies each): "
          f"{commands:.2f} Redis commands, {rt / AS_N:.2f} round trips; {per_event}")
    assert busy.get("eval", 0) == 0, f"EVAL on the hot path: {busy}"
    assert commands <= AS_BUDGET_COMMANDS, f"{commands:.2f} commands per event: {per_event}"
    assert rt / AS_N <= AS_BUDGET_ROUND_TRIPS + 0.2, f"{rt / AS_N:.2f} round trips per event"
    assert work.get("evalsha", 0) / AS_N <= AS_BUDGET_EVALSHA + 0.05, per_event
    assert work.get("pexpire", 0) / AS_N <= MAX_PEXPIRE, per_event


def test_commit_whose_answer_is_lost_is_written_once(redis, make_daemon, tmp_path):
    """A COMMIT that Redis ran but whose answer never came back (a fault proxy between the daemon
    and Redis forwards it and swallows what Redis sends back on that connection): the daemon
    resends it on a new connection after command_timeout_ms, and the resend finds the session's
    last write is its own (the write id is the event's; issue 17: COMMIT no longer reads the
    dedupe mark for a session it read) and answers as a duplicate. The reply reaches the page
    once (from the history, the web's catch-up), the session moved by one version, one dedupe
    mark, nothing written twice."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
    from fault_proxy import FaultProxy
    proxy = FaultProxy(("127.0.0.1", redis.port)).start()
    try:
        dialog = tmp_path / "calls.yaml"
        dialog.write_text(ONE_REPLY)
        extra = (f'dialogs:\n  path: "{dialog}"\n' + web_yaml(messages_per_minute=10000)
                 + "reminders:\n  poll_interval_ms: 600000\n")
        d = make_daemon(f"tcp://127.0.0.1:{proxy.port}", start=False, idle_timeout_s=120,
                        command_timeout_ms=500, extra=extra)
        d.start(env={"FB_TEST_REDIS_BEAT_MS": "3600000"})
        assert wait_until(lambda: redis_connected(d), 20), d.read_log()
        chat = Chat(d)
        chat.wait_bot("Votre message")
        exchange(chat, "warm-up")  # every script of the path loaded
        key = next(k for k in redis.cli("KEYS", "fb:{c:web:*}:session").split() if k)
        v0 = int(redis.cli("HGET", key, "v"))
        marks0 = int(redis.cli("ZCARD", key.replace(":session", ":ev")))
        connections0 = proxy.connections
        dup0 = metric(d, 'frichebot_router_events_total{outcome="duplicate"}')
        conflicts0 = metric(d, "frichebot_router_conflicts_total")
        proxy.lose_answers(b"EVALSHA")
        mid = new_id()
        chat.send({"type": "message", "id": mid, "text": "perdu en route"})
        echo = chat.wait_for(lambda f: f["type"] == "msg" and f.get("id") == mid, what="the echo")
        chat.wait_bot("Votre message", after=echo["seq"])
        assert any(f["type"] == "ack" and f["id"] == mid for f in chat.frames), chat.frames
        try:  # anything sent twice would be here by now
            chat.wait_for(lambda f: False, timeout=1.5)
        except AssertionError:
            pass
        replies = [e for s, e in sorted(chat.entries.items()) if s > echo["seq"] and e["from"] == "bot"]
        assert len(replies) == 1, replies
        assert proxy.lost == 1, "the proxy lost no answer: the test did not test"
        assert proxy.connections > connections0, "no new connection: the COMMIT was not resent"
        assert int(redis.cli("HGET", key, "v")) == v0 + 1
        assert int(redis.cli("ZCARD", key.replace(":session", ":ev"))) == marks0 + 1
        # the resend answered "duplicate" by the write id, not a conflict then a READ
        assert metric(d, 'frichebot_router_events_total{outcome="duplicate"}') == dup0 + 1
        assert metric(d, "frichebot_router_conflicts_total") == conflicts0
        chat.close()
        rc, log = d.stop()
        d.check_clean(rc, log)
    finally:
        proxy.stop()
