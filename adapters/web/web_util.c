/* SPDX-License-Identifier: MIT */
/*
 * web_util.c - tokens, tags, ids, the token bucket and history entries of the web chat adapter.
 */
#include "web_util.h"

#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "frichebot/alloc.h"
#include "frichebot/err.h"

/* ---------------------------------------------------------------------------------------- */
/* SHA-256 (FIPS 180-4), for the tokens' log tags. */

static const uint32_t sha256_k[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u,
    0xab1c5ed5u, 0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu,
    0x9bdc06a7u, 0xc19bf174u, 0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu,
    0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau, 0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u,
    0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u, 0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu,
    0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u, 0xa2bfe8a1u, 0xa81a664bu,
    0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u, 0x19a4c116u,
    0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u,
    0xc67178f2u};

static uint32_t ror32(uint32_t x, unsigned n)
{
    return (x >> n) | (x << (32 - n));
}

static void sha256_block(uint32_t h[8], const unsigned char *p)
{
    uint32_t w[64];
    for (size_t i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (size_t i = 16; i < 64; i++) {
        uint32_t s0 = ror32(w[i - 15], 7) ^ ror32(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror32(w[i - 2], 17) ^ ror32(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (size_t i = 0; i < 64; i++) {
        uint32_t s1 = ror32(e, 6) ^ ror32(e, 11) ^ ror32(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t t1 = k + s1 + ch + sha256_k[i] + w[i];
        uint32_t s0 = ror32(a, 2) ^ ror32(a, 13) ^ ror32(a, 22);
        uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = s0 + maj;
        k = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += k;
}

void fb_web_sha256(const void *data, size_t len, unsigned char out[32])
{
    uint32_t h[8] = {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                     0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u};
    const unsigned char *p = data;
    size_t full = len / 64, rem = len % 64;
    for (size_t i = 0; i < full; i++)
        sha256_block(h, p + 64 * i);
    unsigned char tail[128];
    memset(tail, 0, sizeof(tail));
    if (rem)
        memcpy(tail, p + 64 * full, rem);
    tail[rem] = 0x80;
    size_t tlen = rem < 56 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;
    for (size_t i = 0; i < 8; i++)
        tail[tlen - 1 - i] = (unsigned char)(bits >> (8 * i));
    sha256_block(h, tail);
    if (tlen == 128)
        sha256_block(h, tail + 64);
    for (size_t i = 0; i < 8; i++) {
        out[4 * i] = (unsigned char)(h[i] >> 24);
        out[4 * i + 1] = (unsigned char)(h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(h[i] >> 8);
        out[4 * i + 3] = (unsigned char)h[i];
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Tokens and ids */

void fb_web_base64url(const unsigned char *in, size_t n, char *out)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
        out[o++] = alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
    }
    out[o] = '\0';
}

int fb_web_token_new(char out[FB_WEB_TOKEN_LEN + 1])
{
    unsigned char raw[32];
    if (uv_random(NULL, NULL, raw, sizeof(raw), 0, NULL) != 0)
        return FB_ESYS;
    fb_web_base64url(raw, sizeof(raw), out);
    memset(raw, 0, sizeof(raw));
    return 0;
}

static bool id_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

bool fb_web_token_valid(const char *s)
{
    if (!s)
        return false;
    size_t i = 0;
    for (; s[i]; i++)
        if (i >= FB_WEB_TOKEN_LEN || !id_char(s[i]))
            return false;
    return i == FB_WEB_TOKEN_LEN;
}

void fb_web_token_tag(const char *token, char out[FB_WEB_TAG_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char h[32];
    fb_web_sha256(token, strlen(token), h);
    for (size_t i = 0; i < FB_WEB_TAG_LEN / 2; i++) {
        out[2 * i] = hex[h[i] >> 4];
        out[2 * i + 1] = hex[h[i] & 15];
    }
    out[FB_WEB_TAG_LEN] = '\0';
}

bool fb_web_id_valid(const char *s)
{
    if (!s || !*s)
        return false;
    size_t i = 0;
    for (; s[i]; i++)
        if (i >= FB_WEB_MAX_ID || !id_char(s[i]))
            return false;
    return true;
}

/* ---------------------------------------------------------------------------------------- */
/* Token bucket */

static void bucket_refill(fb_web_bucket_t *b, unsigned per_minute, uint64_t now_ms)
{
    if (!b->initialized) {
        b->tokens = per_minute;
        b->at_ms = now_ms;
        b->initialized = true;
        return;
    }
    if (now_ms > b->at_ms) {
        b->tokens += (double)(now_ms - b->at_ms) * per_minute / 60000.0;
        if (b->tokens > per_minute)
            b->tokens = per_minute;
    }
    b->at_ms = now_ms;
}

unsigned fb_web_bucket_take(fb_web_bucket_t *b, unsigned per_minute, uint64_t now_ms)
{
    bucket_refill(b, per_minute, now_ms);
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return 0;
    }
    double wait_s = (1.0 - b->tokens) * 60.0 / per_minute;
    unsigned secs = (unsigned)wait_s;
    if ((double)secs < wait_s)
        secs++;
    return secs ? secs : 1;
}

void fb_web_bucket_refund(fb_web_bucket_t *b, unsigned per_minute)
{
    b->tokens += 1.0;
    if (b->tokens > per_minute)
        b->tokens = per_minute;
}

bool fb_web_bucket_full(const fb_web_bucket_t *b, unsigned per_minute, uint64_t now_ms)
{
    if (!b->initialized)
        return true;
    double t = b->tokens;
    if (now_ms > b->at_ms)
        t += (double)(now_ms - b->at_ms) * per_minute / 60000.0;
    return t >= per_minute;
}

/* ---------------------------------------------------------------------------------------- */
/* History entries */

char *fb_web_entry_tail(const json_t *entry)
{
    if (!json_is_object(entry) || json_object_size(entry) == 0)
        return NULL;
    char *s = json_dumps(entry, JSON_COMPACT);
    if (!s)
        return NULL;
    /* "{...}" -> ",...}" ; json_dumps allocates with jansson's allocator (malloc by default). */
    size_t n = strlen(s);
    char *out = fb_malloc(n + 1);
    memcpy(out, s, n + 1);
    out[0] = ',';
    free(s); /* fb-lint: allow free */
    return out;
}

char *fb_web_entry_frame(const char *stored, size_t len, uint64_t *seq)
{
    static const char head[] = "{\"seq\":";
    const size_t hl = sizeof(head) - 1;
    *seq = 0;
    if (len <= hl + 1 || memcmp(stored, head, hl) != 0 || stored[len - 1] != '}')
        return NULL;
    uint64_t v = 0;
    size_t i = hl;
    for (; i < len && stored[i] >= '0' && stored[i] <= '9'; i++) {
        if (v > (UINT64_MAX - 9) / 10)
            return NULL;
        v = v * 10 + (uint64_t)(stored[i] - '0');
    }
    if (i == hl || v == 0 || i >= len || (stored[i] != ',' && stored[i] != '}'))
        return NULL;
    static const char prefix[] = "{\"type\":\"msg\",";
    const size_t pl = sizeof(prefix) - 1;
    char *out = fb_malloc(pl + len - 1 + 1);
    memcpy(out, prefix, pl);
    memcpy(out + pl, stored + 1, len - 1);
    out[pl + len - 1] = '\0';
    *seq = v;
    return out;
}
