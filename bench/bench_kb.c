/* SPDX-License-Identifier: MIT */
/*
 * bench_kb.c - what answering a question from the knowledge base costs (daemon/engine/kb.h): the
 * latency of fb_kb_search() (analysis, stemming, synonyms, BM25F, confidence) over the dialog's
 * whole base, for a fixed list of realistic questions (typos, no accents, spoken French, and
 * questions the base cannot answer). Not part of `make test`; run it on a build without
 * sanitizers, on one core (bench/kb.sh).
 *
 *   bench_kb DIALOG [-n ROUNDS]
 *
 * Runs the list ROUNDS times (default 2000), five times, and prints the median time per question
 * in microseconds beside the budget (50 us for a 160-answer base, issue #20).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine.h"
#include "engine/geo.h"
#include "engine/kb.h"
#include "frichebot/alloc.h"
#include "io/paths.h"

#define RUNS      5
#define BUDGET_US 50.0

static const char *const questions[] = {
    "Comment obtenir le fonds vert pour une friche ?",
    "c'est quoi un SIS",
    "qui paye la depollution si l'exploitant a disparu ?",
    "l'EPF peut acheter à notre place ?",
    "faut-il l'avis du Domaine ?",
    "mon terrain est dans basias c grave ?",
    "c koi le zan",
    "on peut mettre des panneaux solaires sur une ancienne decharge",
    "le proprio est introuvable on fait comment",
    "bien sans maitre procedure mairie",
    "est ce que la DETR peut financer la demolition",
    "qui contacter a la DDT pour notre friche",
    "il faut un permis de démolir pour raser le hangar ?",
    "l'ABF doit donner son avis ?",
    "amiante dans le batiment avant travaux que faire",
    "c'est quoi cartofriches",
    "vous gardez mes données ?",
    "quelle heure est-il ?",
    "comment faire une tarte aux pommes",
    "qui a gagné le match hier soir",
};

static volatile size_t bench_sink;

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    const char *dialog = NULL;
    long rounds = 2000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
            rounds = strtol(argv[++i], NULL, 10);
        else
            dialog = argv[i];
    }
    if (!dialog || rounds <= 0) {
        fprintf(stderr, "usage: bench_kb DIALOG [-n ROUNDS]\n");
        return 2;
    }
    const char *gpath = getenv("FRICHEBOT_GEO");
    if (!gpath)
        gpath = fb_data_path(FB_DATA_GEO);
    fb_buf_t errors;
    fb_buf_init(&errors, 1u << 20);
    fb_geo_t *geo = gpath && access(gpath, R_OK) == 0 ? fb_geo_load(gpath, &errors) : NULL;
    fb_dialog_t *d = fb_dialog_load(dialog, geo, &errors);
    if (!d || !fb_dialog_kb(d)) {
        fprintf(stderr, "bench_kb: %s: %s\n", dialog,
                d ? "no knowledge base (connaissances:)" : fb_buf_str(&errors));
        return 1;
    }
    const fb_kb_t *kb = fb_dialog_kb(d);
    size_t nq = sizeof(questions) / sizeof(questions[0]);
    double us[RUNS];
    for (int run = 0; run < RUNS; run++) {
        double t0 = now_ns();
        for (long r = 0; r < rounds; r++)
            for (size_t q = 0; q < nq; q++) {
                fb_kb_result_t res;
                fb_kb_search(kb, questions[q], &res);
                bench_sink += res.n + (res.confident ? 1 : 0);
            }
        us[run] = (now_ns() - t0) / 1e3 / ((double)rounds * (double)nq);
    }
    qsort(us, RUNS, sizeof(double), cmp_double);
    printf("kb answers=%zu questions=%zu us_per_question=%.2f budget_us=%.0f %s\n", fb_kb_size(kb),
           nq, us[RUNS / 2], BUDGET_US, us[RUNS / 2] <= BUDGET_US ? "ok" : "OVER BUDGET");
    fb_dialog_unref(d);
    fb_geo_free(geo);
    fb_buf_free(&errors);
    return 0;
}
