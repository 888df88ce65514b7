/* SPDX-License-Identifier: MIT */
/*
 * answers.c - understanding what a French-speaking user typed, for each answer type (answers.h).
 *
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
 */
#include "engine/answers.h"

#include <math.h>
#include <string.h>

#include "common/utf8.h"
#include "engine/text.h"
#include "frichebot/alloc.h"

/* ---------------------------------------------------------------------------------------------
 * UTF-8 and folded-word helpers
 * ------------------------------------------------------------------------------------------- */

#define BAD_CP FB_UTF8_BAD

/* A borrowed slice of a folded string: lowercase ASCII words separated by single spaces. */
typedef struct span_s {
    const char *p;
    size_t n;
} span_t;

static span_t span_of(const char *s)
{
    span_t r = {s, strlen(s)};
    return r;
}

static bool span_is(span_t s, const char *lit)
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

static bool span_eq(span_t a, span_t b)
{
    return a.n == b.n && memcmp(a.p, b.p, a.n) == 0;
}

static span_t span_trim(span_t s)
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
static bool word_next(span_t s, size_t *pos, span_t *w)
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

static size_t word_count(span_t s)
{
    size_t pos = 0, n = 0;
    span_t w;
    while (word_next(s, &pos, &w))
        n++;
    return n;
}

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

/* True when `w` equals the phrase (first byte, then length, then the rest). */
static bool span_is_ph(span_t w, const phrase_t *ph)
{
    return w.n == ph->n && w.n > 0 && w.p[0] == ph->s[0] && memcmp(w.p, ph->s, w.n) == 0;
}

/* True when `w` is one of the phrases of `list`. */
static bool in_list(span_t w, const phrase_t *list)
{
    if (w.n == 0)
        return false;
    for (; list->s; list++)
        if (span_is_ph(w, list))
            return true;
    return false;
}

/* True when `s` starts with the whole words of `ph`; *rest is what follows, trimmed. */
static bool starts_with_phrase(span_t s, const phrase_t *ph, span_t *rest)
{
    size_t n = ph->n;
    if (s.n < n || s.p[0] != ph->s[0] || memcmp(s.p, ph->s, n) != 0 || (s.n > n && s.p[n] != ' '))
        return false;
    span_t r = {s.p + n, s.n - n};
    *rest = span_trim(r);
    return true;
}

/* starts_with_phrase() for a literal phrase. */
static bool starts_with_lit(span_t s, const char *lit, span_t *rest)
{
    phrase_t ph = {lit, strlen(lit)};
    return starts_with_phrase(s, &ph, rest);
}

/* True when `s` ends with the whole words of `ph`; *rest is what precedes, trimmed. */
static bool ends_with_phrase(span_t s, const phrase_t *ph, span_t *rest)
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
static span_t strip_leading(span_t s, const phrase_t *list)
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
static span_t strip_trailing(span_t s, const phrase_t *list)
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
static bool lengths_apart(size_t a, size_t b, unsigned budget)
{
    return (a > b ? a - b : b - a) > budget;
}

/* Typo distance between two folded keys, or more than the budget of `key` when beyond it. */
static unsigned typo_distance(span_t in, span_t key)
{
    unsigned budget = fb_text_typo_budget(key.n);
    if (lengths_apart(in.n, key.n, budget))
        return budget + 1;
    return fb_text_distance(in.p, in.n, key.p, key.n, budget);
}

static bool typo_ok(span_t in, span_t key, unsigned *d)
{
    *d = typo_distance(in, key);
    return *d <= fb_text_typo_budget(key.n);
}

/* A folded copy of an answer: in `small` when it fits, else on the heap (fold_done frees it). */
#define FOLD_SMALL 256

struct folded {
    char *p;
    size_t n;
    char small[FOLD_SMALL];
};

/* Folds `len` bytes of `text` (folding never lengthens UTF-8: at most `len` bytes result). */
static void fold_into(struct folded *f, const char *text, size_t len)
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

static void fold_done(struct folded *f)
{
    if (f->p != f->small)
        fb_free(f->p);
    f->p = NULL;
}

static span_t folded_span(const struct folded *f)
{
    span_t s = {f->p, f->n};
    return s;
}

/* The common first step of the choice parsers: rejects NULL, oversized, invalid UTF-8 and empty
 * answers (FB_ANSWER_INVALID), else returns FB_ANSWER_OK with *f the folded answer (fold_done it;
 * on error there is nothing to release). */
static fb_answer_status_t prepare_into(const char *text, struct folded *f /* OUT */)
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
static fb_answer_status_t prepare(const char *text, char **folded /* OUT */)
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

/* ---------------------------------------------------------------------------------------------
 * "je ne sais pas"
 * ------------------------------------------------------------------------------------------- */

/* Whole answers that mean "I don't know" (folded), compared after removing fillers, with typo
 * tolerance for the long ones. */
static const phrase_t unknown_phrases[] = {
    PH("je ne sais pas"),
    PH("je sais pas"),
    PH("j sais pas"),
    PH("jsais pas"),
    PH("sais pas"),
    PH("sait pas"),
    PH("ne sais pas"),
    PH("ne sait pas"),
    PH("on ne sait pas"),
    PH("on sait pas"),
    PH("nous ne savons pas"),
    PH("je ne sais plus"),
    PH("je sais plus"),
    PH("sais plus"),
    PH("ne sais plus"),
    PH("j en sais rien"),
    PH("je n en sais rien"),
    PH("n en sais rien"),
    PH("en sais rien"),
    PH("aucune idee"),
    PH("pas d idee"),
    PH("pas la moindre idee"),
    PH("je n ai aucune idee"),
    PH("j ai aucune idee"),
    PH("je n ai pas d idee"),
    PH("j ai pas d idee"),
    PH("jsp"),
    PH("nsp"),
    PH("chais pas"),
    PH("chai pas"),
    PH("chepa"),
    PH("chepas"),
    PH("inconnu"),
    PH("inconnue"),
    PH("inconnus"),
    PH("inconnues"),
    PH("je ne connais pas"),
    PH("je connais pas"),
    PH("on ne connait pas"),
    PH("non connu"),
    PH("non connue"),
    PH("pas connu"),
    PH("pas connue"),
    PH("je ne suis pas sur"),
    PH("je ne suis pas sure"),
    PH("je suis pas sur"),
    PH("je suis pas sure"),
    PH("pas sur"),
    PH("pas sure"),
    PH("j ignore"),
    PH("je l ignore"),
    PH("on l ignore"),
    PH("je ne me souviens pas"),
    PH("je ne m en souviens pas"),
    PH("je ne me souviens plus"),
    PH("je ne m en souviens plus"),
    PH("aucune information"),
    PH("aucune info"),
    PH("pas d information"),
    PH("pas d info"),
    PH("pas encore decide"),
    PH("pas encore decidee"),
    PH("pas encore defini"),
    PH("pas encore fixe"),
    PH("pas decide"),
    PH("pas defini"),
    PH("non defini"),
    PH("indetermine"),
    PH("non determine"),
    PH("a definir"),
    PH("a determiner"),
    PH("a voir"),
    PH("ne se prononce pas"),
    PH("sans avis"),
    PH("sans opinion"),
    PH("idk"),
    PH("dunno"),
    PH("i don t know"),
    PH("no idea"),
    PH_END,
};

/* Phrases whose presence anywhere in an otherwise not understood answer makes it UNKNOWN. */
static const phrase_t unknown_inside[] = {
    PH("je ne sais pas"),
    PH("je sais pas"),
    PH("j sais pas"),
    PH("sais pas"),
    PH("sait pas"),
    PH("sais plus"),
    PH("en sais rien"),
    PH("aucune idee"),
    PH("pas d idee"),
    PH("jsp"),
    PH("nsp"),
    PH("inconnu"),
    PH("inconnue"),
    PH("je ne suis pas sur"),
    PH("je ne suis pas sure"),
    PH("indetermine"),
    PH("non determine"),
    PH("ne se prononce pas"),
    PH_END,
};

static const phrase_t unknown_lead[] = {
    PH("euh"),
    PH("heu"),
    PH("hum"),
    PH("hmm"),
    PH("bah"),
    PH("ben"),
    PH("bof"),
    PH("alors"),
    PH("ah"),
    PH("oh"),
    PH("eh"),
    PH("bon"),
    PH("et bien"),
    PH("eh bien"),
    PH("ma foi"),
    PH("franchement"),
    PH("honnetement"),
    PH("sincerement"),
    PH("desole"),
    PH("desolee"),
    PH("malheureusement"),
    PH("helas"),
    PH("pour l instant"),
    PH("pour le moment"),
    PH("a vrai dire"),
    PH("a ce jour"),
    PH("en fait"),
    PH("en vrai"),
    PH("non"),
    PH_END,
};

static const phrase_t unknown_tail[] = {
    PH("du tout"),        PH("trop"),           PH("tres bien"),  PH("bien"),
    PH("vraiment"),       PH("encore"),         PH("exactement"), PH("precisement"),
    PH("pour l instant"), PH("pour le moment"), PH("a ce jour"),  PH("malheureusement"),
    PH("desole"),         PH("desolee"),        PH("helas"),      PH("a vrai dire"),
    PH("franchement"),    PH("en fait"),        PH("merci"),      PH_END};

/* Bytes of the longest entry of unknown_phrases: longer answers (beyond the typo budget of 2)
 * cannot be one. */
#define UNKNOWN_PHRASE_MAX 24

/* True when the whole folded answer means "je ne sais pas". */
static bool unknown_folded(span_t f)
{
    span_t s =
        strip_leading(strip_trailing(strip_leading(f, unknown_lead), unknown_tail), unknown_lead);
    if (s.n > UNKNOWN_PHRASE_MAX + 2)
        return false;
    for (const phrase_t *p = unknown_phrases; p->s; p++)
        if (span_is_ph(s, p))
            return true;
    for (const phrase_t *p = unknown_phrases; p->s; p++) {
        unsigned budget = fb_text_typo_budget(p->n);
        if (budget > 0 && !lengths_apart(s.n, p->n, budget) &&
            fb_text_distance(s.p, s.n, p->s, p->n, budget) <= budget)
            return true;
    }
    return false;
}

/* True when a "je ne sais pas" phrase occurs somewhere in the folded answer (tried at each word
 * start). */
static bool contains_unknown(span_t f)
{
    for (size_t i = 0; i < f.n; i++) {
        if (i > 0 && f.p[i - 1] != ' ')
            continue;
        span_t sub = {f.p + i, f.n - i}, rest;
        for (const phrase_t *p = unknown_inside; p->s; p++)
            if (starts_with_phrase(sub, p, &rest))
                return true;
    }
    return false;
}

bool fb_answer_is_unknown(const char *text)
{
    struct folded f;
    if (prepare_into(text, &f) != FB_ANSWER_OK)
        return false;
    bool r = unknown_folded(folded_span(&f));
    fold_done(&f);
    return r;
}

/* ---------------------------------------------------------------------------------------------
 * Yes / no
 * ------------------------------------------------------------------------------------------- */

struct yn_entry {
    phrase_t phrase; /* folded */
    bool yes;
    bool prefix; /* also decides when followed by more words ("oui, il y a eu une usine") */
};

static const struct yn_entry yn_table[] = {
    {PH("oui"), true, true},
    {PH("ouais"), true, true},
    {PH("ouai"), true, true},
    {PH("ouaip"), true, true},
    {PH("ouep"), true, true},
    {PH("ouip"), true, true},
    {PH("wi"), true, false},
    {PH("o"), true, false},
    {PH("y"), true, false},
    {PH("yes"), true, true},
    {PH("yep"), true, true},
    {PH("yeah"), true, true},
    {PH("ok"), true, true},
    {PH("okay"), true, true},
    {PH("oki"), true, false},
    {PH("d accord"), true, true},
    {PH("dac"), true, false},
    {PH("bien sur"), true, true},
    {PH("bien entendu"), true, true},
    {PH("tout a fait"), true, true},
    {PH("exact"), true, true},
    {PH("exactement"), true, true},
    {PH("c est exact"), true, true},
    {PH("c est ca"), true, true},
    {PH("c est bien ca"), true, true},
    {PH("c est juste"), true, true},
    {PH("c est vrai"), true, true},
    {PH("absolument"), true, true},
    {PH("affirmatif"), true, true},
    {PH("certainement"), true, true},
    {PH("evidemment"), true, true},
    {PH("effectivement"), true, true},
    {PH("assurement"), true, true},
    {PH("carrement"), true, true},
    {PH("en effet"), true, true},
    {PH("tres bien"), true, false},
    {PH("parfait"), true, false},
    {PH("vrai"), true, false},
    {PH("correct"), true, false},
    {PH("juste"), true, false},
    {PH("oui oui"), true, true},
    {PH("je pense que oui"), true, true},
    {PH("je crois que oui"), true, true},
    {PH("il me semble que oui"), true, true},
    {PH("il me semble"), true, false},
    {PH("il semblerait"), true, false},
    {PH("je pense"), true, false},
    {PH("je crois"), true, false},
    {PH("plutot oui"), true, true},
    {PH("probablement"), true, false},
    {PH("surement"), true, false},
    {PH("sans doute"), true, false},
    {PH("si"), true, false},
    {PH("1"), true, false},
    {PH("volontiers"), true, false},
    {PH("avec plaisir"), true, false},
    {PH("pourquoi pas"), true, false},
    {PH("ca marche"), true, false},
    {PH("je crois bien"), true, false},
    {PH("je pense bien"), true, false},
    {PH("bien sur que oui"), true, true},
    {PH("non"), false, true},
    {PH("nan"), false, true},
    {PH("no"), false, true},
    {PH("nope"), false, true},
    {PH("nah"), false, false},
    {PH("n"), false, false},
    {PH("nn"), false, false},
    {PH("evidemment pas"), false, true},
    {PH("vraiment pas"), false, true},
    {PH("toujours pas"), false, true},
    {PH("carrement pas"), false, true},
    {PH("non merci"), false, true},
    {PH("pas du tout"), false, true},
    {PH("absolument pas"), false, true},
    {PH("certainement pas"), false, true},
    {PH("surement pas"), false, true},
    {PH("pas vraiment"), false, true},
    {PH("pas encore"), false, true},
    {PH("pas forcement"), false, true},
    {PH("pas necessairement"), false, true},
    {PH("pas specialement"), false, true},
    {PH("pas particulierement"), false, true},
    {PH("pas tout a fait"), false, true},
    {PH("pas a ma connaissance"), false, true},
    {PH("pas que je sache"), false, true},
    {PH("jamais"), false, true},
    {PH("aucun"), false, false},
    {PH("aucune"), false, false},
    {PH("rien"), false, false},
    {PH("negatif"), false, true},
    {PH("faux"), false, false},
    {PH("c est faux"), false, true},
    {PH("0"), false, false},
    {PH("je ne pense pas"), false, true},
    {PH("je pense pas"), false, true},
    {PH("je ne crois pas"), false, true},
    {PH("je crois pas"), false, true},
    {PH("je pense que non"), false, true},
    {PH("je crois que non"), false, true},
    {PH("il me semble que non"), false, true},
    {PH("plutot non"), false, true},
    {PH("plutot pas"), false, true},
    {PH("probablement pas"), false, true},
    {PH("sans doute pas"), false, true},
    {PH("pas question"), false, true},
    {PH("hors de question"), false, true},
    {PH("du tout"), false, false},
    {PH("nullement"), false, true},
    {PH("aucunement"), false, true},
    {PH("bien sur que non"), false, true},
    {PH("pas le moins du monde"), false, true},
};

static const phrase_t yn_lead[] = {PH("euh"),         PH("heu"),
                                   PH("hum"),         PH("hmm"),
                                   PH("mmh"),         PH("bah"),
                                   PH("ben"),         PH("bon"),
                                   PH("alors"),       PH("ah"),
                                   PH("oh"),          PH("eh"),
                                   PH("et bien"),     PH("eh bien"),
                                   PH("ma foi"),      PH("franchement"),
                                   PH("honnetement"), PH("sincerement"),
                                   PH("je dirais"),   PH("je reponds"),
                                   PH("reponse"),     PH_END};

static const phrase_t yn_tail[] = {PH("merci"), PH("merci beaucoup"),  PH("svp"),
                                   PH("stp"),   PH("s il vous plait"), PH_END};

static const phrase_t yn_joiners[] = {PH("et"),    PH("ou"),   PH("mais"),
                                      PH("enfin"), PH("puis"), PH_END};

/* Copies the letters of one word into `out` with runs of a repeated letter collapsed
 * ("ouiiii" -> "oui", "nonnn" -> "non"); false when `s` is not one short word. */
static bool squeeze(span_t s, char out[32])
{
    size_t o = 0;
    if (s.n == 0 || s.n >= 32 || memchr(s.p, ' ', s.n))
        return false;
    for (size_t i = 0; i < s.n; i++)
        if (o == 0 || out[o - 1] != s.p[i])
            out[o++] = s.p[i];
    out[o] = '\0';
    return true;
}

/* True when `ph` is one short word (as squeeze() requires) whose squeezed form is a[0..alen);
 * compares while squeezing, so most entries stop at the first byte. */
static bool squeezed_is(const phrase_t *ph, const char *a, size_t alen)
{
    if (ph->n == 0 || ph->n >= 32 || memchr(ph->s, ' ', ph->n))
        return false;
    size_t o = 0;
    for (size_t i = 0; i < ph->n; i++) {
        if (i > 0 && ph->s[i - 1] == ph->s[i])
            continue;
        if (o >= alen || a[o] != ph->s[i])
            return false;
        o++;
    }
    return o == alen;
}

/* The one-word entry equal to `s` once repeated letters are collapsed on both sides. */
static const struct yn_entry *yn_squeezed(span_t s)
{
    char a[32] = {0};
    if (!squeeze(s, a))
        return NULL;
    size_t alen = strlen(a);
    for (size_t i = 0; i < FB_ARRAY_SIZE(yn_table); i++)
        if (squeezed_is(&yn_table[i].phrase, a, alen))
            return &yn_table[i];
    return NULL;
}

/* The entry equal to `s`, or NULL. */
static const struct yn_entry *yn_exact(span_t s)
{
    for (size_t i = 0; i < FB_ARRAY_SIZE(yn_table); i++)
        if (span_is_ph(s, &yn_table[i].phrase))
            return &yn_table[i];
    return NULL;
}

/* The longest prefix-capable entry that `s` starts with (followed by more words), or NULL;
 * *rest is what follows it. */
static const struct yn_entry *yn_prefix(span_t s, span_t *rest)
{
    const struct yn_entry *best = NULL;
    for (size_t i = 0; i < FB_ARRAY_SIZE(yn_table); i++) {
        span_t r;
        if (!yn_table[i].prefix || !starts_with_phrase(s, &yn_table[i].phrase, &r) || r.n == 0)
            continue;
        if (!best || yn_table[i].phrase.n > best->phrase.n) {
            best = &yn_table[i];
            *rest = r;
        }
    }
    return best;
}

/*
 * Yes/no. Order: whole "je ne sais pas" (UNKNOWN); the whole answer is a yes or no phrase (also
 * with repeated letters collapsed: "ouiiii", "nn"); the
 * answer starts with one ("non, jamais de la vie"), unless what follows starts with the opposite
 * ("oui et non": AMBIGUOUS); a phrase of 4+ letters within its typo budget, unique polarity (a tie
 * between a yes and a no phrase is AMBIGUOUS); then a "je ne sais pas" inside; else INVALID.
 */
fb_answer_status_t fb_answer_yesno(const char *text, bool *out)
{
    struct folded f;
    fb_answer_status_t st = prepare_into(text, &f);
    if (st != FB_ANSWER_OK)
        return st;
    span_t all = folded_span(&f);
    span_t s = strip_trailing(strip_leading(all, yn_lead), yn_tail);
    const struct yn_entry *e;
    span_t rest;
    if (unknown_folded(all)) {
        st = FB_ANSWER_UNKNOWN;
    } else if ((e = yn_exact(s)) != NULL || (e = yn_squeezed(s)) != NULL) {
        *out = e->yes;
    } else if ((e = yn_prefix(s, &rest)) != NULL) {
        rest = strip_leading(rest, yn_joiners);
        const struct yn_entry *o = yn_exact(rest);
        span_t r2;
        if (!o)
            o = yn_prefix(rest, &r2);
        if (o && o->yes != e->yes)
            st = FB_ANSWER_AMBIGUOUS;
        else
            *out = e->yes;
    } else {
        unsigned best = UINT32_MAX;
        int yes = 0, no = 0;
        for (size_t i = 0; i < FB_ARRAY_SIZE(yn_table); i++) {
            const phrase_t *ph = &yn_table[i].phrase;
            unsigned budget = fb_text_typo_budget(ph->n), d;
            if (lengths_apart(s.n, ph->n, budget))
                continue; /* beyond the budget */
            d = fb_text_distance(s.p, s.n, ph->s, ph->n, budget);
            if (d > budget || d > best)
                continue;
            if (d < best) {
                best = d;
                yes = no = 0;
            }
            if (yn_table[i].yes)
                yes = 1;
            else
                no = 1;
        }
        if (yes && no)
            st = FB_ANSWER_AMBIGUOUS;
        else if (yes || no)
            *out = yes != 0;
        else
            st = contains_unknown(all) ? FB_ANSWER_UNKNOWN : FB_ANSWER_INVALID;
    }
    fold_done(&f);
    return st;
}

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
static int64_t numeral_word(span_t w)
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
static size_t numeral_parse(const span_t *words, size_t n, uint64_t *value)
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
        int64_t v = numeral_word(w);
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

enum tok_kind { TK_NUM, TK_WORD, TK_SEP };

#define TOK_WORD_MAX 24
#define MAX_TOKS     64
#define DEC_MAX      1000000000000000000ull /* 10^18: mantissas stay below it */

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

/* The word of a token; too long words (and non-words) are "\x01", which equals no folded word. */
static span_t tok_span(const struct tok *t)
{
    span_t s = {"\x01", 1};
    if (t->kind == TK_WORD && t->wlen < TOK_WORD_MAX) {
        s.p = t->w;
        s.n = t->wlen;
    }
    return s;
}

static bool tok_is(const struct toks *tk, size_t i, const char *w)
{
    return i < tk->n && tk->t[i].kind == TK_WORD && span_is(tok_span(&tk->t[i]), w);
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

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
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
static void lex(const char *s, size_t len, bool dates, struct toks *tk)
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

/* An exact decimal m * 10^e (so that "2,5 ha" is exactly 25000 m²). */
struct dec {
    uint64_t m;
    int e;
    bool bad; /* overflowed */
};

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

enum ukind { U_NONE, U_M2, U_HA, U_KM2, U_EUR, U_YEAR, U_MONTH, U_WEEK, U_DAY, U_OTHER };

enum family { F_NONE, F_SURFACE, F_MONEY, F_TIME, F_OTHER };

static enum family unit_family(enum ukind u)
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
    int exp; /* the word also multiplies by 10^exp ("k€", "ares") */
};

/* Two-word units first: the longest match wins. Units of no supported family (lengths, weights,
 * percentages, other currencies) are listed so that "3000 m" is refused instead of ignored. */
static const struct unit_word unit_words[] = {
    {"metre", "carre", U_M2, 0},
    {"metres", "carres", U_M2, 0},
    {"metre", "carres", U_M2, 0},
    {"metres", "carre", U_M2, 0},
    {"kilometre", "carre", U_KM2, 0},
    {"kilometres", "carres", U_KM2, 0},
    {"kilometre", "carres", U_KM2, 0},
    {"kilometres", "carre", U_KM2, 0},
    {"pour", "cent", U_OTHER, 0},
    {"m2", NULL, U_M2, 0},
    {"metre2", NULL, U_M2, 0},
    {"metres2", NULL, U_M2, 0},
    {"are", NULL, U_M2, 2},
    {"ares", NULL, U_M2, 2},
    {"ha", NULL, U_HA, 0},
    {"hectare", NULL, U_HA, 0},
    {"hectares", NULL, U_HA, 0},
    {"km2", NULL, U_KM2, 0},
    {"eur", NULL, U_EUR, 0},
    {"euro", NULL, U_EUR, 0},
    {"euros", NULL, U_EUR, 0},
    {"keur", NULL, U_EUR, 3},
    {"meur", NULL, U_EUR, 6},
    {"an", NULL, U_YEAR, 0},
    {"ans", NULL, U_YEAR, 0},
    {"annee", NULL, U_YEAR, 0},
    {"annees", NULL, U_YEAR, 0},
    {"mois", NULL, U_MONTH, 0},
    {"semaine", NULL, U_WEEK, 0},
    {"semaines", NULL, U_WEEK, 0},
    {"jour", NULL, U_DAY, 0},
    {"jours", NULL, U_DAY, 0},
    {"m", NULL, U_OTHER, 0},
    {"metre", NULL, U_OTHER, 0},
    {"metres", NULL, U_OTHER, 0},
    {"km", NULL, U_OTHER, 0},
    {"kilometre", NULL, U_OTHER, 0},
    {"kilometres", NULL, U_OTHER, 0},
    {"cm", NULL, U_OTHER, 0},
    {"m3", NULL, U_OTHER, 0},
    {"kg", NULL, U_OTHER, 0},
    {"tonne", NULL, U_OTHER, 0},
    {"tonnes", NULL, U_OTHER, 0},
    {"litre", NULL, U_OTHER, 0},
    {"litres", NULL, U_OTHER, 0},
    {"heure", NULL, U_OTHER, 0},
    {"heures", NULL, U_OTHER, 0},
    {"minute", NULL, U_OTHER, 0},
    {"minutes", NULL, U_OTHER, 0},
    {"dollar", NULL, U_OTHER, 0},
    {"dollars", NULL, U_OTHER, 0},
    {"%", NULL, U_OTHER, 0},
    {"pourcent", NULL, U_OTHER, 0},
    {"pourcents", NULL, U_OTHER, 0},
};

/* The unit written at token i ("ha", "mètres carrés", "prochains mois"): returns how many tokens
 * it takes (0: none) and sets *kind and *exp. */
static size_t unit_at(const struct toks *tk, size_t i, enum ukind *kind, int *exp)
{
    size_t skip = 0;
    if (tok_is(tk, i, "prochains") || tok_is(tk, i, "prochaines") || tok_is(tk, i, "derniers") ||
        tok_is(tk, i, "dernieres"))
        skip = 1;
    for (size_t u = 0; u < FB_ARRAY_SIZE(unit_words); u++) {
        const struct unit_word *uw = &unit_words[u];
        if (!tok_is(tk, i + skip, uw->w1) || (uw->w2 && !tok_is(tk, i + skip + 1, uw->w2)))
            continue;
        if (skip && unit_family(uw->kind) != F_TIME)
            continue;
        *kind = uw->kind;
        *exp = uw->exp;
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
    bool money = unit_at(tk, i + 1, &u, &e) && u == U_EUR;
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
            size_t used = numeral_parse(words, m, &val);
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
    if ((tok_is(tk, ju, "de") || tok_is(tk, ju, "d")) && unit_at(tk, ju + 1, &unit, &uexp))
        ju++;
    size_t ul = unit_at(tk, ju, &unit, &uexp);
    if (ul) {
        j = ju + ul;
        it->v.e += uexp;
        it->unit = unit;
        if (!half && et_demi_at(tk, j)) {
            dec_add(&it->v, dec_make(5, uexp - 1));
            j += 2;
        }
    }
    /* A word glued to the digits that holds digits itself ("1e6", "3x4") is not understood. */
    if (digits && j == i + 1 && j < tk->n && tk->t[j].kind == TK_WORD && !tk->t[j].space_before &&
        strpbrk(tk->t[j].w, "0123456789"))
        it->bad = true;
    it->strong = (digits || ul) && !(is_un && !ul);
    it->end = j;
    return true;
}

/* What an answer to a number question says: one quantity, a range ("2 à 3 ha": the mean) or a
 * compound duration ("1 an et 6 mois"). */
struct quantity {
    struct item a, b;
    int kind; /* 1 single, 2 range, 3 years + months */
};

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
static fb_answer_status_t quantity_parse(const struct toks *tk, size_t from, struct quantity *q)
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
    } else if (unit_family(it->unit) != unit_family(target) || unit_family(target) == F_NONE ||
               unit_family(target) == F_OTHER) {
        return false;
    } else if (unit_family(target) == F_SURFACE) {
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
static bool quantity_to(const struct quantity *q, enum ukind target, double *out)
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
    if (unknown_folded(all)) {
        fb_free(f);
        return FB_ANSWER_UNKNOWN;
    }
    struct toks tk;
    lex(text, strlen(text), false, &tk);
    struct quantity q;
    double v = 0;
    enum ukind target = unit_kind(unit);
    st = quantity_parse(&tk, 0, &q);
    if (st == FB_ANSWER_OK && (target == U_OTHER || !quantity_to(&q, target, &v)))
        st = FB_ANSWER_INVALID;
    /* Only bare number words ("aucune" in "aucune idée, demandez au maire"): a hedge wins. */
    if (st == FB_ANSWER_OK && !q.a.strong && !(q.kind != 1 && q.b.strong) && contains_unknown(all))
        st = FB_ANSWER_UNKNOWN;
    if (st == FB_ANSWER_OK && !(v >= min && v <= max))
        st = FB_ANSWER_OUT_OF_RANGE;
    if (st == FB_ANSWER_OK)
        *out = v;
    if (st == FB_ANSWER_INVALID && contains_unknown(all))
        st = FB_ANSWER_UNKNOWN;
    fb_free(f);
    return st;
}

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
    size_t w0, nw; /* its words: set->kw[w0 .. w0 + nw) */
    bool all_stop; /* every word is a stop word */
};

struct fb_choice_set_s {
    size_t nopt, nk;
    struct key *k;     /* keys in option order */
    size_t *opt_k0;    /* option o's keys: k[opt_k0[o] .. opt_k0[o + 1]) */
    span_t *kw;        /* the words of every key */
    unsigned char *kf; /* W_STOP / W_NEG of each key word */
    unsigned char *kb; /* fb_text_typo_budget() of each key word */
    char *text;        /* the folded keys, NUL-terminated */
};

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
    for (const phrase_t *p = unknown_phrases; p->s; p++)
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

static const phrase_t ordinal_suffixes[] = {PH("e"),  PH("er"),   PH("ere"), PH("re"),  PH("eme"),
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
    return d > 0 && in_list(suf, ordinal_suffixes) && all_digits(num, k);
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
        if (in_list(w2, ordinal_suffixes) && all_digits(w1, k))
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
    if (m == nw && m > 0 && numeral_parse(words, m, &v) == m) {
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
};

static void pick_init(struct pick *p)
{
    p->best = -1;
    p->opt = SIZE_MAX;
    p->several = false;
}

static void pick_offer(struct pick *p, size_t opt, long score)
{
    if (score < 0 || score < p->best)
        return;
    if (score > p->best) {
        p->best = score;
        p->opt = opt;
        p->several = false;
    } else if (opt != p->opt) {
        p->several = true;
    }
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
    bool all_stop; /* every word is a stop word (true for no words) */
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
    while (i < n && word_next(s, &pos, &ws->w[i])) {
        span_t w = ws->w[i];
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
static fb_answer_status_t match_exact(const fb_choice_set_t *set, span_t s, size_t *index)
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
    return pick_result(&p, index);
}

/* True when `w` is one of the words of key `k`. */
static bool key_has_word(const fb_choice_set_t *set, const struct key *k, span_t w)
{
    for (size_t j = k->w0; j < k->w0 + k->nw; j++)
        if (span_eq(w, set->kw[j]))
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
        for (size_t j = 0; j < k->nw && bd > 0; j++) {
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
        for (size_t i = 0; i < in->n && bd > 0; i++) {
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
static fb_answer_status_t match_strict(const fb_choice_set_t *set, span_t s, size_t *index)
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
    fb_answer_status_t st = match_exact(set, s, index);
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

/* True when `w` is a word of one of the keys of option `opt`. */
static bool option_has_word(const fb_choice_set_t *set, size_t opt, span_t w)
{
    for (size_t i = set->opt_k0[opt]; i < set->opt_k0[opt + 1]; i++)
        if (key_has_word(set, &set->k[i], w))
            return true;
    return false;
}

/*
 * Counts the significant words (3+ letters) of the answer found in a key of option `opt` (each
 * once), skipping those also found in option `except` (SIZE_MAX: none). An answer negating a
 * word absent from the key ("pas la commune") shares nothing.
 */
static size_t shared_words(const fb_choice_set_t *set, size_t opt, const struct words *in,
                           size_t except)
{
    size_t n = 0;
    for (size_t i = 0; i < in->n; i++) {
        span_t w = in->w[i];
        if ((in->f[i] & W_NEG) && !option_has_word(set, opt, w))
            return 0;
        if (w.n < 3 || (in->f[i] & W_STOP) || !option_has_word(set, opt, w))
            continue;
        if (except != SIZE_MAX && option_has_word(set, except, w))
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
                                      size_t *index)
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
            pick_offer(&p, set->k[i].opt, (long)words);
    }
    if (p.best >= 0) {
        /* The most words wins only over names nested in the winner's ("habitat" within
         * "habitat collectif"): an answer also naming words of another option is ambiguous
         * ("habitat et commerce de gros", "un industriel privé"). */
        for (size_t o = 0; o < set->nopt && !p.several; o++)
            if (o != p.opt && shared_words(set, o, in, p.opt) > 0)
                p.several = true;
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
        for (size_t o = 0; o < set->nopt && !p.several; o++)
            if (o != p.opt && shared_words(set, o, in, p.opt) > 0)
                p.several = true;
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
    return pick_result(&p, index);
}

/* match_loose() on a span (its words found here). */
static fb_answer_status_t match_loose_span(const fb_choice_set_t *set, span_t s, size_t *index)
{
    struct words ws;
    words_init(&ws, s);
    fb_answer_status_t st = match_loose(set, &ws, index);
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
            st = match_strict(set, seg, &idx);
            if (st == FB_ANSWER_INVALID)
                st = match_loose(set, &ws, &idx);
        }
        if (st == FB_ANSWER_OK) {
            *mask |= 1ull << idx;
        } else if (st == FB_ANSWER_AMBIGUOUS) {
            uint64_t m = 0;
            for (size_t i = 0; i < ws.n && st == FB_ANSWER_AMBIGUOUS; i++) {
                if (ws.f[i] & W_STOP)
                    continue;
                fb_answer_status_t wst = match_strict(set, ws.w[i], &idx);
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
           o_kf = block_size(nw, 1), o_kb = block_size(nw, 1);
    char *mem = fb_malloc(o_set + o_k + o_k0 + o_kw + o_kf + o_kb + bytes + 1);
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
    set->text = mem;
    set->nopt = n;
    set->nk = 0;
    size_t used = 0, wused = 0;
    for (size_t i = 0; i < n; i++) {
        set->opt_k0[i] = set->nk;
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
            k->all_stop = true;
            size_t pos = 0;
            span_t w;
            while (word_next(k->s, &pos, &w)) {
                set->kw[wused] = w;
                set->kf[wused] = (unsigned char)((is_stop(w) ? W_STOP : 0) |
                                                 (in_list(w, negation_words) ? W_NEG : 0));
                set->kb[wused] = (unsigned char)fb_text_typo_budget(w.n);
                k->all_stop = k->all_stop && (set->kf[wused] & W_STOP);
                wused++;
            }
            k->nw = wused - k->w0;
        }
    }
    set->opt_k0[n] = set->nk;
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
    st = match_strict(set, s, &idx);
    if (st == FB_ANSWER_INVALID && unknown_folded(s))
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
    if (st == FB_ANSWER_INVALID && contains_unknown(s))
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
        if (!in_list(w, none_fill) && !all_digits(w, &k) && numeral_word(w) < 0)
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
    return numeral_parse(words, m, count) == m;
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
    st = match_exact(set, s, &idx);
    if (st == FB_ANSWER_OK) {
        m = 1ull << idx;
    } else if (st == FB_ANSWER_AMBIGUOUS) {
        /* two options share this exact name */
    } else if (unknown_folded(s)) {
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
    if (st == FB_ANSWER_INVALID && contains_unknown(s))
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
    lex(text, strlen(text), false, &tk);
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
    if (quantity_parse(&tk, i, &q) != FB_ANSWER_OK || unit_family(q.a.unit) != F_TIME || q.a.neg ||
        (q.kind != 1 && q.b.neg))
        return FB_ANSWER_INVALID;
    bool in_days = q.a.unit == U_WEEK || q.a.unit == U_DAY ||
                   (q.kind != 1 && (q.b.unit == U_WEEK || q.b.unit == U_DAY));
    double v;
    if (!quantity_to(&q, in_days ? U_DAY : U_MONTH, &v) || v > 1e7)
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
            in_list(tok_span(&t[j]), ordinal_suffixes))
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
    if (unknown_folded(all)) {
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
        lex(text, strlen(text), true, &tk);
        struct dparts dp;
        date_parts(&tk, &dp);
        st = tk.overflow ? FB_ANSWER_INVALID : date_combine(&dp, &t, &r);
    }
    if (st == FB_ANSWER_OK && future_only &&
        (r.year < t.y || (r.year == t.y && r.month != 0 && r.month < t.m)))
        st = FB_ANSWER_OUT_OF_RANGE;
    if (st == FB_ANSWER_OK)
        *out = r;
    if (st == FB_ANSWER_INVALID && contains_unknown(all))
        st = FB_ANSWER_UNKNOWN;
    fb_free(f);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Free text
 * ------------------------------------------------------------------------------------------- */

/* Characters removed from free text: C0 controls but tab and newline, DEL, C1 controls, the
 * bidirectional overrides, embeddings, isolates and marks (they can disguise text shown to an
 * advisor), and the byte order mark. */
static bool removed_cp(uint32_t cp)
{
    return (cp < 0x20 && cp != '\t' && cp != '\n') || (cp >= 0x7F && cp <= 0x9F) || cp == 0x200E ||
           cp == 0x200F || (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069) ||
           cp == 0xFEFF;
}

static bool space_cp(uint32_t cp)
{
    return cp == ' ' || cp == '\t' || cp == '\n' || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

/*
 * Free text (see answers.h). Carriage returns become newlines ("\r\n" one newline), tabs become
 * spaces, other controls are removed, then leading and trailing white space (Unicode spaces
 * included) is trimmed. Nothing left is INVALID; the length is counted in code points.
 */
fb_answer_status_t fb_answer_text(const char *text, size_t min_chars, size_t max_chars, char **out)
{
    if (!text)
        return FB_ANSWER_INVALID;
    size_t len = strlen(text);
    if (!fb_utf8_valid(text, len))
        return FB_ANSWER_INVALID;
    if (len <= FB_ANSWER_MAX_BYTES && fb_answer_is_unknown(text))
        return FB_ANSWER_UNKNOWN;
    const unsigned char *p = (const unsigned char *)text;
    char *buf = fb_malloc(len + 1);
    size_t o = 0, first = SIZE_MAX, last_end = 0, chars = 0, chars_at_last = 0, chars_first = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t k = fb_utf8_decode(p + i, len - i, &cp);
        const char *src = text + i;
        char one;
        i += k;
        if (cp == '\r') {
            if (i < len && p[i] == '\n')
                continue;
            cp = '\n';
        }
        if (cp == '\t')
            cp = ' ';
        if (cp == '\n' || cp == ' ') {
            one = (char)cp;
            src = &one;
            k = 1;
        } else if (removed_cp(cp)) {
            continue;
        }
        if (!space_cp(cp)) {
            if (first == SIZE_MAX) {
                first = o;
                chars_first = chars;
            }
            last_end = o + k;
            chars_at_last = chars + 1;
        }
        memcpy(buf + o, src, k);
        o += k;
        chars++;
    }
    fb_answer_status_t st = FB_ANSWER_OK;
    size_t count = first == SIZE_MAX ? 0 : chars_at_last - chars_first;
    if (first == SIZE_MAX)
        st = FB_ANSWER_INVALID;
    else if (count < min_chars || count > max_chars)
        st = FB_ANSWER_OUT_OF_RANGE;
    if (st == FB_ANSWER_OK)
        *out = fb_strndup(buf + first, last_end - first);
    fb_free(buf);
    return st;
}
