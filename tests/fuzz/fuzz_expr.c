/* SPDX-License-Identifier: MIT */
/*
 * fuzz_expr.c - libFuzzer target for the expression language (daemon/engine/expr.c).
 *
 * Any byte string is parsed as an expression (as a span, so NUL bytes and missing terminators
 * are exercised too), then evaluated against a small fixed session: answers of every type, an
 * array of objects, "je ne sais pas", two tags. Besides the sanitizers' own checks it enforces
 * the contract: an expression is returned exactly when no error is reported, a failure reports
 * exactly one well-formed "LINE:COL: message" line that no input can split, evaluation never
 * returns NULL, and names come with a position inside the source.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/utf8.h"
#include "engine/expr.h"
#include "engine/template.h"
#include "frichebot/alloc.h"
#include "frichebot/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const answers_json =
    "{\"surface\": 2500.5, \"nombre\": 3000, \"zero\": 0, \"pollution\": true, \"usage\": "
    "\"industriel\", \"date\": \"2026-05-01\", \"inconnu\": \"__nsp__\", \"vide\": \"\", "
    "\"liste\": [\"habitat\", \"commerce\", 3], \"commune\": {\"nom\": \"Lyon\", "
    "\"departement\": \"69\"}, \"feuille_de_route\": [{\"id\": \"a\", \"titre\": \"<b>A</b>\"}, "
    "{\"id\": \"b\", \"titre\": \"B & \\\"C\\\"\", \"n\": 2.25}]}";

static json_t *answers;

static const json_t *lookup(void *arg, const char *name)
{
    (void)arg;
    return fb_expr_lookup_path(answers, name);
}

static bool has_tag(void *arg, const char *tag)
{
    (void)arg;
    return !strcmp(tag, "site_industriel") || !strcmp(tag, "grand_site");
}

/* Parses "DIGITS:DIGITS: " at p; returns the position after it or NULL. */
static const char *position(const char *p, long *line, long *col)
{
    long v[2];
    for (int i = 0; i < 2; i++) {
        if (*p < '1' || *p > '9')
            return NULL;
        v[i] = 0;
        while (*p >= '0' && *p <= '9')
            v[i] = v[i] * 10 + (*p++ - '0');
        if (*p++ != ':')
            return NULL;
    }
    *line = v[0];
    *col = v[1];
    return *p == ' ' ? p + 1 : NULL;
}

static void check_name(void *arg, const char *name, bool is_tag, int line, int col)
{
    (void)is_tag;
    const int *first_line = arg;
    if (!name || !*name || line < *first_line || col < 1)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!answers) {
        answers = json_loads(answers_json, 0, NULL);
        if (!answers)
            abort();
    }
    fb_expr_env_t env = {lookup, has_tag, NULL};
    fb_buf_t errors;
    fb_buf_init(&errors, 1u << 16);
    fb_expr_pos_t pos = {3, 7, 5};
    fb_expr_t *e = fb_expr_parse_span((const char *)data, size, pos, &errors);
    bool parsed = e != NULL;
    if (parsed == (errors.len > 0))
        abort();
    if (!e) {
        long line, col;
        const char *msg = position(fb_buf_str(&errors), &line, &col);
        const char *nl = strchr(fb_buf_str(&errors), '\n');
        if (!msg || line < 3 || !nl || nl[1] != '\0' || nl == msg)
            abort(); /* exactly one well-formed line */
    } else {
        json_t *v = fb_expr_eval(e, &env);
        if (!v)
            abort();
        fb_buf_t text;
        fb_buf_init(&text, 1u << 16);
        if (fb_template_format_value(v, &text) == 0 &&
            fb_utf8_check(fb_buf_str(&text), text.len) != text.len)
            abort();
        fb_buf_free(&text);
        json_t *own;
        const json_t *b = fb_expr_eval_borrowed(e, &env, &own);
        if (!b || !json_equal(b, v) || (own && own != b))
            abort();
        if (fb_expr_true(e, &env) != fb_expr_truthy(v))
            abort();
        json_decref(own);
        json_decref(v);
        (void)fb_expr_true(e, NULL);
        int first_line = 3;
        fb_expr_names(e, check_name, &first_line);
        fb_expr_free(e);
    }
    fb_buf_free(&errors);

    /* The NUL-terminated entry point agrees with the span one on what it sees. */
    char *s = fb_strndup((const char *)data, size);
    fb_expr_t *e2 = fb_expr_parse(s, 1, 1, NULL);
    if (strlen(s) == size && (e2 != NULL) != parsed)
        abort();
    fb_expr_free(e2);
    fb_free(s);
    return 0;
}
