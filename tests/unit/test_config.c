/* SPDX-License-Identifier: MIT */
/*
 * test_config.c - the configuration loader (daemon/io/config.c): the embedded default and its
 * values, the good and bad corpora of tests/data/config (each bad file's exact error text is in
 * a sibling .expected file), value forms, secrets from files and the environment, and the rule
 * that secret values never appear in error text.
 *
 * Set FB_UPDATE_EXPECTED=1 to rewrite the .expected files from the current output (then review
 * the diff: the files are the specification of the messages).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../adapters/matrix/mx_config.h"
#include "../../adapters/web/web_config.h"
#include "engine/geo.h"
#include "frichebot/alloc.h"
#include "frichebot/buf.h"
#include "frichebot/log.h"
#include "io/config.h"
#include "io/paths.h"
#include "task.h"

/* The adapters' sections (the adapters own their options structs). */
#define WEB(c) ((const fb_web_opts_t *)fb_config_section((c), "web"))
#define MX(c)  ((const fb_matrix_opts_t *)fb_config_section((c), "matrix"))

#define DATA_DIR     FB_SOURCE_DIR "/tests/data/config"
#define PASSWORD_ENV "FRICHEBOT_REDIS_PASSWORD"
#define REQUIRED                                                                                   \
    "server:\n  listen: \"127.0.0.1:8080\"\nredis:\n  address: \"tcp://127.0.0.1:6379\"\n"

/* Reads a whole file into a new NUL-terminated string; NULL if it cannot be read. */
static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fb_buf_t b;
    fb_buf_init(&b, 1u << 22);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        ASSERT_OK(fb_buf_append(&b, chunk, n));
    fclose(f);
    if (len)
        *len = b.len;
    return fb_buf_take(&b);
}

static void write_all(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    ASSERT_NOT_NULL(f);
    ASSERT_EQ(fwrite(text, 1, strlen(text), f), strlen(text));
    ASSERT_EQ(fclose(f), 0);
}

/* Parses `text` as "t.yaml"; returns the config, or NULL with the errors in *errors (new). */
static fb_config_t *parse(const char *text, char **errors)
{
    fb_buf_t e;
    fb_buf_init(&e, 1u << 20);
    fb_config_t *cfg = fb_config_parse("t.yaml", text, strlen(text), &e);
    *errors = fb_buf_take(&e);
    return cfg;
}

/* Asserts that `text` is refused with exactly `expected` as error text. */
static void expect_errors(const char *text, const char *expected)
{
    char *errors = NULL;
    fb_config_t *cfg = parse(text, &errors);
    if (cfg)
        FB_TEST_FAIL("accepted:\n%s", text);
    ASSERT_STR_EQ(errors, expected);
    fb_free(errors);
}

/* Asserts that `text` parses; returns the config. */
static fb_config_t *expect_ok(const char *text)
{
    char *errors = NULL;
    fb_config_t *cfg = parse(text, &errors);
    if (!cfg)
        FB_TEST_FAIL("refused:\n%s\nerrors:\n%s", text, errors);
    ASSERT_STR_EQ(errors, "");
    fb_free(errors);
    return cfg;
}

/* The documented defaults (deploy/frichebot.yaml.sample), except the two required keys. */
static void assert_optional_defaults(const fb_config_t *c)
{
    ASSERT_EQ(c->server.max_body_bytes, 1048576);
    ASSERT_EQ(c->server.max_header_bytes, 8192);
    ASSERT_EQ(c->server.idle_timeout_s, 20);
    ASSERT_EQ(c->server.keepalive_timeout_s, 5);
    ASSERT_EQ(c->server.shutdown_deadline_s, 10);
    ASSERT_EQ(c->server.max_connections_per_address, 256);
    ASSERT_NULL(c->redis.password);
    ASSERT_NULL(c->redis.password_file);
    ASSERT_EQ(c->redis.connect_timeout_ms, 2000);
    ASSERT_EQ(c->redis.command_timeout_ms, 2000);
    ASSERT_EQ(c->redis.write_deadline_ms, 30000);
    static const unsigned reconnect[] = {100, 200, 500, 1000, 2000, 5000};
    ASSERT_EQ(c->redis.reconnect.n_delays, FB_ARRAY_SIZE(reconnect));
    for (size_t i = 0; i < FB_ARRAY_SIZE(reconnect); i++)
        ASSERT_EQ(c->redis.reconnect.delays_ms[i], reconnect[i]);
    ASSERT_EQ(c->redis.reconnect.jitter_percent, 20);
    ASSERT_EQ(c->redis.reconnect.max_attempts, 0);
    ASSERT_STR_EQ(c->store.key_prefix, "fb:");
    ASSERT_EQ(c->store.session_ttl_days, 180);
    ASSERT_EQ(c->http_client.timeout_ms, 10000);
    ASSERT_EQ(c->http_client.connect_timeout_ms, 5000);
    ASSERT_EQ(c->http_client.max_response_bytes, 8 * 1048576);
    ASSERT_EQ(c->http_client.max_host_connections, 8);
    static const unsigned retry[] = {500, 1000, 2000, 4000};
    ASSERT_EQ(c->http_client.retry.n_delays, FB_ARRAY_SIZE(retry));
    for (size_t i = 0; i < FB_ARRAY_SIZE(retry); i++)
        ASSERT_EQ(c->http_client.retry.delays_ms[i], retry[i]);
    ASSERT_EQ(c->http_client.retry.jitter_percent, 20);
    ASSERT_EQ(c->http_client.retry.max_attempts, 5);
    ASSERT_STR_EQ(c->log.level, "info");
    ASSERT(!c->log.json);
    ASSERT_STR_EQ(c->dialogs.path, FB_SOURCE_DIR "/dialogs/friche.yaml");
    ASSERT_STR_EQ(c->dialogs.geo_path, fb_data_path(FB_DATA_GEO));
    ASSERT_EQ(c->router.dedupe_retention_hours, 72);
    ASSERT_EQ(c->router.max_queued_per_conversation, 32);
    static const unsigned outbox[] = {1000, 2000, 5000, 15000, 60000};
    ASSERT_EQ(c->router.outbox_retry.n_delays, FB_ARRAY_SIZE(outbox));
    for (size_t i = 0; i < FB_ARRAY_SIZE(outbox); i++)
        ASSERT_EQ(c->router.outbox_retry.delays_ms[i], outbox[i]);
    ASSERT_EQ(c->router.outbox_retry.jitter_percent, 20);
    ASSERT_EQ(c->router.outbox_retry.max_attempts, 0);
    ASSERT(c->reminders.enabled);
    ASSERT_EQ(c->reminders.poll_interval_ms, 1000);
    ASSERT_EQ(c->reminders.batch, 100);
    ASSERT_EQ(c->reminders.lease_ms, 60000);
    ASSERT(c->reminders.working_hours_only);
    ASSERT_EQ(c->reminders.start_hour, 9);
    ASSERT_EQ(c->reminders.end_hour, 18);
    ASSERT_EQ(c->reminders.inactive_months, 12);
    ASSERT(WEB(c)->enabled);
    ASSERT_EQ(WEB(c)->max_message_bytes, 2000);
    ASSERT_EQ(WEB(c)->messages_per_minute, 20);
    ASSERT_EQ(WEB(c)->max_connections_per_address, 20);
    ASSERT_EQ(WEB(c)->new_conversations_per_minute, 10);
    ASSERT_EQ(WEB(c)->history_max, 300);
    ASSERT_EQ(c->stats.min_count, 5);
    ASSERT_EQ(c->stats.cache_seconds, 5);
    ASSERT_STR_EQ(WEB(c)->static_dir, FB_BINARY_DIR "/web/static");
    ASSERT_STR_EQ(WEB(c)->dsfr_dir, FB_BINARY_DIR "/web/dsfr");
}

TEST_IMPL(config_default_embedded)
{
    unsetenv(PASSWORD_ENV);
    fb_buf_t e;
    fb_buf_init(&e, 1u << 20);
    fb_config_t *c = fb_config_load_default(&e);
    if (!c)
        FB_TEST_FAIL("the embedded default does not parse:\n%s", fb_buf_str(&e));
    ASSERT_STR_EQ(fb_buf_str(&e), "");
    ASSERT_STR_EQ(c->path, "(embedded default)");
    ASSERT_STR_EQ(c->server.listen_host, "127.0.0.1");
    ASSERT_EQ(c->server.listen_port, 8080);
    ASSERT_STR_EQ(c->redis.address, "tcp://127.0.0.1:6379");
    assert_optional_defaults(c);
    fb_config_free(c);
    fb_config_free(NULL);
    fb_buf_free(&e);
    return 0;
}

/* The binary embeds the sample as it is now, and the file itself loads the same way. */
TEST_IMPL(config_sample_file_is_the_default)
{
    unsetenv(PASSWORD_ENV);
    size_t len = 0;
    char *sample = read_all(FB_SOURCE_DIR "/deploy/frichebot.yaml.sample", &len);
    ASSERT_NOT_NULL(sample);
    ASSERT_EQ(len, fb__default_config_len);
    ASSERT(memcmp(sample, fb__default_config, len) == 0);
    ASSERT_EQ(fb__default_config[len], '\0');
    fb_free(sample);

    fb_buf_t e;
    fb_buf_init(&e, 1u << 20);
    fb_config_t *c = fb_config_load(FB_SOURCE_DIR "/deploy/frichebot.yaml.sample", &e);
    if (!c)
        FB_TEST_FAIL("the sample does not load:\n%s", fb_buf_str(&e));
    ASSERT_STR_EQ(c->path, FB_SOURCE_DIR "/deploy/frichebot.yaml.sample");
    ASSERT_STR_EQ(c->server.listen_host, "127.0.0.1");
    ASSERT_EQ(c->server.listen_port, 8080);
    assert_optional_defaults(c);
    fb_config_free(c);
    fb_buf_free(&e);
    return 0;
}

/* A file with only the required keys gets every other value from the sample. */
TEST_IMPL(config_minimal_gets_defaults)
{
    unsetenv(PASSWORD_ENV);
    fb_config_t *c = expect_ok("server:\n  listen: \"10.1.2.3:99\"\n"
                               "redis:\n  address: \"unix:/tmp/r.sock\"\n");
    ASSERT_STR_EQ(c->path, "t.yaml");
    ASSERT_STR_EQ(c->server.listen_host, "10.1.2.3");
    ASSERT_EQ(c->server.listen_port, 99);
    ASSERT_STR_EQ(c->redis.address, "unix:/tmp/r.sock");
    assert_optional_defaults(c);
    fb_config_free(c);
    return 0;
}

/* Every key of tests/data/config/good/full.yaml lands in its field. */
TEST_IMPL(config_all_values_parsed)
{
    unsetenv(PASSWORD_ENV);
    fb_buf_t e;
    fb_buf_init(&e, 1u << 20);
    fb_config_t *c = fb_config_load(DATA_DIR "/good/full.yaml", &e);
    if (!c)
        FB_TEST_FAIL("full.yaml:\n%s", fb_buf_str(&e));
    ASSERT_STR_EQ(c->server.listen_host, "::1");
    ASSERT_EQ(c->server.listen_port, 9443);
    ASSERT_EQ(c->server.max_body_bytes, 2 * 1048576);
    ASSERT_EQ(c->server.max_header_bytes, 16384);
    ASSERT_EQ(c->server.idle_timeout_s, 30);
    ASSERT_EQ(c->server.keepalive_timeout_s, 10);
    ASSERT_EQ(c->server.shutdown_deadline_s, 0);
    ASSERT_STR_EQ(c->redis.address, "unix:/run/redis/redis.sock");
    ASSERT_NULL(c->redis.password_file);
    ASSERT_NULL(c->redis.password);
    ASSERT_EQ(c->redis.connect_timeout_ms, 500);
    ASSERT_EQ(c->redis.command_timeout_ms, 750);
    ASSERT_EQ(c->redis.write_deadline_ms, 60000);
    ASSERT_EQ(c->redis.reconnect.n_delays, 2);
    ASSERT_EQ(c->redis.reconnect.delays_ms[0], 50);
    ASSERT_EQ(c->redis.reconnect.delays_ms[1], 100);
    ASSERT_EQ(c->redis.reconnect.jitter_percent, 0);
    ASSERT_STR_EQ(c->store.key_prefix, "friche:test:");
    ASSERT_EQ(c->store.session_ttl_days, 30);
    ASSERT_EQ(c->http_client.timeout_ms, 20000);
    ASSERT_EQ(c->http_client.connect_timeout_ms, 3000);
    ASSERT_EQ(c->http_client.max_response_bytes, 1048576);
    ASSERT_EQ(c->http_client.max_host_connections, 16);
    ASSERT_EQ(c->http_client.retry.n_delays, 1);
    ASSERT_EQ(c->http_client.retry.delays_ms[0], 1000);
    ASSERT_EQ(c->http_client.retry.jitter_percent, 50);
    ASSERT_EQ(c->http_client.retry.max_attempts, 1);
    ASSERT_STR_EQ(c->log.level, "notice,http=debug,redis=trace");
    ASSERT(c->log.json);
    ASSERT_STR_EQ(c->dialogs.path, "/srv/frichebot/friche.yaml");
    ASSERT_STR_EQ(c->dialogs.geo_path, DATA_DIR "/good/communes.fbgeo"); /* relative to the file */
    ASSERT_EQ(c->router.dedupe_retention_hours, 24);
    ASSERT_EQ(c->router.max_queued_per_conversation, 4);
    ASSERT_EQ(c->router.outbox_retry.n_delays, 2);
    ASSERT_EQ(c->router.outbox_retry.delays_ms[0], 10);
    ASSERT_EQ(c->router.outbox_retry.delays_ms[1], 3600000);
    ASSERT_EQ(c->router.outbox_retry.jitter_percent, 0);
    ASSERT_EQ(c->router.outbox_retry.max_attempts, 7);
    ASSERT(!c->reminders.enabled);
    ASSERT_EQ(c->reminders.poll_interval_ms, 250);
    ASSERT_EQ(c->reminders.batch, 500);
    ASSERT_EQ(c->reminders.lease_ms, 5000);
    ASSERT(!c->reminders.working_hours_only);
    ASSERT_EQ(c->reminders.start_hour, 8);
    ASSERT_EQ(c->reminders.end_hour, 20);
    ASSERT_EQ(c->reminders.inactive_months, 0);
    ASSERT(!WEB(c)->enabled);
    ASSERT_EQ(WEB(c)->max_message_bytes, 4096);
    ASSERT_EQ(WEB(c)->messages_per_minute, 5);
    ASSERT_EQ(WEB(c)->max_connections_per_address, 3);
    ASSERT_EQ(WEB(c)->new_conversations_per_minute, 4);
    ASSERT_EQ(WEB(c)->history_max, 50);
    ASSERT_STR_EQ(WEB(c)->static_dir, "/usr/share/frichebot/web");
    ASSERT_STR_EQ(WEB(c)->dsfr_dir, DATA_DIR "/good/dsfr/dist");
    ASSERT_EQ(c->stats.min_count, 10);
    ASSERT_EQ(c->stats.cache_seconds, 0);
    fb_config_free(c);
    fb_buf_free(&e);
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists the *.yaml files of `dir`, sorted; returns their count. */
static size_t list_yaml(const char *dir, char **names, size_t cap)
{
    DIR *d = opendir(dir);
    if (!d)
        FB_TEST_FAIL("cannot open %s: %s", dir, strerror(errno));
    size_t n = 0;
    const struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len > 5 && strcmp(de->d_name + len - 5, ".yaml") == 0) {
            ASSERT_LT(n, cap);
            names[n++] = fb_strdup(de->d_name);
        }
    }
    closedir(d);
    qsort(names, n, sizeof(names[0]), cmp_names);
    return n;
}

/* Every file of good/ loads without a single error. */
TEST_IMPL(config_corpus_good)
{
    unsetenv(PASSWORD_ENV);
    char *names[256];
    size_t n = list_yaml(DATA_DIR "/good", names, FB_ARRAY_SIZE(names));
    ASSERT_GE(n, 8);
    for (size_t i = 0; i < n; i++) {
        char *path = fb_asprintf("%s/good/%s", DATA_DIR, names[i]);
        fb_buf_t e;
        fb_buf_init(&e, 1u << 20);
        fb_config_t *c = fb_config_load(path, &e);
        if (!c)
            FB_TEST_FAIL("good/%s was refused:\n%s", names[i], fb_buf_str(&e));
        ASSERT_STR_EQ(fb_buf_str(&e), "");
        fb_config_free(c);
        fb_buf_free(&e);
        fb_free(path);
        fb_free(names[i]);
    }
    return 0;
}

/*
 * Every file of bad/ is refused with exactly the text of its .expected sibling, the file's
 * basename standing for NAME. All failures are listed before the test fails.
 */
TEST_IMPL(config_corpus_bad)
{
    unsetenv(PASSWORD_ENV);
    bool update = getenv("FB_UPDATE_EXPECTED") && strcmp(getenv("FB_UPDATE_EXPECTED"), "1") == 0;
    char *names[256];
    size_t n = list_yaml(DATA_DIR "/bad", names, FB_ARRAY_SIZE(names));
    ASSERT_GE(n, 15);
    int failures = 0;
    for (size_t i = 0; i < n; i++) {
        char *path = fb_asprintf("%s/bad/%s", DATA_DIR, names[i]);
        char *exp_path = fb_asprintf("%s.expected", path);
        size_t len = 0;
        char *text = read_all(path, &len);
        ASSERT_NOT_NULL(text);
        fb_buf_t e;
        fb_buf_init(&e, 1u << 20);
        fb_config_t *c = fb_config_parse(names[i], text, len, &e);
        char *expected = read_all(exp_path, NULL);
        if (c) {
            fprintf(stderr, "bad/%s was accepted\n", names[i]);
            failures++;
        } else if (update) {
            write_all(exp_path, fb_buf_str(&e));
        } else if (!expected) {
            fprintf(stderr, "bad/%s has no .expected file; it produced:\n%s", names[i],
                    fb_buf_str(&e));
            failures++;
        } else if (strcmp(expected, fb_buf_str(&e)) != 0) {
            fprintf(stderr, "bad/%s: expected:\n%s--- got:\n%s---\n", names[i], expected,
                    fb_buf_str(&e));
            failures++;
        }
        fb_config_free(c);
        fb_buf_free(&e);
        fb_free(expected);
        fb_free(text);
        fb_free(exp_path);
        fb_free(path);
        fb_free(names[i]);
    }
    ASSERT_EQ(failures, 0);
    return 0;
}

/* HOST:PORT forms of server.listen and of redis.address after tcp://. */
TEST_IMPL(config_listen_and_address_forms)
{
    unsetenv(PASSWORD_ENV);
    static const struct {
        const char *listen, *host;
        int port;
    } good[] = {
        {"127.0.0.1:8080", "127.0.0.1", 8080},
        {"0.0.0.0:1", "0.0.0.0", 1},
        {"[::1]:65535", "::1", 65535},
        {"[::]:80", "::", 80},
        {"localhost:80", "localhost", 80},
        {"my-host.example.org:443", "my-host.example.org", 443},
        {"redis_1:6379", "redis_1", 6379},
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(good); i++) {
        char *text = fb_asprintf("server:\n  listen: \"%s\"\nredis:\n  address: \"tcp://%s\"\n",
                                 good[i].listen, good[i].listen);
        fb_config_t *c = expect_ok(text);
        ASSERT_STR_EQ(c->server.listen_host, good[i].host);
        ASSERT_EQ(c->server.listen_port, good[i].port);
        fb_config_free(c);
        fb_free(text);
    }
    static const char *const bad[] = {
        "",
        ":80",
        "host:",
        "host:0",
        "host:65536",
        "::1:80",
        "[::1]",
        "[::1]80",
        "[zz]:80",
        "1.2.3:80",
        "256.1.1.1:80",
        "-a:80",
        "a-:80",
        "a..b:80",
        "host:+80",
        "host:080",
        "host:80 ",
        "ho st:80",
        "[]:80",
        "[::1]:",
        "h.:80",
        ".h:80",
        "host:99999999999999999999",
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(bad); i++) {
        char *text = fb_asprintf("server:\n  listen: \"%s\"\nredis:\n  address: \"tcp://%s\"\n",
                                 bad[i], bad[i]);
        expect_errors(text,
                      "t.yaml:2:11: 'server.listen' must be \"HOST:PORT\": HOST an IPv4 address, "
                      "an IPv6 address in brackets or a host name, PORT between 1 and 65535\n"
                      "t.yaml:4:12: 'redis.address' must be \"tcp://HOST:PORT\" or \"unix:PATH\" "
                      "(such as \"tcp://127.0.0.1:6379\" or \"unix:/run/redis/redis.sock\")\n");
        fb_free(text);
    }
    /* unix: takes any non-empty path up to the sun_path limit. */
    fb_config_t *c = expect_ok("server:\n  listen: \"h:1\"\nredis:\n  address: \"unix:r.sock\"\n");
    ASSERT_STR_EQ(c->redis.address, "unix:r.sock");
    fb_config_free(c);
    expect_errors("server:\n  listen: \"h:1\"\nredis:\n  address: \"unix:\"\n",
                  "t.yaml:4:12: 'redis.address' must be \"tcp://HOST:PORT\" or \"unix:PATH\" "
                  "(such as \"tcp://127.0.0.1:6379\" or \"unix:/run/redis/redis.sock\")\n");
    return 0;
}

/* Sizes: bytes, or KiB/MiB suffixes, plain or quoted; anything else is refused. */
TEST_IMPL(config_sizes)
{
    unsetenv(PASSWORD_ENV);
    static const struct {
        const char *text;
        size_t value;
    } good[] = {
        {"1024", 1024},      {"\"2048\"", 2048},   {"1KiB", 1024},
        {"\"1 KiB\"", 1024}, {"64MiB", 64u << 20}, {"65535", 65535},
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(good); i++) {
        char *text = fb_asprintf("server: {listen: \"h:1\", max_body_bytes: %s}\n"
                                 "redis: {address: \"tcp://h:1\"}\n",
                                 good[i].text);
        fb_config_t *c = expect_ok(text);
        ASSERT_EQ(c->server.max_body_bytes, good[i].value);
        fb_config_free(c);
        fb_free(text);
    }
    static const char *const bad[] = {"1023",  "1kib", "\"1 MiB \"", "1.5MiB", "1  KiB", "KiB",
                                      "65MiB", "1GiB", "-1",         "0x400",  "1e6",    "01024"};
    for (size_t i = 0; i < FB_ARRAY_SIZE(bad); i++) {
        char *text = fb_asprintf("server: {listen: \"h:1\", max_body_bytes: %s}\n"
                                 "redis: {address: \"tcp://h:1\"}\n",
                                 bad[i]);
        char *errors = NULL;
        fb_config_t *c = parse(text, &errors);
        ASSERT_NULL(c);
        ASSERT(strstr(errors, "'server.max_body_bytes' must be a size between 1 KiB and 64 MiB"));
        fb_free(errors);
        fb_free(text);
    }
    return 0;
}

/* Makes a private temporary directory; returns its path (new). */
static char *make_tmpdir(void)
{
    char *dir = fb_strdup("/tmp/fb-test-config-XXXXXX");
    ASSERT_NOT_NULL(mkdtemp(dir));
    return dir;
}

/* password_file: read, trailing newline removed, relative to the configuration's directory. */
TEST_IMPL(config_password_file)
{
    unsetenv(PASSWORD_ENV);
    char *dir = make_tmpdir();
    char *pw = fb_asprintf("%s/redis.pass", dir);
    char *cfg_path = fb_asprintf("%s/frichebot.yaml", dir);

    write_all(pw, "s3cret value\n");
    char *text = fb_asprintf(REQUIRED "  password_file: \"%s\"\n", pw);
    fb_config_t *c = expect_ok(text);
    ASSERT_STR_EQ(c->redis.password, "s3cret value");
    ASSERT_STR_EQ(c->redis.password_file, pw);
    fb_config_free(c);
    fb_free(text);

    write_all(pw, "crlf\r\n");
    write_all(cfg_path, REQUIRED "  password_file: redis.pass\n");
    fb_buf_t e;
    fb_buf_init(&e, 1u << 20);
    c = fb_config_load(cfg_path, &e);
    if (!c)
        FB_TEST_FAIL("relative password_file:\n%s", fb_buf_str(&e));
    ASSERT_STR_EQ(c->redis.password, "crlf");
    ASSERT_STR_EQ(c->redis.password_file, "redis.pass");
    fb_config_free(c);

    /* Bad contents are refused without being shown. */
    static const struct {
        const char *content, *why;
    } bad[] = {
        {"", "it is empty"},
        {"\n", "it is empty"},
        {"line one\nline two\n", "it must hold the secret on a single line"},
    };
    for (size_t i = 0; i < FB_ARRAY_SIZE(bad); i++) {
        write_all(pw, bad[i].content);
        fb_buf_reset(&e);
        ASSERT_NULL(fb_config_load(cfg_path, &e));
        char *want = fb_asprintf("%s:5:3: 'redis.password_file': cannot use '%s/redis.pass': %s\n",
                                 cfg_path, dir, bad[i].why);
        ASSERT_STR_EQ(fb_buf_str(&e), want);
        fb_free(want);
    }
    char big[5000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    write_all(pw, big);
    fb_buf_reset(&e);
    ASSERT_NULL(fb_config_load(cfg_path, &e));
    ASSERT(strstr(fb_buf_str(&e), "it is larger than 4096 bytes"));
    ASSERT_NULL(strstr(fb_buf_str(&e), "xxxx"));

    /* Unreadable: the path and the reason are given. */
    ASSERT_EQ(chmod(pw, 0), 0);
    if (access(pw, R_OK) != 0) { /* root reads anything: skip this part then */
        fb_buf_reset(&e);
        ASSERT_NULL(fb_config_load(cfg_path, &e));
        char *want = fb_asprintf(
            "%s:5:3: 'redis.password_file': cannot use '%s/redis.pass': Permission denied\n",
            cfg_path, dir);
        ASSERT_STR_EQ(fb_buf_str(&e), want);
        fb_free(want);
    }
    fb_buf_free(&e);
    ASSERT_EQ(unlink(pw), 0);
    ASSERT_EQ(unlink(cfg_path), 0);
    ASSERT_EQ(rmdir(dir), 0);
    fb_free(cfg_path);
    fb_free(pw);
    fb_free(dir);
    return 0;
}

/* FRICHEBOT_REDIS_PASSWORD provides the password, and wins over password_file. */
TEST_IMPL(config_password_env)
{
    ASSERT_EQ(setenv(PASSWORD_ENV, "from-env", 1), 0);
    fb_buf_t e;
    fb_buf_init(&e, 1u << 20);
    fb_config_t *c = fb_config_load_default(&e);
    ASSERT_NOT_NULL(c);
    ASSERT_STR_EQ(c->redis.password, "from-env");
    fb_config_free(c);

    /* When the environment provides it, the file is not read (it does not even exist). */
    c = expect_ok(REQUIRED "  password_file: /nonexistent/frichebot/redis.pass\n");
    ASSERT_STR_EQ(c->redis.password, "from-env");
    ASSERT_STR_EQ(c->redis.password_file, "/nonexistent/frichebot/redis.pass");
    fb_config_free(c);

    /* Empty means unset: the file is read again. */
    ASSERT_EQ(setenv(PASSWORD_ENV, "", 1), 0);
    expect_errors(REQUIRED "  password_file: /nonexistent/frichebot/redis.pass\n",
                  "t.yaml:5:3: 'redis.password_file': cannot use "
                  "'/nonexistent/frichebot/redis.pass': No such file or directory\n");
    c = expect_ok(REQUIRED);
    ASSERT_NULL(c->redis.password);
    fb_config_free(c);
    fb_buf_free(&e);
    return 0;
}

/*
 * Secret values never appear in error text: not when written in the file (under any secret key
 * name, anywhere), not from a refused password file, not from the environment.
 */
TEST_IMPL(config_secrets_never_in_errors)
{
    ASSERT_EQ(setenv(PASSWORD_ENV, "ENVSECRET-1", 1), 0);
    expect_errors(
        REQUIRED "  password: \"FILESECRET-1\"\n"
                 "  token: FILESECRET-2\n"
                 "bot:\n  - {secret: FILESECRET-3, Access_Token: FILESECRET-4}\n"
                 "as_token: {nested: FILESECRET-5}\n"
                 "hs_token: &x FILESECRET-6\n"
                 "other: *x\n"
                 "server:\n  listen: nope\n",
        "t.yaml:5:3: 'redis.password': secrets must not be written in the configuration "
        "file: use a *_file key or an environment variable (here: redis.password_file "
        "or FRICHEBOT_REDIS_PASSWORD)\n"
        "t.yaml:6:3: 'redis.token': secrets must not be written in the configuration "
        "file: use a *_file key or an environment variable\n"
        "t.yaml:7:1: unknown key 'bot' at the top level (known: server, redis, store, "
        "http_client, log, dialogs, router, reminders, web, matrix, email, stats, escalation)\n"
        "t.yaml:8:6: 'bot[0].secret': secrets must not be written in the configuration "
        "file: use a *_file key or an environment variable\n"
        "t.yaml:8:28: 'bot[0].Access_Token': secrets must not be written in the "
        "configuration file: use a *_file key or an environment variable\n"
        "t.yaml:9:1: 'as_token': secrets must not be written in the configuration file: "
        "use a *_file key or an environment variable\n"
        "t.yaml:10:1: 'hs_token': secrets must not be written in the configuration "
        "file: use a *_file key or an environment variable\n"
        "t.yaml:11:1: unknown key 'other' at the top level (known: server, redis, "
        "store, http_client, log, dialogs, router, reminders, web, matrix, email, stats, "
        "escalation)\n"
        "t.yaml:12:1: duplicate key 'server' (first at 1:1)\n");

    /* Whatever goes wrong, no secret from anywhere shows up. */
    char *dir = make_tmpdir();
    char *pw = fb_asprintf("%s/pw", dir);
    write_all(pw, "PWFILESECRET-1\nPWFILESECRET-2\n");
    ASSERT_EQ(unsetenv(PASSWORD_ENV), 0);
    char *text = fb_asprintf("server:\n  listen: PWFILESECRET\nredis:\n  address: x\n"
                             "  password_file: %s\n  secret: FILESECRET-7\n",
                             pw);
    char *errors = NULL;
    ASSERT_NULL(parse(text, &errors));
    ASSERT_NOT_NULL(strstr(errors, "cannot use"));
    ASSERT_NULL(strstr(errors, "SECRET-"));
    ASSERT_NULL(strstr(errors, "PWFILESECRET"));
    fb_free(errors);
    fb_free(text);
    ASSERT_EQ(unlink(pw), 0);
    ASSERT_EQ(rmdir(dir), 0);
    fb_free(pw);
    fb_free(dir);

    ASSERT_EQ(setenv(PASSWORD_ENV, "ENVSECRET-2", 1), 0);
    errors = NULL;
    ASSERT_NULL(parse("server: {listen: 1}\n", &errors));
    ASSERT_NULL(strstr(errors, "ENVSECRET"));
    fb_free(errors);
    return 0;
}

/* Errors come all at once, sorted by position, at most 50 plus one line saying so. */
TEST_IMPL(config_errors_capped)
{
    unsetenv(PASSWORD_ENV);
    fb_buf_t t;
    fb_buf_init(&t, 1u << 20);
    ASSERT_OK(fb_buf_puts(&t, REQUIRED "store:\n"));
    for (int i = 0; i < 200; i++)
        ASSERT_OK(fb_buf_printf(&t, "  k%d: 1\n", i));
    char *errors = NULL;
    ASSERT_NULL(parse(fb_buf_str(&t), &errors));
    int lines = 0;
    for (const char *p = errors; *p; p++)
        lines += *p == '\n';
    ASSERT_EQ(lines, 51);
    ASSERT_NOT_NULL(strstr(errors, "t.yaml:6:3: unknown key 'k0' in 'store' (known: key_prefix, "
                                   "session_ttl_days)\n"));
    ASSERT_NOT_NULL(strstr(errors, "t.yaml:55:3: unknown key 'k49' in 'store'"));
    ASSERT_NULL(strstr(errors, "'k50'"));
    const char *last = strstr(errors, "t.yaml:56:3: too many errors, stopped after 50\n");
    ASSERT_NOT_NULL(last);
    ASSERT_EQ(last[strlen(last) - 1], '\n');
    ASSERT_EQ(strlen(last), strlen("t.yaml:56:3: too many errors, stopped after 50\n"));
    fb_free(errors);

    /* An errors buffer too small for the first line still gets a short note. */
    fb_buf_t small;
    fb_buf_init(&small, 100);
    ASSERT_NULL(fb_config_parse("t.yaml", t.data, t.len, &small));
    ASSERT_STR_EQ(fb_buf_str(&small), "t.yaml:1:1: too many errors to list\n");
    fb_buf_free(&small);
    /* NULL errors buffer: refused, nothing reported, nothing leaked. */
    ASSERT_NULL(fb_config_parse("t.yaml", t.data, t.len, NULL));
    fb_buf_free(&t);
    return 0;
}

/* Files that cannot be read are reported in the same NAME:LINE:COL format. */
TEST_IMPL(config_load_errors)
{
    fb_buf_t e;
    fb_buf_init(&e, 1u << 20);
    ASSERT_NULL(fb_config_load("/nonexistent/frichebot.yaml", &e));
    ASSERT_STR_EQ(fb_buf_str(&e), "/nonexistent/frichebot.yaml:1:1: cannot read the "
                                  "configuration file: No such file or directory\n");
    fb_buf_reset(&e);
    ASSERT_NULL(fb_config_load("/", &e));
    ASSERT_STR_EQ(fb_buf_str(&e), "/:1:1: cannot read the configuration file: Is a directory\n");
    /* Parse accepts a NULL text of length 0 as the empty file. */
    fb_buf_reset(&e);
    ASSERT_NULL(fb_config_parse("n.yaml", NULL, 0, &e));
    ASSERT_STR_EQ(fb_buf_str(&e), "n.yaml:1:1: the configuration is empty: it must at least set "
                                  "server.listen and redis.address\n");
    fb_buf_free(&e);
    return 0;
}

/* fb_log_check_spec validates like fb_log_apply_spec but changes nothing. */
TEST_IMPL(config_log_check_spec)
{
    const char *bad = NULL;
    fb_log_set_level_all(FB_LOG_WARN);
    ASSERT_OK(fb_log_check_spec("trace,http=debug", &bad));
    ASSERT_EQ(fb__log_levels[FB_SUB_CORE], FB_LOG_WARN);
    ASSERT_EQ(fb__log_levels[FB_SUB_HTTP], FB_LOG_WARN);
    const char *spec = "info,http=loud,redis=debug";
    ASSERT_EQ(fb_log_check_spec(spec, &bad), FB_EINVAL);
    ASSERT(bad == spec + 5);
    ASSERT_EQ(fb__log_levels[FB_SUB_CORE], FB_LOG_WARN);
    ASSERT_EQ(fb_log_check_spec("nosuch=info", NULL), FB_EINVAL);
    return 0;
}

/* Path settings: kept as written without a file (relative to the working directory), relative
 * to the file's directory when loaded from one, null for the built-in default. */
TEST_IMPL(config_paths)
{
    unsetenv(PASSWORD_ENV);
    fb_config_t *c = expect_ok(REQUIRED "dialogs:\n  path: d/x.yaml\n  geo_path: ~\n"
                                        "web:\n  static_dir: /abs/static\n  dsfr_dir: null\n");
    ASSERT_STR_EQ(c->dialogs.path, "d/x.yaml");
    ASSERT_STR_EQ(c->dialogs.geo_path, fb_data_path(FB_DATA_GEO));
    ASSERT_STR_EQ(WEB(c)->static_dir, "/abs/static");
    ASSERT_STR_EQ(WEB(c)->dsfr_dir, FB_BINARY_DIR "/web/dsfr");
    fb_config_free(c);

    char *dir = make_tmpdir();
    char *file = fb_asprintf("%s/f.yaml", dir);
    write_all(file, REQUIRED "dialogs:\n  path: sub/friche.yaml\nweb:\n  enabled: false\n");
    fb_buf_t e;
    fb_buf_init(&e, 1u << 20);
    c = fb_config_load(file, &e);
    ASSERT_NOT_NULL(c);
    char *want = fb_asprintf("%s/sub/friche.yaml", dir);
    ASSERT_STR_EQ(c->dialogs.path, want);
    ASSERT(!WEB(c)->enabled);
    fb_config_free(c);
    fb_buf_free(&e);
    fb_free(want);
    ASSERT_EQ(unlink(file), 0);
    ASSERT_EQ(rmdir(dir), 0);
    fb_free(file);
    fb_free(dir);
    return 0;
}

/* reminders: ranges, and the working hours must be in order. */
TEST_IMPL(config_reminders)
{
    expect_errors("server: {listen: \"127.0.0.1:1\"}\nredis: {address: \"tcp://127.0.0.1:1\"}\n"
                  "reminders: {start_hour: 18, end_hour: 9}\n",
                  "t.yaml:1:1: reminders.start_hour must be before reminders.end_hour\n");
    expect_errors("server: {listen: \"127.0.0.1:1\"}\nredis: {address: \"tcp://127.0.0.1:1\"}\n"
                  "reminders: {end_hour: 25, batch: 0}\n",
                  "t.yaml:3:23: 'reminders.end_hour' must be an integer between 1 and 24\n"
                  "t.yaml:3:34: 'reminders.batch' must be an integer between 1 and 10000\n");
    fb_config_t *c = expect_ok("server: {listen: \"127.0.0.1:1\"}\n"
                               "redis: {address: \"tcp://127.0.0.1:1\"}\n"
                               "reminders: {start_hour: 0, end_hour: 24, inactive_months: 3}\n");
    ASSERT_EQ(c->reminders.start_hour, 0);
    ASSERT_EQ(c->reminders.end_hour, 24);
    ASSERT_EQ(c->reminders.inactive_months, 3);
    fb_config_free(c);
    return 0;
}

/* redis.allow_volatile (default false), and the deprecated require_aof: still accepted (the
 * daemon warns and ignores it), but not beside allow_volatile: true. */
TEST_IMPL(config_redis_persistence)
{
    fb_config_t *c = expect_ok("server: {listen: \"127.0.0.1:1\"}\n"
                               "redis: {address: \"tcp://127.0.0.1:1\"}\n");
    ASSERT(!c->redis.allow_volatile);
    ASSERT_NULL(c->redis.require_aof);
    fb_config_free(c);
    c = expect_ok("server: {listen: \"127.0.0.1:1\"}\n"
                  "redis: {address: \"tcp://127.0.0.1:1\", allow_volatile: true}\n");
    ASSERT(c->redis.allow_volatile);
    fb_config_free(c);
    c = expect_ok("server: {listen: \"127.0.0.1:1\"}\n"
                  "redis: {address: \"tcp://127.0.0.1:1\", require_aof: false}\n");
    ASSERT(!c->redis.allow_volatile); /* false no longer means "accept a volatile Redis" */
    ASSERT_STR_EQ(c->redis.require_aof, "false");
    fb_config_free(c);
    c = expect_ok("server: {listen: \"127.0.0.1:1\"}\n"
                  "redis: {address: \"tcp://127.0.0.1:1\", require_aof: true}\n");
    ASSERT_STR_EQ(c->redis.require_aof, "true");
    fb_config_free(c);
    expect_errors("server: {listen: \"127.0.0.1:1\"}\n"
                  "redis: {address: \"tcp://127.0.0.1:1\", require_aof: true, allow_volatile: "
                  "true}\n",
                  "t.yaml:1:1: redis.require_aof: true and redis.allow_volatile: true contradict "
                  "each other; remove redis.require_aof (deprecated: a Redis without AOF is now "
                  "refused unless allow_volatile is true)\n");
    expect_errors("server: {listen: \"127.0.0.1:1\"}\n"
                  "redis: {address: \"tcp://127.0.0.1:1\", require_aof: yes}\n",
                  "t.yaml:2:52: 'redis.require_aof' must be true or false\n");
    return 0;
}

TEST_IMPL(config_matrix)
{
    unsetenv("FRICHEBOT_MATRIX_TOKEN");
    char *errors = NULL;
    /* Defaults: disabled, bot mode, the documented values, empty lists (never NULL). */
    fb_config_t *c = parse("server:\n  listen: \"127.0.0.1:1\"\nredis:\n  address: "
                           "\"tcp://127.0.0.1:2\"\n",
                           &errors);
    if (!c)
        FB_TEST_FAIL("%s", errors);
    fb_free(errors);
    ASSERT(!MX(c)->enabled);
    ASSERT_STR_EQ(MX(c)->mode, "bot");
    ASSERT_NULL(MX(c)->homeserver);
    ASSERT_EQ(MX(c)->sync_timeout_ms, 30000);
    ASSERT_EQ(MX(c)->sync_timeline_limit, 50);
    ASSERT_EQ(MX(c)->sync_retry.n_delays, 5);
    ASSERT_NOT_NULL(MX(c)->allowed_servers);
    ASSERT_NULL(MX(c)->allowed_servers[0]);
    ASSERT_NULL(MX(c)->ignore_users[0]);
    ASSERT_STR_EQ(MX(c)->reminder_msgtype, "m.text");
    ASSERT_STR_EQ(MX(c)->ticket_mention, "none");
    ASSERT_NULL(MX(c)->ticket_mention_users[0]);
    ASSERT(MX(c)->typing && MX(c)->read_receipts && MX(c)->leave_when_alone);
    ASSERT_NOT_NULL(strstr(MX(c)->encrypted_notice, "chiffrés"));
    ASSERT_STR_EQ(MX(c)->as_id, "frichebot");
    ASSERT_STR_EQ(MX(c)->as_url, "http://127.0.0.1:8080");
    ASSERT_EQ(MX(c)->as_txn_retention_hours, 72);
    ASSERT_EQ(MX(c)->crypto_key_wait_ms, 5000);
    ASSERT_EQ(MX(c)->crypto_first_message_delay_ms, 2000);
    fb_config_free(c);

    /* Every key. */
    c = parse("server:\n  listen: \"127.0.0.1:1\"\nredis:\n  address: \"tcp://127.0.0.1:2\"\n"
              "matrix:\n  enabled: true\n  mode: appservice\n"
              "  homeserver: \"https://matrix.example.org\"\n  user_id: \"@fb:example.org\"\n"
              "  device_display_name: \"bot\"\n  sync_timeout_ms: 0\n  sync_timeline_limit: 7\n"
              "  sync_retry:\n    delays_ms: [5]\n    jitter_percent: 0\n"
              "  allowed_servers: [\"*.gouv.fr\", \"example.org\"]\n"
              "  allowed_users: [\"@boss:x\"]\n  ignore_users: [\"@bot-*:*\"]\n"
              "  reminder_msgtype: m.notice\n  typing: false\n  read_receipts: false\n"
              "  ticket_mention: advisors\n  ticket_mention_users: [\"@c.m:agent.tchap.gouv.fr\"]\n"
              "  leave_when_alone: false\n  encrypted_notice: \"chiffré\"\n"
              "  appservice:\n    registration_file: /etc/reg.yaml\n    id: fbas\n"
              "    url: \"http://10.0.0.1:8080\"\n    txn_retention_hours: 1\n"
              "  crypto:\n    key_wait_ms: 7\n    first_message_delay_ms: 0\n",
              &errors);
    if (!c)
        FB_TEST_FAIL("%s", errors);
    fb_free(errors);
    ASSERT(MX(c)->enabled);
    ASSERT_STR_EQ(MX(c)->mode, "appservice");
    ASSERT_STR_EQ(MX(c)->homeserver, "https://matrix.example.org");
    ASSERT_STR_EQ(MX(c)->user_id, "@fb:example.org");
    ASSERT_STR_EQ(MX(c)->device_display_name, "bot");
    ASSERT_EQ(MX(c)->sync_timeout_ms, 0);
    ASSERT_EQ(MX(c)->sync_timeline_limit, 7);
    ASSERT_EQ(MX(c)->sync_retry.n_delays, 1);
    ASSERT_STR_EQ(MX(c)->allowed_servers[0], "*.gouv.fr");
    ASSERT_STR_EQ(MX(c)->allowed_servers[1], "example.org");
    ASSERT_NULL(MX(c)->allowed_servers[2]);
    ASSERT_STR_EQ(MX(c)->allowed_users[0], "@boss:x");
    ASSERT_STR_EQ(MX(c)->ignore_users[0], "@bot-*:*");
    ASSERT_STR_EQ(MX(c)->reminder_msgtype, "m.notice");
    ASSERT_STR_EQ(MX(c)->ticket_mention, "advisors");
    ASSERT_STR_EQ(MX(c)->ticket_mention_users[0], "@c.m:agent.tchap.gouv.fr");
    ASSERT_NULL(MX(c)->ticket_mention_users[1]);
    ASSERT(!MX(c)->typing && !MX(c)->read_receipts && !MX(c)->leave_when_alone);
    ASSERT_STR_EQ(MX(c)->encrypted_notice, "chiffré");
    ASSERT_STR_EQ(MX(c)->as_registration_file, "/etc/reg.yaml");
    ASSERT_STR_EQ(MX(c)->as_id, "fbas");
    ASSERT_STR_EQ(MX(c)->as_url, "http://10.0.0.1:8080");
    ASSERT_EQ(MX(c)->as_txn_retention_hours, 1);
    ASSERT_EQ(MX(c)->crypto_key_wait_ms, 7);
    ASSERT_EQ(MX(c)->crypto_first_message_delay_ms, 0); /* 0: never wait */
    fb_config_free(c);

    /* Bad values, and the keys that go together. */
    expect_errors(
        "server:\n  listen: \"127.0.0.1:1\"\nredis:\n  address: \"tcp://127.0.0.1:2\"\n"
        "matrix:\n  enabled: true\n  mode: sync\n  homeserver: \"https://x.org/\"\n"
        "  user_id: \"frichebot\"\n  allowed_servers: \"*\"\n  ignore_users: [\"\", 3]\n"
        "  reminder_msgtype: m.emote\n",
        "t.yaml:5:1: 'matrix.homeserver' is required when matrix.enabled is true\n"
        "t.yaml:5:1: 'matrix.user_id' is required when matrix.enabled is true\n"
        "t.yaml:5:1: bot mode needs 'matrix.password_file', 'matrix.access_token_file' or the "
        "environment variable FRICHEBOT_MATRIX_TOKEN\n"
        "t.yaml:7:9: 'matrix.mode' must be bot or appservice\n"
        "t.yaml:8:15: 'matrix.homeserver' must be an http:// or https:// URL without a trailing "
        "'/', such as \"https://matrix.example.org\"\n"
        "t.yaml:9:12: 'matrix.user_id' must be a Matrix user id such as "
        "\"@frichebot:example.org\"\n"
        "t.yaml:10:20: 'matrix.allowed_servers' must be a list of patterns, such as "
        "[\"*.gouv.fr\"]\n"
        "t.yaml:11:18: 'matrix.ignore_users[0]' must be a pattern of 1 to 255 bytes without "
        "control "
        "characters\n"
        "t.yaml:12:21: 'matrix.reminder_msgtype' must be m.text or m.notice\n");
    expect_errors("server:\n  listen: \"127.0.0.1:1\"\nredis:\n  address: \"tcp://127.0.0.1:2\"\n"
                  "matrix:\n  enabled: true\n  mode: appservice\n  homeserver: \"http://h\"\n"
                  "  user_id: \"@a:h\"\n",
                  "t.yaml:5:1: 'matrix.appservice.registration_file' is required in appservice "
                  "mode (write it with 'frichebot matrix-registration')\n");
    /* A wait longer than a minute would hold a new room's first answers too long. */
    expect_errors(
        "server:\n  listen: \"127.0.0.1:1\"\nredis:\n  address: \"tcp://127.0.0.1:2\"\n"
        "matrix:\n  crypto:\n    first_message_delay_ms: 60001\n",
        "t.yaml:7:29: 'matrix.crypto.first_message_delay_ms' must be an integer between 0 "
        "and 60000\n");
    /* A token in the environment is enough for bot mode. */
    setenv("FRICHEBOT_MATRIX_TOKEN", "syt_test", 1);
    c = parse("server:\n  listen: \"127.0.0.1:1\"\nredis:\n  address: \"tcp://127.0.0.1:2\"\n"
              "matrix:\n  enabled: true\n  homeserver: \"http://h:8008\"\n  user_id: \"@a:h\"\n",
              &errors);
    unsetenv("FRICHEBOT_MATRIX_TOKEN");
    if (!c)
        FB_TEST_FAIL("%s", errors);
    fb_free(errors);
    fb_config_free(c);
    /* matrix.ticket_mention: advisors needs user ids, each a plain "@localpart:server". */
    expect_errors("server:\n  listen: \"127.0.0.1:1\"\nredis:\n  address: \"tcp://127.0.0.1:2\"\n"
                  "matrix:\n  ticket_mention: advisors\n",
                  "t.yaml:5:1: 'matrix.ticket_mention: advisors' needs the advisors' user ids in "
                  "'matrix.ticket_mention_users'\n");
    expect_errors("server:\n  listen: \"127.0.0.1:1\"\nredis:\n  address: \"tcp://127.0.0.1:2\"\n"
                  "matrix:\n  ticket_mention: room\n"
                  "  ticket_mention_users: [\"@ok:x.org\", \"camille\", \"@a<b:x.org\"]\n",
                  "t.yaml:5:1: 'matrix.ticket_mention_users[1]' must be a user id such as "
                  "\"@camille.martin:example.org\"\n"
                  "t.yaml:5:1: 'matrix.ticket_mention_users[2]' must be a user id such as "
                  "\"@camille.martin:example.org\"\n");
    expect_errors("server:\n  listen: \"127.0.0.1:1\"\nredis:\n  address: \"tcp://127.0.0.1:2\"\n"
                  "matrix:\n  ticket_mention: everyone\n",
                  "t.yaml:6:19: 'matrix.ticket_mention' must be none or room or advisors\n");
    return 0;
}
