/* SPDX-License-Identifier: MIT */
/*
 * test_buf.c - bounded growable buffers (daemon/common/buf.c): fb_buf_reserve() makes room
 * without touching the contents nor passing the maximum.
 */
#include <string.h>

#include "frichebot/buf.h"
#include "task.h"

TEST_IMPL(buf_reserve)
{
    fb_buf_t b;
    fb_buf_init(&b, 100);
    /* On an empty buffer: still empty, "" as contents. */
    fb_buf_reserve(&b, 50);
    ASSERT_EQ(b.len, 0);
    ASSERT_STR_EQ(fb_buf_str(&b), "");
    /* Appends within the reserved room keep the same block. */
    const char *before = b.data;
    ASSERT_OK(fb_buf_puts(&b, "bonjour"));
    ASSERT(b.data == before);
    ASSERT_STR_EQ(fb_buf_str(&b), "bonjour");
    /* Past the maximum: only up to it, and the maximum still holds for appends. */
    fb_buf_reserve(&b, 1000);
    ASSERT_STR_EQ(fb_buf_str(&b), "bonjour");
    char fill[93];
    memset(fill, 'x', sizeof(fill));
    ASSERT_OK(fb_buf_append(&b, fill, sizeof(fill)));
    ASSERT_EQ(b.len, 100);
    ASSERT_EQ(fb_buf_append(&b, "y", 1), FB_ETOOBIG);
    ASSERT_NULL(b.data);
    /* A smaller reserve than what is there changes nothing. */
    ASSERT_OK(fb_buf_puts(&b, "abc"));
    fb_buf_reserve(&b, 0);
    ASSERT_STR_EQ(fb_buf_str(&b), "abc");
    fb_buf_free(&b);
    return 0;
}
