/* SPDX-License-Identifier: MIT */
/*
 * fuzz_kb.c - libFuzzer target for the knowledge base's retrieval (daemon/engine/kb.c) and the
 * question detection (text_question.c).
 *
 * The input is split at its first NUL byte: the part before is added as the text of a new answer
 * and as a synonym group with a fixed phrase, to a small base built per input; the whole input
 * (up to its first NUL) is then searched and analysed. Besides the sanitizers' own checks it
 * enforces the contract: at most FB_KB_MAX_HITS hits, each a valid answer index with a positive
 * score, in decreasing order (but a definition's answer, first with margin 1); norm and margin
 * within [0, 1]; `confident` exactly the rule (never for the user's own case, other town-hall
 * business nor small talk).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/kb.h"
#include "engine/text.h"
#include "frichebot/alloc.h"
#include "frichebot/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *s = fb_malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    fb_kb_t *kb = fb_kb_new();
    const char *group[] = {"fonds vert", s};
    fb_kb_add_synonyms(kb, group, 2);
    const char *q0[] = {"C'est quoi un SIS ?", "secteur d'information sur les sols"};
    const char *m0[] = {"sis"};
    const char *q1[] = {s, "le fonds vert pour une friche"};
    (void)fb_kb_add_doc(kb, q0, 2, m0, 1, "Un SIS est un terrain pollué connu de l'État.");
    (void)fb_kb_add_doc(kb, q1, 2, NULL, 0, s);
    (void)fb_kb_build(kb);
    fb_kb_result_t r;
    fb_kb_search(kb, s, &r);
    if (r.n > FB_KB_MAX_HITS)
        abort();
    for (size_t i = 0; i < r.n; i++) {
        if (r.hits[i].doc < 0 || (size_t)r.hits[i].doc >= fb_kb_size(kb) || !(r.hits[i].score > 0))
            abort();
        /* decreasing, but for the answer written for a definition question (« c'est quoi X »),
         * put first whatever its score: then the margin is 1 */
        if (i > 0 && r.hits[i].score > r.hits[i - 1].score && !(i == 1 && r.margin == 1))
            abort();
    }
    if (r.norm < 0 || r.norm > 1 || r.margin < 0 || r.margin > 1)
        abort();
    if (r.confident != (r.n > 0 && fb_kb_confident(r.norm, r.margin) && !r.own_case &&
                        !r.small_talk && !r.off_topic))
        abort();
    fb_buf_t b;
    fb_buf_init(&b, 1u << 16);
    fb_kb_terms(kb, s, &b);
    fb_buf_free(&b);
    (void)fb_text_is_question(s);
    fb_kb_free(kb);
    fb_free(s);
    return 0;
}
