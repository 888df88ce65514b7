/* SPDX-License-Identifier: MIT */
/*
 * bench_pipeline.c - messages per second through the whole pipeline of a running daemon: the web
 * chat websocket, the adapter, the router (load, engine step, atomic commit in Redis), the outbox
 * and back to the browser's socket. Driven by bench/run.sh (`make bench`).
 *
 * Each of C threads opens one conversation (hello, waits for the greeting) and then, in a loop,
 * sends a message and waits for the bot's reply. One message = one round trip through everything.
 *
 *   bench_pipeline -p PORT -c C -d SECONDS               closed loop: the maximum rate
 *   bench_pipeline -p PORT -c C -d SECONDS -r RATE       open loop at RATE messages/s overall
 *
 * In open loop every thread sends on a fixed schedule (RATE/C per second each) and a reply's
 * latency is measured from the message's scheduled time, not from when it could be sent, so a
 * stall counts fully (no coordinated omission). Prints key=value lines: messages, seconds,
 * messages_per_s, p50_ms, p99_ms, max_ms.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "ws_client.h"

#define MAX_THREADS   1000
#define MAX_LATENCIES 2000000

/* The message sent: a global command the dialog answers in any state without moving on, so every
 * round trip does the same work (the help text is one of the longer replies of the sample). */
static const char *bench_text = "aide";

struct shared {
    int port;
    double seconds;
    double rate; /* 0: closed loop */
    int nthreads;
    pthread_mutex_t lock;
    double *lat_ms;
    size_t nlat;
    uint64_t messages;
    int failed;
};

struct worker {
    struct shared *sh;
    int index;
    pthread_t thread;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_until(double t)
{
    double d = t - now_s();
    if (d <= 0)
        return;
    struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/*
 * Reads frames until a bot message with a seq above *seq arrives, after the echo of the user's
 * message `id` when one is given; updates *seq. Acks, echoes and pongs are skipped. A message may
 * have several replies ("aide" has two: the help and the question again): without waiting for its
 * own echo, every reply of the previous message would start one more message, and the loop would
 * send ever more messages per reply, filling the router's queue (which a faster outbox made
 * happen). Returns 0, or -1 on a closed socket, an error frame or a timeout.
 */
static int wait_bot_reply(fb_wsc_t *c, json_int_t *seq, const char *id)
{
    bool echoed = id == NULL;
    for (;;) {
        fb_wsc_frame_t f;
        if (fb_wsc_recv_text(c, &f) != 0)
            return -1;
        json_t *j = json_loadb(f.data, f.len, 0, NULL);
        fb_wsc_frame_free(&f);
        if (!j)
            return -1;
        const char *type = json_string_value(json_object_get(j, "type"));
        const char *from = json_string_value(json_object_get(j, "from"));
        const char *mid = json_string_value(json_object_get(j, "id"));
        json_int_t s = json_integer_value(json_object_get(j, "seq"));
        int rc = 1;
        if (type && strcmp(type, "error") == 0) {
            const char *code = json_string_value(json_object_get(j, "code"));
            fprintf(stderr, "bench_pipeline: server error %s\n", code ? code : "?");
            rc = -1;
        } else if (type && strcmp(type, "msg") == 0 && s > *seq) {
            *seq = s;
            if (from && strcmp(from, "user") == 0 && id && mid && strcmp(mid, id) == 0)
                echoed = true;
            else if (echoed && from && strcmp(from, "bot") == 0)
                rc = 0;
        }
        json_decref(j);
        if (rc <= 0)
            return rc;
    }
}

static int send_json(fb_wsc_t *c, json_t *j)
{
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!text)
        return -1;
    int rc = fb_wsc_send_text(c, text);
    free(text);
    return rc;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct shared *sh = w->sh;
    fb_wsc_t c;
    json_int_t seq = 0;
    double *lat = NULL;
    size_t nlat = 0;
    size_t caplat = 0;
    uint64_t sent = 0;
    int failed = 0;

    if (fb_wsc_connect(&c, sh->port, "/ws", NULL) != 101) {
        fprintf(stderr, "bench_pipeline: websocket upgrade failed (status %d)\n", c.status);
        fb_wsc_close(&c);
        failed = 1;
        goto out;
    }
    if (send_json(&c, json_pack("{s:s, s:n, s:i}", "type", "hello", "token", "since", 0)) != 0 ||
        wait_bot_reply(&c, &seq, NULL) != 0) {
        fprintf(stderr, "bench_pipeline: no greeting\n");
        failed = 1;
        goto close;
    }

    double start = now_s();
    double end = start + sh->seconds;
    double interval = sh->rate > 0 ? (double)sh->nthreads / sh->rate : 0;
    /* Threads start their schedules spread over one interval. */
    double next = start + interval * (double)w->index / (double)sh->nthreads;
    for (;;) {
        double t0;
        if (interval > 0) {
            if (next >= end)
                break;
            sleep_until(next);
            t0 = next;
            next += interval;
        } else {
            t0 = now_s();
            if (t0 >= end)
                break;
        }
        char id[48];
        snprintf(id, sizeof id, "b%d-%" PRIu64, w->index, sent);
        if (send_json(&c, json_pack("{s:s, s:s, s:s}", "type", "message", "id", id, "text",
                                    bench_text)) != 0 ||
            wait_bot_reply(&c, &seq, id) != 0) {
            failed = 1;
            break;
        }
        sent++;
        if (nlat == caplat) {
            caplat = caplat ? caplat * 2 : 1024;
            double *n = realloc(lat, caplat * sizeof *lat);
            if (!n) {
                failed = 1;
                break;
            }
            lat = n;
        }
        lat[nlat++] = (now_s() - t0) * 1000.0;
    }
close:
    fb_wsc_close(&c);
out:
    pthread_mutex_lock(&sh->lock);
    sh->messages += sent;
    sh->failed |= failed;
    for (size_t i = 0; i < nlat && sh->nlat < MAX_LATENCIES; i++)
        sh->lat_ms[sh->nlat++] = lat[i];
    pthread_mutex_unlock(&sh->lock);
    free(lat);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(const double *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i];
}

/* Parses a whole decimal integer in [lo, hi]; -1 otherwise. */
static long parse_long(const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    return v;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_pipeline -p PORT [-c CONNECTIONS] [-d SECONDS] [-r RATE]\n"
               "  -p PORT         the daemon's HTTP port (the web chat websocket is /ws)\n"
               "  -c CONNECTIONS  conversations in parallel, one thread each (default 50)\n"
               "  -d SECONDS      how long to send (default 10)\n"
               "  -r RATE         open loop at RATE messages/s overall (default: closed loop)\n");
}

int main(int argc, char **argv)
{
    struct shared sh = {.nthreads = 50, .seconds = 10};
    int opt;
    while ((opt = getopt(argc, argv, "p:c:d:r:h")) != -1) {
        switch (opt) {
        case 'p':
            sh.port = (int)parse_long(optarg, 1, 65535);
            break;
        case 'c':
            sh.nthreads = (int)parse_long(optarg, 1, MAX_THREADS);
            break;
        case 'd':
            sh.seconds = atof(optarg);
            break;
        case 'r':
            sh.rate = atof(optarg);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (sh.port <= 0 || sh.port > 65535 || sh.nthreads < 1 || sh.nthreads > MAX_THREADS ||
        sh.seconds <= 0 || sh.rate < 0) {
        usage(stderr);
        return 2;
    }
    sh.lat_ms = malloc(MAX_LATENCIES * sizeof *sh.lat_ms);
    struct worker *w = calloc((size_t)sh.nthreads, sizeof *w);
    if (!sh.lat_ms || !w) {
        fprintf(stderr, "bench_pipeline: out of memory\n");
        return 1;
    }
    pthread_mutex_init(&sh.lock, NULL);
    double t0 = now_s();
    int started = 0;
    for (int i = 0; i < sh.nthreads; i++) {
        w[i].sh = &sh;
        w[i].index = i;
        if (pthread_create(&w[i].thread, NULL, worker_main, &w[i]) != 0)
            break;
        started++;
    }
    for (int i = 0; i < started; i++)
        pthread_join(w[i].thread, NULL);
    double elapsed = now_s() - t0;
    if (started < sh.nthreads || sh.failed || sh.messages == 0) {
        fprintf(stderr, "bench_pipeline: failed (%d/%d threads, %" PRIu64 " messages)\n", started,
                sh.nthreads, sh.messages);
        return 1;
    }
    qsort(sh.lat_ms, sh.nlat, sizeof *sh.lat_ms, cmp_double);
    /* The rate counts the sending window only: connection set-up and greetings come before it. */
    double window = sh.seconds < elapsed ? sh.seconds : elapsed;
    printf("messages=%" PRIu64 "\n", sh.messages);
    printf("seconds=%.2f\n", window);
    printf("messages_per_s=%.0f\n", (double)sh.messages / window);
    printf("p50_ms=%.2f\n", percentile(sh.lat_ms, sh.nlat, 0.50));
    printf("p99_ms=%.2f\n", percentile(sh.lat_ms, sh.nlat, 0.99));
    printf("max_ms=%.2f\n", sh.nlat ? sh.lat_ms[sh.nlat - 1] : 0.0);
    pthread_mutex_destroy(&sh.lock);
    free(sh.lat_ms);
    free(w);
    return 0;
}
