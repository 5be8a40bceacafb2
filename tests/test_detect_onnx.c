/*
 * The detector on real ONNX files: the YOLOv8n- and YOLOv5n-architecture
 * fixtures of scripts/make-onnx-fixtures (random weights, Ultralytics'
 * graph structure and metadata; ctest generates them into
 * $VX_ONNX_FIXTURES first) through the real loader, the cpu engine and
 * the whole detector chain, on darknet's dog.jpg from $VEROLUX_CACHE and a
 * synthetic portrait frame.
 *
 * Random weights say nothing about accuracy, so the check is structural
 * and exact instead: the family, input size and class names are what the
 * file declares, and the detections equal those computed here, naively,
 * from the engine's raw output: every box's best class (times the
 * objectness for YOLOv5), the threshold, boxes in the padding dropped,
 * greedy class-aware NMS in the same order, the letterbox undone.  A
 * wrong output orientation, channel offset or mapping shows as a mismatch.
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

#include "detect/vx_detect.h"

#define MAX_DET 300

static char fixtures[1024], cache[1024];
static vx_image_buf *dog;
static int produced; /* detections over all runs, so the comparison is not vacuous */

/* vx_nms's order: confidence down, then class, then position. */
static int cmp_ref(const void *pa, const void *pb)
{
    const vx_detection *a = pa, *b = pb;
    if (a->conf != b->conf)
        return a->conf > b->conf ? -1 : 1;
    if (a->cls != b->cls)
        return a->cls < b->cls ? -1 : 1;
    if (a->y1 != b->y1)
        return a->y1 < b->y1 ? -1 : 1;
    if (a->x1 != b->x1)
        return a->x1 < b->x1 ? -1 : 1;
    if (a->y2 != b->y2)
        return a->y2 < b->y2 ? -1 : 1;
    return (a->x2 > b->x2) - (a->x2 < b->x2);
}

static float iou(const vx_detection *a, const vx_detection *b)
{
    float iw = fminf(a->x2, b->x2) - fmaxf(a->x1, b->x1), ih = fminf(a->y2, b->y2) - fmaxf(a->y1, b->y1);
    if (iw <= 0 || ih <= 0)
        return 0;
    float inter = iw * ih;
    return inter / ((a->x2 - a->x1) * (a->y2 - a->y1) + (b->x2 - b->x1) * (b->y2 - b->y1) - inter);
}

/* The expected detections from the raw output tensor [1, A, B]. */
static int reference(const vx_detector *det, const vx_image *img, vx_detection *out, int cap)
{
    const vx_family_info *fi = vx_detector_info(det);
    vx_nn_tensor_info t;
    vx_nn_model_output_info(vx_detector_model(det), fi->output, &t);
    const float *raw = vx_nn_engine_output(vx_detector_engine((vx_detector *)det), fi->output);
    assert_non_null(raw);
    int v5 = fi->family == VX_FAMILY_YOLOV5;
    /* Ultralytics' layouts, read from the declared shape, not from info. */
    int64_t boxes = v5 ? t.dims[1] : t.dims[2], ch = v5 ? t.dims[2] : t.dims[1];
    assert_int_equal(ch, (v5 ? 5 : 4) + vx_detector_class_count(det));
    vx_detect_opts o;
    vx_detector_get_opts(det, &o);

    /* The letterbox: the limiting side fills, the other is centred. */
    int sw = fi->input_w, sh = fi->input_h;
    double r = fmin((double)sw / img->width, (double)sh / img->height);
    int w = (int)lround(img->width * r), h = (int)lround(img->height * r);
    int ox = (sw - w) / 2, oy = (sh - h) / 2;

    vx_detection *c = malloc(sizeof *c * (size_t)boxes);
    int n = 0;
    const int64_t bs = v5 ? ch : 1, cs = v5 ? 1 : boxes; /* element (box i, channel k) at i * bs + k * cs */
    for (int64_t i = 0; i < boxes; i++) {
        const float *p = raw + i * bs;
        int first = v5 ? 5 : 4, best = 0;
        for (int k = 1; k < ch - first; k++)
            if (p[(first + k) * cs] > p[(first + best) * cs])
                best = k;
        float score = p[(first + best) * cs] * (v5 ? p[4 * cs] : 1.0f);
        if (!(score >= o.conf_threshold))
            continue;
        float cx = p[0 * cs], cy = p[1 * cs], hw = 0.5f * p[2 * cs], hh = 0.5f * p[3 * cs];
        vx_detection d = {cx - hw, cy - hh, cx + hw, cy + hh, score, best};
        if (d.x2 > ox && d.x1 < ox + w && d.y2 > oy && d.y1 < oy + h && d.x2 > d.x1 && d.y2 > d.y1)
            c[n++] = d;
    }
    qsort(c, (size_t)n, sizeof *c, cmp_ref);
    int kept = 0, limit = cap < o.max_det ? cap : o.max_det;
    for (int i = 0; i < n && kept < limit; i++) {
        int keep = 1;
        for (int j = 0; j < kept && keep; j++)
            keep = !(c[j].cls == c[i].cls && iou(&c[j], &c[i]) > o.nms_iou);
        if (keep)
            c[kept++] = c[i];
    }
    int m = 0;
    float fw = (float)w / (float)img->width, fh = (float)h / (float)img->height;
    for (int i = 0; i < kept; i++) {
        vx_detection d = c[i];
        d.x1 = fminf(fmaxf((d.x1 - (float)ox) / fw, 0), (float)img->width);
        d.x2 = fminf(fmaxf((d.x2 - (float)ox) / fw, 0), (float)img->width);
        d.y1 = fminf(fmaxf((d.y1 - (float)oy) / fh, 0), (float)img->height);
        d.y2 = fminf(fmaxf((d.y2 - (float)oy) / fh, 0), (float)img->height);
        if (d.x2 > d.x1 && d.y2 > d.y1)
            out[m++] = d;
    }
    free(c);
    return m;
}

static void check_run(const char *name, vx_detector *det, const vx_image *img)
{
    static vx_detection got[MAX_DET], want[MAX_DET];
    int n = -1;
    if (vx_detector_run(det, img, got, MAX_DET, &n) != VX_OK)
        fail_msg("%s: %s", name, vx_last_error());
    int m = reference(det, img, want, MAX_DET);
    if (n != m)
        fail_msg("%s on %dx%d: %d detections, the raw output gives %d", name, img->width, img->height, n, m);
    for (int i = 0; i < n; i++) {
        const vx_detection *a = &got[i], *b = &want[i];
        if (a->cls != b->cls || a->conf != b->conf || fabsf(a->x1 - b->x1) > 0.05f ||
            fabsf(a->y1 - b->y1) > 0.05f || fabsf(a->x2 - b->x2) > 0.05f || fabsf(a->y2 - b->y2) > 0.05f)
            fail_msg(
                "%s: detection %d is class %d %.4f [%.1f %.1f %.1f %.1f], the raw output gives class %d %.4f "
                "[%.1f %.1f %.1f %.1f]",
                name, i, a->cls, (double)a->conf, (double)a->x1, (double)a->y1, (double)a->x2, (double)a->y2,
                b->cls, (double)b->conf, (double)b->x1, (double)b->y1, (double)b->x2, (double)b->y2);
        assert_true(a->x1 >= 0 && a->x2 <= img->width && a->y1 >= 0 && a->y2 <= img->height);
        assert_in_range(a->cls, 0, vx_detector_class_count(det) - 1);
    }
    produced += n;
}

static void run_fixture(const char *name, vx_model_family family, int size)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s.onnx", fixtures, name);
    if (access(path, R_OK) != 0)
        fail_msg("%s missing: ctest's onnx_fixtures step writes it (scripts/make-onnx-fixtures)", path);
    vx_detect_opts o;
    vx_detect_opts_default(&o);
    o.max_det = MAX_DET;
    vx_detector *det;
    if (vx_detector_create(path, NULL, &o, &det) != VX_OK)
        fail_msg("%s", vx_last_error());
    const vx_family_info *fi = vx_detector_info(det);
    if (fi->family != family)
        fail_msg("%s recognised as %s: %s", name, vx_model_family_name(fi->family), fi->why);
    assert_int_equal(fi->input_w, size);
    assert_int_equal(fi->input_h, size);
    assert_int_equal(fi->nstrides, 3);
    assert_int_equal(vx_detector_class_count(det), 80);
    /* The fixtures' metadata names class i COCO[i % 80]. */
    assert_string_equal(vx_detector_class_name(det, 0), "person");
    assert_string_equal(vx_detector_class_name(det, 79), "toothbrush");

    check_run(name, det, vx_image_buf_view(dog));

    /* A portrait frame: padding left and right instead. */
    enum { W = 300, H = 700 };
    uint8_t *px = malloc(W * H * 3);
    for (int i = 0; i < W * H * 3; i++)
        px[i] = (uint8_t)(i * 7 % 251);
    vx_image tall = {W, H, VX_PIX_RGB24, {px, NULL, NULL}, {W * 3, 0, 0}};
    check_run(name, det, &tall);
    free(px);
    vx_detector_destroy(det);
}

static void test_yolov8n_640(void **state)
{
    (void)state;
    run_fixture("yolov8n-640", VX_FAMILY_YOLOV8, 640);
}

static void test_yolov8n_416(void **state)
{
    (void)state;
    run_fixture("yolov8n-416", VX_FAMILY_YOLOV8, 416);
}

static void test_yolov8n_dynamic_batch(void **state)
{
    (void)state;
    run_fixture("yolov8n-320-dynbatch", VX_FAMILY_YOLOV8, 320);
}

static void test_yolov5n_640(void **state)
{
    (void)state;
    run_fixture("yolov5n-640", VX_FAMILY_YOLOV5, 640);
}

static void test_yolov5n_416(void **state)
{
    (void)state;
    run_fixture("yolov5n-416", VX_FAMILY_YOLOV5, 416);
}

static void test_something_detected(void **state)
{
    (void)state;
    if (produced == 0)
        fail_msg("no fixture produced a detection: the comparisons above compared nothing");
}

static int setup(void **state)
{
    (void)state;
    const char *f = getenv("VX_ONNX_FIXTURES"), *env = getenv("VEROLUX_CACHE"), *home = getenv("HOME");
    if (!f || !*f) {
        print_error("VX_ONNX_FIXTURES is not set: run this test through ctest\n");
        return -1;
    }
    snprintf(fixtures, sizeof fixtures, "%s", f);
    if (env && *env)
        snprintf(cache, sizeof cache, "%s", env);
    else
        snprintf(cache, sizeof cache, "%s/.cache/verolux", home ? home : ".");
    char path[1200];
    snprintf(path, sizeof path, "%s/samples/dog.jpg", cache);
    if (vx_image_load(path, &dog) != VX_OK) {
        print_error("%s: run scripts/fetch-samples\n", vx_last_error());
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    vx_image_buf_destroy(dog);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_yolov8n_640),           cmocka_unit_test(test_yolov8n_416),
        cmocka_unit_test(test_yolov8n_dynamic_batch), cmocka_unit_test(test_yolov5n_640),
        cmocka_unit_test(test_yolov5n_416),           cmocka_unit_test(test_something_detected),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
