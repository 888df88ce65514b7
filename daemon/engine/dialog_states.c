/* SPDX-License-Identifier: MIT */
/*
 * dialog_states.c - the dialog loader's two passes over `etats` (see dialog_load.h): pass 1
 * declares state ids, slots, types and tags; pass 2 compiles each state (text, question, choices,
 * reminders, commands, transitions, avis).
 */
#include <stdio.h>
#include <string.h>

#include <yaml.h>

#include "common/diag.h"
#include "common/yamljson.h"
#include "engine/dialog_load.h"
#include "engine/internal.h"
#include "engine/text.h"
#include "frichebot/alloc.h"
#include "frichebot/err.h"

/* Words of expr.h that can never be slot names. */
static const char *const reserved_words[] = {"et",  "ou",   "non",  "dans",  "vrai",  "faux",
                                             "nsp", "rien", "null", "connu", "known", "and",
                                             "or",  "not",  "in",   "true",  "false"};

/* ---- pass 1: declarations -------------------------------------------------------------------- */

const char *const fb__ld_type_names[FB__Q_COMMUNE + 1] = {
    "", "oui_non", "choix", "choix_multiple", "nombre", "texte", "date", "commune"};

/* The question type named by scalar `v`, or FB__Q_NONE. */
static enum fb__qtype type_of(const yaml_node_t *v)
{
    if (!fb__ld_is_text(v))
        return FB__Q_NONE;
    for (size_t i = 1; i < FB_ARRAY_SIZE(fb__ld_type_names); i++)
        if (strcmp(fb__ld_sval(v), fb__ld_type_names[i]) == 0)
            return (enum fb__qtype)i;
    return FB__Q_NONE;
}

/* The value of key `name` in mapping `map`, or NULL (first occurrence). */
static yaml_node_t *get_key(struct ld *l, const yaml_node_t *map, const char *name)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = fb__ld_node(l, p->key);
        if (fb__ld_is_text(k) && fb__ld_key_is(k, name))
            return fb__ld_node(l, p->value);
    }
    return NULL;
}

/* Declares tag `v` (a scalar) if it is a valid id; pass 2 reports invalid ones. */
static void declare_tag(struct ld *l, const yaml_node_t *v)
{
    fb_dialog_t *d = l->d;
    if (!fb__ld_is_text(v) || !fb__ld_valid_id(fb__ld_sval(v), v->data.scalar.length, false))
        return;
    if (fb__strmap_get(&d->tag_map, fb__ld_sval(v)) >= 0)
        return;
    d->tags = fb_realloc(d->tags, (d->n_tags + 1) * sizeof(*d->tags));
    d->tags[d->n_tags] = fb_strdup(fb__ld_sval(v));
    (void)fb__strmap_put(&d->tag_map, d->tags[d->n_tags], (int)d->n_tags);
    d->n_tags++;
}

/*
 * First pass over `etats`: numbers the states (reporting duplicates), declares the slots of
 * question states with their types, and the tags that signals and choices emit.
 */
void fb__ld_declare(struct ld *l, yaml_node_t *states)
{
    fb_dialog_t *d = l->d;
    size_t cap = (size_t)(states->data.mapping.pairs.top - states->data.mapping.pairs.start);
    d->states = fb_calloc(cap ? cap : 1, sizeof(*d->states));
    l->state_nodes = fb_calloc(cap ? cap : 1, sizeof(yaml_node_t *));
    l->state_keys = fb_calloc(cap ? cap : 1, sizeof(yaml_node_t *));
    for (yaml_node_pair_t *p = states->data.mapping.pairs.start; p < states->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = fb__ld_node(l, p->key), *v = fb__ld_node(l, p->value);
        if (!k || !v)
            continue;
        if (!fb__ld_is_text(k) || !fb__ld_valid_name(fb__ld_sval(k), k->data.scalar.length)) {
            if (fb__ld_is_scalar(k)) {
                fb_yaml_shown_t s = fb__ld_shown_node(k);
                fb__ld_errn(
                    l, k,
                    "nom d'état invalide « %s » : lettres minuscules sans accent, chiffres et _ "
                    "(par exemple « surface_du_site »)",
                    s.s);
            } else {
                fb__ld_errn(l, k, "un nom d'état doit être un nom, pas %s", fb__ld_kind_of(k));
            }
            continue;
        }
        int prev = fb__strmap_get(&d->state_map, fb__ld_sval(k));
        if (prev >= 0) {
            const yaml_node_t *first = l->state_keys[prev];
            fb__ld_errn(l, k, "l'état « %s » est défini deux fois (première définition à %ld:%ld)",
                        fb__ld_sval(k), (long)first->start_mark.line + 1,
                        (long)first->start_mark.column + 1);
            continue;
        }
        size_t i = d->n_states++;
        struct fb__state *st = &d->states[i];
        st->id = fb_strdup(fb__ld_sval(k));
        st->line = (int)k->start_mark.line + 1;
        st->col = (int)k->start_mark.column + 1;
        st->slot = -1;
        (void)fb__strmap_put(&d->state_map, st->id, (int)i);
        l->state_nodes[i] = v;
        l->state_keys[i] = k;
        if (v->type != YAML_MAPPING_NODE)
            continue;

        /* tags */
        size_t n;
        yaml_node_item_t *items = fb__ld_seq_items(get_key(l, v, "signaux"), &n);
        for (size_t j = 0; j < n; j++)
            declare_tag(l, get_key(l, fb__ld_node(l, items[j]), "tag"));
        items = fb__ld_seq_items(get_key(l, v, "choix"), &n);
        for (size_t j = 0; j < n; j++) {
            yaml_node_t *sig = get_key(l, fb__ld_node(l, items[j]), "signaux");
            size_t m;
            yaml_node_item_t *tags = fb__ld_seq_items(sig, &m);
            if (fb__ld_is_scalar(sig))
                declare_tag(l, sig);
            for (size_t t = 0; t < m; t++)
                declare_tag(l, fb__ld_node(l, tags[t]));
        }

        /* slot */
        if (!get_key(l, v, "question"))
            continue;
        enum fb__qtype type = type_of(get_key(l, v, "type"));
        yaml_node_t *var = get_key(l, v, "variable");
        const char *name = st->id;
        if (var) {
            if (!fb__ld_is_text(var) ||
                !fb__ld_valid_name(fb__ld_sval(var), var->data.scalar.length))
                continue; /* reported by pass 2 */
            name = fb__ld_sval(var);
        }
        int slot = fb__strmap_get(&d->slot_map, name);
        if (slot < 0) {
            d->slots = fb_realloc(d->slots, (d->n_slots + 1) * sizeof(*d->slots));
            d->slots[d->n_slots] = (struct fb__slot){fb_strdup(name), type, (int)i};
            (void)fb__strmap_put(&d->slot_map, d->slots[d->n_slots].name, (int)d->n_slots);
            slot = (int)d->n_slots++;
        } else if (type != FB__Q_NONE && d->slots[slot].type != FB__Q_NONE &&
                   type != d->slots[slot].type) {
            fb__ld_errn(
                l, var ? var : k,
                "la variable « %s » est déjà remplie par l'état « %s », une question de type %s : "
                "deux questions qui partagent une variable doivent avoir le même type",
                name, d->states[d->slots[slot].state].id, fb__ld_type_names[d->slots[slot].type]);
        } else if (d->slots[slot].type == FB__Q_NONE) {
            d->slots[slot].type = type;
        }
        st->slot = slot;
    }
}

/* ---- pass 2: states -------------------------------------------------------------------------- */

enum skey {
    SK_DIRE,
    SK_QUESTION,
    SK_TYPE,
    SK_VARIABLE,
    SK_LIBELLE,
    SK_AIDE,
    SK_NSP,
    SK_RELANCES,
    SK_ECHECS,
    SK_SUITE,
    SK_CONDITION,
    SK_SIGNAUX,
    SK_CHOIX,
    SK_UNITE,
    SK_MIN,
    SK_MAX,
    SK_FUTUR,
    SK_FIN,
    SK_RELANCE,
    SK_COMMANDES,
    SK_AVIS,
    SK_APRES_FIN,
    SK_COUNT
};
static const char *const state_keys[SK_COUNT] = {
    "dire",           "question",  "type",   "variable", "libelle",   "aide",
    "je_ne_sais_pas", "relances",  "echecs", "suite",    "condition", "signaux",
    "choix",          "unite",     "min",    "max",      "futur",     "fin",
    "relance",        "commandes", "avis",   "apres_fin"};

/* Resolves a state name in scalar `v` (for key `what`). Returns its index or -1 after reporting.
 */
int fb__ld_want_state(struct ld *l, const yaml_node_t *v, const char *what)
{
    const char *name = fb__ld_want_text(l, v, what);
    if (!name)
        return -1;
    int i = fb__strmap_get(&l->d->state_map, name);
    if (i < 0) {
        fb_yaml_shown_t s = fb__ld_shown_node(v);
        fb__ld_errn(l, v, "« %s » mène à l'état « %s », qui n'existe pas", what, s.s);
    }
    return i;
}

/* Compiles `suite`: a state name, or a list of branches {si, aller}. */
static void compile_suite(struct ld *l, struct fb__state *st, const yaml_node_t *v)
{
    if (fb__ld_is_scalar(v)) {
        int t = fb__ld_want_state(l, v, "suite");
        if (t >= 0) {
            st->next = fb_calloc(1, sizeof(*st->next));
            st->next[0].target = t;
            st->n_next = 1;
        }
        return;
    }
    size_t n;
    yaml_node_item_t *items = fb__ld_seq_items(v, &n);
    if (v->type != YAML_SEQUENCE_NODE || n == 0) {
        fb__ld_errn(
            l, v,
            "« suite » doit être le nom d'un état, ou une liste de branches « - si: ... aller: "
            "... »");
        return;
    }
    st->next = fb_calloc(n, sizeof(*st->next));
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *b = fb__ld_node(l, items[i]);
        static const char *const keys[] = {"si", "aller"};
        yaml_node_t *vals[2], *knodes[2];
        if (!b || b->type != YAML_MAPPING_NODE) {
            fb__ld_errn(l, b,
                        "une branche de « suite » doit être « si: ... » et « aller: ... », pas %s",
                        b ? fb__ld_kind_of(b) : "vide");
            continue;
        }
        fb__ld_map_fields(l, b, keys, 2, vals, knodes, " dans une branche de « suite »");
        struct fb__branch *br = &st->next[st->n_next];
        br->target = -1;
        if (!vals[1])
            fb__ld_errn(l, b,
                        "clé obligatoire « aller » manquante dans cette branche de « suite »");
        else
            br->target = fb__ld_want_state(l, vals[1], "aller");
        if (vals[0])
            br->cond = fb__ld_compile_expr(l, vals[0], "si", &br->cond_src);
        if (!vals[0] && i + 1 < n)
            fb__ld_errn(l, b,
                        "cette branche sans « si » s'applique toujours : les branches suivantes ne "
                        "serviraient jamais (placez-la en dernier)");
        if (vals[0] && i + 1 == n)
            fb__ld_errn(l, b,
                        "la dernière branche de « suite » doit être sans « si » : c'est elle qui "
                        "s'applique quand aucune autre ne convient");
        st->n_next++;
    }
}

/* Compiles `signaux` of a question: a list of {si, tag}. */
static void compile_signals(struct ld *l, struct fb__state *st, const yaml_node_t *v)
{
    size_t n;
    yaml_node_item_t *items = fb__ld_seq_items(v, &n);
    if (v->type != YAML_SEQUENCE_NODE) {
        fb__ld_errn(l, v, "« signaux » doit être une liste de « - si: ... tag: ... »");
        return;
    }
    st->signals = fb_calloc(n ? n : 1, sizeof(*st->signals));
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *s = fb__ld_node(l, items[i]);
        static const char *const keys[] = {"si", "tag"};
        yaml_node_t *vals[2];
        if (!s || s->type != YAML_MAPPING_NODE) {
            fb__ld_errn(l, s, "un signal doit être « si: ... » et « tag: ... », pas %s",
                        s ? fb__ld_kind_of(s) : "vide");
            continue;
        }
        fb__ld_map_fields(l, s, keys, 2, vals, NULL, " dans un signal");
        if (!vals[0] || !vals[1]) {
            fb__ld_errn(l, s, "clé obligatoire « %s » manquante dans ce signal",
                        vals[0] ? "tag" : "si");
            continue;
        }
        if (!fb__ld_is_text(vals[1]) ||
            !fb__ld_valid_id(fb__ld_sval(vals[1]), vals[1]->data.scalar.length, false)) {
            fb__ld_errn(
                l, vals[1],
                "« tag » doit être un nom en minuscules sans accent, chiffres et _ (par exemple "
                "« site_pollue »)");
            continue;
        }
        fb_expr_t *e = fb__ld_compile_expr(l, vals[0], "si", NULL);
        if (!e)
            continue;
        st->signals[st->n_signals].cond = e;
        st->signals[st->n_signals].tag = fb__strmap_get(&l->d->tag_map, fb__ld_sval(vals[1]));
        st->n_signals++;
    }
}

/* Reads a list of strings (or one string) into a new NULL-terminated array; NULL on error. */
static char **want_strings(struct ld *l, const yaml_node_t *v, const char *what, size_t *count)
{
    size_t n;
    yaml_node_item_t *items = fb__ld_seq_items(v, &n);
    if (fb__ld_is_text(v)) {
        char **out = fb_calloc(2, sizeof(*out));
        out[0] = fb_strdup(fb__ld_sval(v));
        *count = 1;
        return out;
    }
    if (v->type != YAML_SEQUENCE_NODE) {
        fb__ld_errn(l, v, "« %s » doit être une liste de textes", what);
        return NULL;
    }
    char **out = fb_calloc(n + 1, sizeof(*out));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *s = fb__ld_node(l, items[i]);
        const char *t = s ? fb__ld_want_text(l, s, what) : NULL;
        if (t)
            out[k++] = fb_strdup(t);
    }
    *count = k;
    return out;
}

/* Frees a NULL-terminated array of strings (NULL is fine). */
void fb__ld_strings_free(char **s)
{
    for (size_t i = 0; s && s[i]; i++)
        fb_free(s[i]);
    fb_free(s);
}

/* Compiles `choix`: a list of {id, texte, synonymes, signaux, aller}. */
static void compile_choices(struct ld *l, struct fb__state *st, const yaml_node_t *v)
{
    size_t n;
    yaml_node_item_t *items = fb__ld_seq_items(v, &n);
    if (v->type != YAML_SEQUENCE_NODE || n < 2 || n > MAX_CHOICES) {
        fb__ld_errn(l, v,
                    "« choix » doit être une liste de 2 à %d options « - id: ... texte: ... »",
                    MAX_CHOICES);
        if (v->type != YAML_SEQUENCE_NODE || n > MAX_CHOICES)
            return;
    }
    struct fb__strmap ids = {0};
    st->choices = fb_calloc(n ? n : 1, sizeof(*st->choices));
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *c = fb__ld_node(l, items[i]);
        static const char *const keys[] = {"id", "texte", "synonymes", "signaux", "aller"};
        yaml_node_t *vals[5], *knodes[5];
        if (!c || c->type != YAML_MAPPING_NODE) {
            fb__ld_errn(l, c,
                        "une option de « choix » doit être « id: ... » et « texte: ... », pas %s",
                        c ? fb__ld_kind_of(c) : "vide");
            continue;
        }
        fb__ld_map_fields(l, c, keys, 5, vals, knodes, " dans une option de « choix »");
        struct fb__choice *ch = &st->choices[st->n_choices];
        ch->target = -1;
        bool ok = true;
        if (!vals[0]) {
            fb__ld_errn(l, c, "clé obligatoire « id » manquante dans cette option");
            ok = false;
        } else if (!fb__ld_is_text(vals[0]) ||
                   !fb__ld_valid_id(fb__ld_sval(vals[0]), vals[0]->data.scalar.length, false)) {
            fb__ld_errn(
                l, vals[0],
                "« id » doit être un identifiant en minuscules sans accent, chiffres et _ (par "
                "exemple « friche_industrielle »)");
            ok = false;
        } else if (!fb__strmap_put(&ids, fb__ld_sval(vals[0]), (int)i)) {
            fb__ld_errn(l, vals[0], "l'option « %s » est définie deux fois dans ce choix",
                        fb__ld_sval(vals[0]));
            ok = false;
        } else if (strcmp(fb__ld_sval(vals[0]), "nsp") == 0) {
            fb__ld_errn(
                l, vals[0],
                "« nsp » est réservé à « je ne sais pas » : utilisez « je_ne_sais_pas: true »");
            ok = false;
        }
        const char *label = NULL;
        if (!vals[1])
            fb__ld_errn(l, c, "clé obligatoire « texte » manquante dans cette option");
        else
            label = fb__ld_want_text(l, vals[1], "texte");
        if (!ok || !label)
            continue;
        ch->id = fb_strdup(fb__ld_sval(vals[0]));
        ch->label = fb_strdup(label);
        size_t ns = 0;
        if (vals[2])
            ch->synonyms = want_strings(l, vals[2], "synonymes", &ns);
        if (vals[3]) {
            size_t nt = 0;
            char **tags = want_strings(l, vals[3], "signaux", &nt);
            ch->tags = fb_calloc(nt ? nt : 1, sizeof(*ch->tags));
            for (size_t t = 0; t < nt; t++) {
                if (!fb__ld_valid_id(tags[t], strlen(tags[t]), false)) {
                    fb__ld_errn(l, vals[3],
                                "signal invalide « %s » : minuscules sans accent, chiffres et _",
                                fb_yaml_show(tags[t], strlen(tags[t])).s);
                    continue;
                }
                ch->tags[ch->n_tags++] = fb__strmap_get(&l->d->tag_map, tags[t]);
            }
            fb__ld_strings_free(tags);
        }
        if (vals[4]) {
            if (st->type == FB__Q_MULTI)
                fb__ld_errn(
                    l, knodes[4],
                    "« aller » ne s'applique pas à un choix multiple (utilisez « suite » avec des "
                    "branches)");
            else
                ch->target = fb__ld_want_state(l, vals[4], "aller");
        }
        st->n_choices++;
    }
    fb__strmap_free(&ids);
}

/* Compiles `relance:` (top level when `st` is NULL). */
void fb__ld_compile_relance(struct ld *l, struct fb__state *st, const yaml_node_t *v,
                            struct fb__relance *r)
{
    static const char *const keys[] = {"apres", "message", "max", "etape"};
    yaml_node_t *vals[4];
    if (v->type != YAML_MAPPING_NODE) {
        fb__ld_errn(l, v, "« relance » doit être une correspondance : apres, message, max, etape");
        return;
    }
    fb__ld_map_fields(l, v, keys, st ? 4 : 3, vals, NULL,
                      st ? " dans « relance »" : " dans « relance » (niveau du dialogue)");
    r->set = true;
    r->max = DEFAULT_RELANCE_MAX;
    r->after = l->d->relance.set ? l->d->relance.after : 0;
    if (vals[0])
        (void)fb__ld_want_duration(l, vals[0], "apres", &r->after);
    else if (!l->d->relance.set)
        fb__ld_errn(l, v,
                    "clé obligatoire « apres » manquante dans « relance » (par exemple « apres: 6 "
                    "semaines »)");
    if (vals[1])
        (void)fb__ld_compile_text(l, vals[1], "message", &r->msg);
    if (vals[2])
        (void)fb__ld_want_uint(l, vals[2], "max", 1, 50, &r->max);
    if (st && vals[3]) {
        const char *e = fb__ld_want_text(l, vals[3], "etape");
        if (e && strcmp(e, "premiere") == 0)
            r->step = true;
        else if (e && strcmp(e, "aucune") != 0)
            fb__ld_errn(l, vals[3], "« etape » doit valoir « premiere » ou « aucune »");
        if (r->step && !st->final)
            fb__ld_errn(l, vals[3],
                        "« etape: premiere » ne s'applique qu'à un état final (« fin: true »)");
    }
}

/* Frees the words of a command set (not the set itself). */
void fb__ld_cmdset_free(struct fb__cmdset *c)
{
    for (int i = 0; i < FB__CMD_COUNT; i++) {
        for (size_t j = 0; j < c->n[i]; j++)
            fb_free(c->words[i][j]);
        FB_FREE(c->words[i]);
        c->n[i] = 0;
    }
}

/* Adds a copy of the already folded word `folded` to command `cmd`. */
void fb__ld_cmd_add_word(struct fb__cmdset *c, int cmd, const char *folded)
{
    c->words[cmd] = fb_realloc(c->words[cmd], (c->n[cmd] + 1) * sizeof(char *));
    c->words[cmd][c->n[cmd]++] = fb_strdup(folded);
}

/* Copies words and switches of `src` into the empty set `dst`. */
static void cmdset_copy(struct fb__cmdset *dst, const struct fb__cmdset *src)
{
    for (int i = 0; i < FB__CMD_COUNT; i++) {
        dst->disabled[i] = src->disabled[i];
        for (size_t j = 0; j < src->n[i]; j++)
            fb__ld_cmd_add_word(dst, i, src->words[i][j]);
    }
}

/* Applies a `commandes:` mapping on top of `c`. */
void fb__ld_compile_commands(struct ld *l, struct fb__cmdset *c, const yaml_node_t *v)
{
    if (v->type != YAML_MAPPING_NODE) {
        fb__ld_errn(l, v,
                    "« commandes » doit être une correspondance, par exemple « conseiller: {mots: "
                    "[humain]} »");
        return;
    }
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        yaml_node_t *k = fb__ld_node(l, p->key), *val = fb__ld_node(l, p->value);
        if (!k || !val)
            continue;
        int cmd = -1;
        if (fb__ld_is_text(k)) {
            char *f = fb_text_fold_dup(fb__ld_sval(k));
            for (int i = 0; i < FB__CMD_COUNT; i++) {
                char *g = fb_text_fold_dup(fb__ld_cmd_names[i]);
                if (strcmp(f, g) == 0)
                    cmd = i;
                fb_free(g);
            }
            fb_free(f);
        }
        if (cmd < 0) {
            fb_yaml_shown_t s = fb__ld_is_scalar(k) ? fb__ld_shown_node(k) : fb_yaml_show("?", 1);
            fb__ld_errn(
                l, k,
                "commande inconnue « %s » (commandes : aide, retour, recommencer, conseiller, "
                "ou_en_suis_je, mes_donnees, oublier_mes_donnees, stop, mes_etapes)",
                s.s);
            continue;
        }
        static const char *const keys[] = {"mots", "desactive"};
        yaml_node_t *vals[2];
        if (val->type != YAML_MAPPING_NODE) {
            fb__ld_errn(l, val, "la commande « %s » attend « mots: [...] » ou « desactive: true »",
                        fb__ld_cmd_names[cmd]);
            continue;
        }
        fb__ld_map_fields(l, val, keys, 2, vals, NULL, " dans une commande");
        if (vals[1]) {
            bool off = false;
            if (fb__ld_want_bool(l, vals[1], "desactive", &off))
                c->disabled[cmd] = off;
        }
        if (vals[0]) {
            size_t n = 0;
            char **words = want_strings(l, vals[0], "mots", &n);
            for (size_t i = 0; i < n; i++) {
                char *f = fb_text_fold_dup(words[i]);
                if (f[0] == '\0')
                    fb__ld_errn(l, vals[0], "le mot « %s » est vide une fois simplifié",
                                fb_yaml_show(words[i], strlen(words[i])).s);
                else
                    fb__ld_cmd_add_word(c, cmd, f);
                fb_free(f);
            }
            fb__ld_strings_free(words);
        }
    }
}

/* Compiles state `i` from its mapping (pass 2). */
static void compile_avis(struct ld *l, struct fb__state *st, const yaml_node_t *v);

/* The keys of a question state that do not depend on its type: the text, `type`, `variable` (and
 * names it may not take), `libelle`, `aide`, `je_ne_sais_pas`, `relances`, `echecs`, `signaux`, and
 * `fin` (refused: `*final_question` is set). `f`/`kn` are the values/keys by enum skey, `k` the
 * state's key. */
static void question_keys(struct ld *l, struct fb__state *st, yaml_node_t **f, yaml_node_t **kn,
                          const yaml_node_t *k, bool *final_question)
{
    fb_dialog_t *d = l->d;
    (void)fb__ld_compile_text(l, f[SK_QUESTION], "question", &st->text);
    if (!f[SK_TYPE]) {
        fb__ld_errn(l, k,
                    "clé obligatoire « type » manquante dans l'état « %s » (oui_non, choix, "
                    "choix_multiple, nombre, texte, date ou commune)",
                    st->id);
    } else {
        st->type = type_of(f[SK_TYPE]);
        if (st->type == FB__Q_NONE) {
            fb_yaml_shown_t s =
                fb__ld_is_scalar(f[SK_TYPE]) ? fb__ld_shown_node(f[SK_TYPE]) : fb_yaml_show("?", 1);
            fb__ld_errn(l, f[SK_TYPE],
                        "type de question inconnu « %s » (oui_non, choix, choix_multiple, nombre, "
                        "texte, date ou commune)",
                        s.s);
        }
    }
    if (f[SK_VARIABLE]) {
        const yaml_node_t *var = f[SK_VARIABLE];
        if (!fb__ld_is_text(var) || !fb__ld_valid_name(fb__ld_sval(var), var->data.scalar.length)) {
            fb__ld_errn(l, var,
                        "« variable » doit être un nom en minuscules sans accent, chiffres et _ "
                        "(par exemple « surface_du_site »)");
        }
    }
    if (st->slot >= 0) {
        const char *name = d->slots[st->slot].name;
        const yaml_node_t *at = f[SK_VARIABLE] ? f[SK_VARIABLE] : k;
        for (size_t r = 0; r < FB_ARRAY_SIZE(reserved_words); r++)
            if (strcmp(name, reserved_words[r]) == 0)
                fb__ld_errn(
                    l, at,
                    "« %s » est un mot réservé des expressions : choisissez un autre nom de "
                    "variable (« variable: ... »)",
                    name);
        if (fb__ld_is_builtin(name))
            fb__ld_errn(l, at,
                        "« %s » est un nom prédéfini des textes : choisissez un autre nom de "
                        "variable (« variable: ... »)",
                        name);
        if (fb__ld_catalogue_index(d, name) >= 0)
            fb__ld_errn(l, at,
                        "« %s » est aussi le nom d'un catalogue : choisissez un autre nom de "
                        "variable (« variable: ... »)",
                        name);
    }
    if (f[SK_LIBELLE]) {
        const char *lb = fb__ld_want_text(l, f[SK_LIBELLE], "libelle");
        if (lb)
            st->label = fb_strdup(lb);
    }
    if (f[SK_AIDE])
        (void)fb__ld_compile_text(l, f[SK_AIDE], "aide", &st->help);
    if (f[SK_NSP])
        (void)fb__ld_want_bool(l, f[SK_NSP], "je_ne_sais_pas", &st->nsp_ok);
    if (f[SK_RELANCES]) {
        size_t n;
        yaml_node_item_t *items = fb__ld_seq_items(f[SK_RELANCES], &n);
        if (fb__ld_is_scalar(f[SK_RELANCES])) {
            st->reprompts = fb_calloc(1, sizeof(*st->reprompts));
            if (fb__ld_compile_text(l, f[SK_RELANCES], "relances", &st->reprompts[0]))
                st->n_reprompts = 1;
        } else if (f[SK_RELANCES]->type != YAML_SEQUENCE_NODE || n == 0) {
            fb__ld_errn(l, f[SK_RELANCES], "« relances » doit être une liste de messages");
        } else {
            st->reprompts = fb_calloc(n, sizeof(*st->reprompts));
            for (size_t r = 0; r < n; r++) {
                yaml_node_t *m = fb__ld_node(l, items[r]);
                if (m && fb__ld_compile_text(l, m, "relances", &st->reprompts[st->n_reprompts]))
                    st->n_reprompts++;
            }
        }
    }
    if (f[SK_ECHECS]) {
        static const char *const keys[] = {"max", "action"};
        yaml_node_t *ev[2];
        if (f[SK_ECHECS]->type != YAML_MAPPING_NODE) {
            fb__ld_errn(l, f[SK_ECHECS],
                        "« echecs » doit être une correspondance, par exemple « {max: 3, action: "
                        "conseiller} »");
        } else {
            fb__ld_map_fields(l, f[SK_ECHECS], keys, 2, ev, NULL, " dans « echecs »");
            if (ev[0])
                (void)fb__ld_want_uint(l, ev[0], "max", 1, 20, &st->fail_max);
            if (ev[1]) {
                const char *a = fb__ld_want_text(l, ev[1], "action");
                if (a && strcmp(a, "conseiller") == 0)
                    st->fail_action = FB__FAIL_CONSEILLER;
                else if (a && strcmp(a, "aide") != 0)
                    fb__ld_errn(l, ev[1], "« action » doit valoir « aide » ou « conseiller »");
            }
        }
    }
    if (f[SK_SIGNAUX])
        compile_signals(l, st, f[SK_SIGNAUX]);
    if (f[SK_FIN] && st->final) {
        *final_question = true;
        fb__ld_errn(l, kn[SK_FIN],
                    "seul un message (« dire ») peut être final : ajoutez un état « dire » avec "
                    "« fin: true » après cette question");
    }
    st->final = false;
    if (st->type == FB__Q_COMMUNE)
        l->has_commune = true;
}

/* The keys of a question state that depend on its type: `choix`, `unite`, `min`/`max`, `futur`. */
static void question_type_keys(struct ld *l, struct fb__state *st, yaml_node_t **f,
                               yaml_node_t **kn, const yaml_node_t *k)
{
    bool choice = st->type == FB__Q_CHOICE || st->type == FB__Q_MULTI;
    if (choice) {
        if (f[SK_CHOIX])
            compile_choices(l, st, f[SK_CHOIX]);
        else
            fb__ld_errn(l, k,
                        "clé obligatoire « choix » manquante dans l'état « %s » (question de "
                        "type %s)",
                        st->id, fb__ld_type_names[st->type]);
    } else if (f[SK_CHOIX] && st->type != FB__Q_NONE) {
        fb__ld_errn(l, kn[SK_CHOIX],
                    "« choix » ne s'applique qu'aux questions de type choix ou choix_multiple");
    }
    if (f[SK_UNITE]) {
        static const char *const units[] = {"aucune", "m2", "ha", "eur", "annees", "mois"};
        static const fb_unit_t uvals[] = {FB_UNIT_NONE, FB_UNIT_M2,    FB_UNIT_HA,
                                          FB_UNIT_EUR,  FB_UNIT_YEARS, FB_UNIT_MONTHS};
        if (st->type != FB__Q_NUMBER && st->type != FB__Q_NONE) {
            fb__ld_errn(l, kn[SK_UNITE], "« unite » ne s'applique qu'aux questions de type nombre");
        } else {
            bool found = false;
            for (size_t u = 0; u < FB_ARRAY_SIZE(units); u++)
                if (fb__ld_is_text(f[SK_UNITE]) &&
                    strcmp(fb__ld_sval(f[SK_UNITE]), units[u]) == 0) {
                    st->unit = uvals[u];
                    found = true;
                }
            if (!found)
                fb__ld_errn(l, f[SK_UNITE],
                            "« unite » doit valoir aucune, m2, ha, eur, annees ou "
                            "mois");
        }
    }
    for (int m = SK_MIN; m <= SK_MAX; m++) {
        if (!f[m])
            continue;
        const char *name = state_keys[m];
        if (st->type == FB__Q_NUMBER) {
            double x;
            if (fb__ld_want_number(l, f[m], name, &x))
                *(m == SK_MIN ? &st->min : &st->max) = x;
        } else if (st->type == FB__Q_TEXT) {
            unsigned x;
            if (fb__ld_want_uint(l, f[m], name, m == SK_MIN ? 0 : 1, 10000, &x))
                *(m == SK_MIN ? &st->tmin : &st->tmax) = x;
        } else if (st->type != FB__Q_NONE) {
            fb__ld_errn(l, kn[m], "« %s » ne s'applique qu'aux questions de type nombre ou texte",
                        name);
        }
    }
    if (st->type == FB__Q_NUMBER && st->min > st->max)
        fb__ld_errn(l, kn[SK_MAX], "« max » est plus petit que « min »");
    if (st->type == FB__Q_TEXT && st->tmin > st->tmax)
        fb__ld_errn(l, kn[SK_MAX], "« max » est plus petit que « min »");
    if (f[SK_FUTUR]) {
        if (st->type == FB__Q_DATE)
            (void)fb__ld_want_bool(l, f[SK_FUTUR], "futur", &st->future);
        else if (st->type != FB__Q_NONE)
            fb__ld_errn(l, kn[SK_FUTUR], "« futur » ne s'applique qu'aux questions de type date");
    }
}

/* A message state (`dire`): its text, and the question keys it may not have. */
static void message_keys(struct ld *l, struct fb__state *st, yaml_node_t **f, yaml_node_t **kn)
{
    (void)fb__ld_compile_text(l, f[SK_DIRE], "dire", &st->text);
    static const int not_for_messages[] = {SK_TYPE,     SK_VARIABLE, SK_LIBELLE, SK_AIDE,  SK_NSP,
                                           SK_RELANCES, SK_ECHECS,   SK_SIGNAUX, SK_CHOIX, SK_UNITE,
                                           SK_MIN,      SK_MAX,      SK_FUTUR};
    for (size_t m = 0; m < FB_ARRAY_SIZE(not_for_messages); m++) {
        int key = not_for_messages[m];
        if (kn[key])
            fb__ld_errn(l, kn[key], "« %s » ne s'applique qu'à une question, pas à un message",
                        state_keys[key]);
    }
}

/* The keys every state may have: `avis`, `condition`, `suite`, `relance`, `commandes`,
 * `apres_fin` (final states). */
static void common_keys(struct ld *l, struct fb__state *st, yaml_node_t **f, yaml_node_t **kn)
{
    fb_dialog_t *d = l->d;
    st->avis_note = st->avis_comment = -1;
    st->after_end = -1;
    if (f[SK_APRES_FIN]) {
        if (!st->final)
            fb__ld_errn(l, kn[SK_APRES_FIN],
                        "« apres_fin » ne s'applique qu'à un état final (« fin: true »)");
        else
            st->after_end = fb__ld_want_state(l, f[SK_APRES_FIN], "apres_fin");
    }
    if (f[SK_AVIS]) {
        if (!f[SK_DIRE] || f[SK_QUESTION])
            fb__ld_errn(l, kn[SK_AVIS], "« avis » ne s'applique qu'à un message (« dire: »)");
        else
            compile_avis(l, st, f[SK_AVIS]);
    }
    if (f[SK_CONDITION])
        st->cond = fb__ld_compile_expr(l, f[SK_CONDITION], "condition", &st->cond_src);
    if (f[SK_SUITE]) {
        if (st->final)
            fb__ld_errn(l, kn[SK_SUITE], "un état final (« fin: true ») n'a pas de « suite »");
        else
            compile_suite(l, st, f[SK_SUITE]);
    }
    if (f[SK_RELANCE]) {
        if (st->type == FB__Q_NONE && !st->final && f[SK_DIRE])
            fb__ld_errn(l, kn[SK_RELANCE],
                        "« relance » ne sert que sur une question ou sur un état final");
        else
            fb__ld_compile_relance(l, st, f[SK_RELANCE], &st->relance);
    }
    if (f[SK_COMMANDES]) {
        st->own_cmds = fb_calloc(1, sizeof(*st->own_cmds));
        cmdset_copy(st->own_cmds, &d->cmds);
        fb__ld_compile_commands(l, st->own_cmds, f[SK_COMMANDES]);
        st->cmds = st->own_cmds;
    }
}

/* Checks that state `st` has a way out: a `suite`, `fin: true`, or choices that all lead on. */
static void check_way_out(struct ld *l, const struct fb__state *st, yaml_node_t **f,
                          const yaml_node_t *k, bool final_question)
{
    bool all_choices_go = st->n_choices > 0 && !st->nsp_ok;
    for (size_t c = 0; c < st->n_choices; c++)
        if (st->choices[c].target < 0)
            all_choices_go = false;
    if (!f[SK_SUITE] && !st->final && !final_question && (f[SK_DIRE] || f[SK_QUESTION])) {
        if (!all_choices_go)
            fb__ld_errn(
                l, k,
                "l'état « %s » n'a pas de « suite » et n'est pas final : ajoutez « suite: ... » "
                "ou « fin: true »",
                st->id);
        else if (st->cond)
            fb__ld_errn(
                l, k,
                "l'état « %s » a une « condition » mais pas de « suite » : où aller quand il est "
                "sauté ?",
                st->id);
    }
}

void fb__ld_compile_state(struct ld *l, size_t i)
{
    fb_dialog_t *d = l->d;
    struct fb__state *st = &d->states[i];
    yaml_node_t *v = l->state_nodes[i];
    yaml_node_t *k = l->state_keys[i];
    yaml_node_t *f[SK_COUNT], *kn[SK_COUNT];
    char where[128];
    bool final_question = false;

    st->cmds = &d->cmds;
    st->after_end = -1;
    st->fail_max = DEFAULT_FAILS;
    st->tmin = 1;
    st->tmax = 500;
    st->min = -1e300;
    st->max = 1e300;
    if (v->type != YAML_MAPPING_NODE) {
        fb__ld_errn(
            l, fb__ld_is_null(v) ? k : v,
            "l'état « %s » doit être une correspondance (dire: ... ou question: ...), pas %s",
            st->id, fb__ld_kind_of(v));
        return;
    }
    snprintf(where, sizeof(where), " dans l'état « %s »", st->id);
    fb__ld_map_fields(l, v, state_keys, SK_COUNT, f, kn, where);

    if (f[SK_FIN]) {
        bool fin = false;
        if (fb__ld_want_bool(l, f[SK_FIN], "fin", &fin))
            st->final = fin;
    }
    if (f[SK_DIRE] && f[SK_QUESTION]) {
        fb__ld_errn(
            l, kn[SK_QUESTION],
            "l'état « %s » a « dire » et « question » : un état est soit un message, soit une "
            "question",
            st->id);
    } else if (!f[SK_DIRE] && !f[SK_QUESTION]) {
        fb__ld_errn(l, k, "l'état « %s » n'a ni « dire » (un message) ni « question »", st->id);
    }

    if (f[SK_QUESTION] && !f[SK_DIRE]) {
        question_keys(l, st, f, kn, k, &final_question);
        question_type_keys(l, st, f, kn, k);
    } else if (f[SK_DIRE]) {
        message_keys(l, st, f, kn);
    }
    common_keys(l, st, f, kn);
    check_way_out(l, st, f, k, final_question);
}

/* The slot named by scalar `v` (key `what` of `avis`), checked against the allowed types;
 * -1 after reporting. */
static int avis_slot(struct ld *l, const yaml_node_t *v, const char *what, enum fb__qtype t1,
                     enum fb__qtype t2, const char *types)
{
    const char *name = fb__ld_want_text(l, v, what);
    if (!name)
        return -1;
    int slot = fb__strmap_get(&l->d->slot_map, name);
    if (slot < 0) {
        fb__ld_errn(l, v, "« %s » : « %s » n'est pas une variable (le nom d'une question)", what,
                    fb__ld_shown_node(v).s);
        return -1;
    }
    enum fb__qtype t = l->d->slots[slot].type;
    if (t != t1 && t != t2) {
        fb__ld_errn(l, v,
                    "« %s » : la variable « %s » doit être remplie par une question de type %s",
                    what, name, types);
        return -1;
    }
    return slot;
}

/* Compiles a message's `avis: {note: SLOT, commentaire: SLOT}`. */
static void compile_avis(struct ld *l, struct fb__state *st, const yaml_node_t *v)
{
    static const char *const keys[] = {"note", "commentaire"};
    yaml_node_t *f[2];
    if (v->type != YAML_MAPPING_NODE) {
        fb__ld_errn(
            l, v, "« avis » doit être une correspondance {note: variable, commentaire: variable}");
        return;
    }
    fb__ld_map_fields(l, v, keys, 2, f, NULL, " dans « avis »");
    if (!f[0]) {
        fb__ld_errn(l, v,
                    "clé obligatoire « note » manquante dans « avis » (la variable de la note)");
        return;
    }
    st->avis_note = avis_slot(l, f[0], "note", FB__Q_CHOICE, FB__Q_NUMBER, "choix ou nombre");
    if (f[1])
        st->avis_comment = avis_slot(l, f[1], "commentaire", FB__Q_TEXT, FB__Q_TEXT, "texte");
}

void fb__ld_build_choice_tables(struct fb__state *st)
{
    fb_buf_t plain, html;
    size_t n = st->n_choices;
    bool yesno = st->type == FB__Q_YESNO;
    if (!yesno && n == 0)
        return;
    static const char *const yn_ids[] = {"oui", "non"};
    static const char *const yn_labels[] = {"Oui", "Non"};
    size_t total = (yesno ? 2 : n) + (st->nsp_ok ? 1 : 0);
    st->achoices = fb_calloc(total, sizeof(*st->achoices));
    st->choices_json = json_array();
    fb_buf_init(&plain, MAX_TEXT_BYTES);
    fb_buf_init(&html, MAX_TEXT_BYTES);
    for (size_t i = 0; i < total; i++) {
        const char *id, *label;
        const char *const *syn = NULL;
        if (i < (yesno ? 2 : n)) {
            id = yesno ? yn_ids[i] : st->choices[i].id;
            label = yesno ? yn_labels[i] : st->choices[i].label;
            syn = yesno ? NULL : (const char *const *)st->choices[i].synonyms;
        } else {
            id = "nsp";
            label = "Je ne sais pas";
        }
        st->achoices[i] = (fb_choice_t){id, label, syn};
        json_t *o = json_pack("{s:s, s:s}", "id", id, "label", label);
        if (o)
            (void)json_array_append_new(st->choices_json, o);
        (void)fb_buf_printf(&plain, "%s%zu. %s", i ? "\n" : "", i + 1, label);
        (void)fb_buf_printf(&html, "%s%zu. ", i ? "<br>" : "<p>", i + 1);
        (void)fb_template_html_escape(label, strlen(label), &html);
    }
    (void)fb_buf_puts(&html, "</p>");
    st->n_achoices = total;
    st->aset = fb_choice_set_new(st->achoices, st->n_achoices);
    st->list_plain = fb_buf_take(&plain);
    st->list_html = fb_buf_take(&html);
    if (fb__text_static(&st->text)) {
        fb_buf_t p2, h2;
        fb_buf_init(&p2, MAX_TEXT_BYTES);
        fb_buf_init(&h2, MAX_TEXT_BYTES);
        (void)fb_buf_printf(&p2, "%s\n\n%s", json_string_value(st->text.plain), st->list_plain);
        (void)fb_buf_printf(&h2, "%s%s", json_string_value(st->text.html), st->list_html);
        st->ask_plain = json_stringn(fb_buf_str(&p2), p2.len);
        st->ask_html = json_stringn(fb_buf_str(&h2), h2.len);
        fb_buf_free(&p2);
        fb_buf_free(&h2);
    }
}
