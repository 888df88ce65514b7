/* SPDX-License-Identifier: MIT */
/*
 * engine.h - the dialog engine: a PURE function from (dialog, session, event, now, locale) to
 * (new session, effects). No I/O, no clock, no randomness: everything comes in as arguments.
 *
 * Dialogs are loaded from YAML (dialog file + catalogues) by fb_dialog_load(), validated completely
 * (errors "FILE:LINE:COL: message", all at once), and are immutable and refcounted afterwards:
 * live sessions pinned to an older version keep it alive. The file format is described in
 * docs/internals/ENGINE.md (for developers) and docs/dialogs.md (for authors, in French).
 *
 * Sessions and effects are jansson values, so the router can persist them atomically as JSON and
 * transcripts can compare them. Ownership follows jansson's vocabulary: "new" (caller must
 * json_decref), "borrowed".
 */
#ifndef FB_ENGINE_H
#define FB_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "frichebot/buf.h"

typedef struct fb_dialog_s fb_dialog_t;
typedef struct fb_geo_s fb_geo_t;

/* ---- dialogs ---- */

/**
 * Loads and validates the dialog file at `path` and every catalogue it names (paths relative to
 * the dialog file). Returns a new dialog (refcount 1), or NULL after appending one line per error,
 * "FILE:LINE:COL: message\n", to `errors` (every error, not only the first). `geo` (borrowed, may
 * be NULL) is only kept for `commune` questions; a dialog with such questions and no index fails.
 */
fb_dialog_t *fb_dialog_load(const char *path, const fb_geo_t *geo, fb_buf_t *errors);

/** Same from memory; `name` is used in error positions and relative catalogue paths from `dir`. */
fb_dialog_t *fb_dialog_load_text(const char *name, const char *dir, const char *text, size_t len,
                                 const fb_geo_t *geo, fb_buf_t *errors);

/**
 * Loads `path` as a new version of `previous` (a reload): on top of fb_dialog_load()'s checks,
 * fails when a state of `previous` no longer exists and the new file declares no migration for it.
 */
fb_dialog_t *fb_dialog_load_next(const char *path, const fb_dialog_t *previous, const fb_geo_t *geo,
                                 fb_buf_t *errors);

fb_dialog_t *fb_dialog_ref(fb_dialog_t *d);
void fb_dialog_unref(fb_dialog_t *d);

/** The dialog's id (the `dialogue:` key). Borrowed. */
const char *fb_dialog_id(const fb_dialog_t *d);
/** The content hash (16 hex chars of the dialog and catalogue bytes) that pins sessions. Borrowed.
 */
const char *fb_dialog_hash(const fb_dialog_t *d);
/** The `titre` of catalogue item `ref` ("catalogue.id", as in `step` effects), or NULL when the
 * dialog has no such item or it has no title. Borrowed (lives as long as the dialog). */
const char *fb_dialog_item_title(const fb_dialog_t *d, const char *ref);

/**
 * Writes the dialog as a Graphviz DOT graph: states as nodes (questions as boxes, messages as
 * ellipses, end states doubled), transitions as edges labelled with the choice or the condition,
 * skips by precondition dashed. Returns 0 or FB_ETOOBIG.
 */
int fb_dialog_to_dot(const fb_dialog_t *d, fb_buf_t *out);

/* ---- events ---- */

typedef enum fb_event_kind_e {
    FB_EVENT_START = 1, /* a new conversation (or "recommencer" from the platform) */
    FB_EVENT_MESSAGE,   /* the user wrote `text` */
    FB_EVENT_CHOICE,    /* the user picked `choice` (an option id) from buttons */
    FB_EVENT_TIMER,     /* reminder `timer` fired */
    FB_EVENT_HANDBACK,  /* an advisor handed the conversation back to the bot */
    FB_EVENT_FORGET,    /* the user asked to be forgotten through the platform */
} fb_event_kind_t;

typedef struct fb_event_s {
    fb_event_kind_t kind;
    const char *text;   /* FB_EVENT_MESSAGE: UTF-8, as typed (borrowed) */
    const char *choice; /* FB_EVENT_CHOICE: option id (borrowed) */
    const char *timer;  /* FB_EVENT_TIMER: reminder id (borrowed) */
} fb_event_t;

/* ---- the step ---- */

/** Everything the engine may read besides the dialog: passed in, never fetched. */
typedef struct fb_engine_env_s {
    int64_t now;                        /* Unix time, seconds */
    const char *locale;                 /* "fr" */
    const fb_geo_t *geo;                /* communes index, borrowed, may be NULL */
    const fb_dialog_t *const *versions; /* older loaded versions a session may be pinned to */
    size_t n_versions;
    /* Whether an advisor can take a conversation about commune `insee` (NULL when the session
     * has none yet): the escalation's rooms cover its territory. NULL callback: advisors are
     * assumed available (the authoring tools, transcripts that do not say otherwise). The
     * engine never promises an advisor when this says no (issue #19). */
    bool (*has_advisor)(const void *arg, const char *insee);
    const void *has_advisor_arg;
    /* The address of this conversation's roadmap page ("https://.../feuille-de-route/TOKEN"),
     * the built-in name `lien_feuille_de_route`; NULL: none (the texts then say how else to get
     * the roadmap). The router mints the token; the engine only shows the address. */
    const char *roadmap_url;
    /* The platform reaches the user only while they are there (the web chat): texts promise no
     * later message (`joignable` is false). false: reachable (Matrix, the authoring tools). */
    bool unreachable;
    /* An e-mail address can be left to be reached later (the e-mail adapter runs): the texts
     * offer it (`courriel`). */
    bool mail_offer;
} fb_engine_env_t;

/**
 * Runs one event. `session` is borrowed (NULL or JSON null for a conversation that has none yet).
 * On success returns 0 and sets `*new_session` (new; JSON null after "forget") and `*effects` (new
 * JSON array of effect objects, see docs/internals/ENGINE.md). On failure returns a negative code
 * (FB_EINVAL for a malformed session or event) and sets both to NULL. Never fails on user text:
 * any text gets an answer.
 */
int fb_engine_step(const fb_dialog_t *d, const json_t *session, const fb_event_t *ev,
                   const fb_engine_env_t *env, json_t **new_session /* OUT */,
                   json_t **effects /* OUT */);

/**
 * The roadmap page of `session` (borrowed): the dialog's `page_feuille_de_route` text, appended
 * to `plain` and to `html` (either may be NULL; in HTML the values are escaped and "# " to "### "
 * lines are headings). The roadmap is the stored one once the guided part ended, else the one
 * the rules give for the answers so far (as `feuille_de_route` reads). Read-only: no effect, the
 * session unchanged. 0; FB_ENOENT when the session is null or has no roadmap; FB_EINVAL for a
 * malformed session; a rendering error (both buffers freed then, as fb_template_render()).
 */
int fb_engine_render_page(const fb_dialog_t *d, const json_t *session, const fb_engine_env_t *env,
                          fb_buf_t *plain, fb_buf_t *html);

/**
 * Reads a session from its stored form (the compact JSON the router writes), as
 * fb_json_loadb() (common/json.h) does, but the strings the dialog `d` knows (its id and hash,
 * state ids, tags, option ids, roadmap items, statuses) are the dialog's shared JSON strings: no
 * allocation for most of a session's strings, read-only as any session. NULL when not JSON.
 */
json_t *fb_engine_session_loadb(const fb_dialog_t *d, const char *data, size_t len);

/** True when `session` (as fb_engine_step() returns it) is handed to an advisor: the engine stays
 *  quiet and the user's messages are for the advisor (docs/internals/ESCALATION.md). */
bool fb_engine_session_escalated(const json_t *session);

/** The INSEE code of the session's first answer that is a commune ({"insee": "..."}), or NULL:
 *  the project's territory (the advisors' room, the impact counters). */
const char *fb_engine_session_insee(const json_t *session);

#endif /* FB_ENGINE_H */
