# SPDX-License-Identifier: MIT
"""The reminder scheduler (docs/internals/REMINDERS.md) against real daemons sharing one real
redis-server, with the web chat as the platform: 1,000 reminders due at once on two daemons are
each delivered exactly once; a daemon SIGKILLed while it holds claims loses none and duplicates
none; a reminder due outside working hours is deferred to the next opening, not sent; the friche
dialog's rating comes with the first reminder's exchange, not with the roadmap, and once.

One web conversation of the sample dialog is started over the websocket: entering its first
question arms reminder `relance`. Its keys (session, reminders, web meta and history) are copied
to many fresh conversation tokens, whose members are then made due in `reminders:due`."""
import datetime
import json
import re
import secrets
import signal
import socket
import time
import zoneinfo

import pytest

from conftest import SANITIZER_MARKERS, Daemon, wait_until
from test_webchat import SAMPLE, Chat

PREFIX = "fb:"
DUE = PREFIX + "{g}:reminders:due"
CLAIMED = PREFIX + "{g}:reminders:claimed"
CLAIMS = PREFIX + "{g}:reminders:claims"
PENDING = PREFIX + "{g}:outbox:pending"
REMINDER_TEXT = "Où en êtes-vous"  # the built-in `relance` message, during the questions
# The keys of a web conversation with a reminder (the web history no longer writes `hkeys`).
# (no `hids`: the replies a COMMIT writes to the history take no dedupe key since issue 17, and
# a greeting is all the template has)
COPIED = ("session", "reminders", "web", "hist")
N = 1000


class Resp:
    """A minimal RESP2 client on one socket, for pipelining thousands of commands (redis-cli would
    be one process per command; the Python redis package is not a test dependency)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = b""

    def close(self):
        self.sock.close()

    @staticmethod
    def encode(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            elif isinstance(a, int):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise AssertionError("redis error: " + rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise AssertionError(f"bad reply {line!r}")

    def pipeline(self, commands):
        self.sock.sendall(b"".join(self.encode(c) for c in commands))
        return [self._reply() for _ in commands]

    def __call__(self, *args):
        return self.pipeline([args])[0]


def ckey(token, name):
    return f"{PREFIX}{{c:web:{token}}}:{name}"


def member(token):
    return f"web:{token}|relance"


def now_ms():
    return int(time.time() * 1000)


def reminders_yaml(dialog=SAMPLE, **opts):
    base = {"poll_interval_ms": 50, "batch": 50, "lease_ms": 30000, "working_hours_only": "false"}
    base.update(opts)
    lines = ["reminders:"] + [f"  {k}: {v}" for k, v in base.items()]
    return f'dialogs:\n  path: "{dialog}"\n' + "\n".join(lines) + "\n"


@pytest.fixture
def daemons(tmp_path):
    """Factory: daemons(name, redis, extra) -> started Daemon in tmp_path/name (its own config
    and log). Stopped and checked (check_clean) at teardown unless the test stopped or killed it;
    a killed one is still checked for sanitizer reports."""
    made = []

    def factory(name, redis, extra, start=True):
        d = Daemon(tmp_path / name, redis.address, idle_timeout_s=60, extra=extra)
        (tmp_path / name).mkdir(exist_ok=True)
        made.append(d)
        if start:
            d.start()
        return d

    yield factory
    for d in made:
        if d.proc is not None and d.proc.poll() is None:
            rc, log = d.stop()
            d.check_clean(rc, log)
        elif d.proc is not None:
            log = d.read_log()
            for marker in SANITIZER_MARKERS:
                assert marker not in log, f"sanitizer report in the daemon's log:\n{log}"


def metric(daemon, outcome):
    status, _, body = daemon.request("/metrics")
    assert status == 200
    m = re.search(r'^frichebot_reminders_total\{outcome="%s"\} (\d+)$' % outcome, body.decode(),
                  re.M)
    assert m, body.decode()
    return int(m.group(1))


def template_conversation(daemon, db):
    """Starts one web conversation; returns its token once its greeting is stored, its reminder
    armed (about six weeks ahead) and its outbox empty."""
    chat = Chat(daemon)
    chat.wait_bot("Dans quelle commune")
    token = chat.token
    chat.close()
    score = wait_until(lambda: db("ZSCORE", DUE, member(token)), 10)
    assert score, "entering the first question armed no reminder"
    assert int(float(score)) > now_ms() + 40 * 86400 * 1000  # six weeks
    assert wait_until(lambda: db("EXISTS", ckey(token, "outbox")) == 0, 10)
    assert wait_until(lambda: db("ZSCORE", PENDING, f"web:{token}") is None, 10)
    return token


def clone(db, template, n):
    """n fresh conversations, each a copy of the template's keys (DUMP/RESTORE with their TTL).
    Their reminders are not due yet: the copies are not in `reminders:due`."""
    names = [ckey(template, k) for k in COPIED]
    dumps = db.pipeline([("DUMP", k) for k in names])
    ttls = db.pipeline([("PTTL", k) for k in names])
    for k, d in zip(names, dumps):
        assert d is not None, f"{k} does not exist"
    tokens = [secrets.token_urlsafe(32) for _ in range(n)]
    assert all(len(t) == 43 for t in tokens)
    cmds = []
    for t in tokens:
        for k, d, ttl in zip(COPIED, dumps, ttls):
            cmds.append(("RESTORE", ckey(t, k), max(ttl, 0), d))
    assert all(r == "OK" for r in db.pipeline(cmds))
    return tokens


def make_due(db, tokens):
    """Every reminder of `tokens` due now, in one atomic ZADD, as if its delay had passed since
    the user's last event: the push-back is lazy (docs/internals/REMINDERS.md), a reminder whose
    user wrote less than its delay before its due time is held until then, so the sessions' last
    user event (`a`) is set back by the delay too."""
    at = now_ms() - 1000
    delays = db.pipeline([("HGET", ckey(t, "reminders"), "relance#a") for t in tokens])
    assert all(d is not None for d in delays), delays
    assert all(r == 0 for r in db.pipeline([("HSET", ckey(t, "session"), "a", at - int(d))
                                            for t, d in zip(tokens, delays)]))
    args = ["ZADD", DUE, "CH"]
    for t in tokens:
        args += [at, member(t)]
    assert db(*args) == len(tokens)
    return at


def histories(db, tokens):
    out = db.pipeline([("LRANGE", ckey(t, "hist"), 0, -1) for t in tokens])
    return {t: [json.loads(e) for e in h] for t, h in zip(tokens, out)}


def reminder_count(hist):
    return sum(e["from"] == "bot" and REMINDER_TEXT in e["text"] for e in hist)


def all_reminded(db, tokens):
    return all(reminder_count(h) >= 1 for h in histories(db, tokens).values())


def settled(db):
    """Nothing claimed, nothing due now, no outbox waiting."""
    return (db("ZCARD", CLAIMED) == 0 and db("HLEN", CLAIMS) == 0 and
            db("ZCOUNT", DUE, "-inf", now_ms()) == 0 and db("ZCARD", PENDING) == 0)


def check_exactly_once(db, template, tokens):
    """Each conversation's history holds its copied greeting and exactly one reminder event's
    replies, nothing else; every reminder is re-armed about six weeks ahead."""
    base = histories(db, [template])[template]
    hists = histories(db, tokens)
    sizes = set()
    for t in tokens:
        h = hists[t]
        assert reminder_count(h) == 1, (t, h)
        seqs = [e["seq"] for e in h]
        assert seqs == list(range(1, len(h) + 1)), seqs
        assert h[:len(base)] == base, h
        # The reminder event's replies (the message, the question asked again), written by one
        # COMMIT: the bot's, with that COMMIT's time; the same number in every conversation.
        new = h[len(base):]
        assert new and all(e["from"] == "bot" for e in new), h
        assert len({e["ts"] for e in new}) == 1, new
        sizes.add(len(new))
    assert len(sizes) == 1, sizes
    later = now_ms() + 40 * 86400 * 1000
    scores = db.pipeline([("ZSCORE", DUE, member(t)) for t in tokens])
    assert all(s is not None and float(s) > later for s in scores)


# ------------------------------------------------------------------------------------------

def test_thousand_due_reminders_on_two_daemons_are_each_delivered_once(redis, daemons):
    began = time.monotonic()
    a = daemons("a", redis, reminders_yaml())
    b = daemons("b", redis, reminders_yaml())
    db = Resp(redis.port)
    template = template_conversation(a, db)
    tokens = clone(db, template, N)
    make_due(db, tokens)

    assert wait_until(lambda: all_reminded(db, tokens), 60, 0.2), "not every reminder went out"
    assert wait_until(lambda: settled(db), 30, 0.1)
    check_exactly_once(db, template, tokens)
    # The template's own reminder was not due: untouched.
    assert reminder_count(histories(db, [template])[template]) == 0

    da, dbb = metric(a, "delivered"), metric(b, "delivered")
    assert da > 0 and dbb > 0, (da, dbb)  # both daemons took part
    assert da + dbb == N
    assert metric(a, "claimed") + metric(b, "claimed") == N
    for d in (a, b):
        for outcome in ("released", "reaped", "dropped", "deferred"):
            assert metric(d, outcome) == 0, (outcome, d.read_log())
    db.close()
    for d in (a, b):
        rc, log = d.stop()
        d.check_clean(rc, log)
    print(f"1000 reminders on two daemons: a={da} b={dbb}, {time.monotonic() - began:.1f} s")


@pytest.mark.parametrize("when", ["at_claim", "after_first_ack"])
def test_daemon_killed_with_claims_loses_and_duplicates_none(redis, daemons, when):
    """SIGKILL as soon as the claims are in Redis (before the router's COMMITs: the other daemon
    delivers them after the lease), or once some were acknowledged (the rest committed, not
    acknowledged: their replies are in the web history, which is their delivery, and the
    reminders are not delivered twice). The assertions are derived from what Redis holds at the
    kill."""
    began = time.monotonic()
    db = Resp(redis.port)
    t = daemons("t", redis, reminders_yaml())
    template = template_conversation(t, db)
    rc, log = t.stop()
    t.check_clean(rc, log)
    tokens = clone(db, template, N)
    # One daemon alone takes the whole batch in one claim, with a short lease; its pushes wait
    # (FB_TEST_WEB_PUSH_HOLD_MS; no page is connected anyway), and so would its outbox.
    a = daemons("a", redis, reminders_yaml(batch=2 * N, lease_ms=2000, poll_interval_ms=200),
                start=False)
    a.start(env={"FB_TEST_OUTBOX_START_DELAY_MS": "600000", "FB_TEST_WEB_PUSH_HOLD_MS": "600000"})
    make_due(db, tokens)
    low = N if when == "at_claim" else N - 1
    end = time.monotonic() + 20
    while not 0 < db("ZCARD", CLAIMED) <= low:
        assert time.monotonic() < end, "the claimed reminders were never acknowledged"
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(10)
    a.log.close()
    held = db("ZCARD", CLAIMED)
    assert 0 < held <= low and db("HLEN", CLAIMS) == held  # killed while holding claims
    claims = db("HGETALL", CLAIMS)
    claims = {claims[i].decode(): claims[i + 1].decode() for i in range(0, len(claims), 2)}
    assert len({v.rsplit("|", 1)[0] for v in claims.values()}) == 1, claims
    # Claims whose COMMIT had landed (the dedupe mark of the TIMER event exists): killed between
    # COMMIT and ACK.
    marks = []
    for m, v in claims.items():
        key, rid = m.rsplit("|", 1)
        marks.append(("ZSCORE", f"{PREFIX}{{c:{key}}}:ev", f"rem:{rid}:{v.rsplit('|', 1)[1]}"))
    unacked = sum(s is not None for s in db.pipeline(marks))
    if when == "at_claim":
        assert unacked < held, "every claim was committed before the kill"
    committed = N - held + unacked
    # The web's replies take no outbox (the history is their delivery): nothing queued.
    assert db("ZCARD", PENDING) == 0
    # The web history is written with the COMMIT (issue 17): the committed reminders are in it.
    counts = [reminder_count(h) for h in histories(db, tokens).values()]
    assert max(counts) <= 1 and sum(counts) == committed, counts

    # Another daemon (with its own owner id) returns the expired leases and delivers them; the
    # reminders the killed one had committed are not delivered again.
    b = daemons("b", redis, reminders_yaml(lease_ms=2000))
    assert wait_until(lambda: all_reminded(db, tokens), 60, 0.2), "a reminder was lost"
    assert wait_until(lambda: settled(db), 30, 0.1)
    check_exactly_once(db, template, tokens)
    assert metric(b, "reaped") == held
    # Reminders committed before the kill came back re-armed (the reaper's NX kept the new due
    # time): not delivered again. b delivered the others.
    delivered = metric(b, "delivered")
    assert delivered == held - unacked
    assert metric(b, "claimed") == delivered
    assert metric(b, "released") == 0 and metric(b, "dropped") == 0
    db.close()
    rc, log = b.stop()
    b.check_clean(rc, log)
    print(f"killed holding {held} claims ({unacked} committed, not acknowledged), "
          f"{N - held} acknowledged; b delivered {delivered}, {time.monotonic() - began:.1f} s")


def test_reminder_due_outside_working_hours_is_deferred_not_sent(redis, daemons):
    # No clock knob in the daemon: the working hours are set to a one-hour window twelve hours
    # away from now (Paris time), so now is outside them whatever the day.
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    start = (datetime.datetime.now(paris).hour + 12) % 24
    d = daemons("a", redis, reminders_yaml(working_hours_only="true", start_hour=start,
                                           end_hour=start + 1))
    db = Resp(redis.port)
    template = template_conversation(d, db)
    was = make_due(db, [template])
    assert wait_until(lambda: metric(d, "deferred") >= 1, 10), d.read_log()
    score = int(float(db("ZSCORE", DUE, member(template))))
    assert score > now_ms() + 10 * 3600 * 1000  # the window opens 11 h from now at the earliest
    opening = datetime.datetime.fromtimestamp(score / 1000, paris)
    assert (opening.hour, opening.minute, opening.second) == (start, 0, 0), opening
    assert opening.weekday() < 5, opening  # Monday to Friday
    assert score > was
    # Deferred in the same script that would have claimed it: nothing was claimed nor sent.
    assert metric(d, "claimed") == 0 and metric(d, "delivered") == 0
    assert db("ZCARD", CLAIMED) == 0
    assert reminder_count(histories(db, [template])[template]) == 0
    assert "deferred" in d.read_log()
    db.close()
    rc, log = d.stop()
    d.check_clean(rc, log)


# The friche dialog from the commune to its roadmap (as tests/transcripts/friche-avis-une-fois.yaml).
FRICHE = SAMPLE.replace("exemple.yaml", "friche.yaml")
FRICHE_ANSWERS = ["Montbard", "la commune", "industriel", "5000 m2", "pas de bâtiment", "10 ans",
                  "à la commune", "soupçonnée", "PLUi", "aucun", "activité", "idée", "aucun"]
AVIS = "Je donne mon avis"


def say_and_wait(chat, text):
    """Says text and waits for the bot's first entry in reply."""
    last = chat.last_seq()
    chat.say(text)
    chat.wait_for(lambda f: any(s > last + 1 and e["from"] == "bot" for s, e in chat.entries.items()),
                  what=f"the bot's answer to {text!r}")
    return last


def stats(daemon):
    status, _, body = daemon.request("/stats.json")
    assert status == 200
    return json.loads(body)


def test_rating_comes_with_the_first_reminder_not_with_the_roadmap(redis, daemons):
    """Issue #16, point 5, on the reminder's path: a web user reads the roadmap and goes away
    without writing. « Je donne mon avis » did not come with the roadmap; the first reminder asks
    where the first step stands, and the rating comes with the reply to that answer (one question
    at a time); it is counted once on /stats.json; the next reminder does not ask it again."""
    extra = reminders_yaml(FRICHE) + "stats:\n  min_count: 1\n  cache_seconds: 0\n"
    d = daemons("a", redis, extra)
    db = Resp(redis.port)
    chat = Chat(d)
    chat.wait_bot("Dans quelle commune")
    for text in FRICHE_ANSWERS:
        say_and_wait(chat, text)
    chat.wait_bot("Votre feuille de route est enregistrée")
    token = chat.token
    chat.close()
    assert wait_until(lambda: db("ZCARD", PENDING) == 0, 10)
    hist = histories(db, [token])[token]
    assert any("Votre feuille de route –" in e["text"] for e in hist), hist
    assert not any(AVIS in e["text"] for e in hist), "the rating came with the roadmap"
    score = db("ZSCORE", DUE, member(token))
    assert score and int(float(score)) > now_ms() + 40 * 86400 * 1000  # the six-week follow-up

    # Six weeks later: the reminder asks about the first step, not for the rating yet.
    make_due(db, [token])

    def reminded():
        return [e for e in histories(db, [token])[token]
                if e["from"] == "bot" and "Où en êtes-vous de l'étape" in e["text"]]
    assert wait_until(reminded, 20, 0.1), d.read_log()[-3000:]
    assert wait_until(lambda: settled(db), 20, 0.1)
    hist = histories(db, [token])[token]
    assert not any(AVIS in e["text"] for e in hist), hist
    assert stats(d)["reminders"]["sent"] == 1

    # The user comes back (same token: the page kept it) and answers the reminder: the step is
    # noted, then the rating is asked.
    chat = Chat(d, token=token)
    chat.wait_bot("Où en êtes-vous de l'étape")
    after = say_and_wait(chat, "c'est en cours")
    chat.wait_bot("C'est noté", after=after)
    chat.wait_bot(AVIS, after=after)
    say_and_wait(chat, "4")
    chat.wait_bot("Voulez-vous ajouter un commentaire ?")
    say_and_wait(chat, "non merci")
    chat.wait_bot("Merci pour votre avis")
    chat.close()
    doc = stats(d)
    assert doc["avis"] == {"count": 1, "distribution": {"1": 0, "2": 0, "3": 0, "4": 1, "5": 0}}
    assert doc["reminders"] == {"sent": 1, "answered": 1}
    assert doc["steps_done"]["total"] == 0  # « en cours » is no crossing

    # The next reminder: about the step again, never the rating a second time.
    assert wait_until(lambda: settled(db), 20, 0.1)
    make_due(db, [token])
    assert wait_until(lambda: len(reminded()) == 2, 20, 0.1), d.read_log()[-3000:]
    assert wait_until(lambda: settled(db), 20, 0.1)
    hist = histories(db, [token])[token]
    assert sum(AVIS in e["text"] for e in hist if e["from"] == "bot") == 1, hist
    doc = stats(d)
    assert doc["avis"]["count"] == 1 and doc["reminders"]["sent"] == 2
    db.close()
    rc, log = d.stop()
    d.check_clean(rc, log)
