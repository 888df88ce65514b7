/* SPDX-License-Identifier: MIT */
/*
 * runner.c - the unit test runner (libuv test/runner.c).
 *
 *   fb_tests            run every test, each in its own forked process, TAP on stdout
 *   fb_tests NAME...    run the named tests only (CTest runs one test per invocation)
 *   fb_tests --list     print the test names
 *
 * A test that does not finish within FB_TEST_TIMEOUT seconds (default 60) multiplied by
 * FB_TEST_TIMEOUT_MULTIPLIER (for sanitizer or valgrind runs) is killed and fails. Exit status:
 * 0 when every test passed or skipped, 7 when the single test run was skipped, 1 otherwise.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "task.h"

#define MAX_TESTS 1024

struct test_entry {
    const char *name;
    fb_test_fn fn;
    const char *file;
};

static struct test_entry tests[MAX_TESTS];
static int ntests;

void fb_test_register(const char *name, fb_test_fn fn, const char *file)
{
    if (ntests == MAX_TESTS) {
        fprintf(stderr, "too many tests\n");
        exit(1);
    }
    tests[ntests].name = name;
    tests[ntests].fn = fn;
    tests[ntests].file = file;
    ntests++;
}

static int timeout_seconds(void)
{
    const char *t = getenv("FB_TEST_TIMEOUT");
    const char *m = getenv("FB_TEST_TIMEOUT_MULTIPLIER");
    long secs = t ? strtol(t, NULL, 10) : 60;
    long mult = m ? strtol(m, NULL, 10) : 1;
    if (secs <= 0)
        secs = 60;
    if (mult <= 0)
        mult = 1;
    return (int)(secs * mult);
}

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FB_TEST_LSAN 1
#endif
#endif
#if !defined(FB_TEST_LSAN) && defined(__SANITIZE_ADDRESS__)
#define FB_TEST_LSAN 1
#endif
#ifdef FB_TEST_LSAN
#include <sanitizer/lsan_interface.h>
#endif

/* Runs one test in a child process. Returns 0 pass, TEST_SKIP skip, 1 fail. */
static int run_one(const struct test_entry *t)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        setpgid(0, 0); /* its own group, so a timeout kills what it spawned too */
        int rc = t->fn();
        fflush(stdout);
        fflush(stderr);
#ifdef FB_TEST_LSAN
        /* _exit skips LeakSanitizer's check at exit: run it here, so a leak fails the test. */
        if (rc == 0 && __lsan_do_recoverable_leak_check() != 0) {
            fprintf(stderr, "test %s leaked memory (LeakSanitizer report above)\n", t->name);
            rc = 1;
        }
#endif
        _exit(rc);
    }
    setpgid(pid, pid);
    int limit_ms = timeout_seconds() * 1000;
    int status = 0;
    for (int waited = 0;; waited += 10) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR) {
            perror("waitpid");
            return 1;
        }
        if (waited >= limit_ms) {
            fprintf(stderr, "test %s timed out after %d s\n", t->name, limit_ms / 1000);
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return 1;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kill(-pid, SIGKILL); /* anything the test left running in its group */
    if (WIFEXITED(status)) {
        int code = WEXITSTATUS(status);
        if (code == 0 || code == TEST_SKIP)
            return code;
        fprintf(stderr, "test %s exited with status %d\n", t->name, code);
        return 1;
    }
    if (WIFSIGNALED(status))
        fprintf(stderr, "test %s killed by signal %d\n", t->name, WTERMSIG(status));
    return 1;
}

int main(int argc, char **argv)
{
    /* As the daemon does (daemon.c): a write to a socket the peer closed is an error (EPIPE),
     * not a signal that kills the test. The Redis client writes with hiredis's write(2) and
     * requires it (io/redis.h). */
    signal(SIGPIPE, SIG_IGN);
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (int i = 0; i < ntests; i++)
            printf("%s\n", tests[i].name);
        return 0;
    }
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: fb_tests [--list] [NAME...]\n");
        return 0;
    }
    int selected[MAX_TESTS];
    int nsel = 0;
    if (argc > 1) {
        for (int a = 1; a < argc; a++) {
            int found = 0;
            for (int i = 0; i < ntests; i++)
                if (strcmp(tests[i].name, argv[a]) == 0) {
                    selected[nsel++] = i;
                    found = 1;
                }
            if (!found) {
                fprintf(stderr, "fb_tests: no test named '%s' (see --list)\n", argv[a]);
                return 2;
            }
        }
    } else {
        for (int i = 0; i < ntests; i++)
            selected[nsel++] = i;
    }

    int passed = 0, failed = 0, skipped = 0;
    printf("1..%d\n", nsel);
    for (int k = 0; k < nsel; k++) {
        const struct test_entry *t = &tests[selected[k]];
        int rc = run_one(t);
        if (rc == 0) {
            printf("ok %d - %s\n", k + 1, t->name);
            passed++;
        } else if (rc == TEST_SKIP) {
            printf("ok %d - %s # SKIP\n", k + 1, t->name);
            skipped++;
        } else {
            printf("not ok %d - %s (%s)\n", k + 1, t->name, t->file);
            failed++;
        }
        fflush(stdout);
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    if (failed)
        return 1;
    if (nsel == 1 && skipped == 1)
        return TEST_SKIP;
    return 0;
}
