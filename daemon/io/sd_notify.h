/* SPDX-License-Identifier: MIT */
/*
 * sd_notify.h - the service manager's notification protocol (sd_notify(3)), written by hand so
 * that the daemon does not depend on libsystemd.
 *
 * Under systemd with Type=notify, $NOTIFY_SOCKET names a unix datagram socket: a path
 * ("/run/systemd/notify") or an abstract socket ("@name"). Each notification is one datagram of
 * newline-separated VARIABLE=VALUE assignments: READY=1, RELOADING=1, STOPPING=1, WATCHDOG=1,
 * STATUS=free text. When $NOTIFY_SOCKET is unset, every function here does nothing. The watchdog
 * is asked for with $WATCHDOG_USEC (and $WATCHDOG_PID, the process it is meant for): the daemon
 * then sends WATCHDOG=1 every half of that interval from a libuv timer, so a stuck loop stops
 * the pings and systemd restarts it. Design notes: docs/internals/DAEMON.md.
 *
 * Everything runs on the loop thread; sending never blocks (a full socket drops the message).
 */
#ifndef FB_SD_NOTIFY_H
#define FB_SD_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <uv.h>

/** True when $NOTIFY_SOCKET is set and not empty: a service manager listens. */
bool fb_sd_enabled(void);

/**
 * Sends `state` (e.g. "READY=1\nSTATUS=serving") to the service manager named by
 * $NOTIFY_SOCKET. Returns 0 when sent, FB_DECLINED when $NOTIFY_SOCKET is unset (nothing to
 * do), FB_EINVAL when its address is unusable, FB_ETOOBIG when `state` is longer than
 * FB_SD_MAX_MESSAGE, or -errno when socket() or sendto() failed.
 */
int fb_sd_notify(const char *state);

/** fb_sd_notify() with a printf format. Same return values. */
int fb_sd_notifyf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/** Longest notification sent, in bytes (the STATUS= texts are short). */
#define FB_SD_MAX_MESSAGE 4096

/**
 * Sends `state` to the datagram socket `address` ("/path" or "@abstract"). Same return values
 * as fb_sd_notify() but FB_DECLINED. The work of fb_sd_notify(), exposed for the tests.
 */
int fb_sd_notify_to(const char *address, const char *state);

/**
 * Fills `*sa` and `*len` with the socket address of `address`: a path ("/run/systemd/notify"),
 * or an abstract name ("@name": a leading NUL byte, and a length that counts only the name's
 * bytes). Returns 0, or FB_EINVAL for anything else (empty, relative, too long for sun_path).
 */
int fb_sd_address(const char *address, struct sockaddr_un *sa /* OUT */, socklen_t *len /* OUT */);

/**
 * The watchdog interval the service manager asks for, in microseconds: $WATCHDOG_USEC when it
 * is a positive decimal integer and $WATCHDOG_PID is unset or names this process; 0 otherwise
 * (no watchdog).
 */
uint64_t fb_sd_watchdog_usec(void);

/** The watchdog pinger: a timer on the loop, created by fb_sd_watchdog_start(). */
typedef struct fb_sd_watchdog_s fb_sd_watchdog_t;

/**
 * Starts sending WATCHDOG=1 every fb_sd_watchdog_usec() / 2 (at least every millisecond) on
 * `loop`. Returns the pinger, or NULL when no watchdog is asked for or $NOTIFY_SOCKET is unset.
 * fb_sd_watchdog_close() must be called before the loop is closed.
 */
fb_sd_watchdog_t *fb_sd_watchdog_start(uv_loop_t *loop);

/** Stops the pings and frees `w` once its timer is closed. NULL is accepted. */
void fb_sd_watchdog_close(fb_sd_watchdog_t *w);

#endif /* FB_SD_NOTIFY_H */
