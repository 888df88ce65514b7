/* SPDX-License-Identifier: MIT */
/*
 * store.h - Lua scripts on the daemon's Redis connection: the key prefix, the session TTL and
 * fb_store_eval() (EVALSHA, with one SCRIPT LOAD after NOSCRIPT). The router's scripts read and
 * write the sessions, outboxes and the rest (docs/internals/ROUTER.md); every key name is defined
 * in core/keys.h and listed in docs/internals/REDIS.md.
 *
 * Keys of a conversation are "<prefix>{c:<escaped conversation key>}:<suffix>"
 * (fb_store_conv_key()); the hash tag keeps them in one Redis Cluster slot.
 *
 * Every call follows the async contract of err.h: a negative return means the callback is never
 * called; 0 means it is called exactly once, later. Calls that meet a Redis outage are retried
 * by fb_redis_t (FB_REDIS_RETRY) until its write deadline; only then does the callback report
 * FB_EUNAVAIL (never sent) or FB_ETIMEDOUT (sent, no answer: the outcome is unknown).
 */
#ifndef FB_STORE_H
#define FB_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "core/keys.h"
#include "io/config.h"
#include "io/redis.h"

/** The store: opaque, created by fb_store_create(), freed by fb_store_destroy(). */
typedef struct fb_store_s fb_store_t;

/** Longest conversation key accepted, in bytes (before escaping). */
#define FB_STORE_MAX_CONV_KEY FB_KEYS_MAX_CONV

/**
 * Creates a store on top of `r` (borrowed: it must outlive the store). `opts` is copied.
 * Returns NULL when the key prefix contains '{' or '}' (it would hijack the Cluster hash tag).
 * A NULL prefix means "". session_ttl_days 0 means sessions never expire.
 */
fb_store_t *fb_store_create(fb_redis_t *r, const fb_store_opts_t *opts);

/**
 * Frees the store. Every call must be complete (fb_store_pending() == 0): the usual order is
 * fb_redis_close(), whose cancellations complete every call with FB_ECANCELED, then
 * fb_store_destroy() from its done callback (or any time after). Aborts if calls remain.
 */
void fb_store_destroy(fb_store_t *s);

/** Number of fb_store_eval() and fb_store_command() calls started whose callback has not been
 * called yet. */
size_t fb_store_pending(const fb_store_t *s);

/**
 * Returns a new string (fb_free) "<prefix>{c:<escaped conv_key>}:<suffix>", the Redis key of
 * `suffix` ("session", "outbox"...) for conversation `conv_key`, in the conversation's Cluster
 * slot. In the escaped key, '{', '}', '%', control characters and DEL are written %XX (upper
 * case hex); every other byte is kept. Returns NULL when conv_key is NULL, empty or longer than
 * FB_STORE_MAX_CONV_KEY.
 */
char *fb_store_conv_key(const fb_store_t *s, const char *conv_key, const char *suffix);

/** The key prefix (borrowed), for keys outside any conversation. */
const char *fb_store_prefix(const fb_store_t *s);

/** The session TTL in milliseconds (0: sessions never expire). */
uint64_t fb_store_session_ttl_ms(const fb_store_t *s);

/** A Lua script sent as EVALSHA of its SHA1 (loaded with SCRIPT LOAD after NOSCRIPT). */
typedef fb_redis_script_t fb_store_script_t;

/** Names `src` (static, kept) for fb_store_eval(). */
void fb_store_script_init(fb_store_script_t *sc, const char *src);

/**
 * Eval result: 0 with the script's reply (borrowed, valid during the callback; never an error
 * reply: Redis errors are logged and reported as FB_EIO), or the fb_redis_reply_cb statuses.
 */
typedef void (*fb_store_eval_cb)(int status, const struct redisReply *reply, void *arg);

/**
 * Runs script `sc` (which must outlive the call) with `nkeys` keys then `nargs` arguments, given
 * together in `args`/`lens` (binary-safe, copied; `lens` NULL: NUL-terminated strings). `flags`
 * is 0 or FB_REDIS_RETRY (only for scripts that are safe to run twice). NOSCRIPT is answered by
 * SCRIPT LOAD and the same EVALSHA again (at most twice per call). Counted in fb_store_pending().
 * Returns 0 (cb called once, later), FB_EINVAL, FB_EAGAIN or FB_ECLOSING.
 */
int fb_store_eval(fb_store_t *s, const fb_store_script_t *sc, int flags, size_t nkeys, size_t nargs,
                  const char *const *args, const size_t *lens, fb_store_eval_cb cb, void *arg);

/**
 * Sends one plain command (`argc` NUL-terminated arguments), with fb_redis_command_argv()'s
 * `flags`; its result as fb_store_eval()'s: an error reply is logged and reported as FB_EIO.
 * Counted in fb_store_pending(). Several of them issued one behind the other in one turn of the
 * loop leave in one write (FB_REDIS_PIPELINED on all but the first: one round trip) and are
 * answered in their order. Returns 0 (cb called once, later), FB_EINVAL, FB_EAGAIN or
 * FB_ECLOSING.
 */
int fb_store_command(fb_store_t *s, int flags, int argc, const char **argv, fb_store_eval_cb cb,
                     void *arg);

#endif /* FB_STORE_H */
