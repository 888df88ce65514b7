# SPDX-License-Identifier: MIT
"""Process life: the command line, configuration errors, secrets, signals and the drain."""
import json
import os
import signal
import subprocess
import threading

from conftest import BINARY, free_port, wait_until


def in_background(d, path, timeout=30):
    """Starts a request in a thread; a request the daemon abandons on shutdown may fail."""
    def go():
        try:
            d.request(path, timeout=timeout)
        except OSError:
            pass
    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


def wait_in_flight(d):
    """Waits until the daemon has read the request (its http debug line), so that the signal
    that follows really finds work in flight; a fixed sleep races a loaded machine."""
    assert wait_until(lambda: "request /healthz" in d.read_log(), 20), d.read_log()


def run(*args, env=None):
    return subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=30, env=env)


def test_cli_usage_errors_exit_2():
    r = run()
    assert r.returncode == 2 and "usage: frichebot" in r.stderr
    r = run("frobnicate")
    assert r.returncode == 2
    assert "unknown command 'frobnicate'" in r.stderr and "frichebot --help" in r.stderr
    r = run("--bogus")
    assert r.returncode == 2 and "unknown option '--bogus'" in r.stderr
    r = run("serve", "--bogus")
    assert r.returncode == 2 and "unknown option '--bogus'" in r.stderr
    r = run("serve", "-c")
    assert r.returncode == 2 and "needs an argument" in r.stderr
    r = run("serve", "--listen", "nonsense")
    assert r.returncode == 2 and "--listen expects HOST:PORT" in r.stderr
    r = run("version", "extra")
    assert r.returncode == 2


def test_cli_help_and_version():
    for args in (["--help"], ["serve", "--help"], ["version", "--help"], ["help", "serve"]):
        r = run(*args)
        assert r.returncode == 0 and r.stdout.startswith("usage: frichebot"), args
    r = run("version")
    assert r.returncode == 0
    assert r.stdout.startswith("frichebot ")
    assert "libuv" in r.stdout and "libwebsockets" in r.stdout and "hiredis" in r.stdout


def test_check_config_of_the_embedded_default():
    r = run("serve", "--check-config")
    assert r.returncode == 0, r.stderr
    assert "configuration OK" in r.stdout


def test_check_config_checks_the_advisors_rooms(tmp_path):
    """--check-config reads escalation.rooms as the start would: a room id or an alias is fine,
    anything else is refused with the key named, as the start refuses it (not blamed on the
    dialog)."""
    port = free_port()
    good = tmp_path / "good.yaml"
    good.write_text(f'server:\n  listen: "127.0.0.1:{port}"\nredis:\n  address: "tcp://127.0.0.1:1"\n'
                    'escalation:\n  enabled: true\n  rooms: ["52 #conseillers:example.org", "* !abc:example.org"]\n')
    r = run("serve", "-c", str(good), "--check-config")
    assert r.returncode == 0 and "configuration OK" in r.stdout, r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(f'server:\n  listen: "127.0.0.1:{port}"\nredis:\n  address: "tcp://127.0.0.1:1"\n'
                   'escalation:\n  enabled: true\n  rooms: ["52 conseillers"]\n')
    r = run("serve", "-c", str(bad), "--check-config")
    assert r.returncode == 1 and "escalation.rooms[0]" in r.stderr, (r.stdout, r.stderr)
    assert "configuration OK" not in r.stdout
    r = run("serve", "-c", str(bad))
    assert r.returncode == 1 and "escalation.rooms[0]" in r.stderr, r.stderr
    assert "cannot be served" not in r.stderr and "escalation cannot start" in r.stderr


def test_broken_config_reports_every_error_with_position(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text('server:\n  listen: "127.0.0.1:8080"\n  idle_timeout_s: "soon"\n  colour: blue\nredis:\n  password: "hunter2"\n')
    r = run("serve", "-c", str(bad))
    assert r.returncode == 1
    lines = [l for l in r.stderr.splitlines() if l.startswith(str(bad) + ":")]
    assert len(lines) >= 3, r.stderr
    assert any(":3:" in l and "idle_timeout_s" in l for l in lines), r.stderr
    assert any(":4:" in l and "colour" in l for l in lines), r.stderr
    assert any(":6:" in l and "secret" in l for l in lines), r.stderr
    assert "hunter2" not in r.stderr


def test_redis_password_from_file_is_used_and_never_logged(tmp_path, make_daemon):
    from conftest import Redis
    secret = "s3cr3t-Pa55word-for-test"
    r = Redis(tmp_path)
    r.password = secret
    r.start()
    try:
        pw = tmp_path / "redis.pw"
        pw.write_text(secret + "\n")
        pw.chmod(0o600)
        d = make_daemon(r.address, start=False, log="debug",
                        extra_redis=f'  password_file: "{pw}"')
        d.start()
        status, body = d.json("/healthz")
        assert status == 200 and body["redis"]["connected"], d.read_log()
        rc, log = d.stop()
        d.check_clean(rc, log)
        assert secret not in log
    finally:
        r.stop()


def test_redis_password_from_environment(tmp_path, make_daemon):
    from conftest import Redis
    secret = "env-secret-0123456789"
    r = Redis(tmp_path)
    r.password = secret
    r.start()
    try:
        d = make_daemon(r.address, start=False, log="debug")
        d.start(env={"FRICHEBOT_REDIS_PASSWORD": secret})
        assert d.json("/healthz")[0] == 200, d.read_log()
        rc, log = d.stop()
        d.check_clean(rc, log)
        assert secret not in log
    finally:
        r.stop()


def test_sigterm_when_idle_stops_cleanly(daemon):
    assert daemon.request("/healthz")[0] == 200
    rc, log = daemon.stop(signal.SIGTERM)
    daemon.check_clean(rc, log)
    assert "drained: nothing in flight" in log


def test_sigint_stops_cleanly(daemon):
    rc, log = daemon.stop(signal.SIGINT)
    daemon.check_clean(rc, log)


def test_sigterm_with_work_in_flight_drains_then_stops_cleanly(redis, make_daemon):
    d = make_daemon(redis.address, shutdown_deadline_s=10, command_timeout_ms=5000, log="info,http=debug")
    # Pause Redis so the PING behind /healthz stays in flight while the signal arrives; longer
    # than the idle timeout (2 s): a request being worked on is not an idle connection.
    redis.cli("CLIENT", "PAUSE", "3000")
    result = {}

    def slow_health():
        try:
            result["answer"] = d.request("/healthz", timeout=20)
        except Exception as e:  # reported below with the daemon's log
            result["error"] = repr(e)

    t = threading.Thread(target=slow_health)
    t.start()
    wait_in_flight(d)
    d.send(signal.SIGTERM)
    # While draining, a new request is refused with 503 instead of being taken on.
    assert wait_until(lambda: "draining for up to" in d.read_log(), 5)
    status, headers, body = d.request("/healthz")
    assert status == 503 and json.loads(body)["error"] == "shutting_down"
    t.join(20)
    if "answer" not in result:
        print(d.read_log())  # shown in full by pytest under "Captured stdout"
    assert "answer" in result, result.get("error")
    status, headers, body = result["answer"]
    # The in-flight request was answered, not dropped (503 because the daemon is draining).
    assert status in (200, 503)
    assert json.loads(body)["redis"]["ping"] == "ok"
    rc = d.proc.wait(20)
    log = d.read_log()
    d.log.close()
    d.check_clean(rc, log)
    assert "drained: nothing in flight" in log


def test_shutdown_deadline_abandons_stuck_work_and_still_closes_cleanly(redis, make_daemon):
    d = make_daemon(redis.address, shutdown_deadline_s=1, command_timeout_ms=10000, log="info,http=debug")
    redis.cli("CLIENT", "PAUSE", "6000")
    in_background(d, "/healthz", timeout=20)
    wait_in_flight(d)
    d.send(signal.SIGTERM)
    rc = d.proc.wait(20)
    log = d.read_log()
    d.log.close()
    d.check_clean(rc, log)
    assert "shutdown deadline reached: abandoning 1 request(s), 1 Redis command(s)" in log
    redis.cli("CLIENT", "UNPAUSE")


def test_second_signal_cuts_the_drain_short(redis, make_daemon):
    d = make_daemon(redis.address, shutdown_deadline_s=30, command_timeout_ms=20000, log="info,http=debug")
    redis.cli("CLIENT", "PAUSE", "8000")
    in_background(d, "/healthz")
    wait_in_flight(d)
    d.send(signal.SIGTERM)
    assert wait_until(lambda: "draining for up to" in d.read_log(), 5)
    d.send(signal.SIGINT)
    rc = d.proc.wait(20)
    log = d.read_log()
    d.log.close()
    d.check_clean(rc, log)
    assert "second signal" in log
    redis.cli("CLIENT", "UNPAUSE")


def test_sighup_reloads_and_keeps_serving(daemon):
    daemon.send(signal.SIGHUP)
    assert wait_until(lambda: "SIGHUP: reloading" in daemon.read_log(), 5)
    assert daemon.request("/healthz")[0] == 200
    # A broken file on reload is refused; the daemon keeps running.
    daemon.config_path.write_text("server: [broken\n")
    daemon.send(signal.SIGHUP)
    assert wait_until(lambda: "keeping the running configuration" in daemon.read_log(), 5)
    assert daemon.request("/healthz")[0] == 200


def test_json_log_format(redis, make_daemon):
    d = make_daemon(redis.address, start=False)
    d.extra_args = ["--log-format", "json"]
    d.start()
    d.request("/healthz")
    rc, log = d.stop()
    for line in log.splitlines():
        obj = json.loads(line)
        assert set(obj) == {"ts", "level", "sub", "msg"}
    d.check_clean(rc, log)


def test_port_in_use_fails_with_clear_error(redis, make_daemon):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        d = make_daemon(redis.address, start=False, listen=f"127.0.0.1:{port}")
        d.start(wait_ready=False)
        rc = d.proc.wait(20)
        log = d.read_log()
        d.log.close()
        assert rc == 1
        assert f"cannot listen on 127.0.0.1:{port}" in log
        # The last word names the address and the reason too, not "cannot connect"; nothing was
        # served, so nothing is said to be abandoned.
        assert f"start-up failed: cannot listen on 127.0.0.1:{port}: Address already in use" in log, log
        assert "cannot connect" not in log and "abandoning" not in log, log
