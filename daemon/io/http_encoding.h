/* SPDX-License-Identifier: MIT */
/*
 * http_encoding.h - which content coding to send for a request's Accept-Encoding (RFC 9110,
 * section 12.5.3), among the precompressed variants a static file has.
 *
 * A pure function, no I/O: the HTTP server (io/http_server.c) passes the header's value and the
 * variants it found beside the file; tests/unit/test_http_encoding.c covers the rules. See
 * docs/internals/HTTP_SERVER.md, "Static files".
 */
#ifndef FB_IO_HTTP_ENCODING_H
#define FB_IO_HTTP_ENCODING_H

/** Content codings, as bits of a set. Identity (no coding) is always available. */
enum {
    FB_HTTP_CODING_IDENTITY = 1u << 0,
    FB_HTTP_CODING_GZIP = 1u << 1,
    FB_HTTP_CODING_BR = 1u << 2,
};

/**
 * The coding to send (one FB_HTTP_CODING_* bit) for the Accept-Encoding value `accept` (NULL when
 * the request has none), among `available` (a set of bits; identity is added).
 *
 * Each listed coding carries its weight (`;q=`, 1 when absent; a malformed weight counts as 0,
 * so a garbled header never selects a coding the client may not decode); `*` weighs every
 * coding not listed; `x-gzip` is gzip. A coding neither listed nor covered by `*` is not
 * acceptable, except identity, which is then acceptable with the lowest weight (the last
 * resort: "gzip;q=0.5" still means gzip). The highest weight wins; ties go to the smallest: br,
 * then gzip, then identity. With no
 * header, or when nothing acceptable is available (`identity;q=0` and no variant), identity:
 * RFC 9110 lets a server disregard the header rather than answer 406, and a page that cannot be
 * read is worse than a larger one.
 */
unsigned fb_http_pick_coding(const char *accept, unsigned available);

/** The Content-Encoding token of a coding bit ("br", "gzip"), or NULL for identity. */
const char *fb_http_coding_name(unsigned coding);

#endif /* FB_IO_HTTP_ENCODING_H */
