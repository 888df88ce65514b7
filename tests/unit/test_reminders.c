/* SPDX-License-Identifier: MIT */
/*
 * test_reminders.c - the calendar rules (pure functions, fixed clocks) and the reminder
 * scheduler (daemon/features/reminders.c) with real routers on a real, throwaway redis-server: two
 * schedulers and 1,000 reminders due at once, a scheduler that "crashes" with claims, working
 * hours, inactive and forgotten conversations, activity pushing reminders back (lazily: held when
 * they fall due).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <uv.h>

#include "common/calendar.h"
#include "core/router.h"
#include "core/store.h"
#include "engine/geo.h"
#include "features/reminders.h"
#include "features/stats.h"
#include "frichebot/adapter.h"
#include "frichebot/alloc.h"
#include "frichebot/err.h"
#include "io/config.h"
#include "io/paths.h"
#include "io/redis.h"
#include "task.h"

/* ---- the calendar ------------------------------------------------------------------------- */

/* Unix time of a UTC date and time. */
static int64_t utc(int y, int mo, int d, int h, int mi)
{
    y -= mo <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    int64_t days = era * 146097 + doe - 719468;
    return days * 86400 + h * 3600 + mi * 60;
}

TEST_IMPL(reminders_easter_and_holidays)
{
    /* Easter Sunday, then Easter Monday, Ascension, Whit Monday: the official dates. */
    static const int years[][10] = {
        {2024, 3, 31, 4, 1, 5, 9, 5, 20, 0},   {2025, 4, 20, 4, 21, 5, 29, 6, 9, 0},
        {2026, 4, 5, 4, 6, 5, 14, 5, 25, 0},   {2027, 3, 28, 3, 29, 5, 6, 5, 17, 0},
        {2028, 4, 16, 4, 17, 5, 25, 6, 5, 0},  {2029, 4, 1, 4, 2, 5, 10, 5, 21, 0},
        {2030, 4, 21, 4, 22, 5, 30, 6, 10, 0},
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(years); i++) {
        const int *y = years[i];
        int m, d;
        fb_easter(y[0], &m, &d);
        ASSERT_EQ(m, y[1]);
        ASSERT_EQ(d, y[2]);
        ASSERT(!fb_fr_holiday(y[0], y[1], y[2]) || (y[1] == 5 && (y[2] == 1 || y[2] == 8)));
        ASSERT(fb_fr_holiday(y[0], y[3], y[4]));
        ASSERT(fb_fr_holiday(y[0], y[5], y[6]));
        ASSERT(fb_fr_holiday(y[0], y[7], y[8]));
        /* the days around them are not */
        ASSERT(!fb_fr_holiday(y[0], y[3], y[4] + 1 > 30 ? 1 : y[4] + 1) || y[3] == 5);
    }
    static const int fixed[][2] = {{1, 1},  {5, 1},  {5, 8},   {7, 14},
                                   {8, 15}, {11, 1}, {11, 11}, {12, 25}};
    for (int y = 2024; y <= 2030; y++)
        for (size_t i = 0; i < FB_ARRAY_SIZE(fixed); i++)
            ASSERT(fb_fr_holiday(y, fixed[i][0], fixed[i][1]));
    ASSERT(!fb_fr_holiday(2026, 4, 7));
    ASSERT(!fb_fr_holiday(2026, 5, 2));
    ASSERT(!fb_fr_holiday(2026, 12, 26)); /* Saint-Étienne is only Alsace-Moselle */
    ASSERT(!fb_fr_holiday(2026, 7, 13));
    ASSERT(!fb_fr_holiday(2026, 11, 2));
    /* Far years: 2038 (Easter 25 April), 2000 (23 April), 2285 (22 March, the earliest). */
    int m, d;
    fb_easter(2038, &m, &d);
    ASSERT(m == 4 && d == 25);
    fb_easter(2000, &m, &d);
    ASSERT(m == 4 && d == 23);
    fb_easter(2285, &m, &d);
    ASSERT(m == 3 && d == 22);
    ASSERT(fb_fr_holiday(2038, 4, 26));
    return 0;
}

TEST_IMPL(reminders_paris_dst)
{
    /* 2026: summer time from 29 March 01:00 UTC to 25 October 01:00 UTC. */
    ASSERT_EQ(fb_paris_offset(utc(2026, 3, 29, 0, 59)), 3600);
    ASSERT_EQ(fb_paris_offset(utc(2026, 3, 29, 1, 0)), 7200);
    ASSERT_EQ(fb_paris_offset(utc(2026, 10, 25, 0, 59)), 7200);
    ASSERT_EQ(fb_paris_offset(utc(2026, 10, 25, 1, 0)), 3600);
    /* 2027: 28 March and 31 October; 2030: 31 March and 27 October. */
    ASSERT_EQ(fb_paris_offset(utc(2027, 3, 28, 0, 59)), 3600);
    ASSERT_EQ(fb_paris_offset(utc(2027, 3, 28, 1, 0)), 7200);
    ASSERT_EQ(fb_paris_offset(utc(2027, 10, 31, 0, 59)), 7200);
    ASSERT_EQ(fb_paris_offset(utc(2027, 10, 31, 1, 0)), 3600);
    ASSERT_EQ(fb_paris_offset(utc(2030, 3, 31, 1, 0)), 7200);
    ASSERT_EQ(fb_paris_offset(utc(2030, 10, 27, 0, 59)), 7200);
    ASSERT_EQ(fb_paris_offset(utc(2030, 10, 27, 1, 0)), 3600);
    ASSERT_EQ(fb_paris_offset(utc(2026, 1, 15, 12, 0)), 3600);
    ASSERT_EQ(fb_paris_offset(utc(2026, 7, 15, 12, 0)), 7200);
    return 0;
}

TEST_IMPL(reminders_working_hours)
{
    fb_hours_t h = {9, 18};
    /* Monday 30 November 2026 (winter: UTC+1): 09:00 to 18:00 Paris is 08:00 to 17:00 UTC. */
    ASSERT(!fb_hours_open(&h, utc(2026, 11, 30, 7, 59)));
    ASSERT(fb_hours_open(&h, utc(2026, 11, 30, 8, 0)));
    ASSERT(fb_hours_open(&h, utc(2026, 11, 30, 16, 59)));
    ASSERT(!fb_hours_open(&h, utc(2026, 11, 30, 17, 0)));
    ASSERT_EQ(fb_hours_next_open(&h, utc(2026, 11, 30, 6, 0)), utc(2026, 11, 30, 8, 0));
    ASSERT_EQ(fb_hours_next_open(&h, utc(2026, 11, 30, 10, 0)), utc(2026, 11, 30, 10, 0));
    /* Friday evening -> Monday morning. */
    ASSERT_EQ(fb_hours_next_open(&h, utc(2026, 11, 27, 17, 30)), utc(2026, 11, 30, 8, 0));
    /* Saturday 28 November 2026 at noon -> Monday. */
    ASSERT_EQ(fb_hours_next_open(&h, utc(2026, 11, 28, 12, 0)), utc(2026, 11, 30, 8, 0));
    /* Summer (UTC+2): Wednesday 15 July 2026, 09:00 Paris is 07:00 UTC. */
    ASSERT(!fb_hours_open(&h, utc(2026, 7, 15, 6, 59)));
    ASSERT(fb_hours_open(&h, utc(2026, 7, 15, 7, 0)));
    ASSERT(!fb_hours_open(&h, utc(2026, 7, 15, 16, 0)));
    /* 14 July 2026 (a Tuesday, holiday) -> Wednesday 15. */
    ASSERT(!fb_hours_open(&h, utc(2026, 7, 14, 10, 0)));
    ASSERT_EQ(fb_hours_next_open(&h, utc(2026, 7, 14, 10, 0)), utc(2026, 7, 15, 7, 0));
    /* Across the March change: Saturday 28 March 2026 (UTC+1) -> Monday 30 at 09:00 UTC+2. */
    ASSERT_EQ(fb_hours_next_open(&h, utc(2026, 3, 28, 12, 0)), utc(2026, 3, 30, 7, 0));
    /* Across the October change: Friday 23 October 2026 19:00 UTC+2 -> Monday 26, UTC+1. */
    ASSERT_EQ(fb_hours_next_open(&h, utc(2026, 10, 23, 17, 0)), utc(2026, 10, 26, 8, 0));
    /* Easter weekend 2026: Sunday 5 April evening -> Tuesday 7 (Easter Monday is off). */
    ASSERT_EQ(fb_hours_next_open(&h, utc(2026, 4, 5, 20, 0)), utc(2026, 4, 7, 7, 0));
    /* Ascension 2026 (Thursday 14 May): Wednesday 18:00 -> Friday 15. */
    ASSERT_EQ(fb_hours_next_open(&h, utc(2026, 5, 13, 16, 0)), utc(2026, 5, 15, 7, 0));
    /* Whit Monday 2027 (17 May): Friday 14 evening -> Tuesday 18. */
    ASSERT_EQ(fb_hours_next_open(&h, utc(2027, 5, 14, 18, 0)), utc(2027, 5, 18, 7, 0));
    /* Christmas 2026 is a Friday: Thursday 24 at 18:00 -> Monday 28. */
    ASSERT_EQ(fb_hours_next_open(&h, utc(2026, 12, 24, 17, 0)), utc(2026, 12, 28, 8, 0));
    /* New year 2027 (Friday): Thursday 31 December evening -> Monday 4 January. */
    ASSERT_EQ(fb_hours_next_open(&h, utc(2026, 12, 31, 20, 0)), utc(2027, 1, 4, 8, 0));
    /* Other hours: 8:00-12:00. */
    fb_hours_t m = {8, 12};
    ASSERT_EQ(fb_hours_next_open(&m, utc(2026, 11, 30, 11, 0)), utc(2026, 12, 1, 7, 0));
    /* Every result is open, and nothing open is skipped (hour by hour over 2026). */
    for (int64_t t = utc(2026, 1, 1, 0, 0); t < utc(2027, 1, 1, 0, 0); t += 3600) {
        int64_t o = fb_hours_next_open(&h, t);
        ASSERT(o >= t);
        ASSERT(fb_hours_open(&h, o));
        ASSERT(o == t || !fb_hours_open(&h, o - 3600) || o - 3600 < t);
    }
    return 0;
}

/* ---- the scheduler with routers on a real Redis ------------------------------------------- */

#define NCONV 1000

static struct {
    int relances[NCONV]; /* "Où en êtes-vous" messages per conversation rN (distinct txn ids) */
    char txn[NCONV][40]; /* the transaction id of the last one */
    int same_txn;        /* sends of a transaction id already seen */
    int sends;
    uv_timer_t timer;
    bool timer_init;
    struct {
        fb_send_cb cb;
        void *arg;
    } q[4096];
    int nq;
} ta;

static fb_adapter_t *adapters[2];
static int nadapters;

static void ta_flush(uv_timer_t *t)
{
    (void)t;
    while (ta.nq > 0) {
        ta.nq--;
        ta.q[ta.nq].cb(0, 0, ta.q[ta.nq].arg);
    }
}

static int ta_init(fb_adapter_t *a)
{
    ASSERT_LT(nadapters, 2);
    adapters[nadapters++] = a;
    return 0;
}

static int ta_start(fb_adapter_t *a)
{
    if (!ta.timer_init) {
        uv_timer_init(a->core->loop, &ta.timer);
        ta.timer_init = true;
    }
    a->core->set_state(a, "ok");
    return 0;
}

static void ta_stop(fb_adapter_t *a, void (*done)(fb_adapter_t *a))
{
    ta_flush(NULL);
    if (ta.timer_init) {
        uv_close((uv_handle_t *)&ta.timer, NULL);
        ta.timer_init = false;
    }
    done(a);
}

static void ta_destroy(fb_adapter_t *a)
{
    (void)a;
}

static int ta_send(fb_adapter_t *a, const fb_outbound_t *msg, fb_send_cb cb, void *arg)
{
    (void)a;
    ta.sends++;
    if (msg->conv[0] == 'r' && strstr(msg->text, "Où en êtes-vous")) {
        int i = atoi(msg->conv + 1); /* fb-lint: allow atoi (test names) */
        ASSERT(i >= 0 && i < NCONV);
        /* The same transaction id again is the same reply (two outboxes may both send it, see
         * ROUTER.md "Known limits"): platforms drop it, so it is not a second reminder. */
        if (ta.relances[i] > 0 && strcmp(ta.txn[i], msg->txn_id) == 0) {
            ta.same_txn++;
        } else {
            snprintf(ta.txn[i], sizeof(ta.txn[i]), "%s", msg->txn_id);
            ta.relances[i]++;
        }
    }
    ASSERT_LT(ta.nq, 4096);
    ta.q[ta.nq].cb = cb;
    ta.q[ta.nq].arg = arg;
    ta.nq++;
    if (ta.timer_init)
        uv_timer_start(&ta.timer, ta_flush, 0, 0);
    return 0;
}

static const fb_adapter_ops_t test_adapter = {
    .api_version = FB_ADAPTER_API_VERSION,
    .name = "test",
    .init = ta_init,
    .start = ta_start,
    .stop = ta_stop,
    .destroy = ta_destroy,
    .send = ta_send,
};

struct node {
    fb_config_t *cfg;
    fb_redis_t *redis;
    fb_store_t *store;
    fb_router_t *router;
    fb_reminders_t *rem;
};

struct fixture {
    fb_test_redis_t srv;
    uv_loop_t loop;
    fb_geo_t *geo;
    struct node n[2];
    redisContext *sync;
    bool hours_off; /* node_up(): reminders.working_hours_only false (clocks at any hour) */
};

/* Runs the loop until cond(arg) holds; fails after 60 s (a hang, not a timing). */
static void wait_until(uv_loop_t *loop, bool (*cond)(void *), void *arg, const char *what)
{
    if (!fb_test_wait_cond(loop, cond, arg, 60000))
        FB_TEST_FAIL("waited 60 s for %s", what);
}

static void wait_int(uv_loop_t *loop, const int *value, int target)
{
    if (!fb_test_wait_int(loop, value, target, 60000))
        FB_TEST_FAIL("waited 60 s for %d, have %d", target, *value);
}

static long long redis_int(struct fixture *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    long long v = fb_test_redis_vint(f->sync, fmt, ap);
    va_end(ap);
    return v;
}

/* Node i: config (hours on, lease 1 s, batch), client, store, router with the test adapter and
 * a scheduler (not started: the tests poll by hand on fixed clocks). */
static void node_up(struct fixture *f, int i, unsigned batch, unsigned inactive_months)
{
    struct node *n = &f->n[i];
    char *text = fb_asprintf("server:\n  listen: \"127.0.0.1:1\"\n"
                             "redis:\n  address: \"unix:%s\"\n"
                             "store:\n  key_prefix: \"t:\"\n"
                             "dialogs:\n  path: \"" FB_SOURCE_DIR "/dialogs/exemple.yaml\"\n"
                             "router:\n  max_queued_per_conversation: 16\n"
                             "reminders:\n  batch: %u\n  lease_ms: 1000\n"
                             "  inactive_months: %u\n  poll_interval_ms: 600000\n%s",
                             f->srv.sock, batch, inactive_months,
                             f->hours_off ? "  working_hours_only: false\n" : "");
    fb_buf_t e;
    fb_buf_init(&e, 1u << 16);
    n->cfg = fb_config_parse("t.yaml", text, strlen(text), &e);
    if (!n->cfg)
        FB_TEST_FAIL("config: %s", fb_buf_str(&e));
    fb_free(text);
    n->redis = fb_redis_create(&f->loop, &n->cfg->redis);
    ASSERT_OK(fb_redis_start(n->redis));
    n->store = fb_store_create(n->redis, &n->cfg->store);
    fb_router_deps_t deps = {&f->loop, n->cfg, n->redis, n->store, NULL, NULL, f->geo};
    n->router = fb_router_create(&deps, &e);
    if (!n->router)
        FB_TEST_FAIL("router: %s", fb_buf_str(&e));
    fb_buf_free(&e);
    ASSERT_OK(fb_router_add_feature(n->router, &fb_stats_feature, NULL)); /* as the daemon */
    ASSERT_OK(fb_router_add_adapter(n->router, &test_adapter));
    ASSERT_OK(fb_router_start(n->router));
    char owner[16];
    snprintf(owner, sizeof(owner), "node%d", i);
    fb_reminders_deps_t rd = {&f->loop, n->cfg, n->store, n->router, owner};
    n->rem = fb_reminders_create(&rd);
    ASSERT_NOT_NULL(n->rem);
    ASSERT_OK(fb_reminders_start(n->rem));
}

static void on_flag(void *arg)
{
    *(int *)arg += 1;
}

static void node_down(struct fixture *f, int i)
{
    struct node *n = &f->n[i];
    if (!n->router)
        return;
    int a = 0, b = 0, c = 0;
    fb_reminders_stop(n->rem, on_flag, &a);
    wait_int(&f->loop, &a, 1);
    fb_router_stop(n->router, on_flag, &b);
    wait_int(&f->loop, &b, 1);
    fb_redis_close(n->redis, on_flag, &c);
    wait_int(&f->loop, &c, 1);
    fb_reminders_destroy(n->rem);
    fb_router_destroy(n->router);
    fb_store_destroy(n->store);
    fb_config_free(n->cfg);
    memset(n, 0, sizeof(*n));
}

static int setup(struct fixture *f)
{
    memset(f, 0, sizeof(*f));
    memset(&ta, 0, sizeof(ta));
    nadapters = 0;
    if (fb_test_redis_start(&f->srv) != 0)
        return TEST_SKIP;
    ASSERT_OK(uv_loop_init(&f->loop));
    f->geo = fb_geo_load(fb_data_path(FB_DATA_GEO), NULL);
    ASSERT_NOT_NULL(f->geo);
    f->sync = redisConnectUnix(f->srv.sock);
    ASSERT(f->sync && !f->sync->err);
    return 0;
}

static void teardown(struct fixture *f)
{
    node_down(f, 0);
    node_down(f, 1);
    redisFree(f->sync);
    fb_geo_free(f->geo);
    fb_test_loop_close_strict(&f->loop);
    fb_test_redis_destroy(&f->srv);
}

struct result {
    int calls;
    int status;
};

static void on_delivered(int status, void *arg)
{
    struct result *res = arg;
    res->calls++;
    res->status = status;
}

/* Delivers an event on node 0's adapter. */
static int deliver(fb_inbound_kind_t kind, const char *conv, const char *id, const char *text,
                   struct result *res)
{
    fb_inbound_t ev = {
        .kind = kind,
        .conv = conv,
        .event_id = id,
        .text = kind == FB_IN_MESSAGE ? text : NULL,
    };
    return adapters[0]->core->deliver(adapters[0], &ev, on_delivered, res);
}

static void deliver_wait(struct fixture *f, fb_inbound_kind_t kind, const char *conv,
                         const char *id, const char *text)
{
    struct result res = {0, 99};
    ASSERT_OK(deliver(kind, conv, id, text, &res));
    wait_int(&f->loop, &res.calls, 1);
    ASSERT_OK(res.status);
}

/* Starts conversations r0..r(n-1) (each at the first question: a reminder scheduled). */
static void start_convs(struct fixture *f, int n)
{
    struct result *res = fb_calloc((size_t)n, sizeof(*res));
    int done = 0;
    for (int i = 0; i < n; i++) {
        char conv[16];
        snprintf(conv, sizeof(conv), "r%d", i);
        ASSERT_OK(deliver(FB_IN_START, conv, "start", NULL, &res[i]));
    }
    for (;;) {
        done = 0;
        for (int i = 0; i < n; i++)
            done += res[i].calls;
        if (done == n)
            break;
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    for (int i = 0; i < n; i++)
        ASSERT_OK(res[i].status);
    fb_free(res);
    ASSERT_EQ(redis_int(f, "ZCARD t:{g}:reminders:due"), n);
}

/* Makes every reminder of r0..r(n-1) due at `due_ms`, and removes the time of the user's last
 * event from their sessions (such a conversation counts as active): these fixed dates may be
 * earlier than the wall clock of the events that started them, which would make the reminders
 * stale (written to after they fell due) and dropped. */
static void make_due(struct fixture *f, int n, int64_t due_ms)
{
    for (int i = 0; i < n; i++) {
        ASSERT_EQ(redis_int(f, "ZADD t:{g}:reminders:due XX CH %lld test:r%d|relance",
                            (long long)due_ms, i),
                  1);
        (void)redis_int(f, "HDEL t:{c:test:r%d}:session a", i);
    }
}

static int relances_total(void)
{
    int t = 0;
    for (int i = 0; i < NCONV; i++)
        t += ta.relances[i];
    return t;
}

static bool all_delivered_once(void *arg)
{
    int n = *(int *)arg;
    for (int i = 0; i < n; i++)
        if (ta.relances[i] < 1)
            return false;
    return true;
}

/* Monday 30 November 2026, 10:00 Paris: within working hours. */
#define OPEN_MS (utc(2026, 11, 30, 9, 0) * 1000)

/* True while a router has events or outbox work in progress. */
static bool routers_busy(const struct fixture *f)
{
    for (int i = 0; i < 2; i++)
        if (f->n[i].router && fb_router_pending(f->n[i].router) > 0)
            return true;
    return ta.nq > 0;
}

struct drain {
    struct fixture *f;
    int i;
};

static bool drained(void *arg)
{
    const struct drain *d = arg;
    return fb_reminders_pending(d->f->n[d->i].rem) == 0 && !routers_busy(d->f);
}

/* Polls node i until its claims are handed out and answered and the replies sent. */
static void poll_drain(struct fixture *f, int i)
{
    fb_reminders_poll(f->n[i].rem);
    struct drain d = {f, i};
    (void)fb_test_wait_cond(&f->loop, drained, &d, 60000);
    ASSERT_EQ(fb_reminders_pending(f->n[i].rem), 0);
}

/* Two schedulers on one Redis, 1,000 reminders due at once: each delivered exactly once. */
TEST_IMPL(reminders_thousand_two_schedulers)
{
    struct fixture f;
    int rc = setup(&f);
    if (rc)
        return rc;
    node_up(&f, 0, 50, 12);
    node_up(&f, 1, 50, 12);
    start_convs(&f, NCONV);
    make_due(&f, NCONV, OPEN_MS - 60000);
    fb__reminders_set_clock(f.n[0].rem, OPEN_MS);
    fb__reminders_set_clock(f.n[1].rem, OPEN_MS);
    /* Both poll; each full batch is followed by the next one at once. */
    fb_reminders_poll(f.n[0].rem);
    fb_reminders_poll(f.n[1].rem);
    int n = NCONV;
    wait_until(&f.loop, all_delivered_once, &n, "every reminder delivered");
    poll_drain(&f, 0);
    poll_drain(&f, 1);
    for (int i = 0; i < NCONV; i++)
        if (ta.relances[i] != 1)
            FB_TEST_FAIL("conversation r%d got %d reminders", i, ta.relances[i]);
    fb_reminders_stats_t s0, s1;
    fb_reminders_get_stats(f.n[0].rem, &s0);
    fb_reminders_get_stats(f.n[1].rem, &s1);
    ASSERT_EQ(s0.claimed + s1.claimed, NCONV);
    ASSERT_EQ(s0.delivered + s1.delivered, NCONV);
    ASSERT(s0.claimed > 0 && s1.claimed > 0); /* both took part */
    ASSERT_EQ(redis_int(&f, "ZCARD t:{g}:reminders:claimed"), 0);
    ASSERT_EQ(redis_int(&f, "HLEN t:{g}:reminders:claims"), 0);
    /* each one re-armed by the engine (six weeks after the wall clock) */
    ASSERT_EQ(redis_int(&f, "ZCOUNT t:{g}:reminders:due %lld +inf", (long long)OPEN_MS), NCONV);
    ASSERT_EQ(redis_int(&f, "HGET t:{g}:stats reminder_sent"), NCONV);
    /* nothing more is due: another round delivers nothing */
    poll_drain(&f, 0);
    ASSERT_EQ(relances_total(), NCONV);
    fb_buf_t b;
    fb_buf_init(&b, 1u << 16);
    ASSERT_OK(fb_reminders_metrics_render(f.n[0].rem, &b));
    ASSERT_NOT_NULL(strstr(fb_buf_str(&b), "frichebot_reminders_total{outcome=\"delivered\"}"));
    fb_buf_free(&b);
    teardown(&f);
    return 0;
}

/*
 * A scheduler that dies with claims: before delivery (mode 1) or after the router recorded the
 * events but before ACK (mode 2). After the lease, the other scheduler's reaper returns them:
 * none lost, none twice.
 */
static int crash_case(int mode)
{
    struct fixture f;
    int rc = setup(&f);
    if (rc)
        return rc;
    enum { N = 200 };
    node_up(&f, 0, 1000, 12);
    node_up(&f, 1, 1000, 12);
    start_convs(&f, N);
    make_due(&f, N, OPEN_MS - 60000);
    fb__reminders_set_clock(f.n[0].rem, OPEN_MS);
    fb__reminders_set_crash(f.n[0].rem, mode);
    poll_drain(&f, 0);
    ASSERT_EQ(redis_int(&f, "ZCARD t:{g}:reminders:claimed"), N); /* all claimed, none acked */
    ASSERT_EQ(relances_total(), mode == 1 ? 0 : N);
    /* Within the lease, the other scheduler takes nothing. */
    fb__reminders_set_clock(f.n[1].rem, OPEN_MS + 500);
    poll_drain(&f, 1);
    fb_reminders_stats_t s;
    fb_reminders_get_stats(f.n[1].rem, &s);
    ASSERT_EQ(s.claimed, 0);
    /* After it, the reaper gives them back and they go out (once). */
    fb__reminders_set_clock(f.n[1].rem, OPEN_MS + 1001);
    poll_drain(&f, 1);
    fb_reminders_get_stats(f.n[1].rem, &s);
    ASSERT_EQ(s.reaped, N);
    ASSERT_EQ(s.claimed, mode == 1 ? N : 0); /* mode 2: re-armed by the commit, not due */
    for (int i = 0; i < N; i++)
        if (ta.relances[i] != 1)
            FB_TEST_FAIL("conversation r%d got %d reminders", i, ta.relances[i]);
    ASSERT_EQ(redis_int(&f, "ZCARD t:{g}:reminders:claimed"), 0);
    ASSERT_EQ(redis_int(&f, "HGET t:{g}:stats reminder_sent"), N);
    teardown(&f);
    return 0;
}

TEST_IMPL(reminders_crash_before_delivery_loses_none)
{
    return crash_case(1);
}

TEST_IMPL(reminders_crash_after_commit_delivers_once)
{
    return crash_case(2);
}

/* Mode 2 again, but the redelivery is forced (the member made due again, as if the engine had
 * not re-armed it): the router's dedupe mark recognises the same event id. */
TEST_IMPL(reminders_redelivery_is_a_duplicate)
{
    struct fixture f;
    int rc = setup(&f);
    if (rc)
        return rc;
    node_up(&f, 0, 100, 12);
    node_up(&f, 1, 100, 12);
    start_convs(&f, 1);
    make_due(&f, 1, OPEN_MS - 60000);
    fb__reminders_set_clock(f.n[0].rem, OPEN_MS);
    fb__reminders_set_crash(f.n[0].rem, 2);
    poll_drain(&f, 0);
    ASSERT_EQ(ta.relances[0], 1);
    /* the commit re-armed it; put it back to its old due time as a lost ACK plus reaper would */
    ASSERT_EQ(redis_int(&f, "ZREM t:{g}:reminders:due test:r0|relance"), 1);
    fb__reminders_set_clock(f.n[1].rem, OPEN_MS + 1001);
    poll_drain(&f, 1);
    fb_reminders_stats_t s;
    fb_reminders_get_stats(f.n[1].rem, &s);
    ASSERT_EQ(s.reaped, 1);
    ASSERT_EQ(s.claimed, 1);
    ASSERT_EQ(s.delivered, 1);
    ASSERT_EQ(ta.relances[0], 1); /* not twice */
    fb_router_stats_t rs;
    fb_router_get_stats(f.n[1].router, &rs);
    ASSERT_EQ(rs.duplicates, 1);
    teardown(&f);
    return 0;
}

/* Out of working hours: re-scored to the next opening, not delivered, not dropped. */
TEST_IMPL(reminders_deferred_to_next_morning)
{
    struct fixture f;
    int rc = setup(&f);
    if (rc)
        return rc;
    node_up(&f, 0, 100, 12);
    start_convs(&f, 3);
    /* Friday 27 November 2026, 19:00 Paris */
    int64_t fri = utc(2026, 11, 27, 18, 0) * 1000;
    make_due(&f, 3, fri - 3600000);
    fb__reminders_set_clock(f.n[0].rem, fri);
    poll_drain(&f, 0);
    fb_reminders_stats_t s;
    fb_reminders_get_stats(f.n[0].rem, &s);
    ASSERT_EQ(s.deferred, 3);
    ASSERT_EQ(s.claimed, 0);
    ASSERT_EQ(relances_total(), 0);
    int64_t monday = utc(2026, 11, 30, 8, 0) * 1000;
    ASSERT_EQ(redis_int(&f, "ZSCORE t:{g}:reminders:due test:r1|relance"), monday);
    /* Saturday: still nothing due (the score is Monday's) */
    fb__reminders_set_clock(f.n[0].rem, utc(2026, 11, 28, 10, 0) * 1000);
    poll_drain(&f, 0);
    ASSERT_EQ(relances_total(), 0);
    /* Monday 09:00 Paris: they go out */
    fb__reminders_set_clock(f.n[0].rem, monday);
    poll_drain(&f, 0);
    ASSERT_EQ(relances_total(), 3);
    teardown(&f);
    return 0;
}

/* A conversation without user activity for inactive_months: the reminder is dropped. */
TEST_IMPL(reminders_inactive_dropped)
{
    struct fixture f;
    int rc = setup(&f);
    if (rc)
        return rc;
    node_up(&f, 0, 100, 6);
    start_convs(&f, 2);
    /* r0's last activity: seven months ago (r1 keeps today's) */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long old = ((long long)ts.tv_sec - 7LL * 30 * 86400) * 1000;
    ASSERT(redis_int(&f, "HGET t:{c:test:r1}:session a") > old);
    make_due(&f, 2, OPEN_MS - 60000);
    redis_int(&f, "HSET t:{c:test:r0}:session a %lld", old);
    fb__reminders_set_clock(f.n[0].rem, OPEN_MS);
    poll_drain(&f, 0);
    ASSERT_EQ(ta.relances[0], 0);
    ASSERT_EQ(ta.relances[1], 1);
    fb_reminders_stats_t s;
    fb_reminders_get_stats(f.n[0].rem, &s);
    ASSERT_EQ(s.dropped, 1);
    ASSERT_EQ(s.delivered, 1);
    ASSERT_EQ(redis_int(&f, "ZSCORE t:{g}:reminders:due test:r0|relance"), -1); /* gone */
    ASSERT_EQ(redis_int(&f, "HEXISTS t:{c:test:r0}:reminders relance"), 0);
    ASSERT_EQ(redis_int(&f, "ZCARD t:{g}:reminders:claimed"), 0);
    teardown(&f);
    return 0;
}

/* Forget removes the reminders: nothing is due for that conversation any more. */
TEST_IMPL(reminders_forgotten_conversation)
{
    struct fixture f;
    int rc = setup(&f);
    if (rc)
        return rc;
    node_up(&f, 0, 100, 12);
    start_convs(&f, 2);
    deliver_wait(&f, FB_IN_FORGET, "r0", "forget", NULL);
    ASSERT_EQ(redis_int(&f, "ZSCORE t:{g}:reminders:due test:r0|relance"), -1);
    ASSERT_EQ(redis_int(&f, "EXISTS t:{c:test:r0}:reminders"), 0);
    ASSERT_EQ(redis_int(&f, "ZCARD t:{g}:reminders:due"), 1);
    /* and a stale member delivered anyway (claimed before the forget) says nothing */
    redis_int(&f, "ZADD t:{g}:reminders:due %lld test:r0|relance", (long long)OPEN_MS - 1);
    redis_int(&f, "ZADD t:{g}:reminders:due %lld test:r1|relance", (long long)OPEN_MS - 1);
    redis_int(&f, "HDEL t:{c:test:r1}:session a"); /* see make_due() */
    fb__reminders_set_clock(f.n[0].rem, OPEN_MS);
    poll_drain(&f, 0);
    ASSERT_EQ(ta.relances[0], 0);
    ASSERT_EQ(ta.relances[1], 1);
    teardown(&f);
    return 0;
}

static long long wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Polls node 0 at scheduler clock `clock_ms` until the batch is over; returns its stats. */
static fb_reminders_stats_t poll_at(struct fixture *f, long long clock_ms)
{
    fb__reminders_set_clock(f->n[0].rem, clock_ms);
    poll_drain(f, 0);
    fb_reminders_stats_t s;
    fb_reminders_get_stats(f->n[0].rem, &s);
    return s;
}

/*
 * The push-back is lazy (issue 17): a user event that arms nothing itself (an answer not
 * understood) leaves the reminder where it was (no read of the reminders hash, no ZADD), and the
 * reminder, armed before that event with delay D, goes out at the event's time + D: not at its
 * own due time (there it is held, not sent, and armed again at that time), not a millisecond
 * before, and once. Fails on the eager push-back, which moved the due member at the user's event.
 */
TEST_IMPL(reminders_activity_postpones)
{
    struct fixture f;
    int rc = setup(&f);
    if (rc)
        return rc;
    f.hours_off = true; /* the clocks below fall at any hour */
    node_up(&f, 0, 100, 0);
    start_convs(&f, 1);
    const long long six_weeks = 42LL * 86400 * 1000;
    ASSERT_EQ(redis_int(&f, "HGET t:{c:test:r0}:reminders relance#a"), six_weeks);
    long long due = redis_int(&f, "ZSCORE t:{g}:reminders:due test:r0|relance");
    long long armed = redis_int(&f, "HGET t:{c:test:r0}:session a"); /* the start's */
    ASSERT_EQ(due, armed + six_weeks);
    /* t0: the user writes (after the start, by the wall clock the router uses) */
    while (wall_ms() <= armed)
        uv_sleep(1);
    long long hgetall = fb_test_redis_cmdstat(f.sync, "hgetall", "calls");
    deliver_wait(&f, FB_IN_MESSAGE, "r0", "m1", "zzzzqqq");
    long long t0 = redis_int(&f, "HGET t:{c:test:r0}:session a");
    ASSERT_GT(t0, armed);
    ASSERT_EQ(fb_test_redis_cmdstat(f.sync, "hgetall", "calls"), hgetall);
    ASSERT_EQ(redis_int(&f, "ZSCORE t:{g}:reminders:due test:r0|relance"), due); /* untouched */
    /* before its due time: nothing claimed */
    fb_reminders_stats_t s = poll_at(&f, due - 1);
    ASSERT_EQ(s.claimed, 0);
    /* at its due time: claimed and held (t0 + D is later), armed again at t0 + D, nothing said;
     * the hold's COMMIT moves the session's version (not its data, nor its write id), so that
     * another run of the same TIMER that read the session before it conflicts (its COMMIT does
     * not read the dedupe mark of a session it read) */
    long long v0 = redis_int(&f, "HGET t:{c:test:r0}:session v");
    redisReply *w0 = redisCommand(f.sync, "HGET t:{c:test:r0}:session w");
    ASSERT(w0 && w0->type == REDIS_REPLY_STRING);
    s = poll_at(&f, due);
    ASSERT_EQ(redis_int(&f, "HGET t:{c:test:r0}:session v"), v0 + 1);
    redisReply *w1 = redisCommand(f.sync, "HGET t:{c:test:r0}:session w");
    ASSERT(w1 && w1->type == REDIS_REPLY_STRING);
    ASSERT_STR_EQ(w1->str, w0->str);
    freeReplyObject(w0);
    freeReplyObject(w1);
    ASSERT_EQ(s.claimed, 1);
    ASSERT_EQ(s.dropped, 1);
    ASSERT_EQ(s.delivered, 0);
    ASSERT_EQ(ta.relances[0], 0);
    ASSERT_EQ(redis_int(&f, "ZSCORE t:{g}:reminders:due test:r0|relance"), t0 + six_weeks);
    ASSERT_EQ(redis_int(&f, "ZCARD t:{g}:reminders:claimed"), 0);
    ASSERT_EQ(redis_int(&f, "HGET t:{g}:stats reminder_sent"), -1);
    /* one millisecond before t0 + D: still nothing */
    s = poll_at(&f, t0 + six_weeks - 1);
    ASSERT_EQ(s.claimed, 1);
    ASSERT_EQ(ta.relances[0], 0);
    /* at t0 + D: sent, once (the engine arms the next one D after the wall clock, later still) */
    while (wall_ms() <= t0)
        uv_sleep(1);
    s = poll_at(&f, t0 + six_weeks);
    ASSERT_EQ(s.claimed, 2);
    ASSERT_EQ(s.delivered, 1);
    ASSERT_EQ(ta.relances[0], 1);
    ASSERT_GT(redis_int(&f, "ZSCORE t:{g}:reminders:due test:r0|relance"), t0 + six_weeks);
    s = poll_at(&f, t0 + six_weeks);
    ASSERT_EQ(s.claimed, 2);
    ASSERT_EQ(ta.relances[0], 1);
    ASSERT_EQ(redis_int(&f, "HGET t:{g}:stats reminder_sent"), 1);
    teardown(&f);
    return 0;
}

/*
 * What the previous version left in Redis still works: a due member its eager push-back moved to
 * the user's last event + the delay is sent at that time (not held again), and a session's `r`
 * (its "reminders hash known empty at this version", no longer written) changes nothing. A
 * schedule that rewrites an armed reminder's fields does not set the hash's TTL again (issue 17);
 * the one that created the hash did.
 */
TEST_IMPL(reminders_previous_version_data)
{
    struct fixture f;
    int rc = setup(&f);
    if (rc)
        return rc;
    f.hours_off = true;
    node_up(&f, 0, 100, 0);
    start_convs(&f, 1);
    const long long six_weeks = 42LL * 86400 * 1000;
    ASSERT_GT(redis_int(&f, "PTTL t:{c:test:r0}:reminders"), 0);    /* set when it was created */
    ASSERT_EQ(redis_int(&f, "HEXISTS t:{c:test:r0}:session r"), 0); /* no longer written */
    long long armed = redis_int(&f, "HGET t:{c:test:r0}:session a");
    while (wall_ms() <= armed)
        uv_sleep(1);
    /* "lyon" enters the next question, which arms `relance` again in the existing hash: its
     * fields rewritten, its TTL not set again */
    ASSERT_EQ(redis_int(&f, "PEXPIRE t:{c:test:r0}:reminders 86400000"), 1);
    deliver_wait(&f, FB_IN_MESSAGE, "r0", "m1", "lyon");
    long long pttl = redis_int(&f, "PTTL t:{c:test:r0}:reminders");
    ASSERT_GT(pttl, 0);
    ASSERT_LE(pttl, 86400000);
    long long t0 = redis_int(&f, "HGET t:{c:test:r0}:session a");
    ASSERT_EQ(redis_int(&f, "ZSCORE t:{g}:reminders:due test:r0|relance"), t0 + six_weeks);
    /* an older daemon's write: `r` = the version (it believed the hash empty), and a failed
     * answer it pushed back: the member at that user event + the delay */
    long long v = redis_int(&f, "HINCRBY t:{c:test:r0}:session v 1");
    ASSERT_EQ(redis_int(&f, "HSET t:{c:test:r0}:session r %lld a %lld", v, t0 + 5), 1);
    ASSERT_EQ(
        redis_int(&f, "ZADD t:{g}:reminders:due XX CH %lld test:r0|relance", t0 + 5 + six_weeks),
        1);
    /* sent at that time, not held, once */
    fb_reminders_stats_t s = poll_at(&f, t0 + 5 + six_weeks - 1);
    ASSERT_EQ(s.claimed, 0);
    while (wall_ms() <= t0 + 5)
        uv_sleep(1);
    s = poll_at(&f, t0 + 5 + six_weeks);
    ASSERT_EQ(s.claimed, 1);
    ASSERT_EQ(s.delivered, 1);
    ASSERT_EQ(s.dropped, 0);
    ASSERT_EQ(ta.relances[0], 1);
    s = poll_at(&f, t0 + 5 + six_weeks);
    ASSERT_EQ(s.claimed, 1);
    /* a user event on that record reads nothing of the reminders */
    long long hgetall = fb_test_redis_cmdstat(f.sync, "hgetall", "calls");
    deliver_wait(&f, FB_IN_MESSAGE, "r0", "m2", "zzzzqqq");
    ASSERT_EQ(fb_test_redis_cmdstat(f.sync, "hgetall", "calls"), hgetall);
    teardown(&f);
    return 0;
}

/*
 * The user writes while a reminder is claimed (REMINDERS.md "Activity"): the TIMER finds a last
 * activity later than the reminder's due time and holds it: nothing sent, the claim
 * acknowledged, the reminder armed again six weeks after the user's event. A conversation that
 * stayed quiet (its last event six weeks before the due time) gets its reminder.
 */
TEST_IMPL(reminders_claimed_then_user_writes_dropped)
{
    struct fixture f;
    int rc = setup(&f);
    if (rc)
        return rc;
    node_up(&f, 0, 100, 12);
    node_up(&f, 1, 100, 12);
    start_convs(&f, 2);
    const long long six_weeks = 42LL * 86400 * 1000;
    /* Due now (the wall clock, as the routers'), after the events that started r0 and r1. */
    long long due = wall_ms();
    for (int i = 0; i < 2; i++) {
        ASSERT(redis_int(&f, "HGET t:{c:test:r%d}:session a", i) <= due);
        ASSERT_EQ(redis_int(&f, "ZADD t:{g}:reminders:due XX CH %lld test:r%d|relance", due, i), 1);
        /* as if armed by a user event six weeks before the due time (else the lazy push-back
         * holds it until that event + six weeks) */
        redis_int(&f, "HSET t:{c:test:r%d}:session a %lld", i, due - six_weeks);
    }
    /* A scheduler clock within working hours and not before the due time. */
    fb_hours_t h = {f.n[0].cfg->reminders.start_hour, f.n[0].cfg->reminders.end_hour};
    int64_t clock = fb_hours_next_open(&h, due / 1000 + 1) * 1000;
    /* Node 0 claims both and "crashes" before delivering them. */
    fb__reminders_set_clock(f.n[0].rem, clock);
    fb__reminders_set_crash(f.n[0].rem, 1);
    poll_drain(&f, 0);
    ASSERT_EQ(redis_int(&f, "ZCARD t:{g}:reminders:claimed"), 2);
    /* r0's user writes after the due time (a message the engine does not understand: it arms
     * nothing itself); nothing moves the claimed member. */
    while (wall_ms() <= due)
        uv_sleep(1);
    deliver_wait(&f, FB_IN_MESSAGE, "r0", "m1", "zzzzqqq");
    long long a0 = redis_int(&f, "HGET t:{c:test:r0}:session a");
    ASSERT(a0 > due);
    ASSERT_EQ(redis_int(&f, "ZSCORE t:{g}:reminders:due test:r0|relance"), -1);
    long long v0 = redis_int(&f, "HGET t:{c:test:r0}:session v");
    redisReply *d0 = redisCommand(f.sync, "HGET t:{c:test:r0}:session d");
    ASSERT(d0 && d0->type == REDIS_REPLY_STRING);
    /* After the lease, node 1 reaps both (same due time) and delivers them. */
    fb__reminders_set_clock(f.n[1].rem, clock + 1001);
    poll_drain(&f, 1);
    fb_reminders_stats_t s;
    fb_reminders_get_stats(f.n[1].rem, &s);
    ASSERT_EQ(s.reaped, 2);
    ASSERT_EQ(s.claimed, 2);
    ASSERT_EQ(s.dropped, 1);
    ASSERT_EQ(s.delivered, 1);
    ASSERT_EQ(ta.relances[0], 0); /* r0: not sent */
    ASSERT_EQ(ta.relances[1], 1); /* r1: sent */
    ASSERT_EQ(redis_int(&f, "ZCARD t:{g}:reminders:claimed"), 0);
    ASSERT_EQ(redis_int(&f, "HLEN t:{g}:reminders:claims"), 0);
    ASSERT_EQ(redis_int(&f, "HGET t:{g}:stats reminder_sent"), 1);
    /* r0: the session's data untouched, its version moved (so that another run of the same
     * TIMER that read it before conflicts), the reminder armed six weeks after the user's
     * message */
    redisReply *d1 = redisCommand(f.sync, "HGET t:{c:test:r0}:session d");
    ASSERT(d1 && d1->type == REDIS_REPLY_STRING);
    ASSERT_STR_EQ(d1->str, d0->str);
    freeReplyObject(d0);
    freeReplyObject(d1);
    ASSERT_EQ(redis_int(&f, "HGET t:{c:test:r0}:session v"), v0 + 1);
    ASSERT_EQ(redis_int(&f, "ZSCORE t:{g}:reminders:due test:r0|relance"), a0 + six_weeks);
    /* the same event again is a duplicate: still nothing sent */
    ASSERT_EQ(redis_int(&f, "ZADD t:{g}:reminders:due XX CH %lld test:r0|relance", due), 1);
    poll_drain(&f, 1);
    ASSERT_EQ(ta.relances[0], 0);
    fb_router_stats_t rs;
    fb_router_get_stats(f.n[1].router, &rs);
    ASSERT_EQ(rs.duplicates, 1);
    teardown(&f);
    return 0;
}

/* A reminder is not the user's activity in the impact figures (STATS.md): it refreshes no
 * territory, adds no month to the project, and a second reminder is not an answer to the
 * first. */
TEST_IMPL(reminders_not_counted_as_user_activity)
{
    struct fixture f;
    int rc = setup(&f);
    if (rc)
        return rc;
    node_up(&f, 0, 100, 12);
    start_convs(&f, 1);
    deliver_wait(&f, FB_IN_MESSAGE, "r0", "m1", "lyon"); /* a project: Lyon */
    ASSERT(redis_int(&f, "ZSCORE t:{g}:stats:active:communes 69123") > 0);
    ASSERT_EQ(redis_int(&f, "SCARD t:{c:test:r0}:months"), 1);
    /* as if the user's events were older: the territory's activity at 1000 ms, no month */
    ASSERT_EQ(redis_int(&f, "ZADD t:{g}:stats:active:communes XX CH 1000 69123"), 1);
    ASSERT_EQ(redis_int(&f, "DEL t:{c:test:r0}:months"), 1);
    /* two reminders in a row, the user silent */
    for (int i = 1; i <= 2; i++) {
        make_due(&f, 1, OPEN_MS - 60000 + i);
        fb__reminders_set_clock(f.n[0].rem, OPEN_MS + i);
        poll_drain(&f, 0);
        ASSERT_EQ(ta.relances[0], i);
    }
    ASSERT_EQ(redis_int(&f, "HGET t:{g}:stats reminder_sent"), 2);
    ASSERT_EQ(redis_int(&f, "ZSCORE t:{g}:stats:active:communes 69123"), 1000);
    ASSERT_EQ(redis_int(&f, "EXISTS t:{c:test:r0}:months"), 0);
    ASSERT_EQ(redis_int(&f, "HGET t:{g}:stats reminder_answered"), -1);
    /* the user answers: now it counts, once */
    deliver_wait(&f, FB_IN_MESSAGE, "r0", "m2", "la commune");
    ASSERT_EQ(redis_int(&f, "HGET t:{g}:stats reminder_answered"), 1);
    ASSERT(redis_int(&f, "ZSCORE t:{g}:stats:active:communes 69123") > 1000);
    ASSERT_EQ(redis_int(&f, "SCARD t:{c:test:r0}:months"), 1);
    teardown(&f);
    return 0;
}
