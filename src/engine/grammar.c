/* grammar.c: the matcher of compiled GBNF grammars (see grammar.h) and the
 * vocabulary mask. A state is a set of normalised stacks: the top of each
 * is a character class (or the stack is empty: complete). Advancing over a
 * code point keeps the stacks whose top class holds it, moves their top one
 * element on and normalises again (END pops to the return place below, a
 * rule reference fans out into its alternatives). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "engine/grammar_impl.h"

#define MAX_DEPTH 4096   /* elements on one stack */
#define MAX_STACKS 65536 /* stacks of one state */

#define CACHE_SLOTS 1024 /* step results remembered (direct-mapped on the input set and code point) */

/* One remembered step: the stacks of `in` advanced over code point cp are `out`. */
struct step_memo {
    uint64_t h;
    uint32_t cp;
    bool used;
    struct cs_grammar_state in, out;
};

#define MASK_SLOTS 4 /* vocabulary masks remembered (round robin) */

/* A mask computed for a state: inside a string or a number the state (and
 * so the mask) repeats from token to token. */
struct mask_memo {
    bool used;
    uint64_t h;
    const struct cs_grammar_vocab *v;
    struct cs_grammar_state key; /* stacks and pending bytes */
    uint8_t *allowed;            /* (v->n_vocab) */
    int32_t n_ok;
};

#define DFA_STATES 4096     /* stack sets interned by one scratch (then it starts over) */
#define DFA_SLOTS 8192      /* their hash table (power of two) */
#define DFA_TRANS 16384     /* transitions remembered (then it starts over) */
#define DFA_TSLOTS 32768    /* their hash table (power of two); about 450 KiB per scratch in all */
#define DFA_DEAD (-2)       /* transition to nothing */
#define DFA_FULL (-1)       /* no room (or memory): walk the slow way */

/* The mask's automaton: stack sets interned as numbered states, their
 * transitions on code points found as the walks need them. */
struct dfa {
    uint64_t gen;           /* the grammar it belongs to */
    int32_t *arena;         /* the states' stacks back to back (cs_grammar_state.buf layout) */
    int64_t alen, acap;
    int64_t *off;           /* (DFA_STATES) each state's start in arena */
    int32_t *len, *nst;     /* (DFA_STATES) its int32s, its stacks */
    uint64_t *hash;         /* (DFA_STATES) */
    int32_t n;
    int32_t *slot;          /* (DFA_SLOTS) state ids, -1 empty */
    uint64_t *tkey;         /* (DFA_TSLOTS) (id << 21 | cp) + 1, 0 empty */
    int32_t *tval;          /* (DFA_TSLOTS) next id or DFA_DEAD */
    int32_t ntr;
};

struct cs_grammar_scratch {
    struct dfa dfa;
    struct mask_memo mask[MASK_SLOTS];
    int mask_next;
    struct cs_grammar_state a, b; /* ping-pong buffers */
    int32_t *stk;                 /* (MAX_DEPTH + 1) the stack being normalised */
    int oom;
    uint64_t gen;                 /* the grammar the memo belongs to (its generation), 0: none */
    struct step_memo *memo;       /* (CACHE_SLOTS) or NULL */
};

struct cs_grammar *cs_grammar_ref(struct cs_grammar *g)
{
    if (g)
        g->refs++;
    return g;
}

void cs_grammar_unref(struct cs_grammar *g)
{
    if (!g || --g->refs > 0)
        return;
    free(g->el);
    free(g->alt);
    free(g->rule_alt);
    free(g->rng);
    free(g->cls);
    free(g->first);
    free(g);
}

int32_t cs_grammar_n_rules(const struct cs_grammar *g) { return g ? g->n_rules : 0; }

struct cs_grammar_scratch *cs_grammar_scratch_new(void)
{
    struct cs_grammar_scratch *sc = calloc(1, sizeof *sc);
    if (sc && !(sc->stk = malloc((MAX_DEPTH + 1) * sizeof *sc->stk))) {
        free(sc);
        sc = NULL;
    }
    return sc;
}

static void memo_clear(struct cs_grammar_scratch *sc)
{
    for (int i = 0; i < MASK_SLOTS; i++) {
        cs_grammar_state_free(&sc->mask[i].key);
        free(sc->mask[i].allowed);
        memset(&sc->mask[i], 0, sizeof sc->mask[i]);
    }
    for (int i = 0; sc->memo && i < CACHE_SLOTS; i++) {
        cs_grammar_state_free(&sc->memo[i].in);
        cs_grammar_state_free(&sc->memo[i].out);
        sc->memo[i].used = false;
    }
}

void cs_grammar_scratch_free(struct cs_grammar_scratch *sc)
{
    if (!sc)
        return;
    memo_clear(sc);
    free(sc->memo);
    free(sc->dfa.arena);
    free(sc->dfa.off);
    free(sc->dfa.len);
    free(sc->dfa.nst);
    free(sc->dfa.hash);
    free(sc->dfa.slot);
    free(sc->dfa.tkey);
    free(sc->dfa.tval);
    cs_grammar_state_free(&sc->a);
    cs_grammar_state_free(&sc->b);
    free(sc->stk);
    free(sc);
}

void cs_grammar_state_free(struct cs_grammar_state *st)
{
    free(st->buf);
    memset(st, 0, sizeof *st);
}

static bool reserve(struct cs_grammar_state *st, int32_t need)
{
    if (need <= st->cap)
        return true;
    int32_t c = CS_MAX(need, CS_MAX(64, 2 * st->cap));
    int32_t *p = realloc(st->buf, (size_t)c * sizeof *p);
    if (!p)
        return false;
    st->buf = p;
    st->cap = c;
    return true;
}

int cs_grammar_state_copy(struct cs_grammar_state *dst, const struct cs_grammar_state *src)
{
    if (!reserve(dst, src->len))
        return -1;
    if (src->len)
        memcpy(dst->buf, src->buf, (size_t)src->len * sizeof *src->buf);
    dst->len = src->len;
    dst->n_stacks = src->n_stacks;
    dst->cp = src->cp;
    dst->need = src->need;
    dst->seq_len = src->seq_len;
    return 0;
}

bool cs_grammar_complete(const struct cs_grammar *g, const struct cs_grammar_state *st)
{
    (void)g;
    if (st->need)
        return false;
    for (int32_t i = 0, o = 0; i < st->n_stacks; i++, o += 1 + st->buf[o])
        if (st->buf[o] == 0)
            return true;
    return false;
}

bool cs_grammar_dead(const struct cs_grammar_state *st) { return st->n_stacks == 0; }

/* ---- normalising ---- */

/* Adds stk[0..n) to out unless it is there already. */
static void add_stack(struct cs_grammar_scratch *sc, struct cs_grammar_state *out, const int32_t *stk, int32_t n)
{
    for (int32_t i = 0, o = 0; i < out->n_stacks; i++, o += 1 + out->buf[o])
        if (out->buf[o] == n && memcmp(out->buf + o + 1, stk, (size_t)n * sizeof *stk) == 0)
            return;
    if (out->n_stacks >= MAX_STACKS || !reserve(out, out->len + n + 1)) {
        sc->oom = 1;
        return;
    }
    out->buf[out->len] = n;
    memcpy(out->buf + out->len + 1, stk, (size_t)n * sizeof *stk);
    out->len += n + 1;
    out->n_stacks++;
}

/* Normalises sc->stk[0..n) (top at n-1) into out. A frame restores the
 * entry it overwrites, so the caller's stack is intact on return. */
static void normalise(const struct cs_grammar *g, struct cs_grammar_scratch *sc, int32_t n,
                      struct cs_grammar_state *out)
{
    int32_t *stk = sc->stk;
    while (n > 0 && g->el[stk[n - 1]].type == CS_GEL_END)
        n--;
    if (n == 0 || g->el[stk[n - 1]].type == CS_GEL_CHAR) {
        add_stack(sc, out, stk, n);
        return;
    }
    int32_t p = stk[n - 1], r = g->el[p].v, saved = stk[n - 1];
    int32_t base = n; /* the continuation after the reference stays below, unless it is END */
    if (g->el[p + 1].type == CS_GEL_END)
        base = n - 1;
    else
        stk[n - 1] = p + 1;
    if (base >= MAX_DEPTH) {
        sc->oom = 1; /* a nesting this deep is refused (the token is not allowed) */
        stk[n - 1] = saved;
        return;
    }
    for (int32_t a = g->rule_alt[r]; a < g->rule_alt[r + 1]; a++) {
        stk[base] = g->alt[a];
        normalise(g, sc, base + 1, out);
    }
    stk[n - 1] = saved;
}

int cs_grammar_state_init(const struct cs_grammar *g, struct cs_grammar_state *st, char *err, size_t errlen)
{
    struct cs_grammar_scratch *sc = cs_grammar_scratch_new();
    if (!sc)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "grammar: out of memory");
    st->len = st->n_stacks = 0;
    st->cp = 0;
    st->need = st->seq_len = 0;
    for (int32_t a = g->rule_alt[g->root]; a < g->rule_alt[g->root + 1]; a++) {
        sc->stk[0] = g->alt[a];
        normalise(g, sc, 1, st);
    }
    int bad = sc->oom;
    cs_grammar_scratch_free(sc);
    if (bad)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "grammar: out of memory (or nesting deeper than %d)", MAX_DEPTH);
    return CLSPEC_OK;
}

/* ---- advancing ---- */

static bool class_has(const struct cs_grammar *g, int32_t c, uint32_t cp)
{
    for (int32_t k = g->cls[c]; k < g->cls[c + 1]; k++) {
        if (cp < g->rng[2 * k])
            return false;
        if (cp <= g->rng[2 * k + 1])
            return true;
    }
    return false;
}

static bool class_meets(const struct cs_grammar *g, int32_t c, uint32_t lo, uint32_t hi)
{
    for (int32_t k = g->cls[c]; k < g->cls[c + 1]; k++)
        if (g->rng[2 * k] <= hi && lo <= g->rng[2 * k + 1])
            return true;
    return false;
}

/* out = the stacks of in that take code point cp, moved on. */
static void step(const struct cs_grammar *g, const struct cs_grammar_state *in, uint32_t cp,
                 struct cs_grammar_state *out, struct cs_grammar_scratch *sc)
{
    out->len = out->n_stacks = 0;
    for (int32_t i = 0, o = 0; i < in->n_stacks; i++, o += 1 + in->buf[o]) {
        int32_t n = in->buf[o];
        if (n == 0)
            continue;
        const int32_t *s = in->buf + o + 1;
        if (!class_has(g, g->el[s[n - 1]].v, cp))
            continue;
        memcpy(sc->stk, s, (size_t)n * sizeof *s);
        sc->stk[n - 1] = s[n - 1] + 1;
        normalise(g, sc, n, out);
    }
}

static uint64_t set_hash(const struct cs_grammar_state *st, uint32_t cp)
{
    uint64_t h = 1469598103934665603ULL ^ cp;
    for (int32_t i = 0; i < st->len; i++)
        h = (h ^ (uint32_t)st->buf[i]) * 1099511628211ULL;
    return h ^ ((uint64_t)st->n_stacks << 40);
}

/* step() through the memo: inside a string or a number most steps repeat. */
static void step_memo(const struct cs_grammar *g, const struct cs_grammar_state *in, uint32_t cp,
                      struct cs_grammar_state *out, struct cs_grammar_scratch *sc)
{
    if (sc->gen != g->gen) {
        memo_clear(sc);
        sc->gen = g->gen;
    }
    if (!sc->memo && !(sc->memo = calloc(CACHE_SLOTS, sizeof *sc->memo))) {
        step(g, in, cp, out, sc);
        return;
    }
    uint64_t h = set_hash(in, cp);
    struct step_memo *m = &sc->memo[(h ^ (h >> 29)) & (CACHE_SLOTS - 1)];
    if (m->used && m->h == h && m->cp == cp && m->in.len == in->len && m->in.n_stacks == in->n_stacks &&
        memcmp(m->in.buf, in->buf, (size_t)in->len * sizeof *in->buf) == 0) {
        if (cs_grammar_state_copy(out, &m->out) < 0)
            sc->oom = 1;
        return;
    }
    step(g, in, cp, out, sc);
    if (sc->oom)
        return;
    m->used = cs_grammar_state_copy(&m->in, in) == 0 && cs_grammar_state_copy(&m->out, out) == 0;
    m->h = h;
    m->cp = cp;
}

/* Whether a pending sequence (code points lo..hi) can still be taken. */
static bool partial_ok(const struct cs_grammar *g, const struct cs_grammar_state *st, uint32_t lo, uint32_t hi)
{
    for (int32_t i = 0, o = 0; i < st->n_stacks; i++, o += 1 + st->buf[o]) {
        int32_t n = st->buf[o];
        if (n > 0 && class_meets(g, g->el[st->buf[o + n]].v, lo, hi))
            return true;
    }
    return false;
}

/* Whether a pending UTF-8 sequence whose code point lies in lo..hi can
 * still become a valid one: not when only overlong forms (E0 80, F0 82:
 * lo > hi once clamped) or only surrogates (ED A0) remain. */
static bool utf8_range_ok(uint32_t lo, uint32_t hi)
{
    return lo <= hi && !(lo >= 0xD800 && hi <= 0xDFFF);
}

/* Walks s[0..n) from st. The result is in *res (st itself, or one of the
 * scratch buffers). Returns 1 accepted, 0 refused, -1 out of memory. */
static int walk(const struct cs_grammar *g, const struct cs_grammar_state *st, const uint8_t *s, size_t n,
                struct cs_grammar_scratch *sc, const struct cs_grammar_state **res)
{
    const struct cs_grammar_state *cur = st;
    uint32_t cp = st->cp;
    int32_t need = st->need, seq_len = st->seq_len;
    sc->oom = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = s[i];
        if (need > 0) {
            if ((b & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (b & 0x3F);
            if (--need > 0)
                continue;
            if ((seq_len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
                (seq_len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
                return 0; /* overlong or out of range */
        } else if (b < 0x80) {
            cp = b;
        } else {
            seq_len = (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 0;
            if (seq_len == 0 || b == 0xC0 || b == 0xC1 || b > 0xF4)
                return 0;
            cp = b & (seq_len == 2 ? 0x1F : seq_len == 3 ? 0x0F : 0x07);
            need = seq_len - 1;
            continue;
        }
        struct cs_grammar_state *next = cur == &sc->a ? &sc->b : &sc->a;
        step_memo(g, cur, cp, next, sc);
        if (sc->oom)
            return -1;
        if (next->n_stacks == 0)
            return 0;
        cur = next;
        cp = 0;
    }
    if (need > 0) { /* the code points the pending bytes can still become */
        uint32_t lo = cp << (6 * need), hi = lo | ((1u << (6 * need)) - 1);
        lo = CS_MAX(lo, seq_len == 2 ? 0x80u : seq_len == 3 ? 0x800u : 0x10000u);
        if (!utf8_range_ok(lo, hi) || !partial_ok(g, cur, lo, hi))
            return 0;
    }
    sc->a.cp = sc->b.cp = cp;
    sc->a.need = sc->b.need = need;
    sc->a.seq_len = sc->b.seq_len = seq_len;
    if (cur == st && n > 0) { /* only pending bytes: the stacks are st's */
        if (cs_grammar_state_copy(&sc->a, st) < 0)
            return -1;
        sc->a.cp = cp;
        sc->a.need = need;
        sc->a.seq_len = seq_len;
        cur = &sc->a;
    }
    *res = cur;
    return 1;
}

int cs_grammar_allows_bytes(const struct cs_grammar *g, const struct cs_grammar_state *st, const uint8_t *s, size_t n,
                            struct cs_grammar_scratch *sc)
{
    const struct cs_grammar_state *res = NULL;
    return n > 0 && walk(g, st, s, n, sc, &res) == 1;
}

int cs_grammar_accept_bytes(const struct cs_grammar *g, struct cs_grammar_state *st, const uint8_t *s, size_t n,
                            struct cs_grammar_scratch *sc)
{
    if (n == 0)
        return 1;
    const struct cs_grammar_state *res = NULL;
    int rc = walk(g, st, s, n, sc, &res);
    if (rc != 1)
        return rc;
    /* swap the buffers: the result's becomes st's */
    struct cs_grammar_state *r = (struct cs_grammar_state *)res, tmp = *st;
    *st = *r;
    *r = tmp;
    return 1;
}

/* ---- the vocabulary ---- */

int cs_grammar_vocab_new(int32_t n_vocab, cs_grammar_piece_fn fn, void *ctx, struct cs_grammar_vocab **out,
                         char *err, size_t errlen)
{
    *out = NULL;
    struct cs_grammar_vocab *v = calloc(1, sizeof *v);
    if (!v || n_vocab <= 0)
        goto nomem;
    v->refs = 1;
    v->n_vocab = n_vocab;
    v->first_eog = -1;
    v->off = calloc((size_t)n_vocab + 1, sizeof *v->off);
    v->eog = calloc((size_t)n_vocab, 1);
    size_t cap = 16 * (size_t)n_vocab, len = 0;
    v->bytes = malloc(cap);
    if (!v->off || !v->eog || !v->bytes)
        goto nomem;
    for (int32_t i = 0; i < n_vocab; i++) {
        const uint8_t *s = NULL;
        size_t n = 0;
        int eog = 0;
        int rc = fn(ctx, i, &s, &n, &eog);
        if (rc < 0) {
            cs_grammar_vocab_unref(v);
            return cs_err_prefix(err, errlen, rc, "grammar vocabulary: token %d", i);
        }
        if (len + n > cap || len + n > UINT32_MAX) {
            size_t c2 = CS_MAX(2 * cap, len + n);
            uint8_t *p = len + n > UINT32_MAX ? NULL : realloc(v->bytes, c2);
            if (!p)
                goto nomem;
            v->bytes = p;
            cap = c2;
        }
        memcpy(v->bytes + len, s, n);
        len += n;
        v->off[i + 1] = (uint32_t)len;
        v->eog[i] = (uint8_t)(eog != 0);
        if (eog && v->first_eog < 0)
            v->first_eog = i;
    }
    *out = v;
    return CLSPEC_OK;
nomem:
    cs_grammar_vocab_unref(v);
    return cs_err(err, errlen, n_vocab <= 0 ? CLSPEC_E_INVAL : CLSPEC_E_NOMEM,
                  n_vocab <= 0 ? "grammar vocabulary: empty" : "grammar vocabulary: out of memory");
}

struct cs_grammar_vocab *cs_grammar_vocab_ref(struct cs_grammar_vocab *v)
{
    if (v)
        v->refs++;
    return v;
}

void cs_grammar_vocab_unref(struct cs_grammar_vocab *v)
{
    if (!v || --v->refs > 0)
        return;
    free(v->off);
    free(v->bytes);
    free(v->eog);
    free(v);
}

bool cs_grammar_token_allowed(const struct cs_grammar *g, const struct cs_grammar_state *st,
                              const struct cs_grammar_vocab *v, int32_t id, struct cs_grammar_scratch *sc)
{
    if (id < 0 || id >= v->n_vocab)
        return false;
    if (v->eog[id])
        return cs_grammar_complete(g, st);
    uint32_t n = v->off[id + 1] - v->off[id];
    return n > 0 && cs_grammar_allows_bytes(g, st, v->bytes + v->off[id], n, sc);
}

static bool same_state(const struct cs_grammar_state *x, const struct cs_grammar_state *y)
{
    return x->len == y->len && x->n_stacks == y->n_stacks && x->cp == y->cp && x->need == y->need &&
           x->seq_len == y->seq_len && memcmp(x->buf, y->buf, (size_t)x->len * sizeof *x->buf) == 0;
}

static int32_t mask_walk(const struct cs_grammar *g, const struct cs_grammar_state *st,
                         const struct cs_grammar_vocab *v, uint8_t *allowed, struct cs_grammar_scratch *sc);

int32_t cs_grammar_mask(const struct cs_grammar *g, const struct cs_grammar_state *st,
                        const struct cs_grammar_vocab *v, uint8_t *allowed, struct cs_grammar_scratch *sc)
{
    if (sc->gen != g->gen) {
        memo_clear(sc);
        sc->gen = g->gen;
    }
    uint64_t h = set_hash(st, st->cp ^ ((uint32_t)st->need << 24) ^ ((uint32_t)st->seq_len << 28));
    for (int i = 0; i < MASK_SLOTS; i++) {
        struct mask_memo *m = &sc->mask[i];
        if (m->used && m->h == h && m->v == v && same_state(&m->key, st)) {
            memcpy(allowed, m->allowed, (size_t)v->n_vocab);
            return m->n_ok;
        }
    }
    int32_t n_ok = mask_walk(g, st, v, allowed, sc);
    struct mask_memo *m = &sc->mask[sc->mask_next];
    sc->mask_next = (sc->mask_next + 1) % MASK_SLOTS;
    m->used = false;
    free(m->allowed);
    if ((m->allowed = malloc((size_t)v->n_vocab)) && cs_grammar_state_copy(&m->key, st) == 0) {
        memcpy(m->allowed, allowed, (size_t)v->n_vocab);
        m->h = h;
        m->v = v;
        m->n_ok = n_ok;
        m->used = true;
    }
    return n_ok;
}

/* ---- the automaton ---- */

static bool dfa_ready(struct dfa *d)
{
    if (!d->slot) {
        d->off = malloc(DFA_STATES * sizeof *d->off);
        d->len = malloc(DFA_STATES * sizeof *d->len);
        d->nst = malloc(DFA_STATES * sizeof *d->nst);
        d->hash = malloc(DFA_STATES * sizeof *d->hash);
        d->slot = malloc(DFA_SLOTS * sizeof *d->slot);
        d->tkey = calloc(DFA_TSLOTS, sizeof *d->tkey);
        d->tval = malloc(DFA_TSLOTS * sizeof *d->tval);
        if (!d->off || !d->len || !d->nst || !d->hash || !d->slot || !d->tkey || !d->tval) {
            free(d->off);
            free(d->len);
            free(d->nst);
            free(d->hash);
            free(d->slot);
            free(d->tkey);
            free(d->tval);
            d->off = NULL;
            d->len = d->nst = d->slot = d->tval = NULL;
            d->hash = d->tkey = NULL;
            return false;
        }
        memset(d->slot, 0xFF, DFA_SLOTS * sizeof *d->slot);
    }
    return true;
}

/* Starts over (another grammar, or the tables are filling up). */
static void dfa_reset(struct dfa *d, uint64_t gen)
{
    if (d->slot && (d->n > 0 || d->ntr > 0)) {
        memset(d->slot, 0xFF, DFA_SLOTS * sizeof *d->slot);
        memset(d->tkey, 0, DFA_TSLOTS * sizeof *d->tkey);
    }
    d->n = d->ntr = 0;
    d->alen = 0;
    d->gen = gen;
}

static struct cs_grammar_state dfa_view(const struct dfa *d, int32_t id)
{
    struct cs_grammar_state v = {.buf = d->arena + d->off[id], .len = d->len[id], .n_stacks = d->nst[id]};
    return v;
}

/* The id of s's stack set (interned when new); DFA_FULL when there is no room. */
static int32_t dfa_intern(struct dfa *d, const struct cs_grammar_state *s)
{
    uint64_t h = set_hash(s, 0);
    uint32_t i = (uint32_t)(h ^ (h >> 32)) & (DFA_SLOTS - 1);
    for (; d->slot[i] >= 0; i = (i + 1) & (DFA_SLOTS - 1)) {
        int32_t k = d->slot[i];
        if (d->hash[k] == h && d->len[k] == s->len && d->nst[k] == s->n_stacks &&
            memcmp(d->arena + d->off[k], s->buf, (size_t)s->len * sizeof *s->buf) == 0)
            return k;
    }
    if (d->n >= DFA_STATES)
        return DFA_FULL;
    if (d->alen + s->len > d->acap) {
        int64_t cap = CS_MAX(d->alen + s->len, CS_MAX(4096, 2 * d->acap));
        int32_t *a = realloc(d->arena, (size_t)cap * sizeof *a);
        if (!a)
            return DFA_FULL;
        d->arena = a;
        d->acap = cap;
    }
    int32_t k = d->n++;
    memcpy(d->arena + d->alen, s->buf, (size_t)s->len * sizeof *s->buf);
    d->off[k] = d->alen;
    d->alen += s->len;
    d->len[k] = s->len;
    d->nst[k] = s->n_stacks;
    d->hash[k] = h;
    d->slot[i] = k;
    return k;
}

/* The state after code point cp from state id: an id, DFA_DEAD or DFA_FULL. */
static int32_t dfa_next(const struct cs_grammar *g, struct cs_grammar_scratch *sc, int32_t id, uint32_t cp)
{
    struct dfa *d = &sc->dfa;
    uint64_t key = (((uint64_t)id << 21) | cp) + 1, h = key * 0x9E3779B97F4A7C15ULL;
    uint32_t i = (uint32_t)(h >> 40) & (DFA_TSLOTS - 1);
    for (; d->tkey[i]; i = (i + 1) & (DFA_TSLOTS - 1))
        if (d->tkey[i] == key)
            return d->tval[i];
    struct cs_grammar_state from = dfa_view(d, id);
    sc->oom = 0;
    step(g, &from, cp, &sc->a, sc);
    if (sc->oom)
        return DFA_FULL;
    int32_t to = sc->a.n_stacks == 0 ? DFA_DEAD : dfa_intern(d, &sc->a);
    if (to != DFA_FULL && d->ntr < DFA_TRANS) {
        d->tkey[i] = key;
        d->tval[i] = to;
        d->ntr++;
    }
    return to;
}

/* Whether bytes s[0..n) go on from state id0 with st's pending bytes:
 * 1, 0, or DFA_FULL (ask the slow walk). */
static int dfa_allows(const struct cs_grammar *g, struct cs_grammar_scratch *sc, int32_t id0,
                      const struct cs_grammar_state *st, const uint8_t *s, size_t n)
{
    uint32_t cp = st->cp;
    int32_t need = st->need, seq_len = st->seq_len, id = id0;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = s[i];
        if (need > 0) {
            if ((b & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (b & 0x3F);
            if (--need > 0)
                continue;
            if ((seq_len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
                (seq_len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
                return 0;
        } else if (b < 0x80) {
            cp = b;
        } else {
            seq_len = (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 0;
            if (seq_len == 0 || b == 0xC0 || b == 0xC1 || b > 0xF4)
                return 0;
            cp = b & (seq_len == 2 ? 0x1F : seq_len == 3 ? 0x0F : 0x07);
            need = seq_len - 1;
            continue;
        }
        id = dfa_next(g, sc, id, cp);
        if (id == DFA_DEAD)
            return 0;
        if (id == DFA_FULL)
            return DFA_FULL;
        cp = 0;
    }
    if (need > 0) {
        uint32_t lo = cp << (6 * need), hi = lo | ((1u << (6 * need)) - 1);
        lo = CS_MAX(lo, seq_len == 2 ? 0x80u : seq_len == 3 ? 0x800u : 0x10000u);
        if (!utf8_range_ok(lo, hi))
            return 0;
        struct cs_grammar_state v = dfa_view(&sc->dfa, id);
        return partial_ok(g, &v, lo, hi) ? 1 : 0;
    }
    return 1;
}

/* The mask by walking every token whose first byte some stack can take
 * (through the automaton; the slow walk where it has no room). */
static int32_t mask_walk(const struct cs_grammar *g, const struct cs_grammar_state *st,
                         const struct cs_grammar_vocab *v, uint8_t *allowed, struct cs_grammar_scratch *sc)
{
    struct dfa *d = &sc->dfa;
    int32_t id0 = DFA_FULL;
    if (dfa_ready(d)) {
        if (d->gen != g->gen || d->n > DFA_STATES / 2 || d->ntr > DFA_TRANS / 2)
            dfa_reset(d, g->gen);
        id0 = st->n_stacks > 0 ? dfa_intern(d, st) : DFA_FULL;
    }
    uint8_t first[32] = {0}; /* lead bytes some stack can take */
    if (st->need > 0) {
        memset(first + (0x80 >> 3), 0xFF, (0xC0 - 0x80) >> 3);
    } else {
        for (int32_t i = 0, o = 0; i < st->n_stacks; i++, o += 1 + st->buf[o]) {
            int32_t n = st->buf[o];
            if (n > 0) {
                const uint8_t *f = g->first[g->el[st->buf[o + n]].v];
                for (int k = 0; k < 32; k++)
                    first[k] |= f[k];
            }
        }
    }
    bool complete = cs_grammar_complete(g, st);
    int32_t n_ok = 0;
    for (int32_t id = 0; id < v->n_vocab; id++) {
        uint32_t o = v->off[id], n = v->off[id + 1] - o;
        bool ok;
        if (v->eog[id])
            ok = complete;
        else if (n == 0 || !(first[v->bytes[o] >> 3] & (1u << (v->bytes[o] & 7))))
            ok = false;
        else {
            int r = id0 >= 0 ? dfa_allows(g, sc, id0, st, v->bytes + o, n) : DFA_FULL;
            ok = r == DFA_FULL ? cs_grammar_allows_bytes(g, st, v->bytes + o, n, sc) : r == 1;
        }
        allowed[id] = ok;
        n_ok += ok;
    }
    return n_ok;
}

int cs_grammar_accept_token(const struct cs_grammar *g, struct cs_grammar_state *st, const struct cs_grammar_vocab *v,
                            int32_t id, struct cs_grammar_scratch *sc)
{
    if (id < 0 || id >= v->n_vocab)
        return 0;
    if (v->eog[id])
        return cs_grammar_complete(g, st) ? 1 : 0;
    uint32_t n = v->off[id + 1] - v->off[id];
    if (n == 0)
        return 0;
    return cs_grammar_accept_bytes(g, st, v->bytes + v->off[id], n, sc);
}
