/* SPDX-License-Identifier: MIT */
/*
 * keys.c - the Redis key names (keys.h).
 */
#include "core/keys.h"

#include <string.h>

#include "frichebot/alloc.h"

char *fb_key_conv(const char *prefix, const char *conv_key, const char *suffix)
{
    static const char hex[] = "0123456789ABCDEF";
    if (!conv_key || !conv_key[0] || strlen(conv_key) > FB_KEYS_MAX_CONV || !suffix)
        return NULL;
    if (!prefix)
        prefix = "";
    size_t plen = strlen(prefix), klen = strlen(conv_key), slen = strlen(suffix);
    char *key = fb_malloc(plen + 3 * klen + slen + 8);
    size_t pos = 0;
    memcpy(key, prefix, plen);
    pos += plen;
    memcpy(key + pos, "{c:", 3);
    pos += 3;
    for (size_t i = 0; i < klen; i++) {
        unsigned char ch = (unsigned char)conv_key[i];
        if (ch == '{' || ch == '}' || ch == '%' || ch < 0x20 || ch == 0x7f) {
            key[pos++] = '%';
            key[pos++] = hex[ch >> 4];
            key[pos++] = hex[ch & 15];
        } else {
            key[pos++] = (char)ch;
        }
    }
    key[pos++] = '}';
    key[pos++] = ':';
    memcpy(key + pos, suffix, slen);
    pos += slen;
    key[pos] = '\0';
    return key;
}

char *fb_key_global(const char *prefix, const char *name)
{
    return fb_asprintf("%s%s", prefix ? prefix : "", name);
}

char *fb_key_stats(const char *prefix, const char *name)
{
    return fb_asprintf("%s" FB_KEY_STATS_NS "%s", prefix ? prefix : "", name);
}

unsigned fb_key_slot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open) {
        const char *end = key + len;
        const char *close = memchr(open + 1, '}', (size_t)(end - open - 1));
        if (close && close > open + 1) { /* "{}" is no tag: the whole key is hashed */
            key = open + 1;
            len = (size_t)(close - key);
        }
    }
    unsigned crc = 0; /* CRC16-CCITT, XMODEM variant: polynomial 0x1021, initial value 0 */
    for (size_t i = 0; i < len; i++) {
        crc ^= (unsigned)(unsigned char)key[i] << 8;
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
    return crc & 16383;
}
