/* jinja-render: renders a Jinja template file with the variables of a JSON
 * file through clspec's interpreter and prints the text (no newline added).
 * Used by tests/chat/jinja2-crosscheck.sh to compare with Python's jinja2.
 * Usage: jinja-render TEMPLATE VARS.json [UNIX_TIME]; exit 1 with the error
 * on stderr when the template fails. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/jinja.h"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *p = malloc(cap);
    size_t r;
    while (p && (r = fread(p + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *q = realloc(p, cap *= 2);
            if (!q) {
                free(p);
                p = NULL;
            }
            p = q;
        }
    }
    fclose(f);
    if (p)
        p[n] = 0;
    *len = n;
    return p;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s TEMPLATE VARS.json [UNIX_TIME]\n", argv[0]);
        return 2;
    }
    size_t len = 0;
    char *src = slurp(argv[1], &len), err[512] = "";
    if (!src) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        return 2;
    }
    json_error_t je;
    json_t *vars = json_load_file(argv[2], 0, &je);
    if (!vars) {
        fprintf(stderr, "%s:%d: %s\n", argv[2], je.line, je.text);
        free(src);
        return 2;
    }
    struct cs_jinja *t = NULL;
    char *out = NULL;
    size_t out_len = 0;
    int rc = cs_jinja_compile(src, len, &t, err, sizeof err);
    if (rc == 0)
        rc = cs_jinja_render(t, vars, argc > 3 ? strtoll(argv[3], NULL, 10) : 0, &out, &out_len, err, sizeof err);
    if (rc == 0)
        fwrite(out, 1, out_len, stdout);
    else
        fprintf(stderr, "%s\n", err);
    free(out);
    cs_jinja_free(t);
    json_decref(vars);
    free(src);
    return rc == 0 ? 0 : 1;
}
