/* SPDX-License-Identifier: MIT */
/*
 * http_encoding.c - content coding negotiation (RFC 9110, section 12.5.3); see http_encoding.h.
 */
#include "io/http_encoding.h"

#include <stdbool.h>
#include <stddef.h>
#include <strings.h>

/* Weights are kept in thousandths, as RFC 9110's qvalue has at most three decimals. */
#define Q_ONE     1000
#define Q_UNKNOWN (-1)

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/*
 * Parses a qvalue ("0", "0.5", "1.000") of `n` bytes at `s`; returns thousandths, or 0 when it
 * is malformed (RFC 9110, section 12.4.2).
 */
static int parse_q(const char *s, size_t n)
{
    if (n == 0 || (s[0] != '0' && s[0] != '1'))
        return 0;
    int q = (s[0] - '0') * Q_ONE;
    if (n == 1)
        return q;
    if (s[1] != '.' || n > 5)
        return 0;
    int scale = 100;
    for (size_t i = 2; i < n; i++, scale /= 10) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        q += (s[i] - '0') * scale;
    }
    return q > Q_ONE ? 0 : q;
}

/* True when the `n` bytes at `s` are `word`, ignoring case. */
static bool token_is(const char *s, size_t n, const char *word)
{
    size_t wn = 0;
    while (word[wn])
        wn++;
    return n == wn && strncasecmp(s, word, n) == 0;
}

/*
 * The weight of one element "token *( OWS ; OWS param )" of `n` bytes at `s`: the value of its
 * q parameter, Q_ONE without one. Other parameters are ignored.
 */
static int element_q(const char *s, size_t n)
{
    int q = Q_ONE;
    size_t i = 0;
    while (i < n && s[i] != ';')
        i++;
    while (i < n) {
        i++; /* the ';' */
        while (i < n && is_ows(s[i]))
            i++;
        size_t p = i;
        while (i < n && s[i] != ';')
            i++;
        size_t e = i;
        while (e > p && is_ows(s[e - 1]))
            e--;
        if (e - p >= 2 && (s[p] == 'q' || s[p] == 'Q') && s[p + 1] == '=')
            q = parse_q(s + p + 2, e - p - 2);
    }
    return q;
}

unsigned fb_http_pick_coding(const char *accept, unsigned available)
{
    available |= FB_HTTP_CODING_IDENTITY;
    if (!accept)
        return FB_HTTP_CODING_IDENTITY;
    int q_br = Q_UNKNOWN, q_gzip = Q_UNKNOWN, q_identity = Q_UNKNOWN, q_star = Q_UNKNOWN;
    for (const char *p = accept; *p;) {
        while (*p == ',' || is_ows(*p))
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        size_t tlen = 0;
        while (p + tlen < e && p[tlen] != ';' && !is_ows(p[tlen]))
            tlen++;
        if (tlen) {
            int q = element_q(p, (size_t)(e - p));
            /* A coding listed twice keeps its highest weight. */
            int *slot = token_is(p, tlen, "br")                                    ? &q_br
                        : token_is(p, tlen, "gzip") || token_is(p, tlen, "x-gzip") ? &q_gzip
                        : token_is(p, tlen, "identity")                            ? &q_identity
                        : token_is(p, tlen, "*")                                   ? &q_star
                                                                                   : NULL;
            if (slot && q > *slot)
                *slot = q;
        }
        p = e;
    }
    if (q_br == Q_UNKNOWN)
        q_br = q_star == Q_UNKNOWN ? 0 : q_star;
    if (q_gzip == Q_UNKNOWN)
        q_gzip = q_star == Q_UNKNOWN ? 0 : q_star;
    /* Identity not named is acceptable, but last: the lowest weight there is. */
    if (q_identity == Q_UNKNOWN)
        q_identity = q_star == Q_UNKNOWN ? 1 : q_star;
    /* In order of preference: a later one wins only with a strictly higher weight. */
    unsigned best = 0;
    int best_q = 0;
    const struct {
        unsigned bit;
        int q;
    } order[] = {{FB_HTTP_CODING_BR, q_br},
                 {FB_HTTP_CODING_GZIP, q_gzip},
                 {FB_HTTP_CODING_IDENTITY, q_identity}};
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
        if ((available & order[i].bit) && order[i].q > best_q) {
            best = order[i].bit;
            best_q = order[i].q;
        }
    return best ? best : FB_HTTP_CODING_IDENTITY;
}

const char *fb_http_coding_name(unsigned coding)
{
    switch (coding) {
    case FB_HTTP_CODING_BR:
        return "br";
    case FB_HTTP_CODING_GZIP:
        return "gzip";
    default:
        return NULL;
    }
}
