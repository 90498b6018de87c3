/* jinja_builtins.h: helpers shared by jinja_filters.c and jinja_methods.c
 * (argument access, string operations). */
#ifndef CS_JINJA_BUILTINS_H
#define CS_JINJA_BUILTINS_H

#include <stdlib.h>

#include "text/jinja_impl.h"

/* argument idx by position, else the keyword name (NULL: positional only), else dflt */
jx_val jx_arg(const jx_val *args, size_t n, const char *const *kwn, const jx_val *kwv, size_t nkw, size_t idx,
              const char *name, jx_val dflt);
const char *jx_want_str(struct jx_render *R, int line, jx_val v, const char *what);
int64_t jx_want_int(struct jx_render *R, int line, jx_val v, const char *what);
jx_val jx_buf_str(struct jx_render *R, struct cs_strbuf *b); /* the text of b as a value; frees b */
bool jx_is_space(char c);
jx_val jx_strip(struct jx_render *R, jx_val s, const char *chars, bool left, bool right);
/* mode 0 lower, 1 upper, 2 title, 3 capitalize (ASCII letters) */
jx_val jx_case(struct jx_render *R, jx_val s, int mode);
jx_val jx_replace(struct jx_render *R, jx_val s, jx_val old, jx_val new, int64_t count);

#endif
