/* SPDX-License-Identifier: MIT */
/*
 * test_http_server.c - the HTTP server on a real loop: routes, limits, deferred answers, orphaned
 * requests, and a teardown that leaves no handle behind. A client thread talks to the server with
 * blocking sockets while the loop runs on the test's main thread.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "frichebot/alloc.h"
#include "http_server.h"
#include "task.h"

struct fixture {
    uv_loop_t loop;
    fb_http_server_t *srv;
    int port;
    uv_async_t done;
    uv_timer_t later;
    fb_http_req_t *deferred;
    char answers[9][2048];
    int deferred_answered;
};

static int on_hello(fb_http_req_t *req, void *arg)
{
    (void)arg;
    fb_http_respond(req, 200, "text/plain", "bonjour", 7, NULL);
    return 0;
}

static int on_echo(fb_http_req_t *req, void *arg)
{
    (void)arg;
    size_t len;
    const char *body = fb_http_req_body(req, &len);
    char ct[64];
    ASSERT_EQ(fb_http_req_header(req, "content-type:", ct, sizeof(ct)), 10);
    ASSERT_STR_EQ(ct, "text/x-fb1");
    fb_http_respond(req, 200, "text/plain", body, len, NULL);
    return 0;
}

static int on_fail(fb_http_req_t *req, void *arg)
{
    (void)req;
    (void)arg;
    return FB_EIO;
}

static int on_silent(fb_http_req_t *req, void *arg)
{
    (void)req;
    (void)arg;
    return 0; /* a buggy handler: claims success, answers nothing */
}

static void answer_later(uv_timer_t *t)
{
    struct fixture *f = t->data;
    const char *q = fb_http_req_query(f->deferred);
    char body[128];
    int n = snprintf(body, sizeof(body), "later %s", q);
    fb_http_respond(f->deferred, 200, "text/plain", body, (size_t)n, NULL);
    f->deferred = NULL;
    f->deferred_answered++;
}

static int on_slow(fb_http_req_t *req, void *arg)
{
    struct fixture *f = arg;
    f->deferred = req;
    uv_timer_start(&f->later, answer_later, 150, 0);
    return FB_EAGAIN;
}

/* Sends `req` and returns what the server answered until it closed or 2 s passed. */
static void roundtrip(int port, const char *req, size_t len, char *out, size_t cap, int shut)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ASSERT_EQ(write(fd, req, len), (ssize_t)len);
    if (shut == 1) { /* the client leaves before the answer */
        close(fd);
        out[0] = '\0';
        return;
    }
    size_t pos = 0;
    for (;;) {
        ssize_t n = read(fd, out + pos, cap - 1 - pos);
        if (n <= 0)
            break;
        pos += (size_t)n;
        if (strstr(out, "\r\n\r\n") && shut == 2)
            break;
    }
    out[pos] = '\0';
    close(fd);
}

static void client_thread(void *arg)
{
    struct fixture *f = arg;
    static const char get_hello[] = "GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    static const char get_none[] = "GET /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    static const char del_hello[] = "DELETE /hello HTTP/1.1\r\nHost: t\r\n\r\n";
    static const char post_echo[] = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: text/x-fb1\r\n"
                                    "Content-Length: 5\r\nConnection: close\r\n\r\nabcde";
    static const char post_big[] = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n";
    static const char get_slow[] = "GET /slow?x=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    static const char get_fail[] = "GET /fail HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    static const char get_silent[] = "GET /silent HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    roundtrip(f->port, get_hello, sizeof(get_hello) - 1, f->answers[0], 2048, 0);
    roundtrip(f->port, get_none, sizeof(get_none) - 1, f->answers[1], 2048, 0);
    roundtrip(f->port, del_hello, sizeof(del_hello) - 1, f->answers[2], 2048, 0);
    roundtrip(f->port, post_echo, sizeof(post_echo) - 1, f->answers[3], 2048, 0);
    roundtrip(f->port, post_big, sizeof(post_big) - 1, f->answers[4], 2048, 0);
    roundtrip(f->port, get_slow, sizeof(get_slow) - 1, f->answers[5], 2048, 0);
    roundtrip(f->port, get_fail, sizeof(get_fail) - 1, f->answers[6], 2048, 0);
    roundtrip(f->port, get_silent, sizeof(get_silent) - 1, f->answers[8], 2048, 0);
    /* A deferred request whose client leaves: the later answer must be dropped safely. */
    roundtrip(f->port, get_slow, sizeof(get_slow) - 1, f->answers[7], 2048, 1);
    usleep(400 * 1000);
    uv_async_send(&f->done);
}

static void on_done(uv_async_t *a)
{
    struct fixture *f = a->data;
    ASSERT_EQ(fb_http_server_inflight(f->srv), 0);
    fb_http_server_destroy(f->srv);
    uv_close((uv_handle_t *)&f->done, NULL);
    uv_close((uv_handle_t *)&f->later, NULL);
}

TEST_IMPL(http_server_routes_limits_and_teardown)
{
    struct fixture f;
    memset(&f, 0, sizeof(f));
    ASSERT_OK(uv_loop_init(&f.loop));
    char host[] = "127.0.0.1";
    fb_server_opts_t opts = {.listen_host = host,
                             .listen_port = fb_test_free_port(),
                             .max_body_bytes = 100,
                             .max_header_bytes = 4096,
                             .idle_timeout_s = 5,
                             .keepalive_timeout_s = 5,
                             .shutdown_deadline_s = 1};
    f.srv = fb_http_server_create(&f.loop, &opts);
    ASSERT_NOT_NULL(f.srv);
    ASSERT_OK(fb_http_server_route(f.srv, "/hello", FB_HTTP_GET, "hello", on_hello, &f));
    ASSERT_OK(fb_http_server_route(f.srv, "/echo", FB_HTTP_POST, "echo", on_echo, &f));
    ASSERT_OK(fb_http_server_route(f.srv, "/slow", FB_HTTP_GET, "slow", on_slow, &f));
    ASSERT_OK(fb_http_server_route(f.srv, "/fail", FB_HTTP_GET, "fail", on_fail, &f));
    ASSERT_OK(fb_http_server_route(f.srv, "/silent", FB_HTTP_GET, "silent", on_silent, &f));
    ASSERT_EQ(fb_http_server_route(f.srv, "relative", FB_HTTP_GET, "x", on_hello, &f), FB_EINVAL);
    ASSERT_OK(fb_http_server_start(f.srv));
    f.port = fb_http_server_port(f.srv);
    ASSERT_EQ(f.port, opts.listen_port);
    uv_async_init(&f.loop, &f.done, on_done);
    f.done.data = &f;
    uv_timer_init(&f.loop, &f.later);
    f.later.data = &f;

    uv_thread_t tid;
    ASSERT_OK(uv_thread_create(&tid, client_thread, &f));
    uv_run(&f.loop, UV_RUN_DEFAULT);
    uv_thread_join(&tid);
    fb_test_loop_close_strict(&f.loop);

    ASSERT(strncmp(f.answers[0], "HTTP/1.1 200", 12) == 0);
    ASSERT_NOT_NULL(strstr(f.answers[0], "\r\n\r\nbonjour"));
    ASSERT(strncmp(f.answers[1], "HTTP/1.1 404", 12) == 0);
    ASSERT_NOT_NULL(strstr(f.answers[1], "\"error\":\"not_found\""));
    ASSERT(strncmp(f.answers[2], "HTTP/1.1 405", 12) == 0);
    ASSERT_NOT_NULL(strstr(f.answers[2], "allow: GET, HEAD"));
    ASSERT(strncmp(f.answers[3], "HTTP/1.1 200", 12) == 0);
    ASSERT_NOT_NULL(strstr(f.answers[3], "\r\n\r\nabcde"));
    ASSERT(strncmp(f.answers[4], "HTTP/1.1 413", 12) == 0);
    ASSERT(strncmp(f.answers[5], "HTTP/1.1 200", 12) == 0);
    ASSERT_NOT_NULL(strstr(f.answers[5], "\r\n\r\nlater x=1"));
    ASSERT(strncmp(f.answers[6], "HTTP/1.1 500", 12) == 0);
    ASSERT(strncmp(f.answers[8], "HTTP/1.1 500", 12) == 0);
    ASSERT_EQ(f.deferred_answered, 2);
    return 0;
}
