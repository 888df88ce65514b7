/* SPDX-License-Identifier: MIT */
/*
 * authoring.h - the dialog authors' commands: check, graph, chat and test.
 *
 * They run the pure engine without Redis or network: `chat` with an in-memory session, `test` with
 * golden transcripts and a virtual clock. Each returns a process exit status (0 ok, 1 failures,
 * 2 usage) and writes human-readable output to `out` and diagnostics to `err`.
 */
#ifndef FB_AUTHORING_H
#define FB_AUTHORING_H

#include <stdio.h>

/** `frichebot check PATH...`: every dialog (and its catalogues) under PATH; errors at
 * file:line:col. */
int fb_cmd_check(int argc, char **argv, FILE *out, FILE *err);
/** `frichebot graph FILE [--svg] [-o OUT]`: the dialog as Graphviz DOT (or SVG through dot). */
int fb_cmd_graph(int argc, char **argv, FILE *out, FILE *err);
/** `frichebot chat FILE`: a conversation in the terminal, lines from stdin. */
int fb_cmd_chat(int argc, char **argv, FILE *in, FILE *out, FILE *err);
/** `frichebot test PATH...`: golden transcripts; ends with "N passed, N failed". */
int fb_cmd_test(int argc, char **argv, FILE *out, FILE *err);
/** `frichebot ask DIALOG QUESTION...` / `ask --eval DIALOG SET...`: the knowledge base's ranking
 *  (authoring_kb.c). */
int fb_cmd_ask(int argc, char **argv, FILE *out, FILE *err);

struct fb_geo_s;
/** The communes index if it is there (FRICHEBOT_GEO, else the installed one), or NULL: the tools
 *  work without it for dialogs that ask for no commune. An unreadable index is reported on err. */
struct fb_geo_s *fb__authoring_load_geo(FILE *err);

#endif /* FB_AUTHORING_H */
