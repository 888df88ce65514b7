/* SPDX-License-Identifier: MIT */
/*
 * daemon.h - `frichebot serve`: one libuv loop carrying the HTTP server, the Redis client, the
 * outgoing HTTP client, the signals, and the orderly shutdown.
 */
#ifndef FB_DAEMON_H
#define FB_DAEMON_H

#include "io/config.h"

typedef struct fb_daemon_s fb_daemon_t;

/**
 * Runs the daemon with `cfg` (borrowed; `config_path` is re-read on SIGHUP for the log settings,
 * NULL when running on the embedded default) until SIGTERM or SIGINT, then drains in-flight work
 * for up to server.shutdown_deadline_s, closes every handle and closes the loop.
 * Returns the process exit status: 0 after a clean stop (uv_loop_close() == 0), 1 otherwise.
 */
int fb_daemon_run(const fb_config_t *cfg, const char *config_path);

#endif /* FB_DAEMON_H */
