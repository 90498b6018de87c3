/* dflashutil.c: see dflashutil.h. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "base/common.h"
#include "dflashutil.h"
#include "gguf/gguf_write.h"
#include "gguf/quant.h"
#include "testutil.h"

struct syn_t {
    const char *name;
    uint64_t ne0, ne1;
    float scale;          /* N(0, scale) entries; 0: all ones (norm weights) */
};

void dfu_write_synth_drafter(const char *path)
{
    const struct syn_t t[] = {
        {"fc.weight", 2 * DFU_SYN_E, DFU_SYN_E, 0.06f},        {"enc.output_norm.weight", DFU_SYN_E, 1, 0},
        {"output_norm.weight", DFU_SYN_E, 1, 0},           {"blk.0.attn_norm.weight", DFU_SYN_E, 1, 0},
        {"blk.0.attn_q.weight", DFU_SYN_E, 8 * DFU_SYN_D, 0.06f}, {"blk.0.attn_k.weight", DFU_SYN_E, 4 * DFU_SYN_D, 0.06f},
        {"blk.0.attn_v.weight", DFU_SYN_E, 4 * DFU_SYN_D, 0.06f}, {"blk.0.attn_output.weight", 8 * DFU_SYN_D, DFU_SYN_E, 0.06f},
        {"blk.0.attn_q_norm.weight", DFU_SYN_D, 1, 0},     {"blk.0.attn_k_norm.weight", DFU_SYN_D, 1, 0},
        {"blk.0.ffn_norm.weight", DFU_SYN_E, 1, 0},        {"blk.0.ffn_gate.weight", DFU_SYN_E, DFU_SYN_F, 0.06f},
        {"blk.0.ffn_up.weight", DFU_SYN_E, DFU_SYN_F, 0.06f},  {"blk.0.ffn_down.weight", DFU_SYN_F, DFU_SYN_E, 0.05f},
    };
    char err[CLSPEC_ERRLEN];
    struct cs_gguf_writer *w = NULL;
    assert_int_equal(cs_gguf_writer_new(path, &w, err, sizeof err), CLSPEC_OK);
    const int32_t taps[2] = {1, 4};
    int rc = cs_gguf_add_str(w, "general.architecture", "dflash", err, sizeof err);
    rc |= cs_gguf_add_u32(w, "dflash.block_count", 1, err, sizeof err);
    rc |= cs_gguf_add_u32(w, "dflash.embedding_length", DFU_SYN_E, err, sizeof err);
    rc |= cs_gguf_add_u32(w, "dflash.feed_forward_length", DFU_SYN_F, err, sizeof err);
    rc |= cs_gguf_add_u32(w, "dflash.attention.head_count", 8, err, sizeof err);
    rc |= cs_gguf_add_u32(w, "dflash.attention.head_count_kv", 4, err, sizeof err);
    rc |= cs_gguf_add_u32(w, "dflash.attention.key_length", DFU_SYN_D, err, sizeof err);
    rc |= cs_gguf_add_f32(w, "dflash.attention.layer_norm_rms_epsilon", 1e-5f, err, sizeof err);
    rc |= cs_gguf_add_f32(w, "dflash.rope.freq_base", 10000.0f, err, sizeof err);
    rc |= cs_gguf_add_arr(w, "dflash.target_layers", CS_GGUF_I32, taps, 2, err, sizeof err);
    rc |= cs_gguf_add_u32(w, "dflash.block_size", 8, err, sizeof err);
    rc |= cs_gguf_add_bool(w, "dflash.attention.causal", false, err, sizeof err);
    rc |= cs_gguf_add_u32(w, "tokenizer.ggml.mask_token_id", 0, err, sizeof err);
    assert_int_equal(rc, 0);
    float *data[CS_ARRAY_LEN(t)];
    struct tu_rng r;
    tu_rng_seed(&r, 77);
    for (size_t i = 0; i < CS_ARRAY_LEN(t); i++) {
        size_t n = (size_t)(t[i].ne0 * t[i].ne1);
        data[i] = malloc(n * sizeof(float));
        for (size_t j = 0; j < n; j++)
            data[i][j] = t[i].scale > 0 ? t[i].scale * tu_rng_normal(&r) : 1.0f;
        const uint64_t ne[2] = {t[i].ne0, t[i].ne1};
        if (cs_gguf_add_tensor(w, t[i].name, t[i].ne1 > 1 ? 2 : 1, ne, CS_TYPE_F32, data[i], NULL, NULL, err,
                               sizeof err) != CLSPEC_OK)
            fail_msg("%s", err);
    }
    if (cs_gguf_writer_finish(w, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    cs_gguf_writer_free(w);
    for (size_t i = 0; i < CS_ARRAY_LEN(t); i++)
        free(data[i]);
}


char *dfu_syn_path;

int dfu_synth_setup(void **state)
{
    (void)state;
    dfu_syn_path = tu_tmp_path("-dflash-synth.gguf");
    dfu_write_synth_drafter(dfu_syn_path);
    return 0;
}

int dfu_synth_teardown(void **state)
{
    (void)state;
    remove(dfu_syn_path);
    free(dfu_syn_path);
    dfu_syn_path = NULL;
    return 0;
}
