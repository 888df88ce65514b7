# SPDX-License-Identifier: MIT
"""Redis that forgets (docs/internals/REDIS.md, "Persistence"): at every connection the daemon reads
Redis's persistence settings and shows them on /healthz and /metrics; a Redis without AOF is
refused at start (exit status 1, an error naming the settings to change) unless the configuration
says redis.allow_volatile: true (then a warning); a Redis that comes back empty after a reconnect
is an error, /healthz degraded and a counter, and nothing is sent twice. Real redis-servers, with
and without AOF."""
import json
import re
import signal
import subprocess
import time

from conftest import BINARY, VOLATILE, Redis, redis_connected, wait_until

AOF_OFF = "persistence: AOF is off (appendonly no)"
LOST = "Redis lost its data"
REFUSED = "refusing to start: Redis does not persist with AOF"
DEPRECATED = "redis.require_aof is deprecated and ignored"


def metric(daemon, name):
    status, _, body = daemon.request("/metrics")
    assert status == 200
    m = re.search(rf"^{name} (\S+)$", body.decode(), re.M)
    assert m, body.decode()
    return float(m.group(1))


def checked(daemon, n=1):
    """True once the daemon's persistence check has run n times (one line per connection)."""
    return len(re.findall(r"\] persistence: ", daemon.read_log())) >= n


def refused(d):
    """Starts `d` (not started yet), which must stop by itself: returns its log."""
    d.start(wait_ready=False)
    rc = d.proc.wait(30)
    log = d.read_log()
    d.log.close()
    assert rc == 1, log
    assert "stopped cleanly (uv_loop_close=0)" in log, log
    return log


def test_redis_with_aof_is_durable(daemon):
    """The tests' Redis runs as a deployment should (conftest: appendonly yes, appendfsync
    everysec): no warning, and both endpoints say so."""
    assert wait_until(lambda: checked(daemon), 10), daemon.read_log()
    status, health = daemon.json("/healthz")
    assert status == 200, health
    assert health["redis"]["aof"] is True and health["redis"]["appendfsync"] == "everysec"
    assert health["redis"]["persistence"] == "durable" and health["redis"]["data_losses"] == 0
    assert metric(daemon, "frichebot_redis_aof_enabled") == 1
    assert metric(daemon, "frichebot_redis_durable") == 1
    assert "persistence: AOF on, appendfsync everysec" in daemon.read_log()
    # no persistence warning (a loaded machine may log a connect timeout before the first try)
    assert not re.search(r"warn \[redis\].*persistence", daemon.read_log()), daemon.read_log()


def test_redis_without_aof_is_refused(volatile_redis, make_daemon):
    """The default: a Redis without AOF is refused at start, exit status 1, with an error naming
    the settings to change and the way out for a throw-away setup."""
    log = refused(make_daemon(volatile_redis.address, start=False))
    line = next(line for line in log.splitlines() if REFUSED in line)
    assert "err [redis]" in line, line
    for needle in ("appendonly no", "'appendonly yes'", "'appendfsync everysec'", "CONFIG REWRITE",
                   "'allow_volatile: true'"):
        assert needle in line, line


def test_appendfsync_no_is_refused(tmp_path, make_daemon):
    """AOF on but appendfsync no (the OS decides when to write: a machine crash loses up to about
    30 s) is not durable either: refused, naming appendfsync."""
    r = Redis(tmp_path, fsync="no")
    r.start()
    try:
        log = refused(make_daemon(r.address, start=False))
        assert REFUSED in log and "appendonly yes, appendfsync no" in log, log
    finally:
        r.stop()


def test_allow_volatile_starts_with_a_warning(volatile_redis, make_daemon):
    """redis.allow_volatile: true (throw-away setups): a warning naming what is lost and the
    settings to change; /healthz stays ok and shows it, /metrics too."""
    d = make_daemon(volatile_redis.address, extra_redis=VOLATILE)
    assert wait_until(lambda: checked(d), 10), d.read_log()
    log = d.read_log()
    warning = next(line for line in log.splitlines() if AOF_OFF in line)
    assert "warn [redis]" in warning
    for needle in ("appendonly yes", "appendfsync everysec", "conversations", "lost"):
        assert needle in warning, warning
    status, health = d.json("/healthz")
    assert status == 200, health
    assert health["redis"]["aof"] is False and health["redis"]["persistence"] == "volatile"
    assert metric(d, "frichebot_redis_aof_enabled") == 0
    assert metric(d, "frichebot_redis_durable") == 0


def test_deprecated_require_aof_false_no_longer_accepts_volatile(volatile_redis, make_daemon):
    """redis.require_aof (before allow_volatile) still parses: ignored, with a warning, from
    --check-config too. false (the old sample's value) no longer accepts a Redis without AOF."""
    old = make_daemon(volatile_redis.address, start=False, extra_redis="  require_aof: false")
    old.write_config()
    r = subprocess.run([BINARY, "serve", "-c", str(old.config_path), "--check-config"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "configuration OK" in r.stdout, r
    assert "warning: redis.require_aof is deprecated and ignored" in r.stderr, r.stderr
    log = refused(old)
    assert DEPRECATED in log and "require_aof: false no longer accepts" in log, log
    assert REFUSED in log, log


def test_deprecated_require_aof_true_starts_as_before(redis, make_daemon):
    """require_aof: true on a Redis with AOF: ignored with a warning, starts as before."""
    d = make_daemon(redis.address, extra_redis="  require_aof: true")
    assert wait_until(lambda: d.json("/healthz")[0] == 200, 20), d.read_log()
    assert d.json("/healthz")[1]["redis"]["persistence"] == "durable"
    line = next(line for line in d.read_log().splitlines() if DEPRECATED in line)
    assert "warn [redis]" in line and "no longer accepts" not in line, line
    assert "refusing" not in d.read_log()


def test_redis_that_loses_aof_later_is_degraded(redis, make_daemon):
    """AOF turned off under a running daemon: the next connection finds it, logs an error and
    /healthz says degraded (the daemon keeps serving); AOF back on, the next one is ok again."""
    d = make_daemon(redis.address)
    assert wait_until(lambda: redis_connected(d) and checked(d), 20), d.read_log()
    assert d.json("/healthz")[0] == 200
    assert redis.cli("CONFIG", "SET", "appendonly", "no") == "OK"
    redis.cli("CLIENT", "KILL", "TYPE", "normal")
    assert wait_until(lambda: "no longer persists with AOF" in d.read_log(), 20), d.read_log()
    status, health = d.json("/healthz")
    assert status == 503 and health["status"] == "degraded", health
    assert health["redis"]["persistence"] == "volatile" and d.proc.poll() is None
    assert redis.cli("CONFIG", "SET", "appendonly", "yes") == "OK"
    redis.cli("CLIENT", "KILL", "TYPE", "normal")
    assert wait_until(lambda: d.json("/healthz")[0] == 200, 20), d.read_log()


def test_redis_back_empty_is_an_error(volatile_redis, make_daemon):
    """A Redis without AOF (allow_volatile) killed and restarted under the running daemon comes
    back empty: the daemon says, at error, that the data was lost; /healthz says degraded (503)
    with the loss counted and dated, /metrics counts it."""
    redis = volatile_redis
    d = make_daemon(redis.address, extra_redis=VOLATILE)
    assert wait_until(lambda: redis_connected(d) and checked(d), 20), d.read_log()
    assert d.json("/healthz")[0] == 200
    assert redis.cli("EXISTS", "fb:{g}:redis:marker") == "1"
    redis.proc.send_signal(signal.SIGKILL)
    redis.proc.wait(10)
    redis.proc = None
    redis.start()
    assert wait_until(lambda: LOST in d.read_log(), 20), d.read_log()
    line = next(line for line in d.read_log().splitlines() if LOST in line)
    assert "err [redis]" in line and "run_id changed" in line and "appendonly yes" in line, line
    assert "/healthz says degraded for 10 minutes" in line, line
    assert metric(d, "frichebot_redis_data_loss_total") == 1
    status, health = d.json("/healthz")
    assert status == 503 and health["status"] == "degraded", health
    assert health["redis"]["connected"] is True and health["redis"]["data_losses"] == 1, health
    assert health["redis"]["last_data_loss_ms"] > 0, health


def test_redis_back_in_time_is_an_error(volatile_redis, make_daemon):
    """A Redis that comes back from an older snapshot keeps the marker (it was in the snapshot),
    but not the epoch the daemon's beats had brought it to: the same error, saying it went back
    in time, /healthz degraded and the counter. (Before the epoch this looked like a Redis that
    kept its data, and replies written after the snapshot could be sent again.)"""
    redis = volatile_redis
    d = make_daemon(redis.address, start=False, extra_redis=VOLATILE)
    d.start(env={"FB_TEST_REDIS_BEAT_MS": "100"})  # test builds: a beat every 100 ms
    assert wait_until(lambda: redis_connected(d) and checked(d), 20), d.read_log()
    assert redis.cli("SAVE") == "OK"
    saved = int(redis.cli("GET", "fb:{g}:redis:epoch"))
    assert wait_until(lambda: int(redis.cli("GET", "fb:{g}:redis:epoch")) >= saved + 3, 10)
    redis.proc.send_signal(signal.SIGKILL)
    redis.proc.wait(10)
    redis.proc = None
    redis.start()  # from dump.rdb: the marker, and the epoch of the snapshot
    assert wait_until(lambda: LOST in d.read_log(), 20), d.read_log()
    line = next(line for line in d.read_log().splitlines() if LOST in line)
    assert "err [redis]" in line and "went back in time" in line, line
    assert "restored from an older snapshot" in line and "fb:{g}:redis:epoch" in line, line
    assert metric(d, "frichebot_redis_data_loss_total") == 1
    status, health = d.json("/healthz")
    assert status == 503 and health["redis"]["data_losses"] == 1, health


def test_redis_restarted_with_aof_kept_its_data(redis, make_daemon):
    """The same with AOF: Redis comes back with its data (the marker with it), nothing is lost."""
    d = make_daemon(redis.address)
    assert wait_until(lambda: redis_connected(d) and checked(d), 20), d.read_log()
    redis.proc.send_signal(signal.SIGKILL)
    redis.proc.wait(10)
    redis.proc = None
    redis.start()
    assert wait_until(lambda: "kept its data" in d.read_log(), 20), d.read_log()
    assert LOST not in d.read_log()
    assert metric(d, "frichebot_redis_data_loss_total") == 0


def test_redis_back_empty_sends_nothing_twice(volatile_redis, make_daemon):
    """After Redis came back empty nothing is sent again: the replies already delivered stay
    delivered once, and an outbox entry that was waiting is lost with the rest of the data (the
    error says so), not replayed. The outbox's recovery scan runs at the reconnection and finds an
    empty index; the dedupe marks are gone, but the web page (like the homeserver) only resends
    what was never acknowledged, and a conversation that no longer exists takes no reply.
    Deliveries are held 1.5 s (test builds) so that one entry is still in the outbox at the kill.
    A web reply is written to the history by the COMMIT and pushed to the page at once, without
    an outbox entry (issue 17: the history is its delivery), so the page has it before the kill,
    once; the entry waiting in the outbox is an advisor's relay, put there as escalation does."""
    from test_webchat import SAMPLE, Chat

    redis = volatile_redis
    hold = {"FB_TEST_OUTBOX_START_DELAY_MS": "1500"}
    d = make_daemon(redis.address, start=False, idle_timeout_s=60, extra_redis=VOLATILE,
                    extra=f'dialogs:\n  path: "{SAMPLE}"\n').start(env=hold)
    assert wait_until(lambda: redis_connected(d) and checked(d), 20), d.read_log()
    a, b = Chat(d), Chat(d)
    a.wait_bot("Dans quelle commune")
    a.say("lyon")
    a.wait_bot("Qui porte le projet")
    b.wait_bot("Dans quelle commune")
    b.say("lyon")  # acknowledged: its reply is pushed
    b.wait_bot("Qui porte le projet")
    outbox = f"fb:{{c:web:{b.token}}}:outbox"
    assert redis.cli("EXISTS", outbox) == "0"
    now = int(time.time() * 1000)
    relay = json.dumps({"txn": "esc-test.0", "kind": "relay", "text": "Un conseiller : bonjour.",
                        "html": "<p>Un conseiller : bonjour.</p>", "ts": now})
    assert redis.cli("RPUSH", outbox, relay) == "1"  # held 1.5 s from its ts
    assert redis.cli("ZADD", "fb:{g}:outbox:pending", str(now), f"web:{b.token}") == "1"
    # A hello sees the pending entry and wakes the outbox (as escalation's push does): the router
    # loads it now and holds it, so that it is in memory when Redis comes back empty.
    b2 = Chat(d, token=b.token, since=b.last_seq())
    delivered = metric(d, "frichebot_outbox_delivered_total")
    frames = {c: len(c.entries) for c in (a, b, b2)}

    redis.proc.send_signal(signal.SIGKILL)
    redis.proc.wait(10)
    redis.proc = None
    redis.start()
    assert wait_until(lambda: LOST in d.read_log(), 20), d.read_log()
    # Past the hold and the recovery scan of the reconnection (the router looks every second).
    end = time.monotonic() + 4
    while time.monotonic() < end:
        for c in (a, b, b2):
            try:
                c.recv(timeout=0.2)
            except TimeoutError:
                pass
    assert {c: len(c.entries) for c in (a, b, b2)} == frames
    assert metric(d, "frichebot_outbox_delivered_total") == delivered
    assert sum("Qui porte le projet" in e["text"] for e in b.entries.values()) == 1
    assert not any("Un conseiller" in e["text"] for c in (b, b2) for e in c.entries.values())
    assert redis.cli("ZCARD", "fb:{g}:outbox:pending") == "0"
    # The daemon serves on: a new conversation is greeted once.
    c = Chat(d)
    c.wait_bot("Dans quelle commune")
    time.sleep(2)
    for _ in range(5):
        try:
            c.recv(timeout=0.2)
        except TimeoutError:
            pass
    assert sum("Dans quelle commune" in e["text"] for e in c.entries.values()) == 1
    for chat in (a, b, c):
        chat.close()
