/* SPDX-License-Identifier: MIT */
/*
 * text_question.c - whether a message is a question (see text.h, fb_text_is_question): the
 * knowledge base answers those at any moment of the conversation (docs/internals/KB.md).
 */
#include <stdbool.h>
#include <string.h>

#include "engine/text.h"
#include "frichebot/alloc.h"

/* Folded forms that open a question ("comment ...", "est-ce que ..."), matched on whole words at
 * the start of the message. A lone "que" is not one ("que des commerces" answers a question). */
static const char *const openers[] = {
    "c est quoi", "cest quoi",    "c koi",         "ckoi",         "c quoi",
    "qu est ce",  "quest ce",     "kesako",        "quesaco",      "comment",
    "pourquoi",   "qui",          "quand",         "combien",      "est ce",
    "peut on",    "peut il",      "peut elle",     "peuvent ils",  "faut il",
    "quel",       "quelle",       "quels",         "quelles",      "ou",
    "quoi",       "a quoi",       "a qui",         "de quoi",      "dois je",
    "doit on",    "doit il",      "doit elle",     "doivent ils",  "puis je",
    "peux je",    "pouvez vous",  "pourriez vous", "pourrait on",  "y a t il",
    "ya t il",    "existe t il",  "est il",        "est elle",     "sont ils",
    "ai je",      "a t on",       "a t il",        "avons nous",   "lequel",
    "laquelle",   "lesquels",     "lesquelles",    "quid",         "que faire",
    "que veut",   "que signifie", "que dit",       "que se passe", "que doit",
    "que dois",   "que peut",     "que peux",      "que faut",     "que risque",
    "que change", "que prevoit",  "sait on",       "savez vous",   "connaissez vous",
    "comment",    "c est qui",    "cest qui",      "qui est",      "qui paye",
    "qui paie"};

/* Folded forms that make a question anywhere in the message. */
static const char *const inside[] = {"c est quoi",
                                     "cest quoi",
                                     "qu est ce qu",
                                     "quest ce qu",
                                     "est ce que",
                                     "est ce qu",
                                     "peut on",
                                     "faut il",
                                     "doit on",
                                     "a quoi sert",
                                     "comment",
                                     "pourquoi",
                                     "combien",
                                     "y a t il",
                                     "est il possible",
                                     "je voudrais savoir",
                                     "j aimerais savoir",
                                     "je me demande",
                                     "que veut dire",
                                     "que signifie",
                                     "quelle est",
                                     "quel est",
                                     "quels sont",
                                     "quelles sont",
                                     "c koi",
                                     "kesako"};

/* True when `f` (folded) starts with the words `w` (then a space or the end). */
static bool starts_with_words(const char *f, const char *w)
{
    size_t n = strlen(w);
    return strncmp(f, w, n) == 0 && (f[n] == ' ' || f[n] == '\0');
}

/* True when `f` holds the words `w` on word boundaries. */
static bool has_words(const char *f, const char *w)
{
    size_t n = strlen(w);
    for (const char *p = strstr(f, w); p; p = strstr(p + 1, w))
        if ((p == f || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
            return true;
    return false;
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
        yes = starts_with_words(f, openers[i]);
    for (size_t i = 0; !yes && i < FB_ARRAY_SIZE(inside); i++)
        yes = has_words(f, inside[i]);
    fb_free(big);
    return yes;
}
