/* matmul_ref.c: plain-C matmul and get_rows over GGUF-layout weights. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "gguf/quant.h"
#include "ref/matmul_ref.h"

static int row_size(uint32_t type, uint32_t n_in, uint64_t *rb, char *err, size_t errlen)
{
    const struct cs_type_info *ti = cs_type_get(type);
    if (!ti || !ti->dequant)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "reference: no dequantizer for type %s",
                      cs_type_name(type));
    if (n_in == 0 || !cs_row_bytes(type, n_in, rb))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "reference: %s rows of %u elements", ti->name, n_in);
    return CLSPEC_OK;
}

int cs_ref_matmul(uint32_t type, const void *w, uint32_t n_in, uint32_t n_out, const float *x,
                  uint32_t n_cols, float *y, char *err, size_t errlen)
{
    uint64_t rb;
    int rc = row_size(type, n_in, &rb, err, errlen);
    if (rc != CLSPEC_OK)
        return rc;
    float *row = malloc((size_t)n_in * sizeof *row);
    if (!row)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "reference matmul: out of memory");
    for (uint32_t r = 0; r < n_out; r++) {
        cs_dequantize_row(type, (const unsigned char *)w + r * rb, row, n_in);
        for (uint32_t c = 0; c < n_cols; c++) {
            const float *xc = x + (size_t)c * n_in;
            double acc = 0.0;
            for (uint32_t k = 0; k < n_in; k++)
                acc += (double)row[k] * (double)xc[k];
            y[(size_t)c * n_out + r] = (float)acc;
        }
    }
    free(row);
    return CLSPEC_OK;
}

int cs_ref_get_rows(uint32_t type, const void *w, uint32_t n_in, uint32_t n_out, const int32_t *ids,
                    uint32_t n, float *out, char *err, size_t errlen)
{
    uint64_t rb;
    int rc = row_size(type, n_in, &rb, err, errlen);
    if (rc != CLSPEC_OK)
        return rc;
    for (uint32_t t = 0; t < n; t++) {
        float *o = out + (size_t)t * n_in;
        if (ids[t] < 0 || (uint32_t)ids[t] >= n_out)
            memset(o, 0, (size_t)n_in * sizeof *o);
        else
            cs_dequantize_row(type, (const unsigned char *)w + (uint64_t)ids[t] * rb, o, n_in);
    }
    return CLSPEC_OK;
}
