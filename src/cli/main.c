/*
 * verolux: subcommand dispatch.  `verolux CMD ARGS...` runs CMD with argv
 * shifted so that the command sees its own name as argv[0].
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/vx_core.h"

/* OpenMP threads that wait by spinning (libgomp's default) collapse when
 * the cores are shared: a spinning waiter holds the core that the thread it
 * waits for needs, and each of the ~50 barriers of an inference can cost a
 * scheduler quantum (measured: NanoDet 2 threads on a loaded 2-core machine,
 * 400-1000 ms per image spinning vs 90-125 ms sleeping).  The server always
 * shares its cores with decoders, the HTTP thread and other pipelines, so
 * waiters sleep unless the user chose a policy.  libgomp reads its
 * environment once, when it is loaded (before main, and before any
 * pre-initialiser's setenv could take: libc resets environ after those), so
 * the setting takes one re-exec of ourselves. */
static void omp_defaults(char **argv)
{
    if (getenv("OMP_WAIT_POLICY") || getenv("VX_OMP_DEFAULTS_SET"))
        return;
    setenv("OMP_WAIT_POLICY", "passive", 1);
    setenv("VX_OMP_DEFAULTS_SET", "1", 1);
    execv("/proc/self/exe", argv);
    /* no /proc: carry on with libgomp's default */
}

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv); /* NULL: not in this version yet */
    const char *summary;
} command;

static const command commands[] = {
    {"detect", vx_cmd_detect, "detect objects in image files"},
    {"bench", vx_cmd_bench, "measure inference speed and accuracy"},
    {"models", vx_cmd_models, "inspect a model file, run it on raw .npy inputs"},
    {"serve", vx_cmd_serve, "run the video analytics server"},
    {"export", vx_cmd_export, "compile a model into engine files (INT8, FP16/BF16, FP32)"},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: verolux COMMAND [ARGS...]\n"
               "       verolux --help | --version\n\n"
               "commands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-8s %s%s\n", commands[i].name, commands[i].summary,
                commands[i].run ? "" : " (not yet available)");
    fprintf(f, "\nRun 'verolux COMMAND --help' for the options of one command.\n");
}

int main(int argc, char **argv)
{
    omp_defaults(argv);
    if (argc < 2) {
        usage(stderr);
        return VX_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return VX_EXIT_OK;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
        printf("verolux %s\n", VX_VERSION);
        return VX_EXIT_OK;
    }
    for (size_t i = 0; i < NCOMMANDS; i++) {
        if (strcmp(cmd, commands[i].name))
            continue;
        if (!commands[i].run) {
            fprintf(stderr, "verolux: '%s' is not available in this version yet\n", cmd);
            return VX_EXIT_FAIL;
        }
        return commands[i].run(argc - 1, argv + 1);
    }
    if (cmd[0] == '-')
        fprintf(stderr, "verolux: unknown option '%s'\n\n", cmd);
    else
        fprintf(stderr, "verolux: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return VX_EXIT_USAGE;
}
