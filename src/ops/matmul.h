/* matmul.h: weight matrices on an OpenCL device and the ops that read them:
 * y = x . W^T (cs_op_matmul) and the embedding gather (cs_op_get_rows).
 * The caller owns struct cs_weight (fill with cs_weight_upload, release with cs_weight_free). */
#ifndef CS_OPS_MATMUL_H
#define CS_OPS_MATMUL_H

#include <stdint.h>

#include "cl/runtime.h"
#include "gguf/quant.h"

/* Device layouts. Each part holds whole rows (row r of the part at
 * r * row_bytes; a part boundary is always a row boundary).
 * CS_WLAYOUT_GGUF: byte for byte as stored in GGUF (ggml blocks of
 *   block_bytes, array-of-structs, no padding); the kernels read it with
 *   byte-aligned vector loads (cl/blocks.cl). Every type.
 * CS_WLAYOUT_Q8_0_F32D: q8_0 repacked on upload into 36-byte blocks
 *   {float d; int8 qs[32]} (4-aligned, no half decode in the inner loop):
 *   6% more bytes, faster mat-vec on CPUs (the default for q8_0). */
#define CS_WLAYOUT_GGUF 0
#define CS_WLAYOUT_Q8_0_F32D 1
/* CS_WLAYOUT_Q4_K_R: q4_K repacked into 152-byte super-blocks {float d, dmin;
 *   uchar sc[8], mn[8]; uchar qs[8][16]} (scales unpacked, each sub-block's
 *   nibbles as q4_0: element l low, l + 16 high): 5.6% more bytes, no scale
 *   decode or lane widening in the inner loop (the default for q4_K).
 * CS_WLAYOUT_Q6_K_R: q6_K repacked into 212-byte super-blocks {float d; char
 *   sc[16]; per sub-block uchar ql[16] (as q4_0), uchar qh[8] (byte i: high
 *   2 bits of elements i, i + 8, i + 16, i + 24)} (the default for q6_K).
 * CS_WLAYOUT_Q5_K_R: q5_K repacked as Q4_K_R with each sub-block's fifth bits
 *   first: {float d, dmin; uchar sc[8], mn[8]; per sub-block uint qh (bit l:
 *   element l), uchar qs[16]} (184 bytes; the default for q5_K).
 * All give bitwise the same results as their GGUF layout (cl/blocks.cl).
 * q4_0 and q4_K on CPU-family devices take the 4-bit integer path's layouts
 * instead (CS_WLAYOUT_Q4_0_I16, CS_WLAYOUT_Q4_K_I16: ops/matmul_i4.h). */
#define CS_WLAYOUT_Q4_K_R 2
#define CS_WLAYOUT_Q6_K_R 3
#define CS_WLAYOUT_Q5_K_R 4
/* CS_WLAYOUT_I8: q8_0 / q6_K / q5_K in groups of 16 rows for integer dot products
 *   (src/ops/matmul_i8.h, cl/matmul_i8.cl; CPU family, on unless
 *   CLSPEC_INTDOT=0). row_bytes is a row's share of its group: group g of a
 *   part at g * 16 * row_bytes, the part's last group padded to 16 rows. */
#define CS_WLAYOUT_I8 5

struct cs_weight_part {
    cl_mem buf;      /* n_rows * row_bytes bytes */
    uint32_t r0;     /* first row of W held by this part */
    uint32_t n_rows; /* rows in this part */
};

struct cs_weight {
    enum cs_type type;
    uint32_t n_in;     /* elements per row (GGUF ne0, contiguous) */
    uint32_t n_out;    /* rows (GGUF ne1) */
    uint64_t row_bytes;/* bytes per row on the device (layout) */
    uint64_t bytes;    /* n_out * row_bytes: the device bytes a mat-vec reads */
    int layout;        /* CS_WLAYOUT_* */
    uint32_t n_parts;
    struct cs_weight_part *parts; /* (n_parts), malloc'd */
};

/* Whether the ops support a weight type (every one clspec loads: F32, F16,
 * BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q6_K). */
bool cs_weight_type_ok(uint32_t type);

/* Uploads host (n_out rows of n_in elements of type, GGUF layout) to d. The
 * weight is split by rows into parts of at most d->info.max_alloc bytes (or
 * $CLSPEC_MAX_PART_BYTES when set and smaller). Block types need n_in to be a
 * multiple of their block size; a single row must fit in one part. On failure
 * *w is left empty (safe to cs_weight_free). */
int cs_weight_upload(struct cs_cl_dev *d, uint32_t type, uint32_t n_in, uint32_t n_out,
                     const void *host, struct cs_weight *w, char *err, size_t errlen);
/* The same with an explicit part size limit (0 = the device limit) and
 * repack (false keeps CS_WLAYOUT_GGUF for every type; cs_weight_upload
 * repacks q8_0, q4_K, q5_K and q6_K). */
int cs_weight_upload_parts(struct cs_cl_dev *d, uint32_t type, uint32_t n_in, uint32_t n_out,
                           const void *host, uint64_t max_part_bytes, bool repack, struct cs_weight *w,
                           char *err, size_t errlen);
void cs_weight_free(struct cs_weight *w);

/* Loads the matmul and getrows programs of d (built once per device, then
 * cached); optional: the ops load them on first use. */
int cs_op_matmul_prepare(struct cs_cl_dev *d, char *err, size_t errlen);

/* y(n_cols, n_out) = x(n_cols, n_in) . W^T: for each column c (token) and row
 * r, y[y_off + c n_out + r] = sum_k W[r][k] x[x_off + c n_in + k]. x and y are
 * f32 buffers, offsets in floats. Enqueues only (no wait). n_cols >= 1. */
int cs_op_matmul(struct cs_cl_dev *d, const struct cs_weight *w, cl_mem x, size_t x_off, cl_mem y,
                 size_t y_off, uint32_t n_cols, char *err, size_t errlen);

/* Embedding gather: out[out_off + t n_in + k] = W[ids[ids_off + t]][k] as f32,
 * for t < n; an id outside [0, n_out) gives a row of zeros. Enqueues only. */
int cs_op_get_rows(struct cs_cl_dev *d, const struct cs_weight *w, cl_mem ids, size_t ids_off,
                   uint32_t n, cl_mem out, size_t out_off, char *err, size_t errlen);

/* The FFN's gate and up projections and SwiGLU: out[out_off + c n_out + r] =
 * silu(g) * u with g, u the (c, r) elements of x . Wg^T and x . Wu^T (wg, wu:
 * the same type and shape). One fused launch for a mat-vec on the CPU family
 * when both weights are single-part; otherwise cs_op_matmul twice (up into tmp,
 * n_cols * n_out floats at offset 0, unused when fused) and cs_op_swiglu.
 * Bitwise the same either way (batch invariance). Enqueues only. */
int cs_op_matmul_swiglu(struct cs_cl_dev *d, const struct cs_weight *wg, const struct cs_weight *wu, cl_mem x,
                        size_t x_off, cl_mem tmp, cl_mem out, size_t out_off, uint32_t n_cols, char *err,
                        size_t errlen);

/* The Q, K and V projections of a layer: cs_op_matmul of x with wq into q,
 * wk into k and wv into v (each at its offset, columns of its own n_out). One
 * launch for a mat-vec on the CPU family when the three weights have the same
 * type, layout and n_in and one part each; three cs_op_matmul otherwise.
 * Bitwise the same either way. Enqueues only. */
int cs_op_matmul_qkv(struct cs_cl_dev *d, const struct cs_weight *wq, const struct cs_weight *wk,
                     const struct cs_weight *wv, cl_mem x, size_t x_off, cl_mem q, size_t q_off, cl_mem k,
                     size_t k_off, cl_mem v, size_t v_off, uint32_t n_cols, char *err, size_t errlen);
/* K and V only (a KV-only block: DFlash's context injection): one launch
 * where cs_op_matmul_qkv fuses (no Q rows), two cs_op_matmul otherwise; the
 * same bits. Enqueues only. */
int cs_op_matmul_kv(struct cs_cl_dev *d, const struct cs_weight *wk, const struct cs_weight *wv, cl_mem x,
                    size_t x_off, cl_mem k, size_t k_off, cl_mem v, size_t v_off, uint32_t n_cols, char *err,
                    size_t errlen);

#endif
