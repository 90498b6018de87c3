/* kv_ckpt.c: checkpoints of one sequence's KV cells (see kv.h): positions,
 * tokens, and the K/V rows of every layer copied into buffers on that
 * layer's device (clEnqueueCopyBuffer per contiguous run of cells). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "kv/kv.h"
#include "kv/kv_impl.h"

#define BIT(s) (1ull << (uint32_t)(s))

struct cs_kv_ckpt {
    const struct cs_kv *kv; /* the cache it was taken from (restore checks it) */
    int32_t seq, p0, p1;
    uint32_t n;             /* saved cells */
    int32_t *pos, *tok;     /* (n) */
    int32_t *cell;          /* (n) cell index at save time (restore prefers it) */
    cl_mem *k, *v;          /* (n_layer) n rows of row_bytes_k / row_bytes_v; NULL when n == 0 */
    uint64_t bytes;         /* device bytes held */
};

static bool in_range(int32_t p, int32_t p0, int32_t p1)
{
    return p >= 0 && p >= p0 && (p1 < 0 || p < p1);
}

void cs_kv_ckpt_free(struct cs_kv_ckpt *ck)
{
    if (!ck)
        return;
    for (uint32_t l = 0; ck->k && ck->kv && l < ck->kv->n_layer; l++) {
        if (ck->k[l])
            clReleaseMemObject(ck->k[l]);
        if (ck->v[l])
            clReleaseMemObject(ck->v[l]);
    }
    free(ck->k);
    free(ck->pos);
    free(ck);
}

uint64_t cs_kv_ckpt_bytes(const struct cs_kv_ckpt *ck)
{
    return ck ? ck->bytes : 0;
}

int cs_kv_ckpt_save(struct cs_kv *kv, int32_t seq, int32_t p0, int32_t p1, struct cs_kv_ckpt **out, char *err,
                    size_t errlen)
{
    *out = NULL;
    int rc = cs_kv_check_seq(kv, "checkpoint save", seq, false, err, errlen);
    if (rc != CLSPEC_OK)
        return rc;
    if (kv->rec)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED,
                      "checkpoint save: sequence %d of a hybrid model: checkpoints do not hold recurrent state yet "
                      "(rollback uses the kept states of src/kv/kv_rec.h)", seq);
    uint32_t n = 0;
    for (int32_t c = 0; c < kv->hi; c++)
        n += (kv->seq[c] & BIT(seq)) && in_range(kv->pos[c], p0, p1);
    struct cs_kv_ckpt *ck = calloc(1, sizeof *ck);
    if (ck) {
        ck->pos = malloc((size_t)(n ? n : 1) * 3 * sizeof *ck->pos);
        ck->k = calloc((size_t)kv->n_layer * 2, sizeof *ck->k);
    }
    if (!ck || !ck->pos || !ck->k) {
        cs_kv_ckpt_free(ck);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "kv checkpoint: out of memory");
    }
    ck->kv = kv;
    ck->v = ck->k + kv->n_layer;
    ck->tok = ck->pos + (n ? n : 1);
    ck->cell = ck->tok + (n ? n : 1);
    ck->seq = seq;
    ck->p0 = p0;
    ck->p1 = p1;
    ck->n = n;
    int32_t *slot = malloc((size_t)(n ? n : 1) * sizeof *slot);
    if (!slot) {
        cs_kv_ckpt_free(ck);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "kv checkpoint: out of memory");
    }
    uint32_t k = 0;
    for (int32_t c = 0; c < kv->hi && k < n; c++) {
        if (!(kv->seq[c] & BIT(seq)) || !in_range(kv->pos[c], p0, p1))
            continue;
        ck->pos[k] = kv->pos[c];
        ck->tok[k] = kv->tok[c];
        ck->cell[k] = c;
        slot[k] = (int32_t)k;
        k++;
    }
    for (uint32_t l = 0; n && rc == CLSPEC_OK && l < kv->n_layer; l++) {
        struct cs_cl_dev *d = cs_kv_layer_device(kv, l);
        rc = cs_cl_alloc(d, CL_MEM_READ_WRITE, (size_t)(n * kv->row_bytes_k), NULL, &ck->k[l], err,
                         errlen);
        if (rc == CLSPEC_OK)
            rc = cs_cl_alloc(d, CL_MEM_READ_WRITE, (size_t)(n * kv->row_bytes_v), NULL, &ck->v[l],
                             err, errlen);
        if (rc == CLSPEC_OK)
            rc = cs_kv_copy_rows(d, kv->k[l], ck->k[l], kv->row_bytes_k, ck->cell, slot, n, err,
                                 errlen);
        if (rc == CLSPEC_OK)
            rc = cs_kv_copy_rows(d, kv->v[l], ck->v[l], kv->row_bytes_v, ck->cell, slot, n, err,
                                 errlen);
        if (rc != CLSPEC_OK)
            cs_err_prefix(err, errlen, rc, "kv checkpoint: layer %u", l);
    }
    free(slot);
    if (rc != CLSPEC_OK) {
        cs_kv_ckpt_free(ck);
        return rc;
    }
    ck->bytes = (uint64_t)n * (kv->row_bytes_k + kv->row_bytes_v) * kv->n_layer;
    *out = ck;
    return CLSPEC_OK;
}

int cs_kv_ckpt_restore(struct cs_kv *kv, const struct cs_kv_ckpt *ck, char *err, size_t errlen)
{
    if (ck->kv != kv)
        return cs_err(err, errlen, CLSPEC_E_INVAL,
                      "kv checkpoint restore: the checkpoint belongs to another cache");
    int32_t seq = ck->seq;
    uint32_t lo, hi, n = ck->n, freed = 0;
    cs_kv_region(kv, seq, &lo, &hi);
    for (int32_t c = 0; c < kv->hi; c++) /* cells the removal below frees */
        freed += kv->seq[c] == BIT(seq) && in_range(kv->pos[c], ck->p0, ck->p1);
    if (cs_kv_count_free(kv, lo, hi) + freed < n)
        return cs_err(err, errlen, CLSPEC_E_KV_FULL,
                      "kv checkpoint restore: %u cells of sequence %d do not fit", n, (int)seq);
    int rc = cs_kv_seq_rm(kv, seq, ck->p0, ck->p1, err, errlen);
    if (rc != CLSPEC_OK || n == 0)
        return rc;
    int32_t *to = malloc((size_t)n * 2 * sizeof *to), *slot = to ? to + n : NULL;
    if (!to)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "kv checkpoint restore: out of memory");
    /* each saved cell goes back to its own index when that is free (the
     * usual rollback: the cells were just removed), else to a free cell */
    for (uint32_t i = 0; i < n; i++) {
        int32_t c = ck->cell[i];
        to[i] = -1;
        slot[i] = (int32_t)i;
        if ((uint32_t)c >= lo && (uint32_t)c < hi && kv->pos[c] < 0) {
            to[i] = c;
            kv->pos[c] = ck->pos[i]; /* claimed */
        }
    }
    uint32_t f = lo;
    for (uint32_t i = 0; i < n; i++) {
        if (to[i] < 0) {
            while (kv->pos[f] >= 0)
                f++;
            to[i] = (int32_t)f;
        }
        int32_t c = to[i];
        if (kv->pos[c] < 0 || kv->seq[c] == 0)
            kv->n_used++;
        kv->pos[c] = ck->pos[i];
        kv->seq[c] = BIT(seq);
        kv->tok[c] = ck->tok[i];
        cs_kv_touch(kv, (uint32_t)c);
    }
    for (uint32_t l = 0; rc == CLSPEC_OK && l < kv->n_layer; l++) {
        struct cs_cl_dev *d = cs_kv_layer_device(kv, l);
        rc = cs_kv_copy_rows(d, ck->k[l], kv->k[l], kv->row_bytes_k, slot, to, n, err, errlen);
        if (rc == CLSPEC_OK)
            rc = cs_kv_copy_rows(d, ck->v[l], kv->v[l], kv->row_bytes_v, slot, to, n, err, errlen);
    }
    free(to);
    return rc;
}
