/* SPDX-License-Identifier: MIT */
/*
 * dialog_yaml.c - the dialog loader's base (see dialog_load.h): error collection, YAML node
 * helpers and typed field readers, reading files, and parsing YAML documents with French errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "common/diag.h"
#include "common/yamljson.h"
#include "engine/dialog_load.h"
#include "engine/internal.h"
#include "engine/text.h"
#include "frichebot/alloc.h"
#include "frichebot/err.h"

/* ---- error collection ------------------------------------------------------------------------ */

/* The collector's words (common/diag.h): dialog authors read French. */
const fb_diag_words_t fb__ld_words = {"(message trop long)", "trop d'erreurs pour les afficher",
                                      "trop d'erreurs : arrêt après les ", " premières"};

static void add_errv(struct ld *l, int file, long line, long col, const char *fmt, va_list ap)
    __attribute__((format(printf, 5, 0)));

static void add_errv(struct ld *l, int file, long line, long col, const char *fmt, va_list ap)
{
    fb_diag_addv(&l->diag, l->files[file], file, (unsigned long)line, (unsigned long)col, fmt, ap);
}

/* Records an error at a 1-based position of the current file. */
void fb__ld_errat(struct ld *l, long line, long col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add_errv(l, l->file, line, col, fmt, ap);
    va_end(ap);
}

/* Records an error at the start of node `n` of the current file (1:1 when n is NULL). */
void fb__ld_errn(struct ld *l, const yaml_node_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    long line = n ? (long)n->start_mark.line + 1 : 1;
    long col = n ? (long)n->start_mark.column + 1 : 1;
    add_errv(l, l->file, line, col, fmt, ap);
    va_end(ap);
}

/* Sorts the errors and appends them to `out` (may be NULL); frees them. */
void fb__ld_flush_errors(struct ld *l, fb_buf_t *out)
{
    fb_diag_flush(&l->diag, out, l->files[0]);
}

/*
 * Adds the "LINE:COL: message" lines that expr.c and template.c append to `tmp` as errors of
 * the current file; a line without a position is reported at (line, col).
 */
void fb__ld_import_errors(struct ld *l, const fb_buf_t *tmp, long line, long col)
{
    const char *p = fb_buf_str(tmp);
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        char *end1 = NULL, *end2 = NULL;
        long el = strtol(p, &end1, 10);
        long ec = 0;
        if (end1 && *end1 == ':')
            ec = strtol(end1 + 1, &end2, 10);
        if (end1 != p && end2 && end2 > end1 + 1 && *end2 == ':' && el > 0 && ec > 0) {
            const char *msg = end2 + 1;
            if (*msg == ' ')
                msg++;
            fb__ld_errat(l, el, ec, "%.*s", (int)(n - (size_t)(msg - p)), msg);
        } else if (n > 0) {
            fb__ld_errat(l, line, col, "%.*s", (int)n, p);
        }
        p += n + (nl ? 1 : 0);
    }
}

/* ---- YAML helpers ---------------------------------------------------------------------------- */

/* A file name for messages, control characters written \xNN (new string): a path read from a
 * dialog file can never break an error line. */
char *fb__ld_escaped_name(const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = strlen(s);
    char *out = fb_malloc(4 * n + 1), *o = out;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch < 0x20 || ch == 0x7f) {
            *o++ = '\\';
            *o++ = 'x';
            *o++ = hex[ch >> 4];
            *o++ = hex[ch & 15];
        } else {
            *o++ = (char)ch;
        }
    }
    *o = '\0';
    return out;
}

fb_yaml_shown_t fb__ld_shown_node(const yaml_node_t *n)
{
    return fb_yaml_show((const char *)n->data.scalar.value, n->data.scalar.length);
}

/* Node `index` of the current document (borrowed), or NULL. */
yaml_node_t *fb__ld_node(struct ld *l, int index)
{
    return yaml_document_get_node(l->doc, index);
}

bool fb__ld_is_scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE;
}

const char *fb__ld_sval(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

/* YAML's null: an empty plain scalar, "~" or "null". */
bool fb__ld_is_null(const yaml_node_t *n)
{
    if (!fb__ld_is_scalar(n) || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = fb__ld_sval(n);
    return n->data.scalar.length == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
           strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

/* A scalar holding text with no NUL byte (a quoted "\0" would cut it). */
bool fb__ld_is_text(const yaml_node_t *n)
{
    return fb__ld_is_scalar(n) && !fb__ld_is_null(n) &&
           strlen(fb__ld_sval(n)) == n->data.scalar.length;
}

/* How a node is named in messages: "une liste", "vide"... */
const char *fb__ld_kind_of(const yaml_node_t *n)
{
    if (fb__ld_is_null(n))
        return "vide";
    if (n->type == YAML_SCALAR_NODE)
        return "une valeur simple";
    if (n->type == YAML_SEQUENCE_NODE)
        return "une liste";
    return "une correspondance (clé: valeur)";
}

/* True when scalar `key` is exactly `name`. */
bool fb__ld_key_is(const yaml_node_t *key, const char *name)
{
    size_t n = strlen(name);
    return key->data.scalar.length == n && memcmp(key->data.scalar.value, name, n) == 0;
}

/* Items of a sequence fb__ld_node (count in *n); NULL and 0 for any other node. */
yaml_node_item_t *fb__ld_seq_items(const yaml_node_t *n, size_t *count)
{
    if (!n || n->type != YAML_SEQUENCE_NODE) {
        *count = 0;
        return NULL;
    }
    *count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    return n->data.sequence.items.start;
}

/* [a-z_][a-z0-9_]*, at most 64 bytes: slot, state, catalogue and field names. */
bool fb__ld_valid_name(const char *s, size_t len)
{
    if (len == 0 || len > 64 || !((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return false;
    for (size_t i = 1; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return true;
}

/* [a-z0-9_]+ (and '-' when `dash`), at most 64 bytes: ids of choices, items, tags, dialogs. */
bool fb__ld_valid_id(const char *s, size_t len, bool dash)
{
    if (len == 0 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
              (dash && s[i] == '-')))
            return false;
    return true;
}

/*
 * Where the content of scalar `n` starts in the file (1-based): after the quote of a quoted
 * scalar, on the first non-blank line after the indicator of a block scalar. `*line_col` is the
 * column where the content's following lines start (the block's indentation + 1, else 1).
 */
void fb__ld_content_pos(struct ld *l, const yaml_node_t *n, long *line, long *col, long *line_col)
{
    *line = (long)n->start_mark.line + 1;
    *col = (long)n->start_mark.column + 1;
    *line_col = 1;
    switch (n->data.scalar.style) {
    case YAML_SINGLE_QUOTED_SCALAR_STYLE:
    case YAML_DOUBLE_QUOTED_SCALAR_STYLE:
        (*col)++;
        break;
    case YAML_LITERAL_SCALAR_STYLE:
    case YAML_FOLDED_SCALAR_STYLE:
        for (size_t ln = n->start_mark.line + 1; ln < l->n_lines; ln++) {
            size_t i = l->lines[ln];
            long c = 1;
            while (i < l->len && l->text[i] == ' ') {
                i++;
                c++;
            }
            if (i < l->len && l->text[i] != '\n' && l->text[i] != '\r') {
                *line = (long)ln + 1;
                *col = c;
                *line_col = c;
                break;
            }
        }
        break;
    case YAML_ANY_SCALAR_STYLE:
    case YAML_PLAIN_SCALAR_STYLE:
        break;
    }
}

/*
 * Checks the keys of mapping `map` against `keys` (n of them): reports keys that are not names,
 * unknown keys (with the known list and a close match) and duplicates. Fills vals[i] (and
 * knodes[i] when not NULL) with the value (and key) nodes of the keys present, NULL otherwise.
 * `where` completes messages ("dans l'état « x »"), may be "".
 */
void fb__ld_map_fields(struct ld *l, const yaml_node_t *map, const char *const *keys, size_t n,
                       yaml_node_t **vals, yaml_node_t **knodes, const char *where)
{
    for (size_t i = 0; i < n; i++) {
        vals[i] = NULL;
        if (knodes)
            knodes[i] = NULL;
    }
    if (!map || map->type != YAML_MAPPING_NODE)
        return;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = fb__ld_node(l, p->key), *v = fb__ld_node(l, p->value);
        if (!k || !v)
            continue;
        if (!fb__ld_is_text(k)) {
            fb__ld_errn(l, k, "une clé doit être un nom, pas %s", fb__ld_kind_of(k));
            continue;
        }
        size_t i = 0;
        while (i < n && !fb__ld_key_is(k, keys[i]))
            i++;
        if (i == n) {
            char known[1024]; /* every built-in text name fits */
            size_t o = 0;
            const char *close = NULL;
            unsigned best = 3;
            known[0] = '\0';
            for (size_t j = 0; j < n; j++) {
                int w = snprintf(known + o, sizeof(known) - o, "%s%s", j ? ", " : "", keys[j]);
                if (w > 0 && (size_t)w < sizeof(known) - o)
                    o += (size_t)w;
                unsigned dist = fb_text_distance(fb__ld_sval(k), k->data.scalar.length, keys[j],
                                                 strlen(keys[j]), 2);
                if (dist < best) {
                    best = dist;
                    close = keys[j];
                }
            }
            fb_yaml_shown_t s = fb__ld_shown_node(k);
            if (close)
                fb__ld_errn(
                    l, k,
                    "clé inconnue « %s »%s : vouliez-vous dire « %s » ? (clés possibles : %s)", s.s,
                    where, close, known);
            else
                fb__ld_errn(l, k, "clé inconnue « %s »%s (clés possibles : %s)", s.s, where, known);
            continue;
        }
        if (vals[i]) {
            yaml_node_t *first = knodes ? knodes[i] : NULL;
            if (first)
                fb__ld_errn(l, k, "clé « %s » en double%s (première à %ld:%ld)", keys[i], where,
                            (long)first->start_mark.line + 1, (long)first->start_mark.column + 1);
            else
                fb__ld_errn(l, k, "clé « %s » en double%s", keys[i], where);
            continue;
        }
        vals[i] = v;
        if (knodes)
            knodes[i] = k;
    }
}

/* The text of a scalar value, or NULL after reporting that `what` must be text. */
const char *fb__ld_want_text(struct ld *l, const yaml_node_t *v, const char *what)
{
    if (fb__ld_is_text(v) && v->data.scalar.length > 0)
        return fb__ld_sval(v);
    if (fb__ld_is_null(v))
        fb__ld_errn(l, v, "« %s » est vide", what);
    else
        fb__ld_errn(l, v, "« %s » doit être un texte, pas %s", what, fb__ld_kind_of(v));
    return NULL;
}

/* Reads a boolean (true/false, oui/non, vrai/faux). Returns false after reporting otherwise. */
bool fb__ld_want_bool(struct ld *l, const yaml_node_t *v, const char *what, bool *out)
{
    static const char *const yes[] = {"true", "True", "TRUE", "oui", "vrai", "yes"};
    static const char *const no[] = {"false", "False", "FALSE", "non", "faux", "no"};
    if (fb__ld_is_text(v) && v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        for (size_t i = 0; i < FB_ARRAY_SIZE(yes); i++) {
            if (strcmp(fb__ld_sval(v), yes[i]) == 0) {
                *out = true;
                return true;
            }
            if (strcmp(fb__ld_sval(v), no[i]) == 0) {
                *out = false;
                return true;
            }
        }
    }
    fb__ld_errn(l, v, "« %s » doit valoir true ou false", what);
    return false;
}

/* Reads a decimal number ("12", "-3", "2.5"). Returns false after reporting otherwise. */
bool fb__ld_want_number(struct ld *l, const yaml_node_t *v, const char *what, double *out)
{
    if (fb__ld_is_text(v) && v->data.scalar.length < 64) {
        const char *s = fb__ld_sval(v);
        bool ok = *s != '\0';
        size_t digits = 0;
        for (const char *p = s; *p; p++) {
            if (*p >= '0' && *p <= '9')
                digits++;
            else if (!(*p == '.' || (p == s && (*p == '-' || *p == '+'))))
                ok = false;
        }
        if (ok && digits > 0) {
            char *end = NULL;
            double d = strtod(s, &end);
            if (end && *end == '\0' && isfinite(d)) {
                *out = d;
                return true;
            }
        }
        if (strchr(s, ',')) {
            fb__ld_errn(l, v,
                        "« %s » doit être un nombre écrit avec un point décimal (2.5, pas 2,5)",
                        what);
            return false;
        }
    }
    fb__ld_errn(l, v, "« %s » doit être un nombre", what);
    return false;
}

/* Reads an integer in [min, max]. Returns false after reporting otherwise. */
bool fb__ld_want_uint(struct ld *l, const yaml_node_t *v, const char *what, unsigned min,
                      unsigned max, unsigned *out)
{
    double d = 0;
    if (fb__ld_is_text(v)) {
        const char *s = fb__ld_sval(v);
        bool digits = *s != '\0' && v->data.scalar.length < 10;
        for (const char *p = s; *p; p++)
            if (*p < '0' || *p > '9')
                digits = false;
        if (digits) {
            d = strtod(s, NULL);
            if (d >= min && d <= max) {
                *out = (unsigned)d;
                return true;
            }
        }
    }
    fb__ld_errn(l, v, "« %s » doit être un nombre entier entre %u et %u", what, min, max);
    return false;
}

/* Reads a duration ("6 semaines"). Returns false after reporting otherwise. */
bool fb__ld_want_duration(struct ld *l, const yaml_node_t *v, const char *what, long long *out)
{
    long long secs = 0;
    if (fb__ld_is_text(v) && fb_text_duration(fb__ld_sval(v), &secs) == 0 && secs >= 60 &&
        secs <= 10ll * 365 * 86400) {
        *out = secs;
        return true;
    }
    if (fb__ld_is_text(v)) {
        fb_yaml_shown_t s = fb__ld_shown_node(v);
        fb__ld_errn(
            l, v,
            "durée invalide « %s » pour « %s » : écrivez par exemple « 3 jours », « 6 semaines », "
            "« 2 mois » ou « 1 an » (entre 1 minute et 10 ans)",
            s.s, what);
    } else {
        fb__ld_errn(
            l, v,
            "« %s » doit être une durée comme « 3 jours », « 6 semaines », « 2 mois » ou « 1 an »",
            what);
    }
    return false;
}

/* True for "YYYY-MM-DD" naming a real day. */
bool fb__ld_valid_date(const char *s, size_t len)
{
    if (len != 10 || s[4] != '-' || s[7] != '-')
        return false;
    for (size_t i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
            return false;
    int y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
    int m = (s[5] - '0') * 10 + (s[6] - '0');
    int d = (s[8] - '0') * 10 + (s[9] - '0');
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1900 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
        return false;
    if (m == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return false;
    return true;
}

/* ---- files ----------------------------------------------------------------------------------- */

/* A French explanation of an errno value from open/read. */
static const char *why_errno(int e)
{
    switch (e) {
    case ENOENT:
        return "fichier introuvable";
    case EACCES:
    case EPERM:
        return "accès refusé";
    case EISDIR:
        return "c'est un dossier, pas un fichier";
    default:
        return strerror(e);
    }
}

/*
 * Reads a whole regular file of at most MAX_FILE_BYTES into `out`. Returns 0, or sets *why to a
 * static French explanation and returns a negative code. Never blocks on a FIFO or device.
 */
int fb__ld_read_file(const char *path, fb_buf_t *out, const char **why)
{
    char chunk[16384];
    int rc = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        *why = why_errno(errno);
        return FB_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        *why = S_ISDIR(st.st_mode) ? why_errno(EISDIR) : "ce n'est pas un fichier ordinaire";
        rc = FB_EINVAL;
        goto done;
    }
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof(chunk));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            *why = why_errno(errno);
            rc = FB_EIO;
            goto done;
        }
        if (r == 0)
            break;
        if (fb_buf_append(out, chunk, (size_t)r) != 0) {
            *why = "le fichier dépasse 4 Mio";
            rc = FB_ETOOBIG;
            goto done;
        }
    }
done:
    close(fd);
    return rc;
}

/* Continues the FNV-1a hash `*h` (the dialog hash) over `n` bytes. */
void fb__ld_hash_bytes(uint64_t *h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        *h ^= s[i];
        *h *= 1099511628211ull;
    }
}

/* ---- YAML documents -------------------------------------------------------------------------- */

/* French wording of libyaml's most frequent complaints; NULL for the others. */
static const char *yaml_problem_fr(const char *problem)
{
    static const struct {
        const char *en, *fr;
    } table[] = {
        {"mapping values are not allowed in this context",
         "deux-points inattendu : une valeur qui contient « : » doit être entre guillemets"},
        {"did not find expected key", "clé attendue : vérifiez l'indentation"},
        {"did not find expected '-' indicator",
         "élément de liste attendu (« - ») : vérifiez l'indentation"},
        {"found character that cannot start any token",
         "caractère inattendu (les tabulations sont interdites : utilisez des espaces)"},
        {"found undefined alias", "alias (*nom) non défini"},
        {"found unexpected end of stream", "fin de fichier inattendue : un guillemet n'est pas "
                                           "refermé ?"},
        {"could not find expected ':'", "deux-points (« : ») attendu après la clé"},
        {"found unknown escape character",
         "séquence d'échappement inconnue après « \\ » entre guillemets doubles"},
        {"block sequence entries are not allowed in this context",
         "élément de liste (« - ») mal placé : vérifiez l'indentation"},
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(table); i++)
        if (strcmp(problem, table[i].en) == 0)
            return table[i].fr;
    return NULL;
}

/* French wording of libyaml's contexts ("while scanning..."); NULL for the others. */
static const char *yaml_context_fr(const char *context)
{
    static const struct {
        const char *en, *fr;
    } table[] = {
        {"while scanning a quoted scalar", "texte entre guillemets commencé"},
        {"while scanning a simple key", "clé commencée"},
        {"while parsing a block mapping", "correspondance commencée"},
        {"while parsing a block collection", "liste commencée"},
        {"while parsing a flow mapping", "correspondance {...} commencée"},
        {"while parsing a flow sequence", "liste [...] commencée"},
        {"while scanning a block scalar", "texte en bloc commencé"},
        {"while scanning an alias", "alias commencé"},
        {"while scanning an anchor", "ancre commencée"},
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(table); i++)
        if (strcmp(context, table[i].en) == 0)
            return table[i].fr;
    return NULL;
}

/* Converts a byte offset into a 1-based line and column (characters). */
static void offset_position(const char *text, size_t len, size_t off, long *line, long *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off && i < len; i++) {
        unsigned char ch = (unsigned char)text[i];
        if (ch == '\n') {
            (*line)++;
            *col = 1;
        } else if ((ch & 0xC0) != 0x80) {
            (*col)++;
        }
    }
}

/* Reports why libyaml could not load the current text, as one positioned error. */
static void report_yaml_error(struct ld *l, const yaml_parser_t *p)
{
    const char *problem = p->problem ? p->problem : "erreur inconnue";
    if (p->error == YAML_READER_ERROR) {
        long line, col;
        offset_position(l->text, l->len, p->problem_offset, &line, &col);
        if (strstr(problem, "UTF-8"))
            fb__ld_errat(l, line, col,
                         "le fichier n'est pas en UTF-8 valide (enregistrez-le en UTF-8)");
        else
            fb__ld_errat(l, line, col, "caractère interdit dans un fichier YAML (%s)", problem);
        return;
    }
    if (p->error == YAML_MEMORY_ERROR) {
        fb__ld_errat(l, 1, 1, "mémoire insuffisante pour lire le YAML");
        return;
    }
    const char *fr = yaml_problem_fr(problem);
    long line = (long)p->problem_mark.line + 1, col = (long)p->problem_mark.column + 1;
    const char *ctx = p->context ? yaml_context_fr(p->context) : NULL;
    if (ctx)
        fb__ld_errat(l, line, col, "erreur de syntaxe YAML : %s (%s à %ld:%ld)", fr ? fr : problem,
                     ctx, (long)p->context_mark.line + 1, (long)p->context_mark.column + 1);
    else
        fb__ld_errat(l, line, col, "erreur de syntaxe YAML : %s", fr ? fr : problem);
}

/*
 * Parses `text` as one YAML document into `doc` and makes it the current document. Returns
 * true when a root node exists; otherwise reports why and returns false (doc then needs no
 * deletion).
 */
bool fb__ld_load_doc(struct ld *l, int file, const char *text, size_t len, yaml_document_t *doc,
                     const char *empty_msg)
{
    yaml_parser_t parser;
    l->file = file;
    l->text = text;
    l->len = len;
    l->doc = doc;
    FB_FREE(l->lines);
    l->n_lines = 1;
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\n')
            l->n_lines++;
    l->lines = fb_malloc(l->n_lines * sizeof(*l->lines));
    l->lines[0] = 0;
    for (size_t i = 0, k = 1; i < len; i++)
        if (text[i] == '\n')
            l->lines[k++] = i + 1;

    if (!yaml_parser_initialize(&parser)) {
        fb__ld_errat(l, 1, 1, "mémoire insuffisante pour lire le YAML");
        return false;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);
    if (!yaml_parser_load(&parser, doc)) {
        report_yaml_error(l, &parser);
        yaml_parser_delete(&parser);
        return false;
    }
    if (!yaml_document_get_root_node(doc)) {
        fb__ld_errat(l, 1, 1, "%s", empty_msg);
        yaml_document_delete(doc);
        yaml_parser_delete(&parser);
        return false;
    }
    yaml_document_t extra;
    if (!yaml_parser_load(&parser, &extra)) {
        report_yaml_error(l, &parser);
    } else {
        if (yaml_document_get_root_node(&extra))
            fb__ld_errat(l, (long)extra.start_mark.line + 1, (long)extra.start_mark.column + 1,
                         "un seul document YAML est permis par fichier (retirez ce « --- »)");
        yaml_document_delete(&extra);
    }
    yaml_parser_delete(&parser);
    return true;
}

yaml_node_t *fb__ld_side_open(struct ld *l, struct fb__ld_side *s, const char *path,
                              const yaml_node_t *path_node, const void *tag, size_t tag_len,
                              const char *no_dir, const char *unreadable, const char *empty)
{
    memset(s, 0, sizeof(*s));
    s->file = -1;
    s->dialog_file = l->file;
    s->full = (path[0] == '/' || !l->dir || !l->dir[0]) ? fb_strdup(path)
                                                        : fb_asprintf("%s/%s", l->dir, path);
    fb_buf_init(&s->text, MAX_FILE_BYTES);
    const char *why = NULL;
    if (!l->dir && path[0] != '/') {
        fb__ld_errn(l, path_node,
                    "impossible de lire %s« %s » : le dialogue n'a pas été lu depuis un dossier",
                    no_dir, fb_yaml_show(path, strlen(path)).s);
        return NULL;
    }
    if (fb__ld_read_file(s->full, &s->text, &why) != 0) {
        fb__ld_errn(l, path_node, "impossible de lire %s« %s » : %s", unreadable,
                    fb_yaml_show(path, strlen(path)).s, why);
        return NULL;
    }
    fb__ld_hash_bytes(&l->hash, tag, tag_len);
    fb__ld_hash_bytes(&l->hash, fb_buf_str(&s->text), s->text.len);
    l->files = fb_realloc(l->files, (l->n_files + 1) * sizeof(*l->files));
    l->files[l->n_files] = fb__ld_escaped_name(s->full);
    s->file = (int)l->n_files++;

    /* the file's own document replaces the dialog's until fb__ld_side_close() */
    s->saved_doc = l->doc;
    s->saved_text = l->text;
    s->saved_len = l->len;
    s->saved_lines = l->lines;
    s->saved_n_lines = l->n_lines;
    l->lines = NULL;
    s->parsed = fb__ld_load_doc(l, s->file, fb_buf_str(&s->text), s->text.len, &s->doc, empty);
    return s->parsed ? yaml_document_get_root_node(&s->doc) : NULL;
}

void fb__ld_side_close(struct ld *l, struct fb__ld_side *s)
{
    if (s->parsed)
        yaml_document_delete(&s->doc);
    if (s->file >= 0) {
        FB_FREE(l->lines);
        l->file = s->dialog_file;
        l->doc = s->saved_doc;
        l->text = s->saved_text;
        l->len = s->saved_len;
        l->lines = s->saved_lines;
        l->n_lines = s->saved_n_lines;
    }
    fb_buf_free(&s->text);
    fb_free(s->full);
}
