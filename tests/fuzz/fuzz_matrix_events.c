/* SPDX-License-Identifier: MIT */
/*
 * fuzz_matrix_events.c - libFuzzer target for the Matrix event parser (adapters/matrix/mx_util.c).
 *
 * The first byte chooses the parser (a /sync response or an application-service transaction) and
 * whether history is kept; the rest is the body, any bytes (invalid UTF-8, NULs, lone surrogate
 * escapes, deep nesting). Besides the sanitizers' checks it enforces the parser's contract: a
 * failure leaves no action, every action has a room id, a conversation key that starts with it,
 * and for a message an event id, a sender and a text that are valid UTF-8 without NUL and within
 * the limits, so the router never sees what it would refuse. The HTML filter and the content
 * builder also run on every message text.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../../adapters/matrix/mx_util.h"
#include "common/utf8.h"
#include "frichebot/alloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const ignore[] = {"@bot-*:*", "*:evil.org", NULL};

static void check_text(const char *s, size_t max)
{
    if (!s)
        abort();
    size_t n = strlen(s);
    if (n > max || !fb_utf8_valid_text(s, n))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned mode = data[0];
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    fb_mx_batch_t b;
    memset(&b, 0, sizeof(b));
    fb_mx_parse_opts_t o = {
        .bot = "@frichebot:example.org", .ignore_users = ignore, .history = (mode & 2) != 0};
    int rc = (mode & 1) ? fb_mx_parse_txn(body, len, &o, &b) : fb_mx_parse_sync(body, len, &o, &b);
    if (rc != 0 && b.n != 0)
        abort();
    for (size_t i = 0; i < b.n; i++) {
        const fb_mx_action_t *a = &b.actions[i];
        check_text(a->room, FB_MX_MAX_ID);
        if (a->room[0] != '!' || strncmp(a->conv, a->room, strlen(a->room)) != 0)
            abort();
        if (a->kind == FB_MX_MESSAGE || a->kind == FB_MX_JOINED) {
            check_text(a->event_id, FB_MX_MAX_ID);
            if (a->kind == FB_MX_MESSAGE) {
                check_text(a->sender, FB_MX_MAX_ID);
                check_text(a->text, FB_MX_MAX_BODY);
                if (strcmp(a->sender, o.bot) == 0)
                    abort();
                char *h = fb_mx_html_filter(a->text);
                json_t *c = fb_mx_message_content("m.notice", a->text, h, a->thread_root);
                if (!c)
                    abort();
                json_decref(c);
                fb_free(h);
            }
        }
    }
    fb_mx_batch_free(&b);
    /* The transaction's mark (the replay check): a digest of 64 hex digits, or "" and false. */
    if (mode & 1) {
        char d[FB_MX_TXN_DIGEST_LEN + 1];
        bool named = fb_mx_txn_digest(body, len, d);
        if (named ? strlen(d) != FB_MX_TXN_DIGEST_LEN || strspn(d, "0123456789abcdef") != strlen(d)
                  : d[0] != '\0')
            abort();
        /* The appservice path's digest, from the parse itself: the same whenever the body names
         * its transaction (it may name one more: strings holding \u0000, which the digest's
         * own parse refuses). */
        char e[FB_MX_TXN_DIGEST_LEN + 1];
        memset(&b, 0, sizeof(b));
        (void)fb_mx_parse_txn_digest(body, len, &o, &b, e);
        fb_mx_batch_free(&b);
        if ((named && strcmp(d, e) != 0) || (e[0] && strlen(e) != FB_MX_TXN_DIGEST_LEN))
            abort();
    }
    return 0;
}
