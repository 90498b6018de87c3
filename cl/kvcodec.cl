/* kvcodec.cl: the one device codec of KV cache rows, included (#include
 * "kvcodec.cl", expanded by the runtime: cs_cl_expand_includes) by the
 * programs that read or write the cache: cl/kv.cl (kv_store, kv_shift) and
 * cl/attention.cl (attn_cpu, attn_cpu_t, attn_gpu). Its plain-C twin is
 * src/gguf/quant.c (cs_kv_quantize_row, cs_kv_dequantize_row, cs_kv_row_bytes),
 * which the references and the tests use; the two agree bit for bit.
 * Cache types are chosen at build time, independently for K and V:
 * -DKV_TK=<ggml type id> -DKV_TV=<ggml type id>, each 0 f32, 1 f16, 30 bf16,
 * 8 q8_0, 2 q4_0. Conversions: round-to-nearest-even for f16/bf16, ggml's
 * reference rounding for q8_0/q4_0. A cache row (one cell) holds n_kv_head *
 * head_dim elements; quantized rows are blocks of 32 along the whole row (as
 * llama.cpp lays out its KV tensors), so a head may start inside a block; a
 * row that is not a whole number of blocks is padded to one, the missing
 * values of its last block stored as 0 and never read back as elements.
 * Every helper takes the type as an argument that is always a build-time
 * constant (KV_TK or KV_TV), so each inlined call folds to one branch. */

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

/* ---- encoding (f32 -> cache type) ---- */

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

/* ---- decoding (cache type -> f32) ---- */

/* Four elements i..i+3 (i % 4 == 0: never straddling a block) of the row
 * (or row segment) at p. */
static float4 kv_load4(int T, __global const uchar *p, int i)
{
    if (T == 0)
        return vload4(0, (__global const float *)p + i);
    if (T == 1)
        return vload_half4(0, (__global const half *)p + i);
    if (T == 30) {
        ushort4 h = vload4(0, (__global const ushort *)p + i);
        return as_float4(convert_uint4(h) << 16);
    }
    if (T == 8) {
        __global const uchar *b = p + (i / 32) * 34;
        float d = vload_half(0, (__global const half *)b);
        char4 q = vload4(0, (__global const char *)b + 2 + (i % 32));
        return convert_float4(q) * d;
    }
    __global const uchar *b = p + (i / 32) * 18;
    float d = vload_half(0, (__global const half *)b);
    int j = i % 32;
    uchar4 q = vload4(0, b + 2 + (j % 16));
    int4 v = j < 16 ? convert_int4(q & (uchar)0x0f) : convert_int4(q >> (uchar)4);
    return convert_float4(v - 8) * d;
}

/* Element i of the row (or row segment) at p. */
static float kv_load1(int T, __global const uchar *p, int i)
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
