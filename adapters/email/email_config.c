/* SPDX-License-Identifier: MIT */
/*
 * email_config.c - the schema of the `email:` section and its cross-key checks. The core walks
 * the schema (daemon/io/config.c), so errors come out as FILE:LINE:COL like every other key.
 */
#include "email_config.h"

#include <string.h>

#include "email_msg.h"
#include "frichebot/alloc.h"

#define OFF(m) offsetof(fb_email_opts_t, m)

static const fb_conf_field_t email_fields[] = {
    {"enabled", FB_CONF_BOOL, false, OFF(enabled), 0, 0, NULL, NULL},
    {"relay", FB_CONF_STRING, false, OFF(relay), 8, 255, NULL, NULL},
    {"require_tls", FB_CONF_BOOL, false, OFF(require_tls), 0, 0, NULL, NULL},
    {"from", FB_CONF_STRING, false, OFF(from), 3, FB_EMAIL_ADDR_MAX, NULL, NULL},
    {"from_name", FB_CONF_STRING, false, OFF(from_name), 1, 64, NULL, NULL},
    {"username", FB_CONF_STRING, false, OFF(username), 1, 255, NULL, NULL},
    {"password_file", FB_CONF_PATH, false, OFF(password_file), 0, 0, NULL, NULL},
    {"public_url", FB_CONF_URL, false, OFF(public_url), 0, 0, NULL, NULL},
    {"timeout_ms", FB_CONF_UINT, false, OFF(timeout_ms), 100, 600000, NULL, NULL},
    {"confirm_hours", FB_CONF_UINT, false, OFF(confirm_hours), 1, 720, NULL, NULL},
    {"max_confirmations", FB_CONF_UINT, false, OFF(max_confirmations), 1, 100, NULL, NULL},
};

static const fb_conf_table_t email_table = {"email", email_fields, FB_ARRAY_SIZE(email_fields)};

static void email_config_check(void *opts, fb_conf_report_t *r)
{
    const fb_email_opts_t *o = opts;
    if (o->relay && strncmp(o->relay, "smtp://", 7) != 0 && strncmp(o->relay, "smtps://", 8) != 0)
        fb_conf_errorf(r, "relay must start with smtp:// or smtps://");
    if (o->from && !fb_email_addr_valid(o->from))
        fb_conf_errorf(r, "from is not an address frichebot writes from (local@domain.tld)");
    if (!o->enabled)
        return;
    if (!o->relay)
        fb_conf_errorf(r, "relay is required when enabled");
    if (!o->from)
        fb_conf_errorf(r, "from is required when enabled");
    if (!o->public_url)
        fb_conf_errorf(r, "public_url is required when enabled (the links in the mails)");
}

const fb_conf_section_t fb_email_config = {
    .name = "email",
    .table = &email_table,
    .size = sizeof(fb_email_opts_t),
    .check = email_config_check,
};
