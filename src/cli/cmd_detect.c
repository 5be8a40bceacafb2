/*
 * verolux detect: run the detector on image files and print the boxes, as
 * aligned text for people or as one JSON object per image per line for
 * scripts.  One bad image is reported and skipped; the exit status says
 * whether any failed.
 */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"
#include "detect/vx_detect.h"
#include "detect/vx_select.h"
#include "video/vx_image.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: verolux detect IMAGE... [options]\n\n"
               "Detects objects in image files (JPEG, PNG, BMP, PPM, ...).\n\n"
               "options:\n"
               "  --json          one JSON object per image per line\n"
               "  --model PATH    model file (default: $MODEL_PATH, else\n"
               "                  $VEROLUX_CACHE/models/nanodet/nanodet.json,\n"
               "                  VEROLUX_CACHE defaulting to ~/.cache/verolux):\n"
               "                  NanoDet (TFJS or ONNX), or an Ultralytics\n"
               "                  YOLOv5/YOLOv8/YOLO11 ONNX export (recognised\n"
               "                  from its outputs; class names from its metadata)\n"
               "  --backend NAME  cpu (default) or ref\n"
               "  --threads N     inference threads (default 0: all cores)\n"
               "  --precision P   auto, fp32, fp16 (= bf16) or int8 (default: $PRECISION,\n"
               "                  else auto: the INT8 engine beside the model, else its\n"
               "                  FP16 engine, else BF16 where the CPU has it, else FP32)\n"
               "  --conf F        confidence threshold, 0..1 (default 0.35)\n"
               "  --iou F         NMS IoU threshold, 0..1 (default 0.5)\n"
               "  --max-det N     at most N detections per image (default 30)\n"
               "  --help          this text\n");
}

static double round_to(double v, double unit)
{
    return round(v / unit) * unit;
}

static int print_json(const char *path, const vx_image *img, const vx_detector *det, const vx_detection *d,
                      int n)
{
    json_t *dets = json_array();
    for (int i = 0; i < n; i++) {
        json_t *box = json_pack("[ffff]", round_to(d[i].x1, 0.1), round_to(d[i].y1, 0.1),
                                round_to(d[i].x2, 0.1), round_to(d[i].y2, 0.1));
        json_array_append_new(dets, json_pack("{s:s, s:i, s:f, s:o}", "class",
                                              vx_detector_class_name(det, d[i].cls), "class_id", d[i].cls,
                                              "confidence", round_to(d[i].conf, 0.0001), "box", box));
    }
    json_t *obj = json_pack("{s:s, s:i, s:i, s:o}", "image", path, "width", img->width, "height", img->height,
                            "detections", dets);
    /* Seven significant digits: every box value (< 16385, one decimal) and
     * the confidence print exactly as rounded, not as 131.19999999999999. */
    char *line = obj ? json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(7)) : NULL;
    json_decref(obj);
    if (!line)
        return -1; /* json_pack fails on a path that is not UTF-8, too */
    puts(line);
    free(line);
    return 0;
}

static void print_text(const char *path, const vx_image *img, const vx_detector *det, const vx_detection *d,
                       int n)
{
    printf("%s: %dx%d, %d detection%s\n", path, img->width, img->height, n, n == 1 ? "" : "s");
    for (int i = 0; i < n; i++)
        printf("  %-12s %.2f  [%.0f, %.0f, %.0f, %.0f]\n", vx_detector_class_name(det, d[i].cls),
               (double)d[i].conf, (double)d[i].x1, (double)d[i].y1, (double)d[i].x2, (double)d[i].y2);
}

static int bad_usage(const char *fmt, ...) VX_PRINTF(1, 2);
static int bad_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "verolux detect: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nRun 'verolux detect --help' for the options.\n");
    va_end(ap);
    return VX_EXIT_USAGE;
}

/* getopt leaves optind past the bad word, except inside a group of short
 * options ("-hx"), where only optopt names it. */
static const char *bad_option(char **argv, char *buf, size_t len)
{
    if (optopt > 0 && optopt < 256) {
        snprintf(buf, len, "-%c", optopt);
        return buf;
    }
    return argv[optind - 1];
}

int vx_cmd_detect(int argc, char **argv)
{
    enum {
        OPT_JSON = 256,
        OPT_MODEL,
        OPT_BACKEND,
        OPT_THREADS,
        OPT_CONF,
        OPT_IOU,
        OPT_MAX_DET,
        OPT_PRECISION
    };
    static const struct option long_opts[] = {
        {"json", no_argument, NULL, OPT_JSON},
        {"model", required_argument, NULL, OPT_MODEL},
        {"backend", required_argument, NULL, OPT_BACKEND},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"precision", required_argument, NULL, OPT_PRECISION},
        {"conf", required_argument, NULL, OPT_CONF},
        {"iou", required_argument, NULL, OPT_IOU},
        {"max-det", required_argument, NULL, OPT_MAX_DET},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int json = 0;
    const char *model = NULL;
    const char *precision = getenv("PRECISION");
    vx_detect_opts opts;
    vx_detect_opts_default(&opts);
    vx_nn_engine_opts eng;
    vx_nn_engine_opts_default(&eng);
    eng.backend = VX_NN_BACKEND_CPU;
    eng.threads = 0;

    optind = 0; /* GNU: full reset, argv[0] is the subcommand */
    opterr = 0;
    int c;
    char shortopt[4];
    while ((c = getopt_long(argc, argv, ":h", long_opts, NULL)) != -1) {
        switch (c) {
        case OPT_JSON: json = 1; break;
        case OPT_MODEL: model = optarg; break;
        case OPT_BACKEND:
            if (vx_nn_backend_parse(optarg, &eng.backend) != VX_OK)
                return bad_usage("unknown backend '%s' (expected cpu or ref)", optarg);
            break;
        case OPT_PRECISION:
            if (strcasecmp(optarg, "auto") && strcasecmp(optarg, "fp32") && strcasecmp(optarg, "fp16") &&
                strcasecmp(optarg, "bf16") && strcasecmp(optarg, "int8"))
                return bad_usage("unknown precision '%s' (expected auto, fp32, fp16, bf16 or int8)", optarg);
            precision = optarg;
            break;
        case OPT_THREADS:
            if (vx_cli_parse_int(optarg, 0, 4096, &eng.threads))
                return bad_usage("--threads needs a whole number from 0 to 4096, not '%s'", optarg);
            break;
        case OPT_CONF:
            if (vx_cli_parse_float(optarg, &opts.conf_threshold))
                return bad_usage("--conf needs a number, not '%s'", optarg);
            break;
        case OPT_IOU:
            if (vx_cli_parse_float(optarg, &opts.nms_iou))
                return bad_usage("--iou needs a number, not '%s'", optarg);
            break;
        case OPT_MAX_DET:
            if (vx_cli_parse_int(optarg, 1, 10000, &opts.max_det))
                return bad_usage("--max-det needs a whole number from 1 to 10000, not '%s'", optarg);
            break;
        case 'h': usage(stdout); return VX_EXIT_OK;
        case ':': return bad_usage("option '%s' needs a value", bad_option(argv, shortopt, sizeof shortopt));
        default: return bad_usage("unknown option '%s'", bad_option(argv, shortopt, sizeof shortopt));
        }
    }
    if (vx_detect_opts_validate(&opts) != VX_OK)
        return bad_usage("%s", vx_last_error());
    if (optind >= argc)
        return bad_usage("%s", "no images given");

    char default_model[4096];
    if (!model) {
        if (!vx_cli_default_model(default_model, sizeof default_model)) {
            fprintf(stderr, "verolux: no model: use --model PATH, or set MODEL_PATH or VEROLUX_CACHE\n");
            return VX_EXIT_FAIL;
        }
        model = default_model;
    }

    vx_detector *det;
    vx_model_request req = {.model_path = model,
                            .precision = precision,
                            .backend = eng.backend,
                            .threads = eng.threads,
                            .quiet = 1};
    vx_model_choice choice;
    if (vx_detector_open(&req, &opts, &det, &choice) != VX_OK) {
        fprintf(stderr, "verolux: %s\n", vx_last_error());
        return VX_EXIT_FAIL;
    }
    vx_detection *dets = malloc((size_t)opts.max_det * sizeof *dets);
    if (!dets) {
        fprintf(stderr, "verolux: out of memory\n");
        vx_detector_destroy(det);
        return VX_EXIT_FAIL;
    }

    int failed = 0;
    for (int i = optind; i < argc; i++) {
        const char *path = argv[i];
        vx_image_buf *buf;
        if (vx_image_load(path, &buf) != VX_OK) {
            /* The loader's messages start with the path. */
            fprintf(stderr, "verolux: %s\n", vx_last_error());
            failed = 1;
            continue;
        }
        const vx_image *img = vx_image_buf_view(buf);
        int n = 0;
        if (vx_detector_run(det, img, dets, opts.max_det, &n) != VX_OK) {
            fprintf(stderr, "verolux: %s: %s\n", path, vx_last_error());
            failed = 1;
        } else if (json) {
            if (print_json(path, img, det, dets, n)) {
                fprintf(stderr, "verolux: %s: cannot encode the result as JSON (is the path UTF-8?)\n", path);
                failed = 1;
            }
        } else {
            print_text(path, img, det, dets, n);
        }
        fflush(stdout);
        vx_image_buf_destroy(buf);
    }
    free(dets);
    vx_detector_destroy(det);
    return failed ? VX_EXIT_FAIL : VX_EXIT_OK;
}
