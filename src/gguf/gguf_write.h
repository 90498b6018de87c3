/* gguf_write.h: a streaming GGUF v3 writer (little-endian hosts).
 * Metadata and tensor infos are kept in memory until cs_gguf_writer_finish, which
 * writes the header and then each tensor's data in turn (from the caller's buffer,
 * which must live until finish, or from a fill callback, chunk by chunk), so a
 * model never has to be in memory whole. The caller owns the writer (free it). */
#ifndef CS_GGUF_WRITE_H
#define CS_GGUF_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"

struct cs_gguf_writer;

/* Fills rows [row0, row0 + n_rows) of a tensor into dst (n_rows * row_bytes
 * bytes; a row is ne[0] elements of the tensor's type). Called in increasing
 * row order, each row exactly once. Returns CLSPEC_OK or a negative status
 * with a message in err. */
typedef int (*cs_gguf_fill_fn)(void *user, uint64_t row0, uint64_t n_rows, void *dst,
                               char *err, size_t errlen);

/* Starts a writer for path (the file is created at finish). */
int cs_gguf_writer_new(const char *path, struct cs_gguf_writer **out, char *err, size_t errlen);
void cs_gguf_writer_free(struct cs_gguf_writer *w);

/* Metadata, in the order added. Keys must be unique. "general.alignment"
 * (u32, a power of two) sets the data alignment (default 32). */
int cs_gguf_add_u8(struct cs_gguf_writer *w, const char *key, uint8_t v, char *err, size_t errlen);
int cs_gguf_add_i8(struct cs_gguf_writer *w, const char *key, int8_t v, char *err, size_t errlen);
int cs_gguf_add_u16(struct cs_gguf_writer *w, const char *key, uint16_t v, char *err, size_t errlen);
int cs_gguf_add_i16(struct cs_gguf_writer *w, const char *key, int16_t v, char *err, size_t errlen);
int cs_gguf_add_u32(struct cs_gguf_writer *w, const char *key, uint32_t v, char *err, size_t errlen);
int cs_gguf_add_i32(struct cs_gguf_writer *w, const char *key, int32_t v, char *err, size_t errlen);
int cs_gguf_add_u64(struct cs_gguf_writer *w, const char *key, uint64_t v, char *err, size_t errlen);
int cs_gguf_add_i64(struct cs_gguf_writer *w, const char *key, int64_t v, char *err, size_t errlen);
int cs_gguf_add_f32(struct cs_gguf_writer *w, const char *key, float v, char *err, size_t errlen);
int cs_gguf_add_f64(struct cs_gguf_writer *w, const char *key, double v, char *err, size_t errlen);
int cs_gguf_add_bool(struct cs_gguf_writer *w, const char *key, bool v, char *err, size_t errlen);
/* A NUL-terminated string, or len bytes of s with cs_gguf_add_strn. */
int cs_gguf_add_str(struct cs_gguf_writer *w, const char *key, const char *s, char *err, size_t errlen);
int cs_gguf_add_strn(struct cs_gguf_writer *w, const char *key, const char *s, uint64_t len,
                     char *err, size_t errlen);
/* An array of n scalars of type elem (not STRING/ARRAY), elements in host order. */
int cs_gguf_add_arr(struct cs_gguf_writer *w, const char *key, enum cs_gguf_type elem,
                    const void *data, uint64_t n, char *err, size_t errlen);
/* An array of n NUL-terminated strings. */
int cs_gguf_add_arr_str(struct cs_gguf_writer *w, const char *key, const char *const *strs,
                        uint64_t n, char *err, size_t errlen);
/* A KV of an opened file, copied verbatim (any type, arrays included). */
int cs_gguf_add_kv(struct cs_gguf_writer *w, const struct cs_gguf_kv *kv, char *err, size_t errlen);

/* A tensor: n_dims (1..4) extents ne (ne[0] innermost, a multiple of the
 * type's block size) of type (enum cs_type). Exactly one of data (the whole
 * tensor, caller-owned until finish) or fill (+ user) is given. */
int cs_gguf_add_tensor(struct cs_gguf_writer *w, const char *name, uint32_t n_dims,
                       const uint64_t *ne, uint32_t type, const void *data,
                       cs_gguf_fill_fn fill, void *user, char *err, size_t errlen);

/* Writes the file: header, metadata, tensor infos, then each tensor's data,
 * aligned. On error the partial file is removed and err names the path. */
int cs_gguf_writer_finish(struct cs_gguf_writer *w, char *err, size_t errlen);

#endif
