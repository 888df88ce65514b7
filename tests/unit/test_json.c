/* SPDX-License-Identifier: MIT */
/*
 * test_json.c - the fast JSON reader and writer (daemon/common/json.c) against jansson's
 * json_loadb() and json_dumps(JSON_COMPACT): the same verdict and an equal value for every input,
 * the same bytes for every value; a stored session read and written back unchanged.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "frichebot/alloc.h"
#include "frichebot/err.h"
#include "task.h"

/* fb_json_dump(v) as a new string (fb_free), or NULL when it fails. */
static char *fast_dump(const json_t *v)
{
    fb_buf_t b;
    fb_buf_init(&b, 1u << 24);
    if (fb_json_dump(v, &b)) {
        fb_buf_free(&b);
        return NULL;
    }
    return fb_buf_take(&b);
}

/* Reads `s` with both: the same verdict, an equal value, the same bytes written back by both
 * writers. Returns 1 when both accept, 0 when both refuse, -1 on a difference. */
static int same(const char *s, size_t n)
{
    json_error_t err;
    json_t *a = json_loadb(s, n, 0, &err);
    json_t *b = fb_json_loadb(s, n);
    int rc = -1;
    if (!a && !b) {
        rc = 0;
    } else if (a && b && json_equal(a, b)) {
        char *da = json_dumps(a, JSON_COMPACT);
        char *db = fast_dump(b);
        char *dc = fast_dump(a);
        rc = da && db && dc && !strcmp(da, db) && !strcmp(da, dc) ? 1 : -1;
        free(da); /* jansson's allocation */
        fb_free(db);
        fb_free(dc);
    }
    json_decref(a);
    json_decref(b);
    return rc;
}

TEST_IMPL(json_read_as_jansson)
{
    static const struct {
        const char *s;
        int want; /* 1 accepted, 0 refused */
    } v[] = {
        {"{}", 1},
        {"[]", 1},
        {" \t\r\n{ } \n", 1},
        {"{\"a\":1,\"b\":[true,false,null],\"c\":{\"d\":\"e\"}}", 1},
        {"[1,-1,0,-0,9223372036854775807,-9223372036854775808]", 1},
        {"[9223372036854775808]", 0},
        {"[-9223372036854775809]", 0},
        {"[1.5,-0.0,1e3,1E-3,2.5e+10,0.1,123456789012345678901234567890]", 0},
        {"[1.5,-0.0,1e3,1E-3,2.5e+10,0.1,1234567890123.25]", 1},
        {"[1e400]", 0},
        {"[-1e400]", 0},
        {"[1e-400]", 1},
        {"[01]", 0},
        {"[1.]", 0},
        {"[.5]", 0},
        {"[-]", 0},
        {"[+1]", 0},
        {"[1e]", 0},
        {"[1e+]", 0},
        {"[\"caf\xc3\xa9 \\u00e9\\u20ac\\ud83d\\ude00 \\\" \\\\ \\/ \\b\\f\\n\\r\\t\"]", 1},
        {"[\"\\u0000\"]", 0},
        {"[\"\\ud83d\"]", 0},
        {"[\"\\ude00\"]", 0},
        {"[\"\\ud83dx\"]", 0},
        {"[\"\\ud83d\\u0041\"]", 0},
        {"[\"\\x\"]", 0},
        {"[\"\\u12G4\"]", 0},
        {"[\"a\tb\"]", 0},
        {"[\"\xc3\"]", 0},
        {"[\"\xed\xa0\x80\"]", 0},
        {"[\"\xc0\xaf\"]", 0},
        {"[\"unterminated]", 0},
        {"{\"a\":1,}", 0},
        {"[1,]", 0},
        {"[,1]", 0},
        {"{\"a\" 1}", 0},
        {"{a:1}", 0},
        {"{\"a\":1}x", 0},
        {"{\"a\":1}{}", 0},
        {"\"top\"", 0},
        {"1", 0},
        {"null", 0},
        {"", 0},
        {"   ", 0},
        {"[tru]", 0},
        {"[truex]", 0},
        {"[nul]", 0},
        {"{\"a\":1,\"b\":2,\"a\":3}", 1},
        {"{\"\\u00e9t\\u00e9\":\"x\",\"\":\"\"}", 1},
        {"{\"k\\u0000\":1}", 0},
        {"[\"\x7f\"]", 1},
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(v); i++) {
        int got = same(v[i].s, strlen(v[i].s));
        if (got != v[i].want)
            FB_TEST_FAIL("case %zu (%s): got %d, want %d", i, v[i].s, got, v[i].want);
    }
    /* a NUL byte in the input, inside a string or after the value */
    ASSERT_EQ(same("[\"a\0b\"]", sizeof("[\"a\0b\"]") - 1), 0);
    ASSERT_EQ(same("{} \0", sizeof("{} \0") - 1), 0);
    /* jansson ignores one NUL right after a number or a literal (its pushed-back byte): so does
     * the fast reader (found by fuzz_json) */
    ASSERT_EQ(same("[1\0]", sizeof("[1\0]") - 1), 1);
    ASSERT_EQ(same("[false\0,null\0,-2.5\0]", sizeof("[false\0,null\0,-2.5\0]") - 1), 1);
    ASSERT_EQ(same("[1\0\0]", sizeof("[1\0\0]") - 1), 0);
    ASSERT_EQ(same("[1 \0]", sizeof("[1 \0]") - 1), 0);
    ASSERT_EQ(same("[\0 1]", sizeof("[\0 1]") - 1), 0);
    ASSERT_EQ(same("{\"a\":true\0}", sizeof("{\"a\":true\0}") - 1), 1);
    ASSERT_EQ(same("{\"a\"\0:1}", sizeof("{\"a\"\0:1}") - 1), 0);
    /* nesting: jansson's limit, and one past it */
    for (size_t depth = 2047; depth <= 2049; depth++) {
        char *s = fb_malloc(2 * depth + 1);
        memset(s, '[', depth);
        memset(s + depth, ']', depth);
        s[2 * depth] = '\0';
        int got = same(s, 2 * depth);
        fb_free(s);
        ASSERT_EQ(got, depth <= FB_JSON_MAX_DEPTH ? 1 : 0);
    }
    /* every value counts one level, scalars too (jansson's parse_value()): a number or an object
     * inside 2047 or 2048 arrays (review of the fast reader: it counted containers only) */
    for (size_t depth = 2046; depth <= 2048; depth++) {
        static const char *const inner[] = {"1", "{\"a\":1}"};
        for (size_t k = 0; k < FB_ARRAY_SIZE(inner); k++) {
            size_t il = strlen(inner[k]);
            char *s = fb_malloc(2 * depth + il + 1);
            memset(s, '[', depth);
            memcpy(s + depth, inner[k], il);
            memset(s + depth + il, ']', depth);
            s[2 * depth + il] = '\0';
            int got = same(s, 2 * depth + il);
            fb_free(s);
            size_t levels = depth + (k == 0 ? 1 : 2);
            if (got != (levels <= FB_JSON_MAX_DEPTH ? 1 : 0))
                FB_TEST_FAIL("%s inside %zu arrays: got %d", inner[k], depth, got);
        }
    }
    /* a string that starts with an escape, first of its document: the decoding buffer is not
     * allocated yet (UBSan: NULL + 0, found by review) */
    ASSERT_EQ(same("[\"\\n\"]", strlen("[\"\\n\"]")), 1);
    return 0;
}

TEST_IMPL(json_write_as_jansson)
{
    static const double reals[] = {0.0,  -0.0, 1.0,     -1.5,   0.1,     1e20,  1e21,
                                   1e22, 1e-5, 1.5e300, 5e-324, 2.5e-10, 1e100, 123456.789,
                                   1e15, 1e16, 1e17,    -1e-7,  3.0e7,   0.3,   2.0 / 3.0};
    json_t *a = json_array();
    for (size_t i = 0; i < FB_ARRAY_SIZE(reals); i++)
        json_array_append_new(a, json_real(reals[i]));
    json_array_append_new(a, json_integer(INT64_MIN));
    json_array_append_new(a, json_integer(INT64_MAX));
    json_array_append_new(a, json_integer(0));
    json_array_append_new(a, json_integer(-42));
    /* every C0 control, DEL, quotes, backslash, slash, NUL inside, multibyte */
    char ctl[40];
    for (int c = 0; c < 32; c++)
        ctl[c] = (char)c;
    memcpy(ctl + 32, "\x7f\"\\/\xc3\xa9", 7);
    json_array_append_new(a, json_stringn(ctl, 39));
    json_t *o = json_object();
    json_object_set_new(o, "z", json_true());
    json_object_set_new(o, "a", json_false());
    json_object_set_new(o, "m\"\n", json_null());
    json_object_setn_new(o, "n\0ul", 4, json_string("k"));
    json_object_set_new(o, "", json_array());
    json_object_set_new(o, "o", json_object());
    json_array_append_new(a, o);
    char *want = json_dumps(a, JSON_COMPACT);
    char *got = fast_dump(a);
    ASSERT_NOT_NULL(want);
    ASSERT_NOT_NULL(got);
    ASSERT_STR_EQ(got, want);
    /* the NULs (\u0000) are refused when read back, as by jansson */
    ASSERT_NULL(fb_json_loadb(got, strlen(got)));
    ASSERT_EQ(same(got, strlen(got)), 0);
    /* without them it reads back to an equal value */
    json_array_remove(a, json_array_size(a) - 2); /* the controls */
    ASSERT_OK(json_object_deln(o, "n\0ul", 4));
    free(want); /* jansson's allocation */
    fb_free(got);
    want = json_dumps(a, JSON_COMPACT);
    got = fast_dump(a);
    ASSERT(want && got && !strcmp(want, got));
    json_t *back = fb_json_loadb(got, strlen(got));
    ASSERT(back && json_equal(back, a));
    json_decref(back);
    free(want); /* jansson's allocation */
    fb_free(got);
    /* the writer copies 8 plain bytes at a time: each byte to escape, and a non-ASCII
     * character, at each position of strings of 1 to 24 characters, as jansson writes them */
    static const char *const specials[] = {"\x01", "\x1f", "\"",       "\\", "\x7f",
                                           "/",    " ",    "\xc3\xa9", "z"};
    for (size_t k = 0; k < FB_ARRAY_SIZE(specials); k++)
        for (size_t n = 1; n <= 24; n++)
            for (size_t at = 0; at < n; at++) {
                char str[32];
                size_t sl = strlen(specials[k]), len = 0;
                memset(str, 'x', at);
                len += at;
                memcpy(str + len, specials[k], sl);
                len += sl;
                memset(str + len, 'y', n - at - 1);
                len += n - at - 1;
                json_t *one = json_array();
                json_array_append_new(one, json_stringn(str, len));
                char *w1 = json_dumps(one, JSON_COMPACT);
                char *g1 = fast_dump(one);
                ASSERT(w1 && g1 && !strcmp(w1, g1));
                free(w1); /* jansson's allocation */
                fb_free(g1);
                json_decref(one);
            }
    /* a string that is not UTF-8 (made unchecked) fails with both */
    json_array_append_new(a, json_stringn_nocheck("\xff", 1));
    want = json_dumps(a, JSON_COMPACT);
    ASSERT_NULL(want);
    ASSERT_NULL(fast_dump(a));
    json_decref(a);
    /* the buffer's maximum */
    fb_buf_t b;
    fb_buf_init(&b, 8);
    json_t *big = json_pack("{s:s}", "key", "a long value");
    ASSERT_EQ(fb_json_dump(big, &b), FB_ETOOBIG);
    ASSERT_EQ(b.len, 0);
    fb_buf_free(&b);
    json_decref(big);
    return 0;
}

TEST_IMPL(json_session_round_trip)
{
    /* sessions as the router stores them (friche transcripts' ends) read and written back
     * byte for byte */
    static const char *const sessions[] = {
        "{\"v\":1,\"d\":\"friche\",\"h\":\"134f1284db820592\",\"s\":\"fin\",\"a\":{\"commune\":{"
        "\"insee\":\"61001\",\"nom\":\"Alen\xc3\xa7on\"},\"demandeur\":\"commune\",\"surface\":"
        "10000,\"contraintes\":[],\"vacance\":2.5},\"t\":[\"passe_polluant\"],\"p\":[\"surface\","
        "\"demandeur\"],\"u\":{\"etapes.engagement\":\"deja_faite\"},\"j\":[20871,0,0],\"e\":"
        "true,\"l\":[\"mixte\",\"le projet est d\xc3\xa9\x66ini \\\"oui\\\"\",\"a\\nb\"]}",
        "{\"v\":1,\"d\":\"exemple\",\"h\":\"1830ef318b17c529\",\"s\":\"commune\",\"a\":{}}",
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(sessions); i++) {
        json_t *v = fb_json_loadb(sessions[i], strlen(sessions[i]));
        ASSERT_NOT_NULL(v);
        char *back = fast_dump(v);
        ASSERT_NOT_NULL(back);
        ASSERT_STR_EQ(back, sessions[i]);
        fb_free(back);
        json_decref(v);
        ASSERT_EQ(same(sessions[i], strlen(sessions[i])), 1);
    }
    return 0;
}
