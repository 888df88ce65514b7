/* SPDX-License-Identifier: MIT */
/*
 * test_ratelimit.c - common/ratelimit.c: the burst per window, the count of suppressed lines and
 * its report once per window, a key evicted by another, the flush; and the log itself: one call
 * site's flood cut to its burst and reported, debug lines exempt.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/ratelimit.h"
#include "frichebot/log.h"
#include "task.h"

struct reports {
    int n;
    uint64_t total;
    uint64_t last;
    unsigned meta;
    char sample[FB_RL_SAMPLE];
};

static void on_report(uint64_t suppressed, const char *sample, unsigned meta, void *arg)
{
    struct reports *r = arg;
    r->n++;
    r->total += suppressed;
    r->last = suppressed;
    r->meta = meta;
    snprintf(r->sample, sizeof(r->sample), "%s", sample);
}

static fb_rl_t rl; /* large: not on the stack */

TEST_IMPL(ratelimit_burst_then_report)
{
    memset(&rl, 0, sizeof(rl));
    struct reports r = {0};
    int64_t t = 1000;
    unsigned written = 0;
    /* A flood of 100,000 lines in 1 s: FB_RL_BURST written, the rest counted. */
    for (int i = 0; i < 100000; i++) {
        if (fb_rl_admit(&rl, 42, t + i / 100, on_report, &r)) {
            written++;
            fb_rl_sample(&rl, 42, "lws: accept: errno 24", 7);
        }
    }
    ASSERT_EQ(written, FB_RL_BURST);
    ASSERT_EQ(r.n, 0); /* the window is not over: nothing reported yet */
    ASSERT_EQ(rl.pending, 1);
    /* A flush before the end of the window reports nothing; after it, the count. */
    fb_rl_flush(&rl, t + FB_RL_WINDOW_MS - 1, false, on_report, &r);
    ASSERT_EQ(r.n, 0);
    fb_rl_flush(&rl, t + FB_RL_WINDOW_MS, false, on_report, &r);
    ASSERT_EQ(r.n, 1);
    ASSERT_EQ(r.last, 100000 - FB_RL_BURST);
    ASSERT_EQ(r.meta, 7);
    ASSERT_STR_EQ(r.sample, "lws: accept: errno 24");
    ASSERT_EQ(rl.pending, 0);
    /* Flushed once only. */
    fb_rl_flush(&rl, t + 3 * FB_RL_WINDOW_MS, true, on_report, &r);
    ASSERT_EQ(r.n, 1);
    /* A new window writes a new burst. */
    ASSERT(fb_rl_admit(&rl, 42, t + FB_RL_WINDOW_MS + 1, on_report, &r));
    return 0;
}

TEST_IMPL(ratelimit_report_on_next_line)
{
    memset(&rl, 0, sizeof(rl));
    struct reports r = {0};
    for (unsigned i = 0; i < FB_RL_BURST + 5; i++)
        if (fb_rl_admit(&rl, 7, 0, on_report, &r))
            fb_rl_sample(&rl, 7, "too many connections", 1);
    /* The next line of the same key after the window reports first, then is written. */
    ASSERT(fb_rl_admit(&rl, 7, FB_RL_WINDOW_MS, on_report, &r));
    ASSERT_EQ(r.n, 1);
    ASSERT_EQ(r.last, 5);
    /* A steady flood: burst + one report per window, whatever the rate. */
    memset(&rl, 0, sizeof(rl));
    memset(&r, 0, sizeof(r));
    unsigned written = 0;
    int64_t end = 20 * FB_RL_WINDOW_MS;
    for (int64_t now = 0; now < end; now++) /* 1 line per ms for 100 s */
        if (fb_rl_admit(&rl, 9, now, on_report, &r))
            written++;
    fb_rl_flush(&rl, end, true, on_report, &r);
    ASSERT_EQ(written, 20 * FB_RL_BURST);
    ASSERT_EQ(r.n, 20);
    ASSERT_EQ(r.total + written, (uint64_t)end);
    return 0;
}

TEST_IMPL(ratelimit_keys_apart_and_evicted)
{
    memset(&rl, 0, sizeof(rl));
    struct reports r = {0};
    /* Two keys each have their own burst. */
    unsigned a = 0, b = 0;
    for (int i = 0; i < 50; i++) {
        a += fb_rl_admit(&rl, 1001, 0, on_report, &r);
        b += fb_rl_admit(&rl, 2002, 0, on_report, &r);
    }
    ASSERT_EQ(a, FB_RL_BURST);
    ASSERT_EQ(b, FB_RL_BURST);
    /* Filling every slot with other keys evicts them: their counts are reported, not lost. */
    for (uint64_t k = 1; k <= 100000 && r.n < 2; k++)
        (void)fb_rl_admit(&rl, 5000000 + k, 1, on_report, &r);
    ASSERT_EQ(r.n, 2);
    ASSERT_EQ(r.total, 2 * (50 - FB_RL_BURST));
    ASSERT_EQ(rl.pending, 0);
    /* A clock that goes back starts a new window rather than suppressing forever. */
    memset(&rl, 0, sizeof(rl));
    for (unsigned i = 0; i < FB_RL_BURST + 1; i++)
        (void)fb_rl_admit(&rl, 3, 100000, on_report, &r);
    ASSERT(fb_rl_admit(&rl, 3, 50, on_report, &r));
    return 0;
}

/* The set a key falls in: ratelimit.c's own spreading, repeated here to find colliding keys. */
static uint64_t set_index(uint64_t key)
{
    return ((key * 0x9E3779B97F4A7C15ull) >> 32) % (FB_RL_SLOTS / FB_RL_WAYS);
}

TEST_IMPL(ratelimit_colliding_keys_keep_their_bursts)
{
    /* Two keys of one set, flooding in turn: each keeps its burst, neither evicts the other (a
     * direct-mapped table let them reset each other's window at every line: no limit at all). */
    memset(&rl, 0, sizeof(rl));
    struct reports r = {0};
    uint64_t a = 7, b = 8;
    while (set_index(b) != set_index(a))
        b++;
    unsigned wa = 0, wb = 0;
    for (int i = 0; i < 1000; i++) {
        wa += fb_rl_admit(&rl, a, 10, on_report, &r);
        wb += fb_rl_admit(&rl, b, 10, on_report, &r);
    }
    ASSERT_EQ(wa, FB_RL_BURST);
    ASSERT_EQ(wb, FB_RL_BURST);
    fb_rl_flush(&rl, 10, true, on_report, &r);
    ASSERT_EQ(r.total, 2 * (1000 - FB_RL_BURST));
    return 0;
}

TEST_IMPL(ratelimit_overall_limit)
{
    /* More keys at once than the table follows, one line each, in one window: at most the
     * overall burst is written, the rest counted and reported, nothing lost from the count. */
    memset(&rl, 0, sizeof(rl));
    struct reports r = {0};
    unsigned written = 0;
    for (uint64_t k = 1; k <= 10000; k++)
        written += fb_rl_admit_meta(&rl, k * 1000003u, 0x0203, 5, on_report, &r);
    ASSERT_EQ(written, FB_RL_GLOBAL_BURST);
    fb_rl_flush(&rl, 5, true, on_report, &r);
    ASSERT_EQ(r.total, 10000 - FB_RL_GLOBAL_BURST);
    ASSERT_EQ(rl.pending, 0);
    /* The next window writes again. */
    ASSERT(fb_rl_admit(&rl, 42, 5 + FB_RL_WINDOW_MS, on_report, &r));
    return 0;
}

/* Counts the lines of `text` holding `needle`. */
static int count_lines(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

TEST_IMPL(ratelimit_in_the_log)
{
    /* The log writes to stderr: send it to a file for the test. */
    char path[] = "/tmp/fb_test_log_XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    ASSERT_GE(saved, 0);
    ASSERT_GE(dup2(fd, STDERR_FILENO), 0);
    fb_log_set_level_all(FB_LOG_DEBUG);
    for (int i = 0; i < 1000; i++)
        FB_WARN(HTTP, "flood line %d", i); /* one call site: 10 written, 990 counted */
    for (int i = 0; i < 30; i++)
        FB_DEBUG(HTTP, "debug line %d", i); /* debug: all written */
    FB_ERR(CORE, "another site");           /* its own budget */
    fb_log_flush_suppressed(true);
    fb_log_set_level_all(FB_LOG_INFO);
    ASSERT_GE(dup2(saved, STDERR_FILENO), 0);
    close(saved);

    char text[16384];
    ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
    close(fd);
    unlink(path);
    ASSERT_GT(n, 0);
    text[n] = '\0';
    ASSERT_EQ(count_lines(text, "] flood line"), FB_RL_BURST);
    ASSERT_EQ(count_lines(text, "] debug line"), 30);
    ASSERT_EQ(count_lines(text, "] another site"), 1);
    ASSERT_NOT_NULL(strstr(text, "warn [http] ... 990 similar lines suppressed in the last 5 s "
                                 "(like: flood line 9)\n"));
    return 0;
}
