/* SPDX-License-Identifier: MIT */
/*
 * paths.c - the default paths of the daemon's data: the installed data directory beside the
 * binary, or the source and build trees the binary was built from (paths.h explains the choice).
 */
#include "io/paths.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "frichebot/err.h"

/* Compiled in by cmake/FbPaths.cmake and cmake/FbGeo.cmake; the fallbacks serve other builds. */
#ifndef FB_DATA_RELDIR
#define FB_DATA_RELDIR "../share/frichebot"
#endif
#ifndef FB_DIALOG_DEFAULT_PATH
#define FB_DIALOG_DEFAULT_PATH "dialogs/friche.yaml"
#endif
#ifndef FB_GEO_DEFAULT_PATH
#define FB_GEO_DEFAULT_PATH "data/communes.fbgeo"
#endif
#ifndef FB_WEB_STATIC_DIR
#define FB_WEB_STATIC_DIR "web/static"
#endif
#ifndef FB_DSFR_DIR
#define FB_DSFR_DIR "web/dsfr"
#endif

/* The layout of the installed data directory; cmake/FbPaths.cmake installs these names. */
static const char *const installed_names[] = {
    [FB_DATA_DIALOG] = "dialogs/friche.yaml",
    [FB_DATA_GEO] = "communes.fbgeo",
    [FB_DATA_WEB] = "web",
    [FB_DATA_DSFR] = "dsfr",
};

static const char *const build_tree_paths[] = {
    [FB_DATA_DIALOG] = FB_DIALOG_DEFAULT_PATH,
    [FB_DATA_GEO] = FB_GEO_DEFAULT_PATH,
    [FB_DATA_WEB] = FB_WEB_STATIC_DIR,
    [FB_DATA_DSFR] = FB_DSFR_DIR,
};

#define DATA_KINDS (sizeof(installed_names) / sizeof(installed_names[0]))

static struct {
    bool resolved;
    char exe[PATH_MAX];               /* /proc/self/exe, or "(unknown)" */
    char dir[PATH_MAX];               /* the installed data directory, or "" */
    char paths[DATA_KINDS][PATH_MAX]; /* dir + installed_names[], when dir is set */
} data;

int fb__data_dir_for(const char *exe, char *out, size_t size)
{
    if (!exe || exe[0] != '/' || size == 0)
        return FB_EINVAL;
    out[0] = '\0';
    const char *slash = strrchr(exe, '/');
    char candidate[PATH_MAX];
    int n =
        snprintf(candidate, sizeof(candidate), "%.*s/%s", (int)(slash - exe), exe, FB_DATA_RELDIR);
    if (n < 0 || (size_t)n >= sizeof(candidate))
        return FB_EINVAL;
    char resolved[PATH_MAX];
    if (!realpath(candidate, resolved))
        return errno == ENAMETOOLONG ? FB_EINVAL : FB_ENOENT;
    struct stat st;
    if (stat(resolved, &st) != 0 || !S_ISDIR(st.st_mode))
        return FB_ENOENT;
    size_t len = strlen(resolved);
    if (len >= size)
        return FB_EINVAL;
    memcpy(out, resolved, len + 1);
    return 0;
}

/* Finds the executable and its data directory, once. */
static void resolve(void)
{
    if (data.resolved)
        return;
    data.resolved = true;
    ssize_t n = readlink("/proc/self/exe", data.exe, sizeof(data.exe) - 1);
    if (n <= 0) {
        snprintf(data.exe, sizeof(data.exe), "(unknown)");
        return;
    }
    data.exe[n] = '\0';
    if (fb__data_dir_for(data.exe, data.dir, sizeof(data.dir)) != 0) {
        data.dir[0] = '\0';
        return;
    }
    for (size_t i = 0; i < DATA_KINDS; i++) {
        int w =
            snprintf(data.paths[i], sizeof(data.paths[i]), "%s/%s", data.dir, installed_names[i]);
        if (w < 0 || (size_t)w >= sizeof(data.paths[i])) {
            data.dir[0] = '\0'; /* too long to use: fall back to the build tree's paths */
            return;
        }
    }
}

const char *fb_data_dir(void)
{
    resolve();
    return data.dir[0] ? data.dir : NULL;
}

const char *fb_data_path(fb_data_t what)
{
    resolve();
    if ((size_t)what >= DATA_KINDS)
        return "";
    return data.dir[0] ? data.paths[what] : build_tree_paths[what];
}

const char *fb_data_exe(void)
{
    resolve();
    return data.exe;
}
