/* lcpp_ops.c: host dispatch of cl/lcpp.cl (see lcpp_ops.h). */
#include "config.h"

#include <math.h>

#include "ops/lcpp_ops.h"

#include "base/common.h"
#include "gguf/quant.h"

#define LC_WG 16 /* local size of every lcpp kernel */

static int lc_launch(struct cs_cl_dev *d, const char *kname, const struct cs_karg *a, size_t na, size_t n_items,
                     char *err, size_t errlen)
{
    return cs_op_launch(d, "lcpp", NULL, kname, a, na, n_items, CS_MIN((size_t)LC_WG, d->info.max_wg), err, errlen);
}

bool cs_op_lcpp_matmul_ok(const struct cs_weight *w)
{
    if (w->n_parts != 1)
        return false;
    if (w->type == CS_TYPE_Q8_0)
        return w->n_in % 32 == 0 && (w->layout == CS_WLAYOUT_GGUF || w->layout == CS_WLAYOUT_Q8_0_F32D);
    if (w->type == CS_TYPE_Q4_0)
        return w->n_in % 32 == 0 && w->layout == CS_WLAYOUT_GGUF;
    return (w->type == CS_TYPE_F32 || w->type == CS_TYPE_F16) && w->layout == CS_WLAYOUT_GGUF;
}

int cs_op_lcpp_matmul(struct cs_cl_dev *d, const struct cs_weight *w, cl_mem x, cl_mem y, int n, bool batch,
                      cl_mem xq, cl_mem xd, char *err, size_t errlen)
{
    if (!cs_op_lcpp_matmul_ok(w))
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "lcpp matmul: weight type %s (layout %d, %u parts)",
                      cs_type_name(w->type), w->layout, w->n_parts);
    cl_mem W = w->parts[0].buf;
    cl_int n_in = (cl_int)w->n_in, n_out = (cl_int)w->n_out, nn = n, tiny = batch && w->n_in % 16 == 0;
    size_t items = (size_t)n * w->n_out;
    if (w->type == CS_TYPE_Q8_0 || w->type == CS_TYPE_Q4_0) {
        cl_int nb = n * n_in / 32, blk = w->type == CS_TYPE_Q4_0 ? 18 : w->layout == CS_WLAYOUT_Q8_0_F32D ? 36 : 34;
        cl_int whole = w->type == CS_TYPE_Q4_0 && w->n_out % 8 == 0; /* ggml's AVX2 q4_0_8x8 repack */
        const struct cs_karg qa[] = {CS_KA(x), CS_KA(xq), CS_KA(xd), CS_KA(nb)};
        CS_TRY(lc_launch(d, "lcpp_quant_q8_0", qa, CS_ARRAY_LEN(qa), (size_t)nb, err, errlen));
        const struct cs_karg a[] = {CS_KA(W), CS_KA(blk), CS_KA(whole), CS_KA(xq), CS_KA(xd), CS_KA(y), CS_KA(n_in),
                                    CS_KA(n_out), CS_KA(nn)};
        return lc_launch(d, "lcpp_mm_q0", a, CS_ARRAY_LEN(a), items, err, errlen);
    }
    const struct cs_karg a[] = {CS_KA(W), CS_KA(x), CS_KA(y), CS_KA(n_in), CS_KA(n_out), CS_KA(nn), CS_KA(tiny)};
    return lc_launch(d, w->type == CS_TYPE_F32 ? "lcpp_mm_f32" : "lcpp_mm_f16", a, CS_ARRAY_LEN(a), items, err,
                     errlen);
}

int cs_op_lcpp_rmsnorm(struct cs_cl_dev *d, cl_mem x, cl_mem w, cl_mem y, int n_rows, int n, float eps, char *err,
                       size_t errlen)
{
    const struct cs_karg a[] = {CS_KA(x), CS_KA(w), CS_KA(y), CS_KA(n_rows), CS_KA(n), CS_KA(eps)};
    return lc_launch(d, "lcpp_rmsnorm", a, CS_ARRAY_LEN(a), (size_t)n_rows, err, errlen);
}

int cs_op_lcpp_rope(struct cs_cl_dev *d, cl_mem x, size_t x_off, cl_mem cs, int n_tokens, int n_head, int head_dim,
                    int n_rot, bool neox, char *err, size_t errlen)
{
    cl_uint off = (cl_uint)x_off;
    cl_int nx = neox;
    const struct cs_karg a[] = {CS_KA(x), CS_KA(off), CS_KA(cs), CS_KA(n_tokens), CS_KA(n_head), CS_KA(head_dim),
                                CS_KA(n_rot), CS_KA(nx)};
    return lc_launch(d, "lcpp_rope", a, CS_ARRAY_LEN(a), (size_t)n_tokens * n_head, err, errlen);
}

int cs_op_lcpp_swiglu(struct cs_cl_dev *d, cl_mem g, cl_mem u, int n_rows, int F, char *err, size_t errlen)
{
    const struct cs_karg a[] = {CS_KA(g), CS_KA(u), CS_KA(n_rows), CS_KA(F)};
    return lc_launch(d, "lcpp_swiglu", a, CS_ARRAY_LEN(a), (size_t)n_rows * F, err, errlen);
}

int cs_op_lcpp_attention(struct cs_cl_dev *d, const struct cs_kv_view *kv, cl_mem q, cl_mem out, cl_mem tok_pos,
                         cl_mem tok_seq, int n_tokens, int n_head, int n_kv, bool batch, float scale, cl_mem sc,
                         char *err, size_t errlen)
{
    if (kv->type_k != CS_TYPE_F16 || kv->type_v != CS_TYPE_F16)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "lcpp attention: the cache must be f16/f16 (is %s/%s)",
                      cs_type_name(kv->type_k), cs_type_name(kv->type_v));
    if (n_kv <= 0 || n_kv > (kv->n_cells + 31) / 32 * 32 || n_head % kv->n_kv_head)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "lcpp attention: %d cells of %d, %d heads over %d", n_kv,
                      kv->n_cells, n_head, kv->n_kv_head);
    cl_int nkvh = kv->n_kv_head, hd = kv->head_dim, bt = batch;
    const struct cs_karg a[] = {CS_KA(q), CS_KA(out), CS_KA(kv->k), CS_KA(kv->v), CS_KA(kv->cell_pos),
                                CS_KA(kv->cell_seq), CS_KA(tok_pos), CS_KA(tok_seq), CS_KA(n_tokens), CS_KA(n_head),
                                CS_KA(nkvh), CS_KA(hd), CS_KA(n_kv), CS_KA(kv->n_cells), CS_KA(bt), CS_KA(scale),
                                CS_KA(sc)};
    return lc_launch(d, "lcpp_attn", a, CS_ARRAY_LEN(a), (size_t)n_tokens * n_head, err, errlen);
}

void cs_lcpp_rope_table(uint32_t n_rot, float freq_base, float freq_scale, int32_t pos, float *cs)
{
    const float theta_scale = powf(freq_base, -2.0f / (float)n_rot);
    float theta = (float)pos;
    for (uint32_t i = 0; i < n_rot / 2; i++) {
        const float t = freq_scale * theta;
        cs[2 * i] = cosf(t);
        cs[2 * i + 1] = sinf(t);
        theta *= theta_scale;
    }
}
