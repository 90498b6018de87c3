/* cli.h: the subcommands of the clspec command-line tool. Each takes the
 * arguments after its name (argv[0] = subcommand) and returns an exit code. */
#ifndef CS_CLI_H
#define CS_CLI_H

int cs_cmd_inspect(int argc, char **argv);
int cs_cmd_devices(int argc, char **argv);
int cs_cmd_run(int argc, char **argv);
int cs_cmd_bench(int argc, char **argv);
int cs_cmd_synth(int argc, char **argv);
int cs_cmd_mmproj(int argc, char **argv);

#endif
