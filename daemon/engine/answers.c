/* SPDX-License-Identifier: MIT */
/*
 * answers.c - the answer parsers' shared parts and the simplest parsers (see answers_int.h):
 * "je ne sais pas", yes / no, and free text.
 */
#include "engine/answers.h"

#include <math.h>
#include <string.h>

#include "common/utf8.h"
#include "engine/answers_int.h"
#include "engine/text.h"
#include "frichebot/alloc.h"

/* ---------------------------------------------------------------------------------------------
 * UTF-8 and folded-word helpers
 * ------------------------------------------------------------------------------------------- */

/* ---------------------------------------------------------------------------------------------
 * "je ne sais pas"
 * ------------------------------------------------------------------------------------------- */

/* Whole answers that mean "I don't know" (folded), compared after removing fillers, with typo
 * tolerance for the long ones. */
const phrase_t fb__ans_unknown_phrases[] = {
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

/* True when the whole folded answer means "je ne sais pas". */
bool fb__ans_unknown_folded(span_t f)
{
    span_t s =
        strip_leading(strip_trailing(strip_leading(f, unknown_lead), unknown_tail), unknown_lead);
    if (s.n > UNKNOWN_PHRASE_MAX + 2)
        return false;
    for (const phrase_t *p = fb__ans_unknown_phrases; p->s; p++)
        if (span_is_ph(s, p))
            return true;
    for (const phrase_t *p = fb__ans_unknown_phrases; p->s; p++) {
        unsigned budget = fb_text_typo_budget(p->n);
        if (budget > 0 && !lengths_apart(s.n, p->n, budget) &&
            fb_text_distance(s.p, s.n, p->s, p->n, budget) <= budget)
            return true;
    }
    return false;
}

/* True when a "je ne sais pas" phrase occurs somewhere in the folded answer (tried at each word
 * start). */
bool fb__ans_contains_unknown(span_t f)
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
    bool r = fb__ans_unknown_folded(folded_span(&f));
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
    if (fb__ans_unknown_folded(all)) {
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
            st = fb__ans_contains_unknown(all) ? FB_ANSWER_UNKNOWN : FB_ANSWER_INVALID;
    }
    fold_done(&f);
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
