# SPDX-License-Identifier: MIT
"""The web chat over its websocket (docs/web-protocol.md), against the real daemon, its router
and outbox, and a real redis-server: a whole conversation of the sample dialog, duplicates,
interleaved conversations, a crash between the Redis write and the delivery, a Redis restart,
SIGHUP with a broken dialog, every limit, and "oublier mes données"."""
import json
import os
import shutil
import signal
import time
import uuid

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from conftest import VOLATILE, wait_until

SOURCE = os.environ.get("FB_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
SAMPLE = os.path.join(SOURCE, "dialogs", "exemple.yaml")

# Answers that walk the sample dialog to its end (tests/transcripts/exemple-parcours-complet.yaml),
# with the question each one answers.
WALK = [
    ("Dans quelle commune", "lyon"),
    ("Qui porte le projet", ("association", "Une association")),
    ("Quelle est la surface", "1,2 ha"),
    ("Le sol a-t-il déjà été analysé", "non"),
    ("Quels usages envisagez-vous", "1, 2 et 4"),
    ("Quand souhaitez-vous ouvrir", "mars 2035"),
    ("Comment s'appellera le jardin", "Les Jardins du Confluent"),
]
ROADMAP = ["Le jardin « Les Jardins du Confluent » à Lyon", "Faire analyser le sol",
           "Proposer un partenariat à une école"]


def web_yaml(**web):
    lines = ["web:"] + [f"  {k}: {json.dumps(v)}" for k, v in web.items()]
    return "\n".join(lines) + "\n"


def start_daemon(make_daemon, redis, extra="", **settings):
    settings.setdefault("idle_timeout_s", 60)
    if "dialogs:" not in extra:  # the built-in default is the friche dialog; these tests walk the sample
        extra = f"dialogs:\n  path: \"{SAMPLE}\"\n" + extra
    return make_daemon(redis.address, extra=extra, **settings)


def new_id():
    return uuid.uuid4().hex


class Chat:
    """One websocket connection playing the page: records every frame it receives."""

    def __init__(self, daemon, token=None, since=0, hello=True, headers=None, source=None):
        self.url = daemon.url("/ws").replace("http://", "ws://")
        more = {"additional_headers": headers} if headers else {}
        if source:
            more["source_address"] = (source, 0)
        self.ws = connect(self.url, open_timeout=10, close_timeout=5, max_size=None, legacy=True, **more)
        self.frames = []
        self.entries = {}  # seq -> msg frame
        self.welcome = None
        self.token = token
        if hello:
            self.hello(token, since)

    def send(self, obj):
        self.ws.send(json.dumps(obj))

    def recv(self, timeout=15):
        raw = self.ws.recv(timeout=timeout)
        frame = json.loads(raw)
        self.frames.append(frame)
        if frame.get("type") == "msg":
            seq = frame["seq"]
            if seq in self.entries:
                assert self.entries[seq] == frame, "two different entries with one seq"
            self.entries[seq] = frame
        return frame

    def wait_for(self, pred, timeout=15, what="frame"):
        """Returns the first frame received from now on that satisfies pred."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} within {timeout} s; frames: {self.frames[-10:]}")
            try:
                frame = self.recv(timeout=left)
            except TimeoutError:
                continue
            if pred(frame):
                return frame

    def hello(self, token=None, since=0):
        self.send({"type": "hello", "token": token, "since": since})
        self.welcome = self.wait_for(lambda f: f["type"] == "welcome", what="welcome")
        self.token = self.welcome["token"]
        return self.welcome

    def bot(self):
        return [self.entries[s] for s in sorted(self.entries) if self.entries[s]["from"] == "bot"]

    def last_seq(self):
        return max(self.entries) if self.entries else 0

    def wait_bot(self, needle, after=0, timeout=20):
        """Waits for a bot entry with seq > after whose text contains needle."""
        def found():
            return [e for s, e in sorted(self.entries.items())
                    if s > after and e["from"] == "bot" and needle in e["text"]]
        if not found():
            self.wait_for(lambda f: bool(found()), timeout, what=f"bot message with {needle!r}")
        return found()[0]

    def say(self, text, mid=None):
        mid = mid or new_id()
        self.send({"type": "message", "id": mid, "text": text})
        self.wait_for(lambda f: f["type"] == "ack" and f["id"] == mid, what=f"ack of {mid}")
        return mid

    def choose(self, choice, label, mid=None):
        mid = mid or new_id()
        self.send({"type": "choice", "id": mid, "choice": choice, "label": label})
        self.wait_for(lambda f: f["type"] == "ack" and f["id"] == mid, what=f"ack of {mid}")
        return mid

    def answer(self, answer):
        if isinstance(answer, tuple):
            return self.choose(*answer)
        return self.say(answer)

    def error(self, code, timeout=15):
        return self.wait_for(lambda f: f["type"] == "error" and f["code"] == code, timeout,
                             what=f"error {code}")

    def closed_code(self, timeout=10):
        """Reads until the server closes; returns the close code."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                self.recv(timeout=end - time.monotonic())
            except ConnectionClosed as e:
                return e.rcvd.code if e.rcvd else None
            except TimeoutError:
                break
        raise AssertionError("the server did not close the connection")

    def ping(self):
        self.send({"type": "ping"})
        self.wait_for(lambda f: f["type"] == "pong", what="pong")

    def close(self):
        self.ws.close()


def walk(chat, steps, greeting_after=0):
    """Answers each question of `steps` once it is asked; returns the last seq seen."""
    after = greeting_after
    for question, answer in steps:
        asked = chat.wait_bot(question, after)
        after = asked["seq"]
        chat.answer(answer)
    return after


def history(redis, token):
    """The stored history of a conversation, from Redis, as a list of entries."""
    out = redis.cli("LRANGE", f"fb:{{c:web:{token}}}:hist", "0", "-1")
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def conv_keys(redis, token):
    out = redis.cli("--scan", "--pattern", f"fb:{{c:web:{token}}}:*")
    return sorted(k for k in out.splitlines() if k.strip())


def check_seqs(entries):
    seqs = [e["seq"] for e in entries]
    assert seqs == list(range(1, len(seqs) + 1)), seqs


# ------------------------------------------------------------------------------------------

def test_conversation_reaches_the_end_and_survives_a_reload(redis, make_daemon):
    d = start_daemon(make_daemon, redis)
    chat = Chat(d)
    assert chat.welcome["new"] is True
    assert len(chat.token) == 43
    assert chat.welcome["limits"] == {"max_message_bytes": 2000, "messages_per_minute": 20,
                                      "idle_timeout_s": 60}
    greeting = chat.wait_bot("Bonjour")
    assert "html" in greeting and greeting["html"]
    after = walk(chat, WALK)
    end = chat.wait_bot("feuille de route", after)
    for needle in ROADMAP:
        assert needle in end["text"], end["text"]
    assert "<" in end["html"]
    # The buttons of the porteur question came with it.
    porteur = next(e for e in chat.bot() if "Qui porte le projet" in e["text"])
    assert {"id": "association", "label": "Une association"} in porteur["choices"]

    # The history holds both sides, in order, each entry once.
    stored = history(redis, chat.token)
    check_seqs(stored)
    users = [e for e in stored if e["from"] == "user"]
    assert [e["text"] for e in users] == [a if isinstance(a, str) else a[1] for _, a in WALK]
    for e in stored:
        assert chat.entries[e["seq"]] == dict(e, type="msg")

    # A reload (new connection, hello with the token and since=0) shows the same history.
    seen = dict(chat.entries)
    chat.close()
    again = Chat(d, token=chat.token, since=0)
    assert again.welcome["new"] is False and again.token == chat.token
    while len(again.entries) < len(stored):
        again.recv()
    for seq, entry in seen.items():
        assert again.entries[seq] == entry
    # since=N sends only what follows N.
    again.close()
    partial = Chat(d, token=chat.token, since=len(stored) - 2)
    while len(partial.entries) < 2:
        partial.recv()
    assert sorted(partial.entries) == [len(stored) - 1, len(stored)]
    partial.ping()
    assert len(partial.entries) == 2

    status, health = d.json("/healthz")
    assert health["adapters"]["web"]["state"] == "ok"
    assert health["adapters"]["web"]["connections"] == 1
    assert health["adapters"]["web"]["conversations_online"] == 1
    partial.close()

    # The log never shows the token (only its tag) nor what the user wrote.
    log = d.read_log()
    assert chat.token not in log
    assert "Jardins du Confluent" not in log and "1,2 ha" not in log
    assert "[web|" in log


def test_same_event_twice_gives_one_reply(redis, make_daemon):
    d = start_daemon(make_daemon, redis)
    chat = Chat(d)
    chat.wait_bot("Dans quelle commune")
    mid = new_id()
    # The same message three times: twice on one connection, once after a reconnection.
    chat.send({"type": "message", "id": mid, "text": "lyon"})
    chat.send({"type": "message", "id": mid, "text": "lyon"})
    acks = 0
    while acks < 2:
        f = chat.recv()
        acks += f["type"] == "ack" and f["id"] == mid
    chat.wait_bot("Qui porte le projet")
    chat.close()
    again = Chat(d, token=chat.token, since=0)
    again.say("lyon", mid=mid)
    # Give a duplicate reply every chance to show up, then count.
    again.say("une association")
    again.wait_bot("Quelle est la surface")
    stored = history(redis, chat.token)
    check_seqs(stored)
    assert sum(e["from"] == "user" and e.get("id") == mid for e in stored) == 1
    assert sum("Qui porte le projet" in e["text"] for e in stored if e["from"] == "bot") == 1
    assert sum("Dans quelle commune" in e["text"] for e in stored if e["from"] == "bot") == 1
    again.close()


def test_an_entry_written_by_another_daemon_reaches_the_open_page(redis, make_daemon):
    """A page asks only for what follows its highest seq: an entry this daemon never pushed (a
    reminder fired by another daemon, a COMMIT whose answer was lost) would be skipped for good
    once a later one is pushed. The seqs are contiguous, so the gap is seen and read again."""
    d = start_daemon(make_daemon, redis)
    chat = Chat(d)
    chat.wait_bot("Dans quelle commune")
    token = chat.token
    # Another daemon's entry: the next seq taken as the COMMIT fragment takes it, in the history.
    last = history(redis, token)[-1]
    n = int(redis.cli("HINCRBY", f"fb:{{c:web:{token}}}:web", "seq", "1"))
    assert n == last["seq"] + 1
    other = dict(last, seq=n, text="Rappel venu d'un autre démon")
    redis.cli("RPUSH", f"fb:{{c:web:{token}}}:hist", json.dumps(other, ensure_ascii=False, separators=(",", ":")))
    chat.say("lyon")
    chat.wait_bot("Qui porte le projet")
    if n not in chat.entries:
        chat.wait_for(lambda f: n in chat.entries, what=f"entry {n}")
    assert chat.entries[n]["text"] == "Rappel venu d'un autre démon"
    assert sorted(chat.entries) == list(range(1, max(chat.entries) + 1))
    chat.close()


def test_two_conversations_interleaved_stay_independent_and_ordered(redis, make_daemon):
    d = start_daemon(make_daemon, redis)
    a, b = Chat(d), Chat(d)
    assert a.token != b.token
    other = [("Dans quelle commune", "Villeurbanne"), ("Qui porte le projet", "la commune"),
             ("Quelle est la surface", "800 m2"), ("Le sol a-t-il déjà été analysé", "oui"),
             ("Quels usages envisagez-vous", "compostage"),
             ("Quand souhaitez-vous ouvrir", "juin 2036"),
             ("Comment s'appellera le jardin", "Le Jardin des Gratte-Ciel")]
    after_a = after_b = 0
    for (qa, ans_a), (qb, ans_b) in zip(WALK, other):
        after_a = a.wait_bot(qa, after_a)["seq"]
        after_b = b.wait_bot(qb, after_b)["seq"]
        a.answer(ans_a)
        b.answer(ans_b)
    end_a = a.wait_bot("feuille de route", after_a)
    end_b = b.wait_bot("feuille de route", after_b)
    assert "Lyon" in end_a["text"] and "Villeurbanne" not in end_a["text"]
    assert "Villeurbanne" in end_b["text"] and "Lyon" not in end_b["text"]
    assert "Le Jardin des Gratte-Ciel" in end_b["text"]
    for chat, answers in ((a, WALK), (b, other)):
        stored = history(redis, chat.token)
        check_seqs(stored)
        users = [e["text"] for e in stored if e["from"] == "user"]
        assert users == [x if isinstance(x, str) else x[1] for _, x in answers]
        # Each question comes after the answer to the previous one.
        kinds = [e["from"] for e in stored]
        assert kinds[0] == "bot" and kinds[-1] == "bot"
        assert all(e["seq"] == chat.entries[e["seq"]]["seq"] for e in stored
                   if e["seq"] in chat.entries)
    a.close()
    b.close()


def test_sigkill_between_write_and_delivery_delivers_once(redis, make_daemon):
    """The daemon dies between the COMMIT (the reply written to the history with the session)
    and the reply's push to the page: the page's next connection gets it from the history, once.
    The web's replies take no outbox (FB_ADAPTER_CAP_HISTORY_DELIVERS): the history is what must
    hold it."""
    hold = {"FB_TEST_WEB_PUSH_HOLD_MS": "1500"}  # test builds: the COMMIT's replies pushed 1.5 s late
    d = start_daemon(make_daemon, redis, start=False).start(env=hold)
    chat = Chat(d)
    greeting = chat.wait_bot("Dans quelle commune", timeout=10)
    mid = chat.say("lyon")  # acknowledged: the router's write is in Redis
    stored = history(redis, chat.token)
    assert sum(e["from"] == "bot" and "Qui porte le projet" in e["text"] for e in stored) == 1
    outbox = f"fb:{{c:web:{chat.token}}}:outbox"
    assert redis.cli("EXISTS", outbox) == "0"  # nothing queued: the history is the delivery
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(10)
    d.log.close()
    assert not any(e["from"] == "bot" and "Qui porte" in e["text"] for e in chat.entries.values())
    chat.ws.close()

    d.start(env=hold)
    again = Chat(d, token=chat.token, since=greeting["seq"])
    reply = again.wait_bot("Qui porte le projet", timeout=30)
    # Nothing more comes for that message: past the hold, then ping.
    time.sleep(2)
    again.ping()
    stored = history(redis, chat.token)
    check_seqs(stored)
    assert sum(e["from"] == "bot" and "Qui porte le projet" in e["text"] for e in stored) == 1
    assert sum(e["from"] == "user" and e.get("id") == mid for e in stored) == 1
    assert [e for e in again.entries.values() if "Qui porte le projet" in e["text"]] == [reply]
    again.close()


def test_reply_reaches_a_socket_whose_hello_was_answered_after_it_was_queued(redis, make_daemon):
    """The page reconnects while an entry waits in the outbox, and the outbox hands it to the
    adapter after the new socket's hello was sent to Redis but before it was answered (Redis is
    paused across both): the hello's replay ends before the entry, so the entry must be pushed to
    the socket once its append is answered. Found by make soak: the adapter picked the sockets when
    the entry was queued, found none, and the page, which asks only for what follows its last seq
    and got the next entry live, never showed it. The web's replies no longer take the outbox
    (the COMMIT writes them to the history): the entry is an advisor's relay, put in the outbox
    as escalation does, and the message's reply, queued behind it to keep the order, follows."""
    hold = {"FB_TEST_OUTBOX_START_DELAY_MS": "1000"}  # test builds: deliveries wait 1 s
    d = start_daemon(make_daemon, redis, command_timeout_ms=8000, start=False).start(env=hold)
    chat = Chat(d)
    chat.wait_bot("Dans quelle commune", timeout=30)
    relay = json.dumps({"txn": "esc-test.0", "kind": "relay", "text": "Un conseiller : bonjour.",
                        "html": "<p>Un conseiller : bonjour.</p>", "ts": int(time.time() * 1000)})
    outbox = f"fb:{{c:web:{chat.token}}}:outbox"
    assert redis.cli("RPUSH", outbox, relay) == "1"
    chat.say("lyon")  # its entry is pushed before the ack; the outbox reads its head, then waits
    t0 = time.monotonic()
    since = chat.last_seq()
    chat.close()
    assert int(redis.cli("LLEN", outbox)) == 2  # the reply, behind the relay
    # Redis paused: the outbox's second read of its head (at t0 + 1 s), then the hello, wait in
    # that order; once they are answered, the adapter gets the relay before the hello's answer.
    assert redis.cli("CLIENT", "PAUSE", "2500") == "OK"
    time.sleep(max(0.0, t0 + 1.4 - time.monotonic()))
    again = Chat(d, hello=False)
    again.send({"type": "hello", "token": chat.token, "since": since})
    welcome = again.wait_for(lambda f: f["type"] == "welcome", timeout=20, what="welcome")
    assert welcome["token"] == chat.token and not welcome["new"]
    got = again.wait_bot("Un conseiller", after=since, timeout=15)
    reply = again.wait_bot("Qui porte le projet", after=got["seq"], timeout=15)
    stored = history(redis, chat.token)
    for e in (got, reply):
        assert dict(e, type=None) == dict(next(x for x in stored if x["seq"] == e["seq"]), type=None)
    assert sorted(again.entries) == [e["seq"] for e in stored if e["seq"] > since]
    again.close()


def test_redis_restart_loses_nothing(redis, make_daemon):
    d = start_daemon(make_daemon, redis, extra_redis="  write_deadline_ms: 600")
    chat = Chat(d)
    chat.wait_bot("Dans quelle commune")
    chat.say("lyon")
    asked = chat.wait_bot("Qui porte le projet")
    # Redis goes away (saving its data, as a restart by its service manager would).
    redis.cli("SHUTDOWN", "SAVE")
    redis.proc.wait(10)
    redis.proc = None
    # Two messages during the outage: neither is recorded, each gets `unavailable`.
    lost, lost2 = new_id(), new_id()
    for mid, text in ((lost, "une association"), (lost2, "1,2 ha")):
        chat.send({"type": "message", "id": mid, "text": text})
        err = chat.error("unavailable", timeout=20)
        assert err["id"] == mid and err["retry_after"] >= 1
        assert "indisponible" in err["message"]
    assert not any(f["type"] == "ack" for f in chat.frames if f.get("id") in (lost, lost2))
    # The daemon is still there for others: health says degraded, the page still answers.
    status, health = d.json("/healthz")
    assert status == 503 and health["redis"]["connected"] is False

    redis.start()
    assert wait_until(lambda: d.json("/healthz")[0] == 200, 20)
    # The page resends both messages, in order, with the same ids: one reply each.
    chat.say("une association", mid=lost)
    chat.wait_bot("Quelle est la surface", asked["seq"])
    chat.say("1,2 ha", mid=lost2)
    chat.wait_bot("Le sol a-t-il déjà été analysé")
    chat.say("non")
    chat.wait_bot("Quels usages envisagez-vous")
    stored = history(redis, chat.token)
    check_seqs(stored)
    for mid in (lost, lost2):
        assert sum(e["from"] == "user" and e.get("id") == mid for e in stored) == 1
    for q in ("Qui porte le projet", "Quelle est la surface", "Le sol a-t-il"):
        assert sum(e["from"] == "bot" and q in e["text"] for e in stored) == 1, q
    chat.close()


def test_page_ahead_of_a_restored_redis_gets_the_history_again(volatile_redis, make_daemon):
    """Redis crashes and comes back from an older snapshot: the page knows entries (seq) the
    conversation no longer has. Its hello (since = its last seq) gets new: true (forget what you
    show) and the whole history again, and the next replies reach it. They used to be skipped as
    already seen (seq <= since): the page showed nothing until the conversation had outgrown its
    old last seq. (A page that stays connected through the crash is not covered: see
    docs/internals/WEB.md, "Known limits".) A Redis without AOF: with it, the crash loses nothing."""
    redis = volatile_redis
    d = start_daemon(make_daemon, redis, start=False, extra_redis=VOLATILE)
    d.start(env={"FB_TEST_REDIS_BEAT_MS": "100"})  # test builds: the durability beat, faster
    chat = Chat(d)
    chat.wait_bot("Dans quelle commune")
    chat.say("lyon")
    asked = chat.wait_bot("Qui porte le projet")
    assert redis.cli("SAVE") == "OK"  # the snapshot Redis will come back from
    epoch = int(redis.cli("GET", "fb:{g}:redis:epoch"))
    chat.choose("association", "Une association")
    chat.wait_bot("Quelle est la surface")
    page_seq = chat.last_seq()
    assert page_seq > asked["seq"]
    chat.close()
    assert wait_until(lambda: int(redis.cli("GET", "fb:{g}:redis:epoch")) > epoch + 1, 10)
    redis.proc.send_signal(signal.SIGKILL)  # a crash: what followed the snapshot is lost
    redis.proc.wait(10)
    redis.proc = None
    redis.start()
    # The daemon finds it went back in time (docs/internals/REDIS.md, "Persistence").
    assert wait_until(lambda: "went back in time" in d.read_log(), 20), d.read_log()
    assert wait_until(lambda: d.json("/healthz")[1]["redis"]["connected"], 20)
    assert len(history(redis, chat.token)) == asked["seq"]

    again = Chat(d, token=chat.token, since=page_seq)
    assert again.welcome["new"] is True and again.token == chat.token
    while len(again.entries) < asked["seq"]:
        again.recv()
    assert sorted(again.entries) == list(range(1, asked["seq"] + 1))
    again.choose("association", "Une association")
    again.wait_bot("Quelle est la surface", asked["seq"])
    again.close()


def copy_dialogs(tmp_path):
    dst = tmp_path / "dialogs"
    shutil.copytree(os.path.join(SOURCE, "dialogs"), dst)
    return dst / "exemple.yaml"


def test_sighup_with_a_broken_dialog_keeps_the_old_one(redis, make_daemon, tmp_path):
    dialog = copy_dialogs(tmp_path)
    d = start_daemon(make_daemon, redis, extra=f"dialogs:\n  path: \"{dialog}\"\n")
    a = Chat(d)
    a.wait_bot("Bonjour !")
    a.say("lyon")
    a.wait_bot("Qui porte le projet")

    good = dialog.read_text()
    dialog.write_text(good.replace("debut: accueil", "debut: nulle_part"))
    mark = len(d.read_log())
    d.send(signal.SIGHUP)
    assert wait_until(lambda: "nulle_part" in d.log_since(mark), 10), d.log_since(mark)
    # The running conversation goes on, and a new one is served by the old version.
    a.choose("association", "Une association")
    a.wait_bot("Quelle est la surface")
    b = Chat(d)
    b.wait_bot("Bonjour !")

    # A good new version serves new conversations; the old one stays pinned.
    dialog.write_text(good.replace("Bonjour ! Je suis", "Salut ! Je suis"))
    mark = len(d.read_log())
    d.send(signal.SIGHUP)
    assert wait_until(lambda: "reload" in d.log_since(mark).lower(), 10)
    c = Chat(d)
    c.wait_bot("Salut !")
    a.say("800 m2")
    a.wait_bot("Le sol a-t-il déjà été analysé")
    for chat in (a, b, c):
        chat.close()


def limits_daemon(make_daemon, redis, **web):
    return start_daemon(make_daemon, redis, extra=web_yaml(**web))


def assert_serves_others(d):
    other = Chat(d)
    other.wait_bot("Dans quelle commune")
    other.close()


def test_too_big(redis, make_daemon):
    d = limits_daemon(make_daemon, redis, max_message_bytes=100)
    chat = Chat(d)
    chat.wait_bot("Dans quelle commune")
    mid = new_id()
    chat.send({"type": "message", "id": mid, "text": "é" * 51})  # 102 bytes
    err = chat.error("too_big")
    assert err["id"] == mid and "trop long" in err["message"]
    chat.say("x" * 100)  # exactly the limit is fine
    # A frame over the websocket limit is discarded whole; the connection stays usable.
    chat.ws.send(json.dumps({"type": "message", "id": new_id(), "text": "y" * 5000}))
    chat.error("too_big")
    chat.ping()
    assert_serves_others(d)
    chat.close()


def test_rate_limited(redis, make_daemon):
    d = limits_daemon(make_daemon, redis, messages_per_minute=3)
    chat = Chat(d)
    chat.wait_bot("Dans quelle commune")
    for _ in range(3):
        chat.say("aide")
    mid = new_id()
    chat.send({"type": "message", "id": mid, "text": "aide"})
    err = chat.error("rate_limited")
    assert err["id"] == mid and 1 <= err["retry_after"] <= 20
    assert "patienter" in err["message"]
    # The refused message is not in the history; the limit is per conversation.
    assert not any(e.get("id") == mid for e in history(redis, chat.token))
    # Reconnecting does not reset the bucket.
    chat.close()
    again = Chat(d, token=chat.token, since=0)
    again.send({"type": "message", "id": mid, "text": "aide"})
    again.error("rate_limited")
    assert_serves_others(d)
    again.close()


def test_resending_one_id_does_not_escape_the_rate_limit(redis, make_daemon):
    """The same message id sent again and again: each copy costs the daemon two Redis scripts
    (the history append and the router's read), so copies count against messages_per_minute like
    any message. They used to give their token back, which let one client keep the daemon and
    Redis busy without limit."""
    d = limits_daemon(make_daemon, redis, messages_per_minute=3)
    chat = Chat(d)
    chat.wait_bot("Dans quelle commune")
    mid = new_id()
    acks = limited = 0
    for _ in range(10):  # one after the other, each waiting for its answer
        chat.send({"type": "message", "id": mid, "text": "aide"})
        f = chat.wait_for(lambda f: f.get("id") == mid and f["type"] in ("ack", "error"))
        acks += f["type"] == "ack"
        limited += f["type"] == "error" and f["code"] == "rate_limited"
    assert acks == 3 and limited == 7, (acks, limited)
    # One entry in the history for that id, and the conversation still works afterwards.
    assert sum(e.get("id") == mid for e in history(redis, chat.token)) == 1
    chat.ping()
    assert_serves_others(d)
    chat.close()


def test_too_many_connections(redis, make_daemon):
    d = limits_daemon(make_daemon, redis, max_connections_per_address=3)
    chats = [Chat(d, hello=False) for _ in range(3)]
    extra = Chat(d, hello=False)
    err = extra.error("too_many_connections")
    assert "connexions" in err["message"]
    assert extra.closed_code() == 1008
    # Once one closes, another connection is accepted and served.
    chats[0].close()
    assert wait_until(lambda: d.json("/healthz")[1]["adapters"]["web"]["connections"] == 2, 10)
    assert_serves_others(d)
    for c in chats[1:]:
        c.hello()
        c.wait_bot("Dans quelle commune")
        c.close()


def test_trusted_proxy_counts_the_forwarded_address(redis, make_daemon):
    """Behind a reverse proxy every user has the proxy's address: with the per-address caps
    (web 20 websockets, server 256 connections) all users were capped together. A proxy listed in
    server.trusted_proxies is exempt from the server's cap, and each websocket through it counts
    as the address the proxy added last to X-Forwarded-For; an address not listed is capped as
    it is, whatever X-Forwarded-For it writes."""
    d = start_daemon(make_daemon, redis, extra=web_yaml(max_connections_per_address=2),
                     server_extra='  max_connections_per_address: 3\n  trusted_proxies: ["127.0.0.1"]')
    via = lambda xff: Chat(d, hello=False, source="127.0.0.1", headers={"X-Forwarded-For": xff})
    # Two users through the proxy, two websockets each: 4 connections from 127.0.0.1, over the
    # server's cap of 3, all served. The second user's header holds an address of its own
    # choosing first: the proxy's (the last) counts.
    a = [via("198.51.100.7") for _ in range(2)]
    b = [via("203.0.113.9, 198.51.100.8") for _ in range(2)]
    for c in a + b:
        c.hello()
        c.wait_bot("Dans quelle commune")
    # A third websocket of the first user: its own cap.
    extra = via("198.51.100.7")
    assert extra.error("too_many_connections")
    assert extra.closed_code() == 1008
    # An address that is not a trusted proxy: its X-Forwarded-For is not believed.
    direct = [Chat(d, hello=False, source="127.0.0.2", headers={"X-Forwarded-For": f"192.0.2.{i}"})
              for i in range(2)]
    third = Chat(d, hello=False, source="127.0.0.2", headers={"X-Forwarded-For": "192.0.2.99"})
    assert third.error("too_many_connections")
    for c in a + b + direct:
        c.close()


def test_too_many_new_conversations_from_one_address(redis, make_daemon):
    d = limits_daemon(make_daemon, redis, new_conversations_per_minute=2)
    first, second = Chat(d), Chat(d)
    first.wait_bot("Dans quelle commune")
    second.wait_bot("Dans quelle commune")
    # A third new conversation from the same address within the minute is refused, politely.
    third = Chat(d, hello=False)
    third.send({"type": "hello", "token": None, "since": 0})
    err = third.error("too_many_conversations")
    assert "patienter" in err["message"] and err["retry_after"] >= 1
    assert third.closed_code() == 1008
    assert d.json("/healthz")[1]["adapters"]["web"]["conversations_online"] == 2
    # Returning to an existing conversation is not a new one: still served.
    first.close()
    back = Chat(d, token=first.token, since=first.last_seq())
    assert back.welcome["new"] is False
    back.say("lyon")
    back.wait_bot("Qui porte le projet")
    back.close()
    second.say("lyon")
    second.wait_bot("Qui porte le projet")
    second.close()


def test_bad_frames(redis, make_daemon):
    d = start_daemon(make_daemon, redis)
    chat = Chat(d, hello=False)
    # Before hello.
    chat.send({"type": "message", "id": new_id(), "text": "bonjour"})
    chat.error("bad_request")
    chat.send({"type": "ping"})
    chat.error("bad_request")
    # Not JSON, not an object, no type, unknown type, invalid fields.
    for raw in ["pas du json", "[1,2]", "{}", '{"type":42}']:
        chat.ws.send(raw)
        chat.error("bad_request")
    chat.hello()
    chat.wait_bot("Dans quelle commune")
    for obj in [{"type": "danse"}, {"type": "message", "text": "sans id"},
                {"type": "message", "id": "pas un id", "text": "x"},
                {"type": "message", "id": new_id(), "text": ""},
                {"type": "choice", "id": new_id(), "label": "sans choix"},
                {"type": "hello", "token": None, "since": 0}]:
        chat.send(obj)
        chat.error("bad_request")
    # A binary frame.
    chat.ws.send(b"\x00\x01\x02")
    chat.error("bad_request")
    # The connection still works, and so does the daemon for others.
    chat.say("lyon")
    chat.wait_bot("Qui porte le projet")
    assert_serves_others(d)
    # Invalid UTF-8 in a text frame fails that connection (RFC 6455 section 8.1: close 1007),
    # and only that one.
    broken = Chat(d)
    broken.wait_bot("Dans quelle commune")
    broken.ws.send(b'{"type":"message","id":"abc","text":"\xff\xfe"}', text=True)
    assert broken.closed_code() == 1007
    chat.ping()
    assert_serves_others(d)
    chat.close()


def test_idle_connections_close_and_pinging_ones_stay(redis, make_daemon):
    d = start_daemon(make_daemon, redis, idle_timeout_s=2)
    quiet, busy = Chat(d), Chat(d)
    assert busy.welcome["limits"]["idle_timeout_s"] == 2
    busy.wait_bot("Dans quelle commune")
    quiet.wait_bot("Dans quelle commune")
    # Pinging more often than the idle timeout (as the page must) keeps a connection open.
    for _ in range(5):
        time.sleep(0.8)
        busy.ping()
    assert quiet.closed_code(timeout=5) == 1001
    busy.say("lyon")
    busy.wait_bot("Qui porte le projet")
    busy.close()


def test_malformed_or_unknown_token_starts_a_new_conversation(redis, make_daemon):
    d = start_daemon(make_daemon, redis)
    for token in ["trop-court", "A" * 43, "{c:x}" + "A" * 38]:
        chat = Chat(d, token=token, since=5)
        assert chat.welcome["new"] is True and chat.token != token
        chat.wait_bot("Dans quelle commune")
        chat.close()
    log = d.read_log()
    assert "A" * 43 not in log


def test_forget_deletes_the_history(redis, make_daemon):
    d = start_daemon(make_daemon, redis)
    chat = Chat(d)
    chat.wait_bot("Dans quelle commune")
    chat.say("lyon")
    asked = chat.wait_bot("Qui porte le projet")
    assert any(k.endswith(":hist") for k in conv_keys(redis, chat.token))
    chat.say("oublier mes données")
    # The goodbye still reaches the page.
    chat.wait_for(lambda f: f["type"] == "msg" and f["from"] == "bot" and f["seq"] > asked["seq"],
                  what="the goodbye")
    # Every key of the conversation is gone but the router's dedupe marks (event ids, no
    # personal data, kept for their retention so that a resent event is not run again: the
    # zset's TTL is the retention + 1 %).
    def left():
        return [k for k in conv_keys(redis, chat.token) if not k.endswith(":ev")]
    assert wait_until(lambda: left() == [], 20), left()
    marks = f"fb:{{c:web:{chat.token}}}:ev"
    assert 0 < int(redis.cli("PTTL", marks)) <= 72 * 3600 * 1010, redis.cli("PTTL", marks)
    assert redis.cli("ZSCORE", marks, "start") != ""
    assert history(redis, chat.token) == []
    chat.close()
    # The old token now opens a new conversation.
    again = Chat(d, token=chat.token, since=asked["seq"])
    assert again.welcome["new"] is True and again.token != chat.token
    again.wait_bot("Dans quelle commune")
    again.close()


def test_page_and_static_files(redis, make_daemon, tmp_path):
    static = tmp_path / "static"
    dsfr = tmp_path / "dsfr"
    static.mkdir()
    dsfr.mkdir()
    (static / "index.html").write_text("<!doctype html><title>Assistant friches</title>\n")
    (static / "chat.js").write_text("console.log('ok');\n")
    (dsfr / "dsfr.min.css").write_text("body{}\n")
    d = limits_daemon(make_daemon, redis, static_dir=str(static), dsfr_dir=str(dsfr))
    status, headers, body = d.request("/")
    assert status == 200 and b"Assistant friches" in body
    assert headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-cache"
    status, headers, body = d.request("/static/chat.js")
    assert status == 200 and body == b"console.log('ok');\n"
    status, headers, body = d.request("/dsfr/dsfr.min.css")
    assert status == 200 and "max-age=86400" in headers["Cache-Control"]
    assert d.request("/static/../frichebot.yaml")[0] == 404
    assert d.request("/static/absent.js")[0] == 404


def test_long_history_replays_without_overflowing_the_socket(redis, make_daemon):
    """A history bigger than a socket's 1 MiB send queue (long messages, a generous history_max):
    a reload still gets its welcome and the newest entries, and the connection stays open. It used
    to be closed with 1008 ("trop lent") at every hello, so the page could never resume."""
    d = limits_daemon(make_daemon, redis, max_message_bytes=65536, messages_per_minute=1000,
                      history_max=1000)
    chat = Chat(d)
    chat.wait_bot("Dans quelle commune")
    for i in range(20):  # 20 x 60 kB of user text (the bot soon hands over to an advisor)
        chat.say(f"{i:02d}" + "x" * 60000)
    last = chat.say("encore un message")
    stored = history(redis, chat.token)
    total = sum(len(json.dumps(e)) for e in stored)
    assert total > 1024 * 1024, total
    chat.close()

    again = Chat(d, token=chat.token, since=0)
    assert again.welcome["new"] is False
    # The newest entries arrive, up to the last one, and the socket stays usable.
    newest = stored[-1]["seq"]
    again.wait_for(lambda f: f["type"] == "msg" and f["seq"] == newest, what="the newest entry")
    again.ping()
    assert any(e.get("id") == last for e in again.entries.values())
    got = sorted(again.entries)
    assert got == list(range(got[0], newest + 1)), got  # a contiguous tail of the history
    again.say("lyon")
    again.close()
