/* SPDX-License-Identifier: MIT */
/*
 * test_http_client.c - the outgoing HTTP client against a real local HTTP/1.1 server
 * (tests/support/http_peer.py, started per test on a free port and killed at the end), plus the
 * pure retry-delay and Retry-After helpers. Every loop test ends with fb_test_loop_close_strict().
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "frichebot/log.h"
#include "io/http_client.h"
#include "io/metrics.h"
#include "task.h"

/* ---- the peer server ---------------------------------------------------------------------- */

typedef struct peer_s {
    pid_t pid;
    int port;
} peer_t;

/* True when something accepts TCP connections on 127.0.0.1:port. */
static int port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

/* Starts http_peer.py on a free port and waits until it accepts connections (10 s at most). */
static void peer_start(peer_t *p)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        p->port = fb_test_free_port();
        ASSERT_GT(p->port, 0);
        char port[16];
        snprintf(port, sizeof(port), "%d", p->port);
        pid_t pid = fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL); /* dies with the test */
            execlp("python3", "python3", FB_SOURCE_DIR "/tests/support/http_peer.py", "--port",
                   port, (char *)NULL);
            fprintf(stderr, "cannot exec python3: %s\n", strerror(errno));
            _exit(127);
        }
        p->pid = pid;
        for (int i = 0; i < 1000; i++) {
            if (port_open(p->port))
                return;
            int status;
            if (waitpid(pid, &status, WNOHANG) == pid)
                break; /* port taken meanwhile, or python missing: try again */
            struct timespec ts = {0, 10000000L};
            nanosleep(&ts, NULL);
        }
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    FB_TEST_FAIL("could not start tests/support/http_peer.py");
}

static void peer_stop(peer_t *p)
{
    if (p->pid > 0) {
        kill(p->pid, SIGTERM);
        waitpid(p->pid, NULL, 0);
        p->pid = 0;
    }
}

/* Returns a URL on the peer (a new string: free it). */
static char *peer_url(const peer_t *p, const char *path)
{
    return fb_asprintf("http://127.0.0.1:%d%s", p->port, path);
}

/* ---- results and loop helpers -----------------------------------------------------------------
 */

typedef struct result_s {
    uv_loop_t *loop;
    int calls;
    int status;
    int error;
    unsigned attempts;
    char *body;
    size_t body_len;
    char *content_type;
    char *x_method;
    char *x_got;
    char *x_peer;
    char *tag;
    uint64_t done_ms;
} result_t;

static void result_init(result_t *r, uv_loop_t *loop)
{
    memset(r, 0, sizeof(*r));
    r->loop = loop;
}

static void result_free(result_t *r)
{
    FB_FREE(r->body);
    FB_FREE(r->content_type);
    FB_FREE(r->x_method);
    FB_FREE(r->x_got);
    FB_FREE(r->x_peer);
    FB_FREE(r->tag);
}

/* Copies what the (borrowed) response holds. */
static void on_result(const fb_http_response_t *resp, void *arg)
{
    result_t *r = arg;
    result_free(r);
    r->calls++;
    r->status = resp->status;
    r->error = resp->error;
    r->attempts = resp->attempts;
    ASSERT_NOT_NULL(resp->body);
    ASSERT_EQ(resp->body[resp->body_len], '\0');
    r->body = fb_malloc(resp->body_len + 1);
    memcpy(r->body, resp->body, resp->body_len + 1);
    r->body_len = resp->body_len;
    r->content_type = fb_strdup(fb_http_response_header(resp, "Content-Type"));
    r->x_method = fb_strdup(fb_http_response_header(resp, "X-Method"));
    r->x_got = fb_strdup(fb_http_response_header(resp, "X-Got"));
    r->x_peer = fb_strdup(fb_http_response_header(resp, "x-peer"));
    r->tag = fb_strdup(resp->tag);
    r->done_ms = uv_now(r->loop);
}

/* Runs the loop until `cond` holds; fails if the loop runs out of work first. */
#define RUN_UNTIL(loop, cond)                                                                      \
    do {                                                                                           \
        while (!(cond)) {                                                                          \
            if (uv_run((loop), UV_RUN_ONCE) == 0 && !(cond))                                       \
                FB_TEST_FAIL("loop went idle before %s", #cond);                                   \
        }                                                                                          \
    } while (0)

static void on_closed(void *arg)
{
    (*(int *)arg)++;
}

/* Closes the client, checks that `done` fires once and only later, and that no handle leaks. */
static void close_client(uv_loop_t *loop, fb_http_client_t *c)
{
    int closed = 0;
    fb_http_client_close(c, on_closed, &closed);
    ASSERT_EQ(closed, 0); /* never inside the call */
    uv_run(loop, UV_RUN_DEFAULT);
    ASSERT_EQ(closed, 1);
    fb_test_loop_close_strict(loop);
}

/* Options for the tests: short retry delays so that retries take milliseconds. */
static fb_http_client_opts_t test_opts(void)
{
    fb_http_client_opts_t o;
    memset(&o, 0, sizeof(o));
    o.timeout_ms = 5000;
    o.connect_timeout_ms = 2000;
    o.max_response_bytes = (size_t)64 << 10;
    o.max_host_connections = 2;
    o.retry.delays_ms[0] = 20;
    o.retry.delays_ms[1] = 40;
    o.retry.n_delays = 2;
    o.retry.jitter_percent = 50;
    o.retry.max_attempts = 3;
    return o;
}

/* Starts `method url` (path on the peer) with `cb = on_result`; asserts acceptance. */
static void start(fb_http_client_t *c, const peer_t *p, fb_http_request_t *req, const char *path,
                  result_t *res)
{
    char *url = peer_url(p, path);
    req->url = url;
    ASSERT_OK(fb_http_client_request(c, req, on_result, res));
    fb_free(url); /* the request was copied */
    req->url = NULL;
    ASSERT_EQ(res->calls, 0); /* never called synchronously */
}

/* True when the metrics text has exactly `line`. */
static int metrics_have(const char *line)
{
    fb_buf_t out;
    fb_buf_init(&out, 1 << 20);
    ASSERT_OK(fb_metrics_render(&out));
    int found = strstr(fb_buf_str(&out), line) != NULL;
    fb_buf_free(&out);
    return found;
}

/* ---- tests against the peer -------------------------------------------------------------------
 */

TEST_IMPL(http_client_get_ok)
{
    peer_t p;
    peer_start(&p);
    fb_metrics_reset();
    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    fb_http_client_opts_t o = test_opts();
    fb_http_client_t *c = fb_http_client_create(&loop, &o);
    ASSERT_NOT_NULL(c);

    result_t res;
    result_init(&res, &loop);
    fb_http_request_t req = {0};
    start(c, &p, &req, "/hello", &res);
    ASSERT_EQ(fb_http_client_pending(c), 1);
    RUN_UNTIL(&loop, res.calls == 1);
    ASSERT_EQ(fb_http_client_pending(c), 0);
    ASSERT_EQ(res.error, 0);
    ASSERT_EQ(res.status, 200);
    ASSERT_EQ(res.attempts, 1);
    ASSERT_STR_EQ(res.body, "hello world");
    ASSERT_EQ(res.body_len, 11);
    ASSERT_STR_EQ(res.content_type, "text/plain");
    ASSERT_STR_EQ(res.x_peer, "yes"); /* looked up as "x-peer": case-insensitive */
    ASSERT_STR_EQ(res.tag, "[req|1|GET 127.0.0.1/hello]");
    ASSERT(metrics_have("frichebot_http_client_requests_total{outcome=\"ok\"} 1\n"));

    close_client(&loop, c);
    ASSERT_EQ(res.calls, 1);
    result_free(&res);
    peer_stop(&p);
    return 0;
}

TEST_IMPL(http_client_post_echo)
{
    peer_t p;
    peer_start(&p);
    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    fb_http_client_opts_t o = test_opts();
    fb_http_client_t *c = fb_http_client_create(&loop, &o);
    ASSERT_NOT_NULL(c);

    /* A binary body (with a NUL) and caller headers go through unchanged. */
    static const char body[] = "{\"a\":1}\0tail";
    const char *hdrs[] = {"Content-Type: application/json", "X-Test: hi", NULL};
    result_t res;
    result_init(&res, &loop);
    fb_http_request_t req = {
        .method = "POST", .headers = hdrs, .body = body, .body_len = sizeof(body) - 1};
    start(c, &p, &req, "/echo", &res);

    /* No Content-Type from the caller: none is sent (curl's form default is suppressed). */
    result_t bare;
    result_init(&bare, &loop);
    fb_http_request_t req2 = {.method = "POST", .body = "x", .body_len = 1};
    start(c, &p, &req2, "/echo", &bare);

    /* A PUT without a body. */
    result_t put;
    result_init(&put, &loop);
    fb_http_request_t req3 = {.method = "PUT"};
    start(c, &p, &req3, "/echo", &put);

    RUN_UNTIL(&loop, res.calls && bare.calls && put.calls);
    ASSERT_EQ(res.error, 0);
    ASSERT_EQ(res.status, 200);
    ASSERT_EQ(res.body_len, sizeof(body) - 1);
    ASSERT_EQ(memcmp(res.body, body, sizeof(body) - 1), 0);
    ASSERT_STR_EQ(res.content_type, "application/json");
    ASSERT_STR_EQ(res.x_method, "POST");
    ASSERT_STR_EQ(res.x_got, "hi");
    ASSERT_STR_EQ(bare.content_type, "none");
    ASSERT_STR_EQ(bare.body, "x");
    ASSERT_STR_EQ(bare.x_got, "none");
    ASSERT_EQ(put.error, 0);
    ASSERT_STR_EQ(put.x_method, "PUT");
    ASSERT_EQ(put.body_len, 0);
    ASSERT_STR_EQ(put.body, "");

    close_client(&loop, c);
    ASSERT_EQ(res.calls + bare.calls + put.calls, 3);
    result_free(&res);
    result_free(&bare);
    result_free(&put);
    peer_stop(&p);
    return 0;
}

TEST_IMPL(http_client_retry_5xx)
{
    peer_t p;
    peer_start(&p);
    fb_metrics_reset();
    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    fb_http_client_opts_t o = test_opts();
    fb_http_client_t *c = fb_http_client_create(&loop, &o);
    ASSERT_NOT_NULL(c);

    result_t res;
    result_init(&res, &loop);
    fb_http_request_t req = {0};
    start(c, &p, &req, "/flaky?id=r5xx&fails=2", &res);
    RUN_UNTIL(&loop, res.calls == 1);
    ASSERT_EQ(res.error, 0);
    ASSERT_EQ(res.status, 200);
    ASSERT_EQ(res.attempts, 3);
    ASSERT_STR_EQ(res.body, "ok after 3");
    /* The tag never shows the query string. */
    ASSERT_STR_EQ(res.tag, "[req|1|GET 127.0.0.1/flaky]");
    ASSERT(metrics_have("frichebot_http_client_requests_total{outcome=\"ok\"} 1\n"));

    /* Three 503 in a row exhaust max_attempts = 3: final FB_EHTTP with the last 503. */
    result_t bad;
    result_init(&bad, &loop);
    start(c, &p, &req, "/flaky?id=r5xx-bad&fails=10", &bad);
    RUN_UNTIL(&loop, bad.calls == 1);
    ASSERT_EQ(bad.error, FB_EHTTP);
    ASSERT_EQ(bad.status, 503);
    ASSERT_EQ(bad.attempts, 3);
    ASSERT_STR_EQ(bad.body, "failing 3");

    close_client(&loop, c);
    ASSERT_EQ(res.calls, 1);
    ASSERT_EQ(bad.calls, 1);
    result_free(&res);
    result_free(&bad);
    peer_stop(&p);
    return 0;
}

TEST_IMPL(http_client_post_retry_needs_flag)
{
    peer_t p;
    peer_start(&p);
    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    fb_http_client_opts_t o = test_opts();
    fb_http_client_t *c = fb_http_client_create(&loop, &o);
    ASSERT_NOT_NULL(c);

    /* A POST is not idempotent: a 503 is final unless the caller says retrying is safe. */
    result_t once, retried;
    result_init(&once, &loop);
    result_init(&retried, &loop);
    fb_http_request_t req = {.method = "POST", .body = "{}", .body_len = 2};
    start(c, &p, &req, "/flaky?id=post-a&fails=2", &once);
    req.idempotent = true;
    start(c, &p, &req, "/flaky?id=post-b&fails=2", &retried);
    RUN_UNTIL(&loop, once.calls && retried.calls);
    ASSERT_EQ(once.error, FB_EHTTP);
    ASSERT_EQ(once.status, 503);
    ASSERT_EQ(once.attempts, 1);
    ASSERT_EQ(retried.error, 0);
    ASSERT_EQ(retried.status, 200);
    ASSERT_EQ(retried.attempts, 3);

    close_client(&loop, c);
    result_free(&once);
    result_free(&retried);
    peer_stop(&p);
    return 0;
}

TEST_IMPL(http_client_429_retry_after)
{
    peer_t p;
    peer_start(&p);
    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    fb_http_client_opts_t o = test_opts(); /* table delays are 20-40 ms: Retry-After must win */
    fb_http_client_t *c = fb_http_client_create(&loop, &o);
    ASSERT_NOT_NULL(c);

    result_t res;
    result_init(&res, &loop);
    fb_http_request_t req = {0};
    uv_update_time(&loop);
    uint64_t t0 = uv_now(&loop);
    start(c, &p, &req, "/retry-after?id=ra&secs=1", &res);
    RUN_UNTIL(&loop, res.calls == 1);
    ASSERT_EQ(res.error, 0);
    ASSERT_EQ(res.status, 200);
    ASSERT_EQ(res.attempts, 2);
    ASSERT_STR_EQ(res.body, "ok");
    ASSERT_GE(res.done_ms - t0, 1000);

    close_client(&loop, c);
    result_free(&res);
    peer_stop(&p);
    return 0;
}

TEST_IMPL(http_client_404_final)
{
    peer_t p;
    peer_start(&p);
    fb_metrics_reset();
    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    fb_http_client_opts_t o = test_opts();
    fb_http_client_t *c = fb_http_client_create(&loop, &o);
    ASSERT_NOT_NULL(c);

    result_t res;
    result_init(&res, &loop);
    fb_http_request_t req = {0};
    start(c, &p, &req, "/status/404", &res);
    RUN_UNTIL(&loop, res.calls == 1);
    ASSERT_EQ(res.error, FB_EHTTP);
    ASSERT_EQ(res.status, 404);
    ASSERT_EQ(res.attempts, 1);
    ASSERT_STR_EQ(res.body, "status 404"); /* error bodies are kept (Matrix errcode JSON) */
    ASSERT(metrics_have("frichebot_http_client_requests_total{outcome=\"http_error\"} 1\n"));

    close_client(&loop, c);
    result_free(&res);
    peer_stop(&p);
    return 0;
}

TEST_IMPL(http_client_timeout)
{
    peer_t p;
    peer_start(&p);
    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    fb_http_client_opts_t o = test_opts();
    fb_http_client_t *c = fb_http_client_create(&loop, &o);
    ASSERT_NOT_NULL(c);

    /* A 200 ms per-request timeout against a 3 s response, two attempts allowed. */
    fb_retry_policy_t two = {.delays_ms = {10}, .n_delays = 1, .max_attempts = 2};
    result_t res;
    result_init(&res, &loop);
    fb_http_request_t req = {.timeout_ms = 200, .retry = &two};
    uv_update_time(&loop);
    uint64_t t0 = uv_now(&loop);
    start(c, &p, &req, "/slow?ms=3000", &res);
    RUN_UNTIL(&loop, res.calls == 1);
    ASSERT_EQ(res.error, FB_ETIMEDOUT);
    ASSERT_EQ(res.status, 0);
    ASSERT_EQ(res.attempts, 2);
    ASSERT_GE(res.done_ms - t0, 400);

    close_client(&loop, c);
    result_free(&res);
    peer_stop(&p);
    return 0;
}

TEST_IMPL(http_client_too_big)
{
    peer_t p;
    peer_start(&p);
    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    fb_http_client_opts_t o = test_opts();
    o.max_response_bytes = 1000;
    fb_http_client_t *c = fb_http_client_create(&loop, &o);
    ASSERT_NOT_NULL(c);

    /* Over the maximum with a Content-Length (refused up front) and chunked (cut while
     * streaming); exactly the maximum is fine either way. Oversized is final: one attempt. */
    result_t big, big_chunked, exact, exact_chunked, head;
    result_init(&head, &loop);
    result_init(&big, &loop);
    result_init(&big_chunked, &loop);
    result_init(&exact, &loop);
    result_init(&exact_chunked, &loop);
    fb_http_request_t req = {0};
    start(c, &p, &req, "/big?bytes=5000", &big);
    start(c, &p, &req, "/big?bytes=100000&chunked=1", &big_chunked);
    start(c, &p, &req, "/big?bytes=1000", &exact);
    start(c, &p, &req, "/big?bytes=1000&chunked=1", &exact_chunked);
    /* A HEAD announcing a large body is fine: no body comes. */
    fb_http_request_t head_req = {.method = "HEAD"};
    start(c, &p, &head_req, "/big?bytes=5000", &head);
    RUN_UNTIL(&loop,
              big.calls && big_chunked.calls && exact.calls && exact_chunked.calls && head.calls);
    ASSERT_EQ(head.error, 0);
    ASSERT_EQ(head.status, 200);
    ASSERT_EQ(head.body_len, 0);
    ASSERT_EQ(big.error, FB_ETOOBIG);
    ASSERT_EQ(big.attempts, 1);
    ASSERT_EQ(big_chunked.error, FB_ETOOBIG);
    ASSERT_EQ(big_chunked.attempts, 1);
    ASSERT_EQ(exact.error, 0);
    ASSERT_EQ(exact.body_len, 1000);
    ASSERT_EQ(exact_chunked.error, 0);
    ASSERT_EQ(exact_chunked.body_len, 1000);
    ASSERT_EQ(exact_chunked.body[999], 'x');

    close_client(&loop, c);
    result_free(&big);
    result_free(&big_chunked);
    result_free(&exact);
    result_free(&exact_chunked);
    result_free(&head);
    peer_stop(&p);
    return 0;
}

TEST_IMPL(http_client_connect_refused)
{
    fb_metrics_reset();
    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    fb_http_client_opts_t o = test_opts();
    fb_http_client_t *c = fb_http_client_create(&loop, &o);
    ASSERT_NOT_NULL(c);

    peer_t nobody = {.pid = 0, .port = fb_test_free_port()}; /* nothing listens there */
    result_t res;
    result_init(&res, &loop);
    fb_http_request_t req = {0};
    start(c, &nobody, &req, "/hello", &res);
    RUN_UNTIL(&loop, res.calls == 1);
    ASSERT_EQ(res.error, FB_ECONNECT);
    ASSERT_EQ(res.status, 0);
    ASSERT_EQ(res.attempts, 3); /* the policy's max_attempts */
    ASSERT_EQ(res.body_len, 0);
    ASSERT(metrics_have("frichebot_http_client_requests_total{outcome=\"connect_error\"} 1\n"));

    close_client(&loop, c);
    result_free(&res);
    return 0;
}

/* Chains a second request from the first one's callback (requests may start from callbacks). */
typedef struct chain_s {
    fb_http_client_t *client;
    const peer_t *peer;
    result_t first, second;
} chain_t;

static void on_first(const fb_http_response_t *resp, void *arg)
{
    chain_t *ch = arg;
    on_result(resp, &ch->first);
    fb_http_request_t req = {0};
    char *url = peer_url(ch->peer, "/port");
    req.url = url;
    ASSERT_OK(fb_http_client_request(ch->client, &req, on_result, &ch->second));
    fb_free(url);
}

TEST_IMPL(http_client_connection_reuse)
{
    peer_t p;
    peer_start(&p);
    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    fb_http_client_opts_t o = test_opts();
    o.max_host_connections = 1;
    fb_http_client_t *c = fb_http_client_create(&loop, &o);
    ASSERT_NOT_NULL(c);

    /* Sequential: the second request, started from the first one's callback, comes from the
     * same source port, so it went over the same kept-alive connection. */
    chain_t ch = {.client = c, .peer = &p};
    result_init(&ch.first, &loop);
    result_init(&ch.second, &loop);
    char *url = peer_url(&p, "/port");
    fb_http_request_t req = {.url = url};
    ASSERT_OK(fb_http_client_request(c, &req, on_first, &ch));
    RUN_UNTIL(&loop, ch.second.calls == 1);
    ASSERT_EQ(ch.first.status, 200);
    ASSERT_EQ(ch.second.status, 200);
    ASSERT_GT(strtol(ch.first.body, NULL, 10), 0);
    ASSERT_STR_EQ(ch.first.body, ch.second.body);

    /* Concurrent, with one connection per host: both queue on that same connection. */
    result_t a, b;
    result_init(&a, &loop);
    result_init(&b, &loop);
    ASSERT_OK(fb_http_client_request(c, &req, on_result, &a));
    ASSERT_OK(fb_http_client_request(c, &req, on_result, &b));
    RUN_UNTIL(&loop, a.calls && b.calls);
    ASSERT_EQ(a.status, 200);
    ASSERT_EQ(b.status, 200);
    ASSERT_STR_EQ(a.body, ch.first.body);
    ASSERT_STR_EQ(b.body, ch.first.body);
    fb_free(url);

    close_client(&loop, c);
    result_free(&ch.first);
    result_free(&ch.second);
    result_free(&a);
    result_free(&b);
    peer_stop(&p);
    return 0;
}

/* Cancellation: a callback that tries to start a request while the client closes. */
typedef struct cancel_s {
    fb_http_client_t *client;
    result_t res;
    int retry_rc;
    int late_calls; /* callbacks of requests that should never have been accepted */
} cancel_t;

static void on_late(const fb_http_response_t *resp, void *arg)
{
    (void)resp;
    ((cancel_t *)arg)->late_calls++;
}

static void on_cancelled(const fb_http_response_t *resp, void *arg)
{
    cancel_t *x = arg;
    on_result(resp, &x->res);
    fb_http_request_t req = {.url = "http://127.0.0.1:1/never"};
    x->retry_rc = fb_http_client_request(x->client, &req, on_late, x);
}

TEST_IMPL(http_client_close_cancels)
{
    peer_t p;
    peer_start(&p);
    fb_metrics_reset();
    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    fb_http_client_opts_t o = test_opts();
    fb_http_client_t *c = fb_http_client_create(&loop, &o);
    ASSERT_NOT_NULL(c);

    /* One request in flight (a slow response), one waiting a minute for its retry. */
    cancel_t inflight = {.client = c}, waiting = {.client = c};
    result_init(&inflight.res, &loop);
    result_init(&waiting.res, &loop);
    char *slow = peer_url(&p, "/slow?ms=10000");
    char *flaky = peer_url(&p, "/flaky?id=cancel&fails=100");
    fb_retry_policy_t minute = {.delays_ms = {60000}, .n_delays = 1, .max_attempts = 5};
    fb_http_request_t r1 = {.url = slow};
    fb_http_request_t r2 = {.url = flaky, .retry = &minute};
    ASSERT_OK(fb_http_client_request(c, &r1, on_cancelled, &inflight));
    ASSERT_OK(fb_http_client_request(c, &r2, on_cancelled, &waiting));
    fb_free(slow);
    fb_free(flaky);
    RUN_UNTIL(&loop, fb_http_client_waiting(c) == 1);
    ASSERT_EQ(fb_http_client_pending(c), 2);
    ASSERT_EQ(inflight.res.calls + waiting.res.calls, 0);

    int closed = 0;
    fb_http_client_close(c, on_closed, &closed);
    /* Both completed inside close(), exactly once, with FB_ECANCELED. */
    ASSERT_EQ(inflight.res.calls, 1);
    ASSERT_EQ(waiting.res.calls, 1);
    ASSERT_EQ(inflight.res.error, FB_ECANCELED);
    ASSERT_EQ(waiting.res.error, FB_ECANCELED);
    ASSERT_EQ(inflight.res.status, 0); /* cut mid-attempt: nothing received */
    ASSERT_EQ(inflight.res.attempts, 1);
    ASSERT_EQ(waiting.res.status, 503); /* the last attempt's answer is kept */
    ASSERT_STR_EQ(waiting.res.body, "failing 1");
    ASSERT_EQ(waiting.res.attempts, 1);
    /* Requests started from those callbacks were refused, and their callbacks never fire. */
    ASSERT_EQ(inflight.retry_rc, FB_ECLOSING);
    ASSERT_EQ(waiting.retry_rc, FB_ECLOSING);
    ASSERT_EQ(closed, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(closed, 1);
    ASSERT_EQ(inflight.res.calls, 1);
    ASSERT_EQ(waiting.res.calls, 1);
    ASSERT_EQ(inflight.late_calls + waiting.late_calls, 0);
    ASSERT(metrics_have("frichebot_http_client_requests_total{outcome=\"canceled\"} 2\n"));
    fb_test_loop_close_strict(&loop);

    result_free(&inflight.res);
    result_free(&waiting.res);
    peer_stop(&p);
    return 0;
}

/* Closing from inside a completion callback, while another transfer is in flight. */
typedef struct close_cb_s {
    fb_http_client_t *client;
    result_t first;
    result_t other;
    int closed;
} close_cb_t;

static void on_first_then_close(const fb_http_response_t *resp, void *arg)
{
    close_cb_t *x = arg;
    on_result(resp, &x->first);
    fb_http_client_close(x->client, on_closed, &x->closed);
    ASSERT_EQ(x->other.calls, 1); /* cancelled before close() returned */
    ASSERT_EQ(x->closed, 0);
}

TEST_IMPL(http_client_close_from_callback)
{
    peer_t p;
    peer_start(&p);
    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    fb_http_client_opts_t o = test_opts();
    fb_http_client_t *c = fb_http_client_create(&loop, &o);
    ASSERT_NOT_NULL(c);

    close_cb_t x = {.client = c};
    result_init(&x.first, &loop);
    result_init(&x.other, &loop);
    char *slow = peer_url(&p, "/slow?ms=10000");
    char *hello = peer_url(&p, "/hello");
    fb_http_request_t r1 = {.url = slow};
    fb_http_request_t r2 = {.url = hello};
    ASSERT_OK(fb_http_client_request(c, &r1, on_result, &x.other));
    ASSERT_OK(fb_http_client_request(c, &r2, on_first_then_close, &x));
    fb_free(slow);
    fb_free(hello);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(x.first.calls, 1);
    ASSERT_EQ(x.first.status, 200);
    ASSERT_EQ(x.other.calls, 1);
    ASSERT_EQ(x.other.error, FB_ECANCELED);
    ASSERT_EQ(x.closed, 1);
    fb_test_loop_close_strict(&loop);

    result_free(&x.first);
    result_free(&x.other);
    peer_stop(&p);
    return 0;
}

TEST_IMPL(http_client_invalid_requests)
{
    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    fb_http_client_opts_t o = test_opts();
    fb_http_client_t *c = fb_http_client_create(&loop, &o);
    ASSERT_NOT_NULL(c);

    result_t res;
    result_init(&res, &loop);
    const char *crlf[] = {"X-Evil: a\r\nHost: b", NULL};
    const char *nocolon[] = {"NoColon", NULL};
    const char *badname[] = {"Bad Name: x", NULL};
    fb_http_request_t bad[] = {
        {.url = NULL},
        {.url = "not a url"},
        {.url = "127.0.0.1/no-scheme"},
        {.url = "ftp://127.0.0.1/file"},
        {.url = "file:///etc/passwd"},
        {.url = "http://127.0.0.1/a b"},
        {.url = "http://127.0.0.1/", .method = "get"},
        {.url = "http://127.0.0.1/", .method = "GET /x HTTP/1.1\r\n"},
        {.url = "http://127.0.0.1/", .method = ""},
        {.url = "http://127.0.0.1/", .headers = crlf},
        {.url = "http://127.0.0.1/", .headers = nocolon},
        {.url = "http://127.0.0.1/", .headers = badname},
        {.url = "http://127.0.0.1/", .body = NULL, .body_len = 3},
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(bad); i++) {
        int rc = fb_http_client_request(c, &bad[i], on_result, &res);
        if (rc != FB_EINVAL)
            FB_TEST_FAIL("case %zu: got %d (%s), want FB_EINVAL", i, rc, fb_err_name(rc));
    }
    ASSERT_EQ(fb_http_client_request(c, &bad[1], NULL, NULL), FB_EINVAL);
    ASSERT_EQ(fb_http_client_pending(c), 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    ASSERT_EQ(res.calls, 0);
    ASSERT_NULL(fb_http_client_create(&loop, NULL));

    close_client(&loop, c);
    ASSERT_EQ(res.calls, 0);
    return 0;
}

TEST_IMPL(http_client_logs_no_secrets)
{
    peer_t p;
    peer_start(&p);
    char path[] = "/tmp/fb-test-http-log-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    int saved = dup(STDERR_FILENO);
    ASSERT_GE(saved, 0);
    ASSERT_OK(fb_log_apply_spec("info,client=trace", NULL));
    ASSERT_GE(dup2(fd, STDERR_FILENO), 0);

    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    fb_http_client_opts_t o = test_opts();
    fb_http_client_t *c = fb_http_client_create(&loop, &o);
    ASSERT_NOT_NULL(c);
    const char *hdrs[] = {"Authorization: Bearer SECRET-HEADER", NULL};
    result_t res, res2;
    result_init(&res, &loop);
    result_init(&res2, &loop);
    fb_http_request_t req = {
        .method = "POST", .headers = hdrs, .body = "SECRET-BODY", .body_len = 11};
    start(c, &p, &req, "/echo?access_token=SECRET-QUERY#SECRET-FRAGMENT", &res);
    fb_http_request_t req2 = {0};
    char *url = fb_asprintf("http://user:SECRET-PASS@127.0.0.1:%d/flaky?id=log&fails=1", p.port);
    req2.url = url;
    ASSERT_OK(fb_http_client_request(c, &req2, on_result, &res2));
    fb_free(url);
    RUN_UNTIL(&loop, res.calls && res2.calls);
    close_client(&loop, c);

    ASSERT_GE(dup2(saved, STDERR_FILENO), 0);
    close(saved);
    fb_log_set_level_all(FB_LOG_INFO);
    ASSERT_EQ(res.status, 200);
    ASSERT_STR_EQ(res.body, "SECRET-BODY");
    ASSERT_EQ(res2.status, 200);
    ASSERT_EQ(res2.attempts, 2);

    char log[16384];
    ssize_t n = pread(fd, log, sizeof(log) - 1, 0);
    close(fd);
    unlink(path);
    ASSERT_GT(n, 0);
    log[n] = '\0';
    if (strstr(log, "SECRET"))
        FB_TEST_FAIL("a secret reached the log:\n%s", log);
    ASSERT_NOT_NULL(strstr(log, "[req|1|POST 127.0.0.1/echo] attempt 1"));
    ASSERT_NOT_NULL(strstr(log, "[req|2|GET 127.0.0.1/flaky] retry in"));
    result_free(&res);
    result_free(&res2);
    peer_stop(&p);
    return 0;
}

/* ---- pure helpers -------------------------------------------------------------------------- */

TEST_IMPL(http_retry_after_parse)
{
    time_t now = 1700000000; /* 2023-11-14T22:13:20Z */
    ASSERT_EQ(fb_http_retry_after_ms("1", now), 1000);
    ASSERT_EQ(fb_http_retry_after_ms("0", now), 0);
    ASSERT_EQ(fb_http_retry_after_ms(" 120 ", now), 120000);
    ASSERT_EQ(fb_http_retry_after_ms("300", now), 300000);
    ASSERT_EQ(fb_http_retry_after_ms("301", now), FB_HTTP_RETRY_AFTER_MAX_MS);
    ASSERT_EQ(fb_http_retry_after_ms("99999999999999999999999", now), FB_HTTP_RETRY_AFTER_MAX_MS);
    ASSERT_EQ(fb_http_retry_after_ms("Tue, 14 Nov 2023 22:13:50 GMT", now), 30000);
    ASSERT_EQ(fb_http_retry_after_ms("Tue, 14 Nov 2023 22:00:00 GMT", now), 0);
    ASSERT_EQ(fb_http_retry_after_ms("Wed, 15 Nov 2023 22:13:20 GMT", now),
              FB_HTTP_RETRY_AFTER_MAX_MS);
    ASSERT_EQ(fb_http_retry_after_ms("12abc", now), -1);
    ASSERT_EQ(fb_http_retry_after_ms("soon", now), -1);
    ASSERT_EQ(fb_http_retry_after_ms("", now), -1);
    ASSERT_EQ(fb_http_retry_after_ms("-5", now), -1);
    ASSERT_EQ(fb_http_retry_after_ms(NULL, now), -1);
    return 0;
}

/* fb_http_client_cancel(): only the requests of one (cb, arg), each completed once inside the
 * call; a request started from their callbacks, and another owner's request, are left alone. */
typedef struct owner_s {
    fb_http_client_t *client;
    result_t res;
    result_t late; /* the request started from a cancelled callback */
    int retry_rc;
} owner_t;

static const fb_retry_policy_t once = {.delays_ms = {1000}, .n_delays = 1, .max_attempts = 1};

static void on_owner_cancelled(const fb_http_response_t *resp, void *arg)
{
    owner_t *x = arg;
    on_result(resp, &x->res);
    if (x->res.calls == 1) {
        fb_http_request_t req = {.url = "http://127.0.0.1:1/never", .retry = &once};
        x->retry_rc = fb_http_client_request(x->client, &req, on_result, &x->late);
    }
}

TEST_IMPL(http_client_cancel)
{
    peer_t p;
    peer_start(&p);
    fb_metrics_reset();
    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    fb_http_client_opts_t o = test_opts();
    fb_http_client_t *c = fb_http_client_create(&loop, &o);
    ASSERT_NOT_NULL(c);

    owner_t x = {.client = c};
    result_init(&x.res, &loop);
    result_init(&x.late, &loop);
    result_t other;
    result_init(&other, &loop);
    char *slow = peer_url(&p, "/slow?ms=10000");
    char *flaky = peer_url(&p, "/flaky?id=owner&fails=100");
    char *slow2 = peer_url(&p, "/slow?ms=300");
    fb_retry_policy_t minute = {.delays_ms = {60000}, .n_delays = 1, .max_attempts = 5};
    fb_http_request_t r1 = {.url = slow};
    fb_http_request_t r2 = {.url = flaky, .retry = &minute};
    fb_http_request_t r3 = {.url = slow2};
    ASSERT_OK(fb_http_client_request(c, &r1, on_owner_cancelled, &x));
    ASSERT_OK(fb_http_client_request(c, &r2, on_owner_cancelled, &x));
    ASSERT_OK(fb_http_client_request(c, &r3, on_result, &other));
    fb_free(slow);
    fb_free(flaky);
    fb_free(slow2);
    RUN_UNTIL(&loop, fb_http_client_waiting(c) == 1);
    ASSERT_EQ(x.res.calls, 0);

    /* Another (cb, arg) matches nothing. */
    ASSERT_EQ(fb_http_client_cancel(c, on_result, &x), 0);
    ASSERT_EQ(fb_http_client_cancel(c, on_owner_cancelled, &x), 2);
    /* Both completed inside the call, once each, with FB_ECANCELED. */
    ASSERT_EQ(x.res.calls, 2);
    ASSERT_EQ(x.res.error, FB_ECANCELED);
    ASSERT_EQ(fb_http_client_waiting(c), 0);
    /* The request started from the first callback was accepted and is not cancelled. */
    ASSERT_EQ(x.retry_rc, 0);
    ASSERT_EQ(x.late.calls, 0);
    ASSERT_EQ(fb_http_client_cancel(c, on_owner_cancelled, &x), 0);
    /* The other owner's request and the late one complete normally; the 10 s one is gone. */
    RUN_UNTIL(&loop, other.calls == 1 && x.late.calls == 1);
    ASSERT_EQ(other.error, 0);
    ASSERT_EQ(other.status, 200);
    ASSERT_EQ(x.late.error, FB_ECONNECT);
    ASSERT_EQ(fb_http_client_pending(c), 0);
    ASSERT_EQ(x.res.calls, 2);
    ASSERT(metrics_have("frichebot_http_client_requests_total{outcome=\"canceled\"} 2\n"));

    int closed = 0;
    fb_http_client_close(c, on_closed, &closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(closed, 1);
    fb_test_loop_close_strict(&loop);
    result_free(&x.res);
    result_free(&x.late);
    result_free(&other);
    peer_stop(&p);
    return 0;
}
