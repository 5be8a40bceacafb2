/*
 * cli: the `verolux` command line.  main.c dispatches `verolux CMD ARGS...`
 * to a vx_cmd_* function, which parses its own options (argv[0] is the
 * subcommand's name) and returns the process exit status:
 *   0 success, 1 a failure while working (bad image, missing model),
 *   2 a usage error (unknown option, bad value).
 * Each command prints its own usage on --help.
 *
 * Threading: called once, from the main thread.
 */
#ifndef VX_CLI_H
#define VX_CLI_H

#include <stdio.h>

#define VX_EXIT_OK 0
#define VX_EXIT_FAIL 1
#define VX_EXIT_USAGE 2

/* One per subcommand (cmd_NAME.c). */
int vx_cmd_detect(int argc, char **argv);
int vx_cmd_bench(int argc, char **argv);
int vx_cmd_models(int argc, char **argv);
int vx_cmd_serve(int argc, char **argv);
int vx_cmd_export(int argc, char **argv);

/* Default model path: $MODEL_PATH, else
 * $VEROLUX_CACHE/models/nanodet/nanodet.json with VEROLUX_CACHE defaulting
 * to $HOME/.cache/verolux.  Writes into buf; returns 0 when no path can be
 * formed (no HOME, or the result does not fit). */
int vx_cli_default_model(char *buf, size_t len);

/* Strict number parsing for option values: the whole string must be a
 * number.  Return 0 on success. */
int vx_cli_parse_int(const char *s, long lo, long hi, int *out);
int vx_cli_parse_float(const char *s, float *out);

#endif
