/* SPDX-License-Identifier: MIT */
/*
 * ratelimit.c - see ratelimit.h. A fixed table, no allocation: logging must work when memory or
 * descriptors are short, which is exactly when lines repeat.
 */
#include "common/ratelimit.h"

#include <string.h>

static fb_rl_slot_t *slot_of(fb_rl_t *rl, uint64_t key)
{
    uint64_t h = key * 0x9E3779B97F4A7C15ull; /* spread call-site addresses over the table */
    return &rl->slots[(h >> 32) % FB_RL_SLOTS];
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
    fb_rl_slot_t *s = slot_of(rl, key);
    if (s->key != key) {
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
    if (s->key != key)
        return;
    size_t n = strnlen(line, FB_RL_SAMPLE - 1);
    memcpy(s->sample, line, n);
    s->sample[n] = '\0';
    s->meta = meta;
}

void fb_rl_flush(fb_rl_t *rl, int64_t now_ms, bool all, fb_rl_report_fn report, void *arg)
{
    for (size_t i = 0; i < FB_RL_SLOTS && rl->pending; i++) {
        fb_rl_slot_t *s = &rl->slots[i];
        if (s->suppressed && (all || now_ms - s->window_start_ms >= FB_RL_WINDOW_MS))
            report_slot(rl, s, report, arg);
    }
}
