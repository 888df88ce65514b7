/* SPDX-License-Identifier: MIT */
/*
 * test_digest.c - SHA-1 and SHA-256 (daemon/common/digest.c) against the FIPS 180 examples, around
 * the padding boundary and over one million bytes; hex output and tags.
 */
#include <string.h>

#include "common/digest.h"
#include "frichebot/alloc.h"
#include "task.h"

TEST_IMPL(digest_sha256_vectors)
{
    /* FIPS 180-4 examples, plus lengths around the padding boundary (55, 56, 64 bytes). */
    static const struct {
        const char *in;
        const char *want;
    } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopq"
         "rlmnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
    };
    char out[65];
    unsigned char h[32];
    for (size_t i = 0; i < FB_ARRAY_SIZE(v); i++) {
        fb_sha256(v[i].in, strlen(v[i].in), h);
        fb_hex(h, 32, out);
        ASSERT_STR_EQ(out, v[i].want);
    }
    /* One million 'a' (FIPS 180-2 appendix B.3), in one call. */
    char *a = fb_malloc(1000000);
    memset(a, 'a', 1000000);
    fb_sha256(a, 1000000, h);
    fb_free(a);
    fb_hex(h, 32, out);
    ASSERT_STR_EQ(out, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    return 0;
}

TEST_IMPL(digest_sha1_vectors)
{
    /* FIPS 180-1 / RFC 3174 examples, and the empty string. */
    static const struct {
        const char *in;
        const char *want;
    } v[] = {
        {"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
        {"abc", "a9993e364706816aba3e25717850c26c9cd0d89d"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "84983e441c3bd26ebaae4aa1f95129e5e54670f1"},
    };
    char out[41];
    unsigned char h[20];
    for (size_t i = 0; i < FB_ARRAY_SIZE(v); i++) {
        fb_sha1(v[i].in, strlen(v[i].in), h);
        fb_hex(h, 20, out);
        ASSERT_STR_EQ(out, v[i].want);
    }
    char *a = fb_malloc(1000000);
    memset(a, 'a', 1000000);
    fb_sha1(a, 1000000, h);
    fb_free(a);
    fb_hex(h, 20, out);
    ASSERT_STR_EQ(out, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
    /* a tag is the start of the SHA-256 in hex */
    char tag[7];
    fb_sha256_tag("abc", 3, tag);
    ASSERT_STR_EQ(tag, "ba7816");
    return 0;
}
