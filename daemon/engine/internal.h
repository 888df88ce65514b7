/* SPDX-License-Identifier: MIT */
/*
 * engine/internal.h - the compiled dialog model and the in-memory session, shared by the three
 * parts of the dialog engine core: dialog*.c (loads and validates YAML into this model),
 * session.c (session JSON <-> struct fb__sess) and machine*.c (fb_engine_step). Nothing outside
 * daemon/engine/ includes this header: the public contract is engine.h.
 *
 * A loaded dialog is immutable. Everything a step needs is precompiled at load time: states and
 * slots are indexed, state targets are resolved to indices, expressions and templates are parsed,
 * command words and choice lists are folded and pre-rendered, catalogue items are JSON objects.
 */
#ifndef FB_ENGINE_INTERNAL_H
#define FB_ENGINE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "engine/answers.h"
#include "engine/effects.h"
#include "engine/engine.h"
#include "engine/expr.h"
#include "engine/template.h"
#include "frichebot/buf.h"

/* ---- small string -> index map (open addressing, built once at load) ---- */

struct fb__strmap {
    const char **keys; /* borrowed from the model; NULL for an empty slot */
    int *vals;
    uint32_t *hashes; /* per slot: the key's hash (its low 32 bits), compared before the bytes */
    uint32_t *lens;   /* per slot: the key's length */
    size_t cap;       /* power of two, or 0 */
    size_t n;
};

/** Adds `key` -> `val` (key borrowed, must outlive the map). Returns false if already present. */
bool fb__strmap_put(struct fb__strmap *m, const char *key, int val);
/** The value of `key` (`len` bytes), or -1. */
int fb__strmap_getn(const struct fb__strmap *m, const char *key, size_t len);
/** The value of the NUL-terminated `key`, or -1. */
int fb__strmap_get(const struct fb__strmap *m, const char *key);
void fb__strmap_free(struct fb__strmap *m);

/* ---- small pointer -> index map (open addressing, built once at load) ---- */

/* The dialog's shared JSON strings a session holds once read with them (fb_engine_session_loadb(),
 * or a session the engine wrote): their index found by the pointer, without reading the bytes. */
struct fb__ptrmap {
    const void **keys; /* borrowed; NULL for an empty slot */
    int *vals;
    size_t cap; /* power of two, or 0 */
    size_t n;
};

/** Adds `key` -> `val` (`key` not NULL, not present yet; borrowed, must outlive the map). */
void fb__ptrmap_put(struct fb__ptrmap *m, const void *key, int val);
/** The value of `key`, or -1. */
int fb__ptrmap_get(const struct fb__ptrmap *m, const void *key);
void fb__ptrmap_free(struct fb__ptrmap *m);

/* ---- the model ---- */

/** The session format (member `v`, docs/internals/ENGINE.md). */
#define FB__SESSION_FORMAT 1
/** The id of the one reminder the engine schedules. */
#define FB__TIMER_ID "relance"
/** The reasons of a `schedule` effect, in the order of fb_dialog_s.reason_json. */
enum fb__reason {
    FB__REASON_INACTIVITE = 0, /* "inactivite": the user has not answered yet */
    FB__REASON_SUIVI,          /* "suivi": after the end, about the roadmap */
    FB__REASON_COUNT,
};

/** Question types; FB__Q_NONE marks a message state. */
enum fb__qtype {
    FB__Q_NONE = 0,
    FB__Q_YESNO,
    FB__Q_CHOICE,
    FB__Q_MULTI,
    FB__Q_NUMBER,
    FB__Q_TEXT,
    FB__Q_DATE,
    FB__Q_COMMUNE,
};

/** The global commands, in the order of docs/internals/ENGINE.md. */
enum fb__cmd {
    FB__CMD_AIDE = 0,
    FB__CMD_RETOUR,
    FB__CMD_RECOMMENCER,
    FB__CMD_CONSEILLER,
    FB__CMD_OU_EN_SUIS_JE,
    FB__CMD_MES_DONNEES,
    FB__CMD_OUBLIER,
    FB__CMD_STOP,
    FB__CMD_ETAPES,
    FB__CMD_COUNT,
    FB__CMD_NONE = -1,
};

/** Built-in texts (overridable under `textes:`), in the order of fb__text_names. */
enum fb__textid {
    FB__T_INCOMPRIS = 0,
    FB__T_NSP_REFUSE,
    FB__T_HORS_LIMITES,
    FB__T_AMBIGU,
    FB__T_RETOUR_IMPOSSIBLE,
    FB__T_OUBLI_FAIT,
    FB__T_RELANCES_ARRETEES,
    FB__T_ESCALADE,
    FB__T_AIDE_GENERALE,
    FB__T_FIN_ATTEINTE,
    FB__T_REPRISE,
    FB__T_COMMUNE_INCONNUE,
    FB__T_COMMUNE_CHOIX,
    FB__T_RESUME,
    FB__T_MES_DONNEES,
    FB__T_VERSION_CHANGEE,
    FB__T_RELANCE,
    FB__T_RELANCE_ETAPE,
    FB__T_ETAPE_NOTEE,
    FB__T_ETAPE_PLUS_TARD,
    FB__T_ETAPE_PLUS_TARD_DELAI,
    FB__T_ETAPES,
    FB__T_ETAPES_AIDE,
    FB__T_ETAPE_STATUT,
    FB__T_ETAPE_CHANGEE,
    FB__T_ETAPES_PAS_ENCORE,
    FB__T_ETAPE_INCONNUE,
    FB__T_NOTE,
    FB__T_CONFIRMER,
    FB__T_AUTRE_CHOSE,
    FB__T_COMMUNE_CONFIRMER,
    FB__T_COMMUNE_AUTRE,
    FB__T_COMMUNE_AUTRE_LIBELLE,
    FB__T_COMMUNE_ZONE,
    FB__T_COMMUNE_ZONE_LIBELLE,
    FB__T_COMMUNE_HORS_LISTE,
    FB__T_COMMUNE_CODE_POSTAL,
    FB__T_COMMUNE_TROP,
    FB__T_COMMUNE_INSEE_LIBELLE,
    FB__T_SANS_CONSEILLER,
    FB__T_ATTENTE_CONSEILLER,
    FB__T_AIDE_ECHECS,
    FB__T_QUESTION_INCONNUE,
    FB__T_QUESTION_SOURCE,
    FB__T_QUESTION_AVIS,
    FB__T_AVIS_UTILE,
    FB__T_AVIS_PAS_UTILE,
    FB__T_QUESTION_PRECISER,
    FB__T_PAGE_FEUILLE_DE_ROUTE,
    FB__T_COUNT,
};

/** Names of the built-in texts as written under `textes:`, and their French defaults. */
extern const char *const fb__text_names[FB__T_COUNT];
extern const char *const fb__text_defaults[FB__T_COUNT];

/** Roadmap step statuses (the `step` effect's values), a_faire first (the default). */
enum fb__status {
    FB__ST_A_FAIRE = 0,
    FB__ST_EN_COURS,
    FB__ST_BLOQUEE,
    FB__ST_FAITE,
    FB__ST_NON_PERTINENTE,
    FB__ST_DEJA_FAITE,
    FB__ST_COUNT,
};
extern const char *const fb__status_names[FB__ST_COUNT];
/** How statuses read in messages ("à faire", "déjà faite"...). */
extern const char *const fb__status_labels[FB__ST_COUNT];

/** What happens after `echecs.max` failed answers. */
enum fb__fail_action {
    FB__FAIL_AIDE = 0,
    FB__FAIL_CONSEILLER,
};

/** A template, pre-rendered when it uses no name (most texts), so asking costs no rendering. */
struct fb__text {
    fb_template_t *t; /* NULL when absent */
    json_t *plain;    /* pre-rendered plain text (a JSON string) when static, else NULL */
    json_t *html;     /* idem, HTML */
    json_t *say;      /* when static: its `say` effect without choices, built once at load and
                         shared by the steps that say it (read-only), else NULL */
};

/** The words of each global command (folded) and whether it is disabled. */
struct fb__cmdset {
    char **words[FB__CMD_COUNT]; /* folded, owned */
    size_t n[FB__CMD_COUNT];
    bool disabled[FB__CMD_COUNT];
};

/** A reminder setting (`relance:` at the top level or in a state). */
struct fb__relance {
    bool set;            /* the key was given */
    long long after;     /* seconds */
    unsigned max;        /* reminders without an answer before going quiet */
    bool step;           /* `etape: premiere`: ask about the first open roadmap step */
    struct fb__text msg; /* `message:`; absent -> built-in relance / relance_etape */
    /* The `schedule` effect of this setting's delay, for each reason, built once at load and
     * shared by the steps that arm it (effects are read-only values); NULL when not `set`. */
    json_t *schedule[FB__REASON_COUNT];
};

struct fb__signal {
    fb_expr_t *cond;
    int tag; /* index in fb_dialog_s.tags */
};

struct fb__branch {
    fb_expr_t *cond; /* NULL: always */
    char *cond_src;  /* for DOT labels */
    int target;      /* state index */
};

struct fb__choice {
    char *id;
    char *label;     /* plain text */
    char **synonyms; /* NULL-terminated, folded by the matcher */
    int *tags;       /* tag indices */
    size_t n_tags;
    int target; /* `aller:` state index, or -1 */
};

struct fb__state {
    char *id;
    int line, col;        /* of the state's key */
    enum fb__qtype type;  /* FB__Q_NONE for a message */
    struct fb__text text; /* `dire` or `question` */
    int slot;             /* index in fb_dialog_s.slots, -1 for messages */
    char *label;          /* `libelle`, or NULL (the slot name is used) */
    struct fb__text help; /* `aide` */
    bool nsp_ok;          /* `je_ne_sais_pas` */
    struct fb__text *reprompts;
    size_t n_reprompts;
    unsigned fail_max;
    enum fb__fail_action fail_action;
    fb_expr_t *cond; /* precondition, or NULL */
    char *cond_src;
    struct fb__signal *signals;
    size_t n_signals;
    struct fb__choice *choices; /* choix / choix_multiple */
    size_t n_choices;
    fb_choice_t *achoices; /* the same for answers.c, plus "je ne sais pas" when nsp_ok */
    size_t n_achoices;
    fb_choice_set_t *aset; /* achoices compiled once at load (answers.h), NULL when none */
    json_t *choices_json;  /* [{"id","label"}] for `say` effects, or NULL */
    char *list_plain;      /* "1. A\n2. B" (numbered list of the options), or NULL */
    char *list_html;       /* the same in HTML */
    json_t *ask_plain;     /* question + list, pre-rendered when the question text is static */
    json_t *ask_html;
    json_t *ask_effect; /* the `say` effect of ask_plain, ask_html and choices_json, built once
                         * at load and shared by the steps that ask (read-only), or NULL */
    fb_unit_t unit;
    double min, max;   /* nombre */
    size_t tmin, tmax; /* texte, in characters */
    bool future;       /* date */
    struct fb__branch *next;
    size_t n_next;
    bool final;
    struct fb__relance relance;
    int avis_note;    /* `avis:` (messages): slot of the rating, or -1 */
    int avis_comment; /* slot of the optional comment, or -1 */
    int after_end;    /* `apres_fin:` (final states): the state entered once after the end, when the
                       * user has had time to read (their next message, or the first reminder that
                       * asks nothing else), or -1 */
    const struct fb__cmdset *cmds; /* the state's own set, or the dialog's */
    struct fb__cmdset *own_cmds;   /* owned when the state has `commandes:` */
};

/** A slot (a question's `variable`): several questions may share one if their types agree. */
struct fb__slot {
    char *name;
    enum fb__qtype type;
    int state; /* the first question state that fills it */
};

struct fb__item {
    char *ref;         /* "catalogue.id" */
    char *id;          /* borrowed from ref */
    json_t *obj;       /* the item's fields plus id and catalogue (never modified after load) */
    fb_expr_t *cond;   /* `si:`: the item applies only when this holds; NULL: always */
    bool cond_answers; /* `cond` reads answers only (no tag, no built-in name): its value holds
                          until the answers change (machine.c caches it per step) */
};

struct fb__rule {
    fb_expr_t *cond; /* NULL: always */
    int *items;      /* indices in fb_dialog_s.items */
    size_t n_items;
    enum fb__status status;
};

struct fb__catalogue {
    char *name;
    char *path;          /* as written in the dialog file */
    size_t first, count; /* its items in fb_dialog_s.items */
    bool broken;         /* could not be read or parsed: references to it are not reported */
};

struct fb__migration {
    char *from;
    int to;
};

/* A knowledge-base answer (`connaissances:` files, docs/internals/KB.md). */
struct fb__kbvariant {
    fb_expr_t *cond; /* `si` */
    struct fb__text text;
};

struct fb__kbanswer {
    char *id;
    struct fb__text text; /* `reponse` */
    struct fb__kbvariant *variants;
    size_t n_variants;
    char *lien, *source;
    char *sujet;      /* what the answer is about, offered when the bot is unsure (NULL: none,
                       * its first question is offered) */
    char **questions; /* the author's questions (for `frichebot check`'s warnings) */
    size_t n_questions;
    int file; /* index in fb_dialog_s.kb_files */
    int line, col;
};

struct fb_dialog_s {
    int refs;
    char *id;
    char *title;
    char *path; /* file name used in messages */
    char hash[17];
    const fb_geo_t *geo; /* borrowed, may be NULL */

    struct fb__state *states;
    size_t n_states;
    struct fb__strmap state_map;
    int start;

    struct fb__slot *slots;
    size_t n_slots;
    struct fb__strmap slot_map;

    char **tags;
    size_t n_tags;
    struct fb__strmap tag_map;

    struct fb__catalogue *catalogues;
    size_t n_catalogues;
    struct fb__item *items;
    size_t n_items;
    struct fb__strmap item_map; /* ref -> index */

    struct fb__rule *rules;
    size_t n_rules;

    struct fb__migration *migrations;
    size_t n_migrations;
    struct fb__strmap migration_map; /* from -> target state */

    struct fb__relance relance; /* top-level defaults */
    struct fb__text texts[FB__T_COUNT];
    struct fb__cmdset cmds;

    json_t **state_json;    /* each state's id as a JSON string, shared by the sessions written */
    json_t **tag_json;      /* each tag as a JSON string, idem */
    json_t **item_ref_json; /* each catalogue item's ref ("etapes.x") as a JSON string, idem */
    json_t **item_id_json;  /* each item's id, idem (roadmap entries) */
    json_t *status_name_json[FB__ST_COUNT];  /* fb__status_names as JSON strings, idem */
    json_t *status_label_json[FB__ST_COUNT]; /* fb__status_labels, idem */
    struct fb__strmap intern_map; /* every string below (and option ids) -> its intern_json */
    json_t **intern_json;         /* owned references: what fb_engine_session_loadb() shares */
    size_t n_intern;
    size_t intern_max_len; /* the longest of them, in bytes: longer strings are not looked up */
    /* state_json, tag_json and item_ref_json by pointer: FB__PTR_STATE + 4 * index, etc. */
    struct fb__ptrmap ptr_map;
    json_t *id_json;   /* the dialog id, idem */
    json_t *hash_json; /* the hash, idem */
    /* The constant strings and numbers of the values a step writes, shared by every session and
     * effect (read-only, as the others): no allocation for them per step. */
    json_t *format_json;                   /* FB__SESSION_FORMAT (session `v`) */
    json_t *effect_json[FB_EFFECT_COUNT];  /* each effect's `type` (fb_effect_name()) */
    json_t *timer_json;                    /* FB__TIMER_ID (`schedule` and `cancel` ids) */
    json_t *reason_json[FB__REASON_COUNT]; /* a `schedule`'s `reason` */
    json_t **step_effects; /* n_items * FB__ST_COUNT: the `step` effect of item i with status s
                            * at [i * FB__ST_COUNT + s] for the items the rules name (the only
                            * ones a roadmap holds), else NULL; shared (read-only) */
    json_t *yesno_json;    /* [{oui},{non}] */
    json_t *status_json;   /* the reminder's choices about a step */
    fb_choice_t *status_choices;
    size_t n_status_choices;
    fb_choice_set_t *status_set; /* status_choices compiled once at load */
    json_t *all_status_json;     /* the six statuses, offered for a step the user picked */
    fb_choice_t *all_status_choices;
    size_t n_all_status_choices;
    fb_choice_set_t *all_status_set;

    /* the knowledge base (empty without `connaissances:`) */
    struct fb__kbanswer *kb_answers;
    size_t n_kb;
    char **kb_files; /* the files' names as in messages */
    size_t n_kb_files;
    struct fb_kb_s *kb; /* the retrieval index (engine/kb.h), NULL when empty */
};

/* What a pointer of fb_dialog_s.ptr_map is: the low two bits of its value, the index above them. */
enum fb__ptr_kind {
    FB__PTR_STATE = 1, /* state_json[index] */
    FB__PTR_TAG,       /* tag_json[index] */
    FB__PTR_ITEM,      /* item_ref_json[index] */
};

/* ---- the session in memory (session.c) ---- */

/* Commune candidates kept for a pick: a postal code's communes (lists of more than
 * FB__COMMUNE_LIST_MAX are not listed, the user is asked for the name), the commune with that
 * INSEE code and those that absorbed it. */
#define FB__MAX_CANDIDATES   16
#define FB__COMMUNE_LIST_MAX 12
#define FB__MAX_PATH         64
/* knowledge-base answers offered at most when the bot is unsure (FB_KB_MAX_PROPOSALS) */
#define FB__KB_OFFERS 3
/* The user's last free-text messages kept for the advisors' summary (session `l`): how many, and
 * the most bytes each may take once cut (the « … » that marks a cut included). */
#define FB__MAX_LAST_MESSAGES      3
#define FB__MAX_LAST_MESSAGE_BYTES 300

struct fb__sess {
    const fb_dialog_t *d; /* the version the session runs on */
    int state;
    json_t *answers;        /* a reference: shared with the input session until written */
    bool answers_shared;    /* call fb__session_own_answers() before modifying `answers` */
    unsigned char *tags;    /* one byte per dialog tag */
    int path[FB__MAX_PATH]; /* answered question states, most recent first */
    size_t n_path;
    unsigned fails;
    bool escalated, ended, muted;
    int *road; /* roadmap item indices, ascending (only once ended) */
    unsigned char *status;
    int32_t *day; /* per road entry: day (since 1970-01-01) of the user's last change, 0: none */
    size_t n_road;
    char cand[FB__MAX_CANDIDATES][8]; /* commune candidates awaiting a pick: INSEE codes, or
                                       * "d23" / "r53" for a département or région */
    size_t n_cand;
    char qual[8]; /* what narrows the next commune search: "d23" (département), "r53" (région),
                   * "p12300" (postal code), or "" */
    int pending_step;  /* index in road of the step a reminder asked about, or -1 */
    bool pending_pick; /* pending_step was picked by the user (all six statuses offered) */
    bool avis_given;   /* an `avis` effect was emitted (at most one per conversation) */
    int back_to;       /* while the question after the end (`apres_fin`) is asked: the final
                        * state to return to (session `z`), else -1; `state` is that question */
    bool after_asked;  /* the final state's `apres_fin` was entered (session `b`): never twice */
    bool kb_asked;     /* the bot's last message was a knowledge-base answer: "utile" / "pas
                        * utile" is feedback (session `w`, docs/internals/KB.md) */
    /* knowledge-base answers (indices in fb_dialog_s.kb_answers) the bot's last message asked the
     * user to choose from, being unsure which one a question meant (session `i`: their ids) */
    int kb_offer[FB__KB_OFFERS];
    size_t n_kb_offer;
    unsigned reminders;
    json_t *last_messages; /* the user's last texts, oldest first, each at most
                            * FB__MAX_LAST_MESSAGE_BYTES; a reference, possibly shared with the
                            * input session (read-only: fb__session_remember() replaces it) */
    bool moved;            /* the session was moved to `debut` by a version change during parsing */
    /* readings of the current choice question awaiting confirmation (« Vous voulez dire : »):
     * for a choix, bit i is option i; for a choix_multiple, each is a set of options */
    uint64_t confirm[FB_MATCH_MAX_CANDIDATES];
    size_t n_confirm;
    /* The input session's members `t`, `p`, `r`, `u` and `j` (borrowed from it, NULL when absent
     * or for a new session): fb__session_dump() shares each one whose content is what it would
     * write, instead of building it again (most steps change none of them). */
    const json_t *in_tags, *in_path, *in_road, *in_status, *in_days;
};

/**
 * Parses `session` (borrowed, a JSON object) for dialog `d`, choosing the version by hash among
 * `d` and `env->versions` and migrating when none matches. Returns 0 and fills `*s`, or
 * FB_EINVAL when the JSON is not a session of this dialog (then `*s` holds nothing to free).
 */
int fb__session_parse(const fb_dialog_t *d, const fb_engine_env_t *env, const json_t *session,
                      struct fb__sess *s);

/** Initializes a new session on `d` at `debut`. */
void fb__session_init(const fb_dialog_t *d, struct fb__sess *s);

/** Returns the session as a new JSON object (the compact form of ENGINE.md). */
json_t *fb__session_dump(const struct fb__sess *s);

/**
 * Makes s->answers a private object (a shallow copy of the input session's, whose values stay
 * shared) so that it can be modified. Call before every change to the answers.
 */
void fb__session_own_answers(struct fb__sess *s);

/**
 * Records `text`, a message the user wrote, as the newest of the session's last messages (at
 * most FB__MAX_LAST_MESSAGES, the oldest dropped): runs of white space and control characters
 * become one space, invalid UTF-8 bytes become '?', and a text longer than
 * FB__MAX_LAST_MESSAGE_BYTES is cut on a character boundary and ends with "…". A text with
 * nothing left once cleaned is not recorded.
 */
void fb__session_remember(struct fb__sess *s, const char *text);

/** Frees what `s` owns; `s` may be reused with fb__session_init(). */
void fb__session_free(struct fb__sess *s);

/** The stored form of a commune answer: {"insee","nom"} (new object). */
json_t *fb__commune_compact(const char *insee, const char *name);

/**
 * The full commune object of a stored answer (new reference): the geo index's object when the
 * code is known, else `v` itself. NULL when `v` is not a commune object.
 */
json_t *fb__commune_expand(const fb_geo_t *geo, const json_t *v);

/** The last day number a session may hold (9999-12-31): later days are not recorded. */
#define FB__MAX_DAY 2932896

/** The day number (days since 1970-01-01, UTC) of Unix time `t`. */
int32_t fb__day_of(int64_t t);

/** The civil date of day number `day`. */
void fb__day_ymd(int32_t day, int *y, int *m, int *dd);

/** Index of the status named `name`, or -1. */
int fb__status_index(const char *name);

/* ---- dialog helpers (dialog.c) ---- */

/** Renders `t` (or its pre-rendered form) into `plain`/`html`. Returns 0 or FB_ETOOBIG. */
int fb__text_render(const struct fb__text *t, const fb_expr_env_t *env, fb_buf_t *plain,
                    fb_buf_t *html);

/** True when the text is static (pre-rendered). */
static inline bool fb__text_static(const struct fb__text *t)
{
    return t->plain != NULL;
}

#endif /* FB_ENGINE_INTERNAL_H */
