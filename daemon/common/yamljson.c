/* SPDX-License-Identifier: MIT */
/*
 * yamljson.c - reads a YAML document into jansson values, remembering the line of every node, for
 * the authors' tools (transcripts). Plain scalars become numbers, booleans or null when they look
 * like one (YAML 1.2 core schema); quoted scalars always stay strings.
 */
#include "common/yamljson.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "frichebot/alloc.h"

#define MAX_DEPTH 64
/* YAML aliases let a small file stand for an exponentially large tree ("billion laughs"): every
 * conversion counts the nodes it produces and stops past this many. */
#define MAX_NODES 100000

/* Converts a plain scalar to the JSON value it denotes. Returns a new reference. */
static json_t *plain_scalar(const char *s, size_t len)
{
    if (len == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0)
        return json_null();
    if (strcmp(s, "true") == 0)
        return json_true();
    if (strcmp(s, "false") == 0)
        return json_false();
    char *end;
    errno = 0;
    long long i = strtoll(s, &end, 10);
    if (*end == '\0' && errno == 0 && (s[0] == '-' || (s[0] >= '0' && s[0] <= '9')))
        return json_integer(i);
    errno = 0;
    double d = strtod(s, &end);
    if (*end == '\0' && errno == 0 && (s[0] == '-' || s[0] == '.' || (s[0] >= '0' && s[0] <= '9')))
        return json_real(d);
    return json_stringn(s, len);
}

static json_t *convert(yaml_document_t *doc, yaml_node_t *node, int depth, json_t *lines,
                       const char *path, long *budget)
{
    if (!node || depth > MAX_DEPTH || *budget <= 0)
        return json_null();
    (*budget)--;
    json_object_set_new(lines, path, json_integer((json_int_t)node->start_mark.line + 1));
    switch (node->type) {
    case YAML_SCALAR_NODE: {
        const char *s = (const char *)node->data.scalar.value;
        size_t len = node->data.scalar.length;
        if (node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
            return plain_scalar(s, len);
        return json_stringn(s, len);
    }
    case YAML_SEQUENCE_NODE: {
        json_t *arr = json_array();
        size_t i = 0;
        for (yaml_node_item_t *it = node->data.sequence.items.start;
             it < node->data.sequence.items.top; it++, i++) {
            char *sub = fb_asprintf("%s/%zu", path, i);
            json_array_append_new(
                arr, convert(doc, yaml_document_get_node(doc, *it), depth + 1, lines, sub, budget));
            fb_free(sub);
        }
        return arr;
    }
    case YAML_MAPPING_NODE: {
        json_t *obj = json_object();
        for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = yaml_document_get_node(doc, p->key);
            if (!k || k->type != YAML_SCALAR_NODE)
                continue;
            const char *key = (const char *)k->data.scalar.value;
            char *sub = fb_asprintf("%s/%s", path, key);
            json_object_set_new(
                obj, key,
                convert(doc, yaml_document_get_node(doc, p->value), depth + 1, lines, sub, budget));
            fb_free(sub);
        }
        return obj;
    }
    case YAML_NO_NODE:
    default:
        return json_null();
    }
}

json_t *fb_yaml_to_json(const char *text, size_t len, json_t **lines, char *errbuf, size_t errcap)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    json_t *out = NULL;
    *lines = NULL;
    if (!yaml_parser_initialize(&parser)) {
        snprintf(errbuf, errcap, "1:1: cannot initialise the YAML parser");
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(errbuf, errcap, "%zu:%zu: %s", parser.problem_mark.line + 1,
                 parser.problem_mark.column + 1, parser.problem ? parser.problem : "invalid YAML");
        yaml_parser_delete(&parser);
        return NULL;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        snprintf(errbuf, errcap, "1:1: the file is empty");
    } else {
        *lines = json_object();
        long budget = MAX_NODES;
        out = convert(&doc, root, 0, *lines, "", &budget);
        if (budget <= 0) {
            snprintf(errbuf, errcap,
                     "1:1: document too large (more than %d values, aliases "
                     "included)",
                     MAX_NODES);
            json_decref(out);
            json_decref(*lines);
            out = NULL;
            *lines = NULL;
        }
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return out;
}

int fb_yaml_line(json_t *lines, const char *path)
{
    json_t *v = json_object_get(lines, path);
    return v ? (int)json_integer_value(v) : 0;
}

fb_yaml_shown_t fb_yaml_show(const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    fb_yaml_shown_t out;
    size_t o = 0, limit = 60;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (o >= limit && (ch & 0xC0) != 0x80) {
            memcpy(out.s + o, "...", 3);
            o += 3;
            break;
        }
        if (ch < 0x20 || ch == 0x7f) {
            out.s[o++] = '\\';
            out.s[o++] = 'x';
            out.s[o++] = hex[ch >> 4];
            out.s[o++] = hex[ch & 15];
        } else {
            out.s[o++] = (char)ch;
        }
    }
    out.s[o] = '\0';
    return out;
}
