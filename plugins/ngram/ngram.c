/* ngram.c: the n-gram speculator. Prompt lookup: the last n tokens of a
 * slot's history (n from n_max_ngram down to n_min_ngram) are searched for
 * earlier in the same history, most recent occurrence first, and what
 * followed them is proposed. Optionally a cross-request table (n-gram of
 * table_n tokens -> the majority next token) with a memory cap, learned from
 * every prompt and accepted token of every slot, drafts when lookup finds
 * nothing. Uses nothing but <clspec/speculator.h>.
 *
 * Configuration ([speculator] section / --spec-opt):
 *   n_max_ngram = 4   longest pattern tried
 *   n_min_ngram = 2   shortest pattern tried
 *   table = 0|1       the cross-request table (default 0)
 *   table_n = 3       tokens of context per table entry (1..8)
 *   table_mb = 8      memory cap of the table in MiB
 * checked by config_check (ABI 1.4) when the host reads its configuration,
 * and again by init; a drafter model is not used (reported as ignored). */
#include <clspec/speculator.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MAX_N 8      /* longest n-gram anything here uses */
#define MAX_SLOTS 64 /* when the host does not say */

struct entry {
    uint64_t key;   /* hash of table_n tokens, 0 = empty */
    int32_t next;   /* majority next token */
    int32_t count;  /* its vote (Misra-Gries) */
};

struct slot {
    int32_t tail[MAX_N]; /* the last table_n tokens seen, oldest first */
    int32_t n_tail;
};

struct ngram {
    const struct clspec_host *host;
    int32_t n_max_ngram, n_min_ngram;
    int table_on;
    int32_t table_n;
    struct entry *table; /* (cap) open addressing, probe window PROBE */
    size_t cap;
    struct slot *slots;  /* (n_slots) */
    int32_t n_slots;
};

#define PROBE 8

static int get_int(const char *v, const char *key, long lo, long hi, long def, long *out, char *err,
                   size_t errlen)
{
    *out = def;
    if (!v)
        return 0;
    char *end = NULL;
    long x = strtol(v, &end, 10);
    if (end == v || *end || x < lo || x > hi) {
        /* plain C: no snprintf dependency on the host's error helpers */
        const char *pre = "ngram: bad value for ";
        size_t n = 0;
        for (const char *s = pre; *s && n + 1 < errlen; s++)
            err[n++] = *s;
        for (const char *s = key; *s && n + 1 < errlen; s++)
            err[n++] = *s;
        const char *post = " (want an integer in range)";
        for (const char *s = post; *s && n + 1 < errlen; s++)
            err[n++] = *s;
        if (errlen)
            err[n] = 0;
        return -1;
    }
    *out = x;
    return 0;
}

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (!errlen)
        return;
    size_t n = strlen(msg);
    if (n >= errlen)
        n = errlen - 1;
    memcpy(err, msg, n);
    err[n] = 0;
}

static uint64_t hash_tokens(const int32_t *t, int32_t n)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (uint64_t)n;
    for (int32_t i = 0; i < n; i++) {
        h ^= (uint64_t)(uint32_t)t[i];
        h *= 0x100000001b3ull;
        h ^= h >> 29;
    }
    return h ? h : 1;
}

/* Records "ctx (table_n tokens) is followed by next". */
static void table_add(struct ngram *g, const int32_t *ctx, int32_t next)
{
    uint64_t k = hash_tokens(ctx, g->table_n);
    size_t at = (size_t)(k % g->cap), victim = at;
    for (int i = 0; i < PROBE; i++) {
        struct entry *e = &g->table[(at + (size_t)i) % g->cap];
        if (e->key == k) {
            if (e->next == next)
                e->count++;
            else if (--e->count <= 0) {
                e->next = next;
                e->count = 1;
            }
            return;
        }
        if (e->key == 0) {
            e->key = k;
            e->next = next;
            e->count = 1;
            return;
        }
        if (e->count < g->table[victim].count)
            victim = (at + (size_t)i) % g->cap;
    }
    /* window full: the weakest entry makes room (the memory cap holds) */
    g->table[victim] = (struct entry){.key = k, .next = next, .count = 1};
}

static const struct entry *table_find(const struct ngram *g, const int32_t *ctx)
{
    uint64_t k = hash_tokens(ctx, g->table_n);
    size_t at = (size_t)(k % g->cap);
    for (int i = 0; i < PROBE; i++) {
        const struct entry *e = &g->table[(at + (size_t)i) % g->cap];
        if (e->key == k)
            return e;
        if (e->key == 0)
            return NULL;
    }
    return NULL;
}

/* Feeds tokens to slot s's tail, learning table entries. */
static void learn(struct ngram *g, int32_t s, const int32_t *tok, int32_t n)
{
    if (!g->table_on || s < 0 || s >= g->n_slots)
        return;
    struct slot *sl = &g->slots[s];
    for (int32_t i = 0; i < n; i++) {
        if (tok[i] < 0) { /* an image row (CLSPEC_TOKEN_EMBD): no text context across it */
            sl->n_tail = 0;
            continue;
        }
        if (sl->n_tail == g->table_n)
            table_add(g, sl->tail, tok[i]);
        if (sl->n_tail == g->table_n) {
            memmove(sl->tail, sl->tail + 1, (size_t)(g->table_n - 1) * sizeof *sl->tail);
            sl->tail[g->table_n - 1] = tok[i];
        } else
            sl->tail[sl->n_tail++] = tok[i];
    }
}

static void ngram_fini(void *state)
{
    struct ngram *g = state;
    if (!g)
        return;
    free(g->table);
    free(g->slots);
    free(g);
}

/* The plugin's keys, from the host table (init) or the view (config_check). */
struct ngram_cfg {
    long nmax, nmin, ton, tn, tmb;
};

/* Reads and checks the keys; on a bad one: *bad = its name, err filled, -1. */
static int read_cfg(const struct clspec_host *h, const struct clspec_config_view *v, struct ngram_cfg *c,
                    const char **bad, char *err, size_t errlen)
{
    static const struct {
        const char *key;
        long lo, hi, def;
    } keys[] = {{"n_max_ngram", 1, MAX_N, 4}, {"n_min_ngram", 1, MAX_N, 2}, {"table", 0, 1, 0},
                {"table_n", 1, MAX_N, 3},     {"table_mb", 1, 4096, 8}};
    long *out[] = {&c->nmax, &c->nmin, &c->ton, &c->tn, &c->tmb};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *val = h ? h->config_get(h, keys[i].key) : v->get(v, keys[i].key);
        *bad = keys[i].key;
        if (get_int(val, keys[i].key, keys[i].lo, keys[i].hi, keys[i].def, out[i], err, errlen) < 0)
            return -1;
    }
    if (c->nmin > c->nmax) {
        *bad = "n_min_ngram";
        set_err(err, errlen, "ngram: n_min_ngram is larger than n_max_ngram");
        return -1;
    }
    *bad = NULL;
    return 0;
}

/* 1.4: the keys checked when the host reads its configuration; a drafter
 * model is not used (the drafts come from the request's own tokens). */
static int ngram_config_check(const struct clspec_config_view *v, const char **key, char *err, size_t errlen)
{
    struct ngram_cfg c;
    if (read_cfg(NULL, v, &c, key, err, errlen) < 0)
        return -1;
    if (v->get(v, "model"))
        v->ignored(v, "model", "it drafts from the request's own tokens");
    return 0;
}

static int ngram_init(const struct clspec_host *host, void **state, char *err, size_t errlen)
{
    struct ngram_cfg c;
    const char *bad;
    if (read_cfg(host, NULL, &c, &bad, err, errlen) < 0)
        return -1;
    struct ngram *g = calloc(1, sizeof *g);
    if (!g) {
        set_err(err, errlen, "ngram: out of memory");
        return -1;
    }
    g->host = host;
    g->n_max_ngram = (int32_t)c.nmax;
    g->n_min_ngram = (int32_t)c.nmin;
    g->table_on = (int)c.ton;
    g->table_n = (int32_t)c.tn;
    g->n_slots = MAX_SLOTS;
    struct clspec_target_info ti;
    memset(&ti, 0, sizeof ti);
    ti.size = sizeof ti;
    if (host->target_info && host->target_info(host, &ti) == 0 && ti.n_slots > 0)
        g->n_slots = (int32_t)ti.n_slots;
    g->slots = calloc((size_t)g->n_slots, sizeof *g->slots);
    if (g->table_on) {
        g->cap = (size_t)c.tmb * 1048576u / sizeof(struct entry);
        g->table = calloc(g->cap, sizeof *g->table);
    }
    if (!g->slots || (g->table_on && !g->table)) {
        ngram_fini(g);
        set_err(err, errlen, "ngram: out of memory (lower table_mb)");
        return -1;
    }
    host->log(host, CLSPEC_LOG_INFO, "prompt lookup n %d..%d, table %s (n %d, %ld MiB)", g->n_min_ngram,
              g->n_max_ngram, g->table_on ? "on" : "off", g->table_n, g->table_on ? c.tmb : 0L);
    *state = g;
    return 0;
}

static int ngram_slot_begin(void *state, int32_t slot, const int32_t *prompt, int32_t n_prompt, char *err,
                            size_t errlen)
{
    (void)err;
    (void)errlen;
    struct ngram *g = state;
    if (slot >= 0 && slot < g->n_slots) {
        g->slots[slot].n_tail = 0;
        learn(g, slot, prompt, n_prompt);
    }
    return 0;
}

/* Prompt lookup: the continuation of the most recent earlier occurrence of
 * the last n tokens, for the longest n that has one (extended periodically
 * past the history's end). */
static int32_t lookup(const struct ngram *g, const int32_t *h, int32_t nh, int32_t n_max, int32_t *out)
{
    for (int32_t n = g->n_max_ngram; n >= g->n_min_ngram; n--) {
        if (n >= nh)
            continue;
        const int32_t *pat = h + nh - n;
        bool text = true; /* patterns of text tokens only: image rows (CLSPEC_TOKEN_EMBD) never match */
        for (int32_t j = 0; j < n; j++)
            text = text && pat[j] >= 0;
        if (!text)
            continue;
        for (int32_t i = nh - n - 1; i >= 0; i--) {
            if (memcmp(h + i, pat, (size_t)n * sizeof *h) != 0)
                continue;
            /* the continuation runs on past the end of the history into the draft itself (a copy with
             * overlap): a loop of period nh - n - i keeps being proposed, n_max tokens, not only up to
             * where the history stops (position i + n + k >= nh is out[i + n + k - nh], already written) */
            int32_t k = 0;
            while (k < n_max) {
                int32_t at = i + n + k, v = at < nh ? h[at] : out[at - nh];
                if (v < 0)
                    break;
                out[k++] = v;
            }
            if (k > 0)
                return k;
        }
    }
    return 0;
}

static int ngram_draft(void *state, const struct clspec_draft_req *req, int32_t *out, float *probs, char *err,
                       size_t errlen)
{
    (void)probs; /* no probabilities: the host verifies by sampling */
    (void)err;
    (void)errlen;
    struct ngram *g = state;
    int32_t k = lookup(g, req->hist, req->n_hist, req->n_max, out);
    if (k > 0 || !g->table_on || req->n_hist < g->table_n)
        return k;
    /* the table, chained: each proposed token extends the context */
    int32_t ctx[2 * MAX_N + 64];
    int32_t nc = g->table_n;
    memcpy(ctx, req->hist + req->n_hist - nc, (size_t)nc * sizeof *ctx);
    for (int32_t j = 0; j < nc; j++)
        if (ctx[j] < 0) /* an image row in the context: the table has no such key */
            return k;
    while (k < req->n_max && k < 64) {
        const struct entry *e = table_find(g, ctx + k);
        if (!e || e->count < 2)
            break;
        out[k] = e->next;
        ctx[nc + k] = e->next;
        k++;
    }
    return k;
}

static void ngram_accept(void *state, int32_t slot, int32_t n_drafted, int32_t n_accepted, const int32_t *tokens,
                         int32_t n_tokens)
{
    (void)n_drafted;
    (void)n_accepted;
    learn(state, slot, tokens, n_tokens);
}

static void ngram_slot_end(void *state, int32_t slot)
{
    struct ngram *g = state;
    if (slot >= 0 && slot < g->n_slots)
        g->slots[slot].n_tail = 0;
}

static const struct clspec_speculator vtable = {
    .abi_major = CLSPEC_SPEC_ABI_MAJOR,
    .size = sizeof(struct clspec_speculator),
    .name = "ngram",
    .caps = CLSPEC_SPEC_CAP_EMBD_ROWS, /* image rows: never part of a pattern, a proposal or a table key */
    .init = ngram_init,
    .fini = ngram_fini,
    .slot_begin = ngram_slot_begin,
    .draft = ngram_draft,
    .accept = ngram_accept,
    .slot_end = ngram_slot_end,
    .config_check = ngram_config_check,
};

__attribute__((visibility("default"))) const struct clspec_speculator *clspec_speculator_entry(void)
{
    return &vtable;
}
