/* SPDX-License-Identifier: MIT */
/*
 * bench_memory.c - what Redis holds per conversation, and whether a large keyspace slows the
 * daemon (issue 17, point 4). Driven by bench/memory.sh (`make bench`).
 *
 *   bench_memory -m walk -p PORT -r REDIS_PORT [-n N] [-c THREADS]      steps 1 and 2
 *   bench_memory -m load -r REDIS_PORT -t TOKEN [-l LOADED]                step 3
 *   bench_memory -m due -r REDIS_PORT -t TOKEN [-l LOADED] [-d DUE]        step 4
 *   (-k PREFIX: the daemon's redis.key_prefix, "fb:" by default)
 *
 * memory.sh runs the pipeline bench between the steps, so that its rate with and without the
 * loaded keyspace is compared in the same run.
 * 1. Walks N whole friche conversations through the daemon's web chat (THREADS at a time): hello,
 *    then every answer of `walk` below, each sent once its predecessor was acknowledged (an ack
 *    means handled and committed). Waits until the outbox is empty.
 * 2. Measures: Redis's used_memory before and after, divided by N (everything the conversations
 *    cost, global indexes and allocator overhead included); then every key of one conversation
 *    by kind (MEMORY USAGE, SAMPLES 0), summed over all N and divided by N; the dedupe marks
 *    (the `{c:KEY}:ev` zset, one member per mark; an older daemon's `:ev:<id>` string keys)
 *    divided by the messages sent, since they grow with traffic and are kept for
 *    router.dedupe_retention_hours.
 * 3. Loads LOADED copies of one finished conversation (DUMP/RESTORE of its keys under new
 *    conversation keys, with their TTLs, and their reminders in reminders:due at their own due
 *    times), as a deployment that has served that many would hold them, and measures the memory.
 * 4. Makes DUE of those reminders due now and times until every one is delivered (the scheduler's
 *    claim, the router, the outbox, the web history): reminders per second with LOADED stored.
 *
 * Prints key=value lines; memory.sh compares them with the targets. Exits non-zero on any failure
 * (a conversation not acknowledged, a reminder not delivered in 120 s).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "ws_client.h"

/* A realistic friche conversation, the one the integration tests walk (test_matrix.py WALK):
 * commune, owner, use, area, buildings, pollution, ..., the roadmap, a thank-you (the rating is
 * asked with the next message after the roadmap), the rating and no comment. */
static const char *walk[] = {
    "saint dizier", "la commune",    "une gare", "3 hectares", "pas de bâtiment", "je ne sais pas",
    "SNCF",         "rien de connu", "PLU",      "aucun",      "logements",       "idée",
    "acv",          "merci",         "3",        "non"};
#define WALK_N (sizeof(walk) / sizeof(walk[0]))

struct shared {
    int port;
    int next; /* the next conversation to walk */
    int n;
    int failed;
    char **tokens; /* each conversation's token, for the copies */
    pthread_mutex_t lock;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int send_json(fb_wsc_t *c, json_t *j)
{
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!text)
        return -1;
    int rc = fb_wsc_send_text(c, text);
    free(text);
    return rc;
}

/* Reads frames until one of `type` (and, when `id` is not NULL, with that id); returns it, or
 * NULL on an error frame, a closed socket or a timeout. */
static json_t *wait_frame(fb_wsc_t *c, const char *type, const char *id)
{
    for (;;) {
        fb_wsc_frame_t f;
        if (fb_wsc_recv_text(c, &f) != 0)
            return NULL;
        json_t *j = json_loadb(f.data, f.len, 0, NULL);
        fb_wsc_frame_free(&f);
        if (!j)
            return NULL;
        const char *t = json_string_value(json_object_get(j, "type"));
        const char *i = json_string_value(json_object_get(j, "id"));
        if (t && strcmp(t, "error") == 0) {
            const char *code = json_string_value(json_object_get(j, "code"));
            fprintf(stderr, "bench_memory: server error %s\n", code ? code : "?");
            json_decref(j);
            return NULL;
        }
        if (t && strcmp(t, type) == 0 && (!id || (i && strcmp(i, id) == 0)))
            return j;
        json_decref(j);
    }
}

static int walk_one(struct shared *sh, int k)
{
    fb_wsc_t c;
    if (fb_wsc_connect(&c, sh->port, "/ws", NULL) != 101) {
        fprintf(stderr, "bench_memory: websocket upgrade failed (status %d)\n", c.status);
        fb_wsc_close(&c);
        return -1;
    }
    int rc = -1;
    json_t *w = NULL;
    if (send_json(&c, json_pack("{s:s, s:n, s:i}", "type", "hello", "token", "since", 0)) != 0 ||
        !(w = wait_frame(&c, "welcome", NULL)))
        goto out;
    const char *token = json_string_value(json_object_get(w, "token"));
    if (!token)
        goto out;
    sh->tokens[k] = strdup(token);
    for (size_t i = 0; i < WALK_N; i++) {
        char id[48];
        snprintf(id, sizeof id, "m%d-%zu", k, i);
        json_t *ack = NULL;
        if (send_json(&c, json_pack("{s:s, s:s, s:s}", "type", "message", "id", id, "text",
                                    walk[i])) != 0 ||
            !(ack = wait_frame(&c, "ack", id)))
            goto out;
        json_decref(ack);
    }
    rc = 0;
out:
    json_decref(w);
    fb_wsc_close(&c);
    return rc;
}

static void *worker_main(void *arg)
{
    struct shared *sh = arg;
    for (;;) {
        pthread_mutex_lock(&sh->lock);
        int k = sh->failed ? sh->n : sh->next++;
        pthread_mutex_unlock(&sh->lock);
        if (k >= sh->n)
            return NULL;
        if (walk_one(sh, k) != 0) {
            pthread_mutex_lock(&sh->lock);
            sh->failed = 1;
            pthread_mutex_unlock(&sh->lock);
        }
    }
}

static redisReply *cmd(redisContext *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(r, fmt, ap);
    va_end(ap);
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "bench_memory: redis: %s\n", rep ? rep->str : r->errstr);
        exit(1);
    }
    return rep;
}

static long long integer(redisContext *r, const char *fmt, const char *arg)
{
    redisReply *rep = cmd(r, fmt, arg);
    long long v = rep->type == REDIS_REPLY_INTEGER  ? rep->integer
                  : rep->type == REDIS_REPLY_STRING ? strtoll(rep->str, NULL, 10)
                                                    : 0;
    freeReplyObject(rep);
    return v;
}

static long long used_memory(redisContext *r)
{
    redisReply *rep = cmd(r, "INFO memory");
    const char *p = strstr(rep->str, "used_memory:");
    long long v = p ? strtoll(p + strlen("used_memory:"), NULL, 10) : -1;
    freeReplyObject(rep);
    return v;
}

/* Waits until nothing is pending in the outbox and no reminder is due at `now` (0: ignore). */
static int settle(redisContext *r, const char *prefix, int64_t due_before, double timeout_s)
{
    char pending[128], due[128], claimed[128];
    snprintf(pending, sizeof pending, "%s{g}:outbox:pending", prefix);
    snprintf(due, sizeof due, "%s{g}:reminders:due", prefix);
    snprintf(claimed, sizeof claimed, "%s{g}:reminders:claimed", prefix);
    double end = now_s() + timeout_s;
    while (now_s() < end) {
        long long p = integer(r, "ZCARD %s", pending);
        long long d = 0, c = 0;
        if (due_before) {
            redisReply *rep = cmd(r, "ZCOUNT %s -inf %lld", due, (long long)due_before);
            d = rep->integer;
            freeReplyObject(rep);
            c = integer(r, "ZCARD %s", claimed);
        }
        if (p == 0 && d == 0 && c == 0)
            return 0;
        usleep(20000);
    }
    return -1;
}

/* The kind of a conversation's key: what follows "}:" up to the next ':' ("session", "ev"...). */
static void kind_of(const char *key, char *out, size_t cap)
{
    const char *p = strstr(key, "}:");
    p = p ? p + 2 : "?";
    size_t n = strcspn(p, ":");
    if (n >= cap)
        n = cap - 1;
    memcpy(out, p, n);
    out[n] = '\0';
}

#define MAX_KINDS 32
struct kind {
    char name[32];
    long long bytes, keys;
};

/* Steps 1 and 2: N conversations walked, and what they cost. Prints token= of the first. */
static int do_walk(redisContext *r, const char *prefix, int port, int n, int threads)
{
    if (settle(r, prefix, 0, 30) != 0)
        return 1;
    /* One conversation first, not counted: the scripts' cache, the global keys and the tables'
     * first growth are a fixed cost, not a conversation's. */
    struct shared sh = {.port = port, .n = n + 1, .tokens = calloc((size_t)n + 1, sizeof(char *))};
    pthread_mutex_init(&sh.lock, NULL);
    if (walk_one(&sh, 0) != 0 || settle(r, prefix, 0, 60) != 0) {
        fprintf(stderr, "bench_memory: the first conversation failed\n");
        return 1;
    }
    sh.next = 1;
    long long mem0 = used_memory(r);
    pthread_t *t = calloc((size_t)threads, sizeof(*t));
    double t0 = now_s();
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, worker_main, &sh);
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    free(t);
    if (sh.failed) {
        fprintf(stderr, "bench_memory: a conversation failed\n");
        return 1;
    }
    if (settle(r, prefix, 0, 60) != 0) {
        fprintf(stderr, "bench_memory: the outbox did not empty\n");
        return 1;
    }
    double walked_s = now_s() - t0;
    long long mem1 = used_memory(r);

    struct kind kinds[MAX_KINDS];
    size_t nk = 0;
    long long conv_bytes = 0, ev_bytes = 0, ev_keys = 0, nkeys = 0, web_bytes = 0;
    for (int c = 1; c <= n; c++) {
        char pattern[256];
        snprintf(pattern, sizeof pattern, "%s{c:web:%s}:*", prefix, sh.tokens[c]);
        redisReply *keys = cmd(r, "KEYS %s", pattern);
        for (size_t i = 0; i < keys->elements; i++) {
            const char *key = keys->element[i]->str;
            long long b = integer(r, "MEMORY USAGE %s SAMPLES 0", key);
            char name[32];
            kind_of(key, name, sizeof name);
            size_t k = 0;
            while (k < nk && strcmp(kinds[k].name, name) != 0)
                k++;
            if (k == nk && nk < MAX_KINDS) {
                memset(&kinds[nk], 0, sizeof(kinds[nk]));
                snprintf(kinds[nk].name, sizeof kinds[nk].name, "%s", name);
                nk++;
            }
            if (k < nk) {
                kinds[k].bytes += b;
                kinds[k].keys++;
            }
            conv_bytes += b;
            nkeys++;
            if (strcmp(name, "ev") == 0) {
                /* the zset {c:KEY}:ev holds a mark per member; an older daemon's marks were
                 * one string key each ({c:KEY}:ev:<id>) */
                size_t len = strlen(key);
                ev_bytes += b;
                ev_keys +=
                    len > 3 && strcmp(key + len - 3, ":ev") == 0 ? integer(r, "ZCARD %s", key) : 1;
            }
            if (strcmp(name, "web") == 0 || strcmp(name, "hist") == 0 ||
                strcmp(name, "hids") == 0 || strcmp(name, "hkeys") == 0)
                web_bytes += b;
        }
        freeReplyObject(keys);
    }
    long long messages = (long long)n * (long long)WALK_N;
    printf("conversations=%d\nmessages=%lld\nwalk_s=%.2f\n", n, messages, walked_s);
    printf("used_memory_per_conversation=%lld\n", (mem1 - mem0) / n);
    printf("keys_per_conversation=%.1f\n", (double)nkeys / n);
    for (size_t k = 0; k < nk; k++)
        printf("kind.%s=%lld bytes in %.1f keys\n", kinds[k].name, kinds[k].bytes / n,
               (double)kinds[k].keys / n);
    printf("conversation_keys_bytes=%lld\n", conv_bytes / n);
    printf("conversation_bytes_without_dedupe=%lld\n", (conv_bytes - ev_bytes) / n);
    printf("web_history_bytes=%lld\n", web_bytes / n);
    printf("conversation_bytes_without_dedupe_and_history=%lld\n",
           (conv_bytes - ev_bytes - web_bytes) / n);
    printf("dedupe_bytes_per_message=%lld\n", ev_bytes / messages);
    printf("dedupe_marks_per_message=%.2f\n", (double)ev_keys / (double)messages);
    printf("indexes_and_overhead_per_conversation=%lld\n", (mem1 - mem0 - conv_bytes) / n);
    printf("token=%s\n", sh.tokens[1]);
    return 0;
}

/* The reminder ids of conversation web:TOKEN, from reminders:due. */
static size_t reminder_ids(redisContext *r, const char *prefix, const char *token, char ***out)
{
    char due_key[128], member_prefix[128];
    snprintf(due_key, sizeof due_key, "%s{g}:reminders:due", prefix);
    snprintf(member_prefix, sizeof member_prefix, "web:%s|", token);
    redisReply *due = cmd(r, "ZRANGE %s 0 -1", due_key);
    char **ids = NULL;
    size_t n = 0;
    for (size_t i = 0; i < due->elements; i++)
        if (strncmp(due->element[i]->str, member_prefix, strlen(member_prefix)) == 0) {
            ids = realloc(ids, (n + 1) * sizeof(char *));
            ids[n++] = strdup(due->element[i]->str + strlen(member_prefix));
        }
    freeReplyObject(due);
    *out = ids;
    return n;
}

/* Step 3: LOADED copies of conversation web:TOKEN. */
static int do_load(redisContext *r, const char *prefix, const char *token, int loaded)
{
    long long mem1 = used_memory(r);
    char src[256];
    snprintf(src, sizeof src, "%s{c:web:%s}:*", prefix, token);
    redisReply *keys = cmd(r, "KEYS %s", src);
    size_t nkeys = keys->elements;
    char **suffix = calloc(nkeys, sizeof(char *));
    redisReply **dumps = calloc(nkeys, sizeof(*dumps));
    long long *ttl = calloc(nkeys, sizeof(long long));
    for (size_t i = 0; i < nkeys; i++) {
        const char *key = keys->element[i]->str;
        suffix[i] = strdup(strstr(key, "}:") + 1);
        dumps[i] = cmd(r, "DUMP %s", key);
        ttl[i] = integer(r, "PTTL %s", key);
    }
    char **rem_ids;
    size_t nrem = reminder_ids(r, prefix, token, &rem_ids);
    char due_key[128];
    snprintf(due_key, sizeof due_key, "%s{g}:reminders:due", prefix);
    double l0 = now_s();
    int64_t later = wall_ms() + 30LL * 86400 * 1000; /* not due during the bench */
    size_t queued = 0;
    for (int i = 0; i < loaded; i++) {
        char conv[64];
        snprintf(conv, sizeof conv, "web:bench-copy-%d", i);
        for (size_t k = 0; k < nkeys; k++) {
            char key[256], ttlbuf[32] = "0";
            snprintf(key, sizeof key, "%s{c:%s}%s", prefix, conv, suffix[k]);
            if (ttl[k] > 0)
                snprintf(ttlbuf, sizeof ttlbuf, "%lld", ttl[k]);
            const char *av[] = {"RESTORE", key, ttlbuf, dumps[k]->str, "REPLACE"};
            size_t lens[] = {7, strlen(key), strlen(ttlbuf), dumps[k]->len, 7};
            redisAppendCommandArgv(r, 5, av, lens);
            queued++;
        }
        for (size_t k = 0; k < nrem; k++) {
            char member[256];
            snprintf(member, sizeof member, "%s|%s", conv, rem_ids[k]);
            redisAppendCommand(r, "ZADD %s %lld %s", due_key, (long long)later, member);
            queued++;
        }
        if (queued >= 2000 || i == loaded - 1) {
            for (; queued; queued--) {
                redisReply *rep = NULL;
                if (redisGetReply(r, (void **)&rep) != REDIS_OK || rep->type == REDIS_REPLY_ERROR) {
                    fprintf(stderr, "bench_memory: loading: %s\n", rep ? rep->str : r->errstr);
                    return 1;
                }
                freeReplyObject(rep);
            }
        }
    }
    double load_s = now_s() - l0;
    long long mem2 = used_memory(r);
    printf("loaded=%d\nload_s=%.2f\nkeys_copied_per_conversation=%zu\n"
           "reminders_per_conversation=%zu\n",
           loaded, load_s, nkeys, nrem);
    printf("used_memory_loaded_mib=%.1f\n", (double)mem2 / 1048576.0);
    if (loaded)
        printf("used_memory_per_loaded_conversation=%lld\n", (mem2 - mem1) / loaded);
    freeReplyObject(keys);
    return 0;
}

/* Step 4: DUE of the copies' first reminder made due now; the time until all are handled, and
 * how many reached the conversation's history (its length before and after, copy 0). */
static int do_due(redisContext *r, const char *prefix, const char *token, int loaded, int due_n)
{
    char **rem_ids;
    size_t nrem = reminder_ids(r, prefix, token, &rem_ids);
    if (!nrem) {
        fprintf(stderr, "bench_memory: the walked conversation has no reminder\n");
        return 1;
    }
    char due_key[128];
    snprintf(due_key, sizeof due_key, "%s{g}:reminders:due", prefix);
    /* The reminder's delay: the push-back is lazy (docs/internals/REMINDERS.md), so a reminder
     * goes out only once the user's last event is that long ago; the copies' last event is set
     * back by as much, as if the delay had passed. */
    char src_hash[256], field[160];
    snprintf(src_hash, sizeof src_hash, "%s{c:web:%s}:reminders", prefix, token);
    snprintf(field, sizeof field, "%s#a", rem_ids[0]);
    redisReply *d = cmd(r, "HGET %s %s", src_hash, field);
    long long delay = d->type == REDIS_REPLY_STRING ? strtoll(d->str, NULL, 10) : 0;
    freeReplyObject(d);
    int64_t now = wall_ms();
    int made = 0;
    for (int i = 0; i < due_n && i < loaded; i++, made++) {
        char member[256], session[256];
        snprintf(member, sizeof member, "web:bench-copy-%d|%s", i, rem_ids[0]);
        snprintf(session, sizeof session, "%s{c:web:bench-copy-%d}:session", prefix, i);
        redisAppendCommand(r, "HSET %s a %lld", session, (long long)(now - 1 - delay));
        redisAppendCommand(r, "ZADD %s %lld %s", due_key, (long long)(now - 1), member);
    }
    for (int i = 0; i < 2 * made; i++) {
        redisReply *rep = NULL;
        if (redisGetReply(r, (void **)&rep) != REDIS_OK)
            return 1;
        freeReplyObject(rep);
    }
    double d0 = now_s();
    if (settle(r, prefix, now, 120) != 0) {
        fprintf(stderr, "bench_memory: the due reminders were not all handled in 120 s\n");
        return 1;
    }
    double d_s = now_s() - d0;
    printf("reminders_due=%d\nreminders_s=%.2f\nreminders_per_s=%.0f\n", made, d_s,
           (double)made / d_s);
    return 0;
}

int main(int argc, char **argv)
{
    int port = 0, rport = 0, n = 50, threads = 10, loaded = 100000, due_n = 1000;
    const char *prefix = "fb:", *mode = "walk", *token = NULL;
    int o;
    while ((o = getopt(argc, argv, "m:p:r:n:c:l:d:k:t:")) != -1) {
        switch (o) {
        case 'm':
            mode = optarg;
            break;
        case 'p':
            port = (int)strtol(optarg, NULL, 10);
            break;
        case 'r':
            rport = (int)strtol(optarg, NULL, 10);
            break;
        case 'n':
            n = (int)strtol(optarg, NULL, 10);
            break;
        case 'c':
            threads = (int)strtol(optarg, NULL, 10);
            break;
        case 'l':
            loaded = (int)strtol(optarg, NULL, 10);
            break;
        case 'd':
            due_n = (int)strtol(optarg, NULL, 10);
            break;
        case 'k':
            prefix = optarg;
            break;
        case 't':
            token = optarg;
            break;
        default:
            fprintf(stderr, "usage: see the header of bench/bench_memory.c\n");
            return 2;
        }
    }
    bool walk_mode = strcmp(mode, "walk") == 0;
    if (rport <= 0 || (walk_mode && (port <= 0 || n < 1 || threads < 1)) ||
        (!walk_mode && !token) || loaded < 0 || due_n < 0) {
        fprintf(stderr, "bench_memory: bad arguments (see the header of bench/bench_memory.c)\n");
        return 2;
    }
    redisContext *r = redisConnect("127.0.0.1", rport);
    if (!r || r->err) {
        fprintf(stderr, "bench_memory: cannot connect to Redis on port %d\n", rport);
        return 1;
    }
    int rc;
    if (walk_mode)
        rc = do_walk(r, prefix, port, n, threads);
    else if (strcmp(mode, "load") == 0)
        rc = do_load(r, prefix, token, loaded);
    else if (strcmp(mode, "due") == 0)
        rc = do_due(r, prefix, token, loaded, due_n);
    else {
        fprintf(stderr, "bench_memory: unknown mode %s\n", mode);
        rc = 2;
    }
    redisFree(r);
    return rc;
}
