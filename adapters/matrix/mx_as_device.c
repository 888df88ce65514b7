/* SPDX-License-Identifier: MIT */
/*
 * mx_as_device.c - the application service's device (docs/internals/MATRIX.md): the bot user's
 * device, made by the service itself (MSC4190: PUT /devices/{id} with the as_token, no login),
 * and the masquerade that makes every request of the service count as that device (the
 * `device_id` query parameter; Synapse checks that the device exists).
 *
 * Why in both modes: a homeserver keeps the transaction ids of a device's sends in its database
 * (Synapse: event_txn_id_device_id, 24 hours), but those of a service without a device in memory
 * only. A send whose answer was lost as the homeserver stopped, sent again with the same
 * transaction id once it is back, is then stored twice: a reply shown twice (make soak saw it).
 * With the device the resend is answered with the first event's id. A homeserver that refuses
 * the device (a registration without io.element.msc4190) leaves the clear mode as it was, with a
 * warning; the encrypted mode needs the device.
 *
 * With encryption, once the device exists mx_e2ee.c prepares it as in bot mode (keys,
 * cross-signing, without user-interactive auth for a service) and decrypts each transaction
 * (mx_e2ee_txn()).
 *
 * Redis: the device id is the field "device_id" of matrix:auth, chosen once (HSETNX) and kept
 * (shared by the daemons of one deployment, so that one resends what another sent): the crypto
 * state in matrix:e2ee:* belongs to it.
 */
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "frichebot/alloc.h"
#include "frichebot/err.h"
#include "frichebot/log.h"
#include "matrix.h"
#include "mx_e2ee.h"
#include "mx_util.h"

#define DEVICE_ID_LEN 10
/* Transient failures to make the device (each after the HTTP client's own retries) before the
 * clear mode sends without one. */
#define AS_DEVICE_MAX_FAILS 5

/* A new device id: "FB" and DEVICE_ID_LEN capital letters. */
static void new_device_id(char out[2 + DEVICE_ID_LEN + 1])
{
    unsigned char r[DEVICE_ID_LEN];
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
        memset(r, 0, sizeof(r));
    out[0] = 'F';
    out[1] = 'B';
    for (int i = 0; i < DEVICE_ID_LEN; i++)
        out[2 + i] = (char)('A' + r[i] % 26);
    out[2 + DEVICE_ID_LEN] = '\0';
}

char *mx_as_masquerade(struct mx *m, const char *path)
{
    if (m->mode != MODE_AS || !m->device_id)
        return NULL;
    char *u = fb_mx_path_escape(m->o->user_id);
    char *d = fb_mx_path_escape(m->device_id);
    char *p = fb_asprintf("%s%suser_id=%s&device_id=%s", path, strchr(path, '?') ? "&" : "?", u, d);
    fb_free(u);
    fb_free(d);
    return p;
}

/* The device's making or preparing ended: the waiting transactions go on (or get a 503). */
static void device_done(struct mx *m)
{
    m->as_device_busy = false;
    mx_as_txn_resume(m);
}

static void on_prepared(struct mx *m, int status)
{
    if (status)
        FB_WARN(MATRIX,
                "e2ee: the service's device is not ready (%s): tried again at the next "
                "transaction",
                fb_err_name(status));
    else
        FB_INFO(MATRIX, "e2ee: the service's device is ready");
    device_done(m);
}

/* A refusal that trying again will not change (not a 429, a 5xx or a transport failure). */
static bool refused_for_good(int err, int status)
{
    return err && status >= 400 && status < 500 && status != 429;
}

static void on_device_put(struct mx *m, int err, int status, json_t *body,
                          const fb_http_response_t *resp, void *arg)
{
    (void)resp;
    char *id = arg;
    if (m->stopping) {
        device_done(m);
        fb_free(id);
        return;
    }
    if (err && m->e2ee) {
        FB_ERR(MATRIX,
               "e2ee: the service cannot make its device (%s, HTTP %d %s): the homeserver "
               "must support MSC4190 (registration io.element.msc4190: true)",
               fb_err_name(err), status, mx_errcode(body) ? mx_errcode(body) : "");
        device_done(m);
        fb_free(id);
        return;
    }
    if (err) {
        if (refused_for_good(err, status)) {
            m->as_device_refused = true;
            FB_WARN(MATRIX,
                    "the homeserver refused the service's device (HTTP %d %s): replies go "
                    "without one, and one in flight when the homeserver restarts may be stored "
                    "twice (it keeps a service's transaction ids in memory only); add "
                    "`io.element.msc4190: true` to the registration (frichebot "
                    "matrix-registration writes it)",
                    status, mx_errcode(body) ? mx_errcode(body) : "");
        } else if (++m->as_device_fails >= AS_DEVICE_MAX_FAILS) {
            /* A homeserver (or a proxy in front of it) that keeps failing this one request must
             * not hold every reply back: without a device, as before, until the next start. */
            m->as_device_refused = true;
            FB_WARN(MATRIX,
                    "the service's device could not be made (%u failures, the last %s, HTTP "
                    "%d): replies go without one until the next start, and one in flight when "
                    "the homeserver restarts may be stored twice",
                    m->as_device_fails, fb_err_name(err), status);
        } else {
            FB_INFO(MATRIX, "the service's device is not made yet (%s, HTTP %d): tried again",
                    fb_err_name(err), status);
        }
        device_done(m);
        fb_free(id);
        return;
    }
    fb_free(m->device_id);
    m->device_id = id; /* from now on every request masquerades as this device */
    if (!m->e2ee) {
        FB_INFO(MATRIX, "the service's device is %s", m->device_id);
        device_done(m);
        return;
    }
    mx_e2ee_prepare(m, on_prepared);
}

static void on_device_id(struct mx *m, int status, redisReply *reply, void *arg)
{
    (void)arg;
    if (status || m->stopping || !reply || reply->type != REDIS_REPLY_STRING) {
        device_done(m);
        return;
    }
    char *id = fb_strdup(reply->str);
    char *e = fb_mx_path_escape(id), *u = fb_mx_path_escape(m->o->user_id);
    char *path = fb_asprintf(CLIENT_PATH "/devices/%s?user_id=%s", e, u);
    json_t *b = json_pack("{s:s}", "display_name",
                          m->o->device_display_name ? m->o->device_display_name : "frichebot");
    /* made or found: an upsert, the same id at every start */
    if (mx_call(m, "PUT", path, b, on_device_put, id)) {
        device_done(m);
        fb_free(id);
    }
    json_decref(b);
    fb_free(path);
    fb_free(e);
    fb_free(u);
}

static const char device_script[] = "#!lua\n"
                                    "redis.call('HSETNX', KEYS[1], 'device_id', ARGV[1])\n"
                                    "return redis.call('HGET', KEYS[1], 'device_id')\n";

void mx_as_device_ensure(struct mx *m)
{
    if (m->mode != MODE_AS || m->stopping || m->as_device_busy)
        return;
    if (m->e2ee ? mx_e2ee_as_ready(m) : (m->device_id || m->as_device_refused))
        return;
    m->as_device_busy = true;
    if (m->device_id) { /* the device exists: its keys only */
        mx_e2ee_prepare(m, on_prepared);
        return;
    }
    char id[2 + DEVICE_ID_LEN + 1];
    new_device_id(id);
    const char *argv[] = {"EVAL", device_script, "1", m->k_auth, id};
    if (mx_rcmd_argv(m, on_device_id, NULL, 5, argv))
        device_done(m);
}

bool mx_e2ee_as_ready(struct mx *m)
{
    return !m->e2ee || (m->device_id && mx_e2ee_ready(m));
}

bool mx_as_send_ready(struct mx *m)
{
    if (m->mode != MODE_AS || m->e2ee || m->device_id || m->as_device_refused)
        return true; /* encrypted sends wait for the keys in mx_e2ee.c */
    mx_as_device_ensure(m);
    return false;
}
