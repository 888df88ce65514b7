/* SPDX-License-Identifier: MIT */
/*
 * test_http_encoding.c - content coding negotiation (daemon/io/http_encoding.c). The same rules
 * over the real daemon and its precompressed files: tests/integration/test_http.py.
 */
#include <stddef.h>

#include "io/http_encoding.h"
#include "task.h"

#define ID   FB_HTTP_CODING_IDENTITY
#define GZ   FB_HTTP_CODING_GZIP
#define BR   FB_HTTP_CODING_BR
#define BOTH (FB_HTTP_CODING_GZIP | FB_HTTP_CODING_BR)

TEST_IMPL(http_pick_coding)
{
    static const struct {
        const char *accept;
        unsigned available, want;
    } v[] = {
        /* no header: identity, whatever is available */
        {NULL, BOTH, ID},
        {"", BOTH, ID},
        /* a browser's list: br preferred, gzip without a br variant */
        {"gzip, deflate, br", BOTH, BR},
        {"gzip, deflate, br, zstd", GZ, GZ},
        {"gzip, deflate", BOTH, GZ},
        {"deflate", BOTH, ID},
        {"br", ID, ID},
        {"BR", BOTH, BR},
        {"x-gzip", BOTH, GZ},
        /* weights: the highest wins; ties go to br, then gzip, then identity */
        {"gzip;q=1, br;q=0.5", BOTH, GZ},
        {"gzip;q=0.5, br;q=0.5", BOTH, BR},
        {"gzip;q=0.9, identity", BOTH, ID},
        {"gzip ; q=0.9 , br ; q=0.95", BOTH, BR},
        {"gzip;Q=0.9,br;q=0.1", BOTH, GZ},
        {"gzip;level=9;q=0.8, br;q=0.7", BOTH, GZ},
        /* q=0 refuses */
        {"br;q=0, gzip", BOTH, GZ},
        {"br;q=0, gzip;q=0", BOTH, ID},
        {"br;q=0.000, gzip;q=0.0", BOTH, ID},
        {"gzip;q=0.001", BOTH, GZ},
        /* the asterisk */
        {"*", BOTH, BR},
        {"*;q=0.5, br;q=0", BOTH, GZ},
        {"*;q=0", BOTH, ID}, /* nothing acceptable: identity all the same */
        {"*;q=0, gzip", BOTH, GZ},
        {"identity;q=0, gzip", BOTH, GZ},
        {"identity;q=0", BOTH, ID},
        {"identity;q=0.5, *;q=0.4", BOTH, ID},
        /* malformed weights count as 0 */
        {"br;q=2, gzip", BOTH, GZ},
        {"br;q=1.5, gzip", BOTH, GZ},
        {"br;q=0.12345, gzip", BOTH, GZ},
        {"br;q=abc, gzip", BOTH, GZ},
        {"br;q=, gzip", BOTH, GZ},
        {"br;q=1.000, gzip;q=1", BOTH, BR},
        /* a coding listed twice keeps its highest weight; stray commas and spaces */
        {"br;q=0, br;q=0.5, gzip;q=0.4", BOTH, BR},
        {" , ,gzip,, ", BOTH, GZ},
        {"brotli, gzipx", BOTH, ID},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        unsigned got = fb_http_pick_coding(v[i].accept, v[i].available);
        if (got != v[i].want)
            FB_TEST_FAIL("\"%s\" among %u: got %u, want %u", v[i].accept ? v[i].accept : "(none)",
                         v[i].available, got, v[i].want);
    }
    ASSERT_STR_EQ(fb_http_coding_name(BR), "br");
    ASSERT_STR_EQ(fb_http_coding_name(GZ), "gzip");
    ASSERT_NULL(fb_http_coding_name(ID));
    return 0;
}
