/* SPDX-License-Identifier: MIT */
/*
 * fuzz_email.c - libFuzzer target for the e-mail adapter's pure pieces
 * (adapters/email/email_msg.c): the address check, header values and the whole message.
 *
 * The input is the address, the subject and the body at once. Besides the sanitizers' checks it
 * enforces the contract: an accepted address is 1..254 printable ASCII bytes with one '@' part
 * and none of the bytes that could end an SMTP command or a header (space, CR, LF, '<', '>', ',',
 * quotes, '(', ')', ';', ':', '\\'); a header value is accepted only without control characters
 * and then holds no CR or LF but its folds ("\r\n "), each line at most 75 bytes once encoded;
 * a built message has CRLF line ends only, no line over 998 bytes, and exactly one empty line
 * (the end of the headers).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../adapters/email/email_msg.h"
#include "frichebot/buf.h"
#include "frichebot/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_address(const char *s)
{
    if (!fb_email_addr_valid(s))
        return;
    size_t n = strlen(s);
    if (n == 0 || n > FB_EMAIL_ADDR_MAX || !strchr(s, '@'))
        abort();
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c >= 0x7f || strchr("<>,\"()[];:\\", c))
            abort();
    }
}

static void check_header(const char *s)
{
    fb_buf_t b;
    fb_buf_init(&b, 1u << 20);
    int rc = fb_email_header_value(&b, s);
    bool controls = false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            controls = true;
    if (rc == 0) {
        if (controls)
            abort(); /* a CR, LF or other control character got through */
        const char *v = fb_buf_str(&b);
        for (const char *p = v; *p; p++) {
            if ((*p == '\r' && (p[1] != '\n' || p[2] != ' ')) || (*p == '\n' && p[-1] != '\r'))
                abort();
        }
        if (strncmp(v, "=?UTF-8?B?", 10) == 0) {
            for (const char *line = v; line;) {
                const char *next = strstr(line, "\r\n ");
                size_t len = next ? (size_t)(next - line) : strlen(line);
                if (len > 75)
                    abort();
                line = next ? next + 3 : NULL;
            }
        }
    } else if (rc != FB_EINVAL && rc != FB_ETOOBIG) {
        abort();
    }
    fb_buf_free(&b);
}

static void check_message(const char *to, const char *subject, const char *body)
{
    fb_buf_t b;
    fb_buf_init(&b, 1u << 22);
    fb_email_msg_t m = {
        .from = "bot@example.org",
        .from_name = "Assistant friches",
        .to = fb_email_addr_valid(to) ? to : "marie@example.org",
        .subject = subject,
        .body = body,
        .message_id = "fb.0123456789abcdef.0",
        .date = 1796000000,
    };
    int rc = fb_email_build(&b, &m);
    if (rc == 0) {
        const char *s = fb_buf_str(&b);
        size_t empty = 0, line = 0;
        for (size_t i = 0; i < b.len; i++) {
            if (s[i] == '\0')
                abort();
            if (s[i] == '\r') {
                if (s[i + 1] != '\n')
                    abort();
                if (line == 0)
                    empty++;
                line = 0;
                i++;
                continue;
            }
            if (s[i] == '\n')
                abort(); /* a bare LF */
            if (++line > 998)
                abort();
        }
        if (empty != 1 || line != 0)
            abort();
    } else if (rc != FB_EINVAL && rc != FB_ETOOBIG) {
        abort();
    }
    fb_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 8192)
        return 0;
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    /* The input up to its first NUL is every field at once; after it, the body alone. */
    const char *rest = strlen(s) < size ? s + strlen(s) + 1 : "";
    check_address(s);
    check_header(s);
    check_message(s, s, s);
    if (*rest)
        check_message(s, "Objet", rest);
    free(s);
    return 0;
}
