/* SPDX-License-Identifier: MIT */
/*
 * test_matrix.c - the pure pieces of the Matrix adapter (adapters/matrix/mx_util.c): the event
 * parser for /sync responses and application-service transactions (hostile input included),
 * the HTML filter and message content, globs and the invite policy, the constant-time
 * comparison, conversation keys, and the registration file writer and reader. The adapter
 * against a real Synapse is covered by tests/integration/test_matrix.py.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../../adapters/matrix/mx_util.h"
#include "frichebot/alloc.h"
#include "frichebot/err.h"
#include "task.h"

#define BOT "@frichebot:example.org"

static const char *const ignore[] = {"@bot-*:*", NULL};

static int parse_sync(const char *body, bool history, fb_mx_batch_t *b)
{
    memset(b, 0, sizeof(*b));
    fb_mx_parse_opts_t o = {.bot = BOT, .ignore_users = ignore, .history = history};
    return fb_mx_parse_sync(body, strlen(body), &o, b);
}

static int parse_txn(const char *body, fb_mx_batch_t *b)
{
    memset(b, 0, sizeof(*b));
    fb_mx_parse_opts_t o = {.bot = BOT, .ignore_users = ignore, .history = true};
    return fb_mx_parse_txn(body, strlen(body), &o, b);
}

#define MSG(id, sender, body)                                                                      \
    "{\"type\":\"m.room.message\",\"event_id\":\"" id "\",\"sender\":\"" sender                    \
    "\",\"origin_server_ts\":1700000000000,\"content\":{\"msgtype\":\"m.text\",\"body\":\"" body   \
    "\"}}"

TEST_IMPL(matrix_parse_sync_messages)
{
    const char *body =
        "{\"next_batch\":\"s72595_4483\",\"rooms\":{\"join\":{\"!r1:example.org\":{"
        "\"state\":{\"events\":[{\"type\":\"im.vector.room.access_rules\",\"state_key\":\"\","
        "\"sender\":\"@a:example.org\",\"event_id\":\"$s1\",\"content\":{\"rule\":\"direct\"}}]},"
        "\"timeline\":{\"limited\":true,\"prev_batch\":\"t12-34\",\"events\":[" MSG(
            "$e1", "@alice:example.org", "Bonjour") ","
        /* the bot's own message, a notice, another bot, an edit, an image: all ignored */
        MSG("$e2", BOT,
            "moi") ","
                   "{\"type\":\"m.room.message\",\"event_id\":\"$e3\",\"sender\":\"@alice:example."
                   "org\","
                   "\"content\":{\"msgtype\":\"m.notice\",\"body\":\"n\"}}," MSG(
                       "$e4", "@bot-rss:example.org",
                       "flux") ","
                               "{\"type\":\"m.room.message\",\"event_id\":\"$e5\",\"sender\":\"@"
                               "alice:example.org\","
                               "\"content\":{\"msgtype\":\"m.text\",\"body\":\"* "
                               "x\",\"m.relates_to\":{\"rel_type\":"
                               "\"m.replace\",\"event_id\":\"$e1\"}}},"
                               "{\"type\":\"m.room.message\",\"event_id\":\"$e6\",\"sender\":\"@"
                               "alice:example.org\","
                               "\"content\":{\"msgtype\":\"m.image\",\"body\":\"a.png\"}},"
                               /* a thread message, and a reply with its fallback */
                               "{\"type\":\"m.room.message\",\"event_id\":\"$e7\",\"sender\":\"@"
                               "alice:example.org\","
                               "\"content\":{\"msgtype\":\"m.text\",\"body\":\"dans le "
                               "fil\",\"m.relates_to\":{"
                               "\"rel_type\":\"m.thread\",\"event_id\":\"$root\"}}},"
                               "{\"type\":\"m.room.message\",\"event_id\":\"$e8\",\"sender\":\"@"
                               "alice:example.org\","
                               "\"content\":{\"msgtype\":\"m.text\",\"body\":\"> <@b:x> avant\\n> "
                               "suite\\n\\nmaintenant\","
                               "\"m.relates_to\":{\"m.in_reply_to\":{\"event_id\":\"$e1\"}}}},"
                               /* another member leaves */
                               "{\"type\":\"m.room.member\",\"state_key\":\"@alice:example.org\","
                               "\"event_id\":\"$e9\","
                               "\"sender\":\"@alice:example.org\",\"content\":{\"membership\":"
                               "\"leave\"}}"
                               "]}}}}}";
    fb_mx_batch_t b;
    ASSERT_OK(parse_sync(body, true, &b));
    ASSERT_STR_EQ(b.next_batch, "s72595_4483");
    ASSERT_EQ(b.n, 6);
    ASSERT_EQ(b.actions[0].kind, FB_MX_RULE);
    ASSERT_STR_EQ(b.actions[0].text, "direct");
    ASSERT_EQ(b.actions[1].kind, FB_MX_GAP);
    ASSERT_STR_EQ(b.actions[1].text, "t12-34");
    ASSERT_EQ(b.actions[2].kind, FB_MX_MESSAGE);
    ASSERT_STR_EQ(b.actions[2].room, "!r1:example.org");
    ASSERT_STR_EQ(b.actions[2].conv, "!r1:example.org");
    ASSERT_STR_EQ(b.actions[2].event_id, "$e1");
    ASSERT_STR_EQ(b.actions[2].sender, "@alice:example.org");
    ASSERT_STR_EQ(b.actions[2].text, "Bonjour");
    ASSERT_EQ(b.actions[2].ts_ms, 1700000000000LL);
    ASSERT_NULL(b.actions[2].thread_root);
    ASSERT_EQ(b.actions[3].kind, FB_MX_MESSAGE);
    ASSERT_STR_EQ(b.actions[3].conv, "!r1:example.org/$root");
    ASSERT_STR_EQ(b.actions[3].thread_root, "$root");
    ASSERT_EQ(b.actions[4].kind, FB_MX_MESSAGE);
    ASSERT_STR_EQ(b.actions[4].text, "maintenant");
    ASSERT_EQ(b.actions[5].kind, FB_MX_MEMBER_LEFT);
    ASSERT_EQ(b.ignored, 5);
    ASSERT_EQ(b.skipped, 0);
    fb_mx_batch_free(&b);

    /* The first sync keeps state but no message. */
    ASSERT_OK(parse_sync(body, false, &b));
    for (size_t i = 0; i < b.n; i++)
        ASSERT_NE(b.actions[i].kind, FB_MX_MESSAGE);
    ASSERT_EQ(b.actions[0].kind, FB_MX_RULE);
    fb_mx_batch_free(&b);
    return 0;
}

TEST_IMPL(matrix_parse_sync_membership)
{
    const char *body =
        "{\"next_batch\":\"n2\",\"rooms\":{"
        /* Synapse's stripped state of an encrypted room: the encryption first */
        "\"invite\":{\"!inv:other.org\":{\"invite_state\":{\"events\":["
        "{\"type\":\"m.room.encryption\",\"state_key\":\"\",\"sender\":\"@carol:other.org\","
        "\"content\":{\"algorithm\":\"m.megolm.v1.aes-sha2\"}},{\"type\":\"m.room.member\","
        "\"state_key\":\"" BOT "\",\"sender\":\"@carol:other.org\",\"content\":{\"membership\":"
        "\"invite\",\"is_direct\":true}}]}},\"!bare:other.org\":{}},"
        "\"join\":{\"!j:example.org\":{\"timeline\":{\"events\":["
        "{\"type\":\"m.room.member\",\"state_key\":\"" BOT "\",\"event_id\":\"$join\","
        "\"sender\":\"" BOT "\",\"content\":{\"membership\":\"join\"}},"
        /* a profile change is not a new join */
        "{\"type\":\"m.room.member\",\"state_key\":\"" BOT "\",\"event_id\":\"$prof\","
        "\"sender\":\"" BOT "\",\"content\":{\"membership\":\"join\",\"displayname\":\"x\"},"
        "\"unsigned\":{\"prev_content\":{\"membership\":\"join\"}}},"
        "{\"type\":\"m.room.encryption\",\"state_key\":\"\",\"event_id\":\"$enc\",\"sender\":"
        "\"@a:example.org\",\"content\":{\"algorithm\":\"m.megolm.v1.aes-sha2\"}},"
        "{\"type\":\"m.room.encrypted\",\"event_id\":\"$c\",\"sender\":\"@a:example.org\","
        "\"content\":{}}"
        "]}}},"
        "\"leave\":{\"!gone:example.org\":{}}}}";
    fb_mx_batch_t b;
    ASSERT_OK(parse_sync(body, true, &b));
    ASSERT_EQ(b.n, 7);
    /* json_object_foreach walks in insertion order in jansson >= 2.? ; find by room. */
    int invites = 0, invite_encrypted = 0;
    for (size_t i = 0; i < b.n; i++) {
        fb_mx_action_t *a = &b.actions[i];
        /* An invite's stripped state is marked: the bot may not send into that room yet. */
        bool from_invite =
            strcmp(a->room, "!inv:other.org") == 0 || strcmp(a->room, "!bare:other.org") == 0;
        ASSERT_EQ(a->invited, from_invite);
        if (a->kind == FB_MX_ENCRYPTED && a->invited) {
            ASSERT_STR_EQ(a->room, "!inv:other.org");
            invite_encrypted++;
        }
        if (a->kind == FB_MX_INVITE) {
            invites++;
            if (strcmp(a->room, "!inv:other.org") == 0) {
                ASSERT_STR_EQ(a->sender, "@carol:other.org");
                ASSERT(a->direct);
            } else {
                ASSERT_STR_EQ(a->room, "!bare:other.org");
                ASSERT_NULL(a->sender);
            }
        }
    }
    ASSERT_EQ(invites, 2);
    ASSERT_EQ(invite_encrypted, 1);
    ASSERT_EQ(b.actions[3].kind, FB_MX_JOINED);
    ASSERT_STR_EQ(b.actions[3].event_id, "$join");
    ASSERT_EQ(b.actions[4].kind, FB_MX_ENCRYPTED);
    ASSERT(!b.actions[4].invited);
    ASSERT_EQ(b.actions[5].kind, FB_MX_ENCRYPTED);
    ASSERT_EQ(b.actions[6].kind, FB_MX_LEFT);
    ASSERT_STR_EQ(b.actions[6].room, "!gone:example.org");
    fb_mx_batch_free(&b);
    return 0;
}

TEST_IMPL(matrix_parse_hostile)
{
    fb_mx_batch_t b;
    /* Not JSON, not an object, no next_batch: refused whole. */
    ASSERT_EQ(parse_sync("nope", true, &b), FB_EPROTO);
    fb_mx_batch_free(&b);
    ASSERT_EQ(parse_sync("[1]", true, &b), FB_EPROTO);
    fb_mx_batch_free(&b);
    ASSERT_EQ(parse_sync("{\"rooms\":{}}", true, &b), FB_EPROTO);
    fb_mx_batch_free(&b);
    ASSERT_EQ(parse_txn("{\"events\":{}}", &b), FB_EPROTO);
    fb_mx_batch_free(&b);

    /* Events that are malformed are skipped; the good one around them goes through. */
    char *huge = fb_malloc(FB_MX_MAX_BODY + 100);
    memset(huge, 'a', FB_MX_MAX_BODY + 10);
    huge[FB_MX_MAX_BODY + 10] = '\0';
    char *txn = fb_asprintf(
        "{\"events\":["
        "42,"
        "{\"type\":\"m.room.message\"}," /* no room */
        "{\"type\":\"m.room.message\",\"room_id\":\"!r:x\",\"sender\":\"@a:x\","
        "\"content\":{\"msgtype\":\"m.text\",\"body\":\"no id\"}}," /* no event id */
        "{\"type\":\"m.room.message\",\"room_id\":\"!r:x\",\"event_id\":\"$1\",\"sender\":\"@a:x\","
        "\"content\":{\"msgtype\":\"m.text\",\"body\":7}}," /* body not text */
        "{\"type\":\"m.room.message\",\"room_id\":\"!r:x\",\"event_id\":\"$2\",\"sender\":\"@a:x\","
        "\"content\":{\"msgtype\":\"m.text\",\"body\":\"%s\"}}," /* too big */
        "{\"type\":\"m.room.message\",\"room_id\":\"!r:x\",\"event_id\":\"$3\",\"sender\":\"@a:x\","
        "\"content\":{\"msgtype\":\"m.text\",\"body\":\"a\\u0000b\"}}," /* NUL */
        "{\"type\":\"m.room.message\",\"room_id\":\"!r:x\",\"event_id\":\"$4\",\"sender\":\"@a:x\","
        "\"content\":{\"msgtype\":\"m.text\",\"body\":\"bad \\ud800 surrogate\"}},"
        "{\"type\":\"m.room.message\",\"room_id\":\"!r:x\",\"event_id\":\"$5\",\"sender\":\"@a:x\","
        "\"content\":{\"msgtype\":\"m.text\",\"body\":\"raw \xC3\x28 bytes\"}},"
        "{\"type\":\"m.room.message\",\"room_id\":\"!r:x\",\"event_id\":\"$6\",\"sender\":\"@a:x\","
        "\"content\":{\"msgtype\":\"m.text\",\"body\":\"<b>ok</b> \\ud83d\\ude00 \xC3\xA9\"}}"
        "]}",
        huge);
    fb_free(huge);
    ASSERT_OK(parse_txn(txn, &b));
    fb_free(txn);
    ASSERT_EQ(b.n, 1);
    ASSERT_STR_EQ(b.actions[0].event_id, "$6");
    ASSERT_STR_EQ(b.actions[0].text, "<b>ok</b> \xF0\x9F\x98\x80 \xC3\xA9");
    ASSERT_EQ(b.skipped, 8);
    ASSERT_EQ(b.repaired, 2);
    fb_mx_batch_free(&b);
    return 0;
}

TEST_IMPL(matrix_json_repair)
{
    size_t n = 0, count = 0;
    const char in[] = "\"a\\\\ud800\\ud800x\\udc00\xFF\\ud83d\\ude00\"";
    char *out = fb_mx_json_repair(in, strlen(in), &n, &count);
    /* "\\ud800" is an escaped backslash followed by text: untouched. */
    ASSERT_STR_EQ(out, "\"a\\\\ud800\\uffffx\\uffff\xEF\xBF\xBF\\ud83d\\ude00\"");
    ASSERT_EQ(count, 3);
    ASSERT_EQ(n, strlen(out));
    fb_free(out);
    return 0;
}

/*
 * fb_mx_txn_digest() of `body`, checked against the digest that fb_mx_parse_txn_digest() gives
 * from its own parse (the appservice path's): any difference aborts the test.
 */
static bool digest_both(const char *body, char out[FB_MX_TXN_DIGEST_LEN + 1])
{
    bool ok = fb_mx_txn_digest(body, strlen(body), out);
    char again[FB_MX_TXN_DIGEST_LEN + 1];
    fb_mx_batch_t b;
    memset(&b, 0, sizeof(b));
    fb_mx_parse_opts_t o = {.bot = BOT, .ignore_users = ignore, .history = true};
    (void)fb_mx_parse_txn_digest(body, strlen(body), &o, &b, again);
    fb_mx_batch_free(&b);
    if (strcmp(out, again) != 0) {
        fprintf(stderr, "digests differ for %s: '%s' and '%s'\n", body, out, again);
        abort();
    }
    return ok;
}

TEST_IMPL(matrix_txn_digest)
{
    char a[FB_MX_TXN_DIGEST_LEN + 1], b[FB_MX_TXN_DIGEST_LEN + 1];
    /* A replay: the same events, another age. */
    const char *t1 = "{\"events\":[{\"event_id\":\"$a\",\"unsigned\":{\"age\":1}},"
                     "{\"event_id\":\"$b\"}]}";
    const char *t2 = "{\"events\":[{\"event_id\":\"$a\",\"unsigned\":{\"age\":900}},"
                     "{\"event_id\":\"$b\"}]}";
    ASSERT(digest_both(t1, a));
    ASSERT(digest_both(t2, b));
    ASSERT_EQ(strlen(a), FB_MX_TXN_DIGEST_LEN);
    ASSERT_STR_EQ(a, b);
    /* Other events under the same id; the same ones in another order. */
    const char *t3 = "{\"events\":[{\"event_id\":\"$c\"}]}";
    ASSERT(digest_both(t3, b));
    ASSERT(strcmp(a, b) != 0);
    const char *t4 = "{\"events\":[{\"event_id\":\"$b\"},{\"event_id\":\"$a\"}]}";
    ASSERT(digest_both(t4, b));
    ASSERT(strcmp(a, b) != 0);
    /* To-device events only (room keys): named by their content, whatever the key order. */
    const char *d1 = "{\"events\":[],\"de.sorunome.msc2409.to_device\":[{\"type\":\"x\","
                     "\"content\":{\"k\":1}}]}";
    const char *d2 = "{\"de.sorunome.msc2409.to_device\":[{\"content\":{\"k\":1},\"type\":\"x\"}],"
                     "\"events\":[]}";
    const char *d3 = "{\"events\":[],\"de.sorunome.msc2409.to_device\":[{\"type\":\"x\","
                     "\"content\":{\"k\":2}}]}";
    ASSERT(digest_both(d1, a));
    ASSERT(digest_both(d2, b));
    ASSERT_STR_EQ(a, b);
    ASSERT(digest_both(d3, b));
    ASSERT(strcmp(a, b) != 0);
    /* Events and room keys: the keys count too. */
    const char *e1 = "{\"events\":[{\"event_id\":\"$a\"}],"
                     "\"org.matrix.msc2409.to_device\":[{\"type\":\"x\"}]}";
    const char *e2 = "{\"events\":[{\"event_id\":\"$a\"}]}";
    ASSERT(digest_both(e1, a));
    ASSERT(digest_both(e2, b));
    ASSERT(strcmp(a, b) != 0);
    /* Nothing to name it by: device lists or key counts only, no events, not JSON. */
    const char *none[] = {
        "{\"events\":[],\"org.matrix.msc3202.device_lists\":{\"changed\":[\"@u:h\"]}}",
        "{\"events\":[{\"type\":\"m.room.message\"}]}", "{}", "[1]", "not json"};
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
        ASSERT(!digest_both(none[i], b));
        ASSERT_STR_EQ(b, "");
    }
    return 0;
}

TEST_IMPL(matrix_strip_fallback)
{
    char *s = fb_mx_strip_fallback("> <@a:x> q\n> more\n\nanswer\n> kept");
    ASSERT_STR_EQ(s, "answer\n> kept");
    fb_free(s);
    s = fb_mx_strip_fallback("plain");
    ASSERT_STR_EQ(s, "plain");
    fb_free(s);
    s = fb_mx_strip_fallback("> only");
    ASSERT_STR_EQ(s, "");
    fb_free(s);
    return 0;
}

TEST_IMPL(matrix_glob_and_invites)
{
    ASSERT(fb_mx_glob("*", ""));
    ASSERT(fb_mx_glob("@bot-*:*", "@bot-rss:agent.tchap.gouv.fr"));
    ASSERT(!fb_mx_glob("@bot-*:*", "@alice:agent.tchap.gouv.fr"));
    ASSERT(fb_mx_glob("*.TCHAP.gouv.fr", "agent.tchap.gouv.fr"));
    ASSERT(!fb_mx_glob("*.tchap.gouv.fr", "tchap.gouv.fr.evil.org"));
    ASSERT(fb_mx_glob("a?c", "abc"));
    ASSERT(!fb_mx_glob("a?c", "ac"));
    ASSERT(fb_mx_glob("a*b*c", "axxbyyc"));
    ASSERT(!fb_mx_glob("a*b*c", "axxbyy"));

    ASSERT_STR_EQ(fb_mx_server_name("@u:example.org:8448"), "example.org:8448");
    ASSERT_NULL(fb_mx_server_name("u:example.org"));
    ASSERT_NULL(fb_mx_server_name("@u"));

    const char *const none[] = {NULL};
    const char *const servers[] = {"*.gouv.fr", NULL};
    const char *const users[] = {"@boss:other.org", NULL};
    /* Both lists empty: the bot's own server only. */
    ASSERT(fb_mx_invite_allowed(none, none, BOT, "@a:example.org"));
    ASSERT(fb_mx_invite_allowed(NULL, NULL, BOT, "@a:EXAMPLE.org"));
    ASSERT(!fb_mx_invite_allowed(none, none, BOT, "@a:other.org"));
    ASSERT(fb_mx_invite_allowed(servers, users, BOT, "@a:agent.gouv.fr"));
    ASSERT(fb_mx_invite_allowed(servers, users, BOT, "@boss:other.org"));
    ASSERT(!fb_mx_invite_allowed(servers, users, BOT, "@a:example.org"));
    ASSERT(!fb_mx_invite_allowed(servers, users, BOT, "nobody"));
    return 0;
}

TEST_IMPL(matrix_ct_equal)
{
    ASSERT(fb_mx_ct_equal("secret-token", 12, "secret-token", 12));
    ASSERT(!fb_mx_ct_equal("secret-tokeN", 12, "secret-token", 12));
    ASSERT(!fb_mx_ct_equal("secret", 6, "secret-token", 12));
    ASSERT(!fb_mx_ct_equal("secret-token-longer", 19, "secret-token", 12));
    ASSERT(!fb_mx_ct_equal("", 0, "x", 1));
    ASSERT(fb_mx_ct_equal("", 0, "", 0));
    return 0;
}

TEST_IMPL(matrix_conv_keys_and_tags)
{
    char *room, *root;
    ASSERT_OK(fb_mx_conv_split("!r:x", &room, &root));
    ASSERT_STR_EQ(room, "!r:x");
    ASSERT_NULL(root);
    fb_free(room);
    ASSERT_OK(fb_mx_conv_split("!r:x/$thread", &room, &root));
    ASSERT_STR_EQ(room, "!r:x");
    ASSERT_STR_EQ(root, "$thread");
    fb_free(room);
    fb_free(root);
    ASSERT_EQ(fb_mx_conv_split("web-token", &room, &root), FB_EINVAL);
    ASSERT_EQ(fb_mx_conv_split("!r:x/$", &room, &root), FB_EINVAL);
    char t1[FB_MX_TAG_LEN + 1], t2[FB_MX_TAG_LEN + 1];
    fb_mx_tag("!r:x", t1);
    fb_mx_tag("!r:y", t2);
    ASSERT_EQ(strlen(t1), FB_MX_TAG_LEN);
    ASSERT(strcmp(t1, t2) != 0);
    ASSERT(strstr(t1, "r:x") == NULL);
    char *e = fb_mx_path_escape("!r:x/$a b");
    ASSERT_STR_EQ(e, "%21r%3Ax%2F%24a%20b");
    fb_free(e);
    /* An advisors' room named by its alias: its conversation keys keep the alias. */
    ASSERT_OK(fb_mx_conv_split("#conseil:x/$thread", &room, &root));
    ASSERT_STR_EQ(room, "#conseil:x");
    ASSERT_STR_EQ(root, "$thread");
    fb_free(room);
    fb_free(root);
    char *c = fb_mx_conv_with_room("!r:x/$thread", "#conseil:x");
    ASSERT_STR_EQ(c, "#conseil:x/$thread");
    fb_free(c);
    c = fb_mx_conv_with_room("#conseil:x/~ticket/$t", "!r:x");
    ASSERT_STR_EQ(c, "!r:x/~ticket/$t");
    fb_free(c);
    c = fb_mx_conv_with_room("!r:x", "#conseil:x");
    ASSERT_STR_EQ(c, "#conseil:x");
    fb_free(c);
    return 0;
}

TEST_IMPL(matrix_route_aliases)
{
    ASSERT(fb_mx_alias_ok("#conseil:x"));
    ASSERT(!fb_mx_alias_ok("#conseil"));
    ASSERT(!fb_mx_alias_ok("#:x"));
    ASSERT(!fb_mx_alias_ok("#c:"));
    ASSERT(!fb_mx_alias_ok("!r:x"));
    ASSERT(!fb_mx_alias_ok("#a b:x"));
    ASSERT(!fb_mx_alias_ok("#a/b:x"));
    ASSERT(!fb_mx_alias_ok("#a\tb:x"));
    char l0[] = "52 #c52:x", l1[] = "r44 !g:x", l2[] = "* #def:x", l3[] = "2A #c52:x",
         l4[] = "974 #bad";
    char *lines[] = {l0, l1, l2, l3, l4, NULL};
    char **v = fb_mx_route_aliases(lines);
    ASSERT_STR_EQ(v[0], "#c52:x");
    ASSERT_STR_EQ(v[1], "#def:x");
    ASSERT_NULL(v[2]); /* no duplicate, no room id, nothing malformed */
    fb_mx_strv_free(v);
    v = fb_mx_route_aliases(NULL);
    ASSERT_NULL(v[0]);
    fb_mx_strv_free(v);
    return 0;
}

TEST_IMPL(matrix_html_filter)
{
    static const struct {
        const char *in, *want;
    } v[] = {
        {"<p>Bonjour <strong>vous</strong><br></p>", "<p>Bonjour <strong>vous</strong><br></p>"},
        {"<ul><li>a</li></ul>", "<ul><li>a</li></ul>"},
        {"<script>alert(1)</script>x", "alert(1)x"},
        {"<p onclick=\"x()\" class=a>t</p>", "<p>t</p>"},
        {"<a href=\"https://example.org/?a=1&amp;b=2\" target=_blank>l</a>",
         "<a href=\"https://example.org/?a=1&amp;b=2\">l</a>"},
        {"<a href=\"javascript:alert(1)\">l</a>", "<a>l</a>"},
        {"<a href='HTTP://x.org'>l</a>", "<a href=\"HTTP://x.org\">l</a>"},
        {"a < b > c", "a &lt; b &gt; c"},
        {"<!-- hidden -->v", "v"},
        {"<img src=x onerror=alert(1)>", ""},
        {"<p", "&lt;p"},
        {"<a href=\"unterminated>x", "&lt;a href=\"unterminated&gt;x"},
        {"&lt;b&gt; stays escaped", "&lt;b&gt; stays escaped"},
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(v); i++) {
        char *out = fb_mx_html_filter(v[i].in);
        ASSERT_STR_EQ(out, v[i].want);
        fb_free(out);
    }
    return 0;
}

TEST_IMPL(matrix_message_content)
{
    json_t *c =
        fb_mx_message_content("m.notice", "1. Oui\n2. Non", "<p>1. Oui<br>2. Non</p>", NULL);
    ASSERT_NOT_NULL(c);
    ASSERT_STR_EQ(json_string_value(json_object_get(c, "msgtype")), "m.notice");
    ASSERT_STR_EQ(json_string_value(json_object_get(c, "body")), "1. Oui\n2. Non");
    ASSERT_STR_EQ(json_string_value(json_object_get(c, "format")), "org.matrix.custom.html");
    ASSERT_STR_EQ(json_string_value(json_object_get(c, "formatted_body")),
                  "<p>1. Oui<br>2. Non</p>");
    ASSERT(json_is_object(json_object_get(c, "m.mentions")));
    ASSERT_NULL(json_object_get(c, "m.relates_to"));
    json_decref(c);

    c = fb_mx_message_content("m.text", "rappel", "", "$root");
    ASSERT_NULL(json_object_get(c, "formatted_body"));
    ASSERT_NULL(json_object_get(c, "format"));
    json_t *rel = json_object_get(c, "m.relates_to");
    ASSERT_STR_EQ(json_string_value(json_object_get(rel, "rel_type")), "m.thread");
    ASSERT_STR_EQ(json_string_value(json_object_get(rel, "event_id")), "$root");
    ASSERT(json_is_true(json_object_get(rel, "is_falling_back")));
    ASSERT_STR_EQ(
        json_string_value(json_object_get(json_object_get(rel, "m.in_reply_to"), "event_id")),
        "$root");
    json_decref(c);
    ASSERT_NULL(fb_mx_message_content("m.text", NULL, NULL, NULL));
    return 0;
}

/* The notification policy: what a person must not miss is m.text, routine answers m.notice. */
TEST_IMPL(matrix_msgtype_of_kind)
{
    ASSERT_STR_EQ(fb_mx_msgtype_of("reply", "m.text"), "m.notice");
    ASSERT_STR_EQ(fb_mx_msgtype_of(NULL, "m.text"), "m.notice");
    ASSERT_STR_EQ(fb_mx_msgtype_of("redact", "m.text"), "m.notice");
    ASSERT_STR_EQ(fb_mx_msgtype_of("unknown", "m.text"), "m.notice");
    ASSERT_STR_EQ(fb_mx_msgtype_of("relay", "m.notice"), "m.text");
    ASSERT_STR_EQ(fb_mx_msgtype_of("ticket", "m.notice"), "m.text");
    ASSERT_STR_EQ(fb_mx_msgtype_of("roadmap", "m.notice"), "m.text");
    ASSERT_STR_EQ(fb_mx_msgtype_of("reminder", "m.text"), "m.text");
    ASSERT_STR_EQ(fb_mx_msgtype_of("reminder", "m.notice"), "m.notice");
    ASSERT_STR_EQ(fb_mx_msgtype_of("reminder", NULL), "m.text");
    return 0;
}

TEST_IMPL(matrix_ticket_mentions)
{
    /* none: the content is left as it was (m.mentions {}, no highlight) */
    json_t *c =
        fb_mx_message_content("m.text", "Nouvelle demande", "<p>Nouvelle demande</p>", NULL);
    fb_mx_ticket_mentions(c, "none", NULL);
    ASSERT_STR_EQ(json_string_value(json_object_get(c, "body")), "Nouvelle demande");
    ASSERT_EQ(json_object_size(json_object_get(c, "m.mentions")), 0);
    fb_mx_ticket_mentions(c, NULL, NULL);
    ASSERT_EQ(json_object_size(json_object_get(c, "m.mentions")), 0);
    json_decref(c);

    /* room: intentional mention and "@room" in both bodies */
    c = fb_mx_message_content("m.text", "Nouvelle demande", "<p>Nouvelle demande</p>", NULL);
    fb_mx_ticket_mentions(c, "room", NULL);
    json_t *mn = json_object_get(c, "m.mentions");
    ASSERT(json_is_true(json_object_get(mn, "room")));
    ASSERT_NULL(json_object_get(mn, "user_ids"));
    ASSERT_STR_EQ(json_string_value(json_object_get(c, "body")), "@room Nouvelle demande");
    ASSERT_STR_EQ(json_string_value(json_object_get(c, "formatted_body")),
                  "@room <p>Nouvelle demande</p>");
    json_decref(c);

    /* advisors: user ids listed, and pills at the end */
    char a[] = "@a:hs.example", b[] = "@b.c:hs.example";
    char *users[] = {a, b, NULL};
    c = fb_mx_message_content("m.text", "Nouvelle demande", "<p>Nouvelle demande</p>", NULL);
    fb_mx_ticket_mentions(c, "advisors", users);
    mn = json_object_get(c, "m.mentions");
    ASSERT_NULL(json_object_get(mn, "room"));
    json_t *ids = json_object_get(mn, "user_ids");
    ASSERT_EQ(json_array_size(ids), 2);
    ASSERT_STR_EQ(json_string_value(json_array_get(ids, 0)), "@a:hs.example");
    ASSERT_STR_EQ(json_string_value(json_array_get(ids, 1)), "@b.c:hs.example");
    ASSERT_STR_EQ(json_string_value(json_object_get(c, "body")),
                  "Nouvelle demande\n\n@a:hs.example @b.c:hs.example");
    ASSERT_STR_EQ(json_string_value(json_object_get(c, "formatted_body")),
                  "<p>Nouvelle demande</p><p><a href=\"https://matrix.to/#/@a:hs.example\">"
                  "@a:hs.example</a> <a href=\"https://matrix.to/#/@b.c:hs.example\">"
                  "@b.c:hs.example</a></p>");
    json_decref(c);

    /* advisors without users: nothing; no formatted_body: the plain body only */
    char *none[] = {NULL};
    c = fb_mx_message_content("m.text", "x", NULL, NULL);
    fb_mx_ticket_mentions(c, "advisors", none);
    ASSERT_EQ(json_object_size(json_object_get(c, "m.mentions")), 0);
    fb_mx_ticket_mentions(c, "advisors", users);
    ASSERT_STR_EQ(json_string_value(json_object_get(c, "body")),
                  "x\n\n@a:hs.example @b.c:hs.example");
    ASSERT_NULL(json_object_get(c, "formatted_body"));
    json_decref(c);
    return 0;
}

TEST_IMPL(matrix_registration_file)
{
    char as[FB_MX_TOKEN_HEX + 1], hs[FB_MX_TOKEN_HEX + 1];
    ASSERT_OK(fb_mx_random_token(as));
    ASSERT_OK(fb_mx_random_token(hs));
    ASSERT_EQ(strlen(as), FB_MX_TOKEN_HEX);
    ASSERT(strcmp(as, hs) != 0);
    ASSERT_EQ(strspn(as, "0123456789abcdef"), FB_MX_TOKEN_HEX);

    char *y = fb_mx_registration_yaml("frichebot", "http://127.0.0.1:8080", "@fb.bot:example.org",
                                      as, hs, false);
    ASSERT_NOT_NULL(y);
    ASSERT_NOT_NULL(strstr(y, "\nsender_localpart: \"fb.bot\"\n"));
    ASSERT_NOT_NULL(strstr(y, "regex: \"@fb\\\\.bot:example\\\\.org\"\n"));
    ASSERT_NOT_NULL(strstr(y, "    - exclusive: true\n"));
    ASSERT_NOT_NULL(strstr(y, "\nrate_limited: false\n"));
    ASSERT_NOT_NULL(strstr(y, "\nurl: \"http://127.0.0.1:8080\"\n"));
    ASSERT_NULL(strstr(y, "msc3202")); /* no encryption: no experimental flags */
    char *a = NULL, *h = NULL;
    const char *why = NULL;
    ASSERT_OK(fb_mx_registration_tokens(y, strlen(y), &a, &h, &why));
    ASSERT_STR_EQ(a, as);
    ASSERT_STR_EQ(h, hs);
    fb_free(a);
    fb_free(h);
    fb_free(y);

    /* Hand-written files: plain and single-quoted values. */
    const char *hand = "id: x\nas_token: abcdefghijklmnop1\nhs_token: 'ABCDEFGHIJKLMNOP2'\n";
    ASSERT_OK(fb_mx_registration_tokens(hand, strlen(hand), &a, &h, &why));
    ASSERT_STR_EQ(a, "abcdefghijklmnop1");
    ASSERT_STR_EQ(h, "ABCDEFGHIJKLMNOP2");
    fb_free(a);
    fb_free(h);
    const char *shortt = "as_token: tiny1\nhs_token: ABCDEFGHIJKLMNOP2\n";
    ASSERT_EQ(fb_mx_registration_tokens(shortt, strlen(shortt), &a, &h, &why), FB_EINVAL);
    ASSERT_NOT_NULL(why);
    ASSERT_NULL(strstr(why, "tiny1"));
    ASSERT_NULL(a);
    const char *missing = "as_token: abcdefghijklmnop1\n";
    ASSERT_EQ(fb_mx_registration_tokens(missing, strlen(missing), &a, &h, &why), FB_EINVAL);
    ASSERT_NULL(fb_mx_registration_yaml("x", "http://h", "nouser", as, hs, false));
    /* Without encryption: the service's device (MSC4190) all the same (mx_as_device.c), and
     * none of the encryption extensions. */
    y = fb_mx_registration_yaml("frichebot", "http://h", "@fb:example.org", as, hs, false);
    ASSERT_NOT_NULL(y);
    ASSERT_NOT_NULL(strstr(y, "\nio.element.msc4190: true\n"));
    ASSERT_NULL(strstr(y, "msc3202: true"));
    ASSERT_NULL(strstr(y, "receive_ephemeral"));
    fb_free(y);
    /* With encryption: ephemeral events (to-device), MSC3202 extensions, MSC4190 devices. */
    y = fb_mx_registration_yaml("frichebot", "http://h", "@fb:example.org", as, hs, true);
    ASSERT_NOT_NULL(y);
    ASSERT_NOT_NULL(strstr(y, "\nreceive_ephemeral: true\n"));
    ASSERT_NOT_NULL(strstr(y, "\nde.sorunome.msc2409.push_ephemeral: true\n"));
    ASSERT_NOT_NULL(strstr(y, "\norg.matrix.msc3202: true\n"));
    ASSERT_NOT_NULL(strstr(y, "\nio.element.msc4190: true\n"));
    ASSERT_OK(fb_mx_registration_tokens(y, strlen(y), &a, &h, &why));
    ASSERT_STR_EQ(a, as);
    fb_free(a);
    fb_free(h);
    fb_free(y);
    char *re = fb_mx_regex_escape("@a+b:x.y");
    ASSERT_STR_EQ(re, "@a\\+b:x\\.y");
    fb_free(re);
    return 0;
}

TEST_IMPL(matrix_txn_crypto)
{
    /* A transaction as Synapse sends it with MSC2409 and MSC3202: to-device events for several
     * devices and users, the device lists, the key counts of every device of the AS's users. */
    const char *txn =
        "{\"events\": [],"
        " \"de.sorunome.msc2409.to_device\": ["
        "  {\"type\": \"m.room.encrypted\", \"sender\": \"@u:hs\", \"to_user_id\": \"@bot:hs\","
        "   \"to_device_id\": \"BOTDEV\", \"content\": {\"n\": 1}},"
        "  {\"type\": \"m.room.encrypted\", \"sender\": \"@u:hs\", \"to_user_id\": \"@bot:hs\","
        "   \"to_device_id\": \"OTHER\", \"content\": {\"n\": 2}},"
        "  {\"type\": \"m.room_key_request\", \"sender\": \"@u:hs\", \"to_user_id\": \"@x:hs\","
        "   \"to_device_id\": \"BOTDEV\", \"content\": {\"n\": 3}},"
        "  {\"type\": \"m.dummy\", \"to_user_id\": \"@bot:hs\"}, 7],"
        " \"org.matrix.msc3202.device_lists\": {\"changed\": [\"@u:hs\", 5], \"left\": "
        "[\"@v:hs\"]},"
        " \"org.matrix.msc3202.device_one_time_keys_count\": {\"@bot:hs\": {"
        "   \"BOTDEV\": {\"signed_curve25519\": 12}, \"OTHER\": {\"signed_curve25519\": 0}}},"
        " \"org.matrix.msc3202.device_unused_fallback_key_types\": {\"@bot:hs\": {"
        "   \"BOTDEV\": [], \"OTHER\": [\"signed_curve25519\"]}}}";
    json_t *t = json_loads(txn, 0, NULL);
    ASSERT_NOT_NULL(t);
    json_t *v = fb_mx_txn_crypto(t, "@bot:hs", "BOTDEV");
    json_t *evs = json_object_get(json_object_get(v, "to_device"), "events");
    ASSERT_EQ(json_array_size(evs), 1); /* only ours */
    ASSERT_EQ(json_integer_value(
                  json_object_get(json_object_get(json_array_get(evs, 0), "content"), "n")),
              1);
    json_t *dl = json_object_get(v, "device_lists");
    ASSERT_EQ(json_array_size(json_object_get(dl, "changed")), 1);
    ASSERT_STR_EQ(json_string_value(json_array_get(json_object_get(dl, "left"), 0)), "@v:hs");
    ASSERT_EQ(json_integer_value(json_object_get(json_object_get(v, "device_one_time_keys_count"),
                                                 "signed_curve25519")),
              12);
    json_t *fbk = json_object_get(v, "device_unused_fallback_key_types");
    ASSERT(json_is_array(fbk) && json_array_size(fbk) == 0); /* used: a new one is needed */
    json_decref(v);
    /* Another device: no counts of its own absent from the transaction. */
    v = fb_mx_txn_crypto(t, "@bot:hs", "NOPE");
    ASSERT_EQ(json_array_size(json_object_get(json_object_get(v, "to_device"), "events")), 0);
    ASSERT_NULL(json_object_get(v, "device_one_time_keys_count"));
    ASSERT_NULL(json_object_get(v, "device_unused_fallback_key_types"));
    json_decref(v);
    json_decref(t);
    /* The newer name wins over the older one; a transaction without extensions is empty. */
    t = json_loads("{\"org.matrix.msc2409.to_device\": [{\"to_user_id\": \"@bot:hs\","
                   " \"to_device_id\": \"D\", \"type\": \"a\"}],"
                   " \"de.sorunome.msc2409.to_device\": [{\"to_user_id\": \"@bot:hs\","
                   " \"to_device_id\": \"D\", \"type\": \"b\"}]}",
                   0, NULL);
    v = fb_mx_txn_crypto(t, "@bot:hs", "D");
    evs = json_object_get(json_object_get(v, "to_device"), "events");
    ASSERT_EQ(json_array_size(evs), 1);
    ASSERT_STR_EQ(json_string_value(json_object_get(json_array_get(evs, 0), "type")), "a");
    json_decref(v);
    json_decref(t);
    t = json_loads("{\"events\": []}", 0, NULL);
    v = fb_mx_txn_crypto(t, "@bot:hs", NULL);
    ASSERT_EQ(json_array_size(json_object_get(json_object_get(v, "to_device"), "events")), 0);
    ASSERT_EQ(json_array_size(json_object_get(json_object_get(v, "device_lists"), "changed")), 0);
    json_decref(v);
    json_decref(t);
    return 0;
}
