/* SPDX-License-Identifier: MIT */
/*
 * ws_client.c - the blocking test websocket client of ws_client.h.
 */
#include "ws_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/digest.h"

/* The key of RFC 6455 section 1.3, so the expected accept value is the RFC's own. */
#define WSC_KEY    "dGhlIHNhbXBsZSBub25jZQ=="
#define WSC_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static void base64(const unsigned char *in, size_t len, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? tab[v & 63] : '=';
    }
    out[o] = '\0';
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *s = p;
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, void *p, size_t n)
{
    char *s = p;
    while (n) {
        ssize_t r = read(fd, s, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        s += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Value of header `name` (with the colon) in `head`, copied to `out`; 0 or -1. */
static int head_value(const char *head, const char *name, char *out, size_t cap)
{
    size_t nlen = strlen(name);
    for (const char *line = strstr(head, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
        const char *l = line + 2;
        if (strncasecmp(l, name, nlen) != 0)
            continue;
        l += nlen;
        while (*l == ' ')
            l++;
        size_t n = strcspn(l, "\r");
        if (n >= cap)
            return -1;
        memcpy(out, l, n);
        out[n] = '\0';
        return 0;
    }
    return -1;
}

int fb_wsc_connect(fb_wsc_t *c, int port, const char *path, const char *extra)
{
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0)
        return -1;
    struct timeval tv = {FB_WSC_TIMEOUT_S, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        return -1;
    char req[2048];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: " WSC_KEY "\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s\r\n",
                     path, port, extra ? extra : "");
    if (n <= 0 || (size_t)n >= sizeof(req) || write_all(c->fd, req, (size_t)n) != 0)
        return -1;
    /* The head, byte by byte so that no frame byte is read past it. */
    size_t pos = 0;
    while (pos < sizeof(c->head) - 1) {
        if (read_all(c->fd, c->head + pos, 1) != 0)
            return -1;
        pos++;
        c->head[pos] = '\0';
        if (pos >= 4 && memcmp(c->head + pos - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    /* libwebsockets answers a refused upgrade as HTTP/1.0. */
    if (strncmp(c->head, "HTTP/1.1 ", 9) != 0 && strncmp(c->head, "HTTP/1.0 ", 9) != 0)
        return -1;
    c->status = (int)strtol(c->head + 9, NULL, 10);
    char val[128];
    if (c->status != 101) {
        if (head_value(c->head, "content-length:", val, sizeof(val)) == 0) {
            size_t blen = (size_t)strtoul(val, NULL, 10);
            if (blen >= sizeof(c->body) || read_all(c->fd, c->body, blen) != 0)
                return -1;
            c->body[blen] = '\0';
        }
        return c->status;
    }
    /* SHA-1 of key + GUID, base64: checked against the RFC's worked example. */
    static const char guid[] = WSC_KEY "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char md[20];
    char b64[32];
    fb_sha1(guid, sizeof(guid) - 1, md);
    base64(md, sizeof(md), b64);
    if (strcmp(b64, WSC_ACCEPT) != 0 ||
        head_value(c->head, "sec-websocket-accept:", val, sizeof(val)) != 0 ||
        strcmp(val, WSC_ACCEPT) != 0)
        return -1;
    return 101;
}

int fb_wsc_send(fb_wsc_t *c, int opcode, bool fin, const void *data, size_t len)
{
    static const unsigned char mask[4] = {0x3c, 0xa5, 0x0f, 0x96};
    unsigned char *frame = malloc(14 + len);
    size_t h = 0;
    frame[h++] = (unsigned char)((fin ? 0x80 : 0) | (opcode & 0x0f));
    if (len < 126) {
        frame[h++] = (unsigned char)(0x80 | len);
    } else if (len < 65536) {
        frame[h++] = 0x80 | 126;
        frame[h++] = (unsigned char)(len >> 8);
        frame[h++] = (unsigned char)len;
    } else {
        frame[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            frame[h++] = (unsigned char)((uint64_t)len >> (8 * i));
    }
    memcpy(frame + h, mask, 4);
    h += 4;
    const unsigned char *d = data;
    for (size_t i = 0; i < len; i++)
        frame[h + i] = d[i] ^ mask[i % 4];
    int rc = write_all(c->fd, frame, h + len);
    free(frame);
    return rc;
}

int fb_wsc_send_text(fb_wsc_t *c, const char *text)
{
    return fb_wsc_send(c, FB_WSC_TEXT, true, text, strlen(text));
}

int fb_wsc_send_close(fb_wsc_t *c, int code, const char *reason)
{
    unsigned char p[125];
    size_t n = 0;
    if (code) {
        p[n++] = (unsigned char)(code >> 8);
        p[n++] = (unsigned char)code;
        size_t rlen = reason ? strlen(reason) : 0;
        if (rlen > sizeof(p) - 2)
            rlen = sizeof(p) - 2;
        if (rlen)
            memcpy(p + n, reason, rlen);
        n += rlen;
    }
    return fb_wsc_send(c, FB_WSC_CLOSE, true, p, n);
}

int fb_wsc_recv(fb_wsc_t *c, fb_wsc_frame_t *f)
{
    memset(f, 0, sizeof(*f));
    unsigned char h[2];
    if (read_all(c->fd, h, 2) != 0)
        return -1;
    f->fin = (h[0] & 0x80) != 0;
    f->opcode = h[0] & 0x0f;
    if (h[1] & 0x80)
        return -1; /* a server never masks */
    uint64_t len = h[1] & 0x7f;
    unsigned char ext[8];
    if (len == 126) {
        if (read_all(c->fd, ext, 2) != 0)
            return -1;
        len = (uint64_t)ext[0] << 8 | ext[1];
    } else if (len == 127) {
        if (read_all(c->fd, ext, 8) != 0)
            return -1;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | ext[i];
    }
    if (len > (64u << 20))
        return -1;
    f->data = malloc((size_t)len + 1);
    if (len && read_all(c->fd, f->data, (size_t)len) != 0) {
        fb_wsc_frame_free(f);
        return -1;
    }
    f->data[len] = '\0';
    f->len = (size_t)len;
    if (f->opcode == FB_WSC_CLOSE && f->len >= 2) {
        f->close_code = (unsigned char)f->data[0] << 8 | (unsigned char)f->data[1];
        memmove(f->data, f->data + 2, f->len - 2 + 1);
        f->len -= 2;
    }
    return 0;
}

int fb_wsc_recv_text(fb_wsc_t *c, fb_wsc_frame_t *f)
{
    for (;;) {
        if (fb_wsc_recv(c, f) != 0)
            return -1;
        if (f->opcode != FB_WSC_PING && f->opcode != FB_WSC_PONG)
            return f->opcode == FB_WSC_TEXT ? 0 : -1;
        fb_wsc_frame_free(f);
    }
}

void fb_wsc_frame_free(fb_wsc_frame_t *f)
{
    free(f->data);
    f->data = NULL;
}

bool fb_wsc_wait_eof(fb_wsc_t *c)
{
    char b[256];
    for (;;) {
        ssize_t n = read(c->fd, b, sizeof(b));
        if (n == 0)
            return true;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == ECONNRESET;
    }
}

void fb_wsc_close(fb_wsc_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}
