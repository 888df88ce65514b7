/* SPDX-License-Identifier: MIT */
/*
 * reminders.h - the reminder scheduler: takes due reminders out of Redis and hands each one to
 * the router as a TIMER event of its conversation.
 *
 * The router's COMMIT script stores reminders (`schedule` effects) in the global zset
 * `<prefix>reminders:due`, member "KEY|id", scored by the due time in ms. The scheduler polls on
 * the loop: one atomic Lua script first returns expired leases to the due zset (the reaper),
 * then moves up to `batch` due members to `<prefix>reminders:claimed` (scored by lease expiry)
 * and records the claim ("owner|due" in `<prefix>reminders:claims`), so that several daemons on
 * one Redis never take the same reminder. Each claim becomes a TIMER event through the router
 * with the event id "rem:<id>:<due ms>": a re-delivery after a crash is a duplicate for the
 * router (exactly-once effect, same outbox transaction ids). The reminder's delay ("<id>#a" in
 * the conversation's reminders hash, one HGET) goes with it: the router holds a reminder whose
 * user wrote less than that delay before its due time (the lazy push-back). After the router's
 * answer the claim is removed (ACK), or given back at once (RELEASE) when the router could not
 * record it.
 *
 * Working hours: reminders go out Monday to Friday, within reminders.start_hour..end_hour,
 * Europe/Paris time, except on French public holidays; outside of them the due members are
 * re-scored to the next opening ("deferred"). The time rules are in common/calendar.h.
 *
 * Design, scripts and key layout: docs/internals/REMINDERS.md. Everything runs on the loop thread.
 */
#ifndef FB_REMINDERS_H
#define FB_REMINDERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "core/store.h"
#include "frichebot/buf.h"
#include "io/config.h"
#include "io/redis.h"

struct fb_router_s;
typedef struct fb_reminders_s fb_reminders_t;

/* ---- the scheduler -------------------------------------------------------------------------- */

typedef struct fb_reminders_deps_s {
    uv_loop_t *loop;
    const fb_config_t *cfg; /* reminders.* */
    fb_store_t *store;
    struct fb_router_s *router;
    const char *owner; /* lease owner id, unique per daemon (copied); NULL: generated */
} fb_reminders_deps_t;

typedef struct fb_reminders_stats_s {
    uint64_t claimed;   /* reminders taken from the due zset by this scheduler */
    uint64_t delivered; /* handed to the router and acknowledged (duplicates included) */
    uint64_t deferred;  /* re-scored to the next working morning */
    uint64_t dropped;   /* not delivered: the conversation was inactive, or the reminder held
                         * (the user wrote since it was armed: armed again later) */
    uint64_t released;  /* given back after the router failed to record the event */
    uint64_t reaped;    /* expired leases returned to the due zset by this scheduler */
} fb_reminders_stats_t;

fb_reminders_t *fb_reminders_create(const fb_reminders_deps_t *deps);

/** Starts polling (no-op when reminders.enabled is false). */
int fb_reminders_start(fb_reminders_t *rm);

/** Stops polling; claims in flight finish (or stay leased); `done(arg)` runs once idle, never
 * inside the call. */
void fb_reminders_stop(fb_reminders_t *rm, void (*done)(void *arg), void *arg);

void fb_reminders_destroy(fb_reminders_t *rm);

/** Polls now (tests; also done every reminders.poll_interval_ms). */
void fb_reminders_poll(fb_reminders_t *rm);

/** Redis operations and deliveries in progress (for the daemon's drain). */
size_t fb_reminders_pending(const fb_reminders_t *rm);

void fb_reminders_get_stats(const fb_reminders_t *rm, fb_reminders_stats_t *out /* OUT */);

/** Appends frichebot_reminders_* metrics. 0 or FB_ETOOBIG. */
int fb_reminders_metrics_render(const fb_reminders_t *rm, fb_buf_t *out);

/**
 * Tests only: a fixed clock (Unix ms) used instead of the wall clock for working hours and
 * claims (0: the wall clock). `crash` simulates a daemon killed with claims, which then stay
 * until their leases expire: 1 drops each claim before delivery, 2 after the router recorded the
 * event but before the ACK; 0 is normal.
 */
void fb__reminders_set_clock(fb_reminders_t *rm, int64_t clock_ms);
void fb__reminders_set_crash(fb_reminders_t *rm, int crash);

#endif /* FB_REMINDERS_H */
