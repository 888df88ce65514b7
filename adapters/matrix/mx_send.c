/* SPDX-License-Identifier: MIT */
/*
 * mx_send.c - the Matrix adapter's send(): messages, thread relays and redactions, the event id
 * handed back through core->sent (docs/internals/MATRIX.md).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <uv.h>

#include "common/digest.h"
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
/* send() */

struct sctx {
    struct mx *m;
    fb_send_cb cb;
    void *arg;
    char *room;
    char *alias;      /* the conversation's room when named by its alias, else NULL */
    char *path;       /* the PUT's path */
    char *txn;        /* the outbox's transaction id */
    json_t *content;  /* the PUT's body */
    char *root;       /* the thread's root, once known */
    json_t *entry;    /* a copy of the outbox entry, handed to core->sent with the event id */
    const char *what; /* "reply" or "redaction", for the logs */
    char tag[FB_MX_TAG_LEN + 1];
};

/* How long a relay waits, between tries, for its thread's root to be recorded. */
#define ROOT_WAIT_MS 200
/* How long an encrypted send waits after its keys could not be prepared (a /keys/claim failed). */
#define E2EE_WAIT_MS 1000

static void sctx_free(struct sctx *s)
{
    json_decref(s->entry);
    json_decref(s->content);
    fb_free(s->room);
    fb_free(s->alias);
    fb_free(s->path);
    fb_free(s->txn);
    fb_free(s->root);
    fb_free(s);
}

static void sctx_done(struct sctx *s, int rc, int64_t retry_after)
{
    s->cb(rc, retry_after, s->arg);
    sctx_free(s);
}

static const char REDACT_REASON[] = "Données supprimées à la demande de l'usager";

/* Withdraws event `id` of `room` (best effort: its owner's data is already gone). */
static void withdraw(struct mx *m, const char *room, const char *id)
{
    char *e = fb_mx_path_escape(id); /* the event id is unique: a fine transaction id too */
    char *tail = fb_asprintf("/redact/%s/fbw-%s", e, e);
    char *path = mx_room_path(room, tail);
    json_t *b = json_pack("{s:s}", "reason", REDACT_REASON);
    mx_best_effort(m, "PUT", path, b);
    json_decref(b);
    fb_free(path);
    fb_free(tail);
    fb_free(e);
}

struct recorded {
    struct sctx *s;
    char *event_id;
};

/* The core kept the event id where the entry asked (core->sent): the send is done. */
static void on_recorded(int status, bool gone, void *arg)
{
    struct recorded *rc = arg;
    struct mx *m = rc->s->m;
    if (!status && gone) {
        FB_INFO(MATRIX, "[matrix|%s] message sent for a forgotten conversation: withdrawn",
                rc->s->tag);
        if (!m->stopping)
            withdraw(m, rc->s->room, rc->event_id);
    }
    sctx_done(rc->s, status ? FB_EAGAIN : 0, 0); /* resent with the same txn: same event id */
    fb_free(rc->event_id);
    fb_free(rc);
    mx_op_end(m);
}

/*
 * Hands the event id to the core (core->sent), which keeps it where the entry asks (escalation's
 * tickets); true when that is in flight (on_recorded() ends the send). False when the entry asks
 * nothing (*rc left alone) or on failure (*rc = FB_EAGAIN).
 */
static bool record(struct mx *m, struct sctx *s, const char *event_id, int *rc)
{
    if (!m->core->sent)
        return false;
    struct recorded *r = fb_calloc(1, sizeof(*r));
    r->s = s;
    r->event_id = fb_strdup(event_id);
    /* Where the message is, as the conversation names it: a redaction queued later goes to the
     * same outbox as the room's other messages (the alias's, for an alias-named room). */
    int e =
        m->core->sent(m->core, s->entry, s->alias ? s->alias : s->room, event_id, on_recorded, r);
    if (e == 0) {
        mx_op_begin(m);
        return true;
    }
    fb_free(r->event_id);
    fb_free(r);
    if (e != FB_DECLINED)
        *rc = FB_EAGAIN;
    return false;
}

static void on_sent(struct mx *m, int err, int status, json_t *body, const fb_http_response_t *resp,
                    void *arg)
{
    struct sctx *s = arg;
    int64_t retry_after = 0;
    int rc = 0;
    const char *event_id = json_string_value(json_object_get(body, "event_id"));
    if (!err && event_id) {
        if (strstr(s->path, "/send/m.room.encrypted/"))
            mx_e2ee_sent(m, s->txn);
        if (!m->stopping && strcmp(s->what, "reply") == 0)
            mx_typing(m, s->room, false);
        if (strcmp(s->what, "reply") == 0) /* a redaction is not in the read-back's timeline */
            mx_as_recent_note(m, s->room, event_id, 0);
        if (record(m, s, event_id, &rc))
            return;
    } else if (strcmp(s->what, "redaction") == 0 && status == 404) {
        rc = 0; /* already gone */
    } else if (err == FB_ECANCELED) {
        rc = FB_ECANCELED;
    } else if (status == 429) {
        long ra = fb_http_retry_after_ms(fb_http_response_header(resp, "Retry-After"), fb_wall_s());
        json_t *r = json_object_get(body, "retry_after_ms");
        retry_after = ra >= 0 ? ra : json_is_integer(r) ? (int64_t)json_integer_value(r) : 0;
        FB_INFO(MATRIX, "[matrix|%s] rate limited: retry in %lld ms", s->tag,
                (long long)retry_after);
        rc = FB_EAGAIN;
    } else if (status == 401 || !err || status == 0 || status >= 500) {
        rc = FB_EAGAIN; /* token recovery, or an answer without event_id, or transient */
        FB_INFO(MATRIX, "[matrix|%s] %s not sent yet: %s (HTTP %d)", s->tag, s->what,
                fb_err_name(err), status);
    } else {
        FB_WARN(MATRIX, "[matrix|%s] %s refused by the server (HTTP %d %s)", s->tag, s->what,
                status, mx_errcode(body) ? mx_errcode(body) : "");
        rc = FB_EPROTO;
    }
    sctx_done(s, rc, retry_after);
}

static int put_now(struct mx *m, struct sctx *s)
{
    int rc = mx_call_full(m, "PUT", s->path, s->content, 0, &mx_no_retry, true, false, false,
                          on_sent, s);
    return rc == 0 ? 0 : rc == FB_ECLOSING ? FB_ECANCELED : FB_EAGAIN;
}

/* The message's content encrypted for its room (mx_e2ee.c): then the PUT. */
static void on_encrypted(struct mx *m, int status, json_t *enc, void *arg)
{
    struct sctx *s = arg;
    if (status == FB_DECLINED) { /* a clear room */
        int rc = put_now(m, s);
        if (rc)
            sctx_done(s, rc, 0);
        return;
    }
    if (status == FB_ENOTYET) {
        /* A new encrypted room's first messages wait until first_message_delay_ms after the
         * join (mx_e2ee.c): the router hands the entry, still in the outbox, again when the wait
         * is over (a crash meanwhile: it is sent after the restart, without waiting). */
        int64_t wait = mx_e2ee_first_wait_ms(m, s->room);
        sctx_done(s, FB_ENOTYET, wait > 0 ? wait : 1);
        return;
    }
    if (status || !enc) {
        sctx_done(s, status ? status : FB_EAGAIN, status == FB_EAGAIN ? E2EE_WAIT_MS : 0);
        return;
    }
    json_decref(s->content);
    s->content = json_incref(enc);
    char *t = fb_mx_path_escape(s->txn);
    char *tail = fb_asprintf("/send/m.room.encrypted/%s", t);
    fb_free(s->path);
    s->path = mx_room_path(s->room, tail);
    fb_free(tail);
    fb_free(t);
    int rc = put_now(m, s);
    if (rc)
        sctx_done(s, rc, 0);
}

/* The PUT of a prepared send, encrypted first in an encrypted room. 0, or an error (and `s` is
 * left to the caller). */
static int put(struct mx *m, struct sctx *s)
{
    if (s->root)
        fb_mx_thread_relation(s->content, s->root);
    if (m->e2ee && strcmp(s->what, "reply") == 0) {
        int rc = mx_e2ee_encrypt(m, s->room, s->txn, s->content, on_encrypted, s);
        if (rc == 0)
            return 0;
        if (rc != FB_DECLINED)
            return FB_EAGAIN;
    }
    return put_now(m, s);
}

/* The root of a "ROOM/~TICKET" thread, from the core (core->thread_root): then the PUT. */
static void on_thread_root(int status, const char *root, void *arg)
{
    struct sctx *s = arg;
    struct mx *m = s->m;
    if (status == FB_ENOENT) {
        FB_INFO(MATRIX, "[matrix|%s] thread message dropped: its ticket is gone", s->tag);
        sctx_done(s, 0, 0);
    } else if (status || !root || m->stopping) {
        sctx_done(s, m->stopping ? FB_ECANCELED : FB_EAGAIN,
                  status == FB_EAGAIN || (!status && !root) ? ROOT_WAIT_MS : 0);
    } else {
        s->root = fb_strdup(root);
        int rc = put(m, s);
        if (rc)
            sctx_done(s, rc, 0);
    }
    mx_op_end(m);
}

int mx_send(fb_adapter_t *a, const fb_outbound_t *msg, fb_send_cb cb, void *arg)
{
    struct mx *m = *(struct mx **)fb_adapter_priv(a);
    if (!cb || !msg || !msg->txn_id || !*msg->txn_id || strlen(msg->txn_id) > 200)
        return FB_EINVAL;
    if (m->stopping)
        return FB_ECANCELED;
    if (!m->token)
        return FB_EAGAIN; /* not logged in yet */
    if (!mx_as_send_ready(m))
        return FB_ENOTYET; /* the service's device first, so that a resend is recognised */
    /* "ROOM/~TICKET": a thread whose root is read from Redis (the entry's "thread" {key, field}) */
    const char *tilde = msg->conv ? strstr(msg->conv, "/~") : NULL;
    char *conv = tilde ? fb_strndup(msg->conv, (size_t)(tilde - msg->conv)) : NULL;
    char *room = NULL, *root = NULL;
    int bad = fb_mx_conv_split(conv ? conv : msg->conv, &room, &root);
    fb_free(conv);
    if (bad)
        return FB_EINVAL;
    char *alias = NULL;
    if (room[0] == '#') { /* an advisors' room named by its alias */
        const char *id = json_string_value(json_object_get(m->alias_ids, room));
        if (!id) {
            fb_free(room);
            fb_free(root);
            return m->aliases_ready ? FB_EINVAL : FB_EAGAIN; /* not one of ours, or not yet */
        }
        alias = room;
        room = fb_strdup(id);
    }
    bool redact = msg->kind && strcmp(msg->kind, "redact") == 0;
    const char *redacts = msg->redacts;
    json_t *content = NULL;
    char *t = fb_mx_path_escape(msg->txn_id);
    char *tail = NULL;
    if (redact && redacts && redacts[0] == '$') {
        content = json_pack("{s:s}", "reason", REDACT_REASON);
        char *ev = fb_mx_path_escape(redacts);
        tail = fb_asprintf("/redact/%s/%s", ev, t);
        fb_free(ev);
    } else if (!redact) {
        const char *msgtype = fb_mx_msgtype_of(msg->kind, m->o->reminder_msgtype);
        content = fb_mx_message_content(msgtype, msg->text ? msg->text : "", msg->html, NULL);
        if (content && msg->kind && strcmp(msg->kind, "ticket") == 0)
            fb_mx_ticket_mentions(content, m->o->ticket_mention, m->o->ticket_mention_users);
        tail = fb_asprintf("/send/m.room.message/%s", t);
    }
    fb_free(t);
    if (!content) {
        fb_free(tail);
        fb_free(room);
        fb_free(alias);
        fb_free(root);
        return FB_EINVAL;
    }
    struct sctx *s = fb_calloc(1, sizeof(*s));
    s->m = m;
    s->cb = cb;
    s->arg = arg;
    s->room = room;
    s->alias = alias;
    s->root = root;
    s->content = content;
    s->path = mx_room_path(room, tail);
    s->txn = fb_strdup(msg->txn_id);
    s->what = redact ? "redaction" : "reply";
    s->entry = msg->entry ? json_deep_copy(msg->entry) : NULL;
    fb_mx_tag(msg->conv, s->tag);
    fb_free(tail);
    int rc;
    if (tilde) {
        rc = m->core->thread_root ? m->core->thread_root(m->core, msg->entry, on_thread_root, s)
                                  : FB_EINVAL;
        if (rc == 0)
            mx_op_begin(m);
    } else {
        rc = put(m, s);
    }
    if (rc)
        sctx_free(s);
    return rc;
}
