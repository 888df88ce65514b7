/* SPDX-License-Identifier: MIT */
/*
 * mx_e2ee.c - end-to-end encryption in the Matrix adapter, bot mode (docs/internals/CRYPTO.md):
 * the I/O around the pure machine of mx_crypto.c. It loads and writes the crypto state in Redis,
 * uploads the device's keys and cross-signs it, decrypts what /sync brings before the parser
 * sees it (to-device messages first, then the rooms' timelines), asks for missing keys and says
 * so when they never come, and encrypts what send() puts in an encrypted room.
 *
 * Redis (prefix store.key_prefix), five hashes written together by one Lua function
 * (E2EE_APPLY_LUA), alone or inside the next_batch script of mx_sync.c:
 *   matrix:e2ee:crypto  the machine's fields (mx_crypto.c)
 *   matrix:e2ee:utd     event id -> {"room","ev","first","told"}: events not decrypted yet
 *   matrix:e2ee:todev   txn -> the body of a PUT /sendToDevice not acknowledged yet
 *   matrix:e2ee:sent    outbox txn -> {"content","at"}: the encrypted content of a message,
 *                       so that a resend (same txn) sends the same ciphertext
 *   matrix:e2ee:meta    "device": the device the state belongs to
 */
#include "mx_e2ee.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <uv.h>

#include "common/digest.h"
#include "frichebot/adapter.h"
#include "frichebot/alloc.h"
#include "frichebot/clock.h"
#include "frichebot/err.h"
#include "frichebot/log.h"
#include "io/config.h"
#include "io/redis.h"
#include "matrix.h"
#include "mx_crypto.h"
#include "mx_util.h"

#define MIN_PICKLE_KEY  32
#define UTD_KEEP_MS     (24LL * 3600 * 1000)     /* an undecryptable event is retried this long */
#define SENT_KEEP_MS    (7LL * 24 * 3600 * 1000) /* an encrypted content is kept this long */
#define QUERY_MAX_USERS 100
#define CLAIM_TIMEOUT   10000

enum { K_CRYPTO, K_UTD, K_TODEV, K_SENT, K_META, K_N };
static const char *const key_names[K_N] = {"crypto", "utd", "todev", "sent", "meta"};
static const char *const part_names[K_N] = {"c", "u", "t", "s", "m"};

struct e2ee {
    struct mx *m;
    fb_mxc_t *c;
    char *pickle_key;
    size_t pickle_key_len;
    char *keys[K_N];
    char *device; /* the device the loaded state belongs to */
    bool loading, ready, preparing, uploading;
    void (*prepared)(struct mx *m, int status);
    json_t *enc;       /* room -> m.room.encryption content, or null (clear): asked once */
    json_t *members;   /* room -> [user ids] joined, until a member event is seen */
    json_t *joined;    /* room -> wall ms the bot joined it, for first_message_delay_ms */
    json_t *utd;       /* event id -> {"room","ev","first","told"} */
    json_t *todev;     /* txn -> body, not acknowledged yet */
    json_t *todev_out; /* txn -> true while its PUT is in flight */
    json_t *pending;   /* {"u":{}, "t":{}, "s":{}, "m":{}} written with the next write */
    json_t *pseq;      /* "part|field" -> the sequence number of its latest value */
    uint64_t wseq;
    json_t *busy; /* room -> true while a job prepares its keys */
    struct ejob *queue, *queue_tail;
    uv_timer_t timer;
    bool timer_init;
    long otk_count;
    bool fallback_missing;
    uint64_t seq;
    uint64_t first_waits; /* sends put off by first_message_delay_ms (stats) */
};

/* ---------------------------------------------------------------------------------------- */
/* Writes */

const char mx_e2ee_apply_lua[] = E2EE_APPLY_LUA;

static void pending_set(struct e2ee *e, int part, const char *field, json_t *value_or_null)
{
    char *k = fb_asprintf("%s|%s", part_names[part], field);
    json_object_set_new(e->pseq, k, json_integer((json_int_t)++e->wseq));
    fb_free(k);
    json_t *h = json_object_get(e->pending, part_names[part]);
    if (!h) {
        h = json_object();
        json_object_set_new(e->pending, part_names[part], h);
    }
    if (json_is_null(value_or_null) || !value_or_null) {
        json_object_set_new(h, field, json_null());
        json_decref(value_or_null);
        return;
    }
    char *s = json_dumps(value_or_null, JSON_COMPACT);
    json_object_set_new(h, field, json_string(s));
    free(s); /* fb-lint: allow free (jansson's allocation) */
    json_decref(value_or_null);
}

/* The write to make now (the machine's dirty fields and what is pending), as a string for the
 * Lua function; NULL when nothing. *taken holds what to put back if the write fails. */
char *mx_e2ee_take_write(struct mx *m, json_t **taken)
{
    struct e2ee *e = m->e2ee;
    *taken = NULL;
    if (!e || !e->c)
        return NULL;
    json_t *w = e->pending;
    e->pending = json_object();
    json_t *d = fb_mxc_take_dirty(e->c);
    if (d)
        json_object_set_new(w, "c", d);
    if (json_object_size(w) == 0) {
        json_decref(w);
        return NULL;
    }
    char *s = json_dumps(w, JSON_COMPACT);
    char *copy = fb_strdup(s);
    free(s); /* fb-lint: allow free (jansson's allocation) */
    /* each value's sequence number, so that a failed write puts back only what did not change */
    json_t *seqs = json_object();
    const char *part;
    json_t *h;
    json_object_foreach(w, part, h)
    {
        if (strcmp(part, "c") == 0)
            continue;
        const char *f;
        json_t *v;
        json_object_foreach(h, f, v)
        {
            char *k = fb_asprintf("%s|%s", part, f);
            json_object_set(seqs, k, json_object_get(e->pseq, k));
            fb_free(k);
        }
    }
    json_object_set_new(w, "_seq", seqs);
    *taken = w;
    return copy;
}

void mx_e2ee_write_done(struct mx *m, json_t *taken, int status)
{
    struct e2ee *e = m->e2ee;
    if (!taken)
        return;
    if (status && e && e->c) {
        json_t *d = json_object_get(taken, "c");
        if (d)
            fb_mxc_put_back_dirty(e->c, json_incref(d));
        json_t *seqs = json_object_get(taken, "_seq");
        const char *part;
        json_t *h;
        json_object_foreach(taken, part, h)
        {
            if (strcmp(part, "c") == 0 || strcmp(part, "_seq") == 0)
                continue;
            json_t *cur = json_object_get(e->pending, part);
            if (!cur) {
                cur = json_object();
                json_object_set_new(e->pending, part, cur);
            }
            const char *f;
            json_t *v;
            json_object_foreach(h, f, v)
            {
                /* put back only a value nothing replaced since (its sequence number is still the
                 * latest): an older value never overwrites a newer one */
                char *k = fb_asprintf("%s|%s", part, f);
                json_t *now = json_object_get(e->pseq, k);
                if (!json_object_get(cur, f) && json_equal(now, json_object_get(seqs, k)))
                    json_object_set(cur, f, v);
                fb_free(k);
            }
        }
    }
    json_decref(taken);
}

void mx_e2ee_keys_argv(struct mx *m, const char **out)
{
    for (int i = 0; i < K_N; i++)
        out[i] = m->e2ee ? m->e2ee->keys[i] : m->k_sync; /* untouched without a write */
}

struct wctx {
    json_t *taken;
    void (*cb)(struct mx *m, int status, void *arg);
    void *arg;
};

static const char apply_script[] = "#!lua\n" E2EE_APPLY_LUA "e2ee_apply(KEYS, ARGV[1])\nreturn 1\n";

static void on_applied(struct mx *m, int status, redisReply *reply, void *arg)
{
    (void)reply;
    struct wctx *w = arg;
    mx_e2ee_write_done(m, w->taken, status);
    if (status)
        FB_WARN(MATRIX,
                "e2ee: the crypto state was not written to Redis (%s): kept for the "
                "next write",
                fb_err_name(status));
    if (w->cb)
        w->cb(m, status ? FB_EAGAIN : 0, w->arg);
    fb_free(w);
}

/* Writes what changed (one script); cb(status) once written (at once when nothing changed). */
static void apply(struct mx *m, void (*cb)(struct mx *m, int status, void *arg), void *arg)
{
    json_t *taken;
    char *s = mx_e2ee_take_write(m, &taken);
    if (!s) {
        if (cb)
            cb(m, 0, arg);
        return;
    }
    struct wctx *w = fb_calloc(1, sizeof(*w));
    w->taken = taken;
    w->cb = cb;
    w->arg = arg;
    const char *argv[4 + K_N];
    argv[0] = "EVAL";
    argv[1] = apply_script;
    argv[2] = "5";
    mx_e2ee_keys_argv(m, argv + 3);
    argv[3 + K_N] = s;
    int rc = mx_rcmd_argv(m, on_applied, w, 4 + K_N, argv);
    explicit_bzero(s, strlen(s));
    fb_free(s);
    if (rc)
        on_applied(m, rc, NULL, w);
}

/* ---------------------------------------------------------------------------------------- */
/* To-device messages */

static char *new_txn(struct e2ee *e, const char *what)
{
    unsigned char r[8];
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
        memset(r, 0, sizeof(r));
    return fb_asprintf("fb%s.%llx.%02x%02x%02x%02x%02x%02x%02x%02x", what,
                       (unsigned long long)++e->seq, r[0], r[1], r[2], r[3], r[4], r[5], r[6],
                       r[7]);
}

struct ejob;
static void job_end(struct ejob *j, int rc, json_t *enc);
static void job_sent(struct ejob *j);

struct tdarg {
    char *txn;
    struct ejob *j; /* the send waiting for its room keys to go out, or NULL */
};

static void on_todev(struct mx *m, int err, int status, json_t *body,
                     const fb_http_response_t *resp, void *arg)
{
    (void)body, (void)resp;
    struct tdarg *t = arg;
    struct e2ee *e = m->e2ee;
    if (e) {
        json_object_del(e->todev_out, t->txn);
        if (!err || (status >= 400 && status < 500 && status != 429)) {
            if (err)
                FB_WARN(MATRIX, "e2ee: to-device messages refused (HTTP %d): dropped", status);
            json_object_del(e->todev, t->txn);
            pending_set(e, K_TODEV, t->txn, NULL);
            apply(m, NULL, NULL);
        } else {
            FB_INFO(MATRIX, "e2ee: to-device messages not sent yet (%s, HTTP %d): retried",
                    fb_err_name(err), status);
        }
    }
    if (t->j) /* the message goes anyway: its keys are sent again until acknowledged */
        job_sent(t->j);
    fb_free(t->txn);
    fb_free(t);
}

/* PUTs the to-device body `txn` (kept in e->todev); true when in flight. */
static bool todev_put(struct mx *m, const char *txn, const json_t *body, struct ejob *j)
{
    struct e2ee *e = m->e2ee;
    if (json_object_get(e->todev_out, txn) || m->stopping)
        return false;
    char *te = fb_mx_path_escape(txn);
    char *path = fb_asprintf(CLIENT_PATH "/sendToDevice/m.room.encrypted/%s", te);
    struct tdarg *t = fb_calloc(1, sizeof(*t));
    t->txn = fb_strdup(txn);
    t->j = j;
    bool ok =
        mx_call_full(m, "PUT", path, body, 0, &mx_no_retry, true, false, false, on_todev, t) == 0;
    if (ok) {
        json_object_set_new(e->todev_out, txn, json_true());
    } else {
        fb_free(t->txn);
        fb_free(t);
    }
    fb_free(path);
    fb_free(te);
    return ok;
}

/* Sends again every to-device body not acknowledged (after a restart, or a failure). */
static void todev_flush(struct mx *m)
{
    struct e2ee *e = m->e2ee;
    const char *txn;
    json_t *body;
    json_object_foreach(e->todev, txn, body)(void) todev_put(m, txn, body, NULL);
}

/* ---------------------------------------------------------------------------------------- */
/* Keys: query and upload */

struct qctx {
    void (*cb)(struct mx *m, int status, void *arg);
    void *arg;
    unsigned rounds;
};

#define QUERY_MAX_ROUNDS 50 /* 5000 users: every member of a large room, then stop */

static int query_round(struct mx *m, struct qctx *q);

static void on_query(struct mx *m, int err, int status, json_t *body,
                     const fb_http_response_t *resp, void *arg)
{
    (void)resp;
    struct qctx *q = arg;
    struct e2ee *e = m->e2ee;
    int rc = 0;
    if (err || !e) {
        FB_INFO(MATRIX, "e2ee: /keys/query failed (%s, HTTP %d)", fb_err_name(err), status);
        rc = FB_EAGAIN;
    } else {
        int n = fb_mxc_keys_query_result(e->c, body);
        if (n < 0) {
            FB_WARN(MATRIX, "e2ee: unreadable /keys/query answer");
            rc = FB_EAGAIN;
        } else {
            FB_DEBUG(MATRIX, "e2ee: %d device(s) known from /keys/query", n);
            /* more than one page of outdated users: the next page, until none is left */
            if (++q->rounds < QUERY_MAX_ROUNDS) {
                int s = query_round(m, q);
                if (s == 0)
                    return;
                rc = s == 1 ? 0 : FB_EAGAIN;
            }
        }
    }
    q->cb(m, rc, q->arg);
    fb_free(q);
}

/* 0: a query in flight; 1: nobody outdated; else an error. */
static int query_round(struct mx *m, struct qctx *q)
{
    json_t *b = fb_mxc_keys_query_body(m->e2ee->c, QUERY_MAX_USERS);
    if (!b)
        return 1;
    json_object_set_new(b, "timeout", json_integer(10000));
    int rc = mx_call(m, "POST", CLIENT_PATH "/keys/query", b, on_query, q);
    json_decref(b);
    return rc ? FB_EAGAIN : 0;
}

/* Queries the outdated users' devices, then cb(status). */
static void query_outdated(struct mx *m, void (*cb)(struct mx *m, int status, void *arg), void *arg)
{
    struct qctx *q = fb_calloc(1, sizeof(*q));
    q->cb = cb;
    q->arg = arg;
    int rc = query_round(m, q);
    if (rc) {
        fb_free(q);
        cb(m, rc == 1 ? 0 : FB_EAGAIN, arg);
    }
}

static void upload_keys(struct mx *m, void (*done)(struct mx *m, int status, void *arg), void *arg);

struct uctx {
    json_t *body;
    void (*done)(struct mx *m, int status, void *arg);
    void *arg;
};

static void on_upload(struct mx *m, int err, int status, json_t *body,
                      const fb_http_response_t *resp, void *arg)
{
    (void)resp;
    struct uctx *u = arg;
    struct e2ee *e = m->e2ee;
    int rc = 0;
    if (e)
        e->uploading = false;
    if (!e) {
        rc = FB_ECANCELED;
    } else if (err) {
        FB_WARN(MATRIX, "e2ee: key upload failed (%s, HTTP %d %s)", fb_err_name(err), status,
                mx_errcode(body) ? mx_errcode(body) : "");
        rc = FB_EAGAIN;
    } else {
        fb_mxc_keys_published(e->c);
        json_t *cnt =
            json_object_get(json_object_get(body, "one_time_key_counts"), "signed_curve25519");
        e->otk_count = json_is_integer(cnt) ? (long)json_integer_value(cnt) : e->otk_count;
        if (json_object_get(u->body, "fallback_keys"))
            e->fallback_missing = false;
        FB_INFO(MATRIX, "e2ee: keys uploaded (%zu one-time key(s)%s%s)",
                json_object_size(json_object_get(u->body, "one_time_keys")),
                json_object_get(u->body, "device_keys") ? ", device keys" : "",
                json_object_get(u->body, "fallback_keys") ? ", fallback key" : "");
    }
    json_decref(u->body);
    if (rc) {
        if (u->done)
            u->done(m, rc, u->arg);
        fb_free(u);
        return;
    }
    /* the published mark, then maybe more keys (up to half the account's maximum) */
    void (*done)(struct mx *, int, void *) = u->done;
    void *darg = u->arg;
    fb_free(u);
    upload_keys(m, done, darg);
}

static void on_upload_saved(struct mx *m, int status, void *arg)
{
    struct uctx *u = arg;
    struct e2ee *e = m->e2ee;
    if (status || !e || m->stopping) {
        /* never upload keys whose private parts are not saved */
        if (e)
            e->uploading = false;
        json_decref(u->body);
        if (u->done)
            u->done(m, status ? status : FB_ECANCELED, u->arg);
        fb_free(u);
        return;
    }
    if (mx_call(m, "POST", CLIENT_PATH "/keys/upload", u->body, on_upload, u)) {
        e->uploading = false;
        json_decref(u->body);
        if (u->done)
            u->done(m, FB_EAGAIN, u->arg);
        fb_free(u);
    }
}

/* Uploads what the device needs (device keys, one-time keys, a fallback key), the private parts
 * written to Redis first. done(status) when nothing more is needed. */
static void upload_keys(struct mx *m, void (*done)(struct mx *m, int status, void *arg), void *arg)
{
    struct e2ee *e = m->e2ee;
    if (e->uploading) {
        if (done)
            done(m, 0, arg);
        return;
    }
    json_t *b = fb_mxc_keys_to_upload(e->c, e->otk_count, e->fallback_missing);
    if (!b) {
        apply(m, done, arg); /* the published mark */
        return;
    }
    e->uploading = true;
    struct uctx *u = fb_calloc(1, sizeof(*u));
    u->body = b;
    u->done = done;
    u->arg = arg;
    apply(m, on_upload_saved, u);
}

/* ---------------------------------------------------------------------------------------- */
/* Cross-signing */

struct xctx {
    json_t *keys, *sigs;
};

static void prepare_done(struct mx *m, int status);

static void xctx_free(struct xctx *x)
{
    json_decref(x->keys);
    json_decref(x->sigs);
    fb_free(x);
}

static void on_xsign_saved(struct mx *m, int status, void *arg)
{
    (void)arg;
    if (!status)
        FB_NOTICE(MATRIX, "e2ee: the bot's device is cross-signed");
    prepare_done(m, status);
}

static void on_signatures(struct mx *m, int err, int status, json_t *body,
                          const fb_http_response_t *resp, void *arg)
{
    (void)resp;
    struct xctx *x = arg;
    struct e2ee *e = m->e2ee;
    json_t *fail = json_object_get(body, "failures");
    if (!e) {
        xctx_free(x);
        return;
    }
    if (err || json_object_size(fail) > 0) {
        FB_ERR(MATRIX,
               "e2ee: the device's cross-signing signature was refused (HTTP %d): "
               "clients that send keys only to cross-signed devices will not",
               status);
        xctx_free(x);
        prepare_done(m, 0);
        return;
    }
    fb_mxc_cross_signing_done(e->c, x->keys);
    xctx_free(x);
    apply(m, on_xsign_saved, NULL);
}

static void on_device_signing(struct mx *m, int err, int status, json_t *body,
                              const fb_http_response_t *resp, void *arg)
{
    (void)resp;
    struct xctx *x = arg;
    if (!m->e2ee) {
        xctx_free(x);
        return;
    }
    const char *session = json_string_value(json_object_get(body, "session"));
    if (err && status == 401 && session && !json_object_get(x->keys, "auth")) {
        if (!m->password) {
            FB_ERR(MATRIX, "e2ee: the server asks a password to cross-sign the device: set "
                           "matrix.password_file (or matrix.crypto.cross_signing: false)");
            xctx_free(x);
            prepare_done(m, 0);
            return;
        }
        json_object_set_new(x->keys, "auth",
                            json_pack("{s:s, s:{s:s, s:s}, s:s, s:s}", "type", "m.login.password",
                                      "identifier", "type", "m.id.user", "user", m->o->user_id,
                                      "password", m->password, "session", session));
        if (mx_call(m, "POST", CLIENT_PATH "/keys/device_signing/upload", x->keys,
                    on_device_signing, x) == 0)
            return;
        err = FB_EAGAIN;
    }
    json_t *pw = json_object_get(json_object_get(x->keys, "auth"), "password");
    if (json_is_string(pw)) /* wiped in jansson's copy before it is freed */
        explicit_bzero((char *)(uintptr_t)json_string_value(pw), json_string_length(pw));
    json_object_del(x->keys, "auth");
    if (err) {
        FB_ERR(MATRIX, "e2ee: cross-signing keys not uploaded (%s, HTTP %d %s)", fb_err_name(err),
               status, mx_errcode(body) ? mx_errcode(body) : "");
        xctx_free(x);
        prepare_done(m, 0);
        return;
    }
    if (mx_call(m, "POST", CLIENT_PATH "/keys/signatures/upload", x->sigs, on_signatures, x)) {
        xctx_free(x);
        prepare_done(m, 0);
    }
}

static void cross_sign(struct mx *m)
{
    struct e2ee *e = m->e2ee;
    struct xctx *x = fb_calloc(1, sizeof(*x));
    if (fb_mxc_cross_signing_new(e->c, &x->keys, &x->sigs) != 0 || !x->keys || !x->sigs) {
        FB_ERR(MATRIX, "e2ee: cannot make cross-signing keys");
        xctx_free(x);
        prepare_done(m, 0);
        return;
    }
    if (mx_call(m, "POST", CLIENT_PATH "/keys/device_signing/upload", x->keys, on_device_signing,
                x)) {
        xctx_free(x);
        prepare_done(m, FB_EAGAIN);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Start: load, account, keys, cross-signing */

static void prepare_done(struct mx *m, int status)
{
    struct e2ee *e = m->e2ee;
    void (*cb)(struct mx *, int) = e->prepared;
    e->preparing = false;
    e->prepared = NULL;
    if (!status) {
        e->ready = true;
        todev_flush(m);
    }
    if (cb)
        cb(m, status);
}

static void on_keys_ready(struct mx *m, int status, void *arg)
{
    (void)arg;
    struct e2ee *e = m->e2ee;
    if (!e)
        return;
    if (status) {
        prepare_done(m, status);
        return;
    }
    if (m->o->crypto_cross_signing && !fb_mxc_cross_signed(e->c)) {
        cross_sign(m);
        return;
    }
    prepare_done(m, 0);
}

/* Loads one hash; false when the account itself cannot be read (a wrong pickle key). */
static bool load_hash(struct e2ee *e, int k, const redisReply *r)
{
    bool ok = true;
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        const redisReply *f = r->element[i], *v = r->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (k == K_CRYPTO) {
            if (fb_mxc_load(e->c, f->str, v->str) != FB_MXC_OK) {
                FB_WARN(MATRIX, "e2ee: a stored crypto field could not be read: skipped");
                ok = ok && strcmp(f->str, "account") != 0;
            }
            continue;
        }
        json_t *val = json_loads(v->str, 0, NULL);
        if (!val)
            continue;
        if (k == K_UTD)
            json_object_set_new(e->utd, f->str, val);
        else if (k == K_TODEV)
            json_object_set_new(e->todev, f->str, val);
        else
            json_decref(val);
    }
    return ok;
}

static const char load_script[] =
    "#!lua\n"
    "local d = redis.call('HGET', KEYS[5], 'device')\n"
    "if d ~= ARGV[1] then\n"
    "  for i = 1, 4 do redis.call('DEL', KEYS[i]) end\n"
    "  redis.call('HSET', KEYS[5], 'device', ARGV[1])\n"
    "  return {d or '', {}, {}, {}}\n"
    "end\n"
    "local cut = tonumber(ARGV[2])\n"
    "local sent = redis.call('HGETALL', KEYS[4])\n"
    "for i = 1, #sent, 2 do\n"
    "  local ok, v = pcall(cjson.decode, sent[i + 1])\n"
    "  if not ok or type(v) ~= 'table' or (tonumber(v.at) or 0) < cut then\n"
    "    redis.call('HDEL', KEYS[4], sent[i])\n"
    "  end\n"
    "end\n"
    "return {d, redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]),\n"
    "        redis.call('HGETALL', KEYS[3])}\n";

static void on_loaded(struct mx *m, int status, redisReply *reply, void *arg)
{
    (void)arg;
    struct e2ee *e = m->e2ee;
    if (!e || m->stopping)
        return;
    e->loading = false;
    if (status || !reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 4) {
        prepare_done(m, FB_EAGAIN);
        return;
    }
    const char *was = reply->element[0]->type == REDIS_REPLY_STRING ? reply->element[0]->str : "";
    if (*was && strcmp(was, m->device_id) != 0)
        FB_WARN(MATRIX, "e2ee: the stored crypto state belongs to another device of the bot "
                        "(a new login): it is discarded, and this device gets new keys");
    fb_mxc_free(e->c);
    fb_mxc_opts_t o = {.user_id = m->o->user_id,
                       .device_id = m->device_id,
                       .pickle_key = (const uint8_t *)e->pickle_key,
                       .pickle_key_len = e->pickle_key_len};
    e->c = fb_mxc_new(&o);
    json_object_clear(e->utd);
    json_object_clear(e->todev);
    if (!load_hash(e, K_CRYPTO, reply->element[1])) {
        /* Never make new keys for a device that has keys: its contacts would refuse them. */
        FB_ERR(MATRIX, "e2ee: the stored device keys cannot be opened with "
                       "matrix.crypto.pickle_key_file: restore the key file the state was written "
                       "with (docs/internals/CRYPTO.md); the bot stays offline meanwhile");
        mx_set_state(m, "degraded: crypto state unreadable (pickle key)");
        prepare_done(m, FB_EPROTO);
        return;
    }
    load_hash(e, K_UTD, reply->element[2]);
    load_hash(e, K_TODEV, reply->element[3]);
    fb_free(e->device);
    e->device = fb_strdup(m->device_id);
    if (fb_mxc_ensure_account(e->c))
        FB_NOTICE(MATRIX, "e2ee: new device keys made for this device");
    fb_mxc_rotate_outbound(e->c); /* a Megolm index is never used twice, even after data loss */
    FB_INFO(MATRIX, "e2ee: crypto state loaded (%zu pending undecryptable, %zu to-device)",
            json_object_size(e->utd), json_object_size(e->todev));
    upload_keys(m, on_keys_ready, NULL);
}

bool mx_e2ee_ready(struct mx *m)
{
    struct e2ee *e = m->e2ee;
    return !e || (e->ready && e->device && m->device_id && strcmp(e->device, m->device_id) == 0);
}

void mx_e2ee_prepare(struct mx *m, void (*done)(struct mx *m, int status))
{
    struct e2ee *e = m->e2ee;
    if (e->preparing)
        return;
    if (!m->device_id || !*m->device_id) {
        done(m, FB_EAGAIN);
        return;
    }
    e->ready = false;
    e->preparing = true;
    e->prepared = done;
    e->loading = true;
    char cut[24];
    snprintf(cut, sizeof(cut), "%lld", (long long)(fb_wall_ms() - SENT_KEEP_MS));
    const char *argv[3 + K_N + 2];
    argv[0] = "EVAL";
    argv[1] = load_script;
    argv[2] = "5";
    mx_e2ee_keys_argv(m, argv + 3);
    argv[3 + K_N] = m->device_id;
    argv[4 + K_N] = cut;
    if (mx_rcmd_argv(m, on_loaded, NULL, 5 + K_N, argv)) {
        e->loading = false;
        prepare_done(m, FB_EAGAIN);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* /sync: decrypt before the parser */

struct sctx {
    struct mx *m;
    json_t *body;
    json_t *view; /* the to-device events, device lists and key counts: the body itself (/sync)
                     or what fb_mx_txn_crypto() took from a transaction (owned then) */
    bool txn;
    json_t *retry; /* to-device events from devices not known yet */
    void (*cont)(struct mx *m, json_t *body, int status, void *arg);
    void *arg;
};

static void key_request(struct mx *m, const json_t *ev)
{
    struct e2ee *e = m->e2ee;
    const char *sender = json_string_value(json_object_get(ev, "sender"));
    if (!sender)
        return;
    char *rid = new_txn(e, "kr");
    json_t *content = fb_mxc_key_request(e->c, ev, rid);
    if (content) {
        json_t *b = json_pack("{s:{s:{s:O}}}", "messages", sender, "*", content);
        /* and our own other devices (none usually) */
        if (strcmp(sender, m->o->user_id) != 0)
            json_object_set_new(json_object_get(b, "messages"), m->o->user_id,
                                json_pack("{s:O}", "*", content));
        char *t = fb_mx_path_escape(rid);
        char *path = fb_asprintf(CLIENT_PATH "/sendToDevice/m.room_key_request/%s", t);
        mx_best_effort(m, "PUT", path, b);
        fb_free(path);
        fb_free(t);
        json_decref(b);
        json_decref(content);
    }
    fb_free(rid);
}

static json_t *room_timeline(json_t *body, const char *room)
{
    json_t *r = json_object_get(json_object_get(json_object_get(body, "rooms"), "join"), room);
    if (!r)
        return NULL;
    json_t *tl = json_object_get(r, "timeline");
    if (!json_is_object(tl))
        return NULL;
    json_t *evs = json_object_get(tl, "events");
    return json_is_array(evs) ? evs : NULL;
}

/* Puts a late-decrypted event at the front of its room's timeline in `body`. */
static void inject(json_t *body, const char *room, json_t *ev)
{
    json_t *rooms = json_object_get(body, "rooms");
    if (!json_is_object(rooms)) {
        rooms = json_object();
        json_object_set_new(body, "rooms", rooms);
    }
    json_t *join = json_object_get(rooms, "join");
    if (!json_is_object(join)) {
        join = json_object();
        json_object_set_new(rooms, "join", join);
    }
    json_t *r = json_object_get(join, room);
    if (!json_is_object(r)) {
        r = json_object();
        json_object_set_new(join, room, r);
    }
    json_t *tl = json_object_get(r, "timeline");
    if (!json_is_object(tl)) {
        tl = json_object();
        json_object_set_new(r, "timeline", tl);
    }
    json_t *evs = json_object_get(tl, "events");
    if (!json_is_array(evs)) {
        evs = json_array();
        json_object_set_new(tl, "events", evs);
    }
    json_array_insert_new(evs, 0, ev);
}

static void utd_notice(struct mx *m, const char *event_id, json_t *u)
{
    const char *room = json_string_value(json_object_get(u, "room"));
    if (!room || m->stopping)
        return;
    char tag[FB_MX_TAG_LEN + 1];
    fb_mx_tag(room, tag);
    FB_NOTICE(MATRIX, "[matrix|%s] e2ee: a message stayed undecryptable: told the sender", tag);
    char txn[48] = "utd.";
    fb_sha256_tag(event_id, 8, txn + 4);
    char *tail = fb_asprintf("/send/m.room.message/%s", txn);
    char *path = mx_room_path(room, tail);
    json_t *content =
        fb_mx_message_content("m.notice", m->o->crypto_undecryptable_notice, NULL, NULL);
    mx_best_effort(m, "PUT", path, content);
    json_decref(content);
    fb_free(path);
    fb_free(tail);
    json_object_set_new(u, "told", json_true());
    pending_set(m->e2ee, K_UTD, event_id, json_incref(u));
}

static void arm_timer(struct mx *m);

/* Tells the senders of events past their wait; deletes the entries past UTD_KEEP_MS. */
static void utd_sweep(struct mx *m)
{
    struct e2ee *e = m->e2ee;
    int64_t now = fb_wall_ms();
    const char *id;
    json_t *u;
    void *tmp;
    bool changed = false;
    json_object_foreach_safe(e->utd, tmp, id, u)
    {
        int64_t first = json_integer_value(json_object_get(u, "first"));
        if (now - first > UTD_KEEP_MS) {
            pending_set(e, K_UTD, id, NULL);
            json_object_del(e->utd, id);
            changed = true;
        } else if (!json_is_true(json_object_get(u, "told")) &&
                   now - first >= (int64_t)m->o->crypto_key_wait_ms) {
            utd_notice(m, id, u);
            changed = true;
        }
    }
    if (changed)
        apply(m, NULL, NULL);
    arm_timer(m);
}

static void on_utd_timer(uv_timer_t *t)
{
    struct mx *m = t->data;
    if (m->e2ee && !m->stopping)
        utd_sweep(m);
}

static void arm_timer(struct mx *m)
{
    struct e2ee *e = m->e2ee;
    if (!e->timer_init || m->stopping)
        return;
    int64_t next = -1, now = fb_wall_ms();
    const char *id;
    json_t *u;
    json_object_foreach(e->utd, id, u)
    {
        if (json_is_true(json_object_get(u, "told")))
            continue;
        int64_t due = json_integer_value(json_object_get(u, "first")) + m->o->crypto_key_wait_ms;
        if (next < 0 || due < next)
            next = due;
    }
    if (next < 0) {
        uv_timer_stop(&e->timer);
        return;
    }
    uv_timer_start(&e->timer, on_utd_timer, next > now ? (uint64_t)(next - now) + 10 : 10, 0);
}

/* A decrypted event the parser may see: a message-like event only. The type inside the
 * encryption is the sender's choice: a decrypted m.room.member, m.room.encryption or access rule
 * would forge room state (the bot "leaving", a rule changed), so only m.room.message passes; the
 * rest becomes an event type the parser ignores. */
static json_t *sanitize(json_t *out)
{
    const char *t = json_string_value(json_object_get(out, "type"));
    if (t && strcmp(t, "m.room.message") == 0 && !json_object_get(out, "state_key"))
        return out;
    json_t *ig =
        json_pack("{s:s, s:O, s:O}", "type", "fb.decrypted.ignored", "event_id",
                  json_object_get(out, "event_id"), "sender", json_object_get(out, "sender"));
    json_decref(out);
    return ig;
}

/* Decrypts room `room`'s timeline events `evs` in place (a /sync timeline, or a gap's page), or,
 * `room` NULL, the events of a transaction, each of its room_id. */
static void decrypt_room_events(struct mx *m, const char *room, json_t *evs)
{
    struct e2ee *e = m->e2ee;
    size_t i;
    json_t *ev;
    json_array_foreach(evs, i, ev)
    {
        const char *t = json_string_value(json_object_get(ev, "type"));
        const char *sender = json_string_value(json_object_get(ev, "sender"));
        const char *id = json_string_value(json_object_get(ev, "event_id"));
        if (!t || strcmp(t, "m.room.encrypted") != 0 || !sender || !id ||
            strcmp(sender, m->o->user_id) == 0)
            continue;
        if (!json_object_get(json_object_get(ev, "content"), "ciphertext"))
            continue; /* a redacted encrypted event */
        json_t *out = NULL;
        if (room && !json_object_get(ev, "room_id")) /* /sync leaves it out of its events */
            json_object_set_new(ev, "room_id", json_string(room));
        const char *rm = json_string_value(json_object_get(ev, "room_id"));
        if (!rm)
            continue;
        char tag[FB_MX_TAG_LEN + 1];
        fb_mx_tag(rm, tag);
        int st = json_object_get(ev, "state_key") ? FB_MXC_BAD : fb_mxc_decrypt(e->c, ev, &out);
        if (st == FB_MXC_OK && out) {
            if (json_object_get(e->utd, id)) { /* before `ev`, which holds `id`, is replaced */
                pending_set(e, K_UTD, id, NULL);
                json_object_del(e->utd, id);
            }
            json_array_set_new(evs, i, sanitize(out));
            continue;
        }
        json_decref(out);
        if (st == FB_MXC_UNKNOWN_SESSION) {
            if (!json_object_get(e->utd, id)) {
                FB_INFO(MATRIX, "[matrix|%s] e2ee: no key yet for a message: asked", tag);
                json_t *u = json_pack("{s:s, s:O, s:I, s:b}", "room", rm, "ev", ev, "first",
                                      (json_int_t)fb_wall_ms(), "told", 0);
                json_object_set(e->utd, id, u);
                pending_set(e, K_UTD, id, u);
                key_request(m, ev);
            }
        } else if (st == FB_MXC_REPLAY) {
            FB_WARN(MATRIX, "[matrix|%s] e2ee: a replayed encrypted message refused", tag);
        } else {
            FB_WARN(MATRIX, "[matrix|%s] e2ee: an encrypted message refused (%s)", tag,
                    st == FB_MXC_BAD ? "bad ciphertext or payload" : "error");
        }
    }
}

void mx_e2ee_decrypt_events(struct mx *m, const char *room, json_t *events)
{
    if (m->e2ee && m->e2ee->c)
        decrypt_room_events(m, room, events);
}

/* A member or encryption change in `evs` (of `room`, or of each event's room_id when NULL): the
 * members and the settings are read again at the next send. */
static void note_changes(struct e2ee *e, const char *room, const json_t *evs)
{
    size_t i;
    json_t *ev;
    json_array_foreach(evs, i, ev)
    {
        const char *t = json_string_value(json_object_get(ev, "type"));
        const char *r = room ? room : json_string_value(json_object_get(ev, "room_id"));
        if (!r)
            continue;
        if (t && strcmp(t, "m.room.member") == 0)
            json_object_del(e->members, r);
        else if (t && strcmp(t, "m.room.encryption") == 0)
            json_object_del(e->enc, r);
    }
}

/* Decrypts what `body` brings (a /sync answer, or a transaction when `txn`), then the events
 * that waited for their key (in these to-device messages maybe), put at the front. */
static void decrypt_body(struct mx *m, json_t *body, bool txn)
{
    struct e2ee *e = m->e2ee;
    if (txn) {
        json_t *evs = json_object_get(body, "events");
        note_changes(e, NULL, evs);
        decrypt_room_events(m, NULL, evs);
    } else {
        json_t *join = json_object_get(json_object_get(body, "rooms"), "join");
        const char *room;
        json_t *r;
        json_object_foreach(join, room, r)
        {
            note_changes(e, room, json_object_get(json_object_get(r, "state"), "events"));
            note_changes(e, room, room_timeline(body, room));
            decrypt_room_events(m, room, room_timeline(body, room));
        }
    }
    const char *id;
    json_t *u;
    void *tmp;
    json_object_foreach_safe(e->utd, tmp, id, u)
    {
        json_t *out = NULL;
        if (fb_mxc_decrypt(e->c, json_object_get(u, "ev"), &out) == FB_MXC_OK && out) {
            char tag[FB_MX_TAG_LEN + 1];
            const char *rm = json_string_value(json_object_get(u, "room"));
            fb_mx_tag(rm, tag);
            FB_INFO(MATRIX, "[matrix|%s] e2ee: the key came: a waiting message is handled", tag);
            json_t *evs = json_object_get(body, "events");
            if (!txn)
                inject(body, rm, sanitize(out));
            else if (json_is_array(evs))
                json_array_insert_new(evs, 0, sanitize(out));
            else
                json_object_set_new(body, "events", json_pack("[o]", sanitize(out)));
            pending_set(e, K_UTD, id, NULL);
            json_object_del(e->utd, id);
        } else {
            json_decref(out);
        }
    }
}

static void sctx_free(struct sctx *s)
{
    if (s->view != s->body)
        json_decref(s->view);
    json_decref(s->retry);
    fb_free(s);
}

static void sctx_finish(struct sctx *s)
{
    struct mx *m = s->m;
    if (m->e2ee && m->e2ee->c && !m->stopping) {
        decrypt_body(m, s->body, s->txn);
        /* one-time keys and the fallback key */
        json_t *cnt = json_object_get(json_object_get(s->view, "device_one_time_keys_count"),
                                      "signed_curve25519");
        if (json_is_integer(cnt)) /* absent: unknown, not zero (no keys made on a guess) */
            m->e2ee->otk_count = (long)json_integer_value(cnt);
        json_t *fb = json_object_get(s->view, "device_unused_fallback_key_types");
        bool has = false;
        size_t i;
        json_t *v;
        json_array_foreach(fb, i, v) has =
            has || (json_is_string(v) && strcmp(json_string_value(v), "signed_curve25519") == 0);
        m->e2ee->fallback_missing = json_is_array(fb) && !has;
        upload_keys(m, NULL, NULL);
        todev_flush(m);
        arm_timer(m);
    }
    s->cont(m, s->body, 0, s->arg);
    sctx_free(s);
}

static void to_device_pass(struct sctx *s, json_t *events, bool last)
{
    struct mx *m = s->m;
    struct e2ee *e = m->e2ee;
    size_t i;
    json_t *ev;
    json_array_foreach(events, i, ev)
    {
        char type[64] = "";
        int st = fb_mxc_to_device(e->c, ev, type);
        const char *sender = json_string_value(json_object_get(ev, "sender"));
        if (st == FB_MXC_UNKNOWN_DEVICE && !last && sender) {
            fb_mxc_track_user(e->c, sender);
            fb_mxc_device_list_changed(e->c, sender);
            json_array_append(s->retry, ev);
        } else if (st == FB_MXC_OK) {
            FB_DEBUG(MATRIX, "e2ee: to-device %s handled", type);
        } else if (st == FB_MXC_IGNORED) {
            FB_DEBUG(MATRIX, "e2ee: to-device %s ignored", type[0] ? type : "event");
        } else {
            FB_WARN(MATRIX, "e2ee: a to-device message refused (%s)",
                    st == FB_MXC_UNKNOWN_DEVICE ? "unknown device"
                    : st == FB_MXC_REPLAY       ? "replayed"
                    : st == FB_MXC_BAD          ? "bad ciphertext or payload"
                                                : "error");
        }
    }
}

static void on_retry_query(struct mx *m, int status, void *arg)
{
    struct sctx *s = arg;
    if (status || !m->e2ee || m->stopping) {
        /* Their room keys must not be dropped: the same /sync is asked again (its to-device
         * events come again; what was handled is in memory and found again). */
        FB_INFO(MATRIX, "e2ee: devices of to-device senders not read: the sync is retried");
        json_decref(s->body);
        s->cont(m, NULL, FB_EAGAIN, s->arg);
        sctx_free(s);
        return;
    }
    to_device_pass(s, s->retry, true);
    sctx_finish(s);
}

/* The steps both shapes share: device lists, to-device events (those from devices not known yet
 * once more after a /keys/query), then sctx_finish(). `view` is `body` or owned. */
static void e2ee_run(struct mx *m, json_t *body, json_t *view, bool txn,
                     void (*cont)(struct mx *m, json_t *body, int status, void *arg), void *arg)
{
    struct e2ee *e = m->e2ee;
    struct sctx *s = fb_calloc(1, sizeof(*s));
    s->m = m;
    s->body = body;
    s->view = view;
    s->txn = txn;
    s->cont = cont;
    s->arg = arg;
    s->retry = json_array();
    json_t *dl = json_object_get(view, "device_lists");
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(dl, "changed"), i, v) if (json_is_string(v))
        fb_mxc_device_list_changed(e->c, json_string_value(v));
    json_array_foreach(json_object_get(dl, "left"), i, v) if (json_is_string(v))
        fb_mxc_device_list_left(e->c, json_string_value(v));
    to_device_pass(s, json_object_get(json_object_get(view, "to_device"), "events"), false);
    if (json_array_size(s->retry) > 0) {
        query_outdated(m, on_retry_query, s);
        return;
    }
    sctx_finish(s);
}

void mx_e2ee_sync(struct mx *m, json_t *body,
                  void (*cont)(struct mx *m, json_t *body, int status, void *arg), void *arg)
{
    e2ee_run(m, body, body, false, cont, arg);
}

void mx_e2ee_txn(struct mx *m, json_t *txn,
                 void (*cont)(struct mx *m, json_t *txn, int status, void *arg), void *arg)
{
    json_t *view = fb_mx_txn_crypto(txn, m->o->user_id, m->device_id);
    e2ee_run(m, txn, view, true, cont, arg);
}

/* ---------------------------------------------------------------------------------------- */
/* Sending in encrypted rooms */

struct ejob {
    struct mx *m;
    char *room, *txn;
    char *todev_txn;    /* the room keys to send first, or NULL */
    json_t *todev_body; /* their PUT body, in e->todev once saved */
    json_t *content;
    json_t *todev;      /* {user: {device: content}} to send before the message */
    json_t *need_claim; /* the last claim's question */
    int claims;
    mx_e2ee_cb cb;
    void *arg;
    struct ejob *next;
    bool started; /* holds the room's turn (e->busy) */
};

static void job_next(struct mx *m);

/* Room keys that fb_mxc_share() recorded as given must go out even when the job fails: kept
 * with the state (written together) and sent by todev_flush() (at the next /sync). */
static void keep_todev(struct ejob *j)
{
    struct e2ee *e = j->m->e2ee;
    if (!e || !j->todev || json_object_size(j->todev) == 0)
        return;
    char *txn = new_txn(e, "k");
    json_t *b = json_pack("{s:O}", "messages", j->todev);
    json_object_set(e->todev, txn, b);
    pending_set(e, K_TODEV, txn, b);
    fb_free(txn);
    json_decref(j->todev); /* the body holds this very object ("O"): replaced, not cleared */
    j->todev = NULL;
    apply(j->m, NULL, NULL);
}

static void job_end(struct ejob *j, int rc, json_t *enc)
{
    struct mx *m = j->m;
    struct e2ee *e = m->e2ee;
    if (rc)
        keep_todev(j);
    if (e && j->started)
        json_object_del(e->busy, j->room);
    j->cb(m, rc, enc, j->arg);
    json_decref(enc);
    json_decref(j->content);
    json_decref(j->todev);
    json_decref(j->todev_body);
    json_decref(j->need_claim);
    fb_free(j->room);
    fb_free(j->txn);
    bool started = j->started;
    fb_free(j->todev_txn);
    fb_free(j);
    if (e && started)
        job_next(m);
}

static void job_members(struct ejob *j);
static void job_share(struct ejob *j);

static void job_sent(struct ejob *j)
{
    json_t *enc = json_object_get(j->content, "fb_enc");
    json_incref(enc);
    job_end(j, 0, enc);
}

static void on_job_saved(struct mx *m, int status, void *arg)
{
    struct ejob *j = arg;
    json_t *body = j->todev_body;
    /* Only now may todev_flush() see the room keys: before, a flush (a /sync answer handled
     * meanwhile) sent them without this job, which then sent the message without waiting. */
    if (body && m->e2ee)
        json_object_set(m->e2ee->todev, j->todev_txn, body);
    if (status || m->stopping) { /* stopping: no message without its keys; both at next start */
        job_end(j, status ? FB_EAGAIN : FB_ECANCELED, NULL);
        return;
    }
    if (body && todev_put(m, j->todev_txn, body, j))
        return; /* job_sent() once the room keys are out */
    job_sent(j);
}

static void job_encrypt(struct ejob *j)
{
    struct mx *m = j->m;
    struct e2ee *e = m->e2ee;
    json_t *enc = fb_mxc_encrypt(e->c, j->room, "m.room.message", j->content);
    if (!enc) {
        FB_WARN(MATRIX, "e2ee: encryption failed");
        job_end(j, FB_EAGAIN, NULL);
        return;
    }
    if (j->todev && json_object_size(j->todev) > 0) {
        j->todev_txn = new_txn(e, "k");
        j->todev_body = json_pack("{s:O}", "messages", j->todev);
        pending_set(e, K_TODEV, j->todev_txn, json_incref(j->todev_body));
        json_decref(j->todev); /* in todev_body now (the same object): keep_todev() must not */
        j->todev = NULL;       /* send it twice */
    }
    pending_set(e, K_SENT, j->txn,
                json_pack("{s:O, s:I}", "content", enc, "at", (json_int_t)fb_wall_ms()));
    json_object_set_new(j->content, "fb_enc", enc);
    apply(m, on_job_saved, j);
}

static void on_claim(struct mx *m, int err, int status, json_t *body,
                     const fb_http_response_t *resp, void *arg)
{
    (void)resp;
    struct ejob *j = arg;
    if (!m->e2ee || m->stopping) {
        job_end(j, FB_ECANCELED, NULL);
        return;
    }
    if (err) {
        FB_INFO(MATRIX, "e2ee: /keys/claim failed (%s, HTTP %d)", fb_err_name(err), status);
        job_end(j, FB_EAGAIN, NULL);
        return;
    }
    int n = fb_mxc_claim_result(m->e2ee->c, j->need_claim, body, fb_wall_ms());
    FB_DEBUG(MATRIX, "e2ee: %d Olm session(s) made from claimed keys", n);
    job_share(j);
}

static void job_share(struct ejob *j)
{
    struct mx *m = j->m;
    struct e2ee *e = m->e2ee;
    json_t *members = json_object_get(e->members, j->room);
    json_t *enc = json_object_get(e->enc, j->room);
    json_t *td = NULL, *claim = NULL;
    int rc = fb_mxc_share(e->c, j->room, members, enc, fb_wall_ms(), &td, &claim);
    if (rc < 0) {
        json_decref(td);
        json_decref(claim);
        job_end(j, FB_EAGAIN, NULL);
        return;
    }
    if (td) {
        if (!j->todev)
            j->todev = json_object();
        const char *u;
        json_t *devs;
        json_object_foreach(td, u, devs)
        {
            json_t *have = json_object_get(j->todev, u);
            if (have)
                json_object_update(have, devs);
            else
                json_object_set(j->todev, u, devs);
        }
        json_decref(td);
    }
    if (claim && j->claims++ == 0) {
        json_decref(j->need_claim);
        j->need_claim = claim;
        json_t *b = json_pack("{s:O, s:i}", "one_time_keys", claim, "timeout", CLAIM_TIMEOUT);
        int s = mx_call(m, "POST", CLIENT_PATH "/keys/claim", b, on_claim, j);
        json_decref(b);
        if (s)
            job_end(j, FB_EAGAIN, NULL);
        return;
    }
    json_decref(claim);
    job_encrypt(j);
}

static void on_job_query(struct mx *m, int status, void *arg)
{
    struct ejob *j = arg;
    if (status || !m->e2ee) {
        job_end(j, status ? status : FB_ECANCELED, NULL);
        return;
    }
    job_share(j);
}

static void on_job_members(struct mx *m, int err, int status, json_t *body,
                           const fb_http_response_t *resp, void *arg)
{
    (void)resp;
    struct ejob *j = arg;
    struct e2ee *e = m->e2ee;
    json_t *joined = json_object_get(body, "joined");
    if (!e || err || !json_is_object(joined)) {
        job_end(j, err && status == 403 ? FB_EPROTO : FB_EAGAIN, NULL);
        return;
    }
    json_t *list = json_array();
    const char *u;
    json_t *v;
    json_object_foreach(joined, u, v)
    {
        json_array_append_new(list, json_string(u));
        fb_mxc_track_user(e->c, u);
    }
    json_object_set_new(e->members, j->room, list);
    job_members(j);
}

static void job_members(struct ejob *j)
{
    struct mx *m = j->m;
    struct e2ee *e = m->e2ee;
    if (!json_object_get(e->members, j->room)) {
        char *path = mx_room_path(j->room, "/joined_members");
        int s = mx_call(m, "GET", path, NULL, on_job_members, j);
        fb_free(path);
        if (s)
            job_end(j, FB_EAGAIN, NULL);
        return;
    }
    query_outdated(m, on_job_query, j);
}

static void job_start(struct ejob *j)
{
    j->started = true;
    json_object_set_new(j->m->e2ee->busy, j->room, json_true());
    job_members(j);
}

static void job_next(struct mx *m)
{
    struct e2ee *e = m->e2ee;
    struct ejob **pp = &e->queue, *prev = NULL;
    while (*pp) {
        struct ejob *j = *pp;
        if (!json_object_get(e->busy, j->room)) {
            *pp = j->next;
            if (e->queue_tail == j)
                e->queue_tail = prev;
            j->next = NULL;
            job_start(j);
            return;
        }
        prev = j;
        pp = &j->next;
    }
}

static void job_enqueue(struct ejob *j)
{
    struct e2ee *e = j->m->e2ee;
    if (!json_object_get(e->busy, j->room)) {
        job_start(j);
        return;
    }
    if (e->queue_tail)
        e->queue_tail->next = j;
    else
        e->queue = j;
    e->queue_tail = j;
}

static void on_sent_lookup(struct mx *m, int status, redisReply *reply, void *arg)
{
    struct ejob *j = arg;
    if (status || !m->e2ee) {
        job_end(j, status ? FB_EAGAIN : FB_ECANCELED, NULL);
        return;
    }
    if (reply && reply->type == REDIS_REPLY_STRING) {
        json_t *v = json_loads(reply->str, 0, NULL);
        json_t *c = json_object_get(v, "content");
        if (json_is_object(c)) { /* a resend: the same ciphertext */
            json_incref(c);
            json_decref(v);
            j->cb(m, 0, c, j->arg);
            json_decref(c);
            j->cb = NULL;
            json_decref(j->content);
            fb_free(j->room);
            fb_free(j->txn);
            fb_free(j);
            return;
        }
        json_decref(v);
    }
    /* A new encrypted room: the first messages wait (mx_e2ee_first_wait_ms()); the entry stays
     * in the outbox and is sent again when the wait is over (mx_send.c's on_encrypted()). */
    int64_t wait = mx_e2ee_first_wait_ms(m, j->room);
    if (wait > 0) {
        char tag[FB_MX_TAG_LEN + 1];
        mx_conv_tag(j->room, tag);
        FB_DEBUG(MATRIX, "[matrix|%s] e2ee: a new room: the message waits %lld ms", tag,
                 (long long)wait);
        m->e2ee->first_waits++;
        job_end(j, FB_ENOTYET, NULL);
        return;
    }
    job_enqueue(j);
}

static void job_lookup(struct ejob *j)
{
    const char *argv[] = {"HGET", j->m->e2ee->keys[K_SENT], j->txn};
    if (mx_rcmd_argv(j->m, on_sent_lookup, j, 3, argv))
        job_end(j, FB_EAGAIN, NULL);
}

static void on_enc_state(struct mx *m, int err, int status, json_t *body,
                         const fb_http_response_t *resp, void *arg)
{
    (void)resp;
    struct ejob *j = arg;
    struct e2ee *e = m->e2ee;
    if (!e) {
        job_end(j, FB_ECANCELED, NULL);
        return;
    }
    if (!err && json_is_object(body) && json_is_string(json_object_get(body, "algorithm")) &&
        strcmp(json_string_value(json_object_get(body, "algorithm")), FB_MXC_MEGOLM) == 0) {
        json_object_set(e->enc, j->room, body);
    } else if (err == FB_EHTTP && status == 404) {
        json_object_set_new(e->enc, j->room, json_null());
    } else if (!err) {
        FB_WARN(MATRIX, "e2ee: a room encrypted with an unknown algorithm: not sent");
        job_end(j, FB_EPROTO, NULL);
        return;
    } else {
        job_end(j, status == 403 ? FB_EPROTO : FB_EAGAIN, NULL);
        return;
    }
    if (json_is_null(json_object_get(e->enc, j->room))) {
        job_end(j, FB_DECLINED, NULL); /* a clear room: sent as it is */
        return;
    }
    job_lookup(j);
}

int mx_e2ee_encrypt(struct mx *m, const char *room, const char *txn, const json_t *content,
                    mx_e2ee_cb cb, void *arg)
{
    struct e2ee *e = m->e2ee;
    if (!e)
        return FB_EINVAL;
    if (!mx_e2ee_ready(m))
        return FB_EAGAIN;
    struct ejob *j = fb_calloc(1, sizeof(*j));
    j->m = m;
    j->room = fb_strdup(room);
    j->txn = fb_strdup(txn);
    j->content = json_deep_copy(content);
    j->cb = cb;
    j->arg = arg;
    json_t *known = json_object_get(e->enc, room);
    if (known && json_is_null(known)) { /* a clear room */
        json_decref(j->content);
        fb_free(j->room);
        fb_free(j->txn);
        fb_free(j);
        return FB_DECLINED;
    }
    if (known) {
        job_lookup(j);
        return 0;
    }
    char *path = mx_room_path(room, "/state/m.room.encryption/");
    int s =
        mx_call_full(m, "GET", path, NULL, 0, &mx_no_retry, true, false, false, on_enc_state, j);
    fb_free(path);
    if (s) {
        json_decref(j->content);
        fb_free(j->room);
        fb_free(j->txn);
        fb_free(j);
        return FB_EAGAIN;
    }
    return 0;
}

void mx_e2ee_sent(struct mx *m, const char *txn)
{
    struct e2ee *e = m->e2ee;
    if (!e || !txn)
        return;
    /* The homeserver holds the event under this txn now: a resend with the same txn gets it back
     * whatever its content, so the ciphertext is not needed any more. */
    pending_set(e, K_SENT, txn, NULL);
    apply(m, NULL, NULL);
}

void mx_e2ee_room_encrypted(struct mx *m, const char *room)
{
    if (m->e2ee)
        json_object_del(m->e2ee->enc, room);
}

void mx_e2ee_joined(struct mx *m, const char *room)
{
    struct e2ee *e = m->e2ee;
    unsigned delay = m->o->crypto_first_message_delay_ms;
    if (!e || !delay)
        return;
    int64_t now = fb_wall_ms();
    /* Only the rooms still in their wait are kept: the map stays as small as the joins of the
     * last `delay` ms. */
    const char *r;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(e->joined, tmp, r, v)
    {
        if (now - json_integer_value(v) >= (int64_t)delay)
            json_object_del(e->joined, r);
    }
    json_object_set_new(e->joined, room, json_integer(now));
}

int64_t mx_e2ee_first_wait_ms(struct mx *m, const char *room)
{
    struct e2ee *e = m->e2ee;
    if (!e || !room)
        return 0;
    json_t *at = json_object_get(e->joined, room);
    if (!at)
        return 0;
    int64_t left =
        json_integer_value(at) + (int64_t)m->o->crypto_first_message_delay_ms - fb_wall_ms();
    if (left <= 0) {
        json_object_del(e->joined, room);
        return 0;
    }
    return left;
}

void mx_e2ee_forget_room(struct mx *m, const char *room)
{
    struct e2ee *e = m->e2ee;
    if (!e || !e->c)
        return;
    fb_mxc_forget_room(e->c, room);
    json_object_del(e->members, room);
    json_object_del(e->enc, room);
    json_object_del(e->joined, room);
    apply(m, NULL, NULL);
}

/* ---------------------------------------------------------------------------------------- */
/* Life cycle */

int mx_e2ee_init(struct mx *m)
{
    const fb_matrix_opts_t *o = m->o;
    if (!o->crypto_pickle_key_file)
        return 0;
    struct e2ee *e = fb_calloc(1, sizeof(*e));
    e->m = m;
    const char *why = NULL;
    int rc = fb_config_read_secret(o->crypto_pickle_key_file, &e->pickle_key, &why);
    if (rc) {
        FB_ERR(MATRIX, "matrix.crypto.pickle_key_file '%s' cannot be used: %s",
               o->crypto_pickle_key_file, why ? why : strerror(-rc));
        fb_free(e);
        return FB_ECONFIG;
    }
    e->pickle_key_len = strlen(e->pickle_key);
    if (e->pickle_key_len < MIN_PICKLE_KEY) {
        FB_ERR(MATRIX,
               "matrix.crypto.pickle_key_file '%s' holds %zu bytes: at least %d are needed "
               "(e.g. head -c 32 /dev/urandom | base64)",
               o->crypto_pickle_key_file, e->pickle_key_len, MIN_PICKLE_KEY);
        explicit_bzero(e->pickle_key, e->pickle_key_len);
        fb_free(e->pickle_key);
        fb_free(e);
        return FB_ECONFIG;
    }
    const char *prefix = m->core->cfg->store.key_prefix;
    for (int i = 0; i < K_N; i++)
        e->keys[i] = fb_asprintf("%s{g}:matrix:e2ee:%s", prefix ? prefix : "", key_names[i]);
    e->enc = json_object();
    e->members = json_object();
    e->joined = json_object();
    e->utd = json_object();
    e->todev = json_object();
    e->todev_out = json_object();
    e->pending = json_object();
    e->pseq = json_object();
    e->busy = json_object();
    e->otk_count = -1;
    m->e2ee = e;
    FB_INFO(MATRIX, "e2ee: end-to-end encryption on (libolm)");
    return 0;
}

void mx_e2ee_start(struct mx *m)
{
    struct e2ee *e = m->e2ee;
    if (!e || e->timer_init)
        return;
    uv_timer_init(m->core->loop, &e->timer);
    e->timer.data = m;
    e->timer_init = true;
}

static void on_e2ee_timer_closed(uv_handle_t *h)
{
    struct mx *m = h->data;
    mx_op_end(m);
}

void mx_e2ee_stop(struct mx *m)
{
    struct e2ee *e = m->e2ee;
    if (!e || !e->timer_init || uv_is_closing((uv_handle_t *)&e->timer))
        return;
    uv_timer_stop(&e->timer);
    mx_op_begin(m);
    uv_close((uv_handle_t *)&e->timer, on_e2ee_timer_closed);
}

void mx_e2ee_free(struct mx *m)
{
    struct e2ee *e = m->e2ee;
    if (!e)
        return;
    while (e->queue) {
        struct ejob *j = e->queue;
        e->queue = j->next;
        j->cb(m, FB_ECANCELED, NULL, j->arg);
        json_decref(j->content);
        json_decref(j->todev);
        json_decref(j->need_claim);
        fb_free(j->room);
        fb_free(j->txn);
        fb_free(j->todev_txn);
        fb_free(j);
    }
    fb_mxc_free(e->c);
    explicit_bzero(e->pickle_key, e->pickle_key_len);
    fb_free(e->pickle_key);
    for (int i = 0; i < K_N; i++)
        fb_free(e->keys[i]);
    fb_free(e->device);
    json_decref(e->enc);
    json_decref(e->members);
    json_decref(e->joined);
    json_decref(e->utd);
    json_decref(e->todev);
    json_decref(e->todev_out);
    json_decref(e->pending);
    json_decref(e->pseq);
    json_decref(e->busy);
    fb_free(e);
    m->e2ee = NULL;
}

void mx_e2ee_stats(struct mx *m, json_t *out)
{
    struct e2ee *e = m->e2ee;
    json_t *s = json_object();
    json_object_set_new(s, "enabled", json_boolean(e != NULL));
    if (e) {
        json_object_set_new(s, "ready", json_boolean(mx_e2ee_ready(m)));
        json_object_set_new(s, "cross_signed", json_boolean(e->c && fb_mxc_cross_signed(e->c)));
        json_object_set_new(s, "undecryptable_waiting",
                            json_integer((json_int_t)json_object_size(e->utd)));
        json_object_set_new(s, "to_device_pending",
                            json_integer((json_int_t)json_object_size(e->todev)));
        json_object_set_new(s, "first_message_waits", json_integer((json_int_t)e->first_waits));
    }
    json_object_set_new(out, "e2ee", s);
}
