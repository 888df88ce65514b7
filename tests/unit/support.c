/* SPDX-License-Identifier: MIT */
/*
 * support.c - helpers shared by the unit tests: strict loop teardown and throwaway Redis servers
 * (hiredis test.sh: a random port, a unix socket and a directory of its own per server).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "task.h"

static void walk_report(uv_handle_t *h, void *arg)
{
    int *count = arg;
    if (uv_is_closing(h))
        return;
    fprintf(stderr, "leaked handle: %s %p (active=%d)\n", uv_handle_type_name(h->type), (void *)h,
            uv_is_active(h));
    (*count)++;
    uv_close(h, NULL);
}

void fb_test_loop_close_strict(uv_loop_t *loop)
{
    int leaked = 0;
    uv_walk(loop, walk_report, &leaked);
    uv_run(loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(loop);
    if (leaked)
        FB_TEST_FAIL("%d handle(s) left open on the loop", leaked);
    if (rc != 0)
        FB_TEST_FAIL("uv_loop_close() returned %d (%s)", rc, uv_strerror(rc));
}

static void noop_tick(uv_timer_t *t)
{
    (void)t;
}

bool fb_test_wait_cond(uv_loop_t *loop, bool (*cond)(void *arg), void *arg, unsigned ms)
{
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, noop_tick, 5, 5);
    uint64_t end = uv_hrtime() + (uint64_t)ms * 1000000u;
    while (!cond(arg) && uv_hrtime() < end)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return cond(arg);
}

struct int_target {
    const int *counter;
    int target;
};

static bool int_reached(void *arg)
{
    const struct int_target *it = arg;
    return *it->counter >= it->target;
}

bool fb_test_wait_int(uv_loop_t *loop, const int *counter, int target, unsigned ms)
{
    struct int_target it = {counter, target};
    return fb_test_wait_cond(loop, int_reached, &it, ms);
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

void fb_test_run_for(uv_loop_t *loop, unsigned ms)
{
    (void)fb_test_wait_cond(loop, never, NULL, ms);
}

/* The first port of the kernel's ephemeral range (net.ipv4.ip_local_port_range). */
static int ephemeral_low(void)
{
    int low = 32768;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f) {
        if (fscanf(f, "%d", &low) != 1 || low <= 1024)
            low = 32768;
        fclose(f);
    }
    return low;
}

/* A free loopback port for a server the test starts later. Drawn at random below the ephemeral
 * range, where no outgoing connection takes its source port between the choice and the server's
 * bind (tests/integration/ports.py says why), and never the same twice in one process. */
int fb_test_free_port(void)
{
    static int given[256];
    static unsigned ngiven;
    static unsigned long long state;
    if (!state) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        state = (((unsigned long long)getpid() << 32) ^ (unsigned long long)ts.tv_nsec ^
                 (unsigned long long)ts.tv_sec) |
                1ULL;
    }
    int hi = ephemeral_low() - 1;
    int lo = hi - 12000 > 1024 ? hi - 12000 : 1024;
    for (int tries = 0; tries < 500; tries++) {
        state ^= state << 13; /* xorshift64 */
        state ^= state >> 7;
        state ^= state << 17;
        int port = lo + (int)(state % (unsigned long long)(hi - lo + 1));
        bool seen = false;
        for (unsigned i = 0; i < ngiven && i < 256; i++)
            seen = seen || given[i] == port;
        if (seen)
            continue;
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            return -1;
        struct sockaddr_in a;
        memset(&a, 0, sizeof(a));
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons((uint16_t)port);
        int rc = bind(fd, (struct sockaddr *)&a, sizeof(a));
        close(fd);
        if (rc != 0)
            continue;
        given[ngiven++ % 256] = port;
        return port;
    }
    return -1;
}

bool fb_test_redis_cluster(void)
{
    const char *v = getenv("FB_TEST_REDIS_CLUSTER");
    return v && v[0] && strcmp(v, "0") != 0;
}

/* A single-node cluster: every slot on this node (a restart finds them in nodes.conf, and
 * ADDSLOTSRANGE then answers an error), then up to 10 s for cluster_state:ok. */
static bool cluster_ready(redisContext *c)
{
    redisReply *rep = redisCommand(c, "CLUSTER ADDSLOTSRANGE 0 16383");
    if (rep)
        freeReplyObject(rep);
    for (int i = 0; i < 1000; i++) {
        rep = redisCommand(c, "CLUSTER INFO");
        bool ok = rep && rep->type == REDIS_REPLY_STRING && strstr(rep->str, "cluster_state:ok");
        if (rep)
            freeReplyObject(rep);
        if (ok)
            return true;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return false;
}

static int spawn(fb_test_redis_t *r)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", r->port);
    pid_t pid = fork();
    if (pid < 0)
        return FB_ESYS;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* dies with the test (h2o kill-on-close) */
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0)
            dup2(devnull, STDOUT_FILENO);
        const char *bin = getenv("FB_REDIS_SERVER");
        if (!bin)
            bin = "redis-server";
        char nodes[320];
        snprintf(nodes, sizeof(nodes), "%s/nodes.conf", r->dir);
        bool cluster = r->cluster || fb_test_redis_cluster();
        /* the cluster bus: a free port of its own, as the default (port + 10000) may be taken or
         * above 65535 */
        char bus[16];
        snprintf(bus, sizeof(bus), "%d", fb_test_free_port());
        execlp(bin, bin, "--port", port, "--bind", "127.0.0.1", "--unixsocket", r->sock,
               "--unixsocketperm", "700", "--dir", r->dir, "--save", "", "--appendonly",
               r->aof ? "yes" : "no", "--daemonize", "no", "--loglevel", "warning",
               cluster ? "--cluster-enabled" : (char *)NULL, "yes", "--cluster-config-file", nodes,
               "--cluster-port", bus, (char *)NULL);
        fprintf(stderr, "cannot exec %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    r->pid = pid;
    /* Wait up to 10 s for PING to answer. */
    for (int i = 0; i < 1000; i++) {
        struct timeval tv = {0, 200000};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
        if (c && !c->err) {
            redisReply *rep = redisCommand(c, "PING");
            int ok = rep && rep->type == REDIS_REPLY_STATUS;
            if (rep)
                freeReplyObject(rep);
            if (ok && (r->cluster || fb_test_redis_cluster()))
                ok = cluster_ready(c) ? 1 : -1;
            redisFree(c);
            if (ok)
                return ok > 0 ? 0 : FB_ETIMEDOUT;
        } else if (c) {
            redisFree(c);
        }
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            r->pid = 0;
            return FB_ECONNECT;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return FB_ETIMEDOUT;
}

int fb_test_redis_start(fb_test_redis_t *r)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->dir, sizeof(r->dir), "/tmp/fb-test-redis-XXXXXX");
    if (!mkdtemp(r->dir))
        return FB_ESYS;
    snprintf(r->sock, sizeof(r->sock), "%s/redis.sock", r->dir);
    for (int attempt = 0; attempt < 5; attempt++) {
        r->port = fb_test_free_port();
        int rc = spawn(r);
        if (rc == 0)
            return 0;
    }
    return FB_ECONNECT;
}

void fb_test_redis_stop(fb_test_redis_t *r)
{
    if (r->pid > 0) {
        kill(r->pid, SIGTERM);
        int status;
        waitpid(r->pid, &status, 0);
        r->pid = 0;
    }
}

int fb_test_redis_restart(fb_test_redis_t *r)
{
    fb_test_redis_stop(r);
    return spawn(r);
}

void fb_test_redis_destroy(fb_test_redis_t *r)
{
    fb_test_redis_stop(r);
    unlink(r->sock);
    char path[600];
    snprintf(path, sizeof(path), "%s/dump.rdb", r->dir); /* a test's SAVE */
    unlink(path);
    snprintf(path, sizeof(path), "%s/nodes.conf", r->dir); /* FB_TEST_REDIS_CLUSTER */
    unlink(path);
    char aof[320]; /* a test's AOF (r->aof, or CONFIG SET appendonly yes) */
    snprintf(aof, sizeof(aof), "%s/appendonlydir", r->dir);
    DIR *dir = opendir(aof);
    if (dir) {
        for (struct dirent *e = readdir(dir); e; e = readdir(dir)) {
            if (e->d_name[0] == '.')
                continue;
            snprintf(path, sizeof(path), "%s/%s", aof, e->d_name);
            unlink(path);
        }
        closedir(dir);
        rmdir(aof);
    }
    rmdir(r->dir);
}

long long fb_test_redis_vint(struct redisContext *sync, const char *fmt, va_list ap)
{
    redisReply *rep = redisvCommand(sync, fmt, ap);
    ASSERT_NOT_NULL(rep);
    long long v = rep->type == REDIS_REPLY_INTEGER  ? rep->integer
                  : rep->type == REDIS_REPLY_STRING ? strtoll(rep->str, NULL, 10)
                                                    : -1;
    freeReplyObject(rep);
    return v;
}

long long fb_test_redis_int(struct redisContext *sync, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    long long v = fb_test_redis_vint(sync, fmt, ap);
    va_end(ap);
    return v;
}

long long fb_test_redis_cmdstat(struct redisContext *sync, const char *cmd, const char *field)
{
    redisReply *rep = redisCommand(sync, "INFO commandstats");
    ASSERT(rep && rep->type == REDIS_REPLY_STRING);
    char line[64], key[64];
    snprintf(line, sizeof(line), "cmdstat_%s:", cmd);
    snprintf(key, sizeof(key), "%s=", field);
    long long value = 0;
    const char *p = strstr(rep->str, line);
    if (p) {
        const char *end = strchr(p, '\r');
        /* the field right after the colon or after a comma ("calls=" is in "failed_calls=") */
        for (const char *f = p + strlen(line) - 1; f && (!end || f < end); f = strchr(f + 1, ',')) {
            if (strncmp(f + 1, key, strlen(key)) == 0) {
                value = strtoll(f + 1 + strlen(key), NULL, 10);
                break;
            }
        }
    }
    freeReplyObject(rep);
    return value;
}
