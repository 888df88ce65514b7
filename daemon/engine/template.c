/* SPDX-License-Identifier: MIT */
/*
 * template.c - the messages of dialog files (see template.h): a parser from text with {{ }} and
 * {% %} tags to a tree, and a renderer in two passes.
 *
 * Pass 1 walks the tree (conditions, loops, interpolations) into an intermediate text in which
 * every byte remembers whether the author wrote it or it came from a value. Pass 2 applies the
 * light markup to it, once for plain text and once for HTML, and only bytes written by the author
 * can form markup: an answer typed by a user never becomes bold, a link or a list, and in HTML
 * every byte of text is escaped. Pure code; every loop is bounded (blocks nest at most
 * FB_TEMPLATE_MAX_DEPTH deep, loops walk existing arrays, a work budget stops nested loops from
 * multiplying, and every output stops at FB_TEMPLATE_MAX_OUTPUT bytes).
 */
#include "engine/template.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/utf8.h"
#include "frichebot/alloc.h"
#include "frichebot/err.h"

/* Work units one render may spend (one per node visited plus the length of its expression): a
 * bound on nested loops that produce nothing, which the output cap would not stop. */
#define MAX_WORK (1u << 21)

/* Formatting values nests into arrays at most this deep; deeper items are left out. */
#define MAX_VALUE_DEPTH 8

enum tkind { N_TEXT, N_EXPR, N_IF, N_FOR };

struct tnode;

struct tlist {
    struct tnode **items;
    size_t n;
};

struct tnode {
    enum tkind kind;
    char *text; /* N_TEXT: owned, `len` bytes */
    size_t len;
    fb_expr_t *expr;     /* N_EXPR value, N_IF condition, N_FOR array; owned */
    unsigned char links; /* N_EXPR written liens(...) (1) or sources(...) (2), see links_call() */
    size_t cost;         /* work units charged per visit */
    char *var;           /* N_FOR: the loop variable, owned */
    size_t var_len;      /* N_FOR: strlen(var) */
    struct tlist body;   /* N_IF: the "si" part; N_FOR: the loop body */
    struct tlist alt;    /* N_IF: the "sinon" part */
};

struct fb_template_s {
    struct tlist root;
};

/* ---- tree ---- */

static void list_free(struct tlist *l);

/* Frees a node; recursion is bounded by FB_TEMPLATE_MAX_DEPTH. */
static void node_free(struct tnode *n)
{
    fb_free(n->text);
    fb_expr_free(n->expr);
    fb_free(n->var);
    list_free(&n->body);
    list_free(&n->alt);
    fb_free(n);
}

static void list_free(struct tlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        node_free(l->items[i]);
    fb_free(l->items);
    l->items = NULL;
    l->n = 0;
}

static struct tnode *list_add(struct tlist *l, enum tkind kind)
{
    struct tnode *n = fb_calloc(1, sizeof(*n));
    n->kind = kind;
    n->cost = 1;
    l->items = fb_realloc(l->items, (l->n + 1) * sizeof(struct tnode *));
    l->items[l->n++] = n;
    return n;
}

void fb_template_free(fb_template_t *t)
{
    if (!t)
        return;
    list_free(&t->root);
    fb_free(t);
}

/* ---- parser ---- */

enum block { BLK_IF, BLK_ELSE, BLK_END, BLK_FOR };

struct frame {
    struct tnode *node;
    bool in_else;
    bool french; /* opened with "si"/"pour" (messages then say "fin") */
    int line, col;
    char kw[24]; /* the keyword as written, lowercased */
};

struct tparser {
    const char *src;
    size_t len;
    size_t off;        /* position cursor: pos is the position of src[off] */
    fb_expr_pos_t pos; /* (only ever moves forward) */
    fb_template_t *t;
    struct frame stack[FB_TEMPLATE_MAX_DEPTH];
    int depth;
    bool failed;
    bool stop; /* give up on the rest of the source */
    fb_buf_t *errors;
};

/* The position of src[off]; `off` must not be before the previous call's. */
static fb_expr_pos_t pos_at(struct tparser *tp, size_t off)
{
    FB_ASSERT(off >= tp->off);
    fb_expr_pos_advance(&tp->pos, tp->src + tp->off, off - tp->off);
    tp->off = off;
    return tp->pos;
}

static void terror(struct tparser *tp, fb_expr_pos_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void terror(struct tparser *tp, fb_expr_pos_t at, const char *fmt, ...)
{
    tp->failed = true;
    if (!tp->errors)
        return;
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    (void)fb_buf_printf(tp->errors, "%d:%d: %s\n", at.line, at.col, msg);
}

/* The list new nodes go to: the innermost open block's current part, or the root. */
static struct tlist *current(struct tparser *tp)
{
    if (tp->depth == 0)
        return &tp->t->root;
    struct frame *f = &tp->stack[tp->depth - 1];
    return f->in_else ? &f->node->alt : &f->node->body;
}

static void add_text(struct tparser *tp, size_t from, size_t to)
{
    if (to <= from)
        return;
    struct tnode *n = list_add(current(tp), N_TEXT);
    n->text = fb_strndup(tp->src + from, to - from);
    n->len = to - from;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* True when s[0..n) is `word`, ignoring ASCII case. */
static bool word_is(const char *s, size_t n, const char *word)
{
    if (strlen(word) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != word[i])
            return false;
    }
    return true;
}

/* Finds the `close` delimiter ("}}" or "%}") from `from`, skipping over quoted strings so that
 * {{ "}}" }} works; falls back to the first occurrence when a quote is never closed (the
 * expression parser then reports the unterminated string). Returns its offset or len. */
static size_t find_close(const struct tparser *tp, size_t from, char close0)
{
    const char *s = tp->src;
    size_t i = from;
    while (i + 1 < tp->len) {
        if (s[i] == '"' || s[i] == '\'') {
            char q = s[i++];
            while (i < tp->len && s[i] != q)
                i += (s[i] == '\\' && i + 1 < tp->len) ? 2 : 1;
            if (i >= tp->len)
                break;
            i++;
            continue;
        }
        if (s[i] == close0 && s[i + 1] == '}')
            return i;
        i++;
    }
    for (i = from; i + 1 < tp->len; i++) {
        if (s[i] == close0 && s[i + 1] == '}')
            return i;
    }
    return tp->len;
}

/* Parses the expression in src[from..to). NULL after an error (reported). */
static fb_expr_t *parse_expr(struct tparser *tp, size_t from, size_t to, struct tnode *n)
{
    fb_expr_t *e = fb_expr_parse_span(tp->src + from, to - from, pos_at(tp, from), tp->errors);
    if (!e)
        tp->failed = true;
    n->cost = 1 + (to - from);
    return e;
}

/*
 * 1 when src[*from..*to) is "liens( EXPR )" (or "links(...)"): its http(s) addresses become
 * links; 2 when it is "sources( EXPR )": the same, but an address found in the catalogue named
 * "sources" (an item whose `source` is that address) is shown as "titre – organisation". Blanks
 * are allowed around; the span is then narrowed to EXPR. The last ')' closes the call; anything
 * else is a plain expression (0).
 */
static unsigned char links_call(const char *src, size_t *from, size_t *to)
{
    size_t b = *from, e = *to;
    while (b < e && is_space(src[b]))
        b++;
    while (e > b && is_space(src[e - 1]))
        e--;
    unsigned char kind = 0;
    size_t p = b;
    if (e - b >= 7 && (word_is(src + b, 5, "liens") || word_is(src + b, 5, "links"))) {
        kind = 1;
        p = b + 5;
    } else if (e - b >= 9 && word_is(src + b, 7, "sources")) {
        kind = 2;
        p = b + 7;
    }
    if (!kind)
        return 0;
    while (p < e && is_space(src[p]))
        p++;
    if (p >= e || src[p] != '(' || src[e - 1] != ')')
        return 0;
    *from = p + 1;
    *to = e - 1;
    return kind;
}

/* Checks that src[from..to) is blank after the keyword `kw` of a tag. */
static void expect_blank(struct tparser *tp, size_t from, size_t to, const char *kw)
{
    while (from < to && is_space(tp->src[from]))
        from++;
    if (from == to)
        return;
    fb_expr_pos_t at = pos_at(tp, from);
    size_t w = from;
    while (w < to && is_word_char(tp->src[w]))
        w++;
    if ((!strcmp(kw, "sinon") || !strcmp(kw, "else")) &&
        (word_is(tp->src + from, w - from, "si") || word_is(tp->src + from, w - from, "if")))
        terror(tp, at, "« %s %.*s » n'existe pas : placez un bloc {%% si %%} dans le {%% %s %%}",
               kw, (int)(w - from), tp->src + from, kw);
    else
        terror(tp, at, "texte inattendu après « %s »", kw);
}

/* Opens a block: `kw` is its keyword, lowercased. */
static void push(struct tparser *tp, struct tnode *n, fb_expr_pos_t at, const char *kw, bool french)
{
    struct frame *f = &tp->stack[tp->depth++];
    f->node = n;
    f->in_else = false;
    f->french = french;
    f->line = at.line;
    f->col = at.col;
    snprintf(f->kw, sizeof(f->kw), "%s", kw);
}

/* {% pour x dans expr %}: `from` is just after the keyword. */
static void parse_for(struct tparser *tp, struct tnode *n, size_t from, size_t to, const char *kw)
{
    const char *s = tp->src;
    size_t v = from;
    while (v < to && is_space(s[v]))
        v++;
    size_t ve = v;
    while (ve < to && is_word_char(s[ve]))
        ve++;
    if (ve == v) {
        terror(tp, pos_at(tp, v), "nom de variable attendu après « %s »", kw);
        return;
    }
    bool ok = !(s[v] >= '0' && s[v] <= '9');
    for (size_t i = v; i < ve; i++)
        ok = ok && !(s[i] >= 'A' && s[i] <= 'Z');
    if (!ok) {
        terror(tp, pos_at(tp, v),
               "variable de boucle invalide « %.*s » : minuscules sans accents, chiffres et _",
               (int)(ve - v), s + v);
        return;
    }
    if (fb_expr_is_keyword(s + v, ve - v)) {
        terror(tp, pos_at(tp, v), "« %.*s » est un mot réservé, pas un nom de variable",
               (int)(ve - v), s + v);
        return;
    }
    size_t d = ve;
    while (d < to && is_space(s[d]))
        d++;
    size_t de = d;
    while (de < to && is_word_char(s[de]))
        de++;
    if (d == ve || !(word_is(s + d, de - d, "dans") || word_is(s + d, de - d, "in"))) {
        terror(tp, pos_at(tp, d), "« %s » attendu après la variable de boucle « %.*s »",
               kw[0] == 'p' ? "dans" : "in", (int)(ve - v), s + v);
        return;
    }
    n->var = fb_strndup(s + v, ve - v);
    n->var_len = ve - v;
    n->expr = parse_expr(tp, de, to, n);
}

/* Handles the block tag whose opener "{%" is at `open` and content is src[from..to). */
static void parse_block(struct tparser *tp, size_t open, size_t from, size_t to)
{
    const char *s = tp->src;
    fb_expr_pos_t at = pos_at(tp, open);
    size_t k = from;
    while (k < to && is_space(s[k]))
        k++;
    size_t ke = k;
    while (ke < to && is_word_char(s[ke]))
        ke++;
    char kw[24];
    snprintf(kw, sizeof(kw), "%.*s", (int)(ke - k < 20 ? ke - k : 20), s + k);
    for (char *c = kw; *c; c++)
        *c = (*c >= 'A' && *c <= 'Z') ? (char)(*c - 'A' + 'a') : *c;
    enum block b;
    bool french = true;
    if (ke == k) {
        terror(tp, at, "si, sinon, fin ou pour attendu après « {%% »");
        return;
    } else if (!strcmp(kw, "si") || !strcmp(kw, "if")) {
        b = BLK_IF;
        french = kw[0] == 's';
    } else if (!strcmp(kw, "sinon") || !strcmp(kw, "else")) {
        b = BLK_ELSE;
    } else if (!strcmp(kw, "fin") || !strcmp(kw, "end")) {
        b = BLK_END;
    } else if (!strcmp(kw, "pour") || !strcmp(kw, "for")) {
        b = BLK_FOR;
        french = kw[0] == 'p';
    } else {
        char what[64];
        snprintf(what, sizeof(what), "%.*s", (int)(ke - k < 40 ? ke - k : 40), s + k);
        terror(tp, at, "bloc inconnu « %s » : si, sinon, fin ou pour attendu", what);
        return;
    }

    if (b == BLK_IF || b == BLK_FOR) {
        if (tp->depth >= FB_TEMPLATE_MAX_DEPTH) {
            terror(tp, at, "blocs trop imbriqués (plus de %d niveaux)", FB_TEMPLATE_MAX_DEPTH);
            tp->stop = true;
            return;
        }
        struct tnode *n = list_add(current(tp), b == BLK_IF ? N_IF : N_FOR);
        if (b == BLK_IF)
            n->expr = parse_expr(tp, ke, to, n);
        else
            parse_for(tp, n, ke, to, kw);
        push(tp, n, at, kw, french);
        return;
    }
    struct frame *top = tp->depth ? &tp->stack[tp->depth - 1] : NULL;
    if (b == BLK_ELSE) {
        if (!top) {
            terror(tp, at, "« %s » sans « si » correspondant", kw);
        } else if (top->node->kind != N_IF) {
            terror(tp, at, "« %s » impossible dans le bloc « %s » de %d:%d", kw, top->kw, top->line,
                   top->col);
        } else if (top->in_else) {
            terror(tp, at, "second « %s » pour le « %s » de %d:%d", kw, top->kw, top->line,
                   top->col);
        } else {
            top->in_else = true;
        }
    } else if (!top) {
        terror(tp, at, "« %s » sans bloc ouvert", kw);
    } else {
        tp->depth--;
    }
    expect_blank(tp, ke, to, kw);
}

/* True when the tag at src[open..end) is alone on its line (only blanks around it); then sets
 * *line_start to where its line starts and *next to just after its line's end. */
static bool alone_on_line(const struct tparser *tp, size_t text_start, size_t open, size_t end,
                          size_t *line_start, size_t *next)
{
    const char *s = tp->src;
    size_t b = open;
    while (b > text_start && (s[b - 1] == ' ' || s[b - 1] == '\t'))
        b--;
    if (b > 0 && s[b - 1] != '\n')
        return false;
    size_t e = end;
    while (e < tp->len && (s[e] == ' ' || s[e] == '\t' || s[e] == '\r'))
        e++;
    if (e < tp->len && s[e] != '\n')
        return false;
    *line_start = b;
    *next = e < tp->len ? e + 1 : e;
    return true;
}

/* Scans for "{{" and "{%", turning what lies between into text nodes and each tag into a node or a
 * block boundary. Keeps going after an error so that every error is reported, except after
 * "blocks nested too deeply" (the rest would only be consequences). Returns the tree or NULL. */
fb_template_t *fb_template_parse_at(const char *src, fb_expr_pos_t pos, fb_buf_t *errors)
{
    struct tparser tp;
    memset(&tp, 0, sizeof(tp));
    tp.src = src;
    tp.len = strlen(src);
    tp.pos = pos;
    tp.errors = errors;
    tp.t = fb_calloc(1, sizeof(*tp.t));

    size_t bad = fb_utf8_check(src, tp.len);
    if (bad < tp.len) {
        terror(&tp, pos_at(&tp, bad), "UTF-8 invalide");
        goto fail;
    }
    size_t text_start = 0, i = 0;
    while (i < tp.len && !tp.stop) {
        const char *o = memchr(src + i, '{', tp.len - i);
        if (!o)
            break;
        size_t open = (size_t)(o - src);
        char kind = open + 1 < tp.len ? src[open + 1] : '\0';
        if (kind != '{' && kind != '%') {
            i = open + 1;
            continue;
        }
        size_t close = find_close(&tp, open + 2, kind == '{' ? '}' : '%');
        if (close >= tp.len) {
            terror(&tp, pos_at(&tp, open), "« {%c » non fermé (il manque « %c} »)", kind,
                   kind == '{' ? '}' : '%');
            break;
        }
        size_t end = close + 2;
        if (kind == '{') {
            add_text(&tp, text_start, open);
            struct tnode *n = list_add(current(&tp), N_EXPR);
            size_t from = open + 2, to = close;
            n->links = links_call(src, &from, &to);
            n->expr = parse_expr(&tp, from, to, n);
            i = text_start = end;
            continue;
        }
        size_t line_start, next;
        if (alone_on_line(&tp, text_start, open, end, &line_start, &next)) {
            add_text(&tp, text_start, line_start);
        } else {
            add_text(&tp, text_start, open);
            next = end;
        }
        parse_block(&tp, open, open + 2, close);
        i = text_start = next;
    }
    if (!tp.stop)
        add_text(&tp, text_start, tp.len);
    for (int d = 0; d < tp.depth && !tp.stop; d++) {
        const struct frame *f = &tp.stack[d];
        fb_expr_pos_t at = {f->line, f->col, 1};
        terror(&tp, at, "bloc {%% %s %%} non fermé (il manque {%% %s %%})", f->kw,
               f->french ? "fin" : "end");
    }
    if (tp.failed)
        goto fail;
    return tp.t;
fail:
    fb_template_free(tp.t);
    return NULL;
}

fb_template_t *fb_template_parse(const char *src, int line, int col, fb_buf_t *errors)
{
    fb_expr_pos_t pos = {line, col, 1};
    return fb_template_parse_at(src, pos, errors);
}

/* ---- names ---- */

struct names_ctx {
    const char *scope[FB_TEMPLATE_MAX_DEPTH]; /* loop variables in scope */
    size_t n;
    void (*cb)(void *arg, const char *name, bool is_tag, int line, int col);
    void *arg;
};

/* Passes a name on unless it is a loop variable in scope. */
static void names_filter(void *arg, const char *name, bool is_tag, int line, int col)
{
    struct names_ctx *c = arg;
    if (!is_tag) {
        if (c->n > 0 && !strcmp(name, FB_TEMPLATE_LOOP_RANK))
            return;
        for (size_t i = 0; i < c->n; i++) {
            if (!strcmp(c->scope[i], name))
                return;
        }
    }
    c->cb(c->arg, name, is_tag, line, col);
}

static void names_list(const struct tlist *l, struct names_ctx *c)
{
    for (size_t i = 0; i < l->n; i++) {
        const struct tnode *n = l->items[i];
        fb_expr_names(n->expr, names_filter, c);
        if (n->kind == N_FOR && c->n < FB_TEMPLATE_MAX_DEPTH) {
            c->scope[c->n++] = n->var;
            names_list(&n->body, c);
            c->n--;
        } else {
            names_list(&n->body, c);
            names_list(&n->alt, c);
        }
    }
}

struct strings_ctx {
    const char *scope[FB_TEMPLATE_MAX_DEPTH]; /* loop variables in scope */
    size_t n;
    void (*cb)(void *arg, const char *name, const char *str, int line, int col);
    void *arg;
};

/* Passes a comparison on unless its name is a loop variable in scope. */
static void strings_filter(void *arg, const char *name, const char *str, int line, int col)
{
    struct strings_ctx *c = arg;
    if (c->n > 0 && !strcmp(name, FB_TEMPLATE_LOOP_RANK))
        return;
    for (size_t i = 0; i < c->n; i++)
        if (!strcmp(c->scope[i], name))
            return;
    c->cb(c->arg, name, str, line, col);
}

static void strings_list(const struct tlist *l, struct strings_ctx *c)
{
    for (size_t i = 0; i < l->n; i++) {
        const struct tnode *n = l->items[i];
        fb_expr_compared_strings(n->expr, strings_filter, c);
        if (n->kind == N_FOR && c->n < FB_TEMPLATE_MAX_DEPTH) {
            c->scope[c->n++] = n->var;
            strings_list(&n->body, c);
            c->n--;
        } else {
            strings_list(&n->body, c);
            strings_list(&n->alt, c);
        }
    }
}

void fb_template_compared_strings(const fb_template_t *t,
                                  void (*cb)(void *arg, const char *name, const char *str, int line,
                                             int col),
                                  void *arg)
{
    struct strings_ctx c;
    memset(&c, 0, sizeof(c));
    c.cb = cb;
    c.arg = arg;
    strings_list(&t->root, &c);
}

void fb_template_names(const fb_template_t *t,
                       void (*cb)(void *arg, const char *name, bool is_tag, int line, int col),
                       void *arg)
{
    struct names_ctx c;
    memset(&c, 0, sizeof(c));
    c.cb = cb;
    c.arg = arg;
    names_list(&t->root, &c);
}

/* ---- values as French text ---- */

/* Appends the decimal digits `d[0..n)` grouped by three with FB_TEMPLATE_THOUSANDS_SEP. */
static int put_grouped(fb_buf_t *out, const char *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && (n - i) % 3 == 0) {
            int rc = fb_buf_puts(out, FB_TEMPLATE_THOUSANDS_SEP);
            if (rc)
                return rc;
        }
        int rc = fb_buf_append(out, d + i, 1);
        if (rc)
            return rc;
    }
    return 0;
}

/* An integer grouped by thousands; the magnitude is taken unsigned so INT64_MIN works. */
static int format_integer(json_int_t v, fb_buf_t *out)
{
    char d[32];
    size_t n = 0;
    unsigned long long m = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    do {
        d[sizeof(d) - 1 - n++] = (char)('0' + m % 10);
        m /= 10;
    } while (m);
    if (v < 0) {
        int rc = fb_buf_puts(out, "-");
        if (rc)
            return rc;
    }
    return put_grouped(out, d + sizeof(d) - n, n);
}

/* A real with at most two decimals, a comma, and no trailing zeros: 2.5 -> "2,5". */
static int format_real(double v, fb_buf_t *out)
{
    char tmp[400];
    if (!isfinite(v))
        return 0;
    int len = snprintf(tmp, sizeof(tmp), "%.2f", v);
    if (len <= 0 || (size_t)len >= sizeof(tmp))
        return 0;
    const char *p = tmp;
    bool neg = *p == '-';
    if (neg)
        p++;
    const char *dot = strchr(p, '.');
    size_t ilen = dot ? (size_t)(dot - p) : strlen(p);
    size_t flen = dot ? strlen(dot + 1) : 0;
    while (flen > 0 && dot[flen] == '0')
        flen--;
    bool zero = flen == 0 && ilen == 1 && p[0] == '0';
    int rc = 0;
    if (neg && !zero)
        rc = fb_buf_puts(out, "-");
    if (!rc)
        rc = put_grouped(out, p, ilen);
    if (!rc && flen > 0) {
        rc = fb_buf_puts(out, ",");
        if (!rc)
            rc = fb_buf_append(out, dot + 1, flen);
    }
    return rc;
}

/* The rules of fb_template_format_value(), `depth` arrays deep. 0 or FB_ETOOBIG. */
static int format_value(const json_t *v, fb_buf_t *out, int depth)
{
    switch (json_typeof(v)) {
    case JSON_NULL:
        return 0;
    case JSON_TRUE:
        return fb_buf_puts(out, "oui");
    case JSON_FALSE:
        return fb_buf_puts(out, "non");
    case JSON_INTEGER:
        return format_integer(json_integer_value(v), out);
    case JSON_REAL:
        return format_real(json_real_value(v), out);
    case JSON_STRING:
        if (!strcmp(json_string_value(v), FB_NSP_VALUE))
            return fb_buf_puts(out, "je ne sais pas");
        return fb_buf_puts(out, json_string_value(v));
    case JSON_OBJECT: {
        const json_t *name = json_object_get(v, "nom");
        if (!json_is_string(name))
            name = json_object_get(v, "titre");
        return json_is_string(name) ? fb_buf_puts(out, json_string_value(name)) : 0;
    }
    case JSON_ARRAY: {
        size_t i;
        const json_t *item;
        bool first = true;
        int rc = 0;
        if (depth >= MAX_VALUE_DEPTH)
            return 0;
        fb_buf_t one; /* each item apart, so that an empty one leaves no ", " behind */
        fb_buf_init(&one, FB_TEMPLATE_MAX_OUTPUT);
        json_array_foreach(v, i, item)
        {
            fb_buf_reset(&one);
            rc = format_value(item, &one, depth + 1);
            if (!rc && one.len && !first)
                rc = fb_buf_puts(out, ", ");
            if (!rc && one.len)
                rc = fb_buf_append(out, one.data, one.len);
            if (rc)
                break;
            first = first && one.len == 0;
        }
        fb_buf_free(&one);
        return rc;
    }
    }
    return 0;
}

int fb_template_format_value(const json_t *v, fb_buf_t *out)
{
    if (!v)
        return 0;
    return format_value(v, out, 0);
}

/* Copies runs of safe bytes at once and the five entities between them. */
int fb_template_html_escape(const char *s, size_t n, fb_buf_t *out)
{
    /* the five bytes that need an entity; runs of other bytes are skipped with one test each */
    static const bool special[256] = {
        ['&'] = true, ['<'] = true, ['>'] = true, ['"'] = true, ['\''] = true};
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        while (i < n && !special[(unsigned char)s[i]])
            i++;
        if (i == n)
            break;
        const char *ent;
        switch (s[i]) {
        case '&':
            ent = "&amp;";
            break;
        case '<':
            ent = "&lt;";
            break;
        case '>':
            ent = "&gt;";
            break;
        case '"':
            ent = "&quot;";
            break;
        case '\'':
            ent = "&#39;";
            break;
        default:
            continue;
        }
        int rc = fb_buf_append(out, s + run, i - run);
        if (!rc)
            rc = fb_buf_puts(out, ent);
        if (rc)
            return rc;
        run = i + 1;
    }
    return fb_buf_append(out, s + run, n - run);
}

/* ---- pass 1: the tree to an intermediate text ---- */

struct binding {
    const char *name;
    size_t len;          /* strlen(name) */
    const json_t *value; /* borrowed from the env or from the loop's array */
};

struct render {
    const fb_expr_env_t *outer; /* the caller's env, may be NULL */
    fb_expr_env_t env;          /* what expressions see: loop variables, then `outer` */
    struct binding scope[2 * FB_TEMPLATE_MAX_DEPTH]; /* each loop: its variable and `rang` */
    size_t n_scope;
    fb_buf_t text; /* the intermediate text */
    fb_buf_t mask; /* one byte per text byte: 1 when it came from a value */
    fb_buf_t tmp;  /* one formatted value */
    size_t work;
};

/* The env lookup during rendering: loop variables shadow the caller's names. */
static const json_t *scope_lookup(void *arg, const char *name)
{
    const struct render *r = arg;
    size_t head = strcspn(name, ".");
    for (size_t i = r->n_scope; i-- > 0;) {
        const char *v = r->scope[i].name;
        if (r->scope[i].len == head && !memcmp(v, name, head))
            return name[head] ? fb_expr_lookup_path(r->scope[i].value, name + head + 1)
                              : r->scope[i].value;
    }
    return r->outer && r->outer->lookup ? r->outer->lookup(r->outer->arg, name) : NULL;
}

static bool scope_has_tag(void *arg, const char *tag)
{
    const struct render *r = arg;
    return r->outer && r->outer->has_tag && r->outer->has_tag(r->outer->arg, tag);
}

/* Appends `n` bytes to the intermediate, marked as the author's (0) or a value's (1). */
static int put(struct render *r, const char *s, size_t n, unsigned char origin)
{
    unsigned char marks[256];
    memset(marks, origin, sizeof(marks));
    int rc = fb_buf_append(&r->text, s, n);
    for (size_t done = 0; !rc && done < n; done += sizeof(marks)) {
        size_t k = n - done < sizeof(marks) ? n - done : sizeof(marks);
        rc = fb_buf_append(&r->mask, marks, k);
    }
    return rc;
}

/* Appends a formatted value, dropping control characters other than tab and newline. `origin`
 * is 1 (a value), or 2 (a value whose http(s) addresses become links: liens(...)). */
static int put_value(struct render *r, const char *s, size_t n, unsigned char origin)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7F) {
            int rc = put(r, s + run, i - run, origin);
            if (rc)
                return rc;
            run = i + 1;
        }
    }
    return put(r, s + run, n - run, origin);
}

/* True for a byte that may be in an address of a sources(...) value: printable ASCII but for
 * the bytes url_ok() refuses (the same run auto_url_end() takes for liens(...)). */
static bool source_url_byte(unsigned char c)
{
    return c > 0x20 && c < 0x7F && c != '"' && c != '\'' && c != '<' && c != '>' && c != '\\' &&
           c != '`';
}

/* The item of the "sources" catalogue whose `source` is s[0..n), or NULL. */
static const json_t *source_named(struct render *r, const char *s, size_t n)
{
    const json_t *all = scope_lookup(r, "sources");
    size_t i;
    const json_t *it;
    json_array_foreach(all, i, it)
    {
        const json_t *u = json_object_get(it, "source");
        if (json_is_string(u) && json_string_length(u) == n && !memcmp(json_string_value(u), s, n))
            return it;
    }
    return NULL;
}

/*
 * A sources(...) value: each http(s) address found in the "sources" catalogue becomes the link
 * [titre – organisation](address), written as the author's link markup around value bytes (so
 * the names are escaped like any value and never read as markup); the rest, unknown addresses
 * included, is a liens(...) value. The address ends as in auto_url_end(): trailing prose
 * punctuation and an unbalanced ')' are not part of it.
 */
static int put_sources(struct render *r, const char *s, size_t n)
{
    size_t lit = 0, i = 0;
    int rc = 0;
    while (i < n && !rc) {
        bool starts = (i == 0 || (unsigned char)s[i - 1] <= 0x20 || s[i - 1] == '(') &&
                      ((n - i > 8 && !strncmp(s + i, "https://", 8)) ||
                       (n - i > 7 && !strncmp(s + i, "http://", 7)));
        if (!starts) {
            i++;
            continue;
        }
        size_t j = i;
        int depth = 0;
        while (j < n && source_url_byte((unsigned char)s[j])) {
            depth += s[j] == '(' ? 1 : s[j] == ')' ? -1 : 0;
            j++;
        }
        for (;;) {
            char c = s[j - 1];
            if (c == '.' || c == ',' || c == ';' || c == ':' || c == '!' || c == '?') {
                j--;
            } else if (c == ')' && depth < 0) {
                depth++;
                j--;
            } else {
                break;
            }
        }
        const json_t *it = source_named(r, s + i, j - i);
        const char *titre = json_string_value(json_object_get(it, "titre"));
        const char *org = json_string_value(json_object_get(it, "organisation"));
        if (!titre || !*titre) {
            i = j > i ? j : i + 1;
            continue; /* unknown: left to the liens(...) pass */
        }
        rc = put_value(r, s + lit, i - lit, 2);
        if (!rc)
            rc = put(r, "[", 1, 0);
        if (!rc)
            rc = put_value(r, titre, strlen(titre), 1);
        if (!rc && org && *org) {
            rc = put(r, " – ", strlen(" – "), 1);
            if (!rc)
                rc = put_value(r, org, strlen(org), 1);
        }
        if (!rc)
            rc = put(r, "](", 2, 0);
        if (!rc)
            rc = put(r, s + i, j - i, 1);
        if (!rc)
            rc = put(r, ")", 1, 0);
        i = lit = j;
    }
    if (!rc)
        rc = put_value(r, s + lit, n - lit, 2);
    return rc;
}

static int render_list(struct render *r, const struct tlist *l);

/*
 * One loop: binds the variable to each item of the array in turn. `rang` is one integer per
 * loop, set to each turn's rank: what the body evaluates borrows it for the evaluation only (a
 * list literal copies it), so no turn sees another's; should anything hold it, the next turn
 * gets a new one.
 */
static int render_for(struct render *r, const struct tnode *n)
{
    json_t *own;
    const json_t *arr = fb_expr_eval_borrowed(n->expr, &r->env, &own);
    int rc = 0;
    json_t *rank = NULL;
    if (json_is_array(arr)) {
        size_t i;
        const json_t *item;
        FB_ASSERT(r->n_scope + 2 <= FB_ARRAY_SIZE(r->scope));
        json_array_foreach(arr, i, item)
        {
            if (++r->work > MAX_WORK) {
                rc = FB_ETOOBIG; /* each turn counts, even one that renders nothing */
                break;
            }
            if (rank && rank->refcount == 1) {
                (void)json_integer_set(rank, (json_int_t)i + 1);
            } else {
                json_decref(rank);
                rank = json_integer((json_int_t)i + 1);
            }
            r->scope[r->n_scope] =
                (struct binding){FB_TEMPLATE_LOOP_RANK, strlen(FB_TEMPLATE_LOOP_RANK), rank};
            r->scope[r->n_scope + 1] = (struct binding){n->var, n->var_len, item};
            r->n_scope += 2;
            rc = render_list(r, &n->body);
            r->n_scope -= 2;
            if (rc)
                break;
        }
    }
    json_decref(rank);
    json_decref(own);
    return rc;
}

/* Renders a list of nodes into the intermediate; recursion bounded by the block depth. */
static int render_list(struct render *r, const struct tlist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        const struct tnode *n = l->items[i];
        int rc = 0;
        r->work += n->cost;
        if (r->work > MAX_WORK)
            return FB_ETOOBIG;
        switch (n->kind) {
        case N_TEXT:
            rc = put(r, n->text, n->len, 0);
            break;
        case N_EXPR: {
            json_t *own;
            const json_t *v = fb_expr_eval_borrowed(n->expr, &r->env, &own);
            fb_buf_reset(&r->tmp);
            rc = fb_template_format_value(v, &r->tmp);
            json_decref(own);
            if (!rc)
                rc = n->links == 2
                         ? put_sources(r, fb_buf_str(&r->tmp), r->tmp.len)
                         : put_value(r, fb_buf_str(&r->tmp), r->tmp.len, n->links ? 2 : 1);
            break;
        }
        case N_IF:
            rc = render_list(r, fb_expr_true(n->expr, &r->env) ? &n->body : &n->alt);
            break;
        case N_FOR:
            rc = render_for(r, n);
            break;
        }
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- pass 2: light markup to plain text or HTML ---- */

/* Texts of up to this many bytes index their markup in a stack array (most messages: a question
 * and its choices); longer ones allocate. */
#define MARKUP_SMALL 512

struct markup {
    const char *s;
    const unsigned char *m; /* 1 where the byte came from a value, 2 from a liens(...) value */
    size_t n;
    /* Next author-written "**", "](" and ")" at or after each offset (n when none); the four
     * tables are NULL when the text has nothing special (markup_index()). */
    uint32_t *next_bold;
    uint32_t *next_mid;
    uint32_t *next_close;
    /* Next offset where inline_run() may have something to do: an author's "**" or "[", or an
     * 'h' of a liens(...) value (n when none); the bytes before it are plain text. */
    uint32_t *next_special;
};

static bool author(const struct markup *k, size_t i, char c)
{
    return i < k->n && !k->m[i] && k->s[i] == c;
}

/* Fills the next_* tables in one backward pass, so that finding a closing "**", "](" or ")"
 * is O(1) and hostile lines full of "[" or "**" stay linear. */
static void markup_index(struct markup *k, uint32_t *small, size_t small_len)
{
    size_t n = k->n;
    /* No '*' nor '[' at all, and no liens(...) byte: nothing is special anywhere, and the other
     * tables are read only at special offsets, so none is built (most messages; memchr() is
     * much cheaper than four tables written per byte). */
    if (!memchr(k->s, '*', n) && !memchr(k->s, '[', n) && !memchr(k->m, 2, n)) {
        k->next_bold = k->next_mid = k->next_close = k->next_special = NULL;
        return;
    }
    /* the four tables in `small` (the caller's stack) when they fit, else one allocation */
    k->next_bold = 4 * (n + 2) <= small_len ? small : fb_malloc(4 * (n + 2) * sizeof(uint32_t));
    k->next_mid = k->next_bold + (n + 2);
    k->next_close = k->next_mid + (n + 2);
    k->next_special = k->next_close + (n + 2);
    uint32_t none = (uint32_t)n;
    k->next_bold[n] = k->next_bold[n + 1] = none;
    k->next_mid[n] = k->next_mid[n + 1] = none;
    k->next_close[n] = k->next_close[n + 1] = none;
    k->next_special[n] = k->next_special[n + 1] = none;
    /* The entries at i + 1 kept in locals (the tables are only written): the same values as
     * reading them back, without a load per table and byte. */
    uint32_t *bold = k->next_bold, *mid = k->next_mid, *close = k->next_close;
    uint32_t *special = k->next_special;
    uint32_t nb = none, nm = none, nc = none, ns = none;
    const char *s = k->s;
    const unsigned char *m = k->m;
    char after = '\0'; /* the author's byte at i + 1; '\0' for a value's byte or the end */
    for (size_t i = n; i-- > 0;) {
        char c = m[i] ? '\0' : s[i]; /* author(k, i, x) is c == x */
        bool pair_star = c == '*' && after == '*';
        if (pair_star)
            nb = (uint32_t)i;
        if (c == ']' && after == '(')
            nm = (uint32_t)i;
        if (c == ')')
            nc = (uint32_t)i;
        if (pair_star || c == '[' || (m[i] == 2 && (s[i] == 'h' || s[i] == 'H')))
            ns = (uint32_t)i;
        bold[i] = nb;
        mid[i] = nm;
        close[i] = nc;
        special[i] = ns;
        after = c;
    }
}

/* Appends text: escaped in HTML, where a newline (from a value) becomes <br>. */
static int emit_text(fb_buf_t *out, bool html, const char *s, size_t n)
{
    if (!html)
        return fb_buf_append(out, s, n);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\n')
            continue;
        int rc = fb_template_html_escape(s + run, i - run, out);
        if (!rc)
            rc = fb_buf_puts(out, "<br>");
        if (rc)
            return rc;
        run = i + 1;
    }
    return fb_template_html_escape(s + run, n - run, out);
}

static bool prefix_ci(const char *s, size_t n, const char *prefix)
{
    size_t p = strlen(prefix);
    return n >= p && word_is(s, p, prefix);
}

/* True for a link target we are willing to emit: http(s):// or mailto:, something after the
 * scheme, no blanks, controls, quotes, angle brackets or backslashes anywhere. */
static bool url_ok(const char *u, size_t n)
{
    if (n == 0 || n > 2048)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)u[i];
        if (c <= 0x20 || c == 0x7F || c == '"' || c == '\'' || c == '<' || c == '>' || c == '\\' ||
            c == '`')
            return false;
    }
    /* and a path of the daemon's own site ("/email/"): same origin, nothing to hijack; "//"
     * would be another host */
    return (prefix_ci(u, n, "https://") && n > 8) || (prefix_ci(u, n, "http://") && n > 7) ||
           (prefix_ci(u, n, "mailto:") && n > 7) || (n > 1 && u[0] == '/' && u[1] != '/');
}

static int inline_run(const struct markup *k, fb_buf_t *out, bool html, size_t b, size_t e,
                      bool links);

/* True for a byte that may end an address found in a liens(...) value: none of the bytes
 * url_ok() refuses, and ASCII only (so "https://x.fr »" stops before the guillemet). */
static bool auto_url_byte(const struct markup *k, size_t i)
{
    unsigned char c = (unsigned char)k->s[i];
    return k->m[i] == 2 && c > 0x20 && c < 0x7F && c != '"' && c != '\'' && c != '<' && c != '>' &&
           c != '\\' && c != '`';
}

/*
 * The end of the http(s) address starting at `i` in a liens(...) value (within [b, e)), or `i`
 * when there is none: it starts a word, runs over value bytes that may be in a URL, and loses
 * its trailing punctuation (". , ; : ! ?", and ')' when unbalanced) as prose would have it.
 */
static size_t auto_url_end(const struct markup *k, size_t i, size_t b, size_t e)
{
    const char *s = k->s;
    if (k->m[i] != 2 || (s[i] != 'h' && s[i] != 'H'))
        return i;
    if (i > b && k->m[i - 1] == 2 && (unsigned char)s[i - 1] > 0x20 && s[i - 1] != '(')
        return i; /* inside a word */
    if (!prefix_ci(s + i, e - i, "https://") && !prefix_ci(s + i, e - i, "http://"))
        return i;
    size_t j = i;
    int depth = 0;
    while (j < e && auto_url_byte(k, j)) {
        depth += s[j] == '(' ? 1 : s[j] == ')' ? -1 : 0;
        j++;
    }
    for (;;) {
        char c = s[j - 1];
        if (c == '.' || c == ',' || c == ';' || c == ':' || c == '!' || c == '?') {
            j--;
        } else if (c == ')' && depth < 0) {
            depth++;
            j--;
        } else {
            break;
        }
    }
    if (!url_ok(s + i, j - i) || prefix_ci(s + i, j - i, "mailto:"))
        return i;
    return j;
}

/* An address found in a liens(...) value: a link in HTML, as is in plain text. */
static int emit_auto_link(fb_buf_t *out, bool html, const char *u, size_t un)
{
    if (!html)
        return fb_buf_append(out, u, un);
    int rc = fb_buf_puts(out, "<a href=\"");
    if (!rc)
        rc = fb_template_html_escape(u, un, out);
    if (!rc)
        rc = fb_buf_puts(out, "\">");
    if (!rc)
        rc = fb_template_html_escape(u, un, out);
    if (!rc)
        rc = fb_buf_puts(out, "</a>");
    return rc;
}

/* [text](url): text is k->s[tb..te), the url u[0..un). */
static int emit_link(const struct markup *k, fb_buf_t *out, bool html, size_t tb, size_t te,
                     const char *u, size_t un)
{
    const char *shown = u;
    size_t shown_len = un;
    if (prefix_ci(u, un, "mailto:")) {
        shown += 7;
        shown_len -= 7;
    }
    int rc;
    if (html) {
        rc = fb_buf_puts(out, "<a href=\"");
        if (!rc)
            rc = fb_template_html_escape(u, un, out);
        if (!rc)
            rc = fb_buf_puts(out, "\">");
        if (!rc)
            rc = te > tb ? inline_run(k, out, html, tb, te, false)
                         : fb_template_html_escape(shown, shown_len, out);
        if (!rc)
            rc = fb_buf_puts(out, "</a>");
        return rc;
    }
    /* Plain: "texte (url)", or the url alone when the text is empty or the url itself. */
    fb_buf_t t;
    fb_buf_init(&t, FB_TEMPLATE_MAX_OUTPUT);
    rc = inline_run(k, &t, false, tb, te, false);
    if (rc)
        return rc;
    bool same = t.len == 0 || (t.len == shown_len && !memcmp(t.data, shown, shown_len)) ||
                (t.len == un && !memcmp(t.data, u, un));
    if (!same) {
        rc = fb_buf_append(out, fb_buf_str(&t), t.len);
        if (!rc)
            rc = fb_buf_puts(out, " (");
    }
    if (!rc)
        rc = fb_buf_append(out, shown, shown_len);
    if (!rc && !same)
        rc = fb_buf_puts(out, ")");
    fb_buf_free(&t);
    return rc;
}

/* Tries a link whose '[' is at `i`; sets *end past its ')' and returns 1 when it was one, 0 when
 * it is not a (safe) link, or a negative code. */
static int try_link(const struct markup *k, fb_buf_t *out, bool html, size_t i, size_t e,
                    size_t *end)
{
    size_t mid = k->next_mid[i + 1];
    if (mid >= e)
        return 0;
    size_t close = k->next_close[mid + 2];
    if (close >= e)
        return 0;
    size_t ub = mid + 2, ue = close;
    while (ub < ue && (k->s[ub] == ' ' || k->s[ub] == '\t'))
        ub++;
    while (ue > ub && (k->s[ue - 1] == ' ' || k->s[ue - 1] == '\t'))
        ue--;
    if (!url_ok(k->s + ub, ue - ub))
        return 0;
    int rc = emit_link(k, out, html, i + 1, mid, k->s + ub, ue - ub);
    if (rc)
        return rc;
    *end = close + 1;
    return 1;
}

/* Renders k->s[b..e), one line or part of one, with bold and (when `links`) links. The depth of
 * recursion is at most 3: bold holds no bold, link text holds no link. */
static int inline_run(const struct markup *k, fb_buf_t *out, bool html, size_t b, size_t e,
                      bool links)
{
    size_t i = b, lit = b;
    int rc = 0;
    while (i < e && !rc) {
        /* nothing to do before it: plain text, emitted with the run */
        i = k->next_special ? k->next_special[i] : e;
        if (i >= e)
            break;
        if (k->next_bold[i] == i && i + 1 < e) {
            size_t j = k->next_bold[i + 2];
            if (j > i + 2 && j + 1 < e) {
                rc = emit_text(out, html, k->s + lit, i - lit);
                if (!rc && html)
                    rc = fb_buf_puts(out, "<strong>");
                if (!rc)
                    rc = inline_run(k, out, html, i + 2, j, links);
                if (!rc && html)
                    rc = fb_buf_puts(out, "</strong>");
                i = lit = j + 2;
            } else {
                i += 2; /* an unbalanced "**" stays as typed */
            }
            continue;
        }
        if (links && k->m[i] == 2) {
            size_t ue = auto_url_end(k, i, b, e);
            if (ue > i) {
                rc = emit_text(out, html, k->s + lit, i - lit);
                if (!rc)
                    rc = emit_auto_link(out, html, k->s + i, ue - i);
                i = lit = ue;
                continue;
            }
        }
        if (links && author(k, i, '[')) {
            size_t end = 0;
            rc = emit_text(out, html, k->s + lit, i - lit);
            lit = i;
            int got = rc ? rc : try_link(k, out, html, i, e, &end);
            if (got < 0)
                return got;
            if (got) {
                i = lit = end;
                continue;
            }
        }
        i++;
    }
    if (!rc)
        rc = emit_text(out, html, k->s + lit, e - lit);
    return rc;
}

static bool blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Closes the open paragraph or list in HTML. */
static int close_block(fb_buf_t *out, bool html, int *cur)
{
    static const char *const closers[] = {"", "</p>", "</ul>", ""};
    int rc = html ? fb_buf_puts(out, closers[*cur]) : 0;
    *cur = 0;
    return rc;
}

/* Lines of the intermediate (split at author newlines) to paragraphs and lists. */
static int render_markup(const struct markup *k, fb_buf_t *out, bool html)
{
    enum { NONE, PARA, LIST, HEAD };
    int cur = NONE, rc = 0;
    bool any = false, gap = false;
    size_t b = 0;
    while (b <= k->n && !rc) {
        size_t e = b;
        for (;;) { /* the next newline the author wrote (a value's newline is a <br>) */
            const char *nl = e < k->n ? memchr(k->s + e, '\n', k->n - e) : NULL;
            if (!nl) {
                e = k->n;
                break;
            }
            e = (size_t)(nl - k->s);
            if (!k->m[e])
                break;
            e++;
        }
        size_t next = e + 1;
        while (b < e && blank(k->s[b]))
            b++;
        while (e > b && blank(k->s[e - 1]))
            e--;
        if (b == e) {
            rc = close_block(out, html, &cur);
            gap = any;
            b = next;
            continue;
        }
        bool item = author(k, b, '-') && b + 1 < e && !k->m[b + 1] &&
                    (k->s[b + 1] == ' ' || k->s[b + 1] == '\t');
        /* "# ", "## ", "### " written by the author: a heading (the roadmap page's); the
         * plain text keeps the title alone */
        size_t level = 0;
        while (level < 3 && author(k, b + level, '#'))
            level++;
        bool heading = level > 0 && author(k, b + level, ' ');
        if (!html && any)
            rc = fb_buf_puts(out, gap ? "\n\n" : "\n");
        if (heading) {
            b += level + 1;
            while (b < e && blank(k->s[b]))
                b++;
            char tag[8];
            snprintf(tag, sizeof(tag), "<h%zu>", level);
            if (!rc && html)
                rc = close_block(out, html, &cur);
            if (!rc && html)
                rc = fb_buf_puts(out, tag);
            if (!rc)
                rc = inline_run(k, out, html, b, e, true);
            snprintf(tag, sizeof(tag), "</h%zu>", level);
            if (!rc && html)
                rc = fb_buf_puts(out, tag);
            cur = HEAD;
        } else if (item) {
            b += 2;
            while (b < e && blank(k->s[b]))
                b++;
            if (!rc && cur != LIST && html) {
                rc = close_block(out, html, &cur);
                if (!rc)
                    rc = fb_buf_puts(out, "<ul>");
            }
            cur = LIST;
            if (!rc)
                rc = fb_buf_puts(out, html ? "<li>" : "\xE2\x80\xA2 ");
            if (!rc)
                rc = inline_run(k, out, html, b, e, true);
            if (!rc && html)
                rc = fb_buf_puts(out, "</li>");
        } else {
            if (!rc && html) {
                if (cur == PARA) {
                    rc = fb_buf_puts(out, "<br>");
                } else {
                    rc = close_block(out, html, &cur);
                    if (!rc)
                        rc = fb_buf_puts(out, "<p>");
                }
            }
            cur = PARA;
            if (!rc)
                rc = inline_run(k, out, html, b, e, true);
        }
        any = true;
        gap = false;
        b = next;
    }
    if (!rc)
        rc = close_block(out, html, &cur);
    return rc;
}

/* What the intermediate text and its marks get at first (most texts are shorter). */
#define RENDER_RESERVE 1024

/* Renders the markup of `k` into `out` (plain text or HTML), straight after what `out` holds:
 * 0, or FB_ETOOBIG when this render's bytes pass FB_TEMPLATE_MAX_OUTPUT or `out`'s own maximum
 * (the limits an intermediate buffer capped at FB_TEMPLATE_MAX_OUTPUT, then appended, gave). */
static int render_markup_into(const struct markup *k, fb_buf_t *out, bool html)
{
    size_t start = out->len;
    int rc = render_markup(k, out, html);
    if (!rc && out->len - start > FB_TEMPLATE_MAX_OUTPUT)
        rc = FB_ETOOBIG;
    return rc;
}

/* Pass 1 into local buffers capped at FB_TEMPLATE_MAX_OUTPUT, pass 2 straight into the caller's
 * buffers (no copy); a failure never leaves half a message: both buffers are freed instead, as
 * documented. */
int fb_template_render(const fb_template_t *t, const fb_expr_env_t *env, fb_buf_t *plain,
                       fb_buf_t *html)
{
    struct render r;
    memset(&r, 0, sizeof(r));
    r.outer = env;
    r.env.lookup = scope_lookup;
    r.env.has_tag = scope_has_tag;
    r.env.arg = &r;
    fb_buf_init(&r.text, FB_TEMPLATE_MAX_OUTPUT);
    fb_buf_init(&r.mask, FB_TEMPLATE_MAX_OUTPUT);
    fb_buf_init(&r.tmp, FB_TEMPLATE_MAX_OUTPUT);
    /* one allocation each for most texts, instead of doubling from 64 bytes */
    fb_buf_reserve(&r.text, RENDER_RESERVE);
    fb_buf_reserve(&r.mask, RENDER_RESERVE);
    struct markup k;
    memset(&k, 0, sizeof(k));
    uint32_t small[4 * (MARKUP_SMALL + 2)]; /* the markup tables of a short text (8 KiB) */

    int rc = render_list(&r, &t->root);
    if (rc)
        goto done;
    k.s = fb_buf_str(&r.text);
    k.m = (const unsigned char *)fb_buf_str(&r.mask);
    k.n = r.text.len;
    markup_index(&k, small, FB_ARRAY_SIZE(small));
    /* room for about what the markup pass writes: the text, less the markup, in plain text; a
     * quarter more in HTML (tags, escapes) */
    if (plain)
        fb_buf_reserve(plain, k.n + 64);
    if (html)
        fb_buf_reserve(html, k.n + k.n / 4 + 64);
    if (plain)
        rc = render_markup_into(&k, plain, false);
    if (!rc && html)
        rc = render_markup_into(&k, html, true);
done:
    if (rc) {
        /* Like a failed fb_buf_append(): the caller does not clean up half a message. */
        if (plain)
            fb_buf_free(plain);
        if (html)
            fb_buf_free(html);
    }
    if (k.next_bold != small)
        fb_free(k.next_bold); /* the four tables (NULL when none was built) */
    fb_buf_free(&r.text);
    fb_buf_free(&r.mask);
    fb_buf_free(&r.tmp);
    return rc;
}
