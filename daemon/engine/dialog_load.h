/* SPDX-License-Identifier: MIT */
/*
 * dialog_load.h - private to the dialog loader (dialog_*.c): the state of one load, and the
 * helpers its files share. Nothing outside daemon/engine/dialog*.c includes it.
 *
 * The loader loads a dialog file and its catalogues (libyaml), validates all of it, and compiles it
 * into the immutable graph of engine/internal.h. Dialog files are written by French domain experts
 * who are not developers, so every message of the loader is in French, points at FILE:LINE:COL,
 * and says what to write instead. Loading never stops at the first problem: a YAML syntax error
 * ends the parse of that file, but every other problem is collected (up to MAX_ERRORS, in
 * common/diag.c), sorted by position and written out together.
 *
 * The loader reads the file twice in memory: a first pass collects the declarations (state ids,
 * slots and their types, tags emitted by answers, catalogue items), so that the second pass can
 * check every reference while it compiles states, expressions and templates. Graph checks
 * (unknown targets, unreachable states, states with no way out) come last.
 *
 * Files: dialog_yaml.c (errors, YAML helpers, files, YAML documents), dialog_expr.c (expressions
 * and templates), dialog_states.c (pass 1: declarations; pass 2: states), dialog_catalogue.c
 * (catalogues, rules, migrations), dialog_load.c (graph checks, the whole file), dialog.c (the
 * model's tables, the public API, DOT).
 */
#ifndef FB_ENGINE_DIALOG_LOAD_H
#define FB_ENGINE_DIALOG_LOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <yaml.h>

#include "common/diag.h"
#include "common/yamljson.h"
#include "engine/internal.h"
#include "frichebot/buf.h"

#define MAX_ERRORS          100
#define MAX_FILE_BYTES      (4u << 20) /* a dialog or catalogue file larger than this is refused */
#define MAX_CHOICES         40
#define MAX_TEXT_BYTES      (64u << 10) /* longest rendered message */
#define DEFAULT_FAILS       3
#define DEFAULT_RELANCE_MAX 3

/* One load: the dialog being built and the errors so far. */
struct ld {
    fb_dialog_t *d;
    const char *dir; /* for catalogue paths, may be NULL */
    char **files;    /* names used in messages; files[0] is the dialog */
    size_t n_files;
    fb_diag_t diag; /* the errors; documents: the indices in `files` */
    uint64_t hash;
    bool in_item_cond; /* compiling a catalogue item's `si:` (no roadmap nor catalogue names) */

    /* the document being walked */
    int file;
    yaml_document_t *doc;
    const char *text;
    size_t len;
    size_t *lines; /* byte offset of each line start */
    size_t n_lines;

    /* declarations of the first pass */
    yaml_node_t *states_node;
    yaml_node_t **state_nodes; /* per state index: its mapping */
    yaml_node_t **state_keys;  /* per state index: its key */
    unsigned char *reached;
    bool has_commune;

    /* strings compared with names (`usage == "usine"`), checked once every question is known */
    struct cmpstr {
        int file;
        int line, col;
        char *name, *str;
    } * cmps;
    size_t n_cmps, cap_cmps;
};

extern const char *const fb__ld_cmd_names[FB__CMD_COUNT];

extern const char *const fb__ld_cmd_default_words[FB__CMD_COUNT][5];

extern const fb_diag_words_t fb__ld_words;

void fb__ld_errat(struct ld *l, long line, long col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

void fb__ld_errn(struct ld *l, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

void fb__ld_flush_errors(struct ld *l, fb_buf_t *out);

void fb__ld_import_errors(struct ld *l, const fb_buf_t *tmp, long line, long col);

char *fb__ld_escaped_name(const char *s);

fb_yaml_shown_t fb__ld_shown_node(const yaml_node_t *n);

yaml_node_t *fb__ld_node(struct ld *l, int index);

bool fb__ld_is_scalar(const yaml_node_t *n);

const char *fb__ld_sval(const yaml_node_t *n);

bool fb__ld_is_null(const yaml_node_t *n);

bool fb__ld_is_text(const yaml_node_t *n);

const char *fb__ld_kind_of(const yaml_node_t *n);

bool fb__ld_key_is(const yaml_node_t *key, const char *name);

yaml_node_item_t *fb__ld_seq_items(const yaml_node_t *n, size_t *count);

bool fb__ld_valid_name(const char *s, size_t len);

bool fb__ld_valid_id(const char *s, size_t len, bool dash);

void fb__ld_content_pos(struct ld *l, const yaml_node_t *n, long *line, long *col, long *line_col);

void fb__ld_map_fields(struct ld *l, const yaml_node_t *map, const char *const *keys, size_t n,
                       yaml_node_t **vals, yaml_node_t **knodes, const char *where);

const char *fb__ld_want_text(struct ld *l, const yaml_node_t *v, const char *what);

bool fb__ld_want_bool(struct ld *l, const yaml_node_t *v, const char *what, bool *out);

bool fb__ld_want_number(struct ld *l, const yaml_node_t *v, const char *what, double *out);

bool fb__ld_want_uint(struct ld *l, const yaml_node_t *v, const char *what, unsigned min,
                      unsigned max, unsigned *out);

bool fb__ld_want_duration(struct ld *l, const yaml_node_t *v, const char *what, long long *out);

bool fb__ld_valid_date(const char *s, size_t len);

int fb__ld_read_file(const char *path, fb_buf_t *out, const char **why);

void fb__ld_hash_bytes(uint64_t *h, const void *p, size_t n);

bool fb__ld_load_doc(struct ld *l, int file, const char *text, size_t len, yaml_document_t *doc,
                     const char *empty_msg);

/* A file the dialog names (a catalogue, a knowledge-base file), read, hashed into the version,
 * registered for messages and parsed as the current document while it is loaded. */
struct fb__ld_side {
    char *full;  /* the path as opened */
    int file;    /* its index in l->files, -1 until read */
    bool parsed; /* `doc` holds a document (delete it) */
    yaml_document_t doc;
    fb_buf_t text;
    int dialog_file; /* what fb__ld_side_close() restores */
    yaml_document_t *saved_doc;
    const char *saved_text;
    size_t saved_len;
    size_t *saved_lines, saved_n_lines;
};

/* Opens `path` (relative to the dialog's folder) for `s`; returns its document's root, or NULL
 * with the error reported: « impossible de lire NOUN« path » : ... », NOUN being `no_dir` when the
 * dialog was not read from a folder and `unreadable` when the file cannot be read (e.g. "le
 * catalogue "), or `empty` for an empty file.
 * `tag` (tag_len bytes) goes into the version hash before the file's bytes. Whatever it returns,
 * call fb__ld_side_close(). */
yaml_node_t *fb__ld_side_open(struct ld *l, struct fb__ld_side *s, const char *path,
                              const yaml_node_t *path_node, const void *tag, size_t tag_len,
                              const char *no_dir, const char *unreadable, const char *empty);
void fb__ld_side_close(struct ld *l, struct fb__ld_side *s);

bool fb__ld_is_builtin(const char *name);

int fb__ld_catalogue_index(const fb_dialog_t *d, const char *name);

void fb__ld_check_compared_strings(struct ld *l);

fb_expr_t *fb__ld_compile_expr(struct ld *l, const yaml_node_t *v, const char *what,
                               char **src_out);

void fb__ld_prerender(struct fb__text *t);

bool fb__ld_compile_text(struct ld *l, const yaml_node_t *v, const char *what,
                         struct fb__text *out);

void fb__ld_text_free(struct fb__text *t);

/* The question types as written in `type:`, by enum fb__qtype. */
extern const char *const fb__ld_type_names[FB__Q_COMMUNE + 1];

void fb__ld_declare(struct ld *l, yaml_node_t *states);

int fb__ld_want_state(struct ld *l, const yaml_node_t *v, const char *what);

void fb__ld_strings_free(char **s);

void fb__ld_compile_relance(struct ld *l, struct fb__state *st, const yaml_node_t *v,
                            struct fb__relance *r);

void fb__ld_cmdset_free(struct fb__cmdset *c);

void fb__ld_cmd_add_word(struct fb__cmdset *c, int cmd, const char *folded);

void fb__ld_compile_commands(struct ld *l, struct fb__cmdset *c, const yaml_node_t *v);

void fb__ld_compile_state(struct ld *l, size_t i);

void fb__ld_build_choice_tables(struct fb__state *st);

void fb__ld_compile_catalogues(struct ld *l, const yaml_node_t *v);

void fb__ld_compile_rules(struct ld *l, const yaml_node_t *v);

void fb__ld_compile_migrations(struct ld *l, const yaml_node_t *v);

void fb__ld_compile_kb(struct ld *l, const yaml_node_t *v);

void fb__kb_model_free(fb_dialog_t *d);

fb_dialog_t *fb__ld_load(const char *name, const char *dir, const char *text, size_t len,
                         const fb_geo_t *geo, fb_buf_t *errors);

void fb__dialog_free(fb_dialog_t *d);

#endif
