/* SPDX-License-Identifier: MIT */
/*
 * test_durability.c - the check of Redis's persistence at every connection (daemon/io/durability.c)
 * against a real, throwaway redis-server started without and then with AOF: the settings read
 * (CONFIG GET, or INFO when an ACL forbids CONFIG), the refusal of a Redis without AOF unless
 * redis.allow_volatile, /healthz degraded after a loss, and the marker
 * that tells a Redis that came back empty (flushed, or restarted without AOF) from one that kept
 * its data (restarted with AOF). Every test ends with fb_test_loop_close_strict().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "core/keys.h"
#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "frichebot/err.h"
#include "io/durability.h"
#include "io/redis.h"
#include "task.h"

struct fixture {
    fb_test_redis_t srv;
    uv_loop_t loop;
    char addr[320];
    fb_redis_t *redis;
    fb_durability_t *dur;
    redisContext *sync; /* the test's own connection, to change Redis under the client */
    int refusals;
};

static void on_refuse(void *arg)
{
    ((struct fixture *)arg)->refusals++;
}

/* Starts Redis (without AOF), a client and the module (`allow_volatile` as the configuration's
 * redis.allow_volatile). */
static void setup(struct fixture *f, bool allow_volatile)
{
    memset(f, 0, sizeof(*f));
    ASSERT_OK(fb_test_redis_start(&f->srv));
    ASSERT_OK(uv_loop_init(&f->loop));
    snprintf(f->addr, sizeof(f->addr), "unix:%s", f->srv.sock);
    fb_redis_opts_t o;
    memset(&o, 0, sizeof(o));
    o.address = f->addr;
    o.connect_timeout_ms = 1000;
    o.command_timeout_ms = 3000;
    o.write_deadline_ms = 5000;
    o.reconnect.delays_ms[0] = 20;
    o.reconnect.n_delays = 1;
    f->redis = fb_redis_create(&f->loop, &o);
    ASSERT_NOT_NULL(f->redis);
    f->dur = fb_durability_create(&f->loop, f->redis, "t:", allow_volatile, on_refuse, f);
    fb_durability_set_migration(f->dur, FB_KEYS_MIGRATE_LUA, FB_KEY_LAYOUT); /* as the daemon */
    ASSERT_OK(fb_redis_start(f->redis));
    f->sync = redisConnectUnix(f->srv.sock);
    ASSERT(f->sync && !f->sync->err);
}

static void on_closed(void *arg)
{
    (*(int *)arg)++;
}

static void teardown(struct fixture *f)
{
    int closed = 0;
    fb_durability_close(f->dur);
    fb_redis_close(f->redis, on_closed, &closed);
    ASSERT(fb_test_wait_int(&f->loop, &closed, 1, 5000));
    fb_durability_destroy(f->dur);
    redisFree(f->sync);
    fb_test_loop_close_strict(&f->loop);
    fb_test_redis_destroy(&f->srv);
}

static fb_durability_state_t state(const struct fixture *f)
{
    fb_durability_state_t st;
    fb_durability_get(f->dur, &st);
    return st;
}

struct wait_checks {
    const struct fixture *f;
    uint64_t n;
};

static bool checks_reached(void *arg)
{
    const struct wait_checks *w = arg;
    return state(w->f).checks >= w->n;
}

/* Runs the loop until `n` checks have completed (10 s at most: a hang, not a timing). */
static void wait_checks(struct fixture *f, uint64_t n)
{
    struct wait_checks w = {f, n};
    if (!fb_test_wait_cond(&f->loop, checks_reached, &w, 10000))
        FB_TEST_FAIL("waited 10 s for %llu checks, have %llu", (unsigned long long)n,
                     (unsigned long long)state(f).checks);
}

/* A command on the test's own connection; its reply must not be an error. */
static void sync_ok(struct fixture *f, const char *cmd)
{
    redisReply *rep = redisCommand(f->sync, cmd);
    ASSERT_NOT_NULL(rep);
    if (rep->type == REDIS_REPLY_ERROR)
        FB_TEST_FAIL("%s: %s", cmd, rep->str);
    freeReplyObject(rep);
}

/* Drops the client's connection (not the test's own): it reconnects, and is checked again. */
static void reconnect(struct fixture *f, uint64_t checks)
{
    sync_ok(f, "CLIENT KILL TYPE normal SKIPME yes");
    wait_checks(f, checks);
}

/* CONFIG SET appendonly yes, then waits for the AOF rewrite it starts to end. */
static void aof_on(struct fixture *f)
{
    sync_ok(f, "CONFIG SET appendonly yes");
    for (int i = 0; i < 500; i++) {
        redisReply *rep = redisCommand(f->sync, "INFO persistence");
        ASSERT_NOT_NULL(rep);
        bool done = strstr(rep->str, "aof_rewrite_in_progress:0") &&
                    strstr(rep->str, "aof_rewrite_scheduled:0") &&
                    strstr(rep->str, "aof_enabled:1");
        freeReplyObject(rep);
        if (done)
            return;
        fb_test_run_for(&f->loop, 20);
    }
    FB_TEST_FAIL("the AOF rewrite did not end");
}

static char *health(const struct fixture *f)
{
    fb_buf_t b;
    fb_buf_init(&b, 4096);
    ASSERT_OK(fb_durability_health(f->dur, &b));
    return fb_buf_take(&b);
}

/* Without AOF and with redis.allow_volatile: read as volatile (warned, accepted); with AOF
 * turned on and a reconnect: durable. The marker stays, so neither check counts a loss. */
TEST_IMPL(durability_aof_off_then_on)
{
    struct fixture f;
    setup(&f, true);
    wait_checks(&f, 1);
    fb_durability_state_t st = state(&f);
    ASSERT_EQ(st.aof, 0);
    ASSERT(!st.durable);
    ASSERT(!st.config_refused);
    ASSERT_STR_EQ(st.appendfsync, "everysec"); /* Redis's default, AOF or not */
    ASSERT(st.run_id[0]);
    ASSERT_EQ(st.data_losses, 0);
    ASSERT(fb_durability_ok(f.dur)); /* allow_volatile: warn only */
    char *h = health(&f);
    ASSERT_STR_EQ(h, ",\"aof\":false,\"appendfsync\":\"everysec\",\"persistence\":\"volatile\","
                     "\"data_losses\":0,\"last_data_loss_ms\":null");
    fb_free(h);
    fb_buf_t m;
    fb_buf_init(&m, 4096);
    ASSERT_OK(fb_durability_metrics_render(f.dur, &m));
    ASSERT_NOT_NULL(strstr(fb_buf_str(&m), "\nfrichebot_redis_aof_enabled 0\n"));
    ASSERT_NOT_NULL(strstr(fb_buf_str(&m), "\nfrichebot_redis_durable 0\n"));
    ASSERT_NOT_NULL(strstr(fb_buf_str(&m), "\nfrichebot_redis_data_loss_total 0\n"));
    fb_buf_free(&m);

    aof_on(&f);
    sync_ok(&f, "CONFIG SET appendfsync always");
    reconnect(&f, 2);
    st = state(&f);
    ASSERT_EQ(st.aof, 1);
    ASSERT_STR_EQ(st.appendfsync, "always");
    ASSERT(st.durable);
    ASSERT_EQ(st.data_losses, 0);
    sync_ok(&f, "CONFIG SET appendfsync no"); /* the OS decides when: not durable */
    reconnect(&f, 3);
    st = state(&f);
    ASSERT_EQ(st.aof, 1);
    ASSERT(!st.durable);
    ASSERT_EQ(st.data_losses, 0);
    ASSERT_EQ(f.refusals, 0);
    teardown(&f);
    return 0;
}

/* An ACL forbids CONFIG: the settings come from INFO (aof_enabled; appendfsync not known). */
TEST_IMPL(durability_config_forbidden_uses_info)
{
    struct fixture f;
    setup(&f, true);
    wait_checks(&f, 1);
    sync_ok(&f, "ACL SETUSER default -config");
    reconnect(&f, 2);
    fb_durability_state_t st = state(&f);
    ASSERT(st.config_refused);
    ASSERT_EQ(st.aof, 0);
    ASSERT_STR_EQ(st.appendfsync, "");
    ASSERT(!st.durable);

    sync_ok(&f, "ACL SETUSER default +config");
    aof_on(&f);
    sync_ok(&f, "ACL SETUSER default -config");
    reconnect(&f, 3);
    st = state(&f);
    ASSERT(st.config_refused);
    ASSERT_EQ(st.aof, 1);
    ASSERT(st.durable); /* AOF on, appendfsync not known: taken as durable */
    char *h = health(&f);
    ASSERT_STR_EQ(h, ",\"aof\":true,\"appendfsync\":null,\"persistence\":\"durable\","
                     "\"data_losses\":0,\"last_data_loss_ms\":null");
    fb_free(h);
    sync_ok(&f, "ACL SETUSER default +config");
    teardown(&f);
    return 0;
}

/* The default (no redis.allow_volatile): a first Redis without AOF is refused (once); /healthz
 * is not ok until a connection finds AOF on, and not ok again when a later one finds it off. */
TEST_IMPL(durability_refuses_volatile)
{
    struct fixture f;
    setup(&f, false);
    ASSERT(!fb_durability_ok(f.dur)); /* not known yet */
    wait_checks(&f, 1);
    ASSERT_EQ(f.refusals, 1);
    ASSERT(!fb_durability_ok(f.dur));
    aof_on(&f);
    reconnect(&f, 2);
    ASSERT(fb_durability_ok(f.dur));
    sync_ok(&f, "CONFIG SET appendonly no");
    reconnect(&f, 3);
    ASSERT(!fb_durability_ok(f.dur));
    ASSERT_EQ(f.refusals, 1); /* a reconnect is not a start: degraded, not stopped */
    teardown(&f);
    return 0;
}

/* The marker: a Redis flushed under the client, then one restarted without AOF, are each
 * counted as a loss at the next connection (and /healthz is degraded, even with
 * allow_volatile); a Redis restarted with AOF keeps the marker. */
TEST_IMPL(durability_data_loss_detected)
{
    struct fixture f;
    setup(&f, true);
    wait_checks(&f, 1);
    reconnect(&f, 2);
    ASSERT_EQ(state(&f).data_losses, 0); /* same marker */
    ASSERT(fb_durability_ok(f.dur));

    sync_ok(&f, "FLUSHALL");
    reconnect(&f, 3);
    fb_durability_state_t st = state(&f);
    ASSERT_EQ(st.data_losses, 1);
    ASSERT(st.last_loss_ms > 0);
    ASSERT(!fb_durability_ok(f.dur)); /* degraded for FB_DURABILITY_LOSS_DEGRADED_MS */
    char *h = health(&f);
    ASSERT_NOT_NULL(strstr(h, "\"data_losses\":1"));
    char want[64];
    snprintf(want, sizeof(want), "\"last_data_loss_ms\":%lld", (long long)st.last_loss_ms);
    ASSERT_NOT_NULL(strstr(h, want));
    fb_free(h);

    /* Restarted without AOF: empty, and a new run_id. */
    char run_id[48];
    snprintf(run_id, sizeof(run_id), "%s", st.run_id);
    redisFree(f.sync);
    f.sync = NULL;
    ASSERT_OK(fb_test_redis_restart(&f.srv));
    f.sync = redisConnectUnix(f.srv.sock);
    ASSERT(f.sync && !f.sync->err);
    wait_checks(&f, 4);
    st = state(&f);
    ASSERT_EQ(st.data_losses, 2);
    ASSERT(strcmp(st.run_id, run_id) != 0);

    /* Restarted with AOF: the marker is still there, nothing is lost. */
    aof_on(&f);
    f.srv.aof = true;
    redisFree(f.sync);
    f.sync = NULL;
    ASSERT_OK(fb_test_redis_restart(&f.srv));
    f.sync = redisConnectUnix(f.srv.sock);
    ASSERT(f.sync && !f.sync->err);
    wait_checks(&f, 5);
    st = state(&f);
    ASSERT_EQ(st.aof, 1);
    ASSERT_EQ(st.data_losses, 2);
    teardown(&f);
    return 0;
}

struct wait_epoch {
    const struct fixture *f;
    long long epoch;
    uint64_t losses;
};

static bool epoch_or_loss(void *arg)
{
    const struct wait_epoch *w = arg;
    fb_durability_state_t st = state(w->f);
    return st.epoch >= w->epoch || st.data_losses > w->losses;
}

/* Runs the loop until the beat has brought the epoch to `epoch` or counted a loss (10 s). */
static void wait_epoch(struct fixture *f, long long epoch)
{
    struct wait_epoch w = {f, epoch, state(f).data_losses};
    if (!fb_test_wait_cond(&f->loop, epoch_or_loss, &w, 10000))
        FB_TEST_FAIL("waited 10 s for epoch %lld, have %lld", epoch, state(f).epoch);
}

/* A Redis that went back in time: restarted (without AOF) from a snapshot taken while this
 * process ran, so the marker is there but the epoch is behind the one the beats brought it to.
 * Counted as a loss at the reconnection; without the epoch it looked like a Redis that kept its
 * data. */
TEST_IMPL(durability_went_back_in_time)
{
    ASSERT_OK(setenv("FB_TEST_REDIS_BEAT_MS", "30", 1));
    struct fixture f;
    setup(&f, true);
    wait_checks(&f, 1);
    sync_ok(&f, "SAVE"); /* the snapshot Redis will come back from */
    long long saved = state(&f).epoch;
    ASSERT(saved >= 1);
    wait_epoch(&f, saved + 3); /* beats after the snapshot */
    ASSERT_EQ(state(&f).data_losses, 0);

    redisFree(f.sync);
    f.sync = NULL;
    ASSERT_OK(fb_test_redis_restart(&f.srv));
    f.sync = redisConnectUnix(f.srv.sock);
    ASSERT(f.sync && !f.sync->err);
    wait_checks(&f, 2);
    fb_durability_state_t st = state(&f);
    ASSERT_EQ(st.data_losses, 1);
    ASSERT(!fb_durability_ok(f.dur));
    ASSERT_EQ(st.epoch, saved + 1); /* the snapshot's, incremented by the check */

    /* The beats go on from there: no second loss. */
    wait_epoch(&f, saved + 4);
    ASSERT_EQ(state(&f).data_losses, 1);
    teardown(&f);
    return 0;
}

/* A FLUSHALL under the live connection: the beat finds the marker gone without a reconnection. */
TEST_IMPL(durability_beat_finds_a_flush)
{
    ASSERT_OK(setenv("FB_TEST_REDIS_BEAT_MS", "30", 1));
    struct fixture f;
    setup(&f, true);
    wait_checks(&f, 1);
    wait_epoch(&f, state(&f).epoch + 2);
    ASSERT_EQ(state(&f).data_losses, 0);
    sync_ok(&f, "FLUSHALL");
    wait_epoch(&f, 1000000); /* returns at the loss */
    fb_durability_state_t st = state(&f);
    ASSERT_EQ(st.data_losses, 1);
    ASSERT_EQ(st.checks, 1); /* no reconnection */
    teardown(&f);
    return 0;
}

/* Issue 17: the check's and the beat's scripts go by their SHA1, never EVAL (the beat's marker
 * would send and hash its body every few seconds); after a restart (Redis has lost its scripts)
 * the client loads them before the check's EVALSHAs, which therefore never answer NOSCRIPT. */
TEST_IMPL(durability_evalsha_only)
{
    ASSERT_OK(setenv("FB_TEST_REDIS_BEAT_MS", "30", 1));
    struct fixture f;
    setup(&f, true);
    wait_checks(&f, 1);
    wait_epoch(&f, state(&f).epoch + 3);
    ASSERT_EQ(fb_test_redis_cmdstat(f.sync, "eval", "calls"), 0);
    /* the migration, the check's marker, the beats */
    ASSERT(fb_test_redis_cmdstat(f.sync, "evalsha", "calls") >= 5);
    ASSERT_EQ(fb_test_redis_cmdstat(f.sync, "evalsha", "failed_calls"), 0);

    redisFree(f.sync);
    f.sync = NULL;
    ASSERT_OK(fb_test_redis_restart(&f.srv));
    f.sync = redisConnectUnix(f.srv.sock);
    ASSERT(f.sync && !f.sync->err);
    wait_checks(&f, 2);
    wait_epoch(&f, state(&f).epoch + 2);
    ASSERT_EQ(fb_test_redis_cmdstat(f.sync, "eval", "calls"), 0);
    ASSERT(fb_test_redis_cmdstat(f.sync, "evalsha", "calls") >= 3);
    /* no NOSCRIPT: loaded first */
    ASSERT_EQ(fb_test_redis_cmdstat(f.sync, "evalsha", "failed_calls"), 0);
    teardown(&f);
    return 0;
}

/* A command on the test's own connection whose reply is an integer (-1 when nil). */
static long long sync_int(struct fixture *f, const char *cmd)
{
    return fb_test_redis_int(f->sync, cmd);
}

/* Every key and its value (DUMP) and TTL, sorted, one line each: the whole keyspace. */
static char *keyspace(struct fixture *f)
{
    redisReply *keys =
        redisCommand(f->sync, "EVAL %s 0",
                     "local ks = redis.call('KEYS', '*') table.sort(ks)\n"
                     "local out = {}\n"
                     "for _, k in ipairs(ks) do\n"
                     "  out[#out + 1] = k .. ' ' .. redis.sha1hex(redis.call('DUMP', "
                     "k)) .. ' ' .. (redis.call('PTTL', k) > 0 and 'ttl' or '-')\n"
                     "end\n"
                     "return table.concat(out, '\\n')");
    ASSERT(keys && keys->type == REDIS_REPLY_STRING);
    char *s = fb_strdup(keys->str);
    freeReplyObject(keys);
    return s;
}

/* The global keys' move under {g} (core/keys.h, FB_KEYS_MIGRATE_LUA), run by this module before
 * its check: keys of the old layout written by hand are found under their {g} names with their
 * values and TTLs, the persistence marker and epoch included (so the check sees no first start
 * and no loss); a key whose {g} name is taken is left alone; other keys are not touched; the
 * script run again (flag kept, then flag removed) changes nothing. On a Redis Cluster, it leaves
 * every key as it is. */
TEST_IMPL(durability_migrates_global_keys)
{
    struct fixture f;
    setup(&f, true);
    bool cluster = fb_test_redis_cluster();
    /* before the loop runs: the client is not connected yet */
    sync_ok(&f, "HSET t:stats conversations 7");
    sync_ok(&f, "ZADD t:reminders:due 1000 web:a|relance");
    sync_ok(&f, "HSET t:reminders:claims web:a|relance o|1000");
    sync_ok(&f, "HSET t:stats:month:2026-01 messages 3");
    sync_ok(&f, "ZADD t:stats:active:communes 5 69123");
    sync_ok(&f, "SET t:roadmap:0a1b web:a PX 86400000");
    sync_ok(&f, "SET t:email:confirm:ff00 web:a PX 3600000");
    sync_ok(&f, "HSET t:matrix:e2ee:crypto account x");
    sync_ok(&f, "SET t:matrix:txn:42 1 PX 7200000");
    sync_ok(&f, "HSET t:matrix:auth device_id D");
    sync_ok(&f, "SET t:dedupe:zset_since 0");
    sync_ok(&f, "SET t:redis:marker old-marker");
    sync_ok(&f, "SET t:redis:epoch 41");
    sync_ok(&f, "ZADD t:esc:open 1 web:old");     /* both names exist: */
    sync_ok(&f, "ZADD t:{g}:esc:open 2 web:new"); /* the {g} one is kept */
    sync_ok(&f, "HSET t:{c:web:a}:session v 1");  /* a conversation's: not global */
    sync_ok(&f, "SET t:statsx 1");                /* not a global name */
    sync_ok(&f, "SET other:stats 1");             /* another prefix */
    long long due_ttl = sync_int(&f, "PTTL t:roadmap:0a1b");
    wait_checks(&f, 1);
    fb_durability_state_t st = state(&f);

    if (cluster) { /* nothing moved: a cluster's keys must have their {g} names already */
        ASSERT_EQ(st.keys_renamed, 0);
        ASSERT_EQ(sync_int(&f, "HGET t:stats conversations"), 7);
        ASSERT_EQ(sync_int(&f, "EXISTS t:{g}:layout"), 0);
        teardown(&f);
        return 0;
    }
    ASSERT(strtol(st.redis_version, NULL, 10) >= 7); /* read from INFO (the scripts need 7.0) */
    ASSERT_EQ(st.keys_renamed, 13);
    ASSERT_EQ(st.keys_left, 1);
    ASSERT_EQ(sync_int(&f, "GET t:{g}:layout"), 1);
    ASSERT_EQ(sync_int(&f, "HGET t:{g}:stats conversations"), 7);
    ASSERT_EQ(sync_int(&f, "EXISTS t:stats"), 0);
    ASSERT_EQ(sync_int(&f, "ZSCORE t:{g}:reminders:due web:a|relance"), 1000);
    ASSERT_EQ(sync_int(&f, "HLEN t:{g}:reminders:claims"), 1);
    ASSERT_EQ(sync_int(&f, "HGET t:{g}:stats:month:2026-01 messages"), 3);
    ASSERT_EQ(sync_int(&f, "ZSCORE t:{g}:stats:active:communes 69123"), 5);
    ASSERT_EQ(sync_int(&f, "EXISTS t:{g}:matrix:e2ee:crypto t:{g}:matrix:auth"), 2);
    ASSERT_EQ(sync_int(&f, "GET t:{g}:dedupe:zset_since"), 0);
    /* the TTLs came along */
    long long ttl = sync_int(&f, "PTTL t:{g}:roadmap:0a1b");
    ASSERT(ttl > 0 && ttl <= due_ttl);
    ASSERT(sync_int(&f, "PTTL t:{g}:email:confirm:ff00") > 0);
    ASSERT(sync_int(&f, "PTTL t:{g}:matrix:txn:42") > 0);
    ASSERT_EQ(sync_int(&f, "PTTL t:{g}:stats"), -1);
    /* the marker and the epoch moved before the check read them: no first start, no loss */
    ASSERT_EQ(st.epoch, 42);
    ASSERT_EQ(st.data_losses, 0);
    redisReply *rep = redisCommand(f.sync, "GET t:{g}:redis:marker");
    ASSERT(rep && rep->type == REDIS_REPLY_STRING && strcmp(rep->str, "old-marker") == 0);
    freeReplyObject(rep);
    /* both names: the {g} one kept as it was, the old one left */
    ASSERT_EQ(sync_int(&f, "ZSCORE t:{g}:esc:open web:new"), 2);
    ASSERT_EQ(sync_int(&f, "ZSCORE t:{g}:esc:open web:old"), -1);
    ASSERT_EQ(sync_int(&f, "ZSCORE t:esc:open web:old"), 1);
    /* not global keys: untouched */
    ASSERT_EQ(sync_int(&f, "EXISTS t:{c:web:a}:session t:statsx other:stats"), 3);
    ASSERT_EQ(sync_int(&f, "EXISTS t:{g}:statsx t:{g}:{c:web:a}:session"), 0);

    /* Run again: with the flag, and without it; a reconnection does not run it again. */
    fb_durability_close(f.dur); /* its beat would change the epoch */
    fb_test_run_for(&f.loop, 20);
    char *before = keyspace(&f);
    rep = redisCommand(f.sync, "EVAL %s 1 t:{g}:layout t:", FB_KEYS_MIGRATE_LUA);
    ASSERT(rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 3);
    ASSERT_EQ(rep->element[0]->integer, 0);
    ASSERT_EQ(rep->element[2]->integer, 1); /* the flag: nothing looked at */
    freeReplyObject(rep);
    sync_ok(&f, "DEL t:{g}:layout");
    rep = redisCommand(f.sync, "EVAL %s 1 t:{g}:layout t:", FB_KEYS_MIGRATE_LUA);
    ASSERT(rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 3);
    ASSERT_EQ(rep->element[0]->integer, 0); /* nothing renamed */
    ASSERT_EQ(rep->element[1]->integer, 1); /* the old esc:open, still left */
    ASSERT_EQ(rep->element[2]->integer, 0);
    freeReplyObject(rep);
    char *after = keyspace(&f);
    ASSERT_STR_EQ(after, before);
    fb_free(before);
    fb_free(after);
    teardown(&f);
    return 0;
}
