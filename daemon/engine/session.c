/* SPDX-License-Identifier: MIT */
/*
 * session.c - a conversation's session: the compact JSON the router stores (under 1 KiB), parsed
 * into struct fb__sess for one step and written back after it. Reading copies nothing that the
 * step does not change: the answers object is shared with the input until a change is made, and
 * the strings of state ids, tags, the dialog id and hash are the dialog's own JSON strings.
 *
 * The JSON is validated strictly (a wrong type anywhere is FB_EINVAL: the router must never
 * feed the engine something it did not write), but leniently about content from older dialog
 * versions: unknown tags, paths and roadmap items are dropped, a vanished state goes through
 * `migrations` or back to `debut`. Fields holding their default value are not written. Answers
 * are kept as JSON values; the new session's answers object is a new object whose values may be
 * shared (reference-counted) with the input session's: both must be treated as read-only.
 *
 * Besides the answers, the only user text a session keeps is the user's last few messages
 * (`l`), cleaned and cut here, for the summary an advisor gets with an escalation.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/utf8.h"
#include "engine/effects.h"
#include "engine/geo.h"
#include "engine/internal.h"
#include "engine/kb.h"
#include "engine/text.h"
#include "frichebot/alloc.h"
#include "frichebot/err.h"

#define SESSION_FORMAT FB__SESSION_FORMAT

/* jansson's iteration and copy functions take non-const pointers though they do not modify
 * their argument; this is the one place the const is dropped. */
static json_t *unconst(const json_t *j)
{
    return (json_t *)(uintptr_t)j;
}

int32_t fb__day_of(int64_t t)
{
    int64_t q = t / 86400;
    if (t % 86400 < 0)
        q--;
    return (int32_t)q;
}

/* Howard Hinnant's civil_from_days / days_from_civil (proleptic Gregorian calendar). */
void fb__day_ymd(int32_t day, int *y, int *m, int *dd)
{
    int64_t z = (int64_t)day + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t mm = mp < 10 ? mp + 3 : mp - 9;
    *y = (int)(yoe + era * 400 + (mm <= 2));
    *m = (int)mm;
    *dd = (int)(doy - (153 * mp + 2) / 5 + 1);
}

void fb__session_init(const fb_dialog_t *d, struct fb__sess *s)
{
    memset(s, 0, sizeof(*s));
    s->d = d;
    s->state = d->start;
    s->answers = json_object();
    s->tags = fb_calloc(d->n_tags + 1, 1);
    s->pending_step = -1;
    s->back_to = -1;
}

void fb__session_free(struct fb__sess *s)
{
    json_decref(s->answers);
    fb_free(s->tags);
    fb_free(s->road);
    fb_free(s->status);
    fb_free(s->day);
    json_decref(s->last_messages);
    memset(s, 0, sizeof(*s));
    s->pending_step = -1;
    s->back_to = -1;
}

/* The index of `v`, a string of the session, among `d`'s strings of `kind` when it is one of
 * them (the same JSON string: read with the dialog's strings, or written by the engine), found by
 * its pointer without reading its bytes; else -1, and the caller looks it up by name. */
static int by_ptr(const fb_dialog_t *d, const json_t *v, enum fb__ptr_kind kind)
{
    int x = fb__ptrmap_get(&d->ptr_map, v);
    return x >= 0 && (x & 3) == (int)kind ? x >> 2 : -1;
}

/* The state index of `id` (a JSON string) in `d`, through `migrations` when the state is gone;
 * -1 if neither. */
static int find_state(const fb_dialog_t *d, const json_t *id, bool migrate)
{
    int i = by_ptr(d, id, FB__PTR_STATE);
    if (i < 0)
        i = fb__strmap_get(&d->state_map, json_string_value(id));
    if (i < 0 && migrate)
        i = fb__strmap_get(&d->migration_map, json_string_value(id));
    return i;
}

/* The index of tag `v` (a JSON string) in `d`, or -1. */
static int find_tag(const fb_dialog_t *d, const json_t *v)
{
    int i = by_ptr(d, v, FB__PTR_TAG);
    return i >= 0 ? i : fb__strmap_get(&d->tag_map, json_string_value(v));
}

/* The index of catalogue item ref `v` (a JSON string) in `d`, or -1. */
static int find_item(const fb_dialog_t *d, const json_t *v)
{
    int i = by_ptr(d, v, FB__PTR_ITEM);
    return i >= 0 ? i : fb__strmap_get(&d->item_map, json_string_value(v));
}

/* The index of status `v` (a JSON string: the dialog's own one, or any equal string), or -1. */
static int find_status(const fb_dialog_t *d, const json_t *v)
{
    for (int i = 0; i < FB__ST_COUNT; i++)
        if (v == d->status_name_json[i])
            return i;
    return fb__status_index(json_string_value(v));
}

/* The dialog version whose hash is `jh` (a JSON string): `d` itself or one of env->versions;
 * NULL if none. */
static const fb_dialog_t *find_version(const fb_dialog_t *d, const fb_engine_env_t *env,
                                       const json_t *jh)
{
    const char *h = json_string_value(jh);
    if (jh == d->hash_json || strcmp(d->hash, h) == 0)
        return d;
    for (size_t i = 0; env && env->versions && i < env->n_versions; i++) {
        const fb_dialog_t *v = env->versions[i];
        if (v && strcmp(v->hash, h) == 0 && v->id && d->id && strcmp(v->id, d->id) == 0)
            return v;
    }
    return NULL;
}

/* Reads an optional boolean member `v` (NULL: absent -> false). Returns false for a wrong type. */
static bool opt_bool(const json_t *v, bool *out)
{
    *out = false;
    if (!v)
        return true;
    if (!json_is_boolean(v))
        return false;
    *out = json_is_true(v);
    return true;
}

/* fb_json_intern_fn over the dialog's strings. */
static json_t *intern(void *arg, const char *s, size_t n)
{
    const fb_dialog_t *d = arg;
    if (n > d->intern_max_len) /* a user's text: not hashed for nothing */
        return NULL;
    int i = fb__strmap_getn(&d->intern_map, s, n);
    return i >= 0 ? d->intern_json[i] : NULL;
}

json_t *fb_engine_session_loadb(const fb_dialog_t *d, const char *data, size_t len)
{
    return fb_json_loadb_interned(data, len, d ? intern : NULL, (void *)(uintptr_t)d);
}

bool fb_engine_session_escalated(const json_t *session)
{
    return json_is_true(json_object_get(session, "x"));
}

const char *fb_engine_session_insee(const json_t *session)
{
    const json_t *a = json_object_get(session, "a");
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)(uintptr_t)a, k, v)
    {
        const char *insee = json_string_value(json_object_get(v, "insee"));
        if (insee && insee[0])
            return insee;
    }
    return NULL;
}

/* Reads an optional non-negative integer member `v` below `max`: absent -> 0. */
static bool opt_uint(const json_t *v, unsigned max, unsigned *out)
{
    *out = 0;
    if (!v)
        return true;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max)
        return false;
    *out = (unsigned)json_integer_value(v);
    return true;
}

/* True for a commune search qualifier `q` as fb__sess.qual holds it: "d" or "r" and a code of 1
 * to 3 characters, or "p" and five digits. */
static bool qual_valid(const json_t *q)
{
    if (!json_is_string(q))
        return false;
    const char *v = json_string_value(q);
    size_t len = json_string_length(q);
    if (len < 2 || len >= sizeof(((struct fb__sess *)0)->qual) || strlen(v) != len)
        return false;
    if (v[0] == 'p') {
        if (len != 6)
            return false;
        for (size_t i = 1; i < len; i++)
            if (v[i] < '0' || v[i] > '9')
                return false;
        return true;
    }
    if ((v[0] != 'd' && v[0] != 'r') || len > 4)
        return false;
    for (size_t i = 1; i < len; i++)
        if (!((v[i] >= '0' && v[i] <= '9') || v[i] == 'A' || v[i] == 'B'))
            return false;
    return true;
}

/* Reads an optional array of strings `v`: absent -> NULL (valid). Returns false for a wrong type.
 */
static bool opt_strings(const json_t *v, const json_t **out)
{
    *out = NULL;
    if (!v)
        return true;
    if (!json_is_array(v))
        return false;
    for (size_t i = 0; i < json_array_size(v); i++)
        if (!json_is_string(json_array_get(v, i)))
            return false;
    *out = v;
    return true;
}

/* True for the bidirectional formatting characters (U+202A..U+202E, U+2066..U+2069): a kept
 * message drops them, so that it cannot reorder the summary's text around it. */
static bool is_bidi_control(uint32_t cp)
{
    return (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
}

/* True for what a kept message turns into one space: ASCII white space, every C0 or C1 control
 * character, and the line and paragraph separators (a kept message is one line). */
static bool is_space_or_control(uint32_t cp)
{
    return cp <= 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0) || cp == 0x2028 || cp == 0x2029;
}

/*
 * Writes the kept form of the user's `text` into `out` (FB__MAX_LAST_MESSAGE_BYTES + 1 bytes,
 * NUL-terminated) and returns its length, 0 when nothing is left: see fb__session_remember().
 * Reads no further into `text` than the kept form needs.
 */
static size_t clip_message(const char *text, char *out)
{
    enum { MAX = FB__MAX_LAST_MESSAGE_BYTES };
    static const char ellipsis[] = "…";
    const unsigned char *p = (const unsigned char *)text;
    size_t left = strlen(text), n = 0;
    bool space = false, cut = false;
    while (left > 0) {
        uint32_t cp;
        size_t k = fb_utf8_decode(p, left, &cp);
        const char *bytes = (const char *)p;
        p += k;
        left -= k;
        if (cp == FB_UTF8_BAD) {
            bytes = "?";
            k = 1;
        } else if (is_space_or_control(cp)) {
            space = n > 0; /* leading white space is dropped, inner runs become one space */
            continue;
        } else if (is_bidi_control(cp)) {
            continue;
        }
        if (n + (space ? 1 : 0) + k > MAX) {
            cut = true;
            break;
        }
        if (space)
            out[n++] = ' ';
        space = false;
        memcpy(out + n, bytes, k);
        n += k;
    }
    if (cut) {
        /* room for the ellipsis, on a character boundary (out holds valid UTF-8) */
        size_t keep = MAX - (sizeof(ellipsis) - 1);
        if (n > keep) {
            n = keep;
            while (n > 0 && ((unsigned char)out[n] & 0xC0) == 0x80)
                n--;
        }
        while (n > 0 && out[n - 1] == ' ')
            n--;
        memcpy(out + n, ellipsis, sizeof(ellipsis) - 1);
        n += sizeof(ellipsis) - 1;
    }
    out[n] = '\0';
    return n;
}

void fb__session_remember(struct fb__sess *s, const char *text)
{
    char kept[FB__MAX_LAST_MESSAGE_BYTES + 1];
    size_t n = clip_message(text, kept);
    if (n == 0)
        return;
    json_t *str = json_stringn(kept, n);
    FB_ASSERT(str != NULL); /* valid UTF-8 by construction; only allocation fails, and aborts */
    size_t have = s->last_messages ? json_array_size(s->last_messages) : 0;
    size_t from = have >= FB__MAX_LAST_MESSAGES ? have - FB__MAX_LAST_MESSAGES + 1 : 0;
    json_t *next = json_array();
    for (size_t i = from; i < have; i++)
        (void)json_array_append(next, json_array_get(s->last_messages, i));
    (void)json_array_append_new(next, str);
    json_decref(s->last_messages); /* possibly shared with the input session: replaced, not
                                    * modified */
    s->last_messages = next;
}

/* True when `l` is a valid `l` member: at most FB__MAX_LAST_MESSAGES strings of 1 to
 * FB__MAX_LAST_MESSAGE_BYTES bytes without control characters, as fb__session_remember()
 * writes them. */
static bool last_messages_valid(const json_t *l)
{
    if (!json_is_array(l) || json_array_size(l) > FB__MAX_LAST_MESSAGES)
        return false;
    for (size_t i = 0; i < json_array_size(l); i++) {
        const json_t *m = json_array_get(l, i);
        size_t len = json_string_length(m);
        if (!json_is_string(m) || len == 0 || len > FB__MAX_LAST_MESSAGE_BYTES)
            return false;
        const unsigned char *b = (const unsigned char *)json_string_value(m);
        for (size_t k = 0; k < len; k++)
            if (b[k] < 0x20 || b[k] == 0x7F)
                return false;
    }
    return true;
}

/* A roadmap item and the day of its last change, sorted together by item index. */
struct road_day {
    int item;
    int32_t day;
};

static int cmp_road_day(const void *a, const void *b)
{
    int x = ((const struct road_day *)a)->item, y = ((const struct road_day *)b)->item;
    return (x > y) - (x < y);
}

/* The knowledge-base answers offered `i` (their ids) into s->kb_offer, when this version's base
 * has every one; else (another version) nothing is pending. */
static void parse_offer(const fb_dialog_t *d, struct fb__sess *s, const json_t *offer)
{
    for (size_t i = 0; i < json_array_size(offer); i++) {
        int k = fb_dialog_kb_index(d, json_string_value(json_array_get(offer, i)));
        if (k < 0) {
            s->n_kb_offer = 0;
            return;
        }
        s->kb_offer[s->n_kb_offer++] = k;
    }
}

/* The pending confirmation `y` (strings of option ids joined by ","; "" is the empty set of a
 * choix_multiple) into s->confirm, when the current state is a choice question that has these
 * options; else (another version) nothing is pending. */
static void parse_confirm(const fb_dialog_t *d, struct fb__sess *s, const json_t *conf)
{
    const struct fb__state *st = &d->states[s->state];
    if (st->type != FB__Q_CHOICE && st->type != FB__Q_MULTI)
        return;
    for (size_t i = 0; i < json_array_size(conf); i++) {
        const char *p = json_string_value(json_array_get(conf, i));
        uint64_t mask = 0;
        size_t ids = 0;
        while (*p) {
            const char *e = strchr(p, ',');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            int found = -1;
            for (size_t o = 0; o < st->n_choices && o < 64; o++)
                if (strlen(st->choices[o].id) == len && memcmp(st->choices[o].id, p, len) == 0)
                    found = (int)o;
            if (found < 0) {
                s->n_confirm = 0;
                return;
            }
            mask |= (uint64_t)1 << found;
            ids++;
            p += len + (e ? 1 : 0);
        }
        if (st->type == FB__Q_CHOICE && ids != 1) {
            s->n_confirm = 0;
            return;
        }
        s->confirm[s->n_confirm++] = mask;
    }
}

/*
 * `z` (`jz`, may be NULL): while the final state's `apres_fin` runs, the final state it returns
 * to. Sets *back to it (-1: none); when a newer version lost the question, *state goes back to
 * that end, and when it lost the end, to -1 (replayed from the start). False when the session is
 * not one we wrote (no such final state in its own version).
 */
static bool parse_back_to(const fb_dialog_t *use, const json_t *jz, bool migrate, int *state,
                          int *back)
{
    *back = -1;
    if (!jz)
        return true;
    int b = find_state(use, jz, migrate);
    if (b >= 0 && !use->states[b].final)
        b = -1;
    if (b < 0) {
        *state = -1;
        return migrate;
    }
    if (*state < 0 || use->states[*state].final || use->states[*state].type == FB__Q_NONE)
        *state = b;
    else
        *back = b;
    return true;
}

/* The roadmap's items (`r`), with their days (`j`, parallel to `r`), statuses (`u`) and the step
 * a command waits on (`k`, `g`). */
static void parse_road(const fb_dialog_t *use, struct fb__sess *s, const json_t *road,
                       const json_t *jj, const json_t *ju, const json_t *jk, bool pick)
{
    size_t n = json_array_size(road);
    s->road = fb_calloc(n + 1, sizeof(*s->road));
    s->status = fb_calloc(n + 1, 1);
    s->day = fb_calloc(n + 1, sizeof(*s->day));
    /* `j` runs parallel to `r`: keep each day with its item through the sort */
    struct road_day *rd = fb_calloc(n + 1, sizeof(*rd));
    for (size_t i = 0; i < n; i++) {
        int it = find_item(use, json_array_get(road, i));
        if (it < 0)
            continue;
        const json_t *dj = jj ? json_array_get(jj, i) : NULL;
        rd[s->n_road].item = it;
        rd[s->n_road].day = dj ? (int32_t)json_integer_value(dj) : 0;
        s->n_road++;
    }
    qsort(rd, s->n_road, sizeof(*rd), cmp_road_day);
    for (size_t i = 0; i < s->n_road; i++) {
        s->road[i] = rd[i].item;
        s->day[i] = rd[i].day;
    }
    fb_free(rd);
    int k_item = jk ? find_item(use, jk) : -1; /* item refs are unique: equal refs, equal items */
    for (size_t i = 0; i < s->n_road; i++) {
        const char *ref = use->items[s->road[i]].ref;
        const json_t *st = ju ? json_object_get(ju, ref) : NULL;
        int sv = st ? find_status(use, st) : 0;
        s->status[i] = (unsigned char)(sv > 0 ? sv : 0);
        if (k_item >= 0 && s->road[i] == k_item) {
            s->pending_step = (int)i;
            s->pending_pick = pick;
        }
    }
}

int fb__session_parse(const fb_dialog_t *d, const fb_engine_env_t *env, const json_t *session,
                      struct fb__sess *s)
{
    const json_t *tags, *path, *road, *cand, *conf, *offer;
    unsigned fails, reminders;
    bool escalated, ended, muted, pick, avis, kb_asked, after_asked;
    memset(s, 0, sizeof(*s));
    s->pending_step = -1;
    if (!json_is_object(session))
        return FB_EINVAL;
    /* The members, one-letter keys, in one pass over the object (other keys are ignored). */
    const json_t *m[26] = {NULL};
    json_t *obj = unconst(session);
    for (void *it = json_object_iter(obj); it; it = json_object_iter_next(obj, it)) {
        const char *k = json_object_iter_key(it);
        if (json_object_iter_key_len(it) == 1 && k[0] >= 'a' && k[0] <= 'z')
            m[k[0] - 'a'] = json_object_iter_value(it);
    }
#define MEMBER(c) m[(c) - 'a']
    const json_t *v = MEMBER('v');
    const json_t *jd = MEMBER('d');
    const json_t *jh = MEMBER('h');
    const json_t *js = MEMBER('s');
    const json_t *ja = MEMBER('a');
    const json_t *ju = MEMBER('u');
    const json_t *jk = MEMBER('k');
    const json_t *jj = MEMBER('j');
    const json_t *jl = MEMBER('l');
    const json_t *jq = MEMBER('q');
    const json_t *jz = MEMBER('z');
    if (!json_is_integer(v) || json_integer_value(v) != SESSION_FORMAT || !json_is_string(jd) ||
        !d->id || (jd != d->id_json && strcmp(json_string_value(jd), d->id) != 0) ||
        !json_is_string(jh) || !json_is_string(js) || (ja && !json_is_object(ja)) ||
        (ju && !json_is_object(ju)) || (jk && !json_is_string(jk)) || (jj && !json_is_array(jj)) ||
        (jl && !last_messages_valid(jl)) || (jq && !qual_valid(jq)) || (jz && !json_is_string(jz)))
        return FB_EINVAL;
    if (!opt_strings(MEMBER('t'), &tags) || !opt_strings(MEMBER('p'), &path) ||
        !opt_strings(MEMBER('r'), &road) || !opt_strings(MEMBER('c'), &cand) ||
        !opt_strings(MEMBER('y'), &conf) || !opt_strings(MEMBER('i'), &offer) ||
        !opt_uint(MEMBER('f'), 1000, &fails) || !opt_uint(MEMBER('n'), 1000, &reminders) ||
        !opt_bool(MEMBER('x'), &escalated) || !opt_bool(MEMBER('e'), &ended) ||
        !opt_bool(MEMBER('m'), &muted) || !opt_bool(MEMBER('g'), &pick) ||
        !opt_bool(MEMBER('o'), &avis) || !opt_bool(MEMBER('w'), &kb_asked) ||
        !opt_bool(MEMBER('b'), &after_asked))
        return FB_EINVAL;
#undef MEMBER

    const fb_dialog_t *use = find_version(d, env, jh);
    bool migrate = use == NULL;
    if (!use)
        use = d;
    int state = find_state(use, js, migrate);
    if (state < 0 && !migrate)
        return FB_EINVAL; /* same version, unknown state: not a session we wrote */
    int back;
    if (!parse_back_to(use, jz, migrate, &state, &back))
        return FB_EINVAL;
    if (ju) {
        const char *key;
        const json_t *val;
        json_t *mu = unconst(ju);
        json_object_foreach(mu, key, val) if (!json_is_string(val)) return FB_EINVAL;
    }
    for (size_t i = 0; jj && i < json_array_size(jj); i++) {
        const json_t *day = json_array_get(jj, i);
        if (!json_is_integer(day) || json_integer_value(day) < 0 ||
            json_integer_value(day) > FB__MAX_DAY)
            return FB_EINVAL;
    }
    for (size_t i = 0; cand && i < json_array_size(cand); i++)
        if (i >= FB__MAX_CANDIDATES ||
            json_string_length(json_array_get(cand, i)) >= sizeof(s->cand[0]))
            return FB_EINVAL;

    s->d = use;
    s->answers = ja ? json_incref(unconst(ja)) : json_object();
    s->answers_shared = ja != NULL;
    s->tags = fb_calloc(use->n_tags + 1, 1);
    s->fails = fails;
    s->reminders = reminders;
    s->escalated = escalated;
    s->muted = muted;
    s->avis_given = avis;
    s->kb_asked = kb_asked;
    s->after_asked = after_asked;
    s->last_messages = jl ? json_incref(unconst(jl)) : NULL;
    if (state < 0) {
        state = use->start;
        s->moved = true;
    } else if (use->states[state].type == FB__Q_NONE && !use->states[state].final) {
        s->moved = true; /* a migration that points at a message: replay from the start */
        state = use->start;
    }
    s->state = state;
    s->back_to = s->moved ? -1 : back;
    s->ended = (use->states[state].final || s->back_to >= 0) && !s->moved;
    (void)ended; /* derived from the state; written for the router's benefit */

    for (size_t i = 0; tags && i < json_array_size(tags); i++) {
        int t = find_tag(use, json_array_get(tags, i));
        if (t >= 0)
            s->tags[t] = 1;
    }
    for (size_t i = 0; !s->moved && path && i < json_array_size(path); i++) {
        int p = find_state(use, json_array_get(path, i), migrate);
        if (p >= 0 && use->states[p].type != FB__Q_NONE && s->n_path < FB__MAX_PATH)
            s->path[s->n_path++] = p;
    }
    if (s->ended && road)
        parse_road(use, s, road, jj, ju, jk, pick);
    if (!s->moved && !s->ended && use->states[state].type == FB__Q_COMMUNE) {
        for (size_t i = 0; cand && i < json_array_size(cand); i++) {
            const json_t *c = json_array_get(cand, i);
            memcpy(s->cand[s->n_cand], json_string_value(c), json_string_length(c) + 1);
            s->n_cand++;
        }
        if (jq)
            memcpy(s->qual, json_string_value(jq), json_string_length(jq) + 1);
    }
    if ((conf && json_array_size(conf) > FB_MATCH_MAX_CANDIDATES) ||
        (offer && json_array_size(offer) > FB__KB_OFFERS))
        return FB_EINVAL;
    s->in_tags = tags;
    s->in_path = path;
    s->in_road = road;
    s->in_status = ju;
    s->in_days = jj;
    if (!s->moved && (!s->ended || s->back_to >= 0) && conf)
        parse_confirm(use, s, conf);
    if (!s->moved && offer)
        parse_offer(use, s, offer);
    if (s->moved) {
        s->fails = 0;
        s->n_cand = 0;
        s->n_confirm = 0;
    }
    return 0;
}

void fb__session_own_answers(struct fb__sess *s)
{
    if (!s->answers_shared)
        return;
    json_t *copy = json_copy(s->answers);
    FB_ASSERT(copy != NULL); /* only allocation can fail, and it aborts */
    json_decref(s->answers);
    s->answers = copy;
    s->answers_shared = false;
}

/* `t`: the tags set, in the dialog's order (new reference), or NULL for none. The input's array
 * when it holds the same strings (the dialog's, compared by pointer). */
static json_t *tags_json(const struct fb__sess *s)
{
    const fb_dialog_t *d = s->d;
    size_t in_n = json_array_size(s->in_tags), n = 0;
    bool same = true;
    for (size_t i = 0; i < d->n_tags; i++)
        if (s->tags[i]) {
            same = same && n < in_n && json_array_get(s->in_tags, n) == d->tag_json[i];
            n++;
        }
    if (n == 0)
        return NULL;
    if (same && n == in_n)
        return json_incref(unconst(s->in_tags));
    json_t *t = json_array();
    for (size_t i = 0; i < d->n_tags; i++)
        if (s->tags[i])
            (void)json_array_append(t, d->tag_json[i]);
    return t;
}

/* The array of `table[idx[i]]` for i < n (new reference): the input's array `in` when it holds
 * those very values (`p`: the path's state ids, `r`: the roadmap's item refs). */
static json_t *refs_json(const json_t *in, const int *idx, size_t n, json_t *const *table)
{
    bool same = json_array_size(in) == n;
    for (size_t i = 0; same && i < n; i++)
        same = json_array_get(in, i) == table[idx[i]];
    if (same)
        return json_incref(unconst(in));
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        (void)json_array_append(a, table[idx[i]]);
    return a;
}

/* `u`: the statuses other than a_faire by item ref, in roadmap order (new reference), or NULL for
 * none; the input's object when it holds the same members in the same order. */
static json_t *status_json(const struct fb__sess *s)
{
    const fb_dialog_t *d = s->d;
    json_t *in = unconst(s->in_status);
    void *it = in ? json_object_iter(in) : NULL;
    bool same = true;
    size_t n = 0;
    for (size_t i = 0; i < s->n_road; i++) {
        if (s->status[i] == FB__ST_A_FAIRE)
            continue;
        n++;
        if (!same)
            continue;
        same = it && json_object_iter_value(it) == d->status_name_json[s->status[i]] &&
               strcmp(json_object_iter_key(it), d->items[s->road[i]].ref) == 0;
        it = it ? json_object_iter_next(in, it) : NULL;
    }
    if (n == 0)
        return NULL;
    if (same && !it)
        return json_incref(in);
    json_t *u = json_object();
    for (size_t i = 0; i < s->n_road; i++)
        if (s->status[i] != FB__ST_A_FAIRE)
            (void)json_object_set(u, d->items[s->road[i]].ref, d->status_name_json[s->status[i]]);
    return u;
}

/* `j`: parallel to `r`, the day of each step's last change, 0 for never (new reference), or NULL
 * when no step changed; the input's array when it holds the same days. */
static json_t *days_json(const struct fb__sess *s)
{
    bool any = false;
    for (size_t i = 0; !any && i < s->n_road; i++)
        any = s->day && s->day[i] > 0;
    if (!any)
        return NULL;
    bool same = json_array_size(s->in_days) == s->n_road;
    for (size_t i = 0; same && i < s->n_road; i++) {
        const json_t *v = json_array_get(s->in_days, i);
        same = json_is_integer(v) && json_integer_value(v) == (s->day[i] > 0 ? s->day[i] : 0);
    }
    if (same)
        return json_incref(unconst(s->in_days));
    json_t *j = json_array();
    for (size_t i = 0; i < s->n_road; i++)
        (void)json_array_append_new(j, json_integer(s->day[i] > 0 ? s->day[i] : 0));
    return j;
}

json_t *fb__session_dump(const struct fb__sess *s)
{
    const fb_dialog_t *d = s->d;
    json_t *o = json_object(); /* one-letter literal keys: no UTF-8 check needed */
    (void)json_object_set_nocheck(o, "v", d->format_json);
    (void)json_object_set_nocheck(o, "d", d->id_json);
    (void)json_object_set_nocheck(o, "h", d->hash_json);
    (void)json_object_set_nocheck(o, "s", d->state_json[s->state]);
    (void)json_object_set_nocheck(o, "a", s->answers);
    json_t *t = tags_json(s);
    if (t)
        (void)json_object_set_new_nocheck(o, "t", t);
    if (s->n_path > 0)
        (void)json_object_set_new_nocheck(
            o, "p", refs_json(s->in_path, s->path, s->n_path, s->d->state_json));
    if (s->fails > 0)
        (void)json_object_set_new_nocheck(o, "f", json_integer(s->fails));
    if (s->n_road > 0) {
        (void)json_object_set_new_nocheck(
            o, "r", refs_json(s->in_road, s->road, s->n_road, s->d->item_ref_json));
        json_t *u = status_json(s);
        if (u)
            (void)json_object_set_new_nocheck(o, "u", u);
        json_t *j = days_json(s);
        if (j)
            (void)json_object_set_new_nocheck(o, "j", j);
    }
    if (s->pending_step >= 0 && (size_t)s->pending_step < s->n_road) {
        (void)json_object_set_nocheck(o, "k", d->item_ref_json[s->road[s->pending_step]]);
        if (s->pending_pick)
            (void)json_object_set_new_nocheck(o, "g", json_true());
    }
    if (s->n_cand > 0) {
        json_t *c = json_array();
        for (size_t i = 0; i < s->n_cand; i++)
            (void)json_array_append_new(c, json_string(s->cand[i]));
        (void)json_object_set_new_nocheck(o, "c", c);
    }
    if (s->n_confirm > 0) {
        const struct fb__state *st = &d->states[s->state];
        json_t *y = json_array();
        for (size_t i = 0; i < s->n_confirm; i++) {
            fb_buf_t ids;
            fb_buf_init(&ids, 4096);
            for (size_t c = 0; c < st->n_choices && c < 64; c++)
                if (s->confirm[i] & ((uint64_t)1 << c))
                    (void)fb_buf_printf(&ids, "%s%s", ids.len ? "," : "", st->choices[c].id);
            (void)json_array_append_new(y, json_string(fb_buf_str(&ids)));
            fb_buf_free(&ids);
        }
        (void)json_object_set_new_nocheck(o, "y", y);
    }
    if (s->qual[0])
        (void)json_object_set_new_nocheck(o, "q", json_string(s->qual));
    if (s->reminders > 0)
        (void)json_object_set_new_nocheck(o, "n", json_integer(s->reminders));
    if (s->escalated)
        (void)json_object_set_new_nocheck(o, "x", json_true());
    if (s->ended)
        (void)json_object_set_new_nocheck(o, "e", json_true());
    if (s->muted)
        (void)json_object_set_new_nocheck(o, "m", json_true());
    if (s->avis_given)
        (void)json_object_set_new_nocheck(o, "o", json_true());
    if (s->back_to >= 0)
        (void)json_object_set_nocheck(o, "z", d->state_json[s->back_to]);
    if (s->after_asked)
        (void)json_object_set_new_nocheck(o, "b", json_true());
    if (s->kb_asked)
        (void)json_object_set_new_nocheck(o, "w", json_true());
    if (s->n_kb_offer > 0) {
        json_t *offer = json_array();
        for (size_t i = 0; i < s->n_kb_offer; i++)
            (void)json_array_append_new(offer, json_string(d->kb_answers[s->kb_offer[i]].id));
        (void)json_object_set_new_nocheck(o, "i", offer);
    }
    if (s->last_messages && json_array_size(s->last_messages) > 0)
        (void)json_object_set_nocheck(o, "l", s->last_messages);
    return o;
}

json_t *fb__commune_compact(const char *insee, const char *name)
{
    return fb_json_strings(2, "insee", insee, "nom", name);
}

json_t *fb__commune_expand(const fb_geo_t *geo, const json_t *v)
{
    const char *code = json_string_value(json_object_get(v, "insee"));
    if (!code)
        return NULL;
    if (geo && !json_object_get(v, "departement")) {
        const fb_commune_t *c = fb_geo_by_insee(geo, code);
        if (c)
            return fb_geo_commune_json(c);
    }
    return json_incref(unconst(v));
}
