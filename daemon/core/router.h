/* SPDX-License-Identifier: MIT */
/*
 * router.h - the imperative shell around the dialog engine: inbound events from the adapters,
 * one atomic Redis write per event, and the outbox that delivers the replies.
 *
 * For each inbound event (fb_core_t.deliver): validate it, take the conversation's turn (events
 * of one conversation run one at a time, in arrival order; conversations run concurrently),
 * check the dedupe mark, load the session, run fb_engine_step(), then write in ONE Lua script
 * with a version check: the new session (or its deletion on `forget`), the dedupe mark, the
 * outbox entries, reminders, an escalation ticket, counters and what the registered features
 * (core/feature.h) add. Only then is the adapter told 0.
 * A version conflict reloads and reruns; Redis unreachable reports FB_EAGAIN (nothing written,
 * the adapter does not acknowledge and the platform retries).
 *
 * The outbox delivers each conversation's entries in order through the adapter named in the
 * entry, with a transaction id stable across retries and restarts, retrying transient failures
 * with router.outbox_retry and parking permanent ones. At start, every minute and whenever
 * Redis reconnects, the global pending index is scanned so that entries left by a crash go out.
 *
 * Key layout, scripts and failure behaviour: docs/internals/ROUTER.md. Everything runs on the
 * loop thread.
 */
#ifndef FB_ROUTER_H
#define FB_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "core/feature.h"
#include "core/store.h"
#include "frichebot/adapter.h"
#include "frichebot/buf.h"
#include "io/config.h"
#include "io/redis.h"

typedef struct fb_router_s fb_router_t;
typedef struct fb_geo_s fb_geo_t;
struct fb_http_server_s;
struct fb_http_client_s;

/** What the router runs on; everything borrowed and outliving the router. */
typedef struct fb_router_deps_s {
    uv_loop_t *loop;
    const fb_config_t *cfg; /* dialogs.path, router.*, store.session_ttl_days */
    fb_redis_t *redis;
    fb_store_t *store;
    struct fb_http_server_s *http;   /* handed to adapters; may be NULL (tests) */
    struct fb_http_client_s *client; /* handed to adapters; may be NULL (tests) */
    const fb_geo_t *geo;             /* communes index; may be NULL */
} fb_router_deps_t;

/** Counters since creation (also rendered by fb_router_metrics_render()). */
typedef struct fb_router_stats_s {
    uint64_t events;           /* inbound events durably handled (duplicates excluded) */
    uint64_t duplicates;       /* inbound events recognised as already handled */
    uint64_t conflicts;        /* version conflicts (each one reran the step) */
    uint64_t failed;           /* inbound events answered with an error */
    uint64_t outbox_delivered; /* entries the platform accepted */
    uint64_t outbox_retried;   /* transient send failures (each one retried later) */
    uint64_t outbox_parked;    /* entries moved to the parked list */
    uint64_t reloads;          /* successful dialog reloads */
    uint64_t reload_failures;  /* refused dialog reloads */
    uint64_t busy;             /* inbound events refused for now: router.max_queued_events */
    uint64_t send_waits;       /* outbox entries that waited for a slot: router.max_sending */
} fb_router_stats_t;

/**
 * Creates the router and loads the dialog at cfg->dialogs.path. Returns NULL after appending
 * the dialog's errors ("FILE:LINE:COL: message" lines) to `errors`.
 */
fb_router_t *fb_router_create(const fb_router_deps_t *deps, fb_buf_t *errors);

/**
 * Registers an adapter: checks its ops table (fb_adapter_check(), unique name), gives it a
 * fb_core_t and calls its init(). Returns 0, FB_EINVAL (refused: logged) or init()'s error;
 * init() returning FB_DECLINED means "disabled by the configuration" (the adapter is dropped,
 * not an error). Call before fb_router_start().
 */
int fb_router_add_adapter(fb_router_t *r, const fb_adapter_ops_t *ops);

/**
 * Registers a feature (core/feature.h): its keys, Lua fragments and hooks join the router's
 * work; attach() is called now. `ops` is borrowed for the router's lifetime; `self` is handed to
 * every hook and, when ops->destroy is set, freed by it at fb_router_destroy(). Returns 0, or
 * FB_EINVAL (refused and logged: after fb_router_start(), too many, a key name already taken).
 */
int fb_router_add_feature(fb_router_t *r, const fb_feature_ops_t *ops, void *self);

/**
 * Whether an advisor can take a conversation about commune `insee` (NULL: none yet): handed to
 * the engine as fb_engine_env_t.has_advisor for every step. Not set (tests): advisors are
 * assumed available. The daemon sets fb_esc_has_advisor() (false for everyone when escalation
 * is disabled). `arg` is borrowed for the router's lifetime.
 */
void fb_router_set_has_advisor(fb_router_t *r,
                               bool (*has_advisor)(const void *arg, const char *insee),
                               const void *arg);

/** Starts every adapter (in registration order), the features and the outbox's recovery scan;
 *  the COMMIT script is assembled here. */
int fb_router_start(fb_router_t *r);

/**
 * SIGHUP: loads the dialog file again as the next version (fb_dialog_load_next()). A broken
 * file is refused (FB_EINVAL, errors appended to `errors` and logged) and the current version
 * keeps serving; otherwise new conversations get the new version while sessions pinned to an
 * older one keep it.
 */
int fb_router_reload(fb_router_t *r, fb_buf_t *errors);

/**
 * Stops: adapters first (their stop()), then the router's own work: events not started yet
 * fail with FB_ECANCELED, events in Redis finish (or are cancelled by fb_redis_close()),
 * outbox timers stop. `done(arg)` is called once all of that is over (never inside the call).
 */
void fb_router_stop(fb_router_t *r, void (*done)(void *arg), void *arg);

/** Frees the router: after stop's done (or when it was never started). Adapters are destroyed. */
void fb_router_destroy(fb_router_t *r);

/** Inbound events and outbox operations in progress, for the daemon's drain. */
size_t fb_router_pending(const fb_router_t *r);

/** Adds one member per adapter, {"state": ..., and the adapter's stats()}, to `adapters`. */
void fb_router_health(const fb_router_t *r, json_t *adapters);

/** Appends the router's and the outbox's Prometheus metrics to `out`. 0 or FB_ETOOBIG. */
int fb_router_metrics_render(const fb_router_t *r, fb_buf_t *out);

/** Copies the counters. */
void fb_router_get_stats(const fb_router_t *r, fb_router_stats_t *out /* OUT */);

/** The dialog currently served (borrowed). */
const struct fb_dialog_s *fb_router_dialog(const fb_router_t *r);

/**
 * Queues reminder `timer` of conversation `key` ("adapter:conv", as in the due zset), which fell
 * due at `due_ms` (Unix ms; 0: unknown) and whose delay is `delay_ms` (its "<id>#a" in the
 * reminders hash, read by the scheduler; < 0: unknown), as a TIMER event with `event_id` (the
 * dedupe id: the same reminder delivered twice is a duplicate). It runs in the conversation's
 * turn like an inbound event; `cb` gets 0 (recorded or a duplicate), FB_DECLINED (dropped: no
 * user activity for reminders.inactive_months, the reminder is cancelled; or held: the user's
 * last event + `delay_ms` is later than `due_ms`, the user wrote since it was armed and the
 * push-back is lazy; then no engine step, nothing said, and the COMMIT arms it again at that
 * event's time + its delay unless it is already due), FB_EAGAIN, FB_EINVAL or FB_ECANCELED.
 * Returns 0 (cb called later), FB_EINVAL or FB_ECANCELED (cb never called). REMINDERS.md.
 */
int fb_router_reminder(fb_router_t *r, const char *key, const char *timer, int64_t due_ms,
                       int64_t delay_ms, const char *event_id, fb_inbound_cb cb, void *arg);

/** Scans the outbox's pending index now (also done at start, every minute, on reconnection). */
void fb_router_outbox_scan(fb_router_t *r);

/**
 * Queues a HANDBACK event (an advisor handed the conversation back: the dialog resumes) for
 * conversation `key` ("adapter:conv") in its FIFO, with dedupe id `event_id`. Same contract as
 * fb_router_reminder(). Used by the escalation module (daemon/features/escalation.c).
 */
int fb_router_handback(fb_router_t *r, const char *key, const char *event_id, fb_inbound_cb cb,
                       void *arg);

/** The outbox of conversation `key` has new entries: read its head now. */
void fb_router_kick(fb_router_t *r, const char *key);

/** The answer to fb_router_roadmap_page(): 0 and the page's body (HTML, borrowed for the call),
 *  FB_ENOENT (no such token, forgotten, expired), or another error (Redis). */
typedef void (*fb_router_page_cb)(void *arg, int status, const char *body_html);

/**
 * The roadmap page of the conversation whose page token is `token` (the last part of
 * GET /feuille-de-route/TOKEN): looked up by the token's SHA-256, so that no comparison with a
 * stored token leaks its prefix by timing; rendered by the engine from the session
 * (fb_engine_render_page()). Two Redis calls, each in one Cluster slot: the lookup, then a
 * read-only script on the conversation's keys that checks the token's hash there. 0 and cb later
 * exactly once, or an error and cb never called (FB_ENOENT at once for a string that is no token).
 */
int fb_router_roadmap_page(fb_router_t *r, const char *token, fb_router_page_cb cb, void *arg);

/**
 * Tests only: each outbox delivery first waits until the entry's time + `ms` (0: none), so that
 * a test can kill or stop the daemon between the COMMIT and the send. Test builds
 * (FB_BUILD_TESTS) also read it from the environment variable FB_TEST_OUTBOX_START_DELAY_MS at
 * creation; other builds ignore that variable.
 */
void fb__router_set_outbox_delay(fb_router_t *r, uint64_t ms);

/**
 * Tests only: `fn` is called after each engine step, before the COMMIT is sent, with the
 * conversation key and the effects (which it may change). NULL removes it.
 */
void fb__router_set_step_hook(fb_router_t *r,
                              void (*fn)(void *arg, const char *key, json_t *effects), void *arg);

#endif /* FB_ROUTER_H */
