/* opts.c: see opts.h. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/opts.h"

int cs_opt_num(const char *cmd, const char *opt, const char *v, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double x = v ? strtod(v, &end) : 0;
    if (!v || errno || end == v || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "clspec %s: %s needs a number in [%g, %g]\n", cmd, opt, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

int cs_opt_int(const char *cmd, const char *opt, const char *v, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "clspec %s: %s needs an integer in [%ld, %ld]\n", cmd, opt, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}
