/* SPDX-License-Identifier: MIT */
/*
 * effects.h - the vocabulary of the engine's effects: one X-macro list, the enum it generates and
 * the name <-> enum functions. Everything that builds or reads an effect goes through it, so that
 * a new effect is one line of FB_EFFECTS plus the cases the compiler then asks for.
 *
 * An effect is a JSON object whose "type" member is the effect's name (docs/internals/ENGINE.md,
 * "Effects"); that JSON format is what the router, the transcripts and the tests read, and it does
 * not change. Code that dispatches on an effect switches on fb_effect_t with one case per effect
 * and no `default`, so that -Wswitch-enum (cmake/FbWarnings.cmake) with -Werror fails the build
 * wherever a new effect is forgotten. Pure functions, no allocation unless stated.
 */
#ifndef FB_ENGINE_EFFECTS_H
#define FB_ENGINE_EFFECTS_H

#include <jansson.h>

/*
 * Every effect: X(ENUM_SUFFIX, "json name", "transcript key"), where the transcript key is the
 * French shorthand an author writes under `effets:` in a transcript (docs/dialogs.md), or NULL
 * when the effect has none (written `{type: NAME}`). A transcript's expected effect with several
 * shorthand keys is read by the first in this order. Append new effects at the end.
 */
#define FB_EFFECTS(X)                                                                              \
    X(SAY, "say", NULL)                                                                            \
    X(SCHEDULE, "schedule", "relance")                                                             \
    X(ESCALATE, "escalate", "escalade")                                                            \
    X(CANCEL, "cancel", "annule")                                                                  \
    X(FORGET, "forget", "oubli")                                                                   \
    X(END, "end", "fin")                                                                           \
    X(STAT, "stat", "stat")                                                                        \
    X(STEP, "step", "etape")                                                                       \
    X(AVIS, "avis", NULL)

/** An effect type. FB_EFFECT_UNKNOWN is what a missing or unknown name reads as. */
typedef enum fb_effect_e {
    FB_EFFECT_UNKNOWN = -1, /* no "type", or a name not in FB_EFFECTS */
#define FB_EFFECT_ENUM_(e, name, key) FB_EFFECT_##e,
    FB_EFFECTS(FB_EFFECT_ENUM_)
#undef FB_EFFECT_ENUM_
} fb_effect_t;

/** The number of effect types (FB_EFFECT_UNKNOWN not counted); values are 0..FB_EFFECT_COUNT-1. */
#define FB_EFFECT_ONE_(e, name, key) +1
#define FB_EFFECT_COUNT              (0 FB_EFFECTS(FB_EFFECT_ONE_))

/** The JSON name of `t` ("say"...), a static string; NULL for FB_EFFECT_UNKNOWN. */
const char *fb_effect_name(fb_effect_t t);

/** The effect type named `name` (may be NULL), or FB_EFFECT_UNKNOWN. */
fb_effect_t fb_effect_from_name(const char *name);

/** The type of effect object `e` (borrowed; may be NULL), read from its "type" member. */
fb_effect_t fb_effect_type(const json_t *e);

/** The French transcript key of `t` ("relance"...), a static string, or NULL when it has none. */
const char *fb_effect_key(fb_effect_t t);

/** Returns a new effect object {"type": NAME} for `t` (not FB_EFFECT_UNKNOWN). */
json_t *fb_effect_new(fb_effect_t t);

/**
 * A new JSON object of `n` string members, given as `n` pairs of key (an ASCII literal) and value
 * (UTF-8): what json_pack("{s:s, s:s...}") builds, without parsing a format at each call (the
 * engine makes several per step). NULL, as json_pack() gives, when a value is NULL or not valid
 * UTF-8.
 */
json_t *fb_json_strings(size_t n, ...);

/** The effect {"type": NAME of `t`} with `n` more string members, as fb_json_strings(). */
json_t *fb_effect_strings(fb_effect_t t, size_t n, ...);

#endif
