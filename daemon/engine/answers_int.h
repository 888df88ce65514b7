/* SPDX-License-Identifier: MIT */
/*
 * answers_int.h - private to the answer parsers (answers*.c): the folded-word helpers they all use
 * (inline: they run for every word of every answer), the number and date lexer's tokens, the
 * quantities, and the functions one parser borrows from another. Nothing else includes it.
 *
 * The parsers understand what a French-speaking user typed, for each answer type (answers.h).
 * The dialog engine (machine.c) calls one parser per question type; each is a pure function of
 * the text (and of `now` for dates) that either fills its output and returns FB_ANSWER_OK or says
 * why it could not (unknown, invalid, ambiguous, out of range). Comparison goes through text.h
 * folding ("Élodie" == "elodie"), and typo tolerance through text.h budgets, so that short words
 * ("oui", "non", "mai") only ever match exactly.
 *
 * Numbers and dates cannot use the folded text alone (folding turns the decimal comma of "2,5"
 * into a space), so they run a small lexer over the raw UTF-8 that understands French numerals
 * ("3 000", "3.000", "2,5", narrow no-break spaces) and folds the words in between.
 *
 * Common rules for every parser, in this order: NULL, more than FB_ANSWER_MAX_BYTES bytes, invalid
 * UTF-8 or nothing left after folding is INVALID; a whole answer meaning "je ne sais pas" is
 * UNKNOWN; then the type's own grammar runs; when it understands nothing and the answer contains
 * a "je ne sais pas" phrase ("euh je sais pas trop quand"), the result is UNKNOWN, not INVALID.
 *
 * Files: answers.c (helpers, "je ne sais pas", yes/no, free text), answers_number.c (numerals,
 * the lexer, quantities), answers_choice.c (choices), answers_date.c (dates).
 */
#ifndef FB_ENGINE_ANSWERS_INT_H
#define FB_ENGINE_ANSWERS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/utf8.h"
#include "engine/answers.h"
#include "engine/text.h"
#include "frichebot/alloc.h"

#define BAD_CP FB_UTF8_BAD

/* A borrowed slice of a folded string: lowercase ASCII words separated by single spaces. */
typedef struct span_s {
    const char *p;
    size_t n;
} span_t;

/* A folded phrase of a word list with its length, so that scanning a list costs no strlen().
 * Lists end with PH_END (s == NULL). */
typedef struct phrase_s {
    const char *s;
    size_t n;
} phrase_t;

#define PH(lit)                                                                                    \
    {                                                                                              \
        lit, sizeof(lit) - 1                                                                       \
    }
#define PH_END                                                                                     \
    {                                                                                              \
        NULL, 0                                                                                    \
    }

/* A folded copy of an answer: in `small` when it fits, else on the heap (fold_done frees it). */
#define FOLD_SMALL 256

struct folded {
    char *p;
    size_t n;
    char small[FOLD_SMALL];
};

enum tok_kind { TK_NUM, TK_WORD, TK_SEP };

#define TOK_WORD_MAX 24
#define MAX_TOKS     64

/* A token of the number and date lexer. */
struct tok {
    enum tok_kind kind;
    bool space_before; /* separated from the previous token (space, punctuation, start) */
    char sep;          /* TK_SEP: '-', '/' or '.' */
    /* TK_NUM: the value is mant * 10^exp; ndigits counts the digits of the first group. */
    uint64_t mant;
    int exp;
    unsigned sig;   /* significant digits in mant */
    unsigned fracd; /* decimal digits read */
    unsigned ndigits;
    bool big; /* more integer digits than can be exact: refused */
    /* TK_WORD: folded letters and digits ("ha", "m2"); wlen > TOK_WORD_MAX - 1 never matches. */
    size_t wlen;
    char w[TOK_WORD_MAX];
};

struct toks {
    size_t n;
    bool overflow;              /* more than MAX_TOKS tokens: the answer is refused */
    struct tok t[MAX_TOKS + 1]; /* the extra slot absorbs writes past the end */
};

/* An exact decimal m * 10^e (so that "2,5 ha" is exactly 25000 m²). */
struct dec {
    uint64_t m;
    int e;
    bool bad; /* overflowed */
};

enum ukind { U_NONE, U_M2, U_HA, U_KM2, U_EUR, U_YEAR, U_MONTH, U_WEEK, U_DAY, U_OTHER };

enum family { F_NONE, F_SURFACE, F_MONEY, F_TIME, F_OTHER };

/* One quantity found in the answer. */
struct item {
    struct dec v;
    bool neg;
    enum ukind unit;
    bool strong;  /* written with digits or with a unit: beats bare number words ("un", "neuf") */
    bool bad;     /* a number we cannot use ("des centaines") */
    size_t start; /* first token */
    size_t end;   /* one past the last token */
};

/* What an answer to a number question says: one quantity, a range ("2 à 3 ha": the mean) or a
 * compound duration ("1 an et 6 mois"). */
struct quantity {
    struct item a, b;
    int kind; /* 1 single, 2 range, 3 years + months */
};

/* Bytes of the longest entry of fb__ans_unknown_phrases: longer answers (beyond the typo budget of
 * 2) cannot be one. */
#define UNKNOWN_PHRASE_MAX 24
extern const phrase_t fb__ans_unknown_phrases[];

bool fb__ans_unknown_folded(span_t f);

bool fb__ans_contains_unknown(span_t f);

int64_t fb__ans_numeral_word(span_t w);

size_t fb__ans_numeral_parse(const span_t *words, size_t n, uint64_t *value);

void fb__ans_lex(const char *s, size_t len, bool dates, struct toks *tk);

enum family fb__ans_unit_family(enum ukind u);

fb_answer_status_t fb__ans_quantity_parse(const struct toks *tk, size_t from, struct quantity *q);

bool fb__ans_quantity_to(const struct quantity *q, enum ukind target, double *out);

extern const phrase_t fb__ans_ordinal_suffixes[];

static inline span_t span_of(const char *s)
{
    span_t r = {s, strlen(s)};
    return r;
}

static inline bool span_is(span_t s, const char *lit)
{
    /* Called for every word against long word lists: reject on the first byte, then on the
     * length, before comparing (lit[s.n] is only read once lit is known to be that long). */
    if (s.n == 0)
        return lit[0] == '\0';
    if (s.p[0] != lit[0])
        return false;
    size_t n = strnlen(lit, s.n + 1);
    return n == s.n && memcmp(s.p, lit, n) == 0;
}

static inline bool span_eq(span_t a, span_t b)
{
    return a.n == b.n && memcmp(a.p, b.p, a.n) == 0;
}

static inline span_t span_trim(span_t s)
{
    while (s.n && s.p[0] == ' ') {
        s.p++;
        s.n--;
    }
    while (s.n && s.p[s.n - 1] == ' ')
        s.n--;
    return s;
}

/* Iterates the words of `s`: returns false when there are no more, else sets *w and advances *pos
 * (start with *pos = 0). */
static inline bool word_next(span_t s, size_t *pos, span_t *w)
{
    size_t i = *pos;
    while (i < s.n && s.p[i] == ' ')
        i++;
    if (i >= s.n) {
        *pos = i;
        return false;
    }
    size_t start = i;
    while (i < s.n && s.p[i] != ' ')
        i++;
    w->p = s.p + start;
    w->n = i - start;
    *pos = i;
    return true;
}

static inline size_t word_count(span_t s)
{
    size_t pos = 0, n = 0;
    span_t w;
    while (word_next(s, &pos, &w))
        n++;
    return n;
}

/* True when `w` equals the phrase (first byte, then length, then the rest). */
static inline bool span_is_ph(span_t w, const phrase_t *ph)
{
    return w.n == ph->n && w.n > 0 && w.p[0] == ph->s[0] && memcmp(w.p, ph->s, w.n) == 0;
}

/* True when `w` is one of the phrases of `list`. */
static inline bool in_list(span_t w, const phrase_t *list)
{
    if (w.n == 0)
        return false;
    for (; list->s; list++)
        if (span_is_ph(w, list))
            return true;
    return false;
}

/* True when `s` starts with the whole words of `ph`; *rest is what follows, trimmed. */
static inline bool starts_with_phrase(span_t s, const phrase_t *ph, span_t *rest)
{
    size_t n = ph->n;
    if (s.n < n || s.p[0] != ph->s[0] || memcmp(s.p, ph->s, n) != 0 || (s.n > n && s.p[n] != ' '))
        return false;
    span_t r = {s.p + n, s.n - n};
    *rest = span_trim(r);
    return true;
}

/* starts_with_phrase() for a literal phrase. */
static inline bool starts_with_lit(span_t s, const char *lit, span_t *rest)
{
    phrase_t ph = {lit, strlen(lit)};
    return starts_with_phrase(s, &ph, rest);
}

/* True when `s` ends with the whole words of `ph`; *rest is what precedes, trimmed. */
static inline bool ends_with_phrase(span_t s, const phrase_t *ph, span_t *rest)
{
    size_t n = ph->n;
    if (s.n < n || s.p[s.n - 1] != ph->s[n - 1] || memcmp(s.p + s.n - n, ph->s, n) != 0 ||
        (s.n > n && s.p[s.n - n - 1] != ' '))
        return false;
    span_t r = {s.p, s.n - n};
    *rest = span_trim(r);
    return true;
}

/* Removes leading phrases of `list` while one matches and something would be left. */
static inline span_t strip_leading(span_t s, const phrase_t *list)
{
    for (bool again = true; again;) {
        again = false;
        for (const phrase_t *p = list; p->s; p++) {
            span_t rest;
            if (starts_with_phrase(s, p, &rest) && rest.n > 0) {
                s = rest;
                again = true;
                break;
            }
        }
    }
    return s;
}

/* Removes trailing phrases of `list` while one matches and something would be left. */
static inline span_t strip_trailing(span_t s, const phrase_t *list)
{
    for (bool again = true; again;) {
        again = false;
        for (const phrase_t *p = list; p->s; p++) {
            span_t rest;
            if (ends_with_phrase(s, p, &rest) && rest.n > 0) {
                s = rest;
                again = true;
                break;
            }
        }
    }
    return s;
}

/* True when |a - b| > budget: then fb_text_distance(a, b, budget) is budget + 1 without work. */
static inline bool lengths_apart(size_t a, size_t b, unsigned budget)
{
    return (a > b ? a - b : b - a) > budget;
}

/* Typo distance between two folded keys, or more than the budget of `key` when beyond it. */
static inline unsigned typo_distance(span_t in, span_t key)
{
    unsigned budget = fb_text_typo_budget(key.n);
    if (lengths_apart(in.n, key.n, budget))
        return budget + 1;
    return fb_text_distance(in.p, in.n, key.p, key.n, budget);
}

static inline bool typo_ok(span_t in, span_t key, unsigned *d)
{
    *d = typo_distance(in, key);
    return *d <= fb_text_typo_budget(key.n);
}

/* Folds `len` bytes of `text` (folding never lengthens UTF-8: at most `len` bytes result). */
static inline void fold_into(struct folded *f, const char *text, size_t len)
{
    f->p = len < FOLD_SMALL ? f->small : fb_malloc(len + 1);
    f->n = fb_text_fold(text, len, f->p, len + 1);
    if (f->n > len) { /* cannot happen (see above), but never truncate */
        if (f->p != f->small)
            fb_free(f->p);
        f->p = fb_malloc(f->n + 1);
        fb_text_fold(text, len, f->p, f->n + 1);
    }
}

static inline void fold_done(struct folded *f)
{
    if (f->p != f->small)
        fb_free(f->p);
    f->p = NULL;
}

static inline span_t folded_span(const struct folded *f)
{
    span_t s = {f->p, f->n};
    return s;
}

/* The common first step of the choice parsers: rejects NULL, oversized, invalid UTF-8 and empty
 * answers (FB_ANSWER_INVALID), else returns FB_ANSWER_OK with *f the folded answer (fold_done it;
 * on error there is nothing to release). */
static inline fb_answer_status_t prepare_into(const char *text, struct folded *f /* OUT */)
{
    if (!text)
        return FB_ANSWER_INVALID;
    size_t len = strnlen(text, FB_ANSWER_MAX_BYTES + 1);
    if (len > FB_ANSWER_MAX_BYTES || !fb_utf8_valid(text, len))
        return FB_ANSWER_INVALID;
    fold_into(f, text, len);
    if (f->n == 0) {
        fold_done(f);
        return FB_ANSWER_INVALID;
    }
    return FB_ANSWER_OK;
}

/* The common first step of every parser: rejects NULL, oversized, invalid UTF-8 and empty
 * answers (FB_ANSWER_INVALID), else returns FB_ANSWER_OK with *folded a new folded copy. */
static inline fb_answer_status_t prepare(const char *text, char **folded /* OUT */)
{
    *folded = NULL;
    if (!text)
        return FB_ANSWER_INVALID;
    size_t len = strnlen(text, FB_ANSWER_MAX_BYTES + 1);
    if (len > FB_ANSWER_MAX_BYTES || !fb_utf8_valid(text, len))
        return FB_ANSWER_INVALID;
    char *f = fb_text_fold_dup(text);
    if (!f[0]) {
        fb_free(f);
        return FB_ANSWER_INVALID;
    }
    *folded = f;
    return FB_ANSWER_OK;
}

/* The word of a token; too long words (and non-words) are "\x01", which equals no folded word. */
static inline span_t tok_span(const struct tok *t)
{
    span_t s = {"\x01", 1};
    if (t->kind == TK_WORD && t->wlen < TOK_WORD_MAX) {
        s.p = t->w;
        s.n = t->wlen;
    }
    return s;
}

static inline bool tok_is(const struct toks *tk, size_t i, const char *w)
{
    return i < tk->n && tk->t[i].kind == TK_WORD && span_is(tok_span(&tk->t[i]), w);
}

static inline bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

#endif
