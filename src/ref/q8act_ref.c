/* q8act_ref.c: see q8act_ref.h. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "base/common.h"
#include "gguf/quant.h"
#include "ref/q8act_ref.h"

size_t cs_q8_pos(uint32_t nb, uint32_t b, uint32_t k)
{
    if ((nb & 1) && b == nb - 1)
        return 32 * (size_t)b + k; /* a lone last block as it is */
    return 64 * (size_t)(b / 2) + 16 * (b & 1) + (k < 16 ? k : 16 + k);
}

void cs_ref_quant_q8(const float *x, uint32_t n_in, uint32_t n_cols, int8_t *q, float *d)
{
    const uint32_t nb = n_in / 32;
    for (uint32_t c = 0; c < n_cols; c++)
        for (uint32_t b = 0; b < nb; b++) {
            const float *xb = x + (size_t)c * n_in + 32 * b;
            float amax = 0.0f;
            for (int k = 0; k < 32; k++)
                amax = fmaxf(amax, fabsf(xb[k]));
            const float db = amax / 127.0f;
            int8_t *qc = q + (size_t)c * n_in;
            for (int k = 0; k < 32; k++) {
                float v = db != 0.0f ? rintf(xb[k] / db) : 0.0f;
                v = v < -127.0f ? -127.0f : v > 127.0f ? 127.0f : v;
                qc[cs_q8_pos(nb, b, (uint32_t)k)] = (int8_t)v;
            }
            d[(size_t)c * nb + b] = db;
        }
}

/* signed integer weights and the float scale of block b of a row */
static float weight_block(uint32_t type, const unsigned char *row, uint32_t b, int w[32])
{
    uint16_t h;
    if (type == CS_TYPE_Q4_0) {
        const unsigned char *p = row + (size_t)b * 18;
        memcpy(&h, p, 2);
        for (int l = 0; l < 16; l++) {
            w[l] = (p[2 + l] & 15) - 8;
            w[l + 16] = (p[2 + l] >> 4) - 8;
        }
    } else {
        const unsigned char *p = row + (size_t)b * 34;
        memcpy(&h, p, 2);
        for (int l = 0; l < 32; l++)
            w[l] = (int8_t)p[2 + l];
    }
    return cs_f16_to_f32(h);
}

int cs_ref_matmul_q8(uint32_t type, const void *w, uint32_t n_in, uint32_t n_out, const int8_t *q,
                     const float *d, uint32_t n_cols, float *y, char *err, size_t errlen)
{
    if (type != CS_TYPE_Q4_0 && type != CS_TYPE_Q8_0)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "matmul_q8 reference: type %s", cs_type_name(type));
    if (n_in == 0 || n_in % 32)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "matmul_q8 reference: n_in %u", n_in);
    const uint32_t nb = n_in / 32, np = (nb + 1) / 2;
    const size_t row_bytes = (size_t)nb * (type == CS_TYPE_Q4_0 ? 18 : 34);
    for (uint32_t c = 0; c < n_cols; c++)
        for (uint32_t r = 0; r < n_out; r++) {
            const unsigned char *row = (const unsigned char *)w + r * row_bytes;
            const int8_t *qc = q + (size_t)c * n_in;
            const float *dc = d + (size_t)c * nb;
            float acc[16] = {0};
            for (uint32_t t = 0; t < np; t++) {
                int wv[2][32] = {{0}}, wpo[64], xpo[64] = {0}; /* weights by block, then both in pair order */
                float s[2] = {0.0f, 0.0f};
                const int lone = 2 * t + 1 >= nb;
                for (uint32_t h = 0; h < (lone ? 1u : 2u); h++)
                    s[h] = weight_block(type, row, 2 * t + h, wv[h]) * dc[2 * t + h];
                for (int p = 0; p < 64; p++) {
                    const int k = p / 16, i = p % 16, blk = k & 1, e = i + 16 * (k >> 1);
                    wpo[p] = wv[blk][e];
                    if (!lone)
                        xpo[p] = qc[64 * t + p];
                    else if (blk == 0)
                        xpo[p] = qc[64 * t + e];
                }
                for (int j = 0; j < 16; j++) {
                    int i = 0;
                    for (int e = 4 * j; e < 4 * j + 4; e++)
                        i += wpo[e] * xpo[e];
                    acc[j] = fmaf((float)i, s[(j / 4) & 1], acc[j]);
                }
            }
            float a[8], b4[4];
            for (int i = 0; i < 8; i++)
                a[i] = acc[i] + acc[i + 8];
            for (int i = 0; i < 4; i++)
                b4[i] = a[i] + a[i + 4];
            y[(size_t)c * n_out + r] = (b4[0] + b4[1]) + (b4[2] + b4[3]);
        }
    return CLSPEC_OK;
}
