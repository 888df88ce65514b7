# SPDX-License-Identifier: MIT
"""The Matrix adapter (docs/internals/MATRIX.md) against a real Synapse (tests/integration/synapse.py),
the real daemon and a real redis-server, with matrix-nio playing the project owner:

- bot mode (/sync): a direct room, the whole friche conversation to the roadmap; SIGKILL of the
  daemon and a Synapse restart mid-conversation, with every user message answered exactly once and
  in order; a burst of replies under Synapse's default message rate limit; an invite from a user
  who is not allowed; an encrypted room; malformed and hostile events sent through Synapse;
- application-service mode: the registration written by `frichebot matrix-registration`, loaded by
  a second Synapse; the conversation, a replayed transaction, a wrong or missing hs_token, and
  hostile transactions sent raw to the daemon's endpoint.

"Exactly once and in order" is checked against a reference: the bot's messages of the same
answers, walked one at a time in a quiet room, grouped by the user message they answer (the
engine is deterministic). A faulty run must show exactly the concatenation of those groups."""
import contextlib
import json
import os
import re
import secrets
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.parse

import pytest
import yaml

from conftest import BINARY, SYNAPSE_TIMINGS, Daemon, Redis, free_port, wait_until
from synapse import Client, HttpError, Synapse, bodies, http

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from fault_proxy import FaultProxy  # noqa: E402

# Answers that walk the friche dialog to its roadmap (tests/transcripts/friche-ferroviaire.yaml),
# then the rating and "no comment".
# After the roadmap (« acv »), « merci » gets its answer and then the rating question (issue #16,
# point 5: not in the same breath as the roadmap); « 3 » rates, « non » declines a comment.
WALK = ["saint dizier", "la commune", "une gare", "3 hectares", "pas de bâtiment", "je ne sais pas",
        "SNCF", "rien de connu", "PLU", "aucun", "logements", "idée", "acv", "merci", "3", "non"]
# The roadmap's summary (one message: the site, three steps, three contacts, the funding names,
# the link to the page when server.public_url is set): the needles are looked for in the bot's
# messages from the first one on.
ROADMAP = ["Votre feuille de route – Saint-Dizier (Haute-Marne)",
           "À contacter d'abord : SNCF Immobilier", "Étape 3 – Maîtrise foncière",
           "ADEME : aide aux études de pollution"]


def roadmap_text(texts):
    """The bot's messages from the roadmap's first one on, joined."""
    first = next(i for i, b in enumerate(texts) if ROADMAP[0] in b)
    return "\n".join(texts[first:])
ENCRYPTED_NOTICE = "Je ne peux pas encore lire les messages chiffrés"


# -- helpers ------------------------------------------------------------------------------------

def metric(daemon, name, labels=""):
    """The value of one line of /metrics (0 when absent)."""
    status, _, body = daemon.request("/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(name + labels + " "):
            return float(line.split()[-1])
    return 0.0


def handled(daemon):
    return metric(daemon, "frichebot_router_events_total", '{outcome="handled"}')


def pending(redis):
    return int(redis.cli("ZCARD", "fb:{g}:outbox:pending") or 0)


def outbox_len(redis, room_id):
    return int(redis.cli("LLEN", f"fb:{{c:matrix:{room_id}}}:outbox") or 0)


def matrix_adapter(daemon):
    status, health = daemon.json("/healthz")
    assert status == 200, health
    return health["adapters"]["matrix"]


def retry_yaml(delays):
    return f"    delays_ms: {json.dumps(delays)}\n    jitter_percent: 0\n"


def router_yaml():
    return "router:\n  outbox_retry:\n" + retry_yaml([100, 200, 500, 1000]) + "    max_attempts: 0\n"


def hold_outbox(start_delay_ms):
    """The environment that makes a test build hold every delivery start_delay_ms after its COMMIT."""
    return {"FB_TEST_OUTBOX_START_DELAY_MS": str(start_delay_ms)} if start_delay_ms else None


def bot_matrix_yaml(synapse, bot, **more):
    lines = ["matrix:", "  enabled: true", "  mode: bot", f'  homeserver: "{synapse.url}"',
             f'  user_id: "{bot["user_id"]}"', f'  password_file: "{bot["password_file"]}"',
             f"  sync_timeout_ms: {more.pop('sync_timeout_ms', 3000)}", "  sync_retry:",
             retry_yaml([100, 200, 500, 1000]).rstrip("\n")]
    lines += [f"  {k}: {json.dumps(v)}" for k, v in more.items()]
    return "\n".join(lines) + "\n"


def new_bot(synapse, tmp_path, ratelimited=False):
    """A fresh bot account for one test (no state left by another), its password in a file."""
    bot = synapse.register("bot-" + secrets.token_hex(4), ratelimited=ratelimited)
    path = tmp_path / f"{bot['user_id'][1:].split(':')[0]}.password"
    path.write_text(bot["password"] + "\n")
    path.chmod(0o600)
    bot["password_file"] = str(path)
    return bot


_CLIENTS = []


def new_user(synapse, name="owner"):
    c = Client(synapse, synapse.register(f"{name}-{secrets.token_hex(4)}"))
    _CLIENTS.append(c)
    return c


@pytest.fixture(autouse=True)
def _close_clients():
    """Closes the test's Matrix clients, even when it failed half-way."""
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def start_bot(make_daemon, redis, synapse, bot, start_delay_ms=0, **matrix):
    d = make_daemon(redis.address, idle_timeout_s=30, start=False,
                    extra=bot_matrix_yaml(synapse, bot, **matrix) + router_yaml())
    return d.start(env=hold_outbox(start_delay_ms))


def open_dm(user, bot_id, daemon, timeout=60):
    """Creates a direct room, invites the bot, waits for its join and its greeting."""
    room = user.create_dm(bot_id)
    assert user.wait_membership(room, bot_id, "join", timeout), daemon.read_log()[-3000:]
    greeting = user.wait(lambda: [b for b in bodies(user.messages_from(room, bot_id)) if "Dans quelle commune" in b],
                         timeout)
    assert greeting, daemon.read_log()[-3000:]
    return room


def settle(user, room, bot_id, daemon, redis, count, timeout=60):
    """Waits until the router has handled `count` events and the outbox is empty, then syncs once:
    every reply of those events is then in the room's timeline (the outbox pops an entry only
    after the homeserver accepted it). Returns the bot's messages."""
    assert wait_until(lambda: handled(daemon) >= count and pending(redis) == 0, timeout, 0.1), \
        (handled(daemon), pending(redis), daemon.read_log()[-3000:])
    user.sync(0)
    return user.messages_from(room, bot_id)


_REFERENCE = {}


def reference(synapse, tmp_path, make_daemon):
    """The bot's messages for WALK, walked one answer at a time in a quiet room, as a list of
    groups: [greeting], then one group per answer. Computed once per run (own bot, Redis and
    daemon), and checked: every answer gets at least one message."""
    if "groups" in _REFERENCE:
        return _REFERENCE["groups"]
    (tmp_path / "ref").mkdir(exist_ok=True)
    r = Redis(tmp_path / "ref")
    r.start()
    d = None
    try:
        bot = new_bot(synapse, tmp_path)
        d = Daemon(tmp_path / "ref", r.address, idle_timeout_s=30,
                   extra=bot_matrix_yaml(synapse, bot) + router_yaml())
        d.start()
        user = new_user(synapse)
        room = open_dm(user, bot["user_id"], d)
        seen = settle(user, room, bot["user_id"], d, r, 1)
        groups = [bodies(seen)]
        for i, answer in enumerate(WALK):
            user.send(room, answer)
            now = settle(user, room, bot["user_id"], d, r, i + 2)
            groups.append(bodies(now[len(seen):]))
            assert groups[-1], f"no reply to {answer!r}"
            seen = now
        user.close()
        rc, log = d.stop()
        d.check_clean(rc, log)
    finally:
        if d is not None and d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
        r.stop()
    _REFERENCE["groups"] = groups
    return groups


def flat(groups):
    return [b for g in groups for b in g]


def roadmap_split(got):
    """The bot's messages as (notices, texts): the m.notice answers, and the m.text ones, which must
    be the roadmap's first message only (the one that shows `feuille_de_route`), else None."""
    texts = [ev for ev in got if ev["content"]["msgtype"] == "m.text"]
    notices = [ev for ev in got if ev["content"]["msgtype"] == "m.notice"]
    ok = len(texts) == 1 and ROADMAP[0] in texts[0]["content"]["body"] and len(notices) + 1 == len(got)
    return notices, texts if ok else None


def notified(synapse, client, sender):
    """The ids of the events of `sender` that notified `client`: GET /notifications with the
    client's token. Synapse evaluates every room member's push rules when it persists an event
    (no pusher needed), and lists here the events whose actions include "notify"."""
    out = synapse.client_api("GET", "/notifications?limit=1000", client.token)
    return [n["event"]["event_id"] for n in out["notifications"] if n["event"].get("sender") == sender]


def wait_notified(synapse, client, sender, event_ids, timeout=15):
    """Waits until every one of `event_ids` notified `client`; returns the ids `sender` notified."""
    wait_until(lambda: set(event_ids) <= set(notified(synapse, client, sender)), timeout, 0.2)
    return notified(synapse, client, sender)


def wait_all(user, room, bot_id, expected, daemon, timeout=90):
    """Waits for the bot's messages to reach the expected count, then checks them."""
    got = user.wait_messages(room, bot_id, len(expected), timeout)
    assert len(got) >= len(expected), (len(got), len(expected), daemon.read_log()[-4000:])
    return got


# -- bot mode -----------------------------------------------------------------------------------

def test_friche_conversation_in_a_direct_room(synapse, redis, make_daemon, tmp_path):
    bot = new_bot(synapse, tmp_path)
    d = make_daemon(redis.address, idle_timeout_s=30, start=False,
                    extra=bot_matrix_yaml(synapse, bot) + router_yaml())
    d.settings["server_extra"] = f'  public_url: "http://127.0.0.1:{d.port}"'
    d.start()
    user = new_user(synapse)
    t0 = time.monotonic()
    room = open_dm(user, bot["user_id"], d)
    for answer in WALK:
        n = len(user.messages_from(room, bot["user_id"]))
        user.send(room, answer)
        assert user.wait_messages(room, bot["user_id"], n + 1, 30)[n:], (answer, d.log_since(0)[-3000:])
    got = settle(user, room, bot["user_id"], d, redis, len(WALK) + 1)
    elapsed = time.monotonic() - t0
    SYNAPSE_TIMINGS.append(("friche conversation over /sync (join to last reply)", elapsed))

    texts = bodies(got)
    roadmap = roadmap_text(texts)
    for needle in ROADMAP:
        assert needle in roadmap, roadmap
    # The summary links the roadmap page (issue #16), a link in the HTML too; the page opens.
    link = re.search(r"http://127\.0\.0\.1:\d+(/feuille-de-route/[0-9a-f]{48})", roadmap)
    assert link, roadmap
    assert "Étape 4 – " not in roadmap and len(roadmap_split(got)[1][0]["content"]["body"]) < 2500
    assert f'<a href="{link.group(0)}">la feuille de route complète</a>' in \
        roadmap_split(got)[1][0]["content"]["formatted_body"]
    status, _, page = d.request(link.group(1))
    assert status == 200 and "Étape 4 – " in page.decode(), page[:300]
    # Replies are notices, but the roadmap's first message (docs/internals/MATRIX.md,
    # notifications), with a plain body and filtered HTML; choices are a numbered list.
    assert roadmap_split(got)[1], bodies(got)
    for ev in got:
        c = ev["content"]
        if "formatted_body" in c:
            assert c["format"] == "org.matrix.custom.html"
            assert "<script" not in c["formatted_body"].lower()
    assert any("1. La commune" in b and "2. L'intercommunalité" in b for b in texts), texts
    assert any("Je reviendrai vers vous" in b for b in texts), texts
    assert "Merci pour votre avis" in texts[-1], texts
    # The direct room is remembered, the adapter is healthy, logs hold no room id nor user text.
    assert redis.cli("HGET", f"fb:{{c:matrix:{room}}}:mxroom", "direct") == "1"
    state = matrix_adapter(d)
    assert state["state"] == "ok" and state["mode"] == "bot", state
    log = d.read_log()
    assert room not in log and user.user_id not in log and "Saint-Dizier" not in log
    assert bot["password"] not in log
    user.close()


def test_sigkill_mid_conversation_loses_and_repeats_nothing(synapse, redis, make_daemon, tmp_path):
    groups = reference(synapse, tmp_path, make_daemon)
    bot = new_bot(synapse, tmp_path)
    # Replies wait 800 ms in the outbox: the kill lands between the Redis write and the delivery.
    d = start_bot(make_daemon, redis, synapse, bot, start_delay_ms=800)
    user = new_user(synapse)
    room = open_dm(user, bot["user_id"], d)
    device = redis.cli("HGET", "fb:{g}:matrix:auth", "device_id")
    assert device, redis.cli("HGETALL", "fb:{g}:matrix:auth")
    k = 5
    for i in range(k):
        user.send(room, WALK[i])
        wait_all(user, room, bot["user_id"], flat(groups[:i + 2]), d)
    # Answer k is written to Redis, its reply waits in the outbox: SIGKILL.
    user.send(room, WALK[k])
    assert wait_until(lambda: outbox_len(redis, room) >= 1, 30, 0.02), d.read_log()[-3000:]
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(10)
    d.log.close()
    first_log = d.read_log()
    # While the daemon is down the owner keeps answering: the homeserver keeps the messages.
    for answer in WALK[k + 1:k + 4]:
        user.send(room, answer)
    d.settings["extra"] = bot_matrix_yaml(synapse, bot) + router_yaml()
    t0 = time.monotonic()
    d.start()
    # The rest of the walk, then everything is compared with the reference.
    wait_all(user, room, bot["user_id"], flat(groups[:k + 5]), d)
    SYNAPSE_TIMINGS.append(("restart after SIGKILL to the replies of the queued messages", time.monotonic() - t0))
    for i in range(k + 4, len(WALK)):
        user.send(room, WALK[i])
        wait_all(user, room, bot["user_id"], flat(groups[:i + 2]), d)
    got = settle(user, room, bot["user_id"], d, redis, len(WALK) - k - 1)
    assert bodies(got) == flat(groups), (bodies(got), d.read_log()[-3000:])
    # The bot kept its device (logged in once): Matrix de-duplicated the resent reply.
    assert redis.cli("HGET", "fb:{g}:matrix:auth", "device_id") == device
    user.close()


def test_first_start_skips_history(synapse, redis, make_daemon, tmp_path):
    """A daemon that starts with an empty Redis (a new deployment, or one that lost its data) must
    not answer what was said before it: the owner's answer written while no daemon ran stays
    unanswered; a message written after the start is answered."""
    bot = new_bot(synapse, tmp_path)
    d = start_bot(make_daemon, redis, synapse, bot)
    user = new_user(synapse)
    room = open_dm(user, bot["user_id"], d)
    rc, log = d.stop()
    d.check_clean(rc, log)
    user.send(room, "saint dizier")  # history for the next daemon
    seen = len(user.messages_from(room, bot["user_id"]))
    (tmp_path / "fresh").mkdir()
    fresh = Redis(tmp_path / "fresh")
    fresh.start()
    try:
        d2 = start_bot(make_daemon, fresh, synapse, bot)
        assert wait_until(lambda: matrix_adapter(d2).get("last_sync_age_ms", -1) >= 0, 30), matrix_adapter(d2)
        # A message after the start: its reply comes after any reply to the history would have
        # (one /sync batch is handled before the next; one conversation's replies go in order).
        user.send(room, "aide")
        assert user.wait_messages(room, bot["user_id"], seen + 1, 60), d2.read_log()[-3000:]
        settle(user, room, bot["user_id"], d2, fresh, 1)
        after = bodies(user.messages_from(room, bot["user_id"])[seen:])
        assert not any("Pour qui faites-vous" in b for b in after), (after, d2.read_log()[-3000:])
        rc, log = d2.stop()
        d2.check_clean(rc, log)
    finally:
        fresh.stop()


def test_gap_while_stopped_is_back_filled(synapse, redis, make_daemon, tmp_path):
    """The daemon is stopped; the owner sends 12 answers, more than the sync filter's timeline
    limit (5): the first /sync after the restart has a `limited` timeline. The bot pages back
    with /messages to the last event it handed to the router: every answer gets its replies,
    exactly once and in order (equal to the reference)."""
    groups = reference(synapse, tmp_path, make_daemon)
    bot = new_bot(synapse, tmp_path)
    d = start_bot(make_daemon, redis, synapse, bot, sync_timeline_limit=5)
    user = new_user(synapse)
    room = open_dm(user, bot["user_id"], d)
    user.send(room, WALK[0])
    wait_all(user, room, bot["user_id"], flat(groups[:2]), d)
    settle(user, room, bot["user_id"], d, redis, 2)
    rc, log = d.stop()
    d.check_clean(rc, log)
    n = 12
    for answer in WALK[1:1 + n]:
        user.send(room, answer)
    d.start()
    wait_all(user, room, bot["user_id"], flat(groups[:2 + n]), d)
    got = settle(user, room, bot["user_id"], d, redis, n)
    assert bodies(got) == flat(groups[:2 + n]), (bodies(got), d.read_log()[-3000:])
    log = d.read_log()
    # The back-fill ran (how many events Synapse leaves out of a limited timeline of 5 varies:
    # 6 to 8 were seen); the equality above is what matters.
    fetched = re.search(r"gap in room: (\d+) missed event\(s\) fetched", log)
    assert fetched and int(fetched.group(1)) >= 1, log[-3000:]
    user.close()


@pytest.fixture(scope="module")
def short_token_synapse(tmp_path_factory):
    """A Synapse whose refreshable access tokens last 5 s and refresh tokens 12 s (module scope:
    only the token tests use it)."""
    s = Synapse(tmp_path_factory.mktemp("shorttok"),
                extra={"refreshable_access_token_lifetime": "5s", "refresh_token_lifetime": "12s"})
    s.start()
    yield s
    s.stop()


def whoami_error(synapse, token):
    """The error body of GET /account/whoami with `token` (None when the token is accepted)."""
    try:
        http("GET", synapse.url + "/_matrix/client/v3/account/whoami", token=token)
        return None
    except HttpError as e:
        return (e.status, e.json())


def test_refresh_tokens_and_soft_logout(synapse, short_token_synapse, redis, make_daemon, tmp_path):
    """Access tokens of 5 s: a conversation that lasts several lifetimes keeps working (the bot
    refreshes: new access tokens in Redis, same device, one login). Then the daemon is stopped
    until its access token is answered 401 M_UNKNOWN_TOKEN soft_logout (checked on Synapse) and
    its refresh token has expired too: the restarted bot logs in again on the same device id and
    answers."""
    groups = reference(synapse, tmp_path, make_daemon)
    s = short_token_synapse
    bot = new_bot(s, tmp_path)
    d = start_bot(make_daemon, redis, s, bot)
    user = new_user(s)
    room = open_dm(user, bot["user_id"], d)
    device = redis.cli("HGET", "fb:{g}:matrix:auth", "device_id")
    assert device and redis.cli("HGET", "fb:{g}:matrix:auth", "refresh_token"), redis.cli("HGETALL", "fb:{g}:matrix:auth")
    k = 4
    for i in range(k):
        # Each answer after the bot's access token changed at least once: the conversation spans
        # several token lifetimes.
        token = redis.cli("HGET", "fb:{g}:matrix:auth", "access_token")
        assert wait_until(lambda: redis.cli("HGET", "fb:{g}:matrix:auth", "access_token") != token, 30, 0.1), \
            d.read_log()[-3000:]
        user.send(room, WALK[i])
        wait_all(user, room, bot["user_id"], flat(groups[:i + 2]), d)
    log = d.read_log()
    assert log.count("access token refreshed") >= k, log[-3000:]
    assert log.count("logged in (device") == 1, log[-3000:]
    assert "logout" not in log, log[-3000:]
    assert redis.cli("HGET", "fb:{g}:matrix:auth", "device_id") == device
    rc, log = d.stop()
    d.check_clean(rc, log)
    # Soft logout: the stored access token expires (Synapse says so), then the refresh token.
    token = redis.cli("HGET", "fb:{g}:matrix:auth", "access_token")
    assert wait_until(lambda: whoami_error(s, token) is not None, 30, 0.2)
    status, err = whoami_error(s, token)
    assert status == 401 and err["errcode"] == "M_UNKNOWN_TOKEN" and err["soft_logout"] is True, err
    time.sleep(13)  # the refresh token's lifetime (12 s) runs out: waiting, not an assertion
    d.start()  # the daemon's log file starts afresh
    user.send(room, WALK[k])
    wait_all(user, room, bot["user_id"], flat(groups[:k + 2]), d)
    after = d.read_log()
    assert "logged in (device " + device + ")" in after, after[-3000:]
    assert redis.cli("HGET", "fb:{g}:matrix:auth", "device_id") == device
    assert "token refresh failed (HTTP 403)" in after, after[-3000:]
    assert redis.cli("HGET", "fb:{g}:matrix:auth", "device_id") == device
    settle(user, room, bot["user_id"], d, redis, 1)
    # The same through a 401 soft_logout answered to the bot itself: its stored session says
    # nothing of the expiry (expires_at 0, as a homeserver that does not announce it), so the bot
    # uses the expired token, is told soft_logout, and logs in again on the same device.
    rc, log = d.stop()
    d.check_clean(rc, log)
    token = redis.cli("HGET", "fb:{g}:matrix:auth", "access_token")
    assert wait_until(lambda: whoami_error(s, token) is not None, 30, 0.2)
    time.sleep(13)  # the refresh token expires too
    redis.cli("HSET", "fb:{g}:matrix:auth", "expires_at", "0")
    d.start()
    user.send(room, WALK[k + 1])
    wait_all(user, room, bot["user_id"], flat(groups[:k + 3]), d)
    after = d.read_log()
    assert "access token refused (soft logout)" in after, after[-3000:]
    assert "logged in (device " + device + ")" in after, after[-3000:]
    assert redis.cli("HGET", "fb:{g}:matrix:auth", "device_id") == device
    got = settle(user, room, bot["user_id"], d, redis, 1)
    assert bodies(got) == flat(groups[:k + 3]), (bodies(got), after[-3000:])
    user.close()


def test_stop_cancels_the_long_poll(synapse, redis, make_daemon, tmp_path):
    """A one-minute /sync long-poll in flight when the daemon is told to stop: the adapter cancels
    it (fb_http_client_cancel), so the drain never reaches server.shutdown_deadline_s (5 s in the
    tests) and abandons nothing."""
    bot = new_bot(synapse, tmp_path)
    d = start_bot(make_daemon, redis, synapse, bot, sync_timeout_ms=60000)
    assert wait_until(lambda: matrix_adapter(d).get("last_sync_age_ms", -1) >= 0
                      and matrix_adapter(d).get("sync") == "polling", 30, 0.05), matrix_adapter(d)
    rc, log = d.stop()
    d.check_clean(rc, log)
    assert "shutdown deadline reached" not in log, log[-3000:]


def fill_conversations(redis, n):
    """Writes n web conversations straight into Redis (43-character tokens, as the web chat makes
    them), each with a session and one reply waiting in its outbox (and the pending index): the
    state a busy daemon leaves behind at a restart."""
    lua = ("for i = 1, tonumber(ARGV[1]) do\n"
           "  local k = 'web:' .. string.format('restart%036d', i)\n"
           "  redis.call('HSET', 'fb:{c:' .. k .. '}:session', 'v', '1', 'd', '{}', 'w', 'x')\n"
           "  redis.call('RPUSH', 'fb:{c:' .. k .. '}:outbox', cjson.encode({txn = 'r' .. i .. '.0', "
           "kind = 'reply', text = 'Bonjour', ts = 0}))\n"
           "  redis.call('ZADD', 'fb:{g}:outbox:pending', i, k)\n"
           "end\n"
           "return redis.call('ZCARD', 'fb:{g}:outbox:pending')\n")
    assert int(redis.cli("EVAL", lua, "0", str(n))) >= n


def test_restart_says_ok_after_a_catch_up_sync(synapse, redis, make_daemon, tmp_path):
    """After a restart the adapter says "ok" in /healthz as soon as a catch-up /sync (timeout=0) has
    handed what was missed, not when its first long-poll ends: sync_timeout_ms is 5 minutes here
    (30 s by default, which showed as ~28 s of "starting" after a restart), and nothing happens in
    the room meanwhile, so only the catch-up can make it "ok" within the wait below. Thousands of
    conversations whose replies wait in Redis (their recovery scan runs beside the sync loop) do not
    hold it either. Then the long-poll serves: an answer gets its reply. (The test's name avoids the
    word the harness waits for in the log, which its temporary directory's name would show.)"""
    bot = new_bot(synapse, tmp_path)
    d = start_bot(make_daemon, redis, synapse, bot, sync_timeout_ms=300000)
    user = new_user(synapse)
    room = open_dm(user, bot["user_id"], d)
    assert wait_until(lambda: matrix_adapter(d)["state"] == "ok", 60), matrix_adapter(d)
    rc, log = d.stop()
    d.check_clean(rc, log)
    fill_conversations(redis, 3000)
    d.start()

    def matrix_state():  # /healthz says 503 until Redis is connected: the adapter's state still
        return d.json("/healthz")[1]["adapters"]["matrix"]["state"]
    assert wait_until(lambda: matrix_state() == "ok", 120, 0.1), (matrix_state(), d.read_log()[-3000:])
    assert "sync: caught up; long-polling (timeout 300000 ms)" in d.read_log()
    before = len(user.messages_from(room, bot["user_id"]))
    user.send(room, WALK[0])
    assert len(user.wait_messages(room, bot["user_id"], before + 1, 60)) > before, d.read_log()[-3000:]
    # The conversations written into Redis got their replies too.
    assert wait_until(lambda: pending(redis) == 0, 120, 0.2), (pending(redis), d.read_log()[-3000:])


def test_synapse_restart_mid_conversation(synapse, redis, make_daemon, tmp_path):
    groups = reference(synapse, tmp_path, make_daemon)
    bot = new_bot(synapse, tmp_path)
    d = start_bot(make_daemon, redis, synapse, bot, start_delay_ms=800)
    user = new_user(synapse)
    room = open_dm(user, bot["user_id"], d)
    k = 4
    for i in range(k):
        user.send(room, WALK[i])
        wait_all(user, room, bot["user_id"], flat(groups[:i + 2]), d)
    # The reply to answer k waits in the outbox while Synapse goes down: its delivery fails and is
    # retried, and the long-poll breaks and resumes from the stored next_batch.
    user.send(room, WALK[k])
    assert wait_until(lambda: outbox_len(redis, room) >= 1, 30, 0.02), d.read_log()[-3000:]
    mark = len(d.read_log())
    synapse.stop()
    assert wait_until(lambda: "matrix" in d.log_since(mark), 30), "the daemon did not notice"
    t0 = time.monotonic()
    synapse.start()
    SYNAPSE_TIMINGS.append(("Synapse restart", synapse.start_seconds))
    wait_all(user, room, bot["user_id"], flat(groups[:k + 2]), d)
    SYNAPSE_TIMINGS.append(("Synapse restart to the delayed reply", time.monotonic() - t0))
    for i in range(k + 1, len(WALK)):
        user.send(room, WALK[i])
        wait_all(user, room, bot["user_id"], flat(groups[:i + 2]), d)
    got = settle(user, room, bot["user_id"], d, redis, len(WALK) + 1)
    assert bodies(got) == flat(groups), bodies(got)
    assert wait_until(lambda: matrix_adapter(d)["state"] == "ok", 30), matrix_adapter(d)
    user.close()


def test_network_faults_between_daemon_and_synapse(synapse, redis, make_daemon, tmp_path):
    """The daemon reaches Synapse through tests/support/fault_proxy.py: connections reset during
    the long-poll, refused for a while, cut in the middle of an answer, and slow. The owner talks
    to Synapse directly all along; every answer is answered once, in order."""
    groups = reference(synapse, tmp_path, make_daemon)
    proxy = FaultProxy(("127.0.0.1", synapse.port)).start()
    try:
        bot = new_bot(synapse, tmp_path)
        d = make_daemon(redis.address, idle_timeout_s=30,
                        extra=bot_matrix_yaml(synapse, bot).replace(synapse.url, proxy.url) + router_yaml())
        user = new_user(synapse)
        room = open_dm(user, bot["user_id"], d)
        step = iter(range(len(WALK)))
        t0 = time.monotonic()

        def answer(wait=True):
            i = next(step)
            user.send(room, WALK[i])
            if wait:
                wait_all(user, room, bot["user_id"], flat(groups[:i + 2]), d)
            return i

        answer()
        answer()
        # 1. Every connection reset while the bot long-polls; then an answer.
        proxy.cut()
        answer()
        # 2. Connections refused while the owner answers twice; then the path comes back.
        proxy.refuse = True
        proxy.cut()
        cuts = proxy.cuts
        answer(wait=False)
        i = answer(wait=False)
        assert wait_until(lambda: proxy.cuts >= cuts + 2, 30), "the daemon did not try to reconnect"
        proxy.refuse = False
        wait_all(user, room, bot["user_id"], flat(groups[:i + 2]), d)
        # 3. The next connection cut in the middle of the server's answer.
        cuts = proxy.cuts
        proxy.cut_after(300)
        proxy.cut()
        answer()
        assert proxy.cuts > cuts
        # 4. A slow network for two answers.
        proxy.delay_ms = 300
        answer()
        answer()
        proxy.delay_ms = 0
        for _ in range(len(WALK) - 8):
            answer()
        got = settle(user, room, bot["user_id"], d, redis, len(WALK) + 1)
        assert bodies(got) == flat(groups), bodies(got)
        assert wait_until(lambda: matrix_adapter(d)["state"] == "ok", 30), matrix_adapter(d)
        SYNAPSE_TIMINGS.append((f"conversation through the fault proxy ({proxy.cuts} cuts)", time.monotonic() - t0))
    finally:
        proxy.stop()


def test_burst_under_synapse_default_rate_limit(synapse, redis, make_daemon, tmp_path):
    """The bot keeps Synapse's default rc_message (0.2/s, burst 10): answers sent in a burst make
    more replies than the burst allows; every one arrives, in order, after 429s honoured."""
    groups = reference(synapse, tmp_path, make_daemon)
    bot = new_bot(synapse, tmp_path, ratelimited=True)
    d = start_bot(make_daemon, redis, synapse, bot)
    user = new_user(synapse)
    room = open_dm(user, bot["user_id"], d)
    # Enough answers for 13 replies or more (3 over the burst: about 15 s of rate limiting).
    n = next(i for i in range(len(WALK)) if len(flat(groups[:i + 2])) >= 13)
    t0 = time.monotonic()
    for answer in WALK[:n + 1]:
        user.send(room, answer)
    expected = flat(groups[:n + 2])
    got = wait_all(user, room, bot["user_id"], expected, d, timeout=180)
    SYNAPSE_TIMINGS.append((f"burst of {len(expected)} replies under the default rate limit", time.monotonic() - t0))
    got = settle(user, room, bot["user_id"], d, redis, n + 2)
    assert bodies(got) == expected
    assert metric(d, "frichebot_outbox_retried_total") >= 1, "no 429 seen: the rate limit was not exercised"
    user.close()


def test_invite_from_a_disallowed_user_is_refused(synapse, redis, make_daemon, tmp_path):
    bot = new_bot(synapse, tmp_path)
    alice = new_user(synapse, "alice")
    bob = new_user(synapse, "bob")
    # Only Alice, and one other server, may invite the bot: Bob, on the bot's own server, may not.
    d = start_bot(make_daemon, redis, synapse, bot, allowed_users=[alice.user_id],
                  allowed_servers=["agent.tchap.example"])
    refused = bob.create_dm(bot["user_id"])
    assert bob.wait_membership(refused, bot["user_id"], "leave", 60), d.read_log()[-3000:]
    leave = [ev for ev in bob.timeline[refused] if ev.get("type") == "m.room.member"
             and ev.get("state_key") == bot["user_id"] and ev["content"].get("membership") == "leave"]
    assert leave and "Désolé" in leave[-1]["content"].get("reason", ""), leave
    assert not bob.messages_from(refused, bot["user_id"])
    # Alice's invite is accepted and answered.
    open_dm(alice, bot["user_id"], d)
    assert not bob.messages_from(refused, bot["user_id"])
    assert bob.user_id not in d.read_log()
    alice.close()
    bob.close()


def test_encrypted_room_gets_the_notice_once(synapse, redis, make_daemon, tmp_path):
    bot = new_bot(synapse, tmp_path)
    d = start_bot(make_daemon, redis, synapse, bot)
    user = new_user(synapse)
    room = user.create_dm(bot["user_id"], encrypted=True)
    assert user.wait_membership(room, bot["user_id"], "join", 60), d.read_log()[-3000:]
    notices = user.wait_messages(room, bot["user_id"], 1, 60)
    assert len(notices) == 1 and ENCRYPTED_NOTICE in notices[0]["content"]["body"], notices
    assert notices[0]["content"]["msgtype"] == "m.notice"
    # Encrypted messages (the bot cannot read them) and a restart bring no second notice.
    fake = {"algorithm": "m.megolm.v1.aes-sha2", "sender_key": "k" * 43, "ciphertext": "AwgAEn" * 20,
            "session_id": "s" * 43, "device_id": "DEVICE"}
    for _ in range(3):
        user.send_raw(room, fake, "m.room.encrypted")
    assert wait_until(lambda: redis.cli("HGET", f"fb:{{c:matrix:{room}}}:mxroom", "notice") == "1",
                      30), redis.cli("HGETALL", f"fb:{{c:matrix:{room}}}:mxroom")
    rc, log = d.stop()
    d.check_clean(rc, log)
    # The invite's stripped state says "encrypted" before the bot is in the room: the notice waits
    # for the join, it is not tried (and refused with a 403) before it.
    assert "notice not sent" not in log and "HTTP 403" not in log, log[-3000:]
    d.start()
    user.send_raw(room, fake, "m.room.encrypted")
    # The owner leaves: the bot, alone, leaves too; by then it has handled everything before.
    user.run(user.client.room_leave(room))
    assert wait_until(lambda: user.synapse.admin_api(
        "GET", f"/_synapse/admin/v1/rooms/{urllib.parse.quote(room)}/members")["total"] == 0, 60), \
        d.read_log()[-3000:]
    msgs = synapse.admin_api("GET", f"/_synapse/admin/v1/rooms/{urllib.parse.quote(room)}/messages?dir=f&limit=1000")
    from_bot = [ev for ev in msgs["chunk"] if ev["sender"] == bot["user_id"] and ev["type"] == "m.room.message"]
    assert len(from_bot) == 1, from_bot
    assert "encrypt" in d.read_log().lower()
    assert "HTTP 403" not in d.read_log(), d.read_log()[-3000:]
    user.close()


# What Synapse refuses itself (400): these reach the daemon only through the appservice endpoint
# (test_appservice_hostile_transactions).
REFUSED_BY_SYNAPSE = [
    {"msgtype": "m.text"},  # no body
    {"msgtype": "m.text", "body": 42},
    {"msgtype": "m.text", "body": None},
    {"body": "pas de msgtype"},
    {"msgtype": 7, "body": "msgtype numérique"},
    {"msgtype": "m.text", "body": ["liste"]},
]
# What Synapse lets through: odd relations, control characters, other msgtypes, an edit, a reply.
HOSTILE_CONTENTS = [
    {"msgtype": "m.text", "body": "x", "m.relates_to": "pas un objet"},
    {"msgtype": "m.text", "body": "x", "m.relates_to": {"rel_type": "m.thread"}},  # thread without root
    {"msgtype": "m.text", "body": "x", "m.relates_to": {"rel_type": "m.thread", "event_id": 12}},
    {"msgtype": "m.text", "body": "x", "m.relates_to": {"m.in_reply_to": "pas un objet"}},
    {"msgtype": "m.text", "body": "\u0000\u0001\u007f\u0000"},
    {"msgtype": "m.text", "body": ""},
    {"msgtype": "m.image", "body": "photo.png", "url": "mxc://localhost/abc"},
    {"msgtype": "m.text", "body": "> <@x:localhost> citation\n> encore\n\n", "format": 3},
    {"msgtype": "m.text", "body": "x", "formatted_body": {"a": 1}, "format": "org.matrix.custom.html"},
    {"msgtype": "m.notice", "body": "une notice est ignorée"},
]
HTML = "<script>alert(1)</script><img src=x onerror=alert(2)> & \"«»\" <b>gras</b>"


def test_hostile_events_through_synapse_leave_the_daemon_serving(synapse, redis, make_daemon, tmp_path):
    bot = new_bot(synapse, tmp_path)
    d = start_bot(make_daemon, redis, synapse, bot)
    user = new_user(synapse)
    room = open_dm(user, bot["user_id"], d)
    # HTML in the text and in formatted_body (first: answered before the dialog gives up).
    user.send(room, HTML, content={"msgtype": "m.text", "body": HTML, "format": "org.matrix.custom.html",
                                   "formatted_body": HTML})
    for content in REFUSED_BY_SYNAPSE:
        with pytest.raises(HttpError) as refused:
            user.send_raw(room, content)
        assert refused.value.status == 400
    for content in HOSTILE_CONTENTS:
        user.send_raw(room, content)
    # An edit (of the bot's greeting): ignored.
    greeting = user.messages_from(room, bot["user_id"])[0]["event_id"]
    user.send_raw(room, {"msgtype": "m.text", "body": "* lyon", "m.new_content": {"msgtype": "m.text", "body": "lyon"},
                         "m.relates_to": {"rel_type": "m.replace", "event_id": greeting}})
    # Other event types with odd contents, state included.
    user.send_raw(room, {"body": 12}, "m.room.message.custom")
    user.synapse.client_api("PUT", f"/rooms/{urllib.parse.quote(room)}/state/im.vector.room.access_rules/",
                            user.token, {"rule": ["direct"]})
    user.synapse.client_api("PUT", f"/rooms/{urllib.parse.quote(room)}/state/m.room.member.x/{user.user_id}",
                            user.token, {"membership": 3})
    # A body near Synapse's 64 KiB event limit, one of many lines, right-to-left overrides, emoji.
    user.send(room, "é" * 30000)
    user.send(room, "\n" * 20000)
    user.send(room, "\u202e\u200f😀" * 1000)
    # The daemon still serves. (Checked in a new room: in that one, three answers that are not a
    # commune only brought help with the question, issue #19.) Sent after all of the above, so
    # handled after it (a /sync batch is acknowledged whole): the greeting and the next question.
    room2 = open_dm(user, bot["user_id"], d)
    n = len(user.messages_from(room2, bot["user_id"]))
    user.send(room2, "saint dizier")
    assert user.wait(lambda: any("Pour qui faites-vous" in b for b in bodies(user.messages_from(room2, bot["user_id"])[n:])),
                     60), (bodies(user.messages_from(room2, bot["user_id"])), d.read_log()[-3000:])
    replies = user.messages_from(room, bot["user_id"])
    assert any("conseiller" in b for b in bodies(replies)), bodies(replies)
    for ev in replies:
        html = ev["content"].get("formatted_body", "").lower()
        assert "<script" not in html and "onerror" not in html and "<img" not in html, html
    assert matrix_adapter(d)["state"] == "ok"
    user.close()


# -- application-service mode -------------------------------------------------------------------

AS_USER = "@frichebot:localhost"


def as_matrix_yaml(synapse_url, registration, port, as_url=None):
    return f"""matrix:
  enabled: true
  mode: appservice
  homeserver: "{synapse_url}"
  user_id: "{AS_USER}"
  appservice:
    registration_file: "{registration}"
    id: "frichebot"
    url: "{as_url or f'http://127.0.0.1:{port}'}"
"""


@contextlib.contextmanager
def appservice_stack(base, extra="", synapse_extra=None, matrix_extra="", proxy=None, as_proxy=False):
    """A Synapse that loads the registration written by `frichebot matrix-registration` (and the
    top-level settings `synapse_extra`), the daemon in appservice mode (its configuration, with
    `matrix_extra` inside its matrix section, plus `extra`) and its Redis, all started; stopped
    on exit, the daemon checked for a clean stop. `proxy`: a function called with a FaultProxy
    put between the daemon and Synapse before the daemon starts (yielded as "proxy"). `as_proxy`:
    a FaultProxy the other way, between Synapse and the daemon (the registration's url), yielded
    as "as_proxy"."""
    syn = Synapse(base / "synapse", extra=synapse_extra)
    fp = FaultProxy(("127.0.0.1", syn.port)).start() if proxy else None
    if fp:
        proxy(fp)
    port = free_port()
    afp = FaultProxy(("127.0.0.1", port)).start() if as_proxy else None
    registration = base / "registration.yaml"
    r = Redis(base)
    d = Daemon(base, r.address, listen=f"127.0.0.1:{port}", idle_timeout_s=30, max_body_bytes=1048576,
               extra=as_matrix_yaml(fp.url if fp else syn.url, registration, port, afp.url if afp else None)
               + matrix_extra + router_yaml() + extra)
    d.port = port  # where the daemon listens, hence the registration's url
    d.write_config()
    out = subprocess.run([BINARY, "matrix-registration", "-c", str(d.config_path)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    reg = yaml.safe_load(registration.read_text())
    syn.appservices = [registration]
    try:
        r.start()
        syn.start()
        SYNAPSE_TIMINGS.append(("Synapse start (appservice mode)", syn.start_seconds))
        d.start()
        yield {"synapse": syn, "daemon": d, "redis": r, "reg": reg, "registration": registration,
               "proxy": fp, "as_proxy": afp}
        rc, log = d.stop()
        d.check_clean(rc, log)
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
        syn.stop()
        r.stop()
        if fp:
            fp.stop()
        if afp:
            afp.stop()


@pytest.fixture(scope="module")
def appservice(tmp_path_factory):
    """The appservice stack, running for the whole module: a homeserver backs off from an
    application service that stops answering, so the service stays up between the tests."""
    with appservice_stack(tmp_path_factory.mktemp("appservice")) as stack:
        yield stack


def as_put(d, txn_id, body, token):
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, _, out = d.request(f"/_matrix/app/v1/transactions/{urllib.parse.quote(txn_id)}", "PUT", data, headers)
    return status, out


def fake_message(room, who, text, **more):
    ev = {"type": "m.room.message", "room_id": room, "sender": who, "event_id": "$" + secrets.token_hex(12),
          "origin_server_ts": int(time.time() * 1000), "content": {"msgtype": "m.text", "body": text}}
    ev.update(more)
    return ev


def test_appservice_conversation_replay_and_tokens(appservice):
    syn, d, r, reg = appservice["synapse"], appservice["daemon"], appservice["redis"], appservice["reg"]
    user = new_user(syn)
    h0 = handled(d)
    t0 = time.monotonic()
    room = open_dm(user, AS_USER, d)
    for answer in WALK[:14]:  # to the roadmap, then « merci »: the rating question
        n = len(user.messages_from(room, AS_USER))
        user.send(room, answer)
        assert user.wait_messages(room, AS_USER, n + 1, 30)[n:], (answer, d.read_log()[-3000:])
    settle(user, room, AS_USER, d, r, h0 + 15)
    SYNAPSE_TIMINGS.append(("friche conversation over the appservice (join to the rating question)", time.monotonic() - t0))
    texts = bodies(user.messages_from(room, AS_USER))
    roadmap = roadmap_text(texts)
    for needle in ROADMAP:
        assert needle in roadmap

    hs = reg["hs_token"]
    # A transaction the daemon handles: a rating, answered once.
    txn_id = "replay-" + secrets.token_hex(4)
    rating = fake_message(room, user.user_id, "4")
    assert as_put(d, txn_id, {"events": [rating]}, hs) == (200, b"{}")
    # The same transaction again (its event older by now): acknowledged, not reprocessed.
    mark = len(d.read_log())
    assert as_put(d, txn_id, {"events": [dict(rating, unsigned={"age": 30000})]}, hs) == (200, b"{}")
    assert "transaction replayed: acknowledged, not handled again" in d.log_since(mark)
    # A wrong token and no token: refused, nothing handled.
    sneaky = fake_message(room, user.user_id, "oublier mes données")
    status, body = as_put(d, "wrong-" + secrets.token_hex(4), {"events": [sneaky]}, "0" * len(hs))
    assert status == 403 and json.loads(body)["errcode"] == "M_FORBIDDEN"
    status, body = as_put(d, "none-" + secrets.token_hex(4), {"events": [sneaky]}, None)
    assert status == 401 and json.loads(body)["errcode"] == "M_UNAUTHORIZED"
    status, body = as_put(d, "short-" + secrets.token_hex(4), {"events": [sneaky]}, hs[:-1])
    assert status == 403
    # Then a real message through Synapse: the replies so far are the rating's (the comment
    # question) and this one's; nothing for the replayed or the refused events, which would have
    # come first (one conversation's replies go out in order).
    n = len(user.messages_from(room, AS_USER))
    user.send(room, "non")
    got = user.wait(lambda: [b for b in bodies(user.messages_from(room, AS_USER)[n:]) if "Merci pour votre avis" in b], 60)
    assert got, (bodies(user.messages_from(room, AS_USER)[n:]), d.read_log()[-3000:])
    after = bodies(user.messages_from(room, AS_USER)[n:])
    assert "commentaire" in after[0] and all("données" not in b or "mes données" in b for b in after), after
    assert r.cli("EXISTS", f"fb:{{c:matrix:{room}}}:session") == "1"  # not forgotten
    # The rating counted once, the replayed "comment" never read.
    assert r.cli("HGET", "fb:{g}:stats", "avis_note_4") == "1"
    assert "jamais" not in r.cli("LRANGE", "fb:{g}:avis:comments", "0", "-1")
    assert r.cli("EXISTS", f"fb:{{g}}:matrix:txn:{txn_id}") == "1"
    # The other endpoints.
    ping = d.request("/_matrix/app/v1/ping", "POST", b"{}", {"Authorization": f"Bearer {hs}",
                                                              "Content-Type": "application/json"})
    assert ping[0] == 200
    assert d.request(f"/_matrix/app/v1/users/{urllib.parse.quote(AS_USER)}", headers={"Authorization": f"Bearer {hs}"})[0] == 200
    status, _, body = d.request("/_matrix/app/v1/users/" + urllib.parse.quote("@someone:localhost"),
                                headers={"Authorization": f"Bearer {hs}"})
    assert status == 404 and json.loads(body)["errcode"] == "M_NOT_FOUND"
    status, _, body = d.request("/_matrix/app/v1/rooms/" + urllib.parse.quote("#x:localhost"),
                                headers={"Authorization": f"Bearer {hs}"})
    assert status == 404
    assert d.request("/_matrix/app/v1/ping", "POST", b"{}", {"Authorization": "Bearer nope"})[0] == 403
    # Synapse's own ping reaches the daemon with the right token.
    pong = http("POST", f"{syn.url}/_matrix/client/v1/appservice/{reg['id']}/ping", {}, token=reg["as_token"])
    assert "duration_ms" in pong, pong
    log = d.read_log()
    assert hs not in log and reg["as_token"] not in log
    user.close()


@pytest.mark.parametrize("device", [True, False], ids=["device", "device-refused"])
def test_appservice_resend_across_a_synapse_restart_is_stored_once(tmp_path, device):
    """Issue 18 (make soak's last duplicate): a reply Synapse stored, whose answer was lost on
    the way back as Synapse restarted, is sent again by the outbox with the same transaction id.
    With the service's device (mx_as_device.c) Synapse finds the transaction id in its database
    and answers with the first event: one reply. When the homeserver refuses the device (the
    fault proxy answers its PUT 400, as one without MSC4190 would), the daemon warns and sends
    without one, as before the fix: Synapse, which keeps a service's transaction ids in memory
    only, stores the reply twice, which shows this test sees the duplicate it guards against."""
    def arm(fp):
        if not device:
            fp.fail_requests(400, 1, match=b"/devices/")
    # A send's answer waits for the restart: longer than it takes (the client's timeout would
    # send again first, to a Synapse that still remembers).
    with appservice_stack(tmp_path, extra="http_client:\n  timeout_ms: 120000\n", proxy=arm) as st:
        syn, d, r, fp = st["synapse"], st["daemon"], st["redis"], st["proxy"]
        assert st["reg"].get("io.element.msc4190") is True, st["reg"]
        user = new_user(syn)
        room = open_dm(user, AS_USER, d)
        log = d.read_log()
        if device:
            assert "the service's device is FB" in log, log[-3000:]
            assert "refused the service's device" not in log
        else:
            assert fp.failed == 1 and "refused the service's device (HTTP 400" in log, log[-3000:]
        assert wait_until(lambda: pending(r) == 0, 30, 0.1)
        user.sync(0)
        n = len(user.messages_from(room, AS_USER))
        fp.lose_answers(b"/send/m.room.message/", 1)
        user.send(room, WALK[0])
        # Synapse stored the reply (the user sees it); the daemon never got the answer.
        assert user.wait(lambda: len(user.messages_from(room, AS_USER)) > n, 60), d.read_log()[-3000:]
        assert fp.lost == 1
        syn.restart()
        assert wait_until(lambda: pending(r) == 0, 120, 0.2), (pending(r), d.read_log()[-3000:])
        user.sync(0)
        after = bodies(user.messages_from(room, AS_USER)[n:])
        assert any("Pour qui" in b for b in after), after
        twice = len(after) - len(set(after))
        if device:
            assert twice == 0, after
        else:
            assert twice == 1, after
        user.close()


def lose_a_message(st, check_mark=False):
    """A user in a direct room with the service sends WALK[0]; the fault proxy between Synapse
    and the daemon acknowledges its transaction without forwarding it, as a restarting Synapse
    may (element-hq/synapse#11637). Returns (user, room, handled before, bot messages before)."""
    syn, d, r, afp = st["synapse"], st["daemon"], st["redis"], st["as_proxy"]
    user = new_user(syn)
    room = open_dm(user, AS_USER, d)
    assert wait_until(lambda: pending(r) == 0, 30, 0.1)
    time.sleep(2)  # Synapse sends the bot's own greeting back to the service: let it pass
    if check_mark:
        assert r.cli("HGET", "fb:{g}:matrix:recent", room), r.cli("HGETALL", "fb:{g}:matrix:recent")
    h0 = handled(d)
    user.sync(0)
    n = len(user.messages_from(room, AS_USER))
    afp.fail_requests(200, 1, match=b"/_matrix/app/v1/transactions/")
    user.send(room, WALK[0])
    assert wait_until(lambda: afp.failed == 1, 30, 0.1), d.read_log()[-3000:]
    time.sleep(2)
    assert handled(d) == h0, "the transaction lost was not the user's message"
    return user, room, h0, n


def no_reply_twice(user, room, redis, n):
    """Once the outbox is empty, the bot's messages after the first `n` hold no text twice."""
    assert wait_until(lambda: pending(redis) == 0, 30, 0.1)
    time.sleep(1)
    user.sync(0)
    after = bodies(user.messages_from(room, AS_USER)[n:])
    assert len(after) == len(set(after)), after


@pytest.mark.parametrize("catch_up", [True, False], ids=["catch-up", "off"])
def test_appservice_message_lost_by_a_restarting_homeserver_is_answered(tmp_path, catch_up):
    """Issue 18 (make soak's last loss): a restarting Synapse may lose events it had queued for
    the service (element-hq/synapse#11637): a user's message, stored in the room, never reaches
    the daemon. Here a fault proxy between Synapse and the daemon acknowledges one transaction
    without forwarding it, then Synapse restarts for real. The daemon's probe sees it fail and
    answer again, reads the room back from the last event it handled, and answers the message,
    once. With `catch_up_minutes: 0` the message stays unanswered: this test sees the loss."""
    off = "" if catch_up else "    catch_up_minutes: 0\n"
    with appservice_stack(tmp_path, matrix_extra="    probe_interval_ms: 500\n" + off, as_proxy=True) as st:
        syn, d, r = st["synapse"], st["daemon"], st["redis"]
        user, room, h0, n = lose_a_message(st)
        mark = len(d.read_log())
        syn.restart()
        if catch_up:
            got = user.wait(lambda: [b for b in bodies(user.messages_from(room, AS_USER)[n:]) if "Pour qui" in b], 60)
            assert got, d.log_since(mark)[-4000:]
            log = d.log_since(mark)
            assert "the homeserver answers again after" in log, log[-3000:]
            assert "catch-up: 1 message(s) after the last event handled" in log, log[-3000:]
            no_reply_twice(user, room, r, n)
            assert handled(d) == h0 + 1, handled(d)
            assert metric(d, "frichebot_matrix_catchups_total") >= 1
        else:
            time.sleep(10)  # far longer than the catch-up takes when it is on
            user.sync(0)
            assert bodies(user.messages_from(room, AS_USER)[n:]) == []
            assert handled(d) == h0
            assert "reading back" not in d.log_since(mark)
        user.close()


def test_appservice_message_lost_as_daemon_and_homeserver_restart_is_answered(tmp_path):
    """The same loss when the daemon restarts with the homeserver (an upgrade, a reboot): its
    memory of the active rooms is gone, but their marks are in Redis (`matrix:recent`); the new
    daemon reads those rooms back once the homeserver answers."""
    with appservice_stack(tmp_path, matrix_extra="    probe_interval_ms: 500\n", as_proxy=True) as st:
        syn, d, r = st["synapse"], st["daemon"], st["redis"]
        user, room, h0, n = lose_a_message(st, check_mark=True)
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(10)
        d.log.close()
        syn.restart()
        d.start()
        got = user.wait(lambda: [b for b in bodies(user.messages_from(room, AS_USER)[n:]) if "Pour qui" in b], 60)
        log = d.read_log()
        assert got, log[-4000:]
        assert "before this start: read back once the homeserver answers" in log, log[-3000:]
        assert "catch-up: 1 message(s) after the last event handled" in log, log[-3000:]
        no_reply_twice(user, room, r, n)
        user.close()


def test_appservice_reused_transaction_id_with_other_events_is_handled(appservice):
    """Synapse on SQLite numbers its transactions from 1 again after a restart (its id generator
    starts from the highest id still waiting to be sent: none once all were): ids the daemon has
    marked come back with new events. They are told from a replay by their event ids, and handled
    (make soak found messages acknowledged unread after each Synapse restart)."""
    syn, d, reg = appservice["synapse"], appservice["daemon"], appservice["reg"]
    user = new_user(syn)
    room = open_dm(user, AS_USER, d)
    hs = reg["hs_token"]
    txn_id = "reused-" + secrets.token_hex(4)
    h0 = handled(d)
    assert as_put(d, txn_id, {"events": [fake_message(room, user.user_id, "aide")]}, hs) == (200, b"{}")
    assert wait_until(lambda: handled(d) >= h0 + 1, 10), handled(d)
    mark = len(d.read_log())
    second = fake_message(room, user.user_id, "aide")
    assert as_put(d, txn_id, {"events": [second]}, hs) == (200, b"{}")
    assert "transaction id reused for other events" in d.log_since(mark), d.log_since(mark)
    assert wait_until(lambda: handled(d) >= h0 + 2, 10), handled(d)
    # That transaction sent again (the same events) is a replay, as before.
    mark = len(d.read_log())
    assert as_put(d, txn_id, {"events": [dict(second, unsigned={"age": 60000})]}, hs) == (200, b"{}")
    assert "transaction replayed: acknowledged, not handled again" in d.log_since(mark)
    time.sleep(0.5)
    assert handled(d) == h0 + 2
    user.close()


def test_appservice_hostile_transactions(appservice):
    syn, d, reg = appservice["synapse"], appservice["daemon"], appservice["reg"]
    hs = reg["hs_token"]
    user = new_user(syn)
    room = open_dm(user, AS_USER, d)
    me = user.user_id
    # Not a JSON object with an events array: 400. Invalid UTF-8 is repaired before decoding
    # (MATRIX.md), so that transaction is read, and its broken event skipped: 200.
    bad_bodies = [(b"", 400), (b"not json", 400), (b"[]", 400), (b'"events"', 400), (b'{"events": 3}', 400),
                  (b'{"events": {"a": 1}}', 400), (b'{"events": [1, "x', 400),
                  (b'{"events":[{"type":"m.room.message","body":"\xff\xfe"}]}', 200),
                  (b'\xef\xbb\xbf{"events": []}' + b"\x00" * 10, 400)]
    for body, expected in bad_bodies:
        status, out = as_put(d, "bad-" + secrets.token_hex(4), body, hs)
        assert status == expected, (body, status, out)
        if status == 400:
            assert json.loads(out)["errcode"] in ("M_NOT_JSON", "M_BAD_JSON"), out
    # Bad events inside a good transaction: skipped one by one, the good event still answered.
    good = fake_message(room, me, "saint dizier")
    events = [
        1, None, "event", [], {},
        {"type": "m.room.message"},
        {"type": 5, "room_id": room, "sender": me, "event_id": "$a1", "content": {}},
        fake_message(room, me, "x", event_id=7),
        fake_message(room, me, "x", sender=None),
        fake_message(room, me, "x", room_id=["!a:b"]),
        fake_message(room, me, "x", content="texte"),
        fake_message(room, me, None),
        fake_message(room, me, "y" * 70000),  # over the adapter's 64 KiB
        fake_message(room, me, "a\udc80b"),  # a lone surrogate: not valid UTF-8
        fake_message(room, me, HTML, event_id="$" + "e" * 300),  # an event id over the router's limit
        fake_message("!not-a-room-of-mine:localhost", me, "bonjour"),
        {"type": "m.room.member", "room_id": room, "sender": me, "state_key": AS_USER, "event_id": "$m1",
         "content": {"membership": 12}},
        {"type": "m.room.encryption", "room_id": "!other:localhost", "sender": me, "event_id": "$e1"},
        fake_message(room, AS_USER, "mon propre message"),
        good,
    ]
    body = json.dumps({"events": events}, ensure_ascii=True).encode()
    status, out = as_put(d, "mixed-" + secrets.token_hex(4), body, hs)
    assert status == 200, out
    # Raw invalid UTF-8 inside an otherwise valid JSON string.
    raw = (b'{"events":[{"type":"m.room.message","room_id":"' + room.encode() + b'","sender":"' + me.encode()
           + b'","event_id":"$raw1","content":{"msgtype":"m.text","body":"\xc3\x28 \xff"}}]}')
    status, out = as_put(d, "raw-" + secrets.token_hex(4), raw, hs)
    assert status == 200, (status, out)
    # Over server.max_body_bytes: refused by the server.
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as sock:
        sock.sendall(f"PUT /_matrix/app/v1/transactions/huge HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {hs}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: 1100000\r\n\r\n".encode() + b'{"events":["')
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    n = len(user.messages_from(room, AS_USER))
    assert user.wait(lambda: any("Pour qui faites-vous" in b for b in bodies(user.messages_from(room, AS_USER)[1:])), 60), \
        (bodies(user.messages_from(room, AS_USER)), d.read_log()[-3000:])
    # And the service keeps answering through Synapse.
    user.send(room, "la commune")
    assert user.wait(lambda: any("Quel était l'usage" in b for b in bodies(user.messages_from(room, AS_USER)[n:])), 60)
    for ev in user.messages_from(room, AS_USER):
        html = ev["content"].get("formatted_body", "").lower()
        assert "<script" not in html and "onerror" not in html
    assert matrix_adapter(d)["state"] == "ok"
    user.close()


# -- frichebot matrix-registration --------------------------------------------------------------

def test_registration_command(tmp_path):
    port = free_port()
    reg_path = tmp_path / "reg.yaml"
    d = Daemon(tmp_path, "tcp://127.0.0.1:1", listen=f"127.0.0.1:{port}",
               extra=as_matrix_yaml("http://127.0.0.1:1", reg_path, port).replace(AS_USER, "@frichebot.bot:agent.tchap.example"))
    d.write_config()
    run = lambda *a: subprocess.run([BINARY, "matrix-registration", "-c", str(d.config_path), *a],
                                    capture_output=True, text=True, timeout=30)
    out = run()
    assert out.returncode == 0, out.stderr
    mode = stat.S_IMODE(os.stat(reg_path).st_mode)
    assert mode == 0o600, oct(mode)
    reg = yaml.safe_load(reg_path.read_text())
    assert reg["id"] == "frichebot"
    assert reg["url"] == f"http://127.0.0.1:{port}"
    assert reg["sender_localpart"] == "frichebot.bot"
    assert re.fullmatch(r"[0-9a-f]{64}", reg["as_token"]) and re.fullmatch(r"[0-9a-f]{64}", reg["hs_token"])
    assert reg["as_token"] != reg["hs_token"]
    users = reg["namespaces"]["users"]
    assert users == [{"exclusive": True, "regex": r"@frichebot\.bot:agent\.tchap\.example"}], users
    assert re.fullmatch(users[0]["regex"], "@frichebot.bot:agent.tchap.example")
    assert not re.fullmatch(users[0]["regex"], "@frichebotXbot:agent.tchap.example")
    assert reg["rate_limited"] is False
    assert reg["as_token"] not in out.stdout + out.stderr and reg["hs_token"] not in out.stdout + out.stderr
    # An existing file is kept unless --force; --force writes fresh tokens.
    before = reg_path.read_text()
    refused = run()
    assert refused.returncode != 0 and reg_path.read_text() == before
    assert run("--force").returncode == 0
    again = yaml.safe_load(reg_path.read_text())
    assert again["as_token"] != reg["as_token"] and again["hs_token"] != reg["hs_token"]
    # -o FILE and -o - (standard output).
    other = tmp_path / "other.yaml"
    assert run("-o", str(other)).returncode == 0 and other.exists()
    stdout = run("-o", "-")
    assert stdout.returncode == 0
    printed = yaml.safe_load(stdout.stdout)
    assert printed["id"] == "frichebot" and re.fullmatch(r"[0-9a-f]{64}", printed["hs_token"])


def test_roadmap_and_reminder_notify_the_user(synapse, redis, make_daemon, tmp_path):
    """The roadmap and a reminder are m.text, which the default push rules notify; the routine
    answers are m.notice, which .m.rule.suppress_notices never notifies. Read on the user's
    GET /notifications."""
    bot = new_bot(synapse, tmp_path)
    bot_id = bot["user_id"]
    d = make_daemon(redis.address, idle_timeout_s=30, start=False,
                    extra=bot_matrix_yaml(synapse, bot) + router_yaml()
                    + "reminders:\n  poll_interval_ms: 50\n  working_hours_only: false\n")
    d.start()
    user = new_user(synapse)
    room = open_dm(user, bot_id, d)
    for answer in WALK:
        n = len(user.messages_from(room, bot_id))
        user.send(room, answer)
        assert user.wait_messages(room, bot_id, n + 1, 30)[n:], (answer, d.log_since(0)[-3000:])
    got = settle(user, room, bot_id, d, redis, len(WALK) + 1)
    routine, roadmap = roadmap_split(got)
    assert roadmap and len(routine) >= len(WALK), [(ev["content"]["msgtype"], ev["content"]["body"][:40])
                                                   for ev in got]
    ids = wait_notified(synapse, user, bot_id, [ev["event_id"] for ev in roadmap])
    assert set(ids) == {ev["event_id"] for ev in roadmap}, (len(ids), len(roadmap), bodies(got))

    # The reminder armed at the roadmap's end, made due now, as if its delay had passed since the
    # user's last event (set back by the delay: the push-back is lazy, docs/internals/REMINDERS.md).
    conv = f"matrix:{room}"
    due = int(time.time() * 1000) - 1000
    delay = int(redis.cli("HGET", f"fb:{{c:{conv}}}:reminders", "relance#a"))
    redis.cli("HSET", f"fb:{{c:{conv}}}:session", "a", str(due - delay))
    due = str(due)
    assert redis.cli("ZADD", "fb:{g}:reminders:due", "XX", "CH", due, f"{conv}|relance") == "1", \
        redis.cli("ZRANGE", "fb:{g}:reminders:due", "0", "-1")
    n = len(got)
    later = user.wait_messages(room, bot_id, n + 1, 30)[n:]
    assert later, d.read_log()[-3000:]
    assert all(ev["content"]["msgtype"] == "m.text" for ev in later), [ev["content"] for ev in later]
    ids = wait_notified(synapse, user, bot_id, [ev["event_id"] for ev in later])
    assert set(ids) == {ev["event_id"] for ev in roadmap + later}, (len(ids), bodies(later))
    print(f"\nnotifications of the user: {len(ids)} of {len(got) + len(later)} bot messages "
          f"({len(roadmap)} roadmap, {len(later)} reminder)")
    user.close()
