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
    mx_set_state(m, "ok");
    as_json(req, 200, NULL, NULL);
}

static void on_txn_batch_done(struct batch *bt, int status)
{
    struct mx *m = bt->m;
    fb_http_req_t *req = bt->owner;
    char *key = bt->txn_key;
    bt->txn_key = NULL;
    mx_batch_free(bt);
    if (status) {
        FB_INFO(MATRIX, "%s transaction not handled (%s): the homeserver will retry",
                fb_http_req_tag(req), fb_err_name(status));
        as_json(req, 503, "M_UNKNOWN", "try again later");
    } else {
        char ttl[24];
        snprintf(ttl, sizeof(ttl), "%llu",
                 (unsigned long long)m->o->as_txn_retention_hours * 3600000ull);
        const char *argv[] = {"SET", key, "1", "PX", ttl};
        if (mx_rcmd_argv(m, on_txn_marked, req, 5, argv))
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
    struct batch *bt = mx_batch_new(m);
    bt->done = on_txn_batch_done;
    bt->owner = req;
    bt->txn_key = tc->key;
    fb_free(tc);
    fb_mx_parse_opts_t po = mx_parse_opts(m, true);
    if (fb_mx_parse_txn(body, len, &po, &bt->b)) {
        FB_WARN(MATRIX, "%s transaction body is not {\"events\": [...]}: refused",
                fb_http_req_tag(req));
        bt->owner = NULL;
        mx_batch_free(bt);
        as_json(req, 400, "M_BAD_JSON", "expected an object with an events array");
        return;
    }
    mx_log_parse(m, &bt->b, fb_http_req_tag(req));
    mx_batch_pump(bt);
}

int mx_on_as_txn(fb_http_req_t *req, void *arg)
{
    struct mx *m = arg;
    if (!as_auth(m, req))
        return 0;
    if (!m->aliases_ready) { /* an advisors' room is not known by its id yet: the homeserver
                                sends the transaction again later */
        mx_aliases_resolve(m);
        as_json(req, 503, "M_UNKNOWN", "starting: resolving the advisors' room aliases");
        return 0;
    }
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
    if (mx_rcmd_argv(m, on_txn_seen, tc, 2, argv)) {
        fb_free(tc->key);
        fb_free(tc);
        as_json(req, 503, "M_UNKNOWN", "try again later");
        return 0;
    }
    return FB_EAGAIN;
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
