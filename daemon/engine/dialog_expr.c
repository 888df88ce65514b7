/* SPDX-License-Identifier: MIT */
/*
 * dialog_expr.c - the dialog loader's expressions and templates (see dialog_load.h): names
 * checked against the declarations, compared strings checked against options, templates
 * pre-rendered when they use no name.
 */
#include <string.h>

#include <yaml.h>

#include "common/diag.h"
#include "common/yamljson.h"
#include "engine/dialog_load.h"
#include "engine/internal.h"
#include "engine/text.h"
#include "frichebot/alloc.h"
#include "frichebot/err.h"

/* Names every template and expression may use besides the slots. */
static const char *const builtin_names[] = {"feuille_de_route",
                                            "question",
                                            "aide",
                                            "tentatives",
                                            "etape",
                                            "min",
                                            "max",
                                            "delai",
                                            "recherche",
                                            "conseillers",
                                            "exemple",
                                            "lien_feuille_de_route",
                                            "joignable",
                                            "courriel"};

/* ---- expressions and templates --------------------------------------------------------------- */

/* True for the names templates and expressions have besides slots (`feuille_de_route`...). */
bool fb__ld_is_builtin(const char *name)
{
    for (size_t i = 0; i < FB_ARRAY_SIZE(builtin_names); i++)
        if (strcmp(builtin_names[i], name) == 0)
            return true;
    return false;
}

/* The index of the catalogue named `name` in `d`, or -1. */
int fb__ld_catalogue_index(const fb_dialog_t *d, const char *name)
{
    for (size_t i = 0; i < d->n_catalogues; i++)
        if (d->catalogues[i].name && strcmp(d->catalogues[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* fb_expr_names() callback: reports a name that is neither a slot nor built in, and a tag
 * that no answer emits. */
static void check_name_cb(void *arg, const char *name, bool is_tag, int line, int col)
{
    struct ld *l = arg;
    if (is_tag) {
        if (fb__strmap_get(&l->d->tag_map, name) < 0) {
            fb_yaml_shown_t s = fb_yaml_show(name, strlen(name));
            fb__ld_errat(l, line, col, "aucune réponse n'émet le signal « #%s »", s.s);
        }
        return;
    }
    bool catalogue = fb__ld_catalogue_index(l->d, name) >= 0;
    if (l->in_item_cond && (catalogue || strcmp(name, "feuille_de_route") == 0)) {
        fb_yaml_shown_t s = fb_yaml_show(name, strlen(name));
        fb__ld_errat(
            l, line, col,
            "la condition « si » d'un élément de catalogue ne peut pas utiliser « %s » : elle "
            "dépend des réponses, pas des listes que ces conditions servent à calculer",
            s.s);
        return;
    }
    if (fb__strmap_get(&l->d->slot_map, name) < 0 && !fb__ld_is_builtin(name) && !catalogue) {
        fb_yaml_shown_t s = fb_yaml_show(name, strlen(name));
        fb__ld_errat(
            l, line, col,
            "« %s » n'est ni une variable (le nom d'une question), ni un catalogue, ni un nom "
            "prédéfini (feuille_de_route, question, aide, tentatives, etape, min, max)",
            s.s);
    }
}

/* fb_expr_compared_strings() callback: records the comparison for fb__ld_check_compared_strings().
 */
static void record_cmp_cb(void *arg, const char *name, const char *str, int line, int col)
{
    struct ld *l = arg;
    if (l->n_cmps == l->cap_cmps) {
        l->cap_cmps = l->cap_cmps ? l->cap_cmps * 2 : 32;
        l->cmps = fb_realloc(l->cmps, l->cap_cmps * sizeof(*l->cmps));
    }
    l->cmps[l->n_cmps++] = (struct cmpstr){l->file, line, col, fb_strdup(name), fb_strdup(str)};
}

/* True when `id` is an option of a choice question filling slot `slot`. */
static bool slot_has_option(const fb_dialog_t *d, int slot, const char *id)
{
    for (size_t i = 0; i < d->n_states; i++) {
        const struct fb__state *st = &d->states[i];
        if (st->slot != slot)
            continue;
        for (size_t c = 0; c < st->n_choices; c++)
            if (strcmp(st->choices[c].id, id) == 0)
                return true;
    }
    return false;
}

/*
 * A string compared with the answer to a choice question must be one of its option ids:
 * `usage == "usine"` where the options are industriel, commerce... is always false, a typo
 * the author would never see. Reported at the string, with the ids.
 */
void fb__ld_check_compared_strings(struct ld *l)
{
    const fb_dialog_t *d = l->d;
    for (size_t i = 0; i < l->n_cmps; i++) {
        const struct cmpstr *c = &l->cmps[i];
        int slot = fb__strmap_get(&d->slot_map, c->name);
        if (slot < 0 || (d->slots[slot].type != FB__Q_CHOICE && d->slots[slot].type != FB__Q_MULTI))
            continue;
        const struct fb__state *first = &d->states[d->slots[slot].state];
        if (first->n_choices == 0 || slot_has_option(d, slot, c->str))
            continue; /* no options compiled (already reported), or fine */
        fb_buf_t ids;
        fb_buf_init(&ids, 4096);
        for (size_t k = 0; k < first->n_choices; k++)
            (void)fb_buf_printf(&ids, "%s%s", k ? ", " : "", first->choices[k].id);
        fb_yaml_shown_t s = fb_yaml_show(c->str, strlen(c->str));
        int saved = l->file;
        l->file = c->file;
        fb__ld_errat(l, c->line, c->col,
                     "« %s » n'est pas une réponse possible de la question « %s » : la comparaison "
                     "serait toujours fausse (identifiants des options : %s)",
                     s.s, c->name, fb_buf_str(&ids));
        l->file = saved;
        fb_buf_free(&ids);
    }
}

/*
 * Compiles the expression in scalar `v` (key `what`): parse errors and unknown names are
 * reported. Returns the expression or NULL. `src_out`, when not NULL, receives a copy of the
 * source.
 */
fb_expr_t *fb__ld_compile_expr(struct ld *l, const yaml_node_t *v, const char *what, char **src_out)
{
    const char *src;
    if (fb__ld_is_null(v) && v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        fb__ld_errn(
            l, v,
            "« %s » est vide : en YAML, un # non entre guillemets commence un commentaire ; "
            "écrivez par exemple %s: \"#mon_signal\"",
            what, what);
        return NULL;
    }
    src = fb__ld_want_text(l, v, what);
    if (!src)
        return NULL;
    long line, col, line_col;
    fb__ld_content_pos(l, v, &line, &col, &line_col);
    fb_buf_t tmp;
    fb_buf_init(&tmp, 1u << 16);
    fb_expr_t *e = fb_expr_parse(src, (int)line, (int)col, &tmp);
    if (!e) {
        if (tmp.len == 0)
            fb__ld_errat(l, line, col, "expression invalide");
        fb__ld_import_errors(l, &tmp, line, col);
    } else {
        fb_expr_names(e, check_name_cb, l);
        fb_expr_compared_strings(e, record_cmp_cb, l);
        if (src_out)
            *src_out = fb_strdup(src);
    }
    fb_buf_free(&tmp);
    return e;
}

/* The environment of pre-rendering: no name has a value, no tag is set. */
static const json_t *null_lookup(void *arg, const char *name)
{
    (void)arg;
    (void)name;
    return NULL;
}

static bool null_has_tag(void *arg, const char *tag)
{
    (void)arg;
    (void)tag;
    return false;
}

/* fb_template_names() callback counting names and tags into *(size_t *)arg. */
static void count_names_cb(void *arg, const char *name, bool is_tag, int line, int col)
{
    (void)name;
    (void)is_tag;
    (void)line;
    (void)col;
    (*(size_t *)arg)++;
}

/* Pre-renders a template that uses no name, so that steps never render it again. */
void fb__ld_prerender(struct fb__text *t)
{
    size_t names = 0;
    fb_template_names(t->t, count_names_cb, &names);
    if (names > 0)
        return;
    fb_expr_env_t env = {null_lookup, null_has_tag, NULL};
    fb_buf_t plain, html;
    fb_buf_init(&plain, MAX_TEXT_BYTES);
    fb_buf_init(&html, MAX_TEXT_BYTES);
    if (fb_template_render(t->t, &env, &plain, &html) == 0) {
        t->plain = json_stringn(fb_buf_str(&plain), plain.len);
        t->html = json_stringn(fb_buf_str(&html), html.len);
        if (!t->plain || !t->html) { /* not UTF-8: keep rendering at each step */
            json_decref(t->plain);
            json_decref(t->html);
            t->plain = t->html = NULL;
        }
    }
    fb_buf_free(&plain);
    fb_buf_free(&html);
}

/* Compiles the template in scalar `v` (key `what`) into `out`. Returns true on success. */
bool fb__ld_compile_text(struct ld *l, const yaml_node_t *v, const char *what, struct fb__text *out)
{
    const char *src = fb__ld_want_text(l, v, what);
    if (!src)
        return false;
    long line, col, line_col;
    fb__ld_content_pos(l, v, &line, &col, &line_col);
    fb_buf_t tmp;
    fb_buf_init(&tmp, 1u << 16);
    fb_expr_pos_t pos = {(int)line, (int)col, (int)line_col};
    out->t = fb_template_parse_at(src, pos, &tmp);
    if (!out->t) {
        if (tmp.len == 0)
            fb__ld_errat(l, line, col, "texte invalide");
        fb__ld_import_errors(l, &tmp, line, col);
    } else {
        fb_template_names(out->t, check_name_cb, l);
        fb_template_compared_strings(out->t, record_cmp_cb, l);
        fb__ld_prerender(out);
    }
    fb_buf_free(&tmp);
    return out->t != NULL;
}

/* Frees a compiled text and its pre-rendered strings; `t` is empty afterwards. */
void fb__ld_text_free(struct fb__text *t)
{
    fb_template_free(t->t);
    json_decref(t->plain);
    json_decref(t->html);
    json_decref(t->say);
    t->t = NULL;
    t->plain = t->html = t->say = NULL;
}

int fb__text_render(const struct fb__text *t, const fb_expr_env_t *env, fb_buf_t *plain,
                    fb_buf_t *html)
{
    if (t->plain) {
        if (plain &&
            fb_buf_append(plain, json_string_value(t->plain), json_string_length(t->plain)) != 0)
            return FB_ETOOBIG;
        if (html &&
            fb_buf_append(html, json_string_value(t->html), json_string_length(t->html)) != 0)
            return FB_ETOOBIG;
        return 0;
    }
    if (!t->t)
        return 0;
    return fb_template_render(t->t, env, plain, html);
}
