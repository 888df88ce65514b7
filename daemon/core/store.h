/* SPDX-License-Identifier: MIT */
/*
 * store.h - the session store: each conversation's session kept in Redis, read and written with
 * optimistic concurrency.
 *
 * A session is an opaque byte string (the router's serialized state) plus a version: 0 means
 * "no session", and every successful save makes it version + 1. A save names the version it
 * was computed from and succeeds only if that is still the stored version, checked atomically
 * by a Lua script on the server; otherwise it fails with FB_ECONFLICT and the caller reloads.
 * Saves are exactly-once: each carries a write id, so when a save is resent after its reply was
 * lost (a dropped connection, a timeout) and the first attempt had landed, the resend reports
 * success instead of a conflict, and the version is bumped once. Sessions expire
 * opts->session_ttl_days after their last save.
 *
 * Keys are "<prefix>{c:<escaped conversation key>}:session"; the hash tag keeps every key of one
 * conversation in one Redis Cluster slot (fb_store_conv_key() builds the others). The schema and
 * the failure behaviour are documented in docs/internals/REDIS.md.
 *
 * Every operation follows the async contract of err.h: a negative return means the callback is
 * never called; 0 means it is called exactly once, later. Writes that meet a Redis outage are
 * retried by fb_redis_t until its write deadline; only then does the callback report
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

/** Longest caller-chosen write id accepted by fb_store_session_save_id(), in bytes. */
#define FB_STORE_MAX_WRITE_ID 128

/**
 * Creates a store on top of `r` (borrowed: it must outlive the store). `opts` is copied.
 * Returns NULL when the key prefix contains '{' or '}' (it would hijack the Cluster hash tag).
 * A NULL prefix means "". session_ttl_days 0 means sessions never expire.
 */
fb_store_t *fb_store_create(fb_redis_t *r, const fb_store_opts_t *opts);

/**
 * Frees the store. Every operation must be complete (fb_store_pending() == 0): the usual order
 * is fb_redis_close(), whose cancellations complete every operation with FB_ECANCELED, then
 * fb_store_destroy() from its done callback (or any time after). Aborts if operations remain.
 */
void fb_store_destroy(fb_store_t *s);

/** Number of operations started whose callback has not been called yet. */
size_t fb_store_pending(const fb_store_t *s);

/**
 * Returns a new string (fb_free) "<prefix>{c:<escaped conv_key>}:<suffix>", the Redis key of
 * `suffix` ("session", "outbox"...) for conversation `conv_key`, in the conversation's Cluster
 * slot. In the escaped key, '{', '}', '%', control characters and DEL are written %XX (upper
 * case hex); every other byte is kept. Returns NULL when conv_key is NULL, empty or longer than
 * FB_STORE_MAX_CONV_KEY.
 */
char *fb_store_conv_key(const fb_store_t *s, const char *conv_key, const char *suffix);

/**
 * Load result. `status` is 0 (found), FB_ENOENT (no session: `version` is 0), or an error
 * (FB_EUNAVAIL, FB_ETIMEDOUT, FB_ECANCELED, FB_EIO for an error answer, FB_EPROTO for a
 * malformed record). `data`/`len` are the session bytes when status is 0, else NULL/0; they are
 * borrowed and valid only during the callback.
 */
typedef void (*fb_store_load_cb)(int status, const char *data, size_t len, uint64_t version,
                                 void *arg);

/**
 * Reads the session of `conv_key`. Returns 0 (cb will be called exactly once), FB_EINVAL (bad
 * key or no callback), or fb_redis_command_argv()'s FB_EAGAIN / FB_ECLOSING.
 */
int fb_store_session_load(fb_store_t *s, const char *conv_key, fb_store_load_cb cb, void *arg);

/**
 * Save (and delete) result. `status` is:
 *   0             saved; `new_version` is the version now stored (expected + 1);
 *   FB_ECONFLICT  the stored version is not the expected one; `new_version` is the version
 *                 found (0: no session), so the caller can reload and try again;
 *   FB_EUNAVAIL   Redis stayed unreachable until the write deadline: nothing was written;
 *   FB_ETIMEDOUT  Redis did not answer the last attempt before the deadline: unknown outcome;
 *   FB_ECANCELED  the Redis client was closed: unknown outcome if it had been sent;
 *   FB_EIO        Redis answered with an error (logged), FB_EPROTO with nonsense.
 */
typedef void (*fb_store_save_cb)(int status, uint64_t new_version, void *arg);

/**
 * Saves `len` bytes of `data` (copied) as the session of `conv_key`, if and only if its
 * version is `expected_version` (0: there must be no session). The save gets a fresh unique
 * write id. Returns 0 (cb will be called exactly once), FB_EINVAL, FB_EAGAIN or FB_ECLOSING.
 */
int fb_store_session_save(fb_store_t *s, const char *conv_key, const char *data, size_t len,
                          uint64_t expected_version, fb_store_save_cb cb, void *arg);

/**
 * Same as fb_store_session_save() with a caller-chosen `write_id` (1..FB_STORE_MAX_WRITE_ID
 * bytes, unique per intended write): saving again with the same id and expected version after
 * that write landed reports success with the same new version instead of FB_ECONFLICT. A caller
 * that derives the id from what caused the write (an inbound event id) thus gets exactly-once
 * saves even across its own retries and restarts.
 */
int fb_store_session_save_id(fb_store_t *s, const char *conv_key, const char *data, size_t len,
                             uint64_t expected_version, const char *write_id, fb_store_save_cb cb,
                             void *arg);

/**
 * Deletes the session of `conv_key`, whatever its version. Idempotent: status 0 whether or not
 * it existed (a resent delete cannot tell); `new_version` is 0. Same returns as the save.
 */
int fb_store_session_delete(fb_store_t *s, const char *conv_key, fb_store_save_cb cb, void *arg);

/* ---- other scripts on the same connection (the router's) ---- */

/** The key prefix (borrowed), for keys outside any conversation. */
const char *fb_store_prefix(const fb_store_t *s);

/** The session TTL in milliseconds (0: sessions never expire). */
uint64_t fb_store_session_ttl_ms(const fb_store_t *s);

/** A Lua script sent as EVALSHA of its SHA1 (and once as EVAL after NOSCRIPT). */
typedef struct fb_store_script_s {
    const char *src; /* static text */
    char sha[41];    /* hex SHA1 of src */
} fb_store_script_t;

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
 * sending the same call once as EVAL. Counted in fb_store_pending(). Returns 0 (cb called once,
 * later), FB_EINVAL, FB_EAGAIN or FB_ECLOSING.
 */
int fb_store_eval(fb_store_t *s, const fb_store_script_t *sc, int flags, size_t nkeys, size_t nargs,
                  const char *const *args, const size_t *lens, fb_store_eval_cb cb, void *arg);

#endif /* FB_STORE_H */
