/* SPDX-License-Identifier: MIT */
/*
 * web_config.h - the `web:` section of the configuration, owned by the web chat adapter: its
 * options struct and the schema the core walks (daemon/io/config.h, fb_conf_section_t); and the
 * adapter's log category.
 */
#ifndef FB_WEB_CONFIG_H
#define FB_WEB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "frichebot/log.h"
#include "io/config.h"

/** The web chat adapter's options (deploy/frichebot.yaml.sample, section web). */
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

/** The section, for fb_adapter_web.config. */
extern const fb_conf_section_t fb_web_config;

/** The adapter's log category (fb_log_register("web")); FB_INFO(WEB, ...) logs in it. */
extern int fb_web_log_sub;
#define FB_SUB_WEB ((fb_log_sub_t)fb_web_log_sub)

#endif /* FB_WEB_CONFIG_H */
