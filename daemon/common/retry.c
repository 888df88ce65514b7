/* SPDX-License-Identifier: MIT */
/*
 * retry.c - the delay of a retry policy and the jitter generator (retry.h). Everything that
 * waits before trying again takes its delay from here, so an empty policy means the same thing
 * everywhere and there is one generator to seed.
 */
#include "common/retry.h"

#include <unistd.h>

#include "frichebot/alloc.h"
#include "frichebot/clock.h"

static uint64_t rng_state; /* splitmix64 state; the loop thread only */
static int rng_seeded;

unsigned fb_retry_delay_ms(const fb_retry_policy_t *p, unsigned retry_index, uint32_t random_value)
{
    if (!p || p->n_delays == 0)
        return FB_RETRY_EMPTY_DELAY_MS;
    size_t n =
        p->n_delays < FB_ARRAY_SIZE(p->delays_ms) ? p->n_delays : FB_ARRAY_SIZE(p->delays_ms);
    size_t i = retry_index < n ? retry_index : n - 1;
    uint64_t base = p->delays_ms[i];
    uint64_t jitter = p->jitter_percent > 100 ? 100 : p->jitter_percent;
    uint64_t span = base * jitter / 100; /* the most the delay may be shortened by */
    return (unsigned)(base - (uint64_t)random_value % (span + 1));
}

unsigned fb_retry_next_delay_ms(const fb_retry_policy_t *p, unsigned retry_index)
{
    return fb_retry_delay_ms(p, retry_index, fb_retry_random());
}

uint32_t fb_retry_random(void)
{
    if (!rng_seeded) {
        rng_state = fb_mono_ns() ^ ((uint64_t)getpid() << 32);
        rng_seeded = 1;
    }
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}
