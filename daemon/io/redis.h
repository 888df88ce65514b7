/* SPDX-License-Identifier: MIT */
/*
 * redis.h - the asynchronous Redis client: one hiredis connection driven by the libuv loop.
 *
 * Every Redis command of the daemon goes through one fb_redis_t. It connects over TCP
 * ("tcp://HOST:PORT") or a unix socket ("unix:PATH"), authenticates when a password is set,
 * and reconnects forever with the backoff of opts->reconnect. hiredis 0.14 has neither a connect
 * timeout nor a command timeout, so both are our own uv_timers. Commands issued while no
 * connection is ready wait in a bounded queue and are sent, in order, once one is; a command
 * that cannot be sent within opts->write_deadline_ms fails with FB_EUNAVAIL.
 *
 * The async contract (err.h), for every function here that takes a callback: a negative return
 * means the callback will never be called; 0 means it will be called exactly once, never inside
 * the call that issued the command. Every path ends in exactly one call: a reply, a timeout, a
 * lost connection, the write deadline, or fb_redis_close() (FB_ECANCELED).
 *
 * Everything runs on the loop thread. Passwords are never logged. Design notes, the failure
 * behaviour in detail and the reasons behind it: docs/internals/REDIS.md.
 */
#ifndef FB_REDIS_H
#define FB_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "io/config.h"

struct redisReply;

/** The client: opaque, created by fb_redis_create(), freed by fb_redis_close(). */
typedef struct fb_redis_s fb_redis_t;

/**
 * Flag for fb_redis_command_argv(): the command is safe to send again when the connection is
 * lost (or the attempt times out) before its reply arrived, because running it twice has the
 * same effect as once (GET, HMGET, DEL, or the store's save script with its write id). Such a
 * command is resent on the next connection until opts->write_deadline_ms after it was issued.
 * Without the flag a command whose connection is lost fails with FB_EIO.
 */
#define FB_REDIS_RETRY 0x1

/**
 * Flag for fb_redis_command_argv(): the command is issued right behind another one of the same
 * round trip (a pipeline: they leave in the same write and their replies come back together), so
 * its reply is not counted again in the round-trip metric (frichebot_redis_rtt_seconds, which
 * then counts round trips, not commands: issue 17). Changes nothing else.
 */
#define FB_REDIS_PIPELINED 0x2

/** Commands that may wait for a connection; past this fb_redis_command_argv() says FB_EAGAIN.
 * Sized for 1,024 events waiting at their READ, up to four plain commands each (issue 17). */
#define FB_REDIS_MAX_QUEUED 4096

/**
 * Called exactly once per command. `status` is 0 when Redis answered, in which case `reply` is
 * the reply (which may be an error reply, REDIS_REPLY_ERROR: interpreting it is the caller's
 * job). Otherwise `reply` is NULL and `status` is one of:
 *   FB_ETIMEDOUT  no reply within opts->command_timeout_ms (for a retryable command: the last
 *                 attempt timed out and the write deadline has passed);
 *   FB_EUNAVAIL   no connection became ready before the write deadline;
 *   FB_EIO        the connection was lost while a non-retryable command was in flight (it may
 *                 or may not have run);
 *   FB_ECANCELED  fb_redis_close() was called.
 * `reply` is borrowed: it is freed when the callback returns, so copy what you keep. The
 * callback may issue new commands and may call fb_redis_close().
 */
typedef void (*fb_redis_reply_cb)(fb_redis_t *r, int status, struct redisReply *reply, void *arg);

/*
 * Reading a reply's shape. Replies come from scripts and commands whose shape the daemon knows;
 * a reply of another shape (a Redis of another version, a script of another release) is a
 * protocol error, which the caller turns into FB_EPROTO or a retry. These helpers say "is it the
 * shape I expect" in one call instead of hand-written type and length checks. All accept NULL.
 */

/** No upper bound on an array's length, for fb_redis_reply_array(). */
#define FB_REDIS_NOMAX SIZE_MAX

/**
 * Returns `rep` when it is an array of `min` to `max` elements whose first elements have the
 * types that `types` spells, one letter per element: 'i' integer, 's' string, 'a' array,
 * 'n' nil, '.' any; `types` NULL or shorter than the array leaves the rest unchecked. Returns
 * NULL otherwise (so `rep` NULL gives NULL).
 */
const struct redisReply *fb_redis_reply_array(const struct redisReply *rep, size_t min, size_t max,
                                              const char *types);

/** Returns true and sets *out when `rep` is an integer reply; false (*out untouched) otherwise. */
bool fb_redis_reply_int(const struct redisReply *rep, long long *out /* OUT */);

/** Returns the bytes of a string reply (NUL-terminated by hiredis; *len set when `len` is not
 * NULL), or NULL when `rep` is not a string. Borrowed from `rep`. */
const char *fb_redis_reply_str(const struct redisReply *rep, size_t *len /* OUT */);

/** Whether `rep` is a status reply (+OK, +PONG). */
bool fb_redis_reply_is_status(const struct redisReply *rep);

/** Counters since creation, for /stats and for tests. */
typedef struct fb_redis_stats_s {
    uint64_t connects;         /* connections that became ready (connected and authenticated) */
    uint64_t connect_failures; /* connection attempts that failed or timed out */
    uint64_t disconnects;      /* ready connections that were lost or dropped */
    uint64_t timeouts;         /* command attempts that exceeded command_timeout_ms */
    uint64_t resends;          /* retryable commands queued again after a lost connection */
    uint64_t completed;        /* commands whose callback was called, whatever the status */
} fb_redis_stats_t;

/**
 * Creates a client on `loop` from `opts`, which is copied (the password too: the caller may
 * wipe its copy). Nothing happens on the network until fb_redis_start(). Returns NULL when
 * opts->address is not "tcp://HOST:PORT" (HOST may be a name, an IPv4 address or a bracketed
 * IPv6 address; PORT in 1..65535) or "unix:PATH" (at most 107 bytes; "unix:///PATH" is also
 * accepted; a relative PATH is relative to the working directory, at each connection attempt).
 * The client owns three timers on `loop`:
 * fb_redis_close() must be called before the loop is closed. The process must ignore SIGPIPE
 * (the daemon's main() does): hiredis writes with write(2), and a write to a connection the
 * server has just closed must fail with EPIPE (the client then reconnects), not kill it.
 */
fb_redis_t *fb_redis_create(uv_loop_t *loop, const fb_redis_opts_t *opts);

/**
 * Begins connecting. From then on the client keeps one connection and reconnects after any
 * loss, forever, waiting opts->reconnect between attempts. Returns 0, or FB_EINVAL when already
 * started or closing. Commands may be issued before this; they wait in the queue.
 */
int fb_redis_start(fb_redis_t *r);

/**
 * Called each time a connection becomes ready (the start's and every reconnect's), on the loop
 * thread, before any queued command is written to it: the commands it issues are the first ones
 * the new connection carries after the SCRIPT LOADs of the scripts already run (which change no
 * data, and let its EVALSHAs find their scripts on a Redis that lost them);
 * daemon/io/durability.c reads Redis's persistence settings there. It must not call
 * fb_redis_close().
 */
typedef void (*fb_redis_ready_cb)(fb_redis_t *r, void *arg);

/** Sets (or, with NULL, clears) the one ready callback. */
void fb_redis_on_ready(fb_redis_t *r, fb_redis_ready_cb cb, void *arg);

/** True when a connection is ready (connected and authenticated): for /healthz. */
bool fb_redis_connected(const fb_redis_t *r);

/** Number of commands issued whose callback has not been called yet (queued and in flight). */
size_t fb_redis_pending(const fb_redis_t *r);

/** The configured address, for logs ("tcp://127.0.0.1:6379"). Never contains a secret. */
const char *fb_redis_address(const fb_redis_t *r);

/** Copies the counters into `*out`. */
void fb_redis_get_stats(const fb_redis_t *r, fb_redis_stats_t *out /* OUT */);

/**
 * Sends a command given as `argc` binary-safe arguments (argv[i] of argvlen[i] bytes; when
 * `argvlen` is NULL every argv[i] is a NUL-terminated string). Everything is copied before the
 * call returns. `flags` is 0 or FB_REDIS_RETRY, with FB_REDIS_PIPELINED or not. `cb` is called
 * exactly once, later, with `arg`.
 * Returns 0, or (and then `cb` is never called):
 *   FB_EINVAL   no callback, no arguments, or a command the client cannot carry: one that
 *               changes the connection's protocol (the SUBSCRIBEs and UNSUBSCRIBEs, MONITOR,
 *               HELLO, CLIENT REPLY) or sets per-connection state that a reconnect would lose
 *               (SELECT, AUTH, RESET);
 *   FB_EAGAIN   no connection is ready and FB_REDIS_MAX_QUEUED commands are already waiting;
 *   FB_ECLOSING fb_redis_close() has been called.
 */
int fb_redis_command_argv(fb_redis_t *r, int flags, fb_redis_reply_cb cb, void *arg, int argc,
                          const char **argv, const size_t *argvlen);

/**
 * Convenience form of fb_redis_command_argv(): the arguments are NUL-terminated strings,
 * followed by a NULL. Same contract. Example: fb_redis_command(r, 0, cb, arg, "GET", key, NULL).
 */
int fb_redis_command(fb_redis_t *r, int flags, fb_redis_reply_cb cb, void *arg, ...)
    __attribute__((sentinel));

/** A Lua script called by its SHA1 (EVALSHA): the body never travels with a call. */
typedef struct fb_redis_script_s {
    const char *src; /* static text, kept */
    char sha[41];    /* hex SHA1 of src */
} fb_redis_script_t;

/** Names `src` (static, kept) for fb_redis_evalsha(): computes its SHA1 once. */
void fb_redis_script_init(fb_redis_script_t *sc, const char *src);

/**
 * Runs script `sc` (which must outlive the call) as EVALSHA with `argc` arguments: the number of
 * keys, the keys, then the script's arguments (binary-safe as in fb_redis_command_argv(),
 * copied). A NOSCRIPT answer (a fresh or restarted Redis, SCRIPT FLUSH, a failover) is not
 * passed on: SCRIPT LOAD and the same EVALSHA are sent again, one behind the other (at most
 * twice per call). EVAL is never used: Redis would hash the body at every call (issue 17). Every
 * script run once is loaded again (SCRIPT LOAD) at each reconnection, after the ready callback's
 * commands and before the queued ones (the client keeps a copy of each). Same contract as
 * fb_redis_command_argv() otherwise; other error replies reach `cb` as they are.
 */
int fb_redis_evalsha(fb_redis_t *r, const fb_redis_script_t *sc, int flags, fb_redis_reply_cb cb,
                     void *arg, int argc, const char **argv, const size_t *argvlen);

/**
 * Shuts the client down. Before it returns, the callback of every pending command (queued or in
 * flight) is called once with FB_ECANCELED, and new commands are refused with FB_ECLOSING. The
 * connection is dropped (a command already written may still run on the server), then every
 * handle is closed asynchronously; when the last one is, `r` is freed and `done(arg)` is called
 * (`done` may be NULL). `r` must not be used once `done` has been called. Call it exactly once,
 * from the loop thread; it may be called from inside a reply callback.
 */
void fb_redis_close(fb_redis_t *r, void (*done)(void *arg), void *arg);

#endif /* FB_REDIS_H */
