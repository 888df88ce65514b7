/* SPDX-License-Identifier: MIT */
/*
 * mx_util.c - pure pieces of the Matrix adapter; see mx_util.h and docs/internals/MATRIX.md.
 */
#include "mx_util.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "common/digest.h"
#include "common/utf8.h"
#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "frichebot/err.h"

#define NONCHAR_UTF8 "\xEF\xBF\xBF" /* U+FFFF: marks repaired input */
#define BUF_MAX      ((size_t)256 << 20)

/* ---------------------------------------------------------------------------------------- */
/* Repairing the input: invalid UTF-8 and lone surrogates would make jansson refuse it all. */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The code unit of "\uXXXX" at s (s[0] == '\\'), or -1 when it is not such an escape. */
static long u_escape(const char *s, size_t left)
{
    if (left < 6 || s[0] != '\\' || s[1] != 'u')
        return -1;
    long v = 0;
    for (int i = 2; i < 6; i++) {
        int h = hexval((unsigned char)s[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

char *fb_mx_json_repair(const char *s, size_t len, size_t *out_len, size_t *count)
{
    fb_buf_t b;
    fb_buf_init(&b, BUF_MAX);
    size_t fixed = 0, i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\' && i + 1 < len) {
            long u = u_escape(s + i, len - i);
            if (u >= 0xD800 && u <= 0xDBFF) {
                long lo = u_escape(s + i + 6, len - i - 6);
                if (lo >= 0xDC00 && lo <= 0xDFFF) {
                    (void)fb_buf_append(&b, s + i, 12);
                    i += 12;
                } else {
                    (void)fb_buf_puts(&b, "\\uffff");
                    fixed++;
                    i += 6;
                }
                continue;
            }
            if (u >= 0xDC00 && u <= 0xDFFF) {
                (void)fb_buf_puts(&b, "\\uffff");
                fixed++;
                i += 6;
                continue;
            }
            (void)fb_buf_append(&b, s + i, 2); /* "\x": the escaped byte is never a quote end */
            i += 2;
            continue;
        }
        size_t n = fb_utf8_len((const unsigned char *)s + i, len - i);
        if (n == 0) {
            (void)fb_buf_puts(&b, NONCHAR_UTF8);
            fixed++;
            i++;
            continue;
        }
        (void)fb_buf_append(&b, s + i, n);
        i += n;
    }
    if (count)
        *count = fixed;
    if (out_len)
        *out_len = b.len;
    if (!b.data)
        (void)fb_buf_puts(&b, "");
    return fb_buf_take(&b);
}

/* fb_mx_txn_digest() of a parsed body; `hint` sizes the buffer (the body's length). */
static bool digest_doc(const json_t *doc, size_t hint, char out[FB_MX_TXN_DIGEST_LEN + 1])
{
    out[0] = '\0';
    fb_buf_t ids;
    fb_buf_init(&ids, hint + 1);
    bool any = false, ok = true;
    size_t i;
    json_t *ev;
    json_array_foreach(json_object_get(doc, "events"), i, ev)
    {
        const char *id = json_string_value(json_object_get(ev, "event_id"));
        if (!id)
            continue;
        if (fb_buf_puts(&ids, id) || fb_buf_puts(&ids, "\n")) {
            ok = false;
            break;
        }
        any = true;
    }
    /* The to-device events (encryption: room keys) have no id: their content names them. */
    json_t *td = json_object_get(doc, "org.matrix.msc2409.to_device");
    if (!json_is_array(td))
        td = json_object_get(doc, "de.sorunome.msc2409.to_device");
    json_array_foreach(td, i, ev)
    {
        if (!ok)
            break;
        char *one = json_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        if (!one)
            continue;
        if (fb_buf_puts(&ids, "to-device ") || fb_buf_puts(&ids, one) || fb_buf_puts(&ids, "\n"))
            ok = false;
        free(one); /* fb-lint: allow free (jansson's allocation) */
        any = true;
    }
    if (any && ok) {
        unsigned char d[32];
        fb_sha256(fb_buf_str(&ids), ids.len, d);
        fb_hex(d, sizeof(d), out);
    }
    fb_buf_free(&ids);
    return any && ok;
}

bool fb_mx_txn_digest(const char *body, size_t len, char out[FB_MX_TXN_DIGEST_LEN + 1])
{
    size_t clen = 0, fixed = 0;
    char *clean = fb_mx_json_repair(body, len, &clen, &fixed);
    json_t *doc = clean ? json_loadb(clean, clen, 0, NULL) : NULL;
    fb_free(clean);
    bool ok = digest_doc(doc, len, out);
    json_decref(doc);
    return ok;
}

/* ---------------------------------------------------------------------------------------- */
/* The parser */

struct pctx {
    const fb_mx_parse_opts_t *o;
    fb_mx_batch_t *out;
};

/* A usable string: present, 1..max bytes, no NUL, no repaired byte; else NULL. */
static const char *str_ok(const json_t *v, size_t max)
{
    if (!json_is_string(v))
        return NULL;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0 || n > max || strlen(s) != n || strstr(s, NONCHAR_UTF8))
        return NULL;
    return s;
}

static const char *id_ok(const json_t *v, char sigil)
{
    const char *s = str_ok(v, FB_MX_MAX_ID);
    if (!s || s[0] != sigil || s[1] == '\0')
        return NULL;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return NULL;
    return s;
}

static fb_mx_action_t *push(struct pctx *p, fb_mx_action_kind_t kind, const char *room)
{
    fb_mx_batch_t *b = p->out;
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 16;
        b->actions = fb_realloc(b->actions, b->cap * sizeof(*b->actions));
    }
    fb_mx_action_t *a = &b->actions[b->n++];
    memset(a, 0, sizeof(*a));
    a->kind = kind;
    a->room = fb_strdup(room);
    a->conv = fb_strdup(room);
    return a;
}

static bool is_ignored_sender(struct pctx *p, const char *sender)
{
    return strcmp(sender, p->o->bot) == 0 || fb_mx_glob_any(p->o->ignore_users, sender);
}

static void member_event(struct pctx *p, json_t *ev, const char *room, bool timeline)
{
    const char *key = id_ok(json_object_get(ev, "state_key"), '@');
    json_t *content = json_object_get(ev, "content");
    const char *membership =
        json_is_object(content) ? str_ok(json_object_get(content, "membership"), 32) : NULL;
    if (!key || !membership) {
        p->out->skipped++;
        return;
    }
    bool me = strcmp(key, p->o->bot) == 0;
    const char *sender = id_ok(json_object_get(ev, "sender"), '@');
    const char *event_id = id_ok(json_object_get(ev, "event_id"), '$');
    if (me && strcmp(membership, "invite") == 0) {
        fb_mx_action_t *a = push(p, FB_MX_INVITE, room);
        a->sender = fb_strdup(sender);
        a->event_id = fb_strdup(event_id);
        a->direct = json_is_true(json_object_get(content, "is_direct"));
        return;
    }
    if (me && strcmp(membership, "join") == 0) {
        json_t *prev = json_object_get(json_object_get(ev, "unsigned"), "prev_content");
        const char *was =
            json_is_object(prev) ? str_ok(json_object_get(prev, "membership"), 32) : NULL;
        if (!timeline || !p->o->history || !event_id || (was && strcmp(was, "join") == 0)) {
            p->out->ignored++; /* already a member (profile change), or initial state */
            return;
        }
        fb_mx_action_t *a = push(p, FB_MX_JOINED, room);
        a->event_id = fb_strdup(event_id);
        json_t *ts = json_object_get(ev, "origin_server_ts");
        a->ts_ms = json_is_integer(ts) ? (int64_t)json_integer_value(ts) : 0;
        return;
    }
    if (me && (strcmp(membership, "leave") == 0 || strcmp(membership, "ban") == 0)) {
        push(p, FB_MX_LEFT, room);
        return;
    }
    if (!me && timeline && (strcmp(membership, "leave") == 0 || strcmp(membership, "ban") == 0)) {
        fb_mx_action_t *a = push(p, FB_MX_MEMBER_LEFT, room);
        a->sender = fb_strdup(key); /* who left */
        return;
    }
    p->out->ignored++;
}

static void message_event(struct pctx *p, json_t *ev, const char *room)
{
    const char *event_id = id_ok(json_object_get(ev, "event_id"), '$');
    const char *sender = id_ok(json_object_get(ev, "sender"), '@');
    json_t *content = json_object_get(ev, "content");
    if (!event_id || !sender || !json_is_object(content)) {
        p->out->skipped++;
        return;
    }
    if (json_object_size(content) == 0) { /* redacted */
        p->out->ignored++;
        return;
    }
    if (is_ignored_sender(p, sender)) {
        p->out->ignored++;
        return;
    }
    const char *msgtype = str_ok(json_object_get(content, "msgtype"), 64);
    if (!msgtype) {
        p->out->skipped++;
        return;
    }
    json_t *rel = json_object_get(content, "m.relates_to");
    const char *rel_type =
        json_is_object(rel) ? str_ok(json_object_get(rel, "rel_type"), 64) : NULL;
    if ((strcmp(msgtype, "m.text") != 0 && strcmp(msgtype, "m.emote") != 0) ||
        (rel_type && strcmp(rel_type, "m.replace") == 0)) {
        p->out->ignored++; /* notices (other bots), files, images, edits */
        return;
    }
    const char *body = str_ok(json_object_get(content, "body"), FB_MX_MAX_BODY);
    if (!body) {
        p->out->skipped++;
        return;
    }
    char *text = json_is_object(json_object_get(rel, "m.in_reply_to")) ? fb_mx_strip_fallback(body)
                                                                       : fb_strdup(body);
    for (char *c = text; *c; c++) /* control characters (the router refuses them): spaces */
        if ((unsigned char)*c < 0x20 && *c != '\t' && *c != '\n' && *c != '\r')
            *c = ' ';
    if (!text[strspn(text, " \t\r\n")]) {
        fb_free(text);
        p->out->ignored++;
        return;
    }
    const char *root = NULL;
    if (rel_type && strcmp(rel_type, "m.thread") == 0)
        root = id_ok(json_object_get(rel, "event_id"), '$');
    fb_mx_action_t *a = push(p, FB_MX_MESSAGE, room);
    a->event_id = fb_strdup(event_id);
    a->sender = fb_strdup(sender);
    a->text = text;
    json_t *ts = json_object_get(ev, "origin_server_ts");
    a->ts_ms = json_is_integer(ts) ? (int64_t)json_integer_value(ts) : 0;
    if (root) {
        a->thread_root = fb_strdup(root);
        fb_free(a->conv);
        a->conv = fb_asprintf("%s/%s", room, root);
    }
}

/* One event; `room` is the room id (NULL: read it from the event, as in a transaction). */
static void one_event(struct pctx *p, json_t *ev, const char *room, bool timeline)
{
    if (!json_is_object(ev)) {
        p->out->skipped++;
        return;
    }
    if (!room)
        room = id_ok(json_object_get(ev, "room_id"), '!');
    const char *type = str_ok(json_object_get(ev, "type"), 255);
    if (!room || !type) {
        p->out->skipped++;
        return;
    }
    if (strcmp(type, "m.room.message") == 0) {
        if (!timeline) {
            p->out->ignored++;
            return;
        }
        if (!p->o->history) {
            p->out->ignored++;
            return;
        }
        message_event(p, ev, room);
    } else if (strcmp(type, "m.room.member") == 0) {
        member_event(p, ev, room, timeline);
    } else if (strcmp(type, "m.room.encryption") == 0) {
        push(p, FB_MX_ENCRYPTED, room);
    } else if (strcmp(type, "m.room.encrypted") == 0) {
        const char *sender = id_ok(json_object_get(ev, "sender"), '@');
        if (!sender) {
            p->out->skipped++;
            return;
        }
        if (strcmp(sender, p->o->bot) == 0) {
            p->out->ignored++;
            return;
        }
        push(p, FB_MX_ENCRYPTED, room);
    } else if (strcmp(type, "im.vector.room.access_rules") == 0) {
        json_t *content = json_object_get(ev, "content");
        const char *rule =
            json_is_object(content) ? str_ok(json_object_get(content, "rule"), 64) : NULL;
        if (!rule) {
            p->out->skipped++;
            return;
        }
        fb_mx_action_t *a = push(p, FB_MX_RULE, room);
        a->text = fb_strdup(rule);
    } else {
        p->out->ignored++;
    }
}

static void events_array(struct pctx *p, json_t *arr, const char *room, bool timeline)
{
    if (!json_is_array(arr))
        return;
    size_t i;
    json_t *ev;
    json_array_foreach(arr, i, ev) one_event(p, ev, room, timeline);
}

static json_t *load(const char *body, size_t len, fb_mx_batch_t *out)
{
    if (!body)
        return NULL;
    size_t n = 0;
    char *fixed = fb_mx_json_repair(body, len, &n, &out->repaired);
    json_error_t err;
    json_t *root = json_loadb(fixed, n, JSON_ALLOW_NUL, &err);
    fb_free(fixed);
    if (root && !json_is_object(root)) {
        json_decref(root);
        root = NULL;
    }
    return root;
}

int fb_mx_parse_sync(const char *body, size_t len, const fb_mx_parse_opts_t *o, fb_mx_batch_t *out)
{
    if (!out || !o || !o->bot)
        return FB_EINVAL;
    json_t *root = load(body, len, out);
    if (!root)
        return FB_EPROTO;
    const char *next = str_ok(json_object_get(root, "next_batch"), 4096);
    if (!next) {
        json_decref(root);
        return FB_EPROTO;
    }
    out->next_batch = fb_strdup(next);
    struct pctx p = {o, out};
    json_t *rooms = json_object_get(root, "rooms");
    const char *room;
    json_t *r;
    json_object_foreach(json_object_get(rooms, "invite"), room, r)
    {
        if (room[0] != '!' || strlen(room) > FB_MX_MAX_ID || strstr(room, NONCHAR_UTF8)) {
            out->skipped++;
            continue;
        }
        size_t before = out->n;
        events_array(&p, json_object_get(json_object_get(r, "invite_state"), "events"), room,
                     false);
        bool invited = false;
        for (size_t i = before; i < out->n; i++)
            invited |= out->actions[i].kind == FB_MX_INVITE;
        if (!invited) /* no member event for us in the stripped state: still an invite */
            push(&p, FB_MX_INVITE, room);
        for (size_t i = before; i < out->n; i++)
            out->actions[i].invited = true; /* the bot is not in these rooms yet */
    }
    json_object_foreach(json_object_get(rooms, "join"), room, r)
    {
        if (room[0] != '!' || strlen(room) > FB_MX_MAX_ID || strstr(room, NONCHAR_UTF8)) {
            out->skipped++;
            continue;
        }
        events_array(&p, json_object_get(json_object_get(r, "state"), "events"), room, false);
        json_t *tl = json_object_get(r, "timeline");
        if (json_is_true(json_object_get(tl, "limited")) && o->history) {
            fb_mx_action_t *g = push(&p, FB_MX_GAP, room);
            const char *prev = str_ok(json_object_get(tl, "prev_batch"), 4096);
            if (g && prev)
                g->text = fb_strdup(prev);
        }
        events_array(&p, json_object_get(tl, "events"), room, true);
    }
    json_object_foreach(json_object_get(rooms, "leave"), room, r)
    {
        if (room[0] != '!' || strlen(room) > FB_MX_MAX_ID || strstr(room, NONCHAR_UTF8)) {
            out->skipped++;
            continue;
        }
        push(&p, FB_MX_LEFT, room);
    }
    json_decref(root);
    return 0;
}

int fb_mx_parse_txn(const char *body, size_t len, const fb_mx_parse_opts_t *o, fb_mx_batch_t *out)
{
    return fb_mx_parse_txn_digest(body, len, o, out, NULL);
}

int fb_mx_parse_txn_digest(const char *body, size_t len, const fb_mx_parse_opts_t *o,
                           fb_mx_batch_t *out, char digest[FB_MX_TXN_DIGEST_LEN + 1])
{
    if (digest)
        digest[0] = '\0';
    if (!out || !o || !o->bot)
        return FB_EINVAL;
    json_t *root = load(body, len, out);
    if (digest && root)
        (void)digest_doc(root, len, digest);
    json_t *events = root ? json_object_get(root, "events") : NULL;
    if (!json_is_array(events)) {
        json_decref(root);
        return FB_EPROTO;
    }
    struct pctx p = {o, out};
    events_array(&p, events, NULL, true);
    json_decref(root);
    return 0;
}

void fb_mx_batch_free(fb_mx_batch_t *b)
{
    for (size_t i = 0; i < b->n; i++) {
        fb_mx_action_t *a = &b->actions[i];
        fb_free(a->room);
        fb_free(a->conv);
        fb_free(a->thread_root);
        fb_free(a->event_id);
        fb_free(a->sender);
        fb_free(a->sender_name);
        fb_free(a->text);
    }
    fb_free(b->actions);
    fb_free(b->next_batch);
    memset(b, 0, sizeof(*b));
}

char *fb_mx_strip_fallback(const char *body)
{
    const char *p = body;
    bool quoted = false;
    while (*p == '>') {
        quoted = true;
        const char *nl = strchr(p, '\n');
        if (!nl)
            return fb_strdup("");
        p = nl + 1;
    }
    if (quoted && *p == '\n')
        p++;
    return fb_strdup(p);
}

/* ---------------------------------------------------------------------------------------- */
/* Globs, ids, comparisons */

bool fb_mx_glob(const char *pat, const char *s)
{
    const char *star = NULL, *resume = NULL;
    while (*s) {
        if (*pat == '*') {
            star = pat++;
            resume = s;
        } else if (*pat &&
                   (*pat == '?' || tolower((unsigned char)*pat) == tolower((unsigned char)*s))) {
            pat++;
            s++;
        } else if (star) {
            pat = star + 1;
            s = ++resume;
        } else {
            return false;
        }
    }
    while (*pat == '*')
        pat++;
    return *pat == '\0';
}

bool fb_mx_glob_any(const char *const *globs, const char *s)
{
    for (; globs && *globs; globs++)
        if (fb_mx_glob(*globs, s))
            return true;
    return false;
}

const char *fb_mx_server_name(const char *user_id)
{
    if (!user_id || user_id[0] != '@')
        return NULL;
    const char *c = strchr(user_id, ':');
    return c && c[1] ? c + 1 : NULL;
}

bool fb_mx_invite_allowed(const char *const *servers, const char *const *users, const char *bot,
                          const char *inviter)
{
    const char *server = fb_mx_server_name(inviter);
    if (!server)
        return false;
    bool none = (!servers || !*servers) && (!users || !*users);
    if (none) {
        const char *own = fb_mx_server_name(bot);
        return own && strcasecmp(own, server) == 0;
    }
    return fb_mx_glob_any(servers, server) || fb_mx_glob_any(users, inviter);
}

bool fb_mx_ct_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    /* Compare over the expected length (b); a length difference is folded into the result. */
    volatile unsigned char diff = (unsigned char)(alen != blen);
    for (size_t i = 0; i < blen; i++)
        diff |= (unsigned char)((i < alen ? (unsigned char)a[i] : 0) ^ (unsigned char)b[i]);
    return diff == 0;
}

void fb_mx_tag(const char *conv, char out[FB_MX_TAG_LEN + 1])
{
    fb_sha256_tag(conv, FB_MX_TAG_LEN / 2, out);
}

int fb_mx_conv_split(const char *conv, char **room, char **root)
{
    *room = *root = NULL;
    if (!conv || (conv[0] != '!' && conv[0] != '#') || strlen(conv) > 2 * FB_MX_MAX_ID + 1)
        return FB_EINVAL;
    const char *sep = strstr(conv, "/$");
    if (!sep) {
        *room = fb_strdup(conv);
        return 0;
    }
    if (sep == conv + 1 || sep[2] == '\0')
        return FB_EINVAL;
    *room = fb_strndup(conv, (size_t)(sep - conv));
    *root = fb_strdup(sep + 1);
    return 0;
}

bool fb_mx_alias_ok(const char *s)
{
    if (!s || s[0] != '#' || strlen(s) > FB_MX_MAX_ID)
        return false;
    const char *colon = strchr(s, ':');
    if (!colon || colon == s + 1 || colon[1] == '\0')
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= ' ' || *p == '/' || *p == 0x7f)
            return false;
    return true;
}

char **fb_mx_route_aliases(char *const *lines)
{
    size_t n = 0;
    while (lines && lines[n])
        n++;
    char **out = fb_calloc(n + 1, sizeof(*out));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *v = strchr(lines[i], ' ');
        while (v && *v == ' ')
            v++;
        if (!v || !fb_mx_alias_ok(v))
            continue;
        bool seen = false;
        for (size_t j = 0; j < k && !seen; j++)
            seen = strcmp(out[j], v) == 0;
        if (!seen)
            out[k++] = fb_strdup(v);
    }
    return out;
}

void fb_mx_strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        fb_free(v[i]);
    fb_free(v);
}

char *fb_mx_conv_with_room(const char *conv, const char *room)
{
    size_t n = strlen(conv);
    const char *dollar = strstr(conv, "/$");
    const char *tilde = strstr(conv, "/~");
    if (dollar && (size_t)(dollar - conv) < n)
        n = (size_t)(dollar - conv);
    if (tilde && (size_t)(tilde - conv) < n)
        n = (size_t)(tilde - conv);
    return fb_asprintf("%s%s", room, conv + n);
}

/* ---------------------------------------------------------------------------------------- */
/* HTML filter and message content */

static const char *const allowed_tags[] = {
    "font", "del", "h1",      "h2",  "h3",   "h4",      "h5",      "h6",    "blockquote", "p",
    "a",    "ul",  "ol",      "sup", "sub",  "li",      "b",       "i",     "u",          "strong",
    "em",   "s",   "code",    "hr",  "br",   "div",     "table",   "thead", "tbody",      "tr",
    "th",   "td",  "caption", "pre", "span", "details", "summary", NULL};

static bool tag_allowed(const char *name)
{
    for (const char *const *t = allowed_tags; *t; t++)
        if (strcmp(*t, name) == 0)
            return true;
    return false;
}

static bool safe_href(const char *v)
{
    return strncasecmp(v, "http://", 7) == 0 || strncasecmp(v, "https://", 8) == 0 ||
           strncasecmp(v, "mailto:", 7) == 0;
}

/* Appends `s` (n bytes) escaped for a double-quoted attribute; '&' kept (already an entity). */
static void put_attr(fb_buf_t *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"')
            (void)fb_buf_puts(b, "&quot;");
        else if (s[i] == '<')
            (void)fb_buf_puts(b, "&lt;");
        else if (s[i] == '>')
            (void)fb_buf_puts(b, "&gt;");
        else
            (void)fb_buf_append(b, s + i, 1);
    }
}

/* Parses the tag at s[0] == '<'. Appends what is kept and returns the bytes consumed, or 0 when
 * this '<' does not start a tag. */
static size_t one_tag(fb_buf_t *b, const char *s)
{
    const char *p = s + 1;
    if (strncmp(p, "!--", 3) == 0) {
        const char *end = strstr(p + 3, "-->");
        return end ? (size_t)(end + 3 - s) : strlen(s);
    }
    bool closing = *p == '/';
    if (closing)
        p++;
    char name[16];
    size_t nl = 0;
    while (isalnum((unsigned char)p[nl]) && nl < sizeof(name) - 1) {
        name[nl] = (char)tolower((unsigned char)p[nl]);
        nl++;
    }
    name[nl] = '\0';
    if (nl == 0 || isalnum((unsigned char)p[nl]))
        return 0;
    p += nl;
    /* Attributes up to '>', honouring quotes. */
    const char *href = NULL;
    size_t href_len = 0;
    while (*p && *p != '>') {
        if (isspace((unsigned char)*p) || *p == '/') {
            p++;
            continue;
        }
        const char *an = p;
        while (*p && !isspace((unsigned char)*p) && *p != '=' && *p != '>' && *p != '/')
            p++;
        size_t anl = (size_t)(p - an);
        if (anl == 0) {
            p++;
            continue;
        }
        while (isspace((unsigned char)*p))
            p++;
        const char *v = NULL;
        size_t vl = 0;
        if (*p == '=') {
            p++;
            while (isspace((unsigned char)*p))
                p++;
            if (*p == '"' || *p == '\'') {
                char q = *p++;
                v = p;
                while (*p && *p != q)
                    p++;
                if (!*p)
                    return 0;
                vl = (size_t)(p - v);
                p++;
            } else {
                v = p;
                while (*p && !isspace((unsigned char)*p) && *p != '>')
                    p++;
                vl = (size_t)(p - v);
            }
        }
        if (anl == 4 && strncasecmp(an, "href", 4) == 0 && v) {
            href = v;
            href_len = vl;
        }
    }
    if (*p != '>')
        return 0;
    p++;
    if (tag_allowed(name)) {
        if (closing) {
            (void)fb_buf_printf(b, "</%s>", name);
        } else if (strcmp(name, "a") == 0 && href) {
            char *h = fb_strndup(href, href_len);
            if (safe_href(h)) {
                (void)fb_buf_puts(b, "<a href=\"");
                put_attr(b, h, href_len);
                (void)fb_buf_puts(b, "\">");
            } else {
                (void)fb_buf_puts(b, "<a>");
            }
            fb_free(h);
        } else {
            (void)fb_buf_printf(b, "<%s>", name);
        }
    }
    return (size_t)(p - s);
}

char *fb_mx_html_filter(const char *html)
{
    fb_buf_t b;
    fb_buf_init(&b, BUF_MAX);
    (void)fb_buf_puts(&b, "");
    for (const char *p = html ? html : ""; *p;) {
        if (*p == '<') {
            size_t n = one_tag(&b, p);
            if (n) {
                p += n;
                continue;
            }
            (void)fb_buf_puts(&b, "&lt;");
            p++;
        } else if (*p == '>') {
            (void)fb_buf_puts(&b, "&gt;");
            p++;
        } else {
            (void)fb_buf_append(&b, p, 1);
            p++;
        }
    }
    return fb_buf_take(&b);
}

json_t *fb_mx_message_content(const char *msgtype, const char *text, const char *html,
                              const char *thread_root)
{
    if (!text || !msgtype)
        return NULL;
    json_t *c = json_object();
    json_object_set_new(c, "msgtype", json_string(msgtype));
    json_object_set_new(c, "body", json_string(text));
    if (!json_object_get(c, "body")) { /* not UTF-8 */
        json_decref(c);
        return NULL;
    }
    if (html && *html) {
        char *f = fb_mx_html_filter(html);
        json_t *fs = json_string(f);
        fb_free(f);
        if (fs) {
            json_object_set_new(c, "format", json_string("org.matrix.custom.html"));
            json_object_set_new(c, "formatted_body", fs);
        }
    }
    json_object_set_new(c, "m.mentions", json_object());
    if (thread_root)
        fb_mx_thread_relation(c, thread_root);
    return c;
}

const char *fb_mx_msgtype_of(const char *kind, const char *reminder_msgtype)
{
    static const char *const must_see[] = {"relay", "ticket", "roadmap"};
    if (!kind)
        return "m.notice";
    if (strcmp(kind, "reminder") == 0)
        return reminder_msgtype ? reminder_msgtype : "m.text";
    for (size_t i = 0; i < sizeof(must_see) / sizeof(must_see[0]); i++)
        if (strcmp(kind, must_see[i]) == 0)
            return "m.text";
    return "m.notice";
}

/* Replaces string member `key` of `content` by `head` + its value + `tail` (when it is there). */
static void wrap_member(json_t *content, const char *key, const char *head, const char *tail)
{
    const char *v = json_string_value(json_object_get(content, key));
    if (!v)
        return;
    char *s = fb_asprintf("%s%s%s", head, v, tail);
    json_object_set_new(content, key, json_string(s));
    fb_free(s);
}

void fb_mx_ticket_mentions(json_t *content, const char *mode, char *const *users)
{
    if (!content || !mode)
        return;
    json_t *mentions = json_object_get(content, "m.mentions");
    if (!json_is_object(mentions)) {
        mentions = json_object();
        json_object_set_new(content, "m.mentions", mentions);
    }
    if (strcmp(mode, "room") == 0) {
        json_object_set_new(mentions, "room", json_true());
        wrap_member(content, "body", "@room ", "");
        wrap_member(content, "formatted_body", "@room ", "");
    } else if (strcmp(mode, "advisors") == 0 && users && users[0]) {
        json_t *ids = json_array();
        fb_buf_t plain, html;
        fb_buf_init(&plain, 1u << 16);
        fb_buf_init(&html, 1u << 16);
        (void)fb_buf_puts(&plain, "\n\n");
        (void)fb_buf_puts(&html, "<p>");
        for (size_t i = 0; users[i]; i++) {
            json_array_append_new(ids, json_string(users[i]));
            /* the configuration allows no HTML-special character in a user id */
            (void)fb_buf_printf(&plain, "%s%s", i ? " " : "", users[i]);
            (void)fb_buf_printf(&html, "%s<a href=\"https://matrix.to/#/%s\">%s</a>", i ? " " : "",
                                users[i], users[i]);
        }
        (void)fb_buf_puts(&html, "</p>");
        json_object_set_new(mentions, "user_ids", ids);
        wrap_member(content, "body", "", fb_buf_str(&plain));
        wrap_member(content, "formatted_body", "", fb_buf_str(&html));
        fb_buf_free(&plain);
        fb_buf_free(&html);
    }
}

void fb_mx_thread_relation(json_t *content, const char *thread_root)
{
    json_t *rel =
        json_pack("{s:s, s:s, s:b, s:{s:s}}", "rel_type", "m.thread", "event_id", thread_root,
                  "is_falling_back", 1, "m.in_reply_to", "event_id", thread_root);
    if (rel)
        json_object_set_new(content, "m.relates_to", rel);
}

/* ---------------------------------------------------------------------------------------- */
/* Registration */

char *fb_mx_regex_escape(const char *s)
{
    fb_buf_t b;
    fb_buf_init(&b, BUF_MAX);
    (void)fb_buf_puts(&b, "");
    for (; *s; s++) {
        if (strchr("\\^$.|?*+()[]{}", *s))
            (void)fb_buf_append(&b, "\\", 1);
        (void)fb_buf_append(&b, s, 1);
    }
    return fb_buf_take(&b);
}

/* A YAML double-quoted scalar. */
static void yaml_quoted(fb_buf_t *b, const char *s)
{
    (void)fb_buf_append(b, "\"", 1);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            (void)fb_buf_append(b, "\\", 1);
        (void)fb_buf_append(b, s, 1);
    }
    (void)fb_buf_append(b, "\"", 1);
}

char *fb_mx_registration_yaml(const char *id, const char *url, const char *user_id,
                              const char *as_token, const char *hs_token, bool e2ee)
{
    const char *server = fb_mx_server_name(user_id);
    if (!server || !id || !url || !as_token || !hs_token)
        return NULL;
    char *local = fb_strndup(user_id + 1, (size_t)(server - 1 - (user_id + 1)));
    if (!*local) {
        fb_free(local);
        return NULL;
    }
    char *re = fb_mx_regex_escape(user_id);
    fb_buf_t b;
    fb_buf_init(&b, BUF_MAX);
    (void)fb_buf_puts(&b, "# Application service registration of frichebot, written by\n"
                          "# `frichebot matrix-registration`. It holds secrets: keep it private.\n"
                          "id: ");
    yaml_quoted(&b, id);
    (void)fb_buf_puts(&b, "\nurl: ");
    yaml_quoted(&b, url);
    (void)fb_buf_puts(&b, "\nas_token: ");
    yaml_quoted(&b, as_token);
    (void)fb_buf_puts(&b, "\nhs_token: ");
    yaml_quoted(&b, hs_token);
    (void)fb_buf_puts(&b, "\nsender_localpart: ");
    yaml_quoted(&b, local);
    (void)fb_buf_puts(&b, "\nnamespaces:\n  users:\n    - exclusive: true\n      regex: ");
    yaml_quoted(&b, re);
    (void)fb_buf_puts(&b, "\n  aliases: []\n  rooms: []\nrate_limited: false\n");
    /* the bot's device made by the service (MSC4190), in both modes: the homeserver then keeps
       the transaction ids of its sends across its restarts (mx_as_device.c) */
    (void)fb_buf_puts(&b, "# the service makes its bot a device: its sends' transaction ids\n"
                          "# then outlive a homeserver restart (no reply stored twice)\n"
                          "io.element.msc4190: true\n");
    if (e2ee) /* to-device events, device lists and key counts in the transactions (MSC2409,
                 MSC3202) */
        (void)fb_buf_puts(&b, "# end-to-end encryption (matrix.crypto): the homeserver needs\n"
                              "# experimental_features: {msc3202_transaction_extensions: true,\n"
                              "#   msc2409_to_device_messages_enabled: true}\n"
                              "receive_ephemeral: true\n"
                              "de.sorunome.msc2409.push_ephemeral: true\n"
                              "org.matrix.msc3202: true\n");
    fb_free(local);
    fb_free(re);
    return fb_buf_take(&b);
}

int fb_mx_registration_tokens(const char *text, size_t len, char **as_token, char **hs_token,
                              const char **why)
{
    *as_token = *hs_token = NULL;
    *why = NULL;
    /* Line-based: "as_token: VALUE" at the start of a line, VALUE plain or double-quoted
     * without escapes (what the writer produces, and what operators write). */
    char *tok[2] = {NULL, NULL};
    static const char *const names[2] = {"as_token:", "hs_token:"};
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        for (int k = 0; k < 2; k++) {
            size_t kl = strlen(names[k]);
            if ((size_t)(le - p) > kl && memcmp(p, names[k], kl) == 0) {
                const char *v = p + kl;
                while (v < le && (*v == ' ' || *v == '\t'))
                    v++;
                const char *ve = le;
                while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t' || ve[-1] == '\r'))
                    ve--;
                if (ve - v >= 2 &&
                    ((*v == '"' && ve[-1] == '"') || (*v == '\'' && ve[-1] == '\''))) {
                    v++;
                    ve--;
                }
                fb_free(tok[k]);
                tok[k] = fb_strndup(v, (size_t)(ve - v));
            }
        }
        p = le + 1;
    }
    for (int k = 0; k < 2; k++) {
        bool ok = tok[k] && strlen(tok[k]) >= FB_MX_MIN_TOKEN;
        for (const char *c = tok[k]; ok && *c; c++)
            ok = (unsigned char)*c > ' ' && *c != 0x7f && *c != '"' && *c != '\\';
        if (!ok) {
            *why = k == 0 ? "as_token is missing, shorter than 16 characters or not plain"
                          : "hs_token is missing, shorter than 16 characters or not plain";
            for (int j = 0; j < 2; j++)
                if (tok[j]) {
                    explicit_bzero(tok[j], strlen(tok[j]));
                    fb_free(tok[j]);
                }
            return FB_EINVAL;
        }
    }
    *as_token = tok[0];
    *hs_token = tok[1];
    return 0;
}

int fb_mx_random_token(char out[FB_MX_TOKEN_HEX + 1])
{
    unsigned char r[FB_MX_TOKEN_HEX / 2];
    size_t got = 0;
    while (got < sizeof(r)) {
        ssize_t n = getrandom(r + got, sizeof(r) - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return FB_ESYS;
        got += (size_t)n;
    }
    for (size_t i = 0; i < sizeof(r); i++)
        snprintf(out + (size_t)2 * i, 3, "%02x", r[i]);
    explicit_bzero(r, sizeof(r));
    return 0;
}

char *fb_mx_path_escape(const char *s)
{
    fb_buf_t b;
    fb_buf_init(&b, BUF_MAX);
    (void)fb_buf_puts(&b, "");
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~')
            (void)fb_buf_append(&b, s, 1);
        else
            (void)fb_buf_printf(&b, "%%%02X", c);
    }
    return fb_buf_take(&b);
}

/* ---------------------------------------------------------------------------------------- */
/* Application-service transactions: what they carry for the bot's device */

/* txn[key][user][device] when it is there, else NULL (borrowed). */
static json_t *txn_for_device(const json_t *txn, const char *key, const char *user,
                              const char *device)
{
    json_t *u = json_object_get(json_object_get(txn, key), user);
    return json_is_object(u) ? json_object_get(u, device) : NULL;
}

json_t *fb_mx_txn_crypto(const json_t *txn, const char *user_id, const char *device_id)
{
    json_t *out = json_object();
    json_t *evs = json_array();
    json_object_set_new(out, "to_device", json_pack("{s:o}", "events", evs));
    /* the stable-to-be name first; Synapse sends the older one (the same events) */
    json_t *td = json_object_get(txn, "org.matrix.msc2409.to_device");
    if (!json_is_array(td))
        td = json_object_get(txn, "de.sorunome.msc2409.to_device");
    size_t i;
    json_t *ev;
    json_array_foreach(td, i, ev)
    {
        const char *u = json_string_value(json_object_get(ev, "to_user_id"));
        const char *d = json_string_value(json_object_get(ev, "to_device_id"));
        if (json_is_object(ev) && u && d && user_id && device_id && strcmp(u, user_id) == 0 &&
            strcmp(d, device_id) == 0)
            json_array_append(evs, ev);
    }
    json_t *dl = json_object_get(txn, "org.matrix.msc3202.device_lists");
    json_t *lists = json_object();
    static const char *const names[] = {"changed", "left"};
    for (int k = 0; k < 2; k++) {
        json_t *a = json_array();
        json_array_foreach(json_object_get(dl, names[k]), i, ev) if (json_is_string(ev))
            json_array_append(a, ev);
        json_object_set_new(lists, names[k], a);
    }
    json_object_set_new(out, "device_lists", lists);
    if (!user_id || !device_id)
        return out;
    json_t *cnt =
        txn_for_device(txn, "org.matrix.msc3202.device_one_time_keys_count", user_id, device_id);
    if (!json_is_object(cnt)) /* the name of MSC3202's first drafts */
        cnt = txn_for_device(txn, "org.matrix.msc3202.device_one_time_key_counts", user_id,
                             device_id);
    if (json_is_object(cnt))
        json_object_set_new(out, "device_one_time_keys_count", json_deep_copy(cnt));
    json_t *fbk = txn_for_device(txn, "org.matrix.msc3202.device_unused_fallback_key_types",
                                 user_id, device_id);
    if (json_is_array(fbk))
        json_object_set_new(out, "device_unused_fallback_key_types", json_deep_copy(fbk));
    return out;
}
