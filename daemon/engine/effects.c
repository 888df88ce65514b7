/* SPDX-License-Identifier: MIT */
/*
 * effects.c - the effect names, generated from FB_EFFECTS (see effects.h).
 */
#include "engine/effects.h"

#include <stdarg.h>
#include <string.h>

#include "frichebot/alloc.h"

#define FB_EFFECT_NAME_(e, name, key) name,
static const char *const names[] = {FB_EFFECTS(FB_EFFECT_NAME_)};
#undef FB_EFFECT_NAME_

#define FB_EFFECT_KEY_(e, name, key) key,
static const char *const keys[] = {FB_EFFECTS(FB_EFFECT_KEY_)};
#undef FB_EFFECT_KEY_

const char *fb_effect_name(fb_effect_t t)
{
    if ((int)t < 0 || (int)t >= FB_EFFECT_COUNT)
        return NULL;
    return names[t];
}

const char *fb_effect_key(fb_effect_t t)
{
    if ((int)t < 0 || (int)t >= FB_EFFECT_COUNT)
        return NULL;
    return keys[t];
}

fb_effect_t fb_effect_from_name(const char *name)
{
    if (!name)
        return FB_EFFECT_UNKNOWN;
    for (int i = 0; i < FB_EFFECT_COUNT; i++)
        if (strcmp(names[i], name) == 0)
            return (fb_effect_t)i;
    return FB_EFFECT_UNKNOWN;
}

fb_effect_t fb_effect_type(const json_t *e)
{
    return fb_effect_from_name(json_string_value(json_object_get(e, "type")));
}

json_t *fb_effect_new(fb_effect_t t)
{
    const char *name = fb_effect_name(t);
    FB_ASSERT(name != NULL);
    json_t *o = json_object();
    (void)json_object_set_new_nocheck(o, "type", json_string_nocheck(name)); /* ASCII names */
    return o;
}

/* Adds `n` (key, value) string pairs from `ap` to `o` (stolen); NULL when a value is NULL or
 * not valid UTF-8 (`o` released then). */
static json_t *add_strings(json_t *o, size_t n, va_list ap)
{
    for (size_t i = 0; i < n; i++) {
        const char *key = va_arg(ap, const char *);
        const char *value = va_arg(ap, const char *);
        json_t *v = value ? json_string(value) : NULL;
        if (!v || json_object_set_new_nocheck(o, key, v) != 0) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

json_t *fb_json_strings(size_t n, ...)
{
    va_list ap;
    va_start(ap, n);
    json_t *o = add_strings(json_object(), n, ap);
    va_end(ap);
    return o;
}

json_t *fb_effect_strings(fb_effect_t t, size_t n, ...)
{
    va_list ap;
    va_start(ap, n);
    json_t *o = add_strings(fb_effect_new(t), n, ap);
    va_end(ap);
    return o;
}
