/* SPDX-License-Identifier: MIT */
/*
 * test_redis.c - the asynchronous Redis client against a real, throwaway redis-server: TCP and
 * unix sockets, AUTH, command timeouts, lost connections and resends, write deadlines, the
 * bounded queue, and close with pending commands. Every test checks that each callback is
 * called exactly once and ends with fb_test_loop_close_strict().
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "frichebot/err.h"
#include "frichebot/log.h"
#include "io/metrics.h"
#include "io/redis.h"
#include "task.h"

/* ---------------------------------------------------------------------------------------- */
/* Helpers */

struct result {
    int calls;  /* times the callback ran: must end at exactly 1 */
    int status; /* status of the last call */
    int type;   /* reply type, or -1 */
    long long integer;
    char str[256];
    fb_redis_t *r;
};

static void on_result(fb_redis_t *r, int status, redisReply *rep, void *arg)
{
    struct result *res = arg;
    res->calls++;
    res->status = status;
    res->r = r;
    res->type = rep ? rep->type : -1;
    res->integer = rep ? rep->integer : 0;
    res->str[0] = '\0';
    if (rep && rep->str)
        snprintf(res->str, sizeof(res->str), "%.*s", (int)rep->len, rep->str);
    if (status < 0)
        ASSERT_NULL(rep);
    else
        ASSERT_NOT_NULL(rep);
}

/* Runs `loop` until the client is connected, up to `ms`. */
static bool connected(void *arg)
{
    return fb_redis_connected(arg);
}

static bool wait_connected(uv_loop_t *loop, fb_redis_t *r, unsigned ms)
{
    return fb_test_wait_cond(loop, connected, r, ms);
}

static void on_closed(void *arg)
{
    (*(int *)arg)++;
}

/* Closes `r` and runs the loop until its done callback ran, exactly once. */
static void close_and_wait(uv_loop_t *loop, fb_redis_t *r)
{
    int closed = 0;
    fb_redis_close(r, on_closed, &closed);
    ASSERT(fb_test_wait_int(loop, &closed, 1, 5000));
    fb_test_run_for(loop, 10);
    ASSERT_EQ(closed, 1);
}

static fb_redis_opts_t test_opts(char *address)
{
    fb_redis_opts_t o;
    memset(&o, 0, sizeof(o));
    o.address = address;
    o.connect_timeout_ms = 1000;
    o.command_timeout_ms = 3000;
    o.write_deadline_ms = 5000;
    o.reconnect.delays_ms[0] = 20;
    o.reconnect.delays_ms[1] = 50;
    o.reconnect.delays_ms[2] = 100;
    o.reconnect.n_delays = 3;
    o.reconnect.jitter_percent = 10;
    return o;
}

static redisContext *sync_connect(const fb_test_redis_t *srv)
{
    redisContext *c = redisConnect("127.0.0.1", srv->port);
    ASSERT(c && !c->err);
    return c;
}

/* Runs a command on a synchronous context and checks it did not fail. */
static redisReply *sync_cmd(redisContext *c, const char *cmd)
{
    redisReply *rep = redisCommand(c, cmd);
    ASSERT_NOT_NULL(rep);
    if (rep->type == REDIS_REPLY_ERROR)
        FB_TEST_FAIL("%s: %s", cmd, rep->str);
    return rep;
}

static uint64_t now_ms(uv_loop_t *loop)
{
    uv_update_time(loop);
    return uv_now(loop);
}

/* ---------------------------------------------------------------------------------------- */
/* Connecting */

/* Connects over TCP, sends binary-safe commands, and closes with nothing left on the loop. */
TEST_IMPL(redis_connect_tcp)
{
    fb_test_redis_t srv;
    ASSERT_OK(fb_test_redis_start(&srv));
    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    char addr[64];
    snprintf(addr, sizeof(addr), "tcp://127.0.0.1:%d", srv.port);
    fb_redis_opts_t o = test_opts(addr);
    fb_redis_t *r = fb_redis_create(&loop, &o);
    ASSERT_NOT_NULL(r);
    ASSERT(!fb_redis_connected(r));
    ASSERT_STR_EQ(fb_redis_address(r), addr);
    ASSERT_OK(fb_redis_start(r));
    ASSERT_EQ(fb_redis_start(r), FB_EINVAL);

    struct result ping = {0}, set = {0}, get = {0};
    ASSERT_OK(fb_redis_command(r, 0, on_result, &ping, "PING", NULL));
    const char *argv[] = {"SET", "bin", "a\0b"};
    const size_t lens[] = {3, 3, 3};
    ASSERT_OK(fb_redis_command_argv(r, FB_REDIS_RETRY, on_result, &set, 3, argv, lens));
    ASSERT_OK(fb_redis_command(r, 0, on_result, &get, "STRLEN", "bin", NULL));
    ASSERT_EQ(fb_redis_pending(r), 3);
    ASSERT_EQ(ping.calls, 0); /* never called inside the issuing call */
    ASSERT(fb_test_wait_int(&loop, &get.calls, 1, 5000));
    ASSERT_EQ(ping.calls, 1);
    ASSERT_EQ(ping.status, 0);
    ASSERT_EQ(ping.type, REDIS_REPLY_STATUS);
    ASSERT_STR_EQ(ping.str, "PONG");
    ASSERT_EQ(set.calls, 1);
    ASSERT_STR_EQ(set.str, "OK");
    ASSERT_EQ(get.type, REDIS_REPLY_INTEGER);
    ASSERT_EQ(get.integer, 3);
    ASSERT(fb_redis_connected(r));
    ASSERT_EQ(fb_redis_pending(r), 0);
    fb_redis_stats_t st;
    fb_redis_get_stats(r, &st);
    ASSERT_EQ(st.connects, 1);
    ASSERT_EQ(st.completed, 3);

    close_and_wait(&loop, r);
    ASSERT_EQ(ping.calls + set.calls + get.calls, 3);
    fb_test_loop_close_strict(&loop);
    fb_test_redis_destroy(&srv);
    return 0;
}

/* Connects over the unix socket, in both spellings of the address. */
TEST_IMPL(redis_connect_unix)
{
    fb_test_redis_t srv;
    ASSERT_OK(fb_test_redis_start(&srv));
    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    for (int form = 0; form < 2; form++) {
        char addr[400];
        snprintf(addr, sizeof(addr), "%s%s", form ? "unix://" : "unix:", srv.sock);
        fb_redis_opts_t o = test_opts(addr);
        fb_redis_t *r = fb_redis_create(&loop, &o);
        ASSERT_NOT_NULL(r);
        ASSERT_OK(fb_redis_start(r));
        struct result res = {0};
        ASSERT_OK(fb_redis_command(r, 0, on_result, &res, "CLIENT", "INFO", NULL));
        ASSERT(fb_test_wait_int(&loop, &res.calls, 1, 5000));
        ASSERT_EQ(res.status, 0);
        /* The server sees a unix socket client: its address is not ip:port. */
        ASSERT_NOT_NULL(strstr(res.str, "laddr=/"));
        ASSERT(fb_redis_connected(r));
        close_and_wait(&loop, r);
        ASSERT_EQ(res.calls, 1);
    }
    fb_test_loop_close_strict(&loop);
    fb_test_redis_destroy(&srv);
    return 0;
}

/* A host name is resolved asynchronously, and every address is tried in turn. */
TEST_IMPL(redis_connect_hostname)
{
    fb_test_redis_t srv;
    ASSERT_OK(fb_test_redis_start(&srv));
    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    char addr[64];
    snprintf(addr, sizeof(addr), "tcp://localhost:%d", srv.port);
    fb_redis_opts_t o = test_opts(addr);
    fb_redis_t *r = fb_redis_create(&loop, &o);
    ASSERT_NOT_NULL(r);
    ASSERT_OK(fb_redis_start(r));
    struct result res = {0};
    ASSERT_OK(fb_redis_command(r, 0, on_result, &res, "PING", NULL));
    ASSERT(fb_test_wait_int(&loop, &res.calls, 1, 5000));
    ASSERT_EQ(res.status, 0);
    close_and_wait(&loop, r);
    fb_test_loop_close_strict(&loop);
    fb_test_redis_destroy(&srv);
    return 0;
}

#define LONG_PATH                                                                                  \
    "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890"  \
    "123456789012345678"

/* Malformed addresses are refused at creation; a client closed without starting is fine. */
TEST_IMPL(redis_bad_address)
{
    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    static const char *const bad[] = {
        "",
        "redis://127.0.0.1:6379",
        "tcp://127.0.0.1",
        "tcp://:6379",
        "tcp://h:0",
        "tcp://h:65536",
        "tcp://h:12x",
        "tcp://::1:6379",
        "unix:",
        "unix:/" LONG_PATH,
        "tcp://[::1]6379",
        "tcp://h:",
        /* credentials in the address would be logged: refused */
        "tcp://secret@127.0.0.1:6379",
        "tcp://user:pw@h:6379",
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(bad); i++) {
        char addr[160];
        snprintf(addr, sizeof(addr), "%s", bad[i]);
        fb_redis_opts_t o = test_opts(addr);
        if (fb_redis_create(&loop, &o) != NULL)
            FB_TEST_FAIL("address \"%s\" was accepted", bad[i]);
    }
    fb_redis_opts_t none = test_opts(NULL);
    ASSERT_NULL(fb_redis_create(&loop, &none));
    static const char *const good[] = {"tcp://127.0.0.1:6379", "tcp://[::1]:6379",
                                       "tcp://redis.example:1", "unix:/run/redis.sock",
                                       "unix:relative.sock"};
    for (size_t i = 0; i < FB_ARRAY_SIZE(good); i++) {
        char addr[64];
        snprintf(addr, sizeof(addr), "%s", good[i]);
        fb_redis_opts_t o = test_opts(addr);
        fb_redis_t *r = fb_redis_create(&loop, &o);
        if (!r)
            FB_TEST_FAIL("address \"%s\" was refused", good[i]);
        close_and_wait(&loop, r);
    }
    fb_test_loop_close_strict(&loop);
    return 0;
}

/*
 * With requirepass set: the right password connects; a wrong or missing one never becomes
 * ready, so a command waiting for it fails with FB_EUNAVAIL at its deadline. Nothing logged,
 * even at TRACE, contains either password; the address and the refusal are logged.
 */
TEST_IMPL(redis_auth_password)
{
    fb_test_redis_t srv;
    ASSERT_OK(fb_test_redis_start(&srv));
    redisContext *sc = sync_connect(&srv);
    freeReplyObject(sync_cmd(sc, "CONFIG SET requirepass s3cret-pw"));
    redisFree(sc);

    char logpath[] = "/tmp/fb-test-log-XXXXXX";
    int logfd = mkstemp(logpath);
    ASSERT(logfd >= 0);
    int saved_stderr = dup(STDERR_FILENO);
    ASSERT(saved_stderr >= 0);
    fflush(stderr);
    ASSERT(dup2(logfd, STDERR_FILENO) >= 0);
    fb_log_set_level_all(FB_LOG_TRACE);

    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    char addr[64];
    snprintf(addr, sizeof(addr), "tcp://127.0.0.1:%d", srv.port);
    struct result res[3];
    memset(res, 0, sizeof(res));
    bool connected[3];
    char good_pw[] = "s3cret-pw", bad_pw[] = "wr0ng-pw";
    char *passwords[3] = {good_pw, bad_pw, NULL};
    for (int i = 0; i < 3; i++) {
        fb_redis_opts_t o = test_opts(addr);
        o.password = passwords[i];
        o.write_deadline_ms = 300;
        fb_redis_t *r = fb_redis_create(&loop, &o);
        ASSERT_NOT_NULL(r);
        ASSERT_OK(fb_redis_start(r));
        ASSERT_OK(fb_redis_command(r, FB_REDIS_RETRY, on_result, &res[i], "PING", NULL));
        ASSERT(fb_test_wait_int(&loop, &res[i].calls, 1, 5000));
        connected[i] = fb_redis_connected(r);
        close_and_wait(&loop, r);
    }
    fb_test_loop_close_strict(&loop);

    fflush(stderr);
    ASSERT(dup2(saved_stderr, STDERR_FILENO) >= 0);
    close(saved_stderr);
    fb_log_set_level_all(FB_LOG_INFO);
    char log[65536];
    ssize_t n = pread(logfd, log, sizeof(log) - 1, 0);
    close(logfd);
    unlink(logpath);
    ASSERT(n > 0);
    log[n] = '\0';

    ASSERT_EQ(res[0].calls, 1);
    ASSERT_EQ(res[0].status, 0);
    ASSERT_STR_EQ(res[0].str, "PONG");
    ASSERT(connected[0]);
    for (int i = 1; i < 3; i++) {
        ASSERT_EQ(res[i].calls, 1);
        ASSERT_EQ(res[i].status, FB_EUNAVAIL);
        ASSERT(!connected[i]);
    }
    if (strstr(log, "s3cret-pw") || strstr(log, "wr0ng-pw"))
        FB_TEST_FAIL("a password was logged:\n%s", log);
    ASSERT_NOT_NULL(strstr(log, addr));
    ASSERT_NOT_NULL(strstr(log, "AUTH refused"));
    ASSERT_NOT_NULL(strstr(log, "PING refused")); /* no password: NOAUTH */
    fb_test_redis_destroy(&srv);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Failures */

/*
 * CLIENT PAUSE 1000 with command_timeout_ms 100: a non-retryable GET fails with FB_ETIMEDOUT
 * after about 100 ms (its late reply is never delivered), while a retryable SET issued at the
 * same time is resent on a new connection and succeeds once the pause is over.
 */
TEST_IMPL(redis_command_timeout)
{
    fb_test_redis_t srv;
    ASSERT_OK(fb_test_redis_start(&srv));
    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    char addr[64];
    snprintf(addr, sizeof(addr), "tcp://127.0.0.1:%d", srv.port);
    fb_redis_opts_t o = test_opts(addr);
    o.command_timeout_ms = 100;
    o.connect_timeout_ms = 3000;
    fb_redis_t *r = fb_redis_create(&loop, &o);
    ASSERT_NOT_NULL(r);
    ASSERT_OK(fb_redis_start(r));
    ASSERT(wait_connected(&loop, r, 5000));

    redisContext *sc = sync_connect(&srv);
    freeReplyObject(sync_cmd(sc, "CLIENT PAUSE 1000"));
    uint64_t t0 = now_ms(&loop);
    struct result get = {0}, set = {0};
    ASSERT_OK(fb_redis_command(r, 0, on_result, &get, "GET", "k", NULL));
    ASSERT_OK(fb_redis_command(r, FB_REDIS_RETRY, on_result, &set, "SET", "k", "v", NULL));
    ASSERT(fb_test_wait_int(&loop, &get.calls, 1, 3000));
    uint64_t t_get = now_ms(&loop);
    ASSERT_EQ(get.status, FB_ETIMEDOUT);
    ASSERT_GE(t_get - t0, 100);
    ASSERT_LT(t_get - t0, 900);
    ASSERT_EQ(set.calls, 0); /* retryable: still waiting */

    ASSERT(fb_test_wait_int(&loop, &set.calls, 1, 5000));
    uint64_t t_set = now_ms(&loop);
    ASSERT_EQ(set.status, 0);
    ASSERT_STR_EQ(set.str, "OK");
    ASSERT_GE(t_set - t0, 900); /* only once the pause was over */
    fb_test_run_for(&loop, 200);
    ASSERT_EQ(get.calls, 1);
    ASSERT_EQ(set.calls, 1);
    fb_redis_stats_t st;
    fb_redis_get_stats(r, &st);
    ASSERT_GE(st.timeouts, 2);
    ASSERT_GE(st.resends, 1);
    ASSERT_GE(st.connects, 2);

    redisReply *rep = sync_cmd(sc, "GET k");
    ASSERT_STR_EQ(rep->str, "v");
    freeReplyObject(rep);
    redisFree(sc);
    close_and_wait(&loop, r);
    fb_test_loop_close_strict(&loop);
    fb_test_redis_destroy(&srv);
    return 0;
}

/*
 * The server kills our connection while two blocking commands are in flight: the
 * non-retryable one fails with FB_EIO, the retryable one is resent on the new connection and
 * answered there. Each callback runs once.
 */
TEST_IMPL(redis_lost_connection_resend)
{
    fb_test_redis_t srv;
    ASSERT_OK(fb_test_redis_start(&srv));
    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    char addr[64];
    snprintf(addr, sizeof(addr), "tcp://127.0.0.1:%d", srv.port);
    fb_redis_opts_t o = test_opts(addr);
    o.command_timeout_ms = 5000;
    fb_redis_t *r = fb_redis_create(&loop, &o);
    ASSERT_NOT_NULL(r);
    ASSERT_OK(fb_redis_start(r));
    ASSERT(wait_connected(&loop, r, 5000));

    struct result once = {0}, retry = {0};
    ASSERT_OK(fb_redis_command(r, 0, on_result, &once, "BLPOP", "list:a", "3", NULL));
    ASSERT_OK(fb_redis_command(r, FB_REDIS_RETRY, on_result, &retry, "BLPOP", "list:b", "1", NULL));
    fb_test_run_for(&loop, 100);
    ASSERT_EQ(fb_redis_pending(r), 2);
    redisContext *sc = sync_connect(&srv);
    redisReply *rep = sync_cmd(sc, "CLIENT KILL TYPE normal");
    ASSERT_EQ(rep->integer, 1); /* ours; SKIPME spares the killer */
    freeReplyObject(rep);

    ASSERT(fb_test_wait_int(&loop, &once.calls, 1, 2000));
    ASSERT_EQ(once.status, FB_EIO);
    ASSERT_EQ(retry.calls, 0);
    ASSERT(fb_test_wait_int(&loop, &retry.calls, 1, 4000));
    ASSERT_EQ(retry.status, 0);
    ASSERT_EQ(retry.type, REDIS_REPLY_NIL); /* the resent BLPOP timed out on the server */
    fb_test_run_for(&loop, 100);
    ASSERT_EQ(once.calls, 1);
    ASSERT_EQ(retry.calls, 1);
    fb_redis_stats_t st;
    fb_redis_get_stats(r, &st);
    ASSERT_EQ(st.disconnects, 1);
    ASSERT_EQ(st.resends, 1);
    ASSERT_EQ(st.connects, 2);
    ASSERT(fb_redis_connected(r));

    redisFree(sc);
    close_and_wait(&loop, r);
    fb_test_loop_close_strict(&loop);
    fb_test_redis_destroy(&srv);
    return 0;
}

static void restart_cb(uv_timer_t *t)
{
    fb_test_redis_t *srv = t->data;
    ASSERT_OK(fb_test_redis_restart(srv));
}

/*
 * Redis is down when commands are issued: retryable or not, they wait in the queue and are
 * sent, in order, once Redis is back (restarted 300 ms later by a timer).
 */
TEST_IMPL(redis_queued_while_down)
{
    fb_test_redis_t srv;
    ASSERT_OK(fb_test_redis_start(&srv));
    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    char addr[64];
    snprintf(addr, sizeof(addr), "tcp://127.0.0.1:%d", srv.port);
    fb_redis_opts_t o = test_opts(addr);
    fb_redis_t *r = fb_redis_create(&loop, &o);
    ASSERT_NOT_NULL(r);
    ASSERT_OK(fb_redis_start(r));
    ASSERT(wait_connected(&loop, r, 5000));

    fb_test_redis_stop(&srv);
    fb_test_run_for(&loop, 50);
    ASSERT(!fb_redis_connected(r));
    struct result set = {0}, get = {0};
    ASSERT_OK(fb_redis_command(r, FB_REDIS_RETRY, on_result, &set, "SET", "k", "back", NULL));
    ASSERT_OK(fb_redis_command(r, 0, on_result, &get, "GET", "k", NULL));
    ASSERT_EQ(fb_redis_pending(r), 2);
    uint64_t t0 = now_ms(&loop);
    uv_timer_t restart;
    uv_timer_init(&loop, &restart);
    restart.data = &srv;
    uv_timer_start(&restart, restart_cb, 300, 0);
    ASSERT(fb_test_wait_int(&loop, &get.calls, 1, 5000));
    ASSERT_GE(now_ms(&loop) - t0, 300);
    ASSERT_EQ(set.calls, 1);
    ASSERT_EQ(set.status, 0);
    ASSERT_EQ(get.status, 0);
    ASSERT_STR_EQ(get.str, "back");
    uv_close((uv_handle_t *)&restart, NULL);
    fb_test_run_for(&loop, 100);
    ASSERT_EQ(set.calls, 1);
    ASSERT_EQ(get.calls, 1);
    close_and_wait(&loop, r);
    fb_test_loop_close_strict(&loop);
    fb_test_redis_destroy(&srv);
    return 0;
}

/*
 * Redis stays down longer than write_deadline_ms: queued commands, retryable or not, fail with
 * FB_EUNAVAIL once, at the deadline, and are never sent afterwards.
 */
TEST_IMPL(redis_deadline_unavailable)
{
    fb_test_redis_t srv;
    ASSERT_OK(fb_test_redis_start(&srv));
    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    char addr[64];
    snprintf(addr, sizeof(addr), "tcp://127.0.0.1:%d", srv.port);
    fb_redis_opts_t o = test_opts(addr);
    o.write_deadline_ms = 300;
    fb_redis_t *r = fb_redis_create(&loop, &o);
    ASSERT_NOT_NULL(r);
    ASSERT_OK(fb_redis_start(r));
    ASSERT(wait_connected(&loop, r, 5000));
    fb_test_redis_stop(&srv);
    fb_test_run_for(&loop, 50);

    uint64_t t0 = now_ms(&loop);
    struct result set = {0}, get = {0};
    ASSERT_OK(fb_redis_command(r, FB_REDIS_RETRY, on_result, &set, "SET", "late", "x", NULL));
    ASSERT_OK(fb_redis_command(r, 0, on_result, &get, "GET", "late", NULL));
    int total = 0;
    while (set.calls + get.calls < 2 && now_ms(&loop) - t0 < 3000)
        fb_test_run_for(&loop, 10);
    uint64_t elapsed = now_ms(&loop) - t0;
    ASSERT_EQ(set.status, FB_EUNAVAIL);
    ASSERT_EQ(get.status, FB_EUNAVAIL);
    ASSERT_GE(elapsed, 300);
    ASSERT_EQ(fb_redis_pending(r), 0);

    /* Redis comes back: the failed SET must not be written late, nor any callback repeat. */
    ASSERT_OK(fb_test_redis_restart(&srv));
    ASSERT(wait_connected(&loop, r, 5000));
    struct result check = {0};
    ASSERT_OK(fb_redis_command(r, 0, on_result, &check, "EXISTS", "late", NULL));
    ASSERT(fb_test_wait_int(&loop, &check.calls, 1, 3000));
    ASSERT_EQ(check.integer, 0);
    total = set.calls + get.calls;
    ASSERT_EQ(total, 2);
    close_and_wait(&loop, r);
    fb_test_loop_close_strict(&loop);
    fb_test_redis_destroy(&srv);
    return 0;
}

/* Nothing listens on the port: refusals are seen at once (not at the 10 s connect timeout). */
TEST_IMPL(redis_refused_fails_fast)
{
    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    char addr[64];
    snprintf(addr, sizeof(addr), "tcp://127.0.0.1:%d", fb_test_free_port());
    fb_redis_opts_t o = test_opts(addr);
    o.connect_timeout_ms = 10000;
    o.reconnect.n_delays = 1; /* 20 ms between attempts */
    fb_redis_t *r = fb_redis_create(&loop, &o);
    ASSERT_NOT_NULL(r);
    ASSERT_OK(fb_redis_start(r));
    fb_test_run_for(&loop, 500);
    fb_redis_stats_t st;
    fb_redis_get_stats(r, &st);
    ASSERT_GE(st.connect_failures, 3);
    ASSERT_EQ(st.connects, 0);
    ASSERT(!fb_redis_connected(r));
    close_and_wait(&loop, r);
    fb_test_loop_close_strict(&loop);
    return 0;
}

/*
 * A server that accepts connections but never answers: each attempt ends at the connect
 * timeout (100 ms, the handshake included) and the next one follows the backoff.
 */
TEST_IMPL(redis_connect_timeout)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT(fd >= 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_OK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)));
    socklen_t len = sizeof(sa);
    ASSERT_OK(getsockname(fd, (struct sockaddr *)&sa, &len));
    ASSERT_OK(listen(fd, 16)); /* never accepted: the kernel completes handshakes, no answer */

    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    char addr[64];
    snprintf(addr, sizeof(addr), "tcp://127.0.0.1:%d", ntohs(sa.sin_port));
    fb_redis_opts_t o = test_opts(addr);
    o.connect_timeout_ms = 100;
    o.write_deadline_ms = 400;
    o.reconnect.n_delays = 1;
    fb_redis_t *r = fb_redis_create(&loop, &o);
    ASSERT_NOT_NULL(r);
    ASSERT_OK(fb_redis_start(r));
    struct result res = {0};
    uint64_t t0 = now_ms(&loop);
    ASSERT_OK(fb_redis_command(r, 0, on_result, &res, "PING", NULL));
    ASSERT(fb_test_wait_int(&loop, &res.calls, 1, 3000));
    ASSERT_EQ(res.status, FB_EUNAVAIL);
    ASSERT_GE(now_ms(&loop) - t0, 400);
    fb_redis_stats_t st;
    fb_redis_get_stats(r, &st);
    ASSERT_GE(st.connect_failures, 2);
    ASSERT_LE(st.connect_failures, 5);
    ASSERT_EQ(st.connects, 0);
    close_and_wait(&loop, r);
    fb_test_loop_close_strict(&loop);
    close(fd);
    return 0;
}

/* Past FB_REDIS_MAX_QUEUED waiting commands, new ones are refused at once with FB_EAGAIN. */
TEST_IMPL(redis_queue_bound)
{
    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    char addr[] = "unix:/nonexistent/redis.sock";
    fb_redis_opts_t o = test_opts(addr);
    fb_redis_t *r = fb_redis_create(&loop, &o);
    ASSERT_NOT_NULL(r);
    static struct result res[FB_REDIS_MAX_QUEUED];
    memset(res, 0, sizeof(res));
    for (int i = 0; i < FB_REDIS_MAX_QUEUED; i++)
        ASSERT_OK(fb_redis_command(r, 0, on_result, &res[i], "PING", NULL));
    struct result extra = {0};
    ASSERT_EQ(fb_redis_command(r, 0, on_result, &extra, "PING", NULL), FB_EAGAIN);
    ASSERT_EQ(fb_redis_pending(r), FB_REDIS_MAX_QUEUED);
    ASSERT_EQ(fb_redis_command(r, 0, on_result, &extra, "SUBSCRIBE", "ch", NULL), FB_EINVAL);
    ASSERT_EQ(fb_redis_command(r, 0, on_result, &extra, "select", "1", NULL), FB_EINVAL);
    ASSERT_EQ(fb_redis_command(r, 0, on_result, &extra, "CLIENT", "REPLY", "OFF", NULL), FB_EINVAL);
    ASSERT_EQ(fb_redis_command(r, 0, NULL, &extra, "PING", NULL), FB_EINVAL);
    close_and_wait(&loop, r);
    for (int i = 0; i < FB_REDIS_MAX_QUEUED; i++) {
        ASSERT_EQ(res[i].calls, 1);
        ASSERT_EQ(res[i].status, FB_ECANCELED);
    }
    ASSERT_EQ(extra.calls, 0);
    fb_test_loop_close_strict(&loop);
    return 0;
}

struct cancel_probe {
    struct result res;
    int reissue_rc; /* what issuing a command from the cancel callback returned */
};

static void on_cancel_probe(fb_redis_t *r, int status, redisReply *rep, void *arg)
{
    struct cancel_probe *p = arg;
    on_result(r, status, rep, &p->res);
    struct result dummy = {0};
    p->reissue_rc = fb_redis_command(r, 0, on_result, &dummy, "PING", NULL);
}

/*
 * fb_redis_close() with commands in flight (blocking on the server) and queued (Redis down):
 * every callback runs once with FB_ECANCELED before close returns, a command issued from those
 * callbacks is refused with FB_ECLOSING, and done runs once after every handle is closed.
 */
TEST_IMPL(redis_close_cancels_pending)
{
    fb_test_redis_t srv;
    ASSERT_OK(fb_test_redis_start(&srv));
    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    char addr[64];
    snprintf(addr, sizeof(addr), "tcp://127.0.0.1:%d", srv.port);

    /* In flight. */
    fb_redis_opts_t o = test_opts(addr);
    fb_redis_t *r = fb_redis_create(&loop, &o);
    ASSERT_NOT_NULL(r);
    ASSERT_OK(fb_redis_start(r));
    ASSERT(wait_connected(&loop, r, 5000));
    struct cancel_probe p[3];
    memset(p, 0, sizeof(p));
    ASSERT_OK(fb_redis_command(r, 0, on_cancel_probe, &p[0], "BLPOP", "q1", "5", NULL));
    ASSERT_OK(
        fb_redis_command(r, FB_REDIS_RETRY, on_cancel_probe, &p[1], "BLPOP", "q2", "5", NULL));
    ASSERT_OK(fb_redis_command(r, 0, on_cancel_probe, &p[2], "PING", NULL));
    fb_test_run_for(&loop, 100);
    ASSERT_EQ(fb_redis_pending(r), 3);
    int closed = 0;
    fb_redis_close(r, on_closed, &closed);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(p[i].res.calls, 1);
        ASSERT_EQ(p[i].res.status, FB_ECANCELED);
        ASSERT_EQ(p[i].reissue_rc, FB_ECLOSING);
    }
    ASSERT_EQ(closed, 0); /* done only once the handles are closed */
    ASSERT(fb_test_wait_int(&loop, &closed, 1, 3000));

    /* Queued: Redis down. */
    fb_test_redis_stop(&srv);
    r = fb_redis_create(&loop, &o);
    ASSERT_NOT_NULL(r);
    ASSERT_OK(fb_redis_start(r));
    struct cancel_probe q[2];
    memset(q, 0, sizeof(q));
    ASSERT_OK(fb_redis_command(r, FB_REDIS_RETRY, on_cancel_probe, &q[0], "SET", "a", "1", NULL));
    ASSERT_OK(fb_redis_command(r, 0, on_cancel_probe, &q[1], "GET", "a", NULL));
    fb_test_run_for(&loop, 100);
    ASSERT_EQ(fb_redis_pending(r), 2);
    closed = 0;
    fb_redis_close(r, on_closed, &closed);
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ(q[i].res.calls, 1);
        ASSERT_EQ(q[i].res.status, FB_ECANCELED);
    }
    ASSERT(fb_test_wait_int(&loop, &closed, 1, 3000));
    fb_test_run_for(&loop, 100);
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(p[i].res.calls, 1);
    ASSERT_EQ(q[0].res.calls + q[1].res.calls, 2);
    ASSERT_EQ(closed, 1);
    fb_test_loop_close_strict(&loop);
    fb_test_redis_destroy(&srv);
    return 0;
}

struct close_in_cb {
    struct result first, second;
    int closed;
};

static void on_first_closes(fb_redis_t *r, int status, redisReply *rep, void *arg)
{
    struct close_in_cb *c = arg;
    on_result(r, status, rep, &c->first);
    fb_redis_close(r, on_closed, &c->closed);
}

/*
 * fb_redis_close() called from inside a reply callback, with the next reply possibly already
 * read: the second command completes with FB_ECANCELED, once, and teardown still ends cleanly.
 */
TEST_IMPL(redis_close_inside_callback)
{
    fb_test_redis_t srv;
    ASSERT_OK(fb_test_redis_start(&srv));
    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    char addr[64];
    snprintf(addr, sizeof(addr), "tcp://127.0.0.1:%d", srv.port);
    fb_redis_opts_t o = test_opts(addr);
    fb_redis_t *r = fb_redis_create(&loop, &o);
    ASSERT_NOT_NULL(r);
    ASSERT_OK(fb_redis_start(r));
    ASSERT(wait_connected(&loop, r, 5000));
    struct close_in_cb c;
    memset(&c, 0, sizeof(c));
    ASSERT_OK(fb_redis_command(r, 0, on_first_closes, &c, "PING", NULL));
    ASSERT_OK(fb_redis_command(r, 0, on_result, &c.second, "PING", NULL));
    ASSERT(fb_test_wait_int(&loop, &c.closed, 1, 3000));
    ASSERT_EQ(c.first.calls, 1);
    ASSERT_EQ(c.first.status, 0);
    ASSERT_EQ(c.second.calls, 1);
    ASSERT_EQ(c.second.status, FB_ECANCELED);
    fb_test_run_for(&loop, 50);
    ASSERT_EQ(c.closed, 1);
    fb_test_loop_close_strict(&loop);
    fb_test_redis_destroy(&srv);
    return 0;
}

/* Each answered command is observed by the round-trip histogram. */
TEST_IMPL(redis_rtt_metric)
{
    fb_test_redis_t srv;
    ASSERT_OK(fb_test_redis_start(&srv));
    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    char addr[64];
    snprintf(addr, sizeof(addr), "tcp://127.0.0.1:%d", srv.port);
    fb_redis_opts_t o = test_opts(addr);
    fb_redis_t *r = fb_redis_create(&loop, &o);
    ASSERT_NOT_NULL(r);
    ASSERT_OK(fb_redis_start(r));
    ASSERT(wait_connected(&loop, r, 5000));
    fb_metrics_reset();
    struct result res[3];
    memset(res, 0, sizeof(res));
    for (int i = 0; i < 3; i++)
        ASSERT_OK(fb_redis_command(r, 0, on_result, &res[i], "PING", NULL));
    ASSERT(fb_test_wait_int(&loop, &res[2].calls, 1, 3000));
    fb_buf_t out;
    fb_buf_init(&out, 1 << 20);
    ASSERT_OK(fb_metrics_render(&out));
    ASSERT_NOT_NULL(strstr(fb_buf_str(&out), "frichebot_redis_rtt_seconds_count 3\n"));
    fb_buf_free(&out);
    close_and_wait(&loop, r);
    fb_test_loop_close_strict(&loop);
    fb_test_redis_destroy(&srv);
    return 0;
}

/* ---- reply shapes (fb_redis_reply_*) ---- */

TEST_IMPL(redis_reply_shapes)
{
    char ab[] = "ab", pong_text[] = "PONG";
    redisReply i7 = {.type = REDIS_REPLY_INTEGER, .integer = 7};
    redisReply str = {.type = REDIS_REPLY_STRING, .str = ab, .len = 2};
    redisReply nil = {.type = REDIS_REPLY_NIL};
    redisReply pong = {.type = REDIS_REPLY_STATUS, .str = pong_text, .len = 4};
    redisReply *items[] = {&i7, &str, &nil};
    redisReply arr = {.type = REDIS_REPLY_ARRAY, .element = items, .elements = 3};
    redisReply empty = {.type = REDIS_REPLY_ARRAY, .element = NULL, .elements = 0};

    ASSERT(fb_redis_reply_array(&arr, 3, 3, NULL) == &arr);
    ASSERT(fb_redis_reply_array(&arr, 1, FB_REDIS_NOMAX, "is") == &arr);
    ASSERT(fb_redis_reply_array(&arr, 1, FB_REDIS_NOMAX, "isn") == &arr);
    ASSERT(fb_redis_reply_array(&arr, 1, FB_REDIS_NOMAX, ".s.") == &arr);
    ASSERT(fb_redis_reply_array(&arr, 1, FB_REDIS_NOMAX, "isnii") == &arr); /* past the end */
    ASSERT(fb_redis_reply_array(&arr, 4, FB_REDIS_NOMAX, NULL) == NULL);    /* too short */
    ASSERT(fb_redis_reply_array(&arr, 0, 2, NULL) == NULL);                 /* too long */
    ASSERT(fb_redis_reply_array(&arr, 0, 3, "si") == NULL);                 /* wrong types */
    ASSERT(fb_redis_reply_array(&arr, 0, 3, "a") == NULL);
    ASSERT(fb_redis_reply_array(&empty, 0, 0, "i") == &empty);
    ASSERT(fb_redis_reply_array(&i7, 0, FB_REDIS_NOMAX, NULL) == NULL); /* not an array */
    ASSERT(fb_redis_reply_array(NULL, 0, FB_REDIS_NOMAX, NULL) == NULL);

    long long v = -1;
    ASSERT(fb_redis_reply_int(&i7, &v));
    ASSERT_EQ(v, 7);
    v = -1;
    ASSERT(!fb_redis_reply_int(&str, &v));
    ASSERT(!fb_redis_reply_int(NULL, &v));
    ASSERT_EQ(v, -1);

    size_t len = 0;
    ASSERT(fb_redis_reply_str(&str, &len) == str.str);
    ASSERT_EQ(len, 2);
    ASSERT(fb_redis_reply_str(&str, NULL) == str.str);
    ASSERT(fb_redis_reply_str(&pong, &len) == NULL); /* a status is not a string */
    ASSERT(fb_redis_reply_str(NULL, &len) == NULL);

    ASSERT(fb_redis_reply_is_status(&pong));
    ASSERT(!fb_redis_reply_is_status(&str));
    ASSERT(!fb_redis_reply_is_status(NULL));
    return 0;
}
