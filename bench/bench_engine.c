/* SPDX-License-Identifier: MIT */
/*
 * bench_engine.c - the dialog engine's speed and session size over a mix of transcripts.
 *
 *   bench_engine DIALOG TRANSCRIPT... [-n ROUNDS] [-r RUNS]
 *
 * Replays every transcript of DIALOG among TRANSCRIPT... (the others are skipped) the way
 * `frichebot test` runs it: the same engine calls, user turns (dit, choisit, reprise, oubli) and
 * the reminders an `avance:` fires, at the transcript's clock (`horloge:`), with its advisors
 * (`conseillers:`), platform, e-mail offer and roadmap address. The calls are recorded once, then
 * replayed ROUNDS times per run, each time from a fresh session, on one core. A step is what the
 * daemon does per message around the engine (router.c): the session read from its stored form,
 * the engine's step (its reply rendered), the new session written to its stored form. For the
 * friche dialog that is its real answers, the commune step included (the lookup in the official
 * communes index: names, homonyms, postal codes, departments). Prints the median over RUNS of
 * engine steps per second of the thread's CPU time (the machine is shared: the wall-clock rate,
 * also printed, counts the time other processes had the core) against the target (issue #17: at
 * least 400,000 on each dialog), how many transcripts answered a commune, and the median and
 * maximum serialized session size at a transcript's end (compact JSON, the bytes the store would
 * write; target under 1 KiB).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/json.h"
#include "common/yamljson.h"
#include "engine/effects.h"
#include "engine/engine.h"
#include "engine/geo.h"
#include "engine/text.h"
#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "io/paths.h"
#include "replay.h"

/* One recorded engine call: the event and the clock it ran at (timers included). */
struct turn {
    fb_event_t ev;
    int64_t now;
};

/* A transcript turned into the sequence of engine calls `frichebot test` makes for it, with the
 * transcript's environment (advisors, platform, e-mail offer, roadmap address). */
struct script {
    struct turn *turns;
    size_t n, cap;
    fb_engine_env_t env;
    const json_t *advisors; /* the `conseillers:` list, or NULL: nobody (when has_advisor is set) */
    char *timer_ids[256];   /* timer ids the recorded events point to (owned) */
    size_t n_ids;
};

#define MAX_SCRIPTS 128
/* The target (#17): steps per second on one core, on each dialog. */
#define TARGET_STEPS 400000.0

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The thread's CPU time: what the steps cost on their core, whatever else the machine runs (it is
 * shared: wall time would count the moments another process had the core). */
static double cpu_s(void)
{
    return clock_s(CLOCK_THREAD_CPUTIME_ID);
}

static double now_s(void)
{
    return clock_s(CLOCK_MONOTONIC);
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

/* `conseillers:` as `frichebot test` reads it: a list of departments, "rNN" regions or "*". */
static bool advisors_cover(const void *arg, const char *insee)
{
    const struct script *s = arg;
    return fb_replay_advisors_cover(s->advisors, s->env.geo, insee);
}

struct recorder {
    const fb_dialog_t *d;
    struct script *s;
    json_t *session;
    fb_replay_timers_t timers;
    long long clock;
};

/* Runs and records one engine call, keeping the reminders the effects schedule or cancel. */
static int record_step(struct recorder *r, const fb_event_t *ev)
{
    struct script *s = r->s;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 32;
        s->turns = fb_realloc(s->turns, s->cap * sizeof(struct turn));
    }
    s->turns[s->n].ev = *ev;
    s->turns[s->n].now = r->clock;
    s->n++;
    json_t *ns = NULL, *effects = NULL;
    s->env.now = r->clock;
    if (fb_engine_step(r->d, r->session, ev, &s->env, &ns, &effects))
        return -1;
    json_decref(r->session);
    r->session = ns;
    fb_replay_timers_apply(&r->timers, effects, r->clock);
    json_decref(effects);
    return 0;
}

/* `avance:` moves the clock, firing the due reminders in time order. */
static int record_advance(struct recorder *r, long long secs)
{
    long long target = r->clock + secs, due;
    char *id;
    while ((id = fb_replay_timers_take(&r->timers, target, &due)) != NULL) {
        if (due > r->clock)
            r->clock = due;
        if (r->s->n_ids == sizeof(r->s->timer_ids) / sizeof(r->s->timer_ids[0])) {
            fb_free(id);
            return -1;
        }
        r->s->timer_ids[r->s->n_ids++] = id;
        fb_event_t ev = {.kind = FB_EVENT_TIMER, .timer = id};
        if (record_step(r, &ev))
            return -1;
    }
    r->clock = target;
    return 0;
}

/* Reads a transcript and records the engine calls `frichebot test` makes for it (strings stay
 * owned by `doc`, kept alive by the caller). `d` must be the transcript's dialog: a transcript
 * of another dialog gives 1 (skipped), an unreadable one -1. */
static int load_script(const char *path, const fb_dialog_t *d, const fb_geo_t *geo, json_t **doc,
                       struct script *s)
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
    const char *dialog = json_string_value(json_object_get(*doc, "dialogue"));
    const char *base = dialog ? strrchr(dialog, '/') : NULL;
    base = base ? base + 1 : dialog;
    size_t idlen = strlen(fb_dialog_id(d));
    if (!base || strncmp(base, fb_dialog_id(d), idlen) != 0 || strcmp(base + idlen, ".yaml") != 0)
        return 1;
    memset(s, 0, sizeof(*s));
    s->env.locale = "fr";
    s->env.geo = geo;
    long long clock = 1795856400; /* `frichebot test`'s default clock */
    const char *h = json_string_value(json_object_get(*doc, "horloge"));
    if (h && fb_replay_parse_clock(h, &clock))
        return -1;
    const json_t *adv = json_object_get(*doc, "conseillers");
    const char *a = json_string_value(adv);
    if (adv && !json_is_true(adv) && !(a && strcmp(a, "oui") == 0)) {
        s->advisors = json_is_array(adv) ? adv : NULL;
        s->env.has_advisor = advisors_cover;
        s->env.has_advisor_arg = s;
    }
    const char *p = json_string_value(json_object_get(*doc, "plateforme"));
    const json_t *m = json_object_get(*doc, "courriel");
    const char *ms = json_string_value(m);
    s->env.unreachable = p && strcmp(p, "web") == 0;
    s->env.mail_offer = json_is_true(m) || (ms && strcmp(ms, "oui") == 0);
    s->env.roadmap_url = json_string_value(json_object_get(*doc, "lien_feuille_de_route"));

    struct recorder r = {.d = d, .s = s, .clock = clock};
    int rc = 0;
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(*doc, "tours"), i, t)
    {
        json_t *v;
        fb_event_t ev = {.kind = FB_EVENT_START};
        if ((v = json_object_get(t, "dit"))) {
            ev.kind = FB_EVENT_MESSAGE;
            ev.text = json_is_string(v) ? json_string_value(v) : "";
        } else if ((v = json_object_get(t, "choisit"))) {
            ev.kind = FB_EVENT_CHOICE;
            ev.choice = json_is_string(v) ? json_string_value(v) : "";
        } else if ((v = json_object_get(t, "avance"))) {
            long long secs;
            if (!json_is_string(v) || fb_text_duration(json_string_value(v), &secs) ||
                record_advance(&r, secs)) {
                rc = -1;
                break;
            }
            continue;
        } else if (json_object_get(t, "reprise")) {
            ev.kind = FB_EVENT_HANDBACK;
        } else if (json_object_get(t, "oubli")) {
            ev.kind = FB_EVENT_FORGET;
        }
        if (record_step(&r, &ev)) {
            rc = -1;
            break;
        }
    }
    fb_replay_timers_cancel(&r.timers, NULL);
    json_decref(r.session);
    return rc;
}

static void free_script(struct script *s)
{
    fb_free(s->turns);
    for (size_t i = 0; i < s->n_ids; i++)
        fb_free(s->timer_ids[i]);
}

/*
 * One step as the daemon makes it (router.c): the session read from its stored form (`stored`,
 * compact JSON, empty for none) with the router's reader, the engine, the new session written
 * back to its stored form with the router's writer. `*session` is left holding the new session
 * (for the measures after the transcript).
 */
static int step_stored(const fb_dialog_t *d, struct script *sc, size_t j, fb_buf_t *stored,
                       json_t **session)
{
    json_t *old = NULL;
    if (stored->len > 0) {
        old = fb_engine_session_loadb(d, stored->data, stored->len);
        if (!old) {
            fprintf(stderr, "bench_engine: stored session is not JSON\n");
            return -1;
        }
    }
    json_t *nsess = NULL, *eff = NULL;
    sc->env.now = sc->turns[j].now;
    if (fb_engine_step(d, old, &sc->turns[j].ev, &sc->env, &nsess, &eff)) {
        fprintf(stderr, "bench_engine: engine error\n");
        json_decref(old);
        return -1;
    }
    json_decref(old);
    json_decref(eff);
    fb_buf_reset(stored);
    if (nsess && !json_is_null(nsess) && fb_json_dump(nsess, stored)) {
        fprintf(stderr, "bench_engine: cannot write the session\n");
        return -1;
    }
    json_decref(*session);
    *session = nsess;
    return 0;
}

int main(int argc, char **argv)
{
    long rounds = 2000, runs = 5;
    const char *dialog_path = NULL;
    const char *tpaths[MAX_SCRIPTS];
    int nt = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
            rounds = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "-r") == 0 && i + 1 < argc)
            runs = strtol(argv[++i], NULL, 10);
        else if (!dialog_path)
            dialog_path = argv[i];
        else if (nt < MAX_SCRIPTS)
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
    json_t *docs[MAX_SCRIPTS];
    static struct script scripts[MAX_SCRIPTS];
    int ns = 0;
    for (int i = 0; i < nt; i++) {
        int rc = load_script(tpaths[i], d, geo, &docs[ns], &scripts[ns]);
        if (rc < 0) {
            fprintf(stderr, "bench_engine: cannot replay %s\n", tpaths[i]);
            return 1;
        }
        if (rc > 0) {
            json_decref(docs[ns]);
            continue;
        }
        ns++;
    }
    if (ns == 0) {
        fprintf(stderr, "bench_engine: no transcript of dialog %s\n", fb_dialog_id(d));
        return 1;
    }

    double rates[99], wall_rates[99];
    size_t *sizes = fb_calloc((size_t)ns, sizeof(size_t));
    int with_commune = 0;
    long long total_steps = 0;
    fb_buf_t stored; /* the session's stored form, as the router keeps it */
    fb_buf_init(&stored, (size_t)1 << 26);
    for (long r = 0; r < runs; r++) {
        long long steps = 0;
        double t0 = cpu_s(), w0 = now_s();
        for (long k = 0; k < rounds; k++) {
            for (int i = 0; i < ns; i++) {
                struct script *sc = &scripts[i];
                json_t *session = NULL;
                fb_buf_reset(&stored);
                for (size_t j = 0; j < sc->n; j++) {
                    if (step_stored(d, sc, j, &stored, &session))
                        return 1;
                    steps++;
                }
                if (r == 0 && k == 0) {
                    /* Measured once, outside the timed loop's steady state: the session at the
                     * end of each transcript (the largest) and whether a commune was answered. */
                    char *js = json_dumps(session, JSON_COMPACT);
                    sizes[i] = js ? strlen(js) : 0;
                    free(js); /* jansson's allocation */
                    if (fb_engine_session_insee(session))
                        with_commune++;
                }
                json_decref(session);
            }
        }
        double dt = cpu_s() - t0, dw = now_s() - w0;
        rates[r] = (double)steps / dt;
        wall_rates[r] = (double)steps / dw;
        total_steps += steps;
    }
    qsort(rates, (size_t)runs, sizeof(double), cmp_double);
    qsort(wall_rates, (size_t)runs, sizeof(double), cmp_double);
    qsort(sizes, (size_t)ns, sizeof(size_t), cmp_size);
    double rate = rates[runs / 2];
    printf(
        "frichebot engine benchmark: %s (version %s), %d transcript(s), %lld steps in %ld runs\n",
        fb_dialog_id(d), fb_dialog_hash(d), ns, total_steps, runs);
    printf("  transcripts with a commune answered (the commune step): %d of %d\n", with_commune,
           ns);
    printf("  engine steps/s (median of %ld runs, one core)   %.0f  (CPU time; by the wall clock "
           "%.0f)\n",
           runs, rate, wall_rates[runs / 2]);
    printf("  target                                          %.0f  -> %s\n", TARGET_STEPS,
           rate >= TARGET_STEPS ? "met" : "NOT met");
    printf("  session bytes at transcript end: median %zu, max %zu (target < 1024 -> %s)\n",
           sizes[ns / 2], sizes[ns - 1], sizes[ns - 1] < 1024 ? "met" : "NOT met");
    for (int i = 0; i < ns; i++) {
        free_script(&scripts[i]);
        json_decref(docs[i]);
    }
    fb_free(sizes);
    fb_buf_free(&stored);
    fb_dialog_unref(d);
    fb_geo_free(geo);
    return 0;
}
