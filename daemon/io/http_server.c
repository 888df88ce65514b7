/* SPDX-License-Identifier: MIT */
/*
 * http_server.c - the incoming HTTP server: libwebsockets joined to the daemon's libuv loop.
 *
 * libwebsockets owns the connections and the HTTP parsing; this file owns routing, limits and
 * answers. The listening socket is ours (io/http_listen.c: per-address cap, descriptor shortage):
 * each accepted connection is handed to libwebsockets with lws_adopt_descriptor_vhost().
 * Every request becomes an fb_http_req_t kept on a list in the server, so that a handler that
 * answers later (after a Redis round trip) can always answer, even if the connection or the whole
 * server is gone by then: the answer is simply dropped. Answers are written from
 * LWS_CALLBACK_HTTP_WRITEABLE only ("write only when writable", libwebsockets README.coding).
 *
 * Static files are answered the same way, read at once from disk (8 MiB at most). Websockets
 * share the context, the port and the protocol callback: each connection is an fb_ws_t with a
 * queue of copied frames written from LWS_CALLBACK_SERVER_WRITEABLE, kept on a list so that the
 * server's destroy can tell every endpoint that its connections are gone. See
 * docs/internals/HTTP_SERVER.md.
 *
 * Teardown: lws_context_destroy() closes lws's uv handles asynchronously; lws clears
 * srv->ctx through info.pcontext when it is done, and a small timer frees the server then.
 */
#include "io/http_server.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "frichebot/err.h"
#include "frichebot/hash.h"
#include "frichebot/log.h"
#include "io/http_encoding.h"
#include "io/http_framing.h"
#include "io/http_listen.h"
#include "io/metrics.h"

#define MAX_ROUTES      32
#define MAX_PATH        2048
#define MAX_QUERY       4096
#define MAX_RESP_HEADER 4096

/* Static files above this size answer 404; smaller ones are read at once on the loop thread. */
#define STATIC_MAX_BYTES ((size_t)8 * 1024 * 1024)
/* Bytes of outgoing frames a websocket may have queued (fb_ws_send answers FB_EAGAIN past it). */
#define WS_QUEUE_MAX ((size_t)1024 * 1024)
/* A close reason fits in a control frame: 125 bytes minus the 2-byte code. */
#define WS_REASON_MAX 123

/* How long a deferred handler may take before the connection is given up (its own work, e.g. a
 * Redis command, has shorter timeouts of its own). */
#define FB_HTTP_HANDLER_TIMEOUT_S 120

struct route {
    char *path;
    size_t prefix_len; /* 0: exact path; else a prefix route of that many bytes */
    unsigned methods;
    const char *name;
    fb_http_handler_fn fn;
    void *arg;
};

/* Files under `dir` served at URL `prefix` (which ends with '/'). */
struct static_route {
    char *prefix;
    size_t prefix_len;
    char *dir;
    unsigned cache_s;
    const char *name;
};

/* A websocket endpoint. */
struct ws_route {
    char *path;
    const char *name;
    fb_ws_ops_t ops;
    size_t max_message;
    void *arg;
};

/* One queued outgoing text frame: LWS_PRE bytes, then the payload. */
struct ws_frame {
    struct ws_frame *next;
    size_t len;
    unsigned char data[];
};

struct pss;

struct fb_ws_s {
    fb_http_server_t *srv;
    struct lws *wsi; /* the connection; NULL once detached by fb_http_server_destroy */
    struct pss *pss; /* lws's per-connection data pointing back at us */
    const struct ws_route *ep;
    fb_ws_t *prev, *next; /* on srv->wss */
    struct ws_frame *qhead, *qtail;
    size_t queued;      /* payload bytes in the queue */
    fb_buf_t rx;        /* the text message being reassembled */
    size_t rx_seen;     /* bytes of the current message received so far */
    bool rx_active;     /* a message has started and its final fragment is still to come */
    bool rx_binary;     /* the current message is binary: refused */
    bool rx_refuse;     /* the current message is being discarded */
    bool accepted;      /* open() kept the connection: closed() is owed */
    bool in_open;       /* open() is running: fb_ws_header() works */
    bool closing;       /* a close is requested; it goes out once the queue is empty */
    bool close_started; /* the queue is empty: the close frame goes out at the next timer */
    int close_code;
    char close_reason[WS_REASON_MAX + 1];
    void *data;
    char peer[64];
    char tag[32];
};

struct fb_http_server_s {
    uv_loop_t *loop;
    fb_server_opts_t opts;
    struct lws_context *ctx; /* NULLed by lws once fully destroyed (info.pcontext) */
    struct lws_vhost *vhost;
    struct lws_protocols protocols[2];
    struct route routes[MAX_ROUTES];
    int nroutes;
    struct static_route statics[MAX_ROUTES];
    int nstatics;
    struct ws_route wsroutes[MAX_ROUTES];
    int nwsroutes;
    fb_ws_t *wss; /* every open websocket */
    size_t nws;
    bool draining;
    size_t inflight;
    uint64_t next_tag;
    fb_http_req_t *reqs;     /* every live request, for orphaning at destroy */
    fb_listener_t *listener; /* our listening socket; NULL before start */
    uv_timer_t tick;         /* writes the log's "suppressed" reports during a flood */
    bool tick_init;
    uv_timer_t reap;        /* polls for the end of lws teardown */
    bool finishing;         /* the second lws_context_destroy() was made */
    char listen_error[192]; /* why start failed, with the address; "" when it did not */
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
    bool chunked;            /* the body is chunked: decoded as it arrives */
    fb_http_chunked_t chunk; /* its decoder */
    bool dispatched;         /* the handler was called */
    bool answered;           /* fb_http_respond was called */
    bool close_after;
    int status;
    char *ctype;
    unsigned char *resp; /* LWS_PRE bytes, then the body */
    size_t resp_len;
    char **extra; /* NULL-terminated name, value pairs */
    char tag[32];
};

/* Per-connection data handed to us by lws (zeroed again when a connection upgrades). */
struct pss {
    fb_http_req_t *req; /* HTTP: the request being handled */
    fb_ws_t *ws;        /* websocket: the connection, NULL once finished or detached */
};

static const char *status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Payload Too Large";
    case 426:
        return "Upgrade Required";
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

/* A request counts as in flight from its headers until it is freed: after its answer was handed to
 * the socket, or when the client left (and any handler answered). So the drain waits for answers
 * to be written, not only produced. */
static void req_free(fb_http_req_t *req)
{
    if (req->srv) {
        list_remove(req->srv, req);
        FB_ASSERT(req->srv->inflight > 0);
        req->srv->inflight--;
    }
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

static void respond_take(fb_http_req_t *req, int status, const char *content_type,
                         unsigned char *resp, size_t len, const char *const *extra_headers);

/* Answers with a small JSON error document and, when `close_after`, closes the connection. */
static void respond_error(fb_http_req_t *req, int status, const char *code, bool close_after,
                          const char *const *extra)
{
    char body[256];
    int n = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"status\":%d,\"message\":\"%s\"}\n",
                     code, status, status_text(status));
    req->close_after = req->close_after || close_after; /* never reopens a closing connection */
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

/* The exact route of `path`, else the prefix route with the longest prefix of it, or NULL. */
static const struct route *find_route(const fb_http_server_t *srv, const char *path)
{
    const struct route *best = NULL;
    for (int i = 0; i < srv->nroutes; i++) {
        const struct route *r = &srv->routes[i];
        if (!r->prefix_len && strcmp(r->path, path) == 0)
            return r;
        if (r->prefix_len && strncmp(path, r->path, r->prefix_len) == 0 &&
            path[r->prefix_len] != '\0' && (!best || r->prefix_len > best->prefix_len))
            best = r;
    }
    return best;
}

static const struct ws_route *find_ws_route(const fb_http_server_t *srv, const char *path)
{
    for (int i = 0; i < srv->nwsroutes; i++)
        if (strcmp(srv->wsroutes[i].path, path) == 0)
            return &srv->wsroutes[i];
    return NULL;
}

/* The static route with the longest prefix of `path`, or NULL. */
static const struct static_route *find_static(const fb_http_server_t *srv, const char *path)
{
    const struct static_route *best = NULL;
    for (int i = 0; i < srv->nstatics; i++) {
        const struct static_route *st = &srv->statics[i];
        if (strncmp(path, st->prefix, st->prefix_len) == 0 &&
            (!best || st->prefix_len > best->prefix_len))
            best = st;
    }
    return best;
}

/*
 * True when `rel` (a path relative to a static directory) is safe to open: no NUL, backslash,
 * '%', control character, empty segment ("//", leading '/') or segment starting with '.' (hidden
 * files, "." and "..").
 */
static bool static_path_safe(const char *rel, size_t len)
{
    if (strlen(rel) != len)
        return false;
    bool seg_start = true;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)rel[i];
        if (c < 0x20 || c == 0x7f || c == '\\' || c == '%')
            return false;
        if (seg_start && (c == '/' || c == '.'))
            return false;
        seg_start = c == '/';
    }
    return true;
}

static const char *static_type(const char *file)
{
    static const struct {
        const char *ext;
        const char *type;
    } types[] = {
        {"html", "text/html; charset=utf-8"},
        {"css", "text/css; charset=utf-8"},
        {"js", "text/javascript; charset=utf-8"},
        {"mjs", "text/javascript; charset=utf-8"},
        {"json", "application/json"},
        {"svg", "image/svg+xml"},
        {"png", "image/png"},
        {"jpg", "image/jpeg"},
        {"ico", "image/x-icon"},
        {"woff", "font/woff"},
        {"woff2", "font/woff2"},
        {"txt", "text/plain; charset=utf-8"},
        {"map", "application/json"},
    };
    const char *slash = strrchr(file, '/');
    const char *dot = strrchr(slash ? slash : file, '.');
    if (dot)
        for (size_t i = 0; i < FB_ARRAY_SIZE(types); i++)
            if (strcmp(dot + 1, types[i].ext) == 0)
                return types[i].type;
    return "application/octet-stream";
}

/* True when the If-None-Match value `inm` names `etag` (or is "*"). */
static bool etag_matches(const char *inm, const char *etag)
{
    size_t elen = strlen(etag);
    for (const char *p = inm; *p;) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        if (p[0] == 'W' && p[1] == '/')
            p += 2; /* weak comparison, as RFC 9110 prescribes for If-None-Match */
        const char *e = p;
        while (*e && *e != ',')
            e++;
        size_t n = (size_t)(e - p);
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if ((n == 1 && p[0] == '*') || (n == elen && memcmp(p, etag, n) == 0))
            return true;
        p = e;
    }
    return false;
}

/* Reads the whole regular file `fd` of `size` bytes into a new LWS_PRE-prefixed buffer. */
static unsigned char *read_whole(int fd, size_t size)
{
    unsigned char *buf = fb_malloc(LWS_PRE + size + 1);
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, buf + LWS_PRE + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fb_free(buf);
            return NULL;
        }
        got += (size_t)n;
    }
    return buf;
}

/*
 * Opens `path` for serving: a regular file of at most STATIC_MAX_BYTES, never through a symbolic
 * link (O_NOFOLLOW) nor blocking on a FIFO (O_NONBLOCK: it is then refused as not regular).
 * Returns the descriptor with *sb filled, or -1 with errno set (EINVAL: not a small regular file).
 */
static int open_static(const char *path, struct stat *sb)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    if (fstat(fd, sb) != 0 || !S_ISREG(sb->st_mode) ||
        (unsigned long long)sb->st_size > STATIC_MAX_BYTES) {
        close(fd);
        errno = EINVAL;
        return -1;
    }
    return fd;
}

static unsigned long long mtime_ns(const struct stat *sb)
{
    return (unsigned long long)sb->st_mtim.tv_sec * 1000000000ull +
           (unsigned long long)sb->st_mtim.tv_nsec;
}

/*
 * The precompressed variant of `file` for `coding` ("FILE.br" or "FILE.gz"), opened, or -1 when
 * there is none. A variant older than the file is stale (the file was edited after the build):
 * it is ignored, so an edit is never hidden behind an old compressed copy.
 */
static int open_variant(const char *file, unsigned coding, const struct stat *orig, struct stat *sb)
{
    char *path = fb_asprintf("%s.%s", file, coding == FB_HTTP_CODING_BR ? "br" : "gz");
    int fd = open_static(path, sb);
    fb_free(path);
    if (fd >= 0 && mtime_ns(sb) < mtime_ns(orig)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* The Cache-Control value of a cache policy (fb_http_server_static's cache_s). */
static void cache_control(unsigned cache_s, char *out, size_t cap)
{
    if (cache_s == FB_HTTP_CACHE_IMMUTABLE)
        snprintf(out, cap, "public, max-age=31536000, immutable");
    else if (cache_s == FB_HTTP_CACHE_REVALIDATE)
        snprintf(out, cap, "no-cache");
    else if (cache_s)
        snprintf(out, cap, "public, max-age=%u", cache_s);
    else
        snprintf(out, cap, "no-store");
}

/*
 * Answers a GET or HEAD of `file` (a path already checked as safe) with the content coding the
 * request accepts among the file's precompressed variants. Returns 0 once answered, or FB_ENOENT
 * without answering when `file` cannot be served (the caller answers its 404). Files are read
 * synchronously: they are small (8 MiB at most) and local.
 */
static int serve_file(fb_http_req_t *req, const char *file, unsigned cache_s)
{
    struct stat sb;
    int fd = open_static(file, &sb);
    if (fd < 0) {
        FB_DEBUG(HTTP, "%s static file %s not served: %s", req->tag, file,
                 errno == EINVAL ? "not a regular file of at most 8 MiB" : strerror(errno));
        return FB_ENOENT;
    }
    /* Which precompressed variants exist is only looked at for the codings the client takes. */
    char accept[512];
    const char *ae =
        fb_http_req_header(req, "accept-encoding:", accept, sizeof(accept)) > 0 ? accept : NULL;
    unsigned coding = FB_HTTP_CODING_IDENTITY;
    size_t size = (size_t)sb.st_size; /* the bytes sent: the variant's when there is one */
    for (unsigned want = FB_HTTP_CODING_BR | FB_HTTP_CODING_GZIP; ae;) {
        coding = fb_http_pick_coding(ae, want);
        if (coding == FB_HTTP_CODING_IDENTITY)
            break;
        struct stat vsb;
        int vfd = open_variant(file, coding, &sb, &vsb);
        if (vfd >= 0) {
            close(fd);
            fd = vfd;
            size = (size_t)vsb.st_size;
            break;
        }
        want &= ~coding; /* no such variant: the next best */
    }
    /* The ETag names the file's own version (size and modification time) and the coding: each
     * coding is a representation of its own (RFC 9110, section 8.8.3). */
    const char *cname = fb_http_coding_name(coding);
    char etag[80];
    snprintf(etag, sizeof(etag), "\"%llx-%llx%s%s\"", (unsigned long long)sb.st_size, mtime_ns(&sb),
             cname ? "-" : "", cname ? cname : "");
    char cache[48];
    cache_control(cache_s, cache, sizeof(cache));
    const char *hdr[10] = {"etag:", etag, "cache-control:", cache, "vary:", "Accept-Encoding"};
    if (cname) {
        hdr[6] = "content-encoding:";
        hdr[7] = cname;
    }
    const char *type = static_type(file);

    char inm[512];
    if (fb_http_req_header(req, "if-none-match:", inm, sizeof(inm)) > 0 &&
        etag_matches(inm, etag)) {
        close(fd);
        hdr[6] = NULL; /* a 304 has no body to describe */
        respond_take(req, 304, type, NULL, 0, hdr);
        return 0;
    }
    unsigned char *body = NULL;
    if (req->method != FB_HTTP_HEAD && !(body = read_whole(fd, size))) {
        FB_WARN(HTTP, "%s static file read failed: %s", req->tag, strerror(errno));
        close(fd);
        return FB_ENOENT;
    }
    close(fd);
    respond_take(req, 200, type, body, size, hdr);
    return 0;
}

/*
 * Answers a GET or HEAD of a static file. Every refusal is a 404 that says nothing of the reason
 * (the log does, at debug level).
 */
static void serve_static(fb_http_req_t *req, const struct static_route *st)
{
    const char *rel = req->path + st->prefix_len;
    size_t rel_len = strlen(rel);
    if (!static_path_safe(rel, rel_len)) {
        FB_DEBUG(HTTP, "%s unsafe static path refused", req->tag);
        respond_error(req, 404, "not_found", false, NULL);
        return;
    }
    /* A directory (empty path or trailing '/') means its index.html. */
    bool index = rel_len == 0 || rel[rel_len - 1] == '/';
    char *file = fb_asprintf("%s/%s%s", st->dir, rel, index ? "index.html" : "");
    int rc = serve_file(req, file, st->cache_s);
    fb_free(file);
    if (rc)
        respond_error(req, 404, "not_found", false, NULL);
}

int fb_http_respond_file(fb_http_req_t *req, const char *path, unsigned cache_s)
{
    if (!req || req->answered || !path || !path[0])
        return FB_EINVAL;
    return serve_file(req, path, cache_s);
}

/* ---- Request framing (RFC 9112, section 6): see io/http_framing.h ---- */

/* Field lines of one framing header kept for the check (more are counted, and refused). */
#define FRAMING_FIELDS_MAX 4
/* Longest framing field value read; no valid one comes near (a longer one is refused). */
#define FRAMING_VALUE_MAX 256
/* Field lines of one header looked at, at most (libwebsockets bounds them well before). */
#define FRAMING_LINES_MAX 64

/*
 * Reads every field line of header `h` of the request on `wsi`. libwebsockets keeps repeated
 * lines as fragments of one header, which lws_hdr_copy() joins with commas ("0,40"), so they are
 * read one fragment at a time. Keeps the first FRAMING_FIELDS_MAX values in `vals` and `fields`.
 * Returns the number of lines, or -1 when a value is longer than FRAMING_VALUE_MAX.
 */
static int framing_fields(struct lws *wsi, enum lws_token_indexes h,
                          char vals[FRAMING_FIELDS_MAX][FRAMING_VALUE_MAX + 1],
                          fb_http_field_t *fields)
{
    int n = 0;
    for (; n < FRAMING_LINES_MAX; n++) {
        if (lws_hdr_fragment_length(wsi, h, n) > FRAMING_VALUE_MAX)
            return -1;
        char spare[FRAMING_VALUE_MAX + 1];
        char *dst = n < FRAMING_FIELDS_MAX ? vals[n] : spare;
        int got = lws_hdr_copy_fragment(wsi, dst, FRAMING_VALUE_MAX + 1, h, n);
        if (got < 0)
            break; /* no such fragment: every line was read */
        if (n < FRAMING_FIELDS_MAX) {
            fields[n].p = dst;
            fields[n].len = (size_t)got;
        }
    }
    return n;
}

/*
 * True when the request on `wsi` has a field line naming Content-Length or Transfer-Encoding
 * with white space before its colon or before the name ("Transfer-Encoding : chunked",
 * " Transfer-Encoding: chunked"): RFC 9112 section 5.1 requires a 400, and a proxy in front may
 * have honoured the field where libwebsockets does not. libwebsockets keeps such a line as a
 * custom header named in lower case up to and including its first ':', and 4.1 can only look
 * those up by exact name: the usual spellings are tried one by one.
 */
static bool framing_disguised(struct lws *wsi)
{
    static const char *const names[] = {"content-length", "transfer-encoding"};
    static const char *const before[] = {"", " ", "\t"};
    static const char *const after[] = {"", " ", "\t", "  ", "\t\t", " \t", "\t "};
    char probe[64];
    for (size_t i = 0; i < FB_ARRAY_SIZE(names); i++)
        for (size_t b = 0; b < FB_ARRAY_SIZE(before); b++)
            for (size_t a = 0; a < FB_ARRAY_SIZE(after); a++) {
                if (!before[b][0] && !after[a][0])
                    continue; /* the plain name: libwebsockets' own header */
                /* Built by hand: with snprintf, these 40 probes took 3 % of the daemon's
                 * instructions per appservice transaction (issue 17). */
                size_t lb = strlen(before[b]), ln = strlen(names[i]), la = strlen(after[a]);
                memcpy(probe, before[b], lb);
                memcpy(probe + lb, names[i], ln);
                memcpy(probe + lb + ln, after[a], la);
                probe[lb + ln + la] = ':';
                int n = (int)(lb + ln + la + 1);
                if (lws_hdr_custom_length(wsi, probe, n) >= 0)
                    return true;
            }
    return false;
}

/* Decides how the body of the request on `wsi` is framed. Returns 0, or FB_EPROTO with out->why. */
static int request_framing(struct lws *wsi, fb_http_framing_t *out)
{
    char clv[FRAMING_FIELDS_MAX][FRAMING_VALUE_MAX + 1],
        tev[FRAMING_FIELDS_MAX][FRAMING_VALUE_MAX + 1];
    fb_http_field_t cl[FRAMING_FIELDS_MAX], te[FRAMING_FIELDS_MAX];
    int ncl = framing_fields(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, clv, cl);
    int nte = framing_fields(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING, tev, te);
    if (ncl < 0 || nte < 0) {
        memset(out, 0, sizeof(*out));
        out->why = "Content-Length or Transfer-Encoding value too long";
        return FB_EPROTO;
    }
    /* More lines than kept still count as repeated: FRAMING_FIELDS_MAX > 1. */
    return fb_http_framing_check(cl, (size_t)(ncl < FRAMING_FIELDS_MAX ? ncl : FRAMING_FIELDS_MAX),
                                 te, (size_t)(nte < FRAMING_FIELDS_MAX ? nte : FRAMING_FIELDS_MAX),
                                 framing_disguised(wsi), out);
}

/*
 * LWS_CALLBACK_HTTP_BODY: a piece of the body of `req`. A Content-Length body is kept as it comes
 * (libwebsockets stops at its length and then sends LWS_CALLBACK_HTTP_BODY_COMPLETION). A chunked
 * body is decoded here: libwebsockets 4.1 does not decode chunked request bodies, it hands over
 * the raw bytes, framing included, as if the body ran to its 100 MiB default, and never completes
 * it. So the request is dispatched here at its last chunk, and its connection closes after the
 * answer (libwebsockets would take whatever follows for more body).
 */
static void on_http_body(fb_http_server_t *srv, fb_http_req_t *req, const void *in, size_t len)
{
    if (req->answered || req->dispatched)
        return;
    int rc;
    if (req->chunked) {
        size_t used;
        rc = fb_http_chunked_feed(&req->chunk, in, len, &req->body, &used);
        if (rc == 1) {
            req->close_after = true;
            dispatch(req);
            return;
        }
    } else {
        rc = fb_buf_append(&req->body, in, len);
    }
    if (rc == FB_ETOOBIG) {
        FB_INFO(HTTP, "%s body over %zu bytes refused", req->tag, srv->opts.max_body_bytes);
        respond_error(req, 413, "body_too_large", true, NULL);
    } else if (rc == FB_EPROTO) {
        FB_INFO(HTTP, "%s chunked body refused: framing error", req->tag);
        respond_error(req, 400, "bad_request", true, NULL);
    }
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
    /* Framing first: a request whose body's end is ambiguous is answered 400 and its connection
     * closed, before anything else of it (or after it) is looked at. */
    fb_http_framing_t fr;
    if (request_framing(wsi, &fr) != 0) {
        FB_INFO(HTTP, "%s refused: %s", req->tag, fr.why);
        respond_error(req, 400, "bad_request", true, NULL);
        return 0;
    }
    /* The body limit is server-wide: checked before the route, so no oversized body is read. */
    if (fr.kind == FB_HTTP_FRAMING_LENGTH && fr.length > srv->opts.max_body_bytes) {
        FB_INFO(HTTP, "%s body of %llu bytes refused (limit %zu)", req->tag,
                (unsigned long long)fr.length, srv->opts.max_body_bytes);
        respond_error(req, 413, "body_too_large", true, NULL);
        return 0;
    }
    /* A chunked body is decoded and counted as it arrives (on_http_body). */
    bool has_body =
        fr.kind == FB_HTTP_FRAMING_CHUNKED || (fr.kind == FB_HTTP_FRAMING_LENGTH && fr.length > 0);
    req->chunked = fr.kind == FB_HTTP_FRAMING_CHUNKED;
    if (req->chunked)
        fb_http_chunked_init(&req->chunk);
    /* A decoded %00 would cut the path short and make it name something else: no such path. */
    bool nul_in_path = m >= 0 && uri_ptr == uri && uri_len >= 0 &&
                       strnlen(uri, (size_t)uri_len + 1) != (size_t)uri_len;
    req->route = nul_in_path ? NULL : find_route(srv, req->path);
    if (nul_in_path) {
        respond_error(req, 404, "not_found", has_body, NULL);
        return 0;
    }
    if (!req->route) {
        const struct ws_route *wr = find_ws_route(srv, req->path);
        const struct static_route *st = wr ? NULL : find_static(srv, req->path);
        if (wr) { /* a plain request on a websocket path */
            static const char *const hdr[] = {"upgrade:", "websocket", NULL};
            req->route_name = wr->name;
            respond_error(req, 426, "upgrade_required", has_body, hdr);
        } else if (!st) {
            respond_error(req, 404, "not_found", has_body, NULL);
        } else if (!(req->method & (FB_HTTP_GET | FB_HTTP_HEAD))) {
            static const char *const hdr[] = {"allow:", "GET, HEAD", NULL};
            req->route_name = st->name;
            respond_error(req, 405, "method_not_allowed", true, hdr);
        } else {
            req->route_name = st->name;
            req->dispatched = true;
            serve_static(req, st);
            if (has_body)
                req->close_after = true; /* a body we will not read */
        }
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
        return 0; /* dispatched once the body is in (on_http_body or BODY_COMPLETION) */
    /* libwebsockets reads a body for POST, PUT and PATCH only: any other's would be parsed as
     * the next request. Answer this one, then close. A POST, PUT or PATCH with no framing at all
     * is closed too: libwebsockets 4.1 may wait for a body of its own default length there, and
     * would take the next request for it. */
    req->close_after = has_body || (req->method & (FB_HTTP_POST | FB_HTTP_PUT | FB_HTTP_PATCH));
    dispatch(req);
    return 0;
}

/* Writes the answer. Returns -1 when the connection must close. */
static int on_writeable(struct lws *wsi, fb_http_req_t *req)
{
    unsigned char hbuf[LWS_PRE + MAX_RESP_HEADER];
    unsigned char *start = hbuf + LWS_PRE, *p = start, *end = hbuf + sizeof(hbuf) - 1;

    /* A 304 has no body and no Content-Length of its own. */
    if (req->status == 304 ? lws_add_http_header_status(wsi, 304, &p, end)
                           : lws_add_http_common_headers(wsi, (unsigned)req->status, req->ctype,
                                                         req->resp_len, &p, end))
        return -1;
    bool own_cache = false;
    for (char **e = req->extra; e && e[0] && e[1]; e += 2)
        own_cache |= strcmp(e[0], "cache-control:") == 0;
    if (!own_cache && lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
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
    if (req->method != FB_HTTP_HEAD && req->status != 304 && req->resp_len) {
        if (lws_write(wsi, req->resp + LWS_PRE, req->resp_len, LWS_WRITE_HTTP_FINAL) !=
            (int)req->resp_len)
            return -1;
    }
    bool close_after = req->close_after;
    return (lws_http_transaction_completed(wsi) || close_after) ? -1 : 0;
}

/* ---- Websockets ---- */

/*
 * LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: refuses a websocket upgrade that carries a body or ambiguous
 * framing (400: what follows the headers would be frames to us and maybe body to a proxy), that
 * is not for a registered endpoint (404) or that comes while draining (503), writing the answer
 * at once as libwebsockets expects. Returns 0 to let the upgrade proceed, 1 when answered
 * (libwebsockets completes the transaction), -1 to hang up after the answer.
 */
static int on_confirm_upgrade(fb_http_server_t *srv, struct lws *wsi, const char *proto)
{
    char path[MAX_PATH];
    int status = 0;
    const char *code = NULL, *name = "unknown";
    const struct ws_route *wr = NULL;
    if (!proto || strcmp(proto, "websocket") != 0)
        return 0; /* other upgrades (h2c): libwebsockets' own business, as before */
    fb_http_framing_t fr;
    if (request_framing(wsi, &fr) != 0 || fr.kind == FB_HTTP_FRAMING_CHUNKED ||
        (fr.kind == FB_HTTP_FRAMING_LENGTH && fr.length > 0)) {
        status = 400;
        code = "bad_request";
    } else if (lws_hdr_copy(wsi, path, sizeof(path), WSI_TOKEN_GET_URI) <= 0 ||
               !(wr = find_ws_route(srv, path))) {
        status = 404;
        code = "not_found";
    } else if (srv->draining) {
        status = 503;
        code = "shutting_down";
        name = wr->name;
    } else {
        return 0;
    }
    fb_metrics_http_request(name, status);
    FB_DEBUG(HTTP, "websocket upgrade refused with %d", status);

    char body[192];
    int blen = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"status\":%d,\"message\":\"%s\"}\n",
                        code, status, status_text(status));
    unsigned char hbuf[LWS_PRE + 1024 + sizeof(body)];
    unsigned char *start = hbuf + LWS_PRE, *p = start, *end = hbuf + sizeof(hbuf) - 1;
    if (lws_add_http_common_headers(wsi, (unsigned)status, "application/json", (size_t)blen, &p,
                                    end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)"no-store", 8, &p, end) ||
        (status == 503 && lws_add_http_header_by_name(wsi, (const unsigned char *)"retry-after:",
                                                      (const unsigned char *)"5", 1, &p, end)) ||
        (status != 404 &&
         lws_add_http_header_by_name(wsi, (const unsigned char *)"connection:",
                                     (const unsigned char *)"close", 5, &p, end)) ||
        lws_finalize_http_header(wsi, &p, end))
        return -1;
    if (end - p < blen)
        return -1;
    memcpy(p, body, (size_t)blen);
    p += blen;
    int n = (int)(p - start);
    if (lws_write(wsi, start, (size_t)n, LWS_WRITE_HTTP_FINAL) != n)
        return -1;
    return status == 404 ? 1 : -1;
}

static void ws_list_remove(fb_http_server_t *srv, fb_ws_t *ws)
{
    if (ws->prev)
        ws->prev->next = ws->next;
    else if (srv->wss == ws)
        srv->wss = ws->next;
    if (ws->next)
        ws->next->prev = ws->prev;
    ws->prev = ws->next = NULL;
}

static void ws_free(fb_ws_t *ws)
{
    for (struct ws_frame *f = ws->qhead, *next; f; f = next) {
        next = f->next;
        fb_free(f);
    }
    fb_buf_free(&ws->rx);
    fb_free(ws);
}

/*
 * The connection is gone (or the server is being destroyed): takes `ws` off the server, tells
 * the endpoint if open() had accepted it, and frees it.
 */
static void ws_finish(fb_ws_t *ws)
{
    fb_http_server_t *srv = ws->srv;
    if (ws->pss)
        ws->pss->ws = NULL;
    ws->pss = NULL;
    ws->wsi = NULL;
    ws->closing = true; /* fb_ws_send() from closed() answers FB_ECANCELED */
    ws_list_remove(srv, ws);
    srv->nws--;
    fb_metrics_ws_connections(ws->ep->name, -1);
    FB_DEBUG(HTTP, "%s closed", ws->tag);
    if (ws->accepted && ws->ep->ops.closed)
        ws->ep->ops.closed(ws, ws->ep->arg);
    ws_free(ws);
}

/* Milliseconds since the peer last sent anything on `wsi` (frames and pings alike), or -1. */
static long ws_idle_ms(struct lws *wsi)
{
    struct tcp_info ti;
    socklen_t tlen = sizeof(ti);
    int fd = (int)lws_get_socket_fd(wsi);
    if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tlen) != 0)
        return -1;
    return (long)ti.tcpi_last_data_recv;
}

static void ws_arm_idle(fb_ws_t *ws, long ms)
{
    if (ws->srv->opts.idle_timeout_s > 0)
        lws_set_timer_usecs(ws->wsi, (lws_usec_t)ms * 1000);
}

static int header_copy(struct lws *wsi, const char *name, char *out, size_t cap);

/*
 * Behind a trusted reverse proxy (server.trusted_proxies) the peer is the proxy: the client is
 * the last address of X-Forwarded-For, the one the proxy added (the ones before it are the
 * client's word). `peer` (the connection's address) is replaced by it when it is an IP address;
 * else left as it is. Only the per-address counts use it: an address is never logged.
 */
static void forwarded_peer(const fb_http_server_t *srv, struct lws *wsi, char *peer, size_t cap)
{
    if (!peer[0] || !fb_listener_trusted(srv->listener, peer))
        return;
    char xff[2048]; /* a chain of proxies; longer, the connection's address counts */
    if (header_copy(wsi, "x-forwarded-for:", xff, sizeof(xff)) <= 0)
        return;
    char *last = strrchr(xff, ',');
    last = last ? last + 1 : xff;
    while (*last == ' ' || *last == '\t')
        last++;
    size_t n = strcspn(last, " \t");
    last[n] = '\0';
    unsigned char bin[sizeof(struct in6_addr)];
    if (n == 0 || n >= cap ||
        (inet_pton(AF_INET, last, bin) != 1 && inet_pton(AF_INET6, last, bin) != 1))
        return;
    memcpy(peer, last, n + 1);
}

/* LWS_CALLBACK_ESTABLISHED: the upgrade is done. Returns -1 to hang up. */
static int on_ws_established(fb_http_server_t *srv, struct lws *wsi, struct pss *pss)
{
    char path[MAX_PATH];
    const struct ws_route *wr = NULL;
    if (lws_hdr_copy(wsi, path, sizeof(path), WSI_TOKEN_GET_URI) <= 0 ||
        !(wr = find_ws_route(srv, path)))
        return -1; /* cannot happen: on_confirm_upgrade let it through */
    fb_ws_t *ws = fb_calloc(1, sizeof(*ws));
    ws->srv = srv;
    ws->wsi = wsi;
    ws->pss = pss;
    ws->ep = wr;
    fb_buf_init(&ws->rx, wr->max_message);
    snprintf(ws->tag, sizeof(ws->tag), "[ws|%lu]", (unsigned long)++srv->next_tag);
    if (!lws_get_peer_simple(wsi, ws->peer, sizeof(ws->peer)))
        ws->peer[0] = '\0';
    forwarded_peer(srv, wsi, ws->peer, sizeof(ws->peer));
    pss->ws = ws;
    ws->next = srv->wss;
    if (srv->wss)
        srv->wss->prev = ws;
    srv->wss = ws;
    srv->nws++;
    fb_metrics_ws_connections(wr->name, +1);
    fb_metrics_http_request(wr->name, 101);
    FB_DEBUG(HTTP, "%s open on %s", ws->tag, wr->name);

    int rc = 0;
    if (wr->ops.open) {
        ws->in_open = true;
        rc = wr->ops.open(ws, wr->arg);
        ws->in_open = false;
    }
    if (rc == 0) {
        ws->accepted = true;
    } else {
        FB_DEBUG(HTTP, "%s refused by the endpoint: %s", ws->tag, fb_strerror(rc));
        fb_ws_close(ws, 1008, NULL);
    }
    ws_arm_idle(ws, (long)srv->opts.idle_timeout_s * 1000);
    return 0;
}

/* LWS_CALLBACK_RECEIVE: a piece of a message. */
static void on_ws_receive(fb_ws_t *ws, struct lws *wsi, const void *in, size_t len)
{
    const struct ws_route *ep = ws->ep;
    if (!ws->rx_active) {
        ws->rx_active = true;
        ws->rx_seen = 0;
        ws->rx_binary = lws_frame_is_binary(wsi) != 0;
        ws->rx_refuse = ws->rx_binary;
        fb_buf_reset(&ws->rx);
    }
    ws->rx_seen += len;
    if (!ws->rx_refuse && len && fb_buf_append(&ws->rx, in, len) != 0) {
        ws->rx_refuse = true;
        fb_buf_free(&ws->rx);
        fb_buf_init(&ws->rx, ep->max_message);
    }
    if (!lws_is_final_fragment(wsi))
        return;
    ws->rx_active = false;
    if (ws->closing)
        return; /* the connection is on its way out: nothing more is delivered */
    if (ws->rx_refuse) {
        FB_INFO(HTTP, "%s %s message of %zu bytes refused (limit %zu)", ws->tag,
                ws->rx_binary ? "binary" : "text", ws->rx_seen, ep->max_message);
        fb_metrics_ws_message(ep->name, FB_METRICS_WS_REFUSED);
        if (ep->ops.refused)
            ep->ops.refused(ws, ws->rx_seen, ws->rx_binary, ep->arg);
        return;
    }
    fb_metrics_ws_message(ep->name, FB_METRICS_WS_IN);
    if (ep->ops.message)
        ep->ops.message(ws, ws->rx.len ? ws->rx.data : "", ws->rx.len, ep->arg);
    fb_buf_reset(&ws->rx);
}

/* At most this many frames per LWS_CALLBACK_SERVER_WRITEABLE, so that one busy socket does not
 * hold the loop: the rest waits for the next one. */
#define WS_FRAMES_PER_WRITEABLE 16

/*
 * LWS_CALLBACK_SERVER_WRITEABLE: writes the queued frames, one write(2) each, until the queue is
 * empty, libwebsockets had to keep part of one (lws_partial_buffered(): the socket is full) or
 * WS_FRAMES_PER_WRITEABLE went; a message's echo, acknowledgement and replies thus take one
 * wait for writability, not one each (five epoll_ctl(2) calls per wait under libuv). Once the
 * queue is empty, a requested close starts from the next LWS_CALLBACK_TIMER: libwebsockets 4.1
 * treats a -1 returned here as a failed write and drops the connection without the close frame,
 * while a -1 from the timer callback sends the close (with lws_close_reason()'s code) and waits
 * for the peer's answer. Returns -1 to drop the connection.
 */
static int on_ws_writeable(fb_ws_t *ws, struct lws *wsi)
{
    if (ws->qhead) {
        for (int i = 0; ws->qhead && i < WS_FRAMES_PER_WRITEABLE; i++) {
            struct ws_frame *f = ws->qhead;
            ws->qhead = f->next;
            if (!ws->qhead)
                ws->qtail = NULL;
            ws->queued -= f->len;
            int n = lws_write(wsi, f->data + LWS_PRE, f->len, LWS_WRITE_TEXT);
            size_t flen = f->len;
            fb_free(f);
            if (n < 0 || (size_t)n < flen) {
                FB_DEBUG(HTTP, "%s write failed", ws->tag);
                return -1;
            }
            fb_metrics_ws_message(ws->ep->name, FB_METRICS_WS_OUT);
            if (lws_partial_buffered(wsi))
                break;
        }
        if (ws->qhead || ws->closing)
            lws_callback_on_writable(wsi);
        return 0;
    }
    if (ws->closing && !ws->close_started) {
        ws->close_started = true;
        lws_set_timer_usecs(wsi, 1);
    }
    return 0;
}

/*
 * LWS_CALLBACK_TIMER: starts a requested close (see on_ws_writeable), or closes a websocket the
 * peer has left silent for server.idle_timeout_s. Returns -1 to close.
 */
static int on_ws_timer(fb_ws_t *ws)
{
    if (ws->close_started) {
        size_t rlen = strlen(ws->close_reason);
        lws_close_reason(ws->wsi, (enum lws_close_status)ws->close_code,
                         rlen ? (unsigned char *)ws->close_reason : NULL, rlen);
        return -1;
    }
    long limit = (long)ws->srv->opts.idle_timeout_s * 1000;
    long idle = ws_idle_ms(ws->wsi);
    if (idle >= 0 && idle < limit) {
        ws_arm_idle(ws, limit - idle);
        return 0;
    }
    FB_DEBUG(HTTP, "%s idle for %ld ms: closing", ws->tag, idle);
    if (ws->closing)
        return -1; /* a close already waits for a peer that neither reads nor writes */
    fb_ws_close(ws, 1001, "inactivité");
    ws_arm_idle(ws, limit);
    return 0;
}

/* Hands a connection accepted by our listener to libwebsockets, as lws's own listener does
 * after its accept(); the connection's peer entry rides along as the wsi's opaque data, given
 * back at LWS_CALLBACK_WSI_DESTROY. Returns 0, or FB_EIO (lws has closed `fd` then). */
static int adopt_connection(void *arg, int fd, fb_listen_peer_t *peer)
{
    fb_http_server_t *srv = arg;
    lws_sock_file_fd_type desc;
    desc.sockfd = fd;
    struct lws *wsi =
        lws_adopt_descriptor_vhost(srv->vhost, LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP, desc, NULL, NULL);
    if (!wsi) {
        FB_WARN(HTTP, "libwebsockets could not take a new connection");
        return FB_EIO;
    }
    lws_set_opaque_user_data(wsi, peer);
    return 0;
}

/* LWS_CALLBACK_WSI_DESTROY, the last word on every connection (HTTP or websocket): its address
 * has one connection less. */
static int on_wsi_destroy(fb_http_server_t *srv, struct lws *wsi)
{
    fb_listen_peer_t *peer = lws_get_opaque_user_data(wsi);
    if (peer && srv->listener) {
        lws_set_opaque_user_data(wsi, NULL);
        fb_listener_release(srv->listener, peer);
    }
    return 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    struct pss *pss = user;
    struct lws_context *ctx = lws_get_context(wsi);
    fb_http_server_t *srv = ctx ? lws_context_user(ctx) : NULL;

    if (srv && reason == LWS_CALLBACK_HTTP_CONFIRM_UPGRADE)
        return on_confirm_upgrade(srv, wsi, in);
    if (srv && reason == LWS_CALLBACK_WSI_DESTROY)
        return on_wsi_destroy(srv, wsi);
    if (!srv || !pss)
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    switch ((int)reason) {
    case LWS_CALLBACK_ESTABLISHED:
        return on_ws_established(srv, wsi, pss);

    case LWS_CALLBACK_RECEIVE:
        if (pss->ws)
            on_ws_receive(pss->ws, wsi, in, len);
        return 0;

    case LWS_CALLBACK_SERVER_WRITEABLE:
        return pss->ws ? on_ws_writeable(pss->ws, wsi) : 0;

    case LWS_CALLBACK_TIMER:
        return pss->ws ? on_ws_timer(pss->ws) : 0;

    case LWS_CALLBACK_CLOSED:
        if (pss->ws)
            ws_finish(pss->ws);
        return 0;

    case LWS_CALLBACK_HTTP:
        return on_http(srv, wsi, pss, in ? (const char *)in : "/");

    case LWS_CALLBACK_HTTP_BODY:
        if (pss->req)
            on_http_body(srv, pss->req, in, len);
        return 0;

    case LWS_CALLBACK_HTTP_BODY_COMPLETION: {
        fb_http_req_t *req = pss->req;
        if (!req || req->answered || req->dispatched)
            return 0;
        if (req->chunked) { /* not expected: the body's end is its last chunk (on_http_body) */
            respond_error(req, 400, "bad_request", true, NULL);
            return 0;
        }
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
            if (!req->dispatched)
                req_free(req);
            /* else: orphaned, freed when the handler answers */
        }
        return 0;
    }

    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/*
 * Answers `req` with `resp` (LWS_PRE bytes then the body; taken, may be NULL when `len` is only the
 * announced Content-Length of a HEAD answer).
 */
static void respond_take(fb_http_req_t *req, int status, const char *content_type,
                         unsigned char *resp, size_t len, const char *const *extra_headers)
{
    FB_ASSERT(!req->answered);
    req->answered = true;
    fb_http_server_t *srv = req->srv;
    if (srv)
        fb_metrics_http_request(req->route_name, status);
    FB_DEBUG(HTTP, "%s answered %d", req->tag, status);
    if (!req->wsi) { /* the client or the server is gone: drop the answer */
        fb_free(resp);
        req_free(req);
        return;
    }
    req->status = status;
    req->ctype = fb_strdup(content_type ? content_type : "text/plain; charset=utf-8");
    req->resp = resp;
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

void fb_http_respond(fb_http_req_t *req, int status, const char *content_type, const char *body,
                     size_t len, const char *const *extra_headers)
{
    unsigned char *resp = fb_malloc(LWS_PRE + len + 1);
    if (len)
        memcpy(resp + LWS_PRE, body, len);
    respond_take(req, status, content_type, resp, len, extra_headers);
}

const char *fb_http_req_path(const fb_http_req_t *req)
{
    return req->path;
}

unsigned fb_http_req_method(const fb_http_req_t *req)
{
    return req->method;
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

/* Copies header `name` ("authorization:") of the request on `wsi`; see fb_http_req_header(). */
static int header_copy(struct lws *wsi, const char *name, char *out, size_t cap)
{
    if (!wsi || cap == 0 || cap > 65536)
        return -1;
    for (int t = 0; t < WSI_TOKEN_COUNT; t++) {
        const unsigned char *s = lws_token_to_string((enum lws_token_indexes)t);
        if (!s || strcmp((const char *)s, name) != 0)
            continue;
        int total = lws_hdr_total_length(wsi, (enum lws_token_indexes)t);
        if (total <= 0 || (size_t)total >= cap)
            return -1;
        return lws_hdr_copy(wsi, out, (int)cap, (enum lws_token_indexes)t);
    }
    int nlen = (int)strlen(name);
    int total = lws_hdr_custom_length(wsi, name, nlen);
    if (total <= 0 || (size_t)total >= cap)
        return -1;
    return lws_hdr_custom_copy(wsi, out, (int)cap, name, nlen);
}

int fb_http_req_header(const fb_http_req_t *req, const char *name, char *out, size_t cap)
{
    return header_copy(req->wsi, name, out, cap);
}

/* Routes libwebsockets' own log lines into ours, under the http subsystem. They all come from
 * here, so each gets its own rate-limit key: the line without its digits ("accept: errno 24"
 * and "accept: errno 23" are one key, fd numbers and pointers do not make new ones). */
static void lws_log_emit(int level, const char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    uint64_t key = FB_FNV64_INIT;
    for (size_t i = 0; i < n; i++)
        if (line[i] < '0' || line[i] > '9')
            key = fb_fnv64(key, line + i, 1);
    fb_log_level_t lvl = (level & LLL_ERR)    ? FB_LOG_ERR
                         : (level & LLL_WARN) ? FB_LOG_WARN
                                              : FB_LOG_DEBUG;
    if (FB_LOG_ENABLED(HTTP, lvl))
        fb__log_key(FB_SUB_HTTP, lvl, key, "lws: %.*s", (int)n, line);
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
    r->prefix_len = 0;
    r->methods = methods;
    r->name = name;
    r->fn = fn;
    r->arg = arg;
    return 0;
}

int fb_http_server_route_prefix(fb_http_server_t *srv, const char *prefix, unsigned methods,
                                const char *name, fb_http_handler_fn fn, void *arg)
{
    size_t plen = prefix ? strlen(prefix) : 0;
    if (plen < 2 || prefix[plen - 1] != '/')
        return FB_EINVAL;
    int rc = fb_http_server_route(srv, prefix, methods, name, fn, arg);
    if (rc == 0)
        srv->routes[srv->nroutes - 1].prefix_len = plen;
    return rc;
}

int fb_http_server_static(fb_http_server_t *srv, const char *prefix, const char *dir,
                          unsigned cache_s, const char *name)
{
    size_t plen = prefix ? strlen(prefix) : 0;
    if (srv->nstatics == MAX_ROUTES || plen == 0 || prefix[0] != '/' || prefix[plen - 1] != '/' ||
        !dir || !dir[0] || !name)
        return FB_EINVAL;
    struct static_route *st = &srv->statics[srv->nstatics++];
    st->prefix = fb_strdup(prefix);
    st->prefix_len = plen;
    size_t dlen = strlen(dir);
    while (dlen > 1 && dir[dlen - 1] == '/')
        dlen--;
    st->dir = fb_strndup(dir, dlen);
    st->cache_s = cache_s;
    st->name = name;
    return 0;
}

int fb_http_server_websocket(fb_http_server_t *srv, const char *path, const char *name,
                             const fb_ws_ops_t *ops, size_t max_message, void *arg)
{
    if (srv->nwsroutes == MAX_ROUTES || !path || path[0] != '/' || !name || !ops || !ops->message ||
        !ops->closed || max_message == 0 || find_ws_route(srv, path))
        return FB_EINVAL;
    struct ws_route *wr = &srv->wsroutes[srv->nwsroutes++];
    wr->path = fb_strdup(path);
    wr->name = name;
    wr->ops = *ops;
    wr->max_message = max_message;
    wr->arg = arg;
    return 0;
}

size_t fb_http_server_websockets(const fb_http_server_t *srv)
{
    return srv->nws;
}

int fb_ws_send(fb_ws_t *ws, const char *data, size_t len)
{
    if (ws->closing || !ws->wsi)
        return FB_ECANCELED;
    if (ws->queued + len > WS_QUEUE_MAX) {
        FB_INFO(HTTP, "%s send queue full (%zu bytes queued)", ws->tag, ws->queued);
        return FB_EAGAIN;
    }
    struct ws_frame *f = fb_malloc(sizeof(*f) + LWS_PRE + len + 1);
    f->next = NULL;
    f->len = len;
    if (len)
        memcpy(f->data + LWS_PRE, data, len);
    if (ws->qtail)
        ws->qtail->next = f;
    else
        ws->qhead = f;
    ws->qtail = f;
    ws->queued += len;
    lws_callback_on_writable(ws->wsi);
    return 0;
}

void fb_ws_close(fb_ws_t *ws, int code, const char *reason)
{
    if (ws->closing || !ws->wsi)
        return;
    ws->closing = true;
    ws->close_code = (code >= 1000 && code <= 4999) ? code : 1000;
    size_t rlen = reason ? strnlen(reason, WS_REASON_MAX) : 0;
    if (rlen)
        memcpy(ws->close_reason, reason, rlen);
    ws->close_reason[rlen] = '\0';
    FB_DEBUG(HTTP, "%s closing with %d", ws->tag, ws->close_code);
    lws_callback_on_writable(ws->wsi);
}

const char *fb_ws_peer(const fb_ws_t *ws)
{
    return ws->peer;
}

int fb_ws_header(const fb_ws_t *ws, const char *name, char *out, size_t cap)
{
    return ws->in_open ? header_copy(ws->wsi, name, out, cap) : -1;
}

void fb_ws_set_data(fb_ws_t *ws, void *data)
{
    ws->data = data;
}

void *fb_ws_data(const fb_ws_t *ws)
{
    return ws->data;
}

const char *fb_ws_tag(const fb_ws_t *ws)
{
    return ws->tag;
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

/* Records and logs why the server cannot listen; returns FB_ELISTEN. */
static int listen_failed(fb_http_server_t *srv, const char *why)
{
    const char *host = srv->opts.listen_host;
    snprintf(srv->listen_error, sizeof(srv->listen_error), "cannot listen on %s%s%s:%d: %s",
             strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "",
             srv->opts.listen_port, why);
    FB_ERR(HTTP, "%s", srv->listen_error);
    return FB_ELISTEN;
}

/* Writes the log's pending "suppressed" reports even when nothing else is logged. */
static void on_tick(uv_timer_t *t)
{
    (void)t;
    fb_log_flush_suppressed(false);
}

int fb_http_server_start(fb_http_server_t *srv)
{
    srv->listen_error[0] = '\0';
    int prc = pin_uv_plugin();
    if (prc)
        return prc;
    /* Bound here, not by libwebsockets (which 4.1 cannot fail cleanly on a foreign loop). */
    const char *why = NULL;
    srv->listener = fb_listener_open(srv->loop, srv->opts.listen_host, srv->opts.listen_port,
                                     srv->opts.max_connections_per_address,
                                     (const char *const *)srv->opts.trusted_proxies,
                                     adopt_connection, srv, &why);
    if (!srv->listener)
        return listen_failed(srv, why ? why : "unknown error");

    struct lws_context_creation_info info;
    void *foreign_loops[1] = {srv->loop};

    int lws_levels = LLL_ERR | LLL_WARN;
    if (FB_LOG_ENABLED(HTTP, FB_LOG_DEBUG))
        lws_levels |= LLL_NOTICE;
    lws_set_log_level(lws_levels, lws_log_emit);

    memset(&info, 0, sizeof(info));
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_UV_NO_SIGSEGV_SIGFPE_SPIN |
                   LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE |
                   LWS_SERVER_OPTION_VALIDATE_UTF8 | LWS_SERVER_OPTION_DISABLE_IPV6;
    if (strchr(srv->opts.listen_host, ':'))
        info.options &= ~(uint64_t)LWS_SERVER_OPTION_DISABLE_IPV6;
    info.foreign_loops = foreign_loops;
    info.pcontext = &srv->ctx;
    info.user = srv;
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER; /* connections come from srv->listener */
    info.protocols = srv->protocols;
    info.max_http_header_data = (unsigned short)srv->opts.max_header_bytes;
    info.timeout_secs = srv->opts.idle_timeout_s;
    info.timeout_secs_ah_idle = srv->opts.idle_timeout_s;
    info.keepalive_timeout = (int)srv->opts.keepalive_timeout_s;
    info.server_string = "frichebot";
    info.vhost_name = "frichebot";

    srv->ctx = lws_create_context(&info);
    if (!srv->ctx) {
        fb_listener_stop(srv->listener);
        return listen_failed(srv, "libwebsockets could not create its context");
    }
    srv->vhost = lws_get_vhost_by_name(srv->ctx, "frichebot");
    if (!srv->vhost) {
        fb_listener_stop(srv->listener);
        lws_context_destroy(srv->ctx);
        return listen_failed(srv, "libwebsockets could not create its vhost");
    }
    uv_timer_init(srv->loop, &srv->tick);
    srv->tick_init = true;
    uv_timer_start(&srv->tick, on_tick, 1000, 1000);
    uv_unref((uv_handle_t *)&srv->tick);
    /* The address actually bound (port 0 picks one): deploy/run.sh shows this URL. */
    const char *host = srv->opts.listen_host;
    FB_NOTICE(HTTP, "listening on http://%s%s%s:%d", strchr(host, ':') ? "[" : "", host,
              strchr(host, ':') ? "]" : "", fb_listener_port(srv->listener));
    return 0;
}

const char *fb_http_server_listen_error(const fb_http_server_t *srv)
{
    return srv->listen_error[0] ? srv->listen_error : NULL;
}

int fb_http_server_port(const fb_http_server_t *srv)
{
    return (srv->ctx && srv->vhost && srv->listener) ? fb_listener_port(srv->listener) : 0;
}

void fb_http_server_drain(fb_http_server_t *srv)
{
    srv->draining = true;
    for (fb_ws_t *ws = srv->wss; ws; ws = ws->next)
        fb_ws_close(ws, 1001, "arrêt du serveur");
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
    for (int i = 0; i < srv->nstatics; i++) {
        fb_free(srv->statics[i].prefix);
        fb_free(srv->statics[i].dir);
    }
    for (int i = 0; i < srv->nwsroutes; i++)
        fb_free(srv->wsroutes[i].path);
    fb_free(srv->opts.listen_host);
    fb_listener_free(srv->listener);
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
    if (srv->listener)
        fb_listener_stop(srv->listener); /* no new connection during the teardown */
    if (srv->tick_init)
        uv_close((uv_handle_t *)&srv->tick, NULL);
    fb_log_flush_suppressed(true); /* the last reports of a flood, before the exit */
    /* Orphan every live request: handlers may still answer, into the void. */
    for (fb_http_req_t *req = srv->reqs, *next; req; req = next) {
        next = req->next;
        req->srv = NULL;
        req->prev = req->next = NULL;
    }
    srv->reqs = NULL;
    /* Finish every websocket now: closed() runs once each, before lws closes the sockets (its
     * LWS_CALLBACK_CLOSED then finds them detached). */
    while (srv->wss)
        ws_finish(srv->wss);
    uv_timer_init(srv->loop, &srv->reap);
    srv->reap.data = srv;
    if (srv->ctx) {
        lws_context_destroy(srv->ctx);
        uv_timer_start(&srv->reap, reap_tick, 5, 5);
    } else {
        uv_close((uv_handle_t *)&srv->reap, reap_closed);
    }
}
