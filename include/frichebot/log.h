/* SPDX-License-Identifier: MIT */
/*
 * log.h - leveled, per-subsystem logging to stderr, as plain lines or JSON lines.
 *
 * The level is checked before the arguments are evaluated, so a disabled debug statement costs a
 * comparison (Redis serverLog). Each subsystem has its own level, set at run time from the
 * configuration ("http=debug,redis=info"). Objects carry stable tags such as "[req|913]" so that
 * one request, session or connection can be followed across lines (libwebsockets object tags).
 *
 * Privacy rule: no secret (token, password) is ever logged, and no text written by a user is logged
 * at INFO or above; user text may appear at DEBUG/TRACE only, for local debugging.
 */
#ifndef FRICHEBOT_LOG_H
#define FRICHEBOT_LOG_H

#include <stdbool.h>
#include <stdint.h>

/** Log levels, most severe first. */
typedef enum fb_log_level_e {
    FB_LOG_ERR = 0,
    FB_LOG_WARN,
    FB_LOG_NOTICE,
    FB_LOG_INFO,
    FB_LOG_DEBUG,
    FB_LOG_TRACE,
} fb_log_level_t;

/**
 * The core's subsystems, each with its own verbosity. X-macro: enum constant, name in config and
 * logs. Adapters add their own categories at run time (fb_log_register), so the core names no
 * platform.
 */
#define FB_LOG_SUBSYSTEMS(XX)                                                                      \
    XX(CORE, "core")                                                                               \
    XX(CONFIG, "config")                                                                           \
    XX(HTTP, "http")                                                                               \
    XX(CLIENT, "client")                                                                           \
    XX(REDIS, "redis")                                                                             \
    XX(STORE, "store")                                                                             \
    XX(ENGINE, "engine")                                                                           \
    XX(ROUTER, "router")

typedef enum fb_log_sub_e {
#define FB__LOG_SUB_ENUM(id, name) FB_SUB_##id,
    FB_LOG_SUBSYSTEMS(FB__LOG_SUB_ENUM)
#undef FB__LOG_SUB_ENUM
        FB_SUB__CORE_COUNT,
    FB_SUB__COUNT = FB_SUB__CORE_COUNT + 8 /* room for 8 registered categories */
} fb_log_sub_t;

/** Output formats. */
typedef enum fb_log_format_e {
    FB_LOG_FORMAT_PLAIN = 0, /* "2026-11-28T10:00:00.123Z notice [http] message" */
    FB_LOG_FORMAT_JSON,      /* one JSON object per line */
} fb_log_format_t;

/* private: current level per subsystem; read by the macros below. */
extern fb_log_level_t fb__log_levels[FB_SUB__COUNT];

#if defined(FB_KEEP_DEBUG_LOGS) || !defined(NDEBUG)
#define FB__LOG_MAX FB_LOG_TRACE
#else
#define FB__LOG_MAX FB_LOG_INFO
#endif

/** Logs when `level` is enabled for `sub`; arguments are evaluated only then. */
#define FB_LOG(sub, level, ...)                                                                    \
    do {                                                                                           \
        if ((level) <= FB__LOG_MAX && (level) <= fb__log_levels[FB_SUB_##sub])                     \
            fb__log(FB_SUB_##sub, (level), __VA_ARGS__);                                           \
    } while (0)

#define FB_ERR(sub, ...)    FB_LOG(sub, FB_LOG_ERR, __VA_ARGS__)
#define FB_WARN(sub, ...)   FB_LOG(sub, FB_LOG_WARN, __VA_ARGS__)
#define FB_NOTICE(sub, ...) FB_LOG(sub, FB_LOG_NOTICE, __VA_ARGS__)
#define FB_INFO(sub, ...)   FB_LOG(sub, FB_LOG_INFO, __VA_ARGS__)
#define FB_DEBUG(sub, ...)  FB_LOG(sub, FB_LOG_DEBUG, __VA_ARGS__)
#define FB_TRACE(sub, ...)  FB_LOG(sub, FB_LOG_TRACE, __VA_ARGS__)

/** True when `level` is enabled for the subsystem, for work done only to log. */
#define FB_LOG_ENABLED(sub, level)                                                                 \
    ((level) <= FB__LOG_MAX && (level) <= fb__log_levels[FB_SUB_##sub])

/**
 * Writes one log line. Use the macros, which check the level first. Lines from err to info are
 * rate-limited per call site (the format string): past 10 lines in 5 s, the others are counted
 * and reported as one "... N similar lines suppressed" line per 5 s. Debug and trace lines,
 * which an operator turns on for a diagnosis, are all written.
 */
void fb__log(fb_log_sub_t sub, fb_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** fb__log() with an explicit rate-limit key instead of the call site: for lines that all come
 * from one statement but say different things (libwebsockets' own lines). */
void fb__log_key(fb_log_sub_t sub, fb_log_level_t level, uint64_t key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/** Writes now the "suppressed" reports whose window is over (all of them when `all`, e.g. at
 * exit); otherwise they are written with the next line logged. */
void fb_log_flush_suppressed(bool all);

/**
 * Registers a log category named `name` (an adapter's name: 1..31 bytes of [a-z0-9_]) and returns
 * its id, the same for the same name; FB_SUB_CORE when the 8 slots are taken. Its level starts at
 * info. Call before the configuration's log spec is checked, so that "matrix=debug" is understood.
 * An adapter makes its id usable with the macros above by defining FB_SUB_NAME as its variable:
 * `#define FB_SUB_MATRIX ((fb_log_sub_t)fb_mx_log_sub)` then FB_INFO(MATRIX, ...).
 */
int fb_log_register(const char *name);

/** Sets every subsystem to `level`. */
void fb_log_set_level_all(fb_log_level_t level);

/**
 * Applies a verbosity spec: a level name ("info") for all subsystems, and/or comma-separated
 * "subsystem=level" pairs ("info,http=debug"). Returns 0, or FB_EINVAL leaving the levels
 * unchanged; on error `*bad` (if not NULL) points at the offending part of `spec`.
 */
int fb_log_apply_spec(const char *spec, const char **bad);

/**
 * Validates a verbosity spec exactly as fb_log_apply_spec() would read it, without changing any
 * level. Returns 0, or FB_EINVAL; on error `*bad` (if not NULL) points at the offending part of
 * `spec`. Like the rest of logging, it must be called from the loop thread only.
 */
int fb_log_check_spec(const char *spec, const char **bad);

/** Parses a level name ("err", "warn", "notice", "info", "debug", "trace"); -1 if unknown. */
int fb_log_level_parse(const char *name);

/** Returns a subsystem's name ("http"). */
const char *fb_log_sub_name(fb_log_sub_t sub);

/** Chooses the output format. */
void fb_log_set_format(fb_log_format_t format);

#endif /* FRICHEBOT_LOG_H */
