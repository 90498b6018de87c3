/* test-jinja.c: the Jinja interpreter (src/text/jinja*.c): each construct
 * chat templates use against the text Python's jinja2 renders in
 * transformers' environment (expected strings written from Jinja's
 * semantics; the feature tour was also compared with jinja2 3.1 by
 * tests/chat/jinja2-crosscheck.sh), whitespace control, Jinja's lenient
 * undefined, errors naming the template line, and the limits. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/common.h"
#include "text/jinja.h"

static const char *VARS =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": \" Hello \"},"
    " {\"role\": \"assistant\", \"content\": \"Hi\"}, {\"role\": \"user\", \"content\": \"Q\"}],"
    " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\":"
    " {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}}}}],"
    " \"n\": 3, \"f\": 2.5, \"flag\": true, \"nothing\": null, \"uni\": \"h\\u00e9llo\"}";

/* renders src with VARS at a fixed time; NULL and the message in err on failure */
static char *render(const char *src, char *err, size_t errlen)
{
    json_error_t je;
    json_t *vars = json_loads(VARS, 0, &je);
    assert_non_null(vars);
    struct cs_jinja *t = NULL;
    char *out = NULL;
    int rc = cs_jinja_compile(src, strlen(src), &t, err, errlen);
    if (rc == CLSPEC_OK)
        rc = cs_jinja_render(t, vars, 1700000000, &out, NULL, err, errlen);
    cs_jinja_free(t);
    json_decref(vars);
    if (rc != CLSPEC_OK) {
        assert_int_equal(rc, CLSPEC_E_INVAL);
        assert_null(out);
        return NULL;
    }
    return out;
}

static void expect(const char *src, const char *want)
{
    char err[256] = "";
    char *out = render(src, err, sizeof err);
    if (!out)
        fail_msg("[%s] failed: %s", src, err);
    if (strcmp(out, want) != 0) {
        fprintf(stderr, "# template [%s]\n# got  [%s]\n# want [%s]\n", src, out, want);
        free(out);
        fail();
    }
    free(out);
}

static void expect_error(const char *src, const char *want_in_err)
{
    char err[256] = "";
    char *out = render(src, err, sizeof err);
    if (out) {
        fprintf(stderr, "# [%s] rendered [%s], an error was expected\n", src, out);
        free(out);
        fail();
    }
    if (!strstr(err, want_in_err))
        fail_msg("[%s]: error [%s] lacks [%s]", src, err, want_in_err);
}

static void test_output_and_literals(void **state)
{
    (void)state;
    expect("a{{ 1 }}b{{ 'x' }}{{ \"y\" }}", "a1bxy");
    expect("{{ none }} {{ true }} {{ False }} {{ nothing }} {{ missing }}|", "None True False None |");
    expect("{{ 1.0 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 2.5e-7 }} {{ f }} {{ 7 / 2 }}",
           "1.0 0.30000000000000004 1e+20 2.5e-07 2.5 3.5");
    expect("{{ [1, 'a', none] }} {{ (1, 2) }} {{ (1,) }} {{ {'k': \"it's\"} }}", "[1, 'a', None] (1, 2) (1,) {'k': \"it's\"}");
    expect("{{ 'a' 'b' }} {{ 'tab\\there' }} {{ '\\u00e9' }}", "ab tab\there \xc3\xa9");
}

static void test_operators(void **state)
{
    (void)state;
    expect("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ -2 ** 2 }} {{ 10 - 2 - 3 }} {{ 2 * 3 + 4 }}",
           "3 -4 1 2 1024 4 5 10");
    expect("{{ 'a' ~ 1 ~ none }} {{ 'ab' + 'c' }} {{ 3 * 'ab' }} {{ [1] + [2] }}", "a1None abc ababab [1, 2]");
    expect("{{ 'a' in 'cat' }} {{ 'z' not in 'cat' }} {{ 2 in [1, 2] }} {{ 'a' in {'a': 1} }} {{ 1 == 1.0 }} {{ 'a' < 'b' }}",
           "True True True True True True");
    expect("{{ not true }} {{ true and 'x' }} {{ false or 'y' }} {{ 0 or [] }} {{ 'x' if n > 2 else 'y' }} {{ 'x' if false }}|",
           "False x y [] x |");
    expect("{{ 'abc'[::-1] }} {{ 'abcdef'[1:4] }} {{ [1, 2, 3, 4][-2:] }} {{ [1, 2, 3][0] }} {{ uni[1] }} {{ uni[-1] }}",
           "cba bcd [3, 4] 1 \xc3\xa9 o");
    expect("{{ messages[0]['role'] }} {{ messages[-1].content }} {{ messages.0.role }} {{ tools[0].function.name }}",
           "system Q system get_weather");
    expect_error("{{ 1 / 0 }}", "division by zero");
    expect_error("{{ 'a' + 1 }}", "unsupported operand types for +: string and int");
}

static void test_statements(void **state)
{
    (void)state;
    expect("{% for m in messages if m.role != 'system' %}{{ loop.index }}/{{ loop.length }}{{ loop.index0 }}"
           "{{ loop.first }}{{ loop.last }}{{ loop.revindex }}{{ m.role }};{% endfor %}",
           "1/30TrueFalse3user;2/31FalseFalse2assistant;3/32FalseTrue1user;");
    expect("{% for x in [] %}x{% else %}empty{% endfor %}", "empty");
    expect("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}{% for k in {'c': 1} %}{{ k }}{% endfor %}",
           "a=1;b=2;c");
    expect("{% for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 3 %}{% break %}{% endif %}{{ i }}"
           "{% endfor %}",
           "02");
    expect("{% if n == 1 %}one{% elif n == 3 %}three{% else %}other{% endif %}", "three");
    /* set in a loop stays in the loop; a namespace carries it out */
    expect("{% set x = 1 %}{% set ns = namespace(y=1) %}{% for i in [1, 2] %}{% set x = x + i %}{% set ns.y = ns.y + i %}"
           "{% endfor %}{{ x }} {{ ns.y }}",
           "1 4");
    expect("{% set b %}in {{ 1 + 1 }}{% endset %}[{{ b }}]{% set p, q = [1, 2] %}{{ p }}{{ q }}", "[in 2]12");
    expect("{% macro g(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ g('Bob') }} {{ g('Al', punct='?') }}",
           "Hi Bob! Hi Al?");
    expect("{% macro w() %}<{{ caller() }}>{% endmacro %}{% call w() %}body{% endcall %}", "<body>");
    expect("{# comment #}a{% generation %}b{% endgeneration %}", "ab");
    expect_error("{% set n.x = 1 %}", "not a namespace");
}

/* {% filter %} blocks: the body's text through a filter chain (firefunction-v2's "filter trim") */
static void test_filter_block(void **state)
{
    (void)state;
    expect("{%- filter trim -%}\n  A {{ messages[0].content }}  \n{%- endfilter -%}|", "A S|");
    expect("[{% filter upper | replace('X', 'y') %} x{{ n + 1 }}x {% endfilter %}]", "[ y4y ]");
    expect("{% filter indent(2) %}l1\nl2{% filter lower %}QQ{% endfilter %}{% endfilter %}", "l1\n  l2qq");
    expect("{% for m in messages %}{% filter trim %} {{ m.role }} {% endfilter %},{% endfor %}",
           "system,user,assistant,user,");
    expect("{% filter length %}abc{% endfilter %}", "3");
    expect_error("x\n{% filter nosuch %}a{% endfilter %}", "template line 2: unknown filter 'nosuch'");
    expect_error("{% filter trim %}a", "missing 'endfilter' for the block opened on line 1");
    expect_error("{% filter %}a{% endfilter %}", "template line 1");
    /* llama.cpp's leniency that firefunction-v2 needs: string + undefined is the string; + none fails */
    expect("{{ 'a' + no_such }}|{{ no_such + 'b' }}|{% set s = 'x' %}{% set s = s + '\\n' + functions %}{{ s }}",
           "a|b|x\n");
    expect_error("{{ 1 + no_such }}", "unsupported operand types");
    expect_error("{{ 'a' + nothing }}", "unsupported operand types");
}

static void test_whitespace_control(void **state)
{
    (void)state;
    /* trim_blocks: the newline after a block tag goes; lstrip_blocks: the indentation before it */
    expect("a\n  {% if true %}\n  b\n  {% endif %}\nc\n", "a\n  b\nc");
    expect("a  {{- ' b ' -}}  c", "a b c");
    expect("a\n{%- if true -%}\n  b\n{%- endif %}", "ab");
    expect("x {%+ if true %}y{% endif %}", "x y");
    expect("{{ 1 }}\n{{ 2 }}", "1\n2");
    expect("a\n{# c #}\nb", "a\nb");
}

static void test_filters(void **state)
{
    (void)state;
    expect("{{ ' x '|trim }}|{{ 'ab'|upper }}{{ 'AB'|lower }} {{ 'hello world'|title }} {{ 'hello'|capitalize }}",
           "x|ABab Hello World Hello");
    expect("{{ uni|length }} {{ messages|length }} {{ messages|count }} {{ [1, 2, 3]|first }}{{ [1, 2, 3]|last }}",
           "5 4 4 13");
    expect("{{ [1, 2, 3]|join(', ') }} {{ messages|map(attribute='role')|join(',') }}",
           "1, 2, 3 system,user,assistant,user");
    expect("{{ missing|default('D') }} {{ ''|default('E', true) }} {{ nothing|default('F') }}", "D E None");
    expect("{{ 3.7|int }} {{ '42'|int }} {{ 'x'|int }} {{ '2.5'|float }} {{ 2.5|round }} {{ 3.14159|round(2) }}"
           " {{ -3|abs }} {{ 5|string + 'x' }}",
           "3 42 0 2.5 2.0 3.14 3 5x");
    expect("{{ messages|selectattr('role', 'equalto', 'user')|list|length }}"
           " {{ messages|rejectattr('role', 'equalto', 'user')|map(attribute='role')|list }}"
           " {{ [1, 'a', 2]|select('number')|list }} {{ [0, 1, 2]|reject|list }} {{ tools|selectattr('function')|list|length }}",
           "2 ['system', 'assistant'] [1, 2] [0] 1");
    expect("{{ [3, 1, 2]|sort }} {{ [3, 1, 2]|sort(reverse=true) }} {{ ['b', 'A', 'a']|unique|list }}"
           " {{ {'b': 1, 'a': 2}|dictsort }} {{ {'a': 1}|items|list }} {{ 'ab'|list }}",
           "[1, 2, 3] [3, 2, 1] ['b', 'A'] [('a', 2), ('b', 1)] [('a', 1)] ['a', 'b']");
    expect("{{ 'text\\nmore\\n\\nend'|indent(2) }}|{{ 'a\\nb'|indent(2, true) }}|{{ 'one two  three'|wordcount }}",
           "text\n  more\n\n  end|  a\n  b|3");
    expect("{{ 'a-b'|replace('-', '+') }} {{ '<&>'|e }} {{ [1, 5, 2]|max }} {{ [4, 5]|sum }}", "a+b &lt;&amp;&gt; 5 9");
    expect_error("{{ 1|nosuch }}", "unknown filter 'nosuch'");
}

static void test_tojson(void **state)
{
    (void)state;
    expect("{{ {'a': 1, 'b': [1, 2.5, 'x\"y', none, true, 'h\\u00e9\\n']}|tojson }}",
           "{\"a\": 1, \"b\": [1, 2.5, \"x\\\"y\", null, true, \"h\xc3\xa9\\n\"]}");
    expect("{{ {'b': 1, 'a': [2]}|tojson(indent=2) }}", "{\n  \"b\": 1,\n  \"a\": [\n    2\n  ]\n}");
    expect("{{ {'a': 1, 'b': 2}|tojson(separators=(',', ':')) }} {{ {'b': 1, 'a': 2}|tojson(sort_keys=true) }}"
           " {{ [] |tojson }} {{ {}|tojson(indent=4) }}",
           "{\"a\":1,\"b\":2} {\"a\": 2, \"b\": 1} [] {}");
    expect("{{ tools[0]|tojson }}",
           "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\","
           " \"properties\": {\"city\": {\"type\": \"string\"}}}}}");
}

static void test_tests_and_methods(void **state)
{
    (void)state;
    expect("{{ missing is defined }} {{ missing is not defined }} {{ nothing is none }} {{ n is number }}"
           " {{ 'a' is string }} {{ {} is mapping }} {{ [] is iterable }} {{ n is integer }} {{ f is float }}"
           " {{ flag is boolean }} {{ flag is true }} {{ 4 is divisibleby 2 }} {{ 3 is odd }} {{ 3 is even }}"
           " {{ 'a' is in 'cat' }} {{ 2 is equalto 2 }} {{ 'a' is sequence }}",
           "False True True True True True True True True True True True True False True True True");
    expect("{{ '  x  '.strip() }}|{{ 'xxaxx'.strip('x') }} {{ 'a,b,,c'.split(',') }} {{ 'a b  c'.split() }}"
           " {{ 'a,b,c'.split(',', 1) }} {{ 'abc'.startswith('ab') }} {{ 'abc'.endswith(('x', 'c')) }}",
           "x|a ['a', 'b', '', 'c'] ['a', 'b', 'c'] ['a', 'b,c'] True True");
    expect("{{ 'hello'.replace('l', 'L') }} {{ 'hello'.find('l') }} {{ 'x'.upper() }} {{ '  y'.lstrip() }}"
           " {{ 'z  '.rstrip() }}| {{ ', '.join(['a', 'b']) }} {{ 'A{}B{}'.format(1, 2) }} {{ 'a b'.title() }}",
           "heLLo 2 X y z| a, b A1B2 A B");
    expect("{{ {'a': 1}.get('a') }} {{ {'a': 1}.get('z', 'd') }} {{ {'a': 1}.keys()|list }} {{ {'a': 1}.values()|list }}",
           "1 d ['a'] [1]");
    /* lenient where transformers' immutable sandbox refuses (no "do" tag there, no list.append) */
    expect("{% set l = [] %}{% do l.append(1) %}{{ l }} {{ l|length }}", "[1] 1");
    expect("{{ range(3)|list }} {{ range(2, 10, 3)|list }} {{ dict(a=1) }}", "[0, 1, 2] [2, 5, 8] {'a': 1}");
    expect("{{ strftime_now('%Y-%m-%d %b') }}", "2023-11-14 Nov");
}

/* Jinja's default Undefined: prints empty, is false, iterates as empty, has
 * length 0; reading an attribute of it is an error. */
static void test_undefined(void **state)
{
    (void)state;
    expect("[{{ missing }}]{% if missing %}x{% endif %}{% for x in missing %}y{% endfor %}{{ missing|length }}"
           "{{ messages[0].nope is defined }}{{ messages[9] is defined }}",
           "[]0FalseFalse");
    expect_error("{{ missing.attr }}", "'missing' is undefined");
    expect_error("{{ missing() }}", "'missing' is undefined");
}

/* every error names the template line it happened on */
static void test_errors_name_the_line(void **state)
{
    (void)state;
    expect_error("line one\n{% for x in messages %}\n{{ x | nosuchfilter }}\n{% endfor %}", "template line 3: unknown filter");
    expect_error("ok\n{% if true %}\n{{ 1 + }}\n", "template line 3: unexpected '}}'");
    expect_error("a\nb\n{% if true %}x", "template line 3: missing 'endif' for the block opened on line 3");
    expect_error("\n\n{{ raise_exception('Conversation roles must alternate') }}",
                 "template line 3: raise_exception: Conversation roles must alternate");
    expect_error("{% endfor %}", "template line 1: unexpected 'endfor' (no block is open)");
    expect_error("{% foo %}", "unknown tag 'foo'");
    expect_error("{{ 'abc }}", "template line 1: unterminated string");
    expect_error("x\n{{ 1 ", "template line 2: unclosed tag");
    expect_error("{# never closed", "unclosed comment");
    expect_error("{% for a, b in [[1]] %}{% endfor %}", "cannot unpack");
}

static void test_limits(void **state)
{
    (void)state;
    expect_error("{{ range(2000000)|length }}", "range larger than 1000000 items");
    expect_error("{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}", "nested deeper than");
    expect_error("{{ 'x' * 100000000 }}", "string repetition too large");
    /* bad input: not an object, and a NULL template */
    struct cs_jinja *t = NULL;
    char err[128];
    assert_int_equal(cs_jinja_compile(NULL, 0, &t, err, sizeof err), CLSPEC_E_INVAL);
    assert_int_equal(cs_jinja_compile("x", 1, &t, err, sizeof err), CLSPEC_OK);
    json_t *arr = json_array();
    char *out = NULL;
    assert_int_equal(cs_jinja_render(t, arr, 0, &out, NULL, err, sizeof err), CLSPEC_E_INVAL);
    assert_non_null(strstr(err, "JSON object"));
    assert_int_equal(cs_jinja_render(t, NULL, 0, &out, NULL, err, sizeof err), CLSPEC_OK);
    assert_string_equal(out, "x");
    free(out);
    json_decref(arr);
    cs_jinja_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_output_and_literals), cmocka_unit_test(test_operators),
        cmocka_unit_test(test_statements),          cmocka_unit_test(test_whitespace_control),
        cmocka_unit_test(test_filters),             cmocka_unit_test(test_tojson),
        cmocka_unit_test(test_tests_and_methods),   cmocka_unit_test(test_undefined),
        cmocka_unit_test(test_errors_name_the_line), cmocka_unit_test(test_limits),
        cmocka_unit_test(test_filter_block),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
