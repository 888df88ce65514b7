/* SPDX-License-Identifier: MIT */
/*
 * metrics.c - counters and the Redis round-trip histogram behind GET /metrics.
 *
 * Labelled counters are kept in small fixed tables keyed by (name, number): the label values are
 * fixed route and outcome names chosen by the code, never user input, so the tables stay small.
 */
#include "io/metrics.h"

#include <string.h>

#include <uv.h>

#include "frichebot/alloc.h"
#include "frichebot/clock.h"
#include "frichebot/err.h"

#define MAX_SERIES 64

struct series {
    const char *label; /* static string owned by the caller's code */
    int code;          /* HTTP status, or 0 */
    uint64_t value;
};

struct counter {
    struct series s[MAX_SERIES];
    int n;
    uint64_t overflow; /* increments that found no free slot */
};

static const double rtt_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                    0.05,   0.1,   0.25,   0.5,   1.0,  2.5};

static struct {
    uint64_t start_ms;
    struct counter http_requests;
    struct counter events;
    struct counter client;
    struct counter refused;     /* incoming connections refused, by reason */
    struct counter ws_open;     /* a gauge: values go up and down, stored as uint64_t */
    struct counter ws_messages; /* code: FB_METRICS_WS_IN, _OUT, _REFUSED */
    uint64_t rtt_buckets[FB_ARRAY_SIZE(rtt_bounds)];
    uint64_t rtt_count;
    double rtt_sum;
} m;

void fb_metrics_init(void)
{
    if (!m.start_ms)
        m.start_ms = fb_mono_ns() / 1000000;
}

void fb_metrics_reset(void)
{
    memset(&m, 0, sizeof(m));
    fb_metrics_init();
}

static void counter_inc(struct counter *c, const char *label, int code)
{
    for (int i = 0; i < c->n; i++)
        if (c->s[i].code == code && strcmp(c->s[i].label, label) == 0) {
            c->s[i].value++;
            return;
        }
    if (c->n == MAX_SERIES) {
        c->overflow++;
        return;
    }
    c->s[c->n].label = label;
    c->s[c->n].code = code;
    c->s[c->n].value = 1;
    c->n++;
}

void fb_metrics_http_request(const char *route, int status)
{
    counter_inc(&m.http_requests, route, status);
}

void fb_metrics_event(const char *kind)
{
    counter_inc(&m.events, kind, 0);
}

void fb_metrics_http_client(const char *outcome)
{
    counter_inc(&m.client, outcome, 0);
}

void fb_metrics_http_refused(const char *reason)
{
    counter_inc(&m.refused, reason, 0);
}

void fb_metrics_ws_connections(const char *endpoint, int delta)
{
    struct counter *c = &m.ws_open;
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->s[i].label, endpoint) == 0) {
            if (delta >= 0 || c->s[i].value > 0)
                c->s[i].value += (uint64_t)(int64_t)delta;
            return;
        }
    if (delta > 0)
        counter_inc(c, endpoint, 0);
}

void fb_metrics_ws_message(const char *endpoint, int direction)
{
    counter_inc(&m.ws_messages, endpoint, direction);
}

void fb_metrics_redis_rtt(double seconds)
{
    for (size_t i = 0; i < FB_ARRAY_SIZE(rtt_bounds); i++)
        if (seconds <= rtt_bounds[i])
            m.rtt_buckets[i]++;
    m.rtt_count++;
    m.rtt_sum += seconds;
}

int fb_metrics_render(fb_buf_t *out)
{
    int rc = 0;
    uint64_t now_ms = fb_mono_ns() / 1000000;
    rc |= fb_buf_printf(out,
                        "# HELP frichebot_uptime_seconds Seconds since the daemon started.\n"
                        "# TYPE frichebot_uptime_seconds gauge\n"
                        "frichebot_uptime_seconds %.3f\n",
                        (double)(now_ms - m.start_ms) / 1000.0);

    rc |= fb_buf_puts(out, "# HELP frichebot_http_requests_total HTTP requests answered, by route "
                           "and status.\n# TYPE frichebot_http_requests_total counter\n");
    for (int i = 0; i < m.http_requests.n && !rc; i++)
        rc |= fb_buf_printf(out, "frichebot_http_requests_total{route=\"%s\",status=\"%d\"} %lu\n",
                            m.http_requests.s[i].label, m.http_requests.s[i].code,
                            (unsigned long)m.http_requests.s[i].value);

    rc |= fb_buf_puts(out, "# HELP frichebot_events_processed_total Inbound events processed, by "
                           "kind.\n# TYPE frichebot_events_processed_total counter\n");
    for (int i = 0; i < m.events.n && !rc; i++)
        rc |= fb_buf_printf(out, "frichebot_events_processed_total{kind=\"%s\"} %lu\n",
                            m.events.s[i].label, (unsigned long)m.events.s[i].value);

    rc |= fb_buf_puts(out, "# HELP frichebot_http_client_requests_total Outgoing HTTP requests "
                           "finished, by outcome.\n# TYPE frichebot_http_client_requests_total "
                           "counter\n");
    for (int i = 0; i < m.client.n && !rc; i++)
        rc |= fb_buf_printf(out, "frichebot_http_client_requests_total{outcome=\"%s\"} %lu\n",
                            m.client.s[i].label, (unsigned long)m.client.s[i].value);

    rc |= fb_buf_puts(out, "# HELP frichebot_http_connections_refused_total Incoming connections "
                           "closed before any request was read, by reason (per_address, "
                           "descriptors, adopt).\n"
                           "# TYPE frichebot_http_connections_refused_total counter\n");
    for (int i = 0; i < m.refused.n && !rc; i++)
        rc |= fb_buf_printf(out, "frichebot_http_connections_refused_total{reason=\"%s\"} %lu\n",
                            m.refused.s[i].label, (unsigned long)m.refused.s[i].value);

    rc |= fb_buf_puts(out, "# HELP frichebot_websocket_connections Open websocket connections, by "
                           "endpoint.\n# TYPE frichebot_websocket_connections gauge\n");
    for (int i = 0; i < m.ws_open.n && !rc; i++)
        rc |= fb_buf_printf(out, "frichebot_websocket_connections{endpoint=\"%s\"} %lu\n",
                            m.ws_open.s[i].label, (unsigned long)m.ws_open.s[i].value);

    static const char *const ws_dirs[] = {"in", "out", "refused"};
    rc |= fb_buf_puts(out, "# HELP frichebot_websocket_messages_total Websocket messages, by "
                           "endpoint and direction (in, out, refused).\n"
                           "# TYPE frichebot_websocket_messages_total counter\n");
    for (int i = 0; i < m.ws_messages.n && !rc; i++) {
        int d = m.ws_messages.s[i].code;
        rc |= fb_buf_printf(out,
                            "frichebot_websocket_messages_total{endpoint=\"%s\",direction=\"%s\"} "
                            "%lu\n",
                            m.ws_messages.s[i].label,
                            (d >= 0 && d < (int)FB_ARRAY_SIZE(ws_dirs)) ? ws_dirs[d] : "other",
                            (unsigned long)m.ws_messages.s[i].value);
    }

    rc |= fb_buf_puts(out, "# HELP frichebot_redis_rtt_seconds Redis command round-trip time.\n"
                           "# TYPE frichebot_redis_rtt_seconds histogram\n");
    for (size_t i = 0; i < FB_ARRAY_SIZE(rtt_bounds) && !rc; i++)
        rc |= fb_buf_printf(out, "frichebot_redis_rtt_seconds_bucket{le=\"%g\"} %lu\n",
                            rtt_bounds[i], (unsigned long)m.rtt_buckets[i]);
    rc |= fb_buf_printf(out,
                        "frichebot_redis_rtt_seconds_bucket{le=\"+Inf\"} %lu\n"
                        "frichebot_redis_rtt_seconds_sum %.6f\n"
                        "frichebot_redis_rtt_seconds_count %lu\n",
                        (unsigned long)m.rtt_count, m.rtt_sum, (unsigned long)m.rtt_count);
    return rc ? FB_ETOOBIG : 0;
}
