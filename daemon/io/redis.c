/* SPDX-License-Identifier: MIT */
/*
 * redis.c - the asynchronous Redis client: hiredis 0.14 on the libuv loop, with our own connect
 * and command timeouts, reconnection with backoff, a bounded queue while disconnected, and
 * resending of retryable commands.
 *
 * Shape. One fb_redis_t holds at most one live hiredis context (`ac`). Commands are encoded
 * to RESP once, when issued, and kept until their callback has been called, so that a
 * retryable command can be written again on the next connection. A command is in exactly one
 * place: the queue (waiting for a ready connection, sorted by write deadline), the in-flight
 * list (written to `ac`, in the order written, which is the order replies come back), or
 * "abandoned" (its callback was already called, by a timeout or by close, but hiredis still
 * holds it as privdata and will hand it back once, with a reply or NULL, at which point it is
 * freed). Callbacks are thus called exactly once and the memory is freed exactly once.
 *
 * hiredis integration. We use our own event adapter instead of hiredis/adapters/libuv.h for
 * four reasons (the fourth: commands are written at the end of the loop iteration, not when the
 * socket is writable; docs/internals/REDIS.md): its poll handle is released by libc in a close
 * callback we cannot observe, so fb_redis_close() could not wait for it; it ignores poll errors
 * (libuv reports a refused connection as UV_EBADF and stops the poll, and the stock adapter then
 * never tells hiredis, so the attempt would hang until the connect timeout); and we need to learn,
 * in one place, when a context dies (the adapter's cleanup hook runs exactly once per context, on
 * every path: error, EOF, or our own redisAsyncFree()). Contexts are only freed by us from timer
 * callbacks or from inside hiredis reply callbacks (where hiredis defers the free until the
 * callback returns), never from the connect callback, which hiredis does not protect.
 *
 * Handles: three timers embedded in the client (connection: connect timeout and reconnect
 * backoff; commands: the oldest in-flight command's timeout; deadline: the oldest queued
 * command's write deadline), one heap-allocated poll and prepare handle pair per live context
 * (counted once, freed when both are closed), and one
 * getaddrinfo request while a host name is being resolved. `open` counts them; the client is
 * freed by the close callback that brings it to zero.
 */
#include "io/redis.h"

#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <uv.h>

#include "common/digest.h"
#include "frichebot/alloc.h"
#include "frichebot/clock.h"
#include "frichebot/err.h"
#include "frichebot/log.h"
#include "io/metrics.h"

/* Connection states. */
enum conn_state {
    ST_IDLE,       /* created, not started */
    ST_CONNECTING, /* resolving, connecting or waiting for the AUTH/PING answer */
    ST_READY,      /* commands are written to `ac` */
    ST_DOWN,       /* the context died or was dropped; a reconnect is being scheduled */
    ST_WAITING,    /* waiting for the backoff delay before the next attempt */
    ST_CLOSED,     /* fb_redis_close() was called */
};

static const char *const state_names[] = {"idle", "connecting", "ready",
                                          "down", "waiting",    "closed"};

enum cmd_state {
    CMD_QUEUED,    /* in r->queue */
    CMD_INFLIGHT,  /* in r->inflight; hiredis holds it as privdata */
    CMD_ABANDONED, /* callback already called; hiredis still holds it and will hand it back */
};

struct cmd {
    struct cmd *prev, *next; /* links in r->queue or r->inflight */
    fb_redis_t *r;
    fb_redis_reply_cb cb;
    void *arg;
    char *wire;        /* the command in RESP, kept for resends */
    size_t wire_len;   /* bytes of wire */
    uint64_t deadline; /* loop time (ms) after which it is no longer (re)sent */
    uint64_t sent_ms;  /* loop time the current attempt was written */
    uint64_t sent_ns;  /* fb_mono_ns() of the same moment, for the round-trip metric */
    int flags;         /* FB_REDIS_RETRY */
    enum cmd_state state;
    bool timed_out; /* the current attempt exceeded command_timeout_ms */
};

struct cmd_list {
    struct cmd *head, *tail;
    size_t len;
};

/*
 * Our hiredis event adapter: one per context, freed once its two handles are closed. The commands
 * issued during one loop iteration are written together just before the loop next waits for I/O
 * (the `flush` prepare handle, Redis's own "beforeSleep" write), in one write(2): the socket is
 * polled for writability only while connecting and after a partial write.
 */
struct conn {
    uv_poll_t poll;
    uv_prepare_t flush;      /* started while written commands wait for the end of the iteration */
    redisAsyncContext *ac;   /* NULL once hiredis has called the cleanup hook */
    fb_redis_t *r;           /* owner */
    int events;              /* UV_READABLE | UV_WRITABLE polled for (uv_poll_start()ed) */
    int handles;             /* of poll and flush, not yet closed */
    bool flush_pending;      /* flush is started */
    bool flushing;           /* inside conn_flush_cb(): hiredis's addWrite means a partial write */
    bool ready;              /* the handshake succeeded on this connection */
    const char *drop_reason; /* static text when we dropped it ourselves, else NULL */
};

/* One host name resolution, heap-allocated so that a timed-out one can finish on its own. */
struct resolve {
    uv_getaddrinfo_t req;
    fb_redis_t *r;
    bool abandoned; /* the attempt it belonged to is over: ignore the result */
};

struct fb_redis_s {
    /* configuration, copied */
    uv_loop_t *loop;
    char *address; /* as configured, for logs */
    char *host;    /* tcp: host name or numeric address (IPv6 without brackets), else NULL */
    bool host_is_ip;
    int port;       /* tcp port */
    char *path;     /* unix socket path, else NULL */
    char *password; /* NULL when none; wiped before it is freed */
    size_t password_len;
    unsigned connect_timeout_ms;
    unsigned command_timeout_ms;
    unsigned write_deadline_ms;
    fb_retry_policy_t reconnect;

    /* connection */
    enum conn_state state;
    redisAsyncContext *ac;      /* the live context, or NULL */
    struct resolve *resolve;    /* the resolution in progress, or NULL */
    unsigned attempt;           /* consecutive failed attempts, for the backoff */
    bool ever_ready;            /* for the "reconnected" log line */
    fb_redis_ready_cb ready_cb; /* fb_redis_on_ready() */
    void *ready_arg;
    /* copies of the scripts fb_redis_evalsha() has run (bodies and SHA1s, owned): loaded again
     * at every reconnection (issue 17) */
    struct kept_script {
        char sha[41];
        char *src;
    } * scripts;
    size_t nscripts, capscripts;

    /* commands */
    struct cmd_list queue;    /* waiting for a ready connection, sorted by deadline */
    struct cmd_list inflight; /* written to ac, oldest first */

    /* handles */
    uv_timer_t conn_timer;     /* connect timeout (CONNECTING) or backoff (WAITING) */
    uv_timer_t cmd_timer;      /* command timeout of the oldest in-flight command */
    uv_timer_t deadline_timer; /* write deadline of the oldest queued command */
    unsigned open;             /* handles and requests not yet closed or completed */

    /* shutdown */
    bool closing;
    void (*close_cb)(void *arg);
    void *close_arg;

    fb_redis_stats_t stats;
};

static void conn_start(fb_redis_t *r);
static void conn_drop(fb_redis_t *r, const char *reason);
static void flush_queue(fb_redis_t *r);
static void on_conn_timer(uv_timer_t *t);

/* ---------------------------------------------------------------------------------------- */
/* Small helpers */

static void set_state(fb_redis_t *r, enum conn_state st)
{
    if (r->state != st)
        FB_DEBUG(REDIS, "[redis|%s] state %s -> %s", r->address, state_names[r->state],
                 state_names[st]);
    r->state = st;
}

static void list_append(struct cmd_list *l, struct cmd *c)
{
    c->next = NULL;
    c->prev = l->tail;
    if (l->tail)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
    l->len++;
}

/* Inserts `c` before `before` (NULL: at the tail). */
static void list_insert_before(struct cmd_list *l, struct cmd *before, struct cmd *c)
{
    if (!before) {
        list_append(l, c);
        return;
    }
    c->next = before;
    c->prev = before->prev;
    if (before->prev)
        before->prev->next = c;
    else
        l->head = c;
    before->prev = c;
    l->len++;
}

static void list_remove(struct cmd_list *l, struct cmd *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        l->tail = c->prev;
    c->prev = c->next = NULL;
    l->len--;
}

static void cmd_free(struct cmd *c)
{
    fb_free(c->wire);
    fb_free(c);
}

/*
 * Completes `c`, which is in no list any more: frees it, or, when hiredis still holds it
 * (`keep`), marks it abandoned so that on_reply() frees it when hiredis hands it back; then
 * calls its callback (last, so that the callback may do anything, fb_redis_close() included).
 */
static void cmd_complete(fb_redis_t *r, struct cmd *c, int status, redisReply *reply, bool keep)
{
    fb_redis_reply_cb cb = c->cb;
    void *arg = c->arg;
    r->stats.completed++;
    if (keep) {
        c->state = CMD_ABANDONED;
        fb_free(c->wire);
        c->wire = NULL;
    } else {
        cmd_free(c);
    }
    cb(r, status, status == 0 ? reply : NULL, arg);
}

/* ---- reply shapes (redis.h) ---- */

/* Whether `rep` has the type that letter `t` of fb_redis_reply_array()'s `types` spells. */
static bool type_is(const redisReply *rep, char t)
{
    switch (t) {
    case 'i':
        return rep->type == REDIS_REPLY_INTEGER;
    case 's':
        return rep->type == REDIS_REPLY_STRING;
    case 'a':
        return rep->type == REDIS_REPLY_ARRAY;
    case 'n':
        return rep->type == REDIS_REPLY_NIL;
    default:
        return true;
    }
}

const redisReply *fb_redis_reply_array(const redisReply *rep, size_t min, size_t max,
                                       const char *types)
{
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < min || rep->elements > max)
        return NULL;
    for (size_t i = 0; types && types[i] && i < rep->elements; i++)
        if (!type_is(rep->element[i], types[i]))
            return NULL;
    return rep;
}

bool fb_redis_reply_int(const redisReply *rep, long long *out)
{
    if (!rep || rep->type != REDIS_REPLY_INTEGER)
        return false;
    *out = rep->integer;
    return true;
}

const char *fb_redis_reply_str(const redisReply *rep, size_t *len)
{
    if (!rep || rep->type != REDIS_REPLY_STRING)
        return NULL;
    if (len)
        *len = rep->len;
    return rep->str;
}

bool fb_redis_reply_is_status(const redisReply *rep)
{
    return rep && rep->type == REDIS_REPLY_STATUS;
}

/* Returns the delay before the next connection attempt and counts the attempt. */
static unsigned backoff_delay(fb_redis_t *r)
{
    return fb_retry_next_delay_ms(&r->reconnect, r->attempt++);
}

/*
 * Writes a RESP header line, `type` then `n` in decimal then CRLF, at `p` (room for 24 bytes).
 * Returns the bytes written. A command has one header per argument: snprintf took a tenth of
 * the daemon's instructions on the appservice path (issue 17).
 */
static size_t resp_header(char *p, char type, size_t n)
{
    char digits[20];
    size_t k = 0;
    do {
        digits[k++] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    p[0] = type;
    for (size_t i = 0; i < k; i++)
        p[1 + i] = digits[k - 1 - i];
    p[1 + k] = '\r';
    p[2 + k] = '\n';
    return k + 3;
}

/*
 * Encodes a command in RESP ("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"). Returns a new buffer (fb_free)
 * and sets *len; hiredis writes it as is.
 */
static char *resp_encode(int argc, const char **argv, const size_t *argvlen, size_t *len)
{
    size_t total = 32;
    for (int i = 0; i < argc; i++) {
        size_t n = argvlen ? argvlen[i] : strlen(argv[i]);
        total += n + 32;
    }
    char *buf = fb_malloc(total);
    size_t pos = resp_header(buf, '*', (size_t)argc);
    for (int i = 0; i < argc; i++) {
        size_t n = argvlen ? argvlen[i] : strlen(argv[i]);
        pos += resp_header(buf + pos, '$', n);
        if (n)
            memcpy(buf + pos, argv[i], n);
        pos += n;
        buf[pos++] = '\r';
        buf[pos++] = '\n';
    }
    *len = pos;
    return buf;
}

/*
 * True for commands the client cannot carry: those that switch the connection to a push
 * protocol (the SUBSCRIBEs, MONITOR) or to RESP3 (HELLO), that suppress replies (CLIENT REPLY)
 * and would break the reply order, or that set per-connection state a reconnect would silently
 * lose (SELECT, AUTH, RESET).
 */
static bool command_forbidden(int argc, const char **argv, const size_t *argvlen)
{
    static const char *const bad[] = {"subscribe",    "psubscribe",   "ssubscribe", "unsubscribe",
                                      "punsubscribe", "sunsubscribe", "monitor",    "hello",
                                      "select",       "auth",         "reset"};
    size_t len = argvlen ? argvlen[0] : strlen(argv[0]);
    for (size_t i = 0; i < FB_ARRAY_SIZE(bad); i++)
        if (strlen(bad[i]) == len && strncasecmp(argv[0], bad[i], len) == 0)
            return true;
    if (argc >= 2 && len == 6 && strncasecmp(argv[0], "client", 6) == 0) {
        size_t len1 = argvlen ? argvlen[1] : strlen(argv[1]);
        if (len1 == 5 && strncasecmp(argv[1], "reply", 5) == 0)
            return true;
    }
    return false;
}

/*
 * Parses "tcp://HOST:PORT" (HOST may be "[v6]") or "unix:PATH" ("unix:///PATH" too; PATH at
 * most 107 bytes, relative to the working directory unless absolute) into r. Returns 0 or
 * FB_EINVAL.
 */
static int parse_address(fb_redis_t *r, const char *addr)
{
    if (!addr)
        return FB_EINVAL;
    if (strncmp(addr, "unix:", 5) == 0) {
        const char *p = addr + 5;
        if (strncmp(p, "///", 3) == 0)
            p += 2; /* "unix:///run/redis.sock" */
        struct sockaddr_un sa;
        if (!p[0] || strlen(p) >= sizeof(sa.sun_path))
            return FB_EINVAL; /* a relative path is relative to the working directory */
        r->path = fb_strdup(p);
        return 0;
    }
    if (strncmp(addr, "tcp://", 6) != 0)
        return FB_EINVAL;
    const char *h = addr + 6, *hend, *colon;
    if (*h == '[') {
        hend = strchr(h, ']');
        if (!hend || hend[1] != ':')
            return FB_EINVAL;
        h++;
        colon = hend + 1;
    } else {
        colon = strrchr(h, ':');
        if (!colon)
            return FB_EINVAL;
        hend = colon;
        if (memchr(h, ':', (size_t)(hend - h)))
            return FB_EINVAL; /* a bare IPv6 address needs brackets */
    }
    if (hend == h)
        return FB_EINVAL;
    /* No "user:password@host": the address is logged on every connect, and secrets come from
     * redis.password_file or the environment, never from the address. */
    if (memchr(h, '@', (size_t)(hend - h)))
        return FB_EINVAL;
    const char *p = colon + 1;
    long port = 0;
    if (!*p)
        return FB_EINVAL;
    for (; *p; p++) {
        if (*p < '0' || *p > '9' || port > 65535)
            return FB_EINVAL;
        port = port * 10 + (*p - '0');
    }
    if (port < 1 || port > 65535)
        return FB_EINVAL;
    r->host = fb_strndup(h, (size_t)(hend - h));
    r->port = (int)port;
    unsigned char tmp[16];
    r->host_is_ip =
        uv_inet_pton(AF_INET, r->host, tmp) == 0 || uv_inet_pton(AF_INET6, r->host, tmp) == 0;
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Handle bookkeeping and the end of fb_redis_close() */

/* Frees the client and calls the close callback once nothing is open any more. */
static void maybe_finish(fb_redis_t *r)
{
    if (!r->closing || r->open > 0)
        return;
    FB_ASSERT(r->queue.len == 0 && r->inflight.len == 0 && r->ac == NULL);
    void (*done)(void *) = r->close_cb;
    void *arg = r->close_arg;
    FB_INFO(REDIS, "[redis|%s] closed", r->address);
    if (r->password) {
        explicit_bzero(r->password, r->password_len);
        fb_free(r->password);
    }
    fb_free(r->address);
    fb_free(r->host);
    fb_free(r->path);
    for (size_t i = 0; i < r->nscripts; i++)
        fb_free(r->scripts[i].src);
    fb_free(r->scripts);
    fb_free(r);
    if (done)
        done(arg);
}

/* Close callback of the three timers. */
static void on_timer_closed(uv_handle_t *h)
{
    fb_redis_t *r = h->data;
    r->open--;
    maybe_finish(r);
}

/*
 * Logs a failed connection attempt: at WARN for the first three of a series and then at
 * attempts 4, 8, 16..., at DEBUG otherwise, so that a long outage does not flood the log.
 */
static void log_failure(fb_redis_t *r, const char *reason, unsigned delay)
{
    unsigned n = r->attempt;
    bool loud = n <= 3 || (n & (n - 1)) == 0;
    FB_LOG(REDIS, loud ? FB_LOG_WARN : FB_LOG_DEBUG,
           "[redis|%s] cannot connect (attempt %u): %s; retrying in %u ms", r->address, n, reason,
           delay);
}

/* ---------------------------------------------------------------------------------------- */
/* hiredis event adapter */

/* Close callback of a connection's poll and flush handles: the second frees the adapter state. */
static void conn_poll_closed(uv_handle_t *h)
{
    struct conn *p = h->data;
    fb_redis_t *r = p->r;
    if (--p->handles > 0)
        return;
    fb_free(p);
    r->open--;
    maybe_finish(r);
}

/*
 * Poll callback. A negative status (libuv reports POLLERR, e.g. a refused connection, as
 * UV_EBADF and stops the handle) is passed to hiredis as readiness in both directions, so that
 * hiredis reads the socket error and fails the context instead of waiting forever.
 */
static void conn_poll_cb(uv_poll_t *h, int status, int events)
{
    struct conn *p = h->data;
    if (status < 0) {
        events = UV_READABLE | UV_WRITABLE;
        p->events = 0; /* libuv stopped the handle: the next addRead/addWrite starts it again */
    }
    if (p->ac && (events & UV_READABLE))
        redisAsyncHandleRead(p->ac);
    if (p->ac && (events & UV_WRITABLE))
        redisAsyncHandleWrite(p->ac);
}

/*
 * Polls for `events`, only when they change: libuv 1.44's uv_poll_start() stops the watcher and
 * adds it again, two epoll_ctl(2) calls (the first failing with EEXIST), and hiredis asks for
 * reading again after every write.
 */
static void conn_update(struct conn *p, int events)
{
    if (events == p->events)
        return;
    p->events = events;
    if (events)
        (void)uv_poll_start(&p->poll, events, conn_poll_cb);
    else
        (void)uv_poll_stop(&p->poll);
}

/* End of the loop iteration: writes what the iteration's commands left in hiredis's buffer. */
static void conn_flush_cb(uv_prepare_t *h)
{
    struct conn *p = h->data;
    p->flush_pending = false;
    (void)uv_prepare_stop(h);
    if (!p->ac)
        return;
    p->flushing = true;
    redisAsyncHandleWrite(p->ac); /* may free the context: the cleanup hook leaves `p` alone */
    p->flushing = false;
}

static void conn_add_read(void *privdata)
{
    struct conn *p = privdata;
    conn_update(p, p->events | UV_READABLE);
}

static void conn_del_read(void *privdata)
{
    struct conn *p = privdata;
    conn_update(p, p->events & ~UV_READABLE);
}

/*
 * hiredis has bytes to write. Connected, outside a flush: at the end of this iteration. While
 * connecting (hiredis learns the outcome when the socket becomes writable) or after a partial
 * write (the flush's own addWrite): when the socket is writable.
 */
static void conn_add_write(void *privdata)
{
    struct conn *p = privdata;
    if (p->flushing || !(p->ac->c.flags & REDIS_CONNECTED)) {
        conn_update(p, p->events | UV_WRITABLE);
        return;
    }
    if (!p->flush_pending && !(p->events & UV_WRITABLE)) {
        p->flush_pending = true;
        (void)uv_prepare_start(&p->flush, conn_flush_cb);
    }
}

static void conn_del_write(void *privdata)
{
    struct conn *p = privdata;
    if (p->flush_pending) {
        p->flush_pending = false;
        (void)uv_prepare_stop(&p->flush);
    }
    conn_update(p, p->events & ~UV_WRITABLE);
}

/*
 * hiredis's cleanup hook: the context is being freed, and every reply callback still pending
 * on it has just been called with NULL. Closes the poll handle and, unless closing, schedules
 * the next connection attempt. Runs exactly once per attached context, whoever freed it.
 */
static void conn_cleanup(void *privdata)
{
    struct conn *p = privdata;
    fb_redis_t *r = p->r;
    redisAsyncContext *ac = p->ac;
    p->ac = NULL;
    uv_close((uv_handle_t *)&p->poll, conn_poll_closed);
    uv_close((uv_handle_t *)&p->flush, conn_poll_closed);
    if (r->ac == ac)
        r->ac = NULL;
    else if (r->ac)
        return; /* a newer connection exists already: not expected, but leave it alone */
    if (r->closing)
        return;

    const char *reason = p->drop_reason;
    if (!reason)
        reason = ac && ac->errstr[0] ? ac->errstr : "connection closed by the server";
    unsigned delay = backoff_delay(r);
    if (p->ready) {
        r->stats.disconnects++;
        FB_WARN(REDIS,
                "[redis|%s] connection lost (%s); %zu command(s) waiting; reconnecting in %u ms",
                r->address, reason, r->queue.len, delay);
    } else {
        r->stats.connect_failures++;
        log_failure(r, reason, delay);
    }
    set_state(r, ST_WAITING);
    (void)uv_timer_start(&r->conn_timer, on_conn_timer, delay, 0);
}

/* ---------------------------------------------------------------------------------------- */
/* Connection lifecycle */

/* A connection attempt failed before a context was attached: log and schedule the next one. */
static void conn_failed(fb_redis_t *r, const char *reason)
{
    unsigned delay = backoff_delay(r);
    r->stats.connect_failures++;
    log_failure(r, reason, delay);
    set_state(r, ST_WAITING);
    (void)uv_timer_start(&r->conn_timer, on_conn_timer, delay, 0);
}

/*
 * Reply to the handshake (AUTH when a password is set, else PING), the first command of every
 * connection: the connection is ready only once Redis has answered it, which also proves the
 * server is responsive. A refusal drops the connection and retries with backoff. Stale answers
 * (from a connection already dropped) and the NULL of a dying context are ignored: the cleanup
 * hook handles those.
 */
static void on_evalsha_loaded(fb_redis_t *r, int status, redisReply *rep, void *arg);

/* Loads every script already run on an earlier connection (a Redis that restarted, or another
 * server after a failover, has none), before the ready callback's commands and the queued ones:
 * the EVALSHAs resent after a reconnection find their scripts instead of each answering
 * NOSCRIPT. */
static void scripts_load(fb_redis_t *r)
{
    for (size_t i = 0; i < r->nscripts; i++) {
        const char *argv[] = {"SCRIPT", "LOAD", r->scripts[i].src};
        (void)fb_redis_command_argv(r, FB_REDIS_RETRY, on_evalsha_loaded, NULL, 3, argv, NULL);
    }
}

static void on_handshake(redisAsyncContext *ac, void *reply, void *privdata)
{
    fb_redis_t *r = privdata;
    redisReply *rep = reply;
    if (!rep || ac != r->ac || r->closing)
        return;
    struct conn *p = ac->ev.data;
    if (rep->type == REDIS_REPLY_ERROR) {
        FB_WARN(REDIS, "[redis|%s] %s refused: %s", r->address, r->password ? "AUTH" : "PING",
                rep->str ? rep->str : "?");
        conn_drop(r, r->password ? "authentication failed" : "handshake refused");
        return;
    }
    p->ready = true;
    uv_timer_stop(&r->conn_timer);
    set_state(r, ST_READY);
    r->stats.connects++;
    if (r->ever_ready)
        FB_NOTICE(REDIS, "[redis|%s] reconnected (attempt %u); sending %zu queued command(s)",
                  r->address, r->attempt, r->queue.len);
    else
        FB_NOTICE(REDIS, "[redis|%s] connected%s", r->address,
                  r->password ? " and authenticated" : "");
    r->attempt = 0;
    r->ever_ready = true;
    /* The scripts first (they change no data), so that the ready callback's EVALSHAs find
     * theirs on a Redis that lost them; then its commands, first of the new connection's. */
    scripts_load(r);
    if (r->ready_cb)
        r->ready_cb(r, r->ready_arg);
    flush_queue(r);
}

/* hiredis connect callback: logging only (failures are logged by the cleanup hook). */
static void on_connect(const redisAsyncContext *ac, int status)
{
    fb_redis_t *r = ac->data;
    if (status == REDIS_OK)
        FB_DEBUG(REDIS, "[redis|%s] socket connected, sending the handshake", r->address);
}

/*
 * Opens a connection to `ip` (tcp; NULL for the unix socket), attaches our event adapter and
 * writes the handshake. Never calls a command callback.
 */
static void conn_open(fb_redis_t *r, const char *ip)
{
    redisAsyncContext *ac =
        r->path ? redisAsyncConnectUnix(r->path) : redisAsyncConnect(ip, r->port);
    if (!ac) {
        conn_failed(r, "out of memory");
        return;
    }
    if (ac->err) {
        char reason[128];
        snprintf(reason, sizeof(reason), "%s", ac->errstr);
        redisAsyncFree(ac); /* not attached: no cleanup hook, freed now */
        conn_failed(r, reason);
        return;
    }
    struct conn *p = fb_calloc(1, sizeof(*p));
    p->r = r;
    p->ac = ac;
    if (uv_poll_init(r->loop, &p->poll, ac->c.fd) != 0) {
        fb_free(p);
        redisAsyncFree(ac);
        conn_failed(r, "cannot watch the socket");
        return;
    }
    (void)uv_prepare_init(r->loop, &p->flush); /* cannot fail */
    p->poll.data = p;
    p->flush.data = p;
    p->handles = 2;
    r->open++;
    ac->ev.addRead = conn_add_read;
    ac->ev.delRead = conn_del_read;
    ac->ev.addWrite = conn_add_write;
    ac->ev.delWrite = conn_del_write;
    ac->ev.cleanup = conn_cleanup;
    ac->ev.data = p;
    ac->data = r;
    r->ac = ac;
    if (r->host)
        (void)redisEnableKeepAlive(&ac->c); /* notice a silently dead peer while idle */
    (void)redisAsyncSetConnectCallback(ac, on_connect);

    const char *argv[2];
    size_t lens[2];
    int argc = 1;
    if (r->password) {
        argv[0] = "AUTH";
        argv[1] = r->password;
        lens[1] = r->password_len;
        argc = 2;
    } else {
        argv[0] = "PING";
    }
    lens[0] = strlen(argv[0]);
    if (redisAsyncCommandArgv(ac, on_handshake, r, argc, argv, lens) != REDIS_OK)
        conn_drop(r, "cannot write the handshake");
}

/* getaddrinfo callback: connects to the first address, unless the attempt is over. */
static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct resolve *rs = req->data;
    fb_redis_t *r = rs->r;
    bool abandoned = rs->abandoned;
    fb_free(rs);
    r->open--;
    if (abandoned || r->closing) {
        uv_freeaddrinfo(res);
        maybe_finish(r);
        return;
    }
    r->resolve = NULL;
    /* Successive attempts rotate through the addresses ("localhost" may give ::1 first while
     * Redis listens on 127.0.0.1 only): attempt k uses address k modulo their number. */
    char ip[INET6_ADDRSTRLEN + 1] = "";
    if (status == 0) {
        unsigned n = 0;
        for (const struct addrinfo *ai = res; ai; ai = ai->ai_next)
            n++;
        const struct addrinfo *pick = res;
        for (unsigned i = 0; n > 0 && i < r->attempt % n; i++)
            pick = pick->ai_next;
        if (!pick || getnameinfo(pick->ai_addr, pick->ai_addrlen, ip, sizeof(ip), NULL, 0,
                                 NI_NUMERICHOST) != 0)
            status = UV_EAI_FAIL;
    }
    uv_freeaddrinfo(res);
    if (status != 0 || !ip[0]) {
        char reason[160];
        snprintf(reason, sizeof(reason), "cannot resolve %s: %s", r->host,
                 status ? uv_strerror(status) : "no address");
        conn_failed(r, reason);
        return;
    }
    conn_open(r, ip);
}

/* Starts one connection attempt, bounded by the connect timeout (resolution included). */
static void conn_start(fb_redis_t *r)
{
    FB_ASSERT(!r->ac && !r->closing);
    set_state(r, ST_CONNECTING);
    if (r->connect_timeout_ms)
        (void)uv_timer_start(&r->conn_timer, on_conn_timer, r->connect_timeout_ms, 0);
    else
        uv_timer_stop(&r->conn_timer);
    if (r->host && !r->host_is_ip) {
        struct resolve *rs = fb_calloc(1, sizeof(*rs));
        rs->r = r;
        rs->req.data = rs;
        struct addrinfo hints;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        int rc = uv_getaddrinfo(r->loop, &rs->req, on_resolved, r->host, NULL, &hints);
        if (rc != 0) {
            fb_free(rs);
            conn_failed(r, uv_strerror(rc));
            return;
        }
        r->resolve = rs;
        r->open++;
        return;
    }
    conn_open(r, r->host);
}

/* The connection timer: the backoff delay is over, or the connect timeout has expired. */
static void on_conn_timer(uv_timer_t *t)
{
    fb_redis_t *r = t->data;
    if (r->closing)
        return;
    if (r->state == ST_WAITING) {
        conn_start(r);
        return;
    }
    if (r->state != ST_CONNECTING)
        return;
    if (r->resolve) {
        r->resolve->abandoned = true;
        (void)uv_cancel((uv_req_t *)&r->resolve->req);
        r->resolve = NULL;
        conn_failed(r, "connect timeout while resolving the host name");
        return;
    }
    if (r->ac)
        conn_drop(r, "connect timeout");
}

/*
 * Drops the live context: forgets it first (so that commands issued from the callbacks that
 * follow are queued for the next connection), then frees it. Outside hiredis callbacks the
 * free is immediate: every in-flight command's reply callback runs with NULL, then the cleanup
 * hook schedules a reconnect. Inside a hiredis reply callback hiredis defers the free until
 * that callback returns. Must not be called from hiredis's connect callback.
 */
static void conn_drop(fb_redis_t *r, const char *reason)
{
    redisAsyncContext *ac = r->ac;
    if (!ac)
        return;
    struct conn *p = ac->ev.data;
    p->drop_reason = reason;
    r->ac = NULL;
    if (!r->closing) {
        set_state(r, ST_DOWN);
        uv_timer_stop(&r->conn_timer);
    }
    redisAsyncFree(ac);
}

/* ---------------------------------------------------------------------------------------- */
/* Commands */

static void on_cmd_timer(uv_timer_t *t);
static void on_deadline_timer(uv_timer_t *t);

/* Starts the command timer for the oldest in-flight command, unless it is running already. */
static void arm_cmd_timer(fb_redis_t *r)
{
    struct cmd *c = r->inflight.head;
    if (r->closing || !c || !r->command_timeout_ms || uv_is_active((uv_handle_t *)&r->cmd_timer))
        return;
    uint64_t due = c->sent_ms + r->command_timeout_ms, now = uv_now(r->loop);
    (void)uv_timer_start(&r->cmd_timer, on_cmd_timer, due > now ? due - now : 0, 0);
}

/* (Re)starts the deadline timer for the oldest queued command; `force` restarts it. */
static void arm_deadline_timer(fb_redis_t *r, bool force)
{
    struct cmd *c = r->queue.head;
    if (r->closing)
        return;
    if (!c) {
        uv_timer_stop(&r->deadline_timer);
        return;
    }
    if (!force && uv_is_active((uv_handle_t *)&r->deadline_timer))
        return;
    uint64_t now = uv_now(r->loop);
    (void)uv_timer_start(&r->deadline_timer, on_deadline_timer,
                         c->deadline > now ? c->deadline - now : 0, 0);
}

/* Puts `c` back in the queue, in deadline order, to be resent on the next connection. */
static void requeue(fb_redis_t *r, struct cmd *c)
{
    c->state = CMD_QUEUED;
    struct cmd *it = r->queue.head;
    while (it && it->deadline <= c->deadline)
        it = it->next;
    list_insert_before(&r->queue, it, c);
    r->stats.resends++;
    arm_deadline_timer(r, true);
}

/*
 * hiredis reply callback of every user command. With a reply: completes the command with 0.
 * With NULL (the context is being freed: lost, timed out or dropped): resends a retryable
 * command whose deadline has not passed, else completes it with FB_ETIMEDOUT (its attempt timed
 * out), FB_EUNAVAIL (retryable, deadline passed) or FB_EIO (not retryable). An abandoned
 * command (already completed by a timeout or close) is only freed.
 */
static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct cmd *c = privdata;
    fb_redis_t *r = c->r;
    redisReply *rep = reply;
    if (!rep && r->ac == ac) {
        /* The context is dying on its own (error or EOF): forget it before any callback runs,
         * so that commands issued from those callbacks wait for the next connection. */
        r->ac = NULL;
        if (!r->closing)
            set_state(r, ST_DOWN);
    }
    if (c->state == CMD_ABANDONED) {
        cmd_free(c);
        return;
    }
    FB_ASSERT(c->state == CMD_INFLIGHT);
    list_remove(&r->inflight, c);
    if (rep) {
        if (!(c->flags & FB_REDIS_PIPELINED))
            fb_metrics_redis_rtt((double)(fb_mono_ns() - c->sent_ns) / 1e9);
        cmd_complete(r, c, 0, rep, false);
        return;
    }
    int status;
    if (r->closing) {
        status = FB_ECANCELED;
    } else if ((c->flags & FB_REDIS_RETRY) && uv_now(r->loop) < c->deadline) {
        requeue(r, c);
        return;
    } else if (c->timed_out) {
        status = FB_ETIMEDOUT;
    } else {
        status = (c->flags & FB_REDIS_RETRY) ? FB_EUNAVAIL : FB_EIO;
    }
    cmd_complete(r, c, status, NULL, false);
}

/* Writes `c` (in no list) to the live context. Returns 0, or FB_EIO when hiredis refuses. */
static int send_cmd(fb_redis_t *r, struct cmd *c)
{
    if (redisAsyncFormattedCommand(r->ac, on_reply, c, c->wire, c->wire_len) != REDIS_OK)
        return FB_EIO;
    c->state = CMD_INFLIGHT;
    c->timed_out = false;
    c->sent_ms = uv_now(r->loop);
    c->sent_ns = fb_mono_ns();
    list_append(&r->inflight, c);
    arm_cmd_timer(r);
    return 0;
}

/* Writes every queued command, oldest first, to the ready connection. */
static void flush_queue(fb_redis_t *r)
{
    while (r->queue.head && r->state == ST_READY && r->ac && !r->closing) {
        struct cmd *c = r->queue.head;
        list_remove(&r->queue, c);
        if (send_cmd(r, c) != 0) {
            list_insert_before(&r->queue, r->queue.head, c);
            conn_drop(r, "cannot write to the connection");
            break;
        }
    }
    arm_deadline_timer(r, false);
}

/*
 * The command timer: marks every in-flight command older than command_timeout_ms as timed out
 * and drops the connection. Replies come back in order, so a connection that left one command
 * unanswered that long is stuck (a paused or overloaded server, a dead peer or route): waiting
 * on it would only make every later command time out too. Dropping it completes the timed-out
 * commands (FB_ETIMEDOUT, or resent when retryable and within their deadline) and handles the
 * others like any lost connection; a late reply can never reach a completed command.
 */
static void on_cmd_timer(uv_timer_t *t)
{
    fb_redis_t *r = t->data;
    uint64_t now = uv_now(r->loop);
    size_t expired = 0;
    for (struct cmd *c = r->inflight.head; c && c->sent_ms + r->command_timeout_ms <= now;
         c = c->next) {
        if (!c->timed_out)
            r->stats.timeouts++;
        c->timed_out = true;
        expired++;
    }
    if (!expired) {
        arm_cmd_timer(r); /* the oldest command is younger than the timeout: wait for it */
        return;
    }
    if (!r->ac)
        return; /* not expected: in-flight commands always belong to the live context */
    FB_WARN(REDIS, "[redis|%s] %zu command(s) without a reply after %u ms; dropping the connection",
            r->address, expired, r->command_timeout_ms);
    conn_drop(r, "command timeout");
}

/* The deadline timer: fails queued commands whose write deadline has passed with FB_EUNAVAIL. */
static void on_deadline_timer(uv_timer_t *t)
{
    fb_redis_t *r = t->data;
    uint64_t now = uv_now(r->loop);
    while (!r->closing && r->queue.head && r->queue.head->deadline <= now) {
        struct cmd *c = r->queue.head;
        list_remove(&r->queue, c);
        FB_DEBUG(REDIS, "[redis|%s] command dropped: no connection within %u ms", r->address,
                 r->write_deadline_ms);
        cmd_complete(r, c, FB_EUNAVAIL, NULL, false);
    }
    arm_deadline_timer(r, true);
}

/* ---------------------------------------------------------------------------------------- */
/* Public API */

/*
 * Copies what it needs from `opts` (strings duplicated, so later members of the struct are not
 * aliased) and initializes the three timers. NULL on a bad address, logged without echoing it.
 */
fb_redis_t *fb_redis_create(uv_loop_t *loop, const fb_redis_opts_t *opts)
{
    if (!loop || !opts)
        return NULL;
    fb_redis_t *r = fb_calloc(1, sizeof(*r));
    if (parse_address(r, opts->address) != 0) {
        /* The address is not echoed: a mistyped URL may carry a password. */
        FB_ERR(REDIS, "invalid redis address: expected tcp://HOST:PORT or unix:PATH");
        fb_free(r->host);
        fb_free(r->path);
        fb_free(r);
        return NULL;
    }
    r->loop = loop;
    r->address = fb_strdup(opts->address);
    if (opts->password && opts->password[0]) {
        r->password_len = strlen(opts->password);
        r->password = fb_strndup(opts->password, r->password_len);
    }
    r->connect_timeout_ms = opts->connect_timeout_ms;
    r->command_timeout_ms = opts->command_timeout_ms;
    r->write_deadline_ms = opts->write_deadline_ms;
    r->reconnect = opts->reconnect;
    r->state = ST_IDLE;
    uv_timer_t *timers[] = {&r->conn_timer, &r->cmd_timer, &r->deadline_timer};
    for (size_t i = 0; i < FB_ARRAY_SIZE(timers); i++) {
        int rc = uv_timer_init(loop, timers[i]); /* cannot fail on Unix */
        FB_ASSERT(rc == 0);
        timers[i]->data = r;
        r->open++;
    }
    return r;
}

int fb_redis_start(fb_redis_t *r)
{
    if (r->state != ST_IDLE || r->closing)
        return FB_EINVAL;
    FB_INFO(REDIS, "[redis|%s] connecting", r->address);
    conn_start(r);
    return 0;
}

void fb_redis_on_ready(fb_redis_t *r, fb_redis_ready_cb cb, void *arg)
{
    r->ready_cb = cb;
    r->ready_arg = arg;
}

bool fb_redis_connected(const fb_redis_t *r)
{
    return r->state == ST_READY && r->ac != NULL;
}

size_t fb_redis_pending(const fb_redis_t *r)
{
    return r->queue.len + r->inflight.len;
}

const char *fb_redis_address(const fb_redis_t *r)
{
    return r->address;
}

void fb_redis_get_stats(const fb_redis_t *r, fb_redis_stats_t *out)
{
    *out = r->stats;
}

/*
 * Validates, encodes the command once (kept for resends), then writes it at once when a
 * connection is ready, else queues it with its write deadline. Never calls `cb` itself.
 */
int fb_redis_command_argv(fb_redis_t *r, int flags, fb_redis_reply_cb cb, void *arg, int argc,
                          const char **argv, const size_t *argvlen)
{
    if (!r || !cb || argc < 1 || !argv)
        return FB_EINVAL;
    for (int i = 0; i < argc; i++)
        if (!argv[i] && !(argvlen && argvlen[i] == 0))
            return FB_EINVAL;
    if (r->closing)
        return FB_ECLOSING;
    if (command_forbidden(argc, argv, argvlen))
        return FB_EINVAL;
    bool ready = r->state == ST_READY && r->ac;
    if (!ready && r->queue.len >= FB_REDIS_MAX_QUEUED)
        return FB_EAGAIN;

    struct cmd *c = fb_calloc(1, sizeof(*c));
    c->r = r;
    c->cb = cb;
    c->arg = arg;
    c->flags = flags;
    c->wire = resp_encode(argc, argv, argvlen, &c->wire_len);
    c->deadline = uv_now(r->loop) + r->write_deadline_ms;
    if (ready) {
        if (send_cmd(r, c) == 0)
            return 0;
        /* Cannot happen with a live context; keep the command for the next connection. */
        FB_ERR(REDIS, "[redis|%s] hiredis refused a command on a ready connection", r->address);
    }
    c->state = CMD_QUEUED;
    list_append(&r->queue, c); /* its deadline is the latest: the queue stays sorted */
    arm_deadline_timer(r, false);
    return 0;
}

/* Collects the NULL-terminated string arguments (at most 64, else FB_EINVAL) and forwards. */
int fb_redis_command(fb_redis_t *r, int flags, fb_redis_reply_cb cb, void *arg, ...)
{
    const char *argv[64];
    int argc = 0;
    va_list ap;
    va_start(ap, arg);
    for (const char *s = va_arg(ap, const char *); s; s = va_arg(ap, const char *)) {
        if (argc == (int)FB_ARRAY_SIZE(argv)) {
            va_end(ap);
            return FB_EINVAL;
        }
        argv[argc++] = s;
    }
    va_end(ap);
    return fb_redis_command_argv(r, flags, cb, arg, argc, argv, NULL);
}

/*
 * Cancels every pending command synchronously (in-flight ones become abandoned: hiredis hands
 * them back, and they are freed, when the context is freed just after), drops the connection,
 * abandons a pending resolution and closes the timers; maybe_finish() frees `r` and calls
 * `done` from the last close callback.
 */
void fb_redis_close(fb_redis_t *r, void (*done)(void *arg), void *arg)
{
    FB_ASSERT(!r->closing);
    r->closing = true;
    r->close_cb = done;
    r->close_arg = arg;
    FB_INFO(REDIS, "[redis|%s] closing; cancelling %zu pending command(s)", r->address,
            fb_redis_pending(r));
    set_state(r, ST_CLOSED);
    /* In flight first (they were issued first); hiredis still holds them until the drop. */
    while (r->inflight.head) {
        struct cmd *c = r->inflight.head;
        list_remove(&r->inflight, c);
        cmd_complete(r, c, FB_ECANCELED, NULL, true);
    }
    while (r->queue.head) {
        struct cmd *c = r->queue.head;
        list_remove(&r->queue, c);
        cmd_complete(r, c, FB_ECANCELED, NULL, false);
    }
    conn_drop(r, "closing");
    if (r->resolve) {
        r->resolve->abandoned = true;
        (void)uv_cancel((uv_req_t *)&r->resolve->req);
        r->resolve = NULL;
    }
    uv_close((uv_handle_t *)&r->conn_timer, on_timer_closed);
    uv_close((uv_handle_t *)&r->cmd_timer, on_timer_closed);
    uv_close((uv_handle_t *)&r->deadline_timer, on_timer_closed);
}

/* ---------------------------------------------------------------------------------------- */
/* Scripts by their SHA1 */

/* NOSCRIPT answers a call may get before it is passed on: one reload is enough unless the
 * connection changed (another server) between the SCRIPT LOAD and the EVALSHA. */
#define EVALSHA_MAX_RELOADS 2

void fb_redis_script_init(fb_redis_script_t *sc, const char *src)
{
    unsigned char h[20];
    sc->src = src;
    fb_sha1(src, strlen(src), h);
    fb_hex(h, 20, sc->sha);
}

/* One fb_redis_evalsha() in progress: the call is kept whole for the resend after NOSCRIPT. */
struct evalsha_op {
    fb_redis_t *r;
    const fb_redis_script_t *sc;
    int flags;
    fb_redis_reply_cb cb;
    void *arg;
    int argc;          /* 2 + the caller's */
    const char **argv; /* [0] EVALSHA, [1] the SHA1, then the copies */
    char **copies;     /* argv[2..] (owned) */
    size_t *lens;
    unsigned reloads; /* SCRIPT LOADs sent for this call */
};

static void evalsha_op_free(struct evalsha_op *op)
{
    for (int i = 2; i < op->argc; i++)
        fb_free(op->copies[i]);
    fb_free(op->copies);
    fb_free(op->argv);
    fb_free(op->lens);
    fb_free(op);
}

static void on_evalsha_loaded(fb_redis_t *r, int status, redisReply *rep, void *arg)
{
    (void)r;
    (void)arg;
    /* Nothing waits on it: the EVALSHA written behind it gets NOSCRIPT again if it failed. */
    if (status == 0 && rep->type == REDIS_REPLY_ERROR)
        FB_WARN(REDIS, "SCRIPT LOAD failed: Redis answered: %s", rep->str ? rep->str : "?");
}

static void on_evalsha(fb_redis_t *r, int status, redisReply *rep, void *arg)
{
    struct evalsha_op *op = arg;
    if (status == 0 && rep->type == REDIS_REPLY_ERROR && op->reloads < EVALSHA_MAX_RELOADS &&
        rep->str && strncmp(rep->str, "NOSCRIPT", 8) == 0) {
        FB_DEBUG(REDIS, "script not cached by Redis (NOSCRIPT); loading it");
        op->reloads++;
        const char *load[] = {"SCRIPT", "LOAD", op->sc->src};
        int rc = fb_redis_command_argv(r, FB_REDIS_RETRY, on_evalsha_loaded, NULL, 3, load, NULL);
        if (rc == 0)
            rc = fb_redis_command_argv(r, op->flags, on_evalsha, op, op->argc, op->argv, op->lens);
        if (rc == 0)
            return;
        status = rc == FB_ECLOSING ? FB_ECANCELED : FB_EUNAVAIL;
        rep = NULL;
    }
    fb_redis_reply_cb cb = op->cb;
    void *cb_arg = op->arg;
    evalsha_op_free(op);
    cb(r, status, rep, cb_arg);
}

int fb_redis_evalsha(fb_redis_t *r, const fb_redis_script_t *sc, int flags, fb_redis_reply_cb cb,
                     void *arg, int argc, const char **argv, const size_t *argvlen)
{
    if (!r || !sc || !sc->src || !cb || argc < 1 || !argv)
        return FB_EINVAL;
    size_t k = 0;
    while (k < r->nscripts && memcmp(r->scripts[k].sha, sc->sha, 40) != 0)
        k++;
    if (k == r->nscripts) { /* its first call: kept for the reconnections */
        if (r->nscripts == r->capscripts) {
            r->capscripts = r->capscripts ? 2 * r->capscripts : 16;
            r->scripts = fb_realloc(r->scripts, r->capscripts * sizeof(*r->scripts));
        }
        r->scripts[r->nscripts].src = fb_strdup(sc->src);
        memcpy(r->scripts[r->nscripts].sha, sc->sha, sizeof(sc->sha));
        r->nscripts++;
        /* Loaded now, ahead of its EVALSHA on the same connection: waiting for a NOSCRIPT would
         * send the EVALSHA again behind every command pipelined after it, and callers that
         * pipeline writes whose order matters (the Matrix adapter's crypto state, written by
         * two scripts in a row) would see them applied out of order. A later connection loads
         * every known script first (scripts_load(), which also covers a first call made before
         * the first connection); NOSCRIPT is then left for a SCRIPT FLUSH. */
        if (r->state == ST_READY) {
            const char *load[] = {"SCRIPT", "LOAD", r->scripts[k].src};
            (void)fb_redis_command_argv(r, flags, on_evalsha_loaded, NULL, 3, load, NULL);
        }
    }
    struct evalsha_op *op = fb_calloc(1, sizeof(*op));
    op->r = r;
    op->sc = sc;
    op->flags = flags;
    op->cb = cb;
    op->arg = arg;
    op->argc = argc + 2;
    op->argv = fb_calloc((size_t)op->argc, sizeof(*op->argv));
    op->copies = fb_calloc((size_t)op->argc, sizeof(*op->copies));
    op->lens = fb_calloc((size_t)op->argc, sizeof(*op->lens));
    op->argv[0] = "EVALSHA";
    op->lens[0] = 7;
    op->argv[1] = sc->sha;
    op->lens[1] = 40;
    for (int i = 0; i < argc; i++) {
        size_t len = argvlen ? argvlen[i] : strlen(argv[i]);
        op->copies[2 + i] = fb_malloc(len + 1);
        if (len)
            memcpy(op->copies[2 + i], argv[i], len);
        op->copies[2 + i][len] = '\0';
        op->argv[2 + i] = op->copies[2 + i];
        op->lens[2 + i] = len;
    }
    int rc = fb_redis_command_argv(r, flags, on_evalsha, op, op->argc, op->argv, op->lens);
    if (rc != 0)
        evalsha_op_free(op);
    return rc;
}
