/*
 * verolux models: look inside a model file and run it on raw inputs.
 *
 *   models inspect FILE   what the loader recognised: inputs, outputs, the
 *                         detector family, classes, size and cost, metadata;
 *   models run FILE ...   one inference on .npy inputs, every raw output
 *                         written as DIR/<output name>.npy, so that any model
 *                         can be compared output by output with another
 *                         engine (bench/ort/ort-run.js writes the same files).
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "core/vx_npy.h"
#include "detect/vx_detect.h"
#include "nn/vx_nn.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: verolux models inspect FILE\n"
               "       verolux models run FILE --input X.npy --out DIR [options]\n\n"
               "inspect prints the inputs and outputs (names, shapes), the format and opset,\n"
               "the node count as loaded and after optimisation, FLOPs, parameters, the\n"
               "detector family and classes it was recognised as, and the model's metadata.\n\n"
               "run feeds float32 .npy arrays to the network and writes every output as\n"
               "DIR/<output name>.npy (characters other than A-Z a-z 0-9 . _ - become _).\n\n"
               "run options:\n"
               "  --input X.npy       input of a model with one input\n"
               "  --input NAME=X.npy  one per input, by name\n"
               "  --out DIR           created if missing\n"
               "  --backend NAME      cpu (default) or ref\n"
               "  --threads N         inference threads (default 0: all cores)\n"
               "  --help              this text\n");
}

static int bad_usage(const char *fmt, ...) VX_PRINTF(1, 2);
static int bad_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "verolux models: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nRun 'verolux models --help' for the options.\n");
    va_end(ap);
    return VX_EXIT_USAGE;
}

static void print_shape(const vx_nn_tensor_info *t)
{
    printf("[");
    for (int i = 0; i < t->rank; i++)
        printf("%s%lld", i ? "," : "", (long long)t->dims[i]);
    printf("]");
}

static int inspect(const char *path)
{
    vx_nn_model *m, *raw;
    vx_nn_load_opts ro = {.optimize = 0};
    if (vx_nn_model_load(path, &ro, &raw) != VX_OK || vx_nn_model_load(path, NULL, &m) != VX_OK) {
        fprintf(stderr, "verolux: %s\n", vx_last_error());
        return VX_EXIT_FAIL;
    }
    vx_nn_model_stats s, s0;
    vx_nn_model_get_stats(m, &s);
    vx_nn_model_get_stats(raw, &s0);
    printf("file:     %s\n", path);
    if (s.opset)
        printf("format:   %s (opset %d)\n", s.format, s.opset);
    else
        printf("format:   %s\n", s.format);
    for (int i = 0; i < vx_nn_model_input_count(m); i++) {
        vx_nn_tensor_info t;
        vx_nn_model_input_info(m, i, &t);
        printf("%s %s ", i ? "         " : "inputs:  ", t.name);
        print_shape(&t);
        printf("\n");
    }
    for (int i = 0; i < vx_nn_model_output_count(m); i++) {
        vx_nn_tensor_info t;
        vx_nn_model_output_info(m, i, &t);
        printf("%s %s ", i ? "         " : "outputs: ", t.name);
        print_shape(&t);
        printf("\n");
    }
    printf("nodes:    %d as loaded (constants folded), %d after optimisation (%d convolutions)\n", s0.nodes,
           s.nodes, s.convs);
    printf("FLOPs:    %.3f G per image (2 x multiply-adds of convolutions and matmuls)\n", s.flops / 1e9);
    printf("params:   %.3f M\n", (double)s.params / 1e6);
    vx_family_info fam;
    vx_detect_family(m, &fam);
    printf("family:   %s (%s)\n", vx_model_family_name(fam.family), fam.why);
    if (fam.family != VX_FAMILY_UNKNOWN) {
        char **names = NULL;
        int nn = 0;
        const char *meta = vx_nn_model_metadata(m, "names");
        if (meta && vx_detect_parse_names(meta, &names, &nn) == VX_OK && nn == fam.num_classes) {
            printf("classes:  %d from the metadata:", nn);
            for (int i = 0; i < nn && i < 10; i++)
                printf("%s %s", i ? "," : "", names[i]);
            printf("%s\n", nn > 10 ? ", ..." : "");
        } else if (meta && nn != fam.num_classes) {
            printf("classes:  %d (the metadata names %d: ignored)\n", fam.num_classes, nn);
        } else {
            printf("classes:  %d%s\n", fam.num_classes,
                   fam.num_classes == 80 ? " (COCO-80 names assumed)" : "");
        }
        vx_detect_free_names(names, nn);
    }
    int nm = vx_nn_model_metadata_count(m);
    if (nm)
        printf("metadata:\n");
    for (int i = 0; i < nm; i++) {
        const char *k, *v;
        vx_nn_model_metadata_entry(m, i, &k, &v);
        /* Long values (class lists) are cut: inspect is for reading. */
        printf("  %s = %.200s%s\n", k, v, strlen(v) > 200 ? "..." : "");
    }
    vx_nn_model_destroy(m);
    vx_nn_model_destroy(raw);
    return VX_EXIT_OK;
}

/* The same file-name mapping as bench/ort/ort-run.js, so both tools write
 * comparable folders. */
static void safe_name(const char *name, char *buf, size_t cap)
{
    size_t o = 0;
    for (const char *p = name; *p && o + 1 < cap; p++) {
        char c = *p;
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                 c == '_' || c == '-';
        buf[o++] = ok ? c : '_';
    }
    buf[o] = 0;
    if (!strcmp(buf, "") || !strcmp(buf, ".") || !strcmp(buf, "..")) {
        char tmp[300];
        snprintf(tmp, sizeof tmp, "_%s", buf);
        snprintf(buf, cap, "%s", tmp);
    }
}

static int run(const char *path, char **inputs, int n_inputs, const char *out_dir,
               const vx_nn_engine_opts *eo)
{
    vx_nn_model *m = NULL;
    vx_nn_engine *e = NULL;
    vx_npy *arr = NULL;
    int rc = VX_EXIT_FAIL;
    if (vx_nn_model_load(path, NULL, &m) != VX_OK)
        goto fail;
    int ni = vx_nn_model_input_count(m);
    arr = calloc((size_t)ni + 1, sizeof *arr);
    if (!arr) {
        vx_fail(VX_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int k = 0; k < n_inputs; k++) {
        const char *spec = inputs[k], *eq = strchr(spec, '='), *file = spec;
        int idx = -1;
        for (int i = 0; eq && i < ni; i++) {
            vx_nn_tensor_info t;
            vx_nn_model_input_info(m, i, &t);
            if (strlen(t.name) == (size_t)(eq - spec) && !strncmp(t.name, spec, (size_t)(eq - spec)))
                idx = i, file = eq + 1;
        }
        if (idx < 0) {
            if (ni != 1) {
                fprintf(stderr, "verolux: the model has %d inputs; give each as --input NAME=X.npy\n", ni);
                rc = VX_EXIT_USAGE;
                goto out;
            }
            idx = 0;
        }
        if (arr[idx].data) {
            fprintf(stderr, "verolux: input %d given twice\n", idx);
            rc = VX_EXIT_USAGE;
            goto out;
        }
        if (vx_npy_read(file, &arr[idx]) != VX_OK)
            goto fail;
    }
    if (vx_nn_engine_create(m, eo, &e) != VX_OK)
        goto fail;
    for (int i = 0; i < ni; i++) {
        vx_nn_tensor_info t;
        vx_nn_model_input_info(m, i, &t);
        if (!arr[i].data) {
            fprintf(stderr, "verolux: no --input for model input '%s'\n", t.name);
            rc = VX_EXIT_USAGE;
            goto out;
        }
        int same = arr[i].rank == t.rank;
        for (int k = 0; same && k < t.rank; k++)
            same = arr[i].dims[k] == t.dims[k];
        if (!same) {
            fprintf(stderr, "verolux: input '%s': the model expects shape ", t.name);
            for (int k = 0; k < t.rank; k++)
                fprintf(stderr, "%s%lld", k ? "x" : "", (long long)t.dims[k]);
            fprintf(stderr, ", the .npy has ");
            for (int k = 0; k < arr[i].rank; k++)
                fprintf(stderr, "%s%lld", k ? "x" : "", (long long)arr[i].dims[k]);
            fprintf(stderr, "\n");
            goto out;
        }
        memcpy(vx_nn_engine_input(e, i), arr[i].data, (size_t)arr[i].count * sizeof(float));
    }
    if (vx_nn_engine_run(e) != VX_OK)
        goto fail;
    if (mkdir(out_dir, 0777) && errno != EEXIST) {
        vx_fail(VX_ERR_IO, "%s: cannot create: %s", out_dir, strerror(errno));
        goto fail;
    }
    int no = vx_nn_model_output_count(m);
    char(*used)[256] = calloc((size_t)no + 1, sizeof *used);
    if (!used) {
        vx_fail(VX_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < no; i++) {
        vx_nn_tensor_info t;
        vx_nn_model_output_info(m, i, &t);
        char nm[256], file[4600];
        safe_name(t.name, nm, sizeof nm - 8);
        for (int dup = 1; dup;) {
            dup = 0;
            for (int k = 0; k < i; k++)
                if (!strcmp(used[k], nm))
                    dup = 1;
            if (dup)
                strcat(nm, "_");
        }
        snprintf(used[i], sizeof used[i], "%s", nm);
        snprintf(file, sizeof file, "%s/%s.npy", out_dir, nm);
        if (vx_npy_write(file, vx_nn_engine_output(e, i), t.dims, t.rank) != VX_OK) {
            free(used);
            goto fail;
        }
        printf("%s ", t.name);
        print_shape(&t);
        printf(" -> %s\n", file);
    }
    free(used);
    fprintf(stderr, "%s\n", vx_nn_engine_describe(e));
    rc = VX_EXIT_OK;
    goto out;
fail:
    fprintf(stderr, "verolux: %s\n", vx_last_error());
out:
    for (int i = 0; arr && m && i < vx_nn_model_input_count(m); i++)
        vx_npy_free(&arr[i]);
    free(arr);
    vx_nn_engine_destroy(e);
    vx_nn_model_destroy(m);
    return rc;
}

int vx_cmd_models(int argc, char **argv)
{
    enum { OPT_INPUT = 256, OPT_OUT, OPT_BACKEND, OPT_THREADS };
    static const struct option long_opts[] = {
        {"input", required_argument, NULL, OPT_INPUT},
        {"out", required_argument, NULL, OPT_OUT},
        {"backend", required_argument, NULL, OPT_BACKEND},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char *inputs[64];
    int n_inputs = 0;
    const char *out_dir = NULL;
    vx_nn_engine_opts eo;
    vx_nn_engine_opts_default(&eo);
    eo.backend = VX_NN_BACKEND_CPU;

    optind = 0; /* GNU: full reset, argv[0] is the subcommand */
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", long_opts, NULL)) != -1) {
        switch (c) {
        case OPT_INPUT:
            if (n_inputs >= 64)
                return bad_usage("more than 64 --input options");
            inputs[n_inputs++] = optarg;
            break;
        case OPT_OUT: out_dir = optarg; break;
        case OPT_BACKEND:
            if (vx_nn_backend_parse(optarg, &eo.backend) != VX_OK)
                return bad_usage("unknown backend '%s' (expected cpu or ref)", optarg);
            break;
        case OPT_THREADS:
            if (vx_cli_parse_int(optarg, 0, 4096, &eo.threads))
                return bad_usage("--threads needs a whole number from 0 to 4096, not '%s'", optarg);
            break;
        case 'h': usage(stdout); return VX_EXIT_OK;
        case ':': return bad_usage("option '%s' needs a value", argv[optind - 1]);
        default: return bad_usage("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return bad_usage("need a subcommand: inspect or run");
    const char *sub = argv[optind];
    if (!strcmp(sub, "inspect")) {
        if (argc - optind != 2)
            return bad_usage("inspect needs exactly one FILE");
        if (n_inputs || out_dir)
            return bad_usage("inspect takes no --input or --out");
        return inspect(argv[optind + 1]);
    }
    if (!strcmp(sub, "run")) {
        if (argc - optind != 2)
            return bad_usage("run needs exactly one FILE");
        if (!n_inputs)
            return bad_usage("run needs --input X.npy");
        if (!out_dir)
            return bad_usage("run needs --out DIR");
        return run(argv[optind + 1], inputs, n_inputs, out_dir, &eo);
    }
    return bad_usage("unknown subcommand '%s' (expected inspect or run)", sub);
}
