/* SPDX-License-Identifier: MIT */
/*
 * mx_appservice.c - the Matrix adapter's application-service mode: the transactions, users,
 * rooms and ping routes the homeserver calls (docs/internals/MATRIX.md).
 */
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
#include "matrix.h"
#include "mx_util.h"

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

struct mark_ctx {
    fb_http_req_t *req;
    json_t *taken; /* the crypto write, put back if Redis failed */
    /* the transaction's mark was not read before (txn_parsed()): the one the script replaced
     * says whether it was a replay or an id used before for other events */
    bool unseen;
    char mark[FB_MX_TXN_DIGEST_LEN + 1];
};

/* Logs what the mark `old` found at the transaction's key says, for a transaction whose mark
 * is `mark`: nothing (a new one), a replay (the same events: handled again, each of them a
 * duplicate the router dropped) or an id the homeserver used before for other events. */
static void txn_log_seen(fb_http_req_t *req, const char *old, const char *mark)
{
    if (!old || !*old)
        return;
    /* "1" on either side (a transaction without event ids, or a mark written before the
     * digests) cannot be told apart: a replay too */
    if (strcmp(old, mark) == 0 || strcmp(old, "1") == 0 || strcmp(mark, "1") == 0)
        FB_INFO(MATRIX, "%s transaction replayed: acknowledged, not handled again",
                fb_http_req_tag(req));
    else
        FB_WARN(MATRIX,
                "%s transaction id reused for other events (a homeserver that numbers its "
                "transactions again, as Synapse on SQLite does after a restart): handled",
                fb_http_req_tag(req));
}

/* A transaction handled and its mark written: 200. */
static void txn_acknowledged(struct mx *m, fb_http_req_t *req)
{
    m->txns++;
    m->last_txn_ms = fb_wall_ms();
    mx_set_state(m, "ok");
    as_json(req, 200, NULL, NULL);
}

static void on_txn_marked(struct mx *m, int status, redisReply *reply, void *arg)
{
    struct mark_ctx *mc = arg;
    fb_http_req_t *req = mc->req;
    mx_e2ee_write_done(m, mc->taken, status);
    if (status) {
        fb_free(mc);
        as_json(req, 503, "M_UNKNOWN", "try again later");
        return;
    }
    if (mc->unseen)
        txn_log_seen(req, fb_redis_reply_str(reply, NULL), mc->mark);
    fb_free(mc);
    txn_acknowledged(m, req);
}

/* KEYS[1] the transaction's mark, KEYS[2..6] the crypto hashes (mx_e2ee.h); ARGV[1] the mark's
 * TTL, ARGV[2] the crypto write (or ""), ARGV[3] the mark's value (fb_mx_txn_digest(), "1" when
 * the transaction has no event id). Returns the mark it replaced (nil: none). The crypto state a
 * transaction changed (an Olm session that advanced, a room key) is written with the mark that says
 * it was handled: both or neither, so a transaction the homeserver sends again finds the state it
 * left. */
static const char txn_mark_script[] =
    "#!lua\n" E2EE_APPLY_LUA "e2ee_apply({KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]}, ARGV[2])\n"
    "return redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[1], 'GET')\n";

/* The router's COMMIT fragment for this adapter's conversations (fb_adapter_ops_t.commit_lua).
 * `A.arg` (fb_inbound_t.commit_arg), set for the one event of a transaction that holds nothing
 * else (txn_parsed()): "<TTL ms> <mark> <key>", the transaction's mark, written in the COMMIT
 * that handles the event, so both or neither, and no script of the transaction's own after it
 * (issue 17: one round trip and two commands a transaction). `AO`, "1" and the mark the SET
 * replaced, tells mx_committed() (an id used before for other events is logged there). The
 * key is a global one (`{g}:matrix:txn:ID`), not declared: like the COMMIT's other global keys,
 * not Cluster-safe yet (docs/internals/REDIS.md, the audit). Written on a forget too: the mark
 * is the transaction's (a digest of event ids), not the conversation's. */
const char mx_as_commit_lua[] =
    "do\n"
    "  local ttl, mark, key = string.match(A.arg, '^(%d+) (%S+) (.+)$')\n"
    "  if key then\n"
    "    AO = '1' .. (redis.call('SET', key, mark, 'PX', ttl, 'GET') or '')\n"
    "  end\n"
    "end\n";

void mx_as_txn_committed(struct batch *bt, const char *old, size_t len)
{
    bt->txn_marked = true;
    char prev[FB_MX_TXN_DIGEST_LEN + 1];
    if (!len || len >= sizeof(prev) || !bt->owner)
        return;
    memcpy(prev, old, len);
    prev[len] = '\0';
    /* Not the same events: a replay's event is a duplicate, whose COMMIT does not run. */
    if (strcmp(prev, bt->txn_mark) != 0)
        txn_log_seen(bt->owner, prev, bt->txn_mark);
}

static void on_txn_batch_done(struct batch *bt, int status)
{
    struct mx *m = bt->m;
    fb_http_req_t *req = bt->owner;
    char *key = bt->txn_key;
    char mark[sizeof(bt->txn_mark)];
    memcpy(mark, bt->txn_mark, sizeof(mark));
    bool router_full = bt->router_full;
    bool marked = bt->txn_marked;
    bool unseen = bt->txn_unseen;
    bt->txn_key = NULL;
    mx_batch_free(bt);
    m->as_batches--;
    if (status && router_full) {
        /* Backpressure: the router is full of other events; the homeserver sends this
         * transaction again after a back-off, and its events already handled are duplicates
         * the router drops. */
        m->as_txn_backoff++;
        FB_INFO(MATRIX, "%s transaction deferred: the router is full, the homeserver will retry",
                fb_http_req_tag(req));
        as_json(req, 503, "M_UNKNOWN", "busy: try again later");
    } else if (status) {
        FB_INFO(MATRIX, "%s transaction not handled (%s): the homeserver will retry",
                fb_http_req_tag(req), fb_err_name(status));
        as_json(req, 503, "M_UNKNOWN", "try again later");
    } else if (marked) { /* the COMMIT of its one event wrote the mark (mx_as_commit_lua) */
        txn_acknowledged(m, req);
    } else {
        char ttl[24];
        snprintf(ttl, sizeof(ttl), "%llu",
                 (unsigned long long)m->o->as_txn_retention_hours * 3600000ull);
        struct mark_ctx *mc = fb_calloc(1, sizeof(*mc));
        mc->req = req;
        mc->unseen = unseen;
        memcpy(mc->mark, mark, sizeof(mc->mark));
        char *cw = mx_e2ee_take_write(m, &mc->taken);
        const char *argv[3 + 1 + MX_E2EE_NKEYS + 3];
        argv[0] = "EVAL";
        argv[1] = txn_mark_script;
        argv[2] = "6";
        argv[3] = key;
        mx_e2ee_keys_argv(m, argv + 4);
        argv[4 + MX_E2EE_NKEYS] = ttl;
        argv[5 + MX_E2EE_NKEYS] = cw ? cw : "";
        argv[6 + MX_E2EE_NKEYS] = mark;
        int rc = mx_rcmd_argv(m, on_txn_marked, mc, 7 + MX_E2EE_NKEYS, argv);
        if (cw) {
            explicit_bzero(cw, strlen(cw));
            fb_free(cw);
        }
        if (rc) {
            mx_e2ee_write_done(m, mc->taken, rc);
            fb_free(mc);
            as_json(req, 503, "M_UNKNOWN", "try again later");
        }
    }
    fb_free(key);
}

struct txn_ctx {
    fb_http_req_t *req;
    char *key;
    /* what the mark will say: the events' digest, or "1"; "" until computed (txn_parse()) */
    char mark[FB_MX_TXN_DIGEST_LEN + 1];
    bool unseen; /* the mark not read yet: read after the parse, if at all (txn_parsed()) */
};

/* The mark of a transaction's body: the digest of its event ids, or "1" when it has none. */
static void txn_mark_of(const char *body, size_t len, char mark[FB_MX_TXN_DIGEST_LEN + 1])
{
    if (!fb_mx_txn_digest(body, len, mark))
        snprintf(mark, FB_MX_TXN_DIGEST_LEN + 1, "1");
}

/* Parses a transaction's body into its batch, and computes its mark from the same parse when
 * it is still to compute. Pure: runs on the loop or on a pool thread. */
static int txn_parse_marked(const char *body, size_t len, const fb_mx_parse_opts_t *po,
                            struct batch *bt)
{
    if (bt->txn_mark[0])
        return fb_mx_parse_txn(body, len, po, &bt->b);
    int rc = fb_mx_parse_txn_digest(body, len, po, &bt->b, bt->txn_mark);
    if (!bt->txn_mark[0])
        snprintf(bt->txn_mark, sizeof(bt->txn_mark), "1");
    return rc;
}

/* The batch's transaction seen before with the same events (`old`, the mark found): answered
 * 200 without handling it again, and true. */
static bool txn_replayed(struct batch *bt, const char *old)
{
    fb_http_req_t *req = bt->owner;
    if (!old)
        return false;
    txn_log_seen(req, old, bt->txn_mark);
    if (strcmp(old, bt->txn_mark) != 0 && strcmp(old, "1") != 0 && strcmp(bt->txn_mark, "1") != 0)
        return false; /* other events: handled (logged above) */
    bt->owner = NULL;
    mx_batch_free(bt);
    as_json(req, 200, NULL, NULL);
    return true;
}

static void on_txn_seen_parsed(struct mx *m, int status, redisReply *reply, void *arg)
{
    struct batch *bt = arg;
    fb_http_req_t *req = bt->owner;
    if (status) {
        bt->owner = NULL;
        mx_batch_free(bt);
        as_json(req, 503, "M_UNKNOWN", "try again later");
        return;
    }
    bt->txn_unseen = false;
    if (txn_replayed(bt, fb_redis_reply_str(reply, NULL)))
        return;
    m->as_batches++;
    mx_batch_pump(bt);
}

/* A transaction's body parsed (rc 0) or not: hands its batch to the router, or answers 400.
 * Without encryption the mark is read only now (txn_unseen), and not at all for a transaction
 * of one event the router handles (a message, the bot's join): its mark rides on that event's
 * COMMIT (mx_as_commit_lua, which also says what it replaced), and a replay of it finds the
 * event a duplicate there, handled by no one; the batch's end then writes the mark and logs the
 * replay (on_txn_marked()). Issue 17: two round trips less per transaction. With encryption the
 * mark was read before (on_txn_seen()) and is written with the crypto state the transaction
 * changed (on_txn_batch_done()). */
static void txn_parsed(struct mx *m, struct batch *bt, int rc)
{
    fb_http_req_t *req = bt->owner;
    if (rc) {
        FB_WARN(MATRIX, "%s transaction body is not {\"events\": [...]}: refused",
                fb_http_req_tag(req));
        bt->owner = NULL;
        mx_batch_free(bt);
        as_json(req, 400, "M_BAD_JSON", "expected an object with an events array");
        return;
    }
    mx_log_parse(m, &bt->b, fb_http_req_tag(req));
    if (bt->txn_unseen && bt->b.n == 1 &&
        (bt->b.actions[0].kind == FB_MX_MESSAGE || bt->b.actions[0].kind == FB_MX_JOINED)) {
        bt->txn_arg =
            fb_asprintf("%llu %s %s", (unsigned long long)m->o->as_txn_retention_hours * 3600000ull,
                        bt->txn_mark, bt->txn_key);
    } else if (bt->txn_unseen) {
        const char *argv[] = {"GET", bt->txn_key};
        if (mx_rcmd_argv(m, on_txn_seen_parsed, bt, 2, argv)) {
            bt->owner = NULL;
            mx_batch_free(bt);
            as_json(req, 503, "M_UNKNOWN", "try again later");
        }
        return;
    }
    m->as_batches++;
    mx_batch_pump(bt);
}

/* Bodies above this are parsed on libuv's thread pool: a transaction of thousands of events (a
 * megabyte of JSON) took the loop for a quarter of a second, and /healthz with it (issue #18). */
#define TXN_PARSE_OFFLOAD_BYTES (64u << 10)

struct parse_work {
    uv_work_t w;
    struct batch *bt;
    const char *body; /* the request's, valid until it is answered */
    size_t len;
    fb_mx_parse_opts_t po; /* borrows the configuration: read-only while the daemon runs */
    int rc;
};

static void on_parse_work(uv_work_t *w)
{
    struct parse_work *pw = w->data; /* a pool thread: both functions are pure */
    pw->rc = txn_parse_marked(pw->body, pw->len, &pw->po, pw->bt);
}

static void on_parse_done(uv_work_t *w, int status)
{
    struct parse_work *pw = w->data;
    struct batch *bt = pw->bt;
    int rc = status ? FB_ECANCELED : pw->rc;
    fb_free(pw);
    txn_parsed(bt->m, bt, rc);
}

/* Parses a transaction's body into a batch and hands it to the router; takes tc. `body` must stay
 * valid until the request is answered when it is the request's own (`own_body`), else only for
 * the call. */
static void txn_parse(struct mx *m, struct txn_ctx *tc, const char *body, size_t len, bool own_body)
{
    fb_http_req_t *req = tc->req;
    struct batch *bt = mx_batch_new(m);
    bt->done = on_txn_batch_done;
    bt->owner = req;
    bt->txn_key = tc->key;
    bt->txn_unseen = tc->unseen;
    memcpy(bt->txn_mark, tc->mark, sizeof(bt->txn_mark));
    fb_free(tc);
    fb_mx_parse_opts_t po = mx_parse_opts(m, true);
    if (own_body && len > TXN_PARSE_OFFLOAD_BYTES) { /* the mark too, when still to compute */
        struct parse_work *pw = fb_calloc(1, sizeof(*pw));
        pw->w.data = pw;
        pw->bt = bt;
        pw->body = body;
        pw->len = len;
        pw->po = po;
        if (uv_queue_work(m->core->loop, &pw->w, on_parse_work, on_parse_done) == 0)
            return; /* the batch holds an op: the adapter's stop waits for it */
        fb_free(pw);
    }
    txn_parsed(m, bt, txn_parse_marked(body, len, &po, bt));
}

static void txn_ctx_fail(struct txn_ctx *tc, int status, const char *errc, const char *msg)
{
    as_json(tc->req, status, errc, msg);
    fb_free(tc->key);
    fb_free(tc);
}

static void on_txn_decrypted(struct mx *m, json_t *doc, int status, void *arg)
{
    struct txn_ctx *tc = arg;
    if (status) { /* its to-device senders' devices not read: sent again by the homeserver */
        json_decref(doc);
        txn_ctx_fail(tc, 503, "M_UNKNOWN", "try again later");
        return;
    }
    if (m->stopping || !m->a) {
        json_decref(doc);
        txn_ctx_fail(tc, 503, "M_UNKNOWN", "shutting down");
        return;
    }
    char *s = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (!s) {
        txn_ctx_fail(tc, 503, "M_UNKNOWN", "try again later");
        return;
    }
    txn_parse(m, tc, s, strlen(s), false);
    explicit_bzero(s, strlen(s)); /* decrypted messages */
    free(s);                      /* fb-lint: allow free (jansson's allocation) */
}

static void on_txn_seen(struct mx *m, int status, redisReply *reply, void *arg)
{
    struct txn_ctx *tc = arg;
    fb_http_req_t *req = tc->req;
    if (status) {
        txn_ctx_fail(tc, 503, "M_UNKNOWN", "try again later");
        return;
    }
    size_t len = 0;
    const char *body = fb_http_req_body(req, &len);
    /* The mark is the digest of the body's event ids. Computed here when it decides (a known id)
     * or when the body is about to be rewritten (decryption); else by txn_parse(), on the thread
     * pool for a large body, so that a big transaction does not hold the loop. */
    tc->mark[0] = '\0';
    if (reply->type == REDIS_REPLY_STRING || m->e2ee)
        txn_mark_of(body, len, tc->mark);
    if (reply->type == REDIS_REPLY_STRING) {
        /* The same events again: a replay. "1" on either side (a transaction without event ids,
         * or a mark written before the digests) cannot be told apart: a replay too. */
        if (strcmp(reply->str, tc->mark) == 0 || strcmp(reply->str, "1") == 0 ||
            strcmp(tc->mark, "1") == 0) {
            FB_INFO(MATRIX, "%s transaction replayed: acknowledged, not handled again",
                    fb_http_req_tag(req));
            txn_ctx_fail(tc, 200, NULL, NULL);
            return;
        }
        /* An id the homeserver used before for other events: Synapse on SQLite numbers its
         * transactions from 1 again after a restart. Acknowledged unread, they would be lost;
         * handled, a replay of an event is still dropped by the router's dedupe. */
        FB_WARN(MATRIX,
                "%s transaction id reused for other events (a homeserver that numbers its "
                "transactions again, as Synapse on SQLite does after a restart): handled",
                fb_http_req_tag(req));
    }
    if (m->stopping || !m->a) {
        txn_ctx_fail(tc, 503, "M_UNKNOWN", "shutting down");
        return;
    }
    if (m->e2ee) { /* decrypted first (mx_e2ee.c), then parsed from the rewritten document */
        size_t clen = 0, fixed = 0;
        char *clean = fb_mx_json_repair(body, len, &clen, &fixed);
        json_t *doc = clean ? json_loadb(clean, clen, 0, NULL) : NULL;
        fb_free(clean);
        if (!json_is_object(doc) || !json_is_array(json_object_get(doc, "events"))) {
            json_decref(doc);
            FB_WARN(MATRIX, "%s transaction body is not {\"events\": [...]}: refused",
                    fb_http_req_tag(req));
            txn_ctx_fail(tc, 400, "M_BAD_JSON", "expected an object with an events array");
            return;
        }
        mx_e2ee_txn(m, doc, on_txn_decrypted, tc);
        return;
    }
    txn_parse(m, tc, body, len, true);
}

/* Starts handling the transaction `req`: its mark is looked up first. 0 (answered) or FB_EAGAIN. */
static int as_txn_begin(struct mx *m, fb_http_req_t *req)
{
    const char *id = fb_http_req_path(req) + strlen(AS_PREFIX "transactions/");
    if (!*id || strchr(id, '/') || strlen(id) > 255) {
        as_json(req, 404, "M_NOT_FOUND", "no such transaction path");
        return 0;
    }
    struct txn_ctx *tc = fb_calloc(1, sizeof(*tc));
    tc->req = req;
    tc->key = fb_asprintf("%s{g}:matrix:txn:%s", m->core->cfg->store.key_prefix, id);
    if (!m->e2ee) { /* parsed first, its mark read then if at all (txn_parsed()) */
        if (m->stopping || !m->a) {
            txn_ctx_fail(tc, 503, "M_UNKNOWN", "shutting down");
            return 0;
        }
        size_t len = 0;
        const char *body = fb_http_req_body(req, &len);
        tc->unseen = true;
        txn_parse(m, tc, body, len, true);
        return FB_EAGAIN;
    }
    const char *argv[] = {"GET", tc->key};
    if (mx_rcmd_argv(m, on_txn_seen, tc, 2, argv)) {
        fb_free(tc->key);
        fb_free(tc);
        as_json(req, 503, "M_UNKNOWN", "try again later");
        return 0;
    }
    return FB_EAGAIN;
}

/* A transaction that waits for the service's device and keys (mx_as_device.c). */
struct as_wait {
    fb_http_req_t *req;
    struct as_wait *next;
};

void mx_as_txn_resume(struct mx *m)
{
    struct as_wait *w = m->as_waiting;
    m->as_waiting = NULL;
    while (w) {
        struct as_wait *next = w->next;
        if (m->stopping || !m->a)
            as_json(w->req, 503, "M_UNKNOWN", "shutting down");
        else if (!mx_e2ee_as_ready(m))
            as_json(w->req, 503, "M_UNKNOWN", "end-to-end encryption keys not ready");
        else
            (void)as_txn_begin(m, w->req);
        fb_free(w);
        w = next;
    }
}

int mx_on_as_txn(fb_http_req_t *req, void *arg)
{
    struct mx *m = arg;
    if (!as_auth(m, req))
        return 0;
    /* The homeserver is there: a read-back it calls for starts before this transaction moves
     * any room's mark on (mx_as_catchup.c). */
    mx_as_hs_seen(m, 0, 200);
    if (m->as_batches >= m->o->as_max_transactions) {
        /* Synapse sends one transaction at a time; more at once are resends of one that timed
         * out while being handled: the homeserver retries with a back-off. */
        m->as_txn_busy++;
        FB_INFO(MATRIX, "%s %zu transactions already being handled: 503, the homeserver will retry",
                fb_http_req_tag(req), m->as_batches);
        as_json(req, 503, "M_UNKNOWN", "too many transactions at once: try again later");
        return 0;
    }
    if (!m->aliases_ready) { /* an advisors' room is not known by its id yet: the homeserver
                                sends the transaction again later */
        mx_aliases_resolve(m);
        as_json(req, 503, "M_UNKNOWN", "starting: resolving the advisors' room aliases");
        return 0;
    }
    if (!mx_e2ee_as_ready(m) && !m->stopping) {
        /* Its device and keys first. The transaction waits (a few seconds) rather than being
         * refused: a homeserver that saw a 503 marks the service down, and Synapse's recovery
         * can then leave the next events unsent until another one comes. */
        struct as_wait *w = fb_calloc(1, sizeof(*w)), **pp = &m->as_waiting;
        w->req = req;
        while (*pp)
            pp = &(*pp)->next;
        *pp = w;
        mx_as_device_ensure(m);
        return FB_EAGAIN;
    }
    mx_as_device_ensure(m); /* clear mode: a device not made yet is tried again (mx_as_device.c) */
    return as_txn_begin(m, req);
}

int mx_on_as_user(fb_http_req_t *req, void *arg)
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

int mx_on_as_room(fb_http_req_t *req, void *arg)
{
    struct mx *m = arg;
    if (!as_auth(m, req))
        return 0;
    as_json(req, 404, "M_NOT_FOUND", "no such room alias");
    return 0;
}

int mx_on_as_ping(fb_http_req_t *req, void *arg)
{
    struct mx *m = arg;
    if (!as_auth(m, req))
        return 0;
    as_json(req, 200, NULL, NULL);
    return 0;
}
