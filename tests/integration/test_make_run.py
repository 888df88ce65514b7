# SPDX-License-Identifier: MIT
"""`make run`, as the README shows it: installs what is missing, builds, starts a private Redis,
runs the daemon on the embedded default, prints where to go; Ctrl-C stops everything cleanly."""
import json
import os
import signal
import subprocess
import time
import urllib.request

from websockets.sync.client import connect

from conftest import free_port, wait_until

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
