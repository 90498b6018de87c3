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
 * value head h), in place: braw -> beta = sigmoid(braw), araw -> the log
 * decay g = softplus(araw + dt_bias[h]) * A[h]; for h < Hk also q and k of q/k
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
    araw[r] = sp * A[h]; /* log of the decay (<= 0) */
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
 * normalised; value head h reads q/k head h % Hk. beta, g (n, Hv). Per
 * row: S <- exp(g) S; S <- S + k (beta (v - S^T k))^T; out = S^T q.
 * st (slots, Hv, Dk, Dv) f32; out (n, Hv * Dv). */
__kernel void dn_recur(__global const float *qkv, int C, __global const float *beta, __global const float *lg,
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
        const float b = beta[(size_t)t * Hv + h], dec = exp(lg[(size_t)t * Hv + h]);
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

/* The chunked form of dn_recur (same arguments, same results within
 * rounding): one work-group per value head h, one work-item per state column
 * j (local size Dv). Runs of up to DN_CHUNK rows of one sequence that store
 * no state before their last row are done at once: with G_t the cumulative
 * log decay over the run and S0 the state before it,
 *   u_t = beta_t (v_t - e^{G_t} S0^T k_t - sum_{s<t} e^{G_t - G_s} (k_t.k_s) u_s)
 *   o_t = e^{G_t} S0^T q_t + sum_{s<=t} e^{G_t - G_s} (q_t.k_s) u_s
 *   S   = e^{G_last} S0 + sum_s e^{G_last - G_s} k_s u_s^T,
 * the k and q Gram matrices computed by the whole group (parallel over the
 * run's rows); other rows are runs of one. */
#define DN_CHUNK 16
__kernel void dn_chunk(__global const float *qkv, int C, __global const float *beta, __global const float *lg,
                       __global float *st, __global const int *rd, __global const int *wr, __global float *out, int n,
                       int Hv, int Hk, int Dk, int Dv, __local float *kc, __local float *qc, __local float *kk,
                       __local float *qk, __local float *G)
{
    const int h = get_group_id(0), j = get_local_id(0), nl = get_local_size(0), hk = h % Hk;
    float s[DN_DKMAX];
    float w[DN_CHUNK], y[DN_CHUNK], u[DN_CHUNK];
    for (int i = 0; i < Dk; i++)
        s[i] = 0.0f;
    for (int t0 = 0; t0 < n;) {
        /* the run [t0, t0 + m): every row after the first carries, no state stored before the last */
        int m = 1;
        while (m < DN_CHUNK && t0 + m < n && rd[t0 + m] == -2 && wr[t0 + m - 1] < 0)
            m++;
        const int r = rd[t0];
        if (j < Dv) {
            if (r == -1)
                for (int i = 0; i < Dk; i++)
                    s[i] = 0.0f;
            else if (r >= 0)
                for (int i = 0; i < Dk; i++)
                    s[i] = st[(((size_t)r * Hv + h) * Dk + i) * Dv + j];
        }
        for (int e = j; e < m * Dk; e += nl) {
            const int t = e / Dk, i = e % Dk;
            kc[e] = qkv[(size_t)(t0 + t) * C + Hk * Dk + hk * Dk + i];
            qc[e] = qkv[(size_t)(t0 + t) * C + hk * Dk + i];
        }
        if (j == 0) {
            float acc = 0.0f;
            for (int t = 0; t < m; t++)
                G[t] = acc += lg[(size_t)(t0 + t) * Hv + h];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int e = j; e < m * m; e += nl) {
            const int t = e / m, u2 = e % m;
            float a = 0.0f, b = 0.0f;
            if (u2 <= t)
                for (int i = 0; i < Dk; i++) {
                    a += kc[t * Dk + i] * kc[u2 * Dk + i];
                    b += qc[t * Dk + i] * kc[u2 * Dk + i];
                }
            kk[e] = a;
            qk[e] = b;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (j < Dv) {
            for (int t = 0; t < m; t++) {
                float a = 0.0f, b = 0.0f;
                for (int i = 0; i < Dk; i++) {
                    a += s[i] * kc[t * Dk + i];
                    b += s[i] * qc[t * Dk + i];
                }
                w[t] = a;
                y[t] = b;
            }
            for (int t = 0; t < m; t++) {
                const float Gt = G[t];
                float acc = exp(Gt) * w[t];
                for (int q = 0; q < t; q++)
                    acc += exp(Gt - G[q]) * kk[t * m + q] * u[q];
                const float v = qkv[(size_t)(t0 + t) * C + 2 * Hk * Dk + h * Dv + j];
                u[t] = beta[(size_t)(t0 + t) * Hv + h] * (v - acc);
                float o = exp(Gt) * y[t];
                for (int q = 0; q <= t; q++)
                    o += exp(Gt - G[q]) * qk[t * m + q] * u[q];
                out[(size_t)(t0 + t) * Hv * Dv + h * Dv + j] = o;
            }
            const float Gl = G[m - 1];
            for (int i = 0; i < Dk; i++) {
                float acc = exp(Gl) * s[i];
                for (int q = 0; q < m; q++)
                    acc += exp(Gl - G[q]) * kc[q * Dk + i] * u[q];
                s[i] = acc;
            }
            const int sw = wr[t0 + m - 1];
            if (sw >= 0)
                for (int i = 0; i < Dk; i++)
                    st[(((size_t)sw * Hv + h) * Dk + i) * Dv + j] = s[i];
        }
        barrier(CLK_LOCAL_MEM_FENCE); /* kc, qc, G are rewritten by the next run */
        t0 += m;
    }
}
