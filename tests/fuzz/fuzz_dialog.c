/* SPDX-License-Identifier: MIT */
/*
 * fuzz_dialog.c - libFuzzer target for the dialog engine: the loader (daemon/engine/dialog.c)
 * and, when the input loads, a short conversation through fb_engine_step() (machine.c,
 * session.c) with fixed messages.
 *
 * Any byte string is loaded with fb_dialog_load_text() as "fuzz.yaml", with catalogues read
 * from tests/data/dialogs/ and the communes index of the build when it exists. Besides the
 * sanitizers' own checks, it enforces the contracts: a dialog is returned exactly when no error
 * is reported; every error line is "NAME:LINE:COL: message" (so text from the input can never
 * forge a line); a loaded dialog writes its DOT graph; every step succeeds on any text, returns
 * an array of typed effects and a session that serializes and can be fed back.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/geo.h"
#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "io/paths.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static fb_geo_t *geo;
static char *catalogue_dir;

/* Loads the communes index once and finds tests/data/dialogs next to this file. */
static void setup(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    geo = fb_geo_load(fb_data_path(FB_DATA_GEO), NULL); /* may be NULL: commune questions refused */
    const char *file = __FILE__;
    const char *slash = strrchr(file, '/');
    catalogue_dir = slash ? fb_asprintf("%.*s/../data/dialogs", (int)(slash - file), file)
                          : fb_strdup("../data/dialogs");
}

/* True when `line` (up to its newline) has a position "NAME:DIGITS:DIGITS: " (a catalogue's
 * path comes from the input and may hold ':', but never a newline or a control character). */
static int well_formed(const char *line)
{
    const char *end = strchr(line, '\n');
    for (const char *p = line; p < end; p++)
        if ((unsigned char)*p < 0x20 && *p != '\t')
            return 0;
    for (const char *p = line; p && p < end; p = strchr(p + 1, ':')) {
        const char *q = p;
        if (*q++ != ':' || q == line + 1)
            continue;
        int ok = 1;
        for (int field = 0; field < 2 && ok; field++) {
            if (*q < '1' || *q > '9')
                ok = 0;
            while (ok && *q >= '0' && *q <= '9')
                q++;
            if (ok && *q++ != ':')
                ok = 0;
        }
        if (ok && *q == ' ')
            return 1;
    }
    return 0;
}

/* Checks one step's output and replaces *session with the new one. */
static void checked_step(const fb_dialog_t *d, json_t **session, fb_event_t ev,
                         const fb_engine_env_t *env)
{
    json_t *ns = NULL, *ef = NULL;
    if (fb_engine_step(d, *session, &ev, env, &ns, &ef) != 0)
        abort(); /* never fails on a session it wrote */
    if (!json_is_array(ef) || !(json_is_object(ns) || json_is_null(ns)))
        abort();
    for (size_t i = 0; i < json_array_size(ef); i++) {
        const json_t *e = json_array_get(ef, i);
        const char *type = json_string_value(json_object_get(e, "type"));
        if (!type)
            abort();
        if (strcmp(type, "say") == 0 && (!json_is_string(json_object_get(e, "text")) ||
                                         !json_is_string(json_object_get(e, "html"))))
            abort();
    }
    char *s = json_dumps(ns, JSON_COMPACT | JSON_ENCODE_ANY);
    char *e = json_dumps(ef, JSON_COMPACT);
    if (!s || !e)
        abort();
    free(s);
    free(e);
    json_decref(ef);
    json_decref(*session);
    *session = ns;
}

/* A short conversation: every kind of event and every command, with fixed texts. */
static void converse(const fb_dialog_t *d)
{
    static const char *const texts[] = {
        "oui",
        "1",
        "Lyon",
        "12",
        "aide",
        "2,5 ha",
        "retour",
        "je ne sais pas",
        "mars 2027",
        "3",
        "1 et 2",
        "tous",
        "Un projet de jardin",
        "où en suis-je",
        "mes données",
        "conseiller",
        "non",
        "<b>x</b>",
        "\xff",
        "stop",
        "c'est fait",
        "mes étapes",
        "étape 1 faite",
        "l'étape 2",
        "deja faite",
        "recommencer",
        "saint denis",
        "2",
        "oublier mes données",
        "bonjour",
    };
    fb_engine_env_t env = {.now = 1796029200, .locale = "fr", .geo = geo};
    json_t *session = NULL;
    checked_step(d, &session, (fb_event_t){FB_EVENT_START, NULL, NULL, NULL}, &env);
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        checked_step(d, &session, (fb_event_t){FB_EVENT_MESSAGE, texts[i], NULL, NULL}, &env);
        if (i % 5 == 4) {
            env.now += 6 * 7 * 86400;
            checked_step(d, &session, (fb_event_t){FB_EVENT_TIMER, NULL, NULL, "relance"}, &env);
            checked_step(d, &session, (fb_event_t){FB_EVENT_CHOICE, NULL, "nsp", NULL}, &env);
            checked_step(d, &session, (fb_event_t){FB_EVENT_HANDBACK, NULL, NULL, NULL}, &env);
        }
    }
    checked_step(d, &session, (fb_event_t){FB_EVENT_FORGET, NULL, NULL, NULL}, &env);
    if (!json_is_null(session))
        abort();
    json_decref(session);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    fb_buf_t errors;
    fb_buf_init(&errors, 1u << 20);
    fb_dialog_t *d =
        fb_dialog_load_text("fuzz.yaml", catalogue_dir, (const char *)data, size, geo, &errors);
    if ((d == NULL) != (errors.len > 0))
        abort();
    for (const char *line = fb_buf_str(&errors); *line;) {
        if (!well_formed(line))
            abort();
        const char *nl = strchr(line, '\n');
        if (!nl)
            abort(); /* every line ends with a newline */
        line = nl + 1;
    }
    if (d) {
        fb_buf_t dot;
        fb_buf_init(&dot, 1u << 22);
        if (fb_dialog_to_dot(d, &dot) != 0 || strncmp(fb_buf_str(&dot), "digraph ", 8) != 0)
            abort();
        fb_buf_free(&dot);
        converse(d);
        fb_dialog_unref(d);
    }
    fb_buf_free(&errors);
    return 0;
}
