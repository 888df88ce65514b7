/* SPDX-License-Identifier: MIT */
/*
 * web_config.c - the schema of the `web:` section and its computed defaults. The core walks
 * the schema (daemon/io/config.c), so errors come out as FILE:LINE:COL like every other key.
 */
#include "web_config.h"

#include "frichebot/alloc.h"
#include "io/paths.h"

#define KIB    1024ul
#define OFF(m) offsetof(fb_web_opts_t, m)

static const fb_conf_field_t web_fields[] = {
    {"enabled", FB_CONF_BOOL, false, OFF(enabled), 0, 0, NULL, NULL},
    {"max_message_bytes", FB_CONF_SIZE, false, OFF(max_message_bytes), 16, 64 * KIB, NULL, NULL},
    {"messages_per_minute", FB_CONF_UINT, false, OFF(messages_per_minute), 1, 10000, NULL, NULL},
    {"max_connections_per_address", FB_CONF_UINT, false, OFF(max_connections_per_address), 1,
     100000, NULL, NULL},
    {"new_conversations_per_minute", FB_CONF_UINT, false, OFF(new_conversations_per_minute), 1,
     100000, NULL, NULL},
    {"history_max", FB_CONF_UINT, false, OFF(history_max), 1, 100000, NULL, NULL},
    {"static_dir", FB_CONF_PATH, false, OFF(static_dir), 0, 0, NULL, NULL},
    {"dsfr_dir", FB_CONF_PATH, false, OFF(dsfr_dir), 0, 0, NULL, NULL},
};

static const fb_conf_table_t web_table = {"web", web_fields, FB_ARRAY_SIZE(web_fields)};

/* Gives the page's directories left unset the installed data directory's (io/paths.h). */
static void web_config_check(void *opts, fb_conf_report_t *r)
{
    fb_web_opts_t *o = opts;
    (void)r;
    if (!o->static_dir)
        o->static_dir = fb_strdup(fb_data_path(FB_DATA_WEB));
    if (!o->dsfr_dir)
        o->dsfr_dir = fb_strdup(fb_data_path(FB_DATA_DSFR));
}

const fb_conf_section_t fb_web_config = {
    .name = "web",
    .table = &web_table,
    .size = sizeof(fb_web_opts_t),
    .check = web_config_check,
};
