/* SPDX-License-Identifier: MIT */
/*
 * test_geo.c - the communes index (daemon/engine/geo.c) on the real data the build converts from
 * @etalab/decoupage-administratif: codes, shared postal codes, names typed any which way,
 * homonyms and their ranking, Corsica (2A/2B), overseas (971-976 and the COM), typos, former
 * communes, the JSON form, load time, and refusal of damaged files.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/geo.h"
#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "io/paths.h"
#include "task.h"

#define GEO_PATH FB_BINARY_DIR "/data/communes.fbgeo"

/* Loads the build's index; the test is skipped (with the reason) when it was not built. */
static fb_geo_t *load_index(void)
{
    if (access(GEO_PATH, R_OK) != 0)
        return NULL;
    fb_buf_t errors;
    fb_buf_init(&errors, 4096);
    fb_geo_t *g = fb_geo_load(GEO_PATH, &errors);
    if (!g)
        FB_TEST_FAIL("fb_geo_load: %s", fb_buf_str(&errors));
    fb_buf_free(&errors);
    return g;
}

/* The index is built with the tree (cmake/FbGeo.cmake): a missing one fails, never skips. */
#define LOAD_OR_SKIP(g) fb_geo_t *g = load_index()

/* Asserts that `text` finds exactly `want` communes, the first being `first_insee`. */
static void expect_find(const fb_geo_t *g, const char *text, size_t want, const char *first_insee)
{
    const fb_commune_t *out[8] = {NULL};
    size_t n = fb_geo_find(g, text, out, 8);
    if (n != want)
        FB_TEST_FAIL("fb_geo_find(\"%s\") found %zu, want %zu (first: %s)", text, n, want,
                     n && out[0] ? out[0]->insee : "-");
    if (first_insee && strcmp(out[0]->insee, first_insee) != 0)
        FB_TEST_FAIL("fb_geo_find(\"%s\") first is %s %s, want %s", text, out[0]->insee,
                     out[0]->name, first_insee);
}

/* Asserts that the first `n` results are ranked by population, largest first. */
static void expect_ranked(const fb_commune_t *const *out, size_t n)
{
    for (size_t i = 1; i < n; i++)
        ASSERT_GE(out[i - 1]->population, out[i]->population);
}

/* True when `c` lists postal code `pc`. */
static int has_postcode(const fb_commune_t *c, const char *pc)
{
    for (const char *const *p = c->postcodes; *p; p++)
        if (strcmp(*p, pc) == 0)
            return 1;
    return 0;
}

TEST_IMPL(geo_load)
{
    LOAD_OR_SKIP(g);
    ASSERT_GT(fb_geo_count(g), 34000);
    ASSERT_LT(fb_geo_count(g), 37000);
    ASSERT(strncmp(fb_geo_source(g), "@etalab/decoupage-administratif ", 32) == 0);
    ASSERT_STR_EQ(fb_data_path(FB_DATA_GEO), GEO_PATH);
    fb_geo_free(g);
    fb_geo_free(NULL);

    /* Loading again gives the same index (load time is measured by bench/bench_geo.c). */
    g = fb_geo_load(GEO_PATH, NULL);
    ASSERT_NOT_NULL(g);
    fb_geo_free(g);
    return 0;
}

TEST_IMPL(geo_by_insee)
{
    LOAD_OR_SKIP(g);
    const fb_commune_t *c = fb_geo_by_insee(g, "69123");
    ASSERT_NOT_NULL(c);
    ASSERT_STR_EQ(c->insee, "69123");
    ASSERT_STR_EQ(c->name, "Lyon");
    ASSERT_STR_EQ(c->dep, "69");
    ASSERT_STR_EQ(c->dep_name, "Rhône");
    ASSERT_STR_EQ(c->region, "84");
    ASSERT_STR_EQ(c->region_name, "Auvergne-Rhône-Alpes");
    ASSERT_STR_EQ(c->epci, "200046977");
    ASSERT_STR_EQ(c->epci_name, "Métropole de Lyon");
    ASSERT_GT(c->population, 400000);
    ASSERT(has_postcode(c, "69001") && has_postcode(c, "69009") && !has_postcode(c, "69170"));

    /* Corsica: letters in the code, either case. */
    c = fb_geo_by_insee(g, "2A004");
    ASSERT_NOT_NULL(c);
    ASSERT_STR_EQ(c->name, "Ajaccio");
    ASSERT_STR_EQ(c->dep, "2A");
    ASSERT_STR_EQ(c->dep_name, "Corse-du-Sud");
    ASSERT_STR_EQ(c->region, "94");
    ASSERT_STR_EQ(c->region_name, "Corse");
    ASSERT(has_postcode(c, "20000"));
    ASSERT(fb_geo_by_insee(g, "2a004") == c);
    c = fb_geo_by_insee(g, "2B033");
    ASSERT_NOT_NULL(c);
    ASSERT_STR_EQ(c->name, "Bastia");
    ASSERT_STR_EQ(c->dep_name, "Haute-Corse");
    ASSERT_NULL(fb_geo_by_insee(g, "20004")); /* Ajaccio's code before 1976: only find() */

    /* Overseas départements (971-976: five-digit codes starting with the three-digit one). */
    static const char *const dom[][4] = {
        {"97105", "Basse-Terre", "971", "01"}, {"97209", "Fort-de-France", "972", "02"},
        {"97302", "Cayenne", "973", "03"},     {"97411", "Saint-Denis", "974", "04"},
        {"97611", "Mamoudzou", "976", "06"},   {"97502", "Saint-Pierre", "975", "975"},
    };
    for (size_t i = 0; i < sizeof(dom) / sizeof(dom[0]); i++) {
        c = fb_geo_by_insee(g, dom[i][0]);
        ASSERT_NOT_NULL(c);
        ASSERT_STR_EQ(c->name, dom[i][1]);
        ASSERT_STR_EQ(c->dep, dom[i][2]);
        ASSERT_STR_EQ(c->region, dom[i][3]);
        ASSERT_GT(c->population, 1000);
    }
    ASSERT_STR_EQ(fb_geo_by_insee(g, "97411")->region_name, "La Réunion");
    ASSERT_STR_EQ(fb_geo_by_insee(g, "22016")->epci, ""); /* Île-de-Bréhat: in no EPCI */

    ASSERT_NULL(fb_geo_by_insee(g, NULL));
    ASSERT_NULL(fb_geo_by_insee(g, ""));
    ASSERT_NULL(fb_geo_by_insee(g, "6912"));
    ASSERT_NULL(fb_geo_by_insee(g, "691230"));
    ASSERT_NULL(fb_geo_by_insee(g, "ABCDE"));
    ASSERT_NULL(fb_geo_by_insee(g, "2C004"));
    ASSERT_NULL(fb_geo_by_insee(g, "00000"));
    ASSERT_NULL(fb_geo_by_insee(NULL, "69123"));
    fb_geo_free(g);
    return 0;
}

TEST_IMPL(geo_postcode_shared)
{
    LOAD_OR_SKIP(g);
    const fb_commune_t *out[5];
    /* 51300 (Vitry-le-François and around) is shared by dozens of communes: the count is the
     * total, `out` holds the five most populous. */
    size_t n = fb_geo_by_postcode(g, "51300", out, 5);
    ASSERT_GT(n, 40);
    ASSERT_STR_EQ(out[0]->name, "Vitry-le-François");
    expect_ranked(out, 5);
    for (size_t i = 0; i < 5; i++)
        ASSERT(has_postcode(out[i], "51300"));
    /* find() also offers the commune whose INSEE code is 51300, wherever its population puts it. */
    ASSERT_EQ(fb_geo_find(g, "51300", out, 5), n + 1);
    ASSERT_EQ(fb_geo_by_postcode(g, "51300", NULL, 0), n);

    ASSERT_EQ(fb_geo_by_postcode(g, "69001", out, 5), 1);
    ASSERT_STR_EQ(out[0]->insee, "69123");
    ASSERT_EQ(fb_geo_by_postcode(g, "75015", out, 5), 1);
    ASSERT_STR_EQ(out[0]->insee, "75056");
    ASSERT_EQ(fb_geo_by_postcode(g, "20000", out, 5), 1);
    ASSERT_STR_EQ(out[0]->insee, "2A004");
    ASSERT_EQ(fb_geo_by_postcode(g, "97400", out, 5), 1);
    ASSERT_STR_EQ(out[0]->insee, "97411");
    /* 97411 is a postal code of Saint-Paul (La Réunion) and Saint-Denis's INSEE code. */
    ASSERT_EQ(fb_geo_by_postcode(g, "97411", out, 5), 1);
    ASSERT_STR_EQ(out[0]->insee, "97415");
    ASSERT_EQ(fb_geo_by_postcode(g, "00000", out, 5), 0);
    ASSERT_EQ(fb_geo_by_postcode(g, "2A004", out, 5), 0);
    ASSERT_EQ(fb_geo_by_postcode(g, "6900", out, 5), 0);
    ASSERT_EQ(fb_geo_by_postcode(g, NULL, out, 5), 0);
    fb_geo_free(g);
    return 0;
}

/* The largest postal code groups: the engine lists at most FB__COMMUNE_LIST_MAX (12) communes
 * and asks for the name beyond (docs/internals/GEO.md, "Postal codes"). */
TEST_IMPL(geo_postcode_largest)
{
    LOAD_OR_SKIP(g);
    size_t largest = 0, over12 = 0, groups = 0;
    char best[6] = "", pc[6];
    for (unsigned v = 0; v < 100000; v++) {
        (void)snprintf(pc, sizeof(pc), "%05u", v);
        size_t n = fb_geo_by_postcode(g, pc, NULL, 0);
        groups += n > 0;
        over12 += n > 12;
        if (n > largest) {
            largest = n;
            memcpy(best, pc, sizeof(best));
        }
    }
    fprintf(stderr,
            "# postal codes: %zu, shared by more than 12 communes: %zu, largest: %s (%zu)\n",
            groups, over12, best, largest);
    ASSERT_STR_EQ(best, "51300");
    ASSERT_EQ(largest, 46);
    ASSERT_GT(over12, 500);
    /* 12300: nine communes, none of them Villefranche-de-Rouergue, whose INSEE code it is */
    const fb_commune_t *out[16];
    ASSERT_EQ(fb_geo_by_postcode(g, "12300", out, 16), 9);
    for (size_t i = 0; i < 9; i++)
        ASSERT(strcmp(out[i]->insee, "12300") != 0);
    ASSERT_STR_EQ(fb_geo_by_insee(g, "12300")->name, "Villefranche-de-Rouergue");
    ASSERT_EQ(fb_geo_find(g, "12300", out, 16), 10);
    ASSERT(fb_geo_has_postcode(out[1], "12300"));
    ASSERT(!fb_geo_has_postcode(fb_geo_by_insee(g, "12300"), "12300"));
    ASSERT(!fb_geo_has_postcode(NULL, "12300"));
    fb_geo_free(g);
    return 0;
}

/* Asserts that `text` names area `kind` `code` (or nothing, for FB_GEO_AREA_NONE). */
static void expect_area(const fb_geo_t *g, const char *text, bool one_digit,
                        fb_geo_area_kind_t kind, const char *code)
{
    fb_geo_area_t a;
    bool ok = fb_geo_area(g, text, one_digit, &a);
    if (ok != (kind != FB_GEO_AREA_NONE) || a.kind != kind ||
        (code && (!a.code || strcmp(a.code, code) != 0)))
        FB_TEST_FAIL("fb_geo_area(\"%s\"): %d %d %s, want %d %s", text, ok, a.kind,
                     a.code ? a.code : "-", kind, code ? code : "-");
}

/* Départements and régions typed instead of a commune (issue #19). */
TEST_IMPL(geo_area)
{
    LOAD_OR_SKIP(g);
    expect_area(g, "93", false, FB_GEO_AREA_DEP, "93");
    expect_area(g, "celle du 93", false, FB_GEO_AREA_DEP, "93");
    expect_area(g, "dans le 2A", false, FB_GEO_AREA_DEP, "2A");
    expect_area(g, "2b", false, FB_GEO_AREA_DEP, "2B");
    expect_area(g, "974", false, FB_GEO_AREA_DEP, "974");
    expect_area(g, "Seine-Saint-Denis", false, FB_GEO_AREA_DEP, "93");
    expect_area(g, "seine st denis", false, FB_GEO_AREA_NONE, NULL); /* no abbreviations here */
    expect_area(g, "la Creuse", false, FB_GEO_AREA_DEP, "23");
    expect_area(g, "CREUSE", false, FB_GEO_AREA_DEP, "23");
    expect_area(g, "le département de la Creuse", false, FB_GEO_AREA_DEP, "23");
    expect_area(g, "celle de Vendée svp", false, FB_GEO_AREA_DEP, "85");
    expect_area(g, "non, celle en Seine-Saint-Denis", false, FB_GEO_AREA_DEP, "93");
    expect_area(g, "dans l'Ain", false, FB_GEO_AREA_DEP, "01");
    expect_area(g, "Bretagne", false, FB_GEO_AREA_REGION, "53");
    expect_area(g, "en Île-de-France", false, FB_GEO_AREA_REGION, "11");
    expect_area(g, "la région Provence-Alpes-Côte d'Azur", false, FB_GEO_AREA_REGION, "93");
    expect_area(g, "20", false, FB_GEO_AREA_REGION, "94"); /* Corsica: either département */
    expect_area(g, "Corse", false, FB_GEO_AREA_REGION, "94");
    /* a département wins over the région of the same name */
    expect_area(g, "La Réunion", false, FB_GEO_AREA_DEP, "974");
    expect_area(g, "Guadeloupe", false, FB_GEO_AREA_DEP, "971");
    /* one digit: only after a leading word, or when the caller allows it */
    expect_area(g, "5", false, FB_GEO_AREA_NONE, NULL);
    expect_area(g, "5", true, FB_GEO_AREA_DEP, "05");
    expect_area(g, "dans le 5", false, FB_GEO_AREA_DEP, "05");
    expect_area(g, "05", false, FB_GEO_AREA_DEP, "05");
    /* anything else */
    static const char *const no[] = {
        "Saint-Denis", "Saint-Denis 93", "12300", "96",    "100",       "celle",
        "dans le",     "usine",          "",      "93 94", "Creuse 23", "celle du 93 ou du 94"};
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        expect_area(g, no[i], false, FB_GEO_AREA_NONE, NULL);
    fb_geo_area_t a;
    ASSERT(!fb_geo_area(g, NULL, false, &a));
    ASSERT(!fb_geo_area(NULL, "93", false, &a));
    ASSERT_EQ(a.kind, FB_GEO_AREA_NONE);

    ASSERT(fb_geo_area_by_code(g, FB_GEO_AREA_DEP, "23", &a));
    ASSERT_STR_EQ(a.name, "Creuse");
    ASSERT(fb_geo_in_area(fb_geo_by_insee(g, "23096"), &a));  /* Guéret */
    ASSERT(!fb_geo_in_area(fb_geo_by_insee(g, "80225"), &a)); /* Creuse, the commune (Somme) */
    ASSERT(fb_geo_area_by_code(g, FB_GEO_AREA_REGION, "53", &a));
    ASSERT_STR_EQ(a.name, "Bretagne");
    ASSERT(fb_geo_in_area(fb_geo_by_insee(g, "35238"), &a));  /* Rennes */
    ASSERT(!fb_geo_in_area(fb_geo_by_insee(g, "36024"), &a)); /* Bretagne, the commune (Indre) */
    ASSERT(!fb_geo_area_by_code(g, FB_GEO_AREA_DEP, "96", &a));
    ASSERT(!fb_geo_area_by_code(g, FB_GEO_AREA_NONE, "23", &a));
    ASSERT(!fb_geo_in_area(fb_geo_by_insee(g, "35238"), &a));
    fb_geo_free(g);
    return 0;
}

/* Asserts how `text` is found: `want` communes, the first `first`, by `match`. */
static void expect_how(const fb_geo_t *g, const char *text, size_t want, const char *first,
                       fb_geo_match_t match, bool qualified, bool dropped)
{
    const fb_commune_t *out[8] = {NULL};
    fb_geo_how_t how;
    size_t n = fb_geo_find_how(g, text, out, 8, &how);
    if (n != want || (first && strcmp(out[0]->insee, first) != 0) || how.match != match ||
        how.qualified != qualified || how.dropped != dropped)
        FB_TEST_FAIL("fb_geo_find_how(\"%s\"): %zu %s, match %d qualified %d dropped %d", text, n,
                     n ? out[0]->insee : "-", how.match, how.qualified, how.dropped);
    /* the same results as fb_geo_find() */
    const fb_commune_t *plain[8] = {NULL};
    ASSERT_EQ(fb_geo_find(g, text, plain, 8), n);
    for (size_t i = 0; i < n && i < 8; i++)
        ASSERT(plain[i] == out[i]);
}

/* How a result was found decides whether the engine may take it without asking (issue #19). */
TEST_IMPL(geo_find_how)
{
    LOAD_OR_SKIP(g);
    expect_how(g, "Lyon", 1, "69123", FB_GEO_MATCH_EXACT, false, false);
    expect_how(g, "saint etienne", 1, "42218", FB_GEO_MATCH_EXACT, false, false);
    expect_how(g, "Saint-Denis 93", 1, "93066", FB_GEO_MATCH_EXACT, true, false);
    expect_how(g, "93200 Saint-Denis", 1, "93066", FB_GEO_MATCH_EXACT, true, false);
    expect_how(g, "Saint-Denis La Réunion", 1, "97411", FB_GEO_MATCH_EXACT, true, false);
    /* the qualifier holds for no commune of that name: dropped, so the engine asks */
    expect_how(g, "celle du 93", 1, "41030", FB_GEO_MATCH_EXACT, false, true);
    expect_how(g, "Paris 15", 1, "75056", FB_GEO_MATCH_EXACT, false, true);
    expect_how(g, "usine", 1, "73303", FB_GEO_MATCH_TYPO, false, false); /* Ugine */
    expect_how(g, "Marseile", 1, "13055", FB_GEO_MATCH_TYPO, false, false);
    expect_how(g, "Havre", 1, "76351", FB_GEO_MATCH_ALIAS, false, false);
    expect_how(g, "Pierrefitte-sur-Seine", 1, "93066", FB_GEO_MATCH_ALIAS, false, false);
    expect_how(g, "Boulogne", 6, "92012", FB_GEO_MATCH_PREFIX, false, false);
    expect_how(g, "69001", 2, NULL, FB_GEO_MATCH_CODE, false, false);
    expect_how(g, "xyzzy plugh", 0, NULL, FB_GEO_MATCH_NONE, false, false);
    expect_how(g, "bonjour", 0, NULL, FB_GEO_MATCH_NONE, false, false);
    expect_how(g, "je suis le maire", 0, NULL, FB_GEO_MATCH_NONE, false, false);
    expect_how(g, "c est pour une ancienne mine", 0, NULL, FB_GEO_MATCH_NONE, false, false);
    /* "mairie": only typos (Magrie, Mairé, Marie), so the engine lists them, never picks */
    expect_how(g, "mairie", 3, NULL, FB_GEO_MATCH_TYPO, false, false);
    ASSERT_EQ(fb_geo_find_how(g, "Lyon", NULL, 0, NULL), 1);
    fb_geo_free(g);
    return 0;
}

TEST_IMPL(geo_find_codes)
{
    LOAD_OR_SKIP(g);
    /* A postal code and an INSEE code at once: Lyon 1er (postal) and Affoux (INSEE 69001) are
     * both candidates, the more populous first; the engine asks. */
    const fb_commune_t *out[4];
    ASSERT_EQ(fb_geo_find(g, "69001", out, 4), 2);
    ASSERT_STR_EQ(out[0]->name, "Lyon");
    ASSERT_STR_EQ(out[1]->name, "Affoux");
    expect_find(g, "69123", 1, "69123");
    expect_find(g, " 69123 ", 1, "69123");
    expect_find(g, "75056", 1, "75056");
    expect_find(g, "2A004", 1, "2A004");
    expect_find(g, "2a004", 1, "2A004");
    expect_find(g, "2B033", 1, "2B033");
    expect_find(g, "20004", 1, "2A004"); /* former code of Ajaccio */
    expect_find(g, "20000", 1, "2A004"); /* postal code */
    expect_find(g, "97400", 1, "97411");
    expect_find(g, "97611", 1, "97611");
    expect_find(g, "98818", 2, "98818"); /* Nouméa; also a postal code of Kouaoua */
    expect_find(g, "97411", 2, "97411"); /* INSEE Saint-Denis + postal Saint-Paul */
    expect_find(g, "93059", 1, "93066"); /* Pierrefitte-sur-Seine, merged into Saint-Denis */
    expect_find(g, "75115", 1, "75056"); /* an arrondissement's code leads to Paris */
    expect_find(g, "00000", 0, NULL);
    expect_find(g, "99999", 0, NULL);
    expect_find(g, "974", 0, NULL); /* a département alone is not a commune */
    expect_find(g, "2A", 0, NULL);
    fb_geo_free(g);
    return 0;
}

TEST_IMPL(geo_find_names)
{
    LOAD_OR_SKIP(g);
    static const char *const lyon[] = {"lyon", "LYON", "Lyon", "  lyon  ", "Lyon.", "« Lyon »"};
    for (size_t i = 0; i < sizeof(lyon) / sizeof(lyon[0]); i++)
        expect_find(g, lyon[i], 1, "69123");
    static const char *const stet[] = {"Saint Etienne", "saint-étienne", "SAINT-ÉTIENNE",
                                       "st etienne",    "St-Étienne",    "ST ETIENNE"};
    for (size_t i = 0; i < sizeof(stet) / sizeof(stet[0]); i++)
        expect_find(g, stet[i], 1, "42218");
    expect_find(g, "Villeneuve St Georges", 1, "94078");
    expect_find(g, "Boulogne s/ Mer", 1, "62160");
    expect_find(g, "Fontenay ss Bois", 1, "94033");
    expect_find(g, "L'Haÿ-les-Roses", 1, "94038");
    expect_find(g, "l’hay les roses", 1, "94038");
    expect_find(g, "L HAY LES ROSES", 1, "94038");
    expect_find(g, "Ste Marie 974", 1, "97418");
    expect_find(g, "Eu", 1, "76255"); /* two letters: exact only, and found */
    expect_find(g, "Nouméa", 1, "98818");
    expect_find(g, "Pointe-à-Pitre", 1, "97120");
    fb_geo_free(g);
    return 0;
}

TEST_IMPL(geo_find_homonyms)
{
    LOAD_OR_SKIP(g);
    const fb_commune_t *out[8];
    /* Four Saint-Denis: La Réunion, Seine-Saint-Denis, Aude, Gard; by population. */
    ASSERT_EQ(fb_geo_find(g, "Saint-Denis", out, 8), 4);
    ASSERT_STR_EQ(out[0]->insee, "97411");
    ASSERT_STR_EQ(out[1]->insee, "93066");
    ASSERT_STR_EQ(out[2]->insee, "11339");
    ASSERT_STR_EQ(out[3]->insee, "30247");
    /* `max` limits what is filled, not the count. */
    out[2] = NULL;
    ASSERT_EQ(fb_geo_find(g, "saint denis", out, 2), 4);
    ASSERT_STR_EQ(out[1]->insee, "93066");
    ASSERT_NULL(out[2]);
    ASSERT_EQ(fb_geo_find(g, "saint denis", NULL, 0), 4);

    static const char *const sd93[] = {"saint-denis 93",    "Saint-Denis (93)",
                                       "Saint-Denis, 93",   "93200 Saint-Denis",
                                       "Saint-Denis 93200", "Saint-Denis Seine-Saint-Denis",
                                       "st denis (93)",     "Saint-Denis en Île-de-France"};
    for (size_t i = 0; i < sizeof(sd93) / sizeof(sd93[0]); i++)
        expect_find(g, sd93[i], 1, "93066");
    static const char *const sd974[] = {"Saint-Denis (974)",         "Saint-Denis 974",
                                        "Saint-Denis La Réunion",    "saint denis reunion",
                                        "Saint-Denis de la Réunion", "Saint-Denis(974)",
                                        "97400 saint denis"};
    for (size_t i = 0; i < sizeof(sd974) / sizeof(sd974[0]); i++)
        expect_find(g, sd974[i], 1, "97411");
    expect_find(g, "Saint-Denis 11", 1, "11339");
    expect_find(g, "Saint-Denis Gard", 1, "30247");
    /* A qualifier that matches none of them is dropped rather than trusted. */
    expect_find(g, "Saint-Denis 75", 4, "97411");

    /* Nine Saint-Pierre, three of them overseas. */
    size_t n = fb_geo_find(g, "Saint-Pierre", out, 8);
    ASSERT_EQ(n, 9);
    expect_ranked(out, 8);
    ASSERT_STR_EQ(out[0]->insee, "97416");
    expect_find(g, "Saint-Pierre 972", 1, "97225");
    expect_find(g, "Saint-Pierre Martinique", 1, "97225");
    expect_find(g, "Saint-Pierre (975)", 1, "97502");
    expect_find(g, "Saint-Pierre 67", 1, "67429");
    expect_find(g, "Saint-Paul 974", 1, "97415");
    fb_geo_free(g);
    return 0;
}

TEST_IMPL(geo_find_corsica)
{
    LOAD_OR_SKIP(g);
    static const char *const ajaccio[] = {"Ajaccio",       "Ajaccio 2A",    "Ajaccio (2a)",
                                          "Ajaccio 20",    "Ajaccio Corse", "Ajaccio Corse-du-Sud",
                                          "20000 Ajaccio", "AJACCIO (2A)"};
    for (size_t i = 0; i < sizeof(ajaccio) / sizeof(ajaccio[0]); i++)
        expect_find(g, ajaccio[i], 1, "2A004");
    expect_find(g, "Bastia 2B", 1, "2B033");
    expect_find(g, "Bastia Haute-Corse", 1, "2B033");
    expect_find(g, "Bastia 2A", 1, "2B033"); /* wrong half of Corsica: dropped */
    expect_find(g, "Calvi", 1, "2B050");
    expect_find(g, "Porto Vecchio", 1, "2A247");
    expect_find(g, "Porto-Vechio", 1, "2A247"); /* typo */
    fb_geo_free(g);
    return 0;
}

TEST_IMPL(geo_find_overseas)
{
    LOAD_OR_SKIP(g);
    expect_find(g, "Basse-Terre", 1, "97105");
    expect_find(g, "Fort de France", 1, "97209");
    expect_find(g, "Cayenne", 1, "97302");
    expect_find(g, "Mamoudzou", 1, "97611");
    expect_find(g, "Mamoudzou Mayotte", 1, "97611");
    expect_find(g, "pointe a pitre guadeloupe", 1, "97120");
    expect_find(g, "Cayene", 1, "97302"); /* typo */
    const fb_commune_t *c = fb_geo_by_insee(g, "97611");
    ASSERT_STR_EQ(c->dep_name, "Mayotte");
    ASSERT(has_postcode(c, "97600"));
    fb_geo_free(g);
    return 0;
}

TEST_IMPL(geo_find_typos)
{
    LOAD_OR_SKIP(g);
    const fb_commune_t *out[4];
    ASSERT_GE(fb_geo_find(g, "Marseile", out, 4), 1);
    ASSERT_STR_EQ(out[0]->insee, "13055");
    expect_find(g, "Marseile 13", 1, "13055");
    expect_find(g, "Marsielle", 1, "13055"); /* transposition; Marsilly (2 edits) is dropped */
    expect_find(g, "Strasbourgg", 1, "67482");
    expect_find(g, "Toulous", 1, "31555");
    /* Bordeau is one edit from Bordeaux and from Bourdeau (Savoie): both, the city first. */
    ASSERT_EQ(fb_geo_find(g, "Bordeau", out, 4), 2);
    ASSERT_STR_EQ(out[0]->insee, "33063");
    ASSERT_STR_EQ(out[1]->insee, "73050");
    /* Exact names never bring their typo neighbours along (Marseillan is 2 edits away). */
    expect_find(g, "Marseille", 1, "13055");
    /* Short words must match exactly. */
    expect_find(g, "Ey", 0, NULL);
    expect_find(g, "xyzzy", 0, NULL);
    fb_geo_free(g);
    return 0;
}

TEST_IMPL(geo_find_loose)
{
    LOAD_OR_SKIP(g);
    const fb_commune_t *out[8];
    /* No commune is named just "Boulogne" today: the names starting with it, and the former
     * commune of that name (now Essarts-en-Bocage), by population. */
    size_t n = fb_geo_find(g, "Boulogne", out, 8);
    ASSERT_GE(n, 5);
    ASSERT_STR_EQ(out[0]->insee, "92012");
    ASSERT_STR_EQ(out[1]->insee, "62160");
    expect_ranked(out, n < 8 ? n : 8);
    expect_find(g, "Boulogne 62", 1, "62160");
    expect_find(g, "Boulogne 92", 1, "92012");
    expect_find(g, "Pierrefitte-sur-Seine", 1, "93066"); /* merged into Saint-Denis in 2025 */
    expect_find(g, "Havre", 1, "76351");                 /* Le Havre without its article */
    expect_find(g, "Lyon 3e", 1, "69123");
    expect_find(g, "Lyon 3ème arrondissement", 1, "69123");
    expect_find(g, "Paris 15e", 1, "75056");
    expect_find(g, "Paris 15", 1, "75056"); /* not Cantal (15): no Paris there */
    expect_find(g, "Marseille 8e", 1, "13055");
    /* Names that end like a département are still found whole. */
    expect_find(g, "Bar-sur-Aube", 1, "10033");
    expect_find(g, "Saint-Valery-sur-Somme", 1, "80721");
    fb_geo_free(g);
    return 0;
}

TEST_IMPL(geo_find_garbage)
{
    LOAD_OR_SKIP(g);
    const fb_commune_t *out[4];
    ASSERT_EQ(fb_geo_find(g, NULL, out, 4), 0);
    ASSERT_EQ(fb_geo_find(NULL, "Lyon", out, 4), 0);
    ASSERT_EQ(fb_geo_find(g, "", out, 4), 0);
    ASSERT_EQ(fb_geo_find(g, "   ", out, 4), 0);
    ASSERT_EQ(fb_geo_find(g, "()-,'", out, 4), 0);
    ASSERT_EQ(fb_geo_find(g, "\xff\xfe\xc3", out, 4), 0);
    char longtext[1000];
    memset(longtext, 'a', sizeof(longtext) - 1);
    longtext[sizeof(longtext) - 1] = '\0';
    ASSERT_EQ(fb_geo_find(g, longtext, out, 4), 0);
    memset(longtext, ' ', 150);
    memcpy(longtext + 150, "Lyon", 5);
    ASSERT_EQ(fb_geo_find(g, longtext, out, 4), 1);
    char many[81];
    for (int i = 0; i < 80; i++)
        many[i] = i % 2 ? ' ' : 'a'; /* 40 words: more than a name has */
    many[80] = '\0';
    ASSERT_EQ(fb_geo_find(g, many, out, 4), 0);

    /* Random bytes never crash it (sanitizers watch). */
    unsigned seed = 12345;
    char buf[64];
    for (int i = 0; i < 300; i++) {
        size_t len = 1 + (seed = seed * 1103515245u + 12345u) % 40;
        for (size_t k = 0; k < len; k++) {
            seed = seed * 1103515245u + 12345u;
            buf[k] = (char)(1 + (seed >> 16) % 255);
        }
        buf[len] = '\0';
        size_t n = fb_geo_find(g, buf, out, 4);
        for (size_t k = 0; k < n && k < 4; k++)
            ASSERT_NOT_NULL(out[k]->insee);
    }
    fb_geo_free(g);
    return 0;
}

TEST_IMPL(geo_commune_json)
{
    LOAD_OR_SKIP(g);
    json_t *j = fb_geo_commune_json(fb_geo_by_insee(g, "69123"));
    ASSERT_NOT_NULL(j);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "insee")), "69123");
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "nom")), "Lyon");
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "departement")), "69");
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "departement_nom")), "Rhône");
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "region")), "84");
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "region_nom")), "Auvergne-Rhône-Alpes");
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "epci")), "200046977");
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "epci_nom")), "Métropole de Lyon");
    ASSERT(json_is_integer(json_object_get(j, "population")));
    ASSERT_GT(json_integer_value(json_object_get(j, "population")), 400000);
    ASSERT_EQ(json_object_size(j), 9);
    json_decref(j);
    j = fb_geo_commune_json(fb_geo_by_insee(g, "22016"));
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "epci")), "");
    json_decref(j);
    ASSERT_NULL(fb_geo_commune_json(NULL));
    fb_geo_free(g);
    return 0;
}

/* Writes `len` bytes to a new temporary file whose path goes to `path` (64 bytes). */
static void write_temp(char *path, const void *data, size_t len)
{
    snprintf(path, 64, "/tmp/fb-geo-test.XXXXXX");
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    ASSERT_EQ(write(fd, data, len), (ssize_t)len);
    close(fd);
}

/* Loads `len` bytes of `data` from a temporary file: it must be refused with a message that
 * names the file and contains `why`. */
static void expect_refused(const void *data, size_t len, const char *why)
{
    char path[64];
    write_temp(path, data, len);
    fb_buf_t errors;
    fb_buf_init(&errors, 4096);
    fb_geo_t *g = fb_geo_load(path, &errors);
    unlink(path);
    if (g)
        FB_TEST_FAIL("a damaged index was accepted (expected \"%s\")", why);
    if (!strstr(fb_buf_str(&errors), path) || !strstr(fb_buf_str(&errors), why))
        FB_TEST_FAIL("error \"%s\" lacks \"%s\"", fb_buf_str(&errors), why);
    fb_buf_free(&errors);
}

TEST_IMPL(geo_load_refuses_damage)
{
    fb_buf_t errors;
    fb_buf_init(&errors, 4096);
    ASSERT_NULL(fb_geo_load("/nonexistent/communes.fbgeo", &errors));
    ASSERT(strstr(fb_buf_str(&errors), "/nonexistent/communes.fbgeo: cannot open") != NULL);
    ASSERT_NULL(fb_geo_load("/nonexistent/communes.fbgeo", NULL)); /* errors is optional */
    ASSERT_NULL(fb_geo_load(NULL, &errors));
    ASSERT_NULL(fb_geo_load("/tmp", &errors));
    fb_buf_free(&errors);
    expect_refused("", 0, "wrong size");
    char junk[4096];
    memset(junk, 'x', sizeof(junk));
    expect_refused(junk, sizeof(junk), "bad magic");

    if (access(GEO_PATH, R_OK) != 0)
        FB_TEST_FAIL("%s not built", GEO_PATH);
    FILE *f = fopen(GEO_PATH, "rb");
    ASSERT_NOT_NULL(f);
    fseek(f, 0, SEEK_END);
    size_t size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint32_t *file = fb_malloc(size);
    ASSERT_EQ(fread(file, 1, size, f), size);
    fclose(f);
    uint32_t *copy = fb_malloc(size);

    expect_refused(file, size / 2, "size"); /* truncated */
    memcpy(copy, file, size);
    copy[FB_GEO_HDR_VERSION]++;
    expect_refused(copy, size, "format version");
    memcpy(copy, file, size);
    copy[FB_GEO_HDR_BOM] = 0x04030201u;
    expect_refused(copy, size, "byte order");
    memcpy(copy, file, size);
    copy[FB_GEO_HDR_TABLE + 2 * FB_GEO_SEC_COMMUNES + 1] += 1000000; /* count past the end */
    expect_refused(copy, size, "section table");
    memcpy(copy, file, size);
    copy[FB_GEO_HDR_TABLE + 2 * FB_GEO_SEC_NAME_INDEX] += 2; /* misaligned section */
    expect_refused(copy, size, "section table");
    /* A string offset past the pool, a département index past the table, a postal code range
     * past the list, in the first commune. */
    uint32_t c0 = file[FB_GEO_HDR_TABLE + 2 * FB_GEO_SEC_COMMUNES] / 4;
    memcpy(copy, file, size);
    copy[c0 + FB_GEO_C_NAME] = 0x7FFFFFFFu;
    expect_refused(copy, size, "corrupt (record)");
    memcpy(copy, file, size);
    copy[c0 + FB_GEO_C_DEP] = 5000;
    expect_refused(copy, size, "corrupt (record)");
    memcpy(copy, file, size);
    copy[c0 + FB_GEO_C_PC_COUNT] = 0xFFFFFFF0u;
    expect_refused(copy, size, "postal codes");
    /* Two communes swapped: the INSEE order bisection relies on is broken. */
    memcpy(copy, file, size);
    uint32_t tmp[FB_GEO_C_WORDS];
    memcpy(tmp, copy + c0, sizeof(tmp));
    memcpy(copy + c0, copy + c0 + FB_GEO_C_WORDS, sizeof(tmp));
    memcpy(copy + c0 + FB_GEO_C_WORDS, tmp, sizeof(tmp));
    expect_refused(copy, size, "order");
    /* The untouched copy still loads. */
    memcpy(copy, file, size);
    char path[64];
    write_temp(path, copy, size);
    fb_geo_t *g = fb_geo_load(path, NULL);
    unlink(path);
    ASSERT_NOT_NULL(g);
    fb_geo_free(g);
    fb_free(copy);
    fb_free(file);
    return 0;
}

/* The whole index file, read into a new buffer (its size to *size); NULL when not built. */
static uint32_t *read_index_file(size_t *size)
{
    FILE *f = fopen(GEO_PATH, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint32_t *file = fb_malloc((size_t)len + 4);
    if (fread(file, 1, (size_t)len, f) != (size_t)len)
        FB_TEST_FAIL("cannot read %s", GEO_PATH);
    fclose(f);
    *size = (size_t)len;
    return file;
}

/* A small deterministic PRNG (xorshift64), so that the inputs are the same on every run. */
static uint64_t prng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Asserts that fb_geo_find() and the reference scan agree on `text`: same total, same order. */
static void expect_same_as_reference(const fb_geo_t *g, const char *text)
{
    const fb_commune_t *fast[16] = {NULL}, *ref[16] = {NULL};
    size_t nf = fb_geo_find(g, text, fast, 16);
    size_t nr = fb__geo_find_reference(g, text, ref, 16);
    if (nf != nr)
        FB_TEST_FAIL("fb_geo_find(\"%s\") found %zu, the reference scan %zu", text, nf, nr);
    for (size_t i = 0; i < nf && i < 16; i++)
        if (fast[i] != ref[i])
            FB_TEST_FAIL("fb_geo_find(\"%s\") result %zu is %s, the reference scan's %s", text, i,
                         fast[i]->insee, ref[i]->insee);
}

/* Writes `name` with one random edit (substitution, insertion, deletion or transposition of
 * adjacent bytes; at the very start one time in four) to `out` (256 bytes). */
static void random_edit(uint64_t *s, const char *name, char *out)
{
    static const char letters[] = "abcdefghijklmnopqrstuvwxyz -eeaio";
    size_t len = strlen(name);
    if (len > 200)
        len = 200;
    size_t pos = prng_next(s) % 4 == 0 ? 0 : (size_t)(prng_next(s) % (len + 1));
    char ch = letters[prng_next(s) % (sizeof(letters) - 1)];
    memcpy(out, name, len);
    out[len] = '\0';
    switch (prng_next(s) % 4) {
    case 0: /* substitution */
        if (pos < len)
            out[pos] = ch;
        break;
    case 1: /* insertion */
        memmove(out + pos + 1, out + pos, len - pos + 1);
        out[pos] = ch;
        break;
    case 2: /* deletion */
        if (pos < len)
            memmove(out + pos, out + pos + 1, len - pos);
        break;
    default: /* transposition */
        if (pos + 1 < len) {
            char t = out[pos];
            out[pos] = out[pos + 1];
            out[pos + 1] = t;
        }
        break;
    }
}

/*
 * fb_geo_find() (typo index) against fb__geo_find_reference() (the plain scan it replaced) on
 * thousands of inputs: commune names with one and two random edits, truncations, qualifiers,
 * codes, garbage, long sentences. FB_GEO_EQUIV_STRIDE=1 runs every commune (slow under
 * sanitizers; the default takes one commune in 32, about 7,000 inputs, to keep `make test`
 * well inside its time limits under ASan).
 */
TEST_IMPL(geo_find_fast_equals_reference)
{
    LOAD_OR_SKIP(g);
    size_t size = 0;
    uint32_t *file = read_index_file(&size);
    ASSERT_NOT_NULL(file);
    const char *strings = (const char *)file + file[FB_GEO_HDR_TABLE + 2 * FB_GEO_SEC_STRINGS];
    const uint32_t *communes = file + file[FB_GEO_HDR_TABLE + 2 * FB_GEO_SEC_COMMUNES] / 4;
    uint32_t ncommunes = file[FB_GEO_HDR_TABLE + 2 * FB_GEO_SEC_COMMUNES + 1];
    ASSERT_EQ(ncommunes, fb_geo_count(g));
    const char *env = getenv("FB_GEO_EQUIV_STRIDE");
    long want = env ? strtol(env, NULL, 10) : 0;
    uint32_t stride = want > 0 && want < 100000 ? (uint32_t)want : 32;
    static const char *const suffixes[] = {
        " 93", " (974)", " 2A", " 13", " La Réunion", " Corse", " 3e", " 69001", " dans le Var"};
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    char buf[512], edited[256];
    size_t inputs = 0;
    for (uint32_t i = 0; i < ncommunes; i += stride) {
        const uint32_t *c = communes + (size_t)i * FB_GEO_C_WORDS;
        const char *name = strings + c[FB_GEO_C_NAME];
        const char *insee = strings + c[FB_GEO_C_INSEE];
        random_edit(&seed, name, edited);
        expect_same_as_reference(g, edited);
        random_edit(&seed, edited, buf);
        expect_same_as_reference(g, buf); /* two edits */
        snprintf(buf, sizeof(buf), "%s%s", edited, suffixes[prng_next(&seed) % 9]);
        expect_same_as_reference(g, buf);
        snprintf(buf, sizeof(buf), "%s", name);
        buf[prng_next(&seed) % (strlen(name) + 1)] = '\0'; /* truncation */
        expect_same_as_reference(g, buf);
        snprintf(buf, sizeof(buf), "j'habite à %s depuis 2019", edited);
        expect_same_as_reference(g, buf);
        expect_same_as_reference(g, insee);
        inputs += 6;
    }
    /* Garbage: random printable bytes and random words. */
    for (int i = 0; i < 1500; i++) {
        size_t len = 1 + prng_next(&seed) % 40;
        for (size_t k = 0; k < len; k++)
            buf[k] = (char)(' ' + prng_next(&seed) % 95);
        buf[len] = '\0';
        expect_same_as_reference(g, buf);
        snprintf(buf, sizeof(buf), "%05u", (unsigned)(prng_next(&seed) % 100000));
        expect_same_as_reference(g, buf);
        inputs += 2;
    }
    static const char *const fixed[] = {
        "Marseile",
        "Mrseille",
        "aMrseille",
        "zzzzqqq",
        "<script>alert(1)</script>",
        "lyon",
        "saint-denis",
        "Les Jardins du Confluent",
        "Saint-Denis 93",
        "Saint-Denis 75",
        "93200 Saint-Denis",
        "st denis de la reunion",
        "Paris 15",
        "Lyon 3e",
        "2a004",
        "2B",
        "1234",
        "12345678901234567890",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "Saint-Germain-en-Lai",
        "Saint-Remy-en-Bouzemont-Saint-Genest-et-Isso",
        "Ey",
        "y",
        "Bordeau",
        "Strasbourgg",
        "e e e e e e e e e e e e e e e e e e e e e e e e",
        "je voudrais savoir si vous livrez a Marseile demain matin vers dix heures"};
    for (size_t i = 0; i < FB_ARRAY_SIZE(fixed); i++)
        expect_same_as_reference(g, fixed[i]);
    ASSERT_GT(inputs, 5000);
    fb_free(file);
    fb_geo_free(g);
    return 0;
}
