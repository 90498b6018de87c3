/* inspect.c: `clspec inspect MODEL.gguf`: prints a GGUF file's header,
 * metadata (long arrays abbreviated), tensor table, per-type totals and the
 * parameter count. */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "clspec/clspec.h"
#include "gguf/gguf.h"
#include "gguf/quant.h"

#define SHOW_ELEMS 8   /* array elements printed before "... (N total)" */
#define SHOW_STR 120   /* bytes of a string value printed before "..." */

static void print_str(const struct cs_gguf_str *s)
{
    uint64_t n = s->len < SHOW_STR ? s->len : SHOW_STR;
    putchar('"');
    for (uint64_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s->ptr[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c == '\n')
            printf("\\n");
        else if (c < 0x20 || c == 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    putchar('"');
    if (n < s->len)
        printf("... (%" PRIu64 " bytes)", s->len);
}

static void print_scalar(const struct cs_gguf_kv *kv)
{
    switch (kv->type) {
    case CS_GGUF_U8: case CS_GGUF_U16: case CS_GGUF_U32: case CS_GGUF_U64:
        printf("%" PRIu64, kv->v.u);
        break;
    case CS_GGUF_I8: case CS_GGUF_I16: case CS_GGUF_I32: case CS_GGUF_I64:
        printf("%" PRId64, kv->v.i);
        break;
    case CS_GGUF_F32: case CS_GGUF_F64:
        printf("%g", kv->v.f);
        break;
    case CS_GGUF_BOOL:
        printf("%s", kv->v.u ? "true" : "false");
        break;
    case CS_GGUF_STRING:
        print_str(&kv->v.s);
        break;
    default:
        printf("?");
    }
}

static void print_array(const struct cs_gguf_kv *kv)
{
    uint64_t n = kv->arr_n < SHOW_ELEMS ? kv->arr_n : SHOW_ELEMS;
    printf("[");
    for (uint64_t i = 0; i < n; i++) {
        if (i)
            printf(", ");
        switch (kv->arr_type) {
        case CS_GGUF_STRING:
            print_str(&kv->arr_str[i]);
            break;
        case CS_GGUF_F32: case CS_GGUF_F64:
            printf("%g", cs_gguf_arr_float(kv, i));
            break;
        case CS_GGUF_BOOL:
            printf("%s", cs_gguf_arr_int(kv, i) ? "true" : "false");
            break;
        case CS_GGUF_U64:
            printf("%" PRIu64, (uint64_t)cs_gguf_arr_int(kv, i));
            break;
        default:
            printf("%" PRId64, cs_gguf_arr_int(kv, i));
        }
    }
    if (n < kv->arr_n)
        printf(", ... (%" PRIu64 " total)", kv->arr_n);
    printf("]");
}

static void usage(FILE *f)
{
    fprintf(f, "usage: clspec inspect [--help] MODEL.gguf\n\n"
               "Validates a GGUF file and prints its version, alignment, metadata (arrays longer\n"
               "than %d elements abbreviated), tensors (type, shape, offset, bytes), the bytes\n"
               "and tensor count per type, and the parameter count. Exits 1 if the file is invalid.\n",
            SHOW_ELEMS);
}

int cs_cmd_inspect(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
        if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "clspec inspect: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
        if (path) {
            fprintf(stderr, "clspec inspect: one file at a time\n");
            return 2;
        }
        path = argv[i];
    }
    if (!path) {
        usage(stderr);
        return 2;
    }
    char err[CLSPEC_ERRLEN];
    struct cs_gguf *g;
    if (cs_gguf_open(path, &g, err, sizeof err) != CLSPEC_OK) {
        fprintf(stderr, "clspec inspect: %s\n", err);
        return 1;
    }
    printf("file: %s\nsize: %" PRIu64 " bytes\nversion: %" PRIu32 "\nalignment: %" PRIu64
           "\ndata offset: %" PRIu64 "\n",
           g->path, g->size, g->version, g->alignment, g->data_offset);

    printf("\nmetadata (%" PRIu64 " keys):\n", g->n_kv);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const struct cs_gguf_kv *kv = &g->kv[i];
        if (kv->type == CS_GGUF_ARRAY) {
            printf("  %-40s array<%s> = ", kv->key, cs_gguf_type_name(kv->arr_type));
            print_array(kv);
        } else {
            printf("  %-40s %-6s = ", kv->key, cs_gguf_type_name(kv->type));
            print_scalar(kv);
        }
        putchar('\n');
    }

    uint64_t bytes_by_type[CS_TYPE_COUNT] = {0}, count_by_type[CS_TYPE_COUNT] = {0};
    uint64_t params = 0, bytes = 0;
    printf("\ntensors (%" PRIu64 "):\n  %-32s %-6s %-24s %12s %12s\n", g->n_tensors, "name", "type", "shape",
           "offset", "bytes");
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct cs_gguf_tensor *t = &g->tensors[i];
        char shape[96];
        int n = snprintf(shape, sizeof shape, "[");
        for (uint32_t d = 0; d < t->n_dims && n > 0 && (size_t)n < sizeof shape; d++)
            n += snprintf(shape + n, sizeof shape - (size_t)n, "%s%" PRIu64, d ? ", " : "", t->ne[d]);
        if (n > 0 && (size_t)n < sizeof shape)
            snprintf(shape + n, sizeof shape - (size_t)n, "]");
        printf("  %-32s %-6s %-24s %12" PRIu64 " %12" PRIu64 "\n", t->name, cs_type_name(t->type), shape,
               t->offset, t->size);
        bytes_by_type[t->type] += t->size; /* type < CS_TYPE_COUNT: validated by the reader */
        count_by_type[t->type]++;
        params += t->n_elems;
        bytes += t->size;
    }

    printf("\ntotals per type:\n");
    for (uint32_t ty = 0; ty < CS_TYPE_COUNT; ty++)
        if (count_by_type[ty])
            printf("  %-8s %6" PRIu64 " tensors %14" PRIu64 " bytes\n", cs_type_name(ty), count_by_type[ty],
                   bytes_by_type[ty]);
    printf("  %-8s %6" PRIu64 " tensors %14" PRIu64 " bytes\n", "all", g->n_tensors, bytes);
    printf("\nparameters: %" PRIu64 " (%.3f M)\n", params, params / 1e6);
    cs_gguf_close(g);
    return 0;
}
