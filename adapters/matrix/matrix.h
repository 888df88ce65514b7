/* SPDX-License-Identifier: MIT */
/*
 * matrix.h - what the Matrix adapter's files share (adapters/matrix/): its log category and its
 * configuration (mx_config.h). Nothing outside adapters/matrix/ includes it.
 */
#ifndef FB_MATRIX_H
#define FB_MATRIX_H

#include "frichebot/adapter.h"
#include "frichebot/log.h"
#include "mx_config.h"

/** The adapter's log category (fb_log_register("matrix")); FB_INFO(MATRIX, ...) logs in it. */
extern int fb_mx_log_sub;
#define FB_SUB_MATRIX ((fb_log_sub_t)fb_mx_log_sub)

/** The `frichebot matrix-registration` subcommand (mx_commands.c). */
extern const fb_adapter_command_t fb_mx_commands[];

#endif /* FB_MATRIX_H */
