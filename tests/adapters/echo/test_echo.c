/* SPDX-License-Identifier: MIT */
/*
 * test_echo.c - a conversation through the echo adapter, registered the way every adapter is:
 * the router takes the adapters of the adapter table (fb_builtin_adapters, where the TEST(echo)
 * line puts it in the test programs), against a real, throwaway redis-server and the example
 * dialog. Proves the tutorial of docs/internals/ADAPTERS.md: a platform added by a folder and
 * one line of the table.
 */
#include <string.h>

#include <uv.h>

#include "core/adapters.h"
#include "core/router.h"
#include "core/store.h"
#include "echo.h"
#include "engine/geo.h"
#include "frichebot/alloc.h"
#include "frichebot/err.h"
#include "io/config.h"
#include "io/paths.h"
#include "io/redis.h"
#include "task.h"

struct sent_match {
    const char *needle;
};

/* True once a sent message contains the needle. */
static bool sent_has(void *arg)
{
    const struct sent_match *m = arg;
    for (int i = 0; i < *fb_echo_nsent(); i++)
        if (strstr(fb_echo_sent(i), m->needle))
            return true;
    return false;
}

static void wait_sent(uv_loop_t *loop, const char *needle)
{
    struct sent_match m = {needle};
    if (!fb_test_wait_cond(loop, sent_has, &m, 30000))
        FB_TEST_FAIL("waited 30 s for a message with '%s' (%d sent)", needle, *fb_echo_nsent());
}

static void on_done(void *arg)
{
    *(int *)arg += 1;
}

TEST_IMPL(adapter_echo_conversation)
{
    fb_test_redis_t srv;
    memset(&srv, 0, sizeof(srv));
    uv_loop_t loop;
    ASSERT_OK(fb_test_redis_start(&srv));
    ASSERT_OK(uv_loop_init(&loop));

    fb_adapters_register_logs(); /* as main() does: the echo adapter logs as [echo] */
    /* The echo adapter is in the table of this program (the TEST(echo) line). */
    bool listed = false;
    for (size_t i = 0; fb_builtin_adapters[i]; i++)
        listed = listed || fb_builtin_adapters[i] == &fb_adapter_echo;
    ASSERT(listed);

    char *text = fb_asprintf("server:\n  listen: \"127.0.0.1:1\"\n"
                             "redis:\n  address: \"unix:%s\"\n"
                             "store:\n  key_prefix: \"e:\"\n"
                             "dialogs:\n  path: \"%s\"\n"
                             "web:\n  enabled: false\n",
                             srv.sock, FB_SOURCE_DIR "/dialogs/exemple.yaml");
    fb_buf_t e;
    fb_buf_init(&e, 1u << 16);
    fb_config_t *cfg = fb_config_parse("echo.yaml", text, strlen(text), &e);
    fb_free(text);
    if (!cfg)
        FB_TEST_FAIL("config: %s", fb_buf_str(&e));
    fb_redis_t *redis = fb_redis_create(&loop, &cfg->redis);
    ASSERT_NOT_NULL(redis);
    ASSERT_OK(fb_redis_start(redis));
    fb_store_t *store = fb_store_create(redis, &cfg->store);
    fb_geo_t *geo = fb_geo_load(fb_data_path(FB_DATA_GEO), NULL);
    ASSERT_NOT_NULL(geo);
    fb_router_deps_t deps = {&loop, cfg, redis, store, NULL, NULL, geo};
    fb_router_t *router = fb_router_create(&deps, &e);
    if (!router)
        FB_TEST_FAIL("router: %s", fb_buf_str(&e));
    fb_buf_free(&e);

    /* What the daemon does at start (daemon.c): every adapter of the table, the disabled ones
     * declining. */
    fb_echo_enable(true);
    for (size_t i = 0; fb_builtin_adapters[i]; i++) {
        int rc = fb_router_add_adapter(router, fb_builtin_adapters[i]);
        ASSERT(rc == 0 || rc == FB_DECLINED);
    }
    ASSERT_OK(fb_router_start(router));

    /* A user opens a conversation: the greeting and the first question come back. */
    ASSERT_OK(fb_echo_say("alice", "e1", NULL));
    ASSERT(fb_test_wait_int(&loop, fb_echo_delivered(), 1, 30000));
    ASSERT_OK(fb_echo_last_status());
    wait_sent(&loop, "Bonjour");
    wait_sent(&loop, "Dans quelle commune");
    /* The user answers; the dialog goes on. */
    ASSERT_OK(fb_echo_say("alice", "e2", "69123"));
    ASSERT(fb_test_wait_int(&loop, fb_echo_delivered(), 2, 30000));
    ASSERT_OK(fb_echo_last_status());
    wait_sent(&loop, "Qui porte le projet");
    for (int i = 0; i < *fb_echo_nsent(); i++)
        ASSERT_STR_EQ(fb_echo_sent_conv(i), "alice");
    /* The same event again is a duplicate: acknowledged, nothing more sent. */
    int before = *fb_echo_nsent();
    ASSERT_OK(fb_echo_say("alice", "e2", "69123"));
    ASSERT(fb_test_wait_int(&loop, fb_echo_delivered(), 3, 30000));
    ASSERT_OK(fb_echo_last_status());
    fb_test_run_for(&loop, 200);
    ASSERT_EQ(*fb_echo_nsent(), before);

    /* stop(done): nothing in flight once done ran. */
    int stopped = 0, closed = 0;
    fb_router_stop(router, on_done, &stopped);
    ASSERT(fb_test_wait_int(&loop, &stopped, 1, 30000));
    ASSERT_EQ(fb_echo_inflight(), 0);
    fb_redis_close(redis, on_done, &closed);
    ASSERT(fb_test_wait_int(&loop, &closed, 1, 30000));
    fb_router_destroy(router);
    fb_store_destroy(store);
    fb_geo_free(geo);
    fb_config_free(cfg);
    fb_test_loop_close_strict(&loop);
    fb_test_redis_destroy(&srv);
    return 0;
}
