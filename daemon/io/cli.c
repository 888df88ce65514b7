/* SPDX-License-Identifier: MIT */
/* The commands' shared usage error (cli.h). */
#include "io/cli.h"

#include <stdarg.h>
#include <stdio.h>

int fb_cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("frichebot: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'frichebot --help'.\n", stderr);
    return FB_EXIT_USAGE;
}
