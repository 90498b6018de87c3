/* dn_ops.h: host dispatch of the qwen35 hybrid's kernels (cl/deltanet.cl):
 * the gated attention's q / gate split and sigmoid gate, the delta-net's
 * causal conv and delta-rule recurrence over recurrent state slots
 * (src/kv/kv_rec.h). One kernel variant serves both families (each
 * work-item owns a channel or a state column). Plain-C twins in
 * src/ref/deltanet_ref.h. Every call only enqueues on d's queue; buffers are
 * the caller's, f32 row-major from offset 0, ints int32. */
#ifndef CS_OPS_DN_OPS_H
#define CS_OPS_DN_OPS_H

#include <stdbool.h>
#include <stddef.h>

#include "cl/runtime.h"

/* qg (n_rows, 2 * D) of per-row [q | gate] -> q (n_rows, D), g (n_rows, D). */
int cs_op_dn_qgate_split(struct cs_cl_dev *d, cl_mem qg, cl_mem q, cl_mem g, int n_rows, int D, char *err,
                         size_t errlen);
/* y[i] *= sigmoid(g[i]), i < n. */
int cs_op_dn_mul_sigmoid(struct cs_cl_dev *d, cl_mem y, cl_mem g, size_t n, char *err, size_t errlen);

/* The delta-net's shape (struct cs_hparams' ssm fields). */
struct cs_dn_shape {
    int C;      /* conv channels: 2 * Hk * Dk + Hv * Dv */
    int K;      /* conv taps (2..8) */
    int Hk, Dk; /* q/k heads and head size (Dk <= 256) */
    int Hv, Dv; /* value heads (multiple of Hk) and head size */
    float eps;  /* L2-norm epsilon */
};

/* Causal depthwise conv + SiLU in place on x (n, C) with w (C, K) f32, the
 * state slots st (slots, K-1, C) and the per-row slot plans rd, wr (n). */
int cs_op_dn_conv(struct cs_cl_dev *d, const struct cs_dn_shape *s, cl_mem x, cl_mem w, cl_mem st, cl_mem rd,
                  cl_mem wr, int n, char *err, size_t errlen);
/* The gated delta rule over n rows (cl/deltanet.cl dn_prep + dn_recur):
 * qkv (n, C) after the conv, braw / araw (n, Hv), dt_bias / A (Hv), state
 * slots st (slots, Hv, Dk, Dv) -> out (n, Hv * Dv). Scratch use of the
 * inputs: q and k in qkv are normalised in place, braw becomes beta and araw
 * the decay (the v part of qkv is left as it was). */
int cs_op_dn_recur(struct cs_cl_dev *d, const struct cs_dn_shape *s, cl_mem qkv, cl_mem braw, cl_mem araw,
                   cl_mem dt_bias, cl_mem A, cl_mem st, cl_mem rd, cl_mem wr, cl_mem out, int n, bool chunked,
                   char *err, size_t errlen);
/* Whether d can run the chunked form (cl/deltanet.cl dn_chunk: one work-group of Dv work-items per value
 * head, runs of up to 16 rows of a sequence that store no state before their last row at once, through
 * their k and q Gram matrices); cs_op_dn_recur falls back to the row recurrence otherwise. */
bool cs_op_dn_chunk_ok(const struct cs_cl_dev *d, const struct cs_dn_shape *s);

#endif
