/* SPDX-License-Identifier: MIT */
/*
 * machine_answer.c - answers to the current question (see machine_int.h): the answer parsers
 * applied per question type (communes through the geo index), the reminder's question about a
 * roadmap step, and the step list ("mes étapes", "étape 2 faite").
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/effects.h"
#include "engine/geo.h"
#include "engine/internal.h"
#include "engine/machine_int.h"
#include "engine/text.h"
#include "frichebot/alloc.h"
#include "frichebot/err.h"

/* ---- answers --------------------------------------------------------------------------------- */

/* A number as JSON: an integer when it is one (compact), else a real. */
static json_t *number_json(double x)
{
    if (x == floor(x) && fabs(x) < 1e15)
        return json_integer((json_int_t)x);
    return json_real(x);
}

/* ---- communes ---------------------------------------------------------------------------------
 *
 * The commune step (docs/internals/ENGINE.md, "Communes"). What the user typed is read, in order,
 * as: a pick in the pending list (its number or label, a button, a département or région that
 * narrows the list, « aucune de ces communes », yes / no to a lone proposal); a lone code (the
 * communes with that postal code, by name, then the one with that INSEE code); a département or
 * région (asked which commune in it, and kept to narrow the next search); a commune name. Exact
 * names are taken at once; a name found only by typo distance, by prefix or by dropping what the
 * user added to it is proposed, never taken silently.
 */

#define AUTRE_ID "autre"

/* Stores commune `c` as the answer. */
static void accept_commune(struct run *r, const fb_commune_t *c)
{
    fb__run_accept(r, fb__commune_compact(c->insee, c->name));
}

/* True when the folded name of `c` equals the folded `text` ("lyon" for "Lyon"). */
static bool same_name(const fb_commune_t *c, const char *text)
{
    char a[128], b[128];
    if (fb_text_fold(c->name, strlen(c->name), a, sizeof(a)) >= sizeof(a) ||
        fb_text_fold(text, strlen(text), b, sizeof(b)) >= sizeof(b))
        return false;
    return strcmp(a, b) == 0;
}

/* Replaces the pending candidates with `v[0..n)` (at most FB__MAX_CANDIDATES kept). */
static void set_candidates(struct run *r, const fb_commune_t *const *v, size_t n)
{
    struct fb__sess *s = &r->s;
    s->n_cand = 0;
    for (size_t i = 0; i < n && s->n_cand < FB__MAX_CANDIDATES; i++) {
        size_t len = strlen(v[i]->insee);
        if (len < sizeof(s->cand[0]))
            memcpy(s->cand[s->n_cand++], v[i]->insee, len + 1);
    }
}

/* Appends area `a` ("d23", "r53") to the pending candidates. */
static void add_area_candidate(struct run *r, const fb_geo_area_t *a)
{
    struct fb__sess *s = &r->s;
    if (s->n_cand < FB__MAX_CANDIDATES)
        (void)snprintf(s->cand[s->n_cand++], sizeof(s->cand[0]), "%c%s",
                       a->kind == FB_GEO_AREA_DEP ? 'd' : 'r', a->code);
}

/* « Aucune de ces communes »: back to the question, with a hint (postal code, INSEE code). The
 * qualifier stays: it only narrows a search when something in it matches. Not a failure. */
static void say_autre(struct run *r)
{
    r->s.n_cand = 0;
    fb__run_say_builtin(r, FB__T_COMMUNE_AUTRE);
}

/* A département or région typed instead of a commune: asks which commune in it, and keeps it
 * to narrow the next search ("d23", "r53"). Not a failure. */
static void ask_in_area(struct run *r, const fb_geo_area_t *a)
{
    struct fb__sess *s = &r->s;
    s->n_cand = 0;
    (void)snprintf(s->qual, sizeof(s->qual), "%c%s", a->kind == FB_GEO_AREA_DEP ? 'd' : 'r',
                   a->code);
    fb__run_drop(&r->c_recherche);
    r->c_recherche = fb__run_area_context(a);
    fb__run_say_builtin(r, FB__T_COMMUNE_ZONE);
}

/* Takes pending candidate `i`: a commune is the answer, an area asks for a commune in it. */
static void take_candidate(struct run *r, size_t i)
{
    const fb_geo_t *geo = geo_of(r);
    fb_geo_area_t a;
    char id[sizeof(r->s.cand[0])];
    memcpy(id, r->s.cand[i], sizeof(id));
    if (fb__run_candidate_area(r, id, &a)) {
        ask_in_area(r, &a);
        return;
    }
    const fb_commune_t *c = fb_geo_by_insee(geo, id);
    if (c)
        accept_commune(r, c);
    else
        say_autre(r); /* a code the index no longer knows (an older session) */
}

/* True when `text` is only digits (and blanks around them); sets `*v` (0 when too long). */
static bool only_number(const char *text, unsigned long *v)
{
    while (*text == ' ')
        text++;
    size_t n = 0;
    *v = 0;
    while (text[n] >= '0' && text[n] <= '9') {
        *v = n < 6 ? *v * 10 + (unsigned long)(text[n] - '0') : 0;
        n++;
    }
    if (n == 0)
        return false;
    for (const char *p = text + n; *p; p++)
        if (*p != ' ')
            return false;
    return true;
}

/*
 * A message while candidates are pending. Returns true when it was read as a pick (or said
 * something about the list); false to search the index again with it.
 */
static bool pick_candidate(struct run *r, const char *text, const char *choice)
{
    struct fb__sess *s = &r->s;
    const fb_geo_t *geo = geo_of(r);
    size_t n = s->n_cand;
    bool confirm = n == 1 && s->cand[0][0] != 'd' && s->cand[0][0] != 'r';
    if (choice) {
        if (strcmp(choice, AUTRE_ID) == 0) {
            say_autre(r);
            return true;
        }
        for (size_t i = 0; i < n; i++)
            if (strcmp(choice, s->cand[i]) == 0) {
                take_candidate(r, i);
                return true;
            }
    }
    if (!text)
        return false;
    bool yes = false;
    if (confirm && fb_answer_yesno(text, &yes) == FB_ANSWER_OK) {
        if (yes)
            take_candidate(r, 0);
        else
            say_autre(r);
        return true;
    }
    unsigned long num = 0;
    if (only_number(text, &num) && num >= 1 && num <= n + 1) {
        if (num == n + 1)
            say_autre(r);
        else
            take_candidate(r, num - 1);
        return true;
    }
    /* A département or région names one of the listed communes, never another elsewhere. */
    fb_geo_area_t a;
    if (fb_geo_area(geo, text, false, &a)) {
        size_t keep[FB__MAX_CANDIDATES], m = 0;
        for (size_t i = 0; i < n; i++) {
            const fb_commune_t *c = fb_geo_by_insee(geo, s->cand[i]);
            if (c && fb_geo_in_area(c, &a))
                keep[m++] = i;
        }
        if (m == 1) {
            take_candidate(r, keep[0]);
            return true;
        }
        if (m > 1) {
            for (size_t i = 0; i < m; i++)
                memmove(s->cand[i], s->cand[keep[i]], sizeof(s->cand[0]));
            s->n_cand = m;
            fb__run_ask_candidates(r, NULL);
            return true;
        }
        fb__run_drop(&r->c_recherche);
        r->c_recherche = fb__run_area_context(&a);
        fb__run_ask_candidates(r, &r->d->texts[FB__T_COMMUNE_HORS_LISTE]);
        return true;
    }
    /* « Aucune de ces communes » in the user's words: compared whole, since a typo tolerance
     * would read the commune Autry as « autre ». */
    static const char *const autre_words[] = {"autre",
                                              "autre commune",
                                              "une autre",
                                              "une autre commune",
                                              "aucune",
                                              "aucun",
                                              "aucune de ces communes",
                                              "aucune de celles ci",
                                              "aucune des communes",
                                              "aucune des deux",
                                              "ni l une ni l autre",
                                              "pas dans la liste",
                                              "elle n est pas dans la liste",
                                              "non",
                                              "non aucune",
                                              "aucune ne convient",
                                              "pas celle ci",
                                              "pas celles ci",
                                              "aucune de ces propositions",
                                              "non merci",
                                              "ce n est aucune de celles ci"};
    char folded[256];
    if (fb_text_fold(text, strlen(text), folded, sizeof(folded)) < sizeof(folded))
        for (size_t i = 0; i < FB_ARRAY_SIZE(autre_words); i++)
            if (strcmp(folded, autre_words[i]) == 0) {
                say_autre(r);
                return true;
            }
    /* The labels (the last one, « Aucune de ces communes », included). */
    fb_choice_t opts[FB__MAX_CANDIDATES + 1];
    char *labels[FB__MAX_CANDIDATES + 1] = {NULL};
    for (size_t i = 0; i < n; i++) {
        labels[i] = confirm ? fb_strdup("Oui") : fb__run_candidate_label(r, s->cand[i]);
        opts[i] = (fb_choice_t){s->cand[i], labels[i], NULL};
    }
    labels[n] = confirm ? fb_strdup("Non") : fb__run_autre_label(r);
    opts[n] = (fb_choice_t){AUTRE_ID, labels[n], NULL};
    size_t idx = 0;
    fb_answer_status_t st = fb_answer_choice(opts, n + 1, text, &idx);
    for (size_t i = 0; i <= n; i++)
        fb_free(labels[i]);
    if (st == FB_ANSWER_OK) {
        if (idx == n)
            say_autre(r);
        else
            take_candidate(r, idx);
        return true;
    }
    if (st == FB_ANSWER_UNKNOWN) {
        s->n_cand = 0;
        if (cur(r)->nsp_ok)
            fb__run_accept(r, json_string(FB_NSP_VALUE));
        else
            fb__run_fail(r, FB_ANSWER_UNKNOWN);
        return true;
    }
    return false;
}

/* `text` as a lone commune code ("12300", " 2a004 "), upper-cased into `out`. */
static bool lone_code(const char *text, char out[6])
{
    while (*text == ' ')
        text++;
    size_t n = 0;
    while (text[n] && text[n] != ' ' && n < 6)
        n++;
    for (const char *p = text + n; *p; p++)
        if (*p != ' ')
            return false;
    if (n != 5)
        return false;
    for (size_t i = 0; i < 5; i++) {
        char ch = text[i];
        if (ch >= 'a' && ch <= 'z')
            ch = (char)(ch - 'a' + 'A');
        if (!(ch >= '0' && ch <= '9') && !(i == 1 && text[0] == '2' && (ch == 'A' || ch == 'B')))
            return false;
        out[i] = ch;
    }
    out[5] = '\0';
    return true;
}

/* Orders communes by name (folded, so accents do not send « Écromagny » to the end), then by
 * département. */
static int cmp_commune_name(const fb_commune_t *x, const fb_commune_t *y)
{
    char fx[128], fy[128];
    (void)fb_text_fold(x->name, strlen(x->name), fx, sizeof(fx));
    (void)fb_text_fold(y->name, strlen(y->name), fy, sizeof(fy));
    int c = strcmp(fx, fy);
    return c ? c : strcmp(x->insee, y->insee);
}

/* True when `c` is among `v[0..n)`. */
static bool contains(const fb_commune_t *const *v, size_t n, const fb_commune_t *c)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == c)
            return true;
    return false;
}

/*
 * A lone code: every commune with that postal code, by name; then the commune whose INSEE code
 * it is (often another: 12300 is Villefranche-de-Rouergue's INSEE code and the postal code of
 * nine other communes), then those that absorbed a former commune with that code. A postal code
 * shared by more than FB__COMMUNE_LIST_MAX communes is not listed: the user is asked for the
 * name, and the next search is narrowed to that postal code.
 */
static void answer_code(struct run *r, const char code[6])
{
    const fb_geo_t *geo = geo_of(r);
    struct fb__sess *s = &r->s;
    enum { CAP = 64 };
    const fb_commune_t *pcs[CAP], *all[CAP], *list[CAP];
    size_t npc = fb_geo_by_postcode(geo, code, pcs, CAP);
    size_t nall = fb_geo_find(geo, code, all, CAP);
    npc = npc < CAP ? npc : CAP;
    nall = nall < CAP ? nall : CAP;
    const fb_commune_t *by_insee = fb_geo_by_insee(geo, code);
    if (by_insee && contains(pcs, npc, by_insee))
        by_insee = NULL;
    fb__run_drop(&r->c_recherche);
    s->qual[0] = '\0';
    if (npc > FB__COMMUNE_LIST_MAX) {
        size_t total = fb_geo_by_postcode(geo, code, NULL, 0);
        fb__run_recherche_set(r, "code", json_string(code));
        fb__run_recherche_set(r, "nombre", json_integer((json_int_t)total));
        s->n_cand = 0;
        (void)snprintf(s->qual, sizeof(s->qual), "p%s", code);
        if (by_insee) {
            char *l = fb_asprintf("%s (%s)", by_insee->name, by_insee->dep);
            fb__run_recherche_set(r, "insee", json_string(l));
            fb__run_recherche_set(r, "proposition", json_string(l));
            fb_free(l);
            set_candidates(r, &by_insee, 1);
            fb__run_ask_candidates(r, &r->d->texts[FB__T_COMMUNE_CODE_POSTAL]);
        } else {
            fb__run_say_builtin(r, FB__T_COMMUNE_CODE_POSTAL);
        }
        return;
    }
    if (npc > 0)
        (void)snprintf(s->qual, sizeof(s->qual), "p%s", code);
    size_t n = 0;
    for (size_t i = 0; i < npc; i++)
        list[n++] = pcs[i];
    for (size_t i = 1; i < n; i++) /* an insertion sort: at most FB__COMMUNE_LIST_MAX */
        for (size_t j = i; j > 0 && cmp_commune_name(list[j - 1], list[j]) > 0; j--) {
            const fb_commune_t *t = list[j];
            list[j] = list[j - 1];
            list[j - 1] = t;
        }
    if (by_insee)
        list[n++] = by_insee;
    for (size_t i = 0; i < nall && n < CAP; i++)
        if (!contains(list, n, all[i]))
            list[n++] = all[i];
    if (n == 0) {
        s->n_cand = 0;
        s->qual[0] = '\0';
        fb__run_fail(r, FB_ANSWER_INVALID);
        return;
    }
    if (n == 1) {
        accept_commune(r, list[0]);
        return;
    }
    set_candidates(r, list, n);
    fb__run_ask_candidates(r, NULL);
}

/*
 * Searches the index for `text`, narrowed first by the pending qualifier (a département, a
 * région or a postal code the user gave before) when anything in it matches.
 */
static size_t search(struct run *r, const char *text, const fb_commune_t **out, size_t max,
                     fb_geo_how_t *how)
{
    const fb_geo_t *geo = geo_of(r);
    const char *qual = r->s.qual;
    if (qual[0]) {
        fb_geo_area_t a = {.kind = FB_GEO_AREA_NONE};
        const char *extra = qual + 1;
        if (qual[0] != 'p') {
            if (!fb__run_candidate_area(r, qual, &a))
                extra = NULL;
            else if (a.kind == FB_GEO_AREA_REGION)
                extra = a.name;
        }
        char *q = extra ? fb_asprintf("%s %s", text, extra) : NULL;
        size_t total = q ? fb_geo_find_how(geo, q, out, max, how) : 0;
        fb_free(q);
        bool held = total > 0 && total <= max && how->qualified && !how->dropped;
        for (size_t i = 0; held && i < total; i++)
            held =
                qual[0] == 'p' ? fb_geo_has_postcode(out[i], qual + 1) : fb_geo_in_area(out[i], &a);
        if (held)
            return total;
    }
    return fb_geo_find_how(geo, text, out, max, how);
}

/* A commune answer: a pick among pending candidates, else a search of the index. */
static void answer_commune(struct run *r, const char *text, const char *choice)
{
    const fb_geo_t *geo = geo_of(r);
    struct fb__sess *s = &r->s;
    if (!geo) {
        fb__run_fail(r, FB_ANSWER_INVALID);
        return;
    }
    if (s->n_cand > 0) {
        if (pick_candidate(r, text, choice))
            return;
        s->n_cand = 0;
    }
    if (choice && !text) {
        fb_geo_area_t a;
        const fb_commune_t *c = fb_geo_by_insee(geo, choice);
        if (c) {
            accept_commune(r, c);
            return;
        }
        if (strcmp(choice, AUTRE_ID) == 0) {
            say_autre(r);
            return;
        }
        if (fb__run_candidate_area(r, choice, &a)) {
            ask_in_area(r, &a);
            return;
        }
        text = choice;
    }
    if (fb_answer_is_unknown(text)) {
        s->n_cand = 0;
        if (cur(r)->nsp_ok)
            fb__run_accept(r, json_string(FB_NSP_VALUE));
        else
            fb__run_fail(r, FB_ANSWER_UNKNOWN);
        return;
    }
    char code[6];
    if (lone_code(text, code)) {
        answer_code(r, code);
        return;
    }
    const fb_commune_t *found[FB__COMMUNE_LIST_MAX];
    fb_geo_how_t how;
    fb_geo_area_t area;
    if (fb_geo_area(geo, text, false, &area)) {
        /* A département or région: unless a commune has exactly that name ("Paris", "La
         * Réunion" in Lot-et-Garonne, "Vienne" in Isère), ask for the commune in it. */
        size_t total = fb_geo_find_how(geo, text, found, FB__COMMUNE_LIST_MAX, &how);
        size_t n = total < FB__COMMUNE_LIST_MAX ? total : FB__COMMUNE_LIST_MAX;
        const fb_commune_t *named[FB__COMMUNE_LIST_MAX];
        size_t m = 0;
        if (how.match == FB_GEO_MATCH_EXACT && !how.qualified && !how.dropped)
            for (size_t i = 0; i < n; i++)
                if (same_name(found[i], text))
                    named[m++] = found[i];
        if (m == 0) {
            ask_in_area(r, &area);
            return;
        }
        /* A commune named like the area it lies in stands for it: Paris, Saint-Martin (978). */
        bool inside = false;
        for (size_t i = 0; i < m; i++)
            inside = inside || fb_geo_in_area(named[i], &area);
        if (m == 1 && inside) {
            accept_commune(r, named[0]);
            return;
        }
        set_candidates(r, named, m < FB__COMMUNE_LIST_MAX ? m : FB__COMMUNE_LIST_MAX - 1);
        if (!inside)
            add_area_candidate(r, &area);
        fb__run_ask_candidates(r, NULL);
        return;
    }
    size_t total = search(r, text, found, FB__COMMUNE_LIST_MAX, &how);
    size_t n = total < FB__COMMUNE_LIST_MAX ? total : FB__COMMUNE_LIST_MAX;
    if (n == 0) {
        s->n_cand = 0;
        fb__run_fail(r, FB_ANSWER_INVALID);
        return;
    }
    if (total > FB__COMMUNE_LIST_MAX) {
        s->n_cand = 0;
        fb__run_recherche_set(r, "nombre", json_integer((json_int_t)total));
        fb__run_say_builtin(r, FB__T_COMMUNE_TROP);
        return;
    }
    /* Only an exact name (or a former name, or the name without its article) is taken at once;
     * a typo, a prefix or a qualifier the commune does not satisfy is proposed instead. */
    bool propose =
        how.match == FB_GEO_MATCH_TYPO || how.match == FB_GEO_MATCH_PREFIX || how.dropped;
    const fb_commune_t *exact = NULL;
    size_t n_exact = 0;
    for (size_t i = 0; i < n; i++)
        if (same_name(found[i], text)) {
            exact = found[i];
            n_exact++;
        }
    if (!propose && (total == 1 || n_exact == 1)) {
        accept_commune(r, total == 1 ? found[0] : exact);
        return;
    }
    set_candidates(r, found, n);
    fb__run_ask_candidates(r, NULL);
}

/* True for a duration answer whose only number is the article "un"/"une" with no unit: "ça fait
 * un moment", "depuis une éternité" (but "une dizaine" is a number). */
static bool vague_duration(const char *text)
{
    char f[256];
    size_t n = fb_text_fold(text, strlen(text), f, sizeof(f));
    if (n >= sizeof(f))
        return false;
    /* "une semaine", "un semestre", "une décennie" are durations as "2 semaines" is */
    static const char *const units[] = {
        "an",         "ans",       "annee",     "annees",    "mois",        "dizaine",
        "douzaine",   "quinzaine", "vingtaine", "trentaine", "quarantaine", "cinquantaine",
        "centaine",   "jour",      "jours",     "semaine",   "semaines",    "trimestre",
        "trimestres", "semestre",  "semestres", "decennie",  "decennies",   "siecle"};
    bool un = false;
    for (char *w = f, *next; w && *w; w = next) {
        next = strchr(w, ' ');
        if (next)
            *next++ = '\0';
        if (strcmp(w, "un") == 0 || strcmp(w, "une") == 0)
            un = true;
        for (size_t i = 0; i < FB_ARRAY_SIZE(units); i++)
            if (strcmp(w, units[i]) == 0)
                return false;
        for (const char *c = w; *c; c++)
            if (*c >= '0' && *c <= '9')
                return false;
    }
    return un;
}

/* ---- saying what was understood, confirming what was not sure ------------------------------ */

/* The label of a reading of the current question: an option's, or for a choix_multiple the
 * options' joined by ", " (« Aucune » for none). New string. */
static char *reading_label(const struct run *r, uint64_t mask)
{
    const struct fb__state *st = cur(r);
    fb_buf_t b;
    fb_buf_init(&b, MAX_TEXT_BYTES);
    for (size_t o = 0; o < st->n_choices && o < 64; o++)
        if (mask & ((uint64_t)1 << o))
            (void)fb_buf_printf(&b, "%s%s", b.len ? ", " : "", st->choices[o].label);
    if (b.len == 0)
        (void)fb_buf_puts(&b, "Aucune");
    char *s = fb_strdup(fb_buf_str(&b));
    fb_buf_free(&b);
    return s;
}

/* The id of a reading, as its button and the session's `y` write it. New string. */
static char *reading_id(const struct run *r, uint64_t mask)
{
    const struct fb__state *st = cur(r);
    fb_buf_t b;
    fb_buf_init(&b, MAX_TEXT_BYTES);
    for (size_t o = 0; o < st->n_choices && o < 64; o++)
        if (mask & ((uint64_t)1 << o))
            (void)fb_buf_printf(&b, "%s%s", b.len ? "," : "", st->choices[o].id);
    char *s = fb_strdup(b.len ? fb_buf_str(&b) : "aucune");
    fb_buf_free(&b);
    return s;
}

/* The value stored for reading `mask`: the option id (choix) or the array of ids. */
static json_t *reading_value(const struct run *r, uint64_t mask)
{
    const struct fb__state *st = cur(r);
    if (st->type == FB__Q_CHOICE) {
        for (size_t o = 0; o < st->n_choices && o < 64; o++)
            if (mask & ((uint64_t)1 << o))
                return json_string(st->choices[o].id);
        return NULL;
    }
    json_t *a = json_array();
    for (size_t o = 0; o < st->n_choices && o < 64; o++)
        if (mask & ((uint64_t)1 << o))
            (void)json_array_append_new(a, json_string(st->choices[o].id));
    return a;
}

void fb__run_say_offer(struct run *r, enum fb__textid intro, char *const *ids,
                       const char *const *labels, size_t n)
{
    fb_buf_t plain, html;
    fb_buf_init(&plain, MAX_TEXT_BYTES);
    fb_buf_init(&html, MAX_TEXT_BYTES);
    json_t *choices = json_array();
    if (fb__run_render_text(r, &r->d->texts[intro], &plain, &html) == 0) {
        fb_buf_t op, oh;
        fb_buf_init(&op, MAX_TEXT_BYTES);
        fb_buf_init(&oh, MAX_TEXT_BYTES);
        (void)fb__run_render_text(r, &r->d->texts[FB__T_AUTRE_CHOSE], &op, &oh);
        (void)fb_buf_puts(&html, "<p>");
        for (size_t i = 0; i <= n; i++) {
            const char *l = i < n ? labels[i] : fb_buf_str(&op);
            (void)fb__run_list_item(&plain, &html, i, l);
            (void)json_array_append_new(
                choices, fb_json_strings(2, "id", i < n ? ids[i] : "autre_chose", "label", l));
        }
        (void)fb_buf_puts(&html, "</p>");
        fb__run_say_bufs(r, &plain, &html, choices);
        fb_buf_free(&op);
        fb_buf_free(&oh);
    }
    json_decref(choices);
    fb_buf_free(&plain);
    fb_buf_free(&html);
}

/* Asks which of the pending readings the user meant: « Vous voulez dire : 1. … 2. … 3. Autre
 * chose », with a button per reading and one for « autre chose ». */
void fb__run_ask_confirm(struct run *r)
{
    const struct fb__sess *s = &r->s;
    char *ids[FB_MATCH_MAX_CANDIDATES] = {NULL}, *labels[FB_MATCH_MAX_CANDIDATES] = {NULL};
    for (size_t i = 0; i < s->n_confirm; i++) {
        ids[i] = reading_id(r, s->confirm[i]);
        labels[i] = reading_label(r, s->confirm[i]);
    }
    fb__run_say_offer(r, FB__T_CONFIRMER, ids, (const char *const *)labels, s->n_confirm);
    for (size_t i = 0; i < s->n_confirm; i++) {
        fb_free(ids[i]);
        fb_free(labels[i]);
    }
}

/* Keeps the readings of `m` (dropping the "je ne sais pas" option) pending and asks which one
 * was meant. False when none is left. */
static bool ask_readings(struct run *r, const fb_choice_match_t *m)
{
    const struct fb__state *st = cur(r);
    struct fb__sess *s = &r->s;
    uint64_t nsp = st->nsp_ok && st->n_choices < 64 ? (uint64_t)1 << st->n_choices : 0;
    s->n_confirm = 0;
    for (size_t i = 0; i < m->n; i++) {
        uint64_t mask = st->type == FB__Q_CHOICE ? (uint64_t)1 << m->cand[i] : m->cand[i];
        mask &= ~nsp;
        if ((mask || st->type == FB__Q_MULTI) && (st->type == FB__Q_MULTI || mask))
            s->confirm[s->n_confirm++] = mask;
    }
    if (s->n_confirm == 0)
        return false;
    fb__run_invalidate(r);
    fb__run_ask_confirm(r);
    return true;
}

/* Words that turn a confirmation down: the question is asked again. */
static const char *const confirm_no[] = {"non",
                                         "autre chose",
                                         "autre",
                                         "ni l un ni l autre",
                                         "aucun des deux",
                                         "aucune des deux",
                                         "autre_chose",
                                         "non merci",
                                         "pas du tout",
                                         "rien de tout ca"};

bool fb__run_is_decline(const char *folded)
{
    for (size_t i = 0; i < FB_ARRAY_SIZE(confirm_no); i++)
        if (strcmp(folded, confirm_no[i]) == 0)
            return true;
    return false;
}

/* True when `s` (a label or an id, NULL for none) folds to `folded`. */
static bool same_folded(const char *s, const char *folded)
{
    char f[256];
    if (!s)
        return false;
    size_t n = fb_text_fold(s, strlen(s), f, sizeof(f));
    return n < sizeof(f) && strcmp(f, folded) == 0;
}

/*
 * An answer while readings await confirmation: a reading's number, button or label, "oui" when
 * there is one reading, "non" / "autre chose" (the question again). Returns false when the
 * message is none of these: the pending readings are dropped and it is read as a new answer.
 */
static bool answer_confirm(struct run *r, const char *text, const char *choice)
{
    struct fb__sess *s = &r->s;
    size_t n = s->n_confirm;
    long pick = -1;
    bool again = false;
    if (choice) {
        for (size_t i = 0; i < n && pick < 0; i++) {
            char *id = reading_id(r, s->confirm[i]);
            if (strcmp(id, choice) == 0)
                pick = (long)i;
            fb_free(id);
        }
        again = pick < 0 && strcmp(choice, "autre_chose") == 0;
    } else if (strlen(text) <= MAX_INPUT) {
        char folded[256];
        size_t fl = fb_text_fold(text, strlen(text), folded, sizeof(folded));
        bool yes = false;
        fb_choice_t opts[FB_MATCH_MAX_CANDIDATES + 1];
        char *labels[FB_MATCH_MAX_CANDIDATES + 1] = {NULL};
        for (size_t i = 0; i < n; i++) {
            labels[i] = reading_label(r, s->confirm[i]);
            opts[i] = (fb_choice_t){labels[i], labels[i], NULL};
        }
        labels[n] = fb_strdup(r->d->texts[FB__T_AUTRE_CHOSE].plain
                                  ? json_string_value(r->d->texts[FB__T_AUTRE_CHOSE].plain)
                                  : "Autre chose");
        opts[n] = (fb_choice_t){"autre_chose", labels[n], NULL};
        /* a reading's own id or label first: « autre » picks an option « Autre », it does not
         * turn the readings down */
        for (size_t i = 0; fl < sizeof(folded) && i < n && pick < 0; i++) {
            char *id = reading_id(r, s->confirm[i]);
            if (same_folded(id, folded) || same_folded(labels[i], folded))
                pick = (long)i;
            fb_free(id);
        }
        again = pick < 0 && fl < sizeof(folded) && fb__run_is_decline(folded);
        size_t idx = 0;
        if (pick >= 0) {
            /* picked above */
        } else if (!again && n == 1 && fb_answer_yesno(text, &yes) == FB_ANSWER_OK) {
            pick = yes ? 0 : -1;
            again = !yes;
        } else if (!again && fb_answer_choice(opts, n + 1, text, &idx) == FB_ANSWER_OK) {
            if (idx < n)
                pick = (long)idx;
            else
                again = true;
        }
        for (size_t i = 0; i <= n; i++)
            fb_free(labels[i]);
    }
    if (pick < 0 && !again) {
        s->n_confirm = 0;
        return false;
    }
    uint64_t mask = pick >= 0 ? s->confirm[pick] : 0;
    s->n_confirm = 0;
    fb__run_invalidate(r);
    if (again) {
        fb__run_ask(r);
        return true;
    }
    json_t *v = reading_value(r, mask);
    if (v)
        fb__run_accept(r, v);
    else
        fb__run_ask(r);
    return true;
}

/* A number answer: fb_answer_number, and for a duration a date read as "since then"
 * ("depuis 2015", said back « Noté : 11 ans. »); "ça fait un moment" is not one year. */
static fb_answer_status_t answer_number(struct run *r, const char *text, json_t **value)
{
    const struct fb__state *st = cur(r);
    double x = 0;
    bool durations = st->unit == FB_UNIT_YEARS || st->unit == FB_UNIT_MONTHS, approx = false;
    fb_answer_status_t status = fb_answer_number(text, st->unit, st->min, st->max, &x);
    if (status == FB_ANSWER_OK && durations && vague_duration(text))
        status = FB_ANSWER_INVALID;
    if (durations && fb_answer_years_since(text, r->env->now, &x, &approx) == FB_ANSWER_OK) {
        if (st->unit == FB_UNIT_MONTHS)
            x *= 12;
        status = x >= st->min && x <= st->max ? FB_ANSWER_OK : FB_ANSWER_OUT_OF_RANGE;
        if (status == FB_ANSWER_OK) {
            fb_free(r->note);
            r->note = fb_asprintf("%s%g %s", approx ? "environ " : "", x,
                                  st->unit == FB_UNIT_MONTHS ? "mois"
                                  : x >= 2                   ? "ans"
                                                             : "an");
        }
    }
    if (status == FB_ANSWER_OK)
        *value = number_json(x);
    return status;
}

bool fb__run_would_parse(const struct run *r, const char *text)
{
    if (!text || !asking(r) || r->s.n_cand > 0 || r->s.n_confirm > 0 || strlen(text) > MAX_INPUT)
        return false;
    const struct fb__state *st = cur(r);
    fb_answer_status_t status = FB_ANSWER_INVALID;
    size_t idx = 0;
    fb_choice_match_t how = {FB_MATCH_EXACT, 0, {0}};
    switch (st->type) {
    case FB__Q_YESNO: {
        bool b = false;
        status = fb_answer_yesno(text, &b);
        if (status == FB_ANSWER_INVALID) {
            status = fb_answer_choice_in(st->aset, text, &idx);
            if (status == FB_ANSWER_OK && idx >= 2)
                status = FB_ANSWER_UNKNOWN;
        }
        break;
    }
    case FB__Q_CHOICE:
        status = fb_answer_choice_match(st->aset, text, &idx, &how);
        if (how.how == FB_MATCH_UNSURE && how.n > 0) /* readings to confirm: an answer */
            return status == FB_ANSWER_OK || status == FB_ANSWER_AMBIGUOUS;
        if (status == FB_ANSWER_OK && idx >= st->n_choices)
            status = how.how == FB_MATCH_EXACT ? FB_ANSWER_UNKNOWN : FB_ANSWER_INVALID;
        break;
    case FB__Q_MULTI: {
        uint64_t mask = 0;
        status = fb_answer_choices_match(st->aset, text, &mask, &how);
        if (how.how == FB_MATCH_UNSURE && how.n > 0)
            return status == FB_ANSWER_OK || status == FB_ANSWER_AMBIGUOUS;
        break;
    }
    case FB__Q_NUMBER: {
        double x = 0;
        bool approx = false;
        bool durations = st->unit == FB_UNIT_YEARS || st->unit == FB_UNIT_MONTHS;
        status = fb_answer_number(text, st->unit, st->min, st->max, &x);
        if (status == FB_ANSWER_OK && durations && vague_duration(text))
            status = FB_ANSWER_INVALID;
        if (durations && fb_answer_years_since(text, r->env->now, &x, &approx) == FB_ANSWER_OK)
            status = FB_ANSWER_OK;
        break;
    }
    case FB__Q_DATE: {
        fb_date_t dt = {0, 0, 0};
        status = fb_answer_date(text, r->env->now, st->future, &dt);
        break;
    }
    case FB__Q_TEXT:
    case FB__Q_COMMUNE:
    case FB__Q_NONE:
        return false;
    }
    return status == FB_ANSWER_OK || (status == FB_ANSWER_UNKNOWN && st->nsp_ok);
}

/* Notes the label(s) of a loosely understood choice `value`, said before the next message. */
static void note_choice(struct run *r, const json_t *value)
{
    const struct fb__state *st = cur(r);
    uint64_t mask = 0;
    if (json_is_string(value)) {
        int i = fb__run_choice_index(st, json_string_value(value));
        mask = i >= 0 && i < 64 ? (uint64_t)1 << i : 0;
    }
    for (size_t k = 0; json_is_array(value) && k < json_array_size(value); k++) {
        int i = fb__run_choice_index(st, json_string_value(json_array_get(value, k)));
        mask |= i >= 0 && i < 64 ? (uint64_t)1 << i : 0;
    }
    fb_free(r->note);
    r->note = reading_label(r, mask);
}

/* An answer to the current question: `text` typed, or `choice` (an option id) picked; one of
 * them is set (on_input() checks the event). */
void fb__run_answer(struct run *r, const char *text, const char *choice)
{
    FB_ASSERT(text || choice);
    const struct fb__state *st = cur(r);
    fb_answer_status_t status = FB_ANSWER_INVALID;
    json_t *value = NULL;
    size_t idx = 0;

    if (st->type == FB__Q_COMMUNE) {
        if (text && strlen(text) > MAX_COMMUNE)
            fb__run_fail(r, FB_ANSWER_INVALID);
        else
            answer_commune(r, text, choice);
        return;
    }
    if ((st->type == FB__Q_CHOICE || st->type == FB__Q_MULTI) && r->s.n_confirm > 0 &&
        answer_confirm(r, text, choice))
        return;
    fb_choice_match_t how = {FB_MATCH_EXACT, 0, {0}};
    if (choice) {
        if (strcmp(choice, "nsp") == 0) {
            status = FB_ANSWER_UNKNOWN;
        } else if (st->type == FB__Q_YESNO &&
                   (strcmp(choice, "oui") == 0 || strcmp(choice, "non") == 0)) {
            status = FB_ANSWER_OK;
            value = json_boolean(strcmp(choice, "oui") == 0);
        } else if (st->type == FB__Q_CHOICE && fb__run_choice_index(st, choice) >= 0) {
            status = FB_ANSWER_OK;
            value = json_string(choice);
        } else if (st->type == FB__Q_MULTI && fb__run_choice_index(st, choice) >= 0) {
            status = FB_ANSWER_OK;
            value = json_pack("[s]", choice);
        }
        if (!value && status != FB_ANSWER_UNKNOWN)
            text = choice; /* an unknown id: read it as text */
    }
    if (!value && status != FB_ANSWER_UNKNOWN) {
        size_t len = strlen(text);
        if (len > MAX_INPUT) {
            status = st->type == FB__Q_TEXT ? FB_ANSWER_OUT_OF_RANGE : FB_ANSWER_INVALID;
        } else {
            switch (st->type) {
            case FB__Q_YESNO: {
                bool b = false;
                status = fb_answer_yesno(text, &b);
                if (status == FB_ANSWER_INVALID) {
                    status = fb_answer_choice_in(st->aset, text, &idx);
                    b = idx == 0;
                    if (status == FB_ANSWER_OK && idx >= 2)
                        status = FB_ANSWER_UNKNOWN;
                }
                if (status == FB_ANSWER_OK)
                    value = json_boolean(b);
                break;
            }
            case FB__Q_CHOICE:
                status = fb_answer_choice_match(st->aset, text, &idx, &how);
                /* « qui sait, des logements »: options tied, with readings to offer */
                if ((status == FB_ANSWER_OK || status == FB_ANSWER_AMBIGUOUS) &&
                    how.how == FB_MATCH_UNSURE && how.n > 0) {
                    if (ask_readings(r, &how))
                        return;
                    status = st->nsp_ok ? FB_ANSWER_UNKNOWN : FB_ANSWER_INVALID;
                } else if (status == FB_ANSWER_OK && idx >= st->n_choices) {
                    /* "je ne sais pas" read loosely ("pas une usine") is no such answer */
                    status = how.how == FB_MATCH_EXACT ? FB_ANSWER_UNKNOWN : FB_ANSWER_INVALID;
                } else if (status == FB_ANSWER_OK) {
                    value = json_string(st->choices[idx].id);
                }
                break;
            case FB__Q_MULTI: {
                uint64_t mask = 0;
                status = fb_answer_choices_match(st->aset, text, &mask, &how);
                if (status == FB_ANSWER_OK && how.how == FB_MATCH_UNSURE) {
                    if (ask_readings(r, &how))
                        return;
                    status = FB_ANSWER_INVALID;
                }
                if (status == FB_ANSWER_OK) {
                    uint64_t nsp = st->nsp_ok ? (uint64_t)1 << st->n_choices : 0;
                    if (nsp && mask == nsp) {
                        status = FB_ANSWER_UNKNOWN;
                        break;
                    }
                    mask &= ~nsp;
                    value = json_array();
                    for (size_t i = 0; i < st->n_choices; i++)
                        if (mask & ((uint64_t)1 << i))
                            (void)json_array_append_new(value, json_string(st->choices[i].id));
                }
                break;
            }
            case FB__Q_NUMBER:
                status = answer_number(r, text, &value);
                break;
            case FB__Q_TEXT: {
                char *out = NULL;
                status = fb_answer_text(text, st->tmin, st->tmax, &out);
                if (status == FB_ANSWER_OK) {
                    value = json_string(out);
                    if (!value)
                        status = FB_ANSWER_INVALID;
                }
                fb_free(out);
                break;
            }
            case FB__Q_DATE: {
                fb_date_t dt = {0, 0, 0};
                status = fb_answer_date(text, r->env->now, st->future, &dt);
                if (status == FB_ANSWER_OK) {
                    char buf[32];
                    if (dt.month <= 0)
                        snprintf(buf, sizeof(buf), "%04d", dt.year);
                    else if (dt.day <= 0)
                        snprintf(buf, sizeof(buf), "%04d-%02d", dt.year, dt.month);
                    else
                        snprintf(buf, sizeof(buf), "%04d-%02d-%02d", dt.year, dt.month, dt.day);
                    value = json_string(buf);
                }
                break;
            }
            case FB__Q_COMMUNE:
            case FB__Q_NONE:
                break;
            }
        }
    }
    if (status == FB_ANSWER_OK && value) {
        if (how.how == FB_MATCH_LOOSE)
            note_choice(r, value);
        fb__run_accept(r, value);
        return;
    }
    json_decref(value);
    if (status == FB_ANSWER_OK)
        status = FB_ANSWER_INVALID;
    /* "7" among 3 options is not understood rather than out of range: the question's own
     * reprompts say best what to answer */
    if (status == FB_ANSWER_OUT_OF_RANGE &&
        (st->type == FB__Q_CHOICE || st->type == FB__Q_MULTI || st->type == FB__Q_YESNO))
        status = FB_ANSWER_INVALID;
    if (status == FB_ANSWER_UNKNOWN && st->nsp_ok) {
        fb__run_accept(r, json_string(FB_NSP_VALUE));
        return;
    }
    fb__run_fail(r, status);
}

/* ---- the reminder's question about a step ---------------------------------------------------- */

/* Sets the status of roadmap entry `i` (the user's change, dated env->now): `step`, `stat`. */
static void set_step_status(struct run *r, int i, int status)
{
    struct fb__sess *s = &r->s;
    s->status[i] = (unsigned char)status;
    int32_t day = fb__day_of(r->env->now);
    if (s->day)
        s->day[i] = day > 0 && day <= FB__MAX_DAY ? day : 0;
    fb__run_invalidate(r);
    fb__run_step_effect(r, (size_t)i, (unsigned)status);
    fb__run_stat_effect(r, "step_updated");
    fb__run_set_etape(r, i);
}

/*
 * An answer to the pending question about a step (r->s.pending_step): the reminder's "Où en
 * êtes-vous de l'étape X ?" (five answers, "plus tard" among them), or, when the user picked the
 * step (`pending_pick`), "Quel est le statut de l'étape X ?" (the six statuses). To the
 * reminder, a "plus tard" with a delay ("plus tard dans 3 mois", "dans 2 semaines": see
 * fb_text_later) arms the next reminder after that delay and says `etape_plus_tard_delai`; a
 * number that is no delay ("dans 3", "plus tard 0 jour") is a plain "plus tard".
 */
void fb__run_answer_step(struct run *r, const char *text, const char *choice)
{
    const fb_dialog_t *d = r->d;
    struct fb__sess *s = &r->s;
    bool pick = s->pending_pick;
    const fb_choice_t *opts = pick ? d->all_status_choices : d->status_choices;
    size_t n = pick ? d->n_all_status_choices : d->n_status_choices;
    size_t idx = 0;
    fb_answer_status_t st = FB_ANSWER_INVALID;
    for (size_t i = 0; choice && i < n; i++)
        if (strcmp(choice, opts[i].id) == 0) {
            idx = i;
            st = FB_ANSWER_OK;
        }
    fb_delay_t delay = {0};
    fb_later_t later = FB_LATER_NO;
    if (!pick && !choice && strlen(text) <= MAX_INPUT)
        later = fb_text_later(text, &delay);
    for (size_t i = 0; later != FB_LATER_NO && i < n; i++)
        if (strcmp(opts[i].id, "plus_tard") == 0) {
            idx = i;
            st = FB_ANSWER_OK;
        }
    if (st != FB_ANSWER_OK && !choice && strlen(text) <= MAX_INPUT)
        st = fb_answer_choice_in(pick ? d->all_status_set : d->status_set, text, &idx);
    if (st != FB_ANSWER_OK) {
        s->fails++;
        if (s->fails >= 3) {
            s->fails = 0;
            s->pending_step = -1;
            s->pending_pick = false;
            fb__run_say_builtin(r, FB__T_FIN_ATTEINTE);
            return;
        }
        fb__run_set_etape(r, s->pending_step);
        fb__run_ask_step(r, &d->texts[FB__T_INCOMPRIS]);
        return;
    }
    int item = s->pending_step;
    s->pending_step = -1;
    s->pending_pick = false;
    s->fails = 0;
    int status = fb__status_index(opts[idx].id);
    if (status < 0)
        fb__run_set_etape(r, item); /* `etape` in the texts of "plus tard" */
    if (status < 0 && later == FB_LATER_DELAY && fb__run_relance_cfg(r) && !s->muted) {
        char buf[32];
        (void)fb_text_delay_format(&delay, buf, sizeof(buf));
        fb__run_drop(&r->c_delai);
        r->c_delai = json_string(buf);
        fb__run_say_builtin(r, FB__T_ETAPE_PLUS_TARD_DELAI);
        fb__run_arm_after(r, delay.seconds);
        return;
    }
    if (status < 0 && s->muted) { /* "plus tard" after "stop": no promise of a reminder */
        fb__run_say_builtin(r, FB__T_RELANCES_ARRETEES);
    } else if (status < 0) { /* "plus tard" */
        fb__run_say_builtin(r, FB__T_ETAPE_PLUS_TARD);
    } else {
        set_step_status(r, item, status);
        fb__run_say_builtin(r, pick ? FB__T_ETAPE_CHANGEE : FB__T_ETAPE_NOTEE);
    }
    fb__run_arm(r);
}

/* ---- the step list: "mes étapes", "étape 2 faite" -------------------------------------------- */

/* Words that may sit between "étape N" and the status ("l'étape 3 est en cours"). */
static const char *const step_fillers[] = {
    "c est ",    "est ",    "a ete ",  "elle est ",   "elle ",      "passe a ",
    "passee a ", "passe ",  "passee ", "maintenant ", "desormais ", "donc ",
    "bien ",     "statut ", "etait ",  "sera ",       "au statut ", "en statut ",
};
static const char *const step_trailers[] = {" maintenant", " desormais", " merci", " aujourd hui"};
/* Words around a status written before "étape N" ("j'ai terminé l'étape 2"). */
static const char *const step_leaders[] = {"j ai ", "on a ", "nous avons ", "c est ", "ai "};
static const char *const step_enders[] = {" l", " la", " de l", " pour l", " avec l"};

/* Removes the `fillers` found at the start of `s` and the `trailers` found at its end,
 * repeatedly, never leaving it empty. */
static void strip_words(char *s, const char *const *fillers, size_t n_fillers,
                        const char *const *trailers, size_t n_trailers)
{
    for (bool again = true; again;) {
        again = false;
        for (size_t i = 0; i < n_fillers; i++) {
            size_t fl = strlen(fillers[i]);
            if (strncmp(s, fillers[i], fl) == 0 && s[fl]) {
                memmove(s, s + fl, strlen(s + fl) + 1);
                again = true;
            }
        }
        size_t rl = strlen(s);
        for (size_t i = 0; i < n_trailers; i++) {
            size_t tl = strlen(trailers[i]);
            if (rl > tl && strcmp(s + rl - tl, trailers[i]) == 0) {
                s[rl - tl] = '\0';
                again = true;
                break;
            }
        }
    }
}

/*
 * Reads "étape 2 faite", "l'étape 3 est en cours", "étape 1 : pas concernée", "étape 4". Returns
 * false when `text` is not about a numbered step; else sets `*num` (as typed, not checked) and
 * `*status` (the status index, or -1 when none was given or it was not understood).
 */
bool fb__run_parse_step_text(const fb_dialog_t *d, const char *text, long *num, int *status)
{
    char buf[256];
    size_t len = strlen(text);
    *num = 0;
    *status = -1;
    if (len > 200)
        return false;
    size_t n = fb_text_fold(text, len, buf, sizeof(buf));
    if (n >= sizeof(buf))
        return false;
    /* "etape" among the first six words */
    const char *p = buf;
    for (int w = 0; w < 6; w++) {
        if (strncmp(p, "etape ", 6) == 0)
            break;
        const char *sp = strchr(p, ' ');
        if (!sp || w == 5)
            return false;
        p = sp + 1;
    }
    char before[256];
    snprintf(before, sizeof(before), "%.*s", p > buf ? (int)(p - buf - 1) : 0, buf);
    p += 6;
    if (p[0] == 'n' && (p[1] == ' ' || (p[1] >= '0' && p[1] <= '9'))) /* "n°2" */
        p += p[1] == ' ' ? 2 : 1;
    size_t digits = 0;
    while (p[digits] >= '0' && p[digits] <= '9')
        digits++;
    if (digits == 0 || digits > 3 || (p[digits] != ' ' && p[digits] != '\0'))
        return false;
    *num = strtol(p, NULL, 10);
    p += digits;
    while (*p == ' ')
        p++;
    char rest[256];
    snprintf(rest, sizeof(rest), "%s", p);
    strip_words(rest, step_fillers, FB_ARRAY_SIZE(step_fillers), step_trailers,
                FB_ARRAY_SIZE(step_trailers));
    if (!rest[0]) { /* nothing after the number: the status may come first */
        strip_words(before, step_leaders, FB_ARRAY_SIZE(step_leaders), step_enders,
                    FB_ARRAY_SIZE(step_enders));
        if (strcmp(before, "l") != 0 && strcmp(before, "la") != 0)
            snprintf(rest, sizeof(rest), "%s", before);
    }
    size_t idx = 0;
    if (rest[0] && fb_answer_choice_in(d->all_status_set, rest, &idx) == FB_ANSWER_OK)
        *status = fb__status_index(d->all_status_choices[idx].id);
    return true;
}

/* Says `head`, the numbered steps with their status and date, and how to change one, with a
 * button per step (ids "etape_N"). */
void fb__run_say_steps(struct run *r, enum fb__textid head)
{
    r->steps_listed = true;
    fb_buf_t plain, html;
    fb_buf_init(&plain, MAX_TEXT_BYTES);
    fb_buf_init(&html, MAX_TEXT_BYTES);
    json_t *choices = json_array();
    if (fb__run_render_text(r, &r->d->texts[head], &plain, &html) == 0) {
        if (r->s.n_road == 0) {
            (void)fb_buf_puts(&plain, "\n(aucune étape)");
            (void)fb_buf_puts(&html, "<p>(aucune étape)</p>");
        }
        fb__run_list_roadmap_titled(r, &plain, &html, "", "");
        fb_buf_t ap, ah;
        fb_buf_init(&ap, MAX_TEXT_BYTES);
        fb_buf_init(&ah, MAX_TEXT_BYTES);
        /* while an advisor has the conversation (no_ask), buttons are dropped and typed text
         * goes to the advisor: « écrivez « étape 2 faite » » and the step buttons cannot work */
        if (r->s.n_road > 0 && !r->no_ask &&
            fb__run_render_text(r, &r->d->texts[FB__T_ETAPES_AIDE], &ap, &ah) == 0) {
            if (fb_buf_puts(&plain, "\n\n") == 0)
                (void)fb_buf_puts(&plain, fb_buf_str(&ap));
            (void)fb_buf_puts(&html, fb_buf_str(&ah));
        }
        fb_buf_free(&ap);
        fb_buf_free(&ah);
        for (size_t i = 0; i < r->s.n_road && !r->no_ask; i++) {
            char id[32], label[32];
            snprintf(id, sizeof(id), "etape_%zu", i + 1);
            snprintf(label, sizeof(label), "Étape %zu", i + 1);
            (void)json_array_append_new(choices, fb_json_strings(2, "id", id, "label", label));
        }
        fb__run_say_bufs(r, &plain, &html, json_array_size(choices) ? choices : NULL);
    }
    json_decref(choices);
    fb_buf_free(&plain);
    fb_buf_free(&html);
}

/* "étape N [statut]" once the roadmap is stored: sets the status, or asks for it. */
void fb__run_step_command(struct run *r, long num, int status)
{
    struct fb__sess *s = &r->s;
    s->pending_step = -1;
    s->pending_pick = false;
    s->fails = 0;
    if (num < 1 || (size_t)num > s->n_road) {
        fb__run_say_steps(r, FB__T_ETAPE_INCONNUE);
        return;
    }
    int i = (int)num - 1;
    if (status >= 0) {
        set_step_status(r, i, status);
        fb__run_say_builtin(r, FB__T_ETAPE_CHANGEE);
        fb__run_arm(r);
        return;
    }
    s->pending_step = i;
    s->pending_pick = true;
    fb__run_set_etape(r, i);
    fb__run_ask_step(r, &r->d->texts[FB__T_ETAPE_STATUT]);
}

/* The step number of a button id "etape_N", or 0. */
long fb__run_step_choice(const char *choice)
{
    if (strncmp(choice, "etape_", 6) != 0)
        return 0;
    const char *p = choice + 6;
    size_t digits = 0;
    while (p[digits] >= '0' && p[digits] <= '9')
        digits++;
    if (digits == 0 || digits > 3 || p[digits] != '\0')
        return 0;
    return strtol(p, NULL, 10);
}
