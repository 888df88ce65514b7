/* SPDX-License-Identifier: MIT */
/*
 * paths.h - where the daemon finds its data when the configuration names no path: the dialog, the
 * communes index, the web chat's page and the DSFR files.
 *
 * An installed frichebot (cmake --install, cmake/FbPaths.cmake) keeps its data in
 * PREFIX/share/frichebot beside PREFIX/bin/frichebot. The binary finds that directory from its
 * own location (/proc/self/exe, then the relative path from the install's bindir to its data
 * directory, compiled in as FB_DATA_RELDIR), so an install is relocatable and works the same
 * after a DESTDIR staging. When that directory does not exist, the binary runs from its build
 * tree: the defaults are then the source and build trees' paths compiled in. The choice is made
 * once per process, for all the data at once. Explicit configuration keys always win
 * (config.c applies these defaults only to the paths left unset).
 */
#ifndef FB_PATHS_H
#define FB_PATHS_H

#include <stddef.h>

/** The data a default path is asked for. */
typedef enum fb_data_e {
    FB_DATA_DIALOG, /* the dialog served: DATA/dialogs/friche.yaml */
    FB_DATA_GEO,    /* the communes index: DATA/communes.fbgeo */
    FB_DATA_WEB,    /* the web chat's page and files: DATA/web */
    FB_DATA_DSFR    /* the DSFR files the page uses: DATA/dsfr */
} fb_data_t;

/**
 * The installed data directory in use (an absolute path without symbolic links or "..", e.g.
 * "/usr/local/share/frichebot"), or NULL when there is none beside the binary (a binary run from
 * its build tree). Computed on the first call; the string lives as long as the process.
 */
const char *fb_data_dir(void);

/**
 * The default path of `what`: under fb_data_dir() when there is one, else the source or build
 * tree's path compiled in. Never NULL; the string lives as long as the process.
 */
const char *fb_data_path(fb_data_t what);

/**
 * Where an executable at `exe` (an absolute path) would find its installed data: the directory
 * FB_DATA_RELDIR relative to the executable's directory, resolved by realpath(). Writes it to
 * `out` (`size` bytes) and returns 0, or returns FB_ENOENT when that directory does not exist
 * (or is not a directory) and FB_EINVAL when `exe` is not absolute or the result does not fit.
 * fb_data_dir() calls it with /proc/self/exe; tests call it with made-up trees.
 */
int fb__data_dir_for(const char *exe, char *out /* OUT */, size_t size);

/**
 * The executable's own path (readlink of /proc/self/exe), for messages: "/usr/local/bin/frichebot",
 * or "(unknown)" when /proc is not mounted. The string lives as long as the process.
 */
const char *fb_data_exe(void);

#endif /* FB_PATHS_H */
