/* SPDX-License-Identifier: MIT */
/*
 * test_matrix_crypto.c - the end-to-end encryption machine (adapters/matrix/mx_crypto.c): two
 * machines talking to each other (user A and user B, keys handed across as the server would),
 * plus a raw libolm device that sends what a hostile or buggy client would.
 */
#include <olm/olm.h>
#include <olm/pk.h>
#include <string.h>
#include <sys/random.h>

#include <jansson.h>

#include "../../adapters/matrix/mx_crypto.h"
#include "frichebot/alloc.h"
#include "frichebot/err.h"
#include "task.h"

static const uint8_t KEY[32] = "0123456789abcdef0123456789abcdef";
static const uint8_t BADKEY[32] = "fedcba9876543210fedcba9876543210";

struct peer {
    fb_mxc_t *c;
    const char *user, *dev;
    json_t *dk;   /* its signed device_keys */
    json_t *otks; /* its uploaded one-time keys */
    size_t next_otk;
};

static void fill_random(void *p, size_t n)
{
    uint8_t *b = p;
    while (n) {
        ssize_t r = getrandom(b, n, 0);
        if (r > 0) {
            b += r;
            n -= (size_t)r;
        }
    }
}

static int peer_init(struct peer *p, const char *user, const char *dev)
{
    memset(p, 0, sizeof(*p));
    p->user = user;
    p->dev = dev;
    fb_mxc_opts_t o = {.user_id = user, .device_id = dev, .pickle_key = KEY, .pickle_key_len = 32};
    p->c = fb_mxc_new(&o);
    ASSERT_NOT_NULL(p->c);
    ASSERT(fb_mxc_ensure_account(p->c));
    json_t *body = fb_mxc_keys_to_upload(p->c, 0, false);
    ASSERT_NOT_NULL(body);
    p->dk = json_incref(json_object_get(body, "device_keys"));
    p->otks = json_incref(json_object_get(body, "one_time_keys"));
    ASSERT_NOT_NULL(p->dk);
    ASSERT_EQ(json_object_size(p->otks), 50);
    json_decref(body);
    fb_mxc_keys_published(p->c);
    json_decref(fb_mxc_take_dirty(p->c));
    return 0;
}

static void peer_done(struct peer *p)
{
    fb_mxc_free(p->c);
    json_decref(p->dk);
    json_decref(p->otks);
}

/* `c` tracks `user` and gets `dk` (its device `dev`) from /keys/query: the number kept. */
static int learn(fb_mxc_t *c, const char *user, const char *dev, const json_t *dk)
{
    fb_mxc_track_user(c, user);
    json_t *r = json_pack("{s:{s:{s:O}}}", "device_keys", user, dev, dk);
    int n = fb_mxc_keys_query_result(c, r);
    json_decref(r);
    return n;
}

/* The /keys/claim answer of `p` for one of its one-time keys. */
static json_t *claim_answer(struct peer *p)
{
    void *it = json_object_iter(p->otks);
    for (size_t i = 0; i < p->next_otk && it; i++)
        it = json_object_iter_next(p->otks, it);
    p->next_otk++;
    json_t *k = json_object();
    json_object_set(k, json_object_iter_key(it), json_object_iter_value(it));
    return json_pack("{s:{s:{s:o}}}", "one_time_keys", p->user, p->dev, k);
}

/* The to-device event `content` from `from`, as /sync delivers it. */
static json_t *to_dev_event(const char *from, const json_t *content)
{
    return json_pack("{s:s,s:s,s:O}", "sender", from, "type", "m.room.encrypted", "content",
                     content);
}

/* Makes `a` share room `room` with `b` (members a and b), claiming a key if needed; the
 * to-device message for b in *msg. */
static int share_to(struct peer *a, struct peer *b, const char *room, json_t **msg)
{
    json_t *members = json_pack("[ss]", a->user, b->user);
    json_t *td, *nc;
    ASSERT_OK(fb_mxc_share(a->c, room, members, NULL, 1000, &td, &nc));
    if (nc) {
        ASSERT_NULL(td);
        json_t *ans = claim_answer(b);
        ASSERT_EQ(fb_mxc_claim_result(a->c, nc, ans, 1000), 1);
        json_decref(ans);
        json_decref(nc);
        ASSERT_OK(fb_mxc_share(a->c, room, members, NULL, 1000, &td, &nc));
        ASSERT_NULL(nc);
    }
    json_decref(members);
    ASSERT_NOT_NULL(td);
    *msg = json_incref(json_object_get(json_object_get(td, b->user), b->dev));
    ASSERT_NOT_NULL(*msg);
    json_decref(td);
    return 0;
}

static json_t *room_event(const char *room, const char *eid, const char *sender,
                          const json_t *content)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:O}", "type", "m.room.encrypted", "room_id", room,
                     "event_id", eid, "sender", sender, "content", content);
}

/* A and B, each knowing the other. */
static int pair(struct peer *a, struct peer *b)
{
    if (peer_init(a, "@a:example.org", "DEVA") || peer_init(b, "@b:example.org", "DEVB"))
        return 1;
    ASSERT_EQ(learn(a->c, b->user, b->dev, b->dk), 1);
    ASSERT_EQ(learn(b->c, a->user, a->dev, a->dk), 1);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* A raw libolm device, to send what the machine itself never would */

struct raw {
    OlmAccount *a;
    OlmSession *s;
    const char *user, *dev;
    char curve[64], ed[64];
};

static void raw_init(struct raw *r, const char *user, const char *dev)
{
    memset(r, 0, sizeof(*r));
    r->user = user;
    r->dev = dev;
    r->a = olm_account(fb_malloc(olm_account_size()));
    size_t n = olm_create_account_random_length(r->a);
    uint8_t *rnd = fb_malloc(n);
    fill_random(rnd, n);
    olm_create_account(r->a, rnd, n);
    fb_free(rnd);
    char buf[256];
    size_t kl = olm_account_identity_keys(r->a, buf, sizeof(buf));
    json_t *k = json_loadb(buf, kl, 0, NULL);
    snprintf(r->curve, sizeof(r->curve), "%s", json_string_value(json_object_get(k, "curve25519")));
    snprintf(r->ed, sizeof(r->ed), "%s", json_string_value(json_object_get(k, "ed25519")));
    json_decref(k);
}

static void raw_done(struct raw *r)
{
    if (r->s) {
        olm_clear_session(r->s);
        fb_free(r->s);
    }
    olm_clear_account(r->a);
    fb_free(r->a);
}

static json_t *raw_device_keys(struct raw *r)
{
    char kc[64], ke[64];
    snprintf(kc, sizeof(kc), "curve25519:%s", r->dev);
    snprintf(ke, sizeof(ke), "ed25519:%s", r->dev);
    json_t *dk =
        json_pack("{s:s,s:s,s:[ss],s:{s:s,s:s}}", "user_id", r->user, "device_id", r->dev,
                  "algorithms", FB_MXC_OLM, FB_MXC_MEGOLM, "keys", kc, r->curve, ke, r->ed);
    char *can = fb_mxc_canonical(dk);
    char sig[128];
    size_t sl = olm_account_sign(r->a, can, strlen(can), sig, sizeof(sig));
    sig[sl] = 0;
    fb_free(can);
    json_object_set_new(dk, "signatures", json_pack("{s:{s:s}}", r->user, ke, sig));
    return dk;
}

/* Opens an outbound Olm session to peer `p` with one of its one-time keys. */
static void raw_connect(struct raw *r, struct peer *p, const char *curve)
{
    json_t *ans = claim_answer(p);
    json_t *k = json_object_iter_value(json_object_iter(
        json_object_get(json_object_get(json_object_get(ans, "one_time_keys"), p->user), p->dev)));
    const char *otk = json_string_value(json_object_get(k, "key"));
    r->s = olm_session(fb_malloc(olm_session_size()));
    size_t n = olm_create_outbound_session_random_length(r->s);
    uint8_t *rnd = fb_malloc(n);
    fill_random(rnd, n);
    olm_create_outbound_session(r->s, r->a, curve, strlen(curve), otk, strlen(otk), rnd, n);
    fb_free(rnd);
    json_decref(ans);
}

/* A to-device event carrying `payload` (stolen) to the device of identity key `curve`. */
static json_t *raw_send(struct raw *r, const char *curve, json_t *payload)
{
    char *pt = json_dumps(payload, JSON_COMPACT);
    json_decref(payload);
    size_t n = olm_encrypt_random_length(r->s);
    uint8_t *rnd = fb_malloc(n ? n : 1);
    fill_random(rnd, n);
    size_t type = olm_encrypt_message_type(r->s);
    size_t ml = olm_encrypt_message_length(r->s, strlen(pt));
    char *msg = fb_malloc(ml + 1);
    size_t w = olm_encrypt(r->s, pt, strlen(pt), rnd, n, msg, ml);
    msg[w] = 0;
    fb_free(rnd);
    free(pt);
    json_t *ev = json_pack("{s:s,s:s,s:{s:s,s:s,s:{s:{s:i,s:s}}}}", "sender", r->user, "type",
                           "m.room.encrypted", "content", "algorithm", FB_MXC_OLM, "sender_key",
                           r->curve, "ciphertext", curve, "type", (int)type, "body", msg);
    fb_free(msg);
    return ev;
}

/* The Olm payload a correct client sends from `r` to peer `p`. */
static json_t *raw_payload(struct raw *r, struct peer *p, const char *type, json_t *content)
{
    return json_pack("{s:s,s:o,s:s,s:s,s:{s:s},s:{s:s},s:s}", "type", type, "content", content,
                     "sender", r->user, "recipient", p->user, "recipient_keys", "ed25519",
                     fb_mxc_ed25519(p->c), "keys", "ed25519", r->ed, "sender_device", r->dev);
}

/* The exported form (olm_export_inbound_group_session at index 0) of session key `key`. */
static char *export_key(const char *key)
{
    OlmInboundGroupSession *in =
        olm_inbound_group_session(fb_malloc(olm_inbound_group_session_size()));
    char *k = fb_strdup(key);
    olm_init_inbound_group_session(in, (uint8_t *)k, strlen(k));
    fb_free(k);
    size_t n = olm_export_inbound_group_session_length(in);
    char *out = fb_malloc(n + 1);
    out[olm_export_inbound_group_session(in, (uint8_t *)out, n, 0)] = 0;
    olm_clear_inbound_group_session(in);
    fb_free(in);
    return out;
}

/* A signing key from a random seed; its public key in pub. */
static OlmPkSigning *pk_key(char pub[64])
{
    OlmPkSigning *k = olm_pk_signing(fb_malloc(olm_pk_signing_size()));
    uint8_t seed[32];
    fill_random(seed, sizeof(seed));
    olm_pk_signing_key_from_seed(k, pub, olm_pk_signing_public_key_length(), seed, sizeof(seed));
    pub[olm_pk_signing_public_key_length()] = 0;
    return k;
}

static void pk_sign_into(OlmPkSigning *k, const char *user, const char *pub, json_t *obj)
{
    char *can = fb_mxc_canonical(obj);
    char sig[128], kid[80];
    sig[olm_pk_sign(k, (const uint8_t *)can, strlen(can), (uint8_t *)sig, sizeof(sig))] = 0;
    fb_free(can);
    snprintf(kid, sizeof(kid), "ed25519:%s", pub);
    json_t *sigs = json_object_get(obj, "signatures");
    if (!sigs) {
        sigs = json_object();
        json_object_set_new(obj, "signatures", sigs);
    }
    if (!json_object_get(sigs, user))
        json_object_set_new(sigs, user, json_object());
    json_object_set_new(json_object_get(sigs, user), kid, json_string(sig));
}

/* A /keys/query answer for `user` with device `dk` signed by a new self-signing key, itself
 * signed by a new master key. */
static json_t *fake_cross_signing(const char *user, json_t *dk)
{
    char mp[64], sp[64], kid[80];
    OlmPkSigning *mk = pk_key(mp), *sk = pk_key(sp);
    snprintf(kid, sizeof(kid), "ed25519:%s", mp);
    json_t *master =
        json_pack("{s:s,s:[s],s:{s:s}}", "user_id", user, "usage", "master", "keys", kid, mp);
    snprintf(kid, sizeof(kid), "ed25519:%s", sp);
    json_t *ssk =
        json_pack("{s:s,s:[s],s:{s:s}}", "user_id", user, "usage", "self_signing", "keys", kid, sp);
    pk_sign_into(mk, user, mp, ssk);
    pk_sign_into(sk, user, sp, dk);
    olm_clear_pk_signing(mk);
    olm_clear_pk_signing(sk);
    fb_free(mk);
    fb_free(sk);
    return json_pack("{s:{s:{s:O}},s:{s:o},s:{s:o}}", "device_keys", user,
                     json_string_value(json_object_get(dk, "device_id")), dk, "master_keys", user,
                     master, "self_signing_keys", user, ssk);
}

/* A raw peer known to `p`, with an Olm session to it. */
static int raw_pair(struct raw *r, struct peer *p, const char *user)
{
    raw_init(r, user, "RAWDEV");
    json_t *dk = raw_device_keys(r);
    ASSERT_EQ(learn(p->c, user, "RAWDEV", dk), 1);
    json_decref(dk);
    raw_connect(r, p, fb_mxc_curve25519(p->c));
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Canonical JSON and signatures */

TEST_IMPL(crypto_canonical_json)
{
    /* The examples of the spec's appendix "Canonical JSON", and the escaping rules. */
    static const struct {
        const char *in, *want;
    } v[] = {
        {"{}", "{}"},
        {"{\"one\": 1, \"two\": \"Two\"}", "{\"one\":1,\"two\":\"Two\"}"},
        {"{\"b\": \"2\", \"a\": \"1\"}", "{\"a\":\"1\",\"b\":\"2\"}"},
        {"{\"auth\": {\"success\": true, \"mxid\": \"@john.doe:example.com\", \"profile\": "
         "{\"display_name\": \"John Doe\", \"three_pids\": [{\"medium\": \"email\", \"address\": "
         "\"john.doe@example.org\"}, {\"medium\": \"msisdn\", \"address\": \"123456789\"}]}}}",
         "{\"auth\":{\"mxid\":\"@john.doe:example.com\",\"profile\":{\"display_name\":\"John "
         "Doe\",\"three_pids\":[{\"address\":\"john.doe@example.org\",\"medium\":\"email\"},{"
         "\"address\":\"123456789\",\"medium\":\"msisdn\"}]},\"success\":true}}"},
        {"{\"a\": \"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\"}",
         "{\"a\":\"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\"}"},
        {"{\"\xe6\x9c\xac\": 2, \"\xe6\x97\xa5\": 1}", "{\"\xe6\x97\xa5\":1,\"\xe6\x9c\xac\":2}"},
        {"{\"a\": \"\\u65E5\"}", "{\"a\":\"\xe6\x97\xa5\"}"},
        {"{\"a\": null}", "{\"a\":null}"},
        {"{\"a\": -0, \"b\": 1e10}", "{\"a\":0,\"b\":10000000000}"},
        {"{\"a\": \"\\u001f\\n/\\\"\\\\\"}", "{\"a\":\"\\u001f\\n/\\\"\\\\\"}"},
        {"{\"signatures\": {}, \"unsigned\": {}, \"z\": [1, true, false]}",
         "{\"z\":[1,true,false]}"},
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(v); i++) {
        json_t *j = json_loads(v[i].in, JSON_DECODE_ANY, NULL);
        ASSERT_NOT_NULL(j);
        char *s = fb_mxc_canonical(j);
        ASSERT_STR_EQ(s, v[i].want);
        fb_free(s);
        json_decref(j);
    }
    /* Floats are not allowed. */
    json_t *j = json_loads("{\"a\": 1.5}", 0, NULL);
    ASSERT_NULL(fb_mxc_canonical(j));
    json_decref(j);
    return 0;
}

TEST_IMPL(crypto_sign_verify)
{
    struct peer a;
    if (peer_init(&a, "@a:example.org", "DEVA"))
        return 1;
    ASSERT(fb_mxc_verify(a.dk, a.user, "ed25519:DEVA", fb_mxc_ed25519(a.c)));
    ASSERT(!fb_mxc_verify(a.dk, a.user, "ed25519:DEVA", fb_mxc_curve25519(a.c)));
    ASSERT(!fb_mxc_verify(a.dk, "@b:example.org", "ed25519:DEVA", fb_mxc_ed25519(a.c)));
    json_t *t = json_deep_copy(a.dk);
    json_object_set_new(t, "device_id", json_string("DEVX"));
    ASSERT(!fb_mxc_verify(t, a.user, "ed25519:DEVA", fb_mxc_ed25519(a.c)));
    /* unsigned members are not signed */
    json_object_set_new(t, "device_id", json_string("DEVA"));
    json_object_set_new(t, "unsigned", json_pack("{s:s}", "device_display_name", "x"));
    ASSERT(fb_mxc_verify(t, a.user, "ed25519:DEVA", fb_mxc_ed25519(a.c)));
    json_decref(t);
    /* the one-time keys are signed too */
    const char *kid;
    json_t *k;
    json_object_foreach(a.otks, kid, k)
        ASSERT(fb_mxc_verify(k, a.user, "ed25519:DEVA", fb_mxc_ed25519(a.c)));
    peer_done(&a);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Device lists */

TEST_IMPL(crypto_device_keys_checked)
{
    struct peer a, b, b2;
    if (peer_init(&a, "@a:example.org", "DEVA") || peer_init(&b, "@b:example.org", "DEVB") ||
        peer_init(&b2, "@b:example.org", "DEVB"))
        return 1;
    /* untracked users are not taken */
    json_t *r = json_pack("{s:{s:{s:O}}}", "device_keys", b.user, b.dev, b.dk);
    ASSERT_EQ(fb_mxc_keys_query_result(a.c, r), 0);
    ASSERT_NULL(fb_mxc_devices(a.c, b.user));
    json_decref(r);
    fb_mxc_track_user(a.c, b.user);
    ASSERT(fb_mxc_user_outdated(a.c, b.user));
    json_t *q = fb_mxc_keys_query_body(a.c, 10);
    ASSERT_NOT_NULL(json_object_get(json_object_get(q, "device_keys"), b.user));
    json_decref(q);
    /* a forged device (the curve key changed after signing) is dropped */
    json_t *forged = json_deep_copy(b.dk);
    json_object_set_new(json_object_get(forged, "keys"), "curve25519:DEVB",
                        json_string(fb_mxc_curve25519(a.c)));
    ASSERT_EQ(learn(a.c, b.user, b.dev, forged), 0);
    ASSERT_EQ(json_object_size(fb_mxc_devices(a.c, b.user)), 0);
    ASSERT(!fb_mxc_user_outdated(a.c, b.user));
    ASSERT_NULL(fb_mxc_keys_query_body(a.c, 10));
    json_decref(forged);
    /* a device listed under another id is dropped */
    r = json_pack("{s:{s:{s:O}}}", "device_keys", b.user, "OTHER", b.dk);
    ASSERT_EQ(fb_mxc_keys_query_result(a.c, r), 0);
    json_decref(r);
    /* the real one is kept, not cross-signed */
    ASSERT_EQ(learn(a.c, b.user, b.dev, b.dk), 1);
    const json_t *d = json_object_get(fb_mxc_devices(a.c, b.user), "DEVB");
    ASSERT_STR_EQ(json_string_value(json_object_get(d, "ed25519")), fb_mxc_ed25519(b.c));
    ASSERT_STR_EQ(json_string_value(json_object_get(d, "curve25519")), fb_mxc_curve25519(b.c));
    ASSERT(json_is_false(json_object_get(d, "cross_signed")));
    /* the same device id with another (validly self-signed) ed25519 key: dropped, old kept */
    fb_mxc_device_list_changed(a.c, b.user);
    ASSERT(fb_mxc_user_outdated(a.c, b.user));
    ASSERT_EQ(learn(a.c, b.user, b.dev, b2.dk), 0);
    d = json_object_get(fb_mxc_devices(a.c, b.user), "DEVB");
    ASSERT_STR_EQ(json_string_value(json_object_get(d, "ed25519")), fb_mxc_ed25519(b.c));
    /* left: forgotten */
    fb_mxc_device_list_left(a.c, b.user);
    ASSERT_NULL(fb_mxc_devices(a.c, b.user));
    /* garbage */
    ASSERT_EQ(fb_mxc_keys_query_result(a.c, json_null()), FB_EPROTO);
    peer_done(&a);
    peer_done(&b);
    peer_done(&b2);
    return 0;
}

TEST_IMPL(crypto_keys_upload)
{
    fb_mxc_opts_t o = {
        .user_id = "@a:example.org", .device_id = "DEVA", .pickle_key = KEY, .pickle_key_len = 32};
    fb_mxc_opts_t bad = o;
    bad.pickle_key_len = 16;
    ASSERT_NULL(fb_mxc_new(&bad));
    fb_mxc_t *c = fb_mxc_new(&o);
    ASSERT(fb_mxc_ensure_account(c));
    ASSERT(!fb_mxc_ensure_account(c));
    /* first: device keys only (count unknown) */
    json_t *b = fb_mxc_keys_to_upload(c, -1, false);
    ASSERT_NOT_NULL(json_object_get(b, "device_keys"));
    ASSERT_NULL(json_object_get(b, "one_time_keys"));
    ASSERT_NULL(json_object_get(b, "fallback_keys"));
    json_decref(b);
    fb_mxc_keys_published(c);
    ASSERT_NULL(fb_mxc_keys_to_upload(c, -1, false));
    /* 10 on the server: 40 more up to half the maximum (100) */
    b = fb_mxc_keys_to_upload(c, 10, false);
    ASSERT_NULL(json_object_get(b, "device_keys"));
    ASSERT_EQ(json_object_size(json_object_get(b, "one_time_keys")), 40);
    /* not published yet: the same keys again */
    json_t *b2 = fb_mxc_keys_to_upload(c, 10, false);
    ASSERT(json_equal(json_object_get(b, "one_time_keys"), json_object_get(b2, "one_time_keys")));
    json_decref(b2);
    json_decref(b);
    fb_mxc_keys_published(c);
    ASSERT_NULL(fb_mxc_keys_to_upload(c, 50, false));
    /* one used, and the fallback key missing */
    b = fb_mxc_keys_to_upload(c, 49, true);
    ASSERT_EQ(json_object_size(json_object_get(b, "one_time_keys")), 1);
    json_t *fk = json_object_get(b, "fallback_keys");
    ASSERT_EQ(json_object_size(fk), 1);
    json_t *k = json_object_iter_value(json_object_iter(fk));
    ASSERT(json_is_true(json_object_get(k, "fallback")));
    ASSERT(fb_mxc_verify(k, "@a:example.org", "ed25519:DEVA", fb_mxc_ed25519(c)));
    json_decref(b);
    fb_mxc_keys_published(c);
    ASSERT_NULL(fb_mxc_keys_to_upload(c, 50, false));
    fb_mxc_free(c);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Olm and Megolm between two machines */

TEST_IMPL(crypto_olm_megolm_both_ways)
{
    struct peer a, b;
    if (pair(&a, &b))
        return 1;
    char type[64];
    /* A -> B: a pre-key message (new session, B's one-time key used) */
    json_t *m;
    if (share_to(&a, &b, "!r1:example.org", &m))
        return 1;
    json_t *ct = json_object_get(json_object_get(m, "ciphertext"), fb_mxc_curve25519(b.c));
    ASSERT_EQ(json_integer_value(json_object_get(ct, "type")), 0);
    json_t *ev = to_dev_event(a.user, m);
    ASSERT_EQ(fb_mxc_to_device(b.c, ev, type), FB_MXC_OK);
    ASSERT_STR_EQ(type, "m.room_key");
    /* the same ciphertext again: replay */
    ASSERT_EQ(fb_mxc_to_device(b.c, ev, type), FB_MXC_REPLAY);
    json_decref(ev);
    json_decref(m);
    /* an m.room.message A -> B in the room */
    json_t *content = json_pack("{s:s,s:s}", "msgtype", "m.text", "body", "bonjour");
    json_t *enc = fb_mxc_encrypt(a.c, "!r1:example.org", "m.room.message", content);
    ASSERT_NOT_NULL(enc);
    ASSERT_STR_EQ(json_string_value(json_object_get(enc, "algorithm")), FB_MXC_MEGOLM);
    ASSERT_STR_EQ(json_string_value(json_object_get(enc, "device_id")), "DEVA");
    ev = room_event("!r1:example.org", "$e1", a.user, enc);
    json_t *out = NULL;
    ASSERT_EQ(fb_mxc_decrypt(b.c, ev, &out), FB_MXC_OK);
    ASSERT_STR_EQ(json_string_value(json_object_get(out, "type")), "m.room.message");
    ASSERT(json_equal(json_object_get(out, "content"), content));
    ASSERT(json_is_true(json_object_get(out, "fb_decrypted")));
    ASSERT_STR_EQ(json_string_value(json_object_get(out, "event_id")), "$e1");
    json_decref(out);
    /* the same event again: fine; the same index under another event id: replay */
    ASSERT_EQ(fb_mxc_decrypt(b.c, ev, &out), FB_MXC_OK);
    json_decref(out);
    json_t *ev2 = room_event("!r1:example.org", "$other", a.user, enc);
    ASSERT_EQ(fb_mxc_decrypt(b.c, ev2, &out), FB_MXC_REPLAY);
    ASSERT_NULL(out);
    json_decref(ev2);
    /* from another sender with A's session: refused */
    ev2 = room_event("!r1:example.org", "$e9", b.user, enc);
    ASSERT_EQ(fb_mxc_decrypt(b.c, ev2, &out), FB_MXC_BAD);
    json_decref(ev2);
    /* A keeps no inbound copy of its own session: it cannot read its own message back */
    ASSERT_EQ(fb_mxc_decrypt(a.c, ev, &out), FB_MXC_UNKNOWN_SESSION);
    ASSERT_NULL(out);
    /* an unknown session */
    json_t *enc2 = json_deep_copy(enc);
    json_object_set_new(enc2, "session_id", json_string("nope"));
    ev2 = room_event("!r1:example.org", "$e2", a.user, enc2);
    ASSERT_EQ(fb_mxc_decrypt(b.c, ev2, &out), FB_MXC_UNKNOWN_SESSION);
    json_decref(ev2);
    json_decref(enc2);
    /* the key request for it */
    json_t *kr = fb_mxc_key_request(b.c, ev, "req1");
    ASSERT_STR_EQ(json_string_value(json_object_get(kr, "action")), "request");
    ASSERT_STR_EQ(json_string_value(json_object_get(kr, "requesting_device_id")), "DEVB");
    json_decref(kr);
    json_decref(ev);
    json_decref(enc);

    /* B -> A: B already has a session with A (normal message, no claim) */
    json_t *members = json_pack("[ss]", a.user, b.user), *td, *nc;
    ASSERT_OK(fb_mxc_share(b.c, "!r2:example.org", members, NULL, 1000, &td, &nc));
    ASSERT_NULL(nc);
    m = json_object_get(json_object_get(td, a.user), "DEVA");
    ct = json_object_get(json_object_get(m, "ciphertext"), fb_mxc_curve25519(a.c));
    ASSERT_EQ(json_integer_value(json_object_get(ct, "type")), 1);
    ev = to_dev_event(b.user, m);
    ASSERT_EQ(fb_mxc_to_device(a.c, ev, type), FB_MXC_OK);
    json_decref(ev);
    json_decref(td);
    /* nothing more to share: no to-device message */
    ASSERT_OK(fb_mxc_share(b.c, "!r2:example.org", members, NULL, 1000, &td, &nc));
    ASSERT_NULL(td);
    ASSERT_NULL(nc);
    enc = fb_mxc_encrypt(b.c, "!r2:example.org", "m.room.message", content);
    ev = room_event("!r2:example.org", "$f1", b.user, enc);
    ASSERT_EQ(fb_mxc_decrypt(a.c, ev, &out), FB_MXC_OK);
    ASSERT(json_equal(json_object_get(out, "content"), content));
    json_decref(out);
    json_decref(ev);
    json_decref(enc);
    /* A -> B again, now a normal message */
    if (share_to(&a, &b, "!r3:example.org", &m))
        return 1;
    ct = json_object_get(json_object_get(m, "ciphertext"), fb_mxc_curve25519(b.c));
    ASSERT_EQ(json_integer_value(json_object_get(ct, "type")), 1);
    ev = to_dev_event(a.user, m);
    ASSERT_EQ(fb_mxc_to_device(b.c, ev, type), FB_MXC_OK);
    json_decref(ev);
    json_decref(m);
    /* forget the room: its sessions are gone */
    fb_mxc_forget_room(a.c, "!r1:example.org");
    ASSERT_NULL(fb_mxc_encrypt(a.c, "!r1:example.org", "m.room.message", content));
    json_decref(members);
    json_decref(content);
    peer_done(&a);
    peer_done(&b);
    return 0;
}

TEST_IMPL(crypto_unknown_device_keeps_otk)
{
    struct peer b, c;
    if (peer_init(&b, "@b:example.org", "DEVB") || peer_init(&c, "@c:example.org", "DEVC"))
        return 1;
    ASSERT_EQ(learn(c.c, b.user, b.dev, b.dk), 1);
    json_t *m;
    if (share_to(&c, &b, "!r:example.org", &m))
        return 1;
    json_t *ev = to_dev_event(c.user, m);
    char type[64];
    ASSERT_EQ(fb_mxc_to_device(b.c, ev, type), FB_MXC_UNKNOWN_DEVICE);
    json_t *d = fb_mxc_take_dirty(b.c);
    ASSERT_NULL(json_object_get(d, "account")); /* the one-time key was not consumed */
    json_decref(d);
    ASSERT_EQ(learn(b.c, c.user, c.dev, c.dk), 1);
    ASSERT_EQ(fb_mxc_to_device(b.c, ev, type), FB_MXC_OK);
    d = fb_mxc_take_dirty(b.c);
    ASSERT_NOT_NULL(json_object_get(d, "account")); /* now it is */
    ASSERT_NOT_NULL(json_object_get(d, "seen"));
    json_decref(d);
    /* not an encrypted to-device event: ignored; garbage: bad */
    json_t *plain = json_pack("{s:s,s:s,s:{}}", "sender", c.user, "type", "m.dummy", "content");
    ASSERT_EQ(fb_mxc_to_device(b.c, plain, type), FB_MXC_IGNORED);
    ASSERT_STR_EQ(type, "m.dummy");
    json_decref(plain);
    ASSERT_EQ(fb_mxc_to_device(b.c, json_null(), type), FB_MXC_BAD);
    json_decref(ev);
    json_decref(m);
    peer_done(&b);
    peer_done(&c);
    return 0;
}

TEST_IMPL(crypto_olm_payload_checks)
{
    struct peer b;
    struct raw r;
    char type[64];
    if (peer_init(&b, "@b:example.org", "DEVB") || raw_pair(&r, &b, "@r:example.org"))
        return 1;
    /* wrong recipient_keys, wrong recipient, wrong sender, wrong keys: all BAD, and the
     * one-time key stays (the same pre-key message decrypts later) */
    static const char *const what[] = {"recipient_keys", "recipient", "sender", "keys"};
    for (size_t i = 0; i < FB_ARRAY_SIZE(what); i++) {
        json_t *p = raw_payload(&r, &b, "m.dummy", json_object());
        if (strcmp(what[i], "recipient_keys") == 0 || strcmp(what[i], "keys") == 0)
            json_object_set_new(p, what[i], json_pack("{s:s}", "ed25519", "AAAA"));
        else
            json_object_set_new(p, what[i], json_string("@x:example.org"));
        json_t *ev = raw_send(&r, fb_mxc_curve25519(b.c), p);
        ASSERT_EQ(fb_mxc_to_device(b.c, ev, type), FB_MXC_BAD);
        json_decref(ev);
    }
    json_t *ev =
        raw_send(&r, fb_mxc_curve25519(b.c), raw_payload(&r, &b, "m.dummy", json_object()));
    ASSERT_EQ(fb_mxc_to_device(b.c, ev, type), FB_MXC_OK);
    ASSERT_STR_EQ(type, "m.dummy");
    json_decref(ev);
    /* that one-time key is used up: another device claiming it gets nowhere */
    struct raw r2;
    b.next_otk--;
    if (raw_pair(&r2, &b, "@r2:example.org"))
        return 1;
    ev = raw_send(&r2, fb_mxc_curve25519(b.c), raw_payload(&r2, &b, "m.dummy", json_object()));
    ASSERT_EQ(fb_mxc_to_device(b.c, ev, type), FB_MXC_BAD);
    json_decref(ev);
    raw_done(&r2);
    /* a bad ciphertext */
    ev = raw_send(&r, fb_mxc_curve25519(b.c), raw_payload(&r, &b, "m.dummy", json_object()));
    json_t *body = json_object_get(
        json_object_get(json_object_get(json_object_get(ev, "content"), "ciphertext"),
                        fb_mxc_curve25519(b.c)),
        "body");
    char *s = fb_strdup(json_string_value(body));
    s[10] = s[10] == 'A' ? 'B' : 'A';
    json_string_set(body, s);
    fb_free(s);
    ASSERT_EQ(fb_mxc_to_device(b.c, ev, type), FB_MXC_BAD);
    json_decref(ev);
    raw_done(&r);
    peer_done(&b);
    return 0;
}

/* A raw peer's Megolm session: m.room_key sent to `b`, then events encrypted with it. */
TEST_IMPL(crypto_megolm_checks)
{
    struct peer b;
    struct raw r;
    char type[64];
    if (peer_init(&b, "@b:example.org", "DEVB") || raw_pair(&r, &b, "@r:example.org"))
        return 1;
    OlmOutboundGroupSession *g =
        olm_outbound_group_session(fb_malloc(olm_outbound_group_session_size()));
    size_t n = olm_init_outbound_group_session_random_length(g);
    uint8_t *rnd = fb_malloc(n);
    fill_random(rnd, n);
    olm_init_outbound_group_session(g, rnd, n);
    fb_free(rnd);
    char sid[64], key[512];
    sid[olm_outbound_group_session_id(g, (uint8_t *)sid, sizeof(sid))] = 0;
    key[olm_outbound_group_session_key(g, (uint8_t *)key, sizeof(key))] = 0;
    /* a forwarded key (exported form) from another user's cross-signed device: refused */
    json_t *rdk = raw_device_keys(&r);
    json_t *rxs = fake_cross_signing(r.user, rdk);
    fb_mxc_device_list_changed(b.c, r.user);
    ASSERT_EQ(fb_mxc_keys_query_result(b.c, rxs), 1);
    ASSERT(json_is_true(
        json_object_get(json_object_get(fb_mxc_devices(b.c, r.user), "RAWDEV"), "cross_signed")));
    json_decref(rxs);
    json_decref(rdk);
    char *exp = export_key(key);
    json_t *fwd = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "algorithm", FB_MXC_MEGOLM, "room_id",
                            "!x:example.org", "session_id", sid, "session_key", exp, "sender_key",
                            r.curve, "sender_claimed_ed25519_key", r.ed);
    json_t *ev = raw_send(&r, fb_mxc_curve25519(b.c),
                          raw_payload(&r, &b, "m.forwarded_room_key", json_incref(fwd)));
    ASSERT_EQ(fb_mxc_to_device(b.c, ev, type), FB_MXC_BAD);
    json_decref(ev);
    /* the same from B's own device, cross-signed by B: taken */
    struct raw own;
    raw_init(&own, b.user, "OWNDEV");
    json_t *ownk = raw_device_keys(&own);
    json_t *xs = fake_cross_signing(b.user, ownk);
    fb_mxc_device_list_changed(b.c, b.user);
    fb_mxc_track_user(b.c, b.user);
    ASSERT_EQ(fb_mxc_keys_query_result(b.c, xs), 1);
    ASSERT(json_is_true(
        json_object_get(json_object_get(fb_mxc_devices(b.c, b.user), "OWNDEV"), "cross_signed")));
    raw_connect(&own, &b, fb_mxc_curve25519(b.c));
    json_t *fev = raw_send(&own, fb_mxc_curve25519(b.c),
                           raw_payload(&own, &b, "m.forwarded_room_key", json_incref(fwd)));
    /* ... but not before B knows the device is cross-signed */
    json_t *plain = json_deep_copy(xs);
    json_object_del(plain, "self_signing_keys");
    fb_mxc_device_list_changed(b.c, b.user);
    ASSERT_EQ(fb_mxc_keys_query_result(b.c, plain), 1);
    ASSERT_EQ(fb_mxc_to_device(b.c, fev, type), FB_MXC_BAD);
    json_decref(plain);
    json_decref(fev);
    fev = raw_send(&own, fb_mxc_curve25519(b.c),
                   raw_payload(&own, &b, "m.forwarded_room_key", json_incref(fwd)));
    fb_mxc_device_list_changed(b.c, b.user);
    ASSERT_EQ(fb_mxc_keys_query_result(b.c, xs), 1);
    ASSERT_EQ(fb_mxc_to_device(b.c, fev, type), FB_MXC_OK);
    ASSERT_STR_EQ(type, "m.forwarded_room_key");
    json_decref(fev);
    json_decref(xs);
    json_decref(ownk);
    json_decref(fwd);
    fb_free(exp);
    raw_done(&own);
    fb_mxc_forget_room(b.c, "!x:example.org");
    /* an m.room_key whose session id is not its key's: refused */
    json_t *rk = json_pack("{s:s,s:s,s:s,s:s}", "algorithm", FB_MXC_MEGOLM, "room_id",
                           "!x:example.org", "session_id", "wrong", "session_key", key);
    ev = raw_send(&r, fb_mxc_curve25519(b.c), raw_payload(&r, &b, "m.room_key", rk));
    ASSERT_EQ(fb_mxc_to_device(b.c, ev, type), FB_MXC_BAD);
    json_decref(ev);
    rk = json_pack("{s:s,s:s,s:s,s:s}", "algorithm", FB_MXC_MEGOLM, "room_id", "!x:example.org",
                   "session_id", sid, "session_key", key);
    ev = raw_send(&r, fb_mxc_curve25519(b.c), raw_payload(&r, &b, "m.room_key", rk));
    ASSERT_EQ(fb_mxc_to_device(b.c, ev, type), FB_MXC_OK);
    json_decref(ev);
    /* an event whose plaintext names another room: BAD */
    const char *pts[] = {"{\"type\":\"m.room.message\",\"content\":{\"body\":\"x\"},\"room_id\":"
                         "\"!y:example.org\"}",
                         "{\"type\":\"m.room.message\",\"content\":{\"body\":\"x\"},\"room_id\":"
                         "\"!x:example.org\"}"};
    int want[] = {FB_MXC_BAD, FB_MXC_OK};
    for (size_t i = 0; i < 2; i++) {
        size_t ml = olm_group_encrypt_message_length(g, strlen(pts[i]));
        char *msg = fb_malloc(ml + 1);
        msg[olm_group_encrypt(g, (const uint8_t *)pts[i], strlen(pts[i]), (uint8_t *)msg, ml)] = 0;
        json_t *c = json_pack("{s:s,s:s,s:s,s:s,s:s}", "algorithm", FB_MXC_MEGOLM, "sender_key",
                              r.curve, "ciphertext", msg, "session_id", sid, "device_id", "RAWDEV");
        fb_free(msg);
        ev = room_event("!x:example.org", i ? "$ok" : "$bad", r.user, c);
        json_t *out = NULL;
        ASSERT_EQ(fb_mxc_decrypt(b.c, ev, &out), want[i]);
        json_decref(out);
        /* the same event claimed in another room: no session there */
        json_object_set_new(ev, "room_id", json_string("!y:example.org"));
        ASSERT_EQ(fb_mxc_decrypt(b.c, ev, &out), FB_MXC_UNKNOWN_SESSION);
        json_decref(ev);
        json_decref(c);
    }
    olm_clear_outbound_group_session(g);
    fb_free(g);
    raw_done(&r);
    peer_done(&b);
    return 0;
}

static const char *session_of(fb_mxc_t *c, const char *room, json_t **keep)
{
    json_t *e = json_pack("{}");
    json_t *enc = fb_mxc_encrypt(c, room, "m.room.message", e);
    json_decref(e);
    *keep = enc;
    return json_string_value(json_object_get(enc, "session_id"));
}

TEST_IMPL(crypto_rotation)
{
    struct peer a, b;
    if (pair(&a, &b))
        return 1;
    json_t *m, *k1, *k2, *td, *nc;
    if (share_to(&a, &b, "!r:example.org", &m))
        return 1;
    json_decref(m);
    json_t *both = json_pack("[ss]", a.user, b.user), *alone = json_pack("[s]", a.user);
    json_t *enc = json_pack("{s:s,s:i,s:i}", "algorithm", FB_MXC_MEGOLM, "rotation_period_msgs", 3,
                            "rotation_period_ms", 10000);
    /* unchanged: same session, nothing to send */
    const char *s1 = session_of(a.c, "!r:example.org", &k1);
    ASSERT_OK(fb_mxc_share(a.c, "!r:example.org", both, enc, 2000, &td, &nc));
    ASSERT_NULL(td);
    ASSERT_NULL(nc);
    ASSERT_STR_EQ(session_of(a.c, "!r:example.org", &k2), s1);
    json_decref(k2);
    /* by message count: 3 sent */
    session_of(a.c, "!r:example.org", &k2);
    json_decref(k2);
    ASSERT_OK(fb_mxc_share(a.c, "!r:example.org", both, enc, 2000, &td, &nc));
    ASSERT_NOT_NULL(td); /* the new key goes to B */
    json_decref(td);
    const char *s2 = session_of(a.c, "!r:example.org", &k2);
    ASSERT(strcmp(s1, s2) != 0);
    /* by time */
    ASSERT_OK(fb_mxc_share(a.c, "!r:example.org", both, enc, 5000, &td, &nc));
    ASSERT_NULL(td);
    ASSERT_OK(fb_mxc_share(a.c, "!r:example.org", both, enc, 2000 + 10000, &td, &nc));
    ASSERT_NOT_NULL(td);
    json_decref(td);
    json_t *k3;
    const char *s3 = session_of(a.c, "!r:example.org", &k3);
    ASSERT(strcmp(s3, s2) != 0);
    /* a member leaves */
    ASSERT_OK(fb_mxc_share(a.c, "!r:example.org", alone, enc, 12000, &td, &nc));
    ASSERT_NULL(td);
    json_t *k4;
    const char *s4 = session_of(a.c, "!r:example.org", &k4);
    ASSERT(strcmp(s4, s3) != 0);
    /* B's device removed from its list (B alone again in the room's shares first) */
    ASSERT_OK(fb_mxc_share(a.c, "!r:example.org", both, enc, 12000, &td, &nc));
    ASSERT_NOT_NULL(td);
    json_decref(td);
    json_t *empty = json_pack("{s:{s:{}}}", "device_keys", b.user);
    fb_mxc_device_list_changed(a.c, b.user);
    ASSERT_EQ(fb_mxc_keys_query_result(a.c, empty), 0);
    json_decref(empty);
    ASSERT_OK(fb_mxc_share(a.c, "!r:example.org", both, enc, 12000, &td, &nc));
    json_decref(td);
    json_t *k5;
    const char *s5 = session_of(a.c, "!r:example.org", &k5);
    ASSERT(strcmp(s5, s4) != 0);
    /* at start (fb_mxc_rotate_outbound): a new session, its key sent again */
    fb_mxc_rotate_outbound(a.c);
    json_t *d = fb_mxc_take_dirty(a.c);
    ASSERT(json_is_null(json_object_get(d, "out|!r:example.org")));
    json_decref(d);
    ASSERT_OK(fb_mxc_share(a.c, "!r:example.org", alone, enc, 12000, &td, &nc));
    json_t *k6;
    ASSERT(strcmp(session_of(a.c, "!r:example.org", &k6), s5) != 0);
    json_decref(k6);
    json_decref(k1);
    json_decref(k2);
    json_decref(k3);
    json_decref(k4);
    json_decref(k5);
    json_decref(both);
    json_decref(alone);
    json_decref(enc);
    peer_done(&a);
    peer_done(&b);
    return 0;
}

TEST_IMPL(crypto_claim_failures)
{
    struct peer a, b;
    if (pair(&a, &b))
        return 1;
    json_t *members = json_pack("[ss]", a.user, b.user), *td, *nc;
    ASSERT_OK(fb_mxc_share(a.c, "!r:example.org", members, NULL, 1000, &td, &nc));
    ASSERT_NOT_NULL(nc);
    /* no key, then a key with a bad signature: no session, remembered as failed */
    json_t *none = json_pack("{s:{}}", "one_time_keys");
    ASSERT_EQ(fb_mxc_claim_result(a.c, nc, none, 1000), 0);
    json_decref(nc);
    json_decref(none);
    ASSERT_OK(fb_mxc_share(a.c, "!r:example.org", members, NULL, 2000, &td, &nc));
    ASSERT_NULL(nc);
    ASSERT_NULL(td);
    ASSERT_OK(fb_mxc_share(a.c, "!r:example.org", members, NULL, 1000 + 3600000, &td, &nc));
    ASSERT_NOT_NULL(nc);
    json_t *ans = claim_answer(&b);
    json_t *k = json_object_iter_value(json_object_iter(
        json_object_get(json_object_get(json_object_get(ans, "one_time_keys"), b.user), b.dev)));
    json_t *forged = json_deep_copy(k);
    json_object_set_new(k, "key", json_string(fb_mxc_curve25519(a.c)));
    ASSERT_EQ(fb_mxc_claim_result(a.c, nc, ans, 1000 + 3600000), 0);
    json_object_set_new(k, "key", json_incref(json_object_get(forged, "key")));
    ASSERT_EQ(fb_mxc_claim_result(a.c, nc, ans, 1000 + 3600000), 1);
    json_decref(forged);
    json_decref(ans);
    json_decref(nc);
    ASSERT_OK(fb_mxc_share(a.c, "!r:example.org", members, NULL, 1000 + 3600000, &td, &nc));
    ASSERT_NOT_NULL(td);
    ASSERT_NULL(nc);
    json_decref(td);
    json_decref(members);
    peer_done(&a);
    peer_done(&b);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Cross-signing */

TEST_IMPL(crypto_cross_signing)
{
    struct peer a, b;
    if (pair(&a, &b))
        return 1;
    ASSERT(!fb_mxc_cross_signed(a.c));
    json_t *keys, *sigs;
    ASSERT_OK(fb_mxc_cross_signing_new(a.c, &keys, &sigs));
    json_t *mk = json_object_get(keys, "master_key"),
           *sk = json_object_get(keys, "self_signing_key"),
           *uk = json_object_get(keys, "user_signing_key");
    const char *mpub =
        json_string_value(json_object_iter_value(json_object_iter(json_object_get(mk, "keys"))));
    const char *spub =
        json_string_value(json_object_iter_value(json_object_iter(json_object_get(sk, "keys"))));
    ASSERT_NOT_NULL(mpub);
    ASSERT_NOT_NULL(spub);
    char mkid[80], skid[80];
    snprintf(mkid, sizeof(mkid), "ed25519:%s", mpub);
    snprintf(skid, sizeof(skid), "ed25519:%s", spub);
    ASSERT_STR_EQ(json_string_value(json_array_get(json_object_get(mk, "usage"), 0)), "master");
    ASSERT(fb_mxc_verify(sk, a.user, mkid, mpub));
    ASSERT(fb_mxc_verify(uk, a.user, mkid, mpub));
    ASSERT(!fb_mxc_verify(sk, a.user, mkid, spub));
    json_t *mine = json_object_get(sigs, a.user);
    json_t *dev = json_object_get(mine, "DEVA");
    ASSERT(fb_mxc_verify(dev, a.user, skid, spub));
    ASSERT(fb_mxc_verify(dev, a.user, "ed25519:DEVA", fb_mxc_ed25519(a.c)));
    ASSERT(fb_mxc_verify(json_object_get(mine, mpub), a.user, "ed25519:DEVA", fb_mxc_ed25519(a.c)));
    /* B sees A's device as cross-signed once the keys are on the server */
    fb_mxc_device_list_changed(b.c, a.user);
    json_t *r = json_pack("{s:{s:{s:O}},s:{s:O},s:{s:O}}", "device_keys", a.user, "DEVA", dev,
                          "master_keys", a.user, mk, "self_signing_keys", a.user, sk);
    ASSERT_EQ(fb_mxc_keys_query_result(b.c, r), 1);
    ASSERT(json_is_true(
        json_object_get(json_object_get(fb_mxc_devices(b.c, a.user), "DEVA"), "cross_signed")));
    json_decref(r);
    /* a self-signing key not signed by the master key: not cross-signed */
    json_t *sk2 = json_deep_copy(sk);
    json_object_del(sk2, "signatures");
    r = json_pack("{s:{s:{s:O}},s:{s:O},s:{s:o}}", "device_keys", a.user, "DEVA", dev,
                  "master_keys", a.user, mk, "self_signing_keys", a.user, sk2);
    ASSERT_EQ(fb_mxc_keys_query_result(b.c, r), 1);
    ASSERT(json_is_false(
        json_object_get(json_object_get(fb_mxc_devices(b.c, a.user), "DEVA"), "cross_signed")));
    json_decref(r);
    fb_mxc_cross_signing_done(a.c, keys);
    ASSERT(fb_mxc_cross_signed(a.c));
    json_t *d = fb_mxc_take_dirty(a.c);
    ASSERT_NOT_NULL(strstr(json_string_value(json_object_get(d, "xsign")), mpub));
    json_decref(d);
    json_decref(keys);
    json_decref(sigs);
    peer_done(&a);
    peer_done(&b);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Persistence */

/* Loads every field of `state` into a new machine with key `key`: the machine, or NULL with
 * *bad set when a field was refused. */
static fb_mxc_t *reload(struct peer *p, json_t *state, const uint8_t *key, int *bad)
{
    fb_mxc_opts_t o = {
        .user_id = p->user, .device_id = p->dev, .pickle_key = key, .pickle_key_len = 32};
    fb_mxc_t *c = fb_mxc_new(&o);
    const char *f;
    json_t *v;
    *bad = 0;
    json_object_foreach(state, f, v)
    {
        if (json_is_string(v) && fb_mxc_load(c, f, json_string_value(v)) != FB_MXC_OK)
            (*bad)++;
    }
    return c;
}

TEST_IMPL(crypto_persistence)
{
    struct peer a, b;
    if (pair(&a, &b))
        return 1;
    json_t *state = json_object();
    json_t *d = fb_mxc_take_dirty(a.c);
    json_object_update(state, d);
    json_decref(d);
    json_t *bs = json_object();
    d = fb_mxc_take_dirty(b.c);
    json_object_update(bs, d);
    json_decref(d);
    json_t *m;
    if (share_to(&a, &b, "!r:example.org", &m))
        return 1;
    json_t *ev = to_dev_event(a.user, m);
    char type[64];
    ASSERT_EQ(fb_mxc_to_device(b.c, ev, type), FB_MXC_OK);
    json_decref(ev);
    json_decref(m);
    /* only what changed */
    d = fb_mxc_take_dirty(a.c);
    ASSERT_NOT_NULL(json_object_get(d, "out|!r:example.org"));
    ASSERT_NULL(json_object_get(d, "failed"));
    ASSERT_NULL(json_object_get(d, "misc"));
    json_object_update(state, d);
    json_decref(d);
    ASSERT_NULL(fb_mxc_take_dirty(a.c));
    /* B's state, reloaded, reads A's messages */
    json_t *content = json_pack("{s:s}", "body", "x");
    json_t *enc = fb_mxc_encrypt(a.c, "!r:example.org", "m.room.message", content);
    json_decref(content);
    d = fb_mxc_take_dirty(b.c);
    json_object_update(bs, d);
    json_decref(d);
    ASSERT_NOT_NULL(json_object_get(bs, "account"));
    ASSERT_NOT_NULL(json_object_get(bs, "dev|@a:example.org"));
    int bad;
    fb_mxc_t *b2 = reload(&b, bs, KEY, &bad);
    ASSERT_EQ(bad, 0);
    ASSERT_STR_EQ(fb_mxc_curve25519(b2), fb_mxc_curve25519(b.c));
    ASSERT(!fb_mxc_ensure_account(b2));
    ev = room_event("!r:example.org", "$e1", a.user, enc);
    json_t *out;
    ASSERT_EQ(fb_mxc_decrypt(b2, ev, &out), FB_MXC_OK);
    json_decref(out);
    json_decref(ev);
    json_decref(enc);
    fb_mxc_free(b2);
    /* a wrong pickle key: refused */
    b2 = reload(&b, bs, BADKEY, &bad);
    ASSERT_GT(bad, 0);
    ASSERT_EQ(fb_mxc_load(b2, "account", json_string_value(json_object_get(bs, "account"))),
              FB_MXC_BAD);
    ASSERT_NULL(fb_mxc_curve25519(b2));
    ASSERT_EQ(fb_mxc_load(b2, "account", "garbage"), FB_MXC_BAD);
    ASSERT_EQ(fb_mxc_load(b2, "in|x", "{"), FB_MXC_BAD);
    fb_mxc_free(b2);
    /* A's outbound session survives a reload: the same session id */
    fb_mxc_t *a2 = reload(&a, state, KEY, &bad);
    ASSERT_EQ(bad, 0);
    json_t *k1, *k2;
    ASSERT_STR_EQ(session_of(a2, "!r:example.org", &k1), session_of(a.c, "!r:example.org", &k2));
    json_decref(k1);
    json_decref(k2);
    fb_mxc_free(a2);
    /* a failed write: the fields are dirty again */
    fb_mxc_track_user(a.c, "@z:example.org");
    d = fb_mxc_take_dirty(a.c);
    ASSERT_NOT_NULL(d);
    ASSERT_NULL(fb_mxc_take_dirty(a.c));
    fb_mxc_put_back_dirty(a.c, json_incref(d));
    json_t *d2 = fb_mxc_take_dirty(a.c);
    ASSERT(json_equal(d, d2));
    json_decref(d2);
    /* a deleted object is handed as null */
    fb_mxc_device_list_left(a.c, "@z:example.org");
    d2 = fb_mxc_take_dirty(a.c);
    ASSERT(json_is_null(json_object_get(d2, "dev|@z:example.org")));
    json_decref(d2);
    json_decref(d);
    json_decref(bs);
    json_decref(state);
    peer_done(&a);
    peer_done(&b);
    return 0;
}

TEST_IMPL(crypto_olm_sessions_bounded)
{
    struct peer b;
    struct raw r;
    char type[64];
    if (peer_init(&b, "@b:example.org", "DEVB") || raw_pair(&r, &b, "@r:example.org"))
        return 1;
    json_t *state = json_object();
    for (int i = 0; i < 12; i++) {
        if (i > 0) { /* a new session each time, with a new one-time key */
            olm_clear_session(r.s);
            fb_free(r.s);
            raw_connect(&r, &b, fb_mxc_curve25519(b.c));
        }
        json_t *ev =
            raw_send(&r, fb_mxc_curve25519(b.c), raw_payload(&r, &b, "m.dummy", json_object()));
        ASSERT_EQ(fb_mxc_to_device(b.c, ev, type), FB_MXC_OK);
        json_decref(ev);
        json_t *d = fb_mxc_take_dirty(b.c);
        json_object_update(state, d);
        json_decref(d);
    }
    size_t live = 0, gone = 0;
    const char *f;
    json_t *v;
    json_object_foreach(state, f, v)
    {
        if (strncmp(f, "olm|", 4) == 0)
            json_is_string(v) ? live++ : gone++;
    }
    ASSERT_EQ(live, 8);
    ASSERT_EQ(gone, 4);
    json_decref(state);
    raw_done(&r);
    peer_done(&b);
    return 0;
}

TEST_IMPL(crypto_megolm_relations_and_msc3700)
{
    struct peer a, b;
    if (pair(&a, &b))
        return 1;
    json_t *m;
    char type[64];
    if (share_to(&a, &b, "!r:example.org", &m))
        return 1;
    json_t *ev = to_dev_event(a.user, m);
    ASSERT_EQ(fb_mxc_to_device(b.c, ev, type), FB_MXC_OK);
    json_decref(ev);
    json_decref(m);
    /* a thread reply: the relation goes in clear, and comes back in the decrypted content */
    json_t *content = json_pack("{s:s,s:s,s:{s:s,s:s}}", "msgtype", "m.text", "body", "!prendre",
                                "m.relates_to", "rel_type", "m.thread", "event_id", "$root");
    json_t *enc = fb_mxc_encrypt(a.c, "!r:example.org", "m.room.message", content);
    ASSERT(
        json_equal(json_object_get(enc, "m.relates_to"), json_object_get(content, "m.relates_to")));
    /* without the deprecated sender_key and device_id (MSC3700) */
    json_object_del(enc, "sender_key");
    json_object_del(enc, "device_id");
    ev = room_event("!r:example.org", "$e1", a.user, enc);
    json_t *out = NULL;
    ASSERT_EQ(fb_mxc_decrypt(b.c, ev, &out), FB_MXC_OK);
    ASSERT(json_equal(json_object_get(out, "content"), content));
    json_decref(out);
    /* the clear relation wins over one inside the ciphertext */
    json_object_set_new(json_object_get(enc, "m.relates_to"), "event_id", json_string("$other"));
    json_decref(ev);
    ev = room_event("!r:example.org", "$e1", a.user, enc);
    ASSERT_EQ(fb_mxc_decrypt(b.c, ev, &out), FB_MXC_OK);
    ASSERT_STR_EQ(
        json_string_value(json_object_get(
            json_object_get(json_object_get(out, "content"), "m.relates_to"), "event_id")),
        "$other");
    json_decref(out);
    json_t *kr = fb_mxc_key_request(b.c, ev, "r1");
    ASSERT_NOT_NULL(kr);
    ASSERT_NULL(json_object_get(json_object_get(kr, "body"), "sender_key"));
    json_decref(kr);
    json_decref(ev);
    json_decref(enc);
    json_decref(content);
    peer_done(&a);
    peer_done(&b);
    return 0;
}
