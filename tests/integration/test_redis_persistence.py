# SPDX-License-Identifier: MIT
"""Redis that forgets (docs/internals/REDIS.md, "Persistence"): at every connection the daemon reads
Redis's persistence settings, warns when AOF is off (saying what is lost and how to fix it), shows
them on /healthz and /metrics, refuses to start without AOF when redis.require_aof is set, and logs
an error when Redis comes back empty after a reconnect. Real redis-servers, with and without AOF."""
import re
import signal

from conftest import redis_connected, wait_until

AOF_OFF = "persistence: AOF is off (appendonly no)"
LOST = "Redis lost its data"


def metric(daemon, name):
    status, _, body = daemon.request("/metrics")
    assert status == 200
    m = re.search(rf"^{name} (\S+)$", body.decode(), re.M)
    assert m, body.decode()
    return float(m.group(1))


def checked(daemon, n=1):
    """True once the daemon's persistence check has run n times (one line per connection)."""
    return len(re.findall(r"\] persistence: ", daemon.read_log())) >= n


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
    assert "warn [redis]" not in daemon.read_log()


def test_redis_without_aof_is_warned(volatile_redis, make_daemon):
    """Without AOF: a warning naming what is lost and the settings to change; /healthz stays ok
    (warn only by default) and shows it, /metrics too."""
    d = make_daemon(volatile_redis.address)
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


def test_require_aof_refuses_a_redis_without_it(volatile_redis, make_daemon):
    """redis.require_aof: true and a Redis without AOF: the daemon stops at once, exit status 1,
    with an error naming the settings to change."""
    d = make_daemon(volatile_redis.address, start=False, extra_redis="  require_aof: true")
    d.start(wait_ready=False)
    rc = d.proc.wait(30)
    log = d.read_log()
    d.log.close()
    assert rc == 1, log
    assert "refusing to start: redis.require_aof is set" in log, log
    assert "'appendonly yes'" in log and "'appendfsync everysec'" in log, log
    assert "stopped cleanly (uv_loop_close=0)" in log, log


def test_require_aof_accepts_a_redis_with_it(redis, make_daemon):
    d = make_daemon(redis.address, extra_redis="  require_aof: true")
    assert wait_until(lambda: d.json("/healthz")[0] == 200, 20), d.read_log()
    assert d.json("/healthz")[1]["redis"]["persistence"] == "durable"
    assert "refusing" not in d.read_log()


def test_redis_back_empty_is_an_error(volatile_redis, make_daemon):
    """A Redis without AOF killed and restarted under the running daemon comes back empty: the
    daemon says, at error, that the data was lost; /healthz and /metrics count it."""
    redis = volatile_redis
    d = make_daemon(redis.address)
    assert wait_until(lambda: redis_connected(d) and checked(d), 20), d.read_log()
    assert redis.cli("EXISTS", "fb:redis:marker") == "1"
    redis.proc.send_signal(signal.SIGKILL)
    redis.proc.wait(10)
    redis.proc = None
    redis.start()
    assert wait_until(lambda: LOST in d.read_log(), 20), d.read_log()
    line = next(line for line in d.read_log().splitlines() if LOST in line)
    assert "err [redis]" in line and "run_id changed" in line and "appendonly yes" in line, line
    assert metric(d, "frichebot_redis_data_loss_total") == 1
    status, health = d.json("/healthz")
    assert status == 200 and health["redis"]["data_losses"] == 1, health


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
