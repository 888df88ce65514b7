/* SPDX-License-Identifier: MIT */
/*
 * kb.c - the knowledge base's retrieval (see kb.h): French analysis, synonym groups, the BM25F
 * index built once, the search and its confidence rule.
 */
#include "engine/kb.h"

#include <libstemmer.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/geo.h"
#include "engine/internal.h"
#include "engine/text.h"
#include "frichebot/alloc.h"

#define K1         1.2
#define B          0.75
#define MAX_WORD   48   /* longer words are cut (no French word is that long) */
#define MAX_QUERY  2048 /* a question's folded bytes analysed; the rest is ignored */
#define N_FIELDS   3
#define STACK_DOCS 1024
#define STEM_MIN   4 /* shorter words are kept whole (acronyms) */
#define SYN_PREFIX '='
#define TYPO_MIN   5 /* shorter unknown words are not corrected: too many neighbours */
#define TYPO_LONG  9 /* from this length, also a letter too many, wrong or swapped */

/* Folded French stop words: articles, pronouns, auxiliaries, the words of every question. */
static const char *const stop_words[] = {
    "a",
    "ai",
    "alors",
    "as",
    "au",
    "aux",
    "avec",
    "avez",
    "avoir",
    "avons",
    "bien",
    "bonjour",
    "ca",
    "ce",
    "cela",
    "celle",
    "celui",
    "ces",
    "cest",
    "cet",
    "cette",
    "chez",
    "ci",
    "combien",
    "comme",
    "comment",
    "dans",
    "de",
    "des",
    "dire",
    "dois",
    "doit",
    "doivent",
    "donc",
    "du",
    "elle",
    "elles",
    "en",
    "encore",
    "es",
    "est",
    "et",
    "etes",
    "etre",
    "eu",
    "faut",
    "ici",
    "il",
    "ils",
    "je",
    "jusqu",
    "kesako",
    "koi",
    "la",
    "le",
    "les",
    "leur",
    "leurs",
    "lorsqu",
    "lui",
    "ma",
    "mais",
    "me",
    "merci",
    "mes",
    "moi",
    "mon",
    "ne",
    "nos",
    "notre",
    "nous",
    "on",
    "ont",
    "ou",
    "par",
    "peut",
    "peuvent",
    "peux",
    "plait",
    "pour",
    "pourquoi",
    "pouvez",
    "puis",
    "puisqu",
    "qu",
    "quand",
    "que",
    "quel",
    "quelle",
    "quelles",
    "quels",
    "quesaco",
    "quest",
    "qui",
    "quoi",
    "sa",
    "se",
    "ses",
    "si",
    "sil",
    "son",
    "sont",
    "suis",
    "sur",
    "svp",
    "ta",
    "te",
    "tes",
    "toi",
    "ton",
    "tu",
    "un",
    "une",
    "veut",
    "vos",
    "votre",
    "vous",
    "ya",
    "sommes",
    "ete",
    /* « à quoi sert X », « X ça sert à quoi »: a definition form (is_definition()) */
    "sert",
    "servent",
};

/* Stop words too: the filler adverbs of a spoken question (« c'est quoi exactement »,
 * « concrètement ça change quoi », « il y a quoi dedans »): no subject, but words some answer
 * happens to hold (« dedans » sent a question about the PLU to Action cœur de ville); « et
 * après ? », « juste », « maintenant »; and the modal verbs of a request, as « peut », « doit »
 * and « veut » above (« on voudrait », « nous pourrions », « devrait-on », « nous souhaitons »,
 * « on aimerait »), whose stems met answers that happen to use them, or, unknown to the base,
 * weighed in the norm as a subject it lacks. */
static const char *const fillers[] = {
    "exactement", "concretement", "precisement", "dedans", "apres", "juste", "maintenant",
    "voudrait", "voudrais", "voudrions", "voulons", "voulez", "veulent", "pourrait", "pourrais",
    "pourrions", "pouvons", "devons", "devrait", "devrais", "devrions", "aimerait", "aimerais",
    "aimerions", "aimeraient", "souhaite", "souhaitons", "souhaitez", "souhaitent", "souhaiterait",
    "souhaiterais", "souhaiterions",
    /* the greetings and closings of a message written as a letter (« Madame, Monsieur, ...
     * Cordialement »): the question is elsewhere */
    "madame", "monsieur", "mesdames", "messieurs", "cordialement", "cdt", "cdlt", "bonsoir", "bjr",
    "bsr", "salut", "slt", "coucou", "voila",
    /* « rien » (« ne ... rien »), a pronoun: « rien » alone went to the safety answer */
    "rien"};

/*
 * The funders and schemes an answer can be about (docs/internals/KB.md, « Another body's
 * scheme »). A question that names one of them is about it: an answer whose questions and `mots`
 * do not name it answers another body's scheme, or none (« l'appel à projets friches de
 * la Région, c'est quoi la date limite » is not the Fonds vert's calendar, « le fonds régional
 * friches » not France Relance's fonds friches). Each phrase is analysed with the base's synonyms
 * when the index is built; one that is no single term is ignored. At most 32.
 */
static const char *const FUNDERS[] = {
    "fonds vert",
    "detr",
    "dsil",
    "dsid",
    "ademe",
    "banque des territoires",
    "epf",
    "region",
    "regional",
    "feder",
    "petites villes de demain",
    "action coeur de ville",
    "agence de l eau",
};

/* Words that ask an amount (« combien coûte », « quel prix », « le montant »): a question that
 * asks one is not answered by an answer whose questions and `mots` ask none (« combien coûte une
 * étude historique » is not what the historical study is). Analysed at build like FUNDERS[]. */
static const char *const COST[] = {"prix", "montant", "tarif",  "cout",
                                   "cher", "taux",    "budget", "argent"};
/* the first COST_NOUNS of COST[] ask an amount alone (« quel prix »); the others only with
 * « combien » (« participer au coût des réseaux », « un prêt à taux bas » ask none) */
#define COST_NOUNS 3
_Static_assert(FB_ARRAY_SIZE(FUNDERS) <= 32, "FUNDERS[] is a 32-bit mask");
_Static_assert(FB_ARRAY_SIZE(COST) <= 8, "cost_term[] holds 8");

struct doc {
    int *t[N_FIELDS]; /* terms of each field, in order (repeats kept) */
    size_t n[N_FIELDS], cap[N_FIELDS];
    /* the term sets of its definition questions (« c'est quoi un SIS ? »): sorted distinct
     * term ids, each set ended by -1 */
    int *def;
    size_t n_def;
    /* the funders and schemes its questions and `mots` name (bits of FUNDERS[]) */
    unsigned funders;
    bool cost; /* its questions or `mots` ask an amount (COST[]) */
};

struct phrase {
    int *t;
    size_t n;
    int group;
};

struct fb_kb_s {
    /* terms: stems and synonym groups' canonical terms */
    char **terms;
    size_t n_terms, cap_terms;
    struct fb__strmap term_map; /* stem -> id */
    /* folded word -> term id + 1, or 0 for a stop word (keys owned by `surf`) */
    char **surf;
    size_t n_surf, cap_surf;
    struct fb__strmap surf_map;
    /* synonyms */
    struct phrase *phr;
    size_t n_phr, cap_phr;
    int *parent; /* union-find over groups */
    int *group_term;
    size_t n_groups;
    int *phr_first; /* per term (of the phrases): index of its first phrase in `phr`, or -1 */
    size_t n_phr_first;
    bool phr_sorted;
    /* answers */
    struct doc *docs;
    size_t n_docs, cap_docs;
    /* index */
    bool built;
    const fb_geo_t *geo; /* borrowed, may be NULL: the départements' and régions' codes */
    /* their names, folded, with and without a leading article (fb_kb_set_geo()) */
    struct fb__strmap area_map;
    char **areas;
    size_t n_areas;
    size_t area_words; /* the most words in a name */
    double *idf;
    double max_idf;
    size_t *post_start; /* n_terms + 1 */
    int *post_doc;
    float *post_w;
    struct sb_stemmer *stemmer; /* building only */
    /* typos: every single-letter deletion of the base's words of TYPO_MIN letters or more ->
     * index in del_term (keys owned by `dels`) */
    char **dels;
    size_t n_dels, cap_dels;
    int *del_term; /* the term of the word(s) it comes from, or -1 when two terms share it */
    int *del_surf; /* the first such word (index in `surf`) */
    struct fb__strmap del_map;
    /* folded word -> its classes (C_* bits) for the own-case and small-talk rules; SMS spelling
     * -> index in SMS[] (keys: the static tables) */
    struct fb__strmap class_map, sms_map, class2_map;
    /* the term of each phrase of FUNDERS[] (-1 when it is no single term of the base) */
    int funder_term[32];
    int cost_term[8];
};

/* ---- terms ----------------------------------------------------------------------------------- */

static int term_id(const fb_kb_t *kb, const char *s)
{
    return fb__strmap_get(&kb->term_map, s);
}

static int term_add(fb_kb_t *kb, const char *s)
{
    int id = term_id(kb, s);
    if (id >= 0)
        return id;
    if (kb->n_terms == kb->cap_terms) {
        kb->cap_terms = kb->cap_terms ? kb->cap_terms * 2 : 256;
        kb->terms = fb_realloc(kb->terms, kb->cap_terms * sizeof(*kb->terms));
    }
    kb->terms[kb->n_terms] = fb_strdup(s);
    (void)fb__strmap_put(&kb->term_map, kb->terms[kb->n_terms], (int)kb->n_terms);
    return (int)kb->n_terms++;
}

static void surf_add(fb_kb_t *kb, const char *w, int val)
{
    if (fb__strmap_get(&kb->surf_map, w) >= 0)
        return;
    if (kb->n_surf == kb->cap_surf) {
        kb->cap_surf = kb->cap_surf ? kb->cap_surf * 2 : 512;
        kb->surf = fb_realloc(kb->surf, kb->cap_surf * sizeof(*kb->surf));
    }
    kb->surf[kb->n_surf] = fb_strdup(w);
    (void)fb__strmap_put(&kb->surf_map, kb->surf[kb->n_surf++], val);
}

static void build_classes(fb_kb_t *kb);

fb_kb_t *fb_kb_new(void)
{
    fb_kb_t *kb = fb_calloc(1, sizeof(*kb));
    for (size_t i = 0; i < FB_ARRAY_SIZE(stop_words); i++)
        surf_add(kb, stop_words[i], 0);
    for (size_t i = 0; i < FB_ARRAY_SIZE(fillers); i++)
        surf_add(kb, fillers[i], 0);
    build_classes(kb);
    kb->stemmer = sb_stemmer_new("french", "UTF_8");
    return kb;
}

/* ---- analysis -------------------------------------------------------------------------------- */

/* The stem of folded word `w` (`len` bytes, <= MAX_WORD) into `out` (MAX_WORD + 1 bytes).
 * `*st` is a stemmer created on first use when NULL (the caller frees it). */
static void stem_word(struct sb_stemmer **st, const char *w, size_t len, char *out)
{
    if (len < STEM_MIN) {
        memcpy(out, w, len);
        out[len] = '\0';
        return;
    }
    if (!*st)
        *st = sb_stemmer_new("french", "UTF_8");
    const sb_symbol *s = *st ? sb_stemmer_stem(*st, (const sb_symbol *)w, (int)len) : NULL;
    size_t n = s ? (size_t)sb_stemmer_length(*st) : len;
    if (!s)
        s = (const sb_symbol *)w;
    if (n > MAX_WORD)
        n = MAX_WORD;
    memcpy(out, s, n);
    /* "pollue"/"polluee", "abandonne"/"abandonnee": the folded forms stem apart by a final e */
    if (n > 3 && out[n - 1] == 'e')
        n--;
    /* "paye"/"paie", "essayer"/"essaie": the y of a verb's stem is an i in half its forms */
    for (size_t i = 1; i < n; i++)
        if (out[i] == 'y')
            out[i] = 'i';
    /* but the nouns "loyer" and "foyer" stem (in Snowball too) to "loi", a law, and "foi" */
    if ((len == 5 || (len == 6 && w[5] == 's')) &&
        (strncmp(w, "loyer", 5) == 0 || strncmp(w, "foyer", 5) == 0)) {
        memcpy(out, w, 5);
        n = 5;
    }
    out[n] = '\0';
}

/*
 * SMS and phonetic spellings of French words (docs/internals/KB.md, « Typos and SMS spelling »):
 * « koman on fé », « ki paye », « c koi », « jai », « ya ». Most stand for a stop word; left as
 * they are they would be words the base never uses, each weighing FB_KB_UNKNOWN_WEIGHT times the
 * largest idf in the norm, which drowns the question's real terms. Folded forms.
 */
static const char *const SMS[][2] = {
    {"koman", "comment"}, {"komen", "comment"}, {"koment", "comment"}, {"kom", "comme"},
    {"ki", "qui"},        {"koi", "quoi"},      {"kwa", "quoi"},       {"ke", "que"},
    {"kel", "quel"},      {"kelle", "quelle"},  {"kels", "quels"},     {"kelles", "quelles"},
    {"fe", "fait"},       {"pr", "pour"},       {"ds", "dans"},        {"qd", "quand"},
    {"kan", "quand"},     {"kand", "quand"},    {"pk", "pourquoi"},    {"pq", "pourquoi"},
    {"pkoi", "pourquoi"}, {"jai", "ai"},        {"chui", "suis"},      {"jsuis", "suis"},
    {"jsui", "suis"},     {"dc", "donc"},       {"vs", "vous"},        {"ns", "nous"},
    {"tt", "tout"},       {"ts", "tous"},       {"bcp", "beaucoup"},   {"pb", "probleme"},
    {"pbm", "probleme"},  {"mm", "meme"},       {"stp", "svp"},        {"jsp", "sais"},
    {"ac", "avec"},       {"avc", "avec"},      {"tjs", "toujours"},   {"tjrs", "toujours"},
    {"qqch", "chose"},    {"qqc", "chose"},     {"qqn", "quelqu"},     {"mtn", "maintenant"},
    {"auj", "aujourd"},   {"cad", "dire"},      {"jusqua", "jusqu"},   {"tps", "temps"},
    {"cb", "combien"},    {"cmb", "combien"},   {"cmt", "comment"},    {"pcq", "parce"},
    {"pck", "parce"},     {"svt", "souvent"},   {"qq", "quelques"},    {"hab", "habitants"},
};

/* The standard spelling of SMS word `w`, or `w`. */
static const char *unsms(const fb_kb_t *kb, const char *w, size_t len)
{
    if (len > 6)
        return w;
    int i = fb__strmap_get(&kb->sms_map, w);
    return i >= 0 ? SMS[i][1] : w;
}

/* One analysed word: its term id (-1: a stem the base does not know) and its stem. */
struct tok {
    int id;
    bool typo; /* the term was guessed from an unknown word (typo_term()) */
    char stem[MAX_WORD + 1];
};

/* Same length, one letter different or two adjacent letters swapped. */
static bool one_swap_or_sub(const char *a, const char *b, size_t len)
{
    size_t d[3], n = 0;
    for (size_t i = 0; i < len; i++)
        if (a[i] != b[i]) {
            if (n == 2)
                return false;
            d[n++] = i;
        }
    return n == 1 || (n == 2 && d[1] == d[0] + 1 && a[d[0]] == b[d[1]] && a[d[1]] == b[d[0]]);
}

/*
 * Typos (docs/internals/KB.md, « Typos and SMS spelling »): the term of the base words at one
 * edit from unknown folded word `w` (`len` bytes), found with the deletion map built with the
 * index (symmetric deletions: a few hash lookups, no scan of the vocabulary). The base's
 * vocabulary is small, so a real word it does not use often looks like a typo of one it does
 * (« manque » / « banque », « dessous » / « dessus »): a missing letter is corrected from
 * TYPO_MIN letters (« polue », « depolution »), a letter too many, a wrong letter or two swapped
 * only from TYPO_LONG (« subvantion », « polluiton », « desamiantge »). -1 when there is none, or
 * when two terms are candidates; otherwise `stem` gets the term's.
 */
static int typo_term(const fb_kb_t *kb, const char *w, size_t len, char *stem)
{
    if (len < TYPO_MIN || kb->n_dels == 0)
        return -1;
    int found = -1;
    int at = fb__strmap_get(&kb->del_map, w); /* a letter missing: w is a deletion of a word */
    if (at >= 0) {
        if (kb->del_term[at] < 0)
            return -1;
        found = kb->del_term[at];
    }
    if (len < TYPO_LONG) {
        /* two letters swapped (« notiare », « frcihe »): typed fast, and seldom another word */
        char v[MAX_WORD + 1];
        for (size_t i = 0; i + 1 < len; i++) {
            if (w[i] == w[i + 1])
                continue;
            memcpy(v, w, len + 1);
            v[i] = w[i + 1];
            v[i + 1] = w[i];
            int sv = fb__strmap_get(&kb->surf_map, v);
            if (sv <= 0)
                continue;
            if (found >= 0 && found != sv - 1)
                return -1;
            found = sv - 1;
        }
    }
    if (len >= TYPO_LONG) {
        char v[MAX_WORD + 1];
        for (size_t i = 0; i < len; i++) {
            memcpy(v, w, i);
            memcpy(v + i, w + i + 1, len - i); /* with the NUL */
            int t = -2;
            int sv = fb__strmap_get(&kb->surf_map, v); /* one letter too many */
            if (sv > 0)
                t = sv - 1;
            else if (sv == 0)
                t = -1; /* a stop word and a letter: not a typo of a base word */
            int k = fb__strmap_get(&kb->del_map, v); /* one wrong, two swapped */
            if (t == -2 && k >= 0 && one_swap_or_sub(w, kb->surf[kb->del_surf[k]], len))
                t = kb->del_term[k];
            if (t == -2)
                continue;
            if (t < 0 || (found >= 0 && found != t))
                return -1;
            found = t;
        }
    }
    if (found < 0)
        return -1;
    size_t sl = strlen(kb->terms[found]);
    memcpy(stem, kb->terms[found], sl + 1);
    return found;
}

/*
 * Splits folded text `f` into words and gives each non-stop word's term: at build (`add`), terms
 * and surface forms are added to `kb`; at search, the surface cache answers first and unknown
 * words are stemmed with `*st`. Returns the number of tokens written to `out` (at most `cap`).
 */
static size_t tokens(fb_kb_t *kb, const fb_kb_t *ckb, bool add, struct sb_stemmer **st,
                     const char *f, struct tok *out, size_t cap)
{
    size_t n = 0;
    const char *p = f;
    char word[MAX_WORD + 1];
    while (*p && n < cap) {
        while (*p == ' ')
            p++;
        const char *s = p;
        while (*p && *p != ' ')
            p++;
        size_t len = (size_t)(p - s);
        if (len < 2)
            continue; /* elisions (l' d' j'...), stray letters */
        if (len > MAX_WORD)
            len = MAX_WORD;
        memcpy(word, s, len);
        word[len] = '\0';
        int sv = fb__strmap_get(&ckb->surf_map, word);
        if (sv < 0 && !add) {
            /* a question's SMS spelling, unless the base uses the word itself (« DS »,
             * Démarches simplifiées, is no « dans ») */
            const char *std = unsms(ckb, word, len);
            if (std != word) {
                len = strlen(std);
                memmove(word, std, len + 1);
                sv = fb__strmap_get(&ckb->surf_map, word);
            }
        }
        if (sv == 0)
            continue; /* stop word */
        struct tok *t = &out[n];
        t->typo = false;
        if (sv > 0 && !add) {
            t->id = sv - 1;
            const char *stem = ckb->terms[t->id];
            size_t sl = strlen(stem);
            memcpy(t->stem, stem, sl + 1);
            n++;
            continue;
        }
        stem_word(st, word, len, t->stem);
        if (add) {
            t->id = term_add(kb, t->stem);
            surf_add(kb, word, t->id + 1);
        } else {
            t->id = term_id(ckb, t->stem);
            if (t->id < 0) {
                t->id = typo_term(ckb, word, len, t->stem);
                t->typo = t->id >= 0;
            }
        }
        n++;
    }
    return n;
}

static int group_root(const fb_kb_t *kb, int g)
{
    while (kb->parent[g] != g)
        g = kb->parent[g];
    return g;
}

static int cmp_phrase(const void *a, const void *b)
{
    const struct phrase *x = a, *y = b;
    if (x->t[0] != y->t[0])
        return x->t[0] < y->t[0] ? -1 : 1;
    return (x->n < y->n) - (x->n > y->n); /* longest first */
}

/* Sorts the phrases by first term and indexes them (once, before the first answer). */
static void index_phrases(fb_kb_t *kb)
{
    if (kb->phr_sorted)
        return;
    kb->phr_sorted = true;
    if (kb->n_phr)
        qsort(kb->phr, kb->n_phr, sizeof(*kb->phr), cmp_phrase);
    kb->n_phr_first = kb->n_terms;
    kb->phr_first = fb_malloc((kb->n_terms + 1) * sizeof(int));
    for (size_t i = 0; i < kb->n_terms; i++)
        kb->phr_first[i] = -1;
    for (size_t i = kb->n_phr; i-- > 0;)
        kb->phr_first[kb->phr[i].t[0]] = (int)i;
}

/* Replaces in place every synonym phrase of `t` (`n` tokens) by its group's term; returns the
 * new count. */
static size_t apply_synonyms(const fb_kb_t *kb, struct tok *t, size_t n)
{
    if (!kb || kb->n_phr == 0 || !kb->phr_first)
        return n;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        int id = t[i].id;
        size_t used = 0;
        int group = -1;
        if (id >= 0 && (size_t)id < kb->n_phr_first && kb->phr_first[id] >= 0) {
            for (size_t k = (size_t)kb->phr_first[id]; k < kb->n_phr && kb->phr[k].t[0] == id;
                 k++) {
                const struct phrase *ph = &kb->phr[k];
                if (ph->n > n - i)
                    continue;
                size_t j = 1;
                while (j < ph->n && t[i + j].id == ph->t[j])
                    j++;
                if (j == ph->n) {
                    used = ph->n;
                    group = group_root(kb, ph->group);
                    break; /* longest first */
                }
            }
        }
        if (group >= 0) {
            struct tok g;
            g.id = kb->group_term[group];
            g.typo = false;
            for (size_t k = i; k < i + used; k++)
                g.typo = g.typo || t[k].typo;
            snprintf(g.stem, sizeof(g.stem), "%s", kb->terms[g.id]);
            t[o++] = g;
            i += used;
        } else {
            t[o++] = t[i++];
        }
    }
    return o;
}

/* Folds `text` into a new string (fb_free it). */
static char *fold_all(const char *text)
{
    return fb_text_fold_dup(text ? text : "");
}

/* Analyses `text` at build time into a new token array (`*n` tokens), synonyms applied. */
static struct tok *analyse_add(fb_kb_t *kb, const char *text, size_t *n, bool synonyms)
{
    char *f = fold_all(text);
    size_t cap = strlen(f) / 2 + 2;
    struct tok *t = fb_malloc(cap * sizeof(*t));
    *n = tokens(kb, kb, true, &kb->stemmer, f, t, cap);
    if (synonyms)
        *n = apply_synonyms(kb, t, *n);
    fb_free(f);
    return t;
}

void fb_kb_add_synonyms(fb_kb_t *kb, const char *const *phrases, size_t n)
{
    if (kb->built || kb->phr_sorted || n == 0)
        return;
    int g = (int)kb->n_groups;
    kb->parent = fb_realloc(kb->parent, (kb->n_groups + 1) * sizeof(int));
    kb->group_term = fb_realloc(kb->group_term, (kb->n_groups + 1) * sizeof(int));
    kb->parent[g] = g;
    kb->group_term[g] = -1;
    kb->n_groups++;
    for (size_t i = 0; i < n; i++) {
        size_t nt = 0;
        struct tok *t = analyse_add(kb, phrases[i], &nt, false);
        if (nt > 0) {
            /* a phrase already in a group: the groups become one */
            for (size_t k = 0; k < kb->n_phr; k++) {
                const struct phrase *ph = &kb->phr[k];
                bool same = ph->n == nt;
                for (size_t j = 0; same && j < nt; j++)
                    same = ph->t[j] == t[j].id;
                if (same) {
                    int a = group_root(kb, ph->group), b = group_root(kb, g);
                    if (a != b)
                        kb->parent[b] = a;
                }
            }
            if (kb->group_term[g] < 0) {
                char name[MAX_WORD + 2];
                size_t o = 0;
                name[o++] = SYN_PREFIX;
                for (size_t j = 0; j < nt && o < sizeof(name) - 1; j++) {
                    if (j && o < sizeof(name) - 1)
                        name[o++] = '_';
                    for (const char *c = t[j].stem; *c && o < sizeof(name) - 1; c++)
                        name[o++] = *c;
                }
                name[o] = '\0';
                kb->group_term[g] = term_add(kb, name);
            }
            if (kb->n_phr == kb->cap_phr) {
                kb->cap_phr = kb->cap_phr ? kb->cap_phr * 2 : 64;
                kb->phr = fb_realloc(kb->phr, kb->cap_phr * sizeof(*kb->phr));
            }
            struct phrase *ph = &kb->phr[kb->n_phr++];
            ph->t = fb_malloc(nt * sizeof(int));
            for (size_t j = 0; j < nt; j++)
                ph->t[j] = t[j].id;
            ph->n = nt;
            ph->group = g;
        }
        fb_free(t);
    }
    if (kb->group_term[g] < 0) /* nothing but stop words: an empty group */
        kb->group_term[g] = term_add(kb, "=");
}

static void doc_field(fb_kb_t *kb, struct doc *d, int f, const char *text)
{
    size_t n = 0;
    struct tok *t = analyse_add(kb, text, &n, true);
    if (d->n[f] + n > d->cap[f]) {
        d->cap[f] = (d->n[f] + n) * 2 + 8;
        d->t[f] = fb_realloc(d->t[f], d->cap[f] * sizeof(int));
    }
    for (size_t i = 0; i < n; i++)
        d->t[f][d->n[f]++] = t[i].id;
    fb_free(t);
}

/* True when folded text `f` asks what something is: « c'est quoi X », « qu'est-ce qu'un X »,
 * « que veut dire X », « X : définition ». Such a question names its subject and nothing else,
 * so an answer written for « c'est quoi X » is the one to give, even when other answers share
 * the term X (what the margin rule alone would call a tie). */
static bool is_definition(const char *f)
{
    /* « c quoi » and « cest quoi » are how « c'est quoi » is often typed; whole words, since
     * « avec quoi » holds « c quoi » */
    static const char *const forms[] = {
        "c est quoi",   "c koi",          "ckoi",          "c quoi",     "cest quoi",
        "qu est ce qu", "veut dire",      "signifie",      "definition", "sert a quoi",
        "a quoi sert",  "servent a quoi", "a quoi servent"};
    for (size_t i = 0; i < FB_ARRAY_SIZE(forms); i++)
        for (const char *p = strstr(f, forms[i]); p; p = strstr(p + 1, forms[i]))
            if (p == f || p[-1] == ' ')
                return true;
    return false;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Sorts the ids of `t` and drops repeats in `ids` (at least n entries); returns the count, or 0
 * when a word is unknown to the base (such a set matches no definition). */
static size_t term_set(const struct tok *t, size_t n, int *ids)
{
    for (size_t i = 0; i < n; i++) {
        if (t[i].id < 0)
            return 0;
        ids[i] = t[i].id;
    }
    qsort(ids, n, sizeof(int), cmp_int);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (k == 0 || ids[k - 1] != ids[i])
            ids[k++] = ids[i];
    return k;
}

/* Records the term set of question `q` of `d` when it is a definition question. */
static void doc_definition(fb_kb_t *kb, struct doc *d, const char *q)
{
    char *f = fold_all(q);
    bool def = is_definition(f);
    fb_free(f);
    if (!def)
        return;
    size_t n = 0;
    struct tok *t = analyse_add(kb, q, &n, true);
    int *ids = fb_malloc((n + 1) * sizeof(int));
    size_t k = term_set(t, n, ids);
    if (k > 0) {
        d->def = fb_realloc(d->def, (d->n_def + k + 1) * sizeof(int));
        memcpy(d->def + d->n_def, ids, k * sizeof(int));
        d->def[d->n_def + k] = -1;
        d->n_def += k + 1;
    }
    fb_free(ids);
    fb_free(t);
}

/* True when one of `d`'s definition sets is exactly `ids` (k sorted distinct ids). */
static bool doc_defines(const struct doc *d, const int *ids, size_t k)
{
    size_t i = 0;
    while (i < d->n_def) {
        size_t j = i;
        while (j < d->n_def && d->def[j] >= 0)
            j++;
        if (j - i == k && memcmp(d->def + i, ids, k * sizeof(int)) == 0)
            return true;
        i = j + 1;
    }
    return false;
}

int fb_kb_add_doc(fb_kb_t *kb, const char *const *questions, size_t n_questions,
                  const char *const *mots, size_t n_mots, const char *text)
{
    index_phrases(kb);
    if (kb->n_docs == kb->cap_docs) {
        kb->cap_docs = kb->cap_docs ? kb->cap_docs * 2 : 64;
        kb->docs = fb_realloc(kb->docs, kb->cap_docs * sizeof(*kb->docs));
    }
    struct doc *d = &kb->docs[kb->n_docs];
    memset(d, 0, sizeof(*d));
    for (size_t i = 0; i < n_questions; i++) {
        doc_field(kb, d, 0, questions[i]);
        doc_definition(kb, d, questions[i]);
    }
    for (size_t i = 0; i < n_mots; i++)
        doc_field(kb, d, 1, mots[i]);
    if (text)
        doc_field(kb, d, 2, text);
    return (int)kb->n_docs++;
}

/* ---- the index ------------------------------------------------------------------------------- */

static size_t analyse_query(const fb_kb_t *kb, const char *text, struct tok *t, size_t cap,
                            struct sb_stemmer **st);

/* True when term `id` is a word of an amount (COST[]; the first COST_NOUNS only when
 * `nouns_only`). */
static bool is_cost(const fb_kb_t *kb, int id, bool nouns_only)
{
    size_t n = nouns_only ? COST_NOUNS : FB_ARRAY_SIZE(COST);
    for (size_t k = 0; id >= 0 && k < n; k++)
        if (kb->cost_term[k] == id)
            return true;
    return false;
}

/* The FUNDERS[] bit of term `id`, or 0. */
static unsigned funder_bit(const fb_kb_t *kb, int id)
{
    if (id < 0)
        return 0;
    for (size_t k = 0; k < FB_ARRAY_SIZE(FUNDERS); k++)
        if (kb->funder_term[k] == id)
            return 1u << k;
    return 0;
}

/* The deletion map of the base's words (typo_term()). */
static void build_deletions(fb_kb_t *kb)
{
    char v[MAX_WORD + 1];
    for (size_t k = 0; k < kb->n_surf; k++) {
        const char *w = kb->surf[k];
        int term = fb__strmap_get(&kb->surf_map, w) - 1;
        size_t len = strlen(w);
        if (term < 0 || len < TYPO_MIN)
            continue;
        for (size_t i = 0; i < len; i++) {
            memcpy(v, w, i);
            memcpy(v + i, w + i + 1, len - i);
            int at = fb__strmap_get(&kb->del_map, v);
            if (at >= 0) {
                if (kb->del_term[at] != term)
                    kb->del_term[at] = -1;
                continue;
            }
            if (kb->n_dels == kb->cap_dels) {
                kb->cap_dels = kb->cap_dels ? kb->cap_dels * 2 : 1024;
                kb->dels = fb_realloc(kb->dels, kb->cap_dels * sizeof(*kb->dels));
                kb->del_term = fb_realloc(kb->del_term, kb->cap_dels * sizeof(*kb->del_term));
                kb->del_surf = fb_realloc(kb->del_surf, kb->cap_dels * sizeof(*kb->del_surf));
            }
            kb->dels[kb->n_dels] = fb_strdup(v);
            kb->del_term[kb->n_dels] = term;
            kb->del_surf[kb->n_dels] = (int)k;
            (void)fb__strmap_put(&kb->del_map, kb->dels[kb->n_dels], (int)kb->n_dels);
            kb->n_dels++;
        }
    }
}

int fb_kb_build(fb_kb_t *kb)
{
    if (kb->built)
        return 0;
    index_phrases(kb);
    kb->built = true;
    size_t nt = kb->n_terms, nd = kb->n_docs;
    static const double w[N_FIELDS] = {FB_KB_W_QUESTIONS, FB_KB_W_MOTS, FB_KB_W_TEXT};
    double avg[N_FIELDS] = {0};
    for (size_t i = 0; i < nd; i++)
        for (int f = 0; f < N_FIELDS; f++)
            avg[f] += (double)kb->docs[i].n[f];
    for (int f = 0; f < N_FIELDS; f++)
        avg[f] = nd ? avg[f] / (double)nd : 0;

    /* per document: the weighted, length-normalised frequency of each of its terms */
    double *tf = fb_calloc(nt + 1, sizeof(double));
    int *touched = fb_malloc((nt + 1) * sizeof(int));
    size_t *df = fb_calloc(nt + 1, sizeof(size_t));
    struct entry {
        int term, doc;
        double tf;
    } *ent = NULL;
    size_t n_ent = 0, cap_ent = 0;
    for (size_t i = 0; i < nd; i++) {
        const struct doc *d = &kb->docs[i];
        size_t nto = 0;
        for (int f = 0; f < N_FIELDS; f++) {
            if (d->n[f] == 0 || avg[f] <= 0)
                continue;
            double norm = 1.0 - B + B * (double)d->n[f] / avg[f];
            for (size_t k = 0; k < d->n[f]; k++) {
                int t = d->t[f][k];
                if (tf[t] == 0)
                    touched[nto++] = t;
                tf[t] += w[f] / norm;
            }
        }
        for (size_t k = 0; k < nto; k++) {
            int t = touched[k];
            if (n_ent == cap_ent) {
                cap_ent = cap_ent ? cap_ent * 2 : 1024;
                ent = fb_realloc(ent, cap_ent * sizeof(*ent));
            }
            ent[n_ent++] = (struct entry){t, (int)i, tf[t]};
            df[t]++;
            tf[t] = 0;
        }
    }
    kb->idf = fb_calloc(nt + 1, sizeof(double));
    for (size_t t = 0; t < nt; t++)
        kb->idf[t] = log(1.0 + ((double)nd - (double)df[t] + 0.5) / ((double)df[t] + 0.5));
    kb->max_idf = log(1.0 + ((double)nd + 0.5) / 0.5);
    kb->post_start = fb_calloc(nt + 2, sizeof(size_t));
    for (size_t k = 0; k < n_ent; k++)
        kb->post_start[ent[k].term + 1]++;
    for (size_t t = 0; t < nt; t++)
        kb->post_start[t + 1] += kb->post_start[t];
    kb->post_doc = fb_malloc((n_ent + 1) * sizeof(int));
    kb->post_w = fb_malloc((n_ent + 1) * sizeof(float));
    size_t *fill = fb_calloc(nt + 1, sizeof(size_t));
    for (size_t k = 0; k < n_ent; k++) {
        int t = ent[k].term;
        size_t at = kb->post_start[t] + fill[t]++;
        kb->post_doc[at] = ent[k].doc;
        kb->post_w[at] = (float)(kb->idf[t] * ent[k].tf / (K1 + ent[k].tf));
    }
    fb_free(fill);
    fb_free(ent);
    fb_free(df);
    fb_free(touched);
    fb_free(tf);
    build_deletions(kb);
    /* the funders each answer's questions and `mots` name (FUNDERS[]) */
    for (size_t k = 0; k < FB_ARRAY_SIZE(FUNDERS); k++) {
        struct tok ft[8];
        size_t m = analyse_query(kb, FUNDERS[k], ft, FB_ARRAY_SIZE(ft), &kb->stemmer);
        kb->funder_term[k] = m == 1 ? ft[0].id : -1;
    }
    for (size_t k = 0; k < FB_ARRAY_SIZE(COST); k++) {
        struct tok ft[8];
        size_t m = analyse_query(kb, COST[k], ft, FB_ARRAY_SIZE(ft), &kb->stemmer);
        kb->cost_term[k] = m == 1 ? ft[0].id : -1;
    }
    for (size_t i = 0; i < nd; i++) {
        struct doc *d = &kb->docs[i];
        for (int f = 0; f < 2; f++)
            for (size_t k = 0; k < d->n[f]; k++) {
                d->funders |= funder_bit(kb, d->t[f][k]);
                d->cost = d->cost || is_cost(kb, d->t[f][k], false);
            }
    }
    /* the documents' term lists are no longer needed */
    for (size_t i = 0; i < nd; i++)
        for (int f = 0; f < N_FIELDS; f++)
            FB_FREE(kb->docs[i].t[f]);
    if (kb->stemmer) {
        sb_stemmer_delete(kb->stemmer);
        kb->stemmer = NULL;
    }
    return 0;
}

size_t fb_kb_size(const fb_kb_t *kb)
{
    return kb ? kb->n_docs : 0;
}

bool fb_kb_confident(double norm, double margin)
{
    /* under FB_KB_ANSWER_NORM, or with a close second, the bot asks instead (fb_kb_search()) */
    return norm >= FB_KB_ANSWER_NORM && margin >= FB_KB_MIN_MARGIN;
}

/*
 * The user's own case (docs/internals/KB.md, « Questions about one's own case »). A general base
 * can say how a procedure works, never where the user's file stands nor what a figure is for
 * their commune or site: « où en est notre dossier déposé en mars », « la taxe d'aménagement
 * c'est combien pour notre commune », « combien coûte la dépollution de notre site ». Such a
 * question often shares most of its words with a real answer (the procedure, the tax), so the
 * score alone would answer it confidently. Two shapes, on folded words:
 *   status: « où en est/sont », or a possessive + a filed thing (dossier, demande, permis...)
 *           with a filing/decision participle (déposé, retenu, accepté...) anywhere;
 *   amount: a money word (combien, montant, taux, prix, coût, tarif; not « combien de temps »)
 *           with a possessive + a place or project of the user's (notre commune, mon site...).
 * Except a question about the bot's own follow-up (étapes, feuille de route, suivi), which the
 * base does answer.
 */
static bool word_in(const char *w, const char *const *set)
{
    for (; *set; set++)
        if (strcmp(w, *set) == 0)
            return true;
    return false;
}

static const char *const POSSESSIVE[] = {"notre", "nos", "mon", "ma", "mes", NULL};
static const char *const FILED[] = {"dossier",      "dossiers", "demande", "demandes",
                                    "candidature",  "permis",   "requete", "subvention",
                                    "candidatures", NULL};
static const char *const DECIDED[] = {"depose",    "deposee",    "deposes",     "deposees",
                                      "envoye",    "envoyee",    "transmis",    "transmise",
                                      "retenu",    "retenue",    "accepte",     "acceptee",
                                      "refuse",    "refusee",    "valide",      "validee",
                                      "accorde",   "accordee",   "recu",        "recue",
                                      "rejete",    "rejetee",    "obtenu",      "obtenue",
                                      "incomplet", "incomplete", "irrecevable", "ajourne",
                                      "ajournee",  "complet",    "complete",    "repondu",
                                      "nouvelles", "cours",      "attente",     "avancement",
                                      "bloque",    "bloquee",    "toujours",    "perdu",
                                      NULL}; /* not « instruit », « signe », « traite »: also
                                       present tense */
/* « on a touché », « nous avons perçu »: money the user's body received */
static const char *const WE[] = {"on", "nous", "j", "je", NULL};
static const char *const HAVE[] = {"a", "avons", "ai", "aurons", "aura", NULL};
static const char *const RECEIVED[] = {"touche", "percu", "recu", "obtenu", "eu", NULL};
/* « X nous a (déjà) prêté / versé / accordé »: what a body gave the user's */
static const char *const GIVEN_AUX[] = {"a", "ont", "avait", "avaient", NULL};
static const char *const GIVEN[] = {
    "prete",   "pretee",    "verse", "versee", "accorde", "donne",  "attribue", "paye",
    "finance", "rembourse", "signe", "refuse", "refusee", "rejete", "rejetee",  NULL};
/* « qui a gagné / remporté / été retenu »: the winners of one round */
static const char *const WINNER[] = {
    "gagne",   "remporte", "obtenu",   "touche",      "beneficie",    "decroche", "retenu",
    "retenus", "laureat",  "laureats", "selectionne", "selectionnes", NULL};
/* a name or contact details: « le notaire de notre commune s'appelle comment » */
static const char *const IDENTITY[] = {"appelle",   "nom",       "coordonnees", "numero",
                                       "telephone", "joignable", "mail",        "email",
                                       "courriel",  "adresse",   "occupe",      NULL};
static const char *const MONEY[] = {"combien",    "montant",      "taux",      "prix",   "cout",
                                    "coute",      "coutera",      "tarif",     "couts",  "rapporte",
                                    "rapportera", "rapporterait", "couterait", "valeur", NULL};
/* a future for the user's body (« on va toucher », « va nous coûter », « on aura »): with a
 * money word, a forecast of the user's own figures */
static const char *const FUTURE[] = {"va",     "vont",  "allons", "aura",
                                     "aurons", "aurai", "auront", NULL};
/* the user's private life, not a project owner's (« ma maison », « son voisin », « mon fils »):
 * other business than the base's, whatever words it shares with it */
static const char *const PRIVATE[] = {"maison",  "jardin",  "fils",        "fille",   "enfant",
                                      "enfants", "voisin",  "voisins",     "voisine", "chien",
                                      "chat",    "voiture", "appartement", "veranda", "piscine",
                                      "femme",   "mari",    NULL};
/* after « mon », « ma », « mes » only: a private person's (« ma taxe foncière », « mes impôts ») */
static const char *const MY_PRIVATE[] = {"taxe",    "taxes",   "impot",   "impots",    "toit",
                                         "toiture", "combles", "grange",  "extension", "haie",
                                         "cave",    "potager", "salaire", "retraite",  NULL};
/* building one's house (« construire une maison »), but not « une maison de santé » */
static const char *const BUILD_HOUSE[] = {"construire", "batir", "agrandir", NULL};
static const char *const HOUSE_OF[] = {"de", "des", "du", "d", "france", "medicale", NULL};
/* The word lists of the sixth round's shapes, looked up in one more hash map (`class2_map`):
 * D_* bits. */
enum {
    D_EXACT = 1 << 0,
    D_FIGURE = 1 << 1,
    D_STAT_OPENER = 1 << 2,
    D_COUNTED = 1 << 3,
    D_TAX = 1 << 4,
    D_DISPUTE = 1 << 5,
    D_BUILD_HOUSE = 1 << 6,
    D_HOUSE_OF = 1 << 7,
    D_MY_PRIVATE = 1 << 8,
    D_OCCUPANTS = 1 << 9,
    D_HARMED = 1 << 10,
};
static unsigned extra_classes(const fb_kb_t *kb, const char *w);
/* the users of a building in use, and what may harm them */
static const char *const OCCUPANTS[] = {"enfants",   "eleves", "occupants", "salaries",
                                        "personnel", "agents", "usagers",   NULL};
static const char *const HARMED[] = {"danger",     "exposes", "exposees", "intoxiques",
                                     "contamines", "malades", NULL};
static const char *const TAX[] = {"taxe", "taxes", "impot", "impots", "exoneration", NULL};
static const char *const DISPUTE[] = {"conflit", "conflits",  "litige",   "litiges",
                                      "dispute", "differend", "querelle", NULL};
/* a request to act (« envoyez le dossier à la DDT », « rédigez-moi la délibération »,
 * « pouvez-vous contacter le propriétaire »): the bot informs, it does not act; imperatives as a
 * message's first word, infinitives after « pouvez-vous », « tu peux », « merci de »... */
static const char *const ACT_IMPERATIVE[] = {
    "redigez",   "redige",   "relisez",     "relis",     "envoyez",   "envoie",  "appelez",
    "contactez", "contacte", "transmettez", "transmets", "inscrivez", "inscris", "remplissez",
    "remplis",   "deposez",  "faites",      "fais",      "ecrivez",   "ecris",   "preparez",
    "prepare",   "verifiez", "corrigez",    "corrige",   "prenez",    "prends",  "telephonez",
    "relancez",  "signez",   NULL};
static const char *const ACT_INFINITIVE[] = {
    "rediger",  "relire",  "envoyer",    "appeler",  "contacter", "transmettre",
    "inscrire", "remplir", "deposer",    "ecrire",   "preparer",  "verifier",
    "corriger", "prendre", "telephoner", "relancer", "signer",    NULL};
/* « pouvez-vous », « tu peux », « merci de »: the verb that asks for an act */
static const char *const CAN[] = {"pouvez", "pourriez", "peux", "pourrais",
                                  "voulez", "veuillez", NULL};
/* the bot's own services: asking it to pass a message to an advisor is a question it answers */
static const char *const BOT_SERVICE[] = {"conseiller", "conseillere", "humain",
                                          "bot",        "frichebot",   NULL};
/* what one asks to be sent that is information, not an act (« envoyez-moi le lien ») */
static const char *const INFO[] = {"lien",        "liens",        "liste",        "infos",
                                   "info",        "information",  "informations", "documentation",
                                   "explication", "explications", "source",       "sources",
                                   NULL};
/* words that ask how to find something out: « comment savoir ce que dit le cadastre pour la
 * parcelle AB 112 » is a general question, « la parcelle AB 245 est constructible ? » is not */
static const char *const HOW_TO[] = {"comment",   "ou",       "savoir", "sait",
                                     "trouver",   "voir",     "vois",   "connaitre",
                                     "consulter", "regarder", NULL};
/* a cadastral reference's words (« parcelle AB 245 », « section ZC n° 452 ») */
/* a fact about one place (« la population de notre commune », « la surface de notre friche ») */
static const char *const FACT[] = {"population", "superficie", "surface", "habitants",
                                   "insee",      "altitude",   NULL};
/* a state of a place asked yes or no (« notre friche est-elle dans Cartofriches ? ») */
static const char *const STATE[] = {"dans",        "classe",    "classee",    "pollue",
                                    "polluee",     "inscrit",   "inscrite",   "repertorie",
                                    "repertoriee", "reference", "referencee", "constructible",
                                    "inondable",   NULL};
static const char *const CADASTRE[] = {"parcelle",  "parcelles",  "section", "cadastre",
                                       "cadastree", "cadastrale", NULL};
/* after « combien de »: a duration or a count, not an amount */
static const char *const NOT_AMOUNT[] = {"temps",  "annees",    "ans",   "mois",
                                         "jours",  "semaines",  "delai", "heures",
                                         "etapes", "questions", NULL};
/* a document of the user's that only they can read: « notre PLU dit quoi sur la zone UX » */
static const char *const DOCUMENT[] = {
    "plu",      "plui",   "scot",         "reglement", "convention", "contrat", "bail",
    "courrier", "arrete", "deliberation", "compromis", "devis",      NULL};
/* of those, the papers of one case (not planning documents, whose rules are general):
 * « notre bail se termine quand », « relisez notre convention » ask about one paper */
static const char *const PAPER[] = {"convention", "contrat", "bail",        "courrier", "arrete",
                                    "compromis",  "devis",   "conventions", "contrats", "courriers",
                                    "acte",       "actes",   NULL};
static const char *const READS[] = {"dit",      "dise",     "prevoit", "stipule",  "indique",
                                    "autorise", "interdit", "impose",  "contient", NULL};
/* a decision on one's own paper: « on signe ? », « on la signe ou pas » */
static const char *const SIGN[] = {"signe", "accepte", NULL};
static const char *const OBJECT_PRONOUN[] = {"la", "le", "les", "l", NULL};
/* the bot's own follow-up, the one status it does know (« où en sont mes étapes ») */
static const char *const BOT_TRACKING[] = {"etape",         "etapes",        "feuille", "suivi",
                                           "recapitulatif", "questionnaire", NULL};
static const char *const OWN_PLACE[] = {
    "commune",          "village",  "ville",        "site",
    "terrain",          "friche",   "parcelle",     "projet",
    "dossier",          "chantier", "operation",    "usine",
    "batiment",         "mairie",   "collectivite", "departement",
    "intercommunalite", "epci",     "agglo",        "communaute",
    "decharge",         "carriere", "ecole",        "gare",
    "hangar",           "entrepot", "garage",       "station",
    "terrains",         "sites",    "friches",      "batiments",
    "communes",         "immeuble", "local",        NULL};

/* The word classes of the own-case and small-talk rules, looked up in one hash map
 * (`class_map`, built by fb_kb_new() from the tables below). */
enum {
    C_POSSESSIVE = 1 << 0,
    C_FILED = 1 << 1,
    C_DECIDED = 1 << 2,
    C_WE = 1 << 3,
    C_HAVE = 1 << 4,
    C_RECEIVED = 1 << 5,
    C_GIVEN_AUX = 1 << 6,
    C_GIVEN = 1 << 7,
    C_IDENTITY = 1 << 8,
    C_MONEY = 1 << 9,
    C_NOT_AMOUNT = 1 << 10,
    C_BOT_TRACKING = 1 << 11,
    C_OWN_PLACE = 1 << 12,
    C_SMALL_TALK = 1 << 13,
    C_THANKS = 1 << 14,
    C_THANKED = 1 << 15,
    C_GLUE = 1 << 16,
    C_STOP = 1 << 17,
    C_DOCUMENT = 1 << 18,
    C_READS = 1 << 19,
    C_SIGN = 1 << 20,
    C_OBJECT_PRONOUN = 1 << 21,
    C_FUTURE = 1 << 22,
    C_PRIVATE = 1 << 23,
    C_ACT_IMPERATIVE = 1 << 24,
    C_ACT_INFINITIVE = 1 << 25,
    C_CAN = 1 << 26,
    C_BOT_SERVICE = 1 << 27,
    C_HOW_TO = 1 << 28,
    C_CADASTRE = 1 << 29,
    C_PAPER = 1 << 30, /* the last bit: the map's values are positive ints */
};

static bool in(const fb_kb_t *kb, const char *w, unsigned c);
static unsigned word_classes(const fb_kb_t *kb, const char *w);

static bool is_digits(const char *w)
{
    return *w && w[strspn(w, "0123456789")] == '\0';
}

/* A cadastral section code (« AB », « ZC », « B »): one or two letters that are no word. */
static bool is_section_code(const char *w, unsigned c)
{
    static const char *const not_codes[] = {"a", "y", "l",  "d",  "j",  "n",  "s",  "c",
                                            "m", "t", "no", "ni", "oh", "ah", "eh", NULL};
    size_t len = strlen(w);
    if (len == 0 || len > 2 || (c & (C_STOP | C_GLUE | C_OBJECT_PRONOUN)) || word_in(w, not_codes))
        return false;
    for (size_t i = 0; i < len; i++)
        if (w[i] < 'a' || w[i] > 'z')
            return false;
    return true;
}

/* A cadastral reference after word `i` of `w` (« parcelle AB 245 », « parcelle n° 452 »,
 * « section ZC »): one plot, whose facts only the user's data can give. */
static bool cadastral_ref(const char *const *w, const unsigned *c, size_t n, size_t i)
{
    size_t j = i + 1;
    if (j < n && (strcmp(w[j], "n") == 0 || strcmp(w[j], "no") == 0 || strcmp(w[j], "numero") == 0))
        j++;
    if (j >= n)
        return false;
    if (is_digits(w[j]))
        return true;
    return is_section_code(w[j], c[j]) &&
           (strcmp(w[i], "section") == 0 || (j + 1 < n && is_digits(w[j + 1])));
}

static bool is_word(const char *w, const char *a)
{
    return strcmp(w, a) == 0;
}

/*
 * A request to act (refusal pass): an imperative as the first word after greetings and « svp »
 * (« envoyez le dossier à la DDT »), « pouvez-vous / tu peux / merci de » + an infinitive
 * (« pouvez-vous contacter le propriétaire ») or faire + a filed thing or a paper, « que vous »
 * + a subjunctive in -iez; except a message naming the advisor, the bot or information.
 */
static bool act_request(const char *const *w, const unsigned *c, size_t n)
{
    static const char *const skip[] = {"vous", "tu",  "me",   "m", "nous", "le", "la",
                                       "les",  "lui", "leur", "l", "de",   "d",  NULL};
    bool act = false;
    size_t i = 0;
    while (i < n && ((c[i] & C_SMALL_TALK) || is_word(w[i], "svp") || is_word(w[i], "stp") ||
                     is_word(w[i], "alors") || is_word(w[i], "euh")))
        i++;
    /* not « faites-vous des études ? », « envoyez-vous des rappels ? »: a question */
    if (i + 1 < n && (c[i] & C_ACT_IMPERATIVE) && !is_word(w[i + 1], "vous") &&
        !is_word(w[i + 1], "tu"))
        act = true;
    for (i = 0; i < n; i++) {
        /* « envoyez-moi le lien », « la liste des aides »: information, which the base gives */
        if ((c[i] & C_BOT_SERVICE) || word_in(w[i], INFO))
            return false;
        /* « je veux que vous appeliez la DDT »: a request in the subjunctive */
        if (i + 2 < n && is_word(w[i], "que") && is_word(w[i + 1], "vous")) {
            size_t l = strlen(w[i + 2]);
            if (l > 4 && strcmp(w[i + 2] + l - 3, "iez") == 0)
                act = true;
        }
        bool asks = (c[i] & C_CAN) &&
                    ((i + 1 < n && (is_word(w[i + 1], "vous") || is_word(w[i + 1], "tu"))) ||
                     (i > 0 && (is_word(w[i - 1], "vous") || is_word(w[i - 1], "tu"))));
        if (is_word(w[i], "merci") && i + 1 < n &&
            (is_word(w[i + 1], "de") || is_word(w[i + 1], "d")))
            asks = true;
        if (!asks)
            continue;
        size_t j = i + 1;
        while (j < n && j <= i + 4 && word_in(w[j], skip))
            j++;
        if (j < n && (c[j] & C_ACT_INFINITIVE))
            act = true;
        /* « pouvez-vous faire le dossier », not « pouvez-vous faire un point » */
        if (j + 2 < n && is_word(w[j], "faire") &&
            ((c[j + 1] & (C_FILED | C_PAPER)) || (c[j + 2] & (C_FILED | C_PAPER))))
            act = true;
    }
    return act;
}

/* Yes or no about our place (the inversion) at possessive `i`: « notre friche est-elle dans
 * Cartofriches ? », « notre terrain est-il pollué ? »; « notre commune est-elle éligible » is a
 * rule the base states with the commune's data. */
static bool place_state_at(const char *const *w, const unsigned *c, size_t n, size_t i)
{
    if (!((c[i] & C_POSSESSIVE) && i + 1 < n && (c[i + 1] & C_OWN_PLACE)))
        return false;
    for (size_t j = i + 2; j + 2 < n && j <= i + 4; j++)
        if ((is_word(w[j], "est") || is_word(w[j], "sont")) &&
            (is_word(w[j + 1], "il") || is_word(w[j + 1], "elle") || is_word(w[j + 1], "ils") ||
             is_word(w[j + 1], "elles")) &&
            (word_in(w[j + 2], STATE) || (j + 3 < n && word_in(w[j + 3], STATE))))
            return true;
    return false;
}

/*
 * The refusal pass's shapes that need no other (docs/internals/KB.md): yes or no about our
 * place, a fact about it (« la population de notre commune »), one plot by its cadastral
 * reference, a citizen's application, private life, our own figure (« notre taux de DETR »);
 * the first two and the plot not when the question asks how to find out.
 */
static bool place_shapes(const char *const *w, const unsigned *c, const unsigned *d, size_t n)
{
    bool how_to = false, state = false, cadastral = false, tax = false;
    for (size_t i = 0; i < n && !tax; i++)
        tax = (d[i] & D_TAX) != 0;
    for (size_t i = 0; i < n; i++) {
        if ((c[i] & C_HOW_TO) && !(is_word(w[i], "ou") && i + 1 < n &&
                                   (is_word(w[i + 1], "pas") || is_word(w[i + 1], "non"))))
            how_to = true;
        if (place_state_at(w, c, n, i))
            state = true;
        if ((c[i] & C_CADASTRE) && cadastral_ref(w, c, n, i))
            cadastral = true;
        if (word_in(w[i], FACT)) {
            size_t j = i + 1;
            if (j < n && (is_word(w[j], "de") || is_word(w[j], "du") || is_word(w[j], "d")))
                j++;
            if (j + 1 < n && (c[j] & C_POSSESSIVE) && (c[j + 1] & C_OWN_PLACE))
                return true;
        }
        /* « le permis de construire d'un particulier »: a citizen's application, which the
         * town hall handles, not a friche project's */
        if ((c[i] & C_FILED))
            for (size_t j = i + 1; j < n && j <= i + 5; j++)
                if (is_word(w[j], "particulier") || is_word(w[j], "particuliers"))
                    return true;
        /* « ma maison », « son voisin », « mon fils », « chez moi » */
        if (is_word(w[i], "chez") && i + 1 < n && is_word(w[i + 1], "moi"))
            return true;
        /* « ma taxe foncière », « mes impôts », « le toit de ma grange »: a private person's
         * (first person singular only: « la commune et sa taxe d'aménagement », « le hangar et
         * sa toiture » are the base's) */
        if (i + 1 < n && (is_word(w[i], "mon") || is_word(w[i], "ma") || is_word(w[i], "mes")) &&
            (d[i + 1] & D_MY_PRIVATE))
            return true;
        if ((c[i] & C_PRIVATE) && i > 0)
            for (size_t j = i - 1;; j--) {
                if (is_word(w[j], "mon") || is_word(w[j], "ma") || is_word(w[j], "mes") ||
                    is_word(w[j], "son") || is_word(w[j], "sa") || is_word(w[j], "ses"))
                    return true;
                if (j == 0 || j + 2 == i)
                    break;
            }
        /* « notre taux de DETR », « nos coûts »: our own figure */
        if ((c[i] & C_POSSESSIVE) && i + 1 < n && (c[i + 1] & C_MONEY))
            return true;
        /* a private house: « une maison individuelle », « construire une maison » (not « une
         * maison de santé », « la maison du projet », « une maison France services »; not « des
         * maisons individuelles », which a friche can become, nor « rénover une maison », which
         * a commune can do) */
        if (is_word(w[i], "maison")) {
            if (i + 1 < n && is_word(w[i + 1], "individuelle"))
                return true;
            if (i >= 2 && (d[i - 2] & D_BUILD_HOUSE) &&
                (is_word(w[i - 1], "une") || is_word(w[i - 1], "ma") || is_word(w[i - 1], "sa")) &&
                !(i + 1 < n && (d[i + 1] & D_HOUSE_OF) &&
                  !(i + 2 < n && is_digits(w[i + 2])))) /* « une maison de 160 m2 » */
                return true;
        }
        /* a private person's taxes: « exonération de taxe foncière pour un particulier » */
        if ((is_word(w[i], "particulier") || is_word(w[i], "particuliers")) && tax)
            return true;
        /* a verdict on people's health (« les enfants sont en danger ? », « les élèves ont été
         * exposés »): only a health service or a diagnosis can say; not « les passants » or
         * « les riverains sont en danger », the mayor's safety powers */
        if ((d[i] & D_OCCUPANTS))
            for (size_t j = i + 1; j < n && j <= i + 3; j++)
                if ((d[j] & D_HARMED) && !(is_word(w[j], "danger") && !is_word(w[j - 1], "en")))
                    return true;
        /* a neighbour dispute: « conflit avec le voisin », « litige entre voisins » */
        if ((d[i] & D_DISPUTE))
            for (size_t j = i + 1; j < n && j <= i + 3; j++)
                if (is_word(w[j], "voisin") || is_word(w[j], "voisins") ||
                    is_word(w[j], "voisine") || is_word(w[j], "voisinage"))
                    return true;
    }
    return (state || cadastral) && !how_to;
}

/* What the refusal pass's other shapes need, found in one pass (own_case() combines them). */
struct own_verbs {
    bool future_us;      /* « on va toucher », « va nous coûter », « ça va coûter » */
    bool received_loose; /* « on a pas eu », « on n'a toujours pas touché » */
    bool signed_us;      /* « qu'on a signée » */
    bool already, why;   /* « déjà », « pourquoi » */
    bool chez_nous;      /* « chez nous »: a place of ours */
    bool decided_ours;   /* « la Région a validé notre plan » */
    bool sent_us;        /* « le notaire nous a envoyé l'acte » */
    bool missed_us;      /* « on a raté la date limite », « j'ai oublié de délibérer » */
};

/* After an auxiliary, the decision on a thing of ours (« la Région a validé notre plan de
 * financement », « la DDT a refusé notre permis »); as participles only, so « instruit » and
 * « signé » count here. */
static const char *const DECISION[] = {
    "valide",   "validee",   "accepte", "acceptee", "refuse",   "refusee",  "retenu",
    "retenue",  "rejete",    "rejetee", "accorde",  "accordee", "instruit", "instruite",
    "approuve", "approuvee", "examine", "examinee", "signe",    "signee",   NULL};
/* what a body sends us (« nous a envoyé / transmis / notifié »): with a paper, one of our case */
static const char *const SENT[] = {"envoye",   "envoyee", "transmis", "transmise", "notifie",
                                   "notifiee", "adresse", "remis",    "remise",    NULL};
static const char *const AUX[] = {"a", "ont", "as", "avez", "avait", "avaient", NULL};
/* what we missed or forgot (« on a raté la date », « j'ai oublié de délibérer »): a slip of
 * one's own case, whose consequences only a person can weigh */
static const char *const MISSED[] = {"rate",   "ratee",   "loupe",   "loupee",   "manque",
                                     "oublie", "oubliee", "depasse", "depassee", NULL};

/* « X a (déjà) validé notre Y » at `i`, « X nous a (bien) envoyé ... » at `i`. */
static void scan_aux(const char *const *w, size_t n, size_t i, struct own_verbs *v)
{
    if (!word_in(w[i], AUX))
        return;
    size_t j = i + 1;
    if (j < n && (is_word(w[j], "deja") || is_word(w[j], "bien")))
        j++;
    if (j >= n)
        return;
    if (word_in(w[j], DECISION))
        for (size_t k = j + 1; k < n && k <= j + 2; k++)
            if (is_word(w[k], "notre") || is_word(w[k], "nos") || is_word(w[k], "mon") ||
                is_word(w[k], "ma") || is_word(w[k], "mes"))
                v->decided_ours = true;
    if (i > 0 && is_word(w[i - 1], "nous") && word_in(w[j], SENT))
        v->sent_us = true;
}

static void scan_own_verbs(const char *const *w, const unsigned *c, size_t n, struct own_verbs *v)
{
    static const char *const money_verbs[] = {"couter",   "rapporter", "toucher", "percevoir",
                                              "recevoir", "payer",     "obtenir", NULL};
    static const char *const adverbs[] = {"pas",  "jamais", "toujours", "deja", "bien",
                                          "rien", "encore", "plus",     "n",    NULL};
    memset(v, 0, sizeof(*v));
    for (size_t i = 0; i < n; i++) {
        scan_aux(w, n, i, v);
        v->already |= is_word(w[i], "deja");
        v->why |= is_word(w[i], "pourquoi");
        if (is_word(w[i], "chez") && i + 1 < n && is_word(w[i + 1], "nous"))
            v->chez_nous = true;
        if (i + 1 < n && (c[i] & C_FUTURE) &&
            (word_in(w[i + 1], money_verbs) || is_word(w[i + 1], "nous") ||
             is_word(w[i + 1], "me") || is_word(w[i + 1], "m")))
            v->future_us = true;
        if (!(c[i] & C_WE))
            continue;
        if (i + 1 < n && (c[i + 1] & C_FUTURE))
            v->future_us = true;
        size_t j = i + 1;
        if (j < n && is_word(w[j], "n"))
            j++;
        if (!(j < n && (c[j] & C_HAVE)))
            continue;
        for (size_t k = j + 1; k < n && k <= j + 3; k++) {
            if ((c[k] & C_RECEIVED)) {
                v->received_loose = true;
                break;
            }
            if (word_in(w[k], MISSED)) {
                v->missed_us = true;
                break;
            }
            if (strncmp(w[k], "signe", 5) == 0 && strlen(w[k]) <= 7) {
                v->signed_us = true;
                break;
            }
            if (!word_in(w[k], adverbs))
                break;
        }
    }
}

/* Names of départements and régions that are also words of everyday French: after « à »,
 * « de », « du », « pour » or « en » they are the word (« pour la somme des travaux », « à la
 * réunion du conseil », « le prix du lot », « en somme »); only « dans le / la » makes them the
 * place. A name the base itself uses (« cher ») counts as one too. */
static const char *const AREA_WORDS[] = {
    "ain",    "allier", "aube",  "cher", "creuse",  "doubs", "gard", "indre", "loire",  "lot",
    "manche", "marne",  "meuse", "nord", "reunion", "somme", "tarn", "var",   "vienne", NULL};

static void area_add(fb_kb_t *kb, const char *folded)
{
    if (!*folded || fb__strmap_get(&kb->area_map, folded) >= 0)
        return;
    kb->areas = fb_realloc(kb->areas, (kb->n_areas + 1) * sizeof(*kb->areas));
    char *k = fb_strdup(folded);
    kb->areas[kb->n_areas++] = k;
    (void)fb__strmap_put(&kb->area_map, k, 1);
    size_t words = 1;
    for (const char *p = k; *p; p++)
        words += *p == ' ';
    if (words > kb->area_words)
        kb->area_words = words;
}

void fb_kb_set_geo(fb_kb_t *kb, const fb_geo_t *geo)
{
    if (!kb || kb->geo)
        return;
    kb->geo = geo;
    fb_geo_area_t a;
    for (size_t i = 0; fb_geo_area_nth(geo, i, &a); i++) {
        char f[128];
        if (fb_text_fold(a.name, strlen(a.name), f, sizeof(f)) >= sizeof(f))
            continue;
        area_add(kb, f); /* « la reunion », « seine saint denis » */
        static const char *const ARTICLE[] = {"le ", "la ", "les ", "l "};
        for (size_t k = 0; k < FB_ARRAY_SIZE(ARTICLE); k++)
            if (strncmp(f, ARTICLE[k], strlen(ARTICLE[k])) == 0)
                area_add(kb, f + strlen(ARTICLE[k])); /* « reunion » */
    }
}

/* Words from `w[i]`: a preposition of place (« à », « de », « du », « pour », « en », « dans »),
 * maybe an article, then the name of a département or a région (« en Haute-Savoie », « de
 * l'Ardèche »; a code only after « dans le »: « dans le 93 »). The names come from the official
 * index (fb_kb_set_geo()); one that is also an everyday word or a word of the base (AREA_WORDS:
 * « cher », « somme ») is the place only after « dans » and an article (« dans le Cher »). */
static bool area_at(const fb_kb_t *kb, const char *const *w, size_t n, size_t i)
{
    static const char *const PREP[] = {"a", "de", "du", "pour", "en", "dans", NULL};
    static const char *const ARTICLE[] = {"le", "la", "les", "l", NULL};
    if (!kb->geo || !word_in(w[i], PREP))
        return false;
    size_t j = i + 1;
    bool article = j < n && word_in(w[j], ARTICLE);
    if (article)
        j++;
    char text[128];
    size_t len = 0;
    bool dans = is_word(w[i], "dans") && article;
    for (size_t k = j; k < n && k < j + kb->area_words; k++) {
        size_t wl = strlen(w[k]);
        if (len + wl + 2 > sizeof(text))
            break;
        if (len)
            text[len++] = ' ';
        memcpy(text + len, w[k], wl);
        len += wl;
        text[len] = '\0';
        bool digits = text[strspn(text, "0123456789ab")] == '\0';
        fb_geo_area_t a;
        if (digits) {
            if (dans && fb_geo_area(kb->geo, text, false, &a))
                return true;
        } else if (fb__strmap_get(&kb->area_map, text) >= 0) {
            bool word =
                k == j && (word_in(text, AREA_WORDS) || fb__strmap_get(&kb->surf_map, text) >= 0);
            if (!word || dans)
                return true;
        }
    }
    return false;
}

/* fb_kb_is_own_case() on folded `f` (modified); `kb` may be NULL (slower word lookups). */
/* Words `w[i]`, `w[i + 1]`: a preposition of place (« à », « a », « de », « du », « pour »)
 * then a word the base never uses, not a number: a named place (« à Lyon », « pour Tulle »). */
static bool named_place_at(const fb_kb_t *kb, const char *const *w, size_t i)
{
    static const char *const PLACE_PREP[] = {"a", "de", "du", "pour", NULL};
    bool prep = false;
    for (size_t k = 0; PLACE_PREP[k] && !prep; k++)
        prep = strcmp(w[i], PLACE_PREP[k]) == 0;
    const char *x = w[i + 1];
    return prep && strlen(x) >= 3 && x[strspn(x, "0123456789")] != '\0' &&
           fb__strmap_get(&kb->surf_map, x) < 0;
}

static bool own_case(const fb_kb_t *kb, char *f)
{
    const char *w[64];
    size_t n = 0;
    for (char *save = NULL, *p = strtok_r(f, " ", &save); p && n < FB_ARRAY_SIZE(w);
         p = strtok_r(NULL, " ", &save))
        w[n++] = p;
    unsigned c[FB_ARRAY_SIZE(w)]; /* each word's classes: one hash lookup per word */
    for (size_t i = 0; i < n; i++)
        c[i] = word_classes(kb, w[i]);
    bool filed_own = false, decided = false, money = false, own_place = false, identity = false,
         received = false, doc_own = false, doc = false, reads = false, paper_own = false,
         paper = false, named_place = false;
    for (size_t i = 0; i < n; i++)
        if ((c[i] & C_BOT_TRACKING))
            return false;
    unsigned d[FB_ARRAY_SIZE(w)];
    for (size_t i = 0; i < n; i++)
        d[i] = extra_classes(kb, w[i]);
    if (act_request(w, c, n) || place_shapes(w, c, d, n))
        return true;
    struct own_verbs v;
    scan_own_verbs(w, c, n, &v);
    own_place = v.chez_nous;
    for (size_t i = 0; i < n; i++) {
        if (i + 2 < n && strcmp(w[i], "ou") == 0 && strcmp(w[i + 1], "en") == 0 &&
            (strcmp(w[i + 2], "est") == 0 || strcmp(w[i + 2], "sont") == 0))
            return true;
        /* spoken, the same status: « il en est où », « ça en est où », « on en est où » */
        if (i + 2 < n && strcmp(w[i], "en") == 0 &&
            (strcmp(w[i + 1], "est") == 0 || strcmp(w[i + 1], "sont") == 0) &&
            strcmp(w[i + 2], "ou") == 0)
            return true;
        if ((c[i] & C_DECIDED))
            decided = true;
        if ((c[i] & C_PAPER))
            paper = true;
        if ((c[i] & C_IDENTITY))
            identity = true;
        if ((c[i] & C_DOCUMENT))
            doc = true;
        if ((c[i] & C_READS))
            reads = true;
        /* « on signe ? », « on la signe ou pas », « est-ce qu'on accepte » (the last words):
         * whether to sign one's own paper; « on signe le devis avant la subvention ? » asks
         * a rule */
        if ((c[i] & C_WE) && strcmp(w[i], "nous") != 0) {
            size_t j = i + 1;
            if (j < n && (c[j] & C_OBJECT_PRONOUN))
                j++;
            if (j < n && (c[j] & C_SIGN) &&
                (j + 1 == n || (strcmp(w[j + 1], "ou") == 0 && j + 2 < n &&
                                (strcmp(w[j + 2], "pas") == 0 || strcmp(w[j + 2], "non") == 0))))
                return true;
        }
        /* « on a touché », « nous avons perçu », « j'ai reçu » */
        if (i + 2 < n && (c[i] & C_WE) && (c[i + 1] & C_HAVE) && (c[i + 2] & C_RECEIVED))
            received = true;
        /* « la Banque des Territoires nous a déjà prêté », « l'EPF nous a signé » */
        if (i + 2 < n && strcmp(w[i], "nous") == 0 && (c[i + 1] & C_GIVEN_AUX)) {
            size_t j = i + 2;
            if (j + 1 < n && (strcmp(w[j], "deja") == 0 || strcmp(w[j], "bien") == 0))
                j++;
            if ((c[j] & C_GIVEN))
                return true;
        }
        /* « qui a gagné l'appel d'offres de juin », « qui a été retenu »: who won one round,
         * a fact the base does not hold */
        if (i + 2 < n && strcmp(w[i], "qui") == 0 &&
            (strcmp(w[i + 1], "a") == 0 || strcmp(w[i + 1], "ont") == 0)) {
            size_t j = i + 2;
            if (j + 1 < n && strcmp(w[j], "ete") == 0)
                j++;
            if (word_in(w[j], WINNER))
                return true;
        }
        /* « combien on a de budget », « combien nous avons en caisse »: what the user's body
         * has; « combien on a droit » asks a rule */
        if (i + 2 < n && strcmp(w[i], "combien") == 0 && (c[i + 1] & C_WE) && (c[i + 2] & C_HAVE) &&
            !(i + 3 < n && strcmp(w[i + 3], "droit") == 0))
            return true;
        if ((c[i] & C_MONEY)) {
            /* « combien de temps », « combien d'années »: a duration, not an amount */
            size_t j = i + 1;
            if (j < n && (strcmp(w[j], "de") == 0 || strcmp(w[j], "d") == 0))
                j++;
            if (!(strcmp(w[i], "combien") == 0 && j < n && (c[j] & C_NOT_AMOUNT)))
                money = true;
        }
        /* « dans la commune », « sur le village »: the user's own, as « notre commune »
         * (« à la commune » is the body a rule names: « combien rapporte ... à la commune ») */
        if (i + 2 < n && (is_word(w[i], "dans") || is_word(w[i], "sur")) &&
            (is_word(w[i + 1], "la") || is_word(w[i + 1], "le")) &&
            (is_word(w[i + 2], "commune") || is_word(w[i + 2], "village") ||
             is_word(w[i + 2], "ville")))
            own_place = true;
        /* « à Lyon », « de Brive », « pour Tulle »: a place the base never names, so one
         * commune's figure (« le taux de la taxe d'aménagement à Lyon ») */
        if (i + 1 < n && kb && (named_place_at(kb, w, i) || area_at(kb, w, n, i)))
            named_place = true;
        if (i + 1 < n && (c[i] & C_POSSESSIVE)) {
            /* the noun may follow an adjective: « notre ancien site » */
            for (size_t j = i + 1; j < n && j <= i + 2; j++) {
                if ((c[j] & C_FILED))
                    filed_own = true;
                if ((c[j] & C_OWN_PLACE))
                    own_place = true;
                if ((c[j] & C_DOCUMENT))
                    doc_own = true;
                if ((c[j] & C_PAPER))
                    paper_own = true;
            }
        }
    }
    return (filed_own && (decided || v.already)) ||
           (money && (own_place || named_place || received || v.future_us)) ||
           (identity && (own_place || named_place)) || (reads && (doc_own || (doc && own_place))) ||
           paper_own || (v.received_loose && (v.why || money)) ||
           ((v.signed_us || v.sent_us) && paper) || v.decided_ours || v.missed_us;
}

bool fb_kb_is_own_case(const char *question)
{
    char f[MAX_QUERY + 1];
    if (!question)
        return false;
    size_t need = fb_text_fold(question, strlen(question), f, sizeof(f));
    if (need >= sizeof(f))
        f[sizeof(f) - 1] = '\0';
    return own_case(NULL, f);
}

/*
 * Other town-hall business (docs/internals/KB.md, « Other town-hall business »): civil
 * registration, identity papers, school canteens, elections, cemeteries, roads, a citizen's
 * housing application, hiring the village hall, the mayor's absence (who signs in their place),
 * an account on another site (a lost password). A secretary asks the bot about them in the same
 * words as about the friche (« demande », « logement social », « salle des fêtes », « acte »,
 * « carte »), so one shared word can score high; none is the base's subject. Folded phrases,
 * whole words. « Salle des fêtes » alone is not here: a friche can become one.
 */
static const char *const OFF_TOPIC[] = {
    "etat civil", "acte de naissance", "acte de mariage", "acte de deces", "carte d identite",
    "cartes d identite", "carte grise", "permis de conduire", "passeport", "cantine",
    "periscolaire", "liste electorale", "listes electorales", "bureau de vote", "cimetiere",
    "concession funeraire", "nid de poule", "nids de poule", "taxe d habitation",
    "demande de logement", "demandes de logement", "louer la salle", "location de la salle",
    "reserver la salle", "reservation de la salle", "louer une salle", "indemnites des elus",
    "indemnite des elus", "indemnites de fonction", "budget primitif", "compte administratif",
    "mot de passe", "mots de passe", "identifiant", "identifiants", "maire est malade",
    "maire est absent", "maire est empeche", "absence du maire", "empechement du maire",
    "a la place du maire", "delegation de signature",
    /* a friche in the farming or forest sense */
    "remettre en culture", "remise en culture", "aides pac", "aide pac", "jachere", "jacheres",
    "defrichement", "defricher", "debroussaillement", "debroussailler",
    /* air, drinking water, noise: not the soil */
    "pollution de l air", "qualite de l air", "pollution atmospherique", "pic de pollution",
    "pollution sonore", "nuisances sonores", "nuisance sonore", "eau du robinet", "eau potable",
    "epandage",
    /* a private person's taxes and fees */
    "impot sur le revenu", "plus value", "droits de succession", "frais de notaire",
    "frais d agence", "moins d impots", "defiscalisation", "defiscaliser", "reduction d impot",
    "reduction d impots", "credit d impot", "declaration d impots", "declaration d impot",
    "declaration de revenus",
    /* politics: the bot has no vote nor party */
    "tu votes", "vous votez", "pour qui voter", "elections municipales", "parti politique",
    "politiquement",
    /* a private person's small works */
    "changer les fenetres", "changer des fenetres", "abri de jardin",
    /* neighbours */
    "trouble de voisinage", "troubles de voisinage", "troubles du voisinage",
    "conflit de voisinage", "entre voisins", "entre deux voisins", NULL};

/* Statistics the base does not hold: « combien de communes ont eu le fonds vert », « quel
 * pourcentage des sites sont pollués »: an opener, « de / d' / des », then a thing counted; not
 * « combien d'habitants » nor « de m2 », thresholds the base gives, nor « combien de temps »;
 * not « nombre de », which also states a rule (« fixer dans le PLU le nombre de logements »). */
static const char *const STAT_OPENER[] = {"combien", "pourcentage", "proportion", "statistiques",
                                          NULL};
static const char *const COUNTED[] = {
    "communes",  "dossiers",    "projets",       "friches",       "sites",        "logements",
    "panneaux",  "laureats",    "beneficiaires", "collectivites", "hectares",     "emplois",
    "eoliennes", "entreprises", "terrains",      "batiments",     "candidatures", NULL};

/* An exact figure (« le budget exact du fonds vert pour 2027 », « combien exactement »): the
 * base gives orders of magnitude and rules, never an exact amount. */
static const char *const EXACT[] = {"exact",      "exacte", "exacts",  "exactes",
                                    "exactement", "precis", "precise", NULL};
static const char *const FIGURE[] = {"combien", "montant", "montants", "budget",  "prix",
                                     "cout",    "taux",    "tarif",    "chiffre", NULL};

static bool statistic(const fb_kb_t *kb, const char *f)
{
    const char *w[3] = {NULL, NULL, NULL};
    unsigned d[3] = {0, 0, 0};
    bool exact = false, figure = false;
    char buf[MAX_QUERY + 1];
    snprintf(buf, sizeof(buf), "%s", f);
    for (char *save = NULL, *p = strtok_r(buf, " ", &save); p; p = strtok_r(NULL, " ", &save)) {
        w[0] = w[1];
        w[1] = w[2];
        w[2] = p;
        d[0] = d[1];
        d[1] = d[2];
        d[2] = extra_classes(kb, p);
        exact = exact || (d[2] & D_EXACT);
        figure = figure || (d[2] & D_FIGURE);
        if (w[0] && (d[0] & D_STAT_OPENER) &&
            (strcmp(w[1], "de") == 0 || strcmp(w[1], "d") == 0 || strcmp(w[1], "des") == 0) &&
            (d[2] & D_COUNTED))
            return true;
    }
    return exact && figure;
}

static bool off_topic(const fb_kb_t *kb, const char *f)
{
    if (statistic(kb, f))
        return true;
    /* one pass over the word starts: a first-letter test rejects nearly every phrase */
    for (const char *p = f; *p; p++) {
        if (*p == ' ' || (p != f && p[-1] != ' '))
            continue;
        for (const char *const *ph = OFF_TOPIC; *ph; ph++) {
            if (**ph != *p)
                continue;
            size_t len = strlen(*ph);
            if (strncmp(p, *ph, len) == 0 && (p[len] == '\0' || p[len] == ' '))
                return true;
        }
    }
    return false;
}

bool fb_kb_is_off_topic(const char *message)
{
    char f[MAX_QUERY + 1];
    if (!message)
        return false;
    size_t need = fb_text_fold(message, strlen(message), f, sizeof(f));
    if (need >= sizeof(f))
        f[sizeof(f) - 1] = '\0';
    return off_topic(NULL, f);
}

/*
 * Small talk (docs/internals/KB.md, « Politeness and chit-chat »): thanks, greetings, goodbyes,
 * agreement, a remark about the bot. Such a message has no question for the base, but its words
 * meet the base's by accident (« ça marche » and the market study, « au revoir » and « revoir mes
 * réponses », « merci beaucoup » and « beaucoup » in an answer), and one matched word over a
 * short message scores high. A message whose every word is a stop word or one of these, with at
 * least one of these, is never answered confidently.
 */
static const char *const SMALL_TALK[] = {
    "merci",      "mercii",  "beaucoup", "bcp",          "remercie", "remercions", "remerciements",
    "infiniment", "bonjour", "bonsoir",  "salut",        "slt",      "bjr",        "bsr",
    "coucou",     "hello",   "hey",      "revoir",       "plus",     "bientot",    "tard",
    "bonne",      "bon",     "journee",  "soiree",       "semaine",  "weekend",    "nuit",
    "ok",         "okay",    "oki",      "okk",          "dac",      "daccord",    "accord",
    "entendu",    "compris", "note",     "super",        "genial",   "parfait",    "top",
    "cool",       "marche",  "sympa",    "gentil",       "gentille", "nul",        "nulle",
    "haha",       "hahaha",  "hihi",     "lol",          "mdr",      "ptdr",       "bravo",
    "excellent",  "allez",   "aller",    "vas",          "va",       "tres",       "oui",
    "non",        "ouais",   "yes",      "cordialement", "madame",   "monsieur",   "aussi",
    "tout",       "ciao",    "bye",      "tchao",        "re",       NULL};

/* what one thanks for (« merci pour votre aide »): small talk only with a word of thanks */
static const char *const THANKS[] = {"merci", "mercii", "remercie", "remercions", NULL};
static const char *const THANKED[] = {"aide",        "reponse",      "reponses", "patience",
                                      "temps",       "infos",        "info",     "conseils",
                                      "information", "informations", NULL};

static const char *const BARE_GLUE[] = {"le", "la",  "les", "un", "une", "des",  "du", "de",
                                        "au", "aux", "en",  "et", "sur", "pour", "ou", NULL};

static const struct {
    const char *const *words;
    unsigned bit;
} CLASSES[] = {
    {POSSESSIVE, C_POSSESSIVE},
    {FILED, C_FILED},
    {DECIDED, C_DECIDED},
    {WE, C_WE},
    {HAVE, C_HAVE},
    {RECEIVED, C_RECEIVED},
    {GIVEN_AUX, C_GIVEN_AUX},
    {GIVEN, C_GIVEN},
    {IDENTITY, C_IDENTITY},
    {MONEY, C_MONEY},
    {NOT_AMOUNT, C_NOT_AMOUNT},
    {BOT_TRACKING, C_BOT_TRACKING},
    {OWN_PLACE, C_OWN_PLACE},
    {SMALL_TALK, C_SMALL_TALK},
    {THANKS, C_THANKS},
    {THANKED, C_THANKED},
    {BARE_GLUE, C_GLUE},
    {DOCUMENT, C_DOCUMENT},
    {READS, C_READS},
    {SIGN, C_SIGN},
    {OBJECT_PRONOUN, C_OBJECT_PRONOUN},
    {FUTURE, C_FUTURE},
    {PRIVATE, C_PRIVATE},
    {ACT_IMPERATIVE, C_ACT_IMPERATIVE},
    {ACT_INFINITIVE, C_ACT_INFINITIVE},
    {CAN, C_CAN},
    {BOT_SERVICE, C_BOT_SERVICE},
    {HOW_TO, C_HOW_TO},
    {CADASTRE, C_CADASTRE},
    {PAPER, C_PAPER},
};

/* The classes of folded word `w`, from the tables. */
static unsigned classes_of(const char *w)
{
    unsigned c = 0;
    for (size_t k = 0; k < FB_ARRAY_SIZE(CLASSES); k++)
        if (word_in(w, CLASSES[k].words))
            c |= CLASSES[k].bit;
    for (size_t i = 0; i < FB_ARRAY_SIZE(stop_words); i++)
        if (strcmp(w, stop_words[i]) == 0)
            c |= C_STOP;
    for (size_t i = 0; i < FB_ARRAY_SIZE(fillers); i++)
        if (strcmp(w, fillers[i]) == 0)
            c |= C_STOP;
    return c;
}

static const struct {
    const char *const *words;
    unsigned bit;
} CLASSES2[] = {
    {EXACT, D_EXACT},
    {FIGURE, D_FIGURE},
    {STAT_OPENER, D_STAT_OPENER},
    {COUNTED, D_COUNTED},
    {TAX, D_TAX},
    {DISPUTE, D_DISPUTE},
    {BUILD_HOUSE, D_BUILD_HOUSE},
    {HOUSE_OF, D_HOUSE_OF},
    {MY_PRIVATE, D_MY_PRIVATE},
    {OCCUPANTS, D_OCCUPANTS},
    {HARMED, D_HARMED},
};

static unsigned classes2_of(const char *w)
{
    unsigned c = 0;
    for (size_t k = 0; k < FB_ARRAY_SIZE(CLASSES2); k++)
        if (word_in(w, CLASSES2[k].words))
            c |= CLASSES2[k].bit;
    return c;
}

/* The D_* classes of folded word `w`; `kb` NULL: from the tables. */
static unsigned extra_classes(const fb_kb_t *kb, const char *w)
{
    if (!kb)
        return classes2_of(w);
    int v = fb__strmap_get(&kb->class2_map, w);
    return v > 0 ? (unsigned)v : 0;
}

static void build_classes(fb_kb_t *kb)
{
    for (size_t k = 0; k < FB_ARRAY_SIZE(CLASSES); k++)
        for (const char *const *w = CLASSES[k].words; *w; w++)
            if (fb__strmap_get(&kb->class_map, *w) < 0)
                (void)fb__strmap_put(&kb->class_map, *w, (int)classes_of(*w));
    for (size_t i = 0; i < FB_ARRAY_SIZE(stop_words); i++)
        if (fb__strmap_get(&kb->class_map, stop_words[i]) < 0)
            (void)fb__strmap_put(&kb->class_map, stop_words[i], (int)classes_of(stop_words[i]));
    for (size_t i = 0; i < FB_ARRAY_SIZE(fillers); i++)
        if (fb__strmap_get(&kb->class_map, fillers[i]) < 0)
            (void)fb__strmap_put(&kb->class_map, fillers[i], (int)classes_of(fillers[i]));
    for (size_t i = 0; i < FB_ARRAY_SIZE(SMS); i++)
        (void)fb__strmap_put(&kb->sms_map, SMS[i][0], (int)i);
    for (size_t k = 0; k < FB_ARRAY_SIZE(CLASSES2); k++)
        for (const char *const *w = CLASSES2[k].words; *w; w++)
            if (fb__strmap_get(&kb->class2_map, *w) < 0)
                (void)fb__strmap_put(&kb->class2_map, *w, (int)classes2_of(*w));
}

/* True when folded word `w` is of one of classes `c`; `kb` NULL: from the tables. */
static bool in(const fb_kb_t *kb, const char *w, unsigned c)
{
    if (!kb)
        return (classes_of(w) & c) != 0;
    int v = fb__strmap_get(&kb->class_map, w);
    return v > 0 && ((unsigned)v & c) != 0;
}

/* All the classes of folded word `w`; `kb` NULL: from the tables. */
static unsigned word_classes(const fb_kb_t *kb, const char *w)
{
    if (!kb)
        return classes_of(w);
    int v = fb__strmap_get(&kb->class_map, w);
    return v > 0 ? (unsigned)v : 0;
}

/* fb_kb_is_small_talk() on folded `f` (modified); `kb` may be NULL. */
static bool small_talk(const fb_kb_t *kb, char *f)
{
    bool polite = false, thanks = false, thanked = false, testing = false, bot = false;
    /* « je teste le bot », « test », « c'est un essai »: trying the bot out, not a question;
     * the bot's name counts as small talk only then (« c'est quoi ce bot » is a question) */
    static const char *const trying[] = {"test",  "teste",  "tester", "testons",
                                         "essai", "essaye", "essaie", NULL};
    static const char *const bot_names[] = {"bot",     "chatbot", "robot", "frichebot",
                                            "systeme", "truc",    "outil", NULL};
    for (char *save = NULL, *p = strtok_r(f, " ", &save); p; p = strtok_r(NULL, " ", &save)) {
        if (strlen(p) < 2)
            continue;
        if (word_in(p, trying)) {
            testing = polite = true;
            continue;
        }
        if (word_in(p, bot_names)) {
            bot = true;
            continue;
        }
        if (in(kb, p, C_THANKS))
            thanks = true;
        if (in(kb, p, C_SMALL_TALK))
            polite = true;
        else if (in(kb, p, C_THANKED))
            thanked = true;
        else if (!in(kb, p, C_STOP))
            return false;
    }
    return polite && (thanks || !thanked) && (!bot || testing);
}

bool fb_kb_is_small_talk(const char *message)
{
    char f[MAX_QUERY + 1];
    if (!message)
        return false;
    size_t need = fb_text_fold(message, strlen(message), f, sizeof(f));
    if (need >= sizeof(f))
        return false; /* a long message is not small talk */
    return small_talk(NULL, f);
}

/*
 * Phrases of a question whose meaning is in words the analysis drops (stop words) or that carry
 * none: « jusqu'à quand » asks a deadline, « qui es-tu » what the bot is (« bot » is in the
 * base's synonyms of frichebot), « en fait », « du coup », « en gros » are fillers whose
 * words meet answers by accident (« fait » and « étape faite », « coup » and « vaut le coup »).
 * Rewritten in the folded question, whole words only; a replacement is never longer.
 */
static const char *const PHRASES[][2] = {
    {"jusqu a quand", "date limite"},
    {"jusque quand", "date limite"},
    {"jusqua quand", "date limite"},
    /* « qui es-tu ? », « t'es qui ? »: stop words only, but they ask what the bot is */
    {"qui es tu", "bot"},
    {"t es qui", "bot"},
    {"tu es qui", "bot"},
    {"qui etes vous", "bot"},
    {"vous etes qui", "bot"},
    {"en fait", ""},
    {"du coup", ""},
    {"en gros", ""},
    /* « ça marche pas »: a complaint about the bot, and « marché » folds to « marche » */
    {"ca marche pas", ""},
    {"ca ne marche pas", ""},
    /* a letter's formulas and the writer introducing themselves: the question is elsewhere,
     * and « avance », « retour », « mairie » are words of the base */
    {"merci d avance", ""},
    {"merci par avance", ""},
    {"merci de votre retour", ""},
    {"merci pour votre retour", ""},
    {"dans l attente de votre retour", ""},
    {"bonjour a tous", ""},
    {"je suis secretaire de mairie", ""},
    {"je suis la secretaire de mairie", ""},
    {"je suis le secretaire de mairie", ""},
    {"la secretaire de mairie", ""},
    {"le secretaire de mairie", ""},
    {"je suis le maire", ""},
    {"je suis la maire", ""},
    {"je suis maire", ""},
    {"je suis charge de mission", ""},
    {"je suis chargee de mission", ""},
    {"je suis elu", ""},
    {"je suis elue", ""},
    {"je suis adjoint", ""},
    {"je suis adjointe", ""},
};

static void rewrite_phrases(char *f)
{
    /* one pass over the word starts: a first-letter test rejects nearly every word */
    for (char *p = f; *p; p++) {
        if (p != f && p[-1] != ' ')
            continue;
        for (size_t k = 0; k < FB_ARRAY_SIZE(PHRASES); k++) {
            const char *from = PHRASES[k][0], *to = PHRASES[k][1];
            if (*p != *from)
                continue;
            size_t fl = strlen(from), tl = strlen(to);
            if (strncmp(p, from, fl) != 0 || (p[fl] != '\0' && p[fl] != ' '))
                continue;
            memcpy(p, to, tl);
            memset(p + tl, ' ', fl - tl); /* the tokenizer skips runs of spaces */
            p += fl - 1;
            break;
        }
    }
}

/* Analyses a question (search side): at most `cap` tokens into `t`. */
static size_t analyse_query(const fb_kb_t *kb, const char *text, struct tok *t, size_t cap,
                            struct sb_stemmer **st)
{
    char f[MAX_QUERY + 1];
    size_t len = strlen(text);
    size_t need = fb_text_fold(text, len, f, sizeof(f));
    if (need >= sizeof(f)) { /* cut: drop the last, partial word */
        char *sp = strrchr(f, ' ');
        if (sp)
            *sp = '\0';
    }
    rewrite_phrases(f);
    size_t n = tokens(NULL, kb, false, st, f, t, cap);
    return apply_synonyms(kb, t, n);
}

/*
 * A bare name (« ZAN ? », « avis du domaine », « la DDTM »): a short message of content words,
 * articles and prepositions only, no interrogative word, no verb the base ignores. People type
 * the name of what they want explained; such a message asks what « c'est quoi X » asks.
 */
#define BARE_MAX_WORDS 4
/* ln 2: the idf of a term that half the answers use */
#define BARE_MIN_IDF 0.6931

static bool is_bare(const fb_kb_t *kb, const char *f)
{
    size_t words = 0;
    const char *p = f;
    char w[MAX_WORD + 1];
    while (*p) {
        while (*p == ' ')
            p++;
        const char *s = p;
        while (*p && *p != ' ')
            p++;
        size_t len = (size_t)(p - s);
        if (len < 2)
            continue;
        if (++words > BARE_MAX_WORDS || len > MAX_WORD)
            return false;
        memcpy(w, s, len);
        w[len] = '\0';
        if (in(kb, w, C_GLUE))
            continue;
        if (fb__strmap_get(&kb->surf_map, w) == 0)
            return false; /* a stop word that is no glue: « quand », « combien », « faut »... */
    }
    return words > 0;
}

/* For a definition question (or a bare name) whose terms are exactly those of one answer's
 * definition question, among the hits: that hit's index in res->hits; -1 otherwise (none, or
 * several answers). */
static int defining_hit(const fb_kb_t *kb, const char *question, const struct tok *t, size_t n,
                        const fb_kb_result_t *res)
{
    char f[MAX_QUERY + 1];
    (void)fb_text_fold(question, strlen(question), f, sizeof(f));
    bool definition = n > 0 && is_definition(f);
    if (n == 0 || !(definition || is_bare(kb, f)))
        return -1;
    int ids[64];
    size_t k = term_set(t, n < FB_ARRAY_SIZE(ids) ? n : FB_ARRAY_SIZE(ids), ids);
    if (k == 0)
        return -1;
    /* A bare name must name something: a word that half the answers or more use (« friche »
     * in a base about friches) is its subject, and « la friche » alone asks nothing yet;
     * « c'est quoi une friche » still asks its definition. */
    if (!definition) {
        bool named = false;
        for (size_t i = 0; i < k && !named; i++)
            named = (size_t)ids[i] < kb->n_terms && kb->idf[ids[i]] > BARE_MIN_IDF;
        if (!named)
            return -1;
    }
    int found = -1;
    for (size_t i = 0; i < res->n; i++) {
        if (!doc_defines(&kb->docs[res->hits[i].doc], ids, k))
            continue;
        if (found >= 0)
            return -1;
        found = (int)i;
    }
    return found;
}

/* The weight of term `id` in answer `doc` (its posting), 0 when the answer lacks it. */
static double posting(const fb_kb_t *kb, size_t id, int doc)
{
    for (size_t k = kb->post_start[id]; k < kb->post_start[id + 1]; k++)
        if (kb->post_doc[k] == doc)
            return (double)kb->post_w[k];
    return 0;
}

/* The stems of the nouns that name one thing of a kind: « la loi Climat », « le programme
 * Territoires d'industrie », « la société Helio Sud », « le cabinet X », « le groupe X ». */
static const char *const NAMED_KIND[] = {"loi",   "=programm", "disposit", "cabinet",
                                         "group", "contrat",   NULL};

/* Whether tokens `t` (`n`, in order) hold a kind noun followed by a name (the next term) that
 * answer `doc` does not hold in any field, or that the base never uses. */
static bool named_elsewhere(const fb_kb_t *kb, const struct tok *t, size_t n, int doc)
{
    for (size_t i = 0; i + 1 < n; i++) {
        bool kind = false;
        for (size_t k = 0; NAMED_KIND[k] && !kind; k++)
            kind = strcmp(t[i].stem, NAMED_KIND[k]) == 0;
        if (!kind)
            continue;
        const struct tok *x = &t[i + 1];
        if (x->id < 0 || (size_t)x->id >= kb->n_terms) {
            if (x->stem[strspn(x->stem, "0123456789")] != '\0')
                return true;
            continue;
        }
        if (posting(kb, (size_t)x->id, doc) <= 0)
            return true;
    }
    return false;
}

/* The sentence of a message of several that asks its question: the last one ending with « ? »,
 * else the last one; false when the message is one sentence. */
static bool question_sentence(const char *q, size_t *start, size_t *len)
{
    size_t n = strlen(q), end = n;
    while (end > 0 && (q[end - 1] == ' ' || q[end - 1] == '\n' || q[end - 1] == '.' ||
                       q[end - 1] == '!' || q[end - 1] == '?'))
        end--;
    const char *qm = NULL;
    for (const char *p = q; (p = strchr(p, '?')) != NULL; p++)
        if ((size_t)(p - q) < end)
            qm = p;
    if (qm && (size_t)(qm - q) + 1 < n) {
        /* a « ? » before the end: its sentence */
        end = (size_t)(qm - q);
    }
    size_t b = end;
    while (b > 0 && q[b - 1] != '.' && q[b - 1] != '!' && q[b - 1] != '?' && q[b - 1] != '\n')
        b--;
    if (b == 0)
        return false;
    *start = b;
    *len = end - b;
    return *len > 0;
}

/* What the terms of a question add up to (fb_kb_search()). */
struct scoring {
    double *score; /* per answer */
    double most;   /* the most the question could score */
    /* the terms guessed from typos, and how much each counts */
    int typo_id[8];
    double typo_mult[8];
    size_t n_typo;
};

/* Adds the distinct terms of t[0..n) to the answers' scores, each `weight` times; an unknown
 * stem counts against the question's most. Returns the number of distinct terms. */
static size_t add_terms(const fb_kb_t *kb, const struct tok *t, size_t n, double weight,
                        struct scoring *sc)
{
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = t[j].id >= 0 ? t[j].id == t[i].id : strcmp(t[j].stem, t[i].stem) == 0;
        if (seen)
            continue;
        distinct++;
        if (t[i].id < 0 || (size_t)t[i].id >= kb->n_terms) {
            /* a number the base never uses (« 350 habitants », « en 2012 », « AB 112 ») is a
             * detail of the user's case, not a subject the base lacks */
            if (t[i].stem[strspn(t[i].stem, "0123456789")] != '\0')
                sc->most += weight * FB_KB_UNKNOWN_WEIGHT * kb->max_idf;
            continue;
        }
        size_t id = (size_t)t[i].id;
        if (t[i].typo && sc->n_typo < FB_ARRAY_SIZE(sc->typo_id)) {
            sc->typo_id[sc->n_typo] = (int)id;
            sc->typo_mult[sc->n_typo++] = weight;
        }
        sc->most += weight * kb->idf[id];
        for (size_t k = kb->post_start[id]; k < kb->post_start[id + 1]; k++)
            sc->score[kb->post_doc[k]] += weight * (double)kb->post_w[k];
    }
    return distinct;
}

void fb_kb_search(const fb_kb_t *kb, const char *question, fb_kb_result_t *res)
{
    memset(res, 0, sizeof(*res));
    if (!kb || !kb->built || kb->n_docs == 0 || !question)
        return;
    struct tok t[64];
    struct sb_stemmer *st = NULL;
    size_t n = analyse_query(kb, question, t, FB_ARRAY_SIZE(t), &st);
    if (st)
        sb_stemmer_delete(st);
    double stack_scores[STACK_DOCS];
    double *score =
        kb->n_docs <= STACK_DOCS ? stack_scores : fb_malloc(kb->n_docs * sizeof(double));
    memset(score, 0, kb->n_docs * sizeof(double));
    struct scoring sc = {.score = score};
    res->n_terms = add_terms(kb, t, n, 1, &sc);
    {
        /* a message of several sentences: the terms of the one that asks count once more
         * (« Bonjour, nous sommes une commune de 2 500 habitants [...]. Avant tout, est-ce que
         * l'EPF peut acheter le terrain pour nous ? »: the context outweighed the question) */
        size_t qs = 0, ql = 0;
        if (question_sentence(question, &qs, &ql)) {
            char buf[MAX_QUERY + 1];
            if (ql > MAX_QUERY)
                ql = MAX_QUERY;
            memcpy(buf, question + qs, ql);
            buf[ql] = '\0';
            struct tok u[64];
            struct sb_stemmer *st2 = NULL;
            size_t m = analyse_query(kb, buf, u, FB_ARRAY_SIZE(u), &st2);
            if (st2)
                sb_stemmer_delete(st2);
            (void)add_terms(kb, u, m, FB_KB_FOCUS_WEIGHT, &sc);
        }
    }
    double most = sc.most;
    for (size_t d = 0; d < kb->n_docs; d++) {
        double s = score[d];
        if (s <= 0)
            continue;
        size_t pos = res->n < FB_KB_MAX_HITS ? res->n : FB_KB_MAX_HITS;
        while (pos > 0 && res->hits[pos - 1].score < s)
            pos--;
        if (pos >= FB_KB_MAX_HITS)
            continue;
        size_t last = res->n < FB_KB_MAX_HITS ? res->n : FB_KB_MAX_HITS - 1;
        memmove(&res->hits[pos + 1], &res->hits[pos], (last - pos) * sizeof(res->hits[0]));
        res->hits[pos] = (fb_kb_hit_t){(int)d, s};
        if (res->n < FB_KB_MAX_HITS)
            res->n++;
    }
    if (score != stack_scores)
        fb_free(score);
    bool how_much = false; /* « combien » */
    {
        char f[MAX_QUERY + 1];
        size_t need = fb_text_fold(question, strlen(question), f, sizeof(f));
        if (need >= sizeof(f))
            f[sizeof(f) - 1] = '\0';
        char g[MAX_QUERY + 1];
        memcpy(g, f, sizeof(f));
        res->off_topic = off_topic(kb, f);
        for (const char *p = strstr(f, "combien"); p && !how_much; p = strstr(p + 1, "combien"))
            how_much = (p == f || p[-1] == ' ') && (p[7] == '\0' || p[7] == ' ');
        res->own_case = own_case(kb, g);
        res->small_talk = need < sizeof(f) && small_talk(kb, f);
    }
    if (res->n == 0 || most <= 0)
        return;
    double top = res->hits[0].score, second = res->n > 1 ? res->hits[1].score : 0;
    res->norm = top / most;
    if (res->norm > 1)
        res->norm = 1;
    res->margin = (top - second) / top;
    int defined = defining_hit(kb, question, t, n, res);
    if (defined > 0) { /* the one answer written for « c'est quoi X »: first, and no tie */
        fb_kb_hit_t h = res->hits[defined];
        memmove(&res->hits[1], &res->hits[0], (size_t)defined * sizeof(res->hits[0]));
        res->hits[0] = h;
    }
    if (defined >= 0)
        res->margin = 1;
    /* another body's scheme: the question names a funder the top answer's questions and
     * `mots` do not */
    const struct doc *top_doc = &kb->docs[res->hits[0].doc];
    unsigned asked = 0;
    bool cost = false;
    for (size_t i = 0; i < n; i++) {
        asked |= funder_bit(kb, t[i].id);
        cost = cost || is_cost(kb, t[i].id, !how_much);
    }
    res->other_scheme = asked != 0 && (asked & top_doc->funders) == 0;
    /* an amount asked of an answer that gives none */
    res->no_amount = cost && !top_doc->cost;
    /* a named thing: a category noun (« la loi X », « le programme X », « la société X ») whose
     * name the top answer does not hold */
    res->unnamed = named_elsewhere(kb, t, n, res->hits[0].doc);
    /* an answer found mostly through words guessed from typos */
    double guessed = 0;
    for (size_t i = 0; i < sc.n_typo; i++)
        guessed += sc.typo_mult[i] * posting(kb, (size_t)sc.typo_id[i], res->hits[0].doc);
    res->guessed = guessed > 0 && fb_kb_confident(res->norm, res->margin) &&
                   !fb_kb_confident((res->hits[0].score - FB_KB_GUESSED_DISCOUNT * guessed) / most,
                                    res->margin);
    res->confident = fb_kb_confident(res->norm, res->margin) && !res->own_case &&
                     !res->small_talk && !res->off_topic && !res->other_scheme && !res->no_amount &&
                     !res->guessed && !res->unnamed;
    /* the score is the one doubt left: ask which answer was meant (`guessed` above is set for a
     * sure result only: here the same discount must keep the norm over the threshold); the
     * first alone when the second is well behind */
    double first = res->hits[0].score;
    bool unsure = !res->confident && res->n >= 1 && res->norm >= FB_KB_MIN_NORM &&
                  (first - FB_KB_GUESSED_DISCOUNT * guessed) / most >= FB_KB_MIN_NORM &&
                  !res->own_case && !res->small_talk && !res->off_topic && !res->other_scheme &&
                  !res->no_amount && !res->unnamed;
    if (unsure) {
        res->n_proposals = res->n == 1 || res->margin >= FB_KB_SURE_MARGIN ? 1 : 2;
        if (res->n_proposals == 2 && res->n >= 3 &&
            (first - res->hits[2].score) / first < FB_KB_SURE_MARGIN)
            res->n_proposals = 3;
    }
}

void fb_kb_terms(const fb_kb_t *kb, const char *text, fb_buf_t *out)
{
    struct tok t[64];
    struct sb_stemmer *st = NULL;
    size_t n;
    if (kb) {
        n = analyse_query(kb, text ? text : "", t, FB_ARRAY_SIZE(t), &st);
    } else {
        fb_kb_t *tmp = fb_kb_new();
        n = analyse_query(tmp, text ? text : "", t, FB_ARRAY_SIZE(t), &st);
        fb_kb_free(tmp);
    }
    if (st)
        sb_stemmer_delete(st);
    for (size_t i = 0; i < n; i++)
        (void)fb_buf_printf(out, "%s%s", i ? " " : "", t[i].stem);
}

void fb_kb_free(fb_kb_t *kb)
{
    if (!kb)
        return;
    for (size_t i = 0; i < kb->n_terms; i++)
        fb_free(kb->terms[i]);
    fb_free(kb->terms);
    fb__strmap_free(&kb->term_map);
    for (size_t i = 0; i < kb->n_surf; i++)
        fb_free(kb->surf[i]);
    fb_free(kb->surf);
    fb__strmap_free(&kb->surf_map);
    for (size_t i = 0; i < kb->n_phr; i++)
        fb_free(kb->phr[i].t);
    fb_free(kb->phr);
    fb_free(kb->parent);
    fb_free(kb->group_term);
    fb_free(kb->phr_first);
    for (size_t i = 0; i < kb->n_docs; i++) {
        for (int f = 0; f < N_FIELDS; f++)
            fb_free(kb->docs[i].t[f]);
        fb_free(kb->docs[i].def);
    }
    fb_free(kb->docs);
    fb_free(kb->idf);
    fb_free(kb->post_start);
    fb_free(kb->post_doc);
    fb_free(kb->post_w);
    if (kb->stemmer)
        sb_stemmer_delete(kb->stemmer);
    for (size_t i = 0; i < kb->n_dels; i++)
        fb_free(kb->dels[i]);
    fb_free(kb->dels);
    fb_free(kb->del_term);
    fb_free(kb->del_surf);
    fb__strmap_free(&kb->del_map);
    fb__strmap_free(&kb->class_map);
    fb__strmap_free(&kb->sms_map);
    fb__strmap_free(&kb->class2_map);
    for (size_t i = 0; i < kb->n_areas; i++)
        fb_free(kb->areas[i]);
    fb_free(kb->areas);
    fb__strmap_free(&kb->area_map);
    fb_free(kb);
}
