/* SPDX-License-Identifier: MIT */
/*
 * reminders.c - the calendar (working hours in Paris, French public holidays) and the scheduler
 * that claims due reminders in Redis and hands them to the router as TIMER events.
 *
 * One poll = one CLAIM script (reaper, then deferral or claim); each claimed member becomes a
 * router TIMER job; its answer sends ACK (claim removed) or RELEASE (given back now). A new poll
 * starts only when the previous batch is over, so one scheduler has at most `batch` reminders in
 * flight. docs/internals/REMINDERS.md.
 */
#include "features/reminders.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "common/calendar.h"
#include "core/keys.h"
#include "core/router.h"
#include "frichebot/alloc.h"
#include "frichebot/clock.h"
#include "frichebot/err.h"
#include "frichebot/log.h"

#define MAX_MEMBER 1024 /* bytes of a due member "KEY|id" */

/* ---- the scripts ---------------------------------------------------------------------------- */

/*
 * CLAIM. KEYS: 1 due, 2 claimed (member -> lease expiry ms), 3 claims (member -> "owner|due").
 * ARGV: 1 now ms, 2 lease ms, 3 batch, 4 owner, 5 next opening ms (> now: defer instead of
 * claiming). First the reaper: expired leases go back to the due zset with their due time (NX: a
 * reminder re-armed meanwhile keeps its new time). Returns {reaped, deferred, member, due, ...}.
 */
static const char claim_src[] =
    "#!lua\n"
    "local now = tonumber(ARGV[1])\n"
    "local batch = tonumber(ARGV[3])\n"
    "local reaped = 0\n"
    "for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, batch)) do\n"
    "  local c = redis.call('HGET', KEYS[3], m)\n"
    "  local due = now\n"
    "  if c then\n"
    "    local p = string.find(c, '|', 1, true)\n"
    "    if p then due = tonumber(string.sub(c, p + 1)) or now end\n"
    "  end\n"
    "  redis.call('ZADD', KEYS[1], 'NX', due, m)\n"
    "  redis.call('ZREM', KEYS[2], m)\n"
    "  redis.call('HDEL', KEYS[3], m)\n"
    "  reaped = reaped + 1\n"
    "end\n"
    "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, "
    "batch)\n"
    "local open = tonumber(ARGV[5])\n"
    "if open > now then\n"
    "  for i = 1, #due, 2 do redis.call('ZADD', KEYS[1], open, due[i]) end\n"
    "  return {reaped, #due / 2}\n"
    "end\n"
    "local out = {reaped, 0}\n"
    "local lease = now + tonumber(ARGV[2])\n"
    "for i = 1, #due, 2 do\n"
    "  local m = due[i]\n"
    "  local s = string.format('%d', tonumber(due[i + 1]))\n"
    "  redis.call('ZREM', KEYS[1], m)\n"
    "  redis.call('ZADD', KEYS[2], lease, m)\n"
    "  redis.call('HSET', KEYS[3], m, ARGV[4] .. '|' .. s)\n"
    "  out[#out + 1] = m\n"
    "  out[#out + 1] = s\n"
    "end\n"
    "return out\n";

/*
 * DONE. KEYS: 1 due, 2 claimed, 3 claims. ARGV: 1 member, 2 "owner|due", 3 "1" to give the
 * reminder back (RELEASE) rather than acknowledge it (ACK). Only the lease holder may do either:
 * a lease that expired and was taken by another scheduler is left alone. 1 done, 0 not ours.
 */
static const char done_src[] =
    "#!lua\n"
    "if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return 0 end\n"
    "redis.call('ZREM', KEYS[2], ARGV[1])\n"
    "redis.call('HDEL', KEYS[3], ARGV[1])\n"
    "if ARGV[3] == '1' then\n"
    "  local p = string.find(ARGV[2], '|', 1, true)\n"
    "  redis.call('ZADD', KEYS[1], 'NX', string.sub(ARGV[2], p + 1), "
    "ARGV[1])\n"
    "end\n"
    "return 1\n";

/* ---- the scheduler -------------------------------------------------------------------------- */

struct claim {
    fb_reminders_t *rm;
    char *member; /* "KEY|id" */
    char *token;  /* "owner|due" */
    char *key;    /* KEY, while its delay is read */
    int64_t due;  /* ms */
    bool release;
};

struct fb_reminders_s {
    uv_loop_t *loop;
    const fb_reminders_opts_t *o;
    fb_store_t *store;
    fb_router_t *router;
    char owner[64];
    char *k_due, *k_claimed, *k_claims;
    fb_store_script_t s_claim, s_done;
    uv_timer_t timer;
    bool started, stopping, closed, claiming, again;
    int crash;          /* fb__reminders_set_crash() */
    size_t outstanding; /* claims handed to the router, not yet ACKed/RELEASEd */
    size_t inflight;    /* Redis operations */
    int64_t clock_ms;
    void (*done)(void *arg);
    void *done_arg;
    fb_reminders_stats_t st;
};

static int64_t now_ms(const fb_reminders_t *rm)
{
    return rm->clock_ms ? rm->clock_ms : fb_wall_ms();
}

static uint64_t short_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h >> 32;
}

fb_reminders_t *fb_reminders_create(const fb_reminders_deps_t *deps)
{
    if (!deps || !deps->loop || !deps->cfg || !deps->store || !deps->router)
        return NULL;
    fb_reminders_t *rm = fb_calloc(1, sizeof(*rm));
    rm->loop = deps->loop;
    rm->o = &deps->cfg->reminders;
    rm->store = deps->store;
    rm->router = deps->router;
    if (deps->owner) {
        snprintf(rm->owner, sizeof(rm->owner), "%s", deps->owner);
    } else {
        char host[32] = "host";
        (void)gethostname(host, sizeof(host));
        host[sizeof(host) - 1] = '\0';
        for (char *p = host; *p; p++)
            if (*p == '|')
                *p = '_';
        snprintf(rm->owner, sizeof(rm->owner), "%s:%ld:%08llx", host, (long)getpid(),
                 (unsigned long long)(fb_mono_ns() & 0xffffffffu));
    }
    const char *prefix = fb_store_prefix(deps->store);
    rm->k_due = fb_key_global(prefix, FB_KEY_DUE);
    rm->k_claimed = fb_key_global(prefix, FB_KEY_CLAIMED);
    rm->k_claims = fb_key_global(prefix, FB_KEY_CLAIMS);
    fb_store_script_init(&rm->s_claim, claim_src);
    fb_store_script_init(&rm->s_done, done_src);
    uv_timer_init(rm->loop, &rm->timer);
    rm->timer.data = rm;
    return rm;
}

static void check_done(fb_reminders_t *rm);

static void timer_closed(uv_handle_t *h)
{
    fb_reminders_t *rm = h->data;
    rm->closed = true;
    check_done(rm);
}

/* Once stopping and idle: close the timer; its close callback calls done. */
static void check_done(fb_reminders_t *rm)
{
    if (!rm->stopping || rm->inflight || rm->outstanding || rm->claiming)
        return;
    if (!rm->closed) {
        if (!uv_is_closing((uv_handle_t *)&rm->timer))
            uv_close((uv_handle_t *)&rm->timer, timer_closed);
        return;
    }
    if (rm->done) {
        void (*done)(void *) = rm->done;
        rm->done = NULL;
        done(rm->done_arg);
    }
}

static void claim_free(struct claim *cl)
{
    fb_free(cl->member);
    fb_free(cl->token);
    fb_free(cl->key);
    fb_free(cl);
}

static void batch_over(fb_reminders_t *rm)
{
    if (rm->outstanding || rm->claiming)
        return;
    if (rm->stopping) {
        check_done(rm);
        return;
    }
    if (rm->again) {
        rm->again = false;
        fb_reminders_poll(rm);
    }
}

static void on_done(int status, const redisReply *rep, void *arg)
{
    struct claim *cl = arg;
    fb_reminders_t *rm = cl->rm;
    rm->inflight--;
    rm->outstanding--;
    if (status != 0)
        FB_DEBUG(ROUTER, "reminder %s failed: %s (the lease will expire)",
                 cl->release ? "release" : "ack", fb_strerror(status));
    else if (rep->type == REDIS_REPLY_INTEGER && rep->integer == 0)
        FB_DEBUG(ROUTER, "reminder claim lost meanwhile (lease expired)");
    claim_free(cl);
    batch_over(rm);
}

/* ACK or RELEASE the claim. */
static void finish(struct claim *cl, bool release)
{
    fb_reminders_t *rm = cl->rm;
    if (rm->crash) { /* simulated crash: the claim stays until its lease expires */
        rm->outstanding--;
        claim_free(cl);
        batch_over(rm);
        return;
    }
    cl->release = release;
    const char *args[] = {rm->k_due,  rm->k_claimed, rm->k_claims,
                          cl->member, cl->token,     release ? "1" : "0"};
    int rc = fb_store_eval(rm->store, &rm->s_done, FB_REDIS_RETRY, 3, 3, args, NULL, on_done, cl);
    if (rc != 0) {
        rm->outstanding--;
        claim_free(cl);
        batch_over(rm);
        return;
    }
    rm->inflight++;
}

static void on_delivered(int status, void *arg)
{
    struct claim *cl = arg;
    fb_reminders_t *rm = cl->rm;
    if (status == 0 || status == FB_DECLINED) {
        if (status == FB_DECLINED)
            rm->st.dropped++;
        else
            rm->st.delivered++;
        finish(cl, false);
    } else if (status == FB_EINVAL) {
        /* Refused for good (malformed member): acknowledged so that it does not come back. */
        FB_WARN(ROUTER, "reminder refused by the router: dropped");
        rm->st.dropped++;
        finish(cl, false);
    } else {
        rm->st.released++;
        finish(cl, true);
    }
}

/* The claim's delay is read (or could not be): hands it to the router as a TIMER event. */
static void on_delay(int status, const struct redisReply *rep, void *arg)
{
    struct claim *cl = arg;
    fb_reminders_t *rm = cl->rm;
    rm->inflight--;
    if (status != 0) {
        /* an error answer too (the store's FB_EIO): not "no delay", which would let it go out
         * up to its delay early */
        FB_DEBUG(ROUTER, "reminder delay not read: %s (given back)", fb_strerror(status));
        on_delivered(status == FB_ECANCELED ? FB_ECANCELED : FB_EAGAIN, cl);
        return;
    }
    /* "<id>#a": nil when a `stop` or a forget removed the reminder (or an older daemon's). */
    int64_t delay = -1;
    if (rep && rep->type == REDIS_REPLY_STRING && rep->len > 0) {
        char *end = NULL;
        long long d = strtoll(rep->str, &end, 10);
        if (end == rep->str + rep->len && d >= 0)
            delay = d;
    }
    const char *id = strrchr(cl->member, '|') + 1;
    const char *due = strrchr(cl->token, '|') + 1; /* as CLAIM wrote it: the event id's */
    char *evid = fb_asprintf("rem:%s:%s", id, due);
    FB_DEBUG(ROUTER, "[%08llx] reminder '%s' due at %s delivered",
             (unsigned long long)short_hash(cl->key), id, due);
    int rc = fb_router_reminder(rm->router, cl->key, id, cl->due, delay, evid, on_delivered, cl);
    fb_free(evid);
    if (rc != 0)
        on_delivered(rc, cl);
}

/*
 * Hands one claimed member to the router, after reading its delay ("<id>#a" in the
 * conversation's reminders hash: one HGET, in the conversation's slot), with which the router
 * holds a reminder the user's activity since it was armed pushes back (the lazy push-back,
 * REMINDERS.md "Activity and inactivity"). The HGETs of a batch go out together.
 */
static void deliver(fb_reminders_t *rm, const char *member, size_t len, const char *due)
{
    const char *bar = len < MAX_MEMBER ? strrchr(member, '|') : NULL;
    struct claim *cl = fb_calloc(1, sizeof(*cl));
    cl->rm = rm;
    cl->member = fb_strndup(member, len);
    cl->token = fb_asprintf("%s|%s", rm->owner, due);
    cl->due = strtoll(due, NULL, 10);
    rm->outstanding++;
    if (rm->crash == 1) { /* simulated crash before delivery: the claim stays in Redis */
        rm->outstanding--;
        claim_free(cl);
        return;
    }
    if (!bar || bar == member || !bar[1] || memchr(member, '\0', len)) {
        on_delivered(FB_EINVAL, cl);
        return;
    }
    cl->key = fb_strndup(member, (size_t)(bar - member));
    char *hash = fb_store_conv_key(rm->store, cl->key, FB_KEY_REMINDERS);
    char *field = fb_asprintf("%s#a", bar + 1);
    const char *hget[] = {"HGET", hash, field};
    int rc = hash ? fb_store_command(rm->store, FB_REDIS_RETRY, 3, hget, on_delay, cl)
                  : FB_EINVAL; /* a key too long for a conversation */
    fb_free(hash);
    fb_free(field);
    if (rc != 0) {
        on_delivered(rc == FB_ECLOSING ? FB_ECANCELED : rc, cl);
        return;
    }
    rm->inflight++;
}

static void on_claim(int status, const redisReply *rep, void *arg)
{
    fb_reminders_t *rm = arg;
    rm->inflight--;
    rm->claiming = false;
    if (status != 0 || !fb_redis_reply_array(rep, 2, FB_REDIS_NOMAX, "ii")) {
        if (status != FB_ECANCELED)
            FB_DEBUG(ROUTER, "reminder claim failed: %s", fb_strerror(status ? status : FB_EPROTO));
        batch_over(rm);
        return;
    }
    rm->st.reaped += (uint64_t)rep->element[0]->integer;
    uint64_t deferred = (uint64_t)rep->element[1]->integer;
    if (deferred) {
        rm->st.deferred += deferred;
        FB_INFO(ROUTER, "%llu reminder(s) due out of working hours: deferred",
                (unsigned long long)deferred);
    }
    size_t n = (rep->elements - 2) / 2;
    rm->st.claimed += n;
    rm->again = n >= rm->o->batch || deferred >= rm->o->batch;
    rm->outstanding++; /* held while the batch is handed out */
    for (size_t i = 0; i < n; i++) {
        const redisReply *m = rep->element[2 + 2 * i], *d = rep->element[3 + 2 * i];
        if (m->type != REDIS_REPLY_STRING || d->type != REDIS_REPLY_STRING)
            continue;
        deliver(rm, m->str, m->len, d->str);
    }
    rm->outstanding--;
    batch_over(rm);
}

void fb_reminders_poll(fb_reminders_t *rm)
{
    if (!rm->started || rm->stopping)
        return;
    if (rm->claiming || rm->outstanding) {
        rm->again = true;
        return;
    }
    int64_t now = now_ms(rm);
    int64_t open = now;
    if (rm->o->working_hours_only) {
        fb_hours_t h = {rm->o->start_hour, rm->o->end_hour};
        int64_t t = fb_hours_next_open(&h, now / 1000);
        if (t * 1000 > now)
            open = t * 1000;
    }
    char snow[24], lease[24], batch[24], sopen[24];
    snprintf(snow, sizeof(snow), "%lld", (long long)now);
    snprintf(lease, sizeof(lease), "%u", rm->o->lease_ms);
    snprintf(batch, sizeof(batch), "%u", rm->o->batch);
    snprintf(sopen, sizeof(sopen), "%lld", (long long)open);
    const char *args[] = {rm->k_due, rm->k_claimed, rm->k_claims, snow,
                          lease,     batch,         rm->owner,    sopen};
    int rc = fb_store_eval(rm->store, &rm->s_claim, FB_REDIS_RETRY, 3, 5, args, NULL, on_claim, rm);
    if (rc != 0) {
        FB_DEBUG(ROUTER, "reminder claim not sent: %s", fb_strerror(rc));
        return;
    }
    rm->inflight++;
    rm->claiming = true;
}

static void on_timer(uv_timer_t *t)
{
    fb_reminders_poll(t->data);
}

int fb_reminders_start(fb_reminders_t *rm)
{
    if (rm->started)
        return FB_EINVAL;
    if (!rm->o->enabled) {
        FB_NOTICE(ROUTER, "reminders disabled (reminders.enabled: false)");
        return 0;
    }
    rm->started = true;
    uv_timer_start(&rm->timer, on_timer, rm->o->poll_interval_ms, rm->o->poll_interval_ms);
    FB_INFO(ROUTER, "reminders: polling every %u ms, batch %u, lease %u ms, owner %s",
            rm->o->poll_interval_ms, rm->o->batch, rm->o->lease_ms, rm->owner);
    return 0;
}

void fb_reminders_stop(fb_reminders_t *rm, void (*done)(void *arg), void *arg)
{
    if (rm->stopping)
        return;
    rm->stopping = true;
    rm->done = done;
    rm->done_arg = arg;
    uv_timer_stop(&rm->timer);
    if (!rm->inflight && !rm->outstanding && !rm->claiming)
        uv_close((uv_handle_t *)&rm->timer, timer_closed);
}

void fb_reminders_destroy(fb_reminders_t *rm)
{
    if (!rm)
        return;
    fb_free(rm->k_due);
    fb_free(rm->k_claimed);
    fb_free(rm->k_claims);
    fb_free(rm);
}

size_t fb_reminders_pending(const fb_reminders_t *rm)
{
    return rm->inflight + rm->outstanding;
}

void fb_reminders_get_stats(const fb_reminders_t *rm, fb_reminders_stats_t *out)
{
    *out = rm->st;
}

int fb_reminders_metrics_render(const fb_reminders_t *rm, fb_buf_t *out)
{
    const fb_reminders_stats_t *s = &rm->st;
    return fb_buf_printf(out,
                         "# HELP frichebot_reminders_total Reminders by outcome (this daemon).\n"
                         "# TYPE frichebot_reminders_total counter\n"
                         "frichebot_reminders_total{outcome=\"claimed\"} %llu\n"
                         "frichebot_reminders_total{outcome=\"delivered\"} %llu\n"
                         "frichebot_reminders_total{outcome=\"deferred\"} %llu\n"
                         "frichebot_reminders_total{outcome=\"dropped\"} %llu\n"
                         "frichebot_reminders_total{outcome=\"released\"} %llu\n"
                         "frichebot_reminders_total{outcome=\"reaped\"} %llu\n",
                         (unsigned long long)s->claimed, (unsigned long long)s->delivered,
                         (unsigned long long)s->deferred, (unsigned long long)s->dropped,
                         (unsigned long long)s->released, (unsigned long long)s->reaped);
}

void fb__reminders_set_clock(fb_reminders_t *rm, int64_t clock_ms)
{
    rm->clock_ms = clock_ms;
}

void fb__reminders_set_crash(fb_reminders_t *rm, int crash)
{
    rm->crash = crash;
}
