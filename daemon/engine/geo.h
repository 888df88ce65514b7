/* SPDX-License-Identifier: MIT */
/*
 * geo.h - the index of French communes, départements and régions, from the official data published
 * by Etalab (@etalab/decoupage-administratif, npm, pinned), converted at build time to a compact
 * file that loads fast.
 *
 * Lookup by INSEE code ("69123", "2A004"), by postal code ("69001"; several communes may share one)
 * and by name (accent-, case- and hyphen-insensitive, typo-tolerant, homonyms ranked by
 * population). The index is immutable once loaded and shared read-only (the engine is given it).
 */
#ifndef FB_GEO_H
#define FB_GEO_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "frichebot/buf.h"

typedef struct fb_geo_s fb_geo_t;

/** One commune. Strings are borrowed from the index. */
typedef struct fb_commune_s {
    const char *insee;            /* "69123", "2A004", "97411" */
    const char *name;             /* "Lyon" */
    const char *dep;              /* "69", "2A", "974" */
    const char *dep_name;         /* "Rhône" */
    const char *region;           /* "84" */
    const char *region_name;      /* "Auvergne-Rhône-Alpes" */
    const char *epci;             /* SIREN of the intercommunality, or "" */
    const char *epci_name;        /* its name, or "" */
    const char *const *postcodes; /* NULL-terminated */
    unsigned population;          /* 0 when unknown */
} fb_commune_t;

/**
 * Loads the compact index file written by the build (see docs/internals/GEO.md). Returns a new
 * index or NULL after appending a message to `errors`.
 */
fb_geo_t *fb_geo_load(const char *path, fb_buf_t *errors);

void fb_geo_free(fb_geo_t *g);

/** Number of communes loaded. */
size_t fb_geo_count(const fb_geo_t *g);

/**
 * Finds the communes a user may mean by `text` (an INSEE code, a postal code, a name with or
 * without its département: "Saint-Denis 93", "saint denis (974)"). Fills `out` with at most `max`
 * matches, best first (exact before typo, then by population), and returns how many were found
 * in total (may exceed max). 0 means nothing matched.
 */
size_t fb_geo_find(const fb_geo_t *g, const char *text, const fb_commune_t **out, size_t max);

/** The commune with INSEE code `insee`, or NULL. */
const fb_commune_t *fb_geo_by_insee(const fb_geo_t *g, const char *insee);

/**
 * The commune as a new JSON object, the form stored in answers:
 * {"insee","nom","departement","departement_nom","region","region_nom","epci","epci_nom",
 *  "population"}.
 */
json_t *fb_geo_commune_json(const fb_commune_t *c);

/**
 * The communes whose postal codes include `postcode` (exactly five digits), most populous first.
 * Fills `out` with at most `max` of them and returns how many there are in total.
 */
size_t fb_geo_by_postcode(const fb_geo_t *g, const char *postcode, const fb_commune_t **out,
                          size_t max);

/** How fb_geo_find_how() matched (the kind of matching that found the results). */
typedef enum fb_geo_match_e {
    FB_GEO_MATCH_NONE,   /* nothing found */
    FB_GEO_MATCH_CODE,   /* a lone INSEE or postal code (or a former INSEE code) */
    FB_GEO_MATCH_EXACT,  /* a name, exactly (case, accents, hyphens aside) */
    FB_GEO_MATCH_ALIAS,  /* a former commune's name, or the name without its article */
    FB_GEO_MATCH_PREFIX, /* names that start with the query's words ("Boulogne") */
    FB_GEO_MATCH_TYPO    /* names within fb_text_typo_budget() edits */
} fb_geo_match_t;

typedef struct fb_geo_how_s {
    fb_geo_match_t match;
    bool qualified; /* the name read is only part of the text, and the rest (a département, a
                     * postal code, a région) held: "Saint-Denis 93" */
    bool dropped;   /* the text carried a qualifier that no match satisfied, so it was ignored:
                     * "celle du 93" finds Cellé (41), "Paris 15" finds Paris */
} fb_geo_how_t;

/** fb_geo_find(), also saying how the results were found (`how` may be NULL). */
size_t fb_geo_find_how(const fb_geo_t *g, const char *text, const fb_commune_t **out, size_t max,
                       fb_geo_how_t *how);

/** A département or a région, as the user may name it instead of a commune. */
typedef enum fb_geo_area_kind_e {
    FB_GEO_AREA_NONE,
    FB_GEO_AREA_DEP,
    FB_GEO_AREA_REGION
} fb_geo_area_kind_t;

typedef struct fb_geo_area_s {
    fb_geo_area_kind_t kind;
    const char *code; /* "23", "2A", "974"; région: "75" (borrowed from the index) */
    const char *name; /* "Creuse", "Nouvelle-Aquitaine" (borrowed) */
} fb_geo_area_t;

/**
 * Reads `text` as naming a département or a région and nothing else: its code ("93", "2A",
 * "974"; "20" is the région Corse), its name with or without article ("Seine-Saint-Denis",
 * "la Creuse", "Bretagne"), after leading words such as "celle du", "dans le", "en", "le
 * département de" ("celle du 93", "dans le 2A"). A one-digit code counts only after such words
 * ("dans le 5") or when `one_digit` is set, since a lone "5" is more likely something else. A
 * département wins over the région of the same name (Guadeloupe, La Réunion...). Returns false
 * (and `out->kind` FB_GEO_AREA_NONE) when the text is anything else.
 */
bool fb_geo_area(const fb_geo_t *g, const char *text, bool one_digit, fb_geo_area_t *out);

/** The département (`kind` FB_GEO_AREA_DEP) or région with code `code`. False when unknown. */
bool fb_geo_area_by_code(const fb_geo_t *g, fb_geo_area_kind_t kind, const char *code,
                         fb_geo_area_t *out);

/** The number of départements and régions, and the `i`-th of them (départements first, by code;
 *  then the régions): for a caller that indexes their names. False when `i` is out of range. */
size_t fb_geo_area_count(const fb_geo_t *g);
bool fb_geo_area_nth(const fb_geo_t *g, size_t i, fb_geo_area_t *out);

/** True when commune `c` has postal code `pc`. */
bool fb_geo_has_postcode(const fb_commune_t *c, const char *pc);

/** True when commune `c` lies in area `a`. */
bool fb_geo_in_area(const fb_commune_t *c, const fb_geo_area_t *a);

/**
 * Internal, for tests only: fb_geo_find() with the plain linear typo scan it had before the typo
 * index (docs/internals/GEO.md, "Typo index"). Same contract and, by construction, the same
 * results; tests/unit/test_geo.c checks that on thousands of inputs.
 */
size_t fb__geo_find_reference(const fb_geo_t *g, const char *text, const fb_commune_t **out,
                              size_t max);

/** The data source of the index, "@etalab/decoupage-administratif 6.0.0" (borrowed). */
const char *fb_geo_source(const fb_geo_t *g);

/*
 * The compact index file, shared by daemon/engine/geo.c (reader) and tools/fbgeo_convert.c
 * (writer); docs/internals/GEO.md describes it. The file is an array of 32-bit words in the byte
 * order of the machine that built it (checked with FB_GEO_FILE_BOM): a header of FB_GEO_HDR_WORDS
 * words, then sections, each 4-byte aligned, located by the header's section table. Strings are
 * byte offsets into the STRINGS section (NUL-terminated, offset 0 is ""); indexes are record
 * numbers.
 */
#define FB_GEO_FILE_MAGIC   "FBGEOIDX" /* 8 bytes, words 0 and 1 */
#define FB_GEO_FILE_VERSION 1u
#define FB_GEO_FILE_BOM     0x01020304u
#define FB_GEO_NONE         0xFFFFFFFFu /* "no EPCI" */

/** Header words after the magic. */
enum fb_geo_hdr_e {
    FB_GEO_HDR_VERSION = 2,  /* FB_GEO_FILE_VERSION */
    FB_GEO_HDR_BOM = 3,      /* FB_GEO_FILE_BOM */
    FB_GEO_HDR_SIZE = 4,     /* file size in bytes */
    FB_GEO_HDR_SOURCE = 5,   /* string: "@etalab/decoupage-administratif 6.0.0" */
    FB_GEO_HDR_SECTIONS = 6, /* FB_GEO_SEC_COUNT */
    FB_GEO_HDR_TABLE = 8     /* then {byte offset, record count} per section */
};

/** Sections, in table order, with the words per record of each. */
enum fb_geo_section_e {
    FB_GEO_SEC_STRINGS,     /* bytes (count = bytes), last byte NUL */
    FB_GEO_SEC_REGIONS,     /* {code, name}, sorted by code */
    FB_GEO_SEC_DEPS,        /* {code, name, region index}, sorted by code */
    FB_GEO_SEC_EPCIS,       /* {siren, name}, sorted by siren */
    FB_GEO_SEC_COMMUNES,    /* FB_GEO_C_WORDS words, sorted by INSEE code */
    FB_GEO_SEC_POSTCODES,   /* {string}: the communes' postal code lists, end to end */
    FB_GEO_SEC_PC_INDEX,    /* {postal code, commune index}, sorted by postal code */
    FB_GEO_SEC_NAME_INDEX,  /* {commune index}, sorted by folded name */
    FB_GEO_SEC_ALIAS_NAMES, /* {folded name, commune index}, sorted by name: former communes */
    FB_GEO_SEC_ALIAS_CODES, /* {code, commune index}, sorted by code: former INSEE codes */
    FB_GEO_SEC_COUNT
};
#define FB_GEO_HDR_WORDS (FB_GEO_HDR_TABLE + 2 * FB_GEO_SEC_COUNT)

/** The words of one commune record. */
enum fb_geo_commune_field_e {
    FB_GEO_C_INSEE,    /* string */
    FB_GEO_C_NAME,     /* string, official spelling */
    FB_GEO_C_KEY,      /* string, fb_text_fold() of the name */
    FB_GEO_C_DEP,      /* département index */
    FB_GEO_C_EPCI,     /* EPCI index or FB_GEO_NONE */
    FB_GEO_C_POP,      /* population, 0 when unknown */
    FB_GEO_C_PC_FIRST, /* first entry in FB_GEO_SEC_POSTCODES */
    FB_GEO_C_PC_COUNT, /* number of entries */
    FB_GEO_C_WORDS
};

#endif /* FB_GEO_H */
