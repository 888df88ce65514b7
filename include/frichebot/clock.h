/* SPDX-License-Identifier: MIT */
/*
 * clock.h - the wall clock in Unix milliseconds: what the daemon stores and compares (session
 * times, due reminders, tickets, stats). Intervals use libuv's monotonic uv_now() instead.
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

#endif /* FRICHEBOT_CLOCK_H */
