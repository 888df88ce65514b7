/* SPDX-License-Identifier: MIT */
/*
 * diag.c - the `file:line:col: message` error collector (see diag.h).
 */
#include "common/diag.h"

#include <stdlib.h>

#include "frichebot/alloc.h"

struct fb__diag_entry {
    const char *name;        /* document, borrowed */
    int doc;                 /* order of the documents */
    unsigned long line, col; /* 1-based */
    size_t seq;              /* discovery order, to keep the sort stable */
    char *msg;
};

void fb_diag_init(fb_diag_t *d, size_t max, const fb_diag_words_t *words)
{
    *d = (fb_diag_t){._words = words, ._max = max};
}

void fb_diag_addv(fb_diag_t *d, const char *name, int doc, unsigned long line, unsigned long col,
                  const char *fmt, va_list ap)
{
    if (d->_n >= d->_max) {
        if (!d->_overflow) {
            d->_overflow = true;
            d->_dropped_name = name;
            d->_dropped_line = line;
            d->_dropped_col = col;
        }
        return;
    }
    if (d->_n == d->_cap) {
        d->_cap = d->_cap ? d->_cap * 2 : 16;
        d->_errs = fb_realloc(d->_errs, d->_cap * sizeof(*d->_errs));
    }
    fb_buf_t b;
    fb_buf_init(&b, 4096);
    if (fb_buf_vprintf(&b, fmt, ap) != 0)
        (void)fb_buf_puts(&b, d->_words->too_long);
    d->_errs[d->_n] = (struct fb__diag_entry){name, doc, line, col, d->_n, fb_buf_take(&b)};
    d->_n++;
}

void fb_diag_add(fb_diag_t *d, const char *name, int doc, unsigned long line, unsigned long col,
                 const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fb_diag_addv(d, name, doc, line, col, fmt, ap);
    va_end(ap);
}

size_t fb_diag_count(const fb_diag_t *d)
{
    return d->_n;
}

bool fb_diag_failed(const fb_diag_t *d)
{
    return d->_n > 0 || d->_overflow;
}

/* qsort order: document, line, column, then discovery order. */
static int cmp_entry(const void *a, const void *b)
{
    const struct fb__diag_entry *x = a, *y = b;
    if (x->doc != y->doc)
        return x->doc < y->doc ? -1 : 1;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->col != y->col)
        return x->col < y->col ? -1 : 1;
    return x->seq < y->seq ? -1 : (x->seq > y->seq);
}

void fb_diag_flush(fb_diag_t *d, fb_buf_t *out, const char *summary)
{
    if (d->_n > 1)
        qsort(d->_errs, d->_n, sizeof(*d->_errs), cmp_entry);
    for (size_t i = 0; i < d->_n && out; i++) {
        const struct fb__diag_entry *e = &d->_errs[i];
        if (fb_buf_printf(out, "%s:%lu:%lu: %s\n", e->name, e->line, e->col, e->msg) != 0) {
            (void)fb_buf_printf(out, "%s:1:1: %s\n", summary ? summary : e->name,
                                d->_words->unlisted);
            out = NULL;
        }
    }
    if (d->_overflow && out) {
        (void)fb_buf_printf(out, "%s:%lu:%lu: %s%d%s\n", summary ? summary : d->_dropped_name,
                            summary ? 1ul : d->_dropped_line, summary ? 1ul : d->_dropped_col,
                            d->_words->stopped, (int)d->_max, d->_words->stopped_end);
    }
    for (size_t i = 0; i < d->_n; i++)
        FB_FREE(d->_errs[i].msg);
    d->_n = 0;
}

void fb_diag_free(fb_diag_t *d)
{
    for (size_t i = 0; i < d->_n; i++)
        FB_FREE(d->_errs[i].msg);
    FB_FREE(d->_errs);
    d->_n = d->_cap = 0;
}
