/* deltanet_ref.h: plain-C references of the qwen35 hybrid's kernels
 * (cl/deltanet.cl, src/ops/dn_ops.h), in double precision, over host arrays
 * with the same layouts and the same state slot plan (rd / wr per row: -1
 * zero state, -2 carry the previous row's state, >= 0 a slot). Tests only. */
#ifndef CS_REF_DELTANET_REF_H
#define CS_REF_DELTANET_REF_H

#include <stdint.h>

/* Causal depthwise conv + SiLU in place on x (n, C); w (C, K); st (slots, K-1, C). */
void cs_ref_dn_conv(float *x, const float *w, float *st, const int32_t *rd, const int32_t *wr, int n, int C, int K);

/* The gated delta rule: qkv (n, C = 2 Hk Dk + Hv Dv), braw / araw (n, Hv),
 * dt_bias / A (Hv), st (slots, Hv, Dk, Dv) -> out (n, Hv Dv). */
void cs_ref_dn_recur(const float *qkv, int C, const float *braw, const float *araw, const float *dt_bias,
                     const float *A, float *st, const int32_t *rd, const int32_t *wr, float *out, int n, int Hv,
                     int Hk, int Dk, int Dv, float eps);

#endif
