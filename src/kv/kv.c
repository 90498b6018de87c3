/* kv.c: the KV cache (see kv.h): device buffers, metadata sync and visiting
 * order, cell placement, accounting and prefix matching. Sequence
 * operations: kv_seq.c; checkpoints: kv_ckpt.c. */
#include "config.h"

#include "kv/kv.h"

#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "kv/kv_impl.h"
#include "kv/kv_rec.h"
#include "gguf/quant.h"

#define BIT(s) (1ull << (uint32_t)(s))

/* ---- helpers shared with kv_ckpt.c ---- */

void cs_kv_region(const struct cs_kv *kv, int32_t seq, uint32_t *lo, uint32_t *hi)
{
    if (kv->p.unified || seq < 0) {
        *lo = 0;
        *hi = kv->p.n_ctx;
        return;
    }
    uint64_t n = kv->p.n_ctx, m = kv->p.n_seq_max;
    *lo = (uint32_t)((uint64_t)seq * n / m);
    *hi = (uint32_t)((uint64_t)(seq + 1) * n / m);
}

void cs_kv_touch(struct cs_kv *kv, uint32_t c)
{
    if (kv->dirty_lo >= kv->dirty_hi) {
        kv->dirty_lo = (int32_t)c;
        kv->dirty_hi = (int32_t)c + 1;
    } else {
        kv->dirty_lo = CS_MIN(kv->dirty_lo, (int32_t)c);
        kv->dirty_hi = CS_MAX(kv->dirty_hi, (int32_t)c + 1);
    }
    if (kv->pos[c] >= 0 && (int32_t)c >= kv->hi)
        kv->hi = (int32_t)c + 1;
}

void cs_kv_free_cell(struct cs_kv *kv, uint32_t c)
{
    if (kv->pos[c] >= 0)
        kv->n_used--;
    kv->pos[c] = -1;
    kv->seq[c] = 0;
    kv->tok[c] = -1;
    cs_kv_touch(kv, c);
}

void cs_kv_fix_hi(struct cs_kv *kv)
{
    while (kv->hi > 0 && kv->pos[kv->hi - 1] < 0)
        kv->hi--;
}

uint32_t cs_kv_count_free(const struct cs_kv *kv, uint32_t lo, uint32_t hi)
{
    uint32_t n = 0;
    for (uint32_t c = lo; c < hi; c++)
        n += kv->pos[c] < 0;
    return n;
}

int cs_kv_check_seq(const struct cs_kv *kv, const char *op, int32_t seq, bool allow_all, char *err,
                    size_t errlen)
{
    if ((allow_all && seq == -1) || (seq >= 0 && (uint32_t)seq < kv->p.n_seq_max))
        return CLSPEC_OK;
    return cs_err(err, errlen, CLSPEC_E_RANGE, "kv %s: sequence %d outside 0..%u", op, (int)seq,
                  kv->p.n_seq_max - 1);
}

int cs_kv_copy_rows(struct cs_cl_dev *d, cl_mem src, cl_mem dst, uint64_t row_bytes,
                    const int32_t *from, const int32_t *to, uint32_t n, char *err, size_t errlen)
{
    for (uint32_t i = 0; i < n;) {
        uint32_t j = i + 1;
        while (j < n && from[j] == from[j - 1] + 1 && to[j] == to[j - 1] + 1)
            j++;
        cl_int e = clEnqueueCopyBuffer(d->q, src, dst, (size_t)from[i] * row_bytes,
                                       (size_t)to[i] * row_bytes, (size_t)(j - i) * row_bytes, 0,
                                       NULL, NULL);
        if (e != CL_SUCCESS)
            return cs_cl_check(e, "clEnqueueCopyBuffer(kv rows)", err, errlen);
        i = j;
    }
    return CLSPEC_OK;
}

/* ---- creation ---- */

static int dev_index(struct cs_kv *kv, struct cs_cl_dev *d)
{
    for (int i = 0; i < kv->n_dev; i++)
        if (kv->devs[i].dev == d)
            return i;
    kv->devs[kv->n_dev].dev = d;
    return kv->n_dev++;
}

int cs_kv_new(const struct cs_hparams *hp, const struct cs_kv_params *p, struct cs_cl_dev *const *layer_dev,
              struct cs_kv **out, char *err, size_t errlen)
{
    return cs_kv_new_layers(hp, p, layer_dev, NULL, out, err, errlen);
}

int cs_kv_new_layers(const struct cs_hparams *hp, const struct cs_kv_params *p, struct cs_cl_dev *const *layer_dev,
                     const bool *no_kv, struct cs_kv **out, char *err, size_t errlen)
{
    *out = NULL;
    if (p->n_ctx == 0 || p->n_seq_max == 0 || p->n_seq_max > CS_MAX_SEQ || hp->n_layer == 0 ||
        hp->n_head_kv == 0 || p->n_ctx > INT32_MAX / 2)
        return cs_err(err, errlen, CLSPEC_E_INVAL,
                      "kv cache: bad parameters (n_ctx %u, n_seq_max %u of at most %d, %u layers)",
                      p->n_ctx, p->n_seq_max, CS_MAX_SEQ, hp->n_layer);
    if (!p->unified && p->n_ctx < p->n_seq_max)
        return cs_err(err, errlen, CLSPEC_E_INVAL,
                      "kv cache: %u cells cannot be partitioned over %u sequences", p->n_ctx,
                      p->n_seq_max);
    int rc = cs_kv_type_check(p->type_k, (int)hp->n_head_kv, (int)hp->head_dim, err, errlen);
    if (rc != CLSPEC_OK)
        return cs_err_prefix(err, errlen, rc, "type_k");
    rc = cs_kv_type_check(p->type_v, (int)hp->n_head_kv, (int)hp->head_dim, err, errlen);
    if (rc != CLSPEC_OK)
        return cs_err_prefix(err, errlen, rc, "type_v");
    struct cs_kv *kv = calloc(1, sizeof *kv);
    if (!kv)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "kv cache: out of memory");
    kv->p = *p;
    kv->n_layer = hp->n_layer;
    kv->n_kv_head = hp->n_head_kv;
    kv->head_dim = hp->head_dim;
    kv->rope.n_rot = (int)(hp->n_rot ? hp->n_rot : hp->head_dim);
    kv->rope.neox = hp->rope_style == CS_ROPE_NEOX;
    kv->rope.freq_base = hp->rope_freq_base;
    kv->rope.freq_scale = hp->rope_freq_scale;
    uint64_t row = (uint64_t)hp->n_head_kv * hp->head_dim;
    /* quantized rows are padded to whole blocks (cs_kv_row_bytes) */
    if (!cs_kv_row_bytes(p->type_k, row, &kv->row_bytes_k) ||
        !cs_kv_row_bytes(p->type_v, row, &kv->row_bytes_v)) {
        cs_kv_free(kv);
        return cs_err(err, errlen, CLSPEC_E_INVAL, "kv cache: bad row of %llu elements",
                      (unsigned long long)row);
    }
    kv->layer_dev = calloc(kv->n_layer, sizeof *kv->layer_dev);
    kv->devs = calloc(kv->n_layer, sizeof *kv->devs);
    kv->k = calloc(kv->n_layer, sizeof *kv->k);
    kv->v = calloc(kv->n_layer, sizeof *kv->v);
    kv->pos = malloc((size_t)p->n_ctx * sizeof *kv->pos);
    kv->seq = calloc(p->n_ctx, sizeof *kv->seq);
    kv->tok = malloc((size_t)p->n_ctx * sizeof *kv->tok);
    kv->order = malloc((size_t)p->n_ctx * sizeof *kv->order);
    kv->order_tmp = malloc((size_t)p->n_ctx * sizeof *kv->order_tmp);
    kv->order_key = malloc((size_t)p->n_ctx * sizeof *kv->order_key);
    if (!kv->layer_dev || !kv->devs || !kv->k || !kv->v || !kv->pos || !kv->seq || !kv->tok ||
        !kv->order || !kv->order_tmp || !kv->order_key) {
        cs_kv_free(kv);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "kv cache: out of memory");
    }
    for (uint32_t c = 0; c < p->n_ctx; c++) {
        kv->pos[c] = kv->tok[c] = -1;
        kv->order[c] = (int32_t)c;
    }
    for (uint32_t l = 0; l < kv->n_layer; l++) {
        struct cs_cl_dev *d = layer_dev[l];
        kv->layer_dev[l] = dev_index(kv, d);
        if (no_kv && no_kv[l])
            continue;
        uint64_t kb = kv->row_bytes_k * p->n_ctx, vb = kv->row_bytes_v * p->n_ctx;
        if (kb > d->info.max_alloc || vb > d->info.max_alloc) {
            bool isk = kb > d->info.max_alloc;
            rc = cs_err(err, errlen, CLSPEC_E_RANGE,
                        "kv cache: layer %u: the %c buffer (%u cells x %llu bytes = %llu bytes) "
                        "exceeds the max allocation of %llu bytes of device %u (%s); lower n_ctx "
                        "or use a smaller type_%c",
                        l, isk ? 'K' : 'V', p->n_ctx,
                        (unsigned long long)(isk ? kv->row_bytes_k : kv->row_bytes_v),
                        (unsigned long long)(isk ? kb : vb), (unsigned long long)d->info.max_alloc,
                        d->info.index, d->info.name, isk ? 'k' : 'v');
            cs_kv_free(kv);
            return rc;
        }
        rc = cs_cl_alloc(d, CL_MEM_READ_WRITE, kb, NULL, &kv->k[l], err, errlen);
        if (rc == CLSPEC_OK)
            rc = cs_cl_alloc(d, CL_MEM_READ_WRITE, vb, NULL, &kv->v[l], err, errlen);
        if (rc != CLSPEC_OK) {
            cs_err_prefix(err, errlen, rc, "kv cache: layer %u on device %u (%s)", l,
                          d->info.index, d->info.name);
            cs_kv_free(kv);
            return rc;
        }
    }
    for (int i = 0; i < kv->n_dev; i++) {
        struct cs_kv_dev *kd = &kv->devs[i];
        rc = cs_cl_alloc(kd->dev, CL_MEM_READ_WRITE, (size_t)p->n_ctx * 4, NULL, &kd->cell_pos,
                         err, errlen);
        if (rc == CLSPEC_OK)
            rc = cs_cl_alloc(kd->dev, CL_MEM_READ_WRITE, (size_t)p->n_ctx * 8, NULL,
                             &kd->cell_seq, err, errlen);
        if (rc == CLSPEC_OK)
            rc = cs_cl_alloc(kd->dev, CL_MEM_READ_WRITE, (size_t)p->n_ctx * 4, NULL,
                             &kd->cell_order, err, errlen);
        if (rc == CLSPEC_OK)
            rc = cs_cl_write(kd->dev, kd->cell_order, 0, (size_t)p->n_ctx * 4, kv->order, err,
                             errlen);
        if (rc != CLSPEC_OK) {
            cs_kv_free(kv);
            return cs_err_prefix(err, errlen, rc, "kv cache: cell metadata");
        }
    }
    kv->dirty_lo = 0;
    kv->dirty_hi = (int32_t)p->n_ctx;
    rc = cs_kv_sync(kv, true, err, errlen);
    if (rc != CLSPEC_OK) {
        cs_kv_free(kv);
        return rc;
    }
    *out = kv;
    return CLSPEC_OK;
}

void cs_kv_free(struct cs_kv *kv)
{
    if (!kv)
        return;
    cs_kv_rec_free(kv->rec);
    for (uint32_t l = 0; kv->k && kv->v && l < kv->n_layer; l++) {
        if (kv->k[l])
            clReleaseMemObject(kv->k[l]);
        if (kv->v[l])
            clReleaseMemObject(kv->v[l]);
    }
    for (int i = 0; kv->devs && i < kv->n_dev; i++) {
        if (kv->devs[i].cell_pos)
            clReleaseMemObject(kv->devs[i].cell_pos);
        if (kv->devs[i].cell_seq)
            clReleaseMemObject(kv->devs[i].cell_seq);
        if (kv->devs[i].cell_order)
            clReleaseMemObject(kv->devs[i].cell_order);
    }
    free(kv->layer_dev);
    free(kv->devs);
    free(kv->k);
    free(kv->v);
    free(kv->pos);
    free(kv->seq);
    free(kv->tok);
    free(kv->order);
    free(kv->order_tmp);
    free(kv->order_key);
    free(kv);
}

uint64_t cs_kv_bytes_per_token(const struct cs_kv *kv)
{
    uint64_t n = 0;
    for (uint32_t l = 0; l < kv->n_layer; l++)
        n += kv->k[l] != NULL;
    return (kv->row_bytes_k + kv->row_bytes_v) * n;
}

struct cs_kv_view cs_kv_layer_view(const struct cs_kv *kv, uint32_t l)
{
    const struct cs_kv_dev *kd = &kv->devs[kv->layer_dev[l]];
    struct cs_kv_view v = {kv->p.type_k, kv->p.type_v, (int)kv->p.n_ctx, (int)kv->n_kv_head,
                           (int)kv->head_dim, kv->k[l], kv->v[l], kd->cell_pos, kd->cell_seq,
                           kd->cell_order};
    return v;
}

struct cs_cl_dev *cs_kv_layer_device(const struct cs_kv *kv, uint32_t l)
{
    return kv->devs[kv->layer_dev[l]].dev;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* kv->order over [0, max(hi, order_hi)): see kv.h. Incremental: the
 * occupied cells outside the range changed since the last build
 * [dirty_lo, dirty_hi) keep their places from it (order_n of them, sorted
 * by (position, cell)); the occupied ones inside it are sorted alone (a
 * step's few rows: insertion, qsort beyond 32) and merged in. Returns the
 * entries to upload. */
static int32_t build_order(struct cs_kv *kv)
{
    const int32_t hi = kv->hi, up = CS_MAX(kv->hi, kv->order_hi), lo = kv->dirty_lo, dh = CS_MIN(kv->dirty_hi, hi);
    uint64_t *key = kv->order_key; /* (position, cell) of the changed occupied cells */
    int32_t m = 0;
    for (int32_t c = lo; c < dh; c++)
        if (kv->pos[c] >= 0)
            key[m++] = (uint64_t)kv->pos[c] << 32 | (uint32_t)c;
    if (m > 32) {
        qsort(key, (size_t)m, sizeof *key, cmp_u64);
    } else {
        for (int32_t i = 1; i < m; i++) {
            uint64_t x = key[i];
            int32_t j = i;
            for (; j > 0 && key[j - 1] > x; j--)
                key[j] = key[j - 1];
            key[j] = x;
        }
    }
    int32_t n = 0, k = 0; /* merge: kept old entries (outside the range, still below hi) and the sorted new */
    int32_t *out = kv->order_tmp;
    for (int32_t i = 0; i < kv->order_n; i++) {
        const int32_t c = kv->order[i];
        if ((c >= lo && c < kv->dirty_hi) || c >= hi || kv->pos[c] < 0)
            continue;
        const uint64_t kc = (uint64_t)kv->pos[c] << 32 | (uint32_t)c;
        while (k < m && key[k] < kc)
            out[n++] = (int32_t)(key[k++] & 0xffffffffu);
        out[n++] = c;
    }
    while (k < m)
        out[n++] = (int32_t)(key[k++] & 0xffffffffu);
    kv->order_n = n;
    memcpy(kv->order, out, (size_t)n * sizeof *out);
    for (int32_t c = 0; c < hi; c++)
        if (kv->pos[c] < 0)
            kv->order[n++] = c;
    for (int32_t c = hi; c < up; c++)
        kv->order[c] = c;
    kv->order_hi = hi;
    return up;
}

int cs_kv_sync(struct cs_kv *kv, bool blocking, char *err, size_t errlen)
{
    if (kv->dirty_lo >= kv->dirty_hi)
        return CLSPEC_OK;
    size_t lo = (size_t)kv->dirty_lo, n = (size_t)(kv->dirty_hi - kv->dirty_lo);
    int32_t n_order = build_order(kv);
    if (n_order < 0)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "kv sync: out of memory");
    for (int i = 0; i < kv->n_dev; i++) {
        struct cs_kv_dev *kd = &kv->devs[i];
        int (*wr)(struct cs_cl_dev *, cl_mem, size_t, size_t, const void *, char *, size_t) =
            blocking ? cs_cl_write : cs_cl_write_async;
        int rc = wr(kd->dev, kd->cell_pos, lo * 4, n * 4, kv->pos + lo, err, errlen);
        if (rc == CLSPEC_OK)
            rc = wr(kd->dev, kd->cell_seq, lo * 8, n * 8, kv->seq + lo, err, errlen);
        if (rc == CLSPEC_OK && n_order)
            rc = wr(kd->dev, kd->cell_order, 0, (size_t)n_order * 4, kv->order, err, errlen);
        if (rc != CLSPEC_OK)
            return cs_err_prefix(err, errlen, rc, "kv sync");
    }
    kv->dirty_lo = kv->dirty_hi = 0;
    return CLSPEC_OK;
}

/* ---- placement ---- */

/* The cell seq holds at position p, or -1. */
static int32_t find_cell(const struct cs_kv *kv, int32_t s, int32_t p)
{
    for (int32_t c = 0; c < kv->hi; c++)
        if (kv->pos[c] == p && (kv->seq[c] & BIT(s)))
            return c;
    return -1;
}

int cs_kv_place(struct cs_kv *kv, const struct cs_batch *b, int32_t *cells, int *seq_rc, char *err, size_t errlen)
{
    uint64_t present = 0;
    for (int s = 0; s < CS_MAX_SEQ; s++)
        seq_rc[s] = CLSPEC_OK;
    for (int i = 0; i < b->n; i++) {
        int32_t s = b->seq[i];
        if (s < 0 || (uint32_t)s >= kv->p.n_seq_max || b->pos[i] < 0)
            return cs_err(err, errlen, CLSPEC_E_RANGE,
                          "kv place: row %d: sequence %d (0..%u), position %d", i, (int)s,
                          kv->p.n_seq_max - 1, (int)b->pos[i]);
        for (int j = 0; j < i; j++)
            if (b->seq[j] == s && b->pos[j] == b->pos[i])
                return cs_err(err, errlen, CLSPEC_E_INVAL,
                              "kv place: rows %d and %d both hold sequence %d at position %d", j,
                              i, (int)s, (int)b->pos[i]);
        present |= BIT(s);
        cells[i] = -1;
    }
    int32_t *old = malloc((size_t)(b->n ? b->n : 1) * sizeof *old);
    if (!old)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "kv place: out of memory");
    for (int32_t s = 0; s < CS_MAX_SEQ; s++) {
        if (!(present & BIT(s)))
            continue;
        int32_t pmax = cs_kv_seq_pos_max(kv, s);
        uint32_t need = 0;
        for (int i = 0; i < b->n; i++) {
            if (b->seq[i] != s)
                continue;
            old[i] = b->pos[i] <= pmax ? find_cell(kv, s, b->pos[i]) : -1;
            if (old[i] >= 0 && kv->seq[old[i]] == BIT(s))
                cells[i] = old[i]; /* held by s alone: reused */
            else
                need++;
        }
        uint32_t lo, hi, got = 0;
        cs_kv_region(kv, s, &lo, &hi);
        if (cs_kv_count_free(kv, lo, hi) < need) {
            for (int i = 0; i < b->n; i++)
                if (b->seq[i] == s)
                    cells[i] = -1;
            seq_rc[s] = CLSPEC_E_KV_FULL;
            continue;
        }
        uint32_t c = lo;
        for (int i = 0; i < b->n && got < need; i++) {
            if (b->seq[i] != s)
                continue;
            if (cells[i] >= 0) {
                kv->tok[cells[i]] = b->token[i];
                continue;
            }
            while (kv->pos[c] >= 0)
                c++;
            if (old[i] >= 0) { /* shared with other sequences: leave it to them */
                kv->seq[old[i]] &= ~BIT(s);
                cs_kv_touch(kv, (uint32_t)old[i]);
            }
            kv->pos[c] = b->pos[i];
            kv->seq[c] = BIT(s);
            kv->tok[c] = b->token[i];
            kv->n_used++;
            cs_kv_touch(kv, c);
            cells[i] = (int32_t)c;
            got++;
        }
        for (int i = 0; i < b->n; i++) /* reused rows after the last new one */
            if (b->seq[i] == s && cells[i] >= 0)
                kv->tok[cells[i]] = b->token[i];
    }
    free(old);
    return CLSPEC_OK;
}

/* ---- queries ---- */

int32_t cs_kv_seq_pos_max(const struct cs_kv *kv, int32_t seq)
{
    int32_t m = -1;
    if (seq < 0 || seq >= CS_MAX_SEQ)
        return -1;
    for (int32_t c = 0; c < kv->hi; c++)
        if ((kv->seq[c] & BIT(seq)) && kv->pos[c] > m)
            m = kv->pos[c];
    return m;
}

uint32_t cs_kv_seq_n_cells(const struct cs_kv *kv, int32_t seq)
{
    uint32_t n = 0;
    if (seq < 0 || seq >= CS_MAX_SEQ)
        return 0;
    for (int32_t c = 0; c < kv->hi; c++)
        n += (kv->seq[c] & BIT(seq)) != 0;
    return n;
}

uint32_t cs_kv_n_free(const struct cs_kv *kv, int32_t seq)
{
    if (seq < 0 || (uint32_t)seq >= kv->p.n_seq_max)
        return 0;
    uint32_t lo, hi;
    cs_kv_region(kv, seq, &lo, &hi);
    return cs_kv_count_free(kv, lo, hi);
}

int32_t cs_kv_prefix_match(const struct cs_kv *kv, const int32_t *tokens, int32_t n, int32_t dst, int32_t *src)
{
    *src = -1;
    if (n <= 0)
        return 0;
    int32_t *at = malloc((size_t)n * sizeof *at), best = 0;
    if (!at)
        return 0;
    for (int32_t s = 0; (uint32_t)s < kv->p.n_seq_max; s++) {
        if (s == dst)
            continue;
        for (int32_t i = 0; i < n; i++)
            at[i] = -1;
        bool any = false;
        for (int32_t c = 0; c < kv->hi; c++) {
            if ((kv->seq[c] & BIT(s)) && kv->pos[c] >= 0 && kv->pos[c] < n) {
                at[kv->pos[c]] = kv->tok[c];
                any = true;
            }
        }
        if (!any)
            continue;
        int32_t k = 0;
        while (k < n && at[k] != -1 && at[k] == tokens[k]) /* -1: no cell, or an anonymous embedding row */
            k++;
        if (kv->rec) /* a hybrid model reuses a prefix only where its recurrent state is kept */
            k = cs_kv_rec_restorable(kv->rec, s, k);
        if (k > best) {
            best = k;
            *src = s;
        }
    }
    free(at);
    return best;
}
