/* main.c: the clspec command-line tool: dispatches to one subcommand. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "clspec/clspec.h"

struct cs_subcommand {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
};

/* One line per subcommand, in the order --help lists them. */
static const struct cs_subcommand commands[] = {
    {"inspect", cs_cmd_inspect, "show a GGUF file's metadata and tensors"},
    {"run", cs_cmd_run, "generate text from a prompt"},
    {"bench", cs_cmd_bench, "measure prompt-processing and generation speed"},
    {"devices", cs_cmd_devices, "list OpenCL devices, capabilities and bandwidth"},
    {"synth", cs_cmd_synth, "write a synthetic model (real shapes, random weights)"},
    {"mmproj", cs_cmd_mmproj, "vision projectors: a synthetic one, or encode images"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: clspec [--version] [--help] COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n'clspec COMMAND --help' describes a command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
        printf("clspec %s\n", clspec_version());
        return 0;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "clspec: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
