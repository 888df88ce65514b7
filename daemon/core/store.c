/* SPDX-License-Identifier: MIT */
/*
 * store.c - Lua scripts on top of fb_redis_t: the key prefix and the session TTL, the
 * EVALSHA and NOSCRIPT, and the mapping of Redis answers to FB_* outcomes.
 *
 * A script is sent as EVALSHA of its SHA1, computed once by fb_store_script_init(), through
 * fb_redis_evalsha(): when Redis does not know it (NOSCRIPT: a restart, a SCRIPT FLUSH, a
 * failover) the script is loaded with SCRIPT LOAD and the same EVALSHA sent again right behind
 * it. The body never travels with a call: EVAL would make Redis hash it at every call (issue 17).
 * The session record itself (core/keys.h) is read and written by the router's scripts.
 */
#include "core/store.h"

#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <uv.h>

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
    fb_redis_script_init(sc, src);
}

/* One fb_store_eval() in progress. */
struct eval_op {
    fb_store_t *s;
    fb_store_eval_cb cb;
    void *arg;
    const char *what; /* "script" or "command", for the log */
};

static void on_eval_reply(fb_redis_t *r, int status, redisReply *rep, void *arg)
{
    (void)r;
    struct eval_op *op = arg;
    if (status == 0 && rep->type == REDIS_REPLY_ERROR) {
        FB_WARN(STORE, "%s failed: Redis answered: %s", op->what, rep->str ? rep->str : "?");
        status = FB_EIO;
    }
    fb_store_eval_cb cb = op->cb;
    void *cb_arg = op->arg;
    op->s->pending--;
    fb_free(op);
    cb(status, status == 0 ? rep : NULL, cb_arg); /* rep is still alive during the callback */
}

int fb_store_eval(fb_store_t *s, const fb_store_script_t *sc, int flags, size_t nkeys, size_t nargs,
                  const char *const *args, const size_t *lens, fb_store_eval_cb cb, void *arg)
{
    if (!s || !sc || !sc->src || !cb || (nkeys + nargs && !args) || nkeys + nargs > 4096)
        return FB_EINVAL;
    size_t argc = 1 + nkeys + nargs;
    const char **argv = fb_calloc(argc, sizeof(*argv));
    size_t *argvlen = fb_calloc(argc, sizeof(*argvlen));
    char nk[24];
    snprintf(nk, sizeof(nk), "%zu", nkeys);
    argv[0] = nk;
    argvlen[0] = strlen(nk);
    for (size_t i = 0; i < nkeys + nargs; i++) {
        argv[1 + i] = args[i];
        argvlen[1 + i] = lens ? lens[i] : strlen(args[i]);
    }
    struct eval_op *op = fb_calloc(1, sizeof(*op));
    op->s = s;
    op->cb = cb;
    op->arg = arg;
    op->what = "script";
    int rc = fb_redis_evalsha(s->redis, sc, flags, on_eval_reply, op, (int)argc, argv, argvlen);
    fb_free(argv);
    fb_free(argvlen);
    if (rc != 0) {
        fb_free(op);
        return rc;
    }
    s->pending++;
    return 0;
}

int fb_store_command(fb_store_t *s, int flags, int argc, const char **argv, fb_store_eval_cb cb,
                     void *arg)
{
    if (!s || !cb || argc < 1 || !argv)
        return FB_EINVAL;
    struct eval_op *op = fb_calloc(1, sizeof(*op));
    op->s = s;
    op->cb = cb;
    op->arg = arg;
    op->what = "command";
    int rc = fb_redis_command_argv(s->redis, flags, on_eval_reply, op, argc, argv, NULL);
    if (rc != 0) {
        fb_free(op);
        return rc;
    }
    s->pending++;
    return 0;
}
