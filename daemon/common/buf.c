/* SPDX-License-Identifier: MIT */
/*
 * buf.c - bounded growable buffers (see buf.h for the contract).
 */
#include "frichebot/buf.h"

#include <stdio.h>
#include <string.h>

#include "frichebot/alloc.h"
#include "frichebot/err.h"

void fb_buf_init(fb_buf_t *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

/* Makes room for `n` more bytes plus the NUL. Frees and returns FB_ETOOBIG past the maximum. */
static int reserve(fb_buf_t *b, size_t n)
{
    if (n > b->max || b->len > b->max - n) {
        fb_buf_free(b);
        return FB_ETOOBIG;
    }
    size_t need = b->len + n + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    if (cap > b->max + 1)
        cap = b->max + 1;
    b->data = fb_realloc(b->data, cap);
    b->cap = cap;
    return 0;
}

int fb_buf_append(fb_buf_t *b, const void *p, size_t n)
{
    int rc = reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int fb_buf_puts(fb_buf_t *b, const char *s)
{
    return fb_buf_append(b, s, strlen(s));
}

int fb_buf_vprintf(fb_buf_t *b, const char *fmt, va_list ap)
{
    /* Straight into the free room (the NUL's byte included) when the text fits: one pass, the
     * usual case; else the length first, then room for it. */
    size_t room = b->data ? b->cap - b->len : 0;
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(room ? b->data + b->len : NULL, room, fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        if (room)
            b->data[b->len] = '\0'; /* whatever was written past it does not count */
        return FB_EINVAL;
    }
    if ((size_t)n < room) {
        if ((size_t)n > b->max || b->len > b->max - (size_t)n) {
            fb_buf_free(b); /* as reserve() past the maximum */
            return FB_ETOOBIG;
        }
        b->len += (size_t)n;
        return 0;
    }
    if (room)
        b->data[b->len] = '\0';
    int rc = reserve(b, (size_t)n);
    if (rc)
        return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int fb_buf_printf(fb_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = fb_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void fb_buf_reserve(fb_buf_t *b, size_t n)
{
    size_t room = b->max - b->len; /* len never passes max */
    size_t need = b->len + (n < room ? n : room) + 1;
    if (need <= b->cap)
        return;
    b->data = fb_realloc(b->data, need);
    b->cap = need;
    b->data[b->len] = '\0';
}

void fb_buf_reset(fb_buf_t *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void fb_buf_free(fb_buf_t *b)
{
    FB_FREE(b->data);
    b->len = 0;
    b->cap = 0;
}

char *fb_buf_take(fb_buf_t *b)
{
    char *s = b->data ? b->data : fb_strdup("");
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return s;
}

const char *fb_buf_str(const fb_buf_t *b)
{
    return b->data ? b->data : "";
}
