/* SPDX-License-Identifier: MIT */
/*
 * router.c - inbound events -> engine -> one atomic Redis script; the outbox; the adapters.
 *
 * In memory the router keeps one `struct conv` per conversation that has work in progress: its
 * FIFO of inbound events (one runs at a time) and its outbox state machine (one entry in flight
 * at a time). A conversation with nothing to do is freed; Redis holds everything durable.
 *
 * Inbound: deliver() validates and queues; the head job runs READ (dedupe mark + session, one
 * read-only script), the engine, then COMMIT (one script: version check, session, dedupe mark,
 * outbox entries, pending index, reminders, ticket, counters). A conflict reruns from READ.
 * Jobs are started from a zero-delay timer, never inside deliver(), so an adapter's callback is
 * never called inside its own deliver() call.
 *
 * Outbox: READ HEAD (removes the conversation from the pending index when its outbox is empty),
 * send() through the adapter, then POP (only if the head is still that entry) or PARK, and
 * again; transient failures wait on the conversation's timer. Scripts and key layout:
 * docs/internals/ROUTER.md.
 */
#include "core/router.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "common/digest.h"
#include "common/json.h"
#include "common/utf8.h"
#include "core/adapters.h"
#include "core/feature.h"
#include "core/keys.h"
#include "engine/effects.h"
#include "engine/engine.h"
#include "frichebot/alloc.h"
#include "frichebot/clock.h"
#include "frichebot/err.h"
#include "frichebot/hash.h"
#include "frichebot/log.h"
#include "io/metrics.h"

#define CONV_BUCKETS        4096
#define MAX_ADAPTERS        16
#define MAX_VERSIONS        16    /* older dialog versions kept for pinned sessions */
#define MAX_RERUNS          8     /* version conflicts before an event fails with FB_EAGAIN */
#define MAX_EVENT_ID        256   /* bytes */
#define MAX_CHOICE          256   /* bytes */
#define MAX_TEXT            65536 /* bytes of an inbound message */
#define TICK_MS             1000  /* reconnection check */
#define SCAN_EVERY_TICKS    60    /* periodic scan of the pending index */
#define SCAN_BATCH          1000  /* conversations taken from the pending index per scan */
#define REDIS_RETRY_MS      1000  /* an outbox Redis operation that failed is retried after this */
#define SENDQ_SCAN_FACTOR   16   /* the scan kicks no outbox while max_sending * this wait a slot */
#define AVIS_COMMENTS_MAX   1000 /* comments kept in the global list (in commit_src) */
#define DEDUPE_MS_PER_H     3600000ULL
#define MAX_ADAPTER_KEYS    8                 /* fb_adapter_ops_t.conv_keys deleted on forget */
#define MAX_FEATURES        8                 /* fb_router_add_feature() */
#define MAX_FEATURE_KEYS    24                /* the features' keys, all together */
#define ENTRY_MAX           ((size_t)1 << 24) /* an outbox entry's or the ops' JSON, bytes */
#define ROADMAP_TOKEN_BYTES 24 /* the roadmap page's token: 192 random bits, 48 hex digits */
#define ROADMAP_TOKEN_LEN   ((size_t)2 * ROADMAP_TOKEN_BYTES) /* its hex digits */
#define ROADMAP_PATH        "/feuille-de-route/"
#define MAX_COMMIT_KEYS     (N_CORE_KEYS + MAX_FEATURE_KEYS + MAX_ADAPTER_KEYS)
#define COMMIT_ARGS         13 /* the COMMIT's fixed ARGV (commit_head_src); the entries follow */

/* ---- the scripts ------------------------------------------------------------------------- */

/* READ is not a script (issue 17: a script's fixed cost in Redis was four times its commands'):
 * plain commands sent one behind the other, one round trip (job_start(), struct read). */

/* SINCE, once at start (off the message path). KEYS: FB_KEY_MARKS_SINCE, the stats hash; ARGV:
 * now ms. Since when this Redis has its dedupe marks in zsets: kept from the first start of a
 * daemon that writes them; "0" when no daemon had served here before it (no stats: a new
 * Redis), so that no older daemon's string mark can exist. READ looks for those only during the
 * retention after this time (docs/internals/REDIS.md, "Dedupe marks"). Two global keys: one
 * slot each on a Cluster, where both move under one tag with the other globals (the plan). */
static const char since_src[] = "#!lua\n"
                                "local s = redis.call('GET', KEYS[1])\n"
                                "if s then return s end\n"
                                "s = redis.call('EXISTS', KEYS[2]) == 1 and ARGV[1] or '0'\n"
                                "redis.call('SET', KEYS[1], s)\n"
                                "return s\n";

/*
 * COMMIT, assembled at the first start (build_commit()): commit_head_src, the `K` table of the
 * keys by name (the router's, then each feature's: core/feature.h), the features' lua_pre,
 * commit_body_src, their lua_post, commit_tail_src. KEYS: the router's N_CORE_KEYS (core_keys[]
 * order), the features' keys, then the adapter's own per-conversation keys
 * (fb_adapter_ops_t.conv_keys), deleted on forget. ARGV: 1 expected version, 2 session data, 3
 * mode (w: write, f: forget, n: leave), 4 write id, 5 session TTL ms (0: none), 6 dedupe
 * retention ms, 7 now ms, 8 conversation key, 9 the ops as JSON {rem, ticket, stats, avis, and
 * the features' members}, 10 "1" for the user's own events (not a reminder), 11 the event id
 * (its dedupe mark in the zset K.event, member = id, score = now ms), 12 the adapter's data for
 * its fragment (fb_inbound_t.commit_arg, `A.arg`; "" when none), 13 the number n of the event's
 * outbox entries, 14...13+n those entries (ops "out" on the C side: the effects' says, the
 * features' entries), each its own argument, raw: the script sets `O.out` to them (issue 17: as a
 * string inside ARGV 9 they were escaped a second time by the dump and decoded again by cjson);
 * then, for an adapter whose history is its delivery (FB_ADAPTER_CAP_HISTORY_DELIVERS), each
 * entry's history form (history_form(): "" when it has none), which the script sets `O.hist` to,
 * so that the adapter's fragment writes its history entries without decoding and encoding each
 * reply with cjson in Redis (issue 17, point 2). With ARGV 10, the session
 * records
 * the time in `a` (the armed reminders are left as they are: the push-back is lazy, held()).
 * `O.rearm` (a reminder held because the user wrote since it was armed): that reminder is armed
 * again at `a` + its delay ("<id>#a" in the reminders hash), or later (GT).
 * Returns {2, 0} for a duplicate, {3, 0} when the adapter's
 * fragment refused the event (its conversation is gone: nothing written), {0, version found} on a
 * conflict, {1, new version, the outbox's head when this event added entries (else nil; 0 when
 * the ops said `nh`: the outbox is busy in this daemon), the
 * adapter's fragment's `AO` (else nil), conversations whose outbox got entries (`kick`)...} when
 * written: the router hands `AO` to the adapter's committed(), then the head to its send() at
 * once, without reading it again (issue 17: round trips per message). An adapter whose history
 * is its delivery (FB_ADAPTER_CAP_HISTORY_DELIVERS) sets `AD` when its fragment stored all the
 * entries there: none goes into the outbox, and the head is nil.
 */
static const char commit_head_src[] =
    "#!lua\n"
    "local keep = tonumber(ARGV[6])\n"
    /* ARGV 1: the version READ saw, then ':' and the session's birth (`b`) it saw, if any */
    "local ev, eb = string.match(ARGV[1], '^(%d+):?(.*)$')\n"
    "ev = tonumber(ev)\n"
    "local cur = redis.call('HMGET', KEYS[1], '" FB_SESSION_VERSION "', '" FB_SESSION_TTL_SET
    "', '" FB_SESSION_MARKS "', '" FB_SESSION_REMINDERS "', '" FB_SESSION_WRITE_ID
    "', '" FB_SESSION_BIRTH "')\n"
    /* Handled already? A COMMIT that writes a session it read (ARGV 1 > 0) needs no look at the
     * dedupe mark: this event's own write is the session's last one when a resend of it finds
     * its first attempt landed (the write id is the event's), and any later write changed the
     * version, so the conflict's rerun meets the mark at READ (issue 17: one command less). A
     * forget, a COMMIT that leaves the session, or one that creates it (version 0, which a
     * forget or an expiry gives again) look at the mark. */
    "if ARGV[3] == 'w' and ev > 0 then\n"
    "  if cur[5] == ARGV[4] then return {2, 0} end\n"
    "else\n"
    "  local seen = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[11]))\n"
    "  if seen and seen > tonumber(ARGV[7]) - keep then return {2, 0} end\n"
    "end\n"
    "local v = tonumber(cur[1]) or 0\n"
    /* The version and the session's birth: a session forgotten (or expired) and made again
     * starts its versions from 1 again, under another birth (the write id of the COMMIT that
     * made it), so a COMMIT that read the older one conflicts even at the same version. */
    "if v ~= ev or (cur[6] or '') ~= eb then return {0, v} end\n"
    "local ttl_set = tonumber(cur[2])\n"
    /* The marks' upkeep (trim, TTL) every 1/100 of the retention, by the session's `z`, and at
     * every COMMIT that does not write the session (forget, leave: rare). */
    "local marks_every = math.ceil(keep / 100)\n"
    "local marks_kept = tonumber(cur[3])\n"
    "local marks_due = ARGV[3] ~= 'w' or not marks_kept or tonumber(ARGV[7]) - marks_kept >= "
    "marks_every\n"
    /* true when this COMMIT sets the session's TTL again (below): the features' keys that live
     * as long as the session refresh theirs at the same time, not at every event. */
    "local refresh = false\n"
    "local O = cjson.decode(ARGV[9])\n"
    "local nout = tonumber(ARGV[13])\n"
    "O.out = {unpack(ARGV, 14, 13 + nout)}\n" /* COMMIT_ARGS + 1 */
    "O.hist = {unpack(ARGV, 14 + nout)}\n"
    "local ttl = tonumber(ARGV[5])\n"
    "local A = {now = tonumber(ARGV[7]), member = ARGV[8], mode = ARGV[3], user = ARGV[10] == "
    "'1', arg = ARGV[12]}\n"
    "local kick = {}\n"
    "local AO = false\n" /* the adapter's fragment's output, for its committed() */
    /* true when the adapter's fragment stored O.out where it delivers them (its history:
     * FB_ADAPTER_CAP_HISTORY_DELIVERS): no outbox entries then */
    "local AD = false\n"
    "local function expire(k) if ttl > 0 then redis.call('PEXPIRE', k, ttl) end end\n" FB_KEYS_LUA;

/* The router's keys, KEYS[1..N_CORE_KEYS] in this order (K.<name> in the script). */
enum core_key {
    CK_SESSION,
    CK_EVENT,
    CK_OUTBOX,
    CK_REMINDERS,
    CK_TICKET,
    CK_PARKED,
    CK_ROADMAP,
    CK_PENDING,
    CK_DUE,
    CK_STATS,
    CK_AVIS,
    CK_ROADMAP_IX,
    N_CORE_KEYS
};
static const char *const core_keys[N_CORE_KEYS] = {"session", "event",  "outbox",  "reminders",
                                                   "ticket",  "parked", "roadmap", "pending",
                                                   "due",     "stats",  "avis",    "roadmap_ix"};

/* The router's part, after the features' lua_pre: `forget_keys` and `first_adapter_key` are
 * filled in by build_commit() (the DEL of a forget, the position of the adapter's keys). */
static const char commit_body_fmt[] =
    "local nv = v\n"
    "local out_head = false\n"
    "local function cancel_all()\n"
    "  for _, id in ipairs(redis.call('HKEYS', K.reminders)) do\n"
    "    redis.call('ZREM', K.due, A.member .. '|' .. id)\n"
    "  end\n"
    "  redis.call('DEL', K.reminders)\n"
    "end\n"
    /* No push-back here (issue 17): a user's event leaves the reminders and the due set as they
     * are, unless its own ops schedule or cancel. The push-back is lazy: when a reminder falls
     * due, the router holds it if the user's last event (`a`) + its delay is later than its due
     * time, and the rearm below moves it there (job_run(), REMINDERS.md "Activity"). */
    "if A.mode == 'f' then\n"
    "  cancel_all()\n"
    /* the roadmap page: its lookup first (the page answers 404 from now on) */
    "  local rh = redis.call('HGET', K.roadmap, 'h')\n"
    "  if rh then redis.call('DEL', K.roadmap_ix .. rh) end\n"
    "  redis.call('DEL', K.roadmap)\n"
    "  redis.call('DEL', K.session, K.outbox, K.ticket, K.parked%s)\n"
    "  for i = %zu, #KEYS do redis.call('DEL', KEYS[i]) end\n"
    "  nv = 0\n"
    "elseif A.mode == 'w' then\n"
    "  nv = v + 1\n"
    "  local f = {'" FB_SESSION_VERSION "', string.format('%%d', nv), '" FB_SESSION_DATA
    "', ARGV[2], '" FB_SESSION_WRITE_ID "', ARGV[4]}\n"
    "  if A.user then table.insert(f, '" FB_SESSION_ACTIVITY "'); table.insert(f, ARGV[7]) end\n"
    "  if not cur[6] then table.insert(f, '" FB_SESSION_BIRTH "'); table.insert(f, ARGV[4]) end\n"
    "  if marks_due then table.insert(f, '" FB_SESSION_MARKS "'); table.insert(f, ARGV[7]) end\n"
    /* The TTL is set again only when 1/100 of it has passed since it was last set (a key expires
     * at most that much early), not at every write: one PEXPIRE per message saved (issue 17). */
    "  refresh = ttl > 0 and (not ttl_set or A.now - ttl_set >= ttl / 100)\n"
    "  if refresh then table.insert(f, '" FB_SESSION_TTL_SET "'); table.insert(f, ARGV[7]) end\n"
    "  redis.call('HSET', K.session, unpack(f))\n"
    "  if refresh then redis.call('PEXPIRE', K.session, ttl)\n"
    "  elseif ttl == 0 and ttl_set then\n"
    "    redis.call('PERSIST', K.session)\n"
    "    redis.call('HDEL', K.session, '" FB_SESSION_TTL_SET "')\n"
    "  end\n"
    /* O.roadmap {token, hash}: a message gave the roadmap page's address for the first time;
     * afterwards its keys' TTLs follow the session's, refreshed with it (not at every event) */
    "  if O.roadmap then\n"
    "    redis.call('HSET', K.roadmap, 't', O.roadmap[1], 'h', O.roadmap[2])\n"
    "    redis.call('SET', K.roadmap_ix .. O.roadmap[2], A.member)\n"
    "    expire(K.roadmap) expire(K.roadmap_ix .. O.roadmap[2])\n"
    "  elseif refresh then\n"
    "    local rh = redis.call('HGET', K.roadmap, 'h')\n"
    "    if rh then expire(K.roadmap) expire(K.roadmap_ix .. rh) end\n"
    "  end\n"
    "elseif cur[1] then\n"
    /* Mode n (a held or dropped reminder, a session that could not be written): the session's
     * data stays, but its version moves (issue 17). This COMMIT leaves the event's mark, and
     * another run of the same event that read the session before it (another daemon, a
     * reminder given back and claimed again) must conflict: its COMMIT does not read the mark
     * when it writes a session it read (commit_head_src). Moving the version also tells a
     * daemon of the previous version, which trusts `r` ("the reminders hash was empty at this
     * version"), to read the hash. */
    "  nv = redis.call('HINCRBY', K.session, '" FB_SESSION_VERSION "', 1)\n"
    "end\n"
    /* The hash's TTL: set by a schedule that creates a field (a new hash has none: HSET counts
     * the fields it adds), and again with the session's; not when a schedule only rewrites an
     * armed reminder's fields (issue 17). */
    "for _, op in ipairs(O.rem) do\n"
    "  if op[1] == 's' then\n"
    "    local added = redis.call('HSET', K.reminders, op[2], op[4], op[2] .. '#a', op[5])\n"
    "    if added > 0 and not refresh then expire(K.reminders) end\n"
    "    redis.call('ZADD', K.due, op[3], A.member .. '|' .. op[2])\n"
    "  elseif op[2] then\n"
    "    redis.call('HDEL', K.reminders, op[2], op[2] .. '#a')\n"
    "    redis.call('ZREM', K.due, A.member .. '|' .. op[2])\n"
    "  else\n"
    "    cancel_all()\n"
    "  end\n"
    "end\n"
    "if refresh then expire(K.reminders) end\n"
    "if O.ticket then\n"
    "  redis.call('DEL', K.ticket)\n"
    "  redis.call('HSET', K.ticket, 'state', 'waiting', 'reason', O.ticket[1], 'summary',\n"
    "             O.ticket[2], 'created', ARGV[7])\n"
    "  expire(K.ticket)\n"
    "end\n"
    "for _, name in ipairs(O.stats) do redis.call('HINCRBY', K.stats, name, 1) end\n"
    "for _, a in ipairs(O.avis) do\n"
    "  redis.call('HINCRBY', K.stats, 'avis_note_' .. a[1], 1)\n"
    "  if a[2] then\n"
    "    redis.call('LPUSH', K.avis, a[2])\n"
    "    redis.call('LTRIM', K.avis, 0, 999)\n" /* AVIS_COMMENTS_MAX - 1 */
    "  end\n"
    "end\n"
    "if #O.out > 0 and not AD then\n"
    /* One RPUSH for all the entries. The TTL is not set by the write that creates the list (a
     * PEXPIRE per message, for a list the POP deletes once its entries are sent: issue 17): an
     * outbox that stays gets it at its first HEAD (head_src), and again with the session's
     * refresh (an outbox that stays non-empty, its platform down or its adapter not loaded, must
     * not expire before its conversation). A list this RPUSH created has its first entry for
     * head: no LINDEX (issue 17). Only such a list joins the pending index: a list that had
     * entries is in it already (every writer of an outbox adds its conversation, and HEAD and POP
     * take it out only with the list empty, atomically), so a busy outbox costs no ZADD. */
    "  local n = redis.call('RPUSH', K.outbox, unpack(O.out))\n"
    "  if n == #O.out then\n"
    "    out_head = O.out[1]\n"
    "    redis.call('ZADD', K.pending, 'NX', ARGV[7], A.member)\n"
    "  end\n"
    "  if refresh then expire(K.outbox) end\n"
    "end\n"
    /* O.rearm: a reminder held by job_run() (the user wrote since it was armed): armed again at
     * the user's last event + its delay, where the eager push-back would have put it; nothing
     * when a `stop` or a forget removed its delay. GT: a schedule written since (by an event at
     * or after `a`, with the delay read here) is at least that late and keeps its time, while
     * an older time (the member given back by a reaper after its lease expired) moves up. The
     * version check above makes `a` the one job_run() compared. */
    "if O.rearm then\n"
    "  local d = tonumber(redis.call('HGET', K.reminders, O.rearm .. '#a'))\n"
    "  local a = tonumber(redis.call('HGET', K.session, '" FB_SESSION_ACTIVITY "'))\n"
    "  if d and a then redis.call('ZADD', K.due, 'GT', a + d, A.member .. '|' .. O.rearm) end\n"
    "end\n";
/* The COMMIT's end, after the features' lua_post: the dedupe mark, last. Now and then (`marks_due`,
 * in commit_head_src) the marks older than the retention are trimmed and the zset's TTL set to
 * the retention plus that period: no command per message for them but the ZADD. */
static const char commit_tail_src[] =
    "redis.call('ZADD', K.event, A.now, ARGV[11])\n"
    "if marks_due then\n"
    "  redis.call('ZREMRANGEBYSCORE', K.event, '-inf', A.now - keep)\n"
    "  redis.call('PEXPIRE', K.event, keep + marks_every)\n"
    "end\n"
    "local res = {1, nv, false, AO}\n"
    "if #O.out > 0 and not AD then\n"
    "  res[3] = out_head or (O.nh and 0) or redis.call('LINDEX', K.outbox, 0)\n"
    "end\n"
    "for _, k in ipairs(kick) do table.insert(res, k) end\n"
    "return res\n";

/* PAGE, the second of the roadmap page's two calls (fb_router_roadmap_page() first reads the
 * lookup <prefix>{g}:roadmap:<hash>, a plain GET). KEYS: the conversation the lookup named, its
 * roadmap hash and its session; ARGV: the token's hash. The session data when the conversation's
 * roadmap token is still this one (not forgotten, not expired, not a later conversation of the
 * same key), else nil. Every key it touches is declared and in the conversation's slot, so it is
 * Cluster-safe; read-only, so nothing is ever half-done. The check of `h` and the read of the
 * session are one atomic step in that slot: whatever the lookup became after the GET (deleted by
 * a forget, expired), the page shows a session only if its conversation still holds this token's
 * hash at the moment its session is read. */
static const char page_src[] =
    "#!lua flags=no-writes\n"
    "if redis.call('HGET', KEYS[1], 'h') ~= ARGV[1] then return nil end\n"
    "return redis.call('HGET', KEYS[2], '" FB_SESSION_DATA "')\n";

/* HEAD. KEYS: outbox, pending index; ARGV: conversation key, the session TTL (ms). The head
 * entry, or nil (and the conversation leaves the pending index). An outbox without a TTL gets
 * the session's here: the COMMIT that creates an outbox does not set it (a PEXPIRE per message
 * for a list that its POP deletes a moment later, issue 17), so an outbox whose entries do not go
 * out at once (a failed send, a restart's scan, an adapter not loaded) gets it at its first
 * HEAD, and again with the session's refresh. */
static const char head_src[] = "#!lua flags=allow-oom\n"
                               "local e = redis.call('LINDEX', KEYS[1], 0)\n"
                               "if not e then redis.call('ZREM', KEYS[2], ARGV[1])\n"
                               "elseif tonumber(ARGV[2]) > 0 and redis.call('PTTL', KEYS[1]) == -1 "
                               "then\n"
                               "  redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
                               "end\n"
                               "return e\n";

/* POP. KEYS: outbox, parked, pending index; ARGV: "1" to park the last entry, TTL ms,
 * conversation key, then the entries sent, in their order (one, or the chain of one event's
 * entries sent one after the other: see ob_on_sent()). Pops the longest prefix of the outbox
 * that is those entries (entries are unique: their transaction ids are), so nothing another
 * consumer popped in between is taken from the list. Returns {1 all popped or 0 not, the next
 * head or nil}; when the outbox is empty, the conversation leaves the pending index (atomically,
 * so an entry added just after re-adds it): the next head comes with the pop, no HEAD round trip
 * after each send, and one POP per event rather than per entry (issue 17). One LPOP of the
 * entries and one more takes them and shows the next head; what is not theirs (the next head,
 * entries another consumer left first) goes back in front, in its order: in the usual case (the
 * outbox held just these entries) two commands, where LRANGE and LTRIM were three with the ZREM.
 * An outbox the LPOP emptied and the push-back made again has no TTL, as one a COMMIT creates:
 * it gets the session's at its first HEAD (a retry's read, the scan) or with the session's
 * refresh (head_src). */
static const char pop_src[] = "#!lua flags=allow-oom\n"
                              "local n = #ARGV - 3\n"
                              "local l = redis.call('LPOP', KEYS[1], n + 1) or {}\n"
                              "local k = 0\n"
                              "while k < n and l[k + 1] == ARGV[k + 4] do k = k + 1 end\n"
                              "if #l > k then\n"
                              "  local back = {}\n"
                              "  for i = #l, k + 1, -1 do table.insert(back, l[i]) end\n"
                              "  redis.call('LPUSH', KEYS[1], unpack(back))\n"
                              "end\n"
                              "if k == n and ARGV[1] == '1' then\n"
                              "  redis.call('RPUSH', KEYS[2], ARGV[#ARGV])\n"
                              "  local ttl = tonumber(ARGV[2])\n"
                              "  if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end\n"
                              "end\n"
                              "local h = l[k + 1]\n"
                              "if not h then redis.call('ZREM', KEYS[3], ARGV[3]) end\n"
                              "return {k == n and 1 or 0, h or false}\n";

/*
 * SCAN. KEYS: pending index; ARGV: the cursor (score and member of the last member read by the
 * previous page; "" "" for the first page), count. {index size, member, score, member, score...}:
 * the members after the cursor, in the index's order (score, then member byte by byte). A cursor,
 * not a rank: the conversations of a page leave the index as their outboxes empty, and a rank
 * would then skip as many members as had left.
 */
static const char scan_src[] =
    "#!lua flags=no-writes\n"
    "local function after(a, b)\n" /* a > b byte by byte (strcoll follows Redis's locale) */
    "  for i = 1, math.min(#a, #b) do\n"
    "    local x, y = a:byte(i), b:byte(i)\n"
    "    if x ~= y then return x > y end\n"
    "  end\n"
    "  return #a > #b\n"
    "end\n"
    "local from = 0\n"
    "if ARGV[1] ~= '' then\n"
    "  from = redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. ARGV[1])\n"
    "  for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[1])) do\n"
    "    if after(m, ARGV[2]) then break end\n"
    "    from = from + 1\n"
    "  end\n"
    "end\n"
    "local m = redis.call('ZRANGE', KEYS[1], from, from + tonumber(ARGV[3]) - 1, 'WITHSCORES')\n"
    "table.insert(m, 1, redis.call('ZCARD', KEYS[1]))\n"
    "return m\n";

/* ---- structures ------------------------------------------------------------------------- */

/* A registered feature (core/feature.h). */
struct feature_slot {
    const fb_feature_ops_t *ops;
    void *self;
    char **global; /* the GLOBAL keys, built once (NULL for the other kinds), ops->nkeys */
};

struct adapter_slot {
    fb_adapter_t a; /* first: core_data points back at the slot */
    fb_router_t *r;
    bool inited, started, stopping, stopped;
};

struct job {
    struct job *next;
    struct conv *c;
    fb_inbound_kind_t kind;
    char *event_id, *text, *choice;
    char *timer;      /* a reminder (fb_router_reminder()): its id; the job is a TIMER event */
    char *commit_arg; /* fb_inbound_t.commit_arg, for the adapter's COMMIT fragment, or NULL */
    int64_t due;      /* the reminder's due time (ms, 0: unknown) */
    int64_t delay;    /* the reminder's delay (ms, its "<id>#a"; < 0: unknown) */
    bool dropped;     /* the reminder was dropped (inactive) or held: cb gets FB_DECLINED */
    bool handback;    /* a HANDBACK event (fb_router_handback()) */
    bool no_head;     /* the last COMMIT attempt was told its head is not needed (ops `nh`) */
    char *born;       /* the session's birth (FB_SESSION_BIRTH) its last READ saw, or NULL */
    fb_inbound_cb cb;
    void *arg;
    unsigned reruns;
    size_t says;   /* outbox entries the last COMMIT attempt carried */
    json_t *built; /* the last attempt's entries, parsed: {raw JSON: entry} (conv.ob_built) */
    /* the roadmap page's token: the stored one, else one minted for this attempt (rm_new), kept
     * only if a message gives it (ROADMAP_TOKEN_BYTES random bytes in hex) */
    char rm_token[2 * ROADMAP_TOKEN_BYTES + 1];
    bool rm_new;
};

/* OB_QUEUED: the head is read (ob_entry) and waits for a sending slot (router.max_sending). */
enum ob_state { OB_IDLE, OB_READING, OB_SENDING, OB_POPPING, OB_WAITING, OB_QUEUED };

struct conv {
    struct conv *hnext; /* hash chain */
    fb_router_t *r;
    char *key;        /* "adapter:conv", the conversation key in Redis */
    const char *conv; /* inside key, after the ':' */
    char name[32];    /* adapter name */
    char tag[17];     /* short hash of the key, for logs */
    struct job *head, *tail;
    size_t njobs;
    bool busy;         /* the head job is running */
    bool ready_listed; /* in r->ready */
    struct conv *ready_next;
    enum ob_state ob;
    bool ob_again;     /* a wake or a new entry arrived during READING/SENDING */
    unsigned ob_tries; /* transient failures of the current head */
    /* OB_WAITING is the retry policy's backoff after a transient failure */
    bool ob_backoff;
    /* the send in flight was started by a kick that cut that backoff short (a new message, a
     * feature): its failure counts no attempt (ob_on_sent()) */
    bool ob_early;
    unsigned ob_redis; /* consecutive Redis failures of outbox operations */
    char *ob_entry;    /* the head being sent (raw JSON) */
    size_t ob_len;
    /* The entries the last COMMIT of this daemon queued, as it built them: {raw JSON: entry}.
     * An outbox head read back with the same bytes is taken from here instead of parsed again
     * (issue 17); any other head (an adapter's fragment rewrote it, another writer queued it)
     * is parsed. Replaced at each COMMIT that queues entries, so it holds one event's at most. */
    json_t *ob_built;
    /* The chain of one event's entries (issue 17): with an adapter whose platform drops a send
     * it has seen by its transaction id (FB_ADAPTER_CAP_TXN_DEDUPE), the entries of one COMMIT
     * go out one after the other and one POP removes them all. `ob_chain`: the entry after the
     * head being sent is, in Redis, the first of ob_built (the head was the first of them: one
     * RPUSH wrote them in a row, and only this outbox pops its list). `ob_done`: the entries sent
     * and not popped yet (JSON array of raw strings), popped with the head. */
    bool ob_chain;
    json_t *ob_done;
    bool ob_park;            /* the pop in flight parks the entry */
    struct conv *sendq_next; /* in r->sendq (OB_QUEUED) */
    uv_timer_t timer;
    bool timer_init;
};

struct fb_router_s {
    uv_loop_t *loop;
    const fb_config_t *cfg;
    fb_redis_t *redis;
    fb_store_t *store;
    const fb_geo_t *geo;
    fb_core_t core;
    fb_dialog_t *dialog;
    fb_dialog_t *versions[MAX_VERSIONS]; /* older versions, oldest first */
    size_t nversions;
    struct adapter_slot *adapters[MAX_ADAPTERS];
    size_t nadapters;
    struct conv *buckets[CONV_BUCKETS];
    size_t nconvs;
    struct conv *ready, *ready_tail;
    size_t njobs;                    /* inbound jobs, all conversations (max_queued_events) */
    size_t sending;                  /* outbox entries in the adapters' hands (max_sending) */
    size_t nsendq;                   /* conversations in sendq */
    struct conv *sendq, *sendq_tail; /* waiting for a sending slot, in arrival order */
    uv_timer_t kick;                 /* runs the ready list */
    uv_timer_t tick;                 /* reconnection check and periodic scan */
    unsigned ticks;
    uint64_t redis_connects;
    bool started, stopping, adapters_stopped, stop_done_called, in_check;
    size_t adapters_stopping;
    void (*stop_done)(void *arg);
    void *stop_arg;
    size_t handles;    /* open uv handles (kick, tick, conversation timers) */
    size_t inflight;   /* Redis operations of jobs and of the outbox */
    char *scan_score;  /* cursor of the next scan: the last member read by the previous page */
    char *scan_member; /* (both NULL: the next scan starts at the beginning of the index) */
    bool scanning;
    uint64_t pending_convs; /* ZCARD of the pending index at the last scan */
    int64_t marks_since;    /* FB_KEY_MARKS_SINCE, ms; -1 until read (see since_src) */
    bool since_asked;
    fb_store_script_t s_commit, s_head, s_pop, s_scan, s_since;
    uint64_t outbox_delay_ms; /* tests: each delivery waits until the entry's ts + this */
    void (*step_hook)(void *arg, const char *key, json_t *effects);
    void *step_hook_arg;
    char *k_pending, *k_due, *k_stats, *k_avis, *k_roadmap_ix, *k_since;
    fb_store_script_t s_page; /* the roadmap page's session, when the token still holds */
    fb_router_stats_t st;
    char *commit_lua; /* the COMMIT, assembled at the first start (build_commit()) */
    struct feature_slot features[MAX_FEATURES];
    size_t nfeatures;
    size_t nfeature_keys;                                    /* the features' keys, all together */
    bool (*has_advisor)(const void *arg, const char *insee); /* fb_router_set_has_advisor() */
    const void *has_advisor_arg;
};

/* ---- small helpers ---------------------------------------------------------------------- */

/* The base of the job's stable ids (transaction ids, write ids): see fb_event_hash(). */
static uint64_t job_hash(const struct job *j)
{
    return fb_event_hash(j->c->key, j->event_id);
}

/* The policy's delay before retry number `attempt` (1-based), shortened by the jitter. */
static uint64_t retry_delay(const fb_retry_policy_t *p, unsigned attempt)
{
    return fb_retry_next_delay_ms(p, attempt == 0 ? 0 : attempt - 1);
}

static bool valid_text(const char *s, size_t max)
{
    if (!s)
        return false;
    size_t n = strlen(s);
    return n > 0 && n <= max && fb_utf8_valid_text(s, n);
}

/* Maps a Redis/store failure to what deliver()'s callback reports. */
static int inbound_status(int status)
{
    if (status == 0 || status == FB_EINVAL || status == FB_ECANCELED)
        return status;
    return FB_EAGAIN;
}

static bool transient(int status)
{
    return status == FB_EAGAIN || status == FB_ETIMEDOUT || status == FB_EIO ||
           status == FB_EUNAVAIL || status == FB_ECONNECT;
}

/* ---- conversations ---------------------------------------------------------------------- */

static size_t bucket_of(const char *key)
{
    return (size_t)(fb_fnv64(FB_FNV64_INIT, key, strlen(key)) % CONV_BUCKETS);
}

static struct conv *conv_find(fb_router_t *r, const char *key)
{
    for (struct conv *c = r->buckets[bucket_of(key)]; c; c = c->hnext)
        if (strcmp(c->key, key) == 0)
            return c;
    return NULL;
}

/* Finds or creates the conversation "name:conv". */
static struct conv *conv_get(fb_router_t *r, const char *key)
{
    struct conv *c = conv_find(r, key);
    if (c)
        return c;
    const char *colon = strchr(key, ':');
    if (!colon || colon == key || (size_t)(colon - key) >= sizeof(c->name))
        return NULL;
    c = fb_calloc(1, sizeof(*c));
    c->r = r;
    c->key = fb_strdup(key);
    c->conv = c->key + (colon - key) + 1;
    memcpy(c->name, key, (size_t)(colon - key));
    snprintf(c->tag, sizeof(c->tag), "%08llx",
             (unsigned long long)(fb_fnv64(FB_FNV64_INIT, key, strlen(key)) >> 32));
    size_t b = bucket_of(key);
    c->hnext = r->buckets[b];
    r->buckets[b] = c;
    r->nconvs++;
    return c;
}

static void check_stopped(fb_router_t *r);

static void handle_closed(uv_handle_t *h)
{
    fb_router_t *r = h->data;
    r->handles--;
    check_stopped(r);
}

static void conv_timer_closed(uv_handle_t *h)
{
    struct conv *c = h->data;
    fb_router_t *r = c->r;
    fb_free(c);
    r->handles--;
    check_stopped(r);
}

/* Frees the conversation when nothing is left to do in memory. */
static void conv_maybe_free(struct conv *c)
{
    if (c->busy || c->njobs || c->ob != OB_IDLE || c->ready_listed)
        return;
    fb_router_t *r = c->r;
    struct conv **pp = &r->buckets[bucket_of(c->key)];
    while (*pp != c)
        pp = &(*pp)->hnext;
    *pp = c->hnext;
    r->nconvs--;
    fb_free(c->key);
    fb_free(c->ob_entry);
    json_decref(c->ob_built);
    json_decref(c->ob_done);
    if (c->timer_init) {
        c->timer.data = c;
        uv_close((uv_handle_t *)&c->timer, conv_timer_closed);
    } else {
        fb_free(c);
        check_stopped(r);
    }
}

static char *ckey(const struct conv *c, const char *suffix)
{
    return fb_store_conv_key(c->r->store, c->key, suffix);
}

static struct adapter_slot *adapter_by_name(fb_router_t *r, const char *name)
{
    for (size_t i = 0; i < r->nadapters; i++)
        if (strcmp(r->adapters[i]->a.ops->name, name) == 0)
            return r->adapters[i];
    return NULL;
}

/* ---- the outbox ------------------------------------------------------------------------- */

static void ob_read(struct conv *c);
static void ob_send(struct conv *c, json_t *entry);

/* Sends again the entry the outbox kept (c->ob_entry, its stored bytes). */
static void ob_send_kept(struct conv *c)
{
    json_error_t jerr;
    json_t *entry = json_loadb(c->ob_entry, c->ob_len, 0, &jerr);
    ob_send(c, entry);
    json_decref(entry);
}

/* After a wait: the head is read again, unless the entry that waited follows entries of its
 * chain that were sent and not popped yet (ob_done): those are still before it in Redis, and a
 * HEAD would send them again, so the entry itself (c->ob_entry, still the next one in Redis:
 * only this outbox pops its list) is sent again. The outbox is OB_IDLE. */
static void ob_resume(struct conv *c)
{
    if (!c->ob_entry || !c->ob_done || json_array_size(c->ob_done) == 0) {
        ob_read(c);
        return;
    }
    ob_send_kept(c);
}

static void ob_timer_fired(uv_timer_t *t)
{
    struct conv *c = t->data;
    if (c->ob != OB_WAITING)
        return;
    c->ob = OB_IDLE;
    c->ob_backoff = false;
    c->ob_early = false; /* the policy's own retry */
    if (c->r->stopping) {
        conv_maybe_free(c);
        return;
    }
    ob_resume(c);
}

/* Waits `ms` before reading the head again; `backoff`: the retry policy's wait after a transient
 * failure (a kick still ends it, see ob_kick()). */
static void ob_wait(struct conv *c, uint64_t ms, bool backoff)
{
    fb_router_t *r = c->r;
    if (r->stopping) {
        c->ob = OB_IDLE;
        conv_maybe_free(c);
        return;
    }
    if (!c->timer_init) {
        uv_timer_init(r->loop, &c->timer);
        c->timer_init = true;
        r->handles++;
    }
    c->timer.data = c;
    c->ob = OB_WAITING;
    c->ob_backoff = backoff;
    c->ob_early = false; /* no send in flight while waiting */
    uv_timer_start(&c->timer, ob_timer_fired, ms, 0);
}

/* Starts (or restarts now) the outbox of a conversation. */
static void ob_kick(struct conv *c)
{
    if (c->r->stopping)
        return;
    switch (c->ob) {
    case OB_IDLE:
        ob_read(c);
        break;
    case OB_WAITING:
        /* A kick ends any wait: after an outage, the user's next message goes out at once
         * rather than after the rest of the backoff. A send that cuts a backoff short counts no
         * attempt when it fails (ob_early), so that a user writing on during an outage does not
         * spend max_attempts in seconds and park the reply. */
        c->ob_early = c->ob_backoff;
        uv_timer_stop(&c->timer);
        c->ob = OB_IDLE;
        ob_resume(c);
        break;
    case OB_READING:
    case OB_SENDING:
    case OB_POPPING:
    case OB_QUEUED:
        c->ob_again = true;
        break;
    }
}

/* An outbox Redis operation failed: try again later (Redis is down, or shutting down). */
static void ob_redis_failed(struct conv *c, int status, const char *what)
{
    c->ob_redis++;
    if (status != FB_ECANCELED && c->ob_redis <= 3)
        FB_WARN(ROUTER, "[%s] outbox %s failed: %s; retrying", c->tag, what, fb_strerror(status));
    c->ob = OB_IDLE;
    ob_wait(c, REDIS_RETRY_MS, false);
}

/* The head entry `str` was read (by HEAD, or returned by COMMIT or POP), or is the next one of
 * its chain: hands it over. The outbox is OB_IDLE. */
static void ob_got_head(struct conv *c, const char *str, size_t len)
{
    fb_free(c->ob_entry);
    c->ob_entry = fb_strndup(str, len);
    c->ob_len = len;
    json_t *entry = c->ob_built ? json_object_getn(c->ob_built, str, len) : NULL;
    void *first = c->ob_built ? json_object_iter(c->ob_built) : NULL;
    /* the first of the entries one RPUSH wrote in a row: the next of them follows it in Redis */
    c->ob_chain = entry && first && json_object_iter_key_len(first) == len &&
                  memcmp(json_object_iter_key(first), str, len) == 0;
    if (entry) {
        json_incref(entry);
        json_object_deln(c->ob_built, str, len);
    } else {
        json_error_t jerr;
        entry = json_loadb(str, len, 0, &jerr);
    }
    ob_send(c, entry);
    json_decref(entry);
}

/* Like ob_kick(), with the head that COMMIT just read in the same atomic script: sent at once
 * when the outbox is idle or waiting (a kick would read that very head again), otherwise the
 * running send sees it next (ob_again). */
static void ob_kick_head(struct conv *c, const redisReply *head)
{
    if (c->r->stopping)
        return;
    if (!head || head->type != REDIS_REPLY_STRING || (c->ob != OB_IDLE && c->ob != OB_WAITING)) {
        ob_kick(c);
        return;
    }
    if (c->ob == OB_WAITING) {
        c->ob_early = c->ob_backoff; /* as in ob_kick() */
        uv_timer_stop(&c->timer);
        c->ob = OB_IDLE;
    }
    ob_got_head(c, head->str, head->len);
}

static void ob_on_head(int status, const redisReply *rep, void *arg)
{
    struct conv *c = arg;
    fb_router_t *r = c->r;
    r->inflight--;
    c->ob = OB_IDLE;
    bool again = c->ob_again; /* entries may have been added after the read was sent */
    c->ob_again = false;
    if (status != 0) {
        ob_redis_failed(c, status, "read");
        check_stopped(r);
        return;
    }
    c->ob_redis = 0;
    if (rep->type != REDIS_REPLY_STRING || r->stopping) {
        c->ob_tries = 0;
        c->ob_early = false;
        if (again && !r->stopping)
            ob_read(c);
        else
            conv_maybe_free(c);
        check_stopped(r);
        return;
    }
    ob_got_head(c, rep->str, rep->len);
}

static void ob_read(struct conv *c)
{
    fb_router_t *r = c->r;
    /* The head is read from Redis again: entries sent and not popped come back (and go out again
     * with their transaction ids, which the platform drops). */
    if (c->ob_done)
        json_array_clear(c->ob_done);
    char *k_outbox = ckey(c, FB_KEY_OUTBOX);
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)fb_store_session_ttl_ms(r->store));
    const char *args[] = {k_outbox, r->k_pending, c->key, ttl};
    int rc = fb_store_eval(r->store, &r->s_head, FB_REDIS_RETRY, 2, 2, args, NULL, ob_on_head, c);
    fb_free(k_outbox);
    if (rc != 0) {
        ob_redis_failed(c, rc, "read");
        return;
    }
    r->inflight++;
    c->ob = OB_READING;
}

static void ob_on_pop(int status, const redisReply *rep, void *arg)
{
    struct conv *c = arg;
    fb_router_t *r = c->r;
    r->inflight--;
    c->ob = OB_IDLE;
    if (status != 0) {
        /* The entries may be sent again: the transaction ids let the platform drop them. The
         * head is read again after the wait (not the entry resent from memory: ob_resume()). */
        FB_FREE(c->ob_entry);
        ob_redis_failed(c, status, "pop");
        check_stopped(r);
        return;
    }
    c->ob_redis = 0;
    c->ob_tries = 0;
    FB_FREE(c->ob_entry);
    if (c->ob_done)
        json_array_clear(c->ob_done);
    if (r->stopping) {
        conv_maybe_free(c);
        check_stopped(r);
        return;
    }
    bool again = c->ob_again;
    c->ob_again = false;
    const redisReply *next = fb_redis_reply_array(rep, 2, 2, "i") ? rep->element[1] : NULL;
    if (next && next->type == REDIS_REPLY_STRING) {
        ob_got_head(c, next->str, next->len); /* the next entry, read by POP itself */
    } else if (next && next->type == REDIS_REPLY_NIL && !again) {
        conv_maybe_free(c); /* empty, and POP took the conversation out of the pending index */
        check_stopped(r);
    } else {
        ob_read(c); /* a reply of another shape, or a wake since: read the head */
    }
}

/* Removes the head entry, after the entries of its chain sent before it (ob_done); `park`: moves
 * the head to the parked list. */
static void ob_pop(struct conv *c, bool park)
{
    fb_router_t *r = c->r;
    char *k_outbox = ckey(c, FB_KEY_OUTBOX), *k_parked = ckey(c, FB_KEY_PARKED);
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)fb_store_session_ttl_ms(r->store));
    size_t ndone = c->ob_done ? json_array_size(c->ob_done) : 0;
    size_t n = 3 + 3 + ndone + 1;
    const char **args = fb_calloc(n, sizeof(*args));
    size_t *lens = fb_calloc(n, sizeof(*lens));
    args[0] = k_outbox;
    args[1] = k_parked;
    args[2] = r->k_pending;
    args[3] = park ? "1" : "0";
    args[4] = ttl;
    args[5] = c->key;
    for (size_t i = 0; i < 6; i++)
        lens[i] = strlen(args[i]);
    for (size_t i = 0; i < ndone; i++) {
        const json_t *d = json_array_get(c->ob_done, i);
        args[6 + i] = json_string_value(d);
        lens[6 + i] = json_string_length(d);
    }
    args[n - 1] = c->ob_entry;
    lens[n - 1] = c->ob_len;
    int rc = fb_store_eval(r->store, &r->s_pop, FB_REDIS_RETRY, 3, n - 3, args, lens, ob_on_pop, c);
    fb_free(args);
    fb_free(lens);
    fb_free(k_outbox);
    fb_free(k_parked);
    if (rc != 0) {
        ob_redis_failed(c, rc, "pop");
        return;
    }
    r->inflight++;
    c->ob = OB_POPPING;
    c->ob_park = park;
}

static void ob_park(struct conv *c, const char *why)
{
    fb_router_t *r = c->r;
    r->st.outbox_parked++;
    FB_WARN(ROUTER, "[%s] outbox entry parked (%s): see {c:...}:parked", c->tag, why);
    ob_pop(c, true);
}

/* Hands the entries that wait for a sending slot to their adapters, as slots are free. While
 * stopping, they are dropped from memory (still the heads of their outboxes in Redis). */
static void ob_send_queued(fb_router_t *r)
{
    while (r->sendq && (r->sending < r->cfg->router.max_sending || r->stopping)) {
        struct conv *c = r->sendq;
        r->sendq = c->sendq_next;
        if (!r->sendq)
            r->sendq_tail = NULL;
        c->sendq_next = NULL;
        r->nsendq--;
        c->ob = OB_IDLE;
        if (r->stopping) {
            conv_maybe_free(c);
            continue;
        }
        ob_send_kept(c);
    }
}

/* The head went out: the next entry of its chain goes out now when it is known and the platform
 * drops a send it has seen (FB_ADAPTER_CAP_TXN_DEDUPE), the POP of both waiting for the last
 * one; else the head is popped. A crash between the two sends sends the first again at the next
 * start, with its transaction id: dropped by the platform (Matrix: Synapse keeps a transaction
 * id about 30 minutes, a day with the service's device; docs/internals/ROUTER.md). */
static void ob_sent_ok(struct conv *c)
{
    struct adapter_slot *s = adapter_by_name(c->r, c->name);
    void *next = c->ob_chain && c->ob_built ? json_object_iter(c->ob_built) : NULL;
    if (!next || !s || !(s->a.ops->caps & FB_ADAPTER_CAP_TXN_DEDUPE) || c->r->stopping) {
        ob_pop(c, false);
        return;
    }
    if (!c->ob_done)
        c->ob_done = json_array();
    json_array_append_new(c->ob_done, json_stringn_nocheck(c->ob_entry, c->ob_len));
    c->ob_tries = 0;
    size_t klen = json_object_iter_key_len(next);
    char *key = fb_strndup(json_object_iter_key(next), klen);
    ob_got_head(c, key, klen);
    fb_free(key);
}

static void ob_on_sent(int status, int64_t retry_after_ms, void *arg)
{
    struct conv *c = arg;
    fb_router_t *r = c->r;
    if (c->ob != OB_SENDING) {
        FB_ERR(ROUTER, "[%s] adapter %s called send's callback twice", c->tag, c->name);
        return;
    }
    r->inflight--;
    r->sending--;
    c->ob = OB_IDLE;
    bool early = c->ob_early;
    c->ob_early = false;
    if (status == 0) {
        r->st.outbox_delivered++;
        ob_sent_ok(c);
    } else if (status == FB_ECANCELED || r->stopping) {
        /* Shutting down: the entry stays for the next start. */
        conv_maybe_free(c);
    } else if (status == FB_ENOTYET) {
        /* The adapter holds it back on purpose (e.g. a new encrypted Matrix room): no failure, so
         * no attempt counted; it stays the head of the durable outbox meanwhile. */
        uint64_t d = retry_after_ms > 0 ? (uint64_t)retry_after_ms
                                        : retry_delay(&r->cfg->router.outbox_retry, 1);
        FB_DEBUG(ROUTER, "[%s] send put off by the adapter for %llu ms", c->tag,
                 (unsigned long long)d);
        ob_wait(c, d, false);
    } else if (transient(status)) {
        if (!early) /* a send that cut the backoff short counts no attempt (ob_kick()) */
            c->ob_tries++;
        unsigned max = r->cfg->router.outbox_retry.max_attempts;
        if (max && c->ob_tries >= max) {
            ob_park(c, "too many transient failures");
        } else {
            r->st.outbox_retried++;
            uint64_t d = retry_delay(&r->cfg->router.outbox_retry, c->ob_tries);
            if (retry_after_ms > 0 && (uint64_t)retry_after_ms > d)
                d = (uint64_t)retry_after_ms;
            FB_DEBUG(ROUTER, "[%s] send failed (%s), retry %u in %llu ms", c->tag,
                     fb_err_name(status), c->ob_tries, (unsigned long long)d);
            ob_wait(c, d, true);
        }
    } else {
        ob_park(c, fb_err_name(status));
    }
    ob_send_queued(r);
    check_stopped(r);
}

static const char *jstr(const json_t *o, const char *name)
{
    return json_string_value(json_object_get(o, name));
}

/* Hands the head entry to its adapter (or waits, or leaves it for an adapter not loaded). */
static void ob_send(struct conv *c, json_t *entry)
{
    fb_router_t *r = c->r;
    if (!entry || !json_is_object(entry) || !jstr(entry, "txn") || !jstr(entry, "text")) {
        ob_park(c, "malformed entry");
        return;
    }
    int64_t ts = json_integer_value(json_object_get(entry, "ts"));
    int64_t delay = (int64_t)r->outbox_delay_ms;
    int64_t now = fb_wall_ms();
    if (delay > 0 && ts + delay > now) {
        ob_wait(c, (uint64_t)(ts + delay - now), false);
        return;
    }
    struct adapter_slot *s = adapter_by_name(r, c->name);
    if (!s || !s->started || s->stopping) {
        FB_DEBUG(ROUTER, "[%s] adapter %s not running: outbox entries left in place", c->tag,
                 c->name);
        conv_maybe_free(c);
        return;
    }
    if (r->sending >= r->cfg->router.max_sending) {
        /* Bounded outbound work: the entry waits for a slot (it stays in c->ob_entry; only this
         * conversation's outbox pops its head, so it is still the head when its turn comes). */
        r->st.send_waits++;
        c->ob = OB_QUEUED;
        c->sendq_next = NULL;
        if (r->sendq_tail)
            r->sendq_tail->sendq_next = c;
        else
            r->sendq = c;
        r->sendq_tail = c;
        r->nsendq++;
        return;
    }
    const json_t *choices = json_object_get(entry, "choices");
    fb_outbound_t msg = {
        .conv = c->conv,
        .txn_id = jstr(entry, "txn"),
        .kind = jstr(entry, "kind") ? jstr(entry, "kind") : "reply",
        .text = jstr(entry, "text"),
        .html = jstr(entry, "html") ? jstr(entry, "html") : "",
        .choices = json_is_array(choices) ? choices : NULL,
        .entry = entry,
        .redacts = jstr(entry, "redacts"),
    };
    c->ob = OB_SENDING;
    r->inflight++;
    r->sending++;
    int rc = s->a.ops->send(&s->a, &msg, ob_on_sent, c);
    if (rc != 0)
        ob_on_sent(rc, 0, c);
}

/* ---- the recovery scan ------------------------------------------------------------------ */

static void on_scan(int status, const redisReply *rep, void *arg)
{
    fb_router_t *r = arg;
    r->inflight--;
    r->scanning = false;
    if (status != 0 || !fb_redis_reply_array(rep, 1, FB_REDIS_NOMAX, NULL)) {
        if (status != FB_ECANCELED)
            FB_DEBUG(ROUTER, "outbox scan failed: %s", fb_strerror(status ? status : FB_EPROTO));
        check_stopped(r);
        return;
    }
    r->pending_convs = (uint64_t)rep->element[0]->integer;
    size_t n = (rep->elements - 1) / 2; /* member, score pairs */
    FB_FREE(r->scan_score);
    FB_FREE(r->scan_member);
    /* A full batch: more may wait behind it (e.g. conversations whose adapter is not loaded stay
     * first in the index), so the next tick scans on from its last member; else start over. */
    if (n >= SCAN_BATCH) {
        const redisReply *m = rep->element[2 * n - 1], *s = rep->element[2 * n];
        if (m->type == REDIS_REPLY_STRING && s->type == REDIS_REPLY_STRING) {
            r->scan_member = fb_strndup(m->str, m->len);
            r->scan_score = fb_strndup(s->str, s->len);
        }
        r->ticks = SCAN_EVERY_TICKS;
    }
    for (size_t i = 1; i < rep->elements && !r->stopping; i += 2) {
        const redisReply *m = rep->element[i];
        if (m->type != REDIS_REPLY_STRING || memchr(m->str, '\0', m->len))
            continue;
        struct conv *c = conv_get(r, m->str);
        if (!c)
            continue;
        /* With many waiting for a sending slot already, the others stay in Redis: each one
         * kicked here would read its head into memory only to wait (after a long outage of the
         * platform, tens of thousands of them, a page a second). A later scan takes them. */
        if (c->ob == OB_IDLE && r->nsendq < (size_t)SENDQ_SCAN_FACTOR * r->cfg->router.max_sending)
            ob_kick(c);
        else
            conv_maybe_free(c);
    }
    check_stopped(r);
}

static void on_since(int status, const redisReply *rep, void *arg)
{
    fb_router_t *r = arg;
    r->inflight--;
    r->since_asked = false;
    if (status == 0 && rep && rep->type == REDIS_REPLY_STRING) {
        r->marks_since = strtoll(rep->str, NULL, 10);
        FB_DEBUG(ROUTER, "dedupe marks in zsets since %lld", (long long)r->marks_since);
    }
    check_stopped(r);
}

/* Reads (or sets, at the first start) FB_KEY_MARKS_SINCE; again at the next tick on a failure. */
static void ask_since(fb_router_t *r)
{
    if (r->marks_since >= 0 || r->since_asked || r->stopping)
        return;
    char now[24];
    snprintf(now, sizeof(now), "%lld", (long long)fb_wall_ms());
    const char *args[] = {r->k_since, r->k_stats, now};
    if (fb_store_eval(r->store, &r->s_since, FB_REDIS_RETRY, 2, 1, args, NULL, on_since, r) == 0) {
        r->since_asked = true;
        r->inflight++;
    }
}

void fb_router_outbox_scan(fb_router_t *r)
{
    if (r->scanning || r->stopping)
        return;
    char batch[16];
    snprintf(batch, sizeof(batch), "%d", SCAN_BATCH);
    const char *args[] = {r->k_pending, r->scan_score ? r->scan_score : "",
                          r->scan_member ? r->scan_member : "", batch};
    if (fb_store_eval(r->store, &r->s_scan, FB_REDIS_RETRY, 1, 3, args, NULL, on_scan, r) == 0) {
        r->scanning = true;
        r->inflight++;
    }
}

static void on_tick(uv_timer_t *t)
{
    fb_router_t *r = t->data;
    fb_redis_stats_t rs;
    fb_redis_get_stats(r->redis, &rs);
    bool reconnected = rs.connects != r->redis_connects;
    r->redis_connects = rs.connects;
    ask_since(r);
    if (reconnected || ++r->ticks >= SCAN_EVERY_TICKS) {
        r->ticks = 0;
        fb_router_outbox_scan(r);
    }
}

/* ---- inbound ---------------------------------------------------------------------------- */

static void job_start(struct job *j);

static void run_ready(uv_timer_t *t)
{
    fb_router_t *r = t->data;
    while (r->ready) {
        struct conv *c = r->ready;
        r->ready = c->ready_next;
        if (!r->ready)
            r->ready_tail = NULL;
        c->ready_next = NULL;
        c->ready_listed = false;
        if (!c->busy && c->head)
            job_start(c->head);
        else
            conv_maybe_free(c);
    }
}

static void make_ready(struct conv *c)
{
    fb_router_t *r = c->r;
    if (c->ready_listed)
        return;
    c->ready_listed = true;
    if (r->ready_tail)
        r->ready_tail->ready_next = c;
    else
        r->ready = c;
    r->ready_tail = c;
    uv_timer_start(&r->kick, run_ready, 0, 0);
}

/* Appends `j` to its conversation's FIFO and lets it run when its turn comes. */
static void job_queue(struct job *j)
{
    struct conv *c = j->c;
    if (c->tail)
        c->tail->next = j;
    else
        c->head = j;
    c->tail = j;
    c->njobs++;
    c->r->njobs++;
    if (!c->busy)
        make_ready(c);
}

static void job_free(struct job *j)
{
    fb_free(j->event_id);
    fb_free(j->text);
    fb_free(j->choice);
    fb_free(j->timer);
    fb_free(j->commit_arg);
    fb_free(j->born);
    json_decref(j->built);
    fb_free(j);
}

/* Ends the head job of its conversation with `status` and lets the next one run. */
static void job_finish(struct job *j, int status)
{
    struct conv *c = j->c;
    fb_router_t *r = c->r;
    FB_ASSERT(c->head == j);
    c->head = j->next;
    if (!c->head)
        c->tail = NULL;
    c->njobs--;
    r->njobs--;
    if (status != 0)
        r->st.failed++;
    else if (j->dropped)
        status = FB_DECLINED;
    fb_inbound_cb cb = j->cb;
    void *arg = j->arg;
    job_free(j);
    /* `c` stays busy during the callback: the adapter may finish its stop there, and
     * check_stopped() would free an idle conversation under our feet. */
    cb(status, arg);
    c->busy = false;
    if (c->head)
        make_ready(c);
    conv_maybe_free(c);
    check_stopped(r);
}

static const char *kind_name(const struct job *j)
{
    if (j->timer)
        return "timer";
    if (j->handback)
        return "handback";
    switch (j->kind) {
    case FB_IN_START:
        return "start";
    case FB_IN_MESSAGE:
        return "message";
    case FB_IN_CHOICE:
        return "choice";
    case FB_IN_FORGET:
        return "forget";
    }
    return "unknown";
}

/* The outbox entries, reminders, ticket and counters of the effects, as the COMMIT's JSON. */
struct commit_ops {
    json_t *ops;   /* {out, rem, ticket?, stats, avis} */
    json_t *built; /* the says' entries, parsed: {raw JSON: entry} (job.built), or NULL */
    json_t *forms; /* the says' history forms {raw JSON: form} (say_form()), for an adapter
                      whose history is its delivery; else NULL */
    bool forget;
    size_t says;
};

/*
 * The history form (history_forms()) of a say's outbox entry, made from its bytes `s`, jansson's
 * compact dump of `entry` = {txn, kind, text, choices when given, html, ts}, in this order:
 * '"from":"bot",' then `s` from its "text" on. No parse and no dump of the reply again (issue
 * 17: the daemon's CPU per message). Returns a new JSON string, or NULL when `s` is not of that
 * shape, or its html or choices are empty (the form leaves those out): history_forms() then
 * builds the form from the parsed entry.
 */
static json_t *say_form(const char *s, const json_t *entry)
{
    static const char from[] = "\"from\":\"bot\",";
    const json_t *choices = json_object_get(entry, "choices");
    const char *html = jstr(entry, "html");
    if (!html || !html[0] || (choices && json_array_size(choices) == 0))
        return NULL;
    char head[96];
    int hn = snprintf(head, sizeof(head),
                      "{\"txn\":\"%s\",\"kind\":\"%s\",\"text\":", jstr(entry, "txn"),
                      jstr(entry, "kind"));
    size_t len = strlen(s);
    if (hn <= 0 || (size_t)hn >= sizeof(head) || len <= (size_t)hn ||
        memcmp(s, head, (size_t)hn) != 0)
        return NULL;
    size_t rlen = len - (size_t)hn + 7; /* from "text": on */
    char *f = fb_malloc(sizeof(from) - 1 + rlen);
    memcpy(f, from, sizeof(from) - 1);
    memcpy(f + sizeof(from) - 1, s + hn - 7, rlen);
    json_t *form = json_stringn_nocheck(f, sizeof(from) - 1 + rlen);
    fb_free(f);
    return form;
}

static void build_ops(struct job *j, const json_t *effects, int64_t now, struct commit_ops *co)
{
    struct conv *c = j->c;
    json_t *out = json_array(), *rem = json_array(), *stats = json_array(), *avis = json_array();
    co->ops = json_object();
    /* an adapter whose history is its delivery seldom reads its entries back: no cache */
    const struct adapter_slot *slot = adapter_by_name(c->r, c->name);
    bool delivers = slot && (slot->a.ops->caps & FB_ADAPTER_CAP_HISTORY_DELIVERS);
    co->built = delivers ? NULL : json_object();
    co->forms = delivers ? json_object() : NULL;
    co->forget = false;
    co->says = 0;
    /* The transaction ids: hash of (conversation, event) + "." + reply index. */
    uint64_t h = job_hash(j);
    size_t i;
    const json_t *e;
    /* What the messages are, for adapters that notify people differently (the Matrix adapter's
     * msgtype, docs/internals/MATRIX.md): a reminder's ("reminder"), a message that shows the
     * roadmap (the say's `roadmap`: "roadmap"), else a plain answer ("reply"). */
    const char *kind = j->timer ? "reminder" : "reply";
    json_array_foreach(effects, i, e)
    {
        const char *type = jstr(e, "type");
        switch (fb_effect_from_name(type)) {
        case FB_EFFECT_UNKNOWN:
            if (!type)
                FB_DEBUG(ROUTER, "[%s] effect without a type ignored", c->tag);
            else
                FB_DEBUG(ROUTER, "[%s] unknown effect '%s' ignored", c->tag, type);
            break;
        case FB_EFFECT_SAY: {
            char txn[40];
            snprintf(txn, sizeof(txn), "%016llx.%zu", (unsigned long long)h, co->says++);
            /* What json_pack("{s:s, s:s, s:s, s:O?, s:s, s:I}") built, a third of its
             * instructions: the strings are checked as UTF-8 once, by fb_json_dump() below. */
            const char *text = jstr(e, "text"), *html = jstr(e, "html");
            json_t *choices = json_object_get(e, "choices");
            json_t *entry = json_object();
            json_object_set_new_nocheck(entry, "txn", json_string_nocheck(txn));
            json_object_set_new_nocheck(
                entry, "kind",
                json_string_nocheck(
                    json_is_true(json_object_get(e, "roadmap")) && !j->timer ? "roadmap" : kind));
            json_object_set_new_nocheck(entry, "text", json_string_nocheck(text ? text : ""));
            if (choices && !json_is_null(choices))
                json_object_set_nocheck(entry, "choices", choices);
            json_object_set_new_nocheck(entry, "html", json_string_nocheck(html ? html : ""));
            json_object_set_new_nocheck(entry, "ts", json_integer((json_int_t)now));
            /* json_dumps(JSON_COMPACT)'s bytes, a tenth of its instructions (common/json.h) */
            fb_buf_t eb;
            fb_buf_init(&eb, ENTRY_MAX);
            if (entry && fb_json_dump(entry, &eb) == 0) {
                /* valid UTF-8 (fb_json_dump() checks every string): not checked again */
                json_array_append_new(out, json_stringn_nocheck(fb_buf_str(&eb), eb.len));
                if (co->built)
                    json_object_set_nocheck(co->built, fb_buf_str(&eb), entry);
                json_t *form = co->forms ? say_form(fb_buf_str(&eb), entry) : NULL;
                if (form)
                    json_object_set_new_nocheck(co->forms, fb_buf_str(&eb), form);
            } else if (entry) {
                FB_ERR(ROUTER, "[%s] a reply cannot be written: not sent", c->tag);
            }
            fb_buf_free(&eb);
            json_decref(entry);
            break;
        }
        case FB_EFFECT_SCHEDULE: {
            const char *id = jstr(e, "id");
            json_int_t after = json_integer_value(json_object_get(e, "after"));
            if (id && after >= 0) {
                char due[24];
                snprintf(due, sizeof(due), "%lld", (long long)now + (long long)after * 1000);
                const char *reason = jstr(e, "reason") ? jstr(e, "reason") : "";
                char ams[24];
                snprintf(ams, sizeof(ams), "%lld", (long long)after * 1000);
                json_array_append_new(rem, json_pack("[s,s,s,s,s]", "s", id, due, reason, ams));
            }
            break;
        }
        case FB_EFFECT_CANCEL: {
            const char *id = jstr(e, "id");
            json_array_append_new(rem, id ? json_pack("[s,s]", "c", id) : json_pack("[s]", "c"));
            break;
        }
        case FB_EFFECT_ESCALATE: {
            const char *reason = jstr(e, "reason") ? jstr(e, "reason") : "";
            const char *summary = jstr(e, "summary") ? jstr(e, "summary") : "";
            json_object_set_new(co->ops, "ticket", json_pack("[s,s]", reason, summary));
            break;
        }
        case FB_EFFECT_STAT:
            if (jstr(e, "name"))
                json_array_append_new(stats, json_string(jstr(e, "name")));
            break;
        case FB_EFFECT_STEP: {
            const char *status = jstr(e, "status");
            if (status) {
                char name[64];
                snprintf(name, sizeof(name), "step_%s", status);
                json_array_append_new(stats, json_string(name));
            }
            break;
        }
        case FB_EFFECT_AVIS: {
            json_int_t note = json_integer_value(json_object_get(e, "note"));
            const char *comment = jstr(e, "commentaire");
            if (json_is_integer(json_object_get(e, "note")) && note >= 1 && note <= 5)
                json_array_append_new(avis, comment && comment[0]
                                                ? json_pack("[I,s]", note, comment)
                                                : json_pack("[I]", note));
            else
                FB_DEBUG(ROUTER, "[%s] avis effect without a note 1..5 ignored", c->tag);
            break;
        }
        case FB_EFFECT_FORGET:
            co->forget = true;
            break;
        case FB_EFFECT_END:
            break;
        }
    }
    json_object_set_new(co->ops, "out", out);
    json_object_set_new(co->ops, "rem", rem);
    json_object_set_new(co->ops, "stats", stats);
    json_object_set_new(co->ops, "avis", avis);
}

/* A duplicate event of an adapter whose history is its delivery, or a COMMIT without an answer:
 * what a COMMIT stored there was maybe never pushed (its answer lost: Redis restarted, a
 * deadline), and no outbox entry will send it, so the adapter is told (committed() with no
 * output) to push it again. A reminder or a hand-back whose COMMIT ran without an answer is never
 * delivered again (the COMMIT re-armed the reminder, closed the ticket): nothing else would. */
static void duplicate_committed(const struct job *j)
{
    struct conv *c = j->c;
    fb_router_t *r = c->r;
    if (r->stopping)
        return;
    struct adapter_slot *slot = adapter_by_name(r, c->name);
    if (slot && slot->started && !slot->stopped && slot->a.ops->committed &&
        (slot->a.ops->caps & FB_ADAPTER_CAP_HISTORY_DELIVERS))
        slot->a.ops->committed(&slot->a, c->key + strlen(c->name) + 1, NULL, 0,
                               j->timer || j->handback ? NULL : j->arg);
}

static void on_commit(int status, const redisReply *rep, void *arg)
{
    struct job *j = arg;
    struct conv *c = j->c;
    fb_router_t *r = c->r;
    r->inflight--;
    if (status != 0) {
        FB_WARN(ROUTER, "[%s] event not recorded: %s", c->tag, fb_strerror(status));
        duplicate_committed(j); /* or recorded, its answer lost */
        job_finish(j, inbound_status(status));
        return;
    }
    if (!fb_redis_reply_array(rep, 2, FB_REDIS_NOMAX, "i")) {
        job_finish(j, FB_EAGAIN);
        return;
    }
    long long code = rep->element[0]->integer;
    if (code == 2) {
        r->st.duplicates++;
        FB_DEBUG(ROUTER, "[%s] duplicate event (found at commit)", c->tag);
        duplicate_committed(j);
        job_finish(j, 0);
    } else if (code == 3) {
        FB_DEBUG(ROUTER, "[%s] refused by the adapter's COMMIT fragment: no conversation", c->tag);
        job_finish(j, FB_ENOENT);
    } else if (code == 0) {
        r->st.conflicts++;
        if (++j->reruns > MAX_RERUNS || r->stopping) {
            FB_WARN(ROUTER, "[%s] gave up after %u version conflicts", c->tag, j->reruns);
            job_finish(j, r->stopping ? FB_ECANCELED : FB_EAGAIN);
            return;
        }
        FB_DEBUG(ROUTER, "[%s] version conflict, running the event again", c->tag);
        job_start(j);
    } else {
        r->st.events++;
        fb_metrics_event(kind_name(j));
        /* The adapter fragment's AO, for its committed(): before the deliver callback, in this
         * turn of the loop, before any later Redis answer (the pushes keep Redis's order). */
        const redisReply *ao = rep->elements > 3 ? rep->element[3] : NULL;
        if (ao && ao->type == REDIS_REPLY_STRING && !r->stopping) {
            struct adapter_slot *slot = adapter_by_name(r, c->name);
            if (slot && slot->started && !slot->stopped && slot->a.ops->committed)
                slot->a.ops->committed(&slot->a, c->key + strlen(c->name) + 1, ao->str, ao->len,
                                       j->timer || j->handback ? NULL : j->arg);
        }
        /* No head although the event said something: the adapter's fragment delivered it all
         * (AD, FB_ADAPTER_CAP_HISTORY_DELIVERS), nothing was queued. */
        const redisReply *head = rep->elements > 2 ? rep->element[2] : NULL;
        if (j->says > 0 && head && head->type == REDIS_REPLY_STRING) {
            json_decref(c->ob_built); /* entries an earlier event queued are parsed when read */
            c->ob_built = j->built;
            c->ob_chain = false; /* the head being sent, if any, was not the first of these */
            j->built = NULL;
            ob_kick_head(c, head);
        } else if (j->no_head && head && head->type == REDIS_REPLY_INTEGER) {
            /* The outbox was busy when the COMMIT left: it sees these entries next (POP returns
             * the next head, or ob_again reads it), the first of them taken from ob_built, and
             * the rest of their chain sent from memory. */
            json_decref(c->ob_built);
            c->ob_built = j->built;
            c->ob_chain = false;
            j->built = NULL;
            ob_kick(c);
        }
        for (size_t i = 4; i < rep->elements; i++) /* outboxes the escalation wrote to */
            if (rep->element[i]->type == REDIS_REPLY_STRING)
                fb_router_kick(r, rep->element[i]->str);
        job_finish(j, 0);
    }
}

/* True when a reminder must not go out: the user's last event (`activity`, ms, "" unknown) is
 * older than reminders.inactive_months (30-day months; 0: never). */
static bool inactive(const fb_router_t *r, const char *activity, int64_t now)
{
    unsigned months = r->cfg->reminders.inactive_months;
    long long a = activity && activity[0] ? strtoll(activity, NULL, 10) : 0;
    return months > 0 && a > 0 && now - a > (int64_t)months * 30 * 86400000LL;
}

/*
 * True when reminder due at `due` (ms, 0: unknown) must wait: the user's last event (`activity`,
 * ms, "" unknown) + the reminder's delay (`delay`, ms, < 0: unknown) is later than `due`. The
 * push-back is lazy (issue 17): a user's event no longer moves the armed reminders; the reminder
 * falls due at its scheduled time, and is held here and armed again at `activity` + `delay`
 * (the COMMIT's rearm), which is where the eager push-back would have put it. Without a known
 * delay, only a user event later than `due` holds it (the user wrote while it was claimed). A
 * reminder scheduled at or after the user's last event is due no earlier than that event + its
 * delay, so it is never held; the comparison mixes the scheduler's due time and the router's
 * clock of the user's event (NTP, as the leases: REMINDERS.md).
 */
static bool held(int64_t due, int64_t delay, const char *activity)
{
    long long a = activity && activity[0] ? strtoll(activity, NULL, 10) : 0;
    return due > 0 && a > 0 && a + (delay > 0 ? delay : 0) > due;
}

/* The roadmap page's token for job `j`: `stored` when it is one (a 48-hex-digit string), else a
 * new one from the system's random source (kept only if a message of this step gives it). */
static int roadmap_token(struct job *j, const char *stored)
{
    if (strlen(stored) == ROADMAP_TOKEN_LEN &&
        strspn(stored, "0123456789abcdef") == ROADMAP_TOKEN_LEN) {
        memcpy(j->rm_token, stored, sizeof(j->rm_token));
        j->rm_new = false;
        return 0;
    }
    unsigned char raw[ROADMAP_TOKEN_BYTES];
    if (uv_random(NULL, NULL, raw, sizeof(raw), 0, NULL) != 0)
        return FB_ESYS;
    fb_hex(raw, sizeof(raw), j->rm_token);
    memset(raw, 0, sizeof(raw));
    j->rm_new = true;
    return 0;
}

/* True when a `say` of `effects` gives the token (the page's address): then it must be stored. */
static bool roadmap_token_said(const json_t *effects, const char *token)
{
    size_t i;
    const json_t *e;
    json_array_foreach(effects, i, e)
    {
        const char *t = json_string_value(json_object_get(e, "text"));
        if (fb_effect_type(e) == FB_EFFECT_SAY && t && strstr(t, token))
            return true;
    }
    return false;
}

/* The engine's event for job `j`. */
static fb_event_t job_event(const struct job *j)
{
    fb_event_t ev = {0};
    switch (j->kind) {
    case FB_IN_START:
        ev.kind = FB_EVENT_START;
        break;
    case FB_IN_MESSAGE:
        ev.kind = FB_EVENT_MESSAGE;
        ev.text = j->text;
        break;
    case FB_IN_CHOICE:
        ev.kind = FB_EVENT_CHOICE;
        ev.choice = j->choice;
        break;
    case FB_IN_FORGET:
        ev.kind = FB_EVENT_FORGET;
        break;
    }
    if (j->timer) {
        ev.kind = FB_EVENT_TIMER;
        ev.timer = j->timer;
    }
    if (j->handback)
        ev.kind = FB_EVENT_HANDBACK;
    return ev;
}

/* What the engine knows of the daemon at Unix ms `now_ms`: the clock, the geography, the dialog
 * versions, whether advisors answer. The callers add what is their own (the roadmap's address). */
static fb_engine_env_t engine_env(const fb_router_t *r, int64_t now_ms)
{
    fb_engine_env_t env = {
        .now = now_ms / 1000,
        .locale = "fr",
        .geo = r->geo,
        .versions = (const fb_dialog_t *const *)r->versions,
        .n_versions = r->nversions,
        .has_advisor = r->has_advisor,
        .has_advisor_arg = r->has_advisor_arg,
    };
    return env;
}

/*
 * Runs the engine on `session` (borrowed) for job `j`, or drops a reminder that must not go out
 * (j->dropped; *rearm when it is armed again). 0 with *ns and *effects new, or an error.
 */
static int job_run(struct job *j, const json_t *session, const char *activity, int64_t now,
                   json_t **ns /* OUT */, json_t **effects /* OUT */, bool *rearm /* OUT */)
{
    struct conv *c = j->c;
    fb_router_t *r = c->r;
    fb_event_t ev = job_event(j);
    const char *base = r->cfg->server.public_url;
    char *url = base && base[0] ? fb_asprintf("%s" ROADMAP_PATH "%s", base, j->rm_token) : NULL;
    fb_engine_env_t env = engine_env(r, now);
    env.roadmap_url = url;
    /* Never promise a later message a platform cannot deliver (issue #16): a web chat's user is
     * reached later only through a follow-up adapter (e-mail), which the texts then offer. */
    const struct adapter_slot *home = adapter_by_name(r, c->name);
    env.unreachable = home && (home->a.ops->caps & FB_ADAPTER_CAP_PRESENT_ONLY);
    for (size_t i = 0; i < r->nadapters; i++)
        if (r->adapters[i]->started && (r->adapters[i]->a.ops->caps & FB_ADAPTER_CAP_FOLLOWUP))
            env.mail_offer = true;
    *ns = NULL;
    *effects = NULL;
    *rearm = false;
    if (j->timer && inactive(r, activity, now)) {
        /* No reminder for an abandoned conversation: cancel it, the session left as it is. */
        FB_INFO(ROUTER, "[%s] reminder '%s' dropped: no activity for %u months", c->tag, j->timer,
                r->cfg->reminders.inactive_months);
        j->dropped = true;
        *effects =
            json_pack("[{s:s, s:s}]", "type", fb_effect_name(FB_EFFECT_CANCEL), "id", j->timer);
        fb_free(url);
        return 0;
    }
    if (j->timer && held(j->due, j->delay, activity)) {
        /* The user wrote since it was armed: not sent now; armed again from that activity. */
        FB_INFO(ROUTER, "[%s] reminder '%s' postponed: the user wrote since it was armed", c->tag,
                j->timer);
        j->dropped = true;
        *rearm = true;
        *effects = json_array();
        fb_free(url);
        return 0;
    }
    int rc = fb_engine_step(r->dialog, session, &ev, &env, ns, effects);
    if (rc == FB_EINVAL && session) {
        FB_WARN(ROUTER, "[%s] stored session refused by the engine: starting over", c->tag);
        rc = fb_engine_step(r->dialog, NULL, &ev, &env, ns, effects);
    }
    fb_free(url);
    return rc;
}

/*
 * Sends the COMMIT of job `j`: the keys (the router's, the features', the adapter's), then the
 * arguments (see commit_head_src). `ops`, `sdata` (NULL: none) and `mode` are the script's
 * ARGV 9, 2 and 3; the strings of `out` (an array: the outbox entries) follow ARGV 12.
 * Returns fb_store_eval()'s result (0: on_commit called later).
 */
/*
 * The history forms of the `n` outbox entries e[0..n) (JSON objects as strings, e_len[i] bytes),
 * for an adapter whose history is its delivery (FB_ADAPTER_CAP_HISTORY_DELIVERS: the web chat):
 * each entry's {"from":"bot","text":...,"html":... when not empty,"choices":... when not empty,
 * "ts":now} without its opening brace, so that the adapter's COMMIT fragment makes the history
 * entry with one concatenation, '{"seq":N,' .. form, instead of a cjson.decode and a cjson.encode
 * of each reply inside Redis (issue 17, point 2: the largest part of Redis's work per web
 * message; docs/internals/REDIS.md, "Redis work per message"). A say's form is taken from
 * `known` ({entry bytes: form}, say_form(): no parse); any other entry (a feature's, or one a
 * feature rewrote) is parsed and its form dumped to `b`. The forms are placed at e[n..2n) and
 * e_len[n..2n) (pointers into `known` and `b`, valid until they change). Returns 0, or a negative
 * code when an entry is not a JSON object or `b` is full (then none is placed: the fragment
 * decodes the entries itself, as before).
 */
static int history_forms(const char **e, size_t *e_len, size_t n, int64_t now, const json_t *known,
                         fb_buf_t *b)
{
    size_t *at = fb_calloc(n, sizeof(*at)); /* 1 + the form's offset in b, 0 for a known one */
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const json_t *k = known ? json_object_getn(known, e[i], e_len[i]) : NULL;
        if (k) {
            e[n + i] = json_string_value(k);
            e_len[n + i] = json_string_length(k);
            continue;
        }
        json_t *o = fb_json_loadb(e[i], e_len[i]);
        if (!json_is_object(o)) {
            json_decref(o);
            rc = FB_EINVAL;
            break;
        }
        json_t *text = json_object_get(o, "text"), *html = json_object_get(o, "html");
        json_t *choices = json_object_get(o, "choices");
        json_t *h = json_object();
        json_object_set_new_nocheck(h, "from", json_string_nocheck("bot"));
        json_object_set_new_nocheck(h, "text",
                                    json_is_string(text) ? json_incref(text) : json_string(""));
        if (json_is_string(html) && json_string_length(html) > 0)
            json_object_set_nocheck(h, "html", html);
        if (json_is_array(choices) && json_array_size(choices) > 0)
            json_object_set_nocheck(h, "choices", choices);
        json_object_set_new_nocheck(h, "ts", json_integer((json_int_t)now));
        size_t from = b->len;
        rc = fb_json_dump(h, b);
        at[i] = 1 + from;
        e_len[n + i] = b->len - from - 1;
        json_decref(h);
        json_decref(o);
    }
    for (size_t i = 0; rc == 0 && i < n; i++) /* b is complete: it no longer moves */
        if (at[i])
            e[n + i] = b->data + at[i]; /* after the '{' */
    fb_free(at);
    return rc;
}

static int commit_send(struct job *j, uint64_t version, const fb_feature_step_t *st,
                       const char *ops, const json_t *out, const json_t *forms, const char *sdata,
                       const char *mode)
{
    _Static_assert(COMMIT_ARGS == 13, "commit_head_src reads the entries from ARGV[14]");
    struct conv *c = j->c;
    fb_router_t *r = c->r;
    size_t nout = json_array_size(out);
    size_t cap = MAX_COMMIT_KEYS + COMMIT_ARGS + 2 * nout;
    const char **args = fb_malloc(cap * sizeof(*args));
    size_t *lens = fb_malloc(cap * sizeof(*lens));
    char *owned[MAX_COMMIT_KEYS];
    size_t nkeys = 0, nowned = 0;
    static const char *const conv_suffix[N_CORE_KEYS] = {
        [CK_SESSION] = FB_KEY_SESSION,     [CK_EVENT] = FB_KEY_MARKS,   [CK_OUTBOX] = FB_KEY_OUTBOX,
        [CK_REMINDERS] = FB_KEY_REMINDERS, [CK_TICKET] = FB_KEY_TICKET, [CK_PARKED] = FB_KEY_PARKED,
        [CK_ROADMAP] = FB_KEY_ROADMAP};
    for (size_t i = 0; i < CK_PENDING; i++) {
        if (conv_suffix[i])
            args[nkeys++] = owned[nowned++] = ckey(c, conv_suffix[i]);
    }
    /* the globals, in core_keys[] order after the conversation's */
    FB_ASSERT(nkeys == CK_PENDING);
    args[nkeys++] = r->k_pending;
    args[nkeys++] = r->k_due;
    args[nkeys++] = r->k_stats;
    args[nkeys++] = r->k_avis;
    args[nkeys++] = r->k_roadmap_ix;
    for (size_t f = 0; f < r->nfeatures; f++) {
        const struct feature_slot *fs = &r->features[f];
        for (size_t i = 0; i < fs->ops->nkeys; i++) {
            const fb_feature_key_t *k = &fs->ops->keys[i];
            if (k->kind == FB_FKEY_GLOBAL)
                args[nkeys++] = fs->global[i];
            else
                args[nkeys++] = owned[nowned++] =
                    k->kind == FB_FKEY_CONV ? ckey(c, k->suffix) : k->make(st);
        }
    }
    const struct adapter_slot *slot = adapter_by_name(r, c->name);
    for (const char *const *k = slot ? slot->a.ops->conv_keys : NULL;
         k && *k && nkeys < MAX_COMMIT_KEYS; k++)
        args[nkeys++] = owned[nowned++] = ckey(c, *k);
    char ttl[24], dttl[24], nowbuf[24], noutbuf[24];
    /* the version READ saw, and the session's birth with it (commit_head_src) */
    char *expected = j->born ? fb_asprintf("%llu:%s", (unsigned long long)version, j->born)
                             : fb_asprintf("%llu", (unsigned long long)version);
    snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)fb_store_session_ttl_ms(r->store));
    snprintf(dttl, sizeof(dttl), "%llu",
             (unsigned long long)r->cfg->router.dedupe_retention_hours * DEDUPE_MS_PER_H);
    snprintf(nowbuf, sizeof(nowbuf), "%lld", (long long)st->now);
    const char **argv = args + nkeys; /* COMMIT_ARGS of them */
    argv[0] = expected;
    argv[1] = sdata ? sdata : "";
    argv[2] = mode;
    argv[3] = st->wid;
    argv[4] = ttl;
    argv[5] = dttl;
    argv[6] = nowbuf;
    argv[7] = c->key;
    argv[8] = ops ? ops : "{\"rem\":[],\"stats\":[],\"avis\":[]}";
    argv[9] = j->timer || j->handback ? "0" : "1";
    argv[10] = j->event_id;
    argv[11] = j->commit_arg ? j->commit_arg : "";
    argv[12] = noutbuf;
    /* the entries, as they are (binary-safe, their length known): no escaping, no cjson */
    size_t nargs = COMMIT_ARGS, first = nkeys + COMMIT_ARGS, nstr = 0;
    for (size_t i = 0; i < nout; i++) {
        const json_t *e = json_array_get(out, i);
        if (!json_is_string(e))
            continue;
        args[nkeys + nargs] = json_string_value(e);
        lens[nkeys + nargs++] = json_string_length(e);
        nstr++;
    }
    snprintf(noutbuf, sizeof(noutbuf), "%zu", nstr);
    for (size_t i = 0; i < first; i++)
        lens[i] = strlen(args[i]);
    /* their history forms, for an adapter whose history is its delivery */
    fb_buf_t hist;
    fb_buf_init(&hist, (size_t)1 << 26); /* 64 MiB, as the session's */
    if (nstr && slot && (slot->a.ops->caps & FB_ADAPTER_CAP_HISTORY_DELIVERS) &&
        history_forms(args + first, lens + first, nstr, st->now, forms, &hist) == 0)
        nargs += nstr;
    int rc = fb_store_eval(r->store, &r->s_commit, FB_REDIS_RETRY, nkeys, nargs, args, lens,
                           on_commit, j);
    fb_buf_free(&hist);
    for (size_t i = 0; i < nowned; i++)
        fb_free(owned[i]);
    fb_free(expected);
    fb_free(lens);
    fb_free(args);
    return rc;
}

/* Runs the engine on the loaded session, gathers the features' ops and sends the COMMIT. */
static void job_step(struct job *j, uint64_t version, const char *data, size_t len,
                     const char *activity)
{
    struct conv *c = j->c;
    fb_router_t *r = c->r;
    json_t *session = NULL;
    if (len > 0) {
        session = fb_engine_session_loadb(r->dialog, data, len); /* common/json.h, faster */
        if (!session) {
            /* The fast reader refuses what jansson refuses; should they ever differ, the
             * session is kept (read by jansson) rather than started over. */
            session = json_loadb(data, len, 0, NULL);
            if (session)
                FB_ERR(ROUTER, "[%s] stored session refused by the fast reader, read by jansson",
                       c->tag);
            else
                FB_WARN(ROUTER, "[%s] stored session is not JSON: starting over", c->tag);
        }
    }
    int64_t now = fb_wall_ms();
    json_t *ns = NULL, *effects = NULL;
    bool rearm = false;
    int rc = job_run(j, session, activity, now, &ns, &effects, &rearm);
    if (rc != 0) {
        json_decref(session);
        FB_WARN(ROUTER, "[%s] the engine refused the event: %s", c->tag, fb_strerror(rc));
        job_finish(j, FB_EINVAL);
        return;
    }
    if (r->step_hook)
        r->step_hook(r->step_hook_arg, c->key, effects);
    struct commit_ops co;
    build_ops(j, effects, now, &co);
    json_decref(j->built); /* a rerun's: this attempt's entries replace them */
    j->built = co.built;
    if (rearm)
        json_object_set_new(co.ops, "rearm", json_string(j->timer));
    if (j->rm_new && !co.forget && roadmap_token_said(effects, j->rm_token)) {
        unsigned char h[32];
        char hex[65];
        fb_sha256(j->rm_token, strlen(j->rm_token), h);
        fb_hex(h, sizeof(h), hex);
        json_object_set_new(co.ops, "roadmap", json_pack("[ss]", j->rm_token, hex));
    }
    char wid[24];
    snprintf(wid, sizeof(wid), "%016llx", (unsigned long long)job_hash(j));
    bool user = !j->timer && !j->handback;
    fb_feature_step_t st = {
        .key = c->key,
        .prefix = fb_store_prefix(r->store),
        .old_session = session,
        .session = ns,
        .effects = effects,
        .text = j->kind == FB_IN_MESSAGE && user ? j->text : NULL,
        .wid = wid,
        .geo = r->geo,
        .user = user,
        .forget_event = j->kind == FB_IN_FORGET,
        .handback = j->handback,
        .forget = co.forget,
        .now = now,
    };
    for (size_t f = 0; f < r->nfeatures; f++)
        if (r->features[f].ops->commit_ops)
            r->features[f].ops->commit_ops(r->features[f].self, &st, co.ops, &co.says);
    j->says = co.says;
    /* This daemon is busy with the conversation's outbox (reading, sending, popping it): the
     * entries this event queues behind are seen by that work (POP returns the next head), so
     * the COMMIT need not read an older head (`nh`: no LINDEX, issue 17). */
    j->no_head = co.says > 0 && c->ob != OB_IDLE && c->ob != OB_WAITING;
    if (j->no_head)
        json_object_set_new(co.ops, "nh", json_true());
    /* The entries go to the COMMIT as their own arguments, not inside the ops' JSON. */
    json_t *out = json_incref(json_object_get(co.ops, "out"));
    json_object_del(co.ops, "out");
    /* json_dumps(JSON_COMPACT)'s bytes, faster (common/json.h) */
    fb_buf_t obuf;
    fb_buf_init(&obuf, ENTRY_MAX);
    const char *ops = NULL;
    if (fb_json_dump(co.ops, &obuf) == 0)
        ops = fb_buf_str(&obuf);
    else /* out of memory or past ENTRY_MAX (a string not UTF-8 cannot be: jansson checked it
          * when the ops were built): the reminders and counters are lost */
        FB_ERR(ROUTER, "[%s] the event's operations cannot be written: committed without them",
               c->tag);
    fb_buf_t sbuf;
    fb_buf_init(&sbuf, (size_t)1 << 26); /* 64 MiB: json_dumps() had no bound */
    const char *sdata = NULL;
    if (!co.forget && ns && !json_is_null(ns)) {
        int drc = fb_json_dump(ns, &sbuf);
        if (drc == 0)
            sdata = fb_buf_str(&sbuf);
        else /* the reply still goes out; the session stays as it was */
            FB_ERR(ROUTER, "[%s] the new session cannot be written (%s): not saved", c->tag,
                   fb_strerror(drc));
    }
    const char *mode = co.forget ? "f" : sdata ? "w" : "n";
    rc = commit_send(j, version, &st, ops, out, co.forms, sdata, mode);
    json_decref(out);
    json_decref(co.forms);
    json_decref(co.ops);
    json_decref(session);
    json_decref(ns);
    json_decref(effects);
    fb_buf_free(&sbuf);
    fb_buf_free(&obuf);
    if (rc != 0) {
        job_finish(j, inbound_status(rc));
        return;
    }
    r->inflight++;
}

/*
 * READ: plain commands sent one behind the other in one write (one round trip, FB_REDIS_PIPELINED
 * on all but the first), answered in their order: HMGET of the session (v, d, a), the roadmap
 * page's token (HGET, only when the page has an address: server.public_url; without it no
 * message shows a link), an older daemon's string mark of this event (EXISTS, only while one may
 * still exist: the retention has not passed since FB_KEY_MARKS_SINCE), then the event's dedupe
 * mark (ZSCORE in the zset {c:K}:ev), last. Not atomic, and need not be: the mark is read after
 * the session, so a mark absent then was absent when the session was read, and the session read
 * does not hold this event's effects; were it handled after that read (another daemon, a
 * resend), its COMMIT changed the version and this one's COMMIT conflicts, and the rerun's READ
 * sees the mark. A mark counts for the retention after its time, as the string keys' PX did (the
 * COMMITs trim the zset only now and then). Issue 17: the READ script cost Redis 51,500
 * instructions, its commands sent plainly 11,000 (docs/internals/REDIS.md).
 */
struct read {
    struct job *j;
    unsigned left;       /* commands sent, not answered yet */
    int status;          /* the first failure, or 0 */
    bool dup;            /* a dedupe mark says the event was handled already */
    long long since;     /* a mark counts when its time is above this: now - the retention */
    char *v, *d, *a, *b; /* the session's fields (copies; NULL: none) */
    size_t dlen;
    char token[ROADMAP_TOKEN_LEN + 1]; /* the roadmap page's stored token, "" when none */
};

static void read_done(struct read *rd)
{
    struct job *j = rd->j;
    struct conv *c = j->c;
    fb_router_t *r = c->r;
    if (rd->status != 0) {
        FB_WARN(ROUTER, "[%s] cannot load the session: %s", c->tag, fb_strerror(rd->status));
        job_finish(j, inbound_status(rd->status));
    } else if (rd->dup) {
        r->st.duplicates++;
        FB_DEBUG(ROUTER, "[%s] duplicate event", c->tag);
        duplicate_committed(j);
        job_finish(j, 0);
    } else if (r->stopping) {
        job_finish(j, FB_ECANCELED);
    } else if (roadmap_token(j, rd->token) != 0) {
        job_finish(j, FB_EAGAIN);
    } else {
        unsigned long long v = rd->v ? strtoull(rd->v, NULL, 10) : 0;
        fb_free(j->born);
        j->born = rd->b; /* the COMMIT expects this session, not a later one of the same key */
        rd->b = NULL;
        job_step(j, (uint64_t)v, rd->d ? rd->d : "", rd->d ? rd->dlen : 0, rd->a ? rd->a : "");
    }
    fb_free(rd->v);
    fb_free(rd->d);
    fb_free(rd->a);
    fb_free(rd->b);
    fb_free(rd);
}

/* Every answer of the READ: `status` and the shape checked; done after the last. */
static struct read *read_part(int status, const redisReply *rep, void *arg, bool *ok /* OUT */)
{
    struct read *rd = arg;
    rd->j->c->r->inflight--;
    rd->left--;
    *ok = false;
    if (status != 0) {
        if (rd->status == 0)
            rd->status = status;
    } else if (!rep) {
        if (rd->status == 0)
            rd->status = FB_EAGAIN;
    } else {
        *ok = rd->status == 0;
    }
    return rd;
}

static void read_finish(struct read *rd)
{
    if (rd->left == 0)
        read_done(rd);
}

static char *reply_dup(const redisReply *rep, size_t *len /* OUT */)
{
    size_t n = 0;
    const char *s = fb_redis_reply_str(rep, &n);
    if (!s)
        return NULL;
    if (len)
        *len = n;
    return fb_strndup(s, n);
}

static void on_read_session(int status, const redisReply *rep, void *arg)
{
    bool ok;
    struct read *rd = read_part(status, rep, arg, &ok);
    if (ok && !fb_redis_reply_array(rep, 4, 4, NULL))
        rd->status = FB_EAGAIN;
    else if (ok) {
        rd->v = reply_dup(rep->element[0], NULL);
        rd->d = reply_dup(rep->element[1], &rd->dlen);
        rd->a = reply_dup(rep->element[2], NULL);
        rd->b = reply_dup(rep->element[3], NULL);
    }
    read_finish(rd);
}

static void on_read_token(int status, const redisReply *rep, void *arg)
{
    bool ok;
    struct read *rd = read_part(status, rep, arg, &ok);
    size_t n = 0;
    const char *t = ok ? fb_redis_reply_str(rep, &n) : NULL;
    if (t && n == ROADMAP_TOKEN_LEN)
        memcpy(rd->token, t, n + 1);
    read_finish(rd);
}

static void on_read_old_mark(int status, const redisReply *rep, void *arg)
{
    bool ok;
    struct read *rd = read_part(status, rep, arg, &ok);
    long long n = 0;
    if (ok && fb_redis_reply_int(rep, &n) && n == 1)
        rd->dup = true;
    read_finish(rd);
}

static void on_read_mark(int status, const redisReply *rep, void *arg)
{
    bool ok;
    struct read *rd = read_part(status, rep, arg, &ok);
    const char *score = ok ? fb_redis_reply_str(rep, NULL) : NULL;
    if (score && strtod(score, NULL) > (double)rd->since)
        rd->dup = true;
    read_finish(rd);
}

/* Runs (or reruns after a conflict) the head job: READ first. */
static void job_start(struct job *j)
{
    struct conv *c = j->c;
    fb_router_t *r = c->r;
    c->busy = true;
    if (r->stopping) {
        job_finish(j, FB_ECANCELED);
        return;
    }
    int64_t t = fb_wall_ms();
    uint64_t keep_ms = (uint64_t)r->cfg->router.dedupe_retention_hours * DEDUPE_MS_PER_H;
    /* an older daemon's marks: only during the retention after the upgrade (unknown: maybe) */
    bool older =
        r->marks_since < 0 || (r->marks_since > 0 && t - r->marks_since < (int64_t)keep_ms);
    bool road = r->cfg->server.public_url && *r->cfg->server.public_url;
    char *k_session = ckey(c, FB_KEY_SESSION);
    char *k_road = road ? ckey(c, FB_KEY_ROADMAP) : NULL;
    char *evsuffix = older ? fb_asprintf(FB_KEY_EVENT "%s", j->event_id) : NULL;
    char *k_ev = older ? ckey(c, evsuffix) : NULL;
    char *k_marks = ckey(c, FB_KEY_MARKS);
    struct read *rd = fb_calloc(1, sizeof(*rd));
    rd->j = j;
    rd->since = (long long)t - (long long)keep_ms;
    const char *hmget[] = {"HMGET",         k_session,           FB_SESSION_VERSION,
                           FB_SESSION_DATA, FB_SESSION_ACTIVITY, FB_SESSION_BIRTH};
    const char *hget[] = {"HGET", k_road, "t"};
    const char *exists[] = {"EXISTS", k_ev};
    const char *zscore[] = {"ZSCORE", k_marks, j->event_id};
    const int more = FB_REDIS_RETRY | FB_REDIS_PIPELINED;
    int rc = fb_store_command(r->store, FB_REDIS_RETRY, 6, hmget, on_read_session, rd);
    if (rc == 0) {
        rd->left++;
        r->inflight++;
        if (road && (rc = fb_store_command(r->store, more, 3, hget, on_read_token, rd)) == 0) {
            rd->left++;
            r->inflight++;
        }
        if (rc == 0 && older &&
            (rc = fb_store_command(r->store, more, 2, exists, on_read_old_mark, rd)) == 0) {
            rd->left++;
            r->inflight++;
        }
        if (rc == 0 && (rc = fb_store_command(r->store, more, 3, zscore, on_read_mark, rd)) == 0) {
            rd->left++;
            r->inflight++;
        }
        if (rc != 0)
            rd->status = rc; /* the commands sent answer later: read_done() then */
    }
    fb_free(k_marks);
    fb_free(k_session);
    fb_free(k_ev);
    fb_free(k_road);
    fb_free(evsuffix);
    if (rd->left == 0) {
        fb_free(rd);
        job_finish(j, inbound_status(rc));
    }
}

/* ---- the core offered to adapters ------------------------------------------------------- */

static int deliver_clean(fb_adapter_t *a, struct adapter_slot *s, const fb_inbound_t *ev,
                         fb_inbound_cb cb, void *arg);

static int core_deliver(fb_adapter_t *a, const fb_inbound_t *ev, fb_inbound_cb cb, void *arg)
{
    struct adapter_slot *s = a ? a->core_data : NULL;
    if (!s || !ev || !cb)
        return FB_EINVAL;
    fb_router_t *r = s->r;
    if (r->stopping)
        return FB_ECANCELED;
    /* The one rule for control characters (fb_utf8_clean_text()), before anything sees the text:
     * features (an advisor's relay), the engine, the session. A message left with nothing
     * readable is malformed; the adapters apply the same rule first, to tell the user. */
    fb_inbound_t clean = *ev;
    char *text = NULL;
    if (ev->kind == FB_IN_MESSAGE && ev->text && strlen(ev->text) <= MAX_TEXT) {
        text = fb_strdup(ev->text);
        if (fb_utf8_clean_text(text) > 0 && fb_utf8_blank(text)) {
            fb_free(text);
            return FB_EINVAL;
        }
        clean.text = text;
    }
    int rc = deliver_clean(a, s, &clean, cb, arg);
    fb_free(text);
    return rc;
}

/* deliver() once the text is cleaned: `ev` is borrowed for the call. */
static int deliver_clean(fb_adapter_t *a, struct adapter_slot *s, const fb_inbound_t *ev,
                         fb_inbound_cb cb, void *arg)
{
    fb_router_t *r = s->r;
    for (size_t f = 0; f < r->nfeatures; f++) {
        const struct feature_slot *fs = &r->features[f];
        int rc =
            fs->ops->inbound ? fs->ops->inbound(fs->self, a->ops->name, ev, cb, arg) : FB_DECLINED;
        if (rc != FB_DECLINED)
            return rc; /* the feature's own event (advisors' rooms) */
    }
    size_t name_len = strlen(a->ops->name);
    if (ev->kind < FB_IN_START || ev->kind > FB_IN_FORGET ||
        !valid_text(ev->conv, FB_STORE_MAX_CONV_KEY - name_len - 1) ||
        !valid_text(ev->event_id, MAX_EVENT_ID) ||
        (ev->kind == FB_IN_MESSAGE && !valid_text(ev->text, MAX_TEXT)) ||
        (ev->kind == FB_IN_CHOICE && !valid_text(ev->choice, MAX_CHOICE)))
        return FB_EINVAL;
    char *key = fb_asprintf("%s:%s", a->ops->name, ev->conv);
    struct conv *c = conv_get(r, key);
    fb_free(key);
    if (!c)
        return FB_EINVAL;
    if (c->njobs >= r->cfg->router.max_queued_per_conversation) {
        FB_DEBUG(ROUTER, "[%s] too many events queued: refused for now", c->tag);
        conv_maybe_free(c);
        return FB_EAGAIN;
    }
    if (r->njobs >= r->cfg->router.max_queued_events) {
        /* Backpressure: the platform keeps the event and sends it again (the Matrix homeserver
         * gets a retryable 503, the web page resends); memory and the Redis queue stay bounded. */
        r->st.busy++;
        FB_DEBUG(ROUTER, "[%s] %zu events in the router: refused for now", c->tag, r->njobs);
        conv_maybe_free(c);
        return FB_EAGAIN;
    }
    struct job *j = fb_calloc(1, sizeof(*j));
    j->c = c;
    j->kind = ev->kind;
    j->event_id = fb_strdup(ev->event_id);
    j->text = ev->kind == FB_IN_MESSAGE ? fb_strdup(ev->text) : NULL;
    j->choice = ev->kind == FB_IN_CHOICE ? fb_strdup(ev->choice) : NULL;
    j->commit_arg = ev->commit_arg ? fb_strdup(ev->commit_arg) : NULL;
    j->cb = cb;
    j->arg = arg;
    job_queue(j);
    return 0;
}

int fb_router_reminder(fb_router_t *r, const char *key, const char *timer, int64_t due_ms,
                       int64_t delay_ms, const char *event_id, fb_inbound_cb cb, void *arg)
{
    if (!r || !cb)
        return FB_EINVAL;
    if (r->stopping)
        return FB_ECANCELED;
    if (!valid_text(key, FB_STORE_MAX_CONV_KEY) || !valid_text(timer, MAX_CHOICE) ||
        !valid_text(event_id, MAX_EVENT_ID))
        return FB_EINVAL;
    struct conv *c = conv_get(r, key);
    if (!c)
        return FB_EINVAL;
    struct job *j = fb_calloc(1, sizeof(*j));
    j->c = c;
    j->kind = FB_IN_START; /* unused: `timer` makes it a TIMER event */
    j->timer = fb_strdup(timer);
    j->due = due_ms;
    j->delay = delay_ms;
    j->event_id = fb_strdup(event_id);
    j->cb = cb;
    j->arg = arg;
    job_queue(j); /* not limited by max_queued_per_conversation: the scheduler bounds its batch */
    return 0;
}

int fb_router_handback(fb_router_t *r, const char *key, const char *event_id, fb_inbound_cb cb,
                       void *arg)
{
    if (!r || !cb)
        return FB_EINVAL;
    if (r->stopping)
        return FB_ECANCELED;
    if (!valid_text(key, FB_STORE_MAX_CONV_KEY) || !valid_text(event_id, MAX_EVENT_ID))
        return FB_EINVAL;
    struct conv *c = conv_get(r, key);
    if (!c)
        return FB_EINVAL;
    struct job *j = fb_calloc(1, sizeof(*j));
    j->c = c;
    j->kind = FB_IN_START; /* unused: `handback` makes it a HANDBACK event */
    j->handback = true;
    j->event_id = fb_strdup(event_id);
    j->cb = cb;
    j->arg = arg;
    job_queue(j);
    return 0;
}

void fb_router_kick(fb_router_t *r, const char *key)
{
    if (!r || r->stopping || !valid_text(key, FB_STORE_MAX_CONV_KEY))
        return;
    struct conv *c = conv_get(r, key);
    if (!c)
        return;
    ob_kick(c);
    conv_maybe_free(c);
}

/* The host offered to features (core/feature.h). */
static void feature_kick(void *arg, const char *key)
{
    fb_router_kick(arg, key);
}

static int feature_handback(void *arg, const char *key, const char *event_id, fb_inbound_cb cb,
                            void *cba)
{
    return fb_router_handback(arg, key, event_id, cb, cba);
}

static void feature_idle(void *arg)
{
    check_stopped(arg);
}

static void core_wake(fb_adapter_t *a, const char *conv)
{
    struct adapter_slot *s = a ? a->core_data : NULL;
    if (!s || !valid_text(conv, FB_STORE_MAX_CONV_KEY - strlen(a->ops->name) - 1) || s->r->stopping)
        return;
    char *key = fb_asprintf("%s:%s", a->ops->name, conv);
    struct conv *c = conv_get(s->r, key);
    fb_free(key);
    if (!c)
        return;
    if (c->ob == OB_WAITING)
        c->ob_tries = 0;
    ob_kick(c);
    conv_maybe_free(c);
}

/* The router of a core table (fb_core_t is embedded in it). */
static fb_router_t *core_router(const fb_core_t *core)
{
    return (fb_router_t *)(void *)((char *)(uintptr_t)core - offsetof(fb_router_t, core));
}

/* core->thread_root() and core->sent(): the feature that wrote the entry answers. */
static int core_thread_root(const fb_core_t *core, const json_t *entry, fb_thread_root_cb cb,
                            void *arg)
{
    const fb_router_t *r = core ? core_router(core) : NULL;
    for (size_t f = 0; r && f < r->nfeatures; f++) {
        const struct feature_slot *fs = &r->features[f];
        int rc = fs->ops->thread_root ? fs->ops->thread_root(fs->self, core, entry, cb, arg)
                                      : FB_DECLINED;
        if (rc != FB_DECLINED)
            return rc;
    }
    return FB_EINVAL;
}

static int core_sent(const fb_core_t *core, const json_t *entry, const char *where,
                     const char *msg_id, fb_sent_cb cb, void *arg)
{
    const fb_router_t *r = core ? core_router(core) : NULL;
    for (size_t f = 0; r && f < r->nfeatures; f++) {
        const struct feature_slot *fs = &r->features[f];
        int rc = fs->ops->sent ? fs->ops->sent(fs->self, core, entry, where, msg_id, cb, arg)
                               : FB_DECLINED;
        if (rc != FB_DECLINED)
            return rc;
    }
    return FB_DECLINED;
}

static void core_set_state(fb_adapter_t *a, const char *state)
{
    if (!a || !state)
        return;
    if (strcmp(a->state, state) != 0)
        FB_INFO(ROUTER, "adapter %s: %s", a->ops->name, state);
    snprintf(a->state, sizeof(a->state), "%s", state);
}

/* ---- life ------------------------------------------------------------------------------- */

fb_router_t *fb_router_create(const fb_router_deps_t *deps, fb_buf_t *errors)
{
    if (!deps || !deps->loop || !deps->cfg || !deps->redis || !deps->store)
        return NULL;
    fb_dialog_t *d = fb_dialog_load(deps->cfg->dialogs.path, deps->geo, errors);
    if (!d)
        return NULL;
    fb_router_t *r = fb_calloc(1, sizeof(*r));
    r->loop = deps->loop;
    r->cfg = deps->cfg;
    r->redis = deps->redis;
    r->store = deps->store;
    r->geo = deps->geo;
    r->dialog = d;
    r->core = (fb_core_t){
        .loop = deps->loop,
        .cfg = deps->cfg,
        .http = deps->http,
        .client = deps->client,
        .redis = deps->redis,
        .store = deps->store,
        .deliver = core_deliver,
        .wake = core_wake,
        .set_state = core_set_state,
        .conv_key = fb_core_conv_key,
        .thread_root = core_thread_root,
        .sent = core_sent,
    };
    fb_store_script_init(&r->s_since, since_src);
#ifdef FB_TEST_HOOKS
    /* Test builds only: integration tests hold the outbox to kill a daemon between the COMMIT
     * and the delivery. */
    const char *delay = getenv("FB_TEST_OUTBOX_START_DELAY_MS");
    r->outbox_delay_ms = delay ? strtoull(delay, NULL, 10) : 0;
#endif
    fb_store_script_init(&r->s_head, head_src);
    fb_store_script_init(&r->s_pop, pop_src);
    fb_store_script_init(&r->s_scan, scan_src);
    const char *prefix = fb_store_prefix(deps->store);
    r->k_pending = fb_key_global(prefix, FB_KEY_PENDING);
    r->k_due = fb_key_global(prefix, FB_KEY_DUE);
    r->k_stats = fb_key_global(prefix, FB_KEY_STATS);
    r->k_since = fb_key_global(prefix, FB_KEY_MARKS_SINCE);
    r->marks_since = -1;
    r->k_avis = fb_key_global(prefix, FB_KEY_AVIS);
    r->k_roadmap_ix = fb_key_global(prefix, FB_KEY_ROADMAP_IX);
    fb_store_script_init(&r->s_page, page_src);
    uv_timer_init(r->loop, &r->kick);
    uv_timer_init(r->loop, &r->tick);
    r->kick.data = r;
    r->tick.data = r;
    r->handles = 2;
    FB_NOTICE(ROUTER, "dialog '%s' (%s) loaded from %s", fb_dialog_id(d), fb_dialog_hash(d),
              deps->cfg->dialogs.path);
    return r;
}

int fb_router_add_adapter(fb_router_t *r, const fb_adapter_ops_t *ops)
{
    const char *why = NULL;
    int rc = fb_adapter_check(ops, &why);
    if (rc == 0 && adapter_by_name(r, ops->name))
        why = "an adapter with this name is already registered", rc = FB_EINVAL;
    if (rc == 0 && r->nadapters == MAX_ADAPTERS)
        why = "too many adapters", rc = FB_EINVAL;
    if (rc == 0 && r->started)
        why = "the router is already started", rc = FB_EINVAL;
    if (rc != 0) {
        FB_ERR(ROUTER, "adapter %s refused: %s", ops && ops->name ? ops->name : "(unnamed)", why);
        return rc;
    }
    struct adapter_slot *s = fb_calloc(1, sizeof(*s));
    s->r = r;
    s->a.ops = ops;
    s->a.core = &r->core;
    s->a.core_data = s;
    s->a.priv = ops->priv_size ? fb_calloc(1, ops->priv_size) : NULL;
    snprintf(s->a.state, sizeof(s->a.state), "starting");
    rc = ops->init(&s->a);
    if (rc == FB_DECLINED) {
        fb_free(s->a.priv);
        fb_free(s);
        return rc; /* disabled by its configuration */
    }
    if (rc != 0) {
        FB_ERR(ROUTER, "adapter %s: init failed: %s", ops->name, fb_strerror(rc));
        fb_free(s->a.priv);
        fb_free(s);
        return rc;
    }
    s->inited = true;
    r->adapters[r->nadapters++] = s;
    return 0;
}

/* True when `name` is already a key of the COMMIT (the router's or a registered feature's). */
static bool key_taken(const fb_router_t *r, const char *name)
{
    for (size_t i = 0; i < N_CORE_KEYS; i++)
        if (strcmp(core_keys[i], name) == 0)
            return true;
    for (size_t f = 0; f < r->nfeatures; f++)
        for (size_t i = 0; i < r->features[f].ops->nkeys; i++)
            if (strcmp(r->features[f].ops->keys[i].name, name) == 0)
                return true;
    return false;
}

/* Why feature `ops` cannot be registered, or NULL. */
static const char *feature_refusal(const fb_router_t *r, const fb_feature_ops_t *ops)
{
    if (!ops || !ops->name)
        return "no name";
    if (r->started)
        return "the router is already started";
    if (r->nfeatures == MAX_FEATURES)
        return "too many features";
    if (r->nfeature_keys + ops->nkeys > MAX_FEATURE_KEYS)
        return "too many keys";
    for (size_t i = 0; i < ops->nkeys; i++) {
        const fb_feature_key_t *k = &ops->keys[i];
        if (!k->name || key_taken(r, k->name))
            return "a key name is missing or already taken";
        for (size_t n = 0; n < i; n++)
            if (strcmp(ops->keys[n].name, k->name) == 0)
                return "a key name is declared twice";
        if ((k->kind == FB_FKEY_STEP && !k->make) || (k->kind != FB_FKEY_STEP && !k->suffix))
            return "a key has neither a suffix nor make()";
    }
    return NULL;
}

void fb_router_set_has_advisor(fb_router_t *r,
                               bool (*has_advisor)(const void *arg, const char *insee),
                               const void *arg)
{
    r->has_advisor = has_advisor;
    r->has_advisor_arg = arg;
}

int fb_router_add_feature(fb_router_t *r, const fb_feature_ops_t *ops, void *self)
{
    const char *why = feature_refusal(r, ops);
    if (why) {
        FB_ERR(ROUTER, "feature %s refused: %s", ops && ops->name ? ops->name : "(unnamed)", why);
        return FB_EINVAL;
    }
    struct feature_slot *fs = &r->features[r->nfeatures++];
    fs->ops = ops;
    fs->self = self;
    fs->global = ops->nkeys ? fb_calloc(ops->nkeys, sizeof(*fs->global)) : NULL;
    for (size_t i = 0; i < ops->nkeys; i++)
        if (ops->keys[i].kind == FB_FKEY_GLOBAL)
            fs->global[i] = fb_key_global(fb_store_prefix(r->store), ops->keys[i].suffix);
    r->nfeature_keys += ops->nkeys;
    if (ops->attach) {
        fb_feature_host_t host = {
            .arg = r, .kick = feature_kick, .handback = feature_handback, .idle = feature_idle};
        ops->attach(self, &host);
    }
    return 0;
}

/* Assembles the COMMIT script (see commit_head_src) from the router's parts and the features'. */
static void build_commit(fb_router_t *r)
{
    fb_buf_t b, forget;
    fb_buf_init(&b, 1u << 20);
    fb_buf_init(&forget, 1u << 12);
    (void)fb_buf_puts(&b, commit_head_src);
    (void)fb_buf_puts(&b, "local K = {");
    size_t pos = 1;
    for (size_t i = 0; i < N_CORE_KEYS; i++, pos++)
        (void)fb_buf_printf(&b, "%s%s = KEYS[%zu]", i ? ", " : "", core_keys[i], pos);
    for (size_t f = 0; f < r->nfeatures; f++) {
        const fb_feature_ops_t *ops = r->features[f].ops;
        for (size_t i = 0; i < ops->nkeys; i++, pos++) {
            (void)fb_buf_printf(&b, ", %s = KEYS[%zu]", ops->keys[i].name, pos);
            if (ops->keys[i].kind == FB_FKEY_CONV && ops->keys[i].forget)
                (void)fb_buf_printf(&forget, ", K.%s", ops->keys[i].name);
        }
    }
    (void)fb_buf_puts(&b, "}\n");
    for (size_t f = 0; f < r->nfeatures; f++)
        if (r->features[f].ops->lua_pre)
            (void)fb_buf_puts(&b, r->features[f].ops->lua_pre);
    /* The adapters' fragments (fb_adapter_ops_t.commit_lua), each for its own conversations
     * ("name:..."), with its keys as AK (the conv_keys, after everything else in KEYS). */
    (void)fb_buf_printf(&b, "local AK = {}\nfor i = %zu, #KEYS do AK[#AK + 1] = KEYS[i] end\n",
                        pos);
    for (size_t i = 0; i < r->nadapters; i++) {
        struct adapter_slot *s = r->adapters[i];
        const char *lua = s->a.ops->commit_lua ? s->a.ops->commit_lua(&s->a) : NULL;
        bool direct = s->a.ops->caps & FB_ADAPTER_CAP_HISTORY_DELIVERS;
        if (lua)
            (void)fb_buf_printf(&b, "if string.sub(A.member, 1, %zu) == '%s:' then\n%s\n%send\n",
                                strlen(s->a.ops->name) + 1, s->a.ops->name, lua,
                                direct ? "" : "AD = false\n");
    }
    (void)fb_buf_printf(&b, commit_body_fmt, fb_buf_str(&forget), pos);
    for (size_t f = 0; f < r->nfeatures; f++)
        if (r->features[f].ops->lua_post)
            (void)fb_buf_puts(&b, r->features[f].ops->lua_post);
    (void)fb_buf_puts(&b, commit_tail_src);
    r->commit_lua = fb_strdup(fb_buf_str(&b));
    fb_buf_free(&forget);
    fb_buf_free(&b);
    fb_store_script_init(&r->s_commit, r->commit_lua);
}

int fb_router_start(fb_router_t *r)
{
    if (r->started)
        return FB_EINVAL;
    r->started = true;
    build_commit(r);
    for (size_t i = 0; i < r->nadapters; i++) {
        struct adapter_slot *s = r->adapters[i];
        int rc = s->a.ops->start(&s->a);
        if (rc != 0) {
            FB_ERR(ROUTER, "adapter %s: start failed: %s", s->a.ops->name, fb_strerror(rc));
            return rc;
        }
        s->started = true;
    }
    fb_redis_stats_t rs;
    fb_redis_get_stats(r->redis, &rs);
    r->redis_connects = rs.connects;
    uv_timer_start(&r->tick, on_tick, TICK_MS, TICK_MS);
    for (size_t f = 0; f < r->nfeatures; f++)
        if (r->features[f].ops->start)
            r->features[f].ops->start(r->features[f].self);
    ask_since(r);
    fb_router_outbox_scan(r);
    return 0;
}

int fb_router_reload(fb_router_t *r, fb_buf_t *errors)
{
    fb_buf_t local;
    fb_buf_init(&local, 1u << 16);
    fb_dialog_t *d = fb_dialog_load_next(r->cfg->dialogs.path, r->dialog, r->geo, &local);
    if (!d) {
        r->st.reload_failures++;
        FB_ERR(ROUTER, "dialog reload refused, still serving '%s' (%s):\n%s",
               fb_dialog_id(r->dialog), fb_dialog_hash(r->dialog), fb_buf_str(&local));
        if (errors)
            (void)fb_buf_puts(errors, fb_buf_str(&local));
        fb_buf_free(&local);
        return FB_EINVAL;
    }
    fb_buf_free(&local);
    r->st.reloads++;
    if (strcmp(fb_dialog_hash(d), fb_dialog_hash(r->dialog)) == 0) {
        FB_NOTICE(ROUTER, "dialog reload: unchanged (%s)", fb_dialog_hash(d));
        fb_dialog_unref(d);
        return 0;
    }
    if (r->nversions == MAX_VERSIONS) {
        fb_dialog_unref(r->versions[0]);
        for (size_t i = 1; i < MAX_VERSIONS; i++)
            r->versions[i - 1] = r->versions[i];
        r->nversions--;
    }
    r->versions[r->nversions++] = r->dialog;
    r->dialog = d;
    FB_NOTICE(ROUTER, "dialog reloaded: '%s' now %s (%zu older version(s) kept)", fb_dialog_id(d),
              fb_dialog_hash(d), r->nversions);
    return 0;
}

const struct fb_dialog_s *fb_router_dialog(const fb_router_t *r)
{
    return r->dialog;
}

size_t fb_router_pending(const fb_router_t *r)
{
    size_t jobs = 0;
    for (size_t b = 0; b < CONV_BUCKETS; b++)
        for (const struct conv *c = r->buckets[b]; c; c = c->hnext)
            jobs += c->njobs;
    return jobs + r->inflight;
}

/* Once stopping: when every adapter has stopped and nothing is in flight, close the handles;
 * the last close callback calls done. */
static void check_stopped(fb_router_t *r)
{
    if (!r->stopping || !r->adapters_stopped || r->stop_done_called || r->in_check)
        return;
    if (r->inflight > 0)
        return;
    for (size_t f = 0; f < r->nfeatures; f++)
        if (r->features[f].ops->inflight && r->features[f].ops->inflight(r->features[f].self) > 0)
            return;
    r->in_check = true; /* conv_maybe_free() below calls back here */
    ob_send_queued(r);  /* stopping: the waiting entries are dropped from memory */
    /* Idle conversations: stop their timers, drop queued jobs (none start while stopping). */
    for (size_t b = 0; b < CONV_BUCKETS; b++) {
        struct conv *c = r->buckets[b];
        while (c) {
            struct conv *next = c->hnext;
            if (c->ob == OB_WAITING) {
                uv_timer_stop(&c->timer);
                c->ob = OB_IDLE;
            }
            if (!c->busy && !c->ready_listed && c->njobs == 0)
                conv_maybe_free(c);
            c = next;
        }
    }
    r->in_check = false;
    if (r->nconvs > 0 || r->ready)
        return;
    if (!uv_is_closing((uv_handle_t *)&r->kick)) {
        uv_close((uv_handle_t *)&r->kick, handle_closed);
        uv_close((uv_handle_t *)&r->tick, handle_closed);
    }
    if (r->handles == 0) {
        r->stop_done_called = true;
        if (r->stop_done)
            r->stop_done(r->stop_arg);
    }
}

static void adapter_stopped(fb_adapter_t *a)
{
    struct adapter_slot *s = a->core_data;
    fb_router_t *r = s->r;
    if (s->stopped)
        return;
    s->stopped = true;
    if (--r->adapters_stopping == 0) {
        r->adapters_stopped = true;
        /* Jobs queued behind a running one never start now: run_ready cancels them. */
        for (size_t b = 0; b < CONV_BUCKETS; b++)
            for (struct conv *c = r->buckets[b]; c; c = c->hnext)
                if (c->head && !c->busy)
                    make_ready(c);
        if (r->ready)
            return; /* run_ready finishes them, then check_stopped runs from job_finish */
        check_stopped(r);
    }
}

static void feature_stopped(void *arg)
{
    fb_router_t *r = arg;
    r->handles--;
    check_stopped(r);
}

void fb_router_stop(fb_router_t *r, void (*done)(void *arg), void *arg)
{
    if (r->stopping)
        return;
    r->stopping = true;
    r->stop_done = done;
    r->stop_arg = arg;
    uv_timer_stop(&r->tick);
    for (size_t f = 0; f < r->nfeatures; f++) {
        if (r->features[f].ops->stop) {
            r->handles++;
            r->features[f].ops->stop(r->features[f].self, feature_stopped, r);
        }
    }
    r->adapters_stopping = 1; /* held until every stop() was called */
    for (size_t i = 0; i < r->nadapters; i++) {
        struct adapter_slot *s = r->adapters[i];
        if (!s->started)
            continue;
        s->stopping = true;
        r->adapters_stopping++;
        s->a.ops->stop(&s->a, adapter_stopped);
    }
    if (--r->adapters_stopping == 0) {
        r->adapters_stopped = true;
        for (size_t b = 0; b < CONV_BUCKETS; b++)
            for (struct conv *c = r->buckets[b]; c; c = c->hnext)
                if (c->head && !c->busy)
                    make_ready(c);
        if (!r->ready)
            check_stopped(r);
    }
}

void fb_router_destroy(fb_router_t *r)
{
    if (!r)
        return;
    FB_ASSERT(r->nconvs == 0);
    for (size_t i = 0; i < r->nadapters; i++) {
        struct adapter_slot *s = r->adapters[i];
        if (s->inited)
            s->a.ops->destroy(&s->a);
        fb_free(s->a.priv);
        fb_free(s);
    }
    for (size_t i = 0; i < r->nversions; i++)
        fb_dialog_unref(r->versions[i]);
    fb_dialog_unref(r->dialog);
    for (size_t f = 0; f < r->nfeatures; f++) {
        const struct feature_slot *fs = &r->features[f];
        if (fs->ops->destroy)
            fs->ops->destroy(fs->self);
        for (size_t i = 0; i < fs->ops->nkeys; i++)
            fb_free(fs->global[i]);
        fb_free(fs->global);
    }
    fb_free(r->commit_lua);
    fb_free(r->scan_score);
    fb_free(r->scan_member);
    fb_free(r->k_pending);
    fb_free(r->k_due);
    fb_free(r->k_stats);
    fb_free(r->k_since);
    fb_free(r->k_avis);
    fb_free(r->k_roadmap_ix);
    fb_free(r);
}

/* ---- observation ------------------------------------------------------------------------ */

void fb_router_health(const fb_router_t *r, json_t *adapters)
{
    for (size_t i = 0; i < r->nadapters; i++) {
        struct adapter_slot *s = r->adapters[i];
        json_t *o = json_pack("{s:s}", "state", s->a.state);
        if (s->a.ops->stats)
            (void)s->a.ops->stats(&s->a, o);
        json_object_set_new(adapters, s->a.ops->name, o);
    }
}

void fb_router_get_stats(const fb_router_t *r, fb_router_stats_t *out)
{
    *out = r->st;
}

int fb_router_metrics_render(const fb_router_t *r, fb_buf_t *out)
{
    const fb_router_stats_t *s = &r->st;
    int rc = fb_buf_printf(
        out,
        "# HELP frichebot_router_events_total Inbound events by outcome.\n"
        "# TYPE frichebot_router_events_total counter\n"
        "frichebot_router_events_total{outcome=\"handled\"} %llu\n"
        "frichebot_router_events_total{outcome=\"duplicate\"} %llu\n"
        "frichebot_router_events_total{outcome=\"failed\"} %llu\n"
        "# HELP frichebot_router_conflicts_total Version conflicts (the event ran again).\n"
        "# TYPE frichebot_router_conflicts_total counter\n"
        "frichebot_router_conflicts_total %llu\n"
        "# HELP frichebot_outbox_delivered_total Replies the platform accepted.\n"
        "# TYPE frichebot_outbox_delivered_total counter\n"
        "frichebot_outbox_delivered_total %llu\n"
        "# HELP frichebot_outbox_retried_total Transient send failures, retried later.\n"
        "# TYPE frichebot_outbox_retried_total counter\n"
        "frichebot_outbox_retried_total %llu\n"
        "# HELP frichebot_outbox_parked_total Replies set aside after a permanent failure.\n"
        "# TYPE frichebot_outbox_parked_total counter\n"
        "frichebot_outbox_parked_total %llu\n"
        "# HELP frichebot_outbox_pending_conversations Conversations with replies waiting "
        "(last scan).\n"
        "# TYPE frichebot_outbox_pending_conversations gauge\n"
        "frichebot_outbox_pending_conversations %llu\n"
        "# HELP frichebot_router_busy_total Inbound events refused for now because "
        "router.max_queued_events were in the router (the platform retries them).\n"
        "# TYPE frichebot_router_busy_total counter\n"
        "frichebot_router_busy_total %llu\n"
        "# HELP frichebot_router_queued_events Inbound events in the router.\n"
        "# TYPE frichebot_router_queued_events gauge\n"
        "frichebot_router_queued_events %llu\n"
        "# HELP frichebot_outbox_sending Replies in the adapters' hands (at most "
        "router.max_sending).\n"
        "# TYPE frichebot_outbox_sending gauge\n"
        "frichebot_outbox_sending %llu\n"
        "# HELP frichebot_outbox_send_queue Conversations whose next reply waits for a sending "
        "slot.\n"
        "# TYPE frichebot_outbox_send_queue gauge\n"
        "frichebot_outbox_send_queue %llu\n"
        "# HELP frichebot_outbox_send_waits_total Replies that waited for a sending slot.\n"
        "# TYPE frichebot_outbox_send_waits_total counter\n"
        "frichebot_outbox_send_waits_total %llu\n"
        "# HELP frichebot_dialog_reloads_total Dialog reloads by outcome.\n"
        "# TYPE frichebot_dialog_reloads_total counter\n"
        "frichebot_dialog_reloads_total{outcome=\"ok\"} %llu\n"
        "frichebot_dialog_reloads_total{outcome=\"refused\"} %llu\n",
        (unsigned long long)s->events, (unsigned long long)s->duplicates,
        (unsigned long long)s->failed, (unsigned long long)s->conflicts,
        (unsigned long long)s->outbox_delivered, (unsigned long long)s->outbox_retried,
        (unsigned long long)s->outbox_parked, (unsigned long long)r->pending_convs,
        (unsigned long long)s->busy, (unsigned long long)r->njobs, (unsigned long long)r->sending,
        (unsigned long long)r->nsendq, (unsigned long long)s->send_waits,
        (unsigned long long)s->reloads, (unsigned long long)s->reload_failures);
    for (size_t i = 0; i < r->nadapters && !rc; i++) {
        struct adapter_slot *a = r->adapters[i];
        if (a->inited && a->a.ops->metrics)
            rc = a->a.ops->metrics(&a->a, out);
    }
    return rc;
}

void fb__router_set_outbox_delay(fb_router_t *r, uint64_t ms)
{
    r->outbox_delay_ms = ms;
}

void fb__router_set_step_hook(fb_router_t *r,
                              void (*fn)(void *arg, const char *key, json_t *effects), void *arg)
{
    r->step_hook = fn;
    r->step_hook_arg = arg;
}

/* ---- the roadmap page ------------------------------------------------------------------------ */

struct page_req {
    fb_router_t *r;
    fb_router_page_cb cb;
    void *arg;
    char hash[65]; /* the token's SHA-256, hex */
};

/* The end of a page request: renders the session (reply of page_src) or reports `status`. */
static void page_done(struct page_req *pr, int status, const redisReply *rep)
{
    fb_router_t *r = pr->r;
    r->inflight--;
    int rc = status;
    fb_buf_t html;
    fb_buf_init(&html, 1u << 20);
    if (rc == 0 && (!rep || rep->type == REDIS_REPLY_NIL)) {
        rc = FB_ENOENT;
    } else if (rc == 0 && rep->type != REDIS_REPLY_STRING) {
        rc = FB_EPROTO;
    } else if (rc == 0) {
        json_t *session = fb_engine_session_loadb(r->dialog, rep->str, rep->len);
        fb_engine_env_t env = engine_env(r, fb_wall_ms());
        rc = session ? fb_engine_render_page(r->dialog, session, &env, NULL, &html) : FB_ENOENT;
        json_decref(session);
    }
    pr->cb(pr->arg, rc, rc == 0 ? fb_buf_str(&html) : NULL);
    fb_buf_free(&html);
    fb_free(pr);
    check_stopped(r);
}

static void on_page(int status, const redisReply *rep, void *arg)
{
    page_done(arg, status, rep);
}

/* The lookup's answer: the conversation key, or nil. Then page_src on that conversation's slot. */
static void on_page_lookup(int status, const redisReply *rep, void *arg)
{
    struct page_req *pr = arg;
    fb_router_t *r = pr->r;
    if (status) {
        page_done(pr, status, NULL);
        return;
    }
    if (rep->type == REDIS_REPLY_NIL) {
        page_done(pr, FB_ENOENT, NULL);
        return;
    }
    if (rep->type != REDIS_REPLY_STRING || rep->len == 0 || rep->len > FB_STORE_MAX_CONV_KEY ||
        memchr(rep->str, '\0', rep->len)) {
        page_done(pr, FB_EPROTO, NULL); /* an error answer is the store's FB_EIO, above */
        return;
    }
    char *member = fb_strndup(rep->str, rep->len);
    char *k_roadmap = fb_store_conv_key(r->store, member, FB_KEY_ROADMAP);
    char *k_session = fb_store_conv_key(r->store, member, FB_KEY_SESSION);
    fb_free(member);
    const char *args[] = {k_roadmap, k_session, pr->hash};
    int rc = k_roadmap && k_session
                 ? fb_store_eval(r->store, &r->s_page, 0, 2, 1, args, NULL, on_page, pr)
                 : FB_EPROTO;
    fb_free(k_roadmap);
    fb_free(k_session);
    if (rc != 0)
        page_done(pr, rc, NULL);
}

/* Two calls, each in one Cluster slot: the lookup in {g}, then page_src in the conversation's
 * (docs/internals/REDIS.md, "The audit"). */
int fb_router_roadmap_page(fb_router_t *r, const char *token, fb_router_page_cb cb, void *arg)
{
    if (!r || !token || !cb)
        return FB_EINVAL;
    if (strlen(token) != ROADMAP_TOKEN_LEN ||
        strspn(token, "0123456789abcdef") != ROADMAP_TOKEN_LEN)
        return FB_ENOENT; /* never a token: no Redis round trip */
    if (r->stopping)
        return FB_ECLOSING;
    unsigned char h[32];
    struct page_req *pr = fb_calloc(1, sizeof(*pr));
    fb_sha256(token, strlen(token), h);
    fb_hex(h, sizeof(h), pr->hash);
    pr->r = r;
    pr->cb = cb;
    pr->arg = arg;
    char *key = fb_asprintf("%s%s", r->k_roadmap_ix, pr->hash);
    const char *get[] = {"GET", key};
    int rc = fb_store_command(r->store, 0, 2, get, on_page_lookup, pr);
    fb_free(key);
    if (rc != 0) {
        fb_free(pr);
        return rc;
    }
    r->inflight++;
    return 0;
}
