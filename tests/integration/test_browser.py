# SPDX-License-Identifier: MIT
"""The web chat in a real headless Chromium (tests/browser/webchat.mjs, node + playwright-core),
against the real daemon and a real Redis: greeting, answers by click and by typing, reload,
connection loss (the daemon is stopped and restarted under the page), a Redis outage, screenshots,
axe-core, "oublier mes données".

The node script drives the page; when it needs the daemon or Redis stopped or started it prints
"@@stop-daemon", "@@start-daemon", "@@stop-redis" or "@@start-redis", and this test answers on
its stdin once done. The screenshots
go to the build directory (next to the daemon binary, in test-artifacts/browser/, or
$FB_ARTIFACTS_DIR), and their paths are printed."""
import os
import select
import shutil
import subprocess
import time

from conftest import BINARY

SOURCE = os.environ.get("FB_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
SCRIPT = os.path.join(SOURCE, "tests", "browser", "webchat.mjs")
# Bounds a hung browser, not a measurement: the script's own waits are 30 s each.
OVERALL_S = 600


def artifacts_dir():
    d = os.environ.get("FB_ARTIFACTS_DIR")
    if not d:
        d = os.path.join(os.path.dirname(os.path.abspath(BINARY)), "test-artifacts", "browser")
    os.makedirs(d, exist_ok=True)
    return d


def run_webchat(url, out, on_request):
    """Runs webchat.mjs against url; on_request(name) handles each "@@name" line and returns the
    answer line. Returns (exit status, the script's output)."""
    node = shutil.which("node")
    assert node, "node is not installed: run deploy/install-deps.sh test"
    assert os.path.exists(os.path.join(SOURCE, "node_modules", "playwright-core")), \
        "node_modules/playwright-core is missing: run deploy/install-deps.sh test"
    proc = subprocess.Popen([node, SCRIPT, "--url", url, "--out", out, "--control"], cwd=SOURCE,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines = []
    pending = b""
    deadline = time.monotonic() + OVERALL_S
    fd = proc.stdout.fileno()
    try:
        done = False
        while not done:
            left = deadline - time.monotonic()
            if left <= 0:
                proc.kill()
                lines.append("# test_browser.py: the browser test did not finish; killed")
                break
            # Raw reads of the pipe: a buffered reader could hold a request line that select()
            # would then never report.
            ready, _, _ = select.select([fd], [], [], min(left, 5))
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                done = True
                chunk = b"\n" if pending else b""
            pending += chunk
            while b"\n" in pending:
                raw, pending = pending.split(b"\n", 1)
                line = raw.decode("utf-8", "replace")
                lines.append(line)
                if line.startswith("@@"):
                    answer = on_request(line[2:])
                    proc.stdin.write(answer + "\n")
                    proc.stdin.flush()
        rc = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return rc, "\n".join(lines)


def sample_dialog_with_a_link(tmp_path):
    """The sample dialog (with its catalogues), its last message given a link, so that the page
    shows every kind of markup the engine emits: paragraphs, line breaks, bold, lists, links."""
    dst = tmp_path / "dialogs"
    shutil.copytree(os.path.join(SOURCE, "dialogs"), dst)
    dialog = dst / "exemple.yaml"
    text = dialog.read_text()
    old = "Voici votre feuille de route :"
    assert old in text, "the sample dialog changed: update webchat.mjs's WALK and this function"
    dialog.write_text(text.replace(
        old, "Voici votre feuille de route (voir aussi [le guide](https://www.example.org/guide-friches)) :"))
    return dialog


def test_webchat_in_chromium(redis, make_daemon, tmp_path):
    dialog = sample_dialog_with_a_link(tmp_path)
    # idle_timeout_s: conftest's 2 s would make the page ping every second (it pings at half the
    # server's idle timeout); 60 s keeps the log readable, the page then pings every 25 s.
    # write_deadline_ms: during the Redis outage, a message is refused (`unavailable`) after
    # 0.6 s instead of the default 30 s.
    daemon = make_daemon(redis.address, idle_timeout_s=60, extra_redis="  write_deadline_ms: 600",
                         extra=f'dialogs:\n  path: "{dialog}"\n')

    def on_request(name):
        if name == "stop-daemon":
            rc, log = daemon.stop()
            daemon.check_clean(rc, log)
            return "stopped"
        if name == "start-daemon":
            daemon.start()
            return "started"
        if name == "stop-redis":
            # Redis goes away saving its data, as a restart by its service manager would.
            redis.cli("SHUTDOWN", "SAVE")
            redis.proc.wait(10)
            redis.proc = None
            return "stopped"
        if name == "start-redis":
            redis.start()
            return "started"
        return "unknown request " + name

    out = artifacts_dir()
    rc, output = run_webchat(daemon.url("/"), out, on_request)
    print(output)
    assert rc == 0, f"webchat.mjs failed (exit status {rc}):\n{output}\n--- daemon log ---\n{daemon.read_log()}"
    assert "not ok" not in output, output
    for name in ("webchat-1280.png", "webchat-360.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
