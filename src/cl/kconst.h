/* kconst.h: the one definition of every compile-time constant of the kernels
 * in cl/ (work-group sizes, tile sizes, block and row-per-item counts).
 * The runtime passes each to every program build as -D NAME=value (the
 * device's build_opts, so the binary cache key covers them); the host uses
 * the same names (enum below) to size its launches. A kernel file that needs
 * one guards it with #ifndef NAME / #error, so a build without the flags
 * fails loudly instead of falling back to a second copy of the value.
 * Changing a value here changes both sides at once; the kernels' own
 * constraints on it are checked there with #error. */
#ifndef CS_CL_KCONST_H
#define CS_CL_KCONST_H

/* X(NAME, value): the table. */
#define CS_KCONSTS(X)                                                                        \
    X(NORM_WG, 256)      /* norm.cl GPU family: largest local size (its __local arrays) */  \
    X(ATT_WG, 64)        /* attention.cl attn_gpu: local size, cells per chunk */           \
    X(ATT_G, 4)          /* attention.cl attn_cpu: q heads per work-item */                 \
    X(ATT_C, 4)          /* attention.cl attn_cpu: visible cells per block (one float4) */  \
    X(ATT_W, 16)         /* attention.cl attn_cpu_t: queries per tile (float16 lanes) */    \
    X(ATT_CB, 4)         /* attention.cl attn_cpu_t: cells per acc pass */                  \
    X(CS_MM_WG, 64)      /* matmul.cl GPU family: local size, one row per work-group */     \
    X(CS_MM_TC, 16)      /* matmul.cl GPU mm_T: columns per work-group */                   \
    X(CS_MM_TCC, 8)      /* matmul.cl CPU mm_T: columns per work-item */                    \
    X(CS_MM2_TCC, 4)     /* matmul.cl CPU mm2_T: columns per work-item */                   \
    X(CS_MV_ROWS, 2)     /* matmul.cl CPU mv_T, mv3_T, mvswiglu_T, mm2_T: rows per item */  \
    X(CS_PF_AHEAD, 6912) /* matmul.cl CPU mat-vecs: prefetch distance in bytes */

#define CS_KCONST_ENUM_(name, value) name = (value),
enum cs_kconst { CS_KCONSTS(CS_KCONST_ENUM_) };
#undef CS_KCONST_ENUM_

#endif
