# SPDX-License-Identifier: MIT
"""Fixtures of the integration suite: a real redis-server and the real frichebot daemon, each on
random loopback ports, started per test and stopped by the harness.

Every daemon run is checked when it stops: exit status 0, the clean-exit line
"stopped cleanly (uv_loop_close=0)" in its log, and no AddressSanitizer / UBSan / LeakSanitizer
report in its stderr (Redis check_sanitizer_errors)."""
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from ports import free_port  # noqa: F401 (the tests import it from here)

BINARY = os.environ.get("FB_BINARY") or shutil.which("frichebot")
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer")


def wait_until(pred, timeout=10.0, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return None


# FB_TEST_REDIS_CLUSTER=1: every Redis of the suite is a single-node Redis Cluster, which refuses
# the calls whose keys are not all in one hash slot (docs/internals/REDIS.md, "Redis Cluster").
CLUSTER = os.environ.get("FB_TEST_REDIS_CLUSTER", "") not in ("", "0")


class Redis:
    """A throwaway redis-server on a random port, with a unix socket in its own directory; with
    AOF (appendonly yes, appendfsync everysec, or `fsync`) as a deployment should run it, unless
    aof=False; a single-node cluster with FB_TEST_REDIS_CLUSTER=1."""

    def __init__(self, tmp_path, aof=True, fsync="everysec"):
        self.dir = tmp_path / "redis"
        self.dir.mkdir(exist_ok=True)
        self.sock = str(self.dir / "redis.sock")
        self.port = free_port()
        self.proc = None
        self.password = None
        self.aof = aof
        self.fsync = fsync

    def start(self):
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--unixsocket", self.sock, "--unixsocketperm", "700", "--dir", str(self.dir),
                "--save", "", "--appendonly", "yes" if self.aof else "no",
                "--appendfsync", self.fsync, "--loglevel", "warning"]
        if self.password:
            args += ["--requirepass", self.password]
        if CLUSTER:
            # the cluster bus on a free port: the default, port + 10000, may be taken or > 65535
            args += ["--cluster-enabled", "yes", "--cluster-config-file", str(self.dir / "nodes.conf"),
                     "--cluster-port", str(free_port())]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        assert wait_until(lambda: self.ping(), 10), "redis-server did not start"
        if CLUSTER:
            # One node serving every slot: it refuses a call whose keys are in several slots
            # (CROSSSLOT) and a script that touches a key in another slot than its declared ones.
            # A restart keeps the slots in nodes.conf; ADDSLOTSRANGE then answers an error.
            self.cli("CLUSTER", "ADDSLOTSRANGE", "0", "16383")
            assert wait_until(lambda: "cluster_state:ok" in self.cli("CLUSTER", "INFO"), 10), \
                "the single-node cluster did not become ok"

    def cli(self, *args):
        cmd = ["redis-cli", "-p", str(self.port)]
        if self.password:
            cmd += ["--no-auth-warning", "-a", self.password]
        return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=10).stdout.strip()

    def ping(self):
        try:
            return self.cli("PING") == "PONG"
        except subprocess.TimeoutExpired:
            return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    @property
    def address(self):
        return f"tcp://127.0.0.1:{self.port}"


class Daemon:
    """The real daemon, with a generated configuration file."""

    def __init__(self, tmp_path, redis_address, **overrides):
        self.tmp = tmp_path
        self.port = free_port()
        self.log_path = tmp_path / "daemon.log"
        self.config_path = tmp_path / "frichebot.yaml"
        self.settings = {
            "listen": f"127.0.0.1:{self.port}",
            "redis": redis_address,
            "max_body_bytes": 65536,
            "max_header_bytes": 8192,
            "idle_timeout_s": 2,
            "keepalive_timeout_s": 2,
            "shutdown_deadline_s": 5,
            "command_timeout_ms": 2000,
            "log": "info",
            "extra_redis": "",
            "extra": "",  # raw YAML appended to the file: more sections (dialogs, router, web...)
            "server_extra": "",  # raw YAML lines appended to the server section
        }
        self.settings.update(overrides)
        self.proc = None
        self.extra_args = []
        self.nofile = None  # RLIMIT_NOFILE (soft and hard) to start the daemon with

    def write_config(self):
        s = self.settings
        self.config_path.write_text(f"""\
server:
  listen: "{s['listen']}"
  max_body_bytes: {s['max_body_bytes']}
  max_header_bytes: {s['max_header_bytes']}
  idle_timeout_s: {s['idle_timeout_s']}
  keepalive_timeout_s: {s['keepalive_timeout_s']}
  shutdown_deadline_s: {s['shutdown_deadline_s']}
{s['server_extra']}
redis:
  address: "{s['redis']}"
  command_timeout_ms: {s['command_timeout_ms']}
  connect_timeout_ms: 1000
  reconnect:
    delays_ms: [50, 100, 200]
    jitter_percent: 0
{s['extra_redis']}
log:
  level: "{s['log']}"
{s['extra']}
""")

    def start(self, wait_ready=True, env=None):
        self.write_config()
        self.log = open(self.log_path, "w")
        full_env = dict(os.environ)
        full_env.update(env or {})
        preexec = None
        if self.nofile:
            n = self.nofile
            preexec = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))  # noqa: E731
        self.proc = subprocess.Popen([BINARY, "serve", "-c", str(self.config_path)] + self.extra_args,
                                     stdout=self.log, stderr=subprocess.STDOUT, env=full_env,
                                     preexec_fn=preexec)
        if wait_ready:
            assert wait_until(lambda: "ready" in self.read_log() or self.proc.poll() is not None, 20)
            assert self.proc.poll() is None, self.read_log()
        return self

    def read_log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_since(self, mark):
        """The log written after `mark` (a length of read_log()), for checking what one step
        logged."""
        return self.read_log()[mark:]

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def request(self, path, method="GET", body=None, headers=None, timeout=10):
        req = urllib.request.Request(self.url(path), data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def json(self, path):
        status, headers, body = self.request(path)
        return status, json.loads(body)

    def send(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Stops the daemon and returns (exit status, log)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("daemon did not stop within %ss:\n%s" % (timeout, self.read_log()))
        self.log.close()
        return rc, self.read_log()

    def check_clean(self, rc, log):
        for marker in SANITIZER_MARKERS:
            assert marker not in log, f"sanitizer report in the daemon's log:\n{log}"
        assert rc == 0, f"exit status {rc}:\n{log}"
        assert "stopped cleanly (uv_loop_close=0)" in log, log


@pytest.fixture
def redis(tmp_path):
    r = Redis(tmp_path)
    r.start()
    yield r
    r.stop()


VOLATILE = "  allow_volatile: true"  # extra_redis of a daemon that must accept a volatile_redis


@pytest.fixture
def volatile_redis(tmp_path):
    """A redis-server without AOF (what it keeps over a crash is its last snapshot, if one was
    asked for): for the tests of a Redis that forgets. A daemon refuses it unless its
    configuration says redis.allow_volatile: true (extra_redis=VOLATILE)."""
    r = Redis(tmp_path, aof=False)
    r.start()
    yield r
    r.stop()


@pytest.fixture
def make_daemon(tmp_path):
    """Factory: make_daemon(redis_address, **settings) -> started Daemon; stopped and checked
    at teardown unless the test stopped it itself."""
    made = []

    def factory(redis_address, start=True, **overrides):
        d = Daemon(tmp_path, redis_address, **overrides)
        made.append(d)
        if start:
            d.start()
        return d

    yield factory
    for d in made:
        if d.proc is not None and d.proc.returncode is None and d.proc.poll() is None:
            rc, log = d.stop()
            d.check_clean(rc, log)
        elif d.proc is not None:
            log = d.read_log()
            for marker in SANITIZER_MARKERS:
                assert marker not in log, f"sanitizer report in the daemon's log:\n{log}"


def redis_connected(d):
    """True once the daemon logged its Redis connection ("ready" means serving HTTP, which comes
    first: until the connection is up, /healthz rightly answers 503)."""
    return re.search(r"\[redis\|[^\]]*\] connected", d.read_log()) is not None


@pytest.fixture
def daemon(redis, make_daemon):
    """A started daemon whose Redis connection is up."""
    d = make_daemon(redis.address)
    assert wait_until(lambda: redis_connected(d), 20), d.read_log()
    return d


# -- Matrix: a real Synapse (tests/integration/synapse.py) -------------------------------------

SYNAPSE_TIMINGS = []  # (what, seconds), shown at the end of the run


@pytest.fixture(scope="session")
def synapse(tmp_path_factory):
    """One Synapse for the whole run (bot mode tests): started on first use, stopped at the end.
    Its logs are in the pytest temporary directory (synapse0/homeserver.log)."""
    from synapse import Synapse
    s = Synapse(tmp_path_factory.mktemp("synapse"))
    s.start()
    SYNAPSE_TIMINGS.append(("Synapse start (bot mode)", s.start_seconds))
    yield s
    s.stop()


def pytest_terminal_summary(terminalreporter):
    for what, seconds in SYNAPSE_TIMINGS:
        terminalreporter.write_line(f"{what}: {seconds:.1f} s")
