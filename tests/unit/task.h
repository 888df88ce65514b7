/* SPDX-License-Identifier: MIT */
/*
 * task.h - the unit test vocabulary (libuv test/task.h): TEST_IMPL, assertions that print both
 * values, and helpers for tests that need a loop or a throwaway Redis server.
 *
 * A test is declared once, in its file, with TEST_IMPL(name) { ... return 0; }. It registers
 * itself at start-up and CMake registers it with CTest by reading the same line, so there is no
 * central list to keep in sync. Return 0 to pass, TEST_SKIP (7) to skip with a reason printed;
 * any failed assertion aborts the forked test process, which fails it.
 */
#ifndef FB_TEST_TASK_H
#define FB_TEST_TASK_H

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <uv.h>

#include "frichebot/err.h"

#define TEST_SKIP 7

typedef int (*fb_test_fn)(void);
void fb_test_register(const char *name, fb_test_fn fn, const char *file);

#define TEST_IMPL(name)                                                                            \
    static int test_##name(void);                                                                  \
    __attribute__((constructor)) static void test_register_##name(void)                            \
    {                                                                                              \
        fb_test_register(#name, test_##name, __FILE__);                                            \
    }                                                                                              \
    static int test_##name(void)

#define FB_TEST_FAIL(...)                                                                          \
    do {                                                                                           \
        fprintf(stderr, "Assertion failed in %s on line %d: ", __FILE__, __LINE__);                \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        fflush(stderr);                                                                            \
        abort();                                                                                   \
    } while (0)

#define ASSERT(expr)                                                                               \
    do {                                                                                           \
        if (!(expr))                                                                               \
            FB_TEST_FAIL("%s", #expr);                                                             \
    } while (0)

#define FB__ASSERT_INT(a, op, b)                                                                   \
    do {                                                                                           \
        int64_t fb__a = (int64_t)(a), fb__b = (int64_t)(b);                                        \
        if (!(fb__a op fb__b))                                                                     \
            FB_TEST_FAIL("%s %s %s (%" PRId64 " %s %" PRId64 ")", #a, #op, #b, fb__a, #op, fb__b); \
    } while (0)

#define ASSERT_EQ(a, b) FB__ASSERT_INT(a, ==, b)
#define ASSERT_NE(a, b) FB__ASSERT_INT(a, !=, b)
#define ASSERT_GT(a, b) FB__ASSERT_INT(a, >, b)
#define ASSERT_GE(a, b) FB__ASSERT_INT(a, >=, b)
#define ASSERT_LT(a, b) FB__ASSERT_INT(a, <, b)
#define ASSERT_LE(a, b) FB__ASSERT_INT(a, <=, b)

#define ASSERT_OK(expr)                                                                            \
    do {                                                                                           \
        int fb__rc = (expr);                                                                       \
        if (fb__rc != 0)                                                                           \
            FB_TEST_FAIL("%s returned %d (%s: %s)", #expr, fb__rc, fb_err_name(fb__rc),            \
                         fb_strerror(fb__rc));                                                     \
    } while (0)

#define ASSERT_STR_EQ(a, b)                                                                        \
    do {                                                                                           \
        const char *fb__sa = (a), *fb__sb = (b);                                                   \
        if (!fb__sa || !fb__sb || strcmp(fb__sa, fb__sb) != 0)                                     \
            FB_TEST_FAIL("%s == %s (\"%s\" == \"%s\")", #a, #b, fb__sa ? fb__sa : "(null)",        \
                         fb__sb ? fb__sb : "(null)");                                              \
    } while (0)

#define ASSERT_NULL(p)     ASSERT((p) == NULL)
#define ASSERT_NOT_NULL(p) ASSERT((p) != NULL)

/** Prints a reason and returns TEST_SKIP; skips are reported by the runner and by CTest. */
#define RETURN_SKIP(reason)                                                                        \
    do {                                                                                           \
        fprintf(stderr, "SKIP: %s\n", reason);                                                     \
        return TEST_SKIP;                                                                          \
    } while (0)

/**
 * Closes every handle still open on `loop`, runs it until they are closed, and fails the test
 * (listing them) if any handle was still open or uv_loop_close() does not return 0: a test
 * must leave nothing behind (libuv MAKE_VALGRIND_HAPPY, but strict).
 */
void fb_test_loop_close_strict(uv_loop_t *loop);

/** A throwaway redis-server on a random loopback port and a unix socket in a temporary dir. */
typedef struct fb_test_redis_s {
    pid_t pid;
    int port;
    char dir[256];
    char sock[300];
    bool aof;     /* the next fb_test_redis_restart() runs with AOF (appendonly yes): set it after
                     start, which runs without */
    bool cluster; /* the next fb_test_redis_restart() runs a single-node cluster (as every start
                     does with FB_TEST_REDIS_CLUSTER) */
} fb_test_redis_t;

/**
 * Starts redis-server (from $FB_REDIS_SERVER or PATH) and waits until it answers PING. The server
 * dies with the test process. Returns 0, or a negative code when it could not be started.
 */
int fb_test_redis_start(fb_test_redis_t *r);
/** Stops the server (SIGTERM, then waits); the directory is kept for a restart. */
void fb_test_redis_stop(fb_test_redis_t *r);
/** Starts the server again on the same port and socket. */
int fb_test_redis_restart(fb_test_redis_t *r);
/* FB_TEST_REDIS_CLUSTER set (and not "0"): the Redis of the tests is a single-node Redis
 * Cluster (every slot on it), which refuses the calls whose keys are in several slots. */
bool fb_test_redis_cluster(void);
/** Stops the server and removes its directory. */
void fb_test_redis_destroy(fb_test_redis_t *r);
struct redisContext;
/**
 * Field `field` ("calls", "failed_calls"...) of Redis command `cmd` ("hgetall", "eval") in
 * `INFO commandstats`, read on the synchronous connection `sync`: calls inside scripts included,
 * since the start or the last CONFIG RESETSTAT; 0 when the command has not run. Fails the test
 * when INFO cannot be read.
 */
long long fb_test_redis_cmdstat(struct redisContext *sync, const char *cmd, const char *field);

/**
 * A command (hiredis format `fmt` and its arguments) on the synchronous connection `sync` whose
 * reply is read as an integer: the integer, a string's leading digits, -1 otherwise (nil). Fails
 * the test when there is no reply.
 */
long long fb_test_redis_int(struct redisContext *sync, const char *fmt, ...);

/** fb_test_redis_int() with a va_list. */
long long fb_test_redis_vint(struct redisContext *sync, const char *fmt, va_list ap);

/**
 * Runs `loop` (a 5 ms timer keeps it turning) until cond(arg) holds or `ms` pass; returns whether
 * it holds. For hang detection, never for timing assertions.
 */
bool fb_test_wait_cond(uv_loop_t *loop, bool (*cond)(void *arg), void *arg, unsigned ms);
/** The same until *counter >= target. */
bool fb_test_wait_int(uv_loop_t *loop, const int *counter, int target, unsigned ms);
/** Runs `loop` for `ms` milliseconds. */
void fb_test_run_for(uv_loop_t *loop, unsigned ms);

/** Returns a free TCP port on 127.0.0.1 (bind to port 0, read it, close). */
int fb_test_free_port(void);

#endif /* FB_TEST_TASK_H */
