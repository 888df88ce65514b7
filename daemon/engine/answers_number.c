/* SPDX-License-Identifier: MIT */
/*
 * answers_number.c - numbers (see answers_int.h): French numerals in words, the lexer for
 * numbers and dates, and quantities (a number, its multipliers and its unit).
 */
#include <math.h>
#include <string.h>

#include "common/utf8.h"
#include "engine/answers.h"
#include "engine/answers_int.h"
#include "engine/text.h"
#include "frichebot/alloc.h"

/* ---------------------------------------------------------------------------------------------
 * French numerals in words
 * ------------------------------------------------------------------------------------------- */

static const struct {
    const char *w;
    uint64_t v;
} numeral_words[] = {
    {"zero", 0},
    {"un", 1},
    {"une", 1},
    {"deux", 2},
    {"trois", 3},
    {"quatre", 4},
    {"cinq", 5},
    {"six", 6},
    {"sept", 7},
    {"huit", 8},
    {"neuf", 9},
    {"dix", 10},
    {"onze", 11},
    {"douze", 12},
    {"treize", 13},
    {"quatorze", 14},
    {"quinze", 15},
    {"seize", 16},
    {"vingt", 20},
    {"vingts", 20},
    {"trente", 30},
    {"quarante", 40},
    {"cinquante", 50},
    {"soixante", 60},
    {"cent", 100},
    {"cents", 100},
    {"mille", 1000},
    {"million", 1000000},
    {"millions", 1000000},
    {"milliard", 1000000000},
    {"milliards", 1000000000},
};

/* The value of one numeral word, or -1. */
int64_t fb__ans_numeral_word(span_t w)
{
    for (size_t i = 0; i < FB_ARRAY_SIZE(numeral_words); i++)
        if (span_is(w, numeral_words[i].w))
            return (int64_t)numeral_words[i].v;
    return -1;
}

/*
 * Reads a French numeral written in words from words[0..n) ("deux", "vingt et un",
 * "quatre vingt dix", "mille neuf cent quatre vingt dix", "deux millions trois cent mille").
 * Returns how many words it used (0: not a numeral) and sets *value. Stops at the first word that
 * cannot continue the numeral, so "deux trois" reads "deux" only.
 */
size_t fb__ans_numeral_parse(const span_t *words, size_t n, uint64_t *value)
{
    uint64_t total = 0, cur = 0, last_big = UINT64_MAX;
    size_t used = 0;
    bool any = false, thousand = false;
    for (size_t i = 0; i < n; i++) {
        span_t w = words[i];
        if (any && span_is(w, "et") && i + 1 < n &&
            (span_is(words[i + 1], "un") || span_is(words[i + 1], "une") ||
             span_is(words[i + 1], "onze")) &&
            cur % 10 == 0 && cur % 100 >= 20)
            continue;
        int64_t v = fb__ans_numeral_word(w);
        if (v < 0)
            break;
        uint64_t uv = (uint64_t)v;
        uint64_t r = cur % 100;
        if (uv == 0) {
            if (any)
                break;
            used = i + 1;
            break;
        } else if (uv < 100) {
            if (uv == 20 && r == 4)
                cur += 76; /* quatre-vingt */
            else if (r == 0 || (r == 10 && uv >= 7 && uv <= 9) ||
                     (r >= 20 && r % 10 == 0 && uv <= 9) || ((r == 60 || r == 80) && uv <= 19))
                cur += uv;
            else
                break;
        } else if (uv == 100) {
            if (cur == 0)
                cur = 100;
            else if (cur < 100)
                cur *= 100;
            else
                break;
        } else if (uv == 1000) {
            if (thousand)
                break;
            total += (cur ? cur : 1) * 1000;
            cur = 0;
            thousand = true;
        } else {
            if (uv >= last_big || thousand)
                break;
            total += (cur ? cur : 1) * uv;
            cur = 0;
            last_big = uv;
        }
        any = true;
        used = i + 1;
    }
    *value = total + cur;
    return used;
}

/* ---------------------------------------------------------------------------------------------
 * The lexer for numbers and dates
 * ------------------------------------------------------------------------------------------- */

#define DEC_MAX 1000000000000000000ull /* 10^18: mantissas stay below it */

static struct tok *tok_push(struct toks *tk, enum tok_kind kind, bool space)
{
    struct tok *t = &tk->t[tk->n < MAX_TOKS ? tk->n : MAX_TOKS];
    if (tk->n < MAX_TOKS)
        tk->n++;
    else
        tk->overflow = true;
    memset(t, 0, sizeof(*t));
    t->kind = kind;
    t->space_before = space;
    return t;
}

static void word_append(struct tok *t, const char *s, size_t n)
{
    if (t->wlen + n >= TOK_WORD_MAX) {
        t->wlen = TOK_WORD_MAX;
        return;
    }
    memcpy(t->w + t->wlen, s, n);
    t->wlen += n;
    t->w[t->wlen] = '\0';
}

static size_t digit_run(const unsigned char *p, size_t len, size_t i)
{
    while (i < len && is_digit(p[i]))
        i++;
    return i;
}

/* Adds one digit to a number token; fraction digits past 18 are dropped (not significant). */
static void num_digit(struct tok *t, unsigned d, bool frac)
{
    if (frac) {
        if (t->sig >= 18 || t->fracd >= 18)
            return;
        t->fracd++;
        t->mant = t->mant * 10 + d;
        t->exp--;
        if (t->mant)
            t->sig++;
        return;
    }
    if (t->mant == 0 && d == 0)
        return;
    if (t->sig >= 18) {
        t->big = true;
        return;
    }
    t->mant = t->mant * 10 + d;
    t->sig++;
}

/* Length of a thousands separator at p[i]: a space, a no-break or narrow no-break or thin space,
 * an apostrophe, or a dot (*dot set); 0 when there is none. */
static size_t group_sep(const unsigned char *p, size_t len, size_t i, bool *dot)
{
    *dot = false;
    if (i >= len)
        return 0;
    if (p[i] == ' ' || p[i] == '\'')
        return 1;
    if (p[i] == '.') {
        *dot = true;
        return 1;
    }
    if (i + 1 < len && p[i] == 0xC2 && p[i + 1] == 0xA0)
        return 2;
    if (i + 2 < len && p[i] == 0xE2 && p[i + 1] == 0x80 &&
        (p[i + 2] == 0xAF || p[i + 2] == 0x89 || p[i + 2] == 0x99))
        return 3;
    return 0;
}

/*
 * Lexes a French number starting at the digit p[i] into `t` and returns the index after it:
 * thousands groups of exactly 3 digits after a first group of 1-3 digits not starting with 0
 * ("3 000", "3.000", "1 250 000", "12'500"), then a decimal part after a comma, or after a dot
 * when no dot grouped thousands ("2,5", "2.5", "1.000,5").
 */
static size_t lex_number(const unsigned char *p, size_t len, size_t i, struct tok *t)
{
    size_t j = digit_run(p, len, i);
    for (size_t a = i; a < j; a++)
        num_digit(t, (unsigned)(p[a] - '0'), false);
    t->ndigits = (unsigned)(j - i > 99 ? 99 : j - i);
    bool dot_group = false;
    if (j - i <= 3 && p[i] != '0') {
        for (;;) {
            bool dot;
            size_t k = group_sep(p, len, j, &dot);
            if (!k)
                break;
            size_t a = j + k, b = digit_run(p, len, j + k);
            if (b - a != 3)
                break;
            for (; a < b; a++)
                num_digit(t, (unsigned)(p[a] - '0'), false);
            dot_group = dot_group || dot;
            j = b;
        }
    }
    if (j + 1 < len && (p[j] == ',' || (p[j] == '.' && !dot_group)) && is_digit(p[j + 1])) {
        size_t b = digit_run(p, len, j + 1);
        for (size_t a = j + 1; a < b; a++)
            num_digit(t, (unsigned)(p[a] - '0'), true);
        j = b;
    }
    return j;
}

/* Lexes a bare run of digits (dates): value capped at 10^9, ndigits the run's length. */
static size_t lex_int(const unsigned char *p, size_t len, size_t i, struct tok *t)
{
    size_t j = digit_run(p, len, i);
    uint64_t v = 0;
    for (size_t a = i; a < j; a++)
        if (v < 1000000000u)
            v = v * 10 + (unsigned)(p[a] - '0');
    t->mant = v;
    t->ndigits = (unsigned)(j - i > 99 ? 99 : j - i);
    return j;
}

static bool is_hyphen(uint32_t cp)
{
    return cp == '-' || (cp >= 0x2010 && cp <= 0x2015) || cp == 0x2212;
}

/* True when the code point at p[0..len) folds to a letter. */
static bool starts_with_letter(const unsigned char *p, size_t len)
{
    uint32_t cp;
    size_t k = fb_utf8_decode(p, len, &cp);
    if (cp == BAD_CP)
        return false;
    char f[8];
    size_t n = fb_text_fold((const char *)p, k, f, sizeof(f));
    return n > 0 && n < sizeof(f) && f[0] >= 'a' && f[0] <= 'z';
}

/*
 * Splits valid UTF-8 `s` into number, word and separator tokens. In `dates` mode digits form bare
 * integers and '.', '/' and '-' are separators ("15.03.2027"); otherwise digits form French
 * numbers. A hyphen between two letters joins words ("vingt-cinq", "mi-mars") like a space.
 * "€" becomes the word "eur", "%" the word "%", "$" the word "dollar".
 */
void fb__ans_lex(const char *s, size_t len, bool dates, struct toks *tk)
{
    const unsigned char *p = (const unsigned char *)s;
    struct tok *word = NULL;
    bool space = true;
    tk->n = 0;
    tk->overflow = false;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t k = fb_utf8_decode(p + i, len - i, &cp);
        if (cp >= '0' && cp <= '9' && !word) {
            struct tok *t = tok_push(tk, TK_NUM, space);
            i = dates ? lex_int(p, len, i, t) : lex_number(p, len, i, t);
            space = false;
            continue;
        }
        if (is_hyphen(cp) || cp == '/' || (dates && cp == '.')) {
            bool joins =
                is_hyphen(cp) && word && i + k < len && starts_with_letter(p + i + k, len - i - k);
            word = NULL;
            i += k;
            if (joins) {
                space = true;
                continue;
            }
            struct tok *t = tok_push(tk, TK_SEP, space);
            t->sep = is_hyphen(cp) ? '-' : (char)cp;
            space = false;
            continue;
        }
        const char *sym = cp == 0x20AC ? "eur" : cp == '%' ? "%" : cp == '$' ? "dollar" : NULL;
        if (sym) {
            struct tok *t = tok_push(tk, TK_WORD, space);
            word_append(t, sym, strlen(sym));
            word = NULL;
            space = true;
            i += k;
            continue;
        }
        char f[8];
        size_t fn = cp == BAD_CP ? 0 : fb_text_fold((const char *)p + i, k, f, sizeof(f));
        if (fn > 0 && fn < sizeof(f)) {
            if (!word) {
                word = tok_push(tk, TK_WORD, space);
                space = false;
            }
            word_append(word, f, fn);
        } else {
            word = NULL;
            space = true;
        }
        i += k;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Quantities: a number, its multipliers and its unit
 * ------------------------------------------------------------------------------------------- */

static struct dec dec_make(uint64_t m, int e)
{
    struct dec d = {m, e, false};
    return d;
}

static void dec_mul(struct dec *d, uint64_t k)
{
    if (k && d->m > DEC_MAX / k)
        d->bad = true;
    else
        d->m *= k;
}

static void dec_add(struct dec *a, struct dec b)
{
    while (a->e > b.e && !a->bad) {
        dec_mul(a, 10);
        a->e--;
    }
    while (b.e > a->e && !b.bad) {
        dec_mul(&b, 10);
        b.e--;
    }
    if (a->bad || b.bad || a->m > DEC_MAX - b.m) {
        a->bad = true;
        return;
    }
    a->m += b.m;
}

/* The double nearest to the decimal (each step is one correctly rounded operation). */
static double dec_value(struct dec d)
{
    static const double p10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    double v = (double)d.m;
    int e = d.e;
    while (e > 22) {
        v *= 1e22;
        e -= 22;
    }
    while (e < -22) {
        v /= 1e22;
        e += 22;
    }
    return e >= 0 ? v * p10[e] : v / p10[-e];
}

enum family fb__ans_unit_family(enum ukind u)
{
    switch (u) {
    case U_NONE:
        return F_NONE;
    case U_M2:
    case U_HA:
    case U_KM2:
        return F_SURFACE;
    case U_EUR:
        return F_MONEY;
    case U_YEAR:
    case U_MONTH:
    case U_WEEK:
    case U_DAY:
        return F_TIME;
    case U_OTHER:
        break;
    }
    return F_OTHER;
}

struct unit_word {
    const char *w1, *w2; /* one or two words */
    enum ukind kind;
    int exp;      /* the word also multiplies by 10^exp ("k€", "ares") */
    uint64_t mul; /* and by mul ("trimestre": 3 months) */
};

/* Two-word units first: the longest match wins. Units of no supported family (lengths, weights,
 * percentages, other currencies) are listed so that "3000 m" is refused instead of ignored. */
static const struct unit_word unit_words[] = {
    {"metre", "carre", U_M2, 0, 1},
    {"metres", "carres", U_M2, 0, 1},
    {"metre", "carres", U_M2, 0, 1},
    {"metres", "carre", U_M2, 0, 1},
    {"kilometre", "carre", U_KM2, 0, 1},
    {"kilometres", "carres", U_KM2, 0, 1},
    {"kilometre", "carres", U_KM2, 0, 1},
    {"kilometres", "carre", U_KM2, 0, 1},
    {"pour", "cent", U_OTHER, 0, 1},
    {"m2", NULL, U_M2, 0, 1},
    {"metre2", NULL, U_M2, 0, 1},
    {"metres2", NULL, U_M2, 0, 1},
    {"are", NULL, U_M2, 2, 1},
    {"ares", NULL, U_M2, 2, 1},
    {"ha", NULL, U_HA, 0, 1},
    {"hectare", NULL, U_HA, 0, 1},
    {"hectares", NULL, U_HA, 0, 1},
    {"km2", NULL, U_KM2, 0, 1},
    {"eur", NULL, U_EUR, 0, 1},
    {"euro", NULL, U_EUR, 0, 1},
    {"euros", NULL, U_EUR, 0, 1},
    {"keur", NULL, U_EUR, 3, 1},
    {"meur", NULL, U_EUR, 6, 1},
    {"an", NULL, U_YEAR, 0, 1},
    {"ans", NULL, U_YEAR, 0, 1},
    {"annee", NULL, U_YEAR, 0, 1},
    {"annees", NULL, U_YEAR, 0, 1},
    {"mois", NULL, U_MONTH, 0, 1},
    {"semaine", NULL, U_WEEK, 0, 1},
    {"semaines", NULL, U_WEEK, 0, 1},
    {"jour", NULL, U_DAY, 0, 1},
    {"jours", NULL, U_DAY, 0, 1},
    {"trimestre", NULL, U_MONTH, 0, 3},
    {"trimestres", NULL, U_MONTH, 0, 3},
    {"semestre", NULL, U_MONTH, 0, 6},
    {"semestres", NULL, U_MONTH, 0, 6},
    {"decennie", NULL, U_YEAR, 1, 1},
    {"decennies", NULL, U_YEAR, 1, 1},
    {"siecle", NULL, U_YEAR, 2, 1},
    {"siecles", NULL, U_YEAR, 2, 1},
    {"m", NULL, U_OTHER, 0, 1},
    {"metre", NULL, U_OTHER, 0, 1},
    {"metres", NULL, U_OTHER, 0, 1},
    {"km", NULL, U_OTHER, 0, 1},
    {"kilometre", NULL, U_OTHER, 0, 1},
    {"kilometres", NULL, U_OTHER, 0, 1},
    {"cm", NULL, U_OTHER, 0, 1},
    {"m3", NULL, U_OTHER, 0, 1},
    {"kg", NULL, U_OTHER, 0, 1},
    {"tonne", NULL, U_OTHER, 0, 1},
    {"tonnes", NULL, U_OTHER, 0, 1},
    {"litre", NULL, U_OTHER, 0, 1},
    {"litres", NULL, U_OTHER, 0, 1},
    {"heure", NULL, U_OTHER, 0, 1},
    {"heures", NULL, U_OTHER, 0, 1},
    {"minute", NULL, U_OTHER, 0, 1},
    {"minutes", NULL, U_OTHER, 0, 1},
    {"dollar", NULL, U_OTHER, 0, 1},
    {"dollars", NULL, U_OTHER, 0, 1},
    {"%", NULL, U_OTHER, 0, 1},
    {"pourcent", NULL, U_OTHER, 0, 1},
    {"pourcents", NULL, U_OTHER, 0, 1},
};

/* The unit written at token i ("ha", "mètres carrés", "prochains mois"): returns how many tokens
 * it takes (0: none) and sets *kind, *exp and *mul. */
static size_t unit_at(const struct toks *tk, size_t i, enum ukind *kind, int *exp, uint64_t *mul)
{
    size_t skip = 0;
    if (tok_is(tk, i, "prochains") || tok_is(tk, i, "prochaines") || tok_is(tk, i, "derniers") ||
        tok_is(tk, i, "dernieres"))
        skip = 1;
    for (size_t u = 0; u < FB_ARRAY_SIZE(unit_words); u++) {
        const struct unit_word *uw = &unit_words[u];
        if (!tok_is(tk, i + skip, uw->w1) || (uw->w2 && !tok_is(tk, i + skip + 1, uw->w2)))
            continue;
        if (skip && fb__ans_unit_family(uw->kind) != F_TIME)
            continue;
        *kind = uw->kind;
        *exp = uw->exp;
        *mul = uw->mul;
        return skip + (uw->w2 ? 2 : 1);
    }
    return 0;
}

/* Approximations: "une dizaine" (10) ... "un millier" (1000); *plural for "dizaines". */
static uint64_t approx_value(span_t w, bool *plural)
{
    static const struct {
        const char *w;
        uint64_t v;
    } approx[] = {
        {"dizaine", 10},   {"douzaine", 12},    {"quinzaine", 15},    {"vingtaine", 20},
        {"trentaine", 30}, {"quarantaine", 40}, {"cinquantaine", 50}, {"soixantaine", 60},
        {"centaine", 100}, {"millier", 1000},
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(approx); i++) {
        size_t n = strlen(approx[i].w);
        if (w.n >= n && memcmp(w.p, approx[i].w, n) == 0 &&
            (w.n == n || (w.n == n + 1 && w.p[n] == 's'))) {
            *plural = w.n == n + 1;
            return approx[i].v;
        }
    }
    return 0;
}

/* Power of ten of a multiplier word at token i ("mille", "k", "millions", "M" or "Md" before a
 * currency), or 0. */
static int multiplier_at(const struct toks *tk, size_t i)
{
    if (tok_is(tk, i, "mille") || tok_is(tk, i, "k"))
        return 3;
    if (tok_is(tk, i, "million") || tok_is(tk, i, "millions"))
        return 6;
    if (tok_is(tk, i, "milliard") || tok_is(tk, i, "milliards"))
        return 9;
    enum ukind u;
    int e;
    uint64_t k;
    bool money = unit_at(tk, i + 1, &u, &e, &k) && u == U_EUR;
    if (money && tok_is(tk, i, "m"))
        return 6;
    if (money && (tok_is(tk, i, "md") || tok_is(tk, i, "mds") || tok_is(tk, i, "mrd")))
        return 9;
    return 0;
}

static bool et_demi_at(const struct toks *tk, size_t i)
{
    return tok_is(tk, i, "et") && (tok_is(tk, i + 1, "demi") || tok_is(tk, i + 1, "demie"));
}

/*
 * Reads the quantity starting at token i, if any: a number (digits or words, "une dizaine",
 * "un demi"), multipliers ("mille", "millions", "k", "M€"), "et demi", and a unit possibly after
 * "de"/"d'" ("2 millions d'euros"), then "et demi" ("2 ans et demi"). Returns false when token i
 * does not start a number.
 */
static bool item_parse(const struct toks *tk, size_t i, bool neg, struct item *it)
{
    const struct tok *t = &tk->t[i];
    memset(it, 0, sizeof(*it));
    it->start = i;
    it->neg = neg;
    bool digits = false, is_un = false;
    int mult = 0;
    size_t j;
    if (t->kind == TK_NUM) {
        it->v = dec_make(t->mant, t->exp);
        it->v.bad = t->big;
        digits = true;
        j = i + 1;
    } else if (t->kind == TK_WORD) {
        size_t a = i;
        bool plural = false;
        if ((tok_is(tk, i, "un") || tok_is(tk, i, "une")) && i + 1 < tk->n &&
            tk->t[i + 1].kind == TK_WORD &&
            (approx_value(tok_span(&tk->t[i + 1]), &plural) || tok_is(tk, i + 1, "demi") ||
             tok_is(tk, i + 1, "demie")))
            a = i + 1;
        uint64_t ap = approx_value(tok_span(&tk->t[a]), &plural);
        if (ap) {
            it->v = dec_make(ap, 0);
            it->bad = plural;
            j = a + 1;
        } else if (tok_is(tk, a, "demi") || tok_is(tk, a, "demie")) {
            it->v = dec_make(5, -1);
            j = a + 1;
        } else if (tok_is(tk, i, "aucun") || tok_is(tk, i, "aucune")) {
            it->v = dec_make(0, 0);
            j = i + 1;
        } else {
            span_t words[MAX_TOKS];
            size_t m = 0;
            while (i + m < tk->n && tk->t[i + m].kind == TK_WORD) {
                words[m] = tok_span(&tk->t[i + m]);
                m++;
            }
            uint64_t val;
            size_t used = fb__ans_numeral_parse(words, m, &val);
            if (!used)
                return false;
            it->v = dec_make(val, 0);
            is_un = used == 1 && (tok_is(tk, i, "un") || tok_is(tk, i, "une"));
            j = i + used;
            /* "deux millions et demi" is 2.5 millions */
            span_t last = words[used - 1];
            mult = span_is(last, "mille")                                    ? 3
                   : span_is(last, "million") || span_is(last, "millions")   ? 6
                   : span_is(last, "milliard") || span_is(last, "milliards") ? 9
                                                                             : 0;
        }
    } else {
        return false;
    }
    for (int round = 0; round < 3 && j < tk->n; round++) {
        int k = multiplier_at(tk, j);
        bool plural = false;
        uint64_t ap = tk->t[j].kind == TK_WORD ? approx_value(tok_span(&tk->t[j]), &plural) : 0;
        if (k) {
            it->v.e += k;
            mult += k;
        } else if (ap && plural) {
            dec_mul(&it->v, ap); /* "deux centaines" */
        } else {
            break;
        }
        is_un = false;
        j++;
    }
    bool half = et_demi_at(tk, j);
    if (half) {
        dec_add(&it->v, dec_make(5, mult - 1));
        j += 2;
    }
    size_t ju = j;
    enum ukind unit = U_NONE;
    int uexp = 0;
    uint64_t umul = 1;
    if ((tok_is(tk, ju, "de") || tok_is(tk, ju, "d")) && unit_at(tk, ju + 1, &unit, &uexp, &umul))
        ju++;
    size_t ul = unit_at(tk, ju, &unit, &uexp, &umul);
    if (ul) {
        j = ju + ul;
        it->v.e += uexp;
        it->unit = unit;
        if (!half && et_demi_at(tk, j)) {
            dec_add(&it->v, dec_make(5, uexp - 1));
            j += 2;
        }
        if (umul > 1)
            dec_mul(&it->v, umul);
    }
    /* A word glued to the digits that holds digits itself ("1e6", "3x4") is not understood. */
    if (digits && j == i + 1 && j < tk->n && tk->t[j].kind == TK_WORD && !tk->t[j].space_before &&
        strpbrk(tk->t[j].w, "0123456789"))
        it->bad = true;
    it->strong = (digits || ul) && !(is_un && !ul);
    it->end = j;
    return true;
}

/* True when the token between two quantities makes them a range: "à", "ou", "voire", "-", or
 * "et" after "entre". */
static bool is_range_connector(const struct toks *tk, size_t i, bool entre)
{
    const struct tok *t = &tk->t[i];
    if (t->kind == TK_SEP)
        return t->sep == '-';
    return tok_is(tk, i, "a") || tok_is(tk, i, "au") || tok_is(tk, i, "ou") ||
           tok_is(tk, i, "voire") || (entre && tok_is(tk, i, "et"));
}

/*
 * Finds the quantity of tokens [from, n): every number is read (words that are not numbers or
 * units are ignored: "environ", "à peu près", "le site fait"), adjacent ones are joined into
 * ranges or compound durations, bare number words are dropped when a number with digits or a
 * unit is present ("un bâtiment neuf de 300 m²"), and exactly one must remain (else INVALID).
 */
fb_answer_status_t fb__ans_quantity_parse(const struct toks *tk, size_t from, struct quantity *q)
{
    struct item items[8];
    size_t n = 0;
    if (tk->overflow)
        return FB_ANSWER_INVALID;
    for (size_t i = from; i < tk->n;) {
        bool neg = false;
        if (tk->t[i].kind == TK_SEP && tk->t[i].sep == '-' && i + 1 < tk->n &&
            tk->t[i + 1].kind == TK_NUM && !tk->t[i + 1].space_before &&
            (n == 0 || items[n - 1].end != i)) {
            neg = true;
            i++;
        }
        struct item it;
        if (!item_parse(tk, i, neg, &it)) {
            i++;
            continue;
        }
        if (n == FB_ARRAY_SIZE(items))
            return FB_ANSWER_INVALID;
        items[n++] = it;
        i = it.end;
    }
    struct quantity groups[8];
    bool strong[8];
    size_t ng = 0, nstrong = 0;
    for (size_t k = 0; k < n;) {
        struct quantity g;
        memset(&g, 0, sizeof(g));
        g.a = items[k];
        g.kind = 1;
        if (k + 1 < n) {
            size_t gap = items[k + 1].start - items[k].end;
            bool entre = false;
            for (size_t t = from; t < items[k].start; t++)
                entre = entre || tok_is(tk, t, "entre");
            if (gap == 1 && is_range_connector(tk, items[k].end, entre)) {
                g.b = items[k + 1];
                g.kind = 2;
            } else if ((gap == 0 || (gap == 1 && tok_is(tk, items[k].end, "et"))) &&
                       items[k].unit == U_YEAR && items[k + 1].unit == U_MONTH) {
                g.b = items[k + 1];
                g.kind = 3;
            }
        }
        k += g.kind == 1 ? 1 : 2;
        strong[ng] = g.a.strong || (g.kind != 1 && g.b.strong);
        nstrong += strong[ng];
        groups[ng++] = g;
    }
    size_t keep = SIZE_MAX;
    for (size_t g = 0; g < ng; g++) {
        if (nstrong && !strong[g])
            continue;
        if (keep != SIZE_MAX)
            return FB_ANSWER_INVALID; /* two numbers: "3000 m² dont 2000 bâtis" */
        keep = g;
    }
    if (keep == SIZE_MAX)
        return FB_ANSWER_INVALID;
    *q = groups[keep];
    if (q->a.bad || (q->kind != 1 && q->b.bad))
        return FB_ANSWER_INVALID;
    if (q->kind == 2) {
        if (q->a.unit == U_NONE)
            q->a.unit = q->b.unit;
        if (q->b.unit == U_NONE)
            q->b.unit = q->a.unit;
    }
    return FB_ANSWER_OK;
}

/* The power of ten from m² to a surface unit. */
static int surface_exp(enum ukind u)
{
    return u == U_HA ? 4 : u == U_KM2 ? 6 : 0;
}

/* Converts an item to `target` (same family, or U_NONE for a plain number). An item without unit
 * is taken in the target unit. Returns false for a unit of another family or an overflow. */
static bool item_to(const struct item *it, enum ukind target, double *out)
{
    struct dec v = it->v;
    double x;
    if (v.bad)
        return false;
    if (it->unit == U_NONE || it->unit == target) {
        x = dec_value(v);
    } else if (fb__ans_unit_family(it->unit) != fb__ans_unit_family(target) ||
               fb__ans_unit_family(target) == F_NONE || fb__ans_unit_family(target) == F_OTHER) {
        return false;
    } else if (fb__ans_unit_family(target) == F_SURFACE) {
        v.e += surface_exp(it->unit) - surface_exp(target);
        x = dec_value(v);
    } else {
        /* Durations: a month is 30 days and a year 365 days (ENGINE.md), a year 12 months. */
        x = dec_value(v);
        bool to_days = target == U_DAY || target == U_WEEK;
        double days = 0;
        switch (it->unit) {
        case U_YEAR:
            days = x * 365;
            if (target == U_MONTH)
                x *= 12; /* exact: not through days */
            break;
        case U_MONTH:
            days = x * 30;
            if (target == U_YEAR)
                x /= 12;
            break;
        case U_WEEK:
            days = x * 7;
            break;
        case U_DAY:
            days = x;
            break;
        case U_NONE:
        case U_M2:
        case U_HA:
        case U_KM2:
        case U_EUR:
        case U_OTHER:
            return false;
        }
        bool direct =
            (it->unit == U_YEAR && target == U_MONTH) || (it->unit == U_MONTH && target == U_YEAR);
        if (direct)
            ; /* x already converted */
        else if (to_days)
            x = target == U_WEEK ? days / 7 : days;
        else
            x = target == U_YEAR ? days / 365 : days / 30;
    }
    *out = it->neg ? -x : x;
    return isfinite(*out);
}

/* The value of a quantity in `target`: the item, the mean of a range, or years + months. */
bool fb__ans_quantity_to(const struct quantity *q, enum ukind target, double *out)
{
    double a, b;
    if (!item_to(&q->a, target, &a))
        return false;
    if (q->kind == 1) {
        *out = a;
        return true;
    }
    if (!item_to(&q->b, target, &b))
        return false;
    *out = q->kind == 2 ? (a + b) / 2 : a + b;
    return isfinite(*out);
}

static enum ukind unit_kind(fb_unit_t u)
{
    switch (u) {
    case FB_UNIT_NONE:
        return U_NONE;
    case FB_UNIT_M2:
        return U_M2;
    case FB_UNIT_HA:
        return U_HA;
    case FB_UNIT_EUR:
        return U_EUR;
    case FB_UNIT_YEARS:
        return U_YEAR;
    case FB_UNIT_MONTHS:
        return U_MONTH;
    }
    return U_OTHER;
}

/*
 * Numbers (see answers.h). A unit of another family ("3 ha" to a question in euros, "3000 m²" to
 * a plain count) is INVALID; so is an answer holding two unrelated numbers. The range check runs
 * after conversion to the question's unit.
 */
fb_answer_status_t fb_answer_number(const char *text, fb_unit_t unit, double min, double max,
                                    double *out)
{
    char *f;
    fb_answer_status_t st = prepare(text, &f);
    if (st != FB_ANSWER_OK)
        return st;
    span_t all = span_of(f);
    if (fb__ans_unknown_folded(all)) {
        fb_free(f);
        return FB_ANSWER_UNKNOWN;
    }
    struct toks tk;
    fb__ans_lex(text, strlen(text), false, &tk);
    struct quantity q;
    double v = 0;
    enum ukind target = unit_kind(unit);
    st = fb__ans_quantity_parse(&tk, 0, &q);
    if (st == FB_ANSWER_OK && (target == U_OTHER || !fb__ans_quantity_to(&q, target, &v)))
        st = FB_ANSWER_INVALID;
    /* Only bare number words ("aucune" in "aucune idée, demandez au maire"): a hedge wins. */
    if (st == FB_ANSWER_OK && !q.a.strong && !(q.kind != 1 && q.b.strong) &&
        fb__ans_contains_unknown(all))
        st = FB_ANSWER_UNKNOWN;
    if (st == FB_ANSWER_OK && !(v >= min && v <= max))
        st = FB_ANSWER_OUT_OF_RANGE;
    if (st == FB_ANSWER_OK)
        *out = v;
    if (st == FB_ANSWER_INVALID && fb__ans_contains_unknown(all))
        st = FB_ANSWER_UNKNOWN;
    fb_free(f);
    return st;
}
