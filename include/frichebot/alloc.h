/* SPDX-License-Identifier: MIT */
/*
 * alloc.h - memory allocation that never returns NULL.
 *
 * frichebot aborts with a logged message when memory runs out (Redis zmalloc, h2o
 * h2o_mem_alloc): this removes thousands of unreachable error branches. Raw malloc, free,
 * realloc and strdup are banned outside daemon/common/alloc.c (tests/lint/banned.sh checks it).
 */
#ifndef FRICHEBOT_ALLOC_H
#define FRICHEBOT_ALLOC_H

#include <stddef.h>

/** Allocates `n` bytes; aborts on exhaustion. Never returns NULL (n == 0 gives a valid pointer). */
void *fb_malloc(size_t n);
/** Allocates `count * size` zeroed bytes; aborts on exhaustion or overflow. */
void *fb_calloc(size_t count, size_t size);
/** Resizes `p` (which may be NULL) to `n` bytes; aborts on exhaustion. */
void *fb_realloc(void *p, size_t n);
/** Returns a new copy of the NUL-terminated `s`, or NULL when `s` is NULL. */
char *fb_strdup(const char *s);
/** Returns a new NUL-terminated copy of the first `n` bytes of `s`. */
char *fb_strndup(const char *s, size_t n);
/** Returns a new string built like printf; aborts on exhaustion. */
char *fb_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/** Frees `p` (NULL is fine). */
void fb_free(void *p);

/** Frees `p` and sets it to NULL (curl curlx_safefree). */
#define FB_FREE(p)                                                                                 \
    do {                                                                                           \
        fb_free(p);                                                                                \
        (p) = NULL;                                                                                \
    } while (0)

/** Number of elements of a true array. */
#define FB_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/** Always-on assertion for invariants (never for input validation): logs file:line and aborts. */
#define FB_ASSERT(expr)                                                                            \
    do {                                                                                           \
        if (!(expr))                                                                               \
            fb__assert_fail(#expr, __FILE__, __LINE__);                                            \
    } while (0)

void fb__assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));

#endif /* FRICHEBOT_ALLOC_H */
