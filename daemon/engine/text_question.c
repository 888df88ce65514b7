/* SPDX-License-Identifier: MIT */
/*
 * text_question.c - whether a message is a question (see text.h, fb_text_is_question): the
 * knowledge base answers those at any moment of the conversation (docs/internals/KB.md).
 */
#include <stdbool.h>
#include <string.h>

#include "engine/text.h"
#include "frichebot/alloc.h"

/* A folded phrase and its length in bytes. */
struct words {
    const char *w;
    size_t n;
};
#define W(lit)                                                                                     \
    {                                                                                              \
        lit, sizeof(lit) - 1                                                                       \
    }

/* Folded forms that open a question ("comment ...", "est-ce que ..."), matched on whole words at
 * the start of the message. A lone "que" is not one ("que des commerces" answers a question). */
static const struct words openers[] = {
    W("c est quoi"), W("cest quoi"),    W("c koi"),         W("ckoi"),         W("c quoi"),
    W("qu est ce"),  W("quest ce"),     W("kesako"),        W("quesaco"),      W("comment"),
    W("pourquoi"),   W("qui"),          W("quand"),         W("combien"),      W("est ce"),
    W("peut on"),    W("peut il"),      W("peut elle"),     W("peuvent ils"),  W("faut il"),
    W("quel"),       W("quelle"),       W("quels"),         W("quelles"),      W("ou"),
    W("quoi"),       W("a quoi"),       W("a qui"),         W("de quoi"),      W("dois je"),
    W("doit on"),    W("doit il"),      W("doit elle"),     W("doivent ils"),  W("puis je"),
    W("peux je"),    W("pouvez vous"),  W("pourriez vous"), W("pourrait on"),  W("y a t il"),
    W("ya t il"),    W("existe t il"),  W("est il"),        W("est elle"),     W("sont ils"),
    W("ai je"),      W("a t on"),       W("a t il"),        W("avons nous"),   W("lequel"),
    W("laquelle"),   W("lesquels"),     W("lesquelles"),    W("quid"),         W("que faire"),
    W("que veut"),   W("que signifie"), W("que dit"),       W("que se passe"), W("que doit"),
    W("que dois"),   W("que peut"),     W("que peux"),      W("que faut"),     W("que risque"),
    W("que change"), W("que prevoit"),  W("sait on"),       W("savez vous"),   W("connaissez vous"),
    W("comment"),    W("c est qui"),    W("cest qui"),      W("qui est"),      W("qui paye"),
    W("qui paie"),
};

/* Folded forms that make a question anywhere in the message. */
static const struct words inside[] = {
    W("c est quoi"),
    W("cest quoi"),
    W("qu est ce qu"),
    W("quest ce qu"),
    W("est ce que"),
    W("est ce qu"),
    W("peut on"),
    W("faut il"),
    W("doit on"),
    W("a quoi sert"),
    W("comment"),
    W("pourquoi"),
    W("combien"),
    W("y a t il"),
    W("est il possible"),
    W("je voudrais savoir"),
    W("j aimerais savoir"),
    W("je me demande"),
    W("que veut dire"),
    W("que signifie"),
    W("quelle est"),
    W("quel est"),
    W("quels sont"),
    W("quelles sont"),
    W("c koi"),
    W("kesako"),
};

/* True when the folded text at `p` starts with the words `w` (then a space or the end). The first
 * byte is compared first: most phrases stop there. */
static bool words_at(const char *p, const struct words *w)
{
    return p[0] == w->w[0] && strncmp(p, w->w, w->n) == 0 && (p[w->n] == ' ' || p[w->n] == '\0');
}

bool fb_text_ends_with_question_mark(const char *text)
{
    size_t n = text ? strlen(text) : 0;
    while (n > 0 && (text[n - 1] == ' ' || text[n - 1] == '\t' || text[n - 1] == '\n' ||
                     text[n - 1] == '\r' || text[n - 1] == '.' || text[n - 1] == '!'))
        n--;
    if (n > 0 && text[n - 1] == '?')
        return true;
    /* U+FF1F fullwidth question mark, U+2E2E reversed: rare, but cheap */
    return n >= 3 && (memcmp(text + n - 3, "\xEF\xBC\x9F", 3) == 0);
}

bool fb_text_is_question(const char *text)
{
    return fb_text_ends_with_question_mark(text) || fb_text_has_question_form(text);
}

bool fb_text_has_question_form(const char *text)
{
    if (!text)
        return false;
    char buf[512];
    size_t len = strlen(text);
    size_t need = fb_text_fold(text, len, buf, sizeof(buf));
    const char *f = buf;
    char *big = NULL;
    if (need >= sizeof(buf)) {
        big = fb_malloc(need + 1);
        fb_text_fold(text, len, big, need + 1);
        f = big;
    }
    bool yes = false;
    for (size_t i = 0; !yes && i < FB_ARRAY_SIZE(openers); i++)
        yes = words_at(f, &openers[i]);
    /* `inside` phrases on word boundaries: tried at the start of each word (one pass over the
     * text instead of one search per phrase) */
    for (const char *p = f; !yes && *p; p++)
        if (p == f || p[-1] == ' ')
            for (size_t i = 0; !yes && i < FB_ARRAY_SIZE(inside); i++)
                yes = words_at(p, &inside[i]);
    fb_free(big);
    return yes;
}
