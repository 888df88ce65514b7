/* SPDX-License-Identifier: MIT */
/*
 * diag.h - the one collector of `file:line:col: message` errors, used by the configuration parser
 * (io/config.c) and the dialog loader (engine/dialog_load.c) [h2o h2o_configurator_errprintf].
 *
 * A parse records every problem it finds instead of stopping at the first; at the end the errors
 * are sorted by document, line, column and discovery order, and written one per line. At most
 * `max` errors are kept; past that one summary line says so. The summary lines and the stand-in
 * for an overlong message are the caller's (English for operators, French for dialog authors).
 * Single-threaded; nothing here is shared.
 */
#ifndef FB_COMMON_DIAG_H
#define FB_COMMON_DIAG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "frichebot/buf.h"

/** The words of a collector, static strings. */
typedef struct fb_diag_words_s {
    const char *too_long;    /* stands for a message longer than 4 KiB */
    const char *unlisted;    /* the line written when the output buffer is full */
    const char *stopped;     /* the overflow line, before the maximum kept ("stopped after ") */
    const char *stopped_end; /* the overflow line, after that number ("" or " premières") */
} fb_diag_words_t;

struct fb__diag_entry; /* private */

/** A collector. Initialize with fb_diag_init(), release with fb_diag_free(). */
typedef struct fb_diag_s {
    /* private */
    const fb_diag_words_t *_words;
    struct fb__diag_entry *_errs;
    size_t _n, _cap, _max;
    bool _overflow;            /* more than _max errors were added */
    const char *_dropped_name; /* position of the first error dropped */
    unsigned long _dropped_line, _dropped_col;
} fb_diag_t;

/** Initializes `d` to keep at most `max` errors, written with `words` (borrowed, static). */
void fb_diag_init(fb_diag_t *d, size_t max, const fb_diag_words_t *words);

/**
 * Records an error at 1-based `line`:`col` of document `name` (borrowed: it must live until
 * fb_diag_flush()); `doc` orders documents (lower first). Past `max` errors only the position of
 * the first dropped one is kept.
 */
void fb_diag_addv(fb_diag_t *d, const char *name, int doc, unsigned long line, unsigned long col,
                  const char *fmt, va_list ap) __attribute__((format(printf, 6, 0)));

/** Same as fb_diag_addv() with variadic arguments. */
void fb_diag_add(fb_diag_t *d, const char *name, int doc, unsigned long line, unsigned long col,
                 const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/** The number of errors kept so far. */
size_t fb_diag_count(const fb_diag_t *d);

/** True when at least one error was added (kept or dropped). */
bool fb_diag_failed(const fb_diag_t *d);

/**
 * Sorts the errors and appends them to `out` (may be NULL), one `name:line:col: message` line
 * each, then forgets them (the collector stays usable). If `out` reaches its maximum it is emptied
 * by fb_buf (its contract) and the `unlisted` line is written instead; after the errors, the
 * `stopped` line when some were dropped. Both summary lines are at `summary`:1:1 when `summary` is
 * not NULL; otherwise `unlisted` is at the failing error's file, 1:1, and `stopped` at the
 * position of the first dropped error.
 */
void fb_diag_flush(fb_diag_t *d, fb_buf_t *out, const char *summary);

/** Frees what `d` holds (the errors not flushed are lost). */
void fb_diag_free(fb_diag_t *d);

#endif
