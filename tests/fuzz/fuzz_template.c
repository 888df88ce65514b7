/* SPDX-License-Identifier: MIT */
/*
 * fuzz_template.c - libFuzzer target for dialog messages (daemon/engine/template.c).
 *
 * Any byte string is parsed as a template and, when it parses, rendered to plain text and HTML
 * against a small fixed session (answers of every type, hostile strings, an array of objects,
 * tags). Besides the sanitizers' checks it enforces the contract: a template is returned exactly
 * when no error is reported and every error line is a well-formed "LINE:COL: message"; a render
 * returns 0 or FB_ETOOBIG (and then leaves both buffers freed); and the HTML is safe: only <p>,
 * <br>, <strong>, <a href="http(s)|mailto:...|/path">, <ul>, <li>, properly nested, every other
 * '<', '>',
 * '"', '\'' and '&' escaped, both outputs valid UTF-8 without NUL.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/utf8.h"
#include "engine/template.h"
#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "frichebot/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const answers_json =
    "{\"surface\": 2500.5, \"nombre\": 3000, \"pollution\": true, \"usage\": \"industriel\", "
    "\"inconnu\": \"__nsp__\", \"liste\": [\"habitat\", \"commerce\"], "
    "\"commune\": {\"nom\": \"Lyon\", \"departement\": \"69\"}, "
    "\"texte\": \"<script>x</script> **b** [l](https://e.fr) ](javascript:x)\\n- y\\n\\nz&'\\\"\", "
    "\"url\": \"https://x.fr/?a=1&b=\\\"2\\\"\", \"mauvaise_url\": \"javascript:alert(1)\", "
    "\"feuille_de_route\": [{\"id\": \"a\", \"titre\": \"<b>A</b>\", \"source\": "
    "\"https://a.fr\"}, {\"id\": \"b\", \"titre\": \"**B**\", \"source\": \"mailto:x@y.fr\"}, "
    "{\"id\": \"c\", \"titre\": \"[C](https://c.fr)\", \"source\": \"javascript:c\"}], "
    "\"n\": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}";

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

/* True when `line` (up to its newline) starts with "DIGITS:DIGITS: ". */
static bool well_formed(const char *line)
{
    const char *p = line;
    for (int field = 0; field < 2; field++) {
        if (*p < '1' || *p > '9')
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
        if (*p++ != ':')
            return false;
    }
    return *p == ' ';
}

static bool starts(const char *s, size_t n, const char *prefix)
{
    size_t k = strlen(prefix);
    return n >= k && memcmp(s, prefix, k) == 0;
}

static bool starts_ci(const char *s, size_t n, const char *prefix)
{
    size_t k = strlen(prefix);
    if (n < k)
        return false;
    for (size_t i = 0; i < k; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != prefix[i])
            return false;
    }
    return true;
}

enum { P = 1, UL, LI, STRONG, A, H1, H2, H3 };

/* Checks that `h` is the HTML subset template.h promises, well nested (the headings h1-h3 of
 * "# " lines, for the roadmap page, at the top level like paragraphs). */
static bool html_ok(const char *h, size_t n)
{
    static const struct {
        const char *text;
        int tag;
        bool close;
    } tags[] = {
        {"<p>", P, false},           {"</p>", P, true},           {"<ul>", UL, false},
        {"</ul>", UL, true},         {"<li>", LI, false},         {"</li>", LI, true},
        {"<strong>", STRONG, false}, {"</strong>", STRONG, true}, {"</a>", A, true},
        {"<h1>", H1, false},         {"</h1>", H1, true},         {"<h2>", H2, false},
        {"</h2>", H2, true},         {"<h3>", H3, false},         {"</h3>", H3, true},
    };
    static const char *const entities[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&#39;"};
    int stack[16];
    int depth = 0;
    size_t i = 0;
    while (i < n) {
        const char *s = h + i;
        size_t left = n - i;
        int top = depth ? stack[depth - 1] : 0;
        if (*s == '<') {
            if (starts(s, left, "<br>")) {
                if (top != P && top != LI && top != STRONG && top != A && top < H1)
                    return false;
                i += 4;
                continue;
            }
            if (starts(s, left, "<a href=\"")) {
                size_t u = i + 9, e = u;
                while (e < n && h[e] != '"') {
                    if (h[e] == '<' || h[e] == '>' || h[e] == '\'' || (unsigned char)h[e] <= ' ')
                        return false;
                    e++;
                }
                if (e + 1 >= n || h[e + 1] != '>')
                    return false;
                bool site = e - u > 1 && h[u] == '/' && h[u + 1] != '/'; /* "/email/" */
                if (!starts_ci(h + u, e - u, "http://") && !starts_ci(h + u, e - u, "https://") &&
                    !starts_ci(h + u, e - u, "mailto:") && !site)
                    return false;
                if ((top != P && top != LI && top != STRONG && top < H1) || depth == 16)
                    return false;
                for (int k = 0; k < depth; k++) {
                    if (stack[k] == A)
                        return false; /* no link inside a link */
                }
                stack[depth++] = A;
                i = e + 2;
                continue;
            }
            size_t k = 0;
            while (k < sizeof(tags) / sizeof(tags[0]) && !starts(s, left, tags[k].text))
                k++;
            if (k == sizeof(tags) / sizeof(tags[0]))
                return false;
            int tag = tags[k].tag;
            if (tags[k].close) {
                if (top != tag)
                    return false;
                depth--;
            } else {
                bool ok = (tag == P || tag == UL || tag >= H1) ? depth == 0
                          : tag == LI
                              ? top == UL
                              : /* strong */ (top == P || top == LI || top == A || top >= H1);
                if (!ok || depth == 16)
                    return false;
                for (int d = 0; d < depth && tag == STRONG; d++) {
                    if (stack[d] == STRONG)
                        return false;
                }
                stack[depth++] = tag;
            }
            i += strlen(tags[k].text);
            continue;
        }
        if (*s == '>' || *s == '"' || *s == '\'')
            return false;
        if (*s == '&') {
            size_t k = 0;
            while (k < 5 && !starts(s, left, entities[k]))
                k++;
            if (k == 5)
                return false;
        }
        if (top == 0 || top == UL)
            return false; /* text only inside p, li, strong, a, h1-h3 */
        i++;
    }
    return depth == 0;
}

static void check_name(void *arg, const char *name, bool is_tag, int line, int col)
{
    (void)arg;
    (void)is_tag;
    if (!name || !*name || line < 2 || col < 1)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!answers) {
        answers = json_loads(answers_json, 0, NULL);
        if (!answers)
            abort();
    }
    char *src = fb_strndup((const char *)data, size);
    fb_buf_t errors;
    fb_buf_init(&errors, 1u << 20);
    fb_expr_pos_t pos = {2, 4, 3};
    fb_template_t *t = fb_template_parse_at(src, pos, &errors);
    if ((t != NULL) == (errors.len > 0))
        abort();
    for (const char *line = fb_buf_str(&errors); *line;) {
        if (!well_formed(line))
            abort();
        const char *nl = strchr(line, '\n');
        if (!nl)
            abort();
        line = nl + 1;
    }
    if (t) {
        fb_expr_env_t env = {lookup, has_tag, NULL};
        fb_buf_t plain, html;
        fb_buf_init(&plain, 1u << 20);
        fb_buf_init(&html, 1u << 20);
        int rc = fb_template_render(t, &env, &plain, &html);
        if (rc == FB_ETOOBIG) {
            if (plain.data || html.data || plain.len || html.len)
                abort();
        } else if (rc != 0) {
            abort();
        } else {
            if (strlen(fb_buf_str(&plain)) != plain.len || strlen(fb_buf_str(&html)) != html.len)
                abort();
            if (fb_utf8_check(fb_buf_str(&plain), plain.len) != plain.len ||
                fb_utf8_check(fb_buf_str(&html), html.len) != html.len)
                abort();
            if (!html_ok(fb_buf_str(&html), html.len))
                abort();
            if (plain.len > FB_TEMPLATE_MAX_OUTPUT || html.len > FB_TEMPLATE_MAX_OUTPUT)
                abort();
        }
        fb_buf_free(&plain);
        fb_buf_free(&html);
        fb_template_names(t, check_name, NULL);
        fb_template_free(t);
    }
    fb_buf_free(&errors);
    fb_free(src);
    return 0;
}
