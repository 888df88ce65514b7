/* SPDX-License-Identifier: MIT */
/*
 * dialog.c - the dialog model: the string map, the built-in texts, statuses and commands, the
 * public API (load, reload, refcount) and the Graphviz DOT writer. The loader is in dialog_*.c
 * (see dialog_load.h).
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

/* ---- string map ------------------------------------------------------------------------------ */

/*
 * The string map's hash: 8 bytes at a time, one multiplication each, then the last 0 to 7 bytes
 * and the length, and a final mix (the table takes the low bits). FNV-1a, byte by byte, was a
 * chain of a multiplication per byte: a session's strings are hashed at every step (the reader
 * shares the dialog's strings, fb_engine_session_loadb()).
 */
static size_t hash_str(const char *s, size_t len)
{
    const uint64_t k = 0x9E3779B97F4A7C15ull;
    uint64_t h = (uint64_t)len * k;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * k;
        h ^= h >> 29;
    }
    uint64_t w = 0;
    for (size_t j = 0; i + j < len; j++)
        w |= (uint64_t)(unsigned char)s[i + j] << (8 * j);
    h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 31;
    h *= 0x94D049BB133111EBull;
    h ^= h >> 29;
    return (size_t)h;
}

/* The slot of `key` (`len` bytes, hash `h`) in `m`: where it is, or the empty slot that ends its
 * probe sequence. `m->cap` must not be 0. A slot's stored hash and length are compared before its
 * bytes: a probe that meets another key costs no string comparison. */
static size_t strmap_slot(const struct fb__strmap *m, const char *key, size_t len, size_t h)
{
    size_t mask = m->cap - 1;
    size_t i = h & mask;
    while (m->keys[i]) {
        if (m->hashes[i] == (uint32_t)h && m->lens[i] == len && memcmp(m->keys[i], key, len) == 0)
            break;
        i = (i + 1) & mask;
    }
    return i;
}

bool fb__strmap_put(struct fb__strmap *m, const char *key, int val)
{
    size_t len = strlen(key);
    FB_ASSERT(len <= UINT32_MAX);
    size_t h = hash_str(key, len);
    if (m->cap && m->keys[strmap_slot(m, key, len, h)])
        return false;
    if ((m->n + 1) * 2 > m->cap) {
        struct fb__strmap g = {0};
        g.cap = m->cap ? m->cap * 2 : 16;
        g.keys = fb_calloc(g.cap, sizeof(*g.keys));
        g.vals = fb_calloc(g.cap, sizeof(*g.vals));
        g.hashes = fb_calloc(g.cap, sizeof(*g.hashes));
        g.lens = fb_calloc(g.cap, sizeof(*g.lens));
        for (size_t i = 0; i < m->cap; i++)
            if (m->keys[i])
                (void)fb__strmap_put(&g, m->keys[i], m->vals[i]);
        fb__strmap_free(m);
        *m = g;
    }
    size_t i = strmap_slot(m, key, len, h);
    m->keys[i] = key;
    m->vals[i] = val;
    m->hashes[i] = (uint32_t)h;
    m->lens[i] = (uint32_t)len;
    m->n++;
    return true;
}

int fb__strmap_getn(const struct fb__strmap *m, const char *key, size_t len)
{
    if (m->cap == 0)
        return -1;
    size_t i = strmap_slot(m, key, len, hash_str(key, len));
    return m->keys[i] ? m->vals[i] : -1;
}

int fb__strmap_get(const struct fb__strmap *m, const char *key)
{
    return fb__strmap_getn(m, key, strlen(key));
}

void fb__strmap_free(struct fb__strmap *m)
{
    FB_FREE(m->keys);
    FB_FREE(m->vals);
    FB_FREE(m->hashes);
    FB_FREE(m->lens);
    m->cap = m->n = 0;
}

/* ---- pointer map ----------------------------------------------------------------------------- */

/* Fibonacci hashing of the pointer's bits above the allocator's alignment. */
static size_t hash_ptr(const void *p)
{
    return (size_t)((((uint64_t)(uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull) >> 32);
}

void fb__ptrmap_put(struct fb__ptrmap *m, const void *key, int val)
{
    FB_ASSERT(key != NULL);
    if ((m->n + 1) * 2 > m->cap) {
        struct fb__ptrmap g = {NULL, NULL, m->cap ? m->cap * 2 : 16, 0};
        g.keys = fb_calloc(g.cap, sizeof(*g.keys));
        g.vals = fb_calloc(g.cap, sizeof(*g.vals));
        for (size_t i = 0; i < m->cap; i++)
            if (m->keys[i])
                fb__ptrmap_put(&g, m->keys[i], m->vals[i]);
        fb__ptrmap_free(m);
        *m = g;
    }
    size_t i = hash_ptr(key) & (m->cap - 1);
    while (m->keys[i]) {
        FB_ASSERT(m->keys[i] != key);
        i = (i + 1) & (m->cap - 1);
    }
    m->keys[i] = key;
    m->vals[i] = val;
    m->n++;
}

int fb__ptrmap_get(const struct fb__ptrmap *m, const void *key)
{
    if (m->cap == 0)
        return -1;
    size_t i = hash_ptr(key) & (m->cap - 1);
    while (m->keys[i]) {
        if (m->keys[i] == key)
            return m->vals[i];
        i = (i + 1) & (m->cap - 1);
    }
    return -1;
}

void fb__ptrmap_free(struct fb__ptrmap *m)
{
    FB_FREE(m->keys);
    FB_FREE(m->vals);
    m->cap = m->n = 0;
}

/* ---- built-in texts, statuses, commands ------------------------------------------------------ */

const char *const fb__text_names[FB__T_COUNT] = {
    "incompris",
    "nsp_refuse",
    "hors_limites",
    "ambigu",
    "retour_impossible",
    "oubli_fait",
    "relances_arretees",
    "escalade",
    "aide_generale",
    "fin_atteinte",
    "reprise",
    "commune_inconnue",
    "commune_choix",
    "resume",
    "mes_donnees",
    "version_changee",
    "relance",
    "relance_etape",
    "etape_notee",
    "etape_plus_tard",
    "etape_plus_tard_delai",
    "etapes",
    "etapes_aide",
    "etape_statut",
    "etape_changee",
    "etapes_pas_encore",
    "etape_inconnue",
    "note",
    "confirmer",
    "autre_chose",
    "commune_confirmer",
    "commune_autre",
    "commune_autre_libelle",
    "commune_zone",
    "commune_zone_libelle",
    "commune_hors_liste",
    "commune_code_postal",
    "commune_trop",
    "commune_insee_libelle",
    "sans_conseiller",
    "attente_conseiller",
    "aide_echecs",
    "question_inconnue",
    "question_source",
    "question_avis",
    "avis_utile",
    "avis_pas_utile",
    "question_preciser",
    "page_feuille_de_route",
};

const char *const fb__text_defaults[FB__T_COUNT] = {
    /* incompris */
    "Je n'ai pas compris votre réponse.{% si aide %} {{ aide }}{% fin %}",
    /* nsp_refuse */
    "Il me faut une réponse ici, même approximative.{% si question %} {{ question }}{% fin %}",
    /* hors_limites */
    "Cette réponse sort des valeurs attendues.{% si aide %} {{ aide }}{% fin %}",
    /* ambigu */
    "Plusieurs réponses correspondent : précisez laquelle, par exemple avec son numéro.",
    /* retour_impossible */
    "Nous sommes à la première question : il n'y a pas de question précédente.",
    /* oubli_fait */
    "C'est fait : j'ai effacé tout ce que je savais de vous et de votre projet. Au revoir !",
    /* relances_arretees */
    "Entendu, je ne vous enverrai plus de relances. Vous pouvez reprendre la conversation quand "
    "vous le souhaitez.",
    /* escalade */
    "Je transmets votre demande à un conseiller, qui vous répondra ici dès que possible. Vos "
    "réponses lui sont transmises : inutile de les répéter.",
    /* aide_generale */
    "Répondez simplement à la question posée. À tout moment, vous pouvez aussi écrire :\n\n"
    "- **retour** : revenir à la question précédente\n"
    "- **recommencer** : tout reprendre depuis le début\n"
    "- **conseiller** : {% si conseillers %}parler à une personne{% sinon %}savoir quels "
    "services joindre pour parler à une personne{% fin %}\n"
    "- **où en suis-je** : revoir vos réponses et votre feuille de route\n"
    "- **mes données** : voir ce que je conserve\n"
    "- **mes étapes** : suivre les étapes de votre feuille de route et changer leur statut\n"
    "- **oublier mes données** : tout effacer\n"
    "- **stop** : ne plus recevoir de relances",
    /* fin_atteinte */
    "Le questionnaire est terminé. Écrivez « où en suis-je » pour revoir votre feuille de route, "
    "« conseiller » pour {% si conseillers %}parler à une personne{% sinon %}savoir quels services "
    "joindre{% fin %} ou « recommencer » pour étudier un autre site.",
    /* reprise */
    "Le conseiller vous a rendu la main : reprenons.",
    /* commune_inconnue */
    "Je n'ai pas trouvé cette commune. Essayez son code postal ou son code INSEE.",
    /* commune_choix */
    "Plusieurs communes correspondent. Laquelle est la bonne ?",
    /* resume */
    "Voici où nous en sommes :",
    /* mes_donnees */
    "Voici tout ce que je conserve pour cette conversation :",
    /* version_changee */
    "Le questionnaire a été mis à jour : reprenons là où c'est possible.",
    /* relance */
    "Bonjour ! Où en êtes-vous ? Nous nous étions arrêtés à cette question :",
    /* relance_etape */
    "Bonjour ! Où en êtes-vous de l'étape « {{ etape.titre }} » ?",
    /* etape_notee */
    "C'est noté, merci !{% si etape.statut == \"bloquee\" et conseillers %} Si vous le "
    "souhaitez, écrivez « conseiller » pour en parler avec une personne.{% fin %}",
    /* etape_plus_tard */
    "Entendu, je vous relancerai plus tard.",
    /* etape_plus_tard_delai */
    "Entendu, je vous relancerai dans {{ delai }}.",
    /* etapes */
    "Vos étapes et leur statut :",
    /* etapes_aide */
    "Pour changer le statut d'une étape, écrivez son numéro et son nouveau statut, par exemple "
    "« étape 2 faite », « étape 3 en cours », « étape 4 bloquée », « étape 1 pas concernée » ou "
    "« étape 5 déjà faite ». « Faite » : vous l'avez terminée depuis votre feuille de route ; "
    "« déjà faite » : elle l'était avant.",
    /* etape_statut */
    "Quel est le statut de l'étape {{ etape.numero }}, « {{ etape.titre }} » ? Aujourd'hui : "
    "{{ etape.statut_texte }}.",
    /* etape_changee */
    "C'est noté : l'étape {{ etape.numero }}, « {{ etape.titre }} », est maintenant "
    "« {{ etape.statut_texte }} ».{% si etape.statut == \"bloquee\" et conseillers %} Si vous le "
    "souhaitez, écrivez « conseiller » pour en parler avec une personne.{% fin %}",
    /* etapes_pas_encore */
    "Votre feuille de route n'est pas encore enregistrée : elle le sera à la fin des questions. "
    "Vous pourrez alors suivre chaque étape et changer son statut (« mes étapes »).",
    /* etape_inconnue */
    "Je ne trouve pas cette étape dans votre feuille de route.",
    /* note: said before what follows a loose understanding, then « label. » */
    "Noté :",
    /* confirmer */
    "Je préfère vérifier. Vous voulez dire :",
    /* autre_chose: the last option of a confirmation */
    "Autre chose",
    /* commune_confirmer */
    "Vous voulez dire {{ recherche.proposition }} ?",
    /* commune_autre */
    "D'accord. Écrivez le nom de la commune suivi de son département (par exemple « Saint-Denis "
    "93 »), ou son code postal, ou son code INSEE (5 caractères).",
    /* commune_autre_libelle */
    "Aucune de ces communes",
    /* commune_zone */
    "{% si recherche.type == \"region\" %}{{ recherche.zone }} est une région, pas une commune. "
    "Dans quelle commune de cette région{% sinon %}{{ recherche.zone }} est un département, pas "
    "une "
    "commune. Dans quelle commune de ce département{% fin %} se trouve le site ?",
    /* commune_zone_libelle */
    "{% si recherche.type == \"region\" %}La région {{ recherche.zone }}{% sinon %}Le département "
    "{{ recherche.zone }}{% fin %}",
    /* commune_hors_liste */
    "{{ recherche.zone }} : aucune des communes proposées ne s'y trouve. Choisissez-en une, ou "
    "« {{ recherche.autre }} ».",
    /* commune_code_postal */
    "Le code postal {{ recherche.code }} est partagé par {{ recherche.nombre }} communes : "
    "écrivez le nom de la vôtre.{% si recherche.insee %} {{ recherche.code }} est aussi le code "
    "INSEE d'une autre commune, {{ recherche.insee }} : est-ce elle ?{% fin %}",
    /* commune_trop */
    "{{ recherche.nombre }} communes correspondent. Précisez le nom complet, avec le département "
    "(par exemple « Saint-Denis 93 »), ou donnez le code postal.",
    /* commune_insee_libelle */
    "{{ recherche.proposition }}, dont le code INSEE est {{ recherche.code }}",
    /* sans_conseiller */
    "Aucun conseiller ne peut vous répondre par cette messagerie pour le moment. Pour parler à "
    "une personne, l'annuaire de l'administration donne les services près de chez vous : "
    "[lannuaire.service-public.fr](https://lannuaire.service-public.fr).",
    /* attente_conseiller */
    "Votre demande attend un conseiller : vos autres messages lui sont transmis. Écrivez "
    "« retour » ou « recommencer » pour reprendre les questions sans l'attendre.",
    /* aide_echecs */
    "Je n'arrive pas à comprendre votre réponse.{% si aide %} Voici de l'aide pour cette "
    "question : {{ aide }}{% fin %}{% si exemple %} Vous pouvez répondre par exemple "
    "{{ exemple }}.{% fin %}",
    /* question_inconnue: recherche.conseiller (an advisor can take it), recherche.departement */
    "Je n'ai pas de réponse sûre à cette question.{% si recherche.conseiller %} Écrivez "
    "« conseiller » pour la poser à un conseiller.{% sinon %} Pour cette question, adressez-vous à "
    "la direction départementale des territoires (DDT ou DDTM) de votre département{% si "
    "recherche.departement %} ({{ recherche.departement }}){% fin %}.{% fin %}",
    /* question_source: recherche.source, recherche.lien (the answer's fields) */
    "En savoir plus : [{{ recherche.source }}]({{ recherche.lien }})",
    /* question_avis */
    "Cette réponse vous aide-t-elle ? Répondez « utile » ou « pas utile ».",
    /* avis_utile */
    "Merci pour votre retour !",
    /* avis_pas_utile */
    "Merci, c'est noté : votre retour aide à améliorer les réponses.",
    /* question_preciser: said before the answers offered when the bot is unsure which one a
     * question meant, as a numbered list ending with `autre_chose` */
    "Je ne suis pas sûr d'avoir compris. Votre question porte-t-elle sur :",
    /* page_feuille_de_route: the body of the roadmap page (fb_engine_render_page(), "# " and
     * "## " lines are headings there); a dialog with catalogues says more (dialogs/friche.yaml) */
    "# Votre feuille de route\n"
    "## Les étapes\n"
    "{% pour e dans feuille_de_route %}\n"
    "### Étape {{ e.numero }} – {{ e.titre }}\n"
    "Statut : **{{ e.statut_texte }}**{% si e.modifie_le %} (noté le {{ e.modifie_le }}){% fin "
    "%}.\n"
    "{% si e.resume %}{{ e.resume }}\n{% fin %}"
    "{% fin %}",
};

const char *const fb__status_names[FB__ST_COUNT] = {
    "a_faire", "en_cours", "bloquee", "faite", "non_pertinente", "deja_faite",
};

const char *const fb__status_labels[FB__ST_COUNT] = {
    "à faire", "en cours", "bloquée", "faite", "non pertinente", "déjà faite",
};

int fb__status_index(const char *name)
{
    for (int i = 0; i < FB__ST_COUNT; i++)
        if (strcmp(fb__status_names[i], name) == 0)
            return i;
    return -1;
}

/* Command names as written under `commandes:` (folded form compared) and their default words. */
const char *const fb__ld_cmd_names[FB__CMD_COUNT] = {
    "aide",          "retour",      "recommencer",         "conseiller",
    "ou_en_suis_je", "mes_donnees", "oublier_mes_donnees", "stop",
    "mes_etapes",
};
const char *const fb__ld_cmd_default_words[FB__CMD_COUNT][5] = {
    {"aide", "help", "?", NULL},
    {"retour", "precedent", "revenir", NULL},
    {"recommencer", "reset", "tout recommencer", NULL},
    {"conseiller", "humain", "parler a quelqu un", NULL},
    {"ou en suis je", "resume", "recapitulatif", NULL},
    {"mes donnees", NULL},
    {"oublier mes donnees", "supprimer mes donnees", NULL},
    {"stop", "arreter les relances", NULL},
    {"mes etapes", "etapes", "liste des etapes", "statut des etapes", NULL},
};

/* ---- public API ------------------------------------------------------------------------------ */

fb_dialog_t *fb_dialog_load_text(const char *name, const char *dir, const char *text, size_t len,
                                 const fb_geo_t *geo, fb_buf_t *errors)
{
    return fb__ld_load(name, dir, text, len, geo, errors);
}

fb_dialog_t *fb_dialog_load(const char *path, const fb_geo_t *geo, fb_buf_t *errors)
{
    fb_buf_t text;
    fb_buf_init(&text, MAX_FILE_BYTES);
    const char *why = NULL;
    fb_dialog_t *d = NULL;
    if (fb__ld_read_file(path, &text, &why) != 0) {
        if (errors)
            (void)fb_buf_printf(errors, "%s:1:1: impossible de lire le dialogue : %s\n", path, why);
        goto out;
    }
    char *dir = fb_strdup(path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = '\0';
    d = fb__ld_load(path, slash ? dir : "", fb_buf_str(&text), text.len, geo, errors);
    fb_free(dir);
out:
    fb_buf_free(&text);
    return d;
}

fb_dialog_t *fb_dialog_load_next(const char *path, const fb_dialog_t *previous, const fb_geo_t *geo,
                                 fb_buf_t *errors)
{
    fb_dialog_t *d = fb_dialog_load(path, geo, errors);
    if (!d || !previous)
        return d;
    bool ok = true;
    for (size_t i = 0; i < previous->n_states; i++) {
        const char *id = previous->states[i].id;
        if (fb__strmap_get(&d->state_map, id) >= 0 || fb__strmap_get(&d->migration_map, id) >= 0)
            continue;
        if (errors)
            (void)fb_buf_printf(errors,
                                "%s:1:1: l'état « %s » de la version en service a disparu : des "
                                "conversations en cours y sont peut-être ; déclarez où les "
                                "mener sous « migrations: » (par exemple « %s: debut_du_nouvel_"
                                "etat »)\n",
                                path, id, id);
        ok = false;
    }
    if (previous->id && d->id && strcmp(previous->id, d->id) != 0) {
        if (errors)
            (void)fb_buf_printf(errors,
                                "%s:1:1: l'identifiant du dialogue a changé (« %s » devient "
                                "« %s ») : les conversations en cours seraient perdues\n",
                                path, previous->id, d->id);
        ok = false;
    }
    if (!ok) {
        fb_dialog_unref(d);
        return NULL;
    }
    return d;
}

fb_dialog_t *fb_dialog_ref(fb_dialog_t *d)
{
    if (d)
        d->refs++;
    return d;
}

/* Frees everything a compiled state owns (not the state itself). */
static void state_free(struct fb__state *st)
{
    fb_free(st->id);
    fb__ld_text_free(&st->text);
    fb_free(st->label);
    fb__ld_text_free(&st->help);
    for (size_t i = 0; i < st->n_reprompts; i++)
        fb__ld_text_free(&st->reprompts[i]);
    fb_free(st->reprompts);
    fb_expr_free(st->cond);
    fb_free(st->cond_src);
    for (size_t i = 0; i < st->n_signals; i++)
        fb_expr_free(st->signals[i].cond);
    fb_free(st->signals);
    for (size_t i = 0; i < st->n_choices; i++) {
        fb_free(st->choices[i].id);
        fb_free(st->choices[i].label);
        fb__ld_strings_free(st->choices[i].synonyms);
        fb_free(st->choices[i].tags);
    }
    fb_free(st->choices);
    fb_choice_set_free(st->aset);
    fb_free(st->achoices);
    json_decref(st->choices_json);
    fb_free(st->list_plain);
    fb_free(st->list_html);
    json_decref(st->ask_plain);
    json_decref(st->ask_html);
    json_decref(st->ask_effect);
    for (int i = 0; i < FB__REASON_COUNT; i++)
        json_decref(st->relance.schedule[i]);
    for (size_t i = 0; i < st->n_next; i++) {
        fb_expr_free(st->next[i].cond);
        fb_free(st->next[i].cond_src);
    }
    fb_free(st->next);
    fb__ld_text_free(&st->relance.msg);
    if (st->own_cmds) {
        fb__ld_cmdset_free(st->own_cmds);
        fb_free(st->own_cmds);
    }
}

/* Frees a dialog whatever its reference count (the last unref, or a failed load). */
void fb__dialog_free(fb_dialog_t *d)
{
    fb__kb_model_free(d);
    for (size_t i = 0; i < d->n_states; i++)
        state_free(&d->states[i]);
    fb_free(d->states);
    fb__strmap_free(&d->state_map);
    for (size_t i = 0; i < d->n_slots; i++)
        fb_free(d->slots[i].name);
    fb_free(d->slots);
    fb__strmap_free(&d->slot_map);
    for (size_t i = 0; i < d->n_tags; i++)
        fb_free(d->tags[i]);
    fb_free(d->tags);
    fb__strmap_free(&d->tag_map);
    for (size_t i = 0; i < d->n_catalogues; i++) {
        fb_free(d->catalogues[i].name);
        fb_free(d->catalogues[i].path);
    }
    fb_free(d->catalogues);
    for (size_t i = 0; i < d->n_items; i++) {
        fb_free(d->items[i].ref);
        json_decref(d->items[i].obj);
        fb_expr_free(d->items[i].cond);
    }
    fb_free(d->items);
    fb__strmap_free(&d->item_map);
    for (size_t i = 0; i < d->n_rules; i++) {
        fb_expr_free(d->rules[i].cond);
        fb_free(d->rules[i].items);
    }
    fb_free(d->rules);
    for (size_t i = 0; i < d->n_migrations; i++)
        fb_free(d->migrations[i].from);
    fb_free(d->migrations);
    fb__strmap_free(&d->migration_map);
    fb__ld_text_free(&d->relance.msg);
    for (int i = 0; i < FB__REASON_COUNT; i++)
        json_decref(d->relance.schedule[i]);
    for (int i = 0; i < FB__T_COUNT; i++)
        fb__ld_text_free(&d->texts[i]);
    fb__ld_cmdset_free(&d->cmds);
    fb__strmap_free(&d->intern_map);
    fb__ptrmap_free(&d->ptr_map);
    for (size_t i = 0; i < d->n_intern; i++)
        json_decref(d->intern_json[i]);
    fb_free(d->intern_json);
    for (size_t i = 0; d->state_json && i < d->n_states; i++)
        json_decref(d->state_json[i]);
    fb_free(d->state_json);
    for (size_t i = 0; d->tag_json && i < d->n_tags; i++)
        json_decref(d->tag_json[i]);
    fb_free(d->tag_json);
    for (size_t i = 0; d->item_ref_json && i < d->n_items; i++) {
        json_decref(d->item_ref_json[i]);
        json_decref(d->item_id_json[i]);
    }
    fb_free(d->item_ref_json);
    fb_free(d->item_id_json);
    for (int i = 0; i < FB__ST_COUNT; i++) {
        json_decref(d->status_name_json[i]);
        json_decref(d->status_label_json[i]);
    }
    json_decref(d->id_json);
    json_decref(d->hash_json);
    json_decref(d->format_json);
    for (int i = 0; i < FB_EFFECT_COUNT; i++)
        json_decref(d->effect_json[i]);
    json_decref(d->timer_json);
    for (size_t i = 0; d->step_effects && i < d->n_items * FB__ST_COUNT; i++)
        json_decref(d->step_effects[i]);
    fb_free(d->step_effects);
    for (int i = 0; i < FB__REASON_COUNT; i++)
        json_decref(d->reason_json[i]);
    json_decref(d->yesno_json);
    json_decref(d->status_json);
    fb_choice_set_free(d->status_set);
    fb_free(d->status_choices);
    json_decref(d->all_status_json);
    fb_choice_set_free(d->all_status_set);
    fb_free(d->all_status_choices);
    fb_free(d->id);
    fb_free(d->title);
    fb_free(d->path);
    fb_free(d);
}

void fb_dialog_unref(fb_dialog_t *d)
{
    if (!d)
        return;
    FB_ASSERT(d->refs > 0);
    if (--d->refs == 0)
        fb__dialog_free(d);
}

const char *fb_dialog_id(const fb_dialog_t *d)
{
    return d->id;
}

const char *fb_dialog_hash(const fb_dialog_t *d)
{
    return d->hash;
}

const char *fb_dialog_item_title(const fb_dialog_t *d, const char *ref)
{
    int i = d && ref ? fb__strmap_get(&d->item_map, ref) : -1;
    return i < 0 ? NULL : json_string_value(json_object_get(d->items[i].obj, "titre"));
}

/* ---- DOT ------------------------------------------------------------------------------------- */

/* Appends `s` as the inside of a DOT double-quoted string. */
static int dot_str(fb_buf_t *out, const char *s)
{
    for (; *s; s++) {
        int rc;
        if (*s == '"' || *s == '\\')
            rc = fb_buf_printf(out, "\\%c", *s);
        else if (*s == '\n')
            rc = fb_buf_puts(out, "\\n");
        else if ((unsigned char)*s < 0x20)
            rc = 0;
        else
            rc = fb_buf_append(out, s, 1);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Appends a DOT edge `from -> to` with optional label and style. */
static int dot_edge(fb_buf_t *out, const char *from, const char *to, const char *label,
                    const char *style)
{
    if (fb_buf_puts(out, "  \"") || dot_str(out, from) || fb_buf_puts(out, "\" -> \"") ||
        dot_str(out, to) || fb_buf_puts(out, "\""))
        return FB_ETOOBIG;
    if (label || style) {
        if (fb_buf_puts(out, " ["))
            return FB_ETOOBIG;
        if (label &&
            (fb_buf_puts(out, "label=\"") || dot_str(out, label) || fb_buf_puts(out, "\"")))
            return FB_ETOOBIG;
        if (style && fb_buf_printf(out, "%sstyle=%s", label ? ", " : "", style))
            return FB_ETOOBIG;
        if (fb_buf_puts(out, "]"))
            return FB_ETOOBIG;
    }
    return fb_buf_puts(out, ";\n");
}

/*
 * Writes the graph: one node per state (questions as boxes labelled with their id and type,
 * messages as ellipses, final states with a double border, preconditions in the label), one
 * edge per branch, choice or `suite`, and dashed edges for the skip taken when a precondition
 * is false.
 */
int fb_dialog_to_dot(const fb_dialog_t *d, fb_buf_t *out)
{
    if (fb_buf_puts(out, "digraph \"") || dot_str(out, d->id ? d->id : "dialogue") ||
        fb_buf_puts(out, "\" {\n  rankdir=TB;\n  node [fontname=\"Helvetica\"];\n"
                         "  edge [fontname=\"Helvetica\", fontsize=10];\n"))
        return FB_ETOOBIG;
    if (d->title && (fb_buf_puts(out, "  label=\"") || dot_str(out, d->title) ||
                     fb_buf_puts(out, "\";\n  labelloc=t;\n")))
        return FB_ETOOBIG;
    if (d->start >= 0 && (fb_buf_puts(out, "  \"__debut\" [shape=point];\n") ||
                          dot_edge(out, "__debut", d->states[d->start].id, NULL, NULL)))
        return FB_ETOOBIG;
    for (size_t i = 0; i < d->n_states; i++) {
        const struct fb__state *st = &d->states[i];
        if (fb_buf_puts(out, "  \"") || dot_str(out, st->id) || fb_buf_puts(out, "\" [shape=") ||
            fb_buf_puts(out, st->type == FB__Q_NONE ? "ellipse" : "box") ||
            (st->final && fb_buf_puts(out, ", peripheries=2")) || fb_buf_puts(out, ", label=\"") ||
            dot_str(out, st->id))
            return FB_ETOOBIG;
        if (st->type != FB__Q_NONE &&
            (fb_buf_puts(out, "\\n(") || dot_str(out, fb__ld_type_names[st->type]) ||
             fb_buf_puts(out, ")")))
            return FB_ETOOBIG;
        if (st->cond_src && (fb_buf_puts(out, "\\nsi ") || dot_str(out, st->cond_src)))
            return FB_ETOOBIG;
        if (fb_buf_puts(out, "\"];\n"))
            return FB_ETOOBIG;
        for (size_t c = 0; c < st->n_choices; c++) {
            const struct fb__choice *ch = &st->choices[c];
            if (ch->target >= 0 && dot_edge(out, st->id, d->states[ch->target].id, ch->label, NULL))
                return FB_ETOOBIG;
        }
        for (size_t b = 0; b < st->n_next; b++) {
            const struct fb__branch *br = &st->next[b];
            if (br->target < 0)
                continue;
            const char *label = br->cond_src ? br->cond_src : (st->n_next > 1 ? "sinon" : NULL);
            if (dot_edge(out, st->id, d->states[br->target].id, label, NULL))
                return FB_ETOOBIG;
            if (st->cond && dot_edge(out, st->id, d->states[br->target].id, "sautée", "dashed"))
                return FB_ETOOBIG;
        }
        if (st->after_end >= 0 &&
            dot_edge(out, st->id, d->states[st->after_end].id, "après la fin", "dotted"))
            return FB_ETOOBIG;
    }
    return fb_buf_puts(out, "}\n");
}
