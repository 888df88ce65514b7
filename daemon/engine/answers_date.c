/* SPDX-License-Identifier: MIT */
/*
 * answers_date.c - dates (see answers_int.h): relative ("dans 3 semaines"), named ("15 mars")
 * and numeric ("15/03/2027") dates, resolved against `now`.
 */
#include <math.h>
#include <string.h>

#include "common/utf8.h"
#include "engine/answers.h"
#include "engine/answers_int.h"
#include "engine/text.h"
#include "frichebot/alloc.h"

/* ---------------------------------------------------------------------------------------------
 * Dates
 * ------------------------------------------------------------------------------------------- */

#define MIN_YEAR 1
#define MAX_YEAR 9999

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = floor_div(y, 400);
    int64_t yoe = y - era * 400;
    int64_t mp = (m + 9) % 12;
    int64_t doy = (153 * mp + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* The date of a day number (inverse of days_from_civil). */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int days_in_month(int64_t y, int m)
{
    static const int dim[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : dim[m - 1];
}

/* Today as a date and a day number. */
struct today {
    int64_t days;
    int64_t y;
    int m, d;
};

static fb_answer_status_t set_date(int64_t y, int m, int d, fb_date_t *out)
{
    if (y < MIN_YEAR || y > MAX_YEAR)
        return FB_ANSWER_OUT_OF_RANGE;
    out->year = (int)y;
    out->month = m;
    out->day = d;
    return FB_ANSWER_OK;
}

/* today + `months` months, month precision. */
static fb_answer_status_t add_months(const struct today *t, int64_t months, fb_date_t *out)
{
    if (months > 12LL * MAX_YEAR || months < -12LL * MAX_YEAR)
        return FB_ANSWER_OUT_OF_RANGE;
    int64_t idx = t->y * 12 + (t->m - 1) + months;
    int64_t y = floor_div(idx, 12);
    return set_date(y, (int)(idx - y * 12 + 1), 0, out);
}

/* today + `days` days, day precision. */
static fb_answer_status_t add_days(const struct today *t, int64_t days, fb_date_t *out)
{
    if (days > 366LL * MAX_YEAR || days < -366LL * MAX_YEAR)
        return FB_ANSWER_OUT_OF_RANGE;
    int64_t y;
    int m, d;
    civil_from_days(t->days + days, &y, &m, &d);
    return set_date(y, m, d, out);
}

static const struct {
    const char *phrase;
    int days;
} day_phrases[] = {
    {"aujourd hui", 0},
    {"maintenant", 0},
    {"des maintenant", 0},
    {"des aujourd hui", 0},
    {"tout de suite", 0},
    {"immediatement", 0},
    {"ce jour", 0},
    {"des que possible", 0},
    {"au plus vite", 0},
    {"au plus tot", 0},
    {"le plus tot possible", 0},
    {"le plus vite possible", 0},
    {"asap", 0},
    {"en ce moment", 0},
    {"actuellement", 0},
    {"demain", 1},
    {"apres demain", 2},
    {"hier", -1},
    {"avant hier", -2},
};

static const phrase_t date_lead[] = {
    PH("c est"),        PH("ce sera"),     PH("ce serait"),   PH("plutot"),
    PH("probablement"), PH("normalement"), PH("idealement"),  PH("a priori"),
    PH("je pense"),     PH("je dirais"),   PH("je crois"),    PH("on vise"),
    PH("on espere"),    PH("a partir d"),  PH("a partir de"), PH_END};

static const phrase_t date_tail[] = {
    PH("environ"),  PH("normalement"), PH("probablement"), PH("je pense"),
    PH("je crois"), PH("si possible"), PH("merci"),        PH_END};

/* Words skipped before a relative start ("c'est dans 3 mois"). */
static const phrase_t rel_skip[] = {
    PH("c"),          PH("est"),    PH("ce"),           PH("sera"),
    PH("serait"),     PH("plutot"), PH("probablement"), PH("normalement"),
    PH("idealement"), PH("je"),     PH("pense"),        PH("dirais"),
    PH("crois"),      PH("on"),     PH("vise"),         PH("espere"),
    PH("environ"),    PH_END};

/*
 * "dans 3 mois", "d'ici 6 semaines", "sous 2 ans", "en 6 mois", "au bout de 2 ans" (forward),
 * "il y a 2 ans", "depuis 3 mois" (backward). Returns INVALID when the answer is not of this form
 * (for instance "d'ici fin 2027", left to the absolute forms).
 */
static fb_answer_status_t date_relative(const char *text, const struct today *t, fb_date_t *out)
{
    struct toks tk;
    fb__ans_lex(text, strlen(text), false, &tk);
    size_t i = 0;
    while (i < tk.n && tk.t[i].kind == TK_WORD && in_list(tok_span(&tk.t[i]), rel_skip))
        i++;
    int sign = 1;
    if (tok_is(&tk, i, "dans") || tok_is(&tk, i, "sous") || tok_is(&tk, i, "dici") ||
        tok_is(&tk, i, "en")) {
        i += 1;
    } else if (tok_is(&tk, i, "d") && tok_is(&tk, i + 1, "ici")) {
        i += tok_is(&tk, i + 2, "a") ? 3 : 2;
    } else if (tok_is(&tk, i, "au") && tok_is(&tk, i + 1, "bout") &&
               (tok_is(&tk, i + 2, "de") || tok_is(&tk, i + 2, "d"))) {
        i += 3;
    } else if (tok_is(&tk, i, "il") && tok_is(&tk, i + 1, "y") && tok_is(&tk, i + 2, "a")) {
        i += 3;
        sign = -1;
    } else if (tok_is(&tk, i, "depuis")) {
        i += 1;
        sign = -1;
    } else {
        return FB_ANSWER_INVALID;
    }
    struct quantity q;
    if (fb__ans_quantity_parse(&tk, i, &q) != FB_ANSWER_OK ||
        fb__ans_unit_family(q.a.unit) != F_TIME || q.a.neg || (q.kind != 1 && q.b.neg))
        return FB_ANSWER_INVALID;
    bool in_days = q.a.unit == U_WEEK || q.a.unit == U_DAY ||
                   (q.kind != 1 && (q.b.unit == U_WEEK || q.b.unit == U_DAY));
    double v;
    if (!fb__ans_quantity_to(&q, in_days ? U_DAY : U_MONTH, &v) || v > 1e7)
        return FB_ANSWER_OUT_OF_RANGE;
    if (!in_days && q.kind != 2 && fabs(v - round(v)) > 1e-9) {
        in_days = true; /* "dans un mois et demi": 45 days */
        v *= 30;
    }
    int64_t k = (int64_t)llround(v) * sign; /* a range of months: the nearest month */
    return in_days ? add_days(t, k, out) : add_months(t, k, out);
}

static const char *const month_names[12][3] = {
    {"janvier", "janv", NULL}, {"fevrier", "fevr", "fev"}, {"mars", NULL, NULL},
    {"avril", "avr", NULL},    {"mai", NULL, NULL},        {"juin", NULL, NULL},
    {"juillet", "juil", NULL}, {"aout", NULL, NULL},       {"septembre", "sept", NULL},
    {"octobre", "oct", NULL},  {"novembre", "nov", NULL},  {"decembre", "dec", NULL},
};

/* The month (1-12) a word names, 0 if none. Typos are tolerated on names of 7+ letters only
 * ("fevier"), so that "mais" is never "mars" nor "tout" "août". */
static int month_of(span_t w)
{
    for (int m = 0; m < 12; m++)
        for (int j = 0; j < 3 && month_names[m][j]; j++)
            if (span_is(w, month_names[m][j]))
                return m + 1;
    int found = 0;
    unsigned best = UINT32_MAX;
    for (int m = 0; m < 12; m++) {
        span_t name = span_of(month_names[m][0]);
        unsigned d;
        if (name.n < 7 || !typo_ok(w, name, &d) || d > best)
            continue;
        found = d < best ? m + 1 : (found == m + 1 ? found : -1);
        best = d;
    }
    return found > 0 ? found : 0;
}

/* What an absolute date answer says, gathered token by token. */
struct dparts {
    int64_t year;
    int month, day;
    char mod;     /* 'd' début, 'f' fin, 'm' mi/milieu, 0 */
    int rel;      /* +1 prochain/suivant, -1 dernier/passé */
    char relunit; /* 'y' année/an, 'm' mois, 'w' semaine, 0 */
    bool this_;   /* "ce", "cet", "cette", "courant": "ce mois-ci", "cette année" */
    bool within;  /* "dans": "dans l'année" */
    bool bad;
};

static void set_once(int64_t *slot, int64_t v, bool *bad)
{
    if (*slot && *slot != v)
        *bad = true;
    *slot = v;
}

static void set_once_i(int *slot, int v, bool *bad)
{
    if (*slot && *slot != v)
        *bad = true;
    *slot = v;
}

static bool num_tok(const struct toks *tk, size_t i, unsigned min_digits, unsigned max_digits)
{
    return i < tk->n && tk->t[i].kind == TK_NUM && tk->t[i].ndigits >= min_digits &&
           tk->t[i].ndigits <= max_digits;
}

static bool sep_tok(const struct toks *tk, size_t i)
{
    return i < tk->n && tk->t[i].kind == TK_SEP;
}

static int64_t year_of(const struct tok *t)
{
    return t->ndigits == 2 ? 2000 + (int64_t)t->mant : (int64_t)t->mant;
}

/* Reads the numeric date form starting at token i into `dp`; returns the tokens used. */
static size_t numeric_date(const struct toks *tk, size_t i, struct dparts *dp)
{
    const struct tok *t = tk->t;
    if (num_tok(tk, i, 1, 2) && sep_tok(tk, i + 1) && num_tok(tk, i + 2, 1, 2) &&
        sep_tok(tk, i + 3) && (num_tok(tk, i + 4, 2, 2) || num_tok(tk, i + 4, 4, 4))) {
        set_once_i(&dp->day, (int)t[i].mant, &dp->bad);
        set_once_i(&dp->month, (int)t[i + 2].mant, &dp->bad);
        set_once(&dp->year, year_of(&t[i + 4]), &dp->bad);
        return 5;
    }
    if (num_tok(tk, i, 4, 4) && sep_tok(tk, i + 1) && num_tok(tk, i + 2, 1, 2) &&
        sep_tok(tk, i + 3) && num_tok(tk, i + 4, 1, 2)) {
        set_once(&dp->year, year_of(&t[i]), &dp->bad);
        set_once_i(&dp->month, (int)t[i + 2].mant, &dp->bad);
        set_once_i(&dp->day, (int)t[i + 4].mant, &dp->bad);
        return 5;
    }
    if (num_tok(tk, i, 1, 2) && sep_tok(tk, i + 1) && num_tok(tk, i + 2, 4, 4)) {
        set_once_i(&dp->month, (int)t[i].mant, &dp->bad);
        set_once(&dp->year, year_of(&t[i + 2]), &dp->bad);
        return 3;
    }
    if (num_tok(tk, i, 4, 4) && sep_tok(tk, i + 1) && t[i + 1].sep != '.' &&
        num_tok(tk, i + 2, 1, 2)) {
        set_once(&dp->year, year_of(&t[i]), &dp->bad);
        set_once_i(&dp->month, (int)t[i + 2].mant, &dp->bad);
        return 3;
    }
    if (num_tok(tk, i, 1, 2) && sep_tok(tk, i + 1) && t[i + 1].sep != '-' &&
        num_tok(tk, i + 2, 1, 2)) {
        set_once_i(&dp->day, (int)t[i].mant, &dp->bad);
        set_once_i(&dp->month, (int)t[i + 2].mant, &dp->bad);
        return 3;
    }
    if (num_tok(tk, i, 4, 4) && t[i].mant >= 1000) {
        set_once(&dp->year, (int64_t)t[i].mant, &dp->bad);
        return 1;
    }
    if (num_tok(tk, i, 1, 2)) {
        size_t j = i + 1;
        if (j < tk->n && t[j].kind == TK_WORD && !t[j].space_before &&
            in_list(tok_span(&t[j]), fb__ans_ordinal_suffixes))
            j++;
        if (j < tk->n && t[j].kind == TK_WORD && month_of(tok_span(&t[j]))) {
            set_once_i(&dp->day, (int)t[i].mant, &dp->bad);
            return j - i;
        }
    }
    dp->bad = true;
    return 1;
}

/* Gathers the parts of an absolute date ("15 mars 2027", "fin 2026", "l'année prochaine"). */
static void date_parts(const struct toks *tk, struct dparts *dp)
{
    memset(dp, 0, sizeof(*dp));
    for (size_t i = 0; i < tk->n;) {
        const struct tok *t = &tk->t[i];
        if (t->kind == TK_NUM) {
            i += numeric_date(tk, i, dp);
            continue;
        }
        i++;
        if (t->kind != TK_WORD)
            continue;
        span_t w = tok_span(t);
        int m = month_of(w);
        char mod = 0, unit = 0;
        int rel = 0;
        if (m) {
            set_once_i(&dp->month, m, &dp->bad);
        } else if ((span_is(w, "premier") || span_is(w, "1er")) && i < tk->n &&
                   tk->t[i].kind == TK_WORD && month_of(tok_span(&tk->t[i]))) {
            set_once_i(&dp->day, 1, &dp->bad);
        } else if (span_is(w, "debut") || span_is(w, "commencement")) {
            mod = 'd';
        } else if (span_is(w, "fin")) {
            mod = 'f';
        } else if (span_is(w, "mi") || span_is(w, "milieu")) {
            mod = 'm';
        } else if (span_is(w, "prochain") || span_is(w, "prochaine") || span_is(w, "suivant") ||
                   span_is(w, "suivante")) {
            rel = 1;
        } else if (span_is(w, "dernier") || span_is(w, "derniere") || span_is(w, "passe") ||
                   span_is(w, "passee")) {
            rel = -1;
        } else if (span_is(w, "annee") || span_is(w, "an")) {
            unit = 'y';
        } else if (span_is(w, "mois")) {
            unit = 'm';
        } else if (span_is(w, "semaine")) {
            unit = 'w';
        } else if (span_is(w, "ce") || span_is(w, "cet") || span_is(w, "cette") ||
                   span_is(w, "courant")) {
            dp->this_ = true;
        } else if (span_is(w, "dans")) {
            dp->within = true;
        }
        if (mod) {
            dp->bad = dp->bad || (dp->mod && dp->mod != mod);
            dp->mod = mod;
        }
        if (rel) {
            dp->bad = dp->bad || (dp->rel && dp->rel != rel);
            dp->rel = rel;
        }
        if (unit) {
            dp->bad = dp->bad || (dp->relunit && dp->relunit != unit);
            dp->relunit = unit;
        }
    }
}

static int mod_month(char mod)
{
    return mod == 'd' ? 1 : mod == 'f' ? 12 : mod == 'm' ? 6 : 0;
}

/*
 * Turns the gathered parts into a date. A month without year is its next occurrence from today
 * (this month included; "prochain" excludes it, "dernier" looks back); a day and month without
 * year likewise ("15 mars" after 15 March is next year's). "début/fin/mi" + a year give January,
 * December or June.
 */
static fb_answer_status_t date_combine(const struct dparts *dp, const struct today *t,
                                       fb_date_t *out)
{
    if (dp->bad || (dp->day && !dp->month))
        return FB_ANSWER_INVALID;
    int64_t y = dp->year;
    int m = dp->month, d = dp->day;
    if (y && (y < 1000 || y > MAX_YEAR))
        return FB_ANSWER_INVALID;
    if (m && (m < 1 || m > 12))
        return FB_ANSWER_INVALID;
    /* "mois", "semaine", "année" alone say nothing ("dans quelques mois"): they need "prochain",
     * "dernier", "ce"/"cette", or début/fin ("fin du mois", "fin de l'année"). */
    if (dp->relunit && !dp->rel && !dp->this_ && !dp->mod && !y &&
        !(dp->relunit == 'y' && dp->within))
        return FB_ANSWER_INVALID;
    if (dp->relunit == 'w' || dp->relunit == 'm') {
        if (y || m || d)
            return FB_ANSWER_INVALID;
        if (dp->relunit == 'w')
            return add_days(t, 7LL * dp->rel, out);
        return add_months(t, dp->rel, out);
    }
    if (dp->relunit == 'y') {
        if (y && dp->rel)
            return FB_ANSWER_INVALID;
        if (!y)
            y = t->y + dp->rel;
        if (!m)
            return set_date(y, mod_month(dp->mod), 0, out);
    } else if (m && !y) {
        /* The next (or, with "dernier", the last) occurrence of this month or day. */
        int cmp = m != t->m ? (m < t->m ? -1 : 1) : (d ? (d < t->d ? -1 : d > t->d) : 0);
        y = t->y;
        if (dp->rel > 0 && cmp <= 0)
            y++;
        else if (dp->rel < 0 && cmp >= 0)
            y--;
        else if (!dp->rel && cmp < 0)
            y++;
        for (int tries = 0; d > days_in_month(y, m) && tries < 8; tries++)
            y += dp->rel < 0 ? -1 : 1; /* 29 February */
    } else if (!m && y) {
        if (dp->rel)
            return FB_ANSWER_INVALID;
        return set_date(y, mod_month(dp->mod), 0, out);
    } else if (!m) {
        return FB_ANSWER_INVALID;
    }
    if (y < MIN_YEAR || y > MAX_YEAR)
        return FB_ANSWER_OUT_OF_RANGE;
    if (d && (d < 1 || d > days_in_month(y, m)))
        return FB_ANSWER_INVALID;
    return set_date(y, m, d, out);
}

/*
 * Dates (see answers.h). Order: "je ne sais pas"; fixed phrases ("aujourd'hui", "demain", "dès
 * que possible"); relative durations ("dans 3 mois"); absolute forms. Days and weeks give a day,
 * months and years a month ("dans 3 mois" is February, not 28 February). Years outside
 * 1..9999 after arithmetic are OUT_OF_RANGE; written years must have 4 digits (or 2 in
 * "15/03/27").
 */
fb_answer_status_t fb_answer_date(const char *text, int64_t now, bool future_only, fb_date_t *out)
{
    int64_t min_days = days_from_civil(MIN_YEAR, 1, 1),
            max_days = days_from_civil(MAX_YEAR, 12, 31);
    char *f;
    fb_answer_status_t st = prepare(text, &f);
    if (st != FB_ANSWER_OK)
        return st;
    struct today t;
    t.days = floor_div(now, 86400);
    if (t.days < min_days || t.days > max_days) {
        fb_free(f);
        return FB_ANSWER_INVALID;
    }
    civil_from_days(t.days, &t.y, &t.m, &t.d);
    span_t all = span_of(f);
    fb_date_t r = {0, 0, 0};
    st = FB_ANSWER_INVALID;
    if (fb__ans_unknown_folded(all)) {
        fb_free(f);
        return FB_ANSWER_UNKNOWN;
    }
    span_t lead = strip_leading(all, date_lead), both = strip_trailing(lead, date_tail);
    for (size_t i = 0; i < FB_ARRAY_SIZE(day_phrases) && st == FB_ANSWER_INVALID; i++)
        if (span_is(lead, day_phrases[i].phrase) || span_is(both, day_phrases[i].phrase))
            st = add_days(&t, day_phrases[i].days, &r);
    if (st == FB_ANSWER_INVALID)
        st = date_relative(text, &t, &r);
    if (st == FB_ANSWER_INVALID) {
        struct toks tk;
        fb__ans_lex(text, strlen(text), true, &tk);
        struct dparts dp;
        date_parts(&tk, &dp);
        st = tk.overflow ? FB_ANSWER_INVALID : date_combine(&dp, &t, &r);
    }
    if (st == FB_ANSWER_OK && future_only &&
        (r.year < t.y || (r.year == t.y && r.month != 0 && r.month < t.m)))
        st = FB_ANSWER_OUT_OF_RANGE;
    if (st == FB_ANSWER_OK)
        *out = r;
    if (st == FB_ANSWER_INVALID && fb__ans_contains_unknown(all))
        st = FB_ANSWER_UNKNOWN;
    fb_free(f);
    return st;
}

/*
 * Years since a date (see answers.h): the folded answer holds one past year of 4 digits (1800 up
 * to now's year), maybe after a month ("depuis mars 2019"), or a decade ("les années 90", "les
 * années 1990", "années 2000"), and no duration unit (those are numbers: "depuis 18 mois").
 */
fb_answer_status_t fb_answer_years_since(const char *text, int64_t now, double *years, bool *approx)
{
    char *f;
    fb_answer_status_t st = prepare(text, &f);
    if (st != FB_ANSWER_OK)
        return st;
    int64_t ny;
    int nm, nd;
    civil_from_days(floor_div(now, 86400), &ny, &nm, &nd);
    span_t all = span_of(f), w, prev = {"", 0};
    size_t pos = 0;
    int year = 0, month = 0, found = 0;
    bool decade = false, unit = false;
    while (word_next(all, &pos, &w)) {
        uint64_t v = 0;
        bool digits = w.n > 0 && w.n <= 4;
        for (size_t i = 0; digits && i < w.n; i++)
            digits = is_digit((unsigned char)w.p[i]);
        for (size_t i = 0; digits && i < w.n; i++)
            v = v * 10 + (uint64_t)(w.p[i] - '0');
        if (span_is(w, "an") || span_is(w, "ans") || span_is(w, "mois") || span_is(w, "semaines") ||
            span_is(w, "jours"))
            unit = true;
        if (digits && (span_is(prev, "annees") || span_is(prev, "annee")) &&
            (w.n == 2 || w.n == 4) && v % 10 == 0) {
            year = (int)(w.n == 2 ? (v >= 30 ? 1900 + v : 2000 + v) : v) + 5;
            decade = true;
            found++;
        } else if (digits && w.n == 4 && v >= 1800 && (int64_t)v <= ny) {
            year = (int)v;
            month = month_of(prev);
            found++;
        }
        prev = w;
    }
    fb_free(f);
    if (found != 1 || unit)
        return FB_ANSWER_INVALID;
    if (decade && year - 5 > ny)
        return FB_ANSWER_INVALID; /* « les années 2030 » have not begun: no duration */
    if (decade && year > ny)
        year = (int)ny;
    double y = (double)(ny - year);
    if (month > 0)
        y = floor(((double)(ny * 12 + nm) - (double)(year * 12 + month)) / 12.0 + 0.5);
    *years = y < 0 ? 0 : y;
    *approx = decade;
    return FB_ANSWER_OK;
}
