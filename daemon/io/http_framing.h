/* SPDX-License-Identifier: MIT */
/*
 * http_framing.h - how long a request's body is, decided strictly (RFC 9112, section 6), and the
 * decoder of chunked bodies (RFC 9112, section 7.1).
 *
 * Pure functions, no I/O: the HTTP server (io/http_server.c) hands them what libwebsockets
 * parsed, and the fuzz target tests/fuzz/fuzz_http_framing.c reaches them directly. The rule is
 * the one that defeats request smuggling: a request whose framing two HTTP implementations could
 * read differently (a repeated or non-numeric Content-Length, Content-Length beside
 * Transfer-Encoding, a Transfer-Encoding other than "chunked", a framing field name spelled with
 * white space) is refused, never guessed at. See docs/internals/HTTP_SERVER.md.
 */
#ifndef FB_IO_HTTP_FRAMING_H
#define FB_IO_HTTP_FRAMING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frichebot/buf.h"

/** One field line's value as received: `len` bytes at `p` (not NUL-terminated, may hold NULs). */
typedef struct fb_http_field_s {
    const char *p;
    size_t len;
} fb_http_field_t;

typedef enum fb_http_framing_kind_e {
    FB_HTTP_FRAMING_NONE,    /* no framing field: no body */
    FB_HTTP_FRAMING_LENGTH,  /* Content-Length: `length` bytes (possibly 0) */
    FB_HTTP_FRAMING_CHUNKED, /* Transfer-Encoding: chunked */
} fb_http_framing_kind_t;

/** The framing of a request, or why it is refused. */
typedef struct fb_http_framing_s {
    fb_http_framing_kind_t kind;
    uint64_t length; /* FB_HTTP_FRAMING_LENGTH only */
    const char *why; /* on refusal: a static English reason, for the log; else NULL */
} fb_http_framing_t;

/**
 * Parses a Content-Length field value: optional spaces and tabs, one or more ASCII digits, optional
 * spaces and tabs, nothing else ("+13", "13, 13", "0x10", "-1" and "" are all refused), and the
 * number must fit in 64 bits. Returns 0 with the number in *out, or FB_EPROTO.
 */
int fb_http_content_length_parse(const char *p, size_t len, uint64_t *out /* OUT */);

/**
 * Decides how the body of a request is framed, from every Content-Length field line `cl` (`ncl`
 * of them) and every Transfer-Encoding field line `te` (`nte`), as received, and `disguised`: a
 * field line was seen whose name is one of those two spelled with white space around it
 * ("Transfer-Encoding : chunked"), which RFC 9112 section 5.1 requires a server to refuse. The
 * accepted framings are: none of those fields (no body); exactly one Content-Length that
 * fb_http_content_length_parse() accepts; exactly one Transfer-Encoding whose value is "chunked"
 * (any case, optional white space around it) and no Content-Length. Anything else is refused.
 * Returns 0 with `*out` filled, or FB_EPROTO with out->why set.
 */
int fb_http_framing_check(const fb_http_field_t *cl, size_t ncl, const fb_http_field_t *te,
                          size_t nte, bool disguised, fb_http_framing_t *out /* OUT */);

/** Longest chunk-size line (size and extensions) accepted by the chunked decoder, in bytes. */
#define FB_HTTP_CHUNK_LINE_MAX 1024
/** Longest trailer section accepted by the chunked decoder, in bytes. */
#define FB_HTTP_TRAILER_MAX 8192
/** Chunk extensions accepted over a whole body, in bytes: each line is bounded by
 *  FB_HTTP_CHUNK_LINE_MAX, but a client sending one byte of data per chunk with a long extension
 *  each would make the server read a thousand bytes per byte of body. */
#define FB_HTTP_CHUNK_EXT_TOTAL_MAX 16384

/** The state of a chunked body being decoded. Zero it with fb_http_chunked_init(). */
typedef struct fb_http_chunked_s {
    /* private */
    int state;
    uint64_t left; /* bytes of the current chunk's data still to come */
    size_t line;   /* bytes of the current size line or trailer section */
    size_t ext;    /* bytes of chunk extensions so far, over the whole body */
    bool digits;   /* the size line has at least one digit */
} fb_http_chunked_t;

/** Prepares `c` for a new body. */
void fb_http_chunked_init(fb_http_chunked_t *c);

/**
 * Decodes the next `len` bytes of a chunked body: the chunks' data is appended to `out`, whose
 * maximum bounds the decoded body. Chunk extensions and trailer fields are checked for shape and
 * dropped. Lines end with CRLF only (a bare LF is a framing error: RFC 9112 lets a recipient
 * accept one, and that is exactly the kind of difference smuggling feeds on).
 *
 * Returns 1 once the last chunk and the trailer section are complete, with `*used` set to the
 * bytes of `in` that belonged to the body (what follows is not part of it; later calls return 1
 * and use nothing); 0 when more bytes are needed (all of `in` used); FB_EPROTO on a framing error
 * (`c` then stays in error); FB_ETOOBIG when the data goes past `out`'s maximum (`out` is then
 * freed, as fb_buf_append() does).
 */
int fb_http_chunked_feed(fb_http_chunked_t *c, const char *in, size_t len, fb_buf_t *out,
                         size_t *used /* OUT */);

#endif /* FB_IO_HTTP_FRAMING_H */
