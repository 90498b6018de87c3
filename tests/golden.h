/* golden.h: test helper: loads reference/greedy-MODEL.json (llama.cpp greedy
 * runs) and compares a logits row with a step's top-5. Everything returned
 * is malloc'd; free with golden_free. */
#ifndef CS_TEST_GOLDEN_H
#define CS_TEST_GOLDEN_H

#include <stdbool.h>
#include <stdint.h>

struct golden_step {
    int32_t token;       /* the greedy choice at this step */
    int32_t top_id[5];   /* the five largest logits: ids ... */
    float top_val[5];    /* ... and values */
};

struct golden_case {
    int32_t *prompt;     /* prompt_ids (BOS first) */
    int n_prompt;
    struct golden_step *steps;
    int n_steps;
};

struct golden {
    char *json_path;
    char *model_path;    /* NULL when the model file does not exist */
    char model_name[128];
    int n_vocab;
    struct golden_case *cases;
    int n_cases;
};

/* Parses path; finds the model under models/, models/derived/ or
 * models/synthetic/ of $CLSPEC_SHARED. NULL on a parse error (printed). */
struct golden *golden_load(const char *path);
void golden_free(struct golden *g);

/* Sorted list of $CLSPEC_SHARED/reference/greedy-*.json (NULL-terminated, malloc'd). */
char **golden_list(void);
void golden_list_free(char **list);

/* Max |logits[id] - value| over the step's top-5, and the same relative to
 * (1 + |value|) (the F32/F16/BF16 criterion). */
void golden_compare(const struct golden_step *st, const float *logits, float *max_abs, float *max_rel);

/* max - min of a logits row */
float golden_range(const float *logits, int n);

#endif
