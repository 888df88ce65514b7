/* SPDX-License-Identifier: MIT */
/*
 * http_server.h - incoming HTTP on libwebsockets, running on the daemon's libuv loop.
 *
 * Routes are exact paths with a set of allowed methods and a fixed name (the metrics label). The
 * server answers by itself: 404 for an unknown path, 405 (with Allow) for a known path and a wrong
 * method, 413 for a body over server.max_body_bytes, 503 while draining. Handlers run on the loop
 * thread and either answer at once (fb_http_respond, return 0) or return FB_EAGAIN and answer later
 * (an async handler, e.g. one waiting for Redis). If the client goes away before a deferred answer,
 * the request stays valid until the handler answers; the answer is then dropped.
 */
#ifndef FB_HTTP_SERVER_H
#define FB_HTTP_SERVER_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "io/config.h"

typedef struct fb_http_server_s fb_http_server_t;
typedef struct fb_http_req_s fb_http_req_t;

/** Methods, as a bit set for routes. */
enum {
    FB_HTTP_GET = 1u << 0,
    FB_HTTP_HEAD = 1u << 1,
    FB_HTTP_POST = 1u << 2,
    FB_HTTP_PUT = 1u << 3,
    FB_HTTP_DELETE = 1u << 4,
    FB_HTTP_PATCH = 1u << 5,
    FB_HTTP_OPTIONS = 1u << 6,
};

/**
 * A route handler. Returns 0 after calling fb_http_respond(), or FB_EAGAIN to answer later with
 * fb_http_respond() (exactly once). Any other return answers 500.
 */
typedef int (*fb_http_handler_fn)(fb_http_req_t *req, void *arg);

/** Creates a server for `opts` (copied) on `loop`. NULL on failure. Nothing listens yet. */
fb_http_server_t *fb_http_server_create(uv_loop_t *loop, const fb_server_opts_t *opts);

/**
 * Adds a route for the exact `path` and the methods in `methods` (FB_HTTP_* bits; HEAD is implied
 * by GET). `name` is a static string used as the metrics label. Returns 0 or FB_EINVAL.
 */
int fb_http_server_route(fb_http_server_t *srv, const char *path, unsigned methods,
                         const char *name, fb_http_handler_fn fn, void *arg);

/**
 * Adds a prefix route: every path that starts with `prefix` (which starts and ends with '/')
 * and is longer than it, e.g. "/_matrix/app/v1/transactions/" for ".../transactions/{txnId}";
 * the handler reads the rest with fb_http_req_path(). An exact route wins over a prefix route,
 * a longer prefix over a shorter one; static files come after both. Same methods, name and
 * handler rules as fb_http_server_route(). Returns 0 or FB_EINVAL.
 */
int fb_http_server_route_prefix(fb_http_server_t *srv, const char *prefix, unsigned methods,
                                const char *name, fb_http_handler_fn fn, void *arg);

/**
 * Starts listening. Returns 0, or FB_ELISTEN when the address cannot be bound (or the plugin
 * that runs libwebsockets on libuv cannot be loaded: FB_ENOENT); fb_http_server_listen_error()
 * then says which address and why.
 */
int fb_http_server_start(fb_http_server_t *srv);

/**
 * Why the last fb_http_server_start() failed, with the address: "cannot listen on
 * 127.0.0.1:8093: Address already in use"; NULL when it did not fail. Valid until the server is
 * destroyed.
 */
const char *fb_http_server_listen_error(const fb_http_server_t *srv);

/** The port actually bound (useful with port 0); 0 before start. */
int fb_http_server_port(const fb_http_server_t *srv);

/**
 * Stops accepting new requests: new requests get 503 and the connection is closed. Requests
 * already being handled continue.
 */
void fb_http_server_drain(fb_http_server_t *srv);

/** Requests received whose answer is not yet handed to the socket (deferred handlers included). */
size_t fb_http_server_inflight(const fb_http_server_t *srv);

/**
 * Closes every connection and the listener and frees the server once libwebsockets has closed its
 * handles; the loop must keep running until then. libwebsockets 4.1 can only finish its teardown
 * once nothing else is left on the loop: close every other handle too (the server waits for
 * that), as a daemon does when it stops. Deferred requests still unanswered are
 * orphaned: their handler's later answer is dropped, and they are freed by it.
 */
void fb_http_server_destroy(fb_http_server_t *srv);

/* --- Requests (valid from the handler call until fb_http_respond returns) --- */

/** The path, without the query string. Borrowed. */
const char *fb_http_req_path(const fb_http_req_t *req);
/** The request's method, one FB_HTTP_* bit (a HEAD on a GET route: FB_HTTP_HEAD). */
unsigned fb_http_req_method(const fb_http_req_t *req);
/** The raw query string without '?', or "" . Borrowed. */
const char *fb_http_req_query(const fb_http_req_t *req);
/** The request body and its length (empty for GET). Borrowed. */
const char *fb_http_req_body(const fb_http_req_t *req, size_t *len /* OUT */);
/**
 * Copies the value of header `name` (lowercase, with the colon: "authorization:") into `out`.
 * Returns its length, or -1 when absent or longer than `cap - 1`.
 */
int fb_http_req_header(const fb_http_req_t *req, const char *name, char *out, size_t cap);
/** A stable tag for logs, "[http|12]". Borrowed. */
const char *fb_http_req_tag(const fb_http_req_t *req);

/**
 * Answers `req` with `status`, a content type and a body (copied). Must be called exactly once per
 * request; after it returns `req` is no longer valid. `extra_headers` may be NULL or a
 * NULL-terminated array of "name:", "value" pairs.
 */
void fb_http_respond(fb_http_req_t *req, int status, const char *content_type, const char *body,
                     size_t len, const char *const *extra_headers);

/* --- Static files --- */

/** cache_s of fb_http_server_static() and fb_http_respond_file() for files whose name carries a
 *  hash of their content (a new content is a new name): `public, max-age=31536000, immutable`. */
#define FB_HTTP_CACHE_IMMUTABLE UINT_MAX
/** cache_s for a file that may change under the same name but should be revalidated at every
 *  use (an HTML page naming hashed files): `no-cache`, with the ETag making that a 304. */
#define FB_HTTP_CACHE_REVALIDATE (UINT_MAX - 1)

/**
 * Serves the files under directory `dir` at URL prefix `prefix` (which starts and ends with '/'):
 * GET and HEAD of `prefix` + a relative path. Paths with "..", "//", a NUL, a backslash, a
 * hidden segment ("/.x") or anything not a regular file answer 404. The content type comes from
 * the extension (html, css, js, mjs, json, svg, png, jpg, ico, woff, woff2, txt, map; otherwise
 * application/octet-stream). A file FILE may have precompressed variants FILE.br and FILE.gz
 * beside it: the one the request's Accept-Encoding prefers (io/http_encoding.h) is sent with its
 * Content-Encoding, unless it is older than FILE. Answers carry `Vary: Accept-Encoding`, an ETag
 * (size, mtime and coding), honour If-None-Match (304) and `Cache-Control: public,
 * max-age=CACHE_S` (no-store when cache_s is 0; see FB_HTTP_CACHE_IMMUTABLE and
 * FB_HTTP_CACHE_REVALIDATE). Files above 8 MiB answer 404. `name` is the metrics label. Returns
 * 0 or FB_EINVAL.
 */
int fb_http_server_static(fb_http_server_t *srv, const char *prefix, const char *dir,
                          unsigned cache_s, const char *name);

/**
 * Answers a GET or HEAD of `req` with the file at `path`, as a static route would (content
 * coding, ETag, If-None-Match, cache_s as in fb_http_server_static()), for a handler that serves
 * one file under a path of its own (the web chat's page at /). Returns 0 once answered, or
 * FB_ENOENT without answering when the file cannot be served (missing, not a regular file, over
 * 8 MiB), so that the handler answers in its own words; FB_EINVAL for bad arguments.
 */
int fb_http_respond_file(fb_http_req_t *req, const char *path, unsigned cache_s);

/* --- Websockets --- */

typedef struct fb_ws_s fb_ws_t;

/** Callbacks of a websocket endpoint; all run on the loop thread. */
typedef struct fb_ws_ops_s {
    /** A client completed the upgrade. Return 0 to keep it, or a negative code to close it at
     *  once (after any frames queued with fb_ws_send() in this call are flushed). */
    int (*open)(fb_ws_t *ws, void *arg);
    /** One complete text message (fragments are reassembled), not NUL-terminated. */
    void (*message)(fb_ws_t *ws, const char *data, size_t len, void *arg);
    /** A message went past the endpoint's max_message bytes (its bytes were discarded, the
     *  connection stays open) or was a binary message. `len` is what was received of it. */
    void (*refused)(fb_ws_t *ws, size_t len, bool binary, void *arg);
    /** The connection is gone; `ws` is invalid after this returns. Called exactly once for every
     *  connection that open() accepted, also when the server is destroyed. */
    void (*closed)(fb_ws_t *ws, void *arg);
} fb_ws_ops_t;

/**
 * Accepts websocket upgrades (RFC 6455, text frames) on the exact `path`. Incoming messages
 * larger than `max_message` bytes are refused through ops->refused. While the server drains, new
 * upgrades answer 503 and open connections are closed with 1001 (going away) once their queued
 * frames are written. `name` is the metrics label. Returns 0 or FB_EINVAL.
 */
int fb_http_server_websocket(fb_http_server_t *srv, const char *path, const char *name,
                             const fb_ws_ops_t *ops, size_t max_message, void *arg);

/** Number of open websocket connections (all endpoints). */
size_t fb_http_server_websockets(const fb_http_server_t *srv);

/**
 * Queues a copy of text message `data` for `ws`; frames go out in order when the socket is
 * writable. Returns 0, FB_EAGAIN when more than 1 MiB is already queued for this connection (the
 * caller may close it), or FB_ECANCELED when the connection is closing.
 */
int fb_ws_send(fb_ws_t *ws, const char *data, size_t len);

/** Closes `ws` with `code` (1000, 1008...) and a short reason once queued frames are written;
 *  ops->closed follows. Idempotent. */
void fb_ws_close(fb_ws_t *ws, int code, const char *reason);

/** The peer's IP address as text ("127.0.0.1", "::1"). Borrowed, valid until closed. */
const char *fb_ws_peer(const fb_ws_t *ws);

/** A header of the upgrade request, as fb_http_req_header(); valid during open() only. */
int fb_ws_header(const fb_ws_t *ws, const char *name, char *out, size_t cap);

/** User data attached to the connection (NULL at first). */
void fb_ws_set_data(fb_ws_t *ws, void *data);
void *fb_ws_data(const fb_ws_t *ws);

/** A stable tag for logs, "[ws|12]". Borrowed. */
const char *fb_ws_tag(const fb_ws_t *ws);

#endif /* FB_HTTP_SERVER_H */
