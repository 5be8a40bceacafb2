/*
 * The NanoDet detector around a fake network (fake_nn.h): recognition
 * from the output shapes, preprocessing into the input tensor, and the
 * whole chain on hand-written head outputs, with no model file.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "detect/detect_internal.h"
#include "fake_nn.h"

/* ---- configurations ---- */

static void add_output(const char *name, int64_t n, int64_t c)
{
    fake_add_output(name, 3, 1, n, c, 0, 0);
}

/* NanoDet-g as the TFJS conversion presents it: names that say nothing,
 * levels and heads in no useful order. */
static void fake_nanodet_tfjs(int classes)
{
    fake_reset();
    add_output("Identity:0", 676, 44);
    add_output("Identity_1:0", 2704, classes);
    add_output("Identity_2:0", 169, classes);
    add_output("Identity_3:0", 2704, 44);
    add_output("Identity_4:0", 169, 44);
    add_output("Identity_5:0", 676, classes);
}

static int find_output(int64_t n, int64_t c)
{
    for (int i = 0; i < fake.noutputs; i++)
        if (fake.outputs[i].dims[1] == n && fake.outputs[i].dims[2] == c)
            return i;
    fail_msg("no fake output [1,%lld,%lld]", (long long)n, (long long)c);
    return -1;
}

static vx_detector *create_ok(void)
{
    vx_detector *det = NULL;
    vx_err err = vx_detector_create("fake-model.json", NULL, NULL, &det);
    if (err != VX_OK)
        fail_msg("create failed: %s", vx_last_error());
    return det;
}

static void create_fails(const char *path, const char *expect)
{
    vx_detector *det = (vx_detector *)(uintptr_t)1;
    assert_int_not_equal(vx_detector_create(path, NULL, NULL, &det), VX_OK);
    assert_null(det);
    const char *msg = vx_last_error();
    if (!strstr(msg, path))
        fail_msg("message does not name the model: %s", msg);
    if (expect && !strstr(msg, expect))
        fail_msg("message lacks '%s': %s", expect, msg);
    assert_int_equal(fake.live_models, 0);
    assert_int_equal(fake.live_engines, 0);
}

/* ---- model recognition ---- */

static void test_recognise_tfjs_order(void **state)
{
    (void)state;
    fake_nanodet_tfjs(80);
    vx_detector *det = create_ok();
    assert_int_equal(vx_detector_input_size(det), 416);
    assert_int_equal(vx_detector_class_count(det), 80);
    assert_string_equal(vx_detector_class_name(det, 16), "dog");
    assert_string_equal(vx_detector_class_name(det, 80), "?");
    assert_string_equal(vx_detector_class_name(det, -1), "?");
    assert_ptr_equal(vx_detector_engine(det), &fake_engine);
    assert_ptr_equal(vx_detector_model(det), &fake_model);
    vx_detector_destroy(det);
    assert_int_equal(fake.live_models, 0);
    assert_int_equal(fake.live_engines, 0);
}

static void test_recognise_other_classes(void **state)
{
    (void)state;
    fake_nanodet_tfjs(3);
    vx_detector *det = create_ok();
    assert_int_equal(vx_detector_class_count(det), 3);
    assert_string_equal(vx_detector_class_name(det, 2), "class2");
    vx_detector_destroy(det);
}

static void test_reject_models(void **state)
{
    (void)state;
    fake_nanodet_tfjs(80);
    create_fails("missing-model.json", "No such file");

    fake_nanodet_tfjs(80);
    fake.input.dims[3] = 320;
    create_fails("wide-input.json", "[1,3,416,320]");

    fake_nanodet_tfjs(80);
    fake.ninputs = 2;
    create_fails("two-inputs.json", "2 inputs");

    fake_nanodet_tfjs(80);
    fake.noutputs = 5; /* the stride-32 class head has no box head */
    create_fails("unpaired.json", "not a NanoDet");

    fake_nanodet_tfjs(80);
    fake.outputs[1].dims[1] = 2703;
    fake.outputs[3].dims[1] = 2703;
    create_fails("not-square.json", "2703 cells");

    fake_nanodet_tfjs(80);
    fake.outputs[2].dims[2] = 81;
    create_fails("class-mismatch.json", "class count");

    fake_nanodet_tfjs(80);
    fake.outputs[4].rank = 2;
    create_fails("rank.json", "expected [1,N,C]");

    fake_nanodet_tfjs(80);
    vx_detect_opts bad = {2.0f, 0.5f, 30};
    vx_detector *det;
    assert_int_equal(vx_detector_create("fake.json", NULL, &bad, &det), VX_ERR_INVALID);
    assert_int_equal(fake.live_models, 0);
}

/* ---- preprocessing ---- */

static void nan_fill(void)
{
    size_t n = fake_numel(&fake.input);
    for (size_t i = 0; i < n; i++)
        fake.in[i] = NAN;
}

static float norm(int pixel, int bgr_channel)
{
    static const float mean[3] = {103.53f, 116.28f, 123.675f}, std[3] = {57.375f, 57.12f, 58.395f};
    return ((float)pixel - mean[bgr_channel]) / std[bgr_channel];
}

static float at(int c, int y, int x)
{
    return fake.in[((size_t)c * 416 + (size_t)y) * 416 + (size_t)x];
}

static void assert_no_nan(void)
{
    size_t n = fake_numel(&fake.input);
    for (size_t i = 0; i < n; i++)
        if (isnan(fake.in[i]))
            fail_msg("input element %zu was not written", i);
}

/* Checks a canvas point against an RGB colour, within `tol` pixel levels. */
static void assert_rgb_at(int y, int x, int r, int g, int b, float tol)
{
    const int rgb[3] = {r, g, b};
    for (int c = 0; c < 3; c++) {
        float want = norm(rgb[2 - c], c), got = at(c, y, x);
        if (!(fabsf(got - want) <= tol / 57.0f))
            fail_msg("canvas (%d,%d) plane %d is %f, expected %f", y, x, c, (double)got, (double)want);
    }
}

static void test_preprocess_rgb_letterbox(void **state)
{
    (void)state;
    fake_nanodet_tfjs(80);
    vx_detector *det = create_ok();
    /* 8x4, solid (10, 20, 30): scaled to 416x208, rows 104..311. */
    uint8_t px[8 * 4 * 3];
    for (int i = 0; i < 8 * 4; i++)
        px[i * 3] = 10, px[i * 3 + 1] = 20, px[i * 3 + 2] = 30;
    vx_image img = {8, 4, VX_PIX_RGB24, {px, NULL, NULL}, {24, 0, 0}};
    nan_fill();
    assert_int_equal(vx_detector_preprocess(det, &img), VX_OK);
    assert_no_nan();
    /* Plane 0 is blue, 2 is red: BGR, as NanoDet was trained. */
    assert_rgb_at(104, 0, 10, 20, 30, 0.01f);
    assert_rgb_at(200, 208, 10, 20, 30, 0.01f);
    assert_rgb_at(311, 415, 10, 20, 30, 0.01f);
    assert_rgb_at(103, 200, 0, 0, 0, 0);
    assert_rgb_at(0, 0, 0, 0, 0, 0);
    assert_rgb_at(312, 10, 0, 0, 0, 0);
    assert_rgb_at(415, 415, 0, 0, 0, 0);
    assert_true(at(0, 0, 0) < -1.8f); /* black after normalisation, not 0 */

    /* Same pixels as BGR24 give the same tensor. */
    for (int i = 0; i < 8 * 4; i++)
        px[i * 3] = 30, px[i * 3 + 2] = 10;
    img.format = VX_PIX_BGR24;
    nan_fill();
    assert_int_equal(vx_detector_preprocess(det, &img), VX_OK);
    assert_no_nan();
    assert_rgb_at(200, 208, 10, 20, 30, 0.01f);

    /* A tall image next: the cached scaler is rebuilt, padding moves to
     * the sides (columns 0..103 and 312..415). */
    uint8_t tall[4 * 8 * 3];
    for (int i = 0; i < 4 * 8; i++)
        tall[i * 3] = 200, tall[i * 3 + 1] = 100, tall[i * 3 + 2] = 50;
    vx_image timg = {4, 8, VX_PIX_RGB24, {tall, NULL, NULL}, {12, 0, 0}};
    nan_fill();
    assert_int_equal(vx_detector_preprocess(det, &timg), VX_OK);
    assert_no_nan();
    assert_rgb_at(0, 104, 200, 100, 50, 0.01f);
    assert_rgb_at(415, 311, 200, 100, 50, 0.01f);
    assert_rgb_at(200, 103, 0, 0, 0, 0);
    assert_rgb_at(200, 312, 0, 0, 0, 0);
    vx_detector_destroy(det);
}

/* Left half black, right half white: the edge lands in the middle of the
 * canvas, not mirrored or shifted. */
static void test_preprocess_orientation(void **state)
{
    (void)state;
    fake_nanodet_tfjs(80);
    vx_detector *det = create_ok();
    enum { W = 64, H = 64 };
    uint8_t *px = calloc(W * H * 3, 1);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            if (x >= W / 2 && y >= H / 2)
                memset(px + (y * W + x) * 3, 255, 3);
    vx_image img = {W, H, VX_PIX_RGB24, {px, NULL, NULL}, {W * 3, 0, 0}};
    assert_int_equal(vx_detector_preprocess(det, &img), VX_OK);
    assert_rgb_at(10, 10, 0, 0, 0, 0.5f);
    assert_rgb_at(10, 400, 0, 0, 0, 0.5f);
    assert_rgb_at(400, 10, 0, 0, 0, 0.5f);
    assert_rgb_at(400, 400, 255, 255, 255, 0.5f);
    free(px);
    vx_detector_destroy(det);
}

static void test_preprocess_yuv(void **state)
{
    (void)state;
    fake_nanodet_tfjs(80);
    vx_detector *det = create_ok();
    /* Limited-range mid grey: Y 128, U = V = 128 is RGB 130. */
    enum { W = 31, H = 17 }; /* odd: chroma planes are (W+1)/2 wide */
    uint8_t y[W * H], u[16 * 9], v[16 * 9], uv[32 * 9];
    memset(y, 128, sizeof y);
    memset(u, 128, sizeof u);
    memset(v, 128, sizeof v);
    memset(uv, 128, sizeof uv);
    vx_image yuv = {W, H, VX_PIX_YUV420P, {y, u, v}, {W, 16, 16}};
    nan_fill();
    assert_int_equal(vx_detector_preprocess(det, &yuv), VX_OK);
    assert_no_nan();
    assert_rgb_at(208, 208, 130, 130, 130, 2.0f);
    vx_image nv12 = {W, H, VX_PIX_NV12, {y, uv, NULL}, {W, 32, 0}};
    nan_fill();
    assert_int_equal(vx_detector_preprocess(det, &nv12), VX_OK);
    assert_no_nan();
    assert_rgb_at(208, 208, 130, 130, 130, 2.0f);
    vx_detector_destroy(det);
}

static void test_preprocess_nhwc(void **state)
{
    (void)state;
    fake_nanodet_tfjs(80);
    fake.input.dims[1] = 416, fake.input.dims[2] = 416, fake.input.dims[3] = 3;
    vx_detector *det = create_ok();
    uint8_t px[2 * 2 * 3];
    for (int i = 0; i < 4; i++)
        px[i * 3] = 10, px[i * 3 + 1] = 20, px[i * 3 + 2] = 30;
    vx_image img = {2, 1, VX_PIX_RGB24, {px, NULL, NULL}, {6, 0, 0}};
    nan_fill();
    assert_int_equal(vx_detector_preprocess(det, &img), VX_OK);
    assert_no_nan();
    const float *p = fake.in + ((size_t)208 * 416 + 100) * 3; /* inside rows 104..311 */
    assert_true(fabsf(p[0] - norm(30, 0)) < 1e-3f);
    assert_true(fabsf(p[1] - norm(20, 1)) < 1e-3f);
    assert_true(fabsf(p[2] - norm(10, 2)) < 1e-3f);
    p = fake.in + ((size_t)10 * 416 + 100) * 3;
    assert_true(fabsf(p[0] - norm(0, 0)) < 1e-6f);
    vx_detector_destroy(det);
}

static void test_preprocess_rejects(void **state)
{
    (void)state;
    fake_nanodet_tfjs(80);
    vx_detector *det = create_ok();
    uint8_t px[16 * 3];
    vx_image ok = {4, 4, VX_PIX_RGB24, {px, NULL, NULL}, {12, 0, 0}};
    vx_image bad = ok;
    bad.width = 0;
    assert_int_equal(vx_detector_preprocess(det, &bad), VX_ERR_INVALID);
    bad = ok;
    bad.strides[0] = 11;
    assert_int_equal(vx_detector_preprocess(det, &bad), VX_ERR_INVALID);
    bad = ok;
    bad.planes[0] = NULL;
    assert_int_equal(vx_detector_preprocess(det, &bad), VX_ERR_INVALID);
    bad = ok;
    bad.format = (vx_pixfmt)42;
    assert_int_equal(vx_detector_preprocess(det, &bad), VX_ERR_INVALID);
    bad = ok;
    bad.format = VX_PIX_YUV420P; /* needs three planes */
    assert_int_equal(vx_detector_preprocess(det, &bad), VX_ERR_INVALID);
    uint8_t y[5 * 3], u[3 * 2], v[3 * 2];
    vx_image yuv = {5, 3, VX_PIX_YUV420P, {y, u, v}, {5, 3, 3}};
    memset(y, 0, sizeof y), memset(u, 128, sizeof u), memset(v, 128, sizeof v);
    assert_int_equal(vx_detector_preprocess(det, &yuv), VX_OK);
    yuv.strides[2] = 2; /* chroma rows of an odd width round up */
    assert_int_equal(vx_detector_preprocess(det, &yuv), VX_ERR_INVALID);
    uint8_t uv[6 * 2];
    memset(uv, 128, sizeof uv);
    vx_image nv12 = {5, 3, VX_PIX_NV12, {y, uv, NULL}, {5, 6, 0}};
    assert_int_equal(vx_detector_preprocess(det, &nv12), VX_OK);
    nv12.strides[1] = 5;
    assert_int_equal(vx_detector_preprocess(det, &nv12), VX_ERR_INVALID);
    assert_int_equal(vx_detector_preprocess(det, NULL), VX_ERR_INVALID);

    /* Nothing to post-process before a successful preprocess. */
    vx_detection out[4];
    int n = -1;
    assert_int_equal(vx_detector_postprocess(det, out, 4, &n), VX_ERR_INVALID);
    assert_int_equal(n, 0);
    assert_int_equal(vx_detector_infer(det), VX_ERR_INVALID);
    vx_detector_destroy(det);
}

/* ---- the whole chain ---- */

static void set_cell(int stride, int row, int col, int cls, float score, int l, int t, int r, int b)
{
    int grid = 416 / stride;
    float *c = fake.out[find_output((int64_t)grid * grid, 80)];
    float *reg = fake.out[find_output((int64_t)grid * grid, 44)];
    int i = row * grid + col;
    c[i * 80 + cls] = score;
    const int bins[4] = {l, t, r, b};
    for (int s = 0; s < 4; s++)
        for (int k = 0; k <= 10; k++)
            reg[i * 44 + s * 11 + k] = k == bins[s] ? 50.0f : 0.0f;
}

static void test_run_maps_back(void **state)
{
    (void)state;
    fake_nanodet_tfjs(80);
    vx_detector *det = create_ok();
    /* Stride 16, row 10, col 5: centre (88, 168); distances 2,3,4,1 bins
     * -> canvas box [56, 120, 152, 184].  An 832x416 image is scaled by
     * 0.5 into rows 104..311, so the box is [112, 32, 304, 160]. */
    set_cell(16, 10, 5, 16, 0.8f, 2, 3, 4, 1);
    /* A weaker box for a second class elsewhere, and one below threshold. */
    set_cell(8, 30, 30, 1, 0.5f, 1, 1, 1, 1);
    set_cell(32, 6, 6, 2, 0.2f, 1, 1, 1, 1);

    uint8_t *px = calloc(832 * 416 * 3, 1);
    vx_image img = {832, 416, VX_PIX_RGB24, {px, NULL, NULL}, {832 * 3, 0, 0}};
    vx_detection out[8];
    int n = -1;
    assert_int_equal(vx_detector_run(det, &img, out, 8, &n), VX_OK);
    assert_int_equal(fake.runs, 1);
    assert_int_equal(n, 2);
    assert_int_equal(out[0].cls, 16);
    assert_true(fabsf(out[0].conf - 0.8f) < 1e-6f);
    assert_true(fabsf(out[0].x1 - 112) < 0.01f);
    assert_true(fabsf(out[0].y1 - 32) < 0.01f);
    assert_true(fabsf(out[0].x2 - 304) < 0.01f);
    assert_true(fabsf(out[0].y2 - 160) < 0.01f);
    assert_int_equal(out[1].cls, 1);
    /* Stride 8, row 30, col 30: centre (244, 244), +-8 -> [236, 252] in
     * the canvas -> x [472, 504], y [264, 296]. */
    assert_true(fabsf(out[1].x1 - 472) < 0.01f);
    assert_true(fabsf(out[1].y1 - 264) < 0.01f);
    assert_true(fabsf(out[1].x2 - 504) < 0.01f);
    assert_true(fabsf(out[1].y2 - 296) < 0.01f);

    /* cap below the count keeps the best. */
    assert_int_equal(vx_detector_run(det, &img, out, 1, &n), VX_OK);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].cls, 16);

    /* Thresholds changed between frames. */
    vx_detect_opts o;
    vx_detector_get_opts(det, &o);
    o.conf_threshold = 0.1f;
    assert_int_equal(vx_detector_set_opts(det, &o), VX_OK);
    assert_int_equal(vx_detector_postprocess(det, out, 8, &n), VX_OK);
    assert_int_equal(n, 3);
    o.max_det = 2;
    assert_int_equal(vx_detector_set_opts(det, &o), VX_OK);
    assert_int_equal(vx_detector_postprocess(det, out, 8, &n), VX_OK);
    assert_int_equal(n, 2);
    o.nms_iou = 0;
    assert_int_equal(vx_detector_set_opts(det, &o), VX_ERR_INVALID);

    free(px);
    vx_detector_destroy(det);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recognise_tfjs_order),   cmocka_unit_test(test_recognise_other_classes),
        cmocka_unit_test(test_reject_models),          cmocka_unit_test(test_preprocess_rgb_letterbox),
        cmocka_unit_test(test_preprocess_orientation), cmocka_unit_test(test_preprocess_yuv),
        cmocka_unit_test(test_preprocess_nhwc),        cmocka_unit_test(test_preprocess_rejects),
        cmocka_unit_test(test_run_maps_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
