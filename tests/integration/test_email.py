# SPDX-License-Identifier: MIT
"""Reaching web users later by e-mail (adapters/email, daemon/features/mailcopy.c,
docs/internals/EMAIL.md), against a real SMTP server started by the harness: aiosmtpd, on a random
loopback port, whose handler can answer 4xx, 5xx or hang in DATA.

Real daemon, real Redis, the web chat over its websocket. The address is given as the page does
(POST /email/adresse with the conversation's token), confirmed through the link of the mail the
server received; then reminders go by mail too, once each; refusals and timeouts of the server are
retried (4xx, timeout) or parked (5xx) by the outbox; forgetting removes the address and the
mails still waiting."""
import asyncio
import email
import email.policy
import hashlib
import json
import re
import signal
import threading
import time

import pytest

from conftest import SANITIZER_MARKERS, free_port, wait_until
from test_escalation import advisors_room, esc_yaml, thread_reply, wait_body
from test_matrix import _close_clients, bot_matrix_yaml, new_bot, new_user, router_yaml  # noqa: F401
from test_webchat import SAMPLE, Chat

aiosmtpd_controller = pytest.importorskip(
    "aiosmtpd.controller", reason="aiosmtpd is in tests/integration/requirements.txt: "
    "deploy/install-deps.sh test installs it")

PREFIX = "fb:"
DUE = PREFIX + "{g}:reminders:due"
PENDING = PREFIX + "{g}:outbox:pending"
REMINDER_TEXT = "Où en êtes-vous"  # the sample dialog's reminder, during the questions
ADDRESS = "marie.durand@mairie-exemple.fr"


class Mailbox:
    """aiosmtpd's handler: keeps what it accepts; `mode` makes DATA answer 451 (tempfail), 550
    (permfail) or hang (hang: sleeps `hang_s`, then 451, never stores)."""

    def __init__(self):
        self.messages = []
        self.lock = threading.Lock()
        self.mode = None
        self.modes = []  # modes for the next DATA commands, in turn, before `mode`
        self.refused = 0
        self.hung = 0
        self.hang_s = 5
        self.release = threading.Event()  # set: a hanging DATA answers (451) at once

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            mode = self.modes.pop(0) if self.modes else self.mode
        if mode == "tempfail":
            self.refused += 1
            return "451 4.3.0 Try again later"
        if mode == "permfail":
            self.refused += 1
            return "550 5.1.1 Mailbox unavailable"
        if mode == "hang":
            self.hung += 1
            end = time.monotonic() + self.hang_s
            while time.monotonic() < end and not self.release.is_set():
                await asyncio.sleep(0.05)
            return "451 4.4.2 Too late"
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg,
                                  envelope.content))
        return "250 2.0.0 OK"

    def subjects(self):
        with self.lock:
            return [str(m["Subject"]) for _, _, m, _ in self.messages]

    def with_subject(self, needle):
        with self.lock:
            return [m for _, _, m, _ in self.messages if needle in str(m["Subject"])]


@pytest.fixture
def smtp():
    box = Mailbox()
    port = free_port()
    c = aiosmtpd_controller.Controller(box, hostname="127.0.0.1", port=port)
    c.start()
    box.port = port
    yield box
    c.stop()


def email_yaml(port, public_url, **opts):
    base = {"enabled": "true", "relay": f'"smtp://127.0.0.1:{port}"', "require_tls": "false",
            "from": '"ne-pas-repondre@friches.example.org"', "public_url": f'"{public_url}"',
            "timeout_ms": 3000}
    base.update(opts)
    return "email:\n" + "".join(f"  {k}: {v}\n" for k, v in base.items())


def start(make_daemon, redis, smtp, **email_opts):
    """A daemon on the sample dialog, with fast reminders and outbox retries, mailing `smtp`."""
    d = make_daemon(redis.address, start=False, idle_timeout_s=60)
    extra = (f'dialogs:\n  path: "{SAMPLE}"\n'
             "reminders:\n  poll_interval_ms: 50\n  working_hours_only: false\n"
             "router:\n  outbox_retry:\n    delays_ms: [200, 400]\n    jitter_percent: 0\n"
             + email_yaml(smtp.port, f"http://127.0.0.1:{d.port}", **email_opts))
    d.settings["extra"] = extra
    d.start()
    assert wait_until(lambda: re.search(r"\[redis\|[^\]]*\] connected", d.read_log()), 20)
    return d


def ckey(conv, name):
    return f"{PREFIX}{{c:{conv}}}:{name}"


def give_address(d, token, address=ADDRESS):
    body = json.dumps({"conversation": token, "adresse": address}).encode()
    status, _, raw = d.request("/email/adresse", method="POST", body=body,
                               headers={"Content-Type": "application/json"})
    return status, json.loads(raw)


def body_text(msg):
    return msg.get_body(preferencelist=("plain",)).get_content()


def confirm_link(msg):
    m = re.search(r"(http://\S+/email/confirmer/([A-Za-z0-9_-]{43}))", body_text(msg))
    assert m, body_text(msg)
    return m.group(1), m.group(2)


def make_due(redis, token):
    """The conversation's reminder due now, as if its delay had passed since the user's last
    event (`a`, set back by the delay: the push-back is lazy, docs/internals/REMINDERS.md)."""
    at = int(time.time() * 1000) - 1000
    delay = redis.cli("HGET", ckey(f"web:{token}", "reminders"), "relance#a")
    redis.cli("HSET", ckey(f"web:{token}", "session"), "a", str(at - int(delay)))
    redis.cli("ZADD", DUE, str(at), f"web:{token}|relance")


def confirmed_conversation(d, redis, smtp, first="Dans quelle commune"):
    """A web conversation at its first question whose address is given and confirmed through the
    link of the mail received. Returns (chat, the confirmation mail)."""
    chat = Chat(d)
    chat.wait_bot(first)
    status, answer = give_address(d, chat.token)
    assert status == 202, answer
    assert "confirmation" in answer["message"]
    assert wait_until(lambda: smtp.with_subject("Confirmez"), 15), smtp.subjects()
    mail = smtp.with_subject("Confirmez")[0]
    url, token = confirm_link(mail)
    path = url.split(f":{d.port}", 1)[1]
    # A GET (what a mail scanner does) only shows the button; the POST confirms.
    status, _, page = d.request(path)
    assert status == 200 and b"Confirmer mon adresse" in page
    assert redis.cli("HGET", ckey(f"web:{chat.token}", "mail"), "state") == "pending"
    status, _, page = d.request(path, method="POST", body=b"")
    assert status == 200 and "Adresse confirmée" in page.decode(), page
    assert redis.cli("HGET", ckey(f"web:{chat.token}", "mail"), "state") == "confirmed"
    # The link works once.
    status, _, page = d.request(path, method="POST", body=b"")
    assert status == 404
    return chat, mail


def no_address_in_log(d):
    log = d.read_log()
    assert ADDRESS not in log and "marie.durand" not in log, "the address reached the log"


# ------------------------------------------------------------------------------------------

def test_confirmation_then_reminders_by_mail_exactly_once(redis, make_daemon, smtp):
    d = start(make_daemon, redis, smtp)
    # The page where the address is given: its purpose, retention and erasure said, a form, and
    # its script from the same origin (the CSP allows no inline script).
    status, headers, page = d.request("/email/")
    page = page.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    for needed in ["facultatif", "6 mois", "« oublier mes données »", 'type="email"',
                   '<script src="/email/suivi.js">']:
        assert needed in page, needed
    assert "<script>" not in page
    status, _, js = d.request("/email/suivi.js")
    assert status == 200 and b"frichebot.token" in js and b"/email/adresse" in js
    chat = Chat(d)
    chat.wait_bot("Dans quelle commune")

    # Refused before anything is stored: a malformed address, a header injection, an unknown
    # conversation.
    for bad in ["pas-une-adresse", "marie@example.org\r\nBcc: x@evil.example", "a@b"]:
        status, answer = give_address(d, chat.token, bad)
        assert status == 400 and answer["code"] == "adresse_invalide", (bad, answer)
    status, answer = give_address(d, "A" * 43)
    assert status == 404, answer
    assert redis.cli("EXISTS", ckey(f"web:{chat.token}", "mail")) == "0"

    # A reminder before any address: only in the chat. (One reminder until the user writes
    # again: each reminder below follows an answer.)
    make_due(redis, chat.token)
    chat.wait_bot(REMINDER_TEXT)
    chat.say("lyon")
    chat.wait_bot("Qui porte le projet")

    status, answer = give_address(d, chat.token)
    assert status == 202, answer
    assert wait_until(lambda: smtp.with_subject("Confirmez"), 15), smtp.subjects()
    mail_from, rcpts, mail, raw = smtp.messages[0]
    assert mail_from == "ne-pas-repondre@friches.example.org" and rcpts == [ADDRESS]
    # Headers: the UTF-8 subject as RFC 2047 encoded-words, text/plain UTF-8, a Message-ID.
    assert b"Subject: =?UTF-8?B?" in raw
    assert str(mail["Subject"]) == "Confirmez votre adresse e-mail – assistant friches"
    assert mail.get_content_type() == "text/plain" and mail.get_content_charset() == "utf-8"
    assert mail["Message-ID"].endswith("@friches.example.org>")
    assert mail["Auto-Submitted"] == "auto-generated"
    # Not confirmed yet: a reminder now does not go by mail.
    chat_seq = chat.last_seq()
    make_due(redis, chat.token)
    chat.wait_bot(REMINDER_TEXT, after=chat_seq)
    time.sleep(1.0)
    assert smtp.with_subject("Où en est") == []

    url, _ = confirm_link(mail)
    path = url.split(f":{d.port}", 1)[1]
    status, _, page = d.request(path, method="POST", body=b"")
    assert status == 200 and "Adresse confirmée" in page.decode()
    chat.choose("association", "Une association")
    chat.wait_bot("Quelle est la surface")

    # Confirmed: the next reminder goes to the chat and, once, by mail, with the way back.
    chat_seq = chat.last_seq()
    t0 = time.monotonic()
    make_due(redis, chat.token)
    chat.wait_bot(REMINDER_TEXT, after=chat_seq)
    assert wait_until(lambda: smtp.with_subject("Où en est"), 15), smtp.subjects()
    elapsed = time.monotonic() - t0
    time.sleep(1.5)
    reminders = smtp.with_subject("Où en est")
    assert len(reminders) == 1, smtp.subjects()
    text = body_text(reminders[0])
    assert REMINDER_TEXT in text
    assert f"http://127.0.0.1:{d.port}/" in text and "oublier mes données" in text
    assert redis.cli("EXISTS", ckey(f"email:web:{chat.token}", "outbox")) == "0"
    assert redis.cli("ZSCORE", PENDING, f"email:web:{chat.token}") == ""
    print(f"\nreminder due -> mail accepted by the SMTP server: {elapsed * 1000:.0f} ms")
    no_address_in_log(d)
    chat.close()


def test_confirm_one_slot_per_call_and_its_races(redis, make_daemon, smtp):
    """The confirmation in two calls of one Redis Cluster slot each (docs/internals/EMAIL.md,
    "Confirming"): the index {g}:email:confirm:<hash> read, then a script on the user's `mail`
    alone, which checks the token's hash and the link's age there. The keys are written here as
    register_script writes them (that script still joins several slots), so that the test runs
    on a single-node cluster too (FB_TEST_REDIS_CLUSTER=1: the one script of both keys was
    refused there, CROSSSLOT, and answered 503). Then what may happen between the two calls: the
    link confirmed already (two clicks), expired while its index key still lives, replaced by a
    newer address, or its index key left behind by a crash after a confirmation."""
    d = start(make_daemon, redis, smtp)
    conv = "web:" + "B" * 43
    mail = ckey(conv, "mail")

    def given(token, at_ms, index_ms=3600000):
        h = hashlib.sha256(token.encode()).hexdigest()
        redis.cli("DEL", mail)
        redis.cli("HSET", mail, "addr", ADDRESS, "state", "pending", "tok", h, "at", str(at_ms),
                  "n", "1")
        redis.cli("SET", f"{PREFIX}{{g}}:email:confirm:{h}", conv, "PX", str(index_ms))
        return f"{PREFIX}{{g}}:email:confirm:{h}"

    def confirm(token):
        status, _, page = d.request("/email/confirmer/" + token, method="POST", body=b"")
        return status, page.decode()

    now = int(time.time() * 1000)
    index = given("C" * 43, now)
    status, page = confirm("C" * 43)
    assert status == 200 and "Adresse confirmée" in page, page
    assert redis.cli("HGET", mail, "state") == "confirmed"
    assert redis.cli("HEXISTS", mail, "tok") == "0"
    assert wait_until(lambda: redis.cli("EXISTS", index) == "0", 5)  # the third call
    # The same link again: used.
    status, page = confirm("C" * 43)
    assert status == 404 and "Lien expiré" in page
    # The index key left behind by a crash after the confirmation: it confirms nothing.
    redis.cli("SET", index, conv, "PX", "3600000")
    status, _ = confirm("C" * 43)
    assert status == 404
    assert redis.cli("HGET", mail, "state") == "confirmed"

    # Expired (email.confirm_hours, 48 by default, after `at`) while the index key still lives.
    given("D" * 43, now - 49 * 3600 * 1000)
    status, _ = confirm("D" * 43)
    assert status == 404
    assert redis.cli("HGET", mail, "state") == "pending"
    # Replaced by a newer address: the old link's index key still names the conversation.
    given("E" * 43, now)
    given("F" * 43, now)
    status, _ = confirm("E" * 43)
    assert status == 404
    assert redis.cli("HGET", mail, "state") == "pending"
    status, _ = confirm("F" * 43)
    assert status == 200
    assert redis.cli("HGET", mail, "state") == "confirmed"
    # Forgotten: no `mail` any more.
    index = given("G" * 43, now)
    redis.cli("DEL", mail)
    status, _ = confirm("G" * 43)
    assert status == 404
    assert redis.cli("EXISTS", mail) == "0"
    assert "CROSSSLOT" not in redis.cli("INFO", "errorstats")


def test_server_refusals_5xx_parked_4xx_retried(redis, make_daemon, smtp):
    d = start(make_daemon, redis, smtp)
    # 550 on DATA: permanent, the confirmation is parked, nothing is retried.
    smtp.mode = "permfail"
    chat = Chat(d)
    chat.wait_bot("Dans quelle commune")
    status, _ = give_address(d, chat.token)
    assert status == 202
    parked = ckey(f"email:web:{chat.token}", "parked")
    assert wait_until(lambda: redis.cli("LLEN", parked) == "1", 15), d.read_log()[-3000:]
    time.sleep(1.0)
    assert smtp.refused == 1 and smtp.messages == []
    assert json.loads(redis.cli("LINDEX", parked, "0"))["kind"] == "confirm"

    # 451 twice, then accepted: retried by the outbox, delivered once.
    smtp.mode = None
    smtp.modes = ["tempfail", "tempfail"]
    chat2 = Chat(d)
    chat2.wait_bot("Dans quelle commune")
    assert give_address(d, chat2.token)[0] == 202
    assert wait_until(lambda: smtp.with_subject("Confirmez"), 15), d.read_log()[-3000:]
    time.sleep(1.0)
    assert smtp.refused == 3 and len(smtp.messages) == 1
    assert redis.cli("LLEN", ckey(f"email:web:{chat2.token}", "parked")) == "0"
    no_address_in_log(d)
    chat.close()
    chat2.close()


def test_server_that_never_answers_times_out_and_is_retried(redis, make_daemon, smtp):
    d = start(make_daemon, redis, smtp, timeout_ms=1000)
    smtp.hang_s = 4
    smtp.modes = ["hang"]
    chat = Chat(d)
    chat.wait_bot("Dans quelle commune")
    t0 = time.monotonic()
    assert give_address(d, chat.token)[0] == 202
    assert wait_until(lambda: smtp.with_subject("Confirmez"), 20), d.read_log()[-3000:]
    elapsed = time.monotonic() - t0
    assert smtp.hung == 1
    # the first attempt waited for its timeout (1 s), not for the server (4 s)
    assert 1.0 <= elapsed < smtp.hang_s, elapsed
    assert re.search(r"confirm mail not accepted: .*(Timeout|timed out).*will be retried",
                     d.read_log()), d.read_log()[-3000:]
    time.sleep(smtp.hang_s)  # the hung DATA ends with a 451: nothing is stored twice
    assert len(smtp.messages) == 1
    print(f"\nhung SMTP server: mail delivered after the timeout in {elapsed * 1000:.0f} ms")
    chat.close()


def test_forget_removes_the_address_and_the_waiting_mails(redis, make_daemon, smtp):
    d = start(make_daemon, redis, smtp)
    chat, _ = confirmed_conversation(d, redis, smtp)
    # The server refuses for now: the reminder's mail waits in the e-mail outbox.
    smtp.mode = "tempfail"
    seq = chat.last_seq()
    make_due(redis, chat.token)
    chat.wait_bot(REMINDER_TEXT, after=seq)
    mailbox = ckey(f"email:web:{chat.token}", "outbox")
    assert wait_until(lambda: redis.cli("LLEN", mailbox) == "1", 10)
    assert wait_until(lambda: smtp.refused >= 1, 10)
    chat.say("oublier mes données")
    mail = ckey(f"web:{chat.token}", "mail")
    assert wait_until(lambda: redis.cli("EXISTS", mail) == "0", 10)
    assert redis.cli("EXISTS", mailbox) == "0"
    smtp.mode = None
    time.sleep(2.0)
    assert smtp.with_subject("Où en est") == [], "a mail went out after the forget"
    assert redis.cli("ZSCORE", PENDING, f"email:web:{chat.token}") == ""
    no_address_in_log(d)
    chat.close()


def test_daemon_killed_while_sending_mails_once(redis, make_daemon, smtp, tmp_path):
    """SIGKILL while the server holds the reminder's mail in DATA: nothing was accepted, the entry
    is still at the head of the outbox, and the restarted daemon sends it, once."""
    d = start(make_daemon, redis, smtp, timeout_ms=60000)
    chat, _ = confirmed_conversation(d, redis, smtp)
    smtp.hang_s = 120  # until released, after the kill
    smtp.modes = ["hang"]
    make_due(redis, chat.token)
    assert wait_until(lambda: smtp.hung == 1, 20)
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(10)
    chat.close()
    log = d.read_log()
    for marker in SANITIZER_MARKERS:
        assert marker not in log
    mailbox = ckey(f"email:web:{chat.token}", "outbox")
    assert redis.cli("LLEN", mailbox) == "1"
    smtp.release.set()  # the held DATA ends (451 to a dead connection: nothing stored)
    d.start()
    assert wait_until(lambda: smtp.with_subject("Où en est"), 20), d.read_log()[-3000:]
    time.sleep(1.5)
    assert len(smtp.with_subject("Où en est")) == 1
    assert redis.cli("EXISTS", mailbox) == "0"


# The friche dialog's answers up to its last message (tests/transcripts/friche-web-*.yaml).
MONTBARD = ["Montbard", "la commune", "industriel", "5000 m2", "pas de bâtiment", "10 ans",
            "à la commune", "soupçonnée", "PLUi", "aucun", "activité", "idée", "aucun"]


def last_message_on_the_web(make_daemon, redis, extra):
    """Walks the default (friche) dialog in the web chat of a daemon with `extra`; returns the
    text and HTML of the message that closes the questionnaire, right after the roadmap's
    summary (the rating comes later, with the user's next message: issue #16, point 5)."""
    d = make_daemon(redis.address, start=False, idle_timeout_s=60)
    d.settings["extra"] = extra(d)
    d.start()
    chat = Chat(d)
    chat.wait_bot("Dans quelle commune se trouve le site ?")
    for answer in MONTBARD:
        chat.say(answer)
    end = chat.wait_bot("Votre feuille de route est enregistrée", timeout=30)
    seq = chat.last_seq()
    chat.say("merci")
    chat.wait_bot("Je donne mon avis", after=seq)
    chat.close()
    d.check_clean(*d.stop())  # the next daemon reuses the directory and the log's name
    return end["text"], end.get("html", "")


def test_web_users_are_not_promised_what_cannot_reach_them(redis, make_daemon, smtp):
    """The router tells the engine the web chat reaches its user only while there: no « Je
    reviendrai vers vous » on the web; with e-mail on, the address page is offered (a link)."""
    text, html = last_message_on_the_web(make_daemon, redis, lambda d: "")
    assert "Je reviendrai vers vous" not in text
    assert "je vous demanderai ici" in text and "/email/" not in text
    text, html = last_message_on_the_web(
        make_daemon, redis, lambda d: email_yaml(smtp.port, f"http://127.0.0.1:{d.port}"))
    assert "Je reviendrai vers vous" not in text
    assert "facultatif" in text and '<a href="/email/">Suivi par e-mail</a>' in html


def test_advisor_reply_reaches_a_web_user_by_mail(synapse, redis, make_daemon, tmp_path, smtp):
    """A web user of Saint-Dizier with a confirmed address asks for a person; the advisor's words,
    relayed into the chat by escalation's own script, also go by mail, once (a real Synapse and
    matrix-nio advisors, as in test_escalation.py)."""
    bot = new_bot(synapse, tmp_path)
    adv = new_user(synapse, "advm")
    room = advisors_room(adv, [], bot["user_id"], "Conseillers 52 (e-mail)")
    d = make_daemon(redis.address, start=False, idle_timeout_s=60)
    d.settings["extra"] = (bot_matrix_yaml(synapse, bot) + router_yaml()
                           + esc_yaml([f"* {room}"])
                           + email_yaml(smtp.port, f"http://127.0.0.1:{d.port}"))
    d.start()
    assert adv.wait_membership(room, bot["user_id"], "join", 60), d.read_log()[-3000:]
    chat, _ = confirmed_conversation(d, redis, smtp, first="Dans quelle commune se trouve le site")
    after = chat.last_seq()
    chat.say("saint dizier")
    chat.wait_bot("", after)
    chat.say("conseiller")
    root = wait_body(adv, room, bot["user_id"], "Nouvelle demande d'accompagnement", 30)
    assert root, d.read_log()[-3000:]
    tk = f"fb:{{c:web:{chat.token}}}:ticket"
    assert wait_until(lambda: redis.cli("HGET", tk, "root") == root["event_id"], 10)
    thread_reply(adv, room, root["event_id"], "!prendre")
    chat.wait_bot("a pris en charge votre demande")
    thread_reply(adv, room, root["event_id"], "Voici la réponse à votre question")
    chat.wait_bot("(conseiller) : Voici la réponse")
    assert wait_until(lambda: [m for m in smtp.with_subject("conseiller")
                               if "Voici la réponse" in body_text(m)], 20), smtp.subjects()
    time.sleep(1.0)
    replies = [m for m in smtp.with_subject("conseiller") if "Voici la réponse" in body_text(m)]
    assert len(replies) == 1, smtp.subjects()
    assert f"http://127.0.0.1:{d.port}/" in body_text(replies[0])
    # The claim (« ... a pris en charge votre demande ») is a relay too: mailed, once.
    assert len([m for m in smtp.with_subject("conseiller")
                if "pris en charge" in body_text(m)]) == 1
    no_address_in_log(d)
    chat.close()


def test_stop_while_the_server_holds_a_mail_is_clean_and_keeps_it(redis, make_daemon, smtp):
    """SIGTERM while the relay holds DATA: the adapter cancels its SMTP transaction, the daemon
    stops cleanly (every handle closed, no sanitizer report), the mail stays at the head of the
    outbox, and the next start sends it once."""
    d = start(make_daemon, redis, smtp, timeout_ms=60000)
    chat, _ = confirmed_conversation(d, redis, smtp)
    smtp.hang_s = 120
    smtp.modes = ["hang"]
    make_due(redis, chat.token)
    assert wait_until(lambda: smtp.hung == 1, 20)
    chat.close()
    t0 = time.monotonic()
    rc, log = d.stop()
    d.check_clean(rc, log)
    assert time.monotonic() - t0 < 5, "the held SMTP transaction delayed the stop"
    mailbox = ckey(f"email:web:{chat.token}", "outbox")
    assert redis.cli("LLEN", mailbox) == "1"
    smtp.release.set()
    d.start()
    assert wait_until(lambda: smtp.with_subject("Où en est"), 20), d.read_log()[-3000:]
    time.sleep(1.0)
    assert len(smtp.with_subject("Où en est")) == 1
