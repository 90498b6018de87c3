/* quant.cl: activation columns to 8-bit blocks for the integer-dot
 * mat-vecs (cl/matmul_q8.cl; host: src/ops/matmul_q8.c; C reference:
 * src/ref/q8act_ref.c, the same operations, bit for bit).
 * quant_q8: work-item (b, c) quantizes block b (elements [32 b, 32 b + 32))
 * of column c of x (n_in floats at x_off + c n_in; n_in % 32 == 0):
 *   amax = max_k |x_k|;  d = amax / 127 (IEEE division);
 *   q_k = rint(x_k / d) (nearest even), clamped to [-127, 127]; d == 0
 *   (an all-zero block) gives q_k = 0.
 * Output in one byte buffer xq: column c's q at xq + c n_in (char) in the
 * pair order of cl/matmul_q8.cl (blocks 2t, 2t + 1 as their elements
 * [0, 16) of each, then [16, 32) of each; an odd last block as it is), d of
 * (c, b) at float index c nb + b of xq + d_off (bytes, 4-aligned), nb =
 * n_in / 32.
 * s_off != 0 (bytes, 4-aligned): also the sums of q (exact ints, for the
 * 4-bit path's K-quants, src/ops/matmul_i4.c): int index c nb + b of xq +
 * s_off the whole block's, n_cols nb + c nb + b its elements [0, 16). */
__kernel void quant_q8(__global const float *x, uint x_off, uint n_in, uint n_cols, __global char *xq,
                       uint d_off, uint s_off)
{
    const uint b = get_global_id(0), c = get_global_id(1), nb = n_in / 32;
    if (b >= nb || c >= n_cols)
        return;
    __global const float *xc = x + x_off + (size_t)c * n_in;
    const float16 lo = vload16(2 * b, xc), hi = vload16(2 * b + 1, xc);
    const float16 m = fmax(fabs(lo), fabs(hi));
    const float8 m8 = fmax(m.lo, m.hi);
    const float4 m4 = fmax(m8.lo, m8.hi);
    const float amax = fmax(fmax(m4.x, m4.y), fmax(m4.z, m4.w));
    const float d = amax / 127.0f;
    char16 ql = (char16)0, qh = (char16)0;
    if (d != 0.0f) {
        ql = convert_char16(clamp(convert_int16_rte(lo / d), -127, 127));
        qh = convert_char16(clamp(convert_int16_rte(hi / d), -127, 127));
    }
    __global char *qc = xq + (size_t)c * n_in;
    const bool lone = (nb & 1) && b == nb - 1;
    const uint at = lone ? 32 * b : 64 * (b / 2) + 16 * (b & 1); /* bytes: the chunk of elements [0, 16) */
    vstore16(ql, 0, qc + at);
    vstore16(qh, 0, qc + at + (lone ? 16 : 32));
    ((__global float *)(xq + d_off))[(size_t)c * nb + b] = d;
    if (s_off) {
        const short8 l8 = convert_short8(ql.lo) + convert_short8(ql.hi);
        const short8 h8 = convert_short8(qh.lo) + convert_short8(qh.hi);
        const short4 l4 = l8.lo + l8.hi, h4 = h8.lo + h8.hi;
        const int sl = (int)l4.x + (int)l4.y + (int)l4.z + (int)l4.w;
        const int sh = (int)h4.x + (int)h4.y + (int)h4.z + (int)h4.w;
        __global int *s = (__global int *)(xq + s_off);
        s[(size_t)c * nb + b] = sl + sh;
        s[(size_t)(n_cols + c) * nb + b] = sl;
    }
}
