/* json_schema.h: JSON Schema -> GBNF (the grammar format of grammar.h).
 *
 * Supported: type (one or a list), object (properties in their order,
 * required, additionalProperties false / true / a schema; without
 * additionalProperties only the declared properties are generated), array
 * (items, minItems, maxItems; tuples: prefixItems, or items as an array,
 * generate exactly those items in order, then more only when items (after
 * prefixItems) or additionalItems (after an items array) gives their
 * schema), string (minLength, maxLength, pattern: a
 * regular expression of literals, classes, groups, alternatives and
 * quantifiers, matched against the whole string; format date, time,
 * date-time, uuid; other formats are plain strings), integer / number
 * (minimum / maximum / exclusive*: an integer range of up to 1000 values
 * exactly, otherwise only the sign), boolean, null, enum, const, anyOf,
 * oneOf (as anyOf), allOf of objects (properties merged), $ref to any
 * local JSON pointer ("#/$defs/x", "#/definitions/x", "#"); recursion
 * allowed. Annotations (title, description, examples, default, $schema,
 * $id, $comment, deprecated, readOnly, writeOnly) are ignored; any other
 * keyword is refused with its JSON pointer. Generated whitespace between
 * tokens: one blank, or a line break and up to 20 blanks or tabs (a bound,
 * so that a model cannot fill its budget with blanks). */
#ifndef CS_JSON_SCHEMA_H
#define CS_JSON_SCHEMA_H

#include <stddef.h>

#include <jansson.h>

/* GBNF (malloc'd, NUL-terminated, *len bytes; start rule "root") for the
 * schema. Errors: "json_schema: <pointer>: what". */
int cs_json_schema_gbnf(json_t *schema, char **out, size_t *len, char *err, size_t errlen);
/* The same from JSON text (syntax errors carry line:column). */
int cs_json_schema_gbnf_text(const char *text, size_t n, char **out, size_t *len, char *err, size_t errlen);
/* GBNF of any JSON object (response_format {"type": "json_object"}). Static text. */
const char *cs_json_object_gbnf(void);
/* Appends bytes s[0..n) to b as a GBNF string literal ("...": quote, backslash, newline and
 * other control bytes escaped). */
struct cs_strbuf;
void cs_gbnf_put_literal(struct cs_strbuf *b, const char *s, size_t n);

#endif
