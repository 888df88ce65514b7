/* SPDX-License-Identifier: MIT */
/*
 * json.c - compact JSON text to jansson values and back, fast (see json.h): a recursive-descent
 * reader over the bytes (depth bounded by FB_JSON_MAX_DEPTH) and a writer straight into an fb_buf.
 */
#include "common/json.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"
#include "frichebot/alloc.h"
#include "frichebot/err.h"

/* ---- bytes 8 at a time (the writer's strings) ---- */

#define ONES  0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* True when one of the 8 bytes of `w` needs a look of its own in a JSON string: a control
 * character (below 0x20), '"' or '\\'. Exact (the bit tricks of "has a zero byte" and "has a byte
 * less than n" for n <= 128): a byte at 0x80 or above is none of them. */
static inline bool word_special(uint64_t w)
{
    uint64_t ctl = (w - ONES * 0x20) & ~w & HIGHS;
    uint64_t q = w ^ (ONES * '"'), b = w ^ (ONES * '\\');
    uint64_t quote = (q - ONES) & ~q & HIGHS, bslash = (b - ONES) & ~b & HIGHS;
    return (ctl | quote | bslash) != 0;
}

/* ---- reader ---- */

struct rd {
    const char *p, *e;
    fb_json_intern_fn intern; /* may be NULL */
    void *intern_arg;
    char *tmp; /* decoded strings with escapes */
    size_t tcap;
    int depth;
};

static void skip_ws(struct rd *r)
{
    while (r->p < r->e && (*r->p == ' ' || *r->p == '\n' || *r->p == '\r' || *r->p == '\t'))
        r->p++;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Four hex digits at p (the caller checked there are four bytes): the value, or -1. */
static int32_t hex4(const char *p)
{
    int32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return -1;
        v = (v << 4) | h;
    }
    return v;
}

static void tmp_put(struct rd *r, size_t *len, const char *s, size_t n)
{
    if (n == 0)
        return; /* r->tmp may still be NULL: no NULL + 0, no memcpy(NULL, ..., 0) */
    if (*len + n > r->tcap) {
        size_t cap = r->tcap ? r->tcap : 64;
        while (cap < *len + n)
            cap *= 2;
        r->tmp = fb_realloc(r->tmp, cap);
        r->tcap = cap;
    }
    memcpy(r->tmp + *len, s, n);
    *len += n;
}

/* Writes code point `c` as UTF-8 into the decoding buffer. */
static void tmp_put_cp(struct rd *r, size_t *len, uint32_t c)
{
    char b[4];
    size_t n;
    if (c < 0x80) {
        b[0] = (char)c;
        n = 1;
    } else if (c < 0x800) {
        b[0] = (char)(0xC0 | (c >> 6));
        b[1] = (char)(0x80 | (c & 0x3F));
        n = 2;
    } else if (c < 0x10000) {
        b[0] = (char)(0xE0 | (c >> 12));
        b[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        b[2] = (char)(0x80 | (c & 0x3F));
        n = 3;
    } else {
        b[0] = (char)(0xF0 | (c >> 18));
        b[1] = (char)(0x80 | ((c >> 12) & 0x3F));
        b[2] = (char)(0x80 | ((c >> 6) & 0x3F));
        b[3] = (char)(0x80 | (c & 0x3F));
        n = 4;
    }
    tmp_put(r, len, b, n);
}

/* One \ escape at r->p (just after the backslash), decoded into tmp; false when invalid. */
static bool read_escape(struct rd *r, size_t *len)
{
    if (r->p >= r->e)
        return false;
    char c = *r->p++;
    const char *simple = NULL;
    switch (c) {
    case '"':
        simple = "\"";
        break;
    case '\\':
        simple = "\\";
        break;
    case '/':
        simple = "/";
        break;
    case 'b':
        simple = "\b";
        break;
    case 'f':
        simple = "\f";
        break;
    case 'n':
        simple = "\n";
        break;
    case 'r':
        simple = "\r";
        break;
    case 't':
        simple = "\t";
        break;
    case 'u':
        break;
    default:
        return false;
    }
    if (simple) {
        tmp_put(r, len, simple, 1);
        return true;
    }
    if (r->e - r->p < 4)
        return false;
    int32_t u = hex4(r->p);
    r->p += 4;
    if (u < 0 || u == 0 || (u >= 0xDC00 && u <= 0xDFFF))
        return false; /* \u0000 (no JSON_ALLOW_NUL), a lone low surrogate */
    uint32_t cp = (uint32_t)u;
    if (u >= 0xD800 && u <= 0xDBFF) {
        if (r->e - r->p < 6 || r->p[0] != '\\' || r->p[1] != 'u')
            return false;
        int32_t lo = hex4(r->p + 2);
        if (lo < 0xDC00 || lo > 0xDFFF)
            return false;
        r->p += 6;
        cp = 0x10000 + (((uint32_t)u - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
    }
    tmp_put_cp(r, len, cp);
    return true;
}

/*
 * A string at r->p (just after the opening quote): sets *s and *n to its bytes (the input's when
 * it has no escape, else the decoding buffer's) and moves past the closing quote. False when
 * invalid.
 */
static bool read_string(struct rd *r, const char **s, size_t *n)
{
    const char *b = r->p;
    const char *q = b;
    unsigned char hi = 0; /* the bytes' high bits: only non-ASCII text needs the UTF-8 check */
    while (q < r->e && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20)
        hi |= (unsigned char)*q++;
    if (q >= r->e)
        return false;
    if (*q == '"') {
        if ((hi & 0x80) && !fb_utf8_valid(b, (size_t)(q - b)))
            return false;
        *s = b;
        *n = (size_t)(q - b);
        r->p = q + 1;
        return true;
    }
    size_t len = 0;
    for (;;) {
        if (q >= r->e || (unsigned char)*q < 0x20)
            return false;
        if (!fb_utf8_valid(b, (size_t)(q - b)))
            return false;
        tmp_put(r, &len, b, (size_t)(q - b));
        if (*q == '"')
            break;
        r->p = q + 1; /* *q is a backslash */
        if (!read_escape(r, &len))
            return false;
        b = q = r->p;
        while (q < r->e && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20)
            q++;
    }
    r->p = q + 1;
    *s = r->tmp ? r->tmp : "";
    *n = len;
    return true;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static json_t *read_number(struct rd *r)
{
    const char *b = r->p, *q = b;
    bool neg = q < r->e && *q == '-';
    if (neg)
        q++;
    if (q >= r->e || !is_digit(*q))
        return NULL;
    if (*q == '0') {
        q++;
        if (q < r->e && is_digit(*q))
            return NULL;
    } else {
        while (q < r->e && is_digit(*q))
            q++;
    }
    const char *int_end = q;
    bool real = false;
    if (q < r->e && *q == '.') {
        real = true;
        q++;
        if (q >= r->e || !is_digit(*q))
            return NULL;
        while (q < r->e && is_digit(*q))
            q++;
    }
    if (q < r->e && (*q == 'e' || *q == 'E')) {
        real = true;
        q++;
        if (q < r->e && (*q == '+' || *q == '-'))
            q++;
        if (q >= r->e || !is_digit(*q))
            return NULL;
        while (q < r->e && is_digit(*q))
            q++;
    }
    r->p = q;
    if (!real) {
        /* accumulated negatively, so that the most negative json_int_t fits */
        json_int_t v = 0;
        for (const char *d = neg ? b + 1 : b; d < int_end; d++) {
            int dig = *d - '0';
            if (v < (INT64_MIN + dig) / 10)
                return NULL; /* jansson: "too big integer" */
            v = v * 10 - dig;
        }
        if (!neg) {
            if (v == INT64_MIN)
                return NULL;
            v = -v;
        }
        return json_integer(v);
    }
    char small[64];
    size_t n = (size_t)(q - b);
    char *txt = n < sizeof(small) ? small : fb_malloc(n + 1);
    memcpy(txt, b, n);
    txt[n] = '\0';
    double d = strtod(txt, NULL);
    if (txt != small)
        fb_free(txt);
    if (isinf(d))
        return NULL; /* jansson: "real number overflow" */
    return json_real(d);
}

static bool literal(struct rd *r, const char *word, size_t n)
{
    if ((size_t)(r->e - r->p) < n || memcmp(r->p, word, n) != 0)
        return false;
    r->p += n;
    return true;
}

/*
 * jansson's quirk, kept so that both read the same inputs: the byte that ends a number or a
 * literal is pushed back into its stream, and a NUL pushed back is lost, so one NUL byte right
 * after a number, true, false or null is ignored (anywhere else a NUL is refused).
 */
static json_t *after_token(struct rd *r, json_t *v)
{
    if (v && r->p < r->e && *r->p == '\0')
        r->p++;
    return v;
}

static json_t *read_value(struct rd *r);

static json_t *read_array(struct rd *r)
{
    json_t *a = json_array();
    r->p++;
    skip_ws(r);
    if (r->p < r->e && *r->p == ']') {
        r->p++;
        return a;
    }
    for (;;) {
        json_t *v = read_value(r);
        if (!v || json_array_append_new(a, v))
            break;
        skip_ws(r);
        if (r->p >= r->e)
            break;
        char c = *r->p++;
        if (c == ']')
            return a;
        if (c != ',')
            break;
        skip_ws(r);
    }
    json_decref(a);
    return NULL;
}

static json_t *read_object(struct rd *r)
{
    json_t *o = json_object();
    r->p++;
    skip_ws(r);
    if (r->p < r->e && *r->p == '}') {
        r->p++;
        return o;
    }
    char small[64];
    for (;;) {
        const char *k;
        size_t kn;
        if (r->p >= r->e || *r->p != '"')
            break;
        r->p++;
        if (!read_string(r, &k, &kn))
            break;
        /* the decoding buffer is reused by the value: keep an escaped key apart */
        char *kheap = NULL;
        if (k == r->tmp) {
            if (kn < sizeof(small)) {
                memcpy(small, k, kn);
                k = small;
            } else {
                k = kheap = fb_strndup(k, kn);
            }
        }
        skip_ws(r);
        json_t *v = NULL;
        if (r->p < r->e && *r->p == ':') {
            r->p++;
            skip_ws(r);
            v = read_value(r);
        }
        int rc = v ? json_object_setn_new_nocheck(o, k, kn, v) : -1;
        fb_free(kheap);
        if (rc)
            break;
        skip_ws(r);
        if (r->p >= r->e)
            break;
        char c = *r->p++;
        if (c == '}')
            return o;
        if (c != ',')
            break;
        skip_ws(r);
    }
    json_decref(o);
    return NULL;
}

/* A value at r->p (no blank before it), at any depth. */
static json_t *read_value_here(struct rd *r)
{
    if (r->p >= r->e)
        return NULL;
    switch (*r->p) {
    case '{':
        return read_object(r);
    case '[':
        return read_array(r);
    case '"': {
        const char *s;
        size_t n;
        r->p++;
        if (!read_string(r, &s, &n))
            return NULL;
        json_t *known = r->intern ? r->intern(r->intern_arg, s, n) : NULL;
        return known ? json_incref(known) : json_stringn_nocheck(s, n);
    }
    case 't':
        return after_token(r, literal(r, "true", 4) ? json_true() : NULL);
    case 'f':
        return after_token(r, literal(r, "false", 5) ? json_false() : NULL);
    case 'n':
        return after_token(r, literal(r, "null", 4) ? json_null() : NULL);
    default:
        return after_token(r, read_number(r));
    }
}

/* A value at r->p. Every value counts one level, scalars too, as in jansson's parse_value():
 * 2048 nested arrays are refused with a number inside, accepted empty. */
static json_t *read_value(struct rd *r)
{
    if (r->depth >= FB_JSON_MAX_DEPTH)
        return NULL;
    r->depth++;
    json_t *v = read_value_here(r);
    r->depth--;
    return v;
}

json_t *fb_json_loadb(const char *s, size_t n)
{
    return fb_json_loadb_interned(s, n, NULL, NULL);
}

json_t *fb_json_loadb_interned(const char *s, size_t n, fb_json_intern_fn intern, void *arg)
{
    struct rd r = {.p = s, .e = s + n, .intern = intern, .intern_arg = arg};
    skip_ws(&r);
    json_t *v = NULL;
    if (r.p < r.e && (*r.p == '{' || *r.p == '['))
        v = read_value(&r);
    if (v) {
        skip_ws(&r);
        if (r.p != r.e) {
            json_decref(v);
            v = NULL;
        }
    }
    fb_free(r.tmp);
    return v;
}

/* ---- writer ---- */

/* The text being written: grown by doubling, appended to the caller's fb_buf once at the end. */
struct wr {
    char *p;
    size_t len, cap;
};

/* room()'s slow path: grows the block to hold `n` more bytes. */
static char *grow(struct wr *w, size_t n)
{
    size_t cap = w->cap ? w->cap : 1024;
    while (cap < w->len + n)
        cap *= 2;
    w->p = fb_realloc(w->p, cap);
    w->cap = cap;
    return w->p + w->len;
}

/* Room for `n` more bytes (a first block of 1 KiB, then doubling). */
static inline char *room(struct wr *w, size_t n)
{
    return w->p && w->len + n <= w->cap ? w->p + w->len : grow(w, n);
}

static inline void put(struct wr *w, const char *s, size_t n)
{
    memcpy(room(w, n), s, n);
    w->len += n;
}

/* One byte of punctuation. */
static inline void put1(struct wr *w, char c)
{
    *room(w, 1) = c;
    w->len++;
}

static int dump_string(const char *s, size_t n, struct wr *w)
{
    static const char hex[] = "0123456789ABCDEF";
    char *o = room(w, 6 * n + 2); /* every byte escaped as \u00XX at worst */
    *o++ = '"';
    uint64_t hi = 0; /* the bytes' high bits: only non-ASCII text needs the UTF-8 check */
    size_t i = 0;
    /* 8 plain bytes at a time, copied as they are; a word with a byte to escape goes byte by
     * byte */
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, s + i, 8);
        if (word_special(x))
            break;
        hi |= x;
        memcpy(o, &x, 8);
        o += 8;
    }
    for (; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        hi |= c;
        if (c >= 0x20 && c != '"' && c != '\\') {
            *o++ = (char)c;
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"':
        case '\\':
            *o++ = (char)c;
            break;
        case '\b':
            *o++ = 'b';
            break;
        case '\f':
            *o++ = 'f';
            break;
        case '\n':
            *o++ = 'n';
            break;
        case '\r':
            *o++ = 'r';
            break;
        case '\t':
            *o++ = 't';
            break;
        default:
            o[0] = 'u';
            o[1] = '0';
            o[2] = '0';
            o[3] = hex[c >> 4];
            o[4] = hex[c & 15];
            o += 5;
            break;
        }
    }
    if ((hi & HIGHS) && !fb_utf8_valid(s, n))
        return FB_EINVAL; /* nothing is kept of what was written */
    *o++ = '"';
    w->len = (size_t)(o - w->p);
    return 0;
}

/* A real as jansson writes it: "%.17g", ".0" added when it would read back as an integer, the
 * exponent without '+' nor leading zeros. */
static int dump_real(double d, struct wr *w)
{
    char b[40];
    int n = snprintf(b, sizeof(b), "%.17g", d);
    if (n <= 0 || (size_t)n >= sizeof(b) - 2)
        return FB_EINVAL;
    if (!strchr(b, '.') && !strchr(b, 'e')) {
        memcpy(b + n, ".0", 3);
        n += 2;
    }
    char *e = strchr(b, 'e');
    if (e) {
        char *start = e + 1, *end = e + 2;
        if (*start == '-')
            start++;
        while (*end == '0')
            end++;
        if (end != start) {
            memmove(start, end, (size_t)(b + n - end) + 1);
            n -= (int)(end - start);
        }
    }
    put(w, b, (size_t)n);
    return 0;
}

static void dump_integer(json_int_t v, struct wr *w)
{
    char b[24];
    size_t i = sizeof(b);
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        b[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        b[--i] = '-';
    put(w, b + i, sizeof(b) - i);
}

/* `depth`: the levels above v. A value the reader (and jansson's) would refuse for its depth
 * is not written (json_dumps() would write it): what is written can always be read back. */
static int dump(const json_t *v, struct wr *w, int depth)
{
    json_t *m = (json_t *)(uintptr_t)v; /* jansson's iterators take non-const pointers */
    if (depth >= FB_JSON_MAX_DEPTH)
        return FB_EINVAL;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        put1(w, '{');
        bool first = true;
        const char *k;
        size_t kn;
        json_t *x;
        json_object_keylen_foreach(m, k, kn, x)
        {
            if (!first)
                put1(w, ',');
            int rc = dump_string(k, kn, w);
            if (rc)
                return rc;
            put1(w, ':');
            if ((rc = dump(x, w, depth + 1)) != 0)
                return rc;
            first = false;
        }
        put1(w, '}');
        return 0;
    }
    case JSON_ARRAY: {
        put1(w, '[');
        size_t n = json_array_size(v);
        for (size_t i = 0; i < n; i++) {
            if (i)
                put1(w, ',');
            int rc = dump(json_array_get(v, i), w, depth + 1);
            if (rc)
                return rc;
        }
        put1(w, ']');
        return 0;
    }
    case JSON_STRING:
        return dump_string(json_string_value(v), json_string_length(v), w);
    case JSON_INTEGER:
        dump_integer(json_integer_value(v), w);
        return 0;
    case JSON_REAL:
        return dump_real(json_real_value(v), w);
    case JSON_TRUE:
        put(w, "true", 4);
        return 0;
    case JSON_FALSE:
        put(w, "false", 5);
        return 0;
    case JSON_NULL:
        put(w, "null", 4);
        return 0;
    }
    return FB_EINVAL;
}

int fb_json_dump(const json_t *v, fb_buf_t *out)
{
    if (!v)
        return FB_EINVAL;
    struct wr w = {0};
    int rc = dump(v, &w, 0);
    if (!rc)
        rc = fb_buf_append(out, w.p, w.len);
    fb_free(w.p);
    return rc;
}
