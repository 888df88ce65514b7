/* SPDX-License-Identifier: MIT */
/*
 * test_http_framing.c - strict request framing and the chunked decoder (daemon/io/http_framing.c).
 * The same rules over the real daemon and libwebsockets: tests/integration/test_http.py.
 */
#include <string.h>

#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "io/http_framing.h"
#include "task.h"

static fb_http_field_t field(const char *s)
{
    fb_http_field_t f = {s, strlen(s)};
    return f;
}

TEST_IMPL(http_content_length_parse)
{
    static const struct {
        const char *in;
        bool ok;
        unsigned long long want;
    } v[] = {
        {"0", true, 0},
        {"13", true, 13},
        {" 13", true, 13},
        {"13\t ", true, 13},
        {"007", true, 7},
        {"18446744073709551615", true, 18446744073709551615ull}, /* 2^64 - 1 */
        {"18446744073709551616", false, 0},                      /* 2^64 */
        {"99999999999999999999999", false, 0},
        {"", false, 0},
        {"  ", false, 0},
        {"+13", false, 0},
        {"-1", false, 0},
        {"13, 13", false, 0},
        {" 13 ,13", false, 0},
        {"1 3", false, 0},
        {"0x10", false, 0},
        {"1e3", false, 0},
        {"13;", false, 0},
        {"\v13", false, 0},
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(v); i++) {
        uint64_t n = 12345;
        int rc = fb_http_content_length_parse(v[i].in, strlen(v[i].in), &n);
        if (!v[i].ok) {
            ASSERT_EQ(rc, FB_EPROTO);
            ASSERT_EQ(n, 12345); /* untouched */
        } else {
            ASSERT_OK(rc);
            ASSERT(n == v[i].want);
        }
    }
    /* A NUL inside the value is not a terminator. */
    uint64_t n;
    ASSERT_EQ(fb_http_content_length_parse("1\0"
                                           "2",
                                           3, &n),
              FB_EPROTO);
    return 0;
}

TEST_IMPL(http_framing_check)
{
    fb_http_framing_t fr;
    fb_http_field_t cl[2], te[2];

    ASSERT_OK(fb_http_framing_check(NULL, 0, NULL, 0, false, &fr));
    ASSERT_EQ(fr.kind, FB_HTTP_FRAMING_NONE);
    ASSERT_NULL(fr.why);

    cl[0] = field(" 42 ");
    ASSERT_OK(fb_http_framing_check(cl, 1, NULL, 0, false, &fr));
    ASSERT_EQ(fr.kind, FB_HTTP_FRAMING_LENGTH);
    ASSERT(fr.length == 42);

    cl[0] = field("0");
    ASSERT_OK(fb_http_framing_check(cl, 1, NULL, 0, false, &fr));
    ASSERT_EQ(fr.kind, FB_HTTP_FRAMING_LENGTH);
    ASSERT(fr.length == 0);

    static const char *const chunked_ok[] = {"chunked", "Chunked", "CHUNKED", " chunked\t"};
    for (size_t i = 0; i < FB_ARRAY_SIZE(chunked_ok); i++) {
        te[0] = field(chunked_ok[i]);
        ASSERT_OK(fb_http_framing_check(NULL, 0, te, 1, false, &fr));
        ASSERT_EQ(fr.kind, FB_HTTP_FRAMING_CHUNKED);
    }

    /* Refused: repeated Content-Length (even equal), a bad number, both fields, a
     * Transfer-Encoding other than "chunked" alone, a repeated one, a disguised name. */
    cl[0] = field("13");
    cl[1] = field("13");
    ASSERT_EQ(fb_http_framing_check(cl, 2, NULL, 0, false, &fr), FB_EPROTO);
    ASSERT_NOT_NULL(fr.why);
    cl[0] = field("+13");
    ASSERT_EQ(fb_http_framing_check(cl, 1, NULL, 0, false, &fr), FB_EPROTO);
    cl[0] = field("0");
    te[0] = field("chunked");
    ASSERT_EQ(fb_http_framing_check(cl, 1, te, 1, false, &fr), FB_EPROTO);
    static const char *const te_bad[] = {
        "xchunked", "chunked, identity", "gzip, chunked", "identity",
        "",         "chunked;q=1",       "chunk",         "chunked\v"};
    for (size_t i = 0; i < FB_ARRAY_SIZE(te_bad); i++) {
        te[0] = field(te_bad[i]);
        ASSERT_EQ(fb_http_framing_check(NULL, 0, te, 1, false, &fr), FB_EPROTO);
        ASSERT_EQ(fr.kind, FB_HTTP_FRAMING_NONE);
    }
    te[0] = field("chunked");
    te[1] = field("chunked");
    ASSERT_EQ(fb_http_framing_check(NULL, 0, te, 2, false, &fr), FB_EPROTO);
    ASSERT_EQ(fb_http_framing_check(NULL, 0, NULL, 0, true, &fr), FB_EPROTO);
    ASSERT_EQ(fb_http_framing_check(cl, 1, NULL, 0, true, &fr), FB_EPROTO);
    te[0] = field("chun\0ed");
    te[0].len = 7;
    ASSERT_EQ(fb_http_framing_check(NULL, 0, te, 1, false, &fr), FB_EPROTO);
    return 0;
}

/* Decodes `in` fed `step` bytes at a time. Returns the last feed's result; the decoded body in
 * `out` (max `max` bytes), the bytes of `in` used by the body in *used. */
static int decode(const char *in, size_t len, size_t step, size_t max, fb_buf_t *out, size_t *used)
{
    fb_http_chunked_t c;
    fb_http_chunked_init(&c);
    fb_buf_init(out, max);
    *used = 0;
    int rc = 0;
    for (size_t off = 0; off < len; off += step) {
        size_t n = len - off < step ? len - off : step;
        size_t u = 0;
        rc = fb_http_chunked_feed(&c, in + off, n, out, &u);
        *used += u;
        if (rc != 0)
            return rc;
    }
    return rc;
}

TEST_IMPL(http_chunked_decode)
{
    static const struct {
        const char *in;
        const char *body;
    } ok[] = {
        {"0\r\n\r\n", ""},
        {"5\r\nhello\r\n0\r\n\r\n", "hello"},
        {"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world"},
        {"A\r\n0123456789\r\n000\r\n\r\n", "0123456789"},
        {"a;name=value\r\n0123456789\r\n0;last\r\n\r\n", "0123456789"},
        {"3 ;x\r\nabc\r\n0\r\n\r\n", "abc"},
        {"3\t; x = \"q\"\r\nabc\r\n0\r\n\r\n", "abc"},
        {"3\r\na\r\n\r\n0\r\nX-Sum: 1\r\nOther:\r\n\r\n", "a\r\n"},
        {"1\r\n\0\r\n0\r\n\r\n", ""}, /* a NUL in the data is data (checked by length below) */
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(ok); i++) {
        size_t len = strlen(ok[i].in);
        if (i == FB_ARRAY_SIZE(ok) - 1)
            len = 11;
        for (size_t step = 1; step <= len; step++) {
            fb_buf_t out;
            size_t used;
            ASSERT_EQ(decode(ok[i].in, len, step, 1024, &out, &used), 1);
            ASSERT_EQ(used, len);
            if (i == FB_ARRAY_SIZE(ok) - 1)
                ASSERT(out.len == 1 && out.data[0] == '\0');
            else
                ASSERT_STR_EQ(fb_buf_str(&out), ok[i].body);
            fb_buf_free(&out);
        }
    }

    /* What follows the body is not used, and later feeds use nothing. */
    const char *two = "1\r\nx\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    fb_http_chunked_t c;
    fb_buf_t out;
    size_t used;
    fb_http_chunked_init(&c);
    fb_buf_init(&out, 64);
    ASSERT_EQ(fb_http_chunked_feed(&c, two, strlen(two), &out, &used), 1);
    ASSERT_EQ(used, 11);
    ASSERT_EQ(fb_http_chunked_feed(&c, "more", 4, &out, &used), 1);
    ASSERT_EQ(used, 0);
    ASSERT_STR_EQ(fb_buf_str(&out), "x");
    fb_buf_free(&out);

    /* Framing errors. */
    static const char *const bad[] = {
        "zz\r\n",                 /* not hexadecimal */
        "\r\n",                   /* no size */
        " 5\r\nhello\r\n",        /* white space before the size */
        "5 \r\nhello\r\n",        /* white space after the size, no extension */
        "-5\r\n",                 /* a sign */
        "0x5\r\n",                /* a prefix */
        "5\nhello\r\n",           /* bare LF after the size */
        "5\r\rhello\r\n",         /* CR CR */
        "5\r\nhelloX\r\n",        /* data longer than announced */
        "5\r\nhello\n0\r\n\r\n",  /* bare LF after the data */
        "10000000000000000\r\n",  /* 2^64: more than 64 bits */
        "5;a\x01\r\n",            /* a control character in an extension */
        "5;a\nhello",             /* bare LF in an extension */
        "0\r\n\n",                /* bare LF as the final line */
        "0\r\nX-Sum : 1\r\n\r\n", /* white space before a trailer's colon */
        "0\r\n X-Sum: 1\r\n\r\n", /* obs-fold */
        "0\r\n: 1\r\n\r\n",       /* no trailer name */
        "0\r\nX-Sum\r\n\r\n",     /* no colon */
        "0\r\nX: a\x7f\r\n\r\n",  /* DEL in a trailer value */
        "0\r\nX: 1\n\r\n",        /* bare LF ending a trailer */
        "0\r\n\r\r",              /* no LF at the very end */
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(bad); i++) {
        size_t len = strlen(bad[i]);
        for (size_t step = 1; step <= len; step++) {
            ASSERT_EQ(decode(bad[i], len, step, 1024, &out, &used), FB_EPROTO);
            fb_buf_free(&out);
        }
    }
    /* An error sticks. */
    fb_http_chunked_init(&c);
    fb_buf_init(&out, 64);
    ASSERT_EQ(fb_http_chunked_feed(&c, "g", 1, &out, &used), FB_EPROTO);
    ASSERT_EQ(fb_http_chunked_feed(&c, "0\r\n\r\n", 5, &out, &used), FB_EPROTO);
    fb_buf_free(&out);
    return 0;
}

TEST_IMPL(http_chunked_limits)
{
    fb_buf_t out;
    size_t used;
    /* The decoded body is bounded by the buffer's maximum, whatever the framing around it. */
    const char *in = "3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n";
    ASSERT_EQ(decode(in, strlen(in), 100, 6, &out, &used), 1);
    ASSERT_STR_EQ(fb_buf_str(&out), "abcdef");
    fb_buf_free(&out);
    ASSERT_EQ(decode(in, strlen(in), 100, 5, &out, &used), FB_ETOOBIG);
    ASSERT_NULL(out.data); /* freed, as fb_buf_append does */

    /* Size lines and the trailer section are bounded too. */
    char line[FB_HTTP_CHUNK_LINE_MAX + 16];
    memset(line, '0', sizeof(line)); /* leading zeros: no overflow, only the length */
    ASSERT_EQ(decode(line, sizeof(line), sizeof(line), 64, &out, &used), FB_EPROTO);
    fb_buf_free(&out);
    memset(line, 'x', sizeof(line));
    memcpy(line, "1;", 2);
    ASSERT_EQ(decode(line, sizeof(line), 7, 64, &out, &used), FB_EPROTO);
    fb_buf_free(&out);

    /* Extensions are bounded over the whole body, not only per line: one byte of data per
     * chunk with a long extension each is refused once they pass the total. */
    fb_buf_t ext;
    fb_buf_init(&ext, 4 * FB_HTTP_CHUNK_EXT_TOTAL_MAX);
    char one[600];
    memset(one, 0, sizeof(one));
    memcpy(one, "1;", 2);
    memset(one + 2, 'e', 500);
    memcpy(one + 502, "\r\nx\r\n", 6);
    while (ext.len < FB_HTTP_CHUNK_EXT_TOTAL_MAX + 1024)
        ASSERT_OK(fb_buf_puts(&ext, one));
    ASSERT_OK(fb_buf_puts(&ext, "0\r\n\r\n"));
    ASSERT_EQ(decode(ext.data, ext.len, 4096, 1 << 20, &out, &used), FB_EPROTO);
    fb_buf_free(&out);
    /* The same extensions on fewer chunks, under the total: decoded. */
    fb_buf_reset(&ext);
    for (int i = 0; i < 8; i++)
        ASSERT_OK(fb_buf_puts(&ext, one));
    ASSERT_OK(fb_buf_puts(&ext, "0\r\n\r\n"));
    ASSERT_EQ(decode(ext.data, ext.len, 4096, 1 << 20, &out, &used), 1);
    ASSERT_STR_EQ(fb_buf_str(&out), "xxxxxxxx");
    fb_buf_free(&out);
    fb_buf_free(&ext);

    fb_buf_t trailer;
    fb_buf_init(&trailer, 4 * FB_HTTP_TRAILER_MAX);
    ASSERT_OK(fb_buf_puts(&trailer, "0\r\n"));
    while (trailer.len < FB_HTTP_TRAILER_MAX + 64)
        ASSERT_OK(
            fb_buf_puts(&trailer, "X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"));
    ASSERT_OK(fb_buf_puts(&trailer, "\r\n"));
    ASSERT_EQ(decode(trailer.data, trailer.len, 4096, 64, &out, &used), FB_EPROTO);
    fb_buf_free(&out);
    fb_buf_free(&trailer);

    /* A chunk of the largest size is read as far as the buffer allows. */
    in = "ffffffffffffffff\r\nabc";
    ASSERT_EQ(decode(in, strlen(in), 100, 2, &out, &used), FB_ETOOBIG);
    ASSERT_EQ(decode(in, strlen(in), 100, 64, &out, &used), 0);
    ASSERT_STR_EQ(fb_buf_str(&out), "abc");
    fb_buf_free(&out);
    return 0;
}
