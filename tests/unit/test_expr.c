/* SPDX-License-Identifier: MIT */
/*
 * test_expr.c - the expression language of dialog files (daemon/engine/expr.c): precedence,
 * comparisons across types, membership, nsp and connu(), paths, truthiness, every parse error
 * with its exact position and message, the depth limit, and the names an expression mentions.
 */
#include <string.h>

#include <jansson.h>

#include "common/utf8.h"
#include "engine/expr.h"
#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "task.h"

/* A small session: answers of every type and two tags. */
static const char *const answers_json =
    "{\"surface\": 2500.5, \"nombre\": 3000, \"zero\": 0, \"pollution\": true, \"non_pollue\": "
    "false, \"usage\": \"industriel\", \"date\": \"2026-05-01\", \"inconnu\": \"__nsp__\", "
    "\"chaine_vide\": \"\", \"vide_liste\": [], \"vide_obj\": {}, \"liste\": [\"habitat\", "
    "\"commerce\"], \"commune\": {\"nom\": \"Lyon\", \"departement\": \"69\", \"insee\": "
    "\"69123\"}}";

struct env {
    json_t *answers;
    int tag_calls;
};

static const json_t *env_lookup(void *arg, const char *name)
{
    const struct env *e = arg;
    return fb_expr_lookup_path(e->answers, name);
}

static bool env_has_tag(void *arg, const char *tag)
{
    struct env *e = arg;
    e->tag_calls++;
    return !strcmp(tag, "site_industriel") || !strcmp(tag, "grand_site");
}

static struct env the_env;
static fb_expr_env_t env = {env_lookup, env_has_tag, &the_env};

static void env_setup(void)
{
    json_error_t err;
    the_env.answers = json_loads(answers_json, 0, &err);
    ASSERT_NOT_NULL(the_env.answers);
    the_env.tag_calls = 0;
}

static void env_teardown(void)
{
    json_decref(the_env.answers);
    the_env.answers = NULL;
}

/* Parses `src` (which must be valid) and returns its truth. */
static bool truth(const char *src)
{
    fb_buf_t errors;
    fb_buf_init(&errors, 4096);
    fb_expr_t *e = fb_expr_parse(src, 1, 1, &errors);
    if (!e)
        FB_TEST_FAIL("parsing <%s> failed: %s", src, fb_buf_str(&errors));
    ASSERT_EQ(errors.len, 0);
    bool b = fb_expr_true(e, &env);
    fb_expr_free(e);
    fb_buf_free(&errors);
    return b;
}

#define ASSERT_TRUE_EXPR(src)                                                                      \
    do {                                                                                           \
        if (!truth(src))                                                                           \
            FB_TEST_FAIL("<%s> should be true", src);                                              \
    } while (0)

#define ASSERT_FALSE_EXPR(src)                                                                     \
    do {                                                                                           \
        if (truth(src))                                                                            \
            FB_TEST_FAIL("<%s> should be false", src);                                             \
    } while (0)

/* Evaluates `src` with fb_expr_eval() and checks its compact JSON. */
static void check_value(const char *src, const char *want)
{
    fb_expr_t *e = fb_expr_parse(src, 1, 1, NULL);
    ASSERT_NOT_NULL(e);
    json_t *v = fb_expr_eval(e, &env);
    ASSERT_NOT_NULL(v);
    char *got = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (strcmp(got, want) != 0)
        FB_TEST_FAIL("<%s> evaluates to %s, not %s", src, got, want);
    free(got);
    json_decref(v);
    fb_expr_free(e);
}

/* Parses `src` at (line, col) and checks that it fails with exactly `want`. */
static void check_error_at(const char *src, int line, int col, const char *want)
{
    fb_buf_t errors;
    fb_buf_init(&errors, 4096);
    fb_expr_t *e = fb_expr_parse(src, line, col, &errors);
    if (e)
        FB_TEST_FAIL("<%s> should not parse", src);
    ASSERT_STR_EQ(fb_buf_str(&errors), want);
    fb_buf_free(&errors);
    /* Without an error buffer it fails the same, silently. */
    ASSERT_NULL(fb_expr_parse(src, line, col, NULL));
}

static void check_error(const char *src, const char *want)
{
    check_error_at(src, 1, 1, want);
}

TEST_IMPL(expr_precedence)
{
    env_setup();
    /* "et" binds tighter than "ou": (vrai ou faux) et faux would be false. */
    ASSERT_TRUE_EXPR("vrai ou faux et faux");
    ASSERT_TRUE_EXPR("faux et faux ou vrai");
    ASSERT_FALSE_EXPR("(vrai ou faux) et faux");
    /* "non" binds tighter than "et" and "ou"... */
    ASSERT_FALSE_EXPR("non faux et faux"); /* non (faux et faux) would be true */
    ASSERT_TRUE_EXPR("non vrai ou vrai");  /* non (vrai ou vrai) would be false */
    /* ...but looser than comparisons: (non 1) == 2 would be false. */
    ASSERT_TRUE_EXPR("non 1 == 2");
    ASSERT_TRUE_EXPR("non non vrai");
    ASSERT_FALSE_EXPR("non non non vrai");
    /* Long chains are left to right and flat. */
    ASSERT_TRUE_EXPR("faux ou faux ou faux ou vrai");
    ASSERT_FALSE_EXPR("vrai et vrai et vrai et faux");
    /* English aliases and case-insensitive keywords. */
    ASSERT_TRUE_EXPR("true or false and false");
    ASSERT_FALSE_EXPR("not false and false");
    ASSERT_TRUE_EXPR("VRAI OU FAUX ET FAUX");
    ASSERT_FALSE_EXPR("Non Faux Et Faux");
    ASSERT_TRUE_EXPR("usage DANS ['industriel'] AND Known(surface) or NULL");
    ASSERT_TRUE_EXPR("pollution et usage == \"industriel\" et #site_industriel");
    /* et/ou give booleans, not an operand. */
    check_value("1 et 2", "true");
    check_value("0 ou 'x'", "true");
    check_value("0 ou ''", "false");
    /* Evaluation stops early: the tag is never asked for. */
    the_env.tag_calls = 0;
    ASSERT_FALSE_EXPR("faux et #site_industriel");
    ASSERT_TRUE_EXPR("vrai ou #site_industriel");
    ASSERT_EQ(the_env.tag_calls, 0);
    ASSERT_TRUE_EXPR("vrai et #site_industriel");
    ASSERT_EQ(the_env.tag_calls, 1);
    env_teardown();
    return 0;
}

TEST_IMPL(expr_compare_types)
{
    env_setup();
    ASSERT_TRUE_EXPR("3 == 3.0");
    ASSERT_TRUE_EXPR("nombre == 3000");
    ASSERT_TRUE_EXPR("surface > 1000 et surface < 2500.6");
    ASSERT_TRUE_EXPR("2 < 10");      /* numbers compare as numbers... */
    ASSERT_FALSE_EXPR("'2' < '10'"); /* ...strings byte by byte */
    ASSERT_TRUE_EXPR("3 >= 3 et 3 <= 3 et non 3 > 3 et non 3 < 3");
    ASSERT_TRUE_EXPR("nombre != 3 et 2.5 != 2");
    ASSERT_FALSE_EXPR("3 != 3.0");
    /* A number against a non-number: never equal, so != holds; orderings are false. */
    ASSERT_FALSE_EXPR("3 == '3'");
    ASSERT_TRUE_EXPR("3 != '3'");
    ASSERT_FALSE_EXPR("nombre > '2'");
    ASSERT_FALSE_EXPR("vrai == 1");
    ASSERT_TRUE_EXPR("manquant != 3");
    ASSERT_FALSE_EXPR("inconnu < 5");
    /* The dialog idiom: a number answer is not nsp. */
    ASSERT_TRUE_EXPR("surface != nsp et surface >= 2000");
    ASSERT_FALSE_EXPR("inconnu != nsp");
    /* Strings, booleans, null. */
    ASSERT_TRUE_EXPR("usage == 'industriel'");
    ASSERT_TRUE_EXPR("usage != \"commerce\"");
    ASSERT_TRUE_EXPR("pollution == vrai et non_pollue == faux");
    ASSERT_TRUE_EXPR("manquant == rien et manquant == null");
    ASSERT_TRUE_EXPR("manquant != 'x'");
    ASSERT_FALSE_EXPR("vrai < faux");
    ASSERT_FALSE_EXPR("rien < 'a'");
    ASSERT_TRUE_EXPR("[1, 'a'] == [1, 'a']");
    ASSERT_TRUE_EXPR("'l\\'eau' == \"l'eau\" et 'a\\\\b' != 'ab'");
    /* ISO dates order as strings, whatever their precision. */
    ASSERT_TRUE_EXPR("date < \"2026-10-01\"");
    ASSERT_TRUE_EXPR("date >= \"2026-05\"");
    ASSERT_FALSE_EXPR("date > \"2027\"");
    ASSERT_TRUE_EXPR("\"2026-12-31\" < \"2027-01-01\"");
    /* "je ne sais pas" is never ordered (its spelling would sort after every date). */
    ASSERT_FALSE_EXPR("inconnu > '2000'");
    ASSERT_FALSE_EXPR("inconnu < '2000'");
    env_teardown();
    return 0;
}

TEST_IMPL(expr_in)
{
    env_setup();
    ASSERT_TRUE_EXPR("usage dans [\"industriel\", \"commerce\"]");
    ASSERT_FALSE_EXPR("usage dans ['habitat']");
    ASSERT_FALSE_EXPR("usage dans []");
    ASSERT_TRUE_EXPR("commune.departement in ['13', '69']");
    ASSERT_TRUE_EXPR("3 dans [1, 2, 3.0]");
    ASSERT_FALSE_EXPR("'3' dans [3]");
    ASSERT_TRUE_EXPR("vrai dans [1 == 2, 1 == 1]");
    /* A multiple-choice answer (an array). */
    ASSERT_TRUE_EXPR("'habitat' dans liste");
    ASSERT_TRUE_EXPR("\"commerce\" in liste");
    ASSERT_FALSE_EXPR("'bureaux' dans liste");
    ASSERT_FALSE_EXPR("'a' dans vide_liste");
    /* Anything but an array holds nothing: no substring search, no error. */
    ASSERT_FALSE_EXPR("'indus' dans usage");
    ASSERT_FALSE_EXPR("'a' dans manquant");
    ASSERT_FALSE_EXPR("'nom' dans commune");
    ASSERT_TRUE_EXPR("non ('bureaux' dans liste)");
    /* A list of string literals only is searched in its sorted set: the same answers as the
     * comparison item by item (only a string equals a string; nsp is its string). */
    ASSERT_TRUE_EXPR("usage dans ['zz', 'a', 'industriel', 'commerce', 'b']");
    ASSERT_TRUE_EXPR("usage dans ['industriel', 'industriel']");
    ASSERT_FALSE_EXPR("usage dans ['industrie', 'industriels', 'Industriel', '']");
    ASSERT_TRUE_EXPR("chaine_vide dans ['x', '']");
    ASSERT_TRUE_EXPR("inconnu dans ['a', nsp]");
    ASSERT_FALSE_EXPR("inconnu dans ['a', 'b']");
    ASSERT_FALSE_EXPR("surface dans ['1200', '']");
    ASSERT_FALSE_EXPR("liste dans ['habitat', 'commerce']");
    ASSERT_FALSE_EXPR("commune dans ['Lyon', '69']");
    ASSERT_FALSE_EXPR("manquant dans ['', 'null']");
    ASSERT_FALSE_EXPR("vrai dans ['vrai', 'oui']");
    env_teardown();
    return 0;
}

TEST_IMPL(expr_nsp_known)
{
    env_setup();
    ASSERT_TRUE_EXPR("inconnu == nsp");
    ASSERT_TRUE_EXPR("inconnu == NSP et inconnu == '__nsp__'");
    ASSERT_FALSE_EXPR("surface == nsp");
    ASSERT_TRUE_EXPR("connu(surface)");
    ASSERT_TRUE_EXPR("known(non_pollue)"); /* answered false is known */
    ASSERT_TRUE_EXPR("connu(chaine_vide)");
    ASSERT_FALSE_EXPR("connu(inconnu)");
    ASSERT_FALSE_EXPR("connu(manquant)");
    ASSERT_TRUE_EXPR("connu(commune.departement)");
    ASSERT_FALSE_EXPR("connu(commune.absent)");
    ASSERT_TRUE_EXPR("non connu(inconnu) et connu ( surface )");
    /* nsp is not a yes: falsy, as expr.h's truthiness rule says. */
    ASSERT_FALSE_EXPR("inconnu");
    check_value("nsp", "\"__nsp__\"");
    env_teardown();
    return 0;
}

TEST_IMPL(expr_paths_and_missing)
{
    env_setup();
    ASSERT_TRUE_EXPR("commune.departement == '69'");
    check_value("commune.departement", "\"69\"");
    check_value("commune", "{\"nom\":\"Lyon\",\"departement\":\"69\",\"insee\":\"69123\"}");
    check_value("manquant", "null");
    check_value("commune.absent", "null");
    check_value("commune.nom.x", "null"); /* "nom" is a string: no fields */
    check_value("manquant.x.y", "null");
    check_value("usage", "\"industriel\"");
    check_value("[1, 'a', vrai, usage, rien, [2.5]]", "[1,\"a\",true,\"industriel\",null,[2.5]]");
    check_value("2.5", "2.5");
    check_value("3000", "3000");
    check_value("007", "7");
    check_value("#site_industriel", "true");
    check_value("#autre", "false");
    check_value("surface > 1000", "true");

    /* No env at all: every name is null, every tag absent. */
    fb_expr_t *e = fb_expr_parse("x == rien et non #t", 1, 1, NULL);
    ASSERT_NOT_NULL(e);
    ASSERT(fb_expr_true(e, NULL));
    fb_expr_free(e);
    fb_expr_env_t empty = {NULL, NULL, NULL};
    e = fb_expr_parse("connu(x) ou #t", 1, 1, NULL);
    ASSERT(!fb_expr_true(e, &empty));
    fb_expr_free(e);

    /* The lookup helper itself. */
    ASSERT_NULL(fb_expr_lookup_path(NULL, "a"));
    ASSERT_STR_EQ(json_string_value(fb_expr_lookup_path(the_env.answers, "commune.insee")),
                  "69123");
    ASSERT_NULL(fb_expr_lookup_path(the_env.answers, "commune.insee.x"));
    ASSERT_NULL(fb_expr_lookup_path(the_env.answers, "liste.x"));
    env_teardown();
    return 0;
}

TEST_IMPL(expr_truthiness)
{
    static const struct {
        const char *src;
        bool want;
    } table[] = {
        {"faux", false},       {"vrai", true},     {"rien", false},        {"0", false},
        {"0.0", false},        {"1", true},        {"0.5", true},          {"''", false},
        {"'x'", true},         {"' '", true},      {"[]", false},          {"[0]", true},
        {"[[]]", true},        {"commune", true},  {"vide_obj", true},     {"vide_liste", false},
        {"liste", true},       {"zero", false},    {"chaine_vide", false}, {"manquant", false},
        {"non_pollue", false}, {"inconnu", false}, {"surface", true},      {"#grand_site", true},
    };
    env_setup();
    for (size_t i = 0; i < FB_ARRAY_SIZE(table); i++) {
        if (truth(table[i].src) != table[i].want)
            FB_TEST_FAIL("truthiness of <%s> should be %d", table[i].src, table[i].want);
    }
    ASSERT(!fb_expr_truthy(NULL));
    ASSERT(!fb_expr_truthy(json_null()));
    env_teardown();
    return 0;
}

TEST_IMPL(expr_parse_errors)
{
    /* Unterminated string: at its opening quote. */
    check_error("usage == \"indus", "1:10: texte entre guillemets non terminé (il manque le \" "
                                    "fermant)\n");
    check_error("'abc", "1:1: texte entre guillemets non terminé (il manque le ' fermant)\n");
    check_error("'a\\n'",
                "1:3: échappement invalide : seuls \\\", \\' et \\\\ sont permis dans un texte\n");
    /* Unexpected token where a value should be. */
    check_error("x == == 3", "1:6: valeur attendue, pas « == »\n");
    check_error("x et", "1:5: valeur attendue, pas la fin de l'expression\n");
    check_error("x == et", "1:6: valeur attendue, pas « et »\n");
    check_error("x == 'a' ou , y", "1:13: valeur attendue, pas « , »\n");
    check_error("[1,]", "1:4: valeur attendue, pas « ] »\n");
    /* Missing ')': where it was expected, naming the '('. */
    check_error("(a et b", "1:8: « ) » manquante pour fermer la « ( » de 1:1 (pas la fin de "
                           "l'expression)\n");
    check_error("(a et (b ou c) d", "1:16: « ) » manquante pour fermer la « ( » de 1:1 (pas « d "
                                    "»)\n");
    check_error("connu(x", "1:8: « ) » manquante pour fermer la « ( » de 1:6 (pas la fin de "
                           "l'expression)\n");
    check_error("x)", "1:2: « ) » en trop : aucune « ( » à fermer\n");
    /* Trailing garbage. */
    check_error("a b", "1:3: « b » inattendu après la fin de l'expression\n");
    check_error("vrai 'x'", "1:6: un texte entre guillemets inattendu après la fin de "
                            "l'expression\n");
    check_error("surface > 2,5", "1:12: « , » inattendue : un nombre décimal s'écrit avec un "
                                 "point (2.5)\n");
    check_error("1 < x < 3", "1:7: « < » inattendu : les comparaisons ne s'enchaînent pas, "
                             "reliez-les par « et »\n");
    /* Bad '#'. */
    check_error("# x", "1:1: « # » doit être suivi du nom d'un signal (a-z, 0-9, _)\n");
    check_error("x et #", "1:6: « # » doit être suivi du nom d'un signal (a-z, 0-9, _)\n");
    check_error("#Grand_Site", "1:1: signal invalide « #Grand_Site » : un signal s'écrit en "
                               "minuscules sans accents, chiffres et _\n");
    /* Empty expression: at the start. */
    check_error("", "1:1: expression vide\n");
    check_error_at("  \n\t ", 3, 5, "3:5: expression vide\n");
    /* Other lexical errors. */
    check_error("x = 3", "1:3: « = » inattendu : pour comparer, écrivez « == »\n");
    check_error("!x", "1:1: « ! » inattendu : écrivez « != » pour comparer, ou « non »\n");
    check_error("x == 3 €", "1:8: caractère inattendu « € »\n");
    check_error("x == \x01", "1:6: caractère inattendu U+0001\n");
    check_error("x == 'caf\xc3'", "1:10: UTF-8 invalide\n");
    check_error("Surface > 3", "1:1: nom invalide « Surface » : un nom s'écrit en minuscules "
                               "sans accents, chiffres et _\n");
    check_error("commune.", "1:8: nom de champ attendu après « . »\n");
    check_error("nsp.x", "1:1: « nsp » est un mot réservé, pas le nom d'une réponse\n");
    check_error("surface > 10000m2", "1:11: nombre invalide « 10000m2 »\n");
    check_error("connu surface", "1:7: « ( » attendue après « connu », pas « surface »\n");
    check_error("known('x')", "1:7: known() attend le nom d'une réponse, pas un texte entre "
                              "guillemets\n");
    check_error("[1 2]", "1:4: « , » ou « ] » attendu dans la liste ouverte à 1:1, pas « 2 »\n");
    /* A number too large for a double: named, cut at 40 characters. */
    char big[420];
    memset(big, '9', 400);
    big[400] = '\0';
    char want[128];
    snprintf(want, sizeof(want), "1:1: nombre trop grand « %.40s... »\n", big);
    check_error(big, want);
    /* Positions: from the given start, in characters, across lines. */
    check_error_at("x ==", 7, 12, "7:16: valeur attendue, pas la fin de l'expression\n");
    check_error("'été' == x y", "1:12: « y » inattendu après la fin de l'expression\n");
    check_error_at("a et\n  (b ou", 2, 5, "3:8: valeur attendue, pas la fin de l'expression\n");
    fb_buf_t errors;
    fb_buf_init(&errors, 4096);
    fb_expr_pos_t pos = {2, 5, 3}; /* lines after the first start at column 3 */
    ASSERT_NULL(fb_expr_parse_span("a et\n(b ou", 10, pos, &errors));
    ASSERT_STR_EQ(fb_buf_str(&errors), "3:8: valeur attendue, pas la fin de l'expression\n");
    /* A span need not be NUL-terminated, and a NUL inside is an error. */
    fb_buf_reset(&errors);
    pos = (fb_expr_pos_t){1, 1, 1};
    fb_expr_t *e = fb_expr_parse_span("vrai ou #x", 4, pos, &errors);
    ASSERT_NOT_NULL(e);
    ASSERT_EQ(errors.len, 0);
    fb_expr_free(e);
    ASSERT_NULL(fb_expr_parse_span("x == \0", 6, pos, &errors));
    ASSERT_STR_EQ(fb_buf_str(&errors), "1:6: caractère inattendu U+0000\n");
    fb_buf_free(&errors);
    return 0;
}

/* Builds "(" x n "x" ")" x n, or "non " x n "x". */
static char *nested(const char *open, const char *close, int n)
{
    fb_buf_t b;
    fb_buf_init(&b, 1u << 16);
    for (int i = 0; i < n; i++)
        ASSERT_OK(fb_buf_puts(&b, open));
    ASSERT_OK(fb_buf_puts(&b, "x"));
    for (int i = 0; i < n; i++)
        ASSERT_OK(fb_buf_puts(&b, close));
    return fb_buf_take(&b);
}

TEST_IMPL(expr_depth_limit)
{
    char *s = nested("(", ")", FB_EXPR_MAX_DEPTH);
    fb_expr_t *e = fb_expr_parse(s, 1, 1, NULL);
    ASSERT_NOT_NULL(e);
    ASSERT(!fb_expr_true(e, NULL));
    fb_expr_free(e);
    fb_free(s);

    s = nested("(", ")", FB_EXPR_MAX_DEPTH + 1);
    check_error(s, "1:65: expression trop imbriquée (plus de 64 niveaux)\n");
    fb_free(s);

    s = nested("non ", "", FB_EXPR_MAX_DEPTH);
    e = fb_expr_parse(s, 1, 1, NULL);
    ASSERT_NOT_NULL(e);
    ASSERT(!fb_expr_true(e, NULL)); /* an even number of "non" over null */
    fb_expr_free(e);
    fb_free(s);
    s = nested("non ", "", FB_EXPR_MAX_DEPTH + 1);
    check_error(s, "1:257: expression trop imbriquée (plus de 64 niveaux)\n");
    fb_free(s);

    s = nested("[", "]", 100);
    check_error(s, "1:65: expression trop imbriquée (plus de 64 niveaux)\n");
    fb_free(s);

    /* Thousands of operands are not nesting: and/or chains are flat. */
    fb_buf_t b;
    fb_buf_init(&b, 1u << 20);
    for (int i = 0; i < 20000; i++)
        ASSERT_OK(fb_buf_puts(&b, "faux ou "));
    ASSERT_OK(fb_buf_puts(&b, "vrai"));
    e = fb_expr_parse(fb_buf_str(&b), 1, 1, NULL);
    ASSERT_NOT_NULL(e);
    ASSERT(fb_expr_true(e, NULL));
    fb_expr_free(e);
    fb_buf_free(&b);
    return 0;
}

struct names {
    fb_buf_t out;
};

static void collect(void *arg, const char *name, bool is_tag, int line, int col)
{
    struct names *n = arg;
    ASSERT_OK(fb_buf_printf(&n->out, "%s%s@%d:%d ", is_tag ? "#" : "", name, line, col));
}

TEST_IMPL(expr_names)
{
    struct names n;
    fb_buf_init(&n.out, 4096);
    fb_expr_t *e = fb_expr_parse("commune.departement == '69' et #grand_site\n"
                                 "  ou connu(surface.valeur) et usage dans [liste, autre.x, 3]",
                                 4, 10, NULL);
    ASSERT_NOT_NULL(e);
    fb_expr_names(e, collect, &n);
    ASSERT_STR_EQ(fb_buf_str(&n.out), "commune@4:10 #grand_site@4:41 surface@5:12 usage@5:31 "
                                      "liste@5:43 autre@5:50 ");
    fb_expr_free(e);
    fb_buf_free(&n.out);
    fb_expr_names(NULL, collect, &n); /* nothing, no crash */
    return 0;
}

static void collect_cmp(void *arg, const char *name, const char *str, int line, int col)
{
    fb_buf_t *out = arg;
    ASSERT_OK(fb_buf_printf(out, "%s=%s@%d:%d ", name, str, line, col));
}

/* The strings compared with plain names, for the loader's option-id check. */
TEST_IMPL(expr_compared_strings)
{
    fb_buf_t out;
    fb_buf_init(&out, 4096);
    fb_expr_t *e = fb_expr_parse("usage == \"a\" ou \"b\" != usage ou usage dans [\"c\", nsp, 3, "
                                 "\"d\"]\n ou \"e\" dans projets ou non (x == \"f\") ou "
                                 "commune.departement == \"69\" ou usage == nsp ou usage < \"g\" "
                                 "ou \"h\" == \"i\" ou usage dans autre",
                                 2, 5, NULL);
    ASSERT_NOT_NULL(e);
    fb_expr_compared_strings(e, collect_cmp, &out);
    ASSERT_STR_EQ(fb_buf_str(&out),
                  "usage=a@2:14 usage=b@2:21 usage=c@2:49 usage=d@2:62 projets=e@3:5 x=f@3:35 ");
    fb_expr_free(e);
    fb_expr_compared_strings(NULL, collect_cmp, &out); /* nothing, no crash */
    fb_buf_free(&out);
    return 0;
}

TEST_IMPL(expr_eval_borrowed)
{
    env_setup();
    json_t *own;
    fb_expr_t *e = fb_expr_parse("commune", 1, 1, NULL);
    const json_t *v = fb_expr_eval_borrowed(e, &env, &own);
    ASSERT_NULL(own);
    ASSERT(v == json_object_get(the_env.answers, "commune")); /* no copy */
    json_t *copy = fb_expr_eval(e, &env);
    ASSERT(copy != v); /* fb_expr_eval() hands out a value of its own */
    ASSERT(json_equal(copy, v));
    json_decref(copy);
    fb_expr_free(e);

    e = fb_expr_parse("'texte'", 1, 1, NULL);
    v = fb_expr_eval_borrowed(e, &env, &own);
    ASSERT_NULL(own);
    ASSERT_STR_EQ(json_string_value(v), "texte");
    ASSERT(fb_expr_eval_borrowed(e, &env, &own) == v); /* the literal itself */
    fb_expr_free(e);

    e = fb_expr_parse("[usage, 1]", 1, 1, NULL);
    v = fb_expr_eval_borrowed(e, &env, &own);
    ASSERT_NOT_NULL(own);
    ASSERT(v == own);
    ASSERT_EQ(json_array_size(v), 2);
    json_decref(own);
    fb_expr_free(e);

    ASSERT(fb_expr_is_keyword("DANS", 4));
    ASSERT(fb_expr_is_keyword("connu", 5));
    ASSERT(!fb_expr_is_keyword("connue", 6));
    ASSERT(!fb_expr_is_keyword("con", 3));
    env_teardown();
    return 0;
}

TEST_IMPL(expr_positions_utf8)
{
    fb_expr_pos_t p = {1, 1, 1};
    fb_expr_pos_advance(&p, "été\n  ab", 8);
    ASSERT_EQ(p.line, 2);
    ASSERT_EQ(p.col, 3);
    p = (fb_expr_pos_t){5, 10, 4};
    fb_expr_pos_advance(&p, "x\n\nœuf", 7);
    ASSERT_EQ(p.line, 7);
    ASSERT_EQ(p.col, 7);
    ASSERT_EQ(fb_utf8_check("abc", 3), 3);
    ASSERT_EQ(fb_utf8_check("a\xc3\xa9z", 4), 4);
    ASSERT_EQ(fb_utf8_check("ab\xc0\x80", 4), 2);    /* overlong */
    ASSERT_EQ(fb_utf8_check("a\xed\xa0\x80", 4), 1); /* surrogate */
    ASSERT_EQ(fb_utf8_check("a\0b", 3), 1);
    ASSERT_EQ(fb_utf8_check("ab\xe2\x82", 4), 2); /* cut short */
    return 0;
}
