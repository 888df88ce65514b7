/* SPDX-License-Identifier: MIT */
/*
 * sd_notify.c - notifications to the service manager over $NOTIFY_SOCKET (sd_notify(3)'s
 * protocol, without libsystemd), and the watchdog pinger (sd_notify.h).
 */
#include "io/sd_notify.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "frichebot/alloc.h"
#include "frichebot/err.h"
#include "frichebot/log.h"

struct fb_sd_watchdog_s {
    uv_timer_t timer;
};

static const char *notify_socket(void)
{
    const char *s = getenv("NOTIFY_SOCKET");
    return s && *s ? s : NULL;
}

bool fb_sd_enabled(void)
{
    return notify_socket() != NULL;
}

int fb_sd_address(const char *address, struct sockaddr_un *sa, socklen_t *len)
{
    memset(sa, 0, sizeof(*sa));
    *len = 0;
    if (!address || (address[0] != '/' && address[0] != '@'))
        return FB_EINVAL;
    size_t n = strlen(address);
    if (n < 2 || n >= sizeof(sa->sun_path))
        return FB_EINVAL;
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path, address, n);
    if (address[0] == '@') {
        sa->sun_path[0] = '\0'; /* abstract: the name is the bytes after the NUL, no terminator */
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    }
    return 0;
}

int fb_sd_notify_to(const char *address, const char *state)
{
    struct sockaddr_un sa;
    socklen_t len;
    if (fb_sd_address(address, &sa, &len))
        return FB_EINVAL;
    size_t n = strlen(state);
    if (n > FB_SD_MAX_MESSAGE)
        return FB_ETOOBIG;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    int rc = 0;
    ssize_t sent;
    do {
        sent = sendto(fd, state, n, MSG_NOSIGNAL, (const struct sockaddr *)&sa, len);
    } while (sent < 0 && errno == EINTR);
    if (sent < 0)
        rc = -errno;
    else if ((size_t)sent != n)
        rc = FB_EIO;
    (void)close(fd);
    return rc;
}

/* The text of a code of fb_sd_notify_to(): ours (err.h, from -4001 down) or -errno. */
static const char *error_text(int rc)
{
    return rc <= -4000 ? fb_strerror(rc) : strerror(-rc);
}

int fb_sd_notify(const char *state)
{
    const char *address = notify_socket();
    if (!address)
        return FB_DECLINED;
    int rc = fb_sd_notify_to(address, state);
    if (rc) {
        /* Said once at WARN: the watchdog would repeat it every few seconds. */
        static bool warned;
        fb_log_level_t level = warned ? FB_LOG_DEBUG : FB_LOG_WARN;
        warned = true;
        FB_LOG(CORE, level, "cannot notify the service manager at %s: %s", address, error_text(rc));
    }
    return rc;
}

int fb_sd_notifyf(const char *fmt, ...)
{
    if (!notify_socket())
        return FB_DECLINED;
    char buf[FB_SD_MAX_MESSAGE + 1];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return FB_ETOOBIG;
    return fb_sd_notify(buf);
}

uint64_t fb_sd_watchdog_usec(void)
{
    const char *pid = getenv("WATCHDOG_PID");
    if (pid && *pid) {
        char *end;
        errno = 0;
        unsigned long long p = strtoull(pid, &end, 10);
        if (errno || *end || end == pid || p != (unsigned long long)getpid())
            return 0;
    }
    const char *usec = getenv("WATCHDOG_USEC");
    if (!usec || *usec < '0' || *usec > '9')
        return 0;
    char *end;
    errno = 0;
    unsigned long long u = strtoull(usec, &end, 10);
    if (errno || *end)
        return 0;
    return (uint64_t)u;
}

static void watchdog_ping(uv_timer_t *t)
{
    (void)t;
    (void)fb_sd_notify("WATCHDOG=1");
}

fb_sd_watchdog_t *fb_sd_watchdog_start(uv_loop_t *loop)
{
    uint64_t usec = fb_sd_watchdog_usec();
    if (usec == 0 || !fb_sd_enabled())
        return NULL;
    uint64_t every_ms = usec / 2000;
    if (every_ms == 0)
        every_ms = 1;
    fb_sd_watchdog_t *w = fb_calloc(1, sizeof(*w));
    uv_timer_init(loop, &w->timer);
    w->timer.data = w;
    uv_timer_start(&w->timer, watchdog_ping, 0, every_ms);
    FB_INFO(CORE, "systemd watchdog: WATCHDOG=1 every %llu ms (WatchdogSec %llu ms)",
            (unsigned long long)every_ms, (unsigned long long)(usec / 1000));
    return w;
}

static void watchdog_closed(uv_handle_t *h)
{
    fb_free(h->data);
}

void fb_sd_watchdog_close(fb_sd_watchdog_t *w)
{
    if (!w)
        return;
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, watchdog_closed);
}
