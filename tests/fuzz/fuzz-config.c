/* fuzz-cfg.c: libFuzzer target for clspecd's configuration loader. The
 * input is handed to cs_config_load as a file (a memfd seen through
 * /proc/self/fd); a configuration that loads is printed and its print
 * loaded again, which must succeed and print the same text. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "daemon/cfg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *print_str(const struct cs_config *c)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        abort();
    cs_config_print_opts(c, f, 0);
    fclose(f);
    char *nl = strchr(buf, '\n'); /* drop the header line: it names the file */
    char *rest = strdup(nl ? nl : "");
    free(buf);
    return rest;
}

static int load_mem(const void *data, size_t size, struct cs_config **c, char *err, size_t errlen)
{
    int fd = memfd_create("fuzz-config", 0);
    if (fd < 0)
        abort();
    if (size && write(fd, data, size) != (ssize_t)size)
        abort();
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    int rc = cs_config_load(path, c, err, errlen);
    close(fd);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cs_config *c = NULL, *c2 = NULL;
    char err[CLSPEC_ERRLEN];
    if (load_mem(data, size, &c, err, sizeof err) != CLSPEC_OK) {
        if (c || !strchr(err, ':'))
            abort(); /* failure leaves nothing and names file:line */
        return 0;
    }
    char *a = print_str(c);
    if (load_mem(a, strlen(a), &c2, err, sizeof err) != CLSPEC_OK) {
        fprintf(stderr, "the print of a loaded configuration does not load: %s\n%s\n", err, a);
        abort();
    }
    char *b = print_str(c2);
    if (strcmp(a, b) != 0) {
        fprintf(stderr, "print -> load -> print differs:\n%s\n--\n%s\n", a, b);
        abort();
    }
    (void)cs_config_engine_params(c);
    free(a);
    free(b);
    cs_config_free(c);
    cs_config_free(c2);
    return 0;
}
