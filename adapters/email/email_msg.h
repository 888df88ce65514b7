/* SPDX-License-Identifier: MIT */
/*
 * email_msg.h - the pure pieces of the e-mail adapter: address validation, RFC 2047 header
 * encoding, the whole message (RFC 5322 headers, a text/plain UTF-8 body in base64) and the
 * confirmation token. Nothing here does I/O; tests/unit/test_email.c tests every function and
 * tests/fuzz/fuzz_email.c fuzzes the address check and the message builder.
 */
#ifndef FB_EMAIL_MSG_H
#define FB_EMAIL_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "frichebot/buf.h"

/** Longest address accepted (RFC 5321 4.5.3.1.3: a path is 256 octets with its brackets). */
#define FB_EMAIL_ADDR_MAX 254

/** A confirmation token: 32 random bytes (256 bits) in base64url without padding. */
#define FB_EMAIL_TOKEN_LEN 43

/**
 * True when `addr` is an address the daemon will write to: `local@domain`, at most 254 bytes,
 * a dot-atom local part of at most 64 bytes (RFC 5322 3.4.1: letters, digits and
 * !#$%&'*+/=?^_`{|}~- with single dots inside), a domain of at least two labels of letters, digits
 * and inner hyphens (at most 63 bytes each), the last one letters only. Quoted local parts,
 * address literals, comments and non-ASCII addresses are refused: they are legal but rare, and
 * every byte this lets through ends in an SMTP command and a header. So no space, CR, LF, '<',
 * '>', ',' or quote can ever pass.
 */
bool fb_email_addr_valid(const char *addr);

/**
 * Appends `text` as the value of a header field: as is when it is printable ASCII, otherwise as
 * RFC 2047 encoded-words ("=?UTF-8?B?...?=", each at most 75 bytes, never splitting a UTF-8
 * sequence, folded with CRLF SP). Returns 0, FB_EINVAL when `text` is not valid UTF-8 or holds a
 * control character (CR and LF included: no header injection), or FB_ETOOBIG from the buffer.
 */
int fb_email_header_value(fb_buf_t *out, const char *text);

/** What a message is made of. Every string is borrowed. */
typedef struct fb_email_msg_s {
    const char *from;       /* the sender's address (fb_email_addr_valid) */
    const char *from_name;  /* its display name, or NULL */
    const char *to;         /* the recipient's address (fb_email_addr_valid) */
    const char *subject;    /* UTF-8, no control characters */
    const char *body;       /* UTF-8 text; LF or CRLF line ends */
    const char *message_id; /* the part before '@' of the Message-ID: [A-Za-z0-9._-]{1,128} */
    time_t date;            /* the Date header (UTC) */
} fb_email_msg_t;

/**
 * Appends the whole message to `out`: From, To, Subject, Date, Message-ID (the id @ the sender's
 * domain: a resend after a crash carries the same id, which receivers may de-duplicate),
 * MIME-Version, Content-Type text/plain; charset=UTF-8, Content-Transfer-Encoding base64 (safe
 * whatever the line lengths and bytes), Auto-Submitted: auto-generated (RFC 3834: no
 * auto-replies), then the body with CRLF line ends in base64 lines of 76. Returns 0, or
 * FB_EINVAL (an address, the subject, the id or the body refused), or FB_ETOOBIG.
 */
int fb_email_build(fb_buf_t *out, const fb_email_msg_t *m);

/** Writes the log tag of an address: the first 6 hex digits of the SHA-256 of its lower-case
 *  form ("a1b2c3"), never the address. */
void fb_email_addr_tag(const char *addr, char out[13] /* OUT */);

/** Writes `token`'s Redis name: the hex SHA-256 of it (64 digits), so that Redis never holds a
 *  token that confirms an address. */
void fb_email_token_hash(const char *token, char out[65] /* OUT */);

/** True when `s` is FB_EMAIL_TOKEN_LEN base64url characters. */
bool fb_email_token_valid(const char *s);

#endif /* FB_EMAIL_MSG_H */
