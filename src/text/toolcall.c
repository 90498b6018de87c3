/* toolcall.c: incremental tool-call parsing (see toolcall.h for the
 * formats). The stream keeps every byte fed (buf) and a position up to
 * which it has been turned into deltas; each step looks at buf[pos..] and
 * either advances (emitting deltas) or waits for more text. Offsets into
 * buf stay valid as it grows, so nothing is rescanned but the undecided
 * tail. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "text/toolcall.h"
#include "base/common.h"
#include "base/strbuf.h"


#define DS_CALLS_BEGIN "<\xef\xbd\x9ctool\xe2\x96\x81" "calls\xe2\x96\x81" "begin\xef\xbd\x9c>"
#define DS_CALLS_END "<\xef\xbd\x9ctool\xe2\x96\x81" "calls\xe2\x96\x81" "end\xef\xbd\x9c>"
#define DS_CALL_BEGIN "<\xef\xbd\x9ctool\xe2\x96\x81" "call\xe2\x96\x81" "begin\xef\xbd\x9c>"
#define DS_CALL_END "<\xef\xbd\x9ctool\xe2\x96\x81" "call\xe2\x96\x81" "end\xef\xbd\x9c>"
#define DS_SEP "<\xef\xbd\x9ctool\xe2\x96\x81" "sep\xef\xbd\x9c>"

/* ---- the stream ---- */
enum state {
    S_TEXT,      /* content, watching for the start marker */
    S_START,     /* llama3/functionary: nothing decided yet at the answer's start */
    S_OBJ_OPEN,  /* a JSON call object should start here */
    S_OBJ_KEY,   /* inside the call object, before a key or its end */
    S_ARGS,      /* streaming the arguments' value */
    S_OBJ_AFTER, /* after a call object: the format's closing */
    S_XML_FUNC,  /* qwen3-coder: expecting <function=N> */
    S_XML_PARAM, /* qwen3-coder: a parameter or </function> */
    S_XML_CLOSE, /* qwen3-coder: </tool_call> */
    S_DS_CALLS,  /* deepseek: a call or the end of the calls */
    S_DS_NAME,   /* deepseek: "function<sep>N\n" or "N<sep>" */
    S_DS_AFTER,  /* deepseek: fence and call end */
    S_FN_NAME,   /* functionary: a recipient name up to "\n" */
    S_FN_TEXT,   /* functionary: content of "all" up to the next ">>>" */
    S_PY_CODE,   /* llama3 <|python_tag|> code, or functionary python code, up to the end */
    S_MS_NAME,   /* mistral: "N[ARGS]" (or "N[CALL_ID]id[ARGS]") after [TOOL_CALLS] */
    S_FV_NAME,   /* functionary v3.1: "N>" after <function= */
    S_FV_CLOSE,  /* functionary v3.1: </function> */
    S_ACT_END    /* command-r7b: <|END_ACTION|> after the array */
};

struct cs_toolcall_stream {
    enum cs_tool_format f;
    struct cs_strbuf buf;
    size_t pos;
    enum state st;
    size_t call_start;   /* where the call's marker began (content again if it turns out malformed) */
    int index;           /* calls started so far */
    char *name;          /* the call in progress */
    char *pending_args;  /* its arguments when they came before its name */
    bool started;        /* its CALL_START was emitted */
    bool args_seen;      /* its arguments were emitted (else "{}" at its end) */
    bool first_param;    /* qwen3-coder: no parameter emitted yet */
    bool in_array;       /* mistral, command-r7b: inside [TOOL_CALLS][...] / <|START_ACTION|>[...] */
    bool flat;           /* mistral: the call in progress is [TOOL_CALLS]N[ARGS]{...} */
    int depth;           /* arguments scanner: nesting depth */
    bool in_str, esc;
    struct cs_tool_delta *ev;
    size_t n_ev, cap_ev;
    bool oom;
};

static void emit(struct cs_toolcall_stream *s, enum cs_tool_delta_kind k, int index, const char *t, size_t n)
{
    if (s->oom || (n == 0 && k != CS_TD_CALL_START))
        return;
    if (k != CS_TD_CALL_START && s->n_ev && s->ev[s->n_ev - 1].kind == k && s->ev[s->n_ev - 1].index == index) {
        s->oom = cs_str_append(&s->ev[s->n_ev - 1].text, t, n) != 0; /* the same kind and call: one delta */
        return;
    }
    struct cs_tool_delta *nv = cs_grow(s->ev, &s->cap_ev, s->n_ev + 1, sizeof *nv);
    char *p = NULL;
    if (nv)
        s->ev = nv;
    if (!nv || cs_str_append(&p, t, n) != 0) {
        s->oom = true;
        return;
    }
    s->ev[s->n_ev++] = (struct cs_tool_delta){.kind = k, .index = index, .text = p};
}

static const char *B(struct cs_toolcall_stream *s) { return s->buf.p ? s->buf.p : ""; }
static size_t N(struct cs_toolcall_stream *s) { return s->buf.len; }

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static void skip_ws(struct cs_toolcall_stream *s)
{
    while (s->pos < N(s) && is_ws(B(s)[s->pos]))
        s->pos++;
}

/* 1: lit is at pos (consumed); 0: the text ends inside a prefix of it; -1: something else is there */
static int match(struct cs_toolcall_stream *s, const char *lit)
{
    size_t k = strlen(lit), have = N(s) - s->pos;
    if (memcmp(B(s) + s->pos, lit, CS_MIN(k, have)) != 0)
        return -1;
    if (have < k)
        return 0;
    s->pos += k;
    return 1;
}

/* offset of needle in buf[from..], or SIZE_MAX */
static size_t find(struct cs_toolcall_stream *s, size_t from, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = from; i + k <= N(s); i++)
        if (!memcmp(B(s) + i, needle, k))
            return i;
    return SIZE_MAX;
}

/* bytes at the end of buf[from..] that could begin needle */
static size_t held(struct cs_toolcall_stream *s, size_t from, const char *needle)
{
    size_t k = strlen(needle), n = N(s) - from;
    for (size_t l = CS_MIN(k - 1, n); l > 0; l--)
        if (!memcmp(B(s) + N(s) - l, needle, l))
            return l;
    return 0;
}

/* Length of the complete JSON value at buf[at..]: >0 done, 0 incomplete, -1 not JSON. */
static long value_len(struct cs_toolcall_stream *s, size_t at)
{
    const char *b = B(s);
    size_t n = N(s), i = at;
    if (i >= n)
        return 0;
    char c = b[i];
    if (c == '"') {
        for (i++; i < n; i++) {
            if (b[i] == '\\')
                i++;
            else if (b[i] == '"')
                return (long)(i + 1 - at);
        }
        return 0;
    }
    if (c == '{' || c == '[') {
        int depth = 0;
        bool str = false;
        for (; i < n; i++) {
            char d = b[i];
            if (str) {
                if (d == '\\')
                    i++;
                else if (d == '"')
                    str = false;
            } else if (d == '"') {
                str = true;
            } else if (d == '{' || d == '[') {
                depth++;
            } else if (d == '}' || d == ']') {
                if (--depth == 0)
                    return (long)(i + 1 - at);
            }
        }
        return 0;
    }
    if (!strchr("-0123456789tfn", c))
        return -1;
    while (i < n && strchr("-+.0123456789eEtruefalsn", b[i]))
        i++;
    return i < n ? (long)(i - at) : 0;
}

/* the malformed call since call_start goes out as content; back to text */
static void fallback(struct cs_toolcall_stream *s)
{
    if (!s->started)
        emit(s, CS_TD_CONTENT, 0, B(s) + s->call_start, s->pos - s->call_start);
    else if (!s->args_seen)
        emit(s, CS_TD_CALL_ARGS, s->index - 1, "{}", 2);
    free(s->name);
    free(s->pending_args);
    s->name = s->pending_args = NULL;
    s->started = false;
    s->flat = s->in_array = false;
    s->st = s->f == CS_TOOL_FUNCTIONARY ? S_FN_TEXT : S_TEXT;
}

static void start_call(struct cs_toolcall_stream *s)
{
    emit(s, CS_TD_CALL_START, s->index, s->name, strlen(s->name));
    s->started = true;
    s->args_seen = false;
    s->index++;
}

static void end_call(struct cs_toolcall_stream *s)
{
    if (!s->started && s->name)
        start_call(s);
    if (s->pending_args && !s->args_seen) {
        emit(s, CS_TD_CALL_ARGS, s->index - 1, s->pending_args, strlen(s->pending_args));
        s->args_seen = true;
    }
    free(s->pending_args);
    s->pending_args = NULL;
    if (!s->args_seen)
        emit(s, CS_TD_CALL_ARGS, s->index - 1, "{}", 2);
    free(s->name);
    s->name = NULL;
    s->started = false;
}

static char *dup_n(const char *p, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, p, n);
        d[n] = 0;
    }
    return d;
}

/* content up to the first of k markers (held back while one may be
 * starting); that marker's state next. Returns whether it advanced. */
static bool text_until_any(struct cs_toolcall_stream *s, const char *const *marker, const enum state *next, int k,
                           bool final)
{
    size_t at = SIZE_MAX, hold = 0;
    int which = -1;
    for (int i = 0; i < k; i++) {
        size_t a = find(s, s->pos, marker[i]);
        if (a < at) {
            at = a;
            which = i;
        }
        hold = CS_MAX(hold, held(s, s->pos, marker[i]));
    }
    if (which < 0) {
        size_t end = final ? N(s) : N(s) - hold;
        emit(s, CS_TD_CONTENT, 0, B(s) + s->pos, end - s->pos);
        bool moved = end > s->pos;
        s->pos = end;
        return moved;
    }
    emit(s, CS_TD_CONTENT, 0, B(s) + s->pos, at - s->pos);
    s->call_start = at;
    s->pos = at + strlen(marker[which]);
    s->st = next[which];
    return true;
}

static bool text_until(struct cs_toolcall_stream *s, const char *marker, enum state next, bool final)
{
    return text_until_any(s, &marker, &next, 1, final);
}

/* the object's key at pos; 1 read (name taken or args streaming set up), 0 wait, -1 malformed */
static int obj_key(struct cs_toolcall_stream *s)
{
    size_t save = s->pos;
    skip_ws(s);
    if (s->pos >= N(s))
        return 0;
    char c = B(s)[s->pos];
    if (c == ',') {
        s->pos++;
        return 1;
    }
    if (c == '}') {
        s->pos++;
        if (!s->name || (s->f == CS_TOOL_LLAMA3 && !s->args_seen)) /* llama3: {"name", "parameters"} only */
            return -1;
        end_call(s);
        s->st = S_OBJ_AFTER;
        return 1;
    }
    long kl = value_len(s, s->pos);
    if (kl < 0 || c != '"')
        return -1;
    size_t kpos = s->pos;
    size_t p = s->pos + (size_t)(kl > 0 ? kl : 0);
    while (p < N(s) && is_ws(B(s)[p]))
        p++;
    if (kl == 0 || p >= N(s)) {
        s->pos = save;
        return 0;
    }
    if (B(s)[p] != ':')
        return -1;
    p++;
    while (p < N(s) && is_ws(B(s)[p]))
        p++;
    if (p >= N(s)) {
        s->pos = save;
        return 0;
    }
    json_t *kj = json_loadb(B(s) + kpos, (size_t)kl, JSON_DECODE_ANY, NULL);
    const char *key = json_string_value(kj);
    bool is_name = key && (!strcmp(key, "name") || !strcmp(key, "tool_name"));
    bool is_args = key && (!strcmp(key, "arguments") || !strcmp(key, "parameters"));
    json_decref(kj);
    if (is_args && s->name && (B(s)[p] == '{' || B(s)[p] == '[')) {
        if (!s->started)
            start_call(s);
        s->pos = p;
        s->depth = 0;
        s->in_str = s->esc = false;
        s->args_seen = true;
        s->st = S_ARGS;
        return 1;
    }
    long vl = value_len(s, p);
    if (vl < 0)
        return -1;
    if (vl == 0) {
        s->pos = save;
        return 0;
    }
    json_t *v = json_loadb(B(s) + p, (size_t)vl, JSON_DECODE_ANY, NULL);
    if (!v)
        return -1;
    if (is_name && json_is_string(v) && !s->name) {
        s->name = strdup(json_string_value(v));
    } else if (is_args && !s->name) { /* before the name: kept for the call's end */
        free(s->pending_args);
        s->pending_args = json_is_string(v) ? strdup(json_string_value(v)) : dup_n(B(s) + p, (size_t)vl);
    } else if (is_args) { /* as a JSON string */
        if (!s->started)
            start_call(s);
        if (json_is_string(v))
            emit(s, CS_TD_CALL_ARGS, s->index - 1, json_string_value(v), json_string_length(v));
        else
            emit(s, CS_TD_CALL_ARGS, s->index - 1, B(s) + p, (size_t)vl);
        s->args_seen = true;
    }
    json_decref(v);
    s->pos = p + (size_t)vl;
    return 1;
}

/* streams the arguments' object/array up to its end */
static bool args_step(struct cs_toolcall_stream *s)
{
    size_t from = s->pos, i = s->pos;
    bool done = false;
    for (; i < N(s) && !done; i++) {
        char c = B(s)[i];
        if (s->in_str) {
            if (s->esc)
                s->esc = false;
            else if (c == '\\')
                s->esc = true;
            else if (c == '"')
                s->in_str = false;
        } else if (c == '"') {
            s->in_str = true;
        } else if (c == '{' || c == '[') {
            s->depth++;
        } else if (c == '}' || c == ']') {
            done = --s->depth == 0;
        }
    }
    emit(s, CS_TD_CALL_ARGS, s->index - 1, B(s) + from, i - from);
    s->pos = i;
    if (!done)
        return i > from;
    if (s->f == CS_TOOL_FUNCTIONARY || s->flat || s->f == CS_TOOL_FUNCTIONARY_V31) { /* the call ends with them */
        end_call(s);
        s->st = s->f == CS_TOOL_FUNCTIONARY ? S_FN_TEXT : s->flat ? S_TEXT : S_FV_CLOSE;
        s->flat = false;
    } else {
        s->st = S_OBJ_KEY;
    }
    return true;
}

/* after a call object: </tool_call>, the next array element, ... */
static int obj_after(struct cs_toolcall_stream *s)
{
    skip_ws(s);
    if (s->pos >= N(s))
        return 0;
    int m;
    switch (s->f) {
    case CS_TOOL_HERMES:
        m = match(s, "</tool_call>");
        if (m == 1)
            s->st = S_TEXT;
        return m;
    case CS_TOOL_MISTRAL:
    case CS_TOOL_COMMAND_R7B:
        if (B(s)[s->pos] == ',') {
            s->pos++;
            s->call_start = s->pos;
            s->st = S_OBJ_OPEN;
            return 1;
        }
        if (B(s)[s->pos] == ']') {
            s->pos++;
            s->in_array = false;
            s->st = s->f == CS_TOOL_COMMAND_R7B ? S_ACT_END : S_TEXT;
            return 1;
        }
        return -1;
    default: /* llama3: another object may follow after ';' */
        if (B(s)[s->pos] == ';')
            s->pos++;
        s->call_start = s->pos;
        s->st = S_START;
        return 1;
    }
}

static int obj_open(struct cs_toolcall_stream *s)
{
    skip_ws(s);
    if (s->pos >= N(s))
        return 0;
    if ((s->f == CS_TOOL_MISTRAL || s->f == CS_TOOL_COMMAND_R7B) && !s->in_array) {
        if (s->f == CS_TOOL_MISTRAL && B(s)[s->pos] != '[') { /* [TOOL_CALLS]N[ARGS]{...} */
            s->st = S_MS_NAME;
            return 1;
        }
        if (B(s)[s->pos] != '[')
            return -1;
        s->in_array = true;
        s->pos++;
        return 1;
    }
    if (B(s)[s->pos] != '{')
        return -1;
    s->pos++;
    s->st = S_OBJ_KEY;
    return 1;
}

/* a value of qwen3-coder: JSON when it reads as JSON, else the text as a string */
static void xml_param(struct cs_toolcall_stream *s, const char *name, size_t nl, const char *v, size_t vl)
{
    if (vl && v[0] == '\n')
        v++, vl--;
    if (vl && v[vl - 1] == '\n')
        vl--;
    json_t *j = json_loadb(v, vl, JSON_DECODE_ANY, NULL);
    if (!j)
        j = json_stringn(v, vl);
    json_t *k = json_stringn(name, nl);
    char *ks = json_dumps(k, JSON_ENCODE_ANY), *vs = json_dumps(j, JSON_ENCODE_ANY);
    if (ks && vs) {
        struct cs_strbuf b = {0};
        cs_strbuf_printf(&b, "%s%s: %s", s->first_param ? "{" : ", ", ks, vs);
        emit(s, CS_TD_CALL_ARGS, s->index - 1, b.p ? b.p : "", b.len);
        cs_strbuf_free(&b);
        s->first_param = false;
        s->args_seen = true;
    } else {
        s->oom = true;
    }
    free(ks);
    free(vs);
    json_decref(j);
    json_decref(k);
}

static int xml_step(struct cs_toolcall_stream *s)
{
    skip_ws(s);
    if (s->pos >= N(s))
        return 0;
    if (s->st == S_XML_FUNC) {
        int m = match(s, "<function=");
        if (m <= 0)
            return m;
        size_t e = find(s, s->pos, ">");
        if (e == SIZE_MAX) {
            s->pos -= strlen("<function=");
            return 0;
        }
        s->name = dup_n(B(s) + s->pos, e - s->pos);
        s->pos = e + 1;
        start_call(s);
        s->first_param = true;
        s->st = S_XML_PARAM;
        return 1;
    }
    if (s->st == S_XML_CLOSE) {
        int m = match(s, "</tool_call>");
        if (m == 1)
            s->st = S_TEXT;
        return m;
    }
    int m = match(s, "</function>");
    if (m == 1) {
        if (s->first_param)
            emit(s, CS_TD_CALL_ARGS, s->index - 1, "{}", 2);
        else
            emit(s, CS_TD_CALL_ARGS, s->index - 1, "}", 1);
        s->args_seen = true;
        end_call(s);
        s->st = S_XML_CLOSE;
        return 1;
    }
    if (m == 0)
        return 0;
    size_t at = s->pos;
    m = match(s, "<parameter=");
    if (m <= 0)
        return m;
    size_t e = find(s, s->pos, ">"), close = e == SIZE_MAX ? SIZE_MAX : find(s, e + 1, "</parameter>");
    if (close == SIZE_MAX) {
        s->pos = at;
        return 0;
    }
    xml_param(s, B(s) + s->pos, e - s->pos, B(s) + e + 1, close - e - 1);
    s->pos = close + strlen("</parameter>");
    return 1;
}

static int ds_step(struct cs_toolcall_stream *s)
{
    skip_ws(s);
    if (s->pos >= N(s))
        return 0;
    if (s->st == S_DS_CALLS) {
        int m = match(s, DS_CALLS_END);
        if (m == 1) {
            s->st = S_TEXT;
            return 1;
        }
        if (m == 0)
            return 0;
        m = match(s, DS_CALL_BEGIN);
        if (m == 1)
            s->st = S_DS_NAME;
        return m;
    }
    if (s->st == S_DS_NAME) {
        size_t sep = find(s, s->pos, DS_SEP);
        if (sep == SIZE_MAX)
            return 0;
        size_t after = sep + strlen(DS_SEP);
        if (sep - s->pos == 8 && !memcmp(B(s) + s->pos, "function", 8)) { /* R1/V3: the name is the next line */
            size_t nl = find(s, after, "\n");
            if (nl == SIZE_MAX)
                return 0;
            s->name = dup_n(B(s) + after, nl - after);
            s->pos = nl + 1;
        } else { /* V3.1: name<sep>arguments */
            s->name = dup_n(B(s) + s->pos, sep - s->pos);
            s->pos = after;
        }
        start_call(s);
        skip_ws(s);
        size_t fence = s->pos;
        int m = match(s, "```json");
        if (m == 0) {
            s->pos = fence;
            s->st = S_DS_AFTER; /* decide on the fence when more text comes */
            s->depth = -1;
            return 1;
        }
        if (m < 0)
            s->pos = fence;
        s->depth = 0;
        s->in_str = s->esc = false;
        s->args_seen = true;
        s->st = S_ARGS;
        return 1;
    }
    /* S_DS_AFTER: after the arguments (depth 0), or still before them (depth -1) */
    if (s->depth == -1) {
        int m = match(s, "```json");
        if (m == 0)
            return 0;
        skip_ws(s);
        s->depth = 0;
        s->in_str = s->esc = false;
        s->args_seen = true;
        s->st = S_ARGS;
        return 1;
    }
    if (match(s, "```") == 0)
        return 0;
    skip_ws(s);
    int m = match(s, DS_CALL_END);
    if (m == 1) {
        end_call(s);
        s->st = S_DS_CALLS;
    }
    return m;
}

static int fn_name(struct cs_toolcall_stream *s)
{
    size_t nl = find(s, s->pos, "\n");
    if (nl == SIZE_MAX)
        return 0;
    char *name = dup_n(B(s) + s->pos, nl - s->pos);
    if (!name) {
        s->oom = true;
        return 0;
    }
    s->pos = nl + 1;
    if (!strcmp(name, "all")) {
        free(name);
        s->st = S_FN_TEXT;
        return 1;
    }
    s->name = name;
    start_call(s);
    skip_ws(s);
    if (s->pos < N(s) && B(s)[s->pos] != '{') {
        s->st = S_PY_CODE;
        return 1;
    }
    s->depth = 0;
    s->in_str = s->esc = false;
    s->args_seen = true;
    s->st = S_ARGS;
    return 1;
}

/* code after <|python_tag|> (llama3) or for a functionary "python" call: up to the end */
static bool code_step(struct cs_toolcall_stream *s, bool final)
{
    if (!final)
        return false;
    if (!s->started) {
        s->name = strdup("python");
        if (!s->name) {
            s->oom = true;
            return false;
        }
        start_call(s);
    }
    json_t *o = json_pack("{s:s%}", "code", B(s) + s->pos, N(s) - s->pos);
    char *t = o ? json_dumps(o, 0) : NULL;
    if (t)
        emit(s, CS_TD_CALL_ARGS, s->index - 1, t, strlen(t));
    else
        s->oom = true;
    s->args_seen = true;
    free(t);
    json_decref(o);
    s->pos = N(s);
    end_call(s);
    s->st = S_TEXT;
    return true;
}

/* llama3 at the answer's start: a JSON object is a call, <|python_tag|> code or JSON */
static int start_step(struct cs_toolcall_stream *s, bool final)
{
    size_t p = s->pos;
    while (p < N(s) && is_ws(B(s)[p]))
        p++;
    if (p >= N(s))
        return final ? -1 : 0;
    if (B(s)[p] == '{') {
        s->call_start = s->pos;
        s->pos = p;
        s->st = S_OBJ_OPEN;
        return 1;
    }
    return -1;
}

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.';
}

/* a function name at pos ending in term (consumed): 1 taken into s->name, 0 wait, -1 malformed */
static int name_until(struct cs_toolcall_stream *s, const char *term)
{
    size_t i = s->pos;
    while (i < N(s) && is_name_char(B(s)[i]))
        i++;
    if (i - s->pos > 256)
        return -1;
    if (i == N(s))
        return 0;
    size_t save = s->pos;
    s->pos = i;
    int m = match(s, term);
    if (m <= 0 || i == save) {
        s->pos = save;
        return i == save ? -1 : m;
    }
    s->name = dup_n(B(s) + save, i - save);
    if (!s->name)
        s->oom = true;
    return s->name ? 1 : 0;
}

/* the arguments' object of a call whose name was read: streamed as S_ARGS */
static int args_open(struct cs_toolcall_stream *s)
{
    skip_ws(s);
    if (s->pos >= N(s))
        return 0;
    if (B(s)[s->pos] != '{')
        return -1;
    start_call(s);
    s->depth = 0;
    s->in_str = s->esc = false;
    s->args_seen = true;
    s->st = S_ARGS;
    return 1;
}

/* mistral "N[ARGS]" or "N[CALL_ID]id[ARGS]", then the arguments */
static int ms_name(struct cs_toolcall_stream *s)
{
    if (!s->name) {
        size_t save = s->pos;
        int m = name_until(s, "[");
        if (m <= 0)
            return m;
        s->pos--; /* back to the "[" */
        if ((m = match(s, "[ARGS]")) == 1) {
        } else if (m == 0 || (m = match(s, "[CALL_ID]")) == 0) {
            free(s->name);
            s->name = NULL;
            s->pos = save;
            return 0;
        } else if (m < 0) {
            return -1;
        } else { /* the id, then [ARGS] */
            size_t a = find(s, s->pos, "[ARGS]");
            if (a == SIZE_MAX) {
                free(s->name);
                s->name = NULL;
                s->pos = save;
                return 0;
            }
            s->pos = a + strlen("[ARGS]");
        }
    }
    int r = args_open(s);
    if (r == 1)
        s->flat = true;
    return r;
}

static int fv_step(struct cs_toolcall_stream *s)
{
    if (s->st == S_FV_CLOSE) {
        skip_ws(s);
        if (s->pos >= N(s))
            return 0;
        if (match(s, "</function>") == 0)
            return 0;
        s->st = S_TEXT; /* without it the call still stands */
        return 1;
    }
    if (!s->name) {
        int m = name_until(s, ">");
        if (m <= 0)
            return m;
    }
    return args_open(s);
}

static int act_end(struct cs_toolcall_stream *s)
{
    skip_ws(s);
    if (s->pos >= N(s))
        return 0;
    if (match(s, "<|END_ACTION|>") == 0)
        return 0;
    s->st = S_TEXT; /* without it the calls still stand */
    return 1;
}

static bool step(struct cs_toolcall_stream *s, bool final)
{
    int r;
    switch (s->st) {
    case S_TEXT:
        switch (s->f) {
        case CS_TOOL_HERMES: return text_until(s, "<tool_call>", S_OBJ_OPEN, final);
        case CS_TOOL_QWEN3_CODER: return text_until(s, "<tool_call>", S_XML_FUNC, final);
        case CS_TOOL_MISTRAL: return text_until(s, "[TOOL_CALLS]", S_OBJ_OPEN, final);
        case CS_TOOL_DEEPSEEK: return text_until(s, DS_CALLS_BEGIN, S_DS_CALLS, final);
        case CS_TOOL_LLAMA3: return text_until(s, "<|python_tag|>", S_PY_CODE, final);
        case CS_TOOL_FUNCTIONARY_V31: {
            static const char *const m[] = {"<function=", "<|python_tag|>"};
            static const enum state nx[] = {S_FV_NAME, S_PY_CODE};
            return text_until_any(s, m, nx, 2, final);
        }
        case CS_TOOL_COMMAND_R7B: {
            static const char *const m[] = {"<|START_ACTION|>", "<|START_RESPONSE|>", "<|END_RESPONSE|>"};
            static const enum state nx[] = {S_OBJ_OPEN, S_TEXT, S_TEXT};
            return text_until_any(s, m, nx, 3, final);
        }
        default: return text_until(s, "\x01\x02never", S_TEXT, final);
        }
    case S_FN_TEXT: return text_until(s, ">>>", S_FN_NAME, final);
    case S_START:
        r = start_step(s, final);
        if (r < 0)
            s->st = S_TEXT;
        return r != 0;
    case S_PY_CODE:
        if (s->f == CS_TOOL_LLAMA3 && !s->started) { /* JSON after the tag is a JSON call */
            size_t p = s->pos;
            while (p < N(s) && is_ws(B(s)[p]))
                p++;
            if (p < N(s) && B(s)[p] == '{') {
                s->pos = p;
                s->st = S_OBJ_OPEN;
                return true;
            }
        }
        return code_step(s, final);
    case S_ARGS:
        if (s->f == CS_TOOL_DEEPSEEK && s->depth == 0 && !s->in_str) {
            skip_ws(s);
            if (s->pos >= N(s))
                return false;
            if (B(s)[s->pos] != '{' && B(s)[s->pos] != '[') {
                fallback(s);
                return true;
            }
        }
        if (!args_step(s))
            return false;
        if (s->f == CS_TOOL_DEEPSEEK && s->st == S_OBJ_KEY)
            s->st = S_DS_AFTER;
        return true;
    case S_OBJ_OPEN: r = obj_open(s); break;
    case S_OBJ_KEY: r = obj_key(s); break;
    case S_OBJ_AFTER: r = obj_after(s); break;
    case S_XML_FUNC:
    case S_XML_PARAM:
    case S_XML_CLOSE: r = xml_step(s); break;
    case S_DS_CALLS:
    case S_DS_NAME:
    case S_DS_AFTER: r = ds_step(s); break;
    case S_FN_NAME: r = fn_name(s); break;
    case S_MS_NAME: r = ms_name(s); break;
    case S_FV_NAME:
    case S_FV_CLOSE: r = fv_step(s); break;
    case S_ACT_END: r = act_end(s); break;
    default: return false;
    }
    if (r < 0)
        fallback(s);
    return r != 0;
}

int cs_toolcall_stream_new(enum cs_tool_format f, struct cs_toolcall_stream **out, char *err, size_t errlen)
{
    *out = NULL;
    if ((int)f < 0 || f >= CS_TOOL_N_FORMATS)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "tool-call format %d out of range", (int)f);
    struct cs_toolcall_stream *s = calloc(1, sizeof *s);
    if (!s)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "tool-call parser: out of memory");
    s->f = f;
    s->st = f == CS_TOOL_LLAMA3 ? S_START : f == CS_TOOL_FUNCTIONARY ? S_FN_NAME : S_TEXT;
    *out = s;
    return CLSPEC_OK;
}

void cs_toolcall_stream_free(struct cs_toolcall_stream *s)
{
    if (!s)
        return;
    cs_strbuf_free(&s->buf);
    cs_tool_deltas_free(s->ev, s->n_ev);
    free(s->name);
    free(s->pending_args);
    free(s);
}

void cs_tool_deltas_free(struct cs_tool_delta *ev, size_t n)
{
    for (size_t i = 0; ev && i < n; i++)
        free(ev[i].text);
    free(ev);
}

int cs_toolcall_stream_feed(struct cs_toolcall_stream *s, const char *text, size_t n, bool final,
                            struct cs_tool_delta **ev, size_t *n_ev, char *err, size_t errlen)
{
    *ev = NULL;
    *n_ev = 0;
    if (n)
        cs_strbuf_put_n(&s->buf, text, n);
    for (int guard = 0; !s->buf.oom && !s->oom && step(s, final) && guard < 1 << 20; guard++)
        ;
    if (final && s->pos < N(s)) { /* a call still open: what is left is content */
        if (s->st == S_FN_NAME && !s->started) {
            emit(s, CS_TD_CONTENT, 0, B(s) + s->pos, N(s) - s->pos);
        } else {
            if (!s->started)
                s->pos = CS_MIN(s->pos, s->call_start);
            emit(s, CS_TD_CONTENT, 0, B(s) + s->pos, N(s) - s->pos);
        }
        s->pos = N(s);
    }
    if (final && s->started)
        end_call(s);
    if (s->buf.oom || s->oom)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "tool-call parser: out of memory");
    *ev = s->ev;
    *n_ev = s->n_ev;
    s->ev = NULL;
    s->n_ev = s->cap_ev = 0;
    return CLSPEC_OK;
}

int cs_toolcall_parse(enum cs_tool_format f, const char *text, size_t n, char **content,
                      struct cs_tool_call **calls, size_t *n_calls, char *err, size_t errlen)
{
    *content = NULL;
    *calls = NULL;
    *n_calls = 0;
    struct cs_toolcall_stream *s = NULL;
    CS_TRY(cs_toolcall_stream_new(f, &s, err, errlen));
    struct cs_tool_delta *ev = NULL;
    size_t nev = 0;
    int rc = cs_toolcall_stream_feed(s, text, n, true, &ev, &nev, err, errlen);
    cs_toolcall_stream_free(s);
    if (rc)
        return rc;
    struct cs_strbuf c = {0};
    struct cs_tool_call *out = calloc(nev ? nev : 1, sizeof *out);
    struct cs_strbuf *args = calloc(nev ? nev : 1, sizeof *args);
    size_t nc = 0;
    for (size_t i = 0; out && args && i < nev; i++) {
        if (ev[i].kind == CS_TD_CONTENT) {
            cs_strbuf_put(&c, ev[i].text);
        } else if (ev[i].kind == CS_TD_CALL_START) {
            out[nc++].name = ev[i].text;
            ev[i].text = NULL;
        } else if (ev[i].index >= 0 && (size_t)ev[i].index < nc) {
            cs_strbuf_put(&args[ev[i].index], ev[i].text);
        }
    }
    bool oom = !out || !args || c.oom;
    for (size_t i = 0; !oom && i < nc; i++) {
        size_t len;
        oom = cs_strbuf_take(&args[i], &out[i].arguments, &len) != CLSPEC_OK;
    }
    for (size_t i = 0; args && i < nev; i++)
        cs_strbuf_free(&args[i]);
    free(args);
    cs_tool_deltas_free(ev, nev);
    size_t clen;
    if (oom || cs_strbuf_take(&c, content, &clen) != CLSPEC_OK) {
        cs_strbuf_free(&c);
        cs_tool_calls_free(out, nc);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "tool-call parser: out of memory");
    }
    *calls = out;
    *n_calls = nc;
    return CLSPEC_OK;
}

void cs_tool_calls_free(struct cs_tool_call *c, size_t n)
{
    for (size_t i = 0; c && i < n; i++) {
        free(c[i].name);
        free(c[i].arguments);
    }
    free(c);
}
