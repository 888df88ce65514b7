/* SPDX-License-Identifier: MIT */
/*
 * bench_geo.c - what the communes index costs: start-up time and memory of fb_geo_load(), and
 * the latency of fb_geo_find() for each kind of query (code, exact name, qualified name, prefix,
 * typo, nothing found). Not part of `make test`; run it on a build without sanitizers.
 *
 *   bench_geo [-f INDEX] [-l LOADS] [-q QUERIES]
 *
 * Loads the index LOADS times (default 21) and reports the median, minimum and maximum load
 * time and the resident memory one loaded index adds; then runs each query QUERIES times
 * (default 2000) and reports the median per-query latency in microseconds, next to that of the
 * reference linear typo scan (fb__geo_find_reference(), run QUERIES / 10 times). Prints one
 * "name=value" line per figure on stdout; exits non-zero if the index cannot be loaded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/geo.h"
#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "io/paths.h"

/* Monotonic time in nanoseconds. */
static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Resident set size in KiB, from /proc/self/statm (0 when unavailable). */
static long rss_kib(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = 0;
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Orders doubles ascending. */
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Sorts `v` and returns its median. */
static double median(double *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    const char *path = fb_data_path(FB_DATA_GEO);
    long loads = 21, queries = 2000;
    int opt;
    while ((opt = getopt(argc, argv, "f:l:q:")) != -1) {
        switch (opt) {
        case 'f':
            path = optarg;
            break;
        case 'l':
            loads = strtol(optarg, NULL, 10);
            break;
        case 'q':
            queries = strtol(optarg, NULL, 10);
            break;
        default:
            fprintf(stderr, "usage: bench_geo [-f INDEX] [-l LOADS] [-q QUERIES]\n");
            return 2;
        }
    }
    if (loads < 1 || queries < 1) {
        fprintf(stderr, "bench_geo: -l and -q must be positive\n");
        return 2;
    }

    fb_buf_t errors;
    fb_buf_init(&errors, 4096);
    double *t = fb_malloc((size_t)(loads > queries ? loads : queries) * sizeof(double));
    long rss_before = rss_kib();
    fb_geo_t *kept = NULL;
    for (long i = 0; i < loads; i++) {
        double t0 = now_ns();
        fb_geo_t *g = fb_geo_load(path, &errors);
        t[i] = (now_ns() - t0) / 1e6;
        if (!g) {
            fprintf(stderr, "bench_geo: %s", fb_buf_str(&errors));
            return 1;
        }
        if (i == 0)
            kept = g; /* measure the memory of one index */
        else
            fb_geo_free(g);
    }
    long rss_after = rss_kib();
    double lmin = t[0], lmax = t[0];
    for (long i = 0; i < loads; i++) {
        lmin = t[i] < lmin ? t[i] : lmin;
        lmax = t[i] > lmax ? t[i] : lmax;
    }
    printf("source=%s\ncommunes=%zu\n", fb_geo_source(kept), fb_geo_count(kept));
    printf("load_ms_median=%.2f\nload_ms_min=%.2f\nload_ms_max=%.2f\n", median(t, (size_t)loads),
           lmin, lmax);
    printf("rss_kib_index=%ld\n", rss_after - rss_before);

    static const char *const q[][2] = {
        {"code_postal", "51300"},
        {"code_insee", "2A004"},
        {"nom_exact", "Saint-Denis"},
        {"nom_qualifie", "Saint-Denis (974)"},
        {"nom_region", "Saint-Denis La Réunion"},
        {"abreviation", "st etienne"},
        {"prefixe", "Boulogne"},
        {"faute", "Marseile"},
        {"faute_qualifiee", "Marseile 13"},
        {"introuvable", "xyzzy plugh"},
        {"exact_lyon", "lyon"},
        {"exact_saint_denis", "saint-denis"},
        {"faute_debut", "Mrseille"},
        {"faute_longue", "Saint-Germain-en-Lai"},
        {"charabia", "zzzzqqq"},
        {"hostile", "<script>alert(1)</script>"},
        {"phrase", "Les Jardins du Confluent"},
        {"phrase_longue", "je voudrais savoir si vous livrez a Marseile demain"},
    };
    const fb_commune_t *out[8];
    for (size_t k = 0; k < sizeof(q) / sizeof(q[0]); k++) {
        size_t found = 0;
        for (long i = 0; i < queries; i++) {
            double t0 = now_ns();
            found = fb_geo_find(kept, q[k][1], out, 8);
            t[i] = (now_ns() - t0) / 1e3;
        }
        double fast = median(t, (size_t)queries);
        /* The same query through the reference linear typo scan, for before/after figures. */
        long ref_queries = queries / 10 > 0 ? queries / 10 : 1;
        for (long i = 0; i < ref_queries; i++) {
            double t0 = now_ns();
            (void)fb__geo_find_reference(kept, q[k][1], out, 8);
            t[i] = (now_ns() - t0) / 1e3;
        }
        printf("find_us_%s=%.1f  # \"%s\" -> %zu (reference scan: %.1f us)\n", q[k][0], fast,
               q[k][1], found, median(t, (size_t)ref_queries));
    }
    fb_geo_free(kept);
    fb_free(t);
    fb_buf_free(&errors);
    return 0;
}
