/* test-kernels-ops.c: every non-matmul op (src/ops/ops.h) in both kernel
 * families (CPU and GPU, forced per device so both run on PoCL; env
 * CLSPEC_KFAMILY=cpu|gpu restricts to one) on random inputs against the plain-C
 * references (src/ref/ops_ref.h). Error bounds are normalized by the largest
 * reference magnitude; each bound is documented at its use. Per-op timings are
 * printed as TAP comments, never asserted. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "base/common.h"
#include "ops/ops.h"
#include "gguf/quant.h"
#include "ref/ops_ref.h"
#include "clspec/clspec.h"
#include "testutil.h"

static struct cs_cl_dev *g_dev;
static char g_err[CLSPEC_ERRLEN];

static const enum cs_kfamily k_fams[] = {CS_KFAMILY_CPU, CS_KFAMILY_GPU};

static const char *fam_name(enum cs_kfamily f)
{
    return f == CS_KFAMILY_CPU ? "cpu" : "gpu";
}

/* The families to run: both, or the one named by CLSPEC_KFAMILY. */
static bool fam_enabled(enum cs_kfamily f)
{
    const char *e = getenv("CLSPEC_KFAMILY");
    if (!e || !*e)
        return true;
    return strcmp(e, fam_name(f)) == 0;
}

static double now_ms(void)
{
    return cs_now() * 1e3;
}

static cl_mem buf_new(size_t bytes, const void *host)
{
    cl_int e;
    cl_mem m = clCreateBuffer(g_dev->ctx, CL_MEM_READ_WRITE | (host ? CL_MEM_COPY_HOST_PTR : 0),
                              bytes ? bytes : 4, (void *)host, &e);
    assert_int_equal(e, CL_SUCCESS);
    return m;
}

static void buf_read(cl_mem m, size_t bytes, void *host)
{
    assert_int_equal(clEnqueueReadBuffer(g_dev->q, m, CL_TRUE, 0, bytes, host, 0, NULL, NULL),
                     CL_SUCCESS);
}

static void buf_write(cl_mem m, size_t bytes, const void *host)
{
    assert_int_equal(clEnqueueWriteBuffer(g_dev->q, m, CL_TRUE, 0, bytes, host, 0, NULL, NULL),
                     CL_SUCCESS);
}

static void finish(void)
{
    assert_int_equal(clFinish(g_dev->q), CL_SUCCESS);
}

/* Asserts an op call succeeded, showing its message otherwise. */
#define OP_OK(call)                                                                                \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != CLSPEC_OK)                                                                      \
            fail_msg("%s: %s", #call, g_err);                                                      \
    } while (0)

/* Runs call twice, the first time as a warm-up (program build, PoCL's
 * work-group compilation), restoring in-place inputs in between; t0/t1
 * bracket the second run. */
#define TIMED(t0, t1, restore, call)                                                               \
    do {                                                                                           \
        OP_OK(call);                                                                               \
        finish();                                                                                  \
        restore;                                                                                   \
        t0 = now_ms();                                                                             \
        OP_OK(call);                                                                               \
        finish();                                                                                  \
        t1 = now_ms();                                                                             \
    } while (0)

static float *rand_vec(struct tu_rng *r, size_t n, float scale)
{
    float *v = malloc((n ? n : 1) * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++)
        v[i] = tu_rng_normal(r) * scale;
    return v;
}

/* max |a - b| / max(|ref|, floor): the normalized error every bound uses. */
static double norm_err(const float *got, const float *ref, size_t n, double floor)
{
    double e = 0.0, m = floor;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= e)) /* also catches NaN */
            e = isnan(d) ? INFINITY : d;
        if (fabs(ref[i]) > m)
            m = fabs(ref[i]);
    }
    return e / m;
}

static int setup(void **state)
{
    (void)state;
    struct cs_cl_devinfo *list = NULL;
    size_t n = 0, idx;
    if (cs_cl_list(&list, &n, g_err, sizeof g_err) != CLSPEC_OK || n == 0) {
        free(list);
        return 0; /* no device: every test skips */
    }
    if (cs_cl_select(list, n, getenv("CLSPEC_DEVICE"), &idx, g_err, sizeof g_err) != CLSPEC_OK ||
        cs_cl_dev_open(&list[idx], &g_dev, g_err, sizeof g_err) != CLSPEC_OK) {
        fprintf(stderr, "# %s\n", g_err);
        g_dev = NULL;
    } else {
        printf("# device: %s (%s)\n", g_dev->info.name, g_dev->info.platform_name);
    }
    free(list);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (g_dev)
        cs_cl_dev_close(g_dev);
    return 0;
}

#define NEED_DEV()                                                                                 \
    do {                                                                                           \
        if (!g_dev)                                                                                \
            skip();                                                                                \
    } while (0)

/* Defines test NAME running NAME_fam(f) once per enabled kernel family, with
 * the device's family forced to f (the per-device override). */
#define FAM_TEST(name)                                                                             \
    static void name##_fam(enum cs_kfamily f);                                                     \
    static void name(void **state)                                                                 \
    {                                                                                              \
        (void)state;                                                                               \
        NEED_DEV();                                                                                \
        enum cs_kfamily saved = g_dev->info.family;                                                \
        for (size_t i_ = 0; i_ < CS_ARRAY_LEN(k_fams); i_++) {                                     \
            if (!fam_enabled(k_fams[i_]))                                                          \
                continue;                                                                          \
            g_dev->info.family = k_fams[i_];                                                       \
            name##_fam(k_fams[i_]);                                                                \
        }                                                                                          \
        g_dev->info.family = saved;                                                                \
    }                                                                                              \
    static void name##_fam(enum cs_kfamily f)

/* ---- rmsnorm ---- */

FAM_TEST(test_rmsnorm)
{
    static const int shapes[][2] = {{1, 1}, {3, 5}, {7, 64}, {33, 4099}, {16, 4096}};
    struct tu_rng r;
    tu_rng_seed(&r, 11);
    for (size_t s = 0; s < CS_ARRAY_LEN(shapes); s++) {
        int nr = shapes[s][0], nc = shapes[s][1];
        size_t n = (size_t)nr * nc, off = 3; /* a non-zero element offset */
        float *x = rand_vec(&r, n + off, 2.0f), *w = rand_vec(&r, (size_t)nc, 1.0f);
        float *ref = malloc(n * sizeof *ref), *got = malloc(n * sizeof *got);
        assert_non_null(ref);
        assert_non_null(got);
        cl_mem bx = buf_new((n + off) * 4, x), bw = buf_new((size_t)nc * 4, w);
        cl_mem by = buf_new(n * 4, NULL);
        for (int with_w = 0; with_w < 2; with_w++) {
            double t0, t1;
            TIMED(t0, t1, (void)0,
                  cs_op_rmsnorm(g_dev, bx, off, with_w ? bw : NULL, by, 0, nr, nc, 1e-5f, g_err,
                                sizeof g_err));
            buf_read(by, n * 4, got);
            cs_ref_rmsnorm(x + off, with_w ? w : NULL, ref, nr, nc, 1e-5f);
            /* f32 reduction order + sqrt/div ulps: 1e-5 of the largest output */
            double e = norm_err(got, ref, n, 1e-6);
            printf("# rmsnorm %s %dx%d w=%d: %.3f ms (err %.2e)\n", fam_name(f), nr, nc, with_w,
                   t1 - t0, e);
            assert_true(e <= 1e-5);
        }
        clReleaseMemObject(bx);
        clReleaseMemObject(bw);
        clReleaseMemObject(by);
        free(x);
        free(w);
        free(ref);
        free(got);
    }
}

/* ---- softmax ---- */

FAM_TEST(test_softmax)
{
    static const int shapes[][2] = {{1, 1}, {3, 17}, {5, 1000}, {2, 32000}};
    struct tu_rng r;
    tu_rng_seed(&r, 12);
    for (size_t s = 0; s < CS_ARRAY_LEN(shapes); s++) {
        int nr = shapes[s][0], nc = shapes[s][1];
        size_t n = (size_t)nr * nc;
        float *x = rand_vec(&r, n, 5.0f), *got = malloc(n * sizeof *got);
        assert_non_null(got);
        cl_mem bx = buf_new(n * 4, x);
        double t0, t1;
        TIMED(t0, t1, buf_write(bx, n * 4, x),
              cs_op_softmax(g_dev, bx, 0, nr, nc, g_err, sizeof g_err));
        buf_read(bx, n * 4, got);
        cs_ref_softmax(x, nr, nc);
        /* exp ulps and f32 sums: 1e-5 of the largest probability */
        double e = norm_err(got, x, n, 1e-6);
        printf("# softmax %s %dx%d: %.3f ms (err %.2e)\n", fam_name(f), nr, nc, t1 - t0, e);
        assert_true(e <= 1e-5);
        clReleaseMemObject(bx);
        free(x);
        free(got);
    }
}

/* ---- rope ---- */

FAM_TEST(test_rope)
{
    /* n_tokens, n_head, head_dim, n_rot, neox, base, scale */
    static const struct {
        int nt, nh, hd, nrot, neox;
        float base, fs;
    } cases[] = {
        {5, 4, 64, 64, 0, 10000.0f, 1.0f},    {5, 4, 64, 64, 1, 10000.0f, 1.0f},
        {3, 2, 128, 32, 0, 1000000.0f, 0.5f}, {3, 2, 128, 32, 1, 1000000.0f, 0.25f},
        {17, 8, 16, 16, 1, 10000.0f, 1.0f},   {1, 1, 8, 4, 0, 500.0f, 1.0f},
    };
    struct tu_rng r;
    tu_rng_seed(&r, 13);
    for (size_t c = 0; c < CS_ARRAY_LEN(cases); c++) {
        int nt = cases[c].nt, nh = cases[c].nh, hd = cases[c].hd;
        size_t n = (size_t)nt * nh * hd;
        float *x = rand_vec(&r, n, 1.0f), *got = malloc(n * sizeof *got);
        int32_t *pos = malloc((size_t)nt * sizeof *pos);
        assert_non_null(got);
        assert_non_null(pos);
        for (int t = 0; t < nt; t++)
            pos[t] = (int32_t)(tu_rng_u64(&r) % 512);
        pos[0] = 0;
        cl_mem bx = buf_new(n * 4, x), bp = buf_new((size_t)nt * 4, pos);
        struct cs_rope_params p = {cases[c].nrot, cases[c].neox != 0, cases[c].base, cases[c].fs};
        double t0, t1;
        TIMED(t0, t1, buf_write(bx, n * 4, x),
              cs_op_rope(g_dev, bx, 0, bp, nt, nh, hd, &p, g_err, sizeof g_err));
        buf_read(bx, n * 4, got);
        float *orig = malloc(n * sizeof *orig);
        assert_non_null(orig);
        memcpy(orig, x, n * sizeof *x);
        cs_ref_rope(x, pos, nt, nh, hd, p.n_rot, p.neox, p.freq_base, p.freq_scale);
        /* theta up to 511 rad: a 1-ulp difference of pow() moves the phase by
         * ~3e-5, hence 1e-4 of the largest value */
        double e = norm_err(got, x, n, 1e-6);
        printf("# rope %s %s %dx%dx%d rot %d: %.3f ms (err %.2e)\n", fam_name(f),
               p.neox ? "neox" : "normal", nt, nh, hd, p.n_rot, t1 - t0, e);
        assert_true(e <= 1e-4);
        /* dims beyond n_rot untouched, bit for bit */
        for (size_t th = 0; th < (size_t)nt * nh; th++)
            assert_memory_equal(got + th * hd + p.n_rot, orig + th * hd + p.n_rot,
                                (size_t)(hd - p.n_rot) * sizeof(float));
        /* position 0 is the identity */
        assert_true(norm_err(got, orig, (size_t)nh * hd, 1e-6) <= 1e-6);
        clReleaseMemObject(bx);
        clReleaseMemObject(bp);
        free(x);
        free(orig);
        free(got);
        free(pos);
    }
}

/* ---- elementwise ---- */

FAM_TEST(test_eltwise)
{
    struct tu_rng r;
    tu_rng_seed(&r, 14);
    const int nr = 7, nc = 1003;
    const size_t n = (size_t)nr * nc, off = 5;
    float *a = rand_vec(&r, n + off, 3.0f), *b = rand_vec(&r, n + off, 1.0f);
    float *ref = malloc(n * sizeof *ref), *got = malloc(n * sizeof *got);
    assert_non_null(ref);
    assert_non_null(got);
    cl_mem ba = buf_new((n + off) * 4, a), bb = buf_new((n + off) * 4, b);
    cl_mem bo = buf_new(n * 4, NULL);
    double t0, t1, e;

    TIMED(t0, t1, (void)0, cs_op_swiglu(g_dev, ba, off, bb, off, bo, 0, n, g_err, sizeof g_err));
    buf_read(bo, n * 4, got);
    cs_ref_swiglu(a + off, b + off, ref, n);
    e = norm_err(got, ref, n, 1e-6); /* exp ulps: 1e-5 */
    printf("# swiglu %s %zu: %.3f ms (err %.2e)\n", fam_name(f), n, t1 - t0, e);
    assert_true(e <= 1e-5);

    TIMED(t0, t1, (void)0, cs_op_add(g_dev, ba, off, bb, 0, bo, 0, n, g_err, sizeof g_err));
    buf_read(bo, n * 4, got);
    cs_ref_add(a + off, b, ref, n);
    e = norm_err(got, ref, n, 1e-6); /* one rounding, same as the reference: exact */
    printf("# add %s %zu: %.3f ms (err %.2e)\n", fam_name(f), n, t1 - t0, e);
    assert_true(e == 0.0);

    /* in place: bo += bias (first nc values of b) per row */
    memcpy(ref, got, n * sizeof *ref);
    TIMED(t0, t1, buf_write(bo, n * 4, ref),
          cs_op_add_bias(g_dev, bo, 0, bb, nr, nc, g_err, sizeof g_err));
    buf_read(bo, n * 4, got);
    cs_ref_add_bias(ref, b, nr, nc);
    e = norm_err(got, ref, n, 1e-6);
    printf("# add_bias %s %dx%d: %.3f ms (err %.2e)\n", fam_name(f), nr, nc, t1 - t0, e);
    assert_true(e == 0.0);

    TIMED(t0, t1, buf_write(bo, n * 4, got),
          cs_op_scale(g_dev, bo, 0, n, 0.125f, g_err, sizeof g_err));
    buf_read(bo, n * 4, got);
    cs_ref_scale(ref, n, 0.125f);
    e = norm_err(got, ref, n, 1e-6);
    printf("# scale %s %zu: %.3f ms (err %.2e)\n", fam_name(f), n, t1 - t0, e);
    assert_true(e == 0.0);

    /* bad shapes are reported, not crashed on */
    assert_int_equal(cs_op_add_bias(g_dev, bo, 0, bb, 1, 0, g_err, sizeof g_err), CLSPEC_E_INVAL);
    clReleaseMemObject(ba);
    clReleaseMemObject(bb);
    clReleaseMemObject(bo);
    free(a);
    free(b);
    free(ref);
    free(got);
}

/* ---- KV cache ---- */

static const uint32_t k_kv_types[] = {CS_TYPE_F32, CS_TYPE_F16, CS_TYPE_BF16, CS_TYPE_Q8_0,
                                      CS_TYPE_Q4_0};

/* Bytes of a KV cache row of n elements (quantized: padded to whole blocks). */
static size_t row_bytes(uint32_t type, size_t n)
{
    uint64_t b = 0;
    assert_true(cs_kv_row_bytes(type, n, &b));
    return (size_t)b;
}

/* Asserts that the padding of a quantized row of n elements (rb bytes) at p
 * reads back as 0. */
static void assert_pad_zero(uint32_t type, const unsigned char *p, size_t rb, int n)
{
    if (type != CS_TYPE_Q8_0 && type != CS_TYPE_Q4_0)
        return;
    int padded = (int)(rb / (type == CS_TYPE_Q8_0 ? 34 : 18)) * 32;
    float *x = malloc((size_t)padded * sizeof *x);
    assert_non_null(x);
    assert_int_equal(cs_dequantize_row(type, p, x, padded), 0);
    for (int i = n; i < padded; i++)
        assert_true(x[i] == 0.0f);
    free(x);
}

/* A device KV cache filled through cs_op_kv_store from f32 rows k, v
 * (n_cells, row): cell c gets row c, except cells listed as skipped (-1 in
 * the index buffer) keep zeros. */
struct kv_fixture {
    struct cs_kv_view kv;
    float *kdq, *vdq; /* the cache contents read back and dequantized (n_cells, row) */
};

static void kv_fill(struct kv_fixture *fx, uint32_t type, uint32_t type_v, int n_cells,
                    int n_kv_head, int head_dim, const float *k, const float *v,
                    const int32_t *cell_pos, const uint64_t *cell_seq)
{
    int row = n_kv_head * head_dim;
    size_t rb = row_bytes(type, (size_t)row), bytes = rb * (size_t)(n_cells ? n_cells : 1);
    size_t rbv = row_bytes(type_v, (size_t)row), bytes_v = rbv * (size_t)(n_cells ? n_cells : 1);
    struct cs_kv_view *kv = &fx->kv;
    memset(kv, 0, sizeof *kv);
    kv->type_k = type;
    kv->type_v = type_v;
    kv->n_cells = n_cells;
    kv->n_kv_head = n_kv_head;
    kv->head_dim = head_dim;
    unsigned char *zero = calloc(1, CS_MAX(bytes, bytes_v));
    assert_non_null(zero);
    kv->k = buf_new(bytes, zero);
    kv->v = buf_new(bytes_v, zero);
    kv->cell_pos = buf_new((size_t)n_cells * 4, cell_pos);
    kv->cell_seq = buf_new((size_t)n_cells * 8, cell_seq);
    int32_t *idx = malloc((size_t)(n_cells ? n_cells : 1) * sizeof *idx);
    assert_non_null(idx);
    for (int c = 0; c < n_cells; c++)
        idx[c] = c;
    /* v sits at element offset 3 of its buffer */
    float *vpad = calloc((size_t)n_cells * row + 3, sizeof *vpad);
    assert_non_null(vpad);
    memcpy(vpad + 3, v, (size_t)n_cells * row * sizeof *v);
    cl_mem bk = buf_new((size_t)n_cells * row * 4, k);
    cl_mem bv = buf_new(((size_t)n_cells * row + 3) * 4, vpad);
    free(vpad);
    cl_mem bi = buf_new((size_t)n_cells * 4, idx);
    OP_OK(cs_op_kv_store(g_dev, kv, bk, 0, bv, 3, bi, n_cells, g_err, sizeof g_err));
    fx->kdq = malloc((size_t)(n_cells ? n_cells : 1) * row * sizeof(float));
    fx->vdq = malloc((size_t)(n_cells ? n_cells : 1) * row * sizeof(float));
    assert_non_null(fx->kdq);
    assert_non_null(fx->vdq);
    buf_read(kv->k, bytes, zero);
    for (int c = 0; c < n_cells; c++)
        assert_int_equal(cs_kv_dequantize_row(type, zero + rb * c, fx->kdq + (size_t)c * row, row), 0);
    buf_read(kv->v, bytes_v, zero);
    for (int c = 0; c < n_cells; c++)
        assert_int_equal(cs_kv_dequantize_row(type_v, zero + rbv * c, fx->vdq + (size_t)c * row, row),
                         0);
    clReleaseMemObject(bk);
    clReleaseMemObject(bv);
    clReleaseMemObject(bi);
    free(idx);
    free(zero);
}

static void kv_free(struct kv_fixture *fx)
{
    clReleaseMemObject(fx->kv.k);
    clReleaseMemObject(fx->kv.v);
    clReleaseMemObject(fx->kv.cell_pos);
    clReleaseMemObject(fx->kv.cell_seq);
    free(fx->kdq);
    free(fx->vdq);
}

static void test_kv_store(void **state)
{
    (void)state;
    NEED_DEV();
    struct tu_rng r;
    tu_rng_seed(&r, 15);
    /* (kv heads, head_dim): model-sized heads, and the small heads of
     * stories260K (4 x 8: one block per row, shared by 4 heads) and
     * TinyStories-656K (4 x 16: 2 blocks, 2 heads each), and rows that are
     * not whole blocks, padded: 2 x 8 = 16 (the distilled drafter), 1 x 48
     * and 3 x 16 = 48 */
    static const int shapes[][2] = {{2, 64}, {4, 8}, {4, 16}, {2, 8}, {1, 48}, {3, 16}};
    const int n_cells = 40, nt = 6;
    const int32_t cells[6] = {3, 17, 0, 39, -1, 8}; /* -1: skipped */
    for (size_t si = 0; si < CS_ARRAY_LEN(shapes); si++)
    for (size_t ti = 0; ti < CS_ARRAY_LEN(k_kv_types); ti++) {
        const int nkv = shapes[si][0], hd = shapes[si][1], row = nkv * hd;
        uint32_t type = k_kv_types[ti];
        size_t rb = row_bytes(type, (size_t)row);
        float *k = rand_vec(&r, (size_t)nt * row, 2.0f), *v = rand_vec(&r, (size_t)nt * row, 1.0f);
        /* conversion edge cases in both the scalar and the 16-wide store paths:
         * f16 subnormals, a tie to even at 1, the largest finite, overflow, underflow */
        static const float edge[] = {1e-6f, -3e-7f, 1.00048828125f, 65519.0f, 65520.0f, -2.98023224e-8f,
                                     6.1e-5f, -1e5f};
        for (size_t i = 0; i < CS_ARRAY_LEN(edge) && (int)i < row; i++) {
            k[i] = edge[i];
            v[(size_t)row - 1 - i] = edge[i];
        }
        unsigned char *got = malloc(rb * n_cells), *want = malloc(rb * n_cells);
        assert_non_null(got);
        assert_non_null(want);
        memset(want, 0xA5, rb * n_cells);
        struct cs_kv_view kv = {
            type, type, n_cells, nkv, hd, buf_new(rb * n_cells, want), buf_new(rb * n_cells, want),
            NULL, NULL, NULL};
        cl_mem bk = buf_new((size_t)nt * row * 4, k), bv = buf_new((size_t)nt * row * 4, v);
        cl_mem bi = buf_new(sizeof cells, cells);
        double t0, t1;
        TIMED(t0, t1, (void)0,
              cs_op_kv_store(g_dev, &kv, bk, 0, bv, 0, bi, nt, g_err, sizeof g_err));
        for (int pass = 0; pass < 2; pass++) {
            const float *src = pass ? v : k;
            memset(want, 0xA5, rb * n_cells);
            for (int t = 0; t < nt; t++)
                if (cells[t] >= 0)
                    assert_int_equal(
                        cs_kv_quantize_row(type, src + (size_t)t * row, want + rb * cells[t], row), 0);
            buf_read(pass ? kv.v : kv.k, rb * n_cells, got);
            if (type == CS_TYPE_F32 || type == CS_TYPE_F16 || type == CS_TYPE_BF16) {
                /* the same rounding as cs_quantize_row: bit for bit */
                assert_memory_equal(got, want, rb * n_cells);
            } else {
                /* q8_0 / q4_0: the kernel's 1/d may differ from the host's by an
                 * ulp, which can move a value across a rounding boundary: allow
                 * one quantization step per element, and untouched cells exact */
                float *a = malloc((size_t)row * sizeof *a), *b = malloc((size_t)row * sizeof *b);
                assert_non_null(a);
                assert_non_null(b);
                for (int c = 0; c < n_cells; c++) {
                    bool used = false;
                    for (int t = 0; t < nt; t++)
                        used = used || cells[t] == c;
                    if (!used) {
                        assert_memory_equal(got + rb * c, want + rb * c, rb);
                        continue;
                    }
                    cs_kv_dequantize_row(type, got + rb * c, a, row);
                    cs_kv_dequantize_row(type, want + rb * c, b, row);
                    assert_pad_zero(type, got + rb * c, rb, row);
                    for (int j = 0; j < row; j += 32) {
                        int je = j + 32 < row ? j + 32 : row;
                        float amax = 0.0f;
                        for (int i = j; i < je; i++)
                            amax = fmaxf(amax, fabsf(b[i]));
                        float step = amax / (type == CS_TYPE_Q8_0 ? 127.0f : 7.0f);
                        for (int i = j; i < je; i++)
                            assert_true(fabsf(a[i] - b[i]) <= step * 1.01f + 1e-6f);
                    }
                }
                free(a);
                free(b);
            }
        }
        printf("# kv_store %s %d rows of %d x %d: %.3f ms\n", cs_type_name(type), nt, nkv, hd, t1 - t0);
        clReleaseMemObject(kv.k);
        clReleaseMemObject(kv.v);
        clReleaseMemObject(bk);
        clReleaseMemObject(bv);
        clReleaseMemObject(bi);
        free(k);
        free(v);
        free(got);
        free(want);
    }
}

/* ---- attention ---- */

struct att_case {
    const char *name;
    uint32_t type;
    int n_tokens, n_cells, n_head, n_kv_head, head_dim;
    bool causal;
    /* layouts: 0 = one sequence, cells at positions 0..n_cells-1, tokens at the
     * last n_tokens positions; 1 = two sequences interleaved (cells and
     * tokens alternate seq 0/1, each with its own positions, the first 4
     * cells shared by both); 2 = like 0 with cells [n/3, n/2) empty (-1);
     * 3 = like 0 with tokens at positions 0..n_tokens-1. */
    int layout;
    bool mixed;      /* V of type_v (else of type) */
    uint32_t type_v;
};

/* Runs one case in family f; returns the normalized error against the
 * reference over the cache's exact contents (read back, dequantized). If
 * non-NULL, *err_exact gets the error against the reference over the
 * unrounded f32 K/V, *err_nomask the error against a reference that ignores
 * the sequence mask, *err_flip against one with the causal flag flipped. */
static double att_run(const struct att_case *ac, enum cs_kfamily f, struct tu_rng *r,
                      double *err_exact, double *err_nomask, double *err_flip)
{
    int nt = ac->n_tokens, nc = ac->n_cells, nh = ac->n_head, nkv = ac->n_kv_head,
        hd = ac->head_dim;
    size_t row = (size_t)nkv * hd, qn = (size_t)nt * nh * hd;
    float *q = rand_vec(r, qn, 2.0f), *k = rand_vec(r, (size_t)nc * row, 1.0f);
    float *v = rand_vec(r, (size_t)nc * row, 1.0f);
    int32_t *cpos = malloc((size_t)nc * 4), *tpos = malloc((size_t)nt * 4),
            *tseq = malloc((size_t)nt * 4);
    uint64_t *cseq = malloc((size_t)nc * 8), *call = malloc((size_t)nc * 8);
    assert_true(cpos && tpos && tseq && cseq && call);
    if (ac->layout == 1) {
        int next[2] = {0, 0};
        for (int c = 0; c < nc; c++) {
            if (c < 4) { /* shared prefix */
                cpos[c] = c;
                cseq[c] = 3;
                next[0] = next[1] = c + 1;
                continue;
            }
            int s = c % 2;
            cpos[c] = next[s]++;
            cseq[c] = 1ull << s;
        }
        /* tokens: the last nt cells' owners, alternating */
        for (int t = 0; t < nt; t++) {
            int c = nc - nt + t;
            tseq[t] = c < 4 ? 0 : c % 2;
            tpos[t] = cpos[c];
        }
    } else {
        for (int c = 0; c < nc; c++) {
            cpos[c] = c;
            cseq[c] = 1;
            if (ac->layout == 2 && c >= nc / 3 && c < nc / 2)
                cpos[c] = -1;
        }
        for (int t = 0; t < nt; t++) {
            tseq[t] = 0;
            tpos[t] = ac->layout == 3 ? t : nc - nt + t;
        }
    }
    for (int c = 0; c < nc; c++)
        call[c] = ~0ull;

    struct kv_fixture fx;
    kv_fill(&fx, ac->type, ac->mixed ? ac->type_v : ac->type, nc, nkv, hd, k, v, cpos, cseq);
    /* q and out sit at element offsets 7 and 5 of their buffers */
    const size_t q_off = 7, o_off = 5;
    float *qpad = rand_vec(r, q_off + qn, 100.0f);
    memcpy(qpad + q_off, q, qn * sizeof *q);
    cl_mem bq = buf_new((q_off + qn) * 4, qpad), bo = buf_new((o_off + qn) * 4, NULL);
    free(qpad);
    cl_mem btp = buf_new((size_t)nt * 4, tpos), bts = buf_new((size_t)nt * 4, tseq);
    float scale = 1.0f / sqrtf((float)hd);
    finish();
    double t0, t1;
    TIMED(t0, t1, (void)0,
          cs_op_attention(g_dev, &fx.kv, nc, bq, q_off, bo, o_off, btp, bts, nt, nh, ac->causal,
                          scale, g_err, sizeof g_err));
    float *got = malloc(qn * sizeof *got), *ref = malloc(qn * sizeof *ref);
    assert_non_null(got);
    assert_non_null(ref);
    assert_int_equal(
        clEnqueueReadBuffer(g_dev->q, bo, CL_TRUE, o_off * 4, qn * 4, got, 0, NULL, NULL),
        CL_SUCCESS);
    cs_ref_attention(q, fx.kdq, fx.vdq, cpos, cseq, nc, tpos, tseq, nt, nh, nkv, hd, ac->causal,
                     scale, ref);
    double e = norm_err(got, ref, qn, 1e-3);
    if (err_exact) {
        cs_ref_attention(q, k, v, cpos, cseq, nc, tpos, tseq, nt, nh, nkv, hd, ac->causal, scale,
                         ref);
        *err_exact = norm_err(got, ref, qn, 1e-3);
    }
    if (err_nomask) {
        cs_ref_attention(q, fx.kdq, fx.vdq, cpos, call, nc, tpos, tseq, nt, nh, nkv, hd, ac->causal,
                         scale, ref);
        *err_nomask = norm_err(got, ref, qn, 1e-3);
    }
    if (err_flip) {
        cs_ref_attention(q, fx.kdq, fx.vdq, cpos, cseq, nc, tpos, tseq, nt, nh, nkv, hd,
                         !ac->causal, scale, ref);
        *err_flip = norm_err(got, ref, qn, 1e-3);
    }
    printf("# attention %s %s/%s %s: %d tok x %d cells, %d/%d heads, hd %d: %.3f ms (err %.2e)\n",
           fam_name(f), cs_type_name(ac->type), cs_type_name(ac->mixed ? ac->type_v : ac->type),
           ac->name, nt, nc, nh, nkv, hd, t1 - t0, e);
    clReleaseMemObject(bq);
    clReleaseMemObject(bo);
    clReleaseMemObject(btp);
    clReleaseMemObject(bts);
    kv_free(&fx);
    free(q);
    free(k);
    free(v);
    free(cpos);
    free(tpos);
    free(tseq);
    free(cseq);
    free(call);
    free(got);
    free(ref);
    return e;
}

/* Attention over the exact cache contents: f32 online softmax vs a double
 * two-pass reference, 1e-5 of the largest output (floor 1e-3). */
#define ATT_BOUND 1e-5

FAM_TEST(test_attention_decode)
{
    static const int cells[] = {1, 7, 64, 65, 300};
    struct tu_rng r;
    tu_rng_seed(&r, 21);
    for (size_t i = 0; i < CS_ARRAY_LEN(cells); i++) {
        struct att_case ac = {"decode", CS_TYPE_F32, 1, cells[i], 8, 2, 64, true, 0, false, 0};
        assert_true(att_run(&ac, f, &r, NULL, NULL, NULL) <= ATT_BOUND);
    }
}

FAM_TEST(test_attention_prefill)
{
    struct tu_rng r;
    tu_rng_seed(&r, 22);
    struct att_case a = {"prefill", CS_TYPE_F32, 19, 19, 8, 2, 64, true, 0, false, 0};
    assert_true(att_run(&a, f, &r, NULL, NULL, NULL) <= ATT_BOUND);
    struct att_case b = {"prefill", CS_TYPE_F32, 70, 70, 4, 4, 16, true, 0, false, 0};
    assert_true(att_run(&b, f, &r, NULL, NULL, NULL) <= ATT_BOUND);
    /* model-sized: 32 heads over 8 kv heads, head_dim 128 */
    struct att_case d = {"prefill 7B-like", CS_TYPE_F32, 64, 64, 32, 8, 128, true, 0, false, 0};
    assert_true(att_run(&d, f, &r, NULL, NULL, NULL) <= ATT_BOUND);
    struct att_case e = {"decode 7B-like", CS_TYPE_F32, 1, 1024, 32, 8, 128, true, 0, false, 0};
    assert_true(att_run(&e, f, &r, NULL, NULL, NULL) <= ATT_BOUND);
    /* a continuation: 9 new tokens after 40 cached positions */
    struct att_case c = {"prefill+cache", CS_TYPE_F32, 9, 49, 4, 1, 128, true, 0, false, 0};
    assert_true(att_run(&c, f, &r, NULL, NULL, NULL) <= ATT_BOUND);
}

FAM_TEST(test_attention_two_seqs)
{
    struct tu_rng r;
    tu_rng_seed(&r, 23);
    double nomask = 0.0;
    struct att_case a = {"2 seqs", CS_TYPE_F32, 6, 50, 4, 2, 64, true, 1, false, 0};
    assert_true(att_run(&a, f, &r, NULL, &nomask, NULL) <= ATT_BOUND);
    /* the sequence mask matters here: ignoring it changes the result */
    assert_true(nomask > 1e-2);
    struct att_case b = {"2 seqs decode", CS_TYPE_F32, 2, 31, 2, 2, 64, true, 1, false, 0};
    assert_true(att_run(&b, f, &r, NULL, &nomask, NULL) <= ATT_BOUND);
    assert_true(nomask > 1e-2);
}

FAM_TEST(test_attention_noncausal)
{
    struct tu_rng r;
    tu_rng_seed(&r, 24);
    /* tokens at early positions see every cell: compare against the
     * non-causal reference, and check that causal masking would differ */
    double flip = 0.0;
    struct att_case a = {"non-causal", CS_TYPE_F32, 5, 40, 4, 2, 64, false, 3, false, 0};
    assert_true(att_run(&a, f, &r, NULL, NULL, &flip) <= ATT_BOUND);
    assert_true(flip > 1e-2);
    struct att_case b = {"non-causal empty", CS_TYPE_F32, 8, 33, 4, 4, 16, false, 2, false, 0};
    assert_true(att_run(&b, f, &r, NULL, NULL, NULL) <= ATT_BOUND);
}

FAM_TEST(test_attention_shapes)
{
    static const int hds[] = {8, 16, 64, 128};
    static const int ratios[] = {1, 2, 4};
    struct tu_rng r;
    tu_rng_seed(&r, 25);
    for (size_t i = 0; i < CS_ARRAY_LEN(hds); i++)
        for (size_t j = 0; j < CS_ARRAY_LEN(ratios); j++) {
            struct att_case a = {"shape", CS_TYPE_F32, 3, 21, 2 * ratios[j], 2, hds[i], true, 0, false, 0};
            assert_true(att_run(&a, f, &r, NULL, NULL, NULL) <= ATT_BOUND);
        }
    /* ratio 7 (qwen2-style 28/4): the CPU family splits it into chunks 4 + 3 */
    struct att_case g = {"GQA 7", CS_TYPE_F32, 3, 37, 14, 2, 64, true, 0, false, 0};
    assert_true(att_run(&g, f, &r, NULL, NULL, NULL) <= ATT_BOUND);
    /* empty cells (pos -1) in the middle of a causal prefix */
    struct att_case e = {"empty cells", CS_TYPE_F32, 4, 90, 4, 2, 64, true, 2, false, 0};
    assert_true(att_run(&e, f, &r, NULL, NULL, NULL) <= ATT_BOUND);
}

FAM_TEST(test_attention_kv_types)
{
    struct tu_rng r;
    tu_rng_seed(&r, 26);
    for (size_t ti = 1; ti < CS_ARRAY_LEN(k_kv_types); ti++) {
        uint32_t type = k_kv_types[ti];
        double exact = 0.0;
        struct att_case a = {"decode", type, 1, 130, 8, 2, 64, true, 2, false, 0};
        assert_true(att_run(&a, f, &r, &exact, NULL, NULL) <= ATT_BOUND);
        struct att_case b = {"prefill", type, 12, 12, 4, 4, 64, true, 0, false, 0};
        double exact2 = 0.0;
        assert_true(att_run(&b, f, &r, &exact2, NULL, NULL) <= ATT_BOUND);
        /* against unrounded f32 K/V: f16 within its rounding (2^-11
         * relative per value: 4e-3 of the output), bf16 (2^-8) 3e-2;
         * q8_0/q4_0 only loosely (they are lossy by design) */
        double bound = type == CS_TYPE_F16    ? 4e-3
                       : type == CS_TYPE_BF16 ? 3e-2
                       : type == CS_TYPE_Q8_0 ? 6e-2
                                              : 0.5;
        printf("# attention %s %s vs f32 K/V: err %.2e / %.2e (bound %.0e)\n", fam_name(f),
               cs_type_name(type), exact, exact2, bound);
        assert_true(exact <= bound);
        assert_true(exact2 <= bound);
    }
}

/* Against unrounded f32 K/V: the bound of test_attention_kv_types per type. */
static double kv_type_bound(uint32_t t)
{
    return t == CS_TYPE_F32    ? ATT_BOUND
           : t == CS_TYPE_F16  ? 4e-3
           : t == CS_TYPE_BF16 ? 3e-2
           : t == CS_TYPE_Q8_0 ? 6e-2
                               : 0.5;
}

/* Every (K type, V type) pair: exact against the cache contents, and against
 * the unrounded K/V within the looser bound of the two types. */
FAM_TEST(test_attention_kv_pairs)
{
    struct tu_rng r;
    tu_rng_seed(&r, 27);
    for (size_t i = 0; i < CS_ARRAY_LEN(k_kv_types); i++)
        for (size_t j = 0; j < CS_ARRAY_LEN(k_kv_types); j++) {
            uint32_t tk = k_kv_types[i], tv = k_kv_types[j];
            double exact = 0.0;
            struct att_case a = {"pair", tk, 3, 70, 4, 2, 64, true, 2, true, tv};
            assert_true(att_run(&a, f, &r, &exact, NULL, NULL) <= ATT_BOUND);
            assert_true(exact <= fmax(kv_type_bound(tk), kv_type_bound(tv)));
        }
}

/* Small heads (stories260K: 4 kv heads of 8, TinyStories-656K: 4 of 16), where
 * q8_0/q4_0 blocks run across heads and a head starts inside a block: every
 * (K type, V type) pair with a quantized side, decode and prefill, exact
 * against the cache contents and within the type bound of the unrounded K/V. */
FAM_TEST(test_attention_small_heads)
{
    static const int hds[] = {8, 16};
    struct tu_rng r;
    tu_rng_seed(&r, 31);
    for (size_t hi = 0; hi < CS_ARRAY_LEN(hds); hi++)
        for (size_t i = 0; i < CS_ARRAY_LEN(k_kv_types); i++)
            for (size_t j = 0; j < CS_ARRAY_LEN(k_kv_types); j++) {
                uint32_t tk = k_kv_types[i], tv = k_kv_types[j];
                bool qk = tk == CS_TYPE_Q8_0 || tk == CS_TYPE_Q4_0;
                bool qv = tv == CS_TYPE_Q8_0 || tv == CS_TYPE_Q4_0;
                if (!qk && !qv)
                    continue;
                double exact = 0.0, exact2 = 0.0;
                struct att_case a = {"small decode", tk, 1, 67, 8, 4, hds[hi], true, 2, true, tv};
                assert_true(att_run(&a, f, &r, &exact, NULL, NULL) <= ATT_BOUND);
                struct att_case b = {"small prefill", tk, 9, 40, 8, 4, hds[hi], true, 1, true, tv};
                assert_true(att_run(&b, f, &r, &exact2, NULL, NULL) <= ATT_BOUND);
                double bound = fmax(kv_type_bound(tk), kv_type_bound(tv));
                assert_true(exact <= bound);
                assert_true(exact2 <= bound);
            }
}

/* Cell rows that are not whole blocks (padded with 0 to whole blocks): 2 x 8 =
 * 16 values (the distilled drafter), 1 x 48 and 3 x 16 = 48 values; every
 * (K type, V type) pair with a quantized side, decode and prefill, exact
 * against the cache contents and within the type bound of the unrounded K/V. */
FAM_TEST(test_attention_padded_rows)
{
    static const int shapes[][3] = {{2, 8, 4}, {1, 48, 2}, {3, 16, 6}}; /* kv heads, head_dim, heads */
    struct tu_rng r;
    tu_rng_seed(&r, 33);
    for (size_t si = 0; si < CS_ARRAY_LEN(shapes); si++)
        for (size_t i = 0; i < CS_ARRAY_LEN(k_kv_types); i++)
            for (size_t j = 0; j < CS_ARRAY_LEN(k_kv_types); j++) {
                uint32_t tk = k_kv_types[i], tv = k_kv_types[j];
                bool qk = tk == CS_TYPE_Q8_0 || tk == CS_TYPE_Q4_0;
                bool qv = tv == CS_TYPE_Q8_0 || tv == CS_TYPE_Q4_0;
                if (!qk && !qv)
                    continue;
                const int nkv = shapes[si][0], hd = shapes[si][1], nh = shapes[si][2];
                double exact = 0.0, exact2 = 0.0;
                struct att_case a = {"padded decode", tk, 1, 67, nh, nkv, hd, true, 2, true, tv};
                assert_true(att_run(&a, f, &r, &exact, NULL, NULL) <= ATT_BOUND);
                struct att_case b = {"padded prefill", tk, 9, 40, nh, nkv, hd, true, 1, true, tv};
                assert_true(att_run(&b, f, &r, &exact2, NULL, NULL) <= ATT_BOUND);
                double bound = fmax(kv_type_bound(tk), kv_type_bound(tv));
                assert_true(exact <= bound);
                assert_true(exact2 <= bound);
            }
}

/* Runs attention once over kv (its cells [0, n_used)) for nt query rows. */
static void att_once(const struct cs_kv_view *kv, int n_used, const float *q, const int32_t *tpos,
                     const int32_t *tseq, int nt, int nh, float *out)
{
    size_t qn = (size_t)nt * nh * kv->head_dim;
    cl_mem bq = buf_new(qn * 4, q), bo = buf_new(qn * 4, NULL);
    cl_mem bp = buf_new((size_t)nt * 4, tpos), bs = buf_new((size_t)nt * 4, tseq);
    OP_OK(cs_op_attention(g_dev, kv, n_used, bq, 0, bo, 0, bp, bs, nt, nh, true, 0.125f, g_err,
                          sizeof g_err));
    buf_read(bo, qn * 4, out);
    clReleaseMemObject(bq);
    clReleaseMemObject(bo);
    clReleaseMemObject(bp);
    clReleaseMemObject(bs);
}

/* Batch invariance (cl/attention.cl): the output row of one query token is
 * bit for bit the same alone, inside batches of other tokens and sequences
 * (9 and 37 rows, at other indices); for the CPU family also in a cache
 * where its sequence's cells sit at other, shuffled indices between other
 * sequences' cells when attention visits cells in position order (cell_order). */
FAM_TEST(test_attention_batch_invariant)
{
    /* K type, V type, kv heads, head_dim (4 x 8, 4 x 16: quantized heads
     * starting inside a block) */
    static const uint32_t pairs[][4] = {{CS_TYPE_F32, CS_TYPE_F32, 2, 64},
                                        {CS_TYPE_F16, CS_TYPE_Q8_0, 2, 64},
                                        {CS_TYPE_Q4_0, CS_TYPE_BF16, 2, 64},
                                        {CS_TYPE_Q8_0, CS_TYPE_Q4_0, 4, 8},
                                        {CS_TYPE_Q4_0, CS_TYPE_Q8_0, 4, 16},
                                        /* padded rows: 2 x 8 = 16, 1 x 48 */
                                        {CS_TYPE_Q8_0, CS_TYPE_Q4_0, 2, 8},
                                        {CS_TYPE_Q4_0, CS_TYPE_Q8_0, 1, 48}};
    enum { NC = 160, NHQ = 8, N0 = 40 };
    struct tu_rng r;
    tu_rng_seed(&r, 28);
    for (size_t pi = 0; pi < CS_ARRAY_LEN(pairs); pi++) {
        const int NKV = (int)pairs[pi][2], HDIM = (int)pairs[pi][3], ROWE = NKV * HDIM;
        float *k = rand_vec(&r, (size_t)NC * ROWE, 1.0f), *v = rand_vec(&r, (size_t)NC * ROWE, 1.0f);
        float *kb = rand_vec(&r, (size_t)NC * ROWE, 1.0f), *vb = rand_vec(&r, (size_t)NC * ROWE, 1.0f);
        int32_t pa[NC], pb[NC], order[NC];
        uint64_t sa[NC], sb[NC];
        /* cache A: sequence 0 at cells 0..N0-1 (positions 0..N0-1), then
         * sequences 1 and 2 alternating; cache B: sequence 0's rows at
         * cells 3 * ((7 i) % N0) + 5 (shuffled), the others elsewhere */
        for (int c = 0; c < NC; c++) {
            pa[c] = c < N0 ? c : (c - N0) / 2;
            sa[c] = c < N0 ? 1 : 1ull << (1 + c % 2);
            pb[c] = c / 2;
            sb[c] = 1ull << (1 + c % 2);
        }
        for (int i = 0; i < N0; i++) {
            int c = 3 * ((7 * i) % N0) + 5;
            pb[c] = i;
            sb[c] = 1;
            memcpy(kb + (size_t)c * ROWE, k + (size_t)i * ROWE, ROWE * sizeof *k);
            memcpy(vb + (size_t)c * ROWE, v + (size_t)i * ROWE, ROWE * sizeof *v);
        }
        for (int c = 0; c < NC; c++) /* cells by (position, cell): insertion sort */
        {
            int j = c;
            while (j > 0 && pb[order[j - 1]] > pb[c])
            {
                order[j] = order[j - 1];
                j--;
            }
            order[j] = c;
        }
        struct kv_fixture fa, fb;
        kv_fill(&fa, pairs[pi][0], pairs[pi][1], NC, NKV, HDIM, k, v, pa, sa);
        kv_fill(&fb, pairs[pi][0], pairs[pi][1], NC, NKV, HDIM, kb, vb, pb, sb);
        cl_mem ord = buf_new(sizeof order, order);
        fb.kv.cell_order = ord;

        float *q = rand_vec(&r, (size_t)37 * NHQ * HDIM, 1.0f);
        int32_t tp[37], ts[37];
        for (int t = 0; t < 37; t++) {
            ts[t] = t % 3;
            tp[t] = (int32_t)(tu_rng_u64(&r) % N0);
        }
        const size_t xr = (size_t)NHQ * HDIM; /* one token's output row */
        float *alone = malloc(xr * 4), *out = malloc(37 * xr * 4), *xq = malloc(xr * 4);
        assert_true(alone && out && xq);
        memcpy(xq, q + 4 * xr, xr * 4); /* the token X: sequence 0, position N0 - 1 */
        int32_t xp = N0 - 1, xs = 0;
        att_once(&fa.kv, NC, xq, &xp, &xs, 1, NHQ, alone);
        static const int at[] = {4, 30}, nts[] = {9, 37};
        for (int b = 0; b < 2; b++) {
            float *qq = malloc(nts[b] * xr * 4);
            assert_non_null(qq);
            memcpy(qq, q, nts[b] * xr * 4);
            memcpy(qq + at[b] * xr, xq, xr * 4);
            int32_t tpp[37], tss[37];
            memcpy(tpp, tp, sizeof tp);
            memcpy(tss, ts, sizeof ts);
            tpp[at[b]] = xp;
            tss[at[b]] = xs;
            att_once(&fa.kv, NC, qq, tpp, tss, nts[b], NHQ, out);
            assert_memory_equal(out + at[b] * xr, alone, xr * 4);
            free(qq);
        }
        /* fewer cells read (n_cells_used = N0 + 3): the same */
        att_once(&fa.kv, N0 + 3, xq, &xp, &xs, 1, NHQ, out);
        assert_memory_equal(out, alone, xr * 4);
        /* the shuffled layout, visited in position order, in a batch of 5 */
        memcpy(out, q, 5 * xr * 4);
        memcpy(out + 2 * xr, xq, xr * 4);
        float *o5 = malloc(5 * xr * 4);
        assert_non_null(o5);
        int32_t tp5[5] = {3, 9, xp, 0, 17}, ts5[5] = {1, 2, xs, 0, 1};
        att_once(&fb.kv, NC, out, tp5, ts5, 5, NHQ, o5);
        float *alone_b = malloc(xr * 4);
        assert_non_null(alone_b);
        att_once(&fb.kv, NC, xq, &xp, &xs, 1, NHQ, alone_b);
        assert_memory_equal(o5 + 2 * xr, alone_b, xr * 4);
        /* the CPU family folds visible cells one by one in visiting order:
         * the same as in cache A; the GPU family folds fixed chunks of
         * visiting-order entries, which other sequences' cells interleave */
        if (f == CS_KFAMILY_CPU)
            assert_memory_equal(alone_b, alone, xr * 4);
        free(alone_b);
        /* without the order the sum runs in another order (not asserted) */
        fb.kv.cell_order = NULL;
        att_once(&fb.kv, NC, xq, &xp, &xs, 1, NHQ, out);
        printf("# attention %s %s/%s batch-invariant; shuffled cells without cell_order %s\n",
               fam_name(f), cs_type_name(pairs[pi][0]), cs_type_name(pairs[pi][1]),
               memcmp(out, alone, xr * 4) ? "differ" : "equal");
        clReleaseMemObject(ord);
        kv_free(&fa);
        kv_free(&fb);
        free(o5);
        free(alone);
        free(out);
        free(xq);
        free(q);
        free(k);
        free(v);
        free(kb);
        free(vb);
    }
}

/* Plain-C reference of cs_op_kv_shift on one cache row of type t (n_kv_head
 * heads of head_dim): dequantize, RoPE by delta (cs_ref_rope), requantize. */
static void ref_kv_shift(uint32_t t, unsigned char *row, int n_kv_head, int head_dim, int32_t delta,
                         const struct cs_rope_params *p)
{
    int n = n_kv_head * head_dim;
    float *x = malloc((size_t)n * sizeof *x);
    assert_non_null(x);
    assert_int_equal(cs_kv_dequantize_row(t, row, x, n), 0);
    cs_ref_rope(x, &delta, 1, n_kv_head, head_dim, p->n_rot, p->neox, p->freq_base, p->freq_scale);
    assert_int_equal(cs_kv_quantize_row(t, x, row, n), 0);
    free(x);
}

/* cs_op_kv_shift for every K type against the reference: listed cells
 * within one rounding (f16/bf16: one unit in the last place; q8_0/q4_0: one
 * quantization step), the rest of the cache and V untouched. */
static void test_kv_shift(void **state)
{
    (void)state;
    NEED_DEV();
    struct shift_case {
        int nkv, hd;
        struct cs_rope_params p;
        int32_t delta;
    } cases[] = {
        {2, 64, {64, false, 10000.0f, 1.0f}, 7},
        {1, 128, {64, true, 1000000.0f, 0.5f}, -13}, /* partial rotary */
        {3, 32, {32, true, 10000.0f, 1.0f}, 1000},
        /* small heads: quantized blocks span 4 (2) heads, one work-item per block */
        {4, 8, {8, false, 10000.0f, 1.0f}, 5},
        {4, 16, {16, true, 10000.0f, 1.0f}, -9},
        {4, 16, {8, false, 10000.0f, 1.0f}, 300}, /* partial rotary */
        {2, 48, {48, true, 10000.0f, 1.0f}, 11},  /* lcm(48, 32) = 96: 2 heads, 3 blocks */
        /* rows padded to whole blocks: one short unit (2 x 8 = 16 of 32; 1 x
         * 48 of lcm 96), or a whole unit then a short one (3 x 16 = 48) */
        {2, 8, {8, true, 10000.0f, 1.0f}, 6},
        {1, 48, {32, false, 10000.0f, 1.0f}, -21},
        {3, 16, {16, false, 10000.0f, 1.0f}, 40},
    };
    const int n_cells = 20;
    const int32_t list[] = {3, 17, 0, -1, 9, 25}; /* -1, 25: skipped */
    struct tu_rng r;
    tu_rng_seed(&r, 29);
    for (size_t ti = 0; ti < CS_ARRAY_LEN(k_kv_types); ti++) {
        uint32_t t = k_kv_types[ti];
        double emax = 0.0;
        for (size_t ci = 0; ci < CS_ARRAY_LEN(cases); ci++) {
            const struct shift_case *sc = &cases[ci];
            int row = sc->nkv * sc->hd;
            size_t rb = row_bytes(t, (size_t)row);
            float *x = rand_vec(&r, (size_t)n_cells * row, 2.0f);
            unsigned char *img = malloc(rb * n_cells), *want = malloc(rb * n_cells),
                          *got = malloc(rb * n_cells), *vimg = malloc(rb * n_cells);
            assert_true(img && want && got && vimg);
            for (int c = 0; c < n_cells; c++)
                assert_int_equal(cs_kv_quantize_row(t, x + (size_t)c * row, img + rb * c, row), 0);
            memset(vimg, 0x5A, rb * n_cells);
            struct cs_kv_view kv = {t,    CS_TYPE_F32, n_cells, sc->nkv, sc->hd, buf_new(rb * n_cells, img),
                                    NULL, NULL,        NULL,    NULL};
            kv.type_v = t;
            kv.v = buf_new(rb * n_cells, vimg);
            cl_mem bl = buf_new(sizeof list, list);
            double t0, t1;
            t0 = now_ms();
            OP_OK(cs_op_kv_shift(g_dev, &kv, bl, (int)CS_ARRAY_LEN(list), sc->delta, &sc->p, g_err,
                                 sizeof g_err));
            finish();
            t1 = now_ms();
            buf_read(kv.k, rb * n_cells, got);
            memcpy(want, img, rb * n_cells);
            for (size_t i = 0; i < CS_ARRAY_LEN(list); i++)
                if (list[i] >= 0 && list[i] < n_cells)
                    ref_kv_shift(t, want + rb * list[i], sc->nkv, sc->hd, sc->delta, &sc->p);
            float *a = malloc((size_t)row * sizeof *a), *b = malloc((size_t)row * sizeof *b);
            assert_true(a && b);
            for (int c = 0; c < n_cells; c++) {
                bool listed = false;
                for (size_t i = 0; i < CS_ARRAY_LEN(list); i++)
                    listed = listed || list[i] == c;
                if (!listed) {
                    assert_memory_equal(got + rb * c, img + rb * c, rb);
                    continue;
                }
                assert_memory_not_equal(got + rb * c, img + rb * c, rb);
                cs_kv_dequantize_row(t, got + rb * c, a, row);
                cs_kv_dequantize_row(t, want + rb * c, b, row);
                assert_pad_zero(t, got + rb * c, rb, row);
                float rmax = 0.0f;
                for (int j = 0; j < row; j++)
                    rmax = fmaxf(rmax, fabsf(b[j]));
                for (int j = 0; j < row; j++) {
                    float tol;
                    if (t == CS_TYPE_F32)
                        tol = 1e-5f * rmax;
                    else if (t == CS_TYPE_F16)
                        tol = fabsf(b[j]) * 0x1p-10f + 1e-5f * rmax;
                    else if (t == CS_TYPE_BF16)
                        tol = fabsf(b[j]) * 0x1p-7f + 1e-5f * rmax;
                    else {
                        int j0 = j / 32 * 32, j1 = j0 + 32 < row ? j0 + 32 : row;
                        float bmax = 0.0f;
                        for (int jj = j0; jj < j1; jj++)
                            bmax = fmaxf(bmax, fabsf(b[jj]));
                        tol = bmax / (t == CS_TYPE_Q8_0 ? 127.0f : 7.0f) * 1.01f + 1e-5f * rmax;
                    }
                    if (!(fabsf(a[j] - b[j]) <= tol))
                        fail_msg("kv_shift %s case %zu cell %d elem %d: %g vs %g", cs_type_name(t),
                                 ci, c, j, a[j], b[j]);
                    emax = fmax(emax, fabs(a[j] - b[j]) / rmax);
                }
            }
            buf_read(kv.v, rb * n_cells, got);
            assert_memory_equal(got, vimg, rb * n_cells);
            printf("# kv_shift %s %d x %d, n_rot %d%s, delta %d: %.3f ms\n", cs_type_name(t),
                   sc->nkv, sc->hd, sc->p.n_rot, sc->p.neox ? " neox" : "", sc->delta, t1 - t0);
            clReleaseMemObject(kv.k);
            clReleaseMemObject(kv.v);
            clReleaseMemObject(bl);
            free(a);
            free(b);
            free(x);
            free(img);
            free(want);
            free(got);
            free(vimg);
        }
        printf("# kv_shift %s: max err vs reference %.2e of the row maximum\n", cs_type_name(t), emax);
    }
}

/* ---- argmax ---- */

/* Random rows plus planted ties (the first of two equal maxima must win),
 * a maximum in the last column and NaN entries; exact index equality with
 * cs_ref_argmax in both families. */
FAM_TEST(test_argmax)
{
    static const int shapes[][2] = {{1, 1}, {3, 7}, {5, 300}, {9, 4099}};
    struct tu_rng r;
    tu_rng_seed(&r, 21);
    for (size_t s = 0; s < CS_ARRAY_LEN(shapes); s++) {
        int nr = shapes[s][0], nc = shapes[s][1];
        size_t n = (size_t)nr * nc, off = 2;
        float *x = rand_vec(&r, n + off, 1.0f);
        float *xr = x + off;
        if (nc > 4 && nr > 2) {
            xr[nc - 1] = 50.0f;                      /* row 0: the last column */
            xr[nc + 1] = xr[nc + 3] = 40.0f;         /* row 1: a tie, column 1 wins */
            xr[2 * nc] = NAN;                        /* row 2: NaN never wins */
            xr[2 * nc + 2] = NAN;
        }
        int32_t *ref = malloc((size_t)nr * sizeof *ref), *got = malloc((size_t)(nr + 1) * sizeof *got);
        assert_non_null(ref);
        assert_non_null(got);
        cs_ref_argmax(xr, nr, nc, ref);
        if (nc > 4 && nr > 2) {
            assert_int_equal(ref[0], nc - 1);
            assert_int_equal(ref[1], 1);
            assert_true(ref[2] != 0 && ref[2] != 2);
        }
        cl_mem bx = buf_new((n + off) * 4, x), bo = buf_new((size_t)(nr + 1) * 4, NULL);
        double t0, t1;
        TIMED(t0, t1, (void)0, cs_op_argmax(g_dev, bx, off, bo, 1, nr, nc, g_err, sizeof g_err));
        buf_read(bo, (size_t)(nr + 1) * 4, got);
        printf("# argmax %s (%d, %d): %.3f ms\n", fam_name(f), nr, nc, t1 - t0);
        for (int i = 0; i < nr; i++) {
            assert_int_equal(got[1 + i], ref[i]);
            /* the host sampler's greedy pick (row 2 starts with NaN) */
            assert_int_equal(clspec_argmax(xr + (size_t)i * nc, nc), ref[i]);
        }
        clReleaseMemObject(bx);
        clReleaseMemObject(bo);
        free(x);
        free(ref);
        free(got);
    }
}

/* ---- greedy_accept ---- */

/* A hand-checked case (two runs, single rows, a run cut by its last row),
 * then random runs over a 3-token alphabet (many matches) against
 * cs_ref_greedy_accept, in both families. */
FAM_TEST(test_greedy_accept)
{
    (void)f;
    static const int32_t am0[] = {5, 7, 7, 2, 9, 3, 3}, nxt0[] = {5, 7, 1, -1, -1, 3, -1};
    static const int32_t want0[] = {2, 7, 1, 7, 0, 7, 0, 2, 0, 9, 1, 3, 0, 3};
    int32_t ref[2 * 7];
    cs_ref_greedy_accept(am0, nxt0, 7, ref);
    assert_memory_equal(ref, want0, sizeof want0);
    struct tu_rng r;
    tu_rng_seed(&r, 23);
    for (int n = 1; n <= 40; n += 13) {
        int32_t *am = malloc((size_t)n * 4), *nxt = malloc((size_t)n * 4), *rf = malloc((size_t)n * 8),
                *got = malloc((size_t)n * 8);
        assert_true(am && nxt && rf && got);
        for (int i = 0; i < n; i++) {
            am[i] = (int32_t)(tu_rng_u64(&r) % 3);
            uint32_t u = (uint32_t)(tu_rng_u64(&r) % 10);
            nxt[i] = i == n - 1 || u == 0 ? -1 : u < 8 ? am[i] : (am[i] + 1) % 3;
        }
        cs_ref_greedy_accept(am, nxt, n, rf);
        cl_mem ba = buf_new((size_t)n * 4, am), bn = buf_new((size_t)n * 4, nxt), br = buf_new((size_t)n * 8, NULL);
        assert_int_equal(cs_op_greedy_accept(g_dev, ba, bn, br, n, g_err, sizeof g_err), CLSPEC_OK);
        buf_read(br, (size_t)n * 8, got);
        assert_memory_equal(got, rf, (size_t)n * 8);
        clReleaseMemObject(ba);
        clReleaseMemObject(bn);
        clReleaseMemObject(br);
        free(am);
        free(nxt);
        free(rf);
        free(got);
    }
    assert_int_equal(cs_op_greedy_accept(g_dev, NULL, NULL, NULL, 0, g_err, sizeof g_err), CLSPEC_E_INVAL);
}

static void test_bad_args(void **state)
{
    (void)state;
    NEED_DEV();
    struct cs_kv_view kv = {CS_TYPE_Q8_0, CS_TYPE_Q8_0, 4, 1, 6, NULL, NULL, NULL, NULL, NULL}; /* head_dim 6 */
    /* quantized blocks of 32 run along the cell row, padded to whole blocks:
     * 1 x 16 and 2 x 8 (half a block) are accepted */
    assert_int_equal(cs_kv_type_check(CS_TYPE_Q8_0, 1, 16, g_err, sizeof g_err), CLSPEC_OK);
    assert_int_equal(cs_kv_type_check(CS_TYPE_Q4_0, 2, 8, g_err, sizeof g_err), CLSPEC_OK);
    assert_int_equal(cs_kv_type_check(CS_TYPE_F16, 2, 8, g_err, sizeof g_err), CLSPEC_OK);
    assert_int_equal(cs_kv_type_check(CS_TYPE_Q8_0, 2, 6, g_err, sizeof g_err), CLSPEC_E_UNSUPPORTED);
    /* stories260K (4 x 8), TinyStories-656K (4 x 16), 3 x 32, 2 x 48: whole blocks per row */
    assert_int_equal(cs_kv_type_check(CS_TYPE_Q8_0, 4, 8, g_err, sizeof g_err), CLSPEC_OK);
    assert_int_equal(cs_kv_type_check(CS_TYPE_Q4_0, 4, 16, g_err, sizeof g_err), CLSPEC_OK);
    assert_int_equal(cs_kv_type_check(CS_TYPE_Q4_0, 3, 32, g_err, sizeof g_err), CLSPEC_OK);
    assert_int_equal(cs_kv_type_check(CS_TYPE_Q8_0, 2, 48, g_err, sizeof g_err), CLSPEC_OK);
    assert_int_equal(cs_kv_type_check(CS_TYPE_F32, 4, 6, g_err, sizeof g_err), CLSPEC_E_UNSUPPORTED);
    assert_int_equal(cs_kv_type_check(CS_TYPE_Q4_K, 1, 64, g_err, sizeof g_err), CLSPEC_E_UNSUPPORTED);
    assert_int_equal(cs_op_attention(g_dev, &kv, 4, NULL, 0, NULL, 0, NULL, NULL, 1, 2, true, 1.0f,
                                     g_err, sizeof g_err),
                     CLSPEC_E_UNSUPPORTED);
    kv.type_k = kv.type_v = CS_TYPE_F32;
    kv.head_dim = 16;
    kv.n_kv_head = 3; /* 4 heads over 3 kv heads */
    assert_int_equal(cs_op_attention(g_dev, &kv, 4, NULL, 0, NULL, 0, NULL, NULL, 1, 4, true, 1.0f,
                                     g_err, sizeof g_err),
                     CLSPEC_E_INVAL);
    struct cs_rope_params p = {65, false, 10000.0f, 1.0f};
    assert_int_equal(cs_op_rope(g_dev, NULL, 0, NULL, 1, 1, 64, &p, g_err, sizeof g_err),
                     CLSPEC_E_INVAL);
    assert_int_equal(cs_op_argmax(g_dev, NULL, 0, NULL, 0, 1, 0, g_err, sizeof g_err), CLSPEC_E_INVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_eltwise),
        cmocka_unit_test(test_kv_store),
        cmocka_unit_test(test_attention_decode),
        cmocka_unit_test(test_attention_prefill),
        cmocka_unit_test(test_attention_two_seqs),
        cmocka_unit_test(test_attention_noncausal),
        cmocka_unit_test(test_attention_shapes),
        cmocka_unit_test(test_attention_kv_types),
        cmocka_unit_test(test_attention_kv_pairs),
        cmocka_unit_test(test_attention_small_heads),
        cmocka_unit_test(test_attention_padded_rows),
        cmocka_unit_test(test_attention_batch_invariant),
        cmocka_unit_test(test_kv_shift),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_argmax),
        cmocka_unit_test(test_greedy_accept),
    };
    return cmocka_run_group_tests_name("kernels-ops", tests, setup, teardown);
}
