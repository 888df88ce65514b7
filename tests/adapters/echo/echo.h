/* SPDX-License-Identifier: MIT */
/*
 * echo.h - the echo adapter's test hooks (tests/adapters/echo/, docs/internals/ADAPTERS.md).
 *
 * The echo adapter is the smallest complete adapter: an in-memory "platform" whose users are the
 * test itself. fb_echo_say() plays a user writing in a conversation; every message the daemon
 * sends is kept in order and readable with fb_echo_sent(). It is linked into the unit tests only
 * (a TEST() line of the adapter table, daemon/core/adapters.h).
 */
#ifndef FB_ECHO_H
#define FB_ECHO_H

#include <stdbool.h>
#include <stddef.h>

#include "frichebot/adapter.h"

/** The ops table, registered by the adapter table's TEST(echo) line. */
extern const fb_adapter_ops_t fb_adapter_echo;

/** Off (the default): init() declines, so the adapter stays out of tests that do not ask for it. */
void fb_echo_enable(bool on);

/**
 * Plays a user: delivers a FB_IN_START (text NULL) or FB_IN_MESSAGE event in conversation `conv`
 * with event id `event_id`. Returns 0 or the deliver() error; the deliver result is counted in
 * fb_echo_delivered() (and its last status in fb_echo_last_status()).
 */
int fb_echo_say(const char *conv, const char *event_id, const char *text);

/** Deliveries acknowledged so far (deliver's callback ran), and the last one's status. */
int *fb_echo_delivered(void);
int fb_echo_last_status(void);

/** Messages sent by the daemon so far (a counter a test can wait on), and the i-th's text and
 *  conversation (borrowed, until the process ends). */
int *fb_echo_nsent(void);
const char *fb_echo_sent(int i);
const char *fb_echo_sent_conv(int i);

/** Sends accepted but not yet reported (in flight); 0 once stop's done ran. */
int fb_echo_inflight(void);

#endif /* FB_ECHO_H */
