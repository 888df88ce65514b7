/* SPDX-License-Identifier: MIT */
/*
 * adapters.c - the built-in adapters table (generated from FB_ADAPTER_TABLE in adapters.h), the
 * registration checks, and what the table gives the rest of the core: the adapters'
 * configuration sections, their subcommands and their log categories.
 */
#include "core/adapters.h"

#include <string.h>

#include "core/store.h"
#include "frichebot/err.h"
#include "frichebot/log.h"
#include "io/config.h"

#define FB__ADAPTER_ENTRY(name) &fb_adapter_##name,
const fb_adapter_ops_t *const fb_builtin_adapters[] = {
    FB_ADAPTER_TABLE(FB__ADAPTER_ENTRY, FB__ADAPTER_ENTRY) NULL,
};
#undef FB__ADAPTER_ENTRY

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
    else if (ops->config && (!ops->config->name || strcmp(ops->config->name, ops->name) != 0 ||
                             !ops->config->table))
        w = "its configuration section must be named after it and have a table";
    if (why)
        *why = w;
    return w ? FB_EINVAL : 0;
}

/* The hook of io/config.c: the adapters' sections, in table order. */
size_t fb__config_sections(const fb_conf_section_t **out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; fb_builtin_adapters[i] && n < cap; i++)
        if (fb_builtin_adapters[i]->config)
            out[n++] = fb_builtin_adapters[i]->config;
    return n;
}

const fb_adapter_command_t *fb_adapter_command(const char *name)
{
    for (size_t i = 0; fb_builtin_adapters[i]; i++)
        for (const fb_adapter_command_t *c = fb_builtin_adapters[i]->commands; c && c->name; c++)
            if (strcmp(c->name, name) == 0)
                return c;
    return NULL;
}

void fb_adapters_register_logs(void)
{
    for (size_t i = 0; fb_builtin_adapters[i]; i++)
        if (fb_builtin_adapters[i]->log_sub)
            *fb_builtin_adapters[i]->log_sub = fb_log_register(fb_builtin_adapters[i]->name);
}

char *fb_core_conv_key(const fb_core_t *core, const char *name_conv, const char *suffix)
{
    return fb_store_conv_key(core->store, name_conv, suffix);
}
