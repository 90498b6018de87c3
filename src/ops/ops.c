/* ops.c: host dispatch of the non-matmul ops (see ops.h); kernels in
 * cl/norm.cl, cl/rope.cl, cl/eltwise.cl, cl/kv.cl, cl/attention.cl. */
#include "config.h"

#include "ops/ops.h"

#include <math.h>
#include <stdio.h>

#include "cl/kconst.h" /* NORM_WG, ATT_WG, ATT_G, ATT_W: the kernels' sizes */
#include "base/common.h"
#include "gguf/quant.h"
#include "ops/matmul_tiled.h"

#define ELT_WG 64   /* elementwise local size (host only: the kernels bound-check) */
#define ATT_W_MIN 8 /* queries per kv head from which attn_cpu_t is used */
/* GPU family: tokens per attn_gpu_t tile (passed to the attention program as
 * -DATT_GQ, its one definition); batches of at least this many tokens take
 * attn_gpu_t (the same bits per query as attn_gpu) */
#define ATT_GQ 8

int cs_op_launch_nd(struct cs_cl_dev *d, const char *prog, const char *extra, const char *kname,
                    const struct cs_karg *a, size_t na, cl_uint dims, const size_t *global, const size_t *local,
                    char *err, size_t errlen)
{
    cl_kernel k;
    int rc = cs_cl_kernel(d, prog, extra, kname, &k, err, errlen);
    if (rc != CLSPEC_OK)
        return rc;
    for (size_t i = 0; i < na; i++) {
        rc = cs_cl_arg(k, (cl_uint)i, a[i].size, a[i].p, kname, err, errlen);
        if (rc != CLSPEC_OK)
            return rc;
    }
    for (cl_uint i = 0; i < dims && i < 3; i++)
        if (global[i] == 0)
            return CLSPEC_OK;
    return cs_cl_run(d, k, kname, dims, global, local, err, errlen);
}

int cs_op_launch(struct cs_cl_dev *d, const char *prog, const char *extra, const char *kname,
                 const struct cs_karg *a, size_t na, size_t n_items, size_t local, char *err,
                 size_t errlen)
{
    return cs_op_launch_nd(d, prog, extra, kname, a, na, 1, &n_items, &local, err, errlen);
}

static size_t elt_local(const struct cs_cl_dev *d)
{
    return CS_MIN((size_t)ELT_WG, d->info.max_wg);
}

/* CPU family: one item (row, (token, head)) per work-item, each a long loop,
 * so one item per group: every compute unit gets work even for a single
 * decode token, and a fixed local size means one work-group function per
 * kernel (PoCL compiles one per local size). */
static size_t cpu_local(const struct cs_cl_dev *d)
{
    (void)d;
    return 1;
}

/* GPU family row reductions: a fixed power of two <= NORM_WG (rows shorter
 * than it leave work-items idle; model rows are longer). */
static size_t norm_local(const struct cs_cl_dev *d)
{
    size_t ls = 1;
    while (ls * 2 <= NORM_WG && ls * 2 <= d->info.max_wg)
        ls *= 2;
    return ls;
}

static int check_off(const char *op, size_t off, size_t n, char *err, size_t errlen)
{
    if (off > UINT32_MAX || n > UINT32_MAX || off + n > UINT32_MAX)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "%s: offset %zu + %zu elements beyond 2^32", op,
                      off, n);
    return CLSPEC_OK;
}

static int check_rows(const char *op, int n_rows, int n_cols, char *err, size_t errlen)
{
    if (n_rows < 0 || n_cols <= 0 || (size_t)n_rows * (size_t)n_cols > INT32_MAX)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: bad shape (%d, %d)", op, n_rows, n_cols);
    return CLSPEC_OK;
}

int cs_op_rmsnorm(struct cs_cl_dev *d, cl_mem x, size_t x_off, cl_mem w, cl_mem y, size_t y_off,
                  int n_rows, int n_cols, float eps, char *err, size_t errlen)
{
    size_t n = (size_t)n_rows * (size_t)n_cols;
    int rc = check_rows("rmsnorm", n_rows, n_cols, err, errlen);
    if (rc == CLSPEC_OK)
        rc = check_off("rmsnorm", x_off, n, err, errlen);
    if (rc == CLSPEC_OK)
        rc = check_off("rmsnorm", y_off, n, err, errlen);
    if (rc != CLSPEC_OK)
        return rc;
    cl_uint xo = (cl_uint)x_off, yo = (cl_uint)y_off;
    cl_int has_w = w != NULL;
    cl_mem wm = w ? w : x; /* a valid buffer that the kernel does not read */
    const struct cs_karg a[] = {CS_KA(x), CS_KA(xo), CS_KA(wm), CS_KA(has_w), CS_KA(y), CS_KA(yo), CS_KA(n_rows),
                                CS_KA(n_cols), CS_KA(eps)};
    if (d->info.family == CS_KFAMILY_CPU)
        return cs_op_launch(d, "norm", NULL, "rmsnorm_cpu", a, CS_ARRAY_LEN(a), (size_t)n_rows,
                      cpu_local(d), err, errlen);
    size_t ls = norm_local(d);
    return cs_op_launch(d, "norm", NULL, "rmsnorm_gpu", a, CS_ARRAY_LEN(a), (size_t)n_rows * ls, ls, err,
                  errlen);
}

int cs_op_softmax(struct cs_cl_dev *d, cl_mem x, size_t x_off, int n_rows, int n_cols, char *err,
                  size_t errlen)
{
    int rc = check_rows("softmax", n_rows, n_cols, err, errlen);
    if (rc == CLSPEC_OK)
        rc = check_off("softmax", x_off, (size_t)n_rows * (size_t)n_cols, err, errlen);
    if (rc != CLSPEC_OK)
        return rc;
    cl_uint xo = (cl_uint)x_off;
    const struct cs_karg a[] = {CS_KA(x), CS_KA(xo), CS_KA(n_rows), CS_KA(n_cols)};
    if (d->info.family == CS_KFAMILY_CPU)
        return cs_op_launch(d, "norm", NULL, "softmax_cpu", a, CS_ARRAY_LEN(a), (size_t)n_rows,
                      cpu_local(d), err, errlen);
    size_t ls = norm_local(d);
    return cs_op_launch(d, "norm", NULL, "softmax_gpu", a, CS_ARRAY_LEN(a), (size_t)n_rows * ls, ls, err,
                  errlen);
}

/* RoPE of x (n_head heads) and, when n_head2 > 0, x2 (n_head2 heads) */
static int rope_launch(struct cs_cl_dev *d, cl_mem x, size_t x_off, cl_mem x2, size_t x2_off, cl_mem pos,
                       int n_tokens, int n_head, int n_head2, int head_dim, const struct cs_rope_params *p,
                       char *err, size_t errlen)
{
    if (n_tokens < 0 || n_head <= 0 || n_head2 < 0 || head_dim <= 0 || p->n_rot <= 0 || p->n_rot % 2 ||
        p->n_rot > head_dim)
        return cs_err(err, errlen, CLSPEC_E_INVAL,
                      "rope: bad shape: n_tokens %d, n_head %d/%d, head_dim %d, n_rot %d", n_tokens,
                      n_head, n_head2, head_dim, p->n_rot);
    int rc = check_rows("rope", n_tokens * n_head, head_dim, err, errlen);
    if (rc == CLSPEC_OK)
        rc = check_off("rope", x_off, (size_t)n_tokens * n_head * head_dim, err, errlen);
    if (rc == CLSPEC_OK && n_head2 > 0)
        rc = check_rows("rope", n_tokens * n_head2, head_dim, err, errlen);
    if (rc == CLSPEC_OK && n_head2 > 0)
        rc = check_off("rope", x2_off, (size_t)n_tokens * n_head2 * head_dim, err, errlen);
    if (rc != CLSPEC_OK)
        return rc;
    cl_uint xo = (cl_uint)x_off, x2o = (cl_uint)x2_off;
    cl_int neox = p->neox, n_rot = p->n_rot, nh2 = n_head2;
    float ts = powf(p->freq_base, -2.0f / (float)p->n_rot), fs = p->freq_scale; /* as ggml's rope */
    const struct cs_karg a[] = {CS_KA(x), CS_KA(xo), CS_KA(pos), CS_KA(n_tokens), CS_KA(n_head), CS_KA(head_dim),
                                CS_KA(n_rot), CS_KA(neox), CS_KA(ts), CS_KA(fs), CS_KA(x2), CS_KA(x2o), CS_KA(nh2)};
    return cs_op_launch(d, "rope", NULL, "rope", a, CS_ARRAY_LEN(a),
                  (size_t)n_tokens * (size_t)(n_rot / 2), elt_local(d), err, errlen);
}

int cs_op_rope(struct cs_cl_dev *d, cl_mem x, size_t x_off, cl_mem pos, int n_tokens, int n_head,
               int head_dim, const struct cs_rope_params *p, char *err, size_t errlen)
{
    return rope_launch(d, x, x_off, x, x_off, pos, n_tokens, n_head, 0, head_dim, p, err, errlen);
}

/* Shared by the binary elementwise ops: o = f(a, b) over n elements. */
static int binary(struct cs_cl_dev *d, const char *kname, cl_mem a, size_t a_off, cl_mem b,
                  size_t b_off, cl_mem o, size_t o_off, size_t n, char *err, size_t errlen)
{
    int rc = check_off(kname, a_off, n, err, errlen);
    if (rc == CLSPEC_OK)
        rc = check_off(kname, b_off, n, err, errlen);
    if (rc == CLSPEC_OK)
        rc = check_off(kname, o_off, n, err, errlen);
    if (rc != CLSPEC_OK)
        return rc;
    cl_uint ao = (cl_uint)a_off, bo = (cl_uint)b_off, oo = (cl_uint)o_off, nn = (cl_uint)n;
    const struct cs_karg k[] = {CS_KA(a), CS_KA(ao), CS_KA(b), CS_KA(bo), CS_KA(o), CS_KA(oo), CS_KA(nn)};
    return cs_op_launch(d, "eltwise", NULL, kname, k, CS_ARRAY_LEN(k), n, elt_local(d), err, errlen);
}

int cs_op_swiglu(struct cs_cl_dev *d, cl_mem gate, size_t gate_off, cl_mem up, size_t up_off,
                 cl_mem out, size_t out_off, size_t n, char *err, size_t errlen)
{
    return binary(d, "swiglu", gate, gate_off, up, up_off, out, out_off, n, err, errlen);
}

int cs_op_add(struct cs_cl_dev *d, cl_mem a, size_t a_off, cl_mem b, size_t b_off, cl_mem out,
              size_t out_off, size_t n, char *err, size_t errlen)
{
    return binary(d, "add", a, a_off, b, b_off, out, out_off, n, err, errlen);
}

int cs_op_add_bias(struct cs_cl_dev *d, cl_mem x, size_t x_off, cl_mem bias, int n_rows, int n_cols,
                   char *err, size_t errlen)
{
    size_t n = (size_t)n_rows * (size_t)n_cols;
    int rc = check_rows("add_bias", n_rows, n_cols, err, errlen);
    if (rc == CLSPEC_OK)
        rc = check_off("add_bias", x_off, n, err, errlen);
    if (rc != CLSPEC_OK)
        return rc;
    cl_uint xo = (cl_uint)x_off, nr = (cl_uint)n_rows, nc = (cl_uint)n_cols;
    const struct cs_karg a[] = {CS_KA(x), CS_KA(xo), CS_KA(bias), CS_KA(nr), CS_KA(nc)};
    return cs_op_launch(d, "eltwise", NULL, "add_bias", a, CS_ARRAY_LEN(a), n, elt_local(d), err, errlen);
}

int cs_op_scale(struct cs_cl_dev *d, cl_mem x, size_t x_off, size_t n, float s, char *err,
                size_t errlen)
{
    int rc = check_off("scale", x_off, n, err, errlen);
    if (rc != CLSPEC_OK)
        return rc;
    cl_uint xo = (cl_uint)x_off, nn = (cl_uint)n;
    const struct cs_karg a[] = {CS_KA(x), CS_KA(xo), CS_KA(nn), CS_KA(s)};
    return cs_op_launch(d, "eltwise", NULL, "scale", a, CS_ARRAY_LEN(a), n, elt_local(d), err, errlen);
}

int cs_kv_type_check(uint32_t type, int n_kv_head, int head_dim, char *err, size_t errlen)
{
    bool quantized = type == CS_TYPE_Q8_0 || type == CS_TYPE_Q4_0;
    if (type != CS_TYPE_F32 && type != CS_TYPE_F16 && type != CS_TYPE_BF16 && !quantized)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED,
                      "KV cache type %s: not supported (f32, f16, bf16, q8_0, q4_0)",
                      cs_type_name(type));
    if (head_dim <= 0 || head_dim % 4 || n_kv_head <= 0)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED,
                      "KV cache type %s: head_dim %d is not a positive multiple of 4 (or %d kv heads)",
                      cs_type_name(type), head_dim, n_kv_head);
    /* quantization blocks run along the whole cell row (as llama.cpp lays out
     * its KV tensors): a head may start inside a block, and a row that is not
     * whole blocks is padded with 0 (cs_kv_row_bytes) */
    return CLSPEC_OK;
}

/* Elements of the unit one kv_shift work-item rewrites: one head, or for
 * quantized K the least run of whole heads that is also whole blocks
 * (lcm(head_dim, 32)), so no two work-items share a block. */
static int kv_shift_unit(uint32_t type, int head_dim)
{
    if (type != CS_TYPE_Q8_0 && type != CS_TYPE_Q4_0)
        return head_dim;
    int a = head_dim, b = 32;
    while (b) {
        int t = a % b;
        a = b;
        b = t;
    }
    return head_dim / a * 32;
}

/* The build options of the programs that depend on the KV cache's shape:
 * written once, for the launches below and for cs_op_prepare_all. */
static void kv_store_extra(char *buf, size_t len, uint32_t type_k, uint32_t type_v)
{
    snprintf(buf, len, "-DKV_TK=%u -DKV_TV=%u", (unsigned)type_k, (unsigned)type_v);
}

static void attention_extra(char *buf, size_t len, int head_dim, uint32_t type_k, uint32_t type_v)
{
    snprintf(buf, len, "-DHD=%d -DKV_TK=%u -DKV_TV=%u -DATT_GQ=%d", head_dim, (unsigned)type_k, (unsigned)type_v,
             ATT_GQ);
}

static void kv_shift_extra(char *buf, size_t len, int head_dim, uint32_t type_k, uint32_t type_v)
{
    snprintf(buf, len, "-DHD=%d -DKV_UNIT=%d -DKV_TK=%u -DKV_TV=%u", head_dim, kv_shift_unit(type_k, head_dim),
             (unsigned)type_k, (unsigned)type_v);
}

static int kv_check(const char *op, const struct cs_kv_view *kv, char *err, size_t errlen)
{
    int rc = cs_kv_type_check(kv->type_k, kv->n_kv_head, kv->head_dim, err, errlen);
    if (rc == CLSPEC_OK)
        rc = cs_kv_type_check(kv->type_v, kv->n_kv_head, kv->head_dim, err, errlen);
    if (rc != CLSPEC_OK)
        return cs_err_prefix(err, errlen, rc, "%s", op);
    if (kv->n_cells < 0 || kv->n_kv_head <= 0 ||
        (uint64_t)kv->n_cells * kv->n_kv_head * kv->head_dim > INT32_MAX)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: bad KV shape (%d cells, %d kv heads)", op,
                      kv->n_cells, kv->n_kv_head);
    return CLSPEC_OK;
}

int cs_op_kv_store(struct cs_cl_dev *d, const struct cs_kv_view *kv, cl_mem k, size_t k_off,
                   cl_mem v, size_t v_off, cl_mem cell_idx, int n_tokens, char *err, size_t errlen)
{
    int rc = kv_check("kv_store", kv, err, errlen);
    if (rc != CLSPEC_OK)
        return rc;
    int row = kv->n_kv_head * kv->head_dim;
    if (n_tokens < 0 || (uint64_t)n_tokens * row > INT32_MAX)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "kv_store: n_tokens %d", n_tokens);
    rc = check_off("kv_store", k_off, (size_t)n_tokens * row, err, errlen);
    if (rc == CLSPEC_OK)
        rc = check_off("kv_store", v_off, (size_t)n_tokens * row, err, errlen);
    if (rc != CLSPEC_OK)
        return rc;
    char extra[48];
    kv_store_extra(extra, sizeof extra, kv->type_k, kv->type_v);
    cl_uint ko = (cl_uint)k_off, vo = (cl_uint)v_off;
    cl_int n_cells = kv->n_cells;
    const struct cs_karg a[] = {CS_KA(k), CS_KA(ko), CS_KA(v), CS_KA(vo), CS_KA(kv->k), CS_KA(kv->v), CS_KA(cell_idx),
                                CS_KA(n_tokens), CS_KA(row), CS_KA(n_cells)};
    return cs_op_launch(d, "kv", extra, "kv_store", a, CS_ARRAY_LEN(a), (size_t)n_tokens * (size_t)((row + 31) / 32),
                  elt_local(d), err, errlen);
}

int cs_op_attention(struct cs_cl_dev *d, const struct cs_kv_view *kv, int n_cells_used, cl_mem q,
                    size_t q_off, cl_mem out, size_t out_off, cl_mem token_pos, cl_mem token_seq,
                    int n_tokens, int n_head, bool causal, float scale, char *err, size_t errlen)
{
    int rc = kv_check("attention", kv, err, errlen);
    if (rc != CLSPEC_OK)
        return rc;
    if (n_tokens < 0 || n_head <= 0 || n_head % kv->n_kv_head || n_cells_used < 0 ||
        n_cells_used > kv->n_cells)
        return cs_err(err, errlen, CLSPEC_E_INVAL,
                      "attention: bad shape: %d tokens, %d heads over %d kv heads, %d of %d cells",
                      n_tokens, n_head, kv->n_kv_head, n_cells_used, kv->n_cells);
    size_t n = (size_t)n_tokens * n_head * kv->head_dim;
    rc = check_off("attention", q_off, n, err, errlen);
    if (rc == CLSPEC_OK)
        rc = check_off("attention", out_off, n, err, errlen);
    if (rc != CLSPEC_OK)
        return rc;
    char extra[64];
    attention_extra(extra, sizeof extra, kv->head_dim, kv->type_k, kv->type_v);
    cl_uint qo = (cl_uint)q_off, oo = (cl_uint)out_off;
    cl_int n_kv = kv->n_kv_head, caus = causal, use_order = kv->cell_order != NULL;
    cl_mem order = use_order ? kv->cell_order : kv->cell_pos; /* unread when unused */
    const struct cs_karg a[] = {CS_KA(q), CS_KA(qo), CS_KA(out), CS_KA(oo), CS_KA(kv->k), CS_KA(kv->v),
                                CS_KA(kv->cell_pos), CS_KA(kv->cell_seq), CS_KA(order), CS_KA(use_order),
                                CS_KA(token_pos), CS_KA(token_seq), CS_KA(n_tokens), CS_KA(n_head), CS_KA(n_kv),
                                CS_KA(n_cells_used), CS_KA(caus), CS_KA(scale)};
    size_t items = (size_t)n_tokens * n_head;
    if (d->info.family == CS_KFAMILY_CPU) {
        /* both kernels give every query the same bits (cl/attention.cl):
         * tiles of ATT_W queries once a kv head has that many */
        int group = n_head / kv->n_kv_head;
        size_t nq = (size_t)n_tokens * group, chunks = (size_t)(group + ATT_G - 1) / ATT_G;
        if (nq >= ATT_W_MIN)
            return cs_op_launch(d, "attention", extra, "attn_cpu_t", a, CS_ARRAY_LEN(a),
                          (nq + ATT_W - 1) / ATT_W * kv->n_kv_head, cpu_local(d), err, errlen);
        return cs_op_launch(d, "attention", extra, "attn_cpu", a, CS_ARRAY_LEN(a),
                      (size_t)n_tokens * kv->n_kv_head * chunks, cpu_local(d), err, errlen);
    }
    if (n_tokens >= ATT_GQ) /* prefill: tiles of ATT_GQ tokens per head, the same bits per query */
        return cs_op_launch(d, "attention", extra, "attn_gpu_t", a, CS_ARRAY_LEN(a),
                            (size_t)(n_tokens + ATT_GQ - 1) / ATT_GQ * n_head * ATT_WG, ATT_WG, err, errlen);
    return cs_op_launch(d, "attention", extra, "attn_gpu", a, CS_ARRAY_LEN(a), items * ATT_WG, ATT_WG,
                  err, errlen);
}

int cs_op_kv_shift(struct cs_cl_dev *d, const struct cs_kv_view *kv, cl_mem cells, int n_list,
                   int delta, const struct cs_rope_params *p, char *err, size_t errlen)
{
    int rc = kv_check("kv_shift", kv, err, errlen);
    if (rc != CLSPEC_OK)
        return rc;
    if (n_list < 0 || p->n_rot <= 0 || p->n_rot % 2 || p->n_rot > kv->head_dim ||
        (uint64_t)n_list * kv->n_kv_head > INT32_MAX)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "kv_shift: bad shape: %d cells, n_rot %d",
                      n_list, p->n_rot);
    int unit = kv_shift_unit(kv->type_k, kv->head_dim);
    char extra[80];
    kv_shift_extra(extra, sizeof extra, kv->head_dim, kv->type_k, kv->type_v);
    cl_int n_kv = kv->n_kv_head, n_cells = kv->n_cells, n_rot = p->n_rot, neox = p->neox;
    float base = p->freq_base, fs = p->freq_scale;
    const struct cs_karg a[] = {CS_KA(kv->k), CS_KA(cells), CS_KA(n_list), CS_KA(n_kv), CS_KA(n_cells), CS_KA(n_rot),
                                CS_KA(neox), CS_KA(base), CS_KA(fs), CS_KA(delta)};
    /* the row's last unit may be short (padded rows): ceil */
    size_t units = (size_t)((kv->n_kv_head * kv->head_dim + unit - 1) / unit);
    return cs_op_launch(d, "kv", extra, "kv_shift", a, CS_ARRAY_LEN(a), (size_t)n_list * units, elt_local(d), err,
                  errlen);
}

int cs_op_round_rows(struct cs_cl_dev *d, uint32_t weight_type, cl_mem x, size_t x_off, int n_rows, int n_cols,
                     char *err, size_t errlen)
{
    cl_int mode;
    switch (weight_type) {
    case CS_TYPE_F16: mode = 1; break;
    case CS_TYPE_BF16: mode = 2; break;
    case CS_TYPE_Q4_0: case CS_TYPE_Q4_1: case CS_TYPE_Q5_0: case CS_TYPE_Q5_1: case CS_TYPE_Q8_0: mode = 3; break;
    case CS_TYPE_Q2_K: case CS_TYPE_Q3_K: case CS_TYPE_Q4_K: case CS_TYPE_Q5_K: case CS_TYPE_Q6_K: mode = 4; break;
    default: return CLSPEC_OK;
    }
    size_t n = (size_t)n_rows * (size_t)n_cols;
    int rc = check_rows("round_rows", n_rows, n_cols, err, errlen);
    if (rc == CLSPEC_OK)
        rc = check_off("round_rows", x_off, n, err, errlen);
    if (rc != CLSPEC_OK)
        return rc;
    const size_t items = mode <= 2 ? n : (size_t)n_rows * (size_t)(n_cols / (mode == 3 ? 32 : 256));
    cl_uint xo = (cl_uint)x_off, nr = (cl_uint)n_rows, nc = (cl_uint)n_cols;
    const struct cs_karg a[] = {CS_KA(x), CS_KA(xo), CS_KA(nr), CS_KA(nc), CS_KA(mode)};
    return cs_op_launch(d, "eltwise", NULL, "round_rows", a, CS_ARRAY_LEN(a), items, elt_local(d), err, errlen);
}

int cs_op_rope_qk(struct cs_cl_dev *d, cl_mem q, size_t q_off, cl_mem k, size_t k_off, cl_mem pos, int n_tokens,
                  int n_head, int n_head_kv, int head_dim, const struct cs_rope_params *p, char *err, size_t errlen)
{
    if (n_head_kv <= 0)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "rope_qk: n_head_kv %d", n_head_kv);
    return rope_launch(d, q, q_off, k, k_off, pos, n_tokens, n_head, n_head_kv, head_dim, p, err, errlen);
}

int cs_op_add_rmsnorm(struct cs_cl_dev *d, cl_mem x, size_t x_off, cl_mem b, size_t b_off, cl_mem w, cl_mem y,
                      size_t y_off, int n_rows, int n_cols, float eps, char *err, size_t errlen)
{
    size_t n = (size_t)n_rows * (size_t)n_cols;
    int rc = check_rows("add_rmsnorm", n_rows, n_cols, err, errlen);
    if (rc == CLSPEC_OK)
        rc = check_off("add_rmsnorm", x_off, n, err, errlen);
    if (rc == CLSPEC_OK)
        rc = check_off("add_rmsnorm", b_off, n, err, errlen);
    if (rc == CLSPEC_OK)
        rc = check_off("add_rmsnorm", y_off, n, err, errlen);
    if (rc != CLSPEC_OK)
        return rc;
    cl_uint xo = (cl_uint)x_off, bo = (cl_uint)b_off, yo = (cl_uint)y_off;
    cl_int has_w = w != NULL;
    cl_mem wm = w ? w : x;
    const struct cs_karg a[] = {CS_KA(x), CS_KA(xo), CS_KA(b), CS_KA(bo), CS_KA(wm), CS_KA(has_w), CS_KA(y),
                                CS_KA(yo), CS_KA(n_rows), CS_KA(n_cols), CS_KA(eps)};
    if (d->info.family == CS_KFAMILY_CPU)
        return cs_op_launch(d, "norm", NULL, "add_rmsnorm_cpu", a, CS_ARRAY_LEN(a), (size_t)n_rows, cpu_local(d), err,
                      errlen);
    size_t ls = norm_local(d);
    return cs_op_launch(d, "norm", NULL, "add_rmsnorm_gpu", a, CS_ARRAY_LEN(a), (size_t)n_rows * ls, ls, err, errlen);
}

int cs_op_argmax(struct cs_cl_dev *d, cl_mem x, size_t x_off, cl_mem out, size_t out_off, int n_rows, int n_cols,
                 char *err, size_t errlen)
{
    int rc = check_rows("argmax", n_rows, n_cols, err, errlen);
    if (rc == CLSPEC_OK)
        rc = check_off("argmax", x_off, (size_t)n_rows * (size_t)n_cols, err, errlen);
    if (rc == CLSPEC_OK)
        rc = check_off("argmax", out_off, (size_t)n_rows, err, errlen);
    if (rc != CLSPEC_OK)
        return rc;
    cl_uint xo = (cl_uint)x_off, oo = (cl_uint)out_off;
    const struct cs_karg a[] = {CS_KA(x), CS_KA(xo), CS_KA(out), CS_KA(oo), CS_KA(n_rows), CS_KA(n_cols)};
    if (d->info.family == CS_KFAMILY_CPU)
        return cs_op_launch(d, "argmax", NULL, "argmax_cpu", a, CS_ARRAY_LEN(a), (size_t)n_rows, cpu_local(d), err,
                            errlen);
    size_t ls = norm_local(d); /* a power of two <= NORM_WG = AMAX_WG of cl/argmax.cl */
    return cs_op_launch(d, "argmax", NULL, "argmax_gpu", a, CS_ARRAY_LEN(a), (size_t)n_rows * ls, ls, err, errlen);
}

int cs_op_greedy_accept(struct cs_cl_dev *d, cl_mem am, cl_mem nxt, cl_mem res, int n, char *err, size_t errlen)
{
    return cs_op_greedy_accept_at(d, am, nxt, 0, res, 0, n, err, errlen);
}

int cs_op_greedy_accept_at(struct cs_cl_dev *d, cl_mem am, cl_mem nxt, size_t nxt_off, cl_mem res, size_t res_off,
                           int n, char *err, size_t errlen)
{
    if (n < 1 || !am || !nxt || !res)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "greedy_accept: %d rows (want >= 1) or a NULL buffer", n);
    int rc = check_off("greedy_accept", nxt_off, (size_t)n, err, errlen);
    if (rc == CLSPEC_OK)
        rc = check_off("greedy_accept", res_off, (size_t)n * 2, err, errlen);
    if (rc != CLSPEC_OK)
        return rc;
    const cl_uint no = (cl_uint)nxt_off, ro = (cl_uint)res_off;
    const struct cs_karg a[] = {CS_KA(am), CS_KA(nxt), CS_KA(res), CS_KA(n), CS_KA(no), CS_KA(ro)};
    /* a few dozen rows of a short scan each: one work-item per group in both families */
    return cs_op_launch(d, "argmax", NULL, "greedy_accept", a, CS_ARRAY_LEN(a), (size_t)n, 1, err, errlen);
}

/* ---- every program a configuration needs, before the first request ---- */

int cs_op_prepare_all(struct cs_cl_dev *d, const struct cs_op_kv_shape *kv, bool llamacpp_numerics,
                      cs_op_progress_fn progress, void *ud, char *err, size_t errlen)
{
    char store[48], att[64], shift[80];
    kv_store_extra(store, sizeof store, kv->type_k, kv->type_v);
    attention_extra(att, sizeof att, kv->head_dim, kv->type_k, kv->type_v);
    kv_shift_extra(shift, sizeof shift, kv->head_dim, kv->type_k, kv->type_v);
    /* the programs of every launch in ops.c and matmul.c (one-token and
     * batched paths live in the same programs) */
    const struct {
        const char *name, *extra;
    } progs[] = {{"matmul", NULL},      {"getrows", NULL}, {"norm", NULL},  {"rope", NULL},
                 {"eltwise", NULL},     {"argmax", NULL},  {"kv", store},   {"kv", shift},
                 {"attention", att},    {"deltanet", NULL},   {"lcpp", NULL}};
    unsigned total = CS_ARRAY_LEN(progs) - (llamacpp_numerics ? 0 : 1);
    for (unsigned i = 0; i < total; i++) {
        cl_program p;
        int rc = cs_cl_program(d, progs[i].name, progs[i].extra, &p, err, errlen);
        if (rc != CLSPEC_OK)
            return cs_err_prefix(err, errlen, rc, "preparing the kernels of %s", d->info.name);
        if (progress)
            progress(ud, d, progs[i].name, i + 1, total);
    }
    int rc = cs_op_matmul_tiled_prepare(d, err, errlen); /* the prefill mat-mat, src/ops/matmul_tiled.h */
    if (rc != CLSPEC_OK)
        return cs_err_prefix(err, errlen, rc, "preparing the kernels of %s", d->info.name);
    return CLSPEC_OK;
}

int cs_op_layernorm(struct cs_cl_dev *d, cl_mem x, size_t x_off, cl_mem w, cl_mem b, cl_mem y, size_t y_off,
                    int n_rows, int n_cols, float eps, char *err, size_t errlen)
{
    size_t n = (size_t)n_rows * (size_t)n_cols;
    int rc = check_rows("layernorm", n_rows, n_cols, err, errlen);
    if (rc == CLSPEC_OK)
        rc = check_off("layernorm", x_off, n, err, errlen);
    if (rc == CLSPEC_OK)
        rc = check_off("layernorm", y_off, n, err, errlen);
    if (rc != CLSPEC_OK)
        return rc;
    cl_uint xo = (cl_uint)x_off, yo = (cl_uint)y_off;
    cl_int has_w = w != NULL, has_b = b != NULL;
    cl_mem wm = w ? w : x, bm = b ? b : x; /* valid buffers the kernel does not read */
    const struct cs_karg a[] = {CS_KA(x),     CS_KA(xo), CS_KA(wm),     CS_KA(bm),     CS_KA(has_w), CS_KA(has_b),
                                CS_KA(y),     CS_KA(yo), CS_KA(n_rows), CS_KA(n_cols), CS_KA(eps)};
    if (d->info.family == CS_KFAMILY_CPU)
        return cs_op_launch(d, "vit", NULL, "layernorm_cpu", a, CS_ARRAY_LEN(a), (size_t)n_rows, cpu_local(d), err,
                            errlen);
    size_t ls = norm_local(d);
    return cs_op_launch(d, "vit", NULL, "layernorm_gpu", a, CS_ARRAY_LEN(a), (size_t)n_rows * ls, ls, err, errlen);
}

int cs_op_gelu(struct cs_cl_dev *d, cl_mem x, size_t x_off, size_t n, bool quick, char *err, size_t errlen)
{
    int rc = check_off("gelu", x_off, n, err, errlen);
    if (rc != CLSPEC_OK)
        return rc;
    cl_uint xo = (cl_uint)x_off, nn = (cl_uint)n;
    cl_int mode = quick ? 1 : 0;
    const struct cs_karg a[] = {CS_KA(x), CS_KA(xo), CS_KA(nn), CS_KA(mode)};
    return cs_op_launch(d, "vit", NULL, "gelu", a, CS_ARRAY_LEN(a), n, elt_local(d), err, errlen);
}
