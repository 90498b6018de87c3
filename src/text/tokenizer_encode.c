/* tokenizer_encode.c: text -> ids. Special-token partitioning, then the SPM
 * bigram merge (highest score, leftmost first) or the BPE merge (lowest rank,
 * leftmost first) over each raw fragment. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "text/pretok.h"
#include "text/tokenizer.h"
#include "text/tokenizer_impl.h"
#include "text/unicode.h"

/* ---------- scratch ---------- */

struct ivec {
    int32_t *v;
    size_t n, cap;
};

static int ivec_push(struct ivec *a, int32_t x)
{
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 64;
        int32_t *nv = realloc(a->v, nc * sizeof(*nv));
        if (!nv)
            return CLSPEC_E_NOMEM;
        a->v = nv, a->cap = nc;
    }
    a->v[a->n++] = x;
    return CLSPEC_OK;
}

/* A symbol in a merge chain: text[off .. off+n), n == 0 once merged away. */
struct sym {
    int prev, next;
    size_t off, n;
};

/* A candidate merge of symbols left and right. SPM orders by score (higher
 * first), BPE by rank (lower first); ties go to the leftmost pair. */
struct bigram {
    int left, right;
    float score; /* SPM */
    int64_t rank; /* BPE */
    size_t size; /* bytes of the merged text when queued (stale check) */
};

struct heap {
    struct bigram *v;
    size_t n, cap;
    bool bpe;
};

static bool before(const struct heap *h, const struct bigram *a, const struct bigram *b)
{
    if (h->bpe) {
        if (a->rank != b->rank)
            return a->rank < b->rank;
    } else if (a->score != b->score) {
        return a->score > b->score;
    }
    return a->left < b->left;
}

static int heap_push(struct heap *h, struct bigram b)
{
    if (h->n == h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 64;
        struct bigram *nv = realloc(h->v, nc * sizeof(*nv));
        if (!nv)
            return CLSPEC_E_NOMEM;
        h->v = nv, h->cap = nc;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(h, &b, &h->v[p]))
            break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = b;
    return CLSPEC_OK;
}

static struct bigram heap_pop(struct heap *h)
{
    struct bigram top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && before(h, &h->v[c + 1], &h->v[c]))
            c++;
        if (!before(h, &h->v[c], &last))
            break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n)
        h->v[i] = last;
    return top;
}

struct enc {
    const struct cs_tokenizer *t;
    struct ivec out;
    struct sym *syms;
    size_t syms_cap;
    struct heap heap;
    char *buf; /* escaped / byte-level text of the current piece */
    size_t buf_cap;
    uint32_t *cps; /* code points of the current BPE fragment */
    size_t cps_cap;
};

static int reserve(void **p, size_t *cap, size_t n, size_t elem)
{
    if (n <= *cap)
        return CLSPEC_OK;
    size_t nc = *cap ? *cap : 64;
    while (nc < n)
        nc *= 2;
    void *np = realloc(*p, nc * elem);
    if (!np)
        return CLSPEC_E_NOMEM;
    *p = np, *cap = nc;
    return CLSPEC_OK;
}

/* Splits buf[0..len) into one symbol per UTF-8 character (invalid bytes alone). */
static int make_syms(struct enc *e, size_t len, int *n_syms)
{
    if (reserve((void **)&e->syms, &e->syms_cap, len, sizeof(*e->syms)))
        return CLSPEC_E_NOMEM;
    int n = 0;
    for (size_t off = 0; off < len;) {
        size_t k;
        cs_utf8_decode((const uint8_t *)e->buf + off, len - off, &k);
        e->syms[n] = (struct sym){n - 1, off + k == len ? -1 : n + 1, off, k};
        off += k;
        n++;
    }
    *n_syms = n;
    return CLSPEC_OK;
}

/* ---------- SPM ---------- */

static int merge_all(struct enc *e, int n, bool bpe);

static int spm_add_bigram(struct enc *e, int left, int right)
{
    if (left < 0 || right < 0)
        return CLSPEC_OK;
    const struct sym *l = &e->syms[left], *r = &e->syms[right];
    int32_t id = cs_tokenizer_find(e->t, e->buf + l->off, l->n + r->n);
    if (id < 0)
        return CLSPEC_OK;
    struct bigram b = {left, right, e->t->score[id], 0, l->n + r->n};
    return heap_push(&e->heap, b);
}

/* One raw SPM fragment already in e->buf[0..len). */
static int spm_piece(struct enc *e, size_t len)
{
    int n, rc;
    if ((rc = make_syms(e, len, &n)))
        return rc;
    if ((rc = merge_all(e, n, false)))
        return rc;
    for (int i = n > 0 ? 0 : -1; i >= 0; i = e->syms[i].next) {
        const struct sym *s = &e->syms[i];
        int32_t id = cs_tokenizer_find(e->t, e->buf + s->off, s->n);
        if (id >= 0) {
            if ((rc = ivec_push(&e->out, id)))
                return rc;
            continue;
        }
        /* byte fallback: <0xNN> for every byte, else one UNK for the character */
        bool all = true;
        for (size_t j = 0; j < s->n; j++)
            all = all && e->t->byte_tok[(uint8_t)e->buf[s->off + j]] >= 0;
        if (all) {
            for (size_t j = 0; j < s->n; j++)
                if ((rc = ivec_push(&e->out, e->t->byte_tok[(uint8_t)e->buf[s->off + j]])))
                    return rc;
        } else if (e->t->unk >= 0 && (rc = ivec_push(&e->out, e->t->unk))) {
            return rc;
        }
    }
    return CLSPEC_OK;
}

/* Escapes text (optional leading space, ' ' -> U+2581) into e->buf and merges it. */
static int spm_fragment(struct enc *e, const char *text, size_t len, bool prefix)
{
    size_t need = 3 * (len + 1), n = 0;
    if (reserve((void **)&e->buf, &e->buf_cap, need, 1))
        return CLSPEC_E_NOMEM;
    for (size_t i = 0; i < len + prefix; i++) {
        char c = (prefix && i == 0) ? ' ' : text[i - prefix];
        if (c == ' ') {
            memcpy(e->buf + n, "\xe2\x96\x81", 3);
            n += 3;
        } else {
            e->buf[n++] = c;
        }
    }
    return spm_piece(e, n);
}

/* ---------- BPE ---------- */

static int64_t merge_rank(const struct cs_tokenizer *t, const char *l, size_t ln, const char *r, size_t rn)
{
    if (!t->mhash_cap)
        return -1;
    size_t mask = t->mhash_cap - 1;
    for (size_t i = (size_t)cs_tok_pair_hash(l, ln, r, rn) & mask;; i = (i + 1) & mask) {
        int32_t x = t->mhash[i];
        if (x == 0)
            return -1;
        const struct merge *m = &t->merges[x - 1];
        if (m->llen == ln && m->rlen == rn && memcmp(t->merge_text + m->loff, l, ln) == 0 &&
            memcmp(t->merge_text + m->roff, r, rn) == 0)
            return x - 1;
    }
}

static int bpe_add_bigram(struct enc *e, int left, int right)
{
    if (left < 0 || right < 0)
        return CLSPEC_OK;
    const struct sym *l = &e->syms[left], *r = &e->syms[right];
    int64_t rank = merge_rank(e->t, e->buf + l->off, l->n, e->buf + r->off, r->n);
    if (rank < 0)
        return CLSPEC_OK;
    struct bigram b = {left, right, 0.0f, rank, l->n + r->n};
    return heap_push(&e->heap, b);
}

static int add_bigram(struct enc *e, int left, int right)
{
    return e->heap.bpe ? bpe_add_bigram(e, left, right) : spm_add_bigram(e, left, right);
}

/* The merge loop both models share: queue every adjacent pair, then merge the
 * best pair (skipping stale ones) and queue its new neighbours, until none is
 * left. The chain in e->syms[0..n) holds the result. */
static int merge_all(struct enc *e, int n, bool bpe)
{
    int rc;
    e->heap.n = 0;
    e->heap.bpe = bpe;
    for (int i = 1; i < n; i++)
        if ((rc = add_bigram(e, i - 1, i)))
            return rc;
    while (e->heap.n) {
        struct bigram b = heap_pop(&e->heap);
        struct sym *l = &e->syms[b.left], *r = &e->syms[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size)
            continue; /* stale: one side has changed since it was queued */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            e->syms[r->next].prev = b.left;
        if ((rc = add_bigram(e, l->prev, b.left)) || (rc = add_bigram(e, b.left, l->next)))
            return rc;
    }
    return CLSPEC_OK;
}

/* One pre-tokenized word, already byte-level encoded in e->buf[0..len). */
static int bpe_word(struct enc *e, size_t len)
{
    const struct cs_tokenizer *t = e->t;
    int rc, n;
    if (t->ignore_merges) {
        int32_t id = cs_tokenizer_find(t, e->buf, len);
        if (id >= 0)
            return ivec_push(&e->out, id);
    }
    if ((rc = make_syms(e, len, &n)))
        return rc;
    if ((rc = merge_all(e, n, true)))
        return rc;
    for (int i = n > 0 ? 0 : -1; i >= 0; i = e->syms[i].next) {
        const struct sym *s = &e->syms[i];
        int32_t id = cs_tokenizer_find(t, e->buf + s->off, s->n);
        if (id >= 0) {
            if ((rc = ivec_push(&e->out, id)))
                return rc;
            continue;
        }
        /* not a token: one token per byte-level character (= per input byte) */
        for (size_t off = s->off; off < s->off + s->n;) {
            size_t k;
            uint32_t cp = cs_utf8_decode((const uint8_t *)e->buf + off, s->off + s->n - off, &k);
            int32_t bid = cp < CS_ARRAY_LEN(t->bmap.rev) && t->bmap.rev[cp] >= 0 ? t->byte_tok[t->bmap.rev[cp]] : NO_ID;
            if (bid < 0)
                bid = t->unk;
            if (bid >= 0 && (rc = ivec_push(&e->out, bid)))
                return rc;
            off += k;
        }
    }
    return CLSPEC_OK;
}

static int bpe_fragment(struct enc *e, const char *text, size_t len)
{
    const struct cs_tokenizer *t = e->t;
    if (reserve((void **)&e->cps, &e->cps_cap, len + 1, sizeof(*e->cps)))
        return CLSPEC_E_NOMEM;
    size_t *offs = malloc((len + 1) * sizeof(*offs));
    size_t *ends = malloc((len + 1) * sizeof(*ends));
    int rc = CLSPEC_OK;
    if (!offs || !ends) {
        rc = CLSPEC_E_NOMEM;
        goto out;
    }
    size_t n = 0;
    for (size_t off = 0; off < len; n++) {
        size_t k;
        e->cps[n] = cs_utf8_decode((const uint8_t *)text + off, len - off, &k);
        offs[n] = off;
        off += k;
    }
    offs[n] = len;
    size_t n_words = cs_pretok_split(t->pre, e->cps, n, ends);
    size_t start = 0;
    for (size_t w = 0; w < n_words; w++) {
        size_t b0 = offs[start], b1 = offs[ends[w]];
        start = ends[w];
        if (reserve((void **)&e->buf, &e->buf_cap, 2 * (b1 - b0) + 1, 1)) {
            rc = CLSPEC_E_NOMEM;
            goto out;
        }
        size_t m = 0;
        for (size_t i = b0; i < b1; i++) {
            uint8_t c = (uint8_t)text[i];
            memcpy(e->buf + m, t->bmap.utf8[c], t->bmap.len[c]);
            m += t->bmap.len[c];
        }
        if ((rc = bpe_word(e, m)))
            goto out;
    }
out:
    free(offs);
    free(ends);
    return rc;
}

/* ---------- special-token partitioning ---------- */

struct frag {
    size_t off, len; /* raw text, when id < 0 */
    int32_t id;      /* a special token */
};

struct fvec {
    struct frag *v;
    size_t n, cap;
};

static int fvec_push(struct fvec *a, struct frag f)
{
    if (reserve((void **)&a->v, &a->cap, a->n + 1, sizeof(*a->v)))
        return CLSPEC_E_NOMEM;
    a->v[a->n++] = f;
    return CLSPEC_OK;
}

static const char *find_bytes(const char *h, size_t hn, const char *nd, size_t nn)
{
    if (nn == 0 || nn > hn)
        return NULL;
    for (const char *p = h; (p = memchr(p, nd[0], hn - (size_t)(p - h) - nn + 1)) != NULL; p++)
        if (memcmp(p, nd, nn) == 0)
            return p;
    return NULL;
}

/* Splits text into raw and special fragments: each special token in turn
 * (longest first) is cut out of every raw fragment, as llama.cpp does. */
static int partition(const struct cs_tokenizer *t, const char *text, size_t len, bool parse_special,
                     struct fvec *fr)
{
    struct fvec tmp = {0};
    int rc = CLSPEC_OK;
    bool present[256] = {false}; /* bytes in text: most specials can be skipped at once */
    fr->n = 0;
    if (len && (rc = fvec_push(fr, (struct frag){0, len, NO_ID})))
        return rc;
    for (size_t i = 0; i < len; i++)
        present[(uint8_t)text[i]] = true;
    for (size_t s = 0; s < t->n_special && fr->n; s++) {
        int32_t id = t->special[s];
        uint8_t ty = t->type[id];
        if ((!parse_special && ty != CS_TT_USER_DEFINED) || !present[(uint8_t)t->text[t->text_off[id]]])
            continue;
        const char *st = t->text + t->text_off[id];
        size_t sl = t->text_len[id];
        tmp.n = 0;
        bool hit = false;
        for (size_t i = 0; i < fr->n; i++) {
            struct frag f = fr->v[i];
            const char *p;
            while (f.id < 0 && (p = find_bytes(text + f.off, f.len, st, sl)) != NULL) {
                size_t at = (size_t)(p - text);
                hit = true;
                if (at > f.off && (rc = fvec_push(&tmp, (struct frag){f.off, at - f.off, NO_ID})))
                    goto out;
                if ((rc = fvec_push(&tmp, (struct frag){at, sl, id})))
                    goto out;
                f.len -= at + sl - f.off;
                f.off = at + sl;
            }
            if ((f.id >= 0 || f.len > 0) && (rc = fvec_push(&tmp, f)))
                goto out;
        }
        if (hit) {
            struct fvec sw = *fr;
            *fr = tmp;
            tmp = sw;
        }
    }
out:
    free(tmp.v);
    return rc;
}

/* ---------- entry point ---------- */

static int encode(struct enc *e, const char *text, size_t len, bool add_special, bool parse_special)
{
    const struct cs_tokenizer *t = e->t;
    struct fvec fr = {0};
    int rc = partition(t, text, len, parse_special, &fr);
    if (rc)
        goto out;
    if (add_special && t->add_bos && (rc = ivec_push(&e->out, t->bos)))
        goto out;
    bool prev_special = true; /* SPM: the first fragment gets the space prefix */
    for (size_t i = 0; i < fr.n; i++) {
        const struct frag *f = &fr.v[i];
        if (f->id >= 0) {
            rc = ivec_push(&e->out, f->id);
            prev_special = true;
        } else if (t->kind == CS_TOK_SPM) {
            rc = spm_fragment(e, text + f->off, f->len, t->add_space_prefix && prev_special);
            prev_special = false;
        } else {
            rc = bpe_fragment(e, text + f->off, f->len);
        }
        if (rc)
            goto out;
    }
    if (add_special && t->add_eos)
        rc = ivec_push(&e->out, t->eos);
out:
    free(fr.v);
    return rc;
}

int cs_tokenize(const struct cs_tokenizer *t, const char *text, size_t len, bool add_special, bool parse_special,
                int32_t *out, size_t cap, size_t *n_out, char *err, size_t errlen)
{
    *n_out = 0;
    if (!text && len)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "tokenize: NULL text with length %zu", len);
    if (len > SIZE_MAX / 8 || len > (size_t)INT32_MAX / 4)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "tokenize: text of %zu bytes is too long", len);
    struct enc e = {.t = t};
    int rc = encode(&e, text, len, add_special, parse_special);
    if (rc == CLSPEC_OK) {
        *n_out = e.out.n;
        if (e.out.n > cap)
            rc = cs_err(err, errlen, CLSPEC_E_RANGE, "tokenize: %zu tokens do not fit in %zu", e.out.n, cap);
        else if (e.out.n)
            memcpy(out, e.out.v, e.out.n * sizeof(*out));
    } else {
        cs_err(err, errlen, rc, "tokenize: out of memory");
    }
    free(e.out.v);
    free(e.syms);
    free(e.heap.v);
    free(e.buf);
    free(e.cps);
    return rc;
}
