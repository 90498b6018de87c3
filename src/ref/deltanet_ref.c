/* deltanet_ref.c: plain-C references of cl/deltanet.cl (see deltanet_ref.h).
 * Written as the math reads: per value head a Dk x Dv state matrix, updated
 * as a whole per row (the kernel works column by column). */
#include "config.h"

#include "ref/deltanet_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void cs_ref_dn_conv(float *x, const float *w, float *st, const int32_t *rd, const int32_t *wr, int n, int C, int K)
{
    const int H = K - 1;
    double *hist = calloc((size_t)H * C, sizeof *hist); /* (K-1, C): previous inputs, oldest first */
    if (!hist)
        return;
    for (int t = 0; t < n; t++) {
        if (rd[t] == -1)
            memset(hist, 0, (size_t)H * C * sizeof *hist);
        else if (rd[t] >= 0)
            for (int j = 0; j < H * C; j++)
                hist[j] = st[(size_t)rd[t] * H * C + j];
        for (int c = 0; c < C; c++) {
            double xt = x[(size_t)t * C + c], acc = w[(size_t)c * K + H] * xt;
            for (int j = 0; j < H; j++)
                acc += w[(size_t)c * K + j] * hist[(size_t)j * C + c];
            for (int j = 0; j + 1 < H; j++)
                hist[(size_t)j * C + c] = hist[(size_t)(j + 1) * C + c];
            hist[(size_t)(H - 1) * C + c] = xt;
            x[(size_t)t * C + c] = (float)(acc / (1.0 + exp(-acc)));
        }
        if (wr[t] >= 0)
            for (int j = 0; j < H * C; j++)
                st[(size_t)wr[t] * H * C + j] = (float)hist[j];
    }
    free(hist);
}

/* v / max(|v|, eps) * scale into out (n values). */
static void l2norm(const float *v, int n, double eps, double scale, double *out)
{
    double ss = 0.0;
    for (int i = 0; i < n; i++)
        ss += (double)v[i] * v[i];
    double d = sqrt(ss);
    if (d < eps)
        d = eps;
    for (int i = 0; i < n; i++)
        out[i] = v[i] / d * scale;
}

void cs_ref_dn_recur(const float *qkv, int C, const float *braw, const float *araw, const float *dt_bias,
                     const float *A, float *st, const int32_t *rd, const int32_t *wr, float *out, int n, int Hv,
                     int Hk, int Dk, int Dv, float eps)
{
    const size_t SS = (size_t)Hv * Dk * Dv;
    double *S = calloc(SS, sizeof *S), *q = malloc((size_t)Dk * sizeof *q), *k = malloc((size_t)Dk * sizeof *k),
           *u = malloc((size_t)Dv * sizeof *u);
    if (!S || !q || !k || !u)
        goto done;
    for (int t = 0; t < n; t++) {
        if (rd[t] == -1)
            memset(S, 0, SS * sizeof *S);
        else if (rd[t] >= 0)
            for (size_t j = 0; j < SS; j++)
                S[j] = st[(size_t)rd[t] * SS + j];
        const float *row = qkv + (size_t)t * C;
        for (int h = 0; h < Hv; h++) {
            const int hk = h % Hk;
            double *M = S + (size_t)h * Dk * Dv; /* M[i][j]: key dim i, value dim j */
            l2norm(row + hk * Dk, Dk, eps, 1.0 / sqrt((double)Dk), q);
            l2norm(row + Hk * Dk + hk * Dk, Dk, eps, 1.0, k);
            const float *v = row + 2 * Hk * Dk + h * Dv;
            double beta = 1.0 / (1.0 + exp(-(double)braw[(size_t)t * Hv + h]));
            double a = (double)araw[(size_t)t * Hv + h] + dt_bias[h];
            double g = (a > 20.0 ? a : log1p(exp(a))) * A[h];
            for (size_t j = 0; j < (size_t)Dk * Dv; j++)
                M[j] *= exp(g);
            for (int j = 0; j < Dv; j++) { /* u = beta (v - M^T k) */
                double sk = 0.0;
                for (int i = 0; i < Dk; i++)
                    sk += M[(size_t)i * Dv + j] * k[i];
                u[j] = beta * (v[j] - sk);
            }
            for (int i = 0; i < Dk; i++) /* M += k u^T */
                for (int j = 0; j < Dv; j++)
                    M[(size_t)i * Dv + j] += k[i] * u[j];
            for (int j = 0; j < Dv; j++) { /* out = M^T q */
                double o = 0.0;
                for (int i = 0; i < Dk; i++)
                    o += M[(size_t)i * Dv + j] * q[i];
                out[(size_t)t * Hv * Dv + (size_t)h * Dv + j] = (float)o;
            }
        }
        if (wr[t] >= 0)
            for (size_t j = 0; j < SS; j++)
                st[(size_t)wr[t] * SS + j] = (float)S[j];
    }
done:
    free(S);
    free(q);
    free(k);
    free(u);
}
