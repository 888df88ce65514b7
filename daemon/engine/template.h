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
 * and only emits <p>, <br>, <strong>, <a href>, <ul>, <li>. Only http(s) and mailto: links.
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
 * inside their block. Returns 0 or FB_ETOOBIG.
 */
int fb_template_render(const fb_template_t *t, const fb_expr_env_t *env, fb_buf_t *plain,
                       fb_buf_t *html);

/** Calls `cb` for each NAME and TAG used (loop variables excluded), as fb_expr_names(). */
void fb_template_names(const fb_template_t *t,
                       void (*cb)(void *arg, const char *name, bool is_tag, int line, int col),
                       void *arg);

/** Formats a JSON value as French text (the rules above). Appends to `out`; 0 or FB_ETOOBIG. */
int fb_template_format_value(const json_t *v, fb_buf_t *out);

#endif /* FB_ENGINE_TEMPLATE_H */
