/* SPDX-License-Identifier: MIT */
/*
 * retry.h - retry and backoff policies as data (libwebsockets' lws_retry_bo_t), the delay they
 * give, and the one small pseudo-random generator the daemon uses for jitter. The HTTP client's
 * retries, the Redis client's reconnections, the outbox's re-sends and the Matrix adapter's /sync
 * back-off all take their delays from here. Single-threaded: call on the loop thread.
 */
#ifndef FB_RETRY_H
#define FB_RETRY_H

#include <stddef.h>
#include <stdint.h>

/** The delay an empty policy (no delays, or a NULL one) gives: one attempt a second, never a
 * busy loop. */
#define FB_RETRY_EMPTY_DELAY_MS 1000u

/** A retry/backoff policy expressed as data (libwebsockets lws_retry_bo_t). */
typedef struct fb_retry_policy_s {
    unsigned delays_ms[8];   /* delay before retry i (the last one repeats) */
    size_t n_delays;         /* entries used in delays_ms, at least 1 (0: see above) */
    unsigned jitter_percent; /* each delay is randomly shortened by up to this percentage */
    unsigned max_attempts;   /* total attempts including the first; 1 disables retries */
} fb_retry_policy_t;

/**
 * Pure: the delay in milliseconds before retry number `retry_index` (0 for the retry after the
 * first attempt) under policy `p`. The delay is `p->delays_ms[retry_index]`, or the last entry
 * when the table is shorter, shortened by a jitter of up to `p->jitter_percent` percent (capped
 * at 100) chosen from `random_value`: `base - random_value % (base * jitter / 100 + 1)`.
 * When `p` is NULL or has no entries the base is FB_RETRY_EMPTY_DELAY_MS, with no jitter.
 */
unsigned fb_retry_delay_ms(const fb_retry_policy_t *p, unsigned retry_index, uint32_t random_value);

/** Like fb_retry_delay_ms(), with the jitter drawn from fb_retry_random(). */
unsigned fb_retry_next_delay_ms(const fb_retry_policy_t *p, unsigned retry_index);

/**
 * The next value of the daemon's one jitter generator (splitmix64, not cryptographic), seeded
 * once, on first use, from the monotonic clock and the process id.
 */
uint32_t fb_retry_random(void);

#endif /* FB_RETRY_H */
