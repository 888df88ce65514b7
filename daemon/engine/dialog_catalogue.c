/* SPDX-License-Identifier: MIT */
/*
 * dialog_catalogue.c - the dialog loader's catalogues (see dialog_load.h): catalogue files and
 * their items, the roadmap rules (`regles`) and the state migrations of a reload.
 */
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "common/diag.h"
#include "common/yamljson.h"
#include "engine/dialog_load.h"
#include "engine/internal.h"
#include "engine/text.h"
#include "frichebot/alloc.h"
#include "frichebot/err.h"

/* ---- catalogues ------------------------------------------------------------------------------ */

/* A catalogue field as a new JSON value: a plain scalar that reads as a number or a boolean
 * becomes one, anything else a string (NULL when the text is not valid UTF-8). */
static json_t *scalar_json(const yaml_node_t *v)
{
    const char *s = fb__ld_sval(v);
    size_t len = v->data.scalar.length;
    if (v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        if (strcmp(s, "true") == 0 || strcmp(s, "vrai") == 0)
            return json_true();
        if (strcmp(s, "false") == 0 || strcmp(s, "faux") == 0)
            return json_false();
        bool num = len > 0 && len < 20;
        size_t dots = 0;
        for (size_t i = 0; i < len; i++) {
            if (s[i] == '.')
                dots++;
            else if (!(s[i] >= '0' && s[i] <= '9') && !(i == 0 && s[i] == '-'))
                num = false;
        }
        if (num && dots <= 1 && s[len - 1] != '.' && s[0] != '.') {
            if (dots == 0)
                return json_integer(strtoll(s, NULL, 10));
            return json_real(strtod(s, NULL));
        }
    }
    return json_stringn(s, len);
}

/* The fields of a catalogue item, as found in its mapping. */
struct item_keys {
    const yaml_node_t *idn, *src, *checked, *titre, *until;
    fb_expr_t *cond; /* its `si:`, owned */
};

/* Reads the fields of item mapping `it` into `obj` (each a scalar; `si:` compiled into
 * `ik->cond`, not a field). Returns false when a field was refused (after reporting). */
static bool item_fields(struct ld *l, const yaml_node_t *it, json_t *obj, struct item_keys *ik)
{
    struct fb__strmap seen = {0};
    bool ok = true;
    for (yaml_node_pair_t *p = it->data.mapping.pairs.start; p < it->data.mapping.pairs.top; p++) {
        yaml_node_t *k = fb__ld_node(l, p->key), *v = fb__ld_node(l, p->value);
        if (!k || !v)
            continue;
        if (!fb__ld_is_text(k) || !fb__ld_valid_name(fb__ld_sval(k), k->data.scalar.length)) {
            fb__ld_errn(l, k, "nom de champ invalide : minuscules sans accent, chiffres et _");
            ok = false;
            continue;
        }
        if (!fb__strmap_put(&seen, fb__ld_sval(k), 0)) {
            fb__ld_errn(l, k, "champ « %s » en double dans cet élément", fb__ld_sval(k));
            ok = false;
            continue;
        }
        if (fb__ld_key_is(k, "catalogue") || fb__ld_key_is(k, "statut")) {
            fb__ld_errn(l, k,
                        "« %s » est ajouté par le moteur : ce champ ne peut pas être écrit ici",
                        fb__ld_sval(k));
            ok = false;
            continue;
        }
        if (!fb__ld_is_scalar(v)) {
            fb__ld_errn(l, v, "le champ « %s » doit être une valeur simple, pas %s", fb__ld_sval(k),
                        fb__ld_kind_of(v));
            ok = false;
            continue;
        }
        if (fb__ld_key_is(k, "si")) {
            fb_expr_free(ik->cond);
            l->in_item_cond = true;
            ik->cond = fb__ld_compile_expr(l, v, "si", NULL);
            l->in_item_cond = false;
            if (!ik->cond)
                ok = false;
            continue; /* not a field of the item */
        }
        if (fb__ld_key_is(k, "id"))
            ik->idn = v;
        else if (fb__ld_key_is(k, "source"))
            ik->src = v;
        else if (fb__ld_key_is(k, "verifie_le"))
            ik->checked = v;
        else if (fb__ld_key_is(k, "valable_jusqu_au"))
            ik->until = v;
        else if (fb__ld_key_is(k, "titre"))
            ik->titre = v;
        json_t *jv = scalar_json(v);
        if (!jv || strlen(fb__ld_sval(v)) != v->data.scalar.length) {
            fb__ld_errn(l, v, "le champ « %s » n'est pas un texte valide", fb__ld_sval(k));
            json_decref(jv);
            ok = false;
            continue;
        }
        (void)json_object_set_new(obj, fb__ld_sval(k), jv);
    }
    fb__strmap_free(&seen);
    return ok;
}

/* Checks the required fields of item `it` (id, titre, source, verifie_le) and its dates; clears
 * `ik->idn` when the id is not valid. Returns false after reporting a problem. */
static bool check_item_keys(struct ld *l, const yaml_node_t *it, struct item_keys *ik)
{
    const yaml_node_t *idn = ik->idn, *src = ik->src, *checked = ik->checked;
    const yaml_node_t *titre = ik->titre, *until = ik->until;
    bool ok = true;
    if (!idn) {
        fb__ld_errn(l, it, "clé obligatoire « id » manquante dans cet élément");
        ok = false;
    } else if (!fb__ld_is_text(idn) ||
               !fb__ld_valid_id(fb__ld_sval(idn), idn->data.scalar.length, false)) {
        fb__ld_errn(l, idn,
                    "« id » doit être un identifiant en minuscules sans accent, chiffres et _");
        ok = false;
        idn = NULL;
    }
    const char *idtxt = idn ? fb__ld_sval(idn) : "?";
    if (!titre) {
        fb__ld_errn(l, it, "clé obligatoire « titre » manquante dans l'élément « %s »", idtxt);
        ok = false;
    } else if (!fb__ld_want_text(l, titre, "titre")) {
        ok = false;
    }
    if (!src) {
        fb__ld_errn(l, it,
                    "clé obligatoire « source » manquante dans l'élément « %s » (d'où vient "
                    "l'information : un lien ou une référence)",
                    idtxt);
        ok = false;
    } else if (!fb__ld_want_text(l, src, "source")) {
        ok = false;
    }
    if (!checked) {
        fb__ld_errn(l, it,
                    "clé obligatoire « verifie_le » manquante dans l'élément « %s » (la date de la "
                    "dernière vérification, AAAA-MM-JJ)",
                    idtxt);
        ok = false;
    } else if (!fb__ld_is_text(checked) ||
               !fb__ld_valid_date(fb__ld_sval(checked), checked->data.scalar.length)) {
        fb__ld_errn(l, checked,
                    "« verifie_le » doit être une date AAAA-MM-JJ, par exemple 2026-10-01");
        ok = false;
    }
    if (until && (!fb__ld_is_text(until) ||
                  !fb__ld_valid_date(fb__ld_sval(until), until->data.scalar.length))) {
        fb__ld_errn(l, until,
                    "« valable_jusqu_au » doit être une date AAAA-MM-JJ, par exemple 2027-12-31");
        ok = false;
    } else if (until && checked && fb__ld_is_text(checked) &&
               strcmp(fb__ld_sval(until), fb__ld_sval(checked)) < 0) {
        fb__ld_errn(l, until, "« valable_jusqu_au » est antérieur à « verifie_le »");
        ok = false;
    }
    ik->idn = idn;
    return ok;
}

/* Loads item mapping `it` of catalogue `c` into d->items (which has room for it). */
static void load_item(struct ld *l, struct fb__catalogue *c, const yaml_node_t *it)
{
    fb_dialog_t *d = l->d;
    json_t *obj = json_object();
    struct item_keys ik = {0};
    bool ok = item_fields(l, it, obj, &ik);
    ok = check_item_keys(l, it, &ik) && ok;
    const yaml_node_t *idn = ik.idn;
    fb_expr_t *cond = ik.cond;
    char *ref = idn ? fb_asprintf("%s.%s", c->name, fb__ld_sval(idn)) : NULL;
    if (ref && fb__strmap_get(&d->item_map, ref) >= 0) {
        fb__ld_errn(l, idn, "l'élément « %s » est défini deux fois dans ce catalogue",
                    fb__ld_sval(idn));
        ok = false;
    }
    if (!ok || !idn) {
        fb_free(ref);
        json_decref(obj);
        fb_expr_free(cond);
        return;
    }
    (void)json_object_set_new(obj, "catalogue", json_string(c->name));
    struct fb__item *item = &d->items[d->n_items];
    item->ref = ref;
    item->id = ref + strlen(c->name) + 1;
    item->obj = obj;
    item->cond = cond;
    (void)fb__strmap_put(&d->item_map, item->ref, (int)d->n_items);
    d->n_items++;
    c->count++;
}

/* Loads catalogue `c` (declared in the dialog by `name_node`/`path_node`). */
static void load_catalogue(struct ld *l, struct fb__catalogue *c, const yaml_node_t *path_node)
{
    fb_dialog_t *d = l->d;
    size_t name_len = strlen(c->name);
    char *tag = fb_malloc(name_len + 2); /* "\0" NAME "\0" */
    tag[0] = '\0';
    memcpy(tag + 1, c->name, name_len + 1);
    c->broken = true; /* until the document is parsed */
    struct fb__ld_side side;
    yaml_node_t *root = fb__ld_side_open(
        l, &side, c->path, path_node, tag, name_len + 2, "le catalogue ", "le catalogue ",
        "le catalogue est vide : il doit avoir « catalogue: » et « items: »");
    fb_free(tag);
    if (!root)
        goto out;
    c->broken = false;
    static const char *const keys[] = {"catalogue", "titre", "items"};
    yaml_node_t *vals[3];
    if (root->type != YAML_MAPPING_NODE) {
        fb__ld_errn(l, root,
                    "un catalogue doit être une correspondance avec « catalogue: » et « items: »");
        goto out;
    }
    fb__ld_map_fields(l, root, keys, 3, vals, NULL, " du catalogue");
    if (!vals[0]) {
        fb__ld_errat(l, 1, 1, "clé obligatoire « catalogue » manquante (le nom du catalogue)");
    } else {
        const char *n = fb__ld_want_text(l, vals[0], "catalogue");
        if (n && strcmp(n, c->name) != 0)
            fb__ld_errn(
                l, vals[0],
                "ce catalogue s'appelle « %s » mais le dialogue le déclare sous le nom « %s »",
                fb_yaml_show(n, strlen(n)).s, c->name);
    }
    if (vals[1])
        (void)fb__ld_want_text(l, vals[1], "titre");
    size_t n = 0;
    yaml_node_item_t *items = fb__ld_seq_items(vals[2], &n);
    if (!vals[2]) {
        fb__ld_errat(l, 1, 1, "clé obligatoire « items » manquante (la liste des éléments)");
        goto out;
    }
    if (vals[2]->type != YAML_SEQUENCE_NODE) {
        fb__ld_errn(l, vals[2], "« items » doit être une liste d'éléments « - id: ... »");
        goto out;
    }
    c->first = d->n_items;
    d->items = fb_realloc(d->items, (d->n_items + n + 1) * sizeof(*d->items));
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *it = fb__ld_node(l, items[i]);
        if (!it || it->type != YAML_MAPPING_NODE) {
            fb__ld_errn(l, it,
                        "un élément doit être une correspondance « id: ... titre: ... », pas %s",
                        it ? fb__ld_kind_of(it) : "vide");
            continue;
        }
        load_item(l, c, it);
    }
out:
    fb__ld_side_close(l, &side);
}

/* Reads `catalogues:` (name -> path) and loads each file. */
void fb__ld_compile_catalogues(struct ld *l, const yaml_node_t *v)
{
    fb_dialog_t *d = l->d;
    if (v->type != YAML_MAPPING_NODE) {
        fb__ld_errn(
            l, v,
            "« catalogues » doit être une correspondance nom: fichier (par exemple « etapes: "
            "catalogues/etapes.yaml »)");
        return;
    }
    size_t n = (size_t)(v->data.mapping.pairs.top - v->data.mapping.pairs.start);
    d->catalogues = fb_calloc(n ? n : 1, sizeof(*d->catalogues));
    struct fb__strmap names = {0};
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        yaml_node_t *k = fb__ld_node(l, p->key), *val = fb__ld_node(l, p->value);
        if (!k || !val)
            continue;
        if (!fb__ld_is_text(k) || !fb__ld_valid_name(fb__ld_sval(k), k->data.scalar.length)) {
            fb__ld_errn(l, k, "nom de catalogue invalide : minuscules sans accent, chiffres et _");
            continue;
        }
        if (!fb__strmap_put(&names, fb__ld_sval(k), 0)) {
            fb__ld_errn(l, k, "le catalogue « %s » est déclaré deux fois", fb__ld_sval(k));
            continue;
        }
        if (fb__ld_is_builtin(fb__ld_sval(k)) ||
            fb_expr_is_keyword(fb__ld_sval(k), k->data.scalar.length))
            fb__ld_errn(
                l, k,
                "« %s » est un nom réservé des textes et des conditions : choisissez un autre "
                "nom de catalogue",
                fb__ld_sval(k));
        const char *path = fb__ld_want_text(l, val, "catalogues");
        if (!path)
            continue;
        struct fb__catalogue *c = &d->catalogues[d->n_catalogues++];
        c->name = fb_strdup(fb__ld_sval(k));
        c->path = fb_strdup(path);
        c->first = d->n_items;
        load_catalogue(l, c, val);
    }
    fb__strmap_free(&names);
}

/* Resolves "catalogue.item" in scalar `v`. Returns the item index or -1 after reporting. */
static int want_item(struct ld *l, const yaml_node_t *v)
{
    fb_dialog_t *d = l->d;
    const char *ref = fb__ld_want_text(l, v, "ajouter");
    if (!ref)
        return -1;
    int i = fb__strmap_get(&d->item_map, ref);
    if (i >= 0)
        return i;
    const char *dot = strchr(ref, '.');
    fb_yaml_shown_t s = fb__ld_shown_node(v);
    if (!dot) {
        fb__ld_errn(l, v,
                    "« %s » doit être de la forme catalogue.element (par exemple "
                    "« etapes.diagnostic_pollution »)",
                    s.s);
        return -1;
    }
    for (size_t c = 0; c < d->n_catalogues; c++)
        if (strlen(d->catalogues[c].name) == (size_t)(dot - ref) &&
            strncmp(d->catalogues[c].name, ref, (size_t)(dot - ref)) == 0) {
            if (d->catalogues[c].broken)
                return -1; /* already reported where the catalogue is declared */
            fb__ld_errn(l, v, "l'élément « %s » n'existe pas dans le catalogue « %s »",
                        fb_yaml_show(dot + 1, strlen(dot + 1)).s, d->catalogues[c].name);
            return -1;
        }
    fb__ld_errn(l, v, "catalogue inconnu « %s » (déclarez-le sous « catalogues: »)",
                fb_yaml_show(ref, (size_t)(dot - ref)).s);
    return -1;
}

/* Compiles `regles:`: a list of {si, ajouter, statut}. */
void fb__ld_compile_rules(struct ld *l, const yaml_node_t *v)
{
    fb_dialog_t *d = l->d;
    size_t n;
    yaml_node_item_t *items = fb__ld_seq_items(v, &n);
    if (v->type != YAML_SEQUENCE_NODE) {
        fb__ld_errn(l, v, "« regles » doit être une liste de « - si: ... ajouter: [...] »");
        return;
    }
    d->rules = fb_calloc(n ? n : 1, sizeof(*d->rules));
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *r = fb__ld_node(l, items[i]);
        static const char *const keys[] = {"si", "ajouter", "statut"};
        yaml_node_t *vals[3];
        if (!r || r->type != YAML_MAPPING_NODE) {
            fb__ld_errn(l, r, "une règle doit être « si: ... » et « ajouter: [...] », pas %s",
                        r ? fb__ld_kind_of(r) : "vide");
            continue;
        }
        fb__ld_map_fields(l, r, keys, 3, vals, NULL, " dans une règle");
        struct fb__rule *rule = &d->rules[d->n_rules];
        if (vals[0]) {
            rule->cond = fb__ld_compile_expr(l, vals[0], "si", NULL);
            if (!rule->cond)
                continue;
        }
        if (vals[2]) {
            const char *s = fb__ld_want_text(l, vals[2], "statut");
            int st = s ? fb__status_index(s) : -1;
            if (s && st < 0)
                fb__ld_errn(
                    l, vals[2],
                    "« statut » doit valoir a_faire, en_cours, bloquee, faite, non_pertinente ou "
                    "deja_faite");
            rule->status = st > 0 ? (enum fb__status)st : FB__ST_A_FAIRE;
        }
        if (!vals[1]) {
            fb__ld_errn(l, r, "clé obligatoire « ajouter » manquante dans cette règle");
        } else if (fb__ld_is_scalar(vals[1])) {
            int it = want_item(l, vals[1]);
            if (it >= 0) {
                rule->items = fb_calloc(1, sizeof(int));
                rule->items[rule->n_items++] = it;
            }
        } else {
            size_t m;
            yaml_node_item_t *refs = fb__ld_seq_items(vals[1], &m);
            if (vals[1]->type != YAML_SEQUENCE_NODE || m == 0) {
                fb__ld_errn(l, vals[1],
                            "« ajouter » doit être une liste d'éléments catalogue.element");
            } else {
                rule->items = fb_calloc(m, sizeof(int));
                for (size_t j = 0; j < m; j++) {
                    yaml_node_t *ref = fb__ld_node(l, refs[j]);
                    int it = ref ? want_item(l, ref) : -1;
                    if (it >= 0)
                        rule->items[rule->n_items++] = it;
                }
            }
        }
        d->n_rules++;
    }
}

/* Compiles `migrations:` (old state id -> new state id). */
void fb__ld_compile_migrations(struct ld *l, const yaml_node_t *v)
{
    fb_dialog_t *d = l->d;
    if (v->type != YAML_MAPPING_NODE) {
        fb__ld_errn(l, v, "« migrations » doit être une correspondance ancien_etat: nouvel_etat");
        return;
    }
    size_t n = (size_t)(v->data.mapping.pairs.top - v->data.mapping.pairs.start);
    d->migrations = fb_calloc(n ? n : 1, sizeof(*d->migrations));
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        yaml_node_t *k = fb__ld_node(l, p->key), *val = fb__ld_node(l, p->value);
        if (!k || !val)
            continue;
        if (!fb__ld_is_text(k) || !fb__ld_valid_name(fb__ld_sval(k), k->data.scalar.length)) {
            fb__ld_errn(l, k,
                        "une migration part d'un nom d'état (minuscules sans accent, chiffres, _)");
            continue;
        }
        if (fb__strmap_get(&d->state_map, fb__ld_sval(k)) >= 0) {
            fb__ld_errn(
                l, k, "l'état « %s » existe encore : une migration ne concerne qu'un état disparu",
                fb__ld_sval(k));
            continue;
        }
        int to = fb__ld_want_state(l, val, "migrations");
        if (to < 0)
            continue;
        struct fb__migration *m = &d->migrations[d->n_migrations];
        m->from = fb_strdup(fb__ld_sval(k));
        m->to = to;
        if (!fb__strmap_put(&d->migration_map, m->from, to)) {
            fb__ld_errn(l, k, "migration en double pour « %s »", fb__ld_sval(k));
            fb_free(m->from);
            continue;
        }
        d->n_migrations++;
    }
}
