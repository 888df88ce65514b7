#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""soak.py - the fault campaign of `make soak` (issue 18): two frichebot daemons on one Redis with
AOF, web chat users (websocket) and Matrix users (real Synapse accounts, the daemons in
application-service mode), for SOAK_SECONDS (default 600), while faults are injected; then a count
of what every user saw, and exit status 1 on any loss or duplicate.

    .venv/bin/python tests/soak/soak.py --binary build-soak/frichebot [--seconds 600]

Everything runs on random loopback ports, in a fresh directory under $TMPDIR (printed; kept when
the run fails or with --keep): Redis (appendonly yes, appendfsync everysec), one Synapse
(tests/integration/synapse.py, SQLite) loading the registration written by
`frichebot matrix-registration`, and the two daemons A and B, each always restarted on its own
port, serving the dialog tests/soak/soak.yaml. Between the daemons and Synapse sits
tests/support/fault_proxy.py (the daemons' `matrix.homeserver`); between Synapse and the daemons a
small balancer (the registration's `url`) that hands each new connection to A or B in turn, and to
the other one when the first refuses: a deployment with two daemons behind a reverse proxy.

The faults, one at a time, in a fixed cycle, every --gap seconds (default 15 s; shorter runs
shrink it so that a run sees every kind at least once):

  kill -9 of a daemon (A, then B next cycle), restarted 0.5 to 3 s later;
  SIGTERM of a daemon, which must exit 0 with its clean-stop line, restarted at once;
  kill -9 of Redis, restarted on its port from its AOF 0.5 to 2 s later;
  a Synapse restart (SIGTERM, start on the same port and database);
  homeserver 429: the proxy answers the daemons' next 20 client-API requests with 429
  M_LIMIT_EXCEEDED (retry_after_ms 500) instead of forwarding them;
  homeserver 5xx: the same with 500, 502, 503 and 504 in turn.

The users (--web-users, --matrix-users), one thread each, behave like a person who waits for the
answer: send a message, wait for its reply, think 0.2 to 1.5 s, send the next one. A message is a
unique token `m-<user>-<n>` (`m-w03-000017`); the dialog answers every message with one entry
"Reçu : <token>" (and asks "Votre message ?" again), so a reply names the message it answers.

- A web user keeps one conversation token for the whole run. It speaks the protocol of
  docs/web-protocol.md as the page does: `hello` with the last seq it has, every unacknowledged
  message resent with the same id after each `welcome`, `unavailable`/`rate_limited` resent after
  `retry_after`, reconnection (to A or B at random, the other when that one refuses) after a close,
  after 3 s without news while it waits for something, and after one reply in five by choice (a
  reply is pushed live only by the daemon that delivered it: the others' tabs read it at their
  next `hello`). What it "saw" is the union of the history entries it received, by seq.
- A Matrix user is a real Synapse user in its own direct room with the application service's
  user, created before the faults begin. It sends with PUT .../send/m.room.message/<txn id>, one
  txn id per message, retried with the same id until Synapse accepts it (connection refused while
  Synapse restarts, 5xx, 429): Synapse de-duplicates a retried transaction id. It reads with /sync;
  what it "saw" at the end is the room's whole timeline, paged back with /messages.

Definitions (the figures printed at the end):

- sent: web, a message the client wrote at least once on a websocket (it resends it until it is
  acknowledged, so at the end every sent message must be acknowledged: an unacknowledged one is
  counted as lost too); Matrix, a message Synapse accepted (answered its PUT with an event id).
- replies received: sent messages with at least one reply in what the user saw at the end.
- lost: sent messages with no reply in what the user saw at the end, after the drain (below).
- duplicated: replies beyond the first for one message (two history entries, with different seqs,
  or two Matrix events, both "Reçu : <token>").
- misrouted: a reply naming a token its user never sent (a reply in the wrong conversation).
- client duplicates: a user message stored twice (web: two history entries with its client id;
  Matrix: two events with its token, which the service then rightly answers twice: those
  replies are not counted as duplicated).
- reminders due: reminders the campaign made due (ZADD XX of `<conversation>|relance` in
  `fb:{g}:reminders:due`, at now - 1 s, the session's last user event `a` set back by the
  reminder's delay: the push-back is lazy), answered "changed"),
  only while the conversation's user is paused: it sends nothing until the reminder arrives (or
  for 120 s), since a user message after the due time rightly drops a reminder. Delivered: the
  entries "Relance de la campagne." the user saw. Lost and duplicated per conversation: due minus
  seen when positive, seen minus due when positive.

The drain: after --seconds, the faults stop (every process is up again, no injected error is left)
and users send no new message; the run waits until every sent message has its reply (and every
web message its ack) and every due reminder was seen, for at most --drain seconds (default 180).
Then the figures, the RSS and descriptor count of both daemons (after the warm-up, before the first
fault; and at the end, from /proc), and the daemons are stopped with SIGTERM.

`--self-test` checks this counting on made-up views (CTest: soak.self_test).

Exit status 1 when anything was lost, duplicated or misrouted, a reminder was lost or duplicated, a
client duplicated a message, a daemon's log holds a sanitizer report, or a SIGTERM did not end in a
clean exit; 0 otherwise. The build is the caller's choice (`make soak`: RelWithDebInfo with ASan
and UBSan, so that an error path taken under a fault reports itself; the RSS figures then include
the sanitizer's own memory)."""
import argparse
import json
import os
import random
import re
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent.parent
sys.path.insert(0, str(SOURCE / "tests" / "integration"))
sys.path.insert(0, str(SOURCE / "tests" / "support"))
os.environ.setdefault("FB_SOURCE_DIR", str(SOURCE))

import conftest  # noqa: E402  (Redis, Daemon: the integration suite's harness)
from conftest import SANITIZER_MARKERS, Daemon, Redis, free_port, redis_connected, wait_until  # noqa: E402
from fault_proxy import FaultProxy  # noqa: E402
from synapse import HttpError, Synapse, http  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidHandshake  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

DIALOG = HERE / "soak.yaml"
AS_USER = "@frichebot:localhost"
REPLY = re.compile(r"Reçu : (m-[a-z0-9]+-\d+)")
REMINDER = "Relance de la campagne."
THINK = (0.2, 1.5)
REMINDER_PATIENCE = 120.0

T0 = time.monotonic()
LOG_LOCK = threading.Lock()
LOG_FILE = None


def say(msg):
    line = f"[{time.monotonic() - T0:7.1f}s] {msg}"
    with LOG_LOCK:
        print(line, flush=True)
        if LOG_FILE:
            LOG_FILE.write(line + "\n")
            LOG_FILE.flush()


def note(msg):
    """To the run's log file only (soak.log): the users' incidents, too many for the terminal."""
    with LOG_LOCK:
        if LOG_FILE:
            LOG_FILE.write(f"[{time.monotonic() - T0:7.1f}s] {msg}\n")
            LOG_FILE.flush()


# -- processes --------------------------------------------------------------------------------

class SoakDaemon(Daemon):
    """conftest's Daemon, keeping every incarnation's log (daemon.log.1, .2...) and its fate."""

    def __init__(self, name, tmp, redis_address, **settings):
        tmp.mkdir(parents=True, exist_ok=True)
        super().__init__(tmp, redis_address, **settings)
        self.name = name
        self.incarnation = 0
        self.lock = threading.Lock()

    def start(self, wait_ready=True, env=None):
        if self.log_path.exists():
            self.log_path.rename(self.log_path.with_suffix(f".log.{self.incarnation}"))
        self.incarnation += 1
        self.started_at = time.monotonic()
        return super().start(wait_ready, env)

    @property
    def up(self):
        return self.proc is not None and self.proc.poll() is None

    def pid(self):
        return self.proc.pid if self.up else None


def proc_figures(pid):
    """(RSS in MiB, open descriptors) of a process, from /proc."""
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        return rss / 1024, len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, StopIteration):
        return None, None


class Balancer:
    """What Synapse calls the application service: hands each new connection to the next daemon,
    or to the other one when that one refuses; closes the connection when both refuse."""

    def __init__(self, ports):
        self.ports = ports
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.turn = 0
        self.running = True
        self.connections = [0] * len(ports)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.running = False
        self.listener.close()

    def _accept(self):
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.turn += 1
            order = [(self.turn + i) % len(self.ports) for i in range(len(self.ports))]
            for i in order:
                try:
                    server = socket.create_connection(("127.0.0.1", self.ports[i]), timeout=2)
                except OSError:
                    continue
                self.connections[i] += 1
                threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
                break
            else:
                client.close()

    @staticmethod
    def _pump(a, b):
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 60)
                if not ready:
                    continue
                for src in ready:
                    data = src.recv(65536)
                    if not data:
                        return
                    (b if src is a else a).sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass


# -- users ------------------------------------------------------------------------------------

class User:
    """What both kinds of users share: the send / wait / think loop, the pause for a reminder, and
    the tokens sent."""

    kind = "?"

    def __init__(self, campaign, name):
        self.c = campaign
        self.name = name
        self.n = 0
        self.sent = []  # tokens, in order
        self.seen_replies = set()  # tokens whose reply was seen (live view, for pacing)
        self.unreplied = set()  # tokens sent whose reply was not seen yet
        self.reminders_seen_live = 0
        self.hold = threading.Event()  # set by the reminder driver: send nothing new
        self.paused = threading.Event()  # set by the user: nothing in flight, holding
        self.reminders_due = 0
        self.last_send = 0.0
        self.failed = None
        self.busy = False

    def next_token(self):
        self.n += 1
        return f"m-{self.name}-{self.n:06d}"

    def waiting(self):
        """True while something sent is not answered (or, web, not acknowledged)."""
        self.unreplied -= self.seen_replies
        return bool(self.unreplied)

    def run(self):
        try:
            self.loop()
        except Exception:  # reported, and the run fails
            self.failed = traceback.format_exc()
            say(f"user {self.name} crashed:\n{self.failed}")

    def loop(self):
        while not self.c.stop_sending.is_set():
            if self.hold.is_set():
                self.paused.set()
                self.pump(0.5)
                continue
            self.paused.clear()
            token = self.next_token()
            self.busy = True
            if not self.send(token):
                break
            end = time.monotonic() + self.c.args.patience
            while token not in self.seen_replies and time.monotonic() < end and not self.c.abort.is_set():
                self.pump(0.5)
            if token not in self.seen_replies:
                note(f"{self.name}: no reply to {token} after {self.c.args.patience:.0f} s, going on")
            self.busy = False
            self.after_reply()
            pause = time.monotonic() + random.uniform(*THINK)
            while time.monotonic() < pause:
                self.pump(max(0.05, pause - time.monotonic()))
        # The drain: no new message; what was sent gets its reply (web: its ack too).
        while not self.c.abort.is_set() and not self.c.drained.is_set():
            self.pump(0.5)

    def after_reply(self):
        pass

    def done(self):
        """Nothing waiting: every sent message answered (and acknowledged)."""
        return not self.waiting()


class WebUser(User):
    kind = "web"

    def __init__(self, campaign, index):
        super().__init__(campaign, f"w{index:02d}")
        self.token = None
        self.ws = None
        self.port = None
        self.entries = {}  # seq -> entry (the union of every history entry received)
        self.unacked = {}  # client id -> text
        self.resend_at = {}  # client id -> monotonic time of the next resend (after a refusal)
        self.last_news = time.monotonic()
        self.last_frame_sent = time.monotonic()
        self.reconnects = 0
        self.resets = 0  # welcome new:true for a known token: Redis lost the history
        self.conflicts = 0  # one seq, two different entries
        self.closes = {}  # close code -> count

    # connection

    def connect(self, prefer=None):
        """Connects to a daemon (`prefer`, else one at random; the other when it refuses) and says
        hello; retries with a backoff until one answers. Resends the unacknowledged messages."""
        delay = 0.2
        while not self.c.abort.is_set():
            ports = list(self.c.web_ports())
            random.shuffle(ports)
            if prefer in ports:
                ports.remove(prefer)
                ports.insert(0, prefer)
            for port in ports:
                if self.try_connect(port):
                    return True
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        return False

    def try_connect(self, port):
        self.close()
        try:
            ws = connect(f"ws://127.0.0.1:{port}/ws", open_timeout=5, close_timeout=1, max_size=None, legacy=True)
        except (OSError, InvalidHandshake, TimeoutError, ConnectionClosed):  # (a daemon killed mid-handshake)
            return False
        self.ws, self.port = ws, port
        since = max(self.entries) if self.entries else 0
        try:
            self.ws.send(json.dumps({"type": "hello", "token": self.token, "since": since}))
            end = time.monotonic() + 10
            while time.monotonic() < end:
                frame = self.recv(end - time.monotonic())
                if frame is None:
                    continue
                if frame.get("type") == "welcome":
                    break
            else:
                self.close()
                return False
        except (ConnectionClosed, OSError):
            self.close()
            return False
        self.reconnects += 1
        self.last_news = time.monotonic()
        for mid in list(self.unacked):
            self.write_message(mid)
        return True

    def close(self):
        if self.ws is not None:
            try:
                self.ws.close()
            except Exception:
                pass
        self.ws = None

    def recv(self, timeout):
        """One frame (handled here), or None on timeout; raises ConnectionClosed."""
        try:
            raw = self.ws.recv(timeout=max(0.01, timeout))
        except TimeoutError:
            return None
        frame = json.loads(raw)
        self.handle(frame)
        return frame

    def handle(self, frame):
        t = frame.get("type")
        if t == "welcome":
            if self.token is not None and frame["token"] != self.token:
                self.c.anomaly(f"{self.name}: welcome with another token (conversation lost)")
            if self.token is not None and frame.get("new"):
                self.resets += 1
                self.c.anomaly(f"{self.name}: welcome new:true for its token (history reset)")
            self.token = frame["token"]
        elif t == "msg":
            seq = frame["seq"]
            entry = {k: v for k, v in frame.items() if k != "type"}
            old = self.entries.get(seq)
            if old is not None and old != entry:
                self.conflicts += 1
                self.c.anomaly(f"{self.name}: two different entries with seq {seq}")
            self.entries[seq] = entry
            self.last_news = time.monotonic()
            if entry.get("from") == "bot":
                m = REPLY.search(entry.get("text", ""))
                if m:
                    self.seen_replies.add(m.group(1))
                elif REMINDER in entry.get("text", "") and old is None:
                    self.reminders_seen_live += 1
        elif t == "ack":
            self.unacked.pop(frame.get("id"), None)
            self.resend_at.pop(frame.get("id"), None)
            self.last_news = time.monotonic()
        elif t == "error":
            code, mid = frame.get("code"), frame.get("id")
            if mid in self.unacked and code in ("unavailable", "rate_limited"):
                self.resend_at[mid] = time.monotonic() + float(frame.get("retry_after") or 1)
            elif code not in ("unavailable",):
                self.c.anomaly(f"{self.name}: error {code} {frame.get('message', '')!r}")

    def write_message(self, mid):
        if self.ws is None:
            return
        try:
            self.ws.send(json.dumps({"type": "message", "id": mid, "text": self.unacked[mid]}))
            self.last_frame_sent = time.monotonic()
        except (ConnectionClosed, OSError):
            pass

    # the user's side

    def start(self):
        self.connect()
        assert wait_until(lambda: self.pump(0.2) or any(e.get("from") == "bot" for e in self.entries.values()), 60), \
            f"{self.name}: no greeting"

    def send(self, token):
        self.unacked[token] = token
        self.sent.append(token)
        self.unreplied.add(token)
        self.last_send = time.monotonic()
        if self.ws is None:
            self.connect()
        self.write_message(token)
        return True

    def waiting(self):
        return bool(self.unacked) or super().waiting()

    def pump(self, timeout):
        """Reads what comes for up to `timeout` seconds; reconnects after a close, or after 3 s
        without news while something is awaited; resends refused messages when due; pings."""
        end = time.monotonic() + timeout
        while True:
            if self.ws is None and not self.connect():
                return False
            now = time.monotonic()
            for mid, at in list(self.resend_at.items()):
                if at <= now and mid in self.unacked:
                    del self.resend_at[mid]
                    self.write_message(mid)
            awaiting = self.waiting() or self.hold.is_set()
            if awaiting and now - self.last_news > 3:
                self.connect(prefer=None)
                continue
            if now - self.last_frame_sent > 8:
                try:
                    self.ws.send(json.dumps({"type": "ping"}))
                    self.last_frame_sent = now
                except (ConnectionClosed, OSError):
                    pass
            left = end - time.monotonic()
            if left <= 0:
                return False
            try:
                self.recv(min(left, 0.5))
            except ConnectionClosed as e:
                code = e.rcvd.code if e.rcvd else None
                self.closes[code] = self.closes.get(code, 0) + 1
                if code == 4000:
                    self.c.anomaly(f"{self.name}: closed 4000 (conversation ended)")
                self.ws = None
                time.sleep(0.1)
            except (OSError, ValueError):
                self.ws = None

    def after_reply(self):
        if random.random() < 0.2:  # a reload, on either daemon: the history is read again
            self.connect()

    def final_view(self):
        """Reconnects once more (the entries after the last seq seen); returns the entries."""
        self.connect()
        self.pump(1.0)
        self.close()
        return [self.entries[s] for s in sorted(self.entries)]


class MatrixUser(User):
    kind = "matrix"

    def __init__(self, campaign, index):
        super().__init__(campaign, f"x{index:02d}")
        self.account = None
        self.room = None
        self.bot_ts = {}  # token -> origin_server_ts of each reply (final view)
        self.reminder_ts = []  # origin_server_ts of each reminder (final view)
        self.since = None
        self.send_retries = 0

    def api(self, method, path, body=None, timeout=30, **kw):
        return http(method, self.c.synapse.url + "/_matrix/client/v3" + path, body,
                    token=self.account["access_token"], timeout=timeout, **kw)

    def start(self):
        syn = self.c.synapse
        self.account = syn.register(f"soak-{self.name}-{secrets.token_hex(3)}")
        self.room = self.api("POST", "/createRoom", {"invite": [AS_USER], "is_direct": True,
                                                     "preset": "trusted_private_chat"})["room_id"]
        self.sync(0)
        greeted = wait_until(lambda: self.pump(1.0) or self.greeted, 90)
        assert greeted, f"{self.name}: no greeting from the application service"

    greeted = False

    def sync(self, timeout_ms):
        params = {"timeout": str(timeout_ms),
                  "filter": json.dumps({"room": {"timeline": {"limit": 5000}}, "presence": {"types": []}})}
        if self.since:
            params["since"] = self.since
        out = self.api("GET", "/sync?" + urllib.parse.urlencode(params), timeout=timeout_ms / 1000 + 30)
        self.since = out["next_batch"]
        room = out.get("rooms", {}).get("join", {}).get(self.room, {})
        for ev in room.get("timeline", {}).get("events", []):
            if ev.get("type") != "m.room.message" or ev.get("sender") != AS_USER:
                continue
            body = ev.get("content", {}).get("body", "")
            m = REPLY.search(body)
            if m:
                self.seen_replies.add(m.group(1))
            elif REMINDER in body:
                self.reminders_seen_live += 1
            self.greeted = True

    def pump(self, timeout):
        try:
            self.sync(int(timeout * 1000))
        except (OSError, HttpError, ValueError):
            time.sleep(min(timeout, 0.5))
        return False

    def send(self, token):
        """PUT with one txn id, retried until Synapse accepts it (it de-duplicates the id)."""
        txn = "soak-" + token
        path = f"/rooms/{urllib.parse.quote(self.room)}/send/m.room.message/{txn}"
        delay = 0.2
        first = True
        while not self.c.abort.is_set():
            try:
                self.api("PUT", path, {"msgtype": "m.text", "body": token}, timeout=15)
                self.sent.append(token)
                self.unreplied.add(token)
                self.last_send = time.monotonic()
                return True
            except HttpError as e:
                if e.status != 429 and e.status < 500:
                    self.c.anomaly(f"{self.name}: send refused: {e}")
                    return False
            except OSError:
                pass
            if first:
                first = False
            self.send_retries += 1
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        return False

    def final_view(self):
        """The room's whole timeline, paged back with /messages: (bot bodies, user bodies)."""
        bot, mine = [], []
        frm = None
        while True:
            q = {"dir": "b", "limit": "1000"}
            if frm:
                q["from"] = frm
            out = self.api("GET", f"/rooms/{urllib.parse.quote(self.room)}/messages?" + urllib.parse.urlencode(q))
            for ev in out.get("chunk", []):
                if ev.get("type") != "m.room.message":
                    continue
                body = ev.get("content", {}).get("body", "")
                if ev.get("sender") == AS_USER:
                    bot.append(body)
                    m = REPLY.search(body)
                    if m:
                        self.bot_ts.setdefault(m.group(1), []).append(ev.get("origin_server_ts", 0))
                    elif REMINDER in body:
                        self.reminder_ts.append(ev.get("origin_server_ts", 0))
                elif ev.get("sender") == self.account["user_id"]:
                    mine.append(body)
            if not out.get("chunk") or not out.get("end"):
                break
            frm = out["end"]
        bot.reverse()
        mine.reverse()
        return bot, mine


# -- the campaign -----------------------------------------------------------------------------

def retry_yaml(delays):
    return f"    delays_ms: {json.dumps(delays)}\n    jitter_percent: 0\n"


class Campaign:
    def __init__(self, args, workdir):
        self.args = args
        self.dir = workdir
        self.stop_sending = threading.Event()
        self.drained = threading.Event()
        self.abort = threading.Event()
        self.stop_faults = threading.Event()
        self.anomalies = []
        self.faults = {}
        self.failures = []  # reasons to fail the run besides the counts
        self.unclean = 0
        self.sigterms = 0
        self.sanitizer = []
        self.samples = {}  # daemon name -> [(t, rss, fds)]
        self.start_figures = {}
        self.users = []
        self.synapse_restarts = []  # (wall ms when the stop began, wall ms when it was up again)
        self.lock = threading.Lock()

    def anomaly(self, what):
        with self.lock:
            self.anomalies.append(what)
        note("anomaly: " + what)

    # the stack

    def setup(self):
        self.redis = Redis(self.dir)
        self.redis.start()
        self.registration = self.dir / "registration.yaml"
        self.synapse = Synapse(self.dir / "synapse", appservices=[self.registration])
        ports = [free_port(), free_port()]
        self.balancer = Balancer(ports)
        # The proxy forwards to the port Synapse will listen on (chosen by Synapse()), so that the
        # daemons' configuration, written before Synapse starts, can name it.
        self.proxy = FaultProxy(("127.0.0.1", self.synapse.port)).start()
        extra = f"""dialogs:
  path: "{DIALOG}"
router:
  outbox_retry:
{retry_yaml([100, 200, 500, 1000, 2000])}    max_attempts: 0
reminders:
  poll_interval_ms: 200
  batch: 50
  lease_ms: 5000
  working_hours_only: false
web:
  messages_per_minute: 10000
  max_connections_per_address: 10000
  new_conversations_per_minute: 10000
  history_max: 100000
matrix:
  enabled: true
  mode: appservice
  homeserver: "{self.proxy.url}"
  user_id: "{AS_USER}"
  appservice:
    registration_file: "{self.registration}"
    id: "frichebot"
    url: "{self.balancer.url}"
"""
        self.daemons = []
        for name, port in zip("ab", ports):
            d = SoakDaemon(name, self.dir / name, self.redis.address, listen=f"127.0.0.1:{port}",
                           idle_timeout_s=30, max_body_bytes=1048576, shutdown_deadline_s=5, extra=extra)
            d.port = port
            self.daemons.append(d)
        self.daemons[0].write_config()
        out = subprocess.run([conftest.BINARY, "matrix-registration", "-c", str(self.daemons[0].config_path)],
                             capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise RuntimeError("matrix-registration: " + out.stderr)
        self.synapse.start(timeout=300)
        say(f"Synapse up in {self.synapse.start_seconds:.1f} s")
        for d in self.daemons:
            self.start_daemon(d)

    def env(self):
        return {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1"),
                "UBSAN_OPTIONS": os.environ.get("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")}

    def start_daemon(self, d):
        for attempt in range(5):
            try:
                d.start(env=self.env())
                if wait_until(lambda: redis_connected(d), 30):
                    return
                say(f"daemon {d.name}: not connected to Redis 30 s after its start")
                return
            except AssertionError as e:
                self.failures.append(f"daemon {d.name} did not start: {str(e)[-300:]}")
                say(f"daemon {d.name} did not start (attempt {attempt + 1}): {str(e)[-300:]}")
                self.check_log(d)
                time.sleep(1)
        raise RuntimeError(f"daemon {d.name} does not start")

    def web_ports(self):
        return [d.port for d in self.daemons]

    def check_log(self, d):
        log = d.read_log()
        for marker in SANITIZER_MARKERS:
            if marker in log:
                self.sanitizer.append(f"daemon {d.name} incarnation {d.incarnation}: {marker}")
                say(f"SANITIZER REPORT in daemon {d.name} (incarnation {d.incarnation}): {d.log_path}")
                break

    # faults

    def count(self, kind, n=1):
        self.faults[kind] = self.faults.get(kind, 0) + n

    def kill_daemon(self, d):
        with d.lock:
            d.proc.send_signal(signal.SIGKILL)
            d.proc.wait(10)
            d.log.close()
            self.check_log(d)
            time.sleep(random.uniform(0.5, 3))
            self.start_daemon(d)
        self.count("daemon kill -9")

    def term_daemon(self, d):
        with d.lock:
            self.sigterms += 1
            try:
                rc, log = d.stop(signal.SIGTERM, timeout=40)
            except AssertionError:  # killed after 40 s
                rc, log = "none (did not stop within 40 s)", d.read_log()
            self.check_log(d)
            if rc != 0 or "stopped cleanly (uv_loop_close=0)" not in log:
                self.unclean += 1
                self.failures.append(f"daemon {d.name} SIGTERM: exit {rc}, see {d.log_path}")
                say(f"daemon {d.name}: SIGTERM gave exit status {rc} (clean line "
                    f"{'present' if 'stopped cleanly' in log else 'missing'})")
            self.start_daemon(d)
        self.count("daemon SIGTERM")

    def kill_redis(self):
        self.redis.proc.send_signal(signal.SIGKILL)
        self.redis.proc.wait(10)
        self.redis.proc = None
        time.sleep(random.uniform(0.5, 2))
        self.redis.start()
        self.count("Redis kill -9")

    def restart_synapse(self):
        t = time.monotonic()
        began = int(time.time() * 1000)
        self.synapse.stop()
        self.synapse.start(timeout=300)
        self.synapse_restarts.append((began, int(time.time() * 1000)))
        self.count("Synapse restart")
        note(f"Synapse restarted in {time.monotonic() - t:.1f} s")

    def inject(self, statuses, kind):
        self.proxy.fail_requests(statuses, 20, match=b"/_matrix/client/", retry_after_ms=500)
        self.count(kind)

    def fault_cycle(self):
        a, b = self.daemons
        return [
            ("kill -9 daemon a", lambda: self.kill_daemon(a)),
            ("homeserver 429 x20", lambda: self.inject(429, "homeserver 429 bursts")),
            ("kill -9 Redis", self.kill_redis),
            ("SIGTERM daemon b", lambda: self.term_daemon(b)),
            ("homeserver 5xx x20", lambda: self.inject([500, 502, 503, 504], "homeserver 5xx bursts")),
            ("Synapse restart", self.restart_synapse),
            ("kill -9 daemon b", lambda: self.kill_daemon(b)),
            ("SIGTERM daemon a", lambda: self.term_daemon(a)),
        ]

    def faults_thread(self, gap):
        cycle = self.fault_cycle()
        i = 0
        while not self.stop_faults.wait(gap * random.uniform(0.7, 1.3)):
            what, fn = cycle[i % len(cycle)]
            i += 1
            say(f"fault: {what}")
            try:
                fn()
            except Exception:
                self.failures.append(f"fault {what} failed: {traceback.format_exc()[-500:]}")
                say(f"fault {what} failed:\n{traceback.format_exc()}")

    # reminders

    def conv_key(self, user):
        return f"web:{user.token}" if user.kind == "web" else f"matrix:{user.room}"

    def reminder_thread(self):
        """Every few seconds, one idle user is held, its reminder made due, and the user released
        once the reminder arrived (or after REMINDER_PATIENCE)."""
        while not self.stop_sending.wait(random.uniform(3, 6)):
            user = random.choice(self.users)
            # paused is cleared first: a user that had just checked `hold` (clear) is sending, and
            # says "paused" again only at its next turn, after that message's reply.
            user.paused.clear()
            user.hold.set()
            if not wait_until(lambda: user.paused.is_set() or self.stop_sending.is_set(), 60, 0.05) \
                    or self.stop_sending.is_set():
                user.hold.clear()
                continue
            conv = self.conv_key(user)
            seen = user.reminders_seen_live
            try:
                # as if the delay had passed since the user's last event (the push-back is lazy:
                # a reminder is held until then, docs/internals/REMINDERS.md)
                due = int(time.time() * 1000) - 1000
                delay = self.redis.cli("HGET", f"fb:{{c:{conv}}}:reminders", "relance#a")
                self.redis.cli("HSET", f"fb:{{c:{conv}}}:session", "a", str(due - int(delay or 0)))
                changed = self.redis.cli("ZADD", "fb:{g}:reminders:due", "XX", "CH", str(due), f"{conv}|relance")
            except Exception:
                changed = ""
            if changed != "1":
                note(f"reminder of {user.name} not made due (ZADD said {changed!r})")
                user.hold.clear()
                continue
            user.reminders_due += 1
            got = wait_until(lambda: user.reminders_seen_live > seen, REMINDER_PATIENCE, 0.2)
            if not got:
                note(f"{user.name}: reminder due at {due} not seen after {REMINDER_PATIENCE:.0f} s")
            user.hold.clear()

    # figures

    def sample(self):
        for d in self.daemons:
            pid = d.pid()
            if pid:
                rss, fds = proc_figures(pid)
                if rss is not None:
                    self.samples.setdefault(d.name, []).append((time.monotonic() - T0, rss, fds, d.incarnation))

    def sampler_thread(self):
        while not self.abort.wait(5):
            self.sample()

    def figures(self, d):
        pid = d.pid()
        return proc_figures(pid) if pid else (None, None)

    # the run

    def run(self):
        a = self.args
        say(f"work directory {self.dir}")
        self.setup()
        say("stack up: Redis (AOF) :%d, Synapse :%d, proxy :%d, balancer :%d, daemons a :%d, b :%d"
            % (self.redis.port, self.synapse.port, self.proxy.port, self.balancer.port,
               self.daemons[0].port, self.daemons[1].port))
        self.users = [WebUser(self, i + 1) for i in range(a.web_users)] + \
                     [MatrixUser(self, i + 1) for i in range(a.matrix_users)]
        for u in self.users:
            u.start()
        say(f"{a.web_users} web users and {a.matrix_users} Matrix users greeted")
        threads = [threading.Thread(target=u.run, daemon=True) for u in self.users]
        for t in threads:
            t.start()
        threading.Thread(target=self.sampler_thread, daemon=True).start()
        time.sleep(min(10, a.seconds / 6))
        for d in self.daemons:
            self.start_figures[d.name] = self.figures(d)
        gap = min(a.gap, max(2.0, a.seconds / 9))
        faults = threading.Thread(target=self.faults_thread, args=(gap,), daemon=True)
        faults.start()
        reminders = threading.Thread(target=self.reminder_thread, daemon=True)
        reminders.start()
        say(f"campaign: {a.seconds} s, a fault every ~{gap:.0f} s")
        end = time.monotonic() + a.seconds
        next_report = time.monotonic() + 60
        while time.monotonic() < end:
            time.sleep(1)
            if time.monotonic() >= next_report:
                next_report += 60
                sent = sum(len(u.sent) for u in self.users)
                say(f"progress: {sent} messages sent, faults {self.faults}")
        say("time is up: faults stop, no new message; draining")
        self.stop_faults.set()
        self.stop_sending.set()
        faults.join(600)
        reminders.join(REMINDER_PATIENCE + 60)
        self.proxy.fail_requests(429, 0)
        for d in self.daemons:
            with d.lock:
                if not d.up:
                    self.start_daemon(d)
        t = time.monotonic()
        ok = wait_until(lambda: all(u.done() for u in self.users), a.drain, 0.5)
        say(f"drain: {'every message answered' if ok else 'NOT every message answered'} after "
            f"{time.monotonic() - t:.1f} s")
        self.drained.set()
        for t in threads:
            t.join(30)
        for u in self.users:
            if u.failed:
                self.failures.append(f"user {u.name} crashed")
        return self.report()

    def report(self):
        a = self.args
        rows = {k: {"web": 0, "matrix": 0} for k in
                ("sent", "replied", "lost", "duplicated", "misrouted", "unacked", "client duplicates",
                 "reminders due", "reminders delivered", "reminders lost", "reminders duplicated")}
        details = []
        across_restart = 0  # Matrix messages answered on both sides of a Synapse restart
        for u in self.users:
            k = u.kind
            if k == "web":
                entries = u.final_view()
                bot = [e.get("text", "") for e in entries if e.get("from") == "bot"]
                mine = [e.get("id") for e in entries if e.get("from") == "user"]
                rows["unacked"][k] += len(u.unacked)
                sent = list(u.sent)
            else:
                bot, mine = u.final_view()
                sent = list(u.sent)
            t = tally(k, sent, bot, mine, u.unacked if k == "web" else (), u.reminders_due)
            lost, dup, misrouted, user_dups, rem_seen = (t["lost"], t["duplicated"], t["misrouted"],
                                                         t["client duplicates"], t["reminders delivered"])
            for key in rows:
                if key in t and key != "unacked":
                    v = t[key]
                    rows[key][k] += len(v) if isinstance(v, list) else sum(v.values()) if isinstance(v, dict) else v
            if k == "matrix":
                for tok in dup:
                    stamps = sorted(u.bot_ts.get(tok, []))
                    if any(stamps[0] <= up and stamps[-1] >= began for began, up in self.synapse_restarts):
                        across_restart += 1
                # A reminder stored as Synapse stopped and again once it was up: two reminders
                # close together on both sides of a restart.
                stamps = sorted(u.reminder_ts)
                extra = t["reminders duplicated"]
                for first, second in zip(stamps, stamps[1:]):
                    if extra and any(first <= up and second >= began and second - first < 60000
                                     for began, up in self.synapse_restarts):
                        across_restart += 1
                        extra -= 1
            if lost or dup or misrouted or rem_seen != u.reminders_due or user_dups:
                details.append(f"  {u.name} ({self.conv_key(u)}): lost {lost[:10]}, duplicated {dict(list(dup.items())[:10])}, "
                               f"misrouted {misrouted[:10]}, reminders due {u.reminders_due} seen {rem_seen}, "
                               f"client duplicates {user_dups}")
        end_figures = {d.name: self.figures(d) for d in self.daemons}
        self.end_at = time.monotonic()
        pending = self.redis.cli("ZCARD", "fb:{g}:outbox:pending")
        claimed = self.redis.cli("ZCARD", "fb:{g}:reminders:claimed")
        parked = len([k for k in self.redis.cli("--scan", "--pattern", "fb:*:parked").splitlines() if k])
        # The daemons' clean stop.
        for d in self.daemons:
            with d.lock:
                if d.up:
                    self.sigterms += 1
                    rc, log = d.stop(signal.SIGTERM, timeout=40)
                    self.check_log(d)
                    if rc != 0 or "stopped cleanly (uv_loop_close=0)" not in log:
                        self.unclean += 1
                        self.failures.append(f"daemon {d.name} final SIGTERM: exit {rc}")

        def fmt(v):
            return f"{v[0]:.1f} MiB, {v[1]} fds" if v and v[0] is not None else "n/a"

        out = []
        out.append("")
        out.append(f"=== soak: {a.seconds} s, 2 daemons ({conftest.BINARY}), {a.web_users} web users, "
                   f"{a.matrix_users} Matrix users (application service) ===")
        out.append("faults: " + ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())))
        out.append(f"  proxy: {self.proxy.failed} requests answered 429/5xx, {self.proxy.connections} connections; "
                   f"balancer: {self.balancer.connections[0]} connections to a, {self.balancer.connections[1]} to b")
        out.append(f"{'':24}{'web':>10}{'matrix':>10}{'total':>10}")
        for k, v in rows.items():
            if k == "unacked":
                continue
            out.append(f"{k:24}{v['web']:>10}{v['matrix']:>10}{v['web'] + v['matrix']:>10}")
        out.append(f"web: {sum(u.reconnects for u in self.users if u.kind == 'web')} connections (hello), "
                   f"unacknowledged at the end {rows['unacked']['web']}, history resets "
                   f"{sum(u.resets for u in self.users if u.kind == 'web')}, seq conflicts "
                   f"{sum(u.conflicts for u in self.users if u.kind == 'web')}; Matrix: "
                   f"{sum(u.send_retries for u in self.users if u.kind == 'matrix')} sends retried")
        for d in self.daemons:
            s = self.samples.get(d.name, [])
            peak = max((x[1] for x in s), default=0)
            out.append(f"daemon {d.name}: start {fmt(self.start_figures.get(d.name))}; end {fmt(end_figures[d.name])} "
                       f"(incarnation {d.incarnation}, up {self.end_at - d.started_at:.0f} s); peak RSS {peak:.1f} MiB")
        out.append(f"Redis at the end: outbox pending {pending}, reminders claimed {claimed}, parked lists {parked}")
        out.append(f"SIGTERM stops: {self.sigterms}, unclean {self.unclean}; sanitizer reports: {len(self.sanitizer)}")
        if across_restart:
            out.append(f"of the Matrix duplicates (replies and reminders), {across_restart} were sent "
                       "before and after a Synapse restart (Synapse keeps an application service's "
                       "transaction ids in memory only, docs/internals/SOAK.md)")
        if self.anomalies:
            out.append(f"anomalies ({len(self.anomalies)}, see soak.log): " + "; ".join(self.anomalies[:5]))
        bad = []
        for k in ("lost", "duplicated", "misrouted", "client duplicates", "reminders lost", "reminders duplicated"):
            n = rows[k]["web"] + rows[k]["matrix"]
            if n:
                bad.append(f"{n} {k}")
        bad += self.sanitizer + self.failures
        if rows["sent"]["web"] + rows["sent"]["matrix"] == 0:
            bad.append("nothing was sent")
        if details:
            out.append("per user:")
            out += details
        out.append("verdict: " + ("OK: 0 lost, 0 duplicated" if not bad else "FAIL: " + "; ".join(bad)))
        for line in out:
            say(line)
        return 0 if not bad else 1

    def teardown(self):
        self.abort.set()
        for d in getattr(self, "daemons", []):
            if d.up:
                d.proc.kill()
                d.proc.wait()
        for what in ("synapse", "redis"):
            obj = getattr(self, what, None)
            if obj is not None:
                try:
                    obj.stop()
                except Exception:
                    pass
        for what in ("proxy", "balancer"):
            obj = getattr(self, what, None)
            if obj is not None:
                obj.stop()


def tally(kind, sent, bot, mine, unacked, reminders_due):
    """What one user saw, counted with the definitions of the module's docstring. `sent`: the
    tokens sent, in order; `bot`: the texts of the service's messages the user saw; `mine`: the
    user's own messages seen (web: entry ids, Matrix: bodies); `unacked`: the web messages never
    acknowledged. Returns the figures; lost, duplicated and misrouted as the tokens concerned."""
    replies = _counts(m.group(1) for m in (REPLY.search(b) for b in bot) if m)
    sent_set = set(sent)
    lost = [t for t in sent if t not in replies]
    lost += [t for t in unacked if t not in lost]
    mine_counts = _counts(mine)
    # A Matrix message Synapse stored twice is rightly answered twice: a client duplicate, counted
    # apart, not the daemon's. (The web chat de-duplicates a message by its id before the router.)
    expected = {t: max(1, mine_counts.get(t, 1)) if kind == "matrix" else 1 for t in sent_set}
    dup = {t: n - expected[t] for t, n in replies.items() if t in sent_set and n > expected[t]}
    rem_seen = sum(1 for b in bot if REMINDER in b)
    return {
        "sent": len(sent_set),
        "replied": sum(1 for t in sent_set if t in replies),
        "lost": lost,
        "duplicated": dup,
        "misrouted": [t for t in replies if t not in sent_set],
        "client duplicates": sum(c - 1 for c in mine_counts.values() if c > 1),
        "reminders due": reminders_due,
        "reminders delivered": rem_seen,
        "reminders lost": max(0, reminders_due - rem_seen),
        "reminders duplicated": max(0, rem_seen - reminders_due),
    }


def self_test():
    """The counting, on made-up views: each kind of fault must be counted (--self-test)."""
    ok = tally("web", ["m-w01-000001", "m-w01-000002"], ["Bonjour", "Reçu : m-w01-000001", "Votre message ?",
               "Reçu : m-w01-000002", REMINDER], ["m-w01-000001", "m-w01-000002"], [], 1)
    assert ok["lost"] == [] and ok["duplicated"] == {} and ok["misrouted"] == [] and ok["replied"] == 2, ok
    assert ok["reminders lost"] == 0 and ok["reminders duplicated"] == 0, ok
    bad = tally("web", ["m-w01-000001", "m-w01-000002", "m-w01-000003"],
                ["Reçu : m-w01-000001", "Reçu : m-w01-000001", "Reçu : m-w09-000001", REMINDER, REMINDER],
                ["m-w01-000001"], ["m-w01-000003"], 1)
    assert bad["lost"] == ["m-w01-000002", "m-w01-000003"], bad
    assert bad["duplicated"] == {"m-w01-000001": 1} and bad["misrouted"] == ["m-w09-000001"], bad
    assert bad["reminders duplicated"] == 1 and bad["replied"] == 1, bad
    assert tally("web", [], [], [], [], 2)["reminders lost"] == 2
    # Matrix: a message stored twice by the homeserver, answered twice: a client duplicate only.
    twice = tally("matrix", ["m-x01-000001"], ["Reçu : m-x01-000001"] * 2, ["m-x01-000001"] * 2, [], 0)
    assert twice["duplicated"] == {} and twice["client duplicates"] == 1, twice
    thrice = tally("matrix", ["m-x01-000001"], ["Reçu : m-x01-000001"] * 3, ["m-x01-000001"] * 2, [], 0)
    assert thrice["duplicated"] == {"m-x01-000001": 1}, thrice
    print("soak: self-test passed")


def _counts(items):
    out = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--binary", default=os.environ.get("FB_BINARY") or str(SOURCE / "build-soak" / "frichebot"))
    p.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 600)))
    p.add_argument("--gap", type=float, default=float(os.environ.get("SOAK_FAULT_GAP", 15)),
                   help="seconds between two faults (default 15)")
    p.add_argument("--web-users", type=int, default=int(os.environ.get("SOAK_WEB_USERS", 8)))
    p.add_argument("--matrix-users", type=int, default=int(os.environ.get("SOAK_MATRIX_USERS", 4)))
    p.add_argument("--drain", type=float, default=180, help="seconds allowed to the drain (default 180)")
    p.add_argument("--patience", type=float, default=90,
                   help="seconds a user waits for a reply before sending its next message (default 90)")
    p.add_argument("--keep", action="store_true", help="keep the work directory even when the run passes")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--self-test", action="store_true", help="check the counting on made-up views, and exit")
    args = p.parse_args()
    if args.self_test:
        self_test()
        return
    if not os.access(args.binary, os.X_OK):
        sys.exit(f"soak: no frichebot binary at {args.binary} (build it, or pass --binary)")
    conftest.BINARY = os.path.abspath(args.binary)
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    random.seed(seed)
    workdir = Path(tempfile.mkdtemp(prefix="frichebot-soak-"))
    global LOG_FILE
    LOG_FILE = open(workdir / "soak.log", "w")
    say(f"seed {seed}")
    c = Campaign(args, workdir)
    rc = 1
    try:
        rc = c.run()
    except KeyboardInterrupt:
        say("interrupted")
    except Exception:
        say("the campaign itself failed:\n" + traceback.format_exc())
    finally:
        c.teardown()
    if rc == 0 and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"logs kept in {workdir}", flush=True)
    sys.exit(rc)


if __name__ == "__main__":
    main()
