/* SPDX-License-Identifier: MIT */
/*
 * durability.c - whether Redis keeps what the daemon writes (durability.h): a check at every
 * connection of the Redis client, made of three commands pipelined as the first ones of the
 * connection (CONFIG GET append*, INFO, the marker script), then one evaluation.
 *
 * Why a marker: after a reconnect nothing else tells an empty Redis from a quiet one. The marker
 * key holds a value unique to its creation; this process remembers the value it saw, so a marker
 * gone, or re-created by another daemon sharing the Redis, means the data it stood beside was
 * lost. run_id (which changes at every Redis restart) only explains the loss in the log: a Redis
 * restarted with AOF keeps the marker.
 *
 * Why an epoch beside it: a Redis that went back in time (an older snapshot, a replica that was
 * behind) has the marker too. The marker script increments the epoch, and runs between
 * connections too (the beat), so an epoch not above the highest this process saw is that case.
 */
#include "io/durability.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "frichebot/alloc.h"
#include "frichebot/clock.h"
#include "frichebot/err.h"
#include "frichebot/log.h"

/*
 * The marker (KEYS[1]): created with a unique value (ARGV[1]) when missing; and the epoch
 * (KEYS[2]), a counter every run of this script increments. Returns {existed 0/1, value, epoch}.
 */
static const char marker_script[] = "#!lua\n"
                                    "local v = redis.call('GET', KEYS[1])\n"
                                    "local existed = 1\n"
                                    "if not v then\n"
                                    "  redis.call('SET', KEYS[1], ARGV[1])\n"
                                    "  v = ARGV[1]\n"
                                    "  existed = 0\n"
                                    "end\n"
                                    "return {existed, v, redis.call('INCR', KEYS[2])}\n";

struct fb_durability_s {
    fb_redis_t *redis;
    char *marker_key;
    char *epoch_key;
    /* Both scripts go by their SHA1 (fb_redis_evalsha()): the beat runs the marker every few
     * seconds, and EVAL would send and hash its body each time (issue 17: EVALSHA only). */
    fb_redis_script_t marker_sc;
    fb_redis_script_t migrate_sc; /* fb_durability_set_migration(); .src NULL: none */
    char *migrate_flag;
    char *prefix;
    bool migrated;   /* the migration answered: not run again by this process */
    uv_timer_t beat; /* runs the marker script between connections (beat_ms) */
    uint64_t beat_ms;
    bool closed;     /* fb_durability_close() was called */
    long long epoch; /* the highest epoch this process saw, 0 before the first */
    bool allow_volatile;
    fb_durability_refuse_cb refuse;
    void *refuse_arg;
    bool refused;          /* the refusal callback was called */
    char *marker;          /* the marker's value this process saw last, NULL before the first */
    unsigned probes;       /* checks in flight */
    uint64_t loss_mono_ns; /* fb_mono_ns() of the last data loss: the degraded window (the
                              wall clock may jump) */
    fb_durability_state_t st;
};

/* One check, for one connection. */
struct probe {
    fb_durability_t *dur;
    int pending;         /* replies still expected */
    bool lost;           /* one did not come (connection lost, client closed) */
    int config_aof;      /* from CONFIG GET: 1, 0, -1 not known */
    char fsync[16];      /* from CONFIG GET, "" when not known */
    bool config_refused; /* CONFIG GET answered with an error (renamed, forbidden by an ACL) */
    int info_aof;        /* from INFO's aof_enabled: 1, 0, -1 not known */
    char run_id[48];     /* from INFO, "" when not known */
    char version[24];    /* from INFO's redis_version, "" when not known */
    int marker_existed;  /* 1, 0, -1 not known (the script failed) */
    char *marker;        /* the marker's value, NULL when not known */
    long long epoch;     /* the epoch the script returned */
    bool beat;           /* a beat (the marker script alone), not a connection's check */
};

/* Copies the value of INFO field `name` ("run_id") from `info` into out; false when absent. */
static bool info_field(const char *info, size_t len, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    const char *p = info, *end = info + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        if ((size_t)(eol - p) > nl && memcmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1, *ve = eol;
            if (ve > v && ve[-1] == '\r')
                ve--;
            snprintf(out, outlen, "%.*s", (int)(ve - v), v);
            return true;
        }
        p = eol + 1;
    }
    return false;
}

static const char *yes_no(int v)
{
    return v > 0 ? "yes" : v == 0 ? "no" : "not known";
}

/* Logs what the settings mean, at every connection (a warning each time they are unsafe). */
static void log_settings(const fb_durability_t *dur, const struct probe *p)
{
    const char *addr = fb_redis_address(dur->redis);
    const fb_durability_state_t *st = &dur->st;
    if (st->aof == 0) {
        FB_WARN(REDIS,
                "[redis|%s] persistence: AOF is off (appendonly no): if Redis stops or crashes, "
                "everything written since its last snapshot is lost (conversations start again "
                "from the greeting, replies waiting to be sent and reminders vanish, replies "
                "already sent may be sent again); set 'appendonly yes' and 'appendfsync "
                "everysec' in redis.conf (at run time: CONFIG SET appendonly yes, then CONFIG "
                "REWRITE)",
                addr);
    } else if (st->aof < 0) {
        FB_WARN(REDIS,
                "[redis|%s] persistence: not known (CONFIG GET and INFO refused): make sure Redis "
                "runs with 'appendonly yes' and 'appendfsync everysec', or a restart of Redis "
                "loses the conversations",
                addr);
    } else if (!st->durable) {
        FB_WARN(REDIS,
                "[redis|%s] persistence: AOF is on but appendfsync is '%s': a crash of the "
                "machine (not only of Redis) loses the writes of up to about 30 s; set "
                "'appendfsync everysec' in redis.conf",
                addr, st->appendfsync);
    } else if (p->config_refused) {
        FB_INFO(REDIS, "[redis|%s] persistence: AOF on (appendfsync not known: CONFIG refused)",
                addr);
    } else {
        FB_INFO(REDIS, "[redis|%s] persistence: AOF on, appendfsync %s", addr, st->appendfsync);
    }
}

/* Compares the marker with the one seen before: a loss is logged at error and counted. */
static void check_marker(fb_durability_t *dur, const struct probe *p, bool restarted)
{
    const char *addr = fb_redis_address(dur->redis);
    if (p->marker_existed < 0 || !p->marker) {
        FB_DEBUG(REDIS, "[redis|%s] marker not read", addr);
        return;
    }
    if (!dur->marker) {
        if (!p->marker_existed)
            FB_INFO(REDIS,
                    "[redis|%s] marker %s created: the first start on this Redis (or its data "
                    "was lost while no daemon was connected)",
                    addr, dur->marker_key);
    } else if (p->marker_existed && strcmp(dur->marker, p->marker) == 0 && p->epoch <= dur->epoch) {
        dur->st.data_losses++;
        dur->st.last_loss_ms = fb_wall_ms();
        dur->loss_mono_ns = fb_mono_ns();
        FB_ERR(REDIS,
               "[redis|%s] Redis lost its data: it went back in time (the counter %s is at %lld, "
               "this daemon had seen %lld): restored from an older snapshot or backup, or failed "
               "over to a replica that was behind; what was written since is gone and replies "
               "sent since may be sent again; /healthz says degraded for %d minutes; turn AOF on "
               "(appendonly yes, appendfsync everysec) and check what replaced the data",
               addr, dur->epoch_key, p->epoch, dur->epoch, FB_DURABILITY_LOSS_DEGRADED_MS / 60000);
    } else if (!p->marker_existed || strcmp(dur->marker, p->marker) != 0) {
        dur->st.data_losses++;
        dur->st.last_loss_ms = fb_wall_ms();
        dur->loss_mono_ns = fb_mono_ns();
        FB_ERR(REDIS,
               "[redis|%s] Redis lost its data: the marker %s is %s (%s); the conversations, "
               "replies waiting to be sent, reminders and statistics stored before are gone and "
               "users start again from the greeting; /healthz says degraded for %d minutes; turn "
               "AOF on (appendonly yes, appendfsync everysec)",
               addr, dur->marker_key,
               p->marker_existed ? "another daemon's (it found the marker gone first)" : "gone",
               restarted ? "Redis restarted, or another server took its place, without the data: "
                           "its run_id changed"
                         : "Redis was flushed, or replaced by a server without the data",
               FB_DURABILITY_LOSS_DEGRADED_MS / 60000);
    } else if (restarted) {
        FB_NOTICE(REDIS, "[redis|%s] Redis restarted (its run_id changed) and kept its data", addr);
    }
    fb_free(dur->marker);
    dur->marker = fb_strdup(p->marker);
    dur->epoch = dur->st.epoch = p->epoch; /* after a loss too: compare with the new history */
}

/* The three replies are in: records the state, logs, and refuses when it must. */
static void probe_done(struct probe *p)
{
    fb_durability_t *dur = p->dur;
    dur->probes--;
    if (p->lost) /* the connection went away: the next one is checked again */
        goto done;
    if (p->beat) {
        if (dur->marker) /* a connection's check may have failed: compare with a marker only */
            check_marker(dur, p, false);
        goto done;
    }
    fb_durability_state_t *st = &dur->st;
    bool restarted = st->run_id[0] && p->run_id[0] && strcmp(st->run_id, p->run_id) != 0;
    st->checks++;
    st->aof = p->config_aof >= 0 ? p->config_aof : p->info_aof;
    snprintf(st->appendfsync, sizeof(st->appendfsync), "%s", p->fsync);
    st->config_refused = p->config_refused;
    st->durable = st->aof == 1 && (!p->fsync[0] || strcmp(p->fsync, "everysec") == 0 ||
                                   strcmp(p->fsync, "always") == 0);
    if (p->run_id[0])
        snprintf(st->run_id, sizeof(st->run_id), "%s", p->run_id);
    snprintf(st->redis_version, sizeof(st->redis_version), "%s", p->version);
    if (p->version[0] && strtol(p->version, NULL, 10) < 7)
        FB_ERR(REDIS,
               "[redis|%s] Redis %s is too old: frichebot needs Redis 7.0 or later (its scripts "
               "start with #!lua), every script will be refused; upgrade Redis",
               fb_redis_address(dur->redis), p->version);
    log_settings(dur, p);
    check_marker(dur, p, restarted);
    if (!dur->allow_volatile && !st->durable) {
        if (st->checks == 1 && !dur->refused) {
            FB_ERR(REDIS,
                   "[redis|%s] refusing to start: Redis does not persist with AOF (appendonly %s, "
                   "appendfsync %s), so a restart of Redis would lose the conversations and "
                   "replies could be sent twice; set 'appendonly yes' and 'appendfsync everysec' "
                   "in redis.conf (at run time: CONFIG SET appendonly yes, CONFIG SET "
                   "appendfsync everysec, then CONFIG REWRITE), or, for a throw-away setup only, "
                   "'allow_volatile: true' in the redis section of the configuration",
                   fb_redis_address(dur->redis), yes_no(st->aof),
                   st->appendfsync[0] ? st->appendfsync : "not known");
            dur->refused = true;
            if (dur->refuse)
                dur->refuse(dur->refuse_arg);
        } else {
            FB_ERR(REDIS,
                   "[redis|%s] Redis no longer persists with AOF (appendonly %s, appendfsync %s): "
                   "/healthz says degraded until it does again; set 'appendonly yes' and "
                   "'appendfsync everysec'",
                   fb_redis_address(dur->redis), yes_no(st->aof),
                   st->appendfsync[0] ? st->appendfsync : "not known");
        }
    }
done:
    fb_free(p->marker);
    fb_free(p);
}

/* One reply of the three: a lost one (status) marks the whole check lost. */
static bool probe_reply(struct probe *p, int status)
{
    p->pending--;
    if (status)
        p->lost = true;
    return status == 0;
}

static void probe_next(struct probe *p)
{
    if (p->pending == 0)
        probe_done(p);
}

static void on_config(fb_redis_t *r, int status, redisReply *rep, void *arg)
{
    struct probe *p = arg;
    (void)r;
    if (probe_reply(p, status)) {
        if (fb_redis_reply_array(rep, 0, FB_REDIS_NOMAX, NULL)) {
            for (size_t i = 0; i + 1 < rep->elements; i += 2) {
                const redisReply *k = rep->element[i], *v = rep->element[i + 1];
                if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
                    continue;
                if (strcmp(k->str, "appendonly") == 0)
                    p->config_aof = strcmp(v->str, "yes") == 0 ? 1 : 0;
                else if (strcmp(k->str, "appendfsync") == 0)
                    snprintf(p->fsync, sizeof(p->fsync), "%s", v->str);
            }
        } else {
            p->config_refused = true; /* an error: renamed, or forbidden by an ACL */
        }
    }
    probe_next(p);
}

static void on_info(fb_redis_t *r, int status, redisReply *rep, void *arg)
{
    struct probe *p = arg;
    (void)r;
    size_t len = 0;
    const char *info = probe_reply(p, status) ? fb_redis_reply_str(rep, &len) : NULL;
    if (info) {
        char v[16];
        if (info_field(info, len, "aof_enabled", v, sizeof(v)))
            p->info_aof = strcmp(v, "1") == 0 ? 1 : 0;
        (void)info_field(info, len, "run_id", p->run_id, sizeof(p->run_id));
        (void)info_field(info, len, "redis_version", p->version, sizeof(p->version));
    }
    probe_next(p);
}

static void on_marker(fb_redis_t *r, int status, redisReply *rep, void *arg)
{
    struct probe *p = arg;
    (void)r;
    if (probe_reply(p, status) && fb_redis_reply_array(rep, 3, 3, "isi")) {
        p->marker_existed = rep->element[0]->integer ? 1 : 0;
        p->marker = fb_strndup(rep->element[1]->str, rep->element[1]->len);
        p->epoch = rep->element[2]->integer;
    }
    probe_next(p);
}

static struct probe *probe_new(fb_durability_t *dur)
{
    struct probe *p = fb_calloc(1, sizeof(*p));
    p->dur = dur;
    p->config_aof = p->info_aof = p->marker_existed = -1;
    dur->probes++;
    return p;
}

/* Issues the marker script for `p`; 0 or the client's error. */
static int marker_command(fb_durability_t *dur, struct probe *p)
{
    char value[96];
    snprintf(value, sizeof(value), "%lld-%d-%llx", (long long)fb_wall_ms(), (int)getpid(),
             (unsigned long long)fb_mono_ns());
    const char *argv[] = {"2", dur->marker_key, dur->epoch_key, value};
    return fb_redis_evalsha(dur->redis, &dur->marker_sc, 0, on_marker, p, 4, argv, NULL);
}

/* The migration's reply: {renamed, left, state} (state 0 ran, 1 flag found, 2 a cluster). */
static void on_migrated(fb_redis_t *r, int status, redisReply *rep, void *arg)
{
    fb_durability_t *dur = arg;
    dur->probes--;
    if (status == FB_ECANCELED || status == FB_EIO || dur->closed)
        return; /* lost with its connection: run again at the next one */
    const char *addr = fb_redis_address(r);
    long long moved = 0, left = 0, state = 0;
    if (status != 0 || !fb_redis_reply_array(rep, 3, 3, "iii")) {
        const char *err = rep && rep->type == REDIS_REPLY_ERROR ? rep->str : fb_strerror(status);
        FB_WARN(REDIS,
                "[redis|%s] the keys' layout: the migration of the global keys to their {g} "
                "names failed (%s); tried again at the next connection",
                addr, err);
        return;
    }
    moved = rep->element[0]->integer;
    left = rep->element[1]->integer;
    state = rep->element[2]->integer;
    dur->migrated = true;
    dur->st.keys_renamed += (uint64_t)moved;
    dur->st.keys_left += (uint64_t)left;
    if (state == 2)
        FB_INFO(REDIS,
                "[redis|%s] the keys' layout: a Redis Cluster, the global keys are not migrated "
                "(they must already have their {g} names)",
                addr);
    else if (state == 0)
        FB_NOTICE(REDIS,
                  "[redis|%s] the keys' layout: %lld global key(s) renamed to their {g} name", addr,
                  moved);
    if (left)
        FB_WARN(REDIS,
                "[redis|%s] the keys' layout: %lld global key(s) of the old layout left as they "
                "are, their {g} name being taken (an older daemon still running wrote them after "
                "a newer one had started?): the {g} ones are used (docs/internals/REDIS.md, "
                "\"Key schema\")",
                addr, left);
}

/*
 * The client's ready callback: pipelines the three commands, the first ones of the connection
 * (after the layout's migration, until it has answered once). None is retryable: a connection
 * lost before they answer is checked again at the next one.
 */
static void on_ready(fb_redis_t *r, void *arg)
{
    fb_durability_t *dur = arg;
    const char *margv[] = {"1", dur->migrate_flag, dur->prefix};
    if (dur->migrate_sc.src && !dur->migrated &&
        fb_redis_evalsha(r, &dur->migrate_sc, 0, on_migrated, dur, 3, margv, NULL) == 0)
        dur->probes++;
    struct probe *p = probe_new(dur);
    if (fb_redis_command(r, 0, on_config, p, "CONFIG", "GET", "append*", NULL) == 0)
        p->pending++;
    if (fb_redis_command(r, 0, on_info, p, "INFO", NULL) == 0)
        p->pending++;
    if (marker_command(dur, p) == 0)
        p->pending++;
    if (p->pending < 3) /* refused at once (closing): nothing to learn from this connection */
        p->lost = true;
    probe_next(p);
}

/*
 * The beat: the marker script alone, on the live connection, when nothing else of this module is
 * in flight. It finds a Redis flushed under the connection (the marker gone) and, through the
 * epoch it increments, a Redis that went back in time at the next check. Not retryable either.
 */
static void on_beat(uv_timer_t *t)
{
    fb_durability_t *dur = t->data;
    if (dur->closed || dur->probes || !dur->marker || !fb_redis_connected(dur->redis))
        return;
    struct probe *p = probe_new(dur);
    p->beat = true;
    if (marker_command(dur, p) == 0)
        p->pending++;
    else
        p->lost = true;
    probe_next(p);
}

fb_durability_t *fb_durability_create(uv_loop_t *loop, fb_redis_t *redis, const char *prefix,
                                      bool allow_volatile, fb_durability_refuse_cb refuse,
                                      void *arg)
{
    fb_durability_t *dur = fb_calloc(1, sizeof(*dur));
    dur->redis = redis;
    dur->prefix = fb_strdup(prefix ? prefix : "");
    dur->marker_key = fb_asprintf("%s{g}:redis:marker", dur->prefix);
    dur->epoch_key = fb_asprintf("%s{g}:redis:epoch", dur->prefix);
    dur->beat_ms = FB_DURABILITY_BEAT_MS;
    fb_redis_script_init(&dur->marker_sc, marker_script);
#ifdef FB_TEST_HOOKS
    /* Test builds only: integration tests shorten the beat. */
    const char *beat = getenv("FB_TEST_REDIS_BEAT_MS");
    if (beat && strtoull(beat, NULL, 10) > 0)
        dur->beat_ms = strtoull(beat, NULL, 10);
#endif
    uv_timer_init(loop, &dur->beat);
    dur->beat.data = dur;
    uv_timer_start(&dur->beat, on_beat, dur->beat_ms, dur->beat_ms);
    uv_unref((uv_handle_t *)&dur->beat); /* never what keeps the loop running */
    dur->allow_volatile = allow_volatile;
    dur->refuse = refuse;
    dur->refuse_arg = arg;
    dur->st.aof = -1;
    fb_redis_on_ready(redis, on_ready, dur);
    return dur;
}

void fb_durability_set_migration(fb_durability_t *dur, const char *script, const char *flag_name)
{
    fb_redis_script_init(&dur->migrate_sc, script);
    fb_free(dur->migrate_flag);
    dur->migrate_flag = fb_asprintf("%s{g}:%s", dur->prefix, flag_name);
}

void fb_durability_close(fb_durability_t *dur)
{
    if (!dur || dur->closed)
        return;
    dur->closed = true;
    uv_timer_stop(&dur->beat);
    uv_close((uv_handle_t *)&dur->beat, NULL);
}

void fb_durability_destroy(fb_durability_t *dur)
{
    if (!dur)
        return;
    FB_ASSERT(dur->probes == 0);
    FB_ASSERT(dur->closed);
    fb_free(dur->marker_key);
    fb_free(dur->epoch_key);
    fb_free(dur->migrate_flag);
    fb_free(dur->prefix);
    fb_free(dur->marker);
    fb_free(dur);
}

void fb_durability_get(const fb_durability_t *dur, fb_durability_state_t *out)
{
    *out = dur->st;
}

bool fb_durability_ok(const fb_durability_t *dur)
{
    const fb_durability_state_t *st = &dur->st;
    if (st->last_loss_ms &&
        fb_mono_ns() - dur->loss_mono_ns < (uint64_t)FB_DURABILITY_LOSS_DEGRADED_MS * 1000000u)
        return false;
    return dur->allow_volatile || st->durable;
}

int fb_durability_health(const fb_durability_t *dur, fb_buf_t *out)
{
    const fb_durability_state_t *st = &dur->st;
    const char *persistence = st->aof < 0 ? "unknown" : st->durable ? "durable" : "volatile";
    int rc = fb_buf_printf(out, ",\"aof\":%s", st->aof < 0 ? "null" : st->aof ? "true" : "false");
    if (!rc)
        rc = st->appendfsync[0] ? fb_buf_printf(out, ",\"appendfsync\":\"%s\"", st->appendfsync)
                                : fb_buf_puts(out, ",\"appendfsync\":null");
    if (!rc)
        rc = fb_buf_printf(out, ",\"persistence\":\"%s\",\"data_losses\":%llu", persistence,
                           (unsigned long long)st->data_losses);
    if (!rc)
        rc = st->last_loss_ms
                 ? fb_buf_printf(out, ",\"last_data_loss_ms\":%lld", (long long)st->last_loss_ms)
                 : fb_buf_puts(out, ",\"last_data_loss_ms\":null");
    return rc;
}

int fb_durability_metrics_render(const fb_durability_t *dur, fb_buf_t *out)
{
    const fb_durability_state_t *st = &dur->st;
    return fb_buf_printf(
        out,
        "# HELP frichebot_redis_aof_enabled Redis's appendonly at the last connection (1 yes, 0 "
        "no, -1 not known yet).\n"
        "# TYPE frichebot_redis_aof_enabled gauge\n"
        "frichebot_redis_aof_enabled %d\n"
        "# HELP frichebot_redis_durable 1 when Redis persists with AOF and appendfsync everysec or "
        "always.\n"
        "# TYPE frichebot_redis_durable gauge\n"
        "frichebot_redis_durable %d\n"
        "# HELP frichebot_redis_data_loss_total Times Redis was found to have lost its data (the "
        "marker key gone or changed, or the epoch gone back).\n"
        "# TYPE frichebot_redis_data_loss_total counter\n"
        "frichebot_redis_data_loss_total %llu\n",
        st->aof, st->durable ? 1 : 0, (unsigned long long)st->data_losses);
}
