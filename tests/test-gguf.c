/* test-gguf.c: the GGUF reader: every shared model opens and known facts hold;
 * hostile files (truncated at every byte, absurd counts, bad fields) built in
 * memory from a real model and from a small hand-built GGUF fail cleanly with
 * a message naming the file; typed getters convert or refuse. */
#include "config.h"

#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "base/common.h"
#include "gguf/gguf.h"
#include "gguf/quant.h"
#include "testutil.h"

/* ---- a tiny GGUF writer (the bytes: testutil.h tu_buf) ---- */

static void patch_le(uint8_t *p, size_t at, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        p[at + i] = (uint8_t)(v >> (8 * i));
}

static void put_kv_head(struct tu_buf *b, const char *key, uint32_t type)
{
    tu_buf_str(b, key);
    tu_buf_le(b, type, 4);
}

static uint64_t f32b(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* What the hand-built file contains, and where its fields are (byte offsets). */
struct spec {
    uint32_t version;
    bool dup_key, dup_tensor, nested;
};
struct marks {
    size_t version, n_tensors, n_kv, first_key_len, str_len, boolv, arr_len, str_arr_len, arr_type, bool_arr0,
        align_val, align_type;
    size_t t0_ndims, t0_ne0, t0_ne1, t0_type, t0_off, t1_name_len, t1_ne0, t1_type, t1_off;
    size_t end_infos, data;
};

#define SMALL_NAME "small.gguf"

/* kvs of every scalar type and four arrays; tensors "a" (f32 [4,2]) and "b" (q8_0 [32]) */
static struct tu_buf build_small(const struct spec *sp, struct marks *m)
{
    struct tu_buf b = {0};
    uint64_t n_kv = 0;
    tu_buf_put(&b, "GGUF", 4);
    m->version = b.n;
    tu_buf_le(&b, sp->version ? sp->version : 3, 4);
    m->n_tensors = b.n;
    tu_buf_le(&b, 2, 8);
    m->n_kv = b.n;
    tu_buf_le(&b, 0, 8);
    m->first_key_len = b.n;
    put_kv_head(&b, "general.architecture", CS_GGUF_STRING), n_kv++;
    m->str_len = b.n;
    tu_buf_str(&b, "llama");
    put_kv_head(&b, "general.alignment", CS_GGUF_U32), n_kv++;
    m->align_type = b.n - 4;
    m->align_val = b.n;
    tu_buf_le(&b, 32, 4);
    put_kv_head(&b, "t.u8", CS_GGUF_U8), n_kv++, tu_buf_le(&b, 200, 1);
    put_kv_head(&b, "t.i8", CS_GGUF_I8), n_kv++, tu_buf_le(&b, (uint8_t)-5, 1);
    put_kv_head(&b, "t.u16", CS_GGUF_U16), n_kv++, tu_buf_le(&b, 60000, 2);
    put_kv_head(&b, "t.i16", CS_GGUF_I16), n_kv++, tu_buf_le(&b, (uint16_t)-300, 2);
    put_kv_head(&b, "t.u32", CS_GGUF_U32), n_kv++, tu_buf_le(&b, 4000000000u, 4);
    put_kv_head(&b, "t.i32", CS_GGUF_I32), n_kv++, tu_buf_le(&b, (uint32_t)-7, 4);
    put_kv_head(&b, "t.f32", CS_GGUF_F32), n_kv++, tu_buf_le(&b, f32b(1.5f), 4);
    put_kv_head(&b, "t.bool", CS_GGUF_BOOL), n_kv++;
    m->boolv = b.n;
    tu_buf_le(&b, 1, 1);
    put_kv_head(&b, "t.u64", CS_GGUF_U64), n_kv++, tu_buf_le(&b, 1ull << 40, 8);
    put_kv_head(&b, "t.u64big", CS_GGUF_U64), n_kv++, tu_buf_le(&b, UINT64_MAX, 8);
    put_kv_head(&b, "t.i64", CS_GGUF_I64), n_kv++, tu_buf_le(&b, (uint64_t)-(1ll << 40), 8);
    double dv = 0.25;
    uint64_t db;
    memcpy(&db, &dv, 8);
    put_kv_head(&b, "t.f64", CS_GGUF_F64), n_kv++, tu_buf_le(&b, db, 8);
    put_kv_head(&b, "t.arr_i32", CS_GGUF_ARRAY), n_kv++;
    m->arr_type = b.n;
    tu_buf_le(&b, CS_GGUF_I32, 4);
    m->arr_len = b.n;
    tu_buf_le(&b, 3, 8);
    tu_buf_le(&b, 1, 4), tu_buf_le(&b, (uint32_t)-2, 4), tu_buf_le(&b, 3, 4);
    put_kv_head(&b, "t.arr_str", CS_GGUF_ARRAY), n_kv++;
    tu_buf_le(&b, CS_GGUF_STRING, 4);
    m->str_arr_len = b.n;
    tu_buf_le(&b, 3, 8);
    tu_buf_str(&b, "ab"), tu_buf_str(&b, ""), tu_buf_str(&b, "xyz");
    put_kv_head(&b, "t.arr_bool", CS_GGUF_ARRAY), n_kv++;
    tu_buf_le(&b, CS_GGUF_BOOL, 4), tu_buf_le(&b, 2, 8);
    m->bool_arr0 = b.n;
    tu_buf_le(&b, 0, 1), tu_buf_le(&b, 1, 1);
    put_kv_head(&b, "t.arr_f32", CS_GGUF_ARRAY), n_kv++;
    tu_buf_le(&b, CS_GGUF_F32, 4), tu_buf_le(&b, 2, 8), tu_buf_le(&b, f32b(0.5f), 4), tu_buf_le(&b, f32b(-1), 4);
    if (sp->dup_key)
        put_kv_head(&b, "t.u8", CS_GGUF_U8), n_kv++, tu_buf_le(&b, 1, 1);
    if (sp->nested) {
        put_kv_head(&b, "t.nested", CS_GGUF_ARRAY), n_kv++;
        tu_buf_le(&b, CS_GGUF_ARRAY, 4), tu_buf_le(&b, 1, 8);
        tu_buf_le(&b, CS_GGUF_I32, 4), tu_buf_le(&b, 1, 8), tu_buf_le(&b, 5, 4);
    }
    patch_le(b.p, m->n_kv, n_kv, 8);
    /* tensor "a": f32 [4, 2] at 0 */
    tu_buf_str(&b, "a");
    m->t0_ndims = b.n;
    tu_buf_le(&b, 2, 4);
    m->t0_ne0 = b.n;
    tu_buf_le(&b, 4, 8);
    m->t0_ne1 = b.n;
    tu_buf_le(&b, 2, 8);
    m->t0_type = b.n;
    tu_buf_le(&b, CS_TYPE_F32, 4);
    m->t0_off = b.n;
    tu_buf_le(&b, 0, 8);
    /* tensor "b": q8_0 [32] at 32 */
    m->t1_name_len = b.n;
    tu_buf_str(&b, sp->dup_tensor ? "a" : "b");
    tu_buf_le(&b, 1, 4);
    m->t1_ne0 = b.n;
    tu_buf_le(&b, 32, 8);
    m->t1_type = b.n;
    tu_buf_le(&b, CS_TYPE_Q8_0, 4);
    m->t1_off = b.n;
    tu_buf_le(&b, 32, 8);
    m->end_infos = b.n;
    while (b.n % 32)
        tu_buf_le(&b, 0, 1);
    m->data = b.n;
    for (int i = 0; i < 8; i++)
        tu_buf_le(&b, f32b((float)i), 4);
    tu_buf_le(&b, cs_f32_to_f16(1.0f), 2);
    for (int i = 0; i < 32; i++)
        tu_buf_le(&b, (uint8_t)(i - 16), 1);
    return b;
}

static char err[CLSPEC_ERRLEN];

/* Opens len bytes copied into an exact-size heap block (so that a sanitizer
 * sees any over-read); returns the status and closes on success. */
static int try_open(const uint8_t *p, size_t len, const char *name)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len)
        memcpy(copy, p, len);
    struct cs_gguf *g = NULL;
    err[0] = '\0';
    int rc = cs_gguf_open_mem(copy, len, name, &g, err, sizeof err);
    if (rc == CLSPEC_OK)
        cs_gguf_close(g);
    else
        assert_null(g);
    free(copy);
    return rc;
}

/* Expects the failure with a message naming the file and containing what. */
static void expect_fail(const uint8_t *p, size_t len, const char *what)
{
    int rc = try_open(p, len, SMALL_NAME);
    if (rc == CLSPEC_OK)
        fail_msg("expected failure (%s), but it opened", what);
    assert_true(rc < 0);
    if (strncmp(err, SMALL_NAME ": ", strlen(SMALL_NAME) + 2) != 0 || (what && !strstr(err, what)))
        fail_msg("message '%s' does not name the file or say '%s'", err, what ? what : "");
}

/* Builds the small file, applies one patch, expects failure. */
static void expect_patch_fails(size_t at, uint64_t v, unsigned n, const char *what)
{
    struct spec sp = {0};
    struct marks m;
    struct tu_buf b = build_small(&sp, &m);
    patch_le(b.p, at, v, n);
    expect_fail(b.p, b.n, what);
    free(b.p);
}

/* ---- the shared models ---- */

static int open_tree(const char *dir, int *count)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        if (S_ISDIR(st.st_mode)) {
            open_tree(path, count);
            continue;
        }
        size_t nl = strlen(e->d_name);
        if (nl < 5 || strcmp(e->d_name + nl - 5, ".gguf"))
            continue;
        struct cs_gguf *g;
        if (cs_gguf_open(path, &g, err, sizeof err) != CLSPEC_OK)
            fail_msg("%s", err);
        assert_true(g->version == 2 || g->version == 3);
        assert_true(g->size == (uint64_t)st.st_size);
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            const struct cs_gguf_tensor *t = &g->tensors[i];
            assert_true((const uint8_t *)t->data >= g->base + g->data_offset);
            assert_true((const uint8_t *)t->data + t->size <= g->base + g->size);
            assert_true(t->n_elems == t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
            assert_ptr_equal(cs_gguf_find_tensor(g, t->name), t);
        }
        for (uint64_t i = 0; i < g->n_kv; i++)
            assert_ptr_equal(cs_gguf_find(g, g->kv[i].key), &g->kv[i]);
        cs_gguf_close(g);
        (*count)++;
    }
    closedir(d);
    return *count;
}

static void test_all_models_open(void **state)
{
    (void)state;
    char *dir = tu_shared_path("models");
    int count = 0;
    open_tree(dir, &count);
    free(dir);
    print_message("# %d GGUF files opened\n", count);
    assert_true(count >= 10);
}

static struct cs_gguf *open_shared(const char *rel)
{
    char *path = tu_shared_path(rel);
    struct cs_gguf *g;
    if (cs_gguf_open(path, &g, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    free(path);
    return g;
}

static void test_known_facts(void **state)
{
    (void)state;
    struct cs_gguf *g = open_shared("models/stories260K.gguf");
    assert_true(g->n_tensors == 48);
    uint32_t u = 0;
    assert_int_equal(cs_gguf_get_u32(g, "llama.block_count", &u, err, sizeof err), CLSPEC_OK);
    assert_int_equal(u, 5);
    const struct cs_gguf_kv *kv;
    assert_int_equal(cs_gguf_get_arr(g, "tokenizer.ggml.tokens", CS_GGUF_STRING, &kv, err, sizeof err), CLSPEC_OK);
    assert_true(kv->arr_n == 512);
    assert_true(kv->arr_str[1].len == 3 && !memcmp(kv->arr_str[1].ptr, "<s>", 3));
    char arch[32];
    assert_int_equal(cs_gguf_get_str(g, "general.architecture", arch, sizeof arch, err, sizeof err), CLSPEC_OK);
    assert_string_equal(arch, "llama");
    const struct cs_gguf_tensor *t = cs_gguf_find_tensor(g, "token_embd.weight");
    assert_non_null(t);
    assert_true(t->type == CS_TYPE_F32 && t->n_dims == 2 && t->ne[0] == 64 && t->ne[1] == 512);
    assert_null(cs_gguf_find_tensor(g, "nope"));
    cs_gguf_close(g);

    g = open_shared("models/TinyStories-656K-Q8_0.gguf");
    assert_true(g->n_tensors == 20);
    int q8 = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        q8 += g->tensors[i].type == CS_TYPE_Q8_0;
    assert_int_equal(q8, 15);
    cs_gguf_close(g);
}

/* ---- the hand-built file ---- */

static void test_small_valid(void **state)
{
    (void)state;
    for (uint32_t v = 2; v <= 3; v++) {
        struct spec sp = {.version = v};
        struct marks m;
        struct tu_buf b = build_small(&sp, &m);
        struct cs_gguf *g;
        if (cs_gguf_open_mem(b.p, b.n, SMALL_NAME, &g, err, sizeof err) != CLSPEC_OK)
            fail_msg("%s", err);
        assert_int_equal(g->version, v);
        assert_true(g->n_kv == 18 && g->n_tensors == 2 && g->alignment == 32 && g->data_offset == m.data);
        const struct cs_gguf_tensor *a = cs_gguf_find_tensor(g, "a"), *bt = cs_gguf_find_tensor(g, "b");
        assert_true(a->size == 32 && bt->size == 34 && a->n_elems == 8 && a->ne[2] == 1 && a->ne[3] == 1);
        float x[32];
        assert_int_equal(cs_dequantize_row(a->type, a->data, x, 8), 0);
        assert_true(x[7] == 7.0f);
        assert_int_equal(cs_dequantize_row(bt->type, bt->data, x, 32), 0);
        assert_true(x[0] == -16.0f && x[31] == 15.0f);
        cs_gguf_close(g);
        free(b.p);
    }
}

static void test_getters(void **state)
{
    (void)state;
    struct spec sp = {0};
    struct marks m;
    struct tu_buf b = build_small(&sp, &m);
    struct cs_gguf *g;
    assert_int_equal(cs_gguf_open_mem(b.p, b.n, SMALL_NAME, &g, err, sizeof err), CLSPEC_OK);
    uint32_t u = 77;
    int64_t i = 0;
    float f = 0;
    bool bo = false;
    char s[8];
    assert_int_equal(cs_gguf_get_u32(g, "t.u8", &u, err, sizeof err), CLSPEC_OK);
    assert_int_equal(u, 200);
    assert_int_equal(cs_gguf_get_u32(g, "t.u16", &u, err, sizeof err), CLSPEC_OK);
    assert_int_equal(u, 60000);
    assert_int_equal(cs_gguf_get_u32(g, "t.u32", &u, err, sizeof err), CLSPEC_OK);
    assert_true(u == 4000000000u);
    assert_int_equal(cs_gguf_get_u32(g, "t.i32", &u, err, sizeof err), CLSPEC_E_FORMAT); /* -7 */
    assert_non_null(strstr(err, "t.i32"));
    assert_int_equal(cs_gguf_get_u32(g, "t.u64", &u, err, sizeof err), CLSPEC_E_FORMAT); /* 2^40 */
    assert_int_equal(cs_gguf_get_u32(g, "t.f32", &u, err, sizeof err), CLSPEC_E_FORMAT);
    assert_int_equal(cs_gguf_get_u32(g, "general.architecture", &u, err, sizeof err), CLSPEC_E_FORMAT);
    assert_non_null(strstr(err, SMALL_NAME ": key 'general.architecture'"));
    u = 77;
    assert_int_equal(cs_gguf_get_u32(g, "missing", &u, err, sizeof err), CLSPEC_E_NOTFOUND);
    assert_int_equal(u, 77);
    assert_int_equal(cs_gguf_get_i64(g, "t.i8", &i, err, sizeof err), CLSPEC_OK);
    assert_true(i == -5);
    assert_int_equal(cs_gguf_get_i64(g, "t.i16", &i, err, sizeof err), CLSPEC_OK);
    assert_true(i == -300);
    assert_int_equal(cs_gguf_get_i64(g, "t.i64", &i, err, sizeof err), CLSPEC_OK);
    assert_true(i == -(1ll << 40));
    assert_int_equal(cs_gguf_get_i64(g, "t.u64", &i, err, sizeof err), CLSPEC_OK);
    assert_true(i == 1ll << 40);
    assert_int_equal(cs_gguf_get_i64(g, "t.u64big", &i, err, sizeof err), CLSPEC_E_FORMAT);
    assert_int_equal(cs_gguf_get_i64(g, "t.bool", &i, err, sizeof err), CLSPEC_E_FORMAT);
    assert_int_equal(cs_gguf_get_f32(g, "t.f32", &f, err, sizeof err), CLSPEC_OK);
    assert_true(f == 1.5f);
    assert_int_equal(cs_gguf_get_f32(g, "t.f64", &f, err, sizeof err), CLSPEC_OK);
    assert_true(f == 0.25f);
    assert_int_equal(cs_gguf_get_f32(g, "t.i32", &f, err, sizeof err), CLSPEC_OK);
    assert_true(f == -7.0f);
    assert_int_equal(cs_gguf_get_f32(g, "t.arr_f32", &f, err, sizeof err), CLSPEC_E_FORMAT);
    assert_int_equal(cs_gguf_get_bool(g, "t.bool", &bo, err, sizeof err), CLSPEC_OK);
    assert_true(bo);
    assert_int_equal(cs_gguf_get_bool(g, "t.u8", &bo, err, sizeof err), CLSPEC_E_FORMAT);
    assert_int_equal(cs_gguf_get_str(g, "general.architecture", s, sizeof s, err, sizeof err), CLSPEC_OK);
    assert_string_equal(s, "llama");
    assert_int_equal(cs_gguf_get_str(g, "general.architecture", s, 5, err, sizeof err), CLSPEC_E_RANGE);
    assert_int_equal(cs_gguf_get_str(g, "t.u8", s, sizeof s, err, sizeof err), CLSPEC_E_FORMAT);
    assert_int_equal(cs_gguf_get_str(g, "missing", s, sizeof s, err, sizeof err), CLSPEC_E_NOTFOUND);
    const struct cs_gguf_kv *kv = NULL;
    assert_int_equal(cs_gguf_get_arr(g, "t.arr_i32", CS_GGUF_I32, &kv, err, sizeof err), CLSPEC_OK);
    assert_true(kv->arr_n == 3 && cs_gguf_arr_int(kv, 1) == -2 && cs_gguf_arr_float(kv, 2) == 3.0);
    assert_int_equal(cs_gguf_get_arr(g, "t.arr_i32", CS_GGUF_U32, &kv, err, sizeof err), CLSPEC_E_FORMAT);
    assert_non_null(strstr(err, "array of i32"));
    assert_int_equal(cs_gguf_get_arr(g, "t.u8", CS_GGUF_U8, &kv, err, sizeof err), CLSPEC_E_FORMAT);
    assert_int_equal(cs_gguf_get_arr(g, "missing", CS_GGUF_U8, &kv, err, sizeof err), CLSPEC_E_NOTFOUND);
    assert_int_equal(cs_gguf_get_arr(g, "t.arr_str", CS_GGUF_STRING, &kv, err, sizeof err), CLSPEC_OK);
    assert_true(kv->arr_n == 3 && kv->arr_str[1].len == 0 && kv->arr_str[2].len == 3);
    assert_int_equal(cs_gguf_get_arr(g, "t.arr_f32", CS_GGUF_F32, &kv, err, sizeof err), CLSPEC_OK);
    assert_true(cs_gguf_arr_float(kv, 1) == -1.0 && cs_gguf_arr_int(kv, 0) == 0);
    assert_int_equal(cs_gguf_get_arr(g, "t.arr_bool", CS_GGUF_BOOL, &kv, err, sizeof err), CLSPEC_OK);
    assert_true(cs_gguf_arr_int(kv, 1) == 1);
    assert_string_equal(cs_gguf_type_name(CS_GGUF_STRING), "string");
    assert_string_equal(cs_gguf_type_name(CS_GGUF_U64), "u64");
    assert_string_equal(cs_gguf_type_name((enum cs_gguf_type)99), "unknown");
    cs_gguf_close(g);
    free(b.p);
}

static void test_truncation_small(void **state)
{
    (void)state;
    struct spec sp = {0};
    struct marks m;
    struct tu_buf b = build_small(&sp, &m);
    for (size_t k = 0; k < b.n; k++)
        expect_fail(b.p, k, NULL);
    assert_int_equal(try_open(b.p, b.n, SMALL_NAME), CLSPEC_OK);
    free(b.p);
}

static void test_truncation_real_model(void **state)
{
    (void)state;
    char *path = tu_shared_path("models/stories260K.gguf");
    size_t len;
    uint8_t *p = tu_read_file(path, &len);
    assert_non_null(p);
    struct cs_gguf *g;
    assert_int_equal(cs_gguf_open_mem(p, len, "stories260K.gguf", &g, err, sizeof err), CLSPEC_OK);
    uint64_t data = g->data_offset;
    cs_gguf_close(g);
    /* every byte through the end of the tensor-info table (and its padding) */
    for (size_t k = 0; k <= data; k++) {
        if (try_open(p, k, "stories260K.gguf") == CLSPEC_OK)
            fail_msg("truncated at %zu: opened", k);
        if (!strstr(err, "stories260K.gguf: "))
            fail_msg("truncated at %zu: '%s'", k, err);
    }
    /* several points inside the data section */
    size_t pts[] = {data + 1, data + 4096, len / 2, len - 64, len - 1};
    for (size_t i = 0; i < CS_ARRAY_LEN(pts); i++) {
        assert_int_not_equal(try_open(p, pts[i], "stories260K.gguf"), CLSPEC_OK);
        assert_non_null(strstr(err, "beyond end of file"));
    }
    assert_int_equal(try_open(p, len, "stories260K.gguf"), CLSPEC_OK);
    print_message("# stories260K: %zu truncations of the header checked\n", (size_t)data + 1);
    /* absurd counts in the real header */
    uint8_t *q = malloc(len);
    assert_non_null(q);
    uint64_t absurd[] = {1ull << 63, UINT64_MAX, len, len / 13 + 1};
    for (size_t i = 0; i < CS_ARRAY_LEN(absurd); i++)
        for (size_t at = 8; at <= 16; at += 8) { /* n_tensors, n_kv */
            memcpy(q, p, len);
            patch_le(q, at, absurd[i], 8);
            assert_int_not_equal(try_open(q, len, "stories260K.gguf"), CLSPEC_OK);
            assert_non_null(strstr(err, "stories260K.gguf: "));
        }
    free(q);
    free(p);
    free(path);
}

static void test_header_fields(void **state)
{
    (void)state;
    struct spec sp = {0};
    struct marks m;
    struct tu_buf b = build_small(&sp, &m);
    free(b.p);
    expect_patch_fails(0, 'G' | 'G' << 8 | 'U' << 16 | 'X' << 24, 4, "bad magic");
    expect_patch_fails(m.version, 1, 4, "version 1");
    expect_patch_fails(m.version, 4, 4, "version 4");
    expect_patch_fails(m.version, 0, 4, "version 0");
    static const uint64_t absurd[] = {1ull << 63, UINT64_MAX, 1ull << 32, 1000};
    for (size_t i = 0; i < CS_ARRAY_LEN(absurd); i++) {
        expect_patch_fails(m.n_kv, absurd[i], 8, "cannot fit");
        expect_patch_fails(m.n_tensors, absurd[i], 8, "cannot fit");
        expect_patch_fails(m.first_key_len, absurd[i], 8, "key length");
        expect_patch_fails(m.str_len, absurd[i], 8, "string value length");
        expect_patch_fails(m.arr_len, absurd[i], 8, "does not fit");
        expect_patch_fails(m.str_arr_len, absurd[i], 8, "does not fit");
        expect_patch_fails(m.t1_name_len, absurd[i], 8, "tensor name length");
    }
    expect_patch_fails(m.arr_len, (1ull << 62) + 1, 8, "does not fit"); /* 4 * n wraps */
    expect_patch_fails(m.str_arr_len, 1ull << 61, 8, "does not fit");  /* 8 * n wraps */
    expect_patch_fails(m.align_type, 99, 4, "key 'general.alignment': unknown value type 99");
    expect_patch_fails(m.arr_type, 13, 4, "unknown array element type 13");
    expect_patch_fails(m.boolv, 2, 1, "bad bool value 2");
    expect_patch_fails(m.bool_arr0, 7, 1, "bad bool value 7 at array index 0");
}

static void test_alignment_values(void **state)
{
    (void)state;
    struct spec sp = {0};
    struct marks m;
    struct tu_buf b = build_small(&sp, &m);
    free(b.p);
    expect_patch_fails(m.align_val, 0, 4, "general.alignment 0");
    expect_patch_fails(m.align_val, 3, 4, "not a power of two");
    expect_patch_fails(m.align_val, 48, 4, "not a power of two");
    expect_patch_fails(m.align_val, 1u << 31, 4, "not a power of two");
    expect_patch_fails(m.align_type, CS_GGUF_F32, 4, "expected an integer");
    /* alignment 64 is valid, but tensor "b" sits at offset 32 */
    expect_patch_fails(m.align_val, 64, 4, "tensor 'b': offset 32 is not a multiple of the alignment 64");
    b = build_small(&sp, &m);
    /* alignment 1 (valid): the data section starts right after the infos */
    patch_le(b.p, m.align_val, 1, 4);
    struct cs_gguf *g;
    if (cs_gguf_open_mem(b.p, b.n, SMALL_NAME, &g, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    assert_true(g->alignment == 1 && g->data_offset == m.end_infos);
    cs_gguf_close(g);
    free(b.p);
}

static void test_tensor_fields(void **state)
{
    (void)state;
    struct spec sp = {0};
    struct marks m;
    struct tu_buf b = build_small(&sp, &m);
    free(b.p);
    expect_patch_fails(m.t0_ndims, 0, 4, "n_dims 0 not in 1..4");
    expect_patch_fails(m.t0_ndims, 5, 4, "n_dims 5 not in 1..4");
    expect_patch_fails(m.t0_ndims, UINT32_MAX, 4, "n_dims");
    expect_patch_fails(m.t0_ne0, 0, 8, "tensor 'a': dimension 0 is zero");
    expect_patch_fails(m.t0_ne1, 0, 8, "dimension 1 is zero");
    expect_patch_fails(m.t0_ne0, 1ull << 32, 8, NULL); /* 2^33 f32 bytes: beyond the file */
    expect_patch_fails(m.t0_ne1, 1ull << 62, 8, "element count overflows"); /* 4 * 2^62 */
    expect_patch_fails(m.t0_ne1, 1ull << 60, 8, "data size overflows");      /* 16 * 2^60 bytes */
    expect_patch_fails(m.t0_ne0, UINT64_MAX, 8, "overflows");
    expect_patch_fails(m.t1_ne0, 31, 8, "not a multiple of the q8_0 block size");
    expect_patch_fails(m.t0_type, 99, 4, "tensor 'a': unknown tensor type 99");
    expect_patch_fails(m.t1_type, 4, 4, "unknown tensor type 4");
    expect_patch_fails(m.t1_type, 1u << 31, 4, "unknown tensor type 2147483648");
    expect_patch_fails(m.t1_off, 33, 8, "tensor 'b': offset 33 is not a multiple of the alignment 32");
    expect_patch_fails(m.t1_off, 64, 8, "tensor 'b': offset 64 + 34 bytes beyond end of file");
    expect_patch_fails(m.t1_off, UINT64_MAX - 31, 8, "beyond end of file");
    expect_patch_fails(m.t1_off, 0, 8, "overlaps tensor");
    expect_patch_fails(m.t0_off, 32, 8, "overlaps tensor");
    /* shape change that makes "a" spill into "b": [4, 3] f32 = 48 bytes at 0 */
    expect_patch_fails(m.t0_ne1, 3, 8, "overlaps tensor 'a'");
}

static void test_duplicates_nested(void **state)
{
    (void)state;
    struct marks m;
    struct spec dk = {.dup_key = true}, dt = {.dup_tensor = true}, ne = {.nested = true};
    struct tu_buf b = build_small(&dk, &m);
    expect_fail(b.p, b.n, "duplicate key 't.u8'");
    free(b.p);
    b = build_small(&dt, &m);
    expect_fail(b.p, b.n, "duplicate tensor name 'a'");
    free(b.p);
    b = build_small(&ne, &m);
    expect_fail(b.p, b.n, "key 't.nested': nested arrays");
    free(b.p);
}

static void test_files_on_disk(void **state)
{
    (void)state;
    struct cs_gguf *g = (struct cs_gguf *)1;
    /* a directory, an empty file, a missing file */
    assert_int_equal(cs_gguf_open("/", &g, err, sizeof err), CLSPEC_E_IO);
    assert_null(g);
    assert_non_null(strstr(err, "/: not a regular file"));
    char *p = tu_tmp_path(".gguf");
    assert_int_equal(tu_write_file(p, "", 0), 0);
    assert_int_equal(cs_gguf_open(p, &g, err, sizeof err), CLSPEC_E_FORMAT);
    assert_non_null(strstr(err, "empty file"));
    assert_non_null(strstr(err, p));
    unlink(p);
    assert_int_equal(cs_gguf_open(p, &g, err, sizeof err), CLSPEC_E_NOTFOUND);
    assert_non_null(strstr(err, p));
    /* the hand-built file through mmap */
    struct spec sp = {0};
    struct marks m;
    struct tu_buf b = build_small(&sp, &m);
    assert_int_equal(tu_write_file(p, b.p, b.n), 0);
    if (cs_gguf_open(p, &g, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    assert_string_equal(g->path, p);
    assert_memory_equal(g->base, b.p, b.n);
    assert_true(g->n_tensors == 2 && g->size == b.n);
    cs_gguf_close(g);
    /* and a corrupt one names the path */
    patch_le(b.p, m.t1_type, 99, 4);
    assert_int_equal(tu_write_file(p, b.p, b.n), 0);
    assert_int_equal(cs_gguf_open(p, &g, err, sizeof err), CLSPEC_E_FORMAT);
    assert_non_null(strstr(err, p));
    assert_non_null(strstr(err, "unknown tensor type 99"));
    unlink(p);
    free(p);
    free(b.p);
    /* a zero-length buffer, a NULL one */
    assert_int_equal(cs_gguf_open_mem(NULL, 0, "none", &g, err, sizeof err), CLSPEC_E_FORMAT);
    assert_int_equal(cs_gguf_open_mem(NULL, 5, "none", &g, err, sizeof err), CLSPEC_E_INVAL);
}

/* Runs `clspec ARGS`, returns its exit status and (up to cap bytes of) its output. */
static int run_cli(const char *args, char *out, size_t cap)
{
    const char *bd = getenv("CLSPEC_BUILDDIR");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s/clspec' %s 2>&1", bd && *bd ? bd : ".", args);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t n = 0, r;
    while (n + 1 < cap && (r = fread(out + n, 1, cap - 1 - n, f)) > 0)
        n += r;
    out[n] = '\0';
    char drain[4096];
    while (fread(drain, 1, sizeof drain, f) > 0)
        ;
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_inspect_cli(void **state)
{
    (void)state;
    size_t cap = 1 << 20;
    char *out = malloc(cap), args[4200];
    assert_non_null(out);
    char *model = tu_shared_path("models/stories260K.gguf");
    snprintf(args, sizeof args, "inspect '%s'", model);
    assert_int_equal(run_cli(args, out, cap), 0);
    assert_non_null(strstr(out, "version: 3"));
    assert_non_null(strstr(out, "alignment: 32"));
    assert_non_null(strstr(out, "llama.block_count"));
    assert_non_null(strstr(out, "\"<unk>\", \"<s>\""));
    assert_non_null(strstr(out, "... (512 total)]"));
    assert_non_null(strstr(out, "tensors (48)"));
    assert_non_null(strstr(out, "token_embd.weight"));
    assert_non_null(strstr(out, "[64, 512]"));
    assert_non_null(strstr(out, "f32          48 tensors        1171200 bytes"));
    assert_non_null(strstr(out, "parameters: 292800"));
    free(model);
    assert_int_equal(run_cli("inspect --help", out, cap), 0);
    assert_non_null(strstr(out, "usage: clspec inspect"));
    /* a corrupt file: the reader's message, exit 1 */
    struct spec sp = {0};
    struct marks m;
    struct tu_buf b = build_small(&sp, &m);
    patch_le(b.p, m.t0_ndims, 7, 4);
    char *p = tu_tmp_path(".gguf");
    assert_int_equal(tu_write_file(p, b.p, b.n), 0);
    snprintf(args, sizeof args, "inspect '%s'", p);
    assert_int_equal(run_cli(args, out, cap), 1);
    assert_non_null(strstr(out, "tensor 'a': n_dims 7 not in 1..4"));
    assert_non_null(strstr(out, p));
    unlink(p);
    assert_int_equal(run_cli(args, out, cap), 1);
    assert_non_null(strstr(out, "cannot open"));
    free(p);
    free(b.p);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_models_open),
        cmocka_unit_test(test_known_facts),
        cmocka_unit_test(test_small_valid),
        cmocka_unit_test(test_getters),
        cmocka_unit_test(test_truncation_small),
        cmocka_unit_test(test_truncation_real_model),
        cmocka_unit_test(test_header_fields),
        cmocka_unit_test(test_alignment_values),
        cmocka_unit_test(test_tensor_fields),
        cmocka_unit_test(test_duplicates_nested),
        cmocka_unit_test(test_files_on_disk),
        cmocka_unit_test(test_inspect_cli),
    };
    return cmocka_run_group_tests_name("gguf", tests, NULL, NULL);
}
