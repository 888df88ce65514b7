/* SPDX-License-Identifier: MIT */
/*
 * answers_choice.c - choices (see answers_int.h): one option or several picked by label, number,
 * position or words, with typo tolerance, negations and "all" / "none".
 */
#include <math.h>
#include <string.h>

#include "common/utf8.h"
#include "engine/answers.h"
#include "engine/answers_int.h"
#include "engine/text.h"
#include "frichebot/alloc.h"

/* ---------------------------------------------------------------------------------------------
 * Choices
 *
 * A choice set (fb_choice_set_t) holds everything about the options that matching needs and that
 * does not depend on the answer, computed once: every key (an option's folded id, label or
 * synonym), its words with their stop-word and negation flags and typo budgets, and the key
 * without its leading stop words. Per answer, the words of each span compared (the answer, a
 * list item, a word) are found and flagged once (struct words). The matching stages themselves
 * are those of the original per-call implementation, in the same order with the same scores.
 * ------------------------------------------------------------------------------------------- */

#define W_STOP 1u /* a stop word (is_stop) */
#define W_NEG  2u /* a negation word (negation_words) */

/* One folded way of naming an option: its id, its label or one of its synonyms. */
struct key {
    span_t s;        /* folded, not empty */
    span_t stripped; /* s without its leading stop words (strip_stop) */
    size_t opt;
    size_t w0, nw;  /* its words: set->kw[w0 .. w0 + nw) */
    uint64_t first; /* first_bit() of each of its words */
    bool all_stop;  /* every word is a stop word */
};

struct fb_choice_set_s {
    size_t nopt, nk;
    struct key *k;       /* keys in option order */
    size_t *opt_k0;      /* option o's keys: k[opt_k0[o] .. opt_k0[o + 1]) */
    span_t *kw;          /* the words of every key */
    unsigned char *kf;   /* W_STOP / W_NEG of each key word */
    unsigned char *kb;   /* fb_text_typo_budget() of each key word */
    char *text;          /* the folded keys, NUL-terminated */
    unsigned *opt_cls;   /* the qualifier classes each option's names reflect (option_classes()) */
    uint64_t *opt_first; /* first_bit() of each word of each option's keys */
};

/*
 * One bit for the first byte of word `w` (not empty), by its low 6 bits. Two words that are the
 * same give or take an inflection (same_word(), same_or_plural()) start with the same byte, so a
 * word whose bit is not in a mask of first bytes is none of the words the mask was made of:
 * containment without typos, the shared words and the negations skip those keys and options.
 */
static inline uint64_t first_bit(span_t w)
{
    return (uint64_t)1 << ((unsigned char)w.p[0] & 63);
}

static unsigned names_classes(const fb_choice_set_t *set, size_t o);

/* Words that carry no meaning of their own when comparing an answer with an option. */
static const phrase_t stop_words[] = {
    PH("le"),     PH("la"),      PH("les"),     PH("l"),           PH("un"),     PH("une"),
    PH("des"),    PH("du"),      PH("de"),      PH("d"),           PH("a"),      PH("au"),
    PH("aux"),    PH("en"),      PH("et"),      PH("ou"),          PH("ce"),     PH("c"),
    PH("cet"),    PH("cette"),   PH("ces"),     PH("est"),         PH("sont"),   PH("s"),
    PH("se"),     PH("sa"),      PH("son"),     PH("ses"),         PH("y"),      PH("il"),
    PH("ils"),    PH("elle"),    PH("elles"),   PH("on"),          PH("je"),     PH("j"),
    PH("tu"),     PH("nous"),    PH("vous"),    PH("qui"),         PH("que"),    PH("qu"),
    PH("par"),    PH("pour"),    PH("sur"),     PH("dans"),        PH("avec"),   PH("plutot"),
    PH("tres"),   PH("mon"),     PH("ma"),      PH("mes"),         PH("notre"),  PH("nos"),
    PH("votre"),  PH("vos"),     PH("leur"),    PH("leurs"),       PH("ca"),     PH("cela"),
    PH("ceci"),   PH("etait"),   PH("ete"),     PH("surtout"),     PH("dirais"), PH("pense"),
    PH("crois"),  PH("choisis"), PH("prends"),  PH("serait"),      PH("sera"),   PH("agit"),
    PH("option"), PH("choix"),   PH("reponse"), PH("proposition"), PH("euh"),    PH("bah"),
    PH("ben"),    PH_END};

/* Words that negate: an answer using one matches an option only if the option has it too. */
static const phrase_t negation_words[] = {PH("pas"),    PH("ni"),      PH("sauf"),   PH("aucun"),
                                          PH("aucune"), PH("excepte"), PH("hormis"), PH("jamais"),
                                          PH("non"),    PH("hors"),    PH_END};

/* The same words, sorted bytewise, for is_stop()'s binary search (test_answers.c checks that
 * both lists hold the same words). */
static const phrase_t stop_sorted[] = {
    PH("a"),       PH("agit"),   PH("au"),          PH("aux"),     PH("avec"),    PH("bah"),
    PH("ben"),     PH("c"),      PH("ca"),          PH("ce"),      PH("ceci"),    PH("cela"),
    PH("ces"),     PH("cet"),    PH("cette"),       PH("choisis"), PH("choix"),   PH("crois"),
    PH("d"),       PH("dans"),   PH("de"),          PH("des"),     PH("dirais"),  PH("du"),
    PH("elle"),    PH("elles"),  PH("en"),          PH("est"),     PH("et"),      PH("etait"),
    PH("ete"),     PH("euh"),    PH("il"),          PH("ils"),     PH("j"),       PH("je"),
    PH("l"),       PH("la"),     PH("le"),          PH("les"),     PH("leur"),    PH("leurs"),
    PH("ma"),      PH("mes"),    PH("mon"),         PH("nos"),     PH("notre"),   PH("nous"),
    PH("on"),      PH("option"), PH("ou"),          PH("par"),     PH("pense"),   PH("plutot"),
    PH("pour"),    PH("prends"), PH("proposition"), PH("qu"),      PH("que"),     PH("qui"),
    PH("reponse"), PH("s"),      PH("sa"),          PH("se"),      PH("sera"),    PH("serait"),
    PH("ses"),     PH("son"),    PH("sont"),        PH("sur"),     PH("surtout"), PH("tres"),
    PH("tu"),      PH("un"),     PH("une"),         PH("vos"),     PH("votre"),   PH("vous"),
    PH("y"),       PH_END,
};

/* Compares a span with a word, bytewise, like strcmp. */
static int span_cmp(span_t w, const phrase_t *ph)
{
    int c = memcmp(w.p, ph->s, w.n < ph->n ? w.n : ph->n);
    if (c)
        return c;
    return w.n < ph->n ? -1 : w.n > ph->n ? 1 : 0;
}

/* True when `w` is a stop word. Called for every word against every key word of every option,
 * so it is a binary search (7 comparisons) rather than a scan of the list. */
static bool is_stop(span_t w)
{
    size_t lo = 0, hi = FB_ARRAY_SIZE(stop_sorted) - 1; /* without PH_END */
    if (w.n == 0 || w.n > 11)                           /* "proposition" is the longest */
        return false;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = span_cmp(w, &stop_sorted[mid]);
        if (c == 0)
            return true;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return false;
}

/* For the unit tests: the stop-word lists agree (same words, the sorted one sorted, none longer
 * than is_stop()'s bound), and UNKNOWN_PHRASE_MAX is the longest "je ne sais pas" phrase. */
bool fb__answers_stop_words_consistent(void);
bool fb__answers_stop_words_consistent(void)
{
    size_t n = 0, longest = 0;
    for (const phrase_t *p = stop_words; p->s; p++, n++)
        if (!is_stop((span_t){p->s, p->n}) || p->n != strlen(p->s) || p->n > 11)
            return false;
    for (size_t i = 1; i + 1 < FB_ARRAY_SIZE(stop_sorted); i++)
        if (strcmp(stop_sorted[i - 1].s, stop_sorted[i].s) >= 0)
            return false;
    for (const phrase_t *p = fb__ans_unknown_phrases; p->s; p++)
        longest = p->n > longest ? p->n : longest;
    return n + 1 == FB_ARRAY_SIZE(stop_sorted) && longest == UNKNOWN_PHRASE_MAX;
}

/* The span without its leading stop words (unchanged when it has only stop words). Stop words
 * are single words, so this is strip_leading(s, stop_words) one first word at a time. */
static span_t strip_stop(span_t s)
{
    for (;;) {
        size_t e = 0;
        while (e < s.n && s.p[e] != ' ')
            e++;
        span_t first = {s.p, e}, rest = {s.p + e, s.n - e};
        rest = span_trim(rest);
        if (rest.n == 0 || !is_stop(first))
            return s;
        s = rest;
    }
}

/* Words that may surround a selection by position: "c'est le 2", "la deuxième option". */
static const phrase_t sel_lead[] = {
    PH("le"),     PH("la"),        PH("l"),        PH("les"),         PH("c"),      PH("est"),
    PH("ce"),     PH("sera"),      PH("serait"),   PH("plutot"),      PH("je"),     PH("choisis"),
    PH("prends"), PH("prendrais"), PH("dirais"),   PH("veux"),        PH("option"), PH("options"),
    PH("choix"),  PH("reponse"),   PH("reponses"), PH("proposition"), PH("numero"), PH("numeros"),
    PH("num"),    PH("n"),         PH("no"),       PH("nr"),          PH("du"),     PH("de"),
    PH_END};

static const phrase_t sel_tail[] = {PH("choix"), PH("option"), PH("reponse"), PH("proposition"),
                                    PH("svp"),   PH("stp"),    PH("merci"),   PH("s il vous plait"),
                                    PH_END};

const phrase_t fb__ans_ordinal_suffixes[] = {PH("e"),  PH("er"),   PH("ere"), PH("re"),  PH("eme"),
                                             PH("em"), PH("ieme"), PH("nd"),  PH("nde"), PH_END};

static const struct {
    phrase_t w;
    unsigned v;
} ordinals[] = {
    {PH("premier"), 1},       {PH("premiere"), 1},      {PH("deuxieme"), 2},
    {PH("second"), 2},        {PH("seconde"), 2},       {PH("troisieme"), 3},
    {PH("quatrieme"), 4},     {PH("cinquieme"), 5},     {PH("sixieme"), 6},
    {PH("septieme"), 7},      {PH("huitieme"), 8},      {PH("neuvieme"), 9},
    {PH("dixieme"), 10},      {PH("onzieme"), 11},      {PH("douzieme"), 12},
    {PH("treizieme"), 13},    {PH("quatorzieme"), 14},  {PH("quinzieme"), 15},
    {PH("seizieme"), 16},     {PH("dix septieme"), 17}, {PH("dix huitieme"), 18},
    {PH("dix neuvieme"), 19}, {PH("vingtieme"), 20},
};

/* Digits, at most 9 of them, read into *v. */
static bool all_digits(span_t w, uint64_t *v)
{
    if (w.n == 0 || w.n > 9)
        return false;
    uint64_t x = 0;
    for (size_t i = 0; i < w.n; i++) {
        if (!is_digit((unsigned char)w.p[i]))
            return false;
        x = x * 10 + (uint64_t)(w.p[i] - '0');
    }
    *v = x;
    return true;
}

/* "2", "2e", "1er", "2eme", "n2", "no2": a position written in one word. */
static bool position_word(span_t w, uint64_t *k)
{
    size_t d = 0;
    if (all_digits(w, k))
        return true;
    if (w.n > 1 && w.p[0] == 'n') {
        span_t rest = {w.p + 1, w.n - 1};
        if (rest.n > 1 && rest.p[0] == 'o') {
            rest.p++;
            rest.n--;
        }
        if (all_digits(rest, k))
            return true;
    }
    while (d < w.n && is_digit((unsigned char)w.p[d]))
        d++;
    span_t num = {w.p, d}, suf = {w.p + d, w.n - d};
    return d > 0 && in_list(suf, fb__ans_ordinal_suffixes) && all_digits(num, k);
}

/*
 * Reads `s` as a choice by position: "2", "2.", "n°2", "le 2", "2e", "2 ème", "deuxième",
 * "la dernière". Sets *k (1-based, possibly out of range) and returns true, or returns false when
 * `s` is not a position; then *core and *nw are `s` without the words around a selection and its
 * word count, for select_by_cardinal().
 */
static bool select_by_position(span_t s, size_t n, uint64_t *k, span_t *core, size_t *nw_out)
{
    s = strip_trailing(strip_leading(s, sel_lead), sel_tail);
    size_t nw = word_count(s), pos = 0;
    *core = s;
    *nw_out = nw;
    span_t w1 = {0}, w2 = {0};
    word_next(s, &pos, &w1);
    if (nw == 1 && position_word(w1, k))
        return true;
    if (nw == 2) {
        word_next(s, &pos, &w2);
        if (in_list(w2, fb__ans_ordinal_suffixes) && all_digits(w1, k))
            return true;
    }
    if (span_is(s, "dernier") || span_is(s, "derniere")) {
        *k = n;
        return true;
    }
    if (span_is(s, "avant dernier") || span_is(s, "avant derniere")) {
        *k = n - 1;
        return true;
    }
    unsigned best = UINT32_MAX;
    size_t hits = 0;
    for (size_t i = 0; i < FB_ARRAY_SIZE(ordinals); i++) {
        const phrase_t *o = &ordinals[i].w;
        unsigned budget = fb_text_typo_budget(o->n);
        if (lengths_apart(s.n, o->n, budget))
            continue; /* neither equal nor within the budget */
        unsigned d = span_is_ph(s, o) ? 0 : fb_text_distance(s.p, s.n, o->s, o->n, budget);
        if (d > budget || d > best)
            continue;
        if (d < best) {
            best = d;
            hits = 0;
        }
        if (!hits || *k != ordinals[i].v)
            hits++;
        *k = ordinals[i].v;
    }
    return hits == 1;
}

/* A cardinal in words ("deux") filling the whole `core` of `nw` words (from select_by_position):
 * sets *k and returns true. */
static bool select_by_cardinal(span_t core, size_t nw, uint64_t *k)
{
    span_t words[32];
    size_t m = 0, pos = 0;
    while (m < FB_ARRAY_SIZE(words) && word_next(core, &pos, &words[m]))
        m++;
    uint64_t v;
    if (m == nw && m > 0 && fb__ans_numeral_parse(words, m, &v) == m) {
        *k = v;
        return true;
    }
    return false;
}

/* Collects the option indexes of a match round: returns OK with *index when exactly one option
 * got the best score, AMBIGUOUS when several did, INVALID when none. */
struct pick {
    long best;    /* higher is better */
    size_t opt;   /* first option with `best` */
    bool several; /* another option also has `best` */
    uint64_t tie; /* the options (index < 64) with `best`, and those found close to it */
};

static void pick_init(struct pick *p)
{
    p->best = -1;
    p->opt = SIZE_MAX;
    p->several = false;
    p->tie = 0;
}

static uint64_t opt_bit(size_t opt)
{
    return opt < 64 ? (uint64_t)1 << opt : 0;
}

static void pick_offer(struct pick *p, size_t opt, long score)
{
    if (score < 0 || score < p->best)
        return;
    if (score > p->best) {
        p->best = score;
        p->opt = opt;
        p->several = false;
        p->tie = opt_bit(opt);
    } else if (opt != p->opt) {
        p->several = true;
        p->tie |= opt_bit(opt);
    }
}

/* Sets *tie (when not NULL) to the options of an ambiguous pick. */
static void pick_tie(const struct pick *p, uint64_t *tie)
{
    if (tie && p->best >= 0 && p->several)
        *tie = p->tie;
}

static fb_answer_status_t pick_result(const struct pick *p, size_t *index)
{
    if (p->best < 0)
        return FB_ANSWER_INVALID;
    if (p->several)
        return FB_ANSWER_AMBIGUOUS;
    *index = p->opt;
    return FB_ANSWER_OK;
}

/* The words of a folded span with their W_STOP / W_NEG flags, found once per span compared.
 * Up to WORDS_SMALL words live inside the struct (which must not be copied); more go to the
 * heap (words_done releases them). */
#define WORDS_SMALL 32

struct words {
    span_t s;
    size_t n;
    span_t *w;
    unsigned char *f;
    bool all_stop;  /* every word is a stop word (true for no words) */
    uint64_t first; /* first_bit() of each word */
    span_t w_small[WORDS_SMALL];
    unsigned char f_small[WORDS_SMALL];
};

static void words_init(struct words *ws, span_t s)
{
    size_t n = word_count(s), pos = 0, i = 0;
    ws->s = s;
    ws->n = n;
    ws->w = n <= WORDS_SMALL ? ws->w_small : fb_malloc(n * sizeof(*ws->w));
    ws->f = n <= WORDS_SMALL ? ws->f_small : fb_malloc(n);
    ws->all_stop = true;
    ws->first = 0;
    while (i < n && word_next(s, &pos, &ws->w[i])) {
        span_t w = ws->w[i];
        ws->first |= first_bit(w);
        ws->f[i] =
            (unsigned char)((is_stop(w) ? W_STOP : 0) | (in_list(w, negation_words) ? W_NEG : 0));
        ws->all_stop = ws->all_stop && (ws->f[i] & W_STOP);
        i++;
    }
}

static void words_done(struct words *ws)
{
    if (ws->w != ws->w_small) {
        fb_free(ws->w);
        fb_free(ws->f);
    }
    ws->w = NULL;
    ws->f = NULL;
}

/* Exact comparison: the folded answer equals a key, else (both without leading stop words). */
static fb_answer_status_t match_exact(const fb_choice_set_t *set, span_t s, size_t *index,
                                      uint64_t *tie)
{
    struct pick p;
    pick_init(&p);
    for (size_t i = 0; i < set->nk; i++)
        if (span_eq(s, set->k[i].s))
            pick_offer(&p, set->k[i].opt, 1);
    if (p.best < 0) {
        span_t ss = strip_stop(s);
        for (size_t i = 0; i < set->nk; i++)
            if (span_eq(ss, set->k[i].stripped))
                pick_offer(&p, set->k[i].opt, 1);
    }
    pick_tie(&p, tie);
    return pick_result(&p, index);
}

/* True when `a` is `b` plus a plural or feminine ending ("s", "e", "es"), `b` being at least 4
 * letters long (so that "plus" never becomes "plu"). */
static inline bool inflected(span_t a, span_t b)
{
    /* the lengths and the ending's first letter before the bytes: most pairs stop there */
    if (a.n <= b.n || a.n > b.n + 2 || b.n < 4 || (a.p[b.n] != 's' && a.p[b.n] != 'e') ||
        memcmp(a.p, b.p, b.n) != 0)
        return false;
    span_t end = {a.p + b.n, a.n - b.n};
    return span_is(end, "s") || span_is(end, "e") || span_is(end, "es");
}

/* The same word, give or take a plural or feminine ending: "privee" is "prive", "mines" is
 * "mine", "heritiers" is "heritier". */
static bool same_word(span_t a, span_t b)
{
    return span_eq(a, b) || inflected(a, b) || inflected(b, a);
}

/* True when `w` is one of the words of key `k`. */
static bool key_has_word(const fb_choice_set_t *set, const struct key *k, span_t w)
{
    if (!(k->first & first_bit(w)))
        return false;
    for (size_t j = k->w0; j < k->w0 + k->nw; j++)
        if (same_word(w, set->kw[j]))
            return true;
    return false;
}

/* True when every negation word of the answer is also a word of the key. */
static bool negations_covered(const struct words *in, const fb_choice_set_t *set,
                              const struct key *k)
{
    for (size_t i = 0; i < in->n; i++)
        if ((in->f[i] & W_NEG) && !key_has_word(set, k, in->w[i]))
            return false;
    return true;
}

/* The distance between answer word `w` and key word `kw` (typo budget `budget`) for containment:
 * 0 when equal, else with `typos` the typo distance when within the budget, else UINT32_MAX. */
static unsigned word_distance(span_t w, span_t kw, unsigned budget, bool typos)
{
    if (span_eq(w, kw))
        return 0;
    if (inflected(w, kw) || inflected(kw, w))
        return 1; /* a plural or feminine: found, but an exact word wins */
    if (!typos || lengths_apart(w.n, kw.n, budget))
        return UINT32_MAX;
    unsigned d = fb_text_distance(w.p, w.n, kw.p, kw.n, budget);
    return d <= budget ? d : UINT32_MAX;
}

/*
 * Word containment between an answer and a key, exact (typos false) or within each key word's
 * typo budget. Two directions: every significant word of the answer is a word of the key
 * ("commune" in "La commune ou l'intercommunalité"), or every significant word of the key is in
 * the answer ("c'est une ancienne usine" for the synonym "usine"); the latter only when the
 * answer negates nothing the key does not ("pas de commerce" is not "commerce"). Significant
 * words of a key are its non-stop words, or all of them when it has only stop words. Returns the
 * number of words matched (0: no match) and the summed typo distances in *cost.
 */
static size_t containment(const struct words *in, const fb_choice_set_t *set, const struct key *k,
                          bool typos, unsigned *cost, bool *key_side)
{
    const span_t *kw = set->kw + k->w0;
    const unsigned char *kf = set->kf + k->w0, *kb = set->kb + k->w0;
    *key_side = false;
    size_t best = 0;
    unsigned best_cost = 0;
    /* The answer's words in the key. */
    size_t sig = 0;
    unsigned c = 0;
    bool ok = true;
    for (size_t i = 0; ok && i < in->n; i++) {
        if (in->f[i] & W_STOP)
            continue;
        sig++;
        unsigned bd = UINT32_MAX;
        /* without typos, none when no word of the key starts like it (first_bit()) */
        bool maybe = typos || (k->first & first_bit(in->w[i]));
        for (size_t j = 0; maybe && j < k->nw && bd > 0; j++) {
            unsigned d = word_distance(in->w[i], kw[j], kb[j], typos);
            if (d < bd)
                bd = d;
        }
        if (bd == UINT32_MAX)
            ok = false;
        else
            c += bd;
    }
    if (ok && sig) {
        best = sig;
        best_cost = c;
    }
    /* The key's words in the answer. */
    size_t cnt = 0;
    c = 0;
    ok = negations_covered(in, set, k);
    for (size_t j = 0; ok && j < k->nw; j++) {
        if (!k->all_stop && (kf[j] & W_STOP))
            continue;
        cnt++;
        unsigned bd = UINT32_MAX;
        bool maybe = typos || (in->first & first_bit(kw[j]));
        for (size_t i = 0; maybe && i < in->n && bd > 0; i++) {
            unsigned d = word_distance(in->w[i], kw[j], kb[j], typos);
            if (d < bd)
                bd = d;
        }
        if (bd == UINT32_MAX)
            ok = false;
        else
            c += bd;
    }
    if (ok && cnt && (cnt > best || (cnt == best && c < best_cost))) {
        best = cnt;
        best_cost = c;
        *key_side = true;
    }
    *cost = best_cost;
    return best;
}

/*
 * Number, exact and cardinal-word stages of choice matching (see fb_answer_choice).
 * Returns INVALID when none of them applies.
 */
static fb_answer_status_t match_strict(const fb_choice_set_t *set, span_t s, size_t *index,
                                       uint64_t *tie)
{
    uint64_t k;
    span_t core;
    size_t nw;
    if (select_by_position(s, set->nopt, &k, &core, &nw)) {
        if (k < 1 || k > set->nopt)
            return FB_ANSWER_OUT_OF_RANGE;
        *index = (size_t)(k - 1);
        return FB_ANSWER_OK;
    }
    fb_answer_status_t st = match_exact(set, s, index, tie);
    if (st != FB_ANSWER_INVALID)
        return st;
    if (select_by_cardinal(core, nw, &k)) {
        if (k < 1 || k > set->nopt)
            return FB_ANSWER_OUT_OF_RANGE;
        *index = (size_t)(k - 1);
        return FB_ANSWER_OK;
    }
    return FB_ANSWER_INVALID;
}

/* True when `a` is `b` or its plural ("joignables", "joignable"). */
static bool same_or_plural(span_t a, span_t b)
{
    if (span_eq(a, b))
        return true;
    span_t l = a.n > b.n ? a : b, s = a.n > b.n ? b : a;
    return s.n >= 4 && l.n == s.n + 1 && l.p[s.n] == 's' && memcmp(l.p, s.p, s.n) == 0;
}

/* True when `w` is a word of one of the keys of option `opt`: give or take an inflection with
 * `infl`, else give or take a plural "s". */
static bool option_has_word_as(const fb_choice_set_t *set, size_t opt, span_t w, bool infl)
{
    if (!(set->opt_first[opt] & first_bit(w)))
        return false;
    for (size_t i = set->opt_k0[opt]; i < set->opt_k0[opt + 1]; i++) {
        const struct key *k = &set->k[i];
        if (infl && key_has_word(set, k, w))
            return true;
        for (size_t j = k->w0; !infl && j < k->w0 + k->nw; j++)
            if (same_or_plural(w, set->kw[j]))
                return true;
    }
    return false;
}

static bool option_has_word(const fb_choice_set_t *set, size_t opt, span_t w)
{
    return option_has_word_as(set, opt, w, true);
}

/* Words too common in answers about a site to name an option besides the one picked ("une
 * ancienne usine avec des bâtiments", "une friche industrielle en centre bourg"). */
static const phrase_t generic_words[] = {
    PH("batiment"), PH("batiments"), PH("terrain"), PH("terrains"), PH("ancien"), PH("ancienne"),
    PH("anciens"),  PH("anciennes"), PH("vieux"),   PH("vieille"),  PH("centre"), PH_END};

/*
 * Counts the significant words (3+ letters) of the answer found in a key of option `opt` (each
 * once), skipping those also found in option `except` (SIZE_MAX: none). An answer negating a
 * word absent from the key ("pas la commune") shares nothing.
 */
static size_t shared_words(const fb_choice_set_t *set, size_t opt, const struct words *in,
                           size_t except)
{
    size_t n = 0;
    /* Naming another option is checked on exact words or plurals: "fermée" (closed) names no
     * "ferme" (farm). A negation is a condition, not a word in common. */
    bool infl = except == SIZE_MAX;
    for (size_t i = 0; i < in->n; i++) {
        span_t w = in->w[i];
        if ((in->f[i] & W_NEG) && !option_has_word(set, opt, w))
            return 0;
        if (w.n < 3 || (in->f[i] & (W_STOP | W_NEG)) || !option_has_word_as(set, opt, w, infl))
            continue;
        if (except != SIZE_MAX && (option_has_word(set, except, w) || in_list(w, generic_words)))
            continue;
        /* count each distinct word once */
        bool seen = false;
        for (size_t j = 0; !seen && j < i; j++)
            seen = span_eq(in->w[j], w);
        n += !seen;
    }
    return n;
}

/* Containment, shared-word then typo stages of choice matching (see fb_answer_choice). */
static fb_answer_status_t match_loose(const fb_choice_set_t *set, const struct words *in,
                                      size_t *index, uint64_t *tie)
{
    if (in->all_stop)
        return FB_ANSWER_INVALID;
    struct pick p;
    pick_init(&p);
    for (size_t i = 0; i < set->nk; i++) {
        unsigned cost;
        bool side;
        size_t words = containment(in, set, &set->k[i], false, &cost, &side);
        if (words)
            pick_offer(&p, set->k[i].opt, (long)words * 64 - (long)cost);
    }
    if (p.best >= 0) {
        /* The most words wins only over names nested in the winner's ("habitat" within
         * "habitat collectif"): an answer also naming words of another option is ambiguous
         * ("habitat et commerce de gros", "un industriel privé"). */
        for (size_t o = 0; o < set->nopt; o++)
            if (o != p.opt && shared_words(set, o, in, p.opt) > 0) {
                p.several = true;
                p.tie |= opt_bit(o);
            }
        pick_tie(&p, tie);
        return pick_result(&p, index);
    }
    /* A distinctive word: the option sharing the most significant words (3+ letters) with the
     * answer ("établissement public foncier"), unless another option shares words it lacks. */
    pick_init(&p);
    for (size_t o = 0; o < set->nopt; o++) {
        long shared = (long)shared_words(set, o, in, SIZE_MAX);
        if (shared > 0)
            pick_offer(&p, o, shared);
    }
    if (p.best >= 0) {
        for (size_t o = 0; o < set->nopt; o++)
            if (o != p.opt && shared_words(set, o, in, p.opt) > 0) {
                p.several = true;
                p.tie |= opt_bit(o);
            }
        pick_tie(&p, tie);
        return pick_result(&p, index);
    }
    /* Typos: lowest total distance wins; a whole-key match beats a word match at equal cost. */
    pick_init(&p);
    span_t ss = strip_stop(in->s);
    for (size_t i = 0; i < set->nk; i++) {
        const struct key *k = &set->k[i];
        unsigned cost, d;
        bool side;
        long score = -1;
        if (typo_ok(ss, k->stripped, &d))
            score = 1000000L - 2L * d;
        if (containment(in, set, k, true, &cost, &side) && 1000000L - 2L * cost - 1 > score)
            score = 1000000L - 2L * cost - 1;
        pick_offer(&p, k->opt, score);
    }
    pick_tie(&p, tie);
    return pick_result(&p, index);
}

/* match_loose() on a span (its words found here). */
static fb_answer_status_t match_loose_span(const fb_choice_set_t *set, span_t s, size_t *index)
{
    struct words ws;
    words_init(&ws, s);
    fb_answer_status_t st = match_loose(set, &ws, index, NULL);
    words_done(&ws);
    return st;
}

/* Words that separate the items of a multiple choice once separators became " et ". */
static const phrase_t list_joiners[] = {PH("et"),    PH("ou"),    PH("puis"), PH("and"),
                                        PH("ainsi"), PH("voire"), PH_END};

static bool is_list_sep(char c)
{
    return c == ',' || c == ';' || c == '+' || c == '/' || c == '&' || c == '|' || c == '\n' ||
           c == '\r';
}

/* Folds valid UTF-8 `text` (at most FB_ANSWER_MAX_BYTES bytes) into *f after turning list
 * separators (",;+/&|" and newlines) into " et ", and a hyphen between digits into " a " ("1-3"
 * is "1 à 3"). fold_done(f) releases it. */
static void fold_list(const char *text, struct folded *f)
{
    size_t len = strlen(text), o = 0;
    char small[4 * FOLD_SMALL];
    char *tmp = len * 4 + 1 <= sizeof(small) ? small : fb_malloc(len * 4 + 1);
    for (size_t i = 0; i < len; i++) {
        if (is_list_sep(text[i])) {
            memcpy(tmp + o, " et ", 4);
            o += 4;
        } else if (text[i] == '-' && i > 0 && i + 1 < len && is_digit((unsigned char)text[i - 1]) &&
                   is_digit((unsigned char)text[i + 1])) {
            memcpy(tmp + o, " a ", 3);
            o += 3;
        } else {
            tmp[o++] = text[i];
        }
    }
    tmp[o] = '\0';
    fold_into(f, tmp, o);
    if (tmp != small)
        fb_free(tmp);
}

/* Resolves one item of a multiple choice into bits of *mask. An item with only stop words adds
 * nothing (*content false). An item matching several options by containment ("habitat
 * commerces") is retried word by word. An item whose text equals `known_invalid` (n 0: none) is
 * known to fail the strict and loose stages (the caller already ran them on that text). */
static fb_answer_status_t segment_match(const fb_choice_set_t *set, span_t seg,
                                        span_t known_invalid, uint64_t *mask, bool *content)
{
    *content = false;
    if (seg.n == 0)
        return FB_ANSWER_OK;
    struct words ws;
    words_init(&ws, seg);
    if (ws.all_stop) {
        words_done(&ws);
        return FB_ANSWER_OK;
    }
    *content = true;
    span_t core = strip_leading(seg, sel_lead);
    size_t pos = 0;
    span_t w;
    bool digits = true;
    uint64_t k = 0;
    fb_answer_status_t st;
    while (digits && word_next(core, &pos, &w))
        digits = all_digits(w, &k);
    span_t w1 = {0}, w2 = {0}, w3 = {0};
    size_t p3 = 0;
    uint64_t lo, hi;
    size_t idx;
    if (word_count(core) == 3 && word_next(core, &p3, &w1) && word_next(core, &p3, &w2) &&
        word_next(core, &p3, &w3) && (span_is(w2, "a") || span_is(w2, "au")) &&
        all_digits(w1, &lo) && all_digits(w3, &hi)) { /* "1 à 3", "1-3", "du 1 au 3" */
        if (lo < 1 || hi > set->nopt || lo > hi) {
            st = FB_ANSWER_OUT_OF_RANGE;
        } else {
            for (k = lo; k <= hi; k++)
                *mask |= 1ull << (k - 1);
            st = FB_ANSWER_OK;
        }
    } else if (digits) { /* "1 3 4" */
        st = FB_ANSWER_OK;
        for (pos = 0; st == FB_ANSWER_OK && word_next(core, &pos, &w);) {
            all_digits(w, &k);
            if (k < 1 || k > set->nopt)
                st = FB_ANSWER_OUT_OF_RANGE;
            else
                *mask |= 1ull << (k - 1);
        }
    } else {
        st = FB_ANSWER_INVALID;
        if (!span_eq(seg, known_invalid)) {
            st = match_strict(set, seg, &idx, NULL);
            if (st == FB_ANSWER_INVALID)
                st = match_loose(set, &ws, &idx, NULL);
        }
        if (st == FB_ANSWER_OK) {
            *mask |= 1ull << idx;
        } else if (st == FB_ANSWER_AMBIGUOUS) {
            uint64_t m = 0;
            for (size_t i = 0; i < ws.n && st == FB_ANSWER_AMBIGUOUS; i++) {
                if (ws.f[i] & W_STOP)
                    continue;
                fb_answer_status_t wst = match_strict(set, ws.w[i], &idx, NULL);
                if (wst == FB_ANSWER_INVALID)
                    wst = match_loose_span(set, ws.w[i], &idx);
                if (wst != FB_ANSWER_OK) {
                    words_done(&ws);
                    return FB_ANSWER_AMBIGUOUS;
                }
                m |= 1ull << idx;
            }
            *mask |= m;
            st = FB_ANSWER_OK;
        }
    }
    words_done(&ws);
    return st;
}

/* Splits a folded list ("1 et 3 et habitat") on joiner words and resolves each item
 * (`known_invalid`: see segment_match). */
static fb_answer_status_t list_match(const fb_choice_set_t *set, span_t s, span_t known_invalid,
                                     uint64_t *mask)
{
    uint64_t m = 0;
    bool any = false;
    size_t pos = 0, seg_start = 0;
    span_t w;
    for (;;) {
        size_t before = pos;
        bool more = word_next(s, &pos, &w);
        if (!more || in_list(w, list_joiners)) {
            span_t seg = {s.p + seg_start, (more ? before : s.n) - seg_start};
            bool content;
            fb_answer_status_t st = segment_match(set, span_trim(seg), known_invalid, &m, &content);
            if (st != FB_ANSWER_OK)
                return st;
            any = any || content;
            seg_start = pos;
        }
        if (!more)
            break;
    }
    if (!any)
        return FB_ANSWER_INVALID;
    *mask = m;
    return FB_ANSWER_OK;
}

/* Aligned size of `n` objects of `size` bytes within one allocation. */
static size_t block_size(size_t n, size_t size)
{
    size_t a = _Alignof(max_align_t), b = n * size;
    return (b + a - 1) / a * a;
}

fb_choice_set_t *fb_choice_set_new(const fb_choice_t *choices, size_t n)
{
    if (!choices || n == 0)
        return NULL;
    /* Upper bounds: every id, label and synonym a key, folding never lengthens, a folded key
     * of b bytes has at most (b + 1) / 2 words. */
    size_t nk = 0, bytes = 0, nw = 0;
    for (size_t i = 0; i < n; i++) {
        const char *const *syn = choices[i].synonyms;
        for (size_t j = 0; j < 2 || (syn && *syn); j++) {
            const char *name = j == 0 ? choices[i].id : j == 1 ? choices[i].label : *syn++;
            size_t len = name ? strnlen(name, FB_ANSWER_MAX_BYTES + 1) : 0;
            if (len == 0 || len > FB_ANSWER_MAX_BYTES)
                continue;
            nk++;
            bytes += len + 1;
            nw += (len + 1) / 2;
        }
    }
    size_t o_set = block_size(1, sizeof(fb_choice_set_t)), o_k = block_size(nk, sizeof(struct key)),
           o_k0 = block_size(n + 1, sizeof(size_t)), o_kw = block_size(nw, sizeof(span_t)),
           o_kf = block_size(nw, 1), o_kb = block_size(nw, 1),
           o_cls = block_size(n, sizeof(unsigned)), o_of = block_size(n, sizeof(uint64_t));
    char *mem = fb_malloc(o_set + o_k + o_k0 + o_kw + o_kf + o_kb + o_cls + o_of + bytes + 1);
    fb_choice_set_t *set = (fb_choice_set_t *)(void *)mem;
    mem += o_set;
    set->k = (struct key *)(void *)mem;
    mem += o_k;
    set->opt_k0 = (size_t *)(void *)mem;
    mem += o_k0;
    set->kw = (span_t *)(void *)mem;
    mem += o_kw;
    set->kf = (unsigned char *)mem;
    mem += o_kf;
    set->kb = (unsigned char *)mem;
    mem += o_kb;
    set->opt_cls = (unsigned *)(void *)mem;
    mem += o_cls;
    set->opt_first = (uint64_t *)(void *)mem;
    mem += o_of;
    set->text = mem;
    set->nopt = n;
    set->nk = 0;
    size_t used = 0, wused = 0;
    for (size_t i = 0; i < n; i++) {
        set->opt_k0[i] = set->nk;
        set->opt_first[i] = 0;
        const char *const *syn = choices[i].synonyms;
        for (size_t j = 0; j < 2 || (syn && *syn); j++) {
            const char *name = j == 0 ? choices[i].id : j == 1 ? choices[i].label : *syn++;
            size_t len = name ? strnlen(name, FB_ANSWER_MAX_BYTES + 1) : 0;
            if (len == 0 || len > FB_ANSWER_MAX_BYTES)
                continue;
            char *out = set->text + used;
            size_t fn = fb_text_fold(name, len, out, len + 1);
            if (fn == 0 || fn > len)
                continue; /* nothing left after folding (fn > len cannot happen) */
            used += fn + 1;
            struct key *k = &set->k[set->nk++];
            k->s = (span_t){out, fn};
            k->stripped = strip_stop(k->s);
            k->opt = i;
            k->w0 = wused;
            k->first = 0;
            k->all_stop = true;
            size_t pos = 0;
            span_t w;
            while (word_next(k->s, &pos, &w)) {
                set->kw[wused] = w;
                set->kf[wused] = (unsigned char)((is_stop(w) ? W_STOP : 0) |
                                                 (in_list(w, negation_words) ? W_NEG : 0));
                set->kb[wused] = (unsigned char)fb_text_typo_budget(w.n);
                k->all_stop = k->all_stop && (set->kf[wused] & W_STOP);
                k->first |= first_bit(w);
                wused++;
            }
            k->nw = wused - k->w0;
            set->opt_first[i] |= k->first;
        }
    }
    set->opt_k0[n] = set->nk;
    for (size_t o = 0; o < n; o++) /* the set never changes: once, not at each answer */
        set->opt_cls[o] = names_classes(set, o);
    return set;
}

void fb_choice_set_free(fb_choice_set_t *set)
{
    fb_free(set);
}

size_t fb_choice_set_count(const fb_choice_set_t *set)
{
    return set ? set->nopt : 0;
}

/*
 * Single choice. Matching is deterministic (it depends only on the option order and the
 * scores) and runs in stages; the first stage that finds something decides:
 *   1. a position: "2", "n°2", "le 2", "2e", "deuxième", "la dernière" (out of range:
 * OUT_OF_RANGE);
 *   2. exact: the folded answer is an option's id, label or synonym, also after dropping leading
 *      articles ("l'industriel");
 *   3. a cardinal in words ("deux"), after the exact stage so that an option labelled "Un" wins;
 *   4. the whole answer means "je ne sais pas" (UNKNOWN);
 *   5. label-word containment (see containment()): most words matched wins;
 *   6. typos within text.h budgets (short words never): lowest distance wins, a whole key
 *      before a word;
 *   7. several options named at once ("2 et 3", "habitat et commerce"): AMBIGUOUS;
 *   8. a "je ne sais pas" phrase inside the answer: UNKNOWN; else INVALID.
 * Several options tied at stages 2, 5 or 6 is AMBIGUOUS.
 */
fb_answer_status_t fb_answer_choice_in(const fb_choice_set_t *set, const char *text, size_t *index)
{
    if (!set)
        return FB_ANSWER_INVALID;
    struct folded f;
    fb_answer_status_t st = prepare_into(text, &f);
    if (st != FB_ANSWER_OK)
        return st;
    span_t s = folded_span(&f);
    size_t idx = 0;
    st = match_strict(set, s, &idx, NULL);
    if (st == FB_ANSWER_INVALID && fb__ans_unknown_folded(s))
        st = FB_ANSWER_UNKNOWN;
    if (st == FB_ANSWER_INVALID)
        st = match_loose_span(set, s, &idx);
    if (st == FB_ANSWER_INVALID && set->nopt <= 64) {
        /* Both stages just failed on `s`: a list item with the same text fails them too. */
        struct folded lf;
        fold_list(text, &lf);
        uint64_t mask = 0;
        if (list_match(set, folded_span(&lf), s, &mask) == FB_ANSWER_OK && (mask & (mask - 1)))
            st = FB_ANSWER_AMBIGUOUS;
        fold_done(&lf);
    }
    if (st == FB_ANSWER_INVALID && fb__ans_contains_unknown(s))
        st = FB_ANSWER_UNKNOWN;
    if (st == FB_ANSWER_OK)
        *index = idx;
    fold_done(&f);
    return st;
}

fb_answer_status_t fb_answer_choice(const fb_choice_t *choices, size_t n, const char *text,
                                    size_t *index)
{
    fb_choice_set_t *set = fb_choice_set_new(choices, n);
    fb_answer_status_t st = fb_answer_choice_in(set, text, index);
    fb_choice_set_free(set);
    return st;
}

static const phrase_t all_phrases[] = {
    PH("tous"),
    PH("toutes"),
    PH("tout"),
    PH("tous les choix"),
    PH("toutes les reponses"),
    PH("toutes les options"),
    PH("toutes les propositions"),
    PH("tous les choix possibles"),
    PH("l ensemble"),
    PH("l ensemble des choix"),
    PH("tout ca"),
    PH("tout cela"),
    PH("tout a la fois"),
    PH("tous ceux la"),
    PH("toutes celles la"),
    PH("un peu de tout"),
    PH_END,
};

static const phrase_t all_lead[] = {PH("je"),     PH("veux"),   PH("voudrais"), PH("choisis"),
                                    PH("prends"), PH("dirais"), PH("c"),        PH("est"),
                                    PH("plutot"), PH_END};

static const phrase_t all_but[] = {PH("sauf"),   PH("excepte"),  PH("hormis"),
                                   PH("a part"), PH("mais pas"), PH_END};

static const phrase_t none_fill[] = {
    PH("de"),     PH("d"),       PH("des"),      PH("ces"),         PH("ceux"),
    PH("celles"), PH("celle"),   PH("celui"),    PH("eux"),         PH("elles"),
    PH("ci"),     PH("la"),      PH("ca"),       PH("cela"),        PH("tout"),
    PH("choix"),  PH("reponse"), PH("reponses"), PH("proposition"), PH("propositions"),
    PH("option"), PH("options"), PH("l"),        PH("un"),          PH("une"),
    PH("autre"),  PH("ni"),      PH("dessus"),   PH("les"),         PH("merci"),
    PH_END};

/* True for "aucun", "aucune de ces réponses", "rien de tout ça", "ni l'un ni l'autre". */
static bool means_none(span_t s)
{
    size_t pos = 0;
    span_t w;
    if (!word_next(s, &pos, &w) ||
        !(span_is(w, "aucun") || span_is(w, "aucune") || span_is(w, "rien") || span_is(w, "ni")))
        return false;
    uint64_t k;
    while (word_next(s, &pos, &w))
        if (!in_list(w, none_fill) && !all_digits(w, &k) && fb__ans_numeral_word(w) < 0)
            return false;
    return true;
}

/* "les deux", "tous les trois": *count is the number said, or returns false. */
static bool says_all_n(span_t s, uint64_t *count)
{
    span_t rest;
    if (!starts_with_lit(s, "tous les", &rest) && !starts_with_lit(s, "toutes les", &rest) &&
        !starts_with_lit(s, "les", &rest))
        return false;
    span_t words[4];
    size_t m = 0, pos = 0;
    while (m < FB_ARRAY_SIZE(words) && word_next(rest, &pos, &words[m]))
        m++;
    if (m == 0 || word_count(rest) != m)
        return false;
    if (m == 1 && all_digits(words[0], count))
        return true;
    return fb__ans_numeral_parse(words, m, count) == m;
}

/*
 * Multiple choice. Stages: the whole answer names one option exactly (labels may contain "et");
 * "je ne sais pas" (UNKNOWN); "tous"/"toutes" (all), "les deux" when there are two options, "tous
 * sauf 2" (all but); "aucun", "rien" (mask 0); then a list whose items are separated by ",",
 * ";", "+", "/", "&", "et", "ou" or spaces between numbers, each item resolved like a single
 * choice (a failing item fails the whole answer with its status).
 */
fb_answer_status_t fb_answer_choices_in(const fb_choice_set_t *set, const char *text,
                                        uint64_t *mask)
{
    if (!set || set->nopt > 64)
        return FB_ANSWER_INVALID;
    struct folded f;
    fb_answer_status_t st = prepare_into(text, &f);
    if (st != FB_ANSWER_OK)
        return st;
    size_t n = set->nopt;
    span_t s = folded_span(&f), none = {NULL, 0};
    uint64_t all = n == 64 ? UINT64_MAX : (1ull << n) - 1, m = 0, count;
    size_t idx;
    span_t core = strip_leading(s, all_lead), rest;
    st = match_exact(set, s, &idx, NULL);
    if (st == FB_ANSWER_OK) {
        m = 1ull << idx;
    } else if (st == FB_ANSWER_AMBIGUOUS) {
        /* two options share this exact name */
    } else if (fb__ans_unknown_folded(s)) {
        st = FB_ANSWER_UNKNOWN;
    } else if (in_list(core, all_phrases)) {
        st = FB_ANSWER_OK;
        m = all;
    } else if (says_all_n(core, &count)) {
        st = count == n ? FB_ANSWER_OK : FB_ANSWER_INVALID;
        m = all;
    } else if (means_none(core)) {
        st = FB_ANSWER_OK;
        m = 0;
    } else {
        bool but = false;
        for (const phrase_t *a = all_phrases; !but && a->s; a++) {
            span_t r1;
            if (!starts_with_phrase(core, a, &r1))
                continue;
            for (const phrase_t *b = all_but; !but && b->s; b++)
                but = starts_with_phrase(r1, b, &rest) && rest.n > 0;
        }
        if (but) {
            /* "tous sauf 2 et 4": `rest` points into the plain fold, whose words are the same. */
            st = list_match(set, rest, none, &m);
            m = all & ~m;
        } else {
            struct folded lf;
            fold_list(text, &lf);
            st = list_match(set, folded_span(&lf), none, &m);
            fold_done(&lf);
        }
    }
    if (st == FB_ANSWER_INVALID && fb__ans_contains_unknown(s))
        st = FB_ANSWER_UNKNOWN;
    if (st == FB_ANSWER_OK)
        *mask = m;
    fold_done(&f);
    return st;
}

fb_answer_status_t fb_answer_choices(const fb_choice_t *choices, size_t n, const char *text,
                                     uint64_t *mask)
{
    if (!choices || n == 0 || n > 64)
        return FB_ANSWER_INVALID;
    fb_choice_set_t *set = fb_choice_set_new(choices, n);
    fb_answer_status_t st = fb_answer_choices_in(set, text, mask);
    fb_choice_set_free(set);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Saying how an answer matched, and asking rather than guessing (issue 19)
 *
 * fb_answer_choice_match() runs the stages of fb_answer_choice_in() and tells an exact match (a
 * position, an option's whole id, label or synonym) from a loose one (words, inflections,
 * typos), which the dialog says back (« Noté : ... »). A loose pick is not trusted when the
 * answer carries a qualifier the option does not reflect: a negation, an exception, a death, an
 * unknown, an insolvency, a bad state. Options tied are candidates to confirm, not a failure.
 * ------------------------------------------------------------------------------------------- */

#define Q_NEG     1u  /* pas, aucun, ni, sans, jamais, non, rien */
#define Q_PLUS    2u  /* plus: "n'est plus" is often only "no longer" */
#define Q_EXCEPT  4u  /* sauf, hors, excepté, hormis */
#define Q_DEATH   8u  /* décédé, succession, héritiers */
#define Q_UNKNOWN 16u /* inconnu, introuvable, disparu */
#define Q_INSOLV  32u /* liquidation, redressement, faillite */
#define Q_BAD     64u /* mauvais, vétuste, délabré, ruine */

static const struct {
    phrase_t w;
    unsigned cls;
} qualifiers[] = {
    {PH("pas"), Q_NEG},
    {PH("aucun"), Q_NEG},
    {PH("aucune"), Q_NEG},
    {PH("ni"), Q_NEG},
    {PH("sans"), Q_NEG},
    {PH("jamais"), Q_NEG},
    {PH("non"), Q_NEG},
    {PH("rien"), Q_NEG},
    {PH("nul"), Q_NEG},
    {PH("plus"), Q_PLUS},
    {PH("sauf"), Q_EXCEPT},
    {PH("hors"), Q_EXCEPT},
    {PH("excepte"), Q_EXCEPT},
    {PH("hormis"), Q_EXCEPT},
    {PH("decede"), Q_DEATH},
    {PH("deces"), Q_DEATH},
    {PH("mort"), Q_DEATH},
    {PH("defunt"), Q_DEATH},
    {PH("succession"), Q_DEATH},
    {PH("heritier"), Q_DEATH},
    {PH("heritage"), Q_DEATH},
    {PH("inconnu"), Q_UNKNOWN},
    {PH("introuvable"), Q_UNKNOWN},
    {PH("injoignable"), Q_UNKNOWN},
    {PH("disparu"), Q_UNKNOWN},
    {PH("liquidation"), Q_INSOLV},
    {PH("liquidateur"), Q_INSOLV},
    {PH("redressement"), Q_INSOLV},
    {PH("faillite"), Q_INSOLV},
    {PH("mandataire"), Q_INSOLV},
    {PH("mauvais"), Q_BAD},
    {PH("vetuste"), Q_BAD},
    {PH("delabre"), Q_BAD},
    {PH("ruine"), Q_BAD},
    {PH("abime"), Q_BAD},
    {PH("effondre"), Q_BAD},
    {PH("degrade"), Q_BAD},
    {PH("insalubre"), Q_BAD},
};

/* The qualifier classes of one folded word (0: none). */
static unsigned word_classes(span_t w)
{
    if (w.n < 2 && !span_is(w, "n"))
        return 0;
    for (size_t i = 0; i < FB_ARRAY_SIZE(qualifiers); i++)
        if (same_word(w, (span_t){qualifiers[i].w.s, qualifiers[i].w.n}))
            return qualifiers[i].cls;
    return 0;
}

/* The qualifier classes an answer's words carry. */
static unsigned answer_classes(const struct words *in)
{
    unsigned c = 0;
    for (size_t i = 0; i < in->n; i++)
        c |= word_classes(in->w[i]);
    return c;
}

/* The qualifier classes the names of option `o` reflect (a negation covers "plus"). */
static unsigned names_classes(const fb_choice_set_t *set, size_t o)
{
    unsigned c = 0;
    for (size_t i = set->opt_k0[o]; i < set->opt_k0[o + 1]; i++)
        for (size_t j = set->k[i].w0; j < set->k[i].w0 + set->k[i].nw; j++)
            c |= word_classes(set->kw[j]);
    return (c & Q_NEG) ? c | Q_PLUS : c;
}

/* names_classes() of option `o`, computed with the set. */
static unsigned option_classes(const fb_choice_set_t *set, size_t o)
{
    return set->opt_cls[o];
}

/* Fills m with the options of `mask` (in order, at most FB_MATCH_MAX_CANDIDATES) as UNSURE. */
static void unsure_from(fb_choice_match_t *m, uint64_t mask)
{
    m->how = FB_MATCH_UNSURE;
    m->n = 0;
    for (size_t o = 0; o < 64 && m->n < FB_MATCH_MAX_CANDIDATES; o++)
        if (mask & ((uint64_t)1 << o))
            m->cand[m->n++] = o;
}

/* A loose pick of option `pick` for words `in`: UNSURE when a qualifier of the answer is not
 * reflected by the option while another option reflects it (both are candidates), or when it is
 * a negation or an exception that no option reflects. */
static void qualify(const fb_choice_set_t *set, const struct words *in, size_t pick,
                    fb_choice_match_t *m)
{
    unsigned missing = answer_classes(in) & ~option_classes(set, pick);
    if (!missing)
        return;
    uint64_t cands = opt_bit(pick);
    bool unsure = (missing & (Q_NEG | Q_EXCEPT)) != 0;
    for (size_t o = 0; o < set->nopt && o < 64; o++)
        if (o != pick && (option_classes(set, o) & missing)) {
            cands |= opt_bit(o);
            unsure = true;
        }
    if (unsure)
        unsure_from(m, cands);
}

/* Fillers that may open an answer without changing it ("oui, c'est la commune", "bah une
 * usine"): tried when the whole answer matched nothing. */
static const phrase_t answer_lead[] = {PH("oui"),     PH("ouais"),     PH("non"),    PH("alors"),
                                       PH("bon"),     PH("ben"),       PH("bah"),    PH("euh"),
                                       PH("ok"),      PH("bonjour"),   PH("hello"),  PH("ah"),
                                       PH("en fait"), PH("je dirais"), PH("disons"), PH_END};

/* Words that open a negated item of a multiple choice: "pas de monument", "aucun risque". */
static const phrase_t negated_lead[] = {PH("il n y a pas de"),
                                        PH("il n y a pas d"),
                                        PH("il n y a aucun"),
                                        PH("il n y a aucune"),
                                        PH("n y a pas de"),
                                        PH("n y a pas d"),
                                        PH("y a pas de"),
                                        PH("y a pas d"),
                                        PH("pas de"),
                                        PH("pas d"),
                                        PH("pas du"),
                                        PH("pas"),
                                        PH("aucun"),
                                        PH("aucune"),
                                        PH("sans"),
                                        PH("ni"),
                                        PH("non"),
                                        PH("jamais de"),
                                        PH("plus de"),
                                        PH_END};

/* Words that may end the positive part of "un organisme public qui n'est pas l'EPF". */
static const phrase_t contrast_fill[] = {
    PH("n"),     PH("ne"), PH("y"),    PH("a"),       PH("qui"), PH("est"), PH("c"),
    PH("mais"),  PH("et"), PH("s"),    PH("agit"),    PH("il"),  PH("qu"),  PH("pense"),
    PH("crois"), PH("en"), PH("fait"), PH("surtout"), PH_END};

/* The words of `s` from word `from` (0-based) to word `to` (excluded). */
static span_t words_between(span_t s, size_t from, size_t to)
{
    size_t pos = 0, i = 0, start = s.n, end = s.n;
    span_t w;
    while (word_next(s, &pos, &w)) {
        if (i == from)
            start = (size_t)(w.p - s.p);
        if (i == to) {
            end = (size_t)(w.p - s.p);
            break;
        }
        i++;
    }
    if (start >= end)
        return (span_t){s.p, 0};
    return span_trim((span_t){s.p + start, end - start});
}

/* Trailing fillers out of a positive part ("un organisme public qui n est" -> "un organisme
 * public"); empty when nothing else is left. */
static span_t trim_contrast(span_t s)
{
    for (;;) {
        size_t n = s.n;
        while (n > 0 && s.p[n - 1] != ' ')
            n--;
        span_t last = {s.p + n, s.n - n};
        if (s.n == 0 || !(in_list(last, contrast_fill) || is_stop(last)))
            return s;
        s = span_trim((span_t){s.p, n});
    }
}

/*
 * An answer that says what it is and what it is not: "un établissement public, mais pas un
 * EPF", "pas de PLU mais une carte communale", "un organisme public qui n'est pas l'EPF".
 * Returns true with *pos the part that says what it is and *neg what it is not.
 */
static bool split_contrast(span_t s, span_t *pos, span_t *neg)
{
    size_t n = word_count(s), i = 0, at = SIZE_MAX, pas = SIZE_MAX, p = 0;
    span_t w;
    while (word_next(s, &p, &w)) {
        if (at == SIZE_MAX && i > 0 && i + 1 < n && (span_is(w, "mais") || span_is(w, "plutot")))
            at = i;
        if (pas == SIZE_MAX && i > 0 && i + 1 < n && span_is(w, "pas"))
            pas = i;
        i++;
    }
    if (at != SIZE_MAX) {
        span_t a = words_between(s, 0, at), b = words_between(s, at + 1, n);
        span_t ra = strip_leading(a, negated_lead), rb = strip_leading(b, negated_lead);
        bool na = ra.n < a.n, nb = rb.n < b.n;
        if (na != nb) {
            *pos = trim_contrast(na ? b : a);
            *neg = na ? ra : rb;
            return pos->n > 0;
        }
        return false;
    }
    if (pas != SIZE_MAX && pas >= 2) {
        /* "X qui n'est pas Y", "X, pas Y"; but "on ne connaît pas ses héritiers" negates a
         * verb, not an option */
        span_t before = words_between(s, pas - 1, pas), ne = words_between(s, pas - 2, pas - 1);
        bool be = span_is(before, "est") || span_is(before, "sont") || span_is(before, "etait");
        if (!be && (span_is(ne, "ne") || span_is(ne, "n") || span_is(before, "ne") ||
                    span_is(before, "n")))
            return false;
        *pos = trim_contrast(words_between(s, 0, pas));
        *neg = strip_stop(words_between(s, pas + 1, n));
        return pos->n > 0 && neg->n > 0;
    }
    return false;
}

/* The options a match designates: the one picked, or the candidates. */
static uint64_t match_options(fb_answer_status_t st, size_t idx, const fb_choice_match_t *m)
{
    if (st != FB_ANSWER_OK)
        return 0;
    if (m->how != FB_MATCH_UNSURE)
        return opt_bit(idx);
    uint64_t c = 0;
    for (size_t i = 0; i < m->n; i++)
        c |= opt_bit((size_t)m->cand[i]);
    return c;
}

/* The single-choice stages over folded span `s` with their way of matching (`text`: the raw
 * answer for the several-options check, NULL to skip it). */
static fb_answer_status_t choice_core(const fb_choice_set_t *set, span_t s, const char *text,
                                      size_t *index, fb_choice_match_t *m)
{
    size_t idx = 0;
    uint64_t tie = 0;
    m->how = FB_MATCH_EXACT;
    m->n = 0;
    span_t both = strip_leading(s, all_lead);
    if (span_is(both, "les deux") || span_is(both, "tous les deux") ||
        span_is(both, "toutes les deux") || span_is(both, "les 2"))
        return FB_ANSWER_INVALID; /* one answer is expected: "both" is none of them */
    fb_answer_status_t st = match_strict(set, s, &idx, &tie);
    if (st == FB_ANSWER_INVALID && fb__ans_unknown_folded(s))
        return FB_ANSWER_UNKNOWN;
    span_t pos, neg;
    if (st == FB_ANSWER_INVALID && split_contrast(s, &pos, &neg)) {
        size_t pi = 0, ni = 0;
        fb_choice_match_t pm, nm;
        fb_answer_status_t ps = choice_core(set, pos, NULL, &pi, &pm);
        fb_answer_status_t ns = choice_core(set, neg, NULL, &ni, &nm);
        uint64_t c = match_options(ps, pi, &pm) & ~match_options(ns, ni, &nm);
        if (c && !(c & (c - 1))) {
            m->how = FB_MATCH_LOOSE;
            *index = (size_t)__builtin_ctzll(c);
            return FB_ANSWER_OK;
        }
        if (c && __builtin_popcountll(c) <= FB_MATCH_MAX_CANDIDATES) {
            unsure_from(m, c);
            return FB_ANSWER_OK;
        }
    }
    struct words ws;
    words_init(&ws, s);
    if (st == FB_ANSWER_INVALID) {
        m->how = FB_MATCH_LOOSE;
        st = match_loose(set, &ws, &idx, &tie);
    }
    if (st == FB_ANSWER_AMBIGUOUS && tie && (answer_classes(&ws) & Q_INSOLV)) {
        /* "une société privée en liquidation": the insolvency decides who sells */
        uint64_t keep = 0;
        for (size_t o = 0; o < set->nopt && o < 64; o++)
            if ((tie & opt_bit(o)) && (option_classes(set, o) & Q_INSOLV))
                keep |= opt_bit(o);
        if (keep && !(keep & (keep - 1))) {
            st = FB_ANSWER_OK;
            idx = (size_t)__builtin_ctzll(keep);
        }
    }
    if (st == FB_ANSWER_INVALID && text && set->nopt <= 64) {
        struct folded lf;
        fold_list(text, &lf);
        uint64_t mask = 0;
        if (list_match(set, folded_span(&lf), s, &mask) == FB_ANSWER_OK && (mask & (mask - 1))) {
            st = FB_ANSWER_AMBIGUOUS;
            tie = mask;
        }
        fold_done(&lf);
    }
    if (st == FB_ANSWER_INVALID) {
        span_t rest = strip_leading(s, answer_lead);
        if (rest.n < s.n) {
            words_done(&ws);
            st = choice_core(set, rest, NULL, &idx, m);
            if (st == FB_ANSWER_OK && m->how == FB_MATCH_EXACT)
                m->how = FB_MATCH_LOOSE;
            if (st == FB_ANSWER_OK && m->how != FB_MATCH_UNSURE)
                *index = idx;
            return st;
        }
    }
    if (st == FB_ANSWER_OK && m->how == FB_MATCH_LOOSE)
        qualify(set, &ws, idx, m);
    words_done(&ws);
    if (st == FB_ANSWER_AMBIGUOUS && tie && __builtin_popcountll(tie) <= FB_MATCH_MAX_CANDIDATES) {
        unsure_from(m, tie);
        return FB_ANSWER_OK;
    }
    if (st == FB_ANSWER_OK && m->how != FB_MATCH_UNSURE)
        *index = idx;
    return st;
}

fb_answer_status_t fb_answer_choice_match(const fb_choice_set_t *set, const char *text,
                                          size_t *index, fb_choice_match_t *m)
{
    m->how = FB_MATCH_EXACT;
    m->n = 0;
    if (!set)
        return FB_ANSWER_INVALID;
    struct folded f;
    fb_answer_status_t st = prepare_into(text, &f);
    if (st != FB_ANSWER_OK)
        return st;
    span_t s = folded_span(&f);
    st = choice_core(set, s, text, index, m);
    if (st == FB_ANSWER_INVALID && fb__ans_contains_unknown(s))
        st = FB_ANSWER_UNKNOWN;
    fold_done(&f);
    return st;
}

/* Words that may fill a "none" answer besides those of means_none(). */
static const phrase_t none_more[] = {PH("contrainte"),
                                     PH("contraintes"),
                                     PH("situation"),
                                     PH("situations"),
                                     PH("particulier"),
                                     PH("particuliere"),
                                     PH("particulieres"),
                                     PH("connu"),
                                     PH("connue"),
                                     PH("connues"),
                                     PH("a"),
                                     PH("ma"),
                                     PH("notre"),
                                     PH("connaissance"),
                                     PH("concerne"),
                                     PH("concernee"),
                                     PH("concernes"),
                                     PH("du"),
                                     PH("tout"),
                                     PH("je"),
                                     PH("crois"),
                                     PH("pense"),
                                     PH("non"),
                                     PH("pas"),
                                     PH("rien"),
                                     PH("aucun"),
                                     PH("aucune"),
                                     PH("ni"),
                                     PH("c"),
                                     PH("est"),
                                     PH("n"),
                                     PH("y"),
                                     PH("il"),
                                     PH("le"),
                                     PH("site"),
                                     PH("ce"),
                                     PH("cas"),
                                     PH("deux"),
                                     PH("des"),
                                     PH("de"),
                                     PH("d"),
                                     PH("ces"),
                                     PH("la"),
                                     PH("les"),
                                     PH("l"),
                                     PH("un"),
                                     PH("une"),
                                     PH("autre"),
                                     PH("ca"),
                                     PH("cela"),
                                     PH("merci"),
                                     PH("dessus"),
                                     PH("signale"),
                                     PH("signalee"),
                                     PH("nous"),
                                     PH("on"),
                                     PH("sait"),
                                     PH("en"),
                                     PH("et"),
                                     PH("plus"),
                                     PH_END};

/* "non", "non, aucune des deux", "pas concerné", "aucune contrainte à ma connaissance", "rien":
 * every word a "none" filler, and at least one of non / aucun / rien / pas / ni. */
static bool means_none_loosely(span_t s)
{
    size_t pos = 0;
    span_t w;
    bool neg = false;
    while (word_next(s, &pos, &w)) {
        if (!in_list(w, none_more) && !in_list(w, none_fill))
            return false;
        neg = neg || span_is(w, "non") || span_is(w, "aucun") || span_is(w, "aucune") ||
              span_is(w, "rien") || span_is(w, "pas") || span_is(w, "ni");
    }
    return neg;
}

fb_answer_status_t fb_answer_choices_match(const fb_choice_set_t *set, const char *text,
                                           uint64_t *mask, fb_choice_match_t *m)
{
    m->how = FB_MATCH_EXACT;
    m->n = 0;
    if (!set || set->nopt > 64)
        return FB_ANSWER_INVALID;
    struct folded f;
    fb_answer_status_t st = prepare_into(text, &f);
    if (st != FB_ANSWER_OK)
        return st;
    span_t s = folded_span(&f);
    size_t idx;
    /* the whole answer naming one option exactly, "tous", "aucun", "tous sauf": as before */
    st = match_exact(set, s, &idx, NULL);
    span_t core = strip_leading(s, all_lead);
    if (st == FB_ANSWER_INVALID && !fb__ans_unknown_folded(s) && !means_none(core) &&
        means_none_loosely(s)) {
        *mask = 0;
        fold_done(&f);
        return FB_ANSWER_OK;
    }
    bool plain = st != FB_ANSWER_INVALID || fb__ans_unknown_folded(s) ||
                 in_list(core, all_phrases) || means_none(core);
    uint64_t count;
    plain = plain || says_all_n(core, &count);
    for (const phrase_t *a = all_phrases; !plain && a->s; a++) {
        span_t r1, rest;
        if (starts_with_phrase(core, a, &r1))
            for (const phrase_t *b = all_but; !plain && b->s; b++)
                plain = starts_with_phrase(r1, b, &rest) && rest.n > 0;
    }
    if (plain && !in_list(core, all_phrases) && says_all_n(core, &count) &&
        count + 1 == set->nopt && set->opt_k0[set->nopt - 1] < set->nk &&
        span_is(set->k[set->opt_k0[set->nopt - 1]].s, "nsp")) {
        /* "les deux" among two options and "je ne sais pas" (the dialog's nsp option) */
        *mask = (((uint64_t)1 << count) - 1);
        fold_done(&f);
        return FB_ANSWER_OK;
    }
    if (plain) {
        fold_done(&f);
        return fb_answer_choices_in(set, text, mask);
    }
    /* a list: each item exact, loose, negated or to confirm */
    struct folded lf;
    fold_list(text, &lf);
    span_t l = folded_span(&lf);
    uint64_t sure = 0, alt = 0; /* alt: the options of the first item to confirm */
    bool any = false, loose = false, unsure = false;
    size_t pos = 0, seg_start = 0;
    span_t w;
    st = FB_ANSWER_OK;
    for (;;) {
        size_t before = pos;
        bool more = word_next(l, &pos, &w);
        if (more && !in_list(w, list_joiners) && !span_is(w, "mais"))
            continue;
        span_t seg = span_trim((span_t){l.p + seg_start, (more ? before : l.n) - seg_start});
        seg_start = pos;
        struct words ws;
        words_init(&ws, seg);
        bool content = seg.n > 0 && !ws.all_stop;
        words_done(&ws);
        if (content) {
            any = true;
            span_t rest = strip_leading(seg, negated_lead);
            size_t k;
            fb_choice_match_t sm;
            uint64_t part = 0;
            bool c2;
            if (rest.n < seg.n && choice_core(set, rest, NULL, &k, &sm) == FB_ANSWER_OK) {
                loose = true; /* "pas de monument": nothing added */
            } else if (segment_match(set, seg, (span_t){NULL, 0}, &part, &c2) == FB_ANSWER_OK &&
                       choice_core(set, seg, NULL, &k, &sm) != FB_ANSWER_OK) {
                sure |= part; /* numbers, ranges */
            } else {
                fb_answer_status_t ss = choice_core(set, seg, NULL, &k, &sm);
                if (ss == FB_ANSWER_OK && sm.how != FB_MATCH_UNSURE) {
                    sure |= opt_bit(k);
                    loose = loose || sm.how == FB_MATCH_LOOSE;
                } else if (ss == FB_ANSWER_OK) {
                    /* several options in one item ("habitat commerces"): word by word, as
                     * fb_answer_choices_in, else to confirm */
                    part = 0;
                    if (segment_match(set, seg, (span_t){NULL, 0}, &part, &c2) == FB_ANSWER_OK &&
                        sm.n > 1 && (part & (part - 1))) {
                        sure |= part;
                        loose = true;
                    } else if (!unsure) {
                        unsure = true;
                        for (size_t i = 0; i < sm.n; i++)
                            alt |= (uint64_t)1 << sm.cand[i];
                    } else {
                        sure |= (uint64_t)1 << sm.cand[0];
                    }
                } else {
                    st = ss;
                }
            }
        }
        if (!more || st != FB_ANSWER_OK)
            break;
    }
    fold_done(&lf);
    if (st == FB_ANSWER_OK && !any)
        st = FB_ANSWER_INVALID;
    if (st == FB_ANSWER_OK && unsure) {
        m->how = FB_MATCH_UNSURE;
        m->n = 0;
        for (size_t o = 0; o < set->nopt && m->n < FB_MATCH_MAX_CANDIDATES; o++)
            if (alt & ((uint64_t)1 << o))
                m->cand[m->n++] = sure | ((uint64_t)1 << o);
        if (__builtin_popcountll(alt) == 1 && m->n == 1)
            m->cand[0] = sure | alt;
    } else if (st == FB_ANSWER_OK) {
        m->how = loose ? FB_MATCH_LOOSE : FB_MATCH_EXACT;
        *mask = sure;
    }
    if (st == FB_ANSWER_INVALID && fb__ans_contains_unknown(s))
        st = FB_ANSWER_UNKNOWN;
    fold_done(&f);
    return st;
}
