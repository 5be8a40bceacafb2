/*
 * `verolux bench model`: inference latency of a model on each backend,
 * precision and thread count.  Timing is per run of the compiled network
 * (input already in place), after warm-up runs; the table gives median,
 * p10, p90 and the FPS the median allows, and each configuration's engine
 * line says which ISA and kernels ran.  INT8 needs a calibrated model: an
 * uncalibrated one is calibrated first on real frames (--calib, default the
 * cached sample images and evenly spaced frames of vtest.avi), so FP32,
 * BF16 and INT8 compare in one run.  Comparisons with other engines belong
 * to the scripts under bench/, which run both in one go and report ratios.
 */
#include <dirent.h>
#include <getopt.h>
#include <jansson.h>
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "detect/vx_detect.h"
#include "nn/vx_nn.h"
#include "video/vx_video.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: verolux bench model [--model PATH] [--backend cpu|ref|all] [--threads N[,N...]]\n"
            "                           [--precision fp32|bf16|int8|all] [--runs N] [--warmup N] [--json]\n"
            "                           [--calib DIR|VIDEO] [--calib-frames N] [--calib-method M]\n\n"
            "Measures the network alone (no pre/post-processing) on a fixed random input.\n"
            "  --model PATH     model file (default: $MODEL_PATH or the cached NanoDet-g)\n"
            "  --backend B      cpu (default), ref, or all\n"
            "  --threads LIST   comma-separated thread counts (default: 1 and all cores)\n"
            "  --precision P    fp32 (default), bf16, int8, a comma list, or all (cpu backend)\n"
            "  --runs N         timed runs per configuration (default 200, at least 1)\n"
            "  --warmup N       untimed runs first (default 20)\n"
            "  --json           one JSON object per configuration instead of a table\n"
            "INT8 on a model that is not calibrated yet calibrates it first:\n"
            "  --calib SRC      folder of images (and videos) or one video file\n"
            "                   (default: the cached samples: images + vtest.avi)\n"
            "  --calib-frames N frames taken evenly from each video (default 32)\n"
            "  --calib-method M minmax (default: the most accurate for detectors), entropy,\n"
            "                   or percentile (99.999)\n");
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

/* ---- calibration input for INT8 ------------------------------------------ */

typedef struct {
    vx_detector *det; /* preprocessing of the model's family */
    vx_nn_calibrator *cal;
    int added;
} calib_ctx;

static int calib_image(calib_ctx *c, const vx_image *img, const char *what)
{
    if (vx_detector_preprocess(c->det, img) != VX_OK) {
        fprintf(stderr, "verolux bench: %s: %s\n", what, vx_last_error());
        return -1;
    }
    const float *in[1] = {vx_nn_engine_input(vx_detector_engine(c->det), 0)};
    if (vx_nn_calibrator_add(c->cal, in) != VX_OK) {
        fprintf(stderr, "verolux bench: calibration: %s\n", vx_last_error());
        return -1;
    }
    c->added++;
    return 0;
}

/* `frames` frames evenly spaced over the whole video (its frame count from
 * the container, else estimated from duration and rate). */
static int calib_video(calib_ctx *c, const char *path, int frames)
{
    AVFormatContext *fc = NULL;
    if (avformat_open_input(&fc, path, NULL, NULL) < 0 || avformat_find_stream_info(fc, NULL) < 0) {
        fprintf(stderr, "verolux bench: calibration video %s cannot be read\n", path);
        if (fc)
            avformat_close_input(&fc);
        return -1;
    }
    int si = av_find_best_stream(fc, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
    const AVCodec *codec = si >= 0 ? avcodec_find_decoder(fc->streams[si]->codecpar->codec_id) : NULL;
    AVCodecContext *cc = codec ? avcodec_alloc_context3(codec) : NULL;
    if (!cc || avcodec_parameters_to_context(cc, fc->streams[si]->codecpar) < 0 ||
        avcodec_open2(cc, codec, NULL) < 0) {
        fprintf(stderr, "verolux bench: calibration video %s: no decodable video stream\n", path);
        avcodec_free_context(&cc);
        avformat_close_input(&fc);
        return -1;
    }
    const AVStream *st = fc->streams[si];
    int64_t total = st->nb_frames;
    if (total <= 0 && fc->duration > 0 && st->avg_frame_rate.num > 0)
        total = (int64_t)((double)fc->duration / AV_TIME_BASE * av_q2d(st->avg_frame_rate));
    if (total < frames)
        total = frames;
    AVPacket *pkt = av_packet_alloc();
    AVFrame *fr = av_frame_alloc();
    int64_t idx = 0;
    int taken = 0, eof = 0, rc = 0;
    while (taken < frames && !eof && !rc && pkt && fr) {
        if (av_read_frame(fc, pkt) < 0) {
            eof = 1;
            avcodec_send_packet(cc, NULL);
        } else if (pkt->stream_index != si) {
            av_packet_unref(pkt);
            continue;
        } else {
            avcodec_send_packet(cc, pkt);
            av_packet_unref(pkt);
        }
        while (taken < frames && !rc && avcodec_receive_frame(cc, fr) == 0) {
            /* Frame k of `frames` is the one at floor((k + 0.5) * total / frames). */
            if (idx == (int64_t)((taken + 0.5) * (double)total / frames)) {
                vx_image img;
                char what[64];
                snprintf(what, sizeof what, "frame %lld", (long long)idx);
                rc = vx_video_avframe_view(fr, &img) != VX_OK ? -1 : calib_image(c, &img, what);
                taken++;
            }
            idx++;
            av_frame_unref(fr);
        }
    }
    av_frame_free(&fr);
    av_packet_free(&pkt);
    avcodec_free_context(&cc);
    avformat_close_input(&fc);
    if (!rc && taken == 0) {
        fprintf(stderr, "verolux bench: calibration video %s: no frame decoded\n", path);
        rc = -1;
    }
    return rc;
}

static int has_ext(const char *name, const char *const *exts)
{
    const char *dot = strrchr(name, '.');
    for (int i = 0; dot && exts[i]; i++)
        if (!strcasecmp(dot + 1, exts[i]))
            return 1;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every image and video of a folder (sorted by name), or one video. */
static int calib_source(calib_ctx *c, const char *src, int frames)
{
    static const char *const img_ext[] = {"jpg", "jpeg", "png", "bmp", "webp", NULL};
    static const char *const vid_ext[] = {"avi", "mp4", "mkv", "mov", "webm", "ts", NULL};
    struct stat sb;
    if (stat(src, &sb) != 0) {
        fprintf(stderr, "verolux bench: calibration source %s does not exist\n", src);
        return -1;
    }
    if (!S_ISDIR(sb.st_mode))
        return calib_video(c, src, frames);
    DIR *dir = opendir(src);
    if (!dir) {
        fprintf(stderr, "verolux bench: calibration folder %s cannot be read\n", src);
        return -1;
    }
    char **names = NULL;
    int n = 0, cap = 0, rc = 0;
    for (struct dirent *de; (de = readdir(dir));) {
        if (de->d_name[0] == '.' || (!has_ext(de->d_name, img_ext) && !has_ext(de->d_name, vid_ext)))
            continue;
        if (n == cap) {
            char **nn = realloc(names, sizeof(char *) * (size_t)(cap = cap ? cap * 2 : 32));
            if (!nn) {
                rc = -1;
                break;
            }
            names = nn;
        }
        if (!(names[n] = strdup(de->d_name))) {
            rc = -1;
            break;
        }
        n++;
    }
    closedir(dir);
    if (n)
        qsort(names, (size_t)n, sizeof(char *), cmp_str);
    for (int i = 0; i < n && !rc; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", src, names[i]);
        if (has_ext(names[i], vid_ext)) {
            rc = calib_video(c, path, frames);
        } else {
            vx_image_buf *buf;
            if (vx_image_load(path, &buf) != VX_OK) {
                fprintf(stderr, "verolux bench: %s\n", vx_last_error());
                rc = -1;
            } else {
                rc = calib_image(c, vx_image_buf_view(buf), path);
                vx_image_buf_destroy(buf);
            }
        }
    }
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (!rc && c->added == 0) {
        fprintf(stderr, "verolux bench: calibration folder %s holds no images or videos\n", src);
        rc = -1;
    }
    return rc;
}

/* Calibrates m in place from src (NULL: the cached samples). */
static int calibrate(vx_nn_model *m, const char *model_path, const char *src, int frames,
                     vx_nn_calib_method method, int quiet)
{
    char def[4096];
    if (!src) {
        const char *cache = getenv("VEROLUX_CACHE"), *home = getenv("HOME");
        if (cache && *cache)
            snprintf(def, sizeof def, "%s/samples", cache);
        else
            snprintf(def, sizeof def, "%s/.cache/verolux/samples", home ? home : ".");
        src = def;
    }
    calib_ctx c = {0};
    vx_nn_engine_opts eo;
    vx_nn_engine_opts_default(&eo);
    eo.threads = 1;
    double t0 = vx_now_s();
    if (vx_detector_create(model_path, &eo, NULL, &c.det) != VX_OK) {
        fprintf(stderr, "verolux bench: INT8 calibration needs a detector model: %s\n", vx_last_error());
        return -1;
    }
    int rc = 0;
    if (vx_nn_calibrator_create(m, method, 99.999, &c.cal) != VX_OK) {
        fprintf(stderr, "verolux bench: %s\n", vx_last_error());
        rc = -1;
    }
    if (!rc)
        rc = calib_source(&c, src, frames);
    if (!rc && vx_nn_calibrator_finish(c.cal, m) != VX_OK) {
        fprintf(stderr, "verolux bench: calibration: %s\n", vx_last_error());
        rc = -1;
    }
    if (!rc && !quiet) {
        int nl = vx_nn_model_layer_count(m), n8 = 0;
        for (int i = 0; i < nl; i++) {
            vx_nn_layer_info li;
            vx_nn_model_layer_info(m, i, &li);
            n8 += li.precision == VX_NN_INT8;
        }
        printf("calibrated on %d inputs from %s (%s) in %.1f s: %d of %d convolutions INT8\n", c.added, src,
               method == VX_CALIB_ENTROPY      ? "entropy"
               : method == VX_CALIB_PERCENTILE ? "percentile"
                                               : "minmax",
               vx_now_s() - t0, n8, nl);
    }
    vx_nn_calibrator_destroy(c.cal);
    vx_detector_destroy(c.det);
    return rc;
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
        printf("      engine: %s\n", vx_nn_engine_describe(e));
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
                                         {"calib", required_argument, 0, 'C'},
                                         {"calib-frames", required_argument, 0, 'F'},
                                         {"calib-method", required_argument, 0, 'M'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    char model[4096] = "";
    const char *backend = "cpu", *threads_arg = NULL, *prec_arg = "fp32", *calib_src = NULL;
    int runs = 200, warmup = 20, json = 0, c, calib_frames = 32;
    /* minmax: the most accurate for detectors (see vx_nn.h). */
    vx_nn_calib_method calib_method = VX_CALIB_MINMAX;
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
        case 'C': calib_src = optarg; break;
        case 'F':
            if (vx_cli_parse_int(optarg, 1, 100000, &calib_frames)) {
                fprintf(stderr, "verolux bench: --calib-frames needs a number >= 1\n");
                return VX_EXIT_USAGE;
            }
            break;
        case 'M':
            if (!strcmp(optarg, "entropy"))
                calib_method = VX_CALIB_ENTROPY;
            else if (!strcmp(optarg, "percentile"))
                calib_method = VX_CALIB_PERCENTILE;
            else if (!strcmp(optarg, "minmax"))
                calib_method = VX_CALIB_MINMAX;
            else {
                fprintf(stderr, "verolux bench: --calib-method is entropy, percentile or minmax\n");
                return VX_EXIT_USAGE;
            }
            break;
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
    vx_nn_precision precs[3];
    int np = 0;
    if (!strcmp(prec_arg, "all")) {
        precs[np++] = VX_NN_FP32;
        precs[np++] = VX_NN_BF16;
        precs[np++] = VX_NN_INT8;
    } else {
        char buf[64];
        snprintf(buf, sizeof buf, "%s", prec_arg);
        for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
            if (np == 3 || vx_nn_precision_parse(tok, &precs[np])) {
                fprintf(stderr, "verolux bench: bad --precision '%s' (fp32, bf16, int8, a list, or all)\n",
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
    int want_int8 = 0;
    for (int p = 0; p < np; p++)
        want_int8 |= precs[p] == VX_NN_INT8;
    if (want_int8 && !vx_nn_model_is_calibrated(m) &&
        calibrate(m, model, calib_src, calib_frames, calib_method, json) != 0) {
        vx_nn_model_destroy(m);
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
