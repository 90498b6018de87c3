/* kv_rec.c: recurrent state slots of hybrid models (see kv_rec.h). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "kv/kv_rec.h"

#include "base/common.h"

void cs_kv_rec_free(struct cs_kv_rec *r)
{
    if (!r)
        return;
    for (uint32_t i = 0; i < r->n_rec; i++) {
        if (r->conv)
            cs_cl_release(&r->conv[i]);
        if (r->ssm)
            cs_cl_release(&r->ssm[i]);
    }
    free(r->idx);
    free(r->dev);
    free(r->conv);
    free(r->ssm);
    free(r->len);
    free(r->lo);
    free(r);
}

int cs_kv_rec_new(const struct cs_hparams *hp, const struct cs_layer *layers, uint32_t n_seq, uint32_t keep,
                  struct cs_cl_dev *const *layer_dev, struct cs_kv_rec **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!keep)
        keep = CS_KV_REC_KEEP_DEFAULT;
    if (n_seq == 0 || keep > 4096)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "recurrent state: %u sequences, %u states kept", n_seq, keep);
    struct cs_kv_rec *r = calloc(1, sizeof *r);
    if (!r)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "recurrent state: out of memory");
    r->n_layer = hp->n_layer;
    r->n_seq = n_seq;
    r->keep = keep;
    r->idx = malloc(hp->n_layer * sizeof *r->idx);
    r->dev = calloc(hp->n_layer, sizeof *r->dev);
    r->conv = calloc(hp->n_layer, sizeof *r->conv);
    r->ssm = calloc(hp->n_layer, sizeof *r->ssm);
    r->len = calloc(n_seq, sizeof *r->len);
    r->lo = calloc(n_seq, sizeof *r->lo);
    if (!r->idx || !r->dev || !r->conv || !r->ssm || !r->len || !r->lo) {
        cs_kv_rec_free(r);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "recurrent state: out of memory");
    }
    const uint64_t C = cs_hp_dn_conv_dim(hp), Dv = cs_hp_dn_dv(hp);
    r->conv_slot = (uint64_t)(hp->ssm_d_conv - 1) * C * 4;
    r->ssm_slot = (uint64_t)hp->ssm_dt_rank * hp->ssm_d_state * Dv * 4;
    const uint64_t slots = (uint64_t)n_seq * keep;
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        r->idx[l] = -1;
        if (!layers[l].recurrent)
            continue;
        struct cs_cl_dev *d = layer_dev[l];
        uint32_t i = r->n_rec++;
        r->idx[l] = (int32_t)i;
        r->dev[i] = d;
        if (r->ssm_slot * slots > d->info.max_alloc) {
            uint64_t need = r->ssm_slot * slots;
            cs_kv_rec_free(r);
            return cs_err(err, errlen, CLSPEC_E_RANGE,
                          "recurrent state: layer %u: %llu bytes (%u sequences x %u states kept) exceed the max "
                          "allocation of device %s; use fewer parallel sequences",
                          l, (unsigned long long)need, n_seq, keep, d->info.name);
        }
        int rc = cs_cl_alloc(d, CL_MEM_READ_WRITE, r->conv_slot * slots, NULL, &r->conv[i], err, errlen);
        if (rc == CLSPEC_OK)
            rc = cs_cl_alloc(d, CL_MEM_READ_WRITE, r->ssm_slot * slots, NULL, &r->ssm[i], err, errlen);
        if (rc != CLSPEC_OK) {
            cs_err_prefix(err, errlen, rc, "recurrent state: layer %u on %s", l, d->info.name);
            cs_kv_rec_free(r);
            return rc;
        }
    }
    *out = r;
    return CLSPEC_OK;
}

uint64_t cs_kv_rec_bytes(const struct cs_kv_rec *r)
{
    return r ? (r->conv_slot + r->ssm_slot) * r->n_seq * r->keep * r->n_rec : 0;
}

struct cs_kv_rec_view cs_kv_rec_layer(const struct cs_kv_rec *r, uint32_t l)
{
    struct cs_kv_rec_view v = {NULL, NULL};
    if (r && l < r->n_layer && r->idx[l] >= 0) {
        v.conv = r->conv[r->idx[l]];
        v.ssm = r->ssm[r->idx[l]];
    }
    return v;
}

/* The slot of the state after L >= 1 tokens of seq. */
static int32_t slot_of(const struct cs_kv_rec *r, int32_t seq, int32_t L)
{
    return seq * (int32_t)r->keep + (L - 1) % (int32_t)r->keep;
}

int cs_kv_rec_check(const struct cs_kv_rec *r, const struct cs_batch *b, char *err, size_t errlen)
{
    int32_t next[CS_MAX_SEQ];
    for (uint32_t s = 0; s < r->n_seq && s < CS_MAX_SEQ; s++)
        next[s] = r->len[s];
    for (int i = 0; i < b->n; i++) {
        int32_t s = b->seq[i];
        if (s < 0 || (uint32_t)s >= r->n_seq)
            return cs_err(err, errlen, CLSPEC_E_RANGE, "forward: sequence %d (row %d) out of range", s, i);
        if (b->pos[i] != next[s])
            return cs_err(err, errlen, CLSPEC_E_INVAL,
                          "forward: row %d of sequence %d is at position %d, but its recurrent state holds %d "
                          "tokens: a hybrid model's sequence must continue at its next position (remove the "
                          "later positions with seq_rm first)",
                          i, s, b->pos[i], next[s]);
        next[s]++;
    }
    return CLSPEC_OK;
}

void cs_kv_rec_plan(struct cs_kv_rec *r, const int32_t *seq, const int32_t *pos, int n, int32_t *rd, int32_t *wr)
{
    int32_t left[CS_MAX_SEQ] = {0}; /* rows of each sequence still to come in this pass */
    for (int t = 0; t < n; t++)
        left[seq[t]]++;
    const int32_t K = (int32_t)r->keep;
    for (int t = 0; t < n; t++) {
        const int32_t s = seq[t], p = pos[t];
        const bool carry = t > 0 && seq[t - 1] == s;
        const bool next_same = t + 1 < n && seq[t + 1] == s;
        left[s]--;
        rd[t] = carry ? -2 : p == 0 ? -1 : slot_of(r, s, p);
        /* stored: the last `keep` states of the pass (rollback), and every state a later, non-adjacent row reads */
        wr[t] = (left[s] < K || !next_same) ? slot_of(r, s, p + 1) : -1;
        r->len[s] = p + 1;
        if (r->lo[s] < p + 2 - K)
            r->lo[s] = p + 2 - K;
    }
}

/* Whether rm(seq, p0, p1) is possible; the new length in *nl. */
static int rm_one(const struct cs_kv_rec *r, int32_t s, int32_t p0, int32_t p1, int32_t *nl, char *err,
                  size_t errlen)
{
    const int32_t L = r->len[s];
    *nl = L;
    if (p0 < 0)
        p0 = 0;
    if (p0 >= L || (p1 >= 0 && p1 <= p0))
        return CLSPEC_OK;
    if (p1 >= 0 && p1 < L)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED,
                      "seq_rm(%d, %d, %d): sequence %d of a hybrid model holds %d tokens of recurrent state; only "
                      "a tail [p0, end) can be removed",
                      s, p0, p1, s, L);
    if (p0 > 0 && p0 < r->lo[s])
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED,
                      "seq_rm(%d, %d, end): the recurrent state of sequence %d is kept for lengths %d..%d only "
                      "(the last %u); cannot roll back to %d tokens",
                      s, p0, s, r->lo[s], L, r->keep, p0);
    *nl = p0;
    return CLSPEC_OK;
}

int cs_kv_rec_seq_rm(struct cs_kv_rec *r, int32_t seq, int32_t p0, int32_t p1, bool check_only, char *err,
                     size_t errlen)
{
    int32_t s0 = seq < 0 ? 0 : seq, s1 = seq < 0 ? (int32_t)r->n_seq : seq + 1;
    for (int32_t s = s0; s < s1; s++) {
        int32_t nl;
        CS_TRY(rm_one(r, s, p0, p1, &nl, err, errlen));
    }
    if (check_only)
        return CLSPEC_OK;
    for (int32_t s = s0; s < s1; s++) {
        int32_t nl;
        rm_one(r, s, p0, p1, &nl, NULL, 0);
        r->len[s] = nl;
        if (nl == 0)
            r->lo[s] = 0;
    }
    return CLSPEC_OK;
}

int cs_kv_rec_seq_cp(struct cs_kv_rec *r, int32_t src, int32_t dst, int32_t p0, int32_t p1, bool check_only,
                     char *err, size_t errlen)
{
    if (src == dst)
        return CLSPEC_OK;
    int32_t L = r->len[src];
    if (p1 >= 0 && p1 < L)
        L = p1;
    if (p0 > 0 && p0 < L)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED,
                      "seq_cp(%d, %d, %d, %d): a hybrid model's recurrent state can only be copied from position 0",
                      src, dst, p0, p1);
    if (p0 > 0)
        return CLSPEC_OK; /* nothing of the state to copy */
    if (L > 0 && L != r->len[src] && L < r->lo[src])
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED,
                      "seq_cp(%d, %d, 0, %d): the recurrent state of sequence %d after %d tokens is not kept "
                      "(lengths %d..%d are)",
                      src, dst, p1, src, L, r->lo[src], r->len[src]);
    if (check_only)
        return CLSPEC_OK;
    if (L > 0) {
        const size_t from = (size_t)slot_of(r, src, L), to = (size_t)slot_of(r, dst, L);
        for (uint32_t i = 0; i < r->n_rec; i++) {
            cl_int e = clEnqueueCopyBuffer(r->dev[i]->q, r->conv[i], r->conv[i], from * r->conv_slot,
                                           to * r->conv_slot, r->conv_slot, 0, NULL, NULL);
            if (e == CL_SUCCESS)
                e = clEnqueueCopyBuffer(r->dev[i]->q, r->ssm[i], r->ssm[i], from * r->ssm_slot, to * r->ssm_slot,
                                        r->ssm_slot, 0, NULL, NULL);
            CS_TRY(cs_cl_check(e, "clEnqueueCopyBuffer(recurrent state)", err, errlen));
        }
    }
    r->len[dst] = r->lo[dst] = L;
    return CLSPEC_OK;
}

void cs_kv_rec_seq_keep(struct cs_kv_rec *r, int32_t seq)
{
    for (uint32_t s = 0; s < r->n_seq; s++)
        if ((int32_t)s != seq)
            r->len[s] = r->lo[s] = 0;
}

void cs_kv_rec_clear(struct cs_kv_rec *r)
{
    memset(r->len, 0, r->n_seq * sizeof *r->len);
    memset(r->lo, 0, r->n_seq * sizeof *r->lo);
}

int32_t cs_kv_rec_restorable(const struct cs_kv_rec *r, int32_t seq, int32_t k)
{
    if (seq < 0 || (uint32_t)seq >= r->n_seq)
        return 0;
    if (k >= r->len[seq])
        return r->len[seq];
    return k >= r->lo[seq] ? k : 0;
}
