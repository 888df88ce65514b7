/* SPDX-License-Identifier: MIT */
/*
 * main.c - the `frichebot` command: parses the command line and runs a subcommand.
 *
 * Exit status: 0 success, 1 failure (bad configuration, cannot start), 2 usage error (unknown
 * subcommand or option, missing argument).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libwebsockets.h>
#include <uv.h>
#include <yaml.h>

#include "authoring.h"
#include "core/adapters.h"
#include "daemon.h"
#include "features/escalation.h"
#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "frichebot/log.h"
#include "io/cli.h"
#include "io/config.h"
#include "io/paths.h"

/* The usage is main_usage, the adapters' commands, then main_usage_tail (print_main_usage). */
static const char main_usage[] =
    "usage: frichebot [--help] [--version] COMMAND [ARGS]\n"
    "\n"
    "frichebot guides local authorities through the revitalisation of brownfield sites\n"
    "(friches), in Tchap/Matrix or a web chat.\n"
    "\n"
    "Commands:\n"
    "  serve     run the daemon (web chat, Matrix adapter, /healthz, /metrics)\n"
    "  check     validate dialog files and catalogues (errors at file:line:column)\n"
    "  chat      talk to a dialog in the terminal (no Redis, no network)\n"
    "  graph     draw a dialog as a Graphviz graph\n"
    "  test      run golden conversation transcripts\n"
    "  ask       rank a dialog's knowledge-base answers for a question (authors, --eval)\n"
    "  version   print the version and the versions of the libraries in use\n";

static const char main_usage_tail[] =
    "  help      show the help of a command: frichebot help serve\n"
    "\n"
    "Run 'frichebot COMMAND --help' for the options of a command.\n";

static const char serve_usage[] =
    "usage: frichebot serve [-c FILE] [options]\n"
    "\n"
    "Runs the daemon until SIGTERM or SIGINT (SIGHUP reloads). Without -c, runs on the embedded\n"
    "default configuration (deploy/frichebot.yaml.sample): HTTP on 127.0.0.1:8080, Redis on\n"
    "tcp://127.0.0.1:6379.\n"
    "\n"
    "Options:\n"
    "  -c, --config FILE      read the configuration from FILE (YAML)\n"
    "      --listen HOST:PORT override server.listen\n"
    "      --redis ADDRESS    override redis.address (tcp://HOST:PORT or unix:/PATH)\n"
    "      --log SPEC         override log.level, e.g. 'info' or 'info,http=debug'\n"
    "      --log-format FMT   override log.format: plain or json\n"
    "      --check-config     validate the configuration, print the errors, and exit\n"
    "  -h, --help             show this help\n"
    "\n"
    "Secrets never go in the file: redis.password_file, or FRICHEBOT_REDIS_PASSWORD.\n"
    "\n"
    "Data (the dialog, the communes index, the web page, the DSFR files): the paths the\n"
    "configuration names (dialogs.path, dialogs.geo_path, web.static_dir, web.dsfr_dir), else\n"
    "those of the data directory installed with the binary (PREFIX/share/frichebot for\n"
    "PREFIX/bin/frichebot), else, for a binary run from its build tree, the source and build\n"
    "trees' paths.\n";

/* `frichebot --help`: the commands, the adapters' among them (fb_adapter_ops_t.commands). */
static void print_main_usage(FILE *out)
{
    fputs(main_usage, out);
    for (size_t i = 0; fb_builtin_adapters[i]; i++)
        for (const fb_adapter_command_t *c = fb_builtin_adapters[i]->commands; c && c->name; c++)
            fprintf(out, "  %s  %s\n", c->name, c->summary);
    fputs(main_usage_tail, out);
}

/* `serve --help`: the usage, then where this binary finds its data. */
static void print_serve_usage(void)
{
    fputs(serve_usage, stdout);
    if (fb_data_dir())
        printf("\nThis binary's data directory: %s\n", fb_data_dir());
    else
        printf("\nThis binary (%s) has no data directory: it uses\n  %s\n  %s\n  %s\n  %s\n",
               fb_data_exe(), fb_data_path(FB_DATA_DIALOG), fb_data_path(FB_DATA_GEO),
               fb_data_path(FB_DATA_WEB), fb_data_path(FB_DATA_DSFR));
}

static const char version_usage[] = "usage: frichebot version\n"
                                    "\n"
                                    "Prints the version of frichebot and of its libraries.\n";

static int cmd_version(int argc, char **argv)
{
    if (argc > 1) {
        if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
            fputs(version_usage, stdout);
            return 0;
        }
        return fb_cli_usage_error("version: unexpected argument '%s'", argv[1]);
    }
    printf("frichebot %s\n", FB_VERSION);
    printf("libuv %s, %s, libwebsockets %s, jansson %s, hiredis %d.%d.%d, libyaml %s\n",
           uv_version_string(), curl_version(), lws_get_library_version(), JANSSON_VERSION,
           HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH, yaml_get_version_string());
    return 0;
}

/* Splits "host:port" or "[v6]:port". Returns 0 or -1. */
static int parse_listen(const char *s, char **host, int *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s)
        return -1;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p < 0 || p > 65535 || colon[1] == '\0')
        return -1;
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    *host = fb_strndup(h, hl);
    *port = (int)p;
    return 0;
}

static int cmd_serve(int argc, char **argv)
{
    enum { OPT_LISTEN = 1000, OPT_REDIS, OPT_LOG, OPT_LOG_FORMAT, OPT_CHECK };
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"redis", required_argument, NULL, OPT_REDIS},
        {"log", required_argument, NULL, OPT_LOG},
        {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
        {"check-config", no_argument, NULL, OPT_CHECK},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL, *listen = NULL, *redis = NULL, *log = NULL, *log_format = NULL;
    bool check = false;
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case OPT_LISTEN:
            listen = optarg;
            break;
        case OPT_REDIS:
            redis = optarg;
            break;
        case OPT_LOG:
            log = optarg;
            break;
        case OPT_LOG_FORMAT:
            log_format = optarg;
            break;
        case OPT_CHECK:
            check = true;
            break;
        case 'h':
            print_serve_usage();
            return 0;
        case ':':
            return fb_cli_usage_error("serve: option '%s' needs an argument", argv[optind - 1]);
        default:
            return fb_cli_usage_error("serve: unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return fb_cli_usage_error("serve: unexpected argument '%s'", argv[optind]);

    fb_buf_t errors;
    fb_buf_init(&errors, 1u << 20);
    fb_config_t *cfg = path ? fb_config_load(path, &errors) : fb_config_load_default(&errors);
    if (!cfg) {
        fprintf(stderr, "%s", fb_buf_str(&errors));
        fprintf(stderr, "frichebot: %s: invalid configuration\n", path ? path : "embedded default");
        fb_buf_free(&errors);
        return 1;
    }
    fb_buf_free(&errors);

    int status = 1;
    if (listen) {
        fb_free(cfg->server.listen_host);
        cfg->server.listen_host = NULL;
        if (parse_listen(listen, &cfg->server.listen_host, &cfg->server.listen_port)) {
            status = fb_cli_usage_error("serve: --listen expects HOST:PORT, not '%s'", listen);
            goto done;
        }
    }
    if (redis) {
        if (strncmp(redis, "tcp://", 6) != 0 && strncmp(redis, "unix:", 5) != 0) {
            status = fb_cli_usage_error(
                "serve: --redis expects tcp://HOST:PORT or unix:/PATH, not '%s'", redis);
            goto done;
        }
        fb_free(cfg->redis.address);
        cfg->redis.address = fb_strdup(redis);
    }
    if (log) {
        fb_free(cfg->log.level);
        cfg->log.level = fb_strdup(log);
    }
    if (log_format) {
        if (strcmp(log_format, "json") != 0 && strcmp(log_format, "plain") != 0) {
            status = fb_cli_usage_error("serve: --log-format expects plain or json, not '%s'",
                                        log_format);
            goto done;
        }
        cfg->log.json = strcmp(log_format, "json") == 0;
    }
    const char *bad = NULL;
    if (fb_log_apply_spec(cfg->log.level, &bad)) {
        status = fb_cli_usage_error("serve: invalid log level '%s'", bad ? bad : cfg->log.level);
        goto done;
    }
    fb_log_set_format(cfg->log.json ? FB_LOG_FORMAT_JSON : FB_LOG_FORMAT_PLAIN);
    if (check) {
        /* What only the pipeline reads at start, checked here too: the advisors' routes. */
        fb_buf_init(&errors, 1u << 16);
        if (fb_esc_check_config(cfg, &errors)) {
            fprintf(stderr, "%s", fb_buf_str(&errors));
            fprintf(stderr, "frichebot: %s: invalid configuration\n",
                    path ? path : "embedded default");
            fb_buf_free(&errors);
            status = 1;
            goto done;
        }
        fb_buf_free(&errors);
        if (cfg->redis.require_aof) /* valid, but the daemon will warn: say it now */
            fprintf(stderr,
                    "frichebot: warning: redis.require_aof is deprecated and ignored: a Redis "
                    "without AOF is refused unless redis.allow_volatile: true; remove it\n");
        printf("%s: configuration OK\n", path ? path : "embedded default");
        status = 0;
        goto done;
    }
    FB_NOTICE(CORE, "configuration: %s", path ? path : "embedded default");
    if (fb_data_dir())
        FB_NOTICE(CORE, "data directory: %s (installed beside %s)", fb_data_dir(), fb_data_exe());
    else
        FB_NOTICE(CORE, "data directory: none beside %s, using the build tree's paths",
                  fb_data_exe());
    FB_NOTICE(CORE, "data: dialog %s, communes index %s, web page %s, DSFR %s", cfg->dialogs.path,
              cfg->dialogs.geo_path,
              fb_config_string(cfg, "web.static_dir") ? fb_config_string(cfg, "web.static_dir")
                                                      : "-",
              fb_config_string(cfg, "web.dsfr_dir") ? fb_config_string(cfg, "web.dsfr_dir") : "-");
    status = fb_daemon_run(cfg, path);
done:
    fb_config_free(cfg);
    return status;
}

int main(int argc, char **argv)
{
    fb_adapters_register_logs();
    if (argc < 2) {
        print_main_usage(stderr);
        return FB_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        print_main_usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0)
        return cmd_version(1, argv + 1);
    if (strcmp(cmd, "help") == 0) {
        if (argc < 3) {
            print_main_usage(stdout);
            return 0;
        }
        if (strcmp(argv[2], "serve") == 0) {
            print_serve_usage();
            return 0;
        }
        if (strcmp(argv[2], "version") == 0) {
            fputs(version_usage, stdout);
            return 0;
        }
        const fb_adapter_command_t *ac = fb_adapter_command(argv[2]);
        if (ac) {
            fputs(ac->usage, stdout);
            return 0;
        }
        char help_arg[] = "--help";
        char *help_argv[] = {argv[2], help_arg, NULL};
        if (strcmp(argv[2], "check") == 0)
            return fb_cmd_check(2, help_argv, stdout, stderr);
        if (strcmp(argv[2], "chat") == 0)
            return fb_cmd_chat(2, help_argv, stdin, stdout, stderr);
        if (strcmp(argv[2], "graph") == 0)
            return fb_cmd_graph(2, help_argv, stdout, stderr);
        if (strcmp(argv[2], "test") == 0)
            return fb_cmd_test(2, help_argv, stdout, stderr);
        if (strcmp(argv[2], "ask") == 0)
            return fb_cmd_ask(2, help_argv, stdout, stderr);
        return fb_cli_usage_error("help: unknown command '%s'", argv[2]);
    }
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0)
        return cmd_version(argc - 1, argv + 1);
    if (strcmp(cmd, "check") == 0)
        return fb_cmd_check(argc - 1, argv + 1, stdout, stderr);
    if (strcmp(cmd, "chat") == 0)
        return fb_cmd_chat(argc - 1, argv + 1, stdin, stdout, stderr);
    if (strcmp(cmd, "graph") == 0)
        return fb_cmd_graph(argc - 1, argv + 1, stdout, stderr);
    if (strcmp(cmd, "test") == 0)
        return fb_cmd_test(argc - 1, argv + 1, stdout, stderr);
    if (strcmp(cmd, "ask") == 0)
        return fb_cmd_ask(argc - 1, argv + 1, stdout, stderr);
    const fb_adapter_command_t *ac = fb_adapter_command(cmd);
    if (ac)
        return ac->run(argc - 1, argv + 1);
    if (cmd[0] == '-')
        return fb_cli_usage_error("unknown option '%s'", cmd);
    return fb_cli_usage_error("unknown command '%s'", cmd);
}
