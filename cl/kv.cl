/* kv.cl: writes rows of K and V (f32, after RoPE) into the KV cache cells of
 * one layer, and re-rotates cached K rows by a position delta (seq_add).
 * Cache types are chosen at build time, independently for K and V:
 * -DKV_TK=<ggml type id> -DKV_TV=<ggml type id>, each 0 f32, 1 f16, 30 bf16,
 * 8 q8_0, 2 q4_0. Conversions match src/quant.c cs_quantize_row
 * (round-to-nearest-even for f16/bf16, ggml's reference rounding for
 * q8_0/q4_0). A cache row (one cell) holds n_kv_head * head_dim elements;
 * quantized rows are blocks of 32 along the whole row (as llama.cpp lays out
 * its KV tensors), so a head may start inside a block; a row that is not a
 * whole number of blocks is padded to one (src/quant.c cs_kv_row_bytes), the
 * missing values of its last block stored as 0 and never read back as
 * elements. The type helpers take the type as
 * an argument that is always a build-time constant, so each inlined call
 * folds to one branch. */

#ifndef KV_TK
#define KV_TK 0
#endif
#ifndef KV_TV
#define KV_TV KV_TK
#endif

#define KV_QUANT(T) ((T) == 8 || (T) == 2)
#define KV_BLOCK_BYTES(T) ((T) == 8 ? 34 : 18)

/* Bytes of a row of n elements of type T (block types: padded to whole blocks). */
static size_t kv_bytes(int T, size_t n)
{
    if (T == 0)
        return n * 4;
    if (T == 1 || T == 30)
        return n * 2;
    return (n + 31) / 32 * KV_BLOCK_BYTES(T);
}

static ushort kv_f2bf(float f)
{
    uint u = as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (ushort)((u >> 16) | 64u); /* quiet NaN */
    return (ushort)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* Stores n values of src (private) at element e0 of the row at p; block
 * types store one whole block (e0 % 32 == 0, n <= 32): the values past n
 * (the padding of a row's last block) are taken as 0 and src[n..) is not read. */
static void kv_put(int T, __global uchar *p, int e0, const float *src, int n)
{
    if (T == 0) {
        for (int j = 0; j < n; j++)
            ((__global float *)p)[e0 + j] = src[j];
    } else if (T == 1) {
        for (int j = 0; j < n; j++)
            vstore_half_rte(src[j], e0 + j, (__global half *)p);
    } else if (T == 30) {
        for (int j = 0; j < n; j++)
            ((__global ushort *)p)[e0 + j] = kv_f2bf(src[j]);
    } else if (T == 8) {
        __global uchar *b = p + (e0 / 32) * 34;
        float amax = 0.0f;
        for (int j = 0; j < n; j++)
            amax = fmax(amax, fabs(src[j]));
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        vstore_half_rte(d, 0, (__global half *)b);
        for (int j = 0; j < 32; j++)
            ((__global char *)b)[2 + j] = j < n ? (char)(int)round(src[j] * id) : (char)0;
    } else {
        __global uchar *b = p + (e0 / 32) * 18;
        float amax = 0.0f, mx = 0.0f;
        for (int j = 0; j < n; j++) {
            if (fabs(src[j]) > amax) {
                amax = fabs(src[j]);
                mx = src[j];
            }
        }
        float d = mx / -8.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        vstore_half_rte(d, 0, (__global half *)b);
        for (int j = 0; j < 16; j++) {
            float x0 = j < n ? src[j] : 0.0f, x1 = j + 16 < n ? src[j + 16] : 0.0f;
            int q0 = min(15, (int)(char)(x0 * id + 8.5f));
            int q1 = min(15, (int)(char)(x1 * id + 8.5f));
            b[2 + j] = (uchar)(q0 | (q1 << 4));
        }
    }
}

/* 32 values of src at element e0 of the row at p, type T f32 or f16. */
static void kv_put32(int T, __global uchar *p, int e0, __global const float *src)
{
    for (int h = 0; h < 2; h++) {
        const float16 x = vload16(h, src);
        if (T == 0)
            vstore16(x, e0 / 16 + h, (__global float *)p);
        else
            vstore_half16_rte(x, e0 / 16 + h, (__global half *)p);
    }
}

/* n <= 32 values of src at element e0 (e0 % 32 == 0) of the row at p: whole
 * f32/f16 units as 16-wide vectors (kv_put32), the rest through kv_put. */
static void kv_store_unit(int T, __global uchar *p, int e0, __global const float *src, int n)
{
    if (n == 32 && (T == 0 || T == 1)) {
        kv_put32(T, p, e0, src);
        return;
    }
    float buf[32];
    for (int j = 0; j < n; j++)
        buf[j] = src[j];
    kv_put(T, p, e0, buf, n);
}

/* Element i of the row at p. */
static float kv_get(int T, __global const uchar *p, int i)
{
    if (T == 0)
        return ((__global const float *)p)[i];
    if (T == 1)
        return vload_half(i, (__global const half *)p);
    if (T == 30)
        return as_float((uint)((__global const ushort *)p)[i] << 16);
    if (T == 8) {
        __global const uchar *b = p + (i / 32) * 34;
        return (float)((__global const char *)b)[2 + i % 32] *
               vload_half(0, (__global const half *)b);
    }
    __global const uchar *b = p + (i / 32) * 18;
    int j = i % 32;
    uchar q = b[2 + j % 16];
    int v = j < 16 ? (q & 0x0f) : (q >> 4);
    return (float)(v - 8) * vload_half(0, (__global const half *)b);
}

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
        x[i] = kv_get(KV_TK, row, e0 + i);
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
