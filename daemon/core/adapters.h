/* SPDX-License-Identifier: MIT */
/*
 * adapters.h - the adapter table: the adapters compiled into the daemon, one line each, and the
 * checks every ops table passes before it is registered (include/frichebot/adapter.h is the
 * contract; docs/internals/ADAPTERS.md the tutorial).
 */
#ifndef FB_ADAPTERS_H
#define FB_ADAPTERS_H

#include <stddef.h>

#include "frichebot/adapter.h"

/**
 * THE ADAPTER TABLE, one line per adapter, in start order. X(NAME) names the ops table
 * `const fb_adapter_ops_t fb_adapter_NAME` that a file of adapters/NAME/ defines (the build
 * compiles every .c file of adapters/NAME/ by glob). TEST(NAME) is an adapter linked into the test
 * programs only (tests/adapters/NAME/): a weak reference, absent from the daemon. TEST lines come
 * last.
 */
#define FB_ADAPTER_TABLE(X, TEST)                                                                  \
    X(web)                                                                                         \
    X(matrix)                                                                                      \
    X(email)                                                                                       \
    TEST(echo)                                                                                     \
    /* end of the table: a new line goes above, so adding one changes only that line */

#define FB__ADAPTER_DECLARE(name) extern const fb_adapter_ops_t fb_adapter_##name;
#define FB__ADAPTER_DECLARE_WEAK(name)                                                             \
    extern const fb_adapter_ops_t fb_adapter_##name __attribute__((weak));
FB_ADAPTER_TABLE(FB__ADAPTER_DECLARE, FB__ADAPTER_DECLARE_WEAK)
#undef FB__ADAPTER_DECLARE
#undef FB__ADAPTER_DECLARE_WEAK

/**
 * The adapters built into this program, NULL-terminated, in start order (a TEST adapter that is
 * not linked in ends the list early, which is why TEST lines come last).
 */
extern const fb_adapter_ops_t *const fb_builtin_adapters[];

/**
 * Checks an ops table: API version, a name of 1..31 characters [a-z0-9_], every mandatory
 * method, and that its configuration section, if any, is named after it. Returns 0, or FB_EINVAL
 * with a static explanation in *why.
 */
int fb_adapter_check(const fb_adapter_ops_t *ops, const char **why);

/** The built-in adapter command called `name`, or NULL. */
const fb_adapter_command_t *fb_adapter_command(const char *name);

/** Gives every built-in adapter its log category (named after it); call once, first thing. */
void fb_adapters_register_logs(void);

/** fb_core_t.conv_key: fb_store_conv_key() on core->store. */
char *fb_core_conv_key(const fb_core_t *core, const char *name_conv, const char *suffix);

#endif /* FB_ADAPTERS_H */
