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
#include "io/http_server.h"
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
    ASSERT_NOT_NULL(out);
    size_t pos = 0;
    while (pos + 1 < cap) {
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

/* ---- Static files ---- */

#include <fcntl.h>
#include <sys/stat.h>

struct sfix {
    uv_loop_t loop;
    fb_http_server_t *srv;
    int port;
    uv_async_t done;
    char etag[128];
    char answers[40][4096];
    int n;
};

static const char *const static_404[] = {
    "/static/../secret.txt",
    "/static/%2e%2e/secret.txt",
    "/static/%2E%2E/secret.txt",
    "/static/..%2fsecret.txt",
    "/static//secret.txt",
    "/static/sub/../../secret.txt",
    "/static/.env",
    "/static/sub/.hidden/x.txt",
    "/static/sub/./data.json/",
    "/static/big.bin",
    "/static/fifo",
    "/static/sub",
    "/static/nope.js",
    "/static/link.txt",
    "/static/a\\b.txt",
    "/static/%00app.js",
    "/nowhere/app.js",
};

static int on_exact(fb_http_req_t *req, void *arg)
{
    (void)arg;
    fb_http_respond(req, 200, "text/plain", "exact", 5, NULL);
    return 0;
}

static void static_get(struct sfix *f, const char *method, const char *path, const char *extra)
{
    char req[1024];
    int n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: t\r\n%sConnection: close\r\n\r\n",
                     method, path, extra ? extra : "");
    ASSERT_LT(f->n, 40);
    roundtrip(f->port, req, (size_t)n, f->answers[f->n++], sizeof(f->answers[0]), 0);
}

static void static_client(void *arg)
{
    struct sfix *f = arg;
    static_get(f, "GET", "/static/app.js", NULL); /* 0 */
    const char *e = strstr(f->answers[0], "etag: ");
    ASSERT_NOT_NULL(e);
    size_t elen = strcspn(e + 6, "\r");
    ASSERT_LT(elen, sizeof(f->etag));
    memcpy(f->etag, e + 6, elen);
    char inm[256];
    snprintf(inm, sizeof(inm), "If-None-Match: \"other\", %s\r\n", f->etag);
    static_get(f, "GET", "/static/app.js", inm);         /* 1: 304 */
    static_get(f, "HEAD", "/static/app.js", NULL);       /* 2 */
    static_get(f, "GET", "/static/", NULL);              /* 3: index.html */
    static_get(f, "GET", "/static/sub/data.json", NULL); /* 4 */
    static_get(f, "GET", "/nocache/app.js", NULL);       /* 5 */
    static_get(f, "GET", "/static/exact", NULL);         /* 6: the exact route wins */
    static_get(f, "POST", "/static/app.js", NULL);       /* 7: 405 */
    static_get(f, "HEAD", "/static/max.bin", NULL);      /* 8: exactly 8 MiB */
    static_get(f, "GET", "/static/noext", NULL);         /* 9 */
    static_get(f, "GET", "/static/app.js", "If-None-Match: \"x\"\r\n"); /* 10: 200 */
    for (size_t i = 0; i < FB_ARRAY_SIZE(static_404); i++)
        static_get(f, "GET", static_404[i], NULL); /* 11... */
    uv_async_send(&f->done);
}

static void static_done(uv_async_t *a)
{
    struct sfix *f = a->data;
    ASSERT_EQ(fb_http_server_inflight(f->srv), 0);
    fb_http_server_destroy(f->srv);
    uv_close((uv_handle_t *)&f->done, NULL);
}

static void write_file(const char *dir, const char *name, const char *content)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *fp = fopen(path, "w");
    ASSERT_NOT_NULL(fp);
    fputs(content, fp);
    fclose(fp);
}

static void sized_file(const char *dir, const char *name, off_t size)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT(fd >= 0);
    ASSERT_OK(ftruncate(fd, size));
    close(fd);
}

static const char *body_of(const char *answer)
{
    const char *b = strstr(answer, "\r\n\r\n");
    return b ? b + 4 : "";
}

TEST_IMPL(http_server_static_files)
{
    struct sfix f;
    memset(&f, 0, sizeof(f));
    char root[] = "/tmp/fb-static-XXXXXX";
    ASSERT_NOT_NULL(mkdtemp(root));
    char www[600], path[700];
    snprintf(www, sizeof(www), "%s/www", root);
    ASSERT_OK(mkdir(www, 0755));
    write_file(root, "secret.txt", "SECRET");
    write_file(www, "index.html", "<p>accueil</p>");
    write_file(www, "app.js", "console.log(1);");
    write_file(www, ".env", "SECRET=1");
    write_file(www, "noext", "data");
    snprintf(path, sizeof(path), "%s/sub", www);
    ASSERT_OK(mkdir(path, 0755));
    write_file(path, "data.json", "{\"a\":1}");
    snprintf(path, sizeof(path), "%s/sub/.hidden", www);
    ASSERT_OK(mkdir(path, 0755));
    write_file(path, "x.txt", "x");
    sized_file(www, "big.bin", 8 * 1024 * 1024 + 1);
    sized_file(www, "max.bin", 8 * 1024 * 1024);
    snprintf(path, sizeof(path), "%s/fifo", www);
    ASSERT_OK(mkfifo(path, 0644));
    snprintf(path, sizeof(path), "%s/link.txt", www);
    ASSERT_OK(symlink("../secret.txt", path));

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
    ASSERT_OK(fb_http_server_static(f.srv, "/static/", www, 60, "static"));
    ASSERT_OK(fb_http_server_static(f.srv, "/nocache/", www, 0, "nocache"));
    ASSERT_OK(fb_http_server_route(f.srv, "/static/exact", FB_HTTP_GET, "exact", on_exact, &f));
    ASSERT_EQ(fb_http_server_static(f.srv, "/nostatic", www, 0, "x"), FB_EINVAL);
    ASSERT_EQ(fb_http_server_static(f.srv, "nostatic/", www, 0, "x"), FB_EINVAL);
    ASSERT_OK(fb_http_server_start(f.srv));
    f.port = fb_http_server_port(f.srv);
    uv_async_init(&f.loop, &f.done, static_done);
    f.done.data = &f;
    uv_thread_t tid;
    ASSERT_OK(uv_thread_create(&tid, static_client, &f));
    uv_run(&f.loop, UV_RUN_DEFAULT);
    uv_thread_join(&tid);
    fb_test_loop_close_strict(&f.loop);

    const char *a = f.answers[0];
    ASSERT(strncmp(a, "HTTP/1.1 200", 12) == 0);
    ASSERT_NOT_NULL(strstr(a, "content-type: text/javascript; charset=utf-8\r\n"));
    ASSERT_NOT_NULL(strstr(a, "cache-control: public, max-age=60\r\n"));
    ASSERT_NULL(strstr(a, "no-store"));
    ASSERT_NOT_NULL(strstr(a, "content-length: 15\r\n"));
    ASSERT_STR_EQ(body_of(a), "console.log(1);");
    ASSERT_EQ(f.etag[0], '"');

    a = f.answers[1];
    ASSERT(strncmp(a, "HTTP/1.1 304", 12) == 0);
    ASSERT_NOT_NULL(strstr(a, f.etag));
    ASSERT_NOT_NULL(strstr(a, "cache-control: public, max-age=60\r\n"));
    ASSERT_STR_EQ(body_of(a), "");

    a = f.answers[2];
    ASSERT(strncmp(a, "HTTP/1.1 200", 12) == 0);
    ASSERT_NOT_NULL(strstr(a, "content-length: 15\r\n"));
    ASSERT_NOT_NULL(strstr(a, f.etag));
    ASSERT_STR_EQ(body_of(a), "");

    a = f.answers[3];
    ASSERT(strncmp(a, "HTTP/1.1 200", 12) == 0);
    ASSERT_NOT_NULL(strstr(a, "content-type: text/html; charset=utf-8\r\n"));
    ASSERT_STR_EQ(body_of(a), "<p>accueil</p>");

    a = f.answers[4];
    ASSERT_NOT_NULL(strstr(a, "content-type: application/json\r\n"));
    ASSERT_STR_EQ(body_of(a), "{\"a\":1}");

    a = f.answers[5];
    ASSERT(strncmp(a, "HTTP/1.1 200", 12) == 0);
    ASSERT_NOT_NULL(strstr(a, "cache-control: no-store\r\n"));

    ASSERT_STR_EQ(body_of(f.answers[6]), "exact");

    a = f.answers[7];
    ASSERT(strncmp(a, "HTTP/1.1 405", 12) == 0);
    ASSERT_NOT_NULL(strstr(a, "allow: GET, HEAD\r\n"));

    a = f.answers[8];
    ASSERT(strncmp(a, "HTTP/1.1 200", 12) == 0);
    ASSERT_NOT_NULL(strstr(a, "content-length: 8388608\r\n"));
    ASSERT_NOT_NULL(strstr(a, "content-type: application/octet-stream\r\n"));

    a = f.answers[9];
    ASSERT_NOT_NULL(strstr(a, "content-type: application/octet-stream\r\n"));
    ASSERT_STR_EQ(body_of(a), "data");

    ASSERT(strncmp(f.answers[10], "HTTP/1.1 200", 12) == 0);

    for (size_t i = 0; i < FB_ARRAY_SIZE(static_404); i++) {
        a = f.answers[11 + i];
        if (strncmp(a, "HTTP/1.1 404", 12) != 0 && strncmp(a, "HTTP/1.1 400", 12) != 0)
            FB_TEST_FAIL("%s answered: %.60s", static_404[i], a);
        ASSERT_NULL(strstr(a, "SECRET"));
    }

    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    ASSERT_OK(system(cmd));
    return 0;
}

/* ---- Prefix routes ---- */

static int on_path(fb_http_req_t *req, void *arg)
{
    char body[256];
    int n = snprintf(body, sizeof(body), "%s %s", (const char *)arg, fb_http_req_path(req));
    fb_http_respond(req, 200, "text/plain", body, (size_t)n, NULL);
    return 0;
}

static void prefix_client(void *arg)
{
    struct fixture *f = arg;
    static const char *const reqs[] = {
        "GET /a/b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "PUT /a/txn%2042 HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        "GET /a/b/c/d HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "GET /a/ HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "GET /a/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "GET /ab HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(reqs); i++)
        roundtrip(f->port, reqs[i], strlen(reqs[i]), f->answers[i], 2048, 0);
    uv_async_send(&f->done);
}

TEST_IMPL(http_server_prefix_routes)
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
    static char exact[] = "exact", shortp[] = "short", longp[] = "long";
    ASSERT_OK(fb_http_server_route(f.srv, "/a/b", FB_HTTP_GET, "exact", on_path, exact));
    ASSERT_OK(fb_http_server_route_prefix(f.srv, "/a/", FB_HTTP_PUT, "short", on_path, shortp));
    ASSERT_OK(fb_http_server_route_prefix(f.srv, "/a/b/", FB_HTTP_GET, "long", on_path, longp));
    ASSERT_EQ(fb_http_server_route_prefix(f.srv, "/noslash", FB_HTTP_GET, "x", on_path, exact),
              FB_EINVAL);
    ASSERT_EQ(fb_http_server_route_prefix(f.srv, "/", FB_HTTP_GET, "x", on_path, exact), FB_EINVAL);
    ASSERT_OK(fb_http_server_start(f.srv));
    f.port = fb_http_server_port(f.srv);
    uv_async_init(&f.loop, &f.done, on_done);
    f.done.data = &f;
    uv_timer_init(&f.loop, &f.later);
    f.later.data = &f;
    uv_thread_t tid;
    ASSERT_OK(uv_thread_create(&tid, prefix_client, &f));
    uv_run(&f.loop, UV_RUN_DEFAULT);
    uv_thread_join(&tid);
    fb_test_loop_close_strict(&f.loop);

    ASSERT_NOT_NULL(strstr(f.answers[0], "\r\n\r\nexact /a/b"));
    ASSERT(strncmp(f.answers[1], "HTTP/1.1 200", 12) == 0);
    ASSERT_NOT_NULL(strstr(f.answers[1], "\r\n\r\nshort /a/txn 42"));
    ASSERT_NOT_NULL(strstr(f.answers[2], "\r\n\r\nlong /a/b/c/d"));
    ASSERT(strncmp(f.answers[3], "HTTP/1.1 404", 12) == 0);
    ASSERT(strncmp(f.answers[4], "HTTP/1.1 405", 12) == 0);
    ASSERT(strncmp(f.answers[5], "HTTP/1.1 404", 12) == 0);
    return 0;
}
