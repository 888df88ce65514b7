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
 * and is not nsp; `==` and `!=` compare any two values (a number never equals a non-number, and
 * `!=` is always the negation of `==`); the orderings < <= > >= need two numbers or two strings,
 * neither nsp, and are false otherwise; `a dans [..]` tests membership, and `"x" dans list_answer`
 * tests a multiple-choice answer; truthiness: false, null, 0, "", [] and nsp are false.
 *
 * Details (the contract the tests pin down): `et`/`ou` evaluate left to right, stop early and give
 * true/false (not an operand). "Comparisons between a number and a non-number are false" covers
 * `!=` too (`3 != "3"` is false). Numbers compare by value (3 == 3.0); `<` `<=` `>` `>=` also
 * order two strings byte by byte (ISO dates: "2026-05" < "2026-10-01") and are false for every
 * other pair, and whenever one side is nsp; `==` on anything else is JSON equality. `dans` is
 * false when the right side is not a list. nsp is a non-empty string, so it is truthy: write
 * `connu(x)` or `x == nsp` to test it. Names and tags are lowercase (an uppercase letter is an
 * error, not a silent miss). Error messages are in French, like the rest of `check`'s output.
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

/* ---- additions: limits, positions, spans, borrowed evaluation, helpers ---- */

/**
 * The deepest nesting fb_expr_parse() accepts, counting parentheses, lists, `connu(` and each
 * `non`: a hostile expression fails with "expression trop imbriquée" instead of exhausting the
 * stack. The tree is never deeper than this (and/or chains are stored flat).
 */
#define FB_EXPR_MAX_DEPTH 64

/**
 * A position in a dialog file. `line_col` is the column at which lines after the first start:
 * 1 for plain text, the indentation + 1 for a YAML block scalar whose indentation the loader
 * stripped. Columns count UTF-8 characters (a tab is one column).
 */
typedef struct fb_expr_pos_s {
    int line;     /* 1-based */
    int col;      /* 1-based, in characters */
    int line_col; /* column of the first character of every following line */
} fb_expr_pos_t;

/** Moves `pos` past the `n` bytes at `s` ('\n' goes to the next line, at `line_col`). */
void fb_expr_pos_advance(fb_expr_pos_t *pos, const char *s, size_t n);

/**
 * Same as fb_expr_parse() for the `len` bytes at `src` (no NUL terminator needed; a NUL byte is
 * an error), whose first byte is at `pos`. Returns a new expression or NULL after appending
 * exactly one "LINE:COL: message\n" line to `errors` (which may be NULL).
 */
fb_expr_t *fb_expr_parse_span(const char *src, size_t len, fb_expr_pos_t pos, fb_buf_t *errors);

/**
 * Evaluates without copying what it does not have to. Returns the value, never NULL: borrowed
 * from `e` (literals), from `env` (names) or a jansson singleton, with `*owned` set to NULL; or
 * built for the occasion (a list literal), with `*owned` set to the same pointer, a new reference
 * the caller must json_decref(). A borrowed result lives as long as `e` and the env's values.
 * `env` may be NULL (every name is null, every tag absent).
 */
const json_t *fb_expr_eval_borrowed(const fb_expr_t *e, const fb_expr_env_t *env,
                                    json_t **owned /* OUT */);

/**
 * Follows the dotted `path` ("departement", "a.b") down objects from `root` (borrowed; NULL
 * gives NULL). Returns the value found (borrowed) or NULL when a component is missing or a
 * value on the way is not an object. Meant for env lookups: `lookup(answers, "commune.nom")`.
 */
const json_t *fb_expr_lookup_path(const json_t *root, const char *path);

/**
 * Calls `cb` for each string literal `e` compares with a plain NAME (no dotted path): `name ==
 * "x"`, `"x" != name`, `name dans ["x", "y"]` (each string of the list), `"x" dans name` (a
 * multiple-choice answer). `line` and `col` are the string's position. nsp is not a string here.
 * For the loader's check that such strings are option ids of the question.
 */
void fb_expr_compared_strings(const fb_expr_t *e,
                              void (*cb)(void *arg, const char *name, const char *str, int line,
                                         int col),
                              void *arg);

/** True when s[0..n) is a keyword of the language (case-insensitive), so not a usable name. */
bool fb_expr_is_keyword(const char *s, size_t n);

/** Truthiness, as in expressions: NULL, null, false, 0, "" and [] are false; all else is true. */
bool fb_expr_truthy(const json_t *v);

#endif /* FB_ENGINE_EXPR_H */
