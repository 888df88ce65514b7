# SPDX-License-Identifier: MIT
"""Escalation to human advisors (docs/internals/ESCALATION.md) with a real Synapse
(tests/integration/synapse.py), the real daemon and a real redis-server; matrix-nio clients play
the user and two advisors. The time from the user's escalating message to the thread root in the
advisors' room is measured in each test and reported (median) in the terminal summary."""
import json
import signal
import statistics
import time

import pytest

from conftest import SYNAPSE_TIMINGS, wait_until
from synapse import bodies
from test_matrix import (_close_clients, bot_matrix_yaml, hold_outbox, new_bot, new_user,  # noqa: F401
                         notified, open_dm, router_yaml, wait_notified)

ROOT_LATENCIES = []


@pytest.fixture(autouse=True, scope="module")
def _report_root_latency():
    """Reports the median time from the escalating message to the thread root, measured by the
    tests of this module, in the terminal summary (conftest's SYNAPSE_TIMINGS)."""
    yield
    if ROOT_LATENCIES:
        med = statistics.median(ROOT_LATENCIES)
        SYNAPSE_TIMINGS.append((f"escalation to thread root, median of {len(ROOT_LATENCIES)} "
                                f"(min {min(ROOT_LATENCIES) * 1000:.0f} ms, max "
                                f"{max(ROOT_LATENCIES) * 1000:.0f} ms, median {med * 1000:.0f} ms)", med))
REPRISE = "Le conseiller vous a rendu la main : reprenons."
ADV1 = "Camille Martin (DDT 52)"  # advisor 1's display name: the label the user and the thread see


def esc_yaml(rooms, watchdog_ms=600000):
    return ("stats:\n  min_count: 1\n  cache_seconds: 0\n"
            "escalation:\n  enabled: true\n"
            f"  rooms: {json.dumps(rooms)}\n"
            '  response_times: ["52 sous deux jours ouvrés", "* sous cinq jours ouvrés"]\n'
            f"  watchdog_ms: {watchdog_ms}\n  working_hours_only: false\n")


def advisors_room(creator, others, bot_id, name):
    """A room created by `creator`, joined by `others` (advisors) and the bot is invited."""
    nio = creator.nio
    resp = creator.run(creator.client.room_create(name=name, invite=[o.user_id for o in others] + [bot_id]))
    assert isinstance(resp, nio.RoomCreateResponse), resp
    for o in others:
        r = o.run(o.client.join(resp.room_id))
        assert isinstance(r, nio.JoinResponse), r
    return resp.room_id


def thread_reply(client, room, root, body):
    return client.send_raw(room, {"msgtype": "m.text", "body": body,
                                  "m.relates_to": {"rel_type": "m.thread", "event_id": root,
                                                   "is_falling_back": True,
                                                   "m.in_reply_to": {"event_id": root}}})


def in_thread(ev, root):
    rel = ev.get("content", {}).get("m.relates_to") or {}
    return rel.get("rel_type") == "m.thread" and rel.get("event_id") == root


def bot_thread(client, room, bot_id, root):
    return [ev["content"]["body"] for ev in client.messages_from(room, bot_id) if in_thread(ev, root)]


def redacted(client, room, sender):
    """The ids of the events `sender` redacted in `room`, as seen by `client`."""
    return {ev.get("redacts") or ev.get("content", {}).get("redacts")
            for ev in client.timeline.get(room, [])
            if ev.get("type") == "m.room.redaction" and ev.get("sender") == sender}


def wait_body(client, room, sender, needle, timeout=30, pred=None):
    def find():
        for ev in client.messages_from(room, sender):
            if needle in ev["content"].get("body", "") and (pred is None or pred(ev)):
                return ev
        return None
    return client.wait(find, timeout)


def setup(synapse, redis, make_daemon, tmp_path, watchdog_ms=600000, start_delay_ms=0):
    bot = new_bot(synapse, tmp_path)
    a1, a2 = new_user(synapse, "adv1"), new_user(synapse, "adv2")
    r = a1.run(a1.client.set_displayname(ADV1))
    assert isinstance(r, a1.nio.ProfileSetDisplayNameResponse), r
    room52 = advisors_room(a1, [a2], bot["user_id"], "Conseillers 52")
    room_def = advisors_room(a2, [], bot["user_id"], "Conseillers (autres)")
    extra = (bot_matrix_yaml(synapse, bot) + router_yaml()
             + esc_yaml([f"52 {room52}", f"* {room_def}"], watchdog_ms))
    d = make_daemon(redis.address, idle_timeout_s=30, extra=extra, start=False)
    d.start(env=hold_outbox(start_delay_ms))
    assert a1.wait_membership(room52, bot["user_id"], "join", 60), d.read_log()[-3000:]
    assert a2.wait_membership(room_def, bot["user_id"], "join", 60), d.read_log()[-3000:]
    return bot, d, a1, a2, room52, room_def, extra


def escalate(user, dm, bot_id, advisor, room, daemon, redis=None, early=None):
    """The user gives the commune then asks for a person; returns the thread root event. `early`:
    a message sent right after the request, before the root can be in the room."""
    n = len(user.messages_from(dm, bot_id))
    user.send(dm, "saint dizier")
    assert user.wait_messages(dm, bot_id, n + 1, 30)[n:], daemon.read_log()[-3000:]
    t0 = time.monotonic()
    user.send(dm, "conseiller")
    if early:
        user.send(dm, early)
    root = wait_body(advisor, room, bot_id, "Nouvelle demande d'accompagnement", 30)
    assert root, (redis.cli("KEYS", "*") if redis else "", daemon.read_log()[-3000:])
    ROOT_LATENCIES.append(time.monotonic() - t0)
    return root


def test_escalation_claim_relay_and_handback(synapse, redis, make_daemon, tmp_path):
    bot, d, a1, a2, room52, room_def, _ = setup(synapse, redis, make_daemon, tmp_path)
    bot_id = bot["user_id"]
    user = new_user(synapse)
    dm = open_dm(user, bot_id, d)
    t_esc = time.time()
    root = escalate(user, dm, bot_id, a1, room52, d, redis, early="Vite : le terrain est-il inondable ?")
    body = root["content"]["body"]
    assert "Saint-Dizier (Haute-Marne, 52)" in body and "demandé à parler" in body, body
    # The engine's summary carries the user's last messages (session `l`), the escalating one last.
    assert "\n\nDerniers messages de l'usager :\n« saint dizier »\n« conseiller »" in body, body
    # Nothing in the default room; the user is told the territory's usual response time.
    assert not a2.messages_from(room_def, bot_id)
    assert wait_body(user, dm, bot_id, "en général sous deux jours ouvrés"), bodies(user.messages_from(dm, bot_id))
    # The ticket keeps the root's event id.
    tk = f"fb:{{c:matrix:{dm}}}:ticket"
    assert wait_until(lambda: redis.cli("HGET", tk, "root") == root["event_id"], 10), redis.cli("HGETALL", tk)
    assert redis.cli("HGET", tk, "state") == "waiting"

    # The message sent right after the request, before the root's event id was known, is in the
    # thread all the same (its outbox waits for the root), and never unthreaded in the room.
    assert wait_body(a1, room52, bot_id, "Usager : Vite : le terrain est-il inondable ?",
                     pred=lambda e: in_thread(e, root["event_id"])), d.read_log()[-3000:]
    assert not [e for e in a1.messages_from(room52, bot_id)
                if "inondable" in e["content"]["body"] and not in_thread(e, root["event_id"])]

    # Claim by advisor 1, named by their display name; advisor 2's claim is refused.
    thread_reply(a1, room52, root["event_id"], "!prendre")
    assert wait_body(a1, room52, bot_id, f"prise en charge par {ADV1}", pred=lambda e: in_thread(e, root["event_id"]))
    assert wait_body(user, dm, bot_id, f"{ADV1}, conseiller, a pris en charge votre demande")
    thread_reply(a2, room52, root["event_id"], "!prendre")
    assert wait_body(a2, room52, bot_id, f"déjà prise en charge par {ADV1}")
    assert redis.cli("HGET", tk, "claimed") == a1.user_id
    # The claim is the advisors' first response: one sample of their response time for /stats.
    took = int(redis.cli("LINDEX", "fb:{g}:stats:advisor_response_ms", "0"))
    assert 0 <= took <= (time.time() - t_esc) * 1000 + 1000, took
    from test_stats import get_json
    stats = get_json(d, "/stats.json")
    assert stats["advisor_response"] == {"median_seconds": took // 1000, "samples": 1}, stats["advisor_response"]

    # Relay both ways; the bot itself stays quiet.
    n_user = len(user.messages_from(dm, bot_id))
    user.send(dm, "Bonjour, le terrain est-il pollué ?")
    assert wait_body(a1, room52, bot_id, "Usager : Bonjour, le terrain est-il pollué ?",
                     pred=lambda e: in_thread(e, root["event_id"])), d.read_log()[-3000:]
    thread_reply(a1, room52, root["event_id"], "Je regarde votre dossier.")
    got = wait_body(user, dm, bot_id, "(conseiller) : Je regarde votre dossier.")
    assert got and got["content"]["body"] == f"{ADV1} (conseiller) : Je regarde votre dossier.", \
        bodies(user.messages_from(dm, bot_id))
    assert redis.cli("LLEN", "fb:{g}:stats:advisor_response_ms") == "1"  # only the first response counts
    # An internal note is confirmed in the thread and never reaches the user.
    thread_reply(a1, room52, root["event_id"], "!note rappeler la mairie")
    assert wait_body(a1, room52, bot_id, "Note enregistrée")
    new = bodies(user.messages_from(dm, bot_id)[n_user:])
    assert len(new) == 1 and not any("rappeler la mairie" in b for b in new), new

    # Hand back: the dialog resumes where it was (the question after the commune).
    thread_reply(a1, room52, root["event_id"], "!rendre")
    assert wait_body(a1, room52, bot_id, "rendue à l'assistant")
    assert wait_body(user, dm, bot_id, REPRISE), bodies(user.messages_from(dm, bot_id))
    assert wait_until(lambda: redis.cli("HGET", tk, "state") == "closed", 10), redis.cli("HGETALL", tk)
    n = len(user.messages_from(dm, bot_id))
    user.send(dm, "la commune")
    after = user.wait_messages(dm, bot_id, n + 1, 30)[n:]
    assert after and not any("Usager" in b for b in bodies(after)), bodies(after)
    # Not relayed any more.
    a1.sync(1000)
    assert not any("la commune" in b for b in bot_thread(a1, room52, bot_id, root["event_id"]))
    log = d.read_log()
    assert dm not in log and "Saint-Dizier" not in log and "pollué" not in log


def test_notifications_reach_the_user_and_the_advisors(synapse, redis, make_daemon, tmp_path):
    """What a person must not miss notifies them with the default push rules (GET /notifications
    of each one): the advisors, of a new ticket's thread root and of the user's messages relayed
    into its thread; the user, of the claim and the advisor's reply. The routine answers (the
    greeting, the questions, the response time, the thread's acknowledgements) are m.notice:
    none of them notifies (docs/internals/MATRIX.md, notifications)."""
    bot, d, a1, a2, room52, _, _ = setup(synapse, redis, make_daemon, tmp_path)
    bot_id = bot["user_id"]
    user = new_user(synapse)
    dm = open_dm(user, bot_id, d)
    root = escalate(user, dm, bot_id, a1, room52, d, redis)
    assert root["content"]["msgtype"] == "m.text", root["content"]
    assert root["content"]["m.mentions"] == {}, root["content"]  # escalation.mention: none
    user.send(dm, "Le terrain est-il pollué ?")
    relay = wait_body(a1, room52, bot_id, "Usager : Le terrain est-il pollué ?",
                      pred=lambda e: in_thread(e, root["event_id"]))
    assert relay and relay["content"]["msgtype"] == "m.text", d.read_log()[-3000:]
    thread_reply(a1, room52, root["event_id"], "!prendre")
    ack = wait_body(a1, room52, bot_id, f"prise en charge par {ADV1}", pred=lambda e: in_thread(e, root["event_id"]))
    claim = wait_body(user, dm, bot_id, f"{ADV1}, conseiller, a pris en charge votre demande")
    thread_reply(a1, room52, root["event_id"], "Je regarde votre dossier.")
    reply = wait_body(user, dm, bot_id, "(conseiller) : Je regarde votre dossier.")
    assert ack and claim and reply, d.read_log()[-3000:]
    assert ack["content"]["msgtype"] == "m.notice", ack["content"]
    assert claim["content"]["msgtype"] == reply["content"]["msgtype"] == "m.text", reply["content"]

    # The advisors: both members of the room are notified of the root and the relay, not the ack.
    for adv in (a1, a2):
        got = wait_notified(synapse, adv, bot_id, [root["event_id"], relay["event_id"]])
        assert sorted(got) == sorted([root["event_id"], relay["event_id"]]), \
            (adv.user_id, got, bodies(adv.messages_from(room52, bot_id)))
    # The user: the claim and the advisor's reply, none of the bot's own answers.
    mine = user.messages_from(dm, bot_id)
    assert len(mine) >= 5, bodies(mine)
    got = wait_notified(synapse, user, bot_id, [claim["event_id"], reply["event_id"]])
    assert sorted(got) == sorted([claim["event_id"], reply["event_id"]]), (got, bodies(mine))
    print(f"\nnotifications: user {len(got)} of {len(mine)} bot messages; "
          f"advisor {len(notified(synapse, a1, bot_id))} of {len(a1.messages_from(room52, bot_id))}")


def test_ticket_mentions_the_advisors_or_the_room(synapse, redis, make_daemon, tmp_path):
    """matrix.ticket_mention: "advisors" highlights the configured advisors (m.mentions.user_ids,
    .m.rule.is_user_mention); "room" sets m.mentions.room, which highlights every member
    (.m.rule.is_room_mention) only once the bot has the room's notifications.room power level (50
    by default): an invited bot has 0 in a room an advisor created, and the root is then a plain
    notification (m.text), not a highlight."""
    bot = new_bot(synapse, tmp_path)
    bot_id = bot["user_id"]
    a1, a2 = new_user(synapse, "adv1"), new_user(synapse, "adv2")
    room52 = advisors_room(a1, [a2], bot_id, "Conseillers 52")
    cases = (("room", 0, set()), ("advisors", 0, {a2.user_id}), ("room", 50, {a1.user_id, a2.user_id}))
    for mode, level, highlighted in cases:
        pl = a1.run(a1.client.room_get_state_event(room52, "m.room.power_levels")).content
        assert pl["users"].get(bot_id, pl.get("users_default", 0)) <= level, pl
        if level:  # notifications.room's default level, given by the room's creator
            pl["users"][bot_id] = level
            r = a1.run(a1.client.room_put_state(room52, "m.room.power_levels", pl))
            assert isinstance(r, a1.nio.RoomPutStateResponse), r
        extra = (bot_matrix_yaml(synapse, bot, ticket_mention=mode, ticket_mention_users=[a2.user_id])
                 + router_yaml() + esc_yaml([f"* {room52}"]))
        d = make_daemon(redis.address, idle_timeout_s=30, extra=extra, start=False)
        d.start()
        assert a1.wait_membership(room52, bot_id, "join", 60), d.read_log()[-3000:]
        user = new_user(synapse)
        dm = open_dm(user, bot_id, d)
        seen = {e["event_id"] for e in a1.messages_from(room52, bot_id)}
        user.send(dm, "saint dizier")
        user.send(dm, "conseiller")
        root = wait_body(a1, room52, bot_id, "Nouvelle demande", 30, pred=lambda e: e["event_id"] not in seen)
        assert root, d.read_log()[-3000:]
        c = root["content"]
        if mode == "advisors":
            assert c["m.mentions"] == {"user_ids": [a2.user_id]}, c
            assert c["body"].endswith("\n\n" + a2.user_id) and f"matrix.to/#/{a2.user_id}" in c["formatted_body"], c
        else:
            assert c["m.mentions"] == {"room": True} and c["body"].startswith("@room "), c
        for adv in (a1, a2):
            assert root["event_id"] in wait_notified(synapse, adv, bot_id, [root["event_id"]]), (mode, adv.user_id)
            out = synapse.client_api("GET", "/notifications?only=highlight", adv.token)
            hl = {n["event"]["event_id"] for n in out["notifications"]}
            assert (root["event_id"] in hl) == (adv.user_id in highlighted), (mode, adv.user_id, c)
        rc, log = d.stop()
        d.check_clean(rc, log)
        redis.cli("FLUSHALL")


def test_non_member_command_ignored_and_default_room(synapse, redis, make_daemon, tmp_path):
    """A user not in the advisors' room cannot act on a ticket: Synapse refuses the event; one who
    left the room since sending a command (handled from the backlog after a restart) is ignored;
    a command from the user's own room is just dialog text. A commune outside 52 goes to '*'."""
    bot, d, a1, a2, room52, room_def, extra = setup(synapse, redis, make_daemon, tmp_path)
    bot_id = bot["user_id"]
    user = new_user(synapse)
    dm = open_dm(user, bot_id, d)
    n = len(user.messages_from(dm, bot_id))
    user.send(dm, "brest")
    assert user.wait_messages(dm, bot_id, n + 1, 30)[n:]
    t0 = time.monotonic()
    user.send(dm, "conseiller")
    root = wait_body(a2, room_def, bot_id, "Nouvelle demande d'accompagnement", 30)
    assert root, d.read_log()[-3000:]
    ROOT_LATENCIES.append(time.monotonic() - t0)
    assert "Haute-Marne" not in root["content"]["body"]
    # The outsider is not a member: the homeserver refuses the thread reply.
    outsider = new_user(synapse, "outsider")
    try:
        thread_reply(outsider, room_def, root["event_id"], "!prendre")
        refused = False
    except Exception:  # HttpError 403
        refused = True
    assert refused
    # A member at the time, gone when the daemon reads the command: ignored, the ticket waits.
    r = a2.run(a2.client.room_invite(room_def, outsider.user_id))
    assert isinstance(r, a2.nio.RoomInviteResponse), r
    r = outsider.run(outsider.client.join(room_def))
    assert isinstance(r, outsider.nio.JoinResponse), r
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    ev = thread_reply(outsider, room_def, root["event_id"], "!prendre")
    r = outsider.run(outsider.client.room_leave(room_def))
    assert isinstance(r, outsider.nio.RoomLeaveResponse), r
    d = make_daemon(redis.address, idle_timeout_s=30, extra=extra)
    marks = f"fb:{{c:matrix:{room_def}/{root['event_id']}}}:ev"
    assert wait_until(lambda: redis.cli("ZSCORE", marks, ev) != "", 60), d.read_log()[-3000:]
    tk = f"fb:{{c:matrix:{dm}}}:ticket"
    assert redis.cli("HGET", tk, "state") == "waiting" and redis.cli("HGET", tk, "claimed") == ""
    assert "no longer in the advisors' room: ignored" in d.read_log()
    # The user writes "!prendre" in their own room: relayed as text, nothing claimed.
    user.send(dm, "!prendre")
    assert wait_body(a2, room_def, bot_id, "Usager : !prendre")
    tk = f"fb:{{c:matrix:{dm}}}:ticket"
    assert redis.cli("HGET", tk, "state") == "waiting"
    # A member closes the ticket with a note: the user is told, the dialog resumes.
    thread_reply(a2, room_def, root["event_id"], "!clore dossier transmis à la DDT")
    assert wait_body(a2, room_def, bot_id, "Demande close par adv2")
    assert wait_body(user, dm, bot_id, "a clos l'échange")
    assert wait_body(user, dm, bot_id, REPRISE)
    assert wait_until(lambda: redis.cli("HGET", tk, "state") == "closed", 10), redis.cli("HGETALL", tk)
    assert redis.cli("HGET", tk, "close_note") == "dossier transmis à la DDT"
    # A command on a closed ticket does nothing but say so.
    thread_reply(a2, room_def, root["event_id"], "!prendre")
    assert wait_body(a2, room_def, bot_id, "Cette demande est close")
    assert redis.cli("HGET", tk, "state") == "closed"
    # A closed ticket has left the watchdog index.
    assert int(redis.cli("ZSCORE", "fb:{g}:esc:open", f"matrix:{dm}") or 0) == 0


def test_watchdog_reannounces_and_survives_sigkill(synapse, redis, make_daemon, tmp_path):
    bot, d, a1, a2, room52, room_def, extra = setup(synapse, redis, make_daemon, tmp_path, watchdog_ms=3000)
    bot_id = bot["user_id"]
    user = new_user(synapse)
    dm = open_dm(user, bot_id, d)
    root = escalate(user, dm, bot_id, a1, room52, d, redis)
    # Unclaimed: announced again in the room after the delay; the user is told once.
    assert wait_body(a1, room52, bot_id, "Rappel : une demande attend un conseiller", 20), d.read_log()[-3000:]
    assert wait_body(user, dm, bot_id, "plus longtemps que prévu", 20)
    # SIGKILL with the ticket open, restart on the same Redis: the relay goes on.
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    d2 = make_daemon(redis.address, idle_timeout_s=30, extra=extra)
    thread_reply(a1, room52, root["event_id"], "!prendre")
    assert wait_body(a1, room52, bot_id, f"prise en charge par {ADV1}", 60), d2.read_log()[-3000:]
    thread_reply(a1, room52, root["event_id"], "Bonjour après redémarrage")
    assert wait_body(user, dm, bot_id, "(conseiller) : Bonjour après redémarrage", 60)
    user.send(dm, "merci")
    assert wait_body(a1, room52, bot_id, "Usager : merci", 60, pred=lambda e: in_thread(e, root["event_id"]))
    # Nothing duplicated: one root, one claim notice, one relay each way.
    a1.sync(1000)
    user.sync(1000)
    roots = [b for b in bodies(a1.messages_from(room52, bot_id)) if "Nouvelle demande" in b]
    assert len(roots) == 1, roots
    claims = [b for b in bot_thread(a1, room52, bot_id, root["event_id"]) if "prise en charge par" in b]
    assert len(claims) == 1, claims
    relayed = [b for b in bodies(user.messages_from(dm, bot_id)) if "Bonjour après redémarrage" in b]
    assert len(relayed) == 1, relayed


def test_web_chat_user_reaches_the_advisors(synapse, redis, make_daemon, tmp_path):
    """The same escalation from the web chat: the root in the room, the relay both ways."""
    from test_webchat import Chat
    bot, d, a1, a2, room52, room_def, _ = setup(synapse, redis, make_daemon, tmp_path)
    bot_id = bot["user_id"]
    chat = Chat(d)
    try:
        chat.wait_bot("Dans quelle commune")
        after = chat.last_seq()
        chat.say("saint dizier")
        chat.wait_bot("", after)
        t0 = time.monotonic()
        chat.say("conseiller")
        root = wait_body(a1, room52, bot_id, "Nouvelle demande d'accompagnement", 30)
        assert root, d.read_log()[-3000:]
        ROOT_LATENCIES.append(time.monotonic() - t0)
        assert "Saint-Dizier" in root["content"]["body"]
        chat.wait_bot("en général sous deux jours ouvrés")
        tk = f"fb:{{c:web:{chat.token}}}:ticket"
        assert wait_until(lambda: redis.cli("HGET", tk, "root") == root["event_id"], 10)
        thread_reply(a1, room52, root["event_id"], "!prendre")
        chat.wait_bot("a pris en charge votre demande")
        chat.say("Merci, j'attends")
        relayed = wait_body(a1, room52, bot_id, "Usager : Merci, j'attends",
                            pred=lambda e: in_thread(e, root["event_id"]))
        assert relayed
        thread_reply(a1, room52, root["event_id"], "Voici la réponse")
        chat.wait_bot("(conseiller) : Voici la réponse")
        # The web history holds the advisor's reply once.
        hist = [json.loads(x) for x in redis.cli("LRANGE", f"fb:{{c:web:{chat.token}}}:hist", "0", "-1").splitlines()
                if x.strip()]
        assert len([e for e in hist if "Voici la réponse" in e["text"]]) == 1, hist
        # "oublier mes données" deletes the ticket and its watchdog entry; a later advisor reply
        # is handled (its dedupe mark is set) but reaches nobody.
        sent = f"fb:{{c:web:{chat.token}}}:esc:sent"
        assert wait_until(lambda: redis.cli("LLEN", sent) == "2", 10), redis.cli("LRANGE", sent, "0", "-1")
        chat.say("oublier mes données")
        assert wait_until(lambda: redis.cli("EXISTS", tk) == "0", 10), redis.cli("HGETALL", tk)
        assert redis.cli("ZSCORE", "fb:{g}:esc:open", f"web:{chat.token}") == ""
        assert redis.cli("EXISTS", sent) == "0"
        # What the bot posted for this user in the advisors' room (the root with the summary, the
        # relayed message) is withdrawn: redacted by the bot, seen as such by the advisors.
        want = {root["event_id"], relayed["event_id"]}
        assert a1.wait(lambda: want <= redacted(a1, room52, bot_id), 30), (redacted(a1, room52, bot_id),
                                                                         d.read_log()[-3000:])
        assert redis.cli("HGET", "fb:{g}:esc:roots", root["event_id"]) == ""
        ev = thread_reply(a1, room52, root["event_id"], "Toujours là ?")
        marks = f"fb:{{c:matrix:{room52}/{root['event_id']}}}:ev"
        assert wait_until(lambda: redis.cli("ZSCORE", marks, ev) != "", 20), d.read_log()[-2000:]
        assert "Toujours là" not in redis.cli("LRANGE", f"fb:{{c:web:{chat.token}}}:outbox", "0", "-1")
        assert "Toujours là" not in redis.cli("LRANGE", f"fb:{{c:web:{chat.token}}}:hist", "0", "-1")
    finally:
        chat.close()


def test_commands_answer_while_waiting_and_retour_closes_the_ticket(synapse, redis, make_daemon,
                                                                   tmp_path):
    """Issue #19: while a ticket waits, « mes données » answers (and is not relayed to the
    advisors), other text is relayed; « retour » takes the questions back and closes the ticket,
    the thread told why."""
    from test_webchat import Chat
    bot, d, a1, a2, room52, room_def, _ = setup(synapse, redis, make_daemon, tmp_path)
    bot_id = bot["user_id"]
    chat = Chat(d)
    try:
        chat.wait_bot("Dans quelle commune")
        after = chat.last_seq()
        chat.say("saint dizier")
        chat.wait_bot("Pour qui faites-vous", after)
        chat.say("conseiller")
        root = wait_body(a1, room52, bot_id, "Nouvelle demande d'accompagnement", 30)
        assert root, d.read_log()[-3000:]
        tk = f"fb:{{c:web:{chat.token}}}:ticket"
        assert wait_until(lambda: redis.cli("HGET", tk, "root") == root["event_id"], 10)
        after = chat.last_seq()
        chat.say("mes données")
        data = chat.wait_bot("Votre demande attend un conseiller", after)
        assert any("Saint-Dizier" in e["text"] for e in chat.bot() if e["seq"] > after), chat.bot()[-3:]
        chat.say("Merci, j'attends")
        assert wait_body(a1, room52, bot_id, "Usager : Merci, j'attends",
                         pred=lambda e: in_thread(e, root["event_id"]))
        thread = bot_thread(a1, room52, bot_id, root["event_id"])
        assert not any("mes données" in b for b in thread), thread
        chat.say("retour")
        chat.wait_bot("Dans quelle commune", data["seq"])
        assert wait_until(lambda: redis.cli("HGET", tk, "state") == "closed", 10), redis.cli("HGETALL", tk)
        assert redis.cli("HGET", tk, "closed_by") == "usager"
        assert redis.cli("ZSCORE", "fb:{g}:esc:open", f"web:{chat.token}") == ""
        assert wait_body(a1, room52, bot_id, "L'usager a repris le questionnaire",
                         pred=lambda e: in_thread(e, root["event_id"]))
        # the questions go on with the engine, nothing more is relayed
        after = chat.last_seq()
        chat.say("saint dizier")
        chat.wait_bot("Pour qui faites-vous", after)
    finally:
        chat.close()


def web_escalation(d, then):
    """A web-chat user of Saint-Dizier asks for a person and at once writes `then`; returns the
    open Chat and the ticket's key."""
    from test_webchat import Chat
    chat = Chat(d)
    chat.wait_bot("Dans quelle commune")
    after = chat.last_seq()
    chat.say("saint dizier")
    chat.wait_bot("", after)
    chat.say("conseiller")
    chat.say(then)
    return chat, f"fb:{{c:web:{chat.token}}}:ticket"


def test_forget_before_the_root_is_posted_withdraws_it(synapse, redis, make_daemon, tmp_path):
    """« oublier mes données » right after the request, while the root still waits in the room's
    outbox (held by FB_TEST_OUTBOX_START_DELAY_MS): the root is posted (the outbox is exactly-once), finds
    its ticket gone, and the bot withdraws it at once; nothing of the ticket is written back."""
    bot, d, a1, a2, room52, room_def, _ = setup(synapse, redis, make_daemon, tmp_path, start_delay_ms=1500)
    bot_id = bot["user_id"]
    chat, tk = web_escalation(d, "oublier mes données")
    try:
        assert wait_until(lambda: redis.cli("EXISTS", f"fb:{{c:web:{chat.token}}}:session") == "0", 10)
        assert redis.cli("EXISTS", tk) == "0"
        root = wait_body(a1, room52, bot_id, "Nouvelle demande d'accompagnement", 30)
        assert root, d.read_log()[-3000:]
        assert a1.wait(lambda: root["event_id"] in redacted(a1, room52, bot_id), 30), d.read_log()[-3000:]
        assert redis.cli("EXISTS", tk) == "0"
        assert redis.cli("HGET", "fb:{g}:esc:roots", root["event_id"]) == ""
        assert "withdrawn" in d.read_log()
    finally:
        chat.close()
    # A ticket that vanished otherwise (expired with its session) while its relay waited for the
    # root: the root is withdrawn, the relay dropped (not retried for ever), nothing recreated.
    chat, tk = web_escalation(d, "Une question en attente")
    try:
        assert wait_until(lambda: redis.cli("HGET", tk, "tid") != "", 10)
        tid = redis.cli("HGET", tk, "tid")
        thread_q = f"fb:{{c:matrix:{room52}/~{tid}}}:outbox"
        assert wait_until(lambda: redis.cli("LLEN", thread_q) == "1", 10), d.read_log()[-3000:]
        redis.cli("DEL", tk)
        assert wait_until(lambda: redis.cli("EXISTS", thread_q) == "0", 30), d.read_log()[-3000:]
        assert "thread message dropped: its ticket is gone" in d.read_log()
        assert redis.cli("EXISTS", tk) == "0"
        a1.sync(1000)
        assert not [b for b in bodies(a1.messages_from(room52, bot_id)) if "Une question en attente" in b]
    finally:
        chat.close()


def test_advisors_rooms_named_by_alias(synapse, redis, make_daemon, tmp_path):
    """escalation.rooms may name a room by its alias: the adapter resolves it through the room
    directory before its first sync. An alias the homeserver does not know is an error in the log
    and the adapter does not sync (no conversation can run into an advisors' room it cannot
    recognise); once the alias exists, the next attempt resolves it and the bot works. The thread
    root, the claim and the relay then go through the alias's room."""
    bot = new_bot(synapse, tmp_path)
    bot_id = bot["user_id"]
    a1 = new_user(synapse, "adv1")
    server = bot_id.split(":", 1)[1]
    name52 = f"conseillers52-{bot_id[5:13]}"
    name_def = f"conseillers-{bot_id[5:13]}"
    nio = a1.nio
    resp = a1.run(a1.client.room_create(name="Conseillers 52", alias=name52, invite=[bot_id]))
    assert isinstance(resp, nio.RoomCreateResponse), resp
    room52 = resp.room_id
    extra = (bot_matrix_yaml(synapse, bot) + router_yaml()
             + esc_yaml([f"52 #{name52}:{server}", f"* #{name_def}:{server}"]))
    d = make_daemon(redis.address, idle_timeout_s=30, extra=extra)
    # The default room's alias does not exist yet: an error naming it, and no sync meanwhile.
    assert wait_until(lambda: f"#{name_def}:{server}: the homeserver knows no such alias" in d.read_log(), 30), \
        d.read_log()[-3000:]
    assert d.json("/healthz")[1]["adapters"]["matrix"]["state"] != "ok"
    assert "sync: caught up" not in d.read_log()
    # The operator creates it: the next attempt resolves both, the bot joins its rooms.
    r = a1.run(a1.client.room_create(name="Conseillers (autres)", alias=name_def, invite=[bot_id]))
    assert isinstance(r, nio.RoomCreateResponse), r
    room_def = r.room_id
    assert a1.wait_membership(room52, bot_id, "join", 60), d.read_log()[-3000:]
    assert a1.wait_membership(room_def, bot_id, "join", 60), d.read_log()[-3000:]
    assert wait_until(lambda: d.read_log().count("joined an advisors' room (escalation.rooms)") == 2, 30), \
        d.read_log()[-3000:]
    log = d.read_log()
    assert f"advisors' room #{name52}:{server} is {room52}" in log, log[-3000:]
    assert "joined a room: greeting" not in log, log[-3000:]
    # No greeting in the advisors' rooms.
    a1.sync(1000)
    assert not a1.messages_from(room52, bot_id) and not a1.messages_from(room_def, bot_id)

    user = new_user(synapse)
    dm = open_dm(user, bot_id, d)
    root = escalate(user, dm, bot_id, a1, room52, d, redis)
    assert "Saint-Dizier (Haute-Marne, 52)" in root["content"]["body"]
    tk = f"fb:{{c:matrix:{dm}}}:ticket"
    assert wait_until(lambda: redis.cli("HGET", tk, "root") == root["event_id"], 10), redis.cli("HGETALL", tk)
    # The claim comes from the room's id: it reaches the ticket through the alias.
    thread_reply(a1, room52, root["event_id"], "!prendre")
    assert wait_body(user, dm, bot_id, "a pris en charge votre demande"), d.read_log()[-3000:]
    assert redis.cli("HGET", tk, "claimed") == a1.user_id
    thread_reply(a1, room52, root["event_id"], "Je regarde votre dossier.")
    assert wait_body(user, dm, bot_id, "(conseiller) : Je regarde votre dossier."), d.read_log()[-3000:]
    user.send(dm, "Merci, à bientôt")
    assert wait_body(a1, room52, bot_id, "Usager : Merci, à bientôt",
                     pred=lambda e: in_thread(e, root["event_id"])), d.read_log()[-3000:]


def test_advisors_room_alias_in_appservice_mode(tmp_path):
    """In appservice mode the aliases are resolved at start; until they are, transactions are
    answered 503 (the homeserver sends them again) so that no event of an advisors' room is taken
    for a user's. An event of the resolved room then reaches escalation under the alias: no
    conversation of that room id is created."""
    from synapse import Client
    from test_matrix import appservice_stack, as_put, fake_message, handled
    alias = "#conseillers-as:localhost"
    with appservice_stack(tmp_path, esc_yaml([f"* {alias}"])) as stack:
        syn, d, r, reg = stack["synapse"], stack["daemon"], stack["redis"], stack["reg"]
        # The alias does not exist yet: an error naming it, and transactions wait.
        assert wait_until(lambda: f"{alias}: the homeserver knows no such alias" in d.read_log(), 30), \
            d.read_log()[-3000:]
        status, _ = as_put(d, "t-alias-1", {"events": []}, reg["hs_token"])
        assert status == 503
        assert d.json("/healthz")[1]["adapters"]["matrix"]["state"] != "ok"
        # An advisor creates the room and its alias: the next transaction resolves it.
        adv = Client(syn, syn.register("adv-as"))
        resp = adv.run(adv.client.room_create(name="Conseillers", alias="conseillers-as"))
        assert isinstance(resp, adv.nio.RoomCreateResponse), resp
        room = resp.room_id
        assert wait_until(lambda: as_put(d, "t-alias-2", {"events": []}, reg["hs_token"])[0] == 200, 30), \
            d.read_log()[-3000:]
        assert f"advisors' room {alias} is {room}" in d.read_log()
        assert d.json("/healthz")[1]["adapters"]["matrix"]["state"] == "ok"
        # An advisor's message in that room is escalation's (the alias), not a user conversation.
        # The transaction is answered once its events are committed: what it started is in Redis.
        h0 = handled(d)
        ev = fake_message(room, adv.user_id, "bonjour")
        status, _ = as_put(d, "t-alias-3", {"events": [ev]}, reg["hs_token"])
        assert status == 200
        keys = r.cli("KEYS", "*").splitlines()
        assert not [k for k in keys if room in k], keys
        assert handled(d) == h0  # not a user's conversation for the router
        assert "joined a room: greeting" not in d.read_log()
        adv.close()


def test_queued_thread_messages_still_go_out_once_escalation_is_disabled(synapse, redis, make_daemon,
                                                                          tmp_path):
    """Escalation turned off while a ticket's root and a relay still wait in the advisors' room
    outbox (the daemon killed before it sent them): the next daemon, without escalation, still
    records the root's event id where the entry asks and posts the relay in that thread, instead
    of parking it (the adapters' thread_root and sent stay answered when escalation is off)."""
    bot, d, a1, a2, room52, room_def, _ = setup(synapse, redis, make_daemon, tmp_path, start_delay_ms=8000)
    bot_id = bot["user_id"]
    chat, tk = web_escalation(d, "Une question en attente")
    try:
        assert wait_until(lambda: redis.cli("HGET", tk, "tid") != "", 10), d.read_log()[-3000:]
        tid = redis.cli("HGET", tk, "tid")
        thread_q = f"fb:{{c:matrix:{room52}/~{tid}}}:outbox"
        assert wait_until(lambda: redis.cli("LLEN", thread_q) == "1", 10), d.read_log()[-3000:]
    finally:
        chat.close()
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    d.settings["extra"] = bot_matrix_yaml(synapse, bot) + router_yaml()  # no escalation section
    d.start()
    root = wait_body(a1, room52, bot_id, "Nouvelle demande d'accompagnement", 60)
    assert root, d.read_log()[-3000:]
    assert wait_until(lambda: redis.cli("HGET", tk, "root") == root["event_id"], 20), redis.cli("HGETALL", tk)
    assert wait_body(a1, room52, bot_id, "Usager : Une question en attente",
                     pred=lambda e: in_thread(e, root["event_id"])), d.read_log()[-3000:]
    assert wait_until(lambda: redis.cli("EXISTS", thread_q) == "0", 20)
    assert "parked" not in d.read_log()
