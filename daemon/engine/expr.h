/* SPDX-License-Identifier: MIT */
/*
 * expr.h - the small expression language of dialog files: conditions on answers and tags.
 *
 * Grammar (keywords in French or English, case-insensitive):
 *   expr    := or
 *   or      := and (("ou" | "or") and)*
 *   and     := not (("et" | "and") not)*
 *   not     := ("non" | "not") not | cmp
 *   cmp     := primary (("==" | "!=" | "<" | "<=" | ">" | ">=" | "dans" | "in") primary)?
 *   primary := NUMBER | STRING | "vrai" | "faux" | "true" | "false" | "nsp" | "rien" | "null"
 *            | "[" (expr ("," expr)*)? "]" | "#" TAG | NAME ("." NAME)* | "(" expr ")"
 *            | ("connu" | "known") "(" NAME ("." NAME)* ")"
 *   NUMBER  := digits with an optional "." fraction (no French comma here: "2.5")
 *   STRING  := "..." or '...' with \" \' \\ escapes
 *   NAME    := [a-z_][a-z0-9_]* (an answer's slot, or a field of one: commune.departement)
 *   TAG     := [a-z0-9_]+ (a signal emitted by an answer)
 * Semantics: NAME is the answer's JSON value (null when unanswered); `nsp` is the answer
 * "je ne sais pas"; `#tag` is true when the tag was emitted; `connu(x)` is true when x is answered
 * and is not nsp; comparisons between a number and a non-number are false; `a dans [..]` tests
 * membership, and `"x" dans list_answer` tests a multiple-choice answer; truthiness: false, null,
 * 0, "" and [] are false.
 */
#ifndef FB_ENGINE_EXPR_H
#define FB_ENGINE_EXPR_H

#include <stdbool.h>

#include <jansson.h>

#include "frichebot/buf.h"

typedef struct fb_expr_s fb_expr_t;

/** The JSON value that stands for "je ne sais pas" in answers: the string "__nsp__". */
#define FB_NSP_VALUE "__nsp__"

/**
 * Where names are looked up during evaluation. `lookup` returns the value of a NAME path such as
 * "commune.departement" (borrowed, NULL when absent); `has_tag` tells whether a tag was emitted.
 */
typedef struct fb_expr_env_s {
    const json_t *(*lookup)(void *arg, const char *name);
    bool (*has_tag)(void *arg, const char *tag);
    void *arg;
} fb_expr_env_t;

/**
 * Parses `src`. Positions in errors are computed from (`line`, `col`), the position of `src`'s
 * first byte in its file, so messages read "FILE:LINE:COL: message" once prefixed by the caller
 * with "FILE:". On failure returns NULL and appends "LINE:COL: message\n" lines to `errors`.
 */
fb_expr_t *fb_expr_parse(const char *src, int line, int col, fb_buf_t *errors);

void fb_expr_free(fb_expr_t *e);

/** Evaluates to a new JSON value (never NULL: missing names give JSON null). */
json_t *fb_expr_eval(const fb_expr_t *e, const fb_expr_env_t *env);

/** Evaluates and applies truthiness. */
bool fb_expr_true(const fb_expr_t *e, const fb_expr_env_t *env);

/**
 * Calls `cb` for every NAME (first path component only, e.g. "commune") and every TAG the
 * expression mentions, with `is_tag` telling which, and its position (for `check`'s "undefined
 * slot" errors).
 */
void fb_expr_names(const fb_expr_t *e,
                   void (*cb)(void *arg, const char *name, bool is_tag, int line, int col),
                   void *arg);

#endif /* FB_ENGINE_EXPR_H */
