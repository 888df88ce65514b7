/* SPDX-License-Identifier: MIT */
/*
 * mx_as_catchup.c - appservice mode: the messages a homeserver lost for the service across its
 * restart, read back (docs/internals/MATRIX.md, "Catch-up after a homeserver restart").
 *
 * Synapse queues a service's events in memory and advances its stream position before the
 * transaction that carries them is written (element-hq/synapse#11637): a restart at that moment
 * loses them for the service, though they stay in the rooms. `make soak` lost a user's message
 * that way: never answered. So the service remembers, for each room active in the last
 * `appservice.catch_up_minutes`, the last event it handed to the router or sent there; it probes
 * the homeserver every `appservice.probe_interval_ms` while such rooms exist, and when the
 * homeserver answers again after being down (the probe failed, or any call found nothing
 * listening), it pages back each of those rooms' messages (`/messages?dir=b`) to that event, as
 * it was when the homeserver answered, and hands the newer ones to the router, oldest first, as
 * one quiet batch per room (no typing, no receipt). The router's dedupe
 * drops those it already has (a transaction delivered them, or another daemon read them back):
 * exactly once either way. The marks are also kept in Redis (`matrix:recent`, a hash room ->
 * "TS EVENT", written at most every MARK_WRITE_MS per room): a daemon that starts reads them and
 * reads those rooms back once the homeserver answers, for a homeserver restarted with it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <uv.h>

#include "frichebot/alloc.h"
#include "frichebot/clock.h"
#include "frichebot/err.h"
#include "frichebot/log.h"
#include "matrix.h"
#include "mx_util.h"

#define RECENT_MAX      10000 /* rooms remembered; beyond, the oldest activity is forgotten */
#define CATCHUP_PAGE    50    /* events per /messages page */
#define CATCHUP_PAGES   4     /* pages per room at most */
#define TS_MARGIN_MS    60000 /* paging stops at events this much older than the room's mark */
#define CATCHUP_RETRIES 5     /* a room whose read-back failed is tried again at the next probes */
#define MARK_WRITE_MS   30000 /* a room's mark is written to Redis at most this often */
#define RUN_GAP_MS      30000 /* read-backs start at most this often (flapping homeserver) */

/* Messages are read back; member events only to find a mark that is a join. */
static const char *const catchup_types[] = {"m.room.message", "m.room.encrypted", "m.room.member"};

static bool is_message(const json_t *ev)
{
    const char *t = json_string_value(json_object_get(ev, "type"));
    return t && (strcmp(t, "m.room.message") == 0 || strcmp(t, "m.room.encrypted") == 0);
}

static bool catchup_on(const struct mx *m)
{
    return m->mode == MODE_AS && m->o->as_catch_up_minutes > 0;
}

/* The window: catch_up_minutes, within the router's dedupe retention (a message read back must
 * still find its mark there if it was handled). */
static int64_t window_ms(const struct mx *m)
{
    int64_t w = (int64_t)m->o->as_catch_up_minutes * 60000;
    int64_t keep = (int64_t)m->core->cfg->router.dedupe_retention_hours * 3600000 - TS_MARGIN_MS;
    return keep > 0 && w > keep ? keep : w;
}

static void mark_del(struct mx *m, const char *room)
{
    const char *argv[] = {"HDEL", m->k_recent, room};
    (void)mx_rcmd_argv(m, NULL, NULL, 3, argv);
}

/* Forgets the rooms whose last activity is older than the window, here and in Redis. */
static void recent_prune(struct mx *m, int64_t now)
{
    const char *room;
    json_t *v, *tmp;
    const char *argv[2 + 64];
    int argc = 2;
    argv[0] = "HDEL";
    argv[1] = m->k_recent;
    json_t *gone = json_array();
    json_object_foreach_safe(m->as_recent, tmp, room, v)
    {
        if (now - json_integer_value(json_array_get(v, 1)) <= window_ms(m))
            continue;
        if (json_integer_value(json_array_get(v, 3)) > 0) /* written to Redis */
            json_array_append_new(gone, json_string(room));
        json_object_del(m->as_recent, room);
    }
    size_t i;
    json_array_foreach(gone, i, v)
    {
        argv[argc++] = json_string_value(v);
        if (argc == (int)FB_ARRAY_SIZE(argv) || i + 1 == json_array_size(gone)) {
            (void)mx_rcmd_argv(m, NULL, NULL, argc, argv);
            argc = 2;
        }
    }
    json_decref(gone);
}

void mx_as_recent_note(struct mx *m, const char *room, const char *event_id, int64_t ts_ms)
{
    if (!catchup_on(m) || !room || !event_id || !m->as_recent)
        return;
    int64_t now = fb_wall_ms();
    json_t *v = json_object_get(m->as_recent, room);
    if (ts_ms <= 0) /* a send: the homeserver's last time in the room, not the daemon's clock */
        ts_ms = v ? (int64_t)json_integer_value(json_array_get(v, 2)) : now;
    if (v && json_integer_value(json_array_get(v, 2)) > ts_ms)
        return; /* an older event (one read back, or sent again): the mark stays */
    int64_t written = v ? (int64_t)json_integer_value(json_array_get(v, 3)) : 0;
    if (!v && json_object_size(m->as_recent) >= RECENT_MAX) {
        recent_prune(m, now);
        if (json_object_size(m->as_recent) >= RECENT_MAX) {
            FB_WARN(MATRIX,
                    "more than %d rooms active in %u minutes: the catch-up after a "
                    "homeserver restart forgets them all and starts again",
                    RECENT_MAX, m->o->as_catch_up_minutes);
            json_object_clear(m->as_recent);
            const char *argv[] = {"DEL", m->k_recent};
            (void)mx_rcmd_argv(m, NULL, NULL, 2, argv);
        }
    }
    /* A mark written a little late only makes a read-back hand more events: the router drops
     * those it has. */
    if (now - written >= MARK_WRITE_MS) {
        char *val = fb_asprintf("%lld %s", (long long)ts_ms, event_id);
        char ttl[24];
        snprintf(ttl, sizeof(ttl), "%" PRId64, window_ms(m) + (int64_t)MARK_WRITE_MS);
        const char *argv[] = {"HSET", m->k_recent, room, val};
        const char *exp[] = {"PEXPIRE", m->k_recent, ttl}; /* the whole hash, once all are quiet */
        if (mx_rcmd_argv(m, NULL, NULL, 4, argv) == 0) {
            written = now;
            (void)mx_rcmd_argv(m, NULL, NULL, 3, exp);
        }
        fb_free(val);
    }
    /* [last event id, wall ms of the last activity, the event's origin_server_ts, wall ms of its
     * last write to Redis (0: never)] */
    json_object_set_new(m->as_recent, room,
                        json_pack("[s, I, I, I]", event_id, (json_int_t)now, (json_int_t)ts_ms,
                                  (json_int_t)written));
}

void mx_as_recent_forget(struct mx *m, const char *room)
{
    if (!catchup_on(m) || !m->as_recent || !room)
        return;
    json_object_del(m->as_recent, room);
    json_object_del(m->as_catchup_todo, room);
    mark_del(m, room);
}

/* The marks a daemon before this one kept: the rooms are read back once the homeserver answers
 * (it may have restarted with the daemon). */
static void on_marks_loaded(struct mx *m, int status, redisReply *reply, void *arg)
{
    (void)arg;
    if (status || !reply || reply->type != REDIS_REPLY_ARRAY || m->stopping || !m->a ||
        !m->as_recent)
        return;
    int64_t now = fb_wall_ms();
    size_t n = 0;
    for (size_t i = 0; i + 1 < reply->elements; i += 2) {
        const redisReply *f = reply->element[i], *val = reply->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || val->type != REDIS_REPLY_STRING)
            continue;
        char *end = NULL;
        long long ts = strtoll(val->str, &end, 10);
        if (!end || *end != ' ' || end[1] != '$' || json_object_get(m->as_recent, f->str))
            continue;
        /* the activity: the event's time, so that the window still applies */
        json_object_set_new(
            m->as_recent, f->str,
            json_pack("[s, I, I, I]", end + 1, (json_int_t)ts, (json_int_t)ts, (json_int_t)now));
        n++;
    }
    recent_prune(m, now);
    n = json_object_size(m->as_recent);
    if (n > 0) {
        FB_INFO(MATRIX,
                "%zu room(s) active in the last %u minutes before this start: read back "
                "once the homeserver answers",
                n, m->o->as_catch_up_minutes);
        if (!m->hs_down_since) {
            m->hs_down_since = now;
            m->as_catchup_at_start = true;
        }
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Reading the rooms back */

struct readback {
    struct mx *m;
    char *room;
    char *last;    /* the room's last event handled or sent: paging stops there */
    int64_t since; /* ...or at events older than this (origin_server_ts) */
    json_t *acc;   /* the events found, newest first */
    unsigned pages;
    bool found;
};

static void run_next(struct mx *m);

static void rb_free(struct readback *rb)
{
    json_decref(rb->acc);
    fb_free(rb->room);
    fb_free(rb->last);
    fb_free(rb);
}

/* The room is done (status 0) or must be read again at a later probe. */
static void room_done(struct mx *m, const char *room, int status)
{
    json_t *t = json_object_get(m->as_catchup_todo, room);
    if (status && status != FB_ECANCELED && t) {
        json_int_t tries = json_integer_value(json_array_get(t, 0));
        if (tries + 1 < CATCHUP_RETRIES) {
            json_array_set_new(t, 0, json_integer(tries + 1));
            m->as_catchup_retry = true;
            return;
        }
        char tag[FB_MX_TAG_LEN + 1];
        FB_WARN(MATRIX, "[matrix|%s] catch-up: the room could not be read back %d times: given up",
                mx_conv_tag(room, tag), CATCHUP_RETRIES);
    }
    json_object_del(m->as_catchup_todo, room);
}

static void on_rb_batch_done(struct batch *bt, int status)
{
    struct mx *m = bt->m;
    char *room = bt->owner;
    bt->owner = NULL;
    char tag[FB_MX_TAG_LEN + 1];
    if (status)
        FB_INFO(MATRIX, "[matrix|%s] catch-up: messages not all handed (%s): read again later",
                mx_conv_tag(room, tag), fb_err_name(status));
    room_done(m, room, status);
    fb_free(room);
    m->as_catchup_busy = false;
    run_next(m);
    mx_batch_free(bt); /* last: it may drop the instance's last reference */
}

/* Hands the events found (newest first in rb->acc) to the router, oldest first. */
static void rb_hand(struct readback *rb)
{
    struct mx *m = rb->m;
    char tag[FB_MX_TAG_LEN + 1];
    mx_conv_tag(rb->room, tag);
    size_t n = json_array_size(rb->acc);
    if (!rb->found && rb->last)
        FB_INFO(MATRIX,
                "[matrix|%s] catch-up: the last event handled was not found in %u page(s): the "
                "%zu message(s) since the mark are handed",
                tag, rb->pages, n);
    if (n == 0) {
        room_done(m, rb->room, 0);
        rb_free(rb);
        m->as_catchup_busy = false;
        run_next(m);
        return;
    }
    json_t *events = json_array();
    for (size_t i = n; i > 0; i--)
        json_array_append(events, json_array_get(rb->acc, i - 1));
    mx_e2ee_decrypt_events(m, rb->room, events);
    json_t *doc = json_pack("{s:o}", "events", events);
    char *txt = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    struct batch *bt = mx_batch_new(m);
    bt->done = on_rb_batch_done;
    bt->quiet = true; /* most are duplicates: no typing, no receipt */
    fb_mx_parse_opts_t po = mx_parse_opts(m, true);
    int rc = txt ? fb_mx_parse_txn(txt, strlen(txt), &po, &bt->b) : FB_EPROTO;
    if (txt) {
        explicit_bzero(txt, strlen(txt)); /* decrypted messages */
        free(txt);                        /* fb-lint: allow free (jansson's allocation) */
    }
    if (rc) { /* /messages events are the homeserver's own: not expected */
        FB_WARN(MATRIX, "[matrix|%s] catch-up: the messages read back are unreadable (%s)", tag,
                fb_err_name(rc));
        mx_batch_free(bt);
        room_done(m, rb->room, 0);
        rb_free(rb);
        m->as_catchup_busy = false;
        run_next(m);
        return;
    }
    m->as_catchup_events += bt->b.n;
    FB_INFO(MATRIX,
            "[matrix|%s] catch-up: %zu message(s) after the last event handled, handed to the "
            "router (%zu read back; those it already has are dropped)",
            tag, bt->b.n, n);
    bt->owner = rb->room;
    rb->room = NULL;
    rb_free(rb);
    mx_batch_pump(bt);
}

static int rb_page(struct readback *rb, const char *from);

static void on_rb_page(struct mx *m, int err, int status, json_t *body,
                       const fb_http_response_t *resp, void *arg)
{
    (void)resp;
    struct readback *rb = arg;
    char tag[FB_MX_TAG_LEN + 1];
    mx_conv_tag(rb->room, tag);
    int rc = mx_classify(err, status);
    if (rc || m->stopping || !m->a) {
        FB_INFO(MATRIX, "[matrix|%s] catch-up: /messages failed (%s, HTTP %d)", tag,
                fb_err_name(err), status);
        room_done(m, rb->room, rc ? rc : FB_ECANCELED);
        rb_free(rb);
        m->as_catchup_busy = false;
        run_next(m);
        return;
    }
    json_t *chunk = json_object_get(body, "chunk");
    if (err || !json_is_array(chunk)) { /* refused for good (the bot left the room): nothing */
        FB_INFO(MATRIX, "[matrix|%s] catch-up: /messages refused or unreadable (HTTP %d)", tag,
                status);
        json_object_del(m->as_recent, rb->room);
        mark_del(m, rb->room);
        room_done(m, rb->room, 0);
        rb_free(rb);
        m->as_catchup_busy = false;
        run_next(m);
        return;
    }
    rb->pages++;
    bool old = false;
    size_t i;
    json_t *ev;
    json_array_foreach(chunk, i, ev)
    {
        const char *id = json_string_value(json_object_get(ev, "event_id"));
        if (rb->last && id && strcmp(id, rb->last) == 0) {
            rb->found = true;
            break;
        }
        /* The bot's own membership (its join, a leave before a join again): nothing before it
         * was the bot's to answer, or it was answered before. */
        const char *type = json_string_value(json_object_get(ev, "type"));
        const char *key = json_string_value(json_object_get(ev, "state_key"));
        if (type && strcmp(type, "m.room.member") == 0 && key && strcmp(key, m->o->user_id) == 0) {
            rb->found = true;
            break;
        }
        json_t *ts = json_object_get(ev, "origin_server_ts");
        if (json_is_integer(ts) && json_integer_value(ts) < rb->since) {
            old = true;
            break;
        }
        if (is_message(ev))
            json_array_append(rb->acc, ev);
    }
    const char *end = json_string_value(json_object_get(body, "end"));
    if (rb->found || old || !end || json_array_size(chunk) == 0 || rb->pages >= CATCHUP_PAGES) {
        rb_hand(rb);
        return;
    }
    if (rb_page(rb, end)) {
        room_done(m, rb->room, FB_EAGAIN);
        rb_free(rb);
        m->as_catchup_busy = false;
        run_next(m);
    }
}

static int rb_page(struct readback *rb, const char *from)
{
    /* no `from` the first time: from the end of the timeline (Matrix 1.3) */
    char *path =
        mx_messages_path(rb->room, from, catchup_types, FB_ARRAY_SIZE(catchup_types), CATCHUP_PAGE);
    int rc =
        mx_call_full(rb->m, "GET", path, NULL, 0, &mx_no_retry, true, false, false, on_rb_page, rb);
    fb_free(path);
    return rc;
}

/* Reads back the next room of the run, one at a time (the homeserver has just restarted). */
static void run_next(struct mx *m)
{
    if (json_object_size(m->as_catchup_todo) > 0 && (!m->aliases_ready || !mx_e2ee_as_ready(m))) {
        /* The advisors' rooms by their alias, and the keys to decrypt, first (as for a
         * transaction): tried again at the next probe. */
        mx_aliases_resolve(m);
        mx_as_device_ensure(m);
        m->as_catchup_retry = true;
        return;
    }
    while (!m->as_catchup_busy && !m->stopping && m->a) {
        const char *room = NULL;
        json_t *v;
        bool found = false;
        json_object_foreach(m->as_catchup_todo, room, v)
        {
            if (!json_object_get(m->as_catchup_done, room)) {
                found = true;
                break;
            }
        }
        if (!found) {
            json_object_clear(m->as_catchup_done);
            if (json_object_size(m->as_catchup_todo) == 0)
                FB_INFO(MATRIX, "catch-up after the homeserver's restart: done");
            return;
        }
        json_object_set_new(m->as_catchup_done, room, json_true());
        struct readback *rb = fb_calloc(1, sizeof(*rb));
        rb->m = m;
        rb->room = fb_strdup(room);
        rb->acc = json_array();
        const char *last = json_string_value(json_array_get(v, 1));
        rb->last = last ? fb_strdup(last) : NULL;
        rb->since = (int64_t)json_integer_value(json_array_get(v, 2));
        if (rb_page(rb, NULL) == 0) {
            m->as_catchup_busy = true;
            return;
        }
        room_done(m, rb->room, FB_EAGAIN);
        rb_free(rb);
    }
}

/* Starts reading back every room active in the window (those of a run in progress stay). */
static void catchup_start(struct mx *m, int64_t down_ms, bool at_start)
{
    int64_t now = fb_wall_ms();
    recent_prune(m, now);
    const char *room;
    json_t *v;
    /* Each room as it is now, before anything moves its mark on (a transaction of the restarted
     * homeserver, a resent reply): [failed attempts, the mark, the oldest time to page back to].
     * A room still waiting keeps its earlier, older snapshot; one read in the run in progress is
     * read again. */
    json_object_foreach(m->as_recent, room, v)
    {
        json_t *t = json_object_get(m->as_catchup_todo, room);
        if (t) {
            json_array_set_new(t, 0, json_integer(0));
            continue;
        }
        json_object_del(m->as_catchup_done, room);
        json_int_t ts = json_integer_value(json_array_get(v, 2));
        json_object_set_new(
            m->as_catchup_todo, room,
            json_pack("[i, O, I]", 0, json_array_get(v, 0), (json_int_t)(ts - TS_MARGIN_MS)));
    }
    m->as_catchups++;
    m->as_catchup_last_ms = now;
    if (at_start)
        FB_NOTICE(MATRIX,
                  "the homeserver answers: reading back the %zu room(s) active in the last %u "
                  "minutes before this start (it may have restarted with the daemon and lost "
                  "events for the service)",
                  json_object_size(m->as_catchup_todo), m->o->as_catch_up_minutes);
    else
        FB_NOTICE(MATRIX,
                  "the homeserver answers again after %lld ms of failures: reading back the %zu "
                  "room(s) active in the last %u minutes (a restarting homeserver may have lost "
                  "events for the service)",
                  (long long)down_ms, json_object_size(m->as_catchup_todo),
                  m->o->as_catch_up_minutes);
    run_next(m);
}

/* down: the homeserver is not there; else it answered. */
static void hs_state(struct mx *m, bool down, int err, int status)
{
    if (!catchup_on(m) || !m->as_recent || m->stopping || !m->a)
        return;
    int64_t now = fb_wall_ms();
    if (down) {
        if (!m->hs_down_since) {
            m->hs_down_since = now;
            FB_INFO(MATRIX,
                    "the homeserver does not answer (%s, HTTP %d): once it does, the "
                    "rooms active in the last %u minutes are read back",
                    fb_err_name(err), status, m->o->as_catch_up_minutes);
        }
        return;
    }
    if (m->hs_down_since) {
        int64_t since = m->hs_down_since;
        bool at_start = m->as_catchup_at_start;
        m->hs_down_since = 0;
        m->as_catchup_at_start = false;
        if (now - m->as_catchup_last_ms < RUN_GAP_MS && !at_start) {
            m->as_catchup_pending = true; /* a flapping homeserver: at the next probe after */
            m->as_catchup_pending_ms = now - since;
            return;
        }
        catchup_start(m, now - since, at_start);
    }
}

void mx_as_hs_seen(struct mx *m, int err, int status)
{
    /* Down only when nothing listens (connection refused): a timeout or a 5xx of one request
     * says little (the probe's own failures count, on_probe()). An answer of any kind, 5xx
     * aside, says it is there. */
    if (err == FB_ECANCELED)
        return;
    if (err == FB_ECONNECT)
        hs_state(m, true, err, status);
    else if (!err || (err == FB_EHTTP && status > 0 && status < 500))
        hs_state(m, false, err, status);
}

/* ---------------------------------------------------------------------------------------- */
/* The probe */

static void on_probe(struct mx *m, int err, int status, json_t *body,
                     const fb_http_response_t *resp, void *arg)
{
    (void)body, (void)resp, (void)arg;
    m->as_probe_busy = false;
    if (err != FB_ECANCELED) /* mx_as_hs_seen() saw an answer already (matrix.c, on_call) */
        hs_state(m, err && !(err == FB_EHTTP && status > 0 && status < 500), err, status);
}

static void on_probe_timer(uv_timer_t *t)
{
    struct mx *m = t->data;
    if (m->stopping || !m->a)
        return;
    if (m->as_catchup_pending && !m->hs_down_since &&
        fb_wall_ms() - m->as_catchup_last_ms >= RUN_GAP_MS) {
        m->as_catchup_pending = false;
        catchup_start(m, m->as_catchup_pending_ms, false);
    }
    if (m->as_catchup_retry && !m->as_catchup_busy && !m->hs_down_since) {
        m->as_catchup_retry = false;
        run_next(m);
    }
    recent_prune(m, fb_wall_ms());
    if (m->as_probe_busy || (json_object_size(m->as_recent) == 0 && !m->hs_down_since))
        return; /* nothing to read back after a restart: no need to watch for one */
    /* No token (the path needs none), one attempt, at most one interval. */
    if (mx_call_full(m, "GET", "/_matrix/client/versions", NULL, m->o->as_probe_interval_ms,
                     &mx_no_retry, true, false, true, on_probe, NULL) == 0)
        m->as_probe_busy = true;
}

void mx_as_catchup_start(struct mx *m)
{
    if (m->mode != MODE_AS || !m->timer_init)
        return;
    if (!catchup_on(m)) { /* turned off: the marks an earlier run kept are not needed */
        char *k = fb_asprintf("%s{g}:matrix:recent",
                              m->core->cfg->store.key_prefix ? m->core->cfg->store.key_prefix : "");
        const char *argv[] = {"DEL", k};
        (void)mx_rcmd_argv(m, NULL, NULL, 2, argv);
        fb_free(k);
        return;
    }
    m->as_recent = json_object();
    m->as_catchup_todo = json_object();
    m->as_catchup_done = json_object();
    m->k_recent = fb_asprintf("%s{g}:matrix:recent",
                              m->core->cfg->store.key_prefix ? m->core->cfg->store.key_prefix : "");
    const char *argv[] = {"HGETALL", m->k_recent};
    (void)mx_rcmd_argv(m, on_marks_loaded, NULL, 2, argv);
    uv_timer_start(&m->timer, on_probe_timer, m->o->as_probe_interval_ms,
                   m->o->as_probe_interval_ms);
}

void mx_as_catchup_free(struct mx *m)
{
    json_decref(m->as_recent);
    json_decref(m->as_catchup_todo);
    json_decref(m->as_catchup_done);
    m->as_recent = m->as_catchup_todo = m->as_catchup_done = NULL;
    fb_free(m->k_recent);
}
