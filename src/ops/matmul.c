/* matmul.c: weight upload (row parts) and the host side of cl/matmul.cl and
 * cl/getrows.cl. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl/kconst.h" /* CS_MM_WG, CS_MM_TC, CS_MM_TCC, CS_MM2_TCC, CS_MV_ROWS */
#include "base/common.h"
#include "ops/matmul.h"
#include "ops/matmul_i4.h"
#include "ops/matmul_i8.h"
#include "ops/matmul_q8.h"
#include "ops/matmul_tiled.h"
#include "ops/ops.h"

#define CPU_LOCAL 16 /* work-items per group, CPU family (host only) */
/* CPU family: mm2_T instead of mm_T once mm_T's x tile (CS_MM_TCC columns
 * of n_in floats) exceeds this many bytes, i.e. no longer stays in a 48 KiB
 * L1 data cache next to the weight rows (measured on PoCL 3.1, 110M down
 * projection n_in 2048: mm2_T 5-10% faster; at n_in <= 1536 mm_T is faster) */
#define MM_X_TILE_MAX (48 * 1024)

/* kernel name suffix per supported type (the X list of cl/blocks.cl) */
static const char *kname(uint32_t type)
{
    switch (type) {
    case CS_TYPE_F32: return "f32";
    case CS_TYPE_F16: return "f16";
    case CS_TYPE_BF16: return "bf16";
    case CS_TYPE_Q8_0: return "q8_0";
    case CS_TYPE_Q4_0: return "q4_0";
    case CS_TYPE_Q4_1: return "q4_1";
    case CS_TYPE_Q5_0: return "q5_0";
    case CS_TYPE_Q5_1: return "q5_1";
    case CS_TYPE_Q2_K: return "q2_K";
    case CS_TYPE_Q3_K: return "q3_K";
    case CS_TYPE_Q4_K: return "q4_K";
    case CS_TYPE_Q5_K: return "q5_K";
    case CS_TYPE_Q6_K: return "q6_K";
    default: return NULL;
    }
}

/* kernel name suffix of an uploaded weight (its device layout) */
static const char *wname(const struct cs_weight *w)
{
    switch (w->layout) {
    case CS_WLAYOUT_Q8_0_F32D: return "q8_0f";
    case CS_WLAYOUT_Q4_K_R: return "q4_Kr";
    case CS_WLAYOUT_Q6_K_R: return "q6_Kr";
    case CS_WLAYOUT_Q5_K_R: return "q5_Kr";
    default: return kname(w->type);
    }
}

/* q8_0 GGUF rows (34-byte blocks: half d, 32 int8) -> 36-byte blocks with a
 * float d (CS_WLAYOUT_Q8_0_F32D) */
static void repack_q8_0(const unsigned char *src, unsigned char *dst, uint64_t n_blocks)
{
    for (uint64_t b = 0; b < n_blocks; b++, src += 34, dst += 36) {
        uint16_t h;
        memcpy(&h, src, 2);
        const float d = cs_f16_to_f32(h);
        memcpy(dst, &d, 4);
        memcpy(dst + 4, src + 2, 32);
    }
}

/* q4_K super-blocks (144 bytes: half d, dmin; scales[12]; qs[128]) ->
 * CS_WLAYOUT_Q4_K_R (152 bytes, matmul.h); q5_K (176 bytes: the same with
 * qh[32] before qs) -> CS_WLAYOUT_Q5_K_R (184 bytes) */
static void repack_k4(const unsigned char *src, unsigned char *dst, uint64_t n_blocks, bool q5)
{
    const uint32_t sb = q5 ? 176 : 144, db = q5 ? 184 : 152, step = q5 ? 20 : 16;
    for (uint64_t b = 0; b < n_blocks; b++, src += sb, dst += db) {
        uint16_t h[2];
        memcpy(h, src, 4);
        const float dm[2] = {cs_f16_to_f32(h[0]), cs_f16_to_f32(h[1])};
        memcpy(dst, dm, 8);
        for (int u = 0; u < 8; u++)
            cs_k4_scale_min(u, src + 4, dst + 8 + u, dst + 16 + u);
        for (int u = 0; u < 8; u++) {
            const unsigned char *q = src + (q5 ? 48 : 16) + 32 * (u / 2); /* nibble u % 2 of q[l]: element l */
            const int sh = 4 * (u % 2);
            unsigned char *o = dst + 24 + step * u;
            if (q5) {
                uint32_t qh = 0;
                for (int l = 0; l < 32; l++)
                    qh |= (uint32_t)((src[16 + l] >> u) & 1) << l;
                memcpy(o, &qh, 4); /* little-endian host and device (OpenCL CPUs, GPUs) */
                o += 4;
            }
            for (int l = 0; l < 16; l++)
                o[l] = (unsigned char)(((q[l] >> sh) & 15) | (((q[l + 16] >> sh) & 15) << 4));
        }
    }
}

/* q6_K super-blocks (210 bytes: ql[128], qh[64], scales[16], half d) ->
 * CS_WLAYOUT_Q6_K_R (212 bytes, matmul.h) */
static void repack_q6_k(const unsigned char *src, unsigned char *dst, uint64_t n_blocks)
{
    for (uint64_t b = 0; b < n_blocks; b++, src += 210, dst += 212) {
        uint16_t h;
        memcpy(&h, src + 208, 2);
        const float d = cs_f16_to_f32(h);
        memcpy(dst, &d, 4);
        memcpy(dst + 4, src + 192, 16);
        unsigned char q[256]; /* the 6-bit values, element order */
        for (int e = 0; e < 256; e++) {
            const int hh = e / 128, g = (e % 128) / 32, l = e % 32;
            const int lo4 = (src[64 * hh + 32 * (g & 1) + l] >> (4 * (g >> 1))) & 15;
            q[e] = (unsigned char)(lo4 | (((src[128 + 32 * hh + l] >> (2 * g)) & 3) << 4));
        }
        for (int u = 0; u < 8; u++) {
            unsigned char *p = dst + 20 + 24 * u;
            const unsigned char *v = q + 32 * u;
            for (int l = 0; l < 16; l++)
                p[l] = (unsigned char)((v[l] & 15) | ((v[l + 16] & 15) << 4));
            for (int i = 0; i < 8; i++)
                p[16 + i] = (unsigned char)((v[i] >> 4) | ((v[i + 8] >> 4) << 2) | ((v[i + 16] >> 4) << 4) |
                                            ((v[i + 24] >> 4) << 6));
        }
    }
}

/* the device layout of a type (repack: the faster one where there is one)
 * and its row bytes from the GGUF row bytes */
static int layout_of(uint32_t type, bool repack, uint64_t gguf_row_bytes, uint64_t *row_bytes)
{
    *row_bytes = gguf_row_bytes;
    if (!repack)
        return CS_WLAYOUT_GGUF;
    switch (type) {
    case CS_TYPE_Q8_0: *row_bytes = gguf_row_bytes / 34 * 36; return CS_WLAYOUT_Q8_0_F32D;
    case CS_TYPE_Q4_K: *row_bytes = gguf_row_bytes / 144 * 152; return CS_WLAYOUT_Q4_K_R;
    case CS_TYPE_Q6_K: *row_bytes = gguf_row_bytes / 210 * 212; return CS_WLAYOUT_Q6_K_R;
    case CS_TYPE_Q5_K: *row_bytes = gguf_row_bytes / 176 * 184; return CS_WLAYOUT_Q5_K_R;
    default: return CS_WLAYOUT_GGUF;
    }
}

bool cs_weight_type_ok(uint32_t type)
{
    return kname(type) != NULL;
}

void cs_weight_free(struct cs_weight *w)
{
    if (!w)
        return;
    for (uint32_t i = 0; i < w->n_parts; i++)
        if (w->parts[i].buf)
            clReleaseMemObject(w->parts[i].buf);
    free(w->parts);
    memset(w, 0, sizeof *w);
}

int cs_weight_upload_parts(struct cs_cl_dev *d, uint32_t type, uint32_t n_in, uint32_t n_out,
                           const void *host, uint64_t max_part_bytes, bool repack, struct cs_weight *w,
                           char *err, size_t errlen)
{
    memset(w, 0, sizeof *w);
    if (!kname(type))
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "weight of type %s: no matmul kernels",
                      cs_type_name(type));
    uint64_t row_bytes, bytes;
    if (n_in == 0 || n_out == 0 || !cs_row_bytes(type, n_in, &row_bytes))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s weight %ux%u: bad shape (row length must be a "
                      "positive multiple of the block size)", cs_type_name(type), n_in, n_out);
    const uint64_t gguf_row_bytes = row_bytes;
    int layout = layout_of(type, repack, gguf_row_bytes, &row_bytes);
    uint64_t limit = d->info.max_alloc;
    if (max_part_bytes && max_part_bytes < limit)
        limit = max_part_bytes;
    /* integer layout: groups of 16 rows (src/ops/matmul_i8.h), when 16 rows fit a part */
    const bool i8 = repack && cs_i8_wants(d, type, n_in) && 16 * cs_i8_row_bytes(type, n_in) <= limit;
    if (i8) {
        layout = CS_WLAYOUT_I8;
        row_bytes = cs_i8_row_bytes(type, n_in);
    }
    if (!cs_mul_ok(row_bytes, n_out, &bytes) || row_bytes > UINT32_MAX)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "%s weight %ux%u: too large", cs_type_name(type),
                      n_in, n_out);
    if (row_bytes > limit)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "%s weight %ux%u: one row (%llu bytes) exceeds the "
                      "part limit of %llu bytes", cs_type_name(type), n_in, n_out,
                      (unsigned long long)row_bytes, (unsigned long long)limit);
    uint64_t i4_rb; /* the 4-bit integer path's layouts (ops/matmul_i4.h): parts of whole groups of 16 rows */
    const int i4 = repack ? cs_i4_layout(d, type, n_in, &i4_rb) : -1;
    if (i4 >= 0 && limit / i4_rb >= 16 && cs_mul_ok(i4_rb, n_out, &bytes)) {
        layout = i4;
        row_bytes = i4_rb;
    }
    uint64_t rows_per_part = CS_MIN(i8 ? limit / (16 * row_bytes) * 16 : limit / row_bytes, (uint64_t)n_out);
    if (cs_i4_layout_is(layout) && rows_per_part < n_out)
        rows_per_part &= ~(uint64_t)15;
    const uint32_t n_parts = (uint32_t)((n_out + rows_per_part - 1) / rows_per_part);
    w->parts = calloc(n_parts, sizeof *w->parts);
    if (!w->parts)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "weight upload: out of memory");
    w->type = (enum cs_type)type;
    w->n_in = n_in;
    w->n_out = n_out;
    w->row_bytes = row_bytes;
    w->bytes = bytes;
    w->layout = layout;
    w->n_parts = n_parts;
    for (uint32_t i = 0; i < n_parts; i++) {
        struct cs_weight_part *p = &w->parts[i];
        p->r0 = (uint32_t)(i * rows_per_part);
        p->n_rows = (uint32_t)CS_MIN(rows_per_part, (uint64_t)n_out - p->r0);
        const size_t pb = (size_t)(cs_i4_layout_is(layout) ? cs_i4_part_bytes(p->n_rows, row_bytes)
                                   : (i8 ? (p->n_rows + 15) / 16 * 16 : p->n_rows) * row_bytes);
        const unsigned char *src = (const unsigned char *)host + p->r0 * gguf_row_bytes;
        unsigned char *tmp = NULL;
        if (layout != CS_WLAYOUT_GGUF) {
            tmp = malloc(pb);
            if (!tmp) {
                cs_weight_free(w);
                return cs_err(err, errlen, CLSPEC_E_NOMEM, "weight upload: out of memory");
            }
            const uint64_t nb = (uint64_t)p->n_rows * (n_in / cs_type_get(type)->block_elems);
            if (cs_i4_layout_is(layout))
                cs_i4_repack(layout, src, p->n_rows, n_in, tmp);
            else if (layout == CS_WLAYOUT_I8)
                cs_i8_repack(type, n_in, p->n_rows, src, tmp);
            else if (layout == CS_WLAYOUT_Q8_0_F32D)
                repack_q8_0(src, tmp, nb);
            else if (layout == CS_WLAYOUT_Q4_K_R || layout == CS_WLAYOUT_Q5_K_R)
                repack_k4(src, tmp, nb, layout == CS_WLAYOUT_Q5_K_R);
            else
                repack_q6_k(src, tmp, nb);
            src = tmp;
        }
        int rc = cs_cl_alloc(d, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, pb, (void *)src, &p->buf, err,
                             errlen);
        free(tmp);
        if (rc != CLSPEC_OK) {
            cs_weight_free(w);
            return cs_err_prefix(err, errlen, rc, "%s weight %ux%u part %u", cs_type_name(type), n_in,
                                 n_out, i);
        }
    }
    return CLSPEC_OK;
}

int cs_weight_upload(struct cs_cl_dev *d, uint32_t type, uint32_t n_in, uint32_t n_out,
                     const void *host, struct cs_weight *w, char *err, size_t errlen)
{
    uint64_t limit = 0;
    const char *env = getenv("CLSPEC_MAX_PART_BYTES");
    if (env && *env) {
        char *end;
        unsigned long long v = strtoull(env, &end, 10);
        if (*end || v == 0)
            return cs_err(err, errlen, CLSPEC_E_INVAL, "CLSPEC_MAX_PART_BYTES=%s: expected a positive "
                          "byte count", env);
        limit = v;
    }
    return cs_weight_upload_parts(d, type, n_in, n_out, host, limit, true, w, err, errlen);
}

int cs_op_matmul_prepare(struct cs_cl_dev *d, char *err, size_t errlen)
{
    cl_program p;
    int rc = cs_cl_program(d, "matmul", NULL, &p, err, errlen);
    if (rc == CLSPEC_OK)
        rc = cs_cl_program(d, "getrows", NULL, &p, err, errlen);
    if (rc == CLSPEC_OK)
        rc = cs_op_matmul_tiled_prepare(d, err, errlen);
    if (rc == CLSPEC_OK)
        rc = cs_op_i4_prepare(d, err, errlen);
    if (rc == CLSPEC_OK && cs_i8_wants(d, CS_TYPE_Q8_0, 32))
        rc = cs_op_matmul_i8_prepare(d, err, errlen);
    if (rc == CLSPEC_OK && d->int8_act) {
        rc = cs_cl_program(d, "quant", NULL, &p, err, errlen);
        if (rc == CLSPEC_OK)
            rc = cs_cl_program(d, "matmul_q8", cs_cl_host_vnni(&d->info) ? "-DCS_CPU_VNNI=1" : NULL, &p, err,
                               errlen);
    }
    return rc;
}

static bool fits_u32(uint64_t v)
{
    return v <= UINT32_MAX;
}

/* work-items of a CPU mat-vec (mv_T, mv3_T, mvswiglu_T) or mm2_T over n_rows */
static size_t mv_items(uint64_t n_rows)
{
    return (size_t)((n_rows + CS_MV_ROWS - 1) / CS_MV_ROWS);
}

int cs_op_matmul(struct cs_cl_dev *d, const struct cs_weight *w, cl_mem x, size_t x_off, cl_mem y,
                 size_t y_off, uint32_t n_cols, char *err, size_t errlen)
{
    if (!w || !w->n_parts || !kname(w->type))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "matmul: weight not uploaded");
    if (n_cols == 0)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "matmul: n_cols must be >= 1");
    uint64_t xe, ye;
    if (!cs_mul_ok(n_cols, w->n_in, &xe) || !cs_mul_ok(n_cols, w->n_out, &ye) || !fits_u32(x_off + xe) ||
        !fits_u32(y_off + ye))
        return cs_err(err, errlen, CLSPEC_E_RANGE, "matmul %s %ux%u n_cols=%u: offsets exceed 32 bits",
                      cs_type_name(w->type), w->n_in, w->n_out, n_cols);
    if (cs_op_i4_takes(d, w)) /* 4-bit weights, rows in lanes: src/ops/matmul_i4.h */
        return cs_op_matmul_i4(d, w, x, x_off, y, y_off, n_cols, err, errlen);
    if (w->layout == CS_WLAYOUT_I8) { /* rows-in-lanes integer path: src/ops/matmul_i8.h */
        CS_TRY(cs_op_quant_q8_scratch(d, x, x_off, w->n_in, n_cols, err, errlen));
        return cs_op_matmul_i8(d, w, n_cols, y, y_off, err, errlen);
    }
    if (cs_op_q8_takes(d, w)) { /* integer dot products on 8-bit activations: src/ops/matmul_q8.h */
        CS_TRY(cs_op_quant_q8_scratch(d, x, x_off, w->n_in, n_cols, err, errlen));
        return cs_op_matmul_q8(d, w, n_cols, y, y_off, err, errlen);
    }
    bool tiled; /* prefill-sized batches of float weights: src/ops/matmul_tiled.h (the same bits) */
    int trc = cs_op_matmul_tiled(d, w, x, x_off, y, y_off, n_cols, &tiled, err, errlen);
    if (trc != CLSPEC_OK || tiled)
        return trc;
    const bool cpu = d->info.family == CS_KFAMILY_CPU;
    if (!cpu && d->info.max_wg < CS_MM_WG)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "%s: work-groups of %d needed, device allows %zu",
                      d->info.name, CS_MM_WG, d->info.max_wg);
    const bool two_rows = cpu && n_cols > 1 && (uint64_t)CS_MM_TCC * w->n_in * sizeof(float) > MM_X_TILE_MAX;
    char name[32];
    snprintf(name, sizeof name, "%s_%s", n_cols == 1 ? "mv" : two_rows ? "mm2" : "mm", wname(w));
    const cl_uint rb = (cl_uint)w->row_bytes, n_in = w->n_in, xo = (cl_uint)x_off, nc = n_cols,
                  ystride = w->n_out;
    for (uint32_t i = 0; i < w->n_parts; i++) {
        const struct cs_weight_part *p = &w->parts[i];
        const cl_uint nr = p->n_rows, yo = (cl_uint)(y_off + p->r0);
        if (n_cols == 1) {
            const struct cs_karg a[] = {CS_KA(p->buf), CS_KA(rb), CS_KA(n_in), CS_KA(nr),
                                        CS_KA(x),      CS_KA(xo), CS_KA(y),    CS_KA(yo)};
            const size_t g = cpu ? mv_items(nr) : (size_t)nr * CS_MM_WG, l = cpu ? CPU_LOCAL : CS_MM_WG;
            CS_TRY(cs_op_launch(d, "matmul", NULL, name, a, CS_ARRAY_LEN(a), g, l, err, errlen));
        } else {
            const struct cs_karg a[] = {CS_KA(p->buf), CS_KA(rb), CS_KA(n_in), CS_KA(nr), CS_KA(x),
                                        CS_KA(xo),     CS_KA(nc), CS_KA(y),    CS_KA(yo), CS_KA(ystride)};
            const size_t tile = two_rows ? CS_MM2_TCC : cpu ? CS_MM_TCC : CS_MM_TC;
            const size_t g0 = two_rows ? mv_items(nr) : cpu ? nr : (size_t)nr * CS_MM_WG;
            const size_t g[2] = {g0, (n_cols + tile - 1) / tile};
            const size_t l[2] = {cpu ? CPU_LOCAL : CS_MM_WG, 1};
            CS_TRY(cs_op_launch_nd(d, "matmul", NULL, name, a, CS_ARRAY_LEN(a), 2, g, l, err, errlen));
        }
    }
    return CLSPEC_OK;
}

int cs_op_get_rows(struct cs_cl_dev *d, const struct cs_weight *w, cl_mem ids, size_t ids_off,
                   uint32_t n, cl_mem out, size_t out_off, char *err, size_t errlen)
{
    if (!w || !w->n_parts || !kname(w->type))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "get_rows: weight not uploaded");
    if (n == 0)
        return CLSPEC_OK;
    uint64_t oe;
    if (!cs_mul_ok(n, w->n_in, &oe) || !fits_u32(out_off + oe) || !fits_u32(ids_off + n))
        return cs_err(err, errlen, CLSPEC_E_RANGE, "get_rows %s n=%u: offsets exceed 32 bits",
                      cs_type_name(w->type), n);
    if (cs_op_i4_takes(d, w))
        return cs_op_get_rows_i4(d, w, ids, ids_off, n, out, out_off, err, errlen);
    if (w->layout == CS_WLAYOUT_I8)
        return cs_op_get_rows_i8(d, w, ids, ids_off, n, out, out_off, err, errlen);
    char name[32];
    snprintf(name, sizeof name, "getrows_%s", wname(w));
    const cl_uint rb = (cl_uint)w->row_bytes, n_in = w->n_in, n_out = w->n_out, io = (cl_uint)ids_off,
                  nn = n, oo = (cl_uint)out_off;
    const size_t chunks = w->n_in / 32 + (w->n_in % 32 ? 1 : 0);
    for (uint32_t i = 0; i < w->n_parts; i++) {
        const struct cs_weight_part *p = &w->parts[i];
        const cl_uint r0 = p->r0, nr = p->n_rows;
        const struct cs_karg a[] = {CS_KA(p->buf), CS_KA(rb), CS_KA(n_in), CS_KA(r0),  CS_KA(nr), CS_KA(n_out),
                                    CS_KA(ids),    CS_KA(io), CS_KA(nn),   CS_KA(out), CS_KA(oo)};
        const size_t g[2] = {chunks, n}, l[2] = {CS_MIN(chunks, (size_t)16), 1};
        CS_TRY(cs_op_launch_nd(d, "getrows", NULL, name, a, CS_ARRAY_LEN(a), 2, g, l, err, errlen));
    }
    return CLSPEC_OK;
}

/* Whether the fused CPU mat-vecs (mv3_T, mvswiglu_T) take n_cols columns of
 * weights of `bytes` in all: one column always; up to max_cols columns (a
 * verification's rows) when the weights stay in cache (each column reads
 * them again; larger weights go to the mat-mats, which read them once per
 * tile). Launches, not arithmetic, bound such small steps; measured on
 * stories260K (kprof, PoCL, 2 cores): mv3 at 8 columns costs what the three
 * mat-mats cost, mvswiglu at 4 what gate, up and SwiGLU cost, and beyond
 * that they take longer on the device than the launches they save. */
#define CS_FUSE_QKV_COLS 8
#define CS_FUSE_SWIGLU_COLS 4
#define CS_FUSE_BYTES ((uint64_t)1 << 20)
static bool fuse_cols(const struct cs_cl_dev *d, uint32_t n_cols, uint32_t max_cols, uint64_t bytes)
{
    return d->info.family == CS_KFAMILY_CPU && (n_cols == 1 || (n_cols <= max_cols && bytes <= CS_FUSE_BYTES));
}

/* Beyond those columns, up to CS_FUSE_MM_COLS (a verification of 4 slots'
 * drafts): mm3_T / mmswiglu_T, mm_T's tiles in one launch instead of three
 * (the same device time; the launches are what such steps pay for), where
 * mm_T (not mm2_T) would run. */
#define CS_FUSE_MM_COLS 16
static bool fuse_mm(const struct cs_cl_dev *d, uint32_t n_cols, uint32_t n_in, uint64_t bytes)
{
    return d->info.family == CS_KFAMILY_CPU && n_cols > 1 && n_cols <= CS_FUSE_MM_COLS && bytes <= CS_FUSE_BYTES &&
           (uint64_t)CS_MM_TCC * n_in * sizeof(float) <= MM_X_TILE_MAX;
}

int cs_op_matmul_swiglu(struct cs_cl_dev *d, const struct cs_weight *wg, const struct cs_weight *wu, cl_mem x,
                        size_t x_off, cl_mem tmp, cl_mem out, size_t out_off, uint32_t n_cols, char *err,
                        size_t errlen)
{
    if (!wg || !wu || !wg->n_parts || !wu->n_parts || !kname(wg->type))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "matmul_swiglu: weight not uploaded");
    if (wg->type != wu->type || wg->layout != wu->layout || wg->n_in != wu->n_in || wg->n_out != wu->n_out)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "matmul_swiglu: gate %s %ux%u and up %s %ux%u differ",
                      cs_type_name(wg->type), wg->n_in, wg->n_out, cs_type_name(wu->type), wu->n_in, wu->n_out);
    if (cs_op_i4_takes(d, wg)) { /* x quantized once for both */
        int rc = cs_op_quant_i4_scratch(d, x, x_off, wg->n_in, n_cols, err, errlen);
        if (rc == CLSPEC_OK && n_cols == 1 && wg->n_parts == 1 && wu->n_parts == 1)
            return cs_op_matmul_i4_swiglu(d, wg, wu, out, out_off, err, errlen);
        if (rc == CLSPEC_OK)
            rc = cs_op_matmul_i4_q(d, wg, n_cols, out, out_off, err, errlen);
        if (rc == CLSPEC_OK)
            rc = cs_op_matmul_i4_q(d, wu, n_cols, tmp, 0, err, errlen);
        if (rc == CLSPEC_OK)
            rc = cs_op_swiglu(d, out, out_off, tmp, 0, out, out_off, (size_t)n_cols * wg->n_out, err, errlen);
        return rc;
    }
    if (cs_op_q8_takes(d, wg)) { /* x quantized once for both */
        int rc = cs_op_quant_q8_scratch(d, x, x_off, wg->n_in, n_cols, err, errlen);
        if (rc == CLSPEC_OK && n_cols == 1 && wg->n_parts == 1 && wu->n_parts == 1)
            return cs_op_matmul_q8_swiglu(d, wg, wu, out, out_off, err, errlen);
        if (rc == CLSPEC_OK)
            rc = cs_op_matmul_q8(d, wg, n_cols, out, out_off, err, errlen);
        if (rc == CLSPEC_OK)
            rc = cs_op_matmul_q8(d, wu, n_cols, tmp, 0, err, errlen);
        if (rc == CLSPEC_OK)
            rc = cs_op_swiglu(d, out, out_off, tmp, 0, out, out_off, (size_t)n_cols * wg->n_out, err, errlen);
        return rc;
    }
    if (wg->layout == CS_WLAYOUT_I8) { /* x quantized once for both */
        int rc = cs_op_quant_q8_scratch(d, x, x_off, wg->n_in, n_cols, err, errlen);
        if (rc == CLSPEC_OK)
            rc = cs_op_matmul_i8(d, wg, n_cols, out, out_off, err, errlen);
        if (rc == CLSPEC_OK)
            rc = cs_op_matmul_i8(d, wu, n_cols, tmp, 0, err, errlen);
        if (rc == CLSPEC_OK)
            rc = cs_op_swiglu(d, out, out_off, tmp, 0, out, out_off, (size_t)n_cols * wg->n_out, err, errlen);
        return rc;
    }
    const bool fused = fuse_cols(d, n_cols, CS_FUSE_SWIGLU_COLS, 2 * wg->parts[0].n_rows * wg->row_bytes) &&
                       wg->n_parts == 1 &&
                       wu->n_parts == 1;
    if (!fused && wg->n_parts == 1 && wu->n_parts == 1 &&
        fuse_mm(d, n_cols, wg->n_in, 2 * wg->parts[0].n_rows * wg->row_bytes)) {
        if (!fits_u32(x_off + (uint64_t)n_cols * wg->n_in) || !fits_u32(out_off + (uint64_t)n_cols * wg->n_out))
            return cs_err(err, errlen, CLSPEC_E_RANGE, "matmul_swiglu: offsets exceed 32 bits");
        char name[32];
        snprintf(name, sizeof name, "mmswiglu_%s", wname(wg));
        const cl_uint rb = (cl_uint)wg->row_bytes, n_in = wg->n_in, nr = wg->n_out, xo = (cl_uint)x_off,
                      yo = (cl_uint)out_off;
        const struct cs_karg a[] = {CS_KA(wg->parts[0].buf), CS_KA(wu->parts[0].buf), CS_KA(rb), CS_KA(n_in),
                                    CS_KA(nr), CS_KA(x), CS_KA(xo), CS_KA(n_cols), CS_KA(out), CS_KA(yo)};
        const size_t g[2] = {nr, (n_cols + CS_MM_TCC - 1) / CS_MM_TCC}, l[2] = {CPU_LOCAL, 1};
        return cs_op_launch_nd(d, "matmul", NULL, name, a, CS_ARRAY_LEN(a), 2, g, l, err, errlen);
    }
    if (!fused) {
        int rc = cs_op_matmul(d, wg, x, x_off, out, out_off, n_cols, err, errlen);
        if (rc == CLSPEC_OK)
            rc = cs_op_matmul(d, wu, x, x_off, tmp, 0, n_cols, err, errlen);
        if (rc == CLSPEC_OK)
            rc = cs_op_swiglu(d, out, out_off, tmp, 0, out, out_off, (size_t)n_cols * wg->n_out, err, errlen);
        return rc;
    }
    if (!fits_u32(x_off + (uint64_t)n_cols * wg->n_in) || !fits_u32(out_off + (uint64_t)n_cols * wg->n_out))
        return cs_err(err, errlen, CLSPEC_E_RANGE, "matmul_swiglu: offsets exceed 32 bits");
    char name[32];
    snprintf(name, sizeof name, "mvswiglu_%s", wname(wg));
    const cl_uint rb = (cl_uint)wg->row_bytes, n_in = wg->n_in, nr = wg->n_out, xo = (cl_uint)x_off,
                  yo = (cl_uint)out_off;
    const struct cs_karg a[] = {CS_KA(wg->parts[0].buf), CS_KA(wu->parts[0].buf), CS_KA(rb), CS_KA(n_in), CS_KA(nr),
                                CS_KA(x), CS_KA(xo), CS_KA(out), CS_KA(yo)};
    const size_t g[2] = {mv_items(nr), n_cols}, l[2] = {CPU_LOCAL, 1};
    return cs_op_launch_nd(d, "matmul", NULL, name, a, CS_ARRAY_LEN(a), 2, g, l, err, errlen);
}

/* Whether w's matmuls read x as quant_q8 columns (the 4-bit and the
 * rows-in-lanes 8-bit paths; cs_op_quant_i4_scratch's columns are a superset
 * of cs_op_quant_q8_scratch's), so one quantized x serves several weights. */
static bool xq_path(const struct cs_cl_dev *d, const struct cs_weight *w)
{
    return cs_op_i4_takes(d, w) || w->layout == CS_WLAYOUT_I8;
}

/* y = x . W^T from n_cols columns already quantized in d's scratch (xq_path) */
static int matmul_xq(struct cs_cl_dev *d, const struct cs_weight *w, uint32_t n_cols, cl_mem y, size_t y_off,
                     char *err, size_t errlen)
{
    if (cs_op_i4_takes(d, w))
        return cs_op_matmul_i4_q(d, w, n_cols, y, y_off, err, errlen);
    return cs_op_matmul_i8(d, w, n_cols, y, y_off, err, errlen);
}

/* One launch of mv3_T (mm false) or mm3_T for Q, K and V (wq NULL: K and V
 * only, no Q rows; q unused), single-part weights of one float layout. */
static int qkv_fused(struct cs_cl_dev *d, bool mm, const struct cs_weight *wq, const struct cs_weight *wk,
                     const struct cs_weight *wv, cl_mem x, size_t x_off, cl_mem q, size_t q_off, cl_mem k,
                     size_t k_off, cl_mem v, size_t v_off, uint32_t n_cols, char *err, size_t errlen)
{
    const uint64_t nc = n_cols, q_rows = wq ? wq->n_out : 0;
    if (!fits_u32(x_off + nc * wk->n_in) || !fits_u32(q_off + nc * q_rows) || !fits_u32(k_off + nc * wk->n_out) ||
        !fits_u32(v_off + nc * wv->n_out))
        return cs_err(err, errlen, CLSPEC_E_RANGE, "matmul_qkv: offsets exceed 32 bits");
    char name[32];
    snprintf(name, sizeof name, "%s_%s", mm ? "mm3" : "mv3", wname(wk));
    const cl_uint rb = (cl_uint)wk->row_bytes, n_in = wk->n_in, nq = (cl_uint)q_rows, nk = wk->n_out, nv = wv->n_out,
                  xo = (cl_uint)x_off, qo = (cl_uint)q_off, ko = (cl_uint)k_off, vo = (cl_uint)v_off;
    const cl_mem wqb = wq ? wq->parts[0].buf : wk->parts[0].buf, qb = wq ? q : k;
    if (mm) {
        const struct cs_karg a[] = {CS_KA(wqb), CS_KA(wk->parts[0].buf), CS_KA(wv->parts[0].buf),
                                    CS_KA(rb), CS_KA(n_in), CS_KA(nq), CS_KA(nk), CS_KA(nv), CS_KA(x), CS_KA(xo),
                                    CS_KA(n_cols), CS_KA(qb), CS_KA(qo), CS_KA(k), CS_KA(ko), CS_KA(v), CS_KA(vo)};
        const size_t g[2] = {(size_t)nq + nk + nv, (n_cols + CS_MM_TCC - 1) / CS_MM_TCC}, l[2] = {CPU_LOCAL, 1};
        return cs_op_launch_nd(d, "matmul", NULL, name, a, CS_ARRAY_LEN(a), 2, g, l, err, errlen);
    }
    const struct cs_karg a[] = {CS_KA(wqb), CS_KA(wk->parts[0].buf), CS_KA(wv->parts[0].buf),
                                CS_KA(rb), CS_KA(n_in), CS_KA(nq), CS_KA(nk), CS_KA(nv), CS_KA(x), CS_KA(xo),
                                CS_KA(qb), CS_KA(qo), CS_KA(k), CS_KA(ko), CS_KA(v), CS_KA(vo)};
    const size_t g[2] = {mv_items(nq) + mv_items(nk) + mv_items(nv), n_cols}, l[2] = {CPU_LOCAL, 1};
    return cs_op_launch_nd(d, "matmul", NULL, name, a, CS_ARRAY_LEN(a), 2, g, l, err, errlen);
}

int cs_op_matmul_qkv(struct cs_cl_dev *d, const struct cs_weight *wq, const struct cs_weight *wk,
                     const struct cs_weight *wv, cl_mem x, size_t x_off, cl_mem q, size_t q_off, cl_mem k,
                     size_t k_off, cl_mem v, size_t v_off, uint32_t n_cols, char *err, size_t errlen)
{
    if (!wq || !wk || !wv || !wq->n_parts || !wk->n_parts || !wv->n_parts || !kname(wq->type))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "matmul_qkv: weight not uploaded");
    const bool same = wq->type == wk->type && wq->type == wv->type && wq->layout == wk->layout &&
                      wq->layout == wv->layout && wq->n_in == wk->n_in && wq->n_in == wv->n_in &&
                      wq->row_bytes == wk->row_bytes && wq->row_bytes == wv->row_bytes;
    if (xq_path(d, wq) && xq_path(d, wk) && xq_path(d, wv) && wq->n_in == wk->n_in && wq->n_in == wv->n_in) {
        /* x quantized once for the three, whichever integer paths they take (Q4_K_M: q6_K V next to q4_K Q, K) */
        const bool i4 = cs_op_i4_takes(d, wq) || cs_op_i4_takes(d, wk) || cs_op_i4_takes(d, wv);
        int rc = i4 ? cs_op_quant_i4_scratch(d, x, x_off, wq->n_in, n_cols, err, errlen)
                    : cs_op_quant_q8_scratch(d, x, x_off, wq->n_in, n_cols, err, errlen);
        if (rc == CLSPEC_OK && n_cols == 1 && cs_op_i4_qkv_fits(d, wq, wk, wv))
            return cs_op_matmul_i4_qkv(d, wq, wk, wv, q, q_off, k, k_off, v, v_off, err, errlen);
        if (rc == CLSPEC_OK)
            rc = matmul_xq(d, wq, n_cols, q, q_off, err, errlen);
        if (rc == CLSPEC_OK)
            rc = matmul_xq(d, wk, n_cols, k, k_off, err, errlen);
        if (rc == CLSPEC_OK)
            rc = matmul_xq(d, wv, n_cols, v, v_off, err, errlen);
        return rc;
    }
    if (same && cs_op_q8_takes(d, wq)) { /* x quantized once for the three */
        int rc = cs_op_quant_q8_scratch(d, x, x_off, wq->n_in, n_cols, err, errlen);
        if (rc == CLSPEC_OK && n_cols == 1 && wq->n_parts == 1 && wk->n_parts == 1 && wv->n_parts == 1)
            return cs_op_matmul_q8_qkv(d, wq, wk, wv, q, q_off, k, k_off, v, v_off, err, errlen);
        if (rc == CLSPEC_OK)
            rc = cs_op_matmul_q8(d, wq, n_cols, q, q_off, err, errlen);
        if (rc == CLSPEC_OK)
            rc = cs_op_matmul_q8(d, wk, n_cols, k, k_off, err, errlen);
        if (rc == CLSPEC_OK)
            rc = cs_op_matmul_q8(d, wv, n_cols, v, v_off, err, errlen);
        return rc;
    }
    const bool fused = same && wq->n_parts == 1 && wk->n_parts == 1 && wv->n_parts == 1 &&
                       fuse_cols(d, n_cols, CS_FUSE_QKV_COLS,
                                 (uint64_t)(wq->n_out + wk->n_out + wv->n_out) * wq->row_bytes);
    const bool mm = !fused && same && wq->n_parts == 1 && wk->n_parts == 1 && wv->n_parts == 1 &&
                    fuse_mm(d, n_cols, wq->n_in, (uint64_t)(wq->n_out + wk->n_out + wv->n_out) * wq->row_bytes);
    if (!fused && !mm) {
        int rc = cs_op_matmul(d, wq, x, x_off, q, q_off, n_cols, err, errlen);
        if (rc == CLSPEC_OK)
            rc = cs_op_matmul(d, wk, x, x_off, k, k_off, n_cols, err, errlen);
        if (rc == CLSPEC_OK)
            rc = cs_op_matmul(d, wv, x, x_off, v, v_off, n_cols, err, errlen);
        return rc;
    }
    return qkv_fused(d, mm, wq, wk, wv, x, x_off, q, q_off, k, k_off, v, v_off, n_cols, err, errlen);
}

int cs_op_matmul_kv(struct cs_cl_dev *d, const struct cs_weight *wk, const struct cs_weight *wv, cl_mem x,
                    size_t x_off, cl_mem k, size_t k_off, cl_mem v, size_t v_off, uint32_t n_cols, char *err,
                    size_t errlen)
{
    if (!wk || !wv || !wk->n_parts || !wv->n_parts || !kname(wk->type))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "matmul_kv: weight not uploaded");
    const bool flt = !xq_path(d, wk) && !cs_op_q8_takes(d, wk);
    const bool one = flt && wk->type == wv->type && wk->layout == wv->layout && wk->n_in == wv->n_in &&
                     wk->row_bytes == wv->row_bytes && wk->n_parts == 1 && wv->n_parts == 1;
    const uint64_t bytes = (uint64_t)(wk->n_out + wv->n_out) * wk->row_bytes;
    const bool mv = one && fuse_cols(d, n_cols, CS_FUSE_QKV_COLS, bytes);
    const bool mm = one && !mv && fuse_mm(d, n_cols, wk->n_in, bytes);
    if (mv || mm)
        return qkv_fused(d, mm, NULL, wk, wv, x, x_off, NULL, 0, k, k_off, v, v_off, n_cols, err, errlen);
    CS_TRY(cs_op_matmul(d, wk, x, x_off, k, k_off, n_cols, err, errlen));
    return cs_op_matmul(d, wv, x, x_off, v, v_off, n_cols, err, errlen);
}
