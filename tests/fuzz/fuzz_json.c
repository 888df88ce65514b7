/* SPDX-License-Identifier: MIT */
/*
 * fuzz_json.c - libFuzzer target for the fast JSON reader and writer (daemon/common/json.c), the
 * router's codec of stored sessions.
 *
 * Any byte string is read by both fb_json_loadb() and jansson's json_loadb(): both must accept or
 * both refuse, with equal values; an accepted value must be written by fb_json_dump() to exactly
 * json_dumps(JSON_COMPACT)'s bytes, which fb_json_loadb() reads back to an equal value.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/json.h"
#include "frichebot/alloc.h"
#include "frichebot/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    json_error_t err;
    json_t *a = json_loadb(s, size, 0, &err);
    json_t *b = fb_json_loadb(s, size);
    if (!a != !b)
        abort(); /* one accepts what the other refuses */
    if (a) {
        if (!json_equal(a, b))
            abort();
        char *want = json_dumps(a, JSON_COMPACT);
        fb_buf_t out;
        fb_buf_init(&out, 1u << 26);
        if (!want || fb_json_dump(b, &out) || strcmp(want, fb_buf_str(&out)) != 0)
            abort();
        json_t *back = fb_json_loadb(out.data, out.len);
        if (!back || !json_equal(back, a))
            abort();
        json_decref(back);
        fb_buf_free(&out);
        free(want); /* jansson's allocation */
    }
    json_decref(a);
    json_decref(b);
    return 0;
}
