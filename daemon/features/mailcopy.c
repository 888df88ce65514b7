/* SPDX-License-Identifier: MIT */
/*
 * mailcopy.c - reminders copied to the e-mail outbox of a web conversation (mailcopy.h).
 */
#include "features/mailcopy.h"

#include <stdlib.h>
#include <string.h>

#include "core/keys.h"
#include "frichebot/alloc.h"
#include "frichebot/buf.h"

#define WEB_PREFIX  "web:"
#define MAIL_PREFIX "email:"

json_t *fb_mailcopy_entries(const char *key, const json_t *out)
{
    if (!key || strncmp(key, WEB_PREFIX, strlen(WEB_PREFIX)) != 0 || !json_is_array(out))
        return NULL;
    /* One mail for the event's reminder messages together (the reminder and the question it
     * asks again are two chat messages, one mail), with the first one's transaction id. */
    fb_buf_t text;
    fb_buf_init(&text, (size_t)1 << 20);
    char *txn = NULL;
    json_int_t ts = 0;
    size_t i;
    const json_t *s;
    json_array_foreach(out, i, s)
    {
        /* Only a reminder's entries are copied: the others are not parsed again (this parse of
         * every reply took 13 % of the daemon's instructions per web message, issue 17). The
         * entries are the router's compact dumps, where a text's quotes are escaped: the kind's
         * member cannot be mimicked by a text. */
        const char *str = json_string_value(s);
        if (!str || !strstr(str, "\"kind\":\"reminder\""))
            continue;
        json_t *e = json_loads(str, 0, NULL);
        const char *kind = json_string_value(json_object_get(e, "kind"));
        const char *t = json_string_value(json_object_get(e, "txn"));
        const char *body = json_string_value(json_object_get(e, "text"));
        if (kind && strcmp(kind, "reminder") == 0 && t && body) {
            if (!txn) {
                txn = fb_asprintf("mail.%s", t);
                ts = json_integer_value(json_object_get(e, "ts"));
            } else {
                (void)fb_buf_puts(&text, "\n\n");
            }
            (void)fb_buf_puts(&text, body);
        }
        json_decref(e);
    }
    json_t *mails = NULL;
    if (txn && text.len > 0) {
        json_t *m = json_pack("{s:s, s:s, s:s, s:s, s:I}", "txn", txn, "kind", "reminder", "text",
                              fb_buf_str(&text), "html", "", "ts", ts);
        char *ms = m ? json_dumps(m, JSON_COMPACT) : NULL;
        json_decref(m);
        if (ms) {
            mails = json_array();
            json_array_append_new(mails, json_string(ms));
        }
        free(ms); /* fb-lint: allow free (jansson's allocation) */
    }
    fb_free(txn);
    fb_buf_free(&text);
    return mails;
}

/* The e-mail twin's outbox: "{c:email:web:TOKEN}:outbox"; for another platform's conversation
 * (never written: see the Lua) a key of its own slot. */
static char *mailbox_key(const fb_feature_step_t *st)
{
    if (strncmp(st->key, WEB_PREFIX, strlen(WEB_PREFIX)) != 0 ||
        strlen(st->key) + strlen(MAIL_PREFIX) > FB_KEYS_MAX_CONV)
        return fb_key_conv(st->prefix, st->key, FB_KEY_MAIL ":none");
    char *twin = fb_asprintf(MAIL_PREFIX "%s", st->key);
    char *k = fb_key_conv(st->prefix, twin, FB_KEY_OUTBOX);
    fb_free(twin);
    return k;
}

static void commit_ops(void *self, const fb_feature_step_t *st, json_t *ops, size_t *says)
{
    (void)self;
    (void)says; /* the copies go to another conversation's outbox, not the user's */
    if (st->forget)
        return;
    json_t *mails = fb_mailcopy_entries(st->key, json_object_get(ops, "out"));
    if (mails)
        json_object_set_new(ops, "mail", mails);
}

/* Before a forget deletes the conversation's keys ("mail" among them, forget = true below):
 * the mails still waiting in the twin's outbox go too. */
static const char lua_pre[] = "do\n"
                              "  if A.mode == 'f' and string.sub(A.member, 1, 4) == 'web:' then\n"
                              "    redis.call('DEL', K.mailbox)\n"
                              "    redis.call('ZREM', K.pending, 'email:' .. A.member)\n"
                              "  end\n"
                              "end\n";

/* The copies, only to a confirmed address; the address lives as long as the conversation. */
static const char lua_post[] =
    "do\n"
    "  if A.mode ~= 'f' and string.sub(A.member, 1, 4) == 'web:' then\n"
    "    if O.mail and redis.call('HGET', K.mail, 'state') == 'confirmed' then\n"
    "      for _, e in ipairs(O.mail) do redis.call('RPUSH', K.mailbox, e) end\n"
    /* the mails live as long as the conversation, not longer (EMAIL.md: retention) */
    "      expire(K.mailbox)\n"
    "      redis.call('ZADD', K.pending, 'NX', A.now, 'email:' .. A.member)\n"
    "      table.insert(kick, 'email:' .. A.member)\n"
    "    end\n"
    "    if refresh then expire(K.mail) end\n"
    "  end\n"
    "end\n";

static const fb_feature_key_t keys[] = {
    {"mail", FB_FKEY_CONV, FB_KEY_MAIL, true, NULL},
    {"mailbox", FB_FKEY_STEP, NULL, false, mailbox_key},
};

const fb_feature_ops_t fb_mailcopy_feature = {
    .name = "mailcopy",
    .keys = keys,
    .nkeys = sizeof(keys) / sizeof(keys[0]),
    .lua_pre = lua_pre,
    .lua_post = lua_post,
    .commit_ops = commit_ops,
};
