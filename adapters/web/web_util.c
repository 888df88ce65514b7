/* SPDX-License-Identifier: MIT */
/*
 * web_util.c - tokens, tags, ids, the token bucket and history entries of the web chat adapter.
 */
#include "web_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "common/digest.h"
#include "common/json.h"
#include "frichebot/alloc.h"
#include "frichebot/err.h"

/* ---------------------------------------------------------------------------------------- */
/* Tokens and ids */

void fb_web_base64url(const unsigned char *in, size_t n, char *out)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
        out[o++] = alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
    }
    out[o] = '\0';
}

int fb_web_token_new(char out[FB_WEB_TOKEN_LEN + 1])
{
    unsigned char raw[32];
    if (uv_random(NULL, NULL, raw, sizeof(raw), 0, NULL) != 0)
        return FB_ESYS;
    fb_web_base64url(raw, sizeof(raw), out);
    memset(raw, 0, sizeof(raw));
    return 0;
}

static bool id_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

bool fb_web_token_valid(const char *s)
{
    if (!s)
        return false;
    size_t i = 0;
    for (; s[i]; i++)
        if (i >= FB_WEB_TOKEN_LEN || !id_char(s[i]))
            return false;
    return i == FB_WEB_TOKEN_LEN;
}

void fb_web_token_tag(const char *token, char out[FB_WEB_TAG_LEN + 1])
{
    fb_sha256_tag(token, FB_WEB_TAG_LEN / 2, out);
}

bool fb_web_id_valid(const char *s)
{
    if (!s || !*s)
        return false;
    size_t i = 0;
    for (; s[i]; i++)
        if (i >= FB_WEB_MAX_ID || !id_char(s[i]))
            return false;
    return true;
}

/* ---------------------------------------------------------------------------------------- */
/* Token bucket */

static void bucket_refill(fb_web_bucket_t *b, unsigned per_minute, uint64_t now_ms)
{
    if (!b->initialized) {
        b->tokens = per_minute;
        b->at_ms = now_ms;
        b->initialized = true;
        return;
    }
    if (now_ms > b->at_ms) {
        b->tokens += (double)(now_ms - b->at_ms) * per_minute / 60000.0;
        if (b->tokens > per_minute)
            b->tokens = per_minute;
    }
    b->at_ms = now_ms;
}

unsigned fb_web_bucket_take(fb_web_bucket_t *b, unsigned per_minute, uint64_t now_ms)
{
    bucket_refill(b, per_minute, now_ms);
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return 0;
    }
    double wait_s = (1.0 - b->tokens) * 60.0 / per_minute;
    unsigned secs = (unsigned)wait_s;
    if ((double)secs < wait_s)
        secs++;
    return secs ? secs : 1;
}

void fb_web_bucket_refund(fb_web_bucket_t *b, unsigned per_minute)
{
    b->tokens += 1.0;
    if (b->tokens > per_minute)
        b->tokens = per_minute;
}

bool fb_web_bucket_full(const fb_web_bucket_t *b, unsigned per_minute, uint64_t now_ms)
{
    if (!b->initialized)
        return true;
    double t = b->tokens;
    if (now_ms > b->at_ms)
        t += (double)(now_ms - b->at_ms) * per_minute / 60000.0;
    return t >= per_minute;
}

/* ---------------------------------------------------------------------------------------- */
/* History entries */

char *fb_web_entry_tail(const json_t *entry)
{
    if (!json_is_object(entry) || json_object_size(entry) == 0)
        return NULL;
    /* json_dumps(JSON_COMPACT)'s bytes, a tenth of its instructions (common/json.h) */
    fb_buf_t b;
    fb_buf_init(&b, (size_t)1 << 24);
    if (fb_json_dump(entry, &b) != 0) {
        fb_buf_free(&b);
        return NULL; /* a string that is not UTF-8, or out of memory: as json_dumps() */
    }
    char *out = fb_buf_take(&b);
    out[0] = ','; /* "{...}" -> ",...}" */
    return out;
}

char *fb_web_entry_frame(const char *stored, size_t len, uint64_t *seq)
{
    static const char head[] = "{\"seq\":";
    const size_t hl = sizeof(head) - 1;
    *seq = 0;
    if (len <= hl + 1 || memcmp(stored, head, hl) != 0 || stored[len - 1] != '}')
        return NULL;
    uint64_t v = 0;
    size_t i = hl;
    for (; i < len && stored[i] >= '0' && stored[i] <= '9'; i++) {
        if (v > (UINT64_MAX - 9) / 10)
            return NULL;
        v = v * 10 + (uint64_t)(stored[i] - '0');
    }
    if (i == hl || v == 0 || i >= len || (stored[i] != ',' && stored[i] != '}'))
        return NULL;
    static const char prefix[] = "{\"type\":\"msg\",";
    const size_t pl = sizeof(prefix) - 1;
    char *out = fb_malloc(pl + len - 1 + 1);
    memcpy(out, prefix, pl);
    memcpy(out + pl, stored + 1, len - 1);
    out[pl + len - 1] = '\0';
    *seq = v;
    return out;
}

/* ---------------------------------------------------------------------------------------- */
/* Client messages */

static void frame_refuse(fb_web_frame_t *f, const char *code, const char *message, const char *id)
{
    f->error = code;
    f->message = message;
    f->error_id = id;
}

/* The members of a `message` or `choice` frame (web.c's client_on_message before any I/O). */
static void frame_message(fb_web_frame_t *f, size_t max_text)
{
    bool is_choice = f->type == FB_WEB_FRAME_CHOICE;
    const char *id = json_string_value(json_object_get(f->doc, "id"));
    if (!fb_web_id_valid(id)) {
        frame_refuse(f, "bad_request", "Identifiant de message absent ou invalide.", NULL);
        return;
    }
    json_t *jt = json_object_get(f->doc, is_choice ? "label" : "text");
    const char *text = json_string_value(jt);
    if (is_choice) {
        const char *choice = json_string_value(json_object_get(f->doc, "choice"));
        if (!fb_web_id_valid(choice)) {
            frame_refuse(f, "bad_request", "Choix absent ou invalide.", id);
            return;
        }
        f->choice = choice;
    }
    if (!text || (!is_choice && json_string_length(jt) == 0)) {
        frame_refuse(f, "bad_request", "Message vide ou invalide.", id);
        return;
    }
    if (strlen(text) != json_string_length(jt)) {
        frame_refuse(f, "bad_request", "Le message contient un caractère nul.", id);
        return;
    }
    if (json_string_length(jt) > max_text) {
        snprintf(f->message_buf, sizeof(f->message_buf),
                 "Votre message est trop long : %zu caractères au maximum. Pouvez-vous le "
                 "raccourcir ?",
                 max_text);
        frame_refuse(f, "too_big", f->message_buf, id);
        return;
    }
    f->id = id;
    f->text = text;
    f->text_len = json_string_length(jt);
}

void fb_web_frame_parse(const char *data, size_t len, size_t max_text, fb_web_frame_t *f)
{
    memset(f, 0, sizeof(*f));
    json_error_t jerr;
    f->doc = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(f->doc)) {
        frame_refuse(f, "bad_request", "Message illisible : un objet JSON en UTF-8 est attendu.",
                     NULL);
        return;
    }
    const char *type = json_string_value(json_object_get(f->doc, "type"));
    f->raw_id = json_string_value(json_object_get(f->doc, "id"));
    if (!type) {
        frame_refuse(f, "bad_request", "Message sans type.", NULL);
        return;
    }
    if (strcmp(type, "hello") == 0) {
        f->type = FB_WEB_FRAME_HELLO;
        json_t *jtok = json_object_get(f->doc, "token");
        json_t *jsince = json_object_get(f->doc, "since");
        if ((jtok && !json_is_string(jtok) && !json_is_null(jtok)) ||
            (jsince && !json_is_null(jsince) &&
             (!json_is_integer(jsince) || json_integer_value(jsince) < 0))) {
            frame_refuse(f, "bad_request", "Message hello invalide.", NULL);
            return;
        }
        f->token = json_string_value(jtok);
        f->since = json_is_integer(jsince) ? (uint64_t)json_integer_value(jsince) : 0;
    } else if (strcmp(type, "ping") == 0) {
        f->type = FB_WEB_FRAME_PING;
    } else if (strcmp(type, "message") == 0 || strcmp(type, "choice") == 0) {
        f->type = type[0] == 'm' ? FB_WEB_FRAME_MESSAGE : FB_WEB_FRAME_CHOICE;
        frame_message(f, max_text);
    } else {
        f->type = FB_WEB_FRAME_UNKNOWN;
        frame_refuse(f, "bad_request", "Type de message inconnu.", NULL);
    }
}

void fb_web_frame_free(fb_web_frame_t *f)
{
    json_decref(f->doc);
    memset(f, 0, sizeof(*f));
}
