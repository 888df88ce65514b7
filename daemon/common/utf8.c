/* SPDX-License-Identifier: MIT */
/*
 * utf8.c - the UTF-8 validators over whole strings (see utf8.h; the decoder is inline there).
 */
#include "common/utf8.h"

#include <string.h>

/* True when s[0..len) is valid UTF-8, and with `text` holds no NUL nor C0 but \t \n \r. */
static bool valid(const char *s, size_t len, bool text)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        /* ASCII runs 8 bytes at a time: no high bit set; and for text, no byte below 0x20 (the
         * \t \n \r it allows take the slow path below, which accepts them) */
        while (i + 8 <= len) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            uint64_t m = w & 0x8080808080808080u; /* the bytes to look at, flagged */
            if (text)
                m |= (w - 0x2020202020202020u) & ~w & 0x8080808080808080u;
            if (m) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
                /* straight to the first flagged byte (the lowest address): the bytes before it
                 * are plain ASCII. Exact: a non-ASCII byte is flagged by its own high bit, and
                 * the subtraction only borrows from a byte below 0x20, so no byte below the
                 * first one flagged is. */
                i += (size_t)__builtin_ctzll(m) / 8;
#endif
                break;
            }
            i += 8;
        }
        if (i >= len)
            break;
        uint32_t cp;
        i += fb_utf8_decode(p + i, len - i, &cp);
        if (cp == FB_UTF8_BAD)
            return false;
        if (text && cp < 0x20 && cp != '\t' && cp != '\n' && cp != '\r')
            return false;
    }
    return true;
}

bool fb_utf8_valid(const char *s, size_t len)
{
    return valid(s, len, false);
}

bool fb_utf8_valid_text(const char *s, size_t len)
{
    return valid(s, len, true);
}

size_t fb_utf8_clean_text(char *s)
{
    unsigned char *p = (unsigned char *)s, *out = p;
    size_t changed = 0;
    while (*p) {
        uint32_t cp;
        size_t n = fb_utf8_decode(p, 4, &cp); /* reads nothing past the NUL (utf8.h) */
        if (cp == '\r') {
            /* \r\n: the \n stays; a lone \r (old Mac line ends) becomes one */
            if (p[1] != '\n')
                *out++ = '\n';
            changed++;
        } else if (cp != FB_UTF8_BAD &&
                   ((cp < 0x20 && cp != '\t' && cp != '\n') || (cp >= 0x7F && cp <= 0x9F))) {
            changed++;
        } else {
            memmove(out, p, n);
            out += n;
        }
        p += n;
    }
    *out = '\0';
    return changed;
}

bool fb_utf8_blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n')
            return false;
    return true;
}

/* Walks whole sequences; a NUL byte counts as invalid (expression and template sources are C
 * strings downstream). */
size_t fb_utf8_check(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t k = p[i] ? fb_utf8_len(p + i, len - i) : 0;
        if (k == 0)
            return i;
        i += k;
    }
    return len;
}
