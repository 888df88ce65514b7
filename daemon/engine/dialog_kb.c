/* SPDX-License-Identifier: MIT */
/*
 * dialog_kb.c - the dialog loader's knowledge base (see dialog_load.h, docs/internals/KB.md): the
 * `connaissances:` files, every rule of their format checked with FILE:LINE:COL errors, compiled
 * into the dialog's answers (templates, `si` conditions) and the retrieval index (kb.h); and the
 * authors' warnings about answers that compete for the same questions.
 */
#include <stdio.h>
#include <string.h>

#include <yaml.h>

#include "common/diag.h"
#include "common/utf8.h"
#include "common/yamljson.h"
#include "engine/dialog_load.h"
#include "engine/internal.h"
#include "engine/kb.h"
#include "engine/text.h"
#include "frichebot/alloc.h"
#include "frichebot/err.h"

#define KB_MIN_QUESTIONS 2
#define KB_MAX_QUESTIONS 12
#define KB_MAX_QUESTION  200 /* characters */
#define KB_MAX_ANSWER    600 /* characters, template tags left out */
#define KB_MIN_SOURCE    10  /* characters: "Géorisques" is the shortest honest source */
#define KB_MAX_SUJET     80  /* characters: one line of a list the bot offers */
#define KB_MAX_ID        61  /* an offered answer's button id, "kb-" + id, fits the web's 64 */

/* What the index needs of one answer until every file is read (synonyms come first). */
struct pending {
    char **questions, **mots;
    size_t n_questions, n_mots;
    char *text; /* the answer's text without template tags */
};

struct kbload {
    struct pending *p;
    size_t n, cap;
    char ***groups; /* synonym groups, each NULL-terminated */
    size_t n_groups;
    struct fb__strmap ids; /* answer id -> index in `seen` */
    struct seen {
        char *id;
        int file, line;
    } * seen;
    size_t n_seen;
    struct fb__strmap themes; /* keys owned by `theme_names` */
    char **theme_names;
    size_t n_themes;
};

/* The number of characters (code points) of `s`. */
static size_t n_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

/* `src` without its template tags ({{ ... }}, {% ... %}): a new string. */
static char *strip_tags(const char *src)
{
    size_t len = strlen(src);
    char *out = fb_malloc(len + 1);
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        if (src[i] == '{' && i + 1 < len && (src[i + 1] == '{' || src[i + 1] == '%')) {
            const char *end = strstr(src + i + 2, src[i + 1] == '{' ? "}}" : "%}");
            if (end) {
                i = (size_t)(end - src) + 2;
                continue;
            }
        }
        out[o++] = src[i++];
    }
    out[o] = '\0';
    return out;
}

/* True when `s` holds a raw address (http://, https://, www.). */
static bool has_url(const char *s)
{
    char *f = fb_strdup(s);
    for (char *c = f; *c; c++)
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
    bool yes = strstr(f, "http://") || strstr(f, "https://") || strstr(f, "www.");
    fb_free(f);
    return yes;
}

/* Checks one answer text (`reponse` of an answer or a variant) and compiles it into `out`. */
static bool answer_text(struct ld *l, const yaml_node_t *v, struct fb__text *out, char **plain)
{
    const char *src = fb__ld_want_text(l, v, "reponse");
    if (!src)
        return false;
    bool ok = true;
    char *stripped = strip_tags(src);
    size_t n = n_chars(stripped);
    if (n > KB_MAX_ANSWER) {
        fb__ld_errn(l, v,
                    "cette réponse fait %zu caractères (balises de modèle non comptées) : %d au "
                    "plus, pour rester lisible dans une conversation",
                    n, KB_MAX_ANSWER);
        ok = false;
    }
    if (has_url(src)) {
        fb__ld_errn(l, v,
                    "pas d'adresse web dans le texte d'une réponse : mettez-la dans « lien » (elle "
                    "est montrée après la réponse avec sa source)");
        ok = false;
    }
    if (!fb__ld_compile_text(l, v, "reponse", out))
        ok = false;
    if (plain)
        *plain = stripped;
    else
        fb_free(stripped);
    return ok;
}

/* The list of strings of sequence `v` (`what`): a new NULL-terminated array, or NULL after
 * reporting. Each string is at most `max_chars` characters (0: no limit). */
static char **string_list(struct ld *l, const yaml_node_t *v, const char *what, size_t max_chars,
                          size_t *count)
{
    *count = 0;
    if (!v || v->type != YAML_SEQUENCE_NODE) {
        fb__ld_errn(l, v, "« %s » doit être une liste de textes (- \"...\")", what);
        return NULL;
    }
    size_t n = 0;
    yaml_node_item_t *items = fb__ld_seq_items(v, &n);
    char **out = fb_calloc(n + 1, sizeof(char *));
    size_t k = 0;
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *it = fb__ld_node(l, items[i]);
        if (!it)
            continue;
        const char *s = fb__ld_want_text(l, it, what);
        if (!s || strlen(s) != it->data.scalar.length) {
            ok = false;
            continue;
        }
        if (max_chars && n_chars(s) > max_chars) {
            fb__ld_errn(l, it, "trop long : %zu caractères dans « %s », %zu au plus", n_chars(s),
                        what, max_chars);
            ok = false;
            continue;
        }
        out[k++] = fb_strdup(s);
    }
    if (!ok) {
        fb__ld_strings_free(out);
        return NULL;
    }
    *count = k;
    return out;
}

/* Checks `lien`: an https address of a specific page. */
static bool check_link(struct ld *l, const yaml_node_t *v)
{
    const char *s = fb__ld_want_text(l, v, "lien");
    if (!s)
        return false;
    if (strncmp(s, "https://", 8) != 0) {
        fb__ld_errn(l, v,
                    "« lien » doit être une adresse https:// (la page qui appuie la réponse)");
        return false;
    }
    const char *host = s + 8;
    size_t hl = strcspn(host, "/?#");
    for (size_t i = 0; i < strlen(s); i++)
        if ((unsigned char)s[i] <= ' ') {
            fb__ld_errn(l, v, "« lien » ne doit pas contenir d'espace");
            return false;
        }
    if (hl == 0 || !memchr(host, '.', hl)) {
        fb__ld_errn(l, v, "« lien » n'a pas de nom de site valide");
        return false;
    }
    const char *path = host + hl;
    /* the path's segments, without the query and the fragment */
    size_t segs = 0;
    for (const char *p = path; *p && *p != '?' && *p != '#';) {
        while (*p == '/')
            p++;
        if (!*p || *p == '?' || *p == '#')
            break;
        segs++;
        while (*p && *p != '/' && *p != '?' && *p != '#')
            p++;
    }
    if (segs == 0) {
        fb__ld_errn(
            l, v,
            "« lien » est la page d'accueil d'un site : donnez l'adresse de la page précise "
            "qui appuie la réponse");
        return false;
    }
    static const char *const forges[] = {"github.com",   "gitlab.com", "framagit.org",
                                         "codeberg.org", "git.sr.ht",  "bitbucket.org"};
    for (size_t i = 0; i < FB_ARRAY_SIZE(forges); i++) {
        size_t fl = strlen(forges[i]);
        bool is = hl == fl && strncmp(host, forges[i], fl) == 0;
        if (!is && hl > fl + 4 && strncmp(host, "www.", 4) == 0 &&
            strncmp(host + 4, forges[i], fl) == 0 && hl == fl + 4)
            is = true;
        if (is && segs <= 2) {
            fb__ld_errn(l, v,
                        "« lien » est la racine d'un dépôt de code : donnez la page précise (un "
                        "fichier, une documentation)");
            return false;
        }
    }
    return true;
}

/* The fields of an answer, in the order of load_answer()'s keys. */
enum afield {
    A_ID,
    A_QUESTIONS,
    A_MOTS,
    A_REPONSE,
    A_VARIANTES,
    A_LIEN,
    A_SOURCE,
    A_VERIFIE,
    A_SUJET,
    A_N
};

/* Loads the `variantes` of an answer into `a`. Returns false after reporting a problem. */
static bool load_variants(struct ld *l, const yaml_node_t *v, struct fb__kbanswer *a)
{
    bool ok = true;
    size_t n = 0;
    yaml_node_item_t *vs = fb__ld_seq_items(v, &n);
    if (v->type != YAML_SEQUENCE_NODE) {
        fb__ld_errn(l, v, "« variantes » doit être une liste de « - si: ... reponse: ... »");
        ok = false;
        n = 0;
    }
    a->variants = fb_calloc(n + 1, sizeof(*a->variants));
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *vn = fb__ld_node(l, vs[i]);
        if (!vn || vn->type != YAML_MAPPING_NODE) {
            fb__ld_errn(l, vn, "une variante est une correspondance « si: ... reponse: ... »");
            ok = false;
            continue;
        }
        static const char *const vkeys[] = {"si", "reponse"};
        yaml_node_t *vf[2];
        fb__ld_map_fields(l, vn, vkeys, 2, vf, NULL, " dans cette variante");
        struct fb__kbvariant *var = &a->variants[a->n_variants];
        if (!vf[0]) {
            fb__ld_errn(l, vn, "clé obligatoire « si » manquante dans cette variante");
            ok = false;
        } else if (!(var->cond = fb__ld_compile_expr(l, vf[0], "si", NULL))) {
            ok = false;
        }
        if (!vf[1]) {
            fb__ld_errn(l, vn, "clé obligatoire « reponse » manquante dans cette variante");
            ok = false;
        } else if (!answer_text(l, vf[1], &var->text, NULL)) {
            ok = false;
        }
        a->n_variants++;
    }
    return ok;
}

/* Checks `lien`, `source` and `verifie_le` of an answer (`f`: its fields by enum afield). */
static bool check_meta(struct ld *l, const yaml_node_t *it, yaml_node_t *const *f,
                       const char *shown)
{
    bool ok = true;
    if (!f[A_LIEN]) {
        fb__ld_errn(l, it,
                    "clé obligatoire « lien » manquante dans la réponse « %s » (l'adresse de la "
                    "page qui l'appuie)",
                    shown);
        ok = false;
    } else if (!check_link(l, f[A_LIEN])) {
        ok = false;
    }
    if (!f[A_SOURCE]) {
        fb__ld_errn(l, it,
                    "clé obligatoire « source » manquante dans la réponse « %s » (le titre de la "
                    "page et l'organisme, comme on les cite)",
                    shown);
        ok = false;
    } else {
        const char *src = fb__ld_want_text(l, f[A_SOURCE], "source");
        if (!src) {
            ok = false;
        } else if (n_chars(src) < KB_MIN_SOURCE) {
            fb__ld_errn(l, f[A_SOURCE],
                        "« source » est trop courte : le titre de la page et l'organisme, comme "
                        "on les cite");
            ok = false;
        }
    }
    if (!f[A_VERIFIE]) {
        fb__ld_errn(l, it,
                    "clé obligatoire « verifie_le » manquante dans la réponse « %s » (la date de "
                    "la vérification, AAAA-MM-JJ)",
                    shown);
        ok = false;
    } else if (!fb__ld_is_text(f[A_VERIFIE]) ||
               !fb__ld_valid_date(fb__ld_sval(f[A_VERIFIE]), f[A_VERIFIE]->data.scalar.length)) {
        fb__ld_errn(l, f[A_VERIFIE],
                    "« verifie_le » doit être une date AAAA-MM-JJ, par exemple 2026-12-06");
        ok = false;
    }
    return ok;
}

/* Loads answer mapping `it` of the current file. */
static void load_answer(struct ld *l, struct kbload *k, int kb_file, const yaml_node_t *it)
{
    static const char *const keys[] = {"id",   "questions", "mots",       "reponse", "variantes",
                                       "lien", "source",    "verifie_le", "sujet"};
    yaml_node_t *f[A_N];
    fb_dialog_t *d = l->d;
    fb__ld_map_fields(l, it, keys, A_N, f, NULL, " dans cette réponse");
    bool ok = true;
    const char *id = NULL;
    if (!f[A_ID]) {
        fb__ld_errn(l, it, "clé obligatoire « id » manquante dans cette réponse");
        ok = false;
    } else if (!fb__ld_is_text(f[A_ID]) ||
               !fb__ld_valid_id(fb__ld_sval(f[A_ID]), f[A_ID]->data.scalar.length, false)) {
        fb__ld_errn(l, f[A_ID],
                    "« id » doit être un identifiant en minuscules sans accent, chiffres et _");
        ok = false;
    } else if (f[A_ID]->data.scalar.length > KB_MAX_ID) {
        fb__ld_errn(l, f[A_ID],
                    "« id » a %zu caractères : %d au plus (le bouton d'une réponse proposée est "
                    "« kb- » suivi de l'id, et le chat web n'en prend pas plus de 64)",
                    f[A_ID]->data.scalar.length, KB_MAX_ID);
        ok = false;
    } else {
        id = fb__ld_sval(f[A_ID]);
        int prev = fb__strmap_get(&k->ids, id);
        if (prev >= 0) {
            const struct seen *p = &k->seen[prev];
            fb__ld_errn(l, f[A_ID], "l'identifiant « %s » est déjà pris par la réponse de %s:%d",
                        id, d->kb_files[p->file], p->line);
            ok = false;
            id = NULL;
        } else {
            k->seen = fb_realloc(k->seen, (k->n_seen + 1) * sizeof(*k->seen));
            k->seen[k->n_seen] =
                (struct seen){fb_strdup(id), kb_file, (int)it->start_mark.line + 1};
            (void)fb__strmap_put(&k->ids, k->seen[k->n_seen].id, (int)k->n_seen);
            k->n_seen++;
        }
    }
    const char *shown = id ? id : "?";
    struct pending pd = {0};
    if (!f[A_QUESTIONS]) {
        fb__ld_errn(l, it, "clé obligatoire « questions » manquante dans la réponse « %s »", shown);
        ok = false;
    } else {
        pd.questions =
            string_list(l, f[A_QUESTIONS], "questions", KB_MAX_QUESTION, &pd.n_questions);
        if (!pd.questions) {
            ok = false;
        } else if (pd.n_questions < KB_MIN_QUESTIONS || pd.n_questions > KB_MAX_QUESTIONS) {
            fb__ld_errn(l, f[A_QUESTIONS],
                        "« questions » en a %zu : il en faut de %d à %d, écrites comme les gens "
                        "les tapent",
                        pd.n_questions, KB_MIN_QUESTIONS, KB_MAX_QUESTIONS);
            ok = false;
        }
    }
    if (f[A_MOTS]) {
        pd.mots = string_list(l, f[A_MOTS], "mots", KB_MAX_QUESTION, &pd.n_mots);
        if (!pd.mots)
            ok = false;
    }
    struct fb__kbanswer a = {0};
    if (!f[A_REPONSE]) {
        fb__ld_errn(l, it, "clé obligatoire « reponse » manquante dans la réponse « %s »", shown);
        ok = false;
    } else if (!answer_text(l, f[A_REPONSE], &a.text, &pd.text)) {
        ok = false;
    }
    if (f[A_VARIANTES] && !load_variants(l, f[A_VARIANTES], &a))
        ok = false;
    const char *sujet = NULL;
    if (f[A_SUJET]) {
        sujet = fb__ld_want_text(l, f[A_SUJET], "sujet");
        if (!sujet) {
            ok = false;
        } else if (n_chars(sujet) < 3 || n_chars(sujet) > KB_MAX_SUJET ||
                   strpbrk(sujet, "\n\r") != NULL) {
            fb__ld_errn(l, f[A_SUJET],
                        "« sujet » doit tenir sur une ligne de 3 à %d caractères : ce que le bot "
                        "propose quand il hésite entre plusieurs réponses (« Le rôle de la "
                        "DREAL »)",
                        KB_MAX_SUJET);
            ok = false;
        }
    }
    if (!check_meta(l, it, f, shown))
        ok = false;
    if (!ok || !id) {
        fb__ld_text_free(&a.text);
        for (size_t i = 0; i < a.n_variants; i++) {
            fb_expr_free(a.variants[i].cond);
            fb__ld_text_free(&a.variants[i].text);
        }
        fb_free(a.variants);
        fb__ld_strings_free(pd.questions);
        fb__ld_strings_free(pd.mots);
        fb_free(pd.text);
        return;
    }
    a.id = fb_strdup(id);
    a.lien = fb_strdup(fb__ld_sval(f[A_LIEN]));
    a.source = fb_strdup(fb__ld_sval(f[A_SOURCE]));
    a.sujet = sujet ? fb_strdup(sujet) : NULL;
    a.file = kb_file;
    a.line = (int)it->start_mark.line + 1;
    a.col = (int)it->start_mark.column + 1;
    a.n_questions = pd.n_questions;
    a.questions = fb_calloc(pd.n_questions + 1, sizeof(char *));
    for (size_t i = 0; i < pd.n_questions; i++)
        a.questions[i] = fb_strdup(pd.questions[i]);
    if (d->n_kb == k->cap) {
        k->cap = k->cap ? k->cap * 2 : 64;
        d->kb_answers = fb_realloc(d->kb_answers, k->cap * sizeof(*d->kb_answers));
        k->p = fb_realloc(k->p, k->cap * sizeof(*k->p));
    }
    d->kb_answers[d->n_kb] = a;
    k->p[d->n_kb] = pd;
    d->n_kb++;
    k->n = d->n_kb;
}

/* Reads the synonym groups of a file. */
static void load_synonyms(struct ld *l, struct kbload *k, const yaml_node_t *v)
{
    if (v->type != YAML_SEQUENCE_NODE) {
        fb__ld_errn(l, v, "« synonymes » doit être une liste de groupes « - [mot, autre mot] »");
        return;
    }
    size_t n = 0;
    yaml_node_item_t *gs = fb__ld_seq_items(v, &n);
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *g = fb__ld_node(l, gs[i]);
        if (!g)
            continue;
        size_t cnt = 0;
        char **words = string_list(l, g, "synonymes", KB_MAX_QUESTION, &cnt);
        if (!words)
            continue;
        if (cnt < 2) {
            fb__ld_errn(l, g, "un groupe de synonymes a au moins deux mots ou expressions");
            fb__ld_strings_free(words);
            continue;
        }
        k->groups = fb_realloc(k->groups, (k->n_groups + 1) * sizeof(*k->groups));
        k->groups[k->n_groups++] = words;
    }
}

/* Loads one knowledge-base file (declared by `path_node`). */
static void load_file(struct ld *l, struct kbload *k, const char *path,
                      const yaml_node_t *path_node)
{
    fb_dialog_t *d = l->d;
    struct fb__ld_side side;
    yaml_node_t *root = fb__ld_side_open(
        l, &side, path, path_node, "\0kb\0", 4, "", "la base de connaissances ",
        "le fichier est vide : il doit avoir « base: connaissances », « theme: », « titre: » et "
        "« reponses: »");
    if (side.file < 0)
        goto out;
    d->kb_files = fb_realloc(d->kb_files, (d->n_kb_files + 1) * sizeof(*d->kb_files));
    d->kb_files[d->n_kb_files] = fb_strdup(l->files[side.file]);
    int kb_file = (int)d->n_kb_files++;
    if (!root)
        goto out;
    static const char *const keys[] = {"base", "theme", "titre", "synonymes", "reponses"};
    yaml_node_t *f[5];
    if (root->type != YAML_MAPPING_NODE) {
        fb__ld_errn(l, root,
                    "une base de connaissances est une correspondance (base: connaissances, "
                    "theme: ..., reponses: ...)");
        goto out;
    }
    fb__ld_map_fields(l, root, keys, 5, f, NULL, " de la base de connaissances");
    if (!f[0]) {
        fb__ld_errat(l, 1, 1,
                     "clé obligatoire « base » manquante (écrivez « base: connaissances »)");
    } else {
        const char *b = fb__ld_want_text(l, f[0], "base");
        if (b && strcmp(b, "connaissances") != 0)
            fb__ld_errn(l, f[0], "« base » vaut toujours « connaissances » dans ces fichiers");
    }
    if (!f[1]) {
        fb__ld_errat(l, 1, 1, "clé obligatoire « theme » manquante (le thème du fichier)");
    } else if (!fb__ld_is_text(f[1]) ||
               !fb__ld_valid_id(fb__ld_sval(f[1]), f[1]->data.scalar.length, false)) {
        fb__ld_errn(l, f[1],
                    "« theme » doit être un identifiant en minuscules sans accent, "
                    "chiffres et _");
    } else if (fb__strmap_get(&k->themes, fb__ld_sval(f[1])) >= 0) {
        fb__ld_errn(l, f[1], "le thème « %s » est déjà celui d'un autre fichier de la base",
                    fb__ld_sval(f[1]));
    } else {
        k->theme_names = fb_realloc(k->theme_names, (k->n_themes + 1) * sizeof(char *));
        k->theme_names[k->n_themes] = fb_strdup(fb__ld_sval(f[1]));
        (void)fb__strmap_put(&k->themes, k->theme_names[k->n_themes], (int)k->n_themes);
        k->n_themes++;
    }
    if (!f[2])
        fb__ld_errat(l, 1, 1, "clé obligatoire « titre » manquante (le titre du fichier)");
    else
        (void)fb__ld_want_text(l, f[2], "titre");
    if (f[3])
        load_synonyms(l, k, f[3]);
    if (!f[4]) {
        fb__ld_errat(l, 1, 1, "clé obligatoire « reponses » manquante (la liste des réponses)");
    } else if (f[4]->type != YAML_SEQUENCE_NODE) {
        fb__ld_errn(l, f[4], "« reponses » doit être une liste de réponses « - id: ... »");
    } else {
        size_t n = 0;
        yaml_node_item_t *items = fb__ld_seq_items(f[4], &n);
        for (size_t i = 0; i < n; i++) {
            yaml_node_t *it = fb__ld_node(l, items[i]);
            if (!it || it->type != YAML_MAPPING_NODE) {
                fb__ld_errn(l, it, "une réponse est une correspondance « id: ... questions: ... »");
                continue;
            }
            load_answer(l, k, kb_file, it);
        }
    }
out:
    fb__ld_side_close(l, &side);
}

void fb__ld_compile_kb(struct ld *l, const yaml_node_t *v)
{
    fb_dialog_t *d = l->d;
    if (v->type != YAML_SEQUENCE_NODE) {
        fb__ld_errn(l, v,
                    "« connaissances » doit être une liste de fichiers (par exemple « - "
                    "connaissances/pollution.yaml »)");
        return;
    }
    struct kbload k = {0};
    size_t n = 0;
    yaml_node_item_t *items = fb__ld_seq_items(v, &n);
    struct fb__strmap paths = {0};
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *p = fb__ld_node(l, items[i]);
        if (!p)
            continue;
        const char *path = fb__ld_want_text(l, p, "connaissances");
        if (!path)
            continue;
        if (fb__strmap_put(&paths, path, 0))
            load_file(l, &k, path, p);
        else
            fb__ld_errn(l, p, "le fichier « %s » est déjà dans la liste",
                        fb_yaml_show(path, strlen(path)).s);
    }
    fb__strmap_free(&paths);
    if (!fb_diag_failed(&l->diag) && d->n_kb > 0) {
        d->kb = fb_kb_new();
        fb_kb_set_geo(d->kb, d->geo);
        for (size_t g = 0; g < k.n_groups; g++) {
            size_t cnt = 0;
            while (k.groups[g][cnt])
                cnt++;
            fb_kb_add_synonyms(d->kb, (const char *const *)k.groups[g], cnt);
        }
        for (size_t i = 0; k.p && i < k.n; i++)
            (void)fb_kb_add_doc(d->kb, (const char *const *)k.p[i].questions, k.p[i].n_questions,
                                (const char *const *)k.p[i].mots, k.p[i].n_mots, k.p[i].text);
        (void)fb_kb_build(d->kb);
    }
    for (size_t i = 0; k.p && i < k.n; i++) {
        fb__ld_strings_free(k.p[i].questions);
        fb__ld_strings_free(k.p[i].mots);
        fb_free(k.p[i].text);
    }
    fb_free(k.p);
    for (size_t g = 0; g < k.n_groups; g++)
        fb__ld_strings_free(k.groups[g]);
    fb_free(k.groups);
    fb__strmap_free(&k.ids);
    for (size_t i = 0; i < k.n_seen; i++)
        fb_free(k.seen[i].id);
    fb_free(k.seen);
    fb__strmap_free(&k.themes);
    for (size_t i = 0; i < k.n_themes; i++)
        fb_free(k.theme_names[i]);
    fb_free(k.theme_names);
}

void fb__kb_model_free(fb_dialog_t *d)
{
    for (size_t i = 0; i < d->n_kb; i++) {
        struct fb__kbanswer *a = &d->kb_answers[i];
        fb_free(a->id);
        fb__ld_text_free(&a->text);
        for (size_t v = 0; v < a->n_variants; v++) {
            fb_expr_free(a->variants[v].cond);
            fb__ld_text_free(&a->variants[v].text);
        }
        fb_free(a->variants);
        fb_free(a->lien);
        fb_free(a->source);
        fb_free(a->sujet);
        fb__ld_strings_free(a->questions);
    }
    fb_free(d->kb_answers);
    for (size_t i = 0; i < d->n_kb_files; i++)
        fb_free(d->kb_files[i]);
    fb_free(d->kb_files);
    fb_kb_free(d->kb);
    d->kb_answers = NULL;
    d->n_kb = 0;
    d->kb = NULL;
}

/* ---- public accessors for the tools ---------------------------------------------------------- */

const fb_kb_t *fb_dialog_kb(const fb_dialog_t *d)
{
    return d ? d->kb : NULL;
}

const char *fb_dialog_kb_id(const fb_dialog_t *d, int i)
{
    return d && i >= 0 && (size_t)i < d->n_kb ? d->kb_answers[i].id : NULL;
}

int fb_dialog_kb_index(const fb_dialog_t *d, const char *id)
{
    for (size_t i = 0; d && i < d->n_kb; i++)
        if (strcmp(d->kb_answers[i].id, id) == 0)
            return (int)i;
    return -1;
}

size_t fb_dialog_kb_warnings(const fb_dialog_t *d, fb_buf_t *out)
{
    size_t n = 0;
    if (!d || !d->kb)
        return 0;
    for (size_t i = 0; i < d->n_kb; i++) {
        const struct fb__kbanswer *a = &d->kb_answers[i];
        if (!a->sujet) {
            (void)fb_buf_printf(out,
                                "%s:%d:%d: attention : la réponse « %s » n'a pas de « sujet » : "
                                "quand le bot hésite, il proposera sa première question\n",
                                d->kb_files[a->file], a->line, a->col, a->id);
            n++;
        }
        for (size_t q = 0; q < a->n_questions; q++) {
            fb_kb_result_t res;
            fb_kb_search(d->kb, a->questions[q], &res);
            if (res.n == 0)
                continue;
            const char *file = d->kb_files[a->file];
            if (res.hits[0].doc != (int)i) {
                (void)fb_buf_printf(out,
                                    "%s:%d:%d: attention : la question « %s » de la réponse « %s » "
                                    "trouve d'abord la réponse « %s »\n",
                                    file, a->line, a->col, a->questions[q], a->id,
                                    d->kb_answers[res.hits[0].doc].id);
                n++;
            } else if (res.n > 1 && res.margin < FB_KB_MIN_MARGIN) {
                (void)fb_buf_printf(out,
                                    "%s:%d:%d: attention : la question « %s » de la réponse « %s » "
                                    "trouve presque autant la réponse « %s » (écart %.0f %%)\n",
                                    file, a->line, a->col, a->questions[q], a->id,
                                    d->kb_answers[res.hits[1].doc].id, res.margin * 100);
                n++;
            }
        }
    }
    return n;
}
