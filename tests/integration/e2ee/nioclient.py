# SPDX-License-Identifier: MIT
"""An advisor's encrypting Matrix client: matrix-nio with its e2e extra (vodozemac), driven
synchronously like tests/integration/synapse.py's Client, with a store of its own (a temporary
directory): device keys and one-time keys uploaded, Olm/Megolm sessions kept in nio's SQLite store.

nio trusts nothing by itself; this client sends with ignore_unverified_devices, so room keys go to
every device of every member (what a Tchap advisor's client does in practice), or verifies every
device it knows first with trust_all=True. It does not cross-sign its own device (nio cannot
easily): a peer in "only cross-signed devices" mode withholds keys from it and refuses its
messages; play such a user with jsclient.JsClient.

    b = NioClient(synapse, account)           # account from Synapse.register (password used)
    b.join(room_id)
    b.send(room_id, "!prendre", thread_root=root_id)
    b.messages(room=room_id, sender=bot_id, count=1)["messages"]

Every call to sync() also does what nio's sync_forever does between syncs: upload keys when
needed, query the keys of changed device lists, claim one-time keys for missing Olm sessions and
send the queued to-device messages."""
import asyncio
import json
import os
import tempfile
import time
import urllib.parse

from synapse import http


class NioClient:
    def __init__(self, synapse, account, device_name="frichebot test advisor (matrix-nio)", store_dir=None,
                 trust_all=False):
        import nio
        self.nio = nio
        self.synapse = synapse
        self.user_id = account["user_id"]
        self.trust_all = trust_all
        self.store_dir = store_dir or tempfile.mkdtemp(prefix="nio-store-")
        os.makedirs(self.store_dir, exist_ok=True)
        self.loop = asyncio.new_event_loop()
        self.client = nio.AsyncClient(synapse.url, self.user_id, store_path=self.store_dir,
                                      config=nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True))
        resp = self.run(self.client.login(account["password"], device_name=device_name))
        assert isinstance(resp, nio.LoginResponse), resp
        self.device_id = resp.device_id
        self.token = resp.access_token
        self.events = []  # (room id, nio event) of room timelines, in arrival order
        self.consumed = set()
        self.sent = set()
        self.sync(0)

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def close(self):
        if self.loop.is_closed():
            return
        self.run(self.client.close())
        self.loop.close()

    stop = close

    # -- sync ---------------------------------------------------------------------------------

    async def _housekeeping(self):
        c = self.client
        if c.should_upload_keys:
            await c.keys_upload()
        if c.should_query_keys:
            await c.keys_query()
        if c.should_claim_keys:
            await c.keys_claim(c.get_users_for_key_claiming())
        await c.send_to_device_messages()

    def sync(self, timeout_ms=1000):
        """One /sync (nio decrypts what it can), then the key housekeeping. Returns the new
        timeline events as (room id, event)."""
        self.run(self._housekeeping())
        resp = self.run(self.client.sync(timeout=timeout_ms, full_state=False))
        assert isinstance(resp, self.nio.SyncResponse), resp
        new = []
        for room_id, info in resp.rooms.join.items():
            for ev in info.timeline.events:
                new.append((room_id, ev))
        self.events += new
        self.run(self._housekeeping())
        return new

    def wait(self, pred, timeout=30.0):
        end = time.monotonic() + timeout
        while True:
            v = pred()
            if v:
                return v
            left = end - time.monotonic()
            if left <= 0:
                return None
            self.sync(int(min(left, 2) * 1000))

    # -- rooms --------------------------------------------------------------------------------

    def joined(self, room_id):
        room = self.client.rooms.get(room_id)
        return room is not None and self.user_id in room.users

    def join(self, room_id, timeout=30.0):
        """Waits for the invite, joins, and syncs until the room (and its members) are known."""
        assert self.wait(lambda: room_id in self.client.invited_rooms or self.joined(room_id), timeout), \
            f"{self.user_id}: no invite to {room_id}"
        resp = self.run(self.client.join(room_id))
        assert isinstance(resp, self.nio.JoinResponse), resp
        assert self.wait(lambda: self.joined(room_id), timeout), f"{self.user_id}: not joined {room_id}"
        return room_id

    def create_dm(self, invite, encrypted=True, name=None):
        initial = [{"type": "m.room.encryption", "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"}}] if encrypted else []
        resp = self.run(self.client.room_create(is_direct=True, invite=[invite], initial_state=initial, name=name,
                                                preset=self.nio.RoomPreset.trusted_private_chat))
        assert isinstance(resp, self.nio.RoomCreateResponse), resp
        assert self.wait(lambda: self.joined(resp.room_id)), resp.room_id
        return resp.room_id

    def wait_members(self, room_id, users, timeout=30.0):
        ok = self.wait(lambda: all(u in (self.client.rooms.get(room_id).users if room_id in self.client.rooms
                                         else {}) for u in users), timeout)
        assert ok, f"{self.user_id}: {users} not all joined in {room_id}"

    def trust_devices(self):
        """Marks every device nio knows of as verified (what trust_all asks before each send)."""
        for user_id in list(self.client.device_store.users):
            for dev in self.client.device_store.active_user_devices(user_id):
                if not dev.verified and not (user_id == self.user_id and dev.id == self.device_id):
                    self.client.verify_device(dev)

    def send(self, room_id, text, thread_root=None, msgtype="m.text", content=None):
        """Sends an m.room.message, encrypted if the room is (room keys to every device of every
        member); in a thread (m.relates_to m.thread, with the reply fallback) if thread_root.
        Returns the event id."""
        content = dict(content or {"msgtype": msgtype, "body": text})
        if thread_root:
            content["m.relates_to"] = {"rel_type": "m.thread", "event_id": thread_root, "is_falling_back": True,
                                       "m.in_reply_to": {"event_id": thread_root}}
        # Device list changes (a member's new device) come through /sync: without this sync, nio
        # would encrypt for the devices it knew at the last one, and a device that came since
        # would get no key.
        self.sync(0)
        if self.trust_all:
            self.run(self.client.keys_query()) if self.client.should_query_keys else None
            self.trust_devices()
        resp = self.run(self.client.room_send(room_id, "m.room.message", content,
                                              ignore_unverified_devices=not self.trust_all))
        assert isinstance(resp, self.nio.RoomSendResponse), resp
        self.sent.add(resp.event_id)
        return resp.event_id

    # -- reading ------------------------------------------------------------------------------

    def record(self, room_id, ev):
        nio = self.nio
        src = ev.source or {}
        content = src.get("content", {})
        rel = content.get("m.relates_to") or {}
        failed = isinstance(ev, nio.MegolmEvent)
        return {
            "room_id": room_id, "event_id": ev.event_id, "sender": ev.sender,
            "type": "m.room.encrypted" if failed else src.get("type"),
            "msgtype": None if failed else content.get("msgtype"),
            "body": None if failed else content.get("body"),
            "content": content,
            "encrypted": failed or bool(getattr(ev, "decrypted", False)),
            "decryption_failure": "undecryptable (no Megolm session)" if failed else None,
            "thread_root": rel.get("event_id") if rel.get("rel_type") == "m.thread" else None,
            "ts": getattr(ev, "server_timestamp", None),
        }

    def messages(self, room=None, sender=None, count=1, timeout=30.0, body_contains=None, include_own=False):
        """Like JsClient.messages: waits until `count` new readable m.room.message events match;
        returns {complete, messages, undecryptable} with the same fields (decryption_failure is a
        text here; nio retries no decryption, so an undecryptable event stays so)."""
        nio = self.nio
        got, failed = [], []

        def scan():
            got.clear()
            failed.clear()
            for room_id, ev in self.events:
                if ev.event_id in self.consumed or (room and room_id != room) or (sender and ev.sender != sender):
                    continue
                if not include_own and ev.event_id in self.sent:
                    continue
                if isinstance(ev, nio.MegolmEvent):
                    failed.append(self.record(room_id, ev))
                    continue
                if (ev.source or {}).get("type") != "m.room.message":
                    continue
                rec = self.record(room_id, ev)
                if body_contains and body_contains not in (rec["body"] or ""):
                    continue
                got.append(rec)
                if len(got) >= count:
                    return True
            return False

        self.wait(scan, timeout)
        for rec in got:
            self.consumed.add(rec["event_id"])
        return {"complete": len(got) >= count, "messages": list(got), "undecryptable": list(failed)}

    def notifications(self, limit=None, only=None):
        """GET /notifications for this user, raw: {notifications: [...]} as Synapse answers."""
        params = {}
        if limit:
            params["limit"] = str(limit)
        if only:
            params["only"] = only
        q = ("?" + urllib.parse.urlencode(params)) if params else ""
        return http("GET", self.synapse.url + "/_matrix/client/v3/notifications" + q, token=self.token)


def dump(obj):
    return json.dumps(obj, indent=1, ensure_ascii=False)
