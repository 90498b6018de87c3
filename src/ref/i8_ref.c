/* i8_ref.c: see i8_ref.h. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "base/common.h"
#include "gguf/quant.h"
#include "ref/i8_ref.h"
#include "ref/q8act_ref.h"

int cs_i8_type_ok(uint32_t type, uint32_t n_in)
{
    if (type == CS_TYPE_Q8_0)
        return n_in > 0 && n_in % 32 == 0;
    if (type == CS_TYPE_Q6_K || type == CS_TYPE_Q5_K)
        return n_in > 0 && n_in % 256 == 0;
    return 0;
}

void cs_i8_block(uint32_t type, const uint8_t *row, uint32_t b, struct cs_i8_blk *o)
{
    uint16_t h;
    o->dmin = 0.0f;
    o->m = 0;
    if (type == CS_TYPE_Q5_K) {
        /* q5_K (176 bytes: half d, dmin; scales[12]; qh[32]; qs[128]):
         * sub-block b % 8 = j: element l = nibble j % 2 of qs[32 (j / 2) + l]
         * | bit j of qh[l] << 4 */
        const uint8_t *p = row + (size_t)(b / 8) * 176;
        const uint32_t j = b % 8;
        memcpy(&h, p, 2);
        o->d = cs_f16_to_f32(h);
        memcpy(&h, p + 2, 2);
        o->dmin = cs_f16_to_f32(h);
        uint8_t sc, m;
        cs_k4_scale_min((int)j, p + 4, &sc, &m);
        o->sc[0] = o->sc[1] = (int8_t)sc;
        o->m = m;
        for (uint32_t l = 0; l < 32; l++)
            o->w[l] = (int8_t)(((p[48 + 32 * (j / 2) + l] >> (4 * (j % 2))) & 15) | (((p[16 + l] >> j) & 1) << 4));
        return;
    }
    if (type == CS_TYPE_Q8_0) {
        const uint8_t *p = row + (size_t)b * 34;
        memcpy(&h, p, 2);
        o->d = cs_f16_to_f32(h);
        o->sc[0] = o->sc[1] = 1;
        memcpy(o->w, p + 2, 32);
        return;
    }
    /* q6_K (210 bytes: ql[128], qh[64], int8 scales[16], half d): element e
     * of the super-block: half hh = e / 128, g = (e % 128) / 32, l = e % 32;
     * low 4 bits in ql[64 hh + 32 (g & 1) + l] >> 4 (g >> 1), high 2 bits in
     * qh[32 hh + l] >> 2 g; scale sc[e / 16] */
    const uint8_t *p = row + (size_t)(b / 8) * 210;
    memcpy(&h, p + 208, 2);
    o->d = cs_f16_to_f32(h);
    const uint32_t e0 = 32 * (b % 8);
    o->sc[0] = (int8_t)p[192 + e0 / 16];
    o->sc[1] = (int8_t)p[192 + e0 / 16 + 1];
    for (uint32_t k = 0; k < 32; k++) {
        const uint32_t e = e0 + k, hh = e / 128, g = (e % 128) / 32, l = e % 32;
        const int lo = (p[64 * hh + 32 * (g & 1) + l] >> (4 * (g >> 1))) & 15;
        const int hi = (p[128 + 32 * hh + l] >> (2 * g)) & 3;
        o->w[k] = (int8_t)((lo | (hi << 4)) - 32);
    }
}

int cs_ref_matmul_i8(uint32_t type, const void *w, uint32_t n_in, uint32_t n_out, const int8_t *q,
                     const float *d, uint32_t n_cols, float *y, char *err, size_t errlen)
{
    if (!cs_i8_type_ok(type, n_in))
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "ref matmul_i8: type %s with n_in %u",
                      cs_type_name(type), n_in);
    uint64_t rb;
    cs_row_bytes(type, n_in, &rb);
    const uint32_t nb = n_in / 32;
    for (uint32_t r = 0; r < n_out; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * rb;
        for (uint32_t c = 0; c < n_cols; c++) {
            const int8_t *qc = q + (size_t)c * n_in;
            float acc = 0.0f;
            for (uint32_t b = 0; b < nb; b++) {
                struct cs_i8_blk k;
                cs_i8_block(type, row, b, &k);
                int32_t half[2] = {0, 0}, S = 0;
                for (uint32_t e = 0; e < 32; e++) {
                    half[e / 16] += (int32_t)k.w[e] * qc[cs_q8_pos(nb, b, e)];
                    S += qc[cs_q8_pos(nb, b, e)];
                }
                const int32_t J = k.sc[0] * half[0] + k.sc[1] * half[1];
                const float dx = d[(size_t)c * nb + b];
                acc = fmaf((float)J, k.d * dx, acc);
                if (type == CS_TYPE_Q5_K) /* the mins: - dmin m sum(x) */
                    acc = fmaf((float)(k.m * S), -(k.dmin * dx), acc);
            }
            y[(size_t)c * n_out + r] = acc;
        }
    }
    return CLSPEC_OK;
}
