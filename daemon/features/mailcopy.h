/* SPDX-License-Identifier: MIT */
/*
 * mailcopy.h - reminders that reach web users later: a feature of the router that copies the
 * reminders of a web conversation whose user gave and confirmed an address into the outbox of
 * its e-mail twin ("email:web:TOKEN", delivered by adapters/email), in the same atomic COMMIT
 * as the reminder itself, so a reminder is mailed exactly when it is written to the chat, once.
 * On a forget it deletes the address (the conversation's "mail" key) and the mails still
 * waiting. docs/internals/EMAIL.md.
 */
#ifndef FB_MAILCOPY_H
#define FB_MAILCOPY_H

#include <jansson.h>

#include "core/feature.h"

/** The feature's ops table (fb_router_add_feature(router, &fb_mailcopy_feature, NULL)). */
extern const fb_feature_ops_t fb_mailcopy_feature;

/**
 * Pure: the e-mail entries (JSON strings, a new array) for the outbox entries `out` (the COMMIT's
 * ops.out, JSON strings) of conversation `key`: one mail with the texts of the entries of kind
 * "reminder" (a reminder and the question it asks again), transaction id "mail." + the first
 * one's; or NULL when there are none or `key` is not a web conversation.
 */
json_t *fb_mailcopy_entries(const char *key, const json_t *out);

#endif /* FB_MAILCOPY_H */
