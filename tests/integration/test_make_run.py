# SPDX-License-Identifier: MIT
"""`make run`, as the README shows it: installs what is missing, builds, starts a private Redis,
runs the daemon on the embedded default, prints where to go; Ctrl-C stops everything cleanly.
And deploy/run.sh (what `make run` runs) with a configuration file of one's own: the file's
server.listen wins, the banner shows where the daemon really listens, and a port already taken
is named in the error."""
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

from websockets.sync.client import connect

from conftest import BINARY, Daemon, free_port, wait_until

SOURCE = os.environ.get("FB_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))


def test_make_run_serves_healthz_with_a_private_redis(tmp_path):
    port = free_port()
    env = dict(os.environ, FRICHEBOT_LISTEN=f"127.0.0.1:{port}", FRICHEBOT_RUNDIR=str(tmp_path / "run"))
    env.pop("FRICHEBOT_REDIS", None)
    env.pop("FRICHEBOT_CONFIG", None)
    out = open(tmp_path / "make-run.log", "w")
    # Its own process group, so that the test can send "Ctrl-C" to all of it as a terminal would.
    # Its own build directory: the developer's build/ is left alone.
    proc = subprocess.Popen(["make", "run", f"BUILD={tmp_path / 'build'}"], cwd=SOURCE, env=env,
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    log = lambda: (tmp_path / "make-run.log").read_text(errors="replace")
    try:
        def healthy():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    return r.status == 200 and json.loads(r.read())["status"] == "ok"
            except OSError:
                return False
        # Building from scratch takes a while on a fresh clone.
        assert wait_until(healthy, timeout=600, step=0.5), log()
        text = log()
        assert f"open http://127.0.0.1:{port}/" in text
        assert "private Redis on unix:" in text
        assert os.path.exists(tmp_path / "run" / "redis.sock")
        # The web chat is the embedded default: the page, and the friche dialog over the websocket.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            assert r.status == 200 and "text/html" in r.headers["Content-Type"]
            assert "<html" in r.read().decode()
        with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10) as ws:
            ws.send(json.dumps({"type": "hello", "token": None, "since": 0}))
            greeting = None
            while greeting is None:
                frame = json.loads(ws.recv(timeout=30))
                if frame["type"] == "msg" and frame["from"] == "bot":
                    greeting = frame["text"]
            assert "friche" in greeting and "conseiller" in greeting, greeting
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)
        out.close()
    text = log()
    # make itself reports the interrupt; what matters is that the daemon stopped cleanly.
    assert "second signal" not in text, text
    assert "stopped cleanly (uv_loop_close=0)" in text
    # The private Redis went away with the daemon.
    assert wait_until(lambda: not os.path.exists(tmp_path / "run" / "redis.sock"), 10), text


def run_sh(tmp_path, config_path, name):
    """deploy/run.sh on the binary under test with FRICHEBOT_CONFIG, nothing else set; its own
    process group (Ctrl-C goes to all of it, as from a terminal). Returns (process, log reader)."""
    env = dict(os.environ, FRICHEBOT_CONFIG=str(config_path), FRICHEBOT_RUNDIR=str(tmp_path / "run"))
    for var in ("FRICHEBOT_LISTEN", "FRICHEBOT_LOG", "FRICHEBOT_REDIS"):
        env.pop(var, None)
    path = tmp_path / name
    out = open(path, "w")
    proc = subprocess.Popen(["sh", os.path.join(SOURCE, "deploy", "run.sh"), BINARY], cwd=SOURCE, env=env,
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    out.close()
    return proc, lambda: path.read_text(errors="replace")


def test_run_sh_the_configuration_file_wins(redis, tmp_path):
    """server.listen of the file named by FRICHEBOT_CONFIG is where the daemon listens (run.sh used
    to pass --listen 127.0.0.1:8080 over it), and the banner says so."""
    d = Daemon(tmp_path, redis.address)
    d.write_config()
    proc, log = run_sh(tmp_path, d.config_path, "run.log")
    try:
        def healthy():
            try:
                status, health = d.json("/healthz")
                return status == 200 and health["status"] == "ok"
            except OSError:
                return False
        assert wait_until(healthy, 30, 0.1), log()
        assert wait_until(lambda: "frichebot is starting" in log(), 10), log()
        banner = [line for line in log().splitlines() if "open http://" in line]
        assert banner == [f"  frichebot is starting: open http://127.0.0.1:{d.port}/"], log()
        assert f"health: http://127.0.0.1:{d.port}/healthz" in log()
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        rc = proc.wait(60)
    assert rc == 0, log()
    assert "stopped cleanly (uv_loop_close=0)" in log(), log()


def test_run_sh_port_taken_names_the_address(redis, tmp_path):
    """The configured port is taken: the daemon stops at once and says which address it could not
    listen on and why, not "cannot connect"; no banner promises an address that does not serve."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        d = Daemon(tmp_path, redis.address, listen=f"127.0.0.1:{port}")
        d.write_config()
        proc, log = run_sh(tmp_path, d.config_path, "run.log")
        try:
            rc = proc.wait(30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    text = log()
    assert rc == 1, text
    assert f"start-up failed: cannot listen on 127.0.0.1:{port}: Address already in use" in text, text
    assert "cannot connect" not in text and "open http://" not in text, text
    assert "shutdown deadline reached" not in text, text
