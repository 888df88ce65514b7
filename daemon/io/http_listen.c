/* SPDX-License-Identifier: MIT */
/*
 * http_listen.c - see http_listen.h.
 *
 * Why the daemon owns the listening socket rather than libwebsockets: libwebsockets 4.1 (Debian
 * 12) handles a failed accept() by logging "accept: errno 24" and returning to the loop with the
 * listening socket still readable. libuv polls level-triggered, so the loop wakes at once, lws
 * calls accept() again, and so on: one core at 100 % and millions of log lines for as long as the
 * descriptors stay exhausted (issue #18). Later lws versions pause the listener for 100 ms on
 * EMFILE, 4.1 has no hook for it: LWS_CALLBACK_FILTER_NETWORK_CONNECTION runs only after a
 * successful accept(). So the vhost is created without a listener
 * (CONTEXT_PORT_NO_LISTEN_SERVER) and every connection accepted here is handed to lws with
 * lws_adopt_descriptor_vhost(), exactly what lws's own listener does after its accept(). HTTP
 * parsing, timeouts and websockets stay lws's.
 *
 * Before a connection is handed over:
 * - per address: a peer with max_per_address connections open gets a 503 (best effort: one
 *   non-blocking send) and the connection is closed at once; other addresses are unaffected.
 *   The trusted proxies (server.trusted_proxies) are exempt: behind a reverse proxy every user
 *   has its address, and the per-user caps move to what it forwards (X-Forwarded-For, read by
 *   http_server.c for the websockets);
 * - descriptor headroom: a descriptor number in the last 1/16 of the limit (at least 32)
 *   means the table is nearly full (accept() returns the lowest free number, so every
 *   descriptor below it is in use): the connection is refused, so is the rest of the backlog,
 *   and accepting is paused, keeping the last descriptors for Redis, outgoing HTTP and files;
 * - EMFILE/ENFILE from accept() itself (the rest of the daemon used the headroom, or the system
 *   is out): the reserved descriptor (/dev/null, opened at start) is closed, the backlog
 *   accepted and refused with the one descriptor freed, the reserve reopened, and accepting
 *   paused.
 * Pausing stops the uv_poll on the socket and restarts it after PAUSE_MIN_MS, doubling up to
 * PAUSE_MAX_MS while the shortage lasts: the loop never spins, the work done is bounded by the
 * connections clients actually open, and a client arriving during a shortage gets its 503
 * within PAUSE_MAX_MS instead of waiting in the backlog for descriptors that may not come.
 */
#include "io/http_listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "frichebot/alloc.h"
#include "frichebot/err.h"
#include "frichebot/hash.h"
#include "frichebot/log.h"
#include "io/fds.h"
#include "io/metrics.h"

/* Connections accepted per wake-up, so that a burst does not hold the loop. */
#define ACCEPT_BATCH 64
/* Back-off of a paused listener: the first pause, and the longest (a client waiting in the
 * backlog is served at most this long after descriptors are free again). */
#define PAUSE_MIN_MS 25
#define PAUSE_MAX_MS 400
#define PEER_BUCKETS 256

static const char refusal_503[] = "HTTP/1.1 503 Service Unavailable\r\n"
                                  "Retry-After: 5\r\n"
                                  "Content-Type: application/json\r\n"
                                  "Content-Length: 78\r\n"
                                  "Connection: close\r\n"
                                  "\r\n"
                                  "{\"error\":\"too_many_connections\",\"status\":503,\"message\":"
                                  "\"Service Unavailable\"}\n";

struct fb_listen_peer_s {
    fb_listen_peer_t *next;
    unsigned n; /* connections adopted and not yet released */
    socklen_t len;
    unsigned char addr[16]; /* IPv4 or IPv6 address bytes, without the port */
};

#define MAX_TRUSTED 64 /* server.trusted_proxies' bound in config.c */

/* A trusted proxy's address: 4 bytes (IPv4, also an IPv4-mapped IPv6 peer) or 16. */
struct trusted {
    unsigned char len;
    unsigned char addr[16];
};

struct fb_listener_s {
    uv_loop_t *loop;
    int fd;
    int reserve; /* /dev/null, given up to accept-and-close on EMFILE; -1 when it could not */
    int port;
    unsigned max_per_address;
    long headroom_from; /* descriptor numbers from this one up are refused */
    fb_listen_adopt_fn adopt;
    void *arg;
    uv_poll_t poll;
    uv_timer_t pause;
    unsigned pause_ms; /* the next pause */
    bool paused, stopped;
    bool free_pending; /* fb_listener_free() came before the handles were closed */
    int open_handles;
    fb_listen_peer_t *peers[PEER_BUCKETS];
    size_t npeers;
    struct trusted trusted[MAX_TRUSTED];
    size_t ntrusted;
};

/* The whole address of `ss` (no port; an IPv4-mapped IPv6 address as IPv4): 4 or 16 bytes, 0
 * for another family. Unlike addr_bytes(), never a /64: a proxy is trusted alone. */
static size_t full_addr(const struct sockaddr_storage *ss, unsigned char out[16])
{
    if (ss->ss_family == AF_INET) {
        memcpy(out, &((const struct sockaddr_in *)ss)->sin_addr, 4);
        return 4;
    }
    if (ss->ss_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            memcpy(out, a->s6_addr + 12, 4);
            return 4;
        }
        memcpy(out, a->s6_addr, 16);
        return 16;
    }
    return 0;
}

/* `ip` as text into 4 or 16 bytes (an IPv4-mapped IPv6 address as IPv4); 0 when not an IP. */
static size_t parse_ip(const char *ip, unsigned char out[16])
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (inet_pton(AF_INET, ip, &((struct sockaddr_in *)&ss)->sin_addr) == 1)
        ss.ss_family = AF_INET;
    else if (inet_pton(AF_INET6, ip, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1)
        ss.ss_family = AF_INET6;
    else
        return 0;
    return full_addr(&ss, out);
}

static bool trusted_bytes(const fb_listener_t *l, const unsigned char *a, size_t len)
{
    for (size_t i = 0; i < l->ntrusted; i++)
        if (l->trusted[i].len == len && memcmp(l->trusted[i].addr, a, len) == 0)
            return true;
    return false;
}

bool fb_listener_trusted(const fb_listener_t *l, const char *ip)
{
    unsigned char a[16];
    size_t len = l && ip ? parse_ip(ip, a) : 0;
    return len && trusted_bytes(l, a, len);
}

/* The address bytes of `ss` (no port, an IPv6 /64): the key of the per-address count. */
static size_t addr_bytes(const struct sockaddr_storage *ss, const unsigned char **out)
{
    if (ss->ss_family == AF_INET) {
        *out = (const unsigned char *)&((const struct sockaddr_in *)ss)->sin_addr;
        return 4;
    }
    if (ss->ss_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
        /* An IPv4 client of a dual-stack socket counts as its IPv4 address. */
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            *out = a->s6_addr + 12;
            return 4;
        }
        /* One IPv6 client usually has a whole /64 to pick addresses from: count the /64. */
        *out = a->s6_addr;
        return 8;
    }
    *out = NULL;
    return 0;
}

static fb_listen_peer_t **peer_slot(fb_listener_t *l, const unsigned char *a, size_t len)
{
    uint64_t h = fb_fnv64(FB_FNV64_INIT, a, len);
    fb_listen_peer_t **pp = &l->peers[h % PEER_BUCKETS];
    while (*pp && !((*pp)->len == len && memcmp((*pp)->addr, a, len) == 0))
        pp = &(*pp)->next;
    return pp;
}

static fb_listen_peer_t *peer_get(fb_listener_t *l, const struct sockaddr_storage *ss)
{
    const unsigned char *a;
    size_t len = addr_bytes(ss, &a);
    fb_listen_peer_t **pp = peer_slot(l, a, len);
    if (!*pp) {
        fb_listen_peer_t *p = fb_calloc(1, sizeof(*p));
        p->len = (socklen_t)len;
        if (len)
            memcpy(p->addr, a, len);
        *pp = p;
        l->npeers++;
    }
    return *pp;
}

/* Forgets `p` when no connection of its address is open. */
static void peer_drop_if_idle(fb_listener_t *l, fb_listen_peer_t *p)
{
    if (p->n)
        return;
    fb_listen_peer_t **pp = peer_slot(l, p->addr, p->len);
    if (*pp == p) {
        *pp = p->next;
        l->npeers--;
        fb_free(p);
    }
}

/* Refuses the connection `fd` for `reason` (a metrics label): a 503 if the socket takes it at
 * once, then close. Never blocks, never reads. */
static void refuse(int fd, const char *reason)
{
    ssize_t w = send(fd, refusal_503, sizeof(refusal_503) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)w;
    close(fd);
    fb_metrics_http_refused(reason);
}

static void on_readable(uv_poll_t *h, int status, int events);

/* accept(), then non-blocking and close-on-exec (accept4 needs _GNU_SOURCE). */
static int accept_nb(int lfd, struct sockaddr_storage *ss, socklen_t *sl)
{
    int fd = accept(lfd, (struct sockaddr *)ss, sl);
    if (fd >= 0 && (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0 ||
                    fcntl(fd, F_SETFD, FD_CLOEXEC) != 0)) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

static void on_pause_end(uv_timer_t *t)
{
    fb_listener_t *l = t->data;
    if (l->stopped)
        return;
    l->paused = false;
    uv_poll_start(&l->poll, UV_READABLE, on_readable);
}

/* Stops accepting for the current back-off, and doubles it for the next time. */
static void pause_accepting(fb_listener_t *l)
{
    if (l->paused || l->stopped)
        return;
    l->paused = true;
    uv_poll_stop(&l->poll);
    uv_timer_start(&l->pause, on_pause_end, l->pause_ms, 0);
    l->pause_ms = l->pause_ms * 2 > PAUSE_MAX_MS ? PAUSE_MAX_MS : l->pause_ms * 2;
}

/* Short of descriptors: accepts and refuses what waits in the backlog (up to a batch), so that
 * waiting clients get their 503 now rather than after a timeout, and the socket stops being
 * readable. Each accept takes a descriptor only until the refusal closes it. */
static void shed_backlog(fb_listener_t *l)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept_nb(l->fd, NULL, NULL);
        if (fd >= 0)
            refuse(fd, "descriptors");
        else if (errno != EINTR && errno != ECONNABORTED)
            return;
    }
}

/* accept() failed with EMFILE/ENFILE (`err`): gives up the reserved descriptor to shed the
 * backlog, takes it back, and pauses. */
static void on_out_of_descriptors(fb_listener_t *l, int err)
{
    if (l->reserve >= 0) {
        close(l->reserve);
        l->reserve = -1;
        shed_backlog(l);
        l->reserve = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    FB_WARN(HTTP, "out of descriptors (%s): connections refused, accepting again in %u ms",
            strerror(err), l->pause_ms);
    pause_accepting(l);
}

/* A connection `fd` from `ss` was accepted: refuses it or hands it to the server. Returns false
 * when accepting was paused. */
static bool take(fb_listener_t *l, int fd, const struct sockaddr_storage *ss)
{
    if ((long)fd >= l->headroom_from) {
        refuse(fd, "descriptors");
        shed_backlog(l);
        FB_WARN(HTTP,
                "descriptors nearly exhausted (descriptor %d, limit %ld): connections refused, "
                "accepting again in %u ms",
                fd, fb_fds_limit(), l->pause_ms);
        pause_accepting(l);
        return false;
    }
    fb_listen_peer_t *p = peer_get(l, ss);
    unsigned char whole[16];
    size_t wlen = full_addr(ss, whole);
    if (l->max_per_address && p->n >= l->max_per_address && !trusted_bytes(l, whole, wlen)) {
        refuse(fd, "per_address");
        /* no address: an IP address is personal data (the metric counts the refusals) */
        FB_WARN(HTTP, "too many connections from one address (%u open): refused", p->n);
        return true;
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    p->n++;
    if (l->adopt(l->arg, fd, p) != 0) {
        p->n--;
        peer_drop_if_idle(l, p);
        fb_metrics_http_refused("adopt");
        return true;
    }
    l->pause_ms = PAUSE_MIN_MS; /* a connection went through: the shortage is over */
    return true;
}

static void on_readable(uv_poll_t *h, int status, int events)
{
    (void)events;
    fb_listener_t *l = h->data;
    if (status < 0) {
        FB_WARN(HTTP, "listening socket: %s; accepting again in %u ms", uv_strerror(status),
                l->pause_ms);
        pause_accepting(l);
        return;
    }
    for (int i = 0; i < ACCEPT_BATCH && !l->stopped; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        memset(&ss, 0, sizeof(ss));
        int fd = accept_nb(l->fd, &ss, &sl);
        if (fd >= 0) {
            if (!take(l, fd, &ss))
                return;
            continue;
        }
        int err = errno;
        switch (err) {
        case EAGAIN:
#if EWOULDBLOCK != EAGAIN
        case EWOULDBLOCK:
#endif
            return;
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM:
            on_out_of_descriptors(l, err);
            return;
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
        case EPERM:
        case ENETDOWN:
        case ENOPROTOOPT:
        case EHOSTDOWN:
        case ENONET:
        case EHOSTUNREACH:
        case EOPNOTSUPP:
        case ENETUNREACH:
            /* That connection failed (accept(2), "Error handling"): try the next one. */
            continue;
        default:
            FB_ERR(HTTP, "accept: %s; accepting again in %u ms", strerror(err), l->pause_ms);
            pause_accepting(l);
            return;
        }
    }
}

/* Binds and listens; returns the socket or -1 with *why set. */
static int bind_listen(const char *host, int port, const char **why)
{
    struct addrinfo hints, *res = NULL;
    char service[16];
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(service, sizeof(service), "%d", port);
    int gai = getaddrinfo(host, service, &hints, &res);
    if (gai) {
        *why = gai_strerror(gai);
        return -1;
    }
    int one = 1;
    int fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
    if (fd < 0 || fcntl(fd, F_SETFL, O_NONBLOCK) != 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
        *why = strerror(errno);
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

fb_listener_t *fb_listener_open(uv_loop_t *loop, const char *host, int port,
                                unsigned max_per_address, const char *const *trusted,
                                fb_listen_adopt_fn adopt, void *arg, const char **why)
{
    int fd = bind_listen(host, port, why);
    if (fd < 0)
        return NULL;
    fb_listener_t *l = fb_calloc(1, sizeof(*l));
    for (const char *const *t = trusted; t && *t && l->ntrusted < MAX_TRUSTED; t++) {
        struct trusted *e = &l->trusted[l->ntrusted];
        e->len = (unsigned char)parse_ip(*t, e->addr);
        if (e->len)
            l->ntrusted++;
    }
    l->loop = loop;
    l->fd = fd;
    l->port = bound_port(fd);
    l->max_per_address = max_per_address;
    l->adopt = adopt;
    l->arg = arg;
    l->pause_ms = PAUSE_MIN_MS;
    /* Keep 1/16 of the descriptors, at least 32, for the daemon's own work. */
    long limit = fb_fds_limit();
    long headroom = limit / 16 > 32 ? limit / 16 : 32;
    l->headroom_from = limit > 2 * headroom ? limit - headroom : limit / 2;
#ifdef FB_TEST_HOOKS
    /* Test builds only: FB_TEST_NO_FD_HEADROOM=1 lets accept() itself hit EMFILE, so that the
     * integration tests exercise the reserved descriptor. */
    const char *no_headroom = getenv("FB_TEST_NO_FD_HEADROOM");
    if (no_headroom && strcmp(no_headroom, "1") == 0)
        l->headroom_from = limit;
#endif
    l->reserve = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (l->reserve < 0)
        FB_WARN(HTTP, "cannot open the reserved descriptor (/dev/null): %s", strerror(errno));
    uv_poll_init(loop, &l->poll, fd);
    l->poll.data = l;
    uv_timer_init(loop, &l->pause);
    l->pause.data = l;
    l->open_handles = 2;
    uv_poll_start(&l->poll, UV_READABLE, on_readable);
    return l;
}

int fb_listener_port(const fb_listener_t *l)
{
    return l->port;
}

void fb_listener_release(fb_listener_t *l, fb_listen_peer_t *peer)
{
    FB_ASSERT(peer->n > 0);
    peer->n--;
    peer_drop_if_idle(l, peer);
}

static void free_now(fb_listener_t *l)
{
    for (size_t i = 0; i < PEER_BUCKETS; i++)
        for (fb_listen_peer_t *p = l->peers[i], *next; p; p = next) {
            next = p->next;
            fb_free(p);
        }
    fb_free(l);
}

static void on_handle_closed(uv_handle_t *h)
{
    fb_listener_t *l = h->data;
    if (--l->open_handles == 0 && l->free_pending)
        free_now(l);
}

void fb_listener_stop(fb_listener_t *l)
{
    if (l->stopped)
        return;
    l->stopped = true;
    uv_close((uv_handle_t *)&l->poll, on_handle_closed);
    uv_close((uv_handle_t *)&l->pause, on_handle_closed);
    close(l->fd);
    l->fd = -1;
    if (l->reserve >= 0)
        close(l->reserve);
    l->reserve = -1;
}

void fb_listener_free(fb_listener_t *l)
{
    if (!l)
        return;
    fb_listener_stop(l);
    if (l->open_handles > 0)
        l->free_pending = true; /* freed by the last close callback */
    else
        free_now(l);
}
