/* SPDX-License-Identifier: MIT */
/*
 * machine.c - fb_engine_step(): one event through the dialog graph, producing the new session
 * and the effects. Pure: no I/O, no clock (env->now), no randomness, no global state.
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
 * Values computed for a step are cached in the run and freed with it.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/effects.h"
#include "engine/geo.h"
#include "engine/internal.h"
#include "engine/text.h"
#include "frichebot/alloc.h"
#include "frichebot/err.h"

#define MAX_TEXT_BYTES (64u << 10) /* longest message we render */
#define MAX_INPUT      (16u << 10) /* longer user texts are not parsed (a polite refusal) */
#define TIMER_ID       "relance"
#define MAX_COMMUNE    200 /* longer texts are no commune name: not searched (geo scans cost) */

/* One step in progress. */
struct run {
    const fb_engine_env_t *env;
    const fb_dialog_t *d;      /* the version the session runs on */
    const fb_dialog_t *latest; /* the current version (restarts move there) */
    struct fb__sess s;
    json_t *effects;
    fb_expr_env_t xenv;
    /* values computed for lookup(), dropped whenever answers or the state change */
    json_t *c_road, *c_question, *c_help, *c_fails, *c_min, *c_max, *c_etape;
    json_t *c_delai;     /* "3 mois": the delay the user just asked for, or NULL */
    json_t **c_communes; /* per slot */
    json_t **c_cats;     /* per catalogue: its items whose `si` holds */
    int guard;           /* > 0 while rendering the question or its help (no recursion) */
};

static const char *const month_names[12] = {"janvier",   "février", "mars",     "avril",
                                            "mai",       "juin",    "juillet",  "août",
                                            "septembre", "octobre", "novembre", "décembre"};

static const struct fb__state *cur(const struct run *r)
{
    return &r->d->states[r->s.state];
}

static const fb_geo_t *geo_of(const struct run *r)
{
    return r->env->geo ? r->env->geo : r->d->geo;
}

/*
 * A new JSON string of `len` bytes. Every source of text is valid UTF-8 (YAML, the geo index,
 * answers.c's checks), so this never happens in practice; should it, non-ASCII bytes become
 * '?' rather than the message being lost.
 */
static json_t *text_json(const char *s, size_t len)
{
    json_t *v = json_stringn(s, len);
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

/* ---- caches and name lookup ------------------------------------------------------------------ */

/* Releases the reference at *v (new or NULL) and clears it. */
static void drop(json_t **v)
{
    json_decref(*v);
    *v = NULL;
}

/* Forgets every cached value: call after changing answers, tags, state or roadmap. */
static void invalidate(struct run *r)
{
    drop(&r->c_road);
    drop(&r->c_question);
    drop(&r->c_help);
    drop(&r->c_fails);
    drop(&r->c_min);
    drop(&r->c_max);
    if (r->c_communes)
        for (size_t i = 0; i < r->d->n_slots; i++)
            drop(&r->c_communes[i]);
    if (r->c_cats)
        for (size_t i = 0; i < r->d->n_catalogues; i++)
            drop(&r->c_cats[i]);
}

/* True when catalogue item `i` applies: it has no `si:`, or its condition holds. */
static bool item_applies(struct run *r, size_t i)
{
    const fb_expr_t *c = r->d->items[i].cond;
    return !c || fb_expr_true(c, &r->xenv);
}

/* A catalogue's name as a template name: its items whose `si:` holds, in file order (new). */
static json_t *catalogue_json(struct run *r, size_t cat)
{
    const struct fb__catalogue *c = &r->d->catalogues[cat];
    json_t *a = json_array();
    for (size_t i = c->first; i < c->first + c->count; i++)
        if (item_applies(r, i))
            (void)json_array_append(a, r->d->items[i].obj);
    return a;
}

/* True for the stored "je ne sais pas" (`v` borrowed, may be NULL). */
static bool is_nsp(const json_t *v)
{
    return json_is_string(v) && strcmp(json_string_value(v), FB_NSP_VALUE) == 0;
}

/*
 * Computes the roadmap the rules give for the current answers and tags: `items` (ascending
 * item indices) and `status`, both new arrays of `*n` entries.
 */
static void compute_roadmap(struct run *r, int **items, unsigned char **status, size_t *n)
{
    const fb_dialog_t *d = r->d;
    unsigned char *in = fb_calloc(d->n_items + 1, 1);
    unsigned char *st = fb_calloc(d->n_items + 1, 1);
    for (size_t i = 0; i < d->n_rules; i++) {
        const struct fb__rule *rule = &d->rules[i];
        if (rule->cond && !fb_expr_true(rule->cond, &r->xenv))
            continue;
        for (size_t j = 0; j < rule->n_items; j++) {
            int it = rule->items[j];
            if (!in[it] && !item_applies(r, (size_t)it))
                continue;
            if (!in[it]) {
                in[it] = 1;
                st[it] = (unsigned char)rule->status;
            } else if (st[it] == FB__ST_A_FAIRE) {
                st[it] = (unsigned char)rule->status;
            }
        }
    }
    *n = 0;
    *items = fb_calloc(d->n_items + 1, sizeof(int));
    *status = fb_calloc(d->n_items + 1, 1);
    for (size_t i = 0; i < d->n_items; i++)
        if (in[i]) {
            (*items)[*n] = (int)i;
            (*status)[*n] = st[i];
            (*n)++;
        }
    fb_free(in);
    fb_free(st);
}

/* Appends "3 décembre 2026" for day number `day`. */
static void format_day(fb_buf_t *out, int32_t day)
{
    int y, m, dd;
    fb__day_ymd(day, &y, &m, &dd);
    (void)fb_buf_printf(out, "%d%s %s %d", dd, dd == 1 ? "er" : "", month_names[(m - 1) % 12], y);
}

/*
 * One roadmap entry as a new object: the item's fields, `id`, `catalogue`, `statut`, `numero`
 * (its 1-based position in the roadmap, the number the user types in "étape 2 faite"),
 * `statut_texte` ("déjà faite") and, when the user changed its status, `modifie_le` ("3 décembre
 * 2026").
 */
static json_t *road_entry(const fb_dialog_t *d, int item, unsigned status, size_t index,
                          int32_t day)
{
    json_t *o = json_copy(d->items[item].obj);
    if (!o)
        return json_object();
    (void)json_object_set_new(o, "id", json_string(d->items[item].id));
    (void)json_object_set_new(o, "statut", json_string(fb__status_names[status]));
    (void)json_object_set_new(o, "numero", json_integer((json_int_t)index + 1));
    (void)json_object_set_new(o, "statut_texte", json_string(fb__status_labels[status]));
    if (day > 0) {
        fb_buf_t b;
        fb_buf_init(&b, 64);
        format_day(&b, day);
        (void)json_object_set_new(o, "modifie_le", json_string(fb_buf_str(&b)));
        fb_buf_free(&b);
    }
    return o;
}

/* `feuille_de_route`: the stored roadmap once the guided part ended, else the rules' current one.
 */
static json_t *roadmap_json(struct run *r)
{
    json_t *a = json_array();
    if (r->s.ended) {
        for (size_t i = 0; i < r->s.n_road; i++)
            (void)json_array_append_new(
                a, road_entry(r->d, r->s.road[i], r->s.status[i], i, r->s.day ? r->s.day[i] : 0));
        return a;
    }
    int *items;
    unsigned char *status;
    size_t n;
    compute_roadmap(r, &items, &status, &n);
    for (size_t i = 0; i < n; i++)
        (void)json_array_append_new(a, road_entry(r->d, items[i], status[i], i, 0));
    fb_free(items);
    fb_free(status);
    return a;
}

static int render_text(struct run *r, const struct fb__text *t, fb_buf_t *plain, fb_buf_t *html);

/* Renders `t` to a new plain-text JSON string (NULL when absent or on failure). */
static json_t *render_plain(struct run *r, const struct fb__text *t)
{
    if (!t->t)
        return NULL;
    if (t->plain)
        return json_incref(t->plain);
    fb_buf_t b;
    fb_buf_init(&b, MAX_TEXT_BYTES);
    json_t *v = NULL;
    r->guard++;
    if (render_text(r, t, &b, NULL) == 0)
        v = text_json(fb_buf_str(&b), b.len);
    r->guard--;
    fb_buf_free(&b);
    return v;
}

/*
 * The value of built-in name `name` (`len` bytes), computed once per step and cached in the run:
 * borrowed, valid until invalidate() or the end of the step; NULL when it has no value here.
 */
static const json_t *builtin(struct run *r, const char *name, size_t len)
{
    const struct fb__state *st = cur(r);
#define IS(lit) (len == sizeof(lit) - 1 && memcmp(name, lit, len) == 0)
    if (IS("feuille_de_route")) {
        if (!r->c_road)
            r->c_road = roadmap_json(r);
        return r->c_road;
    }
    if (IS("tentatives")) {
        if (!r->c_fails)
            r->c_fails = json_integer(r->s.fails);
        return r->c_fails;
    }
    if (IS("etape"))
        return r->c_etape;
    if (IS("delai"))
        return r->c_delai;
    if (st->type == FB__Q_NONE || r->guard > 0)
        return NULL;
    if (IS("question")) {
        if (!r->c_question)
            r->c_question = render_plain(r, &st->text);
        return r->c_question;
    }
    if (IS("aide")) {
        if (!r->c_help)
            r->c_help = render_plain(r, &st->help);
        return r->c_help;
    }
    if (IS("min") || IS("max")) {
        bool is_min = IS("min");
        json_t **c = is_min ? &r->c_min : &r->c_max;
        if (!*c) {
            if (st->type == FB__Q_NUMBER) {
                double v = is_min ? st->min : st->max;
                if (fabs(v) < 1e299)
                    *c = v == floor(v) && fabs(v) < 1e15 ? json_integer((json_int_t)v)
                                                         : json_real(v);
            } else if (st->type == FB__Q_TEXT) {
                *c = json_integer((json_int_t)(is_min ? st->tmin : st->tmax));
            }
        }
        return *c;
    }
#undef IS
    return NULL;
}

/* fb_expr_env_t.lookup: a slot (with fields) or a built-in name. */
static const json_t *lookup(void *arg, const char *name)
{
    struct run *r = arg;
    const fb_dialog_t *d = r->d;
    const char *dot = strchr(name, '.');
    size_t len = dot ? (size_t)(dot - name) : strlen(name);
    const json_t *v;
    int slot = fb__strmap_getn(&d->slot_map, name, len);
    if (slot >= 0) {
        v = json_object_getn(r->s.answers, name, len);
        if (v && d->slots[slot].type == FB__Q_COMMUNE && json_is_object(v)) {
            if (!r->c_communes)
                r->c_communes = fb_calloc(d->n_slots, sizeof(json_t *));
            if (!r->c_communes[slot])
                r->c_communes[slot] = fb__commune_expand(geo_of(r), v);
            v = r->c_communes[slot];
        }
    } else {
        v = builtin(r, name, len);
        for (size_t c = 0; !v && c < d->n_catalogues; c++)
            if (strlen(d->catalogues[c].name) == len &&
                memcmp(d->catalogues[c].name, name, len) == 0) {
                if (!r->c_cats)
                    r->c_cats = fb_calloc(d->n_catalogues + 1, sizeof(json_t *));
                if (!r->c_cats[c])
                    r->c_cats[c] = catalogue_json(r, c);
                v = r->c_cats[c];
            }
    }
    while (v && dot) {
        name = dot + 1;
        dot = strchr(name, '.');
        len = dot ? (size_t)(dot - name) : strlen(name);
        v = json_is_object(v) ? json_object_getn(v, name, len) : NULL;
    }
    return v;
}

/* fb_expr_env_t.has_tag */
static bool has_tag(void *arg, const char *tag)
{
    struct run *r = arg;
    int t = fb__strmap_get(&r->d->tag_map, tag);
    return t >= 0 && r->s.tags[t];
}

/* Renders `t` with the run's names into `plain`/`html` (either may be NULL). 0 or FB_ETOOBIG. */
static int render_text(struct run *r, const struct fb__text *t, fb_buf_t *plain, fb_buf_t *html)
{
    return fb__text_render(t, &r->xenv, plain, html);
}

/* ---- effects --------------------------------------------------------------------------------- */

/* Appends effect `e` (stolen; NULL is ignored). */
static void effect(struct run *r, json_t *e)
{
    if (e)
        (void)json_array_append_new(r->effects, e);
}

/* Appends a `say` effect; `text` and `html` are stolen, `choices` borrowed (may be NULL). */
static void say_new(struct run *r, json_t *text, json_t *html, const json_t *choices)
{
    if (!text || !html) {
        json_decref(text);
        json_decref(html);
        return;
    }
    json_t *e = json_object();
    (void)json_object_set_new(e, "type", json_string(fb_effect_name(FB_EFFECT_SAY)));
    (void)json_object_set_new(e, "text", text);
    (void)json_object_set_new(e, "html", html);
    if (choices)
        (void)json_object_set(e, "choices", (json_t *)(uintptr_t)choices);
    effect(r, e);
}

/* Appends a `say` effect with the contents of two buffers (which are emptied). */
static void say_bufs(struct run *r, fb_buf_t *plain, fb_buf_t *html, const json_t *choices)
{
    say_new(r, text_json(fb_buf_str(plain), plain->len), text_json(fb_buf_str(html), html->len),
            choices);
    fb_buf_reset(plain);
    fb_buf_reset(html);
}

/* Says text `t` (rendered), followed by an optional list (plain/html) and choices. */
static void say_text(struct run *r, const struct fb__text *t, const char *list_plain,
                     const char *list_html, const json_t *choices)
{
    if (t->plain && !list_plain) {
        say_new(r, json_incref(t->plain), json_incref(t->html), choices);
        return;
    }
    fb_buf_t plain, html;
    fb_buf_init(&plain, MAX_TEXT_BYTES);
    fb_buf_init(&html, MAX_TEXT_BYTES);
    if (render_text(r, t, &plain, &html) == 0) {
        if (list_plain) {
            (void)fb_buf_printf(&plain, "%s%s", plain.len ? "\n\n" : "", list_plain);
            (void)fb_buf_puts(&html, list_html);
        }
        say_bufs(r, &plain, &html, choices);
    }
    fb_buf_free(&plain);
    fb_buf_free(&html);
}

/* Says built-in text `which` (or its override under `textes:`). */
static void say_builtin(struct run *r, enum fb__textid which)
{
    say_text(r, &r->d->texts[which], NULL, NULL, NULL);
}

/* Appends an effect with no field but its type (`forget`, `end`, `cancel`). */
static void simple_effect(struct run *r, fb_effect_t type)
{
    effect(r, fb_effect_new(type));
}

/* Appends `stat` effect `name`. */
static void stat_effect(struct run *r, const char *name)
{
    effect(r, json_pack("{s:s, s:s}", "type", fb_effect_name(FB_EFFECT_STAT), "name", name));
}

/* Appends a `cancel` of every reminder. */
static void cancel_all(struct run *r)
{
    simple_effect(r, FB_EFFECT_CANCEL);
}

/* Appends a `schedule` of reminder "relance" in `after` seconds. */
static void schedule(struct run *r, long long after, const char *reason)
{
    effect(r, json_pack("{s:s, s:s, s:I, s:s}", "type", fb_effect_name(FB_EFFECT_SCHEDULE), "id",
                        TIMER_ID, "after", (json_int_t)after, "reason", reason));
}

/* ---- summaries ------------------------------------------------------------------------------- */

/* Appends a number the French way ("2,5", "12 000") and its unit. */
static void format_number(fb_buf_t *out, const json_t *v, fb_unit_t unit)
{
    static const char *const suffix[] = {"", " m²", " ha", " €", " ans", " mois"};
    (void)fb_template_format_value(v, out);
    if ((size_t)unit < FB_ARRAY_SIZE(suffix))
        (void)fb_buf_puts(out, suffix[unit]);
}

/* Appends "YYYY", "mars 2027" or "15 mars 2027" for a stored date. */
static void format_date(fb_buf_t *out, const char *s)
{
    size_t n = strlen(s);
    long y = strtol(s, NULL, 10);
    long m = n >= 7 ? strtol(s + 5, NULL, 10) : 0;
    long day = n >= 10 ? strtol(s + 8, NULL, 10) : 0;
    if (m < 1 || m > 12) {
        (void)fb_buf_printf(out, "%ld", y);
        return;
    }
    if (day > 0)
        (void)fb_buf_printf(out, "%ld%s ", day, day == 1 ? "er" : "");
    (void)fb_buf_printf(out, "%s %ld", month_names[m - 1], y);
}

/* Appends the label of choice `id` of question `st`, or the id itself. */
static void format_choice(fb_buf_t *out, const struct fb__state *st, const char *id)
{
    for (size_t i = 0; i < st->n_choices; i++)
        if (strcmp(st->choices[i].id, id) == 0) {
            (void)fb_buf_puts(out, st->choices[i].label);
            return;
        }
    (void)fb_buf_puts(out, id);
}

/* Appends an answer as a person would read it. */
static void format_answer(struct run *r, fb_buf_t *out, int slot, const json_t *v)
{
    const fb_dialog_t *d = r->d;
    const struct fb__state *st = slot >= 0 ? &d->states[d->slots[slot].state] : NULL;
    enum fb__qtype type = slot >= 0 ? d->slots[slot].type : FB__Q_NONE;
    if (is_nsp(v)) {
        (void)fb_buf_puts(out, "je ne sais pas");
        return;
    }
    switch (type) {
    case FB__Q_CHOICE:
        if (json_is_string(v)) {
            format_choice(out, st, json_string_value(v));
            return;
        }
        break;
    case FB__Q_MULTI:
        if (json_is_array(v)) {
            if (json_array_size(v) == 0)
                (void)fb_buf_puts(out, "aucun");
            for (size_t i = 0; i < json_array_size(v); i++) {
                const json_t *e = json_array_get(v, i);
                if (i)
                    (void)fb_buf_puts(out, ", ");
                if (json_is_string(e))
                    format_choice(out, st, json_string_value(e));
            }
            return;
        }
        break;
    case FB__Q_NUMBER:
        if (json_is_number(v)) {
            format_number(out, v, st->unit);
            return;
        }
        break;
    case FB__Q_DATE:
        if (json_is_string(v)) {
            format_date(out, json_string_value(v));
            return;
        }
        break;
    case FB__Q_COMMUNE: {
        json_t *c = fb__commune_expand(geo_of(r), v);
        if (c) {
            const char *dep = json_string_value(json_object_get(c, "departement"));
            (void)fb_buf_puts(out, json_string_value(json_object_get(c, "nom")));
            if (dep)
                (void)fb_buf_printf(out, " (%s)", dep);
            json_decref(c);
            return;
        }
        break;
    }
    case FB__Q_NONE:
    case FB__Q_YESNO:
    case FB__Q_TEXT:
        break;
    }
    (void)fb_template_format_value(v, out);
}

/* The label of a slot in summaries: the question's `libelle`, else the slot name. */
static const char *slot_label(const fb_dialog_t *d, int slot, const char *key)
{
    if (slot >= 0 && d->states[d->slots[slot].state].label)
        return d->states[d->slots[slot].state].label;
    return key;
}

/* Appends one list item "label : value" to both outputs (HTML escaped). */
static void list_item(fb_buf_t *plain, fb_buf_t *html, const char *label, const char *value)
{
    (void)fb_buf_printf(plain, "\n• %s : %s", label, value);
    (void)fb_buf_puts(html, "<li>");
    (void)fb_template_html_escape(label, strlen(label), html);
    (void)fb_buf_puts(html, " : ");
    (void)fb_template_html_escape(value, strlen(value), html);
    (void)fb_buf_puts(html, "</li>");
}

/* Appends the answers as a list under the heading `title`. */
static void list_answers(struct run *r, fb_buf_t *plain, fb_buf_t *html, const char *title)
{
    const char *key;
    json_t *v;
    fb_buf_t val;
    fb_buf_init(&val, MAX_TEXT_BYTES);
    (void)fb_buf_printf(plain, "\n\n%s", title);
    (void)fb_buf_printf(html, "<p>%s</p>", title);
    if (json_object_size(r->s.answers) == 0) {
        (void)fb_buf_puts(plain, "\n(aucune réponse pour l'instant)");
        (void)fb_buf_puts(html, "<p>(aucune réponse pour l'instant)</p>");
        fb_buf_free(&val);
        return;
    }
    (void)fb_buf_puts(html, "<ul>");
    json_object_foreach(r->s.answers, key, v)
    {
        int slot = fb__strmap_get(&r->d->slot_map, key);
        fb_buf_reset(&val);
        format_answer(r, &val, slot, v);
        list_item(plain, html, slot_label(r->d, slot, key), fb_buf_str(&val));
    }
    (void)fb_buf_puts(html, "</ul>");
    fb_buf_free(&val);
}

/*
 * Appends the roadmap (stored, or the rules' current one) as a numbered list under `title`:
 * "2. Titre : faite (le 3 décembre 2026)". The numbers are the ones "étape 2 faite" uses.
 */
static void list_roadmap_titled(struct run *r, fb_buf_t *plain, fb_buf_t *html,
                                const char *title_plain, const char *title_html)
{
    const json_t *road = builtin(r, "feuille_de_route", strlen("feuille_de_route"));
    if (!road || json_array_size(road) == 0)
        return;
    (void)fb_buf_puts(plain, title_plain);
    (void)fb_buf_puts(html, title_html);
    (void)fb_buf_puts(html, "<ol>");
    fb_buf_t line;
    fb_buf_init(&line, MAX_TEXT_BYTES);
    for (size_t i = 0; i < json_array_size(road); i++) {
        const json_t *e = json_array_get(road, i);
        const char *title = json_string_value(json_object_get(e, "titre"));
        const char *st = json_string_value(json_object_get(e, "statut_texte"));
        const char *when = json_string_value(json_object_get(e, "modifie_le"));
        fb_buf_reset(&line);
        (void)fb_buf_printf(&line, "%s : %s", title ? title : "?", st ? st : "?");
        if (when)
            (void)fb_buf_printf(&line, " (noté le %s)", when);
        (void)fb_buf_printf(plain, "\n%zu. %s", i + 1, fb_buf_str(&line));
        (void)fb_buf_puts(html, "<li>");
        (void)fb_template_html_escape(fb_buf_str(&line), line.len, html);
        (void)fb_buf_puts(html, "</li>");
    }
    fb_buf_free(&line);
    (void)fb_buf_puts(html, "</ol>");
}

/* Appends the roadmap under the heading of summaries. */
static void list_roadmap(struct run *r, fb_buf_t *plain, fb_buf_t *html)
{
    list_roadmap_titled(r, plain, html,
                        "\n\nVotre feuille de route :", "<p>Votre feuille de route :</p>");
}

/* Appends the tags as one line. */
static void list_tags(struct run *r, fb_buf_t *plain, fb_buf_t *html)
{
    bool any = false;
    for (size_t i = 0; i < r->d->n_tags; i++) {
        if (!r->s.tags[i])
            continue;
        (void)fb_buf_printf(plain, "%s%s", any ? ", " : "\n\nSignaux retenus : ", r->d->tags[i]);
        (void)fb_buf_printf(html, "%s%s", any ? ", " : "<p>Signaux retenus : ", r->d->tags[i]);
        any = true;
    }
    if (any)
        (void)fb_buf_puts(html, "</p>");
}

/* Appends the user's last messages (session `l`), oldest first, one per line between « », under
 * the heading `title`; nothing when there are none. */
static void list_last_messages(struct run *r, fb_buf_t *plain, fb_buf_t *html, const char *title)
{
    const json_t *l = r->s.last_messages;
    if (!l || json_array_size(l) == 0)
        return;
    (void)fb_buf_printf(plain, "\n\n%s", title);
    (void)fb_buf_printf(html, "<p>%s</p><ul>", title);
    for (size_t i = 0; i < json_array_size(l); i++) {
        const json_t *m = json_array_get(l, i);
        (void)fb_buf_printf(plain, "\n« %s »", json_string_value(m));
        (void)fb_buf_puts(html, "<li>« ");
        (void)fb_template_html_escape(json_string_value(m), json_string_length(m), html);
        (void)fb_buf_puts(html, " »</li>");
    }
    (void)fb_buf_puts(html, "</ul>");
}

/* The plain-text summary handed to an advisor with an escalation. */
static json_t *summary(struct run *r)
{
    fb_buf_t plain, html;
    fb_buf_init(&plain, MAX_TEXT_BYTES);
    fb_buf_init(&html, MAX_TEXT_BYTES);
    const fb_dialog_t *d = r->d;
    (void)fb_buf_printf(&plain, "Dialogue : %s", d->title ? d->title : d->id);
    if (r->s.ended) {
        (void)fb_buf_puts(&plain, "\nQuestionnaire terminé.");
    } else if (cur(r)->type != FB__Q_NONE) {
        const json_t *q = builtin(r, "question", strlen("question"));
        (void)fb_buf_printf(&plain, "\nQuestion en cours : %s", q ? json_string_value(q) : "");
        if (r->s.fails > 0)
            (void)fb_buf_printf(&plain, " (%u réponse%s non comprise%s)", r->s.fails,
                                r->s.fails > 1 ? "s" : "", r->s.fails > 1 ? "s" : "");
    }
    list_answers(r, &plain, &html, "Réponses :");
    list_tags(r, &plain, &html);
    list_roadmap(r, &plain, &html);
    list_last_messages(r, &plain, &html, "Derniers messages de l'usager :");
    json_t *v = text_json(fb_buf_str(&plain), plain.len);
    fb_buf_free(&plain);
    fb_buf_free(&html);
    return v;
}

/* ---- asking ---------------------------------------------------------------------------------- */

/* The label of commune candidate `code`: "Saint-Denis (93)". New string. */
static char *candidate_label(const struct run *r, const char *code)
{
    const fb_geo_t *geo = geo_of(r);
    const fb_commune_t *c = geo ? fb_geo_by_insee(geo, code) : NULL;
    if (!c)
        return fb_strdup(code);
    return fb_asprintf("%s (%s)", c->name, c->dep);
}

/* Says the commune candidates as a numbered list with choices (ids: INSEE codes). */
static void ask_candidates(struct run *r)
{
    fb_buf_t plain, html;
    fb_buf_init(&plain, MAX_TEXT_BYTES);
    fb_buf_init(&html, MAX_TEXT_BYTES);
    json_t *choices = json_array();
    if (render_text(r, &r->d->texts[FB__T_COMMUNE_CHOIX], &plain, &html) == 0) {
        (void)fb_buf_puts(&html, "<p>");
        for (size_t i = 0; i < r->s.n_cand; i++) {
            char *label = candidate_label(r, r->s.cand[i]);
            (void)fb_buf_printf(&plain, "%s%zu. %s", i ? "\n" : "\n\n", i + 1, label);
            (void)fb_buf_printf(&html, "%s%zu. ", i ? "<br>" : "", i + 1);
            (void)fb_template_html_escape(label, strlen(label), &html);
            (void)json_array_append_new(
                choices, json_pack("{s:s, s:s}", "id", r->s.cand[i], "label", label));
            fb_free(label);
        }
        (void)fb_buf_puts(&html, "</p>");
        say_bufs(r, &plain, &html, choices);
    }
    json_decref(choices);
    fb_buf_free(&plain);
    fb_buf_free(&html);
}

/*
 * Says the question about roadmap step `r->s.pending_step`, after `intro`: the reminder's five
 * answers, or the six statuses when the user picked the step (`pending_pick`).
 */
static void ask_step(struct run *r, const struct fb__text *intro)
{
    const fb_dialog_t *d = r->d;
    bool pick = r->s.pending_pick;
    const fb_choice_t *opts = pick ? d->all_status_choices : d->status_choices;
    size_t n = pick ? d->n_all_status_choices : d->n_status_choices;
    fb_buf_t plain, html;
    fb_buf_init(&plain, MAX_TEXT_BYTES);
    fb_buf_init(&html, MAX_TEXT_BYTES);
    if (render_text(r, intro, &plain, &html) == 0) {
        (void)fb_buf_puts(&html, "<p>");
        for (size_t i = 0; i < n; i++) {
            const char *label = opts[i].label;
            (void)fb_buf_printf(&plain, "%s%zu. %s", i ? "\n" : "\n\n", i + 1, label);
            (void)fb_buf_printf(&html, "%s%zu. ", i ? "<br>" : "", i + 1);
            (void)fb_template_html_escape(label, strlen(label), &html);
        }
        (void)fb_buf_puts(&html, "</p>");
        say_bufs(r, &plain, &html, pick ? d->all_status_json : d->status_json);
    }
    fb_buf_free(&plain);
    fb_buf_free(&html);
}

/* Sets r->c_etape to the roadmap entry `i` of the session (or NULL). */
static void set_etape(struct run *r, int i)
{
    drop(&r->c_etape);
    if (i >= 0 && (size_t)i < r->s.n_road)
        r->c_etape =
            road_entry(r->d, r->s.road[i], r->s.status[i], (size_t)i, r->s.day ? r->s.day[i] : 0);
}

/* Asks the current question (with its numbered options), or what is pending. */
static void ask(struct run *r)
{
    const struct fb__state *st = cur(r);
    if (r->s.ended) {
        if (r->s.pending_step >= 0) {
            set_etape(r, r->s.pending_step);
            const struct fb__relance *cfg = &st->relance;
            if (r->s.pending_pick)
                ask_step(r, &r->d->texts[FB__T_ETAPE_STATUT]);
            else
                ask_step(r, cfg->msg.t ? &cfg->msg : &r->d->texts[FB__T_RELANCE_ETAPE]);
        }
        return;
    }
    if (st->type == FB__Q_NONE)
        return;
    if (r->s.n_cand > 0) {
        ask_candidates(r);
        return;
    }
    if (st->ask_plain) {
        say_new(r, json_incref(st->ask_plain), json_incref(st->ask_html), st->choices_json);
        return;
    }
    say_text(r, &st->text, st->list_plain, st->list_html, st->choices_json);
}

/* The reminder settings that apply at the current state, or NULL. */
static const struct fb__relance *relance_cfg(const struct run *r)
{
    const struct fb__state *st = cur(r);
    if (st->relance.set)
        return &st->relance;
    if (!r->s.ended && st->type != FB__Q_NONE && r->d->relance.set)
        return &r->d->relance;
    return NULL;
}

/* Arms the reminder for the current state in `after` seconds, or after the state's own delay
 * when `after` <= 0 (when one applies and reminders are not stopped). */
static void arm_after(struct run *r, long long after)
{
    const struct fb__relance *cfg = relance_cfg(r);
    if (cfg && !r->s.muted)
        schedule(r, after > 0 ? after : cfg->after, r->s.ended ? "suivi" : "inactivite");
}

/* Arms the reminder for the current state (when one applies and reminders are not stopped). */
static void arm(struct run *r)
{
    arm_after(r, 0);
}

/* ---- moving through the graph ---------------------------------------------------------------- */

/* The first branch of `suite` whose condition holds, or -1. */
static int next_of(struct run *r, const struct fb__state *st)
{
    for (size_t i = 0; i < st->n_next; i++)
        if (!st->next[i].cond || fb_expr_true(st->next[i].cond, &r->xenv))
            return st->next[i].target;
    return -1;
}

/* Hands the conversation to an advisor: says so, emits `escalate`, stops reminders. */
static void escalate(struct run *r, const char *reason)
{
    say_builtin(r, FB__T_ESCALADE);
    json_t *e = json_object();
    (void)json_object_set_new(e, "type", json_string(fb_effect_name(FB_EFFECT_ESCALATE)));
    (void)json_object_set_new(e, "reason", json_string(reason));
    json_t *sum = summary(r);
    (void)json_object_set_new(e, "summary", sum ? sum : json_string(""));
    effect(r, e);
    cancel_all(r);
    stat_effect(r, "escalated");
    r->s.escalated = true;
}

/* Adds `st` at the front of the path of answered questions (bounded). */
static void push_path(struct run *r, int st)
{
    struct fb__sess *s = &r->s;
    if (s->n_path > 0 && s->path[0] == st)
        return;
    size_t n = s->n_path < FB__MAX_PATH ? s->n_path : FB__MAX_PATH - 1;
    memmove(s->path + 1, s->path, n * sizeof(s->path[0]));
    s->path[0] = st;
    s->n_path = n + 1;
}

/* Index of choice `id` in question `st`, or -1. */
static int choice_index(const struct fb__state *st, const char *id)
{
    for (size_t i = 0; i < st->n_choices; i++)
        if (strcmp(st->choices[i].id, id) == 0)
            return (int)i;
    return -1;
}

/* Emits the tags of answer `v` to question `st`: its chosen options' tags, then its signals. */
static void emit_tags(struct run *r, const struct fb__state *st, const json_t *v)
{
    if (st->type == FB__Q_CHOICE && json_is_string(v)) {
        int c = choice_index(st, json_string_value(v));
        for (size_t t = 0; c >= 0 && t < st->choices[c].n_tags; t++)
            r->s.tags[st->choices[c].tags[t]] = 1;
    } else if (st->type == FB__Q_MULTI && json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            const json_t *e = json_array_get(v, i);
            int c = json_is_string(e) ? choice_index(st, json_string_value(e)) : -1;
            for (size_t t = 0; c >= 0 && t < st->choices[c].n_tags; t++)
                r->s.tags[st->choices[c].tags[t]] = 1;
        }
    }
    for (size_t i = 0; i < st->n_signals; i++)
        if (fb_expr_true(st->signals[i].cond, &r->xenv))
            r->s.tags[st->signals[i].tag] = 1;
}

/* The state an answered question leads to: its chosen option's `aller`, else `suite`. */
static int after_answer(struct run *r, const struct fb__state *st, const json_t *v)
{
    if (st->type == FB__Q_CHOICE && json_is_string(v)) {
        int c = choice_index(st, json_string_value(v));
        if (c >= 0 && st->choices[c].target >= 0)
            return st->choices[c].target;
    }
    return next_of(r, st);
}

/* True when stored value `v` fits question `st` (used when replaying after a version change). */
static bool value_fits(const struct fb__state *st, const json_t *v)
{
    if (!v)
        return false;
    if (is_nsp(v))
        return st->nsp_ok;
    switch (st->type) {
    case FB__Q_YESNO:
        return json_is_boolean(v);
    case FB__Q_CHOICE:
        return json_is_string(v) && choice_index(st, json_string_value(v)) >= 0;
    case FB__Q_MULTI:
        if (!json_is_array(v))
            return false;
        for (size_t i = 0; i < json_array_size(v); i++)
            if (!json_is_string(json_array_get(v, i)) ||
                choice_index(st, json_string_value(json_array_get(v, i))) < 0)
                return false;
        return true;
    case FB__Q_NUMBER:
        return json_is_number(v);
    case FB__Q_TEXT:
    case FB__Q_DATE:
        return json_is_string(v);
    case FB__Q_COMMUNE:
        return json_is_string(json_object_get(v, "insee"));
    case FB__Q_NONE:
        break;
    }
    return false;
}

/* Folded comments that mean "no comment": not passed on in the `avis` effect. */
static const char *const no_comment[] = {
    "non",      "non merci", "rien", "aucun", "aucun commentaire", "pas de commentaire",
    "non rien", "merci",     "ras"};

/*
 * The `avis` effect of a message state with `avis:`: {"type":"avis","note":1..5} plus
 * "commentaire" when the comment slot holds a text other than "non", "rien"... Nothing when the
 * rating slot holds no rating from 1 to 5 (a choice whose id is the digit, or a number).
 */
static void avis_effect(struct run *r, const struct fb__state *st)
{
    if (st->avis_note < 0 || r->s.avis_given)
        return;
    const fb_dialog_t *d = r->d;
    const json_t *v = json_object_get(r->s.answers, d->slots[st->avis_note].name);
    long note = 0;
    if (json_is_string(v)) {
        const char *id = json_string_value(v);
        if (id[0] >= '1' && id[0] <= '5' && id[1] == '\0')
            note = id[0] - '0';
    } else if (json_is_integer(v)) {
        json_int_t n = json_integer_value(v);
        if (n >= 1 && n <= 5)
            note = (long)n;
    } else if (json_is_real(v)) {
        double x = json_real_value(v);
        if (x >= 1 && x <= 5 && x == floor(x))
            note = (long)x;
    }
    if (!note)
        return;
    json_t *e =
        json_pack("{s:s, s:I}", "type", fb_effect_name(FB_EFFECT_AVIS), "note", (json_int_t)note);
    const json_t *c = st->avis_comment >= 0
                          ? json_object_get(r->s.answers, d->slots[st->avis_comment].name)
                          : NULL;
    if (json_is_string(c) && !is_nsp(c)) {
        char *folded = fb_text_fold_dup(json_string_value(c));
        bool empty = !folded || !folded[0];
        for (size_t i = 0; !empty && i < sizeof(no_comment) / sizeof(no_comment[0]); i++)
            empty = strcmp(folded, no_comment[i]) == 0;
        fb_free(folded);
        if (!empty)
            (void)json_object_set(e, "commentaire", (json_t *)(uintptr_t)c);
    }
    effect(r, e);
    r->s.avis_given = true;
}

/* Ends the guided part at final state `target`: roadmap, message, `step`/`end`/`stat`. */
static void finish(struct run *r, int target)
{
    struct fb__sess *s = &r->s;
    s->state = target;
    s->fails = 0;
    s->n_cand = 0;
    s->pending_step = -1;
    s->reminders = 0;
    invalidate(r);
    fb_free(s->road);
    fb_free(s->status);
    fb_free(s->day);
    compute_roadmap(r, &s->road, &s->status, &s->n_road);
    s->day = fb_calloc(s->n_road + 1, sizeof(*s->day));
    s->ended = true;
    invalidate(r);
    say_text(r, &cur(r)->text, NULL, NULL, NULL);
    for (size_t i = 0; i < s->n_road; i++)
        effect(r, json_pack("{s:s, s:s, s:s}", "type", fb_effect_name(FB_EFFECT_STEP), "item",
                            r->d->items[s->road[i]].ref, "status", fb__status_names[s->status[i]]));
    simple_effect(r, FB_EFFECT_END);
    stat_effect(r, "site_completed");
    if (cur(r)->relance.set && !s->muted)
        arm(r);
    else
        effect(r,
               json_pack("{s:s, s:s}", "type", fb_effect_name(FB_EFFECT_CANCEL), "id", TIMER_ID));
    avis_effect(r, cur(r));
}

/*
 * Enters state `target` and walks on: preconditions that do not hold skip a state (to its
 * `suite`), messages are said and passed, the walk stops at a question (asked) or a final
 * state. With `replay`, questions whose slot already holds a fitting answer are passed too
 * (after a version change). A walk that finds no way on, or loops, escalates ("dialogue").
 */
static void enter(struct run *r, int target, bool replay)
{
    const fb_dialog_t *d = r->d;
    size_t hops = 0;
    for (;;) {
        if (target < 0 || ++hops > 2 * d->n_states + 2) {
            escalate(r, "dialogue");
            return;
        }
        const struct fb__state *st = &d->states[target];
        if (st->cond && !fb_expr_true(st->cond, &r->xenv)) {
            target = next_of(r, st);
            continue;
        }
        if (st->final) {
            finish(r, target);
            return;
        }
        if (st->type == FB__Q_NONE) {
            say_text(r, &st->text, NULL, NULL, NULL);
            if (!replay)
                avis_effect(r, st);
            target = next_of(r, st);
            continue;
        }
        const json_t *v =
            st->slot >= 0 ? json_object_get(r->s.answers, d->slots[st->slot].name) : NULL;
        if (replay && value_fits(st, v)) {
            push_path(r, target);
            target = after_answer(r, st, v);
            continue;
        }
        r->s.state = target;
        r->s.fails = 0;
        r->s.n_cand = 0;
        r->s.ended = false;
        invalidate(r);
        ask(r);
        arm(r);
        return;
    }
}

/* Stores answer `v` (stolen) to the current question and moves on. */
static void accept(struct run *r, json_t *v)
{
    const struct fb__state *st = cur(r);
    int here = r->s.state;
    if (st->slot < 0) {
        json_decref(v);
        return;
    }
    fb__session_own_answers(&r->s);
    (void)json_object_set_new(r->s.answers, r->d->slots[st->slot].name, v);
    invalidate(r);
    emit_tags(r, st, v);
    push_path(r, here);
    r->s.fails = 0;
    r->s.n_cand = 0;
    enter(r, after_answer(r, st, v), false);
}

/* Reacts to an answer that could not be used: reprompt, then the `echecs` action. */
static void fail(struct run *r, fb_answer_status_t why)
{
    const struct fb__state *st = cur(r);
    const fb_dialog_t *d = r->d;
    r->s.fails++;
    invalidate(r);
    if (r->s.fails >= st->fail_max) {
        if (st->fail_action == FB__FAIL_CONSEILLER) {
            escalate(r, "echecs");
            return;
        }
        say_text(r, st->help.t ? &st->help : &d->texts[FB__T_AIDE_GENERALE], NULL, NULL, NULL);
        r->s.fails = 0;
        invalidate(r);
        ask(r);
        return;
    }
    const struct fb__text *t;
    switch (why) {
    case FB_ANSWER_UNKNOWN:
        t = &d->texts[FB__T_NSP_REFUSE];
        break;
    case FB_ANSWER_OUT_OF_RANGE:
        t = &d->texts[FB__T_HORS_LIMITES];
        break;
    case FB_ANSWER_AMBIGUOUS:
        t = &d->texts[FB__T_AMBIGU];
        break;
    case FB_ANSWER_OK:
    case FB_ANSWER_INVALID:
    default:
        if (st->n_reprompts > 0) {
            size_t i = r->s.fails - 1;
            t = &st->reprompts[i < st->n_reprompts ? i : st->n_reprompts - 1];
        } else {
            t = &d->texts[st->type == FB__Q_COMMUNE ? FB__T_COMMUNE_INCONNUE : FB__T_INCOMPRIS];
        }
        break;
    }
    say_text(r, t, st->list_plain, st->list_html, st->choices_json);
}

/* ---- answers --------------------------------------------------------------------------------- */

/* A number as JSON: an integer when it is one (compact), else a real. */
static json_t *number_json(double x)
{
    if (x == floor(x) && fabs(x) < 1e15)
        return json_integer((json_int_t)x);
    return json_real(x);
}

/* Stores commune `c` as the answer. */
static void accept_commune(struct run *r, const fb_commune_t *c)
{
    accept(r, fb__commune_compact(c->insee, c->name));
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

/* A commune answer: a pick among pending candidates, else a search of the index. */
static void answer_commune(struct run *r, const char *text, const char *choice)
{
    const fb_geo_t *geo = geo_of(r);
    struct fb__sess *s = &r->s;
    if (!geo) {
        fail(r, FB_ANSWER_INVALID);
        return;
    }
    if (s->n_cand > 0) {
        fb_choice_t opts[FB__MAX_CANDIDATES];
        char *labels[FB__MAX_CANDIDATES] = {NULL};
        size_t idx = 0, n = s->n_cand < FB__MAX_CANDIDATES ? s->n_cand : FB__MAX_CANDIDATES;
        fb_answer_status_t st = FB_ANSWER_INVALID;
        for (size_t i = 0; i < n; i++) {
            labels[i] = candidate_label(r, s->cand[i]);
            opts[i] = (fb_choice_t){s->cand[i], labels[i], NULL};
            if (choice && strcmp(choice, s->cand[i]) == 0) {
                idx = i;
                st = FB_ANSWER_OK;
            }
        }
        if (st != FB_ANSWER_OK && text)
            st = fb_answer_choice(opts, n, text, &idx);
        for (size_t i = 0; i < n; i++)
            fb_free(labels[i]);
        const fb_commune_t *c = st == FB_ANSWER_OK ? fb_geo_by_insee(geo, s->cand[idx]) : NULL;
        if (c) {
            accept_commune(r, c);
            return;
        }
        if (st == FB_ANSWER_UNKNOWN) {
            s->n_cand = 0;
            if (cur(r)->nsp_ok)
                accept(r, json_string(FB_NSP_VALUE));
            else
                fail(r, FB_ANSWER_UNKNOWN);
            return;
        }
    }
    if (choice && !text) {
        const fb_commune_t *c = fb_geo_by_insee(geo, choice);
        if (c) {
            accept_commune(r, c);
            return;
        }
        text = choice;
    }
    if (fb_answer_is_unknown(text)) {
        s->n_cand = 0;
        if (cur(r)->nsp_ok)
            accept(r, json_string(FB_NSP_VALUE));
        else
            fail(r, FB_ANSWER_UNKNOWN);
        return;
    }
    const fb_commune_t *found[FB__MAX_CANDIDATES];
    size_t total = fb_geo_find(geo, text, found, FB__MAX_CANDIDATES);
    size_t n = total < FB__MAX_CANDIDATES ? total : FB__MAX_CANDIDATES;
    if (n == 0) {
        s->n_cand = 0;
        fail(r, FB_ANSWER_INVALID);
        return;
    }
    const fb_commune_t *exact = NULL;
    size_t n_exact = 0;
    for (size_t i = 0; i < n; i++)
        if (same_name(found[i], text)) {
            exact = found[i];
            n_exact++;
        }
    if (total == 1 || (n_exact == 1 && total <= FB__MAX_CANDIDATES)) {
        accept_commune(r, total == 1 ? found[0] : exact);
        return;
    }
    s->n_cand = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(found[i]->insee);
        if (len >= sizeof(s->cand[0]))
            continue;
        memcpy(s->cand[s->n_cand++], found[i]->insee, len + 1);
    }
    ask_candidates(r);
}

/* An answer to the current question: `text` typed, or `choice` (an option id) picked. */
static void answer(struct run *r, const char *text, const char *choice)
{
    const struct fb__state *st = cur(r);
    fb_answer_status_t status = FB_ANSWER_INVALID;
    json_t *value = NULL;
    size_t idx = 0;

    if (st->type == FB__Q_COMMUNE) {
        if (text && strlen(text) > MAX_COMMUNE)
            fail(r, FB_ANSWER_INVALID);
        else
            answer_commune(r, text, choice);
        return;
    }
    if (choice) {
        if (strcmp(choice, "nsp") == 0) {
            status = FB_ANSWER_UNKNOWN;
        } else if (st->type == FB__Q_YESNO &&
                   (strcmp(choice, "oui") == 0 || strcmp(choice, "non") == 0)) {
            status = FB_ANSWER_OK;
            value = json_boolean(strcmp(choice, "oui") == 0);
        } else if (st->type == FB__Q_CHOICE && choice_index(st, choice) >= 0) {
            status = FB_ANSWER_OK;
            value = json_string(choice);
        } else if (st->type == FB__Q_MULTI && choice_index(st, choice) >= 0) {
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
                status = fb_answer_choice_in(st->aset, text, &idx);
                if (status == FB_ANSWER_OK && idx >= st->n_choices)
                    status = FB_ANSWER_UNKNOWN;
                else if (status == FB_ANSWER_OK)
                    value = json_string(st->choices[idx].id);
                break;
            case FB__Q_MULTI: {
                uint64_t mask = 0;
                status = fb_answer_choices_in(st->aset, text, &mask);
                if (status == FB_ANSWER_OK) {
                    uint64_t nsp = st->nsp_ok ? (uint64_t)1 << st->n_choices : 0;
                    if (nsp && mask == nsp) {
                        status = FB_ANSWER_UNKNOWN;
                        break;
                    }
                    value = json_array();
                    for (size_t i = 0; i < st->n_choices; i++)
                        if (mask & ((uint64_t)1 << i))
                            (void)json_array_append_new(value, json_string(st->choices[i].id));
                }
                break;
            }
            case FB__Q_NUMBER: {
                double x = 0;
                status = fb_answer_number(text, st->unit, st->min, st->max, &x);
                if (status == FB_ANSWER_OK)
                    value = number_json(x);
                break;
            }
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
        accept(r, value);
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
        accept(r, json_string(FB_NSP_VALUE));
        return;
    }
    fail(r, status);
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
    invalidate(r);
    effect(r, json_pack("{s:s, s:s, s:s}", "type", fb_effect_name(FB_EFFECT_STEP), "item",
                        r->d->items[s->road[i]].ref, "status", fb__status_names[status]));
    stat_effect(r, "step_updated");
    set_etape(r, i);
}

/*
 * An answer to the pending question about a step (r->s.pending_step): the reminder's "Où en
 * êtes-vous de l'étape X ?" (five answers, "plus tard" among them), or, when the user picked the
 * step (`pending_pick`), "Quel est le statut de l'étape X ?" (the six statuses). To the
 * reminder, a "plus tard" with a delay ("plus tard dans 3 mois", "dans 2 semaines": see
 * fb_text_later) arms the next reminder after that delay and says `etape_plus_tard_delai`; a
 * number that is no delay ("dans 3", "plus tard 0 jour") is a plain "plus tard".
 */
static void answer_step(struct run *r, const char *text, const char *choice)
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
            say_builtin(r, FB__T_FIN_ATTEINTE);
            return;
        }
        set_etape(r, s->pending_step);
        ask_step(r, &d->texts[FB__T_INCOMPRIS]);
        return;
    }
    int item = s->pending_step;
    s->pending_step = -1;
    s->pending_pick = false;
    s->fails = 0;
    int status = fb__status_index(opts[idx].id);
    if (status < 0)
        set_etape(r, item); /* `etape` in the texts of "plus tard" */
    if (status < 0 && later == FB_LATER_DELAY && relance_cfg(r) && !s->muted) {
        char buf[32];
        (void)fb_text_delay_format(&delay, buf, sizeof(buf));
        drop(&r->c_delai);
        r->c_delai = json_string(buf);
        say_builtin(r, FB__T_ETAPE_PLUS_TARD_DELAI);
        arm_after(r, delay.seconds);
        return;
    }
    if (status < 0 && s->muted) { /* "plus tard" after "stop": no promise of a reminder */
        say_builtin(r, FB__T_RELANCES_ARRETEES);
    } else if (status < 0) { /* "plus tard" */
        say_builtin(r, FB__T_ETAPE_PLUS_TARD);
    } else {
        set_step_status(r, item, status);
        say_builtin(r, pick ? FB__T_ETAPE_CHANGEE : FB__T_ETAPE_NOTEE);
    }
    arm(r);
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
static bool parse_step_text(const fb_dialog_t *d, const char *text, long *num, int *status)
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
static void say_steps(struct run *r, enum fb__textid head)
{
    fb_buf_t plain, html;
    fb_buf_init(&plain, MAX_TEXT_BYTES);
    fb_buf_init(&html, MAX_TEXT_BYTES);
    json_t *choices = json_array();
    if (render_text(r, &r->d->texts[head], &plain, &html) == 0) {
        if (r->s.n_road == 0) {
            (void)fb_buf_puts(&plain, "\n(aucune étape)");
            (void)fb_buf_puts(&html, "<p>(aucune étape)</p>");
        }
        list_roadmap_titled(r, &plain, &html, "", "");
        fb_buf_t ap, ah;
        fb_buf_init(&ap, MAX_TEXT_BYTES);
        fb_buf_init(&ah, MAX_TEXT_BYTES);
        if (r->s.n_road > 0 && render_text(r, &r->d->texts[FB__T_ETAPES_AIDE], &ap, &ah) == 0) {
            (void)fb_buf_printf(&plain, "\n\n%s", fb_buf_str(&ap));
            (void)fb_buf_puts(&html, fb_buf_str(&ah));
        }
        fb_buf_free(&ap);
        fb_buf_free(&ah);
        for (size_t i = 0; i < r->s.n_road; i++) {
            char id[32], label[32];
            snprintf(id, sizeof(id), "etape_%zu", i + 1);
            snprintf(label, sizeof(label), "Étape %zu", i + 1);
            (void)json_array_append_new(choices, json_pack("{s:s, s:s}", "id", id, "label", label));
        }
        say_bufs(r, &plain, &html, json_array_size(choices) ? choices : NULL);
    }
    json_decref(choices);
    fb_buf_free(&plain);
    fb_buf_free(&html);
}

/* "étape N [statut]" once the roadmap is stored: sets the status, or asks for it. */
static void step_command(struct run *r, long num, int status)
{
    struct fb__sess *s = &r->s;
    s->pending_step = -1;
    s->pending_pick = false;
    s->fails = 0;
    if (num < 1 || (size_t)num > s->n_road) {
        say_steps(r, FB__T_ETAPE_INCONNUE);
        return;
    }
    int i = (int)num - 1;
    if (status >= 0) {
        set_step_status(r, i, status);
        say_builtin(r, FB__T_ETAPE_CHANGEE);
        arm(r);
        return;
    }
    s->pending_step = i;
    s->pending_pick = true;
    set_etape(r, i);
    ask_step(r, &r->d->texts[FB__T_ETAPE_STATUT]);
}

/* The step number of a button id "etape_N", or 0. */
static long step_choice(const char *choice)
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

/* ---- commands -------------------------------------------------------------------------------- */

/* The global command `text` is, in the current state, or FB__CMD_NONE. */
static int match_command(const struct run *r, const char *text)
{
    char buf[256];
    size_t len = strlen(text);
    if (len > 200)
        return FB__CMD_NONE;
    size_t n = fb_text_fold(text, len, buf, sizeof(buf));
    if (n >= sizeof(buf))
        return FB__CMD_NONE;
    const struct fb__cmdset *c = cur(r)->cmds;
    if (n == 0) { /* "?" folds to nothing */
        size_t i = 0;
        while (text[i] == ' ' || text[i] == '\t')
            i++;
        bool q = text[i] == '?';
        for (i++; q && text[i]; i++)
            if (text[i] != ' ' && text[i] != '\t' && text[i] != '\n' && text[i] != '?')
                q = false;
        return q && !c->disabled[FB__CMD_AIDE] ? FB__CMD_AIDE : FB__CMD_NONE;
    }
    for (int i = 0; i < FB__CMD_COUNT; i++) {
        if (c->disabled[i])
            continue;
        for (size_t w = 0; w < c->n[i]; w++)
            if (strcmp(c->words[i][w], buf) == 0)
                return i;
    }
    return FB__CMD_NONE;
}

/* Forgets the user: `forget`, `cancel` all, a goodbye; the session becomes null. */
static void forget(struct run *r)
{
    simple_effect(r, FB_EFFECT_FORGET);
    cancel_all(r);
    say_builtin(r, FB__T_OUBLI_FAIT);
}

/* Starts over: answers, tags, path and roadmap cleared (the reminder preference and the user's
 * last messages are kept). */
static void restart(struct run *r, const char *stat_name)
{
    bool muted = r->s.muted;
    json_t *last = json_incref(r->s.last_messages);
    const fb_dialog_t *d = r->latest;
    invalidate(r);
    drop(&r->c_etape);
    FB_FREE(r->c_communes);
    FB_FREE(r->c_cats);
    fb__session_free(&r->s);
    r->d = d;
    fb__session_init(d, &r->s);
    r->s.muted = muted;
    r->s.last_messages = last;
    stat_effect(r, stat_name);
    enter(r, d->start, false);
}

/* Goes back to the previous answered question, forgetting its answer and recomputing tags. */
static void go_back(struct run *r)
{
    struct fb__sess *s = &r->s;
    const fb_dialog_t *d = r->d;
    if (s->n_path == 0) {
        say_builtin(r, FB__T_RETOUR_IMPOSSIBLE);
        ask(r);
        return;
    }
    int prev = s->path[0];
    s->n_path--;
    memmove(s->path, s->path + 1, s->n_path * sizeof(s->path[0]));
    const struct fb__state *pst = &d->states[prev];
    fb__session_own_answers(s);
    if (pst->slot >= 0)
        (void)json_object_del(s->answers, d->slots[pst->slot].name);
    /* tags: replay the signals of the remaining answers, oldest first */
    memset(s->tags, 0, d->n_tags);
    invalidate(r);
    for (size_t i = s->n_path; i-- > 0;) {
        const struct fb__state *st = &d->states[s->path[i]];
        const json_t *v =
            st->slot >= 0 ? json_object_get(s->answers, d->slots[st->slot].name) : NULL;
        if (v)
            emit_tags(r, st, v);
    }
    s->state = prev;
    s->ended = false;
    s->fails = 0;
    s->n_cand = 0;
    s->pending_step = -1;
    s->pending_pick = false;
    FB_FREE(s->road);
    FB_FREE(s->status);
    FB_FREE(s->day);
    s->n_road = 0;
    invalidate(r);
    ask(r);
}

/* Says a summary of the answers (and, for "mes données", the tags), then re-asks. */
static void recap(struct run *r, bool everything)
{
    fb_buf_t plain, html;
    fb_buf_init(&plain, MAX_TEXT_BYTES);
    fb_buf_init(&html, MAX_TEXT_BYTES);
    const struct fb__text *head = &r->d->texts[everything ? FB__T_MES_DONNEES : FB__T_RESUME];
    if (render_text(r, head, &plain, &html) == 0) {
        list_answers(r, &plain, &html, "Vos réponses :");
        if (everything)
            list_tags(r, &plain, &html);
        list_roadmap(r, &plain, &html);
        if (everything) {
            list_last_messages(r, &plain, &html, "Vos derniers messages :");
            (void)fb_buf_puts(&plain, "\n\nPour tout effacer, écrivez « oublier mes données ».");
            (void)fb_buf_puts(&html, "<p>Pour tout effacer, écrivez « oublier mes données ».</p>");
        } else if (r->s.ended && r->s.n_road > 0) {
            fb_buf_t ap, ah;
            fb_buf_init(&ap, MAX_TEXT_BYTES);
            fb_buf_init(&ah, MAX_TEXT_BYTES);
            if (render_text(r, &r->d->texts[FB__T_ETAPES_AIDE], &ap, &ah) == 0) {
                (void)fb_buf_printf(&plain, "\n\n%s", fb_buf_str(&ap));
                (void)fb_buf_puts(&html, fb_buf_str(&ah));
            }
            fb_buf_free(&ap);
            fb_buf_free(&ah);
        }
        if (plain.len > 0 && html.len > 0)
            say_bufs(r, &plain, &html, NULL);
    }
    fb_buf_free(&plain);
    fb_buf_free(&html);
    ask(r);
}

/* Runs global command `cmd`. Returns false when the session must become null (forget). */
static bool command(struct run *r, int cmd)
{
    const struct fb__state *st = cur(r);
    switch (cmd) {
    case FB__CMD_AIDE:
        say_text(r, (!r->s.ended && st->help.t) ? &st->help : &r->d->texts[FB__T_AIDE_GENERALE],
                 NULL, NULL, NULL);
        ask(r);
        return true;
    case FB__CMD_RETOUR:
        go_back(r);
        return true;
    case FB__CMD_RECOMMENCER:
        restart(r, "conversation_restarted");
        return true;
    case FB__CMD_CONSEILLER:
        escalate(r, "demande");
        return true;
    case FB__CMD_OU_EN_SUIS_JE:
        recap(r, false);
        return true;
    case FB__CMD_MES_DONNEES:
        recap(r, true);
        return true;
    case FB__CMD_OUBLIER:
        forget(r);
        return false;
    case FB__CMD_ETAPES:
        if (r->s.ended) {
            r->s.pending_step = -1;
            r->s.pending_pick = false;
            r->s.fails = 0;
            say_steps(r, FB__T_ETAPES);
        } else {
            say_builtin(r, FB__T_ETAPES_PAS_ENCORE);
            ask(r);
        }
        return true;
    case FB__CMD_STOP:
        cancel_all(r);
        say_builtin(r, FB__T_RELANCES_ARRETEES);
        r->s.muted = true;
        r->s.reminders = 0;
        return true;
    default:
        return true;
    }
}

/* ---- events ---------------------------------------------------------------------------------- */

/* A message or a picked option. Returns false when the session must become null. */
static bool on_input(struct run *r, const char *text, const char *choice)
{
    struct fb__sess *s = &r->s;
    if (text) {
        int cmd = match_command(r, text);
        if (s->escalated)
            return cmd == FB__CMD_OUBLIER ? command(r, cmd) : true; /* quiet: an advisor has it */
        s->reminders = 0;
        /* a session moved by a version change is replayed first, except for the commands
         * that must act at once */
        bool now = cmd == FB__CMD_OUBLIER || cmd == FB__CMD_CONSEILLER || cmd == FB__CMD_STOP ||
                   cmd == FB__CMD_RECOMMENCER;
        if (cmd != FB__CMD_NONE && (!s->moved || now))
            return command(r, cmd);
    } else if (s->escalated) {
        return true;
    }
    s->reminders = 0;
    if (s->moved) {
        say_builtin(r, FB__T_VERSION_CHANGEE);
        enter(r, r->d->start, true);
        return true;
    }
    long num = 0;
    int status = -1;
    if (s->ended) {
        if (choice && (num = step_choice(choice)) > 0)
            step_command(r, num, -1);
        else if (text && parse_step_text(r->d, text, &num, &status))
            step_command(r, num, status);
        else if (s->pending_step >= 0)
            answer_step(r, text, choice);
        else
            say_builtin(r, FB__T_FIN_ATTEINTE);
        return true;
    }
    if (text && cur(r)->type != FB__Q_TEXT && parse_step_text(r->d, text, &num, &status)) {
        say_builtin(r, FB__T_ETAPES_PAS_ENCORE); /* not an answer: the steps come at the end */
        ask(r);
        return true;
    }
    answer(r, text, choice);
    return true;
}

/* A reminder fired. */
static void on_timer(struct run *r, const char *id)
{
    struct fb__sess *s = &r->s;
    if (strcmp(id, TIMER_ID) != 0 || s->escalated || s->muted)
        return;
    if (s->moved) {
        say_builtin(r, FB__T_VERSION_CHANGEE);
        enter(r, r->d->start, true);
        return;
    }
    const struct fb__relance *cfg = relance_cfg(r);
    if (!cfg || s->reminders >= cfg->max)
        return;
    if (s->ended) {
        if (!cfg->step) {
            say_text(r, cfg->msg.t ? &cfg->msg : &r->d->texts[FB__T_RELANCE], NULL, NULL, NULL);
        } else {
            int open = -1;
            for (size_t i = 0; i < s->n_road && open < 0; i++)
                if (s->status[i] == FB__ST_A_FAIRE || s->status[i] == FB__ST_EN_COURS ||
                    s->status[i] == FB__ST_BLOQUEE)
                    open = (int)i;
            if (open < 0)
                return; /* every step is settled: nothing to follow up */
            s->pending_step = open;
            s->fails = 0;
            set_etape(r, open);
            ask_step(r, cfg->msg.t ? &cfg->msg : &r->d->texts[FB__T_RELANCE_ETAPE]);
        }
    } else {
        say_text(r, cfg->msg.t ? &cfg->msg : &r->d->texts[FB__T_RELANCE], NULL, NULL, NULL);
        ask(r);
    }
    s->reminders++;
    stat_effect(r, "reminder_sent");
    if (s->reminders < cfg->max)
        schedule(r, cfg->after, s->ended ? "suivi" : "inactivite");
}

/* An advisor handed the conversation back. */
static void on_handback(struct run *r)
{
    struct fb__sess *s = &r->s;
    if (!s->escalated)
        return;
    s->escalated = false;
    s->fails = 0;
    s->reminders = 0;
    stat_effect(r, "handed_back");
    say_builtin(r, FB__T_REPRISE);
    if (s->moved) {
        enter(r, r->d->start, true);
        return;
    }
    ask(r);
    arm(r);
}

/* ---- the step -------------------------------------------------------------------------------- */

/* True when the event has a known kind and the field its kind needs. */
static bool event_valid(const fb_event_t *ev)
{
    switch (ev->kind) {
    case FB_EVENT_START:
    case FB_EVENT_HANDBACK:
    case FB_EVENT_FORGET:
        return true;
    case FB_EVENT_MESSAGE:
        return ev->text != NULL;
    case FB_EVENT_CHOICE:
        return ev->choice != NULL;
    case FB_EVENT_TIMER:
        return ev->timer != NULL;
    }
    return false;
}

/* Frees what the run owns (not the effects, which the caller gets). */
static void run_free(struct run *r)
{
    invalidate(r);
    drop(&r->c_etape);
    drop(&r->c_delai);
    fb_free(r->c_communes);
    fb_free(r->c_cats);
    fb__session_free(&r->s);
}

int fb_engine_step(const fb_dialog_t *d, const json_t *session, const fb_event_t *ev,
                   const fb_engine_env_t *env, json_t **new_session, json_t **effects)
{
    if (new_session)
        *new_session = NULL;
    if (effects)
        *effects = NULL;
    if (!d || !ev || !env || !new_session || !effects || !event_valid(ev) || d->start < 0)
        return FB_EINVAL;

    struct run run, *r = &run;
    memset(r, 0, sizeof(*r));
    r->env = env;
    r->latest = d;
    r->xenv = (fb_expr_env_t){lookup, has_tag, r};
    bool keep = true;

    if (!session || json_is_null(session)) {
        /* no conversation yet */
        r->d = d;
        if (ev->kind == FB_EVENT_TIMER || ev->kind == FB_EVENT_HANDBACK) {
            *effects = json_array();
            *new_session = json_null();
            return 0;
        }
        r->effects = json_array();
        fb__session_init(d, &r->s);
        bool forget_cmd =
            ev->kind == FB_EVENT_MESSAGE && match_command(r, ev->text) == FB__CMD_OUBLIER;
        if (ev->kind == FB_EVENT_FORGET || forget_cmd) {
            forget(r);
            keep = false;
        } else {
            if (ev->kind == FB_EVENT_MESSAGE)
                fb__session_remember(&r->s, ev->text);
            stat_effect(r, "conversation_started");
            enter(r, d->start, false);
        }
    } else {
        int rc = fb__session_parse(d, env, session, &r->s);
        if (rc != 0) {
            fb__session_free(&r->s);
            return rc;
        }
        r->d = r->s.d;
        r->effects = json_array();
        /* every text the user writes, understood or not, before anything (an escalation's
         * summary) reads them; not while escalated: those go to the advisor's thread */
        if (ev->kind == FB_EVENT_MESSAGE && !r->s.escalated)
            fb__session_remember(&r->s, ev->text);
        switch (ev->kind) {
        case FB_EVENT_START:
            restart(r, "conversation_restarted");
            break;
        case FB_EVENT_MESSAGE:
            keep = on_input(r, ev->text, NULL);
            break;
        case FB_EVENT_CHOICE:
            keep = on_input(r, NULL, ev->choice);
            break;
        case FB_EVENT_TIMER:
            on_timer(r, ev->timer);
            break;
        case FB_EVENT_HANDBACK:
            on_handback(r);
            break;
        case FB_EVENT_FORGET:
            forget(r);
            keep = false;
            break;
        }
    }
    *new_session = keep ? fb__session_dump(&r->s) : json_null();
    *effects = r->effects;
    run_free(r);
    return 0;
}
