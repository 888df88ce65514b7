/* SPDX-License-Identifier: MIT */
/*
 * feature.h - how a product feature (escalation, stats...) takes part in the router's work
 * without the router knowing it: the router owns the COMMIT script, a feature contributes named
 * keys, Lua fragments and C hooks through one static ops table, registered with
 * fb_router_add_feature() before fb_router_start().
 *
 * The COMMIT (one EVALSHA per event, docs/internals/ROUTER.md) is assembled once, at the first
 * start, from the router's own Lua and each feature's fragments in registration order. Inside it
 * a fragment sees only names, never positions:
 *
 *   K       the keys by name. The router's: K.session, K.event (dedupe mark), K.outbox,
 *           K.reminders, K.ticket, K.parked, K.pending, K.due, K.stats, K.avis; plus every key
 *           the features declare (fb_feature_key_t.name; names are unique across features).
 *   A       the arguments: A.now (ms, a number), A.member (the conversation key), A.mode ('w'
 *           write, 'f' forget, 'n' leave the session), A.user (true for the user's own event).
 *   O       the decoded ops JSON: the router's members (out, rem, stats, avis, ticket, rearm) and
 *           what each feature's commit_ops() added (by convention under one member of its own).
 *   expire(k)  sets the session TTL on key k (no-op when sessions do not expire).
 *   conv_key(prefix, conv, suffix)  the key of another conversation (FB_KEYS_LUA).
 *   kick    a table: append the conversation keys whose outbox got entries; the router reads
 *           their heads after the COMMIT (they come back as the reply's extra items).
 *
 * Fragments are chunks of one script: wrap them in a `do ... end` block, declare locals with
 * `local`, and never `return`. lua_pre runs after the version check and before a forget deletes
 * the conversation's keys; lua_post runs once the session, the router's ops and the outbox are
 * written (or, on a forget, deleted: write nothing of the conversation then), before the dedupe
 * mark is set.
 *
 * Everything runs on the loop thread. Adding a feature: docs/internals/ROUTER.md, "Adding a
 * feature".
 */
#ifndef FB_FEATURE_H
#define FB_FEATURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "frichebot/adapter.h"

typedef struct fb_geo_s fb_geo_t;

/** What the router knows of the event being committed (all borrowed, valid during the call). */
typedef struct fb_feature_step_s {
    const char *key;           /* the conversation key ("adapter:conv") */
    const char *prefix;        /* the Redis key prefix */
    const json_t *old_session; /* the session read before the step (NULL: none) */
    const json_t *session;     /* the new session (NULL: none) */
    const json_t *effects;     /* the engine's effects */
    const char *text;          /* the user's message (a MESSAGE event), or NULL */
    const char *wid;           /* the event's write id (16 hex digits) */
    const fb_geo_t *geo;       /* the communes index, or NULL */
    bool user;                 /* the user's own event (not a reminder, not a hand-back) */
    bool forget_event;         /* the user's FORGET event */
    bool handback;             /* a HANDBACK event */
    bool forget;               /* the session is being forgotten (a `forget` effect) */
    int64_t now;               /* ms */
} fb_feature_step_t;

/** What a feature may ask of the router (given to attach()). */
typedef struct fb_feature_host_s {
    void *arg;
    /** The outbox of conversation `key` ("adapter:conv") has new entries. */
    void (*kick)(void *arg, const char *key);
    /** Queues a HANDBACK event for `key` with dedupe id `event_id` (fb_router_handback()). */
    int (*handback)(void *arg, const char *key, const char *event_id, fb_inbound_cb cb, void *cba);
    /** A Redis operation of the feature ended while stopping: the router checks its stop. */
    void (*idle)(void *arg);
} fb_feature_host_t;

/** Where a declared key lives. */
typedef enum fb_feature_key_kind_e {
    FB_FKEY_GLOBAL, /* "<prefix><suffix>", built once */
    FB_FKEY_CONV,   /* the conversation's key "<prefix>{c:KEY}:<suffix>" (fb_key_conv()) */
    FB_FKEY_STEP    /* built per event by make() (e.g. this month's hash) */
} fb_feature_key_kind_t;

/** One key of the COMMIT, K.<name> in the fragments. */
typedef struct fb_feature_key_s {
    const char *name; /* Lua identifier, unique across the router's and the features' keys */
    fb_feature_key_kind_t kind;
    const char *suffix; /* GLOBAL and CONV: see above; STEP: unused */
    bool forget;        /* CONV: deleted by a forget, with the session */
    /** STEP: the key for this event, a new string (fb_free). */
    char *(*make)(const fb_feature_step_t *st);
} fb_feature_key_t;

/**
 * A feature's ops table: static, borrowed by the router for its lifetime. Every member but
 * `name` is optional (NULL: nothing to do). `self` is the pointer given to
 * fb_router_add_feature().
 */
typedef struct fb_feature_ops_s {
    const char *name; /* for logs */
    const fb_feature_key_t *keys;
    size_t nkeys;
    const char *lua_pre;  /* before a forget deletes the conversation's keys */
    const char *lua_post; /* after the session, the ops and the outbox are written */

    /** Called once at registration: what the feature may ask of the router (copy it). */
    void (*attach)(void *self, const fb_feature_host_t *host);
    /**
     * Adds the feature's part of the COMMIT to `ops` (the script's O, a JSON object: borrowed,
     * modify in place). New outbox entries of the user's conversation are appended to
     * ops["out"] (a JSON array of strings) with *says incremented per entry.
     */
    void (*commit_ops)(void *self, const fb_feature_step_t *st, json_t *ops, size_t *says);
    /**
     * An inbound event from adapter `adapter`, before the router validates it: FB_DECLINED when
     * it is not the feature's (cb never called: the router goes on), else the core's deliver()
     * contract (0 and cb exactly once later, or an error and cb never called).
     */
    int (*inbound)(void *self, const char *adapter, const fb_inbound_t *ev, fb_inbound_cb cb,
                   void *arg);
    /** fb_router_start(): start timers. */
    void (*start)(void *self);
    /** fb_router_stop(): stop timers; done(arg) once closed (maybe later, never inside). */
    void (*stop)(void *self, void (*done)(void *arg), void *arg);
    /** Redis operations in flight (the router's stop waits until 0). */
    size_t (*inflight)(const void *self);
    /** fb_router_destroy(): frees `self`. */
    void (*destroy)(void *self);
    /**
     * Optional, the adapters' core->thread_root() (include/frichebot/adapter.h) for the outbox
     * entries the feature wrote: FB_DECLINED when `entry` is not the feature's (cb never
     * called: the router asks the next feature), else that method's contract.
     */
    int (*thread_root)(void *self, const fb_core_t *core, const json_t *entry, fb_thread_root_cb cb,
                       void *arg);
    /** Optional, the adapters' core->sent(), same rule as thread_root. */
    int (*sent)(void *self, const fb_core_t *core, const json_t *entry, const char *where,
                const char *msg_id, fb_sent_cb cb, void *arg);
} fb_feature_ops_t;

#endif /* FB_FEATURE_H */
