/* SPDX-License-Identifier: MIT */
/*
 * digest.h - SHA-1 and SHA-256 (FIPS 180-4) and hex output, for names and tags, never for secrets
 * (tokens are compared in constant time elsewhere; nothing here is keyed).
 */
#ifndef FB_DIGEST_H
#define FB_DIGEST_H

#include <stddef.h>
#include <stdint.h>

/** The SHA-1 of `len` bytes at `data` (Redis names scripts by it; the websocket handshake). */
void fb_sha1(const void *data, size_t len, unsigned char out[20] /* OUT */);

/** The SHA-256 of `len` bytes at `data`. */
void fb_sha256(const void *data, size_t len, unsigned char out[32] /* OUT */);

/** Writes `n` bytes as 2n lower-case hex digits and a NUL to `out`. */
void fb_hex(const unsigned char *in, size_t n, char *out /* OUT, 2n + 1 */);

/** The first `bytes` (at most 32) of the SHA-256 of string `s`, in hex: short log tags and
 *  stable ids that do not reveal `s`. */
void fb_sha256_tag(const char *s, size_t bytes, char *out /* OUT, 2 * bytes + 1 */);

#endif /* FB_DIGEST_H */
