/* SPDX-License-Identifier: MIT */
/*
 * ratelimit.h - the rate limit of repeated log lines: per key (a call site, or a normalised line),
 * at most FB_RL_BURST lines per window of FB_RL_WINDOW_MS; the others are counted, and reported
 * once per window as one "N similar lines suppressed" line (the kernel's printk_ratelimit and
 * journald's RateLimitBurst, per call site). Pure bookkeeping with the time passed in, so that it
 * can be tested without a clock; log.c owns the one instance and holds a lock around it (not
 * thread-safe by itself).
 */
#ifndef FB_RATELIMIT_H
#define FB_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Lines a key may write per window before the rest is counted instead. */
#define FB_RL_BURST 10u
/** The window, in milliseconds; a key's suppressed lines are reported at most once per window. */
#define FB_RL_WINDOW_MS 5000
/** Keys followed at once: FB_RL_SLOTS / FB_RL_WAYS sets of FB_RL_WAYS slots; a key new to a full
 *  set takes the slot whose window is oldest, reporting what it held. */
#define FB_RL_SLOTS 128
#define FB_RL_WAYS  4
/** Lines written per window over all keys: the backstop that holds when more keys flood at once
 *  than a set can follow (each eviction would otherwise start a fresh burst). */
#define FB_RL_GLOBAL_BURST 500u
/** Bytes kept of a key's last written line, quoted in its report. */
#define FB_RL_SAMPLE 96

typedef struct fb_rl_slot_s {
    uint64_t key; /* 0: free */
    int64_t window_start_ms;
    uint32_t written;    /* lines written in the current window */
    uint64_t suppressed; /* lines counted since the last report */
    unsigned meta;       /* the caller's, from fb_rl_sample (log.c: subsystem and level) */
    char sample[FB_RL_SAMPLE];
} fb_rl_slot_t;

typedef struct fb_rl_s {
    fb_rl_slot_t slots[FB_RL_SLOTS];
    size_t pending; /* slots with suppressed > 0, and the overall count when it is > 0 */
    /* the overall limit */
    int64_t all_window_start_ms;
    uint32_t all_written;
    uint64_t all_suppressed;
    unsigned all_meta; /* of the first line it suppressed in the window */
} fb_rl_t;

/** Called for each report: `suppressed` lines like `sample` (with the `meta` given with it)
 * were not written. */
typedef void (*fb_rl_report_fn)(uint64_t suppressed, const char *sample, unsigned meta, void *arg);

/**
 * Decides whether a line of `key` (not 0) may be written at `now_ms` (a monotonic time). Reports
 * first what the slot held if its window is over or another key takes it. Returns true to write
 * (then call fb_rl_sample with the line), false when the line is counted as suppressed (by its
 * key's burst, or by the overall limit: `meta` is then kept for that report).
 */
bool fb_rl_admit(fb_rl_t *rl, uint64_t key, int64_t now_ms, fb_rl_report_fn report, void *arg);
bool fb_rl_admit_meta(fb_rl_t *rl, uint64_t key, unsigned meta, int64_t now_ms,
                      fb_rl_report_fn report, void *arg);

/** Keeps the start of `line`, just written for `key`, and `meta`, for the key's next report. */
void fb_rl_sample(fb_rl_t *rl, uint64_t key, const char *line, unsigned meta);

/** Reports every key whose window is over at `now_ms` (every key when `all`) and has suppressed
 * lines. Cheap when nothing is pending. */
void fb_rl_flush(fb_rl_t *rl, int64_t now_ms, bool all, fb_rl_report_fn report, void *arg);

#endif /* FB_RATELIMIT_H */
