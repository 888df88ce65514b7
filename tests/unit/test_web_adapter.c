/* SPDX-License-Identifier: MIT */
/*
 * test_web_adapter.c - the web chat adapter (adapters/web/web.c) on its own: the real HTTP server
 * and websockets, a real throwaway Redis, and a small stand-in for the router (the core table's
 * deliver/wake/set_state) that records events and answers each one with a reply through the
 * adapter's send(), as the outbox would. The client (ws_client.h) runs on a thread with blocking
 * sockets. The whole pipeline with the real router is tests/integration/test_webchat.py.
 *
 * The stand-in router: every event completes on the next loop turn. START writes a session key
 * and replies "bonjour"; a message replies "echo: TEXT" with transaction id "<event id>.0" (a
 * redelivered event replies again with the same id: the adapter must not show it twice); a text
 * starting with "fail" fails its first delivery with FB_EAGAIN; "oublie" deletes the session
 * key and the adapter's conv_keys, as the router's forget does, and replies "au revoir". Its
 * "commit" runs the adapter's COMMIT fragment (ops.commit_lua, which stores the user's message
 * in the history) with the session write, in one script, and hands its AO to ops.committed()
 * before the deliver callback, as the router does; a {3, 0} from the fragment is FB_ENOENT. A
 * duplicate gets ops.committed() without output, as the router does for an adapter whose history
 * is its delivery.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "../../adapters/web/web_config.h"
#include "../../adapters/web/web_util.h"
#include "core/adapters.h"
#include "core/store.h"
#include "frichebot/adapter.h"
#include "frichebot/alloc.h"
#include "frichebot/clock.h"
#include "frichebot/log.h"
#include "io/config.h"
#include "io/http_server.h"
#include "io/redis.h"
#include "task.h"
#include "ws_client.h"

#define MAX_EVENTS 64

struct event {
    fb_inbound_kind_t kind;
    char conv[64];
    char event_id[80];
    char text[256];
    char choice[80];
};

struct pending {
    struct afix *f;
    uv_timer_t timer;
    struct event ev;
    fb_inbound_cb cb;
    void *arg;
    int status;
    char *commit_arg; /* fb_inbound_t.commit_arg */
};

struct afix {
    fb_test_redis_t srv;
    uv_loop_t loop;
    char addr[64];
    char prefix[8];
    fb_config_t cfg;
    fb_web_opts_t web; /* cfg.sections.opts[0] */
    fb_redis_t *redis;
    fb_store_t *store;
    fb_http_server_t *http;
    fb_core_t core;
    fb_adapter_t a;
    int port;
    uv_async_t done;
    void (*scenario)(struct afix *f);
    /* the stand-in router (loop thread only) */
    struct event events[MAX_EVENTS];
    int nevents;
    int sends, send_ok, send_failed;
    int wakes;
    char state[64];
    char failed_once[8][80];
    int nfailed;
    char handled[MAX_EVENTS][80]; /* event ids committed: a redelivery is a duplicate */
    int nhandled;
    int stopped;
    /* read by the client thread through Redis only */
};

static struct afix *the_fix;

/* ---- the stand-in router -------------------------------------------------------------- */

static void on_sent(int status, int64_t retry_after_ms, void *arg)
{
    struct afix *f = arg;
    (void)retry_after_ms;
    if (status == 0)
        f->send_ok++;
    else
        f->send_failed++;
}

static void reply(struct afix *f, const char *conv, const char *txn, const char *text)
{
    json_t *choices = json_pack("[{s:s, s:s}]", "id", "oui", "label", "Oui");
    char *html = fb_asprintf("<p>%s</p>", text);
    fb_outbound_t msg = {.conv = conv,
                         .txn_id = txn,
                         .kind = "reply",
                         .text = text,
                         .html = html,
                         .choices = choices,
                         .entry = NULL};
    f->sends++;
    int rc = f->a.ops->send(&f->a, &msg, on_sent, f);
    if (rc)
        f->send_failed++;
    fb_free(html);
    json_decref(choices);
}

static void pending_closed(uv_handle_t *h)
{
    struct pending *p = h->data;
    fb_free(p->commit_arg);
    fb_free(p);
}

static void session_written(fb_redis_t *r, int status, struct redisReply *rep, void *arg)
{
    struct pending *p = arg;
    (void)r;
    struct afix *f = p->f;
    if (status != 0) { /* Redis down: the router's FB_EAGAIN */
        p->cb(FB_EAGAIN, p->arg);
        uv_close((uv_handle_t *)&p->timer, pending_closed);
        return;
    }
    if (rep && rep->type == REDIS_REPLY_ERROR)
        FB_TEST_FAIL("commit script: %s", rep->str);
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2) { /* the commit script */
        if (rep->element[0]->integer == 3) {
            p->cb(FB_ENOENT, p->arg);
            uv_close((uv_handle_t *)&p->timer, pending_closed);
            return;
        }
        if (rep->element[1]->type == REDIS_REPLY_STRING)
            f->a.ops->committed(&f->a, p->ev.conv, rep->element[1]->str, rep->element[1]->len,
                                p->arg);
        ASSERT_LT(f->nhandled, MAX_EVENTS);
        snprintf(f->handled[f->nhandled++], sizeof(f->handled[0]), "%s", p->ev.event_id);
    }
    p->cb(0, p->arg);
    if (p->ev.kind == FB_IN_START) {
        reply(f, p->ev.conv, "start.0", "bonjour");
    } else if (strcmp(p->ev.text, "oublie") == 0) {
        reply(f, p->ev.conv, "oubli.0", "au revoir");
    } else {
        char txn[100], text[300];
        snprintf(txn, sizeof(txn), "%s.0", p->ev.event_id);
        snprintf(text, sizeof(text), "echo: %s", p->ev.text);
        reply(f, p->ev.conv, txn, text);
    }
    uv_close((uv_handle_t *)&p->timer, pending_closed);
}

static void pending_run(uv_timer_t *t)
{
    struct pending *p = t->data;
    struct afix *f = p->f;
    if (p->status) {
        p->cb(p->status, p->arg);
        uv_close((uv_handle_t *)&p->timer, pending_closed);
        return;
    }
    for (int i = 0; i < f->nhandled; i++) {
        if (strcmp(f->handled[i], p->ev.event_id) == 0) {
            /* a duplicate, as the router's READ finds it: nothing written, the adapter told
             * (FB_ADAPTER_CAP_HISTORY_DELIVERS: committed() without output), replied again */
            f->a.ops->committed(&f->a, p->ev.conv, NULL, 0, p->arg);
            session_written(f->redis, 0, NULL, p);
            return;
        }
    }
    /* The session write, as the router's commit does (or, for "oublie", the deletion of the
     * session and of the adapter's conv_keys, which the router's forget does atomically). */
    char *conv_key = fb_asprintf("web:%s", p->ev.conv);
    char *key = fb_store_conv_key(f->store, conv_key, "session");
    int rc;
    if (p->ev.kind != FB_IN_START && strcmp(p->ev.text, "oublie") == 0) {
        const char *argv[2 + 8] = {"DEL", key};
        char *own[8];
        int n = 0;
        for (const char *const *k = f->a.ops->conv_keys; k && *k && n < 8; k++, n++) {
            own[n] = fb_store_conv_key(f->store, conv_key, *k);
            argv[2 + n] = own[n];
        }
        rc = fb_redis_command_argv(f->redis, 0, session_written, p, 2 + n, argv, NULL);
        for (int i = 0; i < n; i++)
            fb_free(own[i]);
    } else {
        /* the router's COMMIT, reduced to the session write and the adapter's fragment */
        char *script = fb_asprintf("local A = {now = tonumber(ARGV[3]), member = ARGV[4], mode = "
                                   "ARGV[1], arg = ARGV[2]}\n"
                                   "local O = {out = {}}\n"
                                   "local K = {outbox = KEYS[2]}\n"
                                   "local AK = {KEYS[3], KEYS[4], KEYS[5], KEYS[6]}\n"
                                   "local AO = false\n"
                                   "local AD = false\n"
                                   "%s\n"
                                   "redis.call('HSET', KEYS[1], 'v', '1')\n"
                                   "return {1, AO}\n",
                                   f->a.ops->commit_lua(&f->a));
        const char *ks[] = {"outbox", "web", "hist", "hids", "hkeys"};
        char *keys[5];
        for (int i = 0; i < 5; i++)
            keys[i] = fb_store_conv_key(f->store, conv_key, ks[i]);
        char now[24];
        snprintf(now, sizeof(now), "%lld", (long long)fb_wall_ms());
        const char *argv[] = {"EVAL",
                              script,
                              "6",
                              key,
                              keys[0],
                              keys[1],
                              keys[2],
                              keys[3],
                              keys[4],
                              "w",
                              p->commit_arg ? p->commit_arg : "",
                              now,
                              conv_key,
                              "86400000"};
        rc = fb_redis_command_argv(f->redis, 0, session_written, p, 14, argv, NULL);
        for (int i = 0; i < 5; i++)
            fb_free(keys[i]);
        fb_free(script);
    }
    ASSERT_OK(rc);
    fb_free(key);
    fb_free(conv_key);
}

static int core_deliver(fb_adapter_t *a, const fb_inbound_t *ev, fb_inbound_cb cb, void *arg)
{
    struct afix *f = the_fix;
    ASSERT(a == &f->a);
    ASSERT_LT(f->nevents, MAX_EVENTS);
    struct event *e = &f->events[f->nevents++];
    e->kind = ev->kind;
    snprintf(e->conv, sizeof(e->conv), "%s", ev->conv);
    snprintf(e->event_id, sizeof(e->event_id), "%s", ev->event_id);
    snprintf(e->text, sizeof(e->text), "%s", ev->text ? ev->text : "");
    snprintf(e->choice, sizeof(e->choice), "%s", ev->choice ? ev->choice : "");
    struct pending *p = fb_calloc(1, sizeof(*p));
    p->f = f;
    p->ev = *e;
    p->cb = cb;
    p->arg = arg;
    p->commit_arg = ev->commit_arg ? fb_strdup(ev->commit_arg) : NULL;
    if (strncmp(e->text, "fail", 4) == 0) {
        bool seen = false;
        for (int i = 0; i < f->nfailed; i++)
            seen |= strcmp(f->failed_once[i], e->event_id) == 0;
        if (!seen && f->nfailed < 8) {
            size_t n = strnlen(e->event_id, 79); /* not snprintf: gcc -O3 sees a false overlap */
            memcpy(f->failed_once[f->nfailed], e->event_id, n);
            f->failed_once[f->nfailed++][n] = '\0';
            p->status = FB_EAGAIN;
        }
    }
    uv_timer_init(&f->loop, &p->timer);
    p->timer.data = p;
    uv_timer_start(&p->timer, pending_run, 0, 0);
    return 0;
}

static void core_wake(fb_adapter_t *a, const char *conv)
{
    (void)a;
    ASSERT(fb_web_token_valid(conv));
    the_fix->wakes++;
}

static void core_set_state(fb_adapter_t *a, const char *state)
{
    size_t n = strnlen(state, sizeof(a->state) - 1);
    memmove(a->state, state, n); /* memmove: gcc -O3 cannot prove state is not a->state */
    a->state[n] = '\0';
}

/* ---- fixture -------------------------------------------------------------------------- */

static void adapter_stopped(fb_adapter_t *a)
{
    struct afix *f = the_fix;
    ASSERT(a == &f->a);
    f->stopped++;
    fb_http_server_destroy(f->http);
    f->a.ops->destroy(&f->a);
    fb_free(f->a.priv);
    fb_redis_close(f->redis, NULL, NULL);
}

static void on_done(uv_async_t *h)
{
    struct afix *f = h->data;
    uv_close((uv_handle_t *)&f->done, NULL);
    f->a.ops->stop(&f->a, adapter_stopped);
}

static void client_main(void *arg)
{
    struct afix *f = arg;
    f->scenario(f);
    uv_async_send(&f->done);
}

static void run(struct afix *f, void (*scenario)(struct afix *), size_t max_bytes,
                unsigned per_minute, unsigned per_address)
{
    memset(f, 0, sizeof(*f));
    the_fix = f;
    if (getenv("FB_WEB_DEBUG"))
        fb_log_set_level_all(FB_LOG_DEBUG);
    ASSERT_OK(fb_test_redis_start(&f->srv));
    ASSERT_OK(uv_loop_init(&f->loop));
    snprintf(f->addr, sizeof(f->addr), "tcp://127.0.0.1:%d", f->srv.port);
    snprintf(f->prefix, sizeof(f->prefix), "fb:");
    f->cfg.redis.address = f->addr;
    f->cfg.redis.connect_timeout_ms = 1000;
    f->cfg.redis.command_timeout_ms = 1000;
    f->cfg.redis.write_deadline_ms = 400;
    f->cfg.redis.reconnect.delays_ms[0] = 50;
    f->cfg.redis.reconnect.n_delays = 1;
    f->cfg.store.key_prefix = f->prefix;
    f->cfg.store.session_ttl_days = 1;
    f->cfg.sections = (fb_conf_sections_t){{&fb_web_config}, {&f->web}, 1};
    f->web.enabled = true;
    f->web.max_message_bytes = max_bytes;
    f->web.messages_per_minute = per_minute;
    f->web.max_connections_per_address = per_address;
    f->web.new_conversations_per_minute = 1000;
    f->web.history_max = 50;
    char static_dir[] = FB_SOURCE_DIR "/adapters/web/static";
    f->web.static_dir = static_dir;
    f->web.dsfr_dir = static_dir;
    char host[] = "127.0.0.1";
    f->cfg.server = (fb_server_opts_t){.listen_host = host,
                                       .listen_port = fb_test_free_port(),
                                       .max_body_bytes = 1000,
                                       .max_header_bytes = 4096,
                                       .idle_timeout_s = 30,
                                       .keepalive_timeout_s = 5,
                                       .shutdown_deadline_s = 1};
    f->redis = fb_redis_create(&f->loop, &f->cfg.redis);
    ASSERT_NOT_NULL(f->redis);
    f->store = fb_store_create(f->redis, &f->cfg.store);
    ASSERT_NOT_NULL(f->store);
    f->http = fb_http_server_create(&f->loop, &f->cfg.server);
    ASSERT_NOT_NULL(f->http);
    f->core = (fb_core_t){.loop = &f->loop,
                          .cfg = &f->cfg,
                          .http = f->http,
                          .redis = f->redis,
                          .store = f->store,
                          .deliver = core_deliver,
                          .wake = core_wake,
                          .set_state = core_set_state,
                          .conv_key = fb_core_conv_key};
    ASSERT_OK(fb_adapter_check(&fb_adapter_web, NULL));
    f->a.ops = &fb_adapter_web;
    f->a.core = &f->core;
    f->a.priv = fb_calloc(1, fb_adapter_web.priv_size);
    ASSERT_OK(f->a.ops->init(&f->a));
    ASSERT_OK(f->a.ops->start(&f->a));
    ASSERT_STR_EQ(f->a.state, "ok");
    ASSERT_OK(fb_redis_start(f->redis));
    ASSERT_OK(fb_http_server_start(f->http));
    f->port = fb_http_server_port(f->http);
    uv_async_init(&f->loop, &f->done, on_done);
    f->done.data = f;
    f->scenario = scenario;

    uv_thread_t tid;
    ASSERT_OK(uv_thread_create(&tid, client_main, f));
    uv_run(&f->loop, UV_RUN_DEFAULT);
    uv_thread_join(&tid);
    ASSERT_EQ(f->stopped, 1);
    fb_store_destroy(f->store);
    fb_test_loop_close_strict(&f->loop);
    fb_test_redis_destroy(&f->srv);
}

/* ---- the client side (client thread) ----------------------------------------------------- */

static json_t *recv_json(fb_wsc_t *c)
{
    fb_wsc_frame_t fr;
    ASSERT_OK(fb_wsc_recv_text(c, &fr));
    json_error_t err;
    json_t *j = json_loadb(fr.data, fr.len, 0, &err);
    if (!j)
        FB_TEST_FAIL("not JSON: %s", fr.data);
    fb_wsc_frame_free(&fr);
    return j;
}

static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static json_int_t jint(const json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

/* Receives one frame and checks its type; returns it (new reference). */
static json_t *expect(fb_wsc_t *c, const char *type)
{
    json_t *j = recv_json(c);
    if (!jstr(j, "type") || strcmp(jstr(j, "type"), type) != 0) {
        char *s = json_dumps(j, 0);
        FB_TEST_FAIL("expected a %s frame, got %s", type, s ? s : "?");
    }
    return j;
}

static void expect_msg(fb_wsc_t *c, json_int_t seq, const char *from, const char *text)
{
    json_t *j = expect(c, "msg");
    ASSERT_EQ(jint(j, "seq"), seq);
    ASSERT_STR_EQ(jstr(j, "from"), from);
    ASSERT_STR_EQ(jstr(j, "text"), text);
    if (strcmp(from, "bot") == 0) {
        ASSERT_NOT_NULL(jstr(j, "html"));
        ASSERT(json_is_array(json_object_get(j, "choices")));
    }
    json_decref(j);
}

static void expect_error(fb_wsc_t *c, const char *code, const char *id)
{
    json_t *j = expect(c, "error");
    ASSERT_STR_EQ(jstr(j, "code"), code);
    ASSERT_NOT_NULL(jstr(j, "message"));
    if (id)
        ASSERT_STR_EQ(jstr(j, "id"), id);
    json_decref(j);
}

static void expect_ack(fb_wsc_t *c, const char *id)
{
    json_t *j = expect(c, "ack");
    ASSERT_STR_EQ(jstr(j, "id"), id);
    json_decref(j);
}

static void send_json(fb_wsc_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void send_json(fb_wsc_t *c, const char *fmt, ...)
{
    char buf[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    ASSERT_OK(fb_wsc_send_text(c, buf));
}

/* Connects and says hello; returns the welcome (new reference). */
static json_t *hello(struct afix *f, fb_wsc_t *c, const char *token, int since)
{
    ASSERT_EQ(fb_wsc_connect(c, f->port, "/ws", NULL), 101);
    if (token)
        send_json(c, "{\"type\":\"hello\",\"token\":\"%s\",\"since\":%d}", token, since);
    else
        send_json(c, "{\"type\":\"hello\",\"token\":null,\"since\":%d}", since);
    return expect(c, "welcome");
}

static void bye(fb_wsc_t *c)
{
    ASSERT_OK(fb_wsc_send_close(c, 1000, NULL));
    fb_wsc_close(c);
}

/* Runs COMMAND on the key fb:{c:web:TOKEN}:SUFFIX and returns its integer answer (-1 if none). */
static long long redis_int(struct afix *f, const char *command, const char *token,
                           const char *suffix)
{
    redisContext *rc = redisConnect("127.0.0.1", f->srv.port);
    ASSERT(rc && !rc->err);
    char *key = fb_asprintf("fb:{c:web:%s}:%s", token, suffix);
    redisReply *r = redisCommand(rc, "%s %s", command, key);
    fb_free(key);
    ASSERT_NOT_NULL(r);
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    redisFree(rc);
    return v;
}

/* Writes bot entry `seq` with `text` to the history of `token`, as a COMMIT does (the meta's seq
 * taken), without pushing it to anyone: a COMMIT whose answer was lost. */
static void store_lost_entry(struct afix *f, const char *token, int seq, const char *text)
{
    redisContext *rc = redisConnect("127.0.0.1", f->srv.port);
    ASSERT(rc && !rc->err);
    char *meta = fb_asprintf("fb:{c:web:%s}:web", token);
    char *hist = fb_asprintf("fb:{c:web:%s}:hist", token);
    char *entry = fb_asprintf("{\"seq\":%d,\"from\":\"bot\",\"text\":\"%s\",\"html\":\"<p>%s</p>\","
                              "\"choices\":[],\"ts\":1}",
                              seq, text, text);
    redisReply *r = redisCommand(rc, "HINCRBY %s seq 1", meta);
    ASSERT(r && r->type == REDIS_REPLY_INTEGER && r->integer == seq);
    freeReplyObject(r);
    r = redisCommand(rc, "RPUSH %s %s", hist, entry);
    ASSERT(r && r->type == REDIS_REPLY_INTEGER && r->integer == seq);
    freeReplyObject(r);
    fb_free(entry);
    fb_free(hist);
    fb_free(meta);
    redisFree(rc);
}

/* ---- scenarios -------------------------------------------------------------------------- */

static char saved_token[64];

static void scenario_conversation(struct afix *f)
{
    fb_wsc_t c, d;
    json_t *w = hello(f, &c, NULL, 0);
    ASSERT(json_is_true(json_object_get(w, "new")));
    const char *token = jstr(w, "token");
    ASSERT_EQ(strlen(token), 43);
    snprintf(saved_token, sizeof(saved_token), "%s", token);
    ASSERT_EQ(jint(json_object_get(w, "limits"), "max_message_bytes"), 100);
    ASSERT_EQ(jint(json_object_get(w, "limits"), "messages_per_minute"), 50);
    json_decref(w);
    expect_msg(&c, 1, "bot", "bonjour");

    /* A message: the user's entry (to every tab, this one included), the ack, the reply. */
    send_json(&c, "{\"type\":\"message\",\"id\":\"m1\",\"text\":\"salut à vous\"}");
    expect_msg(&c, 2, "user", "salut à vous");
    expect_ack(&c, "m1");
    expect_msg(&c, 3, "bot", "echo: salut à vous");

    /* A second tab on the same conversation sees the history, then live entries. */
    w = hello(f, &d, saved_token, 1);
    ASSERT(json_is_false(json_object_get(w, "new")));
    ASSERT_STR_EQ(jstr(w, "token"), saved_token);
    json_decref(w);
    expect_msg(&d, 2, "user", "salut à vous");
    expect_msg(&d, 3, "bot", "echo: salut à vous");
    send_json(&c, "{\"type\":\"choice\",\"id\":\"m2\",\"choice\":\"oui\",\"label\":\"Oui\"}");
    expect_msg(&c, 4, "user", "Oui");
    expect_ack(&c, "m2");
    expect_msg(&c, 5, "bot", "echo: Oui");
    expect_msg(&d, 4, "user", "Oui");
    expect_msg(&d, 5, "bot", "echo: Oui");

    /* An entry a COMMIT stored whose answer was lost (Redis restarted): never pushed. */
    store_lost_entry(f, saved_token, 6, "réponse perdue");
    /* The same message again (a resend): acknowledged, nothing new in the history even though
     * the stand-in router replies again with the same transaction id; the duplicate makes the
     * adapter read the history after what each tab has: the lost entry reaches both. */
    send_json(&c, "{\"type\":\"message\",\"id\":\"m1\",\"text\":\"salut à vous\"}");
    expect_ack(&c, "m1");
    expect_msg(&c, 6, "bot", "réponse perdue");
    expect_msg(&d, 6, "bot", "réponse perdue");
    send_json(&c, "{\"type\":\"ping\"}");
    json_decref(expect(&c, "pong"));
    send_json(&d, "{\"type\":\"ping\"}");
    json_decref(expect(&d, "pong"));
    ASSERT_EQ(redis_int(f, "LLEN", saved_token, "hist"), 6);
    bye(&d);

    /* The first delivery fails (Redis down for the router): unavailable, no ack; the resend
     * with the same id goes through once. */
    send_json(&c, "{\"type\":\"message\",\"id\":\"m3\",\"text\":\"fail une fois\"}");
    json_t *e = expect(&c, "error"); /* nothing stored: the history is written by the COMMIT */
    ASSERT_STR_EQ(jstr(e, "code"), "unavailable");
    ASSERT_STR_EQ(jstr(e, "id"), "m3");
    ASSERT_GE(jint(e, "retry_after"), 1);
    json_decref(e);
    send_json(&c, "{\"type\":\"message\",\"id\":\"m3\",\"text\":\"fail une fois\"}");
    expect_msg(&c, 7, "user", "fail une fois");
    expect_ack(&c, "m3");
    expect_msg(&c, 8, "bot", "echo: fail une fois");
    bye(&c);

    /* A reload with since=0 gets everything, in order. */
    w = hello(f, &c, saved_token, 0);
    json_decref(w);
    static const char *const want[] = {"bonjour",       "salut à vous",       "echo: salut à vous",
                                       "Oui",           "echo: Oui",          "réponse perdue",
                                       "fail une fois", "echo: fail une fois"};
    for (size_t i = 0; i < FB_ARRAY_SIZE(want); i++) {
        json_t *m = expect(&c, "msg");
        ASSERT_EQ(jint(m, "seq"), (json_int_t)i + 1);
        ASSERT_STR_EQ(jstr(m, "text"), want[i]);
        json_decref(m);
    }

    /* "oublie": the goodbye still reaches the page, then every web key is gone. */
    send_json(&c, "{\"type\":\"message\",\"id\":\"m4\",\"text\":\"oublie\"}");
    expect_ack(&c, "m4"); /* a forget stores nothing: no entry of the message */
    json_t *g = expect(&c, "msg");
    ASSERT_STR_EQ(jstr(g, "text"), "au revoir");
    json_decref(g);
    for (int i = 0; i < 100 && redis_int(f, "EXISTS", saved_token, "web") != 0; i++)
        usleep(20000);
    ASSERT_EQ(redis_int(f, "EXISTS", saved_token, "web"), 0);
    ASSERT_EQ(redis_int(f, "EXISTS", saved_token, "hist"), 0);
    ASSERT_EQ(redis_int(f, "EXISTS", saved_token, "hids"), 0);
    ASSERT_EQ(redis_int(f, "EXISTS", saved_token, "hkeys"), 0);
    /* A message on that socket: the conversation is gone, the socket is closed with 4000. */
    send_json(&c, "{\"type\":\"message\",\"id\":\"m5\",\"text\":\"encore\"}");
    fb_wsc_frame_t fr;
    ASSERT_OK(fb_wsc_recv(&c, &fr));
    ASSERT_EQ(fr.opcode, FB_WSC_CLOSE);
    ASSERT_EQ(fr.close_code, 4000);
    fb_wsc_frame_free(&fr);
    fb_wsc_close(&c);
    /* The old token starts a new conversation. */
    w = hello(f, &c, saved_token, 9);
    ASSERT(json_is_true(json_object_get(w, "new")));
    ASSERT(strcmp(jstr(w, "token"), saved_token) != 0);
    json_decref(w);
    expect_msg(&c, 1, "bot", "bonjour");
    bye(&c);
}

TEST_IMPL(web_adapter_conversation)
{
    struct afix f;
    run(&f, scenario_conversation, 100, 50, 5);
    /* Events as the router saw them. */
    ASSERT_EQ(f.events[0].kind, FB_IN_START);
    ASSERT_STR_EQ(f.events[0].event_id, "start");
    ASSERT_STR_EQ(f.events[0].conv, saved_token);
    ASSERT_EQ(f.events[1].kind, FB_IN_MESSAGE);
    ASSERT_STR_EQ(f.events[1].event_id, "u.m1");
    ASSERT_STR_EQ(f.events[1].text, "salut à vous");
    ASSERT_EQ(f.events[2].kind, FB_IN_CHOICE);
    ASSERT_STR_EQ(f.events[2].choice, "oui");
    ASSERT_STR_EQ(f.events[3].event_id, "u.m1"); /* the resend reaches the router's dedupe */
    ASSERT_EQ(f.send_failed, 0);
    ASSERT_EQ(f.send_ok, f.sends);
    return 0;
}

/* Connects and says hello, again and again while the address is over its connection limit
 * (the server learns asynchronously that an earlier connection closed). */
static void connect_when_allowed(struct afix *f, fb_wsc_t *c)
{
    for (int i = 0;; i++) {
        ASSERT_EQ(fb_wsc_connect(c, f->port, "/ws", NULL), 101);
        send_json(c, "{\"type\":\"hello\"}");
        json_t *j = recv_json(c);
        bool ok = strcmp(jstr(j, "type"), "welcome") == 0;
        json_decref(j);
        if (ok)
            return;
        fb_wsc_close(c);
        ASSERT_LT(i, 100);
        usleep(20000);
    }
}

static void scenario_limits(struct afix *f)
{
    fb_wsc_t c, x[3];
    /* Before hello, and broken frames. */
    ASSERT_EQ(fb_wsc_connect(&c, f->port, "/ws", NULL), 101);
    send_json(&c, "{\"type\":\"message\",\"id\":\"a\",\"text\":\"x\"}");
    expect_error(&c, "bad_request", "a");
    send_json(&c, "pas du json");
    expect_error(&c, "bad_request", NULL);
    ASSERT_OK(fb_wsc_send(&c, FB_WSC_BINARY, true, "\x01", 1));
    expect_error(&c, "bad_request", NULL);
    send_json(&c, "{\"type\":\"hello\",\"token\":\"court\",\"since\":0}");
    json_decref(expect(&c, "welcome"));
    expect_msg(&c, 1, "bot", "bonjour");
    send_json(&c, "{\"type\":\"hello\",\"token\":null}");
    expect_error(&c, "bad_request", NULL);
    send_json(&c, "{\"type\":\"danse\"}");
    expect_error(&c, "bad_request", NULL);
    send_json(&c, "{\"type\":\"message\",\"id\":\"a b\",\"text\":\"x\"}");
    expect_error(&c, "bad_request", NULL);
    send_json(&c, "{\"type\":\"message\",\"id\":\"e\",\"text\":\"\"}");
    expect_error(&c, "bad_request", "e");

    /* Too big: the text (101 bytes of UTF-8 for 51 characters), then a whole frame. */
    char big[8000];
    memset(big, 'z', sizeof(big));
    big[sizeof(big) - 1] = '\0';
    send_json(&c, "{\"type\":\"message\",\"id\":\"b\",\"text\":\"%s%.99s\"}", "é", big);
    expect_error(&c, "too_big", "b");
    send_json(&c, "{\"type\":\"message\",\"id\":\"b2\",\"text\":\"%s\"}", big);
    expect_error(&c, "too_big", NULL);

    /* Rate: 3 per minute. Three pass, the fourth waits ~20 s. */
    for (int i = 0; i < 3; i++) {
        send_json(&c, "{\"type\":\"message\",\"id\":\"r%d\",\"text\":\"m%d\"}", i, i);
        expect_msg(&c, 2 + 2 * i, "user", i == 0 ? "m0" : i == 1 ? "m1" : "m2");
        expect_ack(&c, i == 0 ? "r0" : i == 1 ? "r1" : "r2");
        json_decref(expect(&c, "msg"));
    }
    send_json(&c, "{\"type\":\"message\",\"id\":\"r9\",\"text\":\"m9\"}");
    json_t *e = expect(&c, "error");
    ASSERT_STR_EQ(jstr(e, "code"), "rate_limited");
    ASSERT_STR_EQ(jstr(e, "id"), "r9");
    ASSERT_GE(jint(e, "retry_after"), 15);
    ASSERT_LE(jint(e, "retry_after"), 20);
    json_decref(e);

    /* Connections per address: 3 in all; this one is the first. */
    ASSERT_EQ(fb_wsc_connect(&x[0], f->port, "/ws", NULL), 101);
    ASSERT_EQ(fb_wsc_connect(&x[1], f->port, "/ws", NULL), 101);
    ASSERT_EQ(fb_wsc_connect(&x[2], f->port, "/ws", NULL), 101);
    expect_error(&x[2], "too_many_connections", NULL);
    fb_wsc_frame_t fr;
    ASSERT_OK(fb_wsc_recv(&x[2], &fr));
    ASSERT_EQ(fr.opcode, FB_WSC_CLOSE);
    ASSERT_EQ(fr.close_code, 1008);
    fb_wsc_frame_free(&fr);
    fb_wsc_close(&x[2]);
    bye(&x[1]);
    /* Once one is gone, a new one is accepted (the server learns of the close asynchronously). */
    connect_when_allowed(f, &x[1]);
    expect_msg(&x[1], 1, "bot", "bonjour");
    bye(&x[1]);
    bye(&x[0]);
    /* The first connection still works. */
    send_json(&c, "{\"type\":\"ping\"}");
    json_decref(expect(&c, "pong"));
    /* Invalid UTF-8 in a text frame fails the connection (RFC 6455 section 8.1: close 1007);
     * the page reconnects. */
    fb_wsc_t u;
    connect_when_allowed(f, &u);
    expect_msg(&u, 1, "bot", "bonjour");
    static const char bad_utf8[] = "{\"type\":\"\xff\"}";
    ASSERT_OK(fb_wsc_send(&u, FB_WSC_TEXT, true, bad_utf8, sizeof(bad_utf8) - 1));
    ASSERT_OK(fb_wsc_recv(&u, &fr));
    ASSERT_EQ(fr.opcode, FB_WSC_CLOSE);
    ASSERT_EQ(fr.close_code, 1007);
    fb_wsc_frame_free(&fr);
    fb_wsc_close(&u);
    bye(&c);
}

TEST_IMPL(web_adapter_limits)
{
    struct afix f;
    run(&f, scenario_limits, 100, 3, 3);
    return 0;
}

static void scenario_redis_down(struct afix *f)
{
    fb_wsc_t c;
    json_t *w = hello(f, &c, NULL, 0);
    snprintf(saved_token, sizeof(saved_token), "%s", jstr(w, "token"));
    json_decref(w);
    expect_msg(&c, 1, "bot", "bonjour");
    fb_test_redis_stop(&f->srv);
    send_json(&c, "{\"type\":\"message\",\"id\":\"p1\",\"text\":\"pendant\"}");
    expect_error(&c, "unavailable", "p1");
    ASSERT_OK(fb_test_redis_restart(&f->srv));
    /* The data is gone with that Redis (no persistence here): the message finds no
     * conversation, the socket is closed and the page starts anew. */
    for (int i = 0; i < 100; i++) {
        send_json(&c, "{\"type\":\"message\",\"id\":\"p1\",\"text\":\"pendant\"}");
        json_t *j = NULL;
        fb_wsc_frame_t fr;
        ASSERT_OK(fb_wsc_recv(&c, &fr));
        if (fr.opcode == FB_WSC_CLOSE) {
            ASSERT_EQ(fr.close_code, 4000);
            fb_wsc_frame_free(&fr);
            break;
        }
        j = json_loadb(fr.data, fr.len, 0, NULL);
        fb_wsc_frame_free(&fr);
        ASSERT_STR_EQ(jstr(j, "code"), "unavailable");
        json_decref(j);
        usleep(50000);
    }
    fb_wsc_close(&c);
    w = hello(f, &c, saved_token, 1);
    ASSERT(json_is_true(json_object_get(w, "new")));
    json_decref(w);
    expect_msg(&c, 1, "bot", "bonjour");
    bye(&c);
}

TEST_IMPL(web_adapter_redis_down)
{
    struct afix f;
    run(&f, scenario_redis_down, 100, 50, 5);
    return 0;
}
