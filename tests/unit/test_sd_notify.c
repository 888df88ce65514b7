/* SPDX-License-Identifier: MIT */
/*
 * test_sd_notify.c - the service manager's notifications (daemon/io/sd_notify.c): addresses (path
 * and abstract), datagrams received as sent, nothing without $NOTIFY_SOCKET, $WATCHDOG_USEC and
 * $WATCHDOG_PID, and the watchdog timer's pings on a real loop. Each test runs in its own forked
 * process, so the environment variables set here do not leak into other tests.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <uv.h>

#include "io/sd_notify.h"
#include "task.h"

/* A datagram socket playing the service manager: bound to a path in a temporary directory, or
 * to an abstract name when `abstract`. `address` receives the $NOTIFY_SOCKET form. */
struct manager {
    int fd;
    char dir[64];
    char address[108];
};

static void manager_open(struct manager *m, int abstract)
{
    memset(m, 0, sizeof(*m));
    struct sockaddr_un sa;
    socklen_t len;
    if (abstract) {
        snprintf(m->address, sizeof(m->address), "@fb-test-notify-%ld", (long)getpid());
    } else {
        snprintf(m->dir, sizeof(m->dir), "/tmp/fb-sd.XXXXXX");
        ASSERT_NOT_NULL(mkdtemp(m->dir));
        snprintf(m->address, sizeof(m->address), "%s/notify", m->dir);
    }
    ASSERT_OK(fb_sd_address(m->address, &sa, &len));
    m->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    ASSERT_GE(m->fd, 0);
    ASSERT_EQ(bind(m->fd, (struct sockaddr *)&sa, len), 0);
}

/* The next datagram, or "" when none is waiting. */
static const char *manager_recv(struct manager *m)
{
    static char buf[FB_SD_MAX_MESSAGE + 1];
    ssize_t n = recv(m->fd, buf, sizeof(buf) - 1, 0);
    if (n < 0) {
        ASSERT(errno == EAGAIN || errno == EWOULDBLOCK);
        n = 0;
    }
    buf[n] = '\0';
    return buf;
}

static void manager_close(struct manager *m)
{
    close(m->fd);
    if (m->dir[0]) {
        unlink(m->address);
        rmdir(m->dir);
    }
}

TEST_IMPL(sd_notify_address)
{
    struct sockaddr_un sa;
    socklen_t len;
    ASSERT_OK(fb_sd_address("/run/systemd/notify", &sa, &len));
    ASSERT_EQ(sa.sun_family, AF_UNIX);
    ASSERT_STR_EQ(sa.sun_path, "/run/systemd/notify");
    ASSERT_EQ(len, offsetof(struct sockaddr_un, sun_path) + strlen("/run/systemd/notify") + 1);

    /* Abstract: a leading NUL, and the length counts the name's bytes only (no terminator). */
    ASSERT_OK(fb_sd_address("@fb/notify", &sa, &len));
    ASSERT_EQ(sa.sun_path[0], '\0');
    ASSERT_EQ(memcmp(sa.sun_path + 1, "fb/notify", 9), 0);
    ASSERT_EQ(len, offsetof(struct sockaddr_un, sun_path) + 10);

    ASSERT_EQ(fb_sd_address("", &sa, &len), FB_EINVAL);
    ASSERT_EQ(fb_sd_address(NULL, &sa, &len), FB_EINVAL);
    ASSERT_EQ(fb_sd_address("@", &sa, &len), FB_EINVAL);
    ASSERT_EQ(fb_sd_address("/", &sa, &len), FB_EINVAL);
    ASSERT_EQ(fb_sd_address("run/notify", &sa, &len), FB_EINVAL);
    ASSERT_EQ(fb_sd_address("vsock:2:1234", &sa, &len), FB_EINVAL);
    char longest[sizeof(sa.sun_path) + 1];
    memset(longest, 'a', sizeof(longest) - 1);
    longest[0] = '/';
    longest[sizeof(longest) - 1] = '\0'; /* sizeof(sun_path) bytes: no room for the NUL */
    ASSERT_EQ(fb_sd_address(longest, &sa, &len), FB_EINVAL);
    longest[sizeof(longest) - 2] = '\0';
    ASSERT_OK(fb_sd_address(longest, &sa, &len));
    return 0;
}

TEST_IMPL(sd_notify_send)
{
    for (int abstract = 0; abstract < 2; abstract++) {
        struct manager m;
        manager_open(&m, abstract);
        ASSERT_OK(fb_sd_notify_to(m.address, "READY=1\nSTATUS=serving"));
        ASSERT_STR_EQ(manager_recv(&m), "READY=1\nSTATUS=serving");
        ASSERT_STR_EQ(manager_recv(&m), "");

        ASSERT_EQ(unsetenv("NOTIFY_SOCKET"), 0);
        ASSERT(!fb_sd_enabled());
        ASSERT_EQ(fb_sd_notify("READY=1"), FB_DECLINED);
        ASSERT_EQ(fb_sd_notifyf("STATUS=%d", 1), FB_DECLINED);
        ASSERT_EQ(setenv("NOTIFY_SOCKET", "", 1), 0);
        ASSERT(!fb_sd_enabled());
        ASSERT_EQ(fb_sd_notify("READY=1"), FB_DECLINED);
        ASSERT_STR_EQ(manager_recv(&m), "");

        ASSERT_EQ(setenv("NOTIFY_SOCKET", m.address, 1), 0);
        ASSERT(fb_sd_enabled());
        ASSERT_OK(fb_sd_notify("STOPPING=1"));
        ASSERT_STR_EQ(manager_recv(&m), "STOPPING=1");
        ASSERT_OK(fb_sd_notifyf("STATUS=draining for up to %u s", 10u));
        ASSERT_STR_EQ(manager_recv(&m), "STATUS=draining for up to 10 s");
        manager_close(&m);
    }

    /* Nobody listening, or an address that is no address: an error, never a crash. */
    ASSERT(fb_sd_notify_to("/nonexistent/fb-notify", "READY=1") < 0);
    ASSERT_EQ(fb_sd_notify_to("relative", "READY=1"), FB_EINVAL);
    ASSERT_EQ(setenv("NOTIFY_SOCKET", "/nonexistent/fb-notify", 1), 0);
    ASSERT(fb_sd_notify("WATCHDOG=1") < 0);
    ASSERT(fb_sd_notify("WATCHDOG=1") < 0); /* the second failure is logged at debug only */
    char big[FB_SD_MAX_MESSAGE + 2];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ASSERT_EQ(fb_sd_notify_to("@fb-test-big", big), FB_ETOOBIG);
    return 0;
}

TEST_IMPL(sd_notify_watchdog_env)
{
    char pid[32];
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    ASSERT_EQ(unsetenv("WATCHDOG_USEC"), 0);
    ASSERT_EQ(unsetenv("WATCHDOG_PID"), 0);
    ASSERT_EQ(fb_sd_watchdog_usec(), 0);
    ASSERT_EQ(setenv("WATCHDOG_USEC", "30000000", 1), 0);
    ASSERT_EQ(fb_sd_watchdog_usec(), 30000000);
    ASSERT_EQ(setenv("WATCHDOG_PID", pid, 1), 0);
    ASSERT_EQ(fb_sd_watchdog_usec(), 30000000);
    ASSERT_EQ(setenv("WATCHDOG_PID", "1", 1), 0); /* meant for another process */
    ASSERT_EQ(fb_sd_watchdog_usec(), 0);
    ASSERT_EQ(setenv("WATCHDOG_PID", "12x", 1), 0);
    ASSERT_EQ(fb_sd_watchdog_usec(), 0);
    ASSERT_EQ(setenv("WATCHDOG_PID", "", 1), 0); /* empty: as if unset */
    ASSERT_EQ(fb_sd_watchdog_usec(), 30000000);
    static const char *const bad[] = {"", "0", "-5", "+5", " 5", "5s", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ASSERT_EQ(setenv("WATCHDOG_USEC", bad[i], 1), 0);
        ASSERT_EQ(fb_sd_watchdog_usec(), 0);
    }
    return 0;
}

TEST_IMPL(sd_notify_watchdog_timer)
{
    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    struct manager m;
    manager_open(&m, 0);

    /* No watchdog asked for, or nobody to tell: no timer. */
    ASSERT_EQ(unsetenv("WATCHDOG_USEC"), 0);
    ASSERT_EQ(setenv("NOTIFY_SOCKET", m.address, 1), 0);
    ASSERT_NULL(fb_sd_watchdog_start(&loop));
    ASSERT_EQ(setenv("WATCHDOG_USEC", "20000", 1), 0);
    ASSERT_EQ(unsetenv("NOTIFY_SOCKET"), 0);
    ASSERT_NULL(fb_sd_watchdog_start(&loop));
    fb_sd_watchdog_close(NULL);

    /* 20 ms: a ping at once, then every 10 ms. */
    ASSERT_EQ(setenv("NOTIFY_SOCKET", m.address, 1), 0);
    fb_sd_watchdog_t *w = fb_sd_watchdog_start(&loop);
    ASSERT_NOT_NULL(w);
    /* Three pings, however slowly a loaded machine runs the loop (bounded at 10 s). */
    int pings = 0;
    for (int turns = 0; pings < 3 && turns < 500; turns++) {
        fb_test_run_for(&loop, 20);
        for (;;) {
            const char *msg = manager_recv(&m);
            if (!*msg)
                break;
            ASSERT_STR_EQ(msg, "WATCHDOG=1");
            pings++;
        }
    }
    ASSERT_GE(pings, 3);
    fb_sd_watchdog_close(w);
    fb_test_run_for(&loop, 30);
    ASSERT_STR_EQ(manager_recv(&m), ""); /* closed: no more pings */
    fb_test_loop_close_strict(&loop);
    manager_close(&m);
    return 0;
}
