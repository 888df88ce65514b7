/* SPDX-License-Identifier: MIT */
/*
 * machine_summary.c - summaries (see machine_int.h): the answers, roadmap, tags and last
 * messages as text, for the escalation summary and the recap commands.
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
    (void)fb_buf_printf(out, "%s %ld", fb__run_month_names[m - 1], y);
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
    if (fb__run_is_nsp(v)) {
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
    /* the bytes of "\n• %s : %s", appended (no printf: a summary lists every answer) */
    if (fb_buf_puts(plain, "\n• ") == 0 && fb_buf_puts(plain, label) == 0 &&
        fb_buf_puts(plain, " : ") == 0)
        (void)fb_buf_puts(plain, value);
    (void)fb_buf_puts(html, "<li>");
    (void)fb_template_html_escape(label, strlen(label), html);
    (void)fb_buf_puts(html, " : ");
    (void)fb_template_html_escape(value, strlen(value), html);
    (void)fb_buf_puts(html, "</li>");
}

/* Appends the heading `title`: "\n\ntitle" to `plain`, "<p>title</p>" then `html_after` to
 * `html` (the bytes of fb_buf_printf(plain, "\n\n%s") and (html, "<p>%s</p>..."), appended). */
static void heading(fb_buf_t *plain, fb_buf_t *html, const char *title, const char *html_after)
{
    if (fb_buf_puts(plain, "\n\n") == 0)
        (void)fb_buf_puts(plain, title);
    if (fb_buf_puts(html, "<p>") == 0 && fb_buf_puts(html, title) == 0 &&
        fb_buf_puts(html, "</p>") == 0)
        (void)fb_buf_puts(html, html_after);
}

/* Appends the answers as a list under the heading `title`. */
void fb__run_list_answers(struct run *r, fb_buf_t *plain, fb_buf_t *html, const char *title)
{
    const char *key;
    json_t *v;
    fb_buf_t val;
    fb_buf_init(&val, MAX_TEXT_BYTES);
    heading(plain, html, title, "");
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

/* Appends one line of the roadmap's list: "\n2. Titre : faite (noté le 3 décembre 2026)" (NULL
 * title or status: "?"; NULL `when`: no date), and the same as an HTML list item. */
static void road_line(fb_buf_t *plain, fb_buf_t *html, fb_buf_t *line, size_t i, const char *title,
                      const char *st, const char *when)
{
    fb_buf_reset(line);
    /* the bytes of "%s : %s" and " (noté le %s)", appended (no printf: every entry) */
    if (fb_buf_puts(line, title ? title : "?") == 0 && fb_buf_puts(line, " : ") == 0)
        (void)fb_buf_puts(line, st ? st : "?");
    if (when && fb_buf_puts(line, " (noté le ") == 0 && fb_buf_puts(line, when) == 0)
        (void)fb_buf_puts(line, ")");
    char num[FB__LIST_NUMBER];
    size_t at = fb__run_list_number(num, i);
    if (fb_buf_append(plain, "\n", 1) == 0 && fb_buf_append(plain, num + at, sizeof(num) - at) == 0)
        (void)fb_buf_append(plain, fb_buf_str(line), line->len);
    (void)fb_buf_puts(html, "<li>");
    (void)fb_template_html_escape(fb_buf_str(line), line->len, html);
    (void)fb_buf_puts(html, "</li>");
}

/*
 * Appends the roadmap (stored, or the rules' current one) as a numbered list under `title`:
 * "2. Titre : faite (le 3 décembre 2026)". The numbers are the ones "étape 2 faite" uses. The
 * lines are those of `feuille_de_route`'s entries (their `titre`, `statut_texte` and
 * `modifie_le`), read from the entries when the step built them, else from the items without
 * building them.
 */
void fb__run_list_roadmap_titled(struct run *r, fb_buf_t *plain, fb_buf_t *html,
                                 const char *title_plain, const char *title_html)
{
    const fb_dialog_t *d = r->d;
    int *items = NULL;
    unsigned char *status = NULL;
    int32_t *day = NULL;
    size_t n;
    r->road_read = true; /* as fb__run_builtin() gives `feuille_de_route` */
    if (r->c_road)
        n = json_array_size(r->c_road);
    else
        fb__run_roadmap(r, &items, &status, &day, &n);
    if (n > 0) {
        (void)fb_buf_puts(plain, title_plain);
        (void)fb_buf_puts(html, title_html);
        (void)fb_buf_puts(html, "<ol>");
    }
    fb_buf_t line, date;
    fb_buf_init(&line, MAX_TEXT_BYTES);
    fb_buf_init(&date, 64);
    for (size_t i = 0; i < n; i++) {
        /* an entry is its item's fields, then `statut_texte`, then `modifie_le` when the user
         * changed the status (road_entry()) */
        const json_t *e = r->c_road ? json_array_get(r->c_road, i) : d->items[items[i]].obj;
        const char *st = r->c_road ? json_string_value(json_object_get(e, "statut_texte"))
                                   : json_string_value(d->status_label_json[status[i]]);
        const char *when = json_string_value(json_object_get(e, "modifie_le"));
        if (!r->c_road && day[i] > 0) {
            fb_buf_reset(&date);
            fb__run_format_day(&date, day[i]);
            when = fb_buf_str(&date);
        }
        road_line(plain, html, &line, i, json_string_value(json_object_get(e, "titre")), st, when);
    }
    fb_buf_free(&line);
    fb_buf_free(&date);
    fb_free(items);
    fb_free(status);
    fb_free(day);
    if (n > 0)
        (void)fb_buf_puts(html, "</ol>");
}

/* Appends the roadmap under the heading of summaries. */
void fb__run_list_roadmap(struct run *r, fb_buf_t *plain, fb_buf_t *html)
{
    fb__run_list_roadmap_titled(r, plain, html,
                                "\n\nVotre feuille de route :", "<p>Votre feuille de route :</p>");
}

/* Appends the tags as one line. */
void fb__run_list_tags(struct run *r, fb_buf_t *plain, fb_buf_t *html)
{
    bool any = false;
    for (size_t i = 0; i < r->d->n_tags; i++) {
        if (!r->s.tags[i])
            continue;
        if (fb_buf_puts(plain, any ? ", " : "\n\nSignaux retenus : ") == 0)
            (void)fb_buf_puts(plain, r->d->tags[i]);
        if (fb_buf_puts(html, any ? ", " : "<p>Signaux retenus : ") == 0)
            (void)fb_buf_puts(html, r->d->tags[i]);
        any = true;
    }
    if (any)
        (void)fb_buf_puts(html, "</p>");
}

/* Appends the user's last messages (session `l`), oldest first, one per line between « », under
 * the heading `title`; nothing when there are none. */
void fb__run_list_last_messages(struct run *r, fb_buf_t *plain, fb_buf_t *html, const char *title)
{
    const json_t *l = r->s.last_messages;
    if (!l || json_array_size(l) == 0)
        return;
    heading(plain, html, title, "<ul>");
    for (size_t i = 0; i < json_array_size(l); i++) {
        const json_t *m = json_array_get(l, i);
        if (fb_buf_puts(plain, "\n« ") == 0 && fb_buf_puts(plain, json_string_value(m)) == 0)
            (void)fb_buf_puts(plain, " »");
        (void)fb_buf_puts(html, "<li>« ");
        (void)fb_template_html_escape(json_string_value(m), json_string_length(m), html);
        (void)fb_buf_puts(html, " »</li>");
    }
    (void)fb_buf_puts(html, "</ul>");
}

/* The plain-text summary handed to an advisor with an escalation. */
json_t *fb__run_summary(struct run *r)
{
    fb_buf_t plain, html;
    fb_buf_init(&plain, MAX_TEXT_BYTES);
    fb_buf_init(&html, MAX_TEXT_BYTES);
    const fb_dialog_t *d = r->d;
    (void)fb_buf_printf(&plain, "Dialogue : %s", d->title ? d->title : d->id);
    if (r->s.ended) {
        (void)fb_buf_puts(&plain, "\nQuestionnaire terminé.");
    } else if (cur(r)->type != FB__Q_NONE) {
        const json_t *q = fb__run_builtin(r, "question", strlen("question"));
        (void)fb_buf_printf(&plain, "\nQuestion en cours : %s", q ? json_string_value(q) : "");
        if (r->s.fails > 0)
            (void)fb_buf_printf(&plain, " (%u réponse%s non comprise%s)", r->s.fails,
                                r->s.fails > 1 ? "s" : "", r->s.fails > 1 ? "s" : "");
    }
    fb__run_list_answers(r, &plain, &html, "Réponses :");
    fb__run_list_tags(r, &plain, &html);
    fb__run_list_roadmap(r, &plain, &html);
    fb__run_list_last_messages(r, &plain, &html, "Derniers messages de l'usager :");
    json_t *v = text_json(fb_buf_str(&plain), plain.len);
    fb_buf_free(&plain);
    fb_buf_free(&html);
    return v;
}
