/* SPDX-License-Identifier: MIT */
/*
 * What every command of `frichebot` shares, main.c's own and those adapters register
 * (fb_adapter_command_t): the usage exit status and the usage error message.
 */
#ifndef FB_CLI_H
#define FB_CLI_H

/** The exit status of a command line that cannot be understood (as getopt tools use). */
#define FB_EXIT_USAGE 2

/**
 * Prints "frichebot: MESSAGE" and the hint "Try 'frichebot --help'." on stderr. Returns
 * FB_EXIT_USAGE, for `return fb_cli_usage_error(...)`.
 */
int fb_cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif /* FB_CLI_H */
