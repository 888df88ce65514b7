/* SPDX-License-Identifier: MIT */
/*
 * dialog.c - the dialog model: loads a dialog file and its catalogues (libyaml), validates all of
 * it, compiles it into the immutable graph of engine/internal.h, and writes it as Graphviz DOT.
 *
 * Dialog files are written by French domain experts who are not developers, so every message of
 * this file is in French, points at FILE:LINE:COL, and says what to write instead. Loading never
 * stops at the first problem: a YAML syntax error ends the parse of that file, but every other
 * problem is collected (up to MAX_ERRORS), sorted by position and written out together.
 *
 * The loader reads the file twice in memory: a first pass collects the declarations (state ids,
 * slots and their types, tags emitted by answers, catalogue items), so that the second pass can
 * check every reference while it compiles states, expressions and templates. Graph checks
 * (unknown targets, unreachable states, states with no way out) come last.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "common/diag.h"
#include "common/yamljson.h"
#include "engine/internal.h"
#include "engine/text.h"
#include "frichebot/alloc.h"
#include "frichebot/err.h"

#define MAX_ERRORS          100
#define MAX_FILE_BYTES      (4u << 20) /* a dialog or catalogue file larger than this is refused */
#define MAX_CHOICES         40
#define MAX_TEXT_BYTES      (64u << 10) /* longest rendered message */
#define DEFAULT_FAILS       3
#define DEFAULT_RELANCE_MAX 3

/* ---- string map ------------------------------------------------------------------------------ */

/* FNV-1a over `len` bytes: the string map's hash. */
static size_t hash_str(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return (size_t)h;
}

bool fb__strmap_put(struct fb__strmap *m, const char *key, int val)
{
    if (fb__strmap_get(m, key) >= 0)
        return false;
    if ((m->n + 1) * 2 > m->cap) {
        struct fb__strmap g = {NULL, NULL, m->cap ? m->cap * 2 : 16, 0};
        g.keys = fb_calloc(g.cap, sizeof(*g.keys));
        g.vals = fb_calloc(g.cap, sizeof(*g.vals));
        for (size_t i = 0; i < m->cap; i++)
            if (m->keys[i])
                (void)fb__strmap_put(&g, m->keys[i], m->vals[i]);
        fb__strmap_free(m);
        *m = g;
    }
    size_t len = strlen(key);
    size_t i = hash_str(key, len) & (m->cap - 1);
    while (m->keys[i])
        i = (i + 1) & (m->cap - 1);
    m->keys[i] = key;
    m->vals[i] = val;
    m->n++;
    return true;
}

int fb__strmap_getn(const struct fb__strmap *m, const char *key, size_t len)
{
    if (m->cap == 0)
        return -1;
    size_t i = hash_str(key, len) & (m->cap - 1);
    while (m->keys[i]) {
        if (strncmp(m->keys[i], key, len) == 0 && m->keys[i][len] == '\0')
            return m->vals[i];
        i = (i + 1) & (m->cap - 1);
    }
    return -1;
}

int fb__strmap_get(const struct fb__strmap *m, const char *key)
{
    return fb__strmap_getn(m, key, strlen(key));
}

void fb__strmap_free(struct fb__strmap *m)
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
};

const char *const fb__text_defaults[FB__T_COUNT] = {
    /* incompris */
    "Je n'ai pas compris votre réponse.{% si aide %} {{ aide }}{% fin %}",
    /* nsp_refuse */
    "Il me faut une réponse ici, même approximative.",
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
    "- **conseiller** : parler à une personne\n"
    "- **où en suis-je** : revoir vos réponses et votre feuille de route\n"
    "- **mes données** : voir ce que je conserve\n"
    "- **mes étapes** : suivre les étapes de votre feuille de route et changer leur statut\n"
    "- **oublier mes données** : tout effacer\n"
    "- **stop** : ne plus recevoir de relances",
    /* fin_atteinte */
    "Le questionnaire est terminé. Écrivez « où en suis-je » pour revoir votre feuille de route, "
    "« conseiller » pour parler à une personne ou « recommencer » pour étudier un autre site.",
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
    "C'est noté, merci !{% si etape.statut == \"bloquee\" %} Si vous le souhaitez, écrivez "
    "« conseiller » pour en parler avec une personne.{% fin %}",
    /* etape_plus_tard */
    "Entendu, je vous relancerai plus tard.",
    /* etape_plus_tard_delai */
    "Entendu, je vous relancerai dans {{ delai }}.",
    /* etapes */
    "Vos étapes et leur statut :",
    /* etapes_aide */
    "Pour changer le statut d'une étape, écrivez son numéro et son nouveau statut, par exemple "
    "« étape 2 faite », « étape 3 en cours », « étape 4 bloquée », « étape 1 pas concernée » ou "
    "« étape 5 déjà faite ».",
    /* etape_statut */
    "Quel est le statut de l'étape {{ etape.numero }}, « {{ etape.titre }} » ? Aujourd'hui : "
    "{{ etape.statut_texte }}.",
    /* etape_changee */
    "C'est noté : l'étape {{ etape.numero }}, « {{ etape.titre }} », est maintenant "
    "« {{ etape.statut_texte }} ».{% si etape.statut == \"bloquee\" %} Si vous le souhaitez, "
    "écrivez « conseiller » pour en parler avec une personne.{% fin %}",
    /* etapes_pas_encore */
    "Votre feuille de route n'est pas encore enregistrée : elle le sera à la fin des questions. "
    "Vous pourrez alors suivre chaque étape et changer son statut (« mes étapes »).",
    /* etape_inconnue */
    "Je ne trouve pas cette étape dans votre feuille de route.",
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
static const char *const cmd_names[FB__CMD_COUNT] = {
    "aide",          "retour",      "recommencer",         "conseiller",
    "ou_en_suis_je", "mes_donnees", "oublier_mes_donnees", "stop",
    "mes_etapes",
};
static const char *const cmd_default_words[FB__CMD_COUNT][5] = {
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
    {"a_faire", "À faire", all_syn_a_faire},         {"en_cours", "En cours", all_syn_en_cours},
    {"bloquee", "Bloquée", all_syn_bloquee},         {"faite", "Faite", all_syn_faite},
    {"non_pertinente", "Pas concernée", all_syn_np}, {"deja_faite", "Déjà faite", all_syn_deja},
};

/* Names every template and expression may use besides the slots. */
static const char *const builtin_names[] = {
    "feuille_de_route", "question", "aide", "tentatives", "etape", "min", "max", "delai"};
/* Words of expr.h that can never be slot names. */
static const char *const reserved_words[] = {"et",  "ou",   "non",  "dans",  "vrai",  "faux",
                                             "nsp", "rien", "null", "connu", "known", "and",
                                             "or",  "not",  "in",   "true",  "false"};

/* ---- error collection ------------------------------------------------------------------------ */

/* The collector's words (common/diag.h): dialog authors read French. */
static const fb_diag_words_t ld_words = {"(message trop long)", "trop d'erreurs pour les afficher",
                                         "trop d'erreurs : arrêt après les ", " premières"};

/* One load: the dialog being built and the errors so far. */
struct ld {
    fb_dialog_t *d;
    const char *dir; /* for catalogue paths, may be NULL */
    char **files;    /* names used in messages; files[0] is the dialog */
    size_t n_files;
    fb_diag_t diag; /* the errors; documents: the indices in `files` */
    uint64_t hash;
    bool in_item_cond; /* compiling a catalogue item's `si:` (no roadmap nor catalogue names) */

    /* the document being walked */
    int file;
    yaml_document_t *doc;
    const char *text;
    size_t len;
    size_t *lines; /* byte offset of each line start */
    size_t n_lines;

    /* declarations of the first pass */
    yaml_node_t *states_node;
    yaml_node_t **state_nodes; /* per state index: its mapping */
    yaml_node_t **state_keys;  /* per state index: its key */
    unsigned char *reached;
    bool has_commune;

    /* strings compared with names (`usage == "usine"`), checked once every question is known */
    struct cmpstr {
        int file;
        int line, col;
        char *name, *str;
    } * cmps;
    size_t n_cmps, cap_cmps;
};

static void add_errv(struct ld *l, int file, long line, long col, const char *fmt, va_list ap)
    __attribute__((format(printf, 5, 0)));

static void add_errv(struct ld *l, int file, long line, long col, const char *fmt, va_list ap)
{
    fb_diag_addv(&l->diag, l->files[file], file, (unsigned long)line, (unsigned long)col, fmt, ap);
}

static void errat(struct ld *l, long line, long col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Records an error at a 1-based position of the current file. */
static void errat(struct ld *l, long line, long col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add_errv(l, l->file, line, col, fmt, ap);
    va_end(ap);
}

static void errn(struct ld *l, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records an error at the start of node `n` of the current file (1:1 when n is NULL). */
static void errn(struct ld *l, const yaml_node_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    long line = n ? (long)n->start_mark.line + 1 : 1;
    long col = n ? (long)n->start_mark.column + 1 : 1;
    add_errv(l, l->file, line, col, fmt, ap);
    va_end(ap);
}

/* Sorts the errors and appends them to `out` (may be NULL); frees them. */
static void flush_errors(struct ld *l, fb_buf_t *out)
{
    fb_diag_flush(&l->diag, out, l->files[0]);
}

/*
 * Adds the "LINE:COL: message" lines that expr.c and template.c append to `tmp` as errors of
 * the current file; a line without a position is reported at (line, col).
 */
static void import_errors(struct ld *l, const fb_buf_t *tmp, long line, long col)
{
    const char *p = fb_buf_str(tmp);
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        char *end1 = NULL, *end2 = NULL;
        long el = strtol(p, &end1, 10);
        long ec = 0;
        if (end1 && *end1 == ':')
            ec = strtol(end1 + 1, &end2, 10);
        if (end1 != p && end2 && end2 > end1 + 1 && *end2 == ':' && el > 0 && ec > 0) {
            const char *msg = end2 + 1;
            if (*msg == ' ')
                msg++;
            errat(l, el, ec, "%.*s", (int)(n - (size_t)(msg - p)), msg);
        } else if (n > 0) {
            errat(l, line, col, "%.*s", (int)n, p);
        }
        p += n + (nl ? 1 : 0);
    }
}

/* ---- YAML helpers ---------------------------------------------------------------------------- */

/* A file name for messages, control characters written \xNN (new string): a path read from a
 * dialog file can never break an error line. */
static char *escaped_name(const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = strlen(s);
    char *out = fb_malloc(4 * n + 1), *o = out;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch < 0x20 || ch == 0x7f) {
            *o++ = '\\';
            *o++ = 'x';
            *o++ = hex[ch >> 4];
            *o++ = hex[ch & 15];
        } else {
            *o++ = (char)ch;
        }
    }
    *o = '\0';
    return out;
}

static fb_yaml_shown_t shown_node(const yaml_node_t *n)
{
    return fb_yaml_show((const char *)n->data.scalar.value, n->data.scalar.length);
}

/* Node `index` of the current document (borrowed), or NULL. */
static yaml_node_t *node(struct ld *l, int index)
{
    return yaml_document_get_node(l->doc, index);
}

static bool is_scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE;
}

static const char *sval(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

/* YAML's null: an empty plain scalar, "~" or "null". */
static bool is_null(const yaml_node_t *n)
{
    if (!is_scalar(n) || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = sval(n);
    return n->data.scalar.length == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
           strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

/* A scalar holding text with no NUL byte (a quoted "\0" would cut it). */
static bool is_text(const yaml_node_t *n)
{
    return is_scalar(n) && !is_null(n) && strlen(sval(n)) == n->data.scalar.length;
}

/* How a node is named in messages: "une liste", "vide"... */
static const char *kind_of(const yaml_node_t *n)
{
    if (is_null(n))
        return "vide";
    if (n->type == YAML_SCALAR_NODE)
        return "une valeur simple";
    if (n->type == YAML_SEQUENCE_NODE)
        return "une liste";
    return "une correspondance (clé: valeur)";
}

/* True when scalar `key` is exactly `name`. */
static bool key_is(const yaml_node_t *key, const char *name)
{
    size_t n = strlen(name);
    return key->data.scalar.length == n && memcmp(key->data.scalar.value, name, n) == 0;
}

/* Items of a sequence node (count in *n); NULL and 0 for any other node. */
static yaml_node_item_t *seq_items(const yaml_node_t *n, size_t *count)
{
    if (!n || n->type != YAML_SEQUENCE_NODE) {
        *count = 0;
        return NULL;
    }
    *count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    return n->data.sequence.items.start;
}

/* [a-z_][a-z0-9_]*, at most 64 bytes: slot, state, catalogue and field names. */
static bool valid_name(const char *s, size_t len)
{
    if (len == 0 || len > 64 || !((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return false;
    for (size_t i = 1; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return true;
}

/* [a-z0-9_]+ (and '-' when `dash`), at most 64 bytes: ids of choices, items, tags, dialogs. */
static bool valid_id(const char *s, size_t len, bool dash)
{
    if (len == 0 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
              (dash && s[i] == '-')))
            return false;
    return true;
}

/*
 * Where the content of scalar `n` starts in the file (1-based): after the quote of a quoted
 * scalar, on the first non-blank line after the indicator of a block scalar. `*line_col` is the
 * column where the content's following lines start (the block's indentation + 1, else 1).
 */
static void content_pos(struct ld *l, const yaml_node_t *n, long *line, long *col, long *line_col)
{
    *line = (long)n->start_mark.line + 1;
    *col = (long)n->start_mark.column + 1;
    *line_col = 1;
    switch (n->data.scalar.style) {
    case YAML_SINGLE_QUOTED_SCALAR_STYLE:
    case YAML_DOUBLE_QUOTED_SCALAR_STYLE:
        (*col)++;
        break;
    case YAML_LITERAL_SCALAR_STYLE:
    case YAML_FOLDED_SCALAR_STYLE:
        for (size_t ln = n->start_mark.line + 1; ln < l->n_lines; ln++) {
            size_t i = l->lines[ln];
            long c = 1;
            while (i < l->len && l->text[i] == ' ') {
                i++;
                c++;
            }
            if (i < l->len && l->text[i] != '\n' && l->text[i] != '\r') {
                *line = (long)ln + 1;
                *col = c;
                *line_col = c;
                break;
            }
        }
        break;
    case YAML_ANY_SCALAR_STYLE:
    case YAML_PLAIN_SCALAR_STYLE:
        break;
    }
}

/*
 * Checks the keys of mapping `map` against `keys` (n of them): reports keys that are not names,
 * unknown keys (with the known list and a close match) and duplicates. Fills vals[i] (and
 * knodes[i] when not NULL) with the value (and key) nodes of the keys present, NULL otherwise.
 * `where` completes messages ("dans l'état « x »"), may be "".
 */
static void map_fields(struct ld *l, const yaml_node_t *map, const char *const *keys, size_t n,
                       yaml_node_t **vals, yaml_node_t **knodes, const char *where)
{
    for (size_t i = 0; i < n; i++) {
        vals[i] = NULL;
        if (knodes)
            knodes[i] = NULL;
    }
    if (!map || map->type != YAML_MAPPING_NODE)
        return;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = node(l, p->key), *v = node(l, p->value);
        if (!k || !v)
            continue;
        if (!is_text(k)) {
            errn(l, k, "une clé doit être un nom, pas %s", kind_of(k));
            continue;
        }
        size_t i = 0;
        while (i < n && !key_is(k, keys[i]))
            i++;
        if (i == n) {
            char known[512];
            size_t o = 0;
            const char *close = NULL;
            unsigned best = 3;
            known[0] = '\0';
            for (size_t j = 0; j < n; j++) {
                int w = snprintf(known + o, sizeof(known) - o, "%s%s", j ? ", " : "", keys[j]);
                if (w > 0 && (size_t)w < sizeof(known) - o)
                    o += (size_t)w;
                unsigned dist =
                    fb_text_distance(sval(k), k->data.scalar.length, keys[j], strlen(keys[j]), 2);
                if (dist < best) {
                    best = dist;
                    close = keys[j];
                }
            }
            fb_yaml_shown_t s = shown_node(k);
            if (close)
                errn(l, k,
                     "clé inconnue « %s »%s : vouliez-vous dire « %s » ? (clés possibles : %s)",
                     s.s, where, close, known);
            else
                errn(l, k, "clé inconnue « %s »%s (clés possibles : %s)", s.s, where, known);
            continue;
        }
        if (vals[i]) {
            yaml_node_t *first = knodes ? knodes[i] : NULL;
            if (first)
                errn(l, k, "clé « %s » en double%s (première à %ld:%ld)", keys[i], where,
                     (long)first->start_mark.line + 1, (long)first->start_mark.column + 1);
            else
                errn(l, k, "clé « %s » en double%s", keys[i], where);
            continue;
        }
        vals[i] = v;
        if (knodes)
            knodes[i] = k;
    }
}

/* The text of a scalar value, or NULL after reporting that `what` must be text. */
static const char *want_text(struct ld *l, const yaml_node_t *v, const char *what)
{
    if (is_text(v) && v->data.scalar.length > 0)
        return sval(v);
    if (is_null(v))
        errn(l, v, "« %s » est vide", what);
    else
        errn(l, v, "« %s » doit être un texte, pas %s", what, kind_of(v));
    return NULL;
}

/* Reads a boolean (true/false, oui/non, vrai/faux). Returns false after reporting otherwise. */
static bool want_bool(struct ld *l, const yaml_node_t *v, const char *what, bool *out)
{
    static const char *const yes[] = {"true", "True", "TRUE", "oui", "vrai", "yes"};
    static const char *const no[] = {"false", "False", "FALSE", "non", "faux", "no"};
    if (is_text(v) && v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        for (size_t i = 0; i < FB_ARRAY_SIZE(yes); i++) {
            if (strcmp(sval(v), yes[i]) == 0) {
                *out = true;
                return true;
            }
            if (strcmp(sval(v), no[i]) == 0) {
                *out = false;
                return true;
            }
        }
    }
    errn(l, v, "« %s » doit valoir true ou false", what);
    return false;
}

/* Reads a decimal number ("12", "-3", "2.5"). Returns false after reporting otherwise. */
static bool want_number(struct ld *l, const yaml_node_t *v, const char *what, double *out)
{
    if (is_text(v) && v->data.scalar.length < 64) {
        const char *s = sval(v);
        bool ok = *s != '\0';
        size_t digits = 0;
        for (const char *p = s; *p; p++) {
            if (*p >= '0' && *p <= '9')
                digits++;
            else if (!(*p == '.' || (p == s && (*p == '-' || *p == '+'))))
                ok = false;
        }
        if (ok && digits > 0) {
            char *end = NULL;
            double d = strtod(s, &end);
            if (end && *end == '\0' && isfinite(d)) {
                *out = d;
                return true;
            }
        }
        if (strchr(s, ',')) {
            errn(l, v, "« %s » doit être un nombre écrit avec un point décimal (2.5, pas 2,5)",
                 what);
            return false;
        }
    }
    errn(l, v, "« %s » doit être un nombre", what);
    return false;
}

/* Reads an integer in [min, max]. Returns false after reporting otherwise. */
static bool want_uint(struct ld *l, const yaml_node_t *v, const char *what, unsigned min,
                      unsigned max, unsigned *out)
{
    double d = 0;
    if (is_text(v)) {
        const char *s = sval(v);
        bool digits = *s != '\0' && v->data.scalar.length < 10;
        for (const char *p = s; *p; p++)
            if (*p < '0' || *p > '9')
                digits = false;
        if (digits) {
            d = strtod(s, NULL);
            if (d >= min && d <= max) {
                *out = (unsigned)d;
                return true;
            }
        }
    }
    errn(l, v, "« %s » doit être un nombre entier entre %u et %u", what, min, max);
    return false;
}

/* Reads a duration ("6 semaines"). Returns false after reporting otherwise. */
static bool want_duration(struct ld *l, const yaml_node_t *v, const char *what, long long *out)
{
    long long secs = 0;
    if (is_text(v) && fb_text_duration(sval(v), &secs) == 0 && secs >= 60 &&
        secs <= 10ll * 365 * 86400) {
        *out = secs;
        return true;
    }
    if (is_text(v)) {
        fb_yaml_shown_t s = shown_node(v);
        errn(l, v,
             "durée invalide « %s » pour « %s » : écrivez par exemple « 3 jours », « 6 semaines », "
             "« 2 mois » ou « 1 an » (entre 1 minute et 10 ans)",
             s.s, what);
    } else {
        errn(l, v,
             "« %s » doit être une durée comme « 3 jours », « 6 semaines », « 2 mois » ou « 1 an »",
             what);
    }
    return false;
}

/* True for "YYYY-MM-DD" naming a real day. */
static bool valid_date(const char *s, size_t len)
{
    if (len != 10 || s[4] != '-' || s[7] != '-')
        return false;
    for (size_t i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
            return false;
    int y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
    int m = (s[5] - '0') * 10 + (s[6] - '0');
    int d = (s[8] - '0') * 10 + (s[9] - '0');
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1900 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
        return false;
    if (m == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return false;
    return true;
}

/* ---- files ----------------------------------------------------------------------------------- */

/* A French explanation of an errno value from open/read. */
static const char *why_errno(int e)
{
    switch (e) {
    case ENOENT:
        return "fichier introuvable";
    case EACCES:
    case EPERM:
        return "accès refusé";
    case EISDIR:
        return "c'est un dossier, pas un fichier";
    default:
        return strerror(e);
    }
}

/*
 * Reads a whole regular file of at most MAX_FILE_BYTES into `out`. Returns 0, or sets *why to a
 * static French explanation and returns a negative code. Never blocks on a FIFO or device.
 */
static int read_file(const char *path, fb_buf_t *out, const char **why)
{
    char chunk[16384];
    int rc = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        *why = why_errno(errno);
        return FB_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        *why = S_ISDIR(st.st_mode) ? why_errno(EISDIR) : "ce n'est pas un fichier ordinaire";
        rc = FB_EINVAL;
        goto done;
    }
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof(chunk));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            *why = why_errno(errno);
            rc = FB_EIO;
            goto done;
        }
        if (r == 0)
            break;
        if (fb_buf_append(out, chunk, (size_t)r) != 0) {
            *why = "le fichier dépasse 4 Mio";
            rc = FB_ETOOBIG;
            goto done;
        }
    }
done:
    close(fd);
    return rc;
}

/* Continues the FNV-1a hash `*h` (the dialog hash) over `n` bytes. */
static void hash_bytes(uint64_t *h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        *h ^= s[i];
        *h *= 1099511628211ull;
    }
}

/* ---- YAML documents -------------------------------------------------------------------------- */

/* French wording of libyaml's most frequent complaints; NULL for the others. */
static const char *yaml_problem_fr(const char *problem)
{
    static const struct {
        const char *en, *fr;
    } table[] = {
        {"mapping values are not allowed in this context",
         "deux-points inattendu : une valeur qui contient « : » doit être entre guillemets"},
        {"did not find expected key", "clé attendue : vérifiez l'indentation"},
        {"did not find expected '-' indicator",
         "élément de liste attendu (« - ») : vérifiez l'indentation"},
        {"found character that cannot start any token",
         "caractère inattendu (les tabulations sont interdites : utilisez des espaces)"},
        {"found undefined alias", "alias (*nom) non défini"},
        {"found unexpected end of stream", "fin de fichier inattendue : un guillemet n'est pas "
                                           "refermé ?"},
        {"could not find expected ':'", "deux-points (« : ») attendu après la clé"},
        {"found unknown escape character",
         "séquence d'échappement inconnue après « \\ » entre guillemets doubles"},
        {"block sequence entries are not allowed in this context",
         "élément de liste (« - ») mal placé : vérifiez l'indentation"},
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(table); i++)
        if (strcmp(problem, table[i].en) == 0)
            return table[i].fr;
    return NULL;
}

/* French wording of libyaml's contexts ("while scanning..."); NULL for the others. */
static const char *yaml_context_fr(const char *context)
{
    static const struct {
        const char *en, *fr;
    } table[] = {
        {"while scanning a quoted scalar", "texte entre guillemets commencé"},
        {"while scanning a simple key", "clé commencée"},
        {"while parsing a block mapping", "correspondance commencée"},
        {"while parsing a block collection", "liste commencée"},
        {"while parsing a flow mapping", "correspondance {...} commencée"},
        {"while parsing a flow sequence", "liste [...] commencée"},
        {"while scanning a block scalar", "texte en bloc commencé"},
        {"while scanning an alias", "alias commencé"},
        {"while scanning an anchor", "ancre commencée"},
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(table); i++)
        if (strcmp(context, table[i].en) == 0)
            return table[i].fr;
    return NULL;
}

/* Converts a byte offset into a 1-based line and column (characters). */
static void offset_position(const char *text, size_t len, size_t off, long *line, long *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off && i < len; i++) {
        unsigned char ch = (unsigned char)text[i];
        if (ch == '\n') {
            (*line)++;
            *col = 1;
        } else if ((ch & 0xC0) != 0x80) {
            (*col)++;
        }
    }
}

/* Reports why libyaml could not load the current text, as one positioned error. */
static void report_yaml_error(struct ld *l, const yaml_parser_t *p)
{
    const char *problem = p->problem ? p->problem : "erreur inconnue";
    if (p->error == YAML_READER_ERROR) {
        long line, col;
        offset_position(l->text, l->len, p->problem_offset, &line, &col);
        if (strstr(problem, "UTF-8"))
            errat(l, line, col, "le fichier n'est pas en UTF-8 valide (enregistrez-le en UTF-8)");
        else
            errat(l, line, col, "caractère interdit dans un fichier YAML (%s)", problem);
        return;
    }
    if (p->error == YAML_MEMORY_ERROR) {
        errat(l, 1, 1, "mémoire insuffisante pour lire le YAML");
        return;
    }
    const char *fr = yaml_problem_fr(problem);
    long line = (long)p->problem_mark.line + 1, col = (long)p->problem_mark.column + 1;
    const char *ctx = p->context ? yaml_context_fr(p->context) : NULL;
    if (ctx)
        errat(l, line, col, "erreur de syntaxe YAML : %s (%s à %ld:%ld)", fr ? fr : problem, ctx,
              (long)p->context_mark.line + 1, (long)p->context_mark.column + 1);
    else
        errat(l, line, col, "erreur de syntaxe YAML : %s", fr ? fr : problem);
}

/*
 * Parses `text` as one YAML document into `doc` and makes it the current document. Returns
 * true when a root node exists; otherwise reports why and returns false (doc then needs no
 * deletion).
 */
static bool load_doc(struct ld *l, int file, const char *text, size_t len, yaml_document_t *doc,
                     const char *empty_msg)
{
    yaml_parser_t parser;
    l->file = file;
    l->text = text;
    l->len = len;
    l->doc = doc;
    FB_FREE(l->lines);
    l->n_lines = 1;
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\n')
            l->n_lines++;
    l->lines = fb_malloc(l->n_lines * sizeof(*l->lines));
    l->lines[0] = 0;
    for (size_t i = 0, k = 1; i < len; i++)
        if (text[i] == '\n')
            l->lines[k++] = i + 1;

    if (!yaml_parser_initialize(&parser)) {
        errat(l, 1, 1, "mémoire insuffisante pour lire le YAML");
        return false;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);
    if (!yaml_parser_load(&parser, doc)) {
        report_yaml_error(l, &parser);
        yaml_parser_delete(&parser);
        return false;
    }
    if (!yaml_document_get_root_node(doc)) {
        errat(l, 1, 1, "%s", empty_msg);
        yaml_document_delete(doc);
        yaml_parser_delete(&parser);
        return false;
    }
    yaml_document_t extra;
    if (!yaml_parser_load(&parser, &extra)) {
        report_yaml_error(l, &parser);
    } else {
        if (yaml_document_get_root_node(&extra))
            errat(l, (long)extra.start_mark.line + 1, (long)extra.start_mark.column + 1,
                  "un seul document YAML est permis par fichier (retirez ce « --- »)");
        yaml_document_delete(&extra);
    }
    yaml_parser_delete(&parser);
    return true;
}

/* ---- expressions and templates --------------------------------------------------------------- */

/* True for the names templates and expressions have besides slots (`feuille_de_route`...). */
static bool is_builtin(const char *name)
{
    for (size_t i = 0; i < FB_ARRAY_SIZE(builtin_names); i++)
        if (strcmp(builtin_names[i], name) == 0)
            return true;
    return false;
}

/* The index of the catalogue named `name` in `d`, or -1. */
static int catalogue_index(const fb_dialog_t *d, const char *name)
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
            errat(l, line, col, "aucune réponse n'émet le signal « #%s »", s.s);
        }
        return;
    }
    bool catalogue = catalogue_index(l->d, name) >= 0;
    if (l->in_item_cond && (catalogue || strcmp(name, "feuille_de_route") == 0)) {
        fb_yaml_shown_t s = fb_yaml_show(name, strlen(name));
        errat(l, line, col,
              "la condition « si » d'un élément de catalogue ne peut pas utiliser « %s » : elle "
              "dépend des réponses, pas des listes que ces conditions servent à calculer",
              s.s);
        return;
    }
    if (fb__strmap_get(&l->d->slot_map, name) < 0 && !is_builtin(name) && !catalogue) {
        fb_yaml_shown_t s = fb_yaml_show(name, strlen(name));
        errat(l, line, col,
              "« %s » n'est ni une variable (le nom d'une question), ni un catalogue, ni un nom "
              "prédéfini (feuille_de_route, question, aide, tentatives, etape, min, max)",
              s.s);
    }
}

/* fb_expr_compared_strings() callback: records the comparison for check_compared_strings(). */
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
static void check_compared_strings(struct ld *l)
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
        errat(l, c->line, c->col,
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
static fb_expr_t *compile_expr(struct ld *l, const yaml_node_t *v, const char *what, char **src_out)
{
    const char *src;
    if (is_null(v) && v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        errn(l, v,
             "« %s » est vide : en YAML, un # non entre guillemets commence un commentaire ; "
             "écrivez par exemple %s: \"#mon_signal\"",
             what, what);
        return NULL;
    }
    src = want_text(l, v, what);
    if (!src)
        return NULL;
    long line, col, line_col;
    content_pos(l, v, &line, &col, &line_col);
    fb_buf_t tmp;
    fb_buf_init(&tmp, 1u << 16);
    fb_expr_t *e = fb_expr_parse(src, (int)line, (int)col, &tmp);
    if (!e) {
        if (tmp.len == 0)
            errat(l, line, col, "expression invalide");
        import_errors(l, &tmp, line, col);
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
static void prerender(struct fb__text *t)
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
static bool compile_text(struct ld *l, const yaml_node_t *v, const char *what, struct fb__text *out)
{
    const char *src = want_text(l, v, what);
    if (!src)
        return false;
    long line, col, line_col;
    content_pos(l, v, &line, &col, &line_col);
    fb_buf_t tmp;
    fb_buf_init(&tmp, 1u << 16);
    fb_expr_pos_t pos = {(int)line, (int)col, (int)line_col};
    out->t = fb_template_parse_at(src, pos, &tmp);
    if (!out->t) {
        if (tmp.len == 0)
            errat(l, line, col, "texte invalide");
        import_errors(l, &tmp, line, col);
    } else {
        fb_template_names(out->t, check_name_cb, l);
        fb_template_compared_strings(out->t, record_cmp_cb, l);
        prerender(out);
    }
    fb_buf_free(&tmp);
    return out->t != NULL;
}

/* Frees a compiled text and its pre-rendered strings; `t` is empty afterwards. */
static void text_free(struct fb__text *t)
{
    fb_template_free(t->t);
    json_decref(t->plain);
    json_decref(t->html);
    t->t = NULL;
    t->plain = t->html = NULL;
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

/* ---- pass 1: declarations -------------------------------------------------------------------- */

static const char *const type_names[] = {"",       "oui_non", "choix", "choix_multiple",
                                         "nombre", "texte",   "date",  "commune"};

/* The question type named by scalar `v`, or FB__Q_NONE. */
static enum fb__qtype type_of(const yaml_node_t *v)
{
    if (!is_text(v))
        return FB__Q_NONE;
    for (size_t i = 1; i < FB_ARRAY_SIZE(type_names); i++)
        if (strcmp(sval(v), type_names[i]) == 0)
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
        yaml_node_t *k = node(l, p->key);
        if (is_text(k) && key_is(k, name))
            return node(l, p->value);
    }
    return NULL;
}

/* Declares tag `v` (a scalar) if it is a valid id; pass 2 reports invalid ones. */
static void declare_tag(struct ld *l, const yaml_node_t *v)
{
    fb_dialog_t *d = l->d;
    if (!is_text(v) || !valid_id(sval(v), v->data.scalar.length, false))
        return;
    if (fb__strmap_get(&d->tag_map, sval(v)) >= 0)
        return;
    d->tags = fb_realloc(d->tags, (d->n_tags + 1) * sizeof(*d->tags));
    d->tags[d->n_tags] = fb_strdup(sval(v));
    (void)fb__strmap_put(&d->tag_map, d->tags[d->n_tags], (int)d->n_tags);
    d->n_tags++;
}

/*
 * First pass over `etats`: numbers the states (reporting duplicates), declares the slots of
 * question states with their types, and the tags that signals and choices emit.
 */
static void declare(struct ld *l, yaml_node_t *states)
{
    fb_dialog_t *d = l->d;
    size_t cap = (size_t)(states->data.mapping.pairs.top - states->data.mapping.pairs.start);
    d->states = fb_calloc(cap ? cap : 1, sizeof(*d->states));
    l->state_nodes = fb_calloc(cap ? cap : 1, sizeof(yaml_node_t *));
    l->state_keys = fb_calloc(cap ? cap : 1, sizeof(yaml_node_t *));
    for (yaml_node_pair_t *p = states->data.mapping.pairs.start; p < states->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = node(l, p->key), *v = node(l, p->value);
        if (!k || !v)
            continue;
        if (!is_text(k) || !valid_name(sval(k), k->data.scalar.length)) {
            if (is_scalar(k)) {
                fb_yaml_shown_t s = shown_node(k);
                errn(l, k,
                     "nom d'état invalide « %s » : lettres minuscules sans accent, chiffres et _ "
                     "(par exemple « surface_du_site »)",
                     s.s);
            } else {
                errn(l, k, "un nom d'état doit être un nom, pas %s", kind_of(k));
            }
            continue;
        }
        int prev = fb__strmap_get(&d->state_map, sval(k));
        if (prev >= 0) {
            const yaml_node_t *first = l->state_keys[prev];
            errn(l, k, "l'état « %s » est défini deux fois (première définition à %ld:%ld)",
                 sval(k), (long)first->start_mark.line + 1, (long)first->start_mark.column + 1);
            continue;
        }
        size_t i = d->n_states++;
        struct fb__state *st = &d->states[i];
        st->id = fb_strdup(sval(k));
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
        yaml_node_item_t *items = seq_items(get_key(l, v, "signaux"), &n);
        for (size_t j = 0; j < n; j++)
            declare_tag(l, get_key(l, node(l, items[j]), "tag"));
        items = seq_items(get_key(l, v, "choix"), &n);
        for (size_t j = 0; j < n; j++) {
            yaml_node_t *sig = get_key(l, node(l, items[j]), "signaux");
            size_t m;
            yaml_node_item_t *tags = seq_items(sig, &m);
            if (is_scalar(sig))
                declare_tag(l, sig);
            for (size_t t = 0; t < m; t++)
                declare_tag(l, node(l, tags[t]));
        }

        /* slot */
        if (!get_key(l, v, "question"))
            continue;
        enum fb__qtype type = type_of(get_key(l, v, "type"));
        yaml_node_t *var = get_key(l, v, "variable");
        const char *name = st->id;
        if (var) {
            if (!is_text(var) || !valid_name(sval(var), var->data.scalar.length))
                continue; /* reported by pass 2 */
            name = sval(var);
        }
        int slot = fb__strmap_get(&d->slot_map, name);
        if (slot < 0) {
            d->slots = fb_realloc(d->slots, (d->n_slots + 1) * sizeof(*d->slots));
            d->slots[d->n_slots] = (struct fb__slot){fb_strdup(name), type, (int)i};
            (void)fb__strmap_put(&d->slot_map, d->slots[d->n_slots].name, (int)d->n_slots);
            slot = (int)d->n_slots++;
        } else if (type != FB__Q_NONE && d->slots[slot].type != FB__Q_NONE &&
                   type != d->slots[slot].type) {
            errn(l, var ? var : k,
                 "la variable « %s » est déjà remplie par l'état « %s », une question de type %s : "
                 "deux questions qui partagent une variable doivent avoir le même type",
                 name, d->states[d->slots[slot].state].id, type_names[d->slots[slot].type]);
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
    SK_COUNT
};
static const char *const state_keys[SK_COUNT] = {
    "dire",     "question", "type",  "variable",  "libelle", "aide",      "je_ne_sais_pas",
    "relances", "echecs",   "suite", "condition", "signaux", "choix",     "unite",
    "min",      "max",      "futur", "fin",       "relance", "commandes", "avis"};

/* Resolves a state name in scalar `v` (for key `what`). Returns its index or -1 after reporting.
 */
static int want_state(struct ld *l, const yaml_node_t *v, const char *what)
{
    const char *name = want_text(l, v, what);
    if (!name)
        return -1;
    int i = fb__strmap_get(&l->d->state_map, name);
    if (i < 0) {
        fb_yaml_shown_t s = shown_node(v);
        errn(l, v, "« %s » mène à l'état « %s », qui n'existe pas", what, s.s);
    }
    return i;
}

/* Compiles `suite`: a state name, or a list of branches {si, aller}. */
static void compile_suite(struct ld *l, struct fb__state *st, const yaml_node_t *v)
{
    if (is_scalar(v)) {
        int t = want_state(l, v, "suite");
        if (t >= 0) {
            st->next = fb_calloc(1, sizeof(*st->next));
            st->next[0].target = t;
            st->n_next = 1;
        }
        return;
    }
    size_t n;
    yaml_node_item_t *items = seq_items(v, &n);
    if (v->type != YAML_SEQUENCE_NODE || n == 0) {
        errn(l, v,
             "« suite » doit être le nom d'un état, ou une liste de branches « - si: ... aller: "
             "... »");
        return;
    }
    st->next = fb_calloc(n, sizeof(*st->next));
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *b = node(l, items[i]);
        static const char *const keys[] = {"si", "aller"};
        yaml_node_t *vals[2], *knodes[2];
        if (!b || b->type != YAML_MAPPING_NODE) {
            errn(l, b, "une branche de « suite » doit être « si: ... » et « aller: ... », pas %s",
                 b ? kind_of(b) : "vide");
            continue;
        }
        map_fields(l, b, keys, 2, vals, knodes, " dans une branche de « suite »");
        struct fb__branch *br = &st->next[st->n_next];
        br->target = -1;
        if (!vals[1])
            errn(l, b, "clé obligatoire « aller » manquante dans cette branche de « suite »");
        else
            br->target = want_state(l, vals[1], "aller");
        if (vals[0])
            br->cond = compile_expr(l, vals[0], "si", &br->cond_src);
        if (!vals[0] && i + 1 < n)
            errn(l, b,
                 "cette branche sans « si » s'applique toujours : les branches suivantes ne "
                 "serviraient jamais (placez-la en dernier)");
        if (vals[0] && i + 1 == n)
            errn(l, b,
                 "la dernière branche de « suite » doit être sans « si » : c'est elle qui "
                 "s'applique quand aucune autre ne convient");
        st->n_next++;
    }
}

/* Compiles `signaux` of a question: a list of {si, tag}. */
static void compile_signals(struct ld *l, struct fb__state *st, const yaml_node_t *v)
{
    size_t n;
    yaml_node_item_t *items = seq_items(v, &n);
    if (v->type != YAML_SEQUENCE_NODE) {
        errn(l, v, "« signaux » doit être une liste de « - si: ... tag: ... »");
        return;
    }
    st->signals = fb_calloc(n ? n : 1, sizeof(*st->signals));
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *s = node(l, items[i]);
        static const char *const keys[] = {"si", "tag"};
        yaml_node_t *vals[2];
        if (!s || s->type != YAML_MAPPING_NODE) {
            errn(l, s, "un signal doit être « si: ... » et « tag: ... », pas %s",
                 s ? kind_of(s) : "vide");
            continue;
        }
        map_fields(l, s, keys, 2, vals, NULL, " dans un signal");
        if (!vals[0] || !vals[1]) {
            errn(l, s, "clé obligatoire « %s » manquante dans ce signal", vals[0] ? "tag" : "si");
            continue;
        }
        if (!is_text(vals[1]) || !valid_id(sval(vals[1]), vals[1]->data.scalar.length, false)) {
            errn(l, vals[1],
                 "« tag » doit être un nom en minuscules sans accent, chiffres et _ (par exemple "
                 "« site_pollue »)");
            continue;
        }
        fb_expr_t *e = compile_expr(l, vals[0], "si", NULL);
        if (!e)
            continue;
        st->signals[st->n_signals].cond = e;
        st->signals[st->n_signals].tag = fb__strmap_get(&l->d->tag_map, sval(vals[1]));
        st->n_signals++;
    }
}

/* Reads a list of strings (or one string) into a new NULL-terminated array; NULL on error. */
static char **want_strings(struct ld *l, const yaml_node_t *v, const char *what, size_t *count)
{
    size_t n;
    yaml_node_item_t *items = seq_items(v, &n);
    if (is_text(v)) {
        char **out = fb_calloc(2, sizeof(*out));
        out[0] = fb_strdup(sval(v));
        *count = 1;
        return out;
    }
    if (v->type != YAML_SEQUENCE_NODE) {
        errn(l, v, "« %s » doit être une liste de textes", what);
        return NULL;
    }
    char **out = fb_calloc(n + 1, sizeof(*out));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *s = node(l, items[i]);
        const char *t = s ? want_text(l, s, what) : NULL;
        if (t)
            out[k++] = fb_strdup(t);
    }
    *count = k;
    return out;
}

/* Frees a NULL-terminated array of strings (NULL is fine). */
static void strings_free(char **s)
{
    for (size_t i = 0; s && s[i]; i++)
        fb_free(s[i]);
    fb_free(s);
}

/* Compiles `choix`: a list of {id, texte, synonymes, signaux, aller}. */
static void compile_choices(struct ld *l, struct fb__state *st, const yaml_node_t *v)
{
    size_t n;
    yaml_node_item_t *items = seq_items(v, &n);
    if (v->type != YAML_SEQUENCE_NODE || n < 2 || n > MAX_CHOICES) {
        errn(l, v, "« choix » doit être une liste de 2 à %d options « - id: ... texte: ... »",
             MAX_CHOICES);
        if (v->type != YAML_SEQUENCE_NODE || n > MAX_CHOICES)
            return;
    }
    struct fb__strmap ids = {0};
    st->choices = fb_calloc(n ? n : 1, sizeof(*st->choices));
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *c = node(l, items[i]);
        static const char *const keys[] = {"id", "texte", "synonymes", "signaux", "aller"};
        yaml_node_t *vals[5], *knodes[5];
        if (!c || c->type != YAML_MAPPING_NODE) {
            errn(l, c, "une option de « choix » doit être « id: ... » et « texte: ... », pas %s",
                 c ? kind_of(c) : "vide");
            continue;
        }
        map_fields(l, c, keys, 5, vals, knodes, " dans une option de « choix »");
        struct fb__choice *ch = &st->choices[st->n_choices];
        ch->target = -1;
        bool ok = true;
        if (!vals[0]) {
            errn(l, c, "clé obligatoire « id » manquante dans cette option");
            ok = false;
        } else if (!is_text(vals[0]) ||
                   !valid_id(sval(vals[0]), vals[0]->data.scalar.length, false)) {
            errn(l, vals[0],
                 "« id » doit être un identifiant en minuscules sans accent, chiffres et _ (par "
                 "exemple « friche_industrielle »)");
            ok = false;
        } else if (!fb__strmap_put(&ids, sval(vals[0]), (int)i)) {
            errn(l, vals[0], "l'option « %s » est définie deux fois dans ce choix", sval(vals[0]));
            ok = false;
        } else if (strcmp(sval(vals[0]), "nsp") == 0) {
            errn(l, vals[0],
                 "« nsp » est réservé à « je ne sais pas » : utilisez « je_ne_sais_pas: true »");
            ok = false;
        }
        const char *label = NULL;
        if (!vals[1])
            errn(l, c, "clé obligatoire « texte » manquante dans cette option");
        else
            label = want_text(l, vals[1], "texte");
        if (!ok || !label)
            continue;
        ch->id = fb_strdup(sval(vals[0]));
        ch->label = fb_strdup(label);
        size_t ns = 0;
        if (vals[2])
            ch->synonyms = want_strings(l, vals[2], "synonymes", &ns);
        if (vals[3]) {
            size_t nt = 0;
            char **tags = want_strings(l, vals[3], "signaux", &nt);
            ch->tags = fb_calloc(nt ? nt : 1, sizeof(*ch->tags));
            for (size_t t = 0; t < nt; t++) {
                if (!valid_id(tags[t], strlen(tags[t]), false)) {
                    errn(l, vals[3],
                         "signal invalide « %s » : minuscules sans accent, chiffres et _",
                         fb_yaml_show(tags[t], strlen(tags[t])).s);
                    continue;
                }
                ch->tags[ch->n_tags++] = fb__strmap_get(&l->d->tag_map, tags[t]);
            }
            strings_free(tags);
        }
        if (vals[4]) {
            if (st->type == FB__Q_MULTI)
                errn(l, knodes[4],
                     "« aller » ne s'applique pas à un choix multiple (utilisez « suite » avec des "
                     "branches)");
            else
                ch->target = want_state(l, vals[4], "aller");
        }
        st->n_choices++;
    }
    fb__strmap_free(&ids);
}

/* Compiles `relance:` (top level when `st` is NULL). */
static void compile_relance(struct ld *l, struct fb__state *st, const yaml_node_t *v,
                            struct fb__relance *r)
{
    static const char *const keys[] = {"apres", "message", "max", "etape"};
    yaml_node_t *vals[4];
    if (v->type != YAML_MAPPING_NODE) {
        errn(l, v, "« relance » doit être une correspondance : apres, message, max, etape");
        return;
    }
    map_fields(l, v, keys, st ? 4 : 3, vals, NULL,
               st ? " dans « relance »" : " dans « relance » (niveau du dialogue)");
    r->set = true;
    r->max = DEFAULT_RELANCE_MAX;
    r->after = l->d->relance.set ? l->d->relance.after : 0;
    if (vals[0])
        (void)want_duration(l, vals[0], "apres", &r->after);
    else if (!l->d->relance.set)
        errn(l, v,
             "clé obligatoire « apres » manquante dans « relance » (par exemple « apres: 6 "
             "semaines »)");
    if (vals[1])
        (void)compile_text(l, vals[1], "message", &r->msg);
    if (vals[2])
        (void)want_uint(l, vals[2], "max", 1, 50, &r->max);
    if (st && vals[3]) {
        const char *e = want_text(l, vals[3], "etape");
        if (e && strcmp(e, "premiere") == 0)
            r->step = true;
        else if (e && strcmp(e, "aucune") != 0)
            errn(l, vals[3], "« etape » doit valoir « premiere » ou « aucune »");
        if (r->step && !st->final)
            errn(l, vals[3],
                 "« etape: premiere » ne s'applique qu'à un état final (« fin: true »)");
    }
}

/* Frees the words of a command set (not the set itself). */
static void cmdset_free(struct fb__cmdset *c)
{
    for (int i = 0; i < FB__CMD_COUNT; i++) {
        for (size_t j = 0; j < c->n[i]; j++)
            fb_free(c->words[i][j]);
        FB_FREE(c->words[i]);
        c->n[i] = 0;
    }
}

/* Adds a copy of the already folded word `folded` to command `cmd`. */
static void cmd_add_word(struct fb__cmdset *c, int cmd, const char *folded)
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
            cmd_add_word(dst, i, src->words[i][j]);
    }
}

/* Applies a `commandes:` mapping on top of `c`. */
static void compile_commands(struct ld *l, struct fb__cmdset *c, const yaml_node_t *v)
{
    if (v->type != YAML_MAPPING_NODE) {
        errn(l, v,
             "« commandes » doit être une correspondance, par exemple « conseiller: {mots: "
             "[humain]} »");
        return;
    }
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(l, p->key), *val = node(l, p->value);
        if (!k || !val)
            continue;
        int cmd = -1;
        if (is_text(k)) {
            char *f = fb_text_fold_dup(sval(k));
            for (int i = 0; i < FB__CMD_COUNT; i++) {
                char *g = fb_text_fold_dup(cmd_names[i]);
                if (strcmp(f, g) == 0)
                    cmd = i;
                fb_free(g);
            }
            fb_free(f);
        }
        if (cmd < 0) {
            fb_yaml_shown_t s = is_scalar(k) ? shown_node(k) : fb_yaml_show("?", 1);
            errn(l, k,
                 "commande inconnue « %s » (commandes : aide, retour, recommencer, conseiller, "
                 "ou_en_suis_je, mes_donnees, oublier_mes_donnees, stop, mes_etapes)",
                 s.s);
            continue;
        }
        static const char *const keys[] = {"mots", "desactive"};
        yaml_node_t *vals[2];
        if (val->type != YAML_MAPPING_NODE) {
            errn(l, val, "la commande « %s » attend « mots: [...] » ou « desactive: true »",
                 cmd_names[cmd]);
            continue;
        }
        map_fields(l, val, keys, 2, vals, NULL, " dans une commande");
        if (vals[1]) {
            bool off = false;
            if (want_bool(l, vals[1], "desactive", &off))
                c->disabled[cmd] = off;
        }
        if (vals[0]) {
            size_t n = 0;
            char **words = want_strings(l, vals[0], "mots", &n);
            for (size_t i = 0; i < n; i++) {
                char *f = fb_text_fold_dup(words[i]);
                if (f[0] == '\0')
                    errn(l, vals[0], "le mot « %s » est vide une fois simplifié",
                         fb_yaml_show(words[i], strlen(words[i])).s);
                else
                    cmd_add_word(c, cmd, f);
                fb_free(f);
            }
            strings_free(words);
        }
    }
}

/* Compiles state `i` from its mapping (pass 2). */
static void compile_avis(struct ld *l, struct fb__state *st, const yaml_node_t *v);

static void compile_state(struct ld *l, size_t i)
{
    fb_dialog_t *d = l->d;
    struct fb__state *st = &d->states[i];
    yaml_node_t *v = l->state_nodes[i];
    yaml_node_t *k = l->state_keys[i];
    yaml_node_t *f[SK_COUNT], *kn[SK_COUNT];
    char where[128];
    bool final_question = false;

    st->cmds = &d->cmds;
    st->fail_max = DEFAULT_FAILS;
    st->tmin = 1;
    st->tmax = 500;
    st->min = -1e300;
    st->max = 1e300;
    if (v->type != YAML_MAPPING_NODE) {
        errn(l, is_null(v) ? k : v,
             "l'état « %s » doit être une correspondance (dire: ... ou question: ...), pas %s",
             st->id, kind_of(v));
        return;
    }
    snprintf(where, sizeof(where), " dans l'état « %s »", st->id);
    map_fields(l, v, state_keys, SK_COUNT, f, kn, where);

    if (f[SK_FIN]) {
        bool fin = false;
        if (want_bool(l, f[SK_FIN], "fin", &fin))
            st->final = fin;
    }
    if (f[SK_DIRE] && f[SK_QUESTION]) {
        errn(l, kn[SK_QUESTION],
             "l'état « %s » a « dire » et « question » : un état est soit un message, soit une "
             "question",
             st->id);
    } else if (!f[SK_DIRE] && !f[SK_QUESTION]) {
        errn(l, k, "l'état « %s » n'a ni « dire » (un message) ni « question »", st->id);
    }

    if (f[SK_QUESTION] && !f[SK_DIRE]) {
        /* a question */
        (void)compile_text(l, f[SK_QUESTION], "question", &st->text);
        if (!f[SK_TYPE]) {
            errn(l, k,
                 "clé obligatoire « type » manquante dans l'état « %s » (oui_non, choix, "
                 "choix_multiple, nombre, texte, date ou commune)",
                 st->id);
        } else {
            st->type = type_of(f[SK_TYPE]);
            if (st->type == FB__Q_NONE) {
                fb_yaml_shown_t s =
                    is_scalar(f[SK_TYPE]) ? shown_node(f[SK_TYPE]) : fb_yaml_show("?", 1);
                errn(l, f[SK_TYPE],
                     "type de question inconnu « %s » (oui_non, choix, choix_multiple, nombre, "
                     "texte, date ou commune)",
                     s.s);
            }
        }
        if (f[SK_VARIABLE]) {
            const yaml_node_t *var = f[SK_VARIABLE];
            if (!is_text(var) || !valid_name(sval(var), var->data.scalar.length)) {
                errn(l, var,
                     "« variable » doit être un nom en minuscules sans accent, chiffres et _ "
                     "(par exemple « surface_du_site »)");
            }
        }
        if (st->slot >= 0) {
            const char *name = d->slots[st->slot].name;
            const yaml_node_t *at = f[SK_VARIABLE] ? f[SK_VARIABLE] : k;
            for (size_t r = 0; r < FB_ARRAY_SIZE(reserved_words); r++)
                if (strcmp(name, reserved_words[r]) == 0)
                    errn(l, at,
                         "« %s » est un mot réservé des expressions : choisissez un autre nom de "
                         "variable (« variable: ... »)",
                         name);
            if (is_builtin(name))
                errn(l, at,
                     "« %s » est un nom prédéfini des textes : choisissez un autre nom de "
                     "variable (« variable: ... »)",
                     name);
            if (catalogue_index(d, name) >= 0)
                errn(l, at,
                     "« %s » est aussi le nom d'un catalogue : choisissez un autre nom de "
                     "variable (« variable: ... »)",
                     name);
        }
        if (f[SK_LIBELLE]) {
            const char *lb = want_text(l, f[SK_LIBELLE], "libelle");
            if (lb)
                st->label = fb_strdup(lb);
        }
        if (f[SK_AIDE])
            (void)compile_text(l, f[SK_AIDE], "aide", &st->help);
        if (f[SK_NSP])
            (void)want_bool(l, f[SK_NSP], "je_ne_sais_pas", &st->nsp_ok);
        if (f[SK_RELANCES]) {
            size_t n;
            yaml_node_item_t *items = seq_items(f[SK_RELANCES], &n);
            if (is_scalar(f[SK_RELANCES])) {
                st->reprompts = fb_calloc(1, sizeof(*st->reprompts));
                if (compile_text(l, f[SK_RELANCES], "relances", &st->reprompts[0]))
                    st->n_reprompts = 1;
            } else if (f[SK_RELANCES]->type != YAML_SEQUENCE_NODE || n == 0) {
                errn(l, f[SK_RELANCES], "« relances » doit être une liste de messages");
            } else {
                st->reprompts = fb_calloc(n, sizeof(*st->reprompts));
                for (size_t r = 0; r < n; r++) {
                    yaml_node_t *m = node(l, items[r]);
                    if (m && compile_text(l, m, "relances", &st->reprompts[st->n_reprompts]))
                        st->n_reprompts++;
                }
            }
        }
        if (f[SK_ECHECS]) {
            static const char *const keys[] = {"max", "action"};
            yaml_node_t *ev[2];
            if (f[SK_ECHECS]->type != YAML_MAPPING_NODE) {
                errn(l, f[SK_ECHECS],
                     "« echecs » doit être une correspondance, par exemple « {max: 3, action: "
                     "conseiller} »");
            } else {
                map_fields(l, f[SK_ECHECS], keys, 2, ev, NULL, " dans « echecs »");
                if (ev[0])
                    (void)want_uint(l, ev[0], "max", 1, 20, &st->fail_max);
                if (ev[1]) {
                    const char *a = want_text(l, ev[1], "action");
                    if (a && strcmp(a, "conseiller") == 0)
                        st->fail_action = FB__FAIL_CONSEILLER;
                    else if (a && strcmp(a, "aide") != 0)
                        errn(l, ev[1], "« action » doit valoir « aide » ou « conseiller »");
                }
            }
        }
        if (f[SK_SIGNAUX])
            compile_signals(l, st, f[SK_SIGNAUX]);
        if (f[SK_FIN] && st->final) {
            final_question = true;
            errn(l, kn[SK_FIN],
                 "seul un message (« dire ») peut être final : ajoutez un état « dire » avec "
                 "« fin: true » après cette question");
        }
        st->final = false;
        if (st->type == FB__Q_COMMUNE)
            l->has_commune = true;

        /* keys that depend on the type */
        bool choice = st->type == FB__Q_CHOICE || st->type == FB__Q_MULTI;
        if (choice) {
            if (f[SK_CHOIX])
                compile_choices(l, st, f[SK_CHOIX]);
            else
                errn(l, k,
                     "clé obligatoire « choix » manquante dans l'état « %s » (question de "
                     "type %s)",
                     st->id, type_names[st->type]);
        } else if (f[SK_CHOIX] && st->type != FB__Q_NONE) {
            errn(l, kn[SK_CHOIX],
                 "« choix » ne s'applique qu'aux questions de type choix ou choix_multiple");
        }
        if (f[SK_UNITE]) {
            static const char *const units[] = {"aucune", "m2", "ha", "eur", "annees", "mois"};
            static const fb_unit_t uvals[] = {FB_UNIT_NONE, FB_UNIT_M2,    FB_UNIT_HA,
                                              FB_UNIT_EUR,  FB_UNIT_YEARS, FB_UNIT_MONTHS};
            if (st->type != FB__Q_NUMBER && st->type != FB__Q_NONE) {
                errn(l, kn[SK_UNITE], "« unite » ne s'applique qu'aux questions de type nombre");
            } else {
                bool found = false;
                for (size_t u = 0; u < FB_ARRAY_SIZE(units); u++)
                    if (is_text(f[SK_UNITE]) && strcmp(sval(f[SK_UNITE]), units[u]) == 0) {
                        st->unit = uvals[u];
                        found = true;
                    }
                if (!found)
                    errn(l, f[SK_UNITE],
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
                if (want_number(l, f[m], name, &x))
                    *(m == SK_MIN ? &st->min : &st->max) = x;
            } else if (st->type == FB__Q_TEXT) {
                unsigned x;
                if (want_uint(l, f[m], name, m == SK_MIN ? 0 : 1, 10000, &x))
                    *(m == SK_MIN ? &st->tmin : &st->tmax) = x;
            } else if (st->type != FB__Q_NONE) {
                errn(l, kn[m], "« %s » ne s'applique qu'aux questions de type nombre ou texte",
                     name);
            }
        }
        if (st->type == FB__Q_NUMBER && st->min > st->max)
            errn(l, kn[SK_MAX], "« max » est plus petit que « min »");
        if (st->type == FB__Q_TEXT && st->tmin > st->tmax)
            errn(l, kn[SK_MAX], "« max » est plus petit que « min »");
        if (f[SK_FUTUR]) {
            if (st->type == FB__Q_DATE)
                (void)want_bool(l, f[SK_FUTUR], "futur", &st->future);
            else if (st->type != FB__Q_NONE)
                errn(l, kn[SK_FUTUR], "« futur » ne s'applique qu'aux questions de type date");
        }
    } else if (f[SK_DIRE]) {
        /* a message */
        (void)compile_text(l, f[SK_DIRE], "dire", &st->text);
        static const int not_for_messages[] = {
            SK_TYPE,    SK_VARIABLE, SK_LIBELLE, SK_AIDE, SK_NSP, SK_RELANCES, SK_ECHECS,
            SK_SIGNAUX, SK_CHOIX,    SK_UNITE,   SK_MIN,  SK_MAX, SK_FUTUR};
        for (size_t m = 0; m < FB_ARRAY_SIZE(not_for_messages); m++) {
            int key = not_for_messages[m];
            if (kn[key])
                errn(l, kn[key], "« %s » ne s'applique qu'à une question, pas à un message",
                     state_keys[key]);
        }
    }

    st->avis_note = st->avis_comment = -1;
    if (f[SK_AVIS]) {
        if (!f[SK_DIRE] || f[SK_QUESTION])
            errn(l, kn[SK_AVIS], "« avis » ne s'applique qu'à un message (« dire: »)");
        else
            compile_avis(l, st, f[SK_AVIS]);
    }
    if (f[SK_CONDITION])
        st->cond = compile_expr(l, f[SK_CONDITION], "condition", &st->cond_src);
    if (f[SK_SUITE]) {
        if (st->final)
            errn(l, kn[SK_SUITE], "un état final (« fin: true ») n'a pas de « suite »");
        else
            compile_suite(l, st, f[SK_SUITE]);
    }
    if (f[SK_RELANCE]) {
        if (st->type == FB__Q_NONE && !st->final && f[SK_DIRE])
            errn(l, kn[SK_RELANCE],
                 "« relance » ne sert que sur une question ou sur un état final");
        else
            compile_relance(l, st, f[SK_RELANCE], &st->relance);
    }
    if (f[SK_COMMANDES]) {
        st->own_cmds = fb_calloc(1, sizeof(*st->own_cmds));
        cmdset_copy(st->own_cmds, &d->cmds);
        compile_commands(l, st->own_cmds, f[SK_COMMANDES]);
        st->cmds = st->own_cmds;
    }

    /* a way out */
    bool all_choices_go = st->n_choices > 0 && !st->nsp_ok;
    for (size_t c = 0; c < st->n_choices; c++)
        if (st->choices[c].target < 0)
            all_choices_go = false;
    if (!f[SK_SUITE] && !st->final && !final_question && (f[SK_DIRE] || f[SK_QUESTION])) {
        if (!all_choices_go)
            errn(l, k,
                 "l'état « %s » n'a pas de « suite » et n'est pas final : ajoutez « suite: ... » "
                 "ou « fin: true »",
                 st->id);
        else if (st->cond)
            errn(l, k,
                 "l'état « %s » a une « condition » mais pas de « suite » : où aller quand il est "
                 "sauté ?",
                 st->id);
    }
}

/* The slot named by scalar `v` (key `what` of `avis`), checked against the allowed types;
 * -1 after reporting. */
static int avis_slot(struct ld *l, const yaml_node_t *v, const char *what, enum fb__qtype t1,
                     enum fb__qtype t2, const char *types)
{
    const char *name = want_text(l, v, what);
    if (!name)
        return -1;
    int slot = fb__strmap_get(&l->d->slot_map, name);
    if (slot < 0) {
        errn(l, v, "« %s » : « %s » n'est pas une variable (le nom d'une question)", what,
             shown_node(v).s);
        return -1;
    }
    enum fb__qtype t = l->d->slots[slot].type;
    if (t != t1 && t != t2) {
        errn(l, v, "« %s » : la variable « %s » doit être remplie par une question de type %s",
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
        errn(l, v, "« avis » doit être une correspondance {note: variable, commentaire: variable}");
        return;
    }
    map_fields(l, v, keys, 2, f, NULL, " dans « avis »");
    if (!f[0]) {
        errn(l, v, "clé obligatoire « note » manquante dans « avis » (la variable de la note)");
        return;
    }
    st->avis_note = avis_slot(l, f[0], "note", FB__Q_CHOICE, FB__Q_NUMBER, "choix ou nombre");
    if (f[1])
        st->avis_comment = avis_slot(l, f[1], "commentaire", FB__Q_TEXT, FB__Q_TEXT, "texte");
}

static void build_choice_tables(struct fb__state *st)
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

/* ---- catalogues ------------------------------------------------------------------------------ */

/* A catalogue field as a new JSON value: a plain scalar that reads as a number or a boolean
 * becomes one, anything else a string (NULL when the text is not valid UTF-8). */
static json_t *scalar_json(const yaml_node_t *v)
{
    const char *s = sval(v);
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

/* Loads catalogue `c` (declared in the dialog by `name_node`/`path_node`). */
static void load_catalogue(struct ld *l, struct fb__catalogue *c, const yaml_node_t *path_node)
{
    fb_dialog_t *d = l->d;
    int dialog_file = l->file;
    char *full = (c->path[0] == '/' || !l->dir || !l->dir[0])
                     ? fb_strdup(c->path)
                     : fb_asprintf("%s/%s", l->dir, c->path);
    fb_buf_t text;
    fb_buf_init(&text, MAX_FILE_BYTES);
    const char *why = NULL;
    c->broken = true; /* until the document is parsed */
    if (!l->dir && c->path[0] != '/') {
        errn(l, path_node,
             "impossible de lire le catalogue « %s » : le dialogue n'a pas été lu depuis un "
             "dossier",
             fb_yaml_show(c->path, strlen(c->path)).s);
        goto out;
    }
    if (read_file(full, &text, &why) != 0) {
        errn(l, path_node, "impossible de lire le catalogue « %s » : %s",
             fb_yaml_show(c->path, strlen(c->path)).s, why);
        goto out;
    }
    hash_bytes(&l->hash, "\0", 1);
    hash_bytes(&l->hash, c->name, strlen(c->name) + 1);
    hash_bytes(&l->hash, fb_buf_str(&text), text.len);

    l->files = fb_realloc(l->files, (l->n_files + 1) * sizeof(*l->files));
    l->files[l->n_files] = escaped_name(full);
    int file = (int)l->n_files++;

    /* the catalogue's own document */
    yaml_document_t doc;
    yaml_document_t *saved_doc = l->doc;
    const char *saved_text = l->text;
    size_t saved_len = l->len;
    size_t *saved_lines = l->lines, saved_n_lines = l->n_lines;
    l->lines = NULL;
    if (!load_doc(l, file, fb_buf_str(&text), text.len, &doc,
                  "le catalogue est vide : il doit avoir « catalogue: » et « items: »"))
        goto restore;
    c->broken = false;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    static const char *const keys[] = {"catalogue", "titre", "items"};
    yaml_node_t *vals[3];
    if (root->type != YAML_MAPPING_NODE) {
        errn(l, root,
             "un catalogue doit être une correspondance avec « catalogue: » et « items: »");
        goto doc_out;
    }
    map_fields(l, root, keys, 3, vals, NULL, " du catalogue");
    if (!vals[0]) {
        errat(l, 1, 1, "clé obligatoire « catalogue » manquante (le nom du catalogue)");
    } else {
        const char *n = want_text(l, vals[0], "catalogue");
        if (n && strcmp(n, c->name) != 0)
            errn(l, vals[0],
                 "ce catalogue s'appelle « %s » mais le dialogue le déclare sous le nom « %s »",
                 fb_yaml_show(n, strlen(n)).s, c->name);
    }
    if (vals[1])
        (void)want_text(l, vals[1], "titre");
    size_t n = 0;
    yaml_node_item_t *items = seq_items(vals[2], &n);
    if (!vals[2]) {
        errat(l, 1, 1, "clé obligatoire « items » manquante (la liste des éléments)");
        goto doc_out;
    }
    if (vals[2]->type != YAML_SEQUENCE_NODE) {
        errn(l, vals[2], "« items » doit être une liste d'éléments « - id: ... »");
        goto doc_out;
    }
    c->first = d->n_items;
    d->items = fb_realloc(d->items, (d->n_items + n + 1) * sizeof(*d->items));
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *it = node(l, items[i]);
        if (!it || it->type != YAML_MAPPING_NODE) {
            errn(l, it, "un élément doit être une correspondance « id: ... titre: ... », pas %s",
                 it ? kind_of(it) : "vide");
            continue;
        }
        json_t *obj = json_object();
        const yaml_node_t *idn = NULL, *src = NULL, *checked = NULL, *titre = NULL;
        const yaml_node_t *until = NULL;
        fb_expr_t *cond = NULL;
        struct fb__strmap seen = {0};
        bool ok = true;
        for (yaml_node_pair_t *p = it->data.mapping.pairs.start; p < it->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = node(l, p->key), *v = node(l, p->value);
            if (!k || !v)
                continue;
            if (!is_text(k) || !valid_name(sval(k), k->data.scalar.length)) {
                errn(l, k, "nom de champ invalide : minuscules sans accent, chiffres et _");
                ok = false;
                continue;
            }
            if (!fb__strmap_put(&seen, sval(k), 0)) {
                errn(l, k, "champ « %s » en double dans cet élément", sval(k));
                ok = false;
                continue;
            }
            if (key_is(k, "catalogue") || key_is(k, "statut")) {
                errn(l, k, "« %s » est ajouté par le moteur : ce champ ne peut pas être écrit ici",
                     sval(k));
                ok = false;
                continue;
            }
            if (!is_scalar(v)) {
                errn(l, v, "le champ « %s » doit être une valeur simple, pas %s", sval(k),
                     kind_of(v));
                ok = false;
                continue;
            }
            if (key_is(k, "si")) {
                fb_expr_free(cond);
                l->in_item_cond = true;
                cond = compile_expr(l, v, "si", NULL);
                l->in_item_cond = false;
                if (!cond)
                    ok = false;
                continue; /* not a field of the item */
            }
            if (key_is(k, "id"))
                idn = v;
            else if (key_is(k, "source"))
                src = v;
            else if (key_is(k, "verifie_le"))
                checked = v;
            else if (key_is(k, "valable_jusqu_au"))
                until = v;
            else if (key_is(k, "titre"))
                titre = v;
            json_t *jv = scalar_json(v);
            if (!jv || strlen(sval(v)) != v->data.scalar.length) {
                errn(l, v, "le champ « %s » n'est pas un texte valide", sval(k));
                json_decref(jv);
                ok = false;
                continue;
            }
            (void)json_object_set_new(obj, sval(k), jv);
        }
        fb__strmap_free(&seen);
        if (!idn) {
            errn(l, it, "clé obligatoire « id » manquante dans cet élément");
            ok = false;
        } else if (!is_text(idn) || !valid_id(sval(idn), idn->data.scalar.length, false)) {
            errn(l, idn,
                 "« id » doit être un identifiant en minuscules sans accent, chiffres et _");
            ok = false;
            idn = NULL;
        }
        const char *idtxt = idn ? sval(idn) : "?";
        if (!titre) {
            errn(l, it, "clé obligatoire « titre » manquante dans l'élément « %s »", idtxt);
            ok = false;
        } else if (!want_text(l, titre, "titre")) {
            ok = false;
        }
        if (!src) {
            errn(l, it,
                 "clé obligatoire « source » manquante dans l'élément « %s » (d'où vient "
                 "l'information : un lien ou une référence)",
                 idtxt);
            ok = false;
        } else if (!want_text(l, src, "source")) {
            ok = false;
        }
        if (!checked) {
            errn(l, it,
                 "clé obligatoire « verifie_le » manquante dans l'élément « %s » (la date de la "
                 "dernière vérification, AAAA-MM-JJ)",
                 idtxt);
            ok = false;
        } else if (!is_text(checked) || !valid_date(sval(checked), checked->data.scalar.length)) {
            errn(l, checked,
                 "« verifie_le » doit être une date AAAA-MM-JJ, par exemple 2026-10-01");
            ok = false;
        }
        if (until && (!is_text(until) || !valid_date(sval(until), until->data.scalar.length))) {
            errn(l, until,
                 "« valable_jusqu_au » doit être une date AAAA-MM-JJ, par exemple 2027-12-31");
            ok = false;
        } else if (until && checked && is_text(checked) && strcmp(sval(until), sval(checked)) < 0) {
            errn(l, until, "« valable_jusqu_au » est antérieur à « verifie_le »");
            ok = false;
        }
        char *ref = idn ? fb_asprintf("%s.%s", c->name, sval(idn)) : NULL;
        if (ref && fb__strmap_get(&d->item_map, ref) >= 0) {
            errn(l, idn, "l'élément « %s » est défini deux fois dans ce catalogue", sval(idn));
            ok = false;
        }
        if (!ok || !idn) {
            fb_free(ref);
            json_decref(obj);
            fb_expr_free(cond);
            continue;
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
doc_out:
    yaml_document_delete(&doc);
restore:
    FB_FREE(l->lines);
    l->file = dialog_file;
    l->doc = saved_doc;
    l->text = saved_text;
    l->len = saved_len;
    l->lines = saved_lines;
    l->n_lines = saved_n_lines;
out:
    fb_buf_free(&text);
    fb_free(full);
}

/* Reads `catalogues:` (name -> path) and loads each file. */
static void compile_catalogues(struct ld *l, const yaml_node_t *v)
{
    fb_dialog_t *d = l->d;
    if (v->type != YAML_MAPPING_NODE) {
        errn(l, v,
             "« catalogues » doit être une correspondance nom: fichier (par exemple « etapes: "
             "catalogues/etapes.yaml »)");
        return;
    }
    size_t n = (size_t)(v->data.mapping.pairs.top - v->data.mapping.pairs.start);
    d->catalogues = fb_calloc(n ? n : 1, sizeof(*d->catalogues));
    struct fb__strmap names = {0};
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(l, p->key), *val = node(l, p->value);
        if (!k || !val)
            continue;
        if (!is_text(k) || !valid_name(sval(k), k->data.scalar.length)) {
            errn(l, k, "nom de catalogue invalide : minuscules sans accent, chiffres et _");
            continue;
        }
        if (!fb__strmap_put(&names, sval(k), 0)) {
            errn(l, k, "le catalogue « %s » est déclaré deux fois", sval(k));
            continue;
        }
        if (is_builtin(sval(k)) || fb_expr_is_keyword(sval(k), k->data.scalar.length))
            errn(l, k,
                 "« %s » est un nom réservé des textes et des conditions : choisissez un autre "
                 "nom de catalogue",
                 sval(k));
        const char *path = want_text(l, val, "catalogues");
        if (!path)
            continue;
        struct fb__catalogue *c = &d->catalogues[d->n_catalogues++];
        c->name = fb_strdup(sval(k));
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
    const char *ref = want_text(l, v, "ajouter");
    if (!ref)
        return -1;
    int i = fb__strmap_get(&d->item_map, ref);
    if (i >= 0)
        return i;
    const char *dot = strchr(ref, '.');
    fb_yaml_shown_t s = shown_node(v);
    if (!dot) {
        errn(l, v,
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
            errn(l, v, "l'élément « %s » n'existe pas dans le catalogue « %s »",
                 fb_yaml_show(dot + 1, strlen(dot + 1)).s, d->catalogues[c].name);
            return -1;
        }
    errn(l, v, "catalogue inconnu « %s » (déclarez-le sous « catalogues: »)",
         fb_yaml_show(ref, (size_t)(dot - ref)).s);
    return -1;
}

/* Compiles `regles:`: a list of {si, ajouter, statut}. */
static void compile_rules(struct ld *l, const yaml_node_t *v)
{
    fb_dialog_t *d = l->d;
    size_t n;
    yaml_node_item_t *items = seq_items(v, &n);
    if (v->type != YAML_SEQUENCE_NODE) {
        errn(l, v, "« regles » doit être une liste de « - si: ... ajouter: [...] »");
        return;
    }
    d->rules = fb_calloc(n ? n : 1, sizeof(*d->rules));
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *r = node(l, items[i]);
        static const char *const keys[] = {"si", "ajouter", "statut"};
        yaml_node_t *vals[3];
        if (!r || r->type != YAML_MAPPING_NODE) {
            errn(l, r, "une règle doit être « si: ... » et « ajouter: [...] », pas %s",
                 r ? kind_of(r) : "vide");
            continue;
        }
        map_fields(l, r, keys, 3, vals, NULL, " dans une règle");
        struct fb__rule *rule = &d->rules[d->n_rules];
        if (vals[0]) {
            rule->cond = compile_expr(l, vals[0], "si", NULL);
            if (!rule->cond)
                continue;
        }
        if (vals[2]) {
            const char *s = want_text(l, vals[2], "statut");
            int st = s ? fb__status_index(s) : -1;
            if (s && st < 0)
                errn(l, vals[2],
                     "« statut » doit valoir a_faire, en_cours, bloquee, faite, non_pertinente ou "
                     "deja_faite");
            rule->status = st > 0 ? (enum fb__status)st : FB__ST_A_FAIRE;
        }
        if (!vals[1]) {
            errn(l, r, "clé obligatoire « ajouter » manquante dans cette règle");
        } else if (is_scalar(vals[1])) {
            int it = want_item(l, vals[1]);
            if (it >= 0) {
                rule->items = fb_calloc(1, sizeof(int));
                rule->items[rule->n_items++] = it;
            }
        } else {
            size_t m;
            yaml_node_item_t *refs = seq_items(vals[1], &m);
            if (vals[1]->type != YAML_SEQUENCE_NODE || m == 0) {
                errn(l, vals[1], "« ajouter » doit être une liste d'éléments catalogue.element");
            } else {
                rule->items = fb_calloc(m, sizeof(int));
                for (size_t j = 0; j < m; j++) {
                    yaml_node_t *ref = node(l, refs[j]);
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
static void compile_migrations(struct ld *l, const yaml_node_t *v)
{
    fb_dialog_t *d = l->d;
    if (v->type != YAML_MAPPING_NODE) {
        errn(l, v, "« migrations » doit être une correspondance ancien_etat: nouvel_etat");
        return;
    }
    size_t n = (size_t)(v->data.mapping.pairs.top - v->data.mapping.pairs.start);
    d->migrations = fb_calloc(n ? n : 1, sizeof(*d->migrations));
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(l, p->key), *val = node(l, p->value);
        if (!k || !val)
            continue;
        if (!is_text(k) || !valid_name(sval(k), k->data.scalar.length)) {
            errn(l, k, "une migration part d'un nom d'état (minuscules sans accent, chiffres, _)");
            continue;
        }
        if (fb__strmap_get(&d->state_map, sval(k)) >= 0) {
            errn(l, k, "l'état « %s » existe encore : une migration ne concerne qu'un état disparu",
                 sval(k));
            continue;
        }
        int to = want_state(l, val, "migrations");
        if (to < 0)
            continue;
        struct fb__migration *m = &d->migrations[d->n_migrations];
        m->from = fb_strdup(sval(k));
        m->to = to;
        if (!fb__strmap_put(&d->migration_map, m->from, to)) {
            errn(l, k, "migration en double pour « %s »", sval(k));
            fb_free(m->from);
            continue;
        }
        d->n_migrations++;
    }
}

/* ---- graph checks ---------------------------------------------------------------------------- */

/* Marks in l->reached every state reachable from `s` by `suite`, branches and `aller`. */
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
        for (size_t i = 0; i < st->n_next + st->n_choices; i++) {
            int t = i < st->n_next ? st->next[i].target : st->choices[i - st->n_next].target;
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
    TK_COUNT
};
static const char *const top_keys[TK_COUNT] = {"dialogue", "titre",     "debut",     "catalogues",
                                               "relance",  "textes",    "commandes", "etats",
                                               "regles",   "migrations"};

static void dialog_free(fb_dialog_t *d);

/* Compiles the built-in texts (defaults, then `textes:` overrides). */
static void compile_texts(struct ld *l, const yaml_node_t *v)
{
    fb_dialog_t *d = l->d;
    if (v) {
        if (v->type != YAML_MAPPING_NODE) {
            errn(l, v, "« textes » doit être une correspondance nom: texte");
        } else {
            yaml_node_t *vals[FB__T_COUNT], *kn[FB__T_COUNT];
            map_fields(l, v, fb__text_names, FB__T_COUNT, vals, kn, " dans « textes »");
            for (int i = 0; i < FB__T_COUNT; i++)
                if (vals[i])
                    (void)compile_text(l, vals[i], fb__text_names[i], &d->texts[i]);
        }
    }
    for (int i = 0; i < FB__T_COUNT; i++) {
        if (d->texts[i].t)
            continue;
        fb_buf_t tmp;
        fb_buf_init(&tmp, 4096);
        d->texts[i].t = fb_template_parse(fb__text_defaults[i], 1, 1, &tmp);
        if (!d->texts[i].t)
            errat(l, 1, 1, "texte par défaut « %s » refusé par le moteur de textes : %s",
                  fb__text_names[i], fb_buf_str(&tmp));
        else
            prerender(&d->texts[i]);
        fb_buf_free(&tmp);
    }
}

/*
 * Loads a dialog from `text`. `name` names the file in messages; catalogues are read relative
 * to `dir`. Returns the dialog, or NULL with every error appended to `errors`.
 */
static fb_dialog_t *load(const char *name, const char *dir, const char *text, size_t len,
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
    fb_diag_init(&l->diag, MAX_ERRORS, &ld_words);
    l->files = fb_calloc(1, sizeof(*l->files));
    l->files[0] = escaped_name(d->path);
    l->n_files = 1;
    l->hash = 1469598103934665603ull;
    if (!text)
        len = 0;
    hash_bytes(&l->hash, text ? text : "", len);

    for (int i = 0; i < FB__CMD_COUNT; i++)
        for (size_t w = 0; cmd_default_words[i][w]; w++)
            cmd_add_word(&d->cmds, i, cmd_default_words[i][w]);

    if (!load_doc(l, 0, text ? text : "", len, &doc,
                  "le dialogue est vide : il doit avoir au moins « dialogue: », « debut: » et "
                  "« etats: »"))
        goto done;
    have_doc = true;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root->type != YAML_MAPPING_NODE) {
        errn(l, root,
             "un dialogue doit être une correspondance (dialogue: ..., debut: ..., etats: ...), "
             "pas %s",
             kind_of(root));
        goto done;
    }
    yaml_node_t *f[TK_COUNT], *kn[TK_COUNT];
    map_fields(l, root, top_keys, TK_COUNT, f, kn, "");

    if (!f[TK_DIALOGUE]) {
        errat(l, 1, 1, "clé obligatoire « dialogue » manquante (l'identifiant du dialogue)");
    } else if (!is_text(f[TK_DIALOGUE]) ||
               !valid_id(sval(f[TK_DIALOGUE]), f[TK_DIALOGUE]->data.scalar.length, true)) {
        errn(l, f[TK_DIALOGUE],
             "« dialogue » doit être un identifiant en minuscules sans accent, chiffres, _ et - "
             "(par exemple « friche »)");
    } else {
        d->id = fb_strdup(sval(f[TK_DIALOGUE]));
    }
    if (f[TK_TITRE]) {
        const char *t = want_text(l, f[TK_TITRE], "titre");
        if (t)
            d->title = fb_strdup(t);
    }
    if (f[TK_COMMANDES])
        compile_commands(l, &d->cmds, f[TK_COMMANDES]);
    if (!f[TK_ETATS]) {
        errat(l, 1, 1, "clé obligatoire « etats » manquante (les états du dialogue)");
    } else if (f[TK_ETATS]->type != YAML_MAPPING_NODE) {
        errn(l, f[TK_ETATS],
             "« etats » doit être une correspondance nom_de_l_etat: {dire: ...} ou {question: "
             "...}, pas %s",
             kind_of(f[TK_ETATS]));
    } else {
        declare(l, f[TK_ETATS]);
    }
    /* after the slots and tags are declared: catalogue items' `si:` conditions name them */
    if (f[TK_CATALOGUES])
        compile_catalogues(l, f[TK_CATALOGUES]);
    if (f[TK_RELANCE])
        compile_relance(l, NULL, f[TK_RELANCE], &d->relance);
    compile_texts(l, f[TK_TEXTES]);
    for (size_t i = 0; i < d->n_states; i++)
        compile_state(l, i);
    if (!f[TK_DEBUT])
        errat(l, 1, 1, "clé obligatoire « debut » manquante (le nom du premier état)");
    else if (f[TK_ETATS] && f[TK_ETATS]->type == YAML_MAPPING_NODE)
        d->start = want_state(l, f[TK_DEBUT], "debut");
    if (f[TK_REGLES])
        compile_rules(l, f[TK_REGLES]);
    if (f[TK_MIGRATIONS])
        compile_migrations(l, f[TK_MIGRATIONS]);
    check_compared_strings(l);
    if (l->has_commune && !geo)
        errn(l, f[TK_ETATS],
             "ce dialogue pose une question de type commune mais l'index des communes n'est pas "
             "chargé");

    /* unreachable states (only meaningful when the start is known) */
    if (d->start >= 0) {
        l->reached = fb_calloc(d->n_states + 1, 1);
        reach(l, d->start);
        for (size_t i = 0; i < d->n_states; i++)
            if (!l->reached[i])
                errat(l, d->states[i].line, d->states[i].col,
                      "l'état « %s » n'est jamais atteint depuis « debut » (aucune « suite », "
                      "« aller » ou branche n'y mène)",
                      d->states[i].id);
    }
    if (d->n_states == 0 && f[TK_ETATS] && f[TK_ETATS]->type == YAML_MAPPING_NODE)
        errn(l, f[TK_ETATS], "« etats » est vide");

    for (size_t i = 0; i < d->n_states; i++)
        build_choice_tables(&d->states[i]);

done:
    if (have_doc)
        yaml_document_delete(&doc);
    snprintf(d->hash, sizeof(d->hash), "%016llx", (unsigned long long)l->hash);
    bool failed = fb_diag_failed(&l->diag);
    if (failed)
        flush_errors(l, errors);
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
    if (failed) {
        dialog_free(d);
        return NULL;
    }
    d->state_json = fb_calloc(d->n_states + 1, sizeof(json_t *));
    for (size_t i = 0; i < d->n_states; i++)
        d->state_json[i] = json_string(d->states[i].id);
    d->tag_json = fb_calloc(d->n_tags + 1, sizeof(json_t *));
    for (size_t i = 0; i < d->n_tags; i++)
        d->tag_json[i] = json_string(d->tags[i]);
    d->id_json = json_string(d->id);
    d->hash_json = json_string(d->hash);
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
    return d;
}

/* ---- public API ------------------------------------------------------------------------------ */

fb_dialog_t *fb_dialog_load_text(const char *name, const char *dir, const char *text, size_t len,
                                 const fb_geo_t *geo, fb_buf_t *errors)
{
    return load(name, dir, text, len, geo, errors);
}

fb_dialog_t *fb_dialog_load(const char *path, const fb_geo_t *geo, fb_buf_t *errors)
{
    fb_buf_t text;
    fb_buf_init(&text, MAX_FILE_BYTES);
    const char *why = NULL;
    fb_dialog_t *d = NULL;
    if (read_file(path, &text, &why) != 0) {
        if (errors)
            (void)fb_buf_printf(errors, "%s:1:1: impossible de lire le dialogue : %s\n", path, why);
        goto out;
    }
    char *dir = fb_strdup(path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = '\0';
    d = load(path, slash ? dir : "", fb_buf_str(&text), text.len, geo, errors);
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
    text_free(&st->text);
    fb_free(st->label);
    text_free(&st->help);
    for (size_t i = 0; i < st->n_reprompts; i++)
        text_free(&st->reprompts[i]);
    fb_free(st->reprompts);
    fb_expr_free(st->cond);
    fb_free(st->cond_src);
    for (size_t i = 0; i < st->n_signals; i++)
        fb_expr_free(st->signals[i].cond);
    fb_free(st->signals);
    for (size_t i = 0; i < st->n_choices; i++) {
        fb_free(st->choices[i].id);
        fb_free(st->choices[i].label);
        strings_free(st->choices[i].synonyms);
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
    for (size_t i = 0; i < st->n_next; i++) {
        fb_expr_free(st->next[i].cond);
        fb_free(st->next[i].cond_src);
    }
    fb_free(st->next);
    text_free(&st->relance.msg);
    if (st->own_cmds) {
        cmdset_free(st->own_cmds);
        fb_free(st->own_cmds);
    }
}

/* Frees a dialog whatever its reference count (the last unref, or a failed load). */
static void dialog_free(fb_dialog_t *d)
{
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
    text_free(&d->relance.msg);
    for (int i = 0; i < FB__T_COUNT; i++)
        text_free(&d->texts[i]);
    cmdset_free(&d->cmds);
    for (size_t i = 0; d->state_json && i < d->n_states; i++)
        json_decref(d->state_json[i]);
    fb_free(d->state_json);
    for (size_t i = 0; d->tag_json && i < d->n_tags; i++)
        json_decref(d->tag_json[i]);
    fb_free(d->tag_json);
    json_decref(d->id_json);
    json_decref(d->hash_json);
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
        dialog_free(d);
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
        if (st->type != FB__Q_NONE && (fb_buf_puts(out, "\\n(") ||
                                       dot_str(out, type_names[st->type]) || fb_buf_puts(out, ")")))
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
    }
    return fb_buf_puts(out, "}\n");
}
