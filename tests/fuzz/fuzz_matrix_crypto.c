/* SPDX-License-Identifier: MIT */
/*
 * fuzz_matrix_crypto.c - libFuzzer target for the end-to-end encryption machine
 * (adapters/matrix/mx_crypto.c), the parsers of untrusted JSON: to-device events, encrypted
 * timeline events, /keys/query and /keys/claim answers.
 *
 * Each input runs on a fresh machine loaded from a fixed stored state (fuzz_matrix_crypto_state.h:
 * the bot's device, which knows @alice:example.org's device and holds her Megolm session of
 * !r1:example.org), so that a seed replays the same way every time. The first byte chooses the
 * entry point, the rest is parsed as JSON (any bytes). Besides the sanitizers' checks it enforces
 * the contracts: a status in range or a negative fb_err code, an output event only on success and
 * always marked decrypted, and dirty fields that are strings or null.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../../adapters/matrix/mx_crypto.h"
#include "frichebot/alloc.h"
#include "frichebot/err.h"
#include "frichebot/log.h"
#include "fuzz_matrix_crypto_state.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t KEY[32] = "fuzz-pickle-key-0123456789abcdef";
#define ALICE "@alice:example.org"
#define ROOM  "!r1:example.org"

/* The machine logs every refusal: quiet, so that the fuzzer's own output stays readable. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fb_log_set_level_all(FB_LOG_ERR);
    return 0;
}

static void check_status(int rc)
{
    if (rc > FB_MXC_REPLAY)
        abort();
}

static void check_dirty(fb_mxc_t *c)
{
    json_t *d = fb_mxc_take_dirty(c);
    const char *k;
    json_t *v;
    json_object_foreach(d, k, v)
    {
        if (!json_is_string(v) && !json_is_null(v))
            abort();
    }
    json_decref(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    fb_mxc_opts_t o = {.user_id = "@bot:example.org",
                       .device_id = "BOTDEV",
                       .pickle_key = KEY,
                       .pickle_key_len = sizeof(KEY)};
    fb_mxc_t *c = fb_mxc_new(&o);
    for (size_t i = 0; i < sizeof(fuzz_state) / sizeof(fuzz_state[0]); i++)
        if (fb_mxc_load(c, fuzz_state[i][0], fuzz_state[i][1]) != FB_MXC_OK)
            abort();
    if (fb_mxc_ensure_account(c))
        abort();
    json_t *j = json_loadb((const char *)data + 1, size - 1, JSON_DECODE_ANY, NULL);
    if (!j) {
        fb_mxc_free(c);
        return 0;
    }
    char type[64];
    json_t *out = NULL, *td = NULL, *nc = NULL;
    int rc;
    switch (data[0] % 5) {
    case 0:
        rc = fb_mxc_to_device(c, j, type);
        check_status(rc);
        if (memchr(type, 0, sizeof(type)) == NULL)
            abort();
        break;
    case 1:
        rc = fb_mxc_decrypt(c, j, &out);
        check_status(rc);
        if ((rc == FB_MXC_OK) != (out != NULL))
            abort();
        if (out && !json_is_true(json_object_get(out, "fb_decrypted")))
            abort();
        json_decref(out);
        json_decref(fb_mxc_key_request(c, j, "req"));
        break;
    case 2:
        fb_mxc_device_list_changed(c, ALICE);
        rc = fb_mxc_keys_query_result(c, j);
        if (rc < 0 && rc != FB_EPROTO) /* not an answer */
            abort();
        break;
    case 3: {
        json_t *asked = json_pack("{s:{s:s}}", ALICE, "ALICEDEV", "signed_curve25519");
        rc = fb_mxc_claim_result(c, asked, j, 1000);
        if (rc < 0 || rc > 1)
            abort();
        json_decref(asked);
        break;
    }
    default:
        /* the input as the room's member list and m.room.encryption content */
        rc = fb_mxc_share(c, ROOM, j, json_is_object(j) ? j : NULL, 1000, &td, &nc);
        json_decref(td);
        json_decref(nc);
        if (rc == 0) {
            json_t *content = json_object();
            json_t *e = fb_mxc_encrypt(c, ROOM, "m.room.message", content);
            if (!e)
                abort();
            json_decref(e);
            json_decref(content);
        }
        break;
    }
    check_dirty(c);
    json_decref(j);
    fb_mxc_free(c);
    return 0;
}
