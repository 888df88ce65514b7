/* SPDX-License-Identifier: MIT */
/*
 * escalation.h - tickets handed to human advisors: routing to the advisors' room of the user's
 * territory, the thread root, the relay both ways, the thread commands, the watchdog.
 *
 * The module lives beside the router: the router asks it for the extra operations of a COMMIT
 * (announce a new ticket, relay the user's message, close a handed-back ticket), hands it the
 * inbound events of the advisors' rooms instead of running the engine on them, and lets it
 * request HANDBACK events. Everything durable is in Redis (docs/internals/ESCALATION.md).
 */
#ifndef FB_ESCALATION_H
#define FB_ESCALATION_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "core/store.h"
#include "engine/geo.h"
#include "frichebot/adapter.h"
#include "frichebot/buf.h"
#include "io/config.h"

typedef struct fb_esc_s fb_esc_t;

/** What the module asks of the router. */
typedef struct fb_esc_hooks_s {
    void *arg;
    /** The outbox of conversation `key` ("adapter:conv") has new entries. */
    void (*kick)(void *arg, const char *key);
    /** Queues a HANDBACK event for `key` with dedupe id `event_id` (fb_router_handback()). */
    int (*handback)(void *arg, const char *key, const char *event_id, fb_inbound_cb cb, void *cba);
    /** A Redis operation ended while stopping (the router checks whether it can finish). */
    void (*idle)(void *arg);
} fb_esc_hooks_t;

/**
 * Reads cfg->escalation. Returns 0 with *out NULL when escalation is disabled, 0 with a new
 * module, or FB_EINVAL with one line per problem appended to `errors`.
 */
int fb_esc_create(uv_loop_t *loop, const fb_config_t *cfg, fb_store_t *store, const fb_geo_t *geo,
                  const fb_esc_hooks_t *hooks, fb_esc_t **out, fb_buf_t *errors);

/** Starts the watchdog timer. */
void fb_esc_start(fb_esc_t *e);

/** Test knobs: replaces the clock of the watchdog and of the advisors' commands (Unix ms, 0: the
 *  wall clock); runs one watchdog pass now. */
void fb__esc_set_clock(fb_esc_t *e, int64_t clock_ms);
void fb__esc_watch(fb_esc_t *e);

/** Stops the watchdog; `done(arg)` once its handle is closed (maybe later). */
void fb_esc_stop(fb_esc_t *e, void (*done)(void *arg), void *arg);

/** Frees the module (after fb_esc_stop()'s done, or when never started). NULL is fine. */
void fb_esc_destroy(fb_esc_t *e);

/** Redis operations in flight (the router waits for them when it stops). */
size_t fb_esc_inflight(const fb_esc_t *e);

/** True when conversation `conv` of adapter `adapter` is an advisors' room or one of its threads.
 */
bool fb_esc_owns(const fb_esc_t *e, const char *adapter, const char *conv);

/**
 * Handles an inbound event of an advisors' room (fb_esc_owns()): a thread message is relayed to
 * the user or runs a command; anything else is acknowledged and ignored. Same contract as the
 * core's deliver(): 0 and `cb` exactly once later, or an error and `cb` never called.
 */
int fb_esc_inbound(fb_esc_t *e, const char *adapter, const fb_inbound_t *ev, fb_inbound_cb cb,
                   void *arg);

/**
 * The advisors' channel as the adapter that hosts it reaches it: fb_core_t.thread_root and
 * fb_core_t.sent (include/frichebot/adapter.h). They touch only the keys the entry names, through
 * core->store, so they work whether escalation is enabled or not (entries queued before it was
 * disabled are still delivered).
 */
int fb_esc_thread_root(const fb_core_t *core, const json_t *entry, fb_thread_root_cb cb, void *arg);
int fb_esc_sent(const fb_core_t *core, const json_t *entry, const char *where, const char *msg_id,
                fb_sent_cb cb, void *arg);

/** The name of the adapter that hosts the advisors' channel (the first of the adapter table
 *  with FB_ADAPTER_CAP_ADVISORS), or NULL when none is built in. */
const char *fb_esc_advisors_adapter(void);

/** What the router knows of the event being committed. */
typedef struct fb_esc_step_s {
    const char *key;       /* the user's conversation key */
    const json_t *session; /* the new session (NULL: none) */
    const json_t *effects; /* the engine's effects */
    const char *text;      /* the user's message (FB_IN_MESSAGE), or NULL */
    const char *wid;       /* the event's write id (16 hex digits) */
    bool user;             /* the user's own event (not a reminder, not a handback) */
    bool handback;         /* a HANDBACK event */
    bool forget;           /* the session is being forgotten */
    int64_t now;           /* ms */
} fb_esc_step_t;

/**
 * Adds the escalation's part of a COMMIT to `ops` (the script's JSON): "esc" for the script, and
 * the user's notice of the response time appended to "out" (*says is incremented per entry).
 */
void fb_esc_commit_ops(const fb_esc_t *e, const fb_esc_step_t *st, json_t *ops, size_t *says);

/**
 * The Lua run by the COMMIT script right after `ops`, `member` and `now` are known, before a
 * forget deletes the conversation's keys: it declares the table `kick` (conversation keys whose
 * outbox got entries) and, on a forget (ARGV[3] 'f'), withdraws what the bot posted for the
 * user's tickets: every message listed in `{c:member}:esc:sent` ("ROOM EVENT_ID", recorded by the
 * adapter after each send) gets a redaction entry in the outbox of its room, the roots leave the
 * roots index, the relays not sent yet are dropped with the thread's outbox.
 */
#define FB_ESC_COMMIT_PRE_LUA                                                                      \
    "local kick = {}\n"                                                                            \
    "local function esc_okey(prefix, conv, suffix)\n"                                              \
    "  local k = string.gsub(conv, '[{}%%%c]', function(ch)\n"                                     \
    "    return string.format('%%%02X', string.byte(ch)) end)\n"                                   \
    "  return prefix .. '{c:' .. k .. '}:' .. suffix\n"                                            \
    "end\n"                                                                                        \
    "local e = ops.esc\n"                                                                          \
    "if e and ARGV[3] == 'f' then\n"                                                               \
    "  local t = redis.call('HMGET', KEYS[5], 'room', 'adapter', 'tid')\n"                         \
    "  if t[1] and t[2] and t[3] then\n"                                                           \
    "    local th = t[2] .. ':' .. t[1] .. '/~' .. t[3]\n"                                         \
    "    redis.call('DEL', esc_okey(e.prefix, th, 'outbox'))\n"                                    \
    "    redis.call('ZREM', KEYS[7], th)\n"                                                        \
    "  end\n"                                                                                      \
    "  local sent = esc_okey(e.prefix, member, 'esc:sent')\n"                                      \
    "  for _, item in ipairs(redis.call('LRANGE', sent, 0, -1)) do\n"                              \
    "    local room, id = string.match(item, '^(%S+) (%S+)$')\n"                                   \
    "    if room and t[2] then\n"                                                                  \
    "      local conv = t[2] .. ':' .. room\n"                                                     \
    "      local r = cjson.encode({txn = 'esc-rd-' .. string.sub(redis.sha1hex(item), 1, 20),\n"   \
    "                              kind = 'redact', redacts = id, text = '', ts = now})\n"         \
    "      redis.call('RPUSH', esc_okey(e.prefix, conv, 'outbox'), r)\n"                           \
    "      redis.call('ZADD', KEYS[7], 'NX', now, conv)\n"                                         \
    "      table.insert(kick, conv)\n"                                                             \
    "      redis.call('HDEL', e.roots, id)\n"                                                      \
    "    end\n"                                                                                    \
    "  end\n"                                                                                      \
    "  redis.call('DEL', sent)\n"                                                                  \
    "  redis.call('ZREM', e.idx, member)\n"                                                        \
    "end\n"

/**
 * The Lua run by the COMMIT script once the session is written: announce a new ticket (the
 * ticket is KEYS[5], the pending index KEYS[7]), relay the user's message to the ticket's
 * thread, close a handed-back ticket. Relays go to the outbox of "ROOM/~TID" (TID: the ticket's
 * id): one queue per ticket, whose entries wait until the root's event id is known.
 */
#define FB_ESC_COMMIT_LUA                                                                          \
    "if e and e.ann then\n"                                                                        \
    "  redis.call('HSET', KEYS[5], 'room', e.ann[3], 'territory', e.ann[4], 'adapter', "           \
    "e.ann[5], 'tid', e.ann[6])\n"                                                                 \
    "  local conv = e.ann[5] .. ':' .. e.ann[3]\n"                                                 \
    "  redis.call('RPUSH', esc_okey(e.prefix, conv, 'outbox'), e.ann[1])\n"                        \
    "  redis.call('ZADD', KEYS[7], 'NX', now, conv)\n"                                             \
    "  redis.call('ZADD', e.idx, now + e.wd, member)\n"                                            \
    "  table.insert(kick, conv)\n"                                                                 \
    "elseif e and e.relay then\n"                                                                  \
    "  local t = redis.call('HMGET', KEYS[5], 'state', 'room', 'tid', 'adapter')\n"                \
    "  if (t[1] == 'waiting' or t[1] == 'claimed') and t[2] and t[3] then\n"                       \
    "    local conv = t[4] .. ':' .. t[2] .. '/~' .. t[3]\n"                                       \
    "    redis.call('RPUSH', esc_okey(e.prefix, conv, 'outbox'), e.relay)\n"                       \
    "    redis.call('ZADD', KEYS[7], 'NX', now, conv)\n"                                           \
    "    table.insert(kick, conv)\n"                                                               \
    "  end\n"                                                                                      \
    "elseif e and e.done then\n"                                                                   \
    "  if redis.call('HGET', KEYS[5], 'state') == 'handing' then\n"                                \
    "    redis.call('HSET', KEYS[5], 'state', 'closed', 'closed_at', now)\n"                       \
    "  end\n"                                                                                      \
    "  redis.call('ZREM', e.idx, member)\n"                                                        \
    "end\n"

#endif /* FB_ESCALATION_H */
