/* kv_seq.c: the KV cache's sequence operations (see kv.h): clear, seq_rm,
 * seq_cp, seq_keep, and seq_add with its K re-rotation on every layer's
 * device (cs_op_kv_shift). */
#include "config.h"

#include <stdlib.h>

#include "base/common.h"
#include "kv/kv.h"
#include "kv/kv_impl.h"
#include "kv/kv_rec.h"

#define BIT(s) (1ull << (uint32_t)(s))

static bool in_range(int32_t p, int32_t p0, int32_t p1)
{
    return p >= 0 && p >= p0 && (p1 < 0 || p < p1);
}

void cs_kv_clear(struct cs_kv *kv)
{
    for (int32_t c = 0; c < kv->hi; c++)
        if (kv->pos[c] >= 0 || kv->seq[c])
            cs_kv_free_cell(kv, (uint32_t)c);
    kv->n_used = 0;
    kv->hi = 0;
    if (kv->rec)
        cs_kv_rec_clear(kv->rec);
}

int cs_kv_seq_rm(struct cs_kv *kv, int32_t seq, int32_t p0, int32_t p1, char *err, size_t errlen)
{
    int rc = cs_kv_check_seq(kv, "seq_rm", seq, true, err, errlen);
    if (rc != CLSPEC_OK)
        return rc;
    if (kv->rec && !kv->rec_inner)
        CS_TRY(cs_kv_rec_seq_rm(kv->rec, seq, p0, p1, false, err, errlen));
    for (int32_t c = 0; c < kv->hi; c++) {
        if (!in_range(kv->pos[c], p0, p1))
            continue;
        if (seq < 0 || kv->seq[c] == BIT(seq)) {
            cs_kv_free_cell(kv, (uint32_t)c);
        } else if (kv->seq[c] & BIT(seq)) {
            kv->seq[c] &= ~BIT(seq);
            cs_kv_touch(kv, (uint32_t)c);
        }
    }
    cs_kv_fix_hi(kv);
    return CLSPEC_OK;
}

int cs_kv_seq_cp(struct cs_kv *kv, int32_t src, int32_t dst, int32_t p0, int32_t p1, char *err, size_t errlen)
{
    int rc = cs_kv_check_seq(kv, "seq_cp", src, false, err, errlen);
    if (rc == CLSPEC_OK)
        rc = cs_kv_check_seq(kv, "seq_cp", dst, false, err, errlen);
    if (rc != CLSPEC_OK || src == dst)
        return rc;
    if (kv->rec && !kv->rec_inner) { /* the state first (it may refuse), then the cells */
        CS_TRY(cs_kv_rec_seq_cp(kv->rec, src, dst, p0, p1, false, err, errlen));
        kv->rec_inner = true;
        rc = cs_kv_seq_cp(kv, src, dst, p0, p1, err, errlen);
        kv->rec_inner = false;
        return rc;
    }
    if (kv->p.unified) {
        rc = cs_kv_seq_rm(kv, dst, p0, p1, err, errlen);
        for (int32_t c = 0; rc == CLSPEC_OK && c < kv->hi; c++) {
            if ((kv->seq[c] & BIT(src)) && in_range(kv->pos[c], p0, p1)) {
                kv->seq[c] |= BIT(dst);
                cs_kv_touch(kv, (uint32_t)c);
            }
        }
        return rc;
    }
    /* partitioned: copy the rows into dst's partition (all or nothing) */
    uint32_t lo, hi, n = 0, n_dst = 0;
    cs_kv_region(kv, dst, &lo, &hi);
    for (int32_t c = 0; c < kv->hi; c++) {
        if (!in_range(kv->pos[c], p0, p1))
            continue;
        n += (kv->seq[c] & BIT(src)) != 0;
        n_dst += kv->seq[c] == BIT(dst); /* freed by the seq_rm below */
    }
    if (cs_kv_count_free(kv, lo, hi) + n_dst < n)
        return cs_err(err, errlen, CLSPEC_E_KV_FULL,
                      "kv seq_cp: %u cells of sequence %d do not fit the partition of %d", n,
                      (int)src, (int)dst);
    rc = cs_kv_seq_rm(kv, dst, p0, p1, err, errlen);
    if (rc != CLSPEC_OK || n == 0)
        return rc;
    int32_t *from = malloc((size_t)n * 2 * sizeof *from), *to = from ? from + n : NULL;
    if (!from)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "kv seq_cp: out of memory");
    uint32_t k = 0, c = lo;
    for (int32_t s = 0; s < kv->hi && k < n; s++) {
        if (!(kv->seq[s] & BIT(src)) || !in_range(kv->pos[s], p0, p1))
            continue;
        while (kv->pos[c] >= 0)
            c++;
        from[k] = s;
        to[k++] = (int32_t)c;
        kv->pos[c] = kv->pos[s];
        kv->seq[c] = BIT(dst);
        kv->tok[c] = kv->tok[s];
        kv->n_used++;
        cs_kv_touch(kv, c);
    }
    for (uint32_t l = 0; rc == CLSPEC_OK && l < kv->n_layer; l++) {
        struct cs_cl_dev *d = cs_kv_layer_device(kv, l);
        if (!kv->k[l])
            continue;
        rc = cs_kv_copy_rows(d, kv->k[l], kv->k[l], kv->row_bytes_k, from, to, n, err, errlen);
        if (rc == CLSPEC_OK)
            rc = cs_kv_copy_rows(d, kv->v[l], kv->v[l], kv->row_bytes_v, from, to, n, err, errlen);
    }
    free(from);
    return rc;
}

int cs_kv_seq_keep(struct cs_kv *kv, int32_t seq, char *err, size_t errlen)
{
    int rc = cs_kv_check_seq(kv, "seq_keep", seq, false, err, errlen);
    if (rc != CLSPEC_OK)
        return rc;
    if (kv->rec)
        cs_kv_rec_seq_keep(kv->rec, seq);
    for (int32_t c = 0; c < kv->hi; c++) {
        if (kv->pos[c] < 0 || kv->seq[c] == BIT(seq))
            continue;
        if (kv->seq[c] & BIT(seq)) {
            kv->seq[c] = BIT(seq);
            cs_kv_touch(kv, (uint32_t)c);
        } else {
            cs_kv_free_cell(kv, (uint32_t)c);
        }
    }
    cs_kv_fix_hi(kv);
    return CLSPEC_OK;
}

/* Re-rotates the K rows of cells[0..n) by delta on every layer. */
static int shift_k(struct cs_kv *kv, const int32_t *cells, uint32_t n, int32_t delta, char *err,
                   size_t errlen)
{
    for (int i = 0; i < kv->n_dev; i++) {
        struct cs_cl_dev *d = kv->devs[i].dev;
        cl_mem buf;
        int rc = cs_cl_alloc(d, CL_MEM_READ_ONLY, (size_t)n * 4, NULL, &buf, err, errlen);
        if (rc != CLSPEC_OK)
            return rc;
        rc = cs_cl_write(d, buf, 0, (size_t)n * 4, cells, err, errlen);
        for (uint32_t l = 0; rc == CLSPEC_OK && l < kv->n_layer; l++) {
            if (kv->layer_dev[l] != i)
                continue;
            struct cs_kv_view v = cs_kv_layer_view(kv, l);
            rc = cs_op_kv_shift(d, &v, buf, (int)n, delta, &kv->rope, err, errlen);
        }
        clReleaseMemObject(buf); /* the enqueued kernels keep it alive */
        if (rc != CLSPEC_OK)
            return cs_err_prefix(err, errlen, rc, "kv seq_add");
    }
    return CLSPEC_OK;
}

int cs_kv_seq_add(struct cs_kv *kv, int32_t seq, int32_t p0, int32_t p1, int32_t delta, char *err, size_t errlen)
{
    int rc = cs_kv_check_seq(kv, "seq_add", seq, false, err, errlen);
    if (rc != CLSPEC_OK || delta == 0)
        return rc;
    if (kv->rec)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED,
                      "seq_add(%d, delta %d): positions of a hybrid model's sequence cannot be shifted (its "
                      "recurrent state is not positional); clear the sequence instead", seq, delta);
    uint32_t n = 0, n_shared = 0, lo, hi;
    for (int32_t c = 0; c < kv->hi; c++) {
        if (!(kv->seq[c] & BIT(seq)) || !in_range(kv->pos[c], p0, p1))
            continue;
        n++;
        n_shared += kv->seq[c] != BIT(seq) && kv->pos[c] + (int64_t)delta >= 0;
    }
    cs_kv_region(kv, seq, &lo, &hi);
    if (cs_kv_count_free(kv, lo, hi) < n_shared)
        return cs_err(err, errlen, CLSPEC_E_KV_FULL,
                      "kv seq_add: sequence %d shares %u cells and no free cells to unshare them",
                      (int)seq, n_shared);
    if (n == 0)
        return CLSPEC_OK;
    int32_t *list = malloc((size_t)(n + 2 * n_shared) * sizeof *list);
    if (!list)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "kv seq_add: out of memory");
    int32_t *from = list + n, *to = from + n_shared;
    uint32_t k = 0, ks = 0, f = lo;
    for (int32_t c = 0; c < kv->hi; c++) /* first the cells, then the changes */
        if ((kv->seq[c] & BIT(seq)) && in_range(kv->pos[c], p0, p1))
            list[k++] = c;
    uint32_t n_list = k;
    k = 0;
    for (uint32_t i = 0; i < n_list; i++) {
        int32_t c = list[i];
        int32_t np = (int32_t)(kv->pos[c] + (int64_t)delta);
        if (np < 0) { /* falls off the start */
            if (kv->seq[c] == BIT(seq))
                cs_kv_free_cell(kv, (uint32_t)c);
            else
                kv->seq[c] &= ~BIT(seq);
            cs_kv_touch(kv, (uint32_t)c);
            continue;
        }
        int32_t t = c;
        if (kv->seq[c] != BIT(seq)) { /* shared: unshare into a free cell */
            while (kv->pos[f] >= 0)
                f++;
            t = (int32_t)f;
            kv->seq[c] &= ~BIT(seq);
            cs_kv_touch(kv, (uint32_t)c);
            kv->seq[t] = BIT(seq);
            kv->tok[t] = kv->tok[c];
            kv->n_used++;
            from[ks] = c;
            to[ks++] = t;
        }
        kv->pos[t] = np;
        cs_kv_touch(kv, (uint32_t)t);
        list[k++] = t;
    }
    cs_kv_fix_hi(kv);
    for (uint32_t l = 0; rc == CLSPEC_OK && ks && l < kv->n_layer; l++) {
        struct cs_cl_dev *d = cs_kv_layer_device(kv, l);
        rc = cs_kv_copy_rows(d, kv->k[l], kv->k[l], kv->row_bytes_k, from, to, ks, err, errlen);
        if (rc == CLSPEC_OK)
            rc = cs_kv_copy_rows(d, kv->v[l], kv->v[l], kv->row_bytes_v, from, to, ks, err, errlen);
    }
    if (rc == CLSPEC_OK && k)
        rc = shift_k(kv, list, k, delta, err, errlen);
    free(list);
    return rc;
}

