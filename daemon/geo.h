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

/** The default index path compiled in (the build's output), for when the config names none. */
const char *fb_geo_default_path(void);

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

#endif /* FB_GEO_H */
