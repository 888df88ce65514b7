/* SPDX-License-Identifier: MIT */
/*
 * matrix.c - the Matrix adapter: a bot account over /sync, or an application service, feeding
 * one batch runner; sending through the outbox. Design, configuration, Redis keys and the
 * failure behaviour: docs/internals/MATRIX.md. This file holds the instance, its HTTP calls and
 * Redis commands and the life cycle (the ops table); the batch runner is in mx_batch.c, bot mode
 * (/sync) in mx_sync.c, the application service in mx_appservice.c, send() in mx_send.c, the
 * configuration in mx_config.c, the subcommands in mx_commands.c, and the pure parts (event
 * parser, content builder, globs, registration file) in mx_util.c.
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

static const char *const sync_state_name[] = {"idle",     "starting", "polling",
                                              "handling", "backoff",  "stopped"};

void mx_wipe_free(char **p)
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
    mx_wipe_free(&m->token);
    mx_wipe_free(&m->hs_token);
    mx_wipe_free(&m->password);
    mx_wipe_free(&m->refresh_token);
    fb_free(m->device_id);
    fb_free(m->next_batch);
    fb_free(m->filter_id);
    fb_free(m->filter_json);
    fb_free(m->k_auth);
    fb_free(m->k_sync);
    json_decref(m->notice_inflight);
    json_decref(m->names);
    fb_mx_strv_free(m->aliases);
    json_decref(m->alias_ids);
    json_decref(m->alias_names);
    json_decref(m->advisor_rooms);
    mx_as_catchup_free(m);
    mx_e2ee_free(m);
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

void mx_op_begin(struct mx *m)
{
    m->refs++;
    m->ops++;
}

void mx_op_end(struct mx *m)
{
    m->ops--;
    maybe_stop_done(m);
    mx_unref(m);
}

void mx_set_state(struct mx *m, const char *st)
{
    if (m->a && !m->stopping)
        m->core->set_state(m->a, st);
}

/* ---------------------------------------------------------------------------------------- */
/* HTTP calls */

struct call {
    struct mx *m;
    call_cb cb;
    void *arg;
    bool poll; /* the sync long-poll: not counted in ops */
    bool auth; /* a login or refresh: a 401 does not start a recovery */
};

const char *mx_errcode(json_t *body)
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
        const char *ec = mx_errcode(body);
        if (ec && strcmp(ec, "M_UNKNOWN_TOKEN") == 0)
            mx_auth_recover(m, json_is_true(json_object_get(body, "soft_logout")));
    }
    mx_as_hs_seen(m, err, resp->status); /* a restart to catch up after (mx_as_catchup.c) */
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
        mx_op_end(m);
}

/*
 * Starts `method` on `path` (absolute path from the server root, already escaped) with the JSON
 * `body` (borrowed, may be NULL). `retry` NULL: the client's policy. Returns 0 (cb called once,
 * later) or an error (cb never called).
 */
int mx_call_full(struct mx *m, const char *method, const char *path, const json_t *body,
                 unsigned timeout_ms, const fb_retry_policy_t *retry, bool idempotent, bool poll,
                 bool auth, call_cb cb, void *arg)
{
    char *masq = mx_as_masquerade(m, path); /* the service's device (mx_as_device.c) */
    char *url = fb_asprintf("%s%s", m->o->homeserver, masq ? masq : path);
    fb_free(masq);
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
        mx_wipe_free(&authz);
    fb_free(url);
    if (rc) {
        fb_free(c);
        return rc;
    }
    if (poll) {
        m->refs++;
        m->poll_call = c;
    } else {
        mx_op_begin(m);
    }
    return 0;
}

int mx_call(struct mx *m, const char *method, const char *path, const json_t *body, call_cb cb,
            void *arg)
{
    return mx_call_full(m, method, path, body, 0, NULL, true, false, false, cb, arg);
}

/* Fire and forget (typing, receipts): failures are logged at debug. `arg` non-NULL: a courtesy
 * (typing, receipt) counted in courtesy_inflight. */
static void on_best_effort(struct mx *m, int err, int status, json_t *body,
                           const fb_http_response_t *resp, void *arg)
{
    (void)body;
    if (arg)
        m->courtesy_inflight--;
    if (err)
        FB_DEBUG(MATRIX, "%s best-effort request failed: %s (HTTP %d)", resp->tag, fb_err_name(err),
                 status);
}

/* One attempt: the callers retry on their own terms (the outbox, the sync loop). */
const fb_retry_policy_t mx_no_retry = {.delays_ms = {1000}, .n_delays = 1, .max_attempts = 1};

void mx_best_effort(struct mx *m, const char *method, const char *path, const json_t *body)
{
    (void)mx_call_full(m, method, path, body, 0, &mx_no_retry, true, false, false, on_best_effort,
                       NULL);
}

/*
 * A typing notification or a read receipt: a courtesy, sent only when fewer than
 * matrix.max_best_effort_in_flight are in flight. Beyond, the homeserver is behind: it is dropped
 * (counted in *dropped, /metrics) so that the replies, which the outbox sends, are never queued
 * behind courtesies (with a homeserver answering in 40 ms, three requests per message in an
 * unbounded queue made thousands of them time out: issue #18).
 */
static void courtesy(struct mx *m, const char *method, const char *path, const json_t *body,
                     uint64_t *dropped)
{
    if (m->courtesy_inflight >= m->o->max_best_effort_in_flight) {
        (*dropped)++;
        return;
    }
    static char counted; /* a non-NULL marker for on_best_effort */
    if (mx_call_full(m, method, path, body, 0, &mx_no_retry, true, false, false, on_best_effort,
                     &counted) == 0)
        m->courtesy_inflight++;
}

char *mx_room_path(const char *room, const char *fmt_tail)
{
    char *r = fb_mx_path_escape(room);
    char *p = fb_asprintf(CLIENT_PATH "/rooms/%s%s", r, fmt_tail);
    fb_free(r);
    return p;
}

char *mx_messages_path(const char *room, const char *from, const char *const *types, size_t ntypes,
                       unsigned limit)
{
    json_t *t = json_array();
    for (size_t i = 0; i < ntypes; i++)
        json_array_append_new(t, json_string(types[i]));
    json_t *f = json_pack("{s:o}", "types", t);
    char *fs = json_dumps(f, JSON_COMPACT);
    json_decref(f);
    char *fe = fb_mx_path_escape(fs ? fs : "{}");
    free(fs); /* fb-lint: allow free (jansson's allocation) */
    char *fr = from ? fb_mx_path_escape(from) : NULL;
    char *tail = fr ? fb_asprintf("/messages?dir=b&limit=%u&from=%s&filter=%s", limit, fr, fe)
                    : fb_asprintf("/messages?dir=b&limit=%u&filter=%s", limit, fe);
    char *path = mx_room_path(room, tail);
    fb_free(tail);
    fb_free(fr);
    fb_free(fe);
    return path;
}

void mx_typing(struct mx *m, const char *room, bool on)
{
    if (!m->o->typing || !m->token)
        return;
    char *u = fb_mx_path_escape(m->o->user_id);
    char *tail = fb_asprintf("/typing/%s", u);
    char *path = mx_room_path(room, tail);
    json_t *b = on ? json_pack("{s:b, s:i}", "typing", 1, "timeout", TYPING_TIMEOUT_MS)
                   : json_pack("{s:b}", "typing", 0);
    courtesy(m, "PUT", path, b, &m->typing_dropped);
    json_decref(b);
    fb_free(path);
    fb_free(tail);
    fb_free(u);
}

void mx_receipt(struct mx *m, const char *room, const char *event_id)
{
    if (!m->o->read_receipts || !m->token)
        return;
    char *e = fb_mx_path_escape(event_id);
    char *tail = fb_asprintf("/receipt/m.read/%s", e);
    char *path = mx_room_path(room, tail);
    json_t *b = json_object();
    courtesy(m, "POST", path, b, &m->receipts_dropped);
    json_decref(b);
    fb_free(path);
    fb_free(tail);
    fb_free(e);
}

/* ---------------------------------------------------------------------------------------- */
/* Redis */

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
    mx_op_end(m);
}

/* The script of static text `src`, by its address: its SHA1 is computed at its first use. NULL
 * (then sent as EVAL) if the table is full, which MX_MAX_SCRIPTS keeps from happening. */
static const fb_redis_script_t *script(struct mx *m, const char *src)
{
    for (size_t i = 0; i < m->nscripts; i++)
        if (m->scripts[i].src == src)
            return &m->scripts[i];
    if (m->nscripts == MX_MAX_SCRIPTS) {
        FB_WARN(MATRIX, "more than %d Lua scripts: one is sent with EVAL", MX_MAX_SCRIPTS);
        return NULL;
    }
    fb_redis_script_init(&m->scripts[m->nscripts], src);
    return &m->scripts[m->nscripts++];
}

int mx_rcmd_argv(struct mx *m, rcmd_cb cb, void *arg, int argc, const char **argv)
{
    struct rcmd *rc = fb_calloc(1, sizeof(*rc));
    rc->m = m;
    rc->cb = cb;
    rc->arg = arg;
    int s;
    const fb_redis_script_t *sc =
        argc >= 3 && strcmp(argv[0], "EVAL") == 0 ? script(m, argv[1]) : NULL;
    if (sc)
        s = fb_redis_evalsha(m->core->redis, sc, FB_REDIS_RETRY, on_rcmd, rc, argc - 2, argv + 2,
                             NULL);
    else
        s = fb_redis_command_argv(m->core->redis, FB_REDIS_RETRY, on_rcmd, rc, argc, argv, NULL);
    if (s) {
        fb_free(rc);
        return s;
    }
    mx_op_begin(m);
    return 0;
}

char *mx_room_key(struct mx *m, const char *room)
{
    char *conv = fb_asprintf("matrix:%s", room);
    char *k = m->core->conv_key(m->core, conv, "mxroom");
    fb_free(conv);
    return k;
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
    mx_aliases_init(m, &a->core->cfg->escalation);
    unsigned long long ttl = (unsigned long long)a->core->cfg->store.session_ttl_days * 86400000ull;
    snprintf(m->ttl_ms, sizeof(m->ttl_ms), "%llu", ttl);
    const char *prefix = a->core->cfg->store.key_prefix;
    m->k_auth = fb_asprintf("%s{g}:matrix:auth", prefix ? prefix : "");
    m->k_sync = fb_asprintf("%s{g}:matrix:sync", prefix ? prefix : "");
    *(struct mx **)fb_adapter_priv(a) = m;
    int rc = 0;
    if (m->mode == MODE_AS) {
        rc = read_registration(m);
        if (!rc)
            rc = mx_e2ee_init(m);
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
        if (!rc)
            rc = mx_e2ee_init(m);
        json_t *f = mx_filter_json(o, o->sync_timeline_limit);
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
                                             "matrix_as_txn", mx_on_as_txn, m);
        if (!rc)
            rc = fb_http_server_route_prefix(core->http, AS_PREFIX "users/", FB_HTTP_GET,
                                             "matrix_as_user", mx_on_as_user, m);
        if (!rc)
            rc = fb_http_server_route_prefix(core->http, AS_PREFIX "rooms/", FB_HTTP_GET,
                                             "matrix_as_room", mx_on_as_room, m);
        if (!rc)
            rc = fb_http_server_route(core->http, AS_PREFIX "ping", FB_HTTP_POST, "matrix_as_ping",
                                      mx_on_as_ping, m);
        if (rc) {
            FB_ERR(MATRIX, "cannot register the application service routes: %s", fb_strerror(rc));
            return rc;
        }
        uv_timer_init(core->loop, &m->timer); /* the homeserver's probe (mx_as_catchup.c) */
        m->timer.data = m;
        m->timer_init = true;
        m->refs++; /* the timer's */
        m->started = true;
        FB_INFO(MATRIX, "application service on %s* for %s", AS_PREFIX, m->o->homeserver);
        mx_as_catchup_start(m);
        mx_e2ee_start(m);
        mx_as_device_ensure(m);
        if (m->aliases_ready) {
            core->set_state(a, "ok");
        } else {
            core->set_state(a, "starting");
            mx_aliases_resolve(m);
        }
        return 0;
    }
    uv_timer_init(core->loop, &m->timer);
    m->timer.data = m;
    m->timer_init = true;
    m->refs++; /* the timer's */
    m->started = true;
    m->catch_up = true;
    mx_e2ee_start(m);
    core->set_state(a, "starting");
    FB_INFO(MATRIX, "bot account on %s", m->o->homeserver);
    mx_bot_load(m);
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
    mx_e2ee_stop(m);
    mx_as_txn_resume(m); /* the transactions waiting for the device: 503 */
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
    mx_e2ee_stop(m);
    mx_as_txn_resume(m);
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
    mx_e2ee_stats(m, out);
    return 0;
}

static int mx_metrics(fb_adapter_t *a, fb_buf_t *out)
{
    struct mx *m = *(struct mx **)fb_adapter_priv(a);
    if (!m)
        return 0;
    return fb_buf_printf(
        out,
        "# HELP frichebot_matrix_best_effort_dropped_total Typing notifications and read "
        "receipts not sent because matrix.max_best_effort_in_flight were in flight.\n"
        "# TYPE frichebot_matrix_best_effort_dropped_total counter\n"
        "frichebot_matrix_best_effort_dropped_total{what=\"typing\"} %llu\n"
        "frichebot_matrix_best_effort_dropped_total{what=\"receipt\"} %llu\n"
        "# HELP frichebot_matrix_best_effort_in_flight Typing notifications and read receipts in "
        "flight.\n"
        "# TYPE frichebot_matrix_best_effort_in_flight gauge\n"
        "frichebot_matrix_best_effort_in_flight %llu\n"
        "# HELP frichebot_matrix_transactions_refused_total Application-service transactions "
        "answered 503 (retried by the homeserver), by reason.\n"
        "# TYPE frichebot_matrix_transactions_refused_total counter\n"
        "frichebot_matrix_transactions_refused_total{reason=\"max_transactions\"} %llu\n"
        "frichebot_matrix_transactions_refused_total{reason=\"router_full\"} %llu\n"
        "# HELP frichebot_matrix_controls_only_total Messages of nothing but control characters "
        "(a notice, not handled).\n"
        "# TYPE frichebot_matrix_controls_only_total counter\n"
        "frichebot_matrix_controls_only_total %llu\n"
        "# HELP frichebot_matrix_catchups_total Homeserver restarts (failures, then an answer) "
        "after which the service read back its recently active rooms (appservice mode).\n"
        "# TYPE frichebot_matrix_catchups_total counter\n"
        "frichebot_matrix_catchups_total %llu\n"
        "# HELP frichebot_matrix_catchup_messages_total Messages read back after a homeserver "
        "restart and handed to the router (those already handled are dropped there).\n"
        "# TYPE frichebot_matrix_catchup_messages_total counter\n"
        "frichebot_matrix_catchup_messages_total %llu\n",
        (unsigned long long)m->typing_dropped, (unsigned long long)m->receipts_dropped,
        (unsigned long long)m->courtesy_inflight, (unsigned long long)m->as_txn_busy,
        (unsigned long long)m->as_txn_backoff, (unsigned long long)m->controls_only,
        (unsigned long long)m->as_catchups, (unsigned long long)m->as_catchup_events);
}

/* Appservice mode's COMMIT fragment (mx_as_commit_lua), none in bot mode. */
static const char *mx_commit_lua(fb_adapter_t *a)
{
    struct mx *m = *(struct mx **)fb_adapter_priv(a);
    return m && m->mode == MODE_AS ? mx_as_commit_lua : NULL;
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
    .metrics = mx_metrics,
    .commit_lua = mx_commit_lua,
    .committed = mx_committed,
};
