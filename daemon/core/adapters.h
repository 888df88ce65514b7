/* SPDX-License-Identifier: MIT */
/*
 * adapters.h - the registry of the adapters compiled into the daemon, and the checks every ops
 * table passes before it is registered (include/frichebot/adapter.h is the contract).
 */
#ifndef FB_ADAPTERS_H
#define FB_ADAPTERS_H

#include <stddef.h>

#include "frichebot/adapter.h"

/**
 * The adapters built into the daemon, NULL-terminated, in start order. An adapter adds its
 * `extern const fb_adapter_ops_t fb_adapter_NAME;` below and `&fb_adapter_NAME` to the table
 * in adapters.c.
 */
extern const fb_adapter_ops_t *const fb_builtin_adapters[];

extern const fb_adapter_ops_t fb_adapter_web;    /* adapters/web/web.c */
extern const fb_adapter_ops_t fb_adapter_matrix; /* adapters/matrix/matrix.c */

/**
 * Checks an ops table: API version, a name of 1..31 characters [a-z0-9_], every mandatory
 * method. Returns 0, or FB_EINVAL with a static explanation in *why.
 */
int fb_adapter_check(const fb_adapter_ops_t *ops, const char **why);

#endif /* FB_ADAPTERS_H */
