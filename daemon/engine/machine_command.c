/* SPDX-License-Identifier: MIT */
/*
 * machine_command.c - the global commands (see machine_int.h): matching them on the folded text,
 * and aide, retour, recommencer, conseiller, ou_en_suis_je, mes_donnees, oublier_mes_donnees, stop.
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

/* ---- commands -------------------------------------------------------------------------------- */

/* Greetings before a command and courtesy after it, folded: « bonjour, conseiller svp » is the
 * command « conseiller ». Whole words only; what is left must still be one of the command's
 * words exactly. */
static const char *const COURTESY_BEFORE[] = {"bonjour ", "bonsoir ", "salut ",
                                              "hello ",   "svp ",     "stp "};
static const char *const COURTESY_AFTER[] = {
    " svp", " stp", " s il vous plait", " s il te plait", " merci", " merci beaucoup", " please"};

/* Strips the greetings and courtesy around folded `buf` (length *n): where the rest starts, its
 * length in *n. */
static const char *strip_courtesy(const char *buf, size_t *n)
{
    bool again = true;
    while (again) {
        again = false;
        for (size_t k = 0; k < FB_ARRAY_SIZE(COURTESY_BEFORE); k++) {
            size_t len = strlen(COURTESY_BEFORE[k]);
            if (*n > len && memcmp(buf, COURTESY_BEFORE[k], len) == 0) {
                buf += len;
                *n -= len;
                again = true;
            }
        }
        for (size_t k = 0; k < FB_ARRAY_SIZE(COURTESY_AFTER); k++) {
            size_t len = strlen(COURTESY_AFTER[k]);
            if (*n > len && memcmp(buf + *n - len, COURTESY_AFTER[k], len) == 0) {
                *n -= len;
                again = true;
            }
        }
    }
    return buf;
}

/* The global command `text` is, in the current state, or FB__CMD_NONE. */
int fb__run_match_command(const struct run *r, const char *text)
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
    const char *cmd = strip_courtesy(buf, &n);
    if (n == 0)
        return FB__CMD_NONE;
    for (int i = 0; i < FB__CMD_COUNT; i++) {
        if (c->disabled[i])
            continue;
        for (size_t w = 0; w < c->n[i]; w++) /* the first byte first: most words differ there */
            if (c->words[i][w][0] == cmd[0] && strlen(c->words[i][w]) == n &&
                memcmp(c->words[i][w], cmd, n) == 0)
                return i;
    }
    return FB__CMD_NONE;
}

/* Forgets the user: `forget`, `cancel` all, a goodbye; the session becomes null. */
void fb__run_forget(struct run *r)
{
    fb__run_simple_effect(r, FB_EFFECT_FORGET);
    fb__run_cancel_all(r);
    fb__run_say_builtin(r, FB__T_OUBLI_FAIT);
}

/* Starts over: answers, tags, path and roadmap cleared (the reminder preference and the user's
 * last messages are kept). */
void fb__run_restart(struct run *r, const char *stat_name)
{
    bool muted = r->s.muted;
    json_t *last = json_incref(r->s.last_messages);
    const fb_dialog_t *d = r->latest;
    fb__run_invalidate(r);
    fb__run_drop(&r->c_etape);
    FB_FREE(r->c_communes);
    FB_FREE(r->c_cats);
    FB_FREE(r->c_items);
    fb__session_free(&r->s);
    r->d = d;
    fb__session_init(d, &r->s);
    r->s.muted = muted;
    r->s.last_messages = last;
    fb__run_stat_effect(r, stat_name);
    fb__run_enter(r, d->start, false);
}

/* Goes back to the previous answered question, forgetting its answer and recomputing tags. */
static void go_back(struct run *r)
{
    struct fb__sess *s = &r->s;
    const fb_dialog_t *d = r->d;
    if (s->n_path == 0) {
        fb__run_say_builtin(r, FB__T_RETOUR_IMPOSSIBLE);
        fb__run_ask(r);
        return;
    }
    int prev = s->path[0];
    s->n_path--;
    memmove(s->path, s->path + 1, s->n_path * sizeof(s->path[0]));
    const struct fb__state *pst = &d->states[prev];
    fb__session_own_answers(s);
    if (pst->slot >= 0)
        (void)json_object_del(s->answers, d->slots[pst->slot].name);
    fb__run_answers_changed(r);
    /* tags: replay the signals of the remaining answers, oldest first */
    memset(s->tags, 0, d->n_tags);
    fb__run_invalidate(r);
    for (size_t i = s->n_path; i-- > 0;) {
        const struct fb__state *st = &d->states[s->path[i]];
        const json_t *v =
            st->slot >= 0 ? json_object_get(s->answers, d->slots[st->slot].name) : NULL;
        if (v)
            fb__run_emit_tags(r, st, v);
    }
    s->state = prev;
    s->ended = false;
    s->back_to = -1;
    s->fails = 0;
    s->n_cand = 0;
    s->n_confirm = 0; /* a pending « Vous voulez dire » belonged to the question left */
    s->qual[0] = '\0';
    s->pending_step = -1;
    s->pending_pick = false;
    FB_FREE(s->road);
    FB_FREE(s->status);
    FB_FREE(s->day);
    s->n_road = 0;
    fb__run_invalidate(r);
    fb__run_ask(r);
}

/* Says a summary of the answers (and, for "mes données", the tags), then re-asks. */
static void recap(struct run *r, bool everything)
{
    fb_buf_t plain, html;
    fb_buf_init(&plain, MAX_TEXT_BYTES);
    fb_buf_init(&html, MAX_TEXT_BYTES);
    const struct fb__text *head = &r->d->texts[everything ? FB__T_MES_DONNEES : FB__T_RESUME];
    if (fb__run_render_text(r, head, &plain, &html) == 0) {
        /* no tags here: they are the dialog's internal names ("passe_polluant"), derived from
         * the answers listed, and a user reads this (issue #19); the advisor's summary keeps them
         */
        fb__run_list_answers(r, &plain, &html, "Vos réponses :");
        fb__run_list_roadmap(r, &plain, &html);
        if (everything) {
            fb__run_list_last_messages(r, &plain, &html, "Vos derniers messages :");
            (void)fb_buf_puts(&plain, "\n\nPour tout effacer, écrivez « oublier mes données ».");
            (void)fb_buf_puts(&html, "<p>Pour tout effacer, écrivez « oublier mes données ».</p>");
        } else if (r->s.ended && r->s.n_road > 0 && !r->no_ask) { /* see fb__run_say_steps */
            fb_buf_t ap, ah;
            fb_buf_init(&ap, MAX_TEXT_BYTES);
            fb_buf_init(&ah, MAX_TEXT_BYTES);
            if (fb__run_render_text(r, &r->d->texts[FB__T_ETAPES_AIDE], &ap, &ah) == 0) {
                if (fb_buf_puts(&plain, "\n\n") == 0)
                    (void)fb_buf_puts(&plain, fb_buf_str(&ap));
                (void)fb_buf_puts(&html, fb_buf_str(&ah));
            }
            fb_buf_free(&ap);
            fb_buf_free(&ah);
        }
        if (plain.len > 0 && html.len > 0)
            fb__run_say_bufs(r, &plain, &html, NULL);
    }
    fb_buf_free(&plain);
    fb_buf_free(&html);
    fb__run_ask(r);
}

/* Runs global command `cmd`. Returns false when the session must become null (fb__run_forget). */
bool fb__run_command(struct run *r, int cmd)
{
    const struct fb__state *st = cur(r);
    switch (cmd) {
    case FB__CMD_AIDE:
        fb__run_say_text(r,
                         (asking(r) && st->help.t) ? &st->help : &r->d->texts[FB__T_AIDE_GENERALE],
                         NULL, NULL, NULL);
        fb__run_ask(r);
        return true;
    case FB__CMD_RETOUR:
        go_back(r);
        return true;
    case FB__CMD_RECOMMENCER:
        fb__run_restart(r, "conversation_restarted");
        return true;
    case FB__CMD_CONSEILLER:
        fb__run_escalate(r, "demande");
        return true;
    case FB__CMD_OU_EN_SUIS_JE:
        recap(r, false);
        return true;
    case FB__CMD_MES_DONNEES:
        recap(r, true);
        return true;
    case FB__CMD_OUBLIER:
        fb__run_forget(r);
        return false;
    case FB__CMD_ETAPES:
        if (r->s.ended) {
            r->s.pending_step = -1;
            r->s.pending_pick = false;
            r->s.fails = 0;
            fb__run_say_steps(r, FB__T_ETAPES);
        } else {
            fb__run_say_builtin(r, FB__T_ETAPES_PAS_ENCORE);
            fb__run_ask(r);
        }
        return true;
    case FB__CMD_STOP:
        fb__run_cancel_all(r);
        fb__run_say_builtin(r, FB__T_RELANCES_ARRETEES);
        r->s.muted = true;
        r->s.reminders = 0;
        return true;
    default:
        return true;
    }
}
