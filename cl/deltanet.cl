/* deltanet.cl: the qwen35 hybrid's own kernels: the gated delta-net mixer
 * (causal depthwise conv with its rolling state, the per-token delta-rule
 * recurrence) and the gated attention's helpers (q / gate split, sigmoid
 * gate). Plain-C twins: src/ref/deltanet_ref.c. One variant serves both
 * kernel families: each work-item owns one conv channel or one state column
 * and walks the rows in order (the recurrence is sequential in the rows).
 *
 * Recurrent state slots (src/kv/kv_rec.h): per row t, rd[t] is the slot to
 * load the state from before the row (-1: zero state, a sequence's start;
 * -2: carry the state of row t - 1, the same sequence's previous position),
 * wr[t] the slot to store the state after the row (-1: none). */

#define DN_KMAX 8    /* most conv taps (ssm.conv_kernel, checked on load) */
#define DN_DKMAX 256 /* largest q/k head (ssm.state_size, checked on load) */

/* qg (n_rows, 2 * D): per row [q (D) | gate (D)] -> q (n_rows, D), g (n_rows, D). */
__kernel void dn_qgate_split(__global const float *qg, __global float *q, __global float *g, uint n_rows, uint D)
{
    size_t i = get_global_id(0);
    if (i >= (size_t)n_rows * D)
        return;
    size_t r = i / D, j = i % D;
    q[i] = qg[r * 2 * D + j];
    g[i] = qg[r * 2 * D + D + j];
}

/* y[i] *= sigmoid(g[i]), i < n. */
__kernel void dn_mul_sigmoid(__global float *y, __global const float *g, uint n)
{
    size_t i = get_global_id(0);
    if (i >= n)
        return;
    y[i] = y[i] / (1.0f + exp(-g[i]));
}

/* Causal depthwise conv + SiLU, in place on x (n, C): one work-item per
 * channel c. w (C, K): tap K-1 multiplies the current row, taps 0..K-2 the
 * K-1 previous inputs (oldest first). st (slots, K-1, C): the K-1 previous
 * inputs, oldest first. */
__kernel void dn_conv(__global float *x, __global const float *w, __global float *st, __global const int *rd,
                      __global const int *wr, int n, int C, int K)
{
    int c = get_global_id(0);
    if (c >= C)
        return;
    float h[DN_KMAX];
    float wc[DN_KMAX];
    for (int j = 0; j < K; j++)
        wc[j] = w[c * K + j];
    for (int j = 0; j < K - 1; j++)
        h[j] = 0.0f;
    for (int t = 0; t < n; t++) {
        int r = rd[t];
        if (r == -1)
            for (int j = 0; j < K - 1; j++)
                h[j] = 0.0f;
        else if (r >= 0)
            for (int j = 0; j < K - 1; j++)
                h[j] = st[((size_t)r * (K - 1) + j) * C + c];
        float xt = x[(size_t)t * C + c];
        float acc = 0.0f;
        for (int j = 0; j < K - 1; j++)
            acc += wc[j] * h[j];
        acc += wc[K - 1] * xt;
        for (int j = 0; j + 1 < K - 1; j++)
            h[j] = h[j + 1];
        h[K - 2] = xt;
        x[(size_t)t * C + c] = acc / (1.0f + exp(-acc));
        int s = wr[t];
        if (s >= 0)
            for (int j = 0; j < K - 1; j++)
                st[((size_t)s * (K - 1) + j) * C + c] = h[j];
    }
}

/* The per-row scalars of the gated delta rule, one work-item per (row t,
 * value head h), in place: braw -> beta = sigmoid(braw), araw -> the decay
 * exp(softplus(araw + dt_bias[h]) * A[h]); for h < Hk also q and k of q/k
 * head h in qkv L2-normalised (1 / max(|.|, eps)), q times 1/sqrt(Dk). */
__kernel void dn_prep(__global float *qkv, int C, __global float *braw, __global float *araw,
                      __global const float *dt_bias, __global const float *A, int n, int Hv, int Hk, int Dk, float eps)
{
    int gid = get_global_id(0);
    if (gid >= n * Hv)
        return;
    const int t = gid / Hv, h = gid % Hv;
    const size_t r = (size_t)t * Hv + h;
    braw[r] = 1.0f / (1.0f + exp(-braw[r]));
    const float a = araw[r] + dt_bias[h];
    const float sp = a > 20.0f ? a : log1p(exp(a));
    araw[r] = exp(sp * A[h]);
    if (h >= Hk)
        return;
    __global float *q = qkv + (size_t)t * C + h * Dk;
    __global float *k = qkv + (size_t)t * C + Hk * Dk + h * Dk;
    float qq = 0.0f, kk = 0.0f;
    for (int i = 0; i < Dk; i++) {
        qq += q[i] * q[i];
        kk += k[i] * k[i];
    }
    const float qs = (1.0f / sqrt((float)Dk)) / fmax(sqrt(qq), eps), ks = 1.0f / fmax(sqrt(kk), eps);
    for (int i = 0; i < Dk; i++) {
        q[i] *= qs;
        k[i] *= ks;
    }
}

/* The gated delta rule after dn_prep, one work-item per (value head h, state
 * column j). qkv (n, C): rows [q (Hk*Dk) | k (Hk*Dk) | v (Hv*Dv)], q and k
 * normalised; value head h reads q/k head h % Hk. beta, decay (n, Hv). Per
 * row: S <- decay S; S <- S + k (beta (v - S^T k))^T; out = S^T q.
 * st (slots, Hv, Dk, Dv) f32; out (n, Hv * Dv). */
__kernel void dn_recur(__global const float *qkv, int C, __global const float *beta, __global const float *decay,
                       __global float *st, __global const int *rd, __global const int *wr, __global float *out, int n,
                       int Hv, int Hk, int Dk, int Dv)
{
    int gid = get_global_id(0);
    if (gid >= Hv * Dv)
        return;
    const int h = gid / Dv, j = gid % Dv, hk = h % Hk;
    float s[DN_DKMAX];
    for (int i = 0; i < Dk; i++)
        s[i] = 0.0f;
    for (int t = 0; t < n; t++) {
        int r = rd[t];
        if (r == -1)
            for (int i = 0; i < Dk; i++)
                s[i] = 0.0f;
        else if (r >= 0)
            for (int i = 0; i < Dk; i++)
                s[i] = st[(((size_t)r * Hv + h) * Dk + i) * Dv + j];
        __global const float *q = qkv + (size_t)t * C + hk * Dk;
        __global const float *k = qkv + (size_t)t * C + Hk * Dk + hk * Dk;
        const float v = qkv[(size_t)t * C + 2 * Hk * Dk + h * Dv + j];
        const float b = beta[(size_t)t * Hv + h], dec = decay[(size_t)t * Hv + h];
        float sk = 0.0f;
        for (int i = 0; i < Dk; i++) {
            s[i] *= dec;
            sk += s[i] * k[i];
        }
        const float d = b * (v - sk);
        float o = 0.0f;
        for (int i = 0; i < Dk; i++) {
            s[i] += k[i] * d;
            o += s[i] * q[i];
        }
        out[(size_t)t * Hv * Dv + h * Dv + j] = o;
        int sw = wr[t];
        if (sw >= 0)
            for (int i = 0; i < Dk; i++)
                st[(((size_t)sw * Hv + h) * Dk + i) * Dv + j] = s[i];
    }
}
