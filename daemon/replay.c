/* SPDX-License-Identifier: MIT */
/*
 * replay.c - the transcript replay's clock, reminders and advisors (replay.h).
 */
#define _XOPEN_SOURCE 700 /* strptime */
#include "replay.h"

#include <string.h>
#include <time.h>

#include "engine/effects.h"
#include "engine/engine.h"
#include "frichebot/alloc.h"
#include "frichebot/err.h"

int fb_replay_parse_clock(const char *s, long long *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end) {
        memset(&tm, 0, sizeof(tm));
        end = strptime(s, "%Y-%m-%d", &tm);
        if (!end)
            return FB_EINVAL;
    }
    if (*end == 'Z')
        end++;
    if (*end)
        return FB_EINVAL;
    *out = (long long)timegm(&tm);
    return 0;
}

void fb_replay_timers_cancel(fb_replay_timers_t *q, const char *id)
{
    for (int i = 0; i < q->n;) {
        if (!id || strcmp(q->t[i].id, id) == 0) {
            fb_free(q->t[i].id);
            q->t[i] = q->t[--q->n];
        } else {
            i++;
        }
    }
}

void fb_replay_timers_apply(fb_replay_timers_t *q, const json_t *effects, long long clock)
{
    size_t i;
    const json_t *e;
    json_array_foreach(effects, i, e)
    {
        switch (fb_effect_type(e)) {
        case FB_EFFECT_SCHEDULE: {
            const char *id = json_string_value(json_object_get(e, "id"));
            if (!id)
                break;
            fb_replay_timers_cancel(q, id);
            if (q->n < FB_REPLAY_MAX_TIMERS) {
                q->t[q->n].id = fb_strdup(id);
                q->t[q->n].due = clock + (long long)json_integer_value(json_object_get(e, "after"));
                q->n++;
            }
            break;
        }
        case FB_EFFECT_CANCEL:
            fb_replay_timers_cancel(q, json_string_value(json_object_get(e, "id")));
            break;
        case FB_EFFECT_FORGET:
            fb_replay_timers_cancel(q, NULL);
            break;
        case FB_EFFECT_SAY:
        case FB_EFFECT_ESCALATE:
        case FB_EFFECT_STEP:
        case FB_EFFECT_STAT:
        case FB_EFFECT_END:
        case FB_EFFECT_AVIS:
        case FB_EFFECT_UNKNOWN:
            break;
        }
    }
}

char *fb_replay_timers_take(fb_replay_timers_t *q, long long target, long long *due)
{
    int best = -1;
    for (int i = 0; i < q->n; i++)
        if (q->t[i].due <= target && (best < 0 || q->t[i].due < q->t[best].due))
            best = i;
    if (best < 0)
        return NULL;
    char *id = q->t[best].id;
    *due = q->t[best].due;
    q->t[best] = q->t[--q->n];
    return id;
}

bool fb_replay_advisors_cover(const json_t *list, const fb_geo_t *geo, const char *insee)
{
    const fb_commune_t *c = insee && geo ? fb_geo_by_insee(geo, insee) : NULL;
    size_t i;
    const json_t *t;
    json_array_foreach(list, i, t)
    {
        const char *s = json_string_value(t);
        if (s && (strcmp(s, "*") == 0 || (c && strcmp(s, c->dep) == 0) ||
                  (c && s[0] == 'r' && strcmp(s + 1, c->region) == 0)))
            return true;
    }
    return false;
}
