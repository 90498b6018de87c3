/* test-kernels-attn.c: the attention op (cs_op_attention, cl/attention.cl)
 * in both kernel families (CPU and GPU, forced per device so both run on
 * PoCL; env CLSPEC_KFAMILY=cpu|gpu restricts to one) against the plain-C
 * reference (src/ref/ops_ref.h): decode, prefill, two sequences, non-causal,
 * shapes, every KV type and type pair, small heads, padded rows, batch
 * invariance. The caches are filled through cs_op_kv_store (tests/opsutil.h).
 * Error bounds are normalized by the largest reference magnitude; each bound
 * is documented at its use. Timings are TAP comments, never asserted. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/common.h"
#include "ops/ops.h"
#include "gguf/quant.h"
#include "ref/ops_ref.h"
#include "clspec/clspec.h"
#include "opsutil.h"
#include "testutil.h"

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
    float *q = ou_rand_vec(r, qn, 2.0f), *k = ou_rand_vec(r, (size_t)nc * row, 1.0f);
    float *v = ou_rand_vec(r, (size_t)nc * row, 1.0f);
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

    struct ou_kv_fixture fx;
    ou_kv_fill(&fx, ac->type, ac->mixed ? ac->type_v : ac->type, nc, nkv, hd, k, v, cpos, cseq);
    /* q and out sit at element offsets 7 and 5 of their buffers */
    const size_t q_off = 7, o_off = 5;
    float *qpad = ou_rand_vec(r, q_off + qn, 100.0f);
    memcpy(qpad + q_off, q, qn * sizeof *q);
    cl_mem bq = ou_buf((q_off + qn) * 4, qpad), bo = ou_buf((o_off + qn) * 4, NULL);
    free(qpad);
    cl_mem btp = ou_buf((size_t)nt * 4, tpos), bts = ou_buf((size_t)nt * 4, tseq);
    float scale = 1.0f / sqrtf((float)hd);
    ou_finish();
    double t0, t1;
    TIMED(t0, t1, (void)0,
          cs_op_attention(ou_dev, &fx.kv, nc, bq, q_off, bo, o_off, btp, bts, nt, nh, ac->causal,
                          scale, ou_err, sizeof ou_err));
    float *got = malloc(qn * sizeof *got), *ref = malloc(qn * sizeof *ref);
    assert_non_null(got);
    assert_non_null(ref);
    assert_int_equal(
        clEnqueueReadBuffer(ou_dev->q, bo, CL_TRUE, o_off * 4, qn * 4, got, 0, NULL, NULL),
        CL_SUCCESS);
    cs_ref_attention(q, fx.kdq, fx.vdq, cpos, cseq, nc, tpos, tseq, nt, nh, nkv, hd, ac->causal,
                     scale, ref);
    double e = ou_norm_err(got, ref, qn, 1e-3);
    if (err_exact) {
        cs_ref_attention(q, k, v, cpos, cseq, nc, tpos, tseq, nt, nh, nkv, hd, ac->causal, scale,
                         ref);
        *err_exact = ou_norm_err(got, ref, qn, 1e-3);
    }
    if (err_nomask) {
        cs_ref_attention(q, fx.kdq, fx.vdq, cpos, call, nc, tpos, tseq, nt, nh, nkv, hd, ac->causal,
                         scale, ref);
        *err_nomask = ou_norm_err(got, ref, qn, 1e-3);
    }
    if (err_flip) {
        cs_ref_attention(q, fx.kdq, fx.vdq, cpos, cseq, nc, tpos, tseq, nt, nh, nkv, hd,
                         !ac->causal, scale, ref);
        *err_flip = ou_norm_err(got, ref, qn, 1e-3);
    }
    printf("# attention %s %s/%s %s: %d tok x %d cells, %d/%d heads, hd %d: %.3f ms (err %.2e)\n",
           ou_fam_name(f), cs_type_name(ac->type), cs_type_name(ac->mixed ? ac->type_v : ac->type),
           ac->name, nt, nc, nh, nkv, hd, t1 - t0, e);
    clReleaseMemObject(bq);
    clReleaseMemObject(bo);
    clReleaseMemObject(btp);
    clReleaseMemObject(bts);
    ou_kv_free(&fx);
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
    for (size_t ti = 1; ti < CS_ARRAY_LEN(ou_kv_types); ti++) {
        uint32_t type = ou_kv_types[ti];
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
        printf("# attention %s %s vs f32 K/V: err %.2e / %.2e (bound %.0e)\n", ou_fam_name(f),
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
    for (size_t i = 0; i < CS_ARRAY_LEN(ou_kv_types); i++)
        for (size_t j = 0; j < CS_ARRAY_LEN(ou_kv_types); j++) {
            uint32_t tk = ou_kv_types[i], tv = ou_kv_types[j];
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
        for (size_t i = 0; i < CS_ARRAY_LEN(ou_kv_types); i++)
            for (size_t j = 0; j < CS_ARRAY_LEN(ou_kv_types); j++) {
                uint32_t tk = ou_kv_types[i], tv = ou_kv_types[j];
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
        for (size_t i = 0; i < CS_ARRAY_LEN(ou_kv_types); i++)
            for (size_t j = 0; j < CS_ARRAY_LEN(ou_kv_types); j++) {
                uint32_t tk = ou_kv_types[i], tv = ou_kv_types[j];
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
    cl_mem bq = ou_buf(qn * 4, q), bo = ou_buf(qn * 4, NULL);
    cl_mem bp = ou_buf((size_t)nt * 4, tpos), bs = ou_buf((size_t)nt * 4, tseq);
    OP_OK(cs_op_attention(ou_dev, kv, n_used, bq, 0, bo, 0, bp, bs, nt, nh, true, 0.125f, ou_err,
                          sizeof ou_err));
    ou_read(bo, qn * 4, out);
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
        float *k = ou_rand_vec(&r, (size_t)NC * ROWE, 1.0f), *v = ou_rand_vec(&r, (size_t)NC * ROWE, 1.0f);
        float *kb = ou_rand_vec(&r, (size_t)NC * ROWE, 1.0f), *vb = ou_rand_vec(&r, (size_t)NC * ROWE, 1.0f);
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
        struct ou_kv_fixture fa, fb;
        ou_kv_fill(&fa, pairs[pi][0], pairs[pi][1], NC, NKV, HDIM, k, v, pa, sa);
        ou_kv_fill(&fb, pairs[pi][0], pairs[pi][1], NC, NKV, HDIM, kb, vb, pb, sb);
        cl_mem ord = ou_buf(sizeof order, order);
        fb.kv.cell_order = ord;

        float *q = ou_rand_vec(&r, (size_t)37 * NHQ * HDIM, 1.0f);
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
               ou_fam_name(f), cs_type_name(pairs[pi][0]), cs_type_name(pairs[pi][1]),
               memcmp(out, alone, xr * 4) ? "differ" : "equal");
        clReleaseMemObject(ord);
        ou_kv_free(&fa);
        ou_kv_free(&fb);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
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
    };
    return cmocka_run_group_tests_name("kernels-attn", tests, ou_setup, ou_teardown);
}
