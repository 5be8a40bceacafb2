/*
 * verolux export: compiles a model into engine files beside it (or in
 * --output-dir), named the way users know them: NAME.engine (INT8),
 * NAME_fp16.engine (reduced precision; BF16 on this cpu backend) and
 * NAME_fp32.engine.
 *
 * INT8 needs activation ranges: calibration frames go through the
 * detector's own preprocessing (letterbox, normalisation, layout) into the
 * calibrator, so the ranges describe exactly what the engine will see.  By
 * default the frames are sampled evenly from the sample video plus the
 * sample images; --calib takes a folder of images or a video instead.
 *
 * Every engine is checked before it is installed: it is written to a
 * temporary file, loaded back through the same loader a server uses, and
 * its detections are compared with FP32's on the sample images and frames
 * spread evenly over the sample video (F1 of same-class boxes at IoU >= 0.5,
 * confidence >= 0.35, and the mean cosine similarity of the raw outputs).
 * An engine below the accuracy bar is not installed unless --force; the
 * temporary file is removed on every error, so a failed export leaves
 * nothing behind.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "detect/vx_detect.h"
#include "detect/vx_select.h"
#include "nn/vx_nn.h"
#include "video/vx_image.h"
#include "video/vx_video.h"

/* The product's accuracy bar (issue 6): against FP32 detections. */
#define F1_INT8 0.96
#define F1_BF16 0.98
#define COS_MIN 0.99
#define MAX_DETS 100

static void usage(FILE *f)
{
    fprintf(
        f, "usage: verolux export [--model MODEL] [--format int8|fp16|fp32|all] [options]\n\n"
           "Compiles MODEL (TFJS model.json or ONNX) into engine files: NAME.engine (INT8),\n"
           "NAME_fp16.engine (reduced precision: BF16 on CPUs) and NAME_fp32.engine, next to\n"
           "the model unless --output-dir.  `verolux serve` loads the best of them at start.\n\n"
           "options:\n"
           "  --model PATH          model (default: $MODEL_PATH or the cached NanoDet-g)\n"
           "  --format F            int8, fp16, fp32, a comma list, or all (default all)\n"
           "  --calib DIR|VIDEO     calibration images (a folder) or a video (default:\n"
           "                        frames of $VEROLUX_CACHE/samples/vtest.avi + the sample images)\n"
           "  --calib-frames N      calibration frames, 1..10000 (default 128)\n"
           "  --calib-method M      minmax (default: the most accurate on detectors in the\n"
           "                        INT8 tests), entropy (TensorRT's KL choice) or percentile\n"
           "  --percentile P        for --calib-method percentile (default 99.999)\n"
           "  --eval-frames N       sample-video frames in the accuracy check (default 200; 0: images only)\n"
           "  --output-dir DIR      where the engine files go (default: beside the model)\n"
           "  --threads N           inference threads (default 0: all cores)\n"
           "  --force               install engines even when below the accuracy bar\n"
           "  --verbose             the precision of every layer\n"
           "  --help                this text\n");
}

VX_PRINTF(1, 2) static int bad_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "verolux export: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see verolux export --help)\n");
    va_end(ap);
    return VX_EXIT_USAGE;
}

/* ---- progress ---------------------------------------------------------- */

static int tty = -1;

static void progress(const char *what, int done, int total)
{
    if (tty < 0)
        tty = isatty(2);
    if (!tty || total <= 0)
        return;
    int w = 30, fill = (int)((double)done / total * w);
    fprintf(stderr, "\r%-12s [", what);
    for (int i = 0; i < w; i++)
        fputc(i < fill ? '#' : ' ', stderr);
    fprintf(stderr, "] %d/%d", done, total);
    if (done >= total)
        fprintf(stderr, "\n");
    fflush(stderr);
}

/* ---- temporary files: removed on errors and on Ctrl-C too ------------- */

static char temp_paths[3][4300];
static volatile sig_atomic_t n_temp;

static void on_signal(int sig)
{
    for (int i = 0; i < n_temp; i++)
        if (temp_paths[i][0])
            unlink(temp_paths[i]); /* async-signal-safe */
    signal(sig, SIG_DFL);
    raise(sig);
}

static void catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

/* ---- frames ------------------------------------------------------------ */

typedef vx_err (*frame_fn)(void *user, const vx_image *img);

static int is_image_name(const char *n)
{
    static const char *const ext[] = {".jpg", ".jpeg", ".png", ".bmp", ".ppm",
                                      ".pgm", ".webp", ".tif", ".tiff"};
    size_t l = strlen(n);
    for (size_t i = 0; i < sizeof ext / sizeof *ext; i++) {
        size_t e = strlen(ext[i]);
        if (l > e && !strcasecmp(n + l - e, ext[i]))
            return 1;
    }
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Image files of a folder, sorted; fails on none. */
static vx_err list_images(const char *dir, char ***out, int *count)
{
    *out = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d)
        return vx_fail(VX_ERR_IO, "%s: %s", dir, strerror(errno));
    char **v = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    vx_err err = VX_OK;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !is_image_name(e->d_name))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            char **q = realloc(v, sizeof(char *) * (size_t)cap);
            if (!q) {
                err = vx_fail(VX_ERR_NOMEM, "out of memory");
                break;
            }
            v = q;
        }
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        if (!(v[n] = malloc(len))) {
            err = vx_fail(VX_ERR_NOMEM, "out of memory");
            break;
        }
        snprintf(v[n++], len, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (!err && !n)
        err = vx_fail(VX_ERR_NOT_FOUND, "%s: no images in the folder (.jpg, .jpeg, .png, .bmp, .ppm, ...)",
                      dir);
    if (err) {
        for (int i = 0; i < n; i++)
            free(v[i]);
        free(v);
        return err;
    }
    qsort(v, (size_t)n, sizeof *v, cmp_str);
    *out = v;
    *count = n;
    return VX_OK;
}

static void free_list(char **v, int n)
{
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static vx_err for_images(char **paths, int n, frame_fn fn, void *user)
{
    for (int i = 0; i < n; i++) {
        vx_image_buf *b;
        vx_err e = vx_image_load(paths[i], &b);
        if (e)
            return e;
        e = fn(user, vx_image_buf_view(b));
        vx_image_buf_destroy(b);
        if (e)
            return e;
    }
    return VX_OK;
}

static vx_err open_video(const char *path, vx_video_source **out)
{
    vx_video_source_opts o;
    vx_video_source_opts_default(&o);
    o.source = path;
    o.realtime = 0;
    o.lossless = 1; /* every frame, in order */
    o.loop = 0;
    o.max_attempts = 1;
    o.open_timeout_s = 10;
    return vx_video_source_create(&o, out);
}

/* Calls fn on frames `pick(i)` for i = 0..want-1 of a video with `total`
 * frames (total 0: count them first, returned in *total). */
static vx_err for_video(const char *path, int *total, int want, int offset_half, frame_fn fn, void *user,
                        const char *what)
{
    vx_video_source *src;
    vx_err e = open_video(path, &src);
    if (e)
        return vx_fail_prefix(e, "%s: ", path);
    int counting = *total <= 0, n = 0, next = 0;
    uint64_t seq = 0;
    for (;;) {
        vx_video_frame *f = NULL;
        e = vx_video_source_wait(src, seq, 30.0, &f);
        if (e == VX_ERR_UNAVAILABLE) {
            e = VX_OK;
            if (n == 0) {
                vx_video_stats st;
                vx_video_source_stats(src, &st);
                e = vx_fail(VX_ERR_IO, "%s: cannot read the video: %s", path,
                            st.last_error[0] ? st.last_error : "no frames");
            }
            break;
        }
        if (e)
            break;
        if (!f) {
            e = vx_fail(VX_ERR_IO, "%s: no frame for 30 s", path);
            break;
        }
        seq = f->seq;
        if (!counting) {
            /* Frame index of pick `next`: evenly spaced, the calibration set
             * shifted by half a step so it does not reuse the check's frames. */
            double step = (double)*total / want;
            int at = (int)(step * next + (offset_half ? step / 2 : 0));
            if (n == at) {
                e = fn(user, &f->image);
                next++;
                progress(what, next, want);
            }
        }
        vx_video_frame_release(f);
        n++;
        if (e || (!counting && next >= want))
            break;
    }
    vx_video_source_destroy(src);
    if (!e && counting)
        *total = n;
    return e;
}

/* ---- calibration ------------------------------------------------------- */

typedef struct {
    vx_detector *det; /* FP32: its preprocessing fills its engine input */
    vx_nn_calibrator *cal;
    int done, total;
} calib_ctx;

static vx_err calib_frame(void *user, const vx_image *img)
{
    calib_ctx *c = user;
    vx_err e = vx_detector_preprocess(c->det, img);
    if (e)
        return e;
    const float *in[1] = {vx_nn_engine_input(vx_detector_engine(c->det), 0)};
    if ((e = vx_nn_calibrator_add(c->cal, in)))
        return e;
    c->done++;
    return VX_OK;
}

/* ---- accuracy check ---------------------------------------------------- */

typedef struct {
    const char *label;
    vx_nn_precision precision;
    char final[4200], tmp[4300];
    size_t bytes;
    vx_detector *det;
    double cos_sum;
    long cos_n;
    long matched, n_ref, n_test;
    double f1, cosine;
    int ok, installed;
} target;

typedef struct {
    vx_detector *ref;
    target *t;
    int nt;
    int frames;
    vx_detection *a, *b;
} eval_ctx;

/* One-to-one matches, best IoU first: same class, IoU >= 0.5. */
static long match(const vx_detection *a, int na, const vx_detection *b, int nb)
{
    char used_a[MAX_DETS] = {0}, used_b[MAX_DETS] = {0};
    long m = 0;
    for (;;) {
        float best = 0.5f;
        int bi = -1, bj = -1;
        for (int i = 0; i < na; i++)
            for (int j = 0; !used_a[i] && j < nb; j++) {
                if (used_b[j] || a[i].cls != b[j].cls)
                    continue;
                float iou = vx_box_iou(&a[i], &b[j]);
                if (iou >= best) {
                    best = iou;
                    bi = i;
                    bj = j;
                }
            }
        if (bi < 0)
            return m;
        used_a[bi] = used_b[bj] = 1;
        m++;
    }
}

static vx_err eval_frame(void *user, const vx_image *img)
{
    eval_ctx *c = user;
    int na;
    vx_err e = vx_detector_run(c->ref, img, c->a, MAX_DETS, &na);
    if (e)
        return e;
    const vx_nn_model *m = vx_detector_model(c->ref);
    for (int k = 0; k < c->nt; k++) {
        target *t = &c->t[k];
        if (!t->det)
            continue;
        int nb;
        if ((e = vx_detector_run(t->det, img, c->b, MAX_DETS, &nb)))
            return e;
        t->matched += match(c->a, na, c->b, nb);
        t->n_ref += na;
        t->n_test += nb;
        /* One cosine per frame over all raw outputs together (as
         * tests/test_int8 and the ORT comparison count it). */
        double dot = 0, nx = 0, ny = 0;
        for (int o = 0; o < vx_nn_model_output_count(m); o++) {
            vx_nn_tensor_info ti;
            vx_nn_model_output_info(m, o, &ti);
            size_t n = 1;
            for (int d = 0; d < ti.rank; d++)
                n *= (size_t)ti.dims[d];
            const float *x = vx_nn_engine_output(vx_detector_engine(c->ref), o);
            const float *y = vx_nn_engine_output(vx_detector_engine(t->det), o);
            for (size_t i = 0; i < n; i++) {
                dot += (double)x[i] * y[i];
                nx += (double)x[i] * x[i];
                ny += (double)y[i] * y[i];
            }
        }
        t->cos_sum += nx > 0 && ny > 0 ? dot / sqrt(nx * ny) : (nx == ny ? 1.0 : 0.0);
        t->cos_n++;
    }
    c->frames++;
    return VX_OK;
}

/* ---- the command ------------------------------------------------------- */

static const char *human_size(size_t b, char *buf, size_t len)
{
    if (b >= 1 << 20)
        snprintf(buf, len, "%.1f MiB", (double)b / (1 << 20));
    else
        snprintf(buf, len, "%.1f KiB", (double)b / 1024);
    return buf;
}

static const char *precision_label(vx_nn_precision p)
{
    if (p == VX_NN_BF16)
        return vx_nn_precision_native(VX_NN_BF16) ? "BF16 (CPU)" : "BF16 (CPU, emulated)";
    return vx_nn_precision_name(p);
}

int vx_cmd_export(int argc, char **argv)
{
    enum {
        OPT_MODEL = 256,
        OPT_FORMAT,
        OPT_CALIB,
        OPT_CALIB_FRAMES,
        OPT_CALIB_METHOD,
        OPT_PERCENTILE,
        OPT_EVAL_FRAMES,
        OPT_OUTPUT_DIR,
        OPT_THREADS,
        OPT_FORCE,
        OPT_VERBOSE,
    };
    static const struct option long_opts[] = {
        {"model", required_argument, NULL, OPT_MODEL},
        {"format", required_argument, NULL, OPT_FORMAT},
        {"calib", required_argument, NULL, OPT_CALIB},
        {"calib-frames", required_argument, NULL, OPT_CALIB_FRAMES},
        {"calib-method", required_argument, NULL, OPT_CALIB_METHOD},
        {"percentile", required_argument, NULL, OPT_PERCENTILE},
        {"eval-frames", required_argument, NULL, OPT_EVAL_FRAMES},
        {"output-dir", required_argument, NULL, OPT_OUTPUT_DIR},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"force", no_argument, NULL, OPT_FORCE},
        {"verbose", no_argument, NULL, OPT_VERBOSE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *model = NULL, *calib = NULL, *out_dir = NULL;
    int want[3] = {1, 1, 1}; /* indexed by vx_nn_precision */
    int calib_frames = 128, eval_frames = 200, threads = 0, force = 0, verbose = 0;
    vx_nn_calib_method method = VX_CALIB_MINMAX;
    float percentile = 99.999f;

    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", long_opts, NULL)) != -1) {
        switch (c) {
        case OPT_MODEL: model = optarg; break;
        case OPT_FORMAT: {
            memset(want, 0, sizeof want);
            char buf[64];
            snprintf(buf, sizeof buf, "%s", optarg);
            for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                if (!strcasecmp(tok, "all"))
                    want[0] = want[1] = want[2] = 1;
                else if (!strcasecmp(tok, "int8"))
                    want[VX_NN_INT8] = 1;
                else if (!strcasecmp(tok, "fp16") || !strcasecmp(tok, "bf16"))
                    want[VX_NN_BF16] = 1;
                else if (!strcasecmp(tok, "fp32"))
                    want[VX_NN_FP32] = 1;
                else
                    return bad_usage("--format: unknown format '%s' (int8, fp16, fp32 or all)", tok);
            }
            if (!want[0] && !want[1] && !want[2])
                return bad_usage("--format: no format given");
            break;
        }
        case OPT_CALIB: calib = optarg; break;
        case OPT_CALIB_FRAMES:
            if (vx_cli_parse_int(optarg, 1, 10000, &calib_frames))
                return bad_usage("--calib-frames needs a whole number from 1 to 10000, not '%s'", optarg);
            break;
        case OPT_CALIB_METHOD:
            if (!strcasecmp(optarg, "entropy"))
                method = VX_CALIB_ENTROPY;
            else if (!strcasecmp(optarg, "percentile"))
                method = VX_CALIB_PERCENTILE;
            else if (!strcasecmp(optarg, "minmax"))
                method = VX_CALIB_MINMAX;
            else
                return bad_usage("--calib-method: '%s' (expected entropy, percentile or minmax)", optarg);
            break;
        case OPT_PERCENTILE:
            if (vx_cli_parse_float(optarg, &percentile) || !(percentile > 50.0f && percentile <= 100.0f))
                return bad_usage("--percentile needs a number in (50, 100], not '%s'", optarg);
            break;
        case OPT_EVAL_FRAMES:
            if (vx_cli_parse_int(optarg, 0, 100000, &eval_frames))
                return bad_usage("--eval-frames needs a whole number from 0 to 100000, not '%s'", optarg);
            break;
        case OPT_OUTPUT_DIR: out_dir = optarg; break;
        case OPT_THREADS:
            if (vx_cli_parse_int(optarg, 0, 4096, &threads))
                return bad_usage("--threads needs a whole number from 0 to 4096, not '%s'", optarg);
            break;
        case OPT_FORCE: force = 1; break;
        case OPT_VERBOSE: verbose = 1; break;
        case 'h': usage(stdout); return VX_EXIT_OK;
        case ':': return bad_usage("option '%s' needs a value", argv[optind - 1]);
        default: return bad_usage("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return bad_usage("unexpected argument '%s'", argv[optind]);

    char default_model[4096];
    if (!model) {
        if (!vx_cli_default_model(default_model, sizeof default_model)) {
            fprintf(stderr,
                    "verolux export: no model: use --model PATH, or set MODEL_PATH or VEROLUX_CACHE\n");
            return VX_EXIT_FAIL;
        }
        model = default_model;
    }
    if (vx_nn_is_engine_file(model) == 1) {
        fprintf(stderr, "verolux export: %s is already an engine file; export from the source model\n",
                model);
        return VX_EXIT_FAIL;
    }
    if (out_dir) {
        struct stat st;
        if (stat(out_dir, &st) != 0) {
            fprintf(stderr, "verolux export: output folder %s: %s\n", out_dir, strerror(errno));
            return VX_EXIT_FAIL;
        }
        if (!S_ISDIR(st.st_mode)) {
            fprintf(stderr, "verolux export: output folder %s: not a folder\n", out_dir);
            return VX_EXIT_FAIL;
        }
    }
    const char *cache = getenv("VEROLUX_CACHE");
    char cache_buf[4096], samples[4200], vtest[4300];
    if (!cache || !*cache) {
        const char *home = getenv("HOME");
        snprintf(cache_buf, sizeof cache_buf, "%s/.cache/verolux", home ? home : ".");
        cache = cache_buf;
    }
    snprintf(samples, sizeof samples, "%s/samples", cache);
    snprintf(vtest, sizeof vtest, "%s/vtest.avi", samples);

    catch_signals();
    int rc = VX_EXIT_FAIL;
    vx_nn_model *m = NULL;
    vx_detector *ref = NULL;
    vx_nn_calibrator *cal = NULL;
    char **images = NULL, **calib_images = NULL;
    int n_images = 0, n_calib_images = 0, video_total = 0;
    target t[3];
    memset(t, 0, sizeof t);
    int nt = 0;
    vx_detection *da = malloc(sizeof *da * MAX_DETS), *db = malloc(sizeof *db * MAX_DETS);
    vx_err e;
    if (!da || !db) {
        fprintf(stderr, "verolux export: out of memory\n");
        goto out;
    }

    /* The model, and an FP32 detector on it: the preprocessing for
     * calibration and the reference for the accuracy check. */
    if ((e = vx_nn_model_load(model, NULL, &m))) {
        fprintf(stderr, "verolux export: %s\n", vx_last_error());
        goto out;
    }
    vx_nn_engine_opts eo;
    vx_nn_engine_opts_default(&eo);
    eo.threads = threads;
    if ((e = vx_detector_create(model, &eo, NULL, &ref))) {
        fprintf(stderr, "verolux export: %s\n", vx_last_error());
        goto out;
    }
    const vx_family_info *fi = vx_detector_info(ref);
    vx_nn_model_stats ms;
    vx_nn_model_get_stats(m, &ms);

    /* The sample set: for the accuracy check of INT8 and BF16, and for
     * calibration by default. */
    int reduced = want[VX_NN_INT8] || want[VX_NN_BF16];
    if (reduced && (e = list_images(samples, &images, &n_images))) {
        fprintf(stderr, "verolux export: sample images: %s (scripts/fetch-samples fetches them)\n",
                vx_last_error());
        goto out;
    }
    int need_video = (reduced && eval_frames > 0) || (want[VX_NN_INT8] && !calib);
    if (need_video && (e = for_video(vtest, &video_total, 0, 0, NULL, NULL, NULL))) {
        fprintf(stderr, "verolux export: sample video: %s (scripts/fetch-samples fetches it)\n",
                vx_last_error());
        goto out;
    }

    /* Calibration, before anything is written. */
    int calib_done = 0, calib_from_video = 0, calib_from_images = 0;
    double calib_s = 0;
    if (want[VX_NN_INT8]) {
        double t0 = vx_now_s();
        if ((e = vx_nn_calibrator_create(m, method, percentile, &cal))) {
            fprintf(stderr, "verolux export: %s\n", vx_last_error());
            goto out;
        }
        calib_ctx cc = {ref, cal, 0, calib_frames};
        struct stat st;
        if (calib && stat(calib, &st) != 0) {
            fprintf(stderr, "verolux export: --calib %s: %s\n", calib, strerror(errno));
            goto out;
        }
        if (calib && S_ISDIR(st.st_mode)) {
            if ((e = list_images(calib, &calib_images, &n_calib_images))) {
                fprintf(stderr, "verolux export: --calib: %s\n", vx_last_error());
                goto out;
            }
            /* Evenly over the sorted names when there are more than asked. */
            int k = n_calib_images < calib_frames ? n_calib_images : calib_frames;
            for (int i = 0; i < k && !e; i++) {
                char *one[1] = {calib_images[(int)((double)i * n_calib_images / k)]};
                e = for_images(one, 1, calib_frame, &cc);
                progress("calibrating", i + 1, k);
            }
            calib_from_images = cc.done;
        } else {
            const char *video = calib ? calib : vtest;
            int total = calib ? 0 : video_total;
            int from_images = calib ? 0 : (n_images < calib_frames / 2 ? n_images : calib_frames / 2);
            int from_video = calib_frames - from_images;
            if (calib && (e = for_video(video, &total, 0, 0, NULL, NULL, NULL))) {
                fprintf(stderr, "verolux export: --calib: %s\n", vx_last_error());
                goto out;
            }
            if (from_video > total)
                from_video = total;
            e = for_video(video, &total, from_video, 1, calib_frame, &cc, "calibrating");
            calib_from_video = cc.done;
            if (!e && from_images)
                e = for_images(images, from_images, calib_frame, &cc);
            calib_from_images = cc.done - calib_from_video;
        }
        if (!e)
            e = vx_nn_calibrator_finish(cal, m);
        if (e) {
            fprintf(stderr, "verolux export: calibration: %s\n", vx_last_error());
            goto out;
        }
        calib_done = cc.done;
        calib_s = vx_now_s() - t0;
    }

    /* Engines into temporary files in the output folder, each loaded back
     * by the loader a server uses. */
    static const vx_nn_precision order[3] = {VX_NN_INT8, VX_NN_BF16, VX_NN_FP32};
    static const char *const method_names[] = {"entropy", "percentile", "minmax"};
    for (int k = 0; k < 3; k++) {
        vx_nn_precision p = order[k];
        if (!want[p])
            continue;
        target *x = &t[nt++];
        x->precision = p;
        x->label = precision_label(p);
        if (!vx_engine_file_name(model, out_dir, p, x->final, sizeof x->final)) {
            fprintf(stderr, "verolux export: output path too long\n");
            goto out;
        }
        /* Hidden, beside the final name: the rename that installs it stays
         * within one file system. */
        char fin[sizeof x->final];
        memcpy(fin, x->final, sizeof fin);
        const char *slash = strrchr(fin, '/');
        int dl = slash ? (int)(slash - fin) : 1;
        snprintf(x->tmp, sizeof x->tmp, "%.*s/.%s.check-%d", dl, slash ? fin : ".", slash ? slash + 1 : fin,
                 (int)getpid());
        vx_nn_engine_file_opts fo = {
            .backend = VX_NN_BACKEND_CPU,
            .precision = p,
            .decoder = vx_model_family_name(fi->family),
            .input_w = fi->input_w,
            .input_h = fi->input_h,
            .source_path = model,
            .calib_method = p == VX_NN_INT8 ? method_names[method] : NULL,
            .calib_frames = p == VX_NN_INT8 ? calib_done : 0,
        };
        uint8_t *buf = NULL;
        size_t len = 0;
        /* The INT8 file keeps the calibrated ranges; the others are saved
         * from the same graph and simply run without them. */
        e = vx_nn_engine_file_encode(m, &fo, &buf, &len);
        if (!e) {
            memcpy(temp_paths[n_temp], x->tmp, sizeof temp_paths[0]);
            n_temp++;
            e = vx_nn_write_file_atomic(x->tmp, buf, len);
        }
        free(buf);
        if (e) {
            fprintf(stderr, "verolux export: %s\n", vx_last_error());
            x->tmp[0] = 0;
            goto out;
        }
        x->bytes = len;
        vx_nn_engine_opts xo = eo;
        xo.precision = p;
        if ((e = vx_detector_create(x->tmp, &xo, NULL, &x->det))) {
            fprintf(stderr, "verolux export: the written %s engine does not load back: %s\n",
                    vx_nn_precision_name(p), vx_last_error());
            goto out;
        }
    }

    /* The accuracy check against FP32 on one set for all of them. */
    eval_ctx ec = {ref, t, nt, 0, da, db};
    int checked = 0;
    for (int k = 0; k < nt; k++)
        checked += t[k].precision != VX_NN_FP32;
    if (checked) {
        for (int i = 0; i < n_images && !e; i++) {
            e = for_images(images + i, 1, eval_frame, &ec);
            progress("checking", i + 1, n_images);
        }
        if (!e && eval_frames > 0) {
            int ef = eval_frames < video_total ? eval_frames : video_total;
            e = for_video(vtest, &video_total, ef, 0, eval_frame, &ec, "checking");
        }
        if (e) {
            fprintf(stderr, "verolux export: accuracy check: %s\n", vx_last_error());
            goto out;
        }
    }

    /* Install what passed. */
    int failed = 0;
    for (int k = 0; k < nt; k++) {
        target *x = &t[k];
        vx_detector_destroy(x->det);
        x->det = NULL;
        if (x->precision == VX_NN_FP32) {
            x->ok = 1;
        } else {
            x->f1 = x->n_ref + x->n_test ? 2.0 * (double)x->matched / (double)(x->n_ref + x->n_test) : 1.0;
            x->cosine = x->cos_n ? x->cos_sum / (double)x->cos_n : 1.0;
            double bar = x->precision == VX_NN_INT8 ? F1_INT8 : F1_BF16;
            x->ok = x->f1 >= bar && x->cosine >= COS_MIN;
        }
        if (!x->ok && !force) {
            failed = 1;
            continue;
        }
        if (rename(x->tmp, x->final) != 0) {
            fprintf(stderr, "verolux export: %s: %s\n", x->final, strerror(errno));
            goto out;
        }
        x->tmp[0] = 0;
        temp_paths[k][0] = 0;
        x->installed = 1;
    }

    /* The summary. */
    printf("verolux export: %s (%s, %s %dx%d, %d classes, %.2f GFLOPs), cpu backend, ISA %s\n", model,
           ms.format, vx_model_family_name(fi->family), fi->input_w, fi->input_h, fi->num_classes,
           ms.flops / 1e9, vx_nn_cpu_isa_name());
    if (want[VX_NN_INT8]) {
        printf("calibration: %d frames (%d video frames of %s, %d images), %s, %.1f s\n", calib_done,
               calib_from_video,
               calib && calib_from_video ? calib
               : calib                   ? "-"
                                         : "vtest.avi",
               calib_from_images, method == VX_CALIB_PERCENTILE ? "percentile" : method_names[method],
               calib_s);
        int nl = vx_nn_model_layer_count(m), n8 = 0;
        double max_err = 0;
        for (int i = 0; i < nl; i++) {
            vx_nn_layer_info li;
            vx_nn_model_layer_info(m, i, &li);
            if (li.precision == VX_NN_INT8) {
                n8++;
                if (li.error > max_err)
                    max_err = li.error;
            }
        }
        printf("layers of the INT8 engine: %d convolutions, %d INT8 (largest error %.3f), %d FP32%s\n", nl,
               n8, max_err, nl - n8, nl - n8 ? ":" : "");
        for (int i = 0; i < nl; i++) {
            vx_nn_layer_info li;
            vx_nn_model_layer_info(m, i, &li);
            if (verbose || li.precision != VX_NN_INT8) {
                char err[32] = "-";
                if (li.error >= 0)
                    snprintf(err, sizeof err, "%.4f", li.error);
                printf("  %-4s %-48s error %s  range in %.3g out %.3g\n", vx_nn_precision_name(li.precision),
                       li.name, err, li.in_amax, li.out_amax);
            }
        }
    }
    if (checked)
        printf("accuracy vs FP32 on %d frames (%d images + %d of vtest.avi): same class, IoU >= 0.5, conf >= "
               "0.35\n",
               ec.frames, n_images, ec.frames - n_images);
    printf("  %-28s %-22s %10s  %-28s %8s  %s\n", "file", "precision", "size", "F1 (matched / FP32 / this)",
           "cosine", "result");
    for (int k = 0; k < nt; k++) {
        target *x = &t[k];
        char size[32], f1[64] = "reference", cosv[16] = "-";
        const char *name = strrchr(x->final, '/');
        if (x->precision != VX_NN_FP32) {
            snprintf(f1, sizeof f1, "%.4f (%ld / %ld / %ld)", x->f1, x->matched, x->n_ref, x->n_test);
            snprintf(cosv, sizeof cosv, "%.5f", x->cosine);
        }
        double bar = x->precision == VX_NN_INT8 ? F1_INT8 : F1_BF16;
        char result[96];
        if (x->precision == VX_NN_FP32)
            snprintf(result, sizeof result, "written");
        else
            snprintf(result, sizeof result, "%s (F1 >= %.2f, cosine >= %.2f)%s", x->ok ? "pass" : "FAIL", bar,
                     COS_MIN, x->installed ? (x->ok ? ", written" : ", written (--force)") : ", not written");
        printf("  %-28s %-22s %10s  %-28s %8s  %s\n", name ? name + 1 : x->final, x->label,
               human_size(x->bytes, size, sizeof size), f1, cosv, result);
    }
    if (failed)
        fprintf(stderr, "verolux export: an engine is below the accuracy bar and was not written (try "
                        "--calib-method percentile or more --calib-frames; --force writes it anyway)\n");
    rc = failed ? VX_EXIT_FAIL : VX_EXIT_OK;

out:
    for (int k = 0; k < 3; k++) {
        vx_detector_destroy(t[k].det);
        if (t[k].tmp[0])
            unlink(t[k].tmp);
    }
    vx_nn_calibrator_destroy(cal);
    vx_detector_destroy(ref);
    vx_nn_model_destroy(m);
    free_list(images, n_images);
    free_list(calib_images, n_calib_images);
    free(da);
    free(db);
    return rc;
}
