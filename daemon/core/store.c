/* SPDX-License-Identifier: MIT */
/*
 * store.c - the session store on top of fb_redis_t: key schema, the versioned save script and
 * its EVALSHA/EVAL dance, and the mapping of Redis answers to FB_* outcomes.
 *
 * A session is the hash {v: version, d: data, w: write id of the last save}. Loads are HMGET;
 * saves run the Lua script below, which checks the version and writes atomically; deletes are
 * DEL. All three are sent with FB_REDIS_RETRY: loads and deletes are idempotent, and the save
 * is made idempotent by its write id (see the script). The script is sent as EVALSHA of its
 * SHA1, computed here at creation; when Redis does not know it (NOSCRIPT: a restart, a SCRIPT
 * FLUSH, a failover) the same save is sent once more as EVAL, which runs and caches it.
 */
#include "core/store.h"

#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "common/digest.h"
#include "core/keys.h"
#include "frichebot/alloc.h"
#include "frichebot/err.h"
#include "frichebot/log.h"

/*
 * The save. KEYS[1] the session hash; ARGV: expected version, data, write id, TTL in ms (0: no
 * expiry). Returns {1, new version} when written, {2, version} when this very write (same write
 * id) had already been applied on top of the expected version (a resend whose first reply was
 * lost), {0, current version} on a conflict. Versions are formatted with %d so that they stay
 * integers in the hash whatever their size.
 */
static const char save_script[] =
    "local cur = redis.call('HMGET', KEYS[1], 'v', 'w')\n"
    "local v = tonumber(cur[1]) or 0\n"
    "local expected = tonumber(ARGV[1])\n"
    "if v == expected then\n"
    "  redis.call('HSET', KEYS[1], 'v', string.format('%d', v + 1), 'd', ARGV[2], 'w', ARGV[3])\n"
    "  local ttl = tonumber(ARGV[4])\n"
    "  if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) else redis.call('PERSIST', KEYS[1]) "
    "end\n"
    "  return {1, v + 1}\n"
    "end\n"
    "if v == expected + 1 and cur[2] == ARGV[3] then return {2, v} end\n"
    "return {0, v}\n";

enum op_kind { OP_LOAD, OP_SAVE, OP_DELETE };

struct fb_store_s {
    fb_redis_t *redis;  /* borrowed */
    char *prefix;       /* key prefix, without braces */
    char ttl_ms[24];    /* session TTL in ms, as the script's argument; "0": none */
    uint64_t ttl;       /* the same, as a number */
    char sha[41];       /* SHA1 of save_script, hex */
    char id_prefix[24]; /* random per store: write ids are "<id_prefix>-<seq>" */
    uint64_t id_seq;    /* last write id sequence number */
    size_t pending;     /* operations whose callback has not been called yet */
};

/* One load, save or delete in progress. */
struct op {
    fb_store_t *s;
    enum op_kind kind;
    fb_store_load_cb load_cb;
    fb_store_save_cb save_cb;
    void *arg;
    char *key;                                /* Redis key */
    char *data;                               /* save: copy of the data, for the EVAL resend */
    size_t len;                               /* bytes of data */
    char expected[24];                        /* save: expected version, decimal */
    char write_id[FB_STORE_MAX_WRITE_ID + 1]; /* save: unique id of this write */
    bool eval_sent;                           /* save: the EVAL fallback was used */
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

static bool conv_key_valid(const char *conv_key)
{
    return conv_key && conv_key[0] && strlen(conv_key) <= FB_STORE_MAX_CONV_KEY;
}

char *fb_store_conv_key(const fb_store_t *s, const char *conv_key, const char *suffix)
{
    return fb_key_conv(s->prefix, conv_key, suffix);
}

/* ---------------------------------------------------------------------------------------- */
/* Operations */

static struct op *op_new(fb_store_t *s, enum op_kind kind, const char *conv_key, void *arg)
{
    struct op *op = fb_calloc(1, sizeof(*op));
    op->s = s;
    op->kind = kind;
    op->arg = arg;
    op->key = fb_store_conv_key(s, conv_key, "session");
    return op;
}

static void op_free(struct op *op)
{
    fb_free(op->key);
    fb_free(op->data);
    fb_free(op);
}

/* Frees the operation, then calls its save/delete callback (so that it may destroy the store). */
static void op_finish_save(struct op *op, int status, uint64_t version)
{
    fb_store_save_cb cb = op->save_cb;
    void *arg = op->arg;
    op->s->pending--;
    op_free(op);
    cb(status, version, arg);
}

/* Logs a Redis error answer (never user data: only the Redis message) and returns FB_EIO. */
static int error_reply(const char *what, const redisReply *rep)
{
    FB_WARN(STORE, "session %s failed: Redis answered: %s", what, rep->str ? rep->str : "?");
    return FB_EIO;
}

/*
 * Load reply: HMGET's {v, d}. {nil, nil} is FB_ENOENT; a version that is not a positive decimal
 * or a missing data field is FB_EPROTO. The data handed to the callback points into the reply.
 */
static void on_load_reply(fb_redis_t *r, int status, redisReply *rep, void *arg)
{
    (void)r;
    struct op *op = arg;
    const char *data = NULL;
    size_t len = 0;
    uint64_t version = 0;
    if (status == 0) {
        if (rep->type == REDIS_REPLY_ERROR) {
            status = error_reply("load", rep);
        } else if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
            status = FB_EPROTO;
        } else if (rep->element[0]->type == REDIS_REPLY_NIL) {
            status = FB_ENOENT;
        } else if (rep->element[0]->type != REDIS_REPLY_STRING ||
                   rep->element[1]->type != REDIS_REPLY_STRING) {
            status = FB_EPROTO;
        } else {
            const redisReply *v = rep->element[0];
            for (size_t i = 0; i < v->len && status == 0; i++) {
                unsigned digit = (unsigned)(v->str[i] - '0');
                if (digit > 9 || version > (UINT64_MAX - digit) / 10)
                    status = FB_EPROTO;
                else
                    version = version * 10 + digit;
            }
            if (v->len == 0 || version == 0)
                status = FB_EPROTO;
            data = rep->element[1]->str;
            len = rep->element[1]->len;
        }
        if (status == FB_EPROTO)
            FB_WARN(STORE, "session load: malformed record under %s", op->key);
    }
    if (status != 0) {
        data = NULL;
        len = 0;
        version = 0;
    }
    fb_store_load_cb cb = op->load_cb;
    void *cb_arg = op->arg;
    op->s->pending--;
    op_free(op);
    cb(status, data, len, version, cb_arg); /* data is borrowed from the reply, still alive */
}

static int save_send(struct op *op);

/*
 * Save reply: {code, version} from the script, or NOSCRIPT, which is answered by sending the
 * same save once as EVAL (Redis runs it and caches the script for the next EVALSHA).
 */
static void on_save_reply(fb_redis_t *r, int status, redisReply *rep, void *arg)
{
    (void)r;
    struct op *op = arg;
    uint64_t version = 0;
    if (status == 0) {
        if (rep->type == REDIS_REPLY_ERROR && !op->eval_sent && rep->str &&
            strncmp(rep->str, "NOSCRIPT", 8) == 0) {
            FB_DEBUG(STORE, "save script not cached by Redis (NOSCRIPT); sending it with EVAL");
            op->eval_sent = true;
            int rc = save_send(op);
            if (rc == 0)
                return;
            status = rc == FB_ECLOSING ? FB_ECANCELED : FB_EUNAVAIL;
        } else if (rep->type == REDIS_REPLY_ERROR) {
            status = error_reply("save", rep);
        } else if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
                   rep->element[0]->type != REDIS_REPLY_INTEGER ||
                   rep->element[1]->type != REDIS_REPLY_INTEGER || rep->element[1]->integer < 0) {
            status = FB_EPROTO;
        } else {
            long long code = rep->element[0]->integer;
            version = (uint64_t)rep->element[1]->integer;
            if (code == 0)
                status = FB_ECONFLICT;
            else if (code == 2)
                FB_DEBUG(STORE, "save of %s had already landed (resent after a lost reply)",
                         op->key);
            else if (code != 1)
                status = FB_EPROTO;
        }
    }
    if (status != 0 && status != FB_ECONFLICT)
        version = 0;
    op_finish_save(op, status, version);
}

/* Sends the save as EVALSHA (or EVAL once NOSCRIPT was seen). Returns fb_redis_command_argv's. */
static int save_send(struct op *op)
{
    const char *argv[8] = {op->eval_sent ? "EVAL" : "EVALSHA",
                           op->eval_sent ? save_script : op->s->sha,
                           "1",
                           op->key,
                           op->expected,
                           op->data ? op->data : "",
                           op->write_id,
                           op->s->ttl_ms};
    size_t lens[8];
    for (size_t i = 0; i < 8; i++)
        lens[i] = i == 5 ? op->len : strlen(argv[i]);
    return fb_redis_command_argv(op->s->redis, FB_REDIS_RETRY, on_save_reply, op, 8, argv, lens);
}

/* Delete reply: DEL's count; 0 or 1 both mean success (deletes are idempotent). */
static void on_delete_reply(fb_redis_t *r, int status, redisReply *rep, void *arg)
{
    (void)r;
    struct op *op = arg;
    if (status == 0) {
        if (rep->type == REDIS_REPLY_ERROR)
            status = error_reply("delete", rep);
        else if (rep->type != REDIS_REPLY_INTEGER)
            status = FB_EPROTO;
    }
    op_finish_save(op, status, 0);
}

/* ---------------------------------------------------------------------------------------- */
/* Public API */

/*
 * Validates the prefix, computes the script's SHA1 and a random write id prefix (uv_random;
 * the clock and pid if that fails: uniqueness, not secrecy, is what matters).
 */
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
    snprintf(s->ttl_ms, sizeof(s->ttl_ms), "%llu", (unsigned long long)s->ttl);
    sha1_hex(save_script, sizeof(save_script) - 1, s->sha);
    unsigned char rnd[8];
    if (uv_random(NULL, NULL, rnd, sizeof(rnd), 0, NULL) != 0) {
        uint64_t x = uv_hrtime() ^ ((uint64_t)uv_os_getpid() << 32) ^ (uint64_t)(uintptr_t)s;
        memcpy(rnd, &x, sizeof(rnd));
    }
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(s->id_prefix + 2 * i, 3, "%02x", rnd[i]);
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

int fb_store_session_load(fb_store_t *s, const char *conv_key, fb_store_load_cb cb, void *arg)
{
    if (!s || !cb || !conv_key_valid(conv_key))
        return FB_EINVAL;
    struct op *op = op_new(s, OP_LOAD, conv_key, arg);
    op->load_cb = cb;
    const char *argv[] = {"HMGET", op->key, "v", "d"};
    int rc = fb_redis_command_argv(s->redis, FB_REDIS_RETRY, on_load_reply, op, 4, argv, NULL);
    if (rc != 0) {
        op_free(op);
        return rc;
    }
    s->pending++;
    return 0;
}

int fb_store_session_save_id(fb_store_t *s, const char *conv_key, const char *data, size_t len,
                             uint64_t expected_version, const char *write_id, fb_store_save_cb cb,
                             void *arg)
{
    if (!s || !cb || !conv_key_valid(conv_key) || (!data && len) || !write_id || !write_id[0] ||
        strlen(write_id) > FB_STORE_MAX_WRITE_ID)
        return FB_EINVAL;
    struct op *op = op_new(s, OP_SAVE, conv_key, arg);
    op->save_cb = cb;
    op->data = fb_malloc(len ? len : 1);
    if (len)
        memcpy(op->data, data, len);
    op->len = len;
    snprintf(op->expected, sizeof(op->expected), "%llu", (unsigned long long)expected_version);
    snprintf(op->write_id, sizeof(op->write_id), "%s", write_id);
    int rc = save_send(op);
    if (rc != 0) {
        op_free(op);
        return rc;
    }
    s->pending++;
    return 0;
}

/* A save with the next write id of this store: "<random prefix>-<counter in hex>". */
int fb_store_session_save(fb_store_t *s, const char *conv_key, const char *data, size_t len,
                          uint64_t expected_version, fb_store_save_cb cb, void *arg)
{
    if (!s)
        return FB_EINVAL;
    char id[64];
    snprintf(id, sizeof(id), "%s-%llx", s->id_prefix, (unsigned long long)++s->id_seq);
    return fb_store_session_save_id(s, conv_key, data, len, expected_version, id, cb, arg);
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

int fb_store_session_delete(fb_store_t *s, const char *conv_key, fb_store_save_cb cb, void *arg)
{
    if (!s || !cb || !conv_key_valid(conv_key))
        return FB_EINVAL;
    struct op *op = op_new(s, OP_DELETE, conv_key, arg);
    op->save_cb = cb;
    const char *argv[] = {"DEL", op->key};
    int rc = fb_redis_command_argv(s->redis, FB_REDIS_RETRY, on_delete_reply, op, 2, argv, NULL);
    if (rc != 0) {
        op_free(op);
        return rc;
    }
    s->pending++;
    return 0;
}
