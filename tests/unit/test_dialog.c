/* SPDX-License-Identifier: MIT */
/*
 * test_dialog.c - the dialog loader (daemon/engine/dialog.c): the sample dialogs load, every file
 * of tests/data/dialogs/bad/ is refused with exactly the errors of its .expected sibling (the
 * directory is stripped from the positions, so expectations do not depend on where the tree
 * is), reloads that would strand conversations are refused, hashes pin content, and the DOT
 * output has the expected nodes and edges.
 *
 * Set FB_UPDATE_EXPECTED=1 to rewrite the .expected files from the current output (then review
 * the diff: the expectations are the specification).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/geo.h"
#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "io/paths.h"
#include "task.h"

#define DATA FB_SOURCE_DIR "/tests/data/dialogs"

static fb_geo_t *test_geo(void)
{
    fb_buf_t errors;
    fb_buf_init(&errors, 4096);
    fb_geo_t *g = fb_geo_load(fb_data_path(FB_DATA_GEO), &errors);
    if (!g)
        FB_TEST_FAIL("fb_geo_load: %s", fb_buf_str(&errors));
    fb_buf_free(&errors);
    return g;
}

/* Reads a whole file into a new string, or NULL. */
static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fb_buf_t b;
    fb_buf_init(&b, 1u << 24);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        ASSERT_OK(fb_buf_append(&b, chunk, n));
    fclose(f);
    if (len)
        *len = b.len;
    return fb_buf_take(&b);
}

/* Returns `text` with every occurrence of `prefix` removed (new string). */
static char *strip(const char *text, const char *prefix)
{
    fb_buf_t b;
    fb_buf_init(&b, 1u << 24);
    size_t n = strlen(prefix);
    for (const char *p = text; *p;) {
        if (strncmp(p, prefix, n) == 0) {
            p += n;
            continue;
        }
        ASSERT_OK(fb_buf_append(&b, p, 1));
        p++;
    }
    return fb_buf_take(&b);
}

static fb_dialog_t *load_ok(const char *path, const fb_geo_t *geo)
{
    fb_buf_t errors;
    fb_buf_init(&errors, 1u << 16);
    fb_dialog_t *d = fb_dialog_load(path, geo, &errors);
    if (!d)
        FB_TEST_FAIL("%s does not load:\n%s", path, fb_buf_str(&errors));
    ASSERT_EQ(errors.len, 0);
    fb_buf_free(&errors);
    return d;
}

static int is_hex16(const char *s)
{
    if (strlen(s) != 16)
        return 0;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return 0;
    return 1;
}

/* The sample dialogs of the repository and of the tests load without any error. */
TEST_IMPL(dialog_load_samples)
{
    fb_geo_t *geo = test_geo();
    static const struct {
        const char *path, *id;
    } samples[] = {
        {DATA "/complet.yaml", "test"},
        {DATA "/petit.yaml", "petit"},
        {DATA "/douze.yaml", "friche"},
        {DATA "/v1.yaml", "versions"},
        {DATA "/v2.yaml", "versions"},
        {DATA "/v2_sans_migration.yaml", "versions"},
        {FB_SOURCE_DIR "/dialogs/exemple.yaml", "exemple"},
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(samples); i++) {
        fb_dialog_t *d = load_ok(samples[i].path, geo);
        ASSERT_STR_EQ(fb_dialog_id(d), samples[i].id);
        ASSERT(is_hex16(fb_dialog_hash(d)));
        fb_dialog_unref(d);
    }
    /* every other dialog shipped in dialogs/ loads too */
    DIR *dir = opendir(FB_SOURCE_DIR "/dialogs");
    ASSERT_NOT_NULL(dir);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(dir)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".yaml") != 0)
            continue;
        char *path = fb_asprintf("%s/dialogs/%s", FB_SOURCE_DIR, e->d_name);
        fb_dialog_unref(load_ok(path, geo));
        fb_free(path);
        n++;
    }
    closedir(dir);
    ASSERT_GE(n, 1);
    fb_geo_free(geo);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Every file of bad/ is refused with exactly the text of its .expected sibling (loaded without
 * the communes index, so a commune question is one of the errors).
 */
TEST_IMPL(dialog_corpus_bad)
{
    const char *dirpath = DATA "/bad";
    const char *update = getenv("FB_UPDATE_EXPECTED");
    DIR *dir = opendir(dirpath);
    ASSERT_NOT_NULL(dir);
    char *names[256];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len > 5 && strcmp(e->d_name + len - 5, ".yaml") == 0 && n < FB_ARRAY_SIZE(names))
            names[n++] = fb_strdup(e->d_name);
    }
    closedir(dir);
    qsort(names, n, sizeof(names[0]), cmp_str);
    ASSERT_GE(n, 20);
    int failures = 0;
    for (size_t i = 0; i < n; i++) {
        char *path = fb_asprintf("%s/%s", dirpath, names[i]);
        char *exp_path = fb_asprintf("%s.expected", path);
        fb_buf_t errors;
        fb_buf_init(&errors, 1u << 16);
        fb_dialog_t *d = fb_dialog_load(path, NULL, &errors);
        char *got = strip(fb_buf_str(&errors), DATA "/bad/");
        if (d) {
            fprintf(stderr, "bad/%s loaded without error\n", names[i]);
            failures++;
            fb_dialog_unref(d);
        } else if (update && *update == '1') {
            FILE *f = fopen(exp_path, "wb");
            ASSERT_NOT_NULL(f);
            fputs(got, f);
            fclose(f);
        } else {
            char *expected = read_all(exp_path, NULL);
            if (!expected) {
                fprintf(stderr, "bad/%s has no .expected file; it produced:\n%s", names[i], got);
                failures++;
            } else if (strcmp(expected, got) != 0) {
                fprintf(stderr, "bad/%s: expected:\n%s--- got:\n%s---\n", names[i], expected, got);
                failures++;
            }
            fb_free(expected);
        }
        /* every line is "NAME:LINE:COL: message" */
        for (const char *line = got; *line;) {
            const char *nl = strchr(line, '\n');
            ASSERT_NOT_NULL(nl);
            const char *colon = strchr(line, ':');
            ASSERT(colon && colon < nl);
            char *end;
            ASSERT_GT(strtol(colon + 1, &end, 10), 0);
            ASSERT_EQ(*end, ':');
            ASSERT_GT(strtol(end + 1, &end, 10), 0);
            ASSERT(strncmp(end, ": ", 2) == 0);
            line = nl + 1;
        }
        fb_free(got);
        fb_buf_free(&errors);
        fb_free(exp_path);
        fb_free(path);
        fb_free(names[i]);
    }
    ASSERT_EQ(failures, 0);
    return 0;
}

/* Loading from memory: the name is used in messages, catalogues need a directory. */
TEST_IMPL(dialog_load_text)
{
    static const char text[] = "dialogue: memoire\n"
                               "debut: fin\n"
                               "catalogues:\n"
                               "  etapes: catalogues/etapes.yaml\n"
                               "etats:\n"
                               "  fin:\n"
                               "    dire: \"Fin.\"\n"
                               "    fin: true\n"
                               "regles:\n"
                               "  - ajouter: [etapes.engagement]\n";
    fb_buf_t errors;
    fb_buf_init(&errors, 4096);
    fb_dialog_t *d =
        fb_dialog_load_text("memoire.yaml", DATA, text, sizeof(text) - 1, NULL, &errors);
    ASSERT_NOT_NULL(d);
    ASSERT_STR_EQ(fb_dialog_id(d), "memoire");
    fb_dialog_unref(d);
    ASSERT_NULL(fb_dialog_load_text("memoire.yaml", NULL, text, sizeof(text) - 1, NULL, &errors));
    ASSERT_STR_EQ(fb_buf_str(&errors),
                  "memoire.yaml:4:11: impossible de lire le catalogue « catalogues/etapes.yaml » : "
                  "le dialogue n'a pas été lu depuis un dossier\n");
    fb_buf_reset(&errors);
    /* NULL errors buffer and NULL text are fine */
    ASSERT_NULL(fb_dialog_load_text("x.yaml", NULL, NULL, 0, NULL, NULL));
    ASSERT_NULL(fb_dialog_load(DATA "/nexiste_pas.yaml", NULL, &errors));
    ASSERT_STR_EQ(fb_buf_str(&errors),
                  DATA "/nexiste_pas.yaml:1:1: impossible de lire le dialogue : fichier "
                       "introuvable\n");
    fb_buf_free(&errors);
    return 0;
}

/* Past 100 errors the loader stops listing them and says so in one line; an errors buffer that
 * fills up gets one short line instead (common/diag.c, the collector shared with the config). */
TEST_IMPL(dialog_too_many_errors)
{
    fb_buf_t text, errors;
    fb_buf_init(&text, 1u << 20);
    fb_buf_init(&errors, 1u << 20);
    ASSERT_OK(fb_buf_puts(&text, "dialogue: grand\ndebut: e0\netats:\n"));
    for (int i = 0; i < 120; i++)
        ASSERT_OK(fb_buf_printf(&text, "  e%d: {dire: \"x\", inconnue: 1, fin: true}\n", i));
    ASSERT_NULL(
        fb_dialog_load_text("grand.yaml", NULL, fb_buf_str(&text), text.len, NULL, &errors));
    const char *all = fb_buf_str(&errors);
    size_t lines = 0;
    for (const char *c = all; *c; c++)
        lines += *c == '\n';
    ASSERT_EQ(lines, 101);
    const char *last = "grand.yaml:1:1: trop d'erreurs : arrêt après les 100 premières\n";
    ASSERT(errors.len > strlen(last));
    ASSERT_STR_EQ(all + errors.len - strlen(last), last);
    ASSERT_EQ(strncmp(all, "grand.yaml:4:", 13), 0);
    fb_buf_free(&errors);
    fb_buf_init(&errors, 300);
    ASSERT_NULL(
        fb_dialog_load_text("grand.yaml", NULL, fb_buf_str(&text), text.len, NULL, &errors));
    ASSERT_STR_EQ(fb_buf_str(&errors), "grand.yaml:1:1: trop d'erreurs pour les afficher\n");
    fb_buf_free(&errors);
    fb_buf_free(&text);
    return 0;
}

/* A reload that strands a state without a migration is refused; one with a migration loads. */
TEST_IMPL(dialog_load_next)
{
    fb_dialog_t *v1 = load_ok(DATA "/v1.yaml", NULL);
    fb_buf_t errors;
    fb_buf_init(&errors, 4096);
    fb_dialog_t *bad = fb_dialog_load_next(DATA "/v2_sans_migration.yaml", v1, NULL, &errors);
    ASSERT_NULL(bad);
    char *got = strip(fb_buf_str(&errors), DATA "/");
    ASSERT_STR_EQ(got, "v2_sans_migration.yaml:1:1: l'état « taille » de la version en service a "
                       "disparu : des conversations en cours y sont peut-être ; déclarez où les "
                       "mener sous « migrations: » (par exemple « taille: "
                       "debut_du_nouvel_etat »)\n");
    fb_free(got);
    fb_buf_reset(&errors);
    fb_dialog_t *v2 = fb_dialog_load_next(DATA "/v2.yaml", v1, NULL, &errors);
    ASSERT_NOT_NULL(v2);
    ASSERT_EQ(errors.len, 0);
    ASSERT(strcmp(fb_dialog_hash(v1), fb_dialog_hash(v2)) != 0);
    /* a different dialog id is refused too */
    fb_dialog_t *other = fb_dialog_load_next(DATA "/petit.yaml", v1, NULL, &errors);
    ASSERT_NULL(other);
    ASSERT(strstr(fb_buf_str(&errors), "l'identifiant du dialogue a changé") != NULL);
    fb_buf_free(&errors);
    fb_dialog_unref(v2);
    fb_dialog_unref(v1);
    return 0;
}

/* The hash pins the bytes of the dialog and of its catalogues; references count. */
TEST_IMPL(dialog_hash_and_refs)
{
    size_t len;
    char *text = read_all(DATA "/petit.yaml", &len);
    ASSERT_NOT_NULL(text);
    fb_buf_t errors;
    fb_buf_init(&errors, 1u << 16);
    fb_dialog_t *a = fb_dialog_load_text("petit.yaml", DATA, text, len, NULL, &errors);
    fb_dialog_t *b = fb_dialog_load_text("autre_nom.yaml", DATA, text, len, NULL, &errors);
    ASSERT_NOT_NULL(a);
    ASSERT_NOT_NULL(b);
    ASSERT_STR_EQ(fb_dialog_hash(a), fb_dialog_hash(b));
    fb_dialog_t *d = fb_dialog_load(DATA "/petit.yaml", NULL, &errors);
    ASSERT_STR_EQ(fb_dialog_hash(a), fb_dialog_hash(d));
    fb_dialog_unref(d);
    /* one more byte in a comment: another version */
    char *text2 = fb_asprintf("%s# modifié\n", text);
    fb_dialog_t *c = fb_dialog_load_text("petit.yaml", DATA, text2, strlen(text2), NULL, &errors);
    ASSERT_NOT_NULL(c);
    ASSERT(strcmp(fb_dialog_hash(a), fb_dialog_hash(c)) != 0);
    /* references */
    ASSERT(fb_dialog_ref(a) == a);
    fb_dialog_unref(a);
    ASSERT_STR_EQ(fb_dialog_id(a), "petit"); /* still alive: one reference left */
    fb_dialog_unref(a);
    fb_dialog_unref(b);
    fb_dialog_unref(c);
    fb_dialog_unref(NULL);
    ASSERT_NULL(fb_dialog_ref(NULL));
    ASSERT_EQ(errors.len, 0);
    fb_buf_free(&errors);
    fb_free(text);
    fb_free(text2);
    return 0;
}

/* The DOT graph has a node per state with its shape and an edge per transition. */
TEST_IMPL(dialog_dot)
{
    fb_geo_t *geo = test_geo();
    fb_dialog_t *d = load_ok(DATA "/complet.yaml", geo);
    fb_buf_t out;
    fb_buf_init(&out, 1u << 20);
    ASSERT_OK(fb_dialog_to_dot(d, &out));
    const char *dot = fb_buf_str(&out);
    static const char *const expected[] = {
        "digraph \"test\" {\n",
        "  label=\"Dialogue de test du moteur\";\n",
        "  \"__debut\" -> \"accueil\";\n",
        "  \"accueil\" [shape=ellipse, label=\"accueil\"];\n",
        "  \"accueil\" -> \"commune\";\n",
        "  \"commune\" [shape=box, label=\"commune\\n(commune)\"];\n",
        "  \"usage\" [shape=box, label=\"usage\\n(choix)\"];\n",
        "  \"usage\" -> \"autre_usage\" [label=\"Autre\"];\n",
        "  \"usage\" -> \"pollution\" [label=\"usage == \\\"industriel\\\"\"];\n",
        "  \"usage\" -> \"proprietaire\" [label=\"sinon\"];\n",
        "  \"pollution\" [shape=box, label=\"pollution\\n(oui_non)\\nsi #site_industriel\"];\n",
        "  \"pollution\" -> \"proprietaire\";\n",
        "  \"pollution\" -> \"proprietaire\" [label=\"sautée\", style=dashed];\n",
        "  \"etude\" [shape=ellipse, label=\"etude\\nsi #grand_site\"];\n",
        "  \"etude\" -> \"fin\" [label=\"sautée\", style=dashed];\n",
        "  \"fin\" [shape=ellipse, peripheries=2, label=\"fin\"];\n",
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(expected); i++)
        if (!strstr(dot, expected[i]))
            FB_TEST_FAIL("DOT lacks %s in:\n%s", expected[i], dot);
    ASSERT(strcmp(dot + out.len - 2, "}\n") == 0);
    /* no edge leaves the final state */
    ASSERT_NULL(strstr(dot, "\"fin\" ->"));
    /* a buffer too small is FB_ETOOBIG */
    fb_buf_t small;
    fb_buf_init(&small, 64);
    ASSERT_EQ(fb_dialog_to_dot(d, &small), FB_ETOOBIG);
    fb_buf_free(&small);
    fb_buf_free(&out);
    fb_dialog_unref(d);
    fb_geo_free(geo);
    return 0;
}
