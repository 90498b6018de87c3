/* getrows.cl: embedding gather for every weight type into f32 (decoders in
 * blocks.cl). out row t (n_in floats at out_off + t n_in) = W row ids[ids_off
 * + t]. One launch per weight part: the part holds rows [r0, r0 + n_rows);
 * ids outside [0, n_out) give a row of zeros (written by the launch with
 * r0 == 0). NDRange: (chunks of 32 elements + 1 for a float-type tail, n). */

#define CS_GETROWS(T) \
    __kernel void getrows_##T(__global const uchar *w, uint row_bytes, uint n_in, uint r0, uint n_rows, \
                              uint n_out, __global const int *ids, uint ids_off, uint n, \
                              __global float *out, uint out_off) \
    { \
        const uint s = get_global_id(0), t = get_global_id(1), nsb = n_in / 32; \
        if (t >= n || s > nsb || (s == nsb && nsb * 32 == n_in)) \
            return; \
        const int id = ids[ids_off + t]; \
        __global float *o = out + out_off + (size_t)t * n_in; \
        const uint k0 = s * 32, k1 = min(k0 + 32, n_in); \
        if (id < 0 || (uint)id >= n_out) { \
            if (r0 == 0) \
                for (uint k = k0; k < k1; k++) \
                    o[k] = 0.0f; \
            return; \
        } \
        if ((uint)id < r0 || (uint)id - r0 >= n_rows) \
            return; \
        __global const uchar *wr = w + (size_t)((uint)id - r0) * row_bytes; \
        if (s < nsb) { \
            float16 lo, hi; \
            cs_dq32_##T(wr, s, &lo, &hi); \
            vstore16(lo, 2 * s, o); \
            vstore16(hi, 2 * s + 1, o); \
        } else { \
            for (uint k = k0; k < k1; k++) \
                o[k] = cs_dq1_##T(wr, k); \
        } \
    }

CS_FOR_EACH_WTYPE(CS_GETROWS)
