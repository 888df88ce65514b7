/* SPDX-License-Identifier: MIT */
/*
 * test_stats.c - the impact counters (daemon/features/stats.c) on a real redis-server: a scripted
 * set of events, each committed with the counters part of the router's COMMIT script at a fixed
 * clock, then the figures read back at a fixed clock: totals, territories over the 90-day window,
 * month boundaries, recurrence, suppression below the threshold, the page and /metrics.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "core/store.h"
#include "engine/engine.h"
#include "engine/geo.h"
#include "features/stats.h"
#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "io/redis.h"
#include "task.h"

#define GEO_PATH FB_BINARY_DIR "/data/communes.fbgeo"
#define DAY      86400000LL

/* 2026-01-15T12:00:00Z and friends */
#define T_JAN15 1768478400000LL
#define T_FEB01 1769900400000LL /* 2026-02-01T00:00 Paris = 2026-01-31T23:00:00Z */
#define T_FEB15 1771110000000LL /* 2026-02-15T00:00 Paris = 2026-02-14T23:00:00Z */
#define T_SEP01 1756684800000LL /* 2025-09-01T00:00:00Z */

/*
 * The router's counters, as its COMMIT runs them (router.c): the global hash for `stat`, `step`
 * and `avis`, then the stats feature's fragment (FB_STATS_COMMIT_LUA) with the names the router
 * gives it (core/feature.h), `refresh` as when it sets the session's TTL again. KEYS: stats, act_c,
 * act_e, act_d, month, months, steps. ARGV: ops, now.
 */
static const char commit_src[] =
    "local O = cjson.decode(ARGV[1])\n"
    "local function expire(k) redis.call('PEXPIRE', k, 86400000) end\n"
    "for _, name in ipairs(O.stats) do redis.call('HINCRBY', KEYS[1], name, 1) end\n"
    "for _, a in ipairs(O.avis) do redis.call('HINCRBY', KEYS[1], 'avis_note_' .. a[1], 1) end\n"
    "local A = {now = tonumber(ARGV[2])}\n"
    "local refresh = true\n" /* as when the COMMIT sets the session's TTL again */
    "local K = {stats = KEYS[1], act_c = KEYS[2], act_e = KEYS[3], act_d = KEYS[4],\n"
    "           month = KEYS[5], months = KEYS[6], steps = KEYS[7]}\n" FB_STATS_COMMIT_LUA
    "return 1\n";

struct fixture {
    fb_test_redis_t srv;
    uv_loop_t loop;
    char addr[64];
    char prefix[8];
    fb_redis_opts_t ropts;
    fb_store_opts_t sopts;
    fb_redis_t *r;
    fb_store_t *s;
    redisContext *sync;
    fb_geo_t *geo;
    fb_stats_t *stats;
};

static void fixture_start(struct fixture *f, unsigned min_count)
{
    memset(f, 0, sizeof(*f));
    ASSERT_OK(fb_test_redis_start(&f->srv));
    ASSERT_OK(uv_loop_init(&f->loop));
    snprintf(f->addr, sizeof(f->addr), "tcp://127.0.0.1:%d", f->srv.port);
    f->ropts.address = f->addr;
    f->ropts.connect_timeout_ms = 1000;
    f->ropts.command_timeout_ms = 3000;
    f->ropts.write_deadline_ms = 5000;
    f->ropts.reconnect.delays_ms[0] = 20;
    f->ropts.reconnect.n_delays = 1;
    snprintf(f->prefix, sizeof(f->prefix), "fbt:");
    f->sopts.key_prefix = f->prefix;
    f->sopts.session_ttl_days = 1;
    f->r = fb_redis_create(&f->loop, &f->ropts);
    ASSERT_NOT_NULL(f->r);
    ASSERT_OK(fb_redis_start(f->r));
    f->s = fb_store_create(f->r, &f->sopts);
    ASSERT_NOT_NULL(f->s);
    f->sync = redisConnect("127.0.0.1", f->srv.port);
    ASSERT(f->sync && !f->sync->err);
    fb_buf_t errors;
    fb_buf_init(&errors, 1u << 16);
    f->geo = fb_geo_load(GEO_PATH, &errors);
    if (!f->geo)
        FB_TEST_FAIL("fb_geo_load: %s", fb_buf_str(&errors));
    fb_buf_free(&errors);
    fb_stats_opts_t o = {.min_count = min_count, .cache_seconds = 0};
    f->stats = fb_stats_create(f->s, &o);
}

static void on_closed(void *arg)
{
    (*(int *)arg)++;
}

static void fixture_stop(struct fixture *f)
{
    int closed = 0;
    fb_redis_close(f->r, on_closed, &closed);
    ASSERT(fb_test_wait_int(&f->loop, &closed, 1, 5000));
    ASSERT_EQ(fb_stats_pending(f->stats), 0);
    fb_stats_destroy(f->stats);
    fb_store_destroy(f->s);
    redisFree(f->sync);
    fb_geo_free(f->geo);
    fb_test_loop_close_strict(&f->loop);
    fb_test_redis_destroy(&f->srv);
}

/*
 * Commits the counters of one event of conversation `conv` at `now`: `old_s`, `new_s` (session
 * JSON texts or NULL) and `effects` (a JSON array text), as the router does.
 */
static void commit(struct fixture *f, const char *conv, const char *old_s, const char *new_s,
                   const char *effects, bool user, int64_t now)
{
    json_t *old = old_s ? json_loads(old_s, 0, NULL) : NULL;
    json_t *ns = new_s ? json_loads(new_s, 0, NULL) : NULL;
    json_t *eff = json_loads(effects, 0, NULL);
    ASSERT_NOT_NULL(eff);
    json_t *ops = json_object(), *st = json_array(), *avis = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(eff, i, e)
    {
        const char *type = json_string_value(json_object_get(e, "type"));
        if (strcmp(type, "stat") == 0)
            json_array_append(st, json_object_get(e, "name"));
        else if (strcmp(type, "step") == 0)
            json_array_append_new(
                st, json_sprintf("step_%s", json_string_value(json_object_get(e, "status"))));
        else if (strcmp(type, "avis") == 0)
            json_array_append_new(avis, json_pack("[O]", json_object_get(e, "note")));
    }
    json_object_set_new(ops, "stats", st);
    json_object_set_new(ops, "avis", avis);
    fb_stats_commit_ops(ops, f->geo, old, ns, eff, user, now);
    char *text = json_dumps(ops, JSON_COMPACT);
    char month[8], nowbuf[24];
    fb_stats_month(now, month);
    snprintf(nowbuf, sizeof(nowbuf), "%lld", (long long)now);
    char *mkey = fb_asprintf("fbt:{g}:stats:month:%s", month);
    char *ckey = fb_asprintf("fbt:{c:%s}:months", conv);
    const char *argv[] = {"EVAL",
                          commit_src,
                          "7",
                          "fbt:{g}:stats",
                          "fbt:{g}:stats:active:communes",
                          "fbt:{g}:stats:active:epci",
                          "fbt:{g}:stats:active:departements",
                          mkey,
                          ckey,
                          "fbt:{g}:stats:steps_done",
                          text,
                          nowbuf};
    redisReply *rep = redisCommandArgv(f->sync, 12, argv, NULL);
    ASSERT_NOT_NULL(rep);
    if (rep->type == REDIS_REPLY_ERROR)
        FB_TEST_FAIL("commit script: %s", rep->str);
    ASSERT_EQ(rep->type, REDIS_REPLY_INTEGER);
    freeReplyObject(rep);
    fb_free(mkey);
    fb_free(ckey);
    free(text); /* fb-lint: allow free (jansson's allocation) */
    json_decref(ops);
    json_decref(old);
    json_decref(ns);
    json_decref(eff);
}

struct got {
    int calls;
    int status;
    json_t *doc;
};

static void on_doc(int status, const json_t *doc, void *arg)
{
    struct got *g = arg;
    g->calls++;
    g->status = status;
    g->doc = doc ? json_deep_copy(doc) : NULL;
}

static json_t *read_doc(struct fixture *f, int64_t now)
{
    struct got g = {0};
    ASSERT_OK(fb_stats_get(f->stats, now, on_doc, &g));
    ASSERT(fb_test_wait_int(&f->loop, &g.calls, 1, 5000));
    ASSERT_EQ(g.status, 0);
    ASSERT_NOT_NULL(g.doc);
    return g.doc;
}

/* The value at a dotted path ("territories.communes", "monthly.avis[3]"). */
static const json_t *at(const json_t *doc, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", path);
    const json_t *v = doc;
    char *save = NULL;
    for (char *part = strtok_r(buf, ".", &save); part && v; part = strtok_r(NULL, ".", &save)) {
        char *br = strchr(part, '[');
        if (br) {
            *br = '\0';
            v = json_array_get(json_object_get(v, part), strtoul(br + 1, NULL, 10));
        } else {
            v = json_object_get(v, part);
        }
    }
    return v;
}

static long long num(const json_t *doc, const char *path)
{
    const json_t *v = at(doc, path);
    if (!json_is_integer(v))
        FB_TEST_FAIL("%s is not a number", path);
    return json_integer_value(v);
}

static bool suppressed(const json_t *doc, const char *path)
{
    size_t i;
    const json_t *e;
    json_array_foreach(json_object_get(doc, "suppressed"), i, e)
    {
        if (strcmp(json_string_value(e), path) == 0)
            return json_is_null(at(doc, path));
    }
    return false;
}

#define A_SESSION  "{\"a\":{\"commune\":{\"insee\":\"42218\",\"nom\":\"Saint-Étienne\"}}}"
#define B_SESSION  "{\"a\":{\"lieu\":{\"insee\":\"69123\",\"nom\":\"Lyon\"}}}"
#define C_SESSION  "{\"a\":{\"commune\":{\"insee\":\"75056\",\"nom\":\"Paris\"}}}"
#define B_REMINDED "{\"n\":1,\"a\":{\"lieu\":{\"insee\":\"69123\",\"nom\":\"Lyon\"}}}"
#define END_EFFECTS                                                                                \
    "[{\"type\":\"say\"},{\"type\":\"step\",\"item\":\"etapes.diag\",\"status\":\"faite\"},"       \
    "{\"type\":\"step\",\"item\":\"etapes.foncier\",\"status\":\"a_faire\"},{\"type\":\"end\"},"   \
    "{\"type\":\"stat\",\"name\":\"site_completed\"}]"

/* Three projects over five months: every figure, with the threshold at 1 (nothing hidden). */
static void script_events(struct fixture *f)
{
    /* C, Paris, in September 2025: starts and completes */
    commit(f, "web:c", NULL, "{\"a\":{}}",
           "[{\"type\":\"stat\",\"name\":\"conversation_started\"}]", true, T_SEP01);
    commit(f, "web:c", "{}", C_SESSION, END_EFFECTS, true, T_SEP01 + 3600000);
    /* A, Saint-Étienne, in January: starts, completes (initial statuses are not changes), rates */
    commit(f, "web:a", NULL, "{\"a\":{}}",
           "[{\"type\":\"stat\",\"name\":\"conversation_started\"}]", true, T_JAN15);
    commit(f, "web:a", "{}", A_SESSION, END_EFFECTS, true, T_JAN15 + 1000);
    commit(f, "web:a", A_SESSION, A_SESSION, "[{\"type\":\"say\"},{\"type\":\"avis\",\"note\":4}]",
           true, T_JAN15 + 2000);
    /* B, Lyon: starts on the last millisecond of January, completes on the first of February */
    commit(f, "web:b", NULL, "{\"a\":{}}",
           "[{\"type\":\"stat\",\"name\":\"conversation_started\"}]", true, T_FEB01 - 1);
    commit(f, "web:b", "{}", B_SESSION, END_EFFECTS, true, T_FEB01);
    commit(f, "web:b", B_SESSION, B_SESSION, "[{\"type\":\"avis\",\"note\":5}]", true, T_FEB01 + 1);
    /* A in February: a step done (A is now recurrent), then another one, then a non-faite one */
    commit(f, "web:a", A_SESSION, A_SESSION,
           "[{\"type\":\"step\",\"item\":\"etapes.diag\",\"status\":\"faite\"},"
           "{\"type\":\"stat\",\"name\":\"step_updated\"}]",
           true, T_FEB01 + 2 * DAY);
    commit(f, "web:a", A_SESSION, A_SESSION,
           "[{\"type\":\"step\",\"item\":\"etapes.foncier\",\"status\":\"faite\"},"
           "{\"type\":\"stat\",\"name\":\"step_updated\"}]",
           true, T_FEB01 + 3 * DAY);
    commit(f, "web:a", A_SESSION, A_SESSION,
           "[{\"type\":\"step\",\"item\":\"etapes.foncier\",\"status\":\"en_cours\"},"
           "{\"type\":\"stat\",\"name\":\"escalated\"}]",
           true, T_FEB01 + 4 * DAY);
    /* B: a reminder (not a user event: no activity), then B answers it */
    commit(f, "web:b", B_SESSION, B_REMINDED, "[{\"type\":\"stat\",\"name\":\"reminder_sent\"}]",
           false, T_FEB01 + 5 * DAY);
    /* B's answer asks the knowledge base twice, once beyond it, and rates an answer */
    commit(f, "web:b", B_REMINDED, B_SESSION,
           "[{\"type\":\"say\"},{\"type\":\"stat\",\"name\":\"kb_answered\"},"
           "{\"type\":\"stat\",\"name\":\"kb_answered\"},"
           "{\"type\":\"stat\",\"name\":\"kb_unanswered\"},"
           "{\"type\":\"stat\",\"name\":\"kb_not_helpful\"}]",
           true, T_FEB01 + 6 * DAY);
}

static long long sync_int(struct fixture *f, const char *cmd, const char *key)
{
    redisReply *rep = redisCommand(f->sync, "%s %s", cmd, key);
    ASSERT(rep && rep->type == REDIS_REPLY_INTEGER);
    long long v = rep->integer;
    freeReplyObject(rep);
    return v;
}

/* The month's hash gets its TTL from the COMMIT that creates it; the others do not look at it
 * (no PTTL per event, issue 17) unless one of their HINCRBYs makes a new field. */
TEST_IMPL(stats_month_ttl_set_when_the_hash_is_made)
{
    struct fixture f;
    fixture_start(&f, 1);
    const char *mk = "fbt:{g}:stats:month:2026-02";
    const char *started = "[{\"type\":\"stat\",\"name\":\"conversation_started\"}]";
    commit(&f, "web:a", NULL, NULL, started, true, T_FEB15);
    ASSERT_GT(sync_int(&f, "PTTL", mk), 34000000000LL); /* 400 days */
    freeReplyObject(redisCommand(f.sync, "PERSIST %s", mk));
    commit(&f, "web:b", NULL, NULL, started, true, T_FEB15 + 1000);
    ASSERT_EQ(sync_int(&f, "PTTL", mk), -1); /* an existing field: not looked at */
    const char *other = "[{\"type\":\"stat\",\"name\":\"site_completed\"}]";
    commit(&f, "web:b", NULL, NULL, other, true, T_FEB15 + 2000);
    ASSERT_GT(sync_int(&f, "PTTL", mk), 34000000000LL); /* a new field: looked at, set */
    fixture_stop(&f);
    return 0;
}

TEST_IMPL(stats_counters_from_scripted_events)
{
    struct fixture f;
    fixture_start(&f, 1);
    const fb_commune_t *a = fb_geo_by_insee(f.geo, "42218"), *b = fb_geo_by_insee(f.geo, "69123");
    ASSERT(a && b && a->epci[0] && b->epci[0]);
    ASSERT(strcmp(a->epci, b->epci) != 0 && strcmp(a->dep, b->dep) != 0);
    script_events(&f);
    json_t *doc = read_doc(&f, T_FEB15);
    ASSERT_EQ(json_array_size(json_object_get(doc, "suppressed")), 0);
    ASSERT_EQ(num(doc, "threshold"), 1);
    ASSERT_STR_EQ(json_string_value(at(doc, "generated_at")), "2026-02-14T23:00:00Z");
    ASSERT_STR_EQ(json_string_value(at(doc, "period.territories_since")), "2025-11-16T23:00:00Z");
    ASSERT_STR_EQ(json_string_value(at(doc, "period.months[0]")), "2025-03");
    ASSERT_STR_EQ(json_string_value(at(doc, "period.months[11]")), "2026-02");
    /* Paris (September) is out of the 90-day window; Saint-Étienne and Lyon are in */
    ASSERT_EQ(num(doc, "territories.communes"), 2);
    ASSERT_EQ(num(doc, "territories.epci"), 2);
    ASSERT_EQ(num(doc, "territories.departements"), 2);
    ASSERT_EQ(num(doc, "conversations"), 3);
    ASSERT_EQ(num(doc, "sites_studied"), 3);
    /* A: January and February; B: February only (its January event had no commune yet); C: Sep */
    ASSERT_EQ(num(doc, "projects_recurrent"), 1);
    ASSERT_EQ(num(doc, "steps_done.total"), 2);
    ASSERT_EQ(json_array_size(at(doc, "steps_done.by_step")), 2);
    ASSERT_STR_EQ(json_string_value(at(doc, "steps_done.by_step[0].step")), "etapes.diag");
    ASSERT_EQ(num(doc, "steps_done.by_step[0].count"), 1);
    ASSERT_STR_EQ(json_string_value(at(doc, "steps_done.by_step[1].step")), "etapes.foncier");
    ASSERT_EQ(num(doc, "steps_done.by_step[1].count"), 1);
    ASSERT_EQ(num(doc, "escalations"), 1);
    ASSERT_EQ(num(doc, "reminders.sent"), 1);
    ASSERT_EQ(num(doc, "reminders.answered"), 1);
    ASSERT_EQ(num(doc, "questions.answered"), 2);
    ASSERT_EQ(num(doc, "questions.unanswered"), 1);
    ASSERT_EQ(num(doc, "questions.helpful"), 0);
    ASSERT_EQ(num(doc, "questions.not_helpful"), 1);
    ASSERT_EQ(num(doc, "avis.count"), 2);
    ASSERT_EQ(num(doc, "avis.distribution.4"), 1);
    ASSERT_EQ(num(doc, "avis.distribution.5"), 1);
    ASSERT_EQ(num(doc, "avis.distribution.1"), 0);
    ASSERT(json_is_null(at(doc, "advisor_response.median_seconds")));
    ASSERT_EQ(num(doc, "advisor_response.samples"), 0);
    /* months: [6] = 2025-09, [10] = 2026-01, [11] = 2026-02 */
    ASSERT_EQ(num(doc, "monthly.conversations[6]"), 1);
    ASSERT_EQ(num(doc, "monthly.conversations[10]"),
              2); /* B's start on Jan 31 23:59:59.999 Paris */
    ASSERT_EQ(num(doc, "monthly.conversations[11]"), 0);
    ASSERT_EQ(num(doc, "monthly.sites_studied[10]"), 1);
    ASSERT_EQ(num(doc, "monthly.sites_studied[11]"), 1); /* B's end on Feb 1 00:00:00.000 Paris */
    ASSERT_EQ(num(doc, "monthly.projects_active[6]"), 1);
    ASSERT_EQ(num(doc, "monthly.projects_active[10]"), 1);
    ASSERT_EQ(num(doc, "monthly.projects_active[11]"), 2);
    ASSERT_EQ(num(doc, "monthly.steps_done[11]"), 2);
    ASSERT_EQ(num(doc, "monthly.steps_done[10]"), 0);
    ASSERT_EQ(num(doc, "monthly.avis[10]"), 1);
    ASSERT_EQ(num(doc, "monthly.avis[11]"), 1);
    ASSERT_EQ(num(doc, "monthly.reminders_sent[11]"), 1);
    for (int i = 0; i < 6; i++) {
        char p[64];
        snprintf(p, sizeof(p), "monthly.conversations[%d]", i);
        ASSERT_EQ(num(doc, p), 0);
    }
    json_decref(doc);

    /* The same counters read in May: the January activity left the window, February's not yet,
     * and the series have moved: 2026-02 is now [8] */
    doc = read_doc(&f, T_FEB15 + 80 * DAY);
    ASSERT_EQ(num(doc, "territories.communes"), 2);
    json_decref(doc);
    /* A's last activity was Feb 5 00:00 (+4 days), B's Feb 7: at exactly 90 days after A's,
     * both count; one millisecond later A is gone */
    int64_t a_last = T_FEB01 + 4 * DAY;
    doc = read_doc(&f, a_last + 90 * DAY);
    ASSERT_EQ(num(doc, "territories.communes"), 2);
    json_decref(doc);
    doc = read_doc(&f, a_last + 90 * DAY + 1);
    ASSERT_EQ(num(doc, "territories.communes"), 1);
    ASSERT_EQ(num(doc, "territories.departements"), 1);
    ASSERT_STR_EQ(json_string_value(at(doc, "period.months[11]")), "2026-05");
    ASSERT_EQ(num(doc, "monthly.projects_active[8]"), 2);
    json_decref(doc);
    fixture_stop(&f);
    return 0;
}

/* Counts from 1 to min_count - 1 are null and listed; 0 and min_count and above are shown. */
TEST_IMPL(stats_suppression_below_threshold)
{
    struct fixture f;
    fixture_start(&f, 3);
    script_events(&f);
    json_t *doc = read_doc(&f, T_FEB15);
    ASSERT_EQ(num(doc, "threshold"), 3);
    ASSERT(suppressed(doc, "territories.communes")); /* 2 */
    ASSERT(suppressed(doc, "projects_recurrent"));   /* 1 */
    ASSERT(suppressed(doc, "avis.distribution.4"));  /* 1 */
    ASSERT(suppressed(doc, "monthly.projects_active[11]"));
    ASSERT(suppressed(doc, "steps_done.by_step[0].count"));
    ASSERT_EQ(num(doc, "conversations"), 3); /* at the threshold: shown */
    ASSERT_EQ(num(doc, "sites_studied"), 3);
    ASSERT_EQ(num(doc, "avis.distribution.1"), 0); /* zero identifies nobody: shown */
    ASSERT(!suppressed(doc, "conversations"));

    /* The page says "< 3" where the JSON says null, and never the hidden number */
    fb_buf_t b;
    fb_buf_init(&b, 1u << 22);
    ASSERT_OK(fb_stats_render_html(doc, &b));
    const char *html = fb_buf_str(&b);
    ASSERT_NOT_NULL(strstr(html, "data-figure=\"territories.communes\">&lt; 3</p>"));
    ASSERT_NOT_NULL(strstr(html, "data-figure=\"conversations\">3</p>"));
    /* the knowledge base's counters: 2 answered (< 3), 0 helpful (shown) */
    ASSERT(suppressed(doc, "questions.answered"));
    ASSERT_NOT_NULL(strstr(html, "data-figure=\"questions.answered\">&lt; 3</p>"));
    ASSERT_NOT_NULL(strstr(html, "data-figure=\"questions.helpful\">0</p>"));
    ASSERT_NOT_NULL(strstr(html, "réponses jugées utiles"));
    ASSERT_NOT_NULL(strstr(html, "<svg"));
    ASSERT_NULL(strstr(html, "style="));
    ASSERT_NULL(strstr(html, "<script"));
    ASSERT_NOT_NULL(strstr(html, "pas encore de données"));
    fb_buf_reset(&b);
    ASSERT_OK(fb_stats_render_metrics(doc, &b));
    const char *m = fb_buf_str(&b);
    ASSERT_NOT_NULL(strstr(m, "frichebot_stats_conversations_total 3\n"));
    ASSERT_NOT_NULL(strstr(m, "frichebot_stats_questions_helpful_total 0\n"));
    ASSERT_NULL(strstr(m, "frichebot_stats_questions_answered_total 2"));
    ASSERT_NULL(strstr(m, "frichebot_stats_territories_engaged{level=\"commune\"}"));
    fb_buf_free(&b);
    json_decref(doc);
    fixture_stop(&f);
    return 0;
}

/* The median advisor response time, from the list issue #7 will feed (ms, newest first). */
TEST_IMPL(stats_advisor_median)
{
    struct fixture f;
    fixture_start(&f, 3);
    json_t *doc = read_doc(&f, T_FEB15);
    ASSERT(json_is_null(at(doc, "advisor_response.median_seconds")));
    json_decref(doc);
    redisReply *rep = redisCommand(f.sync, "LPUSH fbt:{g}:stats:advisor_response_ms 60000 600000");
    freeReplyObject(rep);
    doc = read_doc(&f, T_FEB15);
    ASSERT(json_is_null(at(doc, "advisor_response.median_seconds"))); /* 2 < 3 samples */
    ASSERT(suppressed(doc, "advisor_response.samples"));
    json_decref(doc);
    rep = redisCommand(f.sync, "LPUSH fbt:{g}:stats:advisor_response_ms 7200000 120000");
    freeReplyObject(rep);
    doc = read_doc(&f, T_FEB15);
    ASSERT_EQ(num(doc, "advisor_response.samples"), 4);
    ASSERT_EQ(num(doc, "advisor_response.median_seconds"), 360); /* (120 + 600) / 2 */
    fb_buf_t b;
    fb_buf_init(&b, 1u << 22);
    ASSERT_OK(fb_stats_render_html(doc, &b));
    ASSERT_NOT_NULL(strstr(fb_buf_str(&b), ">6 min</p>"));
    fb_buf_free(&b);
    json_decref(doc);
    fixture_stop(&f);
    return 0;
}

/* Month arithmetic across years; months are Paris calendar months (UTC+1, UTC+2 in summer). */
TEST_IMPL(stats_months)
{
    char m[8];
    fb_stats_month(1769902200000LL, m); /* 2026-01-31T23:30Z = 1 February 00:30 in Paris */
    ASSERT_STR_EQ(m, "2026-02");
    fb_stats_month(1769900399999LL, m); /* 2026-01-31T22:59:59.999Z = 23:59:59 in Paris */
    ASSERT_STR_EQ(m, "2026-01");
    fb_stats_month(1785537000000LL, m); /* 2026-07-31T22:30Z = 1 August 00:30 (summer time) */
    ASSERT_STR_EQ(m, "2026-08");
    fb_stats_month(1785533400000LL, m); /* 2026-07-31T21:30Z = 31 July 23:30 */
    ASSERT_STR_EQ(m, "2026-07");
    fb_stats_month(1774994340000LL, m); /* 2026-03-31T21:59Z = 31 March 23:59 (summer time) */
    ASSERT_STR_EQ(m, "2026-03");
    fb_stats_month(1774994400000LL, m); /* 2026-03-31T22:00Z = 1 April 00:00 */
    ASSERT_STR_EQ(m, "2026-04");
    fb_stats_month(1798757999000LL, m); /* 2026-12-31T22:59:59Z = 23:59:59 in Paris */
    ASSERT_STR_EQ(m, "2026-12");
    fb_stats_month(1798758000000LL, m); /* 2026-12-31T23:00Z = 1 January 2027 00:00 */
    ASSERT_STR_EQ(m, "2027-01");
    fb_stats_month_back(1798758000000LL, 1, m);
    ASSERT_STR_EQ(m, "2026-12");
    fb_stats_month(T_FEB01 - 1, m);
    ASSERT_STR_EQ(m, "2026-01");
    fb_stats_month(T_FEB01, m);
    ASSERT_STR_EQ(m, "2026-02");
    fb_stats_month_back(T_FEB01, 2, m);
    ASSERT_STR_EQ(m, "2025-12");
    fb_stats_month_back(T_FEB01, 13, m);
    ASSERT_STR_EQ(m, "2025-01");
    fb_stats_month_back(T_FEB01, 14, m);
    ASSERT_STR_EQ(m, "2024-12");
    return 0;
}

static const char *test_title(void *arg, const char *ref)
{
    (void)arg;
    return strcmp(ref, "etapes.diag") == 0 ? "Diagnostic <sols> & \"pollution\"" : NULL;
}

static const char *dialog_title(void *arg, const char *ref)
{
    return fb_dialog_item_title(arg, ref);
}

/* Steps done are shown by title: /stats.json keeps the ref in `step` and adds `title` (the ref
 * when no title is known: a step of an older dialog); the page shows the title, escaped. */
TEST_IMPL(stats_step_titles)
{
    /* the raw read: no counters but the steps done by ref, unsorted */
    json_t *raw = json_pack("[[], i, i, i, [s, s, s, s, s, s], []]", 0, 0, 0, "etapes.vieille", "2",
                            "etapes.diag", "7", "etapes.connaissance", "1");
    for (int i = 0; i < FB_STATS_MONTHS; i++)
        json_array_append_new(raw, json_array());
    json_t *doc = fb__stats_document(raw, T_FEB15, 1);
    json_decref(raw);
    fb_stats_add_titles(doc, test_title, NULL);
    ASSERT_STR_EQ(json_string_value(at(doc, "steps_done.by_step[1].step")), "etapes.diag");
    ASSERT_STR_EQ(json_string_value(at(doc, "steps_done.by_step[1].title")),
                  "Diagnostic <sols> & \"pollution\"");
    ASSERT_EQ(num(doc, "steps_done.by_step[1].count"), 7);
    ASSERT_STR_EQ(json_string_value(at(doc, "steps_done.by_step[2].title")), "etapes.vieille");

    /* the friche dialog's catalogue names its steps */
    fb_buf_t errors;
    fb_buf_init(&errors, 1u << 16);
    fb_geo_t *geo = fb_geo_load(GEO_PATH, &errors);
    ASSERT_NOT_NULL(geo);
    fb_dialog_t *d = fb_dialog_load(FB_SOURCE_DIR "/dialogs/friche.yaml", geo, &errors);
    if (!d)
        FB_TEST_FAIL("friche.yaml: %s", fb_buf_str(&errors));
    fb_buf_free(&errors);
    ASSERT_NULL(fb_dialog_item_title(d, "etapes.vieille"));
    ASSERT_NULL(fb_dialog_item_title(d, "etapes"));
    fb_stats_add_titles(doc, dialog_title, d);
    ASSERT_STR_EQ(json_string_value(at(doc, "steps_done.by_step[0].step")), "etapes.connaissance");
    ASSERT_STR_EQ(json_string_value(at(doc, "steps_done.by_step[0].title")),
                  "Rassembler ce que l'on sait du site (pré-diagnostic)");
    ASSERT_STR_EQ(json_string_value(at(doc, "steps_done.by_step[1].title")), "etapes.diag");
    fb_dialog_unref(d);
    fb_geo_free(geo);

    fb_stats_add_titles(doc, test_title, NULL);
    fb_buf_t b;
    fb_buf_init(&b, 1u << 22);
    ASSERT_OK(fb_stats_render_html(doc, &b));
    const char *html = fb_buf_str(&b);
    ASSERT_NOT_NULL(strstr(html, "<th scope=\"row\" data-figure=\"steps_done.by_step[1].title\">"
                                 "Diagnostic &lt;sols&gt; &amp; &quot;pollution&quot;</th>"));
    ASSERT_NOT_NULL(
        strstr(html, "data-figure=\"steps_done.by_step[2].title\">etapes.vieille</th>"));
    ASSERT_NULL(strstr(html, "<sols>"));
    /* /metrics keeps the refs */
    fb_buf_reset(&b);
    ASSERT_OK(fb_stats_render_metrics(doc, &b));
    ASSERT_NOT_NULL(strstr(fb_buf_str(&b),
                           "frichebot_stats_steps_done_by_step_total{step=\"etapes.diag\"} 7\n"));
    fb_buf_free(&b);
    json_decref(doc);
    return 0;
}
