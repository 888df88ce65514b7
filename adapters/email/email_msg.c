/* SPDX-License-Identifier: MIT */
/*
 * email_msg.c - address validation, header encoding and message building for the e-mail adapter
 * (email_msg.h). Pure: no I/O, no clock (the date is given).
 */
#include "email_msg.h"

#include <ctype.h>
#include <string.h>

#include "common/digest.h"
#include "common/utf8.h"
#include "frichebot/err.h"

#define LOCAL_MAX  64
#define LABEL_MAX  63
#define WORD_MAX   75 /* RFC 2047 2: an encoded-word is at most 75 characters */
#define B64_LINE   76 /* RFC 2045 6.8 */
#define ID_MAX     128
#define ENC_PREFIX "=?UTF-8?B?"

static bool atext(unsigned char c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+/=?^_`{|}~-", c));
}

bool fb_email_addr_valid(const char *addr)
{
    if (!addr)
        return false;
    size_t len = strlen(addr);
    const char *at = strrchr(addr, '@');
    if (len == 0 || len > FB_EMAIL_ADDR_MAX || !at)
        return false;
    size_t local = (size_t)(at - addr);
    if (local == 0 || local > LOCAL_MAX || addr[0] == '.' || addr[local - 1] == '.')
        return false;
    for (size_t i = 0; i < local; i++) {
        unsigned char c = (unsigned char)addr[i];
        if (c == '.') {
            if (addr[i + 1] == '.')
                return false;
        } else if (!atext(c)) {
            return false;
        }
    }
    /* The domain: labels separated by single dots, at least two, the last letters only. */
    const char *d = at + 1;
    size_t labels = 0;
    while (*d) {
        const char *start = d;
        bool alpha_only = true;
        while (*d && *d != '.') {
            unsigned char c = (unsigned char)*d;
            if (!isalnum(c) && c != '-')
                return false;
            if (!isalpha(c))
                alpha_only = false;
            d++;
        }
        size_t n = (size_t)(d - start);
        if (n == 0 || n > LABEL_MAX || start[0] == '-' || start[n - 1] == '-')
            return false;
        labels++;
        if (*d == '.') {
            d++;
            if (!*d)
                return false; /* a trailing dot */
        } else if (!alpha_only || n < 2) {
            return false; /* the top-level label */
        }
    }
    return labels >= 2;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Appends the base64 of in[0..n) (with padding). */
static int put_b64(fb_buf_t *out, const unsigned char *in, size_t n)
{
    char q[4];
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        q[0] = b64[(v >> 18) & 63];
        q[1] = b64[(v >> 12) & 63];
        q[2] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
        q[3] = i + 2 < n ? b64[v & 63] : '=';
        rc = fb_buf_append(out, q, 4);
    }
    return rc;
}

/* True when `s` is valid UTF-8 with no control character at all (C0, DEL, C1). */
static bool header_text_ok(const char *s, bool *ascii)
{
    size_t len = strlen(s);
    *ascii = true;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = fb_utf8_decode((const unsigned char *)s + i, len - i, &cp);
        if (cp == FB_UTF8_BAD || cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f))
            return false;
        if (cp >= 0x80)
            *ascii = false;
        i += n;
    }
    return true;
}

int fb_email_header_value(fb_buf_t *out, const char *text)
{
    bool ascii;
    if (!text || !header_text_ok(text, &ascii))
        return FB_EINVAL;
    /* Plain ASCII goes as is, unless it looks like an encoded-word or is too long for one line:
     * then it is encoded too, so that a receiver never decodes what the user typed. */
    if (ascii && !strstr(text, "=?") && strlen(text) <= 900)
        return fb_buf_puts(out, text);
    /* Each word holds at most 45 bytes of text: 60 base64 characters + 12 of "=?UTF-8?B?"
     * and "?=" = 72 <= 75. Cut only between UTF-8 sequences. */
    size_t len = strlen(text), i = 0;
    int rc = 0;
    bool first = true;
    while (i < len && rc == 0) {
        size_t end = i;
        while (end < len) {
            size_t n = fb_utf8_len((const unsigned char *)text + end, len - end);
            if (end + n - i > 45)
                break;
            end += n;
        }
        if (!first)
            rc = fb_buf_puts(out, "\r\n ");
        if (rc == 0)
            rc = fb_buf_puts(out, ENC_PREFIX);
        if (rc == 0)
            rc = put_b64(out, (const unsigned char *)text + i, end - i);
        if (rc == 0)
            rc = fb_buf_puts(out, "?=");
        first = false;
        i = end;
    }
    return rc;
}

static bool id_ok(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)id[i]) && !strchr("._-", id[i]))
            return false;
    return true;
}

/* Appends the body, its line ends made CRLF, in base64 lines of 76 characters. */
static int put_body(fb_buf_t *out, const char *body)
{
    fb_buf_t crlf;
    fb_buf_init(&crlf, out->max);
    int rc = 0;
    for (const char *p = body; *p && rc == 0; p++) {
        if (*p == '\r')
            continue; /* CRLF and a lone CR become CRLF via the LF, or vanish */
        rc = *p == '\n' ? fb_buf_append(&crlf, "\r\n", 2) : fb_buf_append(&crlf, p, 1);
    }
    const unsigned char *s = (const unsigned char *)fb_buf_str(&crlf);
    size_t n = crlf.len;
    for (size_t i = 0; i < n && rc == 0; i += 57) { /* 57 bytes -> 76 characters */
        rc = put_b64(out, s + i, n - i < 57 ? n - i : 57);
        if (rc == 0)
            rc = fb_buf_puts(out, "\r\n");
    }
    fb_buf_free(&crlf);
    return rc;
}

int fb_email_build(fb_buf_t *out, const fb_email_msg_t *m)
{
    if (!m || !fb_email_addr_valid(m->from) || !fb_email_addr_valid(m->to) || !m->subject ||
        !m->body || !m->message_id || !id_ok(m->message_id) ||
        !fb_utf8_valid_text(m->body, strlen(m->body)))
        return FB_EINVAL;
    int rc = fb_buf_puts(out, "From: ");
    if (rc == 0 && m->from_name && *m->from_name) {
        rc = fb_email_header_value(out, m->from_name);
        if (rc == 0)
            rc = fb_buf_puts(out, " ");
    }
    if (rc == 0)
        rc = fb_buf_printf(out, "<%s>\r\nTo: <%s>\r\nSubject: ", m->from, m->to);
    if (rc == 0)
        rc = fb_email_header_value(out, m->subject);
    if (rc == 0) {
        static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
        static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                             "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
        struct tm tm;
        time_t t = m->date;
        gmtime_r(&t, &tm);
        rc = fb_buf_printf(out, "\r\nDate: %s, %02d %s %04d %02d:%02d:%02d +0000\r\n",
                           days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900,
                           tm.tm_hour, tm.tm_min, tm.tm_sec);
    }
    if (rc == 0)
        rc =
            fb_buf_printf(out, "Message-ID: <%s@%s>\r\n", m->message_id, strrchr(m->from, '@') + 1);
    if (rc == 0)
        rc = fb_buf_puts(out, "MIME-Version: 1.0\r\n"
                              "Content-Type: text/plain; charset=UTF-8\r\n"
                              "Content-Transfer-Encoding: base64\r\n"
                              "Auto-Submitted: auto-generated\r\n"
                              "\r\n");
    if (rc == 0)
        rc = put_body(out, m->body);
    return rc;
}

void fb_email_addr_tag(const char *addr, char out[13])
{
    char lower[FB_EMAIL_ADDR_MAX + 1];
    size_t i = 0;
    for (; addr && addr[i] && i < FB_EMAIL_ADDR_MAX; i++)
        lower[i] = (char)tolower((unsigned char)addr[i]);
    lower[i] = '\0';
    fb_sha256_tag(lower, 3, out);
}

void fb_email_token_hash(const char *token, char out[65])
{
    unsigned char d[32];
    fb_sha256(token, strlen(token), d);
    fb_hex(d, 32, out);
}

bool fb_email_token_valid(const char *s)
{
    if (!s || strlen(s) != FB_EMAIL_TOKEN_LEN)
        return false;
    for (size_t i = 0; i < FB_EMAIL_TOKEN_LEN; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_')
            return false;
    return true;
}
