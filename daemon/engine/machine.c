/* SPDX-License-Identifier: MIT */
/*
 * machine.c - fb_engine_step(): one event through the dialog graph, producing the new session
 * and the effects (see machine_int.h): caches and name lookup, effects, asking, moving through
 * the graph, events, and the step itself.
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

/* French month names, by month - 1. */
const char *const fb__run_month_names[12] = {"janvier",   "février", "mars",     "avril",
                                             "mai",       "juin",    "juillet",  "août",
                                             "septembre", "octobre", "novembre", "décembre"};

/* ---- caches and name lookup ------------------------------------------------------------------ */

/* Releases the reference at *v (new or NULL) and clears it. */
void fb__run_drop(json_t **v)
{
    json_decref(*v);
    *v = NULL;
}

/* Forgets every cached value: call after changing answers, tags, state or roadmap. */
void fb__run_invalidate(struct run *r)
{
    fb__run_drop(&r->c_road);
    fb__run_drop(&r->c_question);
    fb__run_drop(&r->c_help);
    fb__run_drop(&r->c_fails);
    fb__run_drop(&r->c_min);
    fb__run_drop(&r->c_max);
    fb__run_drop(&r->c_example);
    fb__run_drop(&r->c_road_url);
    if (r->c_held == 0) /* most calls: no slot nor catalogue to walk */
        return;
    if (r->c_communes)
        for (size_t i = 0; i < r->d->n_slots; i++)
            fb__run_drop(&r->c_communes[i]);
    if (r->c_cats)
        for (size_t i = 0; i < r->d->n_catalogues; i++)
            fb__run_drop(&r->c_cats[i]);
    r->c_held = 0;
}

/* Call after changing s.answers (with fb__run_invalidate()): the item conditions that read them
 * are evaluated again. */
void fb__run_answers_changed(struct run *r)
{
    r->answers_gen++;
}

/* True when catalogue item `i` applies: it has no `si:`, or its condition holds. A condition
 * on answers only is evaluated once until they change (the roadmap's rules and the catalogues
 * ask for the same items several times in a step): fb__run_answers_changed() forgets them. */
static bool item_applies(struct run *r, size_t i)
{
    const struct fb__item *it = &r->d->items[i];
    if (!it->cond)
        return true;
    if (!it->cond_answers)
        return fb_expr_true(it->cond, &r->xenv);
    if (!r->c_items)
        r->c_items = fb_calloc(r->d->n_items + 1, 1);
    else if (r->c_items_gen != r->answers_gen)
        memset(r->c_items, 0, r->d->n_items);
    r->c_items_gen = r->answers_gen;
    if (!r->c_items[i])
        r->c_items[i] = fb_expr_true(it->cond, &r->xenv) ? 2 : 1;
    return r->c_items[i] == 2;
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
bool fb__run_is_nsp(const json_t *v)
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
void fb__run_format_day(fb_buf_t *out, int32_t day)
{
    int y, m, dd;
    fb__day_ymd(day, &y, &m, &dd);
    (void)fb_buf_printf(out, "%d%s %s %d", dd, dd == 1 ? "er" : "",
                        fb__run_month_names[(m - 1) % 12], y);
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
    /* literal keys; the strings are the dialog's shared ones (read-only, as the item's fields) */
    (void)json_object_set_nocheck(o, "id", d->item_id_json[item]);
    (void)json_object_set_nocheck(o, "statut", d->status_name_json[status]);
    (void)json_object_set_new_nocheck(o, "numero", json_integer((json_int_t)index + 1));
    (void)json_object_set_nocheck(o, "statut_texte", d->status_label_json[status]);
    if (day > 0) {
        fb_buf_t b;
        fb_buf_init(&b, 64);
        fb__run_format_day(&b, day);
        (void)json_object_set_new_nocheck(o, "modifie_le", json_string(fb_buf_str(&b)));
        fb_buf_free(&b);
    }
    return o;
}

/*
 * The roadmap of `feuille_de_route`, without its entries: the stored one once the guided part
 * ended, else the rules' current one, as new arrays of `*n` item indices, statuses and days of
 * the user's last change (0: none). Free the three with fb_free().
 */
void fb__run_roadmap(struct run *r, int **items, unsigned char **status, int32_t **day, size_t *n)
{
    if (r->s.ended) {
        *n = r->s.n_road;
        *items = fb_calloc(*n + 1, sizeof(int));
        *status = fb_calloc(*n + 1, 1);
        *day = fb_calloc(*n + 1, sizeof(int32_t));
        for (size_t i = 0; i < *n; i++) {
            (*items)[i] = r->s.road[i];
            (*status)[i] = r->s.status[i];
            (*day)[i] = r->s.day ? r->s.day[i] : 0;
        }
        return;
    }
    compute_roadmap(r, items, status, n);
    *day = fb_calloc(*n + 1, sizeof(int32_t));
}

/* `feuille_de_route`: the entries of fb__run_roadmap() (new). */
static json_t *roadmap_json(struct run *r)
{
    json_t *a = json_array();
    int *items;
    unsigned char *status;
    int32_t *day;
    size_t n;
    fb__run_roadmap(r, &items, &status, &day, &n);
    for (size_t i = 0; i < n; i++)
        (void)json_array_append_new(a, road_entry(r->d, items[i], status[i], i, day[i]));
    fb_free(items);
    fb_free(status);
    fb_free(day);
    return a;
}

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
    if (fb__run_render_text(r, t, &b, NULL) == 0)
        v = text_json(fb_buf_str(&b), b.len);
    r->guard--;
    fb_buf_free(&b);
    return v;
}

/*
 * The value of built-in name `name` (`len` bytes), computed once per step and cached in the run:
 * borrowed, valid until fb__run_invalidate() or the end of the step; NULL when it has no value
 * here.
 */
const json_t *fb__run_builtin(struct run *r, const char *name, size_t len)
{
    const struct fb__state *st = cur(r);
#define IS(lit) (len == sizeof(lit) - 1 && memcmp(name, lit, len) == 0)
    if (IS("feuille_de_route")) {
        r->road_read = true;
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
    if (IS("recherche"))
        return r->c_recherche;
    if (IS("conseillers")) /* an advisor can take this conversation: texts that offer one */
        return fb__run_advisor_available(r) ? json_true() : json_false();
    if (IS("lien_feuille_de_route")) { /* the roadmap page's address, when the daemon has one */
        if (!r->c_road_url && r->env->roadmap_url && r->env->roadmap_url[0])
            r->c_road_url = json_string(r->env->roadmap_url);
        return r->c_road_url;
    }
    if (IS("joignable")) /* the bot can write to this user later: texts that promise it */
        return r->env && r->env->unreachable ? json_false() : json_true();
    if (IS("courriel")) /* the user may leave an address to be reached later */
        return r->env && r->env->mail_offer ? json_true() : json_false();
    if (st->type == FB__Q_NONE || r->guard > 0)
        return NULL;
    if (IS("exemple")) { /* « 1 » pour « Label », for the help after failures */
        if (!r->c_example && st->n_choices > 0)
            r->c_example = json_sprintf("« 1 » pour « %s »", st->choices[0].label);
        else if (!r->c_example && st->type == FB__Q_YESNO)
            r->c_example = json_string("« oui » ou « non »");
        return r->c_example;
    }
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
            if (!r->c_communes[slot]) {
                r->c_communes[slot] = fb__commune_expand(geo_of(r), v);
                r->c_held++;
            }
            v = r->c_communes[slot];
        }
    } else {
        v = fb__run_builtin(r, name, len);
        for (size_t c = 0; !v && c < d->n_catalogues; c++)
            if (strlen(d->catalogues[c].name) == len &&
                memcmp(d->catalogues[c].name, name, len) == 0) {
                if (!r->c_cats)
                    r->c_cats = fb_calloc(d->n_catalogues + 1, sizeof(json_t *));
                if (!r->c_cats[c]) {
                    r->c_cats[c] = catalogue_json(r, c);
                    r->c_held++;
                }
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
int fb__run_render_text(struct run *r, const struct fb__text *t, fb_buf_t *plain, fb_buf_t *html)
{
    return fb__text_render(t, &r->xenv, plain, html);
}

/* ---- effects --------------------------------------------------------------------------------- */

/* Appends effect `e` (stolen; NULL is ignored). */
void fb__run_effect(struct run *r, json_t *e)
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
    if (r->note) { /* « Noté : X. » before the first message that follows a loose answer */
        char *note = r->note;
        r->note = NULL;
        fb_buf_t np, nh;
        fb_buf_init(&np, MAX_TEXT_BYTES);
        fb_buf_init(&nh, MAX_TEXT_BYTES);
        if (fb__run_render_text(r, &r->d->texts[FB__T_NOTE], &np, &nh) == 0) {
            char *p = fb_asprintf("%s %s.\n\n%s", fb_buf_str(&np), note, json_string_value(text));
            fb_buf_t h;
            fb_buf_init(&h, MAX_TEXT_BYTES);
            (void)fb_buf_puts(&h, "<p>");
            (void)fb_template_html_escape(fb_buf_str(&np), np.len, &h);
            (void)fb_buf_puts(&h, " ");
            (void)fb_template_html_escape(note, strlen(note), &h);
            (void)fb_buf_printf(&h, ".</p>%s", json_string_value(html));
            json_decref(text);
            json_decref(html);
            text = text_json(p, strlen(p));
            html = text_json(fb_buf_str(&h), h.len);
            fb_free(p);
            fb_buf_free(&h);
        }
        fb_buf_free(&np);
        fb_buf_free(&nh);
        fb_free(note);
    }
    json_t *e = fb__run_effect_new(r, FB_EFFECT_SAY);
    (void)json_object_set_new_nocheck(e, "text", text);
    (void)json_object_set_new_nocheck(e, "html", html);
    if (choices)
        (void)json_object_set_nocheck(e, "choices", (json_t *)(uintptr_t)choices);
    fb__run_effect(r, e);
}

size_t fb__run_list_number(char num[FB__LIST_NUMBER], size_t i)
{
    size_t at = FB__LIST_NUMBER; /* written backwards from the end */
    num[--at] = ' ';
    num[--at] = '.';
    size_t v = i + 1;
    do {
        num[--at] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return at;
}

/*
 * Appends option `i` (0-based) of a numbered list after a text: to `plain` "\n\n1. Label" for the
 * first, "\n2. Label" for the next ones; to `html` "1. " or "<br>2. " and the label escaped. The
 * bytes of fb_buf_printf(plain, "%s%zu. %s", ...) and fb_buf_printf(html, "%s%zu. ", ...) followed
 * by fb_template_html_escape(), without the printf machinery (a list is written at most steps).
 * 0, or FB_ETOOBIG at the first append past a buffer's maximum (that buffer is then freed and
 * nothing more is appended, as a failed fb_buf_printf() leaves it).
 */
int fb__run_list_item(fb_buf_t *plain, fb_buf_t *html, size_t i, const char *label)
{
    char num[FB__LIST_NUMBER];
    size_t at = fb__run_list_number(num, i);
    size_t nlen = sizeof(num) - at;
    int rc = i ? fb_buf_append(plain, "\n", 1) : fb_buf_append(plain, "\n\n", 2);
    if (!rc)
        rc = fb_buf_append(plain, num + at, nlen);
    if (!rc)
        rc = fb_buf_puts(plain, label);
    int rh = i ? fb_buf_append(html, "<br>", 4) : 0;
    if (!rh)
        rh = fb_buf_append(html, num + at, nlen);
    if (!rh)
        rh = fb_template_html_escape(label, strlen(label), html);
    return rc ? rc : rh;
}

/* Appends a `say` effect with the contents of two buffers (which are emptied). */
void fb__run_say_bufs(struct run *r, fb_buf_t *plain, fb_buf_t *html, const json_t *choices)
{
    say_new(r, text_json(fb_buf_str(plain), plain->len), text_json(fb_buf_str(html), html->len),
            choices);
    fb_buf_reset(plain);
    fb_buf_reset(html);
}

/* Says text `t` (rendered), followed by an optional list (plain/html) and choices. */
void fb__run_say_text(struct run *r, const struct fb__text *t, const char *list_plain,
                      const char *list_html, const json_t *choices)
{
    if (t->plain && !list_plain) {
        if (t->say && !choices && !r->note) /* the dialog's own effect: nothing to add to it */
            fb__run_effect(r, json_incref(t->say));
        else
            say_new(r, json_incref(t->plain), json_incref(t->html), choices);
        return;
    }
    fb_buf_t plain, html;
    fb_buf_init(&plain, MAX_TEXT_BYTES);
    fb_buf_init(&html, MAX_TEXT_BYTES);
    r->road_read = false;
    if (fb__run_render_text(r, t, &plain, &html) == 0) {
        if (list_plain) {
            if (plain.len == 0 || fb_buf_puts(&plain, "\n\n") == 0)
                (void)fb_buf_puts(&plain, list_plain);
            (void)fb_buf_puts(&html, list_html);
        }
        size_t n = json_array_size(r->effects);
        fb__run_say_bufs(r, &plain, &html, choices);
        /* A text that shows the roadmap is one the user must not miss (the router's kind
         * "roadmap", docs/internals/ENGINE.md). */
        if (r->road_read && json_array_size(r->effects) > n)
            (void)json_object_set_new(json_array_get(r->effects, n), "roadmap", json_true());
    }
    r->road_read = false;
    fb_buf_free(&plain);
    fb_buf_free(&html);
}

/* Says built-in text `which` (or its override under `textes:`). */
void fb__run_say_builtin(struct run *r, enum fb__textid which)
{
    fb__run_say_text(r, &r->d->texts[which], NULL, NULL, NULL);
}

/*
 * A new effect object {"type": NAME}, as fb_effect_new() makes it, but with the dialog's shared
 * JSON string for the name (effects are read-only values, like the sessions: ENGINE.md).
 */
json_t *fb__run_effect_new(const struct run *r, fb_effect_t type)
{
    FB_ASSERT((int)type >= 0 && (int)type < FB_EFFECT_COUNT);
    json_t *o = json_object();
    (void)json_object_set_nocheck(o, "type", r->d->effect_json[type]);
    return o;
}

/* Appends an effect with no field but its type (`forget`, `end`, `cancel`). */
void fb__run_simple_effect(struct run *r, fb_effect_t type)
{
    fb__run_effect(r, fb__run_effect_new(r, type));
}

/* Appends `stat` effect `name` (a literal: valid UTF-8). */
void fb__run_stat_effect(struct run *r, const char *name)
{
    json_t *e = fb__run_effect_new(r, FB_EFFECT_STAT);
    (void)json_object_set_new_nocheck(e, "name", json_string(name));
    fb__run_effect(r, e);
}

/* Appends a `step` effect: road entry `i`'s item now has `status`. */
void fb__run_step_effect(struct run *r, size_t i, unsigned status)
{
    json_t *shared = r->d->step_effects[(size_t)r->s.road[i] * FB__ST_COUNT + status];
    if (shared) { /* the dialog's own effect: a roadmap holds only items the rules name */
        fb__run_effect(r, json_incref(shared));
        return;
    }
    json_t *e = fb__run_effect_new(r, FB_EFFECT_STEP);
    (void)json_object_set_nocheck(e, "item", r->d->item_ref_json[r->s.road[i]]);
    (void)json_object_set_nocheck(e, "status", r->d->status_name_json[status]);
    fb__run_effect(r, e);
}

/* Appends a `cancel` of the reminder "relance". */
void fb__run_cancel_timer(struct run *r)
{
    json_t *e = fb__run_effect_new(r, FB_EFFECT_CANCEL);
    (void)json_object_set_nocheck(e, "id", r->d->timer_json);
    fb__run_effect(r, e);
}

/* Appends a `cancel` of every reminder. */
void fb__run_cancel_all(struct run *r)
{
    fb__run_simple_effect(r, FB_EFFECT_CANCEL);
}

/* Appends a `schedule` of reminder "relance" in `after` seconds, as setting `cfg` arms it: its
 * shared effect when `after` is its delay. */
static void schedule(struct run *r, const struct fb__relance *cfg, long long after,
                     enum fb__reason reason)
{
    if (after == cfg->after && cfg->schedule[reason]) {
        fb__run_effect(r, json_incref(cfg->schedule[reason]));
        return;
    }
    json_t *e = fb__run_effect_new(r, FB_EFFECT_SCHEDULE);
    (void)json_object_set_nocheck(e, "id", r->d->timer_json);
    (void)json_object_set_new_nocheck(e, "after", json_integer((json_int_t)after));
    (void)json_object_set_nocheck(e, "reason", r->d->reason_json[reason]);
    fb__run_effect(r, e);
}

/* ---- asking ---------------------------------------------------------------------------------- */

/* Renders `t` as plain text with `ctx` (stolen, may be NULL) as `recherche`. New string. */
static char *render_with(struct run *r, const struct fb__text *t, json_t *ctx)
{
    json_t *saved = r->c_recherche;
    fb_buf_t b;
    fb_buf_init(&b, MAX_TEXT_BYTES);
    r->c_recherche = ctx;
    char *out = fb__run_render_text(r, t, &b, NULL) == 0 ? fb_strdup(fb_buf_str(&b)) : NULL;
    r->c_recherche = saved;
    json_decref(ctx);
    fb_buf_free(&b);
    return out ? out : fb_strdup("");
}

void fb__run_recherche_set(struct run *r, const char *key, json_t *v)
{
    if (!r->c_recherche)
        r->c_recherche = json_object();
    (void)json_object_set_new(r->c_recherche, key, v ? v : json_null());
}

char *fb__run_area_label(const fb_geo_area_t *a)
{
    if (a->kind == FB_GEO_AREA_DEP)
        return fb_asprintf("%s (%s)", a->name, a->code);
    return fb_strdup(a->name);
}

json_t *fb__run_area_context(const fb_geo_area_t *a)
{
    char *zone = fb__run_area_label(a);
    json_t *o =
        json_pack("{s:s, s:s, s:s}", "zone", zone, "type",
                  a->kind == FB_GEO_AREA_DEP ? "departement" : "region", "code_zone", a->code);
    fb_free(zone);
    return o;
}

bool fb__run_candidate_area(const struct run *r, const char *id, fb_geo_area_t *a)
{
    const fb_geo_t *geo = geo_of(r);
    if (!geo || (id[0] != 'd' && id[0] != 'r'))
        return false;
    return fb_geo_area_by_code(geo, id[0] == 'd' ? FB_GEO_AREA_DEP : FB_GEO_AREA_REGION, id + 1, a);
}

/*
 * The label of commune candidate `code`: "Saint-Denis (93)"; "Le département Creuse (23)" for
 * an area ("d23"); after a postal code, the commune listed for its INSEE code says so
 * (`commune_insee_libelle`). New string.
 */
char *fb__run_candidate_label(struct run *r, const char *code)
{
    const fb_geo_t *geo = geo_of(r);
    fb_geo_area_t a;
    if (fb__run_candidate_area(r, code, &a))
        return render_with(r, &r->d->texts[FB__T_COMMUNE_ZONE_LIBELLE], fb__run_area_context(&a));
    const fb_commune_t *c = geo ? fb_geo_by_insee(geo, code) : NULL;
    if (!c)
        return fb_strdup(code);
    char *label = fb_asprintf("%s (%s)", c->name, c->dep);
    const char *qual = r->s.qual;
    if (qual[0] == 'p' && strcmp(c->insee, qual + 1) == 0 && !fb_geo_has_postcode(c, qual + 1)) {
        char *l = render_with(r, &r->d->texts[FB__T_COMMUNE_INSEE_LIBELLE],
                              fb_json_strings(2, "proposition", label, "code", qual + 1));
        fb_free(label);
        label = l;
    }
    return label;
}

char *fb__run_autre_label(struct run *r)
{
    return render_with(r, &r->d->texts[FB__T_COMMUNE_AUTRE_LIBELLE], NULL);
}

/*
 * Says the commune candidates after `intro` (NULL: `commune_choix`, or `commune_confirmer` for a
 * lone commune) as a numbered list with choices (ids: INSEE codes, "d23"/"r53" for an area), and
 * always a last option `commune_autre_libelle` (id "autre"). A lone commune is a yes/no
 * question: "Vous voulez dire Ugine (73) ?" 1. Oui (its INSEE code) 2. Non ("autre").
 */
void fb__run_ask_candidates(struct run *r, const struct fb__text *intro)
{
    struct fb__sess *s = &r->s;
    bool confirm = s->n_cand == 1 && s->cand[0][0] != 'd' && s->cand[0][0] != 'r';
    char *autre = fb__run_autre_label(r);
    fb__run_recherche_set(r, "autre", json_string(autre));
    if (confirm && !json_object_get(r->c_recherche, "proposition")) {
        char *l = fb__run_candidate_label(r, s->cand[0]);
        fb__run_recherche_set(r, "proposition", json_string(l));
        fb_free(l);
    }
    if (!intro)
        intro = &r->d->texts[confirm ? FB__T_COMMUNE_CONFIRMER : FB__T_COMMUNE_CHOIX];
    fb_buf_t plain, html;
    fb_buf_init(&plain, MAX_TEXT_BYTES);
    fb_buf_init(&html, MAX_TEXT_BYTES);
    json_t *choices = json_array();
    if (fb__run_render_text(r, intro, &plain, &html) == 0) {
        (void)fb_buf_puts(&html, "<p>");
        for (size_t i = 0; i <= s->n_cand; i++) {
            const char *id = i < s->n_cand ? s->cand[i] : "autre";
            char *label = confirm         ? fb_strdup(i == 0 ? "Oui" : "Non")
                          : i < s->n_cand ? fb__run_candidate_label(r, id)
                                          : fb_strdup(autre);
            (void)fb__run_list_item(&plain, &html, i, label);
            (void)json_array_append_new(choices, fb_json_strings(2, "id", id, "label", label));
            fb_free(label);
        }
        (void)fb_buf_puts(&html, "</p>");
        fb__run_say_bufs(r, &plain, &html, choices);
    }
    json_decref(choices);
    fb_buf_free(&plain);
    fb_buf_free(&html);
    fb_free(autre);
}

/*
 * Says the question about roadmap step `r->s.pending_step`, after `intro`: the reminder's five
 * answers, or the six statuses when the user picked the step (`pending_pick`).
 */
void fb__run_ask_step(struct run *r, const struct fb__text *intro)
{
    const fb_dialog_t *d = r->d;
    bool pick = r->s.pending_pick;
    const fb_choice_t *opts = pick ? d->all_status_choices : d->status_choices;
    size_t n = pick ? d->n_all_status_choices : d->n_status_choices;
    fb_buf_t plain, html;
    fb_buf_init(&plain, MAX_TEXT_BYTES);
    fb_buf_init(&html, MAX_TEXT_BYTES);
    if (fb__run_render_text(r, intro, &plain, &html) == 0) {
        (void)fb_buf_puts(&html, "<p>");
        for (size_t i = 0; i < n; i++) {
            const char *label = opts[i].label;
            (void)fb__run_list_item(&plain, &html, i, label);
        }
        (void)fb_buf_puts(&html, "</p>");
        fb__run_say_bufs(r, &plain, &html, pick ? d->all_status_json : d->status_json);
    }
    fb_buf_free(&plain);
    fb_buf_free(&html);
}

/* Sets r->c_etape to the roadmap entry `i` of the session (or NULL). */
void fb__run_set_etape(struct run *r, int i)
{
    fb__run_drop(&r->c_etape);
    if (i >= 0 && (size_t)i < r->s.n_road)
        r->c_etape =
            road_entry(r->d, r->s.road[i], r->s.status[i], (size_t)i, r->s.day ? r->s.day[i] : 0);
}

/* Asks the current question (with its numbered options), or what is pending. */
void fb__run_ask(struct run *r)
{
    const struct fb__state *st = cur(r);
    if (r->no_ask)
        return;
    if (!asking(r)) {
        if (r->s.pending_step >= 0) {
            fb__run_set_etape(r, r->s.pending_step);
            const struct fb__relance *cfg = &st->relance;
            if (r->s.pending_pick)
                fb__run_ask_step(r, &r->d->texts[FB__T_ETAPE_STATUT]);
            else
                fb__run_ask_step(r, cfg->msg.t ? &cfg->msg : &r->d->texts[FB__T_RELANCE_ETAPE]);
        }
        return;
    }
    if (st->type == FB__Q_NONE)
        return;
    if (r->s.n_cand > 0) {
        fb__run_ask_candidates(r, NULL);
        return;
    }
    if (r->s.n_confirm > 0) {
        fb__run_ask_confirm(r);
        return;
    }
    if (st->ask_effect && !r->note) { /* the dialog's own effect: nothing to add to it */
        fb__run_effect(r, json_incref(st->ask_effect));
        return;
    }
    if (st->ask_plain) {
        say_new(r, json_incref(st->ask_plain), json_incref(st->ask_html), st->choices_json);
        return;
    }
    fb__run_say_text(r, &st->text, st->list_plain, st->list_html, st->choices_json);
}

/* The reminder settings that apply at the current state, or NULL. */
const struct fb__relance *fb__run_relance_cfg(const struct run *r)
{
    /* the question asked after the end is no question of the guided part: the end's follow-up */
    const struct fb__state *st = r->s.back_to >= 0 ? &r->d->states[r->s.back_to] : cur(r);
    if (st->relance.set)
        return &st->relance;
    if (!r->s.ended && st->type != FB__Q_NONE && r->d->relance.set)
        return &r->d->relance;
    return NULL;
}

/* Arms the reminder for the current state in `after` seconds, or after the state's own delay
 * when `after` <= 0 (when one applies and reminders are not stopped). */
void fb__run_arm_after(struct run *r, long long after)
{
    const struct fb__relance *cfg = fb__run_relance_cfg(r);
    if (cfg && !r->s.muted)
        schedule(r, cfg, after > 0 ? after : cfg->after,
                 r->s.ended ? FB__REASON_SUIVI : FB__REASON_INACTIVITE);
}

/* Arms the reminder for the current state (when one applies and reminders are not stopped). */
void fb__run_arm(struct run *r)
{
    fb__run_arm_after(r, 0);
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

/* True when an advisor can take this conversation: env->has_advisor for the session's commune
 * (its first answer that is a commune, as fb_engine_session_insee() and the escalation's
 * territory lookup read it). */
bool fb__run_advisor_available(const struct run *r)
{
    if (!r->env->has_advisor)
        return true;
    const char *insee = NULL;
    const char *k;
    const json_t *v;
    json_object_foreach(r->s.answers, k, v)
    {
        const char *i = json_string_value(json_object_get(v, "insee"));
        if (i && i[0]) {
            insee = i;
            break;
        }
    }
    return r->env->has_advisor(r->env->has_advisor_arg, insee);
}

/*
 * No advisor can take the conversation (issue #19: no dead end): never promise one. Says
 * `sans_conseiller` (how to reach a person: the dialog names the territory's contacts), then the
 * pending question again, so that the conversation carries on. Reminders are left as they are.
 */
static void no_advisor(struct run *r)
{
    fb__run_say_builtin(r, FB__T_SANS_CONSEILLER);
    if (asking(r) && cur(r)->type != FB__Q_NONE)
        fb__run_ask(r);
}

/* Hands the conversation to an advisor: says so, emits `escalate`, stops reminders. When no
 * advisor can take it (fb__run_advisor_available()), says how to reach one instead and asks the
 * pending question again. */
void fb__run_escalate(struct run *r, const char *reason)
{
    if (!fb__run_advisor_available(r)) {
        no_advisor(r);
        return;
    }
    fb__run_say_builtin(r, FB__T_ESCALADE);
    json_t *e = json_object();
    (void)json_object_set_new(e, "type", json_string(fb_effect_name(FB_EFFECT_ESCALATE)));
    (void)json_object_set_new(e, "reason", json_string(reason));
    json_t *sum = fb__run_summary(r);
    (void)json_object_set_new(e, "summary", sum ? sum : json_string(""));
    fb__run_effect(r, e);
    fb__run_cancel_all(r);
    fb__run_stat_effect(r, "escalated");
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
int fb__run_choice_index(const struct fb__state *st, const char *id)
{
    for (size_t i = 0; i < st->n_choices; i++)
        if (strcmp(st->choices[i].id, id) == 0)
            return (int)i;
    return -1;
}

/* Emits the tags of answer `v` to question `st`: its chosen options' tags, then its signals. */
void fb__run_emit_tags(struct run *r, const struct fb__state *st, const json_t *v)
{
    if (st->type == FB__Q_CHOICE && json_is_string(v)) {
        int c = fb__run_choice_index(st, json_string_value(v));
        for (size_t t = 0; c >= 0 && t < st->choices[c].n_tags; t++)
            r->s.tags[st->choices[c].tags[t]] = 1;
    } else if (st->type == FB__Q_MULTI && json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            const json_t *e = json_array_get(v, i);
            int c = json_is_string(e) ? fb__run_choice_index(st, json_string_value(e)) : -1;
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
        int c = fb__run_choice_index(st, json_string_value(v));
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
    if (fb__run_is_nsp(v))
        return st->nsp_ok;
    switch (st->type) {
    case FB__Q_YESNO:
        return json_is_boolean(v);
    case FB__Q_CHOICE:
        return json_is_string(v) && fb__run_choice_index(st, json_string_value(v)) >= 0;
    case FB__Q_MULTI:
        if (!json_is_array(v))
            return false;
        for (size_t i = 0; i < json_array_size(v); i++)
            if (!json_is_string(json_array_get(v, i)) ||
                fb__run_choice_index(st, json_string_value(json_array_get(v, i))) < 0)
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
    if (json_is_string(c) && !fb__run_is_nsp(c)) {
        char *folded = fb_text_fold_dup(json_string_value(c));
        bool empty = !folded || !folded[0];
        for (size_t i = 0; !empty && i < sizeof(no_comment) / sizeof(no_comment[0]); i++)
            empty = strcmp(folded, no_comment[i]) == 0;
        fb_free(folded);
        if (!empty)
            (void)json_object_set(e, "commentaire", (json_t *)(uintptr_t)c);
    }
    fb__run_effect(r, e);
    r->s.avis_given = true;
}

/* Ends the guided part at final state `target`: roadmap, message, `step`/`end`/`stat`. */
static void finish(struct run *r, int target)
{
    struct fb__sess *s = &r->s;
    s->state = target;
    s->fails = 0;
    s->n_cand = 0;
    s->n_confirm = 0;
    s->qual[0] = '\0';
    s->pending_step = -1;
    s->reminders = 0;
    fb__run_invalidate(r);
    fb_free(s->road);
    fb_free(s->status);
    fb_free(s->day);
    compute_roadmap(r, &s->road, &s->status, &s->n_road);
    s->day = fb_calloc(s->n_road + 1, sizeof(*s->day));
    s->ended = true;
    fb__run_invalidate(r);
    fb__run_say_text(r, &cur(r)->text, NULL, NULL, NULL);
    for (size_t i = 0; i < s->n_road; i++)
        fb__run_step_effect(r, i, s->status[i]);
    fb__run_simple_effect(r, FB_EFFECT_END);
    fb__run_stat_effect(r, "site_completed");
    if (cur(r)->relance.set && !s->muted)
        fb__run_arm(r);
    else
        fb__run_cancel_timer(r);
    avis_effect(r, cur(r));
}

/*
 * Enters state `target` and walks on: preconditions that do not hold skip a state (to its
 * `suite`), messages are said and passed, the walk stops at a question (asked) or a final
 * state. With `replay`, questions whose slot already holds a fitting answer are passed too
 * (after a version change). A walk that finds no way on, or loops, escalates ("dialogue").
 */
void fb__run_enter(struct run *r, int target, bool replay)
{
    const fb_dialog_t *d = r->d;
    size_t hops = 0;
    for (;;) {
        if (target < 0 || ++hops > 2 * d->n_states + 2) {
            fb__run_escalate(r, "dialogue");
            return;
        }
        const struct fb__state *st = &d->states[target];
        if (st->cond && !fb_expr_true(st->cond, &r->xenv)) {
            target = next_of(r, st);
            continue;
        }
        if (st->final) {
            if (r->s.back_to >= 0) /* what is asked after the end is over: back there */
                fb__run_leave_after_end(r);
            else
                finish(r, target);
            return;
        }
        if (st->type == FB__Q_NONE) {
            fb__run_say_text(r, &st->text, NULL, NULL, NULL);
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
        r->s.n_confirm = 0;
        r->s.qual[0] = '\0';
        if (r->s.back_to < 0)
            r->s.ended = false;
        fb__run_invalidate(r);
        fb__run_ask(r);
        /* after the end, the follow-up reminder stays as it is: the question asked then gets
         * no reminder of its own (the user's activity pushes the follow-up back) */
        if (r->s.back_to < 0)
            fb__run_arm(r);
        return;
    }
}

/* Stores answer `v` (stolen) to the current question and moves on. */
void fb__run_accept(struct run *r, json_t *v)
{
    const struct fb__state *st = cur(r);
    int here = r->s.state;
    if (st->slot < 0) {
        json_decref(v);
        return;
    }
    fb__session_own_answers(&r->s);
    (void)json_object_set_new(r->s.answers, r->d->slots[st->slot].name, v);
    fb__run_answers_changed(r);
    fb__run_invalidate(r);
    fb__run_emit_tags(r, st, v);
    if (r->s.back_to < 0) /* « retour » goes back to the guided part's questions only */
        push_path(r, here);
    r->s.fails = 0;
    r->s.n_cand = 0;
    r->s.n_confirm = 0;
    r->s.qual[0] = '\0';
    fb__run_enter(r, after_answer(r, st, v), false);
}

/* Reacts to an answer that could not be used: reprompt, then the `echecs` action. */
void fb__run_fail(struct run *r, fb_answer_status_t why)
{
    const struct fb__state *st = cur(r);
    const fb_dialog_t *d = r->d;
    r->s.fails++;
    fb__run_invalidate(r);
    if (r->s.fails >= st->fail_max) {
        /* `conseiller` only when an advisor can take it; otherwise (and for `aide`) help with
         * the question: `aide_echecs` (the question's help inside), the commands when the
         * question has no help of its own, then the question and its options again */
        if (st->fail_action == FB__FAIL_CONSEILLER && fb__run_advisor_available(r)) {
            fb__run_escalate(r, "echecs");
            return;
        }
        fb__run_say_builtin(r, FB__T_AIDE_ECHECS);
        if (!st->help.t)
            fb__run_say_builtin(r, FB__T_AIDE_GENERALE);
        r->s.fails = 0;
        fb__run_invalidate(r);
        fb__run_ask(r);
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
    fb__run_say_text(r, t, st->list_plain, st->list_html, st->choices_json);
}

/* ---- after the end --------------------------------------------------------------------------- */

void fb__run_leave_after_end(struct run *r)
{
    struct fb__sess *s = &r->s;
    if (s->back_to < 0)
        return;
    s->state = s->back_to;
    s->back_to = -1;
    s->fails = 0;
    s->n_cand = 0;
    s->n_confirm = 0;
    s->qual[0] = '\0';
    fb__run_invalidate(r);
}

/*
 * True when the final state's `apres_fin` is due (issue #16: « Je donne mon avis » comes once the
 * user has had time to read the roadmap, not in the same breath): the guided part ended, it was
 * never entered in this conversation, no avis was given, the state it leads to has no answer yet
 * (an older version of the dialog asked it before the end), and nothing else waits for the user:
 * a question about a step, the feedback to a knowledge-base answer, the answers offered to
 * choose from, the step list's buttons.
 */
static bool after_end_due(const struct run *r)
{
    const struct fb__sess *s = &r->s;
    if (!s->ended || s->back_to >= 0 || s->moved || s->escalated || s->after_asked ||
        s->avis_given || s->pending_step >= 0 || s->kb_asked || s->n_kb_offer > 0 ||
        r->steps_listed)
        return false;
    int t = cur(r)->after_end;
    if (t < 0)
        return false;
    const struct fb__state *st = &r->d->states[t];
    return st->slot < 0 || !json_object_get(s->answers, r->d->slots[st->slot].name);
}

/* Enters the final state's `apres_fin`, once per conversation: its questions are asked and
 * answered as in the guided part, and reaching a final state returns to this one quietly. */
static void start_after_end(struct run *r)
{
    struct fb__sess *s = &r->s;
    s->after_asked = true;
    s->back_to = s->state;
    s->fails = 0;
    fb__run_enter(r, cur(r)->after_end, false);
}

/* ---- events ---------------------------------------------------------------------------------- */

/*
 * A message while an advisor has the conversation (issue #19: the commands still answer). Text
 * that is no command, « conseiller » and « stop » stay quiet (the router relays them to the
 * advisor's thread). « retour » and « recommencer » end the wait: the user takes the questions
 * back (the escalation feature closes the ticket). The commands that only show something (aide,
 * mes étapes, mes données, où en suis-je) answer without asking the pending question (an answer
 * would go to the advisor), then say `attente_conseiller`. Returns false when the session must
 * become null (« oublier mes données »).
 */
static bool on_escalated_command(struct run *r, int cmd)
{
    switch (cmd) {
    case FB__CMD_OUBLIER:
        return fb__run_command(r, cmd);
    case FB__CMD_RETOUR:
    case FB__CMD_RECOMMENCER:
        r->s.escalated = false;
        r->s.fails = 0;
        r->s.reminders = 0;
        (void)fb__run_command(r, cmd);
        if (cmd == FB__CMD_RETOUR)
            fb__run_arm(r); /* the escalation cancelled it; recommencer arms its first question */
        return true;
    case FB__CMD_AIDE:
        fb__run_say_builtin(r, FB__T_AIDE_GENERALE);
        fb__run_say_builtin(r, FB__T_ATTENTE_CONSEILLER);
        return true;
    case FB__CMD_ETAPES:
    case FB__CMD_MES_DONNEES:
    case FB__CMD_OU_EN_SUIS_JE:
        r->no_ask = true;
        (void)fb__run_command(r, cmd);
        r->no_ask = false;
        fb__run_say_builtin(r, FB__T_ATTENTE_CONSEILLER);
        return true;
    default:
        return true; /* quiet: an advisor has it */
    }
}

/* A message or a picked option (see on_input()). Returns false when the session must become
 * null. */
static bool read_input(struct run *r, const char *text, const char *choice)
{
    struct fb__sess *s = &r->s;
    if (text) {
        int cmd = fb__run_match_command(r, text);
        if (s->escalated)
            return on_escalated_command(r, cmd);
        s->reminders = 0;
        /* a session moved by a version change is replayed first, except for the commands
         * that must act at once */
        bool now = cmd == FB__CMD_OUBLIER || cmd == FB__CMD_CONSEILLER || cmd == FB__CMD_STOP ||
                   cmd == FB__CMD_RECOMMENCER;
        if (cmd != FB__CMD_NONE && (!s->moved || now)) {
            /* a command while the question asked after the end waits: the user moved on, and
             * that question is not asked again (but « aide » explains it) */
            if (cmd != FB__CMD_AIDE)
                fb__run_leave_after_end(r);
            return fb__run_command(r, cmd);
        }
    } else if (s->escalated) {
        return true;
    }
    s->reminders = 0;
    if (s->moved) {
        fb__run_say_builtin(r, FB__T_VERSION_CHANGEE);
        fb__run_enter(r, r->d->start, true);
        return true;
    }
    /* a question, feedback to an answer, or the choice among the answers offered */
    if (fb__run_kb_input(r, text, choice, r->kb_feedback))
        return true;
    long num = 0;
    int status = -1;
    if (s->ended) {
        /* a step change answers before the question asked after the end, which is then left
         * (not in a free-text answer, where « étape 2 » is just words) */
        bool free_text = s->back_to >= 0 && cur(r)->type == FB__Q_TEXT;
        if (choice && (num = fb__run_step_choice(choice)) > 0) {
            fb__run_leave_after_end(r);
            fb__run_step_command(r, num, -1);
        } else if (text && !free_text && fb__run_parse_step_text(r->d, text, &num, &status)) {
            fb__run_leave_after_end(r);
            fb__run_step_command(r, num, status);
        } else if (s->back_to >= 0)
            fb__run_answer(r, text, choice);
        else if (s->pending_step >= 0)
            fb__run_answer_step(r, text, choice);
        else
            fb__run_say_builtin(r, FB__T_FIN_ATTEINTE);
        return true;
    }
    if (text && cur(r)->type != FB__Q_TEXT && fb__run_parse_step_text(r->d, text, &num, &status)) {
        fb__run_say_builtin(r,
                            FB__T_ETAPES_PAS_ENCORE); /* not an answer: the steps come at the end */
        fb__run_ask(r);
        return true;
    }
    fb__run_answer(r, text, choice);
    return true;
}

/*
 * A message or a picked option. After the end, once the message got its usual answer, the final
 * state's `apres_fin` comes (after_end_due()): not with the message that ends the guided part,
 * whose reply is the roadmap. Returns false when the session must become null.
 */
static bool on_input(struct run *r, const char *text, const char *choice)
{
    bool was_ended = r->s.ended && !r->s.escalated && !r->s.moved;
    bool keep = read_input(r, text, choice);
    if (keep && was_ended && after_end_due(r))
        start_after_end(r);
    return keep;
}

/* A reminder fired. */
static void on_timer(struct run *r, const char *id)
{
    struct fb__sess *s = &r->s;
    if (strcmp(id, TIMER_ID) != 0 || s->escalated || s->muted)
        return;
    if (s->moved) {
        fb__run_say_builtin(r, FB__T_VERSION_CHANGEE);
        fb__run_enter(r, r->d->start, true);
        return;
    }
    const struct fb__relance *cfg = fb__run_relance_cfg(r);
    if (!cfg || s->reminders >= cfg->max)
        return;
    if (s->ended) {
        /* the question asked after the end and left unanswered is not asked again */
        fb__run_leave_after_end(r);
        int open = -1;
        if (!cfg->step) {
            fb__run_say_text(r, cfg->msg.t ? &cfg->msg : &r->d->texts[FB__T_RELANCE], NULL, NULL,
                             NULL);
        } else {
            for (size_t i = 0; i < s->n_road && open < 0; i++)
                if (s->status[i] == FB__ST_A_FAIRE || s->status[i] == FB__ST_EN_COURS ||
                    s->status[i] == FB__ST_BLOQUEE)
                    open = (int)i;
            if (open < 0 && !after_end_due(r))
                return; /* every step is settled: nothing to follow up */
        }
        if (open >= 0) {
            s->pending_step = open;
            s->fails = 0;
            fb__run_set_etape(r, open);
            fb__run_ask_step(r, cfg->msg.t ? &cfg->msg : &r->d->texts[FB__T_RELANCE_ETAPE]);
        } else if (after_end_due(r)) {
            /* a reminder that asks about no step carries the question after the end; one that
             * does leaves it for the reply to its answer (one question at a time: « 1 »..« 5 »
             * would answer both) */
            start_after_end(r);
        }
    } else {
        fb__run_say_text(r, cfg->msg.t ? &cfg->msg : &r->d->texts[FB__T_RELANCE], NULL, NULL, NULL);
        fb__run_ask(r);
    }
    s->reminders++;
    fb__run_stat_effect(r, "reminder_sent");
    if (s->reminders < cfg->max)
        schedule(r, cfg, cfg->after, s->ended ? FB__REASON_SUIVI : FB__REASON_INACTIVITE);
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
    fb__run_stat_effect(r, "handed_back");
    fb__run_say_builtin(r, FB__T_REPRISE);
    if (s->moved) {
        fb__run_enter(r, r->d->start, true);
        return;
    }
    fb__run_ask(r);
    fb__run_arm(r);
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
    fb__run_invalidate(r);
    fb__run_drop(&r->c_etape);
    fb__run_drop(&r->c_delai);
    fb_free(r->note);
    fb__run_drop(&r->c_recherche);
    fb_free(r->c_communes);
    fb_free(r->c_cats);
    fb_free(r->c_items);
    fb__session_free(&r->s);
}

int fb_engine_render_page(const fb_dialog_t *d, const json_t *session, const fb_engine_env_t *env,
                          fb_buf_t *plain, fb_buf_t *html)
{
    if (!d || !env || (!plain && !html))
        return FB_EINVAL;
    if (!session || json_is_null(session))
        return FB_ENOENT;
    struct run run, *r = &run;
    memset(r, 0, sizeof(*r));
    r->env = env;
    r->latest = d;
    r->xenv = (fb_expr_env_t){lookup, has_tag, r};
    int rc = fb__session_parse(d, env, session, &r->s);
    if (rc != 0) {
        fb__session_free(&r->s);
        return rc;
    }
    r->d = r->s.d;
    r->effects = json_array(); /* nothing is said: rendering only (dropped below) */
    const json_t *road = fb__run_builtin(r, "feuille_de_route", strlen("feuille_de_route"));
    if (json_array_size(road) == 0)
        rc = FB_ENOENT;
    else
        rc = fb__run_render_text(r, &r->d->texts[FB__T_PAGE_FEUILLE_DE_ROUTE], plain, html);
    run_free(r);
    json_decref(r->effects);
    return rc;
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
            ev->kind == FB_EVENT_MESSAGE && fb__run_match_command(r, ev->text) == FB__CMD_OUBLIER;
        if (ev->kind == FB_EVENT_FORGET || forget_cmd) {
            fb__run_forget(r);
            keep = false;
        } else {
            bool question = ev->kind == FB_EVENT_MESSAGE && fb__run_kb_private(r, ev->text);
            if (ev->kind == FB_EVENT_MESSAGE && !question)
                fb__session_remember(&r->s, ev->text);
            fb__run_stat_effect(r, "conversation_started");
            fb__run_enter(r, d->start, false);
            if (question) /* a first message that is a question is answered too */
                (void)fb__run_kb_input(r, ev->text, NULL, false);
        }
    } else {
        int rc = fb__session_parse(d, env, session, &r->s);
        if (rc != 0) {
            fb__session_free(&r->s);
            return rc;
        }
        r->d = r->s.d;
        r->effects = json_array();
        r->kb_feedback = r->s.kb_asked; /* feedback is due to the previous message only */
        r->s.kb_asked = false;
        /* so is the choice among the answers it offered */
        r->n_kb_offer = r->s.n_kb_offer;
        memcpy(r->kb_offer, r->s.kb_offer, sizeof(r->kb_offer));
        r->s.n_kb_offer = 0;
        /* every text the user writes, understood or not, before anything (an escalation's
         * summary) reads them; not while escalated: those go to the advisor's thread; not a
         * question to the knowledge base (its text is kept nowhere) */
        if (ev->kind == FB_EVENT_MESSAGE && !r->s.escalated && !fb__run_kb_private(r, ev->text))
            fb__session_remember(&r->s, ev->text);
        switch (ev->kind) {
        case FB_EVENT_START:
            fb__run_restart(r, "conversation_restarted");
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
            fb__run_forget(r);
            keep = false;
            break;
        }
    }
    /* an offer of answers left by a command, a reminder, a restart: the question went
     * unanswered (a pick, « autre chose » or another message took it in fb__run_kb_input()) */
    if (keep && r->n_kb_offer > 0)
        fb__run_stat_effect(r, "kb_unanswered");
    *new_session = keep ? fb__session_dump(&r->s) : json_null();
    *effects = r->effects;
    run_free(r);
    return 0;
}
