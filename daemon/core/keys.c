/* SPDX-License-Identifier: MIT */
/*
 * keys.c - the Redis key names (keys.h).
 */
#include "core/keys.h"

#include <string.h>

#include "frichebot/alloc.h"

/* The bytes fb_key_conv() escapes: the hash tag's braces, '%' itself and the control bytes. */
static const unsigned char escaped[256] = {
    [0x01] = 1, [0x02] = 1, [0x03] = 1, [0x04] = 1, [0x05] = 1, [0x06] = 1, [0x07] = 1,
    [0x08] = 1, [0x09] = 1, [0x0a] = 1, [0x0b] = 1, [0x0c] = 1, [0x0d] = 1, [0x0e] = 1,
    [0x0f] = 1, [0x10] = 1, [0x11] = 1, [0x12] = 1, [0x13] = 1, [0x14] = 1, [0x15] = 1,
    [0x16] = 1, [0x17] = 1, [0x18] = 1, [0x19] = 1, [0x1a] = 1, [0x1b] = 1, [0x1c] = 1,
    [0x1d] = 1, [0x1e] = 1, [0x1f] = 1, ['%'] = 1,  ['{'] = 1,  ['}'] = 1,  [0x7f] = 1,
};

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
    /* Runs of plain bytes are copied whole: a key is built about twenty times per message
     * (issue 17), and conversation keys nearly never need escaping. */
    size_t i = 0;
    while (i < klen) {
        size_t run = i;
        while (run < klen && !escaped[(unsigned char)conv_key[run]])
            run++;
        memcpy(key + pos, conv_key + i, run - i);
        pos += run - i;
        if (run == klen)
            break;
        unsigned char ch = (unsigned char)conv_key[run];
        key[pos++] = '%';
        key[pos++] = hex[ch >> 4];
        key[pos++] = hex[ch & 15];
        i = run + 1;
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
    return fb_asprintf("%s" FB_KEY_GLOBAL_TAG "%s", prefix ? prefix : "", name);
}

char *fb_key_stats(const char *prefix, const char *name)
{
    return fb_asprintf("%s" FB_KEY_GLOBAL_TAG FB_KEY_STATS_NS "%s", prefix ? prefix : "", name);
}

/*
 * The old layout's global names: exactly these, or starting with one of `starts` (the stats',
 * the roadmap index, the e-mail confirmations, the Matrix adapter's own: auth, sync, recent,
 * e2ee:*, txn:*). A name starting with '{' (a conversation's, or already under {g}) is never
 * one. Allowed under maxmemory (allow-oom): renames allocate nothing.
 */
const char FB_KEYS_MIGRATE_LUA[] =
    "#!lua flags=allow-oom\n"
    "local flag, prefix = KEYS[1], ARGV[1]\n"
    "if redis.call('EXISTS', flag) == 1 then return {0, 0, 1} end\n"
    "if string.find(redis.call('INFO', 'cluster'), 'cluster_enabled:1', 1, true) then\n"
    "  return {0, 0, 2}\n"
    "end\n"
    "local exact = {['" FB_KEY_PENDING "'] = 1, ['" FB_KEY_DUE "'] = 1, ['" FB_KEY_CLAIMED
    "'] = 1,\n"
    "  ['" FB_KEY_CLAIMS "'] = 1, ['" FB_KEY_STATS "'] = 1, ['" FB_KEY_AVIS "'] = 1,\n"
    "  ['" FB_KEY_MARKS_SINCE "'] = 1, ['" FB_KEY_ESC_OPEN "'] = 1, ['" FB_KEY_ESC_ROOTS "'] = 1,\n"
    "  ['redis:marker'] = 1, ['redis:epoch'] = 1}\n"
    "local starts = {'" FB_KEY_STATS_NS "', '" FB_KEY_ROADMAP_IX "', 'email:confirm:', "
    "'matrix:'}\n"
    "local pattern = string.gsub(prefix, '[%*%?%[%]\\\\]', '\\\\%0') .. '*'\n"
    "local renamed, left, cursor = 0, 0, '0'\n"
    "repeat\n"
    "  local r = redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', 1000)\n"
    "  cursor = r[1]\n"
    "  for _, k in ipairs(r[2]) do\n"
    "    local name = string.sub(k, #prefix + 1)\n"
    "    local old = exact[name]\n"
    "    if not old then\n"
    "      for _, s in ipairs(starts) do\n"
    "        if string.sub(name, 1, #s) == s then old = 1 break end\n"
    "      end\n"
    "    end\n"
    "    if old then\n"
    "      local new = prefix .. '" FB_KEY_GLOBAL_TAG "' .. name\n"
    "      if redis.call('EXISTS', new) == 0 then\n"
    "        redis.call('RENAME', k, new)\n"
    "        renamed = renamed + 1\n"
    "      else\n"
    "        left = left + 1\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "until cursor == '0'\n"
    "redis.call('SET', flag, '1')\n"
    "return {renamed, left, 0}\n";

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
