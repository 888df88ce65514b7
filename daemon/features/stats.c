/* SPDX-License-Identifier: MIT */
/*
 * stats.c - the public impact figures: the commit's counter operations, the read script, the
 * /stats.json document (with suppression of small counts), the /stats page and the /metrics
 * lines. See docs/internals/STATS.md.
 */
#include "features/stats.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "common/calendar.h"
#include "common/dsfr.h"
#include "core/keys.h"
#include "engine/effects.h"
#include "engine/engine.h"
#include "engine/geo.h"
#include "engine/template.h"
#include "frichebot/alloc.h"
#include "frichebot/err.h"
#include "frichebot/log.h"

#define MS_PER_DAY 86400000LL

/* ---- months ------------------------------------------------------------------------------- */

/* The calendar month of `ms` in Europe/Paris civil time (the EU summer-time rule of
 * fb_paris_offset(): no tz database). */
static void ym_of(int64_t ms, int *y, int *m)
{
    int64_t s = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
    time_t t = (time_t)(s + fb_paris_offset(s));
    struct tm tm;
    gmtime_r(&t, &tm);
    *y = tm.tm_year + 1900;
    *m = tm.tm_mon + 1;
}

void fb_stats_month(int64_t ms, char out[8])
{
    fb_stats_month_back(ms, 0, out);
}

void fb_stats_month_back(int64_t ms, int back, char out[8])
{
    int y, m;
    ym_of(ms, &y, &m);
    int idx = y * 12 + (m - 1) - back;
    unsigned yy = (unsigned)(idx / 12) % 10000u, mm = (unsigned)(idx % 12) % 12u + 1u;
    snprintf(out, 8, "%04u-%02u", yy, mm);
}

/* ---- the commit's operations ------------------------------------------------------------- */

void fb_stats_commit_ops(json_t *ops, const fb_geo_t *geo, const json_t *old_session,
                         const json_t *new_session, const json_t *effects, bool user_event,
                         int64_t now_ms)
{
    json_t *st = json_object();
    char mo[8];
    fb_stats_month(now_ms, mo);
    json_object_set_new(st, "mo", json_string(mo));
    const char *insee = user_event ? fb_engine_session_insee(new_session) : NULL;
    if (insee) {
        const fb_commune_t *c = geo ? fb_geo_by_insee(geo, insee) : NULL;
        json_object_set_new(
            st, "t",
            json_pack("[s,s,s]", insee, c && c->epci ? c->epci : "", c && c->dep ? c->dep : ""));
    }
    json_int_t n = json_integer_value(json_object_get(old_session, "n"));
    json_object_set_new(st, "ra", json_integer(user_event && n > 0 ? 1 : 0));
    json_t *sd = json_array();
    bool ends = false;
    size_t i;
    const json_t *e;
    json_array_foreach(effects, i, e)
    {
        if (fb_effect_type(e) == FB_EFFECT_END)
            ends = true;
    }
    json_array_foreach(effects, i, e)
    {
        const char *status = json_string_value(json_object_get(e, "status"));
        const char *item = json_string_value(json_object_get(e, "item"));
        if (!ends && fb_effect_type(e) == FB_EFFECT_STEP && status &&
            strcmp(status, "faite") == 0 && item)
            json_array_append_new(sd, json_string(item));
    }
    json_object_set_new(st, "sd", sd);
    json_object_set_new(ops, "st", st);
}

/* The key of this month's hash, "<prefix>{g}:stats:month:YYYY-MM" (Paris month of st->now). */
static char *month_key(const fb_feature_step_t *st)
{
    char month[8];
    fb_stats_month(st->now, month);
    return fb_asprintf("%s" FB_KEY_GLOBAL_TAG FB_KEY_STATS_NS FB_KEY_STATS_MONTH "%s", st->prefix,
                       month);
}

static void feature_commit_ops(void *self, const fb_feature_step_t *st, json_t *ops, size_t *says)
{
    (void)self;
    (void)says;
    /* user events only: not a reminder, a hand-back or a forget (STATS.md) */
    fb_stats_commit_ops(ops, st->geo, st->old_session, st->session, st->effects,
                        st->user && !st->forget_event, st->now);
}

static const fb_feature_key_t feature_keys[] = {
    {"act_c", FB_FKEY_GLOBAL, FB_KEY_STATS_NS FB_KEY_STATS_ACT_COMMUNES, false, NULL},
    {"act_e", FB_FKEY_GLOBAL, FB_KEY_STATS_NS FB_KEY_STATS_ACT_EPCI, false, NULL},
    {"act_d", FB_FKEY_GLOBAL, FB_KEY_STATS_NS FB_KEY_STATS_ACT_DEPS, false, NULL},
    {"month", FB_FKEY_STEP, NULL, false, month_key},
    {"months", FB_FKEY_CONV, FB_KEY_MONTHS, true, NULL},
    {"steps", FB_FKEY_GLOBAL, FB_KEY_STATS_NS FB_KEY_STATS_STEPS, false, NULL},
};

const fb_feature_ops_t fb_stats_feature = {
    .name = "stats",
    .keys = feature_keys,
    .nkeys = sizeof(feature_keys) / sizeof(feature_keys[0]),
    .lua_post = FB_STATS_COMMIT_LUA,
    .commit_ops = feature_commit_ops,
};

/* ---- the read script ---------------------------------------------------------------------- */

/*
 * KEYS: 1 stats hash, 2..4 territories' activity (communes, EPCI, départements), 5 steps done,
 * 6 advisor response times, 7.. month hashes (oldest first). ARGV: 1 window start (ms).
 * Returns {stats, nc, ne, nd, steps, times, month...} (hashes flat).
 */
static const char read_src[] =
    "#!lua flags=no-writes\n"
    "local from = ARGV[1]\n"
    "local r = {redis.call('HGETALL', KEYS[1]),\n"
    "  redis.call('ZCOUNT', KEYS[2], from, '+inf'),\n"
    "  redis.call('ZCOUNT', KEYS[3], from, '+inf'),\n"
    "  redis.call('ZCOUNT', KEYS[4], from, '+inf'),\n"
    "  redis.call('HGETALL', KEYS[5]),\n"
    "  redis.call('LRANGE', KEYS[6], 0, "
    "9999"
    ")}\n" /* FB_STATS_RESPONSE_SAMPLES - 1 */
    "for i = 7, #KEYS do table.insert(r, redis.call('HGETALL', KEYS[i])) end\n"
    "return r\n";

#define N_READ_KEYS (6 + FB_STATS_MONTHS)

struct waiter {
    fb_stats_cb cb;
    void *arg;
    struct waiter *next;
};

struct fb_stats_s {
    fb_store_t *store;
    fb_stats_opts_t opts;
    fb_store_script_t s_read;
    char *keys[N_READ_KEYS];
    char *month_prefix;
    fb_stats_title_fn title; /* step titles (fb_stats_set_titles()), may be NULL */
    void *title_arg;
    json_t *doc;     /* the cached document */
    int64_t doc_at;  /* when it was read (ms) */
    bool reading;    /* a read is in flight; new callers wait for it */
    int64_t read_at; /* the now_ms of that read */
    struct waiter *waiters;
    size_t pending;
};

fb_stats_t *fb_stats_create(fb_store_t *store, const fb_stats_opts_t *opts)
{
    fb_stats_t *s = fb_calloc(1, sizeof(*s));
    s->store = store;
    s->opts = *opts;
    if (s->opts.min_count == 0)
        s->opts.min_count = 1;
    fb_store_script_init(&s->s_read, read_src);
    const char *prefix = fb_store_prefix(store);
    s->keys[0] = fb_key_global(prefix, FB_KEY_STATS);
    s->keys[1] = fb_key_stats(prefix, FB_KEY_STATS_ACT_COMMUNES);
    s->keys[2] = fb_key_stats(prefix, FB_KEY_STATS_ACT_EPCI);
    s->keys[3] = fb_key_stats(prefix, FB_KEY_STATS_ACT_DEPS);
    s->keys[4] = fb_key_stats(prefix, FB_KEY_STATS_STEPS);
    s->keys[5] = fb_key_stats(prefix, FB_KEY_STATS_RESPONSE);
    s->month_prefix = fb_key_stats(prefix, FB_KEY_STATS_MONTH);
    return s;
}

size_t fb_stats_pending(const fb_stats_t *s)
{
    return s->pending;
}

void fb_stats_destroy(fb_stats_t *s)
{
    if (!s)
        return;
    if (s->pending)
        FB_ERR(CORE, "stats destroyed with %zu reads pending", s->pending);
    for (size_t i = 0; i < N_READ_KEYS; i++)
        fb_free(s->keys[i]);
    fb_free(s->month_prefix);
    json_decref(s->doc);
    struct waiter *w = s->waiters;
    while (w) {
        struct waiter *n = w->next;
        fb_free(w);
        w = n;
    }
    fb_free(s);
}

/* A hiredis reply as JSON: arrays, integers, strings (nil: null). */
static json_t *reply_json(const redisReply *r)
{
    switch (r->type) {
    case REDIS_REPLY_INTEGER:
        return json_integer((json_int_t)r->integer);
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        return json_stringn(r->str, r->len);
    case REDIS_REPLY_ARRAY: {
        json_t *a = json_array();
        for (size_t i = 0; i < r->elements; i++)
            json_array_append_new(a, reply_json(r->element[i]));
        return a;
    }
    default:
        return json_null();
    }
}

/* ---- the document -------------------------------------------------------------------------- */

/* The integer value of field `f` of flat hash `h` ([k, v, k, v...]), 0 when absent. */
static long long hget(const json_t *h, const char *f)
{
    for (size_t i = 0; i + 1 < json_array_size(h); i += 2) {
        const char *k = json_string_value(json_array_get(h, i));
        const char *v = json_string_value(json_array_get(h, i + 1));
        if (k && v && strcmp(k, f) == 0)
            return strtoll(v, NULL, 10);
    }
    return 0;
}

struct doc_ctx {
    unsigned min;
    json_t *suppressed;
};

/* A count, suppressed (null, its path listed) when 0 < n < threshold. */
static json_t *count(struct doc_ctx *c, long long n, const char *path)
{
    if (n < 0)
        n = 0;
    if (n > 0 && (unsigned long long)n < c->min) {
        json_array_append_new(c->suppressed, json_string(path));
        return json_null();
    }
    return json_integer((json_int_t)n);
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

static long long tv(const json_t *v)
{
    const char *t = json_string_value(v);
    return t ? strtoll(t, NULL, 10) : 0;
}

static void iso_time(int64_t ms, char out[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

json_t *fb__stats_document(const json_t *raw, int64_t now_ms, unsigned min_count)
{
    struct doc_ctx c = {min_count ? min_count : 1, json_array()};
    const json_t *h = json_array_get(raw, 0);
    char ts[32], since[32];
    iso_time(now_ms, ts);
    iso_time(now_ms - FB_STATS_ACTIVE_DAYS * MS_PER_DAY, since);
    json_t *months = json_array();
    for (int i = FB_STATS_MONTHS - 1; i >= 0; i--) {
        char mo[8];
        fb_stats_month_back(now_ms, i, mo);
        json_array_append_new(months, json_string(mo));
    }
    json_t *doc = json_object();
    json_object_set_new(doc, "generated_at", json_string(ts));
    json_object_set_new(doc, "threshold", json_integer(c.min));
    json_object_set_new(doc, "period",
                        json_pack("{s:i, s:s, s:O}", "territories_days", FB_STATS_ACTIVE_DAYS,
                                  "territories_since", since, "months", months));
    json_object_set_new(
        doc, "territories",
        json_pack(
            "{s:o, s:o, s:o}", "communes",
            count(&c, json_integer_value(json_array_get(raw, 1)), "territories.communes"), "epci",
            count(&c, json_integer_value(json_array_get(raw, 2)), "territories.epci"),
            "departements",
            count(&c, json_integer_value(json_array_get(raw, 3)), "territories.departements")));
    json_object_set_new(doc, "conversations",
                        count(&c, hget(h, "conversation_started"), "conversations"));
    json_object_set_new(doc, "sites_studied",
                        count(&c, hget(h, "site_completed"), "sites_studied"));
    json_object_set_new(doc, "projects_recurrent",
                        count(&c, hget(h, "projects_recurrent"), "projects_recurrent"));

    /* steps done, by step id (sorted by id) */
    const json_t *steps = json_array_get(raw, 4);
    json_t *by = json_array();
    size_t nsteps = json_array_size(steps) / 2;
    const char **ids = fb_calloc(nsteps + 1, sizeof(*ids));
    for (size_t i = 0; i < nsteps; i++)
        ids[i] = json_string_value(json_array_get(steps, 2 * i));
    for (size_t i = 1; i < nsteps; i++) /* insertion sort: a few dozen steps */
        for (size_t k = i; k > 0 && ids[k - 1] && ids[k] && strcmp(ids[k - 1], ids[k]) > 0; k--) {
            const char *t = ids[k];
            ids[k] = ids[k - 1];
            ids[k - 1] = t;
        }
    for (size_t i = 0; i < nsteps; i++) {
        if (!ids[i])
            continue;
        char *path = fb_asprintf("steps_done.by_step[%zu].count", json_array_size(by));
        json_array_append_new(by, json_pack("{s:s, s:o}", "step", ids[i], "count",
                                            count(&c, hget(steps, ids[i]), path)));
        fb_free(path);
    }
    fb_free(ids);
    json_object_set_new(doc, "steps_done",
                        json_pack("{s:o, s:o}", "total",
                                  count(&c, hget(h, "steps_done"), "steps_done.total"), "by_step",
                                  by));
    json_object_set_new(doc, "escalations", count(&c, hget(h, "escalated"), "escalations"));

    /* advisor response times: the median of the samples (seconds), when there are enough */
    const json_t *times = json_array_get(raw, 5);
    size_t nt = json_array_size(times);
    json_t *median = json_null();
    if (nt > 0 && nt >= c.min) {
        long long *v = fb_calloc(nt, sizeof(*v));
        for (size_t i = 0; i < nt; i++)
            v[i] = tv(json_array_get(times, i));
        qsort(v, nt, sizeof(*v), cmp_ll);
        long long med = nt % 2 ? v[nt / 2] : (v[nt / 2 - 1] + v[nt / 2]) / 2;
        median = json_integer((json_int_t)(med / 1000));
        fb_free(v);
    }
    json_object_set_new(doc, "advisor_response",
                        json_pack("{s:o, s:o}", "median_seconds", median, "samples",
                                  count(&c, (long long)nt, "advisor_response.samples")));
    json_object_set_new(doc, "reminders",
                        json_pack("{s:o, s:o}", "sent",
                                  count(&c, hget(h, "reminder_sent"), "reminders.sent"), "answered",
                                  count(&c, hget(h, "reminder_answered"), "reminders.answered")));
    /* questions to the knowledge base (issue #20): counters only, never a question's text */
    json_object_set_new(
        doc, "questions",
        json_pack("{s:o, s:o, s:o, s:o}", "answered",
                  count(&c, hget(h, "kb_answered"), "questions.answered"), "unanswered",
                  count(&c, hget(h, "kb_unanswered"), "questions.unanswered"), "helpful",
                  count(&c, hget(h, "kb_helpful"), "questions.helpful"), "not_helpful",
                  count(&c, hget(h, "kb_not_helpful"), "questions.not_helpful")));

    /* avis */
    long long total = 0;
    json_t *dist = json_object();
    for (int n = 1; n <= 5; n++) {
        char f[16], path[32], key[4];
        snprintf(f, sizeof(f), "avis_note_%d", n);
        snprintf(path, sizeof(path), "avis.distribution.%d", n);
        snprintf(key, sizeof(key), "%d", n);
        long long k = hget(h, f);
        total += k;
        json_object_set_new(dist, key, count(&c, k, path));
    }
    json_object_set_new(
        doc, "avis",
        json_pack("{s:o, s:o}", "count", count(&c, total, "avis.count"), "distribution", dist));

    /* monthly series */
    static const struct {
        const char *name, *field;
    } series[] = {{"conversations", "conversation_started"}, {"projects_active", "projects_active"},
                  {"sites_studied", "site_completed"},       {"steps_done", "steps_done"},
                  {"reminders_sent", "reminder_sent"},       {"avis", "avis"}};
    json_t *monthly = json_object();
    json_object_set(monthly, "months", months);
    for (size_t si = 0; si < sizeof(series) / sizeof(series[0]); si++) {
        json_t *a = json_array();
        for (int i = 0; i < FB_STATS_MONTHS; i++) {
            char path[64];
            snprintf(path, sizeof(path), "monthly.%s[%d]", series[si].name, i);
            json_array_append_new(
                a, count(&c, hget(json_array_get(raw, 6 + (size_t)i), series[si].field), path));
        }
        json_object_set_new(monthly, series[si].name, a);
    }
    json_object_set_new(doc, "monthly", monthly);
    json_object_set_new(doc, "suppressed", c.suppressed);
    json_decref(months);
    return doc;
}

/* ---- reading ----------------------------------------------------------------------------------
 */

static void on_read(int status, const redisReply *rep, void *arg)
{
    fb_stats_t *s = arg;
    s->pending--;
    s->reading = false;
    json_t *doc = NULL;
    if (status == 0 && fb_redis_reply_array(rep, N_READ_KEYS, N_READ_KEYS, NULL)) {
        json_t *raw = reply_json(rep);
        doc = fb__stats_document(raw, s->read_at, s->opts.min_count);
        fb_stats_add_titles(doc, s->title, s->title_arg);
        json_decref(raw);
        json_decref(s->doc);
        s->doc = doc;
        s->doc_at = s->read_at;
    } else if (status == 0) {
        status = FB_EPROTO;
    }
    if (status)
        FB_WARN(CORE, "stats: cannot read the figures: %s", fb_strerror(status));
    struct waiter *w = s->waiters;
    s->waiters = NULL;
    while (w) {
        struct waiter *n = w->next;
        w->cb(status, status ? NULL : doc, w->arg);
        fb_free(w);
        w = n;
    }
}

void fb_stats_set_titles(fb_stats_t *s, fb_stats_title_fn fn, void *arg)
{
    s->title = fn;
    s->title_arg = arg;
}

void fb_stats_invalidate(fb_stats_t *s)
{
    if (!s)
        return;
    json_decref(s->doc);
    s->doc = NULL;
}

void fb_stats_add_titles(json_t *doc, fb_stats_title_fn fn, void *arg)
{
    json_t *by = json_object_get(json_object_get(doc, "steps_done"), "by_step");
    size_t i;
    json_t *e;
    json_array_foreach(by, i, e)
    {
        const char *step = json_string_value(json_object_get(e, "step"));
        if (!step)
            continue;
        const char *title = fn ? fn(arg, step) : NULL;
        /* rebuilt so that `title` follows `step` in the output */
        json_array_set_new(by, i,
                           json_pack("{s:s, s:s, s:O}", "step", step, "title",
                                     title && title[0] ? title : step, "count",
                                     json_object_get(e, "count")));
    }
}

int fb_stats_get(fb_stats_t *s, int64_t now_ms, fb_stats_cb cb, void *arg)
{
    if (s->doc && now_ms >= s->doc_at &&
        now_ms - s->doc_at < (int64_t)s->opts.cache_seconds * 1000) {
        cb(0, s->doc, arg);
        return 0;
    }
    struct waiter *w = fb_calloc(1, sizeof(*w));
    w->cb = cb;
    w->arg = arg;
    if (s->reading) {
        w->next = s->waiters;
        s->waiters = w;
        return 0;
    }
    char *months[FB_STATS_MONTHS];
    const char *args[N_READ_KEYS + 1];
    for (size_t i = 0; i < 6; i++)
        args[i] = s->keys[i];
    for (int i = 0; i < FB_STATS_MONTHS; i++) {
        char mo[8];
        fb_stats_month_back(now_ms, FB_STATS_MONTHS - 1 - i, mo);
        months[i] = fb_asprintf("%s%s", s->month_prefix, mo);
        args[6 + i] = months[i];
    }
    char from[24];
    snprintf(from, sizeof(from), "%lld", (long long)(now_ms - FB_STATS_ACTIVE_DAYS * MS_PER_DAY));
    args[N_READ_KEYS] = from;
    s->read_at = now_ms;
    int rc =
        fb_store_eval(s->store, &s->s_read, FB_REDIS_RETRY, N_READ_KEYS, 1, args, NULL, on_read, s);
    for (int i = 0; i < FB_STATS_MONTHS; i++)
        fb_free(months[i]);
    if (rc) {
        fb_free(w);
        return rc;
    }
    s->reading = true;
    s->pending++;
    w->next = s->waiters;
    s->waiters = w;
    return 0;
}

/* ---- the page ---------------------------------------------------------------------------------
 */

static const char *const month_names[12] = {"janv.", "févr.", "mars",  "avr.", "mai",  "juin",
                                            "juil.", "août",  "sept.", "oct.", "nov.", "déc."};
static const char *const month_full[12] = {"janvier",   "février", "mars",     "avril",
                                           "mai",       "juin",    "juillet",  "août",
                                           "septembre", "octobre", "novembre", "décembre"};

static int esc(fb_buf_t *b, const char *s)
{
    return fb_template_html_escape(s, strlen(s), b);
}

/* The text of a count: the number, "< N" when suppressed (null). */
static void count_text(const json_t *v, unsigned min, char out[32])
{
    if (json_is_integer(v))
        snprintf(out, 32, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else
        snprintf(out, 32, "< %u", min);
}

/* "2026-03" -> "mars 2026" (full), or the chart's two lines: "mars" (short) and "2026" (`year`,
 * may be NULL). */
static void month_label(const char *ym, bool full, char out[32], char *year)
{
    int y = 0, m = 0;
    if (ym && strlen(ym) == 7 && ym[4] == '-') {
        y = (int)strtol(ym, NULL, 10);
        m = (int)strtol(ym + 5, NULL, 10);
    }
    if (year)
        year[0] = '\0';
    if (m < 1 || m > 12) {
        snprintf(out, 32, "%s", ym ? ym : "");
        return;
    }
    if (full)
        snprintf(out, 32, "%s %d", month_full[m - 1], y);
    else
        snprintf(out, 32, "%s", month_names[m - 1]);
    if (year)
        snprintf(year, 8, "%d", y);
}

/* One key figure: value (data-figure = its JSON path) and label. */
static int tile(fb_buf_t *b, const json_t *v, unsigned min, const char *path, const char *label)
{
    char t[32];
    count_text(v, min, t);
    int rc =
        fb_buf_printf(b,
                      "<div class=\"fr-col-12 fr-col-sm-6 fr-col-md-4\"><div class=\"fb-stat\">"
                      "<p class=\"fb-stat__value\" data-figure=\"%s\">",
                      path);
    rc = rc ? rc : esc(b, t);
    rc = rc ? rc : fb_buf_printf(b, "</p><p class=\"fb-stat__label\">%s</p></div></div>\n", label);
    return rc;
}

#define CH_W   640
#define CH_H   272
#define CH_TOP 24
#define CH_BOT 52
#define CH_L   8
/* More bars than this: on a narrow screen every other label is hidden (stats.css), keeping the
 * last one (the current month), so that the labels can be large enough to read and still not
 * run together (issue #16: at 390 px, twelve « janv. 26 » overlapped at 8 px). */
#define CH_ALL_LABELS 6

/*
 * A bar chart (SVG, server-rendered) of `values` (counts or null) labelled `labels`, followed by
 * the same data as a table. `path` is the JSON path of the array ("monthly.avis"). `sublabels`
 * (NULL: none) are a second line under the labels (the year under the month): two short lines
 * fit a bar's width where « janv. 2026 » does not.
 */
static int bar_chart(fb_buf_t *b, const char *id, const char *title, const char *desc,
                     const char *const *labels, const char *const *sublabels,
                     const char *const *full_labels, const json_t *const *values, size_t n,
                     const char *const *paths, unsigned min, const char *col_label)
{
    long long max = 0;
    for (size_t i = 0; i < n; i++)
        if (json_is_integer(values[i]) && json_integer_value(values[i]) > max)
            max = json_integer_value(values[i]);
    int rc = fb_buf_printf(b, "<figure class=\"fb-chart\" aria-labelledby=\"%s-t\">\n", id);
    rc = rc ? rc : fb_buf_printf(b, "<h3 class=\"fr-h6\" id=\"%s-t\">%s</h3>\n", id, title);
    rc = rc ? rc
            : fb_buf_printf(b,
                            "<svg class=\"fb-chart__svg\" viewBox=\"0 0 %d %d\" role=\"img\" "
                            "aria-labelledby=\"%s-st %s-sd\" focusable=\"false\">"
                            "<title id=\"%s-st\">%s</title><desc id=\"%s-sd\">",
                            CH_W, CH_H, id, id, id, title, id);
    /* the text alternative: every value */
    for (size_t i = 0; !rc && i < n; i++) {
        char t[32];
        count_text(values[i], min, t);
        rc = fb_buf_printf(b, "%s%s : ", i ? " ; " : "", full_labels[i]);
        rc = rc ? rc : esc(b, t);
    }
    rc = rc ? rc : fb_buf_printf(b, ". %s</desc>\n", desc);
    int base = CH_H - CH_BOT;
    rc = rc ? rc
            : fb_buf_printf(
                  b, "<line class=\"fb-chart__axis\" x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>\n",
                  CH_L, base, CH_W - CH_L, base);
    double slot = (double)(CH_W - 2 * CH_L) / (double)n;
    for (size_t i = 0; !rc && i < n; i++) {
        double x = CH_L + slot * (double)i;
        double bw = slot * 0.6;
        char t[32];
        count_text(values[i], min, t);
        double hgt = 0;
        if (json_is_integer(values[i]) && max > 0)
            hgt = (double)json_integer_value(values[i]) * (double)(base - CH_TOP) / (double)max;
        if (hgt > 0)
            rc = fb_buf_printf(b,
                               "<rect class=\"fb-chart__bar\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
                               "height=\"%.1f\"/>",
                               x + (slot - bw) / 2, base - hgt, bw, hgt);
        rc = rc ? rc
                : fb_buf_printf(b,
                                "<text class=\"fb-chart__value\" x=\"%.1f\" y=\"%.1f\" "
                                "text-anchor=\"middle\">",
                                x + slot / 2, base - hgt - 6);
        rc = rc ? rc : esc(b, t);
        bool alt = n > CH_ALL_LABELS && (n - 1 - i) % 2 == 1;
        rc = rc ? rc
                : fb_buf_printf(b,
                                "</text><text class=\"fb-chart__label%s\" x=\"%.1f\" y=\"%d\" "
                                "text-anchor=\"middle\">%s",
                                alt ? " fb-chart__label--alt" : "", x + slot / 2, base + 18,
                                labels[i]);
        if (!rc && sublabels && sublabels[i][0])
            rc = fb_buf_printf(b, "<tspan x=\"%.1f\" dy=\"1.2em\">%s</tspan>", x + slot / 2,
                               sublabels[i]);
        rc = rc ? rc : fb_buf_puts(b, "</text>\n");
    }
    rc = rc ? rc : fb_buf_puts(b, "</svg>\n");
    /* the table */
    rc = rc ? rc
            : fb_buf_printf(b,
                            "<details class=\"fb-chart__data\"><summary>Voir les chiffres "
                            "(tableau)</summary>\n"
                            "<div class=\"fr-table fb-chart__table\"><table><caption>%s (tableau)"
                            "</caption><thead><tr><th scope=\"col\">%s</th><th scope=\"col\">"
                            "Nombre</th></tr></thead><tbody>\n",
                            title, col_label);
    for (size_t i = 0; !rc && i < n; i++) {
        char t[32];
        count_text(values[i], min, t);
        rc = fb_buf_printf(b, "<tr><th scope=\"row\">%s</th><td data-figure=\"%s\">",
                           full_labels[i], paths[i]);
        rc = rc ? rc : esc(b, t);
        rc = rc ? rc : fb_buf_puts(b, "</td></tr>\n");
    }
    rc = rc ? rc : fb_buf_puts(b, "</tbody></table></div></details>\n</figure>\n");
    return rc;
}

static const char page_head[] = FB_DSFR_DOC_START
    "<title>Statistiques d'impact - Assistant friches</title>\n"
    "<meta name=\"description\" content=\"Les indicateurs d'impact publics de "
    "l'assistant friches : territoires engagés, sites étudiés, étapes franchies, "
    "avis.\">\n" FB_DSFR_ASSETS
    "<link rel=\"stylesheet\" href=\"/static/stats.css\">\n" FB_DSFR_BODY_START
    "<main role=\"main\" id=\"contenu\" tabindex=\"-1\" class=\"fr-container fb-stats\">\n"
    "<h1>Statistiques d'impact</h1>\n";

static const char page_foot[] =
    FB_DSFR_FOOT_START "Ces chiffres sont calculés à partir de compteurs anonymes : aucune "
                       "conversation n'est relue pour les produire." FB_DSFR_DOC_END;

/* The page's introduction: the success criterion, the date, the suppression sentence. */
static int html_intro(fb_buf_t *b, const json_t *doc, unsigned min)
{
    char gen[32] = "";
    snprintf(gen, sizeof(gen), "%.10s", json_string_value(json_object_get(doc, "generated_at")));
    /* The suppression sentence; none when every count is published (min_count 1). */
    char hidden[200] = "";
    if (min > 2)
        snprintf(hidden, sizeof(hidden),
                 " Pour qu'aucun chiffre ne permette de reconnaître une personne, les nombres "
                 "compris entre 1 et %u sont remplacés par « &lt; %u ».",
                 min - 1, min);
    else if (min == 2)
        snprintf(hidden, sizeof(hidden),
                 " Pour qu'aucun chiffre ne permette de reconnaître une personne, le nombre 1 est "
                 "remplacé par « &lt; 2 ».");
    int rc = fb_buf_puts(b, page_head);
    return rc ? rc
              : fb_buf_printf(
                    b,
                    "<p class=\"fr-text--lead\">Le critère de succès de l'assistant : des "
                    "territoires engagés dans une démarche active, qui étudient des sites avec "
                    "l'outil, y reviennent et franchissent des étapes.</p>\n"
                    "<p>Chiffres réels au <span data-figure=\"generated_at\">%s</span> (jour UTC), "
                    "calculés à partir de compteurs tenus au fil des conversations.%s Les mêmes "
                    "données sont disponibles au format JSON : <a href=\"/stats.json\">/stats.json"
                    "</a>.</p>\n",
                    gen, hidden);
}

/* The tile of the median advisor response time. */
static int html_advisor_tile(fb_buf_t *b, const json_t *adv)
{
    const json_t *med = json_object_get(adv, "median_seconds");
    const json_t *ns = json_object_get(adv, "samples");
    int rc = fb_buf_puts(b, "<div class=\"fr-col-12 fr-col-sm-6 fr-col-md-4\"><div "
                            "class=\"fb-stat\"><p class=\"fb-stat__value\" "
                            "data-figure=\"advisor_response.median_seconds\">");
    if (!rc && json_is_integer(med)) {
        long long s = json_integer_value(med);
        if (s >= 3600)
            rc = fb_buf_printf(b, "%lld h %02lld min", s / 3600, (s % 3600) / 60);
        else
            rc = fb_buf_printf(b, "%lld min", (s + 59) / 60);
    } else if (!rc) {
        rc = fb_buf_puts(b, json_is_integer(ns) && json_integer_value(ns) == 0
                                ? "pas encore de données"
                                : "trop peu de données");
    }
    return rc ? rc
              : fb_buf_puts(b, "</p><p class=\"fb-stat__label\">délai médian de réponse d'un "
                               "conseiller</p></div></div>\n");
}

/* "Indicateurs clés": one tile per key figure. */
static int html_key_figures(fb_buf_t *b, const json_t *doc, unsigned min)
{
    const json_t *terr = json_object_get(doc, "territories");
    const json_t *steps = json_object_get(doc, "steps_done");
    const json_t *rem = json_object_get(doc, "reminders");
    int days = (int)json_integer_value(
        json_object_get(json_object_get(doc, "period"), "territories_days"));
    int rc = fb_buf_puts(
        b, "<h2>Indicateurs clés</h2>\n<div class=\"fr-grid-row fr-grid-row--gutters\">\n");
    char lab[160];
    snprintf(lab, sizeof(lab), "communes avec un projet actif ces %d derniers jours", days);
    rc = rc ? rc : tile(b, json_object_get(terr, "communes"), min, "territories.communes", lab);
    snprintf(lab, sizeof(lab), "intercommunalités avec un projet actif ces %d derniers jours",
             days);
    rc = rc ? rc : tile(b, json_object_get(terr, "epci"), min, "territories.epci", lab);
    snprintf(lab, sizeof(lab), "départements avec un projet actif ces %d derniers jours", days);
    rc = rc ? rc
            : tile(b, json_object_get(terr, "departements"), min, "territories.departements", lab);
    rc = rc ? rc
            : tile(b, json_object_get(doc, "sites_studied"), min, "sites_studied",
                   "sites étudiés (questionnaire complet)");
    rc = rc ? rc
            : tile(b, json_object_get(doc, "projects_recurrent"), min, "projects_recurrent",
                   "projets actifs au moins deux mois différents");
    rc = rc ? rc
            : tile(b, json_object_get(steps, "total"), min, "steps_done.total",
                   "étapes franchies (passées à « faite »)");
    rc = rc ? rc
            : tile(b, json_object_get(doc, "conversations"), min, "conversations",
                   "conversations commencées");
    rc =
        rc ? rc : tile(b, json_object_get(rem, "sent"), min, "reminders.sent", "relances envoyées");
    rc = rc ? rc
            : tile(b, json_object_get(rem, "answered"), min, "reminders.answered",
                   "relances suivies d'une réponse");
    rc = rc ? rc
            : tile(b, json_object_get(doc, "escalations"), min, "escalations",
                   "demandes de mise en relation avec un conseiller");
    const json_t *qs = json_object_get(doc, "questions");
    rc = rc ? rc
            : tile(b, json_object_get(qs, "answered"), min, "questions.answered",
                   "questions répondues par la base de connaissances");
    rc = rc ? rc
            : tile(b, json_object_get(qs, "unanswered"), min, "questions.unanswered",
                   "questions restées sans réponse sûre");
    rc = rc ? rc
            : tile(b, json_object_get(qs, "helpful"), min, "questions.helpful",
                   "réponses jugées utiles");
    rc = rc ? rc
            : tile(b, json_object_get(qs, "not_helpful"), min, "questions.not_helpful",
                   "réponses jugées pas utiles");
    rc = rc ? rc : html_advisor_tile(b, json_object_get(doc, "advisor_response"));
    return rc ? rc : fb_buf_puts(b, "</div>\n");
}

/* "Évolution sur 12 mois": one bar chart per monthly series. */
static int html_monthly(fb_buf_t *b, const json_t *monthly, unsigned min)
{
    const json_t *months = json_object_get(monthly, "months");
    char first[32] = "", last[32] = "";
    month_label(json_string_value(json_array_get(months, 0)), true, first, NULL);
    month_label(json_string_value(json_array_get(months, json_array_size(months) - 1)), true, last,
                NULL);
    int rc = fb_buf_printf(b, "<h2>Évolution sur 12 mois</h2>\n<p>De %s à %s, mois par mois.</p>\n",
                           first, last);
    static const struct {
        const char *name, *title;
    } series[] = {{"projects_active", "Projets actifs par mois"},
                  {"sites_studied", "Sites étudiés par mois"},
                  {"steps_done", "Étapes franchies par mois"},
                  {"conversations", "Conversations commencées par mois"},
                  {"reminders_sent", "Relances envoyées par mois"},
                  {"avis", "Avis donnés par mois"}};
    size_t nm = json_array_size(months);
    if (nm > FB_STATS_MONTHS)
        nm = FB_STATS_MONTHS;
    char shortl[FB_STATS_MONTHS][32], fulll[FB_STATS_MONTHS][32], years[FB_STATS_MONTHS][8];
    const char *sl[FB_STATS_MONTHS], *fl[FB_STATS_MONTHS], *yl[FB_STATS_MONTHS];
    for (size_t i = 0; i < nm; i++) {
        month_label(json_string_value(json_array_get(months, i)), false, shortl[i], years[i]);
        month_label(json_string_value(json_array_get(months, i)), true, fulll[i], NULL);
        sl[i] = shortl[i];
        yl[i] = years[i];
        fl[i] = fulll[i];
    }
    for (size_t si = 0; !rc && si < sizeof(series) / sizeof(series[0]); si++) {
        const json_t *arr = json_object_get(monthly, series[si].name);
        const json_t *vals[FB_STATS_MONTHS];
        char pbuf[FB_STATS_MONTHS][64];
        const char *paths[FB_STATS_MONTHS];
        for (size_t i = 0; i < nm; i++) {
            vals[i] = json_array_get(arr, i);
            snprintf(pbuf[i], sizeof(pbuf[i]), "monthly.%s[%zu]", series[si].name, i);
            paths[i] = pbuf[i];
        }
        char id[32];
        snprintf(id, sizeof(id), "fb-m%zu", si);
        rc = bar_chart(b, id, series[si].title, "Barres verticales, un mois par barre.", sl, yl, fl,
                       vals, nm, paths, min, "Mois");
    }
    return rc;
}

/* "Avis des usagers": the count and the distribution of the notes. */
static int html_avis(fb_buf_t *b, const json_t *avis, unsigned min)
{
    char t[32];
    count_text(json_object_get(avis, "count"), min, t);
    int rc = fb_buf_puts(b, "<h2>Avis des usagers (« Je donne mon avis »)</h2>\n<p>Nombre d'avis : "
                            "<span data-figure=\"avis.count\">");
    rc = rc ? rc : esc(b, t);
    rc = rc ? rc : fb_buf_puts(b, "</span>. Note de 1 (pas satisfait) à 5 (très satisfait).</p>\n");
    if (rc)
        return rc;
    const json_t *dist = json_object_get(avis, "distribution");
    static const char *const notes[5] = {"1", "2", "3", "4", "5"};
    static const char *const notes_full[5] = {"note 1", "note 2", "note 3", "note 4", "note 5"};
    static const char *const paths[5] = {"avis.distribution.1", "avis.distribution.2",
                                         "avis.distribution.3", "avis.distribution.4",
                                         "avis.distribution.5"};
    const json_t *vals[5];
    for (int i = 0; i < 5; i++)
        vals[i] = json_object_get(dist, notes[i]);
    return bar_chart(b, "fb-avis", "Répartition des notes",
                     "Barres verticales, une barre par note de 1 à 5.", notes, NULL, notes_full,
                     vals, 5, paths, min, "Note");
}

/* "Étapes franchies, par étape": the table of steps_done.by_step. */
static int html_steps(fb_buf_t *b, const json_t *steps, unsigned min)
{
    const json_t *by = json_object_get(steps, "by_step");
    int rc = fb_buf_puts(b, "<h2>Étapes franchies, par étape</h2>\n");
    if (rc)
        return rc;
    if (json_array_size(by) == 0)
        return fb_buf_puts(b, "<p>Aucune étape n'a encore été marquée comme faite.</p>\n");
    rc = fb_buf_puts(b, "<div class=\"fr-table\"><table><caption>Étapes passées à « faite » "
                        "par les porteurs de projet</caption><thead><tr><th scope=\"col\">"
                        "Étape</th><th scope=\"col\">Nombre</th></tr></thead><tbody>\n");
    size_t i;
    const json_t *e;
    json_array_foreach(by, i, e)
    {
        const char *step = json_string_value(json_object_get(e, "step"));
        const char *title = json_string_value(json_object_get(e, "title"));
        char t[32];
        count_text(json_object_get(e, "count"), min, t);
        rc = rc ? rc
                : fb_buf_printf(b,
                                "<tr><th scope=\"row\" "
                                "data-figure=\"steps_done.by_step[%zu].title\">",
                                i);
        rc = rc ? rc : esc(b, title ? title : step ? step : "");
        rc = rc ? rc
                : fb_buf_printf(b, "</th><td data-figure=\"steps_done.by_step[%zu].count\">", i);
        rc = rc ? rc : esc(b, t);
        rc = rc ? rc : fb_buf_puts(b, "</td></tr>\n");
    }
    return rc ? rc : fb_buf_puts(b, "</tbody></table></div>\n");
}

int fb_stats_render_html(const json_t *doc, fb_buf_t *b)
{
    unsigned min = (unsigned)json_integer_value(json_object_get(doc, "threshold"));
    int rc = html_intro(b, doc, min);
    rc = rc ? rc : html_key_figures(b, doc, min);
    rc = rc ? rc : html_monthly(b, json_object_get(doc, "monthly"), min);
    rc = rc ? rc : html_avis(b, json_object_get(doc, "avis"), min);
    rc = rc ? rc : html_steps(b, json_object_get(doc, "steps_done"), min);
    return rc ? rc : fb_buf_puts(b, page_foot);
}

/* ---- /metrics -----------------------------------------------------------------------------------
 */

static int gauge(fb_buf_t *b, const char *name, const char *labels, const json_t *v)
{
    if (!json_is_integer(v))
        return 0; /* suppressed: no sample */
    return fb_buf_printf(b, "%s%s %" JSON_INTEGER_FORMAT "\n", name, labels ? labels : "",
                         json_integer_value(v));
}

int fb_stats_render_metrics(const json_t *doc, fb_buf_t *b)
{
    const json_t *terr = json_object_get(doc, "territories");
    int rc = fb_buf_puts(b, "# HELP frichebot_stats_territories_engaged Territories with an active "
                            "project in the last 90 days (suppressed below the threshold).\n"
                            "# TYPE frichebot_stats_territories_engaged gauge\n");
    rc = rc ? rc
            : gauge(b, "frichebot_stats_territories_engaged", "{level=\"commune\"}",
                    json_object_get(terr, "communes"));
    rc = rc ? rc
            : gauge(b, "frichebot_stats_territories_engaged", "{level=\"epci\"}",
                    json_object_get(terr, "epci"));
    rc = rc ? rc
            : gauge(b, "frichebot_stats_territories_engaged", "{level=\"departement\"}",
                    json_object_get(terr, "departements"));
    static const struct {
        const char *metric, *obj, *field, *help;
    } simple[] = {
        {"frichebot_stats_conversations_total", NULL, "conversations", "Conversations started."},
        {"frichebot_stats_sites_studied_total", NULL, "sites_studied",
         "Site questionnaires completed."},
        {"frichebot_stats_projects_recurrent_total", NULL, "projects_recurrent",
         "Projects active in at least two distinct months."},
        {"frichebot_stats_steps_done_total", "steps_done", "total", "Step statuses set to done."},
        {"frichebot_stats_escalations_total", NULL, "escalations", "Escalations to an advisor."},
        {"frichebot_stats_reminders_sent_total", "reminders", "sent", "Reminders sent."},
        {"frichebot_stats_reminders_answered_total", "reminders", "answered",
         "User messages after one or more reminders."},
        {"frichebot_stats_avis_total", "avis", "count", "Ratings given (Je donne mon avis)."},
        {"frichebot_stats_questions_answered_total", "questions", "answered",
         "Questions the knowledge base answered."},
        {"frichebot_stats_questions_unanswered_total", "questions", "unanswered",
         "Questions without a confident answer."},
        {"frichebot_stats_questions_helpful_total", "questions", "helpful",
         "Knowledge-base answers rated helpful."},
        {"frichebot_stats_questions_not_helpful_total", "questions", "not_helpful",
         "Knowledge-base answers rated not helpful."},
        {"frichebot_stats_advisor_response_median_seconds", "advisor_response", "median_seconds",
         "Median advisor response time."},
    };
    for (size_t i = 0; !rc && i < sizeof(simple) / sizeof(simple[0]); i++) {
        const json_t *o = simple[i].obj ? json_object_get(doc, simple[i].obj) : doc;
        bool is_gauge = strstr(simple[i].metric, "_total") == NULL;
        rc = fb_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", simple[i].metric, simple[i].help,
                           simple[i].metric, is_gauge ? "gauge" : "counter");
        rc = rc ? rc : gauge(b, simple[i].metric, NULL, json_object_get(o, simple[i].field));
    }
    rc = rc ? rc
            : fb_buf_puts(b, "# HELP frichebot_stats_avis_notes_total Ratings by note.\n"
                             "# TYPE frichebot_stats_avis_notes_total counter\n");
    const json_t *dist = json_object_get(json_object_get(doc, "avis"), "distribution");
    for (int n = 1; !rc && n <= 5; n++) {
        char key[4], labels[32];
        snprintf(key, sizeof(key), "%d", n);
        snprintf(labels, sizeof(labels), "{note=\"%d\"}", n);
        rc = gauge(b, "frichebot_stats_avis_notes_total", labels, json_object_get(dist, key));
    }
    rc = rc ? rc
            : fb_buf_puts(b, "# HELP frichebot_stats_steps_done_by_step_total Step statuses set "
                             "to done, by step.\n"
                             "# TYPE frichebot_stats_steps_done_by_step_total counter\n");
    const json_t *by = json_object_get(json_object_get(doc, "steps_done"), "by_step");
    size_t i;
    const json_t *e;
    json_array_foreach(by, i, e)
    {
        const char *step = json_string_value(json_object_get(e, "step"));
        if (!step || strlen(step) > 120 ||
            strspn(step, "abcdefghijklmnopqrstuvwxyz0123456789_.") != strlen(step))
            continue; /* step ids are catalogue.item, [a-z0-9_.]: nothing to escape */
        char labels[160];
        snprintf(labels, sizeof(labels), "{step=\"%s\"}", step ? step : "");
        rc = rc ? rc
                : gauge(b, "frichebot_stats_steps_done_by_step_total", labels,
                        json_object_get(e, "count"));
    }
    return rc;
}
