/* SPDX-License-Identifier: MIT */
/*
 * test_machine.c - the dialog engine's step (daemon/engine/machine.c, session.c), driven event by
 * event with a fixed clock over the dialogs of tests/data/dialogs/: a full conversation with its
 * exact effects, every global command, `retour` over several questions, preconditions and
 * branches, reprompts and the `echecs` actions, "je ne sais pas", templates with the roadmap,
 * reminders and the follow-up of roadmap steps, escalation and hand-back, version pinning and
 * migration, forgetting, malformed sessions and events, hostile text, the session size, and the
 * user's last messages kept for an escalation's summary.
 *
 * Every step goes through step(), which also checks the invariants that hold for any input:
 * the step succeeds, effects are an array of typed objects, every `say` has a plain text and an
 * HTML text, the session serializes, and the same step run twice gives the same output (the
 * engine has no clock or randomness of its own).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/utf8.h"
#include "engine/effects.h"
#include "engine/engine.h"
#include "engine/geo.h"
#include "engine/text.h"
#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "io/paths.h"
#include "task.h"

#define DATA FB_SOURCE_DIR "/tests/data/dialogs"
#define NOW  1796029200 /* 2026-11-30T09:00:00Z */

/* A conversation under test. */
struct conv {
    fb_dialog_t *d;
    fb_geo_t *geo;
    json_t *session; /* NULL before the first step, JSON null after "forget" */
    json_t *effects; /* of the last step */
    fb_engine_env_t env;
    fb_buf_t said; /* the plain texts of the last step's `say` effects, joined by "\n--\n" */
    fb_buf_t html;
};

static fb_dialog_t *load(const char *file, const fb_geo_t *geo)
{
    fb_buf_t errors;
    fb_buf_init(&errors, 1u << 16);
    char *path = fb_asprintf("%s/%s", DATA, file);
    fb_dialog_t *d = fb_dialog_load(path, geo, &errors);
    if (!d)
        FB_TEST_FAIL("%s does not load:\n%s", path, fb_buf_str(&errors));
    fb_free(path);
    fb_buf_free(&errors);
    return d;
}

static void conv_init(struct conv *c, const char *file, int with_geo)
{
    memset(c, 0, sizeof(*c));
    if (with_geo) {
        c->geo = fb_geo_load(fb_data_path(FB_DATA_GEO), NULL);
        ASSERT_NOT_NULL(c->geo);
    }
    c->d = load(file, c->geo);
    c->env.now = NOW;
    c->env.locale = "fr";
    c->env.geo = c->geo;
    fb_buf_init(&c->said, 1u << 20);
    fb_buf_init(&c->html, 1u << 20);
}

static void conv_free(struct conv *c)
{
    json_decref(c->session);
    json_decref(c->effects);
    fb_dialog_unref(c->d);
    fb_geo_free(c->geo);
    fb_buf_free(&c->said);
    fb_buf_free(&c->html);
}

/* Checks the invariants of one step's output. */
static void check_output(const json_t *session, const json_t *effects)
{
    ASSERT(json_is_array(effects));
    for (size_t i = 0; i < json_array_size(effects); i++) {
        const json_t *e = json_array_get(effects, i);
        ASSERT(json_is_object(e));
        const char *type = json_string_value(json_object_get(e, "type"));
        ASSERT_NOT_NULL(type);
        if (strcmp(type, "say") == 0) {
            ASSERT(json_is_string(json_object_get(e, "text")));
            ASSERT(json_is_string(json_object_get(e, "html")));
            ASSERT_GT(json_string_length(json_object_get(e, "text")), 0);
        }
    }
    ASSERT(json_is_object(session) || json_is_null(session));
    char *s = json_dumps(session, JSON_COMPACT | JSON_ENCODE_ANY);
    char *e = json_dumps(effects, JSON_COMPACT);
    ASSERT_NOT_NULL(s);
    ASSERT_NOT_NULL(e);
    free(s);
    free(e);
}

/* Runs one event; the conversation's session and effects are replaced. Returns the effects. */
static json_t *step(struct conv *c, fb_event_t ev)
{
    json_t *ns = NULL, *ef = NULL, *ns2 = NULL, *ef2 = NULL;
    ASSERT_OK(fb_engine_step(c->d, c->session, &ev, &c->env, &ns, &ef));
    check_output(ns, ef);
    /* the same step again gives the same output */
    ASSERT_OK(fb_engine_step(c->d, c->session, &ev, &c->env, &ns2, &ef2));
    ASSERT(json_equal(ns, ns2));
    ASSERT(json_equal(ef, ef2));
    json_decref(ns2);
    json_decref(ef2);
    /* and again from the session's stored form, read as the router reads it (the dialog's
     * strings shared): the same output */
    if (c->session && !json_is_null(c->session)) {
        char *stored = json_dumps(c->session, JSON_COMPACT);
        ASSERT_NOT_NULL(stored);
        json_t *read = fb_engine_session_loadb(c->d, stored, strlen(stored));
        free(stored); /* jansson's allocation */
        ASSERT(read && json_equal(read, c->session));
        ASSERT_OK(fb_engine_step(c->d, read, &ev, &c->env, &ns2, &ef2));
        ASSERT(json_equal(ns, ns2));
        ASSERT(json_equal(ef, ef2));
        json_decref(read);
        json_decref(ns2);
        json_decref(ef2);
    }
    json_decref(c->session);
    json_decref(c->effects);
    c->session = ns;
    c->effects = ef;
    fb_buf_reset(&c->said);
    fb_buf_reset(&c->html);
    for (size_t i = 0; i < json_array_size(ef); i++) {
        const json_t *e = json_array_get(ef, i);
        if (strcmp(json_string_value(json_object_get(e, "type")), "say") != 0)
            continue;
        ASSERT_OK(fb_buf_printf(&c->said, "%s%s", c->said.len ? "\n--\n" : "",
                                json_string_value(json_object_get(e, "text"))));
        ASSERT_OK(fb_buf_printf(&c->html, "%s%s", c->html.len ? "\n--\n" : "",
                                json_string_value(json_object_get(e, "html"))));
    }
    return ef;
}

static json_t *say(struct conv *c, const char *text)
{
    fb_event_t ev = {FB_EVENT_MESSAGE, text, NULL, NULL};
    return step(c, ev);
}

static json_t *choose(struct conv *c, const char *id)
{
    fb_event_t ev = {FB_EVENT_CHOICE, NULL, id, NULL};
    return step(c, ev);
}

static json_t *event(struct conv *c, fb_event_kind_t kind)
{
    fb_event_t ev = {kind, NULL, NULL, kind == FB_EVENT_TIMER ? "relance" : NULL};
    return step(c, ev);
}

static const char *said(const struct conv *c)
{
    return fb_buf_str(&c->said);
}

/* The effects of the last step as compact JSON, for exact comparisons (freed by the macro). */
static char *effects_json(const struct conv *c)
{
    char *s = json_dumps(c->effects, JSON_COMPACT);
    ASSERT_NOT_NULL(s);
    return s;
}

#define ASSERT_EFFECTS(c, expected)                                                                \
    do {                                                                                           \
        char *fb__fx = effects_json(c);                                                            \
        ASSERT_STR_EQ(fb__fx, expected);                                                           \
        free(fb__fx); /* fb-lint: allow free (jansson's allocation) */                             \
    } while (0)

/* The effects other than `say`, as compact JSON. */
static char *actions_json(const struct conv *c)
{
    json_t *a = json_array();
    for (size_t i = 0; i < json_array_size(c->effects); i++) {
        json_t *e = json_array_get(c->effects, i);
        if (strcmp(json_string_value(json_object_get(e, "type")), "say") != 0)
            ASSERT_OK(json_array_append(a, e));
    }
    char *s = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return s;
}

#define ASSERT_ACTIONS(c, expected)                                                                \
    do {                                                                                           \
        char *fb__got = actions_json(c);                                                           \
        ASSERT_STR_EQ(fb__got, expected);                                                          \
        free(fb__got);                                                                             \
    } while (0)

#define ASSERT_SAID(c, expected) ASSERT_STR_EQ(said(c), expected)

#define ASSERT_SAYS(c, part)                                                                       \
    do {                                                                                           \
        if (!strstr(said(c), part))                                                                \
            FB_TEST_FAIL("the bot should say \"%s\"; it said:\n%s", part, said(c));                \
    } while (0)

#define ASSERT_NOT_SAYS(c, part)                                                                   \
    do {                                                                                           \
        if (strstr(said(c), part))                                                                 \
            FB_TEST_FAIL("the bot should not say \"%s\"; it said:\n%s", part, said(c));            \
    } while (0)

static const char *state(const struct conv *c)
{
    return json_string_value(json_object_get(c->session, "s"));
}

static const json_t *answer(const struct conv *c, const char *slot)
{
    return json_object_get(json_object_get(c->session, "a"), slot);
}

static int has_tag(const struct conv *c, const char *tag)
{
    const json_t *t = json_object_get(c->session, "t");
    for (size_t i = 0; i < json_array_size(t); i++)
        if (strcmp(json_string_value(json_array_get(t, i)), tag) == 0)
            return 1;
    return 0;
}

/* The `choices` of the last `say` that has some, as compact JSON ("" when none). */
static char *last_choices(const struct conv *c)
{
    const json_t *found = NULL;
    for (size_t i = 0; i < json_array_size(c->effects); i++) {
        const json_t *ch = json_object_get(json_array_get(c->effects, i), "choices");
        if (ch)
            found = ch;
    }
    char *s = found ? json_dumps(found, JSON_COMPACT) : NULL;
    return s ? s : strdup("");
}

#define ASSERT_CHOICES(c, expected)                                                                \
    do {                                                                                           \
        char *fb__ch = last_choices(c);                                                            \
        ASSERT_STR_EQ(fb__ch, expected);                                                           \
        free(fb__ch);                                                                              \
    } while (0)

/* ---- a whole conversation ------------------------------------------------------------------- */

TEST_IMPL(machine_full_conversation)
{
    struct conv c;
    conv_init(&c, "complet.yaml", 1);

    event(&c, FB_EVENT_START);
    ASSERT_SAID(&c, "Bonjour ! Je vais vous poser quelques questions sur votre site.\n--\n"
                    "Dans quelle commune se trouve le site ?");
    ASSERT_ACTIONS(&c, "[{\"type\":\"stat\",\"name\":\"conversation_started\"},"
                       "{\"type\":\"schedule\",\"id\":\"relance\",\"after\":1209600,"
                       "\"reason\":\"inactivite\"}]");
    ASSERT_STR_EQ(state(&c), "commune");
    ASSERT_STR_EQ(json_string_value(json_object_get(c.session, "h")), fb_dialog_hash(c.d));

    say(&c, "lyon");
    ASSERT_SAID(&c, "Quelle est la surface du site ?");
    ASSERT_STR_EQ(json_string_value(json_object_get(answer(&c, "commune"), "insee")), "69123");
    ASSERT_STR_EQ(json_string_value(json_object_get(answer(&c, "commune"), "nom")), "Lyon");

    say(&c, "1,2 ha");
    ASSERT_EQ(json_integer_value(answer(&c, "surface")), 12000);
    ASSERT(has_tag(&c, "grand_site"));
    ASSERT_SAID(&c, "Quel était l'usage du site ?\n\n1. Industriel\n2. Commercial\n3. Autre");
    ASSERT_CHOICES(&c, "[{\"id\":\"industriel\",\"label\":\"Industriel\"},{\"id\":\"commerce\","
                       "\"label\":\"Commercial\"},{\"id\":\"autre\",\"label\":\"Autre\"}]");
    ASSERT(strstr(fb_buf_str(&c.html), "<p>1. Industriel<br>2. Commercial<br>3. Autre</p>"));

    say(&c, "une usine");
    ASSERT_STR_EQ(json_string_value(answer(&c, "usage")), "industriel");
    ASSERT(has_tag(&c, "site_industriel"));
    ASSERT_SAID(&c, "Une pollution est-elle suspectée ?\n\n1. Oui\n2. Non");
    ASSERT_CHOICES(&c, "[{\"id\":\"oui\",\"label\":\"Oui\"},{\"id\":\"non\",\"label\":\"Non\"}]");

    say(&c, "oui");
    ASSERT(json_is_true(answer(&c, "pollution")));
    ASSERT(has_tag(&c, "pollution_suspectee"));
    ASSERT_SAYS(&c, "La collectivité est-elle propriétaire du site ?");

    say(&c, "2"); /* the number of "Non" in the list */
    ASSERT(json_is_false(answer(&c, "proprietaire")));
    ASSERT_SAID(&c, "Quels usages envisagez-vous ?\n\n1. Logements\n2. Activités économiques\n"
                    "3. Renaturation");

    say(&c, "1 et 3");
    char *multi = json_dumps(answer(&c, "projet"), JSON_COMPACT);
    ASSERT_STR_EQ(multi, "[\"logement\",\"nature\"]");
    free(multi);
    ASSERT(has_tag(&c, "renaturation"));
    ASSERT_SAID(&c, "Quand souhaitez-vous démarrer les travaux ?");

    say(&c, "mars 2027");
    ASSERT_STR_EQ(json_string_value(answer(&c, "demarrage")), "2027-03");
    ASSERT_STR_EQ(state(&c), "fin");
    ASSERT_SAYS(&c, "Sur un site de 12 000 m², une étude de programmation est recommandée.");
    ASSERT_SAYS(&c, "Voici votre feuille de route pour Lyon :");
    ASSERT_SAYS(&c, "Délibérer sur le projet : Le conseil municipal engage la démarche.");
    ASSERT_SAYS(&c, "Faire un diagnostic de pollution");
    ASSERT(strstr(fb_buf_str(&c.html), "<strong>Délibérer sur le projet</strong>"));
    ASSERT_ACTIONS(
        &c, "[{\"type\":\"step\",\"item\":\"etapes.engagement\",\"status\":\"a_faire\"},"
            "{\"type\":\"step\",\"item\":\"etapes.maitrise_fonciere\",\"status\":\"a_faire\"},"
            "{\"type\":\"step\",\"item\":\"etapes.diagnostic_pollution\",\"status\":"
            "\"a_faire\"},"
            "{\"type\":\"step\",\"item\":\"etapes.etude_programmation\",\"status\":"
            "\"a_faire\"},"
            "{\"type\":\"end\"},{\"type\":\"stat\",\"name\":\"site_completed\"},"
            "{\"type\":\"schedule\",\"id\":\"relance\",\"after\":3628800,"
            "\"reason\":\"suivi\"}]");
    ASSERT(json_is_true(json_object_get(c.session, "e")));

    /* after the end: a short note on what can be done */
    say(&c, "merci beaucoup");
    ASSERT_SAYS(&c, "Le questionnaire est terminé.");
    ASSERT_ACTIONS(&c, "[]");

    /* six weeks later: the reminder asks about the first open step */
    c.env.now = NOW + 3628800;
    event(&c, FB_EVENT_TIMER);
    ASSERT_SAID(&c, "Bonjour ! Où en êtes-vous de l'étape « Délibérer sur le projet » ?\n\n"
                    "1. C'est fait\n2. C'est en cours\n3. Plus tard\n4. C'est bloqué\n"
                    "5. Pas concerné");
    ASSERT_ACTIONS(&c, "[{\"type\":\"stat\",\"name\":\"reminder_sent\"},{\"type\":\"schedule\","
                       "\"id\":\"relance\",\"after\":3628800,\"reason\":\"suivi\"}]");
    ASSERT_STR_EQ(json_string_value(json_object_get(c.session, "k")), "etapes.engagement");

    say(&c, "c'est fait");
    ASSERT_SAID(&c, "C'est noté, merci !");
    ASSERT_ACTIONS(&c, "[{\"type\":\"step\",\"item\":\"etapes.engagement\",\"status\":\"faite\"},"
                       "{\"type\":\"stat\",\"name\":\"step_updated\"},{\"type\":\"schedule\","
                       "\"id\":\"relance\",\"after\":3628800,\"reason\":\"suivi\"}]");
    ASSERT_STR_EQ(
        json_string_value(json_object_get(json_object_get(c.session, "u"), "etapes.engagement")),
        "faite");
    ASSERT_NULL(json_object_get(c.session, "k"));

    event(&c, FB_EVENT_TIMER);
    ASSERT_SAYS(&c, "« Assurer la maîtrise foncière »");
    choose(&c, "bloquee");
    ASSERT_SAYS(&c, "C'est noté, merci ! Si vous le souhaitez, écrivez « conseiller »");
    event(&c, FB_EVENT_TIMER); /* a blocked step is still open: asked again */
    ASSERT_SAYS(&c, "« Assurer la maîtrise foncière »");
    say(&c, "plus tard");
    ASSERT_SAID(&c, "Entendu, je vous relancerai plus tard.");
    ASSERT_ACTIONS(&c, "[{\"type\":\"schedule\",\"id\":\"relance\",\"after\":3628800,"
                       "\"reason\":\"suivi\"}]");
    conv_free(&c);
    return 0;
}

/* ---- commands ------------------------------------------------------------------------------- */

/* Starts petit.yaml and answers q1 with "friche". */
static void petit_at_q2(struct conv *c)
{
    conv_init(c, "petit.yaml", 0);
    event(c, FB_EVENT_START);
    ASSERT_SAID(c,
                "Bonjour !\n--\nQuel est le statut du site ?\n\n1. Une friche\n2. Un site occupé");
    say(c, "une friche");
    ASSERT_STR_EQ(state(c), "q2");
}

/* The effect vocabulary: every name of FB_EFFECTS reads back as its enum, unknown names do not. */
TEST_IMPL(machine_session_loadb_shares_strings)
{
    struct conv c;
    conv_init(&c, "complet.yaml", 1);
    event(&c, FB_EVENT_START);
    say(&c, "lyon");
    say(&c, "1,2 ha");
    say(&c, "une usine");
    /* a session as an older daemon stored it (jansson's compact JSON; the format is unchanged) */
    char *stored = json_dumps(c.session, JSON_COMPACT);
    ASSERT_NOT_NULL(stored);
    json_t *a = fb_engine_session_loadb(c.d, stored, strlen(stored));
    json_t *b = fb_engine_session_loadb(c.d, stored, strlen(stored));
    json_error_t jerr;
    json_t *j = json_loads(stored, 0, &jerr);
    ASSERT(a && b && j && json_equal(a, j) && json_equal(b, j));
    /* the dialog's strings are shared by both reads: the state id, the hash, a choice's answer */
    ASSERT(json_object_get(a, "s") == json_object_get(b, "s"));
    ASSERT(json_object_get(a, "h") == json_object_get(b, "h"));
    const json_t *ua = json_object_get(json_object_get(a, "a"), "usage");
    ASSERT_STR_EQ(json_string_value(ua), "industriel");
    ASSERT(ua == json_object_get(json_object_get(b, "a"), "usage"));
    /* what the user typed is not the dialog's: each read has its own */
    const json_t *na = json_object_get(json_object_get(json_object_get(a, "a"), "commune"), "nom");
    ASSERT_STR_EQ(json_string_value(na), "Lyon");
    ASSERT(na != json_object_get(json_object_get(json_object_get(b, "a"), "commune"), "nom"));
    /* not JSON, or not an object/array at the top: refused as by jansson */
    ASSERT_NULL(fb_engine_session_loadb(c.d, "{\"s\":", 5));
    ASSERT_NULL(fb_engine_session_loadb(c.d, "\"s\"", 3));
    json_decref(a);
    json_decref(b);
    json_decref(j);
    free(stored); /* jansson's allocation */
    /* the shared strings outlive the dialog (reference-counted) */
    json_t *kept = fb_engine_session_loadb(c.d, "{\"s\":\"usage\"}", 13);
    ASSERT_NOT_NULL(kept);
    conv_free(&c);
    ASSERT_STR_EQ(json_string_value(json_object_get(kept, "s")), "usage");
    json_decref(kept);
    return 0;
}

TEST_IMPL(machine_effect_names)
{
    ASSERT_EQ(FB_EFFECT_COUNT, 9);
    for (int i = 0; i < FB_EFFECT_COUNT; i++) {
        const char *name = fb_effect_name((fb_effect_t)i);
        ASSERT(name != NULL);
        ASSERT_EQ(fb_effect_from_name(name), i);
        json_t *e = fb_effect_new((fb_effect_t)i);
        ASSERT_EQ(fb_effect_type(e), i);
        json_decref(e);
    }
    ASSERT_STR_EQ(fb_effect_name(FB_EFFECT_ESCALATE), "escalate");
    ASSERT_STR_EQ(fb_effect_key(FB_EFFECT_SCHEDULE), "relance");
    ASSERT_NULL(fb_effect_key(FB_EFFECT_SAY));
    ASSERT_NULL(fb_effect_name(FB_EFFECT_UNKNOWN));
    ASSERT_EQ(fb_effect_from_name("escalade"), FB_EFFECT_UNKNOWN);
    ASSERT_EQ(fb_effect_from_name(NULL), FB_EFFECT_UNKNOWN);
    ASSERT_EQ(fb_effect_type(NULL), FB_EFFECT_UNKNOWN);
    return 0;
}

TEST_IMPL(machine_command_aide)
{
    struct conv c;
    conv_init(&c, "petit.yaml", 0);
    event(&c, FB_EVENT_START);
    say(&c, "Aide !");
    ASSERT_SAID(&c, "Choisissez une option.\n--\nQuel est le statut du site ?\n\n1. Une friche\n"
                    "2. Un site occupé");
    ASSERT_ACTIONS(&c, "[]");
    say(&c, " ? ");
    ASSERT_SAYS(&c, "Choisissez une option.");
    say(&c, "friche");
    say(&c, "help"); /* q2 has no help of its own: the general help, listing the commands */
    ASSERT_SAYS(&c, "Répondez simplement à la question posée.");
    ASSERT_SAYS(&c, "• retour : revenir à la question précédente");
    ASSERT_SAYS(&c, "Le site est-il pollué ?");
    ASSERT_STR_EQ(state(&c), "q2");
    ASSERT_NULL(json_object_get(c.session, "f")); /* a command is not a failed answer */
    conv_free(&c);
    return 0;
}

TEST_IMPL(machine_command_recap_and_data)
{
    struct conv c;
    petit_at_q2(&c);
    say(&c, "oui");
    say(&c, "Où en suis-je ?");
    ASSERT_SAID(&c, "Voici où nous en sommes :\n\nVos réponses :\n• Statut : Une friche\n"
                    "• q2 : oui\n\nVotre feuille de route :\n"
                    "1. Délibérer sur le projet : à faire\n"
                    "2. Faire un diagnostic de pollution : à faire\n--\nCombien de bâtiments ?");
    say(&c, "mes données");
    ASSERT_SAYS(&c, "Voici tout ce que je conserve pour cette conversation :");
    /* tags are internal names: the user never reads them (issue #19) */
    ASSERT_NOT_SAYS(&c, "Signaux");
    ASSERT_NOT_SAYS(&c, "pollue");
    ASSERT_SAYS(&c, "Pour tout effacer, écrivez « oublier mes données ».");
    ASSERT_SAYS(&c, "Combien de bâtiments ?");
    ASSERT(strstr(fb_buf_str(&c.html), "<li>Statut : Une friche</li>"));
    ASSERT_ACTIONS(&c, "[]");
    conv_free(&c);
    return 0;
}

TEST_IMPL(machine_command_conseiller_and_handback)
{
    struct conv c;
    petit_at_q2(&c);
    say(&c, "agent"); /* a word the dialog adds to `conseiller` */
    ASSERT_SAID(&c, "Je transmets votre demande à un conseiller, qui vous répondra ici dès que "
                    "possible. Vos réponses lui sont transmises : inutile de les répéter.");
    ASSERT_ACTIONS(&c, "[{\"type\":\"escalate\",\"reason\":\"demande\",\"summary\":\"Dialogue : "
                       "Petit dialogue\\nQuestion en cours : Le site est-il pollué ?\\n\\n"
                       "Réponses :\\n• Statut : Une friche\\n\\nSignaux retenus : friche\\n\\n"
                       "Votre feuille de route :\\n1. Délibérer sur le projet : à faire\\n\\n"
                       "Derniers messages de l'usager :\\n« une friche »\\n« agent »\"},"
                       "{\"type\":\"cancel\"},{\"type\":\"stat\",\"name\":\"escalated\"}]");
    ASSERT(json_is_true(json_object_get(c.session, "x")));
    json_t *before = json_deep_copy(c.session);

    /* escalated: quiet on messages and timers, whatever they are */
    say(&c, "oui");
    ASSERT_EFFECTS(&c, "[]");
    ASSERT(json_equal(before, c.session));
    say(&c, "conseiller"); /* already waiting: relayed like any text */
    ASSERT_EFFECTS(&c, "[]");
    choose(&c, "oui");
    ASSERT_EFFECTS(&c, "[]");
    event(&c, FB_EVENT_TIMER);
    ASSERT_EFFECTS(&c, "[]");
    ASSERT(json_equal(before, c.session));
    /* the commands that show something still answer, without the question (an answer would go
     * to the advisor), and say that the request waits; nothing changes */
    say(&c, "aide");
    ASSERT_SAYS(&c, "Répondez simplement à la question posée.");
    ASSERT_SAYS(&c, "Votre demande attend un conseiller");
    ASSERT_NOT_SAYS(&c, "Le site est-il pollué ?");
    ASSERT_ACTIONS(&c, "[]");
    ASSERT(json_equal(before, c.session));
    say(&c, "mes données");
    ASSERT_SAYS(&c, "• Statut : Une friche");
    ASSERT_SAYS(&c, "Votre demande attend un conseiller");
    ASSERT_NOT_SAYS(&c, "Le site est-il pollué ?");
    ASSERT(json_equal(before, c.session));
    say(&c, "où en suis-je");
    ASSERT_SAYS(&c, "Voici où nous en sommes :");
    ASSERT_SAYS(&c, "1. Délibérer sur le projet : à faire");
    ASSERT(json_equal(before, c.session));
    say(&c, "mes étapes");
    ASSERT_SAYS(&c, "Votre feuille de route n'est pas encore enregistrée");
    ASSERT_SAYS(&c, "Votre demande attend un conseiller");
    ASSERT_NOT_SAYS(&c, "Le site est-il pollué ?");
    ASSERT(json_equal(before, c.session));
    json_decref(before);

    event(&c, FB_EVENT_HANDBACK);
    ASSERT_SAID(&c, "Le conseiller vous a rendu la main : reprenons.\n--\n"
                    "Le site est-il pollué ?\n\n1. Oui\n2. Non\n3. Je ne sais pas");
    ASSERT_ACTIONS(&c, "[{\"type\":\"stat\",\"name\":\"handed_back\"},{\"type\":\"schedule\","
                       "\"id\":\"relance\",\"after\":259200,\"reason\":\"inactivite\"}]");
    ASSERT_NULL(json_object_get(c.session, "x"));
    event(&c, FB_EVENT_HANDBACK); /* not escalated: nothing to do */
    ASSERT_EFFECTS(&c, "[]");
    say(&c, "non");
    ASSERT_STR_EQ(state(&c), "q3");
    conv_free(&c);
    return 0;
}

TEST_IMPL(machine_command_recommencer)
{
    struct conv c;
    petit_at_q2(&c);
    say(&c, "oui");
    say(&c, "stop");
    say(&c, "tout recommencer");
    ASSERT_SAID(&c, "Bonjour !\n--\nQuel est le statut du site ?\n\n1. Une friche\n2. Un site "
                    "occupé");
    /* reminders stay stopped: the preference survives a restart */
    ASSERT_ACTIONS(&c, "[{\"type\":\"stat\",\"name\":\"conversation_restarted\"}]");
    ASSERT_STR_EQ(state(&c), "q1");
    ASSERT_EQ(json_object_size(json_object_get(c.session, "a")), 0);
    ASSERT_NULL(json_object_get(c.session, "t"));
    ASSERT_NULL(json_object_get(c.session, "p"));
    /* START from the platform with a session restarts too */
    say(&c, "friche");
    event(&c, FB_EVENT_START);
    ASSERT_STR_EQ(state(&c), "q1");
    ASSERT_EQ(json_object_size(json_object_get(c.session, "a")), 0);
    conv_free(&c);
    return 0;
}

TEST_IMPL(machine_command_stop)
{
    struct conv c;
    petit_at_q2(&c);
    say(&c, "Arrêter les relances");
    ASSERT_SAID(&c, "Entendu, je ne vous enverrai plus de relances. Vous pouvez reprendre la "
                    "conversation quand vous le souhaitez.");
    ASSERT_ACTIONS(&c, "[{\"type\":\"cancel\"}]");
    ASSERT(json_is_true(json_object_get(c.session, "m")));
    say(&c, "non"); /* no more schedule when a question is asked */
    ASSERT_SAID(&c, "Combien de bâtiments ?");
    ASSERT_ACTIONS(&c, "[]");
    event(&c, FB_EVENT_TIMER); /* a reminder already due says nothing */
    ASSERT_EFFECTS(&c, "[]");
    /* q4 disables `stop`: there it is an ordinary answer */
    say(&c, "3");
    ASSERT_STR_EQ(state(&c), "q4");
    say(&c, "stop");
    ASSERT_STR_EQ(json_string_value(answer(&c, "q4")), "stop");
    ASSERT_STR_EQ(state(&c), "fin");
    conv_free(&c);
    return 0;
}

TEST_IMPL(machine_command_forget)
{
    struct conv c;
    petit_at_q2(&c);
    say(&c, "Oublier mes données");
    ASSERT(json_is_null(c.session));
    ASSERT_EFFECTS(
        &c, "[{\"type\":\"forget\"},{\"type\":\"cancel\"},{\"type\":\"say\",\"text\":"
            "\"C'est fait : j'ai effacé tout ce que je savais de vous et de votre projet. Au "
            "revoir !\",\"html\":\"<p>C&#39;est fait : j&#39;ai effacé tout ce que je savais "
            "de vous et de votre projet. Au revoir !</p>\"}]");
    /* the platform's "forget me" request, with and without a session */
    say(&c, "bonjour"); /* a new conversation */
    ASSERT_STR_EQ(state(&c), "q1");
    event(&c, FB_EVENT_FORGET);
    ASSERT(json_is_null(c.session));
    ASSERT_ACTIONS(&c, "[{\"type\":\"forget\"},{\"type\":\"cancel\"}]");
    event(&c, FB_EVENT_FORGET);
    ASSERT(json_is_null(c.session));
    ASSERT_ACTIONS(&c, "[{\"type\":\"forget\"},{\"type\":\"cancel\"}]");
    /* an escalated user can still be forgotten */
    say(&c, "bonjour");
    say(&c, "conseiller");
    say(&c, "supprimer mes données");
    ASSERT(json_is_null(c.session));
    /* nothing to remind, nobody to hand back to */
    event(&c, FB_EVENT_TIMER);
    ASSERT_EFFECTS(&c, "[]");
    event(&c, FB_EVENT_HANDBACK);
    ASSERT_EFFECTS(&c, "[]");
    ASSERT(json_is_null(c.session));
    conv_free(&c);
    return 0;
}

/* `retour` three times: each answer and the tags it emitted are forgotten. */
TEST_IMPL(machine_retour_three_questions)
{
    struct conv c;
    petit_at_q2(&c);
    say(&c, "oui");
    say(&c, "3");
    ASSERT_STR_EQ(state(&c), "q4");
    ASSERT(has_tag(&c, "friche"));
    ASSERT(has_tag(&c, "pollue"));
    char *p = json_dumps(json_object_get(c.session, "p"), JSON_COMPACT);
    ASSERT_STR_EQ(p, "[\"q3\",\"q2\",\"q1\"]");
    free(p);

    say(&c, "retour");
    ASSERT_SAID(&c, "Combien de bâtiments ?");
    ASSERT_STR_EQ(state(&c), "q3");
    ASSERT_NULL(answer(&c, "q3"));
    ASSERT_NOT_NULL(answer(&c, "q2"));
    ASSERT(has_tag(&c, "pollue"));

    say(&c, "précédent");
    ASSERT_STR_EQ(state(&c), "q2");
    ASSERT_NULL(answer(&c, "q2"));
    ASSERT(!has_tag(&c, "pollue"));
    ASSERT(has_tag(&c, "friche"));

    say(&c, "revenir");
    ASSERT_STR_EQ(state(&c), "q1");
    ASSERT_EQ(json_object_size(json_object_get(c.session, "a")), 0);
    ASSERT_NULL(json_object_get(c.session, "t"));
    ASSERT_NULL(json_object_get(c.session, "p"));

    say(&c, "retour");
    ASSERT_SAID(&c, "Nous sommes à la première question : il n'y a pas de question précédente.\n"
                    "--\nQuel est le statut du site ?\n\n1. Une friche\n2. Un site occupé");
    ASSERT_STR_EQ(state(&c), "q1");

    /* answering differently goes on normally */
    say(&c, "2");
    ASSERT_STR_EQ(json_string_value(answer(&c, "q1")), "occupe");
    ASSERT(!has_tag(&c, "friche"));
    ASSERT_STR_EQ(state(&c), "q2");
    conv_free(&c);
    return 0;
}

/* `retour` from the end reopens the guided part and drops the roadmap. */
TEST_IMPL(machine_retour_after_end)
{
    struct conv c;
    petit_at_q2(&c);
    say(&c, "non");
    say(&c, "3");
    say(&c, "Une ancienne usine à reconvertir");
    ASSERT_STR_EQ(state(&c), "fin");
    ASSERT_NOT_NULL(json_object_get(c.session, "r"));
    say(&c, "retour");
    ASSERT_STR_EQ(state(&c), "q4");
    ASSERT_NULL(json_object_get(c.session, "e"));
    ASSERT_NULL(json_object_get(c.session, "r"));
    ASSERT_SAID(&c, "Un mot sur le projet ?");
    conv_free(&c);
    return 0;
}

/* ---- preconditions, branches, choices ------------------------------------------------------- */

TEST_IMPL(machine_preconditions_and_branches)
{
    struct conv c;
    conv_init(&c, "complet.yaml", 1);
    event(&c, FB_EVENT_START);
    choose(&c, "wrong-id-read-as-text"); /* an unknown option id is read as text */
    ASSERT_SAID(&c, "Je n'ai pas trouvé cette commune. Essayez le code postal.");
    say(&c, "Saint-Denis 93");
    ASSERT_STR_EQ(json_string_value(json_object_get(answer(&c, "commune"), "insee")), "93066");
    say(&c, "800 m2");
    ASSERT(!has_tag(&c, "grand_site"));
    /* "Commercial": the branch on usage skips to proprietaire */
    choose(&c, "commerce");
    ASSERT_STR_EQ(state(&c), "proprietaire");
    ASSERT_SAYS(&c, "La collectivité est-elle propriétaire du site ?");
    say(&c, "retour");
    /* "Autre": the option's own `aller` */
    say(&c, "autre");
    ASSERT_STR_EQ(state(&c), "autre_usage");
    say(&c, "Une ancienne gare de marchandises");
    ASSERT_STR_EQ(state(&c), "proprietaire");
    say(&c, "oui");
    say(&c, "tous");
    say(&c, "je ne sais pas");
    ASSERT_STR_EQ(json_string_value(answer(&c, "demarrage")), "__nsp__");
    /* no big site: the message `etude` is skipped, and its roadmap item is absent */
    ASSERT_STR_EQ(state(&c), "fin");
    ASSERT_NOT_SAYS(&c, "étude de programmation");
    ASSERT_ACTIONS(&c, "[{\"type\":\"step\",\"item\":\"etapes.engagement\",\"status\":\"a_faire\"},"
                       "{\"type\":\"step\",\"item\":\"etapes.maitrise_fonciere\",\"status\":"
                       "\"deja_faite\"},{\"type\":\"end\"},{\"type\":\"stat\",\"name\":"
                       "\"site_completed\"},{\"type\":\"schedule\",\"id\":\"relance\",\"after\":"
                       "3628800,\"reason\":\"suivi\"}]");
    ASSERT_SAYS(&c, "Voici votre feuille de route pour Saint-Denis :");
    /* the pollution question was never asked: its precondition did not hold */
    ASSERT_NULL(answer(&c, "pollution"));
    char *p = json_dumps(json_object_get(c.session, "p"), JSON_COMPACT);
    ASSERT_STR_EQ(p, "[\"demarrage\",\"projet\",\"proprietaire\",\"autre_usage\",\"usage\","
                     "\"surface\",\"commune\"]");
    free(p);
    conv_free(&c);
    return 0;
}

/* An ambiguous commune gets a short numbered list; the next message picks one. */
TEST_IMPL(machine_commune_ambiguous)
{
    struct conv c;
    conv_init(&c, "complet.yaml", 1);
    event(&c, FB_EVENT_START);
    say(&c, "saint denis");
    ASSERT_SAID(&c, "Plusieurs communes correspondent. Laquelle est la bonne ?\n\n"
                    "1. Saint-Denis (974)\n2. Saint-Denis (93)\n3. Saint-Denis (11)\n"
                    "4. Saint-Denis (30)\n5. Aucune de ces communes");
    ASSERT_CHOICES(&c, "[{\"id\":\"97411\",\"label\":\"Saint-Denis (974)\"},{\"id\":\"93066\","
                       "\"label\":\"Saint-Denis (93)\"},{\"id\":\"11339\",\"label\":"
                       "\"Saint-Denis (11)\"},{\"id\":\"30247\",\"label\":\"Saint-Denis (30)\"},"
                       "{\"id\":\"autre\",\"label\":\"Aucune de ces communes\"}]");
    char *cand = json_dumps(json_object_get(c.session, "c"), JSON_COMPACT);
    ASSERT_STR_EQ(cand, "[\"97411\",\"93066\",\"11339\",\"30247\"]");
    free(cand);
    ASSERT_NULL(json_object_get(c.session, "f")); /* not a failure */
    say(&c, "2");
    ASSERT_STR_EQ(json_string_value(json_object_get(answer(&c, "commune"), "insee")), "93066");
    ASSERT_NULL(json_object_get(c.session, "c"));
    ASSERT_STR_EQ(state(&c), "surface");

    /* a pick by button, and a new search instead of a pick */
    say(&c, "retour");
    say(&c, "saint-denis");
    choose(&c, "97411");
    ASSERT_STR_EQ(json_string_value(json_object_get(answer(&c, "commune"), "nom")), "Saint-Denis");
    ASSERT_STR_EQ(json_string_value(json_object_get(answer(&c, "commune"), "insee")), "97411");
    say(&c, "retour");
    say(&c, "69001"); /* the postal code of Lyon and the INSEE code of Affoux */
    ASSERT_SAYS(&c, "1. Lyon (69)\n2. Affoux (69), dont le code INSEE est 69001\n"
                    "3. Aucune de ces communes");
    say(&c, "Marseille");
    ASSERT_STR_EQ(json_string_value(json_object_get(answer(&c, "commune"), "insee")), "13055");
    /* the stored answer is compact, its details come from the index */
    char *a = json_dumps(answer(&c, "commune"), JSON_COMPACT);
    ASSERT_STR_EQ(a, "{\"insee\":\"13055\",\"nom\":\"Marseille\"}");
    free(a);
    conv_free(&c);
    return 0;
}

/* The INSEE code of the commune answer, or "" when none is stored. */
static const char *commune_insee(const struct conv *c)
{
    const char *v = json_string_value(json_object_get(answer(c, "commune"), "insee"));
    return v ? v : "";
}

/* Inside a list of homonyms, a département or région picks among the listed communes only
 * (issue #19): never another commune of that name elsewhere. */
TEST_IMPL(machine_commune_list_by_area)
{
    static const struct {
        const char *text, *insee;
    } picks[] = {
        {"93", "93066"},
        {"celle du 93", "93066"},
        {"Seine-Saint-Denis", "93066"},
        {"la Réunion", "97411"},
        {"dans l'Aude", "11339"},
        {"Occitanie", NULL}, /* two of the list are in Occitanie: the list narrows to them */
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(picks); i++) {
        struct conv c;
        conv_init(&c, "complet.yaml", 1);
        event(&c, FB_EVENT_START);
        say(&c, "Saint-Denis");
        ASSERT_SAYS(&c, "4. Saint-Denis (30)\n5. Aucune de ces communes");
        say(&c, picks[i].text);
        if (picks[i].insee) {
            ASSERT_STR_EQ(commune_insee(&c), picks[i].insee);
            ASSERT_STR_EQ(state(&c), "surface");
        } else {
            ASSERT_SAID(&c, "Plusieurs communes correspondent. Laquelle est la bonne ?\n\n"
                            "1. Saint-Denis (11)\n2. Saint-Denis (30)\n3. Aucune de ces communes");
            say(&c, "gard");
            ASSERT_STR_EQ(commune_insee(&c), "30247");
        }
        conv_free(&c);
    }

    /* an area none of the listed communes is in: said, and the list stays */
    struct conv c;
    conv_init(&c, "complet.yaml", 1);
    event(&c, FB_EVENT_START);
    say(&c, "Montreuil");
    say(&c, "la Creuse");
    ASSERT_SAID(&c, "Creuse (23) : aucune des communes proposées ne s'y trouve. Choisissez-en une, "
                    "ou « Aucune de ces communes ».\n\n1. Montreuil (93)\n2. Montreuil (85)\n"
                    "3. Montreuil (28)\n4. Aucune de ces communes");
    ASSERT_STR_EQ(commune_insee(&c), "");
    ASSERT_NULL(json_object_get(c.session, "f")); /* not a failure */
    say(&c, "Bretagne");
    ASSERT_SAYS(&c, "Bretagne : aucune des communes proposées ne s'y trouve.");
    say(&c, "Vendée");
    ASSERT_STR_EQ(commune_insee(&c), "85148");
    conv_free(&c);
    return 0;
}

/* « Aucune de ces communes » is always the last option, and leads back to the question. */
TEST_IMPL(machine_commune_autre)
{
    static const char *const ways[] = {"5",   "aucune de ces communes", "Aucune", "autre",
                                       "non", "pas dans la liste",      NULL /* the button */};
    for (size_t i = 0; i < FB_ARRAY_SIZE(ways); i++) {
        struct conv c;
        conv_init(&c, "complet.yaml", 1);
        event(&c, FB_EVENT_START);
        say(&c, "Saint-Denis");
        if (ways[i])
            say(&c, ways[i]);
        else
            choose(&c, "autre");
        ASSERT_SAID(&c, "D'accord. Écrivez le nom de la commune suivi de son département (par "
                        "exemple « Saint-Denis 93 »), ou son code postal, ou son code INSEE (5 "
                        "caractères).");
        ASSERT_NULL(json_object_get(c.session, "c"));
        ASSERT_NULL(json_object_get(c.session, "f"));
        ASSERT_STR_EQ(state(&c), "commune");
        say(&c, "Saint-Denis 11");
        ASSERT_STR_EQ(commune_insee(&c), "11339");
        conv_free(&c);
    }
    return 0;
}

/* A département or région at the question itself: which commune of it? It narrows the next
 * search; a commune named like a département is offered beside it. */
TEST_IMPL(machine_commune_area_at_question)
{
    struct conv c;
    conv_init(&c, "complet.yaml", 1);
    event(&c, FB_EVENT_START);
    say(&c, "93");
    ASSERT_SAID(&c, "Seine-Saint-Denis (93) est un département, pas une commune. Dans quelle "
                    "commune de ce département se trouve le site ?");
    ASSERT_NULL(json_object_get(c.session, "f"));
    ASSERT_STR_EQ(json_string_value(json_object_get(c.session, "q")), "d93");
    say(&c, "Saint-Denis"); /* four homonyms, one in the 93 */
    ASSERT_STR_EQ(commune_insee(&c), "93066");
    ASSERT_NULL(json_object_get(c.session, "q"));

    say(&c, "retour");
    say(&c, "celle du 93"); /* not Cellé (41) */
    ASSERT_SAYS(&c, "Seine-Saint-Denis (93) est un département");
    say(&c, "Montreuil");
    ASSERT_STR_EQ(commune_insee(&c), "93048");

    say(&c, "retour");
    say(&c, "en Bretagne");
    ASSERT_SAID(&c, "Bretagne est une région, pas une commune. Dans quelle commune de cette région "
                    "se trouve le site ?");
    say(&c, "Saint-Malo");
    ASSERT_STR_EQ(commune_insee(&c), "35288");

    /* the qualifier narrows only when something in it matches */
    say(&c, "retour");
    say(&c, "Creuse"); /* the département, or the commune Creuse (Somme) */
    ASSERT_SAID(&c, "Plusieurs communes correspondent. Laquelle est la bonne ?\n\n1. Creuse (80)\n"
                    "2. Le département Creuse (23)\n3. Aucune de ces communes");
    ASSERT_CHOICES(&c,
                   "[{\"id\":\"80225\",\"label\":\"Creuse (80)\"},{\"id\":\"d23\",\"label\":"
                   "\"Le département Creuse (23)\"},{\"id\":\"autre\",\"label\":\"Aucune de ces "
                   "communes\"}]");
    choose(&c, "d23");
    ASSERT_SAYS(&c, "Creuse (23) est un département, pas une commune.");
    say(&c, "Lyon"); /* not in the Creuse: found anyway */
    ASSERT_STR_EQ(commune_insee(&c), "69123");

    say(&c, "retour");
    say(&c, "Paris"); /* Paris is in Paris: the commune */
    ASSERT_STR_EQ(commune_insee(&c), "75056");
    conv_free(&c);
    return 0;
}

/* A postal code lists every commune that has it, by name, then the commune whose INSEE code it
 * is; beyond FB__COMMUNE_LIST_MAX communes, the user is asked for the name. */
TEST_IMPL(machine_commune_postal_codes)
{
    struct conv c;
    conv_init(&c, "complet.yaml", 1);
    event(&c, FB_EVENT_START);
    say(&c, "12300");
    ASSERT_SAID(&c, "Plusieurs communes correspondent. Laquelle est la bonne ?\n\n"
                    "1. Almont-les-Junies (12)\n2. Boisse-Penchot (12)\n3. Bouillac (12)\n"
                    "4. Decazeville (12)\n5. Firmi (12)\n6. Flagnac (12)\n"
                    "7. Livinhac-le-Haut (12)\n8. Saint-Parthem (12)\n9. Saint-Santin (12)\n"
                    "10. Villefranche-de-Rouergue (12), dont le code INSEE est 12300\n"
                    "11. Aucune de ces communes");
    say(&c, "10");
    ASSERT_STR_EQ(commune_insee(&c), "12300");

    say(&c, "retour");
    say(&c, "12300");
    say(&c, "Decazeville");
    ASSERT_STR_EQ(commune_insee(&c), "12089");

    say(&c, "retour");
    say(&c, "51300"); /* 46 communes, and the INSEE code of Isle-sur-Marne */
    ASSERT_SAID(&c, "Le code postal 51300 est partagé par 46 communes : écrivez le nom de la "
                    "vôtre. 51300 est aussi le code INSEE d'une autre commune, Isle-sur-Marne "
                    "(51) : est-ce elle ?\n\n1. Oui\n2. Non");
    ASSERT_STR_EQ(json_string_value(json_object_get(c.session, "q")), "p51300");
    say(&c, "Vitry"); /* a prefix, narrowed to the 51300: proposed */
    ASSERT_SAID(&c, "Plusieurs communes correspondent. Laquelle est la bonne ?\n\n"
                    "1. Vitry-le-François (51)\n2. Vitry-en-Perthois (51)\n"
                    "3. Aucune de ces communes");
    say(&c, "1");
    ASSERT_STR_EQ(commune_insee(&c), "51649");

    say(&c, "retour");
    say(&c, "51300");
    say(&c, "oui");
    ASSERT_STR_EQ(commune_insee(&c), "51300");
    conv_free(&c);
    return 0;
}

/* A commune found only by typo, by prefix or by dropping a qualifier is proposed, not taken;
 * exact names are taken at once, accents and hyphens aside. */
TEST_IMPL(machine_commune_confirm)
{
    struct conv c;
    conv_init(&c, "complet.yaml", 1);
    event(&c, FB_EVENT_START);
    say(&c, "usine");
    ASSERT_SAID(&c, "Vous voulez dire Ugine (73) ?\n\n1. Oui\n2. Non");
    ASSERT_CHOICES(&c, "[{\"id\":\"73303\",\"label\":\"Oui\"},{\"id\":\"autre\",\"label\":"
                       "\"Non\"}]");
    ASSERT_STR_EQ(commune_insee(&c), "");
    say(&c, "non");
    ASSERT_SAYS(&c, "D'accord. Écrivez le nom de la commune");
    say(&c, "Marseile");
    ASSERT_SAID(&c, "Vous voulez dire Marseille (13) ?\n\n1. Oui\n2. Non");
    say(&c, "oui");
    ASSERT_STR_EQ(commune_insee(&c), "13055");

    say(&c, "retour");
    say(&c, "Paris 15"); /* Cantal has no Paris: the 15 is dropped, so it is asked */
    ASSERT_SAID(&c, "Vous voulez dire Paris (75) ?\n\n1. Oui\n2. Non");
    say(&c, "Lyon"); /* another name instead of yes or no: a new search */
    ASSERT_STR_EQ(commune_insee(&c), "69123");

    say(&c, "retour");
    say(&c, "mairie"); /* only typos: a list, never a silent pick */
    ASSERT_SAYS(&c, "Plusieurs communes correspondent.");
    ASSERT_STR_EQ(commune_insee(&c), "");
    say(&c, "bonjour"); /* not a commune: refused, not guessed */
    ASSERT_SAID(&c, "Je n'ai pas trouvé cette commune. Essayez le code postal.");
    say(&c, "je suis le maire");
    ASSERT_SAYS(&c, "Toujours pas");
    ASSERT_STR_EQ(commune_insee(&c), "");
    say(&c, "saint etienne"); /* exact, without accent nor hyphen: taken */
    ASSERT_STR_EQ(commune_insee(&c), "42218");
    say(&c, "retour");
    say(&c, "Havre"); /* the name without its article: taken */
    ASSERT_STR_EQ(commune_insee(&c), "76351");
    conv_free(&c);
    return 0;
}

/* ---- failures ------------------------------------------------------------------------------- */

TEST_IMPL(machine_reprompts_then_conseiller)
{
    struct conv c;
    conv_init(&c, "petit.yaml", 0);
    event(&c, FB_EVENT_START);
    say(&c, "la réponse D");
    ASSERT_SAID(&c, "Répondez par le numéro ou le texte d'une option.\n\n1. Une friche\n"
                    "2. Un site occupé");
    ASSERT_CHOICES(&c, "[{\"id\":\"friche\",\"label\":\"Une friche\"},{\"id\":\"occupe\","
                       "\"label\":\"Un site occupé\"}]");
    ASSERT_EQ(json_integer_value(json_object_get(c.session, "f")), 1);
    say(&c, "7");
    ASSERT_SAID(&c, "Dernière tentative : 1 ou 2.\n\n1. Une friche\n2. Un site occupé");
    ASSERT_EQ(json_integer_value(json_object_get(c.session, "f")), 2);
    say(&c, "je sais pas");
    ASSERT_SAYS(&c, "Je transmets votre demande à un conseiller");
    ASSERT_ACTIONS(&c, "[{\"type\":\"escalate\",\"reason\":\"echecs\",\"summary\":\"Dialogue : "
                       "Petit dialogue\\nQuestion en cours : Quel est le statut du site ? (3 "
                       "réponses non comprises)\\n\\nRéponses :\\n(aucune réponse pour "
                       "l'instant)\\n\\nVotre feuille de route :\\n1. Délibérer sur le projet : "
                       "à faire\\n\\nDerniers messages de l'usager :\\n« la réponse D »\\n"
                       "« 7 »\\n« je sais pas »\"},{\"type\":\"cancel\"},{\"type\":\"stat\","
                       "\"name\":\"escalated\"}]");
    ASSERT(json_is_true(json_object_get(c.session, "x")));
    conv_free(&c);
    return 0;
}

TEST_IMPL(machine_reprompts_then_aide)
{
    struct conv c;
    petit_at_q2(&c);
    say(&c, "non");
    ASSERT_STR_EQ(state(&c), "q3");
    say(&c, "beaucoup");
    ASSERT_SAID(&c, "Je n'ai pas compris votre réponse.");
    say(&c, "1000"); /* out of range: a failure too, the second: `aide`, then asked again */
    ASSERT_SAID(
        &c, "Je n'arrive pas à comprendre votre réponse.\n--\nRépondez simplement à la question "
            "posée. À tout moment, vous pouvez aussi "
            "écrire :\n\n• retour : revenir à la question précédente\n• recommencer : "
            "tout reprendre depuis le début\n• conseiller : parler à une personne\n"
            "• où en suis-je : revoir vos réponses et votre feuille de route\n"
            "• mes données : voir ce que je conserve\n• mes étapes : suivre les étapes de votre "
            "feuille de route et changer leur statut\n• oublier mes données : tout "
            "effacer\n• stop : ne plus recevoir de relances\n--\nCombien de bâtiments ?");
    ASSERT_NULL(json_object_get(c.session, "f"));
    say(&c, "60");
    ASSERT_SAID(&c, "Cette réponse sort des valeurs attendues.");
    ASSERT_EQ(json_integer_value(json_object_get(c.session, "f")), 1);
    say(&c, "douze");
    ASSERT_EQ(json_integer_value(answer(&c, "q3")), 12);
    conv_free(&c);
    return 0;
}

TEST_IMPL(machine_commune_failures_escalate)
{
    struct conv c;
    conv_init(&c, "complet.yaml", 1);
    event(&c, FB_EVENT_START);
    say(&c, "Zzyzx");
    ASSERT_SAID(&c, "Je n'ai pas trouvé cette commune. Essayez le code postal.");
    say(&c, "00000");
    ASSERT_SAID(&c, "Toujours pas : essayez le code INSEE (5 caractères).");
    say(&c, "Qwerty");
    ASSERT_SAYS(&c, "Je transmets votre demande à un conseiller");
    json_t *esc = json_array_get(c.effects, 1);
    ASSERT_STR_EQ(json_string_value(json_object_get(esc, "type")), "escalate");
    ASSERT_STR_EQ(json_string_value(json_object_get(esc, "reason")), "echecs");
    conv_free(&c);
    return 0;
}

/* "je ne sais pas": accepted where the question allows it, refused politely elsewhere. */
TEST_IMPL(machine_nsp)
{
    struct conv c;
    petit_at_q2(&c);
    say(&c, "aucune idée");
    ASSERT_STR_EQ(json_string_value(answer(&c, "q2")), "__nsp__");
    ASSERT(!has_tag(&c, "pollue"));
    ASSERT_STR_EQ(state(&c), "q3");
    say(&c, "je ne sais pas");
    /* the refusal repeats the question (issue 19: not a bare "il me faut une réponse") */
    ASSERT_SAID(&c, "Il me faut une réponse ici, même approximative. Combien de bâtiments ?");
    ASSERT_STR_EQ(state(&c), "q3");
    ASSERT_EQ(json_integer_value(json_object_get(c.session, "f")), 1);
    ASSERT_NULL(answer(&c, "q3"));
    say(&c, "retour");
    choose(&c, "nsp"); /* the "Je ne sais pas" button */
    ASSERT_STR_EQ(json_string_value(answer(&c, "q2")), "__nsp__");
    say(&c, "retour");
    say(&c, "3"); /* its number in the list */
    ASSERT_STR_EQ(json_string_value(answer(&c, "q2")), "__nsp__");
    conv_free(&c);
    return 0;
}

/* env.has_advisor: the insee it was last asked about, and its answer. */
struct advisors {
    bool yes;
    int calls;
    char insee[8];
};

static bool has_advisor(const void *arg, const char *insee)
{
    struct advisors *a = (struct advisors *)(uintptr_t)arg;
    a->calls++;
    snprintf(a->insee, sizeof(a->insee), "%s", insee ? insee : "-");
    return a->yes;
}

/* No advisor for this conversation (issue #19): « conseiller » is never a promise nor a silent
 * session; it says how to reach a person and asks the pending question again. */
TEST_IMPL(machine_no_advisor_conseiller_carries_on)
{
    struct conv c;
    struct advisors a = {.yes = false};
    petit_at_q2(&c);
    c.env.has_advisor = has_advisor;
    c.env.has_advisor_arg = &a;
    say(&c, "agent");
    ASSERT_NOT_SAYS(&c, "Je transmets");
    ASSERT_SAID(&c, "Aucun conseiller ne peut vous répondre par cette messagerie pour le moment. "
                    "Pour parler à une personne, l'annuaire de l'administration donne les "
                    "services près de chez vous : lannuaire.service-public.fr "
                    "(https://lannuaire.service-public.fr).\n--\n"
                    "Le site est-il pollué ?\n\n1. Oui\n2. Non\n3. Je ne sais pas");
    ASSERT_ACTIONS(&c, "[]"); /* no escalate, no cancel: the reminder stays armed */
    ASSERT_NULL(json_object_get(c.session, "x"));
    ASSERT_STR_EQ(a.insee, "-"); /* no commune in this dialog */
    say(&c, "oui");              /* the conversation carries on */
    ASSERT_STR_EQ(state(&c), "q3");
    /* the same with an advisor: the escalation as before */
    a.yes = true;
    say(&c, "conseiller");
    ASSERT_SAYS(&c, "Je transmets votre demande à un conseiller");
    ASSERT(json_is_true(json_object_get(c.session, "x")));
    conv_free(&c);
    return 0;
}

/* `echecs: {action: conseiller}` without an advisor is help with the question, not a dead end. */
TEST_IMPL(machine_no_advisor_echecs_is_help)
{
    struct conv c;
    struct advisors a = {.yes = false};
    conv_init(&c, "petit.yaml", 0);
    c.env.has_advisor = has_advisor;
    c.env.has_advisor_arg = &a;
    event(&c, FB_EVENT_START);
    say(&c, "la réponse D");
    say(&c, "7");
    say(&c, "je sais pas");
    ASSERT_SAID(&c, "Je n'arrive pas à comprendre votre réponse. Voici de l'aide pour cette "
                    "question : Choisissez une option. Vous pouvez répondre par exemple « 1 » pour "
                    "« Une friche ».\n--\n"
                    "Quel est le statut du site ?\n\n1. Une friche\n2. Un site occupé");
    ASSERT_ACTIONS(&c, "[]");
    ASSERT_NULL(json_object_get(c.session, "x"));
    ASSERT_NULL(json_object_get(c.session, "f")); /* the count starts again */
    say(&c, "1");
    ASSERT_STR_EQ(state(&c), "q2");
    conv_free(&c);
    return 0;
}

/* While a ticket waits, « retour » and « recommencer » take the questions back. */
TEST_IMPL(machine_escalated_retour_recommencer)
{
    struct conv c;
    petit_at_q2(&c);
    say(&c, "oui");
    ASSERT_STR_EQ(state(&c), "q3");
    say(&c, "conseiller");
    ASSERT(json_is_true(json_object_get(c.session, "x")));
    say(&c, "retour");
    ASSERT_SAID(&c, "Le site est-il pollué ?\n\n1. Oui\n2. Non\n3. Je ne sais pas");
    ASSERT_NULL(json_object_get(c.session, "x"));
    ASSERT_ACTIONS(&c, "[{\"type\":\"schedule\",\"id\":\"relance\",\"after\":259200,"
                       "\"reason\":\"inactivite\"}]");
    say(&c, "non");
    ASSERT_STR_EQ(state(&c), "q3");
    say(&c, "conseiller");
    say(&c, "recommencer");
    ASSERT_NULL(json_object_get(c.session, "x"));
    ASSERT_SAYS(&c, "Quel est le statut du site ?");
    say(&c, "1");
    ASSERT_STR_EQ(state(&c), "q2");
    conv_free(&c);
    return 0;
}

/* A walk with nowhere to go and no advisor: said, and the question asked again (not silent). */
TEST_IMPL(machine_no_advisor_dead_end)
{
    struct conv c;
    struct advisors a = {.yes = false};
    conv_init(&c, "boucle.yaml", 0);
    c.env.has_advisor = has_advisor;
    c.env.has_advisor_arg = &a;
    event(&c, FB_EVENT_START);
    say(&c, "oui");
    ASSERT_SAYS(&c, "Aucun conseiller ne peut vous répondre");
    ASSERT_NOT_SAYS(&c, "Je transmets");
    ASSERT_NULL(json_object_get(c.session, "x"));
    ASSERT_STR_EQ(state(&c), "q");
    say(&c, "non");
    ASSERT_SAID(&c, "Fin.");
    conv_free(&c);
    return 0;
}

/* A walk that cannot go on (skipped states sending it round in circles) escalates. */
TEST_IMPL(machine_dead_end_escalates)
{
    struct conv c;
    conv_init(&c, "boucle.yaml", 0);
    event(&c, FB_EVENT_START);
    say(&c, "oui");
    ASSERT_SAYS(&c, "Je transmets votre demande à un conseiller");
    json_t *esc = json_array_get(c.effects, 1);
    ASSERT_STR_EQ(json_string_value(json_object_get(esc, "type")), "escalate");
    ASSERT_STR_EQ(json_string_value(json_object_get(esc, "reason")), "dialogue");
    ASSERT(json_is_true(json_object_get(c.session, "x")));
    ASSERT_STR_EQ(state(&c), "q");
    say(&c, "oui"); /* quiet until an advisor hands back */
    ASSERT_EFFECTS(&c, "[]");
    event(&c, FB_EVENT_HANDBACK);
    say(&c, "retour");
    say(&c, "non");
    ASSERT_SAID(&c, "Fin.");
    conv_free(&c);
    return 0;
}

/* ---- templates and the roadmap -------------------------------------------------------------- */

TEST_IMPL(machine_templates_roadmap)
{
    struct conv c;
    petit_at_q2(&c);
    say(&c, "oui");
    say(&c, "3 000"); /* out of range */
    say(&c, "4");
    say(&c, "Des **logements** <b>sociaux</b> & un [jardin](javascript:alert(1))");
    ASSERT_SAID(&c, "Merci ! Nombre de bâtiments : 4. Projet : Des **logements** <b>sociaux</b> "
                    "& un [jardin](javascript:alert(1)).");
    ASSERT_STR_EQ(fb_buf_str(&c.html),
                  "<p>Merci ! Nombre de bâtiments : 4. Projet : Des **logements** "
                  "&lt;b&gt;sociaux&lt;/b&gt; &amp; un [jardin](javascript:alert(1)).</p>");
    /* the roadmap of the rules, in catalogue order, in the recap */
    say(&c, "où en suis-je");
    ASSERT_SAYS(&c, "Votre feuille de route :\n1. Délibérer sur le projet : à faire\n"
                    "2. Faire un diagnostic de pollution : à faire");
    ASSERT_ACTIONS(&c, "[]");
    conv_free(&c);
    return 0;
}

/* ---- reminders ------------------------------------------------------------------------------ */

TEST_IMPL(machine_reminders_during_questions)
{
    struct conv c;
    petit_at_q2(&c);
    ASSERT_ACTIONS(&c, "[{\"type\":\"schedule\",\"id\":\"relance\",\"after\":259200,\"reason\":"
                       "\"inactivite\"}]");
    fb_event_t other = {FB_EVENT_TIMER, NULL, NULL, "autre_chose"};
    step(&c, other);
    ASSERT_EFFECTS(&c, "[]");
    event(&c, FB_EVENT_TIMER);
    ASSERT_SAID(&c, "Bonjour ! Où en êtes-vous ? Nous nous étions arrêtés à cette question :\n--\n"
                    "Le site est-il pollué ?\n\n1. Oui\n2. Non\n3. Je ne sais pas");
    ASSERT_ACTIONS(&c, "[{\"type\":\"stat\",\"name\":\"reminder_sent\"},{\"type\":\"schedule\","
                       "\"id\":\"relance\",\"after\":259200,\"reason\":\"inactivite\"}]");
    ASSERT_EQ(json_integer_value(json_object_get(c.session, "n")), 1);
    event(&c, FB_EVENT_TIMER); /* the second and last (max: 2): not armed again */
    ASSERT_SAYS(&c, "Où en êtes-vous ?");
    ASSERT_ACTIONS(&c, "[{\"type\":\"stat\",\"name\":\"reminder_sent\"}]");
    event(&c, FB_EVENT_TIMER);
    ASSERT_EFFECTS(&c, "[]");
    /* the user comes back: the count starts over */
    say(&c, "oui");
    ASSERT_NULL(json_object_get(c.session, "n"));
    ASSERT_ACTIONS(&c, "[{\"type\":\"schedule\",\"id\":\"relance\",\"after\":259200,\"reason\":"
                       "\"inactivite\"}]");
    /* a final state without `relance` cancels the reminder */
    say(&c, "2");
    say(&c, "Un tiers-lieu");
    ASSERT_ACTIONS(&c, "[{\"type\":\"step\",\"item\":\"etapes.engagement\",\"status\":"
                       "\"a_faire\"},{\"type\":\"step\",\"item\":\"etapes.diagnostic_pollution\","
                       "\"status\":\"a_faire\"},{\"type\":\"end\"},{\"type\":\"stat\",\"name\":"
                       "\"site_completed\"},{\"type\":\"cancel\",\"id\":\"relance\"}]");
    event(&c, FB_EVENT_TIMER);
    ASSERT_EFFECTS(&c, "[]");
    conv_free(&c);
    return 0;
}

/* ---- versions ------------------------------------------------------------------------------- */

/* A session keeps running on the version it started with while that version is loaded. */
TEST_IMPL(machine_version_pinning)
{
    struct conv c;
    conv_init(&c, "v1.yaml", 0);
    event(&c, FB_EVENT_START);
    say(&c, "12");
    ASSERT_SAID(&c, "Quel usage (version 1) ?");
    char h1[17];
    snprintf(h1, sizeof(h1), "%s", fb_dialog_hash(c.d));

    fb_buf_t errors;
    fb_buf_init(&errors, 4096);
    fb_dialog_t *v2 = fb_dialog_load_next(DATA "/v2.yaml", c.d, NULL, &errors);
    ASSERT_NOT_NULL(v2);
    fb_buf_free(&errors);
    fb_dialog_t *v1 = c.d;
    const fb_dialog_t *versions[] = {v1};
    c.d = v2;
    c.env.versions = versions;
    c.env.n_versions = 1;
    say(&c, "Un parc");
    ASSERT_SAID(&c, "Fin de la version 1.");
    ASSERT_STR_EQ(json_string_value(json_object_get(c.session, "h")), h1);

    /* a new conversation starts on the current version */
    json_decref(c.session);
    c.session = NULL;
    event(&c, FB_EVENT_START);
    ASSERT_SAID(&c, "Quelle est la surface (version 2) ?");
    ASSERT_STR_EQ(json_string_value(json_object_get(c.session, "h")), fb_dialog_hash(v2));
    fb_dialog_unref(v1);
    conv_free(&c);
    return 0;
}

/* Once the old version is gone, the session moves: a renamed state through `migrations`. */
TEST_IMPL(machine_version_migration)
{
    struct conv c;
    conv_init(&c, "v1.yaml", 0);
    event(&c, FB_EVENT_START);
    ASSERT_STR_EQ(state(&c), "taille");
    fb_dialog_t *v2 = load("v2.yaml", NULL);
    fb_dialog_unref(c.d);
    c.d = v2; /* no env.versions: v1 is not loaded anymore */
    say(&c, "12");
    ASSERT_STR_EQ(json_string_value(json_object_get(c.session, "h")), fb_dialog_hash(v2));
    ASSERT_EQ(json_integer_value(answer(&c, "surface")), 12);
    ASSERT_SAID(&c, "Quel usage (version 2) ?");
    ASSERT_STR_EQ(state(&c), "usage");

    /* a state that vanished without a migration: back to `debut`, answers kept and replayed */
    json_t *s = json_pack("{s:i, s:s, s:s, s:s, s:{s:i}, s:[s]}", "v", 1, "d", "versions", "h",
                          "0123456789abcdef", "s", "disparu", "a", "surface", 40, "p", "disparu");
    json_decref(c.session);
    c.session = s;
    say(&c, "bonjour");
    ASSERT_SAID(&c, "Le questionnaire a été mis à jour : reprenons là où c'est possible.\n--\n"
                    "Quel usage (version 2) ?");
    ASSERT_STR_EQ(state(&c), "usage");
    char *p = json_dumps(json_object_get(c.session, "p"), JSON_COMPACT);
    ASSERT_STR_EQ(p, "[\"surface\"]");
    free(p);

    /* a command on a moved session replays first (but "oublier mes données" acts at once) */
    json_decref(c.session);
    c.session = json_pack("{s:i, s:s, s:s, s:s, s:{s:i}}", "v", 1, "d", "versions", "h",
                          "0123456789abcdef", "s", "disparu", "a", "surface", 40);
    say(&c, "retour");
    ASSERT_SAID(&c, "Le questionnaire a été mis à jour : reprenons là où c'est possible.\n--\n"
                    "Quel usage (version 2) ?");
    json_decref(c.session);
    c.session = json_pack("{s:i, s:s, s:s, s:s}", "v", 1, "d", "versions", "h", "0123456789abcdef",
                          "s", "disparu");
    say(&c, "oublier mes données");
    ASSERT(json_is_null(c.session));
    conv_free(&c);
    return 0;
}

/* ---- robustness ----------------------------------------------------------------------------- */

TEST_IMPL(machine_malformed_session)
{
    fb_dialog_t *d = load("petit.yaml", NULL);
    fb_engine_env_t env = {.now = NOW, .locale = "fr"};
    fb_event_t ev = {FB_EVENT_MESSAGE, "oui", NULL, NULL};
    char *good_h = fb_asprintf("\"%s\"", fb_dialog_hash(d));
    const char *bad[] = {
        "[]",
        "\"session\"",
        "{}",
        "{\"v\":2,\"d\":\"petit\",\"h\":H,\"s\":\"q1\"}",
        "{\"v\":\"1\",\"d\":\"petit\",\"h\":H,\"s\":\"q1\"}",
        "{\"v\":1,\"d\":\"autre\",\"h\":H,\"s\":\"q1\"}",
        "{\"v\":1,\"d\":\"petit\",\"s\":\"q1\"}",
        "{\"v\":1,\"d\":\"petit\",\"h\":H,\"s\":3}",
        "{\"v\":1,\"d\":\"petit\",\"h\":H,\"s\":\"inconnu\"}",
        "{\"v\":1,\"d\":\"petit\",\"h\":H,\"s\":\"q1\",\"a\":[]}",
        "{\"v\":1,\"d\":\"petit\",\"h\":H,\"s\":\"q1\",\"t\":[1]}",
        "{\"v\":1,\"d\":\"petit\",\"h\":H,\"s\":\"q1\",\"t\":\"friche\"}",
        "{\"v\":1,\"d\":\"petit\",\"h\":H,\"s\":\"q1\",\"p\":[null]}",
        "{\"v\":1,\"d\":\"petit\",\"h\":H,\"s\":\"q1\",\"f\":-1}",
        "{\"v\":1,\"d\":\"petit\",\"h\":H,\"s\":\"q1\",\"f\":1.5}",
        "{\"v\":1,\"d\":\"petit\",\"h\":H,\"s\":\"q1\",\"x\":\"oui\"}",
        "{\"v\":1,\"d\":\"petit\",\"h\":H,\"s\":\"q1\",\"e\":1}",
        "{\"v\":1,\"d\":\"petit\",\"h\":H,\"s\":\"q1\",\"c\":[\"123456789\"]}",
        /* one string, split by clang-format: the parentheses say the concatenation is meant */
        /* more candidates than FB__MAX_CANDIDATES (16) */
        ("{\"v\":1,\"d\":\"petit\",\"h\":H,\"s\":\"q1\",\"c\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\","
         "\"7\",\"8\",\"9\",\"10\",\"11\",\"12\",\"13\",\"14\",\"15\",\"16\",\"17\"]}"),
        /* commune search qualifiers: a département, a région or a postal code, nothing else */
        "{\"v\":1,\"d\":\"petit\",\"h\":H,\"s\":\"q1\",\"q\":93}",
        "{\"v\":1,\"d\":\"petit\",\"h\":H,\"s\":\"q1\",\"q\":\"x93\"}",
        "{\"v\":1,\"d\":\"petit\",\"h\":H,\"s\":\"q1\",\"q\":\"d\"}",
        "{\"v\":1,\"d\":\"petit\",\"h\":H,\"s\":\"q1\",\"q\":\"p1230\"}",
        "{\"v\":1,\"d\":\"petit\",\"h\":H,\"s\":\"q1\",\"q\":\"d9999\"}",
        "{\"v\":1,\"d\":\"petit\",\"h\":H,\"s\":\"q1\",\"u\":{\"etapes.engagement\":3}}",
        "{\"v\":1,\"d\":\"petit\",\"h\":H,\"s\":\"q1\",\"k\":[]}",
        "{\"v\":1,\"d\":\"petit\",\"h\":H,\"s\":\"q1\",\"n\":true}",
        "{\"v\":1,\"d\":\"petit\",\"h\":H,\"s\":\"q1\",\"j\":{}}",
        "{\"v\":1,\"d\":\"petit\",\"h\":H,\"s\":\"q1\",\"j\":[\"2026-12-03\"]}",
        "{\"v\":1,\"d\":\"petit\",\"h\":H,\"s\":\"q1\",\"j\":[-1]}",
        "{\"v\":1,\"d\":\"petit\",\"h\":H,\"s\":\"q1\",\"j\":[1.5]}",
        "{\"v\":1,\"d\":\"petit\",\"h\":H,\"s\":\"q1\",\"j\":[99999999]}",
        "{\"v\":1,\"d\":\"petit\",\"h\":H,\"s\":\"q1\",\"g\":1}",
        "{\"v\":1,\"d\":\"petit\",\"h\":H,\"s\":\"q1\",\"o\":\"oui\"}",
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(bad); i++) {
        fb_buf_t text;
        fb_buf_init(&text, 4096);
        for (const char *p = bad[i]; *p; p++) {
            if (*p == 'H')
                ASSERT_OK(fb_buf_puts(&text, good_h));
            else
                ASSERT_OK(fb_buf_append(&text, p, 1));
        }
        json_error_t jerr;
        json_t *s = json_loads(fb_buf_str(&text), JSON_DECODE_ANY, &jerr);
        ASSERT_NOT_NULL(s);
        /* Outputs that hold something before the call: the engine must set them to NULL. */
        json_t *ns0 = json_object(), *ef0 = json_array();
        json_t *ns = ns0, *ef = ef0;
        int rc = fb_engine_step(d, s, &ev, &env, &ns, &ef);
        if (rc != FB_EINVAL)
            FB_TEST_FAIL("session %s: step returned %d", fb_buf_str(&text), rc);
        ASSERT_NULL(ns);
        ASSERT_NULL(ef);
        json_decref(ns0);
        json_decref(ef0);
        json_decref(s);
        fb_buf_free(&text);
    }
    /* malformed events and arguments */
    json_t *ns, *ef;
    fb_event_t no_text = {FB_EVENT_MESSAGE, NULL, NULL, NULL};
    fb_event_t no_choice = {FB_EVENT_CHOICE, NULL, NULL, NULL};
    fb_event_t no_timer = {FB_EVENT_TIMER, NULL, NULL, NULL};
    fb_event_t bad_kind = {(fb_event_kind_t)42, "x", "x", "x"};
    ASSERT_EQ(fb_engine_step(d, NULL, &no_text, &env, &ns, &ef), FB_EINVAL);
    ASSERT_EQ(fb_engine_step(d, NULL, &no_choice, &env, &ns, &ef), FB_EINVAL);
    ASSERT_EQ(fb_engine_step(d, NULL, &no_timer, &env, &ns, &ef), FB_EINVAL);
    ASSERT_EQ(fb_engine_step(d, NULL, &bad_kind, &env, &ns, &ef), FB_EINVAL);
    ASSERT_EQ(fb_engine_step(d, NULL, NULL, &env, &ns, &ef), FB_EINVAL);
    ASSERT_EQ(fb_engine_step(d, NULL, &ev, NULL, &ns, &ef), FB_EINVAL);
    ASSERT_EQ(fb_engine_step(NULL, NULL, &ev, &env, &ns, &ef), FB_EINVAL);
    ASSERT_NULL(ns);
    ASSERT_NULL(ef);
    /* unknown members are tolerated, and a JSON null session is no session */
    json_t *ok = json_pack("{s:i, s:s, s:s, s:s, s:s}", "v", 1, "d", "petit", "h",
                           fb_dialog_hash(d), "s", "q1", "futur", "ignoré");
    ASSERT_OK(fb_engine_step(d, ok, &ev, &env, &ns, &ef));
    json_decref(ns);
    json_decref(ef);
    json_decref(ok);
    ASSERT_OK(fb_engine_step(d, json_null(), &ev, &env, &ns, &ef));
    ASSERT_STR_EQ(json_string_value(json_object_get(ns, "s")), "q1");
    json_decref(ns);
    json_decref(ef);
    fb_free(good_h);
    fb_dialog_unref(d);
    return 0;
}

/* Any text gets a polite answer; nothing a user types reaches HTML unescaped. */
TEST_IMPL(machine_hostile_text)
{
    struct conv c;
    conv_init(&c, "complet.yaml", 1);
    size_t big = 1u << 20;
    char *huge = fb_malloc(big + 1);
    memset(huge, 'a', big);
    huge[big] = '\0';
    static const char *const hostile[] = {
        "",
        " ",
        "\xff\xfe\xfd",
        "\x01\x02\x03\x1b[31m",
        "<script>alert(1)</script>",
        "{{ commune }}",
        "{% pour x dans y %}",
        "%s%s%n",
        "\xc3",
        "é\xcc\x81\xe2\x80\xae",
    };
    event(&c, FB_EVENT_START);
    for (int pass = 0; pass < 3; pass++) {
        for (size_t i = 0; i < FB_ARRAY_SIZE(hostile) + 1; i++) {
            const char *t = i < FB_ARRAY_SIZE(hostile) ? hostile[i] : huge;
            if (json_is_true(json_object_get(c.session, "x")))
                event(&c, FB_EVENT_HANDBACK);
            say(&c, t);
            ASSERT_GT(json_array_size(c.effects), 0);
            ASSERT_GT(c.said.len, 0);
            ASSERT_NULL(strstr(fb_buf_str(&c.html), "<script"));
            ASSERT_NULL(strstr(fb_buf_str(&c.html), "\x1b"));
        }
        /* move to another question type and do it again */
        say(&c, pass == 0 ? "Lyon" : "12 ha");
    }
    ASSERT_STR_EQ(state(&c), "usage");
    /* a text answer: stored as typed (control characters dropped), always escaped in HTML */
    say(&c, "autre");
    say(&c, "<img src=x onerror=alert(1)> \"guillemets\" & 'apostrophes'");
    ASSERT_STR_EQ(state(&c), "proprietaire");
    say(&c, "mes données");
    ASSERT(strstr(fb_buf_str(&c.html), "&lt;img src=x onerror=alert(1)&gt; &quot;guillemets&quot; "
                                       "&amp; &#39;apostrophes&#39;"));
    ASSERT_NULL(strstr(fb_buf_str(&c.html), "<img"));
    fb_free(huge);
    conv_free(&c);
    return 0;
}

/* Twelve answered questions make a session well under 1 KiB. */
TEST_IMPL(machine_session_size)
{
    struct conv c;
    conv_init(&c, "douze.yaml", 1);
    event(&c, FB_EVENT_START);
    static const char *const answers[] = {
        "Saint-Étienne", "2,5 ha",      "industriel",     "un propriétaire privé",
        "oui",           "3",           "dégradé",        "logements et activités",
        "mars 2027",     "1,2 million", "je ne sais pas", "La communauté de communes",
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(answers); i++)
        say(&c, answers[i]);
    ASSERT_STR_EQ(state(&c), "fin");
    ASSERT_EQ(json_object_size(json_object_get(c.session, "a")), 12);
    char *s = json_dumps(c.session, JSON_COMPACT);
    size_t len = strlen(s);
    fprintf(stderr, "# session after 12 answers: %zu bytes: %s\n", len, s);
    ASSERT_LT(len, 700);
    free(s);
    conv_free(&c);
    return 0;
}

/* Rough speed of the step on one core, printed (the real figure comes from bench/). */
TEST_IMPL(machine_many_rounds)
{
    struct conv c;
    conv_init(&c, "petit.yaml", 0);
    static const char *const script[] = {"friche", "aide", "oui",       "beaucoup",     "3",
                                         "retour", "4",    "Un projet", "où en suis-je"};
    /* Many conversations in a row on one dialog: nothing accumulates or leaks between them
     * (speed is measured by `make bench`, not here). */
    size_t steps = 0;
    for (int round = 0; round < 300; round++) {
        json_t *session = NULL;
        for (size_t i = 0; i <= FB_ARRAY_SIZE(script); i++) {
            fb_event_t ev = {i == 0 ? FB_EVENT_START : FB_EVENT_MESSAGE,
                             i == 0 ? NULL : script[i - 1], NULL, NULL};
            json_t *ns, *ef;
            ASSERT_OK(fb_engine_step(c.d, session, &ev, &c.env, &ns, &ef));
            json_decref(session);
            json_decref(ef);
            session = ns;
            steps++;
        }
        json_decref(session);
    }
    ASSERT_EQ(steps, 300 * (FB_ARRAY_SIZE(script) + 1));
    conv_free(&c);
    return 0;
}

/* ---- catalogue items selected by `si:`, and the `avis` effect -------------------------------- */

/* A catalogue's name lists its items whose `si:` holds; the roadmap skips the others. */
TEST_IMPL(machine_catalogue_si)
{
    struct conv c;
    conv_init(&c, "territoire.yaml", 0);
    event(&c, FB_EVENT_START);
    say(&c, "montagne");
    say(&c, "500 m2");
    ASSERT_SAYS(&c, "Contacts :");
    ASSERT_SAYS(&c, "Service pour tous");
    ASSERT_NOT_SAYS(&c, "Service du littoral");
    ASSERT_NOT_SAYS(&c, "Service des grands sites");
    ASSERT_SAYS(&c, "Étapes : Étape commune\n");
    ASSERT_NOT_SAYS(&c, "Étape côtière");
    choose(&c, "passer");
    ASSERT_STR_EQ(state(&c), "fin");
    ASSERT_ACTIONS(&c, "[{\"type\":\"step\",\"item\":\"etapes.commun\",\"status\":\"a_faire\"},"
                       "{\"type\":\"end\"},{\"type\":\"stat\",\"name\":\"site_completed\"},"
                       "{\"type\":\"cancel\",\"id\":\"relance\"}]");

    /* the other zone, a large site: both conditional items, the coastal step in the roadmap */
    event(&c, FB_EVENT_START);
    say(&c, "littoral");
    say(&c, "2 ha");
    ASSERT_SAYS(&c, "Service du littoral");
    ASSERT_SAYS(&c, "Service pour tous");
    ASSERT_SAYS(&c, "Service des grands sites");
    ASSERT_SAYS(&c, "Étapes : Étape commune, Étape côtière");
    /* "je ne sais pas" makes `connu(surface)` false: the large-site item goes away */
    say(&c, "retour");
    say(&c, "je ne sais pas");
    ASSERT_NOT_SAYS(&c, "Service des grands sites");
    ASSERT_SAYS(&c, "Service du littoral");
    conv_free(&c);
    return 0;
}

/* The `avis` effect of the last step, or NULL. */
static const json_t *avis_of(const struct conv *c)
{
    const json_t *found = NULL;
    for (size_t i = 0; i < json_array_size(c->effects); i++) {
        const json_t *e = json_array_get(c->effects, i);
        if (strcmp(json_string_value(json_object_get(e, "type")), "avis") == 0) {
            ASSERT_NULL(found); /* one at most */
            found = e;
        }
    }
    return found;
}

/* `avis:` on a message: the rating and the comment (not a "no comment"), only when rated. */
TEST_IMPL(machine_avis)
{
    struct conv c;
    conv_init(&c, "territoire.yaml", 0);
    event(&c, FB_EVENT_START);
    say(&c, "littoral");
    say(&c, "100");
    say(&c, "4");
    ASSERT_ACTIONS(&c, "[]");
    say(&c, "Très <b>utile</b>");
    const json_t *a = avis_of(&c);
    ASSERT_NOT_NULL(a);
    ASSERT_EQ(json_integer_value(json_object_get(a, "note")), 4);
    ASSERT_STR_EQ(json_string_value(json_object_get(a, "commentaire")), "Très <b>utile</b>");
    ASSERT_EQ(json_object_size(a), 3);
    ASSERT_SAYS(&c, "Merci.");
    /* after the final state: no second avis */
    say(&c, "bonjour");
    ASSERT_NULL(avis_of(&c));

    /* "Non merci" as a comment is no comment; the rating alone is still sent */
    event(&c, FB_EVENT_START);
    say(&c, "littoral");
    say(&c, "100");
    say(&c, "5");
    say(&c, "Non merci");
    a = avis_of(&c);
    ASSERT_NOT_NULL(a);
    ASSERT_EQ(json_integer_value(json_object_get(a, "note")), 5);
    ASSERT_NULL(json_object_get(a, "commentaire"));

    /* "je ne sais pas" is no comment either */
    event(&c, FB_EVENT_START);
    say(&c, "littoral");
    say(&c, "100");
    say(&c, "1");
    say(&c, "je ne sais pas");
    a = avis_of(&c);
    ASSERT_NOT_NULL(a);
    ASSERT_EQ(json_integer_value(json_object_get(a, "note")), 1);
    ASSERT_NULL(json_object_get(a, "commentaire"));

    /* no rating, no avis */
    event(&c, FB_EVENT_START);
    say(&c, "littoral");
    say(&c, "100");
    choose(&c, "passer");
    ASSERT_STR_EQ(state(&c), "fin");
    ASSERT_NULL(avis_of(&c));
    conv_free(&c);
    return 0;
}

/* ---- the step list in the conversation: "mes étapes", "étape 2 faite" ------------------------ */

/* complet.yaml up to its final state (roadmap: 4 steps, all "à faire"). */
static void complet_ended(struct conv *c)
{
    conv_init(c, "complet.yaml", 1);
    event(c, FB_EVENT_START);
    say(c, "lyon");
    say(c, "1,2 ha");
    say(c, "une usine");
    say(c, "oui");
    say(c, "2");
    say(c, "1 et 3");
    say(c, "mars 2027");
    ASSERT_STR_EQ(state(c), "fin");
}

/* The date the session holds for step `ref` ("YYYY-MM-DD", from `j`, parallel to `r`), or NULL
 * (a static buffer). */
static const char *step_day(const struct conv *c, const char *ref)
{
    static char buf[16];
    const json_t *r = json_object_get(c->session, "r"), *j = json_object_get(c->session, "j");
    for (size_t i = 0; i < json_array_size(r); i++) {
        if (strcmp(json_string_value(json_array_get(r, i)), ref) != 0)
            continue;
        json_int_t day = json_integer_value(json_array_get(j, i));
        if (day <= 0)
            return NULL;
        time_t t = (time_t)day * 86400;
        struct tm tm;
        ASSERT_NOT_NULL(gmtime_r(&t, &tm));
        strftime(buf, sizeof(buf), "%Y-%m-%d", &tm);
        return buf;
    }
    return NULL;
}

static const char *step_status(const struct conv *c, const char *ref)
{
    return json_string_value(json_object_get(json_object_get(c->session, "u"), ref));
}

TEST_IMPL(machine_steps_list_and_change)
{
    struct conv c;
    complet_ended(&c);
    say(&c, "mes étapes");
    ASSERT_SAID(&c,
                "Vos étapes et leur statut :\n"
                "1. Délibérer sur le projet : à faire\n"
                "2. Assurer la maîtrise foncière : à faire\n"
                "3. Faire un diagnostic de pollution : à faire\n"
                "4. Lancer une étude de programmation : à faire\n\n"
                "Pour changer le statut d'une étape, écrivez son numéro et son nouveau "
                "statut, par exemple « étape 2 faite », « étape 3 en cours », « étape 4 "
                "bloquée », « étape 1 pas concernée » ou « étape 5 déjà faite ». « Faite » : vous "
                "l'avez terminée depuis votre feuille de route ; « déjà faite » : elle l'était "
                "avant.");
    ASSERT(strstr(fb_buf_str(&c.html), "<p>Vos étapes et leur statut :</p><ol><li>Délibérer sur "
                                       "le projet : à faire</li>"));
    ASSERT_CHOICES(&c,
                   "[{\"id\":\"etape_1\",\"label\":\"Étape 1\"},{\"id\":\"etape_2\",\"label\":"
                   "\"Étape 2\"},{\"id\":\"etape_3\",\"label\":\"Étape 3\"},{\"id\":\"etape_4\","
                   "\"label\":\"Étape 4\"}]");
    ASSERT_ACTIONS(&c, "[]");
    /* the words for each status, and the ways of writing "étape N" */
    static const struct {
        const char *text, *ref, *status, *label;
    } cases[] = {
        {"J'ai terminé l'étape 1", "etapes.engagement", "faite", "faite"},
        {"bloquée pour l'étape 3", "etapes.diagnostic_pollution", "bloquee", "bloquée"},
        {"étape 2 faite", "etapes.maitrise_fonciere", "faite", "faite"},
        {"L'étape 3 est en cours", "etapes.diagnostic_pollution", "en_cours", "en cours"},
        {"etape n°4 : bloquée", "etapes.etude_programmation", "bloquee", "bloquée"},
        {"Étape 1 pas concernée, merci", "etapes.engagement", "non_pertinente", "non pertinente"},
        {"ÉTAPE 2 DÉJÀ FAITE", "etapes.maitrise_fonciere", "deja_faite", "déjà faite"},
        {"pour l'étape 3 c'est terminé maintenant", "etapes.diagnostic_pollution", "faite",
         "faite"},
        {"étape 4 à faire", "etapes.etude_programmation", "a_faire", "à faire"},
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(cases); i++) {
        say(&c, cases[i].text);
        char *want = fb_asprintf("[{\"type\":\"step\",\"item\":\"%s\",\"status\":\"%s\"},"
                                 "{\"type\":\"stat\",\"name\":\"step_updated\"},"
                                 "{\"type\":\"schedule\",\"id\":\"relance\",\"after\":3628800,"
                                 "\"reason\":\"suivi\"}]",
                                 cases[i].ref, cases[i].status);
        ASSERT_ACTIONS(&c, want);
        fb_free(want);
        char *phrase = fb_asprintf("est maintenant « %s ».", cases[i].label);
        ASSERT_SAYS(&c, phrase);
        fb_free(phrase);
        ASSERT_STR_EQ(step_day(&c, cases[i].ref), "2026-11-30");
    }
    ASSERT_SAYS(&c, "C'est noté : l'étape 4, « Lancer une étude de programmation », est "
                    "maintenant « à faire ».");
    /* back to "à faire": no status stored, the date of the change is */
    ASSERT_NULL(step_status(&c, "etapes.etude_programmation"));
    ASSERT_STR_EQ(step_status(&c, "etapes.engagement"), "non_pertinente");
    /* a blocked step suggests an advisor */
    say(&c, "étape 4 bloquée");
    ASSERT_SAYS(&c, "écrivez « conseiller »");

    /* two days later (the 2nd of December: "2 décembre"), then the 1st of a month ("1er") */
    c.env.now = NOW + 2 * 86400;
    say(&c, "étape 1 en cours");
    ASSERT_STR_EQ(step_day(&c, "etapes.engagement"), "2026-12-02");
    say(&c, "où en suis-je");
    ASSERT_SAYS(&c, "Votre feuille de route :\n"
                    "1. Délibérer sur le projet : en cours (noté le 2 décembre 2026)\n"
                    "2. Assurer la maîtrise foncière : déjà faite (noté le 30 novembre 2026)\n"
                    "3. Faire un diagnostic de pollution : faite (noté le 30 novembre 2026)\n"
                    "4. Lancer une étude de programmation : bloquée (noté le 30 novembre 2026)\n\n"
                    "Pour changer le statut d'une étape");
    c.env.now = NOW + 32 * 86400; /* 2027-01-01 */
    say(&c, "étape 1 faite");
    ASSERT_STR_EQ(step_day(&c, "etapes.engagement"), "2027-01-01");
    say(&c, "mes étapes");
    ASSERT_SAYS(&c, "1. Délibérer sur le projet : faite (noté le 1er janvier 2027)");

    /* a number that is not a step: the list again, nothing changes */
    say(&c, "étape 5 faite");
    ASSERT_SAYS(&c, "Je ne trouve pas cette étape dans votre feuille de route.\n"
                    "1. Délibérer sur le projet : faite");
    ASSERT_ACTIONS(&c, "[]");
    say(&c, "étape 0 faite");
    ASSERT_SAYS(&c, "Je ne trouve pas cette étape");
    /* not about a step: the usual note */
    say(&c, "l'étape suivante");
    ASSERT_SAYS(&c, "Le questionnaire est terminé.");
    say(&c, "étape 1234 faite");
    ASSERT_SAYS(&c, "Le questionnaire est terminé.");
    conv_free(&c);
    return 0;
}

TEST_IMPL(machine_steps_pick)
{
    struct conv c;
    complet_ended(&c);
    /* a step without a status: the six statuses are offered */
    say(&c, "étape 3");
    ASSERT_SAID(&c, "Quel est le statut de l'étape 3, « Faire un diagnostic de pollution » ? "
                    "Aujourd'hui : à faire.\n\n1. À faire\n2. En cours\n3. Bloquée\n4. Faite "
                    "(terminée depuis la feuille de route)\n5. Pas concernée\n6. Déjà faite "
                    "(avant la feuille de route)");
    ASSERT_CHOICES(&c, "[{\"id\":\"a_faire\",\"label\":\"À faire\"},{\"id\":\"en_cours\",\"label\":"
                       "\"En cours\"},{\"id\":\"bloquee\",\"label\":\"Bloquée\"},{\"id\":\"faite\","
                       "\"label\":\"Faite (terminée depuis la feuille de "
                       "route)\"},{\"id\":\"non_pertinente\",\"label\":\"Pas "
                       "concernée\"},{\"id\":\"deja_faite\",\"label\":\"Déjà faite (avant la "
                       "feuille de route)\"}]");
    ASSERT_ACTIONS(&c, "[]");
    ASSERT_STR_EQ(json_string_value(json_object_get(c.session, "k")),
                  "etapes.diagnostic_pollution");
    ASSERT(json_is_true(json_object_get(c.session, "g")));
    /* not understood: asked again, nothing changes */
    say(&c, "euh");
    ASSERT_SAYS(&c, "Je n'ai pas compris votre réponse.\n\n1. À faire");
    ASSERT_ACTIONS(&c, "[]");
    choose(&c, "deja_faite");
    ASSERT_SAID(&c, "C'est noté : l'étape 3, « Faire un diagnostic de pollution », est maintenant "
                    "« déjà faite ».");
    ASSERT_ACTIONS(&c, "[{\"type\":\"step\",\"item\":\"etapes.diagnostic_pollution\",\"status\":"
                       "\"deja_faite\"},{\"type\":\"stat\",\"name\":\"step_updated\"},"
                       "{\"type\":\"schedule\",\"id\":\"relance\",\"after\":3628800,"
                       "\"reason\":\"suivi\"}]");
    ASSERT_NULL(json_object_get(c.session, "k"));
    ASSERT_NULL(json_object_get(c.session, "g"));
    /* a button of the list, then a status typed */
    choose(&c, "etape_2");
    ASSERT_SAYS(&c, "Quel est le statut de l'étape 2, « Assurer la maîtrise foncière » ?");
    say(&c, "pas concernée");
    ASSERT_STR_EQ(step_status(&c, "etapes.maitrise_fonciere"), "non_pertinente");
    /* a step picked, then another change written in full: the latter wins, nothing pending */
    choose(&c, "etape_1");
    say(&c, "étape 4 en cours");
    ASSERT_STR_EQ(step_status(&c, "etapes.etude_programmation"), "en_cours");
    ASSERT_NULL(step_status(&c, "etapes.engagement"));
    ASSERT_NULL(json_object_get(c.session, "k"));
    /* "étape 2 n'importe quoi": the status is asked */
    say(&c, "étape 2 bientôt peut-être");
    ASSERT_SAYS(&c, "Quel est le statut de l'étape 2");
    ASSERT_ACTIONS(&c, "[]");
    /* a button id of a step that does not exist, or malformed: nothing is picked */
    choose(&c, "etape_9");
    ASSERT_SAYS(&c, "Je ne trouve pas cette étape");
    ASSERT_NULL(json_object_get(c.session, "k"));
    choose(&c, "etape_x");
    ASSERT_SAYS(&c, "Le questionnaire est terminé.");
    /* "mes étapes" drops a pending question */
    say(&c, "étape 1");
    say(&c, "mes étapes");
    ASSERT_NULL(json_object_get(c.session, "k"));
    say(&c, "faite");
    ASSERT_SAYS(&c, "Le questionnaire est terminé.");
    ASSERT_ACTIONS(&c, "[]");

    /* the reminder's question keeps its five answers ("plus tard"), and "étape N ..." works
     * while it is pending */
    c.env.now = NOW + 3628800;
    event(&c, FB_EVENT_TIMER);
    ASSERT_SAYS(&c, "Où en êtes-vous de l'étape « Délibérer sur le projet » ?");
    ASSERT_NULL(json_object_get(c.session, "g"));
    say(&c, "plus tard");
    ASSERT_SAID(&c, "Entendu, je vous relancerai plus tard.");
    event(&c, FB_EVENT_TIMER);
    say(&c, "étape 1 faite");
    ASSERT_SAYS(&c, "l'étape 1, « Délibérer sur le projet », est maintenant « faite »");
    ASSERT_NULL(json_object_get(c.session, "k"));
    ASSERT_STR_EQ(step_day(&c, "etapes.engagement"), "2027-01-11");
    conv_free(&c);
    return 0;
}

/* complet.yaml ended, then its first follow-up reminder: "Où en êtes-vous de l'étape 1 ?" */
static void complet_reminded(struct conv *c)
{
    c->env.now += 3628800;
    event(c, FB_EVENT_TIMER);
    ASSERT_SAYS(c, "Où en êtes-vous de l'étape « Délibérer sur le projet » ?");
}

#define SCHEDULE(after)                                                                            \
    "[{\"type\":\"schedule\",\"id\":\"relance\",\"after\":" #after ",\"reason\":\"suivi\"}]"

TEST_IMPL(machine_steps_later_with_delay)
{
    struct conv c;
    complet_ended(&c);
    /* "plus tard" with a delay: the next reminder after it, the step unchanged */
    complet_reminded(&c);
    say(&c, "plus tard dans 3 mois");
    ASSERT_SAID(&c, "Entendu, je vous relancerai dans 3 mois.");
    ASSERT_ACTIONS(&c, SCHEDULE(7776000));
    ASSERT_NULL(json_object_get(c.session, "k"));
    ASSERT_NULL(step_status(&c, "etapes.engagement")); /* still à faire */

    static const struct {
        const char *text, *said, *actions;
    } cases[] = {
        {"dans 2 semaines", "Entendu, je vous relancerai dans 2 semaines.", SCHEDULE(1209600)},
        {"Relancez-moi dans un mois", "Entendu, je vous relancerai dans 1 mois.",
         SCHEDULE(2592000)},
        {"rappelez-moi dans 10 jours", "Entendu, je vous relancerai dans 10 jours.",
         SCHEDULE(864000)},
        {"plus tard 1 jour", "Entendu, je vous relancerai dans 1 jour.", SCHEDULE(86400)},
        {"dans un an", "Entendu, je vous relancerai dans 1 an.", SCHEDULE(31536000)},
        /* capped at one year, said "12 mois" */
        {"dans 500 ans", "Entendu, je vous relancerai dans 12 mois.", SCHEDULE(31536000)},
        /* a number that is no delay: plain "plus tard", the dialog's six weeks */
        {"plus tard 0 jour", "Entendu, je vous relancerai plus tard.", SCHEDULE(3628800)},
        {"dans 3", "Entendu, je vous relancerai plus tard.", SCHEDULE(3628800)},
        {"plus tard dans 3 heures", "Entendu, je vous relancerai plus tard.", SCHEDULE(3628800)},
        /* plain "plus tard", as before */
        {"plus tard", "Entendu, je vous relancerai plus tard.", SCHEDULE(3628800)},
        {"plus tard, un jour", "Entendu, je vous relancerai plus tard.", SCHEDULE(3628800)},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        complet_reminded(&c);
        say(&c, cases[i].text);
        ASSERT_SAID(&c, cases[i].said);
        ASSERT_ACTIONS(&c, cases[i].actions);
        ASSERT_NULL(step_status(&c, "etapes.engagement")); /* still à faire */
    }
    /* the button: plain "plus tard" */
    complet_reminded(&c);
    choose(&c, "plus_tard");
    ASSERT_SAID(&c, "Entendu, je vous relancerai plus tard.");
    ASSERT_ACTIONS(&c, SCHEDULE(3628800));
    /* a status still wins over a delay that follows it */
    complet_reminded(&c);
    say(&c, "c'est fait");
    ASSERT_STR_EQ(step_status(&c, "etapes.engagement"), "faite");
    /* no reminder question pending: "dans 3 mois" is no answer to anything */
    say(&c, "dans 3 mois");
    ASSERT_SAYS(&c, "Le questionnaire est terminé.");
    ASSERT_ACTIONS(&c, "[]");
    /* the step the user picked offers the six statuses, not "plus tard": not understood */
    say(&c, "étape 2");
    ASSERT_SAYS(&c, "Quel est le statut de l'étape 2");
    say(&c, "dans 3 mois");
    ASSERT_SAYS(&c, "Je n'ai pas compris votre réponse.");
    ASSERT_ACTIONS(&c, "[]");
    conv_free(&c);
    return 0;
}

TEST_IMPL(machine_steps_later_after_stop)
{
    struct conv c;
    complet_ended(&c);
    complet_reminded(&c);
    say(&c, "stop");
    ASSERT_SAYS(&c, "je ne vous enverrai plus de relances");
    /* whatever is still pending, nothing is promised nor armed after "stop" */
    say(&c, "plus tard dans 3 mois");
    ASSERT_NOT_SAYS(&c, "dans 3 mois");
    ASSERT_NULL(strstr(fb_buf_str(&c.said), "relancerai"));
    ASSERT_SAYS(&c, "je ne vous enverrai plus de relances"); /* said again, honestly */
    char *fx = actions_json(&c);
    ASSERT_NULL(strstr(fx, "schedule"));
    free(fx);
    conv_free(&c);
    return 0;
}

TEST_IMPL(machine_steps_later_text_override)
{
    char *path = fb_asprintf("%s/complet.yaml", DATA);
    FILE *f = fopen(path, "rb");
    ASSERT_NOT_NULL(f);
    fb_buf_t text;
    fb_buf_init(&text, 1u << 20);
    char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0)
        ASSERT_OK(fb_buf_append(&text, chunk, got));
    fclose(f);
    fb_free(path);
    ASSERT_OK(fb_buf_puts(&text, "\ntextes:\n  etape_plus_tard_delai: \"Promis, je reviens vers "
                                 "vous dans {{ delai }} pour « {{ etape.titre }} ».\"\n"));
    fb_buf_t errors;
    fb_buf_init(&errors, 1u << 16);
    struct conv c;
    conv_init(&c, "complet.yaml", 1);
    fb_dialog_t *d =
        fb_dialog_load_text("complet.yaml", DATA, fb_buf_str(&text), text.len, c.geo, &errors);
    if (!d)
        FB_TEST_FAIL("the override does not load:\n%s", fb_buf_str(&errors));
    fb_dialog_unref(c.d);
    c.d = d;
    event(&c, FB_EVENT_START);
    say(&c, "lyon");
    say(&c, "1,2 ha");
    say(&c, "une usine");
    say(&c, "oui");
    say(&c, "2");
    say(&c, "1 et 3");
    say(&c, "mars 2027");
    ASSERT_STR_EQ(state(&c), "fin");
    complet_reminded(&c);
    say(&c, "dans quinze jours");
    ASSERT_SAID(&c, "Promis, je reviens vers vous dans 15 jours pour « Délibérer sur le projet ».");
    ASSERT_ACTIONS(&c, SCHEDULE(1296000));
    fb_buf_free(&errors);
    fb_buf_free(&text);
    conv_free(&c);
    return 0;
}

TEST_IMPL(machine_steps_before_the_end)
{
    struct conv c;
    conv_init(&c, "complet.yaml", 1);
    event(&c, FB_EVENT_START);
    say(&c, "lyon");
    /* neither an answer nor a failure: the steps come at the end */
    say(&c, "étape 2 faite");
    ASSERT_SAID(&c, "Votre feuille de route n'est pas encore enregistrée : elle le sera à la fin "
                    "des questions. Vous pourrez alors suivre chaque étape et changer son statut "
                    "(« mes étapes »).\n--\nQuelle est la surface du site ?");
    ASSERT_ACTIONS(&c, "[]");
    ASSERT_NULL(json_object_get(c.session, "f"));
    say(&c, "mes étapes");
    ASSERT_SAYS(&c, "n'est pas encore enregistrée");
    ASSERT_SAYS(&c, "Quelle est la surface du site ?");
    conv_free(&c);

    /* in a free-text question, "l'étape 2 est faite" is an answer like any other */
    conv_init(&c, "territoire.yaml", 0);
    event(&c, FB_EVENT_START);
    say(&c, "littoral");
    say(&c, "100");
    say(&c, "4");
    say(&c, "l'étape 2 est faite");
    ASSERT_STR_EQ(json_string_value(answer(&c, "commentaire")), "l'étape 2 est faite");
    conv_free(&c);
    return 0;
}

/* Dates of changes read back: a malformed date is dropped (no "noté le"), others are kept. */
TEST_IMPL(machine_steps_session_dates)
{
    struct conv c;
    complet_ended(&c);
    /* `j` runs parallel to `r`, whatever its order and unknown items: 20811 is 2026-12-24 */
    json_t *r =
        json_pack("[s, s, s, s, s]", "etapes.inconnue", "etapes.maitrise_fonciere",
                  "etapes.engagement", "etapes.etude_programmation", "etapes.diagnostic_pollution");
    json_t *j = json_pack("[i, i, i, i]", 20000, 20811, 0, 20812); /* shorter: the last is 0 */
    json_object_set_new(c.session, "r", r);
    json_object_set_new(c.session, "j", j);
    say(&c, "mes étapes");
    ASSERT_SAYS(&c, "1. Délibérer sur le projet : à faire\n"
                    "2. Assurer la maîtrise foncière : à faire (noté le 24 décembre 2026)\n"
                    "3. Faire un diagnostic de pollution : à faire\n"
                    "4. Lancer une étude de programmation : à faire (noté le 25 décembre 2026)");
    say(&c, "étape 3 faite");
    char *dump = json_dumps(json_object_get(c.session, "j"), JSON_COMPACT);
    ASSERT_STR_EQ(dump, "[0,20811,20787,20812]"); /* in `r`'s (catalogue) order */
    free(dump);
    ASSERT_STR_EQ(step_day(&c, "etapes.diagnostic_pollution"), "2026-11-30");
    /* "retour" from the end reopens the questions: the stored steps and their dates go */
    say(&c, "retour");
    ASSERT_NULL(json_object_get(c.session, "j"));
    ASSERT_NULL(json_object_get(c.session, "r"));
    conv_free(&c);
    return 0;
}

/* One `avis` per conversation: going back and passing the thank-you again emits none. */
TEST_IMPL(machine_avis_once)
{
    struct conv c;
    conv_init(&c, "territoire.yaml", 0);
    event(&c, FB_EVENT_START);
    say(&c, "littoral");
    say(&c, "100");
    say(&c, "4");
    say(&c, "Bien");
    ASSERT_NOT_NULL(avis_of(&c));
    ASSERT(json_is_true(json_object_get(c.session, "o")));
    say(&c, "retour"); /* from the end, back to the comment */
    ASSERT_SAID(&c, "Un commentaire ?");
    say(&c, "Très bien finalement");
    ASSERT_SAYS(&c, "Merci.");
    ASSERT_NULL(avis_of(&c));
    say(&c, "retour");
    say(&c, "retour");
    ASSERT_SAYS(&c, "Votre note ?");
    say(&c, "1");
    say(&c, "non");
    ASSERT_NULL(avis_of(&c));
    ASSERT(json_is_true(json_object_get(c.session, "o")));
    /* a new conversation ("recommencer") may be rated */
    say(&c, "recommencer");
    ASSERT_NULL(json_object_get(c.session, "o"));
    say(&c, "montagne");
    say(&c, "100");
    say(&c, "2");
    say(&c, "non");
    ASSERT_NOT_NULL(avis_of(&c));
    conv_free(&c);
    return 0;
}

/* ---- `apres_fin`: what is asked once the user has had time to read (issue #16) ------------- */

/* apres_fin.yaml up to the end of path `which` ("suivi" or "simple"). */
static void apres_fin_ended(struct conv *c, const char *which)
{
    event(c, FB_EVENT_START);
    choose(c, which);
    ASSERT_SAYS(c, "Étapes :");
    ASSERT_NOT_SAYS(c, "Votre note ?"); /* not in the same breath as the roadmap */
    ASSERT(json_is_true(json_object_get(c->session, "e")));
    ASSERT_NULL(json_object_get(c->session, "z"));
    ASSERT_NULL(json_object_get(c->session, "b"));
}

/* The user's next message gets its answer, then the question, once; the answers end quietly. */
TEST_IMPL(machine_after_end_next_message)
{
    struct conv c;
    conv_init(&c, "apres_fin.yaml", 0);
    apres_fin_ended(&c, "suivi");
    say(&c, "merci");
    ASSERT_SAYS(&c, "Le questionnaire est terminé");
    ASSERT_SAYS(&c, "--\nVotre note ?\n\n1. 1");
    ASSERT_STR_EQ(state(&c), "note");
    ASSERT_STR_EQ(json_string_value(json_object_get(c.session, "z")), "fin_suivi");
    ASSERT(json_is_true(json_object_get(c.session, "b")));
    ASSERT(json_is_true(json_object_get(c.session, "e")));
    ASSERT_NOT_NULL(json_object_get(c.session, "r")); /* the stored steps stay */
    ASSERT_ACTIONS(&c, "[]");                         /* no reminder of its own */
    /* « aide » explains the question and keeps it */
    say(&c, "aide");
    ASSERT_SAYS(&c, "Une note de 1 à 5.");
    ASSERT_SAYS(&c, "Votre note ?");
    ASSERT_STR_EQ(state(&c), "note");
    say(&c, "4");
    ASSERT_SAID(&c, "Un commentaire ?");
    say(&c, "Clair");
    const json_t *a = avis_of(&c);
    ASSERT_NOT_NULL(a);
    ASSERT_EQ(json_integer_value(json_object_get(a, "note")), 4);
    ASSERT_STR_EQ(json_string_value(json_object_get(a, "commentaire")), "Clair");
    ASSERT_SAID(&c, "Merci."); /* back at the end quietly: no second end, no `site_completed` */
    ASSERT_ACTIONS(&c, "[{\"type\":\"avis\",\"note\":4,\"commentaire\":\"Clair\"}]");
    ASSERT_STR_EQ(state(&c), "fin_suivi");
    ASSERT_NULL(json_object_get(c.session, "z"));
    /* « retour » never goes into them: the path holds the guided part's question only */
    ASSERT_EQ(json_array_size(json_object_get(c.session, "p")), 1);
    ASSERT(json_is_true(json_object_get(c.session, "e")));
    /* never twice */
    say(&c, "merci");
    ASSERT_NOT_SAYS(&c, "Votre note ?");
    event(&c, FB_EVENT_TIMER);
    ASSERT_SAYS(&c, "Première étape");
    ASSERT_NOT_SAYS(&c, "Votre note ?");

    /* a command while it waits: the command acts, the question is left and not asked again */
    apres_fin_ended(&c, "suivi");
    say(&c, "où en suis-je");
    ASSERT_SAYS(&c, "Votre note ?");
    say(&c, "mes étapes");
    ASSERT_SAYS(&c, "1. Première étape : à faire");
    ASSERT_NOT_SAYS(&c, "Votre note ?");
    ASSERT_STR_EQ(state(&c), "fin_suivi");
    ASSERT_NULL(json_object_get(c.session, "z"));
    say(&c, "merci");
    ASSERT_NOT_SAYS(&c, "Votre note ?");

    /* a step change answers first, and leaves the question */
    apres_fin_ended(&c, "suivi");
    say(&c, "merci");
    say(&c, "étape 1 faite");
    ASSERT_ACTIONS(&c, "[{\"type\":\"step\",\"item\":\"etapes.premiere\",\"status\":\"faite\"},"
                       "{\"type\":\"stat\",\"name\":\"step_updated\"},{\"type\":\"schedule\","
                       "\"id\":\"relance\",\"after\":3628800,\"reason\":\"suivi\"}]");
    ASSERT_NULL(json_object_get(c.session, "z"));

    /* the step list's buttons first: the question waits for the next message */
    apres_fin_ended(&c, "suivi");
    say(&c, "mes étapes");
    ASSERT_NOT_SAYS(&c, "Votre note ?");
    ASSERT_NULL(json_object_get(c.session, "b"));
    say(&c, "étape 2 en cours");
    ASSERT_SAYS(&c, "est maintenant « en cours »");
    ASSERT_SAYS(&c, "Votre note ?");
    choose(&c, "passer");
    ASSERT_SAID(&c, "Entendu.");
    ASSERT_NULL(avis_of(&c));
    ASSERT_STR_EQ(state(&c), "fin_suivi");

    /* « retour » from the end reopens the questions; the next end does not ask again */
    say(&c, "retour");
    ASSERT_SAYS(&c, "Quel suivi ?");
    choose(&c, "suivi");
    say(&c, "merci");
    ASSERT_NOT_SAYS(&c, "Votre note ?");
    conv_free(&c);
    return 0;
}

/* The first reminder: one that asks about a step leaves the question for the reply to its
 * answer; a plain one carries it; a reminder while it waits drops it. */
TEST_IMPL(machine_after_end_reminder)
{
    struct conv c;
    conv_init(&c, "apres_fin.yaml", 0);
    apres_fin_ended(&c, "suivi");
    event(&c, FB_EVENT_TIMER);
    ASSERT_SAYS(&c, "Où en êtes-vous de l'étape « Première étape » ?");
    ASSERT_NOT_SAYS(&c, "Votre note ?");
    ASSERT_NULL(json_object_get(c.session, "b"));
    say(&c, "c'est en cours");
    ASSERT_SAYS(&c, "C'est noté, merci !");
    ASSERT_SAYS(&c, "Votre note ?");
    say(&c, "5");
    say(&c, "non");
    ASSERT_NOT_NULL(avis_of(&c));
    event(&c, FB_EVENT_TIMER);
    ASSERT_SAYS(&c, "Première étape");
    ASSERT_NOT_SAYS(&c, "Votre note ?");

    /* a plain follow-up carries it, counted as the reminder it is */
    apres_fin_ended(&c, "simple");
    event(&c, FB_EVENT_TIMER);
    ASSERT_SAID(&c, "Des nouvelles ?\n--\nVotre note ?\n\n1. 1\n2. 2\n3. 3\n4. 4\n5. 5\n6. Passer");
    ASSERT_ACTIONS(&c, "[{\"type\":\"stat\",\"name\":\"reminder_sent\"},{\"type\":\"schedule\","
                       "\"id\":\"relance\",\"after\":3628800,\"reason\":\"suivi\"}]");
    ASSERT_STR_EQ(state(&c), "note");
    /* the next reminder finds it unanswered: dropped, not asked again */
    event(&c, FB_EVENT_TIMER);
    ASSERT_SAID(&c, "Des nouvelles ?");
    ASSERT_STR_EQ(state(&c), "fin_simple");
    ASSERT_NULL(json_object_get(c.session, "z"));
    say(&c, "4"); /* no question pending: the end's answer */
    ASSERT_SAYS(&c, "Le questionnaire est terminé");
    ASSERT_NULL(avis_of(&c));

    /* answered after the reminder that carried it: counted once */
    apres_fin_ended(&c, "simple");
    event(&c, FB_EVENT_TIMER);
    say(&c, "2");
    say(&c, "je ne sais pas");
    ASSERT_EQ(json_integer_value(json_object_get(avis_of(&c), "note")), 2);
    ASSERT_STR_EQ(state(&c), "fin_simple");
    conv_free(&c);
    return 0;
}

/* The session fields `z` and `b`: read back as written, strict on what we never write. */
TEST_IMPL(machine_after_end_session)
{
    struct conv c;
    conv_init(&c, "apres_fin.yaml", 0);
    apres_fin_ended(&c, "suivi");
    say(&c, "merci");
    ASSERT_STR_EQ(state(&c), "note");
    say(&c, "3"); /* read back from the session: still the question after the end */
    ASSERT_SAID(&c, "Un commentaire ?");
    ASSERT_STR_EQ(json_string_value(json_object_get(c.session, "z")), "fin_suivi");

    /* `z` naming a state that is not final, or no state: not a session we wrote */
    fb_event_t ev = {FB_EVENT_MESSAGE, "bien", NULL, NULL};
    json_t *ns = NULL, *ef = NULL;
    json_t *bad = json_deep_copy(c.session);
    ASSERT_OK(json_object_set_new(bad, "z", json_string("note")));
    ASSERT_EQ(fb_engine_step(c.d, bad, &ev, &c.env, &ns, &ef), FB_EINVAL);
    ASSERT_OK(json_object_set_new(bad, "z", json_string("inconnu")));
    ASSERT_EQ(fb_engine_step(c.d, bad, &ev, &c.env, &ns, &ef), FB_EINVAL);
    ASSERT_OK(json_object_set_new(bad, "z", json_integer(1)));
    ASSERT_EQ(fb_engine_step(c.d, bad, &ev, &c.env, &ns, &ef), FB_EINVAL);
    ASSERT_OK(json_object_set_new(bad, "z", json_string("fin_suivi")));
    ASSERT_OK(json_object_set_new(bad, "b", json_string("oui")));
    ASSERT_EQ(fb_engine_step(c.d, bad, &ev, &c.env, &ns, &ef), FB_EINVAL);
    json_decref(bad);

    /* a session of an older version that asked the rating before the end (its answer is in
     * `a`): not asked again after the end */
    apres_fin_ended(&c, "suivi");
    json_t *old = json_deep_copy(c.session);
    ASSERT_OK(json_object_set_new(json_object_get(old, "a"), "note", json_string("passer")));
    json_decref(c.session);
    c.session = old;
    say(&c, "merci");
    ASSERT_NOT_SAYS(&c, "Votre note ?");
    conv_free(&c);
    return 0;
}

/* ---- the user's last messages (session `l`, for the advisors' summary) ---------------------- */

/* The session's `l` as compact JSON ("null" when absent; freed by the macro). */
static char *last_json(const struct conv *c)
{
    char *s = json_dumps(json_object_get(c->session, "l"), JSON_COMPACT | JSON_ENCODE_ANY);
    return s ? s : strdup("null");
}

#define ASSERT_LAST(c, expected)                                                                   \
    do {                                                                                           \
        char *fb__l = last_json(c);                                                                \
        ASSERT_STR_EQ(fb__l, expected);                                                            \
        free(fb__l); /* fb-lint: allow free (jansson's allocation) */                              \
    } while (0)

/* The `summary` of the last step's `escalate` effect (NULL when none). */
static const char *escalation_summary(const struct conv *c)
{
    for (size_t i = 0; i < json_array_size(c->effects); i++) {
        const json_t *e = json_array_get(c->effects, i);
        if (strcmp(json_string_value(json_object_get(e, "type")), "escalate") == 0)
            return json_string_value(json_object_get(e, "summary"));
    }
    return NULL;
}

/* The last three texts the user wrote, understood or not, commands too, oldest first; not the
 * buttons, timers, nor what is written while an advisor has the conversation. */
TEST_IMPL(machine_last_messages_window)
{
    struct conv c;
    petit_at_q2(&c);
    ASSERT_LAST(&c, "[\"une friche\"]");
    say(&c, "peut-être"); /* not understood: kept all the same */
    ASSERT_STR_EQ(state(&c), "q2");
    choose(&c, "oui"); /* a button: not a text */
    ASSERT_STR_EQ(state(&c), "q3");
    event(&c, FB_EVENT_TIMER);
    ASSERT_LAST(&c, "[\"une friche\",\"peut-être\"]");
    say(&c, "  beaucoup\n\tde  bâtiments \r\n"); /* one line, white space collapsed */
    ASSERT_LAST(&c, "[\"une friche\",\"peut-être\",\"beaucoup de bâtiments\"]");
    say(&c, "où en suis-je"); /* the 4th pushes out the 1st */
    ASSERT_LAST(&c, "[\"peut-être\",\"beaucoup de bâtiments\",\"où en suis-je\"]");
    say(&c, ""); /* nothing to keep */
    say(&c, " \n\t ");
    ASSERT_LAST(&c, "[\"peut-être\",\"beaucoup de bâtiments\",\"où en suis-je\"]");
    /* "mes données" shows them (it is one of them), escaped in HTML */
    say(&c, "<b>trois</b> & \"plus\"");
    say(&c, "mes données");
    ASSERT_SAYS(&c, "\n\nVos derniers messages :\n« où en suis-je »\n« <b>trois</b> & \"plus\" "
                    "»\n« mes données »\n\nPour tout effacer");
    ASSERT(strstr(fb_buf_str(&c.html), "<p>Vos derniers messages :</p><ul><li>« où en suis-je "
                                       "»</li><li>« &lt;b&gt;trois&lt;/b&gt; &amp; "
                                       "&quot;plus&quot; »</li><li>« mes données »</li></ul>"));
    /* "où en suis-je" does not list them */
    say(&c, "où en suis-je");
    ASSERT_NOT_SAYS(&c, "derniers messages");
    /* kept by "recommencer", like the reminders preference */
    say(&c, "recommencer");
    ASSERT_STR_EQ(state(&c), "q1");
    ASSERT_LAST(&c, "[\"mes données\",\"où en suis-je\",\"recommencer\"]");
    /* the escalating message is in the summary, the last one */
    say(&c, "je veux un humain");
    say(&c, "agent");
    ASSERT(json_is_true(json_object_get(c.session, "x")));
    const char *sum = escalation_summary(&c);
    ASSERT_NOT_NULL(sum);
    ASSERT_NOT_NULL(strstr(sum, "\n1. Délibérer sur le projet : à faire\n\nDerniers messages de "
                                "l'usager :\n« recommencer »\n« je veux un humain »\n« agent »"));
    ASSERT_LAST(&c, "[\"recommencer\",\"je veux un humain\",\"agent\"]");
    /* escalated: what the user writes goes to the advisor, not into the session */
    say(&c, "Bonjour, il y a quelqu'un ?");
    ASSERT_LAST(&c, "[\"recommencer\",\"je veux un humain\",\"agent\"]");
    event(&c, FB_EVENT_HANDBACK);
    say(&c, "une friche");
    ASSERT_LAST(&c, "[\"je veux un humain\",\"agent\",\"une friche\"]");
    /* forgotten with everything else */
    say(&c, "oublier mes données");
    ASSERT(json_is_null(c.session));
    say(&c, "re-bonjour"); /* a new conversation: its first text, nothing older */
    ASSERT_STR_EQ(state(&c), "q1");
    ASSERT_LAST(&c, "[\"re-bonjour\"]");
    conv_free(&c);
    return 0;
}

/* Each kept text is at most 300 bytes, cut on a character boundary and ended by "…". */
TEST_IMPL(machine_last_messages_cut)
{
    struct conv c;
    petit_at_q2(&c);
    /* 500 x "é" (2 bytes) = 1000 bytes: 297 bytes (300 minus the 3 of "…") would end inside an
     * "é", so the cut keeps 148 of them (296 bytes) */
    fb_buf_t in, want;
    fb_buf_init(&in, 4096);
    fb_buf_init(&want, 4096);
    for (int i = 0; i < 500; i++)
        ASSERT_OK(fb_buf_puts(&in, "é"));
    ASSERT_EQ(in.len, 1000);
    for (int i = 0; i < 148; i++)
        ASSERT_OK(fb_buf_puts(&want, "é"));
    ASSERT_OK(fb_buf_puts(&want, "…"));
    say(&c, fb_buf_str(&in));
    const json_t *l = json_object_get(c.session, "l");
    ASSERT_EQ(json_array_size(l), 2);
    const json_t *kept = json_array_get(l, 1);
    ASSERT_EQ(json_string_length(kept), 299);
    ASSERT(fb_utf8_valid_text(json_string_value(kept), json_string_length(kept)));
    ASSERT_STR_EQ(json_string_value(kept), fb_buf_str(&want));

    /* exactly 300 bytes: kept whole; 301: cut */
    fb_buf_reset(&in);
    for (int i = 0; i < 150; i++)
        ASSERT_OK(fb_buf_puts(&in, "é"));
    say(&c, fb_buf_str(&in));
    kept = json_array_get(json_object_get(c.session, "l"), 2);
    ASSERT_EQ(json_string_length(kept), 300);
    ASSERT_STR_EQ(json_string_value(kept), fb_buf_str(&in));
    ASSERT_OK(fb_buf_puts(&in, "!"));
    say(&c, fb_buf_str(&in));
    kept = json_array_get(json_object_get(c.session, "l"), 2);
    ASSERT_STR_EQ(json_string_value(kept), fb_buf_str(&want));

    /* 3-byte characters after one ASCII byte: "a" + 99 x "€" is 298 bytes, over 297 */
    fb_buf_reset(&in);
    fb_buf_reset(&want);
    ASSERT_OK(fb_buf_puts(&in, "a"));
    ASSERT_OK(fb_buf_puts(&want, "a"));
    for (int i = 0; i < 200; i++)
        ASSERT_OK(fb_buf_puts(&in, "€"));
    for (int i = 0; i < 98; i++)
        ASSERT_OK(fb_buf_puts(&want, "€"));
    ASSERT_OK(fb_buf_puts(&want, "…"));
    say(&c, fb_buf_str(&in));
    kept = json_array_get(json_object_get(c.session, "l"), 2);
    ASSERT_STR_EQ(json_string_value(kept), fb_buf_str(&want));

    /* invalid bytes become '?', bidirectional overrides are dropped */
    say(&c, "\xff"
            "abc\xe2\x80\xae"
            "def\xc3");
    ASSERT_STR_EQ(json_string_value(json_array_get(json_object_get(c.session, "l"), 2)),
                  "?abcdef?");

    /* a 1 MiB text: cut too */
    size_t big = 1u << 20;
    char *huge = fb_malloc(big + 1);
    memset(huge, 'x', big);
    huge[big] = '\0';
    say(&c, huge);
    kept = json_array_get(json_object_get(c.session, "l"), 2);
    ASSERT_EQ(json_string_length(kept), 300);
    fb_free(huge);

    /* the summary quotes the cut text */
    fb_buf_reset(&in);
    for (int i = 0; i < 500; i++)
        ASSERT_OK(fb_buf_puts(&in, "é"));
    say(&c, fb_buf_str(&in));
    say(&c, "conseiller");
    fb_buf_reset(&in);
    ASSERT_OK(fb_buf_printf(&in, "\n« %s »\n« conseiller »", fb_buf_str(&want)));
    fb_buf_reset(&want);
    for (int i = 0; i < 148; i++)
        ASSERT_OK(fb_buf_puts(&want, "é"));
    ASSERT_OK(fb_buf_puts(&want, "…"));
    const char *sum = escalation_summary(&c);
    ASSERT_NOT_NULL(sum);
    char *line = fb_asprintf("« %s »\n« conseiller »", fb_buf_str(&want));
    if (!strstr(sum, line))
        FB_TEST_FAIL("the summary should end with the cut text; it is:\n%s", sum);
    fb_free(line);
    fb_buf_free(&in);
    fb_buf_free(&want);
    conv_free(&c);
    return 0;
}

/* A session written before `l` existed still loads; a malformed `l` is refused. */
TEST_IMPL(machine_last_messages_session)
{
    fb_dialog_t *d = load("petit.yaml", NULL);
    fb_engine_env_t env = {.now = NOW, .locale = "fr"};
    fb_event_t ev = {FB_EVENT_MESSAGE, "oui", NULL, NULL};
    json_t *ns = NULL, *ef = NULL;

    /* an old session: no `l` */
    json_t *old =
        json_pack("{s:i, s:s, s:s, s:s, s:{s:s}, s:[s], s:[s]}", "v", 1, "d", "petit", "h",
                  fb_dialog_hash(d), "s", "q2", "a", "q1", "friche", "t", "friche", "p", "q1");
    ASSERT_OK(fb_engine_step(d, old, &ev, &env, &ns, &ef));
    ASSERT_STR_EQ(json_string_value(json_object_get(ns, "s")), "q3");
    ASSERT_EQ(json_array_size(json_object_get(ns, "l")), 1);
    ASSERT_STR_EQ(json_string_value(json_array_get(json_object_get(ns, "l"), 0)), "oui");
    json_decref(ns);
    json_decref(ef);

    /* three kept: a fourth pushes out the oldest; an empty list is not written back */
    json_t *full = json_deep_copy(old);
    ASSERT_OK(json_object_set_new(full, "l", json_pack("[s,s,s]", "un", "deux", "trois")));
    ASSERT_OK(fb_engine_step(d, full, &ev, &env, &ns, &ef));
    char *got = json_dumps(json_object_get(ns, "l"), JSON_COMPACT);
    ASSERT_STR_EQ(got, "[\"deux\",\"trois\",\"oui\"]");
    free(got); /* fb-lint: allow free (jansson's allocation) */
    json_decref(ns);
    json_decref(ef);
    fb_event_t timer = {FB_EVENT_TIMER, NULL, NULL, "autre"};
    ASSERT_OK(json_object_set_new(full, "l", json_array()));
    ASSERT_OK(fb_engine_step(d, full, &timer, &env, &ns, &ef));
    ASSERT_NULL(json_object_get(ns, "l"));
    json_decref(ns);
    json_decref(ef);

    /* malformed: refused like every other field */
    char long_text[302];
    memset(long_text, 'x', 301);
    long_text[301] = '\0';
    json_t *bad[] = {
        json_string("oui"),
        json_pack("{s:s}", "0", "oui"),
        json_pack("[i]", 1),
        json_pack("[n]"),
        json_pack("[s]", ""),
        json_pack("[s,s,s,s]", "a", "b", "c", "d"),
        json_pack("[s]", "deux\nlignes"),
        json_pack("[s]", "tab\tulation"),
        json_pack("[s]", long_text),
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(bad); i++) {
        json_t *s = json_deep_copy(old);
        ASSERT_NOT_NULL(bad[i]);
        ASSERT_OK(json_object_set_new(s, "l", bad[i]));
        json_t *ns0 = json_object(), *ef0 = json_array(); /* the engine must clear them */
        ns = ns0;
        ef = ef0;
        int rc = fb_engine_step(d, s, &ev, &env, &ns, &ef);
        if (rc != FB_EINVAL)
            FB_TEST_FAIL("malformed `l` number %zu: step returned %d", i, rc);
        ASSERT_NULL(ns);
        ASSERT_NULL(ef);
        json_decref(ns0);
        json_decref(ef0);
        json_decref(s);
    }
    /* the longest valid entry, 300 bytes, is accepted */
    long_text[300] = '\0';
    ASSERT_OK(json_object_set_new(full, "l", json_pack("[s]", long_text)));
    ASSERT_OK(fb_engine_step(d, full, &ev, &env, &ns, &ef));
    ASSERT_EQ(json_array_size(json_object_get(ns, "l")), 2);
    json_decref(ns);
    json_decref(ef);
    json_decref(full);
    json_decref(old);
    fb_dialog_unref(d);
    return 0;
}

/* ---- saying what was understood, confirming (issue 19) --------------------------------------- */

/* A loose answer is said back before the next question; an exact one is not. */
TEST_IMPL(machine_note_loose)
{
    struct conv c;
    conv_init(&c, "petit.yaml", 0);
    event(&c, FB_EVENT_START);
    say(&c, "friche depuis longtemps");
    ASSERT_STR_EQ(json_string_value(answer(&c, "q1")), "friche");
    ASSERT(strncmp(said(&c), "Noté : Une friche.\n\n", strlen("Noté : Une friche.\n\n")) == 0);
    ASSERT(strstr(json_string_value(json_object_get(json_array_get(c.effects, 0), "html")),
                  "<p>Noté : Une friche.</p>") != NULL);
    say(&c, "retour");
    say(&c, "1");
    ASSERT(strstr(said(&c), "Noté") == NULL);
    conv_free(&c);
    return 0;
}

/* Two readings: asked, kept in `y`, resolved by number; « non » asks the question again. */
TEST_IMPL(machine_confirm)
{
    struct conv c;
    conv_init(&c, "petit.yaml", 0);
    event(&c, FB_EVENT_START);
    say(&c, "une friche ou un site occupé");
    ASSERT_NULL(answer(&c, "q1"));
    ASSERT_SAID(&c, "Je préfère vérifier. Vous voulez dire :\n\n1. Une friche\n2. Un site "
                    "occupé\n3. Autre chose");
    char *y = json_dumps(json_object_get(c.session, "y"), JSON_COMPACT);
    ASSERT_STR_EQ(y, "[\"friche\",\"occupe\"]");
    free(y); /* fb-lint: allow free (jansson's allocation) */
    ASSERT_EQ(json_integer_value(json_object_get(c.session, "f")), 0); /* not a failure */
    say(&c, "aide");
    ASSERT_SAYS(&c, "Vous voulez dire");
    say(&c, "non");
    ASSERT_SAID(&c, "Quel est le statut du site ?\n\n1. Une friche\n2. Un site occupé");
    ASSERT_NULL(json_object_get(c.session, "y"));
    say(&c, "une friche ou un site occupé");
    say(&c, "2");
    ASSERT_STR_EQ(json_string_value(answer(&c, "q1")), "occupe");
    ASSERT_NULL(json_object_get(c.session, "y"));
    ASSERT(strstr(said(&c), "Noté") == NULL);
    conv_free(&c);
    return 0;
}

/* `y` is read strictly on types, leniently on content: unknown ids drop the confirmation. */
TEST_IMPL(machine_confirm_session)
{
    fb_dialog_t *d = load("petit.yaml", NULL);
    fb_engine_env_t env = {.now = NOW, .locale = "fr"};
    fb_event_t ev = {.kind = FB_EVENT_MESSAGE, .text = "1"};
    json_t *ns = NULL, *ef = NULL;
    json_t *bad = json_pack("{s:i, s:s, s:s, s:s, s:[i]}", "v", 1, "d", "petit", "h",
                            fb_dialog_hash(d), "s", "q1", "y", 3);
    ASSERT_EQ(fb_engine_step(d, bad, &ev, &env, &ns, &ef), FB_EINVAL);
    json_decref(bad);
    json_t *gone = json_pack("{s:i, s:s, s:s, s:s, s:[s]}", "v", 1, "d", "petit", "h",
                             fb_dialog_hash(d), "s", "q1", "y", "disparu");
    ASSERT_EQ(fb_engine_step(d, gone, &ev, &env, &ns, &ef), 0);
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(ns, "a"), "q1")), "friche");
    json_decref(gone);
    json_decref(ns);
    json_decref(ef);
    json_t *kept = json_pack("{s:i, s:s, s:s, s:s, s:[s,s]}", "v", 1, "d", "petit", "h",
                             fb_dialog_hash(d), "s", "q1", "y", "friche", "occupe");
    ASSERT_EQ(fb_engine_step(d, kept, &ev, &env, &ns, &ef), 0); /* "1": the first reading */
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(ns, "a"), "q1")), "friche");
    json_decref(kept);
    json_decref(ns);
    json_decref(ef);
    fb_dialog_unref(d);
    return 0;
}
