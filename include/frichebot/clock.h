/* SPDX-License-Identifier: MIT */
/*
 * clock.h - the daemon's clocks, and which one to use for what. There are exactly three:
 *
 *   fb_wall_ms() / fb_wall_s()  the wall clock (CLOCK_REALTIME), in Unix milliseconds or
 *                               seconds: what the daemon stores, compares across processes and
 *                               shows (session times, due reminders, tickets, stats, log lines,
 *                               HTTP dates such as Retry-After). It may jump (NTP, the operator).
 *   fb_mono_ns()                the monotonic clock (CLOCK_MONOTONIC, the one uv_hrtime() reads),
 *                               in nanoseconds: to measure a duration (a PING's round trip, a
 *                               request's latency) and to seed the jitter generator.
 *   uv_now(loop)                libuv's loop time, the monotonic clock in milliseconds cached at
 *                               the start of each loop iteration: for deadlines compared with
 *                               uv_timer timeouts (drain deadlines, leases, back-off), which use
 *                               that same cached time.
 *
 * Nothing else reads a clock: no time(NULL), gettimeofday() or direct clock_gettime() in the
 * daemon or the adapters. The dialog engine reads none at all: its callers pass "now" in.
 */
#ifndef FRICHEBOT_CLOCK_H
#define FRICHEBOT_CLOCK_H

#include <stdint.h>
#include <time.h>

/** Now, in milliseconds since the Unix epoch (CLOCK_REALTIME). */
static inline int64_t fb_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/** Now, in seconds since the Unix epoch (CLOCK_REALTIME), as time(NULL) would say. */
static inline time_t fb_wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec;
}

/** A monotonic time in nanoseconds (CLOCK_MONOTONIC, as uv_hrtime()); only differences mean
 * something. */
static inline uint64_t fb_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif /* FRICHEBOT_CLOCK_H */
