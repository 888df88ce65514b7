/* SPDX-License-Identifier: MIT */
/*
 * json.h - a fast reader and writer of compact JSON text, for the values the router reads and
 * writes at every message (the session: docs/internals/ENGINE.md, "Performance").
 *
 * They read and write the same values as jansson's json_loadb(s, n, 0, ...) and
 * json_dumps(v, JSON_COMPACT), several times faster: one pass over the bytes, no stream layer,
 * strings checked as UTF-8 by common/utf8.c and handed to jansson unchecked. The contract, pinned
 * by tests/unit/test_json.c and fuzz_json.c (which compare both with jansson):
 * - fb_json_loadb() accepts what json_loadb() accepts with no flags, and gives an equal value:
 *   an object or an array at the top (blanks around it, nothing else), RFC 8259 syntax, UTF-8
 *   strings without \u0000, surrogate pairs joined, lone surrogates refused, integers within
 *   json_int_t (else refused), reals that do not overflow, at most FB_JSON_MAX_DEPTH levels
 *   (every value counts one, scalars too), a repeated key keeping its first position and its
 *   last value.
 * - fb_json_dump() writes exactly the bytes of json_dumps(v, JSON_COMPACT) for an object or an
 *   array, in insertion order, and fails where it fails (a string that is not UTF-8). It differs
 *   where json_dumps() would write what cannot be read back: it refuses a value deeper than
 *   FB_JSON_MAX_DEPTH, and writes a scalar at the top (json_dumps() returns NULL without
 *   JSON_ENCODE_ANY). Reals are written as jansson 2.14 does (%.17g); jansson 2.14.1 and later
 *   may use shorter digits for the same value (its dtoa): the values stay equal, the bytes may
 *   not, and test_json.c then fails on purpose.
 */
#ifndef FB_COMMON_JSON_H
#define FB_COMMON_JSON_H

#include <stddef.h>

#include <jansson.h>

#include "frichebot/buf.h"

/* jansson's own limit: every value counts one level, scalars too. */
#define FB_JSON_MAX_DEPTH JSON_PARSER_MAX_DEPTH

/** Parses s[0..n): a new value, or NULL when json_loadb(s, n, 0, ...) would refuse it. */
json_t *fb_json_loadb(const char *s, size_t n);

/**
 * A string value's shared JSON string, when the caller has one equal to s[0..n) (borrowed), else
 * NULL.
 */
typedef json_t *(*fb_json_intern_fn)(void *arg, const char *s, size_t n);

/**
 * fb_json_loadb(), but each string value (not key) that `intern` knows is its shared string
 * (a new reference) instead of a new one: no allocation for the strings a session repeats (the
 * dialog's state ids, option ids...). The shared strings must then be treated as read-only.
 */
json_t *fb_json_loadb_interned(const char *s, size_t n, fb_json_intern_fn intern, void *arg);

/**
 * Appends the compact JSON of `v` to `out`. Returns 0, FB_EINVAL (a string that is not UTF-8, or
 * nesting deeper than FB_JSON_MAX_DEPTH) or FB_ETOOBIG (the buffer's maximum: `out` is then
 * freed, as by a failed fb_buf_append()).
 */
int fb_json_dump(const json_t *v, fb_buf_t *out);

#endif
