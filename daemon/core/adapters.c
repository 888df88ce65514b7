/* SPDX-License-Identifier: MIT */
/*
 * adapters.c - the built-in adapters table and the registration checks.
 */
#include "core/adapters.h"

#include <string.h>

#include "frichebot/err.h"

/* The web chat adapter adds &fb_adapter_web here. */
const fb_adapter_ops_t *const fb_builtin_adapters[] = {
    &fb_adapter_web,
    &fb_adapter_matrix,
    NULL,
};

int fb_adapter_check(const fb_adapter_ops_t *ops, const char **why)
{
    const char *w = NULL;
    if (!ops)
        w = "no ops table";
    else if (ops->api_version != FB_ADAPTER_API_VERSION)
        w = "built against another adapter API version";
    else if (!ops->name || !ops->name[0] || strlen(ops->name) > 31 ||
             strspn(ops->name, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(ops->name))
        w = "its name must be 1 to 31 characters among a-z, 0-9 and _";
    else if (!ops->init || !ops->start || !ops->stop || !ops->destroy || !ops->send)
        w = "a mandatory method (init, start, stop, destroy, send) is missing";
    if (why)
        *why = w;
    return w ? FB_EINVAL : 0;
}
