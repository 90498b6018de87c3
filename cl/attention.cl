/* attention.cl: scaled dot-product attention of q (n_tokens, n_head, HD) over
 * one layer's typed KV cache (n_cells, n_kv_head * HD), online softmax, GQA
 * (q head h reads kv head h / (n_head / n_kv_head)). Cell c is visible to
 * token t iff bit token_seq[t] of cell_seq[c] is set and
 *   causal:     0 <= cell_pos[c] <= token_pos[t]
 *   non-causal: cell_pos[c] >= 0.
 * A token that sees no cell gets zeros. Cells are visited in the order
 * cell_order[0..n_cells) when use_order (the KV cache sorts them by
 * position), else 0..n_cells-1. A token's output depends on nothing but its
 * q and the cells: not on the other tokens of the batch or n_tokens (batch
 * invariance, bit for bit). The CPU kernels fold in the visible cells one
 * by one in visiting order, so with cell_order sorted by position its result does
 * not depend on where the cells sit either; attn_gpu folds chunks of ATT_WG
 * visiting-order entries, so it depends on where invisible cells fall
 * among them (TODO: compact the visible cells first).
 * Build flags: -DHD=<head_dim> (multiple
 * of 4; for quantized caches the row n_kv_head * HD is blocks of 32, a head
 * may start inside a block and the last block may be padded: only the row's
 * valid elements are read) -DKV_TK=<ggml type id> -DKV_TV=<id>
 * (independent; each 0 f32, 1 f16, 30 bf16, 8 q8_0, 2 q4_0). Two families:
 *   attn_cpu: one work-item per (token, kv head, up to ATT_G q heads), rows
 *             in private memory, each K/V row read once for those heads;
 *   attn_cpu_t: one work-item per (kv head, tile of ATT_W queries), the
 *             queries in vector lanes (prefill); bitwise the same per query
 *             as attn_cpu (the fold order below);
 *   attn_gpu: one work-group of ATT_WG per (token, head), cells (in visiting
 *             order) in chunks of ATT_WG, one score per work-item,
 *             local-memory reductions. */

#include "kvcodec.cl" /* kv_bytes, kv_load4, kv_load1: the KV-row codec */

#ifndef HD
#error "attention.cl: build with -DHD=<head_dim>"
#endif
/* ATT_WG, ATT_G, ATT_C, ATT_W, ATT_CB (the sizes named above and below) come
 * as -D from src/cl/kconst.h, their one definition, which the host's launch
 * sizes (src/ops/ops.c) use too. ATT_C (attn_cpu cells per block, 8
 * measured alike) is one float4 of exps. */
#if !defined(ATT_WG) || !defined(ATT_G) || !defined(ATT_C) || !defined(ATT_W) || !defined(ATT_CB)
#error "attention.cl: ATT_* constants missing (the -D constants of src/cl/kconst.h)"
#endif
#if ATT_C != 4
#error "attention.cl: attn_cpu takes the exps of its ATT_C cells as one float4"
#endif
#if ATT_W != 16
#error "attention.cl: attn_cpu_t keeps its ATT_W queries in float16 lanes"
#endif

/* q8_0/q4_0 rows whose heads do not start on a block boundary (HD % 32 != 0). */
#define KV_SPLIT(T) (((T) == 8 || (T) == 2) && HD % 32 != 0)

/* Where kv head kvh of a cache row of type T starts: a byte offset into the
 * row (kv_head_bytes) plus an element index from there (kv_head_e0). When a
 * head may start inside a block (KV_SPLIT), the row itself and element
 * kvh * HD (the 4 elements kv_load4 reads never straddle a block: HD % 4 ==
 * 0); otherwise the head's own bytes and element 0, which folds the block
 * arithmetic at build time (the fast path). */
static size_t kv_head_bytes(int T, int kvh)
{
    return KV_SPLIT(T) ? 0 : kv_bytes(T, (size_t)kvh * HD);
}

static int kv_head_e0(int T, int kvh)
{
    return KV_SPLIT(T) ? kvh * HD : 0;
}

static bool att_visible(int c, __global const int *cell_pos, __global const ulong *cell_seq, int tp,
                        int ts, int causal)
{
    int cp = cell_pos[c];
    if (cp < 0 || (causal && cp > tp))
        return false;
    return ts >= 0 && ts < 64 && ((cell_seq[c] >> ts) & 1UL);
}

#define ATT_ARGS                                                                                    \
    __global const float *q, uint q_off, __global float *out, uint o_off, __global const uchar *kc, \
        __global const uchar *vc, __global const int *cell_pos, __global const ulong *cell_seq,     \
        __global const int *cell_order, int use_order, __global const int *token_pos,               \
        __global const int *token_seq, int n_tokens, int n_head, int n_kv_head, int n_cells,        \
        int causal, float scale

/* ---- CPU family: the one fold order of a query (attn_cpu and attn_cpu_t) ----
 * Both CPU kernels compute every query (token, q head) with exactly these
 * operations, whichever kernel, batch or vector lane it lands in, so the two
 * are bitwise interchangeable (the host picks by batch size):
 *   q = q * scale; the head is seen as HDC chunks of 16 elements (the last
 *   one padded with zeros); for each visible cell in visiting order:
 *   s16 = fma chain over the chunks j of q[16 j + i] * k[16 j + i] (lane i,
 *   from 0); s = cs_hsum16(s16);
 *   if s > m: corr = cs_att_exp(m - s), p = 1, m = s
 *   else:     corr = 1, p = cs_att_exp(s - m);
 *   l = fma(l, corr, p); acc = fma(p, v, acc * corr);
 *   out = acc * (l > 0 ? 1 / l : 0).
 * cs_att_exp is built from IEEE operations only (no library exp, whose
 * scalar and vector versions may differ). */

#define HDC ((HD + 15) / 16) /* 16-element chunks of a head */

/* Chunk j (elements 16 j .. 16 j + 15, zeros from HD on) of a head segment p
 * of type T whose head starts at element e0 (kv_head_e0). */
static float16 kv_load16(int T, __global const uchar *p, int e0, int j)
{
    if (HD % 16 == 0 && T == 0)
        return vload16(0, (__global const float *)p + e0 + 16 * j);
    if (HD % 16 == 0 && T == 1)
        return vload_half16(0, (__global const half *)p + e0 + 16 * j);
    float16 r = (float16)(0.0f);
    r.s0123 = kv_load4(T, p, e0 + 16 * j);
    if (16 * j + 4 < HD)
        r.s4567 = kv_load4(T, p, e0 + 16 * j + 4);
    if (16 * j + 8 < HD)
        r.s89ab = kv_load4(T, p, e0 + 16 * j + 8);
    if (16 * j + 12 < HD)
        r.scdef = kv_load4(T, p, e0 + 16 * j + 12);
    return r;
}

/* exp(x) for x <= 0 (as used: m - s or s - m): 0 below -87, else
 * 2^n p(r), n = rint(x / ln 2), r = x - n ln 2 (two-part ln 2), p the
 * degree-7 Taylor polynomial (relative error about 1e-7). */
#define CS_ATT_EXP(T, IT, CONV_INT, AS_T)                                                        \
    __attribute__((overloadable)) inline T cs_att_exp(T x)                                      \
    {                                                                                           \
        const T n = rint(x * 1.44269504088896341f);                                            \
        T r = fma(n, (T)(-0.693145751953125f), x);                                              \
        r = fma(n, (T)(-1.42860682030941723e-06f), r);                                          \
        T p = (T)(1.98412698e-4f);                                                              \
        p = fma(p, r, (T)(1.38888889e-3f));                                                     \
        p = fma(p, r, (T)(8.33333333e-3f));                                                     \
        p = fma(p, r, (T)(4.16666667e-2f));                                                     \
        p = fma(p, r, (T)(1.66666667e-1f));                                                     \
        p = fma(p, r, (T)(0.5f));                                                               \
        p = fma(p, r, (T)(1.0f));                                                               \
        p = fma(p, r, (T)(1.0f));                                                               \
        const IT e = (CONV_INT(max(n, (T)(-126.0f))) + 127) << 23;                              \
        return select(p * AS_T(e), (T)(0.0f), x < -87.0f);                                      \
    }
CS_ATT_EXP(float, int, convert_int, as_float)
CS_ATT_EXP(float16, int16, convert_int16, as_float16)
CS_ATT_EXP(float4, int4, convert_int4, as_float4)

/* Software prefetch of the K/V rows ATT_PF visiting-order entries ahead
 * (a hint: never faults, changes no bit). A kv head's rows sit a whole cache
 * row apart (n_kv_head * HD elements), further than the hardware prefetchers
 * follow across pages, so without it every cell waited on its rows (on
 * PoCL 3.1, 2 cores, 110M F16 pp2048: a third of attn_cpu_t's samples sat
 * on the K/V loads; with it the kernel takes about a quarter less CPU time).
 * Both CPU kernels; CS_PREFETCH of cl/common.cl. */
#define ATT_PF 8 /* visiting-order entries ahead */
/* every cache line of a head's K and V segments of cell c */
#define ATT_PF_CELL(c)                                                                   \
    do {                                                                                 \
        __global const uchar *kq_ = kc + (size_t)(c) * krow + khead;                    \
        __global const uchar *vq_ = vc + (size_t)(c) * vrow + vhead;                    \
        for (size_t o_ = 0; o_ < kv_bytes(KV_TK, HD); o_ += 64)                          \
            CS_PREFETCH(kq_ + o_);                                                      \
        for (size_t o_ = 0; o_ < kv_bytes(KV_TV, HD); o_ += 64)                          \
            CS_PREFETCH(vq_ + o_);                                                      \
    } while (0)

/* attn_cpu (decode and small batches): one work-item per (token, kv head,
 * chunk of up to ATT_G of the q heads sharing that kv head), so each K/V row
 * is read once per chunk; q and acc as 16-wide chunks along the head (the
 * loops over the chunk's heads unroll, so they stay in vector registers). */
__kernel void attn_cpu(ATT_ARGS)
{
    int group = n_head / n_kv_head, n_chunks = (group + ATT_G - 1) / ATT_G;
    int gid = get_global_id(0);
    if (gid >= n_tokens * n_kv_head * n_chunks)
        return;
    int chunk = gid % n_chunks, kvh = (gid / n_chunks) % n_kv_head;
    int t = gid / (n_chunks * n_kv_head);
    int h0 = kvh * group + chunk * ATT_G, ng = min(ATT_G, group - chunk * ATT_G);
    int tp = token_pos[t], ts = token_seq[t];
    size_t krow = kv_bytes(KV_TK, n_kv_head * HD), khead = kv_head_bytes(KV_TK, kvh);
    size_t vrow = kv_bytes(KV_TV, n_kv_head * HD), vhead = kv_head_bytes(KV_TV, kvh);
    int ke0 = kv_head_e0(KV_TK, kvh), ve0 = kv_head_e0(KV_TV, kvh);

    float16 qv[ATT_G][HDC], acc[ATT_G][HDC];
    float m[ATT_G], l[ATT_G];
    _Pragma("unroll") for (int g = 0; g < ATT_G; g++) {
        __global const float *qr = q + q_off + ((size_t)t * n_head + h0 + min(g, ng - 1)) * HD;
        _Pragma("unroll") for (int j = 0; j < HDC; j++) {
            float16 x = (float16)(0.0f);
            if (HD % 16 == 0 || 16 * j + 16 <= HD)
                x = vload16(j, qr);
            else
                for (int i = 0; 16 * j + i < HD; i++)
                    x[i] = qr[16 * j + i];
            qv[g][j] = x * scale;
            acc[g][j] = (float16)(0.0f);
        }
        m[g] = -INFINITY;
        l[g] = 0.0f;
    }
    /* blocks of up to ATT_C visible cells: their scores are independent
     * (ILP), their exps one vector op; the softmax state and acc are then
     * updated cell by cell in visiting order, as the fold order says */
    for (int i = 0; i < n_cells;) {
        int cl[ATT_C], nb = 0;
        for (; i < n_cells && nb < ATT_C; i++) {
            if (i + ATT_PF < n_cells)
                ATT_PF_CELL(use_order ? cell_order[i + ATT_PF] : i + ATT_PF);
            const int c = use_order ? cell_order[i] : i;
            if (att_visible(c, cell_pos, cell_seq, tp, ts, causal))
                cl[nb++] = c;
        }
        if (nb == 0)
            break;
        float sc[ATT_G][ATT_C];
        _Pragma("unroll") for (int b = 0; b < ATT_C; b++) if (b < nb) {
            __global const uchar *kp = kc + (size_t)cl[b] * krow + khead;
            float16 s16[ATT_G];
            _Pragma("unroll") for (int g = 0; g < ATT_G; g++) s16[g] = (float16)(0.0f);
            _Pragma("unroll") for (int j = 0; j < HDC; j++) {
                const float16 k16 = kv_load16(KV_TK, kp, ke0, j);
                _Pragma("unroll") for (int g = 0; g < ATT_G; g++) if (g < ng)
                    s16[g] = fma(qv[g][j], k16, s16[g]);
            }
            _Pragma("unroll") for (int g = 0; g < ATT_G; g++) sc[g][b] = cs_hsum16(s16[g]);
        }
        float corr[ATT_G][ATT_C], p[ATT_G][ATT_C];
        _Pragma("unroll") for (int g = 0; g < ATT_G; g++) if (g < ng) {
            float arg[ATT_C];
            int gtb[ATT_C];
            _Pragma("unroll") for (int b = 0; b < ATT_C; b++) {
                const float s = b < nb ? sc[g][b] : -INFINITY;
                gtb[b] = s > m[g];
                arg[b] = gtb[b] ? m[g] - s : s - m[g];
                m[g] = gtb[b] ? s : m[g];
            }
            float ea[ATT_C];
            vstore4(cs_att_exp(vload4(0, arg)), 0, ea); /* ATT_C lanes */
            _Pragma("unroll") for (int b = 0; b < ATT_C; b++) {
                corr[g][b] = gtb[b] ? ea[b] : 1.0f;
                p[g][b] = gtb[b] ? 1.0f : ea[b];
            }
        }
        _Pragma("unroll") for (int b = 0; b < ATT_C; b++) if (b < nb) {
            __global const uchar *vp = vc + (size_t)cl[b] * vrow + vhead;
            _Pragma("unroll") for (int g = 0; g < ATT_G; g++) if (g < ng)
                l[g] = fma(l[g], corr[g][b], p[g][b]);
            _Pragma("unroll") for (int j = 0; j < HDC; j++) {
                const float16 v16 = kv_load16(KV_TV, vp, ve0, j);
                _Pragma("unroll") for (int g = 0; g < ATT_G; g++) if (g < ng)
                    acc[g][j] = fma(p[g][b], v16, acc[g][j] * corr[g][b]);
            }
        }
    }
    _Pragma("unroll") for (int g = 0; g < ATT_G; g++) if (g < ng) {
        const float inv = l[g] > 0.0f ? 1.0f / l[g] : 0.0f;
        __global float *orow = out + o_off + ((size_t)t * n_head + h0 + g) * HD;
        _Pragma("unroll") for (int j = 0; j < HDC; j++) {
            const float16 o = acc[g][j] * inv;
            if (HD % 16 == 0 || 16 * j + 16 <= HD)
                vstore16(o, j, orow);
            else
                for (int i = 0; 16 * j + i < HD; i++)
                    orow[16 * j + i] = o[i];
        }
    }
}

/* attn_cpu_t (prefill, larger batches): one work-item per (kv head, tile of
 * ATT_W queries of that kv head), query j = (token j / group, q head
 * kvh * group + j % group); the queries are the 16 lanes of float16 vectors,
 * so every K/V row is decoded once per tile and the softmax runs 16 wide.
 * Lanes a cell is invisible to keep their state (select). Heavier tiles
 * (later tokens) come first. With use_order (cells occupied first, by
 * ascending position: kv.c build_order) a causal tile stops at the first
 * cell past its last position.
 * Cells go in blocks of up to ATT_CB visible ones: the block's K and V
 * rows are gathered (prefetched ATT_PF entries ahead), the scores of all its
 * cells computed together (each q chunk loaded once per block), then the
 * softmax state of each cell in turn (m, l and its p and corr), then one
 * pass over acc that applies the block's cells in turn, so acc is loaded and
 * stored once per block instead of once per cell. Every lane sees exactly
 * the per-cell operations of the fold order (corr = 1 where the maximum did
 * not move, and x * 1 = x), so blocking changes no bit. On 110M F16 pp2048
 * (PoCL 3.1, 2 cores, perf) this layout and the prefetch took the kernel's
 * CPU samples down by about a quarter (1,200 against 1,600-2,060 per run;
 * the prefetch did most of it). */
/* ATT_CB: cells per acc pass (2 and 8 measured alike) */
__kernel void attn_cpu_t(ATT_ARGS)
{
    const int group = n_head / n_kv_head, nq = n_tokens * group, n_tiles = (nq + ATT_W - 1) / ATT_W;
    const int gid = get_global_id(0);
    if (gid >= n_tiles * n_kv_head)
        return;
    const int kvh = gid % n_kv_head, j0 = (n_tiles - 1 - gid / n_kv_head) * ATT_W;
    size_t krow = kv_bytes(KV_TK, n_kv_head * HD), khead = kv_head_bytes(KV_TK, kvh);
    size_t vrow = kv_bytes(KV_TV, n_kv_head * HD), vhead = kv_head_bytes(KV_TV, kvh);
    int ke0 = kv_head_e0(KV_TK, kvh), ve0 = kv_head_e0(KV_TV, kvh);

    float16 qT[HDC * 16], acc[HD]; /* qT padded with zeros to whole chunks */
    int tpa[ATT_W], va[ATT_W];
    ulong sma[ATT_W];
    int max_tp = -1;
    for (int j = 0; j < ATT_W; j++) {
        const int qj = j0 + j, ok = qj < nq, t = ok ? qj / group : 0, ts = ok ? token_seq[t] : -1;
        tpa[j] = ok ? token_pos[t] : -1;
        va[j] = ok ? -1 : 0;
        sma[j] = ok && ts >= 0 && ts < 64 ? 1UL << ts : 0UL;
        max_tp = max(max_tp, tpa[j]);
    }
    const int16 tp = vload16(0, tpa), valid = vload16(0, va);
    const ulong16 sm = vload16(0, sma);
    /* transpose the tile's q rows into qT (lane j = query j), a row at a time */
    float *qf = (float *)qT;
    for (int j = 0; j < ATT_W; j++) {
        const int qj = min(j0 + j, nq - 1), t = qj / group, h = kvh * group + qj % group;
        __global const float *qr = q + q_off + ((size_t)t * n_head + h) * HD;
        for (int d = 0; d < HD; d++)
            qf[16 * d + j] = qr[d];
    }
    for (int d = 0; d < HD; d++) {
        qT[d] *= scale;
        acc[d] = (float16)(0.0f);
    }
    for (int d = HD; d < HDC * 16; d++)
        qT[d] = (float16)(0.0f);
    float16 m = (float16)(-INFINITY), l = (float16)(0.0f);
    float kf[ATT_CB][HDC * 16], vf[ATT_CB][HD];
    for (int b = 0; b < ATT_CB; b++) /* rows past a short block's end: scored, never used */
        for (int d = 0; d < HDC * 16; d++)
            kf[b][d] = 0.0f;
    for (int i = 0; i < n_cells;) {
        float16 pb[ATT_CB], cb[ATT_CB];
        int16 vb[ATT_CB];
        int nb = 0, all_vis = 1, any_gt = 0;
        /* the block: up to ATT_CB visible cells in visiting order, K rows to kf */
        for (; i < n_cells && nb < ATT_CB; i++) {
            if (i + ATT_PF < n_cells)
                ATT_PF_CELL(use_order ? cell_order[i + ATT_PF] : i + ATT_PF);
            const int c = use_order ? cell_order[i] : i, cp = cell_pos[c];
            if (cp < 0)
                continue;
            if (use_order && causal && cp > max_tp) {
                i = n_cells; /* no later cell is visible to this tile */
                break;
            }
            int16 vis = valid & convert_int16((cell_seq[c] & sm) != 0UL);
            if (causal)
                vis &= (int16)cp <= tp;
            if (!any(vis))
                continue;
            __global const uchar *kp = kc + (size_t)c * krow + khead;
            __global const uchar *vp = vc + (size_t)c * vrow + vhead;
            _Pragma("unroll") for (int j = 0; j < HDC; j++)
                vstore16(kv_load16(KV_TK, kp, ke0, j), j, kf[nb]);
            if (HD % 16 == 0)
                _Pragma("unroll") for (int j = 0; j < HD / 16; j++)
                    vstore16(kv_load16(KV_TV, vp, ve0, j), j, vf[nb]);
            else
                for (int j = 0; j < HD / 4; j++)
                    vstore4(kv_load4(KV_TV, vp, ve0 + 4 * j), j, vf[nb]);
            vb[nb] = vis;
            all_vis &= all(vis);
            nb++;
        }
        if (nb == 0)
            break;
        /* the block's scores, all ATT_CB rows at once (each q chunk loaded
         * once for them). Lane i of attn_cpu's s16 is the fma chain ch(i)
         * over the chunks; cs_hsum16's tree adds ch(i) + ch(i + 8), then
         * + (ch(i + 4) + ch(i + 12)), then (u0 + u1) + (u2 + u3): the same
         * operations on the same values, grouped by i = 0..3 (so the
         * chains of 4 rows fit in registers) */
        float16 u[ATT_CB][4];
        _Pragma("unroll") for (int i4 = 0; i4 < 4; i4++) {
            float16 a[ATT_CB][4];
            _Pragma("unroll") for (int b = 0; b < ATT_CB; b++)
                _Pragma("unroll") for (int r = 0; r < 4; r++)
                    a[b][r] = (float16)(0.0f);
            _Pragma("unroll") for (int j = 0; j < HDC; j++)
                _Pragma("unroll") for (int r = 0; r < 4; r++) {
                    const float16 qv = qT[16 * j + i4 + 4 * r];
                    _Pragma("unroll") for (int b = 0; b < ATT_CB; b++)
                        a[b][r] = fma(qv, kf[b][16 * j + i4 + 4 * r], a[b][r]);
                }
            _Pragma("unroll") for (int b = 0; b < ATT_CB; b++)
                u[b][i4] = (a[b][0] + a[b][2]) + (a[b][1] + a[b][3]);
        }
        /* the softmax state, cell by cell in visiting order (the running
         * maximum first: the exps then do not wait on each other) */
        float16 arg[ATT_CB];
        int16 gtb[ATT_CB];
        for (int b = 0; b < nb; b++) {
            const float16 s = (u[b][0] + u[b][1]) + (u[b][2] + u[b][3]);
            const int16 gt = vb[b] & (s > m);
            arg[b] = select(s - m, m - s, gt);
            m = select(m, s, gt);
            gtb[b] = gt;
            any_gt |= any(gt);
        }
        for (int b = 0; b < nb; b++) {
            const float16 e = cs_att_exp(arg[b]);
            const float16 corr = select((float16)(1.0f), e, gtb[b]); /* 1 where m stays */
            const float16 p = select(select((float16)(0.0f), e, vb[b]), (float16)(1.0f), gtb[b]);
            l = fma(l, corr, p);
            pb[b] = p;
            cb[b] = corr;
        }
        /* per cell: acc = fma(p, v, acc * corr) in the lanes it is visible to */
        if (nb == ATT_CB && all_vis && !any_gt) {
            for (int d = 0; d < HD; d++) {
                float16 a = acc[d];
                _Pragma("unroll") for (int b = 0; b < ATT_CB; b++)
                    a = fma(pb[b], vf[b][d], a);
                acc[d] = a;
            }
        } else if (nb == ATT_CB && all_vis) {
            for (int d = 0; d < HD; d++) {
                float16 a = acc[d];
                _Pragma("unroll") for (int b = 0; b < ATT_CB; b++)
                    a = fma(pb[b], vf[b][d], a * cb[b]);
                acc[d] = a;
            }
        } else {
            for (int b = 0; b < nb; b++)
                for (int d = 0; d < HD; d++)
                    acc[d] = select(acc[d], fma(pb[b], vf[b][d], acc[d] * cb[b]), vb[b]);
        }
    }
    const float16 inv = select((float16)(0.0f), 1.0f / l, l > 0.0f);
    for (int d = 0; d < HD; d++)
        acc[d] *= inv;
    const float *af = (const float *)acc;
    for (int j = 0; j < ATT_W && j0 + j < nq; j++) {
        const int qj = j0 + j, t = qj / group, h = kvh * group + qj % group;
        __global float *orow = out + o_off + ((size_t)t * n_head + h) * HD;
        for (int d = 0; d < HD; d++)
            orow[d] = af[16 * d + j];
    }
}

#define ATT_PER_WI ((HD + ATT_WG - 1) / ATT_WG)

__kernel __attribute__((reqd_work_group_size(ATT_WG, 1, 1))) void attn_gpu(ATT_ARGS)
{
    __local float qs[HD];
    __local float ps[ATT_WG];
    __local float red[ATT_WG];
    __local int cell[ATT_WG];
    int gid = get_group_id(0), lid = get_local_id(0);
    int t = gid / n_head, h = gid % n_head;
    int kvh = h / (n_head / n_kv_head);
    int tp = token_pos[t], ts = token_seq[t];
    size_t krow = kv_bytes(KV_TK, n_kv_head * HD), khead = kv_head_bytes(KV_TK, kvh);
    size_t vrow = kv_bytes(KV_TV, n_kv_head * HD), vhead = kv_head_bytes(KV_TV, kvh);
    int ke0 = kv_head_e0(KV_TK, kvh), ve0 = kv_head_e0(KV_TV, kvh);
    __global const float *qr = q + q_off + (size_t)gid * HD;
    for (int i = lid; i < HD; i += ATT_WG)
        qs[i] = qr[i] * scale;
    barrier(CLK_LOCAL_MEM_FENCE);

    float acc[ATT_PER_WI];
    for (int j = 0; j < ATT_PER_WI; j++)
        acc[j] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int c0 = 0; c0 < n_cells; c0 += ATT_WG) {
        int i = c0 + lid;
        int c = i < n_cells ? (use_order ? cell_order[i] : i) : 0;
        cell[lid] = c;
        float s = -INFINITY;
        if (i < n_cells && att_visible(c, cell_pos, cell_seq, tp, ts, causal)) {
            __global const uchar *kp = kc + (size_t)c * krow + khead;
            float4 s4 = (float4)(0.0f);
            for (int i = 0; i < HD / 4; i++)
                s4 += vload4(i, qs) * kv_load4(KV_TK, kp, ke0 + 4 * i);
            s = s4.x + s4.y + s4.z + s4.w;
        }
        float cmax = cs_wg_max(s, red); /* its barriers also publish cell */
        if (cmax == -INFINITY)
            continue; /* uniform: no visible cell in this chunk */
        float m_new = fmax(m, cmax);
        float corr = exp(m - m_new);
        float p = s == -INFINITY ? 0.0f : exp(s - m_new);
        ps[lid] = p;
        float psum = cs_wg_sum(p, red); /* its barriers also publish ps */
        l = l * corr + psum;
        m = m_new;
        int nc = min(ATT_WG, n_cells - c0);
        for (int j = 0; j < ATT_PER_WI; j++) {
            int dd = lid + j * ATT_WG;
            if (dd >= HD)
                break;
            float a = acc[j] * corr;
            for (int jj = 0; jj < nc; jj++) {
                float pj = ps[jj];
                if (pj != 0.0f)
                    a += pj * kv_load1(KV_TV, vc + (size_t)cell[jj] * vrow + vhead, ve0 + dd);
            }
            acc[j] = a;
        }
        barrier(CLK_LOCAL_MEM_FENCE); /* ps and cell are rewritten by the next chunk */
    }
    float inv = l > 0.0f ? 1.0f / l : 0.0f;
    __global float *orow = out + o_off + (size_t)gid * HD;
    for (int j = 0; j < ATT_PER_WI; j++) {
        int dd = lid + j * ATT_WG;
        if (dd < HD)
            orow[dd] = acc[j] * inv;
    }
}

/* attn_gpu_t (GPU family, prefill): one work-group of ATT_WG per (tile of
 * ATT_GQ consecutive tokens, q head). Every query of the tile goes through
 * exactly attn_gpu's operations (the same chunks of ATT_WG visiting-order
 * entries, scores as float4 chains, the same work-group max and sum trees,
 * the same acc updates), so its row is bitwise attn_gpu's: the host picks
 * this kernel for batches of ATT_GQ tokens or more without changing a bit.
 * What the tile shares: each work-item loads its chunk cell's K row once
 * into registers for the ATT_GQ queries (attn_gpu: once per query), and the
 * chunk's V rows are read ATT_GQ times back to back (from cache). With
 * use_order and causal, the chunks that start past the tile's last position
 * are skipped (every cell of them is invisible to every query of the tile,
 * and attn_gpu skips an invisible chunk without a change of state). */
#if !defined(ATT_GQ)
#error "attention.cl: ATT_GQ (queries per attn_gpu_t tile) missing (src/ops/ops.c's attention_extra)"
#endif

__kernel __attribute__((reqd_work_group_size(ATT_WG, 1, 1))) void attn_gpu_t(ATT_ARGS)
{
    __local float qs[ATT_GQ][HD];
    __local float ps[ATT_WG];
    __local float red[ATT_WG];
    __local int cell[ATT_WG];
    const int gid = get_group_id(0), lid = get_local_id(0);
    const int t0 = (gid / n_head) * ATT_GQ, h = gid % n_head;
    const int nq = min(ATT_GQ, n_tokens - t0);
    const int kvh = h / (n_head / n_kv_head);
    size_t krow = kv_bytes(KV_TK, n_kv_head * HD), khead = kv_head_bytes(KV_TK, kvh);
    size_t vrow = kv_bytes(KV_TV, n_kv_head * HD), vhead = kv_head_bytes(KV_TV, kvh);
    int ke0 = kv_head_e0(KV_TK, kvh), ve0 = kv_head_e0(KV_TV, kvh);
    int max_tp = -1;
    for (int g = 0; g < nq; g++) {
        __global const float *qr = q + q_off + ((size_t)(t0 + g) * n_head + h) * HD;
        for (int i = lid; i < HD; i += ATT_WG)
            qs[g][i] = qr[i] * scale;
        max_tp = max(max_tp, token_pos[t0 + g]);
    }
    barrier(CLK_LOCAL_MEM_FENCE);

    float acc[ATT_GQ][ATT_PER_WI], m[ATT_GQ], l[ATT_GQ];
    for (int g = 0; g < ATT_GQ; g++) {
        for (int j = 0; j < ATT_PER_WI; j++)
            acc[g][j] = 0.0f;
        m[g] = -INFINITY;
        l[g] = 0.0f;
    }
    for (int c0 = 0; c0 < n_cells; c0 += ATT_WG) {
        if (use_order && causal) { /* uniform: sorted by position, occupied cells first */
            const int p0 = cell_pos[cell_order[c0]];
            if (p0 < 0 || p0 > max_tp)
                break;
        }
        const int i = c0 + lid;
        const int c = i < n_cells ? (use_order ? cell_order[i] : i) : 0;
        float4 kr[HD / 4];
        __global const uchar *kp = kc + (size_t)c * krow + khead;
        if (i < n_cells)
            for (int d = 0; d < HD / 4; d++)
                kr[d] = kv_load4(KV_TK, kp, ke0 + 4 * d);
        const int nc = min(ATT_WG, n_cells - c0);
        for (int g = 0; g < nq; g++) {
            cell[lid] = c;
            const int tp = token_pos[t0 + g], ts = token_seq[t0 + g];
            float s = -INFINITY;
            if (i < n_cells && att_visible(c, cell_pos, cell_seq, tp, ts, causal)) {
                float4 s4 = (float4)(0.0f);
                for (int d = 0; d < HD / 4; d++)
                    s4 += vload4(d, qs[g]) * kr[d];
                s = s4.x + s4.y + s4.z + s4.w;
            }
            float cmax = cs_wg_max(s, red); /* its barriers also publish cell */
            if (cmax == -INFINITY)
                continue; /* uniform: no visible cell for this query in this chunk */
            float m_new = fmax(m[g], cmax);
            float corr = exp(m[g] - m_new);
            float p = s == -INFINITY ? 0.0f : exp(s - m_new);
            ps[lid] = p;
            float psum = cs_wg_sum(p, red); /* its barriers also publish ps */
            l[g] = l[g] * corr + psum;
            m[g] = m_new;
            for (int j = 0; j < ATT_PER_WI; j++) {
                int dd = lid + j * ATT_WG;
                if (dd >= HD)
                    break;
                float a = acc[g][j] * corr;
                for (int jj = 0; jj < nc; jj++) {
                    float pj = ps[jj];
                    if (pj != 0.0f)
                        a += pj * kv_load1(KV_TV, vc + (size_t)cell[jj] * vrow + vhead, ve0 + dd);
                }
                acc[g][j] = a;
            }
            barrier(CLK_LOCAL_MEM_FENCE); /* ps and cell are rewritten by the next query */
        }
    }
    for (int g = 0; g < nq; g++) {
        float inv = l[g] > 0.0f ? 1.0f / l[g] : 0.0f;
        __global float *orow = out + o_off + ((size_t)(t0 + g) * n_head + h) * HD;
        for (int j = 0; j < ATT_PER_WI; j++) {
            int dd = lid + j * ATT_WG;
            if (dd < HD)
                orow[dd] = acc[g][j] * inv;
        }
    }
}
