/* SPDX-License-Identifier: MIT */
/*
 * mx_commands.c - the Matrix adapter's subcommands of `frichebot` (fb_adapter_ops_t.commands):
 * `frichebot matrix-registration` writes the application service registration file that Synapse
 * loads, with fresh random tokens, from the matrix section of the configuration.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "io/cli.h"
#include "io/config.h"
#include "matrix.h"
#include "mx_util.h"

static const char registration_usage[] =
    "usage: frichebot matrix-registration -c FILE [-o OUTPUT] [--force]\n"
    "\n"
    "Writes the application service registration YAML that Synapse loads\n"
    "(app_service_config_files), with fresh random as_token and hs_token, from the matrix\n"
    "section of the configuration (user_id, appservice.id, appservice.url). The daemon reads\n"
    "the tokens back from that file in appservice mode. The file is created with mode 0600.\n"
    "\n"
    "Options:\n"
    "  -c, --config FILE   the daemon's configuration (YAML)\n"
    "  -o, --output FILE   where to write it (default: matrix.appservice.registration_file;\n"
    "                      '-' for standard output)\n"
    "      --force         replace an existing file (the old tokens stop working)\n"
    "  -h, --help          show this help\n";

/*
 * `frichebot matrix-registration -c FILE [-o OUTPUT] [--force]`. Returns 0, 1 (bad configuration,
 * cannot write) or FB_EXIT_USAGE. The tokens are wiped from memory before returning.
 */
static int mx_cmd_registration(int argc, char **argv)
{
    enum { OPT_FORCE = 1000 };
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"output", required_argument, NULL, 'o'},
        {"force", no_argument, NULL, OPT_FORCE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL, *out = NULL;
    bool force = false;
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":c:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case OPT_FORCE:
            force = true;
            break;
        case 'h':
            fputs(registration_usage, stdout);
            return 0;
        case ':':
            return fb_cli_usage_error("matrix-registration: option '%s' needs an argument",
                                      argv[optind - 1]);
        default:
            return fb_cli_usage_error("matrix-registration: unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return fb_cli_usage_error("matrix-registration: unexpected argument '%s'", argv[optind]);
    if (!path)
        return fb_cli_usage_error("matrix-registration: -c FILE is required");
    fb_buf_t errors;
    fb_buf_init(&errors, 1u << 20);
    fb_config_t *cfg = fb_config_load(path, &errors);
    if (!cfg) {
        fprintf(stderr, "%s", fb_buf_str(&errors));
        fprintf(stderr, "frichebot: %s: invalid configuration\n", path);
        fb_buf_free(&errors);
        return 1;
    }
    fb_buf_free(&errors);
    const fb_matrix_opts_t *m = fb_config_section(cfg, "matrix");
    int status = 1;
    char as[FB_MX_TOKEN_HEX + 1], hs[FB_MX_TOKEN_HEX + 1];
    char *yaml = NULL;
    if (!out)
        out = m->as_registration_file;
    if (!m->user_id || !out) {
        fprintf(stderr,
                "frichebot: %s: matrix.user_id and matrix.appservice.registration_file "
                "(or -o) are needed\n",
                path);
        goto done;
    }
    if (fb_mx_random_token(as) || fb_mx_random_token(hs)) {
        fprintf(stderr, "frichebot: cannot get random bytes from the system\n");
        goto done;
    }
    yaml = fb_mx_registration_yaml(m->as_id ? m->as_id : "frichebot",
                                   m->as_url ? m->as_url : "http://127.0.0.1:8080", m->user_id, as,
                                   hs, m->crypto_pickle_key_file != NULL);
    if (!yaml) {
        fprintf(stderr, "frichebot: matrix.user_id is not a user id\n");
        goto done;
    }
    if (strcmp(out, "-") == 0) {
        fputs(yaml, stdout);
        status = fflush(stdout) == 0 ? 0 : 1;
        goto done;
    }
    int fd =
        open(out, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (force ? O_TRUNC : O_EXCL), 0600);
    if (fd < 0) {
        fprintf(stderr, "frichebot: cannot write %s: %s%s\n", out, strerror(errno),
                errno == EEXIST ? " (use --force to replace it)" : "");
        goto done;
    }
    size_t len = strlen(yaml), off = 0;
    while (off < len) {
        ssize_t w = write(fd, yaml + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    if (close(fd) != 0 || off != len) {
        fprintf(stderr, "frichebot: cannot write %s: %s\n", out, strerror(errno));
        goto done;
    }
    printf("%s: registration written (id %s, user %s); add it to Synapse's "
           "app_service_config_files\n",
           out, m->as_id ? m->as_id : "frichebot", m->user_id);
    if (m->crypto_pickle_key_file)
        printf("end-to-end encryption: Synapse's homeserver.yaml also needs\n"
               "  experimental_features:\n"
               "    msc3202_transaction_extensions: true\n"
               "    msc2409_to_device_messages_enabled: true\n");
    status = 0;
done:
    explicit_bzero(as, sizeof(as));
    explicit_bzero(hs, sizeof(hs));
    if (yaml) {
        explicit_bzero(yaml, strlen(yaml));
        fb_free(yaml);
    }
    fb_config_free(cfg);
    return status;
}

const fb_adapter_command_t fb_mx_commands[] = {
    {"matrix-registration", "write the Matrix application service registration file",
     registration_usage, mx_cmd_registration},
    {NULL, NULL, NULL, NULL},
};
