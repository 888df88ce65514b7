/* SPDX-License-Identifier: MIT */
/*
 * authoring.c - the dialog authors' commands: `check`, `graph`, `chat` and `test`.
 *
 * They drive the pure engine (engine.h) with no Redis and no network. `chat` keeps the session in
 * memory and uses the real clock, shifted by `/avance`; `test` replays golden transcripts
 * (tests/transcripts/, format in docs/dialogs.md) on a virtual clock and compares what the
 * bot says and does with what the transcript expects. Reminders scheduled by the engine are kept
 * in a small table and fired as TIMER events when the (virtual) clock passes their time, exactly
 * as the daemon's reminder loop will.
 *
 * Messages are for dialog authors, who are French: they are in French. The closing line of
 * `test`, "N passed, N failed", stays as CI runners read it.
 */
#include "authoring.h"

#include <dirent.h>
#include <errno.h>
#include <regex.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/yamljson.h"
#include "engine/effects.h"
#include "engine/engine.h"
#include "engine/geo.h"
#include "engine/kb.h"
#include "engine/text.h"
#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "frichebot/clock.h"
#include "frichebot/err.h"
#include "io/paths.h"
#include "replay.h"

#define MAX_FILES 512

/* ---- shared helpers ---- */

static const char *str_or(const char *s, const char *fallback)
{
    return s ? s : fallback;
}

/* Loads the communes index if it is there; the tools work without it for dialogs that do not ask
 * for a commune (loading such a dialog then reports the missing index). Returns NULL if absent. */
fb_geo_t *fb__authoring_load_geo(FILE *err)
{
    const char *path = getenv("FRICHEBOT_GEO");
    if (!path)
        path = fb_data_path(FB_DATA_GEO);
    if (!path || access(path, R_OK) != 0)
        return NULL;
    fb_buf_t errors;
    fb_buf_init(&errors, 1u << 16);
    fb_geo_t *g = fb_geo_load(path, &errors);
    if (!g)
        fprintf(err, "frichebot: index des communes illisible : %s", fb_buf_str(&errors));
    fb_buf_free(&errors);
    return g;
}

static bool is_yaml(const char *name)
{
    size_t n = strlen(name);
    return (n > 5 && strcmp(name + n - 5, ".yaml") == 0) ||
           (n > 4 && strcmp(name + n - 4, ".yml") == 0);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Expands PATH arguments: a file is taken as is, a directory gives its *.yaml files (not those of
 * its subdirectories, where catalogues live), sorted. Returns the count, or -1 after a message. */
static int expand_paths(int argc, char **argv, char **files, FILE *err)
{
    int n = 0;
    for (int i = 0; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(err, "frichebot: %s : %s\n", argv[i], strerror(errno));
            goto fail;
        }
        if (!S_ISDIR(st.st_mode)) {
            if (n == MAX_FILES)
                goto toomany;
            files[n++] = fb_strdup(argv[i]);
            continue;
        }
        DIR *dir = opendir(argv[i]);
        if (!dir) {
            fprintf(err, "frichebot: %s : %s\n", argv[i], strerror(errno));
            goto fail;
        }
        int first = n;
        struct dirent *de;
        while ((de = readdir(dir)) != NULL) {
            if (de->d_name[0] == '.' || !is_yaml(de->d_name))
                continue;
            size_t dl = strlen(argv[i]);
            while (dl > 1 && argv[i][dl - 1] == '/')
                dl--;
            char *p = fb_asprintf("%.*s/%s", (int)dl, argv[i], de->d_name);
            struct stat fst;
            if (stat(p, &fst) != 0 || !S_ISREG(fst.st_mode)) {
                fb_free(p);
                continue;
            }
            if (n == MAX_FILES) {
                fb_free(p);
                closedir(dir);
                goto toomany;
            }
            files[n++] = p;
        }
        closedir(dir);
        qsort(files + first, (size_t)(n - first), sizeof(char *), cmp_str);
    }
    return n;
toomany:
    fprintf(err, "frichebot: trop de fichiers (plus de %d)\n", MAX_FILES);
fail:
    for (int i = 0; i < n; i++)
        fb_free(files[i]);
    return -1;
}

static char *read_file(const char *path, size_t *len, FILE *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(err, "%s:1:1: impossible de lire le fichier : %s\n", path, strerror(errno));
        return NULL;
    }
    fb_buf_t b;
    fb_buf_init(&b, 16u << 20);
    char chunk[8192];
    size_t n;
    int rc = 0;
    while (rc == 0 && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        rc = fb_buf_append(&b, chunk, n);
    fclose(f);
    if (rc) {
        fprintf(err, "%s:1:1: fichier trop gros\n", path);
        return NULL;
    }
    *len = b.len;
    return fb_buf_take(&b);
}

/*
 * The common front of the `COMMAND PATH...` tools (check, test): --help prints `help` to `out`,
 * a missing PATH or an option is a usage error, then the paths are expanded into `files`.
 * Returns -1 with *n set when the command should go on, or the exit status to return at once.
 */
static int paths_command(int argc, char **argv, const char *name, const char *help, char **files,
                         int *n, FILE *out, FILE *err)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(help, out);
        return 0;
    }
    if (argc < 2) {
        fprintf(err, "usage: frichebot %s PATH...\nTry 'frichebot %s --help'.\n", name, name);
        return 2;
    }
    for (int i = 1; i < argc; i++)
        if (argv[i][0] == '-') {
            fprintf(err, "frichebot: %s: unknown option '%s'\nTry 'frichebot --help'.\n", name,
                    argv[i]);
            return 2;
        }
    *n = expand_paths(argc - 1, argv + 1, files, err);
    return *n < 0 ? 1 : -1;
}

/* ---- check ---- */

int fb_cmd_check(int argc, char **argv, FILE *out, FILE *err)
{
    static const char help[] =
        "usage: frichebot check PATH...\n"
        "\n"
        "Validates dialog files and the catalogues they name: every error at once, as\n"
        "FILE:LINE:COLUMN: message. A directory means its *.yaml files (catalogues live in\n"
        "subdirectories and are checked through the dialogs that name them).\n"
        "Exit status: 0 when everything is valid, 1 otherwise.\n";
    char *files[MAX_FILES];
    int n = 0;
    int status = paths_command(argc, argv, "check", help, files, &n, out, err);
    if (status >= 0)
        return status;
    fb_geo_t *geo = fb__authoring_load_geo(err);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        fb_buf_t errors;
        fb_buf_init(&errors, 1u << 20);
        fb_dialog_t *d = fb_dialog_load(files[i], geo, &errors);
        if (d) {
            fprintf(out, "%s : correct (dialogue « %s », version %s)\n", files[i], fb_dialog_id(d),
                    fb_dialog_hash(d));
            /* answers of the knowledge base that compete: warnings, not errors */
            fb_buf_t warnings;
            fb_buf_init(&warnings, 1u << 20);
            if (fb_dialog_kb_warnings(d, &warnings) > 0)
                fputs(fb_buf_str(&warnings), err);
            fb_buf_free(&warnings);
            fb_dialog_unref(d);
        } else {
            fputs(fb_buf_str(&errors), err);
            bad++;
        }
        fb_buf_free(&errors);
        fb_free(files[i]);
    }
    fb_geo_free(geo);
    if (n == 0)
        fprintf(err, "frichebot: aucun fichier de dialogue trouvé\n");
    fprintf(out, "%d fichier(s) vérifié(s), %d en erreur\n", n, bad);
    return (bad || n == 0) ? 1 : 0;
}

/* ---- graph ---- */

int fb_cmd_graph(int argc, char **argv, FILE *out, FILE *err)
{
    const char *file = NULL, *output = NULL;
    bool svg = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs("usage: frichebot graph FILE [--svg] [-o OUT]\n"
                  "\n"
                  "Writes the dialog as a Graphviz DOT graph (states, transitions labelled with\n"
                  "the choices or conditions). --svg renders it with `dot` (package graphviz).\n"
                  "-o writes to OUT instead of the standard output.\n",
                  out);
            return 0;
        } else if (strcmp(argv[i], "--svg") == 0) {
            svg = true;
        } else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
            output = argv[++i];
        } else if (argv[i][0] == '-') {
            fprintf(err, "frichebot: graph: unknown option '%s'\nTry 'frichebot --help'.\n",
                    argv[i]);
            return 2;
        } else if (!file) {
            file = argv[i];
        } else {
            fprintf(err, "frichebot: graph: one file only\nTry 'frichebot --help'.\n");
            return 2;
        }
    }
    if (!file) {
        fputs("usage: frichebot graph FILE [--svg] [-o OUT]\n", err);
        return 2;
    }
    fb_geo_t *geo = fb__authoring_load_geo(err);
    fb_buf_t errors, dot;
    fb_buf_init(&errors, 1u << 20);
    fb_buf_init(&dot, 16u << 20);
    int status = 1;
    fb_dialog_t *d = fb_dialog_load(file, geo, &errors);
    if (!d) {
        fputs(fb_buf_str(&errors), err);
        goto done;
    }
    if (fb_dialog_to_dot(d, &dot)) {
        fprintf(err, "frichebot: graphe trop gros\n");
        goto done;
    }
    if (svg) {
        /* dot reads the graph on stdin; its output goes where ours would. */
        char *cmd = output ? fb_asprintf("dot -Tsvg -o '%s'", output) : fb_strdup("dot -Tsvg");
        if (output && strchr(output, '\'')) {
            fprintf(err, "frichebot: nom de fichier refusé : %s\n", output);
            fb_free(cmd);
            goto done;
        }
        fflush(out);
        FILE *p = popen(cmd, "w");
        fb_free(cmd);
        if (!p) {
            fprintf(err, "frichebot: impossible de lancer dot : %s\n", strerror(errno));
            goto done;
        }
        fwrite(dot.data, 1, dot.len, p);
        int rc = pclose(p);
        if (rc != 0) {
            fprintf(err, "frichebot: dot a échoué (est-il installé ? paquet graphviz)\n");
            goto done;
        }
    } else {
        FILE *o = output ? fopen(output, "w") : out;
        if (!o) {
            fprintf(err, "frichebot: %s : %s\n", output, strerror(errno));
            goto done;
        }
        fwrite(dot.data, 1, dot.len, o);
        if (output)
            fclose(o);
    }
    status = 0;
done:
    if (d)
        fb_dialog_unref(d);
    fb_buf_free(&errors);
    fb_buf_free(&dot);
    fb_geo_free(geo);
    return status;
}

/* ---- a conversation: session, clock and reminders (shared by chat and test) ---- */

/* A transcript's `conseillers:` (advisors): `non` nobody, `oui` everyone (the default: the
 * engine assumes them available), or a list of territories as escalation.rooms writes them
 * ("30", "r76", "*"), looked up as the daemon's escalation does (fb_esc_has_advisor()). */
struct advisors {
    const fb_geo_t *geo;
    const json_t *list; /* array of strings, or NULL: nobody */
};

static bool advisors_cover(const void *arg, const char *insee)
{
    const struct advisors *a = arg;
    return fb_replay_advisors_cover(a->list, a->geo, insee);
}

struct convo {
    const fb_dialog_t *dialog;
    fb_engine_env_t env;
    struct advisors advisors;
    json_t *session; /* NULL before the first step */
    fb_replay_timers_t timers;
    long long clock;
};

static void convo_init(struct convo *c, const fb_dialog_t *d, const fb_geo_t *geo, long long now)
{
    memset(c, 0, sizeof(*c));
    c->dialog = d;
    c->env.locale = "fr";
    c->env.geo = geo;
    c->clock = now;
}

static void convo_free(struct convo *c)
{
    json_decref(c->session);
    fb_replay_timers_cancel(&c->timers, NULL);
    c->session = NULL;
}

/* Applies the effects the pure engine asked for that concern the conversation's own state. */
static void convo_apply(struct convo *c, json_t *effects)
{
    fb_replay_timers_apply(&c->timers, effects, c->clock);
}

/* A transcript's `conseillers:` (struct advisors): sets c->env.has_advisor unless absent or
 * `oui`. Returns 0, or 1 after printing the error. */
static int read_advisors(struct convo *c, const json_t *doc, const fb_geo_t *geo, json_t *lines,
                         const char *file, FILE *out)
{
    const json_t *adv = json_object_get(doc, "conseillers");
    if (!adv)
        return 0;
    const char *a = json_string_value(adv);
    bool none = json_is_false(adv) || (a && strcmp(a, "non") == 0);
    bool all = json_is_true(adv) || (a && strcmp(a, "oui") == 0);
    if (!none && !all && !json_is_array(adv)) {
        fprintf(out,
                "%s:%d: « conseillers » : non, oui ou une liste de territoires (« 30 », « r76 », "
                "« * »)\n",
                file, fb_yaml_line(lines, "/conseillers"));
        return 1;
    }
    if (!all) {
        c->advisors.geo = geo;
        c->advisors.list = json_is_array(adv) ? adv : NULL;
        c->env.has_advisor = advisors_cover;
        c->env.has_advisor_arg = &c->advisors;
    }
    return 0;
}

/* A transcript's `plateforme:` (`web`: the user is reached only while there, as in the web chat:
 * env.unreachable) and `courriel:` (`oui`: an e-mail address may be left, env.mail_offer).
 * Returns 0, or 1 after printing the error. */
static int read_platform(struct convo *c, const json_t *doc, json_t *lines, const char *file,
                         FILE *out)
{
    const json_t *p = json_object_get(doc, "plateforme");
    const json_t *m = json_object_get(doc, "courriel");
    const char *ps = json_string_value(p), *ms = json_string_value(m);
    if (p && (!ps || (strcmp(ps, "web") != 0 && strcmp(ps, "matrix") != 0))) {
        fprintf(out, "%s:%d: « plateforme » : web ou matrix\n", file,
                fb_yaml_line(lines, "/plateforme"));
        return 1;
    }
    bool yes = json_is_true(m) || (ms && strcmp(ms, "oui") == 0);
    bool no = json_is_false(m) || (ms && strcmp(ms, "non") == 0);
    if (m && !yes && !no) {
        fprintf(out, "%s:%d: « courriel » : oui ou non\n", file, fb_yaml_line(lines, "/courriel"));
        return 1;
    }
    c->env.unreachable = ps && strcmp(ps, "web") == 0;
    c->env.mail_offer = yes;
    return 0;
}

/* Runs one event; appends its effects to `all` (new array when NULL). Returns 0 or an error. */
static int convo_step(struct convo *c, const fb_event_t *ev, json_t *all)
{
    json_t *ns = NULL, *effects = NULL;
    c->env.now = c->clock;
    int rc = fb_engine_step(c->dialog, c->session, ev, &c->env, &ns, &effects);
    if (rc)
        return rc;
    json_decref(c->session);
    c->session = ns;
    convo_apply(c, effects);
    json_array_extend(all, effects);
    json_decref(effects);
    return 0;
}

/* Moves the clock forward by `secs`, firing due reminders in time order. */
static int convo_advance(struct convo *c, long long secs, json_t *all)
{
    long long target = c->clock + secs, due;
    char *id;
    while ((id = fb_replay_timers_take(&c->timers, target, &due)) != NULL) {
        if (due > c->clock)
            c->clock = due;
        fb_event_t ev = {.kind = FB_EVENT_TIMER, .timer = id};
        int rc = convo_step(c, &ev, all);
        fb_free(id);
        if (rc)
            return rc;
    }
    c->clock = target;
    return 0;
}

/* The plain text of every `say` effect, joined by newlines, into `out`. */
static void said_text(json_t *effects, fb_buf_t *out)
{
    size_t i;
    json_t *e;
    json_array_foreach(effects, i, e)
    {
        if (fb_effect_type(e) != FB_EFFECT_SAY)
            continue;
        if (out->len)
            fb_buf_puts(out, "\n");
        fb_buf_puts(out, str_or(json_string_value(json_object_get(e, "text")), ""));
    }
}

static void human_duration(long long secs, char *out, size_t cap)
{
    if (secs % 604800 == 0 && secs >= 604800)
        snprintf(out, cap, "%lld semaine(s)", secs / 604800);
    else if (secs % 86400 == 0 && secs >= 86400)
        snprintf(out, cap, "%lld jour(s)", secs / 86400);
    else if (secs % 3600 == 0 && secs >= 3600)
        snprintf(out, cap, "%lld heure(s)", secs / 3600);
    else
        snprintf(out, cap, "%lld seconde(s)", secs);
}

/* Prints the effects other than `say` as notes for the author. */
static void print_notes(json_t *effects, FILE *out)
{
    size_t i;
    json_t *e;
    json_array_foreach(effects, i, e)
    {
        switch (fb_effect_type(e)) {
        case FB_EFFECT_SAY:
            break;
        case FB_EFFECT_SCHEDULE: {
            char d[64];
            human_duration((long long)json_integer_value(json_object_get(e, "after")), d,
                           sizeof(d));
            fprintf(out, "  [relance « %s » programmée dans %s]\n",
                    str_or(json_string_value(json_object_get(e, "id")), "?"), d);
            break;
        }
        case FB_EFFECT_CANCEL: {
            const char *id = json_string_value(json_object_get(e, "id"));
            fprintf(out, "  [relance%s%s annulée]\n", id ? " " : "s", id ? id : "");
            break;
        }
        case FB_EFFECT_ESCALATE:
            fprintf(out, "  [transmis à un conseiller : %s]\n",
                    str_or(json_string_value(json_object_get(e, "reason")), "?"));
            break;
        case FB_EFFECT_STEP:
            fprintf(out, "  [étape %s : %s]\n",
                    str_or(json_string_value(json_object_get(e, "item")), "?"),
                    str_or(json_string_value(json_object_get(e, "status")), "?"));
            break;
        case FB_EFFECT_STAT:
            fprintf(out, "  [statistique : %s]\n",
                    str_or(json_string_value(json_object_get(e, "name")), "?"));
            break;
        case FB_EFFECT_FORGET:
            fputs("  [données de l'utilisateur effacées]\n", out);
            break;
        case FB_EFFECT_END:
            fputs("  [fin du parcours guidé]\n", out);
            break;
        case FB_EFFECT_AVIS: {
            const char *c = json_string_value(json_object_get(e, "commentaire"));
            fprintf(out, "  [avis : note %lld%s%s%s]\n",
                    (long long)json_integer_value(json_object_get(e, "note")),
                    c ? ", commentaire « " : "", c ? c : "", c ? " »" : "");
            break;
        }
        case FB_EFFECT_UNKNOWN: {
            const char *type = json_string_value(json_object_get(e, "type"));
            if (type)
                fprintf(out, "  [effet %s]\n", type);
            break;
        }
        }
    }
}

/* ---- chat ---- */

static void chat_print(json_t *effects, FILE *out)
{
    fb_buf_t said;
    fb_buf_init(&said, 1u << 20);
    said_text(effects, &said);
    if (said.len)
        fprintf(out, "%s\n", said.data);
    print_notes(effects, out);
    fb_buf_free(&said);
    fflush(out);
}

int fb_cmd_chat(int argc, char **argv, FILE *in, FILE *out, FILE *err)
{
    const char *file = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs("usage: frichebot chat FILE\n"
                  "\n"
                  "Talk to a dialog in the terminal: no Redis, no network, the session lives in\n"
                  "memory. Reads one message per line on standard input (a pipe works too).\n"
                  "Effects other than messages are shown as [notes]. Tool commands:\n"
                  "  /avance DURÉE   move the clock forward (\"/avance 6 semaines\"), firing "
                  "reminders\n"
                  "  /choix ID       pick an option by its id, as a button would\n"
                  "  /reprise        an advisor hands the conversation back\n"
                  "  /session        show the session as stored (JSON)\n"
                  "  /quitter        leave (end of input does too)\n",
                  out);
            return 0;
        }
        if (argv[i][0] == '-') {
            fprintf(err, "frichebot: chat: unknown option '%s'\nTry 'frichebot --help'.\n",
                    argv[i]);
            return 2;
        }
        if (file) {
            fprintf(err, "frichebot: chat: one file only\nTry 'frichebot --help'.\n");
            return 2;
        }
        file = argv[i];
    }
    if (!file) {
        fputs("usage: frichebot chat FILE\n", err);
        return 2;
    }
    fb_geo_t *geo = fb__authoring_load_geo(err);
    fb_buf_t errors;
    fb_buf_init(&errors, 1u << 20);
    fb_dialog_t *d = fb_dialog_load(file, geo, &errors);
    if (!d) {
        fputs(fb_buf_str(&errors), err);
        fb_buf_free(&errors);
        fb_geo_free(geo);
        return 1;
    }
    fb_buf_free(&errors);

    struct convo c;
    convo_init(&c, d, geo, (long long)fb_wall_s());
    int status = 0;
    json_t *effects = json_array();
    fb_event_t start = {.kind = FB_EVENT_START};
    if (convo_step(&c, &start, effects) == 0)
        chat_print(effects, out);
    json_decref(effects);

    char line[8192];
    while (fgets(line, sizeof(line), in)) {
        line[strcspn(line, "\r\n")] = '\0';
        effects = json_array();
        int rc = 0;
        if (strcmp(line, "/quitter") == 0) {
            json_decref(effects);
            break;
        } else if (strcmp(line, "/session") == 0) {
            char *s = c.session ? json_dumps(c.session, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
            fprintf(out, "%s\n", s ? s : "null");
            free(s); /* fb-lint: allow free (jansson's allocation) */
        } else if (strncmp(line, "/avance ", 8) == 0) {
            long long secs;
            if (fb_text_duration(line + 8, &secs))
                fprintf(out, "  [durée incomprise : « %s » (exemple : 6 semaines)]\n", line + 8);
            else
                rc = convo_advance(&c, secs, effects);
        } else if (strncmp(line, "/choix ", 7) == 0) {
            fb_event_t ev = {.kind = FB_EVENT_CHOICE, .choice = line + 7};
            rc = convo_step(&c, &ev, effects);
        } else if (strcmp(line, "/reprise") == 0) {
            fb_event_t ev = {.kind = FB_EVENT_HANDBACK};
            rc = convo_step(&c, &ev, effects);
        } else {
            fb_event_t ev = {.kind = FB_EVENT_MESSAGE, .text = line};
            rc = convo_step(&c, &ev, effects);
        }
        if (rc) {
            fprintf(err, "frichebot: erreur du moteur : %s\n", fb_strerror(rc));
            status = 1;
        }
        chat_print(effects, out);
        json_decref(effects);
    }
    convo_free(&c);
    fb_dialog_unref(d);
    fb_geo_free(geo);
    return status;
}

/* ---- test: golden transcripts ---- */

struct tctx {
    const char *file;
    json_t *lines;
    FILE *out;
    int turn;          /* 1-based */
    const char *event; /* short description of the turn's event, for messages */
    int failures;      /* in this turn */
};

static void tfail(struct tctx *t, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Reports one failed expectation of a turn: "FILE:LINE: tour N (EVENT) : message". */
static void tfail(struct tctx *t, const char *path, const char *fmt, ...)
{
    va_list ap;
    fprintf(t->out, "%s:%d: tour %d (%s) : ", t->file, fb_yaml_line(t->lines, path), t->turn,
            t->event);
    va_start(ap, fmt);
    vfprintf(t->out, fmt, ap);
    va_end(ap);
    fputc('\n', t->out);
    t->failures++;
}

/* A shortened, single-line copy of `s` for messages. */
static void excerpt(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    for (; *s && o + 4 < cap; s++)
        out[o++] = (*s == '\n') ? '/' : *s;
    if (*s && o + 4 >= cap) {
        out[o++] = '.';
        out[o++] = '.';
        out[o++] = '.';
    }
    out[o] = '\0';
}

/* A string, or each string of an array, in `v`; calls `fn` for each. */
static void each_string(json_t *v,
                        void (*fn)(struct tctx *, const char *, const char *, const char *,
                                   const char *),
                        struct tctx *t, const char *path, const char *key, const char *said)
{
    if (json_is_string(v)) {
        fn(t, path, key, json_string_value(v), said);
        return;
    }
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        char *p = fb_asprintf("%s/%zu", path, i);
        if (json_is_string(e))
            fn(t, p, key, json_string_value(e), said);
        else
            tfail(t, p, "« %s » attend du texte", key);
        fb_free(p);
    }
}

static void check_text(struct tctx *t, const char *path, const char *key, const char *want,
                       const char *said)
{
    char ex[200];
    excerpt(said, ex, sizeof(ex));
    if (strcmp(key, "contient") == 0) {
        if (!strstr(said, want))
            tfail(t, path, "le bot devait dire « %s », il a dit « %s »", want, ex);
    } else if (strcmp(key, "absent") == 0) {
        if (strstr(said, want))
            tfail(t, path, "le bot ne devait pas dire « %s », il a dit « %s »", want, ex);
    } else if (strcmp(key, "exact") == 0) {
        if (strcmp(said, want) != 0)
            tfail(t, path, "le bot devait dire exactement « %s », il a dit « %s »", want, ex);
    } else if (strcmp(key, "regex") == 0) {
        regex_t re;
        if (regcomp(&re, want, REG_EXTENDED | REG_NOSUB) != 0) {
            tfail(t, path, "expression régulière invalide : %s", want);
            return;
        }
        if (regexec(&re, said, 0, NULL, 0) != 0)
            tfail(t, path, "le bot devait dire un texte conforme à /%s/, il a dit « %s »", want,
                  ex);
        regfree(&re);
    }
}

/* True when every member of `want` is found, equal, in `have` (objects recursively). */
static bool json_subset(json_t *want, json_t *have)
{
    if (json_is_object(want)) {
        if (!json_is_object(have))
            return false;
        const char *k;
        json_t *v;
        json_object_foreach(want, k, v)
        {
            if (!json_subset(v, json_object_get(have, k)))
                return false;
        }
        return true;
    }
    if (json_is_number(want) && json_is_number(have))
        return json_number_value(want) == json_number_value(have);
    return json_equal(want, have);
}

/* The effect object that transcript shorthand `v`, under the key of effect `t`, stands for:
 * {relance: "6 semaines"} -> {type: schedule, after: 3628800}; {escalade: demande};
 * {annule: true|ID}; {oubli: true}; {fin: true}; {etape: {item, statut}}; {stat: NAME}.
 * `e` is the whole expected object (borrowed). Returns a new reference, or NULL when not
 * understood. */
static json_t *expected_shorthand(fb_effect_t t, json_t *e, json_t *v)
{
    json_t *o = fb_effect_new(t);
    switch (t) {
    case FB_EFFECT_SCHEDULE: {
        long long secs;
        if (json_is_string(v)) {
            if (fb_text_duration(json_string_value(v), &secs)) {
                json_decref(o);
                return NULL;
            }
            json_object_set_new(o, "after", json_integer(secs));
        }
        json_t *id = json_object_get(e, "id");
        if (id)
            json_object_set(o, "id", id);
        break;
    }
    case FB_EFFECT_ESCALATE:
        if (json_is_string(v))
            json_object_set(o, "reason", v);
        break;
    case FB_EFFECT_CANCEL:
        if (json_is_string(v))
            json_object_set(o, "id", v);
        break;
    case FB_EFFECT_STAT:
        json_object_set(o, "name", v);
        break;
    case FB_EFFECT_STEP: {
        json_t *item = json_object_get(v, "item"), *st = json_object_get(v, "statut");
        if (item)
            json_object_set(o, "item", item);
        if (st)
            json_object_set(o, "status", st);
        break;
    }
    case FB_EFFECT_FORGET:
    case FB_EFFECT_END:
        break;
    case FB_EFFECT_SAY:
    case FB_EFFECT_AVIS:
    case FB_EFFECT_UNKNOWN:
        json_decref(o);
        return NULL; /* no shorthand: written {type: NAME} */
    }
    return o;
}

/* Turns an expected effect written for authors into the effect object it stands for: a
 * shorthand (the transcript keys of FB_EFFECTS, tried in the list's order, see
 * expected_shorthand()), or an object with a `type` among FB_EFFECTS, taken as is. Returns a new
 * reference, or NULL when not understood (an unknown `type` included). */
static json_t *expected_effect(json_t *e)
{
    json_t *type = json_object_get(e, "type");
    if (type)
        return fb_effect_type(e) != FB_EFFECT_UNKNOWN ? json_incref(e) : NULL;
    for (int i = 0; i < FB_EFFECT_COUNT; i++) {
        const char *key = fb_effect_key((fb_effect_t)i);
        json_t *v = key ? json_object_get(e, key) : NULL;
        if (v)
            return expected_shorthand((fb_effect_t)i, e, v);
    }
    return NULL;
}

/* The text checks of `want` (the turn's `bot:` or `page:`, under key `key`): a string (contained),
 * or an object with contient, absent, exact, regex (against `text`), html, html_absent (against
 * `html`). */
static void check_texts(struct tctx *t, json_t *want, const char *tpath, const char *key,
                        const char *text, const char *html)
{
    char *path;
    if (json_is_string(want)) {
        path = fb_asprintf("%s/%s", tpath, key);
        check_text(t, path, "contient", json_string_value(want), text);
        fb_free(path);
        return;
    }
    if (!json_is_object(want))
        return;
    static const char *const keys[] = {"contient", "absent", "exact", "regex"};
    for (size_t k = 0; k < FB_ARRAY_SIZE(keys); k++) {
        json_t *v = json_object_get(want, keys[k]);
        if (!v)
            continue;
        path = fb_asprintf("%s/%s/%s", tpath, key, keys[k]);
        each_string(v, check_text, t, path, keys[k], text);
        fb_free(path);
    }
    json_t *hv = json_object_get(want, "html");
    if (hv) {
        path = fb_asprintf("%s/%s/html", tpath, key);
        each_string(hv, check_text, t, path, "contient", html);
        fb_free(path);
    }
    json_t *hv_not = json_object_get(want, "html_absent");
    if (hv_not) {
        path = fb_asprintf("%s/%s/html_absent", tpath, key);
        each_string(hv_not, check_text, t, path, "absent", html);
        fb_free(path);
    }
}

/* Checks the turn's `page:` (same keys as `bot:`) against the roadmap page of the session after
 * the turn (fb_engine_render_page(): what GET /feuille-de-route/TOKEN shows). */
static void check_page(struct tctx *t, json_t *turn, const char *tpath, const struct convo *c)
{
    json_t *want = json_object_get(turn, "page");
    if (!want)
        return;
    fb_buf_t plain, html;
    fb_buf_init(&plain, 1u << 20);
    fb_buf_init(&html, 1u << 20);
    int rc = fb_engine_render_page(c->dialog, c->session, &c->env, &plain, &html);
    if (rc) {
        char *path = fb_asprintf("%s/page", tpath);
        tfail(t, path, "pas de page de feuille de route : %s", fb_strerror(rc));
        fb_free(path);
    } else {
        check_texts(t, want, tpath, "page", fb_buf_str(&plain), fb_buf_str(&html));
    }
    fb_buf_free(&plain);
    fb_buf_free(&html);
}

/* Checks what the bot said in a turn (`bot:`, `silence:`) against the `say` effects. */
static void check_said(struct tctx *t, json_t *turn, const char *tpath, json_t *effects)
{
    char *path;
    fb_buf_t said;
    fb_buf_init(&said, 1u << 20);
    said_text(effects, &said);
    const char *text = fb_buf_str(&said);

    fb_buf_t html;
    fb_buf_init(&html, 1u << 20);
    {
        size_t k;
        json_t *e;
        json_array_foreach(effects, k, e)
        {
            const char *h = json_string_value(json_object_get(e, "html"));
            if (h) {
                if (html.len)
                    fb_buf_puts(&html, "\n");
                fb_buf_puts(&html, h);
            }
        }
    }
    json_t *bot = json_object_get(turn, "bot");
    check_texts(t, bot, tpath, "bot", text, fb_buf_str(&html));
    if (json_is_object(bot)) {
        json_t *choices = json_object_get(bot, "choix");
        if (choices) {
            /* The labels offered by the last message with choices, in order. */
            json_t *got = json_array();
            size_t i;
            json_t *e;
            json_array_foreach(effects, i, e)
            {
                json_t *ch = json_object_get(e, "choices");
                if (!ch)
                    continue;
                json_array_clear(got);
                size_t j;
                json_t *c;
                json_array_foreach(ch, j, c) json_array_append(got, json_object_get(c, "label"));
            }
            if (!json_equal(got, choices)) {
                char *g = json_dumps(got, JSON_COMPACT | JSON_ENSURE_ASCII);
                char *w = json_dumps(choices, JSON_COMPACT | JSON_ENSURE_ASCII);
                path = fb_asprintf("%s/bot/choix", tpath);
                tfail(t, path, "choix attendus %s, proposés %s", w ? w : "?", g ? g : "?");
                fb_free(path);
                free(g); /* fb-lint: allow free (jansson's allocation) */
                free(w); /* fb-lint: allow free (jansson's allocation) */
            }
            json_decref(got);
        }
    }
    if (json_is_true(json_object_get(turn, "silence")) && said.len) {
        char ex[200];
        excerpt(text, ex, sizeof(ex));
        path = fb_asprintf("%s/silence", tpath);
        tfail(t, path, "le bot devait se taire, il a dit « %s »", ex);
        fb_free(path);
    }
    fb_buf_free(&said);
    fb_buf_free(&html);
}

/* Checks the turn's `reponses:` against the session's answers. */
static void check_answers(struct tctx *t, json_t *turn, const char *tpath, json_t *session)
{
    char *path;
    json_t *answers = json_object_get(session, "a");
    json_t *want_answers = json_object_get(turn, "reponses");
    const char *slot;
    json_t *want;
    json_object_foreach(want_answers, slot, want)
    {
        json_t *have = json_object_get(answers, slot);
        if (!json_subset(want, have)) {
            char *w = json_dumps(want, JSON_COMPACT | JSON_ENCODE_ANY);
            char *h = have ? json_dumps(have, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
            path = fb_asprintf("%s/reponses/%s", tpath, slot);
            tfail(t, path, "réponse « %s » attendue %s, enregistrée %s", slot, w ? w : "?",
                  h ? h : "(aucune)");
            fb_free(path);
            free(w); /* fb-lint: allow free (jansson's allocation) */
            free(h); /* fb-lint: allow free (jansson's allocation) */
        }
    }
}

/* Checks the turn's `tags:` and `sans_tags:` against the session's tags. */
static void check_tags(struct tctx *t, json_t *turn, const char *tpath, json_t *session)
{
    char *path;
    json_t *tags = json_object_get(session, "t");
    static const char *const tag_keys[] = {"tags", "sans_tags"};
    for (int k = 0; k < 2; k++) {
        json_t *list = json_object_get(turn, tag_keys[k]);
        size_t i;
        json_t *tag;
        json_array_foreach(list, i, tag)
        {
            bool present = false;
            size_t j;
            json_t *have;
            json_array_foreach(tags, j, have) present |= json_equal(have, tag);
            if (present != (k == 0)) {
                path = fb_asprintf("%s/%s/%zu", tpath, tag_keys[k], i);
                tfail(t, path, "le signal « %s » devrait être %s",
                      str_or(json_string_value(tag), "?"), k == 0 ? "émis" : "absent");
                fb_free(path);
            }
        }
    }
}

/* Checks the turn's `effets:` (each must be found) and `sans_effets:` (none may be). */
static void check_effects(struct tctx *t, json_t *turn, const char *tpath, json_t *effects)
{
    char *path;
    json_t *want_effects = json_object_get(turn, "effets");
    size_t i;
    json_t *we;
    json_array_foreach(want_effects, i, we)
    {
        path = fb_asprintf("%s/effets/%zu", tpath, i);
        json_t *exp = expected_effect(we);
        if (!exp) {
            tfail(t, path,
                  "effet attendu incompris (relance, escalade, annule, oubli, fin, "
                  "etape, stat, ou un objet avec type)");
        } else {
            bool found = false;
            size_t j;
            json_t *e;
            json_array_foreach(effects, j, e) found |= json_subset(exp, e);
            if (!found) {
                char *w = json_dumps(exp, JSON_COMPACT | JSON_ENSURE_ASCII);
                char *g = json_dumps(effects, JSON_COMPACT | JSON_ENSURE_ASCII);
                char ex[300];
                excerpt(g ? g : "?", ex, sizeof(ex));
                tfail(t, path, "effet attendu %s absent ; effets : %s", w ? w : "?", ex);
                free(w); /* fb-lint: allow free (jansson's allocation) */
                free(g); /* fb-lint: allow free (jansson's allocation) */
            }
            json_decref(exp);
        }
        fb_free(path);
    }
    json_t *unwanted = json_object_get(turn, "sans_effets");
    json_array_foreach(unwanted, i, we)
    {
        path = fb_asprintf("%s/sans_effets/%zu", tpath, i);
        json_t *exp = expected_effect(we);
        if (!exp) {
            tfail(t, path,
                  "effet incompris (relance, escalade, annule, oubli, fin, etape, stat, ou un "
                  "objet avec type)");
        } else {
            size_t j;
            json_t *e;
            json_array_foreach(effects, j, e)
            {
                if (!json_subset(exp, e))
                    continue;
                char *g = json_dumps(e, JSON_COMPACT | JSON_ENSURE_ASCII);
                tfail(t, path, "effet inattendu %s", g ? g : "?");
                free(g); /* fb-lint: allow free (jansson's allocation) */
                break;
            }
            json_decref(exp);
        }
        fb_free(path);
    }
}

/* Checks one turn's expectations against what the engine did: `effects` and `session` after it. */
static void check_turn(struct tctx *t, json_t *turn, const char *tpath, json_t *effects,
                       json_t *session)
{
    char *path;
    check_said(t, turn, tpath, effects);
    check_answers(t, turn, tpath, session);
    check_tags(t, turn, tpath, session);
    check_effects(t, turn, tpath, effects);
    if (json_is_true(json_object_get(turn, "session_nulle")) && session && !json_is_null(session)) {
        path = fb_asprintf("%s/session_nulle", tpath);
        tfail(t, path, "la session devait être effacée");
        fb_free(path);
    }
}

/* ---- test --markdown: the conversation as a person reads it ---- */

/* Writes `text` (the bot's plain text) as a Markdown quote: "• " bullets become list items, every
 * other line its own paragraph, so that line breaks survive. */
static void md_quote(FILE *md, const char *text)
{
    const char *p = text;
    bool first = true;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        if (n > 0) {
            static const char bullet[] = "\xe2\x80\xa2 "; /* "• " */
            bool item = n >= sizeof(bullet) - 1 && memcmp(p, bullet, sizeof(bullet) - 1) == 0;
            size_t digits = 0;
            while (digits < n && p[digits] >= '0' && p[digits] <= '9')
                digits++;
            bool numbered =
                digits > 0 && digits + 1 < n && p[digits] == '.' && p[digits + 1] == ' ';
            if (!first && !item && !numbered)
                fputs(">\n", md);
            if (item)
                fprintf(md, "> - %.*s\n", (int)(n - (sizeof(bullet) - 1)), p + sizeof(bullet) - 1);
            else
                fprintf(md, "> %.*s\n", (int)n, p);
            first = false;
        }
        p += n;
        if (*p == '\n')
            p++;
    }
    fputc('\n', md);
}

/* The label of option `id` among the choices offered by the last message of `effects`, or NULL. */
static const char *choice_label(json_t *effects, const char *id)
{
    const char *label = NULL;
    size_t i;
    json_t *e;
    json_array_foreach(effects, i, e)
    {
        size_t j;
        json_t *c;
        json_array_foreach(json_object_get(e, "choices"), j, c)
        {
            const char *cid = json_string_value(json_object_get(c, "id"));
            if (cid && strcmp(cid, id) == 0)
                label = json_string_value(json_object_get(c, "label"));
        }
    }
    return label;
}

/* One turn in Markdown: what the user did, then what the bot said. */
static void md_turn(FILE *md, json_t *turn, json_t *prev_effects, json_t *effects)
{
    json_t *v;
    if ((v = json_object_get(turn, "dit")) && json_is_string(v)) {
        fprintf(md, "**Vous** : %s\n\n", json_string_value(v));
    } else if ((v = json_object_get(turn, "choisit")) && json_is_string(v)) {
        const char *label = choice_label(prev_effects, json_string_value(v));
        fprintf(md, "**Vous** (bouton) : %s\n\n", label ? label : json_string_value(v));
    } else if ((v = json_object_get(turn, "avance")) && json_is_string(v)) {
        fprintf(md, "*(%s plus tard)*\n\n", json_string_value(v));
    } else if (json_object_get(turn, "reprise")) {
        fputs("*(le conseiller rend la main au bot)*\n\n", md);
    }
    size_t i;
    json_t *e;
    json_array_foreach(effects, i, e)
    {
        switch (fb_effect_type(e)) {
        case FB_EFFECT_SAY:
            fputs("**frichebot** :\n\n", md);
            md_quote(md, str_or(json_string_value(json_object_get(e, "text")), ""));
            break;
        case FB_EFFECT_ESCALATE:
            fputs("*(la conversation est transmise à un conseiller)*\n\n", md);
            break;
        case FB_EFFECT_SCHEDULE:
        case FB_EFFECT_CANCEL:
        case FB_EFFECT_STEP:
        case FB_EFFECT_STAT:
        case FB_EFFECT_FORGET:
        case FB_EFFECT_END:
        case FB_EFFECT_AVIS:
        case FB_EFFECT_UNKNOWN:
            break;
        }
    }
}

/* Runs one transcript file. Returns 0 when every turn passed, 1 otherwise. `md` (may be NULL)
 * receives the conversation in Markdown; `*questions` the number of questions the user answered
 * (the answered-questions path of the last session). */
static int run_transcript(const char *file, const fb_geo_t *geo, FILE *out, FILE *md,
                          size_t *questions)
{
    size_t len;
    char *text = read_file(file, &len, out);
    if (!text)
        return 1;
    char errbuf[512];
    json_t *lines = NULL;
    json_t *doc = fb_yaml_to_json(text, len, &lines, errbuf, sizeof(errbuf));
    fb_free(text);
    int failed = 0;
    fb_dialog_t *d = NULL;
    struct convo c;
    bool have_convo = false;
    if (!doc) {
        fprintf(out, "%s:%s\n", file, errbuf);
        return 1;
    }
    const char *dialog = json_string_value(json_object_get(doc, "dialogue"));
    json_t *turns = json_object_get(doc, "tours");
    if (!dialog || !json_is_array(turns)) {
        fprintf(out, "%s:1: un transcript a besoin de « dialogue: FICHIER » et de « tours: »\n",
                file);
        failed = 1;
        goto done;
    }
    /* The dialog path is relative to the transcript's directory. */
    char *dpath;
    const char *slash = strrchr(file, '/');
    if (dialog[0] == '/' || !slash)
        dpath = fb_strdup(dialog);
    else
        dpath = fb_asprintf("%.*s/%s", (int)(slash - file), file, dialog);
    fb_buf_t errors;
    fb_buf_init(&errors, 1u << 20);
    d = fb_dialog_load(dpath, geo, &errors);
    fb_free(dpath);
    if (!d) {
        fprintf(out, "%s:%d: le dialogue ne se charge pas :\n%s", file,
                fb_yaml_line(lines, "/dialogue"), fb_buf_str(&errors));
        fb_buf_free(&errors);
        failed = 1;
        goto done;
    }
    fb_buf_free(&errors);

    long long now = 1795856400; /* 2026-11-28T09:00:00Z: a Saturday morning, as good as any */
    const char *clock = json_string_value(json_object_get(doc, "horloge"));
    if (clock && fb_replay_parse_clock(clock, &now)) {
        fprintf(out, "%s:%d: horloge invalide « %s » (exemple : 2026-11-30T09:00:00Z)\n", file,
                fb_yaml_line(lines, "/horloge"), clock);
        failed = 1;
        goto done;
    }
    convo_init(&c, d, geo, now);
    have_convo = true;
    if (read_advisors(&c, doc, geo, lines, file, out) != 0 ||
        read_platform(&c, doc, lines, file, out) != 0) {
        failed = 1;
        goto done;
    }
    /* `lien_feuille_de_route:` the page's address the daemon would give (server.public_url and
     * a token); absent: none, as a daemon without server.public_url outside the web chat */
    c.env.roadmap_url = json_string_value(json_object_get(doc, "lien_feuille_de_route"));
    if (md) {
        const char *title = json_string_value(json_object_get(doc, "transcript"));
        fprintf(md, "## %s\n\n", title ? title : file);
        fprintf(md, "*Source : `%s`.*\n\n", file);
    }
    json_t *prev_effects = json_array();

    size_t i;
    json_t *turn;
    json_array_foreach(turns, i, turn)
    {
        char tpath[64];
        snprintf(tpath, sizeof(tpath), "/tours/%zu", i);
        struct tctx t = {.file = file, .lines = lines, .out = out, .turn = (int)i + 1};
        json_t *effects = json_array();
        fb_event_t ev = {.kind = FB_EVENT_START};
        char desc[160];
        json_t *v;
        int rc = 0;
        if (!json_is_object(turn)) {
            t.event = "?";
            tfail(&t, tpath, "un tour est un objet (dit:, choisit:, avance:, bot:...)");
            json_decref(effects);
            failed = 1;
            continue;
        }
        if ((v = json_object_get(turn, "dit"))) {
            ev.kind = FB_EVENT_MESSAGE;
            ev.text = json_is_string(v) ? json_string_value(v) : "";
            char ex[120];
            excerpt(ev.text, ex, sizeof(ex));
            snprintf(desc, sizeof(desc), "dit « %s »", ex);
        } else if ((v = json_object_get(turn, "choisit"))) {
            ev.kind = FB_EVENT_CHOICE;
            ev.choice = json_is_string(v) ? json_string_value(v) : "";
            snprintf(desc, sizeof(desc), "choisit %s", ev.choice);
        } else if ((v = json_object_get(turn, "avance"))) {
            snprintf(desc, sizeof(desc), "avance %s", str_or(json_string_value(v), "?"));
        } else if (json_object_get(turn, "reprise")) {
            ev.kind = FB_EVENT_HANDBACK;
            snprintf(desc, sizeof(desc), "reprise par le bot");
        } else if (json_object_get(turn, "oubli")) {
            ev.kind = FB_EVENT_FORGET;
            snprintf(desc, sizeof(desc), "oubli demandé");
        } else {
            snprintf(desc, sizeof(desc), "début");
        }
        t.event = desc;
        if (json_object_get(turn, "avance")) {
            long long secs;
            char *p = fb_asprintf("%s/avance", tpath);
            if (!json_is_string(v) || fb_text_duration(json_string_value(v), &secs)) {
                tfail(&t, p, "durée incomprise (exemple : 6 semaines)");
            } else {
                rc = convo_advance(&c, secs, effects);
            }
            fb_free(p);
        } else {
            rc = convo_step(&c, &ev, effects);
        }
        if (rc)
            tfail(&t, tpath, "le moteur a échoué : %s", fb_strerror(rc));
        else
            check_turn(&t, turn, tpath, effects, c.session);
        if (!rc)
            check_page(&t, turn, tpath, &c);
        if (md)
            md_turn(md, turn, prev_effects, effects);
        json_decref(prev_effects);
        prev_effects = effects;
        if (t.failures)
            failed = 1;
    }
    json_decref(prev_effects);
    if (questions)
        *questions = json_array_size(json_object_get(c.session, "p"));
done:
    if (have_convo)
        convo_free(&c);
    if (d)
        fb_dialog_unref(d);
    json_decref(doc);
    json_decref(lines);
    return failed;
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

int fb_cmd_test(int argc, char **argv, FILE *out, FILE *err)
{
    static const char help[] =
        "usage: frichebot test [--stats] [--markdown] PATH...\n"
        "\n"
        "Runs golden transcripts (YAML, see docs/dialogs.md) on a virtual clock: user turns,\n"
        "expected bot text, choices, answers, signals and effects. Prints one line per\n"
        "failed expectation, FILE:LINE, and ends with \"N passed, N failed\" (transcripts).\n"
        "--stats also prints, per transcript, the number of questions the user answered\n"
        "(at the end of the conversation) and their median.\n"
        "--markdown writes the conversations as a person reads them, in Markdown, to the\n"
        "standard output; failures and the summary then go to the standard error.\n"
        "Exit status: 0 when every transcript passed.\n";
    bool stats = false, markdown = false;
    char **args = fb_calloc((size_t)argc + 1, sizeof(char *));
    int nargs = 0;
    for (int i = 0; i < argc; i++) {
        if (i > 0 && strcmp(argv[i], "--stats") == 0)
            stats = true;
        else if (i > 0 && strcmp(argv[i], "--markdown") == 0)
            markdown = true;
        else
            args[nargs++] = argv[i];
    }
    char *files[MAX_FILES];
    int n = 0;
    int status = paths_command(nargs, args, "test", help, files, &n, out, err);
    fb_free(args);
    if (status >= 0)
        return status;
    FILE *report = markdown ? err : out;
    fb_geo_t *geo = fb__authoring_load_geo(err);
    int passed = 0, failed = 0;
    size_t *counts = fb_calloc((size_t)n + 1, sizeof(size_t));
    if (markdown)
        fputs("# Exemples de conversations\n\n"
              "Ce fichier est généré par `make exemples` à partir des conversations de test de\n"
              "`tests/transcripts/` : ne le modifiez pas à la main. Chaque message du bot est\n"
              "exactement celui que le moteur produit pour ces réponses.\n\n",
              out);
    for (int i = 0; i < n; i++) {
        if (run_transcript(files[i], geo, report, markdown ? out : NULL, &counts[i]) == 0) {
            passed++;
        } else {
            failed++;
            fprintf(report, "ÉCHEC %s\n", files[i]);
        }
        if (stats)
            fprintf(report, "%s : %zu question(s) répondue(s)\n", files[i], counts[i]);
        fb_free(files[i]);
    }
    if (stats && n > 0) {
        qsort(counts, (size_t)n, sizeof(size_t), cmp_size);
        size_t mid = (size_t)n / 2;
        size_t lo = counts[n % 2 ? mid : mid - 1], hi = counts[mid];
        double median = ((double)lo + (double)hi) / 2.0;
        fprintf(report, "médiane : %g question(s) sur %d transcript(s)\n", median, n);
    }
    fb_free(counts);
    fb_geo_free(geo);
    fprintf(report, "%d passed, %d failed\n", passed, failed);
    return (failed || n == 0) ? 1 : 0;
}
