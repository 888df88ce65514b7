/* SPDX-License-Identifier: MIT */
/*
 * web.c - the web chat adapter: the page, its static files and the websocket at /ws that speaks
 * the protocol of docs/web-protocol.md. Design, Redis keys and failure behaviour:
 * docs/internals/WEB.md.
 *
 * Each conversation is a random token. Its history lives in Redis under the conversation's hash
 * tag, `<prefix>{c:web:TOKEN}:...`, written only by the Lua scripts below, each of which is
 * idempotent: a user entry is keyed by its client message id, a bot entry by its outbox
 * transaction id, so resends (from the page, from the outbox, from the Redis client after a lost
 * reply) never add an entry twice. A user message is acknowledged only once its history entry
 * is written and the router has durably handled it; a bot reply is accepted (send() callback 0)
 * only once its history entry is written.
 *
 * In memory: the open sockets, grouped by conversation (for pushing live entries to every tab)
 * and counted by peer address; each conversation's token bucket. Nothing else: every daemon
 * restart finds the conversations in Redis.
 *
 * Lifetimes: sockets, conversations and operations in flight are reference counted, and every
 * operation holds a reference on the adapter's state (struct web), which therefore outlives
 * destroy() until the last Redis or router callback has come back.
 */
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <uv.h>

#include "common/json.h"
#include "common/utf8.h"
#include "frichebot/adapter.h"
#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "frichebot/clock.h"
#include "frichebot/err.h"
#include "frichebot/log.h"
#include "io/config.h"
#include "io/http_server.h"
#include "io/redis.h"
#include "web_config.h"
#include "web_util.h"

#define CONV_BUCKETS      256
#define SWEEP_INTERVAL_MS 60000
#define UNAVAILABLE_RETRY 2    /* seconds the page waits before resending after `unavailable` */
#define CLOSE_FORGOTTEN   4000 /* the conversation no longer exists: reconnect, start anew */
#define WS_FRAME_OVERHEAD 1024 /* JSON around the text, for the websocket message limit */
#define WS_ESCAPE_FACTOR  6    /* worst-case growth of text written as JSON (\u00XX) */
#define EVENT_ID_START    "start"
/* History sent at hello: half the socket's send queue (see on_hello). */
#define REPLAY_MAX_BYTES      ((size_t)512 * 1024)
#define REPLAY_FRAME_OVERHEAD 16 /* "type":"msg", added to a stored entry */

/* ---------------------------------------------------------------------------------------- */
/* Lua scripts. Every one touches only keys of one conversation (one Cluster slot). */

/*
 * Append. KEYS: meta, hist, hids, hkeys. ARGV: dedupe key ("u:<client id>" or
 * "b:<txn id>"), the entry's tail (fb_web_entry_tail), history_max, TTL in ms (0: none).
 * Returns {-1, 0} when the conversation does not exist (forgotten or expired), {1, seq, entry}
 * when appended, {0, seq, entry-or-nil} when that dedupe key was already there.
 * Cheap on purpose (issue 17): the meta's PTTL says both that the conversation exists and
 * whether the four TTLs need setting again (only once 1/100 of the TTL has passed, or when the
 * history was just created); HSETNX both checks and records the dedupe key (a resend, rare, gives
 * the number back); the history is trimmed in batches of an eighth of history_max, the dedupe
 * keys of the entries trimmed found by their numbers. Five commands per append, where there were
 * some twenty with a PEXPIRE of every key. hkeys (the dedupe keys in order, before) is no longer
 * written; it stays among the keys so that the TTLs and a forget still reach an old one.
 */
static const char append_script[] =
    "#!lua\n"
    "local left = redis.call('PTTL', KEYS[1])\n"
    "if left == -2 then return {-1, 0} end\n"
    "local n = redis.call('HINCRBY', KEYS[1], 'seq', 1)\n"
    "if redis.call('HSETNX', KEYS[3], ARGV[1], n) == 0 then\n"
    "  redis.call('HINCRBY', KEYS[1], 'seq', -1)\n"
    "  local s = tonumber(redis.call('HGET', KEYS[3], ARGV[1]))\n"
    "  local e = false\n"
    "  local first = redis.call('LINDEX', KEYS[2], 0)\n"
    "  if first then\n"
    "    local f = tonumber(string.match(first, '^{\"seq\":(%d+)'))\n"
    "    if f and s >= f then e = redis.call('LINDEX', KEYS[2], s - f) end\n"
    "  end\n"
    "  return {0, s, e}\n"
    "end\n"
    "local e = '{\"seq\":' .. string.format('%d', n) .. ARGV[2]\n"
    "local len = redis.call('RPUSH', KEYS[2], e)\n"
    "local max = tonumber(ARGV[3])\n"
    "local over = len - max\n"
    "if over > math.floor(max / 8) then\n"
    "  redis.call('LTRIM', KEYS[2], over, -1)\n"
    "  local first = redis.call('LINDEX', KEYS[2], 0)\n"
    "  local f = tonumber(string.match(first, '^{\"seq\":(%d+)'))\n"
    "  local h = redis.call('HGETALL', KEYS[3])\n"
    "  local old = {}\n"
    "  for i = 1, #h, 2 do\n"
    "    if tonumber(h[i + 1]) < f then table.insert(old, h[i]) end\n"
    "  end\n"
    "  for i = 1, #old, 1000 do\n"
    "    redis.call('HDEL', KEYS[3], unpack(old, i, math.min(i + 999, #old)))\n"
    "  end\n"
    "  redis.call('DEL', KEYS[4])\n"
    "end\n"
    "local ttl = tonumber(ARGV[4])\n"
    "if ttl > 0 then\n"
    "  if len == 1 or left < 0 or left < ttl - ttl / 100 then\n"
    "    for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end\n"
    "  end\n"
    "elseif left >= 0 then\n"
    "  for i = 1, 4 do redis.call('PERSIST', KEYS[i]) end\n"
    "end\n"
    "return {1, n, e}\n";

/*
 * The router's COMMIT, for the web's conversations (fb_adapter_ops_t.commit_lua; AK: meta, hist,
 * hids, hkeys): the user's message (its entry's tail in `A.arg`: fb_inbound_t.commit_arg) and the
 * bot's replies go into the history there, atomically with the session and the router's dedupe
 * mark (which makes a resent message a duplicate: no dedupe key of its own); the stored entries
 * come back as `AO` (one a line, the user's first: a JSON text has no raw newline; as strings of
 * a JSON array they were escaped again and parsed back, issue 17), which committed() pushes to
 * the open tabs in the order Redis answered. The history is the replies' delivery (the page reads
 * it at every connection: FB_ADAPTER_CAP_HISTORY_DELIVERS): the fragment sets `AD` and the router
 * queues nothing in the outbox, so no send(), no pop, no dedupe key `b:<txn>` (nothing can append
 * them again) and no script of the web's own per message (issue 17). A duplicate (its first
 * COMMIT's answer maybe lost) is pushed again from the history (web_committed() without output).
 * The same entries as the append script's (from, text, html and choices when present, ts), the same
 * trim and TTLs. When the conversation's meta is gone (forgotten, expired), a user's message is
 * refused before anything is written (`{3, 0}`: FB_ENOENT, the socket is closed). A forget's
 * own message is echoed (its seq taken) but not stored. The replies are left to the outbox and
 * send() (append) on a forget (the history is deleted: the goodbye is shown, not kept), when the
 * meta is gone, and when the outbox still holds entries (an advisor's relay not sent yet, a
 * reply queued behind it): their history entries are written by send(), in the outbox's order,
 * and these must come after them (a socket never gets a seq lower than one it has). Format:
 * history_max.
 */
static const char commit_fmt[] =
    "do\n"
    /* A forget's own message: echoed to the tabs (they show it sent, with its seq) but not
     * stored, the history being deleted by this COMMIT. */
    "  if A.arg ~= '' and A.mode == 'f' and redis.call('EXISTS', AK[1]) == 1 then\n"
    "    local n = redis.call('HINCRBY', AK[1], 'seq', 1)\n"
    "    AO = '{\"seq\":' .. string.format('%%d', n) .. A.arg\n"
    "  end\n"
    "  local ua = A.arg ~= '' and A.mode ~= 'f'\n"
    "  local bots = A.mode == 'w' and #O.out > 0 and redis.call('LLEN', K.outbox) == 0\n"
    "  if ua or bots then\n"
    "    local left = redis.call('PTTL', AK[1])\n"
    "    if left == -2 then\n"
    "      if ua then return {3, 0} end\n"
    "    else\n"
    "      local nu, nb = ua and 1 or 0, bots and #O.out or 0\n"
    "      local k = nu + nb\n"
    "      local n = redis.call('HINCRBY', AK[1], 'seq', k) - k\n"
    "      local es = {}\n"
    "      if ua then es[1] = '{\"seq\":' .. string.format('%%d', n + 1) .. A.arg end\n"
    "      for i = 1, nb do\n"
    /* The router's history form of the reply (O.hist: its fields without the opening brace),
     * else the reply decoded here (cjson: the largest part of Redis's work per message). */
    "        local form = O.hist[i]\n"
    "        if not form then\n"
    "          local o = cjson.decode(O.out[i])\n"
    "          local h = {from = 'bot', text = type(o.text) == 'string' and o.text or ''}\n"
    "          if type(o.html) == 'string' and o.html ~= '' then h.html = o.html end\n"
    "          if type(o.choices) == 'table' and #o.choices > 0 then h.choices = o.choices end\n"
    "          h.ts = A.now\n"
    "          form = string.sub(cjson.encode(h), 2)\n"
    "        end\n"
    "        es[nu + i] = '{\"seq\":' .. string.format('%%d', n + nu + i) .. ',' .. form\n"
    "      end\n"
    "      AO = table.concat(es, '\\n')\n"
    "      AD = nb > 0\n"
    "      local len = redis.call('RPUSH', AK[2], unpack(es))\n"
    "      local max = %u\n"
    "      if len - max > math.floor(max / 8) then\n"
    "        redis.call('LTRIM', AK[2], len - max, -1)\n"
    "        local f = tonumber(string.match(redis.call('LINDEX', AK[2], 0), "
    "'^{\"seq\":(%%d+)'))\n"
    "        local hh = redis.call('HGETALL', AK[3])\n"
    "        local old = {}\n"
    "        for i = 1, #hh, 2 do\n"
    "          if tonumber(hh[i + 1]) < f then table.insert(old, hh[i]) end\n"
    "        end\n"
    "        for i = 1, #old, 1000 do\n"
    "          redis.call('HDEL', AK[3], unpack(old, i, math.min(i + 999, #old)))\n"
    "        end\n"
    "        redis.call('DEL', AK[4])\n"
    "      end\n"
    "      local wttl = tonumber(ARGV[5])\n"
    "      if wttl > 0 then\n"
    "        if len == k or left < 0 or left < wttl - wttl / 100 then\n"
    "          for i = 1, 4 do redis.call('PEXPIRE', AK[i], wttl) end\n"
    "        end\n"
    "      elseif left >= 0 then\n"
    "        for i = 1, 4 do redis.call('PERSIST', AK[i]) end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n";

/*
 * Create. KEYS: meta. ARGV: creation stamp (Unix ms), TTL in ms. Returns 1 when created, also
 * for a resend of this very creation (same stamp: its first reply was lost), 0 when the key
 * existed already.
 */
static const char create_script[] =
    "#!lua\n"
    "if redis.call('HSETNX', KEYS[1], 'created', ARGV[1]) == 0 then\n"
    "  if redis.call('HGET', KEYS[1], 'created') == ARGV[1] then return 1 end\n"
    "  return 0\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'seq', 0)\n"
    "local ttl = tonumber(ARGV[2])\n"
    "if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end\n"
    "return 1\n";

/*
 * Hello. KEYS: meta, hist, outbox. ARGV: history_max. Returns {0} when the conversation does not
 * exist, else {1, started (0/1), outbox pending (0/1), the last history_max history entries}
 * (the list may hold a few more until the next batch trim: see append).
 */
static const char hello_script[] =
    "#!lua flags=no-writes\n"
    "if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end\n"
    "local st = redis.call('HGET', KEYS[1], 'started')\n"
    "return {1, st and 1 or 0, redis.call('EXISTS', KEYS[3]), redis.call('LRANGE', KEYS[2], "
    "-tonumber(ARGV[1]), -1)}\n";

/*
 * Catch-up. KEYS: hist. ARGV: a seq, history_max. The history entries after that seq (at most
 * history_max), oldest first: what a COMMIT whose answer was lost stored (web_committed() without
 * output). The seqs of the history follow each other, so the entry of seq s is at s - first's.
 */
static const char catchup_script[] =
    "#!lua flags=no-writes\n"
    "local first = redis.call('LINDEX', KEYS[1], 0)\n"
    "if not first then return {} end\n"
    "local f = tonumber(string.match(first, '^{\"seq\":(%d+)'))\n"
    "if not f then return {} end\n"
    "local i = math.max(tonumber(ARGV[1]) + 1 - f, 0)\n"
    "return redis.call('LRANGE', KEYS[1], i, i + tonumber(ARGV[2]) - 1)\n";

/* Started. KEYS: meta. Marks the greeting as delivered, if the conversation still exists. */
static const char started_script[] = "#!lua\n"
                                     "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
                                     "redis.call('HSET', KEYS[1], 'started', 1)\n"
                                     "return 1\n";

/* ---------------------------------------------------------------------------------------- */
/* State */

enum key_index { K_META, K_HIST, K_HIDS, K_HKEYS, K_OUTBOX, K_SESSION, K__COUNT };
static const char *const key_suffix[K__COUNT] = {"web",   "hist",   "hids",
                                                 "hkeys", "outbox", "session"};
/* The adapter's own keys (the outbox and the session are the router's): fb_adapter_web.conv_keys,
 * which the router deletes with the session on "oublier mes données". */
static const char *const own_keys[] = {"web", "hist", "hids", "hkeys", NULL};

struct web;
struct client;

/* Per peer address: number of accepted sockets, and the bucket of new conversations (the entry
 * outlives its last socket until that bucket is full again: see on_sweep). */
struct addr {
    struct addr *next;
    unsigned n;
    fb_web_bucket_t newconv;
    char ip[64];
};

/* A conversation with at least one open socket, an operation in flight or a non-full bucket. */
struct conv {
    struct conv *next; /* hash chain */
    struct web *w;
    char token[FB_WEB_TOKEN_LEN + 1];
    char tag[FB_WEB_TAG_LEN + 1]; /* for logs, never the token */
    char *keys[K__COUNT];
    struct client *clients; /* attached (after hello) */
    size_t nclients;
    unsigned refs; /* attached clients + operations */
    fb_web_bucket_t bucket;
    uint64_t last_seq; /* highest history seq seen by this daemon */
    bool forgotten; /* gone from Redis ("oublier mes données", expiry): an append found no meta */
};

enum client_state { C_NEW, C_HELLO, C_READY, C_REFUSED };

/* One websocket. */
struct client {
    struct web *w;
    fb_ws_t *ws; /* NULL once closed */
    struct conv *cv;
    struct client *next_in_conv;
    struct addr *addr;
    enum client_state st;
    unsigned refs;         /* 1 while the socket is open + operations */
    uint64_t sent_seq;     /* highest seq sent on this socket */
    unsigned catchups;     /* catch-ups in flight for this socket (web_committed(), no output) */
    uint64_t catchup_from; /* while catchups > 0: it gets every entry after this seq again */
    char tag[32];
};

struct web {
    fb_adapter_t *a; /* NULL once destroyed */
    const fb_core_t *core;
    const fb_web_opts_t *opts;
    fb_redis_t *redis;
    fb_redis_script_t s_append, s_create, s_hello, s_started, s_catchup;
    char ttl_ms[24];
    char max_hist[24];
    char *commit_lua; /* commit_fmt, for the router's COMMIT */
    uint64_t hold_ms; /* test builds: FB_TEST_WEB_PUSH_HOLD_MS (web_committed()) */
    size_t ws_limit;
    struct conv *convs[CONV_BUCKETS];
    size_t nconvs, online;
    struct addr *addrs;
    size_t nclients; /* accepted, open */
    unsigned refs;   /* instance + clients + operations + timer */
    size_t ops;      /* operations in flight */
    uv_timer_t sweep;
    bool timer_init, timer_closed, started, stopping;
    void (*stop_done)(fb_adapter_t *a);
    uint64_t conv_seq; /* for client tags */
};

/* One Redis command or router delivery in flight. */
enum op_kind {
    OP_HELLO,
    OP_CREATE,
    OP_START,
    OP_STARTED,
    OP_DELIVER,
    OP_APPEND_BOT,
    OP_SENT,    /* a reply its COMMIT stored already: pushed, send()'s callback called later */
    OP_CATCHUP, /* a duplicate's entries, read from the history again (web_committed()) */
    OP_HELD     /* test builds: a COMMIT's replies, pushed FB_TEST_WEB_PUSH_HOLD_MS later */
};

struct op {
    struct web *w;
    enum op_kind kind;
    struct client *c; /* may be NULL */
    struct conv *cv;  /* may be NULL (send() to a conversation without a socket here) */
    fb_inbound_kind_t in_kind;
    char id[FB_WEB_MAX_ID + 1];
    char *text;   /* user text, or the choice's label */
    char *choice; /* option id */
    uint64_t since;
    char *tail;                       /* APPEND_BOT: the entry, for a live push after forget */
    char token[FB_WEB_TOKEN_LEN + 1]; /* APPEND_BOT: whose sockets get the entry */
    fb_send_cb send_cb;
    void *send_arg;
    char tag[FB_WEB_TAG_LEN + 1];
    uv_timer_t done; /* SENT: send()'s callback, later; HELD: the push */
    json_t *later;   /* DELIVER: the replies its COMMIT stored, pushed after the ack */
};

static void web_unref(struct web *w);
static void conv_unref(struct conv *cv);
static void client_unref(struct client *c);
static void maybe_stop_done(struct web *w);

/* ---------------------------------------------------------------------------------------- */
/* Small helpers */

static uint64_t now_ms(struct web *w)
{
    return uv_now(w->core->loop);
}

static unsigned token_hash(const char *token)
{
    uint32_t h = 2166136261u;
    for (const char *p = token; *p; p++) {
        h ^= (unsigned char)*p;
        h *= 16777619u;
    }
    return h % CONV_BUCKETS;
}

static bool web_alive(const struct web *w)
{
    return w->a != NULL;
}

/* Sends `text` (a JSON object) to the socket; a socket too slow to drain its queue is closed. */
static void client_send_raw(struct client *c, const char *text, size_t len)
{
    if (!c->ws)
        return;
    int rc = fb_ws_send(c->ws, text, len);
    if (rc == FB_EAGAIN) {
        FB_WARN(WEB, "%s: send queue full, closing the connection", c->tag);
        fb_ws_close(c->ws, 1008, "trop lent");
    }
}

/* Sends a JSON object (borrowed) to the socket. */
static void client_send_json(struct client *c, const json_t *obj)
{
    /* json_dumps(JSON_COMPACT)'s bytes, a tenth of its instructions (common/json.h) */
    fb_buf_t b;
    fb_buf_init(&b, (size_t)1 << 24);
    if (fb_json_dump(obj, &b) != 0) {
        fb_buf_free(&b);
        return; /* a string that is not UTF-8, or out of memory: as json_dumps() */
    }
    client_send_raw(c, fb_buf_str(&b), b.len);
    fb_buf_free(&b);
}

/* Sends an `error` frame. `id` may be NULL, `retry_after` 0 for none. */
static void client_error(struct client *c, const char *code, const char *message, const char *id,
                         unsigned retry_after)
{
    json_t *o = json_pack("{s:s, s:s, s:s}", "type", "error", "code", code, "message", message);
    if (!o)
        return;
    if (id && *id)
        json_object_set_new(o, "id", json_string(id));
    if (retry_after)
        json_object_set_new(o, "retry_after", json_integer(retry_after));
    client_send_json(c, o);
    json_decref(o);
    FB_DEBUG(WEB, "%s: error %s", c->tag, code);
}

static void client_unavailable(struct client *c, const char *id)
{
    client_error(c, "unavailable",
                 "Le service est momentanément indisponible. Votre message n'est pas perdu : il "
                 "sera renvoyé automatiquement dans quelques secondes.",
                 id, UNAVAILABLE_RETRY);
}

static void client_bad_request(struct client *c, const char *message, const char *id)
{
    client_error(c, "bad_request", message, id, 0);
}

/* Sends a stored entry to one socket, unless it already has that seq. */
static void client_push(struct client *c, const char *frame, uint64_t seq)
{
    if (c->st != C_READY || !c->ws || seq <= c->sent_seq)
        return;
    client_send_raw(c, frame, strlen(frame));
    c->sent_seq = seq;
}

static void conv_catch_up(struct web *w, struct conv *cv);

/*
 * Pushes a stored entry (`{"seq":N,...}`) to every socket of the conversation. History seqs are
 * contiguous: an entry beyond the next one this daemon knows means entries it never pushed (a
 * COMMIT whose answer was lost, a reminder or a relay written by another daemon), which the
 * sockets would otherwise never get, since a page asks only for what follows its highest seq.
 * They are read again first (conv_catch_up(): one round trip, only then).
 */
static void conv_push_stored(struct conv *cv, const char *stored, size_t len)
{
    uint64_t seq;
    char *frame = fb_web_entry_frame(stored, len, &seq);
    if (!frame) {
        FB_WARN(WEB, "[web|%s] malformed history entry, not pushed", cv->tag);
        return;
    }
    if (cv->last_seq && seq > cv->last_seq + 1 && cv->w && web_alive(cv->w)) {
        FB_DEBUG(WEB, "[web|%s] entries %llu to %llu not pushed here: read again", cv->tag,
                 (unsigned long long)cv->last_seq + 1, (unsigned long long)seq - 1);
        conv_catch_up(cv->w, cv);
    }
    if (seq > cv->last_seq)
        cv->last_seq = seq;
    for (struct client *c = cv->clients; c; c = c->next_in_conv)
        client_push(c, frame, seq);
    fb_free(frame);
}

/* ---------------------------------------------------------------------------------------- */
/* Conversations */

static struct conv *conv_find(struct web *w, const char *token)
{
    for (struct conv *cv = w->convs[token_hash(token)]; cv; cv = cv->next)
        if (strcmp(cv->token, token) == 0)
            return cv;
    return NULL;
}

/* Returns the conversation of `token`, created if needed, with a new reference. */
static struct conv *conv_get(struct web *w, const char *token)
{
    struct conv *cv = conv_find(w, token);
    if (!cv) {
        cv = fb_calloc(1, sizeof(*cv));
        cv->w = w;
        memcpy(cv->token, token, FB_WEB_TOKEN_LEN + 1);
        fb_web_token_tag(token, cv->tag);
        char *conv_key = fb_asprintf("web:%s", token);
        for (int i = 0; i < K__COUNT; i++)
            cv->keys[i] = w->core->conv_key(w->core, conv_key, key_suffix[i]);
        fb_free(conv_key);
        unsigned h = token_hash(token);
        cv->next = w->convs[h];
        w->convs[h] = cv;
        w->nconvs++;
    }
    cv->refs++;
    return cv;
}

static void conv_free(struct conv *cv)
{
    struct web *w = cv->w;
    struct conv **pp = &w->convs[token_hash(cv->token)];
    while (*pp != cv)
        pp = &(*pp)->next;
    *pp = cv->next;
    w->nconvs--;
    for (int i = 0; i < K__COUNT; i++)
        fb_free(cv->keys[i]);
    memset(cv->token, 0, sizeof(cv->token));
    fb_free(cv);
}

/* Drops a reference; an unused conversation is freed unless its bucket still matters. */
static void conv_unref(struct conv *cv)
{
    FB_ASSERT(cv->refs > 0);
    if (--cv->refs > 0)
        return;
    struct web *w = cv->w;
    if (!web_alive(w) || w->stopping || cv->forgotten ||
        fb_web_bucket_full(&cv->bucket, w->opts->messages_per_minute, now_ms(w)))
        conv_free(cv);
}

static void conv_attach(struct conv *cv, struct client *c)
{
    FB_ASSERT(!c->cv);
    cv->refs++;
    c->cv = cv;
    c->next_in_conv = cv->clients;
    cv->clients = c;
    if (cv->nclients++ == 0)
        cv->w->online++;
}

static void conv_detach(struct client *c)
{
    struct conv *cv = c->cv;
    if (!cv)
        return;
    struct client **pp = &cv->clients;
    while (*pp && *pp != c)
        pp = &(*pp)->next_in_conv;
    if (*pp)
        *pp = c->next_in_conv;
    c->cv = NULL;
    if (--cv->nclients == 0)
        cv->w->online--;
    conv_unref(cv);
}

static void addr_free(struct web *w, struct addr *a);

/* Frees the conversations nobody uses whose bucket is full again, and likewise the addresses. */
static void on_sweep(uv_timer_t *t)
{
    struct web *w = t->data;
    uint64_t now = now_ms(w);
    for (struct addr *a = w->addrs, *next; a; a = next) {
        next = a->next;
        if (a->n == 0 &&
            fb_web_bucket_full(&a->newconv, w->opts->new_conversations_per_minute, now))
            addr_free(w, a);
    }
    for (size_t i = 0; i < CONV_BUCKETS; i++) {
        struct conv *cv = w->convs[i];
        while (cv) {
            struct conv *next = cv->next;
            if (cv->refs == 0 && fb_web_bucket_full(&cv->bucket, w->opts->messages_per_minute, now))
                conv_free(cv);
            cv = next;
        }
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Addresses */

static struct addr *addr_find(struct web *w, const char *ip)
{
    for (struct addr *a = w->addrs; a; a = a->next)
        if (strcmp(a->ip, ip) == 0)
            return a;
    return NULL;
}

static struct addr *addr_new(struct web *w, const char *ip)
{
    struct addr *a = fb_calloc(1, sizeof(*a));
    snprintf(a->ip, sizeof(a->ip), "%s", ip);
    a->next = w->addrs;
    w->addrs = a;
    return a;
}

static void addr_free(struct web *w, struct addr *a)
{
    struct addr **pp = &w->addrs;
    while (*pp != a)
        pp = &(*pp)->next;
    *pp = a->next;
    fb_free(a);
}

/* Drops a socket; the entry stays while it still limits new conversations. */
static void addr_release(struct web *w, struct addr *a)
{
    FB_ASSERT(a->n > 0);
    if (--a->n == 0 &&
        fb_web_bucket_full(&a->newconv, w->opts->new_conversations_per_minute, now_ms(w)))
        addr_free(w, a);
}

/* ---------------------------------------------------------------------------------------- */
/* References and operations */

static void web_free(struct web *w)
{
    for (size_t i = 0; i < CONV_BUCKETS; i++)
        while (w->convs[i])
            conv_free(w->convs[i]);
    while (w->addrs) { /* only entries kept for their new-conversation bucket remain */
        FB_ASSERT(w->addrs->n == 0);
        addr_free(w, w->addrs);
    }
    fb_free(w->commit_lua);
    fb_free(w);
}

static void web_unref(struct web *w)
{
    FB_ASSERT(w->refs > 0);
    if (--w->refs == 0)
        web_free(w);
}

static void client_unref(struct client *c)
{
    FB_ASSERT(c->refs > 0);
    if (--c->refs > 0)
        return;
    struct web *w = c->w;
    fb_free(c);
    web_unref(w);
}

static struct op *op_new(struct web *w, enum op_kind kind, struct client *c, struct conv *cv)
{
    struct op *op = fb_calloc(1, sizeof(*op));
    op->w = w;
    op->kind = kind;
    w->refs++;
    w->ops++;
    if (c) {
        op->c = c;
        c->refs++;
    }
    if (cv) {
        op->cv = cv;
        cv->refs++;
        memcpy(op->tag, cv->tag, sizeof(op->tag));
    }
    return op;
}

static void op_free(struct op *op)
{
    struct web *w = op->w;
    if (op->cv)
        conv_unref(op->cv);
    if (op->c)
        client_unref(op->c);
    fb_free(op->text);
    fb_free(op->choice);
    fb_free(op->tail);
    json_decref(op->later);
    fb_free(op);
    w->ops--;
    maybe_stop_done(w);
    web_unref(w);
}

/* Runs script `sc` with `nkeys` keys and `nargs` arguments (all NUL-terminated strings), as
 * EVALSHA: the body is not sent, nor hashed by Redis, at every call. */
static int run_script(struct op *op, const fb_redis_script_t *sc, fb_redis_reply_cb cb, int nkeys,
                      const char *const *keys, int nargs, const char *const *args)
{
    const char *argv[16];
    char nk[8];
    snprintf(nk, sizeof(nk), "%d", nkeys);
    int argc = 0;
    argv[argc++] = nk;
    for (int i = 0; i < nkeys; i++)
        argv[argc++] = keys[i];
    for (int i = 0; i < nargs; i++)
        argv[argc++] = args[i];
    FB_ASSERT(argc <= (int)FB_ARRAY_SIZE(argv));
    return fb_redis_evalsha(op->w->redis, sc, FB_REDIS_RETRY, cb, op, argc, argv, NULL);
}

/* Maps a Redis outcome to 0 or an error; an error reply is logged and becomes FB_EIO. */
static int redis_status(int status, const redisReply *reply, const char *what)
{
    if (status)
        return status;
    if (!reply)
        return FB_EPROTO;
    if (reply->type == REDIS_REPLY_ERROR) {
        FB_ERR(WEB, "%s: Redis answered an error: %s", what, reply->str);
        return FB_EIO;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Delivering events to the router */

static void on_delivered(int status, void *arg);
static void deliver_start(struct web *w, struct conv *cv);

/* Hands op's event to the router; on an immediate refusal, runs the completion at once. */
static void op_deliver(struct op *op)
{
    struct web *w = op->w;
    fb_inbound_t ev = {0};
    char event_id[FB_WEB_MAX_ID + 8];
    ev.kind = op->in_kind;
    ev.conv = op->cv->token;
    ev.ts_ms = fb_wall_ms();
    if (op->in_kind == FB_IN_START) {
        ev.event_id = EVENT_ID_START;
    } else {
        snprintf(event_id, sizeof(event_id), "u.%s", op->id);
        ev.event_id = event_id;
        ev.text = op->text;
        ev.choice = op->choice;
        ev.commit_arg = op->tail; /* the user's history entry, written by the COMMIT */
    }
    op->kind = OP_DELIVER;
    int rc =
        web_alive(w) && !w->stopping ? w->core->deliver(w->a, &ev, on_delivered, op) : FB_ECANCELED;
    if (rc)
        on_delivered(rc, op);
}

static void on_started(fb_redis_t *r, int status, redisReply *reply, void *arg)
{
    struct op *op = arg;
    (void)r;
    status = redis_status(status, reply, "started mark");
    if (status)
        FB_WARN(WEB,
                "[web|%s] could not mark the greeting delivered (%s): it is redelivered "
                "at the next connection, de-duplicated by the router",
                op->tag, fb_strerror(status));
    op_free(op);
}

static void on_delivered(int status, void *arg)
{
    struct op *op = arg;
    struct web *w = op->w;
    struct client *c = op->c;
    if (op->in_kind == FB_IN_START) {
        if (status == 0) {
            FB_DEBUG(WEB, "[web|%s] greeting requested", op->tag);
            struct op *m = op_new(w, OP_STARTED, NULL, op->cv);
            const char *keys[] = {op->cv->keys[K_META]};
            if (run_script(m, &w->s_started, on_started, 1, keys, 0, NULL))
                op_free(m);
        } else {
            FB_WARN(WEB,
                    "[web|%s] the greeting could not be requested (%s); retried at the next "
                    "connection",
                    op->tag, fb_strerror(status));
        }
        op_free(op);
        return;
    }
    if (status == 0) {
        if (c && c->ws) {
            json_t *o = json_pack("{s:s, s:s}", "type", "ack", "id", op->id);
            if (o) {
                client_send_json(c, o);
                json_decref(o);
            }
        }
        /* The replies its COMMIT stored (web_committed()), after the ack, as when they came
         * through send(); nothing else can have been pushed in between (same loop turn). */
        for (size_t i = 0; i < json_array_size(op->later); i++) {
            const json_t *e = json_array_get(op->later, i);
            conv_push_stored(op->cv, json_string_value(e), json_string_length(e));
        }
        /* No forget check here: the router's forget deletes the web keys (conv_keys) in the
         * same atomic write as the session, and they expire with it; the next message finds no
         * conversation (issue 17: one script less per message). */
        FB_DEBUG(WEB, "[web|%s] message handled", op->tag);
    } else if (status == FB_ENOENT) {
        /* The conversation is gone (forgotten, expired): the COMMIT wrote nothing; the page
         * reconnects and starts anew. */
        FB_INFO(WEB, "[web|%s] message for a conversation that no longer exists", op->tag);
        op->cv->forgotten = true;
        if (c && c->ws)
            fb_ws_close(c->ws, CLOSE_FORGOTTEN, "conversation terminée");
    } else if (status == FB_EINVAL) {
        if (c)
            client_bad_request(c, "Ce message n'a pas pu être traité.", op->id);
    } else {
        FB_INFO(WEB, "[web|%s] message not handled (%s): the page will resend it", op->tag,
                fb_err_name(status));
        fb_web_bucket_refund(&op->cv->bucket, w->opts->messages_per_minute);
        if (c)
            client_unavailable(c, op->id);
    }
    op_free(op);
}

/* ---------------------------------------------------------------------------------------- */
/* User messages */

/* Handles a `message` or `choice` frame of a ready socket (its members checked by
 * fb_web_frame_parse). */
static void client_on_message(struct client *c, const fb_web_frame_t *f)
{
    struct web *w = c->w;
    if (f->error) {
        client_error(c, f->error, f->message, f->error_id, 0);
        return;
    }
    bool is_choice = f->type == FB_WEB_FRAME_CHOICE;
    const char *id = f->id, *text = f->text, *choice = f->choice;
    if (w->stopping) {
        client_unavailable(c, id);
        return;
    }
    struct conv *cv = c->cv;
    unsigned wait = fb_web_bucket_take(&cv->bucket, w->opts->messages_per_minute, now_ms(w));
    if (wait) {
        char m[200];
        snprintf(m, sizeof(m),
                 "Vous envoyez beaucoup de messages : merci de patienter %u seconde%s avant le "
                 "prochain.",
                 wait, wait > 1 ? "s" : "");
        client_error(c, "rate_limited", m, id, wait);
        FB_INFO(WEB, "[web|%s] rate limited", cv->tag);
        return;
    }

    /* The router's rule for control characters (fb_utf8_clean_text()), before the history is
     * written: what the history keeps is what the router accepts, and a message of nothing but
     * control characters is refused here, stored nowhere. */
    char *clean = fb_strdup(text);
    if (fb_utf8_clean_text(clean) > 0 && !is_choice && fb_utf8_blank(clean)) {
        fb_free(clean);
        fb_web_bucket_refund(&cv->bucket, w->opts->messages_per_minute);
        client_bad_request(c, FB_TEXT_CONTROLS_ONLY_FR, id);
        return;
    }
    json_t *entry = json_pack("{s:s, s:s, s:s, s:I}", "from", "user", "id", id, "text", clean, "ts",
                              (json_int_t)fb_wall_ms());
    char *tail = entry ? fb_web_entry_tail(entry) : NULL;
    json_decref(entry);
    if (!tail) {
        fb_free(clean);
        client_bad_request(c, "Message invalide.", id);
        return;
    }
    /* The entry goes into the history with the router's COMMIT (commit_fmt), pushed to every
     * socket of the conversation then (the sending tab included: the page matches it by `id`
     * and `seq`), before the ack. A duplicate (a resend) keeps its token: it costs the router's
     * read, so free resends would let one client keep Redis busy without limit. */
    struct op *op = op_new(w, OP_DELIVER, c, cv);
    snprintf(op->id, sizeof(op->id), "%s", id);
    op->in_kind = is_choice ? FB_IN_CHOICE : FB_IN_MESSAGE;
    op->text = clean;
    op->choice = fb_strdup(choice);
    op->tail = tail;
    op_deliver(op);
}

/* ---------------------------------------------------------------------------------------- */
/* hello */

static void send_welcome(struct client *c, bool is_new)
{
    struct web *w = c->w;
    json_t *o = json_pack("{s:s, s:s, s:b, s:{s:I, s:I, s:I}}", "type", "welcome", "token",
                          c->cv->token, "new", is_new, "limits", "max_message_bytes",
                          (json_int_t)w->opts->max_message_bytes, "messages_per_minute",
                          (json_int_t)w->opts->messages_per_minute, "idle_timeout_s",
                          (json_int_t)w->core->cfg->server.idle_timeout_s);
    if (!o)
        return;
    client_send_json(c, o);
    json_decref(o);
}

static void deliver_start(struct web *w, struct conv *cv)
{
    struct op *op = op_new(w, OP_START, NULL, cv);
    op->in_kind = FB_IN_START;
    op_deliver(op);
}

static void on_created(fb_redis_t *r, int status, redisReply *reply, void *arg)
{
    struct op *op = arg;
    struct web *w = op->w;
    struct client *c = op->c;
    (void)r;
    status = redis_status(status, reply, "conversation create");
    if (status == 0 && (reply->type != REDIS_REPLY_INTEGER || reply->integer != 1))
        status = FB_EPROTO; /* a collision of 256-bit random tokens: not expected */
    if (!c->ws || !web_alive(w)) {
        op_free(op);
        return;
    }
    if (status) {
        FB_INFO(WEB, "%s: cannot start a conversation (%s)", c->tag, fb_err_name(status));
        client_unavailable(c, NULL);
        fb_ws_close(c->ws, 1013, "indisponible");
        op_free(op);
        return;
    }
    conv_attach(op->cv, c);
    c->st = C_READY;
    c->sent_seq = 0;
    FB_INFO(WEB, "%s: new conversation [web|%s]", c->tag, op->tag);
    send_welcome(c, true);
    deliver_start(w, op->cv);
    op_free(op);
}

/* Starts a new conversation for client `c`, within its address's new-conversation limit. */
static void hello_new(struct client *c)
{
    struct web *w = c->w;
    unsigned wait =
        fb_web_bucket_take(&c->addr->newconv, w->opts->new_conversations_per_minute, now_ms(w));
    if (wait) {
        FB_WARN(WEB, "%s: too many new conversations from one address, refused for %u s", c->tag,
                wait);
        client_error(c, "too_many_conversations",
                     "Trop de nouvelles conversations ont été ouvertes depuis votre adresse. "
                     "Merci de patienter un peu avant de réessayer.",
                     NULL, wait);
        fb_ws_close(c->ws, 1008, "trop de conversations");
        return;
    }
    char token[FB_WEB_TOKEN_LEN + 1];
    if (fb_web_token_new(token)) {
        FB_ERR(WEB, "%s: no random token available", c->tag);
        client_unavailable(c, NULL);
        fb_ws_close(c->ws, 1011, "erreur interne");
        return;
    }
    struct conv *cv = conv_get(w, token);
    memset(token, 0, sizeof(token));
    struct op *op = op_new(w, OP_CREATE, c, cv);
    conv_unref(cv); /* the op holds it */
    char now[24];
    snprintf(now, sizeof(now), "%lld", (long long)fb_wall_ms());
    const char *keys[] = {cv->keys[K_META]};
    const char *args[] = {now, w->ttl_ms};
    if (run_script(op, &w->s_create, on_created, 1, keys, 2, args)) {
        client_unavailable(c, NULL);
        fb_ws_close(c->ws, 1013, "indisponible");
        op_free(op);
    }
}

static void on_hello(fb_redis_t *r, int status, redisReply *reply, void *arg)
{
    struct op *op = arg;
    struct web *w = op->w;
    struct client *c = op->c;
    (void)r;
    status = redis_status(status, reply, "hello");
    if (status == 0 && (!fb_redis_reply_array(reply, 1, FB_REDIS_NOMAX, "i") ||
                        (reply->element[0]->integer == 1 &&
                         !fb_redis_reply_array(reply, 4, FB_REDIS_NOMAX, "...a"))))
        status = FB_EPROTO;
    if (!c->ws || !web_alive(w)) {
        op_free(op);
        return;
    }
    if (status) {
        FB_INFO(WEB, "%s: hello failed (%s)", c->tag, fb_err_name(status));
        client_unavailable(c, NULL);
        fb_ws_close(c->ws, 1013, "indisponible");
        op_free(op);
        return;
    }
    if (reply->element[0]->integer == 0) {
        FB_INFO(WEB, "%s: unknown or expired conversation [web|%s]: starting a new one", c->tag,
                op->tag);
        hello_new(c);
        op_free(op);
        return;
    }
    struct conv *cv = op->cv;
    bool started = reply->element[1]->integer == 1;
    bool pending = reply->element[2]->integer == 1;
    const redisReply *hist = reply->element[3];
    /* The page cannot be ahead of the history unless Redis lost entries it had seen (restored
     * from an older snapshot): then it must forget what it shows (new: true) and get the whole
     * history again, or it would ignore every entry up to its old last seq as already shown. */
    uint64_t last = 0;
    if (hist->elements > 0 && hist->element[hist->elements - 1]->type == REDIS_REPLY_STRING) {
        const redisReply *e = hist->element[hist->elements - 1];
        char *frame = fb_web_entry_frame(e->str, e->len, &last);
        fb_free(frame);
    }
    bool ahead = op->since > last;
    conv_attach(cv, c);
    c->st = C_READY;
    c->sent_seq = ahead ? 0 : op->since;
    FB_INFO(WEB, "%s: conversation [web|%s] resumed (%zu entries, since %llu)", c->tag, cv->tag,
            hist->elements, (unsigned long long)op->since);
    if (ahead)
        FB_WARN(WEB,
                "%s: the page is ahead of the history (%llu > %llu, Redis data lost?): "
                "it gets the history again",
                c->tag, (unsigned long long)op->since, (unsigned long long)last);
    send_welcome(c, ahead);
    /* The replay is queued at once on the socket, whose queue holds 1 MiB: only the newest
     * entries that fit in REPLAY_MAX_BYTES are sent (at least the last one), so that a long
     * history never overflows it (the socket would be closed at every reconnection). */
    size_t first = hist->elements, bytes = 0;
    while (first > 0) {
        const redisReply *e = hist->element[first - 1];
        size_t n = e->type == REDIS_REPLY_STRING ? e->len + REPLAY_FRAME_OVERHEAD : 0;
        if (first < hist->elements && bytes + n > REPLAY_MAX_BYTES)
            break;
        bytes += n;
        first--;
    }
    if (first > 0)
        FB_INFO(WEB, "%s: history replay limited to its last %zu entries", c->tag,
                hist->elements - first);
    for (size_t i = first; i < hist->elements; i++) {
        const redisReply *e = hist->element[i];
        if (e->type != REDIS_REPLY_STRING)
            continue;
        uint64_t seq;
        char *frame = fb_web_entry_frame(e->str, e->len, &seq);
        if (!frame)
            continue;
        if (seq > cv->last_seq)
            cv->last_seq = seq;
        client_push(c, frame, seq);
        fb_free(frame);
    }
    if (!started)
        deliver_start(w, cv);
    if (pending && !w->stopping)
        w->core->wake(w->a, cv->token);
    op_free(op);
}

static void client_on_hello(struct client *c, const fb_web_frame_t *f)
{
    struct web *w = c->w;
    if (f->error) {
        client_bad_request(c, f->message, NULL);
        return;
    }
    if (w->stopping) {
        client_unavailable(c, NULL);
        fb_ws_close(c->ws, 1001, "arrêt du service");
        return;
    }
    c->st = C_HELLO;
    const char *token = f->token;
    if (!fb_web_token_valid(token)) {
        if (token)
            FB_INFO(WEB, "%s: malformed token: starting a new conversation", c->tag);
        hello_new(c);
        return;
    }
    struct conv *cv = conv_get(w, token);
    struct op *op = op_new(w, OP_HELLO, c, cv);
    conv_unref(cv);
    op->since = f->since;
    const char *keys[] = {cv->keys[K_META], cv->keys[K_HIST], cv->keys[K_OUTBOX]};
    const char *args[] = {w->max_hist};
    if (run_script(op, &w->s_hello, on_hello, 3, keys, 1, args)) {
        client_unavailable(c, NULL);
        fb_ws_close(c->ws, 1013, "indisponible");
        op_free(op);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Websocket callbacks */

static int ws_open(fb_ws_t *ws, void *arg)
{
    struct web *w = arg;
    struct client *c = fb_calloc(1, sizeof(*c));
    c->w = w;
    c->ws = ws;
    c->refs = 1;
    w->refs++;
    snprintf(c->tag, sizeof(c->tag), "%s", fb_ws_tag(ws));
    fb_ws_set_data(ws, c);
    const char *peer = fb_ws_peer(ws);
    struct addr *a = addr_find(w, peer ? peer : "?");
    unsigned open_here = a ? a->n : 0;
    if (open_here >= w->opts->max_connections_per_address) {
        c->st = C_REFUSED;
        FB_WARN(WEB, "%s: too many connections from one address (%u open), refused", c->tag,
                open_here);
        client_error(c, "too_many_connections",
                     "Trop de connexions sont ouvertes depuis votre adresse. Fermez quelques "
                     "onglets de l'assistant, puis réessayez.",
                     NULL, 0);
        fb_ws_close(ws, 1008, "trop de connexions");
        return 0;
    }
    if (!a)
        a = addr_new(w, peer ? peer : "?");
    a->n++;
    c->addr = a;
    w->nclients++;
    FB_DEBUG(WEB, "%s: connected (%zu open)", c->tag, w->nclients);
    return 0;
}

static void ws_message(fb_ws_t *ws, const char *data, size_t len, void *arg)
{
    struct client *c = fb_ws_data(ws);
    if (!c || c->st == C_REFUSED)
        return;
    /* Decoding and checking the members is pure (web_util.c, fuzzed by fuzz_http_framing); the
     * connection's state decides first which answer a refused frame gets. */
    fb_web_frame_t f;
    struct web *w = arg;
    fb_web_frame_parse(data, len, w->opts->max_message_bytes, &f);
    if (f.type == FB_WEB_FRAME_NONE) {
        client_bad_request(c, f.message, NULL);
    } else if (f.type == FB_WEB_FRAME_HELLO) {
        if (c->st == C_NEW)
            client_on_hello(c, &f);
        else
            client_bad_request(c, "hello a déjà été reçu sur cette connexion.", NULL);
    } else if (c->st != C_READY) {
        client_bad_request(c, "Le premier message doit être hello.", f.raw_id);
    } else if (f.type == FB_WEB_FRAME_PING) {
        client_send_raw(c, "{\"type\":\"pong\"}", 15);
    } else if (f.type == FB_WEB_FRAME_MESSAGE || f.type == FB_WEB_FRAME_CHOICE) {
        client_on_message(c, &f);
    } else {
        client_bad_request(c, f.message, NULL);
    }
    fb_web_frame_free(&f);
}

static void ws_refused(fb_ws_t *ws, size_t len, bool binary, void *arg)
{
    struct client *c = fb_ws_data(ws);
    (void)arg;
    (void)len;
    if (!c || c->st == C_REFUSED)
        return;
    if (binary)
        client_bad_request(c, "Les messages binaires ne sont pas acceptés.", NULL);
    else
        client_error(c, "too_big", "Votre message est trop long. Pouvez-vous le raccourcir ?", NULL,
                     0);
}

static void ws_closed(fb_ws_t *ws, void *arg)
{
    struct web *w = arg;
    struct client *c = fb_ws_data(ws);
    if (!c)
        return;
    fb_ws_set_data(ws, NULL);
    c->ws = NULL;
    conv_detach(c);
    if (c->addr) {
        addr_release(w, c->addr);
        c->addr = NULL;
        w->nclients--;
    }
    FB_DEBUG(WEB, "%s: closed (%zu open)", c->tag, w->nclients);
    client_unref(c);
}

static const fb_ws_ops_t ws_ops = {
    .open = ws_open, .message = ws_message, .refused = ws_refused, .closed = ws_closed};

/* ---------------------------------------------------------------------------------------- */
/* The page */

static int on_index(fb_http_req_t *req, void *arg)
{
    struct web *w = arg;
    char *path = fb_asprintf("%s/index.html", w->opts->static_dir);
    /* no-cache: the page names the hashed files of /assets/ (cached for a year), so it must be
     * revalidated at each visit, which its ETag makes a 304. The server adds libwebsockets'
     * security headers (a strict Content-Security-Policy with 'self' sources only, nosniff,
     * no-referrer, frame denial) to every answer. */
    int rc = fb_http_respond_file(req, path, FB_HTTP_CACHE_REVALIDATE);
    fb_free(path);
    if (rc == FB_ENOENT) {
        static const char msg[] = "Page introuvable : l'assistant n'est pas installé.\n";
        fb_http_respond(req, 404, "text/plain; charset=utf-8", msg, sizeof(msg) - 1, NULL);
        return 0;
    }
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* send(): bot replies from the outbox */

static void on_bot_appended(fb_redis_t *r, int status, redisReply *reply, void *arg)
{
    struct op *op = arg;
    (void)r;
    status = redis_status(status, reply, "history append");
    if (status == 0 && !fb_redis_reply_array(reply, 2, FB_REDIS_NOMAX, "i"))
        status = FB_EPROTO;
    if (status) {
        FB_INFO(WEB, "[web|%s] reply not recorded (%s): the outbox retries", op->tag,
                fb_err_name(status));
        op->send_cb(status == FB_ECANCELED ? FB_ECANCELED : FB_EAGAIN, 0, op->send_arg);
        op_free(op);
        return;
    }
    long long code = reply->element[0]->integer;
    /* The sockets are those attached now, not when the reply was queued: a socket whose hello
     * script ran before this append (its replay ends before the entry) has been attached by now,
     * since one Redis connection answers in order, even if the conversation had no socket here
     * when the reply was queued (the page was reconnecting). Missed, the entry would never reach
     * it: the next one would, and the page, asking for what follows its last seq, would skip it. */
    struct conv *cv = web_alive(op->w) ? conv_find(op->w, op->token) : NULL;
    if (code < 0) {
        /* Forgotten (or expired): nothing is kept, but the open tabs still see the reply. */
        if (cv && cv->clients) {
            char *stored =
                fb_asprintf("{\"seq\":%llu%s", (unsigned long long)cv->last_seq + 1, op->tail);
            conv_push_stored(cv, stored, strlen(stored));
            fb_free(stored);
        }
        FB_DEBUG(WEB, "[web|%s] reply to a conversation without history: shown, not kept", op->tag);
    } else if (cv && reply->elements >= 3 && reply->element[2]->type == REDIS_REPLY_STRING) {
        conv_push_stored(cv, reply->element[2]->str, reply->element[2]->len);
    }
    op->send_cb(0, 0, op->send_arg);
    op_free(op);
}

static void on_sent_closed(uv_handle_t *h)
{
    op_free(h->data);
}

static void on_sent(uv_timer_t *t)
{
    struct op *op = t->data;
    struct conv *cv = web_alive(op->w) ? conv_find(op->w, op->token) : NULL;
    if (cv)
        conv_push_stored(cv, op->tail, strlen(op->tail));
    op->send_cb(0, 0, op->send_arg);
    uv_close((uv_handle_t *)&op->done, on_sent_closed);
}

/* A reply whose history entry its COMMIT wrote (commit_fmt): nothing to write. On the next loop
 * turn (never inside send(), and after the message's ack), the outbox is told and the entry
 * pushed again: web_committed() pushed it to the open tabs already, which ignore it
 * (client_push: seq), unless the COMMIT's answer was lost (Redis restarted, the resent COMMIT
 * found its own mark: a duplicate, without AO). */
static int send_stored(struct web *w, const fb_outbound_t *msg, const json_t *stored, fb_send_cb cb,
                       void *arg)
{
    struct op *op = op_new(w, OP_SENT, NULL, NULL);
    op->tail = fb_strndup(json_string_value(stored), json_string_length(stored));
    memcpy(op->token, msg->conv, FB_WEB_TOKEN_LEN + 1);
    op->send_cb = cb;
    op->send_arg = arg;
    uv_timer_init(w->core->loop, &op->done);
    op->done.data = op;
    uv_timer_start(&op->done, on_sent, 0, 0);
    return 0;
}

static int web_send(fb_adapter_t *a, const fb_outbound_t *msg, fb_send_cb cb, void *arg)
{
    struct web *w = *(struct web **)fb_adapter_priv(a);
    if (!cb || !msg || !fb_web_token_valid(msg->conv) || !msg->txn_id || !*msg->txn_id ||
        strlen(msg->txn_id) > 200)
        return FB_EINVAL;
    const json_t *stored = msg->entry ? json_object_get(msg->entry, "hist") : NULL;
    if (json_is_string(stored))
        return send_stored(w, msg, stored, cb, arg);
    json_t *entry = json_pack("{s:s, s:s}", "from", "bot", "text", msg->text ? msg->text : "");
    if (!entry)
        return FB_EINVAL;
    if (msg->html && *msg->html)
        json_object_set_new(entry, "html", json_string(msg->html));
    if (json_is_array(msg->choices) && json_array_size(msg->choices) > 0)
        json_object_set_new(entry, "choices", json_deep_copy(msg->choices));
    json_object_set_new(entry, "ts", json_integer((json_int_t)fb_wall_ms()));
    char *tail = fb_web_entry_tail(entry);
    json_decref(entry);
    if (!tail)
        return FB_EINVAL;
    struct op *op = op_new(w, OP_APPEND_BOT, NULL, NULL);
    op->send_cb = cb;
    op->send_arg = arg;
    op->tail = tail;
    memcpy(op->token, msg->conv, FB_WEB_TOKEN_LEN + 1);
    fb_web_token_tag(msg->conv, op->tag);
    char *dkey = fb_asprintf("b:%s", msg->txn_id);
    char *conv_key = fb_asprintf("web:%s", msg->conv);
    char *keys[4];
    for (int i = 0; i < 4; i++)
        keys[i] = w->core->conv_key(w->core, conv_key, key_suffix[i]);
    const char *args[] = {dkey, tail, w->max_hist, w->ttl_ms};
    int rc = run_script(op, &w->s_append, on_bot_appended, 4, (const char *const *)keys, 4, args);
    for (int i = 0; i < 4; i++)
        fb_free(keys[i]);
    fb_free(conv_key);
    fb_free(dkey);
    if (rc) {
        op->send_cb = NULL;
        op_free(op);
        return rc == FB_ECLOSING ? FB_ECANCELED : FB_EAGAIN;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Life cycle */

static int web_init(fb_adapter_t *a)
{
    struct web **pw = fb_adapter_priv(a);
    if (!fb_config_section(a->core->cfg, "web"))
        return FB_DECLINED;
    struct web *w = fb_calloc(1, sizeof(*w));
    w->a = a;
    w->core = a->core;
    w->opts = fb_config_section(a->core->cfg, "web");
    w->redis = a->core->redis;
    w->refs = 1;
    fb_redis_script_init(&w->s_append, append_script);
    fb_redis_script_init(&w->s_create, create_script);
    fb_redis_script_init(&w->s_hello, hello_script);
    fb_redis_script_init(&w->s_started, started_script);
    fb_redis_script_init(&w->s_catchup, catchup_script);
    unsigned long long ttl = (unsigned long long)a->core->cfg->store.session_ttl_days * 86400000ull;
    snprintf(w->ttl_ms, sizeof(w->ttl_ms), "%llu", ttl);
#ifdef FB_TEST_HOOKS
    /* Test builds only: integration tests hold the push of the replies a COMMIT stored, to kill
     * the daemon between the COMMIT and the push. */
    const char *hold = getenv("FB_TEST_WEB_PUSH_HOLD_MS");
    w->hold_ms = hold ? strtoull(hold, NULL, 10) : 0;
#endif
    snprintf(w->max_hist, sizeof(w->max_hist), "%u",
             w->opts->history_max ? w->opts->history_max : 1);
    w->commit_lua = fb_asprintf(commit_fmt, w->opts->history_max ? w->opts->history_max : 1);
    w->ws_limit = w->opts->max_message_bytes * WS_ESCAPE_FACTOR + WS_FRAME_OVERHEAD;
    *pw = w;
    return 0;
}

static int web_start(fb_adapter_t *a)
{
    struct web *w = *(struct web **)fb_adapter_priv(a);
    const fb_core_t *core = w->core;
    if (!w->opts->enabled) {
        core->set_state(a, "disabled");
        return 0;
    }
    int rc = fb_http_server_route(core->http, "/", FB_HTTP_GET, "web_page", on_index, w);
    if (!rc)
        rc = fb_http_server_static(core->http, "/static/", w->opts->static_dir, 300, "web_static");
    /* The build's content-hashed files (cmake/FbWebAssets.cmake): a new content is a new name. */
    char *assets = fb_asprintf("%s/assets", w->opts->static_dir);
    if (!rc)
        rc = fb_http_server_static(core->http, "/assets/", assets, FB_HTTP_CACHE_IMMUTABLE,
                                   "web_assets");
    fb_free(assets);
    if (!rc)
        rc = fb_http_server_static(core->http, "/dsfr/", w->opts->dsfr_dir, 86400, "web_dsfr");
    if (!rc)
        rc = fb_http_server_websocket(core->http, "/ws", "web_ws", &ws_ops, w->ws_limit, w);
    if (rc) {
        FB_ERR(WEB, "cannot register the web chat's routes: %s", fb_strerror(rc));
        return rc;
    }
    uv_timer_init(core->loop, &w->sweep);
    w->sweep.data = w;
    w->timer_init = true;
    w->refs++; /* the timer's */
    uv_timer_start(&w->sweep, on_sweep, SWEEP_INTERVAL_MS, SWEEP_INTERVAL_MS);
    w->started = true;
    FB_INFO(WEB, "web chat on / and /ws (page from %s)", w->opts->static_dir);
    core->set_state(a, "ok");
    return 0;
}

static void maybe_stop_done(struct web *w)
{
    if (!w->stop_done || w->ops > 0 || (w->timer_init && !w->timer_closed))
        return;
    void (*done)(fb_adapter_t * a) = w->stop_done;
    w->stop_done = NULL;
    done(w->a);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct web *w = h->data;
    w->timer_closed = true;
    maybe_stop_done(w);
    web_unref(w);
}

static void web_stop(fb_adapter_t *a, void (*done)(fb_adapter_t *a))
{
    struct web *w = *(struct web **)fb_adapter_priv(a);
    w->stopping = true;
    w->stop_done = done;
    if (w->timer_init && !uv_is_closing((uv_handle_t *)&w->sweep)) {
        uv_timer_stop(&w->sweep);
        uv_close((uv_handle_t *)&w->sweep, on_timer_closed);
        return;
    }
    maybe_stop_done(w);
}

static void web_destroy(fb_adapter_t *a)
{
    struct web **pw = fb_adapter_priv(a);
    struct web *w = *pw;
    if (!w)
        return;
    *pw = NULL;
    w->a = NULL;
    w->stop_done = NULL;
    w->stopping = true;
    if (w->timer_init && !uv_is_closing((uv_handle_t *)&w->sweep))
        uv_close((uv_handle_t *)&w->sweep, on_timer_closed);
    web_unref(w);
}

/* The catch-up's answer: the sockets that asked get every entry after the seq they had then, even
 * one pushed to them since (the page ignores a seq it has): an entry pushed while the catch-up
 * was on its way (an advisor's relay sent by the outbox) may follow the ones it brings back. */
static void on_catchup(fb_redis_t *r, int status, redisReply *reply, void *arg)
{
    struct op *op = arg;
    (void)r;
    status = redis_status(status, reply, "history catch-up");
    if (status == 0 && reply->type != REDIS_REPLY_ARRAY)
        status = FB_EPROTO;
    if (status)
        FB_INFO(WEB,
                "[web|%s] entries not pushed here were not read again (%s): the page gets "
                "them with the next entry pushed here or at its next connection",
                op->tag, fb_err_name(status));
    struct conv *cv = op->cv;
    uint64_t last = 0;
    for (size_t i = 0; status == 0 && i < reply->elements; i++) {
        const redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_STRING)
            continue;
        uint64_t seq;
        char *frame = fb_web_entry_frame(e->str, e->len, &seq);
        if (!frame)
            continue;
        if (seq > cv->last_seq)
            cv->last_seq = seq;
        last = seq > last ? seq : last;
        for (struct client *c = cv->clients; c; c = c->next_in_conv) {
            if (c->catchups == 0 || c->st != C_READY || !c->ws || seq <= c->catchup_from)
                continue;
            client_send_raw(c, frame, strlen(frame));
            if (seq > c->sent_seq)
                c->sent_seq = seq;
        }
        fb_free(frame);
    }
    for (struct client *c = cv->clients; c; c = c->next_in_conv) {
        if (c->catchups == 0)
            continue;
        c->catchups--;
        if (last > c->catchup_from)
            c->catchup_from = last;
    }
    op_free(op);
}

/* A duplicate event or a COMMIT without an answer (web_committed() without output), or a gap in
 * the seqs pushed here (conv_push_stored()): the entries a COMMIT stored may never have been
 * pushed, and are read from the history again for the open sockets. Rare (a resend after a lost
 * answer, a page's resend after a reconnection, another daemon's entry), and only with a socket
 * open here. */
static void conv_catch_up(struct web *w, struct conv *cv)
{
    uint64_t from = UINT64_MAX;
    for (struct client *c = cv->clients; c; c = c->next_in_conv)
        if (c->st == C_READY && c->ws && c->sent_seq < from)
            from = c->sent_seq;
    if (from == UINT64_MAX)
        return;
    struct op *op = op_new(w, OP_CATCHUP, NULL, cv);
    char since[24];
    snprintf(since, sizeof(since), "%llu", (unsigned long long)from);
    const char *keys[] = {cv->keys[K_HIST]};
    const char *args[] = {since, w->max_hist};
    if (run_script(op, &w->s_catchup, on_catchup, 1, keys, 2, args)) {
        op_free(op);
        return;
    }
    for (struct client *c = cv->clients; c; c = c->next_in_conv)
        if (c->st == C_READY && c->ws && c->catchups++ == 0)
            c->catchup_from = c->sent_seq;
}

static void on_held(uv_timer_t *t)
{
    struct op *op = t->data;
    for (size_t i = 0; web_alive(op->w) && i < json_array_size(op->later); i++) {
        const json_t *e = json_array_get(op->later, i);
        conv_push_stored(op->cv, json_string_value(e), json_string_length(e));
    }
    uv_close((uv_handle_t *)&op->done, on_sent_closed);
}

/* The entries a COMMIT stored (commit_fmt's AO: the user's message first when it came with the
 * event), to the open tabs: the user's now (before the ack), the bot's replies after the ack
 * (on_delivered) for the user's own events, now for the others (the greeting, a reminder). */
static void web_committed(fb_adapter_t *a, const char *conv, const char *out, size_t len, void *arg)
{
    struct web *w = *(struct web **)fb_adapter_priv(a);
    struct op *op = arg;
    struct conv *cv = w && web_alive(w) ? conv_find(w, conv) : NULL;
    if (!cv || !cv->clients)
        return;
    if (!out) { /* a duplicate */
        conv_catch_up(w, cv);
        return;
    }
    /* AO: the entries, one a line */
    const char *p = out, *end = out + len;
    if (op && op->tail && p < end) { /* a message: the user's entry first */
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        conv_push_stored(cv, p, n);
        p = nl ? nl + 1 : end;
    }
    struct op *h = NULL;
    if (w->hold_ms && p < end) { /* test builds: FB_TEST_WEB_PUSH_HOLD_MS */
        h = op_new(w, OP_HELD, NULL, cv);
        h->later = json_array();
    }
    bool after_ack = !h && op && op->kind == OP_DELIVER && op->in_kind != FB_IN_START;
    if (after_ack) {
        json_decref(op->later);
        op->later = json_array();
    }
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (h || after_ack) /* Redis's answer: the bytes our fragment wrote, not checked again */
            json_array_append_new(h ? h->later : op->later, json_stringn_nocheck(p, n));
        else
            conv_push_stored(cv, p, n);
        p = nl ? nl + 1 : end;
    }
    if (h) {
        uv_timer_init(w->core->loop, &h->done);
        h->done.data = h;
        uv_timer_start(&h->done, on_held, w->hold_ms, 0);
    }
}

static const char *web_commit_lua(fb_adapter_t *a)
{
    struct web *w = *(struct web **)fb_adapter_priv(a);
    return w ? w->commit_lua : NULL;
}

static int web_stats(fb_adapter_t *a, json_t *out)
{
    struct web *w = *(struct web **)fb_adapter_priv(a);
    json_object_set_new(out, "connections", json_integer((json_int_t)w->nclients));
    json_object_set_new(out, "conversations_online", json_integer((json_int_t)w->online));
    return 0;
}

int fb_web_log_sub = FB_SUB_CORE;

const fb_adapter_ops_t fb_adapter_web = {
    .api_version = FB_ADAPTER_API_VERSION,
    .name = "web",
    .priv_size = sizeof(struct web *),
    .caps = FB_ADAPTER_CAP_BUTTONS | FB_ADAPTER_CAP_HTML | FB_ADAPTER_CAP_TXN_DEDUPE |
            FB_ADAPTER_CAP_PRESENT_ONLY | FB_ADAPTER_CAP_HISTORY_DELIVERS,
    .init = web_init,
    .start = web_start,
    .stop = web_stop,
    .destroy = web_destroy,
    .send = web_send,
    .stats = web_stats,
    .conv_keys = own_keys,
    .config = &fb_web_config,
    .log_sub = &fb_web_log_sub,
    .commit_lua = web_commit_lua,
    .committed = web_committed,
};
