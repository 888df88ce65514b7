/* SPDX-License-Identifier: MIT */
/*
 * test_text.c - folding French text to keys, and bounded edit distances.
 */
#include <stdint.h>
#include <string.h>

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
    ASSERT(fb_text_valid_utf8("Élodie\n", 8));
    ASSERT(!fb_text_valid_utf8("\xc3", 1));
    ASSERT(!fb_text_valid_utf8("a\x01", 2));
    ASSERT(!fb_text_valid_utf8("\xc0\xaf", 2)); /* overlong */
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
