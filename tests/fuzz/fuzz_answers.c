/* SPDX-License-Identifier: MIT */
/*
 * fuzz_answers.c - libFuzzer target for the answer parsers (daemon/engine/answers.c).
 *
 * The first byte selects the fixed context (a choice list, a unit and range, a clock, text
 * bounds), the rest is the user's answer. Every parser runs on it. Besides the sanitizers' own
 * checks, it enforces the contract of answers.h: outputs are written only on FB_ANSWER_OK, a
 * chosen index or mask stays within the options, a number is finite and within [min, max], a date
 * is well formed and not before now's month when future_only, and free text comes back as valid
 * UTF-8 without control characters, trimmed and within its bounds.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/answers.h"
#include "frichebot/alloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const syn_commune[] = {"mairie", "ville", "EPCI", NULL};
static const char *const syn_etat[] = {"préfecture", "DDT", NULL};
static const fb_choice_t owners[] = {
    {"commune", "La commune ou l'intercommunalité", syn_commune},
    {"etat", "L'État ou un établissement public", syn_etat},
    {"prive", "Un propriétaire privé", NULL},
    {"entreprise", "Une entreprise (industriel, exploitant)", NULL},
};
static const char *const syn_commerce[] = {"boutiques", "magasins", NULL};
static const fb_choice_t projects[] = {
    {"habitat", "Habitat", NULL}, {"commerce", "Commerces", syn_commerce},
    {"bureaux", "Bureaux", NULL}, {"mixte", "Habitat et commerces (mixte)", NULL},
    {"un", "Un", NULL},           {"inconnu", "Inconnu", NULL},
};
static const fb_choice_t yesno[] = {{"oui", "Oui", NULL}, {"non", "Non", NULL}};

struct list {
    const fb_choice_t *c;
    size_t n;
};

static const struct list lists[] = {
    {owners, sizeof(owners) / sizeof(owners[0])},
    {projects, sizeof(projects) / sizeof(projects[0])},
    {yesno, 2},
};

struct num_ctx {
    fb_unit_t unit;
    double min, max;
};

static const struct num_ctx nums[] = {
    {FB_UNIT_M2, 0, 1e9},      {FB_UNIT_HA, 0, 1e5},    {FB_UNIT_EUR, 0, 1e10},
    {FB_UNIT_NONE, -1e6, 1e6}, {FB_UNIT_YEARS, 0, 100}, {FB_UNIT_MONTHS, 0, 1200},
};

static const int64_t clocks[] = {1795824000, 0,        -86400, 253402214400 /* 9999-12-31 */,
                                 INT64_MIN,  INT64_MAX};

/* Valid UTF-8 with no C0 control but newline, no DEL, no C1 control, no leading or trailing
 * space or newline. */
static int clean_text(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || s[0] == ' ' || s[0] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\n')
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\n') || c == 0x7F)
            return 0;
        if (c == 0xC2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 &&
            (unsigned char)s[i + 1] <= 0x9F)
            return 0;
    }
    return 1;
}

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    unsigned sel = data[0];
    char *text = fb_malloc(size);
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';

    const struct list *l = &lists[sel % 3];
    const struct num_ctx *nc = &nums[(sel / 3) % 6];
    int64_t now = clocks[(sel / 18) % 6];
    bool future = (sel & 0x80) != 0;

    (void)fb_answer_is_unknown(text);

    bool b = true;
    fb_answer_status_t st = fb_answer_yesno(text, &b);
    if (st > FB_ANSWER_OUT_OF_RANGE || (st != FB_ANSWER_OK && b != true))
        abort();

    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        const struct list *li = i == 0 ? l : &lists[i];
        size_t idx = SIZE_MAX, idx2 = SIZE_MAX;
        st = fb_answer_choice(li->c, li->n, text, &idx);
        if (st == FB_ANSWER_OK ? idx >= li->n : idx != SIZE_MAX)
            abort();
        /* The compiled set gives exactly the wrapper's answer. */
        fb_choice_set_t *set = fb_choice_set_new(li->c, li->n);
        if (fb_answer_choice_in(set, text, &idx2) != st || idx2 != idx)
            abort();
        uint64_t mask = UINT64_MAX, mask2 = UINT64_MAX;
        st = fb_answer_choices(li->c, li->n, text, &mask);
        if (st == FB_ANSWER_OK ? (mask >> li->n) != 0 : mask != UINT64_MAX)
            abort();
        if (fb_answer_choices_in(set, text, &mask2) != st || mask2 != mask)
            abort();
        fb_choice_set_free(set);
    }

    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
        const struct num_ctx *ni = i == 0 ? nc : &nums[i];
        double v = -7.0;
        st = fb_answer_number(text, ni->unit, ni->min, ni->max, &v);
        if (st == FB_ANSWER_OK ? !(isfinite(v) && v >= ni->min && v <= ni->max) : v != -7.0)
            abort();
    }

    fb_date_t d = {-1, -1, -1};
    st = fb_answer_date(text, now, future, &d);
    if (st == FB_ANSWER_OK) {
        if (d.year < 1 || d.year > 9999 || d.month < 0 || d.month > 12 || d.day < 0 || d.day > 31 ||
            (d.month == 0 && d.day != 0))
            abort();
    } else if (d.year != -1 || d.month != -1 || d.day != -1) {
        abort();
    }
    d.year = -1;
    if (fb_answer_date(text, 1795824000, true, &d) == FB_ANSWER_OK &&
        (d.year < 2026 || (d.year == 2026 && d.month != 0 && d.month < 11)))
        abort(); /* before November 2026 */

    size_t min_chars = (sel >> 4) & 3, max_chars = 1 + (sel & 15) * 40;
    char *out = NULL;
    st = fb_answer_text(text, min_chars, max_chars, &out);
    if (st == FB_ANSWER_OK) {
        size_t chars = utf8_chars(out);
        if (!clean_text(out) || chars < min_chars || chars > max_chars)
            abort();
    } else if (out) {
        abort();
    }
    fb_free(out);
    fb_free(text);
    return 0;
}
