/* i4_ref.c: see i4_ref.h. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "base/common.h"
#include "gguf/quant.h"
#include "ref/i4_ref.h"
#include "ref/q8act_ref.h"

/* I and xs of block b of a column: sum of w_k q_k and of q_k over the 32 k
 * (nib: the 32 nibbles in element order, off: subtracted from each) */
static void block_sums(const int nib[32], int off, const int8_t *qc, uint32_t nb, uint32_t b, int *I, int *xs)
{
    int s = 0, x = 0;
    for (uint32_t k = 0; k < 32; k++) {
        const int q = qc[cs_q8_pos(nb, b, k)];
        s += (nib[k] - off) * q;
        x += q;
    }
    *I = s;
    *xs = x;
}

static float row_q4_0(const unsigned char *row, uint32_t nb, const int8_t *qc, const float *dc)
{
    float acc = 0.0f;
    for (uint32_t b = 0; b < nb; b++) {
        const unsigned char *blk = row + (size_t)b * 18;
        uint16_t h;
        memcpy(&h, blk, 2);
        int nib[32], I, xs;
        for (int l = 0; l < 16; l++) {
            nib[l] = blk[2 + l] & 15;
            nib[l + 16] = blk[2 + l] >> 4;
        }
        block_sums(nib, 8, qc, nb, b, &I, &xs);
        acc = fmaf((float)I, cs_f16_to_f32(h) * dc[b], acc);
    }
    return acc;
}

static float row_q4_K(const unsigned char *row, uint32_t nb, const int8_t *qc, const float *dc)
{
    float acc = 0.0f;
    for (uint32_t s = 0; s < nb / 8; s++) {
        const unsigned char *blk = row + (size_t)s * 144;
        uint16_t h[2];
        memcpy(h, blk, 4);
        const float d = cs_f16_to_f32(h[0]), dmin = cs_f16_to_f32(h[1]);
        for (int u = 0; u < 8; u++) {
            uint8_t sc, mn;
            cs_k4_scale_min(u, blk + 4, &sc, &mn);
            const unsigned char *q = blk + 16 + 32 * (u / 2);
            const int sh = 4 * (u % 2);
            int nib[32], I, xs;
            for (int l = 0; l < 32; l++)
                nib[l] = (q[l] >> sh) & 15;
            const uint32_t b = 8 * s + (uint32_t)u;
            block_sums(nib, 0, qc, nb, b, &I, &xs);
            const float dx = dc[b];
            acc = fmaf((float)I, (d * (float)sc) * dx, acc);
            acc = fmaf(dmin * (float)mn, -(dx * (float)xs), acc);
        }
    }
    return acc;
}

int cs_ref_matmul_i4(uint32_t type, const void *w, uint32_t n_in, uint32_t n_out, const int8_t *q, const float *d,
                     uint32_t n_cols, float *y, char *err, size_t errlen)
{
    const bool k = type == CS_TYPE_Q4_K;
    if ((type != CS_TYPE_Q4_0 && !k) || n_in == 0 || n_in % (k ? 256 : 32))
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "i4 reference: type %s with rows of %u",
                      cs_type_name(type), n_in);
    const uint32_t nb = n_in / 32;
    const size_t rb = k ? (size_t)n_in / 256 * 144 : (size_t)nb * 18;
    for (uint32_t c = 0; c < n_cols; c++)
        for (uint32_t r = 0; r < n_out; r++) {
            const unsigned char *row = (const unsigned char *)w + r * rb;
            const int8_t *qc = q + (size_t)c * n_in;
            const float *dc = d + (size_t)c * nb;
            y[(size_t)c * n_out + r] = k ? row_q4_K(row, nb, qc, dc) : row_q4_0(row, nb, qc, dc);
        }
    return CLSPEC_OK;
}
