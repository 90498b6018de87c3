/* ops_ref.c: plain-C references of the non-matmul ops (see ops_ref.h). */
#include "config.h"

#include "ref/ops_ref.h"
#include "gguf/quant.h"

#include <math.h>

void cs_ref_rmsnorm(const float *x, const float *w, float *y, int n_rows, int n_cols, float eps)
{
    for (int r = 0; r < n_rows; r++) {
        const float *xr = x + (size_t)r * n_cols;
        float *yr = y + (size_t)r * n_cols;
        double ss = 0.0;
        for (int i = 0; i < n_cols; i++)
            ss += (double)xr[i] * xr[i];
        float s = (float)(1.0 / sqrt(ss / n_cols + eps));
        for (int i = 0; i < n_cols; i++)
            yr[i] = w ? xr[i] * s * w[i] : xr[i] * s;
    }
}

void cs_ref_rope(float *x, const int32_t *pos, int n_tokens, int n_head, int head_dim, int n_rot,
                 bool neox, float freq_base, float freq_scale)
{
    int half = n_rot / 2;
    for (int t = 0; t < n_tokens; t++) {
        for (int h = 0; h < n_head; h++) {
            float *row = x + ((size_t)t * n_head + h) * head_dim;
            const float theta_scale = powf(freq_base, -2.0f / (float)n_rot);
            float theta_e = (float)pos[t]; /* pos * theta_scale^i by repeated products, as ggml */
            for (int i = 0; i < half; i++, theta_e *= theta_scale) {
                float theta = freq_scale * theta_e;
                float c = cosf(theta), s = sinf(theta);
                int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
                float x0 = row[i0], x1 = row[i1];
                row[i0] = x0 * c - x1 * s;
                row[i1] = x0 * s + x1 * c;
            }
        }
    }
}

void cs_ref_swiglu(const float *gate, const float *up, float *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

void cs_ref_add(const float *a, const float *b, float *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

void cs_ref_add_bias(float *x, const float *bias, int n_rows, int n_cols)
{
    for (int r = 0; r < n_rows; r++)
        for (int c = 0; c < n_cols; c++)
            x[(size_t)r * n_cols + c] += bias[c];
}

void cs_ref_scale(float *x, size_t n, float s)
{
    for (size_t i = 0; i < n; i++)
        x[i] *= s;
}

void cs_ref_softmax(float *x, int n_rows, int n_cols)
{
    for (int r = 0; r < n_rows; r++) {
        float *xr = x + (size_t)r * n_cols;
        float m = -INFINITY;
        for (int i = 0; i < n_cols; i++)
            m = fmaxf(m, xr[i]);
        double sum = 0.0;
        for (int i = 0; i < n_cols; i++)
            sum += exp((double)xr[i] - m);
        for (int i = 0; i < n_cols; i++)
            xr[i] = (float)(exp((double)xr[i] - m) / sum);
    }
}

static bool visible(int32_t cell_pos, uint64_t cell_seq, int32_t tpos, int32_t tseq, bool causal)
{
    if (cell_pos < 0 || (causal && cell_pos > tpos))
        return false;
    return tseq >= 0 && tseq < 64 && ((cell_seq >> tseq) & 1u);
}

static double dot(const float *a, const float *b, int n)
{
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

void cs_ref_attention(const float *q, const float *k, const float *v, const int32_t *cell_pos,
                      const uint64_t *cell_seq, int n_cells, const int32_t *token_pos,
                      const int32_t *token_seq, int n_tokens, int n_head, int n_kv_head,
                      int head_dim, bool causal, float scale, float *out)
{
    size_t kv_row = (size_t)n_kv_head * head_dim;
    int group = n_head / n_kv_head;
    for (int t = 0; t < n_tokens; t++) {
        for (int h = 0; h < n_head; h++) {
            const float *qr = q + ((size_t)t * n_head + h) * head_dim;
            float *orow = out + ((size_t)t * n_head + h) * head_dim;
            size_t hoff = (size_t)(h / group) * head_dim;
            double m = -INFINITY;
            for (int c = 0; c < n_cells; c++) {
                if (!visible(cell_pos[c], cell_seq[c], token_pos[t], token_seq[t], causal))
                    continue;
                double s = dot(qr, k + c * kv_row + hoff, head_dim) * scale;
                if (s > m)
                    m = s;
            }
            for (int i = 0; i < head_dim; i++)
                orow[i] = 0.0f;
            if (m == -INFINITY)
                continue;
            /* second pass: softmax weights, output in blocks of double accumulators */
            double acc[256];
            for (int i0 = 0; i0 < head_dim; i0 += 256) {
                int nb = head_dim - i0 < 256 ? head_dim - i0 : 256;
                for (int i = 0; i < nb; i++)
                    acc[i] = 0.0;
                double sum = 0.0;
                for (int c = 0; c < n_cells; c++) {
                    if (!visible(cell_pos[c], cell_seq[c], token_pos[t], token_seq[t], causal))
                        continue;
                    double p = exp(dot(qr, k + c * kv_row + hoff, head_dim) * scale - m);
                    sum += p;
                    for (int i = 0; i < nb; i++)
                        acc[i] += p * v[c * kv_row + hoff + i0 + i];
                }
                for (int i = 0; i < nb; i++)
                    orow[i0 + i] = (float)(acc[i] / sum);
            }
        }
    }
}

void cs_ref_round_rows(uint32_t weight_type, float *x, int n_rows, int n_cols)
{
    for (int r = 0; r < n_rows; r++) {
        float *row = x + (size_t)r * n_cols;
        switch (weight_type) {
        case CS_TYPE_F16:
            for (int i = 0; i < n_cols; i++)
                row[i] = cs_f16_to_f32(cs_f32_to_f16(row[i]));
            break;
        case CS_TYPE_BF16:
            for (int i = 0; i < n_cols; i++)
                row[i] = cs_bf16_to_f32(cs_f32_to_bf16(row[i]));
            break;
        case CS_TYPE_Q4_0: case CS_TYPE_Q4_1: case CS_TYPE_Q5_0: case CS_TYPE_Q5_1: case CS_TYPE_Q8_0:
            for (int b = 0; b + 32 <= n_cols; b += 32) {
                float *v = row + b, amax = 0.0f;
                for (int i = 0; i < 32; i++)
                    amax = fmaxf(amax, fabsf(v[i]));
                const volatile float d = cs_f16_to_f32(cs_f32_to_f16(amax / 127.0f));
                const volatile float id = amax != 0.0f ? 127.0f / amax : 0.0f;
                for (int i = 0; i < 32; i++) {
                    const volatile float p = v[i] * id; /* no contraction with what follows */
                    v[i] = d * nearbyintf(p);
                }
            }
            break;
        case CS_TYPE_Q2_K: case CS_TYPE_Q3_K: case CS_TYPE_Q4_K: case CS_TYPE_Q5_K: case CS_TYPE_Q6_K:
            for (int b = 0; b + 256 <= n_cols; b += 256) {
                float *v = row + b, amax = 0.0f, mx = 0.0f;
                for (int i = 0; i < 256; i++)
                    if (fabsf(v[i]) > amax) {
                        amax = fabsf(v[i]);
                        mx = v[i];
                    }
                if (amax == 0.0f)
                    continue;
                const volatile float iscale = -127.0f / mx, d = 1.0f / iscale;
                for (int i = 0; i < 256; i++) {
                    const volatile float p = iscale * v[i];
                    v[i] = d * fminf(nearbyintf(p), 127.0f);
                }
            }
            break;
        default:
            break;
        }
    }
}

void cs_ref_argmax(const float *x, int n_rows, int n_cols, int32_t *out)
{
    for (int r = 0; r < n_rows; r++) {
        const float *xr = x + (size_t)r * (size_t)n_cols;
        int32_t bi = 0;
        for (int i = 1; i < n_cols; i++)
            if (xr[i] > xr[bi] || (isnan(xr[bi]) && !isnan(xr[i])))
                bi = i;
        out[r] = bi;
    }
}

void cs_ref_greedy_accept(const int32_t *am, const int32_t *nxt, int n, int32_t *res)
{
    for (int i = 0; i < n; i++) {
        int j = i;
        while (j < n - 1 && nxt[j] >= 0 && am[j] == nxt[j])
            j++;
        res[2 * i] = j - i;
        res[2 * i + 1] = am[j];
    }
}
