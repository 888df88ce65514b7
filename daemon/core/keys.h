/* SPDX-License-Identifier: MIT */
/*
 * keys.h - every Redis key name of the daemon, defined once (docs/internals/REDIS.md lists them).
 *
 * Two families:
 *   - per conversation: "<prefix>{c:<escaped conversation key>}:<suffix>" (fb_key_conv()); the
 *     hash tag keeps every key of one conversation in one Redis Cluster slot. In the escaped key,
 *     '{', '}', '%', control characters and DEL are written %XX (upper-case hex), so that the
 *     tag ends at the first '}' and two conversation keys never map to one Redis key.
 *   - global: "<prefix>{g}:<name>" (fb_key_global()), the stats' ones "<prefix>{g}:stats:<name>";
 *     the one hash tag "{g}" puts every global key in one Redis Cluster slot, so that a call
 *     joining global keys only is single-slot. Before it they were "<prefix><name>":
 *     FB_KEYS_MIGRATE_LUA renames them once (docs/internals/REDIS.md, "Key schema").
 * Lua scripts that must build a conversation's key from data they read (escalation's threads)
 * use FB_KEYS_LUA, the same escaping in Lua (tests/unit/test_store.c checks that both agree).
 * Adapters keep their own per-conversation suffixes (web.c, matrix.c) but build them with
 * fb_store_conv_key(), which calls fb_key_conv().
 */
#ifndef FB_KEYS_H
#define FB_KEYS_H

#include <stddef.h>

/** Longest conversation key ("adapter:conv") accepted, in bytes. */
#define FB_KEYS_MAX_CONV 512

/* ---- per-conversation suffixes ---------------------------------------------------------------
 */
#define FB_KEY_SESSION   "session"   /* hash: the session record (FB_SESSION_* fields below) */
#define FB_KEY_MARKS     "ev"        /* zset: dedupe marks, event id -> handled at (ms) */
#define FB_KEY_EVENT     "ev:"       /* + event id: a dedupe mark of a daemon before the zset */
#define FB_KEY_OUTBOX    "outbox"    /* list: outbound entries, in order */
#define FB_KEY_PARKED    "parked"    /* list: entries set aside after a permanent failure */
#define FB_KEY_REMINDERS "reminders" /* hash: reminder id -> reason, "<id>#a" -> delay ms */
#define FB_KEY_TICKET    "ticket"    /* hash: the escalation ticket */
#define FB_KEY_ESC_SENT  "esc:sent"  /* list: "ROOM EVENT_ID" the bot posted for the tickets */
#define FB_KEY_MONTHS    "months"    /* set: the months (YYYY-MM) the project was active */
#define FB_KEY_ROADMAP   "roadmap"   /* hash: t the roadmap page's token, h its SHA-256 (hex) */
#define FB_KEY_MAIL      "mail"      /* hash: the address a web user gave (adapters/email) */

/* ---- the session record: one hash per conversation -------------------------------------------
 */
#define FB_SESSION_VERSION  "v" /* version, incremented by every write ("%d") */
#define FB_SESSION_DATA     "d" /* the engine's session JSON */
#define FB_SESSION_ACTIVITY "a" /* Unix ms of the user's last own event */
#define FB_SESSION_WRITE_ID "w" /* write id of the last write */
#define FB_SESSION_BIRTH    "b" /* write id of the write that created the session (its lifetime) */
#define FB_SESSION_TTL_SET  "x" /* Unix ms when COMMIT last set the session's TTL (PEXPIRE) */
#define FB_SESSION_MARKS    "z" /* Unix ms of the marks' last upkeep (FB_KEY_MARKS: trim, TTL) */
/* No longer written (the push-back is lazy since issue 17): the session version at which the
 * reminders hash (FB_KEY_REMINDERS) was known empty, for the previous version's eager push-back,
 * which a daemon of that version still trusts; a COMMIT that arms a reminder without writing the
 * session deletes it (REDIS.md, "The session record"). */
#define FB_SESSION_REMINDERS "r"

/* ---- global names: "<prefix>" FB_KEY_GLOBAL_TAG "<name>"
 * ----------------------------------------------------------------------------
 */
#define FB_KEY_GLOBAL_TAG "{g}:"              /* after the prefix, before every global name */
#define FB_KEY_LAYOUT     "layout"            /* string: "1" once FB_KEYS_MIGRATE_LUA has run */
#define FB_KEY_PENDING    "outbox:pending"    /* zset: conversations with entries */
#define FB_KEY_DUE        "reminders:due"     /* zset: "KEY|id" by due ms */
#define FB_KEY_CLAIMED    "reminders:claimed" /* zset: claimed members by lease expiry */
#define FB_KEY_CLAIMS     "reminders:claims"  /* hash: member -> "owner|due" */
#define FB_KEY_STATS      "stats"             /* hash: global counters */
#define FB_KEY_AVIS       "avis:comments"     /* list: users' comments, newest first */
#define FB_KEY_MARKS_SINCE                                                                         \
    "dedupe:zset_since" /* string: ms since the marks are zsets (0: never string keys here) */
#define FB_KEY_ROADMAP_IX                                                                          \
    "roadmap:"                                          /* + SHA-256 hex of a page token: string,  \
                                                           the conversation key (the page's lookup) */
#define FB_KEY_ESC_OPEN           "esc:open"            /* zset: open tickets by watchdog time */
#define FB_KEY_ESC_ROOTS          "esc:roots"           /* hash: root event id -> conversation */
#define FB_KEY_STATS_NS           "stats:"              /* the stats' keys start with it */
#define FB_KEY_STATS_ACT_COMMUNES "active:communes"     /* (stats:) zset: commune -> last ms */
#define FB_KEY_STATS_ACT_EPCI     "active:epci"         /* (stats:) zset: EPCI -> last ms */
#define FB_KEY_STATS_ACT_DEPS     "active:departements" /* (stats:) zset: département -> ms */
#define FB_KEY_STATS_STEPS        "steps_done"          /* (stats:) hash: step ref -> count */
#define FB_KEY_STATS_MONTH        "month:"              /* (stats:) + YYYY-MM: hash */
#define FB_KEY_STATS_RESPONSE     "advisor_response_ms" /* (stats:) list: response times */

/**
 * "<prefix>{c:<escaped conv_key>}:<suffix>", a new string (fb_free), or NULL when `conv_key` is
 * empty or longer than FB_KEYS_MAX_CONV, or `suffix` is NULL.
 */
char *fb_key_conv(const char *prefix, const char *conv_key, const char *suffix);

/**
 * The Redis Cluster hash slot (0..16383) of the key `key` of `len` bytes: CRC16 (XMODEM) of its
 * hash tag (the bytes between the first '{' and the next '}', when there are some), else of the
 * whole key. Every key fb_key_conv() builds for one conversation has the same slot; a call whose
 * keys have several slots is refused by a cluster (docs/internals/REDIS.md, "Redis Cluster").
 */
unsigned fb_key_slot(const char *key, size_t len);

/** "<prefix>{g}:<name>", a new string (fb_free). */
char *fb_key_global(const char *prefix, const char *name);

/** "<prefix>{g}:stats:<name>", a new string (fb_free): the stats' keys. */
char *fb_key_stats(const char *prefix, const char *name);

/**
 * The Lua twin of fb_key_conv(): `conv_key(prefix, conv, suffix)`, a local function for the
 * scripts that build a conversation's key from what they read in Redis.
 */
#define FB_KEYS_LUA                                                                                \
    "local function conv_key(prefix, conv, suffix)\n"                                              \
    "  local k = string.gsub(conv, '[{}%%%c]', function(ch)\n"                                     \
    "    return string.format('%%%02X', string.byte(ch)) end)\n"                                   \
    "  return prefix .. '{c:' .. k .. '}:' .. suffix\n"                                            \
    "end\n"

/**
 * The one-off migration of the global keys to their "{g}" names (docs/internals/REDIS.md, "Key
 * schema"): KEYS[1] the flag "<prefix>{g}:layout", ARGV[1] the prefix. When the flag exists it
 * returns {0, 0, 1} at once. On a Redis Cluster it touches nothing and returns {0, 0, 2}: the
 * keys of a cluster must already have their "{g}" names. Otherwise it walks the keys under the
 * prefix (SCAN) and renames every global key of the old layout "<prefix><name>" (the names of
 * this header, the stats', the persistence marker and epoch, the roadmap index, the e-mail
 * confirmations, the Matrix adapter's "matrix:*") to "<prefix>{g}:<name>" (RENAME keeps the
 * TTL) when the new name is free; when both exist the new one is kept and the old one left as it
 * is. Then it sets the flag and returns {renamed, left, 0}. Idempotent. Run by io/durability
 * as the first command of a connection, before the persistence check and anything else.
 */
extern const char FB_KEYS_MIGRATE_LUA[];

#endif /* FB_KEYS_H */
