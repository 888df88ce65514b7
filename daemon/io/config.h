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

/* ---- the schema, shared with the adapters ------------------------------------------------ */

/**
 * The kind of a configuration key: how its YAML value is validated and where it is stored. An
 * adapter describes its section with a table of fb_conf_field_t (offsets into its own options
 * struct) and the core walks it: unknown keys, duplicates, types and ranges are reported at
 * FILE:LINE:COL with the same messages as the core's own sections.
 */
typedef enum fb_conf_kind_e {
    FB_CONF_SECTION,     /* a mapping described by `sub` */
    FB_CONF_UINT,        /* unsigned at `off`, plain integer in [min, max] */
    FB_CONF_SIZE,        /* size_t at `off`, bytes or with a KiB/MiB suffix, in [min, max] */
    FB_CONF_LISTEN,      /* fb_server_opts_t at `off`: "host:port" into listen_host, listen_port */
    FB_CONF_ADDRESS,     /* char * at `off`: "tcp://HOST:PORT" or "unix:PATH" */
    FB_CONF_PREFIX,      /* char * at `off`: min..max characters, no spaces, no braces */
    FB_CONF_SECRET_FILE, /* char * at `off`: a path whose content is a secret; null unsets it */
    FB_CONF_LOG_LEVEL,   /* char * at `off`: a fb_log_check_spec() spec */
    FB_CONF_LOG_FORMAT,  /* bool at `off`: "plain" (false) or "json" (true) */
    FB_CONF_DELAYS,      /* fb_retry_policy_t at `off`: list of 1..8 delays, each in [min, max] */
    FB_CONF_BOOL,        /* bool at `off`: true or false */
    FB_CONF_PATH,        /* char * at `off`: a file or directory path; null: the built-in default */
    FB_CONF_STRING,      /* char * at `off`: min..max bytes of text without control characters */
    FB_CONF_CHOICE,      /* char * at `off`: one of the words of `choices` */
    FB_CONF_URL,         /* char * at `off`: an http(s):// URL, no trailing '/'; null unsets */
    FB_CONF_USER_ID,     /* char * at `off`: a Matrix user id "@local:server"; null unsets */
    FB_CONF_GLOBS,       /* char ** at `off`: a list of 0..max patterns of 1..255 printable bytes;
                            never NULL after a parse (an empty list) */
    FB_CONF_IPS,         /* char ** at `off`: as FB_CONF_GLOBS, each an IPv4 or IPv6 address */
    FB_CONF_ADAPTER,     /* core only: the section of adapter number `off` (fb_conf_sections_t) */
} fb_conf_kind_t;

typedef struct fb_conf_table_s fb_conf_table_t;

/** One key of a section. */
typedef struct fb_conf_field_s {
    const char *name;
    fb_conf_kind_t kind;
    bool required;              /* must be present in every file */
    size_t off;                 /* offset of the value in the section's options struct */
    unsigned long min, max;     /* inclusive range, for the kinds that have one */
    const fb_conf_table_t *sub; /* FB_CONF_SECTION only */
    const char *const *choices; /* FB_CONF_CHOICE only: NULL-terminated words */
} fb_conf_field_t;

/** A section: its dotted path ("matrix.appservice", "" at the top level) and its keys. */
struct fb_conf_table_s {
    const char *path;
    const fb_conf_field_t *fields;
    size_t n; /* at most 24 */
};

/** Where a section's cross-key checks report (the position of the section's key). */
typedef struct fb_conf_report_s fb_conf_report_t;

/**
 * Records an error at the position of the section's key, in the document that wrote the section
 * last (nothing when no document wrote it). Same "FILE:LINE:COL: message" as every other error.
 */
void fb_conf_errorf(fb_conf_report_t *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/**
 * An adapter's configuration section (fb_adapter_ops_t.config): the core allocates `size` zeroed
 * bytes, walks every document's `name:` mapping against `table` into them (the embedded default
 * first, then the file), then calls `check` once. The strings and lists of the table's kinds are
 * freed by the core (fb_config_free).
 */
typedef struct fb_conf_section_s {
    const char *name;             /* top-level key, the adapter's name */
    const fb_conf_table_t *table; /* its keys */
    size_t size;                  /* bytes of the options struct */
    /** Optional: checks that involve several keys and fills computed defaults, once every
     *  document is applied; errors through fb_conf_errorf(r, ...). */
    void (*check)(void *opts, fb_conf_report_t *r);
} fb_conf_section_t;

#define FB_CONF_MAX_SECTIONS 8

/** The adapters' sections of a configuration, in the order of the adapter table. */
typedef struct fb_conf_sections_s {
    const fb_conf_section_t *sec[FB_CONF_MAX_SECTIONS];
    void *opts[FB_CONF_MAX_SECTIONS]; /* sec[i]->size bytes each, owned by the config */
    size_t n;
} fb_conf_sections_t;

/**
 * The sections the parser knows besides the core's, in order: fills `out` (at most `cap`) and
 * returns how many. Defined by the adapter table (daemon/core/adapters.c), which is linked in
 * every program that parses a configuration.
 */
size_t fb__config_sections(const fb_conf_section_t **out, size_t cap);

/** Incoming HTTP server (libwebsockets on the loop). */
typedef struct fb_server_opts_s {
    char *listen_host;            /* "127.0.0.1"; from server.listen */
    int listen_port;              /* 8080; from server.listen "host:port" */
    size_t max_body_bytes;        /* request bodies above this get 413 */
    size_t max_header_bytes;      /* total request header size limit */
    unsigned idle_timeout_s;      /* a connection that sends nothing is closed after this */
    unsigned keepalive_timeout_s; /* idle keep-alive connections are closed after this */
    unsigned shutdown_deadline_s; /* on SIGTERM, in-flight work may take this long to drain */
    unsigned max_connections_per_address; /* open connections per peer address; 0: no cap */
    char **trusted_proxies; /* reverse proxies' addresses: no per-address cap, and the client's
                               address read from their X-Forwarded-For; never NULL after a parse */
    char *public_url;       /* "https://host[/path]", how users reach this server; NULL: unknown (no
                               link to the roadmap page in messages) */
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
    /* Accept a Redis that does not persist with AOF (appendonly yes, appendfsync everysec or
     * always): for throw-away setups only; by default such a Redis is refused at start. */
    bool allow_volatile;
    char *require_aof; /* deprecated and ignored: "true", "false" as written, or NULL */
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
    unsigned max_queued_events;     /* inbound events in the router, all conversations; beyond:
                                       FB_EAGAIN (the platform retries: backpressure) */
    unsigned max_sending;           /* outbox entries in the adapters' hands at once, all
                                       conversations; the others wait their turn in memory */
    fb_retry_policy_t outbox_retry; /* transient send failures; max_attempts 0: unlimited */
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
    fb_conf_sections_t sections; /* the adapters' sections (web, matrix): fb_config_section() */
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

/**
 * The options struct of the adapter section `name` (borrowed from `cfg`), or NULL when the
 * configuration has no such section.
 */
const void *fb_config_section(const fb_config_t *cfg, const char *name);

/**
 * The value of the string key at dotted path "section.key" of an adapter section (borrowed), or
 * NULL when unset or when the key is not a string kind. For messages that name configuration keys.
 */
const char *fb_config_string(const fb_config_t *cfg, const char *dotted);

/** Frees a config (NULL is fine); secret memory is wiped before it is freed. */
void fb_config_free(fb_config_t *cfg);

/* The embedded sample, generated at build time by cmake/FbEmbed.cmake. */
extern const char fb__default_config[];
extern const unsigned long fb__default_config_len;

#endif /* FB_CONFIG_H */
