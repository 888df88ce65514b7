/* SPDX-License-Identifier: MIT */
/*
 * machine_int.h - private to the dialog machine (machine*.c): the step in progress (struct run) and
 * the operations its files share. Nothing else includes it.
 *
 * fb_engine_step() takes one event through the dialog graph, producing the new session and the
 * effects. Pure: no I/O, no clock (env->now), no randomness, no global state.
 *
 * A step parses the session (session.c), dispatches the event (start, message, choice, timer,
 * handback, forget), and writes the session back. A message goes through, in order: the
 * "escalated: stay quiet" rule, the global commands (matched on the whole folded text), a
 * pending pick (commune candidates, a reminder's question about a roadmap step), then the
 * current question's answer parser (answers.c). Accepting an answer stores it, emits its tags,
 * and enters the next state: preconditions skip states, messages are said and passed, the walk
 * stops at the next question or at a final state. Every user text gets an answer; only a
 * malformed session or event makes the step fail.
 *
 * Names in templates and conditions are resolved lazily by lookup(): answers (commune answers
 * are stored compactly and expanded through the geo index), then the built-in names (the
 * roadmap, the current question and its help, the failure count, the step a reminder is about).
 *
 * Files: machine.c (caches and name lookup, effects, asking, moving through the graph, events,
 * the step), machine_answer.c (answers, the reminder's question about a step, the step list),
 * machine_command.c (global commands), machine_summary.c (summaries for advisors and recaps).
 */
#ifndef FB_ENGINE_MACHINE_INT_H
#define FB_ENGINE_MACHINE_INT_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"
#include "engine/effects.h"
#include "engine/geo.h"
#include "engine/internal.h"
#include "engine/kb.h"
#include "engine/text.h"
#include "frichebot/alloc.h"
#include "frichebot/err.h"

#define MAX_TEXT_BYTES (64u << 10) /* longest message we render */
#define MAX_INPUT      (16u << 10) /* longer user texts are not parsed (a polite refusal) */
#define TIMER_ID       FB__TIMER_ID
#define MAX_COMMUNE    200 /* longer texts are no commune name: not searched (geo scans cost) */

/* One step in progress. */
/* What machine_question.c's classify() made of `text` in the place the session was then: the
 * event's message is read twice in a step (to keep it or not, then to answer it). */
struct fb__kb_memo {
    const char *text; /* NULL: nothing yet */
    const fb_dialog_t *d;
    int state, back_to;
    bool ended;
    size_t n_cand, n_confirm;
    int take;
    fb_kb_result_t res;
};

struct run {
    const fb_engine_env_t *env;
    const fb_dialog_t *d;      /* the version the session runs on */
    const fb_dialog_t *latest; /* the current version (restarts move there) */
    struct fb__sess s;
    json_t *effects;
    fb_expr_env_t xenv;
    /* values computed for lookup(), dropped whenever answers or the state change */
    json_t *c_road, *c_question, *c_help, *c_fails, *c_min, *c_max, *c_etape;
    json_t *c_delai;        /* "3 mois": the delay the user just asked for, or NULL */
    json_t *c_recherche;    /* the commune step's context for its texts ("recherche"), or NULL */
    json_t *c_example;      /* `exemple`: an answer the current question understands, or NULL */
    json_t *c_road_url;     /* `lien_feuille_de_route`: env->roadmap_url as JSON, or NULL */
    json_t **c_communes;    /* per slot */
    json_t **c_cats;        /* per catalogue: its items whose `si` holds */
    unsigned c_held;        /* entries of c_communes and c_cats filled since the last
                               fb__run_invalidate() (an upper bound: the loops are skipped at 0) */
    unsigned char *c_items; /* per item whose `si` reads answers only: 0 not known yet, 1 its
                               `si` fails, 2 it holds; valid while answers_gen == c_items_gen */
    unsigned answers_gen;   /* counts the changes of s.answers in this step */
    unsigned c_items_gen;
    int guard;        /* > 0 while rendering the question or its help (no recursion) */
    bool road_read;   /* fb__run_builtin() gave `feuille_de_route` (fb__run_say_text) */
    bool kb_feedback; /* the previous message was a knowledge-base answer (session `w`) */
    /* the answers the previous message offered to choose from (session `i`): the next message
     * only */
    int kb_offer[FB__KB_OFFERS];
    size_t n_kb_offer;
    char *note;  /* what a loose answer was understood as: the next `say` starts « Noté : X. » */
    bool no_ask; /* a command answered while an advisor has the conversation: no question */
    bool steps_listed; /* the step list was said with its buttons (fb__run_say_steps) */
    struct fb__kb_memo kb_memo;
};

static inline const struct fb__state *cur(const struct run *r)
{
    return &r->d->states[r->s.state];
}

/* True while a question of the dialog waits for its answer: before the end, or the question
 * asked after it (`apres_fin`, session `z`). */
static inline bool asking(const struct run *r)
{
    return !r->s.ended || r->s.back_to >= 0;
}

static inline const fb_geo_t *geo_of(const struct run *r)
{
    return r->env->geo ? r->env->geo : r->d->geo;
}

/*
 * A new JSON string of `len` bytes. Every source of text is valid UTF-8 (YAML, the geo index,
 * answers.c's checks), so this never happens in practice; should it, non-ASCII bytes become
 * '?' rather than the message being lost. The check is utf8.c's (the same rules as jansson's,
 * with an ASCII fast path: messages are long), then jansson does not check again.
 */
static inline json_t *text_json(const char *s, size_t len)
{
    json_t *v = fb_utf8_valid(s, len) ? json_stringn_nocheck(s, len) : NULL;
    if (v)
        return v;
    char *copy = fb_malloc(len + 1);
    for (size_t i = 0; i < len; i++)
        copy[i] = (s[i] == '\0' || (unsigned char)s[i] >= 0x80) ? '?' : s[i];
    copy[len] = '\0';
    v = json_stringn(copy, len);
    fb_free(copy);
    return v;
}
/* French month names, by month - 1. */
extern const char *const fb__run_month_names[12];

void fb__run_drop(json_t **v);

void fb__run_invalidate(struct run *r);

void fb__run_answers_changed(struct run *r);

bool fb__run_is_nsp(const json_t *v);

const json_t *fb__run_builtin(struct run *r, const char *name, size_t len);

void fb__run_roadmap(struct run *r, int **items, unsigned char **status, int32_t **day, size_t *n);

void fb__run_format_day(fb_buf_t *out, int32_t day);

int fb__run_render_text(struct run *r, const struct fb__text *t, fb_buf_t *plain, fb_buf_t *html);

void fb__run_effect(struct run *r, json_t *e);

void fb__run_say_bufs(struct run *r, fb_buf_t *plain, fb_buf_t *html, const json_t *choices);

/* Writes "N. " (N = i + 1) at the end of `num` and returns where it starts (no printf: a list is
 * written at most steps). */
#define FB__LIST_NUMBER 24
size_t fb__run_list_number(char num[FB__LIST_NUMBER], size_t i);
int fb__run_list_item(fb_buf_t *plain, fb_buf_t *html, size_t i, const char *label);

void fb__run_say_text(struct run *r, const struct fb__text *t, const char *list_plain,
                      const char *list_html, const json_t *choices);

void fb__run_say_builtin(struct run *r, enum fb__textid which);

json_t *fb__run_effect_new(const struct run *r, fb_effect_t type);

void fb__run_simple_effect(struct run *r, fb_effect_t type);

void fb__run_step_effect(struct run *r, size_t i, unsigned status);

void fb__run_cancel_timer(struct run *r);

void fb__run_stat_effect(struct run *r, const char *name);

void fb__run_cancel_all(struct run *r);

void fb__run_list_answers(struct run *r, fb_buf_t *plain, fb_buf_t *html, const char *title);

void fb__run_list_roadmap_titled(struct run *r, fb_buf_t *plain, fb_buf_t *html,
                                 const char *title_plain, const char *title_html);

void fb__run_list_roadmap(struct run *r, fb_buf_t *plain, fb_buf_t *html);

void fb__run_list_tags(struct run *r, fb_buf_t *plain, fb_buf_t *html);

void fb__run_list_last_messages(struct run *r, fb_buf_t *plain, fb_buf_t *html, const char *title);

json_t *fb__run_summary(struct run *r);

char *fb__run_candidate_label(struct run *r, const char *code);

/* The label of the "none of these communes" option (`commune_autre_libelle`). New string. */
char *fb__run_autre_label(struct run *r);

/* Sets `key` of the `recherche` name (the commune step's context) to `v` (stolen; NULL: null). */
void fb__run_recherche_set(struct run *r, const char *key, json_t *v);

/* "Creuse (23)" for a département, "Bretagne" for a région. New string. */
char *fb__run_area_label(const fb_geo_area_t *a);

/* {"zone": fb__run_area_label(), "type": "departement" | "region", "code_zone"} (new). */
json_t *fb__run_area_context(const fb_geo_area_t *a);

/* True when candidate `id` is an area ("d23", "r53") the index knows; fills `a`. */
bool fb__run_candidate_area(const struct run *r, const char *id, fb_geo_area_t *a);

/* Says the commune candidates, after `intro` (NULL: the default; see machine.c). */
void fb__run_ask_candidates(struct run *r, const struct fb__text *intro);

void fb__run_ask_step(struct run *r, const struct fb__text *intro);

void fb__run_set_etape(struct run *r, int i);

void fb__run_ask(struct run *r);

const struct fb__relance *fb__run_relance_cfg(const struct run *r);

void fb__run_arm_after(struct run *r, long long after);

void fb__run_arm(struct run *r);

void fb__run_escalate(struct run *r, const char *reason);
/* True when an advisor can take this conversation (env->has_advisor for the session's commune). */
bool fb__run_advisor_available(const struct run *r);

int fb__run_choice_index(const struct fb__state *st, const char *id);

void fb__run_emit_tags(struct run *r, const struct fb__state *st, const json_t *v);

void fb__run_enter(struct run *r, int target, bool replay);
/* Leaves the question asked after the end (`apres_fin`): back at the final state, quietly. */
void fb__run_leave_after_end(struct run *r);

void fb__run_accept(struct run *r, json_t *v);

void fb__run_fail(struct run *r, fb_answer_status_t why);

void fb__run_answer(struct run *r, const char *text, const char *choice);
/* True when typed `text` would be read as an answer to the current question (an option, a
 * number, a date, « je ne sais pas » where allowed), without any side effect. Always false for
 * a commune or free-text question, after the end, and while candidates or readings wait. */
bool fb__run_would_parse(const struct run *r, const char *text);

void fb__run_ask_confirm(struct run *r);
/* Says text `intro`, then `labels[0..n)` as a numbered list and `autre_chose` last, a button each
 * (ids `ids[i]`, "autre_chose"). */
void fb__run_say_offer(struct run *r, enum fb__textid intro, char *const *ids,
                       const char *const *labels, size_t n);

void fb__run_answer_step(struct run *r, const char *text, const char *choice);

bool fb__run_parse_step_text(const fb_dialog_t *d, const char *text, long *num, int *status);

void fb__run_say_steps(struct run *r, enum fb__textid head);

void fb__run_step_command(struct run *r, long num, int status);

long fb__run_step_choice(const char *choice);

int fb__run_match_command(const struct run *r, const char *text);

void fb__run_forget(struct run *r);

void fb__run_restart(struct run *r, const char *stat_name);

bool fb__run_command(struct run *r, int cmd);

/* machine_question.c: questions to the knowledge base (docs/internals/KB.md) */
bool fb__run_kb_private(struct run *r, const char *text);
bool fb__run_kb_input(struct run *r, const char *text, const char *choice, bool feedback_due);
/* True when folded `folded` turns a confirmation or an offer down (« non », « autre chose »). */
bool fb__run_is_decline(const char *folded);

#endif
