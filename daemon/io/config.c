/* SPDX-License-Identifier: MIT */
/*
 * config.c - reads the daemon's YAML configuration (libyaml) into an fb_config_t.
 *
 * The schema is a set of static tables, one per section, naming each key, its kind, its range
 * and where its value goes in fb_config_t. The defaults are not written here: every parse first
 * applies the embedded deploy/frichebot.yaml.sample, then the user's file on top, so the
 * commented sample is the single source of truth for default values.
 *
 * A document is loaded whole with yaml_parser_load() and walked twice: once against the schema
 * (unknown keys, duplicates, types, ranges, missing required keys) and once over every node for
 * keys that look like secrets. Errors are collected, sorted by position and written out together
 * as "NAME:LINE:COL: message". Values from the file are never echoed in messages (only key
 * names, paths and log specs), and secret values never leave the config structure.
 */
#include "io/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "common/diag.h"
#include "common/yamljson.h"
#include "frichebot/alloc.h"
#include "frichebot/err.h"
#include "frichebot/log.h"
#include "io/paths.h"

#define DEFAULT_NAME     "(embedded default)"
#define PASSWORD_ENV     "FRICHEBOT_REDIS_PASSWORD"
#define MAX_ERRORS       50         /* errors kept per parse; more are summarized in one line */
#define MAX_FILE_BYTES   (1u << 20) /* a configuration file larger than this is refused */
#define MAX_SECRET_BYTES 4096       /* a password file larger than this is refused */
#define MAX_SCAN_DEPTH   64         /* the secret scan does not descend deeper than this */
#define MAX_FIELDS       24         /* keys per section, for the seen[] arrays */
#define MAX_PATH_BYTES   4096       /* a path setting longer than this is refused */
#define KIB              1024ul
#define MIB              (1024ul * 1024ul)

/* ---- the schema ----------------------------------------------------------------------------- */

#define OFF(member) offsetof(fb_config_t, member)
#define TABLE(path, arr)                                                                           \
    {                                                                                              \
        path, arr, FB_ARRAY_SIZE(arr)                                                              \
    }

static const fb_conf_field_t server_fields[] = {
    {"listen", FB_CONF_LISTEN, true, OFF(server), 1, 65535, NULL, NULL},
    {"max_body_bytes", FB_CONF_SIZE, false, OFF(server.max_body_bytes), KIB, 64 * MIB, NULL, NULL},
    {"max_header_bytes", FB_CONF_SIZE, false, OFF(server.max_header_bytes), KIB, 65535, NULL, NULL},
    {"idle_timeout_s", FB_CONF_UINT, false, OFF(server.idle_timeout_s), 1, 3600, NULL, NULL},
    {"keepalive_timeout_s", FB_CONF_UINT, false, OFF(server.keepalive_timeout_s), 1, 3600, NULL,
     NULL},
    {"shutdown_deadline_s", FB_CONF_UINT, false, OFF(server.shutdown_deadline_s), 0, 600, NULL,
     NULL},
    {"max_connections_per_address", FB_CONF_UINT, false, OFF(server.max_connections_per_address), 1,
     1000000, NULL, NULL},
    {"trusted_proxies", FB_CONF_IPS, false, OFF(server.trusted_proxies), 0, 64, NULL, NULL},
    {"public_url", FB_CONF_URL, false, OFF(server.public_url), 0, 0, NULL, NULL},
};

static const fb_conf_field_t redis_reconnect_fields[] = {
    {"delays_ms", FB_CONF_DELAYS, false, OFF(redis.reconnect), 1, 600000, NULL, NULL},
    {"jitter_percent", FB_CONF_UINT, false, OFF(redis.reconnect.jitter_percent), 0, 100, NULL,
     NULL},
};
static const fb_conf_table_t redis_reconnect_table =
    TABLE("redis.reconnect", redis_reconnect_fields);

static const char *const bool_words[] = {"true", "false", NULL};

static const fb_conf_field_t redis_fields[] = {
    {"address", FB_CONF_ADDRESS, true, OFF(redis.address), 0, 0, NULL, NULL},
    {"password_file", FB_CONF_SECRET_FILE, false, OFF(redis.password_file), 0, 0, NULL, NULL},
    {"connect_timeout_ms", FB_CONF_UINT, false, OFF(redis.connect_timeout_ms), 10, 60000, NULL,
     NULL},
    {"command_timeout_ms", FB_CONF_UINT, false, OFF(redis.command_timeout_ms), 10, 60000, NULL,
     NULL},
    {"write_deadline_ms", FB_CONF_UINT, false, OFF(redis.write_deadline_ms), 100, 3600000, NULL,
     NULL},
    {"reconnect", FB_CONF_SECTION, false, 0, 0, 0, &redis_reconnect_table, NULL},
    {"allow_volatile", FB_CONF_BOOL, false, OFF(redis.allow_volatile), 0, 0, NULL, NULL},
    /* Deprecated (warned at start, ignored): a word, so that the daemon knows it was written. */
    {"require_aof", FB_CONF_CHOICE, false, OFF(redis.require_aof), 0, 0, NULL, bool_words},
};

static const fb_conf_field_t store_fields[] = {
    {"key_prefix", FB_CONF_PREFIX, false, OFF(store.key_prefix), 1, 64, NULL, NULL},
    {"session_ttl_days", FB_CONF_UINT, false, OFF(store.session_ttl_days), 1, 3650, NULL, NULL},
};

static const fb_conf_field_t client_retry_fields[] = {
    {"delays_ms", FB_CONF_DELAYS, false, OFF(http_client.retry), 1, 600000, NULL, NULL},
    {"jitter_percent", FB_CONF_UINT, false, OFF(http_client.retry.jitter_percent), 0, 100, NULL,
     NULL},
    {"max_attempts", FB_CONF_UINT, false, OFF(http_client.retry.max_attempts), 1, 20, NULL, NULL},
};
static const fb_conf_table_t client_retry_table = TABLE("http_client.retry", client_retry_fields);

static const fb_conf_field_t client_fields[] = {
    {"timeout_ms", FB_CONF_UINT, false, OFF(http_client.timeout_ms), 100, 600000, NULL, NULL},
    {"connect_timeout_ms", FB_CONF_UINT, false, OFF(http_client.connect_timeout_ms), 10, 60000,
     NULL, NULL},
    {"max_response_bytes", FB_CONF_SIZE, false, OFF(http_client.max_response_bytes), KIB, 256 * MIB,
     NULL, NULL},
    {"max_host_connections", FB_CONF_UINT, false, OFF(http_client.max_host_connections), 1, 256,
     NULL, NULL},
    {"retry", FB_CONF_SECTION, false, 0, 0, 0, &client_retry_table, NULL},
};

static const fb_conf_field_t log_fields[] = {
    {"level", FB_CONF_LOG_LEVEL, false, OFF(log.level), 0, 0, NULL, NULL},
    {"format", FB_CONF_LOG_FORMAT, false, OFF(log.json), 0, 0, NULL, NULL},
};

static const fb_conf_field_t dialogs_fields[] = {
    {"path", FB_CONF_PATH, false, OFF(dialogs.path), 0, 0, NULL, NULL},
    {"geo_path", FB_CONF_PATH, false, OFF(dialogs.geo_path), 0, 0, NULL, NULL},
};

static const fb_conf_field_t outbox_retry_fields[] = {
    {"delays_ms", FB_CONF_DELAYS, false, OFF(router.outbox_retry), 1, 3600000, NULL, NULL},
    {"jitter_percent", FB_CONF_UINT, false, OFF(router.outbox_retry.jitter_percent), 0, 100, NULL,
     NULL},
    {"max_attempts", FB_CONF_UINT, false, OFF(router.outbox_retry.max_attempts), 0, 1000000, NULL,
     NULL},
};
static const fb_conf_table_t outbox_retry_table = TABLE("router.outbox_retry", outbox_retry_fields);

static const fb_conf_field_t router_fields[] = {
    {"dedupe_retention_hours", FB_CONF_UINT, false, OFF(router.dedupe_retention_hours), 1, 8760,
     NULL, NULL},
    {"max_queued_per_conversation", FB_CONF_UINT, false, OFF(router.max_queued_per_conversation), 1,
     10000, NULL, NULL},
    {"max_queued_events", FB_CONF_UINT, false, OFF(router.max_queued_events), 1, 1000000, NULL,
     NULL},
    {"max_sending", FB_CONF_UINT, false, OFF(router.max_sending), 1, 100000, NULL, NULL},
    {"outbox_retry", FB_CONF_SECTION, false, 0, 0, 0, &outbox_retry_table, NULL},
};

static const fb_conf_field_t reminders_fields[] = {
    {"enabled", FB_CONF_BOOL, false, OFF(reminders.enabled), 0, 0, NULL, NULL},
    {"poll_interval_ms", FB_CONF_UINT, false, OFF(reminders.poll_interval_ms), 10, 600000, NULL,
     NULL},
    {"batch", FB_CONF_UINT, false, OFF(reminders.batch), 1, 10000, NULL, NULL},
    {"lease_ms", FB_CONF_UINT, false, OFF(reminders.lease_ms), 100, 86400000, NULL, NULL},
    {"working_hours_only", FB_CONF_BOOL, false, OFF(reminders.working_hours_only), 0, 0, NULL,
     NULL},
    {"start_hour", FB_CONF_UINT, false, OFF(reminders.start_hour), 0, 23, NULL, NULL},
    {"end_hour", FB_CONF_UINT, false, OFF(reminders.end_hour), 1, 24, NULL, NULL},
    {"inactive_months", FB_CONF_UINT, false, OFF(reminders.inactive_months), 0, 120, NULL, NULL},
};

static const fb_conf_field_t stats_fields[] = {
    {"min_count", FB_CONF_UINT, false, OFF(stats.min_count), 1, 1000, NULL, NULL},
    {"cache_seconds", FB_CONF_UINT, false, OFF(stats.cache_seconds), 0, 3600, NULL, NULL},
};

static const fb_conf_field_t escalation_fields[] = {
    {"enabled", FB_CONF_BOOL, false, OFF(escalation.enabled), 0, 0, NULL, NULL},
    {"rooms", FB_CONF_GLOBS, false, OFF(escalation.rooms), 0, 512, NULL, NULL},
    {"response_times", FB_CONF_GLOBS, false, OFF(escalation.response_times), 0, 512, NULL, NULL},
    {"watchdog_ms", FB_CONF_UINT, false, OFF(escalation.watchdog_ms), 100, 604800000, NULL, NULL},
    {"working_hours_only", FB_CONF_BOOL, false, OFF(escalation.working_hours_only), 0, 0, NULL,
     NULL},
};

static const fb_conf_table_t server_table = TABLE("server", server_fields);
static const fb_conf_table_t redis_table = TABLE("redis", redis_fields);
static const fb_conf_table_t store_table = TABLE("store", store_fields);
static const fb_conf_table_t client_table = TABLE("http_client", client_fields);
static const fb_conf_table_t log_table = TABLE("log", log_fields);
static const fb_conf_table_t dialogs_table = TABLE("dialogs", dialogs_fields);
static const fb_conf_table_t router_table = TABLE("router", router_fields);
static const fb_conf_table_t reminders_table = TABLE("reminders", reminders_fields);
static const fb_conf_table_t stats_table = TABLE("stats", stats_fields);
static const fb_conf_table_t escalation_table = TABLE("escalation", escalation_fields);

static const fb_conf_field_t top_fields[] = {
    {"server", FB_CONF_SECTION, false, 0, 0, 0, &server_table, NULL},
    {"redis", FB_CONF_SECTION, false, 0, 0, 0, &redis_table, NULL},
    {"store", FB_CONF_SECTION, false, 0, 0, 0, &store_table, NULL},
    {"http_client", FB_CONF_SECTION, false, 0, 0, 0, &client_table, NULL},
    {"log", FB_CONF_SECTION, false, 0, 0, 0, &log_table, NULL},
    {"dialogs", FB_CONF_SECTION, false, 0, 0, 0, &dialogs_table, NULL},
    {"router", FB_CONF_SECTION, false, 0, 0, 0, &router_table, NULL},
    {"reminders", FB_CONF_SECTION, false, 0, 0, 0, &reminders_table, NULL},
    {"stats", FB_CONF_SECTION, false, 0, 0, 0, &stats_table, NULL},
    {"escalation", FB_CONF_SECTION, false, 0, 0, 0, &escalation_table, NULL},
};
static const fb_conf_table_t top_table = TABLE("", top_fields);
#define ADAPTERS_AT 8 /* the adapters' sections come between reminders and stats */

/* Key names refused anywhere in the file: their values would be secrets. */
static const char *const secret_names[] = {"password",     "token",    "secret",
                                           "access_token", "hs_token", "as_token"};

/* ---- error collection ----------------------------------------------------------------------- */

/* The collector's words (common/diag.h): operators read English. */
static const fb_diag_words_t cfg_words = {"(error message too long)", "too many errors to list",
                                          "too many errors, stopped after ", ""};

/* One parse: the config being filled, the errors so far, where password_file was set. */
struct parse {
    fb_config_t *cfg;
    const char *base_dir; /* directory that relative password_file paths are relative to */
    fb_diag_t diag;       /* the errors; documents: 0 the embedded default, 1 the user's text */
    const char *pw_name;  /* document that set password_file last, or NULL */
    int pw_doc;
    yaml_mark_t pw_mark; /* position of its key */
    struct {
        const char *name; /* document that wrote the adapter's section last, or NULL */
        int doc;
        yaml_mark_t mark; /* position of its key */
    } sec_at[FB_CONF_MAX_SECTIONS];
    fb_conf_field_t top[MAX_FIELDS]; /* top_fields with the adapters' sections inserted */
    fb_conf_table_t top_table;
};

struct fb_conf_report_s {
    struct parse *p;
    size_t i; /* the section's index in cfg->sections */
};

/* One document being walked. */
struct ctx {
    struct parse *p;
    const char *name;
    int doc;
    yaml_document_t *ydoc;
    unsigned char *visited; /* one byte per node, for the secret scan */
    size_t nnodes;
    void *base; /* where the offsets of the table being walked point: the config, or an
                   adapter's options struct */
};

static void add_errorv(struct parse *p, const char *name, int doc, unsigned long line,
                       unsigned long col, const char *fmt, va_list ap)
    __attribute__((format(printf, 6, 0)));

/* Records an error at the 1-based position; past MAX_ERRORS only the first position is kept. */
static void add_errorv(struct parse *p, const char *name, int doc, unsigned long line,
                       unsigned long col, const char *fmt, va_list ap)
{
    fb_diag_addv(&p->diag, name, doc, line, col, fmt, ap);
}

static void add_error(struct parse *p, const char *name, int doc, unsigned long line,
                      unsigned long col, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static void add_error(struct parse *p, const char *name, int doc, unsigned long line,
                      unsigned long col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add_errorv(p, name, doc, line, col, fmt, ap);
    va_end(ap);
}

static void errorf(struct ctx *c, yaml_mark_t m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records an error at a libyaml mark (0-based) of the document being walked. */
static void errorf(struct ctx *c, yaml_mark_t m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add_errorv(c->p, c->name, c->doc, (unsigned long)m.line + 1, (unsigned long)m.column + 1, fmt,
               ap);
    va_end(ap);
}

/*
 * Sorts the errors by position and appends them to `out` (which may be NULL), then frees them.
 * If `out` reaches its maximum it is emptied by fb_buf (its contract), and one short line saying
 * so is written instead.
 */
static void flush_errors(struct parse *p, fb_buf_t *out)
{
    fb_diag_flush(&p->diag, out, NULL);
}

/* ---- small helpers -------------------------------------------------------------------------- */

static const char *node_kind(const yaml_node_t *n)
{
    if (n->type == YAML_SCALAR_NODE)
        return "a single value";
    if (n->type == YAML_SEQUENCE_NODE)
        return "a list";
    return "a mapping";
}

static bool is_scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE;
}

static const char *sval(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

/* True for a scalar that holds text without NUL characters (a quoted "\0" would cut it). */
static bool is_text(const yaml_node_t *n)
{
    return is_scalar(n) && strlen(sval(n)) == n->data.scalar.length;
}

/* True for YAML's null: an empty plain scalar, "~" or "null". */
static bool is_null(const yaml_node_t *n)
{
    if (!is_scalar(n) || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = sval(n);
    return n->data.scalar.length == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
           strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

static bool key_is(const yaml_node_t *key, const char *name)
{
    size_t n = strlen(name);
    return key->data.scalar.length == n && memcmp(key->data.scalar.value, name, n) == 0;
}

static bool is_secret_name(const yaml_node_t *key)
{
    if (!is_text(key))
        return false;
    for (size_t i = 0; i < FB_ARRAY_SIZE(secret_names); i++)
        if (strcasecmp(sval(key), secret_names[i]) == 0)
            return true;
    return false;
}

/*
 * Parses a decimal integer of `len` bytes: digits only, no sign, no leading zero (YAML 1.1
 * would read "010" as octal), at most `max`. Returns true and sets *out, or false.
 */
static bool parse_ulong(const char *s, size_t len, unsigned long max, unsigned long *out)
{
    if (len == 0 || (len > 1 && s[0] == '0'))
        return false;
    unsigned long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned long d = (unsigned long)(s[i] - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* A hint for a number written in quotes, which YAML reads as text; "" otherwise. */
static const char *quoted_number(const yaml_node_t *n)
{
    unsigned long v;
    if (is_scalar(n) && n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE &&
        parse_ulong(sval(n), n->data.scalar.length, ULONG_MAX, &v))
        return " (write it without quotes)";
    return "";
}

/* Parses "123", "64KiB", "8 MiB". Returns true and sets *out, or false. */
static bool parse_size(const char *s, size_t len, unsigned long *out)
{
    size_t digits = 0;
    while (digits < len && s[digits] >= '0' && s[digits] <= '9')
        digits++;
    const char *unit = s + digits;
    size_t ulen = len - digits;
    if (ulen > 0 && *unit == ' ') {
        unit++;
        ulen--;
    }
    unsigned long mult = 1;
    if (ulen == 3 && memcmp(unit, "KiB", 3) == 0)
        mult = KIB;
    else if (ulen == 3 && memcmp(unit, "MiB", 3) == 0)
        mult = MIB;
    else if (ulen != 0 || digits != len)
        return false;
    unsigned long v;
    if (!parse_ulong(s, digits, ULONG_MAX / mult, &v))
        return false;
    *out = v * mult;
    return true;
}

/* Writes a size the way an operator would write it: "64 MiB", "1 KiB", "65535 bytes". */
static void format_size(char *buf, size_t cap, unsigned long v)
{
    if (v >= MIB && v % MIB == 0)
        snprintf(buf, cap, "%lu MiB", v / MIB);
    else if (v >= KIB && v % KIB == 0)
        snprintf(buf, cap, "%lu KiB", v / KIB);
    else
        snprintf(buf, cap, "%lu bytes", v);
}

/* A host name: dot-separated labels of letters, digits, '-' and '_', 1..63 each, 253 total. */
static bool valid_hostname(const char *s, size_t len)
{
    if (len == 0 || len > 253)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '.') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '_' || (ch == '-' && label > 0);
        if (!ok || ++label > 63)
            return false;
    }
    return label > 0 && s[len - 1] != '-';
}

/*
 * Parses "HOST:PORT" where HOST is an IPv4 address, a bracketed IPv6 address or a host name
 * and PORT is 1..65535. Returns true and, when `host` is not NULL, sets *host to a new string
 * (the IPv6 address without brackets) and *port; returns false otherwise.
 */
static bool parse_hostport(const char *s, size_t len, char **host, int *port)
{
    const char *h, *p;
    size_t hlen, plen;
    char addr[INET6_ADDRSTRLEN + 1];
    unsigned char bin[sizeof(struct in6_addr)];

    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close || (size_t)(close - s) + 1 >= len || close[1] != ':')
            return false;
        h = s + 1;
        hlen = (size_t)(close - h);
        p = close + 2;
        plen = len - (size_t)(p - s);
        if (hlen == 0 || hlen >= sizeof(addr))
            return false;
        memcpy(addr, h, hlen);
        addr[hlen] = '\0';
        if (inet_pton(AF_INET6, addr, bin) != 1)
            return false;
    } else {
        const char *colon = NULL;
        for (size_t i = 0; i < len; i++)
            if (s[i] == ':') {
                if (colon)
                    return false; /* an IPv6 address must be bracketed */
                colon = s + i;
            }
        if (!colon)
            return false;
        h = s;
        hlen = (size_t)(colon - s);
        p = colon + 1;
        plen = len - hlen - 1;
        bool numeric = hlen > 0;
        for (size_t i = 0; i < hlen; i++)
            if (!((h[i] >= '0' && h[i] <= '9') || h[i] == '.'))
                numeric = false;
        if (numeric) {
            if (hlen >= sizeof(addr))
                return false;
            memcpy(addr, h, hlen);
            addr[hlen] = '\0';
            if (inet_pton(AF_INET, addr, bin) != 1)
                return false;
        } else if (!valid_hostname(h, hlen)) {
            return false;
        }
    }
    unsigned long portnum;
    if (!parse_ulong(p, plen, 65535, &portnum) || portnum == 0)
        return false;
    if (host) {
        *host = fb_strndup(h, hlen);
        *port = (int)portnum;
    }
    return true;
}

static void *slot(void *base, size_t off)
{
    return (char *)base + off;
}

/* Replaces the string at `off` with a copy of the node's text (NULL for none). */
static void set_string(void *base, size_t off, const yaml_node_t *n)
{
    char **sp = slot(base, off);
    fb_free(*sp);
    *sp = n ? fb_strndup(sval(n), n->data.scalar.length) : NULL;
}

/* "server.listen" from a table path and a key name. */
static void key_path(char *buf, size_t cap, const fb_conf_table_t *t, const char *name)
{
    snprintf(buf, cap, "%s%s%s", t->path, t->path[0] ? "." : "", name);
}

/* ---- walking a document against the schema -------------------------------------------------- */

static void walk_mapping(struct ctx *c, const yaml_node_t *map, const fb_conf_table_t *t,
                         yaml_mark_t where);

static yaml_node_t *get_node(struct ctx *c, int index)
{
    return yaml_document_get_node(c->ydoc, index);
}

/* Reads a list of retry delays into the policy at `f->off`; each bad item is reported. */
static void apply_delays(struct ctx *c, const fb_conf_field_t *f, const char *path,
                         const yaml_node_t *val)
{
    fb_retry_policy_t *rp = slot(c->base, f->off);
    const yaml_node_item_t *items = NULL;
    size_t n = 0;
    if (val->type == YAML_SEQUENCE_NODE) {
        items = val->data.sequence.items.start;
        n = (size_t)(val->data.sequence.items.top - items);
    }
    if (n < 1 || n > FB_ARRAY_SIZE(rp->delays_ms)) {
        errorf(c, val->start_mark,
               "'%s' must be a list of 1 to %zu delays in milliseconds, such as [100, 500, 2000]",
               path, FB_ARRAY_SIZE(rp->delays_ms));
        return;
    }
    unsigned delays[FB_ARRAY_SIZE(rp->delays_ms)];
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        const yaml_node_t *item = get_node(c, items[i]);
        unsigned long v = 0;
        if (!is_scalar(item) || item->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
            !parse_ulong(sval(item), item->data.scalar.length, f->max, &v) || v < f->min) {
            errorf(c, item ? item->start_mark : val->start_mark,
                   "'%s[%zu]' must be an integer between %lu and %lu%s", path, i, f->min, f->max,
                   quoted_number(item));
            ok = false;
            continue;
        }
        delays[i] = (unsigned)v;
    }
    if (ok) {
        memcpy(rp->delays_ms, delays, n * sizeof(delays[0]));
        rp->n_delays = n;
    }
}

/*
 * Stores a path setting: null leaves it unset (the built-in default applies after the parse); a
 * relative path written in a configuration file is taken relative to that file's directory.
 */
static void apply_path(struct ctx *c, const fb_conf_field_t *f, const char *path,
                       const yaml_node_t *val)
{
    void *cfg = c->base;
    if (is_null(val)) {
        set_string(cfg, f->off, NULL);
        return;
    }
    bool ok =
        is_text(val) && val->data.scalar.length > 0 && val->data.scalar.length <= MAX_PATH_BYTES;
    for (size_t i = 0; ok && i < val->data.scalar.length; i++)
        if (val->data.scalar.value[i] < 0x20 || val->data.scalar.value[i] == 0x7f)
            ok = false;
    if (!ok) {
        errorf(c, val->start_mark,
               "'%s' must be a path of 1 to %d bytes without control characters, or null for the "
               "built-in default",
               path, MAX_PATH_BYTES);
        return;
    }
    char **sp = slot(cfg, f->off);
    fb_free(*sp);
    if (sval(val)[0] != '/' && c->p->base_dir && c->doc == 1)
        *sp = fb_asprintf("%s/%s", c->p->base_dir, sval(val));
    else
        *sp = fb_strndup(sval(val), val->data.scalar.length);
}

/* Reports a bad size, with the range written in the units an operator would use. */
static void report_size(struct ctx *c, const yaml_node_t *val, const char *path,
                        const fb_conf_field_t *f)
{
    char lo[32], hi[32];
    format_size(lo, sizeof(lo), f->min);
    format_size(hi, sizeof(hi), f->max);
    errorf(c, val->start_mark,
           "'%s' must be a size between %s and %s: a number of bytes, or a number with a KiB or "
           "MiB suffix such as \"1MiB\"",
           path, lo, hi);
}

/* True when s (len bytes) has no control character (C0, DEL). */
static bool printable(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

/* FB_CONF_STRING, FB_CONF_CHOICE, FB_CONF_URL, FB_CONF_USER_ID. */
static void apply_text_kind(struct ctx *c, const fb_conf_field_t *f, const char *path,
                            const yaml_node_t *val)
{
    void *cfg = c->base;
    if (is_null(val) && (f->kind == FB_CONF_URL || f->kind == FB_CONF_USER_ID)) {
        set_string(cfg, f->off, NULL);
        return;
    }
    const char *s = is_text(val) && !is_null(val) ? sval(val) : NULL;
    size_t len = s ? val->data.scalar.length : 0;
    switch (f->kind) {
    case FB_CONF_STRING:
        if (s && len >= f->min && len <= f->max && printable(s, len)) {
            set_string(cfg, f->off, val);
            return;
        }
        errorf(c, val->start_mark,
               "'%s' must be a text of %lu to %lu bytes without control characters", path, f->min,
               f->max);
        return;
    case FB_CONF_CHOICE:
        for (const char *const *ch = f->choices; s && *ch; ch++)
            if (strcmp(*ch, s) == 0) {
                set_string(cfg, f->off, val);
                return;
            }
        {
            char known[128] = "";
            size_t k = 0;
            for (const char *const *ch = f->choices; *ch && k < sizeof(known); ch++) {
                int w = snprintf(known + k, sizeof(known) - k, "%s%s", k ? " or " : "", *ch);
                k += w > 0 ? (size_t)w : 0;
            }
            errorf(c, val->start_mark, "'%s' must be %s", path, known);
        }
        return;
    case FB_CONF_URL: {
        size_t scheme = s && len > 7 && strncmp(s, "http://", 7) == 0    ? 7
                        : s && len > 8 && strncmp(s, "https://", 8) == 0 ? 8
                                                                         : 0;
        bool ok = scheme && len <= 1024 && s[len - 1] != '/' && s[scheme] != '/';
        for (size_t i = 0; ok && i < len; i++)
            ok = (unsigned char)s[i] > ' ' && s[i] != 0x7f;
        if (ok) {
            set_string(cfg, f->off, val);
            return;
        }
        errorf(c, val->start_mark,
               "'%s' must be an http:// or https:// URL without a trailing '/', such as "
               "\"https://matrix.example.org\"",
               path);
        return;
    }
    case FB_CONF_USER_ID: {
        const char *colon = s ? memchr(s, ':', len) : NULL;
        bool ok = s && s[0] == '@' && len <= 255 && colon && colon > s + 1 &&
                  (size_t)(colon - s) + 1 < len;
        for (size_t i = 0; ok && i < len; i++)
            ok = (unsigned char)s[i] > ' ' && s[i] != 0x7f;
        if (ok) {
            set_string(cfg, f->off, val);
            return;
        }
        errorf(c, val->start_mark,
               "'%s' must be a Matrix user id such as \"@frichebot:example.org\"", path);
        return;
    }
    case FB_CONF_SECTION:
    case FB_CONF_UINT:
    case FB_CONF_SIZE:
    case FB_CONF_LISTEN:
    case FB_CONF_ADDRESS:
    case FB_CONF_PREFIX:
    case FB_CONF_SECRET_FILE:
    case FB_CONF_LOG_LEVEL:
    case FB_CONF_LOG_FORMAT:
    case FB_CONF_DELAYS:
    case FB_CONF_BOOL:
    case FB_CONF_PATH:
    case FB_CONF_GLOBS:
    case FB_CONF_IPS:
    case FB_CONF_ADAPTER:
        return;
    }
}

static void free_list(char **list)
{
    for (char **p = list; p && *p; p++)
        fb_free(*p);
    fb_free(list);
}

/* FB_CONF_GLOBS: a list of patterns, replacing the previous list. */
static void apply_globs(struct ctx *c, const fb_conf_field_t *f, const char *path,
                        const yaml_node_t *val)
{
    const yaml_node_item_t *items = NULL;
    size_t n = 0;
    if (val->type == YAML_SEQUENCE_NODE) {
        items = val->data.sequence.items.start;
        n = (size_t)(val->data.sequence.items.top - items);
    } else if (!is_null(val)) {
        errorf(c, val->start_mark, "'%s' must be a list of patterns, such as [\"*.gouv.fr\"]",
               path);
        return;
    }
    if (n > f->max) {
        errorf(c, val->start_mark, "'%s' has more than %lu patterns", path, f->max);
        return;
    }
    char **list = fb_calloc(n + 1, sizeof(char *));
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        const yaml_node_t *item = get_node(c, items[i]);
        if (!is_text(item) || is_null(item) || item->data.scalar.length == 0 ||
            item->data.scalar.length > 255 || !printable(sval(item), item->data.scalar.length)) {
            errorf(
                c, item ? item->start_mark : val->start_mark,
                f->kind == FB_CONF_IPS
                    ? "'%s[%zu]' must be an IPv4 or IPv6 address, such as \"127.0.0.1\" or \"::1\""
                    : "'%s[%zu]' must be a pattern of 1 to 255 bytes without control characters",
                path, i);
            ok = false;
            continue;
        }
        list[i] = fb_strndup(sval(item), item->data.scalar.length);
        unsigned char bin[sizeof(struct in6_addr)];
        if (f->kind == FB_CONF_IPS && inet_pton(AF_INET, list[i], bin) != 1 &&
            inet_pton(AF_INET6, list[i], bin) != 1) {
            errorf(c, item->start_mark,
                   "'%s[%zu]' must be an IPv4 or IPv6 address, such as \"127.0.0.1\" or \"::1\"",
                   path, i);
            ok = false;
        }
    }
    if (!ok) {
        for (size_t i = 0; i < n; i++)
            fb_free(list[i]);
        fb_free(list);
        return;
    }
    char ***sp = slot(c->base, f->off);
    free_list(*sp);
    *sp = list;
}

/* FB_CONF_SECTION and FB_CONF_ADAPTER: walks the mapping (or the defaults, when it is empty). */
static void apply_section(struct ctx *c, const fb_conf_field_t *f, const char *path,
                          const yaml_node_t *key, const yaml_node_t *val)
{
    if (val->type == YAML_MAPPING_NODE)
        walk_mapping(c, val, f->sub, key->start_mark);
    else if (is_null(val)) /* every key commented out: the defaults apply */
        walk_mapping(c, NULL, f->sub, key->start_mark);
    else
        errorf(c, val->start_mark, "'%s' must be a mapping of settings, not %s", path,
               node_kind(val));
}

/* FB_CONF_ADDRESS: "tcp://HOST:PORT" or "unix:PATH". */
static void apply_address(struct ctx *c, const fb_conf_field_t *f, const char *path,
                          const yaml_node_t *val)
{
    void *cfg = c->base;
    if (is_text(val) && !is_null(val)) {
        const char *s = sval(val);
        size_t len = val->data.scalar.length;
        if (len > 6 && memcmp(s, "tcp://", 6) == 0 && parse_hostport(s + 6, len - 6, NULL, NULL)) {
            set_string(cfg, f->off, val);
            return;
        }
        if (len > 5 && memcmp(s, "unix:", 5) == 0) {
            if (len - 5 > 107) {
                errorf(c, val->start_mark,
                       "'%s': the unix socket path is too long (at most 107 bytes)", path);
                return;
            }
            set_string(cfg, f->off, val);
            return;
        }
    }
    errorf(c, val->start_mark,
           "'%s' must be \"tcp://HOST:PORT\" or \"unix:PATH\" (such as "
           "\"tcp://127.0.0.1:6379\" or \"unix:/run/redis/redis.sock\")",
           path);
}

/* FB_CONF_LOG_LEVEL: a level or a spec that fb_log_check_spec() accepts. */
static void apply_log_level(struct ctx *c, const fb_conf_field_t *f, const char *path,
                            const yaml_node_t *val)
{
    void *cfg = c->base;
    const char *bad = NULL;
    if (is_text(val) && !is_null(val) && val->data.scalar.length > 0 &&
        fb_log_check_spec(sval(val), &bad) == 0) {
        set_string(cfg, f->off, val);
        return;
    }
    if (bad) {
        fb_yaml_shown_t part = fb_yaml_show(bad, strcspn(bad, ","));
        errorf(c, val->start_mark,
               "'%s' must be a level (err, warn, notice, info, debug, trace) or a spec such "
               "as \"info,http=debug\": '%s' is not understood",
               path, part.s);
    } else {
        errorf(c, val->start_mark,
               "'%s' must be a level (err, warn, notice, info, debug, trace) or a spec such "
               "as \"info,http=debug\"",
               path);
    }
}

/* Validates one key's value and stores it; reports what is wrong with it otherwise. */
static void apply_field(struct ctx *c, const fb_conf_table_t *t, const fb_conf_field_t *f,
                        const yaml_node_t *key, const yaml_node_t *val)
{
    char path[96];
    key_path(path, sizeof(path), t, f->name);
    void *cfg = c->base;
    unsigned long v = 0;

    switch (f->kind) {
    case FB_CONF_SECTION:
        apply_section(c, f, path, key, val);
        return;
    case FB_CONF_ADAPTER: { /* the adapter's cross-key checks are reported at its key */
        c->p->sec_at[f->off].name = c->name;
        c->p->sec_at[f->off].doc = c->doc;
        c->p->sec_at[f->off].mark = key->start_mark;
        void *saved = c->base;
        c->base = c->p->cfg->sections.opts[f->off];
        apply_section(c, f, path, key, val);
        c->base = saved;
        return;
    }
    case FB_CONF_UINT:
        if (is_scalar(val) && val->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
            parse_ulong(sval(val), val->data.scalar.length, f->max, &v) && v >= f->min) {
            *(unsigned *)slot(cfg, f->off) = (unsigned)v;
            return;
        }
        errorf(c, val->start_mark, "'%s' must be an integer between %lu and %lu%s", path, f->min,
               f->max, quoted_number(val));
        return;
    case FB_CONF_SIZE:
        if (is_scalar(val) && parse_size(sval(val), val->data.scalar.length, &v) && v >= f->min &&
            v <= f->max) {
            *(size_t *)slot(cfg, f->off) = v;
            return;
        }
        report_size(c, val, path, f);
        return;
    case FB_CONF_LISTEN: {
        fb_server_opts_t *so = slot(cfg, f->off);
        char *host = NULL;
        int port = 0;
        if (is_text(val) && !is_null(val) &&
            parse_hostport(sval(val), val->data.scalar.length, &host, &port)) {
            fb_free(so->listen_host);
            so->listen_host = host;
            so->listen_port = port;
            return;
        }
        errorf(c, val->start_mark,
               "'%s' must be \"HOST:PORT\": HOST an IPv4 address, an IPv6 address in brackets "
               "or a host name, PORT between 1 and 65535",
               path);
        return;
    }
    case FB_CONF_ADDRESS:
        apply_address(c, f, path, val);
        return;
    case FB_CONF_PREFIX:
        if (is_text(val) && !is_null(val) && val->data.scalar.length >= f->min &&
            val->data.scalar.length <= f->max) {
            bool ok = true;
            for (const unsigned char *s = val->data.scalar.value; *s; s++)
                if (*s <= ' ' || *s == 0x7f || *s == '{' || *s == '}')
                    ok = false;
            if (ok) {
                set_string(cfg, f->off, val);
                return;
            }
        }
        errorf(c, val->start_mark,
               "'%s' must be %lu to %lu characters without spaces, control characters, '{' or "
               "'}'",
               path, f->min, f->max);
        return;
    case FB_CONF_SECRET_FILE:
        if (is_null(val)) {
            set_string(cfg, f->off, NULL);
            c->p->pw_name = NULL;
            return;
        }
        if (is_text(val) && val->data.scalar.length > 0) {
            set_string(cfg, f->off, val);
            c->p->pw_name = c->name;
            c->p->pw_doc = c->doc;
            c->p->pw_mark = key->start_mark; /* problems reading it are reported here */
            return;
        }
        errorf(c, val->start_mark, "'%s' must be the path of a file", path);
        return;
    case FB_CONF_LOG_LEVEL:
        apply_log_level(c, f, path, val);
        return;
    case FB_CONF_LOG_FORMAT:
        if (is_text(val) && (strcmp(sval(val), "plain") == 0 || strcmp(sval(val), "json") == 0)) {
            *(bool *)slot(cfg, f->off) = strcmp(sval(val), "json") == 0;
            return;
        }
        errorf(c, val->start_mark, "'%s' must be plain or json", path);
        return;
    case FB_CONF_DELAYS:
        apply_delays(c, f, path, val);
        return;
    case FB_CONF_BOOL:
        if (is_scalar(val) && val->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
            (strcmp(sval(val), "true") == 0 || strcmp(sval(val), "false") == 0)) {
            *(bool *)slot(cfg, f->off) = strcmp(sval(val), "true") == 0;
            return;
        }
        errorf(c, val->start_mark, "'%s' must be true or false", path);
        return;
    case FB_CONF_PATH:
        apply_path(c, f, path, val);
        return;
    case FB_CONF_STRING:
    case FB_CONF_CHOICE:
    case FB_CONF_URL:
    case FB_CONF_USER_ID:
        apply_text_kind(c, f, path, val);
        return;
    case FB_CONF_GLOBS:
    case FB_CONF_IPS:
        apply_globs(c, f, path, val);
        return;
    }
}

/* Writes the names of the keys of `t`, separated by ", ", into known (cap bytes). */
static void known_keys(char *known, size_t cap, const fb_conf_table_t *t)
{
    size_t k = 0;
    known[0] = '\0';
    for (size_t j = 0; j < t->n && k < cap; j++) {
        int w = snprintf(known + k, cap - k, "%s%s", j ? ", " : "", t->fields[j].name);
        k += w > 0 ? (size_t)w : 0;
    }
}

/* Reports required keys of `t` (and of its sections, which are all absent) as missing. */
static void report_missing(struct ctx *c, const fb_conf_table_t *t, const bool *seen,
                           yaml_mark_t where)
{
    static const bool none[MAX_FIELDS];
    for (size_t i = 0; i < t->n; i++) {
        const fb_conf_field_t *f = &t->fields[i];
        if ((seen ? seen : none)[i])
            continue;
        char path[96];
        key_path(path, sizeof(path), t, f->name);
        if (f->required)
            errorf(c, where, "missing required key '%s'", path);
        if (f->kind == FB_CONF_SECTION)
            report_missing(c, f->sub, NULL, where);
    }
}

/*
 * Walks one mapping of the document against table `t` (map NULL: the section is empty). Unknown
 * keys, duplicates and bad values are reported where they are; missing required keys are
 * reported at `where`, the position of the section's key (1:1 at the top level).
 */
static void walk_mapping(struct ctx *c, const yaml_node_t *map, const fb_conf_table_t *t,
                         yaml_mark_t where)
{
    bool seen[MAX_FIELDS] = {false};
    yaml_mark_t first[MAX_FIELDS];
    FB_ASSERT(t->n <= MAX_FIELDS);

    const yaml_node_pair_t *pair = map ? map->data.mapping.pairs.start : NULL;
    const yaml_node_pair_t *end = map ? map->data.mapping.pairs.top : NULL;
    for (; pair && pair < end; pair++) {
        const yaml_node_t *key = get_node(c, pair->key);
        const yaml_node_t *val = get_node(c, pair->value);
        if (!key || !val)
            continue;
        if (!is_scalar(key)) {
            if (t->path[0])
                errorf(c, key->start_mark, "a key in '%s' must be a name, not %s", t->path,
                       node_kind(key));
            else
                errorf(c, key->start_mark, "a key must be a name, not %s", node_kind(key));
            continue;
        }
        size_t i = 0;
        while (i < t->n && !key_is(key, t->fields[i].name))
            i++;
        if (i == t->n) {
            if (is_secret_name(key))
                continue; /* the secret scan reports it, with a better message */
            char known[256];
            known_keys(known, sizeof(known), t);
            fb_yaml_shown_t name = fb_yaml_show(sval(key), key->data.scalar.length);
            if (t->path[0])
                errorf(c, key->start_mark, "unknown key '%s' in '%s' (known: %s)", name.s, t->path,
                       known);
            else
                errorf(c, key->start_mark, "unknown key '%s' at the top level (known: %s)", name.s,
                       known);
            continue;
        }
        char path[96];
        key_path(path, sizeof(path), t, t->fields[i].name);
        if (seen[i]) {
            errorf(c, key->start_mark, "duplicate key '%s' (first at %lu:%lu)", path,
                   (unsigned long)first[i].line + 1, (unsigned long)first[i].column + 1);
            continue;
        }
        seen[i] = true;
        first[i] = key->start_mark;
        apply_field(c, t, &t->fields[i], key, val);
    }
    report_missing(c, t, seen, where);
}

/* ---- the secret scan ------------------------------------------------------------------------ */

/*
 * Visits every node reachable from `index` once (aliases can share nodes, even in cycles) and
 * reports each mapping key named like a secret. `path` holds the dotted path so far (`len`
 * bytes); it is restored before returning. The values under such keys are never looked at.
 */
static void scan_secrets(struct ctx *c, int index, char *path, size_t len, size_t cap, int depth)
{
    const yaml_node_t *n = get_node(c, index);
    if (!n || depth > MAX_SCAN_DEPTH || c->visited[index - 1])
        return;
    c->visited[index - 1] = 1;
    if (n->type == YAML_MAPPING_NODE) {
        for (const yaml_node_pair_t *pair = n->data.mapping.pairs.start;
             pair < n->data.mapping.pairs.top; pair++) {
            const yaml_node_t *key = get_node(c, pair->key);
            if (!is_scalar(key))
                continue;
            fb_yaml_shown_t name = fb_yaml_show(sval(key), key->data.scalar.length);
            int w = snprintf(path + len, cap - len, "%s%s", len ? "." : "", name.s);
            size_t sub = len + (w > 0 ? (size_t)w : 0);
            if (sub >= cap)
                sub = cap - 1;
            if (is_secret_name(key)) {
                bool redis = strcmp(path, "redis.password") == 0;
                errorf(c, key->start_mark,
                       "'%s': secrets must not be written in the configuration file: use a *_file "
                       "key or an environment variable%s",
                       path, redis ? " (here: redis.password_file or " PASSWORD_ENV ")" : "");
            } else {
                scan_secrets(c, pair->value, path, sub, cap, depth + 1);
            }
            path[len] = '\0';
        }
    } else if (n->type == YAML_SEQUENCE_NODE) {
        const yaml_node_item_t *items = n->data.sequence.items.start;
        size_t count = (size_t)(n->data.sequence.items.top - items);
        for (size_t i = 0; i < count; i++) {
            int w = snprintf(path + len, cap - len, "[%zu]", i);
            size_t sub = len + (w > 0 ? (size_t)w : 0);
            if (sub >= cap)
                sub = cap - 1;
            scan_secrets(c, items[i], path, sub, cap, depth + 1);
            path[len] = '\0';
        }
    }
}

/* ---- loading a text ------------------------------------------------------------------------- */

/*
 * Converts a byte offset into a 1-based line and column (in characters, like libyaml's marks),
 * for reader errors, which libyaml reports by offset only.
 */
static void offset_position(const char *text, size_t len, size_t off, unsigned long *line,
                            unsigned long *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off && i < len; i++) {
        unsigned char ch = (unsigned char)text[i];
        if (ch == '\n' || (ch == '\r' && (i + 1 >= len || text[i + 1] != '\n'))) {
            (*line)++;
            *col = 1;
        } else if ((ch & 0xC0) != 0x80 && ch != '\r') {
            (*col)++;
        }
    }
}

/* Returns the byte at a libyaml mark (0-based line and character column), or -1. */
static int byte_at_mark(const char *text, size_t len, yaml_mark_t m)
{
    size_t i = 0, line = 0;
    while (i < len && line < m.line) {
        if (text[i] == '\n' || (text[i] == '\r' && (i + 1 >= len || text[i + 1] != '\n')))
            line++;
        i++;
    }
    for (size_t col = 0; i < len; i++) {
        if (((unsigned char)text[i] & 0xC0) == 0x80)
            continue;
        if (col++ == m.column)
            return (unsigned char)text[i];
    }
    return -1;
}

/* Reports why libyaml could not load the document, as one positioned error. */
static void report_yaml_error(struct parse *p, const char *name, int doc,
                              const yaml_parser_t *parser, const char *text, size_t len)
{
    const char *problem = parser->problem ? parser->problem : "unknown error";
    if (parser->error == YAML_READER_ERROR) {
        unsigned long line, col;
        size_t off = parser->problem_offset;
        if (strstr(problem, "UTF-8") && off < len) {
            /* libyaml points at the bad continuation byte: show the character's first byte. */
            for (int back = 0; back < 3 && off > 0 && ((unsigned char)text[off] & 0xC0) != 0xC0;
                 back++)
                off--;
            if (((unsigned char)text[off] & 0xC0) != 0xC0)
                off = parser->problem_offset;
            offset_position(text, len, off, &line, &col);
            add_error(p, name, doc, line, col,
                      "the file is not valid UTF-8 text: byte 0x%02X does not start a valid "
                      "UTF-8 character (save the file as UTF-8)",
                      (unsigned)(unsigned char)text[off]);
            return;
        }
        offset_position(text, len, off, &line, &col);
        if (strstr(problem, "control characters"))
            add_error(p, name, doc, line, col,
                      "the file contains a character YAML does not allow: "
                      "%s (U+%04X)",
                      problem, (unsigned)parser->problem_value);
        else
            add_error(p, name, doc, line, col, "the file is not valid UTF-8 text: %s", problem);
        return;
    }
    if (parser->error == YAML_MEMORY_ERROR) {
        add_error(p, name, doc, 1, 1, "out of memory while reading the YAML");
        return;
    }
    yaml_mark_t m = parser->problem_mark;
    const char *hint = byte_at_mark(text, len, m) == '\t'
                           ? " (tabs are not allowed in YAML indentation: use spaces)"
                           : "";
    if (parser->context)
        add_error(p, name, doc, (unsigned long)m.line + 1, (unsigned long)m.column + 1,
                  "YAML syntax error: %s, %s at %lu:%lu%s", problem, parser->context,
                  (unsigned long)parser->context_mark.line + 1,
                  (unsigned long)parser->context_mark.column + 1, hint);
    else
        add_error(p, name, doc, (unsigned long)m.line + 1, (unsigned long)m.column + 1,
                  "YAML syntax error: %s%s", problem, hint);
}

/*
 * Loads one YAML text and applies it on top of p->cfg, recording every problem in `p`.
 * `doc` orders the errors of several texts (the embedded default first).
 */
static void apply_text(struct parse *p, const char *name, int doc, const char *text, size_t len)
{
    yaml_parser_t parser;
    yaml_document_t ydoc, extra;
    struct ctx c = {p, name, doc, &ydoc, NULL, 0, p->cfg};

    if (!yaml_parser_initialize(&parser)) {
        add_error(p, name, doc, 1, 1, "out of memory while reading the YAML");
        return;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);
    if (!yaml_parser_load(&parser, &ydoc)) {
        report_yaml_error(p, name, doc, &parser, text, len);
        goto out_parser;
    }
    yaml_node_t *root = yaml_document_get_root_node(&ydoc);
    if (!root) {
        add_error(p, name, doc, 1, 1,
                  "the configuration is empty: it must at least set server.listen and "
                  "redis.address");
        goto out_doc;
    }
    /* A second document would be silently ignored: refuse it. */
    if (!yaml_parser_load(&parser, &extra)) {
        report_yaml_error(p, name, doc, &parser, text, len);
    } else {
        if (yaml_document_get_root_node(&extra))
            errorf(&c, extra.start_mark, "only one YAML document is allowed in the file");
        yaml_document_delete(&extra);
    }

    c.nnodes = (size_t)(ydoc.nodes.top - ydoc.nodes.start);
    c.visited = fb_calloc(c.nnodes, 1);
    char path[256] = "";
    scan_secrets(&c, 1, path, 0, sizeof(path), 0);
    if (root->type == YAML_MAPPING_NODE) {
        yaml_mark_t top = {0, 0, 0};
        walk_mapping(&c, root, &p->top_table, top);
    } else {
        char known[256];
        known_keys(known, sizeof(known), &p->top_table);
        errorf(&c, root->start_mark, "the configuration must be a mapping of sections (%s), not %s",
               known, node_kind(root));
    }
    fb_free(c.visited);
out_doc:
    yaml_document_delete(&ydoc);
out_parser:
    yaml_parser_delete(&parser);
}

/* ---- secrets -------------------------------------------------------------------------------- */

/*
 * Reads the secret in the file at `path` into a new string (*out). The file must be a regular
 * file of at most MAX_SECRET_BYTES holding one line; one trailing "\n" or "\r\n" is removed.
 * Returns 0, or a negative errno / FB_E* code with *why set to a static explanation when there
 * is no errno. The content never leaves this function except through *out, and the stack copy
 * is wiped.
 */
int fb_config_read_secret(const char *path, char **out, const char **why)
{
    char buf[MAX_SECRET_BYTES + 1];
    size_t n = 0;
    int rc = 0;
    *why = NULL;
    /* O_NONBLOCK: a FIFO given by mistake must not hang the daemon; it is refused below. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        *why = "it is not a regular file";
        rc = FB_EINVAL;
        goto fail;
    }
    while (n < sizeof(buf)) {
        ssize_t r = read(fd, buf + n, sizeof(buf) - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            goto fail;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n > MAX_SECRET_BYTES) {
        *why = "it is larger than 4096 bytes";
        rc = FB_ETOOBIG;
        goto fail;
    }
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    if (n == 0) {
        *why = "it is empty";
        rc = FB_EINVAL;
        goto fail;
    }
    if (memchr(buf, '\n', n) || memchr(buf, '\r', n) || memchr(buf, '\0', n)) {
        *why = "it must hold the secret on a single line";
        rc = FB_EINVAL;
        goto fail;
    }
    *out = fb_strndup(buf, n);
fail:
    explicit_bzero(buf, sizeof(buf));
    close(fd);
    return rc;
}

/*
 * Resolves the Redis password: FRICHEBOT_REDIS_PASSWORD when set and not empty (the file is then
 * not read), otherwise the content of redis.password_file, which is read relative to the
 * configuration file's directory when relative. Problems are reported at the password_file key.
 */
static void resolve_password(struct parse *p)
{
    fb_redis_opts_t *r = &p->cfg->redis;
    const char *env = getenv(PASSWORD_ENV);
    if (env && *env) {
        r->password = fb_strdup(env);
        return;
    }
    if (!r->password_file || !p->pw_name)
        return;
    char *full = (r->password_file[0] != '/' && p->base_dir)
                     ? fb_asprintf("%s/%s", p->base_dir, r->password_file)
                     : fb_strdup(r->password_file);
    const char *why = NULL;
    int rc = fb_config_read_secret(full, &r->password, &why);
    if (rc != 0) {
        fb_yaml_shown_t shown = fb_yaml_show(full, strlen(full));
        add_error(p, p->pw_name, p->pw_doc, (unsigned long)p->pw_mark.line + 1,
                  (unsigned long)p->pw_mark.column + 1,
                  "'redis.password_file': cannot use '%s': %s", shown.s, why ? why : strerror(-rc));
    }
    fb_free(full);
}

/*
 * Gives every list of `t` left unset an empty list (recursing into its sections), so that users
 * of the configuration never see a NULL list.
 */
static void fill_lists(const fb_conf_table_t *t, void *base)
{
    for (size_t i = 0; i < t->n; i++) {
        const fb_conf_field_t *f = &t->fields[i];
        if (f->kind == FB_CONF_SECTION)
            fill_lists(f->sub, base);
        else if ((f->kind == FB_CONF_GLOBS || f->kind == FB_CONF_IPS) &&
                 !*(char ***)slot(base, f->off))
            *(char ***)slot(base, f->off) = fb_calloc(1, sizeof(char *));
    }
}

/* Frees the strings and lists an adapter's options hold, as its table describes them. */
static void free_values(const fb_conf_table_t *t, void *base)
{
    for (size_t i = 0; i < t->n; i++) {
        const fb_conf_field_t *f = &t->fields[i];
        switch (f->kind) {
        case FB_CONF_SECTION:
            free_values(f->sub, base);
            break;
        case FB_CONF_GLOBS:
        case FB_CONF_IPS:
            free_list(*(char ***)slot(base, f->off));
            *(char ***)slot(base, f->off) = NULL;
            break;
        case FB_CONF_ADDRESS:
        case FB_CONF_PREFIX:
        case FB_CONF_SECRET_FILE:
        case FB_CONF_LOG_LEVEL:
        case FB_CONF_PATH:
        case FB_CONF_STRING:
        case FB_CONF_CHOICE:
        case FB_CONF_URL:
        case FB_CONF_USER_ID:
            FB_FREE(*(char **)slot(base, f->off));
            break;
        case FB_CONF_LISTEN:
            FB_FREE(((fb_server_opts_t *)slot(base, f->off))->listen_host);
            break;
        case FB_CONF_UINT:
        case FB_CONF_SIZE:
        case FB_CONF_LOG_FORMAT:
        case FB_CONF_DELAYS:
        case FB_CONF_BOOL:
        case FB_CONF_ADAPTER:
            break;
        }
    }
}

void fb_conf_errorf(fb_conf_report_t *r, const char *fmt, ...)
{
    struct parse *p = r->p;
    if (!p->sec_at[r->i].name)
        return;
    va_list ap;
    va_start(ap, fmt);
    add_errorv(p, p->sec_at[r->i].name, p->sec_at[r->i].doc,
               (unsigned long)p->sec_at[r->i].mark.line + 1,
               (unsigned long)p->sec_at[r->i].mark.column + 1, fmt, ap);
    va_end(ap);
}

/* Fills the empty lists, then runs the adapters' checks, once every document is applied. */
static void check_sections(struct parse *p)
{
    fb_conf_sections_t *ss = &p->cfg->sections;
    fill_lists(&top_table, p->cfg);
    for (size_t i = 0; i < ss->n; i++) {
        fill_lists(ss->sec[i]->table, ss->opts[i]);
        fb_conf_report_t r = {p, i};
        if (ss->sec[i]->check)
            ss->sec[i]->check(ss->opts[i], &r);
    }
}

/*
 * Allocates the adapters' options structs and builds the top-level table: the core's sections
 * with the adapters' inserted at ADAPTERS_AT, in the order of the adapter table.
 */
static void setup_sections(struct parse *p)
{
    fb_conf_sections_t *ss = &p->cfg->sections;
    const fb_conf_section_t *secs[FB_CONF_MAX_SECTIONS];
    ss->n = fb__config_sections(secs, FB_CONF_MAX_SECTIONS);
    FB_ASSERT(ss->n <= FB_CONF_MAX_SECTIONS && ss->n + FB_ARRAY_SIZE(top_fields) <= MAX_FIELDS);
    size_t n = 0;
    for (size_t i = 0; i <= FB_ARRAY_SIZE(top_fields); i++) {
        if (i == ADAPTERS_AT)
            for (size_t j = 0; j < ss->n; j++) {
                ss->sec[j] = secs[j];
                ss->opts[j] = fb_calloc(1, secs[j]->size ? secs[j]->size : 1);
                p->top[n++] = (fb_conf_field_t){
                    secs[j]->name, FB_CONF_ADAPTER, false, j, 0, 0, secs[j]->table, NULL};
            }
        if (i < FB_ARRAY_SIZE(top_fields))
            p->top[n++] = top_fields[i];
    }
    p->top_table = (fb_conf_table_t){"", p->top, n};
}

/* Gives every path left unset its default: the installed data directory's, or the build tree's
 * for a binary run from its build tree (paths.h). */
static void apply_default_paths(fb_config_t *cfg)
{
    if (!cfg->dialogs.path)
        cfg->dialogs.path = fb_strdup(fb_data_path(FB_DATA_DIALOG));
    if (!cfg->dialogs.geo_path)
        cfg->dialogs.geo_path = fb_strdup(fb_data_path(FB_DATA_GEO));
}

/* ---- public API ----------------------------------------------------------------------------- */

/*
 * The common path: the embedded default first (unless `text` is the default itself), then
 * `text`, then secrets. Returns the config, or NULL with the errors appended to `errors`.
 */
static fb_config_t *parse_with_base(const char *name, const char *text, size_t len,
                                    const char *base_dir, bool is_default, fb_buf_t *errors)
{
    struct parse *p = fb_calloc(1, sizeof(*p));
    p->cfg = fb_calloc(1, sizeof(*p->cfg));
    p->base_dir = base_dir;
    setup_sections(p);
    fb_diag_init(&p->diag, MAX_ERRORS, &cfg_words);
    if (!name)
        name = "(configuration)";
    if (!text)
        len = 0;

    if (!is_default)
        apply_text(p, DEFAULT_NAME, 0, fb__default_config, (size_t)fb__default_config_len);
    apply_text(p, name, 1, text ? text : "", len);
    resolve_password(p);
    if (fb_diag_count(&p->diag) == 0 && p->cfg->reminders.start_hour >= p->cfg->reminders.end_hour)
        add_error(p, name, 1, 1, 1, "reminders.start_hour must be before reminders.end_hour");
    if (fb_diag_count(&p->diag) == 0 && p->cfg->redis.allow_volatile && p->cfg->redis.require_aof &&
        strcmp(p->cfg->redis.require_aof, "true") == 0)
        add_error(p, name, 1, 1, 1,
                  "redis.require_aof: true and redis.allow_volatile: true contradict each other; "
                  "remove redis.require_aof (deprecated: a Redis without AOF is now refused "
                  "unless allow_volatile is true)");
    check_sections(p);

    fb_config_t *cfg = p->cfg;
    if (fb_diag_failed(&p->diag)) {
        flush_errors(p, errors);
        fb_config_free(cfg);
        cfg = NULL;
    } else {
        cfg->path = fb_strdup(is_default ? DEFAULT_NAME : name);
        apply_default_paths(cfg);
    }
    fb_diag_free(&p->diag);
    fb_free(p);
    return cfg;
}

fb_config_t *fb_config_parse(const char *name, const char *text, size_t len, fb_buf_t *errors)
{
    return parse_with_base(name, text, len, NULL, false, errors);
}

/*
 * Reads the whole file (at most MAX_FILE_BYTES) and parses it with `path` as NAME; relative
 * password_file paths are then taken relative to the file's directory.
 */
fb_config_t *fb_config_load(const char *path, fb_buf_t *errors)
{
    fb_buf_t text;
    fb_buf_init(&text, MAX_FILE_BYTES);
    fb_config_t *cfg = NULL;
    char *dir = NULL;
    char chunk[16384];

    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        if (errors)
            (void)fb_buf_printf(errors, "%s:1:1: cannot read the configuration file: %s\n", path,
                                strerror(errno));
        goto fail;
    }
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof(chunk));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            if (errors)
                (void)fb_buf_printf(errors, "%s:1:1: cannot read the configuration file: %s\n",
                                    path, strerror(errno));
            goto fail;
        }
        if (r == 0)
            break;
        if (fb_buf_append(&text, chunk, (size_t)r) != 0) {
            if (errors)
                (void)fb_buf_printf(errors, "%s:1:1: the configuration file is larger than 1 MiB\n",
                                    path);
            goto fail;
        }
    }
    dir = fb_strdup(path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = '\0';
    cfg = parse_with_base(path, fb_buf_str(&text), text.len, slash ? dir : NULL, false, errors);
fail:
    if (fd >= 0)
        close(fd);
    fb_free(dir);
    fb_buf_free(&text);
    return cfg;
}

fb_config_t *fb_config_load_default(fb_buf_t *errors)
{
    return parse_with_base(DEFAULT_NAME, fb__default_config, (size_t)fb__default_config_len, NULL,
                           true, errors);
}

/* Frees every string; the password is overwritten first so it does not linger in the heap. */
void fb_config_free(fb_config_t *cfg)
{
    if (!cfg)
        return;
    if (cfg->redis.password) {
        explicit_bzero(cfg->redis.password, strlen(cfg->redis.password));
        FB_FREE(cfg->redis.password);
    }
    FB_FREE(cfg->path);
    FB_FREE(cfg->server.listen_host);
    FB_FREE(cfg->server.public_url);
    FB_FREE(cfg->redis.address);
    FB_FREE(cfg->redis.password_file);
    FB_FREE(cfg->redis.require_aof);
    FB_FREE(cfg->store.key_prefix);
    FB_FREE(cfg->log.level);
    FB_FREE(cfg->dialogs.path);
    FB_FREE(cfg->dialogs.geo_path);
    for (size_t i = 0; i < cfg->sections.n; i++) {
        if (cfg->sections.sec[i] && cfg->sections.opts[i])
            free_values(cfg->sections.sec[i]->table, cfg->sections.opts[i]);
        FB_FREE(cfg->sections.opts[i]);
    }
    free_list(cfg->escalation.rooms);
    free_list(cfg->escalation.response_times);
    free_list(cfg->server.trusted_proxies);
    fb_free(cfg);
}

const void *fb_config_section(const fb_config_t *cfg, const char *name)
{
    for (size_t i = 0; cfg && i < cfg->sections.n; i++)
        if (cfg->sections.sec[i] && strcmp(cfg->sections.sec[i]->name, name) == 0)
            return cfg->sections.opts[i];
    return NULL;
}

const char *fb_config_string(const fb_config_t *cfg, const char *dotted)
{
    const char *dot = strchr(dotted, '.');
    for (size_t i = 0; dot && cfg && i < cfg->sections.n; i++) {
        const fb_conf_section_t *sec = cfg->sections.sec[i];
        if (!sec || strlen(sec->name) != (size_t)(dot - dotted) ||
            strncmp(sec->name, dotted, (size_t)(dot - dotted)) != 0)
            continue;
        for (size_t j = 0; j < sec->table->n; j++) {
            const fb_conf_field_t *f = &sec->table->fields[j];
            if (strcmp(f->name, dot + 1) == 0 &&
                (f->kind == FB_CONF_PATH || f->kind == FB_CONF_STRING || f->kind == FB_CONF_URL ||
                 f->kind == FB_CONF_CHOICE || f->kind == FB_CONF_USER_ID))
                return *(char **)slot(cfg->sections.opts[i], f->off);
        }
    }
    return NULL;
}
