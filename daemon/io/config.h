/* SPDX-License-Identifier: MIT */
/*
 * config.h - the daemon's configuration: one YAML file, read with libyaml.
 *
 * The reference for every key is deploy/frichebot.yaml.sample, which is also the embedded
 * default (`frichebot serve` without -c). Loading reports every problem at once, each as
 * "FILE:LINE:COLUMN: message": unknown keys, wrong types, out-of-range values, missing required
 * keys. Secrets never live in the file: a key such as `password_file` names a file whose content
 * is the secret, or an environment variable (FRICHEBOT_REDIS_PASSWORD) provides it; a secret
 * written directly in the file is refused with an error that says so. Secrets are never logged.
 *
 * Each subsystem receives its own options struct below; the struct layouts are the contract
 * between config.c and the subsystems.
 */
#ifndef FB_CONFIG_H
#define FB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "common/retry.h" /* fb_retry_policy_t */
#include "frichebot/buf.h"

/** Incoming HTTP server (libwebsockets on the loop). */
typedef struct fb_server_opts_s {
    char *listen_host;            /* "127.0.0.1"; from server.listen */
    int listen_port;              /* 8080; from server.listen "host:port" */
    size_t max_body_bytes;        /* request bodies above this get 413 */
    size_t max_header_bytes;      /* total request header size limit */
    unsigned idle_timeout_s;      /* a connection that sends nothing is closed after this */
    unsigned keepalive_timeout_s; /* idle keep-alive connections are closed after this */
    unsigned shutdown_deadline_s; /* on SIGTERM, in-flight work may take this long to drain */
} fb_server_opts_t;

/** Redis connection. */
typedef struct fb_redis_opts_s {
    char *address;  /* "tcp://HOST:PORT" or "unix:/PATH" */
    char *password; /* secret from password_file or FRICHEBOT_REDIS_PASSWORD; may be NULL */
    unsigned connect_timeout_ms; /* per connection attempt */
    unsigned command_timeout_ms; /* per command attempt */
    fb_retry_policy_t reconnect; /* backoff between connection attempts (max_attempts ignored) */
    unsigned write_deadline_ms;  /* how long a write waits for Redis to come back before failing */
    char *password_file;         /* redis.password_file as written, or NULL; never the secret */
    bool require_aof; /* refuse a Redis without AOF (appendonly yes, appendfsync everysec|always) */
} fb_redis_opts_t;

/** The session store on top of Redis. */
typedef struct fb_store_opts_s {
    char *key_prefix;          /* "fb:"; every key starts with it */
    unsigned session_ttl_days; /* sessions expire this long after their last write */
} fb_store_opts_t;

/** Outgoing HTTP client (curl multi on the loop). */
typedef struct fb_http_client_opts_s {
    unsigned timeout_ms;           /* per attempt, whole transfer */
    unsigned connect_timeout_ms;   /* per attempt, connection phase */
    size_t max_response_bytes;     /* larger responses fail with FB_ETOOBIG */
    unsigned max_host_connections; /* connection reuse: pool size per host */
    fb_retry_policy_t retry;       /* default policy for retryable failures (5xx, 429, timeouts) */
} fb_http_client_opts_t;

/** The dialog served and the communes index it reads. */
typedef struct fb_dialogs_opts_s {
    char *path;     /* dialog file; default fb_data_path(FB_DATA_DIALOG) (paths.h) */
    char *geo_path; /* communes index; default fb_data_path(FB_DATA_GEO) */
} fb_dialogs_opts_t;

/** The router (inbound events, atomic persistence) and the outbox (delivery). */
typedef struct fb_router_opts_s {
    unsigned dedupe_retention_hours;      /* how long an inbound event id is remembered */
    unsigned max_queued_per_conversation; /* events waiting per conversation; beyond: FB_EAGAIN */
    fb_retry_policy_t outbox_retry;       /* transient send failures; max_attempts 0: unlimited */
} fb_router_opts_t;

/** The reminder scheduler (daemon/features/reminders.c). */
typedef struct fb_reminders_opts_s {
    bool enabled;              /* poll the due reminders */
    unsigned poll_interval_ms; /* how often the due zset is polled */
    unsigned batch;            /* reminders claimed per poll */
    unsigned lease_ms;         /* a claim not acknowledged within this returns to the schedule */
    bool working_hours_only;   /* false: deliver at any hour (tests, or a 24/7 service) */
    unsigned start_hour;       /* working hours in Paris, Monday to Friday: [start, end) */
    unsigned end_hour;
    unsigned inactive_months; /* no reminder after this many months without activity; 0: never */
} fb_reminders_opts_t;

/** The web chat adapter (adapters/web/). */
typedef struct fb_web_opts_s {
    bool enabled;                          /* serve the web chat */
    size_t max_message_bytes;              /* longest user message, bytes of UTF-8 */
    unsigned messages_per_minute;          /* per conversation */
    unsigned max_connections_per_address;  /* open websockets per client address */
    unsigned new_conversations_per_minute; /* conversations started per client address */
    unsigned history_max;                  /* history entries kept per conversation */
    char *static_dir; /* the page's files; default fb_data_path(FB_DATA_WEB) (paths.h) */
    char *dsfr_dir;   /* @gouvfr/dsfr's files; default fb_data_path(FB_DATA_DSFR) */
} fb_web_opts_t;

/** The Matrix adapter (adapters/matrix/, docs/internals/MATRIX.md). */
typedef struct fb_matrix_opts_s {
    bool enabled;              /* run the adapter */
    char *mode;                /* "bot" (/sync) or "appservice" */
    char *homeserver;          /* client-server API base URL, no trailing slash; or NULL */
    char *user_id;             /* the bot's user id, "@frichebot:example.org"; or NULL */
    char *password_file;       /* bot mode: path of the password file, or NULL (never the secret) */
    char *access_token_file;   /* bot mode: path of a token file, or NULL (never the secret) */
    char *device_display_name; /* display name of the device created at login */
    unsigned sync_timeout_ms;  /* /sync long-poll timeout */
    unsigned sync_timeline_limit;    /* timeline limit of the stored filter */
    fb_retry_policy_t sync_retry;    /* waits between failed /sync or login attempts */
    char **allowed_servers;          /* globs, NULL-terminated (never NULL after a parse) */
    char **allowed_users;            /* globs, NULL-terminated (never NULL after a parse) */
    char **ignore_users;             /* globs, NULL-terminated (never NULL after a parse) */
    char *reminder_msgtype;          /* "m.text" or "m.notice" */
    bool typing;                     /* typing notifications while a message is handled */
    bool read_receipts;              /* m.read receipts once a message is handled */
    bool leave_when_alone;           /* leave rooms where the bot is the only member */
    char *encrypted_notice;          /* the clear notice sent once in an encrypted room */
    char *as_registration_file;      /* appservice.registration_file, or NULL */
    char *as_id;                     /* appservice.id */
    char *as_url;                    /* appservice.url */
    unsigned as_txn_retention_hours; /* appservice.txn_retention_hours */
} fb_matrix_opts_t;

/** Escalation to human advisors (daemon/features/escalation.c, docs/internals/ESCALATION.md). */
typedef struct fb_escalation_opts_s {
    bool enabled;            /* announce tickets in the advisors' rooms */
    char **rooms;            /* "TERRITORY ROOM" lines: a département code ("52", "2A"), "r" and a
                              * région code ("r44"), or "*" (the default); NULL-terminated */
    char **response_times;   /* "TERRITORY TEXT" lines, same territories; NULL-terminated */
    unsigned watchdog_ms;    /* an unclaimed ticket is announced again after this */
    bool working_hours_only; /* the watchdog only fires within reminders' working hours */
} fb_escalation_opts_t;

/** The public impact figures (/stats, /stats.json; daemon/features/stats.c). */
typedef struct fb_stats_opts_s {
    unsigned min_count;     /* counts from 1 to min_count - 1 are published as "< min_count" */
    unsigned cache_seconds; /* figures read from Redis at most once per this many seconds */
} fb_stats_opts_t;

/** Logging. */
typedef struct fb_log_opts_s {
    char *level; /* "info"; or a spec such as "info,http=debug" */
    bool json;   /* JSON lines instead of plain lines */
} fb_log_opts_t;

/** The whole configuration. */
typedef struct fb_config_s {
    char *path; /* file it was read from, or "(embedded default)" */
    fb_server_opts_t server;
    fb_redis_opts_t redis;
    fb_store_opts_t store;
    fb_http_client_opts_t http_client;
    fb_log_opts_t log;
    fb_dialogs_opts_t dialogs;
    fb_router_opts_t router;
    fb_reminders_opts_t reminders;
    fb_web_opts_t web;
    fb_matrix_opts_t matrix;
    fb_stats_opts_t stats;
    fb_escalation_opts_t escalation;
} fb_config_t;

/**
 * Parses YAML `text` of `len` bytes, reporting positions against `name`. On success returns a
 * new config (free with fb_config_free). On failure returns NULL and appends one line per error,
 * "NAME:LINE:COL: message\n", to `errors` (all errors, not only the first). Secrets are resolved
 * here (files read, environment consulted); their values never appear in `errors`.
 */
fb_config_t *fb_config_parse(const char *name, const char *text, size_t len, fb_buf_t *errors);

/** Reads and parses the file at `path`; same contract as fb_config_parse(). */
fb_config_t *fb_config_load(const char *path, fb_buf_t *errors);

/** Parses the embedded default (deploy/frichebot.yaml.sample); same contract. */
fb_config_t *fb_config_load_default(fb_buf_t *errors);

/**
 * Reads the secret held in the file at `path`: a regular file of at most 4096 bytes holding one
 * line (one trailing newline removed). Returns 0 with a new string in *out (wipe it with
 * explicit_bzero before freeing), or a negative errno / FB_E* code with *why set to a static
 * explanation when there is no errno (strerror(-rc) otherwise). The secret is never logged.
 */
int fb_config_read_secret(const char *path, char **out, const char **why);

/** Frees a config (NULL is fine); secret memory is wiped before it is freed. */
void fb_config_free(fb_config_t *cfg);

/* The embedded sample, generated at build time by cmake/FbEmbed.cmake. */
extern const char fb__default_config[];
extern const unsigned long fb__default_config_len;

#endif /* FB_CONFIG_H */
