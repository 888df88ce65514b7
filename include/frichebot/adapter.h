/* SPDX-License-Identifier: MIT */
/*
 * adapter.h - the contract between the core (router and outbox) and a messaging adapter.
 *
 * An adapter turns one platform's traffic into normalized inbound events for the router and
 * delivers the outbox's messages to the platform. Shape after Janus's transport interface and
 * Redis's ConnectionType (docs/style.md section C): one static, versioned ops table per adapter,
 * checked at registration, plus a core table handed to the adapter.
 *
 * Adding a platform (a folder adapters/NAME/ and one line of the adapter table in
 * daemon/core/adapters.h) is walked through in docs/internals/ADAPTERS.md, with the echo test
 * adapter (tests/adapters/echo/) as the worked example.
 *
 * Async rules (include/frichebot/err.h): a method that takes a callback and returns an error
 * never calls it; one that returns 0 calls it exactly once, later (never from inside the call),
 * with FB_ECANCELED on shutdown.
 */
#ifndef FRICHEBOT_ADAPTER_H
#define FRICHEBOT_ADAPTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define FB_ADAPTER_API_VERSION 2

typedef struct fb_adapter_s fb_adapter_t;
typedef struct fb_core_s fb_core_t;

/* Inbound event kinds an adapter may deliver (the router adds TIMER and HANDBACK itself). */
typedef enum fb_inbound_kind_e {
    FB_IN_START = 1, /* a new conversation opened on the platform (greeting expected) */
    FB_IN_MESSAGE,   /* the user wrote `text` */
    FB_IN_CHOICE,    /* the user pressed the button of option `choice` */
    FB_IN_FORGET,    /* the platform asks to forget this user */
} fb_inbound_kind_t;

/**
 * A normalized inbound event. Every string is borrowed for the duration of the deliver() call
 * (the router copies what it keeps) and must be valid UTF-8 without NUL.
 */
typedef struct fb_inbound_s {
    fb_inbound_kind_t kind;
    const char *conv;        /* conversation key within the adapter (web token, Matrix room id) */
    const char *sender;      /* platform user id; may be NULL; never logged */
    const char *sender_name; /* the sender's display name when the adapter knows it, or NULL;
                                never logged (Matrix: only for thread messages, see MATRIX.md) */
    bool sender_gone;        /* the adapter knows the sender is no longer a member of the room
                                (Matrix: thread messages); false when unknown */
    const char *event_id;    /* platform event id, unique within the conversation: dedupe key */
    const char *text;        /* FB_IN_MESSAGE */
    const char *choice;      /* FB_IN_CHOICE: option id */
    int64_t ts_ms;           /* platform time of the event, Unix ms (0: unknown, the router's) */
    /* Since API version 2 (issue 17). */
    const char *commit_arg; /* data for the adapter's COMMIT fragment (ops.commit_lua: `A.arg`),
                               or NULL */
} fb_inbound_t;

/**
 * Result of deliver(): 0 once the event is durably handled (its session, dedupe mark and effects
 * are written in Redis) or recognised as a duplicate; the adapter may then acknowledge the
 * platform. Otherwise a negative code (FB_EAGAIN: Redis unreachable, try later; FB_EINVAL:
 * malformed event, do not retry; FB_ECANCELED: shutting down; FB_ENOENT: the adapter's own
 * COMMIT fragment refused it, its conversation being gone, nothing written) and the adapter
 * must NOT acknowledge: the platform will retry and nothing is lost.
 */
typedef void (*fb_inbound_cb)(int status, void *arg);

/** One outbox entry handed to send(). Borrowed for the duration of the send() call. */
typedef struct fb_outbound_s {
    const char *conv;      /* conversation key within the adapter */
    const char *txn_id;    /* stable across retries and restarts: inbound event id + reply index */
    const char *kind;      /* "reply" (answer to the user); or one not to miss: "reminder"
                              (nobody asked), "roadmap", "ticket" (a thread root), "relay" (a
                              person's words passed on); or "redact". Unknown: as "reply" */
    const char *text;      /* plain text (choices already listed as "1. ..." lines) */
    const char *html;      /* escaped HTML rendering of the same message */
    const json_t *choices; /* [{"id","label"}] or NULL */
    const json_t *entry; /* the whole entry as stored (core->thread_root and core->sent read it) */
    /* Since API version 2. */
    const char *redacts; /* kind "redact": the platform id of the message to withdraw (one that
                            core->sent was given); NULL otherwise */
} fb_outbound_t;

/**
 * Result of send(): 0 when the platform accepted the message (the outbox then removes it);
 * FB_EAGAIN or FB_ETIMEDOUT or FB_EIO for a transient failure (retried with backoff; when
 * `retry_after_ms` > 0 the platform asked for that delay); FB_ENOTYET when the adapter chose to
 * send it later, not a failure: the entry is handed again after `retry_after_ms` (no attempt
 * counted, so outbox_retry.max_attempts never parks it); any other code is permanent: the
 * entry is parked for the operator and the conversation's next entries go on.
 */
typedef void (*fb_send_cb)(int status, int64_t retry_after_ms, void *arg);

enum {
    FB_ADAPTER_CAP_BUTTONS = 1u << 0, /* renders choices as buttons (else as a numbered list) */
    FB_ADAPTER_CAP_HTML = 1u << 1,    /* renders the `html` field */
    /* The platform de-duplicates sends by txn_id: a resend after a crash is dropped. The router
     * then sends an event's entries one after the other and pops them with one POP (ROUTER.md). */
    FB_ADAPTER_CAP_TXN_DEDUPE = 1u << 2,
    /* Hosts the advisors' channel of escalation (docs/internals/ESCALATION.md): rooms named in
     * escalation.rooms, threads ("ROOM/$ROOT" conversations whose events go to escalation, and
     * "ROOM/~TICKET" ones whose root it asks core->thread_root), redactions (kind "redact"),
     * senders' display names, and every accepted message's id reported through core->sent. */
    FB_ADAPTER_CAP_ADVISORS = 1u << 3,
    /* Reaches the user only while they are there (a web chat: a closed tab is gone): the engine
     * promises no follow-up it could not deliver (`joignable` false in the dialogs' texts)
     * unless the user leaves a way to be reached (FB_ADAPTER_CAP_FOLLOWUP). */
    FB_ADAPTER_CAP_PRESENT_ONLY = 1u << 4,
    /* Reaches the users of FB_ADAPTER_CAP_PRESENT_ONLY platforms later, once they leave an
     * address (the e-mail adapter): the dialogs' `courriel` is true while one is started. */
    FB_ADAPTER_CAP_FOLLOWUP = 1u << 5,
    /* The history the adapter's COMMIT fragment (ops.commit_lua) writes is its delivery (the web
     * chat: the page reads it at every connection, committed() pushes it to the open tabs): when
     * the fragment stored the event's outbound entries there and set `AD`, the router puts none
     * of them in the outbox (no send(), no pop). The fragment must store them only when the
     * conversation's outbox is empty (their order with the entries waiting there). On a
     * duplicate the router calls committed() with `out` NULL: the adapter pushes again, from
     * its history, what the first COMMIT stored (its answer may have been lost). */
    FB_ADAPTER_CAP_HISTORY_DELIVERS = 1u << 6
};

/**
 * Result of core->thread_root(): 0 with `root` (borrowed for the call) the platform id of the
 * thread's root; FB_EAGAIN when the root is not known yet (try again in a moment); FB_ENOENT when
 * the thread is gone (its ticket was forgotten or expired: drop the message, report it sent);
 * another code for a transient failure.
 */
typedef void (*fb_thread_root_cb)(int status, const char *root, void *arg);

/**
 * Result of core->sent(): 0 once what the entry asks is kept, with `withdraw` true when the
 * message's conversation was forgotten meanwhile (the adapter withdraws the message at once);
 * otherwise a transient failure: report the send as FB_EAGAIN (it is resent with the same txn id,
 * which the platform de-duplicates into the same message id).
 */
typedef void (*fb_sent_cb)(int status, bool withdraw, void *arg);

struct fb_conf_section_s;
struct fb_buf_s;

/**
 * A subcommand an adapter adds to the `frichebot` command line (`frichebot NAME ARGS`): main.c
 * dispatches every command it does not know to the adapters' tables and lists them in
 * `frichebot --help`. Runs before any loop exists, on the main thread.
 */
typedef struct fb_adapter_command_s {
    const char *name;    /* "matrix-registration"; lowercase, '-' allowed */
    const char *summary; /* one line for `frichebot --help` (English, like the rest of the CLI) */
    const char *usage;   /* the whole help, printed by `frichebot help NAME` */
    /** argv[0] is the command's name. Returns the exit status: 0 success, 1 failure, 2 usage
     *  error (main.c's conventions). */
    int (*run)(int argc, char **argv);
} fb_adapter_command_t;

typedef struct fb_adapter_ops_s {
    unsigned api_version; /* FB_ADAPTER_API_VERSION */
    const char *name;     /* "web", "matrix": platform name, config section, log tag */
    size_t priv_size;     /* bytes of zeroed private data, fb_adapter_priv() */
    unsigned caps;        /* FB_ADAPTER_CAP_* */

    /* Mandatory. */
    int (*init)(fb_adapter_t *a);  /* read config, allocate; no I/O yet */
    int (*start)(fb_adapter_t *a); /* register routes, connect */
    /* Stop taking events, finish or cancel work, then call done(a) exactly once (maybe later). */
    void (*stop)(fb_adapter_t *a, void (*done)(fb_adapter_t *a));
    void (*destroy)(fb_adapter_t *a); /* free private data; after stop's done, or if start failed */
    int (*send)(fb_adapter_t *a, const fb_outbound_t *msg, fb_send_cb cb, void *arg);

    /* Optional (NULL). */
    int (*stats)(fb_adapter_t *a, json_t *out); /* fields added to /healthz "adapters"."name" */
    /* NULL-terminated suffixes of the keys the adapter keeps per conversation (its keys are
     * fb_store_conv_key(store, "name:conv", suffix)): the router deletes them in the same atomic
     * write as the session when the user asks to be forgotten. At most 8. */
    const char *const *conv_keys;

    /* Since API version 2. */
    /** The adapter's configuration section (io/config.h), walked by the core's parser: its
     *  options are then fb_config_section(core->cfg, name). NULL: no section. */
    const struct fb_conf_section_s *config;
    /** Subcommands of `frichebot`, ended by an entry whose name is NULL; or NULL. */
    const fb_adapter_command_t *commands;
    /** The adapter's log category, set by the core when the adapter table is registered
     *  (fb_adapters_register_logs): the adapter logs with FB_LOG_AT(*log_sub, ...). Its name in
     *  log specs and lines is the adapter's name ("info,matrix=debug"). */
    int *log_sub;
    /** Optional (NULL): appends the adapter's own /metrics lines (Prometheus text format, names
     *  "frichebot_<adapter>_...") to `out`, an fb_buf_t (frichebot/buf.h). Returns 0 or a
     *  negative code (the scrape fails). */
    int (*metrics)(fb_adapter_t *a, struct fb_buf_s *out);
    /** Optional (NULL): a Lua fragment the router runs inside the COMMIT of this adapter's
     *  conversations, before it writes their outbox entries (docs/internals/ROUTER.md, "How the
     *  COMMIT script is built"): a `do ... end` block that may read `AK[i]` (the conv_keys, in
     *  their order), `K.outbox`, `A` (now, member, mode: 'w' write, 'f' forget, 'n' leave),
     *  `ARGV[5]` (the session TTL, ms) and `O.out` (the entries, JSON objects as strings, which
     *  it may rewrite: send() gets them as msg->entry) and, with FB_ADAPTER_CAP_HISTORY_DELIVERS,
     *  `O.hist` (each entry's history form: `"from":"bot"`, its text, its html and choices when
     *  not empty, its ts, without the opening brace; empty when the router could not build
     *  them); it may set `AO` to a string, handed to
     *  committed() below, and, with FB_ADAPTER_CAP_HISTORY_DELIVERS, `AD` to true when it stored
     *  all of `O.out` itself (then not queued in the outbox); it never returns, writes only the
     * conversation's keys (and keys of the adapter's own that `A.arg` names: the Matrix
     * transaction's mark, not Cluster-safe, docs/internals/REDIS.md), and nothing of the
     * conversation on a forget. Called once, at the router's start, after
     * init(); the string is the adapter's until destroy(). Each command it runs is paid by every
     * event of the adapter's conversations: keep them few (issue 17). */
    const char *(*commit_lua)(fb_adapter_t *a);
    /** Optional (NULL): the COMMIT of an event of conversation `conv` (within the adapter) was
     *  written and its commit_lua fragment set `AO`: `out` (`len` bytes, borrowed for the call);
     *  `arg` is the deliver() argument of the adapter's own event, NULL for the router's (a
     *  reminder, a hand-back). Called right before the event's deliver callback and the outbox's
     *  hand-over, in the loop turn of the COMMIT's answer: before any later Redis answer is
     *  handled (so in Redis's order with them). Not once the router is stopping. A fragment may
     *  also `return {3, 0}` before writing anything: the event is refused with FB_ENOENT.
     *  FB_ADAPTER_CAP_HISTORY_DELIVERS adapters also get it for every duplicate event (found by
     *  READ or by COMMIT), with `out` NULL and `len` 0, right before its deliver callback. */
    void (*committed)(fb_adapter_t *a, const char *conv, const char *out, size_t len, void *arg);
} fb_adapter_ops_t;

struct uv_loop_s;
struct fb_http_server_s;
struct fb_http_client_s;
struct fb_redis_s;
struct fb_store_s;
struct fb_config_s;

/** What the core offers an adapter. Valid from init() until destroy(). */
struct fb_core_s {
    struct uv_loop_s *loop;
    const struct fb_config_s *cfg;
    struct fb_http_server_s *http;   /* register routes and websockets in start() */
    struct fb_http_client_s *client; /* outgoing HTTP (curl multi) */
    struct fb_redis_s *redis;
    struct fb_store_s *store;

    /** Hands an inbound event to the router; see fb_inbound_cb for the result. */
    int (*deliver)(fb_adapter_t *a, const fb_inbound_t *ev, fb_inbound_cb cb, void *arg);
    /** Tells the core that conversation `conv` can take deliveries again (e.g. a web client
     *  reconnected): the outbox retries its pending entries now instead of after the backoff. */
    void (*wake)(fb_adapter_t *a, const char *conv);
    /** Sets the adapter's state shown in /healthz ("starting", "ok", "degraded: ..."). */
    void (*set_state)(fb_adapter_t *a, const char *state);

    /* Since API version 2. */
    /** The Redis key of suffix `suffix` for conversation "NAME:conv" (`name_conv`), in the
     *  session's slot; see ops.conv_keys. Returns a new string (fb_free), or NULL when the key
     *  is not valid (control characters, too long). */
    char *(*conv_key)(const fb_core_t *core, const char *name_conv, const char *suffix);
    /**
     * The advisors' channel (FB_ADAPTER_CAP_ADVISORS): the root of the thread an outbound entry
     * goes to, when its conversation is "ROOM/~TICKET" (the root was not known when the entry was
     * queued). `entry` is msg->entry, read during the call. Returns 0 (cb called once, later),
     * or FB_EINVAL (the entry names no thread), FB_EAGAIN, FB_ECANCELED (cb never called).
     */
    int (*thread_root)(const fb_core_t *core, const json_t *entry, fb_thread_root_cb cb, void *arg);
    /**
     * Reports that the platform accepted an entry as message `msg_id`, in conversation `where`
     * (where it can be withdrawn later: for Matrix, the room), before the adapter reports the send
     * done: the core keeps the id where the entry asks (escalation: a ticket's thread root, the
     * messages to withdraw on forget). `entry` is msg->entry (a reference the adapter kept).
     * Returns 0 (cb called once, later), FB_DECLINED when the entry asks nothing (the send is
     * done), or FB_EAGAIN/FB_ECANCELED (cb never called).
     */
    int (*sent)(const fb_core_t *core, const json_t *entry, const char *where, const char *msg_id,
                fb_sent_cb cb, void *arg);
};

/** The adapter instance. */
struct fb_adapter_s {
    const fb_adapter_ops_t *ops;
    const fb_core_t *core;
    void *priv;      /* priv_size zeroed bytes */
    void *core_data; /* owned by the core */
    char state[64];  /* set through core->set_state */
};

static inline void *fb_adapter_priv(fb_adapter_t *a)
{
    return a->priv;
}

#endif /* FRICHEBOT_ADAPTER_H */
