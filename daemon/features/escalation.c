/* SPDX-License-Identifier: MIT */
/*
 * escalation.c - tickets handed to human advisors (docs/internals/ESCALATION.md).
 *
 * - A new ticket (the engine's `escalate` effect) is announced by the COMMIT itself: the thread
 *   root goes to the outbox of the advisors' room of the user's territory, on the adapter that
 *   hosts the advisors' channel (FB_ADAPTER_CAP_ADVISORS), with a "record": once the platform
 *   accepted it, the adapter hands its message id back through core->sent (fb_esc_sent), which
 *   keeps it in the ticket and in the roots index.
 * - The user's messages while the ticket is open are appended, by the same COMMIT, to the outbox
 *   of the thread (FB_ESC_COMMIT_LUA).
 * - Thread messages of the advisors come here (fb_esc_inbound()): one Lua script relays them to
 *   the user's outbox or runs the command; a hand-back queues a HANDBACK event in the router.
 * - The watchdog announces unclaimed tickets again and retries hand-backs a crash interrupted.
 */
#include "features/escalation.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "common/calendar.h"
#include "core/adapters.h"
#include "core/keys.h"
#include "engine/effects.h"
#include "engine/engine.h"
#include "engine/template.h"
#include "frichebot/alloc.h"
#include "frichebot/clock.h"
#include "frichebot/err.h"
#include "frichebot/hash.h"
#include "frichebot/log.h"

#define MAX_ROUTES     512
#define WATCH_EVERY_MS 1000 /* watchdog poll */
#define WATCH_BATCH    100  /* tickets looked at per poll */
#define MAX_NAME       64   /* bytes of an advisor's label */

struct route {
    char *territory; /* "52", "r44", "*" */
    char *value;     /* room id or text */
};

struct fb_esc_s {
    uv_loop_t *loop;
    const fb_config_t *cfg;
    fb_store_t *store;
    const fb_geo_t *geo;
    fb_feature_host_t hooks; /* zeroed until fb_esc_attach() */
    struct route *rooms, *times;
    size_t nrooms, ntimes;
    char *k_open, *k_roots, *k_pending, *k_response;
    int64_t clock_ms; /* fb__esc_set_clock(): the watchdog's and the commands' clock, 0: wall */
    fb_store_script_t s_in, s_watch;
    char *in_script; /* in_mark_src then in_src */
    uv_timer_t timer;
    bool timer_init, watching, stopping;
    size_t inflight;
    void (*stop_done)(void *arg);
    void *stop_arg;
};

static int64_t now_ms(const fb_esc_t *e)
{
    return e->clock_ms ? e->clock_ms : fb_wall_ms();
}

/* ---- the scripts ------------------------------------------------------------------------- */

#define LUA_HELPERS                                                                                \
    FB_KEYS_LUA                                                                                    \
    "local function html(s)\n"                                                                     \
    "  local r = string.gsub(s, '[&<>\"\\']', {['&'] = '&amp;', ['<'] = '&lt;', ['>'] = '&gt;',\n" \
    "                        ['\"'] = '&quot;', [\"'\"] = '&#39;'})\n"                             \
    "  r = string.gsub(r, '\\n', '<br>')\n"                                                        \
    "  return '<p>' .. r .. '</p>'\n"                                                              \
    "end\n"                                                                                        \
    "local kick = {}\n"                                                                            \
    "local function push(prefix, pending, conv, txn, text, now, kind)\n"                           \
    "  local e = cjson.encode({txn = txn, kind = kind or 'reply', text = text,\n"                  \
    "                         html = html(text), ts = now})\n"                                     \
    "  redis.call('RPUSH', conv_key(prefix, conv, '" FB_KEY_OUTBOX "'), e)\n"                      \
    "  redis.call('ZADD', pending, 'NX', now, conv)\n"                                             \
    "  table.insert(kick, conv)\n"                                                                 \
    "  if kind == 'relay' and string.sub(conv, 1, 4) == 'web:' and\n"                              \
    "     redis.call('HGET', conv_key(prefix, conv, '" FB_KEY_MAIL "'), 'state') == 'confirmed'\n" \
    "  then\n" /* an advisor's words also by e-mail (features/mailcopy.h, EMAIL.md) */             \
    "    local m = 'email:' .. conv\n"                                                             \
    "    local mo = conv_key(prefix, m, '" FB_KEY_OUTBOX "')\n"                                    \
    "    redis.call('RPUSH', mo, cjson.encode({\n"                                                 \
    "      txn = 'mail.' .. txn, kind = kind, text = text, html = '', ts = now}))\n"               \
    "    local t = redis.call('PTTL', conv_key(prefix, conv, '" FB_KEY_MAIL "'))\n"                \
    "    if t > 0 then redis.call('PEXPIRE', mo, t) end\n" /* as long as the address */            \
    "    redis.call('ZADD', pending, 'NX', now, m)\n"                                              \
    "    table.insert(kick, m)\n"                                                                  \
    "  end\n"                                                                                      \
    "end\n"

/*
 * IN. KEYS: 1 the thread's dedupe marks (zset {c:THREAD}:ev, as the router's), 2 roots index (root
 * event id -> user's conversation), 3 pending index, 4 open tickets, 5 advisors' response times
 * (stats, ms, newest first: an open ticket's first advisor message or command but a note adds one),
 * 6 an older daemon's dedupe mark of this event ({c:THREAD}:ev:<id>, looked for during the
 * transition: docs/internals/REDIS.md, "Dedupe marks"). ARGV: 1 root event id, 2 command (prendre,
 * rendre, clore, note, msg, or ignore: a command of a sender who left the room), 3 the advisor's
 * label, 4 text (the message, or the command's argument), 5 now ms, 6 key prefix, 7 the thread's
 * conversation key, 8 txn base, 9 dedupe retention ms, 10 sender, 11 hand-back event id, 12 the
 * event id. The mark: member = event id, score = now; the marks older than the retention trimmed,
 * the zset's TTL the retention (set at every event: advisors' messages are few). Returns {code,
 * user's conversation, action, kick...}: code 2 duplicate, 0 not a ticket's thread, 1 handled;
 * action "handback" or "".
 */
static const char in_mark_src[] =
    "#!lua\n"
    "local t0, keep = tonumber(ARGV[5]), tonumber(ARGV[9])\n"
    "local seen = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[12]))\n"
    "if (seen and seen > t0 - keep) or redis.call('EXISTS', KEYS[6]) == 1 then\n"
    "  return {2, '', ''}\n"
    "end\n"
    "redis.call('ZADD', KEYS[1], t0, ARGV[12])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t0 - keep)\n"
    "redis.call('PEXPIRE', KEYS[1], keep)\n";
/* The rest of IN, after in_mark_src (two literals: one would pass the 4095 bytes C17 compilers
 * must support). */
static const char in_src[] = LUA_HELPERS
    "local user = redis.call('HGET', KEYS[2], ARGV[1])\n"
    "if not user then return {0, '', ''} end\n"
    "local tk = conv_key(ARGV[6], user, '" FB_KEY_TICKET "')\n"
    "local t = redis.call('HMGET', tk, 'state', 'root', 'claimed', 'claimed_name', 'created',\n"
    "                     'responded')\n"
    "if t[2] ~= ARGV[1] then return {0, '', ''} end\n"
    "local now = tonumber(ARGV[5])\n"
    "local cmd, name, thread = ARGV[2], ARGV[3], ARGV[7]\n"
    "local n = 0\n"
    "local function say(conv, text, kind)\n"
    "  n = n + 1\n"
    "  push(ARGV[6], KEYS[3], conv, ARGV[8] .. '.' .. n, text, now, kind)\n"
    "end\n"
    "local action = ''\n"
    "local open = t[1] == 'waiting' or t[1] == 'claimed'\n"
    "if open and cmd ~= 'note' and cmd ~= 'ignore' and not t[6] and tonumber(t[5]) then\n"
    "  redis.call('HSET', tk, 'responded', now)\n"
    "  redis.call('LPUSH', KEYS[5], math.max(0, now - tonumber(t[5])))\n"
    "  redis.call('LTRIM', KEYS[5], 0, 9999)\n" /* FB_STATS_RESPONSE_SAMPLES - 1 */
    "end\n"
    "if not open then\n"
    "  if cmd ~= 'msg' and cmd ~= 'ignore' then\n"
    "    say(thread, 'Cette demande est close : commande sans effet.')\n"
    "  end\n"
    "elseif cmd == 'ignore' then\n"
    "  -- a command of someone no longer in the advisors' room: nothing\n"
    "elseif cmd == 'prendre' then\n"
    "  if t[1] == 'waiting' then\n"
    "    redis.call('HSET', tk, 'state', 'claimed', 'claimed', ARGV[10], 'claimed_name', name,\n"
    "               'claimed_at', now)\n"
    "    redis.call('ZREM', KEYS[4], user)\n"
    "    say(thread, '✅ Demande prise en charge par ' .. name .. '.')\n"
    "    say(user, name .. ', conseiller, a pris en charge votre demande. ' ..\n"
    "        'Vous pouvez lui écrire ici.', 'relay')\n"
    "  elseif t[3] == ARGV[10] then\n"
    "    say(thread, 'Vous avez déjà pris en charge cette demande.')\n"
    "  else\n"
    "    say(thread, '⛔ Demande déjà prise en charge par ' .. (t[4] or '?') .. ' : ' ..\n"
    "        'prise refusée.')\n"
    "  end\n"
    "elseif cmd == 'rendre' or cmd == 'clore' then\n"
    "  redis.call('HSET', tk, 'state', 'handing', 'hb', ARGV[11], 'closed_by', name)\n"
    "  if cmd == 'clore' and ARGV[4] ~= '' then redis.call('HSET', tk, 'close_note', ARGV[4]) end\n"
    "  redis.call('ZADD', KEYS[4], now, user)\n"
    "  if cmd == 'rendre' then\n"
    "    say(thread, '↩️ Conversation rendue à l\\'assistant par ' .. name .. '.')\n"
    "  else\n"
    "    say(thread, '🔒 Demande close par ' .. name .. '.')\n"
    "    say(user, name .. ' a clos l\\'échange. Merci de votre confiance.')\n"
    "  end\n"
    "  action = 'handback'\n"
    "elseif cmd == 'note' then\n"
    "  redis.call('HSET', tk, 'notes', (redis.call('HGET', tk, 'notes') or '') .. name .. ' : ' "
    "..\n"
    "             ARGV[4] .. '\\n')\n"
    "  say(thread, '📝 Note enregistrée (non transmise à l\\'usager).')\n"
    "else\n"
    "  say(user, name .. ' (conseiller) : ' .. ARGV[4], 'relay')\n"
    "end\n"
    "local r = {1, user, action}\n"
    "for _, c in ipairs(kick) do table.insert(r, c) end\n"
    "return r\n";

/*
 * WATCH. KEYS: 1 open tickets (zset: user's conversation, scored by the next look, ms), 2 pending
 * index. ARGV: 1 now ms, 2 key prefix, 3 watchdog ms, 4 batch, 5 "1" when announcements may go
 * out now (working hours). Returns {kick, handbacks}: conversation keys whose outbox got entries;
 * pairs (user's conversation, hand-back event id) to queue again.
 */
static const char watch_src[] =
    "#!lua\n" LUA_HELPERS "local now = tonumber(ARGV[1])\n"
    "local hb = {}\n"
    "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))\n"
    "for _, user in ipairs(due) do\n"
    "  local tk = conv_key(ARGV[2], user, '" FB_KEY_TICKET "')\n"
    "  local t = redis.call('HMGET', tk, 'state', 'room', 'root', 'hb', 'created', 'adapter')\n"
    "  if t[1] == 'handing' and t[4] then\n"
    "    table.insert(hb, user)\n"
    "    table.insert(hb, t[4])\n"
    "    redis.call('ZADD', KEYS[1], now + 5000, user)\n"
    "  elseif t[1] == 'waiting' and t[3] and ARGV[5] == '1' then\n"
    "    local n = redis.call('HINCRBY', tk, 'announced', 1)\n"
    "    local mins = math.floor((now - (tonumber(t[5]) or now)) / 60000)\n"
    "    local base = 'esc-wd-' .. string.sub(redis.sha1hex(user .. '|' .. (t[5] or '')), 1, 16) "
    "..\n"
    "                 '-' .. n\n"
    "    push(ARGV[2], KEYS[2], t[6] .. ':' .. t[2], base .. '.0',\n"
    "         '⏰ Rappel : une demande attend un conseiller depuis ' .. mins .. ' min. ' ..\n"
    "         'Répondez « !prendre » dans son fil (réf. ' .. string.sub(t[3], 1, 12) .. ').', "
    "now,\n"
    "         'reminder')\n"
    "    if n == 1 then\n"
    "      push(ARGV[2], KEYS[2], user, base .. '.1',\n"
    "           'Votre demande attend toujours un conseiller, plus longtemps que prévu. ' ..\n"
    "           'Elle reste enregistrée : vous aurez une réponse ici.', now)\n"
    "    end\n"
    "    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), user)\n"
    "  elseif t[1] == 'waiting' then\n"
    "    redis.call('ZADD', KEYS[1], now + 1000, user)\n"
    "  else\n"
    "    redis.call('ZREM', KEYS[1], user)\n"
    "  end\n"
    "end\n"
    "return {kick, hb}\n";

/* ---- configuration ----------------------------------------------------------------------- */

/* A room as escalation.rooms names it: its id ("!...") or an alias "#name:server" with both parts
 * non-empty; at most 255 bytes, no space, control character or '/' (the Matrix adapter's rule,
 * fb_mx_alias_ok(), which resolves the aliases). */
static bool room_ok(const char *v)
{
    size_t n = strlen(v);
    if (n < 2 || n > 255 || (v[0] != '!' && v[0] != '#'))
        return false;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p <= ' ' || *p == '/' || *p == 0x7f)
            return false;
    const char *colon = strchr(v, ':');
    return v[0] == '!' || (colon && colon > v + 1 && colon[1] != '\0');
}

static bool territory_ok(const char *t, size_t n)
{
    if (n == 1 && t[0] == '*')
        return true;
    size_t i = t[0] == 'r' ? 1 : 0;
    if (n <= i || n - i > 3)
        return false;
    for (; i < n; i++)
        if (!((t[i] >= '0' && t[i] <= '9') || t[i] == 'A' || t[i] == 'B'))
            return false;
    return true;
}

static int parse_routes(char **lines, bool room, struct route **out, size_t *n, fb_buf_t *errors)
{
    size_t count = 0;
    while (lines && lines[count])
        count++;
    *out = fb_calloc(count + 1, sizeof(**out));
    *n = 0;
    int rc = 0;
    for (size_t i = 0; i < count; i++) {
        const char *line = lines[i];
        const char *sp = strchr(line, ' ');
        const char *what = room ? "rooms" : "response_times";
        const char *v = sp ? sp + 1 : NULL;
        while (v && *v == ' ')
            v++;
        /* A room: its id "!id:server", or its alias "#name:server" (the Matrix adapter
         * resolves it at start and keeps the alias as the conversation key). */
        if (!sp || !territory_ok(line, (size_t)(sp - line)) || !*v || (room && !room_ok(v))) {
            (void)fb_buf_printf(errors,
                                "escalation.%s[%zu]: expected \"TERRITORY %s\" (TERRITORY: a "
                                "département code, r + a région code, or *)\n",
                                what, i, room ? "!room:server or #alias:server" : "text");
            rc = FB_EINVAL;
            continue;
        }
        (*out)[*n].territory = fb_strndup(line, (size_t)(sp - line));
        (*out)[*n].value = fb_strdup(v);
        (*n)++;
    }
    return rc;
}

static const char *route_find(const struct route *rt, size_t n, const char *dep, const char *reg)
{
    for (size_t i = 0; dep && i < n; i++)
        if (strcmp(rt[i].territory, dep) == 0)
            return rt[i].value;
    for (size_t i = 0; reg && i < n; i++)
        if (rt[i].territory[0] == 'r' && strcmp(rt[i].territory + 1, reg) == 0)
            return rt[i].value;
    for (size_t i = 0; i < n; i++)
        if (strcmp(rt[i].territory, "*") == 0)
            return rt[i].value;
    return NULL;
}

static void free_routes(struct route *rt, size_t n);

int fb_esc_check_config(const fb_config_t *cfg, fb_buf_t *errors)
{
    if (!cfg->escalation.enabled)
        return 0;
    struct route *rooms = NULL, *times = NULL;
    size_t nrooms = 0, ntimes = 0;
    int rc = parse_routes(cfg->escalation.rooms, true, &rooms, &nrooms, errors);
    if (parse_routes(cfg->escalation.response_times, false, &times, &ntimes, errors))
        rc = FB_EINVAL;
    if (rc == 0 && nrooms == 0) {
        (void)fb_buf_puts(errors, "escalation.rooms: at least one room is needed when "
                                  "escalation.enabled is true\n");
        rc = FB_EINVAL;
    }
    free_routes(rooms, nrooms);
    free_routes(times, ntimes);
    return rc;
}

int fb_esc_create(uv_loop_t *loop, const fb_config_t *cfg, fb_store_t *store, const fb_geo_t *geo,
                  fb_esc_t **out, fb_buf_t *errors)
{
    *out = NULL;
    if (!cfg->escalation.enabled)
        return 0;
    fb_esc_t *e = fb_calloc(1, sizeof(*e));
    e->loop = loop;
    e->cfg = cfg;
    e->store = store;
    e->geo = geo;
    int rc = fb_esc_check_config(cfg, errors);
    if (rc == 0) {
        (void)parse_routes(cfg->escalation.rooms, true, &e->rooms, &e->nrooms, errors);
        (void)parse_routes(cfg->escalation.response_times, false, &e->times, &e->ntimes, errors);
    }
    if (rc) {
        fb_esc_destroy(e);
        return rc;
    }
    const char *prefix = fb_store_prefix(store);
    e->k_open = fb_key_global(prefix, FB_KEY_ESC_OPEN);
    e->k_roots = fb_key_global(prefix, FB_KEY_ESC_ROOTS);
    e->k_pending = fb_key_global(prefix, FB_KEY_PENDING);
    e->k_response = fb_key_stats(prefix, FB_KEY_STATS_RESPONSE);
    e->in_script = fb_asprintf("%s%s", in_mark_src, in_src);
    fb_store_script_init(&e->s_in, e->in_script);
    fb_store_script_init(&e->s_watch, watch_src);
    FB_NOTICE(ROUTER, "[esc] escalation enabled: %zu advisors' room route(s)", e->nrooms);
    *out = e;
    return 0;
}

static void free_routes(struct route *rt, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        fb_free(rt[i].territory);
        fb_free(rt[i].value);
    }
    fb_free(rt);
}

void fb_esc_destroy(fb_esc_t *e)
{
    if (!e)
        return;
    free_routes(e->rooms, e->nrooms);
    free_routes(e->times, e->ntimes);
    fb_free(e->k_open);
    fb_free(e->k_roots);
    fb_free(e->k_pending);
    fb_free(e->k_response);
    fb_free(e->in_script);
    fb_free(e);
}

size_t fb_esc_inflight(const fb_esc_t *e)
{
    return e ? e->inflight : 0;
}

void fb_esc_attach(fb_esc_t *e, const fb_feature_host_t *host)
{
    e->hooks = *host;
}

/* ---- COMMIT ------------------------------------------------------------------------------ */

static const char *reason_label(const char *reason)
{
    if (strcmp(reason, "demande") == 0)
        return "l'usager a demandé à parler à un conseiller";
    if (strcmp(reason, "echecs") == 0)
        return "plusieurs réponses de l'usager n'ont pas été comprises";
    if (strcmp(reason, "dialogue") == 0)
        return "le questionnaire n'a pas de suite prévue pour cette situation";
    return reason;
}

/* An outbox entry (JSON text) of `kind` ("reply", "ticket" or "relay": docs/internals/ROUTER.md);
 * `record` and `thread` (stolen, may be NULL) are the adapter's instructions: where to record the
 * sent event's id, where to read the thread's root. */
static char *entry_json(const char *txn, const char *kind, const char *text, int64_t now,
                        json_t *record, json_t *thread)
{
    fb_buf_t h;
    fb_buf_init(&h, 1u << 20);
    (void)fb_buf_puts(&h, "<p>");
    for (const char *p = text; *p; p++) {
        if (*p == '\n')
            (void)fb_buf_puts(&h, "<br>");
        else
            (void)fb_template_html_escape(p, 1, &h);
    }
    (void)fb_buf_puts(&h, "</p>");
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I}", "txn", txn, "kind", kind, "text", text,
                          "html", fb_buf_str(&h), "ts", (json_int_t)now);
    fb_buf_free(&h);
    if (o && record)
        (void)json_object_set(o, "record", record);
    if (o && thread)
        (void)json_object_set(o, "thread", thread);
    json_decref(record);
    json_decref(thread);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    char *r = s ? fb_strdup(s) : NULL;
    free(s); /* fb-lint: allow free (jansson's allocation) */
    return r;
}

static const json_t *escalate_effect(const json_t *effects)
{
    size_t i;
    const json_t *x;
    json_array_foreach(effects, i, x)
    {
        if (fb_effect_type(x) == FB_EFFECT_ESCALATE)
            return x;
    }
    return NULL;
}

/* True when the engine said something: a command answered (« mes données » while a ticket
 * waits), not a text for the advisor. */
static bool says_something(const json_t *effects)
{
    size_t i;
    const json_t *x;
    json_array_foreach(effects, i, x)
    {
        if (fb_effect_type(x) == FB_EFFECT_SAY)
            return true;
    }
    return false;
}

bool fb_esc_has_advisor(const void *self, const char *insee)
{
    const fb_esc_t *e = self;
    if (!e)
        return false; /* escalation disabled: nobody for anyone */
    const fb_commune_t *c = insee && e->geo ? fb_geo_by_insee(e->geo, insee) : NULL;
    return route_find(e->rooms, e->nrooms, c ? c->dep : NULL, c ? c->region : NULL) != NULL;
}

void fb_esc_commit_ops(const fb_esc_t *e, const fb_esc_step_t *st, json_t *ops, size_t *says)
{
    if (!e)
        return;
    const char *prefix = fb_store_prefix(e->store);
    json_t *o = json_pack("{s:s, s:s, s:s, s:I}", "idx", e->k_open, "roots", e->k_roots, "prefix",
                          prefix, "wd", (json_int_t)e->cfg->escalation.watchdog_ms);
    char *ticket_key = NULL, *sent_key = NULL; /* for the root and the relays */
    const json_t *esc = escalate_effect(st->effects);
    bool waiting = fb_engine_session_escalated(st->session);
    /* a command the engine answered while the ticket waits is not for the advisor */
    bool relay = !esc && st->user && st->text && waiting && !says_something(st->effects);
    /* « retour » or « recommencer » while the ticket waited: the user took the questions back */
    bool resumed = !esc && st->user && !waiting && !st->forget && !st->handback &&
                   st->old_session && fb_engine_session_escalated(st->old_session);
    if ((esc || relay || resumed) && !st->forget) {
        ticket_key = fb_store_conv_key(e->store, st->key, FB_KEY_TICKET);
        sent_key = fb_store_conv_key(e->store, st->key, FB_KEY_ESC_SENT);
    }
    const char *colon = strchr(st->key, ':');
    if (st->forget) {
        /* the ticket itself is deleted by the COMMIT; only the index entry is left to drop */
    } else if (esc && colon) {
        const char *insee = fb_engine_session_insee(st->session);
        const fb_commune_t *c = insee && e->geo ? fb_geo_by_insee(e->geo, insee) : NULL;
        const char *dep = c ? c->dep : NULL, *reg = c ? c->region : NULL;
        const char *room = route_find(e->rooms, e->nrooms, dep, reg);
        const char *when = route_find(e->times, e->ntimes, dep, reg);
        const char *reason = json_string_value(json_object_get(esc, "reason"));
        const char *summary = json_string_value(json_object_get(esc, "summary"));
        fb_buf_t b;
        fb_buf_init(&b, 1u << 20);
        (void)fb_buf_printf(&b, "🙋 Nouvelle demande d'accompagnement");
        if (c)
            (void)fb_buf_printf(&b, " – %s (%s, %s)", c->name, c->dep_name, c->dep);
        else
            (void)fb_buf_puts(&b, " – commune non renseignée");
        (void)fb_buf_printf(&b, "\nMotif : %s.", reason_label(reason ? reason : ""));
        if (summary && *summary)
            (void)fb_buf_printf(&b, "\n\n%s", summary);
        (void)fb_buf_puts(&b, "\n\nCommandes dans ce fil : !prendre (prendre en charge), !rendre "
                              "(rendre la main à l'assistant), !clore [note], !note <texte> "
                              "(interne). Vos autres réponses dans ce fil sont transmises à "
                              "l'usager.");
        char txn[48];
        snprintf(txn, sizeof(txn), "esc-%s.root", st->wid);
        json_t *record = json_pack("{s:s, s:s, s:s, s:s, s:s}", "key", ticket_key, "field", "root",
                                   "rkey", e->k_roots, "rval", st->key, "list", sent_key);
        char *entry = entry_json(txn, "ticket", fb_buf_str(&b), st->now, record, NULL);
        fb_buf_free(&b);
        char territory[16];
        snprintf(territory, sizeof(territory), "%s", dep ? dep : "*");
        const char *channel = fb_esc_advisors_adapter();
        if (entry && room && channel) {
            (void)json_object_set_new(
                o, "ann",
                json_pack("[s, s, s, s, s, s]", entry, "", room, territory, channel, st->wid));
        }
        fb_free(entry);
        /* The user is told the usual response time of the territory. */
        json_t *out = json_object_get(ops, "out");
        if (when && json_is_array(out)) {
            char *t = fb_asprintf("Un conseiller vous répondra ici, en général %s.", when);
            char utxn[48];
            snprintf(utxn, sizeof(utxn), "%s.%zu", st->wid, (*says)++);
            char *ue = entry_json(utxn, "reply", t, st->now, NULL, NULL);
            if (ue)
                (void)json_array_append_new(out, json_string(ue));
            fb_free(ue);
            fb_free(t);
        }
        FB_INFO(ROUTER, "[esc] ticket announced to the room of territory %s", territory);
    } else if (st->handback) {
        (void)json_object_set_new(o, "done", json_true());
    } else if (resumed) {
        /* the ticket closes; its thread is told why (the advisor would answer nobody) */
        char txn[48];
        snprintf(txn, sizeof(txn), "esc-%s.resumed", st->wid);
        json_t *thread = json_pack("{s:s, s:s}", "key", ticket_key, "field", "root");
        json_t *record = json_pack("{s:s, s:s}", "key", ticket_key, "list", sent_key);
        char *entry =
            entry_json(txn, "reply",
                       "ℹ️ L'usager a repris le questionnaire sans attendre (« retour » "
                       "ou « recommencer ») : la demande est close.",
                       st->now, record, thread);
        if (entry)
            (void)json_object_set_new(o, "resumed", json_string(entry));
        fb_free(entry);
        FB_INFO(ROUTER, "[esc] ticket closed: the user took the questions back");
    } else if (relay) {
        char *t = fb_asprintf("Usager : %s", st->text);
        char txn[48];
        snprintf(txn, sizeof(txn), "esc-%s.relay", st->wid);
        /* sent to the ticket's thread once its root is known; recorded for a later forget */
        json_t *thread = json_pack("{s:s, s:s}", "key", ticket_key, "field", "root");
        json_t *record = json_pack("{s:s, s:s}", "key", ticket_key, "list", sent_key);
        char *entry = entry_json(txn, "relay", t, st->now, record, thread);
        if (entry)
            (void)json_object_set_new(o, "relay", json_string(entry));
        fb_free(entry);
        fb_free(t);
    }
    (void)json_object_set_new(ops, "esc", o);
    fb_free(ticket_key);
    fb_free(sent_key);
}

/* ---- advisors' rooms ---------------------------------------------------------------------- */

/* The room part of a Matrix conversation key ("!room:server" or "!room:server/$root"). */
static size_t room_len(const char *conv)
{
    const char *slash = strstr(conv, "/$");
    return slash ? (size_t)(slash - conv) : strlen(conv);
}

bool fb_esc_owns(const fb_esc_t *e, const char *adapter, const char *conv)
{
    const char *channel = fb_esc_advisors_adapter();
    if (!e || !adapter || !conv || !channel || strcmp(adapter, channel) != 0)
        return false;
    size_t n = room_len(conv);
    for (size_t i = 0; i < e->nrooms; i++)
        if (strlen(e->rooms[i].value) == n && memcmp(e->rooms[i].value, conv, n) == 0)
            return true;
    return false;
}

struct inb {
    fb_esc_t *e;
    fb_inbound_cb cb;
    void *arg;
    char *hb_id;
};

static void hb_queued(int status, void *arg)
{
    (void)arg;
    if (status != 0 && status != FB_ECANCELED)
        FB_WARN(ROUTER, "[esc] hand-back not done yet (%s): the watchdog retries",
                fb_strerror(status));
}

static void on_in(int status, const redisReply *rep, void *arg)
{
    struct inb *ib = arg;
    fb_esc_t *e = ib->e;
    e->inflight--;
    int rc = status ? (status == FB_ECANCELED ? FB_ECANCELED : FB_EAGAIN) : 0;
    if (!rc && !fb_redis_reply_array(rep, 3, FB_REDIS_NOMAX, NULL))
        rc = FB_EAGAIN;
    if (!rc) {
        const char *user = rep->element[1]->str;
        const char *action = rep->element[2]->str;
        for (size_t i = 3; i < rep->elements; i++)
            if (rep->element[i]->type == REDIS_REPLY_STRING && !e->stopping)
                e->hooks.kick(e->hooks.arg, rep->element[i]->str);
        if (action && strcmp(action, "handback") == 0 && user && *user && !e->stopping)
            (void)e->hooks.handback(e->hooks.arg, user, ib->hb_id, hb_queued, NULL);
    }
    ib->cb(rc, ib->arg);
    fb_free(ib->hb_id);
    fb_free(ib);
    if (e->stopping && e->hooks.idle)
        e->hooks.idle(e->hooks.arg); /* last: it may end the router */
}

/* The command of a thread message: "prendre", "rendre", "clore", "note" or "msg"; *rest is
 * what follows the command word. */
static const char *command_of(const char *text, const char **rest)
{
    static const char *const cmds[] = {"prendre", "rendre", "clore", "note"};
    while (*text == ' ' || *text == '\n' || *text == '\t')
        text++;
    *rest = text;
    if (text[0] != '!')
        return "msg";
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        size_t n = strlen(cmds[i]);
        if (strncmp(text + 1, cmds[i], n) == 0 &&
            (text[1 + n] == '\0' || text[1 + n] == ' ' || text[1 + n] == '\n')) {
            const char *r = text + 1 + n;
            while (*r == ' ' || *r == '\n')
                r++;
            *rest = r;
            return cmds[i];
        }
    }
    return "msg";
}

/* The label shown for an advisor: their display name (control characters made spaces, cut at
 * a UTF-8 boundary), else the localpart of their Matrix user id. */
static void advisor_label(const char *sender, const char *display, char out[MAX_NAME])
{
    const char *s = display;
    while (s && (*s == ' ' || *s == '\t'))
        s++;
    size_t n = s ? strlen(s) : 0;
    if (n == 0) {
        s = sender && sender[0] == '@' ? sender + 1 : sender ? sender : "conseiller";
        n = strcspn(s, ":");
    }
    if (n >= MAX_NAME) {
        n = MAX_NAME - 1;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--; /* s[n] starts a character: the cut does not split one */
    }
    for (size_t i = 0; i < n; i++)
        out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? ' ' : s[i];
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
}

int fb_esc_inbound(fb_esc_t *e, const char *adapter, const fb_inbound_t *ev, fb_inbound_cb cb,
                   void *arg)
{
    if (!e || !ev || !cb || !ev->conv || !ev->event_id)
        return FB_EINVAL;
    if (e->stopping)
        return FB_ECANCELED;
    const char *slash = strstr(ev->conv, "/$");
    const char *root = slash ? slash + 1 : "";
    const char *rest = "";
    const char *cmd =
        ev->kind == FB_IN_MESSAGE && ev->text && *root ? command_of(ev->text, &rest) : "ignore";
    if (ev->sender_gone && strcmp(cmd, "msg") != 0 && strcmp(cmd, "ignore") != 0) {
        /* only the room's members act on tickets: the homeserver refuses non-members' events,
         * and one who left since (a backlog after a restart) is no longer one */
        FB_INFO(ROUTER, "[esc] !%s from someone no longer in the advisors' room: ignored", cmd);
        cmd = "ignore";
    }
    char name[MAX_NAME];
    advisor_label(ev->sender, ev->sender_name, name);
    char *thread = fb_asprintf("%s:%s", adapter, ev->conv);
    char *evs = fb_asprintf(FB_KEY_EVENT "%s", ev->event_id);
    char *legacy = fb_store_conv_key(e->store, thread, evs);
    char *mark = fb_store_conv_key(e->store, thread, FB_KEY_MARKS);
    fb_free(evs);
    if (!mark || !legacy) {
        fb_free(mark);
        fb_free(legacy);
        fb_free(thread);
        return FB_EINVAL;
    }
    char now[24], ttl[24], txn[40];
    snprintf(now, sizeof(now), "%lld", (long long)now_ms(e));
    snprintf(ttl, sizeof(ttl), "%llu",
             (unsigned long long)e->cfg->router.dedupe_retention_hours * 3600000ULL);
    uint64_t h = fb_event_hash(thread, ev->event_id);
    snprintf(txn, sizeof(txn), "esc-%016llx", (unsigned long long)h);
    char *hb = fb_asprintf("esc-hb:%s", ev->event_id);
    struct inb *ib = fb_calloc(1, sizeof(*ib));
    ib->e = e;
    ib->cb = cb;
    ib->arg = arg;
    ib->hb_id = hb;
    const char *args[] = {mark,
                          e->k_roots,
                          e->k_pending,
                          e->k_open,
                          e->k_response,
                          legacy,
                          root,
                          cmd,
                          name,
                          *root ? rest : "",
                          now,
                          fb_store_prefix(e->store),
                          thread,
                          txn,
                          ttl,
                          ev->sender ? ev->sender : "",
                          hb,
                          ev->event_id};
    int rc = fb_store_eval(e->store, &e->s_in, FB_REDIS_RETRY, 6, 12, args, NULL, on_in, ib);
    fb_free(mark);
    fb_free(legacy);
    fb_free(thread);
    if (rc) {
        fb_free(ib->hb_id);
        fb_free(ib);
        return rc == FB_ECANCELED ? FB_ECANCELED : FB_EAGAIN;
    }
    e->inflight++;
    return 0;
}

/* ---- the watchdog ------------------------------------------------------------------------ */

static void on_watch(int status, const redisReply *rep, void *arg)
{
    fb_esc_t *e = arg;
    e->inflight--;
    e->watching = false;
    if (e->stopping) {
        if (e->hooks.idle)
            e->hooks.idle(e->hooks.arg); /* last: it may end the router */
        return;
    }
    if (status || !fb_redis_reply_array(rep, 2, 2, NULL))
        return;
    const redisReply *kick = rep->element[0], *hb = rep->element[1];
    for (size_t i = 0; kick->type == REDIS_REPLY_ARRAY && i < kick->elements; i++)
        if (kick->element[i]->type == REDIS_REPLY_STRING)
            e->hooks.kick(e->hooks.arg, kick->element[i]->str);
    for (size_t i = 0; hb->type == REDIS_REPLY_ARRAY && i + 1 < hb->elements; i += 2)
        (void)e->hooks.handback(e->hooks.arg, hb->element[i]->str, hb->element[i + 1]->str,
                                hb_queued, NULL);
}

static void watch(fb_esc_t *e)
{
    if (e->watching || e->stopping)
        return;
    int64_t ms = now_ms(e);
    const fb_reminders_opts_t *ro = &e->cfg->reminders;
    fb_hours_t hours = {.start_hour = ro->start_hour, .end_hour = ro->end_hour};
    bool open = !e->cfg->escalation.working_hours_only || fb_hours_open(&hours, ms / 1000);
    char nowb[24], wd[24], batch[16];
    snprintf(nowb, sizeof(nowb), "%lld", (long long)ms);
    snprintf(wd, sizeof(wd), "%u", e->cfg->escalation.watchdog_ms);
    snprintf(batch, sizeof(batch), "%d", WATCH_BATCH);
    const char *args[] = {e->k_open, e->k_pending,    nowb, fb_store_prefix(e->store), wd,
                          batch,     open ? "1" : "0"};
    if (fb_store_eval(e->store, &e->s_watch, 0, 2, 5, args, NULL, on_watch, e) == 0) {
        e->watching = true;
        e->inflight++;
    }
}

static void on_timer(uv_timer_t *t)
{
    watch(t->data);
}

void fb__esc_set_clock(fb_esc_t *e, int64_t clock_ms)
{
    e->clock_ms = clock_ms;
}

void fb__esc_watch(fb_esc_t *e)
{
    watch(e);
}

void fb_esc_start(fb_esc_t *e)
{
    if (!e)
        return;
    if (e->timer_init)
        return;
    uv_timer_init(e->loop, &e->timer);
    e->timer.data = e;
    e->timer_init = true;
    uint64_t every = e->cfg->escalation.watchdog_ms < WATCH_EVERY_MS
                         ? e->cfg->escalation.watchdog_ms
                         : WATCH_EVERY_MS;
    uv_timer_start(&e->timer, on_timer, every, every);
}

static void on_closed(uv_handle_t *h)
{
    fb_esc_t *e = h->data;
    e->timer_init = false;
    if (e->stop_done)
        e->stop_done(e->stop_arg);
}

void fb_esc_stop(fb_esc_t *e, void (*done)(void *arg), void *arg)
{
    e->stopping = true;
    e->stop_done = done;
    e->stop_arg = arg;
    if (!e->timer_init) { /* never started: a handle closed now still calls done later, as the
                             feature contract asks (never inside this call) */
        uv_timer_init(e->loop, &e->timer);
        e->timer.data = e;
        e->timer_init = true;
    }
    if (!uv_is_closing((uv_handle_t *)&e->timer))
        uv_close((uv_handle_t *)&e->timer, on_closed);
}

/* ---- the feature (core/feature.h) -------------------------------------------------------- */

static void feature_attach(void *self, const fb_feature_host_t *host)
{
    fb_esc_attach(self, host);
}

static void feature_commit_ops(void *self, const fb_feature_step_t *st, json_t *ops, size_t *says)
{
    fb_esc_commit_ops(self, st, ops, says);
}

static int feature_inbound(void *self, const char *adapter, const fb_inbound_t *ev,
                           fb_inbound_cb cb, void *arg)
{
    if (!fb_esc_owns(self, adapter, ev->conv))
        return FB_DECLINED;
    return fb_esc_inbound(self, adapter, ev, cb, arg);
}

static void feature_start(void *self)
{
    fb_esc_start(self);
}

static void feature_stop(void *self, void (*done)(void *arg), void *arg)
{
    fb_esc_stop(self, done, arg);
}

static size_t feature_inflight(const void *self)
{
    return fb_esc_inflight(self);
}

static void feature_destroy(void *self)
{
    fb_esc_destroy(self);
}

static int feature_thread_root(void *self, const fb_core_t *core, const json_t *entry,
                               fb_thread_root_cb cb, void *arg)
{
    (void)self;
    return fb_esc_thread_root(core, entry, cb, arg);
}

static int feature_sent(void *self, const fb_core_t *core, const json_t *entry, const char *where,
                        const char *msg_id, fb_sent_cb cb, void *arg)
{
    (void)self;
    return fb_esc_sent(core, entry, where, msg_id, cb, arg);
}

/* Escalation disabled: only the adapters' thread_root and sent, for the entries queued while it
 * was enabled (their relays and records still go where they name). */
const fb_feature_ops_t fb_esc_delivery_feature = {
    .name = "escalation-delivery",
    .thread_root = feature_thread_root,
    .sent = feature_sent,
};

const fb_feature_ops_t fb_esc_feature = {
    .name = "escalation",
    .lua_pre = FB_ESC_COMMIT_PRE_LUA,
    .lua_post = FB_ESC_COMMIT_LUA,
    .attach = feature_attach,
    .commit_ops = feature_commit_ops,
    .inbound = feature_inbound,
    .start = feature_start,
    .stop = feature_stop,
    .inflight = feature_inflight,
    .destroy = feature_destroy,
    .thread_root = feature_thread_root,
    .sent = feature_sent,
};
/* ---- the advisors' channel, as the adapter that hosts it reaches it ----------------------- */
/* fb_core_t.thread_root and fb_core_t.sent (include/frichebot/adapter.h): the adapter hands the
 * entries' escalation fields back here instead of touching the tickets' keys itself. */

/*
 * An entry's "record" {key, field, rkey, rval, list} (docs/internals/ESCALATION.md), run once the
 * platform accepted the message and before the send is reported done: HSET key field <msg id>,
 * RPUSH list "WHERE <msg id>", then HSET rkey <msg id> rval (each part optional but `key`). Two
 * steps, each in one Cluster slot (docs/internals/REDIS.md, "The audit"): record_src on the
 * ticket's conversation ({c:U}: `key` and `list`), then, for a root, root_src on the roots index
 * ({g}: `rkey`). In that order, so that the index never names a root that its ticket does not
 * know and that the ticket's `esc:sent` (what a forget withdraws and unindexes) does not list:
 *   - a crash (or a failed call) between the two leaves the ticket with its root and the index
 *     without it; the send is not reported done, so the entry is sent again with the same txn id,
 *     which the platform de-duplicates into the same message id, and both steps run again
 *     (idempotent: record_src does not list the same root twice, root_src writes the same field
 *     with the same value). Until then an advisor's reply in that thread finds no root and is
 *     dropped (IN: not a ticket's thread), as one before the record was at all: the window is
 *     the resend's, a moment after the restart;
 *   - the other order would index a root whose ticket may be gone (forgotten while the
 *     announcement was on its way) or never learn it (a crash): the index would keep a
 *     conversation key after its forget, with nothing to remove it.
 * A forget that runs between the two steps finds the root in `esc:sent` (it withdraws the
 * message) but not yet in the index, which root_src then fills: so after root_src the ticket is
 * read again (thread_root_src) and, when it no longer names this root, unroot_src takes the
 * entry out of the index (only if it still names this conversation). The same happens when
 * record_src finds the ticket gone: a previous attempt may have indexed the root before a crash.
 *
 * record_src. KEYS: key, list (`key` again when absent). ARGV: field, msg id, list item (''
 * when absent). When `key` no longer exists (its owner asked to forget), nothing is written and
 * 0 is returned: the message is withdrawn at once.
 */
static const char record_src[] = "#!lua\n"
                                 "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
                                 "if ARGV[1] ~= '' then\n"
                                 /* a replay of this record (the root step failed): listed once */
                                 "  if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then "
                                 "return 1 end\n"
                                 "  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"
                                 "end\n"
                                 "if ARGV[3] ~= '' then\n"
                                 "  redis.call('RPUSH', KEYS[2], ARGV[3])\n"
                                 "  redis.call('LTRIM', KEYS[2], -1000, -1)\n"
                                 "  local ttl = redis.call('PTTL', KEYS[1])\n"
                                 "  if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end\n"
                                 "end\n"
                                 "return 1\n";

/* root_src. KEYS: the roots index. ARGV: root msg id, the user's conversation. A root, once
 * written, never changes owner (message ids are unique): 1 written or already there, 0 when the
 * field names another conversation (never expected; nothing is changed then). */
static const char root_src[] = "#!lua\n"
                               "local cur = redis.call('HGET', KEYS[1], ARGV[1])\n"
                               "if cur and cur ~= ARGV[2] then return 0 end\n"
                               "if not cur then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end\n"
                               "return 1\n";

/* unroot_src. KEYS: the roots index. ARGV: root msg id, the user's conversation. Takes the root
 * out of the index when it names that conversation. */
static const char unroot_src[] = "#!lua\n"
                                 "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then\n"
                                 "  redis.call('HDEL', KEYS[1], ARGV[1])\n"
                                 "end\n"
                                 "return 1\n";

/* The root of a "ROOM/~TICKET" thread: KEYS[1] the hash, ARGV[1] the field. 0 when the hash is
 * gone (its ticket was forgotten or expired: the relay has nowhere to go), else the value or "". */
static const char thread_root_src[] = "#!lua flags=no-writes\n"
                                      "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
                                      "return redis.call('HGET', KEYS[1], ARGV[1]) or ''\n";

static fb_store_script_t s_record, s_root, s_unroot, s_thread_root;

/* fb__esc_set_record_hook(): called between record_src and root_src (tests only). */
static void (*record_hook)(void *arg);
static void *record_hook_arg;

void fb__esc_set_record_hook(void (*fn)(void *arg), void *arg)
{
    record_hook = fn;
    record_hook_arg = arg;
}

struct adv_call {
    fb_thread_root_cb root_cb;
    void *arg;
};

static void on_thread_root(int status, const redisReply *rep, void *arg)
{
    struct adv_call *c = arg;
    if (!status && rep->type == REDIS_REPLY_INTEGER)
        c->root_cb(FB_ENOENT, NULL, c->arg);
    else if (!status && rep->type == REDIS_REPLY_STRING && rep->len > 0)
        c->root_cb(0, rep->str, c->arg);
    else
        c->root_cb(status ? status : FB_EAGAIN, NULL, c->arg);
    fb_free(c);
}

int fb_esc_thread_root(const fb_core_t *core, const json_t *entry, fb_thread_root_cb cb, void *arg)
{
    const json_t *th = json_object_get(entry, "thread");
    const char *key = json_string_value(json_object_get(th, "key"));
    const char *field = json_string_value(json_object_get(th, "field"));
    if (!key || !field)
        return FB_DECLINED; /* not a thread message of ours */
    if (!core || !core->store || !cb)
        return FB_EINVAL;
    if (!s_thread_root.src)
        fb_store_script_init(&s_thread_root, thread_root_src);
    struct adv_call *c = fb_calloc(1, sizeof(*c));
    c->root_cb = cb;
    c->arg = arg;
    const char *args[] = {key, field};
    int rc = fb_store_eval(core->store, &s_thread_root, FB_REDIS_RETRY, 1, 1, args, NULL,
                           on_thread_root, c);
    if (rc) {
        fb_free(c);
        return rc == FB_ECLOSING ? FB_ECANCELED : FB_EAGAIN;
    }
    return 0;
}

/* One core->sent() call on an entry that records a root: the steps after record_src. */
struct rec_call {
    const fb_core_t *core;
    fb_sent_cb sent_cb;
    void *arg;
    bool withdraw; /* what the call reports once the index is clean */
    char *key, *field, *rkey, *rval, *msg_id;
};

static void rec_done(struct rec_call *c, int status)
{
    c->sent_cb(status ? FB_EAGAIN : 0, !status && c->withdraw, c->arg);
    fb_free(c->key);
    fb_free(c->field);
    fb_free(c->rkey);
    fb_free(c->rval);
    fb_free(c->msg_id);
    fb_free(c);
}

/* Runs `sc` on the roots index with the root and the conversation; rc as fb_store_eval(). */
static int rec_index(struct rec_call *c, fb_store_script_t *sc, const char *src,
                     fb_store_eval_cb cb)
{
    if (!sc->src)
        fb_store_script_init(sc, src);
    const char *args[] = {c->rkey, c->msg_id, c->rval};
    return fb_store_eval(c->core->store, sc, FB_REDIS_RETRY, 1, 2, args, NULL, cb, c);
}

static void on_unrooted(int status, const redisReply *rep, void *arg)
{
    (void)rep;
    rec_done(arg, status);
}

/* The ticket read again after root_src: still this root, or the index entry goes. */
static void on_root_checked(int status, const redisReply *rep, void *arg)
{
    struct rec_call *c = arg;
    if (status) {
        rec_done(c, status);
        return;
    }
    if (rep->type == REDIS_REPLY_STRING && strcmp(rep->str, c->msg_id) == 0) {
        rec_done(c, 0);
        return;
    }
    /* forgotten (or another announcement) between record_src and root_src: the forget withdrew
     * the message (it was in esc:sent); the index must not keep it */
    int rc = rec_index(c, &s_unroot, unroot_src, on_unrooted);
    if (rc)
        rec_done(c, rc);
}

static void on_rooted(int status, const redisReply *rep, void *arg)
{
    (void)rep;
    struct rec_call *c = arg;
    if (status) {
        rec_done(c, status);
        return;
    }
    if (!s_thread_root.src)
        fb_store_script_init(&s_thread_root, thread_root_src);
    const char *args[] = {c->key, c->field};
    int rc = fb_store_eval(c->core->store, &s_thread_root, FB_REDIS_RETRY, 1, 1, args, NULL,
                           on_root_checked, c);
    if (rc)
        rec_done(c, rc);
}

static void on_recorded(int status, const redisReply *rep, void *arg)
{
    struct rec_call *c = arg;
    if (status) {
        rec_done(c, status);
        return;
    }
    c->withdraw = rep->type == REDIS_REPLY_INTEGER && rep->integer == 0;
    if (!c->rkey) {
        rec_done(c, 0);
        return;
    }
    if (record_hook)
        record_hook(record_hook_arg);
    /* the ticket is gone: unindex what an earlier attempt may have indexed; else index it */
    int rc = c->withdraw ? rec_index(c, &s_unroot, unroot_src, on_unrooted)
                         : rec_index(c, &s_root, root_src, on_rooted);
    if (rc)
        rec_done(c, rc);
}

int fb_esc_sent(const fb_core_t *core, const json_t *entry, const char *where, const char *msg_id,
                fb_sent_cb cb, void *arg)
{
    const json_t *rec = json_object_get(entry, "record");
    const char *k = json_string_value(json_object_get(rec, "key"));
    if (!k)
        return FB_DECLINED;
    if (!core || !core->store || !where || !msg_id || !cb)
        return FB_EINVAL;
    const char *f = json_string_value(json_object_get(rec, "field"));
    const char *rk = json_string_value(json_object_get(rec, "rkey"));
    const char *rv = json_string_value(json_object_get(rec, "rval"));
    const char *lk = json_string_value(json_object_get(rec, "list"));
    bool index = rk && rv && f; /* a root: the ticket's field and the index */
    char *item = lk ? fb_asprintf("%s %s", where, msg_id) : NULL;
    if (!s_record.src)
        fb_store_script_init(&s_record, record_src);
    struct rec_call *c = fb_calloc(1, sizeof(*c));
    c->core = core;
    c->sent_cb = cb;
    c->arg = arg;
    if (index) {
        c->key = fb_strdup(k);
        c->field = fb_strdup(f);
        c->rkey = fb_strdup(rk);
        c->rval = fb_strdup(rv);
        c->msg_id = fb_strdup(msg_id);
    }
    const char *args[] = {k, lk ? lk : k, f ? f : "", msg_id, item ? item : ""};
    int rc =
        fb_store_eval(core->store, &s_record, FB_REDIS_RETRY, 2, 3, args, NULL, on_recorded, c);
    fb_free(item);
    if (rc) {
        fb_free(c->key);
        fb_free(c->field);
        fb_free(c->rkey);
        fb_free(c->rval);
        fb_free(c->msg_id);
        fb_free(c);
        return rc == FB_ECLOSING ? FB_ECANCELED : FB_EAGAIN;
    }
    return 0;
}

const char *fb_esc_advisors_adapter(void)
{
    for (size_t i = 0; fb_builtin_adapters[i]; i++)
        if (fb_builtin_adapters[i]->caps & FB_ADAPTER_CAP_ADVISORS)
            return fb_builtin_adapters[i]->name;
    return NULL;
}
