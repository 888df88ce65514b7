# SPDX-License-Identifier: MIT
"""A real Synapse for the Matrix tests, and matrix-nio clients playing the project owners.

Synapse runs from its own virtualenv (.venv-synapse, or $FB_SYNAPSE_VENV; deploy/install-deps.sh
test makes it from requirements-synapse.txt), on a random loopback port, with SQLite, no federation,
registration closed except through the shared secret, and Synapse's DEFAULT message rate limit
(rc_message). Every user the tests register gets the limit lifted with the admin API
`override_ratelimit`, except where a test asks for the default (the rate-limit scenario). The other
rate limits (logins, registrations, room creation, joins, invites) are raised in the config: the
suite creates many rooms and users in a few seconds.

The nio clients are synchronous facades over matrix-nio's AsyncClient, each with its own event
loop, so that the tests stay plain sequential pytest functions."""
import asyncio
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

from ports import free_port

SOURCE = os.environ.get("FB_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
SYNAPSE_VENV = os.environ.get("FB_SYNAPSE_VENV") or os.path.join(SOURCE, ".venv-synapse")
SERVER_NAME = "localhost"
HIGH = {"per_second": 10000, "burst_count": 10000}


def synapse_python():
    py = os.path.join(SYNAPSE_VENV, "bin", "python")
    if not os.access(py, os.X_OK):
        raise RuntimeError(f"no Synapse virtualenv at {SYNAPSE_VENV}: run deploy/install-deps.sh test "
                           "(or set FB_SYNAPSE_VENV)")
    return py


class HttpError(Exception):
    def __init__(self, status, body):
        super().__init__(f"HTTP {status}: {body[:500]!r}")
        self.status = status
        self.body = body

    def json(self):
        return json.loads(self.body)


def http(method, url, body=None, token=None, headers=None, timeout=30, raw=False):
    """One HTTP request; returns the decoded JSON (or the raw bytes if raw), raises HttpError on
    a status >= 400. `body` is a dict (sent as JSON) or bytes (sent as they are)."""
    h = dict(headers or {})
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        h.setdefault("Content-Type", "application/json")
    if token:
        h["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            out = r.read()
    except urllib.error.HTTPError as e:
        raise HttpError(e.code, e.read()) from None
    return out if raw else (json.loads(out) if out else {})


class Synapse:
    """One Synapse process. `appservices` is a list of registration YAML files loaded at start
    (app_service_config_files); `extra` a dict of more top-level config keys."""

    def __init__(self, workdir, appservices=(), extra=None):
        self.dir = str(workdir)
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.appservices = list(appservices)
        self.extra = dict(extra or {})
        self.secret = secrets.token_hex(24)
        self.proc = None
        self.log_path = os.path.join(self.dir, "synapse.out")
        self.admin = None  # {"user_id", "access_token", "device_id"} of the admin user
        self.start_seconds = None  # how long the last start took, for the report

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def _generate(self):
        """The generated config gives the signing key and the secrets; ours overrides the rest."""
        base = os.path.join(self.dir, "homeserver.yaml")
        if not os.path.exists(base):
            subprocess.run([synapse_python(), "-m", "synapse.app.homeserver", "--server-name", SERVER_NAME,
                            "--config-path", base, "--generate-config", "--report-stats=no"],
                           cwd=self.dir, check=True, capture_output=True, timeout=120)
        override = {
            "server_name": SERVER_NAME,
            "pid_file": os.path.join(self.dir, "homeserver.pid"),
            "listeners": [{"port": self.port, "bind_addresses": ["127.0.0.1"], "type": "http",
                           "tls": False, "x_forwarded": False,
                           "resources": [{"names": ["client"], "compress": False}]}],
            "database": {"name": "sqlite3", "args": {"database": os.path.join(self.dir, "homeserver.db")}},
            "media_store_path": os.path.join(self.dir, "media_store"),
            "registration_shared_secret": self.secret,
            "enable_registration": False,
            "report_stats": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "federation_domain_whitelist": [],
            "presence": {"enabled": False},
            "encryption_enabled_by_default_for_room_type": "off",
            "app_service_config_files": [str(p) for p in self.appservices],
            # rc_message stays at Synapse's default on purpose (see the module's docstring).
            "rc_registration": HIGH,
            "rc_login": {"address": HIGH, "account": HIGH, "failed_attempts": HIGH},
            "rc_joins": {"local": HIGH, "remote": HIGH},
            "rc_joins_per_room": HIGH,
            "rc_invites": {"per_room": HIGH, "per_user": HIGH, "per_issuer": HIGH},
            "rc_room_creation": HIGH,
            "rc_3pid_validation": HIGH,
            "rc_admin_redaction": HIGH,
        }
        override.update(self.extra)
        path = os.path.join(self.dir, "override.yaml")
        with open(path, "w") as f:
            json.dump(override, f, indent=1)  # JSON is YAML
        return base, path

    def start(self, timeout=120):
        base, override = self._generate()
        t0 = time.monotonic()
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen([synapse_python(), "-m", "synapse.app.homeserver", "-c", base, "-c", override],
                                     cwd=self.dir, stdout=self.log, stderr=subprocess.STDOUT)
        end = t0 + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Synapse exited with {self.proc.returncode}:\n{self.read_log()[-5000:]}")
            try:
                if http("GET", self.url + "/health", raw=True, timeout=2) == b"OK":
                    break
            except (OSError, HttpError):
                pass
            time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError(f"Synapse not healthy after {timeout}s:\n{self.read_log()[-5000:]}")
        self.start_seconds = time.monotonic() - t0
        if self.admin is None:
            self.admin = self.register("admin-" + secrets.token_hex(3), admin=True)
        return self

    def read_log(self):
        out = ""
        for name in ("synapse.out", "homeserver.log"):
            try:
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    out += f.read()
            except FileNotFoundError:
                pass
        return out

    def stop(self, timeout=30):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self.log.close()
        self.proc = None

    def restart(self):
        """Stops and starts again on the same port, with the same database: what a homeserver
        upgrade looks like to a bot."""
        self.stop()
        return self.start()

    # -- users ----------------------------------------------------------------------------------

    def register(self, localpart, password=None, admin=False, ratelimited=False):
        """Registers a user with the shared-secret admin API; returns {"user_id", "access_token",
        "device_id", "password"}. Unless `ratelimited`, the message rate limit is lifted for it."""
        password = password or secrets.token_hex(12)
        nonce = http("GET", self.url + "/_synapse/admin/v1/register")["nonce"]
        mac = hmac.new(self.secret.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([nonce.encode(), localpart.encode(), password.encode(),
                                 b"admin" if admin else b"notadmin"]))
        out = http("POST", self.url + "/_synapse/admin/v1/register",
                   {"nonce": nonce, "username": localpart, "password": password, "admin": admin,
                    "mac": mac.hexdigest()})
        out["password"] = password
        if not ratelimited and self.admin is not None:
            self.lift_ratelimit(out["user_id"])
        return out

    def lift_ratelimit(self, user_id):
        http("POST", self.url + "/_synapse/admin/v1/users/" + urllib.parse.quote(user_id) + "/override_ratelimit",
             {"messages_per_second": 0, "burst_count": 0}, token=self.admin["access_token"])

    def admin_api(self, method, path, body=None):
        return http(method, self.url + path, body, token=self.admin["access_token"])

    def client_api(self, method, path, token, body=None, **kw):
        return http(method, self.url + "/_matrix/client/v3" + path, body, token=token, **kw)


def txn():
    return "t" + secrets.token_hex(8)


class Client:
    """The project owner's Matrix client: matrix-nio's AsyncClient, driven synchronously. It keeps
    a sync token, so that every wait_* call sees each event once, and remembers every message
    event seen, per room, in timeline order."""

    def __init__(self, synapse, account):
        import nio  # from the test virtualenv (requirements.txt)
        self.nio = nio
        self.synapse = synapse
        self.user_id = account["user_id"]
        self.token = account["access_token"]
        self.loop = asyncio.new_event_loop()
        self.client = nio.AsyncClient(synapse.url, self.user_id, store_path=None,
                                      config=nio.AsyncClientConfig(store_sync_tokens=False, encryption_enabled=False))
        self.client.restore_login(self.user_id, account["device_id"], self.token)
        self.since = None
        self.timeline = {}  # room id -> [event dicts as the server sent them]
        self.members = {}  # room id -> {user id: membership}
        self.sync(0)  # the starting point: events before it are not the test's

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def close(self):
        if self.loop.is_closed():
            return
        self.run(self.client.close())
        self.loop.close()

    def sync(self, timeout_ms=1000):
        """One /sync from the stored token, without nio's room state machinery (the raw events
        are what the tests check). Returns the new timeline events, as (room id, event) pairs."""
        # A timeline limit far above what a test sends between two syncs: a "limited" timeline
        # would hide events from the checks, so it is an error here.
        params = {"timeout": str(timeout_ms), "filter": json.dumps({"room": {"timeline": {"limit": 5000}}})}
        if self.since:
            params["since"] = self.since
        out = http("GET", self.synapse.url + "/_matrix/client/v3/sync?" + urllib.parse.urlencode(params),
                   token=self.token, timeout=timeout_ms / 1000 + 30)
        self.since = out["next_batch"]
        new = []
        rooms = out.get("rooms", {})
        for room_id, room in rooms.get("join", {}).items():
            # (Synapse marks a newly joined room's first timeline as limited: it starts there.)
            assert not (room_id in self.timeline and room.get("timeline", {}).get("limited")), \
                f"limited timeline in {room_id}: events missed by the test client"
            for ev in room.get("state", {}).get("events", []) + room.get("timeline", {}).get("events", []):
                if ev.get("type") == "m.room.member":
                    self.members.setdefault(room_id, {})[ev["state_key"]] = ev["content"].get("membership")
            for ev in room.get("timeline", {}).get("events", []):
                self.timeline.setdefault(room_id, []).append(ev)
                new.append((room_id, ev))
        for room_id, room in rooms.get("leave", {}).items():
            for ev in room.get("timeline", {}).get("events", []):
                if ev.get("type") == "m.room.member":
                    self.members.setdefault(room_id, {})[ev["state_key"]] = ev["content"].get("membership")
                self.timeline.setdefault(room_id, []).append(ev)
                new.append((room_id, ev))
        return new

    def wait(self, pred, timeout=30.0):
        """Syncs until pred() is true; returns its value or None after `timeout`."""
        end = time.monotonic() + timeout
        while True:
            v = pred()
            if v:
                return v
            left = end - time.monotonic()
            if left <= 0:
                return None
            self.sync(int(min(left, 5) * 1000))

    # -- rooms ----------------------------------------------------------------------------------

    def create_dm(self, invite, encrypted=False, name=None):
        """A direct room (is_direct, trusted_private_chat, like Element and Tchap create them)
        with `invite` invited; encrypted rooms get m.room.encryption in their initial state."""
        initial = []
        if encrypted:
            initial.append({"type": "m.room.encryption", "state_key": "",
                            "content": {"algorithm": "m.megolm.v1.aes-sha2"}})
        resp = self.run(self.client.room_create(is_direct=True, invite=[invite], initial_state=initial,
                                                preset=self.nio.RoomPreset.trusted_private_chat, name=name))
        assert isinstance(resp, self.nio.RoomCreateResponse), resp
        return resp.room_id

    def membership(self, room_id, user_id):
        return self.members.get(room_id, {}).get(user_id)

    def wait_membership(self, room_id, user_id, membership, timeout=30.0):
        return self.wait(lambda: self.membership(room_id, user_id) == membership, timeout)

    def send(self, room_id, body, msgtype="m.text", content=None):
        """Sends a message with matrix-nio; returns its event id."""
        content = content or {"msgtype": msgtype, "body": body}
        resp = self.run(self.client.room_send(room_id, "m.room.message", content, ignore_unverified_devices=True))
        assert isinstance(resp, self.nio.RoomSendResponse), resp
        return resp.event_id

    def send_raw(self, room_id, content, event_type="m.room.message"):
        """Sends any content, bypassing nio (hostile payloads); returns the event id."""
        path = f"/rooms/{urllib.parse.quote(room_id)}/send/{event_type}/{txn()}"
        return self.synapse.client_api("PUT", path, self.token, content)["event_id"]

    def messages_from(self, room_id, sender):
        return [ev for ev in self.timeline.get(room_id, [])
                if ev.get("sender") == sender and ev.get("type") == "m.room.message"]

    def wait_messages(self, room_id, sender, count, timeout=30.0):
        """Waits until `sender` has sent at least `count` messages in the room (counted from
        this client's start); returns them all."""
        self.wait(lambda: len(self.messages_from(room_id, sender)) >= count, timeout)
        return self.messages_from(room_id, sender)


def bodies(events):
    return [ev["content"].get("body", "") for ev in events]
