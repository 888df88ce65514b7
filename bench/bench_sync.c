/* SPDX-License-Identifier: MIT */
/*
 * bench_sync.c - events per second through the Matrix bot mode (/sync) of a running daemon, in
 * clear or end-to-end encrypted rooms: the cost of encryption. Driven by bench/run.sh
 * (`make bench`), which runs it alternately without and with -e.
 *
 * The binary plays the homeserver: a loopback HTTP sink (the daemon's own HTTP server code on a
 * libuv loop) answering the client API the daemon calls: /login, /account/whoami, the filter
 * upload, /sync (long-poll), joined_members, state/m.room.encryption (404 in clear mode),
 * /keys/upload, /keys/query, /keys/claim, /keys/device_signing/upload, /keys/signatures/upload,
 * sendToDevice, /send, receipts and typing. It starts the daemon itself (the command after `--`,
 * whose config points matrix.homeserver at the sink) and stops it (SIGTERM) at the end.
 *
 * C rooms, one user each. A /sync answer hands every room whose next event is ready (one
 * m.room.message "aide" per room); a room's next event is ready only once the bot's first reply
 * to the previous one has arrived (recognised by its transaction id "<hash>.0", as in
 * bench_appservice): one round trip per event, closed loop. The first event of every room is a
 * warm-up (in encrypted mode it sets the Olm sessions up); then the events whose first reply
 * arrives within the next SECONDS are counted, with their latency from the moment the event was
 * ready at the "homeserver" to its first reply (so the wait for the daemon's next /sync is in).
 *
 * Encrypted mode (-e): each user has a peer device, a second instance of the daemon's pure crypto
 * machine (fb_mxc_*, mx_crypto.h). The sink answers /keys/query with the peers' signed device
 * keys and the bot's own (from its /keys/upload), /keys/claim with the peers' one-time keys, and
 * claims the bot's one-time keys itself for the peers. A peer shares its Megolm session with the
 * bot as an Olm to-device m.room_key in the /sync answer (again at each rotation, every 100
 * messages, the Matrix default), and its events go in the timeline as m.room.encrypted. The
 * sink decrypts the bot's to-device room keys and every encrypted reply with the peer:
 * replies that are not readable (or come in clear) are counted as failures. A reply that comes
 * before its room key is kept and decrypted when the key comes, as a client does; those are
 * counted (late_keys), and fail the run only if their key never comes, unless they were sent
 * while the daemon was stopping (stop_without_keys: the daemon sends its pending replies then,
 * but not their room keys, which it keeps in Redis for its next start). The peer's
 * encryption is done when the event becomes ready, so it is not in the latency; but it runs on
 * the same cores as the daemon, so the sink's CPU time over the window is reported next to the
 * daemon's (getrusage of this process, /proc/PID/stat of the daemon; Redis is not counted).
 *
 *   bench_sync -s SINK_PORT -u BOT [-c C] [-d SECONDS] [-e] -- DAEMON_COMMAND...
 *
 * Prints key=value lines: events, seconds, events_per_s, p50_ms, p99_ms, max_ms, sink_cpu_s,
 * daemon_cpu_s, daemon_cpu_us_per_event, sink_cpu_us_per_event, sink_cpu_share,
 * decrypt_failures, late_keys, key_requests, sink_requests. The daemon's CPU time per event is the
 * cost of encryption that does not depend on how much of the cores the sink takes. Exits 1 on a
 * failure (no warm-up within 60 s, the daemon exited, unreadable replies), 3 when the sink
 * cannot listen or the daemon failed before calling it (run.sh tries other ports).
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "../adapters/matrix/mx_crypto.h"
#include "frichebot/alloc.h"
#include "frichebot/err.h"
#include "frichebot/log.h"
#include "io/http_server.h"

#define MAX_ROOMS     1000
#define MAX_LATENCIES 4000000
#define WARM_MAX_MS   60000
#define PARK_MS       20000
#define KILL_MS       10000

struct room {
    char id[32];     /* "!r<i>:bench" */
    char user[32];   /* "@u<i>:bench" */
    char dev[16];    /* the peer's device id */
    fb_mxc_t *peer;  /* encrypted mode: the user's device */
    json_t *peer_dk; /* its signed device keys */
    json_t *otks;    /* its one-time keys not claimed yet */
    json_t *next;    /* the next event, ready to hand (new reference) */
    uint64_t k;      /* events made */
    double ready_at; /* when `next` became ready */
    char last[64];   /* hash part of the last first reply */
    bool queued;     /* in the ready queue */
    bool warm;       /* its first round trip is done */
};

enum phase { WARM, RUN, DONE };

struct bench {
    const char *bot;
    int port, nrooms;
    double seconds;
    bool enc;
    char **cmd;
    struct room *rooms;
    int *queue; /* ring of ready rooms */
    size_t qhead, qlen;
    fb_http_req_t *parked; /* the /sync waiting for events */
    uint64_t nb;           /* next_batch counter */
    enum phase phase;
    int warm;
    double t0;
    json_t *bot_dk;   /* the bot's device keys, from its /keys/upload */
    char *bot_dev;    /* its device id */
    json_t *bot_otks; /* its one-time keys not claimed yet */
    json_t *todev;    /* to-device events for the bot, for the next /sync */
    json_t *late;     /* [{"room", "ev"}]: replies that came before their room key */
    json_t *enc_content;
    uint64_t events, dec_fail, late_keys, stop_lost, key_requests, sink_requests, handed;
    double *lat;
    size_t nlat;
    double cpu_sink0, cpu_daemon0, cpu_sink, cpu_daemon;
    const char *failed;
    uv_loop_t *loop;
    fb_http_server_t *srv;
    uv_timer_t park_timer, run_timer, kill_timer;
    uv_process_t proc;
    bool proc_alive;
};

static struct bench b;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- CPU time ---- */

static double sink_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* User + system time of the daemon from /proc/PID/stat (fields 14 and 15), or 0. */
static double daemon_cpu(void)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", b.proc.pid);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    /* after ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
     * utime(14) stime(15) */
    unsigned long long v[13] = {0};
    p += 2;
    for (int i = 0; i < 13 && *p; i++) {
        while (*p == ' ')
            p++;
        char *end;
        v[i] = i == 0 ? 0 : strtoull(p, &end, 10);
        if (i == 0)
            end = p + 1;
        p = end;
    }
    unsigned long long ut = v[11], st = v[12];
    double hz = (double)sysconf(_SC_CLK_TCK);
    return (double)(ut + st) / hz;
}

/* ---- the peers (encrypted mode) ---- */

static void peers_make(void)
{
    uint8_t pk[32];
    memset(pk, 7, sizeof(pk)); /* never stored: any key will do */
    for (int i = 0; i < b.nrooms; i++) {
        struct room *r = &b.rooms[i];
        fb_mxc_opts_t o = {.user_id = r->user,
                           .device_id = r->dev,
                           .pickle_key = pk,
                           .pickle_key_len = sizeof(pk)};
        r->peer = fb_mxc_new(&o);
        FB_ASSERT(r->peer);
        fb_mxc_ensure_account(r->peer);
        json_t *u = fb_mxc_keys_to_upload(r->peer, -1, false);
        r->peer_dk = json_incref(json_object_get(u, "device_keys"));
        json_decref(u);
        fb_mxc_keys_published(r->peer);
        u = fb_mxc_keys_to_upload(r->peer, 0, false);
        r->otks = json_incref(json_object_get(u, "one_time_keys"));
        json_decref(u);
        fb_mxc_keys_published(r->peer);
        FB_ASSERT(r->peer_dk && json_object_size(r->otks) > 0);
    }
}

/* The bot's device keys are known: every peer learns them (its /keys/query). */
static void peers_learn_bot(void)
{
    json_t *ans = json_pack("{s:{s:{s:O}}}", "device_keys", b.bot, b.bot_dev, b.bot_dk);
    for (int i = 0; i < b.nrooms; i++) {
        fb_mxc_track_user(b.rooms[i].peer, b.bot);
        if (fb_mxc_keys_query_result(b.rooms[i].peer, ans) != 1)
            b.failed = "the peers refuse the bot's device keys";
    }
    json_decref(ans);
}

/* Pops one of the bot's one-time keys for a peer's /keys/claim: the answer (new), or NULL. */
static json_t *claim_bot_key(void)
{
    void *it = json_object_iter(b.bot_otks);
    if (!it)
        return NULL;
    json_t *ans = json_pack("{s:{s:{s:{s:O}}}}", "one_time_keys", b.bot, b.bot_dev,
                            json_object_iter_key(it), json_object_iter_value(it));
    json_object_del(b.bot_otks, json_object_iter_key(it));
    return ans;
}

/* The peer of `r` (re)shares its Megolm session with the bot when it must: an Olm to-device
 * m.room_key queued for the next /sync, after claiming one of the bot's one-time keys. */
static void peer_share(struct room *r)
{
    json_t *members = json_pack("[s]", b.bot), *td = NULL, *claim = NULL;
    int64_t now = wall_ms();
    int rc = fb_mxc_share(r->peer, r->id, members, b.enc_content, now, &td, &claim);
    if (rc == 0 && claim) {
        json_t *ans = claim_bot_key();
        if (ans && fb_mxc_claim_result(r->peer, claim, ans, now) == 1) {
            json_decref(td);
            json_decref(claim);
            td = claim = NULL;
            rc = fb_mxc_share(r->peer, r->id, members, b.enc_content, now, &td, &claim);
        } else {
            b.failed = "no Olm session from the bot's one-time keys";
        }
        json_decref(ans);
    }
    json_t *content = json_object_get(json_object_get(td, b.bot), b.bot_dev);
    if (rc == 0 && content)
        json_array_append_new(b.todev, json_pack("{s:s, s:s, s:O}", "sender", r->user, "type",
                                                 "m.room.encrypted", "content", content));
    json_decref(td);
    json_decref(claim);
    json_decref(members);
}

/* ---- events ---- */

/* Makes room `r`'s next event ready (encrypted by its peer in encrypted mode) and queues it. */
static void room_ready(struct room *r, int idx)
{
    r->k++;
    char id[64];
    snprintf(id, sizeof(id), "$e%dx%" PRIu64, idx, r->k);
    json_t *content = json_pack("{s:s, s:s}", "msgtype", "m.text", "body", "aide");
    const char *type = "m.room.message";
    if (b.enc) {
        peer_share(r);
        json_t *c = fb_mxc_encrypt(r->peer, r->id, "m.room.message", content);
        json_decref(content);
        content = c;
        type = "m.room.encrypted";
        if (!content) {
            b.failed = "the peer cannot encrypt";
            return;
        }
    }
    json_decref(r->next);
    r->next = json_pack("{s:s, s:s, s:s, s:I, s:o}", "type", type, "sender", r->user, "event_id",
                        id, "origin_server_ts", (json_int_t)wall_ms(), "content", content);
    r->ready_at = now_s();
    if (!r->queued) {
        r->queued = true;
        b.queue[(b.qhead + b.qlen) % (size_t)b.nrooms] = idx;
        b.qlen++;
    }
}

static void respond_json_new(fb_http_req_t *req, int status, json_t *doc)
{
    char *s = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    fb_http_respond(req, status, "application/json", s, strlen(s), NULL);
    free(s); /* fb-lint: allow free (jansson's allocation) */
}

/* Answers a /sync with the ready events and the queued to-device events. */
static void sync_answer(fb_http_req_t *req)
{
    json_t *join = json_object();
    while (b.phase != DONE && b.qlen > 0) {
        struct room *r = &b.rooms[b.queue[b.qhead]];
        b.qhead = (b.qhead + 1) % (size_t)b.nrooms;
        b.qlen--;
        r->queued = false;
        json_object_set_new(join, r->id,
                            json_pack("{s:{s:[O], s:b, s:s}}", "timeline", "events", r->next,
                                      "limited", 0, "prev_batch", "p"));
        b.handed++;
    }
    char nb[32];
    snprintf(nb, sizeof(nb), "s%" PRIu64, ++b.nb);
    json_t *doc = json_pack("{s:s, s:{s:o}, s:{s:o}}", "next_batch", nb, "rooms", "join", join,
                            "to_device", "events", b.todev);
    b.todev = json_array();
    /* Always, as Synapse does: the daemon reads a missing count as 0 and makes new one-time keys
     * at every /sync (half of its CPU time per event in a clear room). */
    json_object_set_new(
        doc, "device_one_time_keys_count",
        json_pack("{s:I}", "signed_curve25519", (json_int_t)json_object_size(b.bot_otks)));
    json_object_set_new(doc, "device_unused_fallback_key_types",
                        json_pack("[s]", "signed_curve25519"));
    respond_json_new(req, 200, doc);
}

static void unpark(void)
{
    if (!b.parked)
        return;
    fb_http_req_t *req = b.parked;
    b.parked = NULL;
    uv_timer_stop(&b.park_timer);
    sync_answer(req);
}

static void on_park_timeout(uv_timer_t *t)
{
    (void)t;
    unpark();
}

static int on_sync(fb_http_req_t *req)
{
    if (!strstr(fb_http_req_query(req), "since=")) { /* the initial sync: nothing yet */
        sync_answer(req);
        return 0;
    }
    if (b.nb == 1 && b.phase == WARM) { /* the first long-poll: every room's first event */
        if (b.enc && !b.bot_dk)
            b.failed = "the bot polls /sync before uploading its device keys";
        for (int i = 0; i < b.nrooms && !b.failed; i++)
            room_ready(&b.rooms[i], i);
    }
    if ((b.qlen > 0 && b.phase != DONE) || json_array_size(b.todev) > 0 || b.parked) {
        sync_answer(req);
        return 0;
    }
    b.parked = req;
    uv_timer_start(&b.park_timer, on_park_timeout, PARK_MS, 0);
    return FB_EAGAIN;
}

static void on_run_end(uv_timer_t *t);

/* A first reply to room `r`'s last event arrived. */
static void round_trip_done(struct room *r, int idx)
{
    double now = now_s();
    if (!r->warm) {
        r->warm = true;
        if (++b.warm == b.nrooms && b.phase == WARM) {
            b.phase = RUN;
            b.t0 = now;
            b.cpu_sink0 = sink_cpu();
            b.cpu_daemon0 = daemon_cpu();
            uv_timer_start(&b.run_timer, on_run_end, (uint64_t)(b.seconds * 1000.0), 0);
        }
    } else if (b.phase == RUN) {
        b.events++;
        if (b.nlat < MAX_LATENCIES)
            b.lat[b.nlat++] = (now - r->ready_at) * 1000.0;
    }
    if (b.phase != DONE && !b.failed) {
        room_ready(r, idx);
        unpark();
    }
}

/* The room index of a path ".../rooms/!r<i>:bench/..." (escaped or not), or -1. */
static int room_of(const char *path)
{
    const char *p = strstr(path, "/rooms/");
    if (!p)
        return -1;
    p += 7;
    if (strncmp(p, "%21", 3) == 0)
        p += 3;
    else if (*p == '!')
        p++;
    if (*p != 'r')
        return -1;
    char *end;
    long i = strtol(p + 1, &end, 10);
    return end != p + 1 && i >= 0 && i < b.nrooms ? (int)i : -1;
}

/* Counts a reply or room key the peer cannot read, and says why for the first few. */
static void unreadable(const char *what, int status, const char *type)
{
    if (b.dec_fail++ < 10)
        fprintf(stderr, "bench_sync: unreadable %s (%.40s): status %d\n", what, type, status);
}

/* Decrypts the bot's reply `ev` with the peer of `r`: FB_MXC_OK when it holds a non-empty body,
 * another status otherwise. */
static int reply_decrypt(struct room *r, const json_t *ev)
{
    json_t *out = NULL;
    int st = fb_mxc_decrypt(r->peer, ev, &out);
    const json_t *text = json_object_get(json_object_get(out, "content"), "body");
    if (st == FB_MXC_OK && (!json_is_string(text) || !*json_string_value(text)))
        st = FB_MXC_BAD;
    json_decref(out);
    return st;
}

/* A room key came for room `idx`: its replies that arrived before their key, again. */
static void late_retry(int idx)
{
    for (size_t i = json_array_size(b.late); i > 0; i--) {
        json_t *x = json_array_get(b.late, i - 1);
        if (json_integer_value(json_object_get(x, "room")) != idx)
            continue;
        int st = reply_decrypt(&b.rooms[idx], json_object_get(x, "ev"));
        if (st == FB_MXC_UNKNOWN_SESSION)
            continue;
        if (st != FB_MXC_OK)
            unreadable("reply", st, "after its key");
        json_array_remove(b.late, i - 1);
    }
}

/* PUT /rooms/{room}/send/{type}/{txn}: a reply, decrypted in encrypted mode. */
static void on_send(fb_http_req_t *req, const char *send)
{
    int idx = room_of(fb_http_req_path(req));
    const char *type = send + 6;
    const char *txn = strchr(type, '/');
    size_t blen = 0;
    const char *body = fb_http_req_body(req, &blen);
    json_t *content = json_loadb(body, blen, 0, NULL);
    if (idx >= 0 && txn) {
        struct room *r = &b.rooms[idx];
        bool encrypted = strncmp(type, "m.room.encrypted/", 17) == 0;
        if (b.enc && !encrypted) {
            unreadable("reply", -1, "in clear");
        } else if (b.enc) {
            json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:I, s:O}", "type", "m.room.encrypted",
                                   "room_id", r->id, "sender", b.bot, "event_id", txn + 1,
                                   "origin_server_ts", (json_int_t)wall_ms(), "content", content);
            int st = reply_decrypt(r, ev);
            if (st == FB_MXC_UNKNOWN_SESSION) { /* before its key: kept, as a client does */
                b.late_keys++;
                json_array_append_new(b.late, json_pack("{s:i, s:o, s:b}", "room", idx, "ev", ev,
                                                        "stopping", b.phase == DONE));
            } else {
                if (st != FB_MXC_OK)
                    unreadable("reply", st,
                               json_string_value(json_object_get(content, "session_id")));
                json_decref(ev);
            }
        }
        const char *t = txn + 1, *dot = strrchr(t, '.');
        size_t hl = dot ? (size_t)(dot - t) : 0;
        if (dot && strcmp(dot, ".0") == 0 && hl < sizeof(r->last) &&
            (strncmp(r->last, t, hl) != 0 || r->last[hl] != '\0')) {
            memcpy(r->last, t, hl);
            r->last[hl] = '\0';
            round_trip_done(r, idx);
        }
    }
    json_decref(content);
    static const char ok[] = "{\"event_id\":\"$sink\"}";
    fb_http_respond(req, 200, "application/json", ok, sizeof(ok) - 1, NULL);
}

/* PUT /sendToDevice/{type}/{txn}: the bot's room keys for the peers. */
static void on_to_device(const char *type, json_t *body)
{
    if (strncmp(type, "m.room_key_request/", 19) == 0) {
        b.key_requests++;
        return;
    }
    if (strncmp(type, "m.room.encrypted/", 17) != 0)
        return;
    const char *user;
    json_t *devs;
    json_object_foreach(json_object_get(body, "messages"), user, devs)
    {
        for (int i = 0; i < b.nrooms; i++) {
            struct room *r = &b.rooms[i];
            json_t *c = json_object_get(devs, r->dev);
            if (strcmp(r->user, user) != 0 || !c)
                continue;
            json_t *ev = json_pack("{s:s, s:s, s:O}", "sender", b.bot, "type", "m.room.encrypted",
                                   "content", c);
            char t[64];
            int st = fb_mxc_to_device(r->peer, ev, t);
            if (st != FB_MXC_OK || strcmp(t, "m.room_key") != 0)
                unreadable("to-device message", st, t);
            else
                late_retry(i);
            json_decref(ev);
        }
    }
}

/* POST /keys/upload: the bot's device keys and one-time keys. */
static json_t *on_keys_upload(json_t *body)
{
    json_t *dk = json_object_get(body, "device_keys");
    const char *dev = json_string_value(json_object_get(dk, "device_id"));
    if (dk && dev && !b.bot_dk) {
        b.bot_dk = json_incref(dk);
        b.bot_dev = fb_strdup(dev);
        if (b.enc)
            peers_learn_bot();
    }
    json_object_update(b.bot_otks, json_object_get(body, "one_time_keys"));
    return json_pack("{s:{s:I}}", "one_time_key_counts", "signed_curve25519",
                     (json_int_t)json_object_size(b.bot_otks));
}

/* POST /keys/query: the peers' device keys and the bot's own. */
static json_t *on_keys_query(json_t *body)
{
    json_t *dk = json_object();
    const char *user;
    json_t *v;
    json_object_foreach(json_object_get(body, "device_keys"), user, v)
    {
        json_t *devs = json_object();
        if (strcmp(user, b.bot) == 0 && b.bot_dk)
            json_object_set(devs, b.bot_dev, b.bot_dk);
        for (int i = 0; i < b.nrooms && b.enc; i++)
            if (strcmp(b.rooms[i].user, user) == 0)
                json_object_set(devs, b.rooms[i].dev, b.rooms[i].peer_dk);
        json_object_set_new(dk, user, devs);
    }
    return json_pack("{s:o, s:{}}", "device_keys", dk, "failures");
}

/* POST /keys/claim: one of each asked peer's one-time keys. */
static json_t *on_keys_claim(json_t *body)
{
    json_t *otk = json_object();
    const char *user;
    json_t *devs;
    json_object_foreach(json_object_get(body, "one_time_keys"), user, devs)
    {
        for (int i = 0; i < b.nrooms && b.enc; i++) {
            struct room *r = &b.rooms[i];
            void *it = json_object_iter(r->otks);
            if (strcmp(r->user, user) != 0 || !json_object_get(devs, r->dev) || !it)
                continue;
            json_t *one = json_pack("{s:O}", json_object_iter_key(it), json_object_iter_value(it));
            json_object_del(r->otks, json_object_iter_key(it));
            json_object_set_new(otk, user, json_pack("{s:o}", r->dev, one));
        }
    }
    return json_pack("{s:o, s:{}}", "one_time_keys", otk, "failures");
}

static int on_sink(fb_http_req_t *req, void *arg)
{
    (void)arg;
    const char *path = fb_http_req_path(req);
    b.sink_requests++;
    const char *send = strstr(path, "/send/");
    if (strstr(path, "/rooms/") && send) {
        on_send(req, send);
        return 0;
    }
    if (strstr(path, "/sync"))
        return on_sync(req);
    size_t blen = 0;
    const char *text = fb_http_req_body(req, &blen);
    json_t *body = blen ? json_loadb(text, blen, 0, NULL) : NULL;
    json_t *ans = NULL;
    int status = 200;
    const char *p;
    if ((p = strstr(path, "/sendToDevice/")) != NULL) {
        on_to_device(p + 14, body);
    } else if (strstr(path, "/keys/upload")) {
        ans = on_keys_upload(body);
    } else if (strstr(path, "/keys/query")) {
        ans = on_keys_query(body);
    } else if (strstr(path, "/keys/claim")) {
        ans = on_keys_claim(body);
    } else if (strstr(path, "/keys/signatures/upload")) {
        ans = json_pack("{s:{}}", "failures");
    } else if (strstr(path, "/account/whoami") || strstr(path, "/login")) {
        ans = json_pack("{s:s, s:s, s:s}", "user_id", b.bot, "device_id", "BENCHDEV",
                        "access_token", "bench");
    } else if (strstr(path, "/filter")) {
        ans = json_pack("{s:s}", "filter_id", "1");
    } else if (strstr(path, "/joined_members")) {
        int i = room_of(path);
        ans = json_pack("{s:{s:{}}}", "joined", b.bot);
        if (i >= 0)
            json_object_set_new(json_object_get(ans, "joined"), b.rooms[i].user, json_object());
    } else if (strstr(path, "/state/m.room.encryption")) {
        if (b.enc) {
            ans = json_pack("{s:s}", "algorithm", FB_MXC_MEGOLM);
        } else {
            status = 404;
            ans = json_pack("{s:s, s:s}", "errcode", "M_NOT_FOUND", "error", "no encryption");
        }
    }
    json_decref(body);
    respond_json_new(req, status, ans ? ans : json_object());
    return 0;
}

/* ---- the daemon's life ---- */

static void on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_kill_timeout(uv_timer_t *t)
{
    (void)t;
    if (b.proc_alive)
        uv_process_kill(&b.proc, SIGKILL);
}

static void finish(void)
{
    if (b.phase == DONE)
        return;
    if (b.phase == RUN) {
        b.cpu_sink = sink_cpu() - b.cpu_sink0;
        b.cpu_daemon = daemon_cpu() - b.cpu_daemon0;
    } else if (!b.failed) {
        b.failed = "the warm-up did not end";
    }
    b.phase = DONE;
    uv_timer_stop(&b.run_timer);
    if (b.proc_alive) {
        uv_process_kill(&b.proc, SIGTERM);
        uv_timer_start(&b.kill_timer, on_kill_timeout, KILL_MS, 0);
    }
    unpark();
}

static void on_run_end(uv_timer_t *t)
{
    (void)t;
    finish();
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig)
{
    (void)p;
    b.proc_alive = false;
    if (b.phase != DONE) {
        fprintf(stderr, "bench_sync: the daemon exited (status %" PRId64 ", signal %d)\n", status,
                sig);
        b.failed = "the daemon exited";
        finish();
    }
    unpark();
    fb_http_server_destroy(b.srv);
    b.srv = NULL;
    uv_close((uv_handle_t *)&b.proc, on_handle_closed);
    uv_close((uv_handle_t *)&b.park_timer, on_handle_closed);
    uv_close((uv_handle_t *)&b.run_timer, on_handle_closed);
    uv_close((uv_handle_t *)&b.kill_timer, on_handle_closed);
}

static void on_warm_deadline(uv_timer_t *t)
{
    (void)t;
    if (b.phase == WARM)
        finish();
}

static int cmp_double(const void *x, const void *y)
{
    double u = *(const double *)x, v = *(const double *)y;
    return u < v ? -1 : u > v;
}

int main(int argc, char **argv)
{
    b.nrooms = 50;
    b.seconds = 5;
    int c;
    while ((c = getopt(argc, argv, "s:u:c:d:e")) != -1) {
        switch (c) {
        case 's':
            b.port = (int)strtol(optarg, NULL, 10);
            break;
        case 'u':
            b.bot = optarg;
            break;
        case 'c':
            b.nrooms = (int)strtol(optarg, NULL, 10);
            break;
        case 'd':
            b.seconds = strtod(optarg, NULL);
            break;
        case 'e':
            b.enc = true;
            break;
        default:
            fprintf(stderr, "usage: bench_sync -s SINK_PORT -u BOT [-c C] [-d SECONDS] [-e] -- "
                            "DAEMON_COMMAND...\n");
            return 2;
        }
    }
    if (!b.port || !b.bot || b.nrooms < 1 || b.nrooms > MAX_ROOMS || b.seconds <= 0 ||
        optind >= argc) {
        fprintf(stderr, "bench_sync: -s, -u and a daemon command are required, 1 <= C <= %d\n",
                MAX_ROOMS);
        return 2;
    }
    b.cmd = argv + optind;
    fb_log_set_level_all(FB_LOG_WARN);
    b.rooms = fb_calloc((size_t)b.nrooms, sizeof(*b.rooms));
    b.queue = fb_calloc((size_t)b.nrooms, sizeof(*b.queue));
    for (int i = 0; i < b.nrooms; i++) {
        snprintf(b.rooms[i].id, sizeof(b.rooms[i].id), "!r%d:bench", i);
        snprintf(b.rooms[i].user, sizeof(b.rooms[i].user), "@u%d:bench", i);
        snprintf(b.rooms[i].dev, sizeof(b.rooms[i].dev), "PEER%d", i);
    }
    b.lat = fb_malloc(sizeof(double) * MAX_LATENCIES);
    b.bot_otks = json_object();
    b.todev = json_array();
    b.late = json_array();
    b.enc_content = json_pack("{s:s}", "algorithm", FB_MXC_MEGOLM);
    if (b.enc)
        peers_make();

    uv_loop_t loop;
    uv_loop_init(&loop);
    b.loop = &loop;
    char host[] = "127.0.0.1";
    fb_server_opts_t so = {.listen_host = host,
                           .listen_port = b.port,
                           .max_body_bytes = 1 << 22,
                           .max_header_bytes = 16384,
                           .idle_timeout_s = 120,
                           .keepalive_timeout_s = 120,
                           .shutdown_deadline_s = 1};
    b.srv = fb_http_server_create(&loop, &so);
    if (!b.srv ||
        fb_http_server_route_prefix(b.srv, "/_matrix/client/",
                                    FB_HTTP_PUT | FB_HTTP_POST | FB_HTTP_GET, "hs", on_sink,
                                    NULL) != 0 ||
        fb_http_server_start(b.srv) != 0) {
        fprintf(stderr, "bench_sync: cannot listen on 127.0.0.1:%d\n", b.port);
        return 3;
    }
    uv_timer_init(&loop, &b.park_timer);
    uv_timer_init(&loop, &b.run_timer);
    uv_timer_init(&loop, &b.kill_timer);
    uv_stdio_container_t stdio[3] = {{.flags = UV_IGNORE},
                                     {.flags = UV_INHERIT_FD, .data.fd = 2},
                                     {.flags = UV_INHERIT_FD, .data.fd = 2}};
    uv_process_options_t po = {
        .exit_cb = on_exit_cb, .file = b.cmd[0], .args = b.cmd, .stdio_count = 3, .stdio = stdio};
    int rc = uv_spawn(&loop, &b.proc, &po);
    if (rc) {
        fprintf(stderr, "bench_sync: cannot start %s: %s\n", b.cmd[0], uv_strerror(rc));
        return 1;
    }
    b.proc_alive = true;
    uv_timer_start(&b.run_timer, on_warm_deadline, WARM_MAX_MS, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);

    for (size_t i = 0; i < json_array_size(b.late); i++) {
        if (json_is_true(json_object_get(json_array_get(b.late, i), "stopping")))
            b.stop_lost++; /* sent while the daemon stopped: its keys wait for its next start */
        else
            unreadable("reply", FB_MXC_UNKNOWN_SESSION, "its key never came");
    }
    if (!b.failed && b.dec_fail > 0)
        b.failed = "replies or room keys not readable by the peers";
    if (!b.failed && b.nlat == 0)
        b.failed = "no event measured";
    if (b.failed) {
        fprintf(stderr,
                "bench_sync: failed: %s (%d/%d rooms warm, %" PRIu64 " events handed, %" PRIu64
                " unreadable, %" PRIu64 " key requests)\n",
                b.failed, b.warm, b.nrooms, b.handed, b.dec_fail, b.key_requests);
        /* a daemon that never called: its own port was taken, most likely */
        return b.sink_requests == 0 ? 3 : 1;
    }
    qsort(b.lat, b.nlat, sizeof(double), cmp_double);
    printf("events=%" PRIu64 "\n", b.events);
    printf("seconds=%.3f\n", b.seconds);
    printf("events_per_s=%.1f\n", (double)b.events / b.seconds);
    printf("p50_ms=%.3f\n", b.lat[b.nlat / 2]);
    printf("p99_ms=%.3f\n", b.lat[(size_t)((double)b.nlat * 0.99)]);
    printf("max_ms=%.3f\n", b.lat[b.nlat - 1]);
    printf("sink_cpu_s=%.3f\n", b.cpu_sink);
    printf("daemon_cpu_s=%.3f\n", b.cpu_daemon);
    printf("daemon_cpu_us_per_event=%.1f\n", b.cpu_daemon * 1e6 / (double)b.events);
    printf("sink_cpu_us_per_event=%.1f\n", b.cpu_sink * 1e6 / (double)b.events);
    printf("sink_cpu_share=%.3f\n",
           b.cpu_sink + b.cpu_daemon > 0 ? b.cpu_sink / (b.cpu_sink + b.cpu_daemon) : 0.0);
    printf("decrypt_failures=%" PRIu64 "\n", b.dec_fail);
    printf("late_keys=%" PRIu64 "\n", b.late_keys);
    printf("stop_without_keys=%" PRIu64 "\n", b.stop_lost);
    printf("key_requests=%" PRIu64 "\n", b.key_requests);
    printf("sink_requests=%" PRIu64 "\n", b.sink_requests);
    for (int i = 0; i < b.nrooms; i++) {
        fb_mxc_free(b.rooms[i].peer);
        json_decref(b.rooms[i].peer_dk);
        json_decref(b.rooms[i].otks);
        json_decref(b.rooms[i].next);
    }
    json_decref(b.bot_dk);
    json_decref(b.bot_otks);
    json_decref(b.todev);
    json_decref(b.late);
    json_decref(b.enc_content);
    fb_free(b.bot_dev);
    fb_free(b.rooms);
    fb_free(b.queue);
    fb_free(b.lat);
    return 0;
}
