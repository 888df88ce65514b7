/* SPDX-License-Identifier: MIT */
/*
 * calendar.c - Europe/Paris civil time and French working hours, pure functions (no tz database).
 */
#include "common/calendar.h"

#include <stddef.h>

#define DAY_S       86400
#define LOOKAHEAD_D 30 /* days searched for the next opening (holidays never last that long) */

void fb_easter(int year, int *month, int *day)
{
    /* Anonymous Gregorian algorithm (Meeus/Jones/Butcher). */
    int a = year % 19, b = year / 100, c = year % 100, d = b / 4, e = b % 4;
    int f = (b + 8) / 25, g = (b - f + 1) / 3, h = (19 * a + b - d - g + 15) % 30;
    int i = c / 4, k = c % 4, l = (32 + 2 * e + 2 * i - h - k) % 7;
    int m = (a + 11 * h + 22 * l) / 451;
    *month = (h + l - 7 * m + 114) / 31;
    *day = ((h + l - 7 * m + 114) % 31) + 1;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

/* 0 Sunday .. 6 Saturday. */
static int weekday(int64_t days)
{
    int64_t w = (days + 4) % 7; /* 1970-01-01 was a Thursday */
    return (int)(w < 0 ? w + 7 : w);
}

bool fb_fr_holiday(int year, int month, int day)
{
    static const int fixed[][2] = {{1, 1},  {5, 1},  {5, 8},   {7, 14},
                                   {8, 15}, {11, 1}, {11, 11}, {12, 25}};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (fixed[i][0] == month && fixed[i][1] == day)
            return true;
    int em, ed;
    fb_easter(year, &em, &ed);
    int64_t easter = days_from_civil(year, em, ed);
    int64_t today = days_from_civil(year, month, day);
    /* Easter Monday, Ascension (Easter + 39), Whit Monday (Easter + 50). */
    return today == easter + 1 || today == easter + 39 || today == easter + 50;
}

/* Unix time of the last Sunday of `month` (3 or 10) of `year`, 01:00 UTC. */
static int64_t last_sunday_1utc(int year, int month)
{
    int64_t last = days_from_civil(year, month, 31);
    last -= weekday(last);
    return last * DAY_S + 3600;
}

int fb_paris_offset(int64_t t)
{
    int y, m, d;
    civil_from_days(t >= 0 ? t / DAY_S : (t - DAY_S + 1) / DAY_S, &y, &m, &d);
    return t >= last_sunday_1utc(y, 3) && t < last_sunday_1utc(y, 10) ? 7200 : 3600;
}

static bool working_day(int64_t days)
{
    int w = weekday(days);
    if (w == 0 || w == 6)
        return false;
    int y, m, d;
    civil_from_days(days, &y, &m, &d);
    return !fb_fr_holiday(y, m, d);
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

bool fb_hours_open(const fb_hours_t *h, int64_t t)
{
    int64_t local = t + fb_paris_offset(t);
    int64_t days = floor_div(local, DAY_S);
    int64_t sec = local - days * DAY_S;
    return working_day(days) && sec >= (int64_t)h->start_hour * 3600 &&
           sec < (int64_t)h->end_hour * 3600;
}

/* The Unix time of local Paris time `local` (seconds since the epoch, as if UTC). */
static int64_t from_local(int64_t local)
{
    int64_t t = local - 3600;
    return local - fb_paris_offset(t - fb_paris_offset(t) + 3600);
}

int64_t fb_hours_next_open(const fb_hours_t *h, int64_t t)
{
    if (fb_hours_open(h, t))
        return t;
    int64_t local = t + fb_paris_offset(t);
    int64_t days = floor_div(local, DAY_S);
    int64_t sec = local - days * DAY_S;
    if (sec >= (int64_t)h->start_hour * 3600)
        days++; /* today's opening has passed (or today is closed): from tomorrow */
    for (int i = 0; i < LOOKAHEAD_D; i++, days++)
        if (working_day(days)) {
            int64_t open = from_local(days * DAY_S + (int64_t)h->start_hour * 3600);
            if (open > t)
                return open;
        }
    return t + DAY_S; /* unreachable with the French calendar */
}
