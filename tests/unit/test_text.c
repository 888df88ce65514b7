/* SPDX-License-Identifier: MIT */
/*
 * test_text.c - folding French text to keys, and bounded edit distances.
 */
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
