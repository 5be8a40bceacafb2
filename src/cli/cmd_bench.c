/*
 * `verolux bench model`: inference latency of a model on each backend and
 * thread count.  Timing is per run of the compiled network (input already
 * in place), after warm-up runs; the table gives median, p10, p90 and the
 * FPS the median allows.  Comparisons with other engines belong to the
 * scripts under bench/, which run both in one go and report ratios.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "nn/vx_nn.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: verolux bench model [--model PATH] [--backend cpu|ref|all] [--threads N[,N...]]\n"
               "                           [--precision fp32|bf16|all] [--runs N] [--warmup N] [--json]\n\n"
               "Measures the network alone (no pre/post-processing) on a fixed random input.\n"
               "  --model PATH     model file (default: $MODEL_PATH or the cached NanoDet-g)\n"
               "  --backend B      cpu (default), ref, or all\n"
               "  --threads LIST   comma-separated thread counts (default: 1 and all cores)\n"
               "  --precision P    fp32 (default), bf16, a comma list, or all (cpu backend)\n"
               "  --runs N         timed runs per configuration (default 200, at least 1)\n"
               "  --warmup N       untimed runs first (default 20)\n"
               "  --json           one JSON object per configuration instead of a table\n");
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *sorted, int n, double p)
{
    double pos = p * (n - 1);
    int lo = (int)pos;
    int hi = lo + 1 < n ? lo + 1 : lo;
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

static int bench_one(const vx_nn_model *m, vx_nn_backend b, vx_nn_precision prec, int threads, int runs,
                     int warmup, int json, const char *model_path)
{
    vx_nn_engine_opts o = {.backend = b, .threads = threads, .precision = prec};
    vx_nn_engine *e;
    if (vx_nn_engine_create(m, &o, &e)) {
        fprintf(stderr, "verolux: %s\n", vx_last_error());
        return VX_EXIT_FAIL;
    }
    for (int i = 0; i < vx_nn_model_input_count(m); i++) {
        vx_nn_tensor_info ti;
        vx_nn_model_input_info(m, i, &ti);
        size_t n = 1;
        for (int k = 0; k < ti.rank; k++)
            n *= (size_t)ti.dims[k];
        float *in = vx_nn_engine_input(e, i);
        uint32_t s = 12345;
        for (size_t k = 0; k < n; k++) {
            s = s * 1664525u + 1013904223u;
            in[k] = (float)(s >> 8) / (float)(1u << 24) * 4.0f - 2.0f;
        }
    }
    double *t = malloc(sizeof(double) * (size_t)runs);
    if (!t) {
        vx_nn_engine_destroy(e);
        return VX_EXIT_FAIL;
    }
    for (int i = 0; i < warmup + runs; i++) {
        double t0 = vx_now_s();
        if (vx_nn_engine_run(e)) {
            fprintf(stderr, "verolux: %s\n", vx_last_error());
            free(t);
            vx_nn_engine_destroy(e);
            return VX_EXIT_FAIL;
        }
        if (i >= warmup)
            t[i - warmup] = (vx_now_s() - t0) * 1e3;
    }
    qsort(t, (size_t)runs, sizeof(double), cmp_double);
    double med = pct(t, runs, 0.5), p10 = pct(t, runs, 0.1), p90 = pct(t, runs, 0.9);
    vx_nn_model_stats st;
    vx_nn_model_get_stats(m, &st);
    if (json) {
        json_t *o2 = json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:s}", "model",
                               model_path, "backend", vx_nn_backend_name(b), "precision",
                               vx_nn_precision_name(prec), "threads", threads, "runs", runs, "warmup", warmup,
                               "median_ms", med, "p10_ms", p10, "p90_ms", p90, "fps", 1e3 / med,
                               "gflops_per_s", st.flops / (med * 1e6), "engine", vx_nn_engine_describe(e));
        char *s = o2 ? json_dumps(o2, JSON_COMPACT) : NULL;
        if (s)
            printf("%s\n", s);
        free(s);
        json_decref(o2);
    } else {
        printf("%-5s %-5s %7d %6d %10.2f %9.2f %9.2f %8.1f %9.1f\n", vx_nn_backend_name(b),
               vx_nn_precision_name(prec), threads, runs, med, p10, p90, 1e3 / med, st.flops / (med * 1e6));
    }
    fflush(stdout);
    free(t);
    vx_nn_engine_destroy(e);
    return VX_EXIT_OK;
}

static int bench_model(int argc, char **argv)
{
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"backend", required_argument, 0, 'b'},
                                         {"threads", required_argument, 0, 't'},
                                         {"runs", required_argument, 0, 'r'},
                                         {"warmup", required_argument, 0, 'w'},
                                         {"json", no_argument, 0, 'j'},
                                         {"precision", required_argument, 0, 'p'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    char model[4096] = "";
    const char *backend = "cpu", *threads_arg = NULL, *prec_arg = "fp32";
    int runs = 200, warmup = 20, json = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:b:t:r:w:p:jh", opts, NULL)) != -1) {
        switch (c) {
        case 'm': snprintf(model, sizeof model, "%s", optarg); break;
        case 'b': backend = optarg; break;
        case 't': threads_arg = optarg; break;
        case 'r':
            if (vx_cli_parse_int(optarg, 1, 1000000, &runs)) {
                fprintf(stderr, "verolux bench: --runs needs a number >= 1\n");
                return VX_EXIT_USAGE;
            }
            break;
        case 'w':
            if (vx_cli_parse_int(optarg, 0, 1000000, &warmup)) {
                fprintf(stderr, "verolux bench: --warmup needs a number >= 0\n");
                return VX_EXIT_USAGE;
            }
            break;
        case 'j': json = 1; break;
        case 'p': prec_arg = optarg; break;
        case 'h': usage(stdout); return VX_EXIT_OK;
        default: usage(stderr); return VX_EXIT_USAGE;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "verolux bench model: unexpected argument '%s'\n", argv[optind]);
        return VX_EXIT_USAGE;
    }
    if (!model[0] && !vx_cli_default_model(model, sizeof model)) {
        fprintf(stderr, "verolux bench: no model path (set MODEL_PATH or HOME)\n");
        return VX_EXIT_FAIL;
    }
    vx_nn_backend backends[3];
    int nb = 0;
    if (!strcmp(backend, "all")) {
        backends[nb++] = VX_NN_BACKEND_CPU;
        backends[nb++] = VX_NN_BACKEND_REF;
    } else if (vx_nn_backend_parse(backend, &backends[0]) == VX_OK) {
        nb = 1;
    } else {
        fprintf(stderr, "verolux bench: %s\n", vx_last_error());
        return VX_EXIT_USAGE;
    }
    int threads[16], nt = 0, cores = vx_cpu_count();
    if (threads_arg) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", threads_arg);
        for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
            if (nt == 16 || vx_cli_parse_int(tok, 1, 1024, &threads[nt])) {
                fprintf(stderr, "verolux bench: bad --threads list '%s'\n", threads_arg);
                return VX_EXIT_USAGE;
            }
            nt++;
        }
    } else {
        threads[nt++] = 1;
        if (cores > 1)
            threads[nt++] = cores;
    }
    vx_nn_precision precs[2];
    int np = 0;
    if (!strcmp(prec_arg, "all")) {
        precs[np++] = VX_NN_FP32;
        precs[np++] = VX_NN_BF16;
    } else {
        char buf[64];
        snprintf(buf, sizeof buf, "%s", prec_arg);
        for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
            if (np == 2 || vx_nn_precision_parse(tok, &precs[np])) {
                fprintf(stderr, "verolux bench: bad --precision '%s' (fp32, bf16, a list, or all)\n",
                        prec_arg);
                return VX_EXIT_USAGE;
            }
            np++;
        }
    }
    vx_nn_model *m;
    if (vx_nn_model_load(model, NULL, &m)) {
        fprintf(stderr, "verolux: %s\n", vx_last_error());
        return VX_EXIT_FAIL;
    }
    if (!json) {
        vx_nn_model_stats st;
        vx_nn_model_get_stats(m, &st);
        printf("model %s (%s, %d nodes, %d convolutions, %.2f GFLOPs per image)\n", model, st.format,
               st.nodes, st.convs, st.flops / 1e9);
        printf("%-5s %-5s %7s %6s %10s %9s %9s %8s %9s\n", "back", "prec", "threads", "runs", "median_ms",
               "p10_ms", "p90_ms", "fps", "GFLOP/s");
    }
    int rc = VX_EXIT_OK;
    for (int i = 0; i < nb && rc == VX_EXIT_OK; i++)
        for (int p = 0; p < np && rc == VX_EXIT_OK; p++)
            for (int k = 0; k < nt && rc == VX_EXIT_OK; k++) {
                /* The reference backend is single-threaded FP32: one row. */
                if (backends[i] == VX_NN_BACKEND_REF && (k > 0 || p > 0))
                    break;
                rc = bench_one(m, backends[i], backends[i] == VX_NN_BACKEND_REF ? VX_NN_FP32 : precs[p],
                               backends[i] == VX_NN_BACKEND_REF ? 1 : threads[k], runs, warmup, json, model);
            }
    vx_nn_model_destroy(m);
    return rc;
}

int vx_cmd_bench(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? VX_EXIT_USAGE : VX_EXIT_OK;
    }
    if (!strcmp(argv[1], "model"))
        return bench_model(argc - 1, argv + 1);
    fprintf(stderr, "verolux bench: unknown benchmark '%s' (expected: model)\n", argv[1]);
    return VX_EXIT_USAGE;
}
