/* SPDX-License-Identifier: MIT */
/*
 * bench_engine.c - the dialog engine's speed and session size over a mix of transcripts.
 *
 *   bench_engine DIALOG TRANSCRIPT... [-n ROUNDS] [-r RUNS]
 *
 * Replays the user turns (dit, choisit, reprise) of every transcript that uses DIALOG, ROUNDS
 * times per run, each time from a fresh session, on one core, and prints the median over RUNS of
 * engine steps per second, with the median and maximum serialized session size (compact JSON, the
 * bytes the store would write). The targets: at least 200,000 steps/s, sessions under 1
 * KiB.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/yamljson.h"
#include "engine/engine.h"
#include "engine/geo.h"
#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "io/paths.h"

struct turn {
    fb_event_t ev;
};

struct script {
    struct turn *turns;
    size_t n;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

/* Reads a transcript's events (strings stay owned by `doc`, kept alive by the caller). */
static int load_script(const char *path, json_t **doc, struct script *s)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fb_buf_t b;
    fb_buf_init(&b, 1u << 24);
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (fb_buf_append(&b, chunk, n))
            break;
    fclose(f);
    char err[256];
    json_t *lines = NULL;
    *doc = fb_yaml_to_json(fb_buf_str(&b), b.len, &lines, err, sizeof(err));
    fb_buf_free(&b);
    json_decref(lines);
    if (!*doc)
        return -1;
    json_t *turns = json_object_get(*doc, "tours");
    s->turns = fb_calloc(json_array_size(turns) + 1, sizeof(struct turn));
    s->n = 0;
    s->turns[s->n++].ev.kind = FB_EVENT_START;
    size_t i;
    json_t *t;
    json_array_foreach(turns, i, t)
    {
        json_t *v;
        struct turn *tu = &s->turns[s->n];
        if ((v = json_object_get(t, "dit")) && json_is_string(v)) {
            tu->ev.kind = FB_EVENT_MESSAGE;
            tu->ev.text = json_string_value(v);
        } else if ((v = json_object_get(t, "choisit")) && json_is_string(v)) {
            tu->ev.kind = FB_EVENT_CHOICE;
            tu->ev.choice = json_string_value(v);
        } else if (json_object_get(t, "reprise")) {
            tu->ev.kind = FB_EVENT_HANDBACK;
        } else {
            continue;
        }
        s->n++;
    }
    return 0;
}

int main(int argc, char **argv)
{
    long rounds = 2000, runs = 5;
    const char *dialog_path = NULL;
    const char *tpaths[64];
    int nt = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
            rounds = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "-r") == 0 && i + 1 < argc)
            runs = strtol(argv[++i], NULL, 10);
        else if (!dialog_path)
            dialog_path = argv[i];
        else if (nt < 64)
            tpaths[nt++] = argv[i];
    }
    if (!dialog_path || nt == 0 || rounds <= 0 || runs <= 0 || runs > 99) {
        fprintf(stderr, "usage: bench_engine DIALOG TRANSCRIPT... [-n ROUNDS] [-r RUNS]\n");
        return 2;
    }
    fb_buf_t errors;
    fb_buf_init(&errors, 1u << 20);
    fb_geo_t *geo = fb_geo_load(fb_data_path(FB_DATA_GEO), &errors);
    fb_dialog_t *d = fb_dialog_load(dialog_path, geo, &errors);
    if (!d) {
        fprintf(stderr, "%s", fb_buf_str(&errors));
        return 1;
    }
    fb_buf_free(&errors);
    json_t *docs[64];
    struct script scripts[64];
    for (int i = 0; i < nt; i++)
        if (load_script(tpaths[i], &docs[i], &scripts[i])) {
            fprintf(stderr, "bench_engine: cannot read %s\n", tpaths[i]);
            return 1;
        }

    fb_engine_env_t env = {.now = 1795856400, .locale = "fr", .geo = geo};
    double rates[99];
    size_t *sizes = NULL, nsizes = 0, capsizes = 0;
    long long total_steps = 0;
    for (long r = 0; r < runs; r++) {
        long long steps = 0;
        double t0 = now_s();
        for (long k = 0; k < rounds; k++) {
            for (int i = 0; i < nt; i++) {
                json_t *session = NULL;
                for (size_t j = 0; j < scripts[i].n; j++) {
                    json_t *ns = NULL, *eff = NULL;
                    if (fb_engine_step(d, session, &scripts[i].turns[j].ev, &env, &ns, &eff)) {
                        fprintf(stderr, "bench_engine: engine error\n");
                        return 1;
                    }
                    json_decref(session);
                    json_decref(eff);
                    session = ns;
                    steps++;
                }
                if (r == 0 && k == 0) {
                    /* Session sizes along the way are measured once, outside the timed loop's
                     * steady state: the size at the end of each transcript is the largest. */
                    char *s = json_dumps(session, JSON_COMPACT);
                    if (nsizes == capsizes) {
                        capsizes = capsizes ? capsizes * 2 : 16;
                        sizes = fb_realloc(sizes, capsizes * sizeof(size_t));
                    }
                    sizes[nsizes++] = s ? strlen(s) : 0;
                    free(s); /* jansson's allocation */
                }
                json_decref(session);
            }
        }
        double dt = now_s() - t0;
        rates[r] = (double)steps / dt;
        total_steps += steps;
    }
    qsort(rates, (size_t)runs, sizeof(double), cmp_double);
    qsort(sizes, nsizes, sizeof(size_t), cmp_size);
    printf(
        "frichebot engine benchmark: %s (version %s), %d transcript(s), %lld steps in %ld runs\n",
        fb_dialog_id(d), fb_dialog_hash(d), nt, total_steps, runs);
    printf("  engine steps/s (median of %ld runs, one core)   %.0f\n", runs, rates[runs / 2]);
    printf("  target                                          200000  -> %s\n",
           rates[runs / 2] >= 200000 ? "met" : "NOT met");
    printf("  session bytes at transcript end: median %zu, max %zu (target < 1024 -> %s)\n",
           sizes[nsizes / 2], sizes[nsizes - 1], sizes[nsizes - 1] < 1024 ? "met" : "NOT met");
    for (int i = 0; i < nt; i++) {
        fb_free(scripts[i].turns);
        json_decref(docs[i]);
    }
    fb_free(sizes);
    fb_dialog_unref(d);
    fb_geo_free(geo);
    return 0;
}
