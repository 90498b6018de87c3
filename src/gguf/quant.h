/* quant.h: the ggml tensor type table, plain-C dequantization of every weight
 * type clspec loads (the reference that OpenCL kernels are tested against),
 * and quantization to the types the KV cache and the tests need.
 * Pure functions over caller-owned buffers; no allocation. */
#ifndef CS_QUANT_H
#define CS_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ggml type ids as stored in GGUF tensor infos (values fixed by the format). */
enum cs_type {
    CS_TYPE_F32 = 0,
    CS_TYPE_F16 = 1,
    CS_TYPE_Q4_0 = 2,
    CS_TYPE_Q4_1 = 3,
    CS_TYPE_Q5_0 = 6,
    CS_TYPE_Q5_1 = 7,
    CS_TYPE_Q8_0 = 8,
    CS_TYPE_Q8_1 = 9,
    CS_TYPE_Q2_K = 10,
    CS_TYPE_Q3_K = 11,
    CS_TYPE_Q4_K = 12,
    CS_TYPE_Q5_K = 13,
    CS_TYPE_Q6_K = 14,
    CS_TYPE_Q8_K = 15,
    CS_TYPE_BF16 = 30,
    CS_TYPE_COUNT = 40 /* upper bound of ids we know the name of */
};

struct cs_type_info {
    const char *name;     /* "q4_K", as llama.cpp prints it */
    uint32_t block_elems; /* elements per block (1 for F32/F16/BF16) */
    uint32_t block_bytes; /* bytes per block */
    bool dequant;         /* cs_dequantize_row supports it */
    bool quant;           /* cs_quantize_row supports it */
};

/* NULL for an id that is not a known ggml type (callers report it). */
const struct cs_type_info *cs_type_get(uint32_t type);
/* Name of a type id, "unknown" for an unknown one. */
const char *cs_type_name(uint32_t type);
/* Parses "f16", "Q8_0", ... (case-insensitive); -1 when unknown. */
int cs_type_from_name(const char *name);

/* Bytes of a row of n elements: false if n is not a multiple of the block size
 * or the type is unknown. */
bool cs_row_bytes(uint32_t type, uint64_t n, uint64_t *out);

/* Half and bfloat16 conversions (round-to-nearest-even, NaN preserved). */
float cs_f16_to_f32(uint16_t h);
uint16_t cs_f32_to_f16(float f);
float cs_bf16_to_f32(uint16_t h);
uint16_t cs_f32_to_bf16(float f);

/* Dequantizes n elements (a multiple of the block size) of type from src into
 * dst (n floats). Returns 0, or -1 if the type has no dequantizer. */
int cs_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);

/* The 6-bit scale *d and min *m of sub-block j (0..7) of a Q4_K/Q5_K super-block
 * from its 12 packed scale bytes. */
void cs_k4_scale_min(int j, const uint8_t *scales12, uint8_t *d, uint8_t *m);

/* Quantizes n floats into dst (cs_row_bytes(type, n) bytes). Supported types:
 * F32, F16, BF16, Q8_0, Q4_0 (the same rounding as ggml's reference
 * quantizers), Q4_K, Q5_K, Q6_K (clspec's own min-max fit, see quant.c).
 * Returns 0, or -1 if unsupported. */
int cs_quantize_row(uint32_t type, const float *src, void *dst, int64_t n);

/* KV cache rows (any n >= 0): a row is padded to whole blocks, the missing
 * values of its last block taken as 0. cs_kv_row_bytes: the padded bytes
 * (false for an unknown type or on overflow); cs_kv_quantize_row reads n
 * values of src and writes cs_kv_row_bytes bytes; cs_kv_dequantize_row
 * writes the n valid values. Return 0, or -1 as the row functions above.
 * The host's one KV-row codec (references, tests, kv.c's sizes); its device
 * twin, bit for bit, is cl/kvcodec.cl. */
bool cs_kv_row_bytes(uint32_t type, uint64_t n, uint64_t *out);
int cs_kv_quantize_row(uint32_t type, const float *src, void *dst, int64_t n);
int cs_kv_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);

#endif
