/* SPDX-License-Identifier: MIT */
/*
 * mx_config.h - the `matrix:` section of the configuration, owned by the Matrix adapter: its
 * options struct and the schema the core walks (daemon/io/config.h, fb_conf_section_t).
 */
#ifndef FB_MX_CONFIG_H
#define FB_MX_CONFIG_H

#include <stdbool.h>

#include "io/config.h"

/** The environment variable that gives the bot's access token instead of a file. */
#define FB_MX_TOKEN_ENV "FRICHEBOT_MATRIX_TOKEN"

/** The Matrix adapter's options (docs/internals/MATRIX.md, deploy/frichebot.yaml.sample). */
typedef struct fb_matrix_opts_s {
    bool enabled;              /* run the adapter */
    char *mode;                /* "bot" (/sync) or "appservice" */
    char *homeserver;          /* client-server API base URL, no trailing slash; or NULL */
    char *user_id;             /* the bot's user id, "@frichebot:example.org"; or NULL */
    char *password_file;       /* bot mode: path of the password file, or NULL (never the secret) */
    char *access_token_file;   /* bot mode: path of a token file, or NULL (never the secret) */
    char *device_display_name; /* display name of the device created at login */
    unsigned sync_timeout_ms;  /* /sync long-poll timeout */
    unsigned sync_timeline_limit;       /* timeline limit of the stored filter */
    fb_retry_policy_t sync_retry;       /* waits between failed /sync or login attempts */
    char **allowed_servers;             /* globs, NULL-terminated (never NULL after a parse) */
    char **allowed_users;               /* globs, NULL-terminated (never NULL after a parse) */
    char **ignore_users;                /* globs, NULL-terminated (never NULL after a parse) */
    char *reminder_msgtype;             /* "m.text" or "m.notice" */
    char *ticket_mention;               /* "none", "room" or "advisors" (fb_mx_ticket_mentions) */
    char **ticket_mention_users;        /* user ids, NULL-terminated (never NULL after a parse) */
    bool typing;                        /* typing notifications while a message is handled */
    bool read_receipts;                 /* m.read receipts once a message is handled */
    bool leave_when_alone;              /* leave rooms where the bot is the only member */
    unsigned max_events_in_flight;      /* events of one batch in the router at once */
    unsigned max_best_effort_in_flight; /* typing and receipts in flight; beyond: dropped */
    char *encrypted_notice;             /* the clear notice sent once in an encrypted room */
    char *crypto_pickle_key_file;       /* crypto.pickle_key_file: E2EE on when set (not the key) */
    bool crypto_cross_signing;          /* crypto.cross_signing: cross-sign the bot's device */
    unsigned crypto_key_wait_ms;        /* crypto.key_wait_ms: wait for a missing room key */
    unsigned crypto_first_message_delay_ms; /* crypto.first_message_delay_ms: a new room's
                                             * first sends wait this long after the join */
    char *crypto_undecryptable_notice; /* crypto.undecryptable_notice: said when it never came */
    char *as_registration_file;        /* appservice.registration_file, or NULL */
    char *as_id;                       /* appservice.id */
    char *as_url;                      /* appservice.url */
    unsigned as_txn_retention_hours;   /* appservice.txn_retention_hours */
    unsigned as_max_transactions;      /* appservice.max_transactions: handled at once */
    unsigned as_catch_up_minutes;      /* appservice.catch_up_minutes: rooms read back after a
                                          homeserver restart (0: never) */
    unsigned as_probe_interval_ms;     /* appservice.probe_interval_ms */
} fb_matrix_opts_t;

/** The section, for fb_adapter_matrix.config. */
extern const fb_conf_section_t fb_matrix_config;

#endif /* FB_MX_CONFIG_H */
