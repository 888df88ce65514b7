/* SPDX-License-Identifier: MIT */
/*
 * expr.c - the expression language of dialog files (see expr.h): a lexer that tracks lines and
 * columns in UTF-8 characters, a recursive-descent parser, and an evaluator over jansson values.
 *
 * Pure code: no I/O, no global state. Hostile input is bounded: nesting is capped at
 * FB_EXPR_MAX_DEPTH while parsing, and and/or chains are stored flat (one node with n operands)
 * rather than as left-deep binary trees, so the tree is never deeper than the source's nesting
 * and evaluation and freeing recurse a bounded number of times. Evaluation borrows answers from
 * the environment instead of copying them; only list literals are built.
 */
#include "engine/expr.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"
#include "frichebot/alloc.h"

enum kind {
    K_LIT,   /* a literal: number, string, true, false, null, nsp */
    K_NAME,  /* an answer, or a field of one */
    K_TAG,   /* #tag */
    K_LIST,  /* [a, b, ...] */
    K_NOT,   /* non a */
    K_AND,   /* a et b et ... (flat) */
    K_OR,    /* a ou b ou ... (flat) */
    K_CMP,   /* a OP b */
    K_KNOWN, /* connu(name): one K_NAME kid */
};

enum op { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN };

struct fb_expr_s {
    enum kind kind;
    enum op op;              /* K_CMP */
    int line, col;           /* where the node starts in the file */
    json_t *lit;             /* K_LIT: owned */
    char *name;              /* K_NAME: the dotted path; K_TAG: the tag; owned */
    char *head;              /* K_NAME: the path's first component; owned */
    struct fb_expr_s **kids; /* operands, owned */
    size_t n_kids;
    /* K_CMP `x dans [..]` whose items are all string literals: those strings (borrowed from
     * the kids) sorted by length, then bytes (string_set_order()), for a binary search */
    const json_t **set;
};

/* ---- positions and UTF-8 ---- */

/* Counts characters by their lead bytes: the source is valid UTF-8 whenever positions matter.
 * Saturates instead of overflowing on absurd inputs. */
void fb_expr_pos_advance(fb_expr_pos_t *pos, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') {
            if (pos->line < INT_MAX)
                pos->line++;
            pos->col = pos->line_col;
        } else if ((c & 0xC0) != 0x80 && pos->col < INT_MAX) {
            pos->col++; /* a lead byte: one character, whatever its length */
        }
    }
}

/* ---- lexer ---- */

enum tok_type {
    T_EOF,
    T_ERROR, /* `msg` says why */
    T_NUMBER,
    T_STRING,
    T_WORD, /* a keyword (kw != KW_NONE) or a dotted name */
    T_TAG,  /* #tag: the text after '#' */
    T_LPAREN,
    T_RPAREN,
    T_LBRACKET,
    T_RBRACKET,
    T_COMMA,
    T_OP, /* a comparison operator */
};

enum kw { KW_NONE, KW_OR, KW_AND, KW_NOT, KW_IN, KW_TRUE, KW_FALSE, KW_NSP, KW_NULL, KW_KNOWN };

static const struct {
    const char *word;
    enum kw kw;
} keywords[] = {
    {"ou", KW_OR},       {"or", KW_OR},       {"et", KW_AND},  {"and", KW_AND},   {"non", KW_NOT},
    {"not", KW_NOT},     {"dans", KW_IN},     {"in", KW_IN},   {"vrai", KW_TRUE}, {"true", KW_TRUE},
    {"faux", KW_FALSE},  {"false", KW_FALSE}, {"nsp", KW_NSP}, {"rien", KW_NULL}, {"null", KW_NULL},
    {"connu", KW_KNOWN}, {"known", KW_KNOWN},
};

struct token {
    enum tok_type type;
    enum kw kw;   /* T_WORD */
    enum op op;   /* T_OP */
    size_t start; /* byte offsets of the token in the source */
    size_t end;
    int line, col; /* position of its first byte */
    json_t *value; /* T_NUMBER, T_STRING: new, owned by the token until a node takes it */
    char msg[200]; /* T_ERROR */
};

struct parser {
    const char *src;
    size_t len;
    size_t off;         /* lexer position */
    fb_expr_pos_t pos;  /* position of src[off] */
    struct token tok;   /* the lookahead */
    enum tok_type prev; /* type of the token before the lookahead */
    size_t prev_end;
    int depth;
    bool failed;
    fb_buf_t *errors; /* may be NULL */
};

static bool is_word_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_word_char(char c)
{
    return is_word_start(c) || (c >= '0' && c <= '9');
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static char ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* The keyword spelled by s[0..n), case-insensitively, or KW_NONE. */
static enum kw keyword(const char *s, size_t n)
{
    for (size_t i = 0; i < FB_ARRAY_SIZE(keywords); i++) {
        const char *w = keywords[i].word;
        size_t k = 0;
        while (k < n && w[k] && ascii_lower(s[k]) == w[k])
            k++;
        if (k == n && w[k] == '\0')
            return keywords[i].kw;
    }
    return KW_NONE;
}

bool fb_expr_is_keyword(const char *s, size_t n)
{
    return keyword(s, n) != KW_NONE;
}

/* Records a lexing error in the token; the parser reports it when it reads the token. */
static void tok_error(struct parser *p, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void tok_error(struct parser *p, size_t at, const char *fmt, ...)
{
    fb_expr_pos_t pos = p->pos;
    fb_expr_pos_advance(&pos, p->src + p->off, at - p->off);
    p->tok.type = T_ERROR;
    p->tok.line = pos.line;
    p->tok.col = pos.col;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->tok.msg, sizeof(p->tok.msg), fmt, ap);
    va_end(ap);
}

/* Writes a quotable rendering of s[0..n) into out: at most ~40 bytes, cut at a character
 * boundary, with "..." when cut. Callers only pass valid UTF-8 without control characters. */
static void snippet(const char *s, size_t n, char *out, size_t cap)
{
    size_t k = n;
    if (k > 40) {
        k = 40;
        while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
            k--;
    }
    snprintf(out, cap, "%.*s%s", (int)k, s, k < n ? "..." : "");
}

/* Describes the character at s[0..n) for a message: itself, or U+XXXX for a control. */
static void describe_char(const char *s, size_t n, char *out, size_t cap)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t k = fb_utf8_len(u, n);
    if (k == 0)
        k = 1;
    if (u[0] < 0x20 || u[0] == 0x7F)
        snprintf(out, cap, "U+%04X", u[0]);
    else if (k == 2 && u[0] == 0xC2 && u[1] < 0xA0)
        snprintf(out, cap, "U+%04X", u[1]); /* C1 controls */
    else
        snprintf(out, cap, "« %.*s »", (int)k, s);
}

/* Lexes a number at p->off: digits with an optional "." fraction. */
static void lex_number(struct parser *p)
{
    const char *s = p->src;
    size_t i = p->off;
    bool frac = false;
    while (i < p->len && is_digit(s[i]))
        i++;
    if (i + 1 < p->len && s[i] == '.' && is_digit(s[i + 1])) {
        frac = true;
        i++;
        while (i < p->len && is_digit(s[i]))
            i++;
    }
    if (i < p->len && is_word_char(s[i])) {
        while (i < p->len && (is_word_char(s[i]) || s[i] == '.'))
            i++;
        char snip[64];
        snippet(s + p->off, i - p->off, snip, sizeof(snip));
        tok_error(p, p->off, "nombre invalide « %s »", snip);
        return;
    }
    size_t n = i - p->off;
    if (!frac && n <= 18) {
        json_int_t v = 0;
        for (size_t k = p->off; k < i; k++)
            v = v * 10 + (s[k] - '0');
        p->tok.value = json_integer(v);
    } else {
        char *tmp = fb_strndup(s + p->off, n);
        double d = strtod(tmp, NULL);
        fb_free(tmp);
        if (!isfinite(d)) {
            char snip[64];
            snippet(s + p->off, n, snip, sizeof(snip));
            tok_error(p, p->off, "nombre trop grand « %s »", snip);
            return;
        }
        p->tok.value = json_real(d);
    }
    if (!p->tok.value) {
        tok_error(p, p->off, "mémoire insuffisante");
        return;
    }
    p->tok.type = T_NUMBER;
    p->tok.end = i;
}

/* Lexes a string at p->off, quoted with ' or ", with \" \' and \\ as the only escapes. */
static void lex_string(struct parser *p)
{
    const char *s = p->src;
    char q = s[p->off];
    char *buf = fb_malloc(p->len - p->off);
    size_t n = 0;
    size_t i = p->off + 1;
    for (;;) {
        if (i >= p->len) {
            fb_free(buf);
            tok_error(p, p->off, "texte entre guillemets non terminé (il manque le %c fermant)", q);
            return;
        }
        char c = s[i];
        if (c == q)
            break;
        if (c == '\\') {
            char e = i + 1 < p->len ? s[i + 1] : '\0';
            if (e != '"' && e != '\'' && e != '\\') {
                fb_free(buf);
                tok_error(
                    p, i,
                    "échappement invalide : seuls \\\", \\' et \\\\ sont permis dans un texte");
                return;
            }
            buf[n++] = e;
            i += 2;
            continue;
        }
        buf[n++] = c;
        i++;
    }
    p->tok.value = json_stringn(buf, n);
    fb_free(buf);
    if (!p->tok.value) {
        tok_error(p, p->off, "texte invalide");
        return;
    }
    p->tok.type = T_STRING;
    p->tok.end = i + 1;
}

/* Lexes a name ("commune", "commune.departement") or a keyword at p->off. */
static void lex_word(struct parser *p)
{
    const char *s = p->src;
    size_t i = p->off;
    size_t head_end = 0;
    bool upper = false;
    for (;;) {
        while (i < p->len && is_word_char(s[i])) {
            upper = upper || (s[i] >= 'A' && s[i] <= 'Z');
            i++;
        }
        if (!head_end)
            head_end = i;
        if (i >= p->len || s[i] != '.')
            break;
        if (i + 1 >= p->len || !is_word_start(s[i + 1])) {
            tok_error(p, i, "nom de champ attendu après « . »");
            return;
        }
        i++;
    }
    char snip[64];
    snippet(s + p->off, i - p->off, snip, sizeof(snip));
    enum kw kw = keyword(s + p->off, head_end - p->off);
    if (kw != KW_NONE && head_end != i) {
        snippet(s + p->off, head_end - p->off, snip, sizeof(snip));
        tok_error(p, p->off, "« %s » est un mot réservé, pas le nom d'une réponse", snip);
        return;
    }
    if (kw == KW_NONE && upper) {
        tok_error(p, p->off,
                  "nom invalide « %s » : un nom s'écrit en minuscules sans accents, chiffres et _",
                  snip);
        return;
    }
    p->tok.type = T_WORD;
    p->tok.kw = kw;
    p->tok.end = i;
}

/* Lexes "#tag" at p->off. */
static void lex_tag(struct parser *p)
{
    const char *s = p->src;
    size_t i = p->off + 1;
    bool bad = false;
    while (i < p->len && is_word_char(s[i])) {
        bad = bad || (s[i] >= 'A' && s[i] <= 'Z');
        i++;
    }
    if (i == p->off + 1) {
        tok_error(p, p->off, "« # » doit être suivi du nom d'un signal (a-z, 0-9, _)");
        return;
    }
    if (bad) {
        char snip[64];
        snippet(s + p->off, i - p->off, snip, sizeof(snip));
        tok_error(
            p, p->off,
            "signal invalide « %s » : un signal s'écrit en minuscules sans accents, chiffres et _",
            snip);
        return;
    }
    p->tok.type = T_TAG;
    p->tok.end = i;
}

/* Reads the next token into p->tok after skipping blanks and newlines, and moves p->off and
 * p->pos past it. A lexing error leaves a T_ERROR token (p->off unchanged) for the parser to
 * report. The previous token's value must have been taken or freed. */
static void lex(struct parser *p)
{
    const char *s = p->src;
    size_t ws = p->off;
    while (ws < p->len && (s[ws] == ' ' || s[ws] == '\t' || s[ws] == '\n' || s[ws] == '\r'))
        ws++;
    fb_expr_pos_advance(&p->pos, s + p->off, ws - p->off);
    p->off = ws;

    struct token *t = &p->tok;
    t->value = NULL;
    t->kw = KW_NONE;
    t->op = OP_EQ;
    t->start = p->off;
    t->end = p->off;
    t->line = p->pos.line;
    t->col = p->pos.col;
    t->type = T_EOF;
    if (p->off >= p->len)
        return;

    char c = s[p->off];
    char c2 = p->off + 1 < p->len ? s[p->off + 1] : '\0';
    size_t oplen = 1;
    switch (c) {
    case '(':
        t->type = T_LPAREN;
        break;
    case ')':
        t->type = T_RPAREN;
        break;
    case '[':
        t->type = T_LBRACKET;
        break;
    case ']':
        t->type = T_RBRACKET;
        break;
    case ',':
        t->type = T_COMMA;
        break;
    case '=':
        if (c2 != '=') {
            tok_error(p, p->off, "« = » inattendu : pour comparer, écrivez « == »");
            return;
        }
        t->type = T_OP;
        t->op = OP_EQ;
        oplen = 2;
        break;
    case '!':
        if (c2 != '=') {
            tok_error(p, p->off, "« ! » inattendu : écrivez « != » pour comparer, ou « non »");
            return;
        }
        t->type = T_OP;
        t->op = OP_NE;
        oplen = 2;
        break;
    case '<':
    case '>':
        t->type = T_OP;
        if (c2 == '=') {
            t->op = c == '<' ? OP_LE : OP_GE;
            oplen = 2;
        } else {
            t->op = c == '<' ? OP_LT : OP_GT;
        }
        break;
    case '"':
    case '\'':
        lex_string(p);
        break;
    case '#':
        lex_tag(p);
        break;
    default:
        if (is_digit(c)) {
            lex_number(p);
        } else if (is_word_start(c)) {
            lex_word(p);
        } else {
            char what[32];
            describe_char(s + p->off, p->len - p->off, what, sizeof(what));
            tok_error(p, p->off, "caractère inattendu %s", what);
            return;
        }
        break;
    }
    if (t->type == T_ERROR)
        return;
    if (t->end == t->start)
        t->end = t->start + oplen;
    fb_expr_pos_advance(&p->pos, s + p->off, t->end - p->off);
    p->off = t->end;
}

/* ---- parser ---- */

/* Records the parse's error (only the first one: the rest would be consequences). */
static void fail(struct parser *p, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail(struct parser *p, int line, int col, const char *fmt, ...)
{
    if (p->failed)
        return;
    p->failed = true;
    if (!p->errors)
        return;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    (void)fb_buf_printf(p->errors, "%d:%d: %s\n", line, col, msg);
}

/* Moves to the next token, reporting a lexing error. */
static void next(struct parser *p)
{
    json_decref(p->tok.value);
    p->tok.value = NULL;
    p->prev = p->tok.type;
    p->prev_end = p->tok.end;
    lex(p);
    if (p->tok.type == T_ERROR)
        fail(p, p->tok.line, p->tok.col, "%s", p->tok.msg);
}

/* Describes the lookahead for "found ..." messages. */
static void describe_tok(const struct parser *p, char *out, size_t cap)
{
    const struct token *t = &p->tok;
    if (t->type == T_EOF) {
        snprintf(out, cap, "la fin de l'expression");
    } else if (t->type == T_STRING) {
        snprintf(out, cap, "un texte entre guillemets");
    } else {
        char snip[64];
        snippet(p->src + t->start, t->end - t->start, snip, sizeof(snip));
        snprintf(out, cap, "« %s »", snip);
    }
}

static bool at_kw(const struct parser *p, enum kw kw)
{
    return p->tok.type == T_WORD && p->tok.kw == kw;
}

static fb_expr_t *node_new(enum kind kind, int line, int col)
{
    fb_expr_t *n = fb_calloc(1, sizeof(*n));
    n->kind = kind;
    n->line = line;
    n->col = col;
    return n;
}

static void add_kid(fb_expr_t *n, fb_expr_t *kid)
{
    n->kids = fb_realloc(n->kids, (n->n_kids + 1) * sizeof(fb_expr_t *));
    n->kids[n->n_kids++] = kid;
}

/* Enters one nesting level at the lookahead; false (and the error reported) past the limit. */
static bool enter(struct parser *p)
{
    if (++p->depth > FB_EXPR_MAX_DEPTH) {
        fail(p, p->tok.line, p->tok.col, "expression trop imbriquée (plus de %d niveaux)",
             FB_EXPR_MAX_DEPTH);
        return false;
    }
    return true;
}

static fb_expr_t *parse_or(struct parser *p);

/* A K_NAME node from the lookahead (a T_WORD without keyword), which it consumes. */
static fb_expr_t *parse_name(struct parser *p)
{
    const struct token *t = &p->tok;
    fb_expr_t *n = node_new(K_NAME, t->line, t->col);
    n->name = fb_strndup(p->src + t->start, t->end - t->start);
    size_t head = strcspn(n->name, ".");
    n->head = fb_strndup(n->name, head);
    next(p);
    return n;
}

/* connu(name) / known(name), the lookahead being the keyword. */
static fb_expr_t *parse_known(struct parser *p)
{
    fb_expr_t *n = node_new(K_KNOWN, p->tok.line, p->tok.col);
    char kw[16];
    snippet(p->src + p->tok.start, p->tok.end - p->tok.start, kw, sizeof(kw));
    char found[96];
    if (!enter(p))
        goto fail;
    next(p);
    if (p->failed)
        goto fail;
    if (p->tok.type != T_LPAREN) {
        describe_tok(p, found, sizeof(found));
        fail(p, p->tok.line, p->tok.col, "« ( » attendue après « %s », pas %s", kw, found);
        goto fail;
    }
    int open_line = p->tok.line, open_col = p->tok.col;
    next(p);
    if (p->failed)
        goto fail;
    if (p->tok.type != T_WORD || p->tok.kw != KW_NONE) {
        describe_tok(p, found, sizeof(found));
        fail(p, p->tok.line, p->tok.col, "%s() attend le nom d'une réponse, pas %s", kw, found);
        goto fail;
    }
    add_kid(n, parse_name(p));
    if (p->failed)
        goto fail;
    if (p->tok.type != T_RPAREN) {
        describe_tok(p, found, sizeof(found));
        fail(p, p->tok.line, p->tok.col, "« ) » manquante pour fermer la « ( » de %d:%d (pas %s)",
             open_line, open_col, found);
        goto fail;
    }
    p->depth--;
    next(p);
    if (p->failed)
        goto fail;
    return n;
fail:
    fb_expr_free(n);
    return NULL;
}

/* "(" expr ")", the lookahead being "(". */
static fb_expr_t *parse_group(struct parser *p)
{
    int open_line = p->tok.line, open_col = p->tok.col;
    if (!enter(p))
        return NULL;
    next(p);
    if (p->failed)
        return NULL;
    fb_expr_t *e = parse_or(p);
    if (!e)
        return NULL;
    if (p->tok.type != T_RPAREN) {
        char found[96];
        describe_tok(p, found, sizeof(found));
        fail(p, p->tok.line, p->tok.col, "« ) » manquante pour fermer la « ( » de %d:%d (pas %s)",
             open_line, open_col, found);
        fb_expr_free(e);
        return NULL;
    }
    p->depth--;
    next(p);
    if (p->failed) {
        fb_expr_free(e);
        return NULL;
    }
    return e;
}

/* "[" (expr ("," expr)*)? "]", the lookahead being "[". */
static fb_expr_t *parse_list(struct parser *p)
{
    fb_expr_t *n = node_new(K_LIST, p->tok.line, p->tok.col);
    if (!enter(p))
        goto fail;
    next(p);
    if (p->failed)
        goto fail;
    if (p->tok.type != T_RBRACKET) {
        for (;;) {
            fb_expr_t *item = parse_or(p);
            if (!item)
                goto fail;
            add_kid(n, item);
            if (p->tok.type == T_RBRACKET)
                break;
            if (p->tok.type != T_COMMA) {
                char found[96];
                describe_tok(p, found, sizeof(found));
                fail(p, p->tok.line, p->tok.col,
                     "« , » ou « ] » attendu dans la liste ouverte à %d:%d, pas %s", n->line,
                     n->col, found);
                goto fail;
            }
            next(p);
            if (p->failed)
                goto fail;
        }
    }
    p->depth--;
    next(p);
    if (p->failed)
        goto fail;
    return n;
fail:
    fb_expr_free(n);
    return NULL;
}

/* primary := literal | list | #tag | name | ( expr ) | connu(name). Returns a new node, or NULL
 * with the error reported. */
static fb_expr_t *parse_primary(struct parser *p)
{
    struct token *t = &p->tok;
    fb_expr_t *n = NULL;
    char found[96];
    switch (t->type) {
    case T_NUMBER:
    case T_STRING:
        n = node_new(K_LIT, t->line, t->col);
        n->lit = t->value;
        t->value = NULL;
        next(p);
        break;
    case T_TAG:
        n = node_new(K_TAG, t->line, t->col);
        n->name = fb_strndup(p->src + t->start + 1, t->end - t->start - 1);
        next(p);
        break;
    case T_LPAREN:
        return parse_group(p);
    case T_LBRACKET:
        return parse_list(p);
    case T_WORD:
        switch (t->kw) {
        case KW_NONE:
            return parse_name(p);
        case KW_KNOWN:
            return parse_known(p);
        case KW_TRUE:
        case KW_FALSE:
        case KW_NULL:
        case KW_NSP:
            n = node_new(K_LIT, t->line, t->col);
            n->lit = t->kw == KW_TRUE    ? json_true()
                     : t->kw == KW_FALSE ? json_false()
                     : t->kw == KW_NULL  ? json_null()
                                         : json_string(FB_NSP_VALUE);
            next(p);
            break;
        case KW_OR:
        case KW_AND:
        case KW_NOT:
        case KW_IN:
            describe_tok(p, found, sizeof(found));
            fail(p, t->line, t->col, "valeur attendue, pas %s", found);
            return NULL;
        }
        break;
    case T_EOF:
    case T_ERROR:
    case T_RPAREN:
    case T_RBRACKET:
    case T_COMMA:
    case T_OP:
        describe_tok(p, found, sizeof(found));
        fail(p, t->line, t->col, "valeur attendue, pas %s", found);
        return NULL;
    }
    if (n && p->failed) {
        fb_expr_free(n);
        return NULL;
    }
    return n;
}

/* The order of a string set: by length, then bytes (any order would do: equality is what the
 * search finds). */
static int string_set_order(const void *a, const void *b)
{
    const json_t *x = *(const json_t *const *)a, *y = *(const json_t *const *)b;
    size_t lx = json_string_length(x), ly = json_string_length(y);
    if (lx != ly)
        return lx < ly ? -1 : 1;
    return memcmp(json_string_value(x), json_string_value(y), lx);
}

/* Gives K_CMP node `n` its string set when it is `x dans [..]` over string literals only (nsp
 * included: it is the string FB_NSP_VALUE). */
static void string_set_build(fb_expr_t *n)
{
    const fb_expr_t *list = n->kids[1];
    if (n->op != OP_IN || list->kind != K_LIST || list->n_kids == 0)
        return;
    for (size_t i = 0; i < list->n_kids; i++)
        if (list->kids[i]->kind != K_LIT || !json_is_string(list->kids[i]->lit))
            return;
    n->set = fb_calloc(list->n_kids, sizeof(const json_t *));
    for (size_t i = 0; i < list->n_kids; i++)
        n->set[i] = list->kids[i]->lit;
    qsort(n->set, list->n_kids, sizeof(const json_t *), string_set_order);
}

/* cmp := primary (OP primary)? */
static fb_expr_t *parse_cmp(struct parser *p)
{
    fb_expr_t *left = parse_primary(p);
    if (!left)
        return NULL;
    enum op op;
    if (p->tok.type == T_OP)
        op = p->tok.op;
    else if (at_kw(p, KW_IN))
        op = OP_IN;
    else
        return left;
    fb_expr_t *n = node_new(K_CMP, left->line, left->col);
    n->op = op;
    add_kid(n, left);
    next(p);
    if (p->failed)
        goto fail;
    fb_expr_t *right = parse_primary(p);
    if (!right)
        goto fail;
    add_kid(n, right);
    string_set_build(n);
    if (p->tok.type == T_OP || at_kw(p, KW_IN)) {
        char found[96];
        describe_tok(p, found, sizeof(found));
        fail(p, p->tok.line, p->tok.col,
             "%s inattendu : les comparaisons ne s'enchaînent pas, reliez-les par « et »", found);
        goto fail;
    }
    return n;
fail:
    fb_expr_free(n);
    return NULL;
}

/* not := ("non" | "not") not | cmp; each "non" is a nesting level. */
static fb_expr_t *parse_not(struct parser *p)
{
    if (!at_kw(p, KW_NOT))
        return parse_cmp(p);
    fb_expr_t *n = node_new(K_NOT, p->tok.line, p->tok.col);
    if (!enter(p))
        goto fail;
    next(p);
    if (p->failed)
        goto fail;
    fb_expr_t *kid = parse_not(p);
    if (!kid)
        goto fail;
    add_kid(n, kid);
    p->depth--;
    return n;
fail:
    fb_expr_free(n);
    return NULL;
}

/* A flat chain `sub (KW sub)*` of `kind` (K_AND or K_OR); a single operand is returned as is. */
static fb_expr_t *parse_chain(struct parser *p, enum kind kind, enum kw kw,
                              fb_expr_t *(*sub)(struct parser *))
{
    fb_expr_t *first = sub(p);
    if (!first || !at_kw(p, kw))
        return first;
    fb_expr_t *n = node_new(kind, first->line, first->col);
    add_kid(n, first);
    while (at_kw(p, kw)) {
        next(p);
        if (p->failed)
            goto fail;
        fb_expr_t *kid = sub(p);
        if (!kid)
            goto fail;
        add_kid(n, kid);
    }
    return n;
fail:
    fb_expr_free(n);
    return NULL;
}

static fb_expr_t *parse_and(struct parser *p)
{
    return parse_chain(p, K_AND, KW_AND, parse_not);
}

static fb_expr_t *parse_or(struct parser *p)
{
    return parse_chain(p, K_OR, KW_OR, parse_and);
}

/* Reports what follows a complete expression, with a hint for the usual mistakes. */
static void fail_trailing(struct parser *p)
{
    const struct token *t = &p->tok;
    char found[96];
    describe_tok(p, found, sizeof(found));
    if (t->type == T_COMMA && p->prev == T_NUMBER && p->prev_end == t->start && t->end < p->len &&
        is_digit(p->src[t->end]))
        fail(p, t->line, t->col,
             "« , » inattendue : un nombre décimal s'écrit avec un point (2.5)");
    else if (t->type == T_RPAREN)
        fail(p, t->line, t->col, "« ) » en trop : aucune « ( » à fermer");
    else
        fail(p, t->line, t->col, "%s inattendu après la fin de l'expression", found);
}

/* Validates the whole span first (so positions and strings are sound), then parses one `or`
 * and requires the end. At most one error line is appended (see fail()). */
fb_expr_t *fb_expr_parse_span(const char *src, size_t len, fb_expr_pos_t pos, fb_buf_t *errors)
{
    struct parser p;
    memset(&p, 0, sizeof(p));
    p.src = src;
    p.len = len;
    p.pos = pos;
    p.errors = errors;
    p.prev = T_EOF;

    size_t bad = fb_utf8_check(src, len);
    if (bad < len) {
        fb_expr_pos_t at = pos;
        fb_expr_pos_advance(&at, src, bad);
        if (src[bad] == '\0')
            fail(&p, at.line, at.col, "caractère inattendu U+0000");
        else
            fail(&p, at.line, at.col, "UTF-8 invalide");
        return NULL;
    }
    lex(&p);
    if (p.tok.type == T_ERROR) {
        fail(&p, p.tok.line, p.tok.col, "%s", p.tok.msg);
        return NULL;
    }
    if (p.tok.type == T_EOF) {
        fail(&p, pos.line, pos.col, "expression vide");
        return NULL;
    }
    fb_expr_t *root = parse_or(&p);
    if (root && !p.failed && p.tok.type != T_EOF)
        fail_trailing(&p);
    json_decref(p.tok.value);
    if (p.failed) {
        fb_expr_free(root);
        return NULL;
    }
    return root;
}

fb_expr_t *fb_expr_parse(const char *src, int line, int col, fb_buf_t *errors)
{
    fb_expr_pos_t pos = {line, col, 1};
    return fb_expr_parse_span(src, strlen(src), pos, errors);
}

/* Frees the tree; its depth is bounded by FB_EXPR_MAX_DEPTH, so the recursion is too. */
void fb_expr_free(fb_expr_t *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->n_kids; i++)
        fb_expr_free(e->kids[i]);
    fb_free(e->kids);
    fb_free(e->set);
    json_decref(e->lit);
    fb_free(e->name);
    fb_free(e->head);
    fb_free(e);
}

/* ---- evaluation ---- */

bool fb_expr_truthy(const json_t *v)
{
    if (!v)
        return false;
    switch (json_typeof(v)) {
    case JSON_NULL:
    case JSON_FALSE:
        return false;
    case JSON_TRUE:
    case JSON_OBJECT:
        return true;
    case JSON_INTEGER:
        return json_integer_value(v) != 0;
    case JSON_REAL:
        return json_real_value(v) != 0.0;
    case JSON_STRING:
        /* "je ne sais pas" is not a yes: `si: "pollution"` must not hold on it. */
        return json_string_length(v) != 0 && strcmp(json_string_value(v), FB_NSP_VALUE) != 0;
    case JSON_ARRAY:
        return json_array_size(v) != 0;
    }
    return false;
}

const json_t *fb_expr_lookup_path(const json_t *root, const char *path)
{
    const json_t *v = root;
    const char *p = path;
    while (v) {
        size_t n = strcspn(p, ".");
        if (!json_is_object(v))
            return NULL;
        v = json_object_getn(v, p, n); /* one step down: the field p[0..n) */
        if (p[n] == '\0')
            return v;
        p += n + 1;
    }
    return NULL;
}

static bool is_nsp(const json_t *v)
{
    return json_is_string(v) && strcmp(json_string_value(v), FB_NSP_VALUE) == 0;
}

static const json_t *bool_json(bool b)
{
    return b ? json_true() : json_false();
}

/* Equality: numbers by value (3 == 3.0), a number never equals a non-number, the rest deep. */
static bool values_equal(const json_t *a, const json_t *b)
{
    bool an = json_is_number(a), bn = json_is_number(b);
    if (an && bn)
        return json_number_value(a) == json_number_value(b);
    if (an != bn)
        return false;
    return json_equal(a, b) != 0;
}

/* Byte-wise ordering of two strings (ISO dates order correctly): <0, 0 or >0. */
static int string_order(const json_t *a, const json_t *b)
{
    size_t la = json_string_length(a), lb = json_string_length(b);
    int c = memcmp(json_string_value(a), json_string_value(b), la < lb ? la : lb);
    if (c)
        return c;
    return la < lb ? -1 : la > lb ? 1 : 0;
}

/* Applies `op` to two values. `==` and `!=` compare any two values (a number never equals a
 * non-number); ordering applies to two numbers or two strings, never to nsp. */
static bool compare(enum op op, const json_t *a, const json_t *b)
{
    bool an = json_is_number(a), bn = json_is_number(b);
    int c;
    if (op == OP_IN) {
        size_t i;
        const json_t *item;
        if (!json_is_array(b))
            return false;
        json_array_foreach(b, i, item)
        {
            if (values_equal(a, item))
                return true;
        }
        return false;
    }
    /* `!=` is exactly the negation of `==` (a number never equals a string, so `3 != "3"` and
     * `surface != nsp` with a number are true); ordering needs two numbers or two strings. */
    if (op == OP_EQ)
        return values_equal(a, b);
    if (op == OP_NE)
        return !values_equal(a, b);
    if (an != bn)
        return false;
    if (an) {
        double x = json_number_value(a), y = json_number_value(b);
        c = x < y ? -1 : x > y ? 1 : 0;
    } else if (json_is_string(a) && json_is_string(b) && !is_nsp(a) && !is_nsp(b)) {
        c = string_order(a, b);
    } else {
        return false;
    }
    switch (op) {
    case OP_LT:
        return c < 0;
    case OP_LE:
        return c <= 0;
    case OP_GT:
        return c > 0;
    case OP_GE:
        return c >= 0;
    case OP_EQ:
    case OP_NE:
    case OP_IN:
        break;
    }
    return false;
}

static const json_t *lookup(const fb_expr_env_t *env, const char *name)
{
    const json_t *v = env && env->lookup ? env->lookup(env->arg, name) : NULL;
    return v ? v : json_null();
}

static const json_t *eval(const fb_expr_t *e, const fb_expr_env_t *env, json_t **owned);

/* Evaluates `e` and applies truthiness, releasing what evaluation built. */
static bool eval_truthy(const fb_expr_t *e, const fb_expr_env_t *env)
{
    json_t *own;
    bool b = fb_expr_truthy(eval(e, env, &own));
    json_decref(own);
    return b;
}

/*
 * K_CMP. `x dans [..]` compares with each item of the literal without building the list; over
 * string literals only, it searches the node's sorted set: only a string equals a string
 * (values_equal()), and two strings are equal when their lengths and bytes are.
 */
static bool eval_cmp(const fb_expr_t *e, const fb_expr_env_t *env)
{
    json_t *lown, *rown;
    const json_t *l = eval(e->kids[0], env, &lown);
    bool r = false;
    const fb_expr_t *right = e->kids[1];
    if (e->set) {
        r = json_is_string(l) &&
            bsearch(&l, e->set, right->n_kids, sizeof(const json_t *), string_set_order) != NULL;
    } else if (e->op == OP_IN && right->kind == K_LIST) {
        for (size_t i = 0; i < right->n_kids && !r; i++) {
            const json_t *item = eval(right->kids[i], env, &rown);
            r = values_equal(l, item);
            json_decref(rown);
        }
    } else {
        const json_t *rv = eval(right, env, &rown);
        r = compare(e->op, l, rv);
        json_decref(rown);
    }
    json_decref(lown);
    return r;
}

/* The evaluator behind fb_expr_eval_borrowed() (same contract). Recursion follows the tree,
 * whose depth the parser bounded. */
static const json_t *eval(const fb_expr_t *e, const fb_expr_env_t *env, json_t **owned)
{
    *owned = NULL;
    switch (e->kind) {
    case K_LIT:
        return e->lit;
    case K_NAME:
        return lookup(env, e->name);
    case K_TAG:
        return bool_json(env && env->has_tag && env->has_tag(env->arg, e->name));
    case K_KNOWN: {
        const json_t *v = lookup(env, e->kids[0]->name);
        return bool_json(!json_is_null(v) && !is_nsp(v));
    }
    case K_NOT:
        return bool_json(!eval_truthy(e->kids[0], env));
    case K_AND:
        for (size_t i = 0; i < e->n_kids; i++) {
            if (!eval_truthy(e->kids[i], env))
                return json_false();
        }
        return json_true();
    case K_OR:
        for (size_t i = 0; i < e->n_kids; i++) {
            if (eval_truthy(e->kids[i], env))
                return json_true();
        }
        return json_false();
    case K_CMP:
        return bool_json(eval_cmp(e, env));
    case K_LIST: {
        json_t *list = json_array();
        if (!list)
            return json_null();
        for (size_t i = 0; i < e->n_kids; i++) {
            json_t *own;
            const json_t *v = eval(e->kids[i], env, &own);
            (void)json_array_append_new(list, own ? own : json_deep_copy(v));
        }
        *owned = list;
        return list;
    }
    }
    return json_null();
}

const json_t *fb_expr_eval_borrowed(const fb_expr_t *e, const fb_expr_env_t *env,
                                    json_t **owned /* OUT */)
{
    return eval(e, env, owned);
}

/* The public evaluation copies what it borrowed, so the caller owns a value nobody else
 * references (a deep copy of an answer, never the session's own object). */
json_t *fb_expr_eval(const fb_expr_t *e, const fb_expr_env_t *env)
{
    json_t *own;
    const json_t *v = eval(e, env, &own);
    if (own)
        return own;
    json_t *copy = json_deep_copy(v);
    return copy ? copy : json_null();
}

bool fb_expr_true(const fb_expr_t *e, const fb_expr_env_t *env)
{
    return eval_truthy(e, env);
}

/* Reports names and tags in source order; recursion bounded like the tree. */
void fb_expr_names(const fb_expr_t *e,
                   void (*cb)(void *arg, const char *name, bool is_tag, int line, int col),
                   void *arg)
{
    if (!e)
        return;
    if (e->kind == K_NAME)
        cb(arg, e->head, false, e->line, e->col);
    else if (e->kind == K_TAG)
        cb(arg, e->name, true, e->line, e->col);
    for (size_t i = 0; i < e->n_kids; i++)
        fb_expr_names(e->kids[i], cb, arg);
}

/* A string literal other than nsp. */
static bool string_lit(const fb_expr_t *e)
{
    return e->kind == K_LIT && json_is_string(e->lit) &&
           strcmp(json_string_value(e->lit), FB_NSP_VALUE) != 0;
}

/* A name without a dotted path ("usage", not "commune.departement"). */
static bool plain_name(const fb_expr_t *e)
{
    return e->kind == K_NAME && strcmp(e->name, e->head) == 0;
}

void fb_expr_compared_strings(const fb_expr_t *e,
                              void (*cb)(void *arg, const char *name, const char *str, int line,
                                         int col),
                              void *arg)
{
    if (!e)
        return;
    if (e->kind == K_CMP && e->n_kids == 2 &&
        (e->op == OP_EQ || e->op == OP_NE || e->op == OP_IN)) {
        const fb_expr_t *a = e->kids[0], *b = e->kids[1];
        if (e->op != OP_IN) {
            if (plain_name(a) && string_lit(b))
                cb(arg, a->name, json_string_value(b->lit), b->line, b->col);
            else if (plain_name(b) && string_lit(a))
                cb(arg, b->name, json_string_value(a->lit), a->line, a->col);
        } else if (plain_name(a) && b->kind == K_LIST) {
            for (size_t i = 0; i < b->n_kids; i++)
                if (string_lit(b->kids[i]))
                    cb(arg, a->name, json_string_value(b->kids[i]->lit), b->kids[i]->line,
                       b->kids[i]->col);
        } else if (string_lit(a) && plain_name(b)) {
            cb(arg, b->name, json_string_value(a->lit), a->line, a->col);
        }
    }
    for (size_t i = 0; i < e->n_kids; i++)
        fb_expr_compared_strings(e->kids[i], cb, arg);
}
