/* SPDX-License-Identifier: MIT */
/*
 * dialog_load.c - the dialog loader's entry point (see dialog_load.h): the top-level keys, the
 * built-in text overrides, the graph checks, and the order of the whole load.
 */
#include "engine/dialog_load.h"

#include <stdio.h>
#include <string.h>

#include <yaml.h>

#include "common/diag.h"
#include "common/yamljson.h"
#include "engine/internal.h"
#include "engine/text.h"
#include "frichebot/alloc.h"
#include "frichebot/err.h"

/* The reminder's answers about a roadmap step ("fait", "plus tard"...). */
static const char *const status_syn_faite[] = {"fait", "faite", "termine", "fini", "ok", NULL};
static const char *const status_syn_en_cours[] = {"en cours", "commence", "on avance", NULL};
static const char *const status_syn_plus_tard[] = {"pas encore", "pas maintenant", "later", NULL};
static const char *const status_syn_bloquee[] = {"bloque", "coince", "probleme", NULL};
static const char *const status_syn_np[] = {"pas concerne", "non pertinent", "inutile", NULL};
static const fb_choice_t status_choices[] = {
    {"faite", "C'est fait", status_syn_faite},
    {"en_cours", "C'est en cours", status_syn_en_cours},
    {"plus_tard", "Plus tard", status_syn_plus_tard},
    {"bloquee", "C'est bloqué", status_syn_bloquee},
    {"non_pertinente", "Pas concerné", status_syn_np},
};

/* The six statuses, offered when the user picks a step to update (ids: fb__status_names). */
static const char *const all_syn_a_faire[] = {
    "a faire",   "pas commencee", "pas commence", "pas encore commencee",
    "pas faite", "pas fait",      "a refaire",    "non commencee",
    NULL};
static const char *const all_syn_en_cours[] = {"en cours",  "commencee",      "commence",
                                               "demarree",  "demarre",        "lancee",
                                               "on avance", "c est en cours", NULL};
static const char *const all_syn_bloquee[] = {"bloquee",       "bloque",       "coincee", "coince",
                                              "au point mort", "c est bloque", NULL};
static const char *const all_syn_faite[] = {"faite",      "fait", "terminee", "termine",
                                            "finie",      "fini", "realisee", "realise",
                                            "c est fait", "ok",   NULL};
static const char *const all_syn_np[] = {"pas concernee",
                                         "pas concerne",
                                         "non concernee",
                                         "non concerne",
                                         "non pertinente",
                                         "non pertinent",
                                         "pas pertinente",
                                         "sans objet",
                                         "inutile",
                                         "ne s applique pas",
                                         NULL};
static const char *const all_syn_deja[] = {"deja faite",    "deja fait",         "deja realisee",
                                           "deja terminee", "c etait deja fait", NULL};
static const fb_choice_t all_status_choices[FB__ST_COUNT] = {
    {"a_faire", "À faire", all_syn_a_faire},
    {"en_cours", "En cours", all_syn_en_cours},
    {"bloquee", "Bloquée", all_syn_bloquee},
    {"faite", "Faite (terminée depuis la feuille de route)", all_syn_faite},
    {"non_pertinente", "Pas concernée", all_syn_np},
    {"deja_faite", "Déjà faite (avant la feuille de route)", all_syn_deja},
};

/* ---- graph checks ---------------------------------------------------------------------------- */

/* Marks in l->reached every state reachable from `s` by `suite`, branches, `aller` and
 * `apres_fin`. */
static void reach(struct ld *l, int s)
{
    fb_dialog_t *d = l->d;
    int *stack = fb_malloc((d->n_states + 1) * sizeof(int));
    size_t top = 0;
    if (s < 0)
        goto out;
    stack[top++] = s;
    l->reached[s] = 1;
    while (top > 0) {
        const struct fb__state *st = &d->states[stack[--top]];
        for (size_t i = 0; i <= st->n_next + st->n_choices; i++) {
            int t = i < st->n_next                   ? st->next[i].target
                    : i < st->n_next + st->n_choices ? st->choices[i - st->n_next].target
                                                     : st->after_end;
            if (t >= 0 && !l->reached[t]) {
                l->reached[t] = 1;
                stack[top++] = t;
            }
        }
    }
out:
    fb_free(stack);
}

/* ---- the whole file -------------------------------------------------------------------------- */

enum tkey {
    TK_DIALOGUE,
    TK_TITRE,
    TK_DEBUT,
    TK_CATALOGUES,
    TK_RELANCE,
    TK_TEXTES,
    TK_COMMANDES,
    TK_ETATS,
    TK_REGLES,
    TK_MIGRATIONS,
    TK_CONNAISSANCES,
    TK_COUNT
};
static const char *const top_keys[TK_COUNT] = {
    "dialogue",  "titre", "debut",  "catalogues", "relance",      "textes",
    "commandes", "etats", "regles", "migrations", "connaissances"};

/* Compiles the built-in texts (defaults, then `textes:` overrides). */
static void compile_texts(struct ld *l, const yaml_node_t *v)
{
    fb_dialog_t *d = l->d;
    if (v) {
        if (v->type != YAML_MAPPING_NODE) {
            fb__ld_errn(l, v, "« textes » doit être une correspondance nom: texte");
        } else {
            yaml_node_t *vals[FB__T_COUNT], *kn[FB__T_COUNT];
            fb__ld_map_fields(l, v, fb__text_names, FB__T_COUNT, vals, kn, " dans « textes »");
            for (int i = 0; i < FB__T_COUNT; i++)
                if (vals[i])
                    (void)fb__ld_compile_text(l, vals[i], fb__text_names[i], &d->texts[i]);
        }
    }
    for (int i = 0; i < FB__T_COUNT; i++) {
        if (d->texts[i].t)
            continue;
        fb_buf_t tmp;
        fb_buf_init(&tmp, 4096);
        d->texts[i].t = fb_template_parse(fb__text_defaults[i], 1, 1, &tmp);
        if (!d->texts[i].t)
            fb__ld_errat(l, 1, 1, "texte par défaut « %s » refusé par le moteur de textes : %s",
                         fb__text_names[i], fb_buf_str(&tmp));
        else
            fb__ld_prerender(&d->texts[i]);
        fb_buf_free(&tmp);
    }
}

/* Compiles the dialog of mapping `root`: the top-level keys, every state, the rules and
 * migrations, then the graph checks. Errors go to `l`. */
static void compile_root(struct ld *l, yaml_node_t *root)
{
    fb_dialog_t *d = l->d;
    yaml_node_t *f[TK_COUNT], *kn[TK_COUNT];
    fb__ld_map_fields(l, root, top_keys, TK_COUNT, f, kn, "");

    if (!f[TK_DIALOGUE]) {
        fb__ld_errat(l, 1, 1, "clé obligatoire « dialogue » manquante (l'identifiant du dialogue)");
    } else if (!fb__ld_is_text(f[TK_DIALOGUE]) ||
               !fb__ld_valid_id(fb__ld_sval(f[TK_DIALOGUE]), f[TK_DIALOGUE]->data.scalar.length,
                                true)) {
        fb__ld_errn(
            l, f[TK_DIALOGUE],
            "« dialogue » doit être un identifiant en minuscules sans accent, chiffres, _ et - "
            "(par exemple « friche »)");
    } else {
        d->id = fb_strdup(fb__ld_sval(f[TK_DIALOGUE]));
    }
    if (f[TK_TITRE]) {
        const char *t = fb__ld_want_text(l, f[TK_TITRE], "titre");
        if (t)
            d->title = fb_strdup(t);
    }
    if (f[TK_COMMANDES])
        fb__ld_compile_commands(l, &d->cmds, f[TK_COMMANDES]);
    if (!f[TK_ETATS]) {
        fb__ld_errat(l, 1, 1, "clé obligatoire « etats » manquante (les états du dialogue)");
    } else if (f[TK_ETATS]->type != YAML_MAPPING_NODE) {
        fb__ld_errn(
            l, f[TK_ETATS],
            "« etats » doit être une correspondance nom_de_l_etat: {dire: ...} ou {question: "
            "...}, pas %s",
            fb__ld_kind_of(f[TK_ETATS]));
    } else {
        fb__ld_declare(l, f[TK_ETATS]);
    }
    /* after the slots and tags are declared: catalogue items' `si:` conditions name them */
    if (f[TK_CATALOGUES])
        fb__ld_compile_catalogues(l, f[TK_CATALOGUES]);
    if (f[TK_RELANCE])
        fb__ld_compile_relance(l, NULL, f[TK_RELANCE], &d->relance);
    compile_texts(l, f[TK_TEXTES]);
    for (size_t i = 0; i < d->n_states; i++)
        fb__ld_compile_state(l, i);
    if (!f[TK_DEBUT])
        fb__ld_errat(l, 1, 1, "clé obligatoire « debut » manquante (le nom du premier état)");
    else if (f[TK_ETATS] && f[TK_ETATS]->type == YAML_MAPPING_NODE)
        d->start = fb__ld_want_state(l, f[TK_DEBUT], "debut");
    if (f[TK_REGLES])
        fb__ld_compile_rules(l, f[TK_REGLES]);
    if (f[TK_MIGRATIONS])
        fb__ld_compile_migrations(l, f[TK_MIGRATIONS]);
    if (f[TK_CONNAISSANCES])
        fb__ld_compile_kb(l, f[TK_CONNAISSANCES]);
    fb__ld_check_compared_strings(l);
    if (l->has_commune && !d->geo)
        fb__ld_errn(
            l, f[TK_ETATS],
            "ce dialogue pose une question de type commune mais l'index des communes n'est pas "
            "chargé");

    /* `apres_fin` leads to what is asked after the end: a question or a message, not an end */
    for (size_t i = 0; i < d->n_states; i++) {
        int t = d->states[i].after_end;
        if (t >= 0 && d->states[t].final)
            fb__ld_errat(l, d->states[i].line, d->states[i].col,
                         "« apres_fin » de l'état « %s » mène à l'état final « %s » : il doit "
                         "mener à une question ou à un message",
                         d->states[i].id, d->states[t].id);
    }
    /* unreachable states (only meaningful when the start is known) */
    if (d->start >= 0) {
        l->reached = fb_calloc(d->n_states + 1, 1);
        reach(l, d->start);
        for (size_t i = 0; i < d->n_states; i++)
            if (!l->reached[i])
                fb__ld_errat(
                    l, d->states[i].line, d->states[i].col,
                    "l'état « %s » n'est jamais atteint depuis « debut » (aucune « suite », "
                    "« aller », « apres_fin » ou branche n'y mène)",
                    d->states[i].id);
    }
    if (d->n_states == 0 && f[TK_ETATS] && f[TK_ETATS]->type == YAML_MAPPING_NODE)
        fb__ld_errn(l, f[TK_ETATS], "« etats » est vide");

    for (size_t i = 0; i < d->n_states; i++)
        fb__ld_build_choice_tables(&d->states[i]);
}

/* Frees what load `l` holds (not the dialog). */
static void ld_free(struct ld *l)
{
    for (size_t i = 0; i < l->n_files; i++)
        fb_free(l->files[i]);
    fb_free(l->files);
    fb_diag_free(&l->diag);
    fb_free(l->lines);
    fb_free(l->state_nodes);
    fb_free(l->state_keys);
    fb_free(l->reached);
    for (size_t i = 0; i < l->n_cmps; i++) {
        fb_free(l->cmps[i].name);
        fb_free(l->cmps[i].str);
    }
    fb_free(l->cmps);
}

struct answers_only {
    const fb_dialog_t *d;
    bool yes;
};

/* fb_expr_names() callback for finish(): a tag or a name that is not a slot says no. */
static void answers_only_cb(void *arg, const char *name, bool is_tag, int line, int col)
{
    struct answers_only *a = arg;
    (void)line;
    (void)col;
    if (is_tag || fb__strmap_get(&a->d->slot_map, name) < 0)
        a->yes = false;
}

/* Adds `v` (a new reference, stolen) to the strings sessions are read with, unless known. */
static void intern_add(fb_dialog_t *d, json_t *v, size_t cap)
{
    if (v && d->n_intern < cap &&
        fb__strmap_put(&d->intern_map, json_string_value(v), (int)d->n_intern)) {
        d->intern_json[d->n_intern++] = v;
        if (json_string_length(v) > d->intern_max_len)
            d->intern_max_len = json_string_length(v);
    } else {
        json_decref(v);
    }
}

/* The strings a stored session repeats, shared by fb_engine_session_loadb(): the dialog's own
 * JSON strings, and each option id (the answers of choice questions). */
static void intern_table(fb_dialog_t *d)
{
    size_t cap = 2 + d->n_states + d->n_tags + d->n_items + FB__ST_COUNT;
    for (size_t i = 0; i < d->n_states; i++)
        cap += d->states[i].n_choices;
    d->intern_json = fb_calloc(cap, sizeof(json_t *));
    intern_add(d, json_incref(d->id_json), cap);
    intern_add(d, json_incref(d->hash_json), cap);
    for (size_t i = 0; i < d->n_states; i++)
        intern_add(d, json_incref(d->state_json[i]), cap);
    for (size_t i = 0; i < d->n_tags; i++)
        intern_add(d, json_incref(d->tag_json[i]), cap);
    for (size_t i = 0; i < d->n_items; i++)
        intern_add(d, json_incref(d->item_ref_json[i]), cap);
    for (int i = 0; i < FB__ST_COUNT; i++)
        intern_add(d, json_incref(d->status_name_json[i]), cap);
    for (size_t i = 0; i < d->n_states; i++)
        for (size_t o = 0; o < d->states[i].n_choices; o++)
            intern_add(d, json_string(d->states[i].choices[o].id), cap);
    for (size_t i = 0; i < d->n_states; i++)
        fb__ptrmap_put(&d->ptr_map, d->state_json[i], FB__PTR_STATE + 4 * (int)i);
    for (size_t i = 0; i < d->n_tags; i++)
        fb__ptrmap_put(&d->ptr_map, d->tag_json[i], FB__PTR_TAG + 4 * (int)i);
    for (size_t i = 0; i < d->n_items; i++)
        fb__ptrmap_put(&d->ptr_map, d->item_ref_json[i], FB__PTR_ITEM + 4 * (int)i);
}

/* The `schedule` effects of relance setting `r` (see struct fb__relance). */
static void relance_effects(const fb_dialog_t *d, struct fb__relance *r)
{
    if (!r->set)
        return;
    for (int i = 0; i < FB__REASON_COUNT; i++) {
        json_t *e = json_object();
        (void)json_object_set_nocheck(e, "type", d->effect_json[FB_EFFECT_SCHEDULE]);
        (void)json_object_set_nocheck(e, "id", d->timer_json);
        (void)json_object_set_new_nocheck(e, "after", json_integer((json_int_t)r->after));
        (void)json_object_set_nocheck(e, "reason", d->reason_json[i]);
        r->schedule[i] = e;
    }
}

/* The `say` effect of static text `t` (see struct fb__text). */
static void text_effect(const fb_dialog_t *d, struct fb__text *t)
{
    if (!t->plain || !t->html || t->say)
        return;
    json_t *e = json_object();
    (void)json_object_set_nocheck(e, "type", d->effect_json[FB_EFFECT_SAY]);
    (void)json_object_set_nocheck(e, "text", t->plain);
    (void)json_object_set_nocheck(e, "html", t->html);
    t->say = e;
}

/* The effects most steps emit unchanged, built once and shared (machine.c): asking a question
 * whose text is static, saying a static text, arming a reminder after its configured delay. The
 * same members, in the same order, as the step would build. */
static void shared_effects(fb_dialog_t *d)
{
    for (int i = 0; i < FB__T_COUNT; i++)
        text_effect(d, &d->texts[i]);
    for (size_t i = 0; i < d->n_states; i++) {
        struct fb__state *st = &d->states[i];
        text_effect(d, &st->text);
        text_effect(d, &st->help);
        for (size_t k = 0; k < st->n_reprompts; k++)
            text_effect(d, &st->reprompts[k]);
        text_effect(d, &st->relance.msg);
        if (st->ask_plain && st->ask_html) {
            json_t *e = json_object();
            (void)json_object_set_nocheck(e, "type", d->effect_json[FB_EFFECT_SAY]);
            (void)json_object_set_nocheck(e, "text", st->ask_plain);
            (void)json_object_set_nocheck(e, "html", st->ask_html);
            if (st->choices_json)
                (void)json_object_set_nocheck(e, "choices", st->choices_json);
            st->ask_effect = e;
        }
        relance_effects(d, &st->relance);
    }
    text_effect(d, &d->relance.msg);
    relance_effects(d, &d->relance);
    d->step_effects = fb_calloc(d->n_items * FB__ST_COUNT + 1, sizeof(json_t *));
    for (size_t i = 0; i < d->n_rules; i++)
        for (size_t j = 0; j < d->rules[i].n_items; j++) {
            size_t it = (size_t)d->rules[i].items[j];
            if (d->step_effects[it * FB__ST_COUNT])
                continue; /* named by an earlier rule */
            for (int st = 0; st < FB__ST_COUNT; st++) {
                json_t *e = json_object();
                (void)json_object_set_nocheck(e, "type", d->effect_json[FB_EFFECT_STEP]);
                (void)json_object_set_nocheck(e, "item", d->item_ref_json[it]);
                (void)json_object_set_nocheck(e, "status", d->status_name_json[st]);
                d->step_effects[it * FB__ST_COUNT + (size_t)st] = e;
            }
        }
}

/* The JSON and choice tables a loaded dialog `d` shares with every step, built once. */
static void finish(fb_dialog_t *d)
{
    for (size_t i = 0; i < d->n_items; i++) {
        struct answers_only a = {d, true};
        fb_expr_names(d->items[i].cond, answers_only_cb, &a);
        d->items[i].cond_answers = a.yes;
    }
    d->state_json = fb_calloc(d->n_states + 1, sizeof(json_t *));
    for (size_t i = 0; i < d->n_states; i++)
        d->state_json[i] = json_string(d->states[i].id);
    d->tag_json = fb_calloc(d->n_tags + 1, sizeof(json_t *));
    for (size_t i = 0; i < d->n_tags; i++)
        d->tag_json[i] = json_string(d->tags[i]);
    d->item_ref_json = fb_calloc(d->n_items + 1, sizeof(json_t *));
    d->item_id_json = fb_calloc(d->n_items + 1, sizeof(json_t *));
    for (size_t i = 0; i < d->n_items; i++) {
        d->item_ref_json[i] = json_string(d->items[i].ref);
        d->item_id_json[i] = json_string(d->items[i].id);
    }
    for (int i = 0; i < FB__ST_COUNT; i++) {
        d->status_name_json[i] = json_string(fb__status_names[i]);
        d->status_label_json[i] = json_string(fb__status_labels[i]);
    }
    d->id_json = json_string(d->id);
    d->hash_json = json_string(d->hash);
    d->format_json = json_integer(FB__SESSION_FORMAT);
    for (int i = 0; i < FB_EFFECT_COUNT; i++)
        d->effect_json[i] = json_string(fb_effect_name((fb_effect_t)i));
    d->timer_json = json_string(FB__TIMER_ID);
    d->reason_json[FB__REASON_INACTIVITE] = json_string("inactivite");
    d->reason_json[FB__REASON_SUIVI] = json_string("suivi");
    shared_effects(d);
    intern_table(d);
    d->status_choices = fb_calloc(FB_ARRAY_SIZE(status_choices), sizeof(fb_choice_t));
    memcpy(d->status_choices, status_choices, sizeof(status_choices));
    d->n_status_choices = FB_ARRAY_SIZE(status_choices);
    d->status_set = fb_choice_set_new(d->status_choices, d->n_status_choices);
    d->status_json = json_array();
    d->yesno_json = json_pack("[{s:s,s:s},{s:s,s:s}]", "id", "oui", "label", "Oui", "id", "non",
                              "label", "Non");
    for (size_t i = 0; i < FB_ARRAY_SIZE(status_choices); i++)
        (void)json_array_append_new(
            d->status_json,
            json_pack("{s:s,s:s}", "id", status_choices[i].id, "label", status_choices[i].label));
    d->all_status_choices = fb_calloc(FB_ARRAY_SIZE(all_status_choices), sizeof(fb_choice_t));
    memcpy(d->all_status_choices, all_status_choices, sizeof(all_status_choices));
    d->n_all_status_choices = FB_ARRAY_SIZE(all_status_choices);
    d->all_status_set = fb_choice_set_new(d->all_status_choices, d->n_all_status_choices);
    d->all_status_json = json_array();
    for (size_t i = 0; i < FB_ARRAY_SIZE(all_status_choices); i++)
        (void)json_array_append_new(d->all_status_json,
                                    json_pack("{s:s,s:s}", "id", all_status_choices[i].id, "label",
                                              all_status_choices[i].label));
}

/*
 * Loads a dialog from `text`. `name` names the file in messages; catalogues are read relative
 * to `dir`. Returns the dialog, or NULL with every error appended to `errors`.
 */
fb_dialog_t *fb__ld_load(const char *name, const char *dir, const char *text, size_t len,
                         const fb_geo_t *geo, fb_buf_t *errors)
{
    struct ld ld = {0}, *l = &ld;
    fb_dialog_t *d = fb_calloc(1, sizeof(*d));
    yaml_document_t doc;
    bool have_doc = false;
    d->refs = 1;
    d->geo = geo;
    d->start = -1;
    d->path = fb_strdup(name ? name : "(dialogue)");
    l->d = d;
    l->dir = dir;
    fb_diag_init(&l->diag, MAX_ERRORS, &fb__ld_words);
    l->files = fb_calloc(1, sizeof(*l->files));
    l->files[0] = fb__ld_escaped_name(d->path);
    l->n_files = 1;
    l->hash = 1469598103934665603ull;
    if (!text)
        len = 0;
    fb__ld_hash_bytes(&l->hash, text ? text : "", len);

    for (int i = 0; i < FB__CMD_COUNT; i++)
        for (size_t w = 0; fb__ld_cmd_default_words[i][w]; w++)
            fb__ld_cmd_add_word(&d->cmds, i, fb__ld_cmd_default_words[i][w]);

    if (!fb__ld_load_doc(
            l, 0, text ? text : "", len, &doc,
            "le dialogue est vide : il doit avoir au moins « dialogue: », « debut: » et "
            "« etats: »"))
        goto done;
    have_doc = true;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root->type != YAML_MAPPING_NODE) {
        fb__ld_errn(
            l, root,
            "un dialogue doit être une correspondance (dialogue: ..., debut: ..., etats: ...), "
            "pas %s",
            fb__ld_kind_of(root));
        goto done;
    }
    compile_root(l, root);

done:
    if (have_doc)
        yaml_document_delete(&doc);
    snprintf(d->hash, sizeof(d->hash), "%016llx", (unsigned long long)l->hash);
    bool failed = fb_diag_failed(&l->diag);
    if (failed)
        fb__ld_flush_errors(l, errors);
    ld_free(l);
    if (failed) {
        fb__dialog_free(d);
        return NULL;
    }
    finish(d);
    return d;
}
