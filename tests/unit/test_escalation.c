/* SPDX-License-Identifier: MIT */
/*
 * test_escalation.c - the escalation module's configuration, room ownership and the COMMIT
 * operations it builds (daemon/features/escalation.c). The whole flow, with Redis, Synapse and the
 * daemon, is in tests/integration/test_escalation.py.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <uv.h>

#include "core/store.h"
#include "features/escalation.h"
#include "frichebot/alloc.h"
#include "frichebot/err.h"
#include "io/config.h"
#include "io/paths.h"
#include "io/redis.h"
#include "task.h"

static void kick(void *arg, const char *key)
{
    (void)arg;
    (void)key;
}

static int handback(void *arg, const char *key, const char *event_id, fb_inbound_cb cb, void *cba)
{
    (void)arg;
    (void)key;
    (void)event_id;
    (void)cb;
    (void)cba;
    return 0;
}

struct env {
    uv_loop_t loop;
    fb_config_t *cfg;
    fb_redis_t *redis;
    fb_store_t *store;
};

static int env_open_at(struct env *v, const char *redis, const char *esc_yaml, fb_esc_t **out,
                       char **errors)
{
    char *text = fb_asprintf("server:\n  listen: \"127.0.0.1:8080\"\nredis:\n  address: \"%s\"\n%s",
                             redis, esc_yaml);
    fb_buf_t e;
    fb_buf_init(&e, 1u << 20);
    v->cfg = fb_config_parse("t.yaml", text, strlen(text), &e);
    fb_free(text);
    if (!v->cfg) {
        *errors = fb_buf_take(&e);
        return FB_EINVAL;
    }
    ASSERT_EQ(uv_loop_init(&v->loop), 0);
    v->redis = fb_redis_create(&v->loop, &v->cfg->redis);
    ASSERT_NOT_NULL(v->redis);
    v->store = fb_store_create(v->redis, &v->cfg->store);
    ASSERT_NOT_NULL(v->store);
    fb_esc_hooks_t hooks = {.arg = NULL, .kick = kick, .handback = handback};
    int rc = fb_esc_create(&v->loop, v->cfg, v->store, NULL, out, &e);
    if (rc == 0 && *out)
        fb_esc_feature.attach(*out, &hooks);
    *errors = fb_buf_take(&e);
    return rc;
}

static int env_open(struct env *v, const char *esc_yaml, fb_esc_t **out, char **errors)
{
    return env_open_at(v, "tcp://127.0.0.1:6379", esc_yaml, out, errors);
}

static void env_close(struct env *v, fb_esc_t *esc)
{
    fb_esc_destroy(esc);
    if (v->store)
        fb_store_destroy(v->store);
    if (v->redis) {
        fb_redis_close(v->redis, NULL, NULL);
        uv_run(&v->loop, UV_RUN_DEFAULT);
        ASSERT_EQ(uv_loop_close(&v->loop), 0);
    }
    fb_config_free(v->cfg);
}

TEST_IMPL(escalation_config_disabled_and_bad_lines)
{
    struct env v = {0};
    fb_esc_t *esc = NULL;
    char *errors = NULL;
    ASSERT_EQ(env_open(&v, "", &esc, &errors), 0);
    ASSERT_NULL(esc); /* disabled by default */
    fb_free(errors);
    env_close(&v, esc);

    struct env w = {0};
    ASSERT_EQ(env_open(&w,
                       "escalation:\n  enabled: true\n  rooms: [\"52 !a:x\", \"52\", \"xyz !b:x\", "
                       "\"* nope\", \"r44 #conseil:x\", \"2A #nocolon\", \"974 #a b:x\", \"973 "
                       "#:x\", \"972 #a:\"]\n"
                       "  response_times: [\"r44\"]\n",
                       &esc, &errors),
              FB_EINVAL);
    ASSERT_NULL(esc);
    ASSERT_NOT_NULL(strstr(errors, "escalation.rooms[1]"));
    ASSERT_NOT_NULL(strstr(errors, "escalation.rooms[2]"));
    ASSERT_NOT_NULL(strstr(errors, "escalation.rooms[3]"));
    ASSERT_NULL(strstr(errors, "escalation.rooms[0]"));
    ASSERT_NULL(strstr(errors, "escalation.rooms[4]")); /* an alias is a room */
    ASSERT_NOT_NULL(strstr(errors, "escalation.rooms[5]"));
    ASSERT_NOT_NULL(strstr(errors, "escalation.rooms[6]"));
    /* The Matrix adapter's rule (fb_mx_alias_ok): both parts non-empty (control characters are
     * refused by the configuration's own check of the lines). */
    ASSERT_NOT_NULL(strstr(errors, "escalation.rooms[7]"));
    ASSERT_NOT_NULL(strstr(errors, "escalation.rooms[8]"));
    ASSERT_NOT_NULL(strstr(errors, "!room:server or #alias:server"));
    ASSERT_NOT_NULL(strstr(errors, "escalation.response_times[0]"));
    fb_free(errors);
    env_close(&w, esc);

    struct env n = {0};
    ASSERT_EQ(env_open(&n, "escalation:\n  enabled: true\n", &esc, &errors), FB_EINVAL);
    ASSERT_NOT_NULL(strstr(errors, "at least one room"));
    fb_free(errors);
    env_close(&n, esc);
    return 0;
}

TEST_IMPL(escalation_owns_rooms_and_threads_and_builds_ops)
{
    struct env v = {0};
    fb_esc_t *esc = NULL;
    char *errors = NULL;
    ASSERT_EQ(env_open(&v,
                       "escalation:\n  enabled: true\n  rooms: [\"52 !a:x\", \"r44 !g:x\", \"* "
                       "!d:x\"]\n  response_times: [\"* sous cinq jours\"]\n  watchdog_ms: 5000\n",
                       &esc, &errors),
              0);
    fb_free(errors);
    ASSERT_NOT_NULL(esc);
    ASSERT(fb_esc_owns(esc, "matrix", "!a:x"));
    ASSERT(fb_esc_owns(esc, "matrix", "!a:x/$root"));
    ASSERT(fb_esc_owns(esc, "matrix", "!d:x"));
    ASSERT(!fb_esc_owns(esc, "matrix", "!a:xy"));
    ASSERT(!fb_esc_owns(esc, "matrix", "!b:x"));
    ASSERT(!fb_esc_owns(esc, "web", "!a:x"));
    ASSERT(!fb_esc_owns(esc, "matrix", "#a:x"));

    /* A new ticket without a known commune goes to "*", the user told the response time. */
    json_t *effects = json_pack("[{s:s, s:s, s:s}]", "type", "escalate", "reason", "demande",
                                "summary", "Dialogue : test <b>");
    json_t *ops = json_pack("{s:[]}", "out");
    size_t says = 1;
    fb_esc_step_t st = {.key = "web:tok",
                        .session = NULL,
                        .effects = effects,
                        .text = "conseiller <b>",
                        .wid = "0123456789abcdef",
                        .user = true,
                        .now = 1000};
    fb_esc_commit_ops(esc, &st, ops, &says);
    json_t *ann = json_object_get(json_object_get(ops, "esc"), "ann");
    ASSERT(json_is_array(ann));
    ASSERT_STR_EQ(json_string_value(json_array_get(ann, 2)), "!d:x");
    ASSERT_STR_EQ(json_string_value(json_array_get(ann, 3)), "*");
    ASSERT_STR_EQ(json_string_value(json_array_get(ann, 5)), "0123456789abcdef"); /* ticket id */
    json_t *root = json_loads(json_string_value(json_array_get(ann, 0)), 0, NULL);
    ASSERT_NOT_NULL(root);
    ASSERT_STR_EQ(json_string_value(json_object_get(root, "txn")), "esc-0123456789abcdef.root");
    ASSERT_NOT_NULL(
        strstr(json_string_value(json_object_get(root, "text")), "\n\nDialogue : test <b>"));
    ASSERT_NOT_NULL(strstr(json_string_value(json_object_get(root, "html")), "&lt;b&gt;"));
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(root, "record"), "rval")),
                  "web:tok");
    json_decref(root);
    ASSERT_EQ(says, 2);
    ASSERT_EQ(json_array_size(json_object_get(ops, "out")), 1);
    json_t *told =
        json_loads(json_string_value(json_array_get(json_object_get(ops, "out"), 0)), 0, NULL);
    ASSERT_STR_EQ(json_string_value(json_object_get(told, "text")),
                  "Un conseiller vous répondra ici, en général sous cinq jours.");
    json_decref(told);
    json_decref(ops);

    /* A later message of the escalated session is a relay (not one of a session that is not
     * escalated); a handback closes. */
    json_t *none = json_array();
    ops = json_pack("{s:[]}", "out");
    st.effects = none;
    st.text = "une question";
    fb_esc_commit_ops(esc, &st, ops, &says);
    ASSERT_NULL(json_object_get(json_object_get(ops, "esc"), "relay"));
    json_decref(ops);
    json_t *escalated = json_pack("{s:b}", "x", 1);
    st.session = escalated;
    ops = json_pack("{s:[]}", "out");
    fb_esc_commit_ops(esc, &st, ops, &says);
    json_t *relay = json_loads(
        json_string_value(json_object_get(json_object_get(ops, "esc"), "relay")), 0, NULL);
    ASSERT_STR_EQ(json_string_value(json_object_get(relay, "text")), "Usager : une question");
    /* The relay waits for the root's event id: it reads it from the ticket, and records its own
     * event id in the user's list of sent messages (withdrawn on forget). */
    const json_t *thread = json_object_get(relay, "thread");
    ASSERT_STR_EQ(json_string_value(json_object_get(thread, "key")), "fb:{c:web:tok}:ticket");
    ASSERT_STR_EQ(json_string_value(json_object_get(thread, "field")), "root");
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(relay, "record"), "list")),
                  "fb:{c:web:tok}:esc:sent");
    json_decref(relay);
    json_decref(ops);
    /* A command the engine answered while the ticket waits (« mes données ») is not relayed. */
    json_t *said = json_pack("[{s:s, s:s, s:s}]", "type", "say", "text", "Vos réponses", "html",
                             "<p>Vos réponses</p>");
    st.effects = said;
    st.text = "mes données";
    ops = json_pack("{s:[]}", "out");
    fb_esc_commit_ops(esc, &st, ops, &says);
    ASSERT_NULL(json_object_get(json_object_get(ops, "esc"), "relay"));
    json_decref(ops);
    /* « retour » or « recommencer »: the session leaves the escalated state, the ticket closes
     * and its thread is told */
    st.old_session = escalated;
    st.session = NULL;
    st.text = "recommencer";
    ops = json_pack("{s:[]}", "out");
    fb_esc_commit_ops(esc, &st, ops, &says);
    json_t *resumed = json_loads(
        json_string_value(json_object_get(json_object_get(ops, "esc"), "resumed")), 0, NULL);
    ASSERT_NOT_NULL(resumed);
    ASSERT_NOT_NULL(strstr(json_string_value(json_object_get(resumed, "text")),
                           "L'usager a repris le questionnaire"));
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(resumed, "thread"), "key")),
                  "fb:{c:web:tok}:ticket");
    ASSERT_NULL(json_object_get(json_object_get(ops, "esc"), "relay"));
    json_decref(resumed);
    json_decref(ops);
    json_decref(said);
    st.old_session = NULL;
    st.session = escalated;
    st.effects = none;

    ops = json_pack("{s:[]}", "out");
    st.text = NULL;
    st.user = false;
    st.handback = true;
    fb_esc_commit_ops(esc, &st, ops, &says);
    ASSERT(json_is_true(json_object_get(json_object_get(ops, "esc"), "done")));
    json_decref(ops);
    json_decref(none);
    json_decref(escalated);
    json_decref(effects);
    env_close(&v, esc);
    return 0;
}

/* has_advisor, the engine's question (issue #19): the rooms' lookup, the département's line,
 * the région's, then `*`; nobody when escalation is disabled. */
TEST_IMPL(escalation_has_advisor_by_territory)
{
    ASSERT(!fb_esc_has_advisor(NULL, "30007"));
    ASSERT(!fb_esc_has_advisor(NULL, NULL));
    fb_geo_t *geo = fb_geo_load(fb_data_path(FB_DATA_GEO), NULL);
    ASSERT_NOT_NULL(geo);
    struct env v = {0};
    fb_esc_t *esc = NULL;
    char *errors = NULL;
    ASSERT_EQ(env_open(&v, "escalation:\n  enabled: true\n  rooms: [\"30 !a:x\", \"r11 !b:x\"]\n",
                       &esc, &errors),
              0);
    fb_free(errors);
    fb_esc_destroy(esc);
    fb_buf_t e;
    fb_buf_init(&e, 1u << 16);
    ASSERT_EQ(fb_esc_create(&v.loop, v.cfg, v.store, geo, &esc, &e), 0);
    ASSERT(fb_esc_has_advisor(esc, "30007"));  /* Alès, Gard: the département's line */
    ASSERT(fb_esc_has_advisor(esc, "75056"));  /* Paris: the région's line (r11) */
    ASSERT(!fb_esc_has_advisor(esc, "69123")); /* Lyon: no line, no `*` */
    ASSERT(!fb_esc_has_advisor(esc, NULL));    /* no commune yet: only `*` would do */
    ASSERT(!fb_esc_has_advisor(esc, "99999")); /* unknown code: as no commune */
    env_close(&v, esc);
    struct env w = {0};
    ASSERT_EQ(env_open(&w, "escalation:\n  enabled: true\n  rooms: [\"* !d:x\"]\n", &esc, &errors),
              0);
    fb_free(errors);
    ASSERT(fb_esc_has_advisor(esc, NULL));
    ASSERT(fb_esc_has_advisor(esc, "69123"));
    env_close(&w, esc);
    fb_buf_free(&e);
    fb_geo_free(geo);
    return 0;
}

/* ---- the watchdog's working hours and the advisors' response time, with a real Redis ---- */

struct wenv {
    fb_test_redis_t srv;
    struct env v;
    fb_esc_t *esc;
    redisContext *sync;
};

static long long rint_(redisContext *c, const char *fmt, const char *arg)
{
    return fb_test_redis_int(c, fmt, arg);
}

/* A real Redis, the module routing everything to !d:x with `more` escalation settings, and a
 * waiting ticket of web:tok created at `created` (ms) whose root $r is known. Non-zero: no Redis
 * server (the test is skipped). */
static int wenv_open(struct wenv *w, const char *more, int64_t created)
{
    memset(w, 0, sizeof(*w));
    if (fb_test_redis_start(&w->srv) != 0)
        return -1;
    char *addr = fb_asprintf("unix:%s", w->srv.sock);
    char *yaml = fb_asprintf("escalation:\n  enabled: true\n  rooms: [\"* !d:x\"]\n%s", more);
    char *errors = NULL;
    ASSERT_EQ(env_open_at(&w->v, addr, yaml, &w->esc, &errors), 0);
    fb_free(errors);
    fb_free(yaml);
    fb_free(addr);
    ASSERT_OK(fb_redis_start(w->v.redis));
    w->sync = redisConnectUnix(w->srv.sock);
    ASSERT(w->sync && !w->sync->err);
    char at[24];
    snprintf(at, sizeof(at), "%lld", (long long)created);
    freeReplyObject(redisCommand(w->sync,
                                 "HSET fb:{c:web:tok}:ticket state waiting root $r room !d:x "
                                 "adapter matrix created %s",
                                 at));
    freeReplyObject(redisCommand(w->sync, "HSET fb:{g}:esc:roots $r web:tok"));
    return 0;
}

static void wenv_close(struct wenv *w)
{
    redisFree(w->sync);
    fb_esc_stop(w->esc, NULL, NULL);
    uv_run(&w->v.loop, UV_RUN_NOWAIT);
    env_close(&w->v, w->esc);
    fb_test_redis_destroy(&w->srv);
}

static bool esc_idle(void *arg)
{
    return fb_esc_inflight(arg) == 0;
}

static void run_until_idle(struct wenv *w)
{
    ASSERT(fb_test_wait_cond(&w->v.loop, esc_idle, w->esc, 60000));
}

/* One watchdog pass at `ms` (Unix ms); returns the entries then in the advisors' room outbox. */
static long long watch_at(struct wenv *w, int64_t ms)
{
    freeReplyObject(redisCommand(w->sync, "ZADD fb:{g}:esc:open 0 web:tok")); /* due */
    fb__esc_set_clock(w->esc, ms);
    fb__esc_watch(w->esc);
    run_until_idle(w);
    return rint_(w->sync, "LLEN %s", "fb:{c:matrix:!d:x}:outbox");
}

TEST_IMPL(escalation_watchdog_keeps_to_working_hours)
{
    struct wenv w;
    if (wenv_open(&w, "  watchdog_ms: 60000\n  working_hours_only: true\n", 1796020000000LL))
        return TEST_SKIP;

    /* Saturday 28 November 2026, 10:00 in Paris: nothing, looked at again later. */
    ASSERT_EQ(watch_at(&w, 1795856400000LL), 0);
    ASSERT_EQ(rint_(w.sync, "ZSCORE fb:{g}:esc:open %s", "web:tok"), 1795856400000LL + 1000);
    /* Christmas, a Friday, 10:00: a holiday. */
    ASSERT_EQ(watch_at(&w, 1798189200000LL), 0);
    /* Monday 30 November, 20:00: after hours. */
    ASSERT_EQ(watch_at(&w, 1796065200000LL), 0);
    ASSERT_EQ(rint_(w.sync, "HGET fb:{c:web:tok}:ticket %s", "announced"), -1);
    /* Monday 30 November, 10:00: announced in the room, the user told once, next look in
     * watchdog_ms; a second announcement does not tell the user again. */
    ASSERT_EQ(watch_at(&w, 1796029200000LL), 1);
    ASSERT_EQ(rint_(w.sync, "LLEN %s", "fb:{c:web:tok}:outbox"), 1);
    ASSERT_EQ(rint_(w.sync, "ZSCORE fb:{g}:esc:open %s", "web:tok"), 1796029200000LL + 60000);
    ASSERT_EQ(watch_at(&w, 1796029200000LL + 60000), 2);
    ASSERT_EQ(rint_(w.sync, "LLEN %s", "fb:{c:web:tok}:outbox"), 1);
    ASSERT_EQ(rint_(w.sync, "HGET fb:{c:web:tok}:ticket %s", "announced"), 2);

    wenv_close(&w);
    return 0;
}

static void inbound_done(int status, void *arg)
{
    int *st = arg;
    *st = status == 0 ? 1 : status;
}

/* An advisor's thread message through fb_esc_inbound() at `ms`; returns once it is handled. */
static void advisor_says(struct wenv *w, int64_t ms, const char *event_id, const char *text,
                         const char *name, bool gone)
{
    int st = 0;
    fb__esc_set_clock(w->esc, ms);
    fb_inbound_t ev = {.kind = FB_IN_MESSAGE,
                       .conv = "!d:x/$r",
                       .sender = "@camille:x",
                       .sender_name = name,
                       .sender_gone = gone,
                       .event_id = event_id,
                       .text = text};
    ASSERT_OK(fb_esc_inbound(w->esc, "matrix", &ev, inbound_done, &st));
    run_until_idle(w);
    ASSERT_EQ(st, 1);
}

static char *last_of(redisContext *c, const char *key)
{
    redisReply *r = redisCommand(c, "LINDEX %s -1", key);
    ASSERT_NOT_NULL(r);
    char *s = r->type == REDIS_REPLY_STRING ? fb_strdup(r->str) : NULL;
    freeReplyObject(r);
    return s;
}

TEST_IMPL(escalation_first_response_time_and_display_name)
{
    struct wenv w;
    if (wenv_open(&w, "", 1796029200000LL))
        return TEST_SKIP;

    /* A command of someone who left the advisors' room since is ignored: no claim, no sample. */
    advisor_says(&w, 1796029200000LL + 10000, "$g1", "!prendre", "Ancien", true);
    ASSERT_EQ(rint_(w.sync, "LLEN %s", "fb:{g}:stats:advisor_response_ms"), 0);
    ASSERT_EQ(rint_(w.sync, "LLEN %s", "fb:{c:web:tok}:outbox"), 0);
    ASSERT_EQ(rint_(w.sync, "LLEN %s", "fb:{c:matrix:!d:x/$r}:outbox"), 0);
    ASSERT_EQ(rint_(w.sync, "ZSCORE fb:{c:matrix:!d:x/$r}:ev %s", "$g1"),
              1796029200000LL + 10000); /* handled: its mark, scored by its time */
    redisReply *st = redisCommand(w.sync, "HGET fb:{c:web:tok}:ticket state");
    ASSERT_STR_EQ(st->str, "waiting");
    freeReplyObject(st);
    /* An internal note is no response; the claim 95 s after the escalation is the first. */
    advisor_says(&w, 1796029200000LL + 30000, "$n1", "!note à voir", "Camille", false);
    ASSERT_EQ(rint_(w.sync, "LLEN %s", "fb:{g}:stats:advisor_response_ms"), 0);
    /* The display name labels the advisor, cut at a character boundary, controls as spaces. */
    char longname[200];
    snprintf(longname, sizeof(longname), "Camille\x01Martin %s",
             "ééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééé");
    advisor_says(&w, 1796029200000LL + 95000, "$c1", "!prendre", longname, false);
    ASSERT_EQ(rint_(w.sync, "LLEN %s", "fb:{g}:stats:advisor_response_ms"), 1);
    ASSERT_EQ(rint_(w.sync, "LINDEX fb:{g}:stats:advisor_response_ms %s", "0"), 95000);
    char *told = last_of(w.sync, "fb:{c:web:tok}:outbox");
    ASSERT_NOT_NULL(told);
    json_t *e = json_loads(told, 0, NULL);
    const char *text = json_string_value(json_object_get(e, "text"));
    ASSERT_NOT_NULL(text);
    ASSERT_EQ(strncmp(text, "Camille Martin éé", strlen("Camille Martin éé")), 0);
    json_t *utf8 = json_string(text); /* NULL if the cut had split a character */
    ASSERT_NOT_NULL(utf8);
    json_decref(utf8);
    const char *end = strstr(text, ", conseiller, a pris en charge");
    ASSERT_NOT_NULL(end);
    ASSERT(end - text <= 63);
    json_decref(e);
    fb_free(told);
    /* Later messages add no sample; without a display name the localpart labels. */
    advisor_says(&w, 1796029200000LL + 200000, "$m1", "Bonjour", NULL, false);
    ASSERT_EQ(rint_(w.sync, "LLEN %s", "fb:{g}:stats:advisor_response_ms"), 1);
    told = last_of(w.sync, "fb:{c:web:tok}:outbox");
    ASSERT_NOT_NULL(strstr(told, "camille (conseiller) : Bonjour"));
    fb_free(told);

    wenv_close(&w);
    return 0;
}

/* ---- the adapter's record of a sent message (fb_esc_sent()) ---- */

struct sent_result {
    int calls;
    int status;
    bool withdraw;
};

static void on_sent(int status, bool withdraw, void *arg)
{
    struct sent_result *r = arg;
    r->calls++;
    r->status = status;
    r->withdraw = withdraw;
}

/* core->sent for `msg_id`, sent to room !d:x, of an entry whose record is `record` (JSON); waits
 * for the answer. */
static struct sent_result record_sent(struct wenv *w, const char *record, const char *msg_id)
{
    fb_core_t core = {.loop = &w->v.loop, .redis = w->v.redis, .store = w->v.store};
    json_t *entry = json_pack("{s:s, s:o}", "txn", "t1", "record", json_loads(record, 0, NULL));
    ASSERT_NOT_NULL(entry);
    struct sent_result r = {0, 99, false};
    ASSERT_OK(fb_esc_sent(&core, entry, "!d:x", msg_id, on_sent, &r));
    json_decref(entry);
    ASSERT(fb_test_wait_int(&w->v.loop, &r.calls, 1, 30000));
    return r;
}

static char *hget_(redisContext *c, const char *key, const char *field)
{
    redisReply *r = redisCommand(c, "HGET %s %s", key, field);
    ASSERT_NOT_NULL(r);
    char *s = r->type == REDIS_REPLY_STRING ? fb_strdup(r->str) : NULL;
    freeReplyObject(r);
    return s;
}

#define ROOT_RECORD(conv)                                                                          \
    "{\"key\": \"fb:{c:" conv "}:ticket\", \"field\": \"root\", \"rkey\": \"fb:{g}:esc:roots\", "  \
    "\"rval\": \"" conv "\", \"list\": \"fb:{c:" conv "}:esc:sent\"}"

static void forget_u1(void *arg)
{
    struct wenv *w = arg;
    freeReplyObject(redisCommand(w->sync, "DEL fb:{c:web:u1}:ticket fb:{c:web:u1}:esc:sent"));
}

/*
 * The record of an announcement: the ticket's part ({c:U}: the root in the ticket, the message in
 * esc:sent), then the roots index ({g}), two calls of one Cluster slot each (one script with both
 * was refused by a cluster: CROSSSLOT); `make test` runs it against a single-node cluster
 * (cluster.*). Replayed (the send reported failed after the first step), nothing is listed twice;
 * a ticket forgotten before the record withdraws the message and leaves no root in the index, nor
 * does a forget between the two steps, nor a root an earlier attempt indexed before a crash.
 */
TEST_IMPL(escalation_record_root_one_slot_per_step)
{
    struct wenv w;
    if (wenv_open(&w, "", 1796029200000LL))
        return TEST_SKIP;
    freeReplyObject(redisCommand(w.sync, "HSET fb:{c:web:u1}:ticket state waiting"));
    freeReplyObject(redisCommand(w.sync, "PEXPIRE fb:{c:web:u1}:ticket 600000"));

    struct sent_result r = record_sent(&w, ROOT_RECORD("web:u1"), "$a1");
    ASSERT_EQ(r.status, 0);
    ASSERT(!r.withdraw);
    char *v = hget_(w.sync, "fb:{c:web:u1}:ticket", "root");
    ASSERT_STR_EQ(v, "$a1");
    fb_free(v);
    v = hget_(w.sync, "fb:{g}:esc:roots", "$a1");
    ASSERT_STR_EQ(v, "web:u1");
    fb_free(v);
    ASSERT_EQ(rint_(w.sync, "LLEN %s", "fb:{c:web:u1}:esc:sent"), 1);
    ASSERT_GT(rint_(w.sync, "PTTL %s", "fb:{c:web:u1}:esc:sent"), 0);
    /* again (the send reported failed after the first step, sent again: the same id) */
    r = record_sent(&w, ROOT_RECORD("web:u1"), "$a1");
    ASSERT_EQ(r.status, 0);
    ASSERT(!r.withdraw);
    ASSERT_EQ(rint_(w.sync, "LLEN %s", "fb:{c:web:u1}:esc:sent"), 1);
    ASSERT_EQ(rint_(w.sync, "HLEN %s", "fb:{g}:esc:roots"), 2); /* $r of wenv_open and $a1 */
    /* a relay: the ticket's slot only */
    r = record_sent(&w, "{\"key\": \"fb:{c:web:u1}:ticket\", \"list\": \"fb:{c:web:u1}:esc:sent\"}",
                    "$m1");
    ASSERT_EQ(r.status, 0);
    ASSERT_EQ(rint_(w.sync, "LLEN %s", "fb:{c:web:u1}:esc:sent"), 2);

    /* forgotten between the two steps: the index does not keep the root */
    fb__esc_set_record_hook(forget_u1, &w);
    r = record_sent(&w, ROOT_RECORD("web:u1"), "$a2");
    fb__esc_set_record_hook(NULL, NULL);
    ASSERT_EQ(r.status, 0);
    ASSERT_EQ(rint_(w.sync, "HEXISTS fb:{g}:esc:roots %s", "$a2"), 0);
    ASSERT_EQ(rint_(w.sync, "EXISTS %s", "fb:{c:web:u1}:ticket"), 0);

    /* no ticket (forgotten before): withdrawn, nothing written; a root an earlier attempt indexed
     * for this conversation leaves the index, another conversation's stays */
    freeReplyObject(redisCommand(w.sync, "HSET fb:{g}:esc:roots $a3 web:u2 $a4 web:other"));
    r = record_sent(&w, ROOT_RECORD("web:u2"), "$a3");
    ASSERT_EQ(r.status, 0);
    ASSERT(r.withdraw);
    ASSERT_EQ(rint_(w.sync, "HEXISTS fb:{g}:esc:roots %s", "$a3"), 0);
    ASSERT_EQ(rint_(w.sync, "EXISTS %s", "fb:{c:web:u2}:ticket"), 0);
    ASSERT_EQ(rint_(w.sync, "EXISTS %s", "fb:{c:web:u2}:esc:sent"), 0);
    r = record_sent(&w, ROOT_RECORD("web:u2"), "$a4");
    ASSERT(r.withdraw);
    v = hget_(w.sync, "fb:{g}:esc:roots", "$a4");
    ASSERT_STR_EQ(v, "web:other");
    fb_free(v);

    wenv_close(&w);
    return 0;
}
