/* SPDX-License-Identifier: MIT */
/*
 * http_framing.c - strict request framing and the chunked body decoder (RFC 9112, sections 6 and
 * 7.1). See http_framing.h for the contract and docs/internals/HTTP_SERVER.md for why.
 */
#include "io/http_framing.h"

#include <string.h>
#include <strings.h>

#include "frichebot/err.h"

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Trims optional white space (spaces and tabs) from both ends of p[0..*len). */
static const char *trim_ows(const char *p, size_t *len)
{
    size_t n = *len;
    while (n && is_ows(p[0])) {
        p++;
        n--;
    }
    while (n && is_ows(p[n - 1]))
        n--;
    *len = n;
    return p;
}

int fb_http_content_length_parse(const char *p, size_t len, uint64_t *out)
{
    p = trim_ows(p, &len);
    if (len == 0)
        return FB_EPROTO;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return FB_EPROTO;
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return FB_EPROTO; /* more than 64 bits: no body is that long */
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int refuse(fb_http_framing_t *out, const char *why)
{
    out->kind = FB_HTTP_FRAMING_NONE;
    out->length = 0;
    out->why = why;
    return FB_EPROTO;
}

int fb_http_framing_check(const fb_http_field_t *cl, size_t ncl, const fb_http_field_t *te,
                          size_t nte, bool disguised, fb_http_framing_t *out)
{
    memset(out, 0, sizeof(*out));
    if (disguised)
        return refuse(out, "Content-Length or Transfer-Encoding name with white space");
    if (ncl && nte)
        return refuse(out, "both Content-Length and Transfer-Encoding");
    if (nte > 1)
        return refuse(out, "Transfer-Encoding repeated");
    if (nte == 1) {
        size_t n = te[0].len;
        const char *v = trim_ows(te[0].p, &n);
        /* Only "chunked" alone: a list ("gzip, chunked", "chunked, identity") or another coding
         * would need decoding we do not do, or leave the body's end undefined. */
        if (n != 7 || strncasecmp(v, "chunked", 7) != 0)
            return refuse(out, "Transfer-Encoding other than chunked");
        out->kind = FB_HTTP_FRAMING_CHUNKED;
        return 0;
    }
    if (ncl > 1)
        return refuse(out, "Content-Length repeated");
    if (ncl == 1) {
        uint64_t n;
        if (fb_http_content_length_parse(cl[0].p, cl[0].len, &n) != 0)
            return refuse(out, "Content-Length not a plain decimal number");
        out->kind = FB_HTTP_FRAMING_LENGTH;
        out->length = n;
        return 0;
    }
    out->kind = FB_HTTP_FRAMING_NONE;
    return 0;
}

/* ---- Chunked bodies ---- */

enum {
    CK_SIZE,          /* chunk-size: hex digits */
    CK_SIZE_WS,       /* white space after the size: a ';' must follow */
    CK_EXT,           /* chunk-ext, up to CR */
    CK_SIZE_LF,       /* the LF ending the size line */
    CK_DATA,          /* chunk-data */
    CK_DATA_CR,       /* the CR after the data */
    CK_DATA_LF,       /* the LF after the data */
    CK_TRAILER,       /* the start of a trailer field line, or of the final CRLF */
    CK_TRAILER_NAME,  /* a trailer field's name, up to ':' */
    CK_TRAILER_VALUE, /* its value, up to CR */
    CK_TRAILER_LF,    /* the LF ending a trailer field line */
    CK_END_LF,        /* the LF of the final CRLF */
    CK_DONE,
    CK_ERROR,
};

void fb_http_chunked_init(fb_http_chunked_t *c)
{
    memset(c, 0, sizeof(*c));
    c->state = CK_SIZE;
}

static int hex_value(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* RFC 9110 tchar: the characters of a token (field names, extension names). */
static bool is_tchar(unsigned char ch)
{
    if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
        return true;
    return ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* A character allowed inside an extension or a field value: visible ASCII, space, tab, or
 * obs-text (bytes 0x80 and up); never a control character. */
static bool is_text(unsigned char ch)
{
    return ch == '\t' || (ch >= 0x20 && ch != 0x7f);
}

static int chunked_fail(fb_http_chunked_t *c)
{
    c->state = CK_ERROR;
    return FB_EPROTO;
}

int fb_http_chunked_feed(fb_http_chunked_t *c, const char *in, size_t len, fb_buf_t *out,
                         size_t *used)
{
    *used = 0;
    if (c->state == CK_DONE)
        return 1;
    if (c->state == CK_ERROR)
        return FB_EPROTO;
    size_t i = 0;
    while (i < len) {
        unsigned char ch = (unsigned char)in[i];
        switch (c->state) {
        case CK_SIZE: {
            int h = hex_value((char)ch);
            if (h >= 0) {
                if (c->left > (UINT64_MAX >> 4))
                    return chunked_fail(c); /* more than 64 bits */
                c->left = (c->left << 4) | (uint64_t)h;
                c->digits = true;
            } else if (!c->digits) {
                return chunked_fail(c); /* a size line must start with a digit */
            } else if (ch == ';') {
                c->state = CK_EXT;
            } else if (is_ows((char)ch)) {
                c->state = CK_SIZE_WS;
            } else if (ch == '\r') {
                c->state = CK_SIZE_LF;
            } else {
                return chunked_fail(c);
            }
            break;
        }
        case CK_SIZE_WS: /* BWS before ';' is allowed, white space before CRLF is not */
            if (ch == ';')
                c->state = CK_EXT;
            else if (!is_ows((char)ch))
                return chunked_fail(c);
            break;
        case CK_EXT:
            if (ch == '\r')
                c->state = CK_SIZE_LF;
            else if (!is_text(ch) || ++c->ext > FB_HTTP_CHUNK_EXT_TOTAL_MAX)
                return chunked_fail(c);
            break;
        case CK_SIZE_LF:
            if (ch != '\n')
                return chunked_fail(c);
            c->digits = false;
            c->line = 0;
            c->state = c->left ? CK_DATA : CK_TRAILER;
            break;
        case CK_DATA: {
            size_t n = len - i;
            if ((uint64_t)n > c->left)
                n = (size_t)c->left;
            int rc = fb_buf_append(out, in + i, n);
            if (rc != 0) {
                c->state = CK_ERROR;
                return rc; /* FB_ETOOBIG: out is freed */
            }
            c->left -= n;
            i += n;
            if (!c->left)
                c->state = CK_DATA_CR;
            continue; /* i already moved */
        }
        case CK_DATA_CR:
            if (ch != '\r')
                return chunked_fail(c);
            c->state = CK_DATA_LF;
            break;
        case CK_DATA_LF:
            if (ch != '\n')
                return chunked_fail(c);
            c->state = CK_SIZE;
            c->line = 0;
            break;
        case CK_TRAILER:
            if (ch == '\r') {
                c->state = CK_END_LF;
            } else if (is_tchar(ch)) {
                c->state = CK_TRAILER_NAME;
            } else {
                return chunked_fail(c); /* no name, white space first (obs-fold), bare LF */
            }
            break;
        case CK_TRAILER_NAME:
            if (ch == ':')
                c->state = CK_TRAILER_VALUE;
            else if (!is_tchar(ch))
                return chunked_fail(c); /* white space before the colon, among others */
            break;
        case CK_TRAILER_VALUE:
            if (ch == '\r')
                c->state = CK_TRAILER_LF;
            else if (!is_text(ch))
                return chunked_fail(c);
            break;
        case CK_TRAILER_LF:
            if (ch != '\n')
                return chunked_fail(c);
            c->state = CK_TRAILER;
            break;
        case CK_END_LF:
            if (ch != '\n')
                return chunked_fail(c);
            c->state = CK_DONE;
            *used = i + 1;
            return 1;
        default:
            return chunked_fail(c);
        }
        /* Size lines and the trailer section are bounded (the data is bounded by out). */
        if (++c->line > (c->state >= CK_TRAILER ? FB_HTTP_TRAILER_MAX : FB_HTTP_CHUNK_LINE_MAX))
            return chunked_fail(c);
        i++;
    }
    *used = len;
    return 0;
}
