/* SPDX-License-Identifier: MIT */
/*
 * store.c - Lua scripts on top of fb_redis_t: the key prefix and the session TTL, the
 * EVALSHA/EVAL dance, and the mapping of Redis answers to FB_* outcomes.
 *
 * A script is sent as EVALSHA of its SHA1, computed once by fb_store_script_init(); when Redis
 * does not know it (NOSCRIPT: a restart, a SCRIPT FLUSH, a failover) the same call is sent once
 * more as EVAL, which runs and caches it. The session record itself (core/keys.h) is read and
 * written by the router's scripts.
 */
#include "core/store.h"

#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "common/digest.h"
#include "core/keys.h"
#include "frichebot/alloc.h"
#include "frichebot/clock.h"
#include "frichebot/err.h"
#include "frichebot/log.h"

struct fb_store_s {
    fb_redis_t *redis; /* borrowed */
    char *prefix;      /* key prefix, without braces */
    uint64_t ttl;      /* session TTL in ms; 0: none */
    size_t pending;    /* fb_store_eval() calls whose callback has not been called yet */
};

/* The SHA1 of a script, in hex: its EVALSHA name. */
static void sha1_hex(const char *src, size_t len, char out[41])
{
    unsigned char h[20];
    fb_sha1(src, len, h);
    fb_hex(h, 20, out);
}

/* ---------------------------------------------------------------------------------------- */
/* Keys */

char *fb_store_conv_key(const fb_store_t *s, const char *conv_key, const char *suffix)
{
    return fb_key_conv(s->prefix, conv_key, suffix);
}

/* ---------------------------------------------------------------------------------------- */
/* Public API */

/* Validates the prefix. */
fb_store_t *fb_store_create(fb_redis_t *r, const fb_store_opts_t *opts)
{
    if (!r || !opts)
        return NULL;
    const char *prefix = opts->key_prefix ? opts->key_prefix : "";
    if (strpbrk(prefix, "{}")) {
        FB_ERR(STORE,
               "the key prefix \"%s\" contains '{' or '}', which would break the Redis "
               "Cluster hash tags",
               prefix);
        return NULL;
    }
    fb_store_t *s = fb_calloc(1, sizeof(*s));
    s->redis = r;
    s->prefix = fb_strdup(prefix);
    s->ttl = (uint64_t)opts->session_ttl_days * 86400000ULL;
    return s;
}

void fb_store_destroy(fb_store_t *s)
{
    if (!s)
        return;
    FB_ASSERT(s->pending == 0);
    fb_free(s->prefix);
    fb_free(s);
}

size_t fb_store_pending(const fb_store_t *s)
{
    return s->pending;
}

/* ---------------------------------------------------------------------------------------- */
/* Other scripts */

const char *fb_store_prefix(const fb_store_t *s)
{
    return s->prefix;
}

uint64_t fb_store_session_ttl_ms(const fb_store_t *s)
{
    return s->ttl;
}

void fb_store_script_init(fb_store_script_t *sc, const char *src)
{
    sc->src = src;
    sha1_hex(src, strlen(src), sc->sha);
}

/* One fb_store_eval() in progress: the call is kept whole for the EVAL resend. */
struct eval_op {
    fb_store_t *s;
    const fb_store_script_t *sc;
    int flags;
    fb_store_eval_cb cb;
    void *arg;
    size_t argc;       /* 3 + keys + args */
    const char **argv; /* [0] command, [1] sha or script, [2] nkeys, then the copies */
    char **copies;     /* argv[2..] (owned) */
    size_t *lens;      /* lengths of argv */
    bool eval_sent;
};

static void eval_op_free(struct eval_op *op)
{
    for (size_t i = 2; i < op->argc; i++)
        fb_free(op->copies[i]);
    fb_free(op->copies);
    fb_free(op->argv);
    fb_free(op->lens);
    fb_free(op);
}

static int eval_send(struct eval_op *op);

static void on_eval_reply(fb_redis_t *r, int status, redisReply *rep, void *arg)
{
    (void)r;
    struct eval_op *op = arg;
    if (status == 0 && rep->type == REDIS_REPLY_ERROR) {
        if (!op->eval_sent && rep->str && strncmp(rep->str, "NOSCRIPT", 8) == 0) {
            FB_DEBUG(STORE, "script not cached by Redis (NOSCRIPT); sending it with EVAL");
            op->eval_sent = true;
            int rc = eval_send(op);
            if (rc == 0)
                return;
            status = rc == FB_ECLOSING ? FB_ECANCELED : FB_EUNAVAIL;
        } else {
            FB_WARN(STORE, "script failed: Redis answered: %s", rep->str ? rep->str : "?");
            status = FB_EIO;
        }
    }
    fb_store_eval_cb cb = op->cb;
    void *cb_arg = op->arg;
    op->s->pending--;
    eval_op_free(op);
    cb(status, status == 0 ? rep : NULL, cb_arg); /* rep is still alive during the callback */
}

static int eval_send(struct eval_op *op)
{
    op->argv[0] = op->eval_sent ? "EVAL" : "EVALSHA";
    op->argv[1] = op->eval_sent ? op->sc->src : op->sc->sha;
    op->lens[0] = strlen(op->argv[0]);
    op->lens[1] = strlen(op->argv[1]);
    return fb_redis_command_argv(op->s->redis, op->flags, on_eval_reply, op, (int)op->argc,
                                 op->argv, op->lens);
}

int fb_store_eval(fb_store_t *s, const fb_store_script_t *sc, int flags, size_t nkeys, size_t nargs,
                  const char *const *args, const size_t *lens, fb_store_eval_cb cb, void *arg)
{
    if (!s || !sc || !sc->src || !cb || (nkeys + nargs && !args) || nkeys + nargs > 4096)
        return FB_EINVAL;
    struct eval_op *op = fb_calloc(1, sizeof(*op));
    op->s = s;
    op->sc = sc;
    op->flags = flags;
    op->cb = cb;
    op->arg = arg;
    op->argc = 3 + nkeys + nargs;
    op->argv = fb_calloc(op->argc, sizeof(*op->argv));
    op->copies = fb_calloc(op->argc, sizeof(*op->copies));
    op->lens = fb_calloc(op->argc, sizeof(*op->lens));
    op->copies[2] = fb_asprintf("%zu", nkeys);
    op->lens[2] = strlen(op->copies[2]);
    for (size_t i = 0; i < nkeys + nargs; i++) {
        size_t len = lens ? lens[i] : strlen(args[i]);
        op->copies[3 + i] = fb_malloc(len + 1);
        if (len)
            memcpy(op->copies[3 + i], args[i], len);
        op->copies[3 + i][len] = '\0';
        op->lens[3 + i] = len;
    }
    for (size_t i = 2; i < op->argc; i++)
        op->argv[i] = op->copies[i];
    int rc = eval_send(op);
    if (rc != 0) {
        eval_op_free(op);
        return rc;
    }
    s->pending++;
    return 0;
}
