/* SPDX-License-Identifier: MIT */
/*
 * bench_store.c - load generator for the session store: how many session load+save round trips
 * per second the daemon's Redis path (fb_redis_t + fb_store_t on one libuv loop) sustains.
 *
 * C conversations are in flight at once; each repeatedly loads its session (HMGET) and saves it
 * back with the version it read through a versioned Lua save (fb_store_eval(): EVALSHA), so
 * every save succeeds (one writer per conversation), until N round trips are done in total.
 * Sessions are D bytes. bench/run.sh runs it next to redis-benchmark on the same Redis and compares
 * the two; it is not part of `make test`.
 *
 *   bench_store -a tcp://127.0.0.1:6379 [-n 100000] [-c 50] [-d 512]
 *
 * Prints "roundtrips_per_s=<float>" (and a human summary on stderr); exits non-zero if any
 * operation failed or Redis could not be reached.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "core/store.h"
#include "frichebot/alloc.h"
#include "frichebot/err.h"
#include "frichebot/log.h"
#include "io/redis.h"

struct bench;

struct worker {
    struct bench *b;
    char key[64]; /* conversation key */
    char *k_sess; /* its session record's Redis key */
    char ttl[24]; /* the session TTL (ms) */
    char seq[24]; /* the write id of the save in flight */
    uint64_t nsave;
};

/*
 * The save. KEYS[1] the session record (core/keys.h: v, d, w); ARGV: expected version, data,
 * write id, TTL ms. {1, new version} when written, {0, version found} on a conflict.
 */
static fb_store_script_t s_save = {
    .src = "local cur = redis.call('HMGET', KEYS[1], '" FB_SESSION_VERSION
           "', '" FB_SESSION_WRITE_ID "')\n"
           "local v = tonumber(cur[1]) or 0\n"
           "if v == tonumber(ARGV[1]) then\n"
           "  redis.call('HSET', KEYS[1], '" FB_SESSION_VERSION
           "', string.format('%d', v + 1), '" FB_SESSION_DATA "', ARGV[2], '" FB_SESSION_WRITE_ID
           "', ARGV[3])\n"
           "  local ttl = tonumber(ARGV[4])\n"
           "  if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) else "
           "redis.call('PERSIST', KEYS[1]) end\n"
           "  return {1, v + 1}\n"
           "end\n"
           "return {0, v}\n"};

struct bench {
    uv_loop_t loop;
    fb_redis_t *redis;
    fb_store_t *store;
    struct worker *workers;
    char *data;              /* the session payload */
    size_t size;             /* bytes of data */
    unsigned long total;     /* round trips to run */
    unsigned long started;   /* round trips begun */
    unsigned long completed; /* round trips whose save succeeded */
    unsigned long failed;    /* round trips that failed, any step */
    int first_error;
    uint64_t t_start, t_end; /* uv_hrtime() */
    unsigned active;         /* workers still running */
};

static void worker_next(struct worker *w);

static void fail(struct bench *b, int status)
{
    b->failed++;
    if (!b->first_error)
        b->first_error = status;
}

/* End of one round trip: count it, start the next. */
static void on_saved(int status, const struct redisReply *rep, void *arg)
{
    struct worker *w = arg;
    if (status == 0 &&
        (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 || rep->element[0]->integer != 1))
        status = FB_ECONFLICT;
    if (status == 0)
        w->b->completed++;
    else
        fail(w->b, status);
    worker_next(w);
}

/* Loaded (or no session yet): save back with the version read; one writer per key, so it wins. */
static void on_loaded(fb_redis_t *r, int status, struct redisReply *rep, void *arg)
{
    (void)r;
    struct worker *w = arg;
    struct bench *b = w->b;
    if (status == 0 && (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2))
        status = FB_EPROTO;
    if (status != 0) {
        fail(b, status);
        worker_next(w);
        return;
    }
    const struct redisReply *v = rep->element[0];
    const char *version = v->type == REDIS_REPLY_STRING ? v->str : "0";
    snprintf(w->seq, sizeof(w->seq), "%llx", (unsigned long long)++w->nsave);
    const char *args[] = {w->k_sess, version, b->data, w->seq, w->ttl};
    size_t lens[] = {strlen(w->k_sess), strlen(version), b->size, strlen(w->seq), strlen(w->ttl)};
    int rc = fb_store_eval(b->store, &s_save, FB_REDIS_RETRY, 1, 4, args, lens, on_saved, w);
    if (rc != 0) {
        fail(b, rc);
        worker_next(w);
    }
}

/* Starts the worker's next round trip, or retires it when the total is reached. */
static void worker_next(struct worker *w)
{
    struct bench *b = w->b;
    while (b->started < b->total) {
        b->started++;
        const char *argv[] = {"HMGET", w->k_sess, FB_SESSION_VERSION, FB_SESSION_DATA};
        int rc = fb_redis_command_argv(b->redis, FB_REDIS_RETRY, on_loaded, w, 4, argv, NULL);
        if (rc == 0)
            return;
        fail(b, rc);
    }
    if (--b->active == 0)
        b->t_end = uv_hrtime();
}

/* Redis answered the first PING: start the clock and every worker. */
static void on_ping(fb_redis_t *r, int status, struct redisReply *reply, void *arg)
{
    (void)r;
    (void)reply;
    struct bench *b = arg;
    if (status != 0) {
        fprintf(stderr, "bench_store: Redis unreachable: %s\n", fb_strerror(status));
        fail(b, status);
        return;
    }
    b->t_start = uv_hrtime();
    for (unsigned i = 0; i < b->active; i++)
        worker_next(&b->workers[i]);
}

static void on_closed(void *arg)
{
    (void)arg;
}

static int parse_ulong(const char *s, unsigned long *out)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (!*s || *end || v == 0)
        return -1;
    *out = v;
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_store -a ADDRESS [-n ROUNDTRIPS] [-c CONCURRENCY] [-d BYTES]\n");
}

int main(int argc, char **argv)
{
    const char *address = NULL;
    unsigned long total = 100000, conc = 50, size = 512;
    int opt;
    signal(SIGPIPE, SIG_IGN); /* as the daemon does: io/redis.h requires it */
    while ((opt = getopt(argc, argv, "a:n:c:d:h")) != -1) {
        switch (opt) {
        case 'a':
            address = optarg;
            break;
        case 'n':
            if (parse_ulong(optarg, &total) != 0)
                goto bad;
            break;
        case 'c':
            if (parse_ulong(optarg, &conc) != 0 || conc > 100000)
                goto bad;
            break;
        case 'd':
            if (parse_ulong(optarg, &size) != 0 || size > (64ul << 20))
                goto bad;
            break;
        default:
            goto bad;
        }
    }
    if (!address || optind != argc)
        goto bad;
    fb_log_set_level_all(FB_LOG_WARN);

    struct bench b;
    memset(&b, 0, sizeof(b));
    if (uv_loop_init(&b.loop) != 0)
        return 1;
    b.total = total;
    b.size = size;
    b.data = fb_malloc(size);
    for (size_t i = 0; i < size; i++)
        b.data[i] = (char)('a' + i % 26);

    char addr[512];
    snprintf(addr, sizeof(addr), "%s", address);
    fb_redis_opts_t ro;
    memset(&ro, 0, sizeof(ro));
    ro.address = addr;
    ro.connect_timeout_ms = 2000;
    ro.command_timeout_ms = 10000;
    ro.write_deadline_ms = 10000;
    ro.reconnect.delays_ms[0] = 100;
    ro.reconnect.n_delays = 1;
    b.redis = fb_redis_create(&b.loop, &ro);
    if (!b.redis) {
        fprintf(stderr, "bench_store: bad address %s\n", address);
        return 2;
    }
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "fbbench:%lx:", (unsigned long)getpid());
    fb_store_opts_t so = {.key_prefix = prefix, .session_ttl_days = 1};
    b.store = fb_store_create(b.redis, &so);
    fb_store_script_init(&s_save, s_save.src);
    b.workers = fb_calloc(conc, sizeof(*b.workers));
    b.active = (unsigned)conc;
    for (unsigned long i = 0; i < conc; i++) {
        b.workers[i].b = &b;
        snprintf(b.workers[i].key, sizeof(b.workers[i].key), "conv-%lu", i);
        b.workers[i].k_sess = fb_store_conv_key(b.store, b.workers[i].key, FB_KEY_SESSION);
        snprintf(b.workers[i].ttl, sizeof(b.workers[i].ttl), "%llu",
                 (unsigned long long)fb_store_session_ttl_ms(b.store));
    }

    int rc = fb_redis_start(b.redis);
    if (rc == 0)
        rc = fb_redis_command(b.redis, 0, on_ping, &b, "PING", NULL);
    if (rc != 0) {
        fprintf(stderr, "bench_store: %s\n", fb_strerror(rc));
        return 1;
    }
    while (b.active > 0 && !b.first_error)
        uv_run(&b.loop, UV_RUN_ONCE);
    /* After a failure, let what is in flight finish (or be cancelled by the close). */
    fb_redis_close(b.redis, on_closed, NULL);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    fb_store_destroy(b.store);
    int lc = uv_loop_close(&b.loop);

    int status = 0;
    if (b.failed || !b.t_end || lc != 0) {
        fprintf(stderr, "bench_store: %lu of %lu round trips failed (first error: %s)\n", b.failed,
                b.total, fb_err_name(b.first_error));
        status = 1;
    } else {
        double secs = (double)(b.t_end - b.t_start) / 1e9;
        double rate = (double)b.completed / secs;
        fprintf(stderr,
                "bench_store: %lu load+save round trips, %lu concurrent, %lu-byte sessions, "
                "%.3f s: %.0f round trips/s\n",
                b.completed, conc, size, secs, rate);
        printf("roundtrips_per_s=%.1f\n", rate);
    }
    for (unsigned long i = 0; b.workers && i < conc; i++)
        fb_free(b.workers[i].k_sess);
    fb_free(b.workers);
    fb_free(b.data);
    return status;
bad:
    usage();
    return 2;
}
