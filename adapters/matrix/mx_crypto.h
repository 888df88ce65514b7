/* SPDX-License-Identifier: MIT */
/*
 * mx_crypto.h - the Matrix adapter's end-to-end encryption state machine
 * (docs/internals/CRYPTO.md): Olm and Megolm with libolm, device keys, one-time and fallback keys,
 * cross-signing, the device list of every tracked user, to-device decryption, room event decryption
 * with replay protection, outbound Megolm sessions and their sharing. Pure: no I/O, no loop, no
 * Redis. The adapter (mx_e2ee.c) makes the HTTP calls and the Redis writes this machine asks for.
 *
 * Persistence: the state is a set of (field, value) strings, a Redis hash. Every change marks its
 * field dirty; fb_mxc_take_dirty() hands the changed fields (value, or JSON null for a deleted
 * field) and the adapter writes them in one atomic command. Olm pickles are encrypted with the
 * pickle key; the other fields hold public keys and ids only.
 *
 * Every function that takes untrusted JSON (a to-device event, a timeline event, a /keys/query
 * or /keys/claim answer) validates it fully and never crashes on any input: fuzzed by
 * tests/fuzz/fuzz_matrix_crypto.c. Logs never show a user id, a room id or text.
 */
#ifndef FB_MX_CRYPTO_H
#define FB_MX_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define FB_MXC_OLM    "m.olm.v1.curve25519-aes-sha2"
#define FB_MXC_MEGOLM "m.megolm.v1.aes-sha2"

/* Results (>= 0); functions that can also fail for lack of memory or a libolm error return a
 * negative fb_err code (frichebot/err.h). */
typedef enum fb_mxc_status_e {
    FB_MXC_OK = 0,
    FB_MXC_IGNORED,         /* well formed, nothing to do (unknown to-device type, not for us) */
    FB_MXC_BAD,             /* malformed, bad signature, bad ciphertext, wrong recipient */
    FB_MXC_UNKNOWN_DEVICE,  /* the sender's device (or sender_key) is not in the device list */
    FB_MXC_UNKNOWN_SESSION, /* no inbound Megolm session for the event: ask for the key */
    FB_MXC_REPLAY,          /* a Megolm index already seen with another event id, or an Olm
                               message already handled */
} fb_mxc_status_t;

typedef struct fb_mxc fb_mxc_t;

typedef struct fb_mxc_opts_s {
    const char *user_id;
    const char *device_id;
    const uint8_t *pickle_key; /* at least 32 bytes */
    size_t pickle_key_len;
} fb_mxc_opts_t;

/* A new machine with no state (fb_mxc_load() then fills it, or fb_mxc_ensure_account() makes a
 * fresh account). NULL on a bad option. */
fb_mxc_t *fb_mxc_new(const fb_mxc_opts_t *o);
void fb_mxc_free(fb_mxc_t *c);

/* ---- persistence ---- */

/* One field of the stored hash, at start (any order). FB_MXC_BAD (and nothing loaded) when a
 * pickle cannot be read with this pickle key, or the field is unreadable. */
int fb_mxc_load(fb_mxc_t *c, const char *field, const char *value);
/* Makes an account when none was loaded (a new device's keys): true when it did. Call after
 * the loads. */
bool fb_mxc_ensure_account(fb_mxc_t *c);
/* The fields changed since the last call: {field: "value" | null (deleted)}; the machine forgets
 * they were dirty. NULL when nothing changed. */
json_t *fb_mxc_take_dirty(fb_mxc_t *c);
/* The write of `dirty` failed: its fields are dirty again (unless changed since, the newer value
 * is kept). Takes the reference. */
void fb_mxc_put_back_dirty(fb_mxc_t *c, json_t *dirty);

/* ---- identity and keys upload ---- */

const char *fb_mxc_curve25519(const fb_mxc_t *c); /* the device's identity key (base64) */
const char *fb_mxc_ed25519(const fb_mxc_t *c);    /* the device's fingerprint key (base64) */
/* The body of POST /keys/upload that the device needs now, or NULL when it needs nothing:
 * `device_keys` (signed) until fb_mxc_keys_published() was called once, then `one_time_keys`
 * ("signed_curve25519:ID") up to half the account's maximum given the server's count
 * (`device_one_time_keys_count.signed_curve25519`, -1 when unknown: then none), and
 * `fallback_keys` when `fallback_missing` (`device_unused_fallback_key_types` lacks
 * signed_curve25519). The same unpublished keys are returned again until published. */
json_t *fb_mxc_keys_to_upload(fb_mxc_t *c, long otk_count, bool fallback_missing);
/* The upload of the body last returned was answered 200. */
void fb_mxc_keys_published(fb_mxc_t *c);

/* ---- cross-signing ---- */

/* True once cross-signing was set up for this device (fb_mxc_cross_signing_done()). */
bool fb_mxc_cross_signed(const fb_mxc_t *c);
/* New master, self-signing and user-signing keys: *keys is the body of
 * POST /keys/device_signing/upload (without `auth`), *sigs the body of POST
 * /keys/signatures/upload signing this device with the new self-signing key (and the master key
 * with the device key). The private keys are wiped before return: nothing secret is kept. */
int fb_mxc_cross_signing_new(fb_mxc_t *c, json_t **keys, json_t **sigs);
/* Both uploads were answered 200: remembered (field "xsign"). */
void fb_mxc_cross_signing_done(fb_mxc_t *c, const json_t *keys);

/* ---- device lists ---- */

/* Users whose devices the machine must know: members of encrypted rooms. A user tracked for the
 * first time is outdated. */
void fb_mxc_track_user(fb_mxc_t *c, const char *user);
void fb_mxc_device_list_changed(fb_mxc_t *c, const char *user); /* device_lists.changed */
void fb_mxc_device_list_left(fb_mxc_t *c, const char *user);    /* device_lists.left */
/* The body of POST /keys/query for the outdated users ({"device_keys": {user: []}}, at most
 * `max` users), or NULL when none is outdated. */
json_t *fb_mxc_keys_query_body(fb_mxc_t *c, size_t max);
/* A /keys/query answer: for each user asked, its devices whose device_keys are well formed, for
 * that user and device id, and self-signed by their ed25519 key, are kept with whether their
 * owner's self-signing key signed them (the master and self-signing keys checked too); the
 * others are dropped (logged). A device whose ed25519 key changed is dropped. The users answered
 * are no longer outdated. Returns the number of devices kept, or FB_EPROTO (not an answer: a
 * negative code, so that a count is never mistaken for a status). */
int fb_mxc_keys_query_result(fb_mxc_t *c, const json_t *resp);
/* The devices known for `user` ({device: {"curve25519","ed25519","cross_signed":bool}}),
 * borrowed, or NULL. */
const json_t *fb_mxc_devices(const fb_mxc_t *c, const char *user);
bool fb_mxc_user_outdated(const fb_mxc_t *c, const char *user);

/* ---- inbound ---- */

/* One to-device event of /sync (`sender`, `type`, `content`). m.room.encrypted with Olm: the
 * sender_key must be a known device of `sender` (else FB_MXC_UNKNOWN_DEVICE, nothing consumed);
 * decrypted with an existing session or a new inbound one (its one-time key removed); the
 * payload's sender, recipient, recipient_keys.ed25519 and keys.ed25519 checked; a ciphertext
 * already handled is FB_MXC_REPLAY. Then the payload: m.room_key (megolm) adds the inbound
 * session for its room; m.forwarded_room_key only from this user's own cross-signed devices;
 * m.dummy and anything else: FB_MXC_OK with nothing to do. Unencrypted to-device events:
 * FB_MXC_IGNORED. `type_out` (64 bytes) receives the (decrypted) type for the logs. */
int fb_mxc_to_device(fb_mxc_t *c, const json_t *ev, char type_out[64]);
/* A timeline event of type m.room.encrypted (megolm). On FB_MXC_OK *out is a new event: a copy
 * of `ev` whose `type` and `content` are the decrypted ones, with "fb_decrypted": true. The
 * decrypted room_id must be the event's; the session's message index must not have been seen
 * with another event id (the same event again is fine). FB_MXC_UNKNOWN_SESSION: no session
 * (or the index is before its first known index). */
int fb_mxc_decrypt(fb_mxc_t *c, const json_t *ev, json_t **out);
/* The content of an m.room_key_request (action "request") for the undecryptable `ev`. */
json_t *fb_mxc_key_request(const fb_mxc_t *c, const json_t *ev, const char *request_id);

/* ---- outbound ---- */

/* Prepares room `room`'s outbound Megolm session for the joined `members` (array of user ids):
 * a new session when there is none, when it is older than `rotation_period_ms` or has sent
 * `rotation_period_msgs` messages (from the room's m.room.encryption content `enc`; Matrix
 * defaults 604800000 ms and 100), or when a device it was shared with is no longer one of the
 * members' devices. Then for every device of every member (known through fb_mxc_devices) that
 * has not received the session's key:
 *  - with an Olm session: the m.room_key is Olm-encrypted for it into *to_device
 *    ({user: {device: content}}, the body of PUT /sendToDevice/m.room.encrypted/{txn}) and the
 *    device is recorded as having received it (the adapter persists the state with the message
 *    before sending it);
 *  - without one: listed in *need_claim ({user: {device: "signed_curve25519"}}, the body's
 *    `one_time_keys` of POST /keys/claim), unless a claim for it failed less than an hour ago.
 * Both are NULL when empty. Outdated members (fb_mxc_user_outdated) must be queried first. */
int fb_mxc_share(fb_mxc_t *c, const char *room, const json_t *members, const json_t *enc,
                 int64_t now_ms, json_t **to_device, json_t **need_claim);
/* A /keys/claim answer: an outbound Olm session per claimed key whose signature by its device
 * verifies; the devices asked (`asked`, the need_claim given) with no usable key are remembered
 * as failed (for an hour). Returns the number of sessions made. */
int fb_mxc_claim_result(fb_mxc_t *c, const json_t *asked, const json_t *resp, int64_t now_ms);
/* Encrypts an event of `type` and `content` for room `room` with its outbound session (which
 * fb_mxc_share() prepared): the m.room.encrypted content, or NULL. */
json_t *fb_mxc_encrypt(fb_mxc_t *c, const char *room, const char *type, const json_t *content);
/* Drops every outbound Megolm session: the next message of each room starts a new one. Called
 * at start: if Redis lost its last writes (AOF everysec and a host crash), a restored outbound
 * session could otherwise encrypt two messages with the same index. */
void fb_mxc_rotate_outbound(fb_mxc_t *c);
/* Forgets everything about `room` (its outbound session and inbound sessions): a user's data
 * deleted at their request, or the bot left the room. */
void fb_mxc_forget_room(fb_mxc_t *c, const char *room);

/* ---- JSON signing (exported for the tests) ---- */

/* Canonical JSON (sorted keys, no insignificant whitespace, UTF-8 unescaped) of `obj` without its
 * `signatures` and `unsigned` members. Caller frees. */
char *fb_mxc_canonical(const json_t *obj);
/* Checks that obj.signatures[user][key_id] is a valid ed25519 signature by `ed25519` (base64) of
 * fb_mxc_canonical(obj). */
bool fb_mxc_verify(const json_t *obj, const char *user, const char *key_id, const char *ed25519);

#endif /* FB_MX_CRYPTO_H */
