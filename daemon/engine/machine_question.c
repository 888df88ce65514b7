/* SPDX-License-Identifier: MIT */
/*
 * machine_question.c - questions asked at any moment of the conversation (issue #20,
 * docs/internals/KB.md): a message that reads as a question is looked up in the dialog's
 * knowledge base before any answer parsing. A confident hit says the answer (its first variant
 * whose `si` holds), its source and link, asks for feedback, and repeats the pending question in
 * one line; otherwise the bot says honestly that it does not know and who can answer. The
 * user's place, failure count and reminders are untouched. The feedback ("utile", "pas utile")
 * to an answer is counted. Only anonymous counters: no question text is kept anywhere.
 */
#include "engine/kb.h"
#include "engine/machine_int.h"

/* Feedback to a knowledge-base answer, folded, whole message. Only wordings of « utile » and
 * « ça m'aide »: the pending question is repeated right after the answer, so the next message is
 * most often its answer, and « merci », « pas du tout », « pas vraiment » answer questions too. */
static const char *const helpful[] = {
    "utile",          "oui utile",        "oui c est utile",   "c est utile", "tres utile",
    "oui tres utile", "c est tres utile", "merci c est utile", "utile merci", "tres utile merci",
    "ca m aide",      "oui ca m aide",    "ca m a aide",       "ca aide"};
static const char *const not_helpful[] = {
    "pas utile",          "non pas utile",   "inutile",
    "non inutile",        "pas tres utile",  "pas du tout utile",
    "pas vraiment utile", "c est pas utile", "ce n est pas utile",
    "ca ne m aide pas",   "ca m aide pas",   "non ca ne m aide pas",
    "ca ne m a pas aide", "ca n aide pas",   "ne m aide pas"};

/* 1: helpful, -1: not helpful, 0: not feedback. */
static int feedback_kind(const char *text)
{
    char f[128];
    size_t need = fb_text_fold(text, strlen(text), f, sizeof(f));
    if (need >= sizeof(f))
        return 0;
    for (size_t i = 0; i < FB_ARRAY_SIZE(not_helpful); i++)
        if (strcmp(f, not_helpful[i]) == 0)
            return -1;
    for (size_t i = 0; i < FB_ARRAY_SIZE(helpful); i++)
        if (strcmp(f, helpful[i]) == 0)
            return 1;
    return 0;
}

/* Says built-in text `which` with `ctx` (stolen, may be NULL) as `recherche`. */
static void say_builtin_with(struct run *r, enum fb__textid which, json_t *ctx)
{
    json_t *saved = r->c_recherche;
    r->c_recherche = ctx;
    fb__run_say_builtin(r, which);
    r->c_recherche = saved;
    json_decref(ctx);
}

/* Repeats the pending question in one line: its text (with its choices as buttons), not the
 * numbered list; the commune candidates or the readings to confirm when pending; nothing after
 * the end (but the question asked after it, `apres_fin`). */
static void repeat_pending(struct run *r)
{
    if (!asking(r))
        return;
    const struct fb__state *st = cur(r);
    if (st->type == FB__Q_NONE)
        return;
    if (r->s.n_cand > 0) {
        fb__run_ask_candidates(r, NULL);
        return;
    }
    if (r->s.n_confirm > 0) { /* a « Vous voulez dire » is pending: ask it again */
        fb__run_ask(r);
        return;
    }
    fb__run_say_text(r, &st->text, NULL, NULL, st->choices_json);
}

/* The département's name of the session's commune, or NULL (borrowed from the run's cache). */
static const char *departement_name(struct run *r)
{
    const fb_dialog_t *d = r->d;
    for (size_t i = 0; i < d->n_slots; i++) {
        if (d->slots[i].type != FB__Q_COMMUNE)
            continue;
        char name[256];
        snprintf(name, sizeof(name), "%s.departement_nom", d->slots[i].name);
        const json_t *v = r->xenv.lookup(r->xenv.arg, name);
        if (json_is_string(v) && json_string_length(v) > 0)
            return json_string_value(v);
    }
    return NULL;
}

/* The honest "I do not know" and who can answer (`question_inconnue`). */
static void say_unknown(struct run *r)
{
    const struct fb__cmdset *cmds = cur(r)->cmds ? cur(r)->cmds : &r->d->cmds;
    bool advisor = !cmds->disabled[FB__CMD_CONSEILLER] && fb__run_advisor_available(r);
    const char *dep = departement_name(r);
    json_t *ctx = json_pack("{s:b}", "conseiller", advisor);
    if (ctx && dep)
        (void)json_object_set_new(ctx, "departement", json_string(dep));
    say_builtin_with(r, FB__T_QUESTION_INCONNUE, ctx);
    fb__run_stat_effect(r, "kb_unanswered");
}

/* Says answer `i`: its text (or first variant that holds), its source and link, the feedback
 * question. */
static void say_answer(struct run *r, int i)
{
    const struct fb__kbanswer *a = &r->d->kb_answers[i];
    const struct fb__text *t = &a->text;
    for (size_t v = 0; v < a->n_variants; v++)
        if (fb_expr_true(a->variants[v].cond, &r->xenv)) {
            t = &a->variants[v].text;
            break;
        }
    /* The answer, then `question_source` and `question_avis`, in one message. */
    json_t *saved = r->c_recherche;
    r->c_recherche = json_pack("{s:s, s:s}", "source", a->source, "lien", a->lien);
    fb_buf_t plain, html;
    fb_buf_init(&plain, MAX_TEXT_BYTES);
    fb_buf_init(&html, MAX_TEXT_BYTES);
    if (fb__run_render_text(r, t, &plain, &html) == 0 && fb_buf_puts(&plain, "\n\n") == 0 &&
        fb__run_render_text(r, &r->d->texts[FB__T_QUESTION_SOURCE], &plain, &html) == 0 &&
        fb_buf_puts(&plain, "\n\n") == 0 &&
        fb__run_render_text(r, &r->d->texts[FB__T_QUESTION_AVIS], &plain, &html) == 0)
        fb__run_say_bufs(r, &plain, &html, NULL);
    json_decref(r->c_recherche);
    r->c_recherche = saved;
    fb_buf_free(&plain);
    fb_buf_free(&html);
    fb__run_stat_effect(r, "kb_answered");
    r->s.kb_asked = true;
}

/* ---- asking which answer was meant ------------------------------------------------------- */

_Static_assert(FB__KB_OFFERS == FB_KB_MAX_PROPOSALS, "the session keeps every answer offered");

/* What an answer is called when offered: its `sujet`, else its first question. */
static const char *offer_label(const struct fb__kbanswer *a)
{
    return a->sujet ? a->sujet : a->questions[0];
}

/* Offers answers `hits[0..n)` (`question_preciser`, a numbered list, « Autre chose » last, a
 * button each) and keeps them for the next message (session `i`). */
static void offer_answers(struct run *r, const fb_kb_hit_t *hits, size_t n)
{
    char *ids[FB__KB_OFFERS] = {NULL};
    const char *labels[FB__KB_OFFERS] = {NULL};
    for (size_t i = 0; i < n; i++) {
        const struct fb__kbanswer *a = &r->d->kb_answers[hits[i].doc];
        ids[i] = fb_asprintf("kb-%s", a->id);
        labels[i] = offer_label(a);
        r->s.kb_offer[i] = hits[i].doc;
    }
    fb__run_say_offer(r, FB__T_QUESTION_PRECISER, ids, labels, n);
    for (size_t i = 0; i < n; i++)
        fb_free(ids[i]);
    r->s.n_kb_offer = n;
}

enum { OFFER_NONE = -1, OFFER_DECLINED = -2, OFFER_AGAIN = -3 };

/*
 * What the message after an offer makes of it: the index of the answer picked (its button, its
 * number, its label, « oui » to one answer), OFFER_DECLINED (« Autre chose », its number, « non »),
 * OFFER_AGAIN (« oui » to several answers, or a word of several labels: which one?) or OFFER_NONE
 * (something else: a new question, an answer to the pending question). A message shaped as a
 * question is a new one unless it is a number or a refusal: « qui finance l'étude de sol ? » shares
 * a word with a label, it does not pick it.
 */
static int offer_take(const struct run *r, const char *text, const char *choice)
{
    size_t n = r->n_kb_offer;
    if (choice) {
        if (strcmp(choice, "autre_chose") == 0)
            return OFFER_DECLINED;
        for (size_t i = 0; i < n && strncmp(choice, "kb-", 3) == 0; i++)
            if (strcmp(choice + 3, r->d->kb_answers[r->kb_offer[i]].id) == 0)
                return (int)i;
        return OFFER_NONE;
    }
    if (!text || strlen(text) > MAX_INPUT)
        return OFFER_NONE;
    char folded[256];
    size_t fl = fb_text_fold(text, strlen(text), folded, sizeof(folded));
    if (fl >= sizeof(folded))
        return OFFER_NONE;
    if (fb__run_is_decline(folded))
        return OFFER_DECLINED;
    if (folded[0] >= '1' && folded[0] <= '9' && folded[1] == '\0') {
        size_t k = (size_t)(folded[0] - '1');
        return k < n ? (int)k : k == n ? OFFER_DECLINED : OFFER_NONE;
    }
    if (fb_text_ends_with_question_mark(text) || fb_text_has_question_form(text))
        return OFFER_NONE;
    fb_choice_t opts[FB__KB_OFFERS + 1];
    for (size_t i = 0; i < n; i++) {
        const struct fb__kbanswer *a = &r->d->kb_answers[r->kb_offer[i]];
        opts[i] = (fb_choice_t){a->id, offer_label(a), NULL};
    }
    const json_t *other = r->d->texts[FB__T_AUTRE_CHOSE].plain;
    opts[n] = (fb_choice_t){"autre_chose", other ? json_string_value(other) : "Autre chose", NULL};
    size_t idx = 0;
    fb_answer_status_t st = fb_answer_choice(opts, n + 1, text, &idx);
    if (st == FB_ANSWER_OK)
        return idx < n ? (int)idx : OFFER_DECLINED;
    if (st == FB_ANSWER_AMBIGUOUS)
        return OFFER_AGAIN;
    bool yes = false;
    if (fb_answer_yesno(text, &yes) == FB_ANSWER_OK)
        return !yes ? OFFER_DECLINED : n == 1 ? 0 : OFFER_AGAIN;
    return OFFER_NONE;
}

/* Folded words that make a message a question even without « ? » and even when it names an
 * option: « c'est quoi un PLUi » at the urbanism question asks, it does not answer. The other
 * openers (« quand », « qui », « comment », « où »...) also open ordinary answers (« comment
 * dire, en ruine »): there the current question's reading wins. */
static const char *const plain_markers[] = {"c est quoi",
                                            "cest quoi",
                                            "c koi",
                                            "ckoi",
                                            "c quoi",
                                            "qu est ce",
                                            "quest ce",
                                            "kesako",
                                            "quesaco",
                                            "est ce que",
                                            "est ce qu",
                                            "pourquoi",
                                            "que signifie",
                                            "que veut dire",
                                            "a quoi sert",
                                            "comment obtenir",
                                            "comment faire",
                                            "je voudrais savoir",
                                            "j aimerais savoir",
                                            "je me demande",
                                            "quid"};

static bool plainly_question(const char *text)
{
    char f[MAX_INPUT + 1];
    size_t n = fb_text_fold(text, strlen(text), f, sizeof(f));
    if (n >= sizeof(f))
        return true;
    for (size_t i = 0; i < FB_ARRAY_SIZE(plain_markers); i++) {
        size_t len = strlen(plain_markers[i]);
        for (const char *p = strstr(f, plain_markers[i]); p; p = strstr(p + 1, plain_markers[i]))
            if ((p == f || p[-1] == ' ') && (p[len] == ' ' || p[len] == '\0'))
                return true;
    }
    return false;
}

/* What the knowledge base makes of a message. */
enum kb_take {
    KB_NOT,     /* not a question for the base: read it as usual */
    KB_ANSWER,  /* a question the base answers: res->hits[0] */
    KB_UNKNOWN, /* a question the base cannot answer with confidence */
    KB_UNSURE,  /* a question two or three answers fit: ask which (res->n_proposals) */
};

/*
 * Classifies `text`. A question the base is not sure about is "unknown" only when its wording
 * is interrogative: « Grenoble ? » or « industriel ? » are answers said with a doubt, and a
 * free-text answer may well be phrased as a question: those are questions only when the base
 * is sure or finds what they may be about (and, for free text, when they end with « ? »).
 */
static enum kb_take classify(const struct run *r, const char *text, fb_kb_result_t *res)
{
    memset(res, 0, sizeof(*res));
    if (!text || !r->d->kb || strlen(text) > MAX_INPUT)
        return KB_NOT;
    bool mark = fb_text_ends_with_question_mark(text);
    bool form = fb_text_has_question_form(text);
    if (!mark && !form)
        return KB_NOT;
    bool free_text = asking(r) && cur(r)->type == FB__Q_TEXT;
    if (free_text && !mark)
        return KB_NOT;
    /* « quand j'ai repris la mairie », « comment dire, en ruine »: without « ? », an opener
     * alone does not beat a message the current question reads as its answer */
    if (!mark && !plainly_question(text) && fb__run_would_parse(r, text))
        return KB_NOT;
    /* « PLU ? » at the urbanism question, « EPF ? » at the owner's: an option said with a doubt
     * is the answer, though the base, which explains a bare name (kb.c's is_bare()), is sure */
    if (mark && !form && fb__run_would_parse(r, text))
        return KB_NOT;
    fb_kb_search(r->d->kb, text, res);
    if (res->confident)
        return KB_ANSWER;
    /* a search that found what it may be about asks, whatever the wording: the message is not
     * an answer the pending question reads (above) */
    if (res->n_proposals > 0)
        return KB_UNSURE;
    if (free_text || !form)
        return KB_NOT;
    return KB_UNKNOWN;
}

/* classify(), once per message and place in the conversation (see struct run's kb_memo). */
static enum kb_take classify_once(struct run *r, const char *text, fb_kb_result_t *res)
{
    struct fb__kb_memo *m = &r->kb_memo;
    if (!m->text || m->text != text || m->d != r->d || m->state != r->s.state ||
        m->back_to != r->s.back_to || m->ended != r->s.ended || m->n_cand != r->s.n_cand ||
        m->n_confirm != r->s.n_confirm) {
        m->take = classify(r, text, &m->res);
        m->text = text;
        m->d = r->d;
        m->state = r->s.state;
        m->back_to = r->s.back_to;
        m->ended = r->s.ended;
        m->n_cand = r->s.n_cand;
        m->n_confirm = r->s.n_confirm;
    }
    *res = m->res;
    return (enum kb_take)m->take;
}

bool fb__run_kb_private(struct run *r, const char *text)
{
    fb_kb_result_t res;
    if (r->n_kb_offer > 0 && offer_take(r, text, NULL) != OFFER_NONE)
        return true; /* which answer was meant says what the question was */
    return classify_once(r, text, &res) != KB_NOT;
}

bool fb__run_kb_input(struct run *r, const char *text, const char *choice, bool feedback_due)
{
    /* the answers offered by the previous message; and the button of one offered earlier, clicked
     * after the pick: that answer (one the base no longer has: « je ne sais pas »), never an
     * answer to the pending question */
    bool kb_button = choice && r->d->kb && strncmp(choice, "kb-", 3) == 0;
    if (r->d->kb && (r->n_kb_offer > 0 || kb_button)) {
        int take = r->n_kb_offer > 0 ? offer_take(r, text, choice) : OFFER_NONE;
        if (take == OFFER_AGAIN) {
            fb_kb_hit_t hits[FB__KB_OFFERS];
            size_t n = r->n_kb_offer;
            for (size_t i = 0; i < n; i++)
                hits[i] = (fb_kb_hit_t){r->kb_offer[i], 0};
            r->n_kb_offer = 0; /* taken: offered again */
            offer_answers(r, hits, n);
            return true;
        }
        if (take == OFFER_NONE && r->n_kb_offer > 0)
            fb__run_stat_effect(r, "kb_unanswered"); /* left without a pick */
        int doc = take >= 0                ? r->kb_offer[take]
                  : take == OFFER_DECLINED ? -1
                  : kb_button              ? fb_dialog_kb_index(r->d, choice + 3)
                                           : -1;
        r->n_kb_offer = 0;
        if (take != OFFER_NONE || kb_button) {
            if (doc >= 0)
                say_answer(r, doc);
            else
                say_unknown(r);
            repeat_pending(r);
            return true;
        }
        /* anything else is read as usual */
    }
    if (!text || !r->d->kb || strlen(text) > MAX_INPUT)
        return false;
    /* a pending « Vous voulez dire » or commune list waits for its own answer */
    if (feedback_due && r->s.n_confirm == 0 && r->s.n_cand == 0) {
        int k = feedback_kind(text);
        if (k != 0) {
            fb__run_stat_effect(r, k > 0 ? "kb_helpful" : "kb_not_helpful");
            say_builtin_with(r, k > 0 ? FB__T_AVIS_UTILE : FB__T_AVIS_PAS_UTILE, NULL);
            repeat_pending(r);
            return true;
        }
    }
    fb_kb_result_t res;
    switch (classify_once(r, text, &res)) {
    case KB_NOT:
        return false;
    case KB_ANSWER:
        say_answer(r, res.hits[0].doc);
        break;
    case KB_UNKNOWN:
        say_unknown(r);
        break;
    case KB_UNSURE: /* the pending question comes after the pick */
        offer_answers(r, res.hits, res.n_proposals);
        return true;
    }
    repeat_pending(r);
    return true;
}
