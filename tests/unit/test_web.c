/* SPDX-License-Identifier: MIT */
/*
 * test_web.c - the pure pieces of the web chat adapter (adapters/web/web_util.c): the tokens'
 * log tags, base64url, token and id shapes, the token bucket, history entries. The
 * adapter's behaviour over a real websocket, Redis and router is covered by
 * tests/integration/test_webchat.py.
 */
#include <string.h>

#include <jansson.h>

#include "../../adapters/web/web_util.h"
#include "frichebot/alloc.h"
#include "task.h"

TEST_IMPL(web_base64url)
{
    /* RFC 4648 section 10 vectors (no padding), and the two characters that differ from base64. */
    static const struct {
        const char *in;
        const char *want;
    } v[] = {{"", ""},           {"f", "Zg"},          {"fo", "Zm8"},          {"foo", "Zm9v"},
             {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}, {"\xfb\xff", "-_8"}};
    char out[16];
    for (size_t i = 0; i < FB_ARRAY_SIZE(v); i++) {
        fb_web_base64url((const unsigned char *)v[i].in, strlen(v[i].in), out);
        ASSERT_STR_EQ(out, v[i].want);
    }
    return 0;
}

TEST_IMPL(web_tokens)
{
    char t1[FB_WEB_TOKEN_LEN + 1], t2[FB_WEB_TOKEN_LEN + 1];
    ASSERT_OK(fb_web_token_new(t1));
    ASSERT_OK(fb_web_token_new(t2));
    ASSERT_EQ(strlen(t1), FB_WEB_TOKEN_LEN);
    ASSERT(fb_web_token_valid(t1));
    ASSERT(strcmp(t1, t2) != 0);

    ASSERT(!fb_web_token_valid(NULL));
    ASSERT(!fb_web_token_valid(""));
    char s[FB_WEB_TOKEN_LEN + 2];
    memset(s, 'A', sizeof(s));
    s[FB_WEB_TOKEN_LEN] = '\0';
    ASSERT(fb_web_token_valid(s));
    s[FB_WEB_TOKEN_LEN - 1] = '\0'; /* 42 characters */
    ASSERT(!fb_web_token_valid(s));
    s[FB_WEB_TOKEN_LEN - 1] = 'A';
    s[FB_WEB_TOKEN_LEN] = 'A';
    s[FB_WEB_TOKEN_LEN + 1] = '\0'; /* 44 characters */
    ASSERT(!fb_web_token_valid(s));
    s[FB_WEB_TOKEN_LEN] = '\0';
    s[5] = '{'; /* would break the key's hash tag */
    ASSERT(!fb_web_token_valid(s));
    s[5] = '=';
    ASSERT(!fb_web_token_valid(s));

    /* The tag is the first 6 hex digits of the SHA-256 ("abc" -> ba7816...). */
    char tag[FB_WEB_TAG_LEN + 1];
    fb_web_token_tag("abc", tag);
    ASSERT_STR_EQ(tag, "ba7816");
    return 0;
}

TEST_IMPL(web_ids)
{
    ASSERT(fb_web_id_valid("a"));
    ASSERT(fb_web_id_valid("m-1_Z9"));
    ASSERT(!fb_web_id_valid(NULL));
    ASSERT(!fb_web_id_valid(""));
    ASSERT(!fb_web_id_valid("a b"));
    ASSERT(!fb_web_id_valid("a:b"));
    ASSERT(!fb_web_id_valid("é"));
    char s[FB_WEB_MAX_ID + 2];
    memset(s, 'x', sizeof(s));
    s[FB_WEB_MAX_ID] = '\0';
    ASSERT(fb_web_id_valid(s));
    s[FB_WEB_MAX_ID] = 'x';
    s[FB_WEB_MAX_ID + 1] = '\0';
    ASSERT(!fb_web_id_valid(s));
    return 0;
}

TEST_IMPL(web_bucket)
{
    fb_web_bucket_t b = {0};
    uint64_t t = 1000000;
    ASSERT(fb_web_bucket_full(&b, 6, t));
    /* 6 per minute: six at once, then one every 10 s. */
    for (int i = 0; i < 6; i++)
        ASSERT_EQ(fb_web_bucket_take(&b, 6, t), 0);
    ASSERT(!fb_web_bucket_full(&b, 6, t));
    ASSERT_EQ(fb_web_bucket_take(&b, 6, t), 10);
    ASSERT_EQ(fb_web_bucket_take(&b, 6, t + 1), 10); /* 9.999 s rounds up */
    ASSERT_EQ(fb_web_bucket_take(&b, 6, t + 9000), 1);
    ASSERT_EQ(fb_web_bucket_take(&b, 6, t + 10000), 0);
    ASSERT_EQ(fb_web_bucket_take(&b, 6, t + 10000), 10);
    /* A refund gives one back; the bucket never holds more than per_minute. */
    fb_web_bucket_refund(&b, 6);
    ASSERT_EQ(fb_web_bucket_take(&b, 6, t + 10000), 0);
    ASSERT(fb_web_bucket_full(&b, 6, t + 10000 + 60000));
    for (int i = 0; i < 20; i++)
        fb_web_bucket_refund(&b, 6);
    for (int i = 0; i < 6; i++)
        ASSERT_EQ(fb_web_bucket_take(&b, 6, t + 20000), 0);
    ASSERT_GT(fb_web_bucket_take(&b, 6, t + 20000), 0);
    return 0;
}

TEST_IMPL(web_entries)
{
    json_t *e = json_pack("{s:s, s:s, s:s, s:I}", "from", "user", "id", "a1", "text",
                          "Bonjour \"vous\" <b>é</b>", "ts", (json_int_t)1700000000000);
    char *tail = fb_web_entry_tail(e);
    json_decref(e);
    ASSERT_NOT_NULL(tail);
    ASSERT_EQ(tail[0], ',');
    /* What the append script stores, then the frame sent to the page. */
    char *stored = fb_asprintf("{\"seq\":42%s", tail);
    uint64_t seq = 0;
    char *frame = fb_web_entry_frame(stored, strlen(stored), &seq);
    ASSERT_NOT_NULL(frame);
    ASSERT_EQ(seq, 42);
    json_error_t err;
    json_t *f = json_loads(frame, 0, &err);
    ASSERT_NOT_NULL(f);
    ASSERT_STR_EQ(json_string_value(json_object_get(f, "type")), "msg");
    ASSERT_EQ(json_integer_value(json_object_get(f, "seq")), 42);
    ASSERT_STR_EQ(json_string_value(json_object_get(f, "text")), "Bonjour \"vous\" <b>é</b>");
    ASSERT_STR_EQ(json_string_value(json_object_get(f, "id")), "a1");
    json_decref(f);
    fb_free(frame);
    fb_free(stored);
    fb_free(tail);

    /* Malformed stored entries are refused. */
    static const char *const bad[] = {"",
                                      "{}",
                                      "{\"seq\":}",
                                      "{\"seq\":0,\"a\":1}",
                                      "{\"seq\":1x}",
                                      "{\"seq\":5,\"a\":1",
                                      "[\"seq\":1]",
                                      "{\"seq\":99999999999999999999999,\"a\":1}"};
    for (size_t i = 0; i < FB_ARRAY_SIZE(bad); i++) {
        ASSERT_NULL(fb_web_entry_frame(bad[i], strlen(bad[i]), &seq));
        ASSERT_EQ(seq, 0);
    }
    ASSERT_NULL(fb_web_entry_tail(NULL));
    json_t *empty = json_object();
    ASSERT_NULL(fb_web_entry_tail(empty));
    json_decref(empty);
    return 0;
}

TEST_IMPL(web_frame_parse)
{
    fb_web_frame_t f;
    /* Refused before any type: not JSON, not an object, duplicate members, no type. */
    static const char *const none[] = {"",
                                       "pas du json",
                                       "[]",
                                       "\"hello\"",
                                       "{\"type\":\"ping\",\"type\":\"ping\"}",
                                       "{\"id\":\"a\"}",
                                       "{\"type\":3}"};
    for (size_t i = 0; i < FB_ARRAY_SIZE(none); i++) {
        fb_web_frame_parse(none[i], strlen(none[i]), 100, &f);
        ASSERT_EQ(f.type, FB_WEB_FRAME_NONE);
        ASSERT_STR_EQ(f.error, "bad_request");
        ASSERT_NOT_NULL(f.message);
        fb_web_frame_free(&f);
    }
    const char *s = "{\"type\":\"hello\",\"token\":\"abc\",\"since\":7}";
    fb_web_frame_parse(s, strlen(s), 100, &f);
    ASSERT(f.type == FB_WEB_FRAME_HELLO && !f.error && f.since == 7);
    ASSERT_STR_EQ(f.token, "abc");
    fb_web_frame_free(&f);
    s = "{\"type\":\"hello\",\"since\":-1}";
    fb_web_frame_parse(s, strlen(s), 100, &f);
    ASSERT(f.type == FB_WEB_FRAME_HELLO && f.error);
    fb_web_frame_free(&f);

    s = "{\"type\":\"message\",\"id\":\"m1\",\"text\":\"bonjour\"}";
    fb_web_frame_parse(s, strlen(s), 100, &f);
    ASSERT(f.type == FB_WEB_FRAME_MESSAGE && !f.error && f.text_len == 7);
    ASSERT_STR_EQ(f.id, "m1");
    ASSERT_STR_EQ(f.text, "bonjour");
    fb_web_frame_free(&f);
    /* The text's limit is in bytes; the refusal names it and echoes the id. */
    fb_web_frame_parse(s, strlen(s), 6, &f);
    ASSERT_STR_EQ(f.error, "too_big");
    ASSERT_STR_EQ(f.error_id, "m1");
    ASSERT_NOT_NULL(strstr(f.message, "6 caractères"));
    ASSERT_NULL(f.text);
    fb_web_frame_free(&f);
    static const char *const bad[] = {
        "{\"type\":\"message\",\"text\":\"x\"}",                /* no id */
        "{\"type\":\"message\",\"id\":\"a b\",\"text\":\"x\"}", /* bad id */
        "{\"type\":\"message\",\"id\":\"m\",\"text\":\"\"}",    /* empty */
        "{\"type\":\"choice\",\"id\":\"m\",\"label\":\"x\"}",   /* no choice */
        "{\"type\":\"choice\",\"id\":\"m\",\"choice\":\"c\"}",  /* no label */
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(bad); i++) {
        fb_web_frame_parse(bad[i], strlen(bad[i]), 100, &f);
        ASSERT(f.type == FB_WEB_FRAME_MESSAGE || f.type == FB_WEB_FRAME_CHOICE);
        ASSERT_STR_EQ(f.error, "bad_request");
        ASSERT_NULL(f.text);
        fb_web_frame_free(&f);
    }
    /* jansson refuses \u0000 in a string: such a message is not JSON to us. */
    s = "{\"type\":\"message\",\"id\":\"m\",\"text\":\"a\\u0000b\"}";
    fb_web_frame_parse(s, strlen(s), 100, &f);
    ASSERT_EQ(f.type, FB_WEB_FRAME_NONE);
    fb_web_frame_free(&f);
    s = "{\"type\":\"choice\",\"id\":\"m\",\"choice\":\"c1\",\"label\":\"\"}";
    fb_web_frame_parse(s, strlen(s), 100, &f);
    ASSERT(f.type == FB_WEB_FRAME_CHOICE && !f.error && f.text_len == 0);
    ASSERT_STR_EQ(f.choice, "c1");
    fb_web_frame_free(&f);
    s = "{\"type\":\"autre\",\"id\":\"x\"}";
    fb_web_frame_parse(s, strlen(s), 100, &f);
    ASSERT(f.type == FB_WEB_FRAME_UNKNOWN && f.error);
    ASSERT_STR_EQ(f.raw_id, "x");
    fb_web_frame_free(&f);
    return 0;
}
