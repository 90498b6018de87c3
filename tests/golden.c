/* golden.c: reading the llama.cpp greedy references (see golden.h). */
#include "config.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "golden.h"
#include "testutil.h"

void golden_free(struct golden *g)
{
    if (!g)
        return;
    for (int i = 0; i < g->n_cases; i++) {
        free(g->cases[i].prompt);
        free(g->cases[i].steps);
    }
    free(g->cases);
    free(g->json_path);
    free(g->model_path);
    free(g);
}

struct golden *golden_load(const char *path)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) {
        fprintf(stderr, "%s:%d: %s\n", path, jerr.line, jerr.text);
        return NULL;
    }
    struct golden *g = calloc(1, sizeof *g);
    const char *model = json_string_value(json_object_get(root, "model"));
    json_t *cases = json_object_get(root, "cases");
    if (!g || !model || !json_is_array(cases))
        goto bad;
    g->json_path = strdup(path);
    snprintf(g->model_name, sizeof g->model_name, "%s", model);
    g->model_path = tu_find_model(model);
    g->n_vocab = (int)json_integer_value(json_object_get(root, "n_vocab"));
    g->n_cases = (int)json_array_size(cases);
    g->cases = calloc((size_t)g->n_cases, sizeof *g->cases);
    if (!g->cases)
        goto bad;
    for (int c = 0; c < g->n_cases; c++) {
        json_t *jc = json_array_get(cases, (size_t)c);
        json_t *pid = json_object_get(jc, "prompt_ids"), *steps = json_object_get(jc, "steps");
        if (!json_is_array(pid) || !json_is_array(steps))
            goto bad;
        struct golden_case *gc = &g->cases[c];
        gc->n_prompt = (int)json_array_size(pid);
        gc->n_steps = (int)json_array_size(steps);
        gc->prompt = calloc((size_t)gc->n_prompt + 1, sizeof *gc->prompt);
        gc->steps = calloc((size_t)gc->n_steps + 1, sizeof *gc->steps);
        if (!gc->prompt || !gc->steps)
            goto bad;
        for (int i = 0; i < gc->n_prompt; i++)
            gc->prompt[i] = (int32_t)json_integer_value(json_array_get(pid, (size_t)i));
        for (int i = 0; i < gc->n_steps; i++) {
            json_t *js = json_array_get(steps, (size_t)i);
            json_t *top = json_object_get(js, "top5");
            if (!json_is_array(top) || json_array_size(top) != 5)
                goto bad;
            gc->steps[i].token = (int32_t)json_integer_value(json_object_get(js, "token"));
            for (int k = 0; k < 5; k++) {
                json_t *pair = json_array_get(top, (size_t)k);
                gc->steps[i].top_id[k] = (int32_t)json_integer_value(json_array_get(pair, 0));
                gc->steps[i].top_val[k] = (float)json_number_value(json_array_get(pair, 1));
            }
        }
    }
    json_decref(root);
    return g;
bad:
    fprintf(stderr, "%s: unexpected structure\n", path);
    json_decref(root);
    golden_free(g);
    return NULL;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char **golden_list(void)
{
    char *dir = tu_shared_path("reference");
    DIR *d = opendir(dir);
    char **list = calloc(64, sizeof *list);
    size_t n = 0;
    if (d && list) {
        struct dirent *e;
        while ((e = readdir(d)) && n < 63) {
            size_t len = strlen(e->d_name);
            if (strncmp(e->d_name, "greedy-", 7) != 0 || len < 5 || strcmp(e->d_name + len - 5, ".json") != 0)
                continue;
            list[n] = malloc(strlen(dir) + len + 2);
            sprintf(list[n++], "%s/%s", dir, e->d_name);
        }
        qsort(list, n, sizeof *list, cmp_str);
    }
    if (d)
        closedir(d);
    free(dir);
    return list;
}

void golden_list_free(char **list)
{
    if (!list)
        return;
    for (char **p = list; *p; p++)
        free(*p);
    free(list);
}

void golden_compare(const struct golden_step *st, const float *logits, float *max_abs, float *max_rel)
{
    float ma = 0.0f, mr = 0.0f;
    for (int k = 0; k < 5; k++) {
        float d = fabsf(logits[st->top_id[k]] - st->top_val[k]);
        float r = d / (1.0f + fabsf(st->top_val[k]));
        if (!(d <= ma))
            ma = d; /* NaN propagates as a failure */
        if (!(r <= mr))
            mr = r;
    }
    *max_abs = ma;
    *max_rel = mr;
}

float golden_range(const float *logits, int n)
{
    float lo = logits[0], hi = logits[0];
    for (int i = 1; i < n; i++) {
        if (logits[i] < lo)
            lo = logits[i];
        if (logits[i] > hi)
            hi = logits[i];
    }
    return hi - lo;
}
