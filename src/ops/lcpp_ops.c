/* lcpp_ops.c: host dispatch of cl/lcpp.cl (see lcpp_ops.h). */
#include "config.h"

#include "ops/lcpp_ops.h"

#include "common.h"
#include "quant.h"

#define LC_WG 16 /* local size of every lcpp kernel */

struct lc_arg {
    size_t size;
    const void *p;
};
#define LA(v) {sizeof(v), &(v)}

static int lc_launch(struct cs_cl_dev *d, const char *kname, const struct lc_arg *a, size_t na, size_t n_items,
                     char *err, size_t errlen)
{
    cl_kernel k;
    CS_TRY(cs_cl_kernel(d, "lcpp", NULL, kname, &k, err, errlen));
    for (size_t i = 0; i < na; i++)
        CS_TRY(cs_cl_arg(k, (cl_uint)i, a[i].size, a[i].p, kname, err, errlen));
    if (n_items == 0)
        return CLSPEC_OK;
    size_t local = CS_MIN((size_t)LC_WG, d->info.max_wg);
    return cs_cl_run(d, k, kname, 1, &n_items, &local, err, errlen);
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
        const struct lc_arg qa[] = {LA(x), LA(xq), LA(xd), LA(nb)};
        CS_TRY(lc_launch(d, "lcpp_quant_q8_0", qa, CS_ARRAY_LEN(qa), (size_t)nb, err, errlen));
        const struct lc_arg a[] = {LA(W), LA(blk), LA(whole), LA(xq), LA(xd), LA(y), LA(n_in), LA(n_out), LA(nn)};
        return lc_launch(d, "lcpp_mm_q0", a, CS_ARRAY_LEN(a), items, err, errlen);
    }
    const struct lc_arg a[] = {LA(W), LA(x), LA(y), LA(n_in), LA(n_out), LA(nn), LA(tiny)};
    return lc_launch(d, w->type == CS_TYPE_F32 ? "lcpp_mm_f32" : "lcpp_mm_f16", a, CS_ARRAY_LEN(a), items, err,
                     errlen);
}

int cs_op_lcpp_rmsnorm(struct cs_cl_dev *d, cl_mem x, cl_mem w, cl_mem y, int n_rows, int n, float eps, char *err,
                       size_t errlen)
{
    const struct lc_arg a[] = {LA(x), LA(w), LA(y), LA(n_rows), LA(n), LA(eps)};
    return lc_launch(d, "lcpp_rmsnorm", a, CS_ARRAY_LEN(a), (size_t)n_rows, err, errlen);
}

int cs_op_lcpp_rope(struct cs_cl_dev *d, cl_mem x, size_t x_off, cl_mem cs, int n_tokens, int n_head, int head_dim,
                    int n_rot, bool neox, char *err, size_t errlen)
{
    cl_uint off = (cl_uint)x_off;
    cl_int nx = neox;
    const struct lc_arg a[] = {LA(x), LA(off), LA(cs), LA(n_tokens), LA(n_head), LA(head_dim), LA(n_rot), LA(nx)};
    return lc_launch(d, "lcpp_rope", a, CS_ARRAY_LEN(a), (size_t)n_tokens * n_head, err, errlen);
}

int cs_op_lcpp_swiglu(struct cs_cl_dev *d, cl_mem g, cl_mem u, int n_rows, int F, char *err, size_t errlen)
{
    const struct lc_arg a[] = {LA(g), LA(u), LA(n_rows), LA(F)};
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
    const struct lc_arg a[] = {LA(q),        LA(out),     LA(kv->k),    LA(kv->v),  LA(kv->cell_pos), LA(kv->cell_seq),
                               LA(tok_pos),  LA(tok_seq), LA(n_tokens), LA(n_head), LA(nkvh),         LA(hd),
                               LA(n_kv),     LA(kv->n_cells), LA(bt),   LA(scale),    LA(sc)};
    return lc_launch(d, "lcpp_attn", a, CS_ARRAY_LEN(a), (size_t)n_tokens * n_head, err, errlen);
}
