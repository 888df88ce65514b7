/* SPDX-License-Identifier: MIT */
/*
 * metrics.h - the daemon's Prometheus metrics, kept in process memory and rendered by GET /metrics.
 *
 * Everything runs on the loop thread, so the counters are plain integers. Subsystems call the
 * fb_metrics_* functions as things happen; rendering is the only reader.
 */
#ifndef FB_METRICS_H
#define FB_METRICS_H

#include <stdint.h>

#include "frichebot/buf.h"

/** Records the start time used for frichebot_uptime_seconds. */
void fb_metrics_init(void);

/** Counts one HTTP request answered on `route` (a fixed route name, never a raw path) with
 * `status`. */
void fb_metrics_http_request(const char *route, int status);

/** Adds `delta` (+1 or -1) to the number of open websocket connections of `endpoint` (a fixed
 * endpoint name). */
void fb_metrics_ws_connections(const char *endpoint, int delta);

/** Directions of fb_metrics_ws_message(). */
enum { FB_METRICS_WS_IN = 0, FB_METRICS_WS_OUT = 1, FB_METRICS_WS_REFUSED = 2 };

/** Counts one websocket message of `endpoint`: received and delivered (FB_METRICS_WS_IN), written
 * (FB_METRICS_WS_OUT), or received and refused (FB_METRICS_WS_REFUSED: too large or binary). */
void fb_metrics_ws_message(const char *endpoint, int direction);

/** Counts one incoming connection refused before any request was read, for `reason` (a fixed
 * name: "per_address", "descriptors", "adopt"). */
void fb_metrics_http_refused(const char *reason);

/** Observes one Redis command round trip of `seconds`. */
void fb_metrics_redis_rtt(double seconds);

/** Counts one event processed of `kind` (a fixed name such as "message", "reminder"). */
void fb_metrics_event(const char *kind);

/** Counts one outgoing HTTP request finished with `outcome` ("ok", "http_error", "timeout"...). */
void fb_metrics_http_client(const char *outcome);

/** Appends the Prometheus text exposition of every metric to `out`. Returns 0 or FB_ETOOBIG. */
int fb_metrics_render(fb_buf_t *out);

/** Forgets every counter (tests). */
void fb_metrics_reset(void);

#endif /* FB_METRICS_H */
