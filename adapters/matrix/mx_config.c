/* SPDX-License-Identifier: MIT */
/*
 * mx_config.c - the schema of the `matrix:` section and its checks that involve several keys.
 * The core walks the schema (daemon/io/config.c), so errors come out as FILE:LINE:COL like every
 * other key; the cross-key errors point at the `matrix:` key.
 */
#include "mx_config.h"

#include <stdlib.h>
#include <string.h>

#include "frichebot/alloc.h"

#define OFF(m) offsetof(fb_matrix_opts_t, m)

static const char *const matrix_modes[] = {"bot", "appservice", NULL};
static const char *const matrix_msgtypes[] = {"m.text", "m.notice", NULL};
static const char *const matrix_mentions[] = {"none", "room", "advisors", NULL};

static const fb_conf_field_t sync_retry_fields[] = {
    {"delays_ms", FB_CONF_DELAYS, false, OFF(sync_retry), 1, 3600000, NULL, NULL},
    {"jitter_percent", FB_CONF_UINT, false, OFF(sync_retry.jitter_percent), 0, 100, NULL, NULL},
};
static const fb_conf_table_t sync_retry_table = {"matrix.sync_retry", sync_retry_fields,
                                                 FB_ARRAY_SIZE(sync_retry_fields)};

static const fb_conf_field_t crypto_fields[] = {
    {"pickle_key_file", FB_CONF_PATH, false, OFF(crypto_pickle_key_file), 0, 0, NULL, NULL},
    {"cross_signing", FB_CONF_BOOL, false, OFF(crypto_cross_signing), 0, 0, NULL, NULL},
    {"key_wait_ms", FB_CONF_UINT, false, OFF(crypto_key_wait_ms), 0, 600000, NULL, NULL},
    {"first_message_delay_ms", FB_CONF_UINT, false, OFF(crypto_first_message_delay_ms), 0, 60000,
     NULL, NULL},
    {"undecryptable_notice", FB_CONF_STRING, false, OFF(crypto_undecryptable_notice), 1, 2000, NULL,
     NULL},
};
static const fb_conf_table_t crypto_table = {"matrix.crypto", crypto_fields,
                                             FB_ARRAY_SIZE(crypto_fields)};

static const fb_conf_field_t as_fields[] = {
    {"registration_file", FB_CONF_PATH, false, OFF(as_registration_file), 0, 0, NULL, NULL},
    {"id", FB_CONF_STRING, false, OFF(as_id), 1, 64, NULL, NULL},
    {"url", FB_CONF_URL, false, OFF(as_url), 0, 0, NULL, NULL},
    {"txn_retention_hours", FB_CONF_UINT, false, OFF(as_txn_retention_hours), 1, 8760, NULL, NULL},
    {"max_transactions", FB_CONF_UINT, false, OFF(as_max_transactions), 1, 64, NULL, NULL},
    {"catch_up_minutes", FB_CONF_UINT, false, OFF(as_catch_up_minutes), 0, 1440, NULL, NULL},
    {"probe_interval_ms", FB_CONF_UINT, false, OFF(as_probe_interval_ms), 100, 60000, NULL, NULL},
};
static const fb_conf_table_t as_table = {"matrix.appservice", as_fields, FB_ARRAY_SIZE(as_fields)};

static const fb_conf_field_t matrix_fields[] = {
    {"enabled", FB_CONF_BOOL, false, OFF(enabled), 0, 0, NULL, NULL},
    {"mode", FB_CONF_CHOICE, false, OFF(mode), 0, 0, NULL, matrix_modes},
    {"homeserver", FB_CONF_URL, false, OFF(homeserver), 0, 0, NULL, NULL},
    {"user_id", FB_CONF_USER_ID, false, OFF(user_id), 0, 0, NULL, NULL},
    {"password_file", FB_CONF_PATH, false, OFF(password_file), 0, 0, NULL, NULL},
    {"access_token_file", FB_CONF_PATH, false, OFF(access_token_file), 0, 0, NULL, NULL},
    {"device_display_name", FB_CONF_STRING, false, OFF(device_display_name), 1, 100, NULL, NULL},
    {"sync_timeout_ms", FB_CONF_UINT, false, OFF(sync_timeout_ms), 0, 300000, NULL, NULL},
    {"sync_timeline_limit", FB_CONF_UINT, false, OFF(sync_timeline_limit), 1, 1000, NULL, NULL},
    {"sync_retry", FB_CONF_SECTION, false, 0, 0, 0, &sync_retry_table, NULL},
    {"allowed_servers", FB_CONF_GLOBS, false, OFF(allowed_servers), 0, 256, NULL, NULL},
    {"allowed_users", FB_CONF_GLOBS, false, OFF(allowed_users), 0, 256, NULL, NULL},
    {"ignore_users", FB_CONF_GLOBS, false, OFF(ignore_users), 0, 256, NULL, NULL},
    {"reminder_msgtype", FB_CONF_CHOICE, false, OFF(reminder_msgtype), 0, 0, NULL, matrix_msgtypes},
    {"ticket_mention", FB_CONF_CHOICE, false, OFF(ticket_mention), 0, 0, NULL, matrix_mentions},
    {"ticket_mention_users", FB_CONF_GLOBS, false, OFF(ticket_mention_users), 0, 64, NULL, NULL},
    {"typing", FB_CONF_BOOL, false, OFF(typing), 0, 0, NULL, NULL},
    {"read_receipts", FB_CONF_BOOL, false, OFF(read_receipts), 0, 0, NULL, NULL},
    {"leave_when_alone", FB_CONF_BOOL, false, OFF(leave_when_alone), 0, 0, NULL, NULL},
    {"max_events_in_flight", FB_CONF_UINT, false, OFF(max_events_in_flight), 1, 10000, NULL, NULL},
    {"max_best_effort_in_flight", FB_CONF_UINT, false, OFF(max_best_effort_in_flight), 1, 10000,
     NULL, NULL},
    {"encrypted_notice", FB_CONF_STRING, false, OFF(encrypted_notice), 1, 2000, NULL, NULL},
    {"crypto", FB_CONF_SECTION, false, 0, 0, 0, &crypto_table, NULL},
    {"appservice", FB_CONF_SECTION, false, 0, 0, 0, &as_table, NULL},
};
static const fb_conf_table_t matrix_table = {"matrix", matrix_fields, FB_ARRAY_SIZE(matrix_fields)};

/* A user id as ticket_mention_users lists it: "@localpart:server", none of the characters that
 * HTML or a matrix.to link would need escaped (fb_mx_ticket_mentions() writes it as it is). */
static bool mention_user_ok(const char *u)
{
    const char *colon = strchr(u, ':');
    if (u[0] != '@' || !colon || colon == u + 1 || !colon[1])
        return false;
    for (const char *p = u; *p; p++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@:._=-/+[]", *p))
            return false;
    return true;
}

/* The checks that involve several keys, once every document is applied. */
static void matrix_config_check(void *opts, fb_conf_report_t *r)
{
    const fb_matrix_opts_t *m = opts;
    size_t nusers = 0;
    for (char **u = m->ticket_mention_users; u && *u; u++, nusers++)
        if (!mention_user_ok(*u))
            fb_conf_errorf(r,
                           "'matrix.ticket_mention_users[%zu]' must be a user id such as "
                           "\"@camille.martin:example.org\"",
                           nusers);
    if (m->ticket_mention && strcmp(m->ticket_mention, "advisors") == 0 && nusers == 0)
        fb_conf_errorf(r, "'matrix.ticket_mention: advisors' needs the advisors' user ids in "
                          "'matrix.ticket_mention_users'");
    if (!m->enabled)
        return;
    if (!m->homeserver)
        fb_conf_errorf(r, "'matrix.homeserver' is required when matrix.enabled is true");
    if (!m->user_id)
        fb_conf_errorf(r, "'matrix.user_id' is required when matrix.enabled is true");
    bool appservice = m->mode && strcmp(m->mode, "appservice") == 0;
    if (appservice && !m->as_registration_file)
        fb_conf_errorf(r, "'matrix.appservice.registration_file' is required in appservice mode "
                          "(write it with 'frichebot matrix-registration')");
    const char *env = getenv(FB_MX_TOKEN_ENV);
    if (!appservice && !m->password_file && !m->access_token_file && !(env && *env))
        fb_conf_errorf(r, "bot mode needs 'matrix.password_file', 'matrix.access_token_file' or "
                          "the environment variable " FB_MX_TOKEN_ENV);
}

const fb_conf_section_t fb_matrix_config = {
    .name = "matrix",
    .table = &matrix_table,
    .size = sizeof(fb_matrix_opts_t),
    .check = matrix_config_check,
};
