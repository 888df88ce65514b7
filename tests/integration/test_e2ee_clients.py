# SPDX-License-Identifier: MIT
"""The E2EE test clients themselves (tests/integration/e2ee/), against the real Synapse and
without the daemon: proof that the harness issue #15's tests will use sees what it must see before
the bot can encrypt.

- matrix-js-sdk with its Rust crypto (Element Web's stack) and matrix-nio with its e2e extra hold
  an encrypted direct chat, both directions, a thread included;
- js in "only cross-signed devices" mode (Element's "exclude insecure devices", MSC4153) withholds
  the room key from a device its owner did not cross-sign, and refuses that device's messages;
  once the device is cross-signed, both work. In "all devices" mode the same device reads at once
  (so the failure above comes from the mode, not from the harness);
- a user's second device, logged in later and verified with the recovery key, reads what is sent
  after it came, from a cross-signed js peer and from nio.

Each client's log is printed at teardown (shown by pytest when a test fails)."""
import os
import secrets
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "e2ee"))
from jsclient import JsClient  # noqa: E402
from nioclient import NioClient  # noqa: E402

QUIET_S = 10  # how long a device is given to (not) decrypt what it must not read


@pytest.fixture
def clients(synapse, tmp_path):
    """Factories js(name, account=None) and nio(name): clients on the session's Synapse, stopped
    at teardown, their logs printed."""
    made = []

    class Make:
        @staticmethod
        def account(name):
            return synapse.register(f"{name}-{secrets.token_hex(4)}")

        @staticmethod
        def js(name, account=None):
            account = account or Make.account(name)
            c = JsClient(synapse.url, account["user_id"], account["password"], name=name, log_dir=str(tmp_path))
            made.append(c)
            return c

        @staticmethod
        def nio(name, account=None):
            c = NioClient(synapse, account or Make.account(name), store_dir=str(tmp_path / f"nio-{name}"))
            made.append(c)
            return c

    yield Make
    for c in reversed(made):
        c.stop()
        if isinstance(c, JsClient):
            print(f"--- {c.name} ({c.user_id} {c.device_id}) log:\n{c.stderr_tail(20000)}")


def one(out, body):
    """The single message of a `messages` answer, checked readable, encrypted on the wire and with
    the expected body."""
    assert out["complete"], out
    (msg,) = out["messages"]
    assert msg["body"] == body, out
    assert msg["encrypted"] and msg["decryption_failure"] is None, out
    return msg


def test_js_and_nio_hold_an_encrypted_dm(clients):
    a = clients.js("owner")
    cs = a.bootstrap_cross_signing()
    assert cs["ready"] and cs["signed_by_owner"], cs
    a.isolation("all")  # b's nio device is not cross-signed
    b = clients.nio("advisor")

    room = a.create_dm(b.user_id)["room_id"]
    b.join(room)
    a.wait_members(room, [b.user_id])

    first = a.send(room, "bonjour depuis Element")["event_id"]
    got = one(b.messages(room=room, sender=a.user_id), "bonjour depuis Element")
    assert got["event_id"] == first and got["msgtype"] == "m.text"

    b.send(room, "réponse de nio")
    in_thread = b.send(room, "dans le fil", thread_root=first)
    out = a.messages(room=room, sender=b.user_id, count=2)
    assert out["complete"], out
    assert [m["body"] for m in out["messages"]] == ["réponse de nio", "dans le fil"], out
    assert all(m["encrypted"] and m["decryption_failure"] is None for m in out["messages"]), out
    assert out["messages"][1]["event_id"] == in_thread and out["messages"][1]["thread_root"] == first, out

    # js answers in the thread; nio sees the thread root in the decrypted content.
    a.send(room, "suite du fil", thread_root=first)
    assert one(b.messages(room=room, sender=a.user_id), "suite du fil")["thread_root"] == first

    # Default push rules notify a one-to-one encrypted message: /notifications sees them.
    notes = {n["event_id"]: n for n in a.notifications()["notifications"]}
    assert in_thread in notes and notes[in_thread]["type"] == "m.room.encrypted", notes
    assert notes[in_thread]["body"] == "dans le fil"
    assert any(n["event"]["event_id"] == first for n in b.notifications()["notifications"])


@pytest.mark.parametrize("mode", ["only_signed", "all"])
def test_js_isolation_mode_and_cross_signing(clients, mode):
    a = clients.js("owner")
    a.bootstrap_cross_signing()
    a.isolation(mode)
    peer = clients.js("peer")  # not cross-signed yet
    assert not a.device_status(peer.device_id, user=peer.user_id)["signed_by_owner"]

    room = a.create_dm(peer.user_id)["room_id"]
    peer.join(room)
    a.wait_members(room, [peer.user_id])

    a.send(room, "avant la signature")
    before = peer.messages(room=room, sender=a.user_id, timeout=QUIET_S,
                           until_failure=["MEGOLM_KEY_WITHHELD_FOR_UNVERIFIED_DEVICE"])
    peer.send(room, "du pair non signé")
    from_unsigned = a.messages(room=room, sender=peer.user_id, timeout=QUIET_S,
                               until_failure=["UNSIGNED_SENDER_DEVICE"])
    if mode == "all":
        # The control: the same unsigned device reads, and is read, when all devices count.
        one(before, "avant la signature")
        one(from_unsigned, "du pair non signé")
        return

    # only_signed: the key was withheld from the unsigned device, and its message refused.
    assert not before["complete"] and not before["messages"], before
    assert [m["decryption_failure"] for m in before["undecryptable"]] == ["MEGOLM_KEY_WITHHELD_FOR_UNVERIFIED_DEVICE"], \
        before
    assert not from_unsigned["complete"], from_unsigned
    assert [m["decryption_failure"] for m in from_unsigned["undecryptable"]] == ["UNSIGNED_SENDER_DEVICE"], \
        from_unsigned

    # Once the peer's owner cross-signs it (and a has seen the signature), both ways work.
    assert peer.bootstrap_cross_signing()["signed_by_owner"]
    assert a.device_status(peer.device_id, user=peer.user_id, wait_signed=True)["signed_by_owner"]
    a.send(room, "après la signature")
    one(peer.messages(room=room, sender=a.user_id, body_contains="après"), "après la signature")
    peer.send(room, "du pair signé")
    one(a.messages(room=room, sender=peer.user_id, body_contains="signé"), "du pair signé")


def test_second_device_reads_what_comes_after_it(clients):
    owner = clients.account("owner")
    a1 = clients.js("owner-1", owner)
    a1.bootstrap_cross_signing()
    recovery = a1.bootstrap_secret_storage()
    assert recovery["ready"] and recovery["recovery_key"], recovery
    a1.isolation("only_signed")
    bot = clients.js("bot")  # the bot as issue #15 wants it: cross-signed, only_signed peers
    bot.bootstrap_cross_signing()
    bot.isolation("only_signed")

    room = a1.create_dm(bot.user_id)["room_id"]
    bot.join(room)
    a1.wait_members(room, [bot.user_id])
    bot.wait_members(room, [a1.user_id])
    bot.send(room, "premier message")
    one(a1.messages(room=room, sender=bot.user_id), "premier message")

    # The second device logs in later and signs itself with the recovery key, as Element offers.
    a2 = clients.js("owner-2", owner)
    assert a2.user_id == a1.user_id and a2.device_id != a1.device_id
    a2.isolation("only_signed")
    signed = a2.verify_with_recovery_key(recovery["recovery_key"])
    assert signed["ready"] and signed["signed_by_owner"], signed
    assert bot.device_status(a2.device_id, user=owner["user_id"], wait_signed=True)["signed_by_owner"]

    bot.send(room, "deuxième message")
    one(a2.messages(room=room, sender=bot.user_id, body_contains="deuxième"), "deuxième message")
    one(a1.messages(room=room, sender=bot.user_id), "deuxième message")
    # The first message came before the second device: no key for it (no key backup here).
    assert not a2.messages(room=room, sender=bot.user_id, body_contains="premier", timeout=1)["messages"]

    # The second device writes; the bot (only_signed) reads it, and so does the first device.
    a2.send(room, "depuis mon deuxième appareil")
    one(bot.messages(room=room, sender=owner["user_id"]), "depuis mon deuxième appareil")
    one(a1.messages(room=room, sender=owner["user_id"]), "depuis mon deuxième appareil")


def test_nio_shares_with_a_device_that_came_later(clients):
    """nio encrypts for the devices it knew at its last /sync: NioClient.send syncs first, so that
    a member's device that logged in since gets the room key (without it, this test fails)."""
    owner = clients.account("owner")
    a1 = clients.js("owner-1", owner)
    a1.isolation("all")  # the nio device is not cross-signed
    b = clients.nio("advisor")
    room = a1.create_dm(b.user_id)["room_id"]
    b.join(room)
    a1.wait_members(room, [b.user_id])
    b.send(room, "avant")
    one(a1.messages(room=room, sender=b.user_id), "avant")

    a2 = clients.js("owner-2", owner)
    a2.isolation("all")
    b.send(room, "après")
    one(a2.messages(room=room, sender=b.user_id, body_contains="après"), "après")
