/* SPDX-License-Identifier: MIT */
/*
 * matrix.h - what the Matrix adapter's files share (adapters/matrix/): its log category and its
 * configuration (mx_config.h). Nothing outside adapters/matrix/ includes it.
 */
#ifndef FB_MATRIX_H
#define FB_MATRIX_H

#include "frichebot/adapter.h"
#include "frichebot/log.h"
#include "mx_config.h"

/** The adapter's log category (fb_log_register("matrix")); FB_INFO(MATRIX, ...) logs in it. */
extern int fb_mx_log_sub;
#define FB_SUB_MATRIX ((fb_log_sub_t)fb_mx_log_sub)

/** The `frichebot matrix-registration` subcommand (mx_commands.c). */
extern const fb_adapter_command_t fb_mx_commands[];

/* ---- private to adapters/matrix/: the instance and what its files call in one another ---- */

#include <stdint.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <uv.h>

#include "io/http_client.h"
#include "io/http_server.h"
#include "io/redis.h"
#include "mx_e2ee.h"
#include "mx_util.h"

#define TOKEN_ENV         FB_MX_TOKEN_ENV
#define CLIENT_PATH       "/_matrix/client/v3"
#define AS_PREFIX         "/_matrix/app/v1/"
#define TYPING_TIMEOUT_MS 20000
#define SYNC_EXTRA_MS     30000u
#define REFRESH_MARGIN_MS 60000
#define FAILS_DEGRADED    3
#define MAX_REG_BYTES     (64u << 10)
#define REFUSE_REASON     "Désolé, je ne peux accepter que les invitations de mes serveurs autorisés."

enum mode { MODE_BOT, MODE_AS };
enum sync_state { SY_IDLE, SY_AUTH, SY_POLL, SY_HANDLE, SY_BACKOFF, SY_STOPPED };

#define MX_MAX_SCRIPTS 16 /* distinct Lua scripts of the adapter (11 today) */

struct mx {
    fb_adapter_t *a; /* NULL once destroyed */
    const fb_core_t *core;
    const fb_matrix_opts_t *o;
    enum mode mode;
    unsigned refs;
    size_t ops; /* calls, Redis commands and batches in flight (the sync poll excluded) */
    bool started, stopping;
    void (*stop_done)(fb_adapter_t *a);
    char ttl_ms[24];
    char *k_auth, *k_sync; /* Redis keys */
    /* The scripts mx_rcmd_argv() has sent, by address: called by their SHA1 (issue 17). */
    fb_redis_script_t scripts[MX_MAX_SCRIPTS];
    size_t nscripts;
    const char *const *ignore;
    /* credentials */
    char *token;         /* access token (bot) or as_token */
    char *hs_token;      /* appservice */
    char *password;      /* bot, may be NULL */
    char *refresh_token; /* bot, may be NULL */
    char *device_id;
    int64_t expires_at;  /* Unix ms, 0: no expiry */
    int64_t lifetime_ms; /* the current token's expires_in_ms, 0: unknown (loaded from Redis) */
    bool token_given;    /* from the environment or access_token_file */
    bool recovering;     /* a token recovery is in progress */
    /* bot: the sync loop */
    enum sync_state sy;
    char *next_batch;
    char *filter_id;
    char filter_hash[17];
    char *filter_json;
    unsigned fails;
    bool polling;
    bool catch_up;   /* the next /sync asks timeout=0 (after the start or a failure): what was
                        missed is handed at once and the state says "ok" then, not once the
                        first long-poll ends (up to sync_timeout_ms when nothing happens) */
    void *poll_call; /* the /sync long-poll's struct call while in flight, to cancel it at stop */
    uv_timer_t timer;
    bool timer_init, timer_closed;
    int64_t last_sync_ms;
    /* appservice */
    bool as_device_busy;        /* its device being made or prepared (mx_as_device.c) */
    bool as_device_refused;     /* the homeserver refused to make it: clear mode goes without */
    unsigned as_device_fails;   /* transient failures to make it (clear mode gives up at 5) */
    struct as_wait *as_waiting; /* transactions waiting for it (mx_appservice.c) */
    uint64_t txns;
    int64_t last_txn_ms;
    size_t as_batches;       /* transactions being handled (appservice.max_transactions) */
    uint64_t as_txn_busy;    /* transactions answered 503 because as_batches was at the cap */
    uint64_t as_txn_backoff; /* transactions answered 503 because the router was full */
    /* appservice: the catch-up after a homeserver restart (mx_as_catchup.c) */
    json_t *as_recent;        /* room -> [last event id, activity wall ms, its origin ts,
                                 wall ms of its last write to matrix:recent] */
    char *k_recent;           /* matrix:recent: the marks kept across the daemon's restarts */
    json_t *as_catchup_todo;  /* room -> [failed attempts, its mark, page back to (ts)] */
    json_t *as_catchup_done;  /* rooms read back (or tried) in the current run */
    int64_t hs_down_since;    /* wall ms of the first failure seen; 0: the homeserver answers */
    bool as_probe_busy;       /* the probe in flight */
    bool as_catchup_busy;     /* a room being read back or handed */
    bool as_catchup_at_start; /* the next read-back follows the daemon's start */
    bool as_catchup_retry;
    bool as_catchup_pending;       /* a read-back to start once RUN_GAP_MS has passed */
    int64_t as_catchup_pending_ms; /* its down time, for the log */
    int64_t as_catchup_last_ms;
    /* when the last read-back started */ /* rooms to try again at the next probe */
    uint64_t as_catchups;                 /* restarts seen */
    uint64_t as_catchup_events; /* messages read back and handed (most of them duplicates) */
    /* typing and receipts: in flight (max_best_effort_in_flight), and dropped beyond it */
    size_t courtesy_inflight;
    uint64_t typing_dropped, receipts_dropped;
    uint64_t controls_only; /* messages of nothing but control characters: a notice, not handled */
    /* notices being sent, by room (so one encrypted room gets one notice at a time) */
    json_t *notice_inflight;
    uint64_t rooms_joined;
    /* thread senders (advisors): "ROOM USER" -> [display name or "", Unix ms read, member] */
    json_t *names;
    /* advisors' rooms named by their alias in escalation.rooms: resolved before the first sync
     * (bot) or transaction (appservice); their conversation keys keep the alias (mx_sync.c) */
    char **aliases;        /* the aliases to resolve (NULL-terminated) */
    json_t *alias_ids;     /* alias -> room id */
    json_t *alias_names;   /* room id -> alias */
    size_t alias_pending;  /* directory look-ups in flight */
    bool aliases_ready;    /* every alias resolved */
    json_t *advisor_rooms; /* room ids of escalation.rooms (given or resolved): no greeting */
    struct e2ee *e2ee;     /* end-to-end encryption (mx_e2ee.c), NULL when not configured */
};

struct mx;

/* An HTTP call's result (matrix.c, mx_call_full). */
typedef void (*call_cb)(struct mx *m, int err, int status, json_t *body,
                        const fb_http_response_t *resp, void *arg);
/* A Redis command's result (matrix.c, mx_rcmd_argv): the reply is borrowed. */
typedef void (*rcmd_cb)(struct mx *m, int status, redisReply *reply, void *arg);

/* The events of one /sync response or one transaction, handed one at a time (mx_batch.c). */
struct batch {
    struct mx *m;
    fb_mx_batch_t b;
    size_t next, inflight;
    bool serial, pumping, finished;
    bool quiet;       /* read back after a homeserver restart: no typing, no receipt */
    bool router_full; /* failed with FB_EAGAIN, the router full of others' events */
    int failed;
    void (*done)(struct batch *bt, int status);
    void *owner; /* the appservice request, or NULL */
    char *txn_key;
    char txn_mark[FB_MX_TXN_DIGEST_LEN + 1]; /* the value written at txn_key (mx_appservice.c) */
    char *txn_arg;   /* the mark for the COMMIT of the batch's one event (txn_parsed()) */
    bool txn_marked; /* that COMMIT wrote the mark (mx_as_txn_committed()) */
    bool txn_unseen; /* the mark was not read before the batch (mx_appservice.c) */
};

/* One attempt only (matrix.c). */
extern const fb_retry_policy_t mx_no_retry;

/* matrix.c */
void mx_best_effort(struct mx *m, const char *method, const char *path, const json_t *body);
const char *mx_errcode(json_t *body);
int mx_call(struct mx *m, const char *method, const char *path, const json_t *body, call_cb cb,
            void *arg);
int mx_call_full(struct mx *m, const char *method, const char *path, const json_t *body,
                 unsigned timeout_ms, const fb_retry_policy_t *retry, bool idempotent, bool poll,
                 bool auth, call_cb cb, void *arg);
void mx_op_begin(struct mx *m);
void mx_op_end(struct mx *m);
/* A Redis command, sent with FB_REDIS_RETRY. An "EVAL" is sent as EVALSHA (fb_redis_evalsha()):
 * its script, argv[1], must be static text, named by its address (its SHA1 computed once). */
int mx_rcmd_argv(struct mx *m, rcmd_cb cb, void *arg, int argc, const char **argv);
void mx_receipt(struct mx *m, const char *room, const char *event_id);
char *mx_room_key(struct mx *m, const char *room);
char *mx_room_path(const char *room, const char *fmt_tail);
/* GET /rooms/{room}/messages backwards from `from` (NULL: the timeline's end), `limit` events of
 * `types` (the filter), a new string. */
char *mx_messages_path(const char *room, const char *from, const char *const *types, size_t ntypes,
                       unsigned limit);
void mx_set_state(struct mx *m, const char *st);
void mx_typing(struct mx *m, const char *room, bool on);
/* Tells the room, in a notice, that its message `event_id` held nothing but control characters
 * (fb_utf8_clean_text()); the message is not handed to the router. */
void mx_controls_notice(struct mx *m, const char *room, const char *event_id);
void mx_wipe_free(char **p);

/* mx_batch.c */
void mx_batch_free(struct batch *bt);
struct batch *mx_batch_new(struct mx *m);
void mx_batch_pump(struct batch *bt);
int mx_classify(int err, int status);
const char *mx_conv_tag(const char *conv, char out[FB_MX_TAG_LEN + 1]);
void mx_log_parse(struct mx *m, const fb_mx_batch_t *b, const char *what);
fb_mx_parse_opts_t mx_parse_opts(struct mx *m, bool history);
void mx_step_done(struct batch *bt, int status);

/* mx_sync.c */
void mx_auth_recover(struct mx *m, bool soft);
void mx_bot_load(struct mx *m);
json_t *mx_filter_json(const fb_matrix_opts_t *o, unsigned limit);
int mx_gap_start(struct batch *bt, const fb_mx_action_t *a);
void mx_login(struct mx *m);
void mx_refresh(struct mx *m);

void mx_aliases_init(struct mx *m, const fb_escalation_opts_t *e);
void mx_aliases_resolve(struct mx *m);

/* mx_appservice.c */
int mx_on_as_ping(fb_http_req_t *req, void *arg);
int mx_on_as_room(fb_http_req_t *req, void *arg);
int mx_on_as_txn(fb_http_req_t *req, void *arg);
int mx_on_as_user(fb_http_req_t *req, void *arg);
/* Handles the transactions that waited for the service's device, or answers them 503 when it
 * is not ready (a failure, the stop). */
void mx_as_txn_resume(struct mx *m);
/* The COMMIT fragment of appservice mode (fb_adapter_ops_t.commit_lua): a transaction's mark
 * written by the COMMIT of its one event (mx_appservice.c). */
extern const char mx_as_commit_lua[];
/* The COMMIT of the batch's one event wrote its transaction's mark, replacing `old` (`len`
 * bytes, 0: none). */
void mx_as_txn_committed(struct batch *bt, const char *old, size_t len);
void mx_committed(fb_adapter_t *a, const char *conv, const char *out, size_t len, void *arg);

/* mx_as_device.c */
/* `path` with the masquerade of the service's device (?user_id=&device_id=), a new string; NULL
 * when the requests go as they are (bot mode, no device yet or none). */
char *mx_as_masquerade(struct mx *m, const char *path);
/* Appservice mode: makes the service's device (MSC4190) and, with crypto, prepares its keys,
 * unless done, refused for good (clear mode) or in progress. */
void mx_as_device_ensure(struct mx *m);
/* True when the service can decrypt (or has no crypto). */
bool mx_e2ee_as_ready(struct mx *m);
/* True when a send may go now: in clear appservice mode, once the device is made or refused
 * for good (else starts making it); always in the other modes. */
bool mx_as_send_ready(struct mx *m);

/* mx_as_catchup.c */
/* Appservice mode: `event_id` (origin_server_ts `ts_ms`, 0: now) was handed to the router or
 * sent in `room`: the mark a read-back after a homeserver restart pages back to. */
void mx_as_recent_note(struct mx *m, const char *room, const char *event_id, int64_t ts_ms);
/* The result of a call to the homeserver (every call, matrix.c): a failure (transport, 502, 503,
 * 504) then an answer starts the read-back of the rooms active in the window. */
void mx_as_hs_seen(struct mx *m, int err, int status);
/* Starts the probe (m->timer, appservice mode) when appservice.catch_up_minutes is not 0. */
void mx_as_catchup_start(struct mx *m);
/* The bot left `room`: its mark goes (a join again starts afresh). */
void mx_as_recent_forget(struct mx *m, const char *room);
void mx_as_catchup_free(struct mx *m);

/* mx_send.c */
int mx_send(fb_adapter_t *a, const fb_outbound_t *msg, fb_send_cb cb, void *arg);

#endif /* FB_MATRIX_H */
