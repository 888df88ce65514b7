/* SPDX-License-Identifier: MIT */
/*
 * ratelimit.c - see ratelimit.h. A fixed table, no allocation: logging must work when memory or
 * descriptors are short, which is exactly when lines repeat.
 */
#include "common/ratelimit.h"

#include <string.h>

/* The first slot of `key`'s set. */
static fb_rl_slot_t *set_of(fb_rl_t *rl, uint64_t key)
{
    uint64_t h = key * 0x9E3779B97F4A7C15ull; /* spread call-site addresses over the table */
    return &rl->slots[((h >> 32) % (FB_RL_SLOTS / FB_RL_WAYS)) * FB_RL_WAYS];
}

/* `key`'s slot, or NULL when its set does not hold it. */
static fb_rl_slot_t *slot_of(fb_rl_t *rl, uint64_t key)
{
    fb_rl_slot_t *set = set_of(rl, key);
    for (int w = 0; w < FB_RL_WAYS; w++)
        if (set[w].key == key)
            return &set[w];
    return NULL;
}

/* The slot `key` takes in its set: a free one, else the one whose window started first. */
static fb_rl_slot_t *victim_of(fb_rl_t *rl, uint64_t key)
{
    fb_rl_slot_t *set = set_of(rl, key), *v = &set[0];
    for (int w = 0; w < FB_RL_WAYS; w++) {
        if (!set[w].key)
            return &set[w];
        if (set[w].window_start_ms < v->window_start_ms)
            v = &set[w];
    }
    return v;
}

static void report_all(fb_rl_t *rl, fb_rl_report_fn report, void *arg)
{
    if (!rl->all_suppressed)
        return;
    uint64_t n = rl->all_suppressed;
    rl->all_suppressed = 0;
    rl->pending--;
    if (report)
        report(n, "(lines of every kind: the log's overall limit)", rl->all_meta, arg);
}

/* The overall limit: true when one more line may be written in the current window. */
static bool admit_all(fb_rl_t *rl, unsigned meta, int64_t now_ms, fb_rl_report_fn report, void *arg)
{
    if (now_ms - rl->all_window_start_ms >= FB_RL_WINDOW_MS || now_ms < rl->all_window_start_ms) {
        report_all(rl, report, arg);
        rl->all_window_start_ms = now_ms;
        rl->all_written = 0;
    }
    if (rl->all_written < FB_RL_GLOBAL_BURST) {
        rl->all_written++;
        return true;
    }
    if (rl->all_suppressed++ == 0) {
        rl->pending++;
        rl->all_meta = meta;
    }
    return false;
}

static void report_slot(fb_rl_t *rl, fb_rl_slot_t *s, fb_rl_report_fn report, void *arg)
{
    if (!s->suppressed)
        return;
    uint64_t n = s->suppressed;
    s->suppressed = 0;
    rl->pending--;
    if (report)
        report(n, s->sample, s->meta, arg);
}

bool fb_rl_admit(fb_rl_t *rl, uint64_t key, int64_t now_ms, fb_rl_report_fn report, void *arg)
{
    return fb_rl_admit_meta(rl, key, 0, now_ms, report, arg);
}

bool fb_rl_admit_meta(fb_rl_t *rl, uint64_t key, unsigned meta, int64_t now_ms,
                      fb_rl_report_fn report, void *arg)
{
    fb_rl_slot_t *s = slot_of(rl, key);
    if (!s) {
        s = victim_of(rl, key);
        report_slot(rl, s, report, arg);
        s->key = key;
        s->window_start_ms = now_ms;
        s->written = 0;
        s->sample[0] = '\0';
    } else if (now_ms - s->window_start_ms >= FB_RL_WINDOW_MS || now_ms < s->window_start_ms) {
        report_slot(rl, s, report, arg);
        s->window_start_ms = now_ms;
        s->written = 0;
    }
    if (s->written < FB_RL_BURST) {
        if (!admit_all(rl, meta, now_ms, report, arg))
            return false; /* counted by the overall limit, not the key's */
        s->written++;
        return true;
    }
    if (s->suppressed++ == 0)
        rl->pending++;
    return false;
}

void fb_rl_sample(fb_rl_t *rl, uint64_t key, const char *line, unsigned meta)
{
    fb_rl_slot_t *s = slot_of(rl, key);
    if (!s)
        return;
    size_t n = strnlen(line, FB_RL_SAMPLE - 1);
    memcpy(s->sample, line, n);
    s->sample[n] = '\0';
    s->meta = meta;
}

void fb_rl_flush(fb_rl_t *rl, int64_t now_ms, bool all, fb_rl_report_fn report, void *arg)
{
    if (rl->all_suppressed && (all || now_ms - rl->all_window_start_ms >= FB_RL_WINDOW_MS))
        report_all(rl, report, arg);
    for (size_t i = 0; i < FB_RL_SLOTS && rl->pending; i++) {
        fb_rl_slot_t *s = &rl->slots[i];
        if (s->suppressed && (all || now_ms - s->window_start_ms >= FB_RL_WINDOW_MS))
            report_slot(rl, s, report, arg);
    }
}
