/* SPDX-License-Identifier: MIT */
/*
 * kb.h - retrieval over the knowledge base (issue #20): French analysis of a text into terms, and
 * BM25F ranking of the base's answers for a question, with the confidence rule under which the
 * bot says it does not know. Pure: no I/O, no clock, no global state; an index is built once (at
 * dialog load) and read-only afterwards, so any number of searches may share it.
 *
 * Analysis (the same for the base and for the questions): fb_text_fold() (lower case, accents
 * folded, apostrophes, hyphens and punctuation to spaces: the elisions l' d' qu' j' n' s' c'
 * leave one-letter words, dropped), SMS spellings read as the word they stand for ("koman",
 * "ki", "jai"), French stop words dropped (articles, pronouns, the
 * interrogative words every question has: "comment", "quoi", "est-ce"...), each remaining word
 * stemmed with Snowball's French stemmer (libstemmer) on its folded form, then a trailing "e"
 * dropped (so that "polluee" and "pollue", typed with or without accents, meet), words of three
 * letters or less kept whole (acronyms: sis, plu, epf); then the synonym groups: the longest
 * phrase of any group found at a position (compared as analysed terms, so "fonds verts" matches
 * "fonds vert") is replaced by the group's one canonical term. At search, a word the base does
 * not know may be a typo of one it does (one edit, found with a map of the base words'
 * deletions; docs/internals/KB.md says where it stops).
 *
 * Ranking: BM25F over three fields of each answer: its `questions` (weight 1), its `mots`
 * (weight FB_KB_W_MOTS) and its text (weight FB_KB_W_TEXT), k1 = 1.2, b = 0.75 per field. A term's
 * contribution to an answer does not depend on the question, so it is computed at build time;
 * a search is a hash lookup per question word and a sum over short postings lists.
 *
 * Confidence: `norm` is the top score over the most the question's terms could score (the sum of
 * their idf; a word the base never uses counts FB_KB_UNKNOWN_WEIGHT times the largest idf);
 * `margin` is (top - second) / top. The bot answers when norm >= FB_KB_ANSWER_NORM and margin >=
 * FB_KB_MIN_MARGIN; under that it asks which answer was meant (`n_proposals`) when norm >=
 * FB_KB_MIN_NORM, and says it does not know under FB_KB_MIN_NORM (docs/internals/KB.md says how
 * they were chosen). It never answers a question about the user's own case
 * (fb_kb_is_own_case()), another subject than the base's (fb_kb_is_off_topic()), another body's
 * scheme than the top answer's, an amount the top answer does not give, a named law, programme
 * or body (« la loi X ») the top answer does not name, nor one sure only thanks to terms guessed
 * from typos (each counted half), nor small talk (fb_kb_is_small_talk()). In a message of
 * several sentences, the terms of the one that asks count 1 + FB_KB_FOCUS_WEIGHT times.
 */
#ifndef FB_ENGINE_KB_H
#define FB_ENGINE_KB_H

#include <stdbool.h>
#include <stddef.h>

#include "engine/engine.h"
#include "frichebot/buf.h"

#define FB_KB_W_QUESTIONS    1.0
#define FB_KB_W_MOTS         2.0
#define FB_KB_W_TEXT         0.3
#define FB_KB_UNKNOWN_WEIGHT 1.5
/* under FB_KB_MIN_NORM the bot does not know; from FB_KB_ANSWER_NORM it answers (with a second
 * answer at least FB_KB_MIN_MARGIN behind); between, it asks which answer was meant */
#define FB_KB_MIN_NORM    0.30
#define FB_KB_ANSWER_NORM 0.55
#define FB_KB_MIN_MARGIN  0.15
/* an unsure search offers its first answer alone when the second is at least FB_KB_SURE_MARGIN
 * behind; else its two best, and the third when it is that close to the first too */
#define FB_KB_SURE_MARGIN   0.25
#define FB_KB_MAX_HITS      5
#define FB_KB_MAX_PROPOSALS 3
/* in a message of several sentences, the question sentence's terms count 1 + this */
#define FB_KB_FOCUS_WEIGHT 1.0
/* the share of a term guessed from a typo that does not count in the confidence: a guess is half
 * a word */
#ifndef FB_KB_GUESSED_DISCOUNT
#define FB_KB_GUESSED_DISCOUNT 0.5
#endif

typedef struct fb_kb_s fb_kb_t;

/** One ranked answer: its index (order of fb_kb_add_doc()) and score. */
typedef struct {
    int doc;
    double score;
} fb_kb_hit_t;

/** The result of a search. */
typedef struct {
    fb_kb_hit_t hits[FB_KB_MAX_HITS]; /* best first, only answers scoring > 0 */
    size_t n;
    double norm;        /* top score / the most the question could score, 0..1 */
    double margin;      /* (top - second) / top, 1 when only one answer scored */
    bool confident;     /* the bot answers hits[0] */
    size_t n_proposals; /* not confident only by the score (norm under FB_KB_ANSWER_NORM, or a
                           close second): the bot asks which of hits[0..n_proposals) was meant
                           (1 to 3); 0 otherwise (docs/internals/KB.md, « Asking when unsure ») */
    size_t n_terms;     /* the question's analysed terms (distinct) */
    bool own_case;   /* about the user's own file or figures: never confident (fb_kb_is_own_case) */
    bool off_topic;  /* other town-hall business (fb_kb_is_off_topic): never confident */
    bool small_talk; /* thanks, greetings, chit-chat: never confident (fb_kb_is_small_talk) */
    bool other_scheme; /* names a funder the top answer is not about: never confident
                          (docs/internals/KB.md, « Another body's scheme ») */
    bool guessed;      /* sure only thanks to words guessed from typos: with their score counted
                          FB_KB_GUESSED_DISCOUNT less, `norm` is under the thresholds; never
                          confident (docs/internals/KB.md, « Typos and SMS spelling ») */
    bool unnamed; /* names one thing of a kind (« la loi X », « la société X ») whose name the
                     top answer does not hold: never confident (docs/internals/KB.md) */
    bool no_amount; /* asks an amount the top answer's questions and `mots` do not: never
                       confident (docs/internals/KB.md, « Another body's scheme ») */
} fb_kb_result_t;

/** A new, empty index builder. */
fb_kb_t *fb_kb_new(void);

/** Adds a synonym group (2 or more phrases, UTF-8). Groups sharing a phrase are merged. Call
 *  before fb_kb_add_doc(). */
void fb_kb_add_synonyms(fb_kb_t *kb, const char *const *phrases, size_t n);

/** Adds an answer; returns its index. The strings are analysed at once, not kept. */
int fb_kb_add_doc(fb_kb_t *kb, const char *const *questions, size_t n_questions,
                  const char *const *mots, size_t n_mots, const char *text);

/** The official index of communes, départements and régions (borrowed, may be NULL; must
 *  outlive the KB): a money or identity question naming a département or a région (« le prix du
 *  terrain dans le Cher ») is about one place (fb_kb_result_t.own_case). Before or after
 *  fb_kb_build(), once: a second call is ignored. */
void fb_kb_set_geo(fb_kb_t *kb, const fb_geo_t *geo);

/** Builds the index; the KB is read-only afterwards. Returns 0. */
int fb_kb_build(fb_kb_t *kb);

/** The number of answers. */
size_t fb_kb_size(const fb_kb_t *kb);

/** Ranks the answers for `question` (UTF-8) and applies the confidence rule. */
void fb_kb_search(const fb_kb_t *kb, const char *question, fb_kb_result_t *res /* OUT */);

/** The confidence rule alone, over a result's hits and norm (for tests and the tools). */
bool fb_kb_confident(double norm, double margin);

/** True when `question` asks about the user's own case, which a general base cannot know: the
 *  status of a filed dossier (« où en est », « notre dossier déposé... a-t-il été retenu ») or an
 *  amount for their commune or site (« combien ... pour notre commune »). Such a question is never
 *  answered confidently (docs/internals/KB.md). */
bool fb_kb_is_own_case(const char *question);

/** True when `message` is about other town-hall business than the base's (civil registration,
 * identity papers, canteen, elections, cemetery, roads, a housing application, hiring a hall) or
 * another subject in its words (a farmed friche, air or water pollution, a private person's taxes,
 * neighbours, statistics and exact figures): a fixed list of phrases, whole words, on the folded
 * text, and the statistic shapes (docs/internals/KB.md). */
bool fb_kb_is_off_topic(const char *message);

/** True when `message` is only politeness or chit-chat (« merci beaucoup », « au revoir », « ok
 *  super », « tu es sympa »): every word a stop word or a small-talk word, at least one of the
 *  latter. Such a message is never answered confidently (docs/internals/KB.md). */
bool fb_kb_is_small_talk(const char *message);

/** Writes the analysed terms of `text`, space-separated, to `out` (a synonym group's term is
 *  "=" and its first phrase's terms joined by "_"); `kb` may be NULL (no synonyms). For tests and
 *  `frichebot ask`. */
void fb_kb_terms(const fb_kb_t *kb, const char *text, fb_buf_t *out);

void fb_kb_free(fb_kb_t *kb);

/* ---- a dialog's base (dialog_kb.c), for the tools ---- */

/** The dialog's index, or NULL when it declares no `connaissances` (borrowed). */
const fb_kb_t *fb_dialog_kb(const fb_dialog_t *d);
/** The id of answer `i` (as in fb_kb_hit_t.doc), or NULL. Borrowed. */
const char *fb_dialog_kb_id(const fb_dialog_t *d, int i);
/** The index of answer `id`, or -1. */
int fb_dialog_kb_index(const fb_dialog_t *d, const char *id);
/**
 * Appends to `out` one line "FILE:LINE:COL: attention : ..." per answer without a `sujet` (the
 * label offered when the bot is unsure), and per question of an answer that retrieves another
 * answer first, or its own with a margin under FB_KB_MIN_MARGIN (two answers compete). Returns
 * the number of warnings.
 */
size_t fb_dialog_kb_warnings(const fb_dialog_t *d, fb_buf_t *out);

#endif /* FB_ENGINE_KB_H */
