/* SPDX-License-Identifier: MIT */
/*
 * email.c - the e-mail adapter: reaching a web user later, by e-mail (docs/internals/EMAIL.md).
 *
 * A web conversation ("web:TOKEN") may hold one address, in its own key {c:web:TOKEN}:mail (a
 * hash: addr, state pending|confirmed, tok = the SHA-256 of the pending confirmation token, n =
 * confirmation mails asked). The web adapter lists that key among the keys a forget deletes.
 *
 * This adapter's conversations are the user's: "email:web:TOKEN" is where the mails for
 * "web:TOKEN" wait, in the router's own durable outbox (one entry in flight, retried on transient
 * failures, parked after permanent ones). send() reads the address at the moment of sending, so
 * a mail still queued when the user asks to be forgotten (the address gone) is dropped, and a
 * mail for an address not confirmed yet is never sent (but the confirmation itself).
 *
 * Routes (served by the daemon's HTTP server):
 *   GET  /email/                    the page where the user gives an address (page_html)
 *   POST /email/adresse             {"conversation": web token, "adresse": ...}: records the
 *                                   address as pending and queues the confirmation mail
 *   GET  /email/confirmer/TOKEN     a page with one button (mail scanners follow links, they do
 *                                   not submit forms: a GET confirms nothing)
 *   POST /email/confirmer/TOKEN     confirms the address
 *
 * Sending is libcurl's SMTP on libuv's worker threads (smtp_work(): curl's SMTP blocks in its
 * last phase, so never on the loop). Logs name a conversation by a short hash of its key and an
 * address by a short hash of it (fb_email_addr_tag), never either in clear.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <uv.h>

#include "common/digest.h"
#include "email_config.h"
#include "email_msg.h"
#include "frichebot/adapter.h"
#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "frichebot/clock.h"
#include "frichebot/err.h"
#include "frichebot/log.h"
#include "io/config.h"
#include "io/http_server.h"
#include "io/redis.h"

#define MAIL_KEY                  "mail"           /* {c:<user conversation>}:mail, see above */
#define CONFIRM_NS                "email:confirm:" /* <prefix>email:confirm:<token hash> -> conversation */
#define ROUTE_ADDRESS             "/email/adresse"
#define ROUTE_CONFIRM             "/email/confirmer/"
#define MAX_BODY_BYTES            (256u << 10) /* one mail, headers and base64 body */
#define MAX_POST_BYTES            2048u
#define DEFAULT_TIMEOUT_MS        30000u
#define DEFAULT_CONFIRM_HOURS     48u
#define DEFAULT_MAX_CONFIRMATIONS 3u
#define SMTP_WORKERS              2 /* SMTP transactions at once, on libuv's threadpool */
#define PASSWORD_ENV              "FRICHEBOT_SMTP_PASSWORD"
#define CONV_MAX                  512 /* the router's longest conversation key */

/*
 * Register. KEYS: the user's session, mail, the confirmation index key, this adapter's outbox
 * of the conversation, the pending index. ARGV: address, token hash, now (ms), TTL (ms, 0:
 * none), link lifetime (ms), the outbox entry, the pending index member, the most confirmation
 * mails per conversation, the user's conversation key. Returns -1 when the conversation does not
 * exist, -2 when too many confirmations were asked, 1 when queued.
 */
static const char register_script[] =
    "#!lua\n"
    "if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end\n"
    "local n = tonumber(redis.call('HGET', KEYS[2], 'n') or '0')\n"
    "if n >= tonumber(ARGV[8]) then return -2 end\n"
    "redis.call('DEL', KEYS[2])\n"
    "redis.call('HSET', KEYS[2], 'addr', ARGV[1], 'state', 'pending', 'tok', ARGV[2], 'at', "
    "ARGV[3], 'n', n + 1)\n"
    "local ttl = tonumber(ARGV[4])\n"
    "if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end\n"
    "redis.call('SET', KEYS[3], ARGV[9], 'PX', ARGV[5])\n"
    "redis.call('RPUSH', KEYS[4], ARGV[6])\n"
    "if ttl > 0 then redis.call('PEXPIRE', KEYS[4], ttl) end\n" /* no longer than the address */
    "redis.call('ZADD', KEYS[5], 'NX', ARGV[3], ARGV[7])\n"
    "return 1\n";

/*
 * Confirm: the second of two calls, each in one Redis Cluster slot (docs/internals/REDIS.md, "The
 * audit"). The first reads the confirmation index <prefix>{g}:email:confirm:<token hash>, which
 * names the user's conversation; this one runs on that conversation's `mail` alone. KEYS: mail.
 * ARGV: token hash, now (ms), link lifetime (ms). Returns 1 when confirmed now, 0 when the link
 * is unknown there, expired, used already or replaced by a newer address.
 *
 * The index is only a pointer: `tok` (the SHA-256 of a 256-bit secret that only the mail carried)
 * and `at` (when it was sent) in the user's own hash decide, checked and changed in one atomic
 * step. So whatever the index did between the two calls changes nothing: deleted by a confirm of
 * the same link (two clicks at once: the first one finds `tok` and removes it, the second one
 * finds none and gets the 404 page « Lien expiré »), or expired (the link's lifetime is checked
 * here against `at`, not left to the index's TTL, which might end between the calls). Then the
 * index key is deleted by a third call (confirmed_cleanup()); a crash before it leaves a pointer
 * to a hash without that `tok`, which confirms nothing and expires with the link.
 */
static const char confirm_script[] =
    "#!lua\n"
    "local m = redis.call('HMGET', KEYS[1], 'tok', 'at')\n"
    "if m[1] ~= ARGV[1] then return 0 end\n"
    "local at = tonumber(m[2])\n"
    "if not at or at + tonumber(ARGV[3]) < tonumber(ARGV[2]) then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'state', 'confirmed', 'confirmed', ARGV[2])\n"
    "redis.call('HDEL', KEYS[1], 'tok')\n"
    "return 1\n";

int fb_email_log_sub = FB_SUB_CORE;

struct email {
    fb_adapter_t *a; /* NULL once destroyed */
    const fb_core_t *core;
    const fb_email_opts_t *opts;
    char *password; /* wiped before it is freed */
    char ttl_ms[24];
    char confirm_ms[24];
    char *prefix;  /* the store's key prefix */
    unsigned refs; /* the instance + operations */
    size_t ops;    /* operations in flight */
    struct op *list;
    bool started, stopping;
    void (*stop_done)(fb_adapter_t *a);
    uint64_t sent, dropped, failed;
    struct smtp_job *smtp_queue, *smtp_queue_tail; /* not started yet, oldest first */
    unsigned smtp_running;                         /* on worker threads */
    atomic_bool abort_sends;                       /* stopping: the workers' curl aborts */
};

enum op_kind { OP_SEND, OP_REGISTER, OP_CONFIRM_LOOKUP, OP_CONFIRM, OP_CONFIRM_CLEANUP };

/* One operation in flight: a send (Redis read of the address, then SMTP), a registration or a
 * confirmation (Redis, then the HTTP answer). */
struct op {
    struct op *prev, *next;
    struct email *e;
    enum op_kind kind;
    fb_send_cb cb;
    void *cb_arg;
    fb_http_req_t *hreq;     /* a deferred HTTP answer */
    char conv[CONV_MAX + 1]; /* the user's conversation key ("web:TOKEN") */
    char tag[16];
    char tokhash[65];
    char *mail_kind; /* the entry's kind */
    char *text;      /* the entry's text */
    char *txn;
    char *entry_tok; /* the entry's "tok" (a confirmation) */
};

static void email_unref(struct email *e)
{
    if (--e->refs > 0)
        return;
    if (e->password) {
        volatile char *p = e->password;
        while (*p)
            *p++ = '\0';
        fb_free(e->password);
    }
    fb_free(e->prefix);
    fb_free(e);
}

static void maybe_stop_done(struct email *e)
{
    if (!e->stop_done || e->ops > 0)
        return;
    void (*done)(fb_adapter_t * a) = e->stop_done;
    e->stop_done = NULL;
    done(e->a);
}

static struct op *op_new(struct email *e, enum op_kind kind)
{
    struct op *op = fb_calloc(1, sizeof(*op));
    op->e = e;
    op->kind = kind;
    op->next = e->list;
    if (e->list)
        e->list->prev = op;
    e->list = op;
    e->refs++;
    e->ops++;
    return op;
}

static void op_free(struct op *op)
{
    struct email *e = op->e;
    if (op->prev)
        op->prev->next = op->next;
    else
        e->list = op->next;
    if (op->next)
        op->next->prev = op->prev;
    fb_free(op->mail_kind);
    fb_free(op->text);
    fb_free(op->txn);
    fb_free(op->entry_tok);
    fb_free(op);
    e->ops--;
    maybe_stop_done(e);
    email_unref(e);
}

/* The conversation's log tag: a short hash of its key (a web token is a bearer secret). */
static void conv_tag(const char *conv, char out[16])
{
    char h[13];
    fb_sha256_tag(conv, 4, h);
    snprintf(out, 16, "%s", h);
}

/* Runs one of the two scripts by its SHA1 (fb_redis_evalsha(): issue 17, EVALSHA only, the body
 * never sent with a call); each is named once, at its first use, on the loop thread. */
static int run_script(struct op *op, const char *script, fb_redis_reply_cb cb, int nkeys,
                      char *const *keys, int nargs, const char *const *args)
{
    static fb_redis_script_t named[2];
    fb_redis_script_t *sc = &named[script == register_script ? 0 : 1];
    if (!sc->src)
        fb_redis_script_init(sc, script);
    const char *argv[20];
    char nk[8];
    snprintf(nk, sizeof(nk), "%d", nkeys);
    int argc = 0;
    argv[argc++] = nk;
    for (int i = 0; i < nkeys; i++) {
        if (!keys[i])
            return FB_EINVAL;
        argv[argc++] = keys[i];
    }
    for (int i = 0; i < nargs; i++)
        argv[argc++] = args[i];
    FB_ASSERT(argc <= (int)FB_ARRAY_SIZE(argv));
    return fb_redis_evalsha(op->e->core->redis, sc, FB_REDIS_RETRY, cb, op, argc, argv, NULL);
}

/* A global key of this adapter: "<prefix>{g}:email:confirm:<hash>" (the global keys' hash tag,
 * core/keys.h). */
static char *confirm_key(const struct email *e, const char *tokhash)
{
    return fb_asprintf("%s{g}:" CONFIRM_NS "%s", e->prefix, tokhash);
}

/* ---------------------------------------------------------------------------------------- */
/* Sending */

/*
 * One SMTP transaction, run by curl_easy_perform() on a libuv worker thread: curl's SMTP is not
 * fully non-blocking on a multi handle (after the message, its DONE phase waits for the server's
 * reply in a poll() loop, smtp_block_statemach(): up to the whole timeout with a relay that holds
 * DATA), so it must never run on the loop (docs/internals/EMAIL.md, "Sending"). At most
 * SMTP_WORKERS run at once (the threadpool is shared with DNS and file work); the others wait in
 * the adapter's FIFO. Everything the thread reads is copied in the job; it writes only `rc` and
 * `code`, read by the loop in the after-work callback.
 */
struct smtp_job {
    uv_work_t work;
    struct smtp_job *next; /* the FIFO of jobs not started */
    struct op *op;
    struct email *e;
    char *url, *from, *rcpt, *username, *password;
    char *msg;
    size_t len, off;
    long timeout_ms;
    bool require_tls;
    CURLcode rc;
    long code;
};

static size_t smtp_read(char *buf, size_t size, size_t nitems, void *userdata)
{
    struct smtp_job *j = userdata;
    size_t room = size * nitems, left = j->len - j->off;
    size_t n = left < room ? left : room;
    memcpy(buf, j->msg + j->off, n);
    j->off += n;
    return n;
}

/* Called by curl about once a second, even while it waits for a reply: non-zero aborts the
 * transaction (the daemon is stopping). */
static int smtp_progress(void *clientp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                         curl_off_t ulnow)
{
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    struct email *e = clientp;
    return atomic_load(&e->abort_sends) ? 1 : 0;
}

/* On a worker thread. */
static void smtp_work(uv_work_t *w)
{
    struct smtp_job *j = w->data;
    CURL *c = curl_easy_init();
    j->rc = CURLE_FAILED_INIT;
    if (!c)
        return;
    struct curl_slist *rcpt = curl_slist_append(NULL, j->rcpt);
    CURLcode rc = rcpt ? CURLE_OK : CURLE_OUT_OF_MEMORY;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (rc == CURLE_OK)                                                                        \
            rc = curl_easy_setopt(c, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_URL, j->url);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_MAIL_FROM, j->from);
    SET(CURLOPT_MAIL_RCPT, rcpt);
    SET(CURLOPT_UPLOAD, 1L);
    SET(CURLOPT_READFUNCTION, smtp_read);
    SET(CURLOPT_READDATA, (void *)j);
    SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t)j->len);
    SET(CURLOPT_TIMEOUT_MS, j->timeout_ms);
    SET(CURLOPT_CONNECTTIMEOUT_MS, j->timeout_ms < 10000 ? j->timeout_ms : 10000L);
    /* the wait for each reply, which the blocking last phase honours (seconds, at least 1) */
    SET(CURLOPT_SERVER_RESPONSE_TIMEOUT, (j->timeout_ms + 999) / 1000);
    SET(CURLOPT_NOPROGRESS, 0L);
    SET(CURLOPT_XFERINFOFUNCTION, smtp_progress);
    SET(CURLOPT_XFERINFODATA, (void *)j->e);
    if (j->require_tls)
        SET(CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
    if (j->username)
        SET(CURLOPT_USERNAME, j->username);
    if (j->password)
        SET(CURLOPT_PASSWORD, j->password);
#undef SET
    if (rc == CURLE_OK)
        rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    j->rc = rc;
    j->code = code;
    /* The cleanup says QUIT and waits for its reply, blocking too (up to two minutes, through a
     * handle whose timeouts are not ours). After a failure or an abort the mail's fate is known
     * already: the socket is shut down first, so that wait ends at once. */
    curl_socket_t fd = CURL_SOCKET_BAD;
    if ((rc != CURLE_OK || atomic_load(&j->e->abort_sends)) &&
        curl_easy_getinfo(c, CURLINFO_ACTIVESOCKET, &fd) == CURLE_OK && fd != CURL_SOCKET_BAD)
        shutdown(fd, SHUT_RDWR);
    curl_easy_cleanup(c);
    curl_slist_free_all(rcpt);
}

static void wipe_free(char *s)
{
    if (!s)
        return;
    volatile char *p = s;
    while (*p)
        *p++ = '\0';
    fb_free(s);
}

static void job_free(struct smtp_job *j)
{
    fb_free(j->url);
    fb_free(j->from);
    fb_free(j->rcpt);
    fb_free(j->username);
    wipe_free(j->password);
    fb_free(j->msg);
    fb_free(j);
}

/* Maps the transaction's outcome to the outbox's codes (adapter.h, fb_send_cb): a 4xx reply, a
 * timeout, a refused or dropped connection are transient; a 5xx reply is permanent (parked).
 * curl fails a transaction on any negative reply (to MAIL, RCPT, DATA or AUTH) with various
 * codes and keeps the reply: the reply decides (RFC 5321 4.2.1). */
static int smtp_result(CURLcode rc, long code)
{
    if (rc == CURLE_OK)
        return 0;
    if (rc == CURLE_ABORTED_BY_CALLBACK)
        return FB_ECANCELED;
    if (rc == CURLE_OPERATION_TIMEDOUT)
        return FB_ETIMEDOUT;
    if (code >= 500)
        return FB_EHTTP;
    if (code >= 400)
        return FB_EAGAIN;
    if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST)
        return FB_ECONNECT;
    return FB_EIO; /* dropped mid-way, TLS trouble: an operator can fix it, retried */
}

static void smtp_start_next(struct email *e);

/* On the loop, once the worker is done (or the job was cancelled before it started). */
static void smtp_after(uv_work_t *w, int status)
{
    struct smtp_job *j = w->data;
    struct op *op = j->op;
    struct email *e = j->e;
    e->smtp_running--;
    int rc = status == UV_ECANCELED ? FB_ECANCELED : smtp_result(j->rc, j->code);
    if (rc == 0) {
        e->sent++;
        FB_INFO(EMAIL, "[%s] %s mail accepted by the relay", op->tag, op->mail_kind);
    } else if (rc == FB_ECANCELED) {
        FB_INFO(EMAIL, "[%s] %s mail not sent: stopping (sent again at the next start)", op->tag,
                op->mail_kind);
    } else {
        e->failed++;
        FB_WARN(EMAIL, "[%s] %s mail not accepted: %s (SMTP %ld), %s", op->tag, op->mail_kind,
                curl_easy_strerror(j->rc), j->code,
                rc == FB_EHTTP ? "refused for good" : "will be retried");
    }
    job_free(j);
    op->cb(rc, 0, op->cb_arg);
    op_free(op);
    smtp_start_next(e);
}

/* Starts queued jobs while fewer than SMTP_WORKERS run. */
static void smtp_start_next(struct email *e)
{
    while (e->smtp_queue && e->smtp_running < SMTP_WORKERS && !e->stopping) {
        struct smtp_job *j = e->smtp_queue;
        e->smtp_queue = j->next;
        if (!e->smtp_queue)
            e->smtp_queue_tail = NULL;
        j->work.data = j;
        e->smtp_running++;
        if (uv_queue_work(e->core->loop, &j->work, smtp_work, smtp_after) != 0) {
            j->rc = CURLE_FAILED_INIT; /* cannot happen on a live loop: reported as transient */
            j->code = 0;
            smtp_after(&j->work, 0);
            return;
        }
    }
}

/* The subject of a mail of kind `kind`. */
static const char *subject_of(const char *kind)
{
    if (strcmp(kind, "confirm") == 0)
        return "Confirmez votre adresse e-mail – assistant friches";
    if (strcmp(kind, "reminder") == 0)
        return "Où en est votre projet de friche ?";
    if (strcmp(kind, "relay") == 0)
        return "Un conseiller vous a répondu – assistant friches";
    return "Message de l'assistant friches";
}

/* Builds the mail for `op` to `addr` and hands it to the relay. Returns 0 or an error (then the
 * caller completes the send). */
static int smtp_send(struct op *op, const char *addr)
{
    struct email *e = op->e;
    const fb_email_opts_t *o = e->opts;
    fb_buf_t body, msg;
    fb_buf_init(&body, MAX_BODY_BYTES);
    fb_buf_init(&msg, MAX_BODY_BYTES);
    int rc = fb_buf_puts(&body, op->text ? op->text : "");
    if (rc == 0 && strcmp(op->mail_kind, "confirm") != 0)
        rc = fb_buf_printf(&body,
                           "\n\n---\nPour répondre, reprenez la conversation : %s/\n"
                           "Pour ne plus recevoir de messages, écrivez « oublier mes données » "
                           "dans la conversation : votre adresse sera effacée.\n",
                           o->public_url);
    char id[160];
    snprintf(id, sizeof(id), "fb.%s", op->txn);
    for (char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '-'))
            *p = '_';
    if (rc == 0) {
        fb_email_msg_t m = {
            .from = o->from,
            .from_name = o->from_name,
            .to = addr,
            .subject = subject_of(op->mail_kind),
            .body = fb_buf_str(&body),
            .message_id = id,
            .date = fb_wall_s(),
        };
        rc = fb_email_build(&msg, &m);
    }
    fb_buf_free(&body);
    if (rc) {
        fb_buf_free(&msg);
        return rc == FB_ETOOBIG ? FB_ETOOBIG : FB_EINVAL;
    }
    struct smtp_job *job = fb_calloc(1, sizeof(*job));
    job->op = op;
    job->e = e;
    job->url = fb_strdup(o->relay);
    job->from = fb_strdup(o->from);
    job->rcpt = fb_strdup(addr);
    job->username = o->username ? fb_strdup(o->username) : NULL;
    job->password = e->password ? fb_strdup(e->password) : NULL;
    job->len = msg.len;
    job->msg = fb_buf_take(&msg);
    job->timeout_ms = (long)(o->timeout_ms ? o->timeout_ms : DEFAULT_TIMEOUT_MS);
    job->require_tls = o->require_tls && strncmp(o->relay, "smtp://", 7) == 0;
    if (!job->msg) {
        job_free(job);
        return FB_EIO;
    }
    if (e->smtp_queue_tail)
        e->smtp_queue_tail->next = job;
    else
        e->smtp_queue = job;
    e->smtp_queue_tail = job;
    smtp_start_next(e);
    return 0;
}

/* The address record has been read: send, or drop what must not go out. */
static void on_mail_read(fb_redis_t *r, int status, redisReply *reply, void *arg)
{
    (void)r;
    struct op *op = arg;
    struct email *e = op->e;
    if (status || !reply || reply->type != REDIS_REPLY_ARRAY || e->stopping) {
        op->cb(status == FB_ECANCELED || e->stopping ? FB_ECANCELED : FB_EAGAIN, 0, op->cb_arg);
        op_free(op);
        return;
    }
    const char *addr = NULL, *state = NULL, *tok = NULL;
    for (size_t i = 0; i + 1 < reply->elements; i += 2) {
        const char *k = reply->element[i]->str, *v = reply->element[i + 1]->str;
        if (!k || !v)
            continue;
        if (strcmp(k, "addr") == 0)
            addr = v;
        else if (strcmp(k, "state") == 0)
            state = v;
        else if (strcmp(k, "tok") == 0)
            tok = v;
    }
    bool confirm = strcmp(op->mail_kind, "confirm") == 0;
    const char *why = NULL;
    if (!addr || !fb_email_addr_valid(addr))
        why = "no address (never given, or forgotten)";
    else if (confirm && (!state || strcmp(state, "pending") != 0 || !tok || !op->entry_tok ||
                         strcmp(tok, op->entry_tok) != 0))
        why = "a confirmation for an address confirmed or replaced since";
    else if (!confirm && (!state || strcmp(state, "confirmed") != 0))
        why = "the address is not confirmed";
    if (why) {
        e->dropped++;
        FB_INFO(EMAIL, "[%s] %s mail dropped: %s", op->tag, op->mail_kind, why);
        op->cb(0, 0, op->cb_arg);
        op_free(op);
        return;
    }
    char atag[13];
    fb_email_addr_tag(addr, atag);
    FB_DEBUG(EMAIL, "[%s] %s mail to [%s]", op->tag, op->mail_kind, atag);
    int rc = smtp_send(op, addr);
    if (rc) {
        /* A message that cannot be built never will be: parked, not retried. */
        FB_WARN(EMAIL, "[%s] %s mail cannot be sent: %s", op->tag, op->mail_kind, fb_err_name(rc));
        op->cb(rc == FB_ECLOSING ? FB_ECANCELED : rc == FB_EIO ? FB_EIO : FB_EINVAL, 0, op->cb_arg);
        op_free(op);
    }
}

static int email_send(fb_adapter_t *a, const fb_outbound_t *msg, fb_send_cb cb, void *arg)
{
    struct email *e = *(struct email **)fb_adapter_priv(a);
    if (!cb || !msg || !msg->conv || !msg->txn_id || strlen(msg->conv) > CONV_MAX ||
        strlen(msg->txn_id) > 128)
        return FB_EINVAL;
    if (e->stopping)
        return FB_ECANCELED;
    char *key = e->core->conv_key(e->core, msg->conv, MAIL_KEY);
    if (!key)
        return FB_EINVAL;
    struct op *op = op_new(e, OP_SEND);
    op->cb = cb;
    op->cb_arg = arg;
    snprintf(op->conv, sizeof(op->conv), "%s", msg->conv);
    conv_tag(msg->conv, op->tag);
    op->mail_kind = fb_strdup(msg->kind ? msg->kind : "reply");
    op->text = fb_strdup(msg->text ? msg->text : "");
    op->txn = fb_strdup(msg->txn_id);
    const char *tok = json_string_value(json_object_get(msg->entry, "tok"));
    op->entry_tok = tok ? fb_strdup(tok) : NULL;
    int rc =
        fb_redis_command(e->core->redis, FB_REDIS_RETRY, on_mail_read, op, "HGETALL", key, NULL);
    fb_free(key);
    if (rc) {
        op_free(op);
        return rc == FB_ECLOSING ? FB_ECANCELED : FB_EAGAIN;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* The routes */

static void respond_json(fb_http_req_t *req, int status, const char *code, const char *message)
{
    json_t *j = json_pack("{s:b, s:s, s:s}", "ok", status < 300, "code", code, "message", message);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    static const char *const headers[] = {"cache-control:", "no-store", NULL};
    fb_http_respond(req, status, "application/json", s ? s : "{}", s ? strlen(s) : 2, headers);
    free(s); /* fb-lint: allow free (jansson's allocation) */
}

/* An HTML page in the State design system's plain style: `title` and `text` are static. */
static void respond_page(fb_http_req_t *req, int status, const char *title, const char *text,
                         const char *form_action)
{
    fb_buf_t b;
    fb_buf_init(&b, 16384);
    int rc = fb_buf_printf(&b,
                           "<!DOCTYPE html>\n<html lang=\"fr\"><head><meta charset=\"utf-8\">"
                           "<meta name=\"viewport\" content=\"width=device-width, "
                           "initial-scale=1\"><title>%s</title>"
                           "<link rel=\"stylesheet\" href=\"/dsfr/dsfr.min.css\"></head>"
                           "<body><main class=\"fr-container fr-my-6w\" id=\"contenu\">"
                           "<h1>%s</h1><p>%s</p>",
                           title, title, text);
    if (rc == 0 && form_action)
        rc = fb_buf_printf(&b,
                           "<form method=\"post\" action=\"%s\"><button class=\"fr-btn\" "
                           "type=\"submit\" id=\"confirmer\">Confirmer mon adresse</button>"
                           "</form>",
                           form_action);
    if (rc == 0)
        rc = fb_buf_puts(&b, "<p><a href=\"/\">Revenir à la conversation</a></p></main></body>"
                             "</html>\n");
    static const char *const headers[] = {"cache-control:", "no-store", NULL};
    if (rc)
        fb_http_respond(req, 500, "text/plain; charset=utf-8", "erreur\n", 7, NULL);
    else
        fb_http_respond(req, status, "text/html; charset=utf-8", fb_buf_str(&b), b.len, headers);
    fb_buf_free(&b);
}

static void on_registered(fb_redis_t *r, int status, redisReply *reply, void *arg)
{
    (void)r;
    struct op *op = arg;
    struct email *e = op->e;
    long long v = !status && reply && reply->type == REDIS_REPLY_INTEGER ? reply->integer : 0;
    if (v == 1) {
        FB_INFO(EMAIL, "[%s] address recorded, confirmation queued", op->tag);
        respond_json(op->hreq, 202, "confirmation_envoyee",
                     "Un message de confirmation vient de partir vers cette adresse. Ouvrez le "
                     "lien qu'il contient : sans confirmation, je ne vous écrirai pas.");
        if (e->a && !e->stopping)
            e->core->wake(e->a, op->conv);
    } else if (v == -1) {
        respond_json(op->hreq, 404, "conversation_inconnue",
                     "Cette conversation n'existe plus : recommencez-la pour donner une adresse.");
    } else if (v == -2) {
        respond_json(op->hreq, 429, "trop_de_demandes",
                     "Trop de demandes de confirmation pour cette conversation.");
    } else {
        respond_json(op->hreq, 503, "indisponible",
                     "Le service est momentanément indisponible : réessayez dans un instant.");
    }
    op_free(op);
}

/* POST /email/adresse: {"conversation": the web token, "adresse": the address}. */
static int on_address(fb_http_req_t *req, void *arg)
{
    struct email *e = arg;
    size_t len = 0;
    const char *body = fb_http_req_body(req, &len);
    if (e->stopping) {
        respond_json(req, 503, "indisponible", "Le service redémarre : réessayez dans un instant.");
        return 0;
    }
    if (!body || len == 0 || len > MAX_POST_BYTES) {
        respond_json(req, 400, "requete_invalide", "Requête invalide.");
        return 0;
    }
    json_error_t jerr;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    const char *token = json_string_value(json_object_get(j, "conversation"));
    const char *addr = json_string_value(json_object_get(j, "adresse"));
    if (!token || strlen(token) > 128 ||
        strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmn"
                      "opqrstuvwxyz0123456789-_") != strlen(token)) {
        json_decref(j);
        respond_json(req, 400, "requete_invalide", "Requête invalide.");
        return 0;
    }
    if (!fb_email_addr_valid(addr)) {
        json_decref(j);
        respond_json(req, 400, "adresse_invalide",
                     "Cette adresse ne semble pas valide : vérifiez-la (par exemple "
                     "prenom.nom@mairie-exemple.fr).");
        return 0;
    }
    unsigned char raw[32];
    char tok[FB_EMAIL_TOKEN_LEN + 1];
    if (uv_random(NULL, NULL, raw, sizeof(raw), 0, NULL) != 0) {
        json_decref(j);
        return FB_EIO;
    }
    static const char b64u[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < 32; i += 3) {
        uint32_t v = (uint32_t)raw[i] << 16 | (i + 1 < 32 ? (uint32_t)raw[i + 1] << 8 : 0) |
                     (i + 2 < 32 ? raw[i + 2] : 0);
        tok[o++] = b64u[(v >> 18) & 63];
        tok[o++] = b64u[(v >> 12) & 63];
        if (i + 1 < 32)
            tok[o++] = b64u[(v >> 6) & 63];
        if (i + 2 < 32)
            tok[o++] = b64u[v & 63];
    }
    tok[o] = '\0';
    struct op *op = op_new(e, OP_REGISTER);
    op->hreq = req;
    snprintf(op->conv, sizeof(op->conv), "web:%s", token);
    conv_tag(op->conv, op->tag);
    fb_email_token_hash(tok, op->tokhash);
    char *text = fb_asprintf(
        "Bonjour,\n\nVous avez donné cette adresse à l'assistant des friches pour recevoir ses "
        "relances et les réponses d'un conseiller. Pour la confirmer, ouvrez ce lien (valable "
        "%u heures) :\n\n%s" ROUTE_CONFIRM "%s\n\nSi ce n'est pas vous, ignorez ce message : "
        "sans confirmation, rien ne vous sera envoyé.\n",
        e->opts->confirm_hours ? e->opts->confirm_hours : DEFAULT_CONFIRM_HOURS,
        e->opts->public_url, tok);
    char now[24], maxc[16], txn[40];
    int64_t t = fb_wall_ms();
    snprintf(now, sizeof(now), "%lld", (long long)t);
    snprintf(maxc, sizeof(maxc), "%u",
             e->opts->max_confirmations ? e->opts->max_confirmations : DEFAULT_MAX_CONFIRMATIONS);
    snprintf(txn, sizeof(txn), "confirm.%.16s", op->tokhash);
    json_t *entry = json_pack("{s:s, s:s, s:s, s:s, s:I, s:s}", "txn", txn, "kind", "confirm",
                              "text", text, "html", "", "ts", (json_int_t)t, "tok", op->tokhash);
    char *entry_s = entry ? json_dumps(entry, JSON_COMPACT) : NULL;
    json_decref(entry);
    fb_free(text);
    char *member = fb_asprintf("email:%s", op->conv);
    char *keys[5] = {
        e->core->conv_key(e->core, op->conv, "session"),
        e->core->conv_key(e->core, op->conv, MAIL_KEY),
        confirm_key(e, op->tokhash),
        e->core->conv_key(e->core, member, "outbox"),
        fb_asprintf("%s{g}:outbox:pending", e->prefix),
    };
    const char *args[9] = {addr,      op->tokhash,   now,
                           e->ttl_ms, e->confirm_ms, entry_s ? entry_s : "",
                           member,    maxc,          op->conv};
    char atag[13];
    fb_email_addr_tag(addr, atag);
    FB_DEBUG(EMAIL, "[%s] address [%s] given", op->tag, atag);
    int rc = entry_s ? run_script(op, register_script, on_registered, 5, keys, 9, args) : FB_EIO;
    for (size_t i = 0; i < 5; i++)
        fb_free(keys[i]);
    fb_free(member);
    free(entry_s); /* fb-lint: allow free (jansson's allocation) */
    json_decref(j);
    if (rc) {
        op->hreq = NULL;
        op_free(op);
        respond_json(req, 503, "indisponible",
                     "Le service est momentanément indisponible : réessayez dans un instant.");
        return 0;
    }
    return FB_EAGAIN;
}

static void on_cleaned_up(fb_redis_t *r, int status, redisReply *reply, void *arg)
{
    (void)r;
    (void)reply;
    struct op *op = arg;
    if (status && status != FB_ECANCELED)
        FB_DEBUG(EMAIL, "[%s] confirmation index not deleted (%s): it expires", op->tag,
                 fb_strerror(status));
    op_free(op);
}

/* After a confirmation: deletes the index key, now a pointer to nothing (confirm_script). */
static void confirmed_cleanup(struct email *e, const struct op *done)
{
    struct op *op = op_new(e, OP_CONFIRM_CLEANUP);
    memcpy(op->tag, done->tag, sizeof(op->tag));
    char *key = confirm_key(e, done->tokhash);
    int rc = fb_redis_command(e->core->redis, FB_REDIS_RETRY, on_cleaned_up, op, "DEL", key, NULL);
    fb_free(key);
    if (rc)
        on_cleaned_up(NULL, rc, NULL, op);
}

static void on_confirmed(fb_redis_t *r, int status, redisReply *reply, void *arg)
{
    (void)r;
    struct op *op = arg;
    if (!status && reply && reply->type == REDIS_REPLY_ERROR) {
        /* a refusal (OOM, a cluster's CROSSSLOT...) is no expired link: try again later */
        FB_WARN(EMAIL, "[%s] confirmation refused by Redis: %.*s", op->tag, (int)reply->len,
                reply->str);
        status = FB_EIO;
    }
    if (status) {
        respond_page(op->hreq, 503, "Service indisponible",
                     "Le service est momentanément indisponible : réessayez dans un instant.",
                     NULL);
    } else if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer == 1) {
        FB_INFO(EMAIL, "[%s] address confirmed", op->tag);
        respond_page(op->hreq, 200, "Adresse confirmée",
                     "Merci : je vous écrirai à cette adresse pour les relances de votre feuille "
                     "de route et les réponses d'un conseiller. « oublier mes données », dans la "
                     "conversation, l'efface.",
                     NULL);
        confirmed_cleanup(op->e, op);
    } else {
        respond_page(op->hreq, 404, "Lien expiré",
                     "Ce lien de confirmation n'est plus valable (expiré, déjà remplacé ou "
                     "effacé). Vous pouvez redonner votre adresse dans la conversation.",
                     NULL);
    }
    op_free(op);
}

static void on_confirm_lookup(fb_redis_t *r, int status, redisReply *reply, void *arg)
{
    (void)r;
    struct op *op = arg;
    struct email *e = op->e;
    if (status || !reply || (reply->type != REDIS_REPLY_STRING && reply->type != REDIS_REPLY_NIL)) {
        on_confirmed(r, status ? status : FB_EIO, NULL, op);
        return;
    }
    if (reply->type == REDIS_REPLY_NIL || reply->len > CONV_MAX || e->stopping) {
        on_confirmed(r, e->stopping ? FB_ECANCELED : 0, NULL, op);
        return;
    }
    memcpy(op->conv, reply->str, reply->len);
    op->conv[reply->len] = '\0';
    conv_tag(op->conv, op->tag);
    struct op *next = op_new(e, OP_CONFIRM);
    next->hreq = op->hreq;
    op->hreq = NULL;
    memcpy(next->conv, op->conv, sizeof(next->conv));
    memcpy(next->tag, op->tag, sizeof(next->tag));
    memcpy(next->tokhash, op->tokhash, sizeof(next->tokhash));
    char now[24];
    snprintf(now, sizeof(now), "%lld", (long long)fb_wall_ms());
    char *keys[1] = {e->core->conv_key(e->core, op->conv, MAIL_KEY)};
    const char *args[3] = {op->tokhash, now, e->confirm_ms};
    int rc = run_script(next, confirm_script, on_confirmed, 1, keys, 3, args);
    fb_free(keys[0]);
    op_free(op);
    if (rc)
        on_confirmed(NULL, rc, NULL, next);
}

/* The page where a web user gives an address (GET /email/): what it is for, how long it is kept,
 * how to erase it, and a form. The conversation is the one of this browser: its token is in
 * localStorage ("frichebot.token", written by the chat page of the same origin), read by the
 * page's script, which posts it with the address. No inline script: the server's
 * Content-Security-Policy allows 'self' sources only. */
static const char page_html[] =
    "<!DOCTYPE html>\n<html lang=\"fr\"><head><meta charset=\"utf-8\">"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
    "<title>Suivi par e-mail – assistant friches</title>"
    "<link rel=\"stylesheet\" href=\"/dsfr/dsfr.min.css\"></head><body>"
    "<main class=\"fr-container fr-my-6w\" id=\"contenu\"><h1>Suivi par e-mail</h1>"
    "<p>Une page de chat fermée ne peut pas recevoir de message. Si vous le souhaitez, je peux "
    "vous écrire à une adresse e-mail : les relances de votre feuille de route (où en est une "
    "étape) et la réponse d'un conseiller, chacune avec le lien pour revenir à la "
    "conversation.</p>"
    "<p>C'est facultatif. L'adresse ne sert qu'à ces messages ; elle est gardée aussi longtemps "
    "que votre conversation (6 mois après votre dernier message) ; écrire « oublier mes données » "
    "dans la conversation l'efface, avec les messages pas encore partis. Un lien de "
    "confirmation vous est d'abord envoyé : sans confirmation, rien d'autre ne part.</p>"
    "<form id=\"courriel\" class=\"fr-mb-3w\"><div class=\"fr-input-group\">"
    "<label class=\"fr-label\" for=\"adresse\">Votre adresse e-mail"
    "<span class=\"fr-hint-text\">Par exemple prenom.nom@mairie-exemple.fr</span></label>"
    "<input class=\"fr-input\" type=\"email\" id=\"adresse\" name=\"adresse\" "
    "autocomplete=\"email\" required maxlength=\"254\"></div>"
    "<button class=\"fr-btn\" type=\"submit\">Recevoir le lien de confirmation</button></form>"
    "<p id=\"resultat\" role=\"status\" aria-live=\"polite\"></p>"
    "<p><a href=\"/\">Revenir à la conversation</a></p></main>"
    "<script src=\"/email/suivi.js\"></script></body></html>\n";

static const char page_js[] =
    "(function () {\n"
    "  'use strict';\n"
    "  var form = document.getElementById('courriel');\n"
    "  var out = document.getElementById('resultat');\n"
    "  var token = null;\n"
    "  try { token = window.localStorage.getItem('frichebot.token'); } catch (e) { token = null; "
    "}\n"
    "  if (!token) {\n"
    "    form.hidden = true;\n"
    "    out.textContent = 'Aucune conversation sur cet appareil : commencez-la d\\'abord, puis "
    "revenez sur cette page.';\n"
    "    return;\n"
    "  }\n"
    "  form.addEventListener('submit', function (ev) {\n"
    "    ev.preventDefault();\n"
    "    out.textContent = 'Envoi…';\n"
    "    fetch('/email/adresse', {method: 'POST', headers: {'Content-Type': 'application/json'},\n"
    "      body: JSON.stringify({conversation: token,\n"
    "                            adresse: document.getElementById('adresse').value.trim()})})\n"
    "      .then(function (r) { return r.json(); })\n"
    "      .then(function (j) { out.textContent = j.message; })\n"
    "      .catch(function () { out.textContent = 'Le service ne répond pas : réessayez dans un "
    "instant.'; });\n"
    "  });\n"
    "}());\n";

static int on_page(fb_http_req_t *req, void *arg)
{
    (void)arg;
    static const char *const headers[] = {"cache-control:", "no-cache", NULL};
    fb_http_respond(req, 200, "text/html; charset=utf-8", page_html, sizeof(page_html) - 1,
                    headers);
    return 0;
}

static int on_page_js(fb_http_req_t *req, void *arg)
{
    (void)arg;
    static const char *const headers[] = {"cache-control:", "no-cache", NULL};
    fb_http_respond(req, 200, "text/javascript; charset=utf-8", page_js, sizeof(page_js) - 1,
                    headers);
    return 0;
}

/* GET /email/confirmer/TOKEN: a page with a button; POST: confirms. */
static int on_confirm(fb_http_req_t *req, void *arg)
{
    struct email *e = arg;
    const char *tok = fb_http_req_path(req) + strlen(ROUTE_CONFIRM);
    if (!fb_email_token_valid(tok)) {
        respond_page(req, 404, "Lien invalide",
                     "Ce lien de confirmation est incomplet : copiez-le en entier depuis le "
                     "message reçu.",
                     NULL);
        return 0;
    }
    if (fb_http_req_method(req) != FB_HTTP_POST) {
        char action[sizeof(ROUTE_CONFIRM) + FB_EMAIL_TOKEN_LEN + 1];
        snprintf(action, sizeof(action), ROUTE_CONFIRM "%s", tok);
        respond_page(req, 200, "Confirmer votre adresse",
                     "Pour recevoir les relances de votre feuille de route et les réponses d'un "
                     "conseiller à cette adresse, confirmez-la.",
                     action);
        return 0;
    }
    struct op *op = op_new(e, OP_CONFIRM_LOOKUP);
    op->hreq = req;
    snprintf(op->tag, sizeof(op->tag), "confirm");
    fb_email_token_hash(tok, op->tokhash);
    char *key = confirm_key(e, op->tokhash);
    int rc =
        fb_redis_command(e->core->redis, FB_REDIS_RETRY, on_confirm_lookup, op, "GET", key, NULL);
    fb_free(key);
    if (rc) {
        op->hreq = NULL;
        op_free(op);
        respond_page(req, 503, "Service indisponible",
                     "Le service est momentanément indisponible : réessayez dans un instant.",
                     NULL);
        return 0;
    }
    return FB_EAGAIN;
}

/* ---------------------------------------------------------------------------------------- */
/* Life cycle */

static int email_init(fb_adapter_t *a)
{
    const fb_email_opts_t *o = fb_config_section(a->core->cfg, "email");
    if (!o || !o->enabled)
        return FB_DECLINED;
    struct email *e = fb_calloc(1, sizeof(*e));
    e->a = a;
    e->core = a->core;
    e->opts = o;
    e->refs = 1;
    /* The store's prefix, for this adapter's two global names: the part of any conversation
     * key before its hash tag (an adapter sees the store only through core->conv_key). */
    char *probe = a->core->conv_key(a->core, "email:x", "x");
    char *tag = probe ? strstr(probe, "{c:") : NULL;
    if (!tag) {
        fb_free(probe);
        fb_free(e);
        return FB_EINVAL;
    }
    e->prefix = fb_strndup(probe, (size_t)(tag - probe));
    fb_free(probe);
    unsigned long long ttl = (unsigned long long)a->core->cfg->store.session_ttl_days * 86400000ull;
    snprintf(e->ttl_ms, sizeof(e->ttl_ms), "%llu", ttl);
    snprintf(e->confirm_ms, sizeof(e->confirm_ms), "%llu",
             (unsigned long long)(o->confirm_hours ? o->confirm_hours : DEFAULT_CONFIRM_HOURS) *
                 3600000ull);
    /* The environment variable wins when set and not empty, as for every secret
     * (docs/configuration.md, "Secrets"); then the file. */
    const char *env_pw = getenv(PASSWORD_ENV);
    if (env_pw && *env_pw) {
        e->password = fb_strdup(env_pw);
    } else if (o->password_file) {
        const char *why = NULL;
        int rc = fb_config_read_secret(o->password_file, &e->password, &why);
        if (rc) {
            FB_ERR(EMAIL, "cannot read email.password_file %s: %s", o->password_file,
                   why ? why : fb_strerror(rc));
            fb_free(e->prefix);
            fb_free(e);
            return rc;
        }
    }
    *(struct email **)fb_adapter_priv(a) = e;
    return 0;
}

static int email_start(fb_adapter_t *a)
{
    struct email *e = *(struct email **)fb_adapter_priv(a);
    const fb_core_t *core = e->core;
    int rc = fb_http_server_route(core->http, ROUTE_ADDRESS, FB_HTTP_POST, "email_address",
                                  on_address, e);
    if (!rc)
        rc = fb_http_server_route_prefix(core->http, ROUTE_CONFIRM, FB_HTTP_GET | FB_HTTP_POST,
                                         "email_confirm", on_confirm, e);
    if (!rc)
        rc = fb_http_server_route(core->http, "/email/", FB_HTTP_GET, "email_page", on_page, e);
    if (!rc)
        rc = fb_http_server_route(core->http, "/email/suivi.js", FB_HTTP_GET, "email_page_js",
                                  on_page_js, e);
    if (rc) {
        FB_ERR(EMAIL, "cannot register the e-mail routes: %s", fb_strerror(rc));
        return rc;
    }
    e->started = true;
    FB_INFO(EMAIL, "e-mail follow-up on (%s relay, links to %s)",
            strncmp(e->opts->relay, "smtps://", 8) == 0 ? "smtps" : "smtp", e->opts->public_url);
    core->set_state(a, "ok");
    return 0;
}

static void email_stop(fb_adapter_t *a, void (*done)(fb_adapter_t *a))
{
    struct email *e = *(struct email **)fb_adapter_priv(a);
    e->stopping = true;
    e->stop_done = done;
    /* SMTP transactions are cancelled (their entries stay at the head of the outbox, sent again
     * at the next start); Redis operations end by themselves, by reply or cancellation. */
    atomic_store(&e->abort_sends, true);
    while (e->smtp_queue) {
        struct smtp_job *j = e->smtp_queue;
        e->smtp_queue = j->next;
        struct op *op = j->op;
        job_free(j);
        op->cb(FB_ECANCELED, 0, op->cb_arg);
        op_free(op);
    }
    e->smtp_queue_tail = NULL;
    maybe_stop_done(e); /* else when the last worker's transaction has ended (within a second) */
}

static void email_destroy(fb_adapter_t *a)
{
    struct email **pe = fb_adapter_priv(a);
    struct email *e = *pe;
    if (!e)
        return;
    *pe = NULL;
    e->a = NULL;
    e->stop_done = NULL;
    e->stopping = true;
    email_unref(e);
}

static int email_stats(fb_adapter_t *a, json_t *out)
{
    struct email *e = *(struct email **)fb_adapter_priv(a);
    json_object_set_new(out, "sent", json_integer((json_int_t)e->sent));
    json_object_set_new(out, "dropped", json_integer((json_int_t)e->dropped));
    json_object_set_new(out, "failed", json_integer((json_int_t)e->failed));
    json_object_set_new(out, "in_flight", json_integer((json_int_t)e->ops));
    return 0;
}

const fb_adapter_ops_t fb_adapter_email = {
    .api_version = FB_ADAPTER_API_VERSION,
    .name = "email",
    .priv_size = sizeof(struct email *),
    .caps = FB_ADAPTER_CAP_FOLLOWUP,
    .init = email_init,
    .start = email_start,
    .stop = email_stop,
    .destroy = email_destroy,
    .send = email_send,
    .stats = email_stats,
    .config = &fb_email_config,
    .log_sub = &fb_email_log_sub,
};
