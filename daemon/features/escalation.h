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

#include "core/feature.h"
#include "core/keys.h"
#include "core/store.h"
#include "engine/geo.h"
#include "frichebot/adapter.h"
#include "frichebot/buf.h"
#include "io/config.h"

typedef struct fb_esc_s fb_esc_t;

/** What the module asks of the router (core/feature.h). */
typedef fb_feature_host_t fb_esc_hooks_t;

/** Checks escalation.rooms and escalation.response_times as fb_esc_create() would, for
 *  `serve --check-config`: 0, or FB_EINVAL with the errors appended. Nothing when disabled. */
int fb_esc_check_config(const fb_config_t *cfg, fb_buf_t *errors);

/**
 * Reads cfg->escalation. Returns 0 with *out NULL when escalation is disabled, 0 with a new
 * module, or FB_EINVAL with one line per problem appended to `errors`.
 */
int fb_esc_create(uv_loop_t *loop, const fb_config_t *cfg, fb_store_t *store, const fb_geo_t *geo,
                  fb_esc_t **out, fb_buf_t *errors);

/** What the module may ask of the router (copied): its kick, handback and idle hooks. Done by
 *  fb_router_add_feature() through fb_esc_feature.attach; tests call it directly. */
void fb_esc_attach(fb_esc_t *e, const fb_feature_host_t *host);

/**
 * The module as a feature of the router (core/feature.h), registered by the daemon with the
 * fb_esc_t as `self` (the router then owns it: fb_esc_destroy() at fb_router_destroy()).
 */
extern const fb_feature_ops_t fb_esc_feature;
/** Registered instead of fb_esc_feature when escalation is disabled (self NULL): only the
 *  adapters' thread_root and sent, so that entries queued while it was enabled still deliver. */
extern const fb_feature_ops_t fb_esc_delivery_feature;

/** Starts the watchdog timer. */
void fb_esc_start(fb_esc_t *e);

/** Test knobs: replaces the clock of the watchdog and of the advisors' commands (Unix ms, 0: the
 *  wall clock); runs one watchdog pass now. */
void fb__esc_set_clock(fb_esc_t *e, int64_t clock_ms);
void fb__esc_watch(fb_esc_t *e);
/** Test knob: `fn(arg)` runs between the two steps of fb_esc_sent() for a root (the ticket's, then
 *  the roots index's), where a forget may come; NULL: none. */
void fb__esc_set_record_hook(void (*fn)(void *arg), void *arg);

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

/**
 * fb_engine_env_t.has_advisor for the daemon: true when the rooms cover commune `insee`'s
 * territory (its département's line, its région's, or `*`: the lookup of the escalation itself);
 * without a commune (NULL or unknown), only `*`. `self` is the fb_esc_t, NULL when escalation is
 * disabled: then false for everyone (issue #19: never promise an advisor nobody is).
 */
bool fb_esc_has_advisor(const void *self, const char *insee);

/** What the router knows of the event being committed. */
typedef fb_feature_step_t fb_esc_step_t;

/**
 * Adds the escalation's part of a COMMIT to `ops` (the script's JSON): "esc" for the script, and
 * the user's notice of the response time appended to "out" (*says is incremented per entry).
 */
void fb_esc_commit_ops(const fb_esc_t *e, const fb_esc_step_t *st, json_t *ops, size_t *says);

/**
 * The escalation's first part of the router's COMMIT (fb_esc_feature's lua_pre, core/feature.h),
 * run before a forget deletes the conversation's keys: on a forget (A.mode 'f'), it withdraws
 * what the bot posted for the user's tickets: every message listed in `{c:member}:esc:sent`
 * ("ROOM EVENT_ID", recorded by the adapter after each send) gets a redaction entry in the
 * outbox of its room, the roots leave the roots index, the relays not sent yet are dropped with
 * the thread's outbox. Reads O.esc (fb_esc_commit_ops()), K.ticket, K.pending, A.member, A.now;
 * adds to `kick`.
 */
#define FB_ESC_COMMIT_PRE_LUA                                                                      \
    "do\n"                                                                                         \
    "local e = O.esc\n"                                                                            \
    "if e and A.mode == 'f' then\n"                                                                \
    "  local t = redis.call('HMGET', K.ticket, 'room', 'adapter', 'tid')\n"                        \
    "  if t[1] and t[2] and t[3] then\n"                                                           \
    "    local th = t[2] .. ':' .. t[1] .. '/~' .. t[3]\n"                                         \
    "    redis.call('DEL', conv_key(e.prefix, th, '" FB_KEY_OUTBOX "'))\n"                         \
    "    redis.call('ZREM', K.pending, th)\n"                                                      \
    "  end\n"                                                                                      \
    "  local sent = conv_key(e.prefix, A.member, '" FB_KEY_ESC_SENT "')\n"                         \
    "  for _, item in ipairs(redis.call('LRANGE', sent, 0, -1)) do\n"                              \
    "    local room, id = string.match(item, '^(%S+) (%S+)$')\n"                                   \
    "    if room and t[2] then\n"                                                                  \
    "      local conv = t[2] .. ':' .. room\n"                                                     \
    "      local r = cjson.encode({txn = 'esc-rd-' .. string.sub(redis.sha1hex(item), 1, 20),\n"   \
    "                              kind = 'redact', redacts = id, text = '', ts = A.now})\n"       \
    "      redis.call('RPUSH', conv_key(e.prefix, conv, '" FB_KEY_OUTBOX "'), r)\n"                \
    "      redis.call('ZADD', K.pending, 'NX', A.now, conv)\n"                                     \
    "      table.insert(kick, conv)\n"                                                             \
    "      redis.call('HDEL', e.roots, id)\n"                                                      \
    "    end\n"                                                                                    \
    "  end\n"                                                                                      \
    "  redis.call('DEL', sent)\n"                                                                  \
    "  redis.call('ZREM', e.idx, A.member)\n"                                                      \
    "end\n"                                                                                        \
    "end\n"

/**
 * The escalation's second part of the COMMIT (fb_esc_feature's lua_post), once the session is
 * written: announce a new ticket (K.ticket), relay the user's message to the ticket's thread,
 * close a handed-back ticket. Relays go to the outbox of "ROOM/~TID" (TID: the ticket's id): one
 * queue per ticket, whose entries wait until the root's event id is known. Adds to `kick`.
 */
#define FB_ESC_COMMIT_LUA                                                                          \
    "do\n"                                                                                         \
    "local e = O.esc\n"                                                                            \
    "if e and e.ann then\n"                                                                        \
    "  redis.call('HSET', K.ticket, 'room', e.ann[3], 'territory', e.ann[4], 'adapter', "          \
    "e.ann[5], 'tid', e.ann[6])\n"                                                                 \
    "  local conv = e.ann[5] .. ':' .. e.ann[3]\n"                                                 \
    "  redis.call('RPUSH', conv_key(e.prefix, conv, '" FB_KEY_OUTBOX "'), e.ann[1])\n"             \
    "  redis.call('ZADD', K.pending, 'NX', A.now, conv)\n"                                         \
    "  redis.call('ZADD', e.idx, A.now + e.wd, A.member)\n"                                        \
    "  table.insert(kick, conv)\n"                                                                 \
    "elseif e and e.relay then\n"                                                                  \
    "  local t = redis.call('HMGET', K.ticket, 'state', 'room', 'tid', 'adapter')\n"               \
    "  if (t[1] == 'waiting' or t[1] == 'claimed') and t[2] and t[3] then\n"                       \
    "    local conv = t[4] .. ':' .. t[2] .. '/~' .. t[3]\n"                                       \
    "    redis.call('RPUSH', conv_key(e.prefix, conv, '" FB_KEY_OUTBOX "'), e.relay)\n"            \
    "    redis.call('ZADD', K.pending, 'NX', A.now, conv)\n"                                       \
    "    table.insert(kick, conv)\n"                                                               \
    "  end\n"                                                                                      \
    "elseif e and e.resumed then\n"                                                                \
    "  local t = redis.call('HMGET', K.ticket, 'state', 'room', 'tid', 'adapter')\n"               \
    "  if (t[1] == 'waiting' or t[1] == 'claimed') then\n"                                         \
    "    if t[2] and t[3] then\n"                                                                  \
    "      local conv = t[4] .. ':' .. t[2] .. '/~' .. t[3]\n"                                     \
    "      redis.call('RPUSH', conv_key(e.prefix, conv, '" FB_KEY_OUTBOX "'), e.resumed)\n"        \
    "      redis.call('ZADD', K.pending, 'NX', A.now, conv)\n"                                     \
    "      table.insert(kick, conv)\n"                                                             \
    "    end\n"                                                                                    \
    "    redis.call('HSET', K.ticket, 'state', 'closed', 'closed_at', A.now, 'closed_by', "        \
    "'usager')\n"                                                                                  \
    "  end\n"                                                                                      \
    "  redis.call('ZREM', e.idx, A.member)\n"                                                      \
    "elseif e and e.done then\n"                                                                   \
    "  if redis.call('HGET', K.ticket, 'state') == 'handing' then\n"                               \
    "    redis.call('HSET', K.ticket, 'state', 'closed', 'closed_at', A.now)\n"                    \
    "  end\n"                                                                                      \
    "  redis.call('ZREM', e.idx, A.member)\n"                                                      \
    "end\n"                                                                                        \
    "end\n"

#endif /* FB_ESCALATION_H */
