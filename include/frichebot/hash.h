/* SPDX-License-Identifier: MIT */
/*
 * hash.h - FNV-1a (64 bits): hash-table buckets, short log tags and the stable ids derived from a
 * conversation and an event (outbox transaction ids, write ids). Not for secrets.
 */
#ifndef FRICHEBOT_HASH_H
#define FRICHEBOT_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define FB_FNV64_INIT 0xcbf29ce484222325ULL

/** Continues the FNV-1a hash `h` over `n` bytes at `p` (start with FB_FNV64_INIT). */
static inline uint64_t fb_fnv64(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/** The hash of (conversation key, event id), the NUL between them included: the base of the ids
 *  that must stay the same when the event is handled again (rerun, restart). */
static inline uint64_t fb_event_hash(const char *key, const char *event_id)
{
    return fb_fnv64(fb_fnv64(FB_FNV64_INIT, key, strlen(key) + 1), event_id, strlen(event_id));
}

#endif /* FRICHEBOT_HASH_H */
