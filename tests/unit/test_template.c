/* SPDX-License-Identifier: MIT */
/*
 * test_template.c - dialog messages (daemon/engine/template.c): values as French text,
 * conditions and loops, errors with exact positions across lines, the light markup in plain text
 * and HTML, hostile text and values, the output cap, and the names a template uses.
 */
#include <string.h>

#include <jansson.h>

#include "engine/template.h"
#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "task.h"

static const char *const answers_json =
    "{\"surface\": 2500.5, \"nombre\": 3000, \"pollution\": true, \"non_pollue\": false, "
    "\"usage\": \"industriel\", \"inconnu\": \"__nsp__\", \"liste\": [\"habitat\", \"commerce\"], "
    "\"commune\": {\"nom\": \"Lyon\", \"departement\": \"69\"}, "
    "\"communes\": [{\"nom\": \"Lyon\"}, {\"nom\": \"Villeurbanne\"}], "
    "\"feuille_de_route\": [{\"id\": \"diag\", \"titre\": \"Diagnostic de pollution\", "
    "\"resume\": \"Faire \\\"vite\\\" & bien\", \"source\": \"https://x.fr/a?b=1&c=2\"}, "
    "{\"id\": \"eng\", \"titre\": \"Engagement\", \"resume\": \"Signer\", "
    "\"source\": \"javascript:alert(1)\"}], "
    "\"texte\": \"<script>alert('x')</script> **pas gras** [lien](https://evil.fr)\\n- pas une "
    "liste\", "
    "\"texte2\": \"- a\\n\\n**b**\", \"tiret\": \"-\", \"faux_lien\": \"](javascript:x)\", "
    "\"controle\": \"a\\u001b[31mb\\u0007c\\tD\\r\"}";

static json_t *answers;

static const json_t *env_lookup(void *arg, const char *name)
{
    (void)arg;
    return fb_expr_lookup_path(answers, name);
}

static bool env_has_tag(void *arg, const char *tag)
{
    (void)arg;
    return !strcmp(tag, "grand_site");
}

static fb_expr_env_t env = {env_lookup, env_has_tag, NULL};

static void env_setup(void)
{
    json_error_t err;
    answers = json_loads(answers_json, 0, &err);
    if (!answers)
        FB_TEST_FAIL("bad test JSON: %s", err.text);
    json_t *grand = json_array(), *cent = json_array();
    for (int i = 0; i < 300; i++)
        json_array_append_new(grand, json_integer(i));
    for (int i = 0; i < 100; i++)
        json_array_append_new(cent, json_integer(i));
    json_object_set_new(answers, "grand", grand);
    json_object_set_new(answers, "cent", cent);
}

static void env_teardown(void)
{
    json_decref(answers);
    answers = NULL;
}

static fb_template_t *parse_ok(const char *src)
{
    fb_buf_t errors;
    fb_buf_init(&errors, 4096);
    fb_template_t *t = fb_template_parse(src, 1, 1, &errors);
    if (!t)
        FB_TEST_FAIL("template <%s> does not parse: %s", src, fb_buf_str(&errors));
    ASSERT_EQ(errors.len, 0);
    fb_buf_free(&errors);
    return t;
}

/* Renders `src` and compares both outputs exactly. */
static void check_render(const char *src, const char *want_plain, const char *want_html)
{
    fb_template_t *t = parse_ok(src);
    fb_buf_t plain, html;
    fb_buf_init(&plain, 1u << 20);
    fb_buf_init(&html, 1u << 20);
    ASSERT_OK(fb_template_render(t, &env, &plain, &html));
    if (strcmp(fb_buf_str(&plain), want_plain) != 0)
        FB_TEST_FAIL("plain of <%s>:\n got  <%s>\n want <%s>", src, fb_buf_str(&plain), want_plain);
    if (strcmp(fb_buf_str(&html), want_html) != 0)
        FB_TEST_FAIL("html of <%s>:\n got  <%s>\n want <%s>", src, fb_buf_str(&html), want_html);
    fb_buf_free(&plain);
    fb_buf_free(&html);
    fb_template_free(t);
}

/* Parses `src` at (line, col) and checks that it fails with exactly `want` (all lines). */
static void check_error_at(const char *src, int line, int col, const char *want)
{
    fb_buf_t errors;
    fb_buf_init(&errors, 4096);
    fb_template_t *t = fb_template_parse(src, line, col, &errors);
    if (t)
        FB_TEST_FAIL("template <%s> should not parse", src);
    ASSERT_STR_EQ(fb_buf_str(&errors), want);
    fb_buf_free(&errors);
    ASSERT_NULL(fb_template_parse(src, line, col, NULL));
}

static void check_error(const char *src, const char *want)
{
    check_error_at(src, 1, 1, want);
}

/* Formats the JSON text `json` with fb_template_format_value(). */
static void check_format(const char *json, const char *want)
{
    json_error_t err;
    json_t *v = json_loads(json, JSON_DECODE_ANY, &err);
    if (!v)
        FB_TEST_FAIL("bad JSON <%s>", json);
    fb_buf_t out;
    fb_buf_init(&out, 4096);
    ASSERT_OK(fb_template_format_value(v, &out));
    if (strcmp(fb_buf_str(&out), want) != 0)
        FB_TEST_FAIL("%s formats as <%s>, not <%s>", json, fb_buf_str(&out), want);
    fb_buf_free(&out);
    json_decref(v);
}

TEST_IMPL(template_format_values)
{
    check_format("2.5", "2,5");
    check_format("3000", "3 000");
    check_format("1000", "1 000");
    check_format("999", "999");
    check_format("0", "0");
    check_format("1234567", "1 234 567");
    check_format("-1234.5", "-1 234,5");
    check_format("12345.678", "12 345,68");
    check_format("2.456", "2,46");
    check_format("2.001", "2");
    check_format("3000.0", "3 000");
    check_format("0.5", "0,5");
    check_format("-0.001", "0");
    check_format("1e20", "100 000 000 000 000 000 000");
    check_format("-9223372036854775808", "-9 223 372 036 854 775 808");
    check_format("true", "oui");
    check_format("false", "non");
    check_format("null", "");
    check_format("\"__nsp__\"", "je ne sais pas");
    check_format("\"texte <brut> **tel quel**\"", "texte <brut> **tel quel**");
    check_format("{\"insee\": \"69123\", \"nom\": \"Lyon\", \"departement\": \"69\"}", "Lyon");
    check_format("{\"id\": \"x\", \"titre\": \"Étape\"}", "Étape");
    check_format("{\"nom\": 3}", "");
    check_format("{}", "");
    check_format("[]", "");
    check_format("[\"a\", null, 2.5, true, {}, [\"b\", \"c\"], \"__nsp__\"]",
                 "a, 2,5, oui, b, c, je ne sais pas");
    fb_buf_t out;
    fb_buf_init(&out, 4096);
    ASSERT_OK(fb_template_format_value(NULL, &out));
    ASSERT_EQ(out.len, 0);
    fb_buf_free(&out);

    env_setup();
    check_render("Surface : {{ surface }} m², {{ nombre }} ; {{ pollution }}/{{ non_pollue }} ; "
                 "{{ inconnu }} ; {{ commune }} ; [{{ manquant }}] ; {{ liste }} ; "
                 "{{ commune.departement }} ; {{ nsp }} ; {{ surface > 1000 }}",
                 "Surface : 2 500,5 m², 3 000 ; oui/non ; je ne sais pas ; Lyon ; [] ; habitat, "
                 "commerce ; 69 ; je ne sais pas ; oui",
                 "<p>Surface : 2 500,5 m², 3 000 ; oui/non ; je ne sais pas ; Lyon ; [] ; habitat, "
                 "commerce ; 69 ; je ne sais pas ; oui</p>");
    check_render("{{ \"}}\" }} et {{ '%}' }}", "}} et %}", "<p>}} et %}</p>");
    env_teardown();
    return 0;
}

TEST_IMPL(template_conditions)
{
    env_setup();
    check_render("{% si pollution %}pollué{% sinon %}sain{% fin %}", "pollué", "<p>pollué</p>");
    check_render("{% si non_pollue %}pollué{% sinon %}sain{% fin %}", "sain", "<p>sain</p>");
    check_render("{% IF not pollution %}a{% Else %}b{% END %}", "b", "<p>b</p>");
    check_render("{% si #grand_site %}grand{% fin %}{% si #petit %}petit{% fin %}.", "grand.",
                 "<p>grand.</p>");
    check_render("a{% si faux %}b{% fin %}c", "ac", "<p>ac</p>");
    check_render("{% si pollution %}A{% si usage == 'industriel' %}B{% sinon %}C{% fin %}D"
                 "{% sinon %}E{% fin %}",
                 "ABD", "<p>ABD</p>");
    check_render("{% si non_pollue %}{% si vrai %}X{% fin %}{% sinon %}{% si faux %}Y{% sinon %}Z"
                 "{% fin %}{% fin %}",
                 "Z", "<p>Z</p>");
    /* Inline tags keep the text around them... */
    check_render("Le site {% si pollution %}est{% sinon %}n'est pas{% fin %} pollué.",
                 "Le site est pollué.", "<p>Le site est pollué.</p>");
    /* ...a tag alone on its line takes the line away. */
    check_render("Bonjour\n{% si pollution %}\nPollué\n  {% sinon %}  \nSain\n{% fin %}\nFin",
                 "Bonjour\nPollué\nFin", "<p>Bonjour<br>Pollué<br>Fin</p>");
    check_render("{% si faux %}\nA\n{% fin %}\nB\n", "B", "<p>B</p>");
    env_teardown();
    return 0;
}

TEST_IMPL(template_loops)
{
    env_setup();
    /* The example of docs/internals/ENGINE.md. */
    check_render("Voici votre feuille de route :\n"
                 "{% pour e dans feuille_de_route %}\n"
                 "- **{{ e.titre }}** : {{ e.resume }}\n"
                 "{% fin %}\n",
                 "Voici votre feuille de route :\n"
                 "\xE2\x80\xA2 Diagnostic de pollution : Faire \"vite\" & bien\n"
                 "\xE2\x80\xA2 Engagement : Signer",
                 "<p>Voici votre feuille de route :</p><ul><li><strong>Diagnostic de "
                 "pollution</strong> : Faire &quot;vite&quot; &amp; bien</li><li><strong>"
                 "Engagement</strong> : Signer</li></ul>");
    /* The loop variable shadows the answer of the same name, inside the loop only. */
    check_render("{% pour commune dans communes %}{{ commune }}, {% fin %}{{ commune }} "
                 "({{ commune.departement }})",
                 "Lyon, Villeurbanne, Lyon (69)", "<p>Lyon, Villeurbanne, Lyon (69)</p>");
    check_render("{% pour x dans [1, 2] %}{% pour x dans ['a'] %}{{ x }}{% fin %}{{ x }};{% fin %}",
                 "a1;a2;", "<p>a1;a2;</p>");
    check_render("{% for x in [1, 2.5, 'a', vrai] %}[{{ x }}]{% end %}", "[1][2,5][a][oui]",
                 "<p>[1][2,5][a][oui]</p>");
    /* Only arrays are iterated. */
    check_render("{% pour x dans usage %}X{% fin %}{% pour x dans manquant %}Y{% fin %}"
                 "{% pour x dans commune %}Z{% fin %}{% pour x dans [] %}W{% fin %}.",
                 ".", "<p>.</p>");
    /* Fields of the element in conditions, connu() on them, and nothing left after the loop. */
    check_render("{% pour e dans feuille_de_route %}{% si e.id == 'eng' et connu(e.titre) %}"
                 "{{ e.titre }}{% fin %}{% si connu(e.absent) %}!{% fin %}{% fin %}[{{ e }}]",
                 "Engagement[]", "<p>Engagement[]</p>");
    env_teardown();
    return 0;
}

TEST_IMPL(template_parse_errors)
{
    /* Unclosed blocks: at their opening tag, lines counted from the given start. */
    check_error_at("Bonjour\n{% si pollution %}\n  texte\n", 10, 5,
                   "11:1: bloc {% si %} non fermé (il manque {% fin %})\n");
    check_error("{% if x %}{% for y in l %}", "1:1: bloc {% if %} non fermé (il manque {% end %})\n"
                                              "1:11: bloc {% for %} non fermé (il manque {% end "
                                              "%})\n");
    /* Misplaced blocks. */
    check_error("a {% fin %}", "1:3: « fin » sans bloc ouvert\n");
    check_error("x\n  {% sinon %}", "2:3: « sinon » sans « si » correspondant\n");
    check_error("{% pour x dans l %}{% sinon %}{% fin %}",
                "1:20: « sinon » impossible dans le bloc « pour » de 1:1\n");
    check_error("{% si a %}1{% sinon %}2{% sinon %}3{% fin %}",
                "1:24: second « sinon » pour le « si » de 1:1\n");
    check_error("{% si a %}{% sinon si b %}{% fin %}",
                "1:20: « sinon si » n'existe pas : placez un bloc {% si %} dans le {% sinon %}\n");
    check_error("{% si a %}{% fin x %}", "1:18: texte inattendu après « fin »\n");
    check_error("{% tant que x %}",
                "1:1: bloc inconnu « tant » : si, sinon, fin ou pour attendu\n");
    check_error("{% %}", "1:1: si, sinon, fin ou pour attendu après « {% »\n");
    /* Unclosed tags. */
    check_error("Bonjour {{ nom", "1:9: « {{ » non fermé (il manque « }} »)\n");
    check_error("a\n{% si x", "2:1: « {% » non fermé (il manque « %} »)\n");
    /* Expression errors, at their place in the file. */
    check_error_at("ligne 1\nligne 2 {{ x == }}", 5, 3,
                   "6:17: valeur attendue, pas la fin de l'expression\n");
    check_error("{{ }}", "1:3: expression vide\n");
    check_error("{% si %}{% fin %}", "1:6: expression vide\n");
    check_error("Été : {{ x y }}", "1:12: « y » inattendu après la fin de l'expression\n");
    check_error("{{ 'l'eau' }}", "1:7: « eau » inattendu après la fin de l'expression\n");
    check_error("{{ 'leau }}",
                "1:4: texte entre guillemets non terminé (il manque le ' fermant)\n");
    /* Every error is reported, in order. */
    check_error("{{ a b }}\n{% fin %}\n{{ ( }}",
                "1:6: « b » inattendu après la fin de l'expression\n"
                "2:1: « fin » sans bloc ouvert\n"
                "3:6: valeur attendue, pas la fin de l'expression\n");
    /* Later lines of an indented block scalar start at its indentation. */
    fb_buf_t errors;
    fb_buf_init(&errors, 4096);
    fb_expr_pos_t pos = {1, 10, 7};
    ASSERT_NULL(fb_template_parse_at("a\n{{ ( }}", pos, &errors));
    ASSERT_STR_EQ(fb_buf_str(&errors), "2:12: valeur attendue, pas la fin de l'expression\n");
    fb_buf_free(&errors);
    /* Loops. */
    check_error(
        "{% pour X dans l %}{% fin %}",
        "1:9: variable de boucle invalide « X » : minuscules sans accents, chiffres et _\n");
    check_error("{% pour x l %}{% fin %}",
                "1:11: « dans » attendu après la variable de boucle « x »\n");
    check_error("{% for x %}{% end %}", "1:10: « in » attendu après la variable de boucle « x »\n");
    check_error("{% pour nsp dans l %}{% fin %}",
                "1:9: « nsp » est un mot réservé, pas un nom de variable\n");
    check_error("{% pour %}{% fin %}", "1:9: nom de variable attendu après « pour »\n");
    check_error("{% pour x dans %}{% fin %}", "1:15: expression vide\n");
    /* Bytes that are not UTF-8. */
    check_error("ab\xff", "1:3: UTF-8 invalide\n");
    return 0;
}

TEST_IMPL(template_depth_limit)
{
    fb_buf_t src;
    fb_buf_init(&src, 1u << 16);
    for (int i = 0; i < FB_TEMPLATE_MAX_DEPTH; i++)
        ASSERT_OK(fb_buf_puts(&src, "{% si vrai %}"));
    ASSERT_OK(fb_buf_puts(&src, "x"));
    for (int i = 0; i < FB_TEMPLATE_MAX_DEPTH; i++)
        ASSERT_OK(fb_buf_puts(&src, "{% fin %}"));
    check_render(fb_buf_str(&src), "x", "<p>x</p>");
    fb_buf_reset(&src);
    for (int i = 0; i < FB_TEMPLATE_MAX_DEPTH + 1; i++)
        ASSERT_OK(fb_buf_puts(&src, "{% si vrai %}"));
    check_error(fb_buf_str(&src), "1:833: blocs trop imbriqués (plus de 64 niveaux)\n");
    fb_buf_free(&src);
    return 0;
}

TEST_IMPL(template_markup)
{
    env_setup();
    check_render("Bonjour **Marie** !", "Bonjour Marie !",
                 "<p>Bonjour <strong>Marie</strong> !</p>");
    check_render("Voir [le guide](https://x.fr/a?b=1&c=2).",
                 "Voir le guide (https://x.fr/a?b=1&c=2).",
                 "<p>Voir <a href=\"https://x.fr/a?b=1&amp;c=2\">le guide</a>.</p>");
    check_render("Écrivez à [la DDT]( mailto:ddt@x.gouv.fr ).", "Écrivez à la DDT (ddt@x.gouv.fr).",
                 "<p>Écrivez à <a href=\"mailto:ddt@x.gouv.fr\">la DDT</a>.</p>");
    check_render("[https://x.fr](https://x.fr) [](http://y.fr)", "https://x.fr http://y.fr",
                 "<p><a href=\"https://x.fr\">https://x.fr</a> <a href=\"http://y.fr\">http://y.fr"
                 "</a></p>");
    check_render("**[guide](https://x.fr)** [**gras**](HTTPS://X.FR)",
                 "guide (https://x.fr) gras (HTTPS://X.FR)",
                 "<p><strong><a href=\"https://x.fr\">guide</a></strong> <a href=\"HTTPS://X.FR\">"
                 "<strong>gras</strong></a></p>");
    /* Paragraphs, line breaks and lists. */
    check_render("Intro :\n- un\n- **deux**\n\n\nFin\nligne 2\n",
                 "Intro :\n\xE2\x80\xA2 un\n\xE2\x80\xA2 deux\n\nFin\nligne 2",
                 "<p>Intro :</p><ul><li>un</li><li><strong>deux</strong></li></ul><p>Fin<br>ligne "
                 "2</p>");
    check_render("- a\nb\n\n- c", "\xE2\x80\xA2 a\nb\n\n\xE2\x80\xA2 c",
                 "<ul><li>a</li></ul><p>b</p><ul><li>c</li></ul>");
    check_render("\n\n   a  \n\n", "a", "<p>a</p>");
    check_render("a\r\n\r\nb", "a\n\nb", "<p>a</p><p>b</p>");
    check_render("-5 degrés\n-\n", "-5 degrés\n-", "<p>-5 degrés<br>-</p>");
    check_render("", "", "");
    check_render("{% si faux %}rien{% fin %}", "", "");
    /* Bold stays on one line and needs content. */
    check_render("**a\nb**", "**a\nb**", "<p>**a<br>b**</p>");
    check_render("a **** b", "a **** b", "<p>a **** b</p>");
    check_render("**gras", "**gras", "<p>**gras</p>");
    check_render("a ** b ** c **", "a  b  c **", "<p>a <strong> b </strong> c **</p>");
    /* Either output alone. */
    fb_template_t *t = parse_ok("**a**");
    fb_buf_t out;
    fb_buf_init(&out, 4096);
    ASSERT_OK(fb_template_render(t, &env, &out, NULL));
    ASSERT_STR_EQ(fb_buf_str(&out), "a");
    fb_buf_reset(&out);
    ASSERT_OK(fb_template_render(t, &env, NULL, &out));
    ASSERT_STR_EQ(fb_buf_str(&out), "<p><strong>a</strong></p>");
    ASSERT_OK(fb_template_render(t, NULL, NULL, NULL));
    fb_buf_free(&out);
    fb_template_free(t);
    env_teardown();
    return 0;
}

TEST_IMPL(template_hostile)
{
    env_setup();
    /* Author text: everything escaped. */
    check_render("<script>alert('x')</script> & \"q\"", "<script>alert('x')</script> & \"q\"",
                 "<p>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;</p>");
    /* A path of the daemon's own site is a link; "//host" (another site) is not. */
    check_render("la page [Suivi par e-mail](/email/).", "la page Suivi par e-mail (/email/).",
                 "<p>la page <a href=\"/email/\">Suivi par e-mail</a>.</p>");
    check_render("[x](//evil.example/)", "[x](//evil.example/)", "<p>[x](//evil.example/)</p>");
    check_render("[x](/)", "[x](/)", "<p>[x](/)</p>");
    /* Links other than http(s), mailto and site paths are text, as typed. */
    check_render("[clic](javascript:alert(1))", "[clic](javascript:alert(1))",
                 "<p>[clic](javascript:alert(1))</p>");
    check_render("[clic]( JavaScript:alert(1))", "[clic]( JavaScript:alert(1))",
                 "<p>[clic]( JavaScript:alert(1))</p>");
    check_render("[x](data:text/html;base64,PHNjcmlwdD4=)",
                 "[x](data:text/html;base64,PHNjcmlwdD4=)",
                 "<p>[x](data:text/html;base64,PHNjcmlwdD4=)</p>");
    check_render("[x](https://)", "[x](https://)", "<p>[x](https://)</p>");
    check_render("[x](//evil.fr)", "[x](//evil.fr)", "<p>[x](//evil.fr)</p>");
    check_render("[x](https://a\" onmouseover=\"alert(1))",
                 "[x](https://a\" onmouseover=\"alert(1))",
                 "<p>[x](https://a&quot; onmouseover=&quot;alert(1))</p>");
    check_render("[x](https://a.fr/'><script>)", "[x](https://a.fr/'><script>)",
                 "<p>[x](https://a.fr/&#39;&gt;&lt;script&gt;)</p>");
    check_render("[<b>](https://a.fr)", "<b> (https://a.fr)",
                 "<p><a href=\"https://a.fr\">&lt;b&gt;</a></p>");
    /* Values are text, never markup: no bold, no link, no list, newlines as <br>. */
    check_render("Vous avez écrit : {{ texte }}",
                 "Vous avez écrit : <script>alert('x')</script> **pas gras** "
                 "[lien](https://evil.fr)\n- pas une liste",
                 "<p>Vous avez écrit : &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; **pas "
                 "gras** [lien](https://evil.fr)<br>- pas une liste</p>");
    check_render("{{ texte2 }}", "- a\n\n**b**", "<p>- a<br><br>**b**</p>");
    check_render("{{ tiret }} pas une liste", "- pas une liste", "<p>- pas une liste</p>");
    /* A value inside an author's link: the url is checked whatever its origin. */
    check_render("{% pour e dans feuille_de_route %}\n- [{{ e.titre }}]({{ e.source }})\n{% fin %}",
                 "\xE2\x80\xA2 Diagnostic de pollution (https://x.fr/a?b=1&c=2)\n"
                 "\xE2\x80\xA2 [Engagement](javascript:alert(1))",
                 "<ul><li><a href=\"https://x.fr/a?b=1&amp;c=2\">Diagnostic de pollution</a></li>"
                 "<li>[Engagement](javascript:alert(1))</li></ul>");
    /* A value cannot close the author's link text early. */
    check_render("[a{{ faux_lien }}b](https://x.fr)", "a](javascript:x)b (https://x.fr)",
                 "<p><a href=\"https://x.fr\">a](javascript:x)b</a></p>");
    /* Control characters of values are dropped (tab kept). */
    check_render("{{ controle }}", "a[31mbc\tD", "<p>a[31mbc\tD</p>");

    fb_buf_t out;
    fb_buf_init(&out, 64);
    ASSERT_OK(fb_template_html_escape("<a href='x'>&\"", 14, &out));
    ASSERT_STR_EQ(fb_buf_str(&out), "&lt;a href=&#39;x&#39;&gt;&amp;&quot;");
    fb_buf_free(&out);
    env_teardown();
    return 0;
}

/* liens(...): the http(s) addresses of a value become links in HTML, and only those. */
TEST_IMPL(template_liens)
{
    env_setup();
    json_object_set_new(answers, "lien",
                        json_string("https://lannuaire.service-public.fr (chercher « DDT » et "
                                    "votre département)"));
    json_object_set_new(answers, "sources",
                        json_string("https://a.fr/x?b=1&c=2 ; http://b.fr/p_(1)). Voir "
                                    "(https://c.fr/d)."));
    json_object_set_new(answers, "hostile",
                        json_string("javascript:alert(1) JAVASCRIPT://x data:text/html,<b> "
                                    "https://x.fr/\"onmouseover=\"a https://y.fr/<script> "
                                    "mailto:a@b.fr //z.fr https:// xhttps://w.fr ftp://v.fr"));
    json_object_set_new(answers, "casse", json_string("HTTPS://X.FR/A"));
    /* the directory link of a contact: the address is a link, the hint after it is text */
    check_render("Annuaire : {{ liens(lien) }}",
                 "Annuaire : https://lannuaire.service-public.fr (chercher « DDT » et votre "
                 "département)",
                 "<p>Annuaire : <a href=\"https://lannuaire.service-public.fr\">"
                 "https://lannuaire.service-public.fr</a> (chercher « DDT » et votre "
                 "département)</p>");
    /* several addresses; trailing punctuation and an unbalanced ')' stay out; & is escaped */
    check_render("{{ liens( sources ) }}",
                 "https://a.fr/x?b=1&c=2 ; http://b.fr/p_(1)). Voir "
                 "(https://c.fr/d).",
                 "<p><a href=\"https://a.fr/x?b=1&amp;c=2\">https://a.fr/x?b=1&amp;c=2</a> ; "
                 "<a href=\"http://b.fr/p_(1)\">http://b.fr/p_(1)</a>). Voir (<a "
                 "href=\"https://c.fr/d\">https://c.fr/d</a>).</p>");
    check_render("{{ links(casse) }}", "HTTPS://X.FR/A",
                 "<p><a href=\"HTTPS://X.FR/A\">HTTPS://X.FR/A</a></p>");
    /* hostile: no other scheme, no quote or angle bracket inside, nothing glued to a word */
    check_render("{{ liens(hostile) }}",
                 "javascript:alert(1) JAVASCRIPT://x data:text/html,<b> "
                 "https://x.fr/\"onmouseover=\"a https://y.fr/<script> mailto:a@b.fr //z.fr "
                 "https:// xhttps://w.fr ftp://v.fr",
                 "<p>javascript:alert(1) JAVASCRIPT://x data:text/html,&lt;b&gt; "
                 "<a href=\"https://x.fr/\">https://x.fr/</a>&quot;onmouseover=&quot;a "
                 "<a href=\"https://y.fr/\">https://y.fr/</a>&lt;script&gt; mailto:a@b.fr "
                 "//z.fr https:// xhttps://w.fr ftp://v.fr</p>");
    /* without liens(...), a value's address stays text; the author's own text is not scanned */
    check_render("{{ lien }} https://auteur.fr",
                 "https://lannuaire.service-public.fr (chercher « DDT » et votre département) "
                 "https://auteur.fr",
                 "<p>https://lannuaire.service-public.fr (chercher « DDT » et votre département) "
                 "https://auteur.fr</p>");
    /* inside an author's link text, no nested link */
    check_render("[{{ liens(casse) }}](https://a.fr)", "HTTPS://X.FR/A (https://a.fr)",
                 "<p><a href=\"https://a.fr\">HTTPS://X.FR/A</a></p>");
    /* in a loop, over catalogue-like items; a field that is not a URL is left alone */
    check_render("{% pour e dans feuille_de_route %}\n- {{ e.titre }} : {{ liens(e.source) }}\n"
                 "{% fin %}",
                 "\xE2\x80\xA2 Diagnostic de pollution : https://x.fr/a?b=1&c=2\n"
                 "\xE2\x80\xA2 Engagement : javascript:alert(1)",
                 "<ul><li>Diagnostic de pollution : <a href=\"https://x.fr/a?b=1&amp;c=2\">"
                 "https://x.fr/a?b=1&amp;c=2</a></li><li>Engagement : javascript:alert(1)</li>"
                 "</ul>");
    /* a liens(...) that is not a whole call is an ordinary (here: bad) expression */
    check_error("{{ liens(lien) == 1 }}", "1:9: « ( » inattendu après la fin de l'expression\n");
    env_teardown();
    return 0;
}

/* sources(...): an address found in the "sources" catalogue is shown by its name, escaped;
 * an unknown one stays a bare link, as with liens(...). */
TEST_IMPL(template_sources)
{
    env_setup();
    json_t *cat = json_array();
    json_array_append_new(cat,
                          json_pack("{s:s, s:s, s:s}", "source", "https://a.fr/l324", "titre",
                                    "Code <b>, article L. 324-1", "organisation", "Légifrance"));
    json_array_append_new(cat, json_pack("{s:s, s:s}", "source", "https://b.fr/p_(1)", "titre",
                                         "Fiche « [x](javascript:y) »"));
    json_object_set_new(answers, "sources", cat);
    json_object_set_new(answers, "s",
                        json_string("Loi ; https://a.fr/l324 ; http://b.fr/p_(1) "
                                    "(https://b.fr/p_(1)). Voir https://inconnu.fr/x."));
    check_render("Source : {{ sources(s) }}",
                 "Source : Loi ; Code <b>, article L. 324-1 – Légifrance (https://a.fr/l324) ; "
                 "http://b.fr/p_(1) (Fiche « [x](javascript:y) » (https://b.fr/p_(1))). Voir "
                 "https://inconnu.fr/x.",
                 "<p>Source : Loi ; <a href=\"https://a.fr/l324\">Code &lt;b&gt;, article L. "
                 "324-1 – Légifrance</a> ; <a href=\"http://b.fr/p_(1)\">http://b.fr/p_(1)</a> "
                 "(<a href=\"https://b.fr/p_(1)\">Fiche « [x](javascript:y) »</a>). Voir "
                 "<a href=\"https://inconnu.fr/x\">https://inconnu.fr/x</a>.</p>");
    /* a prefix of a known address, or the address glued to a word, is not that address */
    json_object_set_new(answers, "s",
                        json_string("https://a.fr/l324x xhttps://a.fr/l324 https://a.fr/l32"));
    check_render("{{ sources(s) }}", "https://a.fr/l324x xhttps://a.fr/l324 https://a.fr/l32",
                 "<p><a href=\"https://a.fr/l324x\">https://a.fr/l324x</a> xhttps://a.fr/l324 "
                 "<a href=\"https://a.fr/l32\">https://a.fr/l32</a></p>");
    /* without a "sources" catalogue, sources(...) is liens(...) */
    json_object_del(answers, "sources");
    json_object_set_new(answers, "s", json_string("https://a.fr/l324"));
    check_render("{{ sources(s) }}", "https://a.fr/l324",
                 "<p><a href=\"https://a.fr/l324\">https://a.fr/l324</a></p>");
    env_teardown();
    return 0;
}

/* Renders `src` expecting FB_ETOOBIG, and both buffers freed. */
static void check_too_big(const char *src, size_t plain_max)
{
    fb_template_t *t = parse_ok(src);
    fb_buf_t plain, html;
    fb_buf_init(&plain, plain_max);
    fb_buf_init(&html, 1u << 20);
    ASSERT_OK(fb_buf_puts(&html, "avant"));
    ASSERT_EQ(fb_template_render(t, &env, &plain, &html), FB_ETOOBIG);
    ASSERT_NULL(plain.data);
    ASSERT_EQ(plain.len, 0);
    ASSERT_NULL(html.data);
    ASSERT_EQ(html.len, 0);
    fb_template_free(t);
}

TEST_IMPL(template_output_cap)
{
    env_setup();
    /* 300 x 300 x 10 bytes: far past FB_TEMPLATE_MAX_OUTPUT. */
    check_too_big("{% pour a dans grand %}{% pour b dans grand %}0123456789{% fin %}{% fin %}",
                  1u << 24);
    /* 300^3 iterations that write nothing: stopped by the work budget, quickly. */
    check_too_big("{% pour a dans grand %}{% pour b dans grand %}{% pour c dans grand %}"
                  "{% fin %}{% fin %}{% fin %}",
                  1u << 24);
    /* The caller's own maximum counts too. */
    check_too_big("Bonjour tout le monde", 10);
    /* Just under the cap is fine: 100 x 100 x 5 bytes, the last blank trimmed. */
    fb_template_t *t = parse_ok("{% pour a dans cent %}{% pour b dans cent %}abcd {% fin %}"
                                "{% fin %}");
    fb_buf_t plain, html;
    fb_buf_init(&plain, 1u << 20);
    fb_buf_init(&html, 1u << 20);
    ASSERT_OK(fb_template_render(t, &env, &plain, &html));
    ASSERT_EQ(plain.len, 49999);
    ASSERT_EQ(html.len, 49999 + 7);
    fb_buf_free(&plain);
    fb_buf_free(&html);
    fb_template_free(t);
    env_teardown();
    return 0;
}

/* Renders `src` into buffers that already hold "avant " and checks that what follows is exactly
 * what a render into empty buffers gives (the markup pass writes straight into them). */
static void check_appends(const char *src)
{
    fb_template_t *t = parse_ok(src);
    fb_buf_t p1, h1, p2, h2;
    fb_buf_init(&p1, 1u << 20);
    fb_buf_init(&h1, 1u << 20);
    fb_buf_init(&p2, 1u << 20);
    fb_buf_init(&h2, 1u << 20);
    ASSERT_OK(fb_template_render(t, &env, &p1, &h1));
    ASSERT_OK(fb_buf_puts(&p2, "avant "));
    ASSERT_OK(fb_buf_puts(&h2, "avant "));
    ASSERT_OK(fb_template_render(t, &env, &p2, &h2));
    ASSERT_EQ(p2.len, p1.len + 6);
    ASSERT_EQ(h2.len, h1.len + 6);
    ASSERT_STR_EQ(fb_buf_str(&p2) + 6, fb_buf_str(&p1));
    ASSERT_STR_EQ(fb_buf_str(&h2) + 6, fb_buf_str(&h1));
    fb_buf_free(&p1);
    fb_buf_free(&h1);
    fb_buf_free(&p2);
    fb_buf_free(&h2);
    fb_template_free(t);
}

TEST_IMPL(template_render_appends_and_caps_each_output)
{
    env_setup();
    check_appends("Bonjour, rien de special ici.");
    check_appends("**Gras** et [un lien](https://x.fr) : {{ texte }}\n\n- a\n- b");
    check_appends(
        "{% pour e dans feuille_de_route %}{{ liens(e.source) }} {{ e.titre }}\n{% fin %}");
    /* 20,000 '<': 20,000 bytes of plain text (under FB_TEMPLATE_MAX_OUTPUT) but 80,000 of HTML
     * ("&lt;"): the render fails and frees both outputs, though the caller's buffers could hold
     * a megabyte each. */
    check_too_big("{% pour a dans cent %}{% pour b dans cent %}<<{% fin %}{% fin %}", 1u << 20);
    env_teardown();
    return 0;
}

static void collect(void *arg, const char *name, bool is_tag, int line, int col)
{
    ASSERT_OK(fb_buf_printf(arg, "%s%s@%d:%d ", is_tag ? "#" : "", name, line, col));
}

TEST_IMPL(template_names)
{
    fb_template_t *t =
        parse_ok("{{ commune.nom }} {% pour e dans feuille_de_route %}{{ e.titre }}{{ autre }}\n"
                 "{% si #grand_site et e.x %}{% fin %}{% fin %}\n"
                 "{% pour x dans x %}{{ x.y }}{% fin %}\n"
                 "{% pour a dans l %}{% pour b dans a %}{{ b }}{{ a }}{{ c }}{% fin %}{% fin %}");
    fb_buf_t out;
    fb_buf_init(&out, 4096);
    fb_template_names(t, collect, &out);
    /* Loop variables are left out inside their loop, but x in "pour x dans x" is a name. */
    ASSERT_STR_EQ(fb_buf_str(&out), "commune@1:4 feuille_de_route@1:34 autre@1:69 "
                                    "#grand_site@2:7 x@3:16 l@4:16 c@4:56 ");
    fb_buf_free(&out);
    fb_template_free(t);
    return 0;
}
