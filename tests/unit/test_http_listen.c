/* SPDX-License-Identifier: MIT */
/*
 * test_http_listen.c - the HTTP server's own listener (io/http_listen.c) on a real loop: the cap
 * on connections per address refuses one more with a 503 at once, counts it in the metrics, and
 * gives the place back when a connection closes (LWS_CALLBACK_WSI_DESTROY).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "frichebot/buf.h"
#include "io/http_server.h"
#include "io/metrics.h"
#include "task.h"

struct lfix {
    uv_loop_t loop;
    fb_http_server_t *srv;
    int port;
    uv_async_t done;
    char refused[1024];
    char again[1024];
    char after_close[1024];
};

static int on_hello(fb_http_req_t *req, void *arg)
{
    (void)arg;
    fb_http_respond(req, 200, "text/plain", "bonjour", 7, NULL);
    return 0;
}

static int connect_to(int port)
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
    return fd;
}

/* Sends a GET on `fd` (unless `send_req` is 0) and reads until the peer closes. */
static void read_all(int fd, int send_req, char *out, size_t cap)
{
    static const char get[] = "GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    if (send_req)
        ASSERT_EQ(write(fd, get, sizeof(get) - 1), (ssize_t)(sizeof(get) - 1));
    size_t pos = 0;
    while (pos + 1 < cap) {
        ssize_t n = read(fd, out + pos, cap - 1 - pos);
        if (n <= 0)
            break;
        pos += (size_t)n;
    }
    out[pos] = '\0';
}

static void cap_client(void *arg)
{
    struct lfix *f = arg;
    int a = connect_to(f->port), b = connect_to(f->port);
    usleep(100 * 1000); /* both accepted and adopted */
    /* The third from the same address: a 503 at once, before any request. */
    int c = connect_to(f->port);
    read_all(c, 0, f->refused, sizeof(f->refused));
    close(c);
    /* Still full. */
    c = connect_to(f->port);
    read_all(c, 0, f->again, sizeof(f->again));
    close(c);
    /* One leaves: its place is given back once libwebsockets has destroyed it. */
    close(a);
    usleep(200 * 1000);
    c = connect_to(f->port);
    read_all(c, 1, f->after_close, sizeof(f->after_close));
    close(c);
    close(b);
    usleep(100 * 1000);
    uv_async_send(&f->done);
}

static void cap_done(uv_async_t *h)
{
    struct lfix *f = h->data;
    fb_http_server_destroy(f->srv);
    uv_close((uv_handle_t *)&f->done, NULL);
}

TEST_IMPL(http_listen_per_address_cap)
{
    struct lfix f;
    memset(&f, 0, sizeof(f));
    fb_metrics_reset();
    ASSERT_OK(uv_loop_init(&f.loop));
    char host[] = "127.0.0.1";
    fb_server_opts_t opts = {.listen_host = host,
                             .listen_port = 0,
                             .max_body_bytes = 100,
                             .max_header_bytes = 4096,
                             .idle_timeout_s = 5,
                             .keepalive_timeout_s = 5,
                             .shutdown_deadline_s = 1,
                             .max_connections_per_address = 2};
    f.srv = fb_http_server_create(&f.loop, &opts);
    ASSERT_OK(fb_http_server_route(f.srv, "/hello", FB_HTTP_GET, "hello", on_hello, &f));
    ASSERT_OK(fb_http_server_start(f.srv));
    f.port = fb_http_server_port(f.srv);
    ASSERT_GT(f.port, 0); /* port 0: the one the system picked */
    uv_async_init(&f.loop, &f.done, cap_done);
    f.done.data = &f;
    uv_thread_t tid;
    ASSERT_OK(uv_thread_create(&tid, cap_client, &f));
    uv_run(&f.loop, UV_RUN_DEFAULT);
    uv_thread_join(&tid);
    fb_test_loop_close_strict(&f.loop);

    ASSERT(strncmp(f.refused, "HTTP/1.1 503", 12) == 0);
    ASSERT_NOT_NULL(strstr(f.refused, "Retry-After: 5\r\n"));
    ASSERT_NOT_NULL(strstr(f.refused, "\"error\":\"too_many_connections\""));
    ASSERT(strncmp(f.again, "HTTP/1.1 503", 12) == 0);
    ASSERT(strncmp(f.after_close, "HTTP/1.1 200", 12) == 0);
    ASSERT_NOT_NULL(strstr(f.after_close, "\r\n\r\nbonjour"));

    fb_buf_t m;
    fb_buf_init(&m, 1u << 20);
    ASSERT_OK(fb_metrics_render(&m));
    ASSERT_NOT_NULL(strstr(fb_buf_str(&m),
                           "frichebot_http_connections_refused_total{reason=\"per_address\"} 2\n"));
    fb_buf_free(&m);
    return 0;
}
