# SPDX-License-Identifier: MIT
"""The install layout and systemd (issue 13): `cmake --install` into a temporary prefix, the tree
it makes, the installed binary serving from that prefix alone, and the installed unit's daemon
under a pretend service manager speaking the sd_notify protocol.

The build directory is the one of the binary under test (FB_BINARY). The proof that the installed
daemon reads the installed files, and none of the source or build trees' (which its binary still
names, as the fallback of a binary run from its build tree), is made on a relocated copy of the
install whose files are changed: the page, a DSFR style sheet and the dialog's first question
carry a marker only that copy has, and a broken communes index in that copy stops the daemon."""
import filecmp
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import pytest
from websockets.sync.client import connect

from conftest import BINARY, SANITIZER_MARKERS, Redis, free_port, wait_until

SOURCE = os.environ.get("FB_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.dirname(os.path.abspath(BINARY)) if BINARY else None
CMAKE = os.environ.get("FB_CMAKE") or shutil.which("cmake") or "cmake"
DSFR = os.path.join(SOURCE, "node_modules", "@gouvfr", "dsfr", "dist")
COMMUNE_QUESTION = "Dans quelle commune se trouve le site ?"
NEXT_QUESTION = "Pour qui faites-vous cette démarche ?"

# The build's web files (cmake/FbWebAssets.cmake), which cmake/FbPaths.cmake installs as they are.
WEB_BUILT = os.path.join(BUILD, "web") if BUILD else None


def install(prefix):
    r = subprocess.run([CMAKE, "--install", BUILD, "--prefix", str(prefix)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    """One install for the module, into a fresh temporary prefix (its real path, so that the
    daemon's resolved paths compare equal)."""
    p = tmp_path_factory.mktemp("prefix")
    install(p)
    return os.path.realpath(p)


def same_tree(a, b):
    """The files under a and b are the same names with the same bytes."""
    cmp = filecmp.dircmp(a, b)
    assert not cmp.left_only and not cmp.right_only, (a, cmp.left_only, cmp.right_only)
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    assert not mismatch and not errors, (a, mismatch, errors)
    for d in cmp.common_dirs:
        same_tree(os.path.join(a, d), os.path.join(b, d))


def sample_config(prefix, path, port, redis_address):
    """The installed sample configuration with server.listen and redis.address set, written to
    `path`: everything else is the documented default, the data paths included."""
    text = open(os.path.join(prefix, "etc/frichebot/frichebot.yaml.sample")).read()
    text, n = re.subn(r'(?m)^  listen: "127\.0\.0\.1:8080"$', f'  listen: "127.0.0.1:{port}"', text)
    assert n == 1
    text, n = re.subn(r'(?m)^  address: "tcp://127\.0\.0\.1:6379"$', f'  address: "{redis_address}"',
                      text)
    assert n == 1
    # A Redis started after the daemon is found quickly (the sample's backoff grows to 5 s).
    text, n = re.subn(r"(?m)^    delays_ms: \[100, 200, 500, 1000, 2000, 5000\]$",
                      "    delays_ms: [50, 100, 200]", text)
    assert n == 1
    with open(path, "w") as f:
        f.write(text)
    return path


class Installed:
    """An installed daemon run as a service would run it: its own binary and arguments, its
    working directory outside the source tree, its log in a file."""

    def __init__(self, argv, tmp, port, env=None):
        self.port = port
        self.log_path = os.path.join(tmp, f"daemon-{port}.log")
        self.log = open(self.log_path, "w")
        full_env = {k: v for k, v in os.environ.items()
                    if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        full_env.update(env or {})
        workdir = os.path.join(tmp, "state")
        os.makedirs(workdir, exist_ok=True)
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=full_env,
                                     cwd=workdir)

    def read_log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path, timeout=10):
        try:
            with urllib.request.urlopen(self.url(path), timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def healthz(self):
        """(status code, body's "status"), or None while nothing listens."""
        try:
            code, body = self.get("/healthz", timeout=5)
        except OSError:
            return None
        return code, json.loads(body)["status"]

    def wait_served(self):
        assert wait_until(lambda: self.healthz() == (200, "ok") or self.proc.poll() is not None,
                          30), self.read_log()
        assert self.proc.poll() is None, self.read_log()

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("daemon did not stop:\n" + self.read_log())
        self.log.close()
        log = self.read_log()
        for marker in SANITIZER_MARKERS:
            assert marker not in log, log
        return rc, log

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def data_paths(log):
    """The data the daemon says it uses (its start-up lines)."""
    m = re.search(r"data directory: (\S+) \(installed beside (\S+)\)", log)
    assert m, log
    d = re.search(r"data: dialog (\S+), communes index (\S+), web page (\S+), DSFR (\S+)", log)
    assert d, log
    return m.group(1), m.group(2), d.groups()


def converse(daemon, first_question=COMMUNE_QUESTION):
    """The web chat: the greeting ends with the commune question; "Montbard" is found in the
    communes index, so the next question follows. Returns the bot's texts."""
    texts = []
    with connect(daemon.url("/ws").replace("http://", "ws://"), open_timeout=10) as ws:
        def wait_bot(needle):
            end = time.monotonic() + 20
            while not any(needle in t for t in texts):
                assert time.monotonic() < end, f"no {needle!r} in {texts}"
                frame = json.loads(ws.recv(timeout=max(0.1, end - time.monotonic())))
                if frame["type"] == "msg" and frame["from"] == "bot":
                    texts.append(frame["text"])
        ws.send(json.dumps({"type": "hello", "token": None, "since": 0}))
        wait_bot(first_question)
        ws.send(json.dumps({"type": "message", "id": uuid.uuid4().hex, "text": "Montbard"}))
        wait_bot(NEXT_QUESTION)
    assert not any("Je n'ai pas trouvé cette commune" in t for t in texts), texts
    return texts


# -- the tree ------------------------------------------------------------------------------------


def test_install_tree(prefix):
    assert sorted(os.listdir(prefix)) == ["bin", "etc", "lib", "share"]
    assert os.listdir(os.path.join(prefix, "bin")) == ["frichebot"]
    assert os.access(os.path.join(prefix, "bin/frichebot"), os.X_OK)
    share = os.path.join(prefix, "share/frichebot")
    assert sorted(os.listdir(share)) == ["communes.fbgeo", "dialogs", "dsfr", "web"]
    same_tree(os.path.join(share, "dialogs"), os.path.join(SOURCE, "dialogs"))
    same_tree(os.path.join(share, "web"), os.path.join(WEB_BUILT, "static"))
    assert filecmp.cmp(os.path.join(share, "communes.fbgeo"),
                       os.path.join(BUILD, "data/communes.fbgeo"), shallow=False)
    dsfr = os.path.join(share, "dsfr")
    same_tree(dsfr, os.path.join(WEB_BUILT, "dsfr"))
    # Only the DSFR subset: one style sheet (with its .gz and .br), the favicons, the licence.
    assert sorted(n for n in os.listdir(dsfr) if not n.endswith((".gz", ".br"))) == \
        ["LICENSE.md", "dsfr.min.css", "favicon"]
    assert filecmp.cmp(os.path.join(dsfr, "LICENSE.md"), os.path.join(DSFR, "..", "LICENSE.md"),
                       shallow=False)
    # The web files and the DSFR subset weigh under 2 MB installed (the package's dist/ is 88 MB,
    # and the subset installed before the build made it was about 7 MB).
    weight = sum(os.path.getsize(os.path.join(r, n)) for d in ("web", "dsfr")
                 for r, _, files in os.walk(os.path.join(share, d)) for n in files)
    print(f"# installed web files and DSFR subset: {weight} bytes")
    assert weight < 2_000_000, weight
    # Each .gz and .br is at least as new as its file, or the server would take it for stale
    # and send the file uncompressed: the install must keep the build's modification times.
    variants = 0
    for d in ("web", "dsfr"):
        for root, _, files in os.walk(os.path.join(share, d)):
            for name in files:
                if name.endswith((".gz", ".br")):
                    variants += 1
                    path = os.path.join(root, name)
                    assert os.stat(path).st_mtime_ns >= os.stat(path[:-3]).st_mtime_ns, path
    assert variants > 10, variants
    assert filecmp.cmp(os.path.join(prefix, "etc/frichebot/frichebot.yaml.sample"),
                       os.path.join(SOURCE, "deploy/frichebot.yaml.sample"), shallow=False)
    assert os.path.isfile(os.path.join(prefix, "share/doc/frichebot/LICENSE"))
    assert filecmp.cmp(os.path.join(prefix, "lib/sysusers.d/frichebot.conf"),
                       os.path.join(SOURCE, "deploy/frichebot.sysusers"), shallow=False)
    assert os.path.isfile(os.path.join(prefix, "lib/systemd/system/frichebot.service"))
    # Only the binary may name the source or build tree (its fallback for a build-tree run).
    for root, _, files in os.walk(prefix):
        for name in files:
            path = os.path.join(root, name)
            if path == os.path.join(prefix, "bin/frichebot") or name.endswith((".woff", ".woff2",
                                                                                ".png", ".ico",
                                                                                ".fbgeo")):
                continue
            text = open(path, "rb").read()
            for tree in (SOURCE, BUILD):
                assert tree.encode() not in text, (path, tree)


def test_install_has_every_file_the_pages_use(prefix):
    """Every /assets/, /static/ and /dsfr/ file the installed pages, /stats and the roadmap page link, and
    every file their style sheets load, is installed: the DSFR subset of cmake/FbWebAssets.cmake
    is enough. The chat's pages link only hashed names under /assets/ (cached for a year)."""
    share = os.path.join(prefix, "share/frichebot")
    web = os.path.join(share, "web")
    where = {"assets": os.path.join(web, "assets"), "static": web, "dsfr": os.path.join(share, "dsfr")}
    pages = {n: open(os.path.join(web, n)).read() for n in os.listdir(web) if n.endswith(".html")}
    assert sorted(pages) == ["donnees-personnelles.html", "index.html"]
    for name, text in pages.items():
        files = re.findall(r'(?:href|src)="/(assets|dsfr|static)/([^"#]+)', text)
        assert not [f for f in files if f[0] == "dsfr"], (name, files)
        assert [f for f in files if f[0] == "assets" and f[1].startswith("dsfr.min.")], name
    # The pages the daemon writes itself (/stats, the roadmap page) and the design system's
    # pieces they share (daemon/common/dsfr.h).
    for src in ("daemon/features/stats.c", "daemon/daemon.c", "daemon/common/dsfr.h"):
        pages[src] = open(os.path.join(SOURCE, src)).read()
    linked = set()
    for text in pages.values():
        linked.update(re.findall(r'/(assets|dsfr|static)/([A-Za-z0-9_./-]+)', text))
    assert ("dsfr", "dsfr.min.css") in linked
    missing = []
    for kind, name in sorted(linked):
        path = os.path.join(where[kind], name)
        if not os.path.isfile(path):
            missing.append(f"/{kind}/{name}")
            continue
        if name.endswith(".css"):
            css = open(path, errors="replace").read()
            for ref in re.findall(r"url\(([^)]*)\)", css):
                ref = ref.strip("'\" ")
                if ref.startswith(("data:", "#")):
                    continue
                assert ref.startswith("/assets/"), (name, ref)
                if not os.path.isfile(os.path.join(where["assets"], ref[len("/assets/"):])):
                    missing.append(f"{name}: {ref}")
    assert not missing, missing


def test_installed_check_passes_on_the_installed_dialogs(prefix, tmp_path):
    r = subprocess.run([os.path.join(prefix, "bin/frichebot"), "check",
                        os.path.join(prefix, "share/frichebot/dialogs")],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_installed_help_names_the_data_directory(prefix, tmp_path):
    r = subprocess.run([os.path.join(prefix, "bin/frichebot"), "serve", "--help"],
                       capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert r.returncode == 0
    assert f"This binary's data directory: {prefix}/share/frichebot\n" in r.stdout, r.stdout


# -- serving from the prefix ---------------------------------------------------------------------


def test_installed_daemon_serves_from_its_prefix(prefix, redis, tmp_path):
    port = free_port()
    config = sample_config(prefix, str(tmp_path / "frichebot.yaml"), port, redis.address)
    d = Installed([os.path.join(prefix, "bin/frichebot"), "serve", "-c", config], str(tmp_path), port)
    try:
        d.wait_served()
        data_dir, exe, paths = data_paths(d.read_log())
        share = os.path.join(prefix, "share/frichebot")
        assert data_dir == share and exe == os.path.join(prefix, "bin/frichebot")
        assert paths == tuple(os.path.join(share, n) for n in
                              ("dialogs/friche.yaml", "communes.fbgeo", "web", "dsfr"))
        log = d.read_log()
        assert f"loaded from {share}/dialogs/friche.yaml" in log
        assert SOURCE not in log and BUILD not in log, log
        code, body = d.get("/")
        assert code == 200 and body == open(os.path.join(share, "web/index.html"), "rb").read()
        code, body = d.get("/static/chat.js")
        assert code == 200 and body == open(os.path.join(share, "web/chat.js"), "rb").read()
        code, body = d.get("/dsfr/dsfr.min.css")
        assert code == 200 and body == open(os.path.join(share, "dsfr/dsfr.min.css"), "rb").read()
        font = [n for n in os.listdir(os.path.join(share, "web/assets"))
                if re.fullmatch(r"Marianne-Regular\.[0-9a-f]{16}\.woff2", n)]
        assert len(font) == 1, font
        code, _ = d.get("/assets/" + font[0])
        assert code == 200
        # The page compressed at build time, as installed.
        req = urllib.request.Request(d.url("/"), headers={"Accept-Encoding": "br"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.headers["Content-Encoding"] == "br"
            assert r.read() == open(os.path.join(share, "web/index.html.br"), "rb").read()
        converse(d)
    finally:
        rc, log = d.stop()
    assert rc == 0 and "stopped cleanly (uv_loop_close=0)" in log, log


def test_installed_daemon_reads_no_source_or_build_file(prefix, redis, tmp_path):
    """A relocated copy of the install, with its own page, style sheet and dialog text: the
    daemon serves what only that copy has. Then, the copy's communes index broken, it refuses to
    start rather than read the build's."""
    copy = os.path.join(str(tmp_path), "relocated")
    shutil.copytree(prefix, copy, symlinks=True)
    share = os.path.join(copy, "share/frichebot")
    marker = uuid.uuid4().hex
    with open(os.path.join(share, "web/index.html"), "a") as f:
        f.write(f"<!-- {marker} -->\n")
    with open(os.path.join(share, "dsfr/dsfr.min.css"), "a") as f:
        f.write(f"/* {marker} */\n")
    dialog = os.path.join(share, "dialogs/friche.yaml")
    text = open(dialog).read()
    question = f"Dans quelle commune se trouve le site ({marker}) ?"
    assert text.count(COMMUNE_QUESTION) == 1
    with open(dialog, "w") as f:
        f.write(text.replace(COMMUNE_QUESTION, question))

    port = free_port()
    config = sample_config(copy, str(tmp_path / "frichebot.yaml"), port, redis.address)
    d = Installed([os.path.join(copy, "bin/frichebot"), "serve", "-c", config], str(tmp_path), port)
    try:
        d.wait_served()
        assert data_paths(d.read_log())[0] == share
        code, body = d.get("/")
        assert code == 200 and marker.encode() in body
        code, body = d.get("/dsfr/dsfr.min.css")
        assert code == 200 and marker.encode() in body
        # The copy's edited style sheet is newer than its .gz, which is therefore stale: the
        # edited file is sent, uncompressed, rather than the old compressed copy.
        req = urllib.request.Request(d.url("/dsfr/dsfr.min.css"), headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.headers.get("Content-Encoding") is None
            assert marker.encode() in r.read()
        converse(d, first_question=question)
    finally:
        rc, log = d.stop()
    assert rc == 0, log

    # The copy's communes index broken: the friche dialog asks for a commune, so the daemon
    # cannot serve it; reading the build's index instead would start it.
    with open(os.path.join(share, "communes.fbgeo"), "r+b") as f:
        f.truncate(100)
    port = free_port()
    config = sample_config(copy, str(tmp_path / "frichebot.yaml"), port, redis.address)
    d = Installed([os.path.join(copy, "bin/frichebot"), "serve", "-c", config], str(tmp_path), port)
    try:
        rc = d.proc.wait(30)
    except subprocess.TimeoutExpired:
        d.kill()
        raise AssertionError("the daemon started on a broken communes index:\n" + d.read_log())
    log = d.read_log()
    d.log.close()
    assert rc == 1, log
    assert f"communes index not loaded ({share}/communes.fbgeo)" in log, log


# -- systemd -------------------------------------------------------------------------------------


def unit_settings(prefix):
    """The installed unit's [Service] settings: name -> list of values."""
    settings = {}
    section = None
    for line in open(os.path.join(prefix, "lib/systemd/system/frichebot.service")):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        key, _, value = line.partition("=")
        if section == "[Service]":
            settings.setdefault(key, []).append(value)
    return settings


def test_installed_unit_names_the_prefix(prefix):
    s = unit_settings(prefix)
    assert s["Type"] == ["notify"]
    assert s["ExecStart"] == [f"{prefix}/bin/frichebot serve -c {prefix}/etc/frichebot/frichebot.yaml"]
    assert s["User"] == ["frichebot"] and s["Group"] == ["frichebot"] and "DynamicUser" not in s
    assert s["StateDirectory"] == ["frichebot"]
    assert int(s["WatchdogSec"][0]) > 0
    assert s["ProtectSystem"] == ["strict"] and s["NoNewPrivileges"] == ["yes"]
    assert s["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert "@system-service" in s["SystemCallFilter"] and s["LimitNOFILE"] == ["65536"]
    # The prefix is under /tmp: PrivateTmp= would hide it from the daemon.
    assert s["PrivateTmp"] == ["no"] and s["ProtectHome"] == ["yes"]
    # ConfigurationDirectory= only names /etc/frichebot: not this install's configuration.
    assert "ConfigurationDirectory" not in s


class Manager:
    """The service manager's end of $NOTIFY_SOCKET: a unix datagram socket."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages = []  # (monotonic time, {variable: value})

    def receive(self, timeout):
        """The next notification within timeout seconds, or None."""
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return None
        fields = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
        self.messages.append((time.monotonic(), fields))
        return fields

    def wait_for(self, variable, timeout=20, on_each=None):
        """Receives until a notification sets `variable`; returns it. Others are kept."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            assert left > 0, f"no {variable} within {timeout} s: {self.messages}"
            msg = self.receive(left)
            if msg is None:
                continue
            if on_each:
                on_each(msg)
            if variable in msg:
                return msg

    def close(self):
        self.sock.close()


def test_installed_unit_under_a_service_manager(prefix, tmp_path):
    """The unit's ExecStart with NOTIFY_SOCKET and WATCHDOG_USEC set, as systemd starts it:
    READY=1 comes only once the daemon listens and reaches Redis (when /healthz says ok), not
    while Redis is down; WATCHDOG=1 keeps coming; SIGHUP is RELOADING=1 then READY=1; SIGTERM
    is STOPPING=1 and a clean exit."""
    port = free_port()
    redis = Redis(tmp_path)  # not started yet: the daemon must wait for it
    sample_config(prefix, os.path.join(prefix, "etc/frichebot/frichebot.yaml"), port, redis.address)
    argv = shlex.split(unit_settings(prefix)["ExecStart"][0])
    assert argv[0] == os.path.join(prefix, "bin/frichebot")
    manager = Manager(str(tmp_path / "notify"))
    env = {"NOTIFY_SOCKET": manager.path, "WATCHDOG_USEC": "400000"}
    d = None
    try:
        started = time.monotonic()
        d = Installed(argv, str(tmp_path), port, env=env)
        # Listening, Redis down: /healthz says 503, and the manager hears no READY=1.
        assert wait_until(lambda: d.healthz() is not None or d.proc.poll() is not None, 30)
        assert d.healthz()[0] == 503, d.read_log()
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            msg = manager.receive(deadline - time.monotonic())
            assert msg is None or "READY" not in msg, (msg, d.read_log())
        watchdogs_before = sum("WATCHDOG" in m for _, m in manager.messages)
        assert watchdogs_before >= 2, manager.messages  # every 200 ms, Redis or not

        redis.start()
        ready = manager.wait_for("READY")
        assert ready["READY"] == "1" and f"port {port}" in ready.get("STATUS", ""), ready
        assert d.healthz() == (200, "ok"), d.read_log()
        assert "service manager notified: ready" in d.read_log()

        # The watchdog: WATCHDOG=1 every WATCHDOG_USEC/2, so it keeps coming, and never more
        # often than that. Counted from the daemon's start (not from gaps between receptions,
        # which a loaded machine may deliver in a burst): a daemon that pinged on every loop turn
        # would exceed the bound, one that stopped pinging would time out in wait_for.
        for _ in range(4):
            assert manager.wait_for("WATCHDOG", timeout=5)["WATCHDOG"] == "1"
        pings = sum(m.get("WATCHDOG") == "1" for _, m in manager.messages)
        assert pings <= (time.monotonic() - started) / 0.2 + 2, (pings, manager.messages)

        # SIGHUP: RELOADING=1, then READY=1 again.
        d.proc.send_signal(signal.SIGHUP)
        reloading = manager.wait_for("RELOADING")
        assert reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0
        assert manager.wait_for("READY")["READY"] == "1"

        # SIGTERM: STOPPING=1 as the drain starts, then a clean exit.
        d.proc.send_signal(signal.SIGTERM)
        stopping = manager.wait_for("STOPPING")
        assert stopping["STOPPING"] == "1" and "draining" in stopping.get("STATUS", "")
        rc, log = d.stop()
        assert rc == 0 and "stopped cleanly (uv_loop_close=0)" in log, log
        d = None
    finally:
        if d is not None:
            d.kill()
        manager.close()
        redis.stop()
        os.unlink(os.path.join(prefix, "etc/frichebot/frichebot.yaml"))
