/* SPDX-License-Identifier: MIT */
/*
 * test_email.c - the pure pieces of the e-mail adapter (adapters/email/email_msg.c): which
 * addresses pass, header values (RFC 2047 encoded-words, no CR/LF injection), the whole message,
 * tags and tokens. The adapter against a real SMTP server, Redis and daemon is
 * tests/integration/test_email.py.
 */
#include <string.h>

#include <jansson.h>

#include "../../adapters/email/email_msg.h"
#include "common/utf8.h"
#include "features/mailcopy.h"
#include "frichebot/alloc.h"
#include "frichebot/err.h"
#include "task.h"

TEST_IMPL(email_address_validation)
{
    static const char *const good[] = {
        "marie.durand@mairie-exemple.fr", "a@b.fr",
        "x+friche@sous.domaine.gouv.fr",  "o'brien@example.org",
        "UPPER.case@EXAMPLE.COM",         "a!#$%&'*+/=?^_`{|}~-z@example.org",
        "1234@123.example.org",
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(good); i++) {
        if (!fb_email_addr_valid(good[i]))
            fprintf(stderr, "refused: %s\n", good[i]);
        ASSERT(fb_email_addr_valid(good[i]));
    }
    static const char *const bad[] = {
        "",
        "@example.org",
        "marie@",
        "marie",
        "marie@localhost",                          /* one label */
        "marie@example.f",                          /* top-level label of one letter */
        "marie@example.123",                        /* numeric top-level label */
        ".marie@example.org",                       /* leading dot */
        "marie.@example.org",                       /* trailing dot */
        "ma..rie@example.org",                      /* two dots */
        "marie@example..org",                       /* empty label */
        "marie@-example.org",                       /* hyphen at a label's start */
        "marie@example-.org",                       /* and at its end */
        "marie@example.org.",                       /* trailing dot */
        "marie durand@example.org",                 /* space */
        "\"marie\"@example.org",                    /* quoted local part */
        "marie@[192.0.2.1]",                        /* address literal */
        "marie@example.org\r\nBcc: x@evil.example", /* header injection */
        "marie@example.org\nRCPT TO:<x@evil.example>",
        "marie@example.org>",
        "<marie@example.org>",
        "marie@exa_mple.org",
        "marie,paul@example.org",
        "mélanie@example.org", /* non-ASCII (SMTPUTF8 not used) */
        "marie@éxample.fr",
        "a@b@example.org",
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(bad); i++) {
        if (fb_email_addr_valid(bad[i]))
            fprintf(stderr, "accepted: %s\n", bad[i]);
        ASSERT(!fb_email_addr_valid(bad[i]));
    }
    ASSERT(!fb_email_addr_valid(NULL));
    /* Lengths: a local part of 64 passes, 65 does not; a label of 63 passes, 64 does not; a
     * whole address of 254 passes, 255 does not. */
    char buf[300];
    memset(buf, 'a', 64);
    memcpy(buf + 64, "@example.org", sizeof("@example.org"));
    ASSERT(fb_email_addr_valid(buf));
    memset(buf, 'a', 65);
    memcpy(buf + 65, "@example.org", sizeof("@example.org"));
    ASSERT(!fb_email_addr_valid(buf));
    memcpy(buf, "a@", sizeof("a@"));
    memset(buf + 2, 'b', 63);
    memcpy(buf + 65, ".fr", sizeof(".fr"));
    ASSERT(fb_email_addr_valid(buf));
    memcpy(buf, "a@", sizeof("a@"));
    memset(buf + 2, 'b', 64);
    memcpy(buf + 66, ".fr", sizeof(".fr"));
    ASSERT(!fb_email_addr_valid(buf));
    /* 254 = "a@" + 4 labels of 61 + "." each (248) + "fr" + ... built exactly. */
    size_t n = 0;
    buf[n++] = 'a';
    buf[n++] = '@';
    for (int l = 0; l < 4; l++) {
        memset(buf + n, 'c', 61);
        n += 61;
        buf[n++] = '.';
    }
    memcpy(buf + n, "abcd", 4); /* 2 + 4*62 + 4 = 254 */
    n += 4;
    buf[n] = '\0';
    ASSERT_EQ(strlen(buf), 254);
    ASSERT(fb_email_addr_valid(buf));
    buf[n] = 'e';
    buf[n + 1] = '\0';
    ASSERT(!fb_email_addr_valid(buf));
    return 0;
}

/* Decodes standard base64 (with padding) of `in` into `out`; returns the length or -1. */
static int b64_decode(const char *in, size_t len, char *out)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    int n = 0;
    unsigned v = 0, bits = 0;
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '=' || in[i] == '\r' || in[i] == '\n')
            continue;
        const char *p = strchr(t, in[i]);
        if (!p || !in[i])
            return -1;
        v = (v << 6) | (unsigned)(p - t);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (char)((v >> bits) & 0xff);
        }
    }
    out[n] = '\0';
    return n;
}

/* Decodes a header value made of encoded-words (or plain text) back to its text. */
static void decode_words(const char *v, char *out)
{
    out[0] = '\0';
    if (strncmp(v, "=?UTF-8?B?", 10) != 0) {
        snprintf(out, 1024, "%s", v);
        return;
    }
    const char *p = v;
    char *o = out;
    while ((p = strstr(p, "=?UTF-8?B?")) != NULL) {
        p += 10;
        const char *end = strstr(p, "?=");
        int n = b64_decode(p, (size_t)(end - p), o);
        o += n;
        p = end + 2;
    }
}

TEST_IMPL(email_header_values)
{
    fb_buf_t b;
    fb_buf_init(&b, 4096);
    /* Printable ASCII goes as is. */
    ASSERT_OK(fb_email_header_value(&b, "Hello world"));
    ASSERT_STR_EQ(fb_buf_str(&b), "Hello world");
    /* UTF-8 becomes encoded-words, each at most 75 characters, folded with CRLF SP, none
     * splitting a character, and decoding gives the text back. */
    static const char *const texts[] = {
        "Où en est votre projet de friche ?", "Confirmez votre adresse e-mail – assistant friches",
        "ééééééééééééééééééééééééééééééééééééééééééééééééééééééééééé€€€€€€€€€€€€😀😀😀😀😀",
        "=?UTF-8?B?abc?= looks encoded", /* ASCII that looks like a word is encoded too */
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(texts); i++) {
        fb_buf_reset(&b);
        ASSERT_OK(fb_email_header_value(&b, texts[i]));
        const char *v = fb_buf_str(&b);
        ASSERT(strncmp(v, "=?UTF-8?B?", 10) == 0);
        /* Every line (separated by CRLF SP) is one whole word of at most 75 characters. */
        for (const char *line = v; line;) {
            const char *next = strstr(line, "\r\n ");
            size_t len = next ? (size_t)(next - line) : strlen(line);
            ASSERT_LE(len, 75);
            ASSERT(strncmp(line, "=?UTF-8?B?", 10) == 0);
            ASSERT(strncmp(line + len - 2, "?=", 2) == 0);
            /* each word decodes to valid UTF-8 on its own: no split character */
            char one[128];
            int n = b64_decode(line + 10, len - 12, one);
            ASSERT_GE(n, 1);
            ASSERT(fb_utf8_valid(one, (size_t)n));
            line = next ? next + 3 : NULL;
        }
        ASSERT(strchr(v, '\n') == NULL || strstr(v, "\r\n ") != NULL);
        char back[1024];
        decode_words(v, back);
        ASSERT_STR_EQ(back, texts[i]);
    }
    /* Refused: CR, LF, other controls, DEL, C1, invalid UTF-8. Nothing is appended. */
    static const char *const bad[] = {
        "Objet\r\nBcc: x@evil.example",
        "Objet\nBcc: x",
        "Objet\rX",
        "tab\there",
        "nul\x01",
        "del\x7f",
        "c1 \xc2\x85",
        "bad \xc3",
        "overlong \xc0\xaf",
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(bad); i++) {
        fb_buf_reset(&b);
        ASSERT_EQ(fb_email_header_value(&b, bad[i]), FB_EINVAL);
        ASSERT_EQ(b.len, 0);
    }
    ASSERT_EQ(fb_email_header_value(&b, NULL), FB_EINVAL);
    fb_buf_free(&b);
    return 0;
}

TEST_IMPL(email_build_message)
{
    fb_buf_t b;
    fb_buf_init(&b, 65536);
    fb_email_msg_t m = {
        .from = "ne-pas-repondre@friches.example.org",
        .from_name = "Assistant friches",
        .to = "marie.durand@mairie-exemple.fr",
        .subject = "Où en est votre projet ?",
        .body = "Bonjour,\nligne deux\r\n.\n\nfin é",
        .message_id = "fb.9f3c00e1.0",
        .date = 1796000000, /* 2026-11-30 ... UTC */
    };
    ASSERT_OK(fb_email_build(&b, &m));
    const char *s = fb_buf_str(&b);
    ASSERT(strncmp(s, "From: Assistant friches <ne-pas-repondre@friches.example.org>\r\n", 63) ==
           0);
    ASSERT_NOT_NULL(strstr(s, "\r\nTo: <marie.durand@mairie-exemple.fr>\r\n"));
    ASSERT_NOT_NULL(strstr(s, "\r\nSubject: =?UTF-8?B?"));
    ASSERT_NOT_NULL(strstr(s, "\r\nMessage-ID: <fb.9f3c00e1.0@friches.example.org>\r\n"));
    ASSERT_NOT_NULL(strstr(s, "\r\nDate: Mon, 30 Nov 2026 "));
    ASSERT_NOT_NULL(strstr(s, "\r\nContent-Type: text/plain; charset=UTF-8\r\n"));
    ASSERT_NOT_NULL(strstr(s, "\r\nContent-Transfer-Encoding: base64\r\n"));
    ASSERT_NOT_NULL(strstr(s, "\r\nAuto-Submitted: auto-generated\r\n"));
    /* Every line ends in CRLF: no bare LF or CR anywhere; no line over 78 characters. */
    for (const char *p = s; *p; p++) {
        if (*p == '\n')
            ASSERT(p > s && p[-1] == '\r');
        if (*p == '\r')
            ASSERT(p[1] == '\n');
    }
    for (const char *line = s; *line;) {
        const char *e = strstr(line, "\r\n");
        ASSERT_NOT_NULL(e);
        ASSERT_LE((size_t)(e - line), 78);
        line = e + 2;
    }
    /* The body decodes to the text with CRLF line ends. */
    const char *body = strstr(s, "\r\n\r\n") + 4;
    char text[256];
    ASSERT_GT(b64_decode(body, strlen(body), text), 0);
    ASSERT_STR_EQ(text, "Bonjour,\r\nligne deux\r\n.\r\n\r\nfin é");

    /* What is refused: a bad address on either side, a subject with CR/LF, a bad id, a body
     * with a control character. */
    fb_email_msg_t x = m;
    x.to = "marie@example.org\r\nBcc: x@evil.example";
    ASSERT_EQ(fb_email_build(&b, &x), FB_EINVAL);
    x = m;
    x.from = "nobody";
    ASSERT_EQ(fb_email_build(&b, &x), FB_EINVAL);
    x = m;
    x.subject = "Objet\r\nBcc: x@evil.example";
    fb_buf_reset(&b);
    ASSERT_EQ(fb_email_build(&b, &x), FB_EINVAL);
    x = m;
    x.from_name = "Nom\nBcc: x@evil.example";
    fb_buf_reset(&b);
    ASSERT_EQ(fb_email_build(&b, &x), FB_EINVAL);
    x = m;
    x.message_id = "a>b";
    ASSERT_EQ(fb_email_build(&b, &x), FB_EINVAL);
    x = m;
    x.body = "bell \x07";
    ASSERT_EQ(fb_email_build(&b, &x), FB_EINVAL);
    fb_buf_free(&b);
    return 0;
}

TEST_IMPL(email_tags_and_tokens)
{
    char t1[13], t2[13];
    fb_email_addr_tag("Marie.Durand@Example.org", t1);
    fb_email_addr_tag("marie.durand@example.org", t2);
    ASSERT_EQ(strlen(t1), 6);
    ASSERT_STR_EQ(t1, t2); /* case does not change the tag */
    ASSERT(strstr(t1, "marie") == NULL);
    char h[65];
    fb_email_token_hash("abc", h);
    ASSERT_STR_EQ(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    ASSERT(fb_email_token_valid("AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcde"));
    ASSERT(!fb_email_token_valid("AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcd"));
    ASSERT(!fb_email_token_valid("AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abc/e"));
    ASSERT(!fb_email_token_valid(NULL));
    return 0;
}

TEST_IMPL(email_mailcopy_entries)
{
    /* A reminder event's two messages (the reminder, the question again) become one mail with
     * the first one's transaction id; replies and other kinds are not mailed; only web
     * conversations are. */
    json_t *out = json_array();
    json_array_append_new(out, json_string("{\"txn\":\"ab.0\",\"kind\":\"reminder\",\"text\":\"Où "
                                           "en êtes-vous ?\",\"html\":\"\",\"ts\":5}"));
    json_array_append_new(out, json_string("{\"txn\":\"ab.1\",\"kind\":\"reminder\",\"text\":"
                                           "\"Dans quelle commune ?\",\"html\":\"\",\"ts\":5}"));
    json_t *m = fb_mailcopy_entries("web:TOKEN", out);
    ASSERT_NOT_NULL(m);
    ASSERT_EQ(json_array_size(m), 1);
    json_t *e = json_loads(json_string_value(json_array_get(m, 0)), 0, NULL);
    ASSERT_NOT_NULL(e);
    ASSERT_STR_EQ(json_string_value(json_object_get(e, "txn")), "mail.ab.0");
    ASSERT_STR_EQ(json_string_value(json_object_get(e, "kind")), "reminder");
    ASSERT_STR_EQ(json_string_value(json_object_get(e, "text")),
                  "Où en êtes-vous ?\n\nDans quelle commune ?");
    ASSERT_EQ(json_integer_value(json_object_get(e, "ts")), 5);
    json_decref(e);
    json_decref(m);
    ASSERT_NULL(fb_mailcopy_entries("matrix:!room:example.org", out));
    json_t *replies = json_array();
    json_array_append_new(replies, json_string("{\"txn\":\"cd.0\",\"kind\":\"reply\",\"text\":"
                                               "\"Bonjour\",\"html\":\"\",\"ts\":5}"));
    ASSERT_NULL(fb_mailcopy_entries("web:TOKEN", replies));
    /* A reply whose text mimics a reminder's kind is not mailed either. */
    json_array_append_new(replies, json_string("{\"txn\":\"ef.0\",\"kind\":\"reply\",\"text\":"
                                               "\"\\\"kind\\\":\\\"reminder\\\"\",\"html\":\"\","
                                               "\"ts\":5}"));
    ASSERT_NULL(fb_mailcopy_entries("web:TOKEN", replies));
    ASSERT_NULL(fb_mailcopy_entries("web:TOKEN", NULL));
    json_decref(replies);
    json_decref(out);
    return 0;
}
