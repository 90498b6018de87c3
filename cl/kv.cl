/* kv.cl: writes rows of K and V (f32, after RoPE) into the KV cache cells of
 * one layer, and re-rotates cached K rows by a position delta (seq_add).
 * Cache types (-DKV_TK, -DKV_TV), the row layout and every conversion are
 * the KV-row codec of cl/kvcodec.cl, included here (its C twin:
 * cs_kv_quantize_row in src/gguf/quant.c). */

#include "kvcodec.cl"

/* Grid: n_tokens * ceil(row_elems / 32) work-items (padded); each converts
 * up to 32 elements (one block) of K and of V. Token t goes to cell
 * cell_idx[t]; an index outside [0, n_cells) is skipped. */
__kernel void kv_store(__global const float *k, uint k_off, __global const float *v, uint v_off,
                       __global uchar *kc, __global uchar *vc, __global const int *cell_idx,
                       int n_tokens, int row_elems, int n_cells)
{
    int units = (row_elems + 31) / 32;
    int gid = get_global_id(0);
    if (gid >= n_tokens * units)
        return;
    int t = gid / units, u = gid % units;
    int cell = cell_idx[t];
    if (cell < 0 || cell >= n_cells)
        return;
    int e0 = u * 32, n = min(32, row_elems - e0);
    size_t src = (size_t)t * row_elems + (size_t)e0;
    kv_store_unit(KV_TK, kc + (size_t)cell * kv_bytes(KV_TK, row_elems), e0, k + k_off + src, n);
    kv_store_unit(KV_TV, vc + (size_t)cell * kv_bytes(KV_TV, row_elems), e0, v + v_off + src, n);
}

#ifdef HD
#ifndef KV_UNIT
#define KV_UNIT HD
#endif
/* RoPE by a position delta on the K rows of cells[0..n_list) (type KV_TK,
 * row n_kv_head * HD): one work-item per (cell, unit of KV_UNIT elements)
 * reads the unit (dequantized), rotates every pair (i, i + n_rot/2) (neox)
 * or (2i, 2i+1) of each of its KV_UNIT / HD heads by theta_i = delta *
 * freq_scale * freq_base^(-2i/n_rot) as cl/rope.cl does, and writes it back
 * (requantized). A unit is one head, or for q8_0/q4_0 lcm(HD, 32) elements:
 * whole heads and whole blocks, since a head may start inside a block of the
 * row (then the blocks it shares are dequantized, rotated and requantized
 * whole, by one work-item). The row's last unit may be short (a padded
 * row, or n_kv_head * HD not a multiple of KV_UNIT): it holds the whole heads
 * left, and only they are read and rewritten, the padding staying 0. Cells
 * outside [0, n_cells) are skipped. Build with -DHD=<head_dim>
 * -DKV_UNIT=<unit> (a multiple of HD). */
__kernel void kv_shift(__global uchar *kc, __global const int *cells, int n_list, int n_kv_head,
                       int n_cells, int n_rot, int neox, float freq_base, float freq_scale,
                       int delta)
{
    int row_elems = n_kv_head * HD, units = (row_elems + KV_UNIT - 1) / KV_UNIT;
    int gid = get_global_id(0);
    if (gid >= n_list * units)
        return;
    int cell = cells[gid / units], u = gid % units;
    if (cell < 0 || cell >= n_cells)
        return;
    __global uchar *row = kc + (size_t)cell * kv_bytes(KV_TK, (size_t)row_elems);
    int e0 = u * KV_UNIT, n = min(KV_UNIT, row_elems - e0); /* valid: whole heads */
    float x[KV_UNIT];
    for (int i = 0; i < n; i++)
        x[i] = kv_load1(KV_TK, row, e0 + i);
    int half_rot = n_rot / 2;
    for (int i = 0; i < half_rot; i++) {
        float theta = (float)delta * freq_scale * pow(freq_base, -2.0f * (float)i / (float)n_rot);
        float c = cos(theta), s = sin(theta);
        int i0 = neox ? i : 2 * i;
        int i1 = neox ? i + half_rot : 2 * i + 1;
        for (int h = 0; h < n; h += HD) {
            float x0 = x[h + i0], x1 = x[h + i1];
            x[h + i0] = x0 * c - x1 * s;
            x[h + i1] = x0 * s + x1 * c;
        }
    }
    if (KV_QUANT(KV_TK)) {
        for (int b = 0; b < n; b += 32)
            kv_put(KV_TK, row, e0 + b, x + b, min(32, n - b));
    } else {
        kv_put(KV_TK, row, e0, x, n);
    }
}
#endif
