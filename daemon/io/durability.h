/* SPDX-License-Identifier: MIT */
/*
 * durability.h - whether Redis keeps what the daemon writes: its persistence settings, and a
 * marker that tells when it came back empty.
 *
 * Each time the Redis client's connection becomes ready (at the start and after every reconnect,
 * through fb_redis_on_ready(), so that these are the first commands of the connection) the module
 * reads Redis's persistence settings (CONFIG GET append*, with INFO's aof_enabled when CONFIG is
 * renamed or forbidden) and its run_id (INFO), and reads or creates a marker key holding a unique
 * value. It logs a warning when AOF is off or appendfsync is neither everysec nor always, saying
 * what can be lost and how to fix it. Unless redis.allow_volatile is set, such a Redis is refused:
 * the refusal callback is called at the first connection (the daemon stops), and a later
 * connection that finds it reports itself not ok (/healthz degraded). A marker gone or changed
 * after this process had seen it means Redis lost its data (restarted without persistence,
 * flushed, failed over to an empty replica); so does an epoch (a counter beside the marker, which
 * each check and each beat increments) lower than one this process saw: Redis went back in time
 * (a restored snapshot, a replica that was behind). Logged at error, counted, and /healthz
 * degraded for FB_DURABILITY_LOSS_DEGRADED_MS. The state shows in /healthz and /metrics. Design
 * notes: docs/internals/REDIS.md.
 *
 * Everything runs on the loop thread.
 */
#ifndef FB_DURABILITY_H
#define FB_DURABILITY_H

#include <stdbool.h>
#include <stdint.h>

#include "frichebot/buf.h"
#include "io/redis.h"

/**
 * Between two connections, the marker is read (and the epoch incremented) every this many ms: a
 * Redis flushed under the connection is found within it, and a Redis that went back in time by
 * more than it is found at the next connection. Test builds read FB_TEST_REDIS_BEAT_MS.
 */
#define FB_DURABILITY_BEAT_MS 5000

/** How long /healthz says degraded after a data loss was found (10 minutes). */
#define FB_DURABILITY_LOSS_DEGRADED_MS 600000

/** The module: opaque, created by fb_durability_create(). */
typedef struct fb_durability_s fb_durability_t;

/**
 * Called once at most: the first connection's Redis does not persist with AOF and
 * redis.allow_volatile is not set. The error is already logged; the daemon stops.
 */
typedef void (*fb_durability_refuse_cb)(void *arg);

/** What the last check found. */
typedef struct fb_durability_state_s {
    int aof;                /* 1: appendonly yes, 0: no, -1: not known (not checked yet) */
    char appendfsync[16];   /* "everysec", "always", "no"; "" when not known (CONFIG refused) */
    bool durable;           /* aof == 1 and appendfsync everysec, always or not known */
    bool config_refused;    /* CONFIG GET was refused: the settings came from INFO */
    uint64_t checks;        /* connections whose check completed */
    uint64_t data_losses;   /* times the marker was found gone or changed: Redis lost data */
    int64_t last_loss_ms;   /* Unix ms of the last one, 0 when none */
    char run_id[48];        /* Redis's run_id at the last check ("" when not known) */
    char redis_version[24]; /* Redis's version at the last check ("" when not known): below
                               7.0 an error is logged, the scripts needing it (#!lua) */
    long long epoch;        /* the epoch at the last check or beat (0 before the first) */
    uint64_t keys_renamed;  /* global keys the layout's migration renamed to their {g} name */
    uint64_t keys_left;     /* old-layout keys it left because their {g} name was taken */
} fb_durability_state_t;

/**
 * Creates the module and registers it as `redis`'s ready callback (one per client), with its
 * beat timer on `loop` (unreferenced). `prefix` is the store's key prefix (copied): the marker is
 * "<prefix>{g}:redis:marker", the epoch "<prefix>{g}:redis:epoch". `refuse` (may be NULL)
 * is called with `arg` as described above unless `allow_volatile`. Never fails (aborts on out of
 * memory).
 */
fb_durability_t *fb_durability_create(uv_loop_t *loop, fb_redis_t *redis, const char *prefix,
                                      bool allow_volatile, fb_durability_refuse_cb refuse,
                                      void *arg);

/**
 * Sets the keys' layout migration (core/keys.h, FB_KEYS_MIGRATE_LUA: `script` is kept, not
 * copied): sent with EVALSHA (fb_redis_evalsha()), KEYS[1] "<prefix>{g}:<flag_name>" and ARGV[1]
 * the prefix, as the first command of every connection until it has answered once, before the
 * persistence check (whose marker it may rename) and before any other command. It must answer
 * {renamed, left, state}; logged. Call it before the client is started.
 */
void fb_durability_set_migration(fb_durability_t *dur, const char *script, const char *flag_name);

/** Stops the beat and closes its timer (the loop must run once more). NULL is a no-op. */
void fb_durability_close(fb_durability_t *dur);

/**
 * Frees the module. Call it after fb_durability_close() and the loop has run, and after the Redis
 * client was closed (fb_redis_close() has called every pending callback, the module's included)
 * or before it is started. NULL is a no-op.
 */
void fb_durability_destroy(fb_durability_t *dur);

/** Copies what the last check found into `*out`. */
void fb_durability_get(const fb_durability_t *dur, fb_durability_state_t *out /* OUT */);

/**
 * For /healthz: false while Redis is not known to persist with AOF (not checked yet, or found
 * without it) unless redis.allow_volatile is set, and for FB_DURABILITY_LOSS_DEGRADED_MS after a
 * data loss was found.
 */
bool fb_durability_ok(const fb_durability_t *dur);

/**
 * Appends the /healthz members of the "redis" object, each preceded by a comma:
 * ,"aof":true|false|null,"appendfsync":"everysec"|null,"persistence":"durable|volatile|unknown",
 * "data_losses":N,"last_data_loss_ms":MS|null. Returns 0 or the fb_buf error.
 */
int fb_durability_health(const fb_durability_t *dur, fb_buf_t *out);

/**
 * Appends the Prometheus lines: frichebot_redis_aof_enabled (1, 0, -1 not known),
 * frichebot_redis_durable (0/1), frichebot_redis_data_loss_total. Returns 0 or the fb_buf error.
 */
int fb_durability_metrics_render(const fb_durability_t *dur, fb_buf_t *out);

#endif /* FB_DURABILITY_H */
