/* SPDX-License-Identifier: MIT */
/*
 * mx_crypto.c - the end-to-end encryption state machine of the Matrix adapter (mx_crypto.h), on
 * libolm. Pure: no I/O; the only outside input is getrandom().
 *
 * Stored state: one Redis hash, one field per object, so that a change rewrites only that
 * object. The field names are stable (the adapter never parses them, fb_mxc_load() does):
 *
 *   account                     the OlmAccount pickle (encrypted with the pickle key), raw
 *   misc                        {"published": bool}: device_keys were uploaded
 *   xsign                       {"master": pub, "self_signing": pub, "user_signing": pub} once
 *                               cross-signing was uploaded (public keys only)
 *   seen                        ["hex", ...]: the last 1000 Olm ciphertexts handled (16 bytes of
 *                               SHA-256 of sender_key|body), oldest first: FB_MXC_REPLAY
 *   failed                      {user: {device: ms}}: failed /keys/claim, retried after an hour
 *   dev|<user>                  {"devices": {device: {"curve25519","ed25519","cross_signed"}},
 *                               "master": pub?, "self_signing": pub?, "tracked", "outdated"}
 *   olm|<curve25519>|<id>       {"pickle", "used"}: an Olm session with the device whose identity
 *                               key is <curve25519>; "used" orders sessions by last use (at
 *                               most 8 per device, the least recently used dropped)
 *   in|<room>|<sender key>|<id> {"room","sender_key","id","sender","ed25519","pickle",
 *                               "idx": {"message index": event id}} an inbound Megolm session;
 *                               ed25519 is the key its sending device claimed; idx keeps the
 *                               last 1000 indexes for replay protection
 *   out|<room>                  {"pickle","id","created","count","shared": {user: {device: curve}}}
 *                               the room's outbound Megolm session
 *
 * Values other than `account` are JSON. A field whose object is gone is handed as JSON null
 * (HDEL). Pickles are encrypted by libolm with the pickle key; the rest holds only public keys,
 * ids and counters.
 *
 * libolm pitfalls handled here: olm_decrypt, olm_group_decrypt, their *_max_plaintext_length,
 * olm_create_inbound_session, olm_matches_inbound_session*, olm_ed25519_verify,
 * olm_init/import_inbound_group_session and every olm_unpickle_* overwrite their input buffer
 * (base64 decoded in place): each call gets a fresh copy.
 */
#include "mx_crypto.h"

#include <errno.h>
#include <inttypes.h>
#include <olm/olm.h>
#include <olm/pk.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <jansson.h>

#include "common/digest.h"
#include "frichebot/alloc.h"
#include "frichebot/err.h"
#include "frichebot/log.h"
#include "matrix.h"

#define MXC_SEEN_MAX      1000
#define MXC_IDX_MAX       1000
#define MXC_CLAIM_RETRY   3600000
#define MXC_OLM_PER_PEER  8 /* Olm sessions kept per peer device, least recently used dropped */
#define MXC_DEF_PERIOD_MS 604800000
#define MXC_DEF_PERIOD_N  100
#define MXC_MAX_SAFE_INT  9007199254740991LL

struct olm_sess {
    struct olm_sess *next;
    char *field;
    char *curve;
    OlmSession *s;
    uint64_t used;
};

struct in_sess {
    struct in_sess *next;
    char *field;
    char *room, *sender_key, *id, *sender, *ed25519;
    OlmInboundGroupSession *s;
    json_t *idx; /* {"index": event id} */
};

struct out_sess {
    struct out_sess *next;
    char *field;
    char *room, *id;
    OlmOutboundGroupSession *s;
    int64_t created;
    long count;
    json_t *shared; /* {user: {device: curve}} */
};

struct fb_mxc {
    char *user, *device;
    uint8_t *pk;
    size_t pk_len;
    OlmAccount *acct;
    char curve[64], ed[64];
    bool published;
    json_t *xsign;
    struct olm_sess *olm;
    uint64_t seq;
    struct in_sess *in;
    struct out_sess *out;
    json_t *devs;   /* {user: per-user object, see the top comment} */
    json_t *failed; /* {user: {device: ms}} */
    json_t *seen;   /* ["hex"] */
    json_t *dirty;  /* {field: true} */
};

/* ---------------------------------------------------------------------------------------- */
/* Small helpers */

/* Fills `buf` with `n` random bytes from the kernel; aborts if the kernel cannot (never
 * happens after boot). */
static void mxc_random(void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            FB_ASSERT(errno == EINTR);
            continue;
        }
        p += r;
        n -= (size_t)r;
    }
}

/* Wipes then frees `p` of `n` bytes (NULL is fine). */
static void wipe_free(void *p, size_t n)
{
    if (!p)
        return;
    explicit_bzero(p, n);
    fb_free(p);
}

static void wipe_free_str(char *s)
{
    if (s)
        wipe_free(s, strlen(s));
}

/* A NUL-terminated copy of the first `n` bytes of `s` (libolm eats its inputs). */
static uint8_t *dup_bytes(const void *s, size_t n)
{
    uint8_t *p = fb_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* The string member `k` of `o`, or NULL when absent or not a string. Borrowed. */
static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/* `j` without its const: jansson's iteration macros and json_copy take json_t *. */
static json_t *unconst(const json_t *j)
{
    union {
        const json_t *c;
        json_t *m;
    } u = {.c = j};
    return u.m;
}

/* Zeroes, in place, the string member `k` of `o` (a session key about to be freed): jansson
 * frees strings without wiping them. */
static void wipe_member(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    const char *cs = json_string_value(v);
    if (!cs)
        return;
    char *s;
    memcpy(&s, &cs, sizeof(s)); /* jansson's own heap copy, writable */
    explicit_bzero(s, json_string_length(v));
}

static bool streq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

static void mark(fb_mxc_t *c, const char *field)
{
    json_object_set_new(c->dirty, field, json_true());
}

/* A log tag of `s` that does not reveal it (8 hex digits). */
static void tag(const char *s, char out[9])
{
    fb_sha256_tag(s ? s : "", 4, out);
}

/* A fresh object from the libolm JSON string `s` of `n` bytes, or NULL. */
static json_t *olm_json(const void *s, size_t n)
{
    return json_loadb(s, n, 0, NULL);
}

/* ---------------------------------------------------------------------------------------- */
/* Canonical JSON and signatures */

/* A growable buffer for the canonical form. */
struct cbuf {
    char *p;
    size_t len, cap;
};

static void cb_put(struct cbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->p = fb_realloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void cb_str(struct cbuf *b, const char *s, size_t n)
{
    cb_put(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        const char *esc = NULL;
        char u[8];
        switch (ch) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        default:
            if (ch < 0x20) {
                snprintf(u, sizeof(u), "\\u%04x", ch);
                esc = u;
            }
        }
        if (esc) {
            cb_put(b, s + run, i - run);
            cb_put(b, esc, strlen(esc));
            run = i + 1;
        }
    }
    cb_put(b, s + run, n - run);
    cb_put(b, "\"", 1);
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Appends the canonical form of `v` to `b`; false when `v` holds a non-integral number or one
 * outside the safe range, or nests too deep. */
static bool canon(struct cbuf *b, const json_t *v, int depth)
{
    char num[32];
    if (depth > 64)
        return false;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        size_t n = json_object_size(v), i = 0;
        const char **keys = fb_calloc(n ? n : 1, sizeof(*keys));
        const char *k;
        json_t *x;
        json_object_foreach(unconst(v), k, x) keys[i++] = k;
        qsort(keys, n, sizeof(*keys), cmp_key);
        cb_put(b, "{", 1);
        bool ok = true;
        for (i = 0; i < n && ok; i++) {
            if (i)
                cb_put(b, ",", 1);
            cb_str(b, keys[i], strlen(keys[i]));
            cb_put(b, ":", 1);
            ok = canon(b, json_object_get(v, keys[i]), depth + 1);
        }
        fb_free(keys);
        cb_put(b, "}", 1);
        return ok;
    }
    case JSON_ARRAY:
        cb_put(b, "[", 1);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i)
                cb_put(b, ",", 1);
            if (!canon(b, json_array_get(v, i), depth + 1))
                return false;
        }
        cb_put(b, "]", 1);
        return true;
    case JSON_STRING:
        cb_str(b, json_string_value(v), json_string_length(v));
        return true;
    case JSON_INTEGER: {
        json_int_t x = json_integer_value(v);
        if (x > MXC_MAX_SAFE_INT || x < -MXC_MAX_SAFE_INT)
            return false;
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, x);
        cb_put(b, num, strlen(num));
        return true;
    }
    case JSON_REAL: {
        /* Only integral values are allowed ("1e10" is the integer 10000000000). */
        double d = json_real_value(v);
        if (!(d >= -(double)MXC_MAX_SAFE_INT && d <= (double)MXC_MAX_SAFE_INT) ||
            d != (double)(long long)d)
            return false;
        snprintf(num, sizeof(num), "%lld", (long long)d);
        cb_put(b, num, strlen(num));
        return true;
    }
    case JSON_TRUE:
        cb_put(b, "true", 4);
        return true;
    case JSON_FALSE:
        cb_put(b, "false", 5);
        return true;
    case JSON_NULL:
        cb_put(b, "null", 4);
        return true;
    }
    return false;
}

char *fb_mxc_canonical(const json_t *obj)
{
    if (!obj)
        return NULL;
    json_t *o = json_is_object(obj) ? json_copy(unconst(obj)) : json_incref(unconst(obj));
    if (json_is_object(o)) {
        json_object_del(o, "signatures");
        json_object_del(o, "unsigned");
    }
    struct cbuf b = {0};
    bool ok = canon(&b, o, 0);
    json_decref(o);
    if (!ok) {
        fb_free(b.p);
        return NULL;
    }
    return b.p;
}

static bool verify_raw(const char *ed25519, const char *msg, const char *sig)
{
    if (!ed25519 || !sig || !msg)
        return false;
    uint8_t *mem = fb_malloc(olm_utility_size());
    OlmUtility *u = olm_utility(mem);
    uint8_t *sc = dup_bytes(sig, strlen(sig));
    size_t r = olm_ed25519_verify(u, ed25519, strlen(ed25519), msg, strlen(msg), sc, strlen(sig));
    olm_clear_utility(u);
    fb_free(mem);
    fb_free(sc);
    return r != olm_error();
}

bool fb_mxc_verify(const json_t *obj, const char *user, const char *key_id, const char *ed25519)
{
    if (!json_is_object(obj) || !user || !key_id || !ed25519)
        return false;
    const char *sig = jstr(json_object_get(json_object_get(obj, "signatures"), user), key_id);
    if (!sig)
        return false;
    char *can = fb_mxc_canonical(obj);
    bool ok = verify_raw(ed25519, can, sig);
    fb_free(can);
    return ok;
}

/* The device's signature of the canonical form of `obj`, new string, or NULL. */
static char *acct_sign(fb_mxc_t *c, const json_t *obj)
{
    char *can = fb_mxc_canonical(obj);
    if (!can)
        return NULL;
    size_t n = olm_account_signature_length(c->acct);
    char *sig = fb_malloc(n + 1);
    if (olm_account_sign(c->acct, can, strlen(can), sig, n) == olm_error()) {
        fb_free(sig);
        sig = NULL;
    } else {
        sig[n] = 0;
    }
    fb_free(can);
    return sig;
}

/* Adds obj.signatures[user][key_id] = sig (sig stolen). */
static void add_sig(json_t *obj, const char *user, const char *key_id, char *sig)
{
    json_t *sigs = json_object_get(obj, "signatures");
    if (!json_is_object(sigs)) {
        sigs = json_object();
        json_object_set_new(obj, "signatures", sigs);
    }
    json_t *u = json_object_get(sigs, user);
    if (!json_is_object(u)) {
        u = json_object();
        json_object_set_new(sigs, user, u);
    }
    json_object_set_new(u, key_id, json_string(sig));
    fb_free(sig);
}

static bool sign_device(fb_mxc_t *c, json_t *obj)
{
    char *sig = acct_sign(c, obj);
    if (!sig)
        return false;
    char *kid = fb_asprintf("ed25519:%s", c->device);
    add_sig(obj, c->user, kid, sig);
    fb_free(kid);
    return true;
}

/* ---------------------------------------------------------------------------------------- */
/* Lifecycle */

fb_mxc_t *fb_mxc_new(const fb_mxc_opts_t *o)
{
    if (!o || !o->user_id || !o->device_id || !o->pickle_key || o->pickle_key_len < 32 ||
        !*o->user_id || !*o->device_id)
        return NULL;
    fb_mxc_t *c = fb_calloc(1, sizeof(*c));
    c->user = fb_strdup(o->user_id);
    c->device = fb_strdup(o->device_id);
    c->pk = (uint8_t *)dup_bytes(o->pickle_key, o->pickle_key_len);
    c->pk_len = o->pickle_key_len;
    c->devs = json_object();
    c->failed = json_object();
    c->seen = json_array();
    c->dirty = json_object();
    return c;
}

static void olm_sess_free(struct olm_sess *s)
{
    olm_clear_session(s->s);
    fb_free(s->s);
    fb_free(s->field);
    fb_free(s->curve);
    fb_free(s);
}

static void in_sess_free(struct in_sess *s)
{
    olm_clear_inbound_group_session(s->s);
    fb_free(s->s);
    fb_free(s->field);
    fb_free(s->room);
    fb_free(s->sender_key);
    fb_free(s->id);
    fb_free(s->sender);
    fb_free(s->ed25519);
    json_decref(s->idx);
    fb_free(s);
}

static void out_sess_free(struct out_sess *s)
{
    olm_clear_outbound_group_session(s->s);
    fb_free(s->s);
    fb_free(s->field);
    fb_free(s->room);
    fb_free(s->id);
    json_decref(s->shared);
    fb_free(s);
}

void fb_mxc_free(fb_mxc_t *c)
{
    if (!c)
        return;
    if (c->acct) {
        olm_clear_account(c->acct);
        fb_free(c->acct);
    }
    while (c->olm) {
        struct olm_sess *n = c->olm->next;
        olm_sess_free(c->olm);
        c->olm = n;
    }
    while (c->in) {
        struct in_sess *n = c->in->next;
        in_sess_free(c->in);
        c->in = n;
    }
    while (c->out) {
        struct out_sess *n = c->out->next;
        out_sess_free(c->out);
        c->out = n;
    }
    wipe_free(c->pk, c->pk_len);
    fb_free(c->user);
    fb_free(c->device);
    json_decref(c->xsign);
    json_decref(c->devs);
    json_decref(c->failed);
    json_decref(c->seen);
    json_decref(c->dirty);
    fb_free(c);
}

/* ---------------------------------------------------------------------------------------- */
/* Pickling */

/* The pickle of an olm object, new NUL-terminated string, or NULL. */
#define PICKLE(kind, obj)                                                                          \
    do {                                                                                           \
        size_t n_ = olm_pickle_##kind##_length(obj);                                               \
        char *p_ = fb_malloc(n_ + 1);                                                              \
        if (olm_pickle_##kind(obj, c->pk, c->pk_len, p_, n_) == olm_error()) {                     \
            fb_free(p_);                                                                           \
            return NULL;                                                                           \
        }                                                                                          \
        p_[n_] = 0;                                                                                \
        return p_;                                                                                 \
    } while (0)

static char *pickle_account(fb_mxc_t *c, OlmAccount *a)
{
    PICKLE(account, a);
}
static char *pickle_session(fb_mxc_t *c, OlmSession *s)
{
    PICKLE(session, s);
}
static char *pickle_in(fb_mxc_t *c, OlmInboundGroupSession *s)
{
    PICKLE(inbound_group_session, s);
}
static char *pickle_out(fb_mxc_t *c, OlmOutboundGroupSession *s)
{
    PICKLE(outbound_group_session, s);
}

static json_t *pickle_json(char *p)
{
    json_t *j = p ? json_string(p) : NULL;
    fb_free(p);
    return j;
}

static struct olm_sess *find_olm_field(fb_mxc_t *c, const char *field)
{
    for (struct olm_sess *s = c->olm; s; s = s->next)
        if (strcmp(s->field, field) == 0)
            return s;
    return NULL;
}

static struct in_sess *find_in_field(fb_mxc_t *c, const char *field)
{
    for (struct in_sess *s = c->in; s; s = s->next)
        if (strcmp(s->field, field) == 0)
            return s;
    return NULL;
}

static struct out_sess *find_out(fb_mxc_t *c, const char *room)
{
    for (struct out_sess *s = c->out; s; s = s->next)
        if (strcmp(s->room, room) == 0)
            return s;
    return NULL;
}

/* The stored value of `field` now: a new string, or NULL when the object is gone. */
static char *field_value(fb_mxc_t *c, const char *field)
{
    json_t *v = NULL;
    if (strcmp(field, "account") == 0)
        return c->acct ? pickle_account(c, c->acct) : NULL;
    if (strcmp(field, "misc") == 0) {
        v = json_pack("{sb}", "published", c->published);
    } else if (strcmp(field, "xsign") == 0) {
        v = json_incref(c->xsign);
    } else if (strcmp(field, "seen") == 0) {
        v = json_incref(c->seen);
    } else if (strcmp(field, "failed") == 0) {
        v = json_incref(c->failed);
    } else if (strncmp(field, "dev|", 4) == 0) {
        v = json_incref(json_object_get(c->devs, field + 4));
    } else if (strncmp(field, "olm|", 4) == 0) {
        struct olm_sess *s = find_olm_field(c, field);
        if (s)
            v = json_pack("{s:o,s:I}", "pickle", pickle_json(pickle_session(c, s->s)), "used",
                          (json_int_t)s->used);
    } else if (strncmp(field, "in|", 3) == 0) {
        struct in_sess *s = find_in_field(c, field);
        if (s)
            v = json_pack("{s:s,s:s,s:s,s:s?,s:s,s:o,s:O}", "room", s->room, "sender_key",
                          s->sender_key, "id", s->id, "sender", s->sender, "ed25519", s->ed25519,
                          "pickle", pickle_json(pickle_in(c, s->s)), "idx", s->idx);
    } else if (strncmp(field, "out|", 4) == 0) {
        struct out_sess *s = find_out(c, field + 4);
        if (s)
            v = json_pack("{s:o,s:s,s:I,s:I,s:O}", "pickle", pickle_json(pickle_out(c, s->s)), "id",
                          s->id, "created", (json_int_t)s->created, "count", (json_int_t)s->count,
                          "shared", s->shared);
    }
    if (!v)
        return NULL;
    char *out = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    char *r = fb_strdup(out);
    free(out); /* fb-lint: allow free (jansson's allocation) */
    return r;
}

json_t *fb_mxc_take_dirty(fb_mxc_t *c)
{
    if (json_object_size(c->dirty) == 0)
        return NULL;
    json_t *out = json_object();
    const char *k;
    json_t *x;
    json_object_foreach(c->dirty, k, x)
    {
        char *v = field_value(c, k);
        json_object_set_new(out, k, v ? json_string(v) : json_null());
        fb_free(v);
    }
    json_object_clear(c->dirty);
    return out;
}

void fb_mxc_put_back_dirty(fb_mxc_t *c, json_t *dirty)
{
    const char *k;
    json_t *x;
    /* The value is recomputed at the next take: the newest one is written. */
    json_object_foreach(dirty, k, x) mark(c, k);
    json_decref(dirty);
}

static int load_account(fb_mxc_t *c, const char *value)
{
    OlmAccount *a = olm_account(fb_malloc(olm_account_size()));
    uint8_t *p = dup_bytes(value, strlen(value));
    size_t r = olm_unpickle_account(a, c->pk, c->pk_len, p, strlen(value));
    fb_free(p);
    char keys[256];
    size_t kn = olm_account_identity_keys_length(a);
    json_t *k = NULL;
    if (r != olm_error() && kn < sizeof(keys) &&
        olm_account_identity_keys(a, keys, sizeof(keys)) != olm_error())
        k = olm_json(keys, kn);
    const char *cv = jstr(k, "curve25519"), *ed = jstr(k, "ed25519");
    if (!cv || !ed || strlen(cv) >= sizeof(c->curve) || strlen(ed) >= sizeof(c->ed)) {
        json_decref(k);
        olm_clear_account(a);
        fb_free(a);
        return FB_MXC_BAD;
    }
    snprintf(c->curve, sizeof(c->curve), "%s", cv);
    snprintf(c->ed, sizeof(c->ed), "%s", ed);
    json_decref(k);
    if (c->acct) {
        olm_clear_account(c->acct);
        fb_free(c->acct);
    }
    c->acct = a;
    return FB_MXC_OK;
}

static int load_olm(fb_mxc_t *c, const char *field, const json_t *v)
{
    const char *p = jstr(v, "pickle");
    const char *bar = strchr(field + 4, '|');
    if (!p || !bar || !json_is_integer(json_object_get(v, "used")))
        return FB_MXC_BAD;
    OlmSession *s = olm_session(fb_malloc(olm_session_size()));
    uint8_t *pc = dup_bytes(p, strlen(p));
    size_t r = olm_unpickle_session(s, c->pk, c->pk_len, pc, strlen(p));
    fb_free(pc);
    if (r == olm_error()) {
        olm_clear_session(s);
        fb_free(s);
        return FB_MXC_BAD;
    }
    struct olm_sess *o = find_olm_field(c, field);
    if (o) {
        olm_clear_session(o->s);
        fb_free(o->s);
    } else {
        o = fb_calloc(1, sizeof(*o));
        o->field = fb_strdup(field);
        o->curve = fb_strndup(field + 4, (size_t)(bar - (field + 4)));
        o->next = c->olm;
        c->olm = o;
    }
    o->s = s;
    o->used = (uint64_t)json_integer_value(json_object_get(v, "used"));
    if (o->used > c->seq)
        c->seq = o->used;
    return FB_MXC_OK;
}

static void unlink_in(fb_mxc_t *c, struct in_sess *x)
{
    for (struct in_sess **pp = &c->in; *pp; pp = &(*pp)->next)
        if (*pp == x) {
            *pp = x->next;
            return;
        }
}

static int load_in(fb_mxc_t *c, const char *field, const json_t *v)
{
    const char *room = jstr(v, "room"), *sk = jstr(v, "sender_key"), *id = jstr(v, "id"),
               *ed = jstr(v, "ed25519"), *p = jstr(v, "pickle");
    json_t *idx = json_object_get(v, "idx");
    if (!room || !sk || !id || !ed || !p || !json_is_object(idx))
        return FB_MXC_BAD;
    OlmInboundGroupSession *s =
        olm_inbound_group_session(fb_malloc(olm_inbound_group_session_size()));
    uint8_t *pc = dup_bytes(p, strlen(p));
    size_t r = olm_unpickle_inbound_group_session(s, c->pk, c->pk_len, pc, strlen(p));
    fb_free(pc);
    if (r == olm_error()) {
        olm_clear_inbound_group_session(s);
        fb_free(s);
        return FB_MXC_BAD;
    }
    struct in_sess *o = find_in_field(c, field);
    if (o) { /* loaded twice: the last value wins */
        unlink_in(c, o);
        in_sess_free(o);
    }
    o = fb_calloc(1, sizeof(*o));
    o->field = fb_strdup(field);
    o->room = fb_strdup(room);
    o->sender_key = fb_strdup(sk);
    o->id = fb_strdup(id);
    o->sender = fb_strdup(jstr(v, "sender"));
    o->ed25519 = fb_strdup(ed);
    o->s = s;
    o->idx = json_deep_copy(idx);
    o->next = c->in;
    c->in = o;
    return FB_MXC_OK;
}

static int load_out(fb_mxc_t *c, const char *field, const json_t *v)
{
    const char *p = jstr(v, "pickle"), *id = jstr(v, "id");
    json_t *shared = json_object_get(v, "shared");
    if (!p || !id || !json_is_object(shared) || !json_is_integer(json_object_get(v, "created")) ||
        !json_is_integer(json_object_get(v, "count")) || find_out(c, field + 4))
        return FB_MXC_BAD;
    OlmOutboundGroupSession *s =
        olm_outbound_group_session(fb_malloc(olm_outbound_group_session_size()));
    uint8_t *pc = dup_bytes(p, strlen(p));
    size_t r = olm_unpickle_outbound_group_session(s, c->pk, c->pk_len, pc, strlen(p));
    fb_free(pc);
    if (r == olm_error()) {
        olm_clear_outbound_group_session(s);
        fb_free(s);
        return FB_MXC_BAD;
    }
    struct out_sess *o = fb_calloc(1, sizeof(*o));
    o->field = fb_strdup(field);
    o->room = fb_strdup(field + 4);
    o->id = fb_strdup(id);
    o->s = s;
    o->created = json_integer_value(json_object_get(v, "created"));
    o->count = (long)json_integer_value(json_object_get(v, "count"));
    o->shared = json_deep_copy(shared);
    o->next = c->out;
    c->out = o;
    return FB_MXC_OK;
}

int fb_mxc_load(fb_mxc_t *c, const char *field, const char *value)
{
    if (!c || !field || !value)
        return FB_MXC_BAD;
    if (strcmp(field, "account") == 0)
        return load_account(c, value);
    json_t *v = json_loads(value, 0, NULL);
    int rc = FB_MXC_BAD;
    if (!v)
        return FB_MXC_BAD;
    if (strcmp(field, "misc") == 0 && json_is_object(v)) {
        c->published = json_is_true(json_object_get(v, "published"));
        rc = FB_MXC_OK;
    } else if (strcmp(field, "xsign") == 0 && json_is_object(v)) {
        json_decref(c->xsign);
        c->xsign = json_incref(v);
        rc = FB_MXC_OK;
    } else if (strcmp(field, "seen") == 0 && json_is_array(v)) {
        json_decref(c->seen);
        c->seen = json_incref(v);
        rc = FB_MXC_OK;
    } else if (strcmp(field, "failed") == 0 && json_is_object(v)) {
        json_decref(c->failed);
        c->failed = json_incref(v);
        rc = FB_MXC_OK;
    } else if (strncmp(field, "dev|", 4) == 0 && json_is_object(v) &&
               json_is_object(json_object_get(v, "devices"))) {
        json_object_set(c->devs, field + 4, v);
        rc = FB_MXC_OK;
    } else if (strncmp(field, "olm|", 4) == 0) {
        rc = load_olm(c, field, v);
    } else if (strncmp(field, "in|", 3) == 0) {
        rc = load_in(c, field, v);
    } else if (strncmp(field, "out|", 4) == 0) {
        rc = load_out(c, field, v);
    }
    json_decref(v);
    if (rc != FB_MXC_OK)
        FB_WARN(MATRIX, "crypto: stored field unreadable (%.4s...)", field);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Account and keys upload */

static bool read_identity(fb_mxc_t *c)
{
    char keys[256];
    size_t kn = olm_account_identity_keys_length(c->acct);
    if (kn >= sizeof(keys) || olm_account_identity_keys(c->acct, keys, sizeof(keys)) == olm_error())
        return false;
    json_t *k = olm_json(keys, kn);
    const char *cv = jstr(k, "curve25519"), *ed = jstr(k, "ed25519");
    bool ok = cv && ed && strlen(cv) < sizeof(c->curve) && strlen(ed) < sizeof(c->ed);
    if (ok) {
        snprintf(c->curve, sizeof(c->curve), "%s", cv);
        snprintf(c->ed, sizeof(c->ed), "%s", ed);
    }
    json_decref(k);
    return ok;
}

bool fb_mxc_ensure_account(fb_mxc_t *c)
{
    if (c->acct)
        return false;
    OlmAccount *a = olm_account(fb_malloc(olm_account_size()));
    size_t rn = olm_create_account_random_length(a);
    uint8_t *rnd = fb_malloc(rn ? rn : 1);
    mxc_random(rnd, rn);
    size_t r = olm_create_account(a, rnd, rn);
    wipe_free(rnd, rn ? rn : 1);
    FB_ASSERT(r != olm_error());
    c->acct = a;
    FB_ASSERT(read_identity(c));
    c->published = false;
    mark(c, "account");
    mark(c, "misc");
    return true;
}

const char *fb_mxc_curve25519(const fb_mxc_t *c)
{
    return c->acct ? c->curve : NULL;
}

const char *fb_mxc_ed25519(const fb_mxc_t *c)
{
    return c->acct ? c->ed : NULL;
}

/* This device's signed device_keys object, new, or NULL. */
static json_t *device_keys(fb_mxc_t *c)
{
    char *kc = fb_asprintf("curve25519:%s", c->device), *ke = fb_asprintf("ed25519:%s", c->device);
    json_t *dk =
        json_pack("{s:s,s:s,s:[ss],s:{s:s,s:s}}", "user_id", c->user, "device_id", c->device,
                  "algorithms", FB_MXC_OLM, FB_MXC_MEGOLM, "keys", kc, c->curve, ke, c->ed);
    fb_free(kc);
    fb_free(ke);
    if (dk && !sign_device(c, dk)) {
        json_decref(dk);
        dk = NULL;
    }
    return dk;
}

/* {"signed_curve25519:ID": {key, [fallback], signatures}} from the libolm key list `olm_keys`
 * ({"curve25519": {id: key}}). */
static json_t *signed_keys(fb_mxc_t *c, const json_t *olm_keys, bool fallback)
{
    json_t *out = json_object();
    const char *id;
    json_t *k;
    json_object_foreach(unconst(json_object_get(olm_keys, "curve25519")), id, k)
    {
        json_t *o = json_pack("{s:O}", "key", k);
        if (fallback)
            json_object_set_new(o, "fallback", json_true());
        if (!sign_device(c, o)) {
            json_decref(o);
            continue;
        }
        char *name = fb_asprintf("signed_curve25519:%s", id);
        json_object_set_new(out, name, o);
        fb_free(name);
    }
    return out;
}

static json_t *account_keys(fb_mxc_t *c, bool fallback)
{
    size_t n = fallback ? olm_account_unpublished_fallback_key_length(c->acct)
                        : olm_account_one_time_keys_length(c->acct);
    char *buf = fb_malloc(n + 1);
    size_t r = fallback ? olm_account_unpublished_fallback_key(c->acct, buf, n)
                        : olm_account_one_time_keys(c->acct, buf, n);
    json_t *j = r == olm_error() ? NULL : olm_json(buf, r);
    fb_free(buf);
    return j;
}

static void generate(fb_mxc_t *c, size_t count, bool fallback)
{
    size_t rn = fallback ? olm_account_generate_fallback_key_random_length(c->acct)
                         : olm_account_generate_one_time_keys_random_length(c->acct, count);
    uint8_t *rnd = fb_malloc(rn ? rn : 1);
    mxc_random(rnd, rn);
    size_t r = fallback ? olm_account_generate_fallback_key(c->acct, rnd, rn)
                        : olm_account_generate_one_time_keys(c->acct, count, rnd, rn);
    wipe_free(rnd, rn ? rn : 1);
    FB_ASSERT(r != olm_error());
    mark(c, "account");
}

json_t *fb_mxc_keys_to_upload(fb_mxc_t *c, long otk_count, bool fallback_missing)
{
    if (!c->acct)
        return NULL;
    json_t *body = json_object();
    if (!c->published) {
        json_t *dk = device_keys(c);
        if (dk)
            json_object_set_new(body, "device_keys", dk);
    }
    if (otk_count >= 0) {
        long target = (long)olm_account_max_number_of_one_time_keys(c->acct) / 2;
        json_t *cur = account_keys(c, false);
        long unpublished = (long)json_object_size(json_object_get(cur, "curve25519"));
        json_decref(cur);
        long need = target - otk_count - unpublished;
        if (need > 0)
            generate(c, (size_t)need, false);
        if (need > 0 || unpublished > 0) {
            cur = account_keys(c, false);
            json_t *sk = signed_keys(c, cur, false);
            json_decref(cur);
            if (json_object_size(sk))
                json_object_set_new(body, "one_time_keys", sk);
            else
                json_decref(sk);
        }
    }
    if (fallback_missing) {
        json_t *fb = account_keys(c, true);
        if (json_object_size(json_object_get(fb, "curve25519")) == 0) {
            json_decref(fb);
            generate(c, 1, true);
            fb = account_keys(c, true);
        }
        json_t *sk = signed_keys(c, fb, true);
        json_decref(fb);
        if (json_object_size(sk))
            json_object_set_new(body, "fallback_keys", sk);
        else
            json_decref(sk);
    }
    if (json_object_size(body) == 0) {
        json_decref(body);
        return NULL;
    }
    return body;
}

void fb_mxc_keys_published(fb_mxc_t *c)
{
    if (!c->acct)
        return;
    olm_account_mark_keys_as_published(c->acct);
    c->published = true;
    mark(c, "account");
    mark(c, "misc");
}

/* ---------------------------------------------------------------------------------------- */
/* Device lists */

static json_t *user_entry(fb_mxc_t *c, const char *user)
{
    return json_object_get(c->devs, user);
}

static void mark_user(fb_mxc_t *c, const char *user)
{
    char *f = fb_asprintf("dev|%s", user);
    mark(c, f);
    fb_free(f);
}

void fb_mxc_track_user(fb_mxc_t *c, const char *user)
{
    if (!user || !*user)
        return;
    json_t *u = user_entry(c, user);
    if (!u) {
        json_object_set_new(c->devs, user,
                            json_pack("{s:{},s:b,s:b}", "devices", "tracked", 1, "outdated", 1));
    } else if (json_is_true(json_object_get(u, "tracked"))) {
        return;
    } else {
        json_object_set_new(u, "tracked", json_true());
        json_object_set_new(u, "outdated", json_true());
    }
    mark_user(c, user);
}

void fb_mxc_device_list_changed(fb_mxc_t *c, const char *user)
{
    json_t *u = user ? user_entry(c, user) : NULL;
    if (!u || !json_is_true(json_object_get(u, "tracked")))
        return;
    json_object_set_new(u, "outdated", json_true());
    mark_user(c, user);
}

void fb_mxc_device_list_left(fb_mxc_t *c, const char *user)
{
    if (!user || !user_entry(c, user))
        return;
    json_object_del(c->devs, user);
    mark_user(c, user);
}

json_t *fb_mxc_keys_query_body(fb_mxc_t *c, size_t max)
{
    json_t *q = json_object();
    const char *user;
    json_t *u;
    json_object_foreach(c->devs, user, u)
    {
        if (json_object_size(q) >= max)
            break;
        if (json_is_true(json_object_get(u, "tracked")) &&
            json_is_true(json_object_get(u, "outdated")))
            json_object_set_new(q, user, json_array());
    }
    if (json_object_size(q) == 0) {
        json_decref(q);
        return NULL;
    }
    return json_pack("{s:o}", "device_keys", q);
}

/* The public key of a cross-signing key object `k` of `user` with `usage`, or NULL: exactly one
 * "ed25519:<pub>": "<pub>" key. Borrowed from `k`. */
static const char *xkey_pub(const json_t *k, const char *user, const char *usage)
{
    if (!json_is_object(k) || !streq(jstr(k, "user_id"), user))
        return NULL;
    json_t *us = json_object_get(k, "usage");
    bool has = false;
    for (size_t i = 0; i < json_array_size(us); i++)
        has |= streq(json_string_value(json_array_get(us, i)), usage);
    json_t *keys = json_object_get(k, "keys");
    if (!has || json_object_size(keys) != 1)
        return NULL;
    void *it = json_object_iter(keys);
    const char *kid = json_object_iter_key(it);
    const char *pub = json_string_value(json_object_iter_value(it));
    if (!pub || strncmp(kid, "ed25519:", 8) != 0 || strcmp(kid + 8, pub) != 0)
        return NULL;
    return pub;
}

static bool device_ok(const json_t *d, const char *user, const char *dev, const char **curve,
                      const char **ed)
{
    if (!json_is_object(d) || !streq(jstr(d, "user_id"), user) ||
        !streq(jstr(d, "device_id"), dev) || !json_is_array(json_object_get(d, "algorithms")))
        return false;
    json_t *keys = json_object_get(d, "keys");
    char kc[300], ke[300];
    if (snprintf(kc, sizeof(kc), "curve25519:%s", dev) >= (int)sizeof(kc))
        return false;
    snprintf(ke, sizeof(ke), "ed25519:%s", dev);
    *curve = jstr(keys, kc);
    *ed = jstr(keys, ke);
    return *curve && *ed && fb_mxc_verify(d, user, ke, *ed);
}

int fb_mxc_keys_query_result(fb_mxc_t *c, const json_t *resp)
{
    json_t *dk = json_object_get(resp, "device_keys");
    if (!json_is_object(resp) || !json_is_object(dk))
        return FB_EPROTO;
    int kept = 0;
    const char *user;
    json_t *devs;
    json_object_foreach(dk, user, devs)
    {
        json_t *u = user_entry(c, user);
        char t[9];
        tag(user, t);
        if (!u || !json_is_true(json_object_get(u, "tracked")) || !json_is_object(devs))
            continue;
        const char *master =
            xkey_pub(json_object_get(json_object_get(resp, "master_keys"), user), user, "master");
        const char *ssk = NULL;
        if (master) {
            json_t *sk = json_object_get(json_object_get(resp, "self_signing_keys"), user);
            char *kid = fb_asprintf("ed25519:%s", master);
            ssk = xkey_pub(sk, user, "self_signing");
            if (ssk && !fb_mxc_verify(sk, user, kid, master)) {
                FB_WARN(MATRIX, "crypto: user %s: self-signing key not signed by master", t);
                ssk = NULL;
            }
            fb_free(kid);
        }
        json_t *old = json_object_get(u, "devices");
        json_t *nd = json_object();
        const char *dev;
        json_t *d;
        json_object_foreach(devs, dev, d)
        {
            const char *curve, *ed;
            if (!device_ok(d, user, dev, &curve, &ed)) {
                FB_WARN(MATRIX, "crypto: user %s: a device with bad keys dropped", t);
                continue;
            }
            json_t *prev = json_object_get(old, dev);
            if (prev && !streq(jstr(prev, "ed25519"), ed)) {
                /* The new keys are refused; the device keeps the keys first seen. */
                FB_WARN(MATRIX, "crypto: user %s: a device's ed25519 key changed: dropped", t);
                json_object_set(nd, dev, prev);
                continue;
            }
            bool xs = false;
            if (ssk) {
                char *kid = fb_asprintf("ed25519:%s", ssk);
                xs = fb_mxc_verify(d, user, kid, ssk);
                fb_free(kid);
            }
            json_object_set_new(
                nd, dev,
                json_pack("{s:s,s:s,s:b}", "curve25519", curve, "ed25519", ed, "cross_signed", xs));
            kept++;
        }
        json_object_set_new(u, "devices", nd);
        if (master)
            json_object_set_new(u, "master", json_string(master));
        else
            json_object_del(u, "master");
        if (ssk)
            json_object_set_new(u, "self_signing", json_string(ssk));
        else
            json_object_del(u, "self_signing");
        json_object_set_new(u, "outdated", json_false());
        mark_user(c, user);
    }
    return kept;
}

const json_t *fb_mxc_devices(const fb_mxc_t *c, const char *user)
{
    if (!user)
        return NULL;
    return json_object_get(json_object_get(c->devs, user), "devices");
}

bool fb_mxc_user_outdated(const fb_mxc_t *c, const char *user)
{
    json_t *u = user ? json_object_get(c->devs, user) : NULL;
    return u && json_is_true(json_object_get(u, "tracked")) &&
           json_is_true(json_object_get(u, "outdated"));
}

/* The device of `user` whose curve25519 key is `curve` (borrowed), its id in *dev_id. */
static const json_t *device_by_curve(const fb_mxc_t *c, const char *user, const char *curve,
                                     const char **dev_id)
{
    const char *dev;
    json_t *d;
    json_object_foreach(unconst(fb_mxc_devices(c, user)), dev, d)
    {
        if (streq(jstr(d, "curve25519"), curve)) {
            if (dev_id)
                *dev_id = dev;
            return d;
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Olm */

/* Drops the least recently used Olm sessions with `curve` beyond MXC_OLM_PER_PEER: a device
 * that keeps sending pre-key messages cannot make the state grow. */
static void drop_old_olm(fb_mxc_t *c, const char *curve)
{
    for (;;) {
        size_t n = 0;
        struct olm_sess *lru = NULL;
        for (struct olm_sess *o = c->olm; o; o = o->next)
            if (strcmp(o->curve, curve) == 0) {
                n++;
                if (!lru || o->used < lru->used)
                    lru = o;
            }
        if (n <= MXC_OLM_PER_PEER)
            return;
        for (struct olm_sess **pp = &c->olm; *pp; pp = &(*pp)->next)
            if (*pp == lru) {
                *pp = lru->next;
                break;
            }
        mark(c, lru->field);
        olm_sess_free(lru);
    }
}

static struct olm_sess *add_olm(fb_mxc_t *c, const char *curve, OlmSession *s)
{
    char id[128];
    size_t n = olm_session_id_length(s);
    if (n >= sizeof(id) || olm_session_id(s, id, sizeof(id)) == olm_error())
        n = 0;
    id[n] = 0;
    struct olm_sess *o = fb_calloc(1, sizeof(*o));
    o->field = fb_asprintf("olm|%s|%s", curve, id);
    o->curve = fb_strdup(curve);
    o->s = s;
    o->used = ++c->seq;
    struct olm_sess *dup = find_olm_field(c, o->field);
    if (dup) { /* the same session again: keep the newest state */
        olm_clear_session(dup->s);
        fb_free(dup->s);
        dup->s = s;
        dup->used = o->used;
        fb_free(o->field);
        fb_free(o->curve);
        fb_free(o);
        o = dup;
    } else {
        o->next = c->olm;
        c->olm = o;
    }
    mark(c, o->field);
    drop_old_olm(c, curve);
    return o;
}

/* The plaintext of Olm message (type, body) from `curve`, new NUL-terminated string, or NULL.
 * *made is a new inbound session (not yet stored) when one was needed; *used the existing one. */
static char *olm_try(fb_mxc_t *c, const char *curve, int type, const char *body,
                     struct olm_sess **used, OlmSession **made, size_t *pt_len)
{
    size_t bl = strlen(body);
    *used = NULL;
    *made = NULL;
    for (struct olm_sess *o = c->olm; o; o = o->next) {
        if (strcmp(o->curve, curve) != 0)
            continue;
        uint8_t *b = dup_bytes(body, bl);
        if (type == 0 && olm_matches_inbound_session_from(o->s, curve, strlen(curve), b, bl) != 1) {
            fb_free(b);
            continue;
        }
        fb_free(b);
        b = dup_bytes(body, bl);
        size_t max = olm_decrypt_max_plaintext_length(o->s, (size_t)type, b, bl);
        fb_free(b);
        if (max == olm_error())
            continue;
        char *pt = fb_malloc(max + 1);
        b = dup_bytes(body, bl);
        size_t n = olm_decrypt(o->s, (size_t)type, b, bl, pt, max);
        fb_free(b);
        if (n == olm_error()) {
            wipe_free(pt, max + 1);
            if (type == 0)
                return NULL; /* it matched: a bad message for that session */
            continue;
        }
        pt[n] = 0;
        *used = o;
        *pt_len = max + 1;
        return pt;
    }
    if (type != 0)
        return NULL;
    /* Not olm_create_inbound_session_from: libolm 3.2.13 copies the message's identity key
     * without checking that it is there when the sender's key is given (a pre-key message with
     * no identity key field crashed it under the fuzzer). Without it, libolm insists on the
     * field; the sender's key is then compared by olm_matches_inbound_session_from, which
     * checks the field before reading it. */
    OlmSession *s = olm_session(fb_malloc(olm_session_size()));
    uint8_t *b = dup_bytes(body, bl);
    size_t r = olm_create_inbound_session(s, c->acct, b, bl);
    fb_free(b);
    if (r != olm_error()) {
        b = dup_bytes(body, bl);
        if (olm_matches_inbound_session_from(s, curve, strlen(curve), b, bl) != 1)
            r = olm_error(); /* the message names another sender's identity key */
        fb_free(b);
    }
    char *pt = NULL;
    if (r != olm_error()) {
        b = dup_bytes(body, bl);
        size_t max = olm_decrypt_max_plaintext_length(s, 0, b, bl);
        fb_free(b);
        if (max != olm_error()) {
            pt = fb_malloc(max + 1);
            b = dup_bytes(body, bl);
            size_t n = olm_decrypt(s, 0, b, bl, pt, max);
            fb_free(b);
            if (n == olm_error()) {
                wipe_free(pt, max + 1);
                pt = NULL;
            } else {
                pt[n] = 0;
                *pt_len = max + 1;
            }
        }
    }
    if (!pt) {
        olm_clear_session(s);
        fb_free(s);
        return NULL;
    }
    *made = s;
    return pt;
}

static void seen_tag(const char *curve, const char *body, char out[33])
{
    unsigned char h[32];
    char *s = fb_asprintf("%s|%s", curve, body);
    fb_sha256(s, strlen(s), h);
    fb_free(s);
    fb_hex(h, 16, out);
}

static bool seen_has(fb_mxc_t *c, const char *t)
{
    for (size_t i = 0; i < json_array_size(c->seen); i++)
        if (streq(json_string_value(json_array_get(c->seen, i)), t))
            return true;
    return false;
}

static void seen_add(fb_mxc_t *c, const char *t)
{
    json_array_append_new(c->seen, json_string(t));
    while (json_array_size(c->seen) > MXC_SEEN_MAX)
        json_array_remove(c->seen, 0);
    mark(c, "seen");
}

/* ---------------------------------------------------------------------------------------- */
/* Megolm inbound */

/* The inbound session (room, sender key, id); a NULL `sk` (events of clients that follow
 * MSC3700 and no longer send it) matches any sender key: the id is the session's public key. */
static struct in_sess *find_in(fb_mxc_t *c, const char *room, const char *sk, const char *id)
{
    for (struct in_sess *s = c->in; s; s = s->next)
        if (strcmp(s->room, room) == 0 && (!sk || strcmp(s->sender_key, sk) == 0) &&
            strcmp(s->id, id) == 0)
            return s;
    return NULL;
}

/* Adds an inbound Megolm session from `key` (a session key, or an exported one when
 * `exported`); FB_MXC_OK or FB_MXC_BAD. Keeps an existing session known from an earlier index. */
static int add_in(fb_mxc_t *c, const char *room, const char *sk, const char *id, const char *key,
                  bool exported, const char *sender, const char *ed)
{
    OlmInboundGroupSession *s =
        olm_inbound_group_session(fb_malloc(olm_inbound_group_session_size()));
    uint8_t *k = dup_bytes(key, strlen(key));
    size_t r = exported ? olm_import_inbound_group_session(s, k, strlen(key))
                        : olm_init_inbound_group_session(s, k, strlen(key));
    wipe_free(k, strlen(key));
    char sid[128];
    size_t n = r == olm_error() ? 0 : olm_inbound_group_session_id_length(s);
    if (r == olm_error() || n >= sizeof(sid) ||
        olm_inbound_group_session_id(s, (uint8_t *)sid, sizeof(sid)) == olm_error()) {
        olm_clear_inbound_group_session(s);
        fb_free(s);
        return FB_MXC_BAD;
    }
    sid[n] = 0;
    if (strcmp(sid, id) != 0) {
        olm_clear_inbound_group_session(s);
        fb_free(s);
        return FB_MXC_BAD;
    }
    struct in_sess *old = find_in(c, room, sk, id);
    if (old) {
        if (olm_inbound_group_session_first_known_index(old->s) <=
            olm_inbound_group_session_first_known_index(s)) {
            olm_clear_inbound_group_session(s);
            fb_free(s);
            return FB_MXC_OK;
        }
        olm_clear_inbound_group_session(old->s);
        fb_free(old->s);
        old->s = s;
        mark(c, old->field);
        return FB_MXC_OK;
    }
    struct in_sess *o = fb_calloc(1, sizeof(*o));
    o->field = fb_asprintf("in|%s|%s|%s", room, sk, id);
    o->room = fb_strdup(room);
    o->sender_key = fb_strdup(sk);
    o->id = fb_strdup(id);
    o->sender = fb_strdup(sender);
    o->ed25519 = fb_strdup(ed);
    o->s = s;
    o->idx = json_object();
    o->next = c->in;
    c->in = o;
    mark(c, o->field);
    return FB_MXC_OK;
}

static int room_key(fb_mxc_t *c, const char *sender, const char *sender_key, const char *ed,
                    const json_t *content, bool forwarded)
{
    const char *room = jstr(content, "room_id"), *sid = jstr(content, "session_id"),
               *key = jstr(content, "session_key");
    if (!streq(jstr(content, "algorithm"), FB_MXC_MEGOLM) || !room || !sid || !key)
        return FB_MXC_BAD;
    if (forwarded) {
        sender_key = jstr(content, "sender_key");
        ed = jstr(content, "sender_claimed_ed25519_key");
        if (!sender_key || !ed)
            return FB_MXC_BAD;
        sender = NULL; /* the original sender is not known */
    }
    return add_in(c, room, sender_key, sid, key, forwarded, sender, ed);
}

int fb_mxc_to_device(fb_mxc_t *c, const json_t *ev, char type_out[64])
{
    if (type_out)
        type_out[0] = 0;
    const char *sender = jstr(ev, "sender"), *type = jstr(ev, "type");
    json_t *content = json_object_get(ev, "content");
    if (!c->acct || !sender || !type || !json_is_object(content))
        return FB_MXC_BAD;
    if (type_out)
        snprintf(type_out, 64, "%s", type);
    if (strcmp(type, "m.room.encrypted") != 0)
        return FB_MXC_IGNORED;
    if (!streq(jstr(content, "algorithm"), FB_MXC_OLM))
        return FB_MXC_IGNORED;
    const char *sk = jstr(content, "sender_key");
    json_t *mine = json_object_get(json_object_get(content, "ciphertext"), c->curve);
    if (!sk || !json_is_object(json_object_get(content, "ciphertext")))
        return FB_MXC_BAD;
    if (!mine)
        return FB_MXC_IGNORED;
    json_t *jt = json_object_get(mine, "type");
    const char *body = jstr(mine, "body");
    if (!json_is_integer(jt) || !body || !*body ||
        (json_integer_value(jt) != 0 && json_integer_value(jt) != 1))
        return FB_MXC_BAD;
    int mtype = (int)json_integer_value(jt);
    char t[9];
    tag(sender, t);
    const char *dev_id = NULL;
    const json_t *dev = device_by_curve(c, sender, sk, &dev_id);
    if (!dev) {
        FB_INFO(MATRIX, "crypto: to-device from an unknown device of user %s", t);
        return FB_MXC_UNKNOWN_DEVICE;
    }
    char st[33];
    seen_tag(sk, body, st);
    if (seen_has(c, st))
        return FB_MXC_REPLAY;
    struct olm_sess *used;
    OlmSession *made;
    size_t ptl = 0;
    char *pt = olm_try(c, sk, mtype, body, &used, &made, &ptl);
    if (!pt) {
        FB_WARN(MATRIX, "crypto: to-device from user %s: cannot decrypt", t);
        return FB_MXC_BAD;
    }
    json_t *p = json_loads(pt, 0, NULL);
    wipe_free(pt, ptl);
    const char *ptype = jstr(p, "type");
    json_t *pc = json_object_get(p, "content");
    bool ok = ptype && json_is_object(pc) && streq(jstr(p, "sender"), sender) &&
              streq(jstr(p, "recipient"), c->user) &&
              streq(jstr(json_object_get(p, "recipient_keys"), "ed25519"), c->ed) &&
              streq(jstr(json_object_get(p, "keys"), "ed25519"), jstr(dev, "ed25519"));
    if (!ok) {
        FB_WARN(MATRIX, "crypto: to-device from user %s: bad payload", t);
        if (made) { /* forget it: the one-time key stays */
            olm_clear_session(made);
            fb_free(made);
        } else if (used) {
            used->used = ++c->seq;
            mark(c, used->field);
            seen_add(c, st);
        }
        if (p)
            json_decref(p);
        return FB_MXC_BAD;
    }
    if (made) {
        olm_remove_one_time_keys(c->acct, made);
        mark(c, "account");
        add_olm(c, sk, made);
    } else if (used) {
        used->used = ++c->seq;
        mark(c, used->field);
    }
    seen_add(c, st);
    if (type_out)
        snprintf(type_out, 64, "%s", ptype);
    int rc = FB_MXC_OK;
    if (strcmp(ptype, "m.room_key") == 0) {
        rc = room_key(c, sender, sk, jstr(dev, "ed25519"), pc, false);
    } else if (strcmp(ptype, "m.forwarded_room_key") == 0) {
        if (!streq(sender, c->user) || !json_is_true(json_object_get(dev, "cross_signed")) ||
            streq(dev_id, c->device)) {
            FB_WARN(MATRIX, "crypto: forwarded room key refused (not our verified device)");
            rc = FB_MXC_BAD;
        } else {
            rc = room_key(c, sender, sk, NULL, pc, true);
        }
    }
    wipe_member(pc, "session_key");
    json_decref(p);
    return rc;
}

int fb_mxc_decrypt(fb_mxc_t *c, const json_t *ev, json_t **out)
{
    *out = NULL;
    json_t *content = json_object_get(ev, "content");
    const char *room = jstr(ev, "room_id"), *eid = jstr(ev, "event_id"),
               *sender = jstr(ev, "sender");
    const char *sk = jstr(content, "sender_key"), *sid = jstr(content, "session_id"),
               *ct = jstr(content, "ciphertext");
    if (!streq(jstr(ev, "type"), "m.room.encrypted") || !room || !eid || !sender ||
        !streq(jstr(content, "algorithm"), FB_MXC_MEGOLM) || !sid || !ct || !*ct ||
        (json_object_get(content, "sender_key") && !sk))
        return FB_MXC_BAD;
    struct in_sess *s = find_in(c, room, sk, sid);
    if (!s)
        return FB_MXC_UNKNOWN_SESSION;
    if (s->sender && strcmp(s->sender, sender) != 0)
        return FB_MXC_BAD;
    size_t cl = strlen(ct);
    uint8_t *b = dup_bytes(ct, cl);
    size_t max = olm_group_decrypt_max_plaintext_length(s->s, b, cl);
    fb_free(b);
    if (max == olm_error())
        return FB_MXC_BAD;
    uint8_t *pt = fb_malloc(max + 1);
    uint32_t index = 0;
    b = dup_bytes(ct, cl);
    size_t n = olm_group_decrypt(s->s, b, cl, pt, max, &index);
    fb_free(b);
    if (n == olm_error()) {
        bool unknown = olm_inbound_group_session_last_error_code(s->s) == OLM_UNKNOWN_MESSAGE_INDEX;
        wipe_free(pt, max + 1);
        return unknown ? FB_MXC_UNKNOWN_SESSION : FB_MXC_BAD;
    }
    json_t *p = json_loadb((const char *)pt, n, 0, NULL);
    wipe_free(pt, max + 1);
    const char *ptype = jstr(p, "type");
    json_t *pc = json_object_get(p, "content");
    if (!ptype || !json_is_object(pc) || !streq(jstr(p, "room_id"), room)) {
        json_decref(p);
        return FB_MXC_BAD;
    }
    char key[16];
    snprintf(key, sizeof(key), "%" PRIu32, index);
    const char *seen = jstr(s->idx, key);
    if (seen && strcmp(seen, eid) != 0) {
        json_decref(p);
        char t[9];
        tag(sender, t);
        FB_WARN(MATRIX, "crypto: replayed megolm index from user %s", t);
        return FB_MXC_REPLAY;
    }
    if (!seen) {
        json_object_set_new(s->idx, key, json_string(eid));
        while (json_object_size(s->idx) > MXC_IDX_MAX) {
            const char *k, *lo = NULL;
            unsigned long lov = 0;
            json_t *x;
            json_object_foreach(s->idx, k, x)
            {
                unsigned long v = strtoul(k, NULL, 10);
                if (!lo || v < lov) {
                    lo = k;
                    lov = v;
                }
            }
            json_object_del(s->idx, lo);
        }
        mark(c, s->field);
    }
    json_t *o = json_deep_copy(ev);
    json_object_set_new(o, "type", json_string(ptype));
    json_t *dc = json_deep_copy(pc);
    /* The relation (thread, reply, edit) travels in clear in the encrypted event's content, and
     * the clear one wins (spec "Mixing encrypted and unencrypted" relationships). */
    json_t *rel = json_object_get(content, "m.relates_to");
    if (json_is_object(rel))
        json_object_set(dc, "m.relates_to", rel);
    json_object_set_new(o, "content", dc);
    json_object_set_new(o, "fb_decrypted", json_true());
    json_decref(p);
    *out = o;
    return FB_MXC_OK;
}

json_t *fb_mxc_key_request(const fb_mxc_t *c, const json_t *ev, const char *request_id)
{
    json_t *content = json_object_get(ev, "content");
    const char *room = jstr(ev, "room_id"), *sk = jstr(content, "sender_key"),
               *sid = jstr(content, "session_id");
    if (!room || !sid || !request_id)
        return NULL;
    return json_pack("{s:s,s:{s:s,s:s,s:s*,s:s},s:s,s:s}", "action", "request", "body", "algorithm",
                     FB_MXC_MEGOLM, "room_id", room, "sender_key", sk, "session_id", sid,
                     "request_id", request_id, "requesting_device_id", c->device);
}

/* ---------------------------------------------------------------------------------------- */
/* Outbound */

static struct olm_sess *best_olm(fb_mxc_t *c, const char *curve)
{
    struct olm_sess *best = NULL;
    for (struct olm_sess *o = c->olm; o; o = o->next)
        if (strcmp(o->curve, curve) == 0 && (!best || o->used > best->used))
            best = o;
    return best;
}

/* The Olm to-device content carrying `type`/`content` to device (user, curve, ed), or NULL. */
static json_t *olm_encrypt_for(fb_mxc_t *c, struct olm_sess *o, const char *user, const char *ed,
                               const char *type, const json_t *content)
{
    json_t *p = json_pack("{s:s,s:O,s:s,s:s,s:{s:s},s:{s:s},s:s}", "type", type, "content", content,
                          "sender", c->user, "recipient", user, "recipient_keys", "ed25519", ed,
                          "keys", "ed25519", c->ed, "sender_device", c->device);
    if (!p)
        return NULL;
    char *pt = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    size_t pl = strlen(pt);
    size_t rn = olm_encrypt_random_length(o->s);
    uint8_t *rnd = fb_malloc(rn ? rn : 1);
    mxc_random(rnd, rn);
    size_t mt = olm_encrypt_message_type(o->s);
    size_t ml = olm_encrypt_message_length(o->s, pl);
    char *msg = fb_malloc(ml + 1);
    size_t r = olm_encrypt(o->s, pt, pl, rnd, rn, msg, ml);
    wipe_free(rnd, rn ? rn : 1);
    explicit_bzero(pt, pl);
    free(pt); /* fb-lint: allow free (jansson's allocation) */
    if (r == olm_error()) {
        fb_free(msg);
        return NULL;
    }
    msg[r] = 0;
    o->used = ++c->seq;
    mark(c, o->field);
    json_t *out = json_pack("{s:s,s:s,s:{s:{s:I,s:s}}}", "algorithm", FB_MXC_OLM, "sender_key",
                            c->curve, "ciphertext", o->curve, "type", (json_int_t)mt, "body", msg);
    fb_free(msg);
    return out;
}

static void forget_out(fb_mxc_t *c, struct out_sess *x)
{
    for (struct out_sess **pp = &c->out; *pp; pp = &(*pp)->next)
        if (*pp == x) {
            *pp = x->next;
            break;
        }
    mark(c, x->field);
    out_sess_free(x);
}

static struct out_sess *new_out(fb_mxc_t *c, const char *room, int64_t now)
{
    OlmOutboundGroupSession *s =
        olm_outbound_group_session(fb_malloc(olm_outbound_group_session_size()));
    size_t rn = olm_init_outbound_group_session_random_length(s);
    uint8_t *rnd = fb_malloc(rn ? rn : 1);
    mxc_random(rnd, rn);
    size_t r = olm_init_outbound_group_session(s, rnd, rn);
    wipe_free(rnd, rn ? rn : 1);
    FB_ASSERT(r != olm_error());
    char id[128];
    size_t n = olm_outbound_group_session_id_length(s);
    FB_ASSERT(n < sizeof(id) &&
              olm_outbound_group_session_id(s, (uint8_t *)id, sizeof(id)) != olm_error());
    id[n] = 0;
    struct out_sess *o = fb_calloc(1, sizeof(*o));
    o->field = fb_asprintf("out|%s", room);
    o->room = fb_strdup(room);
    o->id = fb_strdup(id);
    o->s = s;
    o->created = now;
    o->shared = json_object();
    o->next = c->out;
    c->out = o;
    mark(c, o->field);
    /* No inbound copy of our own session: the bot never reads its own messages, and a key that
     * could decrypt them all is key material nobody needs (only the outbound ratchet is kept,
     * which cannot go back to earlier messages). */
    return o;
}

/* The session key of `o` now (new, secret), or NULL. */
static char *out_key(struct out_sess *o)
{
    size_t kl = olm_outbound_group_session_key_length(o->s);
    char *key = fb_malloc(kl + 1);
    if (olm_outbound_group_session_key(o->s, (uint8_t *)key, kl) == olm_error()) {
        wipe_free(key, kl + 1);
        return NULL;
    }
    key[kl] = 0;
    return key;
}

static int64_t enc_int(const json_t *enc, const char *k, int64_t def)
{
    json_t *v = json_object_get(enc, k);
    return json_is_integer(v) && json_integer_value(v) > 0 ? json_integer_value(v) : def;
}

static void put2(json_t **root, const char *a, const char *b, json_t *v)
{
    if (!*root)
        *root = json_object();
    json_t *x = json_object_get(*root, a);
    if (!x) {
        x = json_object();
        json_object_set_new(*root, a, x);
    }
    json_object_set_new(x, b, v);
}

int fb_mxc_share(fb_mxc_t *c, const char *room, const json_t *members, const json_t *enc,
                 int64_t now_ms, json_t **to_device, json_t **need_claim)
{
    *to_device = NULL;
    *need_claim = NULL;
    if (!c->acct || !room || !json_is_array(members))
        return FB_EINVAL;
    int64_t period = enc_int(enc, "rotation_period_ms", MXC_DEF_PERIOD_MS);
    int64_t maxn = enc_int(enc, "rotation_period_msgs", MXC_DEF_PERIOD_N);
    struct out_sess *o = find_out(c, room);
    if (o) {
        bool rotate = now_ms - o->created >= period || o->count >= maxn;
        const char *user, *dev;
        json_t *devs, *curve;
        json_object_foreach(o->shared, user, devs)
        {
            bool member = false;
            for (size_t i = 0; i < json_array_size(members); i++)
                member |= streq(json_string_value(json_array_get(members, i)), user);
            json_object_foreach(devs, dev, curve)
            {
                json_t *d = json_object_get(fb_mxc_devices(c, user), dev);
                if (!member || !d || !streq(jstr(d, "curve25519"), json_string_value(curve)))
                    rotate = true;
            }
        }
        if (rotate) {
            forget_out(c, o);
            o = NULL;
        }
    }
    if (!o)
        o = new_out(c, room, now_ms);
    char *key = NULL;
    json_t *rk = NULL;
    for (size_t i = 0; i < json_array_size(members); i++) {
        const char *user = json_string_value(json_array_get(members, i));
        const char *dev;
        json_t *d;
        if (!user)
            continue;
        json_object_foreach(unconst(fb_mxc_devices(c, user)), dev, d)
        {
            if (streq(user, c->user) && streq(dev, c->device))
                continue;
            if (json_object_get(json_object_get(o->shared, user), dev))
                continue;
            const char *curve = jstr(d, "curve25519"), *ed = jstr(d, "ed25519");
            struct olm_sess *os = curve ? best_olm(c, curve) : NULL;
            if (!os) {
                json_t *f = json_object_get(json_object_get(c->failed, user), dev);
                if (json_is_integer(f) && now_ms - json_integer_value(f) < MXC_CLAIM_RETRY)
                    continue;
                put2(need_claim, user, dev, json_string("signed_curve25519"));
                continue;
            }
            if (!rk) {
                key = out_key(o);
                if (!key)
                    break;
                rk = json_pack("{s:s,s:s,s:s,s:s}", "algorithm", FB_MXC_MEGOLM, "room_id", room,
                               "session_id", o->id, "session_key", key);
            }
            json_t *m = olm_encrypt_for(c, os, user, ed, "m.room_key", rk);
            if (!m)
                continue;
            put2(to_device, user, dev, m);
            put2(&o->shared, user, dev, json_string(curve));
            mark(c, o->field);
        }
    }
    if (rk) {
        wipe_member(rk, "session_key");
        json_decref(rk);
    }
    wipe_free_str(key);
    return 0;
}

int fb_mxc_claim_result(fb_mxc_t *c, const json_t *asked, const json_t *resp, int64_t now_ms)
{
    if (!c->acct || !json_is_object(asked))
        return 0;
    json_t *otks = json_object_get(resp, "one_time_keys");
    int made = 0;
    const char *user, *dev;
    json_t *devs, *x;
    json_object_foreach(unconst(asked), user, devs)
    {
        json_object_foreach(devs, dev, x)
        {
            json_t *d = json_object_get(fb_mxc_devices(c, user), dev);
            json_t *keys = json_object_get(json_object_get(otks, user), dev);
            const char *curve = jstr(d, "curve25519"), *ed = jstr(d, "ed25519");
            bool ok = false;
            const char *kid;
            json_t *k;
            char *sid = fb_asprintf("ed25519:%s", dev);
            json_object_foreach(keys, kid, k)
            {
                const char *otk = jstr(k, "key");
                if (ok || !curve || strncmp(kid, "signed_curve25519:", 18) != 0 || !otk ||
                    !fb_mxc_verify(k, user, sid, ed))
                    continue;
                OlmSession *s = olm_session(fb_malloc(olm_session_size()));
                size_t rn = olm_create_outbound_session_random_length(s);
                uint8_t *rnd = fb_malloc(rn ? rn : 1);
                mxc_random(rnd, rn);
                size_t r = olm_create_outbound_session(s, c->acct, curve, strlen(curve), otk,
                                                       strlen(otk), rnd, rn);
                wipe_free(rnd, rn ? rn : 1);
                if (r == olm_error()) {
                    olm_clear_session(s);
                    fb_free(s);
                    continue;
                }
                add_olm(c, curve, s);
                ok = true;
                made++;
            }
            fb_free(sid);
            json_t *fu = json_object_get(c->failed, user);
            if (ok) {
                if (json_object_get(fu, dev)) {
                    json_object_del(fu, dev);
                    if (json_object_size(fu) == 0)
                        json_object_del(c->failed, user);
                    mark(c, "failed");
                }
            } else {
                put2(&c->failed, user, dev, json_integer(now_ms));
                mark(c, "failed");
            }
        }
    }
    return made;
}

json_t *fb_mxc_encrypt(fb_mxc_t *c, const char *room, const char *type, const json_t *content)
{
    struct out_sess *o = room ? find_out(c, room) : NULL;
    if (!o || !type || !json_is_object(content))
        return NULL;
    /* The relation stays in clear (the server aggregates threads by it): moved out. */
    json_t *plain = json_copy(unconst(content));
    json_t *rel = json_incref(json_object_get(plain, "m.relates_to"));
    json_object_del(plain, "m.relates_to");
    json_t *p = json_pack("{s:s,s:o,s:s}", "type", type, "content", plain, "room_id", room);
    char *pt = p ? json_dumps(p, JSON_COMPACT) : NULL;
    json_decref(p);
    if (!pt) {
        json_decref(rel);
        return NULL;
    }
    size_t pl = strlen(pt);
    size_t ml = olm_group_encrypt_message_length(o->s, pl);
    char *msg = fb_malloc(ml + 1);
    size_t r = olm_group_encrypt(o->s, (const uint8_t *)pt, pl, (uint8_t *)msg, ml);
    explicit_bzero(pt, pl);
    free(pt); /* fb-lint: allow free (jansson's allocation) */
    if (r == olm_error()) {
        fb_free(msg);
        json_decref(rel);
        return NULL;
    }
    msg[r] = 0;
    o->count++;
    mark(c, o->field);
    json_t *out =
        json_pack("{s:s,s:s,s:s,s:s,s:s}", "algorithm", FB_MXC_MEGOLM, "sender_key", c->curve,
                  "ciphertext", msg, "session_id", o->id, "device_id", c->device);
    if (json_is_object(rel))
        json_object_set(out, "m.relates_to", rel);
    json_decref(rel);
    fb_free(msg);
    return out;
}

void fb_mxc_forget_room(fb_mxc_t *c, const char *room)
{
    if (!room)
        return;
    struct out_sess *o = find_out(c, room);
    if (o)
        forget_out(c, o);
    for (struct in_sess *s = c->in, *n; s; s = n) {
        n = s->next;
        if (strcmp(s->room, room) == 0) {
            unlink_in(c, s);
            mark(c, s->field);
            in_sess_free(s);
        }
    }
}

void fb_mxc_rotate_outbound(fb_mxc_t *c)
{
    while (c->out)
        forget_out(c, c->out);
}

/* ---------------------------------------------------------------------------------------- */
/* Cross-signing */

bool fb_mxc_cross_signed(const fb_mxc_t *c)
{
    return c->xsign != NULL;
}

/* A signing key from a fresh random seed: its public key in pub (at least 64 bytes). */
static OlmPkSigning *pk_new(char *pub, size_t publen)
{
    OlmPkSigning *k = olm_pk_signing(fb_malloc(olm_pk_signing_size()));
    size_t sl = olm_pk_signing_seed_length(), pl = olm_pk_signing_public_key_length();
    FB_ASSERT(pl < publen);
    uint8_t *seed = fb_malloc(sl);
    mxc_random(seed, sl);
    size_t r = olm_pk_signing_key_from_seed(k, pub, pl, seed, sl);
    wipe_free(seed, sl);
    FB_ASSERT(r != olm_error());
    pub[pl] = 0;
    return k;
}

static void pk_free(OlmPkSigning *k)
{
    olm_clear_pk_signing(k);
    fb_free(k);
}

/* Signs canonical(obj) with `k` whose public key is `pub`, as obj.signatures[user]. */
static bool pk_sign_obj(OlmPkSigning *k, const char *user, const char *pub, json_t *obj)
{
    char *can = fb_mxc_canonical(obj);
    if (!can)
        return false;
    size_t sl = olm_pk_signature_length();
    char *sig = fb_malloc(sl + 1);
    size_t r = olm_pk_sign(k, (const uint8_t *)can, strlen(can), (uint8_t *)sig, sl);
    fb_free(can);
    if (r == olm_error()) {
        fb_free(sig);
        return false;
    }
    sig[sl] = 0;
    char *kid = fb_asprintf("ed25519:%s", pub);
    add_sig(obj, user, kid, sig);
    fb_free(kid);
    return true;
}

static json_t *xkey_obj(const char *user, const char *usage, const char *pub)
{
    char *kid = fb_asprintf("ed25519:%s", pub);
    json_t *o = json_pack("{s:s,s:[s],s:{s:s}}", "user_id", user, "usage", usage, "keys", kid, pub);
    fb_free(kid);
    return o;
}

int fb_mxc_cross_signing_new(fb_mxc_t *c, json_t **keys, json_t **sigs)
{
    *keys = NULL;
    *sigs = NULL;
    if (!c->acct)
        return FB_EINVAL;
    char mp[64], sp[64], up[64];
    OlmPkSigning *mk = pk_new(mp, sizeof(mp)), *sk = pk_new(sp, sizeof(sp)),
                 *uk = pk_new(up, sizeof(up));
    json_t *master = xkey_obj(c->user, "master", mp);
    json_t *ssk = xkey_obj(c->user, "self_signing", sp);
    json_t *usk = xkey_obj(c->user, "user_signing", up);
    json_t *dk = device_keys(c);
    json_t *msig = json_deep_copy(master);
    bool ok = dk && pk_sign_obj(mk, c->user, mp, ssk) && pk_sign_obj(mk, c->user, mp, usk) &&
              pk_sign_obj(sk, c->user, sp, dk) && sign_device(c, msig);
    pk_free(mk);
    pk_free(sk);
    pk_free(uk);
    if (!ok) {
        json_decref(master);
        json_decref(ssk);
        json_decref(usk);
        json_decref(dk);
        json_decref(msig);
        return FB_EPROTO;
    }
    *keys = json_pack("{s:o,s:o,s:o}", "master_key", master, "self_signing_key", ssk,
                      "user_signing_key", usk);
    json_t *mine = json_object();
    json_object_set_new(mine, c->device, dk);
    json_object_set_new(mine, mp, msig);
    *sigs = json_object();
    json_object_set_new(*sigs, c->user, mine);
    return 0;
}

void fb_mxc_cross_signing_done(fb_mxc_t *c, const json_t *keys)
{
    const char *m = xkey_pub(json_object_get(keys, "master_key"), c->user, "master");
    const char *s = xkey_pub(json_object_get(keys, "self_signing_key"), c->user, "self_signing");
    const char *u = xkey_pub(json_object_get(keys, "user_signing_key"), c->user, "user_signing");
    json_decref(c->xsign);
    c->xsign = json_pack("{s:s?,s:s?,s:s?}", "master", m, "self_signing", s, "user_signing", u);
    mark(c, "xsign");
}
