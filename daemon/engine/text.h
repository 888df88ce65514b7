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

/**
 * Parses a French duration such as "6 semaines", "3 jours", "2 mois", "1 an", "90 minutes",
 * "12 heures", "1 semaine et 2 jours" (a month is 30 days, a year 365 days; singular, plural,
 * accents and abbreviations j/h/min/s accepted). Sets `*seconds` and returns 0, or returns
 * FB_EINVAL.
 */
int fb_text_duration(const char *text, long long *seconds /* OUT */);

/** The unit of a delay read by fb_text_later(), as the user wrote it. */
typedef enum {
    FB_DELAY_DAY = 0,
    FB_DELAY_WEEK,
    FB_DELAY_MONTH,
    FB_DELAY_YEAR,
} fb_delay_unit_t;

/** The longest delay fb_text_later() gives: one year. */
#define FB_DELAY_MAX_DAYS 365

/** A delay read by fb_text_later(): `n` (>= 1) `unit`s, `seconds` in all. */
typedef struct {
    unsigned n;
    fb_delay_unit_t unit;
    long long seconds;
    bool capped; /* the text asked for more than FB_DELAY_MAX_DAYS: 12 months, one year */
} fb_delay_t;

/** What fb_text_later() made of a text. */
typedef enum {
    FB_LATER_NO = 0, /* no "later" with a number: the text is to be read otherwise */
    FB_LATER_PLAIN,  /* "later" with a number that is no delay ("dans 3", "plus tard 0 jour") */
    FB_LATER_DELAY,  /* "later" with a delay: `*delay` is set */
} fb_later_t;

/**
 * Reads an answer asking to be reminded later after a delay: "plus tard 3 mois", "plus tard
 * dans 3 mois", "dans 2 semaines", "relancez-moi dans un mois", "rappelez-moi dans 10 jours",
 * "d'ici six mois", "pas avant 15 jours". Folded text (fb_text_fold) must start with words
 * saying "later" ("plus tard", "pas maintenant", "pas encore", "pas avant", "relancez-moi",
 * "rappelez-moi", "recontactez-moi", "revenez vers moi"; "ok", "bon", "non"... may come before)
 * and/or "dans" / "d'ici", then a number (digits, or un/une, deux ... douze, quinze) and a unit
 * (jour(s)/j, semaine(s), mois, an(s)/année(s)); what follows the unit is ignored. A month is 30
 * days, a year 365 days; a delay above FB_DELAY_MAX_DAYS becomes one year, said "12 mois"
 * (`capped`). "plus tard un jour" (someday) is no delay: FB_LATER_NO. Pure, no allocation.
 */
fb_later_t fb_text_later(const char *text, fb_delay_t *delay /* OUT */);

/**
 * Writes `delay` in French ("3 mois", "1 jour", "2 semaines", "1 an", "12 mois" when capped)
 * into `out` (capacity `cap`, NUL-terminated when cap > 0). Returns the length, like snprintf.
 */
size_t fb_text_delay_format(const fb_delay_t *delay, char *out, size_t cap);

/**
 * True when `text` reads as a question (text_question.c): it ends with "?" (closing spaces, dots
 * and "!" aside), or, folded, starts with an interrogative form ("comment", "pourquoi", "qui",
 * "quand", "combien", "quel(le)(s)", "c'est quoi", "qu'est-ce", "est-ce que", "peut-on",
 * "faut-il", "que faire"...) or holds one anywhere ("c'est quoi", "est-ce que", "comment",
 * "pourquoi", "combien", "je voudrais savoir"...). A lone "que" does not ("que des commerces").
 */
bool fb_text_is_question(const char *text);

/** True when `text` has an interrogative form (fb_text_is_question() without the final "?"). */
bool fb_text_has_question_form(const char *text);

/** True when `text` ends with a question mark (closing spaces, dots and "!" aside). */
bool fb_text_ends_with_question_mark(const char *text);

#endif /* FB_ENGINE_TEXT_H */
