/* SPDX-License-Identifier: MIT */
/*
 * replay.h - what a transcript's replay needs beside the engine, shared by `frichebot test`
 * (authoring.c) and the engine bench (bench/bench_engine.c), so that the bench times the very
 * steps the golden transcripts check: the transcript's clock, the reminders the effects schedule
 * and cancel (fired in time order as the clock moves), and its advisors' territories.
 */
#ifndef FB_REPLAY_H
#define FB_REPLAY_H

#include <stdbool.h>

#include <jansson.h>

#include "engine/geo.h"

#define FB_REPLAY_MAX_TIMERS 64

typedef struct fb_replay_timer_s {
    char *id;
    long long due; /* the transcript's clock, in seconds */
} fb_replay_timer_t;

/** A conversation's pending reminders; zero-initialised is empty. */
typedef struct fb_replay_timers_s {
    fb_replay_timer_t t[FB_REPLAY_MAX_TIMERS];
    int n;
} fb_replay_timers_t;

/** Parses an ISO 8601 UTC time "2026-11-28T09:00:00Z" (or a date). Returns 0 or FB_EINVAL. */
int fb_replay_parse_clock(const char *s, long long *out);

/** Drops the reminder `id`, or every reminder when `id` is NULL. */
void fb_replay_timers_cancel(fb_replay_timers_t *q, const char *id);

/** Applies the `schedule`, `cancel` and `forget` effects of one step taken at `clock`. */
void fb_replay_timers_apply(fb_replay_timers_t *q, const json_t *effects, long long clock);

/** Takes the earliest reminder due at or before `target` out of the queue: its id (the caller's
 * to free) and its time in *due; NULL when none is due. */
char *fb_replay_timers_take(fb_replay_timers_t *q, long long target, long long *due);

/** Whether a transcript's `conseillers:` list ("30" a department, "r76" a region, "*") covers
 * the commune `insee`, as the daemon's escalation decides (fb_esc_has_advisor()). */
bool fb_replay_advisors_cover(const json_t *list, const fb_geo_t *geo, const char *insee);

#endif /* FB_REPLAY_H */
