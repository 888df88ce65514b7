/* SPDX-License-Identifier: MIT */
/*
 * mx_batch.c - the Matrix adapter's batch runner: the events of one /sync response or one
 * application-service transaction, handed to the router one at a time, with the encrypted-room
 * notice and the thread senders' names (docs/internals/MATRIX.md).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <uv.h>

#include "common/digest.h"
#include "common/utf8.h"
#include "frichebot/adapter.h"
#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "frichebot/clock.h"
#include "frichebot/err.h"
#include "frichebot/log.h"
#include "io/config.h"
#include "io/http_client.h"
#include "io/http_server.h"
#include "io/redis.h"
#include "matrix.h"
#include "mx_util.h"

/* ---------------------------------------------------------------------------------------- */
/* The encrypted-room notice */

static void on_notice_marked(struct mx *m, int status, redisReply *reply, void *arg)
{
    (void)m, (void)reply, (void)arg;
    if (status)
        FB_INFO(MATRIX, "encrypted notice sent but not recorded (%s)", fb_err_name(status));
}

static void on_notice_sent(struct mx *m, int err, int status, json_t *body,
                           const fb_http_response_t *resp, void *arg)
{
    char *room = arg;
    char tag[FB_MX_TAG_LEN + 1];
    fb_mx_tag(room, tag);
    (void)body, (void)resp;
    json_object_del(m->notice_inflight, room);
    if (err) {
        FB_WARN(MATRIX, "[matrix|%s] encrypted-room notice not sent: %s (HTTP %d)", tag,
                fb_err_name(err), status);
    } else {
        FB_NOTICE(MATRIX, "[matrix|%s] encrypted room: told, in clear, that the bot cannot read it",
                  tag);
        char *k = mx_room_key(m, room);
        const char *argv[] = {"HSET", k, "notice", "1"};
        (void)mx_rcmd_argv(m, on_notice_marked, NULL, 4, argv);
        fb_free(k);
    }
    fb_free(room);
}

static void send_notice(struct mx *m, const char *room)
{
    if (json_object_get(m->notice_inflight, room) || !m->token)
        return;
    char txn[48] = "enc.";
    fb_sha256_tag(room, 8, txn + 4);
    char *tail = fb_asprintf("/send/m.room.message/%s", txn);
    char *path = mx_room_path(room, tail);
    json_t *content = fb_mx_message_content("m.notice", m->o->encrypted_notice, NULL, NULL);
    char *arg = fb_strdup(room);
    if (mx_call(m, "PUT", path, content, on_notice_sent, arg) == 0)
        json_object_set_new(m->notice_inflight, room, json_true());
    else
        fb_free(arg);
    json_decref(content);
    fb_free(path);
    fb_free(tail);
}

void mx_controls_notice(struct mx *m, const char *room, const char *event_id)
{
    char tag[FB_MX_TAG_LEN + 1];
    m->controls_only++;
    FB_INFO(MATRIX, "[matrix|%s] message of nothing but control characters: not handled, a notice",
            mx_conv_tag(room, tag));
    if (!m->token || m->stopping)
        return;
    /* The transaction id follows the event: a transaction sent again gives the same notice,
     * which the homeserver de-duplicates. */
    char txn[48] = "ctl.";
    fb_sha256_tag(event_id, 8, txn + 4);
    char *tail = fb_asprintf("/send/m.room.message/%s", txn);
    char *path = mx_room_path(room, tail);
    json_t *content = fb_mx_message_content("m.notice", FB_TEXT_CONTROLS_ONLY_FR, NULL, NULL);
    (void)mx_call(m, "PUT", path, content, NULL, NULL);
    json_decref(content);
    fb_free(path);
    fb_free(tail);
}

/* ---------------------------------------------------------------------------------------- */
/* The batch runner */

struct dctx {
    struct batch *bt;
    size_t idx;
};

void mx_batch_free(struct batch *bt)
{
    struct mx *m = bt->m;
    fb_mx_batch_free(&bt->b);
    fb_free(bt->txn_key);
    fb_free(bt->txn_arg);
    fb_free(bt);
    mx_op_end(m);
}

const char *mx_conv_tag(const char *conv, char out[FB_MX_TAG_LEN + 1])
{
    fb_mx_tag(conv, out);
    return out;
}

static void on_delivered(int status, void *arg)
{
    struct dctx *d = arg;
    struct batch *bt = d->bt;
    fb_mx_action_t *a = &bt->b.actions[d->idx];
    char tag[FB_MX_TAG_LEN + 1];
    if (status == 0) {
        mx_as_recent_note(bt->m, a->room, a->event_id, a->ts_ms);
        if (a->kind == FB_MX_MESSAGE && !bt->m->stopping && !bt->quiet)
            mx_receipt(bt->m, a->room, a->event_id);
    } else if (status == FB_EINVAL) {
        FB_WARN(MATRIX, "[matrix|%s] event refused by the router as malformed: skipped",
                mx_conv_tag(a->conv, tag));
    } else if (!bt->failed) {
        bt->failed = status;
    }
    fb_free(d);
    bt->inflight--;
    mx_batch_pump(bt);
}

/* Hands action `idx` to the router. Returns 0 (in flight), FB_DECLINED (not handed, nothing to
 * wait for), FB_EAGAIN to wait, or an error. */
static int deliver(struct batch *bt, size_t idx)
{
    struct mx *m = bt->m;
    fb_mx_action_t *a = &bt->b.actions[idx];
    /* The router's rule for control characters (fb_utf8_clean_text()), applied here too to tell
     * the user when nothing readable is left: the router would only refuse it as malformed. */
    if (a->kind == FB_MX_MESSAGE && a->text && fb_utf8_clean_text(a->text) > 0 &&
        fb_utf8_blank(a->text)) {
        if (!m->a || m->stopping)
            return FB_ECANCELED;
        mx_controls_notice(m, a->room, a->event_id);
        return FB_DECLINED;
    }
    const char *alias = json_string_value(json_object_get(m->alias_names, a->room));
    if (alias) { /* an advisors' room named by its alias: the alias is the conversation */
        char *conv = fb_mx_conv_with_room(a->conv, alias);
        fb_free(a->conv);
        a->conv = conv;
    }
    fb_inbound_t ev = {.kind = a->kind == FB_MX_MESSAGE ? FB_IN_MESSAGE : FB_IN_START,
                       .conv = a->conv,
                       .sender = a->sender,
                       .sender_name = a->sender_name,
                       .sender_gone = a->sender_gone,
                       .event_id = a->event_id,
                       .text = a->text,
                       .ts_ms = a->ts_ms,
                       .commit_arg = bt->txn_arg};
    if (!m->a || m->stopping)
        return FB_ECANCELED;
    struct dctx *d = fb_calloc(1, sizeof(*d));
    d->bt = bt;
    d->idx = idx;
    int rc = m->core->deliver(m->a, &ev, on_delivered, d);
    if (rc) {
        fb_free(d);
        return rc;
    }
    if (a->kind == FB_MX_MESSAGE && !bt->quiet)
        mx_typing(m, a->room, true);
    bt->inflight++;
    return 0;
}

/* The router's committed() (fb_adapter_ops_t): the COMMIT of an event this adapter delivered
 * ran the adapter's fragment (mx_as_commit_lua), which wrote its transaction's mark: the batch
 * needs no script of its own for it (mx_appservice.c). `arg` is the deliver() argument. */
void mx_committed(fb_adapter_t *a, const char *conv, const char *out, size_t len, void *arg)
{
    (void)a, (void)conv;
    struct dctx *d = arg;
    if (d && out && len >= 1 && out[0] == '1')
        mx_as_txn_committed(d->bt, out + 1, len - 1);
}

void mx_step_done(struct batch *bt, int status)
{
    bt->serial = false;
    if (status && !bt->failed)
        bt->failed = status;
    mx_batch_pump(bt);
}

/* Transient (the platform must send the batch again) or final (logged, the batch goes on)? */
int mx_classify(int err, int status)
{
    if (!err)
        return 0;
    if (err == FB_EHTTP && status >= 400 && status < 500 && status != 429)
        return 0; /* refused for good: nothing to retry */
    return err == FB_ECANCELED ? FB_ECANCELED : FB_EAGAIN;
}

static void on_joined_check(struct mx *m, int status, redisReply *reply, void *arg)
{
    struct batch *bt = arg;
    size_t idx = bt->next - 1;
    char tag[FB_MX_TAG_LEN + 1];
    if (status) {
        mx_step_done(bt, FB_EAGAIN);
        return;
    }
    bool encrypted = reply && reply->type == REDIS_REPLY_STRING && strcmp(reply->str, "1") == 0;
    fb_mx_action_t *a = &bt->b.actions[idx];
    m->rooms_joined++;
    if (encrypted && !m->e2ee) {
        FB_INFO(MATRIX, "[matrix|%s] joined an encrypted room: no greeting",
                mx_conv_tag(a->room, tag));
        send_notice(m, a->room);
        mx_step_done(bt, 0);
        return;
    }
    if (json_object_get(m->advisor_rooms, a->room))
        FB_INFO(MATRIX, "[matrix|%s] joined an advisors' room (escalation.rooms)",
                mx_conv_tag(a->room, tag));
    else
        FB_INFO(MATRIX, "[matrix|%s] joined a room: greeting", mx_conv_tag(a->room, tag));
    int rc = deliver(bt, idx);
    if (rc == FB_EINVAL || rc == FB_DECLINED)
        rc = 0;
    mx_step_done(bt, rc);
}

static void on_step_redis(struct mx *m, int status, redisReply *reply, void *arg)
{
    (void)m, (void)reply;
    mx_step_done(arg, status ? FB_EAGAIN : 0);
}

static void on_encrypted_marked(struct mx *m, int status, redisReply *reply, void *arg)
{
    struct batch *bt = arg;
    fb_mx_action_t *a = &bt->b.actions[bt->next - 1];
    if (status) {
        mx_step_done(bt, FB_EAGAIN);
        return;
    }
    /* reply: the previous `notice` field (nil: never told). An invite's stripped state only
     * records the fact: the bot is not in the room yet, so a send would be refused (403); the
     * notice goes out when the bot's join is seen (on_joined_check). */
    mx_e2ee_room_encrypted(m, a->room);
    if (!m->e2ee && !a->invited && !(reply && reply->type == REDIS_REPLY_STRING))
        send_notice(m, a->room);
    mx_step_done(bt, 0);
}

static const char encrypted_script[] = "#!lua\n"
                                       "redis.call('HSET', KEYS[1], 'encrypted', '1')\n"
                                       "local ttl = tonumber(ARGV[1])\n"
                                       "if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end\n"
                                       "return redis.call('HGET', KEYS[1], 'notice')\n";

static const char hset_ttl_script[] = "#!lua\n"
                                      "redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])\n"
                                      "local ttl = tonumber(ARGV[1])\n"
                                      "if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end\n"
                                      "return 1\n";

/* True when the invite is accepted (the bot joins), false when refused (the bot leaves). */
static bool invite_allowed(const struct mx *m, const fb_mx_action_t *a)
{
    return a->sender &&
           fb_mx_invite_allowed((const char *const *)m->o->allowed_servers,
                                (const char *const *)m->o->allowed_users, m->o->user_id, a->sender);
}

static void on_invite_answered(struct mx *m, int err, int status, json_t *body,
                               const fb_http_response_t *resp, void *arg)
{
    struct batch *bt = arg;
    fb_mx_action_t *a = &bt->b.actions[bt->next - 1];
    char tag[FB_MX_TAG_LEN + 1];
    mx_conv_tag(a->room, tag);
    (void)resp;
    int rc = mx_classify(err, status);
    if (err && !rc)
        FB_WARN(MATRIX, "[matrix|%s] invite: the server refused (HTTP %d %s): dropped", tag, status,
                mx_errcode(body) ? mx_errcode(body) : "");
    if (rc) {
        FB_INFO(MATRIX, "[matrix|%s] invite not answered yet (%s): the batch will be retried", tag,
                fb_err_name(err));
        mx_step_done(bt, rc);
        return;
    }
    if (!err && invite_allowed(m, a))
        mx_e2ee_joined(m, a->room); /* its first messages may wait (encrypted rooms only) */
    if (!err && a->direct) {
        char *k = mx_room_key(m, a->room);
        const char *argv[] = {"EVAL", hset_ttl_script, "1", k, m->ttl_ms, "direct", "1"};
        int s = mx_rcmd_argv(m, on_step_redis, bt, 7, argv);
        fb_free(k);
        if (s == 0)
            return;
    }
    mx_step_done(bt, 0);
}

static void on_members(struct mx *m, int err, int status, json_t *body,
                       const fb_http_response_t *resp, void *arg)
{
    char *room = arg;
    char tag[FB_MX_TAG_LEN + 1];
    mx_conv_tag(room, tag);
    (void)resp;
    json_t *joined = json_object_get(body, "joined");
    if (!err && json_is_object(joined) && json_object_size(joined) <= 1 && !m->stopping) {
        FB_INFO(MATRIX, "[matrix|%s] the bot is alone in the room: leaving", tag);
        char *path = mx_room_path(room, "/leave");
        json_t *b = json_object();
        mx_best_effort(m, "POST", path, b);
        json_decref(b);
        fb_free(path);
        char *k = mx_room_key(m, room);
        const char *argv[] = {"DEL", k};
        (void)mx_rcmd_argv(m, NULL, NULL, 2, argv);
        fb_free(k);
    } else if (err) {
        FB_DEBUG(MATRIX, "[matrix|%s] members not read: %s (HTTP %d)", tag, fb_err_name(err),
                 status);
    }
    fb_free(room);
}

/* --- thread senders: their display name (advisors' labels) and whether they are still members ---
 */

#define NAMES_MAX      1000               /* entries kept; the cache is emptied beyond */
#define NAMES_FRESH_MS (10LL * 60 * 1000) /* a name is read again after this */
#define NAME_MAX_BYTES 255

static char *name_key(const fb_mx_action_t *a)
{
    return fb_asprintf("%s %s", a->room, a->sender);
}

/* The cached name of `a`'s sender, when fresh: true and a->sender_name set (NULL: none). */
static bool name_cached(struct mx *m, fb_mx_action_t *a)
{
    char *k = name_key(a);
    json_t *v = json_object_get(m->names, k);
    fb_free(k);
    if (!v || fb_wall_ms() - (int64_t)json_integer_value(json_array_get(v, 1)) > NAMES_FRESH_MS)
        return false;
    const char *n = json_string_value(json_array_get(v, 0));
    a->sender_name = n && *n ? fb_strdup(n) : NULL;
    a->sender_gone = !json_is_true(json_array_get(v, 2));
    return true;
}

static void on_name(struct mx *m, int err, int status, json_t *body, const fb_http_response_t *resp,
                    void *arg)
{
    struct batch *bt = arg;
    (void)resp;
    fb_mx_action_t *a = &bt->b.actions[bt->next];
    json_t *dn = json_object_get(body, "displayname");
    const char *n = json_is_string(dn) ? json_string_value(dn) : NULL;
    if (n && (strlen(n) > NAME_MAX_BYTES || !*n))
        n = NULL;
    const char *ms = json_string_value(json_object_get(body, "membership"));
    /* 404: no member event at all; otherwise only "join" is a member now */
    bool known = !err || status == 404;
    bool member = !err && ms && strcmp(ms, "join") == 0;
    if (known) {
        if (json_object_size(m->names) >= NAMES_MAX)
            json_object_clear(m->names);
        char *k = name_key(a);
        json_object_set_new(m->names, k,
                            json_pack("[s, I, b]", n ? n : "", (json_int_t)fb_wall_ms(), member));
        fb_free(k);
    }
    a->sender_name = n ? fb_strdup(n) : NULL;
    a->sender_gone = known && !member;
    /* without a name the label is the user id's localpart; a stop sends the batch again */
    mx_step_done(bt, err == FB_ECANCELED ? FB_ECANCELED : 0);
}

/* Looks up the display name of the sender of thread message `a` (the batch's next action).
 * Returns true when a request is in flight (the batch waits for on_name()). */
static bool name_fetch(struct batch *bt, fb_mx_action_t *a)
{
    struct mx *m = bt->m;
    a->name_tried = true;
    if (!a->sender || name_cached(m, a) || !m->token)
        return false;
    char *u = fb_mx_path_escape(a->sender);
    char *tail = fb_asprintf("/state/m.room.member/%s", u);
    char *path = mx_room_path(a->room, tail);
    int rc = mx_call_full(m, "GET", path, NULL, 0, &mx_no_retry, true, false, false, on_name, bt);
    fb_free(path);
    fb_free(tail);
    fb_free(u);
    if (rc)
        return false;
    bt->serial = true;
    return true;
}

/* Starts the serial step of action `a`. Returns true when it is in flight (serial set). */

static bool start_step(struct batch *bt, fb_mx_action_t *a)
{
    struct mx *m = bt->m;
    char tag[FB_MX_TAG_LEN + 1];
    mx_conv_tag(a->room, tag);
    char *k = mx_room_key(m, a->room);
    int rc = 0;
    bool async = true;
    switch (a->kind) {
    case FB_MX_JOINED: {
        const char *argv[] = {"HGET", k, "encrypted"};
        rc = mx_rcmd_argv(m, on_joined_check, bt, 3, argv);
        break;
    }
    case FB_MX_INVITE: {
        bool ok = invite_allowed(m, a);
        json_t *b;
        char *path;
        if (ok) {
            char *r = fb_mx_path_escape(a->room);
            path = fb_asprintf(CLIENT_PATH "/join/%s", r);
            fb_free(r);
            b = json_object();
            FB_INFO(MATRIX, "[matrix|%s] invited%s: joining", tag, a->direct ? " (direct)" : "");
        } else {
            path = mx_room_path(a->room, "/leave");
            b = json_pack("{s:s}", "reason", REFUSE_REASON);
            FB_NOTICE(MATRIX, "[matrix|%s] invite from a server or user not allowed: refused", tag);
        }
        rc = mx_call(m, "POST", path, b, on_invite_answered, bt);
        json_decref(b);
        fb_free(path);
        break;
    }
    case FB_MX_ENCRYPTED: {
        const char *argv[] = {"EVAL", encrypted_script, "1", k, m->ttl_ms};
        rc = mx_rcmd_argv(m, on_encrypted_marked, bt, 5, argv);
        break;
    }
    case FB_MX_RULE: {
        FB_DEBUG(MATRIX, "[matrix|%s] access rule %s", tag, a->text);
        const char *argv[] = {"EVAL", hset_ttl_script, "1", k, m->ttl_ms, "rule", a->text};
        rc = mx_rcmd_argv(m, on_step_redis, bt, 7, argv);
        break;
    }
    case FB_MX_LEFT: {
        FB_INFO(MATRIX, "[matrix|%s] the bot is no longer in the room", tag);
        mx_e2ee_forget_room(m, a->room);
        mx_as_recent_forget(m, a->room);
        const char *argv[] = {"DEL", k};
        rc = mx_rcmd_argv(m, on_step_redis, bt, 2, argv);
        break;
    }
    case FB_MX_MEMBER_LEFT:
        async = false;
        if (a->sender) { /* forget what was known of them (thread senders' membership) */
            char *nk = name_key(a);
            json_object_del(m->names, nk);
            fb_free(nk);
        }
        if (m->o->leave_when_alone && m->token) {
            char *path = mx_room_path(a->room, "/joined_members");
            char *arg = fb_strdup(a->room);
            if (mx_call(m, "GET", path, NULL, on_members, arg))
                fb_free(arg);
            fb_free(path);
        }
        break;
    case FB_MX_GAP:
        if (!a->text) {
            async = false;
            FB_INFO(MATRIX, "[matrix|%s] gap in room without prev_batch: older events not answered",
                    tag);
            break;
        }
        rc = mx_gap_start(bt, a);
        break;
    case FB_MX_MESSAGE:
        async = false;
        break;
    }
    fb_free(k);
    if (async && rc) {
        if (!bt->failed)
            bt->failed = rc == FB_ECLOSING ? FB_ECANCELED : FB_EAGAIN;
        return false;
    }
    if (async)
        bt->serial = true;
    return async;
}

void mx_batch_pump(struct batch *bt)
{
    if (bt->pumping || bt->finished)
        return;
    bt->pumping = true;
    while (!bt->failed && !bt->serial && bt->next < bt->b.n) {
        fb_mx_action_t *a = &bt->b.actions[bt->next];
        if (a->kind == FB_MX_MESSAGE) {
            /* A slice at a time (matrix.max_events_in_flight): a transaction of thousands of
             * events is worked through as the router answers, its memory and Redis queue
             * bounded, and the loop free between slices (/healthz, the web chat). */
            if (bt->inflight >= bt->m->o->max_events_in_flight)
                break;
            if (a->thread_root && !a->name_tried && name_fetch(bt, a))
                break;
            int rc = deliver(bt, bt->next);
            if (rc == FB_EAGAIN && bt->inflight > 0)
                break; /* the conversation's or the router's queue is full: wait for an answer */
            if (rc == FB_EAGAIN)
                bt->router_full = true; /* nothing of ours in the router to wait for */
            if (rc == FB_DECLINED)
                rc = 0;
            if (rc == FB_EINVAL) {
                char tag[FB_MX_TAG_LEN + 1];
                FB_WARN(MATRIX, "[matrix|%s] message refused by the router (malformed): skipped",
                        mx_conv_tag(a->conv, tag));
                rc = 0;
            }
            if (rc) {
                bt->failed = rc;
                break;
            }
            bt->next++;
            continue;
        }
        bt->next++;
        (void)start_step(bt, a);
    }
    bt->pumping = false;
    if ((bt->failed || bt->next == bt->b.n) && !bt->serial && bt->inflight == 0) {
        bt->finished = true;
        bt->done(bt, bt->failed);
    }
}

struct batch *mx_batch_new(struct mx *m)
{
    struct batch *bt = fb_calloc(1, sizeof(*bt));
    bt->m = m;
    mx_op_begin(m);
    return bt;
}

fb_mx_parse_opts_t mx_parse_opts(struct mx *m, bool history)
{
    fb_mx_parse_opts_t po = {.bot = m->o->user_id, .ignore_users = m->ignore, .history = history};
    return po;
}

void mx_log_parse(struct mx *m, const fb_mx_batch_t *b, const char *what)
{
    (void)m;
    if (b->skipped || b->repaired)
        FB_WARN(MATRIX, "%s: %zu malformed event(s) skipped, %zu invalid byte sequence(s) replaced",
                what, b->skipped, b->repaired);
    FB_DEBUG(MATRIX, "%s: %zu action(s), %zu event(s) ignored", what, b->n, b->ignored);
}
