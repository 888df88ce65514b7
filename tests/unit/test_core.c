/* SPDX-License-Identifier: MIT */
/*
 * test_core.c - errors, allocation helpers, bounded buffers and the log level specs.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "common/utf8.h"
#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "frichebot/err.h"
#include "frichebot/log.h"
#include "task.h"

TEST_IMPL(err_names_and_messages)
{
    ASSERT_STR_EQ(fb_err_name(FB_ETIMEDOUT), "FB_ETIMEDOUT");
    ASSERT_STR_EQ(fb_err_name(0), "OK");
    ASSERT_STR_EQ(fb_strerror(FB_ECONFLICT),
                  "version conflict: the record changed since it was read");
    ASSERT_STR_EQ(fb_err_name(-1), "FB_E?");
    return 0;
}

/* Cleans `in` with fb_utf8_clean_text() and checks the result and the count of changes. */
static int clean_case(const char *in, const char *want, size_t changes)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", in);
    ASSERT_EQ(fb_utf8_clean_text(buf), changes);
    ASSERT_STR_EQ(buf, want);
    ASSERT_EQ(fb_utf8_clean_text(buf), 0); /* idempotent */
    ASSERT(fb_utf8_valid_text(buf, strlen(buf)) || !fb_utf8_valid(in, strlen(in)));
    return 0;
}

TEST_IMPL(user_text_controls_cleaned)
{
    /* kept: text, accents, emoji, \t and \n, U+00A0 and U+2028 (not controls) */
    ASSERT_OK(clean_case("Saint-Dizier, 3 ha\tfriche\n", "Saint-Dizier, 3 ha\tfriche\n", 0));
    ASSERT_OK(clean_case("\xc3\xa9t\xc3\xa9 \xf0\x9f\x8c\xb3\xc2\xa0\xe2\x80\xa8",
                         "\xc3\xa9t\xc3\xa9 \xf0\x9f\x8c\xb3\xc2\xa0\xe2\x80\xa8", 0));
    /* C0 but \t \n, DEL, C1 (U+0080..U+009F, two bytes each in UTF-8): removed */
    ASSERT_OK(clean_case("saint\x01 dizier\x1b[31m\x7f", "saint dizier[31m", 3));
    ASSERT_OK(clean_case("a\xc2\x85"
                         "b\xc2\x80\xc2\x9f",
                         "ab", 3));
    ASSERT_OK(clean_case("a\xc2\xa0"
                         "b",
                         "a\xc2\xa0"
                         "b",
                         0)); /* U+00A0 is the first non-control */
    /* line ends: \r\n and a lone \r become \n */
    ASSERT_OK(clean_case("un\r\ndeux\rtrois\r", "un\ndeux\ntrois\n", 3));
    ASSERT_OK(clean_case("\r\r\n", "\n\n", 2));
    /* only controls: nothing left, and blank */
    char only[] = "\x01\x02\x1b\xc2\x85";
    ASSERT_EQ(fb_utf8_clean_text(only), 4);
    ASSERT_STR_EQ(only, "");
    ASSERT(fb_utf8_blank(only));
    char sp[] = " \x07\t\r\n";
    ASSERT_EQ(fb_utf8_clean_text(sp), 2);
    ASSERT(fb_utf8_blank(sp));
    ASSERT(!(fb_utf8_blank(" a ")));
    /* invalid UTF-8 is left for the validators: a stray continuation byte, a cut sequence */
    ASSERT_OK(clean_case("a\x85\x01"
                         "b\xc3",
                         "a\x85"
                         "b\xc3",
                         1));
    ASSERT(!(fb_utf8_valid("a\x85"
                           "b\xc3",
                           4)));
    return 0;
}

TEST_IMPL(buf_bounded_growth)
{
    fb_buf_t b;
    fb_buf_init(&b, 10);
    ASSERT_STR_EQ(fb_buf_str(&b), "");
    ASSERT_OK(fb_buf_puts(&b, "hello"));
    ASSERT_OK(fb_buf_printf(&b, "%d", 1234));
    ASSERT_STR_EQ(b.data, "hello1234");
    ASSERT_EQ(b.len, 9);
    ASSERT_OK(fb_buf_puts(&b, "!"));
    ASSERT_EQ(b.len, 10);
    /* One byte past the maximum frees the buffer and reports it. */
    ASSERT_EQ(fb_buf_puts(&b, "x"), FB_ETOOBIG);
    ASSERT_NULL(b.data);
    ASSERT_EQ(b.len, 0);
    ASSERT_EQ(fb_buf_printf(&b, "%s", "01234567890"), FB_ETOOBIG);
    ASSERT_OK(fb_buf_puts(&b, "again"));
    char *s = fb_buf_take(&b);
    ASSERT_STR_EQ(s, "again");
    ASSERT_NULL(b.data);
    fb_free(s);
    return 0;
}

/* fb_buf_printf() formats in the free room when the text fits (one pass): the maximum, the NUL
 * and the contents are as when it measured first. */
TEST_IMPL(buf_printf_in_place)
{
    fb_buf_t b;
    fb_buf_init(&b, 10);
    ASSERT_OK(fb_buf_puts(&b, "abc")); /* 64 bytes allocated: room for what follows */
    ASSERT_OK(fb_buf_printf(&b, "%d-%s", 42, "x"));
    ASSERT_STR_EQ(b.data, "abc42-x");
    ASSERT_EQ(b.len, 7);
    /* fits the room but not the maximum: refused, the buffer freed, as an append */
    ASSERT_EQ(fb_buf_printf(&b, "%s", "1234"), FB_ETOOBIG);
    ASSERT_NULL(b.data);
    ASSERT_EQ(b.len, 0);
    /* longer than the room: measured, grown, written */
    fb_buf_t big;
    fb_buf_init(&big, 1000);
    ASSERT_OK(fb_buf_puts(&big, "start "));
    ASSERT_OK(fb_buf_printf(&big, "%0200d|%s", 7, "end"));
    ASSERT_EQ(big.len, 6 + 200 + 4);
    ASSERT_EQ(big.data[big.len], '\0');
    ASSERT_STR_EQ(big.data + big.len - 5, "7|end");
    ASSERT_OK(fb_buf_printf(&big, "%s", ""));
    ASSERT_EQ(big.len, 6 + 200 + 4);
    fb_buf_free(&big);
    return 0;
}

/* The 8-byte ASCII path of the validators decides as the byte-wise one: a bad byte or a control
 * character anywhere in a long run is found, \t \n \r stay allowed in text. */
TEST_IMPL(utf8_valid_long_ascii_runs)
{
    char s[64];
    memset(s, 'a', sizeof(s));
    ASSERT(fb_utf8_valid(s, sizeof(s)));
    ASSERT(fb_utf8_valid_text(s, sizeof(s)));
    for (size_t at = 0; at < sizeof(s); at += 7) {
        memset(s, 'a', sizeof(s));
        s[at] = '\x85'; /* a lone continuation byte */
        ASSERT(!fb_utf8_valid(s, sizeof(s)));
        ASSERT(!fb_utf8_valid_text(s, sizeof(s)));
        s[at] = '\x01';
        ASSERT(fb_utf8_valid(s, sizeof(s)));
        ASSERT(!fb_utf8_valid_text(s, sizeof(s)));
        s[at] = '\0';
        ASSERT(fb_utf8_valid(s, sizeof(s)));
        ASSERT(!fb_utf8_valid_text(s, sizeof(s)));
        s[at] = '\t';
        ASSERT(fb_utf8_valid_text(s, sizeof(s)));
        s[at] = '\n';
        ASSERT(fb_utf8_valid_text(s, sizeof(s)));
        s[at] = '\r';
        ASSERT(fb_utf8_valid_text(s, sizeof(s)));
        s[at] = 0x7F; /* DEL is not a C0 control: allowed, as before */
        ASSERT(fb_utf8_valid_text(s, sizeof(s)));
    }
    /* a sequence cut by the end after a long run */
    memset(s, 'a', sizeof(s));
    s[sizeof(s) - 1] = '\xc3';
    ASSERT(!fb_utf8_valid(s, sizeof(s)));
    /* accented text: runs broken by two-byte sequences */
    const char *fr =
        "Votre feuille de route \xe2\x80\x93 Alen\xc3\xa7on (Orne), d\xc3\xa9j\xc3\xa0 faite";
    ASSERT(fb_utf8_valid_text(fr, strlen(fr)));
    return 0;
}

/* The validators' reference: fb_utf8_decode() byte by byte, as they decided before any fast
 * path. */
static bool utf8_reference(const char *s, size_t len, bool text)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        i += fb_utf8_decode(p + i, len - i, &cp);
        if (cp == FB_UTF8_BAD || (text && cp < 0x20 && cp != '\t' && cp != '\n' && cp != '\r'))
            return false;
    }
    return true;
}

/* The fast paths (8 bytes at a time, then straight to the first byte to look at) decide as the
 * reference on random mixes of ASCII, controls, valid sequences and broken ones, at every
 * alignment. */
TEST_IMPL(utf8_valid_matches_reference)
{
    static const char *const pieces[] = {"a",
                                         "b",
                                         " ",
                                         "\t",
                                         "\n",
                                         "\r",
                                         "\x01",
                                         "\x7f",
                                         "\xc3\xa9",
                                         "\xe2\x80\x93",
                                         "\xf0\x9f\x98\x80",
                                         "\x85",
                                         "\xc3",
                                         "\xc0\x80",
                                         "\xed\xa0\x80",
                                         "\xf5\x80\x80\x80",
                                         "\xe2\x80",
                                         "abcdefgh",
                                         "ABCDEFGHIJKLMNOP"};
    uint32_t seed = 4242;
    char s[160];
    for (int iter = 0; iter < 100000; iter++) {
        size_t n = 0;
        seed = seed * 1103515245u + 12345u;
        size_t count = (seed >> 16) % 12;
        for (size_t k = 0; k < count; k++) {
            seed = seed * 1103515245u + 12345u;
            const char *piece = pieces[(seed >> 16) % FB_ARRAY_SIZE(pieces)];
            size_t pl = strlen(piece);
            if (n + pl >= sizeof(s))
                break;
            memcpy(s + n, piece, pl);
            n += pl;
        }
        ASSERT_EQ(fb_utf8_valid(s, n), utf8_reference(s, n, false));
        ASSERT_EQ(fb_utf8_valid_text(s, n), utf8_reference(s, n, true));
    }
    return 0;
}

TEST_IMPL(log_spec_parsing)
{
    const char *bad = NULL;
    fb_log_set_level_all(FB_LOG_INFO);
    ASSERT_OK(fb_log_apply_spec("notice,http=debug,redis=trace", &bad));
    ASSERT_EQ(fb__log_levels[FB_SUB_HTTP], FB_LOG_DEBUG);
    ASSERT_EQ(fb__log_levels[FB_SUB_REDIS], FB_LOG_TRACE);
    ASSERT_EQ(fb__log_levels[FB_SUB_CORE], FB_LOG_NOTICE);
    /* A bad item changes nothing and is pointed at. */
    const char *spec = "warn,nosuch=debug";
    ASSERT_EQ(fb_log_apply_spec(spec, &bad), FB_EINVAL);
    ASSERT_STR_EQ(bad, "nosuch=debug");
    ASSERT_EQ(fb__log_levels[FB_SUB_CORE], FB_LOG_NOTICE);
    ASSERT_EQ(fb_log_apply_spec("http=loud", &bad), FB_EINVAL);
    ASSERT_EQ(fb_log_level_parse("TRACE"), FB_LOG_TRACE);
    ASSERT_EQ(fb_log_level_parse("nope"), -1);
    return 0;
}

static int evaluated;
static int side_effect(void)
{
    evaluated++;
    return 1;
}

TEST_IMPL(log_arguments_not_evaluated_when_disabled)
{
    fb_log_set_level_all(FB_LOG_WARN);
    FB_DEBUG(CORE, "value %d", side_effect());
    ASSERT_EQ(evaluated, 0);
    FB_WARN(CORE, "value %d", side_effect());
    ASSERT_EQ(evaluated, 1);
    return 0;
}

TEST_IMPL(log_json_lines_stay_valid_utf8)
{
    /* A message with invalid UTF-8 and a character cut by the 2 KiB message limit: the JSON line
     * written to stderr must hold only valid UTF-8 (checked by jansson's strict decoder). */
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    int saved = dup(STDERR_FILENO);
    dup2(fds[1], STDERR_FILENO);
    fb_log_set_format(FB_LOG_FORMAT_JSON);
    fb_log_set_level_all(FB_LOG_INFO);
    char big[2100];
    memset(big, 'a', sizeof(big));
    memcpy(big + 2044, "\xc3\xa9\xc3\xa9", 4); /* "éé" straddling the 2048-byte limit */
    big[sizeof(big) - 1] = '\0';
    FB_INFO(CORE, "bad \xff\xfe utf8 %s", "ok");
    FB_INFO(CORE, "%s", big);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(fds[1]);
    char out[8192];
    ssize_t n = read(fds[0], out, sizeof(out) - 1);
    close(fds[0]);
    ASSERT_GT(n, 0);
    out[n] = '\0';
    fb_log_set_format(FB_LOG_FORMAT_PLAIN);
    char *line = out;
    int lines = 0;
    for (char *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1, lines++) {
        json_error_t err;
        json_t *j = json_loadb(line, (size_t)(nl - line), 0, &err);
        if (!j)
            FB_TEST_FAIL("log line %d is not valid JSON: %s", lines + 1, err.text);
        json_decref(j);
    }
    ASSERT_EQ(lines, 2);
    ASSERT_NOT_NULL(strstr(out, "bad \\ufffd\\ufffd utf8 ok"));
    return 0;
}
