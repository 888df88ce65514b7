/* SPDX-License-Identifier: MIT */
/*
 * mx_sync.c - the Matrix adapter's bot mode: credentials, the stored filter, login, refresh and
 * whoami, the /sync loop and its gaps (docs/internals/MATRIX.md).
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

json_t *mx_filter_json(const fb_matrix_opts_t *o, unsigned limit)
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
 * handed to the router (`last_event` of the room's Redis hash, written just before next_batch) or
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
    mx_conv_tag(g->room, tag);
    size_t n = json_array_size(g->acc);
    json_t *events = json_array();
    for (size_t i = n; i > 0; i--)
        json_array_append(events, json_array_get(g->acc, i - 1));
    mx_e2ee_decrypt_events(m, g->room, events); /* encrypted rooms' missed messages too */
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
    mx_step_done(bt, 0);
}

static int gap_page(struct gapfill *g, const char *from);

static void on_gap_page(struct mx *m, int err, int status, json_t *body,
                        const fb_http_response_t *resp, void *arg)
{
    (void)resp;
    struct gapfill *g = arg;
    struct batch *bt = g->bt;
    char tag[FB_MX_TAG_LEN + 1];
    mx_conv_tag(g->room, tag);
    int rc = mx_classify(err, status);
    if (rc || m->stopping || !m->a) {
        FB_INFO(MATRIX,
                "[matrix|%s] gap: /messages failed (%s, HTTP %d): the batch will be retried", tag,
                fb_err_name(err), status);
        gap_free(g);
        mx_step_done(bt, rc ? rc : FB_ECANCELED);
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
        mx_step_done(bt, FB_EAGAIN);
    }
}

static int gap_page(struct gapfill *g, const char *from)
{
    struct mx *m = g->bt->m;
    char *path =
        mx_messages_path(g->room, from, timeline_types, FB_ARRAY_SIZE(timeline_types), GAP_PAGE);
    int rc = mx_call(m, "GET", path, NULL, on_gap_page, g);
    fb_free(path);
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
    mx_conv_tag(g->room, tag);
    if (status || m->stopping || !m->a) {
        fb_free(from);
        gap_free(g);
        mx_step_done(bt, status ? FB_EAGAIN : FB_ECANCELED);
        return;
    }
    if (!(reply && reply->type == REDIS_REPLY_STRING)) {
        FB_INFO(MATRIX, "[matrix|%s] gap in a room with nothing handled yet: nothing to catch up",
                tag);
        fb_free(from);
        gap_free(g);
        mx_step_done(bt, 0);
        return;
    }
    g->last = fb_strdup(reply->str);
    int rc = gap_page(g, from);
    fb_free(from);
    if (rc) {
        gap_free(g);
        mx_step_done(bt, rc == FB_ECLOSING ? FB_ECANCELED : FB_EAGAIN);
    }
}

int mx_gap_start(struct batch *bt, const fb_mx_action_t *a)
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
    char *k = mx_room_key(m, a->room);
    const char *argv[] = {"HGET", k, "last_event"};
    int rc = mx_rcmd_argv(m, on_gap_last, gs, 3, argv);
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
        mx_set_state(m, m->recovering && !m->password && !m->refresh_token
                            ? "degraded: logged out"
                            : "degraded: sync failing");
    unsigned d = fb_retry_next_delay_ms(&m->o->sync_retry, m->fails - 1);
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
    (void)mx_rcmd_argv(m, on_stored, what_session, 12, argv);
}

static void take_tokens(struct mx *m, json_t *body)
{
    const char *at = json_string_value(json_object_get(body, "access_token"));
    const char *rt = json_string_value(json_object_get(body, "refresh_token"));
    const char *dev = json_string_value(json_object_get(body, "device_id"));
    json_t *exp = json_object_get(body, "expires_in_ms");
    mx_wipe_free(&m->token);
    m->token = fb_strdup(at);
    if (rt) {
        mx_wipe_free(&m->refresh_token);
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
                   status, mx_errcode(body) ? mx_errcode(body) : "");
        sync_fail(m, "login failed", 0);
        return;
    }
    take_tokens(m, body);
    FB_NOTICE(MATRIX, "logged in (device %s)", m->device_id ? m->device_id : "?");
    m->recovering = false;
    store_auth(m);
    after_auth(m);
}

void mx_login(struct mx *m)
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
        mx_wipe_free(&m->refresh_token);
        if (mx_classify(err, status) == 0 && err)
            mx_login(m);
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

void mx_refresh(struct mx *m)
{
    json_t *b = json_pack("{s:s}", "refresh_token", m->refresh_token);
    m->sy = SY_AUTH;
    int rc = mx_call_full(m, "POST", CLIENT_PATH "/refresh", b, 0, NULL, false, false, true,
                          on_refresh, NULL);
    json_decref(b);
    if (rc)
        sync_fail(m, "cannot start the refresh request", 0);
}

void mx_auth_recover(struct mx *m, bool soft)
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
        mx_wipe_free(&m->token);
        return; /* nothing to do but retry: the state says so */
    }
    m->token_given = false;
    if (m->sy != SY_POLL && m->sy != SY_HANDLE)
        sync_schedule(m, 0);
}

static void bot_auth(struct mx *m)
{
    if (m->recovering && m->refresh_token && *m->refresh_token) {
        mx_refresh(m);
        return;
    }
    if (!m->token || m->recovering) {
        mx_login(m);
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
    (void)mx_rcmd_argv(m, on_stored, what_filter, 6, argv);
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

/* --- advisors' room aliases ---
 * escalation.rooms may name a room by its alias ("* #conseillers:example.org"). The aliases are
 * resolved through the room directory before the first sync (bot) or the first transaction
 * (appservice); the conversation keys keep the alias, so escalation sees the name it was given:
 * inbound events of the resolved room id are delivered under the alias, and replies to the alias
 * go to the room id. A failed round is retried with the sync's back-off (bot) or at the next
 * transaction (appservice, answered 503 meanwhile). */

void mx_aliases_init(struct mx *m, const fb_escalation_opts_t *e)
{
    m->alias_ids = json_object();
    m->alias_names = json_object();
    m->advisor_rooms = json_object();
    m->aliases = fb_mx_route_aliases(e->enabled ? e->rooms : NULL);
    for (size_t i = 0; e->enabled && e->rooms && e->rooms[i]; i++) {
        const char *v = strchr(e->rooms[i], ' ');
        while (v && *v == ' ')
            v++;
        if (v && v[0] == '!')
            json_object_set_new(m->advisor_rooms, v, json_true());
    }
    m->aliases_ready = m->aliases[0] == NULL;
}

static void aliases_round_done(struct mx *m)
{
    if (m->alias_pending > 0 || m->stopping || !m->a)
        return;
    bool all = true;
    for (size_t i = 0; m->aliases[i]; i++)
        all = all && json_object_get(m->alias_ids, m->aliases[i]) != NULL;
    if (!all) {
        if (m->mode == MODE_BOT)
            sync_fail(m, "the advisors' room aliases are not all resolved", 0);
        else
            mx_set_state(m, "degraded: advisors' room alias not resolved");
        return;
    }
    m->aliases_ready = true;
    FB_INFO(MATRIX, "advisors' room aliases resolved (%zu)", json_object_size(m->alias_ids));
    if (m->mode == MODE_BOT)
        after_auth(m);
    else
        mx_set_state(m, "ok");
}

static void on_alias(struct mx *m, int err, int status, json_t *body,
                     const fb_http_response_t *resp, void *arg)
{
    (void)resp;
    char *alias = arg;
    const char *id = json_string_value(json_object_get(body, "room_id"));
    if (!err && id && id[0] == '!' && strlen(id) <= FB_MX_MAX_ID) {
        json_object_set_new(m->alias_ids, alias, json_string(id));
        json_object_set_new(m->alias_names, id, json_string(alias));
        json_object_set_new(m->advisor_rooms, id, json_true());
        FB_INFO(MATRIX, "advisors' room %s is %s", alias, id);
    } else if (err == FB_EHTTP && status == 404) {
        FB_ERR(MATRIX,
               "advisors' room %s: the homeserver knows no such alias (escalation.rooms): "
               "create it, or name the room by its id (!...)",
               alias);
    } else {
        FB_WARN(MATRIX, "advisors' room %s: the directory look-up failed: %s (HTTP %d)", alias,
                fb_strerror(err ? err : FB_EPROTO), status);
    }
    fb_free(alias);
    m->alias_pending--;
    aliases_round_done(m);
}

/* Looks up every alias not resolved yet (nothing when a round is in flight). */
void mx_aliases_resolve(struct mx *m)
{
    if (m->alias_pending > 0 || m->stopping || !m->a)
        return;
    m->alias_pending = 1; /* held while the round starts: a synchronous failure ends nothing */
    for (size_t i = 0; m->aliases[i]; i++) {
        if (json_object_get(m->alias_ids, m->aliases[i]))
            continue;
        char *esc = fb_mx_path_escape(m->aliases[i]);
        char *path = fb_asprintf(CLIENT_PATH "/directory/room/%s", esc);
        char *alias = fb_strdup(m->aliases[i]);
        m->alias_pending++;
        if (mx_call(m, "GET", path, NULL, on_alias, alias)) {
            FB_WARN(MATRIX, "advisors' room %s: cannot start the directory look-up", alias);
            fb_free(alias);
            m->alias_pending--;
        }
        fb_free(path);
        fb_free(esc);
    }
    m->alias_pending--;
    aliases_round_done(m);
}

/* --- the loop --- */

struct sync_run {
    char *next_batch;
    bool first;
};

struct nb_write {
    char *next_batch;
    json_t *taken; /* the crypto write, put back if Redis failed */
};

static void on_next_batch_stored(struct mx *m, int status, redisReply *reply, void *arg)
{
    (void)reply;
    struct nb_write *w = arg;
    char *nb = w->next_batch;
    mx_e2ee_write_done(m, w->taken, status);
    fb_free(w);
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
    mx_set_state(m, "ok");
    sync_poll(m);
}

/* KEYS[1] matrix:sync, KEYS[2..6] the crypto hashes (mx_e2ee.h), all under the global keys' tag
 * {g} (one Redis Cluster slot); ARGV[1] next_batch, ARGV[2] the crypto write (or ""). The crypto
 * state the batch changed is written with its token: both or neither. */
static const char next_batch_script[] =
    "#!lua\n" E2EE_APPLY_LUA "e2ee_apply({KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]}, ARGV[2])\n"
    "redis.call('HSET', KEYS[1], 'next_batch', ARGV[1])\n"
    "return 1\n";

/* KEYS[1] a room's hash (its conversation's slot); ARGV[1] the rooms' TTL, ARGV[2] the last event
 * handed to the router. One call per room, apart from the token's: a room's call lost (a crash
 * between them) only makes a gap's back-fill in that room stop at an earlier event, and the few
 * events read again are duplicates the router's dedupe marks drop (docs/internals/REDIS.md). */
static const char room_last_script[] = "#!lua\n"
                                       "redis.call('HSET', KEYS[1], 'last_event', ARGV[2])\n"
                                       "local ttl = tonumber(ARGV[1])\n"
                                       "if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end\n"
                                       "return 1\n";

static void on_sync_batch_done(struct batch *bt, int status)
{
    struct mx *m = bt->m;
    if (m->stopping || !m->a) {
        mx_batch_free(bt);
        return;
    }
    if (status) {
        mx_batch_free(bt);
        sync_fail(m, status == FB_ECANCELED ? "stopping" : "events not handed to the router", 0);
        return;
    }
    /* next_batch with the crypto state in one script (both or neither), and per room the last
     * event handed to the router (where a gap's back-fill stops) in a call of its own: one Redis
     * Cluster slot per call (docs/internals/REDIS.md, "The plan", step 8). */
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
    /* the rooms' last events first, each in its own slot; then the token with the crypto state */
    for (size_t j = 0; j < nr; j++) {
        char *k = mx_room_key(m, rooms[j]);
        const char *rargv[] = {"EVAL", room_last_script, "1", k, m->ttl_ms, last[j]};
        (void)mx_rcmd_argv(m, NULL, NULL, 6, rargv); /* lost: events read again, deduped */
        fb_free(k);
    }
    json_t *taken = NULL;
    char *cw = mx_e2ee_take_write(m, &taken);
    const char *argv[11];
    argv[0] = "EVAL";
    argv[1] = next_batch_script;
    argv[2] = "6";
    argv[3] = m->k_sync;
    mx_e2ee_keys_argv(m, argv + 4);
    argv[9] = nb;
    argv[10] = cw ? cw : "";
    struct nb_write *w = fb_calloc(1, sizeof(*w));
    w->next_batch = nb;
    w->taken = taken;
    int rc = mx_rcmd_argv(m, on_next_batch_stored, w, 11, argv);
    if (cw) {
        explicit_bzero(cw, strlen(cw));
        fb_free(cw);
    }
    fb_free(rooms);
    fb_free(last);
    mx_batch_free(bt);
    if (rc) {
        mx_e2ee_write_done(m, taken, rc);
        fb_free(w);
        fb_free(nb);
        sync_fail(m, "Redis refused the next_batch write", 0);
    }
}

/* Parses a /sync answer into a batch and hands it to the router. */
static void sync_parse(struct mx *m, const char *body, size_t len)
{
    struct batch *bt = mx_batch_new(m);
    bt->done = on_sync_batch_done;
    fb_mx_parse_opts_t po = mx_parse_opts(m, m->next_batch != NULL);
    int rc = fb_mx_parse_sync(body, len, &po, &bt->b);
    if (rc) {
        mx_batch_free(bt);
        sync_fail(m, "unreadable /sync answer", 0);
        return;
    }
    mx_log_parse(m, &bt->b, m->next_batch ? "sync" : "initial sync (history skipped)");
    mx_batch_pump(bt);
}

static void on_sync_decrypted(struct mx *m, json_t *doc, int status, void *arg)
{
    (void)arg;
    if (m->stopping || !m->a) {
        json_decref(doc);
        return;
    }
    if (status) {
        sync_fail(m, "the keys of a to-device sender could not be read", 0);
        return;
    }
    char *s = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (!s) {
        sync_fail(m, "unreadable /sync answer", 0);
        return;
    }
    sync_parse(m, s, strlen(s));
    explicit_bzero(s, strlen(s)); /* decrypted messages */
    free(s);                      /* fb-lint: allow free (jansson's allocation) */
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
            ra = fb_http_retry_after_ms(fb_http_response_header(resp, "Retry-After"), fb_wall_s());
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
    if (m->e2ee) { /* decrypted first, then parsed from the rewritten document */
        size_t len = 0, fixed = 0;
        char *clean = fb_mx_json_repair(resp->body, resp->body_len, &len, &fixed);
        json_t *doc = clean ? json_loadb(clean, len, 0, NULL) : NULL;
        fb_free(clean);
        if (!json_is_object(doc)) {
            json_decref(doc);
            sync_fail(m, "unreadable /sync answer", 0);
            return;
        }
        mx_e2ee_sync(m, doc, on_sync_decrypted, NULL);
        return;
    }
    sync_parse(m, resp->body, resp->body_len);
}

static void on_e2ee_prepared(struct mx *m, int status)
{
    if (m->stopping || !m->a)
        return;
    if (status)
        sync_fail(m, "end-to-end encryption not ready (keys not loaded or uploaded)", 0);
    else
        sync_poll(m);
}

static void sync_poll(struct mx *m)
{
    if (m->stopping || !m->a || m->polling)
        return;
    if (!m->aliases_ready) {
        mx_aliases_resolve(m); /* after_auth(), and so this poll, again once they are */
        return;
    }
    if (!mx_e2ee_ready(m)) {
        mx_e2ee_prepare(m, on_e2ee_prepared); /* this poll again once ready */
        return;
    }
    /* Refresh once the token is within a minute of expiring, or within half its lifetime when
     * that is shorter (a 5 s token would otherwise be refreshed before every poll). */
    int64_t margin = REFRESH_MARGIN_MS;
    if (m->lifetime_ms > 0 && m->lifetime_ms / 2 < margin)
        margin = m->lifetime_ms / 2;
    if (m->expires_at && m->refresh_token && *m->refresh_token &&
        fb_wall_ms() > m->expires_at - margin) {
        m->recovering = true;
        mx_refresh(m);
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
        json_t *f = mx_filter_json(m->o, 0);
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
    int rc = mx_call_full(m, "GET", fb_buf_str(&url), NULL, t, &mx_no_retry, true, true, false,
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
    if (status || !fb_redis_reply_array(reply, 8, 8, NULL)) {
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

void mx_bot_load(struct mx *m)
{
    m->sy = SY_AUTH;
    static const char script[] =
        "#!lua flags=no-writes\n"
        "local a = redis.call('HMGET', KEYS[1], 'user_id', 'device_id', 'access_token', "
        "'refresh_token', 'expires_at')\n"
        "local s = redis.call('HMGET', KEYS[2], 'next_batch', 'filter_id', 'filter_hash')\n"
        "return {a[1], a[2], a[3], a[4], a[5], s[1], s[2], s[3]}\n";
    const char *argv[] = {"EVAL", script, "2", m->k_auth, m->k_sync};
    if (mx_rcmd_argv(m, on_state_loaded, NULL, 5, argv))
        sync_fail(m, "Redis refused the state read", 0);
}
