/* SPDX-License-Identifier: MIT */
/*
 * test_understanding.c - the free-text corpus of issue 19 (tests/understanding/corpus.yaml): what
 * people really type at each question of dialogs/friche.yaml, and what the bot must make of it.
 *
 * Each answer is sent through fb_engine_step() to a session standing at its question (the other
 * answers filled in), and the outcome is read from the new session and the effects: a value
 * stored (said back with « Noté : » when understood loosely, or silently when exact), a
 * confirmation asked (« Vous voulez dire : », session `y`), or the question asked again (not
 * understood, refused). The test prints the figures, and fails on any silent wrong pick (a value
 * stored that is not the expected one, or stored where the corpus says the bot must ask) and
 * when more than MAX_ASKED_PERCENT of the answers that have an expected value were asked about
 * instead of understood. FB_CORPUS_VERBOSE=1 lists every answer asked about.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <yaml.h>

#include "engine/engine.h"
#include "engine/geo.h"
#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "io/paths.h"
#include "task.h"

#define CORPUS            FB_SOURCE_DIR "/tests/understanding/corpus.yaml"
#define DIALOG            FB_SOURCE_DIR "/dialogs/friche.yaml"
#define NOW               1796029200 /* 2026-11-30T09:00:00Z */
#define MAX_ASKED_PERCENT 25
#define MIN_ANSWERS       200

/* The answers of a complete friche conversation: each entry's question is removed from them. */
static const char *const base_answers =
    "{\"commune\":{\"insee\":\"76217\",\"nom\":\"Dieppe\"},\"demandeur\":\"commune\","
    "\"usage\":\"industriel\",\"surface\":10000,\"batiments\":\"degrades\",\"vacance\":5,"
    "\"propriete\":\"collectivite\",\"pollution\":\"soupcon\",\"urbanisme\":\"plu\","
    "\"contraintes\":[],\"projet\":\"logement\",\"avancement\":\"idee\",\"programme\":\"aucun\"}";

struct figures {
    unsigned total, exact, noted, confirm, reprompt, wrong, expect_pick, expect_pick_asked;
};

/* The text of a YAML scalar node, or NULL. */
static const char *scalar(yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* The value of `key` in mapping node `map`, or NULL. */
static yaml_node_t *get(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const char *k = scalar(yaml_document_get_node(doc, p->key));
        if (k && strcmp(k, key) == 0)
            return yaml_document_get_node(doc, p->value);
    }
    return NULL;
}

/* True when stored value `got` is what `want` (the corpus's `attendu`) says. */
static bool same_value(yaml_document_t *doc, yaml_node_t *want, const json_t *got)
{
    if (want->type == YAML_SEQUENCE_NODE) {
        size_t n = (size_t)(want->data.sequence.items.top - want->data.sequence.items.start);
        if (!json_is_array(got) || json_array_size(got) != n)
            return false;
        for (size_t i = 0; i < n; i++) {
            const char *w = scalar(yaml_document_get_node(doc, want->data.sequence.items.start[i]));
            bool found = false;
            for (size_t j = 0; j < json_array_size(got) && !found; j++)
                found = w && strcmp(w, json_string_value(json_array_get(got, j))) == 0;
            if (!found)
                return false;
        }
        return true;
    }
    const char *w = scalar(want);
    if (!w)
        return false;
    if (json_is_number(got)) {
        char *end = NULL;
        double x = strtod(w, &end);
        return end && *end == '\0' && fabs(x - json_number_value(got)) <= 0.5;
    }
    if (strcmp(w, "nsp") == 0)
        return json_is_string(got) && strcmp(json_string_value(got), "__nsp__") == 0;
    return json_is_string(got) && strcmp(w, json_string_value(got)) == 0;
}

/* Runs one corpus entry; returns false on a silent wrong pick. */
static bool run_entry(const fb_dialog_t *d, const fb_engine_env_t *env, const char *question,
                      const char *text, yaml_document_t *doc, yaml_node_t *want, bool verbose,
                      struct figures *fg)
{
    json_t *answers = json_loads(base_answers, 0, NULL);
    (void)json_object_del(answers, question);
    json_t *session = json_pack("{s:i, s:s, s:s, s:s, s:o}", "v", 1, "d", "friche", "h",
                                fb_dialog_hash(d), "s", question, "a", answers);
    fb_event_t ev = {.kind = FB_EVENT_MESSAGE, .text = text};
    json_t *ns = NULL, *ef = NULL;
    int rc = fb_engine_step(d, session, &ev, env, &ns, &ef);
    if (rc != 0)
        FB_TEST_FAIL("%s: « %s »: fb_engine_step returned %d", question, text, rc);
    const json_t *got = json_object_get(json_object_get(ns, "a"), question);
    const char *said = "";
    for (size_t i = 0; i < json_array_size(ef) && !said[0]; i++)
        if (strcmp(json_string_value(json_object_get(json_array_get(ef, i), "type")), "say") == 0)
            said = json_string_value(json_object_get(json_array_get(ef, i), "text"));
    bool must_ask = want->type == YAML_SCALAR_NODE && strcmp(scalar(want), "demander") == 0;
    bool ok = true;
    fg->total++;
    if (!must_ask)
        fg->expect_pick++;
    if (got) {
        bool noted = strncmp(said, "Noté", strlen("Noté")) == 0;
        if (noted)
            fg->noted++;
        else
            fg->exact++;
        if (must_ask || !same_value(doc, want, got)) {
            char *g = json_dumps(got, JSON_ENCODE_ANY);
            fprintf(stderr, "# SILENT WRONG PICK %s: « %s » -> %s (%s), expected %s\n", question,
                    text, g, noted ? "noted" : "exact",
                    must_ask       ? "demander"
                    : scalar(want) ? scalar(want)
                                   : "[...]");
            fb_free(g);
            fg->wrong++;
            ok = false;
        }
    } else {
        bool confirm = json_object_get(ns, "y") != NULL;
        if (confirm)
            fg->confirm++;
        else
            fg->reprompt++;
        if (!must_ask)
            fg->expect_pick_asked++;
        if (verbose) {
            char *y = json_dumps(json_object_get(ns, "y"), JSON_ENCODE_ANY);
            fprintf(stderr, "#   asked %s: « %s » (%s%s%s)\n", question, text,
                    confirm ? "confirm " : "reprompt", confirm && y ? y : "",
                    must_ask ? ", as expected" : "");
            free(y);
        }
    }
    json_decref(session);
    json_decref(ns);
    json_decref(ef);
    return ok;
}

/*
 * The corpus: every answer is understood as expected or asked about, never silently misread;
 * and most answers with an expected value are understood without a question.
 */
TEST_IMPL(understanding_corpus)
{
    fb_buf_t errors;
    fb_buf_init(&errors, 1u << 16);
    fb_geo_t *geo = fb_geo_load(fb_data_path(FB_DATA_GEO), &errors);
    if (!geo)
        FB_TEST_FAIL("fb_geo_load: %s", fb_buf_str(&errors));
    fb_dialog_t *d = fb_dialog_load(DIALOG, geo, &errors);
    if (!d)
        FB_TEST_FAIL("%s does not load:\n%s", DIALOG, fb_buf_str(&errors));
    fb_buf_free(&errors);
    fb_engine_env_t env = {.now = NOW, .locale = "fr", .geo = geo};

    FILE *f = fopen(CORPUS, "rb");
    ASSERT_NOT_NULL(f);
    yaml_parser_t parser;
    yaml_document_t doc;
    ASSERT(yaml_parser_initialize(&parser));
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &doc))
        FB_TEST_FAIL("%s: %s (line %zu)", CORPUS, parser.problem ? parser.problem : "YAML error",
                     parser.problem_mark.line + 1);
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    yaml_node_t *questions = get(&doc, root, "questions");
    ASSERT(questions && questions->type == YAML_MAPPING_NODE);
    bool verbose = getenv("FB_CORPUS_VERBOSE") != NULL;
    struct figures all = {0};
    for (yaml_node_pair_t *p = questions->data.mapping.pairs.start;
         p < questions->data.mapping.pairs.top; p++) {
        const char *q = scalar(yaml_document_get_node(&doc, p->key));
        yaml_node_t *list = yaml_document_get_node(&doc, p->value);
        ASSERT(q && list && list->type == YAML_SEQUENCE_NODE);
        struct figures fq = {0};
        for (yaml_node_item_t *it = list->data.sequence.items.start;
             it < list->data.sequence.items.top; it++) {
            yaml_node_t *e = yaml_document_get_node(&doc, *it);
            const char *text = scalar(get(&doc, e, "texte"));
            yaml_node_t *want = get(&doc, e, "attendu");
            if (!text || !want)
                FB_TEST_FAIL("%s: an entry without « texte » or « attendu » (line %zu)", q,
                             e ? e->start_mark.line + 1 : 0);
            (void)run_entry(d, &env, q, text, &doc, want, verbose, &fq);
        }
        fprintf(stderr,
                "# %-12s %3u answers: %3u exact, %3u noted, %3u asked (%u confirm, %u again),"
                " %u silent wrong\n",
                q, fq.total, fq.exact, fq.noted, fq.confirm + fq.reprompt, fq.confirm, fq.reprompt,
                fq.wrong);
        all.total += fq.total;
        all.exact += fq.exact;
        all.noted += fq.noted;
        all.confirm += fq.confirm;
        all.reprompt += fq.reprompt;
        all.wrong += fq.wrong;
        all.expect_pick += fq.expect_pick;
        all.expect_pick_asked += fq.expect_pick_asked;
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    fclose(f);
    fb_dialog_unref(d);
    fb_geo_free(geo);
    unsigned understood = all.exact + all.noted;
    double asked_pct =
        all.expect_pick ? 100.0 * all.expect_pick_asked / (double)all.expect_pick : 0.0;
    fprintf(stderr,
            "# corpus: %u answers: %u understood exactly, %u understood with « Noté », %u asked "
            "(%u confirmations, %u asked again), %u silent wrong picks\n"
            "# understood without a question: %.1f %% of all answers; answers with an expected "
            "value asked about: %u of %u (%.1f %%, at most %d %%)\n",
            all.total, all.exact, all.noted, all.confirm + all.reprompt, all.confirm, all.reprompt,
            all.wrong, all.total ? 100.0 * understood / all.total : 0.0, all.expect_pick_asked,
            all.expect_pick, asked_pct, MAX_ASKED_PERCENT);
    if (all.total < MIN_ANSWERS)
        FB_TEST_FAIL("the corpus holds %u answers, fewer than %d", all.total, MIN_ANSWERS);
    if (all.wrong > 0)
        FB_TEST_FAIL("%u silent wrong pick(s) (listed above)", all.wrong);
    if (asked_pct > MAX_ASKED_PERCENT)
        FB_TEST_FAIL("%.1f %% of the answers with an expected value were asked about (max %d %%)",
                     asked_pct, MAX_ASKED_PERCENT);
    return 0;
}
