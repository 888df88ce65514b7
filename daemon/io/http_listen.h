/* SPDX-License-Identifier: MIT */
/*
 * http_listen.h - the HTTP server's listening socket and its accept loop, with the limits that
 * keep one client from exhausting the daemon's descriptors: a cap on connections per peer
 * address, a headroom of descriptors kept for the daemon's own work, and the classic handling of
 * EMFILE/ENFILE (a reserved descriptor to accept-and-close, accepting paused with back-off).
 * Accepted connections are handed to libwebsockets (lws_adopt_descriptor_vhost) by the server;
 * see docs/internals/HTTP_SERVER.md, "Accepting connections". Loop thread only.
 */
#ifndef FB_HTTP_LISTEN_H
#define FB_HTTP_LISTEN_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

typedef struct fb_listener_s fb_listener_t;

/** A peer address's entry: handed to adopt() and given back to fb_listener_release() when the
 *  connection is gone. */
typedef struct fb_listen_peer_s fb_listen_peer_t;

/**
 * Hands the accepted, non-blocking socket `fd` to the server. Returns 0 when it took it (it will
 * call fb_listener_release(l, peer) once the connection is gone), or non-zero when it could not,
 * `fd` being closed by then.
 */
typedef int (*fb_listen_adopt_fn)(void *arg, int fd, fb_listen_peer_t *peer);

/**
 * Binds `host`:`port` (port 0 picks one) and starts accepting on `loop`. `max_per_address` caps
 * the open connections of one peer address (0: no cap), except for the addresses of `trusted`
 * (a NULL-terminated list of IPv4 or IPv6 literals, or NULL: reverse proxies, whose connections
 * carry many users; an entry that does not parse is ignored, the configuration checked them).
 * Returns the listener, or NULL with `why` (a static string or strerror) set.
 */
fb_listener_t *fb_listener_open(uv_loop_t *loop, const char *host, int port,
                                unsigned max_per_address, const char *const *trusted,
                                fb_listen_adopt_fn adopt, void *arg, const char **why);

/** True when `ip` (text, as libwebsockets gives a peer: IPv4, IPv6 or IPv4-mapped IPv6) is one of
 *  the listener's trusted proxies. */
bool fb_listener_trusted(const fb_listener_t *l, const char *ip);

/** The port actually bound. */
int fb_listener_port(const fb_listener_t *l);

/** A connection adopted with `peer` is gone. */
void fb_listener_release(fb_listener_t *l, fb_listen_peer_t *peer);

/** Stops accepting and closes the socket; the handles close asynchronously. The listener stays
 *  valid for fb_listener_release() until fb_listener_free(). */
void fb_listener_stop(fb_listener_t *l);

/** Stops `l` if needed and frees it (at once, or when its handles are closed). Call once no
 *  adopted connection can be released any more. NULL is accepted. */
void fb_listener_free(fb_listener_t *l);

#endif /* FB_HTTP_LISTEN_H */
