/* SPDX-License-Identifier: MIT */
/*
 * ws_client.h - a small blocking websocket client (RFC 6455) for tests and benchmarks.
 *
 * Hand-written on purpose: it sends exactly the frames a test asks for (fragments, binary, pings,
 * close codes, masked as a client must), and reads frames one by one without answering control
 * frames by itself, so a test sees everything the server sends. Blocking sockets: run it on a
 * thread other than the loop's. Every read gives up after FB_WSC_TIMEOUT_S seconds so that a
 * broken server fails a test instead of hanging it.
 */
#ifndef FB_TEST_WS_CLIENT_H
#define FB_TEST_WS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#define FB_WSC_TIMEOUT_S 20

enum {
    FB_WSC_CONT = 0x0,
    FB_WSC_TEXT = 0x1,
    FB_WSC_BINARY = 0x2,
    FB_WSC_CLOSE = 0x8,
    FB_WSC_PING = 0x9,
    FB_WSC_PONG = 0xA,
};

typedef struct fb_wsc_s {
    int fd;
    int status;      /* HTTP status of the handshake answer (101 on success) */
    char head[4096]; /* the answer's status line and headers, NUL-terminated */
    char body[1024]; /* the answer's body when it was not a 101 (truncated), NUL-terminated */
} fb_wsc_t;

/** One received frame. `data` is allocated (NUL-terminated); free it with fb_wsc_frame_free(). */
typedef struct fb_wsc_frame_s {
    int opcode;
    bool fin;
    char *data;
    size_t len;
    int close_code; /* for FB_WSC_CLOSE: the code, or 0 without one; data is then the reason */
} fb_wsc_frame_t;

/**
 * Connects to 127.0.0.1:`port` and asks for a websocket upgrade of `path`. `extra` is NULL or
 * header lines each ending in "\r\n". Returns the HTTP status of the answer (101: the websocket is
 * open, and Sec-WebSocket-Accept was checked), or -1 when the connection or the handshake failed.
 * The socket stays open for any status: call fb_wsc_close().
 */
int fb_wsc_connect(fb_wsc_t *c, int port, const char *path, const char *extra);

/** Sends one masked frame. Returns 0 or -1. */
int fb_wsc_send(fb_wsc_t *c, int opcode, bool fin, const void *data, size_t len);

/** Sends a text message in one frame. Returns 0 or -1. */
int fb_wsc_send_text(fb_wsc_t *c, const char *text);

/** Sends a close frame with `code` (0: none) and `reason`. Returns 0 or -1. */
int fb_wsc_send_close(fb_wsc_t *c, int code, const char *reason);

/** Reads one frame. Returns 0, or -1 on end of stream, error or timeout. */
int fb_wsc_recv(fb_wsc_t *c, fb_wsc_frame_t *f);

/** Reads frames until a text frame and returns it (-1 as fb_wsc_recv; pings/pongs skipped). */
int fb_wsc_recv_text(fb_wsc_t *c, fb_wsc_frame_t *f);

void fb_wsc_frame_free(fb_wsc_frame_t *f);

/** True when the server closed the TCP connection (reads end of stream before the timeout). */
bool fb_wsc_wait_eof(fb_wsc_t *c);

/** Closes the socket. */
void fb_wsc_close(fb_wsc_t *c);

#endif /* FB_TEST_WS_CLIENT_H */
