/* family.h: the ops a transformer block is built from (src/model/block.c), as a
 * table chosen once per context and device: a kernel family. The standard
 * family (cs_ops_std) calls the cs_op_* host ops, which pick the CPU or GPU
 * kernels by device; the llama.cpp-numerics family (cs_ops_lcpp_new,
 * src/ops/lcpp_family.c) computes the same entries with llama.cpp's CPU
 * arithmetic bit for bit (tests only). Nothing above this table branches on
 * which family runs.
 * Ownership: a struct cs_ops from cs_ops_std owns nothing; one from
 * cs_ops_lcpp_new owns its device scratch and is released by cs_ops_free.
 * Every entry only enqueues on o->dev's queue; every cl_mem is the caller's
 * and used from offset 0; activations are f32 row-major. */
#ifndef CS_OPS_FAMILY_H
#define CS_OPS_FAMILY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cl/runtime.h"
#include "ops/matmul.h"
#include "ops/ops.h"

struct cs_ops;

/* The entries. "n_logical" is the number of rows the product has in the
 * graph being reproduced (llama.cpp computes the last layer's FFN and the
 * output for the logits rows only, and picks its matmul kernel by row count);
 * the standard family ignores it. All entries are required. */
struct cs_op_family {
    const char *name; /* "std", "lcpp" */
    /* Start of a pass of n rows at host positions pos (n): families that need
     * per-position host tables upload them here. NULL: nothing to do. */
    int (*begin)(const struct cs_ops *o, const int32_t *pos, int n, char *err, size_t errlen);
    /* y (n_rows, n_cols) = rmsnorm(x) * w; y may equal x. */
    int (*rmsnorm)(const struct cs_ops *o, cl_mem x, cl_mem w, cl_mem y, int n_rows, int n_cols, float eps,
                   char *err, size_t errlen);
    /* x += b, then y = rmsnorm(x) * w (rows (n_rows, n_cols)); y may equal b, must not overlap x. */
    int (*add_rmsnorm)(const struct cs_ops *o, cl_mem x, cl_mem b, cl_mem w, cl_mem y, int n_rows, int n_cols,
                       float eps, char *err, size_t errlen);
    /* y (n, w->n_out) = x (n, w->n_in) . W^T. */
    int (*matmul)(const struct cs_ops *o, const struct cs_weight *w, cl_mem x, cl_mem y, int n, int n_logical,
                  char *err, size_t errlen);
    /* q = x . Wq^T, k = x . Wk^T, v = x . Wv^T (n rows). wq (and q) NULL: K and V only. */
    int (*matmul_qkv)(const struct cs_ops *o, const struct cs_weight *wq, const struct cs_weight *wk,
                      const struct cs_weight *wv, cl_mem x, cl_mem q, cl_mem k, cl_mem v, int n, int n_logical,
                      char *err, size_t errlen);
    /* out (n, n_ff) = silu(x . Wg^T) * (x . Wu^T); tmp: (n, n_ff) scratch (may be left unused). */
    int (*matmul_swiglu)(const struct cs_ops *o, const struct cs_weight *wg, const struct cs_weight *wu, cl_mem x,
                         cl_mem tmp, cl_mem out, int n, int n_logical, char *err, size_t errlen);
    /* RoPE in place on q (n, n_head, head_dim) and k (n, n_head_kv, head_dim) at int32 positions pos (n);
     * q NULL: k only. */
    int (*rope_qk)(const struct cs_ops *o, cl_mem q, cl_mem k, cl_mem pos, int n, int n_head, int n_head_kv,
                   int head_dim, const struct cs_rope_params *p, char *err, size_t errlen);
    /* out (n, n_head, head_dim) = attention of q over cells [0, n_cells_used) of kv (cs_op_attention). */
    int (*attention)(const struct cs_ops *o, const struct cs_kv_view *kv, int n_cells_used, cl_mem q, cl_mem out,
                     cl_mem pos, cl_mem seq, int n, int n_head, bool causal, float scale, char *err, size_t errlen);
    /* Releases st. NULL: nothing owned. */
    void (*free)(struct cs_ops *o);
};

/* A family bound to one device. */
struct cs_ops {
    const struct cs_op_family *f; /* the table (static) */
    struct cs_cl_dev *dev;        /* borrowed: where every entry enqueues */
    void *st;                     /* the family's per-device state, owned (NULL for std) */
};

/* The standard family on d (owns nothing; cs_ops_free is a no-op). */
struct cs_ops cs_ops_std(struct cs_cl_dev *d);

/* What the llama.cpp-numerics family sizes its scratch by. */
struct cs_ops_lcpp_params {
    int n_rows;                 /* most rows per pass */
    int max_in;                 /* widest matmul input (elements) */
    int n_head;                 /* query heads (attention scores) */
    int n_ctx;                  /* KV cells (attention scores; padded to 32 inside) */
    struct cs_rope_params rope; /* the model's RoPE (the host cos/sin table) */
};

/* The llama.cpp-numerics family on d (src/ops/lcpp_family.c). *out owns
 * device and host scratch until cs_ops_free. */
int cs_ops_lcpp_new(struct cs_cl_dev *d, const struct cs_ops_lcpp_params *p, struct cs_ops *out, char *err,
                    size_t errlen);

/* o->f->begin when set, else CLSPEC_OK. */
int cs_ops_begin(const struct cs_ops *o, const int32_t *pos, int n, char *err, size_t errlen);
/* Releases what o owns and empties it; safe on an empty or std o. */
void cs_ops_free(struct cs_ops *o);

#endif
