/* SPDX-License-Identifier: MIT */
/*
 * test_router.c - the router and the outbox (daemon/core/router.c) against a real, throwaway
 * redis-server, with the sample dialog and a test adapter defined here that records what it is
 * asked to send and can be told to fail. Every test ends with the router stopped, the Redis
 * client closed and fb_test_loop_close_strict().
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <uv.h>

#include "common/digest.h"
#include "core/router.h"
#include "core/store.h"
#include "engine/engine.h"
#include "engine/geo.h"
#include "features/stats.h"
#include "frichebot/adapter.h"
#include "frichebot/alloc.h"
#include "frichebot/clock.h"
#include "frichebot/err.h"
#include "io/config.h"
#include "io/paths.h"
#include "io/redis.h"
#include "task.h"

/* ---- the test adapter -------------------------------------------------------------------- */

#define MAX_SENT 256

struct sent {
    char conv[64];
    char txn[64];
    char text[4096];
    char kind[16];
    long long lua; /* the entry's "lua" member, written by ta_commit_lua (0: none) */
};

struct pending_cb {
    fb_send_cb cb;
    void *arg;
    int status;
    int64_t retry_after;
};

/* One test process runs one test: the adapter's state is global. */
static struct {
    struct sent sent[MAX_SENT];
    int nsent;
    int attempts;       /* send() calls */
    int fail_transient; /* the next N sends fail with FB_EAGAIN */
    int fail_permanent; /* the next N sends fail with FB_EINVAL */
    int fail_at;        /* send() call number N (1-based, as `attempts`) fails with FB_EAGAIN */
    int hold_at;        /* send() call number N is never answered but by the stop (FB_ECANCELED) */
    struct pending_cb held;
    int put_off; /* the next N sends answer FB_ENOTYET, retry after put_off_ms */
    int64_t put_off_ms;
    struct pending_cb q[4096];
    int nq;
    bool count_only; /* sends are only counted (in ncount), not recorded: thousands of them */
    int ncount;
    uv_timer_t timer; /* calls the send callbacks later, never inside send() */
    bool timer_init;
    int stops;
    int dup_sends;                      /* sends of a transaction id already delivered */
    int max_nq;                         /* most sends in flight at once */
    bool defer_stop;                    /* stop() keeps `done` for on_delivered() */
    void (*stop_done)(fb_adapter_t *a); /* kept by a deferred stop */
    fb_adapter_t *stopping;
} ta;

/* Answers the queued sends in order; those the callbacks make are answered after them. */
static void ta_flush(uv_timer_t *t)
{
    (void)t;
    while (ta.nq > 0) {
        int n = ta.nq;
        struct pending_cb *batch = fb_malloc((size_t)n * sizeof(*batch));
        memcpy(batch, ta.q, (size_t)n * sizeof(*batch));
        ta.nq = 0;
        for (int i = 0; i < n; i++)
            batch[i].cb(batch[i].status, batch[i].retry_after, batch[i].arg);
        fb_free(batch);
    }
}

static int ta_init(fb_adapter_t *a)
{
    ASSERT_NOT_NULL(a->core);
    ASSERT_NOT_NULL(a->core->deliver);
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

static void ta_closed(uv_handle_t *h)
{
    (void)h;
}

static void ta_stop(fb_adapter_t *a, void (*done)(fb_adapter_t *a))
{
    ta.stops++;
    ta_flush(NULL);
    if (ta.held.cb) { /* the platform never answered it: cancelled by the stop */
        struct pending_cb h = ta.held;
        ta.held.cb = NULL;
        h.cb(h.status, 0, h.arg);
    }
    if (ta.timer_init) {
        uv_close((uv_handle_t *)&ta.timer, ta_closed);
        ta.timer_init = false;
    }
    if (ta.defer_stop) { /* like the Matrix adapter: done once its last delivery is answered */
        ta.stop_done = done;
        ta.stopping = a;
        return;
    }
    done(a);
}

static void ta_destroy(fb_adapter_t *a)
{
    (void)a;
}

static bool ta_seen(const char *txn)
{
    for (int i = 0; i < ta.nsent; i++)
        if (strcmp(ta.sent[i].txn, txn) == 0)
            return true;
    return false;
}

static int ta_send(fb_adapter_t *a, const fb_outbound_t *msg, fb_send_cb cb, void *arg)
{
    (void)a;
    ta.attempts++;
    int status = 0;
    int64_t retry_after = 0;
    if (ta.hold_at == ta.attempts) {
        ta.held = (struct pending_cb){cb, arg, FB_ECANCELED, 0};
        return 0;
    }
    if (ta.fail_at == ta.attempts) {
        status = FB_EAGAIN;
    } else if (ta.put_off > 0) {
        ta.put_off--;
        status = FB_ENOTYET;
        retry_after = ta.put_off_ms;
    } else if (ta.fail_transient > 0) {
        ta.fail_transient--;
        status = FB_EAGAIN;
    } else if (ta.fail_permanent > 0) {
        ta.fail_permanent--;
        status = FB_EINVAL;
    } else if (ta.count_only) {
        ta.ncount++;
    } else if (ta_seen(msg->txn_id)) {
        ta.dup_sends++; /* the platform drops it, as Matrix and the web chat do */
    } else {
        ASSERT_LT(ta.nsent, MAX_SENT);
        struct sent *s = &ta.sent[ta.nsent++];
        snprintf(s->conv, sizeof(s->conv), "%s", msg->conv);
        snprintf(s->txn, sizeof(s->txn), "%s", msg->txn_id);
        snprintf(s->text, sizeof(s->text), "%s", msg->text);
        ASSERT_NOT_NULL(msg->html);
        snprintf(s->kind, sizeof(s->kind), "%s", msg->kind);
        s->lua = json_integer_value(json_object_get(msg->entry, "lua"));
        /* answers; the roadmap's event (docs/internals/ROUTER.md); a reminder's */
        ASSERT(strcmp(msg->kind, "reply") == 0 || strcmp(msg->kind, "roadmap") == 0 ||
               strcmp(msg->kind, "reminder") == 0);
    }
    ASSERT_LT(ta.nq, (int)FB_ARRAY_SIZE(ta.q));
    ta.q[ta.nq++] = (struct pending_cb){cb, arg, status, retry_after};
    if (ta.nq > ta.max_nq)
        ta.max_nq = ta.nq;
    uv_timer_start(&ta.timer, ta_flush, 0, 0);
    return 0;
}

static int ta_stats(fb_adapter_t *a, json_t *out)
{
    (void)a;
    json_object_set_new(out, "sent", json_integer(ta.nsent));
    return 0;
}

/* The adapter's own per-conversation keys, deleted by the router on forget. */
static const char *const ta_keys[] = {"mine", "other", NULL};

static const fb_adapter_ops_t test_adapter = {
    .api_version = FB_ADAPTER_API_VERSION,
    .name = "test",
    .priv_size = 16,
    .caps = 0,
    .init = ta_init,
    .start = ta_start,
    .stop = ta_stop,
    .destroy = ta_destroy,
    .send = ta_send,
    .stats = ta_stats,
    .conv_keys = ta_keys,
};

/* The adapter instance the router made (deliver() needs it): recorded by init. */
static fb_adapter_t *the_adapter;

static int ta_init_record(fb_adapter_t *a)
{
    the_adapter = a;
    return ta_init(a);
}

/* The adapter's COMMIT fragment (fb_adapter_ops_t.commit_lua) when a test sets it, and what its
 * committed() was given. */
static const char *ta_commit_lua;
static unsigned ta_caps;    /* the adapter's caps, when a test sets them */
static int delivered_total; /* every deliver callback of the test */
static struct {
    int calls;
    int dups;             /* calls without output (a duplicate: FB_ADAPTER_CAP_HISTORY_DELIVERS) */
    int delivered_before; /* deliver callbacks run at the last call */
    char conv[64], out[64];
} ta_co;

static void ta_committed(fb_adapter_t *a, const char *conv, const char *out, size_t len, void *arg)
{
    (void)a;
    (void)arg;
    ta_co.calls++;
    ta_co.dups += out == NULL;
    ta_co.delivered_before = delivered_total;
    snprintf(ta_co.conv, sizeof(ta_co.conv), "%s", conv);
    snprintf(ta_co.out, sizeof(ta_co.out), "%.*s", out ? (int)len : 0, out ? out : "");
}

static const char *ta_lua(fb_adapter_t *a)
{
    (void)a;
    return ta_commit_lua;
}

static const fb_adapter_ops_t *test_ops(void)
{
    static fb_adapter_ops_t ops;
    ops = test_adapter;
    ops.init = ta_init_record;
    ops.caps = ta_caps;
    ops.commit_lua = ta_commit_lua ? ta_lua : NULL;
    ops.committed = ta_commit_lua ? ta_committed : NULL;
    return &ops;
}

/* ---- the fixture ------------------------------------------------------------------------- */

struct fixture {
    fb_test_redis_t srv;
    bool srv_owned;
    uv_loop_t loop;
    fb_config_t *cfg;
    fb_redis_t *redis;
    fb_store_t *store;
    fb_geo_t *geo;
    fb_router_t *router;
    fb_adapter_t *adapter; /* the registered test adapter (from the first deliver's slot) */
    redisContext *sync;
    bool stopped;
};

static fb_geo_t *shared_geo(void)
{
    static fb_geo_t *geo;
    if (!geo)
        geo = fb_geo_load(fb_data_path(FB_DATA_GEO), NULL);
    ASSERT_NOT_NULL(geo);
    return geo;
}

/* Runs the loop until *flag (an int) reaches target; fails after 30 s (a hang, not a timing). */
static void wait_int(uv_loop_t *loop, const int *value, int target)
{
    if (!fb_test_wait_int(loop, value, target, 30000))
        FB_TEST_FAIL("waited 30 s for %d, have %d", target, *value);
}

/* More router options, for the tests of its bounds (router_bounds_*). */
static const char *router_extra = "";

static char *config_text(const fb_test_redis_t *srv, const char *dialog)
{
    return fb_asprintf("server:\n  listen: \"127.0.0.1:1\"\n"
                       "redis:\n  address: \"unix:%s\"\n  write_deadline_ms: 400\n"
                       "  command_timeout_ms: 1000\n  connect_timeout_ms: 300\n"
                       "  reconnect:\n    delays_ms: [20, 50]\n    jitter_percent: 0\n"
                       "store:\n  key_prefix: \"t:\"\n"
                       "dialogs:\n  path: \"%s\"\n"
                       "router:\n  max_queued_per_conversation: 16\n%s"
                       "  outbox_retry:\n    delays_ms: [10, 20]\n    jitter_percent: 0\n",
                       srv->sock, dialog, router_extra);
}

/* A feature a test registers after the stats (router_feature_*), or NULL. */
static const fb_feature_ops_t *extra_feature;

/* Builds config, Redis client, store and router on a running server; registers the adapter. */
static void router_up(struct fixture *f, const char *dialog, unsigned start_delay)
{
    char *text = config_text(&f->srv, dialog ? dialog : FB_SOURCE_DIR "/dialogs/exemple.yaml");
    fb_buf_t e;
    fb_buf_init(&e, 1u << 16);
    f->cfg = fb_config_parse("t.yaml", text, strlen(text), &e);
    if (!f->cfg)
        FB_TEST_FAIL("config: %s", fb_buf_str(&e));
    fb_free(text);
    f->redis = fb_redis_create(&f->loop, &f->cfg->redis);
    ASSERT_NOT_NULL(f->redis);
    ASSERT_OK(fb_redis_start(f->redis));
    f->store = fb_store_create(f->redis, &f->cfg->store);
    ASSERT_NOT_NULL(f->store);
    fb_router_deps_t deps = {&f->loop, f->cfg, f->redis, f->store, NULL, NULL, f->geo};
    f->router = fb_router_create(&deps, &e);
    if (!f->router)
        FB_TEST_FAIL("router: %s", fb_buf_str(&e));
    fb_buf_free(&e);
    fb__router_set_outbox_delay(f->router, start_delay);
    ASSERT_OK(fb_router_add_feature(f->router, &fb_stats_feature, NULL)); /* as the daemon */
    if (extra_feature)
        ASSERT_OK(fb_router_add_feature(f->router, extra_feature, NULL));
    ASSERT_OK(fb_router_add_adapter(f->router, test_ops()));
    ASSERT_OK(fb_router_start(f->router));
    f->stopped = false;
}

static void on_stopped(void *arg)
{
    *(int *)arg += 1;
}

static void on_redis_closed(void *arg)
{
    *(int *)arg += 1;
}

/* After the router's stop: closes the client, frees everything but the server and the loop. */
static void router_free(struct fixture *f)
{
    int closed = 0;
    fb_redis_close(f->redis, on_redis_closed, &closed);
    wait_int(&f->loop, &closed, 1);
    fb_router_destroy(f->router);
    fb_store_destroy(f->store);
    fb_config_free(f->cfg);
    f->router = NULL;
    f->store = NULL;
    f->redis = NULL;
    f->cfg = NULL;
}

/* Stops the router, closes the client, frees everything but the server and the loop. */
static void router_down(struct fixture *f)
{
    int stopped = 0;
    fb_router_stop(f->router, on_stopped, &stopped);
    wait_int(&f->loop, &stopped, 1);
    router_free(f);
}

static void teardown(struct fixture *f)
{
    if (f->router)
        router_down(f);
    redisFree(f->sync);
    fb_test_loop_close_strict(&f->loop);
    fb_test_redis_destroy(&f->srv);
}

/* After a test's own fb_router_stop() ended: nothing pending, everything freed. */
static void after_stop(struct fixture *f)
{
    ASSERT_EQ(fb_router_pending(f->router), 0);
    router_free(f);
    teardown(f);
}

struct result {
    int calls;
    int status;
};

static void on_delivered(int status, void *arg)
{
    struct result *res = arg;
    delivered_total++;
    res->calls++;
    res->status = status;
    if (ta.stop_done) {
        void (*done)(fb_adapter_t * a) = ta.stop_done;
        ta.stop_done = NULL;
        done(ta.stopping);
    }
}

static int deliver(fb_inbound_kind_t kind, const char *conv, const char *id, const char *text,
                   struct result *res)
{
    fb_inbound_t ev = {
        .kind = kind,
        .conv = conv,
        .event_id = id,
        .text = kind == FB_IN_MESSAGE ? text : NULL,
        .choice = kind == FB_IN_CHOICE ? text : NULL,
    };
    return the_adapter->core->deliver(the_adapter, &ev, on_delivered, res);
}

/* Delivers one event and waits for its result, which must be `expect`. */
static void deliver_wait(struct fixture *f, fb_inbound_kind_t kind, const char *conv,
                         const char *id, const char *text, int expect)
{
    struct result res = {0, 99};
    ASSERT_OK(deliver(kind, conv, id, text, &res));
    ASSERT_EQ(res.calls, 0); /* never inside the call */
    wait_int(&f->loop, &res.calls, 1);
    ASSERT_EQ(res.status, expect);
}

static long long redis_int(struct fixture *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    long long v = fb_test_redis_vint(f->sync, fmt, ap);
    va_end(ap);
    return v;
}

/* The sent messages of `conv`, in order, joined with "\n---\n". */
static char *texts_of(const char *conv)
{
    fb_buf_t b;
    fb_buf_init(&b, 1u << 20);
    for (int i = 0; i < ta.nsent; i++)
        if (strcmp(ta.sent[i].conv, conv) == 0)
            ASSERT_OK(fb_buf_printf(&b, "%s\n---\n", ta.sent[i].text));
    return fb_buf_take(&b);
}

static int count_of(const char *conv)
{
    int n = 0;
    for (int i = 0; i < ta.nsent; i++)
        n += strcmp(ta.sent[i].conv, conv) == 0;
    return n;
}

/* The sample dialog's whole path (tests/transcripts/exemple-parcours-complet.yaml). */
static const char *const full_path[] = {
    "lyon",      "une asociation",          "1,2 ha", "non", "1, 2 et 4",
    "mars 2099", "Les Jardins du Confluent"};

#define SETUP(f, dialog, delay)                                                                    \
    do {                                                                                           \
        setup_ops(f, dialog, delay);                                                               \
    } while (0)

static void setup_ops(struct fixture *f, const char *dialog, unsigned delay);

/* ---- tests ------------------------------------------------------------------------------- */

/* The sample dialog from the greeting to the roadmap, each reply delivered once, in order. */
TEST_IMPL(router_full_conversation)
{
    struct fixture f;
    SETUP(&f, NULL, 0);
    deliver_wait(&f, FB_IN_START, "c1", "e0", NULL, 0);
    char id[16];
    for (size_t i = 0; i < FB_ARRAY_SIZE(full_path); i++) {
        snprintf(id, sizeof(id), "e%zu", i + 1);
        deliver_wait(&f, FB_IN_MESSAGE, "c1", id, full_path[i], 0);
    }
    wait_int(&f.loop, &ta.nsent, 8);
    fb_test_run_for(&f.loop, 50);
    char *all = texts_of("c1");
    ASSERT_NOT_NULL(strstr(all, "Bonjour"));
    const char *q1 = strstr(all, "Dans quelle commune");
    const char *q2 = strstr(all, "Qui porte le projet");
    const char *q3 = strstr(all, "Quelle est la surface");
    const char *end = strstr(all, "Signer une convention d'occupation");
    ASSERT(q1 && q2 && q3 && end && q1 < q2 && q2 < q3 && q3 < end);
    ASSERT_NOT_NULL(strstr(all, "Les Jardins du Confluent"));
    fb_free(all);
    /* Each event's replies carry transaction ids "<hash>.<index>", all different. */
    for (int i = 0; i < ta.nsent; i++)
        for (int k = i + 1; k < ta.nsent; k++)
            ASSERT(strcmp(ta.sent[i].txn, ta.sent[k].txn) != 0);
    ASSERT_NOT_NULL(strchr(ta.sent[0].txn, '.'));
    /* The answers are "reply", the messages of the event that ends on the roadmap "roadmap". */
    ASSERT_STR_EQ(ta.sent[0].kind, "reply");
    for (int i = 0; i < ta.nsent; i++)
        ASSERT_STR_EQ(ta.sent[i].kind,
                      strstr(ta.sent[i].text, "Signer une convention d'occupation") ||
                              strcmp(ta.sent[i].kind, "roadmap") == 0
                          ? "roadmap"
                          : "reply");
    /* What Redis holds: the session, the counters, the follow-up reminder, an empty outbox. */
    ASSERT_EQ(redis_int(&f, "EXISTS t:{c:test:c1}:session"), 1);
    ASSERT_EQ(redis_int(&f, "HGET t:{g}:stats conversation_started"), 1);
    ASSERT_EQ(redis_int(&f, "HGET t:{g}:stats site_completed"), 1);
    ASSERT_GE(redis_int(&f, "HGET t:{g}:stats step_a_faire"), 1);
    ASSERT_GT(redis_int(&f, "ZSCORE t:{g}:reminders:due test:c1|relance"), 0);
    ASSERT_EQ(redis_int(&f, "LLEN t:{c:test:c1}:outbox"), 0);
    ASSERT_EQ(redis_int(&f, "ZCARD t:{g}:outbox:pending"), 0);
    /* The dedupe marks: one zset, an event id per member; its TTL the retention (72 h) + 1 %. */
    ASSERT_GT(redis_int(&f, "ZSCORE t:{c:test:c1}:ev e3"), 0);
    ASSERT_EQ(redis_int(&f, "ZCARD t:{c:test:c1}:ev"), 8);
    ASSERT_GT(redis_int(&f, "PTTL t:{c:test:c1}:ev"), 72 * 3600 * 1000LL);
    ASSERT_LE(redis_int(&f, "PTTL t:{c:test:c1}:ev"), 72 * 3600 * 1010LL);
    ASSERT_EQ(redis_int(&f, "EXISTS t:{c:test:c1}:ev:e3"), 0);
    fb_router_stats_t st;
    fb_router_get_stats(f.router, &st);
    ASSERT_EQ(st.events, 8);
    ASSERT_EQ(st.duplicates, 0);
    ASSERT_EQ(st.outbox_delivered, (uint64_t)ta.nsent);
    ASSERT_EQ(ta.dup_sends, 0);
    /* /healthz's view and the metrics. */
    json_t *ad = json_object();
    fb_router_health(f.router, ad);
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(ad, "test"), "state")), "ok");
    ASSERT_EQ(json_integer_value(json_object_get(json_object_get(ad, "test"), "sent")), ta.nsent);
    json_decref(ad);
    fb_buf_t m;
    fb_buf_init(&m, 1u << 16);
    ASSERT_OK(fb_router_metrics_render(f.router, &m));
    ASSERT_NOT_NULL(strstr(fb_buf_str(&m), "frichebot_router_events_total{outcome=\"handled\"} 8"));
    fb_buf_free(&m);
    teardown(&f);
    return 0;
}

/* The same event delivered twice (after, and while queued behind itself): one set of replies. */
TEST_IMPL(router_duplicate_event)
{
    struct fixture f;
    SETUP(&f, NULL, 0);
    deliver_wait(&f, FB_IN_START, "d", "s1", NULL, 0);
    deliver_wait(&f, FB_IN_MESSAGE, "d", "m1", "lyon", 0);
    wait_int(&f.loop, &ta.nsent, 3); /* greeting, first question, second question */
    int before = ta.nsent;
    deliver_wait(&f, FB_IN_MESSAGE, "d", "m1", "lyon", 0);
    struct result a = {0, 99}, b = {0, 99};
    ASSERT_OK(deliver(FB_IN_MESSAGE, "d", "m2", "une association", &a));
    ASSERT_OK(deliver(FB_IN_MESSAGE, "d", "m2", "une association", &b));
    wait_int(&f.loop, &b.calls, 1);
    ASSERT_EQ(a.calls, 1);
    ASSERT_EQ(a.status, 0);
    ASSERT_EQ(b.status, 0);
    wait_int(&f.loop, &ta.nsent, before + 1);
    fb_test_run_for(&f.loop, 100);
    ASSERT_EQ(ta.nsent, before + 1);
    ASSERT_NOT_NULL(strstr(ta.sent[ta.nsent - 1].text, "Quelle est la surface"));
    fb_router_stats_t st;
    fb_router_get_stats(f.router, &st);
    ASSERT_EQ(st.duplicates, 2);
    ASSERT_EQ(st.events, 3);
    teardown(&f);
    return 0;
}

/* The dedupe marks (issue 17): one zset per conversation, member = event id, score = its time;
 * a mark counts for router.dedupe_retention_hours after its time, and the older ones are trimmed
 * every 1/100 of the retention; the marks of an older daemon (one string key per event) are
 * still honoured during the retention after the upgrade. On a new Redis none can exist: none is
 * looked for. */
TEST_IMPL(router_dedupe_marks)
{
    struct fixture f;
    SETUP(&f, NULL, 0);
    const long long hour = 3600 * 1000LL, keep = 72 * hour;
    /* A new Redis: no older daemon served here, its marks are never looked for. SINCE is sent
     * once connected; an event's COMMIT (its counters) landing before it would make the Redis
     * look served (the stats exist) and SINCE take the time: wait for it first. */
    for (int i = 0; i < 300 && redis_int(&f, "GET t:{g}:dedupe:zset_since") == -1; i++)
        fb_test_run_for(&f.loop, 10);
    fb_test_run_for(&f.loop, 100); /* and its answer reach the router */
    ASSERT_EQ(redis_int(&f, "GET t:{g}:dedupe:zset_since"), 0);
    deliver_wait(&f, FB_IN_START, "n", "s0", NULL, 0);
    freeReplyObject(redisCommand(f.sync, "SET t:{c:test:n}:ev:m0 1 PX %lld", keep));
    deliver_wait(&f, FB_IN_MESSAGE, "n", "m0", "lyon", 0);
    fb_router_stats_t st;
    fb_router_get_stats(f.router, &st);
    ASSERT_EQ(st.duplicates, 0);
    ASSERT_EQ(st.events, 2);
    /* A Redis an older daemon served (its stats, no FB_KEY_MARKS_SINCE): the upgrade's time. */
    router_down(&f);
    freeReplyObject(redisCommand(f.sync, "DEL t:{g}:dedupe:zset_since"));
    memset(&ta, 0, sizeof(ta));
    router_up(&f, NULL, 0);
    deliver_wait(&f, FB_IN_START, "z", "s1", NULL, 0);
    wait_int(&f.loop, &ta.nsent, 2);
    ASSERT_GT(redis_int(&f, "GET t:{g}:dedupe:zset_since"), 0);
    ASSERT_EQ(redis_int(&f, "ZCARD t:{c:test:z}:ev"), 1);
    long long z = redis_int(&f, "HGET t:{c:test:z}:session z");
    ASSERT_GT(z, 0);
    ASSERT_EQ(redis_int(&f, "ZSCORE t:{c:test:z}:ev s1"), z);
    /* What an older daemon left: the session without `z`, a string key per mark, no zset. */
    freeReplyObject(redisCommand(f.sync, "DEL t:{c:test:z}:ev"));
    freeReplyObject(redisCommand(f.sync, "HDEL t:{c:test:z}:session z"));
    freeReplyObject(redisCommand(f.sync, "SET t:{c:test:z}:ev:s1 1 PX %lld", keep));
    freeReplyObject(redisCommand(f.sync, "SET t:{c:test:z}:ev:m0 1 PX %lld", keep));
    deliver_wait(&f, FB_IN_START, "z", "s1", NULL, 0);
    fb_router_get_stats(f.router, &st);
    ASSERT_EQ(st.duplicates, 1);
    /* The first COMMIT of this daemon on that session starts the zset with its TTL, and records
     * `z` (the marks' last upkeep). */
    deliver_wait(&f, FB_IN_MESSAGE, "z", "m1", "lyon", 0);
    wait_int(&f.loop, &ta.nsent, 3);
    ASSERT_GT(redis_int(&f, "ZSCORE t:{c:test:z}:ev m1"), 0);
    ASSERT_GT(redis_int(&f, "PTTL t:{c:test:z}:ev"), keep);
    ASSERT_GT(redis_int(&f, "HGET t:{c:test:z}:session z"), z - 1);
    /* The older marks still count. */
    deliver_wait(&f, FB_IN_MESSAGE, "z", "m0", "une association", 0);
    fb_router_get_stats(f.router, &st);
    ASSERT_EQ(st.duplicates, 2);
    ASSERT_EQ(ta.nsent, 3);
    /* A mark older than the retention no longer counts (as an expired key); the marks are
     * trimmed with the zset's TTL set again every 1/100 of the retention (`z`), not at every
     * COMMIT. */
    long long now = redis_int(&f, "ZSCORE t:{c:test:z}:ev m1");
    freeReplyObject(redisCommand(f.sync, "ZADD t:{c:test:z}:ev %lld old1 %lld old2",
                                 now - keep - hour, now - keep - 2 * hour));
    freeReplyObject(redisCommand(f.sync, "PEXPIRE t:{c:test:z}:ev %lld", hour));
    deliver_wait(&f, FB_IN_MESSAGE, "z", "old1", "une association", 0);
    wait_int(&f.loop, &ta.nsent, 4);
    fb_router_get_stats(f.router, &st);
    ASSERT_EQ(st.duplicates, 2);
    ASSERT_GE(redis_int(&f, "ZSCORE t:{c:test:z}:ev old1"), now); /* marked again, now */
    ASSERT_EQ(redis_int(&f, "ZCARD t:{c:test:z}:ev"), 3);         /* old2 still there */
    ASSERT_LE(redis_int(&f, "PTTL t:{c:test:z}:ev"), hour);       /* the TTL not set again */
    freeReplyObject(redisCommand(f.sync, "HSET t:{c:test:z}:session z %lld", now - keep / 100));
    deliver_wait(&f, FB_IN_MESSAGE, "z", "m2", "1,2 ha", 0);
    wait_int(&f.loop, &ta.nsent, 5);
    ASSERT_EQ(redis_int(&f, "ZSCORE t:{c:test:z}:ev old2"), -1); /* trimmed */
    ASSERT_EQ(redis_int(&f, "ZCARD t:{c:test:z}:ev"), 3);        /* m1, old1, m2 */
    ASSERT_GT(redis_int(&f, "PTTL t:{c:test:z}:ev"), keep);
    ASSERT_GE(redis_int(&f, "HGET t:{c:test:z}:session z"), now);
    teardown(&f);
    return 0;
}

/* An adapter's COMMIT fragment (issue 17: the web history written with the session) runs in the
 * COMMIT of its conversations, with its keys as AK, reads the outbox entries in O.out (passed as
 * the COMMIT's own arguments, not inside the ops JSON), and may rewrite them, which
 * send() then gets (the outbox head the COMMIT returns is the rewritten one); what it sets in AO
 * goes to the adapter's committed(), before the event's deliver callback; a fragment that returns
 * {3, 0} refuses the event (FB_ENOENT), nothing written. */
TEST_IMPL(router_adapter_commit_lua)
{
    ta_commit_lua = "do\n"
                    "  if A.mode == 'w' then\n"
                    "    redis.call('HINCRBY', AK[1], 'n', #O.out)\n"
                    "    redis.call('HSET', AK[1], 'argv', #ARGV, 'in_ops',\n"
                    "               cjson.decode(ARGV[9]).out and 1 or 0)\n"
                    "    for i = 1, #O.out do\n"
                    "      O.out[i] = string.sub(O.out[i], 1, -2) .. ',\"lua\":' .. i .. '}'\n"
                    "    end\n"
                    "    AO = 'n=' .. #O.out\n"
                    "  end\n"
                    "end\n";
    struct fixture f;
    SETUP(&f, NULL, 0);
    deliver_wait(&f, FB_IN_START, "l", "1", NULL, 0);
    wait_int(&f.loop, &ta.nsent, 2);
    ASSERT_EQ(redis_int(&f, "HGET t:{c:test:l}:mine n"), 2);
    /* the entries came as their own arguments after the thirteen (the last their number: issue
     * 17), not in the ops, and without history forms (this adapter's history is not its
     * delivery) */
    ASSERT_EQ(redis_int(&f, "HGET t:{c:test:l}:mine argv"), 13 + 2);
    ASSERT_EQ(redis_int(&f, "HGET t:{c:test:l}:mine in_ops"), 0);
    /* committed() got AO, before the event's deliver callback */
    ASSERT_EQ(ta_co.calls, 1);
    ASSERT_EQ(ta_co.delivered_before, 0);
    ASSERT_STR_EQ(ta_co.conv, "l");
    ASSERT_STR_EQ(ta_co.out, "n=2");
    ASSERT_EQ(ta.sent[0].lua, 1);
    ASSERT_EQ(ta.sent[1].lua, 2);
    deliver_wait(&f, FB_IN_MESSAGE, "l", "2", "lyon", 0);
    wait_int(&f.loop, &ta.nsent, 3);
    ASSERT_EQ(redis_int(&f, "HGET t:{c:test:l}:mine n"), 3);
    ASSERT_EQ(ta.sent[2].lua, 1);
    /* Not on a forget: the goodbye goes out as written, the adapter's keys are gone. */
    deliver_wait(&f, FB_IN_MESSAGE, "l", "3", "oublier mes données", 0);
    wait_int(&f.loop, &ta.nsent, 4);
    ASSERT_EQ(ta.sent[3].lua, 0);
    ASSERT_EQ(redis_int(&f, "EXISTS t:{c:test:l}:mine"), 0);
    ASSERT_EQ(ta_co.calls, 2); /* not for the forget: no AO */
    /* The adapter's data (fb_inbound_t.commit_arg, A.arg): "gone" makes this fragment refuse. */
    teardown(&f);
    ta_commit_lua = "do if A.arg == 'gone' then return {3, 0} end end\n";
    SETUP(&f, NULL, 0);
    struct result res = {0, 99};
    fb_inbound_t ev = {.kind = FB_IN_START, .conv = "g", .event_id = "1", .commit_arg = "gone"};
    ASSERT_OK(the_adapter->core->deliver(the_adapter, &ev, on_delivered, &res));
    wait_int(&f.loop, &res.calls, 1);
    ASSERT_EQ(res.status, FB_ENOENT);
    ASSERT_EQ(redis_int(&f, "EXISTS t:{c:test:g}:session"), 0);
    ASSERT_EQ(redis_int(&f, "EXISTS t:{c:test:g}:ev"), 0);
    ev.commit_arg = "";
    ASSERT_OK(the_adapter->core->deliver(the_adapter, &ev, on_delivered, &res));
    wait_int(&f.loop, &res.calls, 2);
    ASSERT_EQ(res.status, 0);
    ASSERT_EQ(redis_int(&f, "EXISTS t:{c:test:g}:session"), 1);
    teardown(&f);
    ta_commit_lua = NULL;
    return 0;
}

/* Field `field` of the hash `key` as a new JSON value: "{" followed by the field's bytes when
 * `brace`, else the bytes; NULL when missing or not JSON. */
static json_t *redis_json(struct fixture *f, const char *key, const char *field, bool brace)
{
    redisReply *rep = redisCommand(f->sync, "HGET %s %s", key, field);
    ASSERT_NOT_NULL(rep);
    json_t *v = NULL;
    if (rep->type == REDIS_REPLY_STRING) {
        char *s = fb_asprintf("%s%s", brace ? "{" : "", rep->str);
        v = json_loads(s, 0, NULL);
        fb_free(s);
    }
    freeReplyObject(rep);
    return v;
}

/* A feature adding two entries of its own to every step's outbox entries (as escalation does):
 * their history forms are built from the parsed entries (history_forms()'s other path). */
static void outf_commit_ops(void *self, const fb_feature_step_t *st, json_t *ops, size_t *says)
{
    (void)self;
    json_t *out = json_object_get(ops, "out");
    if (!json_is_array(out) || st->forget)
        return;
    char *e = fb_asprintf("{\"txn\":\"%s.%zu\",\"kind\":\"reply\",\"text\":\"f\","
                          "\"html\":\"\",\"record\":{\"k\":1},\"ts\":%lld}",
                          st->wid, (*says)++, (long long)st->now);
    json_array_append_new(out, json_string(e));
    fb_free(e);
    e = fb_asprintf("{\"txn\":\"%s.%zu\",\"kind\":\"reply\",\"text\":\"g\",\"choices\":[],"
                    "\"html\":\"<p>g</p>\",\"ts\":%lld}",
                    st->wid, (*says)++, (long long)st->now);
    json_array_append_new(out, json_string(e));
    fb_free(e);
}

static const fb_feature_ops_t outf_feature = {.name = "outf", .commit_ops = outf_commit_ops};

/* Issue 17, point 2: for an adapter whose history is its delivery, the COMMIT also gets each
 * entry's history form (O.hist: the web fragment then builds its history entries without cjson
 * in Redis): the entry's text, html and choices when not empty, and its time, after
 * "from":"bot", without the entry's txn and kind and without the opening brace. Without the cap,
 * none. */
TEST_IMPL(router_adapter_history_forms)
{
    ta_commit_lua = "do\n"
                    "  redis.call('HSET', AK[1], 'n', #O.out, 'nh', #O.hist)\n"
                    "  for i = 1, #O.out do\n"
                    "    redis.call('HSET', AK[1], 'out' .. i, O.out[i])\n"
                    "    if O.hist[i] then redis.call('HSET', AK[1], 'form' .. i, O.hist[i]) end\n"
                    "  end\n"
                    "  if A.mode == 'w' and #O.out > 0 then AD = true end\n"
                    "end\n";
    ta_caps = FB_ADAPTER_CAP_HISTORY_DELIVERS;
    extra_feature = &outf_feature;
    struct fixture f;
    SETUP(&f, NULL, 0);
    deliver_wait(&f, FB_IN_START, "h", "1", NULL, 0);
    long long n = redis_int(&f, "HGET t:{c:test:h}:mine n");
    ASSERT_GE(n, 3); /* the dialog's greeting, then the feature's two */
    ASSERT_EQ(redis_int(&f, "HGET t:{c:test:h}:mine nh"), n);
    bool seen_html = false, seen_choices = false;
    for (long long i = 1; i <= n; i++) {
        char field[32];
        snprintf(field, sizeof(field), "out%lld", i);
        json_t *e = redis_json(&f, "t:{c:test:h}:mine", field, false);
        snprintf(field, sizeof(field), "form%lld", i);
        json_t *h = redis_json(&f, "t:{c:test:h}:mine", field, true);
        ASSERT(json_is_object(e) && json_is_object(h));
        ASSERT_STR_EQ(json_string_value(json_object_get(h, "from")), "bot");
        ASSERT_STR_EQ(json_string_value(json_object_get(h, "text")),
                      json_string_value(json_object_get(e, "text")));
        ASSERT(json_equal(json_object_get(h, "ts"), json_object_get(e, "ts")));
        const char *html = json_string_value(json_object_get(e, "html"));
        if (html && html[0]) {
            ASSERT_STR_EQ(json_string_value(json_object_get(h, "html")), html);
            seen_html = true;
        } else {
            ASSERT_NULL(json_object_get(h, "html"));
        }
        json_t *choices = json_object_get(e, "choices");
        if (json_array_size(choices) > 0) {
            ASSERT(json_equal(json_object_get(h, "choices"), choices));
            seen_choices = true;
        } else {
            ASSERT_NULL(json_object_get(h, "choices"));
        }
        ASSERT_EQ(json_object_size(h), 3u + (html && html[0]) + (json_array_size(choices) > 0));
        json_decref(e);
        json_decref(h);
    }
    ASSERT(seen_html);
    (void)seen_choices; /* the greeting of this dialog may or may not offer choices */
    char field[32];
    snprintf(field, sizeof(field), "form%lld", n - 1);
    json_t *h = redis_json(&f, "t:{c:test:h}:mine", field, true);
    ASSERT_NOT_NULL(h); /* the feature's first: no html, no record */
    ASSERT_STR_EQ(json_string_value(json_object_get(h, "text")), "f");
    ASSERT_EQ(json_object_size(h), 3u);
    json_decref(h);
    teardown(&f);
    extra_feature = NULL;
    /* without the cap: the entries only */
    ta_caps = 0;
    SETUP(&f, NULL, 0);
    deliver_wait(&f, FB_IN_START, "h", "1", NULL, 0);
    wait_int(&f.loop, &ta.nsent, 1);
    ASSERT_GE(redis_int(&f, "HGET t:{c:test:h}:mine n"), 1);
    ASSERT_EQ(redis_int(&f, "HGET t:{c:test:h}:mine nh"), 0);
    teardown(&f);
    ta_commit_lua = NULL;
    return 0;
}

/* An adapter whose history is its delivery (FB_ADAPTER_CAP_HISTORY_DELIVERS, the web chat): when
 * its fragment stored the entries and set AD, none goes into the outbox (no send(), no pending
 * index); a duplicate gets committed() without output, before its deliver callback. Without the
 * cap, AD is ignored: the outbox sends them. */
TEST_IMPL(router_adapter_history_delivers)
{
    ta_commit_lua = "do\n"
                    "  if A.mode == 'w' and #O.out > 0 then\n"
                    "    redis.call('RPUSH', AK[1], unpack(O.out))\n"
                    "    AO = 'n=' .. #O.out\n"
                    "    AD = true\n"
                    "  end\n"
                    "end\n";
    ta_caps = FB_ADAPTER_CAP_HISTORY_DELIVERS;
    struct fixture f;
    SETUP(&f, NULL, 0);
    deliver_wait(&f, FB_IN_START, "h", "1", NULL, 0);
    ASSERT_EQ(ta_co.calls, 1);
    ASSERT_STR_EQ(ta_co.out, "n=2");
    ASSERT_EQ(redis_int(&f, "LLEN t:{c:test:h}:mine"), 2);
    ASSERT_EQ(redis_int(&f, "EXISTS t:{c:test:h}:outbox"), 0);
    ASSERT_EQ(redis_int(&f, "ZCARD t:{g}:outbox:pending"), 0);
    /* the same event again: a duplicate (READ), the adapter told to push its entries again */
    deliver_wait(&f, FB_IN_START, "h", "1", NULL, 0);
    ASSERT_EQ(ta_co.calls, 2);
    ASSERT_EQ(ta_co.dups, 1);
    ASSERT_EQ(ta_co.delivered_before, 1);
    ASSERT_STR_EQ(ta_co.conv, "h");
    ASSERT_EQ(redis_int(&f, "LLEN t:{c:test:h}:mine"), 2);
    fb_test_run_for(&f.loop, 100);
    ASSERT_EQ(ta.nsent, 0);
    teardown(&f);
    /* the same fragment, without the cap: AD reset, the outbox sends the entries */
    ta_caps = 0;
    SETUP(&f, NULL, 0);
    deliver_wait(&f, FB_IN_START, "h", "1", NULL, 0);
    wait_int(&f.loop, &ta.nsent, 2);
    ASSERT_EQ(redis_int(&f, "LLEN t:{c:test:h}:mine"), 2);
    deliver_wait(&f, FB_IN_START, "h", "1", NULL, 0);
    ASSERT_EQ(ta_co.dups, 1); /* no call for this duplicate */
    teardown(&f);
    ta_commit_lua = NULL;
    return 0;
}

/* Two conversations interleaved: each gets its own replies, in its own order. */
TEST_IMPL(router_interleaved_conversations)
{
    struct fixture f;
    SETUP(&f, NULL, 0);
    struct result r[8];
    memset(r, 0, sizeof(r));
    ASSERT_OK(deliver(FB_IN_START, "a", "1", NULL, &r[0]));
    ASSERT_OK(deliver(FB_IN_START, "b", "1", NULL, &r[1]));
    ASSERT_OK(deliver(FB_IN_MESSAGE, "a", "2", "lyon", &r[2]));
    ASSERT_OK(deliver(FB_IN_MESSAGE, "b", "2", "69123", &r[3]));
    ASSERT_OK(deliver(FB_IN_MESSAGE, "b", "3", "la mairie", &r[4]));
    ASSERT_OK(deliver(FB_IN_MESSAGE, "a", "3", "asso", &r[5]));
    for (int i = 0; i < 6; i++) {
        wait_int(&f.loop, &r[i].calls, 1);
        ASSERT_EQ(r[i].status, 0);
    }
    wait_int(&f.loop, &ta.nsent, 8);
    fb_test_run_for(&f.loop, 50);
    ASSERT_EQ(count_of("a"), 4); /* greeting, then a question per event */
    ASSERT_EQ(count_of("b"), 4);
    char *ta_ = texts_of("a"), *tb = texts_of("b");
    ASSERT(strstr(ta_, "Dans quelle commune") < strstr(ta_, "Qui porte le projet"));
    ASSERT(strstr(ta_, "Qui porte le projet") < strstr(ta_, "Quelle est la surface"));
    ASSERT(strstr(tb, "Dans quelle commune") < strstr(tb, "Qui porte le projet"));
    ASSERT(strstr(tb, "Qui porte le projet") < strstr(tb, "Quelle est la surface"));
    fb_free(ta_);
    fb_free(tb);
    /* The answers landed in their own sessions. */
    redisReply *rep = redisCommand(f.sync, "HGET t:{c:test:a}:session d");
    ASSERT(rep && rep->type == REDIS_REPLY_STRING && strstr(rep->str, "\"association\""));
    freeReplyObject(rep);
    rep = redisCommand(f.sync, "HGET t:{c:test:b}:session d");
    ASSERT(rep && rep->type == REDIS_REPLY_STRING && strstr(rep->str, "\"commune\""));
    freeReplyObject(rep);
    teardown(&f);
    return 0;
}

/* The whole conversation queued at once on one conversation runs in order; past the queue bound
 * deliver() says FB_EAGAIN; malformed events are refused at once. */
TEST_IMPL(router_queue_keeps_order)
{
    struct fixture f;
    SETUP(&f, NULL, 0);
    struct result r[8];
    memset(r, 0, sizeof(r));
    char ids[8][8];
    ASSERT_OK(deliver(FB_IN_START, "q", "0", NULL, &r[0]));
    for (size_t i = 0; i < FB_ARRAY_SIZE(full_path); i++) {
        snprintf(ids[i], sizeof(ids[i]), "%zu", i + 1);
        ASSERT_OK(deliver(FB_IN_MESSAGE, "q", ids[i], full_path[i], &r[i + 1]));
    }
    /* 8 queued; the bound is 16. */
    struct result extra[16];
    memset(extra, 0, sizeof(extra));
    char xid[16][8];
    int accepted = 0;
    for (int i = 0; i < 16; i++) {
        snprintf(xid[i], sizeof(xid[i]), "x%d", i);
        int rc = deliver(FB_IN_MESSAGE, "q", xid[i], "aide", &extra[i]);
        if (rc == 0)
            accepted++;
        else
            ASSERT_EQ(rc, FB_EAGAIN);
    }
    ASSERT_EQ(accepted, 8);
    struct result bad = {0, 0};
    ASSERT_EQ(deliver(FB_IN_MESSAGE, "q", "", "x", &bad), FB_EINVAL);
    ASSERT_EQ(deliver(FB_IN_MESSAGE, "q", "bad-utf8", "\xC3\x28", &bad), FB_EINVAL);
    ASSERT_EQ(deliver(FB_IN_CHOICE, "q", "c", NULL, &bad), FB_EINVAL);
    ASSERT_EQ(deliver(FB_IN_MESSAGE, "", "c", "x", &bad), FB_EINVAL);
    for (int i = 0; i < 8; i++) {
        wait_int(&f.loop, &r[i].calls, 1);
        ASSERT_EQ(r[i].status, 0);
    }
    for (int i = 0; i < 16; i++)
        if (i < accepted)
            wait_int(&f.loop, &extra[i].calls, 1);
    ASSERT_EQ(bad.calls, 0);
    fb_test_run_for(&f.loop, 100);
    char *all = texts_of("q");
    const char *end = strstr(all, "Signer une convention d'occupation");
    ASSERT_NOT_NULL(end);
    ASSERT(strstr(all, "Qui porte le projet") < end);
    fb_free(all);
    teardown(&f);
    return 0;
}

/* Bounded work (issue #18): router.max_queued_events refuses events beyond it with FB_EAGAIN (the
 * platform retries), router.max_sending keeps the sends in the adapter's hands at or under it,
 * the others waiting their turn; nothing is lost. And control characters are cleaned first: a
 * text with nothing else is refused as malformed, whatever the queue. */
static bool all_greeted(void *arg)
{
    const char *const *convs = arg;
    for (int i = 0; i < 6; i++)
        if (count_of(convs[i]) == 0)
            return false;
    return true;
}

TEST_IMPL(router_bounds_queued_events_and_sending)
{
    router_extra = "  max_queued_events: 4\n  max_sending: 2\n";
    struct fixture f;
    SETUP(&f, NULL, 0);
    struct result r[6];
    memset(r, 0, sizeof(r));
    const char *convs[] = {"b0", "b1", "b2", "b3", "b4", "b5"};
    for (int i = 0; i < 6; i++)
        ASSERT_EQ(deliver(FB_IN_START, convs[i], "start", NULL, &r[i]), i < 4 ? 0 : FB_EAGAIN);
    struct result bad = {0, 0};
    ASSERT_EQ(deliver(FB_IN_MESSAGE, "b0", "ctl", "\x01\x1b\xc2\x85 \r\n", &bad), FB_EINVAL);
    for (int i = 0; i < 4; i++) {
        wait_int(&f.loop, &r[i].calls, 1);
        ASSERT_EQ(r[i].status, 0);
    }
    /* the refused ones, offered again once there is room */
    ASSERT_OK(deliver(FB_IN_START, "b4", "start", NULL, &r[4]));
    ASSERT_OK(deliver(FB_IN_START, "b5", "start", NULL, &r[5]));
    wait_int(&f.loop, &r[4].calls, 1);
    wait_int(&f.loop, &r[5].calls, 1);
    /* a message with control characters: cleaned, then handled like "lyon" */
    struct result ctl = {0, 99};
    ASSERT_OK(deliver(FB_IN_MESSAGE, "b0", "m1", "\x02ly\x7fon\x1b\r\n", &ctl));
    wait_int(&f.loop, &ctl.calls, 1);
    ASSERT_EQ(ctl.status, 0);
    ASSERT(fb_test_wait_cond(&f.loop, all_greeted, convs, 30000));
    fb_test_run_for(&f.loop, 200);
    char *all = texts_of("b0");
    ASSERT_NOT_NULL(strstr(all, "Qui porte le projet")); /* "lyon" was understood */
    fb_free(all);
    ASSERT_LE(ta.max_nq, 2);
    ASSERT_EQ(bad.calls, 0);
    fb_router_stats_t st;
    fb_router_get_stats(f.router, &st);
    ASSERT_EQ(st.busy, 2);
    ASSERT_GT(st.send_waits, 0);
    ASSERT_EQ(ta.dup_sends, 0);
    teardown(&f);
    router_extra = "";
    return 0;
}

/* A write behind the router's back between its read and its commit: the event runs again on
 * the new version, and its replies go out once. */
static int conflicts_to_make;
static redisContext *hook_sync;

static void conflict_hook(void *arg, const char *key, json_t *effects)
{
    (void)arg;
    (void)effects;
    if (conflicts_to_make > 0 && strcmp(key, "test:v") == 0) {
        conflicts_to_make--;
        redisReply *rep = redisCommand(hook_sync, "HINCRBY t:{c:test:v}:session v 1");
        ASSERT(rep && rep->type == REDIS_REPLY_INTEGER);
        freeReplyObject(rep);
    }
}

TEST_IMPL(router_version_conflict_reruns)
{
    struct fixture f;
    SETUP(&f, NULL, 0);
    hook_sync = f.sync;
    deliver_wait(&f, FB_IN_START, "v", "1", NULL, 0);
    wait_int(&f.loop, &ta.nsent, 2);
    fb__router_set_step_hook(f.router, conflict_hook, NULL);
    conflicts_to_make = 2;
    deliver_wait(&f, FB_IN_MESSAGE, "v", "2", "lyon", 0);
    wait_int(&f.loop, &ta.nsent, 3);
    fb_test_run_for(&f.loop, 100);
    ASSERT_EQ(ta.nsent, 3);
    ASSERT_NOT_NULL(strstr(ta.sent[2].text, "Qui porte le projet"));
    fb_router_stats_t st;
    fb_router_get_stats(f.router, &st);
    ASSERT_EQ(st.conflicts, 2);
    ASSERT_EQ(st.events, 2);
    ASSERT_EQ(redis_int(&f, "HGET t:{c:test:v}:session v"), 4); /* 1, +1, +1, then ours */
    teardown(&f);
    return 0;
}

/* Found by review (issue 17): between this job's READ and its COMMIT, another daemon handles the
 * same event (its mark), then the user's forget deletes the session and a new message makes it
 * again, up to the very version this job read. COMMIT no longer reads the dedupe mark of a
 * session it read: the session's birth (`b`, the write id of the COMMIT that made it) tells the
 * new session from the one READ saw, so this COMMIT conflicts, and the rerun's READ finds the
 * mark: the event is not handled twice. Without the birth the version matched, and it was. */
static bool reborn_to_make;

static void reborn_hook(void *arg, const char *key, json_t *effects)
{
    (void)arg;
    (void)effects;
    if (!reborn_to_make || strcmp(key, "test:b") != 0)
        return;
    reborn_to_make = false;
    long long v = fb_test_redis_int(hook_sync, "HGET t:{c:test:b}:session v");
    freeReplyObject(
        redisCommand(hook_sync, "ZADD t:{c:test:b}:ev %lld 2", (long long)fb_wall_ms()));
    freeReplyObject(redisCommand(hook_sync, "DEL t:{c:test:b}:session"));
    freeReplyObject(
        redisCommand(hook_sync, "HSET t:{c:test:b}:session v %lld d {} w other b other", v));
}

TEST_IMPL(router_session_born_again_conflicts)
{
    struct fixture f;
    SETUP(&f, NULL, 0);
    hook_sync = f.sync;
    deliver_wait(&f, FB_IN_START, "b", "1", NULL, 0);
    wait_int(&f.loop, &ta.nsent, 2);
    ASSERT_EQ(redis_int(&f, "HEXISTS t:{c:test:b}:session b"), 1); /* its birth, from the start */
    fb__router_set_step_hook(f.router, reborn_hook, NULL);
    reborn_to_make = true;
    deliver_wait(&f, FB_IN_MESSAGE, "b", "2", "lyon", 0);
    fb_test_run_for(&f.loop, 200);
    fb_router_stats_t st;
    fb_router_get_stats(f.router, &st);
    ASSERT_EQ(st.conflicts, 1);
    ASSERT_EQ(st.duplicates, 1);
    ASSERT_EQ(ta.nsent, 2); /* nothing said for the event handled elsewhere */
    redisReply *rep = redisCommand(f.sync, "HGET t:{c:test:b}:session w");
    ASSERT(rep && rep->type == REDIS_REPLY_STRING);
    ASSERT_STR_EQ(rep->str, "other"); /* the new session not written over */
    freeReplyObject(rep);
    teardown(&f);
    return 0;
}

/* Transient send failures are retried with the policy, then delivered once, in order. */
TEST_IMPL(router_outbox_transient_retried)
{
    struct fixture f;
    SETUP(&f, NULL, 0);
    ta.fail_transient = 3;
    deliver_wait(&f, FB_IN_START, "t", "1", NULL, 0);
    deliver_wait(&f, FB_IN_MESSAGE, "t", "2", "lyon", 0);
    wait_int(&f.loop, &ta.nsent, 3);
    fb_test_run_for(&f.loop, 100);
    ASSERT_EQ(ta.nsent, 3);
    ASSERT_EQ(ta.attempts, 6);
    ASSERT_NOT_NULL(strstr(ta.sent[0].text, "Bonjour"));
    ASSERT_NOT_NULL(strstr(ta.sent[1].text, "Dans quelle commune"));
    ASSERT_NOT_NULL(strstr(ta.sent[2].text, "Qui porte le projet"));
    fb_router_stats_t st;
    fb_router_get_stats(f.router, &st);
    ASSERT_EQ(st.outbox_retried, 3);
    ASSERT_EQ(st.outbox_delivered, 3);
    ASSERT_EQ(redis_int(&f, "LLEN t:{c:test:t}:outbox"), 0);
    teardown(&f);
    return 0;
}

/* An outage: the head's send fails, and the user writes on during the backoff. Each new message
 * (its COMMIT returns the head) cuts the backoff short, so that the first message after the
 * outage goes out at once, but a send that cut it short counts no attempt when it fails: before,
 * each message counted one, and three messages parked the greeting at max_attempts 3 within
 * milliseconds. */
TEST_IMPL(router_outbox_backoff_cut_short_counts_no_attempt)
{
    struct fixture f;
    SETUP(&f, NULL, 0);
    fb_retry_policy_t *p = &f.cfg->router.outbox_retry;
    p->delays_ms[0] = 5000; /* far longer than the test: only a kick ends it */
    p->n_delays = 1;
    p->jitter_percent = 0;
    p->max_attempts = 3;
    ta.fail_transient = 1000000;
    deliver_wait(&f, FB_IN_START, "o", "1", NULL, 0);
    wait_int(&f.loop, &ta.attempts, 1);
    deliver_wait(&f, FB_IN_MESSAGE, "o", "2", "lyon", 0);
    wait_int(&f.loop, &ta.attempts, 2);
    deliver_wait(&f, FB_IN_MESSAGE, "o", "3", "la commune", 0);
    wait_int(&f.loop, &ta.attempts, 3);
    deliver_wait(&f, FB_IN_MESSAGE, "o", "4", "industriel", 0);
    wait_int(&f.loop, &ta.attempts, 4); /* each message tried the head at once */
    fb_test_run_for(&f.loop, 50);
    fb_router_stats_t st;
    fb_router_get_stats(f.router, &st);
    ASSERT_EQ(st.outbox_parked, 0); /* one counted attempt of 3 */
    ASSERT_EQ(redis_int(&f, "LLEN t:{c:test:o}:parked"), 0);
    /* the outage ends: the next message sends everything at once, not after the 5 s backoff */
    ta.fail_transient = 0;
    uint64_t t0 = uv_now(&f.loop);
    deliver_wait(&f, FB_IN_MESSAGE, "o", "5", "aide", 0);
    wait_int(&f.loop, &ta.nsent, 3);
    ASSERT(uv_now(&f.loop) - t0 < 4000);
    fb_test_run_for(&f.loop, 200);
    ASSERT_NOT_NULL(strstr(ta.sent[0].text, "Bonjour"));
    ASSERT_NOT_NULL(strstr(ta.sent[1].text, "Dans quelle commune"));
    fb_router_get_stats(f.router, &st);
    ASSERT_EQ(st.outbox_parked, 0);
    ASSERT_EQ(redis_int(&f, "LLEN t:{c:test:o}:parked"), 0);
    ASSERT_EQ(redis_int(&f, "LLEN t:{c:test:o}:outbox"), 0);
    teardown(&f);
    return 0;
}

/* FB_ENOTYET (an adapter holding a send back on purpose, as Matrix does in a new encrypted room):
 * the entry waits the adapter's delay at the head of the outbox, then goes once, in order; no
 * attempt is counted, so even max_attempts 1 does not park it. */
TEST_IMPL(router_outbox_put_off_not_counted)
{
    struct fixture f;
    SETUP(&f, NULL, 0);
    f.cfg->router.outbox_retry.max_attempts = 1; /* a counted try would park at once */
    ta.put_off = 2;
    ta.put_off_ms = 150;
    uint64_t t0 = uv_now(&f.loop);
    deliver_wait(&f, FB_IN_START, "w", "1", NULL, 0);
    wait_int(&f.loop, &ta.nsent, 2);
    ASSERT(uv_now(&f.loop) - t0 >= 300); /* two waits of 150 ms before the first send */
    fb_test_run_for(&f.loop, 100);
    ASSERT_EQ(ta.nsent, 2);
    ASSERT_EQ(ta.attempts, 4);
    ASSERT_NOT_NULL(strstr(ta.sent[0].text, "Bonjour"));
    ASSERT_NOT_NULL(strstr(ta.sent[1].text, "Dans quelle commune"));
    fb_router_stats_t st;
    fb_router_get_stats(f.router, &st);
    ASSERT_EQ(st.outbox_retried, 0);
    ASSERT_EQ(st.outbox_parked, 0);
    ASSERT_EQ(st.outbox_delivered, 2);
    ASSERT_EQ(redis_int(&f, "LLEN t:{c:test:w}:outbox"), 0);
    teardown(&f);
    return 0;
}

/* An adapter whose platform drops a send it has seen by its transaction id
 * (FB_ADAPTER_CAP_TXN_DEDUPE): an event's replies go out one after the other and one POP removes
 * them all (issue 17), not one POP per reply. A transient failure of the second resends only the
 * second: the first, sent and not popped yet, is not sent again. */
TEST_IMPL(router_outbox_one_pop_per_event)
{
    ta_caps = FB_ADAPTER_CAP_TXN_DEDUPE;
    struct fixture f;
    SETUP(&f, NULL, 0);
    redisReply *rep = redisCommand(f.sync, "CONFIG RESETSTAT");
    freeReplyObject(rep);
    deliver_wait(&f, FB_IN_START, "o", "1", NULL, 0); /* the greeting: two replies */
    wait_int(&f.loop, &ta.nsent, 2);
    fb_test_run_for(&f.loop, 100);
    ASSERT_EQ(ta.nsent, 2);
    ASSERT_NOT_NULL(strstr(ta.sent[0].text, "Bonjour"));
    ASSERT_NOT_NULL(strstr(ta.sent[1].text, "Dans quelle commune"));
    /* one POP: its one LPOP of both (the POP of each reply was an LPOP each, then an LTRIM) */
    ASSERT_EQ(fb_test_redis_cmdstat(f.sync, "lpop", "calls") +
                  fb_test_redis_cmdstat(f.sync, "ltrim", "calls"),
              1);
    ASSERT_EQ(redis_int(&f, "EXISTS t:{c:test:o}:outbox"), 0);
    ASSERT_EQ(redis_int(&f, "ZCARD t:{g}:outbox:pending"), 0);
    /* the second reply of the next greeting fails once: resent alone, then both popped */
    ta.fail_at = ta.attempts + 2;
    deliver_wait(&f, FB_IN_START, "o2", "1", NULL, 0);
    wait_int(&f.loop, &ta.nsent, 4);
    fb_test_run_for(&f.loop, 100);
    ASSERT_EQ(ta.nsent, 4);
    ASSERT_EQ(ta.attempts, 5);
    ASSERT_EQ(ta.dup_sends, 0);
    ASSERT_NOT_NULL(strstr(ta.sent[2].text, "Bonjour"));
    ASSERT_NOT_NULL(strstr(ta.sent[3].text, "Dans quelle commune"));
    ASSERT_EQ(redis_int(&f, "EXISTS t:{c:test:o2}:outbox"), 0);
    ASSERT_EQ(redis_int(&f, "ZCARD t:{g}:outbox:pending"), 0);
    fb_router_stats_t st;
    fb_router_get_stats(f.router, &st);
    ASSERT_EQ(st.outbox_delivered, 4);
    ASSERT_EQ(st.outbox_retried, 1);
    ta.fail_at = 0;
    teardown(&f);
    ta_caps = 0;
    return 0;
}

/* POP takes an event's entries with one LPOP of one more, and puts back in front what follows
 * them (issue 17): the next event's reply, queued while the greeting's second reply waited for
 * its retry (that COMMIT's head sends it at once), stays in the outbox, in order, and goes out
 * after it, once. (The outbox the LPOP emptied and the push-back made again has no TTL, as one
 * a COMMIT creates: its first HEAD sets it, router_outbox_ttl_set_by_head.) */
TEST_IMPL(router_outbox_pop_puts_back_what_follows)
{
    struct fixture f;
    SETUP(&f, NULL, 0);
    f.cfg->router.outbox_retry.delays_ms[0] = 1000;
    f.cfg->router.outbox_retry.n_delays = 1;
    ta.fail_at = 2; /* the greeting's second reply: retried in a second */
    ta.hold_at = 4; /* the next event's reply, after the greeting's: never answered */
    deliver_wait(&f, FB_IN_START, "q", "1", NULL, 0);
    deliver_wait(&f, FB_IN_MESSAGE, "q", "2", "lyon", 0); /* committed while the retry waits */
    wait_int(&f.loop, &ta.attempts, 4);
    fb_test_run_for(&f.loop, 100);
    ASSERT_EQ(ta.nsent, 2);
    ASSERT_EQ(ta.dup_sends, 0);
    ASSERT_NOT_NULL(strstr(ta.sent[0].text, "Bonjour"));
    ASSERT_NOT_NULL(strstr(ta.sent[1].text, "Dans quelle commune"));
    /* the greeting's two entries popped, the reply put back, alone */
    ASSERT_EQ(redis_int(&f, "LLEN t:{c:test:q}:outbox"), 1);
    redisReply *rep = redisCommand(f.sync, "LINDEX t:{c:test:q}:outbox 0");
    ASSERT_NOT_NULL(rep);
    ASSERT_EQ(rep->type, REDIS_REPLY_STRING);
    ASSERT_NOT_NULL(strstr(rep->str, "Qui porte le projet"));
    freeReplyObject(rep);
    ASSERT_EQ(redis_int(&f, "ZCARD t:{g}:outbox:pending"), 1);
    ta.fail_at = 0;
    ta.hold_at = 0;
    teardown(&f);
    return 0;
}

/* The chain of an event's replies cut by a stop after its first reply went out (a crash is the
 * same, without the cancelled callback): nothing was popped, so the next router sends the first
 * again, with its transaction id (the platform drops it: ta.dup_sends), then the second, once. */
TEST_IMPL(router_outbox_chain_cut_resends_the_first)
{
    ta_caps = FB_ADAPTER_CAP_TXN_DEDUPE;
    struct fixture f;
    SETUP(&f, NULL, 0);
    ta.hold_at = 2; /* the greeting's second reply */
    deliver_wait(&f, FB_IN_START, "k", "1", NULL, 0);
    wait_int(&f.loop, &ta.attempts, 2);
    fb_test_run_for(&f.loop, 50);
    ASSERT_EQ(ta.nsent, 1);
    ASSERT_EQ(redis_int(&f, "LLEN t:{c:test:k}:outbox"), 2); /* the first not popped yet */
    router_down(&f);
    ta.hold_at = 0;
    router_up(&f, NULL, 0);
    wait_int(&f.loop, &ta.nsent, 2);
    fb_test_run_for(&f.loop, 100);
    ASSERT_EQ(ta.nsent, 2);
    ASSERT_EQ(ta.dup_sends, 1);
    ASSERT_NOT_NULL(strstr(ta.sent[0].text, "Bonjour"));
    ASSERT_NOT_NULL(strstr(ta.sent[1].text, "Dans quelle commune"));
    ASSERT_EQ(redis_int(&f, "EXISTS t:{c:test:k}:outbox"), 0);
    ASSERT_EQ(redis_int(&f, "ZCARD t:{g}:outbox:pending"), 0);
    teardown(&f);
    ta_caps = 0;
    return 0;
}

/* The COMMIT that creates an outbox does not set its TTL (its POP deletes it a moment later:
 * a PEXPIRE per message saved, issue 17); an outbox whose entries do not go out gets the
 * session's TTL at its first HEAD (the retry's read), so it never outlives its conversation. */
TEST_IMPL(router_outbox_ttl_set_by_head)
{
    struct fixture f;
    SETUP(&f, NULL, 0);
    f.cfg->router.outbox_retry.max_attempts = 0;
    /* the first event sets the session's TTL, and its outbox's with it: sent, popped */
    deliver_wait(&f, FB_IN_START, "l", "1", NULL, 0);
    wait_int(&f.loop, &ta.nsent, 2);
    fb_test_run_for(&f.loop, 50);
    ASSERT_EQ(redis_int(&f, "EXISTS t:{c:test:l}:outbox"), 0);
    /* the next one's reply does not go out */
    ta.fail_transient = 1000000;
    int tries = ta.attempts;
    deliver_wait(&f, FB_IN_MESSAGE, "l", "2", "lyon", 0);
    wait_int(&f.loop, &ta.attempts, tries + 3);
    ASSERT_EQ(redis_int(&f, "LLEN t:{c:test:l}:outbox"), 1);
    long long ttl = redis_int(&f, "PTTL t:{c:test:l}:outbox");
    ASSERT_GT(ttl, 0);
    ASSERT_LE(ttl, (long long)fb_store_session_ttl_ms(f.store));
    ta.fail_transient = 0;
    wait_int(&f.loop, &ta.nsent, 3);
    teardown(&f);
    return 0;
}

/* A permanent failure parks the entry; the conversation's next entries go on. */
TEST_IMPL(router_outbox_permanent_parked)
{
    struct fixture f;
    SETUP(&f, NULL, 0);
    ta.fail_permanent = 1;
    deliver_wait(&f, FB_IN_START, "p", "1", NULL, 0);
    deliver_wait(&f, FB_IN_MESSAGE, "p", "2", "lyon", 0);
    wait_int(&f.loop, &ta.nsent, 2);
    fb_test_run_for(&f.loop, 100);
    ASSERT_EQ(ta.nsent, 2); /* the greeting was parked */
    ASSERT_NOT_NULL(strstr(ta.sent[0].text, "Dans quelle commune"));
    ASSERT_NOT_NULL(strstr(ta.sent[1].text, "Qui porte le projet"));
    ASSERT_EQ(redis_int(&f, "LLEN t:{c:test:p}:parked"), 1);
    ASSERT_EQ(redis_int(&f, "LLEN t:{c:test:p}:outbox"), 0);
    fb_router_stats_t st;
    fb_router_get_stats(f.router, &st);
    ASSERT_EQ(st.outbox_parked, 1);
    teardown(&f);
    return 0;
}

/* Entries written but not delivered (the daemon stopped first) go out from the next router on
 * the same Redis, once, with the same transaction ids. */
TEST_IMPL(router_restart_delivers_pending)
{
    struct fixture f;
    SETUP(&f, NULL, 600000); /* the first router holds every entry for 10 minutes */
    deliver_wait(&f, FB_IN_START, "r", "1", NULL, 0);
    deliver_wait(&f, FB_IN_MESSAGE, "r", "2", "lyon", 0);
    fb_test_run_for(&f.loop, 100);
    ASSERT_EQ(ta.nsent, 0);
    ASSERT_EQ(redis_int(&f, "LLEN t:{c:test:r}:outbox"), 3);
    ASSERT_EQ(redis_int(&f, "ZCARD t:{g}:outbox:pending"), 1);
    router_down(&f);
    ASSERT_EQ(ta.stops, 1);

    memset(&ta, 0, sizeof(ta));
    router_up(&f, NULL, 0);
    wait_int(&f.loop, &ta.nsent, 3);
    fb_test_run_for(&f.loop, 100);
    ASSERT_EQ(ta.nsent, 3);
    ASSERT_NOT_NULL(strstr(ta.sent[0].text, "Bonjour"));
    ASSERT_NOT_NULL(strstr(ta.sent[1].text, "Dans quelle commune"));
    ASSERT_NOT_NULL(strstr(ta.sent[2].text, "Qui porte le projet"));
    ASSERT(strcmp(ta.sent[0].txn, ta.sent[1].txn) != 0);
    ASSERT_EQ(redis_int(&f, "LLEN t:{c:test:r}:outbox"), 0);
    ASSERT_EQ(redis_int(&f, "ZCARD t:{g}:outbox:pending"), 0);
    teardown(&f);
    return 0;
}

/* More stuck conversations than one scan takes (their adapter is not loaded, so they stay first
 * in the pending index) do not hide the ones behind them: the scan goes on to the next ranks. */
TEST_IMPL(router_scan_goes_past_stuck_conversations)
{
    struct fixture f;
    SETUP(&f, NULL, 600000); /* the first router holds every entry */
    deliver_wait(&f, FB_IN_START, "r", "1", NULL, 0);
    fb_test_run_for(&f.loop, 100);
    ASSERT_EQ(ta.nsent, 0);
    int want = (int)redis_int(&f, "LLEN t:{c:test:r}:outbox");
    ASSERT(want > 0);
    router_down(&f);
    /* 2500 conversations of an adapter that is not loaded, all older than "test:r". */
    freeReplyObject(redisCommand(f.sync, "ZADD t:{g}:outbox:pending XX 9000000000000 test:r"));
    for (int i = 0; i < 2500; i++) {
        redisAppendCommand(f.sync, "ZADD t:{g}:outbox:pending %d ghost:%d", i, i);
        redisAppendCommand(f.sync, "RPUSH t:{c:ghost:%d}:outbox {\"txn\":\"g%d.0\",\"text\":\"x\"}",
                           i, i);
    }
    for (int i = 0; i < 5000; i++) {
        redisReply *rep = NULL;
        ASSERT_EQ(redisGetReply(f.sync, (void **)&rep), REDIS_OK);
        freeReplyObject(rep);
    }
    ASSERT_EQ(redis_int(&f, "ZCARD t:{g}:outbox:pending"), 2501);

    memset(&ta, 0, sizeof(ta));
    router_up(&f, NULL, 0);
    wait_int(&f.loop, &ta.nsent, want); /* 30 s at most; the next ranks come one tick (1 s) later */
    fb_test_run_for(&f.loop, 200);      /* the emptied outbox leaves the index at the next read */
    ASSERT_EQ(redis_int(&f, "LLEN t:{c:test:r}:outbox"), 0);
    ASSERT_EQ(redis_int(&f, "ZCARD t:{g}:outbox:pending"), 2500); /* the stuck ones stay */
    teardown(&f);
    return 0;
}

/*
 * 2500 conversations with a reply waiting at the start, all deliverable, some with equal scores in
 * the pending index: the recovery scan reads it in pages of 1000 while the conversations of a page
 * are delivered and leave it. Each page starts after the last member of the previous one, so every
 * reply goes out within a few ticks; paging by rank skipped as many members as had left the index
 * meanwhile (1000 here), and those waited for the next full scan, 60 s later (past the 30 s wait).
 */
TEST_IMPL(router_scan_pages_while_the_index_shrinks)
{
    struct fixture f;
    SETUP(&f, NULL, 0);
    router_down(&f);
    enum { N = 2500 };
    for (int i = 0; i < N; i++) {
        /* four conversations per score: ties across the page boundaries */
        redisAppendCommand(f.sync, "ZADD t:{g}:outbox:pending %d test:p%04d", 1000 + i / 4, i);
        redisAppendCommand(
            f.sync, "RPUSH t:{c:test:p%04d}:outbox {\"txn\":\"p%d.0\",\"text\":\"x\"}", i, i);
    }
    for (int i = 0; i < 2 * N; i++) {
        redisReply *rep = NULL;
        ASSERT_EQ(redisGetReply(f.sync, (void **)&rep), REDIS_OK);
        freeReplyObject(rep);
    }
    ASSERT_EQ(redis_int(&f, "ZCARD t:{g}:outbox:pending"), N);

    memset(&ta, 0, sizeof(ta));
    ta.count_only = true;
    router_up(&f, NULL, 0);
    wait_int(&f.loop, &ta.ncount, N); /* 30 s at most; each page comes one tick (1 s) later */
    fb_test_run_for(&f.loop, 300);    /* the emptied outboxes leave the index */
    ASSERT_EQ(ta.ncount, N);          /* each reply once */
    ASSERT_EQ(redis_int(&f, "ZCARD t:{g}:outbox:pending"), 0);
    teardown(&f);
    return 0;
}

/* Redis stopped: deliver() reports FB_EAGAIN once the write deadline passes, nothing is written;
 * Redis back: the same event goes through. */
TEST_IMPL(router_redis_down_eagain)
{
    struct fixture f;
    SETUP(&f, NULL, 0);
    deliver_wait(&f, FB_IN_START, "x", "1", NULL, 0);
    wait_int(&f.loop, &ta.nsent, 2);
    fb_test_run_for(&f.loop, 50);         /* the outbox's last read */
    ASSERT_EQ(redis_int(&f, "SAVE"), -1); /* a snapshot, so that the restart keeps the session */
    redisFree(f.sync);
    f.sync = NULL;
    fb_test_redis_stop(&f.srv);
    uint64_t t0 = uv_hrtime();
    deliver_wait(&f, FB_IN_MESSAGE, "x", "2", "lyon", FB_EAGAIN);
    ASSERT_LT((uv_hrtime() - t0) / 1000000u, 20000); /* bounded by the deadline, not hung */
    ASSERT_OK(fb_test_redis_restart(&f.srv));
    f.sync = redisConnectUnix(f.srv.sock);
    ASSERT(f.sync && !f.sync->err);
    deliver_wait(&f, FB_IN_MESSAGE, "x", "2", "lyon", 0);
    wait_int(&f.loop, &ta.nsent, 3);
    ASSERT_NOT_NULL(strstr(ta.sent[2].text, "Qui porte le projet"));
    teardown(&f);
    return 0;
}

/* "oublier mes données" deletes the conversation's keys, yet the goodbye goes out. */
TEST_IMPL(router_forget_deletes_keys)
{
    struct fixture f;
    SETUP(&f, NULL, 0);
    deliver_wait(&f, FB_IN_START, "f", "1", NULL, 0);
    deliver_wait(&f, FB_IN_MESSAGE, "f", "2", "lyon", 0);
    deliver_wait(&f, FB_IN_MESSAGE, "f", "3", "conseiller", 0);
    wait_int(&f.loop, &ta.nsent, 4);
    ASSERT_EQ(redis_int(&f, "EXISTS t:{c:test:f}:ticket"), 1);
    ASSERT_EQ(redis_int(&f, "EXISTS t:{c:test:f}:session"), 1);
    redisReply *rep;
    /* The adapter's declared keys go with the session; a key it did not declare stays. */
    const char *own[] = {"mine", "other", "notmine"};
    for (size_t i = 0; i < FB_ARRAY_SIZE(own); i++)
        freeReplyObject(redisCommand(f.sync, "SET t:{c:test:f}:%s x", own[i]));
    /* The escalation cancelled the reminder; arm one to see forget remove it. */
    rep = redisCommand(f.sync, "HSET t:{c:test:f}:reminders relance inactivite");
    freeReplyObject(rep);
    rep = redisCommand(f.sync, "ZADD t:{g}:reminders:due 1 test:f|relance");
    freeReplyObject(rep);
    int before = ta.nsent;
    deliver_wait(&f, FB_IN_MESSAGE, "f", "4", "oublier mes données", 0);
    wait_int(&f.loop, &ta.nsent, before + 1);
    ASSERT_NOT_NULL(strstr(ta.sent[ta.nsent - 1].text, "effacé"));
    const char *gone[] = {"session", "ticket", "reminders", "parked", "mine", "other"};
    for (size_t i = 0; i < FB_ARRAY_SIZE(gone); i++)
        ASSERT_EQ(redis_int(&f, "EXISTS t:{c:test:f}:%s", gone[i]), 0);
    ASSERT_EQ(redis_int(&f, "EXISTS t:{c:test:f}:notmine"), 1);
    ASSERT_EQ(redis_int(&f, "ZCARD t:{g}:reminders:due"), 0);
    /* The dedupe marks stay (event ids only: a resent event is still not run again) for the
     * retention (+ 1 %), as the string keys did. */
    ASSERT_GT(redis_int(&f, "ZSCORE t:{c:test:f}:ev 4"), 0);
    ASSERT_GT(redis_int(&f, "ZSCORE t:{c:test:f}:ev 2"), 0);
    ASSERT_LE(redis_int(&f, "PTTL t:{c:test:f}:ev"), 72 * 3600 * 1010LL);
    ASSERT_GT(redis_int(&f, "PTTL t:{c:test:f}:ev"), 71 * 3600 * 1000LL);
    deliver_wait(&f, FB_IN_MESSAGE, "f", "2", "lyon", 0);
    fb_router_stats_t st;
    fb_router_get_stats(f.router, &st);
    ASSERT_EQ(st.duplicates, 1);
    fb_test_run_for(&f.loop, 50);
    ASSERT_EQ(redis_int(&f, "EXISTS t:{c:test:f}:outbox"), 0);
    /* A new conversation starts from scratch. */
    deliver_wait(&f, FB_IN_MESSAGE, "f", "5", "bonjour", 0);
    wait_int(&f.loop, &ta.nsent, before + 3);
    ASSERT_NOT_NULL(strstr(ta.sent[ta.nsent - 1].text, "Dans quelle commune"));
    teardown(&f);
    return 0;
}

/* An avis effect (added by the hook, as the engine would) is counted, its comment kept without
 * any identifier. */
static void avis_hook(void *arg, const char *key, json_t *effects)
{
    (void)arg;
    (void)key;
    json_array_append_new(effects, json_pack("{s:s, s:i, s:s}", "type", "avis", "note", 4,
                                             "commentaire", "Très utile"));
    json_array_append_new(effects, json_pack("{s:s, s:i}", "type", "avis", "note", 9));
    json_array_append_new(effects, json_pack("{s:s}", "type", "inconnu"));
}

TEST_IMPL(router_avis_without_identifiers)
{
    struct fixture f;
    SETUP(&f, NULL, 0);
    fb__router_set_step_hook(f.router, avis_hook, NULL);
    deliver_wait(&f, FB_IN_START, "conv-secret", "1", NULL, 0);
    ASSERT_EQ(redis_int(&f, "HGET t:{g}:stats avis_note_4"), 1);
    ASSERT_EQ(redis_int(&f, "HEXISTS t:{g}:stats avis_note_9"), 0);
    redisReply *rep = redisCommand(f.sync, "LRANGE t:{g}:avis:comments 0 -1");
    ASSERT(rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 1);
    ASSERT_STR_EQ(rep->element[0]->str, "Très utile");
    freeReplyObject(rep);
    teardown(&f);
    return 0;
}

/* SIGHUP-style reloads: a broken file keeps the old version; a good one serves new
 * conversations while a session started before stays on its version. */
static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "wb");
    ASSERT_NOT_NULL(fp);
    ASSERT_EQ(fwrite(text, 1, strlen(text), fp), strlen(text));
    ASSERT_EQ(fclose(fp), 0);
}

static const char dialog_v1[] = "dialogue: essai\n"
                                "debut: q1\n"
                                "etats:\n"
                                "  q1:\n"
                                "    question: \"Première version : votre nom ?\"\n"
                                "    type: texte\n"
                                "    suite: q2\n"
                                "  q2:\n"
                                "    question: \"V1 deuxième question ?\"\n"
                                "    type: texte\n"
                                "    suite: fin\n"
                                "  fin:\n"
                                "    dire: \"Fin de la version 1.\"\n"
                                "    fin: true\n";

static const char dialog_v2[] = "dialogue: essai\n"
                                "debut: q1\n"
                                "etats:\n"
                                "  q1:\n"
                                "    question: \"Deuxième version : votre nom ?\"\n"
                                "    type: texte\n"
                                "    suite: q2\n"
                                "  q2:\n"
                                "    question: \"V2 deuxième question ?\"\n"
                                "    type: texte\n"
                                "    suite: fin\n"
                                "  fin:\n"
                                "    dire: \"Fin de la version 2.\"\n"
                                "    fin: true\n";

TEST_IMPL(router_reload_keeps_old_and_pins)
{
    char dir[] = "/tmp/fb-router-XXXXXX";
    ASSERT_NOT_NULL(mkdtemp(dir));
    char *path = fb_asprintf("%s/essai.yaml", dir);
    write_file(path, dialog_v1);
    struct fixture f;
    SETUP(&f, path, 0);
    deliver_wait(&f, FB_IN_START, "old", "1", NULL, 0);
    wait_int(&f.loop, &ta.nsent, 1);
    ASSERT_NOT_NULL(strstr(ta.sent[0].text, "Première version"));

    write_file(path, "dialogue: essai\ndebut: nulle_part\netats: {}\n");
    fb_buf_t e;
    fb_buf_init(&e, 1u << 16);
    ASSERT_EQ(fb_router_reload(f.router, &e), FB_EINVAL);
    ASSERT_NOT_NULL(strstr(fb_buf_str(&e), "essai.yaml:"));
    fb_buf_reset(&e);
    deliver_wait(&f, FB_IN_START, "during", "1", NULL, 0);
    wait_int(&f.loop, &ta.nsent, 2);
    ASSERT_NOT_NULL(strstr(ta.sent[1].text, "Première version"));

    write_file(path, dialog_v2);
    ASSERT_OK(fb_router_reload(f.router, &e));
    fb_buf_free(&e);
    deliver_wait(&f, FB_IN_START, "new", "1", NULL, 0);
    wait_int(&f.loop, &ta.nsent, 3);
    ASSERT_NOT_NULL(strstr(ta.sent[2].text, "Deuxième version"));
    /* The old conversation stays on version 1. */
    deliver_wait(&f, FB_IN_MESSAGE, "old", "2", "Dupont", 0);
    wait_int(&f.loop, &ta.nsent, 4);
    ASSERT_NOT_NULL(strstr(ta.sent[3].text, "V1 deuxième question"));
    fb_router_stats_t st;
    fb_router_get_stats(f.router, &st);
    ASSERT_EQ(st.reloads, 1);
    ASSERT_EQ(st.reload_failures, 1);
    teardown(&f);
    ASSERT_EQ(unlink(path), 0);
    ASSERT_EQ(rmdir(dir), 0);
    fb_free(path);
    return 0;
}

/* Registration checks: version, mandatory methods, unique names. */
TEST_IMPL(router_adapter_checks)
{
    struct fixture f;
    memset(&f, 0, sizeof(f));
    ASSERT_OK(fb_test_redis_start(&f.srv));
    ASSERT_OK(uv_loop_init(&f.loop));
    char *text = config_text(&f.srv, FB_SOURCE_DIR "/dialogs/exemple.yaml");
    f.cfg = fb_config_parse("t.yaml", text, strlen(text), NULL);
    fb_free(text);
    ASSERT_NOT_NULL(f.cfg);
    f.redis = fb_redis_create(&f.loop, &f.cfg->redis);
    f.store = fb_store_create(f.redis, &f.cfg->store);
    fb_router_deps_t deps = {&f.loop, f.cfg, f.redis, f.store, NULL, NULL, shared_geo()};
    f.router = fb_router_create(&deps, NULL);
    ASSERT_NOT_NULL(f.router);
    fb_adapter_ops_t bad = test_adapter;
    bad.api_version = 99;
    ASSERT_EQ(fb_router_add_adapter(f.router, &bad), FB_EINVAL);
    bad = test_adapter;
    bad.send = NULL;
    ASSERT_EQ(fb_router_add_adapter(f.router, &bad), FB_EINVAL);
    bad = test_adapter;
    bad.name = "Web!";
    ASSERT_EQ(fb_router_add_adapter(f.router, &bad), FB_EINVAL);
    ASSERT_OK(fb_router_add_adapter(f.router, &test_adapter));
    ASSERT_EQ(fb_router_add_adapter(f.router, &test_adapter), FB_EINVAL);
    int stopped = 0, closed = 0;
    fb_router_stop(f.router, on_stopped, &stopped); /* never started: stops at once */
    wait_int(&f.loop, &stopped, 1);
    fb_redis_close(f.redis, on_redis_closed, &closed);
    wait_int(&f.loop, &closed, 1);
    fb_router_destroy(f.router);
    fb_store_destroy(f.store);
    fb_config_free(f.cfg);
    fb_test_loop_close_strict(&f.loop);
    fb_test_redis_destroy(&f.srv);
    return 0;
}

/* A broken dialog at start: no router, the errors say where. */
TEST_IMPL(router_create_broken_dialog)
{
    fb_test_redis_t srv;
    memset(&srv, 0, sizeof(srv));
    snprintf(srv.sock, sizeof(srv.sock), "/tmp/none.sock");
    char dir[] = "/tmp/fb-router-XXXXXX";
    ASSERT_NOT_NULL(mkdtemp(dir));
    char *path = fb_asprintf("%s/casse.yaml", dir);
    write_file(path, "dialogue: x\netats: [\n");
    char *text = config_text(&srv, path);
    fb_config_t *cfg = fb_config_parse("t.yaml", text, strlen(text), NULL);
    ASSERT_NOT_NULL(cfg);
    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    fb_redis_t *redis = fb_redis_create(&loop, &cfg->redis);
    fb_store_t *store = fb_store_create(redis, &cfg->store);
    fb_router_deps_t deps = {&loop, cfg, redis, store, NULL, NULL, NULL};
    fb_buf_t e;
    fb_buf_init(&e, 1u << 16);
    ASSERT_NULL(fb_router_create(&deps, &e));
    ASSERT_NOT_NULL(strstr(fb_buf_str(&e), "casse.yaml:"));
    fb_buf_free(&e);
    fb_redis_close(redis, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    fb_store_destroy(store);
    fb_config_free(cfg);
    fb_free(text);
    fb_test_loop_close_strict(&loop);
    ASSERT_EQ(unlink(path), 0);
    ASSERT_EQ(rmdir(dir), 0);
    fb_free(path);
    return 0;
}

/* ---- the roadmap page ---- */

struct page_result {
    int calls;
    int status;
    char *html;
};

static void on_page_rendered(void *arg, int status, const char *body_html)
{
    struct page_result *res = arg;
    res->calls++;
    res->status = status;
    ASSERT((status == 0) == (body_html != NULL));
    res->html = body_html ? fb_strdup(body_html) : NULL;
}

/* Asks for the page of `token` and waits for the answer; returns its status (the HTML, if any, in
 * res->html: fb_free). */
static int page_wait(struct fixture *f, const char *token, struct page_result *res)
{
    fb_free(res->html);
    *res = (struct page_result){0, 99, NULL};
    int rc = fb_router_roadmap_page(f->router, token, on_page_rendered, res);
    if (rc != 0)
        return rc;
    ASSERT_EQ(res->calls, 0); /* never inside the call */
    wait_int(&f->loop, &res->calls, 1);
    return res->status;
}

/* The sample dialog's session at its roadmap, as the COMMIT stores it (compact JSON, fb_free):
 * made by the engine here, so that no COMMIT runs (the test is meant for a Redis Cluster too). */
static char *roadmap_session(void)
{
    fb_buf_t errors;
    fb_buf_init(&errors, 1u << 16);
    fb_dialog_t *d = fb_dialog_load(FB_SOURCE_DIR "/dialogs/exemple.yaml", shared_geo(), &errors);
    if (!d)
        FB_TEST_FAIL("dialog: %s", fb_buf_str(&errors));
    fb_buf_free(&errors);
    fb_engine_env_t env = {.now = 1796029200, .locale = "fr", .geo = shared_geo()};
    json_t *session = NULL;
    for (size_t i = 0; i <= FB_ARRAY_SIZE(full_path); i++) {
        fb_event_t ev = {.kind = i == 0 ? FB_EVENT_START : FB_EVENT_MESSAGE,
                         .text = i == 0 ? NULL : full_path[i - 1]};
        json_t *ns = NULL, *ef = NULL;
        ASSERT_OK(fb_engine_step(d, session, &ev, &env, &ns, &ef));
        json_decref(session);
        json_decref(ef);
        session = ns;
    }
    char *s = json_dumps(session, JSON_COMPACT);
    ASSERT_NOT_NULL(s);
    char *out = fb_strdup(s);
    free(s); /* jansson's allocation */
    json_decref(session);
    fb_dialog_unref(d);
    return out;
}

/*
 * The roadmap page (fb_router_roadmap_page()) in two calls of one Cluster slot each: the lookup
 * <prefix>{g}:roadmap:<hash> (a GET), then page_src on the conversation's keys, which it declares
 * (docs/internals/REDIS.md, "The audit"). Run against a single-node cluster by `make test`
 * (cluster.*): a script that read the conversation's keys without declaring them was refused
 * there. The keys are written here as the COMMIT writes them; then what the lookup may meet
 * between its two calls: a token replaced (the conversation's `h` no longer its hash), the
 * conversation gone (forgotten or expired) with its lookup left behind, no lookup.
 */
TEST_IMPL(router_roadmap_page_one_slot_per_call)
{
    struct fixture f;
    SETUP(&f, NULL, 0);
    const char *token = "0123456789abcdef0123456789abcdef0123456789abcdef"; /* 48 hex digits */
    unsigned char h[32];
    char hash[65];
    fb_sha256(token, strlen(token), h);
    fb_hex(h, sizeof(h), hash);
    char *session = roadmap_session();
    redisReply *rep = redisCommand(f.sync, "HSET t:{c:test:p1}:session d %s v 1", session);
    ASSERT(rep && rep->type == REDIS_REPLY_INTEGER);
    freeReplyObject(rep);
    fb_free(session);
    ASSERT_EQ(redis_int(&f, "HSET t:{c:test:p1}:roadmap t %s h %s", token, hash), 2);
    rep = redisCommand(f.sync, "SET t:{g}:roadmap:%s test:p1", hash);
    ASSERT(rep && rep->type == REDIS_REPLY_STATUS);
    freeReplyObject(rep);

    struct page_result res = {0, 99, NULL};
    ASSERT_OK(page_wait(&f, token, &res));
    ASSERT_NOT_NULL(strstr(res.html, "Votre feuille de route"));
    ASSERT_NOT_NULL(strstr(res.html, "Signer une convention d&#39;occupation"));
    /* not a token: no Redis round trip */
    ASSERT_EQ(fb_router_roadmap_page(f.router, "nope", on_page_rendered, &res), FB_ENOENT);
    /* an unknown token: no lookup */
    ASSERT_EQ(page_wait(&f, "ffffffffffffffffffffffffffffffffffffffffffffffff", &res), FB_ENOENT);
    /* the lookup still names the conversation, whose token is another now */
    ASSERT_EQ(redis_int(&f, "HSET t:{c:test:p1}:roadmap h %064d", 0), 0);
    ASSERT_EQ(page_wait(&f, token, &res), FB_ENOENT);
    ASSERT_EQ(redis_int(&f, "HSET t:{c:test:p1}:roadmap h %s", hash), 0);
    ASSERT_OK(page_wait(&f, token, &res));
    /* the conversation gone, its lookup left behind */
    ASSERT_EQ(redis_int(&f, "DEL t:{c:test:p1}:session t:{c:test:p1}:roadmap"), 2);
    ASSERT_EQ(page_wait(&f, token, &res), FB_ENOENT);
    fb_free(res.html);
    teardown(&f);
    return 0;
}

static void setup_ops(struct fixture *f, const char *dialog, unsigned delay)
{
    memset(f, 0, sizeof(*f));
    memset(&ta, 0, sizeof(ta));
    signal(SIGPIPE, SIG_IGN); /* as the daemon does: a write to a closed socket is an error */
    ASSERT_OK(fb_test_redis_start(&f->srv));
    ASSERT_OK(uv_loop_init(&f->loop));
    f->geo = shared_geo();
    f->sync = redisConnectUnix(f->srv.sock);
    ASSERT(f->sync && !f->sync->err);
    router_up(f, dialog, delay);
}

/* ---- a feature plugged in from outside the router (core/feature.h) ---- */

static int probe_inbound_calls, probe_steps;

static void probe_commit_ops(void *self, const fb_feature_step_t *st, json_t *ops, size_t *says)
{
    (void)self;
    (void)says;
    probe_steps++;
    if (st->user && !st->forget) /* a forget deletes the keys before lua_post */
        json_object_set_new(ops, "probe", json_string(st->key));
}

static int probe_inbound(void *self, const char *adapter, const fb_inbound_t *ev, fb_inbound_cb cb,
                         void *arg)
{
    (void)self;
    (void)cb;
    (void)arg;
    probe_inbound_calls++;
    ASSERT_STR_EQ(adapter, "test");
    return strcmp(ev->conv, "owned") == 0 ? FB_EEXIST : FB_DECLINED;
}

static const fb_feature_key_t probe_keys[] = {
    {"probe_n", FB_FKEY_CONV, "probe", true, NULL},
    {"probe_all", FB_FKEY_GLOBAL, "probe:all", false, NULL},
};

static const fb_feature_ops_t probe_feature = {
    .name = "probe",
    .keys = probe_keys,
    .nkeys = FB_ARRAY_SIZE(probe_keys),
    .lua_post = "do\n"
                "if O.probe then\n"
                "  redis.call('INCR', K.probe_n)\n"
                "  expire(K.probe_n)\n"
                "  redis.call('SADD', K.probe_all, O.probe .. '|' .. A.member)\n"
                "end\n"
                "end\n",
    .commit_ops = probe_commit_ops,
    .inbound = probe_inbound,
};

/* A feature registered from outside joins the COMMIT with its named keys and fragment, sees
 * inbound events first, and its per-conversation key goes with a forget. Registration refuses
 * a key name already taken and any feature once the router runs. */
TEST_IMPL(router_feature_plugs_into_commit)
{
    struct fixture f;
    extra_feature = &probe_feature;
    probe_inbound_calls = probe_steps = 0;
    SETUP(&f, NULL, 0);
    extra_feature = NULL;
    deliver_wait(&f, FB_IN_START, "p", "1", NULL, 0);
    deliver_wait(&f, FB_IN_MESSAGE, "p", "2", "lyon", 0);
    ASSERT_EQ(probe_steps, 2);
    ASSERT_GE(probe_inbound_calls, 2);
    ASSERT_EQ(redis_int(&f, "GET t:{c:test:p}:probe"), 2);
    ASSERT_GT(redis_int(&f, "PTTL t:{c:test:p}:probe"), 0);
    ASSERT_EQ(redis_int(&f, "SISMEMBER t:{g}:probe:all test:p|test:p"), 1);
    /* an event the feature claims never reaches the engine */
    struct result res = {0};
    ASSERT_EQ(deliver(FB_IN_START, "owned", "x", NULL, &res), FB_EEXIST);
    ASSERT_EQ(res.calls, 0);
    ASSERT_EQ(probe_steps, 2);
    /* forget deletes the feature's per-conversation key with the session */
    int before = ta.nsent;
    deliver_wait(&f, FB_IN_MESSAGE, "p", "3", "oublier mes données", 0);
    wait_int(&f.loop, &ta.nsent, before + 1);
    ASSERT_EQ(redis_int(&f, "EXISTS t:{c:test:p}:probe"), 0);
    ASSERT_EQ(redis_int(&f, "EXISTS t:{c:test:p}:session"), 0);
    /* refusals: after the start, and (checked first) a key name taken by the router */
    static const fb_feature_key_t taken[] = {{"ticket", FB_FKEY_CONV, "t2", false, NULL}};
    static const fb_feature_ops_t dup = {.name = "dup", .keys = taken, .nkeys = 1};
    ASSERT_EQ(fb_router_add_feature(f.router, &dup, NULL), FB_EINVAL);
    ASSERT_EQ(fb_router_add_feature(f.router, &probe_feature, NULL), FB_EINVAL);
    teardown(&f);
    return 0;
}

/* Stopping with events queued: each callback runs once (handled, or FB_ECANCELED for those that
 * had not started), deliver() refuses new ones, and the stop completes. */
TEST_IMPL(router_stop_with_events_queued)
{
    struct fixture f;
    SETUP(&f, NULL, 0);
    struct result r[7];
    memset(r, 0, sizeof(r));
    char ids[6][8];
    for (int i = 0; i < 6; i++) {
        snprintf(ids[i], sizeof(ids[i]), "%d", i);
        ASSERT_OK(deliver(i == 0 ? FB_IN_START : FB_IN_MESSAGE, "s", ids[i], "aide", &r[i]));
    }
    ASSERT_OK(deliver(FB_IN_START, "s2", "1", NULL, &r[6]));
    int stopped = 0;
    fb_router_stop(f.router, on_stopped, &stopped);
    struct result late = {0, 0};
    ASSERT_EQ(deliver(FB_IN_START, "s3", "1", NULL, &late), FB_ECANCELED);
    wait_int(&f.loop, &stopped, 1);
    int cancelled = 0;
    for (int i = 0; i < 7; i++) {
        ASSERT_EQ(r[i].calls, 1);
        ASSERT(r[i].status == 0 || r[i].status == FB_ECANCELED);
        cancelled += r[i].status == FB_ECANCELED;
    }
    ASSERT_GE(cancelled, 1);
    ASSERT_EQ(late.calls, 0);
    after_stop(&f);
    return 0;
}

static bool router_idle(void *arg)
{
    return fb_router_pending(arg) == 0;
}

/* The adapter finishes its stop inside the callback of a delivery the stop cancelled (as the
 * Matrix adapter does when its last batch ends): the router must not free the conversation it is
 * still finishing (ASan reported a use after free here). */
TEST_IMPL(router_adapter_stops_inside_a_delivery_callback)
{
    struct fixture f;
    SETUP(&f, NULL, 0);
    /* A first conversation to its end (greeting sent): no Redis operation left in flight. */
    struct result first = {0, 0};
    ASSERT_OK(deliver(FB_IN_START, "s", "1", NULL, &first));
    wait_int(&f.loop, &ta.nsent, 1);
    wait_int(&f.loop, &first.calls, 1);
    ASSERT_EQ(first.status, 0);
    ASSERT(fb_test_wait_cond(&f.loop, router_idle, f.router, 60000)); /* the outbox finished */
    ta.defer_stop = true;
    struct result r = {0, 0};
    ASSERT_OK(deliver(FB_IN_START, "s2", "1", NULL, &r));
    int stopped = 0;
    fb_router_stop(f.router, on_stopped, &stopped);
    wait_int(&f.loop, &stopped, 1);
    ASSERT_EQ(r.calls, 1);
    ASSERT_EQ(r.status, FB_ECANCELED);
    ASSERT_NULL(ta.stop_done);
    after_stop(&f);
    return 0;
}
