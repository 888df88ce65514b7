/* SPDX-License-Identifier: MIT */
/*
 * geo.c - the communes index (geo.h): loads the compact file that tools/fbgeo_convert.c writes at
 * build time from @etalab/decoupage-administratif, and answers "which commune does the user mean"
 * from an INSEE code, a postal code or a name typed any which way.
 *
 * Loading reads the file into one buffer, checks every offset and index in it (a damaged file
 * is refused, never trusted), and builds the fb_commune_t records that callers borrow. The
 * lookup indexes (INSEE codes, postal codes, folded names, former names and codes) are sorted
 * arrays inside the file itself, searched by bisection, so there is nothing to sort or hash at
 * start-up. The index is immutable afterwards: every function here is a pure read.
 *
 * Name lookups work on fb_text_fold() keys, so case, accents, hyphens and apostrophes never
 * matter. A query goes through three kinds of matching, stopping at the first that finds
 * something: exact names; then former names (communes déléguées), names without their article
 * and word prefixes ("boulogne" -> Boulogne-Billancourt, Boulogne-sur-Mer); then typos within
 * fb_text_typo_budget(). The three are tried first with the qualifier the user gave ("93",
 * "(974)", "2A", "La Réunion", a postal code), then, if nothing was found, without it, so that
 * a wrong qualifier still finds the homonyms. Docs: docs/internals/GEO.md.
 */
#include "engine/geo.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/effects.h"
#include "engine/text.h"
#include "frichebot/alloc.h"
#include "frichebot/buf.h"

#define MAX_FILE   (256u << 20) /* refuse anything absurdly large */
#define MAX_QUERY  200          /* longer input is not a commune */
#define KEY_CAP    512          /* folded query capacity (folding never grows input past 2x) */
#define MAX_TOKENS 24
#define MAX_INTERP 16

/*
 * The typo index (built at load, see build_typo_index()): the distinct name keys ("groups")
 * sorted by length, and for typo budgets 1 and 2 a table of bitsets over the groups. Bit g of
 * row (class, p) of budget k is set when group g has a character of that class at some position
 * within p - k .. p + k. TYPO_NCLS classes: a-z, space, any digit, anything else.
 */
#define TYPO_NCLS   29
#define TYPO_MAXLEN 255 /* lengths are capped here, as g->keylen is */
#define TYPO_MAXBUD 2   /* budgets above this use the plain scan */
#define TYPO_MAXPOS 14  /* the most rows per class (match_typo()'s stack array) */
static const uint32_t typo_pos[TYPO_MAXBUD + 1] = {0, 8, TYPO_MAXPOS}; /* rows per class */

/* Words per record of each section (0: the byte-counted strings). */
static const uint32_t rec_words[FB_GEO_SEC_COUNT] = {
    [FB_GEO_SEC_STRINGS] = 0,
    [FB_GEO_SEC_REGIONS] = 2,
    [FB_GEO_SEC_DEPS] = 3,
    [FB_GEO_SEC_EPCIS] = 2,
    [FB_GEO_SEC_COMMUNES] = FB_GEO_C_WORDS,
    [FB_GEO_SEC_POSTCODES] = 1,
    [FB_GEO_SEC_PC_INDEX] = 2,
    [FB_GEO_SEC_NAME_INDEX] = 1,
    [FB_GEO_SEC_ALIAS_NAMES] = 2,
    [FB_GEO_SEC_ALIAS_CODES] = 2,
};

/*
 * What each word of a record refers to, checked at load: S string, R region, D département,
 * E EPCI or FB_GEO_NONE, C commune, N plain number, P first postal code (checked with the count).
 */
static const char *const rec_kinds[FB_GEO_SEC_COUNT] = {
    [FB_GEO_SEC_STRINGS] = "",          [FB_GEO_SEC_REGIONS] = "SS",
    [FB_GEO_SEC_DEPS] = "SSR",          [FB_GEO_SEC_EPCIS] = "SS",
    [FB_GEO_SEC_COMMUNES] = "SSSDENPN", [FB_GEO_SEC_POSTCODES] = "S",
    [FB_GEO_SEC_PC_INDEX] = "SC",       [FB_GEO_SEC_NAME_INDEX] = "C",
    [FB_GEO_SEC_ALIAS_NAMES] = "SC",    [FB_GEO_SEC_ALIAS_CODES] = "SC",
};

struct fb_geo_s {
    uint32_t *file;                        /* the whole file, owned */
    size_t size;                           /* its size in bytes */
    const char *strings;                   /* the STRINGS section */
    uint32_t nstrings;                     /* its size in bytes */
    const uint32_t *sec[FB_GEO_SEC_COUNT]; /* each section's first word */
    uint32_t count[FB_GEO_SEC_COUNT];      /* each section's record count */
    fb_commune_t *communes;                /* one per COMMUNES record, same order */
    const char **postcodes;                /* the NULL-terminated lists communes point into */
    unsigned char *keylen;                 /* strlen of each commune's key, capped at 255 */
    uint32_t *keymask;                     /* key_mask() of each commune's key */
    struct typo_group *groups;             /* distinct keys, by length (typo index) */
    uint32_t ngroups;                      /* number of groups */
    uint32_t nwords;     /* 64-bit words per bitset row: ngroups / 64, rounded up */
    uint32_t *len_start; /* groups of length l: [len_start[l], len_start[l + 1]) */
    uint64_t *typo_bits[TYPO_MAXBUD + 1]; /* per budget: [class][position][word] */
    char **dep_keys;                      /* folded département names */
    char **region_keys;                   /* folded région names */
    const char *source;                   /* "@etalab/decoupage-administratif 6.0.0" */
};

/*
 * A distinct name key: the run of name-index entries [first, first + count) that share the
 * string at `koff`, its length (capped at TYPO_MAXLEN) and its key_mask().
 */
struct typo_group {
    uint32_t koff;
    uint32_t first;
    uint32_t count;
    uint32_t len;
    uint32_t mask;
};

/* A query qualifier: what a commune must satisfy besides its name. */
enum filter_kind { F_NONE, F_DEP, F_CORSICA, F_REGION, F_POSTCODE };

struct filter {
    enum filter_kind kind;
    uint32_t idx; /* F_DEP, F_REGION */
    char pc[6];   /* F_POSTCODE */
};

/* One reading of the query: the name key to look up and its qualifier. */
struct interp {
    char key[KEY_CAP];
    struct filter filter;
};

/* A candidate commune, how far its name is from the query (0: exact) and its population. */
struct hit {
    uint32_t commune;
    uint32_t dist;
    uint32_t pop;
};

struct hits {
    struct hit *v;
    size_t len, cap;
};

enum match_kind { M_EXACT, M_LOOSE, M_TYPO };

/* Word `f` of record `i` of section `s`. */
static uint32_t rec(const fb_geo_t *g, int s, uint32_t i, uint32_t f)
{
    return g->sec[s][(size_t)i * rec_words[s] + f];
}

/* The string at offset `off` (validated at load). */
static const char *str_at(const fb_geo_t *g, uint32_t off)
{
    return g->strings + off;
}

/* The folded name key of commune `c`. */
static const char *commune_key(const fb_geo_t *g, uint32_t c)
{
    return str_at(g, rec(g, FB_GEO_SEC_COMMUNES, c, FB_GEO_C_KEY));
}

/*
 * The set of characters of a folded key as bits (a-z, any digit, space). Each edit adds or
 * removes at most one character kind, so the kinds one key has and the other lacks are a lower
 * bound of their distance: a cheap way to skip most names when looking for typos.
 */
static uint32_t key_mask(const char *key)
{
    uint32_t m = 0;
    for (; *key; key++) {
        char ch = *key;
        if (ch >= 'a' && ch <= 'z')
            m |= 1u << (ch - 'a');
        else if (ch >= '0' && ch <= '9')
            m |= 1u << 26;
        else
            m |= 1u << 27;
    }
    return m;
}

/* Appends "PATH: message\n" to `errors` (when given). */
static void load_error(fb_buf_t *errors, const char *path, const char *msg, int err)
{
    if (!errors)
        return;
    if (err)
        (void)fb_buf_printf(errors, "%s: %s: %s\n", path, msg, strerror(err));
    else
        (void)fb_buf_printf(errors, "%s: %s\n", path, msg);
}

/*
 * Reads the whole file into g->file (4-byte aligned, as fb_malloc guarantees). Returns NULL or
 * a static description of the failure, with *err set to the errno when there is one.
 */
static const char *read_file(fb_geo_t *g, const char *path, int *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *err = errno;
        return "cannot open the communes index (built by cmake/FbGeo.cmake)";
    }
    struct stat st;
    const char *msg = NULL;
    if (fstat(fd, &st) != 0) {
        *err = errno;
        msg = "cannot stat";
    } else if (!S_ISREG(st.st_mode) || st.st_size < (off_t)(FB_GEO_HDR_WORDS * 4) ||
               st.st_size > (off_t)MAX_FILE) {
        msg = "not a communes index (wrong size)";
    } else {
        g->size = (size_t)st.st_size;
        g->file = fb_malloc(g->size + 4);
        size_t got = 0;
        while (got < g->size) {
            ssize_t n = read(fd, (char *)g->file + got, g->size - got);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                *err = n < 0 ? errno : 0;
                msg = "read failed or file truncated";
                break;
            }
            got += (size_t)n;
        }
    }
    close(fd);
    return msg;
}

/* True when string offset `off` is inside the pool. */
static bool str_ok(const fb_geo_t *g, uint32_t off)
{
    return off < g->nstrings;
}

/* Checks one word of a record against its kind (see rec_kinds). */
static bool word_ok(const fb_geo_t *g, char kind, uint32_t w)
{
    switch (kind) {
    case 'S':
        return str_ok(g, w);
    case 'R':
        return w < g->count[FB_GEO_SEC_REGIONS];
    case 'D':
        return w < g->count[FB_GEO_SEC_DEPS];
    case 'E':
        return w == FB_GEO_NONE || w < g->count[FB_GEO_SEC_EPCIS];
    case 'C':
        return w < g->count[FB_GEO_SEC_COMMUNES];
    case 'P':
        return w <= g->count[FB_GEO_SEC_POSTCODES];
    default:
        return true;
    }
}

/*
 * True when the string in word `f` of the records of section `s` never decreases (strictly
 * increases when `strict`): the bisections below rely on it.
 */
static bool sorted_ok(const fb_geo_t *g, int s, uint32_t f, bool strict)
{
    for (uint32_t i = 1; i < g->count[s]; i++) {
        int c = strcmp(str_at(g, rec(g, s, i - 1, f)), str_at(g, rec(g, s, i, f)));
        if (c > 0 || (strict && c == 0))
            return false;
    }
    return true;
}

/*
 * Checks the header, the section table and every record, and points g->sec and g->strings into
 * the file. Returns NULL when the file is sound, or a static description of the first problem.
 */
static const char *validate(fb_geo_t *g)
{
    const uint32_t *h = g->file;
    if (memcmp(h, FB_GEO_FILE_MAGIC, 8) != 0)
        return "not a communes index (bad magic)";
    if (h[FB_GEO_HDR_BOM] != FB_GEO_FILE_BOM)
        return "communes index built for another byte order: rebuild it";
    if (h[FB_GEO_HDR_VERSION] != FB_GEO_FILE_VERSION)
        return "communes index of another format version: rebuild it";
    if (h[FB_GEO_HDR_SIZE] != g->size || h[FB_GEO_HDR_SECTIONS] != FB_GEO_SEC_COUNT)
        return "communes index truncated or corrupt (size)";
    for (int s = 0; s < FB_GEO_SEC_COUNT; s++) {
        uint64_t off = h[FB_GEO_HDR_TABLE + 2 * s], n = h[FB_GEO_HDR_TABLE + 2 * s + 1];
        uint64_t bytes = s == FB_GEO_SEC_STRINGS ? n : n * rec_words[s] * 4;
        if (off % 4 || off < (uint64_t)FB_GEO_HDR_WORDS * 4 || off + bytes > g->size)
            return "communes index corrupt (section table)";
        g->sec[s] = g->file + off / 4;
        g->count[s] = (uint32_t)n;
    }
    g->strings = (const char *)g->sec[FB_GEO_SEC_STRINGS];
    g->nstrings = g->count[FB_GEO_SEC_STRINGS];
    if (g->nstrings == 0 || g->strings[0] != '\0' || g->strings[g->nstrings - 1] != '\0' ||
        !str_ok(g, h[FB_GEO_HDR_SOURCE]))
        return "communes index corrupt (strings)";
    if (g->count[FB_GEO_SEC_COMMUNES] == 0)
        return "communes index holds no commune";
    for (int s = 1; s < FB_GEO_SEC_COUNT; s++) {
        const char *kinds = rec_kinds[s];
        for (uint32_t i = 0; i < g->count[s]; i++)
            for (uint32_t f = 0; kinds[f]; f++)
                if (!word_ok(g, kinds[f], rec(g, s, i, f)))
                    return "communes index corrupt (record)";
    }
    for (uint32_t i = 0; i < g->count[FB_GEO_SEC_COMMUNES]; i++) {
        uint64_t end = (uint64_t)rec(g, FB_GEO_SEC_COMMUNES, i, FB_GEO_C_PC_FIRST) +
                       rec(g, FB_GEO_SEC_COMMUNES, i, FB_GEO_C_PC_COUNT);
        if (end > g->count[FB_GEO_SEC_POSTCODES])
            return "communes index corrupt (postal codes)";
    }
    for (uint32_t i = 1; i < g->count[FB_GEO_SEC_NAME_INDEX]; i++)
        if (strcmp(commune_key(g, rec(g, FB_GEO_SEC_NAME_INDEX, i - 1, 0)),
                   commune_key(g, rec(g, FB_GEO_SEC_NAME_INDEX, i, 0))) > 0)
            return "communes index corrupt (name order)";
    if (!sorted_ok(g, FB_GEO_SEC_REGIONS, 0, true) || !sorted_ok(g, FB_GEO_SEC_DEPS, 0, true) ||
        !sorted_ok(g, FB_GEO_SEC_COMMUNES, FB_GEO_C_INSEE, true) ||
        !sorted_ok(g, FB_GEO_SEC_PC_INDEX, 0, false) ||
        !sorted_ok(g, FB_GEO_SEC_ALIAS_NAMES, 0, false) ||
        !sorted_ok(g, FB_GEO_SEC_ALIAS_CODES, 0, false))
        return "communes index corrupt (order)";
    return NULL;
}

/* The class of a key character in the typo bitsets: equal characters always share a class. */
static unsigned typo_class(char ch)
{
    if (ch >= 'a' && ch <= 'z')
        return (unsigned)(ch - 'a');
    if (ch == ' ')
        return 26;
    if (ch >= '0' && ch <= '9')
        return 27;
    return 28;
}

/*
 * Builds the typo index from the name index and g->keylen/g->keymask: the groups (runs of
 * name-index entries sharing one key string, exactly the runs match_typo_scan() computes one
 * distance for), sorted by capped key length, and per budget k the bitset rows described at
 * TYPO_NCLS. About 4 ms and 3.3 MB for 6.0.0.
 */
static void build_typo_index(fb_geo_t *g)
{
    uint32_t n = g->count[FB_GEO_SEC_NAME_INDEX];
    struct typo_group *runs = fb_malloc(((size_t)n + 1) * sizeof(*runs));
    uint32_t nruns = 0;
    uint32_t last = FB_GEO_NONE;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t c = rec(g, FB_GEO_SEC_NAME_INDEX, i, 0);
        uint32_t koff = rec(g, FB_GEO_SEC_COMMUNES, c, FB_GEO_C_KEY);
        if (koff == last) {
            runs[nruns - 1].count++;
            continue;
        }
        last = koff;
        runs[nruns++] = (struct typo_group){
            .koff = koff, .first = i, .count = 1, .len = g->keylen[c], .mask = g->keymask[c]};
    }
    /* Counting sort by length, stable (name order within a length). */
    g->len_start = fb_calloc(TYPO_MAXLEN + 2, sizeof(*g->len_start));
    for (uint32_t i = 0; i < nruns; i++)
        g->len_start[runs[i].len + 1]++;
    for (uint32_t l = 1; l < TYPO_MAXLEN + 2; l++)
        g->len_start[l] += g->len_start[l - 1];
    uint32_t fill[TYPO_MAXLEN + 1];
    memcpy(fill, g->len_start, sizeof(fill));
    g->groups = fb_malloc(((size_t)nruns + 1) * sizeof(*g->groups));
    for (uint32_t i = 0; i < nruns; i++)
        g->groups[fill[runs[i].len]++] = runs[i];
    fb_free(runs);
    g->ngroups = nruns;
    g->nwords = (nruns + 63) / 64;
    if (nruns == 0)
        return;

    /* raw[class][j]: the groups with a character of that class at position j exactly. */
    uint32_t rawpos = 0;
    for (uint32_t k = 1; k <= TYPO_MAXBUD; k++)
        rawpos = typo_pos[k] + k > rawpos ? typo_pos[k] + k : rawpos;
    size_t nw = g->nwords;
    uint64_t *raw = fb_calloc((size_t)TYPO_NCLS * rawpos * nw, sizeof(*raw));
    for (uint32_t gi = 0; gi < nruns; gi++) {
        const char *key = str_at(g, g->groups[gi].koff);
        for (uint32_t j = 0; j < rawpos && key[j]; j++)
            raw[((size_t)typo_class(key[j]) * rawpos + j) * nw + gi / 64] |= 1ull << (gi % 64);
    }
    for (uint32_t k = 1; k <= TYPO_MAXBUD; k++) {
        uint32_t np = typo_pos[k];
        uint64_t *bits = fb_calloc((size_t)TYPO_NCLS * np * nw, sizeof(*bits));
        for (uint32_t cls = 0; cls < TYPO_NCLS; cls++)
            for (uint32_t p = 0; p < np; p++) {
                uint64_t *dst = bits + ((size_t)cls * np + p) * nw;
                for (uint32_t j = p > k ? p - k : 0; j <= p + k; j++) {
                    const uint64_t *src = raw + ((size_t)cls * rawpos + j) * nw;
                    for (size_t w = 0; w < nw; w++)
                        dst[w] |= src[w];
                }
            }
        g->typo_bits[k] = bits;
    }
    fb_free(raw);
}

/* Builds the fb_commune_t records, their postal code lists and the folded area names. */
static void build(fb_geo_t *g)
{
    uint32_t n = g->count[FB_GEO_SEC_COMMUNES];
    g->communes = fb_calloc(n, sizeof(*g->communes));
    g->keylen = fb_malloc(n);
    g->keymask = fb_malloc(n * sizeof(*g->keymask));
    g->postcodes = fb_malloc(((size_t)g->count[FB_GEO_SEC_POSTCODES] + n) * sizeof(char *));
    size_t next = 0;
    for (uint32_t i = 0; i < n; i++) {
        fb_commune_t *c = &g->communes[i];
        uint32_t dep = rec(g, FB_GEO_SEC_COMMUNES, i, FB_GEO_C_DEP);
        uint32_t region = rec(g, FB_GEO_SEC_DEPS, dep, 2);
        uint32_t epci = rec(g, FB_GEO_SEC_COMMUNES, i, FB_GEO_C_EPCI);
        c->insee = str_at(g, rec(g, FB_GEO_SEC_COMMUNES, i, FB_GEO_C_INSEE));
        c->name = str_at(g, rec(g, FB_GEO_SEC_COMMUNES, i, FB_GEO_C_NAME));
        c->dep = str_at(g, rec(g, FB_GEO_SEC_DEPS, dep, 0));
        c->dep_name = str_at(g, rec(g, FB_GEO_SEC_DEPS, dep, 1));
        c->region = str_at(g, rec(g, FB_GEO_SEC_REGIONS, region, 0));
        c->region_name = str_at(g, rec(g, FB_GEO_SEC_REGIONS, region, 1));
        c->epci = epci == FB_GEO_NONE ? "" : str_at(g, rec(g, FB_GEO_SEC_EPCIS, epci, 0));
        c->epci_name = epci == FB_GEO_NONE ? "" : str_at(g, rec(g, FB_GEO_SEC_EPCIS, epci, 1));
        c->population = rec(g, FB_GEO_SEC_COMMUNES, i, FB_GEO_C_POP);
        c->postcodes = &g->postcodes[next];
        uint32_t first = rec(g, FB_GEO_SEC_COMMUNES, i, FB_GEO_C_PC_FIRST);
        uint32_t count = rec(g, FB_GEO_SEC_COMMUNES, i, FB_GEO_C_PC_COUNT);
        for (uint32_t k = 0; k < count; k++)
            g->postcodes[next++] = str_at(g, rec(g, FB_GEO_SEC_POSTCODES, first + k, 0));
        g->postcodes[next++] = NULL;
        size_t kl = strlen(commune_key(g, i));
        g->keylen[i] = (unsigned char)(kl > 255 ? 255 : kl);
        g->keymask[i] = key_mask(commune_key(g, i));
    }
    g->dep_keys = fb_calloc(g->count[FB_GEO_SEC_DEPS], sizeof(char *));
    for (uint32_t i = 0; i < g->count[FB_GEO_SEC_DEPS]; i++)
        g->dep_keys[i] = fb_text_fold_dup(str_at(g, rec(g, FB_GEO_SEC_DEPS, i, 1)));
    g->region_keys = fb_calloc(g->count[FB_GEO_SEC_REGIONS], sizeof(char *));
    for (uint32_t i = 0; i < g->count[FB_GEO_SEC_REGIONS]; i++)
        g->region_keys[i] = fb_text_fold_dup(str_at(g, rec(g, FB_GEO_SEC_REGIONS, i, 1)));
    g->source = str_at(g, g->file[FB_GEO_HDR_SOURCE]);
    build_typo_index(g);
}

fb_geo_t *fb_geo_load(const char *path, fb_buf_t *errors)
{
    if (!path) {
        load_error(errors, "(null)", "no communes index path", 0);
        return NULL;
    }
    fb_geo_t *g = fb_calloc(1, sizeof(*g));
    int err = 0;
    const char *msg = read_file(g, path, &err);
    if (!msg)
        msg = validate(g);
    if (msg) {
        load_error(errors, path, msg, err);
        fb_geo_free(g);
        return NULL;
    }
    build(g);
    return g;
}

void fb_geo_free(fb_geo_t *g)
{
    if (!g)
        return;
    if (g->dep_keys)
        for (uint32_t i = 0; i < g->count[FB_GEO_SEC_DEPS]; i++)
            fb_free(g->dep_keys[i]);
    if (g->region_keys)
        for (uint32_t i = 0; i < g->count[FB_GEO_SEC_REGIONS]; i++)
            fb_free(g->region_keys[i]);
    fb_free(g->dep_keys);
    fb_free(g->region_keys);
    fb_free(g->keylen);
    fb_free(g->keymask);
    fb_free(g->groups);
    fb_free(g->len_start);
    for (uint32_t k = 0; k <= TYPO_MAXBUD; k++)
        fb_free(g->typo_bits[k]);
    fb_free(g->postcodes);
    fb_free(g->communes);
    fb_free(g->file);
    fb_free(g);
}

size_t fb_geo_count(const fb_geo_t *g)
{
    return g ? g->count[FB_GEO_SEC_COMMUNES] : 0;
}

const char *fb_geo_source(const fb_geo_t *g)
{
    return g ? g->source : "";
}

/* The first record of section `s` whose string in word `f` is >= `key` (the section is sorted
 * on that word); callers walk forward while it matches. */
static uint32_t lower_bound(const fb_geo_t *g, int s, uint32_t f, const char *key)
{
    uint32_t lo = 0, hi = g->count[s];
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (strcmp(str_at(g, rec(g, s, mid, f)), key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The first name-index entry whose commune key is >= `key`. */
static uint32_t name_lower_bound(const fb_geo_t *g, const char *key)
{
    uint32_t lo = 0, hi = g->count[FB_GEO_SEC_NAME_INDEX];
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (strcmp(commune_key(g, rec(g, FB_GEO_SEC_NAME_INDEX, mid, 0)), key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Copies `code` to `out` (6 bytes) upper-cased when it has the shape of a commune code
 * ("69123", "2A004", any case). Returns false otherwise. */
static bool normalize_code(const char *code, char out[6])
{
    if (!code || strlen(code) != 5)
        return false;
    for (int i = 0; i < 5; i++) {
        char ch = code[i];
        if (ch >= 'a' && ch <= 'z')
            ch = (char)(ch - 'a' + 'A');
        bool digit = ch >= '0' && ch <= '9';
        if (!digit && !(i == 1 && code[0] == '2' && (ch == 'A' || ch == 'B')))
            return false;
        out[i] = ch;
    }
    out[5] = '\0';
    return true;
}

/* True when `s` is exactly five ASCII digits. */
static bool is_postcode(const char *s)
{
    if (strlen(s) != 5)
        return false;
    for (int i = 0; i < 5; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

const fb_commune_t *fb_geo_by_insee(const fb_geo_t *g, const char *insee)
{
    char code[6];
    if (!g || !normalize_code(insee, code))
        return NULL;
    uint32_t i = lower_bound(g, FB_GEO_SEC_COMMUNES, FB_GEO_C_INSEE, code);
    if (i < g->count[FB_GEO_SEC_COMMUNES] && strcmp(g->communes[i].insee, code) == 0)
        return &g->communes[i];
    return NULL;
}

/* Appends a candidate. */
static void hits_push(const fb_geo_t *g, struct hits *h, uint32_t commune, uint32_t dist)
{
    if (h->len == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 32;
        h->v = fb_realloc(h->v, h->cap * sizeof(*h->v));
    }
    h->v[h->len].commune = commune;
    h->v[h->len].dist = dist;
    h->v[h->len].pop = g->communes[commune].population;
    h->len++;
}

/* Orders candidates by commune, best distance first, to drop duplicates. */
static int cmp_hit_commune(const void *a, const void *b)
{
    const struct hit *x = a, *y = b;
    if (x->commune != y->commune)
        return x->commune < y->commune ? -1 : 1;
    return x->dist < y->dist ? -1 : x->dist > y->dist;
}

/* Orders candidates best first: closest name, then largest population, then INSEE code (the
 * communes are stored in INSEE order, so their index is that order). */
static int cmp_hit_rank(const void *a, const void *b)
{
    const struct hit *x = a, *y = b;
    if (x->dist != y->dist)
        return x->dist < y->dist ? -1 : 1;
    if (x->pop != y->pop)
        return x->pop > y->pop ? -1 : 1;
    return x->commune < y->commune ? -1 : x->commune > y->commune;
}

/*
 * Drops duplicate communes (keeping the closest match), ranks the rest, copies the best `max`
 * to `out`, frees the candidates and returns how many distinct communes there were.
 */
static size_t hits_finish(const fb_geo_t *g, struct hits *h, const fb_commune_t **out, size_t max)
{
    size_t n = 0;
    if (h->len) {
        qsort(h->v, h->len, sizeof(*h->v), cmp_hit_commune);
        for (size_t i = 0; i < h->len; i++)
            if (n == 0 || h->v[n - 1].commune != h->v[i].commune)
                h->v[n++] = h->v[i];
        qsort(h->v, n, sizeof(*h->v), cmp_hit_rank);
    }
    for (size_t i = 0; i < n && i < max && out; i++)
        out[i] = &g->communes[h->v[i].commune];
    FB_FREE(h->v);
    h->len = h->cap = 0;
    return n;
}

/* Keeps only the candidates at the smallest distance: "Marsielle" is one edit from Marseille and
 * two from Marsilly; offering Marsilly too would only lengthen the choice. */
static void hits_keep_closest(struct hits *h)
{
    uint32_t best = UINT32_MAX;
    for (size_t i = 0; i < h->len; i++)
        best = h->v[i].dist < best ? h->v[i].dist : best;
    size_t n = 0;
    for (size_t i = 0; i < h->len; i++)
        if (h->v[i].dist == best)
            h->v[n++] = h->v[i];
    h->len = n;
}

size_t fb_geo_by_postcode(const fb_geo_t *g, const char *postcode, const fb_commune_t **out,
                          size_t max)
{
    if (!g || !postcode || !is_postcode(postcode))
        return 0;
    struct hits h = {0};
    for (uint32_t i = lower_bound(g, FB_GEO_SEC_PC_INDEX, 0, postcode);
         i < g->count[FB_GEO_SEC_PC_INDEX] &&
         strcmp(str_at(g, rec(g, FB_GEO_SEC_PC_INDEX, i, 0)), postcode) == 0;
         i++)
        hits_push(g, &h, rec(g, FB_GEO_SEC_PC_INDEX, i, 1), 0);
    return hits_finish(g, &h, out, max);
}

/*
 * A lone code: the commune with that INSEE code, the communes with that postal code (the same
 * five digits are often both: "69001" is Lyon's postal code and Affoux's INSEE code, so both
 * are candidates) and, one rank lower, the communes that absorbed a former code.
 */
static void find_code(const fb_geo_t *g, const char *code, struct hits *h)
{
    const fb_commune_t *c = fb_geo_by_insee(g, code);
    if (c)
        hits_push(g, h, (uint32_t)(c - g->communes), 0);
    if (is_postcode(code))
        for (uint32_t i = lower_bound(g, FB_GEO_SEC_PC_INDEX, 0, code);
             i < g->count[FB_GEO_SEC_PC_INDEX] &&
             strcmp(str_at(g, rec(g, FB_GEO_SEC_PC_INDEX, i, 0)), code) == 0;
             i++)
            hits_push(g, h, rec(g, FB_GEO_SEC_PC_INDEX, i, 1), 0);
    for (uint32_t i = lower_bound(g, FB_GEO_SEC_ALIAS_CODES, 0, code);
         i < g->count[FB_GEO_SEC_ALIAS_CODES] &&
         strcmp(str_at(g, rec(g, FB_GEO_SEC_ALIAS_CODES, i, 0)), code) == 0;
         i++)
        hits_push(g, h, rec(g, FB_GEO_SEC_ALIAS_CODES, i, 1), 1);
}

/* True when commune `c` satisfies the qualifier. */
static bool filter_ok(const fb_geo_t *g, uint32_t c, const struct filter *f)
{
    uint32_t dep = rec(g, FB_GEO_SEC_COMMUNES, c, FB_GEO_C_DEP);
    switch (f->kind) {
    case F_NONE:
        return true;
    case F_DEP:
        return dep == f->idx;
    case F_CORSICA:
        return g->communes[c].dep[0] == '2' &&
               (g->communes[c].dep[1] == 'A' || g->communes[c].dep[1] == 'B');
    case F_REGION:
        return rec(g, FB_GEO_SEC_DEPS, dep, 2) == f->idx;
    case F_POSTCODE:
        for (const char *const *pc = g->communes[c].postcodes; *pc; pc++)
            if (strcmp(*pc, f->pc) == 0)
                return true;
        return false;
    }
    return false;
}

/* Exact names: every commune whose key is `key`. */
static void match_exact(const fb_geo_t *g, const char *key, const struct filter *f, struct hits *h)
{
    for (uint32_t i = name_lower_bound(g, key); i < g->count[FB_GEO_SEC_NAME_INDEX]; i++) {
        uint32_t c = rec(g, FB_GEO_SEC_NAME_INDEX, i, 0);
        if (strcmp(commune_key(g, c), key) != 0)
            break;
        if (filter_ok(g, c, f))
            hits_push(g, h, c, 0);
    }
}

/*
 * Loose matches: former names and names without their article (the alias section), and names
 * that start with the whole words of `key` ("boulogne" -> "boulogne sur mer"). Prefixes need
 * at least three letters: "st" alone must not list four thousand saints.
 */
static void match_loose(const fb_geo_t *g, const char *key, const struct filter *f, struct hits *h,
                        bool *prefix_found)
{
    for (uint32_t i = lower_bound(g, FB_GEO_SEC_ALIAS_NAMES, 0, key);
         i < g->count[FB_GEO_SEC_ALIAS_NAMES] &&
         strcmp(str_at(g, rec(g, FB_GEO_SEC_ALIAS_NAMES, i, 0)), key) == 0;
         i++) {
        uint32_t c = rec(g, FB_GEO_SEC_ALIAS_NAMES, i, 1);
        if (filter_ok(g, c, f))
            hits_push(g, h, c, 0);
    }
    size_t klen = strlen(key);
    if (klen < 3 || klen + 2 > KEY_CAP)
        return;
    char prefix[KEY_CAP];
    memcpy(prefix, key, klen);
    prefix[klen] = ' ';
    prefix[klen + 1] = '\0';
    for (uint32_t i = name_lower_bound(g, prefix); i < g->count[FB_GEO_SEC_NAME_INDEX]; i++) {
        uint32_t c = rec(g, FB_GEO_SEC_NAME_INDEX, i, 0);
        if (strncmp(commune_key(g, c), prefix, klen + 1) != 0)
            break;
        if (filter_ok(g, c, f)) {
            hits_push(g, h, c, 0);
            *prefix_found = true;
        }
    }
}

/*
 * Typos, the reference way (fb__geo_find_reference(), and budgets above TYPO_MAXBUD): every
 * commune whose key is within fb_text_typo_budget() edits of `key`. A linear scan
 * of the name index; names of the same key are adjacent and share one interned string, so the
 * distance is computed once per distinct name, and only for names of a close length and a
 * close set of letters (key_mask()).
 */
static void match_typo_scan(const fb_geo_t *g, const char *key, const struct filter *f,
                            struct hits *h)
{
    size_t klen = strlen(key);
    unsigned budget = fb_text_typo_budget(klen);
    if (budget == 0)
        return;
    uint32_t qmask = key_mask(key);
    uint32_t last_key = FB_GEO_NONE;
    unsigned last_dist = budget + 1;
    for (uint32_t i = 0; i < g->count[FB_GEO_SEC_NAME_INDEX]; i++) {
        uint32_t c = rec(g, FB_GEO_SEC_NAME_INDEX, i, 0);
        uint32_t koff = rec(g, FB_GEO_SEC_COMMUNES, c, FB_GEO_C_KEY);
        if (koff != last_key) {
            last_key = koff;
            size_t clen = g->keylen[c];
            size_t diff = clen > klen ? clen - klen : klen - clen;
            uint32_t cmask = g->keymask[c];
            if (diff > budget || (unsigned)__builtin_popcount(qmask & ~cmask) > budget ||
                (unsigned)__builtin_popcount(cmask & ~qmask) > budget)
                last_dist = budget + 1;
            else
                last_dist =
                    fb_text_distance(key, klen, str_at(g, koff), strlen(str_at(g, koff)), budget);
        }
        if (last_dist <= budget && filter_ok(g, c, f))
            hits_push(g, h, c, last_dist);
    }
}

/* What typo_try_group() needs to know of the query, computed once per match_typo(). */
struct typo_query {
    uint32_t mask;           /* key_mask() */
    uint64_t pos[TYPO_NCLS]; /* per class, the positions (below 64) where the key has one */
};

/*
 * Typo candidate group `gr`, which passed the bitset filter: the same checks and distance as
 * match_typo_scan() (the length check is the caller's band), then its communes.
 */
static void typo_try_group(const fb_geo_t *g, const struct typo_group *gr, const char *key,
                           size_t klen, const struct typo_query *q, unsigned budget,
                           const struct filter *f, struct hits *h)
{
    if ((unsigned)__builtin_popcount(q->mask & ~gr->mask) > budget ||
        (unsigned)__builtin_popcount(gr->mask & ~q->mask) > budget)
        return;
    const char *name = str_at(g, gr->koff);
    /* The mirror of match_typo()'s filter: the name's characters without an equal one within
     * `budget` positions in the key are substituted or inserted, at most budget minus the
     * deletions, and there are at least klen - len of those. */
    unsigned allowed = budget - (klen > gr->len ? (unsigned)(klen - gr->len) : 0);
    unsigned misses = 0;
    uint64_t window = (2ull << (2 * budget)) - 1;
    for (size_t j = 0; j < gr->len && j + budget < 64; j++) {
        uint64_t at = q->pos[typo_class(name[j])];
        at = j >= budget ? at >> (j - budget) : at << (budget - j);
        if (!(at & window) && ++misses > allowed)
            return;
    }
    unsigned dist = fb_text_distance(key, klen, name, strlen(name), budget);
    if (dist > budget)
        return;
    for (uint32_t i = gr->first; i < gr->first + gr->count; i++) {
        uint32_t c = rec(g, FB_GEO_SEC_NAME_INDEX, i, 0);
        if (filter_ok(g, c, f))
            hits_push(g, h, c, dist);
    }
}

/*
 * Typos: every commune whose key is within fb_text_typo_budget() edits of `key`, with exactly
 * the results of match_typo_scan() but without looking at most names.
 *
 * Why nothing is lost: fb_text_distance() is the optimal string alignment distance. In an
 * alignment of cost <= k, every character of `key` is matched to an equal character of the name,
 * or is one half of a transposition (also equal to a name character), or is substituted or
 * deleted; at most k are substituted or deleted, and a matched or transposed character sits at
 * most k positions away from its partner (the insertions and deletions before it, counting a
 * transposition's shift of one). So among the first m characters of `key`, at most k lack an
 * equal character (same class is weaker, hence safe) within k positions in the name. The bitset
 * rows of budget k give, per query position, the groups that have one; a bit-sliced counter of
 * misses keeps the groups with at most k. Names longer than TYPO_MAXLEN never pass
 * fb_text_distance() unless equal to `key`, which also passes the filter.
 */
/* The bits of word `w` of a bitset that stand for groups [from, to). */
static uint64_t bit_range(uint32_t w, uint32_t from, uint32_t to)
{
    uint64_t base = (uint64_t)w * 64;
    if (to <= base || from >= base + 64 || from >= to)
        return 0;
    uint64_t m = ~0ull;
    if (from > base)
        m &= ~0ull << (from - base);
    if (to < base + 64)
        m &= ~0ull >> (base + 64 - to);
    return m;
}

static void match_typo(const fb_geo_t *g, const char *key, const struct filter *f, struct hits *h)
{
    size_t klen = strlen(key);
    unsigned budget = fb_text_typo_budget(klen);
    if (budget == 0)
        return;
    if (budget > TYPO_MAXBUD || g->ngroups == 0) {
        match_typo_scan(g, key, f, h);
        return;
    }
    if (klen > TYPO_MAXLEN + budget)
        return; /* farther than the budget from every (capped) length */
    size_t lo_len = klen > budget ? klen - budget : 0;
    size_t hi_len = klen + budget > TYPO_MAXLEN ? TYPO_MAXLEN : klen + budget;
    uint32_t lo = g->len_start[lo_len], hi = g->len_start[hi_len + 1];
    if (lo >= hi)
        return;
    size_t np = typo_pos[budget];
    size_t m = klen < np ? klen : np;
    const uint64_t *row[TYPO_MAXPOS];
    for (size_t i = 0; i < m; i++)
        row[i] = g->typo_bits[budget] + ((size_t)typo_class(key[i]) * np + i) * g->nwords;
    struct typo_query q = {.mask = key_mask(key)};
    for (size_t i = 0; i < klen && i < 64; i++)
        q.pos[typo_class(key[i])] |= 1ull << i;
    /* Names longer than the key by d need d insertions, leaving budget - d misses. */
    uint32_t longer1 = klen + 1 <= TYPO_MAXLEN ? g->len_start[klen + 1] : hi;
    uint32_t longer2 = klen + 2 <= TYPO_MAXLEN ? g->len_start[klen + 2] : hi;
    uint32_t wlast = (hi - 1) / 64;
    for (uint32_t w = lo / 64; w <= wlast; w++) {
        uint64_t c1 = 0, c2 = 0, c3 = 0; /* groups with >= 1, >= 2, >= 3 misses */
        for (size_t i = 0; i < m; i++) {
            uint64_t miss = ~row[i][w];
            c3 |= c2 & miss;
            c2 |= c1 & miss;
            c1 |= miss;
        }
        uint64_t plus1 = bit_range(w, longer1, longer2), plus2 = bit_range(w, longer2, hi);
        uint64_t fail =
            budget == 1 ? c2 | (c1 & (plus1 | plus2)) : c3 | (c2 & plus1) | (c1 & plus2);
        uint64_t live = ~fail & bit_range(w, lo, hi);
        while (live) {
            uint32_t gi = w * 64 + (uint32_t)__builtin_ctzll(live);
            live &= live - 1;
            typo_try_group(g, &g->groups[gi], key, klen, &q, budget, f, h);
        }
    }
}

/* What run_matches() found, for fb_geo_how_t. */
struct found_how {
    bool whole;     /* a hit came from the whole text (reading 0) */
    bool qualified; /* a hit came from a qualified reading, qualifier applied */
    bool prefix;    /* a loose hit was a prefix match */
};

/* Runs one kind of matching over interpretations [from, to), with or without their qualifier. */
static void run_matches(const fb_geo_t *g, enum match_kind kind, const struct interp *in,
                        size_t from, size_t to, bool filtered, bool reference, struct hits *h,
                        struct found_how *fh)
{
    static const struct filter none = {.kind = F_NONE};
    for (size_t i = from; i < to; i++) {
        const struct filter *f = filtered ? &in[i].filter : &none;
        size_t before = h->len;
        if (in[i].key[0] == '\0')
            continue;
        switch (kind) {
        case M_EXACT:
            match_exact(g, in[i].key, f, h);
            break;
        case M_LOOSE:
            match_loose(g, in[i].key, f, h, &fh->prefix);
            break;
        case M_TYPO:
            if (reference)
                match_typo_scan(g, in[i].key, f, h);
            else
                match_typo(g, in[i].key, f, h);
            break;
        }
        if (h->len > before) {
            if (i == 0)
                fh->whole = true;
            else if (filtered)
                fh->qualified = true;
        }
    }
}

/* Joins tokens [from, to) with single spaces into `out` (KEY_CAP bytes). */
static void join(const char *const *tok, size_t from, size_t to, char *out)
{
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = from; i < to; i++) {
        size_t len = strlen(tok[i]);
        if (n + len + 2 > KEY_CAP)
            break;
        if (n)
            out[n++] = ' ';
        memcpy(out + n, tok[i], len);
        n += len;
        out[n] = '\0';
    }
}

/* The usual abbreviations of commune names, expanded token by token ("st" -> "saint"). No
 * current commune name has any of these as a word, so expanding them never loses a match. */
static const char *expand(const char *tok)
{
    static const char *const abbr[][2] = {
        {"st", "saint"}, {"ste", "sainte"}, {"sts", "saints"}, {"stes", "saintes"},
        {"s", "sur"},    {"ss", "sous"},    {"mt", "mont"},    {"fg", "faubourg"},
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(abbr); i++)
        if (strcmp(tok, abbr[i][0]) == 0)
            return abbr[i][1];
    return tok;
}

/* True for words that may link a name to its qualifier: "Saint-Denis de la Réunion". */
static bool is_connector(const char *tok)
{
    static const char *const words[] = {"en",  "dans", "a",  "au",  "aux", "de", "du",
                                        "des", "le",   "la", "les", "l",   "sur"};
    for (size_t i = 0; i < FB_ARRAY_SIZE(words); i++)
        if (strcmp(tok, words[i]) == 0)
            return true;
    return false;
}

/* True for an ordinal like "1er", "3e", "15eme": a municipal arrondissement ("Lyon 3e"). */
static bool is_ordinal(const char *tok)
{
    size_t d = 0;
    while (tok[d] >= '0' && tok[d] <= '9')
        d++;
    if (d == 0 || d > 2)
        return false;
    const char *rest = tok + d;
    return strcmp(rest, "e") == 0 || strcmp(rest, "er") == 0 || strcmp(rest, "eme") == 0 ||
           strcmp(rest, "ere") == 0 || strcmp(rest, "em") == 0;
}

/* Reads a département code token ("93", "2a", "974", "1", "20" for Corsica) into a filter. */
static bool parse_dep_code(const fb_geo_t *g, const char *tok, struct filter *f)
{
    char code[4];
    size_t len = strlen(tok);
    if (len == 0 || len > 3)
        return false;
    if (strcmp(tok, "20") == 0) {
        f->kind = F_CORSICA;
        return true;
    }
    if (len == 1 && tok[0] >= '1' && tok[0] <= '9') {
        code[0] = '0';
        code[1] = tok[0];
        code[2] = '\0';
    } else if (len == 2 && tok[0] == '2' && (tok[1] == 'a' || tok[1] == 'b')) {
        code[0] = '2';
        code[1] = (char)(tok[1] - 'a' + 'A');
        code[2] = '\0';
    } else {
        for (size_t i = 0; i < len; i++)
            if (tok[i] < '0' || tok[i] > '9')
                return false;
        memcpy(code, tok, len + 1);
    }
    uint32_t i = lower_bound(g, FB_GEO_SEC_DEPS, 0, code);
    if (i >= g->count[FB_GEO_SEC_DEPS] ||
        strcmp(str_at(g, rec(g, FB_GEO_SEC_DEPS, i, 0)), code) != 0)
        return false;
    f->kind = F_DEP;
    f->idx = i;
    return true;
}

/* True when `words` is the folded area name `name`, with or without its article. */
static bool area_name_eq(const char *name, const char *words)
{
    if (name[0] != words[0] && name[0] != 'l')
        return false; /* neither equal nor an article ("le ", "la ", ...) ahead: the usual case */
    if (strcmp(name, words) == 0)
        return true;
    static const char *const articles[] = {"le ", "la ", "les ", "l "};
    for (size_t i = 0; i < FB_ARRAY_SIZE(articles); i++) {
        size_t n = strlen(articles[i]);
        if (strncmp(name, articles[i], n) == 0 && strcmp(name + n, words) == 0)
            return true;
    }
    return false;
}

/* Adds an interpretation: the name tokens [0, end) (connectors at the end dropped) with `f`. */
static void add_interp(struct interp *in, size_t *n, const char *const *tok, size_t start,
                       size_t end, const struct filter *f)
{
    while (end > start + 1 && is_connector(tok[end - 1]))
        end--;
    if (*n >= MAX_INTERP || end <= start)
        return;
    join(tok, start, end, in[*n].key);
    in[*n].filter = *f;
    (*n)++;
}

/*
 * The readings of a multi-word query besides the whole of it: a postal code first or last
 * ("93200 Saint-Denis"), a département code last ("Saint-Denis 93", "(974)", "2A"), an
 * arrondissement ordinal last ("Lyon 3e"), a département or région name last ("Saint-Denis La
 * Réunion", "Ajaccio Corse"). Returns the number added to `in`.
 */
static size_t qualified_interps(const fb_geo_t *g, const char *const *tok, size_t ntok,
                                struct interp *in)
{
    size_t n = 0;
    struct filter f = {.kind = F_NONE};
    if (ntok < 2)
        return 0;
    if (is_postcode(tok[0])) {
        struct filter pf = {.kind = F_POSTCODE};
        memcpy(pf.pc, tok[0], 6);
        add_interp(in, &n, tok, 1, ntok, &pf);
    }
    const char *last = tok[ntok - 1];
    if (is_postcode(last)) {
        struct filter pf = {.kind = F_POSTCODE};
        memcpy(pf.pc, last, 6);
        add_interp(in, &n, tok, 0, ntok - 1, &pf);
    } else if (parse_dep_code(g, last, &f)) {
        add_interp(in, &n, tok, 0, ntok - 1, &f);
    }
    size_t end = ntok;
    if (end > 2 &&
        (strcmp(tok[end - 1], "arrondissement") == 0 || strcmp(tok[end - 1], "arr") == 0))
        end--;
    if (is_ordinal(tok[end - 1])) {
        struct filter nf = {.kind = F_NONE};
        add_interp(in, &n, tok, 0, end - 1, &nf);
    }
    char words[KEY_CAP];
    for (size_t k = 1; k < ntok; k++) {
        join(tok, k, ntok, words);
        for (uint32_t d = 0; d < g->count[FB_GEO_SEC_DEPS]; d++)
            if (area_name_eq(g->dep_keys[d], words)) {
                struct filter df = {.kind = F_DEP, .idx = d};
                add_interp(in, &n, tok, 0, k, &df);
            }
        for (uint32_t r = 0; r < g->count[FB_GEO_SEC_REGIONS]; r++)
            if (area_name_eq(g->region_keys[r], words)) {
                struct filter rf = {.kind = F_REGION, .idx = r};
                add_interp(in, &n, tok, 0, k, &rf);
            }
    }
    return n;
}

/* fb_geo_find_how(), with the reference typo scan when `reference`. */
static size_t find(const fb_geo_t *g, const char *text, const fb_commune_t **out, size_t max,
                   bool reference, fb_geo_how_t *how)
{
    fb_geo_how_t unused;
    if (!how)
        how = &unused;
    *how = (fb_geo_how_t){.match = FB_GEO_MATCH_NONE};
    if (!g || !text)
        return 0;
    size_t len = strlen(text);
    if (len == 0 || len > MAX_QUERY)
        return 0;
    /* ASCII brackets and list punctuation separate words ("Saint-Denis(974)"); folding alone
     * would drop them and glue the words together. */
    char raw[MAX_QUERY + 1];
    for (size_t i = 0; i < len; i++)
        raw[i] = strchr("()[]{},;:/\\\"|", text[i]) ? ' ' : text[i];
    raw[len] = '\0';
    char key[KEY_CAP];
    if (fb_text_fold(raw, len, key, sizeof(key)) >= sizeof(key))
        return 0;

    const char *tok[MAX_TOKENS];
    size_t ntok = 0;
    for (char *p = key; *p;) {
        if (ntok == MAX_TOKENS)
            return 0;
        tok[ntok++] = p;
        char *sp = strchr(p, ' ');
        if (!sp)
            break;
        *sp = '\0';
        p = sp + 1;
    }
    if (ntok == 0)
        return 0;

    struct hits h = {0};
    char code[6];
    if (ntok == 1 && normalize_code(tok[0], code)) {
        find_code(g, code, &h);
        if (h.len)
            how->match = FB_GEO_MATCH_CODE;
        return hits_finish(g, &h, out, max);
    }
    for (size_t i = 0; i < ntok; i++)
        tok[i] = expand(tok[i]);

    struct interp in[1 + MAX_INTERP];
    join(tok, 0, ntok, in[0].key);
    in[0].filter.kind = F_NONE;
    size_t nq = qualified_interps(g, tok, ntok, in + 1);
    static const enum match_kind kinds[] = {M_EXACT, M_LOOSE, M_TYPO};
    for (size_t pass = 0; pass < 2; pass++) {
        for (size_t k = 0; k < FB_ARRAY_SIZE(kinds); k++) {
            struct found_how fh = {false, false, false};
            if (pass == 0)
                run_matches(g, kinds[k], in, 0, 1 + nq, true, reference, &h, &fh);
            else
                run_matches(g, kinds[k], in, 1, 1 + nq, false, reference, &h, &fh);
            if (h.len && kinds[k] == M_TYPO)
                hits_keep_closest(&h);
            if (h.len) {
                how->match = kinds[k] == M_EXACT  ? FB_GEO_MATCH_EXACT
                             : kinds[k] == M_TYPO ? FB_GEO_MATCH_TYPO
                             : fh.prefix          ? FB_GEO_MATCH_PREFIX
                                                  : FB_GEO_MATCH_ALIAS;
                how->qualified = pass == 0 && fh.qualified && !fh.whole;
                how->dropped = pass == 1;
                return hits_finish(g, &h, out, max);
            }
        }
    }
    return hits_finish(g, &h, out, max);
}

size_t fb_geo_find(const fb_geo_t *g, const char *text, const fb_commune_t **out, size_t max)
{
    return find(g, text, out, max, false, NULL);
}

size_t fb_geo_find_how(const fb_geo_t *g, const char *text, const fb_commune_t **out, size_t max,
                       fb_geo_how_t *how)
{
    return find(g, text, out, max, false, how);
}

size_t fb__geo_find_reference(const fb_geo_t *g, const char *text, const fb_commune_t **out,
                              size_t max)
{
    return find(g, text, out, max, true, NULL);
}

/* ---- départements and régions named instead of a commune ------------------------------------ */

/* Words that may come before an area's name or code: "celle du 93", "dans le 2A", "non, en
 * Creuse", "le département de la Creuse". */
static bool is_area_lead(const char *tok)
{
    static const char *const words[] = {
        "celle", "celui",  "celles", "ceux",   "c",    "ce",          "est",   "qui",
        "se",    "trouve", "situe",  "situee", "la",   "le",          "les",   "l",
        "du",    "de",     "des",    "d",      "dans", "en",          "a",     "au",
        "aux",   "non",    "plutot", "et",     "mais", "departement", "dept",  "dpt",
        "dep",   "region", "je",     "parle",  "veux", "dire",        "pense", "numero"};
    for (size_t i = 0; i < FB_ARRAY_SIZE(words); i++)
        if (strcmp(tok, words[i]) == 0)
            return true;
    return false;
}

/* Words that may close a message without changing what it names. */
static bool is_area_tail(const char *tok)
{
    return strcmp(tok, "svp") == 0 || strcmp(tok, "stp") == 0 || strcmp(tok, "merci") == 0;
}

bool fb_geo_area_by_code(const fb_geo_t *g, fb_geo_area_kind_t kind, const char *code,
                         fb_geo_area_t *out)
{
    *out = (fb_geo_area_t){.kind = FB_GEO_AREA_NONE};
    if (!g || !code || (kind != FB_GEO_AREA_DEP && kind != FB_GEO_AREA_REGION))
        return false;
    int sec = kind == FB_GEO_AREA_DEP ? FB_GEO_SEC_DEPS : FB_GEO_SEC_REGIONS;
    uint32_t i = lower_bound(g, sec, 0, code);
    if (i >= g->count[sec] || strcmp(str_at(g, rec(g, sec, i, 0)), code) != 0)
        return false;
    *out = (fb_geo_area_t){kind, str_at(g, rec(g, sec, i, 0)), str_at(g, rec(g, sec, i, 1))};
    return true;
}

size_t fb_geo_area_count(const fb_geo_t *g)
{
    return g ? (size_t)g->count[FB_GEO_SEC_DEPS] + g->count[FB_GEO_SEC_REGIONS] : 0;
}

bool fb_geo_area_nth(const fb_geo_t *g, size_t i, fb_geo_area_t *out)
{
    *out = (fb_geo_area_t){.kind = FB_GEO_AREA_NONE};
    if (i >= fb_geo_area_count(g))
        return false;
    int sec = FB_GEO_SEC_DEPS;
    fb_geo_area_kind_t kind = FB_GEO_AREA_DEP;
    if (i >= g->count[FB_GEO_SEC_DEPS]) {
        i -= g->count[FB_GEO_SEC_DEPS];
        sec = FB_GEO_SEC_REGIONS;
        kind = FB_GEO_AREA_REGION;
    }
    *out = (fb_geo_area_t){kind, str_at(g, rec(g, sec, (uint32_t)i, 0)),
                           str_at(g, rec(g, sec, (uint32_t)i, 1))};
    return true;
}

bool fb_geo_area(const fb_geo_t *g, const char *text, bool one_digit, fb_geo_area_t *out)
{
    *out = (fb_geo_area_t){.kind = FB_GEO_AREA_NONE};
    if (!g || !text)
        return false;
    size_t len = strlen(text);
    if (len == 0 || len > MAX_QUERY)
        return false;
    char raw[MAX_QUERY + 1];
    for (size_t i = 0; i < len; i++)
        raw[i] = strchr("()[]{},;:/\\\"|.!?", text[i]) ? ' ' : text[i];
    raw[len] = '\0';
    char key[KEY_CAP];
    if (fb_text_fold(raw, len, key, sizeof(key)) >= sizeof(key))
        return false;
    const char *tok[MAX_TOKENS];
    size_t ntok = 0;
    for (char *p = key; *p;) {
        if (ntok == MAX_TOKENS)
            return false;
        tok[ntok++] = p;
        char *sp = strchr(p, ' ');
        if (!sp)
            break;
        *sp = '\0';
        p = sp + 1;
    }
    size_t start = 0, end = ntok;
    while (start < end && is_area_lead(tok[start]))
        start++;
    while (end > start && is_area_tail(tok[end - 1]))
        end--;
    if (start >= end)
        return false;
    if (end - start == 1) {
        struct filter f;
        const char *t = tok[start];
        if ((strlen(t) >= 2 || one_digit || start > 0) && parse_dep_code(g, t, &f)) {
            if (f.kind == F_CORSICA)
                return fb_geo_area_by_code(g, FB_GEO_AREA_REGION, "94", out);
            return fb_geo_area_by_code(g, FB_GEO_AREA_DEP,
                                       str_at(g, rec(g, FB_GEO_SEC_DEPS, f.idx, 0)), out);
        }
    }
    char words[KEY_CAP];
    join(tok, start, end, words);
    for (uint32_t d = 0; d < g->count[FB_GEO_SEC_DEPS]; d++)
        if (area_name_eq(g->dep_keys[d], words))
            return fb_geo_area_by_code(g, FB_GEO_AREA_DEP, str_at(g, rec(g, FB_GEO_SEC_DEPS, d, 0)),
                                       out);
    for (uint32_t r = 0; r < g->count[FB_GEO_SEC_REGIONS]; r++)
        if (area_name_eq(g->region_keys[r], words))
            return fb_geo_area_by_code(g, FB_GEO_AREA_REGION,
                                       str_at(g, rec(g, FB_GEO_SEC_REGIONS, r, 0)), out);
    return false;
}

bool fb_geo_has_postcode(const fb_commune_t *c, const char *pc)
{
    for (const char *const *p = c && pc ? c->postcodes : NULL; p && *p; p++)
        if (strcmp(*p, pc) == 0)
            return true;
    return false;
}

bool fb_geo_in_area(const fb_commune_t *c, const fb_geo_area_t *a)
{
    if (!c || !a)
        return false;
    switch (a->kind) {
    case FB_GEO_AREA_DEP:
        return strcmp(c->dep, a->code) == 0;
    case FB_GEO_AREA_REGION:
        return strcmp(c->region, a->code) == 0;
    case FB_GEO_AREA_NONE:
        return false;
    }
    return false;
}

json_t *fb_geo_commune_json(const fb_commune_t *c)
{
    if (!c)
        return NULL;
    json_t *o = fb_json_strings(8, "insee", c->insee, "nom", c->name, "departement", c->dep,
                                "departement_nom", c->dep_name, "region", c->region, "region_nom",
                                c->region_name, "epci", c->epci, "epci_nom", c->epci_name);
    if (o)
        (void)json_object_set_new_nocheck(o, "population", json_integer((json_int_t)c->population));
    return o;
}
