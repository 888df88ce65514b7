/* SPDX-License-Identifier: MIT */
/*
 * echo.c - the echo adapter: a platform that lives in memory, for the tests and as the worked
 * example of docs/internals/ADAPTERS.md. Users are played by the test (fb_echo_say), and what the
 * daemon sends is kept in order (fb_echo_sent). Everything an adapter must do is here and nothing
 * else: an ops table, deliver() for inbound events, send() that reports later (never inside the
 * call) through a timer, and stop(done) that waits until no send is in flight.
 *
 * One test process runs one test (the unit runner forks), so the state is global.
 */
#include "echo.h"

#include <stdio.h>
#include <string.h>

#include <uv.h>

#include "frichebot/alloc.h"
#include "frichebot/err.h"
#include "frichebot/log.h"

#define ECHO_MAX_SENT  256
#define ECHO_MAX_QUEUE 64

/* A send accepted, reported by the timer: the async contract (include/frichebot/err.h). */
struct echo_pending {
    fb_send_cb cb;
    void *arg;
};

static struct {
    bool enabled;
    fb_adapter_t *a;  /* the instance the router made, between init and destroy */
    uv_timer_t timer; /* reports the accepted sends, on the next loop turn */
    bool timer_init;
    struct echo_pending q[ECHO_MAX_QUEUE];
    int nq;
    void (*stop_done)(fb_adapter_t *a); /* stop() waiting for the queue to drain */
    char *sent[ECHO_MAX_SENT];
    char *sent_conv[ECHO_MAX_SENT];
    int nsent;
    int delivered;
    int last_status;
} echo;

int fb_echo_log_sub = FB_SUB_CORE;
/* (ECHO itself is a termios macro, so the token is ECHO_ADAPTER) */
#define FB_SUB_ECHO_ADAPTER ((fb_log_sub_t)fb_echo_log_sub)

void fb_echo_enable(bool on)
{
    echo.enabled = on;
}

static void echo_on_delivered(int status, void *arg)
{
    (void)arg;
    echo.delivered++;
    echo.last_status = status;
}

int fb_echo_say(const char *conv, const char *event_id, const char *text)
{
    if (!echo.a)
        return FB_EINVAL;
    fb_inbound_t ev = {
        .kind = text ? FB_IN_MESSAGE : FB_IN_START,
        .conv = conv,
        .sender = "echo-user",
        .event_id = event_id,
        .text = text,
    };
    return echo.a->core->deliver(echo.a, &ev, echo_on_delivered, NULL);
}

int *fb_echo_delivered(void)
{
    return &echo.delivered;
}

int fb_echo_last_status(void)
{
    return echo.last_status;
}

int *fb_echo_nsent(void)
{
    return &echo.nsent;
}

const char *fb_echo_sent(int i)
{
    return i >= 0 && i < echo.nsent ? echo.sent[i] : NULL;
}

const char *fb_echo_sent_conv(int i)
{
    return i >= 0 && i < echo.nsent ? echo.sent_conv[i] : NULL;
}

int fb_echo_inflight(void)
{
    return echo.nq;
}

/* Calls stop's done once nothing is in flight and the timer is closed. */
static void echo_on_timer_closed(uv_handle_t *h)
{
    (void)h;
    echo.timer_init = false;
    void (*done)(fb_adapter_t * a) = echo.stop_done;
    echo.stop_done = NULL;
    if (done)
        done(echo.a);
}

static void echo_maybe_stopped(void)
{
    if (echo.stop_done && echo.nq == 0 && echo.timer_init &&
        !uv_is_closing((uv_handle_t *)&echo.timer))
        uv_close((uv_handle_t *)&echo.timer, echo_on_timer_closed);
}

/* The platform "accepts" every queued send: each callback runs once, outside send(). */
static void echo_on_timer(uv_timer_t *t)
{
    (void)t;
    while (echo.nq > 0) {
        struct echo_pending p = echo.q[0];
        memmove(echo.q, echo.q + 1, (size_t)(echo.nq - 1) * sizeof(echo.q[0]));
        echo.nq--;
        p.cb(0, 0, p.arg);
    }
    echo_maybe_stopped();
}

static int echo_init(fb_adapter_t *a)
{
    if (!echo.enabled)
        return FB_DECLINED;
    echo.a = a;
    return 0;
}

static int echo_start(fb_adapter_t *a)
{
    uv_timer_init(a->core->loop, &echo.timer);
    echo.timer_init = true;
    a->core->set_state(a, "ok");
    FB_INFO(ECHO_ADAPTER, "echo adapter started");
    return 0;
}

static void echo_stop(fb_adapter_t *a, void (*done)(fb_adapter_t *a))
{
    (void)a;
    echo.stop_done = done;
    if (!echo.timer_init) { /* never started */
        echo.stop_done = NULL;
        done(a);
        return;
    }
    echo_maybe_stopped(); /* else when the queue drains (echo_on_timer) */
}

static void echo_destroy(fb_adapter_t *a)
{
    (void)a;
    echo.a = NULL;
}

/* Keeps the message, then reports it accepted on the next loop turn; FB_EAGAIN when the queue
 * is full (back-pressure: the outbox retries later). */
static int echo_send(fb_adapter_t *a, const fb_outbound_t *msg, fb_send_cb cb, void *arg)
{
    (void)a;
    if (!msg || !msg->text || !cb)
        return FB_EINVAL;
    if (echo.stop_done)
        return FB_ECANCELED;
    if (echo.nq == ECHO_MAX_QUEUE || echo.nsent == ECHO_MAX_SENT)
        return FB_EAGAIN;
    echo.sent[echo.nsent] = fb_strdup(msg->text);
    echo.sent_conv[echo.nsent] = fb_strdup(msg->conv);
    echo.nsent++;
    echo.q[echo.nq++] = (struct echo_pending){cb, arg};
    uv_timer_start(&echo.timer, echo_on_timer, 0, 0);
    return 0;
}

static int echo_stats(fb_adapter_t *a, json_t *out)
{
    (void)a;
    json_object_set_new(out, "sent", json_integer(echo.nsent));
    return 0;
}

const fb_adapter_ops_t fb_adapter_echo = {
    .api_version = FB_ADAPTER_API_VERSION,
    .name = "echo",
    .priv_size = 0,
    .caps = 0,
    .init = echo_init,
    .start = echo_start,
    .stop = echo_stop,
    .destroy = echo_destroy,
    .send = echo_send,
    .stats = echo_stats,
    .log_sub = &fb_echo_log_sub,
};
