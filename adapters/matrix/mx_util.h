/* SPDX-License-Identifier: MIT */
/*
 * mx_util.h - the pure pieces of the Matrix adapter (docs/internals/MATRIX.md): the event parser
 * (a /sync response or an application-service transaction -> a list of actions), the message
 * content builder and its HTML filter, globs, a constant-time comparison, and the application
 * service registration file (writer and reader). No I/O, no loop, no Redis: unit-tested in
 * tests/unit/test_matrix.c and fuzzed by tests/fuzz/fuzz_matrix_events.c.
 */
#ifndef FB_MX_UTIL_H
#define FB_MX_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define FB_MX_MAX_ID    255        /* longest room id, event id or user id accepted */
#define FB_MX_MAX_BODY  (64 << 10) /* longest message body accepted, bytes */
#define FB_MX_TAG_LEN   6          /* hex digits of a conversation's log tag */
#define FB_MX_TOKEN_HEX 64         /* hex digits of a generated as_token / hs_token */
#define FB_MX_MIN_TOKEN 16         /* shortest token accepted from a registration file */

/* What the adapter must do for one event, in the order of the batch. */
typedef enum fb_mx_action_kind_e {
    FB_MX_MESSAGE = 1, /* a user wrote `text` in `conv`: deliver FB_IN_MESSAGE */
    FB_MX_JOINED,      /* the bot joined `room`: deliver FB_IN_START (event_id = the join) */
    FB_MX_INVITE,      /* `sender` invited the bot to `room` (`direct` from is_direct) */
    FB_MX_MEMBER_LEFT, /* another member left or was banned: is the bot alone now? */
    FB_MX_LEFT,        /* the bot left or was kicked/banned: forget the room */
    FB_MX_ENCRYPTED,   /* the room is (or became) encrypted */
    FB_MX_RULE,        /* Tchap access rule of the room is `text` */
    FB_MX_GAP, /* the room's timeline was `limited`: events were missed (text: prev_batch) */
} fb_mx_action_kind_t;

typedef struct fb_mx_action_s {
    fb_mx_action_kind_t kind;
    char *room;        /* room id */
    char *conv;        /* conversation key: room id, or "ROOM/$root" in a thread */
    char *thread_root; /* NULL outside a thread */
    char *event_id;    /* MESSAGE, JOINED (NULL otherwise, or for an invite without one) */
    char *sender;      /* MESSAGE, INVITE (may be NULL for an invite), MEMBER_LEFT (who left) */
    char *text;        /* MESSAGE: the body (reply fallback stripped); RULE: the rule; GAP: the
                          timeline's prev_batch (NULL when absent) */
    int64_t ts_ms;     /* origin_server_ts, 0 when absent */
    bool direct;       /* INVITE: is_direct */
    bool invited;      /* from an invite (its stripped state): the bot is not in the room yet,
                          so an ENCRYPTED or RULE is recorded, nothing is sent there */
    bool name_tried;   /* MESSAGE in a thread: the sender's display name was looked up */
    char *sender_name; /* MESSAGE in a thread: the sender's display name, or NULL */
    bool sender_gone;  /* MESSAGE in a thread: the sender is no longer a member of the room */
} fb_mx_action_t;

typedef struct fb_mx_batch_s {
    fb_mx_action_t *actions;
    size_t n, cap;
    char *next_batch; /* /sync: the token to store once the batch is handled */
    size_t skipped;   /* malformed events (missing fields, bad UTF-8, too big), logged, dropped */
    size_t ignored;   /* well-formed events that need nothing (own, notices, other types...) */
    size_t repaired;  /* invalid UTF-8 sequences or lone surrogates replaced in the input */
} fb_mx_batch_t;

typedef struct fb_mx_parse_opts_s {
    const char *bot;                 /* the bot's user id */
    const char *const *ignore_users; /* globs of senders never answered (NULL-terminated) */
    bool history;                    /* false (first /sync): timeline messages are dropped */
} fb_mx_parse_opts_t;

/**
 * Parses a /sync response body of `len` bytes into `out` (zeroed by the caller, freed with
 * fb_mx_batch_free even on error). Invalid UTF-8 and lone surrogate escapes are replaced before
 * decoding so that one hostile event cannot make the whole document unreadable; the events
 * holding them are skipped. Returns 0, or FB_EPROTO when the body is not a JSON object (or has
 * no string next_batch).
 */
int fb_mx_parse_sync(const char *body, size_t len, const fb_mx_parse_opts_t *o, fb_mx_batch_t *out);

/** Same for an application-service transaction body ({"events": [...]}). FB_EPROTO when it is
 *  not an object with an `events` array. */
int fb_mx_parse_txn(const char *body, size_t len, const fb_mx_parse_opts_t *o, fb_mx_batch_t *out);

#define FB_MX_TXN_DIGEST_LEN 64

/**
 * fb_mx_parse_txn() that also gives fb_mx_txn_digest() of the body, from the same parse (the
 * body was parsed twice: 7 % of the daemon's instructions per transaction, issue 17). `digest`
 * is "" when nothing names the transaction, or when the body is not a JSON object; unlike
 * fb_mx_txn_digest(), a body whose strings hold \u0000 still gets the digest of its ids.
 */
int fb_mx_parse_txn_digest(const char *body, size_t len, const fb_mx_parse_opts_t *o,
                           fb_mx_batch_t *out, char digest[FB_MX_TXN_DIGEST_LEN + 1] /* OUT */);

/** Frees what a parse put in `b` and zeroes it. */
void fb_mx_batch_free(fb_mx_batch_t *b);

/**
 * Returns a new copy of `s` (`len` bytes) in which every invalid UTF-8 sequence and every JSON
 * escape of a lone UTF-16 surrogate is replaced by U+FFFF (a noncharacter, which the parser
 * treats as "invalid input": the event is skipped). `*count` gets the number of replacements.
 */
char *fb_mx_json_repair(const char *s, size_t len, size_t *out_len, size_t *count);

/**
 * What names an application-service transaction's content: the SHA-256, in hex, of the
 * `event_id`s of its `events`, in order, each followed by a newline. A homeserver that sends a
 * transaction again sends the same events (with another `unsigned.age`: the body itself names
 * nothing); one that reuses an id for new events (Synapse on SQLite numbers them from 1 again
 * after a restart) sends other ones. The to-device events (MSC2409: room keys), which have no
 * id, follow, each as "to-device " and its canonical JSON (sorted keys), so that a transaction of
 * room keys only is not taken for the replay of another one under the same id. Returns false,
 * with `out` = "", when the body is unreadable or holds neither (device lists or key counts
 * only): nothing then tells a replay from a new transaction.
 */
bool fb_mx_txn_digest(const char *body, size_t len, char out[FB_MX_TXN_DIGEST_LEN + 1] /* OUT */);

/** Strips a rich-reply fallback (leading lines starting with '>' and one blank line after them)
 *  from `body`; returns a new string. */
char *fb_mx_strip_fallback(const char *body);

/** Whole-string glob match: '*' any run, '?' one byte; ASCII case-insensitive. */
bool fb_mx_glob(const char *pattern, const char *s);

/** True when `s` matches one of the NULL-terminated `globs` (NULL: none). */
bool fb_mx_glob_any(const char *const *globs, const char *s);

/** The server name of a user id ("@u:example.org:8448" -> "example.org:8448"), or NULL. */
const char *fb_mx_server_name(const char *user_id);

/** Invite policy: allowed when the inviter's server matches `servers` or the inviter matches
 *  `users`; when both lists are empty, only inviters on `bot`'s own server. */
bool fb_mx_invite_allowed(const char *const *servers, const char *const *users, const char *bot,
                          const char *inviter);

/** Compares two byte strings in time independent of where they differ (only of their lengths). */
bool fb_mx_ct_equal(const char *a, size_t alen, const char *b, size_t blen);

/** The log tag of a conversation: the first 6 hex digits of SHA-256 of `conv`. */
void fb_mx_tag(const char *conv, char out[FB_MX_TAG_LEN + 1] /* OUT */);

/** Splits a conversation key at its first "/$": `*room` (new string) and `*root` (new string,
 *  NULL outside a thread). The room is a room id ("!...") or, for an advisors' room named by its
 *  alias in escalation.rooms, the alias ("#..."). Returns 0 or FB_EINVAL. */
int fb_mx_conv_split(const char *conv, char **room, char **root);

/** Whether `s` is a room alias as escalation.rooms may name one: "#localpart:server", at most
 *  FB_MX_MAX_ID bytes, without spaces, '/' or control characters. */
bool fb_mx_alias_ok(const char *s);

/**
 * The room aliases named by escalation.rooms' "TERRITORY ROOM" lines (NULL-terminated `lines`,
 * NULL allowed), in order, without duplicates: a new NULL-terminated array of new strings
 * (fb_mx_strv_free), empty when no line names an alias.
 */
char **fb_mx_route_aliases(char *const *lines);

/** Frees an array of fb_mx_route_aliases(). */
void fb_mx_strv_free(char **v);

/**
 * `conv` with its room part (what comes before the first "/$" or "/~", or all of it) replaced by
 * `room`: "!abc:hs/$root" with "#conseil:hs" gives "#conseil:hs/$root". A new string.
 */
char *fb_mx_conv_with_room(const char *conv, const char *room);

/**
 * Keeps only the HTML the Matrix spec allows in formatted_body: the tags listed in
 * docs/internals/MATRIX.md without attributes, except `href` on `a` when it is http, https or
 * mailto. Other tags are dropped (their text stays), comments dropped, a stray '<' escaped.
 * Returns a new string.
 */
char *fb_mx_html_filter(const char *html);

/**
 * The JSON content of an m.room.message: `msgtype`, `body` = text, the filtered HTML as
 * `formatted_body` (with `format`) when `html` is not empty, `m.mentions` {} and, with a
 * `thread_root`, the thread relation. Returns a new reference, or NULL when text is NULL.
 */
json_t *fb_mx_message_content(const char *msgtype, const char *text, const char *html,
                              const char *thread_root);

/**
 * The msgtype of an outbox entry of `kind` (docs/internals/MATRIX.md, "Notifications"): the
 * messages a person must not miss are `m.text`, which default push rules notify: "relay" (a
 * person's words passed on: the advisor's to the user, the user's to the advisors' thread),
 * "ticket" (a new ticket's thread root) and "roadmap"; "reminder" gets `reminder_msgtype`
 * (matrix.reminder_msgtype; NULL: m.text). Everything else (NULL, "reply", an unknown kind) is a
 * routine answer: `m.notice`, which `.m.rule.suppress_notices` never notifies. Returns a static
 * string or `reminder_msgtype`.
 */
const char *fb_mx_msgtype_of(const char *kind, const char *reminder_msgtype);

/**
 * Adds the mentions matrix.ticket_mention asks to `content` (borrowed, changed in place), the
 * thread root of a new ticket: "room" sets `m.mentions.room` (Synapse's `.m.rule.is_room_mention`,
 * which needs the sender to have the room's `notifications.room` power level) and starts the body
 * with "@room"; "advisors" lists `users` (NULL-terminated user ids, checked by the configuration)
 * in `m.mentions.user_ids` (`.m.rule.is_user_mention`) and at the end of the body, as pills in
 * `formatted_body`. "none", NULL or an empty list: nothing.
 */
void fb_mx_ticket_mentions(json_t *content, const char *mode, char *const *users);

/** Makes message `content` a reply in the thread of `thread_root` ("m.relates_to" m.thread, with
 *  the reply fallback clients without threads show). */
void fb_mx_thread_relation(json_t *content, const char *thread_root);

/** "<name>" with every regex metacharacter escaped by a backslash. New string. */
char *fb_mx_regex_escape(const char *s);

/**
 * The application-service registration YAML for Synapse: id, url, the two tokens,
 * sender_localpart (from `user_id`), an exclusive users namespace for exactly `user_id`, no
 * aliases or rooms, rate_limited false; with `e2ee`, the flags end-to-end encryption needs
 * (receive_ephemeral and its MSC2409 name, org.matrix.msc3202, io.element.msc4190). Returns a
 * new string, or NULL for a bad user id.
 */
char *fb_mx_registration_yaml(const char *id, const char *url, const char *user_id,
                              const char *as_token, const char *hs_token, bool e2ee);

/**
 * What an application-service transaction `txn` (borrowed) carries for the device `device_id`
 * of `user_id`, in the shape of a /sync answer: {"to_device": {"events": [...]}} with the
 * to-device events addressed to that device (org.matrix.msc2409.to_device, or else
 * de.sorunome.msc2409.to_device), "device_lists" {changed, left} (org.matrix.msc3202.device_lists),
 * and, only when the transaction has them for that device, "device_one_time_keys_count" and
 * "device_unused_fallback_key_types". Returns a new object (never NULL).
 */
json_t *fb_mx_txn_crypto(const json_t *txn, const char *user_id, const char *device_id);

/**
 * Reads `as_token` and `hs_token` from a registration YAML text. Returns 0 with both new
 * strings, or FB_EINVAL with a static reason in *why (never the tokens themselves).
 */
int fb_mx_registration_tokens(const char *text, size_t len, char **as_token, char **hs_token,
                              const char **why);

/** Fills `out` with FB_MX_TOKEN_HEX random hex digits (getrandom) and a NUL. 0 or FB_ESYS. */
int fb_mx_random_token(char out[FB_MX_TOKEN_HEX + 1]);

/** Percent-encodes `s` for one URL path segment (unreserved characters kept). New string. */
char *fb_mx_path_escape(const char *s);

#endif /* FB_MX_UTIL_H */
