/* SPDX-License-Identifier: MIT */
/*
 * email_config.h - the `email:` section of the configuration, owned by the e-mail adapter: its
 * options struct and schema (daemon/io/config.h), and the adapter's log category.
 */
#ifndef FB_EMAIL_CONFIG_H
#define FB_EMAIL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "frichebot/log.h"
#include "io/config.h"

/** The e-mail adapter's options (deploy/frichebot.yaml.sample, section email). */
typedef struct fb_email_opts_s {
    bool enabled;               /* offer web users to be reached by e-mail */
    char *relay;                /* smtp://HOST[:PORT] or smtps://HOST[:PORT] */
    bool require_tls;           /* smtp://: STARTTLS or nothing */
    char *from;                 /* the sender's address */
    char *from_name;            /* its display name */
    char *username;             /* SMTP AUTH login, or NULL: no login */
    char *password_file;        /* SMTP AUTH password ($FRICHEBOT_SMTP_PASSWORD wins) */
    char *public_url;           /* the daemon's address as users reach it, for the links */
    unsigned timeout_ms;        /* one SMTP transaction, whole */
    unsigned confirm_hours;     /* how long a confirmation link works */
    unsigned max_confirmations; /* confirmation mails per conversation (against mail bombs) */
} fb_email_opts_t;

/** The section, for fb_adapter_email.config. */
extern const fb_conf_section_t fb_email_config;

/** The adapter's log category; FB_INFO(EMAIL, ...) logs in it. */
extern int fb_email_log_sub;
#define FB_SUB_EMAIL ((fb_log_sub_t)fb_email_log_sub)

#endif /* FB_EMAIL_CONFIG_H */
