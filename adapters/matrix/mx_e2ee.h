/* SPDX-License-Identifier: MIT */
/*
 * mx_e2ee.h - end-to-end encryption in the Matrix adapter (mx_e2ee.c, docs/internals/CRYPTO.md):
 * what the adapter's other files call. Every function is a no-op (or says "clear") when
 * matrix.crypto.pickle_key_file is not set (m->e2ee NULL).
 */
#ifndef FB_MX_E2EE_H
#define FB_MX_E2EE_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

struct mx;

/*
 * The Lua function e2ee_apply(keys, w) that writes one crypto write `w` (a JSON string made by
 * mx_e2ee_take_write(), or "") into the five hashes keys[1..5] (crypto, utd, todev, sent, meta):
 * each part {field: "value" | null} is HSET or HDEL. Used alone, and inside the next_batch script
 * so that the state a /sync changed is written with the token it belongs to.
 */
#define E2EE_APPLY_LUA                                                                             \
    "local function e2ee_apply(keys, w)\n"                                                         \
    "  if w == nil or w == '' then return end\n"                                                   \
    "  local d = cjson.decode(w)\n"                                                                \
    "  for i, part in ipairs({'c', 'u', 't', 's', 'm'}) do\n"                                      \
    "    local h = d[part]\n"                                                                      \
    "    if type(h) == 'table' then\n"                                                             \
    "      for k, v in pairs(h) do\n"                                                              \
    "        if v == cjson.null then redis.call('HDEL', keys[i], k)\n"                             \
    "        else redis.call('HSET', keys[i], k, v) end\n"                                         \
    "      end\n"                                                                                  \
    "    end\n"                                                                                    \
    "  end\n"                                                                                      \
    "end\n"

#define MX_E2EE_NKEYS 5

/* Reads the pickle key; 0 (m->e2ee NULL when crypto is not configured) or FB_ECONFIG. */
int mx_e2ee_init(struct mx *m);
void mx_e2ee_start(struct mx *m);
void mx_e2ee_stop(struct mx *m);
void mx_e2ee_free(struct mx *m);
void mx_e2ee_stats(struct mx *m, json_t *out);

/* True when the device's keys are loaded and uploaded for the current device (or no crypto). */
bool mx_e2ee_ready(struct mx *m);
/* Loads the state, makes and uploads the keys, cross-signs; done(status) (0: ready). */
void mx_e2ee_prepare(struct mx *m, void (*done)(struct mx *m, int status));

/* /sync: decrypts to-device events and the timelines of `body` (owned, modified in place), then
 * cont(m, body, 0, arg) (cont owns the body), or cont(m, NULL, FB_EAGAIN, arg): the sync must be
 * asked again (the devices of a to-device sender could not be read). */
void mx_e2ee_sync(struct mx *m, json_t *body,
                  void (*cont)(struct mx *m, json_t *body, int status, void *arg), void *arg);
/* Decrypts the events of `events` (a room's, from /messages) in place, as a /sync timeline's. */
void mx_e2ee_decrypt_events(struct mx *m, const char *room, json_t *events);

/* Application service: the same for one transaction `txn` (owned, modified in place): the
 * to-device events addressed to the bot's device, the device lists and key counts of its MSC2409
 * and MSC3202 extensions, then its `events` (each with its room_id); cont as mx_e2ee_sync's
 * (FB_EAGAIN, txn NULL: answer 503, the homeserver sends it again). */
void mx_e2ee_txn(struct mx *m, json_t *txn,
                 void (*cont)(struct mx *m, json_t *txn, int status, void *arg), void *arg);

/* The write to make with next_batch (NULL: none); then mx_e2ee_write_done(taken, status). */
char *mx_e2ee_take_write(struct mx *m, json_t **taken);
void mx_e2ee_write_done(struct mx *m, json_t *taken, int status);
/* The five hash names, for a script's KEYS (some key names, unused, without crypto). */
void mx_e2ee_keys_argv(struct mx *m, const char **out);

/* A send's content encrypted for its room: cb(m, 0, enc) (enc borrowed); cb(m, FB_DECLINED,
 * NULL): the room turned out clear, send as it is; cb(m, FB_EAGAIN | FB_EPROTO | FB_ECANCELED,
 * NULL). */
typedef void (*mx_e2ee_cb)(struct mx *m, int status, json_t *enc, void *arg);
/* 0 (cb later), FB_DECLINED (a clear room: send as is), FB_EAGAIN (not ready). The callback's
 * status FB_ENOTYET: a new room's first message, to be sent after mx_e2ee_first_wait_ms(). */
int mx_e2ee_encrypt(struct mx *m, const char *room, const char *txn, const json_t *content,
                    mx_e2ee_cb cb, void *arg);

/* The encrypted message of outbox txn `txn` was accepted: its stored ciphertext is deleted. */
void mx_e2ee_sent(struct mx *m, const char *txn);
/* The room's encryption changed (m.room.encryption seen): asked again at the next send. */
void mx_e2ee_room_encrypted(struct mx *m, const char *room);
/* The bot has just joined `room` (an accepted invite): in an encrypted room, its first messages
 * wait until crypto.first_message_delay_ms after now (docs/internals/CRYPTO.md). */
void mx_e2ee_joined(struct mx *m, const char *room);
/* How many ms a message to `room` has still to wait after the join; 0: none (an old room, a room
 * joined before the last start, or the delay is over). Only asked for an encrypted room. */
int64_t mx_e2ee_first_wait_ms(struct mx *m, const char *room);
/* The bot left the room: its sessions are forgotten. */
void mx_e2ee_forget_room(struct mx *m, const char *room);

#endif /* FB_MX_E2EE_H */
