/* dn_ops.c: host dispatch of cl/deltanet.cl (see dn_ops.h). */
#include "config.h"

#include "ops/dn_ops.h"

#include "base/common.h"
#include "ops/ops.h"

#define DN_WG 64 /* local size of the elementwise helpers (the kernels bound-check) */

static size_t dn_local(const struct cs_cl_dev *d, size_t want)
{
    return CS_MIN(want, d->info.max_wg);
}

int cs_op_dn_qgate_split(struct cs_cl_dev *d, cl_mem qg, cl_mem q, cl_mem g, int n_rows, int D, char *err,
                         size_t errlen)
{
    if (n_rows < 0 || D <= 0)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "dn_qgate_split: %d rows of %d", n_rows, D);
    cl_uint nr = (cl_uint)n_rows, dd = (cl_uint)D;
    const struct cs_karg a[] = {CS_KA(qg), CS_KA(q), CS_KA(g), CS_KA(nr), CS_KA(dd)};
    return cs_op_launch(d, "deltanet", NULL, "dn_qgate_split", a, CS_ARRAY_LEN(a), (size_t)n_rows * D,
                        dn_local(d, DN_WG), err, errlen);
}

int cs_op_dn_mul_sigmoid(struct cs_cl_dev *d, cl_mem y, cl_mem g, size_t n, char *err, size_t errlen)
{
    if (n >= (1ull << 32))
        return cs_err(err, errlen, CLSPEC_E_RANGE, "dn_mul_sigmoid: %zu elements", n);
    cl_uint nn = (cl_uint)n;
    const struct cs_karg a[] = {CS_KA(y), CS_KA(g), CS_KA(nn)};
    return cs_op_launch(d, "deltanet", NULL, "dn_mul_sigmoid", a, CS_ARRAY_LEN(a), n, dn_local(d, DN_WG), err,
                        errlen);
}

static int check_shape(const char *what, const struct cs_dn_shape *s, char *err, size_t errlen)
{
    if (s->K < 2 || s->K > 8 || s->Dk <= 0 || s->Dk > 256 || s->Hk <= 0 || s->Hv <= 0 || s->Hv % s->Hk ||
        s->Dv <= 0 || s->C != 2 * s->Hk * s->Dk + s->Hv * s->Dv)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: bad shape (C %d, K %d, Hk %d, Dk %d, Hv %d, Dv %d)", what,
                      s->C, s->K, s->Hk, s->Dk, s->Hv, s->Dv);
    return CLSPEC_OK;
}

int cs_op_dn_conv(struct cs_cl_dev *d, const struct cs_dn_shape *s, cl_mem x, cl_mem w, cl_mem st, cl_mem rd,
                  cl_mem wr, int n, char *err, size_t errlen)
{
    CS_TRY(check_shape("dn_conv", s, err, errlen));
    cl_int nn = n, C = s->C, K = s->K;
    const struct cs_karg a[] = {CS_KA(x), CS_KA(w), CS_KA(st), CS_KA(rd), CS_KA(wr), CS_KA(nn), CS_KA(C), CS_KA(K)};
    /* one channel per work-item; CPU family: small groups so both cores get channels */
    size_t local = d->info.family == CS_KFAMILY_CPU ? 8 : 64;
    return cs_op_launch(d, "deltanet", NULL, "dn_conv", a, CS_ARRAY_LEN(a), (size_t)s->C, dn_local(d, local), err,
                        errlen);
}

#define DN_CHUNK 16 /* = cl/deltanet.cl */

bool cs_op_dn_chunk_ok(const struct cs_cl_dev *d, const struct cs_dn_shape *s)
{
    const size_t local = (2 * (size_t)DN_CHUNK * s->Dk + 2 * DN_CHUNK * DN_CHUNK + DN_CHUNK) * sizeof(float);
    return (size_t)s->Dv <= d->info.max_wg && local <= d->info.local_mem;
}

int cs_op_dn_recur(struct cs_cl_dev *d, const struct cs_dn_shape *s, cl_mem qkv, cl_mem braw, cl_mem araw,
                   cl_mem dt_bias, cl_mem A, cl_mem st, cl_mem rd, cl_mem wr, cl_mem out, int n, bool chunked,
                   char *err, size_t errlen)
{
    CS_TRY(check_shape("dn_recur", s, err, errlen));
    cl_int C = s->C, nn = n, Hv = s->Hv, Hk = s->Hk, Dk = s->Dk, Dv = s->Dv;
    float eps = s->eps;
    /* the per-row scalars and the q/k norms once per (row, head), then the columns */
    const struct cs_karg p[] = {CS_KA(qkv), CS_KA(C),  CS_KA(braw), CS_KA(araw), CS_KA(dt_bias), CS_KA(A),
                                CS_KA(nn),  CS_KA(Hv), CS_KA(Hk),   CS_KA(Dk),   CS_KA(eps)};
    CS_TRY(cs_op_launch(d, "deltanet", NULL, "dn_prep", p, CS_ARRAY_LEN(p), (size_t)n * s->Hv, dn_local(d, DN_WG),
                        err, errlen));
    if (chunked && cs_op_dn_chunk_ok(d, s)) {
        const size_t kq = (size_t)DN_CHUNK * s->Dk * sizeof(float), mm = (size_t)DN_CHUNK * DN_CHUNK * sizeof(float),
                     g = DN_CHUNK * sizeof(float);
        const struct cs_karg c[] = {CS_KA(qkv), CS_KA(C),  CS_KA(braw), CS_KA(araw), CS_KA(st), CS_KA(rd),
                                    CS_KA(wr),  CS_KA(out), CS_KA(nn),  CS_KA(Hv),   CS_KA(Hk), CS_KA(Dk),
                                    CS_KA(Dv),  {kq, NULL}, {kq, NULL}, {mm, NULL},  {mm, NULL}, {g, NULL}};
        return cs_op_launch(d, "deltanet", NULL, "dn_chunk", c, CS_ARRAY_LEN(c), (size_t)s->Hv * s->Dv,
                            (size_t)s->Dv, err, errlen);
    }
    const struct cs_karg a[] = {CS_KA(qkv), CS_KA(C),  CS_KA(braw), CS_KA(araw), CS_KA(st), CS_KA(rd),
                                CS_KA(wr),  CS_KA(out), CS_KA(nn),  CS_KA(Hv),   CS_KA(Hk), CS_KA(Dk), CS_KA(Dv)};
    size_t local = d->info.family == CS_KFAMILY_CPU ? 8 : 64;
    return cs_op_launch(d, "deltanet", NULL, "dn_recur", a, CS_ARRAY_LEN(a), (size_t)s->Hv * s->Dv,
                        dn_local(d, local), err, errlen);
}
