/* SPDX-License-Identifier: MIT */
/*
 * utf8.h - the daemon's one UTF-8 decoder and validators, used by the engine (folding, answers,
 * expressions, templates, sessions), the log's JSON lines, the router's input checks and the
 * Matrix adapter's JSON repair.
 *
 * Valid means RFC 3629: no overlong form, no surrogate (U+D800..U+DFFF), nothing past U+10FFFF,
 * no sequence cut short by the end of the input. The decoder is inline because text folding calls
 * it for every character of every message. Pure functions, no allocation.
 */
#ifndef FB_COMMON_UTF8_H
#define FB_COMMON_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** The code point fb_utf8_decode() reports for an invalid byte. */
#define FB_UTF8_BAD 0xFFFFFFFFu

/**
 * Decodes the UTF-8 sequence at s[0..len) (len >= 1): sets `*cp` and returns its length (1..4),
 * or sets `*cp` to FB_UTF8_BAD and returns 1 for an invalid, overlong, surrogate or cut-short
 * sequence (so that a caller skipping bad bytes moves one byte on). Reads no byte past the first
 * that is not a continuation byte, so a NUL-terminated string may pass a `len` up to 4.
 */
static inline size_t fb_utf8_decode(const unsigned char *s, size_t len, uint32_t *cp /* OUT */)
{
    uint32_t c = s[0];
    size_t n;
    uint32_t min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xE0) == 0xC0) {
        n = 2;
        min = 0x80;
        c &= 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        n = 3;
        min = 0x800;
        c &= 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        n = 4;
        min = 0x10000;
        c &= 0x07;
    } else {
        *cp = FB_UTF8_BAD;
        return 1;
    }
    if (len < n) {
        *cp = FB_UTF8_BAD;
        return 1;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *cp = FB_UTF8_BAD;
            return 1;
        }
        c = (c << 6) | (s[i] & 0x3Fu);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) {
        *cp = FB_UTF8_BAD;
        return 1;
    }
    *cp = c;
    return n;
}

/** The length (1..4) of the valid UTF-8 sequence at s[0..len) (len >= 1), or 0 when invalid. */
static inline size_t fb_utf8_len(const unsigned char *s, size_t len)
{
    uint32_t cp;
    size_t n = fb_utf8_decode(s, len, &cp);
    return cp == FB_UTF8_BAD ? 0 : n;
}

/** True when s[0..len) is valid UTF-8 (NUL and control characters allowed: callers decide). */
bool fb_utf8_valid(const char *s, size_t len);

/**
 * True when s[0..len) is valid UTF-8 text: no NUL and no C0 control other than \t \n \r (what a
 * user's message may hold).
 */
bool fb_utf8_valid_text(const char *s, size_t len);

/**
 * The one rule for the text of a user's message, whatever the adapter (issue #18): applied by the
 * router to every inbound message, and by an adapter that stores the text before handing it to
 * the router (the web chat's history) so that what it stores is what the router accepts.
 *
 * Cleans the NUL-terminated string `s` in place: removes the C0 controls but \t and \n, DEL and
 * the C1 controls (U+0080..U+009F, which no keyboard types: pasted terminal escapes, legacy
 * encodings read as Latin-1), and turns \r\n and a lone \r into \n. Invalid UTF-8 is left as
 * it is (the validators refuse it). Returns the number of characters removed or replaced (0: `s`
 * is unchanged). Idempotent: cleaning a cleaned text changes nothing.
 */
size_t fb_utf8_clean_text(char *s);

/** True when `s` holds nothing but spaces, \t and \n (or nothing). */
bool fb_utf8_blank(const char *s);

/**
 * What a user is told, in French, when a message held nothing but control characters (cleaned to
 * nothing readable by fb_utf8_clean_text()): the message is refused before anything is stored.
 */
#define FB_TEXT_CONTROLS_ONLY_FR                                                                   \
    "Je n'ai pas pu lire votre message : il ne contient que des caractères de contrôle, "        \
    "invisibles. Pouvez-vous l'écrire à nouveau ?"

/** Returns the offset of the first byte of s[0..len) that is NUL or not valid UTF-8, else `len`. */
size_t fb_utf8_check(const char *s, size_t len);

#endif
