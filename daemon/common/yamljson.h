/* SPDX-License-Identifier: MIT */
/*
 * yamljson.h - a YAML document as jansson values, with the line of every node.
 */
#ifndef FB_YAMLJSON_H
#define FB_YAMLJSON_H

#include <stddef.h>

#include <jansson.h>

/**
 * Parses YAML `text`. Returns a new JSON value and sets `*lines` to a new object mapping each
 * node's path ("" for the root, "/tours/3/dit") to its 1-based line. On error returns NULL, sets
 * `*lines` to NULL and writes "LINE:COL: message" into `errbuf`.
 */
json_t *fb_yaml_to_json(const char *text, size_t len, json_t **lines, char *errbuf, size_t errcap);

/** The line recorded for `path` in `lines`, or 0. */
int fb_yaml_line(json_t *lines, const char *path);

/** A bounded, printable rendering of text read from a YAML file, for error messages. */
typedef struct fb_yaml_shown_s {
    char s[200]; /* NUL-terminated */
} fb_yaml_shown_t;

/**
 * Renders `len` bytes of `s` for an error message: control characters become \xNN (so a value
 * can never forge another error line) and anything longer than about 60 characters is cut with
 * "...", never splitting a UTF-8 sequence. Shared by the configuration and dialog loaders.
 */
fb_yaml_shown_t fb_yaml_show(const char *s, size_t len);

#endif /* FB_YAMLJSON_H */
