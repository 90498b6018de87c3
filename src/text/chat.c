/* chat.c: chat template families: detection by markers and rendering.
 * See chat.h for each family's exact format and the order policies. */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "text/chat.h"
#include "base/common.h"
#include "base/strbuf.h"
#include "text/chat_jinja.h"

static const char *const family_names[CS_CHAT_N_FAMILIES] = {
    [CS_CHAT_PLAIN] = "plain",
    [CS_CHAT_CHATML] = "chatml",
    [CS_CHAT_LLAMA2] = "llama2",
    [CS_CHAT_LLAMA3] = "llama3",
    [CS_CHAT_LLAMA31] = "llama3.1",
    [CS_CHAT_MISTRAL] = "mistral",
    [CS_CHAT_MISTRAL_V3] = "mistral-v3",
    [CS_CHAT_MISTRAL_TEKKEN] = "mistral-tekken",
    [CS_CHAT_ZEPHYR] = "zephyr",
    [CS_CHAT_GEMMA] = "gemma",
};

const char *cs_chat_family_name(enum cs_chat_family f)
{
    if (f == CS_CHAT_JINJA)
        return "jinja";
    if ((int)f < 0 || f >= CS_CHAT_N_FAMILIES)
        return "?";
    return family_names[f];
}

int cs_chat_family_parse(const char *name, enum cs_chat_family *out, char *err, size_t errlen)
{
    static const struct {
        const char *alias;
        enum cs_chat_family f;
    } aliases[] = {
        {"qwen", CS_CHAT_CHATML},
        {"llama-2", CS_CHAT_LLAMA2},
        {"llama-3", CS_CHAT_LLAMA3},
        {"llama-3.1", CS_CHAT_LLAMA31},
        {"mistral-v1", CS_CHAT_MISTRAL},
        {"mistral-v3-tekken", CS_CHAT_MISTRAL_TEKKEN},
    };
    if (!name)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "chat template: no family name given");
    if (strcasecmp(name, "jinja") == 0) {
        *out = CS_CHAT_JINJA;
        return CLSPEC_OK;
    }
    for (int i = 0; i < CS_CHAT_N_FAMILIES; i++) {
        if (strcasecmp(name, family_names[i]) == 0) {
            *out = (enum cs_chat_family)i;
            return CLSPEC_OK;
        }
    }
    for (size_t i = 0; i < CS_ARRAY_LEN(aliases); i++) {
        if (strcasecmp(name, aliases[i].alias) == 0) {
            *out = aliases[i].f;
            return CLSPEC_OK;
        }
    }
    return cs_err(err, errlen, CLSPEC_E_INVAL,
                  "chat template \"%s\": unknown family (expected plain, chatml, llama2, llama3, llama3.1, mistral, "
                  "mistral-v1, mistral-v3, mistral-tekken, mistral-v3-tekken, zephyr, gemma, jinja, or one of "
                  "llama.cpp's names command-r, vicuna, vicuna-orca, phi3, phi4, falcon3, deepseek, openchat, "
                  "monarch)",
                  name);
}

/* ---- detection ---- */

static bool has(const char *s, size_t len, const char *needle)
{
    size_t nl = strlen(needle);
    if (nl == 0 || nl > len)
        return nl == 0;
    for (size_t i = 0; i + nl <= len; i++)
        if (s[i] == needle[0] && memcmp(s + i, needle, nl) == 0)
            return true;
    return false;
}

/* needle directly followed (after) or preceded (before) by ' or " */
static bool has_quoted(const char *s, size_t len, const char *needle, bool quote_after)
{
    char buf[64];
    const char quotes[2] = {'\'', '"'};
    size_t nl = strlen(needle);
    if (nl + 2 > sizeof buf)
        return false;
    for (int q = 0; q < 2; q++) {
        if (quote_after) {
            memcpy(buf, needle, nl);
            buf[nl] = quotes[q];
        } else {
            buf[0] = quotes[q];
            memcpy(buf + 1, needle, nl);
        }
        buf[nl + 1] = '\0';
        if (has(s, len, buf))
            return true;
    }
    return false;
}

enum cs_chat_family cs_chat_detect(const char *t, size_t len, bool *known)
{
    enum cs_chat_family f = CS_CHAT_PLAIN;
    bool k = true;
    if (!t || len == 0)
        k = false;
    else if (has(t, len, "<|im_start|>") && !has(t, len, "<|im_sep|>")) /* phi-4 differs */
        f = CS_CHAT_CHATML;
    else if (has(t, len, "<|start_header_id|>") && has(t, len, "<|end_header_id|>"))
        f = has(t, len, "Cutting Knowledge Date") ? CS_CHAT_LLAMA31 : CS_CHAT_LLAMA3;
    else if (has(t, len, "<start_of_turn>"))
        f = CS_CHAT_GEMMA;
    else if (has(t, len, "[INST]") && has(t, len, "<<SYS>>"))
        f = CS_CHAT_LLAMA2;
    else if (has(t, len, "[INST]") && has_quoted(t, len, "[INST]", true))
        f = CS_CHAT_MISTRAL_TEKKEN;
    else if (has(t, len, "[INST]") && has_quoted(t, len, "[/INST]", false))
        f = CS_CHAT_MISTRAL_V3;
    else if (has(t, len, "[INST]"))
        f = CS_CHAT_MISTRAL;
    else if (has(t, len, "<|user|>") && has(t, len, "<|assistant|>") && !has(t, len, "<|end|>"))
        f = CS_CHAT_ZEPHYR;
    else
        k = false;
    if (known)
        *known = k;
    return f;
}

int cs_chat_select(const char *tmpl, size_t len, const char *configured, enum cs_chat_family *out, bool *known,
                   char *err, size_t errlen)
{
    if (configured && configured[0] && strcasecmp(configured, "auto") != 0) {
        int rc = cs_chat_family_parse(configured, out, err, errlen);
        if (rc == CLSPEC_OK && *out == CS_CHAT_JINJA)
            rc = cs_chat_jinja_check(tmpl, len, err, errlen);
        if (rc == CLSPEC_OK && known)
            *known = true;
        return rc;
    }
    if (tmpl && cs_chat_jinja_check(tmpl, len, NULL, 0) == CLSPEC_OK) {
        *out = CS_CHAT_JINJA;
        if (known)
            *known = true;
    } else if (tmpl) {
        *out = cs_chat_detect(tmpl, len, known);
    } else { /* no template: chatml, as llama-server falls back to */
        *out = CS_CHAT_CHATML;
        if (known)
            *known = false;
    }
    return CLSPEC_OK;
}

/* ---- rendering ---- */

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* s with leading/trailing ASCII whitespace removed (Jinja's trim, Python's strip) */
static void put_trim(struct cs_strbuf *b, const char *s)
{
    size_t n = strlen(s);
    while (n > 0 && is_ws(s[0])) {
        s++;
        n--;
    }
    while (n > 0 && is_ws(s[n - 1]))
        n--;
    cs_strbuf_put_n(b, s, n);
}

enum role { R_SYSTEM, R_USER, R_ASSISTANT };

static const char *default_bos(enum cs_chat_family f)
{
    switch (f) {
    case CS_CHAT_LLAMA3:
    case CS_CHAT_LLAMA31:
        return "<|begin_of_text|>";
    case CS_CHAT_GEMMA:
        return "<bos>";
    default:
        return "<s>";
    }
}

const char *cs_chat_stop(enum cs_chat_family f, const char *eos)
{
    switch (f) {
    case CS_CHAT_PLAIN:
        return "\nUser:";
    case CS_CHAT_CHATML:
        return "<|im_end|>";
    case CS_CHAT_LLAMA3:
    case CS_CHAT_LLAMA31:
        return "<|eot_id|>";
    case CS_CHAT_GEMMA:
        return "<end_of_turn>";
    default:
        return eos ? eos : "</s>";
    }
}

/* Families whose templates insist on [system] user assistant user ... */
static bool strict_alternation(enum cs_chat_family f)
{
    return f == CS_CHAT_LLAMA2 || f == CS_CHAT_MISTRAL || f == CS_CHAT_MISTRAL_V3 || f == CS_CHAT_MISTRAL_TEKKEN ||
           f == CS_CHAT_GEMMA;
}

static int check_messages(enum cs_chat_family f, const struct cs_chat_msg *m, size_t n, enum role *roles, char *err,
                          size_t errlen)
{
    if (n == 0 || !m)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "chat template %s: no messages", family_names[f]);
    for (size_t i = 0; i < n; i++) {
        if (!m[i].role)
            return cs_err(err, errlen, CLSPEC_E_INVAL, "messages[%zu]: no role", i);
        if (!m[i].content)
            return cs_err(err, errlen, CLSPEC_E_INVAL, "messages[%zu]: no content", i);
        if (strcmp(m[i].role, "system") == 0)
            roles[i] = R_SYSTEM;
        else if (strcmp(m[i].role, "user") == 0)
            roles[i] = R_USER;
        else if (strcmp(m[i].role, "assistant") == 0)
            roles[i] = R_ASSISTANT;
        else
            return cs_err(err, errlen, CLSPEC_E_INVAL,
                          "messages[%zu]: unknown role \"%.40s\" (expected system, user or assistant)", i,
                          m[i].role);
    }
    if (!strict_alternation(f))
        return CLSPEC_OK;
    size_t first = roles[0] == R_SYSTEM ? 1 : 0;
    if (first == n)
        return cs_err(err, errlen, CLSPEC_E_INVAL,
                      "chat template %s: a user message must follow the system message", family_names[f]);
    for (size_t i = first; i < n; i++) {
        enum role want = ((i - first) % 2 == 0) ? R_USER : R_ASSISTANT;
        if (roles[i] != want)
            return cs_err(err, errlen, CLSPEC_E_INVAL,
                          "messages[%zu]: chat template %s wants a %s message here (an optional first system "
                          "message, then user and assistant alternating)",
                          i, family_names[f], want == R_USER ? "user" : "assistant");
    }
    return CLSPEC_OK;
}

static const char *const role_names[] = {"system", "user", "assistant"};

static void render_plain(struct cs_strbuf *b, const struct cs_chat_msg *m, const enum role *r, size_t n, bool gen)
{
    static const char *const prefix[] = {"System: ", "User: ", "Assistant: "};
    for (size_t i = 0; i < n; i++) {
        cs_strbuf_put(b, prefix[r[i]]);
        cs_strbuf_put(b, m[i].content);
        cs_strbuf_put(b, "\n");
    }
    if (gen)
        cs_strbuf_put(b, "Assistant:");
}

static void render_chatml(struct cs_strbuf *b, const struct cs_chat_msg *m, const enum role *r, size_t n, bool gen)
{
    for (size_t i = 0; i < n; i++) {
        cs_strbuf_put(b, "<|im_start|>");
        cs_strbuf_put(b, role_names[r[i]]);
        cs_strbuf_put(b, "\n");
        cs_strbuf_put(b, m[i].content);
        cs_strbuf_put(b, "<|im_end|>\n");
    }
    if (gen)
        cs_strbuf_put(b, "<|im_start|>assistant\n");
}

static void render_llama3(struct cs_strbuf *b, const struct cs_chat_msg *m, const enum role *r, size_t n, bool gen,
                          const char *bos, bool v31)
{
    cs_strbuf_put(b, bos);
    size_t i = 0;
    if (v31) {
        cs_strbuf_put(b, "<|start_header_id|>system<|end_header_id|>\n\n"
               "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n");
        if (r[0] == R_SYSTEM)
            put_trim(b, m[i++].content);
        cs_strbuf_put(b, "<|eot_id|>");
    }
    for (; i < n; i++) {
        cs_strbuf_put(b, "<|start_header_id|>");
        cs_strbuf_put(b, role_names[r[i]]);
        cs_strbuf_put(b, "<|end_header_id|>\n\n");
        put_trim(b, m[i].content);
        cs_strbuf_put(b, "<|eot_id|>");
    }
    if (gen)
        cs_strbuf_put(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void render_zephyr(struct cs_strbuf *b, const struct cs_chat_msg *m, const enum role *r, size_t n, bool gen,
                          const char *eos)
{
    for (size_t i = 0; i < n; i++) {
        cs_strbuf_put(b, "<|");
        cs_strbuf_put(b, role_names[r[i]]);
        cs_strbuf_put(b, "|>\n");
        cs_strbuf_put(b, m[i].content);
        cs_strbuf_put(b, eos);
        cs_strbuf_put(b, "\n");
    }
    if (gen)
        cs_strbuf_put(b, "<|assistant|>\n");
}

/* llama2, the three mistral variants and gemma: [system] (user assistant)* [user] */
static void render_alternating(struct cs_strbuf *b, enum cs_chat_family f, const struct cs_chat_msg *m,
                               const enum role *r, size_t n, bool gen, const char *bos, const char *first_bos,
                               const char *eos)
{
    const char *sys = NULL;
    size_t first = 0;
    if (r[0] == R_SYSTEM) {
        sys = m[0].content;
        first = 1;
    }
    if (f != CS_CHAT_LLAMA2)
        cs_strbuf_put(b, first_bos);
    for (size_t i = first; i < n; i++) {
        bool first_user = i == first, last = i == n - 1;
        const char *c = m[i].content;
        if (r[i] == R_USER) {
            switch (f) {
            case CS_CHAT_LLAMA2: {
                /* content.strip() of "<<SYS>>\n" + S + "\n<</SYS>>\n\n" + U */
                cs_strbuf_put(b, first_user ? first_bos : bos);
                cs_strbuf_put(b, "[INST] ");
                if (first_user && sys) {
                    struct cs_strbuf t = {0};
                    cs_strbuf_put(&t, "<<SYS>>\n");
                    cs_strbuf_put(&t, sys);
                    cs_strbuf_put(&t, "\n<</SYS>>\n\n");
                    cs_strbuf_put(&t, c);
                    if (t.oom) {
                        b->oom = true;
                    } else {
                        put_trim(b, t.p);
                    }
                    free(t.p);
                } else {
                    put_trim(b, c);
                }
                cs_strbuf_put(b, " [/INST]");
                break;
            }
            case CS_CHAT_MISTRAL:
                cs_strbuf_put(b, " [INST] ");
                if (first_user && sys) {
                    cs_strbuf_put(b, sys);
                    cs_strbuf_put(b, "\n\n");
                }
                cs_strbuf_put(b, c);
                cs_strbuf_put(b, " [/INST]");
                break;
            case CS_CHAT_MISTRAL_V3:
            case CS_CHAT_MISTRAL_TEKKEN:
                cs_strbuf_put(b, f == CS_CHAT_MISTRAL_V3 ? "[INST] " : "[INST]");
                if (last && sys) {
                    cs_strbuf_put(b, sys);
                    cs_strbuf_put(b, "\n\n");
                }
                cs_strbuf_put(b, c);
                cs_strbuf_put(b, "[/INST]");
                break;
            default: /* gemma */
                cs_strbuf_put(b, "<start_of_turn>user\n");
                if (first_user && sys) {
                    cs_strbuf_put(b, sys);
                    cs_strbuf_put(b, "\n\n");
                }
                put_trim(b, c);
                cs_strbuf_put(b, "<end_of_turn>\n");
                break;
            }
        } else { /* assistant */
            switch (f) {
            case CS_CHAT_LLAMA2:
                cs_strbuf_put(b, " ");
                put_trim(b, c);
                cs_strbuf_put(b, " ");
                cs_strbuf_put(b, eos);
                break;
            case CS_CHAT_MISTRAL:
                cs_strbuf_put(b, " ");
                cs_strbuf_put(b, c);
                cs_strbuf_put(b, eos);
                break;
            case CS_CHAT_MISTRAL_V3:
                cs_strbuf_put(b, " ");
                put_trim(b, c);
                cs_strbuf_put(b, eos);
                break;
            case CS_CHAT_MISTRAL_TEKKEN:
                cs_strbuf_put(b, c);
                cs_strbuf_put(b, eos);
                break;
            default: /* gemma */
                cs_strbuf_put(b, "<start_of_turn>model\n");
                put_trim(b, c);
                cs_strbuf_put(b, "<end_of_turn>\n");
                break;
            }
        }
    }
    if (gen && f == CS_CHAT_GEMMA)
        cs_strbuf_put(b, "<start_of_turn>model\n");
}

/* continue_final: msgs[0..n-1) with the generation prompt, then the last one's text */
static int render_continued(const struct cs_chat_params *p, const struct cs_chat_msg *msgs, size_t n, char **out,
                            size_t *out_len, bool *starts_with_bos, char *err, size_t errlen)
{
    struct cs_chat_params q = *p;
    q.continue_final = false;
    q.add_generation_prompt = true;
    char *head = NULL;
    size_t hl = 0;
    CS_TRY(cs_chat_render(&q, msgs, n - 1, &head, &hl, starts_with_bos, err, errlen));
    struct cs_strbuf b = {0};
    cs_strbuf_put_n(&b, head, hl);
    cs_strbuf_put(&b, msgs[n - 1].content);
    free(head);
    if (cs_strbuf_take(&b, out, out_len) != CLSPEC_OK)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "chat template: out of memory");
    return CLSPEC_OK;
}

int cs_chat_render(const struct cs_chat_params *p, const struct cs_chat_msg *msgs, size_t n, char **out,
                   size_t *out_len, bool *starts_with_bos, char *err, size_t errlen)
{
    if (!p || !out)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "chat template: no parameters or output");
    enum cs_chat_family f = p->family;
    *out = NULL;
    if (p->continue_final && n > 0 && msgs && msgs[n - 1].role && msgs[n - 1].content &&
        strcmp(msgs[n - 1].role, "assistant") == 0)
        return render_continued(p, msgs, n, out, out_len, starts_with_bos, err, errlen);
    if (f == CS_CHAT_JINJA)
        return cs_chat_jinja_render_msgs(p, msgs, n, out, out_len, starts_with_bos, err, errlen);
    if ((int)f < 0 || f >= CS_CHAT_N_FAMILIES)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "chat template: family %d out of range", (int)f);
    if (n > SIZE_MAX / sizeof(enum role))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "chat template: too many messages");
    enum role *roles = malloc((n ? n : 1) * sizeof *roles);
    if (!roles)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "chat template: out of memory");
    int rc = check_messages(f, msgs, n, roles, err, errlen);
    if (rc != CLSPEC_OK) {
        free(roles);
        return rc;
    }
    const char *bos = p->bos ? p->bos : default_bos(f);
    const char *eos = p->eos ? p->eos : "</s>";
    const char *first_bos = p->skip_leading_bos ? "" : bos;
    bool gen = p->add_generation_prompt;
    bool bos_first = false;
    struct cs_strbuf b = {0};
    switch (f) {
    case CS_CHAT_PLAIN:
        render_plain(&b, msgs, roles, n, gen);
        break;
    case CS_CHAT_CHATML:
        render_chatml(&b, msgs, roles, n, gen);
        break;
    case CS_CHAT_LLAMA3:
    case CS_CHAT_LLAMA31:
        render_llama3(&b, msgs, roles, n, gen, first_bos, f == CS_CHAT_LLAMA31);
        bos_first = true;
        break;
    case CS_CHAT_ZEPHYR:
        render_zephyr(&b, msgs, roles, n, gen, eos);
        break;
    default:
        render_alternating(&b, f, msgs, roles, n, gen, bos, first_bos, eos);
        bos_first = true;
        break;
    }
    free(roles);
    if (cs_strbuf_take(&b, out, out_len) != CLSPEC_OK)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "chat template %s: out of memory", family_names[f]);
    if (starts_with_bos)
        *starts_with_bos = bos_first && !p->skip_leading_bos && bos[0] != '\0';
    return CLSPEC_OK;
}

/* The vocabulary text of a special token ("" when the vocabulary has none). */
static const char *token_text(const clspec_engine *e, int32_t id)
{
    const char *t = clspec_token_text(e, id, NULL);
    return t ? t : "";
}

/* The parameters cs_chat_tokenize(_json) render with: e's BOS/EOS texts and,
 * for CS_CHAT_JINJA, e's template. */
static int engine_params(const clspec_engine *e, enum cs_chat_family f, bool add_generation_prompt,
                         struct cs_chat_params *p, char *err, size_t errlen)
{
    struct clspec_engine_info info = {.size = sizeof info};
    CS_TRY(clspec_engine_get_info(e, &info, err, errlen));
    *p = (struct cs_chat_params){
        .family = f,
        .add_generation_prompt = add_generation_prompt,
        .continue_final = true, /* llama-server's prefill_assistant */
        .bos = token_text(e, info.bos),
        .eos = token_text(e, info.eos),
    };
    if (f == CS_CHAT_JINJA) {
        p->jinja = clspec_chat_template(e, &p->jinja_len);
        if (!p->jinja)
            return cs_err(err, errlen, CLSPEC_E_INVAL, "chat template jinja: the model has no chat template");
    }
    return CLSPEC_OK;
}

/* Tokenizes the rendered text t (len bytes; freed here or handed over as
 * *text) with the BOS rule of cs_chat_tokenize. */
static int tokenize_rendered(const clspec_engine *e, enum cs_chat_family f, char *t, size_t len, bool has_bos,
                             int32_t **ids, size_t *n_ids, char **text, char *err, size_t errlen)
{
    size_t need = 0;
    /* at most one token per byte, plus BOS/EOS */
    size_t cap = len + 2;
    int32_t *v = malloc(cap * sizeof *v);
    if (!v) {
        free(t);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "chat template %s: out of memory", cs_chat_family_name(f));
    }
    int rc = clspec_tokenize(e, t, len, !has_bos, 1, v, cap, &need, err, errlen);
    if (rc == CLSPEC_E_RANGE && need > cap) { /* cannot happen for byte-fallback vocabularies; be safe */
        int32_t *nv = realloc(v, need * sizeof *v);
        if (!nv) {
            rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "chat template %s: out of memory", cs_chat_family_name(f));
        } else {
            v = nv;
            rc = clspec_tokenize(e, t, len, !has_bos, 1, v, need, &need, err, errlen);
        }
    }
    if (rc != CLSPEC_OK) {
        free(v);
        free(t);
        return rc;
    }
    *ids = v;
    *n_ids = need;
    if (text)
        *text = t;
    else
        free(t);
    return CLSPEC_OK;
}

int cs_chat_tokenize(const clspec_engine *e, enum cs_chat_family f, const struct cs_chat_msg *msgs, size_t n,
                     bool add_generation_prompt, int32_t **ids, size_t *n_ids, char **text, char *err,
                     size_t errlen)
{
    *ids = NULL;
    *n_ids = 0;
    if (text)
        *text = NULL;
    struct cs_chat_params p;
    CS_TRY(engine_params(e, f, add_generation_prompt, &p, err, errlen));
    char *t = NULL;
    size_t len = 0;
    bool has_bos = false;
    CS_TRY(cs_chat_render(&p, msgs, n, &t, &len, &has_bos, err, errlen));
    return tokenize_rendered(e, f, t, len, has_bos, ids, n_ids, text, err, errlen);
}

int cs_chat_tokenize_json(const clspec_engine *e, enum cs_chat_family f, const json_t *messages,
                          const json_t *tools, const json_t *kwargs, bool add_generation_prompt, int32_t **ids,
                          size_t *n_ids, char **text, char *err, size_t errlen)
{
    *ids = NULL;
    *n_ids = 0;
    if (text)
        *text = NULL;
    struct cs_chat_params p;
    CS_TRY(engine_params(e, f, add_generation_prompt, &p, err, errlen));
    p.tools = tools;
    p.kwargs = kwargs;
    char *t = NULL;
    size_t len = 0;
    bool has_bos = false;
    CS_TRY(cs_chat_render_json(&p, messages, &t, &len, &has_bos, err, errlen));
    return tokenize_rendered(e, f, t, len, has_bos, ids, n_ids, text, err, errlen);
}
