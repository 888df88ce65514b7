/* SPDX-License-Identifier: MIT */
/*
 * http_client.c - the outgoing HTTP client: one curl multi handle driven by the libuv loop
 * (curl docs/examples/multi-uv.c), with per-attempt timeouts, bounded responses, connection
 * reuse and retries on uv timers. See http_client.h for the contract and
 * docs/internals/HTTP_CLIENT.md for the design.
 *
 * How the pieces fit:
 *   - curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION): each gets a heap
 *     `struct sock` embedding a uv_poll_t, freed in its close callback;
 *   - curl tells us when to call it back (CURLMOPT_TIMERFUNCTION): one uv_timer_t in the client;
 *   - both callbacks call drive(), which runs curl_multi_socket_action() and then collects the
 *     finished transfers;
 *   - each request (`struct req`) owns one easy handle for all its attempts and embeds the
 *     uv_timer_t that waits before a retry; it is freed in that timer's close callback.
 * The client itself is freed when its last handle (curl timer, sockets, request timers) has
 * closed after fb_http_client_close().
 *
 * User callbacks are never called from inside a curl callback: finished transfers are collected
 * after curl_multi_socket_action() returns, so a callback may start requests or close the client.
 */
#include "io/http_client.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "frichebot/clock.h"
#include "frichebot/err.h"
#include "frichebot/log.h"
#include "io/metrics.h"

/* Defaults for option values left at 0. */
#define DEFAULT_TIMEOUT_MS         30000u
#define DEFAULT_CONNECT_TIMEOUT_MS 10000u
#define DEFAULT_MAX_RESPONSE_BYTES ((size_t)8 << 20)

/* Longest host and path shown in a log tag; longer ones are cut with "...". */
#define TAG_HOST_MAX 64
#define TAG_PATH_MAX 64

struct sock {
    uv_poll_t poll;   /* data points back to this struct */
    curl_socket_t fd; /* the socket curl asked us to watch */
    struct fb_http_client_s *client;
    struct sock *prev, *next; /* the client's list of open sockets */
};

struct req {
    struct req *prev, *next; /* the client's list of pending requests */
    struct fb_http_client_s *client;
    unsigned id;                    /* sequence number, for the tag */
    char tag[192];                  /* "[req|17|GET host/path]": never a query string */
    CURL *easy;                     /* one easy handle for every attempt */
    struct curl_slist *req_headers; /* copied request headers */
    char *url;                      /* copied */
    char *method;                   /* copied */
    char *body;                     /* copied request body (curl reads it in place) */
    size_t body_len;
    fb_retry_policy_t policy; /* copied */
    bool may_retry;           /* idempotent method, or the caller allowed it */
    bool in_multi;            /* the easy handle is added to the multi handle */
    bool waiting;             /* waiting on retry_timer for the next attempt */
    bool toobig;              /* the current attempt overflowed a buffer */
    bool hdrs_parsed;         /* hdrs[] reflects resp_hdrs for the current attempt */
    unsigned attempts;        /* attempts started */
    int status;               /* HTTP status of the last finished attempt, 0 if none */
    uint64_t started_ms;      /* loop time when the request was accepted */
    fb_buf_t resp_body;       /* body of the current attempt, bounded by max_response_bytes */
    fb_buf_t resp_hdrs;       /* raw header lines of the current attempt, parsed in place */
    fb_http_header_t *hdrs;   /* parsed headers, pointing into resp_hdrs */
    size_t n_hdrs, cap_hdrs;
    uv_timer_t retry_timer; /* waits before a retry; the req is freed in its close callback */
    fb_http_done_cb cb;
    void *arg;
    bool cancel; /* marked by fb_http_client_cancel(), completed by it */
};

struct fb_http_client_s {
    uv_loop_t *loop;
    CURLM *multi;               /* NULL once torn down */
    uv_timer_t timer;           /* curl's timeout (CURLMOPT_TIMERFUNCTION) */
    fb_http_client_opts_t opts; /* copied, defaults filled in */
    struct req *reqs;           /* pending requests, running or waiting */
    size_t n_pending;
    size_t n_waiting;   /* pending requests waiting for a retry */
    struct sock *socks; /* sockets being watched */
    unsigned next_id;
    unsigned open_handles;   /* uv handles not yet closed: timer, socks, request timers */
    int depth;               /* > 0 while inside drive(): teardown must wait */
    bool closing;            /* fb_http_client_close() was called */
    bool torn_down;          /* the multi handle is gone and the timer is closing */
    void (*done)(void *arg); /* close completion */
    void *done_arg;
};

static void drive(struct fb_http_client_s *c, curl_socket_t fd, int flags);
static void finish(struct req *r, int err);

/* ---- small helpers ------------------------------------------------------------------------ */

const char *fb_http_response_header(const fb_http_response_t *resp, const char *name)
{
    if (!resp || !name)
        return NULL;
    for (size_t i = 0; i < resp->n_headers; i++)
        if (strcasecmp(resp->headers[i].name, name) == 0)
            return resp->headers[i].value;
    return NULL;
}

/* Methods that may be repeated without changing the outcome (RFC 9110 9.2.2). */
static bool method_is_idempotent(const char *m)
{
    static const char *const ok[] = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"};
    for (size_t i = 0; i < FB_ARRAY_SIZE(ok); i++)
        if (strcmp(m, ok[i]) == 0)
            return true;
    return false;
}

/* A method is 1 to 16 upper-case letters: enough for HTTP, and nothing that could inject. */
static bool method_is_valid(const char *m)
{
    size_t n = strlen(m);
    if (n == 0 || n > 16)
        return false;
    for (size_t i = 0; i < n; i++)
        if (m[i] < 'A' || m[i] > 'Z')
            return false;
    return true;
}

/* A header line is "Name: value" (or curl's "Name;" for an empty value) with no CR or LF. */
static bool header_is_valid(const char *h)
{
    size_t name_len = strcspn(h, ":;");
    if (name_len == 0 || h[name_len] == '\0')
        return false;
    for (size_t i = 0; i < name_len; i++)
        if (h[i] <= ' ' || h[i] == 0x7f)
            return false;
    return strpbrk(h, "\r\n") == NULL;
}

/* True when some line of `hs` (NULL-terminated, may be NULL) sets header `name`. */
static bool headers_have(const char *const *hs, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; hs && hs[i]; i++)
        if (strncasecmp(hs[i], name, n) == 0 && (hs[i][n] == ':' || hs[i][n] == ';'))
            return true;
    return false;
}

/* Copies `s` into `dst` (of size `size`), cutting it with "..." when longer than `max`. */
static void copy_cut(char *dst, size_t size, const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n > max)
        snprintf(dst, size, "%.*s...", (int)max, s);
    else
        snprintf(dst, size, "%s", s);
}

/*
 * Checks `url` (absolute, http or https, no control characters or spaces) and writes the log tag
 * of request `id` into `tag`: method, host and path, never the user info, port-less, and never
 * the query string or fragment. Returns 0 or FB_EINVAL.
 */
static int check_url_make_tag(const char *url, const char *method, unsigned id, char *tag,
                              size_t tag_size)
{
    for (const char *p = url; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return FB_EINVAL;
    int rc = FB_EINVAL;
    char *scheme = NULL, *host = NULL, *path = NULL;
    CURLU *u = curl_url();
    if (!u)
        return FB_EIO;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
        goto fail;
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
        goto fail;
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || host[0] == '\0')
        goto fail;
    if (curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK)
        goto fail;
    char h[TAG_HOST_MAX + 4], p[TAG_PATH_MAX + 4];
    copy_cut(h, sizeof(h), host, TAG_HOST_MAX);
    copy_cut(p, sizeof(p), path, TAG_PATH_MAX);
    snprintf(tag, tag_size, "[req|%u|%s %s%s]", id, method, h, p);
    rc = 0;
fail:
    curl_free(path);
    curl_free(host);
    curl_free(scheme);
    curl_url_cleanup(u);
    return rc;
}

/* ---- socket and timer plumbing -------------------------------------------------------------- */

/* Called when one of the client's uv handles has closed; frees the client after the last one
 * once it is closing, then calls the close callback. */
static void handle_closed(struct fb_http_client_s *c)
{
    FB_ASSERT(c->open_handles > 0);
    c->open_handles--;
    if (!c->torn_down || c->open_handles > 0)
        return;
    void (*done)(void *) = c->done;
    void *arg = c->done_arg;
    FB_DEBUG(CLIENT, "client closed");
    fb_free(c);
    if (done)
        done(arg);
}

static void on_sock_closed(uv_handle_t *h)
{
    struct sock *s = h->data;
    struct fb_http_client_s *c = s->client;
    fb_free(s);
    handle_closed(c);
}

/* Stops watching a socket and closes its poll handle; `s` is freed in the close callback. */
static void sock_close(struct sock *s)
{
    struct fb_http_client_s *c = s->client;
    if (s->prev)
        s->prev->next = s->next;
    else
        c->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct sock *s = h->data;
    int flags = 0;
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    drive(s->client, s->fd, flags);
}

/*
 * CURLMOPT_SOCKETFUNCTION: curl says what to watch on socket `fd`. A socket seen for the first
 * time gets a `struct sock` (assigned to the socket with curl_multi_assign); CURL_POLL_REMOVE
 * closes it. May be called during curl_multi_cleanup(). Returns 0, or -1 when the socket cannot
 * be watched (curl then fails the transfers using it).
 */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    struct fb_http_client_s *c = userp;
    struct sock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s)
            sock_close(s); /* curl forgets its socketp for fd itself */
        return 0;
    }
    if (!s) {
        s = fb_calloc(1, sizeof(*s));
        if (uv_poll_init_socket(c->loop, &s->poll, fd) != 0) {
            fb_free(s);
            return -1;
        }
        s->poll.data = s;
        s->fd = fd;
        s->client = c;
        s->next = c->socks;
        if (c->socks)
            c->socks->prev = s;
        c->socks = s;
        c->open_handles++;
        if (curl_multi_assign(c->multi, fd, s) != CURLM_OK) {
            sock_close(s);
            return -1;
        }
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    if (uv_poll_start(&s->poll, events, on_poll) != 0)
        return -1;
    return 0;
}

static void on_curl_timeout(uv_timer_t *t)
{
    drive(t->data, CURL_SOCKET_TIMEOUT, 0);
}

/* CURLMOPT_TIMERFUNCTION: curl wants to be called back in `timeout_ms` (-1: cancel). Never
 * calls curl from here (that would be a recursive API call): the uv timer does it. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct fb_http_client_s *c = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_curl_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
    handle_closed(h->data);
}

/* Destroys the multi handle (curl may close sockets, calling on_curl_socket) and closes the
 * remaining uv handles. Every request must have finished already. */
static void teardown(struct fb_http_client_s *c)
{
    FB_ASSERT(c->closing && !c->torn_down && c->reqs == NULL);
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
    while (c->socks) /* curl should have removed them all; close any it did not */
        sock_close(c->socks);
    c->torn_down = true;
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

/* ---- per-attempt data callbacks ---------------------------------------------------------- */

/* CURLOPT_WRITEFUNCTION: appends to the bounded body; past the bound, aborts the transfer. */
static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct req *r = userdata;
    size_t n = size * nmemb;
    if (fb_buf_append(&r->resp_body, ptr, n) != 0) {
        r->toobig = true;
        return 0; /* curl fails the transfer with CURLE_WRITE_ERROR */
    }
    return n;
}

/* CURLOPT_HEADERFUNCTION: keeps the header lines of the last response (a new status line, as
 * after "100 Continue", starts over); past FB_HTTP_MAX_HEADER_BYTES, aborts the transfer. */
static size_t on_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct req *r = userdata;
    size_t n = size * nmemb;
    if (n >= 5 && memcmp(ptr, "HTTP/", 5) == 0)
        fb_buf_reset(&r->resp_hdrs);
    if (fb_buf_append(&r->resp_hdrs, ptr, n) != 0) {
        r->toobig = true;
        return 0;
    }
    return n;
}

/* Splits the raw header lines of the current attempt, in place, into r->hdrs. Lines without a
 * colon, the status line and folded continuation lines are skipped. Idempotent per attempt. */
static void parse_headers(struct req *r)
{
    if (r->hdrs_parsed)
        return;
    r->hdrs_parsed = true;
    r->n_hdrs = 0;
    char *p = r->resp_hdrs.data;
    if (!p)
        return;
    char *end = p + r->resp_hdrs.len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        char *next = nl ? nl + 1 : end;
        while (le > p && le[-1] == '\r')
            le--;
        *le = '\0'; /* within the buffer: at worst this is its terminating NUL */
        char *colon = memchr(p, ':', (size_t)(le - p));
        if (colon && colon > p && *p != ' ' && *p != '\t' && strncmp(p, "HTTP/", 5) != 0) {
            char *ne = colon;
            while (ne > p && (ne[-1] == ' ' || ne[-1] == '\t'))
                ne--;
            *ne = '\0';
            char *v = colon + 1;
            while (v < le && (*v == ' ' || *v == '\t'))
                v++;
            char *ve = le;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            *ve = '\0';
            if (r->n_hdrs == r->cap_hdrs) {
                r->cap_hdrs = r->cap_hdrs ? r->cap_hdrs * 2 : 16;
                r->hdrs = fb_realloc(r->hdrs, r->cap_hdrs * sizeof(*r->hdrs));
            }
            r->hdrs[r->n_hdrs].name = p;
            r->hdrs[r->n_hdrs].value = v;
            r->n_hdrs++;
        }
        p = next;
    }
}

long fb_http_retry_after_ms(const char *value, time_t now)
{
    if (!value)
        return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    unsigned long long secs;
    if (isdigit((unsigned char)value[0])) {
        char *e = NULL;
        secs = strtoull(value, &e, 10);
        while (*e == ' ' || *e == '\t')
            e++;
        if (*e != '\0')
            return -1;
    } else {
        time_t when = curl_getdate(value, NULL);
        if (when == -1)
            return -1;
        secs = when > now ? (unsigned long long)(when - now) : 0;
    }
    if (secs > FB_HTTP_RETRY_AFTER_MAX_MS / 1000)
        return FB_HTTP_RETRY_AFTER_MAX_MS;
    return (long)(secs * 1000);
}

/*
 * Maps the outcome of one attempt to 0 or an FB_E* code, and says whether it is worth another
 * attempt: connection failures, timeouts, dropped connections, 5xx and 429 are; a 4xx, an
 * oversized response or a TLS verification failure are final. (If-chains, not a switch:
 * -Wswitch-enum would want every CURLcode listed.)
 */
static int classify(CURLcode rc, int status, bool toobig, bool *retryable)
{
    *retryable = false;
    if (toobig || rc == CURLE_FILESIZE_EXCEEDED)
        return FB_ETOOBIG;
    if (rc == CURLE_OK) {
        if (status == 429 || status >= 500) {
            *retryable = true;
            return FB_EHTTP;
        }
        return status >= 400 ? FB_EHTTP : 0;
    }
    if (rc == CURLE_OPERATION_TIMEDOUT) {
        *retryable = true;
        return FB_ETIMEDOUT;
    }
    if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
        rc == CURLE_COULDNT_RESOLVE_PROXY || rc == CURLE_SSL_CONNECT_ERROR) {
        *retryable = true;
        return FB_ECONNECT;
    }
    if (rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR || rc == CURLE_GOT_NOTHING ||
        rc == CURLE_PARTIAL_FILE) {
        *retryable = true;
        return FB_EIO;
    }
    if (rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CERTPROBLEM ||
        rc == CURLE_SSL_CACERT_BADFILE || rc == CURLE_WEIRD_SERVER_REPLY || rc == CURLE_HTTP2 ||
        rc == CURLE_HTTP2_STREAM || rc == CURLE_BAD_CONTENT_ENCODING)
        return FB_EPROTO;
    if (rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL)
        return FB_EINVAL;
    return FB_EIO;
}

/* The metric label for a final error code: a fixed set, never free text. */
static const char *outcome_name(int err)
{
    if (err == 0)
        return "ok";
    if (err == FB_EHTTP)
        return "http_error";
    if (err == FB_ETIMEDOUT)
        return "timeout";
    if (err == FB_ECONNECT)
        return "connect_error";
    if (err == FB_ETOOBIG)
        return "too_big";
    if (err == FB_ECANCELED)
        return "canceled";
    if (err == FB_EPROTO)
        return "protocol_error";
    return "io_error";
}

/* ---- request lifecycle -------------------------------------------------------------------- */

/* Starts attempt number r->attempts + 1: fresh buffers, easy handle added to the multi handle.
 * Returns 0 or FB_EIO (curl refused the handle). Never calls the user callback. */
static int start_attempt(struct req *r)
{
    struct fb_http_client_s *c = r->client;
    fb_buf_reset(&r->resp_body);
    fb_buf_reset(&r->resp_hdrs);
    r->n_hdrs = 0;
    r->hdrs_parsed = false;
    r->toobig = false;
    r->status = 0;
    if (curl_multi_add_handle(c->multi, r->easy) != CURLM_OK)
        return FB_EIO;
    r->in_multi = true;
    r->attempts++;
    FB_DEBUG(CLIENT, "%s attempt %u", r->tag, r->attempts);
    return 0;
}

static void on_req_closed(uv_handle_t *h)
{
    struct req *r = h->data;
    struct fb_http_client_s *c = r->client;
    fb_free(r);
    handle_closed(c);
}

/* Frees what a request owns except the struct itself, which its timer's close callback frees. */
static void req_release(struct req *r)
{
    if (r->easy)
        curl_easy_cleanup(r->easy);
    r->easy = NULL;
    curl_slist_free_all(r->req_headers);
    r->req_headers = NULL;
    fb_buf_free(&r->resp_body);
    fb_buf_free(&r->resp_hdrs);
    FB_FREE(r->hdrs);
    FB_FREE(r->url);
    FB_FREE(r->method);
    FB_FREE(r->body);
}

/*
 * Completes a request with `err` (0 or FB_E*): detaches it from curl and from its retry timer,
 * calls the user callback once, then frees it (the struct itself in its timer's close
 * callback). `r` is invalid after the call. A request cancelled mid-attempt reports status 0
 * and no body or headers; one cancelled while waiting keeps its last attempt's response.
 */
static void finish(struct req *r, int err)
{
    struct fb_http_client_s *c = r->client;
    if (r->in_multi) {
        curl_multi_remove_handle(c->multi, r->easy);
        r->in_multi = false;
        fb_buf_reset(&r->resp_body);
        fb_buf_reset(&r->resp_hdrs);
        r->hdrs_parsed = false;
        r->status = 0;
    }
    if (r->waiting) {
        uv_timer_stop(&r->retry_timer);
        r->waiting = false;
        c->n_waiting--;
    }
    parse_headers(r);
    if (r->prev)
        r->prev->next = r->next;
    else
        c->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    c->n_pending--;

    fb_metrics_http_client(outcome_name(err));
    FB_DEBUG(CLIENT, "%s done: status %d, %s, %u attempt(s), %llu ms (%zu pending)", r->tag,
             r->status, err ? fb_err_name(err) : "ok", r->attempts,
             (unsigned long long)(uv_now(c->loop) - r->started_ms), c->n_pending);
    fb_http_response_t resp = {
        .status = r->status,
        .error = err,
        .body = fb_buf_str(&r->resp_body),
        .body_len = r->resp_body.len,
        .attempts = r->attempts,
        .headers = r->hdrs,
        .n_headers = r->n_hdrs,
        .tag = r->tag,
    };
    r->cb(&resp, r->arg);
    req_release(r);
    uv_close((uv_handle_t *)&r->retry_timer, on_req_closed);
}

static void on_retry_timer(uv_timer_t *t)
{
    struct req *r = t->data;
    r->waiting = false;
    r->client->n_waiting--;
    int rc = start_attempt(r);
    if (rc != 0)
        finish(r, rc);
}

/*
 * One attempt of `r` ended with curl result `rc` (the easy handle is already out of the multi
 * handle). Either schedules the next attempt on the request's timer or finishes the request.
 */
static void attempt_done(struct req *r, CURLcode rc)
{
    struct fb_http_client_s *c = r->client;
    long status = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    r->status = (int)status;
    parse_headers(r);
    bool retryable = false;
    int err = classify(rc, r->status, r->toobig, &retryable);
    unsigned max_attempts = r->policy.max_attempts ? r->policy.max_attempts : 1;
    FB_DEBUG(CLIENT, "%s attempt %u: status %d, %s", r->tag, r->attempts, r->status,
             rc == CURLE_OK ? (err ? fb_err_name(err) : "ok") : curl_easy_strerror(rc));
    if (err == 0 || !retryable || !r->may_retry || r->attempts >= max_attempts || c->closing) {
        finish(r, err);
        return;
    }
    unsigned delay = fb_retry_next_delay_ms(&r->policy, r->attempts - 1);
    if (r->status == 429 || r->status == 503) {
        fb_http_response_t tmp = {.headers = r->hdrs, .n_headers = r->n_hdrs};
        long ra = fb_http_retry_after_ms(fb_http_response_header(&tmp, "Retry-After"), fb_wall_s());
        if (ra >= 0)
            delay = (unsigned)ra;
    }
    FB_DEBUG(CLIENT, "%s retry in %u ms", r->tag, delay);
    r->waiting = true;
    c->n_waiting++;
    uv_timer_start(&r->retry_timer, on_retry_timer, delay, 0);
}

/* Collects the transfers curl reports finished and ends their attempts. Stops early when a
 * callback closed the client (every request is then already cancelled). */
static void check_multi_info(struct fb_http_client_s *c)
{
    while (!c->closing) {
        int left = 0;
        CURLMsg *msg = curl_multi_info_read(c->multi, &left);
        if (!msg)
            break;
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode rc = msg->data.result;
        void *priv = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
        struct req *r = priv;
        FB_ASSERT(r != NULL && r->easy == easy);
        curl_multi_remove_handle(c->multi, easy); /* the connection goes back to the pool */
        r->in_multi = false;
        attempt_done(r, rc);
    }
}

/* Lets curl act on socket `fd` (or on its timeout) and completes what finished. Teardown
 * requested by a callback meanwhile is done here, once curl is no longer on the stack. */
static void drive(struct fb_http_client_s *c, curl_socket_t fd, int flags)
{
    if (c->torn_down)
        return;
    int running = 0;
    c->depth++;
    curl_multi_socket_action(c->multi, fd, flags, &running);
    check_multi_info(c);
    c->depth--;
    if (c->closing && c->depth == 0 && !c->torn_down)
        teardown(c);
}

/* ---- public API ------------------------------------------------------------------------------ */

fb_http_client_t *fb_http_client_create(uv_loop_t *loop, const fb_http_client_opts_t *opts)
{
    static bool curl_ready;
    if (!loop || !opts)
        return NULL;
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return NULL;
        curl_ready = true;
    }
    struct fb_http_client_s *c = fb_calloc(1, sizeof(*c));
    c->loop = loop;
    c->opts = *opts;
    if (!c->opts.timeout_ms)
        c->opts.timeout_ms = DEFAULT_TIMEOUT_MS;
    if (!c->opts.connect_timeout_ms)
        c->opts.connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    if (!c->opts.max_response_bytes)
        c->opts.max_response_bytes = DEFAULT_MAX_RESPONSE_BYTES;
    c->multi = curl_multi_init();
    if (!c->multi)
        goto fail;
    if (curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c) != CURLM_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c) != CURLM_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                          (long)c->opts.max_host_connections) != CURLM_OK)
        goto fail;
    if (uv_timer_init(loop, &c->timer) != 0)
        goto fail;
    c->timer.data = c;
    c->open_handles = 1;
    FB_DEBUG(CLIENT, "client created (%u connection(s) per host, timeout %u ms)",
             c->opts.max_host_connections, c->opts.timeout_ms);
    return c;
fail:
    if (c->multi)
        curl_multi_cleanup(c->multi);
    fb_free(c);
    return NULL;
}

size_t fb_http_client_pending(const fb_http_client_t *c)
{
    return c ? c->n_pending : 0;
}

size_t fb_http_client_waiting(const fb_http_client_t *c)
{
    return c ? c->n_waiting : 0;
}

/* Sets the easy handle's options for request `r`. Returns 0 or FB_EIO. */
static int setup_easy(struct req *r, const fb_http_request_t *req)
{
    const fb_http_client_opts_t *o = &r->client->opts;
    CURL *e = r->easy;
    unsigned timeout = req->timeout_ms ? req->timeout_ms : o->timeout_ms;
    bool has_body = req->body != NULL || strcmp(r->method, "POST") == 0 ||
                    strcmp(r->method, "PUT") == 0 || strcmp(r->method, "PATCH") == 0;
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (rc == CURLE_OK)                                                                        \
            rc = curl_easy_setopt(e, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_URL, r->url);
    SET(CURLOPT_PRIVATE, (void *)r);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, (void *)r);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, (void *)r);
    SET(CURLOPT_HTTPHEADER, r->req_headers);
    SET(CURLOPT_TIMEOUT_MS, (long)timeout);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)o->connect_timeout_ms);
    if (strcmp(r->method, "HEAD") != 0) /* a HEAD's Content-Length describes no body */
        SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)o->max_response_bytes);
    SET(CURLOPT_USERAGENT, "frichebot/" FB_VERSION);
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    if (has_body) {
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        SET(CURLOPT_POSTFIELDS, r->body);
        if (strcmp(r->method, "POST") != 0)
            SET(CURLOPT_CUSTOMREQUEST, r->method);
    } else if (strcmp(r->method, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (strcmp(r->method, "GET") != 0) {
        SET(CURLOPT_CUSTOMREQUEST, r->method);
    }
#undef SET
    return rc == CURLE_OK ? 0 : FB_EIO;
}

int fb_http_client_request(fb_http_client_t *c, const fb_http_request_t *req, fb_http_done_cb cb,
                           void *arg)
{
    if (!c || !req || !cb || !req->url || (req->body_len && !req->body))
        return FB_EINVAL;
    if (c->closing)
        return FB_ECLOSING;
    const char *method = req->method ? req->method : "GET";
    if (!method_is_valid(method))
        return FB_EINVAL;
    for (size_t i = 0; req->headers && req->headers[i]; i++)
        if (!header_is_valid(req->headers[i]))
            return FB_EINVAL;

    struct req *r = fb_calloc(1, sizeof(*r));
    int rc = check_url_make_tag(req->url, method, c->next_id + 1, r->tag, sizeof(r->tag));
    if (rc != 0)
        goto fail;
    r->client = c;
    r->id = ++c->next_id;
    r->url = fb_strdup(req->url);
    r->method = fb_strdup(method);
    r->body_len = req->body_len;
    r->body = fb_malloc(req->body_len + 1);
    if (req->body_len)
        memcpy(r->body, req->body, req->body_len);
    r->body[req->body_len] = '\0';
    r->policy = req->retry ? *req->retry : c->opts.retry;
    r->may_retry = req->idempotent || method_is_idempotent(method);
    r->cb = cb;
    r->arg = arg;
    r->started_ms = uv_now(c->loop);
    fb_buf_init(&r->resp_body, c->opts.max_response_bytes);
    fb_buf_init(&r->resp_hdrs, FB_HTTP_MAX_HEADER_BYTES);

    rc = FB_EIO;
    /* Our defaults go after the caller's lines, and only where the caller set nothing: no
     * "Expect: 100-continue" round trip, and no form content type made up by curl. */
    for (size_t i = 0; req->headers && req->headers[i]; i++) {
        struct curl_slist *l = curl_slist_append(r->req_headers, req->headers[i]);
        if (!l)
            goto fail;
        r->req_headers = l;
    }
    static const char *const defaults[][2] = {{"Expect", "Expect:"},
                                              {"Content-Type", "Content-Type:"}};
    for (size_t i = 0; i < FB_ARRAY_SIZE(defaults); i++) {
        if (headers_have(req->headers, defaults[i][0]))
            continue;
        struct curl_slist *l = curl_slist_append(r->req_headers, defaults[i][1]);
        if (!l)
            goto fail;
        r->req_headers = l;
    }
    r->easy = curl_easy_init();
    if (!r->easy)
        goto fail;
    rc = setup_easy(r, req);
    if (rc != 0)
        goto fail;
    rc = start_attempt(r);
    if (rc != 0)
        goto fail;
    /* Past this point nothing fails: the request is accepted. */
    int trc = uv_timer_init(c->loop, &r->retry_timer); /* cannot fail on a live loop */
    FB_ASSERT(trc == 0);
    r->retry_timer.data = r;
    c->open_handles++;
    r->next = c->reqs;
    if (c->reqs)
        c->reqs->prev = r;
    c->reqs = r;
    c->n_pending++;
    return 0;
fail:
    req_release(r);
    fb_free(r);
    return rc;
}

void fb_http_client_close(fb_http_client_t *c, void (*done)(void *arg), void *arg)
{
    FB_ASSERT(c != NULL && !c->closing);
    c->closing = true;
    c->done = done;
    c->done_arg = arg;
    FB_DEBUG(CLIENT, "client closing (%zu pending)", c->n_pending);
    while (c->reqs)
        finish(c->reqs, FB_ECANCELED);
    if (c->depth == 0)
        teardown(c);
}

size_t fb_http_client_cancel(fb_http_client_t *c, fb_http_done_cb cb, const void *arg)
{
    if (!c || c->closing)
        return 0;
    /* Mark first: a callback below may start new requests with the same cb and arg, which
     * this call must leave alone. */
    size_t n = 0;
    for (struct req *r = c->reqs; r; r = r->next)
        if (r->cb == cb && r->arg == arg) {
            r->cancel = true;
            n++;
        }
    for (size_t done = 0; done < n && !c->closing;) {
        struct req *r = c->reqs;
        while (r && !r->cancel)
            r = r->next;
        if (!r)
            break; /* a callback closed the client, or cancelled the rest itself */
        r->cancel = false;
        FB_DEBUG(CLIENT, "%s cancelled by its owner", r->tag);
        finish(r, FB_ECANCELED);
        done++;
    }
    return n;
}
