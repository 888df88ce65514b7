/* SPDX-License-Identifier: MIT */
/*
 * matrix.c - the Matrix adapter: a bot account over /sync, or an application service, feeding
 * one batch runner; sending through the outbox. Design, configuration, Redis keys and the
 * failure behaviour: docs/internals/MATRIX.md. The pure parts (event parser, content builder,
 * globs, registration file) are in mx_util.c.
 *
 * Durability: a batch (a /sync response or a transaction) is acknowledged (next_batch stored,
 * or 200 answered) only once every one of its events was durably handed to the router (deliver
 * callback 0) or recognised as harmless to drop; any transient failure makes the platform send
 * the same events again, and the router drops the duplicates by event id.
 *
 * Lifetimes: `struct mx` is reference counted; the instance, every HTTP call, Redis command,
 * batch and timer hold a reference, so a callback arriving after destroy() finds valid memory.
 */
#include "matrix.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <uv.h>

#include "common/digest.h"
#include "frichebot/adapter.h"
#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "frichebot/clock.h"
#include "frichebot/err.h"
#include "frichebot/log.h"
#include "io/config.h"
#include "io/http_client.h"
#include "io/http_server.h"
#include "io/redis.h"
#include "mx_util.h"

#define TOKEN_ENV         FB_MX_TOKEN_ENV
#define CLIENT_PATH       "/_matrix/client/v3"
#define AS_PREFIX         "/_matrix/app/v1/"
#define TYPING_TIMEOUT_MS 20000
#define SYNC_EXTRA_MS     30000u
#define REFRESH_MARGIN_MS 60000
#define FAILS_DEGRADED    3
#define MAX_REG_BYTES     (64u << 10)
#define REFUSE_REASON     "Désolé, je ne peux accepter que les invitations de mes serveurs autorisés."

enum mode { MODE_BOT, MODE_AS };
enum sync_state { SY_IDLE, SY_AUTH, SY_POLL, SY_HANDLE, SY_BACKOFF, SY_STOPPED };
static const char *const sync_state_name[] = {"idle",     "starting", "polling",
                                              "handling", "backoff",  "stopped"};

struct mx {
    fb_adapter_t *a; /* NULL once destroyed */
    const fb_core_t *core;
    const fb_matrix_opts_t *o;
    enum mode mode;
    unsigned refs;
    size_t ops; /* calls, Redis commands and batches in flight (the sync poll excluded) */
    bool started, stopping;
    void (*stop_done)(fb_adapter_t *a);
    char ttl_ms[24];
    char *k_auth, *k_sync; /* Redis keys */
    const char *const *ignore;
    /* credentials */
    char *token;         /* access token (bot) or as_token */
    char *hs_token;      /* appservice */
    char *password;      /* bot, may be NULL */
    char *refresh_token; /* bot, may be NULL */
    char *device_id;
    int64_t expires_at;  /* Unix ms, 0: no expiry */
    int64_t lifetime_ms; /* the current token's expires_in_ms, 0: unknown (loaded from Redis) */
    bool token_given;    /* from the environment or access_token_file */
    bool recovering;     /* a token recovery is in progress */
    /* bot: the sync loop */
    enum sync_state sy;
    char *next_batch;
    char *filter_id;
    char filter_hash[17];
    char *filter_json;
    unsigned fails;
    bool polling;
    bool catch_up;   /* the next /sync asks timeout=0 (after the start or a failure): what was
                        missed is handed at once and the state says "ok" then, not once the
                        first long-poll ends (up to sync_timeout_ms when nothing happens) */
    void *poll_call; /* the /sync long-poll's struct call while in flight, to cancel it at stop */
    uv_timer_t timer;
    bool timer_init, timer_closed;
    int64_t last_sync_ms;
    /* appservice */
    uint64_t txns;
    int64_t last_txn_ms;
    /* notices being sent, by room (so one encrypted room gets one notice at a time) */
    json_t *notice_inflight;
    uint64_t rooms_joined;
    /* thread senders (advisors): "ROOM USER" -> [display name or "", Unix ms read, member] */
    json_t *names;
};

static void wipe_free(char **p)
{
    if (*p) {
        explicit_bzero(*p, strlen(*p));
        FB_FREE(*p);
    }
}

static void mx_unref(struct mx *m)
{
    if (--m->refs > 0)
        return;
    wipe_free(&m->token);
    wipe_free(&m->hs_token);
    wipe_free(&m->password);
    wipe_free(&m->refresh_token);
    fb_free(m->device_id);
    fb_free(m->next_batch);
    fb_free(m->filter_id);
    fb_free(m->filter_json);
    fb_free(m->k_auth);
    fb_free(m->k_sync);
    json_decref(m->notice_inflight);
    json_decref(m->names);
    fb_free(m);
}

static void maybe_stop_done(struct mx *m)
{
    if (!m->stop_done || m->ops > 0 || (m->timer_init && !m->timer_closed))
        return;
    void (*done)(fb_adapter_t * a) = m->stop_done;
    m->stop_done = NULL;
    if (m->a)
        done(m->a);
}

static void op_begin(struct mx *m)
{
    m->refs++;
    m->ops++;
}

static void op_end(struct mx *m)
{
    m->ops--;
    maybe_stop_done(m);
    mx_unref(m);
}

static void set_state(struct mx *m, const char *st)
{
    if (m->a && !m->stopping)
        m->core->set_state(m->a, st);
}

/* ---------------------------------------------------------------------------------------- */
/* HTTP calls */

typedef void (*call_cb)(struct mx *m, int err, int status, json_t *body,
                        const fb_http_response_t *resp, void *arg);

struct call {
    struct mx *m;
    call_cb cb;
    void *arg;
    bool poll; /* the sync long-poll: not counted in ops */
    bool auth; /* a login or refresh: a 401 does not start a recovery */
};

static void auth_recover(struct mx *m, bool soft);

static const char *errcode(json_t *body)
{
    return json_string_value(json_object_get(body, "errcode"));
}

static void on_call(const fb_http_response_t *resp, void *arg)
{
    struct call *c = arg;
    struct mx *m = c->m;
    json_t *body = NULL;
    if (resp->body_len > 0) {
        json_error_t e;
        body = json_loadb(resp->body, resp->body_len, 0, &e);
    }
    int err = resp->error;
    if (!err && (resp->status < 200 || resp->status >= 300))
        err = FB_EHTTP;
    if (resp->status == 401 && !c->auth && m->mode == MODE_BOT && !m->stopping && m->a) {
        const char *ec = errcode(body);
        if (ec && strcmp(ec, "M_UNKNOWN_TOKEN") == 0)
            auth_recover(m, json_is_true(json_object_get(body, "soft_logout")));
    }
    if (c->cb)
        c->cb(m, err, resp->status, body, resp, c->arg);
    json_decref(body);
    bool poll = c->poll;
    if (m->poll_call == c)
        m->poll_call = NULL;
    fb_free(c);
    if (poll)
        mx_unref(m);
    else
        op_end(m);
}

/*
 * Starts `method` on `path` (absolute path from the server root, already escaped) with the JSON
 * `body` (borrowed, may be NULL). `retry` NULL: the client's policy. Returns 0 (cb called once,
 * later) or an error (cb never called).
 */
static int mx_call_full(struct mx *m, const char *method, const char *path, const json_t *body,
                        unsigned timeout_ms, const fb_retry_policy_t *retry, bool idempotent,
                        bool poll, bool auth, call_cb cb, void *arg)
{
    char *url = fb_asprintf("%s%s", m->o->homeserver, path);
    char *authz = NULL;
    const char *headers[3] = {"Content-Type: application/json", NULL, NULL};
    if (m->token && !auth) {
        authz = fb_asprintf("Authorization: Bearer %s", m->token);
        headers[1] = authz;
    }
    char *data = body ? json_dumps(body, JSON_COMPACT) : NULL;
    fb_http_request_t req = {.method = method,
                             .url = url,
                             .headers = headers,
                             .body = data,
                             .body_len = data ? strlen(data) : 0,
                             .timeout_ms = timeout_ms,
                             .retry = retry,
                             .idempotent = idempotent};
    struct call *c = fb_calloc(1, sizeof(*c));
    c->m = m;
    c->cb = cb;
    c->arg = arg;
    c->poll = poll;
    c->auth = auth;
    int rc = fb_http_client_request(m->core->client, &req, on_call, c);
    if (data) {
        explicit_bzero(data, strlen(data)); /* a login body holds the password */
        free(data);                         /* fb-lint: allow free (jansson's allocation) */
    }
    if (authz)
        wipe_free(&authz);
    fb_free(url);
    if (rc) {
        fb_free(c);
        return rc;
    }
    if (poll) {
        m->refs++;
        m->poll_call = c;
    } else {
        op_begin(m);
    }
    return 0;
}

static int mx_call(struct mx *m, const char *method, const char *path, const json_t *body,
                   call_cb cb, void *arg)
{
    return mx_call_full(m, method, path, body, 0, NULL, true, false, false, cb, arg);
}

/* Fire and forget (typing, receipts): failures are logged at debug. */
static void on_best_effort(struct mx *m, int err, int status, json_t *body,
                           const fb_http_response_t *resp, void *arg)
{
    (void)m, (void)body, (void)arg;
    if (err)
        FB_DEBUG(MATRIX, "%s best-effort request failed: %s (HTTP %d)", resp->tag, fb_err_name(err),
                 status);
}

static const fb_retry_policy_t no_retry = {.delays_ms = {1000}, .n_delays = 1, .max_attempts = 1};

static void best_effort(struct mx *m, const char *method, const char *path, const json_t *body)
{
    (void)mx_call_full(m, method, path, body, 0, &no_retry, true, false, false, on_best_effort,
                       NULL);
}

static char *room_path(const char *room, const char *fmt_tail)
{
    char *r = fb_mx_path_escape(room);
    char *p = fb_asprintf(CLIENT_PATH "/rooms/%s%s", r, fmt_tail);
    fb_free(r);
    return p;
}

static void typing(struct mx *m, const char *room, bool on)
{
    if (!m->o->typing || !m->token)
        return;
    char *u = fb_mx_path_escape(m->o->user_id);
    char *tail = fb_asprintf("/typing/%s", u);
    char *path = room_path(room, tail);
    json_t *b = on ? json_pack("{s:b, s:i}", "typing", 1, "timeout", TYPING_TIMEOUT_MS)
                   : json_pack("{s:b}", "typing", 0);
    best_effort(m, "PUT", path, b);
    json_decref(b);
    fb_free(path);
    fb_free(tail);
    fb_free(u);
}

static void receipt(struct mx *m, const char *room, const char *event_id)
{
    if (!m->o->read_receipts || !m->token)
        return;
    char *e = fb_mx_path_escape(event_id);
    char *tail = fb_asprintf("/receipt/m.read/%s", e);
    char *path = room_path(room, tail);
    json_t *b = json_object();
    best_effort(m, "POST", path, b);
    json_decref(b);
    fb_free(path);
    fb_free(tail);
    fb_free(e);
}

/* ---------------------------------------------------------------------------------------- */
/* Redis */

typedef void (*rcmd_cb)(struct mx *m, int status, redisReply *reply, void *arg);

struct rcmd {
    struct mx *m;
    rcmd_cb cb;
    void *arg;
};

static void on_rcmd(fb_redis_t *r, int status, redisReply *reply, void *arg)
{
    struct rcmd *rc = arg;
    (void)r;
    if (status == 0 && reply && reply->type == REDIS_REPLY_ERROR) {
        FB_WARN(MATRIX, "Redis error: %s", reply->str);
        status = FB_EIO;
    }
    if (rc->cb)
        rc->cb(rc->m, status, status ? NULL : reply, rc->arg);
    struct mx *m = rc->m;
    fb_free(rc);
    op_end(m);
}

static int rcmd_argv(struct mx *m, rcmd_cb cb, void *arg, int argc, const char **argv)
{
    struct rcmd *rc = fb_calloc(1, sizeof(*rc));
    rc->m = m;
    rc->cb = cb;
    rc->arg = arg;
    int s = fb_redis_command_argv(m->core->redis, FB_REDIS_RETRY, on_rcmd, rc, argc, argv, NULL);
    if (s) {
        fb_free(rc);
        return s;
    }
    op_begin(m);
    return 0;
}

static char *room_key(struct mx *m, const char *room)
{
    char *conv = fb_asprintf("matrix:%s", room);
    char *k = m->core->conv_key(m->core, conv, "mxroom");
    fb_free(conv);
    return k;
}

/* ---------------------------------------------------------------------------------------- */
/* The encrypted-room notice */

static void on_notice_marked(struct mx *m, int status, redisReply *reply, void *arg)
{
    (void)m, (void)reply, (void)arg;
    if (status)
        FB_INFO(MATRIX, "encrypted notice sent but not recorded (%s)", fb_err_name(status));
}

static void on_notice_sent(struct mx *m, int err, int status, json_t *body,
                           const fb_http_response_t *resp, void *arg)
{
    char *room = arg;
    char tag[FB_MX_TAG_LEN + 1];
    fb_mx_tag(room, tag);
    (void)body, (void)resp;
    json_object_del(m->notice_inflight, room);
    if (err) {
        FB_WARN(MATRIX, "[matrix|%s] encrypted-room notice not sent: %s (HTTP %d)", tag,
                fb_err_name(err), status);
    } else {
        FB_NOTICE(MATRIX, "[matrix|%s] encrypted room: told, in clear, that the bot cannot read it",
                  tag);
        char *k = room_key(m, room);
        const char *argv[] = {"HSET", k, "notice", "1"};
        (void)rcmd_argv(m, on_notice_marked, NULL, 4, argv);
        fb_free(k);
    }
    fb_free(room);
}

static void send_notice(struct mx *m, const char *room)
{
    if (json_object_get(m->notice_inflight, room) || !m->token)
        return;
    char txn[48] = "enc.";
    fb_sha256_tag(room, 8, txn + 4);
    char *tail = fb_asprintf("/send/m.room.message/%s", txn);
    char *path = room_path(room, tail);
    json_t *content = fb_mx_message_content("m.notice", m->o->encrypted_notice, NULL, NULL);
    char *arg = fb_strdup(room);
    if (mx_call(m, "PUT", path, content, on_notice_sent, arg) == 0)
        json_object_set_new(m->notice_inflight, room, json_true());
    else
        fb_free(arg);
    json_decref(content);
    fb_free(path);
    fb_free(tail);
}

/* ---------------------------------------------------------------------------------------- */
/* The batch runner */

struct batch {
    struct mx *m;
    fb_mx_batch_t b;
    size_t next, inflight;
    bool serial, pumping, finished;
    int failed;
    void (*done)(struct batch *bt, int status);
    void *owner; /* the appservice request, or NULL */
    char *txn_key;
};

struct dctx {
    struct batch *bt;
    size_t idx;
};

static void batch_pump(struct batch *bt);

static void batch_free(struct batch *bt)
{
    struct mx *m = bt->m;
    fb_mx_batch_free(&bt->b);
    fb_free(bt->txn_key);
    fb_free(bt);
    op_end(m);
}

static const char *conv_tag(const char *conv, char out[FB_MX_TAG_LEN + 1])
{
    fb_mx_tag(conv, out);
    return out;
}

static void on_delivered(int status, void *arg)
{
    struct dctx *d = arg;
    struct batch *bt = d->bt;
    fb_mx_action_t *a = &bt->b.actions[d->idx];
    char tag[FB_MX_TAG_LEN + 1];
    if (status == 0) {
        if (a->kind == FB_MX_MESSAGE && !bt->m->stopping)
            receipt(bt->m, a->room, a->event_id);
    } else if (status == FB_EINVAL) {
        FB_WARN(MATRIX, "[matrix|%s] event refused by the router as malformed: skipped",
                conv_tag(a->conv, tag));
    } else if (!bt->failed) {
        bt->failed = status;
    }
    fb_free(d);
    bt->inflight--;
    batch_pump(bt);
}

/* Hands action `idx` to the router. Returns 0 (in flight), FB_EAGAIN to wait, or an error. */
static int deliver(struct batch *bt, size_t idx)
{
    struct mx *m = bt->m;
    fb_mx_action_t *a = &bt->b.actions[idx];
    fb_inbound_t ev = {.kind = a->kind == FB_MX_MESSAGE ? FB_IN_MESSAGE : FB_IN_START,
                       .conv = a->conv,
                       .sender = a->sender,
                       .sender_name = a->sender_name,
                       .sender_gone = a->sender_gone,
                       .event_id = a->event_id,
                       .text = a->text,
                       .ts_ms = a->ts_ms};
    if (!m->a || m->stopping)
        return FB_ECANCELED;
    struct dctx *d = fb_calloc(1, sizeof(*d));
    d->bt = bt;
    d->idx = idx;
    int rc = m->core->deliver(m->a, &ev, on_delivered, d);
    if (rc) {
        fb_free(d);
        return rc;
    }
    if (a->kind == FB_MX_MESSAGE)
        typing(m, a->room, true);
    bt->inflight++;
    return 0;
}

static void step_done(struct batch *bt, int status)
{
    bt->serial = false;
    if (status && !bt->failed)
        bt->failed = status;
    batch_pump(bt);
}

/* Transient (the platform must send the batch again) or final (logged, the batch goes on)? */
static int classify(int err, int status)
{
    if (!err)
        return 0;
    if (err == FB_EHTTP && status >= 400 && status < 500 && status != 429)
        return 0; /* refused for good: nothing to retry */
    return err == FB_ECANCELED ? FB_ECANCELED : FB_EAGAIN;
}

static void on_joined_check(struct mx *m, int status, redisReply *reply, void *arg)
{
    struct batch *bt = arg;
    size_t idx = bt->next - 1;
    char tag[FB_MX_TAG_LEN + 1];
    if (status) {
        step_done(bt, FB_EAGAIN);
        return;
    }
    bool encrypted = reply && reply->type == REDIS_REPLY_STRING && strcmp(reply->str, "1") == 0;
    fb_mx_action_t *a = &bt->b.actions[idx];
    m->rooms_joined++;
    if (encrypted) {
        FB_INFO(MATRIX, "[matrix|%s] joined an encrypted room: no greeting",
                conv_tag(a->room, tag));
        send_notice(m, a->room);
        step_done(bt, 0);
        return;
    }
    FB_INFO(MATRIX, "[matrix|%s] joined a room: greeting", conv_tag(a->room, tag));
    int rc = deliver(bt, idx);
    if (rc == FB_EINVAL)
        rc = 0;
    step_done(bt, rc);
}

static void on_step_redis(struct mx *m, int status, redisReply *reply, void *arg)
{
    (void)m, (void)reply;
    step_done(arg, status ? FB_EAGAIN : 0);
}

static void on_encrypted_marked(struct mx *m, int status, redisReply *reply, void *arg)
{
    struct batch *bt = arg;
    fb_mx_action_t *a = &bt->b.actions[bt->next - 1];
    if (status) {
        step_done(bt, FB_EAGAIN);
        return;
    }
    /* reply: the previous `notice` field (nil: never told). An invite's stripped state only
     * records the fact: the bot is not in the room yet, so a send would be refused (403); the
     * notice goes out when the bot's join is seen (on_joined_check). */
    if (!a->invited && !(reply && reply->type == REDIS_REPLY_STRING))
        send_notice(m, a->room);
    step_done(bt, 0);
}

static const char encrypted_script[] = "redis.call('HSET', KEYS[1], 'encrypted', '1')\n"
                                       "local ttl = tonumber(ARGV[1])\n"
                                       "if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end\n"
                                       "return redis.call('HGET', KEYS[1], 'notice')\n";

static const char hset_ttl_script[] = "redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])\n"
                                      "local ttl = tonumber(ARGV[1])\n"
                                      "if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end\n"
                                      "return 1\n";

static void on_invite_answered(struct mx *m, int err, int status, json_t *body,
                               const fb_http_response_t *resp, void *arg)
{
    struct batch *bt = arg;
    fb_mx_action_t *a = &bt->b.actions[bt->next - 1];
    char tag[FB_MX_TAG_LEN + 1];
    conv_tag(a->room, tag);
    (void)resp;
    int rc = classify(err, status);
    if (err && !rc)
        FB_WARN(MATRIX, "[matrix|%s] invite: the server refused (HTTP %d %s): dropped", tag, status,
                errcode(body) ? errcode(body) : "");
    if (rc) {
        FB_INFO(MATRIX, "[matrix|%s] invite not answered yet (%s): the batch will be retried", tag,
                fb_err_name(err));
        step_done(bt, rc);
        return;
    }
    if (!err && a->direct) {
        char *k = room_key(m, a->room);
        const char *argv[] = {"EVAL", hset_ttl_script, "1", k, m->ttl_ms, "direct", "1"};
        int s = rcmd_argv(m, on_step_redis, bt, 7, argv);
        fb_free(k);
        if (s == 0)
            return;
    }
    step_done(bt, 0);
}

static void on_members(struct mx *m, int err, int status, json_t *body,
                       const fb_http_response_t *resp, void *arg)
{
    char *room = arg;
    char tag[FB_MX_TAG_LEN + 1];
    conv_tag(room, tag);
    (void)resp;
    json_t *joined = json_object_get(body, "joined");
    if (!err && json_is_object(joined) && json_object_size(joined) <= 1 && !m->stopping) {
        FB_INFO(MATRIX, "[matrix|%s] the bot is alone in the room: leaving", tag);
        char *path = room_path(room, "/leave");
        json_t *b = json_object();
        best_effort(m, "POST", path, b);
        json_decref(b);
        fb_free(path);
        char *k = room_key(m, room);
        const char *argv[] = {"DEL", k};
        (void)rcmd_argv(m, NULL, NULL, 2, argv);
        fb_free(k);
    } else if (err) {
        FB_DEBUG(MATRIX, "[matrix|%s] members not read: %s (HTTP %d)", tag, fb_err_name(err),
                 status);
    }
    fb_free(room);
}

/* --- thread senders: their display name (advisors' labels) and whether they are still members ---
 */

#define NAMES_MAX      1000               /* entries kept; the cache is emptied beyond */
#define NAMES_FRESH_MS (10LL * 60 * 1000) /* a name is read again after this */
#define NAME_MAX_BYTES 255

static char *name_key(const fb_mx_action_t *a)
{
    return fb_asprintf("%s %s", a->room, a->sender);
}

/* The cached name of `a`'s sender, when fresh: true and a->sender_name set (NULL: none). */
static bool name_cached(struct mx *m, fb_mx_action_t *a)
{
    char *k = name_key(a);
    json_t *v = json_object_get(m->names, k);
    fb_free(k);
    if (!v || fb_wall_ms() - (int64_t)json_integer_value(json_array_get(v, 1)) > NAMES_FRESH_MS)
        return false;
    const char *n = json_string_value(json_array_get(v, 0));
    a->sender_name = n && *n ? fb_strdup(n) : NULL;
    a->sender_gone = !json_is_true(json_array_get(v, 2));
    return true;
}

static void on_name(struct mx *m, int err, int status, json_t *body, const fb_http_response_t *resp,
                    void *arg)
{
    struct batch *bt = arg;
    (void)resp;
    fb_mx_action_t *a = &bt->b.actions[bt->next];
    json_t *dn = json_object_get(body, "displayname");
    const char *n = json_is_string(dn) ? json_string_value(dn) : NULL;
    if (n && (strlen(n) > NAME_MAX_BYTES || !*n))
        n = NULL;
    const char *ms = json_string_value(json_object_get(body, "membership"));
    /* 404: no member event at all; otherwise only "join" is a member now */
    bool known = !err || status == 404;
    bool member = !err && ms && strcmp(ms, "join") == 0;
    if (known) {
        if (json_object_size(m->names) >= NAMES_MAX)
            json_object_clear(m->names);
        char *k = name_key(a);
        json_object_set_new(m->names, k,
                            json_pack("[s, I, b]", n ? n : "", (json_int_t)fb_wall_ms(), member));
        fb_free(k);
    }
    a->sender_name = n ? fb_strdup(n) : NULL;
    a->sender_gone = known && !member;
    /* without a name the label is the user id's localpart; a stop sends the batch again */
    step_done(bt, err == FB_ECANCELED ? FB_ECANCELED : 0);
}

/* Looks up the display name of the sender of thread message `a` (the batch's next action).
 * Returns true when a request is in flight (the batch waits for on_name()). */
static bool name_fetch(struct batch *bt, fb_mx_action_t *a)
{
    struct mx *m = bt->m;
    a->name_tried = true;
    if (!a->sender || name_cached(m, a) || !m->token)
        return false;
    char *u = fb_mx_path_escape(a->sender);
    char *tail = fb_asprintf("/state/m.room.member/%s", u);
    char *path = room_path(a->room, tail);
    int rc = mx_call_full(m, "GET", path, NULL, 0, &no_retry, true, false, false, on_name, bt);
    fb_free(path);
    fb_free(tail);
    fb_free(u);
    if (rc)
        return false;
    bt->serial = true;
    return true;
}

/* Starts the serial step of action `a`. Returns true when it is in flight (serial set). */
static int gap_start(struct batch *bt, const fb_mx_action_t *a);

static bool start_step(struct batch *bt, fb_mx_action_t *a)
{
    struct mx *m = bt->m;
    char tag[FB_MX_TAG_LEN + 1];
    conv_tag(a->room, tag);
    char *k = room_key(m, a->room);
    int rc = 0;
    bool async = true;
    switch (a->kind) {
    case FB_MX_JOINED: {
        const char *argv[] = {"HGET", k, "encrypted"};
        rc = rcmd_argv(m, on_joined_check, bt, 3, argv);
        break;
    }
    case FB_MX_INVITE: {
        bool ok = a->sender && fb_mx_invite_allowed((const char *const *)m->o->allowed_servers,
                                                    (const char *const *)m->o->allowed_users,
                                                    m->o->user_id, a->sender);
        json_t *b;
        char *path;
        if (ok) {
            char *r = fb_mx_path_escape(a->room);
            path = fb_asprintf(CLIENT_PATH "/join/%s", r);
            fb_free(r);
            b = json_object();
            FB_INFO(MATRIX, "[matrix|%s] invited%s: joining", tag, a->direct ? " (direct)" : "");
        } else {
            path = room_path(a->room, "/leave");
            b = json_pack("{s:s}", "reason", REFUSE_REASON);
            FB_NOTICE(MATRIX, "[matrix|%s] invite from a server or user not allowed: refused", tag);
        }
        rc = mx_call(m, "POST", path, b, on_invite_answered, bt);
        json_decref(b);
        fb_free(path);
        break;
    }
    case FB_MX_ENCRYPTED: {
        const char *argv[] = {"EVAL", encrypted_script, "1", k, m->ttl_ms};
        rc = rcmd_argv(m, on_encrypted_marked, bt, 5, argv);
        break;
    }
    case FB_MX_RULE: {
        FB_DEBUG(MATRIX, "[matrix|%s] access rule %s", tag, a->text);
        const char *argv[] = {"EVAL", hset_ttl_script, "1", k, m->ttl_ms, "rule", a->text};
        rc = rcmd_argv(m, on_step_redis, bt, 7, argv);
        break;
    }
    case FB_MX_LEFT: {
        FB_INFO(MATRIX, "[matrix|%s] the bot is no longer in the room", tag);
        const char *argv[] = {"DEL", k};
        rc = rcmd_argv(m, on_step_redis, bt, 2, argv);
        break;
    }
    case FB_MX_MEMBER_LEFT:
        async = false;
        if (a->sender) { /* forget what was known of them (thread senders' membership) */
            char *nk = name_key(a);
            json_object_del(m->names, nk);
            fb_free(nk);
        }
        if (m->o->leave_when_alone && m->token) {
            char *path = room_path(a->room, "/joined_members");
            char *arg = fb_strdup(a->room);
            if (mx_call(m, "GET", path, NULL, on_members, arg))
                fb_free(arg);
            fb_free(path);
        }
        break;
    case FB_MX_GAP:
        if (!a->text) {
            async = false;
            FB_INFO(MATRIX, "[matrix|%s] gap in room without prev_batch: older events not answered",
                    tag);
            break;
        }
        rc = gap_start(bt, a);
        break;
    case FB_MX_MESSAGE:
        async = false;
        break;
    }
    fb_free(k);
    if (async && rc) {
        if (!bt->failed)
            bt->failed = rc == FB_ECLOSING ? FB_ECANCELED : FB_EAGAIN;
        return false;
    }
    if (async)
        bt->serial = true;
    return async;
}

static void batch_pump(struct batch *bt)
{
    if (bt->pumping || bt->finished)
        return;
    bt->pumping = true;
    while (!bt->failed && !bt->serial && bt->next < bt->b.n) {
        fb_mx_action_t *a = &bt->b.actions[bt->next];
        if (a->kind == FB_MX_MESSAGE) {
            if (a->thread_root && !a->name_tried && name_fetch(bt, a))
                break;
            int rc = deliver(bt, bt->next);
            if (rc == FB_EAGAIN && bt->inflight > 0)
                break; /* the conversation's queue is full: wait for an answer */
            if (rc == FB_EINVAL) {
                char tag[FB_MX_TAG_LEN + 1];
                FB_WARN(MATRIX, "[matrix|%s] message refused by the router (malformed): skipped",
                        conv_tag(a->conv, tag));
                rc = 0;
            }
            if (rc) {
                bt->failed = rc;
                break;
            }
            bt->next++;
            continue;
        }
        bt->next++;
        (void)start_step(bt, a);
    }
    bt->pumping = false;
    if ((bt->failed || bt->next == bt->b.n) && !bt->serial && bt->inflight == 0) {
        bt->finished = true;
        bt->done(bt, bt->failed);
    }
}

static struct batch *batch_new(struct mx *m)
{
    struct batch *bt = fb_calloc(1, sizeof(*bt));
    bt->m = m;
    op_begin(m);
    return bt;
}

static fb_mx_parse_opts_t parse_opts(struct mx *m, bool history)
{
    fb_mx_parse_opts_t po = {.bot = m->o->user_id, .ignore_users = m->ignore, .history = history};
    return po;
}

static void log_parse(struct mx *m, const fb_mx_batch_t *b, const char *what)
{
    (void)m;
    if (b->skipped || b->repaired)
        FB_WARN(MATRIX, "%s: %zu malformed event(s) skipped, %zu invalid byte sequence(s) replaced",
                what, b->skipped, b->repaired);
    FB_DEBUG(MATRIX, "%s: %zu action(s), %zu event(s) ignored", what, b->n, b->ignored);
}

/* ---------------------------------------------------------------------------------------- */
/* Bot mode: credentials, filter, the sync loop */

static void sync_schedule(struct mx *m, uint64_t delay_ms);
static void sync_poll(struct mx *m);
static void bot_auth(struct mx *m);
static void after_auth(struct mx *m);

static const char *const timeline_types[] = {"m.room.message",
                                             "m.room.member",
                                             "m.room.encryption",
                                             "m.room.encrypted",
                                             "im.vector.room.access_rules",
                                             "m.room.create"};
static const char *const state_types[] = {"m.room.member", "m.room.encryption",
                                          "im.vector.room.access_rules", "m.room.create"};

static json_t *filter_json(const fb_matrix_opts_t *o, unsigned limit)
{
    json_t *tl = json_array(), *st = json_array();
    for (size_t i = 0; i < FB_ARRAY_SIZE(timeline_types); i++)
        json_array_append_new(tl, json_string(timeline_types[i]));
    for (size_t i = 0; i < FB_ARRAY_SIZE(state_types); i++)
        json_array_append_new(st, json_string(state_types[i]));
    (void)o;
    return json_pack("{s:{s:[]}, s:{s:[]}, s:{s:{s:o, s:b}, s:{s:o, s:i, s:b}, s:{s:[]}, "
                     "s:{s:[]}}}",
                     "presence", "types", "account_data", "types", "room", "state", "types", st,
                     "lazy_load_members", 1, "timeline", "types", tl, "limit", (int)limit,
                     "lazy_load_members", 1, "ephemeral", "types", "account_data", "types");
}

/* --- gaps: a `limited` timeline is back-filled with /messages --- */

/*
 * A GAP action (bot mode) pages backwards from the timeline's prev_batch with
 * GET /rooms/{room}/messages?dir=b, with the filter's timeline types, until the room's last event
 * handed to the router (`last_event` of the room's Redis hash, written with next_batch) or
 * GAP_MAX_EVENTS; the events found are parsed like a transaction and inserted, in chronological
 * order, right after the GAP action, i.e. before the batch's timeline events of that room.
 */
#define GAP_MAX_EVENTS 500
#define GAP_PAGE       100

struct gapfill {
    struct batch *bt;
    size_t at; /* where the missed actions go: right after the GAP action */
    char *room;
    char *last;  /* the last event handed to the router in this room */
    json_t *acc; /* the events found, newest first */
    unsigned pages;
    bool found, truncated;
};

static void gap_free(struct gapfill *g)
{
    json_decref(g->acc);
    fb_free(g->room);
    fb_free(g->last);
    fb_free(g);
}

static void gap_finish(struct gapfill *g)
{
    struct batch *bt = g->bt;
    struct mx *m = bt->m;
    char tag[FB_MX_TAG_LEN + 1];
    conv_tag(g->room, tag);
    size_t n = json_array_size(g->acc);
    json_t *events = json_array();
    for (size_t i = n; i > 0; i--)
        json_array_append(events, json_array_get(g->acc, i - 1));
    json_t *doc = json_pack("{s:o}", "events", events);
    char *txt = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    fb_mx_batch_t extra = {0};
    fb_mx_parse_opts_t po = {.bot = m->o->user_id, .ignore_users = m->ignore, .history = true};
    int rc = txt ? fb_mx_parse_txn(txt, strlen(txt), &po, &extra) : FB_EPROTO;
    free(txt); /* fb-lint: allow free (jansson's allocation) */
    if (rc == 0 && extra.n > 0) {
        fb_mx_batch_t *b = &bt->b;
        if (b->n + extra.n > b->cap) {
            b->cap = b->n + extra.n;
            b->actions = fb_realloc(b->actions, b->cap * sizeof(*b->actions));
        }
        memmove(&b->actions[g->at + extra.n], &b->actions[g->at],
                (b->n - g->at) * sizeof(*b->actions));
        memcpy(&b->actions[g->at], extra.actions, extra.n * sizeof(*extra.actions));
        b->n += extra.n;
        fb_free(extra.actions);
        extra.actions = NULL;
        extra.n = extra.cap = 0;
    }
    if (g->found)
        FB_INFO(MATRIX,
                "[matrix|%s] gap in room: %zu missed event(s) fetched (%u page(s)), "
                "handed before the new ones",
                tag, n, g->pages);
    else
        FB_WARN(
            MATRIX,
            "[matrix|%s] gap in room: %zu missed event(s) fetched, %s: older events not answered",
            tag, n, g->truncated ? "bound reached" : "the last handled event was not found");
    fb_mx_batch_free(&extra);
    gap_free(g);
    step_done(bt, 0);
}

static int gap_page(struct gapfill *g, const char *from);

static void on_gap_page(struct mx *m, int err, int status, json_t *body,
                        const fb_http_response_t *resp, void *arg)
{
    (void)resp;
    struct gapfill *g = arg;
    struct batch *bt = g->bt;
    char tag[FB_MX_TAG_LEN + 1];
    conv_tag(g->room, tag);
    int rc = classify(err, status);
    if (rc || m->stopping || !m->a) {
        FB_INFO(MATRIX,
                "[matrix|%s] gap: /messages failed (%s, HTTP %d): the batch will be retried", tag,
                fb_err_name(err), status);
        gap_free(g);
        step_done(bt, rc ? rc : FB_ECANCELED);
        return;
    }
    json_t *chunk = json_object_get(body, "chunk");
    if (err || !json_is_array(chunk)) {
        FB_WARN(MATRIX, "[matrix|%s] gap: /messages refused or unreadable (HTTP %d)", tag, status);
        gap_finish(g);
        return;
    }
    g->pages++;
    size_t i;
    json_t *ev;
    json_array_foreach(chunk, i, ev)
    {
        const char *id = json_string_value(json_object_get(ev, "event_id"));
        if (id && strcmp(id, g->last) == 0) {
            g->found = true;
            break;
        }
        if (json_array_size(g->acc) >= GAP_MAX_EVENTS) {
            g->truncated = true;
            break;
        }
        json_array_append(g->acc, ev);
    }
    const char *end = json_string_value(json_object_get(body, "end"));
    if (g->found || g->truncated || !end || json_array_size(chunk) == 0) {
        gap_finish(g);
        return;
    }
    if (gap_page(g, end)) {
        gap_free(g);
        step_done(bt, FB_EAGAIN);
    }
}

static int gap_page(struct gapfill *g, const char *from)
{
    struct mx *m = g->bt->m;
    json_t *types = json_array();
    for (size_t i = 0; i < FB_ARRAY_SIZE(timeline_types); i++)
        json_array_append_new(types, json_string(timeline_types[i]));
    json_t *f = json_pack("{s:o}", "types", types);
    char *fs = json_dumps(f, JSON_COMPACT);
    json_decref(f);
    char *fe = fb_mx_path_escape(fs ? fs : "{}");
    free(fs); /* fb-lint: allow free (jansson's allocation) */
    char *fr = fb_mx_path_escape(from);
    char *tail = fb_asprintf("/messages?dir=b&limit=%d&from=%s&filter=%s", GAP_PAGE, fr, fe);
    char *path = room_path(g->room, tail);
    int rc = mx_call(m, "GET", path, NULL, on_gap_page, g);
    fb_free(path);
    fb_free(tail);
    fb_free(fr);
    fb_free(fe);
    return rc;
}

struct gapstart {
    struct gapfill *g;
    char *from;
};

static void on_gap_last(struct mx *m, int status, redisReply *reply, void *arg)
{
    struct gapstart *gs = arg;
    struct gapfill *g = gs->g;
    char *from = gs->from;
    fb_free(gs);
    struct batch *bt = g->bt;
    char tag[FB_MX_TAG_LEN + 1];
    conv_tag(g->room, tag);
    if (status || m->stopping || !m->a) {
        fb_free(from);
        gap_free(g);
        step_done(bt, status ? FB_EAGAIN : FB_ECANCELED);
        return;
    }
    if (!(reply && reply->type == REDIS_REPLY_STRING)) {
        FB_INFO(MATRIX, "[matrix|%s] gap in a room with nothing handled yet: nothing to catch up",
                tag);
        fb_free(from);
        gap_free(g);
        step_done(bt, 0);
        return;
    }
    g->last = fb_strdup(reply->str);
    int rc = gap_page(g, from);
    fb_free(from);
    if (rc) {
        gap_free(g);
        step_done(bt, rc == FB_ECLOSING ? FB_ECANCELED : FB_EAGAIN);
    }
}

static int gap_start(struct batch *bt, const fb_mx_action_t *a)
{
    struct mx *m = bt->m;
    struct gapfill *g = fb_calloc(1, sizeof(*g));
    g->bt = bt;
    g->at = bt->next;
    g->room = fb_strdup(a->room);
    g->acc = json_array();
    struct gapstart *gs = fb_calloc(1, sizeof(*gs));
    gs->g = g;
    gs->from = fb_strdup(a->text);
    char *k = room_key(m, a->room);
    const char *argv[] = {"HGET", k, "last_event"};
    int rc = rcmd_argv(m, on_gap_last, gs, 3, argv);
    fb_free(k);
    if (rc) {
        fb_free(gs->from);
        fb_free(gs);
        gap_free(g);
    }
    return rc;
}

static void sync_fail(struct mx *m, const char *why, int64_t retry_after_ms)
{
    m->fails++;
    m->catch_up = true;
    m->sy = SY_BACKOFF;
    if (m->fails >= FAILS_DEGRADED)
        set_state(m, m->recovering && !m->password && !m->refresh_token ? "degraded: logged out"
                                                                        : "degraded: sync failing");
    unsigned d = fb_retry_delay_ms(&m->o->sync_retry, m->fails - 1, (uint32_t)rand());
    if (retry_after_ms > (int64_t)d)
        d = (unsigned)retry_after_ms;
    FB_INFO(MATRIX, "sync: %s; next attempt in %u ms", why, d);
    sync_schedule(m, d);
}

static void on_timer(uv_timer_t *t)
{
    struct mx *m = t->data;
    if (m->stopping || !m->a)
        return;
    if (!m->token || m->recovering) {
        bot_auth(m);
        return;
    }
    after_auth(m); /* whoami and the filter if still missing, then the poll */
}

static void sync_schedule(struct mx *m, uint64_t delay_ms)
{
    if (m->stopping || !m->timer_init)
        return;
    uv_timer_start(&m->timer, on_timer, delay_ms, 0);
}

/* --- storing credentials and sync state --- */

static char what_session[] = "the Matrix session";
static char what_filter[] = "the sync filter";

static void on_stored(struct mx *m, int status, redisReply *reply, void *arg)
{
    (void)reply, (void)m;
    const char *what = arg;
    if (status)
        FB_WARN(MATRIX, "%s not stored in Redis (%s)", what, fb_err_name(status));
}

static void store_auth(struct mx *m)
{
    if (m->token_given)
        return;
    char exp[24];
    snprintf(exp, sizeof(exp), "%lld", (long long)m->expires_at);
    const char *argv[] = {"HSET",          m->k_auth,
                          "user_id",       m->o->user_id,
                          "device_id",     m->device_id ? m->device_id : "",
                          "access_token",  m->token,
                          "refresh_token", m->refresh_token ? m->refresh_token : "",
                          "expires_at",    exp};
    (void)rcmd_argv(m, on_stored, what_session, 12, argv);
}

static void take_tokens(struct mx *m, json_t *body)
{
    const char *at = json_string_value(json_object_get(body, "access_token"));
    const char *rt = json_string_value(json_object_get(body, "refresh_token"));
    const char *dev = json_string_value(json_object_get(body, "device_id"));
    json_t *exp = json_object_get(body, "expires_in_ms");
    wipe_free(&m->token);
    m->token = fb_strdup(at);
    if (rt) {
        wipe_free(&m->refresh_token);
        m->refresh_token = fb_strdup(rt);
    }
    if (dev) {
        fb_free(m->device_id);
        m->device_id = fb_strdup(dev);
    }
    m->expires_at = json_is_integer(exp) ? fb_wall_ms() + (int64_t)json_integer_value(exp) : 0;
    m->lifetime_ms = json_is_integer(exp) ? (int64_t)json_integer_value(exp) : 0;
}

/* --- login, refresh, whoami --- */

static void on_login(struct mx *m, int err, int status, json_t *body,
                     const fb_http_response_t *resp, void *arg)
{
    (void)resp, (void)arg;
    if (m->stopping || !m->a)
        return;
    if (err || !json_is_string(json_object_get(body, "access_token"))) {
        if (status == 403 || status == 400)
            FB_ERR(MATRIX, "login refused (HTTP %d %s): check matrix.user_id and the password",
                   status, errcode(body) ? errcode(body) : "");
        sync_fail(m, "login failed", 0);
        return;
    }
    take_tokens(m, body);
    FB_NOTICE(MATRIX, "logged in (device %s)", m->device_id ? m->device_id : "?");
    m->recovering = false;
    store_auth(m);
    after_auth(m);
}

static void login(struct mx *m)
{
    if (!m->password) {
        m->sy = SY_AUTH;
        sync_fail(m, "logged out and no password to log in again", 0);
        return;
    }
    json_t *b = json_pack(
        "{s:s, s:{s:s, s:s}, s:s, s:s, s:b}", "type", "m.login.password", "identifier", "type",
        "m.id.user", "user", m->o->user_id, "password", m->password, "initial_device_display_name",
        m->o->device_display_name ? m->o->device_display_name : "frichebot", "refresh_token", 1);
    if (m->device_id && *m->device_id)
        json_object_set_new(b, "device_id", json_string(m->device_id));
    m->sy = SY_AUTH;
    int rc = mx_call_full(m, "POST", CLIENT_PATH "/login", b, 0, NULL, false, false, true, on_login,
                          NULL);
    json_t *pw = json_object_get(b, "password");
    if (pw)
        json_object_del(b, "password");
    json_decref(b);
    if (rc)
        sync_fail(m, "cannot start the login request", 0);
}

static void on_refresh(struct mx *m, int err, int status, json_t *body,
                       const fb_http_response_t *resp, void *arg)
{
    (void)resp, (void)arg;
    if (m->stopping || !m->a)
        return;
    if (err || !json_is_string(json_object_get(body, "access_token"))) {
        FB_INFO(MATRIX, "token refresh failed (HTTP %d): logging in again", status);
        wipe_free(&m->refresh_token);
        if (classify(err, status) == 0 && err)
            login(m);
        else
            sync_fail(m, "token refresh failed", 0);
        return;
    }
    take_tokens(m, body);
    m->recovering = false;
    FB_INFO(MATRIX, "access token refreshed");
    store_auth(m);
    after_auth(m);
}

static void refresh(struct mx *m)
{
    json_t *b = json_pack("{s:s}", "refresh_token", m->refresh_token);
    m->sy = SY_AUTH;
    int rc = mx_call_full(m, "POST", CLIENT_PATH "/refresh", b, 0, NULL, false, false, true,
                          on_refresh, NULL);
    json_decref(b);
    if (rc)
        sync_fail(m, "cannot start the refresh request", 0);
}

static void auth_recover(struct mx *m, bool soft)
{
    if (m->recovering)
        return;
    m->recovering = true;
    FB_NOTICE(MATRIX, "access token refused (%s logout)", soft ? "soft" : "hard");
    if (!soft) {
        fb_free(m->device_id); /* a hard logout removed the device */
        m->device_id = NULL;
    }
    if (m->token_given && !m->password) {
        wipe_free(&m->token);
        return; /* nothing to do but retry: the state says so */
    }
    m->token_given = false;
    if (m->sy != SY_POLL && m->sy != SY_HANDLE)
        sync_schedule(m, 0);
}

static void bot_auth(struct mx *m)
{
    if (m->recovering && m->refresh_token && *m->refresh_token) {
        refresh(m);
        return;
    }
    if (!m->token || m->recovering) {
        login(m);
        return;
    }
    after_auth(m);
}

static void on_whoami(struct mx *m, int err, int status, json_t *body,
                      const fb_http_response_t *resp, void *arg)
{
    (void)resp, (void)arg;
    if (m->stopping || !m->a)
        return;
    if (err) {
        if (status != 401)
            sync_fail(m, "whoami failed", 0);
        else
            sync_fail(m, "the given access token is refused", 0);
        return;
    }
    const char *dev = json_string_value(json_object_get(body, "device_id"));
    const char *uid = json_string_value(json_object_get(body, "user_id"));
    if (uid && strcmp(uid, m->o->user_id) != 0)
        FB_WARN(MATRIX, "the access token belongs to another user than matrix.user_id");
    fb_free(m->device_id);
    m->device_id = fb_strdup(dev);
    after_auth(m);
}

/* --- filter --- */

static void on_filter_stored(struct mx *m, int err, int status, json_t *body,
                             const fb_http_response_t *resp, void *arg)
{
    (void)resp, (void)arg;
    if (m->stopping || !m->a)
        return;
    const char *id = json_string_value(json_object_get(body, "filter_id"));
    if (err || !id) {
        sync_fail(m, "filter upload failed", 0);
        (void)status;
        return;
    }
    fb_free(m->filter_id);
    m->filter_id = fb_strdup(id);
    const char *argv[] = {"HSET", m->k_sync, "filter_id", id, "filter_hash", m->filter_hash};
    (void)rcmd_argv(m, on_stored, what_filter, 6, argv);
    sync_poll(m);
}

static void after_auth(struct mx *m)
{
    if (m->stopping || !m->a)
        return;
    if (!m->device_id && m->token_given) {
        m->sy = SY_AUTH;
        if (mx_call(m, "GET", CLIENT_PATH "/account/whoami", NULL, on_whoami, NULL))
            sync_fail(m, "cannot start whoami", 0);
        if (!m->device_id)
            m->device_id = fb_strdup(""); /* asked once */
        return;
    }
    if (!m->filter_id) {
        char *u = fb_mx_path_escape(m->o->user_id);
        char *path = fb_asprintf(CLIENT_PATH "/user/%s/filter", u);
        json_t *f = json_loads(m->filter_json, 0, NULL);
        m->sy = SY_AUTH;
        if (mx_call_full(m, "POST", path, f, 0, NULL, true, false, false, on_filter_stored, NULL))
            sync_fail(m, "cannot start the filter upload", 0);
        json_decref(f);
        fb_free(path);
        fb_free(u);
        return;
    }
    sync_poll(m);
}

/* --- the loop --- */

struct sync_run {
    char *next_batch;
    bool first;
};

static void on_next_batch_stored(struct mx *m, int status, redisReply *reply, void *arg)
{
    (void)reply;
    char *nb = arg;
    if (m->stopping || !m->a) {
        fb_free(nb);
        return;
    }
    if (status) {
        fb_free(nb);
        sync_fail(m, "next_batch not stored in Redis", 0);
        return;
    }
    fb_free(m->next_batch);
    m->next_batch = nb;
    m->fails = 0;
    m->last_sync_ms = fb_wall_ms();
    if (m->catch_up)
        FB_INFO(MATRIX, "sync: caught up; long-polling (timeout %u ms)", m->o->sync_timeout_ms);
    m->catch_up = false;
    set_state(m, "ok");
    sync_poll(m);
}

/* KEYS[1] matrix:sync, KEYS[2..] room hashes; ARGV[1] next_batch, ARGV[2] the rooms' TTL,
 * ARGV[3..] each room's last handed event id. */
static const char next_batch_script[] =
    "local ttl = tonumber(ARGV[2])\n"
    "for i = 2, #KEYS do\n"
    "  redis.call('HSET', KEYS[i], 'last_event', ARGV[i + 1])\n"
    "  if ttl > 0 then redis.call('PEXPIRE', KEYS[i], ttl) end\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'next_batch', ARGV[1])\n"
    "return 1\n";

static void on_sync_batch_done(struct batch *bt, int status)
{
    struct mx *m = bt->m;
    if (m->stopping || !m->a) {
        batch_free(bt);
        return;
    }
    if (status) {
        batch_free(bt);
        sync_fail(m, status == FB_ECANCELED ? "stopping" : "events not handed to the router", 0);
        return;
    }
    /* next_batch, and per room the last event handed to the router (where a gap's back-fill
     * stops), in one script: both or neither. */
    char *nb = fb_strdup(bt->b.next_batch);
    size_t nr = 0;
    const char **rooms = fb_calloc(bt->b.n + 1, sizeof(*rooms));
    const char **last = fb_calloc(bt->b.n + 1, sizeof(*last));
    for (size_t i = 0; i < bt->b.n; i++) {
        const fb_mx_action_t *a = &bt->b.actions[i];
        if ((a->kind != FB_MX_MESSAGE && a->kind != FB_MX_JOINED) || !a->event_id)
            continue;
        size_t j = 0;
        while (j < nr && strcmp(rooms[j], a->room) != 0)
            j++;
        if (j == nr)
            rooms[nr++] = a->room;
        last[j] = a->event_id;
    }
    int argc = 6 + 2 * (int)nr;
    const char **argv = fb_calloc((size_t)argc, sizeof(*argv));
    char nkeys[24];
    snprintf(nkeys, sizeof(nkeys), "%zu", nr + 1);
    argv[0] = "EVAL";
    argv[1] = next_batch_script;
    argv[2] = nkeys;
    argv[3] = m->k_sync;
    char **keys = fb_calloc(nr + 1, sizeof(*keys));
    for (size_t j = 0; j < nr; j++) {
        keys[j] = room_key(m, rooms[j]);
        argv[4 + j] = keys[j];
    }
    argv[4 + nr] = nb;
    argv[5 + nr] = m->ttl_ms;
    for (size_t j = 0; j < nr; j++)
        argv[6 + nr + j] = last[j];
    int rc = rcmd_argv(m, on_next_batch_stored, nb, argc, argv);
    for (size_t j = 0; j < nr; j++)
        fb_free(keys[j]);
    fb_free(keys);
    fb_free(argv);
    fb_free(rooms);
    fb_free(last);
    batch_free(bt);
    if (rc) {
        fb_free(nb);
        sync_fail(m, "Redis refused the next_batch write", 0);
    }
}

static void on_sync(struct mx *m, int err, int status, json_t *body, const fb_http_response_t *resp,
                    void *arg)
{
    (void)body, (void)arg;
    m->polling = false;
    if (m->stopping || !m->a)
        return;
    if (err) {
        int64_t ra = 0;
        if (status == 429) {
            ra = fb_http_retry_after_ms(fb_http_response_header(resp, "Retry-After"), time(NULL));
            json_t *r = json_object_get(body, "retry_after_ms");
            if (ra < 0 && json_is_integer(r))
                ra = (int64_t)json_integer_value(r);
        }
        char why[96];
        snprintf(why, sizeof(why), "/sync failed: %s (HTTP %d)", fb_err_name(err), status);
        if (status == 401 && m->recovering) {
            m->sy = SY_AUTH;
            sync_schedule(m, 0);
            return;
        }
        sync_fail(m, why, ra);
        return;
    }
    m->sy = SY_HANDLE;
    struct batch *bt = batch_new(m);
    bt->done = on_sync_batch_done;
    fb_mx_parse_opts_t po = parse_opts(m, m->next_batch != NULL);
    int rc = fb_mx_parse_sync(resp->body, resp->body_len, &po, &bt->b);
    if (rc) {
        batch_free(bt);
        sync_fail(m, "unreadable /sync answer", 0);
        return;
    }
    log_parse(m, &bt->b, m->next_batch ? "sync" : "initial sync (history skipped)");
    batch_pump(bt);
}

static void sync_poll(struct mx *m)
{
    if (m->stopping || !m->a || m->polling)
        return;
    /* Refresh once the token is within a minute of expiring, or within half its lifetime when
     * that is shorter (a 5 s token would otherwise be refreshed before every poll). */
    int64_t margin = REFRESH_MARGIN_MS;
    if (m->lifetime_ms > 0 && m->lifetime_ms / 2 < margin)
        margin = m->lifetime_ms / 2;
    if (m->expires_at && m->refresh_token && *m->refresh_token &&
        fb_wall_ms() > m->expires_at - margin) {
        m->recovering = true;
        refresh(m);
        return;
    }
    m->sy = SY_POLL;
    fb_buf_t url;
    fb_buf_init(&url, 1u << 16);
    unsigned timeout = m->catch_up ? 0 : m->o->sync_timeout_ms;
    if (m->next_batch) {
        char *since = fb_mx_path_escape(m->next_batch);
        char *fid = fb_mx_path_escape(m->filter_id);
        (void)fb_buf_printf(&url,
                            CLIENT_PATH "/sync?filter=%s&since=%s&timeout=%u&set_presence=offline",
                            fid, since, timeout);
        fb_free(since);
        fb_free(fid);
    } else {
        json_t *f = filter_json(m->o, 0);
        char *fs = json_dumps(f, JSON_COMPACT | JSON_SORT_KEYS);
        char *fe = fb_mx_path_escape(fs);
        (void)fb_buf_printf(&url, CLIENT_PATH "/sync?filter=%s&timeout=0&set_presence=offline", fe);
        free(fs); /* fb-lint: allow free (jansson's allocation) */
        fb_free(fe);
        json_decref(f);
        timeout = 0;
    }
    unsigned t = timeout + SYNC_EXTRA_MS;
    if (t > 600000)
        t = 600000;
    m->polling = true;
    int rc = mx_call_full(m, "GET", fb_buf_str(&url), NULL, t, &no_retry, true, true, false,
                          on_sync, NULL);
    fb_buf_free(&url);
    if (rc) {
        m->polling = false;
        sync_fail(m, "cannot start /sync", 0);
    }
}

/* --- start: read what Redis remembers --- */

static void on_state_loaded(struct mx *m, int status, redisReply *reply, void *arg)
{
    (void)arg;
    if (m->stopping || !m->a)
        return;
    if (status || !reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 8) {
        sync_fail(m, "cannot read the Matrix state from Redis", 0);
        m->sy = SY_IDLE;
        return;
    }
    const char *v[8];
    for (size_t i = 0; i < 8; i++)
        v[i] = reply->element[i]->type == REDIS_REPLY_STRING ? reply->element[i]->str : NULL;
    /* 0 user_id 1 device_id 2 access_token 3 refresh_token 4 expires_at, 5 next_batch
     * 6 filter_id 7 filter_hash */
    if (!m->token_given && v[0] && strcmp(v[0], m->o->user_id) == 0 && v[2] && *v[2]) {
        m->token = fb_strdup(v[2]);
        m->device_id = fb_strdup(v[1]);
        if (v[3] && *v[3])
            m->refresh_token = fb_strdup(v[3]);
        m->expires_at = v[4] ? strtoll(v[4], NULL, 10) : 0;
        FB_INFO(MATRIX, "reusing the stored session (device %s)", m->device_id);
    }
    if (v[5] && *v[5])
        m->next_batch = fb_strdup(v[5]);
    if (v[6] && v[7] && strcmp(v[7], m->filter_hash) == 0)
        m->filter_id = fb_strdup(v[6]);
    if (!m->next_batch)
        FB_NOTICE(MATRIX, "first start: history is skipped, invitations are handled");
    bot_auth(m);
}

static void bot_load(struct mx *m)
{
    m->sy = SY_AUTH;
    static const char script[] =
        "local a = redis.call('HMGET', KEYS[1], 'user_id', 'device_id', 'access_token', "
        "'refresh_token', 'expires_at')\n"
        "local s = redis.call('HMGET', KEYS[2], 'next_batch', 'filter_id', 'filter_hash')\n"
        "return {a[1], a[2], a[3], a[4], a[5], s[1], s[2], s[3]}\n";
    const char *argv[] = {"EVAL", script, "2", m->k_auth, m->k_sync};
    if (rcmd_argv(m, on_state_loaded, NULL, 5, argv))
        sync_fail(m, "Redis refused the state read", 0);
}

/* ---------------------------------------------------------------------------------------- */
/* Application-service mode */

static void as_json(fb_http_req_t *req, int status, const char *errc, const char *msg)
{
    char body[256];
    if (errc)
        snprintf(body, sizeof(body), "{\"errcode\":\"%s\",\"error\":\"%s\"}", errc, msg);
    else
        snprintf(body, sizeof(body), "{}");
    fb_http_respond(req, status, "application/json", body, strlen(body), NULL);
}

/* Checks the hs_token; answers and returns false when it is missing or wrong. */
static bool as_auth(struct mx *m, fb_http_req_t *req)
{
    char h[1024];
    int n = fb_http_req_header(req, "authorization:", h, sizeof(h));
    if (n < 7 || strncasecmp(h, "Bearer ", 7) != 0) {
        as_json(req, 401, "M_UNAUTHORIZED", "missing token");
        return false;
    }
    const char *t = h + 7;
    bool ok = fb_mx_ct_equal(t, strlen(t), m->hs_token, strlen(m->hs_token));
    explicit_bzero(h, sizeof(h));
    if (!ok) {
        FB_NOTICE(MATRIX, "%s appservice request with a wrong hs_token: refused",
                  fb_http_req_tag(req));
        as_json(req, 403, "M_FORBIDDEN", "bad token");
        return false;
    }
    return true;
}

static void on_txn_marked(struct mx *m, int status, redisReply *reply, void *arg)
{
    (void)reply;
    fb_http_req_t *req = arg;
    if (status) {
        as_json(req, 503, "M_UNKNOWN", "try again later");
        return;
    }
    m->txns++;
    m->last_txn_ms = fb_wall_ms();
    set_state(m, "ok");
    as_json(req, 200, NULL, NULL);
}

static void on_txn_batch_done(struct batch *bt, int status)
{
    struct mx *m = bt->m;
    fb_http_req_t *req = bt->owner;
    char *key = bt->txn_key;
    bt->txn_key = NULL;
    batch_free(bt);
    if (status) {
        FB_INFO(MATRIX, "%s transaction not handled (%s): the homeserver will retry",
                fb_http_req_tag(req), fb_err_name(status));
        as_json(req, 503, "M_UNKNOWN", "try again later");
    } else {
        char ttl[24];
        snprintf(ttl, sizeof(ttl), "%llu",
                 (unsigned long long)m->o->as_txn_retention_hours * 3600000ull);
        const char *argv[] = {"SET", key, "1", "PX", ttl};
        if (rcmd_argv(m, on_txn_marked, req, 5, argv))
            as_json(req, 503, "M_UNKNOWN", "try again later");
    }
    fb_free(key);
}

struct txn_ctx {
    fb_http_req_t *req;
    char *key;
};

static void on_txn_seen(struct mx *m, int status, redisReply *reply, void *arg)
{
    struct txn_ctx *tc = arg;
    fb_http_req_t *req = tc->req;
    if (status) {
        as_json(req, 503, "M_UNKNOWN", "try again later");
        fb_free(tc->key);
        fb_free(tc);
        return;
    }
    if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 1) {
        FB_INFO(MATRIX, "%s transaction replayed: acknowledged, not handled again",
                fb_http_req_tag(req));
        as_json(req, 200, NULL, NULL);
        fb_free(tc->key);
        fb_free(tc);
        return;
    }
    if (m->stopping || !m->a) {
        as_json(req, 503, "M_UNKNOWN", "shutting down");
        fb_free(tc->key);
        fb_free(tc);
        return;
    }
    size_t len = 0;
    const char *body = fb_http_req_body(req, &len);
    struct batch *bt = batch_new(m);
    bt->done = on_txn_batch_done;
    bt->owner = req;
    bt->txn_key = tc->key;
    fb_free(tc);
    fb_mx_parse_opts_t po = parse_opts(m, true);
    if (fb_mx_parse_txn(body, len, &po, &bt->b)) {
        FB_WARN(MATRIX, "%s transaction body is not {\"events\": [...]}: refused",
                fb_http_req_tag(req));
        bt->owner = NULL;
        batch_free(bt);
        as_json(req, 400, "M_BAD_JSON", "expected an object with an events array");
        return;
    }
    log_parse(m, &bt->b, fb_http_req_tag(req));
    batch_pump(bt);
}

static int on_as_txn(fb_http_req_t *req, void *arg)
{
    struct mx *m = arg;
    if (!as_auth(m, req))
        return 0;
    const char *id = fb_http_req_path(req) + strlen(AS_PREFIX "transactions/");
    if (!*id || strchr(id, '/') || strlen(id) > 255) {
        as_json(req, 404, "M_NOT_FOUND", "no such transaction path");
        return 0;
    }
    struct txn_ctx *tc = fb_calloc(1, sizeof(*tc));
    tc->req = req;
    char *k = fb_asprintf("matrix:txn:%s", id);
    tc->key = fb_asprintf("%s%s", m->core->cfg->store.key_prefix, k);
    fb_free(k);
    const char *argv[] = {"EXISTS", tc->key};
    if (rcmd_argv(m, on_txn_seen, tc, 2, argv)) {
        fb_free(tc->key);
        fb_free(tc);
        as_json(req, 503, "M_UNKNOWN", "try again later");
        return 0;
    }
    return FB_EAGAIN;
}

static int on_as_user(fb_http_req_t *req, void *arg)
{
    struct mx *m = arg;
    if (!as_auth(m, req))
        return 0;
    const char *uid = fb_http_req_path(req) + strlen(AS_PREFIX "users/");
    if (strcmp(uid, m->o->user_id) == 0)
        as_json(req, 200, NULL, NULL);
    else
        as_json(req, 404, "M_NOT_FOUND", "no such user");
    return 0;
}

static int on_as_room(fb_http_req_t *req, void *arg)
{
    struct mx *m = arg;
    if (!as_auth(m, req))
        return 0;
    as_json(req, 404, "M_NOT_FOUND", "no such room alias");
    return 0;
}

static int on_as_ping(fb_http_req_t *req, void *arg)
{
    struct mx *m = arg;
    if (!as_auth(m, req))
        return 0;
    as_json(req, 200, NULL, NULL);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* send() */

struct sctx {
    struct mx *m;
    fb_send_cb cb;
    void *arg;
    char *room;
    char *path;       /* the PUT's path */
    json_t *content;  /* the PUT's body */
    char *root;       /* the thread's root, once known */
    json_t *entry;    /* a copy of the outbox entry, handed to core->sent with the event id */
    const char *what; /* "reply" or "redaction", for the logs */
    char tag[FB_MX_TAG_LEN + 1];
};

static void sctx_free(struct sctx *s)
{
    json_decref(s->entry);
    json_decref(s->content);
    fb_free(s->room);
    fb_free(s->path);
    fb_free(s->root);
    fb_free(s);
}

static void sctx_done(struct sctx *s, int rc, int64_t retry_after)
{
    s->cb(rc, retry_after, s->arg);
    sctx_free(s);
}

static const char REDACT_REASON[] = "Données supprimées à la demande de l'usager";

/* Withdraws event `id` of `room` (best effort: its owner's data is already gone). */
static void withdraw(struct mx *m, const char *room, const char *id)
{
    char *e = fb_mx_path_escape(id); /* the event id is unique: a fine transaction id too */
    char *tail = fb_asprintf("/redact/%s/fbw-%s", e, e);
    char *path = room_path(room, tail);
    json_t *b = json_pack("{s:s}", "reason", REDACT_REASON);
    best_effort(m, "PUT", path, b);
    json_decref(b);
    fb_free(path);
    fb_free(tail);
    fb_free(e);
}

struct recorded {
    struct sctx *s;
    char *event_id;
};

/* The core kept the event id where the entry asked (core->sent): the send is done. */
static void on_recorded(int status, bool gone, void *arg)
{
    struct recorded *rc = arg;
    struct mx *m = rc->s->m;
    if (!status && gone) {
        FB_INFO(MATRIX, "[matrix|%s] message sent for a forgotten conversation: withdrawn",
                rc->s->tag);
        if (!m->stopping)
            withdraw(m, rc->s->room, rc->event_id);
    }
    sctx_done(rc->s, status ? FB_EAGAIN : 0, 0); /* resent with the same txn: same event id */
    fb_free(rc->event_id);
    fb_free(rc);
    op_end(m);
}

/*
 * Hands the event id to the core (core->sent), which keeps it where the entry asks (escalation's
 * tickets); true when that is in flight (on_recorded() ends the send). False when the entry asks
 * nothing (*rc left alone) or on failure (*rc = FB_EAGAIN).
 */
static bool record(struct mx *m, struct sctx *s, const char *event_id, int *rc)
{
    if (!m->core->sent)
        return false;
    struct recorded *r = fb_calloc(1, sizeof(*r));
    r->s = s;
    r->event_id = fb_strdup(event_id);
    int e = m->core->sent(m->core, s->entry, s->room, event_id, on_recorded, r);
    if (e == 0) {
        op_begin(m);
        return true;
    }
    fb_free(r->event_id);
    fb_free(r);
    if (e != FB_DECLINED)
        *rc = FB_EAGAIN;
    return false;
}

static void on_sent(struct mx *m, int err, int status, json_t *body, const fb_http_response_t *resp,
                    void *arg)
{
    struct sctx *s = arg;
    int64_t retry_after = 0;
    int rc = 0;
    const char *event_id = json_string_value(json_object_get(body, "event_id"));
    if (!err && event_id) {
        if (!m->stopping && strcmp(s->what, "reply") == 0)
            typing(m, s->room, false);
        if (record(m, s, event_id, &rc))
            return;
    } else if (strcmp(s->what, "redaction") == 0 && status == 404) {
        rc = 0; /* already gone */
    } else if (err == FB_ECANCELED) {
        rc = FB_ECANCELED;
    } else if (status == 429) {
        long ra = fb_http_retry_after_ms(fb_http_response_header(resp, "Retry-After"), time(NULL));
        json_t *r = json_object_get(body, "retry_after_ms");
        retry_after = ra >= 0 ? ra : json_is_integer(r) ? (int64_t)json_integer_value(r) : 0;
        FB_INFO(MATRIX, "[matrix|%s] rate limited: retry in %lld ms", s->tag,
                (long long)retry_after);
        rc = FB_EAGAIN;
    } else if (status == 401 || !err || status == 0 || status >= 500) {
        rc = FB_EAGAIN; /* token recovery, or an answer without event_id, or transient */
        FB_INFO(MATRIX, "[matrix|%s] %s not sent yet: %s (HTTP %d)", s->tag, s->what,
                fb_err_name(err), status);
    } else {
        FB_WARN(MATRIX, "[matrix|%s] %s refused by the server (HTTP %d %s)", s->tag, s->what,
                status, errcode(body) ? errcode(body) : "");
        rc = FB_EPROTO;
    }
    sctx_done(s, rc, retry_after);
}

/* The PUT of a prepared send. 0, or an error (and `s` is left to the caller). */
static int put(struct mx *m, struct sctx *s)
{
    if (s->root)
        fb_mx_thread_relation(s->content, s->root);
    int rc =
        mx_call_full(m, "PUT", s->path, s->content, 0, &no_retry, true, false, false, on_sent, s);
    return rc == 0 ? 0 : rc == FB_ECLOSING ? FB_ECANCELED : FB_EAGAIN;
}

/* How long a relay waits, between tries, for its thread's root to be recorded. */
#define ROOT_WAIT_MS 200

/* The root of a "ROOM/~TICKET" thread, from the core (core->thread_root): then the PUT. */
static void on_thread_root(int status, const char *root, void *arg)
{
    struct sctx *s = arg;
    struct mx *m = s->m;
    if (status == FB_ENOENT) {
        FB_INFO(MATRIX, "[matrix|%s] thread message dropped: its ticket is gone", s->tag);
        sctx_done(s, 0, 0);
    } else if (status || !root || m->stopping) {
        sctx_done(s, m->stopping ? FB_ECANCELED : FB_EAGAIN,
                  status == FB_EAGAIN || (!status && !root) ? ROOT_WAIT_MS : 0);
    } else {
        s->root = fb_strdup(root);
        int rc = put(m, s);
        if (rc)
            sctx_done(s, rc, 0);
    }
    op_end(m);
}

static int mx_send(fb_adapter_t *a, const fb_outbound_t *msg, fb_send_cb cb, void *arg)
{
    struct mx *m = *(struct mx **)fb_adapter_priv(a);
    if (!cb || !msg || !msg->txn_id || !*msg->txn_id || strlen(msg->txn_id) > 200)
        return FB_EINVAL;
    if (m->stopping)
        return FB_ECANCELED;
    if (!m->token)
        return FB_EAGAIN; /* not logged in yet */
    /* "ROOM/~TICKET": a thread whose root is read from Redis (the entry's "thread" {key, field}) */
    const char *tilde = msg->conv ? strstr(msg->conv, "/~") : NULL;
    char *conv = tilde ? fb_strndup(msg->conv, (size_t)(tilde - msg->conv)) : NULL;
    char *room = NULL, *root = NULL;
    int bad = fb_mx_conv_split(conv ? conv : msg->conv, &room, &root);
    fb_free(conv);
    if (bad)
        return FB_EINVAL;
    bool redact = msg->kind && strcmp(msg->kind, "redact") == 0;
    const char *redacts = msg->redacts;
    json_t *content = NULL;
    char *t = fb_mx_path_escape(msg->txn_id);
    char *tail = NULL;
    if (redact && redacts && redacts[0] == '$') {
        content = json_pack("{s:s}", "reason", REDACT_REASON);
        char *ev = fb_mx_path_escape(redacts);
        tail = fb_asprintf("/redact/%s/%s", ev, t);
        fb_free(ev);
    } else if (!redact) {
        const char *msgtype =
            msg->kind && strcmp(msg->kind, "reminder") == 0 ? m->o->reminder_msgtype : "m.notice";
        content = fb_mx_message_content(msgtype, msg->text ? msg->text : "", msg->html, NULL);
        tail = fb_asprintf("/send/m.room.message/%s", t);
    }
    fb_free(t);
    if (!content) {
        fb_free(tail);
        fb_free(room);
        fb_free(root);
        return FB_EINVAL;
    }
    struct sctx *s = fb_calloc(1, sizeof(*s));
    s->m = m;
    s->cb = cb;
    s->arg = arg;
    s->room = room;
    s->root = root;
    s->content = content;
    s->path = room_path(room, tail);
    s->what = redact ? "redaction" : "reply";
    s->entry = msg->entry ? json_deep_copy(msg->entry) : NULL;
    fb_mx_tag(msg->conv, s->tag);
    fb_free(tail);
    int rc;
    if (tilde) {
        rc = m->core->thread_root ? m->core->thread_root(m->core, msg->entry, on_thread_root, s)
                                  : FB_EINVAL;
        if (rc == 0)
            op_begin(m);
    } else {
        rc = put(m, s);
    }
    if (rc)
        sctx_free(s);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Life cycle */

static int read_secret(const char *what, const char *path, char **out)
{
    const char *why = NULL;
    int rc = fb_config_read_secret(path, out, &why);
    if (rc)
        FB_ERR(MATRIX, "%s '%s' cannot be used: %s", what, path, why ? why : strerror(-rc));
    return rc ? FB_ECONFIG : 0;
}

static int read_registration(struct mx *m)
{
    const char *path = m->o->as_registration_file;
    FILE *f = fopen(path, "re");
    if (!f) {
        FB_ERR(MATRIX,
               "matrix.appservice.registration_file '%s' cannot be read: %s (write it "
               "with 'frichebot matrix-registration')",
               path, strerror(errno));
        return FB_ECONFIG;
    }
    char *buf = fb_malloc(MAX_REG_BYTES + 1);
    size_t n = fread(buf, 1, MAX_REG_BYTES + 1, f);
    fclose(f);
    const char *why = NULL;
    int rc = n > MAX_REG_BYTES ? FB_ETOOBIG
                               : fb_mx_registration_tokens(buf, n, &m->token, &m->hs_token, &why);
    explicit_bzero(buf, MAX_REG_BYTES + 1);
    fb_free(buf);
    if (rc) {
        FB_ERR(MATRIX, "matrix.appservice.registration_file '%s': %s", path,
               why ? why : "larger than 64 KiB");
        return FB_ECONFIG;
    }
    return 0;
}

static int mx_init(fb_adapter_t *a)
{
    const fb_matrix_opts_t *o = fb_config_section(a->core->cfg, "matrix");
    if (!o || !o->enabled || !o->homeserver || !o->user_id)
        return FB_DECLINED;
    struct mx *m = fb_calloc(1, sizeof(*m));
    m->a = a;
    m->core = a->core;
    m->o = o;
    m->refs = 1;
    m->mode = o->mode && strcmp(o->mode, "appservice") == 0 ? MODE_AS : MODE_BOT;
    m->ignore = (const char *const *)o->ignore_users;
    m->notice_inflight = json_object();
    m->names = json_object();
    unsigned long long ttl = (unsigned long long)a->core->cfg->store.session_ttl_days * 86400000ull;
    snprintf(m->ttl_ms, sizeof(m->ttl_ms), "%llu", ttl);
    const char *prefix = a->core->cfg->store.key_prefix;
    m->k_auth = fb_asprintf("%smatrix:auth", prefix ? prefix : "");
    m->k_sync = fb_asprintf("%smatrix:sync", prefix ? prefix : "");
    *(struct mx **)fb_adapter_priv(a) = m;
    int rc = 0;
    if (m->mode == MODE_AS) {
        rc = read_registration(m);
    } else {
        const char *env = getenv(TOKEN_ENV);
        if (env && *env) {
            m->token = fb_strdup(env);
            m->token_given = true;
        } else if (o->access_token_file) {
            rc = read_secret("matrix.access_token_file", o->access_token_file, &m->token);
            m->token_given = rc == 0;
        }
        if (!rc && o->password_file)
            rc = read_secret("matrix.password_file", o->password_file, &m->password);
        if (!rc && !m->token && !m->password) {
            FB_ERR(MATRIX, "bot mode needs matrix.password_file, matrix.access_token_file or %s",
                   TOKEN_ENV);
            rc = FB_ECONFIG;
        }
        json_t *f = filter_json(o, o->sync_timeline_limit);
        m->filter_json = json_dumps(f, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(f);
        fb_sha256_tag(m->filter_json, 8, m->filter_hash);
        /* jansson's string: keep our own copy in our allocator. */
        char *copy = fb_strdup(m->filter_json);
        free(m->filter_json); /* fb-lint: allow free (jansson's allocation) */
        m->filter_json = copy;
    }
    if (rc) { /* the router does not call destroy() after a failed init() */
        *(struct mx **)fb_adapter_priv(a) = NULL;
        m->a = NULL;
        mx_unref(m);
    }
    return rc;
}

static int mx_start(fb_adapter_t *a)
{
    struct mx *m = *(struct mx **)fb_adapter_priv(a);
    const fb_core_t *core = m->core;
    if (m->mode == MODE_AS) {
        int rc = fb_http_server_route_prefix(core->http, AS_PREFIX "transactions/", FB_HTTP_PUT,
                                             "matrix_as_txn", on_as_txn, m);
        if (!rc)
            rc = fb_http_server_route_prefix(core->http, AS_PREFIX "users/", FB_HTTP_GET,
                                             "matrix_as_user", on_as_user, m);
        if (!rc)
            rc = fb_http_server_route_prefix(core->http, AS_PREFIX "rooms/", FB_HTTP_GET,
                                             "matrix_as_room", on_as_room, m);
        if (!rc)
            rc = fb_http_server_route(core->http, AS_PREFIX "ping", FB_HTTP_POST, "matrix_as_ping",
                                      on_as_ping, m);
        if (rc) {
            FB_ERR(MATRIX, "cannot register the application service routes: %s", fb_strerror(rc));
            return rc;
        }
        m->started = true;
        FB_INFO(MATRIX, "application service on %s* for %s", AS_PREFIX, m->o->homeserver);
        core->set_state(a, "ok");
        return 0;
    }
    uv_timer_init(core->loop, &m->timer);
    m->timer.data = m;
    m->timer_init = true;
    m->refs++; /* the timer's */
    m->started = true;
    m->catch_up = true;
    core->set_state(a, "starting");
    FB_INFO(MATRIX, "bot account on %s", m->o->homeserver);
    bot_load(m);
    return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
    struct mx *m = h->data;
    m->timer_closed = true;
    maybe_stop_done(m);
    mx_unref(m);
}

static void mx_stop(fb_adapter_t *a, void (*done)(fb_adapter_t *a))
{
    struct mx *m = *(struct mx **)fb_adapter_priv(a);
    m->stopping = true;
    m->sy = SY_STOPPED;
    m->stop_done = done;
    /* The /sync long-poll would hold the daemon's drain until it returns: end it now (nothing
     * is lost, next_batch was not advanced). Its callback sees `stopping` and does nothing. */
    if (m->poll_call)
        (void)fb_http_client_cancel(m->core->client, on_call, m->poll_call);
    if (m->timer_init && !uv_is_closing((uv_handle_t *)&m->timer)) {
        uv_timer_stop(&m->timer);
        uv_close((uv_handle_t *)&m->timer, on_timer_closed);
        return;
    }
    maybe_stop_done(m);
}

static void mx_destroy(fb_adapter_t *a)
{
    struct mx **pm = fb_adapter_priv(a);
    struct mx *m = *pm;
    if (!m)
        return;
    *pm = NULL;
    m->a = NULL;
    m->stop_done = NULL;
    m->stopping = true;
    if (m->timer_init && !uv_is_closing((uv_handle_t *)&m->timer))
        uv_close((uv_handle_t *)&m->timer, on_timer_closed);
    mx_unref(m);
}

static int mx_stats(fb_adapter_t *a, json_t *out)
{
    struct mx *m = *(struct mx **)fb_adapter_priv(a);
    int64_t now = fb_wall_ms();
    json_object_set_new(out, "mode", json_string(m->mode == MODE_AS ? "appservice" : "bot"));
    if (m->mode == MODE_BOT) {
        json_object_set_new(out, "sync", json_string(sync_state_name[m->sy]));
        json_object_set_new(out, "last_sync_age_ms",
                            json_integer(m->last_sync_ms ? now - m->last_sync_ms : -1));
    } else {
        json_object_set_new(out, "transactions", json_integer((json_int_t)m->txns));
        json_object_set_new(out, "last_txn_age_ms",
                            json_integer(m->last_txn_ms ? now - m->last_txn_ms : -1));
    }
    json_object_set_new(out, "rooms_joined", json_integer((json_int_t)m->rooms_joined));
    return 0;
}

int fb_mx_log_sub = FB_SUB_CORE;

const fb_adapter_ops_t fb_adapter_matrix = {
    .api_version = FB_ADAPTER_API_VERSION,
    .name = "matrix",
    .priv_size = sizeof(struct mx *),
    .caps = FB_ADAPTER_CAP_HTML | FB_ADAPTER_CAP_TXN_DEDUPE | FB_ADAPTER_CAP_ADVISORS,
    .init = mx_init,
    .start = mx_start,
    .stop = mx_stop,
    .destroy = mx_destroy,
    .send = mx_send,
    .stats = mx_stats,
    .conv_keys = NULL,
    .config = &fb_matrix_config,
    .commands = fb_mx_commands,
    .log_sub = &fb_mx_log_sub,
};
