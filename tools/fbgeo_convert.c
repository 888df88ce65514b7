/* SPDX-License-Identifier: MIT */
/*
 * fbgeo_convert.c - the build-time converter of the communes index: reads the JSON files of the
 * npm package @etalab/decoupage-administratif (communes, départements, régions, EPCI) and writes
 * the compact file that daemon/engine/geo.c loads in a few milliseconds (format:
 * daemon/engine/geo.h and docs/internals/GEO.md).
 *
 * It is C rather than a script so that the folded name keys come from the very fb_text_fold()
 * the daemon uses for queries (daemon/engine/text.c is compiled in), and so that the build needs
 * nothing beyond what it already has (a C compiler and jansson). Run by cmake/FbGeo.cmake:
 *
 *     fbgeo_convert DATA_DIR OUT_FILE SOURCE_LABEL
 *
 * The output is written to OUT_FILE.tmp and renamed, so an interrupted build never leaves a
 * truncated index behind. Any inconsistency in the data fails the conversion (exit status 1).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "engine/geo.h"
#include "engine/text.h"
#include "frichebot/alloc.h"

/* A growable array of 32-bit words. */
struct words {
    uint32_t *v;
    size_t len, cap;
};

/* A region, département or EPCI while converting. */
struct area {
    const char *code; /* borrowed from the JSON */
    const char *name;
    const char *parent; /* département: its region code */
};

/* A commune while converting. */
struct commune {
    const char *code; /* borrowed from the JSON */
    const char *name;
    char *key; /* fb_text_fold(name), owned */
    const char *dep;
    json_t *postcodes; /* borrowed array */
    uint32_t pop;
    uint32_t dep_idx, epci_idx;
};

/* An alias: a former name or code that leads to a current commune. */
struct alias {
    char *text; /* owned */
    uint32_t commune;
};

/* The string pool: NUL-terminated strings end to end, interned through an open-addressing hash. */
struct pool {
    char *data;
    size_t len, cap;
    uint32_t *slots; /* offset + 1, 0 = empty */
    size_t nslots;   /* a power of two */
    size_t used;     /* kept under half of nslots */
};

static struct commune *communes;
static size_t ncommunes;

/* Prints a message and exits with status 1. */
static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fbgeo_convert: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* Appends one word. */
static void words_push(struct words *w, uint32_t x)
{
    if (w->len == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 1024;
        w->v = fb_realloc(w->v, w->cap * sizeof(*w->v));
    }
    w->v[w->len++] = x;
}

/* FNV-1a, for the pool's hash. */
static uint32_t hash_str(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* Returns the offset of `s` in the pool, adding it the first time. */
static uint32_t pool_add(struct pool *p, const char *s)
{
    size_t mask = p->nslots - 1;
    for (size_t i = hash_str(s) & mask;; i = (i + 1) & mask) {
        uint32_t slot = p->slots[i];
        if (slot == 0) {
            size_t n = strlen(s) + 1;
            if (++p->used > p->nslots / 2)
                die("string pool hash full: raise nslots");
            if (p->len + n > UINT32_MAX / 2)
                die("string pool too large");
            if (p->len + n > p->cap) {
                while (p->len + n > p->cap)
                    p->cap = p->cap ? p->cap * 2 : 65536;
                p->data = fb_realloc(p->data, p->cap);
            }
            memcpy(p->data + p->len, s, n);
            p->slots[i] = (uint32_t)p->len + 1;
            p->len += n;
            return p->slots[i] - 1;
        }
        FB_ASSERT(p->data != NULL); /* a used slot points into the pool */
        if (strcmp(p->data + slot - 1, s) == 0)
            return slot - 1;
    }
}

/* Loads DIR/NAME as a JSON array or dies. Returns a new reference. */
static json_t *load_array(const char *dir, const char *name)
{
    char path[4096];
    json_error_t err;
    if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
        die("path too long: %s/%s", dir, name);
    json_t *a = json_load_file(path, 0, &err);
    if (!a)
        die("%s:%d:%d: %s", path, err.line, err.column, err.text);
    if (!json_is_array(a))
        die("%s: not a JSON array", path);
    return a;
}

/* The string member `key` of `obj`, or dies (when `required`) or returns NULL. */
static const char *get_str(json_t *obj, const char *key, const char *what, int required)
{
    const char *s = json_string_value(json_object_get(obj, key));
    if (!s && required)
        die("%s: an entry has no string \"%s\"", what, key);
    return s;
}

/* Orders areas by code. */
static int cmp_area(const void *a, const void *b)
{
    return strcmp(((const struct area *)a)->code, ((const struct area *)b)->code);
}

/* Orders communes by INSEE code. */
static int cmp_commune(const void *a, const void *b)
{
    return strcmp(((const struct commune *)a)->code, ((const struct commune *)b)->code);
}

/* Orders commune indexes by rank: population descending, then INSEE code. */
static int cmp_rank(uint32_t a, uint32_t b)
{
    if (communes[a].pop != communes[b].pop)
        return communes[a].pop > communes[b].pop ? -1 : 1;
    return strcmp(communes[a].code, communes[b].code);
}

/* Orders commune indexes by folded name, then rank. */
static int cmp_by_key(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    int c = strcmp(communes[x].key, communes[y].key);
    return c ? c : cmp_rank(x, y);
}

/* Orders aliases (and postal code pairs) by text, then rank. */
static int cmp_alias(const void *a, const void *b)
{
    const struct alias *x = a, *y = b;
    int c = strcmp(x->text, y->text);
    return c ? c : cmp_rank(x->commune, y->commune);
}

/* Finds `code` in a sorted area array; dies when absent. */
static uint32_t find_area(const struct area *v, size_t n, const char *code, const char *what)
{
    struct area k = {.code = code};
    const struct area *hit = bsearch(&k, v, n, sizeof(*v), cmp_area);
    if (!hit)
        die("unknown %s code \"%s\"", what, code);
    return (uint32_t)(hit - v);
}

/* The index of the commune with INSEE code `code`, or FB_GEO_NONE. */
static uint32_t find_commune(const char *code)
{
    struct commune k = {.code = code};
    const struct commune *hit = bsearch(&k, communes, ncommunes, sizeof(*communes), cmp_commune);
    return hit ? (uint32_t)(hit - communes) : FB_GEO_NONE;
}

/* Reads an array of areas ({code, nom[, parent_key]}) and sorts it by code. */
static struct area *read_areas(json_t *arr, const char *what, const char *parent_key, size_t *n)
{
    size_t len = json_array_size(arr);
    struct area *v = fb_calloc(len ? len : 1, sizeof(*v));
    for (size_t i = 0; i < len; i++) {
        json_t *o = json_array_get(arr, i);
        v[i].code = get_str(o, "code", what, 1);
        v[i].name = get_str(o, "nom", what, 1);
        v[i].parent = parent_key ? get_str(o, parent_key, what, 1) : NULL;
    }
    qsort(v, len, sizeof(*v), cmp_area);
    for (size_t i = 1; i < len; i++)
        if (strcmp(v[i - 1].code, v[i].code) == 0)
            die("%s: duplicate code \"%s\"", what, v[i].code);
    *n = len;
    return v;
}

/* Returns fb_text_fold(s) as a new string. */
static char *fold(const char *s)
{
    return fb_text_fold_dup(s);
}

/* Appends an alias, taking ownership of `text`. */
static void alias_push(struct alias **v, size_t *n, size_t *cap, char *text, uint32_t commune)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 1024;
        *v = fb_realloc(*v, *cap * sizeof(**v));
    }
    (*v)[*n].text = text;
    (*v)[*n].commune = commune;
    (*n)++;
}

/* Sorts aliases and drops duplicate (text, commune) pairs. Returns the new count. */
static size_t alias_sort_unique(struct alias *v, size_t n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), cmp_alias);
    size_t out = 0;
    for (size_t i = 0; i < n; i++) {
        if (out && strcmp(v[out - 1].text, v[i].text) == 0 && v[out - 1].commune == v[i].commune) {
            fb_free(v[i].text);
            continue;
        }
        v[out++] = v[i];
    }
    return out;
}

/* Reads communes.json: the current communes (sorted by code) and the aliases of former ones. */
static void read_communes(json_t *arr, const struct area *deps, size_t ndeps)
{
    size_t len = json_array_size(arr);
    communes = fb_calloc(len ? len : 1, sizeof(*communes));
    for (size_t i = 0; i < len; i++) {
        json_t *o = json_array_get(arr, i);
        const char *type = get_str(o, "type", "communes.json", 1);
        if (strcmp(type, "commune-actuelle") != 0)
            continue;
        struct commune *c = &communes[ncommunes++];
        c->code = get_str(o, "code", "communes.json", 1);
        c->name = get_str(o, "nom", "communes.json", 1);
        c->dep = get_str(o, "departement", "communes.json", 1);
        c->key = fold(c->name);
        c->dep_idx = find_area(deps, ndeps, c->dep, "département");
        c->epci_idx = FB_GEO_NONE;
        c->postcodes = json_object_get(o, "codesPostaux");
        if (c->postcodes && !json_is_array(c->postcodes))
            die("commune %s: codesPostaux is not an array", c->code);
        json_int_t pop = json_integer_value(json_object_get(o, "population"));
        if (pop < 0 || pop > (json_int_t)UINT32_MAX)
            die("commune %s: bad population", c->code);
        c->pop = (uint32_t)pop;
        if (strlen(c->code) != 5 || c->key[0] == '\0')
            die("commune %s: bad code or empty name", c->code);
    }
    qsort(communes, ncommunes, sizeof(*communes), cmp_commune);
    for (size_t i = 1; i < ncommunes; i++)
        if (strcmp(communes[i - 1].code, communes[i].code) == 0)
            die("communes.json: duplicate current commune \"%s\"", communes[i].code);
    if (ncommunes < 30000)
        die("communes.json: only %zu current communes, expected about 35000", ncommunes);
}

/*
 * Collects the aliases. Names: the communes déléguées and associées (former communes merged
 * into a current one) and current names without their leading article ("havre" for Le Havre).
 * Codes: the former INSEE codes of current communes, of communes déléguées and associées, and
 * the codes of the municipal arrondissements of Paris, Lyon and Marseille.
 */
static void read_aliases(json_t *arr, struct alias **names, size_t *nnames, struct alias **codes,
                         size_t *ncodes)
{
    static const char *const articles[] = {"le ", "la ", "les ", "l "};
    size_t cap_names = 0, cap_codes = 0;
    for (size_t i = 0; i < ncommunes; i++) {
        for (size_t a = 0; a < FB_ARRAY_SIZE(articles); a++) {
            size_t n = strlen(articles[a]);
            if (strncmp(communes[i].key, articles[a], n) == 0 && communes[i].key[n])
                alias_push(names, nnames, &cap_names, fb_strdup(communes[i].key + n), (uint32_t)i);
        }
    }
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *o = json_array_get(arr, i);
        const char *type = get_str(o, "type", "communes.json", 1);
        const char *code = get_str(o, "code", "communes.json", 1);
        if (strcmp(type, "commune-actuelle") == 0) {
            uint32_t self = find_commune(code);
            json_t *old = json_object_get(o, "anciensCodes");
            for (size_t k = 0; k < json_array_size(old); k++) {
                const char *oc = json_string_value(json_array_get(old, k));
                if (oc && find_commune(oc) == FB_GEO_NONE)
                    alias_push(codes, ncodes, &cap_codes, fb_strdup(oc), self);
            }
            continue;
        }
        const char *parent = get_str(o, "chefLieu", "communes.json", 0);
        if (!parent)
            parent = get_str(o, "commune", "communes.json", 0);
        uint32_t target = parent ? find_commune(parent) : FB_GEO_NONE;
        if (target == FB_GEO_NONE)
            die("communes.json: %s %s has no current commune", type, code);
        if (find_commune(code) == FB_GEO_NONE)
            alias_push(codes, ncodes, &cap_codes, fb_strdup(code), target);
        if (strcmp(type, "arrondissement-municipal") == 0)
            continue;
        char *key = fold(get_str(o, "nom", "communes.json", 1));
        if (key[0] && strcmp(key, communes[target].key) != 0)
            alias_push(names, nnames, &cap_names, key, target);
        else
            fb_free(key);
    }
    *nnames = alias_sort_unique(*names, *nnames);
    *ncodes = alias_sort_unique(*codes, *ncodes);
}

/* Links each commune to its EPCI from the member lists of epci.json. */
static void link_epcis(const struct area *epcis, size_t nepcis, json_t *arr)
{
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *o = json_array_get(arr, i);
        uint32_t e = find_area(epcis, nepcis, get_str(o, "code", "epci.json", 1), "EPCI");
        json_t *members = json_object_get(o, "membres");
        for (size_t k = 0; k < json_array_size(members); k++) {
            const char *code = get_str(json_array_get(members, k), "code", "epci.json", 1);
            uint32_t c = find_commune(code);
            if (c == FB_GEO_NONE)
                die("epci.json: EPCI %s lists unknown commune %s", epcis[e].code, code);
            if (communes[c].epci_idx != FB_GEO_NONE && communes[c].epci_idx != e)
                die("epci.json: commune %s is in two EPCIs", code);
            communes[c].epci_idx = e;
        }
    }
}

/* Writes the whole file to `path` through `path`.tmp and a rename. */
static void write_file(const char *path, const uint32_t *hdr, struct words *secs,
                       const struct pool *pool)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        die("path too long: %s", path);
    FILE *f = fopen(tmp, "wb");
    if (!f)
        die("%s: %s", tmp, strerror(errno));
    int ok = fwrite(hdr, sizeof(uint32_t), FB_GEO_HDR_WORDS, f) == FB_GEO_HDR_WORDS;
    for (int s = 1; s < FB_GEO_SEC_COUNT && ok; s++)
        ok = fwrite(secs[s].v, sizeof(uint32_t), secs[s].len, f) == secs[s].len;
    static const char pad[4] = {0};
    size_t padding = (4 - pool->len % 4) % 4;
    ok = ok && fwrite(pool->data, 1, pool->len, f) == pool->len;
    ok = ok && fwrite(pad, 1, padding, f) == padding;
    if (fclose(f) != 0 || !ok)
        die("%s: write failed", tmp);
    if (rename(tmp, path) != 0)
        die("rename %s: %s", path, strerror(errno));
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: fbgeo_convert DATA_DIR OUT_FILE SOURCE_LABEL\n");
        return 2;
    }
    const char *dir = argv[1], *out = argv[2], *label = argv[3];

    json_t *jregions = load_array(dir, "regions.json");
    json_t *jdeps = load_array(dir, "departements.json");
    json_t *jepcis = load_array(dir, "epci.json");
    json_t *jcommunes = load_array(dir, "communes.json");
    size_t nregions, ndeps, nepcis, nnames = 0, ncodes = 0;
    struct area *regions = read_areas(jregions, "regions.json", NULL, &nregions);
    struct area *deps = read_areas(jdeps, "departements.json", "region", &ndeps);
    struct area *epcis = read_areas(jepcis, "epci.json", NULL, &nepcis);
    struct alias *names = NULL, *codes = NULL;
    read_communes(jcommunes, deps, ndeps);
    read_aliases(jcommunes, &names, &nnames, &codes, &ncodes);
    link_epcis(epcis, nepcis, jepcis);

    struct pool pool = {.nslots = 1u << 18};
    pool.slots = fb_calloc(pool.nslots, sizeof(*pool.slots));
    pool_add(&pool, ""); /* offset 0 is the empty string */
    uint32_t source = pool_add(&pool, label);

    struct words secs[FB_GEO_SEC_COUNT] = {{0}};
    for (size_t i = 0; i < nregions; i++) {
        words_push(&secs[FB_GEO_SEC_REGIONS], pool_add(&pool, regions[i].code));
        words_push(&secs[FB_GEO_SEC_REGIONS], pool_add(&pool, regions[i].name));
    }
    for (size_t i = 0; i < ndeps; i++) {
        words_push(&secs[FB_GEO_SEC_DEPS], pool_add(&pool, deps[i].code));
        words_push(&secs[FB_GEO_SEC_DEPS], pool_add(&pool, deps[i].name));
        words_push(&secs[FB_GEO_SEC_DEPS], find_area(regions, nregions, deps[i].parent, "region"));
    }
    for (size_t i = 0; i < nepcis; i++) {
        words_push(&secs[FB_GEO_SEC_EPCIS], pool_add(&pool, epcis[i].code));
        words_push(&secs[FB_GEO_SEC_EPCIS], pool_add(&pool, epcis[i].name));
    }
    struct alias *pcs = NULL;
    size_t npcs = 0, cap_pcs = 0;
    for (size_t i = 0; i < ncommunes; i++) {
        struct commune *c = &communes[i];
        struct words *w = &secs[FB_GEO_SEC_COMMUNES];
        words_push(w, pool_add(&pool, c->code));
        words_push(w, pool_add(&pool, c->name));
        words_push(w, pool_add(&pool, c->key));
        words_push(w, c->dep_idx);
        words_push(w, c->epci_idx);
        words_push(w, c->pop);
        words_push(w, (uint32_t)secs[FB_GEO_SEC_POSTCODES].len);
        size_t npc = json_array_size(c->postcodes);
        uint32_t kept = 0;
        for (size_t k = 0; k < npc; k++) {
            const char *pc = json_string_value(json_array_get(c->postcodes, k));
            if (!pc || strlen(pc) != 5)
                die("commune %s: bad postal code", c->code);
            int dup = 0;
            for (size_t j = 0; j < k; j++)
                dup |= strcmp(pc, json_string_value(json_array_get(c->postcodes, j))) == 0;
            if (dup)
                continue;
            words_push(&secs[FB_GEO_SEC_POSTCODES], pool_add(&pool, pc));
            alias_push(&pcs, &npcs, &cap_pcs, fb_strdup(pc), (uint32_t)i);
            kept++;
        }
        words_push(w, kept);
    }
    if (npcs)
        qsort(pcs, npcs, sizeof(*pcs), cmp_alias);
    for (size_t i = 0; i < npcs; i++) {
        words_push(&secs[FB_GEO_SEC_PC_INDEX], pool_add(&pool, pcs[i].text));
        words_push(&secs[FB_GEO_SEC_PC_INDEX], pcs[i].commune);
    }
    uint32_t *by_key = fb_malloc(ncommunes * sizeof(*by_key));
    for (size_t i = 0; i < ncommunes; i++)
        by_key[i] = (uint32_t)i;
    qsort(by_key, ncommunes, sizeof(*by_key), cmp_by_key);
    for (size_t i = 0; i < ncommunes; i++)
        words_push(&secs[FB_GEO_SEC_NAME_INDEX], by_key[i]);
    for (size_t i = 0; i < nnames; i++) {
        words_push(&secs[FB_GEO_SEC_ALIAS_NAMES], pool_add(&pool, names[i].text));
        words_push(&secs[FB_GEO_SEC_ALIAS_NAMES], names[i].commune);
    }
    for (size_t i = 0; i < ncodes; i++) {
        words_push(&secs[FB_GEO_SEC_ALIAS_CODES], pool_add(&pool, codes[i].text));
        words_push(&secs[FB_GEO_SEC_ALIAS_CODES], codes[i].commune);
    }

    /* Layout: header, the word sections in table order, then the strings. */
    static const uint32_t rec_words[FB_GEO_SEC_COUNT] = {
        [FB_GEO_SEC_REGIONS] = 2,    [FB_GEO_SEC_DEPS] = 3,
        [FB_GEO_SEC_EPCIS] = 2,      [FB_GEO_SEC_COMMUNES] = FB_GEO_C_WORDS,
        [FB_GEO_SEC_POSTCODES] = 1,  [FB_GEO_SEC_PC_INDEX] = 2,
        [FB_GEO_SEC_NAME_INDEX] = 1, [FB_GEO_SEC_ALIAS_NAMES] = 2,
        [FB_GEO_SEC_ALIAS_CODES] = 2};
    uint32_t hdr[FB_GEO_HDR_WORDS] = {0};
    memcpy(hdr, FB_GEO_FILE_MAGIC, 8);
    hdr[FB_GEO_HDR_VERSION] = FB_GEO_FILE_VERSION;
    hdr[FB_GEO_HDR_BOM] = FB_GEO_FILE_BOM;
    hdr[FB_GEO_HDR_SOURCE] = source;
    hdr[FB_GEO_HDR_SECTIONS] = FB_GEO_SEC_COUNT;
    size_t off = FB_GEO_HDR_WORDS * sizeof(uint32_t);
    for (int s = 1; s < FB_GEO_SEC_COUNT; s++) {
        hdr[FB_GEO_HDR_TABLE + 2 * s] = (uint32_t)off;
        hdr[FB_GEO_HDR_TABLE + 2 * s + 1] = (uint32_t)(secs[s].len / rec_words[s]);
        off += secs[s].len * sizeof(uint32_t);
    }
    hdr[FB_GEO_HDR_TABLE + 2 * FB_GEO_SEC_STRINGS] = (uint32_t)off;
    hdr[FB_GEO_HDR_TABLE + 2 * FB_GEO_SEC_STRINGS + 1] = (uint32_t)pool.len;
    off += pool.len + (4 - pool.len % 4) % 4;
    if (off > UINT32_MAX)
        die("index too large");
    hdr[FB_GEO_HDR_SIZE] = (uint32_t)off;
    write_file(out, hdr, secs, &pool);
    printf("fbgeo_convert: %s: %zu communes, %zu départements, %zu régions, %zu EPCI, "
           "%zu postal code links, %zu former names, %zu former codes, %zu bytes\n",
           out, ncommunes, ndeps, nregions, nepcis, npcs, nnames, ncodes, off);

    for (size_t i = 0; i < ncommunes; i++)
        fb_free(communes[i].key);
    for (size_t i = 0; i < nnames; i++)
        fb_free(names[i].text);
    for (size_t i = 0; i < ncodes; i++)
        fb_free(codes[i].text);
    for (size_t i = 0; i < npcs; i++)
        fb_free(pcs[i].text);
    for (int s = 0; s < FB_GEO_SEC_COUNT; s++)
        fb_free(secs[s].v);
    fb_free(by_key);
    fb_free(pcs);
    fb_free(names);
    fb_free(codes);
    fb_free(pool.data);
    fb_free(pool.slots);
    fb_free(communes);
    fb_free(regions);
    fb_free(deps);
    fb_free(epcis);
    json_decref(jregions);
    json_decref(jdeps);
    json_decref(jepcis);
    json_decref(jcommunes);
    return 0;
}
