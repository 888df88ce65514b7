/* SPDX-License-Identifier: MIT */
/*
 * authoring_kb.c - `frichebot ask`: the knowledge base seen by its authors (docs/internals/KB.md).
 *
 * `ask DIALOG "question"...` prints, per question, its analysed terms, the five best answers with
 * their scores, and whether the bot would answer (the confidence rule of engine/kb.h).
 * `ask --eval DIALOG SET.yaml...` runs labelled sets (`questions: [{q, attendu: ID | aucune}]`,
 * optionally `aussi: [ID...]`: other answers the labeller accepted) and prints the top-1 accuracy
 * on the answerable questions (and the strict one, `attendu` alone), the share the bot answers,
 * and the confident answers to questions it should not answer; it fails below `--min-top1`, below
 * `--min-strict` on the strict figure, or on more than `--max-aucune` (default 0) such confident
 * answers. Messages for the authors are
 * in French.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "authoring.h"
#include "common/yamljson.h"
#include "engine/engine.h"
#include "engine/geo.h"
#include "engine/kb.h"
#include "frichebot/alloc.h"
#include "frichebot/buf.h"

static const char ask_help[] =
    "usage: frichebot ask DIALOG QUESTION...\n"
    "       frichebot ask --eval [--min-top1 X] [--min-strict X] [--max-aucune N] DIALOG "
    "SET.yaml...\n"
    "\n"
    "Shows how the dialog's knowledge base (`connaissances:`) ranks its answers for each\n"
    "QUESTION: the analysed terms, the five best answers with their scores, the confidence\n"
    "(norm, margin) and whether the bot would answer.\n"
    "--eval runs labelled sets (YAML: questions: [{q: \"...\", attendu: ID | aucune}]) and\n"
    "prints the top-1 accuracy on the answerable questions, the share answered, and every\n"
    "confident answer to a question labelled `aucune`. A question may add `aussi: [ID...]`\n"
    "(or `aussi: ID`), other answers its labeller accepted when two fit: top-1 counts them,\n"
    "and the strict figure printed below it (`attendu` alone) does not. Exit status 1 when\n"
    "top-1 is under --min-top1 (default 0.85), the strict top-1 under --min-strict (default\n"
    "0), or more than --max-aucune (default 0) `aucune` questions are answered.\n";

static void show(const fb_dialog_t *d, const char *q, FILE *out)
{
    const fb_kb_t *kb = fb_dialog_kb(d);
    fb_kb_result_t res;
    fb_kb_search(kb, q, &res);
    fb_buf_t terms;
    fb_buf_init(&terms, 1u << 16);
    fb_kb_terms(kb, q, &terms);
    fprintf(out, "« %s »\n  termes : %s\n", q, fb_buf_str(&terms));
    fb_buf_free(&terms);
    for (size_t i = 0; i < res.n; i++)
        fprintf(out, "  %zu. %-32s %7.3f\n", i + 1, fb_dialog_kb_id(d, res.hits[i].doc),
                res.hits[i].score);
    fprintf(out,
            "  confiance : %.2f (répond dès %.2f, demande dès %.2f), écart : %.2f (seuil %.2f ; "
            "une seule proposition dès %.2f) -> %s\n",
            res.norm, FB_KB_ANSWER_NORM, FB_KB_MIN_NORM, res.margin, FB_KB_MIN_MARGIN,
            FB_KB_SURE_MARGIN,
            res.confident          ? "le bot répond"
            : res.n_proposals == 1 ? "le bot demande si la question porte sur la première réponse"
            : res.n_proposals == 2 ? "le bot demande laquelle des 2 premières réponses convient"
            : res.n_proposals      ? "le bot demande laquelle des 3 premières réponses convient"
            : res.own_case         ? "le bot ne répond pas (question sur le cas de l'utilisateur)"
            : res.off_topic        ? "le bot ne répond pas (autre sujet que la base)"
            : res.small_talk       ? "le bot ne répond pas (politesse, pas une question)"
            : res.other_scheme
                ? "le bot ne répond pas (la réponse parle d'une autre aide ou d'un autre organisme)"
            : res.no_amount ? "le bot ne répond pas (un montant que la réponse ne donne pas)"
            : res.unnamed ? "le bot ne répond pas (la question nomme une loi, un programme ou un "
                            "organisme que la réponse ne nomme pas)"
            : res.guessed ? "le bot ne répond pas (la réponse tient surtout à des mots devinés de "
                            "fautes de frappe)"
                          : "le bot ne répond pas");
}

/* True when `doc` is one of the ids of `also` (the `aussi:` list, may be NULL). */
static bool admits(const fb_dialog_t *d, json_t *also, int doc)
{
    for (size_t k = 0; k < json_array_size(also); k++)
        if (fb_dialog_kb_index(d, json_string_value(json_array_get(also, k))) == doc)
            return true;
    return false;
}

struct tally {
    size_t answerable, top1, top1_strict, answered, answered_right, answered_wrong;
    size_t none, none_answered;
    size_t asked, asked_right, none_asked; /* the bot asks which answer was meant */
};

/* Runs one set file; returns 0, or 1 when the file is not a valid set. */
static int eval_file(const fb_dialog_t *d, const char *file, struct tally *t, FILE *out, FILE *err)
{
    FILE *f = fopen(file, "rb");
    if (!f) {
        fprintf(err, "%s:1:1: impossible de lire le fichier : %s\n", file, strerror(errno));
        return 1;
    }
    fb_buf_t text;
    fb_buf_init(&text, 16u << 20);
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        (void)fb_buf_append(&text, chunk, n);
    fclose(f);
    char errbuf[512];
    json_t *lines = NULL;
    json_t *doc = fb_yaml_to_json(fb_buf_str(&text), text.len, &lines, errbuf, sizeof(errbuf));
    fb_buf_free(&text);
    if (!doc) {
        fprintf(err, "%s:%s\n", file, errbuf);
        return 1;
    }
    int rc = 0;
    json_t *qs = json_object_get(doc, "questions");
    if (!json_is_array(qs)) {
        fprintf(err, "%s:1:1: un jeu de questions a besoin de « questions: » (une liste)\n", file);
        rc = 1;
        goto out;
    }
    const fb_kb_t *kb = fb_dialog_kb(d);
    size_t i;
    json_t *e;
    json_array_foreach(qs, i, e)
    {
        char path[64];
        snprintf(path, sizeof(path), "/questions/%zu", i);
        const char *q = json_string_value(json_object_get(e, "q"));
        const char *want = json_string_value(json_object_get(e, "attendu"));
        int line = fb_yaml_line(lines, path);
        if (!q || !want) {
            fprintf(err, "%s:%d:1: chaque question a « q: » et « attendu: » (un id ou aucune)\n",
                    file, line);
            rc = 1;
            continue;
        }
        bool none = strcmp(want, "aucune") == 0;
        int expected = none ? -1 : fb_dialog_kb_index(d, want);
        if (!none && expected < 0) {
            fprintf(err, "%s:%d:1: « %s » n'est pas une réponse de la base\n", file, line, want);
            rc = 1;
            continue;
        }
        /* `aussi:`: other answers the labeller accepted when labelling (a question two answers
         * fit); `attendu` stays the one chosen, which the strict figure counts alone */
        json_t *also = json_object_get(e, "aussi");
        if (also && json_is_string(also)) {
            json_t *one = json_array();
            json_array_append(one, also);
            also = one;
        } else if (also) {
            json_incref(also);
        }
        bool bad_also = also && (none || !json_is_array(also));
        size_t k;
        json_t *a;
        if (also && !bad_also)
            json_array_foreach(also, k, a)
            {
                const char *id = json_string_value(a);
                if (!id || fb_dialog_kb_index(d, id) < 0) {
                    fprintf(err, "%s:%d:1: « aussi: » : « %s » n'est pas une réponse de la base\n",
                            file, line, id ? id : "?");
                    bad_also = true;
                    break;
                }
            }
        if (bad_also) {
            if (none || !json_is_array(also))
                fprintf(err,
                        "%s:%d:1: « aussi: » est une liste d'ids, et seulement avec un « "
                        "attendu: » qui n'est pas aucune\n",
                        file, line);
            json_decref(also);
            rc = 1;
            continue;
        }
        fb_kb_result_t res;
        fb_kb_search(kb, q, &res);
        int got = res.n > 0 ? res.hits[0].doc : -1;
        bool admitted = got >= 0 && admits(d, also, got); /* `got` is one of `aussi:` */
        bool among = false; /* the right answer is one of those the bot proposes */
        for (size_t p = 0; p < res.n_proposals; p++)
            among = among || res.hits[p].doc == expected || admits(d, also, res.hits[p].doc);
        json_decref(also);
        if (none) {
            t->none++;
            if (res.confident) {
                t->none_answered++;
                fprintf(out, "%s:%d: RÉPONSE À TORT « %s » -> %s (confiance %.2f, écart %.2f)\n",
                        file, line, q, fb_dialog_kb_id(d, got), res.norm, res.margin);
            }
            t->none_asked += res.n_proposals > 0;
            continue;
        }
        t->answerable++;
        bool right = got == expected || admitted;
        if (got == expected)
            t->top1_strict++;
        if (right)
            t->top1++;
        if (res.n_proposals > 0) {
            t->asked++;
            t->asked_right += among;
            if (!among)
                fprintf(out, "%s:%d: proposé sans la bonne réponse « %s » : attendu %s\n", file,
                        line, q, want);
        }
        if (res.confident) {
            t->answered++;
            if (right)
                t->answered_right++;
            else
                t->answered_wrong++;
        }
        if (admitted)
            fprintf(
                out,
                "%s:%d: juste par « aussi: » « %s » : attendu %s, trouvé %s (confiance %.2f%s)\n",
                file, line, q, want, fb_dialog_kb_id(d, got), res.norm,
                res.confident ? "" : ", pas sûr");
        else if (!right)
            fprintf(out, "%s:%d: raté « %s » : attendu %s, trouvé %s (confiance %.2f%s)\n", file,
                    line, q, want, got >= 0 ? fb_dialog_kb_id(d, got) : "rien", res.norm,
                    res.confident ? ", le bot répond à tort" : "");
        else if (!res.confident && !admitted)
            fprintf(out, "%s:%d: juste mais pas sûr « %s » (confiance %.2f, écart %.2f)\n", file,
                    line, q, res.norm, res.margin);
    }
out:
    json_decref(doc);
    json_decref(lines);
    return rc;
}

static double pct(size_t a, size_t b)
{
    return b ? 100.0 * (double)a / (double)b : 0.0;
}

int fb_cmd_ask(int argc, char **argv, FILE *out, FILE *err)
{
    bool eval = false;
    double min_top1 = 0.85, min_strict = 0;
    long max_none = 0;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(ask_help, out);
            return 0;
        } else if (strcmp(argv[i], "--eval") == 0) {
            eval = true;
        } else if ((strcmp(argv[i], "--min-top1") == 0 || strcmp(argv[i], "--min-strict") == 0) &&
                   i + 1 < argc) {
            char *end;
            double x = strtod(argv[i + 1], &end);
            if (*end || !(x >= 0 && x <= 1)) {
                fprintf(err, "frichebot: ask: %s takes a number from 0 to 1\n", argv[i]);
                return 2;
            }
            *(strcmp(argv[i], "--min-top1") == 0 ? &min_top1 : &min_strict) = x;
            i++;
        } else if (strcmp(argv[i], "--max-aucune") == 0 && i + 1 < argc) {
            char *end;
            errno = 0;
            max_none = strtol(argv[++i], &end, 10);
            if (*end || errno || max_none < 0) {
                fprintf(err, "frichebot: ask: --max-aucune takes a whole number, 0 or more\n");
                return 2;
            }
        } else {
            fprintf(err, "frichebot: ask: unknown option '%s'\nTry 'frichebot help ask'.\n",
                    argv[i]);
            return 2;
        }
    }
    if (argc - i < 2) {
        fputs(ask_help, err);
        return 2;
    }
    fb_geo_t *geo = fb__authoring_load_geo(err);
    fb_buf_t errors;
    fb_buf_init(&errors, 1u << 20);
    fb_dialog_t *d = fb_dialog_load(argv[i], geo, &errors);
    if (!d) {
        fputs(fb_buf_str(&errors), err);
        fb_buf_free(&errors);
        fb_geo_free(geo);
        return 1;
    }
    fb_buf_free(&errors);
    int status = 0;
    if (!fb_dialog_kb(d)) {
        fprintf(err, "%s : ce dialogue n'a pas de base de connaissances (« connaissances: »)\n",
                argv[i]);
        status = 1;
    } else if (!eval) {
        for (int k = i + 1; k < argc; k++)
            show(d, argv[k], out);
    } else {
        struct tally t = {0};
        for (int k = i + 1; k < argc; k++)
            if (eval_file(d, argv[k], &t, out, err))
                status = 1;
        double top1 = t.answerable ? (double)t.top1 / (double)t.answerable : 0;
        fprintf(out,
                "%zu réponses dans la base ; %zu questions avec réponse, %zu sans\n"
                "top-1 : %.1f %% (%zu/%zu), seuil %.1f %%\n"
                "top-1 strict (attendu seul, sans « aussi: ») : %.1f %% (%zu/%zu), seuil %.1f %%\n"
                "répondues : %.1f %% (%zu/%zu), dont justes %zu, fausses %zu\n"
                "le bot demande laquelle convient : %zu question(s) avec réponse, dont %zu avec "
                "la bonne parmi ses propositions ; %zu sans réponse attendue\n"
                "réponse juste donnée ou proposée : %.1f %% (%zu/%zu)\n"
                "sans réponse attendue : %zu répondue(s) à tort sur %zu (au plus %ld)\n",
                fb_kb_size(fb_dialog_kb(d)), t.answerable, t.none, pct(t.top1, t.answerable),
                t.top1, t.answerable, min_top1 * 100, pct(t.top1_strict, t.answerable),
                t.top1_strict, t.answerable, min_strict * 100, pct(t.answered, t.answerable),
                t.answered, t.answerable, t.answered_right, t.answered_wrong, t.asked,
                t.asked_right, t.none_asked, pct(t.answered_right + t.asked_right, t.answerable),
                t.answered_right + t.asked_right, t.answerable, t.none_answered, t.none, max_none);
        if (t.answerable == 0 && t.none == 0) {
            fprintf(err, "frichebot: ask: aucune question dans les jeux donnés\n");
            status = 1;
        }
        if (t.answerable > 0 && top1 < min_top1)
            status = 1;
        if (t.answerable > 0 && (double)t.top1_strict / (double)t.answerable < min_strict)
            status = 1;
        if (t.none_answered > (size_t)max_none)
            status = 1;
        fprintf(out, "%s\n", status ? "ÉCHEC" : "OK");
    }
    fb_dialog_unref(d);
    fb_geo_free(geo);
    return status;
}
