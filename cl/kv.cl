/* kv.cl: writes rows of K and V (f32, after RoPE) into the KV cache cells of
 * one layer, converting to the cache type chosen at build time with
 * -DKV_T=<ggml type id>: 0 f32, 1 f16, 30 bf16, 8 q8_0, 2 q4_0. Conversions
 * match src/quant.c cs_quantize_row (round-to-nearest-even for f16/bf16,
 * ggml's reference rounding for q8_0/q4_0). A cache row (one cell) holds
 * n_kv_head * head_dim elements; quantized rows are whole blocks of 32. */

#ifndef KV_T
#define KV_T 0
#endif

#if KV_T == 8 || KV_T == 2
#define KV_UNIT 32 /* one work-item per block */
#if KV_T == 8
#define KV_BLOCK_BYTES 34
#else
#define KV_BLOCK_BYTES 18
#endif
#else
#define KV_UNIT 1 /* one work-item per element */
#endif

/* Stores KV_UNIT values of src as unit number `unit` of the cache (an element
 * index for f32/f16/bf16, a block index for q8_0/q4_0). */
static void kv_put(__global uchar *cache, size_t unit, __global const float *src)
{
#if KV_T == 0
    ((__global float *)cache)[unit] = src[0];
#elif KV_T == 1
    vstore_half_rte(src[0], unit, (__global half *)cache);
#elif KV_T == 30
    uint u = as_uint(src[0]);
    ushort h;
    if ((u & 0x7fffffffu) > 0x7f800000u)
        h = (ushort)((u >> 16) | 64u); /* quiet NaN */
    else
        h = (ushort)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    ((__global ushort *)cache)[unit] = h;
#elif KV_T == 8
    __global uchar *b = cache + unit * KV_BLOCK_BYTES;
    float amax = 0.0f;
    for (int j = 0; j < 32; j++)
        amax = fmax(amax, fabs(src[j]));
    float d = amax / 127.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    vstore_half_rte(d, 0, (__global half *)b);
    for (int j = 0; j < 32; j++)
        ((__global char *)b)[2 + j] = (char)(int)round(src[j] * id);
#elif KV_T == 2
    __global uchar *b = cache + unit * KV_BLOCK_BYTES;
    float amax = 0.0f, mx = 0.0f;
    for (int j = 0; j < 32; j++) {
        if (fabs(src[j]) > amax) {
            amax = fabs(src[j]);
            mx = src[j];
        }
    }
    float d = mx / -8.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    vstore_half_rte(d, 0, (__global half *)b);
    for (int j = 0; j < 16; j++) {
        int q0 = min(15, (int)(char)(src[j] * id + 8.5f));
        int q1 = min(15, (int)(char)(src[j + 16] * id + 8.5f));
        b[2 + j] = (uchar)(q0 | (q1 << 4));
    }
#else
#error "kv.cl: unsupported KV_T"
#endif
}

/* Grid: n_tokens * (row_elems / KV_UNIT) work-items (padded). Token t goes
 * to cell cell_idx[t]; an index outside [0, n_cells) is skipped. */
__kernel void kv_store(__global const float *k, uint k_off, __global const float *v, uint v_off,
                       __global uchar *kc, __global uchar *vc, __global const int *cell_idx,
                       int n_tokens, int row_elems, int n_cells)
{
    int units = row_elems / KV_UNIT;
    int gid = get_global_id(0);
    if (gid >= n_tokens * units)
        return;
    int t = gid / units, u = gid % units;
    int cell = cell_idx[t];
    if (cell < 0 || cell >= n_cells)
        return;
    size_t src = (size_t)t * row_elems + (size_t)u * KV_UNIT;
    size_t dst = (size_t)cell * units + u;
    kv_put(kc, dst, k + k_off + src);
    kv_put(vc, dst, v + v_off + src);
}
