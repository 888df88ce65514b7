/* SPDX-License-Identifier: MIT */
/*
 * test_escalation.c - the escalation module's configuration, room ownership and the COMMIT
 * operations it builds (daemon/escalation.c). The whole flow, with Redis, Synapse and the daemon,
 * is in tests/integration/test_escalation.py.
 */
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <uv.h>

#include "config.h"
#include "escalation.h"
#include "frichebot/alloc.h"
#include "frichebot/err.h"
#include "redis.h"
#include "store.h"
#include "task.h"

static void kick(void *arg, const char *key)
{
    (void)arg;
    (void)key;
}

static int handback(void *arg, const char *key, const char *event_id, fb_inbound_cb cb, void *cba)
{
    (void)arg;
    (void)key;
    (void)event_id;
    (void)cb;
    (void)cba;
    return 0;
}

struct env {
    uv_loop_t loop;
    fb_config_t *cfg;
    fb_redis_t *redis;
    fb_store_t *store;
};

static int env_open(struct env *v, const char *esc_yaml, fb_esc_t **out, char **errors)
{
    char *text = fb_asprintf(
        "server:\n  listen: \"127.0.0.1:8080\"\nredis:\n  address: \"tcp://127.0.0.1:6379\"\n%s",
        esc_yaml);
    fb_buf_t e;
    fb_buf_init(&e, 1u << 20);
    v->cfg = fb_config_parse("t.yaml", text, strlen(text), &e);
    fb_free(text);
    if (!v->cfg) {
        *errors = fb_buf_take(&e);
        return FB_EINVAL;
    }
    ASSERT_EQ(uv_loop_init(&v->loop), 0);
    v->redis = fb_redis_create(&v->loop, &v->cfg->redis);
    ASSERT_NOT_NULL(v->redis);
    v->store = fb_store_create(v->redis, &v->cfg->store);
    ASSERT_NOT_NULL(v->store);
    fb_esc_hooks_t hooks = {.arg = NULL, .kick = kick, .handback = handback};
    int rc = fb_esc_create(&v->loop, v->cfg, v->store, NULL, &hooks, out, &e);
    *errors = fb_buf_take(&e);
    return rc;
}

static void env_close(struct env *v, fb_esc_t *esc)
{
    fb_esc_destroy(esc);
    if (v->store)
        fb_store_destroy(v->store);
    if (v->redis) {
        fb_redis_close(v->redis, NULL, NULL);
        uv_run(&v->loop, UV_RUN_DEFAULT);
        ASSERT_EQ(uv_loop_close(&v->loop), 0);
    }
    fb_config_free(v->cfg);
}

TEST_IMPL(escalation_config_disabled_and_bad_lines)
{
    struct env v = {0};
    fb_esc_t *esc = NULL;
    char *errors = NULL;
    ASSERT_EQ(env_open(&v, "", &esc, &errors), 0);
    ASSERT_NULL(esc); /* disabled by default */
    fb_free(errors);
    env_close(&v, esc);

    struct env w = {0};
    ASSERT_EQ(env_open(&w,
                       "escalation:\n  enabled: true\n  rooms: [\"52 !a:x\", \"52\", \"xyz !b:x\", "
                       "\"* nope\"]\n  response_times: [\"r44\"]\n",
                       &esc, &errors),
              FB_EINVAL);
    ASSERT_NULL(esc);
    ASSERT_NOT_NULL(strstr(errors, "escalation.rooms[1]"));
    ASSERT_NOT_NULL(strstr(errors, "escalation.rooms[2]"));
    ASSERT_NOT_NULL(strstr(errors, "escalation.rooms[3]"));
    ASSERT_NULL(strstr(errors, "escalation.rooms[0]"));
    ASSERT_NOT_NULL(strstr(errors, "escalation.response_times[0]"));
    fb_free(errors);
    env_close(&w, esc);

    struct env n = {0};
    ASSERT_EQ(env_open(&n, "escalation:\n  enabled: true\n", &esc, &errors), FB_EINVAL);
    ASSERT_NOT_NULL(strstr(errors, "at least one room"));
    fb_free(errors);
    env_close(&n, esc);
    return 0;
}

TEST_IMPL(escalation_owns_rooms_and_threads_and_builds_ops)
{
    struct env v = {0};
    fb_esc_t *esc = NULL;
    char *errors = NULL;
    ASSERT_EQ(env_open(&v,
                       "escalation:\n  enabled: true\n  rooms: [\"52 !a:x\", \"r44 !g:x\", \"* "
                       "!d:x\"]\n  response_times: [\"* sous cinq jours\"]\n  watchdog_ms: 5000\n",
                       &esc, &errors),
              0);
    fb_free(errors);
    ASSERT_NOT_NULL(esc);
    ASSERT(fb_esc_owns(esc, "matrix", "!a:x"));
    ASSERT(fb_esc_owns(esc, "matrix", "!a:x/$root"));
    ASSERT(fb_esc_owns(esc, "matrix", "!d:x"));
    ASSERT(!fb_esc_owns(esc, "matrix", "!a:xy"));
    ASSERT(!fb_esc_owns(esc, "matrix", "!b:x"));
    ASSERT(!fb_esc_owns(esc, "web", "!a:x"));

    /* A new ticket without a known commune goes to "*", the user told the response time. */
    json_t *effects = json_pack("[{s:s, s:s, s:s}]", "type", "escalate", "reason", "demande",
                                "summary", "Dialogue : test");
    json_t *ops = json_pack("{s:[]}", "out");
    size_t says = 1;
    fb_esc_step_t st = {.key = "web:tok",
                        .session = NULL,
                        .effects = effects,
                        .text = "conseiller <b>",
                        .wid = "0123456789abcdef",
                        .user = true,
                        .now = 1000};
    fb_esc_commit_ops(esc, &st, ops, &says);
    json_t *ann = json_object_get(json_object_get(ops, "esc"), "ann");
    ASSERT(json_is_array(ann));
    ASSERT_STR_EQ(json_string_value(json_array_get(ann, 2)), "!d:x");
    ASSERT_STR_EQ(json_string_value(json_array_get(ann, 3)), "*");
    json_t *root = json_loads(json_string_value(json_array_get(ann, 0)), 0, NULL);
    ASSERT_NOT_NULL(root);
    ASSERT_STR_EQ(json_string_value(json_object_get(root, "txn")), "esc-0123456789abcdef.root");
    ASSERT_NOT_NULL(strstr(json_string_value(json_object_get(root, "text")), "« conseiller <b> »"));
    ASSERT_NOT_NULL(strstr(json_string_value(json_object_get(root, "html")), "&lt;b&gt;"));
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(root, "record"), "rval")),
                  "web:tok");
    json_decref(root);
    ASSERT_EQ(says, 2);
    ASSERT_EQ(json_array_size(json_object_get(ops, "out")), 1);
    json_t *told =
        json_loads(json_string_value(json_array_get(json_object_get(ops, "out"), 0)), 0, NULL);
    ASSERT_STR_EQ(json_string_value(json_object_get(told, "text")),
                  "Un conseiller vous répondra ici, en général sous cinq jours.");
    json_decref(told);
    json_decref(ops);

    /* A later message is a relay; a handback closes. */
    json_t *none = json_array();
    ops = json_pack("{s:[]}", "out");
    st.effects = none;
    st.text = "une question";
    fb_esc_commit_ops(esc, &st, ops, &says);
    json_t *relay = json_loads(
        json_string_value(json_object_get(json_object_get(ops, "esc"), "relay")), 0, NULL);
    ASSERT_STR_EQ(json_string_value(json_object_get(relay, "text")), "Usager : une question");
    json_decref(relay);
    json_decref(ops);
    ops = json_pack("{s:[]}", "out");
    st.text = NULL;
    st.user = false;
    st.handback = true;
    fb_esc_commit_ops(esc, &st, ops, &says);
    ASSERT(json_is_true(json_object_get(json_object_get(ops, "esc"), "done")));
    json_decref(ops);
    json_decref(none);
    json_decref(effects);
    env_close(&v, esc);
    return 0;
}
