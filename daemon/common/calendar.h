/* SPDX-License-Identifier: MIT */
/*
 * calendar.h - Europe/Paris civil time and French working hours: pure functions of Unix time
 * (no tz database, no clock). Used by the reminders' working hours, escalation's watchdog and
 * the stats' months.
 */
#ifndef FB_CALENDAR_H
#define FB_CALENDAR_H

#include <stdbool.h>
#include <stdint.h>

/** Easter Sunday of `year` (Gregorian computus, 1583..9999): *month 3 or 4, *day. */
void fb_easter(int year, int *month /* OUT */, int *day /* OUT */);

/** True for a French public holiday (metropolitan list: 1 Jan, Easter Monday, 1 May, 8 May,
 * Ascension, Whit Monday, 14 Jul, 15 Aug, 1 Nov, 11 Nov, 25 Dec). month 1..12, day 1..31. */
bool fb_fr_holiday(int year, int month, int day);

/** The Europe/Paris UTC offset in seconds (3600, or 7200 in summer time) at Unix time `t`:
 * summer time from the last Sunday of March 01:00 UTC to the last Sunday of October 01:00 UTC. */
int fb_paris_offset(int64_t t);

/** Working hours: [start_hour, end_hour) local time, Monday to Friday, holidays excluded. */
typedef struct fb_hours_s {
    unsigned start_hour; /* 0..23 */
    unsigned end_hour;   /* start_hour+1..24 */
} fb_hours_t;

/** True when Unix time `t` (seconds) is within working hours in Paris. */
bool fb_hours_open(const fb_hours_t *h, int64_t t);

/** `t` when it is within working hours, else the next opening (Unix seconds). */
int64_t fb_hours_next_open(const fb_hours_t *h, int64_t t);

#endif /* FB_CALENDAR_H */
