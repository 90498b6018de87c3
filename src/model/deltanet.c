/* deltanet.c: the gated delta-net mixer of hybrid (qwen35) layers, a part of
 * the block builder (see cs_blk_deltanet in block.h). The projections and
 * norms go through the kernel family; the conv and the recurrence are the
 * family-independent kernels of cl/deltanet.cl (src/ops/dn_ops.h), which
 * read and write the sequence's recurrent state slots (src/kv/kv_rec.h). */
#include "config.h"

#include "model/block.h"

#include "base/common.h"
#include "model/forward.h"

#define DN_CHUNK_MIN_ROWS 32 /* rows of a pass from which the chunked delta rule is used */

int cs_blk_deltanet(const struct cs_ops *o, const struct cs_blk_shape *s, const struct cs_fwd_layer *L,
                    const struct cs_kv_rec_view *rv, const struct cs_blk_act *a, int n, const struct cs_blk_opt *opt,
                    char *err, size_t errlen)
{
    const struct cs_dn_shape *dn = &s->dn;
    const int E = s->n_embd, DI = dn->Hv * dn->Dv;
    if (!rv || !rv->conv || !rv->ssm)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "delta-net layer: no recurrent state (the context has none)");
    if (!opt->normed)
        CS_TRY(o->f->rmsnorm(o, a->x, L->attn_norm, a->xb, n, E, s->eps, err, errlen));
    CS_TRY(o->f->matmul(o, &L->wqkv, a->xb, a->qg, n, n, err, errlen));
    CS_TRY(o->f->matmul(o, &L->wz, a->xb, a->gz, n, n, err, errlen));
    CS_TRY(o->f->matmul(o, &L->w_beta, a->xb, a->bt, n, n, err, errlen));
    CS_TRY(o->f->matmul(o, &L->w_alpha, a->xb, a->al, n, n, err, errlen));
    CS_TRY(cs_op_dn_conv(o->dev, dn, a->qg, L->conv1d, rv->conv, a->rd, a->wr, n, err, errlen));
    /* prefill-sized passes on GPU-style devices: the chunked form; decode and verification rows (which
     * store a state per row) and CPU-style devices: the row recurrence (see dn_ops.h) */
    const bool chunked = n >= DN_CHUNK_MIN_ROWS && o->dev->info.family == CS_KFAMILY_GPU;
    CS_TRY(cs_op_dn_recur(o->dev, dn, a->qg, a->bt, a->al, L->dt_bias, L->ssm_a, rv->ssm, a->rd, a->wr, a->dno, n,
                          chunked, err, errlen));
    CS_TRY(o->f->rmsnorm(o, a->dno, L->ssm_norm, a->dno, n * dn->Hv, dn->Dv, s->eps, err, errlen));
    CS_TRY(cs_op_swiglu(o->dev, a->gz, 0, a->dno, 0, a->dno, 0, (size_t)n * DI, err, errlen));
    CS_TRY(o->f->matmul(o, &L->ssm_out, a->dno, a->xb, n, n, err, errlen));
    return o->f->add_rmsnorm(o, a->x, a->xb, L->ffn_norm, a->xb, n, E, s->eps, err, errlen);
}
