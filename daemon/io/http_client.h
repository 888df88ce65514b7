/* SPDX-License-Identifier: MIT */
/*
 * http_client.h - the outgoing HTTP client: one curl multi handle driven by the libuv loop.
 *
 * Adapters (Matrix, webhooks) send every outgoing HTTP request through one shared client. It
 * keeps connections alive and reuses them (a bounded pool per host), bounds every attempt with
 * a timeout and every response with a size limit, and retries transient failures (connection
 * failures, timeouts, dropped connections, 5xx, 429; Retry-After honoured on 429 and 503) on a
 * uv_timer according to a retry policy that is data (fb_retry_policy_t in config.h); other 4xx
 * are final. Redirects are not followed. Everything runs on the loop thread; nothing blocks.
 *
 * The async contract (err.h): fb_http_client_request() returning 0 means the callback fires
 * exactly once, later, never inside the call itself; an error return means it never fires.
 * Closing the client completes every pending request with FB_ECANCELED.
 *
 * Privacy: requests are logged at DEBUG with a tag such as "[req|17|GET 127.0.0.1/path]"; query
 * strings, headers and bodies are never logged, since they may carry access tokens.
 *
 * Design notes: docs/internals/HTTP_CLIENT.md.
 */
#ifndef FB_HTTP_CLIENT_H
#define FB_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <uv.h>

#include "io/config.h"

/** The client: opaque, created by fb_http_client_create(), freed by fb_http_client_close(). */
typedef struct fb_http_client_s fb_http_client_t;

/** Longest wait honoured from a Retry-After header; longer values are capped to this. */
#define FB_HTTP_RETRY_AFTER_MAX_MS 300000L /* 5 minutes */

/** Response headers kept per attempt (bytes of header lines); more fails with FB_ETOOBIG. */
#define FB_HTTP_MAX_HEADER_BYTES ((size_t)64 << 10)

/** One outgoing request. Everything is borrowed for the duration of fb_http_client_request()
 * only: the client copies what it keeps. */
typedef struct fb_http_request_s {
    const char *method;             /* "GET", "POST", "PUT", "DELETE", ...; NULL means "GET" */
    const char *url;                /* absolute http:// or https:// URL; required */
    const char *const *headers;     /* NULL-terminated array of "Name: value" lines, or NULL */
    const void *body;               /* request body, or NULL for none */
    size_t body_len;                /* bytes of body */
    unsigned timeout_ms;            /* per-attempt timeout; 0 means the client's default */
    const fb_retry_policy_t *retry; /* NULL means the client's default policy; copied */
    bool idempotent; /* the caller says repeating the request is harmless: a POST or PATCH
                      * is only retried when this is set; GET, HEAD, PUT, DELETE, OPTIONS and
                      * TRACE always are. To never retry, pass a policy with max_attempts 1. */
} fb_http_request_t;

/** One response header, as received (name without the colon, value trimmed). */
typedef struct fb_http_header_s {
    const char *name;
    const char *value;
} fb_http_header_t;

/** What the callback receives. Borrowed: valid only until the callback returns. */
typedef struct fb_http_response_s {
    int status; /* final HTTP status of the last attempt, 0 when none was received */
    int error;  /* 0, or FB_ETIMEDOUT, FB_ECONNECT, FB_ETOOBIG, FB_EHTTP (final status >= 400),
                 * FB_ECANCELED (client closed), FB_EIO (connection dropped mid-transfer),
                 * FB_EPROTO (TLS or protocol failure) */
    const char *body;  /* response body of the last attempt, NUL-terminated; "" when none */
    size_t body_len;   /* bytes of body (the NUL is not counted) */
    unsigned attempts; /* attempts started, including the first */
    const fb_http_header_t *headers; /* response headers of the last attempt, in order */
    size_t n_headers;                /* entries in headers */
    const char *tag;                 /* the request's log tag, "[req|17|GET host/path]" */
} fb_http_response_t;

/** Completion callback: called exactly once per accepted request, on the loop thread. `resp`
 * is borrowed until the callback returns. The callback may start new requests or close the
 * client. */
typedef void (*fb_http_done_cb)(const fb_http_response_t *resp, void *arg);

/**
 * Creates a client on `loop`. `opts` is copied. Returns NULL on failure (curl could not make a
 * multi handle, or a uv handle could not be initialized); nothing is left on the loop then.
 * The client holds uv handles on the loop until fb_http_client_close() completes.
 */
fb_http_client_t *fb_http_client_create(uv_loop_t *loop, const fb_http_client_opts_t *opts);

/** Returns the number of accepted requests not yet completed, including those waiting for a
 * retry. */
size_t fb_http_client_pending(const fb_http_client_t *c);

/** Returns how many of the pending requests are waiting on a timer for their next attempt. */
size_t fb_http_client_waiting(const fb_http_client_t *c);

/**
 * Starts a request. Returns 0, after which `cb(resp, arg)` fires exactly once later (never
 * inside this call); or, with `cb` never called: FB_EINVAL for a bad argument (missing or
 * malformed URL, a scheme other than http/https, a header line without a colon or with CR/LF, a
 * bad method), FB_ECLOSING once fb_http_client_close() was called, FB_EIO when curl refuses the
 * transfer. `req` and everything it points to are copied.
 */
int fb_http_client_request(fb_http_client_t *c, const fb_http_request_t *req, fb_http_done_cb cb,
                           void *arg);

/**
 * Closes the client, asynchronously. Every pending request (in flight or waiting for a retry)
 * completes with FB_ECANCELED exactly once before this function returns; requests started from
 * those callbacks are refused with FB_ECLOSING. Then every uv handle of the client is closed,
 * and once the last one has closed (on a later loop iteration, never inside this call)
 * `done(arg)` is called, if `done` is not NULL, after the client has been freed. May be called
 * from inside a request callback. Must be called exactly once; `c` is invalid after the call.
 */
void fb_http_client_close(fb_http_client_t *c, void (*done)(void *arg), void *arg);

/**
 * Cancels every pending request (in flight or waiting for a retry) started with this `cb` and
 * `arg`: each completes with FB_ECANCELED exactly once, **inside this call** (as with close), a
 * request cancelled mid-attempt with status 0 and no body, one waiting for a retry with its last
 * attempt's response. Requests started from those callbacks are not cancelled. Returns how many
 * requests matched (0 when none, or when the client is closing). Must not be called from curl's
 * own callbacks (it is not: user callbacks run outside them).
 */
size_t fb_http_client_cancel(fb_http_client_t *c, fb_http_done_cb cb, const void *arg);

/**
 * Returns the value of the first response header named `name` (case-insensitive), or NULL.
 * Borrowed like `resp` itself.
 */
const char *fb_http_response_header(const fb_http_response_t *resp, const char *name);

/**
 * Pure: the wait in milliseconds asked by a Retry-After header `value` (delta-seconds, or an
 * HTTP date compared with `now`; a date in the past gives 0), capped at
 * FB_HTTP_RETRY_AFTER_MAX_MS. Returns -1 when `value` is NULL or unreadable.
 */
long fb_http_retry_after_ms(const char *value, time_t now);

#endif /* FB_HTTP_CLIENT_H */
