/* SPDX-License-Identifier: MIT */
/*
 * test_text.c - folding French text to keys, and bounded edit distances.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/utf8.h"
#include "engine/text.h"
#include "frichebot/alloc.h"
#include "task.h"

static void check_fold(const char *in, const char *want)
{
    char out[256];
    size_t n = fb_text_fold(in, strlen(in), out, sizeof(out));
    ASSERT_STR_EQ(out, want);
    ASSERT_EQ(n, strlen(want));
}

TEST_IMPL(text_fold_french)
{
    check_fold("Saint-Étienne-du-Rouvray", "saint etienne du rouvray");
    check_fold("  SAINT   ÉTIENNE du rouvray ", "saint etienne du rouvray");
    check_fold("L’Haÿ-les-Roses", "l hay les roses");
    check_fold("Œuvre, cœur & Ærø!", "oeuvre coeur aero");
    check_fold("3 000 m²", "3 000 m2");
    check_fold("2,5 ha", "2 5 ha");
    check_fold("Łódź", "lodz");
    check_fold("Ĳssel", "issel");
    check_fold("", "");
    check_fold("???", "");
    /* Invalid UTF-8 bytes are dropped, never copied. */
    check_fold("a\xff\xfe"
               "b\xc3",
               "ab");
    check_fold("\xed\xa0\x80x", "x"); /* a UTF-16 surrogate is invalid in UTF-8 */
    char *d = fb_text_fold_dup("Île-de-France");
    ASSERT_STR_EQ(d, "ile de france");
    fb_free(d);
    return 0;
}

TEST_IMPL(text_fold_truncates_like_snprintf)
{
    char out[5];
    size_t n = fb_text_fold("Montpellier", 11, out, sizeof(out));
    ASSERT_EQ(n, 11);
    ASSERT_STR_EQ(out, "mont");
    return 0;
}

TEST_IMPL(text_distance)
{
    ASSERT_EQ(fb_text_distance("chat", 4, "chat", 4, 2), 0);
    ASSERT_EQ(fb_text_distance("chat", 4, "chta", 4, 2), 1); /* transposition */
    ASSERT_EQ(fb_text_distance("industriel", 10, "industrie", 9, 2), 1);
    ASSERT_EQ(fb_text_distance("commune", 7, "comune", 6, 2), 1);
    ASSERT_EQ(fb_text_distance("oui", 3, "non", 3, 5), 3);
    ASSERT_EQ(fb_text_distance("abc", 3, "abcdefgh", 8, 2), 3); /* early exit: max + 1 */
    ASSERT_EQ(fb_text_distance("", 0, "ab", 2, 2), 2);
    ASSERT_EQ(fb_text_typo_budget(3), 0);
    ASSERT_EQ(fb_text_typo_budget(4), 1);
    ASSERT_EQ(fb_text_typo_budget(8), 2);
    return 0;
}

TEST_IMPL(text_valid_utf8)
{
    ASSERT(fb_utf8_valid_text("Élodie\n", 8));
    ASSERT(!fb_utf8_valid_text("\xc3", 1));
    ASSERT(!fb_utf8_valid_text("a\x01", 2));
    ASSERT(!fb_utf8_valid_text("\xc0\xaf", 2)); /* overlong */
    /* The one decoder (common/utf8.h) that the engine, the log and the Matrix adapter share. */
    uint32_t cp;
    ASSERT_EQ(fb_utf8_decode((const unsigned char *)"\xe2\x82\xac", 3, &cp), 3);
    ASSERT_EQ(cp, 0x20AC);
    ASSERT_EQ(fb_utf8_decode((const unsigned char *)"\xf0\x9f\x98\x80", 4, &cp), 4);
    ASSERT_EQ(cp, 0x1F600);
    ASSERT_EQ(fb_utf8_decode((const unsigned char *)"\xed\xa0\x80", 3, &cp), 1); /* surrogate */
    ASSERT_EQ(cp, FB_UTF8_BAD);
    ASSERT_EQ(fb_utf8_len((const unsigned char *)"\xf4\x90\x80\x80", 4), 0); /* > U+10FFFF */
    ASSERT_EQ(fb_utf8_len((const unsigned char *)"\xe2\x82", 2), 0);         /* cut short */
    ASSERT_EQ(fb_utf8_len((const unsigned char *)"\xf5\x80\x80", 3), 0);
    ASSERT(fb_utf8_valid("a\0\x01b", 4)); /* NUL and controls: the caller's business */
    ASSERT(!fb_utf8_valid("a\xff", 2));
    return 0;
}

TEST_IMPL(text_duration)
{
    long long s = 0;
    ASSERT_OK(fb_text_duration("6 semaines", &s));
    ASSERT_EQ(s, 6 * 7 * 86400);
    ASSERT_OK(fb_text_duration("3 Jours", &s));
    ASSERT_EQ(s, 3 * 86400);
    ASSERT_OK(fb_text_duration("2 mois", &s));
    ASSERT_EQ(s, 60 * 86400);
    ASSERT_OK(fb_text_duration("1 an", &s));
    ASSERT_EQ(s, 365 * 86400);
    ASSERT_OK(fb_text_duration("1 année", &s));
    ASSERT_EQ(s, 365 * 86400);
    ASSERT_OK(fb_text_duration("1 semaine et 2 jours", &s));
    ASSERT_EQ(s, 9 * 86400);
    ASSERT_OK(fb_text_duration("90 min", &s));
    ASSERT_EQ(s, 5400);
    ASSERT_EQ(fb_text_duration("bientôt", &s), FB_EINVAL);
    ASSERT_EQ(fb_text_duration("6", &s), FB_EINVAL);
    ASSERT_EQ(fb_text_duration("", &s), FB_EINVAL);
    ASSERT_EQ(fb_text_duration("6 semaines et", &s), FB_EINVAL);
    ASSERT_EQ(fb_text_duration("999999 ans", &s), FB_EINVAL);
    return 0;
}

/* Reference optimal-string-alignment distance, unbounded and without shortcuts. */
static unsigned osa_reference(const char *a, size_t n, const char *b, size_t m)
{
    unsigned d[32][32];
    for (size_t i = 0; i <= n; i++)
        d[i][0] = (unsigned)i;
    for (size_t j = 0; j <= m; j++)
        d[0][j] = (unsigned)j;
    for (size_t i = 1; i <= n; i++)
        for (size_t j = 1; j <= m; j++) {
            unsigned c = a[i - 1] == b[j - 1] ? 0 : 1;
            unsigned v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v)
                v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + c < v)
                v = d[i - 1][j - 1] + c;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[n][m];
}

TEST_IMPL(text_distance_matches_reference)
{
    /* The bounded distance (with its early exits and lower bound) equals min(true, max + 1) on
     * many random pairs over a small alphabet, where near-misses are common. */
    uint32_t seed = 12345;
    char a[24], b[24];
    for (int iter = 0; iter < 200000; iter++) {
        size_t n = 0, m = 0;
        seed = seed * 1103515245u + 12345u;
        n = (seed >> 16) % 12;
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            a[i] = (char)("abcdeacb e"[(seed >> 16) % 10]);
        }
        /* b: a copy of a with a few random edits, or unrelated */
        seed = seed * 1103515245u + 12345u;
        if ((seed >> 16) % 4) {
            memcpy(b, a, n);
            m = n;
            seed = seed * 1103515245u + 12345u;
            for (unsigned e = (seed >> 16) % 4; e > 0; e--) {
                seed = seed * 1103515245u + 12345u;
                unsigned op = (seed >> 16) % 3, pos = (seed >> 8) % (unsigned)(m + 1);
                if (op == 0 && m < 20) {
                    memmove(b + pos + 1, b + pos, m - pos);
                    b[pos] = 'x';
                    m++;
                } else if (op == 1 && m > 0 && pos < m) {
                    memmove(b + pos, b + pos + 1, m - pos - 1);
                    m--;
                } else if (m > 1 && pos + 1 < m) {
                    char t = b[pos];
                    b[pos] = b[pos + 1];
                    b[pos + 1] = t;
                }
            }
        } else {
            seed = seed * 1103515245u + 12345u;
            m = (seed >> 16) % 12;
            for (size_t j = 0; j < m; j++) {
                seed = seed * 1103515245u + 12345u;
                b[j] = (char)("abcdeacb e"[(seed >> 16) % 10]);
            }
        }
        unsigned want = osa_reference(a, n, b, m);
        for (unsigned max = 0; max <= 3; max++) {
            unsigned got = fb_text_distance(a, n, b, m, max);
            unsigned expect = want > max ? max + 1 : want;
            if (got != expect)
                FB_TEST_FAIL("distance(%.*s, %.*s, max %u) = %u, want %u", (int)n, a, (int)m, b,
                             max, got, expect);
        }
    }
    return 0;
}

/* Reads `text` with fb_text_later(): expects FB_LATER_DELAY and `days` in all, said `said`. */
static void later_is(const char *text, long long days, const char *said)
{
    fb_delay_t d = {0};
    fb_later_t got = fb_text_later(text, &d);
    if (got != FB_LATER_DELAY)
        FB_TEST_FAIL("\"%s\": expected a delay, got %d", text, (int)got);
    if (d.seconds != days * 86400)
        FB_TEST_FAIL("\"%s\": expected %lld days, got %lld s", text, days, d.seconds);
    char buf[32];
    ASSERT_EQ(fb_text_delay_format(&d, buf, sizeof(buf)), strlen(said));
    ASSERT_STR_EQ(buf, said);
}

/* Expects fb_text_later(text) to give `want` (FB_LATER_NO or FB_LATER_PLAIN). */
static void later_not(const char *text, fb_later_t want)
{
    fb_delay_t d = {0};
    fb_later_t got = fb_text_later(text, &d);
    if (got != want)
        FB_TEST_FAIL("\"%s\": expected %d, got %d", text, (int)want, (int)got);
}

TEST_IMPL(text_later)
{
    /* the forms of issue #8 */
    later_is("plus tard 3 mois", 90, "3 mois");
    later_is("Plus tard dans 3 mois", 90, "3 mois");
    later_is("plus tard, dans 3 mois", 90, "3 mois");
    later_is("dans 2 semaines", 14, "2 semaines");
    later_is("Relancez-moi dans un mois", 30, "1 mois");
    later_is("rappelez-moi dans 10 jours", 10, "10 jours");
    later_is("rappelle-moi dans 1 jour", 1, "1 jour");
    later_is("d'ici six mois", 180, "6 mois");
    later_is("pas maintenant, dans une semaine", 7, "1 semaine");
    later_is("pas avant 15 jours", 15, "15 jours");
    later_is("ok plus tard dans 2 mois merci", 60, "2 mois");
    later_is("dans environ 4 semaines", 28, "4 semaines");
    later_is("dans 10j", 10, "10 jours");
    later_is("dans 2semaines", 14, "2 semaines");
    later_is("DANS 3 MOIS !", 90, "3 mois");
    later_is("dans 1 an", 365, "1 an");
    later_is("dans une année", 365, "1 an");
    later_is("dans 12 mois", 360, "12 mois");
    later_is("dans 52 semaines", 364, "52 semaines");
    later_is("dans 3 mois, le temps du vote", 90, "3 mois"); /* what follows is ignored */
    /* every number word */
    static const char *const words[] = {"un",   "deux", "trois", "quatre", "cinq", "six",
                                        "sept", "huit", "neuf",  "dix",    "onze", "douze"};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        char text[64], said[32];
        snprintf(text, sizeof(text), "dans %s jours", words[i]);
        snprintf(said, sizeof(said), "%zu jour%s", i + 1, i ? "s" : "");
        later_is(text, (long long)i + 1, said);
    }
    later_is("dans quinze jours", 15, "15 jours");
    later_is("dans une semaine", 7, "1 semaine");
    later_is("dans deux ans", 365, "12 mois"); /* capped */
    /* caps: at most one year, said "12 mois" */
    later_is("dans 13 mois", 365, "12 mois");
    later_is("dans 366 jours", 365, "12 mois");
    later_is("dans 500 ans", 365, "12 mois");
    later_is("plus tard 99999999999999999999 jours", 365, "12 mois");
    fb_delay_t d = {0};
    ASSERT_EQ(fb_text_later("dans 500 ans", &d), FB_LATER_DELAY);
    ASSERT(d.capped);
    ASSERT_EQ(fb_text_later("dans 1 an", &d), FB_LATER_DELAY);
    ASSERT(!d.capped);
    /* a number that is no delay: a plain "plus tard" */
    later_not("plus tard 0 jour", FB_LATER_PLAIN);
    later_not("dans zéro jour", FB_LATER_PLAIN);
    later_not("dans 3", FB_LATER_PLAIN);
    later_not("plus tard dans 3", FB_LATER_PLAIN);
    later_not("dans 3 heures", FB_LATER_PLAIN);
    later_not("dans 3,5 mois", FB_LATER_PLAIN);
    later_not("dans un", FB_LATER_PLAIN);
    /* not a delay at all: read otherwise */
    later_not("plus tard", FB_LATER_NO);
    later_not("plus tard merci", FB_LATER_NO);
    later_not("plus tard, un jour", FB_LATER_NO); /* someday */
    later_not("dans quelques mois", FB_LATER_NO);
    later_not("pas avant septembre", FB_LATER_NO);
    later_not("3 mois", FB_LATER_NO);
    later_not("c'est fait dans 2 semaines", FB_LATER_NO);
    later_not("en cours depuis 2 mois", FB_LATER_NO);
    later_not("fait", FB_LATER_NO);
    later_not("", FB_LATER_NO);
    later_not("dansant 3 mois", FB_LATER_NO);
    /* a text too long to be such an answer */
    char long_text[400];
    memset(long_text, 'a', sizeof(long_text) - 1);
    memcpy(long_text, "dans 3 mois ", 12);
    long_text[sizeof(long_text) - 1] = '\0';
    later_not(long_text, FB_LATER_NO);
    /* a small buffer: the length it needs, cut and terminated */
    char small[4];
    d = (fb_delay_t){10, FB_DELAY_DAY, 10 * 86400, false};
    ASSERT_EQ(fb_text_delay_format(&d, small, sizeof(small)), 8);
    ASSERT_STR_EQ(small, "10 ");
    return 0;
}
