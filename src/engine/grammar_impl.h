/* grammar_impl.h: the compiled form shared by the GBNF parser
 * (grammar_parse.c) and the matcher (grammar.c). */
#ifndef CS_GRAMMAR_IMPL_H
#define CS_GRAMMAR_IMPL_H

#include <stdint.h>

#include "engine/grammar.h"

enum { CS_GEL_END = 0, CS_GEL_CHAR = 1, CS_GEL_REF = 2 };

struct cs_gel {
    int32_t type; /* CS_GEL_* */
    int32_t v;    /* CHAR: class index; REF: rule index; END: unused */
};

struct cs_grammar {
    _Atomic int refs;
    uint64_t gen;          /* unique per compiled grammar (scratch memos are tied to it) */
    int32_t n_rules;
    int32_t root;          /* rule index of the start rule */
    struct cs_gel *el;     /* (n_el) every alternative's elements, each run ending in END */
    int32_t n_el;
    int32_t *alt;          /* (n_alt) index in el of each alternative's first element */
    int32_t *rule_alt;     /* (n_rules + 1) rule r's alternatives are alt[rule_alt[r] .. rule_alt[r+1]) */
    uint32_t *rng;         /* (2 * n_rng) code-point ranges [lo, hi], inclusive */
    int32_t *cls;          /* (n_cls + 1) class c's ranges are rng pairs cls[c] .. cls[c+1] */
    int32_t n_cls;
    uint8_t (*first)[32];  /* (n_cls) bit set of the UTF-8 lead bytes of the class's code points */
};

#endif
