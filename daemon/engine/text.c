/* SPDX-License-Identifier: MIT */
/*
 * text.c - folding of French text to comparison keys and bounded edit distances (see text.h).
 */
#include "engine/text.h"

#include <stdio.h>
#include <string.h>

#include "common/utf8.h"
#include "frichebot/alloc.h"
#include "frichebot/err.h"

/* The folded ASCII form of a code point: a string of 0-2 letters, " " for a separator, or NULL for
 * "drop it". */
static const char *fold_cp(unsigned cp, char buf[2])
{
    /* U+00C0..U+00FF: Latin-1 supplement letters. */
    static const char *const latin1[64] = {
        "a", "a", "a", "a", "a", "a", "ae", "c",  "e", "e", "e", "e", "i", "i", "i",  "i",
        "d", "n", "o", "o", "o", "o", "o",  NULL, "o", "u", "u", "u", "u", "y", "th", "ss",
        "a", "a", "a", "a", "a", "a", "ae", "c",  "e", "e", "e", "e", "i", "i", "i",  "i",
        "d", "n", "o", "o", "o", "o", "o",  NULL, "o", "u", "u", "u", "u", "y", "th", "y"};
    if (cp < 0x80) {
        if ((cp >= 'a' && cp <= 'z') || (cp >= '0' && cp <= '9')) {
            buf[0] = (char)cp;
            buf[1] = '\0';
            return buf;
        }
        if (cp >= 'A' && cp <= 'Z') {
            buf[0] = (char)(cp - 'A' + 'a');
            buf[1] = '\0';
            return buf;
        }
        if (cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' || cp == '-' || cp == '\'' ||
            cp == '_' || cp == '.' || cp == '/' || cp == ',')
            return " ";
        return NULL;
    }
    if (cp >= 0xC0 && cp <= 0xFF)
        return latin1[cp - 0xC0];
    switch (cp) {
    case 0x152: /* Œ */
    case 0x153:
        return "oe";
    case 0x178: /* Ÿ */
        return "y";
    case 0xA0:   /* no-break space */
    case 0x2019: /* ’ */
    case 0x2018:
    case 0x2010: /* hyphens and dashes */
    case 0x2011:
    case 0x2013:
    case 0x2014:
    case 0x202F: /* narrow no-break space (French thousands separator) */
        return " ";
    case 0xB2: /* ² as in m² */
        return "2";
    default:
        break;
    }
    /* Latin Extended-A (U+0100..U+017F): pairs of upper/lower case of a base letter. */
    if (cp >= 0x100 && cp <= 0x17F) {
        static const char base[] =
            "aaaaaaccccccccddddeeeeeeeeeegggggggghhhhiiiiiiiiiiiijjkkklllllllll"
            "lnnnnnnnnnooooooccrrrrrrssssssssttttttuuuuuuuuuuuuwwyyyzzzzzzs";
        size_t i = cp - 0x100;
        if (i < sizeof(base) - 1) {
            buf[0] = base[i];
            buf[1] = '\0';
            return buf;
        }
    }
    return NULL;
}

size_t fb_text_fold(const char *in, size_t len, char *out, size_t cap)
{
    const unsigned char *p = (const unsigned char *)in;
    size_t o = 0, i = 0;
    bool pending_space = false;
    char buf[2];
    while (i < len) {
        uint32_t cp;
        size_t n = fb_utf8_decode(p + i, len - i, &cp);
        i += n;
        if (cp == FB_UTF8_BAD)
            continue;
        const char *f = fold_cp(cp, buf);
        if (!f)
            continue;
        if (f[0] == ' ') {
            pending_space = o > 0;
            continue;
        }
        if (pending_space) {
            if (o + 1 < cap)
                out[o] = ' ';
            o++;
            pending_space = false;
        }
        for (; *f; f++) {
            if (o + 1 < cap)
                out[o] = *f;
            o++;
        }
    }
    if (cap)
        out[o < cap ? o : cap - 1] = '\0';
    return o;
}

char *fb_text_fold_dup(const char *s)
{
    size_t len = strlen(s);
    size_t need = fb_text_fold(s, len, NULL, 0);
    char *out = fb_malloc(need + 1);
    fb_text_fold(s, len, out, need + 1);
    return out;
}

unsigned fb_text_typo_budget(size_t len)
{
    if (len < 4)
        return 0;
    if (len < 8)
        return 1;
    return 2;
}

/* True when `x` has more than `max` bits set: `max` lowest bits cleared at most, no popcount
 * (without -mpopcnt, __builtin_popcountll() is a call into libgcc). */
static bool more_bits_than(uint64_t x, unsigned max)
{
    for (unsigned i = 0; i < max && x; i++)
        x &= x - 1;
    return x != 0;
}

unsigned fb_text_distance(const char *a, size_t alen, const char *b, size_t blen, unsigned max)
{
    if (alen > blen ? alen - blen > max : blen - alen > max)
        return max + 1;
    if (alen > 255 || blen > 255)
        return (alen == blen && memcmp(a, b, alen) == 0) ? 0 : max + 1;
    /* Cheap lower bounds first. Each class of bytes (the low 6 bits) that one string has and
     * the other lacks needs an edit of its own: a substitution or a deletion of one of its bytes
     * (an edit changes one byte of each string at most; a transposition keeps the classes), so
     * the distance is at least the number of such classes, on either side. Computed in
     * registers, it turns away most candidates that share little. */
    {
        uint64_t ma = 0, mb = 0;
        for (size_t i = 0; i < alen; i++)
            ma |= (uint64_t)1 << ((unsigned char)a[i] & 63);
        for (size_t j = 0; j < blen; j++)
            mb |= (uint64_t)1 << ((unsigned char)b[j] & 63);
        if (more_bits_than(ma & ~mb, max) || more_bits_than(mb & ~ma, max))
            return max + 1;
    }
    /* Then count the bytes of each string in 32 buckets. A substitution changes the summed
     * bucket difference by at most 2, an insertion or a deletion by 1, a transposition by 0, so
     * distance >= ceil(sum / 2). Most candidates stop here. The counts fit a byte (strings of at
     * most 255 bytes), and each string has its own table: no read-modify-write of the other's
     * counts, and 64 bytes to clear. */
    {
        unsigned char ca[32] = {0}, cb[32] = {0};
        for (size_t i = 0; i < alen; i++)
            ca[(unsigned char)a[i] & 31]++;
        for (size_t j = 0; j < blen; j++)
            cb[(unsigned char)b[j] & 31]++;
        unsigned sum = 0;
        for (int k = 0; k < 32; k++)
            sum += (unsigned)(ca[k] > cb[k] ? ca[k] - cb[k] : cb[k] - ca[k]);
        if ((sum + 1) / 2 > max)
            return max + 1;
    }
    /* Three rolling rows of the optimal-string-alignment matrix. */
    unsigned rows[3][256];
    unsigned *prev2 = rows[0], *prev = rows[1], *cur = rows[2];
    for (size_t j = 0; j <= blen; j++)
        prev[j] = (unsigned)j;
    for (size_t i = 1; i <= alen; i++) {
        cur[0] = (unsigned)i;
        unsigned best = cur[0];
        for (size_t j = 1; j <= blen; j++) {
            unsigned cost = a[i - 1] == b[j - 1] ? 0 : 1;
            unsigned v = prev[j] + 1;
            if (cur[j - 1] + 1 < v)
                v = cur[j - 1] + 1;
            if (prev[j - 1] + cost < v)
                v = prev[j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                prev2[j - 2] + 1 < v)
                v = prev2[j - 2] + 1;
            cur[j] = v;
            if (v < best)
                best = v;
        }
        if (best > max)
            return max + 1;
        unsigned *t = prev2;
        prev2 = prev;
        prev = cur;
        cur = t;
    }
    return prev[blen] > max ? max + 1 : prev[blen];
}

int fb_text_duration(const char *text, long long *seconds)
{
    static const struct {
        const char *word;
        long long secs;
    } units[] = {{"s", 1},
                 {"seconde", 1},
                 {"secondes", 1},
                 {"min", 60},
                 {"minute", 60},
                 {"minutes", 60},
                 {"h", 3600},
                 {"heure", 3600},
                 {"heures", 3600},
                 {"j", 86400},
                 {"jour", 86400},
                 {"jours", 86400},
                 {"semaine", 604800},
                 {"semaines", 604800},
                 {"mois", 2592000},
                 {"an", 31536000},
                 {"ans", 31536000},
                 {"annee", 31536000},
                 {"annees", 31536000}};
    char folded[128];
    if (fb_text_fold(text, strlen(text), folded, sizeof(folded)) >= sizeof(folded))
        return FB_EINVAL;
    long long total = 0;
    int parts = 0;
    const char *p = folded;
    while (*p) {
        if (parts > 0 && strncmp(p, "et ", 3) == 0)
            p += 3;
        if (*p < '0' || *p > '9')
            return FB_EINVAL;
        long long n = 0;
        while (*p >= '0' && *p <= '9') {
            n = n * 10 + (*p - '0');
            if (n > 100000)
                return FB_EINVAL;
            p++;
        }
        if (*p == ' ')
            p++;
        const char *w = p;
        while (*p && *p != ' ')
            p++;
        size_t wl = (size_t)(p - w);
        long long unit = 0;
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
            if (strlen(units[i].word) == wl && strncmp(units[i].word, w, wl) == 0)
                unit = units[i].secs;
        if (!unit)
            return FB_EINVAL;
        total += n * unit;
        parts++;
        if (*p == ' ')
            p++;
    }
    if (!parts)
        return FB_EINVAL;
    *seconds = total;
    return 0;
}

/* ---- "plus tard dans 3 mois" --------------------------------------------------------------- */

/* When folded `p` starts with the words `w` (followed by a space or the end), returns what
 * follows them (past the space); else NULL. */
static const char *skip_words(const char *p, const char *w)
{
    size_t n = strlen(w);
    if (strncmp(p, w, n) != 0 || (p[n] != ' ' && p[n] != '\0'))
        return NULL;
    return p[n] == ' ' ? p + n + 1 : p + n;
}

/* The first of `words` (NULL-terminated) that `*p` starts with: moves `*p` past it, true. */
static bool skip_any(const char **p, const char *const *words)
{
    for (size_t i = 0; words[i]; i++) {
        const char *q = skip_words(*p, words[i]);
        if (q) {
            *p = q;
            return true;
        }
    }
    return false;
}

fb_later_t fb_text_later(const char *text, fb_delay_t *delay)
{
    /* words saying "later" (they make the text a "later" answer), and words that may come
     * before or between them */
    static const char *const leads[] = {"plus tard",
                                        "pas maintenant",
                                        "pas encore",
                                        "pas avant",
                                        "relancez moi",
                                        "relancez nous",
                                        "relance moi",
                                        "relance nous",
                                        "rappelez moi",
                                        "rappelez nous",
                                        "rappelle moi",
                                        "rappelle nous",
                                        "recontactez moi",
                                        "recontactez nous",
                                        "revenez vers moi",
                                        "revenez vers nous",
                                        "reparlons en",
                                        "on en reparle",
                                        NULL};
    static const char *const fillers[] = {
        "ok",       "oui",     "non", "bon", "alors",           "euh", "merci",
        "d accord", "entendu", "svp", "stp", "s il vous plait", NULL};
    static const char *const preps[] = {"dans", "d ici", NULL};
    static const char *const approx[] = {"environ", "a peu pres", "au moins", "encore", NULL};
    static const char *const number_words[] = {"zero", "un",   "deux",  "trois", "quatre",
                                               "cinq", "six",  "sept",  "huit",  "neuf",
                                               "dix",  "onze", "douze", NULL};
    static const struct {
        const char *word;
        fb_delay_unit_t unit;
    } units[] = {{"j", FB_DELAY_DAY},        {"jour", FB_DELAY_DAY},      {"jours", FB_DELAY_DAY},
                 {"semaine", FB_DELAY_WEEK}, {"semaines", FB_DELAY_WEEK}, {"mois", FB_DELAY_MONTH},
                 {"an", FB_DELAY_YEAR},      {"ans", FB_DELAY_YEAR},      {"annee", FB_DELAY_YEAR},
                 {"annees", FB_DELAY_YEAR}};
    static const long long unit_days[] = {1, 7, 30, 365};

    char folded[256] = {0}; /* zeroed: the analyzer cannot see strncmp stop at the NUL */
    if (fb_text_fold(text, strlen(text), folded, sizeof(folded)) >= sizeof(folded))
        return FB_LATER_NO;
    const char *p = folded;
    bool later = false;
    for (bool again = true; again;) {
        again = false;
        if (skip_any(&p, leads))
            again = later = true;
        else if (skip_any(&p, fillers))
            again = true;
    }
    bool prep = skip_any(&p, preps);
    if (!later && !prep)
        return FB_LATER_NO;
    (void)skip_any(&p, approx);

    /* the number: digits (saturated: capped anyway), possibly glued to the unit ("10j"), or a
     * word followed by a space */
    long long n = -1;
    bool word = false;
    if (*p >= '0' && *p <= '9') {
        n = 0;
        while (*p >= '0' && *p <= '9') {
            if (n <= 100000)
                n = n * 10 + (*p - '0');
            p++;
        }
        if (*p == ' ')
            p++;
    } else {
        for (size_t i = 0; number_words[i] && n < 0; i++) {
            const char *q = skip_words(p, number_words[i]);
            if (q) {
                n = (long long)i;
                p = q;
                word = true;
            }
        }
        const char *q;
        if (n < 0 && ((q = skip_words(p, "une")))) {
            n = 1;
            p = q;
            word = true;
        } else if (n < 0 && ((q = skip_words(p, "quinze")))) {
            n = 15;
            p = q;
            word = true;
        }
    }
    if (n < 0)
        return FB_LATER_NO; /* "plus tard merci": no number, read otherwise */

    const char *w = p;
    while (*p && *p != ' ')
        p++;
    size_t wl = (size_t)(p - w);
    int unit = -1;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strlen(units[i].word) == wl && strncmp(units[i].word, w, wl) == 0)
            unit = (int)units[i].unit;
    if (unit == FB_DELAY_DAY && word && n == 1 && !prep)
        return FB_LATER_NO; /* "plus tard, un jour": someday, not tomorrow */
    if (unit < 0 || n < 1)
        return FB_LATER_PLAIN; /* "dans 3", "dans 3 heures", "plus tard 0 jour" */

    long long days = n * unit_days[unit];
    if (days > FB_DELAY_MAX_DAYS) {
        delay->n = 12;
        delay->unit = FB_DELAY_MONTH;
        delay->seconds = (long long)FB_DELAY_MAX_DAYS * 86400;
        delay->capped = true;
    } else {
        delay->n = (unsigned)n;
        delay->unit = (fb_delay_unit_t)unit;
        delay->seconds = days * 86400;
        delay->capped = false;
    }
    return FB_LATER_DELAY;
}

size_t fb_text_delay_format(const fb_delay_t *delay, char *out, size_t cap)
{
    static const char *const one[] = {"jour", "semaine", "mois", "an"};
    static const char *const many[] = {"jours", "semaines", "mois", "ans"};
    unsigned u = (unsigned)delay->unit < 4 ? (unsigned)delay->unit : 0;
    int len = snprintf(out, cap, "%u %s", delay->n, delay->n == 1 ? one[u] : many[u]);
    return len < 0 ? 0 : (size_t)len;
}
