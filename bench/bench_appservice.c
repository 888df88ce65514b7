/* SPDX-License-Identifier: MIT */
/*
 * bench_appservice.c - events per second through the Matrix application-service webhook of a
 * running daemon: the transaction PUT (hs_token check, txn id in Redis), the adapter's parser,
 * the router (load, engine step, atomic commit in Redis), the outbox, and the reply PUT to the
 * "homeserver", which is a loopback HTTP sink inside this binary (the daemon's own HTTP server
 * code on a second libuv loop, in a thread). Driven by bench/run.sh (`make bench`).
 *
 * Each of C threads owns one room: it sends the bot's join (the greeting), then in a loop one
 * transaction holding one m.room.message "aide" and waits until the sink has received the first
 * reply to it (replies are recognised by their transaction id, "<hash of the event>.<index>":
 * a new hash with index 0 is the first reply of the next event). One event = one round trip.
 *
 *   bench_appservice -p DAEMON_PORT -s SINK_PORT -t REGISTRATION -u BOT -c C -d SECONDS [-r RATE]
 *
 * Closed loop without -r (the maximum rate); with -r, open loop at RATE events/s overall, the
 * latency measured from each event's scheduled time (no coordinated omission). Prints key=value
 * lines: events, seconds, events_per_s, p50_ms, p99_ms, max_ms, sink_requests.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "../adapters/matrix/mx_util.h"
#include "frichebot/alloc.h"
#include "frichebot/log.h"
#include "io/http_server.h"

#define MAX_THREADS   1000
#define MAX_LATENCIES 2000000

struct room {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t groups;    /* first replies seen (a new event hash with index 0) */
    char last_hash[40]; /* hash part of the last first reply */
    double last_at;     /* when it arrived */
};

struct shared {
    int port, sink_port;
    double seconds, rate;
    int nthreads;
    const char *bot;
    char *hs_token;
    unsigned long nonce;
    struct room rooms[MAX_THREADS];
    pthread_mutex_t lock;
    double *lat_ms;
    size_t nlat;
    uint64_t events;
    int failed;
    uint64_t sink_requests;
    uv_loop_t loop;
    uv_async_t stop;
    fb_http_server_t *sink;
};

static struct shared sh;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the sink: the homeserver's client API, answering everything ---- */

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int on_sink(fb_http_req_t *req, void *arg)
{
    (void)arg;
    const char *path = fb_http_req_path(req);
    __atomic_add_fetch(&sh.sink_requests, 1, __ATOMIC_RELAXED);
    /* /_matrix/client/v3/rooms/!bNONCEx<i>:bench/send/m.room.message/<hash>.<index> */
    const char *r = strstr(path, "/rooms/!b");
    const char *send = strstr(path, "/send/m.room.message/");
    if (r && send) {
        const char *x = strchr(r, 'x');
        int idx = x ? (int)strtol(x + 1, NULL, 10) : -1;
        const char *txn = send + strlen("/send/m.room.message/");
        const char *dot = strrchr(txn, '.');
        if (idx >= 0 && idx < sh.nthreads && dot && strcmp(dot, ".0") == 0 &&
            (size_t)(dot - txn) < sizeof(sh.rooms[0].last_hash)) {
            struct room *rm = &sh.rooms[idx];
            pthread_mutex_lock(&rm->lock);
            if (strncmp(rm->last_hash, txn, (size_t)(dot - txn)) != 0 ||
                rm->last_hash[dot - txn] != '\0') {
                memcpy(rm->last_hash, txn, (size_t)(dot - txn));
                rm->last_hash[dot - txn] = '\0';
                rm->groups++;
                rm->last_at = now_s();
                pthread_cond_broadcast(&rm->cond);
            }
            pthread_mutex_unlock(&rm->lock);
        }
        static const char ok[] = "{\"event_id\":\"$sink\"}";
        fb_http_respond(req, 200, "application/json", ok, sizeof(ok) - 1, NULL);
        return 0;
    }
    /* The room's create event and power levels, as a homeserver answers them: a client library
     * that checks its power level before sending (mautrix-python's intent, the bench's Python
     * peer) fetches them once per room. */
    const char *st = strstr(path, "/state/m.room.");
    size_t blen = 0;
    (void)fb_http_req_body(req, &blen);
    if (strstr(path, "/rooms/") && st && blen == 0) { /* a GET: no body */
        const char *rid = strstr(path, "/rooms/") + strlen("/rooms/");
        char room[128];
        size_t n = 0;
        for (const char *p = rid; p < st && n + 1 < sizeof(room); p++) {
            int hi = -1, lo = -1;
            if (*p == '%' && p + 2 < st && (hi = hex_digit(p[1])) >= 0 &&
                (lo = hex_digit(p[2])) >= 0) {
                room[n++] = (char)(hi * 16 + lo);
                p += 2;
            } else {
                room[n++] = *p;
            }
        }
        room[n] = '\0';
        char *body = NULL;
        if (strncmp(st, "/state/m.room.create", 20) == 0)
            body = fb_asprintf("{\"type\":\"m.room.create\",\"room_id\":\"%s\",\"sender\":"
                               "\"@user:bench\",\"origin_server_ts\":1,\"state_key\":\"\","
                               "\"event_id\":\"$create\",\"content\":{\"room_version\":\"10\","
                               "\"creator\":\"@user:bench\"}}",
                               room);
        else if (strncmp(st, "/state/m.room.power_levels", 26) == 0)
            body = fb_asprintf("{\"users\":{\"@user:bench\":100,\"%s\":100},\"users_default\":0,"
                               "\"events_default\":0,\"state_default\":50}",
                               sh.bot);
        if (body) {
            fb_http_respond(req, 200, "application/json", body, strlen(body), NULL);
            fb_free(body);
            return 0;
        }
    }
    fb_http_respond(req, 200, "application/json", "{}", 2, NULL);
    return 0;
}

static void on_stop(uv_async_t *a)
{
    (void)a;
    fb_http_server_destroy(sh.sink);
    uv_close((uv_handle_t *)&sh.stop, NULL);
}

static void *sink_thread(void *arg)
{
    (void)arg;
    uv_run(&sh.loop, UV_RUN_DEFAULT);
    return NULL;
}

/* ---- a keep-alive HTTP/1.1 client with blocking sockets ---- */

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

/* Case-insensitive strstr (strcasestr is a GNU extension). */
static const char *find_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return hay;
    return NULL;
}

/* PUTs one transaction; returns the HTTP status, or -1 (the connection is then closed). */
static int put_txn(int *fd, const char *txn, const char *body)
{
    if (*fd < 0 && (*fd = connect_to(sh.port)) < 0)
        return -1;
    size_t blen = strlen(body);
    char *req = fb_asprintf("PUT /_matrix/app/v1/transactions/%s HTTP/1.1\r\nHost: bench\r\n"
                            "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                            "Content-Length: %zu\r\n\r\n%s",
                            txn, sh.hs_token, blen, body);
    size_t len = strlen(req), off = 0;
    while (off < len) {
        ssize_t w = write(*fd, req + off, len - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    fb_free(req);
    char buf[4096];
    size_t got = 0;
    char *end = NULL;
    while (!end && got + 1 < sizeof(buf)) {
        ssize_t n = read(*fd, buf + got, sizeof(buf) - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
        buf[got] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    int status = -1;
    if (end && strncmp(buf, "HTTP/1.1 ", 9) == 0) {
        status = (int)strtol(buf + 9, NULL, 10);
        const char *cl = find_ci(buf, "content-length:");
        size_t want = cl ? (size_t)strtoul(cl + 15, NULL, 10) : 0;
        size_t have = got - (size_t)(end + 4 - buf);
        while (have < want) {
            ssize_t n = read(*fd, buf, sizeof(buf));
            if (n <= 0) {
                status = -1;
                break;
            }
            have += (size_t)n;
        }
        if (find_ci(buf, "connection: close")) {
            close(*fd);
            *fd = -1;
        }
    }
    if (status < 0 && *fd >= 0) {
        close(*fd);
        *fd = -1;
    }
    return status;
}

/* ---- the workers ---- */

static int wait_group(struct room *rm, uint64_t want, double *at)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 30;
    pthread_mutex_lock(&rm->lock);
    int rc = 0;
    while (rm->groups < want && rc == 0)
        rc = pthread_cond_timedwait(&rm->cond, &rm->lock, &dl);
    *at = rm->last_at;
    pthread_mutex_unlock(&rm->lock);
    return rm->groups >= want ? 0 : -1;
}

static void *worker(void *arg)
{
    int i = (int)(intptr_t)arg;
    struct room *rm = &sh.rooms[i];
    int fd = -1;
    char room[64], txn[96], *body;
    snprintf(room, sizeof(room), "!b%lux%d:bench", sh.nonce, i);
    /* The bot's join: the greeting. */
    body = fb_asprintf("{\"events\":[{\"type\":\"m.room.member\",\"room_id\":\"%s\",\"state_key\":"
                       "\"%s\",\"sender\":\"%s\",\"event_id\":\"$j%lux%d\",\"origin_server_ts\":1,"
                       "\"content\":{"
                       "\"membership\":\"join\"}}]}",
                       room, sh.bot, sh.bot, sh.nonce, i);
    snprintf(txn, sizeof(txn), "j%lux%d", sh.nonce, i);
    int st = put_txn(&fd, txn, body);
    fb_free(body);
    double at;
    if (st != 200 || wait_group(rm, 1, &at) != 0) {
        fprintf(stderr, "bench_appservice: no greeting in room %d (HTTP %d)\n", i, st);
        __atomic_store_n(&sh.failed, 1, __ATOMIC_RELAXED);
        return NULL;
    }
    double start = now_s(), end = start + sh.seconds;
    double period = sh.rate > 0 ? sh.nthreads / sh.rate : 0;
    double next = start + (period > 0 ? period * i / sh.nthreads : 0);
    uint64_t k = 0, want = 1;
    double *lat = fb_malloc(sizeof(double) * 200000);
    size_t nlat = 0;
    while (!__atomic_load_n(&sh.failed, __ATOMIC_RELAXED)) {
        double sched = now_s();
        if (period > 0) {
            if (next >= end)
                break;
            while ((sched = now_s()) < next)
                usleep((useconds_t)((next - sched) * 1e6 > 1000 ? 1000 : (next - sched) * 1e6));
            sched = next;
            next += period;
        } else if (sched >= end) {
            break;
        }
        k++;
        body = fb_asprintf("{\"events\":[{\"type\":\"m.room.message\",\"room_id\":\"%s\","
                           "\"sender\":\"@user%d:bench\",\"event_id\":\"$e%lux%dx%" PRIu64 "\","
                           "\"origin_server_ts\":1,\"content\":{\"msgtype\":\"m.text\","
                           "\"body\":\"aide\"}}]}",
                           room, i, sh.nonce, i, k);
        snprintf(txn, sizeof(txn), "t%lux%dx%" PRIu64, sh.nonce, i, k);
        st = put_txn(&fd, txn, body);
        fb_free(body);
        want++;
        if (st != 200 || wait_group(rm, want, &at) != 0) {
            fprintf(stderr, "bench_appservice: no reply in room %d (HTTP %d)\n", i, st);
            __atomic_store_n(&sh.failed, 1, __ATOMIC_RELAXED);
            break;
        }
        if (nlat < 200000)
            lat[nlat++] = (at - sched) * 1000.0;
    }
    if (fd >= 0)
        close(fd);
    pthread_mutex_lock(&sh.lock);
    for (size_t j = 0; j < nlat && sh.nlat < MAX_LATENCIES; j++)
        sh.lat_ms[sh.nlat++] = lat[j];
    sh.events += k;
    pthread_mutex_unlock(&sh.lock);
    fb_free(lat);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    const char *reg = NULL;
    sh.nthreads = 50;
    sh.seconds = 10;
    int c;
    while ((c = getopt(argc, argv, "p:s:t:u:c:d:r:")) != -1) {
        switch (c) {
        case 'p':
            sh.port = (int)strtol(optarg, NULL, 10);
            break;
        case 's':
            sh.sink_port = (int)strtol(optarg, NULL, 10);
            break;
        case 't':
            reg = optarg;
            break;
        case 'u':
            sh.bot = optarg;
            break;
        case 'c':
            sh.nthreads = (int)strtol(optarg, NULL, 10);
            break;
        case 'd':
            sh.seconds = strtod(optarg, NULL);
            break;
        case 'r':
            sh.rate = strtod(optarg, NULL);
            break;
        default:
            fprintf(stderr, "usage: bench_appservice -p PORT -s SINK_PORT -t REGISTRATION -u BOT "
                            "[-c C] [-d SECONDS] [-r RATE]\n");
            return 2;
        }
    }
    if (!sh.port || !sh.sink_port || !reg || !sh.bot || sh.nthreads < 1 ||
        sh.nthreads > MAX_THREADS) {
        fprintf(stderr, "bench_appservice: -p, -s, -t and -u are required, 1 <= C <= %d\n",
                MAX_THREADS);
        return 2;
    }
    FILE *f = fopen(reg, "r");
    char text[8192];
    size_t n = f ? fread(text, 1, sizeof(text), f) : 0;
    if (f)
        fclose(f);
    char *as = NULL;
    const char *why = NULL;
    if (fb_mx_registration_tokens(text, n, &as, &sh.hs_token, &why) != 0) {
        fprintf(stderr, "bench_appservice: %s: %s\n", reg, why ? why : "unreadable");
        return 1;
    }
    fb_free(as);
    fb_log_set_level_all(FB_LOG_WARN);
    sh.nonce = (unsigned long)time(NULL) * 1000u + (unsigned long)getpid() % 1000u;
    pthread_mutex_init(&sh.lock, NULL);
    for (int i = 0; i < sh.nthreads; i++) {
        pthread_mutex_init(&sh.rooms[i].lock, NULL);
        pthread_cond_init(&sh.rooms[i].cond, NULL);
    }
    sh.lat_ms = fb_malloc(sizeof(double) * MAX_LATENCIES);

    /* The sink, on its own loop and thread. */
    uv_loop_init(&sh.loop);
    char host[] = "127.0.0.1";
    fb_server_opts_t so = {.listen_host = host,
                           .listen_port = sh.sink_port,
                           .max_body_bytes = 1 << 20,
                           .max_header_bytes = 8192,
                           .idle_timeout_s = 60,
                           .keepalive_timeout_s = 60,
                           .shutdown_deadline_s = 1};
    sh.sink = fb_http_server_create(&sh.loop, &so);
    if (!sh.sink ||
        fb_http_server_route_prefix(sh.sink, "/_matrix/client/v3/",
                                    FB_HTTP_PUT | FB_HTTP_POST | FB_HTTP_GET, "sink", on_sink,
                                    NULL) != 0 ||
        fb_http_server_start(sh.sink) != 0) {
        fprintf(stderr, "bench_appservice: cannot listen on 127.0.0.1:%d\n", sh.sink_port);
        return 1;
    }
    uv_async_init(&sh.loop, &sh.stop, on_stop);
    pthread_t sink;
    pthread_create(&sink, NULL, sink_thread, NULL);

    pthread_t th[MAX_THREADS];
    for (int i = 0; i < sh.nthreads; i++)
        pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
    for (int i = 0; i < sh.nthreads; i++)
        pthread_join(th[i], NULL);
    uv_async_send(&sh.stop);
    pthread_join(sink, NULL);
    uv_loop_close(&sh.loop);

    if (sh.failed || sh.nlat == 0) {
        fprintf(stderr, "bench_appservice: failed\n");
        return 1;
    }
    qsort(sh.lat_ms, sh.nlat, sizeof(double), cmp_double);
    printf("events=%" PRIu64 "\n", sh.events);
    printf("seconds=%.3f\n", sh.seconds);
    printf("events_per_s=%.1f\n", (double)sh.events / sh.seconds);
    printf("p50_ms=%.3f\n", sh.lat_ms[sh.nlat / 2]);
    printf("p99_ms=%.3f\n", sh.lat_ms[(size_t)((double)sh.nlat * 0.99)]);
    printf("max_ms=%.3f\n", sh.lat_ms[sh.nlat - 1]);
    printf("sink_requests=%" PRIu64 "\n", sh.sink_requests);
    explicit_bzero(sh.hs_token, strlen(sh.hs_token));
    fb_free(sh.hs_token);
    fb_free(sh.lat_ms);
    return 0;
}
