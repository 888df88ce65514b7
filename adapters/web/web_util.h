/* SPDX-License-Identifier: MIT */
/*
 * web_util.h - the pure pieces of the web chat adapter (adapters/web/web.c): conversation tokens,
 * their log tags, client message ids, the per-conversation token bucket and the history entries.
 * No I/O here except the token minting (the system's random source), so that the unit tests
 * (tests/unit/test_web.c) can reach every rule directly.
 */
#ifndef FB_WEB_UTIL_H
#define FB_WEB_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/** A token: 32 random bytes in base64url without padding. */
#define FB_WEB_TOKEN_LEN 43

/** Longest client message id (and choice id) accepted. */
#define FB_WEB_MAX_ID 64

/** Length of the log tag of a token: the first 6 hex digits of its SHA-256. */
#define FB_WEB_TAG_LEN 6

/** Writes `n` bytes as base64url without padding, NUL-terminated; `out` holds 4*n/3+2 bytes. */
void fb_web_base64url(const unsigned char *in, size_t n, char *out /* OUT */);

/**
 * Mints a new token from the system's random source (uv_random, getrandom). Writes
 * FB_WEB_TOKEN_LEN characters and a NUL. Returns 0 or FB_ESYS.
 */
int fb_web_token_new(char out[FB_WEB_TOKEN_LEN + 1] /* OUT */);

/** True when `s` is shaped like a token: exactly 43 characters of [A-Za-z0-9_-]. */
bool fb_web_token_valid(const char *s);

/** Writes the log tag of `token` (6 lower-case hex digits of its SHA-256) and a NUL. */
void fb_web_token_tag(const char *token, char out[FB_WEB_TAG_LEN + 1] /* OUT */);

/** True when `s` is a valid client message id or option id: 1..64 characters of [A-Za-z0-9_-]. */
bool fb_web_id_valid(const char *s);

/**
 * A token bucket: up to `per_minute` messages at once, refilled at per_minute / 60 s.
 * Times are monotonic milliseconds.
 */
typedef struct fb_web_bucket_s {
    double tokens;    /* available now (as of `at_ms`) */
    uint64_t at_ms;   /* when `tokens` was computed */
    bool initialized; /* false: full */
} fb_web_bucket_t;

/**
 * Takes one message from the bucket at `now_ms`. Returns 0 when allowed, otherwise the number
 * of seconds (>= 1) after which one message will be allowed again.
 */
unsigned fb_web_bucket_take(fb_web_bucket_t *b, unsigned per_minute, uint64_t now_ms);

/** Gives back one message (a duplicate that turned out not to count). */
void fb_web_bucket_refund(fb_web_bucket_t *b, unsigned per_minute);

/** True when the bucket is full again at `now_ms` (it can be forgotten). */
bool fb_web_bucket_full(const fb_web_bucket_t *b, unsigned per_minute, uint64_t now_ms);

/**
 * Builds the stored form of a history entry without its sequence number: the JSON members
 * after "seq", starting with a comma and ending with the closing brace, e.g.
 * `,"from":"user","id":"a1","text":"Bonjour","ts":1700000000000}`. The append script prefixes
 * `{"seq":N`. `entry` is borrowed and must be an object. Returns a new string (fb_free), or
 * NULL when it cannot be encoded.
 */
char *fb_web_entry_tail(const json_t *entry);

/**
 * Turns a stored entry (`{"seq":N,...}`, `len` bytes) into a `msg` frame
 * (`{"type":"msg","seq":N,...}`). Returns a new string (fb_free) and its sequence number in
 * `*seq`, or NULL when `stored` is not shaped like a stored entry.
 */
char *fb_web_entry_frame(const char *stored, size_t len, uint64_t *seq /* OUT */);

/** What a client's websocket text message is, by its "type" member. */
typedef enum fb_web_frame_type_e {
    FB_WEB_FRAME_NONE,    /* not a JSON object with a string "type": refused (`message`) */
    FB_WEB_FRAME_HELLO,   /* {"type":"hello", "token"?: string|null, "since"?: integer >= 0|null} */
    FB_WEB_FRAME_PING,    /* {"type":"ping"} */
    FB_WEB_FRAME_MESSAGE, /* {"type":"message", "id": id, "text": non-empty string} */
    FB_WEB_FRAME_CHOICE,  /* {"type":"choice", "id": id, "choice": id, "label": string} */
    FB_WEB_FRAME_UNKNOWN, /* another type */
} fb_web_frame_type_t;

/**
 * A client's websocket text message, decoded and checked (fb_web_frame_parse). Strings borrow from
 * `doc` and live until fb_web_frame_free(). When `error` is set the frame is refused: `error` is
 * the error frame's code ("bad_request", "too_big"), `message` its French text and `error_id`
 * the message id to echo (or NULL). For FB_WEB_FRAME_NONE the refusal comes first; for the other
 * types it is about that type's members, and the adapter decides the order of its own checks
 * (the connection's state first: see ws_message in web.c).
 */
typedef struct fb_web_frame_s {
    fb_web_frame_type_t type;
    json_t *doc;         /* the decoded object (new reference), or NULL */
    const char *raw_id;  /* the "id" member when it is a string, unchecked; else NULL */
    const char *id;      /* message, choice: the checked id */
    const char *text;    /* message: the text; choice: the label (NUL-free, length below) */
    size_t text_len;     /* bytes of `text` */
    const char *choice;  /* choice: the checked option id */
    const char *token;   /* hello: the "token" member when it is a string (shape unchecked) */
    uint64_t since;      /* hello: the "since" member, 0 when absent or null */
    const char *error;   /* refusal code, or NULL */
    const char *message; /* refusal message (French), or NULL */
    const char *error_id;
    char message_buf[200];
} fb_web_frame_t;

/**
 * Decodes the websocket text message `data` (`len` bytes, any bytes) of a web chat client into
 * `*f`, checking its members: a message or choice text is refused when empty (a choice label may
 * be empty), when it holds a NUL or when it is longer than `max_text` bytes. Never fails
 * otherwise; call fb_web_frame_free() after, in every case.
 */
void fb_web_frame_parse(const char *data, size_t len, size_t max_text, fb_web_frame_t *f /* OUT */);

/** Releases what fb_web_frame_parse() decoded. */
void fb_web_frame_free(fb_web_frame_t *f);

#endif /* FB_WEB_UTIL_H */
