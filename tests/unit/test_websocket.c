/* SPDX-License-Identifier: MIT */
/*
 * test_websocket.c - websockets of the HTTP server against a real client over TCP: the hand-written
 * client of ws_client.h runs on a thread with blocking sockets while the loop runs on the test's
 * main thread. Messages, fragments, limits, ordering, close codes, refused upgrades, drain, and a
 * destroy with connections still open that leaves the loop closable.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "frichebot/log.h"
#include "io/http_server.h"
#include "io/metrics.h"
#include "task.h"
#include "ws_client.h"

struct wfix {
    uv_loop_t loop;
    fb_http_server_t *srv;
    int port;
    uv_async_t done; /* client thread -> loop: the scenario is over, destroy the server */
    void (*scenario)(struct wfix *f);
    bool destroy_with_open; /* on_done: sockets are still open on purpose */
    int opened, closed, refused_open;
    size_t refused_len[8];
    bool refused_bin[8];
    int nrefused;
    char peer[64];
    char header[64];
    int header_after_open; /* fb_ws_header() once open() returned: must be -1 */
    int flood;             /* frames fb_ws_send() took before FB_EAGAIN */
    int flood_rc;
    long inflight_at_drain, ws_at_drain;
    int send_after_close; /* fb_ws_send() once fb_ws_close() was called */
    int send_in_closed;   /* fb_ws_send() from closed() */
    size_t ws_at_done;
};

static int ws_open(fb_ws_t *ws, void *arg)
{
    struct wfix *f = arg;
    f->opened++;
    snprintf(f->peer, sizeof(f->peer), "%s", fb_ws_peer(ws));
    char v[64];
    if (fb_ws_header(ws, "x-fb-test:", v, sizeof(v)) > 0)
        snprintf(f->header, sizeof(f->header), "%s", v);
    ASSERT_NULL(fb_ws_data(ws));
    fb_ws_set_data(ws, f);
    ASSERT_EQ(strncmp(fb_ws_tag(ws), "[ws|", 4), 0);
    ASSERT_OK(fb_ws_send(ws, "bienvenue", 9));
    return 0;
}

static void ws_message(fb_ws_t *ws, const char *data, size_t len, void *arg)
{
    struct wfix *f = arg;
    ASSERT(fb_ws_data(ws) == f);
    f->header_after_open = fb_ws_header(ws, "x-fb-test:", f->header + 32, 16);
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "%.*s", (int)(len < 63 ? len : 63), data);
    if (strncmp(cmd, "echo:", 5) == 0) {
        ASSERT_OK(fb_ws_send(ws, data, len));
    } else if (strncmp(cmd, "many:", 5) == 0) {
        int n = (int)strtol(cmd + 5, NULL, 10);
        for (int i = 0; i < n; i++) {
            char m[32];
            int ml = snprintf(m, sizeof(m), "n=%d", i);
            ASSERT_OK(fb_ws_send(ws, m, (size_t)ml));
        }
    } else if (strcmp(cmd, "flood") == 0) {
        static char kb[1000];
        memset(kb, 'x', sizeof(kb));
        int rc;
        f->flood = 0;
        while ((rc = fb_ws_send(ws, kb, sizeof(kb))) == 0)
            f->flood++;
        f->flood_rc = rc;
    } else if (strcmp(cmd, "close") == 0) {
        ASSERT_OK(fb_ws_send(ws, "adieu", 5));
        fb_ws_close(ws, 4001, "au revoir");
        fb_ws_close(ws, 1000, "ignored: close is idempotent");
        f->send_after_close = fb_ws_send(ws, "x", 1);
    } else if (strcmp(cmd, "drain") == 0) {
        f->inflight_at_drain = (long)fb_http_server_inflight(f->srv);
        f->ws_at_drain = (long)fb_http_server_websockets(f->srv);
        ASSERT_OK(fb_ws_send(ws, "draining", 8));
        fb_http_server_drain(f->srv);
    } else if (strcmp(cmd, "count") == 0) {
        char m[64];
        int ml = snprintf(m, sizeof(m), "opened=%d closed=%d ws=%zu", f->opened, f->closed,
                          fb_http_server_websockets(f->srv));
        ASSERT_OK(fb_ws_send(ws, m, (size_t)ml));
    } else {
        ASSERT_OK(fb_ws_send(ws, "?", 1));
    }
}

static void ws_refused(fb_ws_t *ws, size_t len, bool binary, void *arg)
{
    struct wfix *f = arg;
    ASSERT_LT(f->nrefused, 8);
    f->refused_len[f->nrefused] = len;
    f->refused_bin[f->nrefused] = binary;
    f->nrefused++;
    char m[64];
    int ml = snprintf(m, sizeof(m), "refused:%zu:%d", len, binary ? 1 : 0);
    ASSERT_OK(fb_ws_send(ws, m, (size_t)ml));
}

static void ws_closed(fb_ws_t *ws, void *arg)
{
    struct wfix *f = arg;
    f->closed++;
    f->send_in_closed = fb_ws_send(ws, "x", 1);
}

/* An endpoint whose open() says no after queuing a last word. */
static int ws_open_refuse(fb_ws_t *ws, void *arg)
{
    struct wfix *f = arg;
    f->refused_open++;
    ASSERT_OK(fb_ws_send(ws, "non", 3));
    return FB_EINVAL;
}

static int on_hello(fb_http_req_t *req, void *arg)
{
    (void)arg;
    fb_http_respond(req, 200, "text/plain", "bonjour", 7, NULL);
    return 0;
}

static void on_done(uv_async_t *a)
{
    struct wfix *f = a->data;
    if (!f->destroy_with_open)
        ASSERT_EQ(fb_http_server_websockets(f->srv), 0);
    f->ws_at_done = fb_http_server_websockets(f->srv);
    ASSERT_EQ(fb_http_server_inflight(f->srv), 0);
    fb_http_server_destroy(f->srv);
    uv_close((uv_handle_t *)&f->done, NULL);
}

static void client_main(void *arg)
{
    struct wfix *f = arg;
    f->scenario(f);
    uv_async_send(&f->done);
}

/* Runs `scenario` on a client thread against a server with the endpoints /ws and /ws-refuse. */
static void run(struct wfix *f, void (*scenario)(struct wfix *), unsigned idle_s)
{
    memset(f, 0, sizeof(*f));
    f->header_after_open = 1;
    if (getenv("FB_WS_DEBUG"))
        fb_log_set_level_all(FB_LOG_DEBUG);
    ASSERT_OK(uv_loop_init(&f->loop));
    char host[] = "127.0.0.1";
    fb_server_opts_t opts = {.listen_host = host,
                             .listen_port = fb_test_free_port(),
                             .max_body_bytes = 1000,
                             .max_header_bytes = 4096,
                             .idle_timeout_s = idle_s,
                             .keepalive_timeout_s = 5,
                             .shutdown_deadline_s = 1};
    f->srv = fb_http_server_create(&f->loop, &opts);
    ASSERT_NOT_NULL(f->srv);
    static const fb_ws_ops_t ops = {ws_open, ws_message, ws_refused, ws_closed};
    static const fb_ws_ops_t refuse_ops = {ws_open_refuse, ws_message, ws_refused, ws_closed};
    ASSERT_OK(fb_http_server_websocket(f->srv, "/ws", "chat", &ops, 64, f));
    ASSERT_OK(fb_http_server_websocket(f->srv, "/ws-refuse", "refuse", &refuse_ops, 64, f));
    ASSERT_EQ(fb_http_server_websocket(f->srv, "/ws", "again", &ops, 64, f), FB_EINVAL);
    ASSERT_EQ(fb_http_server_websocket(f->srv, "nope", "x", &ops, 64, f), FB_EINVAL);
    ASSERT_OK(fb_http_server_route(f->srv, "/hello", FB_HTTP_GET, "hello", on_hello, f));
    ASSERT_OK(fb_http_server_start(f->srv));
    f->port = fb_http_server_port(f->srv);
    uv_async_init(&f->loop, &f->done, on_done);
    f->done.data = f;
    f->scenario = scenario;

    uv_thread_t tid;
    ASSERT_OK(uv_thread_create(&tid, client_main, f));
    uv_run(&f->loop, UV_RUN_DEFAULT);
    uv_thread_join(&tid);
    fb_test_loop_close_strict(&f->loop);
}

static void expect_text(fb_wsc_t *c, const char *want)
{
    fb_wsc_frame_t fr;
    ASSERT_OK(fb_wsc_recv_text(c, &fr));
    ASSERT(fr.fin);
    ASSERT_STR_EQ(fr.data, want);
    fb_wsc_frame_free(&fr);
}

static void expect_close(fb_wsc_t *c, int code, const char *reason)
{
    fb_wsc_frame_t fr;
    ASSERT_OK(fb_wsc_recv(c, &fr));
    ASSERT_EQ(fr.opcode, FB_WSC_CLOSE);
    ASSERT_EQ(fr.close_code, code);
    if (reason)
        ASSERT_STR_EQ(fr.data, reason);
    fb_wsc_frame_free(&fr);
}

/* The client answers a close and waits for the server to hang up. */
static void finish_close(fb_wsc_t *c, int code)
{
    ASSERT_OK(fb_wsc_send_close(c, code, NULL));
    ASSERT(fb_wsc_wait_eof(c));
    fb_wsc_close(c);
}

static void scenario_messages(struct wfix *f)
{
    fb_wsc_t c;
    ASSERT_EQ(fb_wsc_connect(&c, f->port, "/ws", "X-Fb-Test: valeur\r\n"), 101);
    expect_text(&c, "bienvenue");

    /* Echo round trip, including an empty message and non-ASCII text. */
    ASSERT_OK(fb_wsc_send_text(&c, "echo:bonjour"));
    expect_text(&c, "echo:bonjour");
    ASSERT_OK(fb_wsc_send_text(&c, "echo:friche à Épinal"));
    expect_text(&c, "echo:friche à Épinal");
    ASSERT_OK(fb_wsc_send_text(&c, ""));
    expect_text(&c, "?");

    /* A message in three fragments, with a ping between two of them. */
    ASSERT_OK(fb_wsc_send(&c, FB_WSC_TEXT, false, "echo:", 5));
    ASSERT_OK(fb_wsc_send(&c, FB_WSC_CONT, false, "frag", 4));
    ASSERT_OK(fb_wsc_send(&c, FB_WSC_PING, true, "p1", 2));
    ASSERT_OK(fb_wsc_send(&c, FB_WSC_CONT, true, "ment", 4));
    fb_wsc_frame_t fr;
    ASSERT_OK(fb_wsc_recv(&c, &fr));
    ASSERT_EQ(fr.opcode, FB_WSC_PONG);
    ASSERT_STR_EQ(fr.data, "p1");
    fb_wsc_frame_free(&fr);
    expect_text(&c, "echo:fragment");

    /* Over the 64-byte limit: refused once, whole or fragmented; the connection stays usable. */
    char big[100];
    memset(big, 'a', sizeof(big));
    ASSERT_OK(fb_wsc_send(&c, FB_WSC_TEXT, true, big, sizeof(big)));
    expect_text(&c, "refused:100:0");
    ASSERT_OK(fb_wsc_send(&c, FB_WSC_TEXT, false, big, 40));
    ASSERT_OK(fb_wsc_send(&c, FB_WSC_CONT, false, big, 40));
    ASSERT_OK(fb_wsc_send(&c, FB_WSC_CONT, true, big, 20));
    expect_text(&c, "refused:100:0");
    /* Exactly at the limit: delivered. */
    char at[65] = "echo:";
    memset(at + 5, 'b', 59);
    at[64] = '\0';
    ASSERT_OK(fb_wsc_send_text(&c, at));
    expect_text(&c, at);

    /* Binary: refused, even when small. */
    ASSERT_OK(fb_wsc_send(&c, FB_WSC_BINARY, true, "\x01\x02\x03", 3));
    expect_text(&c, "refused:3:1");
    ASSERT_OK(fb_wsc_send_text(&c, "echo:encore"));
    expect_text(&c, "echo:encore");

    /* Many frames, in order. */
    ASSERT_OK(fb_wsc_send_text(&c, "many:500"));
    for (int i = 0; i < 500; i++) {
        char want[32];
        snprintf(want, sizeof(want), "n=%d", i);
        expect_text(&c, want);
    }

    /* The 1 MiB send queue: 1048 frames of 1000 bytes fit, the next one is FB_EAGAIN; all the
     * queued ones arrive. */
    ASSERT_OK(fb_wsc_send_text(&c, "flood"));
    for (int i = 0; i < 1048; i++) {
        ASSERT_OK(fb_wsc_recv_text(&c, &fr));
        ASSERT_EQ(fr.len, 1000);
        fb_wsc_frame_free(&fr);
    }
    ASSERT_OK(fb_wsc_send_text(&c, "echo:après"));
    expect_text(&c, "echo:après");

    /* The client closes: the server echoes the close and closed() follows. */
    ASSERT_OK(fb_wsc_send_close(&c, 1000, "fini"));
    expect_close(&c, 1000, NULL);
    ASSERT(fb_wsc_wait_eof(&c));
    fb_wsc_close(&c);

    /* A second connection sees the first one counted as closed. */
    ASSERT_EQ(fb_wsc_connect(&c, f->port, "/ws", NULL), 101);
    expect_text(&c, "bienvenue");
    ASSERT_OK(fb_wsc_send_text(&c, "count"));
    expect_text(&c, "opened=2 closed=1 ws=1");
    /* The client just leaves, without a close frame. */
    fb_wsc_close(&c);
    /* A third one waits until the second is counted (the server learns it asynchronously). */
    for (;;) {
        ASSERT_EQ(fb_wsc_connect(&c, f->port, "/ws", NULL), 101);
        expect_text(&c, "bienvenue");
        ASSERT_OK(fb_wsc_send_text(&c, "count"));
        ASSERT_OK(fb_wsc_recv_text(&c, &fr));
        bool seen = strstr(fr.data, "closed=2") || strstr(fr.data, "closed=3") ||
                    strstr(fr.data, "closed=4");
        fb_wsc_frame_free(&fr);
        ASSERT_OK(fb_wsc_send_close(&c, 1000, NULL));
        expect_close(&c, 1000, NULL);
        ASSERT(fb_wsc_wait_eof(&c));
        fb_wsc_close(&c);
        if (seen)
            break;
        usleep(20 * 1000);
    }
}

TEST_IMPL(websocket_messages)
{
    struct wfix f;
    fb_metrics_reset();
    run(&f, scenario_messages, 30);
    ASSERT_STR_EQ(f.peer, "127.0.0.1");
    ASSERT_STR_EQ(f.header, "valeur");
    ASSERT_EQ(f.header_after_open, -1);
    ASSERT_EQ(f.nrefused, 3);
    ASSERT_EQ(f.refused_len[0], 100);
    ASSERT(!f.refused_bin[0]);
    ASSERT_EQ(f.refused_len[1], 100);
    ASSERT_EQ(f.refused_len[2], 3);
    ASSERT(f.refused_bin[2]);
    ASSERT_EQ(f.flood, 1048);
    ASSERT_EQ(f.flood_rc, FB_EAGAIN);
    ASSERT_EQ(f.opened, f.closed);
    ASSERT_EQ(f.send_in_closed, FB_ECANCELED);

    fb_buf_t m;
    fb_buf_init(&m, 1 << 20);
    ASSERT_OK(fb_metrics_render(&m));
    ASSERT_NOT_NULL(strstr(m.data, "frichebot_websocket_connections{endpoint=\"chat\"} 0\n"));
    ASSERT_NOT_NULL(strstr(
        m.data, "frichebot_websocket_messages_total{endpoint=\"chat\",direction=\"refused\"} 3\n"));
    ASSERT_NOT_NULL(
        strstr(m.data, "frichebot_http_requests_total{route=\"chat\",status=\"101\"} "));
    fb_buf_free(&m);
    return 0;
}

static void scenario_close_and_paths(struct wfix *f)
{
    fb_wsc_t c;
    /* fb_ws_close(): queued frames first, then the code and reason. */
    ASSERT_EQ(fb_wsc_connect(&c, f->port, "/ws", NULL), 101);
    expect_text(&c, "bienvenue");
    ASSERT_OK(fb_wsc_send_text(&c, "close"));
    expect_text(&c, "adieu");
    expect_close(&c, 4001, "au revoir");
    finish_close(&c, 4001);

    /* open() refusing: its last frame, then 1008; closed() is not owed. */
    ASSERT_EQ(fb_wsc_connect(&c, f->port, "/ws-refuse", NULL), 101);
    expect_text(&c, "non");
    expect_close(&c, 1008, NULL);
    finish_close(&c, 1008);

    /* Upgrades elsewhere: 404, also on a plain HTTP route and with a query string. */
    ASSERT_EQ(fb_wsc_connect(&c, f->port, "/autre", NULL), 404);
    ASSERT_NOT_NULL(strstr(c.body, "\"error\":\"not_found\""));
    fb_wsc_close(&c);
    ASSERT_EQ(fb_wsc_connect(&c, f->port, "/hello", NULL), 404);
    fb_wsc_close(&c);
    ASSERT_EQ(fb_wsc_connect(&c, f->port, "/ws/x", NULL), 404);
    fb_wsc_close(&c);
    /* A plain GET of the websocket path: 426. */
    {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa;
        memset(&sa, 0, sizeof(sa));
        sa.sin_family = AF_INET;
        sa.sin_port = htons((uint16_t)f->port);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ASSERT_EQ(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        static const char get[] = "GET /ws HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
        ASSERT_EQ(write(fd, get, sizeof(get) - 1), (ssize_t)sizeof(get) - 1);
        char ans[2048];
        size_t pos = 0;
        ssize_t n;
        while (pos < sizeof(ans) - 1 && (n = read(fd, ans + pos, sizeof(ans) - 1 - pos)) > 0)
            pos += (size_t)n;
        ans[pos] = '\0';
        close(fd);
        ASSERT(strncmp(ans, "HTTP/1.1 426", 12) == 0);
        ASSERT_NOT_NULL(strstr(ans, "upgrade: websocket\r\n"));
    }
    /* A subprotocol is not offered: libwebsockets hangs up without an answer. */
    ASSERT_EQ(fb_wsc_connect(&c, f->port, "/ws", "Sec-WebSocket-Protocol: chat\r\n"), -1);
    fb_wsc_close(&c);
    ASSERT_EQ(fb_wsc_connect(&c, f->port, "/ws?jeton=1", NULL), 101);
    expect_text(&c, "bienvenue");
    finish_close(&c, 1000);
}

TEST_IMPL(websocket_close_and_paths)
{
    struct wfix f;
    run(&f, scenario_close_and_paths, 30);
    ASSERT_EQ(f.send_after_close, FB_ECANCELED);
    ASSERT_EQ(f.refused_open, 1);
    /* /ws three times... once each: "close", and the query-string one. */
    ASSERT_EQ(f.opened, 2);
    ASSERT_EQ(f.closed, 2);
    return 0;
}

static void scenario_drain(struct wfix *f)
{
    fb_wsc_t a, b, c;
    ASSERT_EQ(fb_wsc_connect(&a, f->port, "/ws", NULL), 101);
    expect_text(&a, "bienvenue");
    ASSERT_EQ(fb_wsc_connect(&b, f->port, "/ws", NULL), 101);
    expect_text(&b, "bienvenue");
    ASSERT_OK(fb_wsc_send_text(&a, "drain"));
    /* The frame queued before the drain goes out first, then 1001 on both. */
    expect_text(&a, "draining");
    expect_close(&a, 1001, NULL);
    expect_close(&b, 1001, NULL);
    /* New upgrades are refused while draining. */
    ASSERT_EQ(fb_wsc_connect(&c, f->port, "/ws", NULL), 503);
    ASSERT_NOT_NULL(strstr(c.head, "retry-after: 5"));
    fb_wsc_close(&c);
    finish_close(&a, 1001);
    /* b does not answer the close: it just leaves. */
    fb_wsc_close(&b);
}

TEST_IMPL(websocket_drain)
{
    struct wfix f;
    run(&f, scenario_drain, 30);
    /* Websockets never count as requests in flight: the daemon's drain would wait forever. */
    ASSERT_EQ(f.inflight_at_drain, 0);
    ASSERT_EQ(f.ws_at_drain, 2);
    ASSERT_EQ(f.opened, 2);
    ASSERT_EQ(f.closed, 2);
    return 0;
}

static void scenario_destroy(struct wfix *f)
{
    fb_wsc_t c[3];
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(fb_wsc_connect(&c[i], f->port, "/ws", NULL), 101);
        expect_text(&c[i], "bienvenue");
    }
    f->destroy_with_open = true;
    uv_async_send(&f->done); /* the server is destroyed with the three still open */
    for (int i = 0; i < 3; i++) {
        ASSERT(fb_wsc_wait_eof(&c[i]));
        fb_wsc_close(&c[i]);
    }
}

static void client_destroy(void *arg)
{
    scenario_destroy(arg);
}

TEST_IMPL(websocket_destroy_with_open_sockets)
{
    struct wfix f;
    memset(&f, 0, sizeof(f));
    ASSERT_OK(uv_loop_init(&f.loop));
    char host[] = "127.0.0.1";
    fb_server_opts_t opts = {.listen_host = host,
                             .listen_port = fb_test_free_port(),
                             .max_body_bytes = 1000,
                             .max_header_bytes = 4096,
                             .idle_timeout_s = 30,
                             .keepalive_timeout_s = 5,
                             .shutdown_deadline_s = 1};
    f.srv = fb_http_server_create(&f.loop, &opts);
    static const fb_ws_ops_t ops = {ws_open, ws_message, ws_refused, ws_closed};
    ASSERT_OK(fb_http_server_websocket(f.srv, "/ws", "chat", &ops, 64, &f));
    ASSERT_OK(fb_http_server_start(f.srv));
    f.port = fb_http_server_port(f.srv);
    uv_async_init(&f.loop, &f.done, on_done);
    f.done.data = &f;
    uv_thread_t tid;
    ASSERT_OK(uv_thread_create(&tid, client_destroy, &f));
    uv_run(&f.loop, UV_RUN_DEFAULT);
    uv_thread_join(&tid);
    fb_test_loop_close_strict(&f.loop);
    ASSERT_EQ(f.ws_at_done, 3);
    ASSERT_EQ(f.opened, 3);
    ASSERT_EQ(f.closed, 3); /* once each, from the destroy */
    return 0;
}

static void scenario_idle(struct wfix *f)
{
    fb_wsc_t c;
    ASSERT_EQ(fb_wsc_connect(&c, f->port, "/ws", NULL), 101);
    expect_text(&c, "bienvenue");
    /* Pings every 200 ms for 3 s keep a 2 s idle timeout away. */
    for (int i = 0; i < 15; i++) {
        ASSERT_OK(fb_wsc_send(&c, FB_WSC_PING, true, "k", 1));
        fb_wsc_frame_t fr;
        ASSERT_OK(fb_wsc_recv(&c, &fr));
        ASSERT_EQ(fr.opcode, FB_WSC_PONG);
        fb_wsc_frame_free(&fr);
        usleep(200 * 1000);
    }
    ASSERT_OK(fb_wsc_send_text(&c, "echo:vivant"));
    expect_text(&c, "echo:vivant");
    /* Then silence: the server closes with 1001. */
    expect_close(&c, 1001, NULL);
    finish_close(&c, 1001);
}

TEST_IMPL(websocket_idle_timeout)
{
    struct wfix f;
    run(&f, scenario_idle, 2);
    ASSERT_EQ(f.opened, 1);
    ASSERT_EQ(f.closed, 1);
    return 0;
}
