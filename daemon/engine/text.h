/* SPDX-License-Identifier: MIT */
/*
 * text.h - French text folding and fuzzy comparison, shared by answer matching, choices, commands
 * and the communes index.
 *
 * Folding makes "Saint-Étienne-du-Rouvray", "saint etienne du rouvray" and "SAINT ÉTIENNE DU
 * ROUVRAY" the same key: lowercase, accents removed (Latin-1 supplement and Latin Extended-A,
 * œ->oe, æ->ae, ß->ss), every run of spaces, hyphens, apostrophes (' and ’), underscores and dots
 * becomes one space, other punctuation is dropped, leading and trailing spaces trimmed. Digits are
 * kept. Invalid UTF-8 bytes are dropped. Pure functions, no allocation unless stated.
 */
#ifndef FB_ENGINE_TEXT_H
#define FB_ENGINE_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/**
 * Folds `in` (`len` bytes of UTF-8) into `out` (capacity `cap`, always NUL-terminated when cap >
 * 0). Returns the folded length, or the length it would need (like snprintf) when `cap` is too
 * small.
 */
size_t fb_text_fold(const char *in, size_t len, char *out, size_t cap);

/** Returns a new folded copy of the NUL-terminated `s` (fb_free it). */
char *fb_text_fold_dup(const char *s);

/**
 * Optimal string alignment distance (Damerau-Levenshtein with adjacent transpositions) between two
 * byte strings, stopping early: returns min(distance, max + 1). Meant for folded ASCII keys.
 */
unsigned fb_text_distance(const char *a, size_t alen, const char *b, size_t blen, unsigned max);

/**
 * The typo tolerance for a folded key of `len` bytes: 0 below 4 bytes, 1 from 4 to 7, 2 from 8.
 * Short words must match exactly ("oui" vs "non" must never be confused).
 */
unsigned fb_text_typo_budget(size_t len);

/** The code point fb_text_utf8_decode() reports for an invalid byte. */
#define FB_TEXT_BAD_CP 0xFFFFFFFFu

/**
 * Decodes the UTF-8 sequence at s[0..len) (len >= 1): sets `*cp` and returns its length, or sets
 * `*cp` to FB_TEXT_BAD_CP and returns 1 for an invalid, overlong, surrogate or cut-short sequence.
 */
size_t fb_text_utf8_decode(const unsigned char *s, size_t len, uint32_t *cp /* OUT */);

/** True when `s` (NUL-terminated) is valid UTF-8 with no NUL and no C0 control other than \t \n \r.
 */
bool fb_text_valid_utf8(const char *s, size_t len);

/**
 * Parses a French duration such as "6 semaines", "3 jours", "2 mois", "1 an", "90 minutes",
 * "12 heures", "1 semaine et 2 jours" (a month is 30 days, a year 365 days; singular, plural,
 * accents and abbreviations j/h/min/s accepted). Sets `*seconds` and returns 0, or returns
 * FB_EINVAL.
 */
int fb_text_duration(const char *text, long long *seconds /* OUT */);

#endif /* FB_ENGINE_TEXT_H */
