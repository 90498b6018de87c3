/* kvutil: see kvutil.h. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "gguf/quant.h"
#include "kvutil.h"
#include "ops/ops.h"

struct cs_cl_dev *kvu_dev[2];
char kvu_err[CLSPEC_ERRLEN];

const uint32_t kvu_types[5] = {CS_TYPE_F32, CS_TYPE_F16, CS_TYPE_BF16, CS_TYPE_Q8_0,
                                   CS_TYPE_Q4_0};

struct cs_hparams kvu_hparams(void)
{
    struct cs_hparams hp;
    memset(&hp, 0, sizeof hp);
    hp.n_layer = NL;
    hp.n_head = NH;
    hp.n_head_kv = NKV;
    hp.head_dim = HD;
    hp.n_embd = NH * HD;
    hp.n_rot = HD;
    hp.rope_freq_base = 10000.0f;
    hp.rope_freq_scale = 1.0f;
    hp.rope_style = CS_ROPE_NORMAL;
    return hp;
}

/* A cache of n_ctx cells; layers on kvu_dev[0], or split 2/2 over both devices. */
struct cs_kv *kvu_make(uint32_t n_ctx, uint32_t n_seq, bool unified, uint32_t tk, uint32_t tv,
                             bool split)
{
    struct cs_hparams hp = kvu_hparams();
    struct cs_kv_params p = {n_ctx, tk, tv, n_seq, unified};
    struct cs_cl_dev *ld[NL];
    for (int l = 0; l < NL; l++)
        ld[l] = split && l >= NL / 2 ? kvu_dev[1] : kvu_dev[0];
    struct cs_kv *kv = NULL;
    OK(cs_kv_new(&hp, &p, ld, &kv, kvu_err, sizeof kvu_err));
    return kv;
}

/* Places rows (seq, pos from p0, n rows; token = 1000 * seq + pos) and
 * returns the placement status of seq; cells[] gets the cells. */
int kvu_place(struct cs_kv *kv, int32_t seq, int32_t p0, int n, int32_t *cells)
{
    struct cs_batch b;
    OK(cs_batch_init(&b, n, kvu_err, sizeof kvu_err));
    for (int i = 0; i < n; i++)
        OK(cs_batch_add(&b, 1000 * seq + p0 + i, p0 + i, seq, false, kvu_err, sizeof kvu_err));
    int seq_rc[CS_MAX_SEQ];
    int32_t tmp[64];
    OK(cs_kv_place(kv, &b, cells ? cells : tmp, seq_rc, kvu_err, sizeof kvu_err));
    cs_batch_free(&b);
    return seq_rc[seq];
}

/* The host metadata is consistent: n_used counts occupied cells, hi covers them. */
void kvu_check_meta(const struct cs_kv *kv)
{
    uint32_t used = 0;
    int32_t hi = 0;
    for (uint32_t c = 0; c < kv->p.n_ctx; c++) {
        assert_true((kv->pos[c] >= 0) == (kv->seq[c] != 0));
        if (kv->pos[c] >= 0) {
            used++;
            hi = (int32_t)c + 1;
        }
    }
    assert_int_equal(used, kv->n_used);
    assert_true(kv->hi >= hi);
    uint32_t free_all = 0;
    for (uint32_t s = 0; s < kv->p.n_seq_max && kv->p.unified; s++)
        assert_int_equal(cs_kv_n_free(kv, (int32_t)s), kv->p.n_ctx - used);
    (void)free_all;
}

float *kvu_rand_vec(struct tu_rng *r, size_t n)
{
    float *v = malloc(n * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++)
        v[i] = tu_rng_normal(r);
    return v;
}

cl_mem kvu_buf(struct cs_cl_dev *d, size_t bytes, const void *host)
{
    cl_mem m = NULL;
    OK(cs_cl_alloc(d, CL_MEM_READ_WRITE | (host ? CL_MEM_COPY_HOST_PTR : 0), bytes ? bytes : 4,
                   (void *)host, &m, kvu_err, sizeof kvu_err));
    return m;
}

/* Stores f32 rows k, v ((NL, n, ROW) each) into cells[0..n) of every layer. */
void kvu_store(struct cs_kv *kv, const int32_t *cells, int n, const float *k, const float *v)
{
    for (uint32_t l = 0; l < NL; l++) {
        struct cs_cl_dev *d = cs_kv_layer_device(kv, l);
        cl_mem bk = kvu_buf(d, (size_t)n * ROW * 4, k + (size_t)l * n * ROW);
        cl_mem bv = kvu_buf(d, (size_t)n * ROW * 4, v + (size_t)l * n * ROW);
        cl_mem bc = kvu_buf(d, (size_t)n * 4, cells);
        struct cs_kv_view view = cs_kv_layer_view(kv, l);
        OK(cs_op_kv_store(d, &view, bk, 0, bv, 0, bc, n, kvu_err, sizeof kvu_err));
        OK(cs_cl_finish(d, kvu_err, sizeof kvu_err));
        clReleaseMemObject(bk);
        clReleaseMemObject(bv);
        clReleaseMemObject(bc);
    }
}

/* The raw bytes of one cell's K (or V) row of layer l. */
void kvu_read_raw(struct cs_kv *kv, uint32_t l, int32_t cell, bool is_v, void *dst)
{
    uint64_t rb = is_v ? kv->row_bytes_v : kv->row_bytes_k;
    OK(cs_cl_read(cs_kv_layer_device(kv, l), is_v ? kv->v[l] : kv->k[l], (size_t)cell * rb, rb,
                  dst, kvu_err, sizeof kvu_err));
}

void kvu_read_row(struct cs_kv *kv, uint32_t l, int32_t cell, bool is_v, float *dst)
{
    unsigned char raw[ROW * 4];
    kvu_read_raw(kv, l, cell, is_v, raw);
    assert_int_equal(cs_dequantize_row(is_v ? kv->p.type_v : kv->p.type_k, raw, dst, ROW), 0);
}

/* Attention of layer l for n query tokens (q: (n, NH, HD)) after a sync. */
void kvu_attend(struct cs_kv *kv, uint32_t l, const float *q, int n, const int32_t *tpos,
                   const int32_t *tseq, float *out)
{
    OK(cs_kv_sync(kv, true, kvu_err, sizeof kvu_err));
    struct cs_cl_dev *d = cs_kv_layer_device(kv, l);
    struct cs_kv_view view = cs_kv_layer_view(kv, l);
    size_t qn = (size_t)n * NH * HD;
    cl_mem bq = kvu_buf(d, qn * 4, q), bo = kvu_buf(d, qn * 4, NULL);
    cl_mem bp = kvu_buf(d, (size_t)n * 4, tpos), bs = kvu_buf(d, (size_t)n * 4, tseq);
    OK(cs_op_attention(d, &view, kv->hi, bq, 0, bo, 0, bp, bs, n, NH, true, 0.125f, kvu_err,
                       sizeof kvu_err));
    OK(cs_cl_read(d, bo, 0, qn * 4, out, kvu_err, sizeof kvu_err));
    clReleaseMemObject(bq);
    clReleaseMemObject(bo);
    clReleaseMemObject(bp);
    clReleaseMemObject(bs);
}

int kvu_setup(void **state)
{
    (void)state;
    struct cs_cl_devinfo *list = NULL;
    size_t n = 0;
    if (cs_cl_list(&list, &n, kvu_err, sizeof kvu_err) != CLSPEC_OK || n == 0) {
        free(list);
        return 0; /* no device: every test skips */
    }
    /* the first device, and a second one of the same platform when there is one */
    size_t idx[2] = {0, SIZE_MAX};
    for (size_t i = 1; i < n && idx[1] == SIZE_MAX; i++)
        if (list[i].platform == list[0].platform)
            idx[1] = i;
    for (int i = 0; i < 2; i++) {
        if (idx[i] == SIZE_MAX)
            continue;
        if (cs_cl_dev_open(&list[idx[i]], &kvu_dev[i], kvu_err, sizeof kvu_err) != CLSPEC_OK) {
            fprintf(stderr, "# %s\n", kvu_err);
            kvu_dev[i] = NULL;
        }
    }
    if (kvu_dev[0])
        printf("# devices: %s%s\n", kvu_dev[0]->info.name, kvu_dev[1] ? " x 2" : "");
    free(list);
    return 0;
}

int kvu_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < 2; i++)
        if (kvu_dev[i])
            cs_cl_dev_close(kvu_dev[i]);
    return 0;
}

