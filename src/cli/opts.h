/* opts.h: numeric command-line option values for the clspec subcommands.
 * On a bad value they print "clspec CMD: OPT needs ..." to stderr and return
 * -1; *out is written only on success. */
#ifndef CS_CLI_OPTS_H
#define CS_CLI_OPTS_H

/* A number in [lo, hi] (strtod syntax). v may be NULL (missing value). */
int cs_opt_num(const char *cmd, const char *opt, const char *v, double lo, double hi, double *out);
/* A base-10 integer in [lo, hi]. */
int cs_opt_int(const char *cmd, const char *opt, const char *v, long lo, long hi, long *out);

#endif
