# SPDX-License-Identifier: MIT
"""The Redis kill -9 campaign of issue 18, rerun on every `make test`: web chat conversations over
their websockets keep sending while Redis (with AOF, appendfsync everysec, then always) is killed
with SIGKILL and restarted CYCLES times; every acknowledged message must get exactly one reply.

The dialog is an echo (written here): each message is answered "Reçu : <text>.", then the question
again, so that a reply names the message it answers. Each conversation sends its messages one at a
time, as the page does: it resends a message, with the same id, until it is acknowledged (after an
`unavailable` error, or when nothing came back), then waits for its reply. At the end, with the
outbox drained, the stored history of every conversation (Redis) and the frames each websocket
received are counted: a message with no reply is lost, one with two replies is duplicated. Both
must be 0; the figures are printed (pytest -s, or the report's captured output).

Environment: FB_KILL9_CONVERSATIONS (10), FB_KILL9_MESSAGES (300 per cycle), FB_KILL9_CYCLES (3),
FB_KILL9_DOWN_S (0.5), FB_KILL9_WRITE_DEADLINE_MS (10000; below DOWN_S * 1000 the outage's
messages are refused and resent, as a page does)."""
import os
import re
import signal
import threading
import time
import uuid

import pytest

from conftest import Redis, redis_connected, wait_until
from test_webchat import Chat, history, web_yaml

CONVERSATIONS = int(os.environ.get("FB_KILL9_CONVERSATIONS", "10"))
PER_CYCLE = int(os.environ.get("FB_KILL9_MESSAGES", "300"))  # messages per cycle, all together
CYCLES = int(os.environ.get("FB_KILL9_CYCLES", "3"))
DOWN_S = float(os.environ.get("FB_KILL9_DOWN_S", "0.5"))  # how long Redis stays dead at each kill
# The daemon's redis.write_deadline_ms: longer than DOWN_S, a command waits for Redis to come
# back; shorter, the messages of the outage are refused with `unavailable` and resent.
WRITE_DEADLINE_MS = int(os.environ.get("FB_KILL9_WRITE_DEADLINE_MS", "10000"))

ECHO = """\
dialogue: echo
debut: q
etats:
  q:
    question: "Votre message ?"
    type: texte
    max: 200
    suite: r
  r:
    dire: "Reçu : {{ q }}."
    suite: q
"""


def reply_text(text):
    return f"Reçu : {text}."


class Sender(threading.Thread):
    """One conversation: sends its messages one at a time, each until acknowledged, then waits
    for its reply. Records the texts acknowledged and the bot entries received (seq -> text)."""

    def __init__(self, daemon, k):
        super().__init__(daemon=True)
        self.d = daemon
        self.k = k
        self.chat = Chat(daemon)
        self.token = self.chat.token
        self.chat.wait_bot("Votre message")
        self.todo = []           # texts still to send, in order
        self.acked = []          # texts acknowledged
        self.resends = 0
        self.error = None
        self.go = threading.Event()
        self.cycle_done = threading.Event()
        self.stop = False

    def replied(self, text):
        want = reply_text(text)
        return any(e["from"] == "bot" and e["text"] == want for e in self.chat.entries.values())

    def answer_to(self, mid, timeout):
        """The next ack or error frame for message `mid`, or None after `timeout` seconds. (Not
        Chat.wait_for, whose timeout is an AssertionError like the frame checks of Chat.recv.)"""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                f = self.chat.recv(timeout=max(0.05, end - time.monotonic()))
            except TimeoutError:
                continue
            if f.get("id") == mid and f["type"] in ("ack", "error"):
                return f
        return None

    def send_one(self, text):
        mid = uuid.uuid4().hex
        deadline = time.monotonic() + 60
        while True:
            if time.monotonic() > deadline:
                raise AssertionError(f"{text}: not acknowledged within 60 s")
            self.chat.send({"type": "message", "id": mid, "text": text})
            f = self.answer_to(mid, 15)
            if f is None:
                self.resends += 1  # nothing came back: the page resends, with the same id
                continue
            if f["type"] == "ack":
                break
            assert f["code"] in ("unavailable", "rate_limited"), f
            self.resends += 1
            time.sleep(0.2)  # the page waits retry_after; shorter here, the daemon allows it
        self.acked.append(text)
        end = time.monotonic() + 30
        while not self.replied(text):
            if time.monotonic() > end:
                raise AssertionError(f"{text}: acknowledged, no reply within 30 s")
            try:
                self.chat.recv(timeout=1)
            except TimeoutError:
                pass

    def run(self):
        try:
            while True:
                self.go.wait()
                self.go.clear()
                if self.stop:
                    return
                while self.todo:
                    self.send_one(self.todo.pop(0))
                self.cycle_done.set()
        except BaseException as e:  # reported by the test
            self.error = e
            self.cycle_done.set()


def kill_and_restart(redis):
    redis.proc.send_signal(signal.SIGKILL)
    redis.proc.wait(10)
    redis.proc = None
    time.sleep(DOWN_S)
    redis.start()  # same directory: Redis reloads its AOF


@pytest.mark.parametrize("fsync", ["everysec", "always"])
def test_redis_kill9_loses_and_duplicates_nothing(tmp_path, make_daemon, fsync):
    redis = Redis(tmp_path, fsync=fsync)
    redis.start()
    try:
        run_campaign(tmp_path, make_daemon, redis, fsync)
    finally:
        redis.stop()


def run_campaign(tmp_path, make_daemon, redis, fsync):
    dialog = tmp_path / "echo.yaml"
    dialog.write_text(ECHO)
    extra = (f'dialogs:\n  path: "{dialog}"\n'
             + web_yaml(messages_per_minute=10000, history_max=100000,
                        new_conversations_per_minute=1000))
    d = make_daemon(redis.address, idle_timeout_s=120, extra=extra,
                    extra_redis=f"  write_deadline_ms: {WRITE_DEADLINE_MS}")
    assert wait_until(lambda: redis_connected(d), 20), d.read_log()
    senders = [Sender(d, k) for k in range(CONVERSATIONS)]
    for s in senders:
        s.start()
    per_conv = max(1, PER_CYCLE // CONVERSATIONS)
    sent = 0
    t0 = time.monotonic()
    for cycle in range(CYCLES):
        for s in senders:
            s.todo = [f"c{s.k}-k{cycle}-m{i}" for i in range(per_conv)]
            sent += per_conv
            s.cycle_done.clear()
            s.go.set()
        # Kill Redis once a third of this cycle's messages are acknowledged: mid-stream.
        target = sum(len(s.acked) for s in senders) + per_conv * len(senders) // 3
        assert wait_until(lambda: sum(len(s.acked) for s in senders) >= target
                          or any(s.error for s in senders), 60)
        kill_and_restart(redis)
        for s in senders:
            assert s.cycle_done.wait(180), f"conversation {s.k} did not finish cycle {cycle}"
            assert s.error is None, f"conversation {s.k}: {s.error!r}\n{d.read_log()[-3000:]}"
    elapsed = time.monotonic() - t0
    for s in senders:
        s.stop = True
        s.go.set()
        s.join(10)

    # Everything has gone out: the outbox is empty, then count.
    assert wait_until(lambda: redis.cli("ZCARD", "fb:{g}:outbox:pending") == "0", 30)
    lost = duplicated = lost_frames = duplicated_frames = acked = 0
    for s in senders:
        stored = history(redis, s.token)
        assert [e["seq"] for e in stored] == list(range(1, len(stored) + 1))
        bot = [e["text"] for e in stored if e["from"] == "bot"]
        seen = {}
        for e in s.chat.entries.values():
            if e["from"] == "bot":
                seen[e["text"]] = seen.get(e["text"], 0) + 1
        users = [e["text"] for e in stored if e["from"] == "user"]
        assert sorted(users) == sorted(set(users)), "a user message stored twice"
        for text in s.acked:
            acked += 1
            n = bot.count(reply_text(text))
            lost += n == 0
            duplicated += n > 1
            m = seen.get(reply_text(text), 0)
            lost_frames += m == 0
            duplicated_frames += m > 1
        s.chat.close()
    resends = sum(s.resends for s in senders)
    log = d.read_log()
    losses = log.count("Redis lost its data")
    # The commands the daemon had in flight or queued when each kill cut its connection, and
    # those queued while Redis was down: the kills must have hit traffic, or nothing was tested.
    waiting = [int(n) for n in re.findall(r"connection lost \([^)]*\); (\d+) command", log)]
    queued = [int(n) for n in re.findall(r"reconnected \(attempt \d+\); sending (\d+) queued", log)]
    print(f"\nRedis kill -9 campaign, appendfsync {fsync}: {CYCLES} kill -9, {sent} messages sent "
          f"by {len(senders)} web conversations, {acked} acknowledged ({resends} resends), "
          f"{elapsed:.1f} s; lost {lost}, duplicated {duplicated} (stored history); "
          f"lost {lost_frames}, duplicated {duplicated_frames} (frames received); "
          f"data losses detected {losses}; commands cut at each kill {waiting}, "
          f"sent on reconnection {queued}")
    assert acked == sent
    assert (lost, duplicated, lost_frames, duplicated_frames) == (0, 0, 0, 0)
    assert losses == 0, log
    assert log.count("kept its data") >= CYCLES, log
    assert len(waiting) >= CYCLES and sum(waiting) + sum(queued) >= CYCLES, log
