/*
 * INT8 and BF16 against FP32 on real data: NanoDet-g from
 * $VEROLUX_CACHE/models calibrated on frames of vtest.avi and the sample
 * images, then evaluated on other, evenly spaced frames and the images.
 * Detections (same class, IoU >= 0.5, conf >= 0.35) must match FP32's with
 * F1 >= 0.96 in INT8 (>= 0.98 in BF16), and the raw outputs must have a mean
 * cosine similarity >= 0.99 to FP32's.  Also the API's refusals: INT8 on an
 * uncalibrated model, finish() without samples.  Fails when the model or
 * the samples are missing (scripts/fetch-models, scripts/fetch-samples).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>

#include "detect/detect_internal.h"
#include "detect/vx_detect.h"
#include "nn/engine_internal.h"
#include "video/vx_video.h"

#define CALIB_FRAMES 32
#define EVAL_FRAMES 40
/* Sanitizer builds (VX_TEST_LIGHT=1) run the same code paths on a few
 * frames: too few for the accuracy bars, which only the Release run holds. */
#define LIGHT_FRAMES 4
static int light;
#define MAX_INPUTS 64
#define MAX_DET 100

static char cache[1024], model_path[1200];
static vx_detector *det;
static float *calib[MAX_INPUTS], *eval[MAX_INPUTS];
static int ncalib, neval;
static size_t in_elems;
/* One model and one collection of histograms for the calibrated tests
 * (collecting is the slow part); each test finishes it its own way. */
static vx_nn_model *qm;
static vx_nn_calibrator *qc;

static float *take_input(void)
{
    float *p = malloc(in_elems * sizeof(float));
    assert_non_null(p);
    memcpy(p, vx_nn_engine_input(vx_detector_engine(det), 0), in_elems * sizeof(float));
    return p;
}

static void add_image(const vx_image *img, float **set, int *n)
{
    if (vx_detector_preprocess(det, img) != VX_OK)
        fail_msg("preprocess: %s", vx_last_error());
    set[(*n)++] = take_input();
}

/* Frames at indices first, first + step, ... of the video, preprocessed. */
static void add_video_frames(const char *path, int first, int step, int count, float **set, int *n)
{
    AVFormatContext *fc = NULL;
    if (avformat_open_input(&fc, path, NULL, NULL) < 0 || avformat_find_stream_info(fc, NULL) < 0)
        fail_msg("%s: cannot open (run scripts/fetch-samples)", path);
    int si = av_find_best_stream(fc, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
    assert_true(si >= 0);
    const AVCodec *codec = avcodec_find_decoder(fc->streams[si]->codecpar->codec_id);
    AVCodecContext *cc = avcodec_alloc_context3(codec);
    assert_non_null(cc);
    avcodec_parameters_to_context(cc, fc->streams[si]->codecpar);
    assert_int_equal(avcodec_open2(cc, codec, NULL), 0);
    AVPacket *pkt = av_packet_alloc();
    AVFrame *fr = av_frame_alloc();
    int idx = 0, taken = 0, eof = 0;
    while (taken < count && !eof) {
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
        while (taken < count && avcodec_receive_frame(cc, fr) == 0) {
            if (idx >= first && (idx - first) % step == 0) {
                vx_image img;
                if (vx_video_avframe_view(fr, &img) != VX_OK)
                    fail_msg("frame %d: %s", idx, vx_last_error());
                add_image(&img, set, n);
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
    if (taken < count)
        fail_msg("%s: only %d of %d frames", path, taken, count);
}

static int setup(void **state)
{
    (void)state;
    const char *l = getenv("VX_TEST_LIGHT");
    light = l && *l && strcmp(l, "0");
    const char *c = getenv("VEROLUX_CACHE");
    snprintf(cache, sizeof cache, "%s", c && *c ? c : ".");
    snprintf(model_path, sizeof model_path, "%s/models/nanodet/nanodet.json", cache);
    vx_nn_engine_opts eo;
    vx_nn_engine_opts_default(&eo);
    eo.threads = 2;
    if (vx_detector_create(model_path, &eo, NULL, &det) != VX_OK) {
        fprintf(stderr, "test_int8: %s (run scripts/fetch-models)\n", vx_last_error());
        return -1;
    }
    vx_nn_tensor_info ti;
    vx_nn_model_input_info(vx_detector_model(det), 0, &ti);
    in_elems = 1;
    for (int k = 0; k < ti.rank; k++)
        in_elems *= (size_t)ti.dims[k];
    static const char *images[] = {"dog.jpg",     "person.jpg", "horses.jpg",
                                   "giraffe.jpg", "eagle.jpg",  "kite.jpg"};
    for (size_t i = 0; i < sizeof images / sizeof *images; i++) {
        char path[1300];
        vx_image_buf *buf;
        snprintf(path, sizeof path, "%s/samples/%s", cache, images[i]);
        if (vx_image_load(path, &buf) != VX_OK) {
            fprintf(stderr, "test_int8: %s (run scripts/fetch-samples)\n", vx_last_error());
            return -1;
        }
        add_image(vx_image_buf_view(buf), calib, &ncalib);
        add_image(vx_image_buf_view(buf), eval, &neval);
        vx_image_buf_destroy(buf);
    }
    char video[1300];
    snprintf(video, sizeof video, "%s/samples/vtest.avi", cache);
    /* vtest.avi has 795 frames: calibration and evaluation frames interleave
     * without overlapping. */
    add_video_frames(video, 7, 24, light ? LIGHT_FRAMES : CALIB_FRAMES, calib, &ncalib);
    add_video_frames(video, 0, 19, light ? LIGHT_FRAMES : EVAL_FRAMES, eval, &neval);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < ncalib; i++)
        free(calib[i]);
    for (int i = 0; i < neval; i++)
        free(eval[i]);
    vx_nn_calibrator_destroy(qc);
    vx_nn_model_destroy(qm);
    vx_detector_destroy(det);
    return 0;
}

static int load(vx_nn_model **m)
{
    if (vx_nn_model_load(model_path, NULL, m) != VX_OK)
        fail_msg("%s", vx_last_error());
    return 0;
}

static vx_nn_model *calibrate(vx_nn_calib_method method, double max_layer_err)
{
    if (!qc) {
        load(&qm);
        if (vx_nn_calibrator_create(qm, VX_CALIB_MINMAX, 0, &qc) != VX_OK)
            fail_msg("%s", vx_last_error());
        for (int i = 0; i < ncalib; i++) {
            const float *in[1] = {calib[i]};
            if (vx_nn_calibrator_add(qc, in) != VX_OK)
                fail_msg("%s", vx_last_error());
        }
        assert_int_equal(vx_nn_calibrator_samples(qc), ncalib);
    }
    assert_int_equal(vx_nn_calibrator_set_method(qc, method, 99.999), VX_OK);
    vx_nn_calibrator_set_max_layer_error(qc, max_layer_err);
    if (vx_nn_calibrator_finish(qc, qm) != VX_OK)
        fail_msg("%s", vx_last_error());
    return qm;
}

/* Detections in network-input pixels (letterbox space is the same for both
 * engines, so no unmapping is needed to compare them). */
static int detect(const vx_nn_engine *e, vx_detection *out)
{
    const vx_family_info *fi = vx_detector_info(det);
    vx_nanodet_level lv[VX_DETECT_MAX_LEVELS];
    int cells_max = 0;
    for (int l = 0; l < fi->nlevels; l++) {
        lv[l] = (vx_nanodet_level){vx_nn_engine_output(e, fi->levels[l].cls_out),
                                   vx_nn_engine_output(e, fi->levels[l].reg_out), fi->levels[l].stride,
                                   fi->levels[l].grid};
        if (fi->levels[l].grid * fi->levels[l].grid > cells_max)
            cells_max = fi->levels[l].grid * fi->levels[l].grid;
    }
    vx_scored_cell *cells = malloc(sizeof *cells * (size_t)cells_max);
    vx_detection *cand = malloc(sizeof *cand * (size_t)(fi->nlevels * VX_NANODET_TOPK));
    assert_non_null(cells);
    assert_non_null(cand);
    int n = vx_nanodet_decode(lv, fi->nlevels, fi->num_classes, fi->input_w, 0.35f, cells, cand);
    n = vx_nms(cand, n, 0.5f, MAX_DET);
    memcpy(out, cand, sizeof *out * (size_t)n);
    free(cells);
    free(cand);
    return n;
}

static float iou(const vx_detection *a, const vx_detection *b)
{
    float w = fminf(a->x2, b->x2) - fmaxf(a->x1, b->x1), h = fminf(a->y2, b->y2) - fmaxf(a->y1, b->y1);
    if (w <= 0 || h <= 0)
        return 0;
    float i = w * h, u = (a->x2 - a->x1) * (a->y2 - a->y1) + (b->x2 - b->x1) * (b->y2 - b->y1) - i;
    return u > 0 ? i / u : 0;
}

/* Greedy one-to-one matching in descending confidence of `b`. */
static int matches(const vx_detection *a, int na, const vx_detection *b, int nb)
{
    char used[MAX_DET] = {0};
    int tp = 0;
    for (int j = 0; j < nb; j++) {
        int best = -1;
        float bi = 0.5f;
        for (int i = 0; i < na; i++)
            if (!used[i] && a[i].cls == b[j].cls && iou(&a[i], &b[j]) >= bi)
                bi = iou(&a[i], &b[j]), best = i;
        if (best >= 0) {
            used[best] = 1;
            tp++;
        }
    }
    return tp;
}

typedef struct {
    double f1, cosine;
} agreement;

static agreement compare(vx_nn_engine *ref, vx_nn_engine *e, const vx_nn_model *m)
{
    int tp = 0, nref = 0, ne = 0;
    double cos_sum = 0;
    for (int f = 0; f < neval; f++) {
        memcpy(vx_nn_engine_input(ref, 0), eval[f], in_elems * sizeof(float));
        memcpy(vx_nn_engine_input(e, 0), eval[f], in_elems * sizeof(float));
        if (vx_nn_engine_run(ref) != VX_OK || vx_nn_engine_run(e) != VX_OK)
            fail_msg("%s", vx_last_error());
        double dot = 0, na = 0, nb = 0;
        for (int o = 0; o < vx_nn_model_output_count(m); o++) {
            vx_nn_tensor_info ti;
            vx_nn_model_output_info(m, o, &ti);
            size_t n = 1;
            for (int k = 0; k < ti.rank; k++)
                n *= (size_t)ti.dims[k];
            const float *a = vx_nn_engine_output(ref, o), *b = vx_nn_engine_output(e, o);
            for (size_t k = 0; k < n; k++) {
                dot += (double)a[k] * b[k];
                na += (double)a[k] * a[k];
                nb += (double)b[k] * b[k];
            }
        }
        cos_sum += dot / sqrt(na * nb + 1e-30);
        vx_detection da[MAX_DET], db[MAX_DET];
        int ka = detect(ref, da), kb = detect(e, db);
        tp += matches(da, ka, db, kb);
        nref += ka;
        ne += kb;
    }
    agreement r = {nref + ne ? 2.0 * tp / (nref + ne) : 1.0, cos_sum / neval};
    return r;
}

static vx_nn_engine *engine(const vx_nn_model *m, vx_nn_precision p)
{
    vx_nn_engine_opts o = {.backend = VX_NN_BACKEND_CPU, .threads = 2, .precision = p};
    vx_nn_engine *e;
    if (vx_nn_engine_create(m, &o, &e) != VX_OK)
        fail_msg("%s: %s", vx_nn_precision_name(p), vx_last_error());
    return e;
}

static void test_int8_accuracy(void **state)
{
    (void)state;
    vx_nn_model *m = calibrate(VX_CALIB_MINMAX, 0.10);
    assert_true(vx_nn_model_is_calibrated(m));
    int nl = vx_nn_model_layer_count(m), n8 = 0;
    assert_true(nl > 0);
    for (int i = 0; i < nl; i++) {
        vx_nn_layer_info li;
        vx_nn_model_layer_info(m, i, &li);
        assert_non_null(li.name);
        assert_true(li.in_amax > 0);
        assert_true(li.error > 0); /* every layer was measured */
        n8 += li.precision == VX_NN_INT8;
        if (getenv("VX_TEST_VERBOSE"))
            printf("  %-50s %s err %.4f in %.3f out %.3f\n", li.name, vx_nn_precision_name(li.precision),
                   li.error, li.in_amax, li.out_amax);
    }
    /* The sensitivity check may keep a few layers in FP32, not most. */
    assert_true(n8 >= nl * 3 / 4);
    /* LeakyReLU outputs got asymmetric ranges (u8 with a zero point). */
    int asym = 0;
    for (int i = 0; i < m->g->nt; i++)
        asym += m->g->t[i].amin < 0.0f;
    assert_true(asym > 0);
    vx_nn_engine *ref = engine(m, VX_NN_FP32), *q = engine(m, VX_NN_INT8);
    printf("INT8 engine: %s\n", vx_nn_engine_describe(q));
    assert_non_null(strstr(vx_nn_engine_describe(q), "INT8"));
    agreement a = compare(ref, q, m);
    printf("INT8 vs FP32 on %d inputs: F1 %.4f, mean cosine %.5f (%d of %d layers INT8)\n", neval, a.f1,
           a.cosine, n8, nl);
    assert_true(a.f1 >= (light ? 0.5 : 0.96));
    assert_true(a.cosine >= (light ? 0.95 : 0.99));
    vx_nn_engine_destroy(q);
    vx_nn_engine_destroy(ref);
}

static void test_bf16_accuracy(void **state)
{
    (void)state;
    vx_nn_model *m;
    load(&m);
    vx_nn_engine *ref = engine(m, VX_NN_FP32), *b = engine(m, VX_NN_BF16);
    agreement a = compare(ref, b, m);
    printf("BF16 vs FP32 on %d inputs: F1 %.4f, mean cosine %.5f\n", neval, a.f1, a.cosine);
    assert_true(a.f1 >= (light ? 0.5 : 0.98));
    assert_true(a.cosine >= (light ? 0.95 : 0.99));
    vx_nn_engine_destroy(b);
    vx_nn_engine_destroy(ref);
    vx_nn_model_destroy(m);
}

/* The clipping range choices, from one collection of histograms.  They
 * trade resolution for clipped outliers; on NanoDet-g clipping costs
 * detections (measured F1: minmax 0.97, percentile 99.999 0.96, entropy
 * 0.90), so the bounds here only say each gives a working engine. */
static void test_int8_methods(void **state)
{
    (void)state;
    static const vx_nn_calib_method methods[] = {VX_CALIB_PERCENTILE, VX_CALIB_ENTROPY};
    static const char *names[] = {"percentile 99.999", "entropy"};
    vx_nn_model *m = calibrate(VX_CALIB_MINMAX, 0.10);
    vx_nn_calibrator *c = qc;
    vx_nn_engine *ref = engine(m, VX_NN_FP32);
    float prev_amax = 0;
    for (int k = 0; k < 2; k++) {
        calibrate(methods[k], 0.10);
        /* Ranges differ between methods (the first conv's source). */
        vx_nn_layer_info li;
        vx_nn_model_layer_info(m, 0, &li);
        assert_true(li.in_amax > 0 && li.in_amax != prev_amax);
        prev_amax = li.in_amax;
        vx_nn_engine *q = engine(m, VX_NN_INT8);
        agreement a = compare(ref, q, m);
        printf("INT8 (%s) vs FP32: F1 %.4f, mean cosine %.5f\n", names[k], a.f1, a.cosine);
        assert_true(a.f1 >= (light ? 0.5 : 0.85));
        assert_true(a.cosine >= (light ? 0.95 : 0.985));
        vx_nn_engine_destroy(q);
    }
    assert_int_equal(vx_nn_calibrator_set_method(c, VX_CALIB_PERCENTILE, 10.0), VX_ERR_INVALID);
    /* A strict sensitivity bound keeps some layers in FP32: a mixed engine
     * (dequantised copies into the FP32 layers, requantised after them). */
    assert_int_equal(vx_nn_calibrator_set_method(c, VX_CALIB_MINMAX, 0), VX_OK);
    vx_nn_calibrator_set_max_layer_error(c, 0.04);
    if (vx_nn_calibrator_finish(c, m) != VX_OK)
        fail_msg("%s", vx_last_error());
    int nl = vx_nn_model_layer_count(m), n32 = 0;
    for (int i = 0; i < nl; i++) {
        vx_nn_layer_info li;
        vx_nn_model_layer_info(m, i, &li);
        n32 += li.precision == VX_NN_FP32;
        assert_true(li.precision == VX_NN_INT8 || li.error > 0.04f);
    }
    assert_true(n32 > 0 && n32 < nl);
    vx_nn_engine *mixed = engine(m, VX_NN_INT8);
    char want[64];
    snprintf(want, sizeof want, "%d convs INT8, %d FP32", nl - n32, n32);
    assert_non_null(strstr(vx_nn_engine_describe(mixed), want));
    agreement a = compare(ref, mixed, m);
    printf("INT8 with %d of %d layers FP32 vs FP32: F1 %.4f, mean cosine %.5f\n", n32, nl, a.f1, a.cosine);
    assert_true(a.f1 >= (light ? 0.5 : 0.96));
    assert_true(a.cosine >= (light ? 0.95 : 0.99));
    vx_nn_engine_destroy(mixed);
    vx_nn_engine_destroy(ref);
}

static void test_int8_refusals(void **state)
{
    (void)state;
    vx_nn_model *m, *other;
    load(&m);
    load(&other);
    assert_false(vx_nn_model_is_calibrated(m));
    vx_nn_engine_opts o = {.backend = VX_NN_BACKEND_CPU, .threads = 1, .precision = VX_NN_INT8};
    vx_nn_engine *e = NULL;
    assert_int_equal(vx_nn_engine_create(m, &o, &e), VX_ERR_INVALID);
    assert_null(e);
    assert_non_null(strstr(vx_last_error(), "calibrat"));
    vx_nn_calibrator *c;
    assert_int_equal(vx_nn_calibrator_create(m, VX_CALIB_PERCENTILE, 20.0, &c), VX_ERR_INVALID);
    assert_int_equal(vx_nn_calibrator_create(m, (vx_nn_calib_method)7, 99.9, &c), VX_ERR_INVALID);
    assert_int_equal(vx_nn_calibrator_create(m, VX_CALIB_ENTROPY, 0, &c), VX_OK);
    assert_int_equal(vx_nn_calibrator_finish(c, m), VX_ERR_INVALID); /* no samples */
    float *bad = malloc(in_elems * sizeof(float));
    memcpy(bad, eval[0], in_elems * sizeof(float));
    bad[in_elems / 2] = NAN;
    const float *in[1] = {bad};
    assert_int_equal(vx_nn_calibrator_add(c, in), VX_ERR_INVALID);
    in[0] = eval[0];
    assert_int_equal(vx_nn_calibrator_add(c, in), VX_OK);
    assert_int_equal(vx_nn_calibrator_finish(c, other), VX_ERR_INVALID); /* not its model */
    vx_nn_calibrator_destroy(c);
    assert_false(vx_nn_model_is_calibrated(m));
    free(bad);
    vx_nn_model_destroy(other);
    vx_nn_model_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_int8_refusals),
        cmocka_unit_test(test_int8_accuracy),
        cmocka_unit_test(test_bf16_accuracy),
        cmocka_unit_test(test_int8_methods),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
