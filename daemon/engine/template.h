/* SPDX-License-Identifier: MIT */
/*
 * template.h - the messages of dialog files: text with interpolations, conditional fragments and
 * lists, rendered to plain text and to HTML.
 *
 * Syntax, inside any message:
 *   {{ expr }}                           the value of an expression (expr.h), as text
 *   {% si expr %} ... {% sinon %} ... {% fin %}     conditional fragment ("if/else/end" accepted)
 *   {% pour x dans expr %} ... {% fin %}            repeat for each element of a JSON array;
 *                                                   x.field reads the element's fields
 * Values as text: strings as-is, numbers in French ("2,5", "3 000"), true/false as "oui"/"non",
 * nsp as "je ne sais pas", arrays joined with ", ", a commune object as its name, null as "".
 * A light markup, for authors: "**gras**", "[texte](https://lien)", lines starting with "- " form
 * a list, blank lines separate paragraphs. Plain output keeps the text readable ("texte
 * (https://lien)", "• " bullets); HTML output escapes every character of text and values (&<>"')
 * and only emits <p>, <br>, <strong>, <a href>, <ul>, <li>, and <h1>-<h3> for the author's lines
 * that start with "# ", "## ", "### " (the roadmap page). Only http(s), mailto: and the site's own
 * "/..." links.
 *
 * Details (the contract the tests pin down):
 * - A {% %} tag alone on its line (only blanks around it) takes its whole line with it, so block
 *   tags can sit on lines of their own without leaving blank lines behind (Jinja's trim_blocks +
 *   lstrip_blocks). {{ }} never does.
 * - Only characters written by the author form markup. Interpolated values are plain text in
 *   both outputs: "**" or "[x](y)" typed by a user stays as typed, and a newline inside a value
 *   is a <br> in HTML. Values lose their control characters other than tab and newline.
 * - Lines are trimmed. Blank lines separate blocks ("\n\n" in plain, </p><p> in HTML);
 *   consecutive non-list lines form one paragraph joined by <br> (plain keeps the newline);
 *   consecutive "- " lines form one <ul>. "**x**" (non-empty, on one line) is <strong>x</strong>
 *   in HTML and "x" in plain; an unbalanced "**" stays as typed.
 * - "[texte](url)" is a link only when the url (trimmed) starts with http://, https:// or mailto:
 *   (any case) and holds no blank, control, quote, backslash, backquote or angle bracket;
 *   otherwise it is left as typed, as text. Plain output shows "texte (url)" (mailto: dropped),
 *   or the url alone when the text is empty or equal to it. Link text holds no links.
 * - Numbers: integers (and reals with no decimals left after rounding to 2) are grouped by
 *   thousands with FB_TEMPLATE_THOUSANDS_SEP; reals keep at most 2 decimals after a comma,
 *   without trailing zeros (2.456 -> "2,46", 2.001 -> "2"). Objects show their "nom", else their
 *   "titre" (roadmap items), else nothing; empty items of an array are skipped.
 */
#ifndef FB_ENGINE_TEMPLATE_H
#define FB_ENGINE_TEMPLATE_H

#include "engine/expr.h"
#include "frichebot/buf.h"

typedef struct fb_template_s fb_template_t;

/**
 * Parses a template whose first byte is at (`line`, `col`) in its file. On failure returns NULL
 * and appends "LINE:COL: message\n" lines to `errors` (unclosed blocks, bad expressions...).
 */
fb_template_t *fb_template_parse(const char *src, int line, int col, fb_buf_t *errors);

void fb_template_free(fb_template_t *t);

/**
 * Renders into `plain` and `html` (either may be NULL). Loop variables shadow names of `env`
 * inside their block. Returns 0 or FB_ETOOBIG (output past FB_TEMPLATE_MAX_OUTPUT or the
 * buffers' own maximum, or too much work in nested loops); then, like a failed fb_buf_append(),
 * both `plain` and `html` have been freed (empty, reusable), so no half message is left.
 */
int fb_template_render(const fb_template_t *t, const fb_expr_env_t *env, fb_buf_t *plain,
                       fb_buf_t *html);

/** Calls `cb` for each NAME and TAG used (loop variables excluded), as fb_expr_names(). */
void fb_template_names(const fb_template_t *t,
                       void (*cb)(void *arg, const char *name, bool is_tag, int line, int col),
                       void *arg);

/**
 * Calls `cb` for each string compared with a name in the template's expressions, as
 * fb_expr_compared_strings(), except names that are loop variables in scope.
 */
void fb_template_compared_strings(const fb_template_t *t,
                                  void (*cb)(void *arg, const char *name, const char *str, int line,
                                             int col),
                                  void *arg);

/** Formats a JSON value as French text (the rules above). Appends to `out`; 0 or FB_ETOOBIG. */
int fb_template_format_value(const json_t *v, fb_buf_t *out);

/* ---- additions ---- */

/**
 * The most bytes one render produces, in the intermediate text and in each output: past it,
 * fb_template_render() returns FB_ETOOBIG (a whole Matrix event is capped at 64 KiB anyway).
 */
#define FB_TEMPLATE_MAX_OUTPUT ((size_t)64 * 1024)

/** The deepest nesting of si/pour blocks fb_template_parse() accepts. */
#define FB_TEMPLATE_MAX_DEPTH 64

/**
 * Inside a `pour` loop, the rank of the current item, 1 for the first ("{% si rang <= 3 %}": the
 * first three); the innermost loop's. Outside any loop it is an ordinary (unknown) name.
 */
#define FB_TEMPLATE_LOOP_RANK "rang"

/**
 * Thousands separator of formatted numbers: a plain space ("3 000"). Not U+202F (narrow
 * no-break space) so that transcripts and answers typed by people compare equal; a message may
 * wrap inside a large number, which chat bubbles rarely do.
 */
#define FB_TEMPLATE_THOUSANDS_SEP " "

/**
 * Same as fb_template_parse() with a full position: `pos.line_col` is the column where the lines
 * after the first start (for a YAML block scalar, its indentation + 1), so positions in the
 * template's later lines are right too. Returns a new template or NULL after appending one
 * "LINE:COL: message\n" line per error to `errors` (which may be NULL).
 */
fb_template_t *fb_template_parse_at(const char *src, fb_expr_pos_t pos, fb_buf_t *errors);

/**
 * Appends the `n` bytes at `s` escaped for HTML text and attribute values (& < > " ' become
 * &amp; &lt; &gt; &quot; &#39;). Returns 0 or FB_ETOOBIG (as fb_buf_append()).
 */
int fb_template_html_escape(const char *s, size_t n, fb_buf_t *out);

#endif /* FB_ENGINE_TEMPLATE_H */
