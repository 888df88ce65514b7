/* SPDX-License-Identifier: MIT */
/*
 * test_store.c - the store (scripts on the daemon's Redis connection) against a real, throwaway
 * redis-server: the key schema, EVALSHA and the NOSCRIPT fallback, retries across outages, lost
 * replies, deadlines, and cancellation on close. The scripts are a versioned session record
 * (load, save, delete) written below on fb_store_eval(), the way the router uses the store.
 * Every test checks that each callback is called exactly once and ends with
 * fb_test_loop_close_strict().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "core/store.h"
#include "frichebot/alloc.h"
#include "frichebot/err.h"
#include "io/redis.h"
#include "task.h"

/* ---------------------------------------------------------------------------------------- */
/* Helpers */

struct fixture {
    fb_test_redis_t srv;
    uv_loop_t loop;
    char addr[64];
    fb_redis_opts_t ropts;
    fb_store_opts_t sopts;
    char prefix[32];
    fb_redis_t *r;
    fb_store_t *s;
    redisContext *sync; /* for checking what is really in Redis */
};

struct load_result {
    int calls;
    int status;
    uint64_t version;
    char data[1024];
    size_t len;
};

struct save_result {
    int calls;
    int status;
    uint64_t version;
};

static void on_load(int status, const char *data, size_t len, uint64_t version, void *arg)
{
    struct load_result *res = arg;
    res->calls++;
    res->status = status;
    res->version = version;
    res->len = len;
    if (status == 0) {
        ASSERT_NOT_NULL(data);
        ASSERT_LE(len, sizeof(res->data));
        memcpy(res->data, data, len);
    } else {
        ASSERT_NULL(data);
        ASSERT_EQ(len, 0);
    }
}

static void on_save(int status, uint64_t version, void *arg)
{
    struct save_result *res = arg;
    res->calls++;
    res->status = status;
    res->version = version;
}

/* ---- a versioned session record on fb_store_eval() ---- */

typedef void (*load_cb)(int status, const char *data, size_t len, uint64_t version, void *arg);
typedef void (*save_cb)(int status, uint64_t new_version, void *arg);

/* Load. KEYS: the record. {v, d} (nil, nil when absent). */
static fb_store_script_t s_load = {.src = "return redis.call('HMGET', KEYS[1], 'v', 'd')\n"};
/* Save. KEYS: the record; ARGV: expected version, data, write id, TTL ms. {1, v} written, {2, v}
 * this very write was applied already (a resend), {0, v} a conflict. */
static fb_store_script_t s_save = {
    .src = "local cur = redis.call('HMGET', KEYS[1], 'v', 'w')\n"
           "local v = tonumber(cur[1]) or 0\n"
           "local expected = tonumber(ARGV[1])\n"
           "if v == expected then\n"
           "  redis.call('HSET', KEYS[1], 'v', string.format('%d', v + 1), 'd', ARGV[2], 'w', "
           "ARGV[3])\n"
           "  local ttl = tonumber(ARGV[4])\n"
           "  if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) else "
           "redis.call('PERSIST', KEYS[1]) end\n"
           "  return {1, v + 1}\n"
           "end\n"
           "if v == expected + 1 and cur[2] == ARGV[3] then return {2, v} end\n"
           "return {0, v}\n"};
static fb_store_script_t s_delete = {.src = "redis.call('DEL', KEYS[1]) return 1\n"};
static unsigned write_seq;

struct sess_op {
    load_cb lcb;
    save_cb scb;
    void *arg;
};

static void scripts_init(void)
{
    fb_store_script_init(&s_load, s_load.src);
    fb_store_script_init(&s_save, s_save.src);
    fb_store_script_init(&s_delete, s_delete.src);
}

static void sess_on_load(int status, const redisReply *rep, void *arg)
{
    struct sess_op *op = arg;
    load_cb cb = op->lcb;
    void *cba = op->arg;
    fb_free(op);
    if (status != 0) {
        cb(status, NULL, 0, 0, cba);
    } else if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
        cb(FB_EPROTO, NULL, 0, 0, cba);
    } else if (rep->element[0]->type != REDIS_REPLY_STRING) {
        cb(FB_ENOENT, NULL, 0, 0, cba);
    } else {
        const redisReply *d = rep->element[1];
        uint64_t v = strtoull(rep->element[0]->str, NULL, 10);
        if (d->type == REDIS_REPLY_STRING)
            cb(0, d->str, d->len, v, cba);
        else
            cb(FB_EPROTO, NULL, 0, 0, cba);
    }
}

static void sess_on_save(int status, const redisReply *rep, void *arg)
{
    struct sess_op *op = arg;
    save_cb cb = op->scb;
    void *cba = op->arg;
    fb_free(op);
    if (status != 0)
        cb(status, 0, cba);
    else if (rep->type == REDIS_REPLY_INTEGER) /* the delete */
        cb(0, 0, cba);
    else if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2)
        cb(FB_EPROTO, 0, cba);
    else
        cb(rep->element[0]->integer == 0 ? FB_ECONFLICT : 0, (uint64_t)rep->element[1]->integer,
           cba);
}

static int sess_load(fb_store_t *s, const char *conv, load_cb cb, void *arg)
{
    char *key = fb_store_conv_key(s, conv, "session");
    if (!key || !cb) {
        fb_free(key);
        return FB_EINVAL;
    }
    struct sess_op *op = fb_calloc(1, sizeof(*op));
    op->lcb = cb;
    op->arg = arg;
    const char *args[] = {key};
    int rc = fb_store_eval(s, &s_load, FB_REDIS_RETRY, 1, 0, args, NULL, sess_on_load, op);
    fb_free(key);
    if (rc != 0)
        fb_free(op);
    return rc;
}

static int sess_save_id(fb_store_t *s, const char *conv, const char *data, size_t len,
                        uint64_t expected, const char *write_id, save_cb cb, void *arg)
{
    char *key = fb_store_conv_key(s, conv, "session");
    if (!key || !cb || (!data && len) || !write_id || !write_id[0]) {
        fb_free(key);
        return FB_EINVAL;
    }
    struct sess_op *op = fb_calloc(1, sizeof(*op));
    op->scb = cb;
    op->arg = arg;
    char exp[24], ttl[24];
    snprintf(exp, sizeof(exp), "%llu", (unsigned long long)expected);
    snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)fb_store_session_ttl_ms(s));
    const char *args[] = {key, exp, data ? data : "", write_id, ttl};
    size_t lens[] = {strlen(key), strlen(exp), len, strlen(write_id), strlen(ttl)};
    int rc = fb_store_eval(s, &s_save, FB_REDIS_RETRY, 1, 4, args, lens, sess_on_save, op);
    fb_free(key);
    if (rc != 0)
        fb_free(op);
    return rc;
}

static int sess_save(fb_store_t *s, const char *conv, const char *data, size_t len,
                     uint64_t expected, save_cb cb, void *arg)
{
    char id[24];
    snprintf(id, sizeof(id), "t-%u", ++write_seq);
    return sess_save_id(s, conv, data, len, expected, id, cb, arg);
}

static int sess_delete(fb_store_t *s, const char *conv, save_cb cb, void *arg)
{
    char *key = fb_store_conv_key(s, conv, "session");
    if (!key || !cb) {
        fb_free(key);
        return FB_EINVAL;
    }
    struct sess_op *op = fb_calloc(1, sizeof(*op));
    op->scb = cb;
    op->arg = arg;
    const char *args[] = {key};
    int rc = fb_store_eval(s, &s_delete, FB_REDIS_RETRY, 1, 0, args, NULL, sess_on_save, op);
    fb_free(key);
    if (rc != 0)
        fb_free(op);
    return rc;
}

static uint64_t now_ms(uv_loop_t *loop)
{
    uv_update_time(loop);
    return uv_now(loop);
}

/* Starts Redis, a client on TCP and a store with prefix "fbt:" and a 1-day TTL. */
static void fixture_start(struct fixture *f)
{
    memset(f, 0, sizeof(*f));
    scripts_init();
    ASSERT_OK(fb_test_redis_start(&f->srv));
    ASSERT_OK(uv_loop_init(&f->loop));
    snprintf(f->addr, sizeof(f->addr), "tcp://127.0.0.1:%d", f->srv.port);
    f->ropts.address = f->addr;
    f->ropts.connect_timeout_ms = 1000;
    f->ropts.command_timeout_ms = 3000;
    f->ropts.write_deadline_ms = 5000;
    f->ropts.reconnect.delays_ms[0] = 20;
    f->ropts.reconnect.delays_ms[1] = 50;
    f->ropts.reconnect.n_delays = 2;
    snprintf(f->prefix, sizeof(f->prefix), "fbt:");
    f->sopts.key_prefix = f->prefix;
    f->sopts.session_ttl_days = 1;
    f->r = fb_redis_create(&f->loop, &f->ropts);
    ASSERT_NOT_NULL(f->r);
    ASSERT_OK(fb_redis_start(f->r));
    f->s = fb_store_create(f->r, &f->sopts);
    ASSERT_NOT_NULL(f->s);
    f->sync = redisConnect("127.0.0.1", f->srv.port);
    ASSERT(f->sync && !f->sync->err);
}

/* Reconnects the synchronous context (after a Redis restart). */
static void fixture_resync(struct fixture *f)
{
    redisFree(f->sync);
    f->sync = redisConnect("127.0.0.1", f->srv.port);
    ASSERT(f->sync && !f->sync->err);
}

static void on_closed(void *arg)
{
    (*(int *)arg)++;
}

/* Closes the client (then the store), checks the loop is left empty, stops Redis. */
static void fixture_stop(struct fixture *f)
{
    int closed = 0;
    fb_redis_close(f->r, on_closed, &closed);
    ASSERT(fb_test_wait_int(&f->loop, &closed, 1, 5000));
    ASSERT_EQ(fb_store_pending(f->s), 0);
    fb_store_destroy(f->s);
    redisFree(f->sync);
    fb_test_loop_close_strict(&f->loop);
    ASSERT_EQ(closed, 1);
    fb_test_redis_destroy(&f->srv);
}

static struct load_result load(struct fixture *f, const char *conv)
{
    struct load_result res;
    memset(&res, 0, sizeof(res));
    ASSERT_OK(sess_load(f->s, conv, on_load, &res));
    ASSERT(fb_test_wait_int(&f->loop, &res.calls, 1, 5000));
    ASSERT_EQ(res.calls, 1);
    return res;
}

static struct save_result save(struct fixture *f, const char *conv, const char *data, size_t len,
                               uint64_t expected)
{
    struct save_result res = {0};
    ASSERT_OK(sess_save(f->s, conv, data, len, expected, on_save, &res));
    ASSERT(fb_test_wait_int(&f->loop, &res.calls, 1, 5000));
    ASSERT_EQ(res.calls, 1);
    return res;
}

static redisReply *sync_cmd(struct fixture *f, const char *fmt, const char *arg)
{
    redisReply *rep = redisCommand(f->sync, fmt, arg);
    ASSERT_NOT_NULL(rep);
    return rep;
}

/* Returns the value of field `field` in `INFO commandstats` line `cmd` ("cmdstat_eval"). */
static long commandstat(struct fixture *f, const char *cmd, const char *field)
{
    redisReply *rep = sync_cmd(f, "INFO %s", "commandstats");
    ASSERT_EQ(rep->type, REDIS_REPLY_STRING);
    char needle[64], fneedle[64];
    snprintf(needle, sizeof(needle), "%s:", cmd);
    snprintf(fneedle, sizeof(fneedle), "%s=", field);
    long value = 0;
    const char *line = strstr(rep->str, needle);
    if (line) {
        const char *end = strchr(line, '\r');
        const char *fp = strstr(line, fneedle);
        if (fp && (!end || fp < end))
            value = strtol(fp + strlen(fneedle), NULL, 10);
    }
    freeReplyObject(rep);
    return value;
}

/* ---------------------------------------------------------------------------------------- */
/* Tests */

/* Save then load returns the same bytes (NULs included) and versions 1, 2. */
TEST_IMPL(store_save_load_roundtrip)
{
    struct fixture f;
    fixture_start(&f);
    const char v1[] = "{\"step\":\"a\"}\0binary";
    struct save_result sr = save(&f, "!room:hs", v1, sizeof(v1), 0);
    ASSERT_EQ(sr.status, 0);
    ASSERT_EQ(sr.version, 1);
    struct load_result lr = load(&f, "!room:hs");
    ASSERT_EQ(lr.status, 0);
    ASSERT_EQ(lr.version, 1);
    ASSERT_EQ(lr.len, sizeof(v1));
    ASSERT(memcmp(lr.data, v1, sizeof(v1)) == 0);

    sr = save(&f, "!room:hs", "second", 6, 1);
    ASSERT_EQ(sr.status, 0);
    ASSERT_EQ(sr.version, 2);
    lr = load(&f, "!room:hs");
    ASSERT_EQ(lr.version, 2);
    ASSERT_EQ(lr.len, 6);
    ASSERT(memcmp(lr.data, "second", 6) == 0);

    sr = save(&f, "empty", "", 0, 0); /* an empty session is a session */
    ASSERT_EQ(sr.status, 0);
    lr = load(&f, "empty");
    ASSERT_EQ(lr.status, 0);
    ASSERT_EQ(lr.len, 0);
    ASSERT_EQ(lr.version, 1);
    fixture_stop(&f);
    return 0;
}

/* Loading a conversation that has no session gives FB_ENOENT with version 0. */
TEST_IMPL(store_load_missing)
{
    struct fixture f;
    fixture_start(&f);
    struct load_result lr = load(&f, "nobody");
    ASSERT_EQ(lr.status, FB_ENOENT);
    ASSERT_EQ(lr.version, 0);
    fixture_stop(&f);
    return 0;
}

/*
 * Two saves computed from the same version race: exactly one wins (version 1), the other gets
 * FB_ECONFLICT with the version it found. A stale expected version conflicts too, and the
 * record keeps the winner's data.
 */
TEST_IMPL(store_version_conflict)
{
    struct fixture f;
    fixture_start(&f);
    struct save_result a = {0}, b = {0};
    ASSERT_OK(sess_save(f.s, "conv", "from-a", 6, 0, on_save, &a));
    ASSERT_OK(sess_save(f.s, "conv", "from-b", 6, 0, on_save, &b));
    ASSERT_EQ(fb_store_pending(f.s), 2);
    ASSERT(fb_test_wait_int(&f.loop, &b.calls, 1, 5000));
    ASSERT_EQ(a.calls, 1);
    ASSERT_EQ(b.calls, 1);
    ASSERT(a.status == 0 || b.status == 0);
    struct save_result *win = a.status == 0 ? &a : &b, *lose = a.status == 0 ? &b : &a;
    ASSERT_EQ(win->version, 1);
    ASSERT_EQ(lose->status, FB_ECONFLICT);
    ASSERT_EQ(lose->version, 1);

    struct save_result stale = save(&f, "conv", "stale", 5, 5);
    ASSERT_EQ(stale.status, FB_ECONFLICT);
    ASSERT_EQ(stale.version, 1);
    struct save_result exists = save(&f, "conv", "again", 5, 0);
    ASSERT_EQ(exists.status, FB_ECONFLICT);
    struct load_result lr = load(&f, "conv");
    ASSERT_EQ(lr.version, 1);
    ASSERT(memcmp(lr.data, win == &a ? "from-a" : "from-b", 6) == 0);
    fixture_stop(&f);
    return 0;
}

/* Every save sets the retention TTL: PTTL within (0, 1 day]; 0 days means no expiry. */
TEST_IMPL(store_ttl)
{
    struct fixture f;
    fixture_start(&f);
    ASSERT_EQ(save(&f, "ttl", "x", 1, 0).status, 0);
    char *key = fb_store_conv_key(f.s, "ttl", "session");
    redisReply *rep = sync_cmd(&f, "PTTL %s", key);
    ASSERT_EQ(rep->type, REDIS_REPLY_INTEGER);
    ASSERT_GT(rep->integer, 0);
    ASSERT_LE(rep->integer, 86400000LL);
    ASSERT_GT(rep->integer, 86400000LL - 60000); /* just set */
    freeReplyObject(rep);
    /* A later save refreshes it. */
    freeReplyObject(sync_cmd(&f, "PEXPIRE %s 5000", key));
    ASSERT_EQ(save(&f, "ttl", "y", 1, 1).status, 0);
    rep = sync_cmd(&f, "PTTL %s", key);
    ASSERT_GT(rep->integer, 86400000LL - 60000);
    freeReplyObject(rep);
    fb_free(key);

    fb_store_opts_t forever = f.sopts;
    forever.session_ttl_days = 0;
    fb_store_t *s2 = fb_store_create(f.r, &forever);
    ASSERT_NOT_NULL(s2);
    struct save_result sr = {0};
    ASSERT_OK(sess_save(s2, "forever", "z", 1, 0, on_save, &sr));
    ASSERT(fb_test_wait_int(&f.loop, &sr.calls, 1, 5000));
    ASSERT_EQ(sr.status, 0);
    key = fb_store_conv_key(s2, "forever", "session");
    rep = sync_cmd(&f, "PTTL %s", key);
    ASSERT_EQ(rep->integer, -1);
    freeReplyObject(rep);
    fb_free(key);
    fb_store_destroy(s2);
    fixture_stop(&f);
    return 0;
}

/*
 * Key schema: "<prefix>{c:<escaped>}:session". The Cluster hash tag (from the first '{' to the
 * first '}' after it) is exactly "c:" + the escaped conversation key, whatever the key holds,
 * so every key of one conversation shares a slot; the record really lives under that key.
 * Prefixes with braces are refused.
 */
TEST_IMPL(store_key_schema)
{
    struct fixture f;
    fixture_start(&f);
    const char conv[] = "!a{b}c%d\n\x7f\xc3\xa9:x";
    char *key = fb_store_conv_key(f.s, conv, "session");
    ASSERT_STR_EQ(key, "fbt:{c:!a%7Bb%7Dc%25d%0A%7F\xc3\xa9:x}:session");
    const char *open = strchr(key, '{'), *close = strchr(open, '}');
    ASSERT_NOT_NULL(close);
    char tag[128];
    snprintf(tag, sizeof(tag), "%.*s", (int)(close - open - 1), open + 1);
    ASSERT_STR_EQ(tag, "c:!a%7Bb%7Dc%25d%0A%7F\xc3\xa9:x");
    char *other = fb_store_conv_key(f.s, conv, "outbox");
    ASSERT(strncmp(key, other, (size_t)(close - key + 1)) == 0); /* same tag, same slot */
    fb_free(other);

    ASSERT_EQ(save(&f, conv, "d", 1, 0).status, 0);
    redisReply *rep = sync_cmd(&f, "HGETALL %s", key);
    ASSERT_EQ(rep->type, REDIS_REPLY_ARRAY);
    ASSERT_EQ(rep->elements, 6); /* v, d, w */
    ASSERT_STR_EQ(rep->element[0]->str, "v");
    ASSERT_STR_EQ(rep->element[1]->str, "1");
    ASSERT_STR_EQ(rep->element[2]->str, "d");
    ASSERT_STR_EQ(rep->element[4]->str, "w");
    freeReplyObject(rep);
    fb_free(key);

    /* Two conversations differing only by an escaped character do not collide. */
    char *k1 = fb_store_conv_key(f.s, "a{", "session"),
         *k2 = fb_store_conv_key(f.s, "a%7B", "session");
    ASSERT(strcmp(k1, k2) != 0);
    fb_free(k1);
    fb_free(k2);

    ASSERT_NULL(fb_store_conv_key(f.s, "", "session"));
    char bad_prefix[] = "fb{x}:";
    fb_store_opts_t o = f.sopts;
    o.key_prefix = bad_prefix;
    ASSERT_NULL(fb_store_create(f.r, &o));
    fixture_stop(&f);
    return 0;
}

static void restart_cb(uv_timer_t *t)
{
    fb_test_redis_t *srv = t->data;
    ASSERT_OK(fb_test_redis_restart(srv));
}

/*
 * A save issued while Redis is stopped waits, and completes once Redis is back (restarted by
 * a timer 300 ms later): callback once with status 0 and version 1, data really stored.
 */
TEST_IMPL(store_save_during_outage)
{
    struct fixture f;
    fixture_start(&f);
    ASSERT_EQ(load(&f, "warmup").status, FB_ENOENT); /* connected */
    fb_test_redis_stop(&f.srv);
    fb_test_run_for(&f.loop, 50);
    uint64_t t0 = now_ms(&f.loop);
    struct save_result sr = {0};
    ASSERT_OK(sess_save(f.s, "outage", "kept", 4, 0, on_save, &sr));
    uv_timer_t restart;
    uv_timer_init(&f.loop, &restart);
    restart.data = &f.srv;
    uv_timer_start(&restart, restart_cb, 300, 0);
    ASSERT(fb_test_wait_int(&f.loop, &sr.calls, 1, 5000));
    ASSERT_GE(now_ms(&f.loop) - t0, 300);
    ASSERT_EQ(sr.status, 0);
    ASSERT_EQ(sr.version, 1);
    uv_close((uv_handle_t *)&restart, NULL);
    fb_test_run_for(&f.loop, 200);
    ASSERT_EQ(sr.calls, 1);

    fixture_resync(&f);
    char *key = fb_store_conv_key(f.s, "outage", "session");
    redisReply *rep = sync_cmd(&f, "HGET %s d", key);
    ASSERT_EQ(rep->type, REDIS_REPLY_STRING);
    ASSERT_STR_EQ(rep->str, "kept");
    freeReplyObject(rep);
    fb_free(key);
    fixture_stop(&f);
    return 0;
}

/*
 * The resend of a save whose reply was lost: running the script again with the same write id
 * and expected version reports success with the same version, which is bumped only once. A
 * different write id with that expected version is a real conflict.
 */
TEST_IMPL(store_lost_reply_resend_idempotent)
{
    struct fixture f;
    fixture_start(&f);
    struct save_result first = {0}, resend = {0}, other = {0};
    ASSERT_OK(sess_save_id(f.s, "lost", "payload", 7, 0, "event-42", on_save, &first));
    ASSERT(fb_test_wait_int(&f.loop, &first.calls, 1, 5000));
    ASSERT_EQ(first.status, 0);
    ASSERT_EQ(first.version, 1);
    ASSERT_OK(sess_save_id(f.s, "lost", "payload", 7, 0, "event-42", on_save, &resend));
    ASSERT(fb_test_wait_int(&f.loop, &resend.calls, 1, 5000));
    ASSERT_EQ(resend.status, 0);
    ASSERT_EQ(resend.version, 1);
    ASSERT_OK(sess_save_id(f.s, "lost", "payload", 7, 0, "event-43", on_save, &other));
    ASSERT(fb_test_wait_int(&f.loop, &other.calls, 1, 5000));
    ASSERT_EQ(other.status, FB_ECONFLICT);
    ASSERT_EQ(other.version, 1);
    struct load_result lr = load(&f, "lost");
    ASSERT_EQ(lr.version, 1);
    /* Once a later write landed, the old id no longer matches: a conflict, not a replay. */
    ASSERT_EQ(save(&f, "lost", "next", 4, 1).status, 0);
    struct save_result late = {0};
    ASSERT_OK(sess_save_id(f.s, "lost", "payload", 7, 0, "event-42", on_save, &late));
    ASSERT(fb_test_wait_int(&f.loop, &late.calls, 1, 5000));
    ASSERT_EQ(late.status, FB_ECONFLICT);
    ASSERT_EQ(late.version, 2);
    struct save_result badid = {0};
    ASSERT_EQ(sess_save_id(f.s, "lost", "x", 1, 2, "", on_save, &badid), FB_EINVAL);
    fixture_stop(&f);
    return 0;
}

/*
 * A save stuck behind CLIENT PAUSE times out (command_timeout_ms 100), is resent on new
 * connections until the pause ends, and completes exactly once with the version bumped once.
 */
TEST_IMPL(store_save_resent_after_timeout)
{
    struct fixture f;
    fixture_start(&f);
    ASSERT_EQ(save(&f, "paused", "v1", 2, 0).status, 0);
    /* A second client with a short command timeout. */
    fb_redis_opts_t o = f.ropts;
    o.command_timeout_ms = 100;
    o.connect_timeout_ms = 3000;
    fb_redis_t *r2 = fb_redis_create(&f.loop, &o);
    ASSERT_NOT_NULL(r2);
    ASSERT_OK(fb_redis_start(r2));
    fb_store_t *s2 = fb_store_create(r2, &f.sopts);
    ASSERT_NOT_NULL(s2);
    struct load_result warm = {0};
    ASSERT_OK(sess_load(s2, "paused", on_load, &warm));
    ASSERT(fb_test_wait_int(&f.loop, &warm.calls, 1, 5000));
    ASSERT_EQ(warm.version, 1);

    redisReply *rep = sync_cmd(&f, "CLIENT PAUSE %s", "700");
    freeReplyObject(rep);
    struct save_result sr = {0};
    ASSERT_OK(sess_save(s2, "paused", "v2", 2, 1, on_save, &sr));
    ASSERT(fb_test_wait_int(&f.loop, &sr.calls, 1, 5000));
    ASSERT_EQ(sr.status, 0);
    ASSERT_EQ(sr.version, 2);
    fb_test_run_for(&f.loop, 100);
    ASSERT_EQ(sr.calls, 1);
    fb_redis_stats_t st;
    fb_redis_get_stats(r2, &st);
    ASSERT_GE(st.timeouts, 1);
    ASSERT_GE(st.resends, 1);
    struct load_result lr = load(&f, "paused");
    ASSERT_EQ(lr.version, 2);
    ASSERT(memcmp(lr.data, "v2", 2) == 0);

    int closed = 0;
    fb_redis_close(r2, on_closed, &closed);
    ASSERT(fb_test_wait_int(&f.loop, &closed, 1, 5000));
    fb_store_destroy(s2);
    fixture_stop(&f);
    return 0;
}

/*
 * Redis stays down longer than the write deadline (300 ms): the save fails once with
 * FB_EUNAVAIL, and is not written when Redis comes back.
 */
TEST_IMPL(store_deadline_unavailable)
{
    struct fixture f;
    fixture_start(&f);
    fb_redis_close(f.r, NULL, NULL);
    fb_store_destroy(f.s);
    f.ropts.write_deadline_ms = 300;
    f.r = fb_redis_create(&f.loop, &f.ropts);
    ASSERT_NOT_NULL(f.r);
    ASSERT_OK(fb_redis_start(f.r));
    f.s = fb_store_create(f.r, &f.sopts);
    ASSERT_EQ(load(&f, "warmup").status, FB_ENOENT);

    fb_test_redis_stop(&f.srv);
    fb_test_run_for(&f.loop, 50);
    uint64_t t0 = now_ms(&f.loop);
    struct save_result sr = {0};
    ASSERT_OK(sess_save(f.s, "never", "x", 1, 0, on_save, &sr));
    ASSERT(fb_test_wait_int(&f.loop, &sr.calls, 1, 3000));
    uint64_t elapsed = now_ms(&f.loop) - t0;
    ASSERT_EQ(sr.status, FB_EUNAVAIL);
    ASSERT_EQ(sr.version, 0);
    ASSERT_GE(elapsed, 300);

    ASSERT_OK(fb_test_redis_restart(&f.srv));
    fixture_resync(&f);
    struct load_result lr = load(&f, "never");
    ASSERT_EQ(lr.status, FB_ENOENT);
    ASSERT_EQ(sr.calls, 1);
    fixture_stop(&f);
    return 0;
}

/*
 * fb_redis_close() with store operations waiting (Redis down): each completes once with
 * FB_ECANCELED, and the store can be destroyed once they have.
 */
TEST_IMPL(store_close_cancels_pending)
{
    struct fixture f;
    fixture_start(&f);
    fb_test_redis_stop(&f.srv);
    struct load_result lr = {0};
    struct save_result sr = {0}, dr = {0};
    ASSERT_OK(sess_load(f.s, "c1", on_load, &lr));
    ASSERT_OK(sess_save(f.s, "c2", "x", 1, 0, on_save, &sr));
    ASSERT_OK(sess_delete(f.s, "c3", on_save, &dr));
    fb_test_run_for(&f.loop, 100);
    ASSERT_EQ(fb_store_pending(f.s), 3);
    int closed = 0;
    fb_redis_close(f.r, on_closed, &closed);
    ASSERT_EQ(lr.calls, 1);
    ASSERT_EQ(lr.status, FB_ECANCELED);
    ASSERT_EQ(sr.calls, 1);
    ASSERT_EQ(sr.status, FB_ECANCELED);
    ASSERT_EQ(dr.calls, 1);
    ASSERT_EQ(dr.status, FB_ECANCELED);
    ASSERT_EQ(fb_store_pending(f.s), 0);
    ASSERT_EQ(sess_load(f.s, "c1", on_load, &lr), FB_ECLOSING);
    ASSERT(fb_test_wait_int(&f.loop, &closed, 1, 3000));
    fb_store_destroy(f.s);
    redisFree(f.sync);
    fb_test_loop_close_strict(&f.loop);
    ASSERT_EQ(lr.calls + sr.calls + dr.calls, 3);
    fb_test_redis_destroy(&f.srv);
    return 0;
}

/*
 * The script is sent as EVALSHA; when Redis does not have it (a fresh server, SCRIPT FLUSH, a
 * restart) the store loads it with SCRIPT LOAD and sends the EVALSHA again: never EVAL, whose
 * body Redis would hash at every call (issue 17). INFO commandstats proves the SHA1 we compute
 * is Redis's: later saves are EVALSHA hits.
 */
static void on_order_reply(fb_redis_t *r, int status, redisReply *rep, void *arg)
{
    (void)r;
    (void)rep;
    int *n = arg;
    if (status == 0)
        (*n)++;
}

TEST_IMPL(store_first_call_of_a_script_keeps_the_order)
{
    /* Two scripts never run before, called back to back on a live connection (as the Matrix
     * adapter writes its crypto state): the first must not answer NOSCRIPT and run again after
     * the second, or the older write would land last. */
    struct fixture f;
    fixture_start(&f);
    struct save_result warm = save(&f, "ord", "1", 1, 0); /* the connection is up */
    ASSERT_EQ(warm.status, 0);
    freeReplyObject(sync_cmd(&f, "CONFIG %s", "RESETSTAT"));
    static fb_redis_script_t first, second;
    fb_redis_script_init(&first, "return redis.call('SET', KEYS[1], 'first')\n");
    fb_redis_script_init(&second, "return redis.call('SET', KEYS[1], 'second')\n");
    char key[64];
    snprintf(key, sizeof(key), "%sorder", f.prefix);
    const char *argv[] = {"1", key};
    int done = 0;
    ASSERT_OK(fb_redis_evalsha(f.r, &first, 0, on_order_reply, &done, 2, argv, NULL));
    ASSERT_OK(fb_redis_evalsha(f.r, &second, 0, on_order_reply, &done, 2, argv, NULL));
    ASSERT(fb_test_wait_int(&f.loop, &done, 2, 5000));
    redisReply *rep = redisCommand(f.sync, "GET %s", key);
    ASSERT_NOT_NULL(rep);
    ASSERT_STR_EQ(rep->str, "second");
    freeReplyObject(rep);
    ASSERT_EQ(commandstat(&f, "cmdstat_evalsha", "failed_calls"), 0);
    fixture_stop(&f);
    return 0;
}

TEST_IMPL(store_noscript_fallback)
{
    struct fixture f;
    fixture_start(&f);
    freeReplyObject(sync_cmd(&f, "CONFIG %s", "RESETSTAT"));
    /* The first save is issued before the connection is ready: the script it names is loaded
     * when the connection becomes ready, before the queued save (had the connection been ready,
     * it would have been loaded ahead of that first EVALSHA): one SCRIPT LOAD either way. */
    ASSERT_EQ(save(&f, "ns", "1", 1, 0).status, 0);
    ASSERT_EQ(save(&f, "ns", "2", 1, 1).status, 0); /* EVALSHA hit */
    ASSERT_EQ(save(&f, "ns", "3", 1, 2).status, 0); /* EVALSHA hit */
    ASSERT_EQ(commandstat(&f, "cmdstat_eval", "calls"), 0);
    ASSERT_EQ(commandstat(&f, "cmdstat_script|load", "calls"), 1);
    long failed = commandstat(&f, "cmdstat_evalsha", "failed_calls");
    ASSERT_EQ(failed, 0); /* never a NOSCRIPT for a script's first call */
    ASSERT_EQ(commandstat(&f, "cmdstat_evalsha", "calls") - failed, 3);

    /* On a live connection: NOSCRIPT, then SCRIPT LOAD and the same EVALSHA again. */
    freeReplyObject(sync_cmd(&f, "SCRIPT %s", "FLUSH"));
    struct save_result sr = save(&f, "ns", "4", 1, 3);
    ASSERT_EQ(sr.status, 0);
    ASSERT_EQ(sr.version, 4);
    ASSERT_EQ(commandstat(&f, "cmdstat_eval", "calls"), 0);
    ASSERT_EQ(commandstat(&f, "cmdstat_script|load", "calls"), 2);
    ASSERT_EQ(commandstat(&f, "cmdstat_evalsha", "failed_calls"), failed + 1);

    /* After a restart the script cache (and, here, the data) is gone: the client loads the
     * scripts it has run at the reconnection, before the queued commands, so the save finds it
     * (no NOSCRIPT, no failed EVALSHA). */
    ASSERT_OK(fb_test_redis_restart(&f.srv));
    fixture_resync(&f);
    sr = save(&f, "ns", "5", 1, 0);
    ASSERT_EQ(sr.status, 0);
    ASSERT_EQ(sr.version, 1);
    ASSERT_EQ(commandstat(&f, "cmdstat_eval", "calls"), 0);
    ASSERT_EQ(commandstat(&f, "cmdstat_script|load", "calls"), 1);
    ASSERT_EQ(commandstat(&f, "cmdstat_evalsha", "failed_calls"), 0);
    struct load_result lr = load(&f, "ns");
    ASSERT_EQ(lr.version, 1);
    ASSERT(memcmp(lr.data, "5", 1) == 0);
    fixture_stop(&f);
    return 0;
}

/* Delete removes the session and is idempotent. */
TEST_IMPL(store_delete)
{
    struct fixture f;
    fixture_start(&f);
    ASSERT_EQ(save(&f, "del", "x", 1, 0).status, 0);
    for (int i = 0; i < 2; i++) {
        struct save_result dr = {0};
        ASSERT_OK(sess_delete(f.s, "del", on_save, &dr));
        ASSERT(fb_test_wait_int(&f.loop, &dr.calls, 1, 5000));
        ASSERT_EQ(dr.status, 0);
        ASSERT_EQ(dr.version, 0);
        ASSERT_EQ(load(&f, "del").status, FB_ENOENT);
    }
    ASSERT_EQ(save(&f, "del", "y", 1, 0).status, 0); /* version 0 again after a delete */
    fixture_stop(&f);
    return 0;
}

/* Invalid arguments are refused synchronously and the callback is never called. */
TEST_IMPL(store_invalid_arguments)
{
    struct fixture f;
    fixture_start(&f);
    struct save_result sr = {0};
    struct load_result lr = {0};
    char longkey[FB_STORE_MAX_CONV_KEY + 2];
    memset(longkey, 'k', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = '\0';
    ASSERT_EQ(sess_load(f.s, "", on_load, &lr), FB_EINVAL);
    ASSERT_EQ(sess_load(f.s, NULL, on_load, &lr), FB_EINVAL);
    ASSERT_EQ(sess_load(f.s, longkey, on_load, &lr), FB_EINVAL);
    ASSERT_EQ(sess_load(f.s, "k", NULL, &lr), FB_EINVAL);
    ASSERT_EQ(sess_save(f.s, "", "x", 1, 0, on_save, &sr), FB_EINVAL);
    ASSERT_EQ(sess_save(f.s, "k", NULL, 1, 0, on_save, &sr), FB_EINVAL);
    ASSERT_EQ(sess_save(f.s, "k", "x", 1, 0, NULL, &sr), FB_EINVAL);
    ASSERT_EQ(sess_delete(f.s, "", on_save, &sr), FB_EINVAL);
    longkey[FB_STORE_MAX_CONV_KEY] = '\0'; /* exactly the maximum is fine */
    ASSERT_EQ(load(&f, longkey).status, FB_ENOENT);
    fb_test_run_for(&f.loop, 50);
    ASSERT_EQ(sr.calls, 0);
    ASSERT_EQ(lr.calls, 0);
    ASSERT_EQ(fb_store_pending(f.s), 0);
    fixture_stop(&f);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* fb_store_eval: other scripts on the same connection */

struct eval_result {
    int calls;
    int status;
    char text[64];
};

static void on_eval(int status, const redisReply *rep, void *arg)
{
    struct eval_result *res = arg;
    res->calls++;
    res->status = status;
    if (status == 0) {
        ASSERT_NOT_NULL(rep);
        ASSERT_EQ(rep->type, REDIS_REPLY_STRING);
        ASSERT_LT(rep->len, sizeof(res->text));
        memcpy(res->text, rep->str, rep->len); /* binary: may hold NUL bytes */
        res->text[rep->len] = '\0';
    } else {
        ASSERT_NULL(rep);
    }
}

static struct eval_result eval(struct fixture *f, const fb_store_script_t *sc, const char *key,
                               const char *arg, size_t arglen)
{
    struct eval_result res = {0};
    const char *args[] = {key, arg};
    size_t lens[] = {strlen(key), arglen};
    ASSERT_OK(fb_store_eval(f->s, sc, FB_REDIS_RETRY, 1, 1, args, lens, on_eval, &res));
    ASSERT_EQ(res.calls, 0); /* never inside the call */
    ASSERT(fb_test_wait_int(&f->loop, &res.calls, 1, 5000));
    ASSERT_EQ(res.calls, 1);
    return res;
}

/* EVALSHA, the EVAL fallback after SCRIPT FLUSH, binary-safe arguments, Redis errors as FB_EIO,
 * the prefix and the TTL accessors. */
TEST_IMPL(store_eval_scripts)
{
    struct fixture f;
    fixture_start(&f);
    ASSERT_STR_EQ(fb_store_prefix(f.s), "fbt:");
    ASSERT_EQ(fb_store_session_ttl_ms(f.s), 86400000ull);
    fb_store_script_t sc, bad;
    fb_store_script_init(&sc, "redis.call('SET', KEYS[1], ARGV[1]) return redis.call('GET', "
                              "KEYS[1]) .. '!'");
    fb_store_script_init(&bad, "return redis.call('INCR', KEYS[1])");
    struct eval_result res = eval(&f, &sc, "fbt:k", "a\0b", 3);
    ASSERT_OK(res.status);
    ASSERT_EQ(memcmp(res.text, "a\0b!", 4), 0);
    res = eval(&f, &sc, "fbt:k", "x", 1);
    ASSERT_OK(res.status);
    ASSERT_STR_EQ(res.text, "x!");
    redisReply *rep = redisCommand(f.sync, "SCRIPT FLUSH");
    freeReplyObject(rep);
    res = eval(&f, &sc, "fbt:k", "y", 1);
    ASSERT_OK(res.status);
    ASSERT_STR_EQ(res.text, "y!");
    res = eval(&f, &bad, "fbt:k", "", 0); /* INCR on "y": an error answer */
    ASSERT_EQ(res.status, FB_EIO);
    ASSERT_EQ(fb_store_eval(f.s, &sc, 0, 1, 0, NULL, NULL, on_eval, &res), FB_EINVAL);
    ASSERT_EQ(fb_store_pending(f.s), 0);
    fixture_stop(&f);
    return 0;
}

/*
 * The conversation-key escaping has a C side (fb_key_conv()) and a Lua side (FB_KEYS_LUA, for the
 * scripts that build another conversation's key): both give the same key for awkward keys.
 */
TEST_IMPL(store_key_escaping_c_and_lua_agree)
{
    struct fixture f;
    fixture_start(&f);
    static fb_store_script_t lua = {.src =
                                        FB_KEYS_LUA "return conv_key(ARGV[1], ARGV[2], ARGV[3])\n"};
    fb_store_script_init(&lua, lua.src);
    const char *convs[] = {"web:tok", "matrix:!a{b}c%d:hs", "x:\x01\t\x1f\x7f}", "m:!r/~$t",
                           "m:\xc3\xa9t\xc3\xa9 %7B"};
    for (size_t i = 0; i < FB_ARRAY_SIZE(convs); i++) {
        char *c_key = fb_key_conv("fbt:", convs[i], FB_KEY_OUTBOX);
        const char *args[] = {"fbt:", convs[i], FB_KEY_OUTBOX};
        struct eval_result res = {0};
        ASSERT_OK(fb_store_eval(f.s, &lua, 0, 0, 3, args, NULL, on_eval, &res));
        ASSERT(fb_test_wait_int(&f.loop, &res.calls, 1, 5000));
        ASSERT_OK(res.status);
        ASSERT_STR_EQ(res.text, c_key);
        fb_free(c_key);
    }
    fixture_stop(&f);
    return 0;
}

/*
 * fb_key_slot() computes the slot Redis Cluster does (CLUSTER KEYSLOT, on a single-node
 * cluster), and every key of one conversation, whatever its bytes, is in one slot: the
 * router's, the features' and the adapters' suffixes alike.
 */
TEST_IMPL(store_key_slots_match_redis_cluster)
{
    fb_test_redis_t srv;
    ASSERT_OK(fb_test_redis_start(&srv));
    srv.cluster = true;
    ASSERT_OK(fb_test_redis_restart(&srv));
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", srv.port, tv);
    ASSERT(c && !c->err);

    const char *odd[] = {
        "fb:{g}:outbox:pending", "{}", "{}x", "a{b", "a}b{", "{a}{b}", "x{}{y}", "{c:web:tok}",
        "\xc3\xa9t\xc3\xa9",     ""};
    for (size_t i = 0; i < FB_ARRAY_SIZE(odd); i++) {
        redisReply *rep = redisCommand(c, "CLUSTER KEYSLOT %b", odd[i], strlen(odd[i]));
        ASSERT(rep && rep->type == REDIS_REPLY_INTEGER);
        ASSERT_EQ((long long)fb_key_slot(odd[i], strlen(odd[i])), rep->integer);
        freeReplyObject(rep);
    }

    const char *convs[] = {"web:tok",  "matrix:!a{b}c%d:hs",      "x:\x01\t\x1f\x7f}",
                           "m:!r/~$t", "m:\xc3\xa9t\xc3\xa9 %7B", "web:{}",
                           "web:}{"};
    const char *suffixes[] = {FB_KEY_SESSION, FB_KEY_EVENT "e1", FB_KEY_MARKS,  FB_KEY_OUTBOX,
                              FB_KEY_PARKED,  FB_KEY_REMINDERS,  FB_KEY_TICKET, FB_KEY_ESC_SENT,
                              FB_KEY_MONTHS,  "web:meta",        "room"};
    for (size_t i = 0; i < FB_ARRAY_SIZE(convs); i++) {
        long long slot = -1;
        for (size_t j = 0; j < FB_ARRAY_SIZE(suffixes); j++) {
            char *key = fb_key_conv("fb:", convs[i], suffixes[j]);
            ASSERT_NOT_NULL(key);
            redisReply *rep = redisCommand(c, "CLUSTER KEYSLOT %s", key);
            ASSERT(rep && rep->type == REDIS_REPLY_INTEGER);
            ASSERT_EQ((long long)fb_key_slot(key, strlen(key)), rep->integer);
            if (j == 0)
                slot = rep->integer;
            ASSERT_EQ(rep->integer, slot);
            freeReplyObject(rep);
            fb_free(key);
        }
    }
    redisFree(c);
    fb_test_redis_destroy(&srv);
    return 0;
}
