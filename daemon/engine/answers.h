/* SPDX-License-Identifier: MIT */
/*
 * answers.h - understanding what a French-speaking user typed, for each answer type of a question.
 *
 * Pure functions over UTF-8 text (they fold it with text.h first). Every parser returns one of
 * the fb_answer_status_t values and fills its output only on FB_ANSWER_OK. "je ne sais pas" (and
 * its variants: "sais pas", "jsp", "aucune idée", "je ne sais plus", "ne sait pas", "nsp",
 * "inconnu") is recognised by every parser and returned as FB_ANSWER_UNKNOWN; whether it is
 * accepted is the caller's decision (the question's `je_ne_sais_pas:` flag).
 */
#ifndef FB_ENGINE_ANSWERS_H
#define FB_ENGINE_ANSWERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/**
 * Answers longer than this many bytes are FB_ANSWER_INVALID for every parser but fb_answer_text
 * (whose own bound is max_chars), and never "je ne sais pas". It keeps matching costs bounded.
 */
#define FB_ANSWER_MAX_BYTES 4096

typedef enum fb_answer_status_e {
    FB_ANSWER_OK = 0,
    FB_ANSWER_UNKNOWN,      /* "je ne sais pas" */
    FB_ANSWER_INVALID,      /* not understood */
    FB_ANSWER_AMBIGUOUS,    /* several choices match equally well */
    FB_ANSWER_OUT_OF_RANGE, /* understood, but outside [min, max] or too long */
} fb_answer_status_t;

/** True when the text means "je ne sais pas". */
bool fb_answer_is_unknown(const char *text);

/**
 * Yes/no: oui, o, ouais, yes, y, bien sûr, tout à fait, exact, d'accord, absolument, affirmatif,
 * 1 -> true; non, n, pas du tout, jamais, aucun, nope, no, 0 -> false. `*out` is true for yes.
 */
fb_answer_status_t fb_answer_yesno(const char *text, bool *out /* OUT */);

/** One option of a choice question (as written by the author; folded by the matcher). */
typedef struct fb_choice_s {
    const char *id;              /* "commune" */
    const char *label;           /* "La commune ou l'intercommunalité" */
    const char *const *synonyms; /* NULL-terminated, may be NULL: "mairie", "ville", "epci" */
} fb_choice_t;

/**
 * Single choice: by number ("2", "2.", "n°2", "le 2", "deuxième"), by id, by label or by synonym,
 * case-, accent- and hyphen-insensitive, tolerating small typos (text.h budgets), and by a
 * distinctive word of the label when only one option contains it. `*index` is 0-based.
 * Precedence (deterministic): position > exact id/label/synonym > cardinal in words ("deux", after
 * the exact stage so that an option labelled "Un" wins) > label-word containment > typo. Options
 * tied at a stage, or several options named at once ("2 et 3"), are FB_ANSWER_AMBIGUOUS. An
 * option whose name is itself a "je ne sais pas" phrase ("Inconnu") is chosen, not UNKNOWN.
 */
fb_answer_status_t fb_answer_choice(const fb_choice_t *choices, size_t n, const char *text,
                                    size_t *index /* OUT */);

/**
 * Multiple choice: several choices separated by commas, "et", "ou", "+", "/" or spaces between
 * numbers ("1, 3 et 4", "habitat et commerces"), or "tous"/"toutes"/"aucun". Sets bit i of `*mask`
 * for option i (n <= 64). "aucun" gives mask 0 and FB_ANSWER_OK.
 */
fb_answer_status_t fb_answer_choices(const fb_choice_t *choices, size_t n, const char *text,
                                     uint64_t *mask /* OUT */);

/**
 * A choice list compiled once for matching: the options' ids, labels and synonyms folded and cut
 * into words, so that each answer costs only its own analysis. Immutable once built, so one set
 * may serve any number of threads; it copies what it needs (`choices` may be freed after
 * fb_choice_set_new returns).
 */
typedef struct fb_choice_set_s fb_choice_set_t;

/** Compiles `choices[0..n)`. Returns NULL when `choices` is NULL or `n` is 0 (the matchers treat
 * a NULL set as an empty list: FB_ANSWER_INVALID). Free with fb_choice_set_free. */
fb_choice_set_t *fb_choice_set_new(const fb_choice_t *choices, size_t n);

/** Frees a set from fb_choice_set_new (NULL is ignored). */
void fb_choice_set_free(fb_choice_set_t *set);

/** The number of options of the set (0 for NULL). */
size_t fb_choice_set_count(const fb_choice_set_t *set);

/**
 * fb_answer_choice over a compiled set: for every text, the same status and index as
 * fb_answer_choice(choices, n, text, index) with the `choices` and `n` the set was built from.
 */
fb_answer_status_t fb_answer_choice_in(const fb_choice_set_t *set, const char *text,
                                       size_t *index /* OUT */);

/**
 * fb_answer_choices over a compiled set: the same status and mask as fb_answer_choices(choices, n,
 * text, mask) (so FB_ANSWER_INVALID for a set of more than 64 options).
 */
fb_answer_status_t fb_answer_choices_in(const fb_choice_set_t *set, const char *text,
                                        uint64_t *mask /* OUT */);

/** How a choice answer was understood (fb_answer_choice_match, fb_answer_choices_match). */
typedef enum fb_match_e {
    FB_MATCH_EXACT = 0, /* a position, an option's id, label or synonym, "tous", "aucun" */
    FB_MATCH_LOOSE,     /* words of an option, a distinctive word, a typo: say what was noted */
    FB_MATCH_UNSURE,    /* close readings, or a qualifier the option does not reflect: ask */
} fb_match_t;

#define FB_MATCH_MAX_CANDIDATES 4

/** What a choice matcher understood besides its status. */
typedef struct fb_choice_match_s {
    fb_match_t how;
    size_t n;                               /* FB_MATCH_UNSURE: the number of candidates */
    uint64_t cand[FB_MATCH_MAX_CANDIDATES]; /* option indexes (single), masks (multiple) */
} fb_choice_match_t;

/**
 * fb_answer_choice_in that also says how it matched, and asks rather than guesses. Returns
 * FB_ANSWER_OK with `m->how`:
 *  - EXACT or LOOSE: *index is the option (as fb_answer_choice_in), LOOSE when only words,
 *    inflections (plural, feminine) or typos matched;
 *  - UNSURE: *index is not set; `m->cand[0..m->n)` (1 to FB_MATCH_MAX_CANDIDATES option
 *    indexes, in option order) are the readings to confirm: options tied or close (what
 *    fb_answer_choice_in calls AMBIGUOUS, several options named at once), or a loose pick while
 *    the answer carries a qualifier the option does not reflect: a negation ("pas", "plus",
 *    "aucun", "ne", "sans", "sauf"...), a death, a succession, an unknown, an insolvency or a
 *    bad state ("décédé", "héritiers", "inconnu", "liquidation", "mauvais état"...) that another
 *    option reflects (then those options are candidates too) or, for negations, that no option
 *    reflects.
 * Other statuses as fb_answer_choice_in (AMBIGUOUS only with more than FB_MATCH_MAX_CANDIDATES
 * options tied).
 */
fb_answer_status_t fb_answer_choice_match(const fb_choice_set_t *set, const char *text,
                                          size_t *index /* OUT */, fb_choice_match_t *m /* OUT */);

/**
 * fb_answer_choices_in that also says how it matched. Besides its answers: "non", "non, aucune
 * des deux", "pas concerné", "aucune contrainte", "rien de tout ça" are the empty set (EXACT);
 * an item negated ("pas de monument", "aucun risque", "sans inondation") adds nothing and makes
 * the match LOOSE (an answer of only negated items is the empty set, LOOSE); "mais" separates
 * items too. LOOSE when an item matched loosely; UNSURE (one candidate mask: what was read) when
 * an item carries a qualifier its option does not reflect; AMBIGUOUS items give UNSURE with
 * their tied options each as a candidate added to the rest.
 */
fb_answer_status_t fb_answer_choices_match(const fb_choice_set_t *set, const char *text,
                                           uint64_t *mask /* OUT */,
                                           fb_choice_match_t *m /* OUT */);

/** Units a number question can be asked in. The value is converted to the question's unit. */
typedef enum fb_unit_e {
    FB_UNIT_NONE = 0, /* a plain number (a count, a year) */
    FB_UNIT_M2,  /* surfaces: m², m2, mètres carrés; ha, hectares (x10 000); km² (x1 000 000) */
    FB_UNIT_HA,  /* same family, value in hectares */
    FB_UNIT_EUR, /* amounts: €, euros, k€ (x1 000), M€ / millions (x1 000 000) */
    FB_UNIT_YEARS,  /* durations: an, ans, années; mois (/12) */
    FB_UNIT_MONTHS, /* durations: mois; an, ans (x12) */
} fb_unit_t;

/**
 * Numbers as French people write them: "2,5 ha", "3 000 m2", "3 000 m²", "3.000 m2" (dot as
 * thousands separator when followed by exactly 3 digits), "1,2 million", "environ 5000",
 * "5 000 à 6 000" (takes the mean), "deux", "dix", "cent" (words up to "mille"). A unit of another
 * family is FB_ANSWER_INVALID; no unit means the question's unit. Range [min, max] is checked after
 * conversion (FB_ANSWER_OUT_OF_RANGE).
 */
fb_answer_status_t fb_answer_number(const char *text, fb_unit_t unit, double min, double max,
                                    double *out /* OUT */);

/** A date as precise as the user said it: day 0 when unknown, month 0 when only a year. */
typedef struct fb_date_s {
    int year, month, day;
} fb_date_t;

/**
 * Dates in French, relative to `now` (Unix seconds, UTC): "mars 2027", "en mars" (the next March),
 * "15/03/2027", "15 mars 2027", "2027", "dans 3 mois", "dans deux ans", "d'ici 6 semaines",
 * "l'année prochaine", "fin 2026" (December), "début 2027" (January), "le mois prochain",
 * "aujourd'hui", "maintenant". Dates before `now`'s month are FB_ANSWER_OUT_OF_RANGE when
 * `future_only`. Relative forms in days or weeks give a day, in months or years a month. A year
 * outside 1..9999 after arithmetic is FB_ANSWER_OUT_OF_RANGE; a `now` outside those years makes
 * every answer FB_ANSWER_INVALID.
 */
fb_answer_status_t fb_answer_date(const char *text, int64_t now, bool future_only,
                                  fb_date_t *out /* OUT */);

/**
 * For a duration in years asked as "since when": "depuis 2015", "fermé en 2012", "depuis mars
 * 2019", "depuis les années 90" (the middle of the decade: `*approx` true) give the years
 * elapsed until `now` (Unix seconds, UTC), rounded to the nearest year when a month is given.
 * An answer holding a duration unit ("ans", "mois") or not exactly one past year is INVALID
 * (fb_answer_number reads durations).
 */
fb_answer_status_t fb_answer_years_since(const char *text, int64_t now, double *years /* OUT */,
                                         bool *approx /* OUT */);

/**
 * Free text: trimmed, control characters removed, valid UTF-8 required (else INVALID), length in
 * characters within [min_chars, max_chars] (else OUT_OF_RANGE). `*out` is a new string (fb_free).
 */
fb_answer_status_t fb_answer_text(const char *text, size_t min_chars, size_t max_chars,
                                  char **out /* OUT */);

#endif /* FB_ENGINE_ANSWERS_H */
