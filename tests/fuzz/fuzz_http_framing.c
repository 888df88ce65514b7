/* SPDX-License-Identifier: MIT */
/*
 * fuzz_http_framing.c - libFuzzer target for what the daemon itself makes of untrusted HTTP and
 * websocket input: the request framing rules and the chunked body decoder
 * (daemon/io/http_framing.c), and the web chat's decoding of a websocket text message into a
 * chat message (fb_web_frame_parse, adapters/web/web_util.c). libwebsockets' own parsing is not
 * ours to fuzz; these are the layers between it and the handlers.
 *
 * The first byte picks the layer (its value modulo 3), the rest is that layer's input:
 *   0  framing: lines "c:VALUE" (a Content-Length field line), "t:VALUE" (Transfer-Encoding),
 *      "d" (a disguised name seen); checked against the rules stated in http_framing.h.
 *   1  chunked: byte 1 sets the body's maximum, byte 2 the size of the pieces; the rest is the
 *      body, decoded in pieces and in one go: both must agree (result, body, bytes used), and an
 *      accepted body must re-encode to what was used.
 *   2  websocket: byte 1 sets the longest text; the rest is the message, decoded and checked
 *      against fb_web_frame_t's contract.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../adapters/web/web_util.h"
#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "frichebot/err.h"
#include "io/http_framing.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define FIELDS_MAX 8

static bool ows(char c)
{
    return c == ' ' || c == '\t';
}

/* The Content-Length rule restated independently: OWS, digits, OWS, and no more than 64 bits
 * (checked here by comparing the number printed back with the digits, leading zeros dropped). */
static void check_content_length(const char *p, size_t len)
{
    uint64_t n = 0;
    int rc = fb_http_content_length_parse(p, len, &n);
    size_t a = 0, b = len;
    while (a < b && ows(p[a]))
        a++;
    while (b > a && ows(p[b - 1]))
        b--;
    bool digits = b > a;
    for (size_t i = a; i < b; i++)
        digits = digits && p[i] >= '0' && p[i] <= '9';
    if (!digits) {
        CHECK(rc == FB_EPROTO);
        return;
    }
    while (b - a > 1 && p[a] == '0')
        a++;
    char back[24];
    int bn = snprintf(back, sizeof(back), "%llu", (unsigned long long)n);
    if (rc == 0)
        CHECK((size_t)bn == b - a && memcmp(back, p + a, b - a) == 0);
    else
        CHECK(rc == FB_EPROTO && b - a >= 20); /* only an overflow refuses digits */
}

static void fuzz_framing(const char *in, size_t len)
{
    fb_http_field_t cl[FIELDS_MAX], te[FIELDS_MAX];
    size_t ncl = 0, nte = 0;
    bool disguised = false;
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(in + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - in) : len;
        const char *line = in + pos;
        size_t llen = end - pos;
        if (llen >= 2 && line[1] == ':' && (line[0] == 'c' || line[0] == 't')) {
            fb_http_field_t f = {line + 2, llen - 2};
            if (line[0] == 'c' && ncl < FIELDS_MAX)
                cl[ncl++] = f;
            else if (line[0] == 't' && nte < FIELDS_MAX)
                te[nte++] = f;
            check_content_length(f.p, f.len);
        } else if (llen == 1 && line[0] == 'd') {
            disguised = true;
        }
        pos = end + 1;
    }
    fb_http_framing_t fr;
    int rc = fb_http_framing_check(cl, ncl, te, nte, disguised, &fr);
    CHECK(rc == 0 || rc == FB_EPROTO);
    CHECK((rc != 0) == (fr.why != NULL));
    if (rc != 0) {
        CHECK(fr.kind == FB_HTTP_FRAMING_NONE);
        return;
    }
    CHECK(!disguised);
    switch (fr.kind) {
    case FB_HTTP_FRAMING_NONE:
        CHECK(ncl == 0 && nte == 0);
        break;
    case FB_HTTP_FRAMING_LENGTH: {
        CHECK(ncl == 1 && nte == 0);
        uint64_t n;
        CHECK(fb_http_content_length_parse(cl[0].p, cl[0].len, &n) == 0 && n == fr.length);
        break;
    }
    case FB_HTTP_FRAMING_CHUNKED: {
        CHECK(ncl == 0 && nte == 1);
        size_t a = 0, b = te[0].len;
        while (a < b && ows(te[0].p[a]))
            a++;
        while (b > a && ows(te[0].p[b - 1]))
            b--;
        CHECK(b - a == 7);
        for (size_t i = 0; i < 7; i++)
            CHECK((te[0].p[a + i] | 0x20) == "chunked"[i]);
        break;
    }
    default:
        CHECK(0);
    }
}

/* Decodes `in` in pieces of `step` bytes. Returns the result; *used: bytes of `in` used. */
static int decode(const char *in, size_t len, size_t step, fb_buf_t *out, size_t *used)
{
    fb_http_chunked_t c;
    fb_http_chunked_init(&c);
    *used = 0;
    int rc = 0;
    for (size_t off = 0; off < len; off += step) {
        size_t n = len - off < step ? len - off : step;
        size_t u = 0;
        rc = fb_http_chunked_feed(&c, in + off, n, out, &u);
        CHECK(u <= n);
        *used += u;
        if (rc != 0) {
            CHECK(rc == 1 || rc == FB_EPROTO || rc == FB_ETOOBIG);
            if (rc == 1) { /* done: nothing more is used */
                size_t again = 1;
                CHECK(fb_http_chunked_feed(&c, in, len, out, &again) == 1 && again == 0);
            }
            return rc;
        }
        CHECK(u == n);
    }
    return rc;
}

static void fuzz_chunked(const uint8_t *in, size_t len)
{
    if (len < 2)
        return;
    size_t max = (size_t)in[0] * 16;
    size_t step = (size_t)in[1] % 17 + 1;
    const char *body = (const char *)in + 2;
    len -= 2;
    fb_buf_t whole, pieces;
    fb_buf_init(&whole, max);
    fb_buf_init(&pieces, max);
    size_t used_whole, used_pieces;
    int rc_whole = decode(body, len, len ? len : 1, &whole, &used_whole);
    int rc_pieces = decode(body, len, step, &pieces, &used_pieces);
    CHECK(rc_whole == rc_pieces);
    if (rc_whole != FB_ETOOBIG) {
        CHECK(whole.len == pieces.len &&
              (whole.len == 0 || !memcmp(whole.data, pieces.data, whole.len)));
        CHECK(whole.len <= max);
    }
    if (rc_whole == 1) {
        CHECK(used_whole == used_pieces && used_whole <= len);
        /* The body used ends with the final CRLF, and holds at least its decoded data. */
        CHECK(used_whole >= 5 && body[used_whole - 2] == '\r' && body[used_whole - 1] == '\n');
        CHECK(used_whole >= whole.len + 5);
    }
    if (rc_whole == 0)
        CHECK(used_whole == len && used_pieces == len);
    fb_buf_free(&whole);
    fb_buf_free(&pieces);
}

static void fuzz_websocket(const uint8_t *in, size_t len)
{
    if (len < 1)
        return;
    size_t max = (size_t)in[0] * 4;
    fb_web_frame_t f;
    fb_web_frame_parse((const char *)in + 1, len - 1, max, &f);
    CHECK((f.error != NULL) == (f.message != NULL));
    switch (f.type) {
    case FB_WEB_FRAME_NONE:
    case FB_WEB_FRAME_UNKNOWN:
        CHECK(f.error != NULL && f.id == NULL && f.text == NULL);
        break;
    case FB_WEB_FRAME_HELLO:
    case FB_WEB_FRAME_PING:
        CHECK(f.text == NULL);
        break;
    case FB_WEB_FRAME_MESSAGE:
    case FB_WEB_FRAME_CHOICE:
        if (f.error) {
            CHECK(f.id == NULL && f.text == NULL);
            CHECK(f.error_id == NULL || fb_web_id_valid(f.error_id));
            break;
        }
        CHECK(fb_web_id_valid(f.id) && f.text != NULL);
        CHECK(strlen(f.text) == f.text_len && f.text_len <= max);
        CHECK(f.type == FB_WEB_FRAME_CHOICE ? fb_web_id_valid(f.choice) : f.text_len > 0);
        break;
    default:
        CHECK(0);
    }
    CHECK(f.doc != NULL || f.type == FB_WEB_FRAME_NONE);
    fb_web_frame_free(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    switch (data[0] % 3) {
    case 0:
        fuzz_framing((const char *)data + 1, size - 1);
        break;
    case 1:
        fuzz_chunked(data + 1, size - 1);
        break;
    default:
        fuzz_websocket(data + 1, size - 1);
        break;
    }
    return 0;
}
