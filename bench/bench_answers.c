/* SPDX-License-Identifier: MIT */
/*
 * bench_answers.c - what understanding one answer costs (daemon/engine/answers.h): the latency
 * of fb_answer_is_unknown, fb_answer_yesno, fb_answer_choice and fb_answer_choices (which
 * compile the choice list on every call) and of fb_answer_choice_in and fb_answer_choices_in
 * (over a set compiled once, as the engine does) for a fixed mix of answers: a position, a typo,
 * a synonym, a miss, a list, "oui", "je ne sais pas" and an unrelated sentence. Not part of
 * `make test`; run it on a build without sanitizers.
 *
 *   bench_answers [-n CALLS]
 *
 * Runs each parser CALLS times (default 20000) per answer, five times, and prints the median
 * per-call latency in microseconds as one "answer parser=value" line per figure on stdout.
 * Targets (the dialog engine issue): choice and choices within 3 us for lists of up to 5
 * options, yes/no and "je ne sais pas" within 1 us.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/answers.h"
#include "frichebot/alloc.h"

#define ROUNDS 5

/* Where the results end up, so that no call can be optimised away. */
static volatile unsigned long bench_sink;

/* Monotonic time in nanoseconds. */
static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static const char *const syn_commune[] = {"mairie", "ville", NULL};
static const char *const syn_asso[] = {"asso", NULL};
static const char *const syn_habitants[] = {"voisins", "collectif", NULL};
static const fb_choice_t choices[] = {
    {"commune", "La commune", syn_commune},
    {"association", "Une association", syn_asso},
    {"habitants", "Un collectif d'habitants", syn_habitants},
};
#define NCHOICES (sizeof(choices) / sizeof(choices[0]))

static const char *const answers[] = {
    "2",
    "une asociation",
    "mairie",
    "retour",
    "1, 2 et 4",
    "oui",
    "je ne sais pas",
    "Les Jardins du Confluent",
};

enum parser { P_UNKNOWN, P_YESNO, P_CHOICE, P_CHOICES, P_CHOICE_IN, P_CHOICES_IN, P_COUNT };

static const char *const parser_names[P_COUNT] = {"unknown", "yesno",     "choice",
                                                  "choices", "choice_in", "choices_in"};

/* Runs `p` on `text` `calls` times; returns nanoseconds per call. The results are summed into
 * *sink so that no call can be optimised away. */
static double run(enum parser p, const fb_choice_set_t *set, const char *text, long calls,
                  unsigned long *sink)
{
    double t0 = now_ns();
    for (long i = 0; i < calls; i++) {
        bool b = false;
        size_t idx = 0;
        uint64_t mask = 0;
        fb_answer_status_t st = FB_ANSWER_OK;
        switch (p) {
        case P_UNKNOWN:
            b = fb_answer_is_unknown(text);
            break;
        case P_YESNO:
            st = fb_answer_yesno(text, &b);
            break;
        case P_CHOICE:
            st = fb_answer_choice(choices, NCHOICES, text, &idx);
            break;
        case P_CHOICES:
            st = fb_answer_choices(choices, NCHOICES, text, &mask);
            break;
        case P_CHOICE_IN:
            st = fb_answer_choice_in(set, text, &idx);
            break;
        case P_CHOICES_IN:
            st = fb_answer_choices_in(set, text, &mask);
            break;
        case P_COUNT:
            break;
        }
        *sink += (unsigned long)st + b + idx + (unsigned long)mask;
    }
    return (now_ns() - t0) / (double)calls;
}

int main(int argc, char **argv)
{
    long calls = 20000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
            calls = strtol(argv[++i], NULL, 10);
        } else {
            fprintf(stderr, "usage: bench_answers [-n CALLS]\n");
            return 2;
        }
    }
    if (calls < 1)
        calls = 1;
    fb_choice_set_t *set = fb_choice_set_new(choices, NCHOICES);
    unsigned long sink = 0;
    for (size_t a = 0; a < sizeof(answers) / sizeof(answers[0]); a++) {
        for (int p = 0; p < P_COUNT; p++) {
            double t[ROUNDS];
            for (int r = 0; r < ROUNDS; r++)
                t[r] = run((enum parser)p, set, answers[a], calls, &sink);
            qsort(t, ROUNDS, sizeof(t[0]), cmp_double);
            printf("\"%s\" %s=%.2f us\n", answers[a], parser_names[p], t[ROUNDS / 2] / 1000.0);
        }
    }
    fb_choice_set_free(set);
    bench_sink = sink;
    return 0;
}
