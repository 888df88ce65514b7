/* SPDX-License-Identifier: MIT */
/*
 * log.c - formats log lines (plain or JSON) and holds the per-subsystem levels.
 *
 * Lines are built in a fixed stack buffer and written with a single write(2), so concurrent
 * writers (the daemon and a test harness sharing stderr) never interleave within a line.
 *
 * Every line up to info is rate-limited per call site (common/ratelimit.h; debug and trace, asked
 * for a diagnosis, are not): a flood of one line (an accept
 * failing in a loop, a client refused a thousand times a second) writes FB_RL_BURST lines per
 * window, then one "N similar lines suppressed" line per window, instead of filling the disk. The
 * check comes before formatting, so a suppressed line costs a table lookup.
 */
#include "frichebot/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "common/ratelimit.h"
#include "common/utf8.h"
#include "frichebot/clock.h"
#include "frichebot/err.h"

fb_log_level_t fb__log_levels[FB_SUB__COUNT] = {
#define FB__LOG_SUB_DEFAULT(id, name) [FB_SUB_##id] = FB_LOG_INFO,
    FB_LOG_SUBSYSTEMS(FB__LOG_SUB_DEFAULT)
#undef FB__LOG_SUB_DEFAULT
};

static fb_log_format_t log_format = FB_LOG_FORMAT_PLAIN;

static const char *const level_names[] = {"err", "warn", "notice", "info", "debug", "trace"};

/* The core's names, then the registered categories' (NULL: a free slot). */
static const char *sub_names[FB_SUB__COUNT] = {
#define FB__LOG_SUB_NAME(id, name) [FB_SUB_##id] = name,
    FB_LOG_SUBSYSTEMS(FB__LOG_SUB_NAME)
#undef FB__LOG_SUB_NAME
};

const char *fb_log_sub_name(fb_log_sub_t sub)
{
    return (unsigned)sub < FB_SUB__COUNT && sub_names[sub] ? sub_names[sub] : "?";
}

int fb_log_register(const char *name)
{
    for (int i = 0; i < FB_SUB__COUNT; i++) {
        if (!sub_names[i]) {
            sub_names[i] = name;
            fb__log_levels[i] = FB_LOG_INFO;
            return i;
        }
        if (strcmp(sub_names[i], name) == 0)
            return i;
    }
    return FB_SUB_CORE;
}

int fb_log_level_parse(const char *name)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
        if (strcasecmp(name, level_names[i]) == 0)
            return (int)i;
    if (strcasecmp(name, "error") == 0)
        return FB_LOG_ERR;
    if (strcasecmp(name, "warning") == 0)
        return FB_LOG_WARN;
    return -1;
}

void fb_log_set_level_all(fb_log_level_t level)
{
    for (int i = 0; i < FB_SUB__COUNT; i++)
        fb__log_levels[i] = level;
}

void fb_log_set_format(fb_log_format_t format)
{
    log_format = format;
}

int fb_log_apply_spec(const char *spec, const char **bad)
{
    fb_log_level_t next[FB_SUB__COUNT];
    memcpy(next, fb__log_levels, sizeof(next));
    const char *p = spec;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[64];
        if (len == 0 || len >= sizeof(item))
            goto fail;
        memcpy(item, p, len);
        item[len] = '\0';
        char *eq = strchr(item, '=');
        if (!eq) {
            int lvl = fb_log_level_parse(item);
            if (lvl < 0)
                goto fail;
            for (int i = 0; i < FB_SUB__COUNT; i++)
                next[i] = (fb_log_level_t)lvl;
        } else {
            *eq = '\0';
            int lvl = fb_log_level_parse(eq + 1);
            int sub = -1;
            for (int i = 0; i < FB_SUB__COUNT; i++)
                if (sub_names[i] && strcmp(item, sub_names[i]) == 0)
                    sub = i;
            if (lvl < 0 || sub < 0)
                goto fail;
            next[sub] = (fb_log_level_t)lvl;
        }
        p += len;
        if (*p == ',')
            p++;
        continue;
    fail:
        if (bad)
            *bad = p;
        return FB_EINVAL;
    }
    memcpy(fb__log_levels, next, sizeof(next));
    return 0;
}

/*
 * Applies the spec to the live levels and puts them back: the grammar then cannot drift from
 * fb_log_apply_spec(). Safe because levels are only touched from the loop thread.
 */
int fb_log_check_spec(const char *spec, const char **bad)
{
    fb_log_level_t saved[FB_SUB__COUNT];
    memcpy(saved, fb__log_levels, sizeof(saved));
    int rc = fb_log_apply_spec(spec, bad);
    memcpy(fb__log_levels, saved, sizeof(saved));
    return rc;
}

/*
 * Appends `s` to line[*pos..cap) as a JSON string body (no quotes), truncating safely. Bytes that
 * are not valid UTF-8 (a message cut in the middle of a character, or invalid input) become
 * \ufffd, so every line stays valid JSON for log shippers.
 */
static void json_escape(char *line, size_t cap, size_t *pos, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    while (*s && *pos + 7 < cap) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            line[(*pos)++] = '\\';
            line[(*pos)++] = (char)c;
            s++;
        } else if (c < 0x20) {
            line[(*pos)++] = '\\';
            line[(*pos)++] = 'u';
            line[(*pos)++] = '0';
            line[(*pos)++] = '0';
            line[(*pos)++] = hex[c >> 4];
            line[(*pos)++] = hex[c & 15];
            s++;
        } else if (c < 0x80) {
            line[(*pos)++] = (char)c;
            s++;
        } else {
            size_t n = fb_utf8_len((const unsigned char *)s, strnlen(s, 4));
            if (n == 0) {
                static const char replacement[6] = {'\\', 'u', 'f', 'f', 'f', 'd'};
                memcpy(line + *pos, replacement, sizeof(replacement));
                *pos += sizeof(replacement);
                s++;
            } else {
                memcpy(line + *pos, s, n);
                *pos += n;
                s += n;
            }
        }
    }
}

/* Formats and writes one line holding `msg`. */
static void emit(fb_log_sub_t sub, fb_log_level_t level, const char *msg)
{
    char line[4600];
    char ts[40];
    struct tm tm;

    int64_t now_ms = fb_wall_ms();
    time_t now = (time_t)(now_ms / 1000);
    gmtime_r(&now, &tm);
    size_t tl = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tl, sizeof(ts) - tl, ".%03dZ", (int)(now_ms % 1000));

    size_t pos;
    if (log_format == FB_LOG_FORMAT_JSON) {
        int n = snprintf(line, sizeof(line),
                         "{\"ts\":\"%s\",\"level\":\"%s\",\"sub\":\"%s\",\"msg\":\"", ts,
                         level_names[level], fb_log_sub_name(sub));
        pos = n > 0 ? (size_t)n : 0;
        json_escape(line, sizeof(line), &pos, msg);
        line[pos++] = '"';
        line[pos++] = '}';
    } else {
        int n = snprintf(line, sizeof(line), "%s %s [%s] ", ts, level_names[level],
                         fb_log_sub_name(sub));
        pos = n > 0 ? (size_t)n : 0;
        /* Control characters would let one message forge another line: show them as '?'. */
        for (const char *s = msg; *s && pos + 2 < sizeof(line); s++)
            line[pos++] = ((unsigned char)*s < 0x20) ? '?' : *s;
    }
    line[pos++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, pos);
    (void)w;
}

/* The limiter is shared state: a line logged from a thread of libuv's pool (none today: the work
 * done there is pure, but a failed allocation or a future call could log) must not race the
 * loop's. Uncontended, the lock costs a few tens of nanoseconds per line. */
static fb_rl_t limiter;
static pthread_mutex_t limiter_lock = PTHREAD_MUTEX_INITIALIZER;

/* Writes the report of a key's suppressed lines, at the level and in the subsystem of the line. */
static void report_suppressed(uint64_t n, const char *sample, unsigned meta, void *arg)
{
    (void)arg;
    char msg[FB_RL_SAMPLE + 128];
    snprintf(msg, sizeof(msg), "... %llu similar lines suppressed in the last %d s (like: %s)",
             (unsigned long long)n, FB_RL_WINDOW_MS / 1000, sample);
    emit((fb_log_sub_t)(meta >> 8), (fb_log_level_t)(meta & 0xff), msg);
}

static int64_t mono_ms(void)
{
    return (int64_t)(fb_mono_ns() / 1000000);
}

static void vlog(fb_log_sub_t sub, fb_log_level_t level, uint64_t key, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

static void vlog(fb_log_sub_t sub, fb_log_level_t level, uint64_t key, const char *fmt, va_list ap)
{
    int64_t now = mono_ms();
    pthread_mutex_lock(&limiter_lock);
    if (limiter.pending)
        fb_rl_flush(&limiter, now, false, report_suppressed, NULL);
    /* Debug and trace are asked for, for a diagnosis: every line of them is wanted. */
    bool limited = level < FB_LOG_DEBUG;
    key = key ? key : 1;
    if (limited && !fb_rl_admit_meta(&limiter, key, ((unsigned)sub << 8) | (unsigned)level, now,
                                     report_suppressed, NULL)) {
        pthread_mutex_unlock(&limiter_lock);
        return;
    }
    char msg[2048];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (limited)
        fb_rl_sample(&limiter, key, msg, ((unsigned)sub << 8) | (unsigned)level);
    pthread_mutex_unlock(&limiter_lock);
    emit(sub, level, msg);
}

void fb__log(fb_log_sub_t sub, fb_log_level_t level, const char *fmt, ...)
{
    /* The call site is the format string: the same statement, whatever its arguments. */
    uint64_t key = (uint64_t)(uintptr_t)fmt ^ ((uint64_t)sub << 56) ^ ((uint64_t)level << 48);
    va_list ap;
    va_start(ap, fmt);
    vlog(sub, level, key, fmt, ap);
    va_end(ap);
}

void fb__log_key(fb_log_sub_t sub, fb_log_level_t level, uint64_t key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(sub, level, key ^ ((uint64_t)sub << 56) ^ ((uint64_t)level << 48), fmt, ap);
    va_end(ap);
}

void fb_log_flush_suppressed(bool all)
{
    pthread_mutex_lock(&limiter_lock);
    if (limiter.pending)
        fb_rl_flush(&limiter, mono_ms(), all, report_suppressed, NULL);
    pthread_mutex_unlock(&limiter_lock);
}
