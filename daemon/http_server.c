/* SPDX-License-Identifier: MIT */
/*
 * http_server.c - the incoming HTTP server: libwebsockets joined to the daemon's libuv loop.
 *
 * libwebsockets owns the sockets and the HTTP parsing; this file owns routing, limits and answers.
 * Every request becomes an fb_http_req_t kept on a list in the server, so that a handler that
 * answers later (after a Redis round trip) can always answer, even if the connection or the whole
 * server is gone by then: the answer is simply dropped. Answers are written from
 * LWS_CALLBACK_HTTP_WRITEABLE only ("write only when writable", libwebsockets README.coding).
 *
 * Teardown: lws_context_destroy() closes lws's uv handles asynchronously; lws clears
 * srv->ctx through info.pcontext when it is done, and a small timer frees the server then.
 */
#include "http_server.h"

#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "frichebot/err.h"
#include "frichebot/log.h"
#include "metrics.h"

#define MAX_ROUTES      32
#define MAX_PATH        2048
#define MAX_QUERY       4096
#define MAX_RESP_HEADER 4096

/* How long a deferred handler may take before the connection is given up (its own work, e.g. a
 * Redis command, has shorter timeouts of its own). */
#define FB_HTTP_HANDLER_TIMEOUT_S 120

struct route {
    char *path;
    unsigned methods;
    const char *name;
    fb_http_handler_fn fn;
    void *arg;
};

struct fb_http_server_s {
    uv_loop_t *loop;
    fb_server_opts_t opts;
    struct lws_context *ctx; /* NULLed by lws once fully destroyed (info.pcontext) */
    struct lws_vhost *vhost;
    struct lws_protocols protocols[2];
    struct route routes[MAX_ROUTES];
    int nroutes;
    bool draining;
    size_t inflight;
    uint64_t next_tag;
    fb_http_req_t *reqs; /* every live request, for orphaning at destroy */
    uv_timer_t reap;     /* polls for the end of lws teardown */
    bool finishing;      /* the second lws_context_destroy() was made */
};

struct fb_http_req_s {
    fb_http_server_t *srv; /* NULL once the server is destroyed */
    struct lws *wsi;       /* NULL once the connection is closed */
    fb_http_req_t *prev, *next;
    const struct route *route;
    const char *route_name;
    unsigned method;
    char *path;
    char *query;
    fb_buf_t body;
    bool dispatched; /* the handler was called */
    bool answered;   /* fb_http_respond was called */
    bool close_after;
    int status;
    char *ctype;
    unsigned char *resp; /* LWS_PRE bytes, then the body */
    size_t resp_len;
    char **extra; /* NULL-terminated name, value pairs */
    char tag[32];
};

/* Per-connection data handed to us by lws. */
struct pss {
    fb_http_req_t *req;
};

static const char *status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Payload Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "";
    }
}

static void list_remove(fb_http_server_t *srv, fb_http_req_t *req)
{
    if (req->prev)
        req->prev->next = req->next;
    else if (srv && srv->reqs == req)
        srv->reqs = req->next;
    if (req->next)
        req->next->prev = req->prev;
    req->prev = req->next = NULL;
}

static void req_free(fb_http_req_t *req)
{
    if (req->srv)
        list_remove(req->srv, req);
    fb_free(req->path);
    fb_free(req->query);
    fb_buf_free(&req->body);
    fb_free(req->ctype);
    fb_free(req->resp);
    if (req->extra) {
        for (char **e = req->extra; *e; e++)
            fb_free(*e);
        fb_free(req->extra);
    }
    fb_free(req);
}

static unsigned method_bit(int m)
{
    switch (m) {
    case LWSHUMETH_GET:
        return FB_HTTP_GET;
    case LWSHUMETH_HEAD:
        return FB_HTTP_HEAD;
    case LWSHUMETH_POST:
        return FB_HTTP_POST;
    case LWSHUMETH_PUT:
        return FB_HTTP_PUT;
    case LWSHUMETH_DELETE:
        return FB_HTTP_DELETE;
    case LWSHUMETH_PATCH:
        return FB_HTTP_PATCH;
    case LWSHUMETH_OPTIONS:
        return FB_HTTP_OPTIONS;
    default:
        return 0;
    }
}

/* Builds "GET, HEAD, POST" for the Allow header of a 405. */
static void allow_list(unsigned methods, char *out, size_t cap)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{FB_HTTP_GET, "GET"},        {FB_HTTP_HEAD, "HEAD"},     {FB_HTTP_POST, "POST"},
                 {FB_HTTP_PUT, "PUT"},        {FB_HTTP_DELETE, "DELETE"}, {FB_HTTP_PATCH, "PATCH"},
                 {FB_HTTP_OPTIONS, "OPTIONS"}};
    size_t pos = 0;
    out[0] = '\0';
    for (size_t i = 0; i < FB_ARRAY_SIZE(names); i++) {
        if (!(methods & names[i].bit))
            continue;
        int n = snprintf(out + pos, cap - pos, "%s%s", pos ? ", " : "", names[i].name);
        if (n < 0 || (size_t)n >= cap - pos)
            return;
        pos += (size_t)n;
    }
}

/* Answers with a small JSON error document and, when `close_after`, closes the connection. */
static void respond_error(fb_http_req_t *req, int status, const char *code, bool close_after,
                          const char *const *extra)
{
    char body[256];
    int n = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"status\":%d,\"message\":\"%s\"}\n",
                     code, status, status_text(status));
    req->close_after = close_after;
    fb_http_respond(req, status, "application/json", body, n > 0 ? (size_t)n : 0, extra);
}

/* Calls the route's handler; a handler error becomes a 500. */
static void dispatch(fb_http_req_t *req)
{
    req->dispatched = true;
    int rc = req->route->fn(req, req->route->arg);
    if (rc == FB_EAGAIN && !req->answered && req->wsi) {
        /* The request is being worked on, not idle: replace libwebsockets' idle timers (which
         * would cut the connection after server.idle_timeout_s) with the handler's allowance. */
        lws_set_timeout(req->wsi, PENDING_TIMEOUT_USER_OK, FB_HTTP_HANDLER_TIMEOUT_S);
        return;
    }
    if (rc == FB_EAGAIN || req->answered)
        return;
    if (rc == 0) {
        /* A handler bug: without an answer the request would stay in flight forever. */
        FB_ERR(HTTP, "%s handler for %s returned without answering", req->tag, req->route_name);
        respond_error(req, 500, "internal", false, NULL);
        return;
    }
    FB_ERR(HTTP, "%s handler for %s failed: %s", req->tag, req->route_name, fb_strerror(rc));
    respond_error(req, 500, "internal", false, NULL);
}

static const struct route *find_route(const fb_http_server_t *srv, const char *path)
{
    for (int i = 0; i < srv->nroutes; i++)
        if (strcmp(srv->routes[i].path, path) == 0)
            return &srv->routes[i];
    return NULL;
}

/* LWS_CALLBACK_HTTP: a request's headers are complete. Decide its fate. */
static int on_http(fb_http_server_t *srv, struct lws *wsi, struct pss *pss, const char *uri)
{
    char *uri_ptr;
    int uri_len;
    int m = lws_http_get_uri_and_method(wsi, &uri_ptr, &uri_len);

    fb_http_req_t *req = fb_calloc(1, sizeof(*req));
    req->srv = srv;
    req->wsi = wsi;
    req->method = method_bit(m);
    req->path = fb_strndup(uri, strnlen(uri, MAX_PATH));
    req->route_name = "unknown";
    fb_buf_init(&req->body, srv->opts.max_body_bytes);
    snprintf(req->tag, sizeof(req->tag), "[http|%lu]", (unsigned long)++srv->next_tag);
    char q[MAX_QUERY];
    int ql = lws_hdr_copy(wsi, q, sizeof(q), WSI_TOKEN_HTTP_URI_ARGS);
    req->query = fb_strdup(ql > 0 ? q : "");
    req->next = srv->reqs;
    if (srv->reqs)
        srv->reqs->prev = req;
    srv->reqs = req;
    srv->inflight++;
    pss->req = req;

    FB_DEBUG(HTTP, "%s %s %s", req->tag, m >= 0 ? "request" : "unknown method", req->path);

    if (srv->draining) {
        static const char *const hdr[] = {"retry-after:", "5", NULL};
        respond_error(req, 503, "shutting_down", true, hdr);
        return 0;
    }
    /* The body limit is server-wide: checked before the route, so no oversized body is read. */
    bool has_body = false;
    char cl[32];
    if (lws_hdr_copy(wsi, cl, sizeof(cl), WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0) {
        unsigned long long n = strtoull(cl, NULL, 10);
        if (n > srv->opts.max_body_bytes) {
            FB_INFO(HTTP, "%s body of %llu bytes refused (limit %zu)", req->tag, n,
                    srv->opts.max_body_bytes);
            respond_error(req, 413, "body_too_large", true, NULL);
            return 0;
        }
        has_body = n > 0;
    } else if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0) {
        has_body = true; /* chunked: counted as it arrives in LWS_CALLBACK_HTTP_BODY */
    }
    req->route = find_route(srv, req->path);
    if (!req->route) {
        respond_error(req, 404, "not_found", has_body, NULL);
        return 0;
    }
    req->route_name = req->route->name;
    unsigned allowed =
        req->route->methods | ((req->route->methods & FB_HTTP_GET) ? FB_HTTP_HEAD : 0);
    if (!(req->method & allowed)) {
        char allow[128];
        allow_list(allowed, allow, sizeof(allow));
        const char *hdr[] = {"allow:", allow, NULL};
        /* A body may follow that we will not read: close after answering. */
        respond_error(req, 405, "method_not_allowed", true, hdr);
        return 0;
    }
    if (has_body && (req->method & (FB_HTTP_POST | FB_HTTP_PUT | FB_HTTP_PATCH)))
        return 0; /* dispatched at LWS_CALLBACK_HTTP_BODY_COMPLETION */
    dispatch(req);
    return 0;
}

/* Writes the answer. Returns -1 when the connection must close. */
static int on_writeable(struct lws *wsi, fb_http_req_t *req)
{
    unsigned char hbuf[LWS_PRE + MAX_RESP_HEADER];
    unsigned char *start = hbuf + LWS_PRE, *p = start, *end = hbuf + sizeof(hbuf) - 1;

    if (lws_add_http_common_headers(wsi, (unsigned)req->status, req->ctype, req->resp_len, &p, end))
        return -1;
    if (lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)"no-store", 8, &p, end))
        return -1;
    for (char **e = req->extra; e && e[0] && e[1]; e += 2)
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)e[0],
                                        (const unsigned char *)e[1], (int)strlen(e[1]), &p, end))
            return -1;
    if (req->close_after && lws_add_http_header_by_name(wsi, (const unsigned char *)"connection:",
                                                        (const unsigned char *)"close", 5, &p, end))
        return -1;
    if (lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    if (req->method != FB_HTTP_HEAD && req->resp_len) {
        if (lws_write(wsi, req->resp + LWS_PRE, req->resp_len, LWS_WRITE_HTTP_FINAL) !=
            (int)req->resp_len)
            return -1;
    }
    bool close_after = req->close_after;
    return (lws_http_transaction_completed(wsi) || close_after) ? -1 : 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    struct pss *pss = user;
    struct lws_context *ctx = lws_get_context(wsi);
    fb_http_server_t *srv = ctx ? lws_context_user(ctx) : NULL;

    if (!srv || !pss)
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    switch ((int)reason) {
    case LWS_CALLBACK_HTTP:
        return on_http(srv, wsi, pss, in ? (const char *)in : "/");

    case LWS_CALLBACK_HTTP_BODY: {
        fb_http_req_t *req = pss->req;
        if (!req || req->answered)
            return 0;
        if (fb_buf_append(&req->body, in, len) == FB_ETOOBIG) {
            FB_INFO(HTTP, "%s body over %zu bytes refused", req->tag, srv->opts.max_body_bytes);
            respond_error(req, 413, "body_too_large", true, NULL);
        }
        return 0;
    }

    case LWS_CALLBACK_HTTP_BODY_COMPLETION: {
        fb_http_req_t *req = pss->req;
        if (req && !req->answered && !req->dispatched)
            dispatch(req);
        return 0;
    }

    case LWS_CALLBACK_HTTP_WRITEABLE: {
        fb_http_req_t *req = pss->req;
        if (!req || !req->answered)
            return 0;
        pss->req = NULL;
        req->wsi = NULL;
        int rc = on_writeable(wsi, req);
        req_free(req);
        return rc;
    }

    case LWS_CALLBACK_CLOSED_HTTP: {
        fb_http_req_t *req = pss->req;
        if (!req)
            return 0;
        pss->req = NULL;
        req->wsi = NULL;
        if (req->answered) {
            req_free(req); /* answered but never written: the client left first */
        } else {
            FB_DEBUG(HTTP, "%s client went away before the answer", req->tag);
            if (!req->dispatched) {
                srv->inflight--;
                req_free(req);
            }
            /* else: orphaned, freed when the handler answers */
        }
        return 0;
    }

    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

void fb_http_respond(fb_http_req_t *req, int status, const char *content_type, const char *body,
                     size_t len, const char *const *extra_headers)
{
    FB_ASSERT(!req->answered);
    req->answered = true;
    fb_http_server_t *srv = req->srv;
    if (srv) {
        srv->inflight--;
        fb_metrics_http_request(req->route_name, status);
    }
    FB_DEBUG(HTTP, "%s answered %d", req->tag, status);
    if (!req->wsi) { /* the client or the server is gone: drop the answer */
        req_free(req);
        return;
    }
    req->status = status;
    req->ctype = fb_strdup(content_type ? content_type : "text/plain; charset=utf-8");
    req->resp = fb_malloc(LWS_PRE + len + 1);
    if (len)
        memcpy(req->resp + LWS_PRE, body, len);
    req->resp_len = len;
    if (extra_headers) {
        size_t n = 0;
        while (extra_headers[n])
            n++;
        req->extra = fb_calloc(n + 1, sizeof(char *));
        for (size_t i = 0; i < n; i++)
            req->extra[i] = fb_strdup(extra_headers[i]);
    }
    lws_callback_on_writable(req->wsi);
}

unsigned fb_http_req_method(const fb_http_req_t *req)
{
    return req->method;
}

const char *fb_http_req_path(const fb_http_req_t *req)
{
    return req->path;
}

const char *fb_http_req_query(const fb_http_req_t *req)
{
    return req->query;
}

const char *fb_http_req_body(const fb_http_req_t *req, size_t *len)
{
    *len = req->body.len;
    return fb_buf_str(&req->body);
}

const char *fb_http_req_tag(const fb_http_req_t *req)
{
    return req->tag;
}

bool fb_http_req_connected(const fb_http_req_t *req)
{
    return req->wsi != NULL;
}

int fb_http_req_header(const fb_http_req_t *req, const char *name, char *out, size_t cap)
{
    if (!req->wsi || cap == 0 || cap > 65536)
        return -1;
    for (int t = 0; t < WSI_TOKEN_COUNT; t++) {
        const unsigned char *s = lws_token_to_string((enum lws_token_indexes)t);
        if (!s || strcmp((const char *)s, name) != 0)
            continue;
        int total = lws_hdr_total_length(req->wsi, (enum lws_token_indexes)t);
        if (total <= 0 || (size_t)total >= cap)
            return -1;
        return lws_hdr_copy(req->wsi, out, (int)cap, (enum lws_token_indexes)t);
    }
    int nlen = (int)strlen(name);
    int total = lws_hdr_custom_length(req->wsi, name, nlen);
    if (total <= 0 || (size_t)total >= cap)
        return -1;
    return lws_hdr_custom_copy(req->wsi, out, (int)cap, name, nlen);
}

/* Routes libwebsockets' own log lines into ours, under the http subsystem. */
static void lws_log_emit(int level, const char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    if (level & LLL_ERR)
        FB_ERR(HTTP, "lws: %.*s", (int)n, line);
    else if (level & LLL_WARN)
        FB_WARN(HTTP, "lws: %.*s", (int)n, line);
    else
        FB_DEBUG(HTTP, "lws: %.*s", (int)n, line);
}

fb_http_server_t *fb_http_server_create(uv_loop_t *loop, const fb_server_opts_t *opts)
{
    fb_http_server_t *srv = fb_calloc(1, sizeof(*srv));
    srv->loop = loop;
    srv->opts = *opts;
    srv->opts.listen_host = fb_strdup(opts->listen_host ? opts->listen_host : "127.0.0.1");
    srv->protocols[0].name = "http";
    srv->protocols[0].callback = callback;
    srv->protocols[0].per_session_data_size = sizeof(struct pss);
    return srv;
}

int fb_http_server_route(fb_http_server_t *srv, const char *path, unsigned methods,
                         const char *name, fb_http_handler_fn fn, void *arg)
{
    if (srv->nroutes == MAX_ROUTES || !path || path[0] != '/' || !fn || !methods)
        return FB_EINVAL;
    struct route *r = &srv->routes[srv->nroutes++];
    r->path = fb_strdup(path);
    r->methods = methods;
    r->name = name;
    r->fn = fn;
    r->arg = arg;
    return 0;
}

/*
 * libwebsockets 4.1 loads its libuv glue as a plugin (libwebsockets-evlib_uv.so) and unloads it at
 * the end of lws_context_destroy(), while close callbacks that live in it may still be queued on
 * our loop: the process then jumps into unmapped code. Holding our own RTLD_NODELETE reference
 * keeps the plugin mapped for the life of the process. Returns 0, or FB_ENOENT when missing.
 */
static int pin_uv_plugin(void)
{
    static void *handle;
    if (handle)
        return 0;
    handle = dlopen("libwebsockets-evlib_uv.so", RTLD_NOW | RTLD_NODELETE);
    if (!handle) {
        FB_ERR(HTTP,
               "cannot load libwebsockets' libuv plugin: %s (Debian package "
               "libwebsockets-evlib-uv)",
               dlerror());
        return FB_ENOENT;
    }
    return 0;
}

/*
 * Checks that host:port can be bound, with the options libwebsockets uses. libwebsockets 4.1
 * cannot fail a bind cleanly on a foreign loop (its half-built context crashes later in a close
 * callback), so a bind that would fail is caught here, with the system's reason.
 */
static int check_bindable(const char *host, int port)
{
    struct addrinfo hints, *res = NULL;
    char service[16];
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(service, sizeof(service), "%d", port);
    int gai = getaddrinfo(host, service, &hints, &res);
    if (gai) {
        FB_ERR(HTTP, "cannot listen on %s:%d: %s", host, port, gai_strerror(gai));
        return FB_ECONNECT;
    }
    int rc = 0;
    int fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 1) != 0) {
        FB_ERR(HTTP, "cannot listen on %s:%d: %s", host, port, strerror(errno));
        rc = FB_ECONNECT;
    }
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
    return rc;
}

int fb_http_server_start(fb_http_server_t *srv)
{
    int prc = pin_uv_plugin();
    if (prc == 0)
        prc = check_bindable(srv->opts.listen_host, srv->opts.listen_port);
    if (prc)
        return prc;

    struct lws_context_creation_info info;
    void *foreign_loops[1] = {srv->loop};

    int lws_levels = LLL_ERR | LLL_WARN;
    if (FB_LOG_ENABLED(HTTP, FB_LOG_DEBUG))
        lws_levels |= LLL_NOTICE;
    lws_set_log_level(lws_levels, lws_log_emit);

    memset(&info, 0, sizeof(info));
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_UV_NO_SIGSEGV_SIGFPE_SPIN |
                   LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE |
                   LWS_SERVER_OPTION_DISABLE_IPV6;
    if (strchr(srv->opts.listen_host, ':'))
        info.options &= ~(uint64_t)LWS_SERVER_OPTION_DISABLE_IPV6;
    info.foreign_loops = foreign_loops;
    info.pcontext = &srv->ctx;
    info.user = srv;
    info.port = srv->opts.listen_port;
    info.iface = srv->opts.listen_host;
    info.protocols = srv->protocols;
    info.max_http_header_data = (unsigned short)srv->opts.max_header_bytes;
    info.timeout_secs = srv->opts.idle_timeout_s;
    info.timeout_secs_ah_idle = srv->opts.idle_timeout_s;
    info.keepalive_timeout = (int)srv->opts.keepalive_timeout_s;
    info.server_string = "frichebot";
    info.vhost_name = "frichebot";

    srv->ctx = lws_create_context(&info);
    if (!srv->ctx) {
        FB_ERR(HTTP, "cannot listen on %s:%d", srv->opts.listen_host, srv->opts.listen_port);
        return FB_ECONNECT;
    }
    srv->vhost = lws_get_vhost_by_name(srv->ctx, "frichebot");
    if (!srv->vhost || lws_get_vhost_listen_port(srv->vhost) <= 0) {
        FB_ERR(HTTP, "cannot listen on %s:%d", srv->opts.listen_host, srv->opts.listen_port);
        lws_context_destroy(srv->ctx);
        return FB_ECONNECT;
    }
    FB_NOTICE(HTTP, "listening on http://%s:%d", srv->opts.listen_host,
              lws_get_vhost_listen_port(srv->vhost));
    return 0;
}

int fb_http_server_port(const fb_http_server_t *srv)
{
    return (srv->ctx && srv->vhost) ? lws_get_vhost_listen_port(srv->vhost) : 0;
}

void fb_http_server_drain(fb_http_server_t *srv)
{
    srv->draining = true;
}

size_t fb_http_server_inflight(const fb_http_server_t *srv)
{
    return srv->inflight;
}

static void reap_closed(uv_handle_t *h)
{
    fb_http_server_t *srv = h->data;
    for (int i = 0; i < srv->nroutes; i++)
        fb_free(srv->routes[i].path);
    fb_free(srv->opts.listen_host);
    fb_free(srv);
}

struct handle_count {
    const uv_handle_t *mine;
    size_t others;
};

static void count_other_handles(uv_handle_t *h, void *arg)
{
    struct handle_count *c = arg;
    if (h != c->mine)
        c->others++;
}

/*
 * Finishes the libwebsockets teardown, then frees the server. With a foreign loop, libwebsockets
 * 4.1 stops after closing its handles; a second lws_context_destroy() then completes it and clears
 * srv->ctx. That second call is only safe once lws's close callbacks have all run, that is once
 * nothing but this timer is left on the loop (hence: destroy the server after closing everything
 * else).
 */
static void reap_tick(uv_timer_t *t)
{
    fb_http_server_t *srv = t->data;
    if (srv->ctx) {
        if (srv->finishing)
            return;
        struct handle_count c = {(uv_handle_t *)&srv->reap, 0};
        uv_walk(srv->loop, count_other_handles, &c);
        if (c.others != 0)
            return;
        srv->finishing = true;
        lws_context_destroy(srv->ctx);
        if (srv->ctx)
            return;
    }
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, reap_closed);
}

void fb_http_server_destroy(fb_http_server_t *srv)
{
    /* Orphan every live request: handlers may still answer, into the void. */
    for (fb_http_req_t *req = srv->reqs, *next; req; req = next) {
        next = req->next;
        req->srv = NULL;
        req->prev = req->next = NULL;
    }
    srv->reqs = NULL;
    uv_timer_init(srv->loop, &srv->reap);
    srv->reap.data = srv;
    if (srv->ctx) {
        lws_context_destroy(srv->ctx);
        uv_timer_start(&srv->reap, reap_tick, 5, 5);
    } else {
        uv_close((uv_handle_t *)&srv->reap, reap_closed);
    }
}
