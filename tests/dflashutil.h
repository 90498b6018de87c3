/* dflashutil.h: shared by test-dflash-fwd and test-dflash: fixture paths and
 * a random (seeded) 1-layer dflash drafter for synth-256 (head_dim 32: the
 * KV types q8_0/q4_0 need head_dim % 32 == 0). */
#ifndef CS_TEST_DFLASHUTIL_H
#define CS_TEST_DFLASHUTIL_H

#define DFU_TARGET "models/stories260K.gguf"
#define DFU_DRAFTER "models/derived/stories260K-dflash.gguf"
#define DFU_SYN_TARGET "models/synthetic/synth-256-Q8_0.gguf"
#define DFU_SYN_E 256 /* the synthetic drafter: dim, head_dim, FFN */
#define DFU_SYN_D 32
#define DFU_SYN_F 384

/* Writes the synthetic drafter to path (taps [1, 4], 8/4 heads of 32, FFN
 * 384, block_size 8, F32); fails the test on error. */
void dfu_write_synth_drafter(const char *path);
/* cmocka group setup / teardown: dfu_synth_setup writes the synthetic
 * drafter to a temporary file, dfu_syn_path (malloc'd); dfu_synth_teardown
 * removes it and frees the path. */
extern char *dfu_syn_path;
int dfu_synth_setup(void **state);
int dfu_synth_teardown(void **state);

#endif
