/* SPDX-License-Identifier: MIT */
/*
 * alloc.c - the only file allowed to call malloc, realloc, free and strdup.
 *
 * Every allocation that fails aborts the process with a message on stderr: a daemon that runs
 * out of memory cannot keep its promises anyway, and aborting keeps every other file free of
 * unreachable NULL checks (Redis zmalloc).
 */
#include "frichebot/alloc.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void oom(size_t n) __attribute__((noreturn));

/* Writes a message with write(2) only (no allocation) and aborts. */
static void oom(size_t n)
{
    char msg[96];
    int len = snprintf(msg, sizeof(msg), "frichebot: out of memory allocating %zu bytes\n", n);
    if (len > 0) {
        ssize_t w = write(STDERR_FILENO, msg, (size_t)len);
        (void)w;
    }
    abort();
}

void *fb_malloc(size_t n)
{
    void *p = malloc(n ? n : 1); /* fb-lint: allow malloc */
    if (!p)
        oom(n);
    return p;
}

void *fb_calloc(size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size)
        oom(SIZE_MAX);
    void *p = calloc(count ? count : 1, size ? size : 1); /* fb-lint: allow calloc */
    if (!p)
        oom(count * size);
    return p;
}

void *fb_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1); /* fb-lint: allow realloc */
    if (!q)
        oom(n);
    return q;
}

char *fb_strdup(const char *s)
{
    if (!s)
        return NULL;
    return fb_strndup(s, strlen(s));
}

char *fb_strndup(const char *s, size_t n)
{
    char *p = fb_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *fb_asprintf(const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        va_end(ap2);
        return fb_strdup("");
    }
    char *p = fb_malloc((size_t)n + 1);
    vsnprintf(p, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return p;
}

void fb_free(void *p)
{
    free(p); /* fb-lint: allow free */
}

void fb__assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "frichebot: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}
