/* SPDX-License-Identifier: MIT */
/*
 * stats.h - the public impact figures (issue #8): counters kept in Redis by the router's COMMIT as
 * events happen, read back with one script, published on /stats (HTML), /stats.json and
 * /metrics. Definitions, keys and the suppression threshold: docs/internals/STATS.md.
 */
#ifndef FB_STATS_H
#define FB_STATS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "core/feature.h"
#include "core/store.h"
#include "frichebot/buf.h"
#include "io/config.h"

typedef struct fb_geo_s fb_geo_t;

/** Months of the monthly series, the current one included. */
#define FB_STATS_MONTHS 12
/** The window of "territories engaged", in days. */
#define FB_STATS_ACTIVE_DAYS 90
/** Advisor response times kept (newest first) for the median. */
#define FB_STATS_RESPONSE_SAMPLES 10000
/** How long a month's hash is kept (ms): a little over 13 months. */
#define FB_STATS_MONTH_TTL_MS 34560000000LL

/*
 * The counters' part of the router's COMMIT script (fb_stats_feature's lua_post, core/feature.h):
 * reads O.stats, O.avis (the router's counters) and O.st (fb_stats_commit_ops()), A.now, and the
 * keys K.stats (the global hash), K.act_c, K.act_e, K.act_d (territories' last activity),
 * K.month (this month's hash), K.months (the conversation's set of months, deleted by a
 * forget) and K.steps (steps done by step id); expire() sets the session TTL, `refresh` says
 * whether this COMMIT sets it again on the session (the set of months follows it then, and when a
 * month is added: not at every event). The month's hash gets its TTL once, when it has none,
 * looked at only by a COMMIT whose HINCRBY made a field (`fresh`), as the one that created the
 * hash did: no PTTL at every event (issue 17).
 */
#define FB_STATS_COMMIT_LUA                                                                        \
    "do\n"                                                                                         \
    "local st = O.st\n"                                                                            \
    "if st then\n"                                                                                 \
    "  local mk = K.month\n"                                                                       \
    "  local fresh = false\n" /* a field of the month's hash created: maybe the hash too */        \
    "  local function inc(f, n)\n"                                                                 \
    "    if redis.call('HINCRBY', mk, f, n) == n then fresh = true end\n"                          \
    "  end\n"                                                                                      \
    "  local function both(f, n) redis.call('HINCRBY', K.stats, f, n) inc(f, n) end\n"             \
    "  for _, name in ipairs(O.stats) do inc(name, 1) end\n"                                       \
    "  for _, a in ipairs(O.avis) do inc('avis', 1) end\n"                                         \
    "  if st.ra == 1 then both('reminder_answered', 1) end\n"                                      \
    "  for _, item in ipairs(st.sd) do\n"                                                          \
    "    redis.call('HINCRBY', K.steps, item, 1)\n"                                                \
    "    both('steps_done', 1)\n"                                                                  \
    "  end\n"                                                                                      \
    "  if st.t then\n"                                                                             \
    "    redis.call('ZADD', K.act_c, A.now, st.t[1])\n"                                            \
    "    if st.t[2] ~= '' then redis.call('ZADD', K.act_e, A.now, st.t[2]) end\n"                  \
    "    if st.t[3] ~= '' then redis.call('ZADD', K.act_d, A.now, st.t[3]) end\n"                  \
    "    if redis.call('SADD', K.months, st.mo) == 1 then\n"                                       \
    "      inc('projects_active', 1)\n"                                                            \
    "      if redis.call('SCARD', K.months) == 2 then both('projects_recurrent', 1) end\n"         \
    "      expire(K.months)\n"                                                                     \
    "    elseif refresh then\n"                                                                    \
    "      expire(K.months)\n"                                                                     \
    "    end\n"                                                                                    \
    "  end\n"                                                                                      \
    "  if fresh and redis.call('PTTL', mk) == -1 then\n"                                           \
    "    redis.call('PEXPIRE', mk, " FB_STATS_MONTH_TTL_STR ")\n"                                  \
    "  end\n"                                                                                      \
    "end\n"                                                                                        \
    "end\n"
#define FB_STATS_MONTH_TTL_STR "34560000000"

/** "YYYY-MM" of `ms` (Unix ms) in Europe/Paris civil time, in `out` (8 bytes). */
void fb_stats_month(int64_t ms, char out[8]);

/** The month `back` months before the (Paris) month of `ms` (0: that month), as "YYYY-MM". */
void fb_stats_month_back(int64_t ms, int back, char out[8]);

/**
 * The stats' part of the router's COMMIT (core/feature.h): keys act_c, act_e, act_d, month,
 * months, steps, the Lua FB_STATS_COMMIT_LUA and fb_stats_commit_ops(). Registered by the daemon
 * with a NULL `self`.
 */
extern const fb_feature_ops_t fb_stats_feature;

/**
 * Adds `st` to the COMMIT's ops object `ops`: {t: [insee, epci, dep]} when the event is a user
 * event (`user_event`) and the new session names a commune (any answer that is an object with a
 * string `insee`; the EPCI and the département from `geo`, "" when unknown), mo: "YYYY-MM" of
 * `now_ms`, ra: 1 when the user wrote back after reminders (the old session's `n` > 0), sd: the
 * items of the `step` effects with status `faite` (not those of an event that ends the guided
 * part: they are initial statuses, not changes)}. Any argument but `ops` may be NULL.
 */
void fb_stats_commit_ops(json_t *ops, const fb_geo_t *geo, const json_t *old_session,
                         const json_t *new_session, const json_t *effects, bool user_event,
                         int64_t now_ms);

typedef struct fb_stats_s fb_stats_t;

/** Creates the reader on `store` (borrowed); `opts` copied. */
fb_stats_t *fb_stats_create(fb_store_t *store, const fb_stats_opts_t *opts);

/** Frees it; every fb_stats_get() callback must have run (fb_stats_pending() == 0). */
void fb_stats_destroy(fb_stats_t *s);

size_t fb_stats_pending(const fb_stats_t *s);

/**
 * The public figures (the /stats.json document, suppression applied) at `now_ms`: from the
 * cache when it is younger than cache_seconds, else read from Redis (one script). `cb` gets 0
 * and the document (borrowed, valid during the call) or an error and NULL. `cb` may run before
 * this returns (cache hit). Returns 0, or an error of fb_store_eval() (cb not called).
 */
typedef void (*fb_stats_cb)(int status, const json_t *doc, void *arg);
int fb_stats_get(fb_stats_t *s, int64_t now_ms, fb_stats_cb cb, void *arg);

/**
 * Builds the public document from the raw reply of the read script (`raw`: a JSON array as
 * decoded by fb__stats_raw_json) at `now_ms` with threshold `min_count`. For tests.
 */
json_t *fb__stats_document(const json_t *raw, int64_t now_ms, unsigned min_count);

/** The title of roadmap step `ref` ("catalogue.item"), or NULL when unknown; borrowed, used at
 * once. */
typedef const char *(*fb_stats_title_fn)(void *arg, const char *ref);

/**
 * Names the steps: each read of the figures sets `title` in steps_done.by_step[] with `fn`
 * (called on the loop thread, at the read). Without it, or for a ref `fn` does not know, the
 * title is the ref itself.
 */
void fb_stats_set_titles(fb_stats_t *s, fb_stats_title_fn fn, void *arg);

/** Drops the cached document (a dialog reload changed the titles): the next fb_stats_get()
 * reads the figures again. */
void fb_stats_invalidate(fb_stats_t *s);

/** Sets `title` beside `step` in each steps_done.by_step[] entry of `doc`: fn(arg, step) when
 * `fn` gives one, else the step ref. */
void fb_stats_add_titles(json_t *doc, fb_stats_title_fn fn, void *arg);

/** Renders the /stats page (French, DSFR, server-side SVG charts) of `doc`. */
int fb_stats_render_html(const json_t *doc, fb_buf_t *b);

/** Appends the figures of `doc` (unsuppressed ones, from "raw") to a Prometheus exposition. */
int fb_stats_render_metrics(const json_t *doc, fb_buf_t *b);

#endif /* FB_STATS_H */
