/* SPDX-License-Identifier: MIT */
/*
 * test_retry.c - common/retry.c: a policy's delays, the jitter and its bounds, what an empty
 * policy means, and the shared generator.
 */
#include <stdint.h>

#include "common/retry.h"
#include "task.h"

TEST_IMPL(retry_delay_table)
{
    fb_retry_policy_t p = {.delays_ms = {100, 250, 1000}, .n_delays = 3, .max_attempts = 5};
    ASSERT_EQ(fb_retry_delay_ms(&p, 0, 12345), 100);
    ASSERT_EQ(fb_retry_delay_ms(&p, 1, 12345), 250);
    ASSERT_EQ(fb_retry_delay_ms(&p, 2, 0xFFFFFFFFu), 1000);
    /* An empty policy waits FB_RETRY_EMPTY_DELAY_MS (1 s), never 0: no busy loop. */
    ASSERT_EQ(fb_retry_delay_ms(NULL, 0, 1), FB_RETRY_EMPTY_DELAY_MS);
    fb_retry_policy_t empty = {.n_delays = 0, .jitter_percent = 50};
    ASSERT_EQ(fb_retry_delay_ms(&empty, 0, 1), FB_RETRY_EMPTY_DELAY_MS);
    return 0;
}

TEST_IMPL(retry_delay_last_repeats)
{
    fb_retry_policy_t p = {.delays_ms = {100, 250, 1000}, .n_delays = 3};
    ASSERT_EQ(fb_retry_delay_ms(&p, 3, 0), 1000);
    ASSERT_EQ(fb_retry_delay_ms(&p, 7, 0), 1000);
    ASSERT_EQ(fb_retry_delay_ms(&p, 4000000000u, 0), 1000);
    /* n_delays larger than the array is clamped to the array. */
    fb_retry_policy_t full = {.delays_ms = {1, 2, 3, 4, 5, 6, 7, 8}, .n_delays = 99};
    ASSERT_EQ(fb_retry_delay_ms(&full, 7, 0), 8);
    ASSERT_EQ(fb_retry_delay_ms(&full, 100, 0), 8);
    return 0;
}

TEST_IMPL(retry_delay_jitter)
{
    /* 10 % of 1000 ms: the delay is 1000 - r % 101, so within [900, 1000]. */
    fb_retry_policy_t p = {.delays_ms = {1000}, .n_delays = 1, .jitter_percent = 10};
    ASSERT_EQ(fb_retry_delay_ms(&p, 0, 0), 1000);
    ASSERT_EQ(fb_retry_delay_ms(&p, 0, 100), 900);
    ASSERT_EQ(fb_retry_delay_ms(&p, 0, 101), 1000);
    ASSERT_EQ(fb_retry_delay_ms(&p, 0, 50), 950);
    ASSERT_EQ(fb_retry_delay_ms(&p, 5, 203), 999); /* 203 % 101 = 1, last entry repeats */
    for (uint32_t r = 0; r < 5000; r += 7) {
        unsigned d = fb_retry_delay_ms(&p, 0, r * 2654435761u);
        ASSERT_GE(d, 900);
        ASSERT_LE(d, 1000);
    }
    /* Jitter is capped at 100 %: the delay may shrink to 0 but never wraps around. */
    fb_retry_policy_t wild = {.delays_ms = {200}, .n_delays = 1, .jitter_percent = 250};
    ASSERT_EQ(fb_retry_delay_ms(&wild, 0, 200), 0);
    ASSERT_EQ(fb_retry_delay_ms(&wild, 0, 201), 200);
    /* Large delays do not overflow the intermediate product. */
    fb_retry_policy_t huge = {.delays_ms = {4000000000u}, .n_delays = 1, .jitter_percent = 50};
    ASSERT_EQ(fb_retry_delay_ms(&huge, 0, 0), 4000000000u);
    ASSERT_EQ(fb_retry_delay_ms(&huge, 0, 2000000000u), 2000000000u);
    return 0;
}

TEST_IMPL(retry_random_spreads)
{
    /* The one generator gives different values and, through a policy, delays within bounds. */
    uint32_t first = fb_retry_random();
    int same = 0;
    for (int i = 0; i < 1000; i++)
        same += fb_retry_random() == first;
    ASSERT_LE(same, 1);
    fb_retry_policy_t p = {.delays_ms = {1000}, .n_delays = 1, .jitter_percent = 20};
    unsigned lo = 1000, hi = 0;
    for (int i = 0; i < 2000; i++) {
        unsigned d = fb_retry_next_delay_ms(&p, 0);
        ASSERT_GE(d, 800);
        ASSERT_LE(d, 1000);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    ASSERT_LT(lo, 850); /* the jitter is used, across its range */
    ASSERT_GT(hi, 950);
    return 0;
}
