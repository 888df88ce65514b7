/* SPDX-License-Identifier: MIT */
/*
 * buf.h - growable byte buffers with a hard maximum (curl dynbuf).
 *
 * The contents are always NUL-terminated, so text can be used as a C string. When an append
 * would go past the maximum, the buffer is freed and FB_ETOOBIG returned: callers never clean up
 * after a failed append, and nothing grows without bound.
 */
#ifndef FRICHEBOT_BUF_H
#define FRICHEBOT_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct fb_buf_s {
    char *data; /* read-only: NUL-terminated contents, NULL until the first append */
    size_t len; /* read-only: bytes used, not counting the NUL */
    /* private */
    size_t cap; /* bytes allocated */
    size_t max; /* hard maximum of len */
} fb_buf_t;

/** Initializes an empty buffer that will never hold more than `max` bytes. */
void fb_buf_init(fb_buf_t *b, size_t max);
/** Appends `n` bytes. Returns 0, or FB_ETOOBIG after freeing the buffer. */
int fb_buf_append(fb_buf_t *b, const void *p, size_t n);
/** Appends a NUL-terminated string. Same contract as fb_buf_append(). */
int fb_buf_puts(fb_buf_t *b, const char *s);
/** Appends printf-formatted text. Same contract as fb_buf_append(). */
int fb_buf_printf(fb_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/** Appends vprintf-formatted text. Same contract as fb_buf_append(). */
int fb_buf_vprintf(fb_buf_t *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/**
 * Makes room for `n` more bytes in one allocation (never past the maximum), so that appends up to
 * that size do not reallocate step by step. Changes no contents and never fails.
 */
void fb_buf_reserve(fb_buf_t *b, size_t n);
/** Empties the buffer, keeping its memory and maximum. */
void fb_buf_reset(fb_buf_t *b);
/** Frees the memory; the buffer is empty and reusable with the same maximum. */
void fb_buf_free(fb_buf_t *b);
/** Returns the contents as a new string (never NULL, "" when empty) and empties the buffer. */
char *fb_buf_take(fb_buf_t *b);
/** Returns the contents, or "" when nothing was appended; borrowed until the next append. */
const char *fb_buf_str(const fb_buf_t *b);

#endif /* FRICHEBOT_BUF_H */
