/*
 * Post-processing core without a network: IoU, class-aware NMS, NanoDet GFL
 * and YOLO decoding on hand-built head outputs, the letterbox geometry and
 * fill, and the option checks.
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

static vx_detection box(float x1, float y1, float x2, float y2, float conf, int cls)
{
    vx_detection d = {x1, y1, x2, y2, conf, cls};
    return d;
}

static void assert_near(double a, double b, double tol)
{
    if (!(fabs(a - b) <= tol))
        fail_msg("%.6f is not within %g of %.6f", a, tol, b);
}

/* ---- IoU ---- */

static void test_iou(void **state)
{
    (void)state;
    vx_detection a = box(0, 0, 10, 10, 1, 0);
    vx_detection same = a;
    vx_detection half = box(5, 0, 15, 10, 1, 0);
    vx_detection inside = box(0, 0, 5, 5, 1, 0);
    vx_detection apart = box(20, 20, 30, 30, 1, 0);
    vx_detection touching = box(10, 0, 20, 10, 1, 0);
    vx_detection empty = box(3, 3, 3, 8, 1, 0);
    vx_detection inverted = box(10, 10, 0, 0, 1, 0);

    assert_near(vx_box_iou(&a, &same), 1.0, 1e-6);
    assert_near(vx_box_iou(&a, &half), 50.0 / 150.0, 1e-6);
    assert_near(vx_box_iou(&half, &a), 50.0 / 150.0, 1e-6);
    assert_near(vx_box_iou(&a, &inside), 0.25, 1e-6);
    assert_near(vx_box_iou(&a, &apart), 0.0, 0);
    assert_near(vx_box_iou(&a, &touching), 0.0, 0);
    assert_near(vx_box_iou(&a, &empty), 0.0, 0);
    assert_near(vx_box_iou(&empty, &empty), 0.0, 0);
    assert_near(vx_box_iou(&a, &inverted), 0.0, 0);
}

/* ---- NMS ---- */

static void test_nms_class_aware(void **state)
{
    (void)state;
    /* Same box, different classes: both survive. */
    vx_detection d[2] = {box(0, 0, 10, 10, 0.6f, 16), box(0, 0, 10, 10, 0.9f, 17)};
    int n = vx_nms(d, 2, 0.5f, 30);
    assert_int_equal(n, 2);
    assert_int_equal(d[0].cls, 17);
    assert_int_equal(d[1].cls, 16);

    /* Same class, heavy overlap: only the stronger one. */
    vx_detection e[3] = {box(0, 0, 10, 10, 0.6f, 3), box(1, 0, 11, 10, 0.8f, 3),
                         box(50, 50, 60, 60, 0.7f, 3)};
    n = vx_nms(e, 3, 0.5f, 30);
    assert_int_equal(n, 2);
    assert_near(e[0].conf, 0.8, 1e-6);
    assert_near(e[0].x1, 1.0, 0);
    assert_near(e[1].conf, 0.7, 1e-6);
}

static void test_nms_threshold(void **state)
{
    (void)state;
    /* IoU 1/3: kept at threshold 0.5, suppressed at 0.3. */
    vx_detection d[2] = {box(0, 0, 10, 10, 0.9f, 0), box(5, 0, 15, 10, 0.8f, 0)};
    assert_int_equal(vx_nms(d, 2, 0.5f, 30), 2);
    vx_detection e[2] = {box(0, 0, 10, 10, 0.9f, 0), box(5, 0, 15, 10, 0.8f, 0)};
    assert_int_equal(vx_nms(e, 2, 0.3f, 30), 1);
    assert_near(e[0].conf, 0.9, 1e-6);
    /* IoU exactly at the threshold is not "over" it: kept, as in NanoDet. */
    vx_detection f[2] = {box(0, 0, 10, 10, 0.9f, 0), box(0, 0, 10, 20, 0.8f, 0)};
    assert_int_equal(vx_nms(f, 2, 0.5f, 30), 2);
    assert_int_equal(vx_nms(f, 2, 0.49f, 30), 1);
}

static void test_nms_sort_and_cap(void **state)
{
    (void)state;
    const float confs[10] = {0.3f, 0.9f, 0.1f, 0.5f, 0.7f, 0.2f, 0.8f, 0.4f, 0.6f, 0.95f};
    vx_detection d[10];
    for (int i = 0; i < 10; i++)
        d[i] = box(i * 20.0f, 0, i * 20.0f + 10, 10, confs[i], i % 3);

    vx_detection all[10];
    memcpy(all, d, sizeof d);
    int n = vx_nms(all, 10, 0.5f, 30);
    assert_int_equal(n, 10);
    for (int i = 1; i < n; i++)
        assert_true(all[i - 1].conf >= all[i].conf);

    n = vx_nms(d, 10, 0.5f, 3);
    assert_int_equal(n, 3);
    assert_near(d[0].conf, 0.95, 1e-6);
    assert_near(d[1].conf, 0.9, 1e-6);
    assert_near(d[2].conf, 0.8, 1e-6);
    assert_near(d[2].x1, 120.0, 0); /* the box that carried 0.8 */

    assert_int_equal(vx_nms(d, 0, 0.5f, 3), 0);
}

/* The cap counts kept boxes, not candidates: suppressed ones don't use it. */
static void test_nms_cap_after_suppression(void **state)
{
    (void)state;
    vx_detection d[4] = {box(0, 0, 10, 10, 0.9f, 0), box(0, 0, 10, 10, 0.8f, 0), box(0, 0, 10, 10, 0.7f, 0),
                         box(40, 40, 50, 50, 0.6f, 0)};
    assert_int_equal(vx_nms(d, 4, 0.5f, 2), 2);
    assert_near(d[1].conf, 0.6, 1e-6);
}

/* ---- GFL decoding ---- */

static void one_hot(float *logits, int bin)
{
    for (int i = 0; i <= VX_NANODET_REG_MAX; i++)
        logits[i] = i == bin ? 60.0f : 0.0f;
}

static void test_gfl_distance(void **state)
{
    (void)state;
    float l[11];
    for (int k = 0; k <= VX_NANODET_REG_MAX; k++) {
        one_hot(l, k);
        assert_near(vx_gfl_distance(l, 16), 16.0 * k, 1e-3);
    }
    /* Uniform: expectation of 0..10 is 5. */
    for (int i = 0; i < 11; i++)
        l[i] = 3.0f;
    assert_near(vx_gfl_distance(l, 8), 40.0, 1e-3);
    /* Half on bin 2, half on bin 4: 3 bins. */
    for (int i = 0; i < 11; i++)
        l[i] = -50.0f;
    l[2] = l[4] = 7.0f;
    assert_near(vx_gfl_distance(l, 32), 96.0, 1e-3);
    /* Large logits must not overflow, wherever the largest is. */
    for (int i = 0; i < 11; i++)
        l[i] = 1000.0f;
    assert_near(vx_gfl_distance(l, 8), 40.0, 1e-3);
    for (int i = 0; i < 11; i++)
        l[i] = -5.0f;
    l[0] = 1000.0f;
    assert_near(vx_gfl_distance(l, 8), 0.0, 1e-3);
    l[0] = -5.0f;
    l[10] = 1000.0f;
    assert_near(vx_gfl_distance(l, 8), 80.0, 1e-3);
}

/* A 64x64 network with strides 8/16/32 and 3 classes. */
typedef struct {
    float cls[3][64 * 3];
    float reg[3][64 * VX_NANODET_REG_CH];
    vx_nanodet_level lv[3];
} synth;

static void synth_init(synth *s)
{
    memset(s, 0, sizeof *s);
    const int strides[3] = {8, 16, 32};
    for (int l = 0; l < 3; l++) {
        s->lv[l].cls = s->cls[l];
        s->lv[l].reg = s->reg[l];
        s->lv[l].stride = strides[l];
        s->lv[l].grid = 64 / strides[l];
    }
}

static void synth_cell(synth *s, int level, int row, int col, const float scores[3], int l, int t, int r,
                       int b)
{
    int i = row * s->lv[level].grid + col;
    memcpy(&s->cls[level][i * 3], scores, 3 * sizeof(float));
    float *reg = &s->reg[level][i * VX_NANODET_REG_CH];
    one_hot(reg, l);
    one_hot(reg + 11, t);
    one_hot(reg + 22, r);
    one_hot(reg + 33, b);
}

static void test_decode_one_cell(void **state)
{
    (void)state;
    synth *s = malloc(sizeof *s);
    synth_init(s);
    /* Stride 16, row 2, col 1: centre (24, 40).  Class 2 at 0.9 and class 0
     * at 0.5: the same box twice (NanoDet's multi-label output). */
    const float scores[3] = {0.5f, 0.1f, 0.9f};
    synth_cell(s, 1, 2, 1, scores, 1, 2, 1, 0);
    vx_scored_cell cells[64];
    vx_detection out[3 * VX_NANODET_TOPK];

    int n = vx_nanodet_decode(s->lv, 3, 3, 64, 0.35f, cells, out);
    assert_int_equal(n, 2);
    n = vx_nms(out, n, 0.5f, 30);
    assert_int_equal(n, 2);
    assert_int_equal(out[0].cls, 2);
    assert_near(out[0].conf, 0.9, 1e-6);
    assert_near(out[0].x1, 24 - 16, 1e-3);
    assert_near(out[0].y1, 40 - 32, 1e-3);
    assert_near(out[0].x2, 24 + 16, 1e-3);
    assert_near(out[0].y2, 40 + 0, 1e-3);
    assert_int_equal(out[1].cls, 0);
    assert_near(out[1].conf, 0.5, 1e-6);
    assert_near(out[1].x1, out[0].x1, 0);

    /* Threshold between the two scores: one candidate; >= is inclusive. */
    assert_int_equal(vx_nanodet_decode(s->lv, 3, 3, 64, 0.6f, cells, out), 1);
    assert_int_equal(out[0].cls, 2);
    assert_int_equal(vx_nanodet_decode(s->lv, 3, 3, 64, 0.9f, cells, out), 1);
    assert_int_equal(vx_nanodet_decode(s->lv, 3, 3, 64, 0.95f, cells, out), 0);
    free(s);
}

static void test_decode_centres_and_clip(void **state)
{
    (void)state;
    synth *s = malloc(sizeof *s);
    synth_init(s);
    const float scores[3] = {0.0f, 0.8f, 0.0f};
    /* Stride 8, row 0, col 0, all distances 0: a point box at (4, 4), the
     * +0.5 cell centre. */
    synth_cell(s, 0, 0, 0, scores, 0, 0, 0, 0);
    /* Stride 32, row 1, col 1: centre (48, 48), distances 10 bins = 320 px,
     * clipped to the 64x64 canvas. */
    const float scores2[3] = {0.0f, 0.0f, 0.7f};
    synth_cell(s, 2, 1, 1, scores2, 10, 10, 10, 10);
    vx_scored_cell cells[64];
    vx_detection out[3 * VX_NANODET_TOPK];
    int n = vx_nanodet_decode(s->lv, 3, 3, 64, 0.35f, cells, out);
    assert_int_equal(n, 2);
    n = vx_nms(out, n, 0.5f, 30);
    assert_int_equal(n, 2);
    assert_int_equal(out[0].cls, 1);
    assert_near(out[0].x1, 4.0, 1e-3);
    assert_near(out[0].y1, 4.0, 1e-3);
    assert_near(out[0].x2, 4.0, 1e-3);
    assert_near(out[0].y2, 4.0, 1e-3);
    assert_int_equal(out[1].cls, 2);
    assert_near(out[1].x1, 0.0, 0);
    assert_near(out[1].y1, 0.0, 0);
    assert_near(out[1].x2, 64.0, 0);
    assert_near(out[1].y2, 64.0, 0);
    free(s);
}

/* Row-major grid: index = row * grid + col, so a cell in row 3, col 0 of
 * the stride-8 level is centred at x 4, y 28 (not transposed). */
static void test_decode_row_major(void **state)
{
    (void)state;
    synth *s = malloc(sizeof *s);
    synth_init(s);
    const float scores[3] = {0.9f, 0.0f, 0.0f};
    synth_cell(s, 0, 3, 0, scores, 0, 0, 1, 1);
    vx_scored_cell cells[64];
    vx_detection out[3 * VX_NANODET_TOPK];
    assert_int_equal(vx_nanodet_decode(s->lv, 3, 3, 64, 0.35f, cells, out), 1);
    assert_near(out[0].x1, 4.0, 1e-3);
    assert_near(out[0].y1, 28.0, 1e-3);
    assert_near(out[0].x2, 12.0, 1e-3);
    assert_near(out[0].y2, 36.0, 1e-3);
    free(s);
}

/* More cells than the top-k pass: the best VX_NANODET_TOPK are kept, and
 * with two classes per cell the (cell, class) cap holds too. */
static void test_decode_topk(void **state)
{
    (void)state;
    enum { GRID = 40, CELLS = GRID * GRID, CLASSES = 2 };
    float *cls = calloc(CELLS * CLASSES, sizeof(float));
    float *reg = calloc(CELLS * VX_NANODET_REG_CH, sizeof(float));
    /* Distinct scores in a scrambled order; the scoring class alternates. */
    for (int i = 0; i < CELLS; i++)
        cls[i * CLASSES + (i & 1)] = (float)((i * 7919) % CELLS) / CELLS;
    vx_nanodet_level lv = {cls, reg, 8, GRID};
    vx_scored_cell *cells = malloc(sizeof *cells * CELLS);
    vx_detection *out = malloc(sizeof *out * VX_NANODET_TOPK);
    int n = vx_nanodet_decode(&lv, 1, CLASSES, GRID * 8, 0.0f, cells, out);
    /* Threshold 0: the zero scores of the other class count as well, but
     * the cap holds. */
    assert_int_equal(n, VX_NANODET_TOPK);
    /* Exactly the ranks 600..1599, each once, each with its cell's class
     * and box. */
    char *seen = calloc(CELLS, 1);
    for (int i = 0; i < n; i++) {
        long rank = lroundf(out[i].conf * CELLS);
        if (rank < CELLS - VX_NANODET_TOPK || rank >= CELLS)
            fail_msg("kept score %f is not among the best %d", (double)out[i].conf, VX_NANODET_TOPK);
        assert_int_equal(seen[rank], 0);
        seen[rank] = 1;
        int cell = -1;
        for (int c = 0; c < CELLS; c++)
            if ((c * 7919) % CELLS == rank)
                cell = c;
        assert_int_equal(out[i].cls, cell & 1);
        /* All logits 0: 5 bins (40 px) each side, clipped to the canvas. */
        assert_near(out[i].x1, fmax(0, (cell % GRID + 0.5) * 8 - 40), 1e-3);
        assert_near(out[i].y2, fmin(GRID * 8, (cell / GRID + 0.5) * 8 + 40), 1e-3);
    }
    free(seen);

    /* With a threshold above most scores, everything above it is kept. */
    n = vx_nanodet_decode(&lv, 1, CLASSES, GRID * 8, 0.9f, cells, out);
    int expect = 0;
    for (int i = 0; i < CELLS * CLASSES; i++)
        expect += cls[i] >= 0.9f;
    assert_int_equal(n, expect);
    free(cls);
    free(reg);
    free(cells);
    free(out);
}

/* Fewer cells than the top-k but more (cell, class) pairs, arriving in a
 * scrambled order: exactly the VX_NANODET_TOPK best pairs are kept. */
static void test_decode_topk_pairs(void **state)
{
    (void)state;
    enum { GRID = 30, CELLS = GRID * GRID, CLASSES = 3, PAIRS = CELLS * CLASSES };
    float *cls = malloc(sizeof(float) * PAIRS);
    float *reg = calloc(CELLS * VX_NANODET_REG_CH, sizeof(float));
    for (int i = 0; i < PAIRS; i++)
        cls[i] = (float)((i * 7919) % PAIRS) / PAIRS;
    vx_nanodet_level lv = {cls, reg, 8, GRID};
    vx_scored_cell *cells = malloc(sizeof *cells * CELLS);
    vx_detection *out = malloc(sizeof *out * VX_NANODET_TOPK);
    int n = vx_nanodet_decode(&lv, 1, CLASSES, GRID * 8, 0.0f, cells, out);
    assert_int_equal(n, VX_NANODET_TOPK);
    /* The kept ones are the ranks PAIRS-1000 .. PAIRS-1, each once. */
    char *seen = calloc(VX_NANODET_TOPK, 1);
    for (int i = 0; i < n; i++) {
        long rank = lroundf(out[i].conf * PAIRS) - (PAIRS - VX_NANODET_TOPK);
        if (rank < 0 || rank >= VX_NANODET_TOPK) {
            fail_msg("kept score %f is not among the best %d", (double)out[i].conf, VX_NANODET_TOPK);
            continue; /* fail_msg does not return; this tells the compiler */
        }
        assert_int_equal(seen[rank], 0);
        seen[rank] = 1;
    }
    free(seen);
    free(cls);
    free(reg);
    free(cells);
    free(out);
}

/* NaN scores never pass; NaN distances are clipped, not propagated. */
static void test_decode_nan(void **state)
{
    (void)state;
    synth *s = malloc(sizeof *s);
    synth_init(s);
    const float nan_scores[3] = {NAN, NAN, NAN};
    synth_cell(s, 0, 1, 1, nan_scores, 0, 0, 0, 0);
    const float scores[3] = {0.8f, 0.0f, 0.0f};
    synth_cell(s, 0, 2, 2, scores, 1, 1, 1, 1);
    s->reg[0][(2 * 8 + 2) * VX_NANODET_REG_CH] = NAN;
    vx_scored_cell cells[64];
    vx_detection out[3 * VX_NANODET_TOPK];
    assert_int_equal(vx_nanodet_decode(s->lv, 3, 3, 64, 0.35f, cells, out), 1);
    assert_false(isnan(out[0].x1));
    assert_true(out[0].x1 >= 0 && out[0].x1 <= 64);
    free(s);
}

/* ---- YOLO decoding ---- */

/* Lays logical boxes [box][channel] out as the model would: channels
 * first ([1, C, N], YOLOv8's own) or boxes first ([1, N, C]). */
static float *yolo_layout(const float *boxes, int n, int c, int channels_first)
{
    float *t = malloc(sizeof(float) * (size_t)n * (size_t)c);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < c; k++)
            t[channels_first ? (size_t)k * n + i : (size_t)i * c + k] = boxes[i * c + k];
    return t;
}

static int yolo_run(const float *boxes, int n, int nc, int objectness, int channels_first, float conf,
                    vx_detection *out)
{
    int c = nc + (objectness ? 5 : 4);
    float *t = yolo_layout(boxes, n, c, channels_first);
    vx_yolo_output o = {t, n, nc, objectness, channels_first ? 1 : (size_t)c, channels_first ? (size_t)n : 1};
    vx_scored_cell scratch[16];
    assert_true(n <= 16);
    int k = vx_yolo_decode(&o, conf, scratch, out);
    free(t);
    return k;
}

static void assert_det(const vx_detection *d, float x1, float y1, float x2, float y2, float conf, int cls)
{
    if (d->cls != cls || fabsf(d->conf - conf) > 1e-6f || fabsf(d->x1 - x1) > 1e-4f ||
        fabsf(d->y1 - y1) > 1e-4f || fabsf(d->x2 - x2) > 1e-4f || fabsf(d->y2 - y2) > 1e-4f)
        fail_msg("got class %d %.4f [%.2f %.2f %.2f %.2f], expected class %d %.4f [%.2f %.2f %.2f %.2f]",
                 d->cls, (double)d->conf, (double)d->x1, (double)d->y1, (double)d->x2, (double)d->y2, cls,
                 (double)conf, (double)x1, (double)y1, (double)x2, (double)y2);
}

static void test_yolov8_decode(void **state)
{
    (void)state;
    /* cx, cy, w, h, then three class scores. */
    const float boxes[7 * 7] = {
        50,  60, 20, 10, 0.1f,  0.9f,  0.5f, /* class 1 only, though class 2 passes too */
        10,  10, 4,  4,  0.2f,  0.2f,  0.2f, /* under the threshold */
        30,  30, 8,  6,  0.35f, 0,     0,    /* exactly on it: kept */
        70,  20, 10, 10, 0.6f,  0.6f,  0.1f, /* a tie goes to the first class */
        5,   5,  2,  2,  0.1f,  NAN,   0.8f, /* a NaN score loses to any number */
        5,   5,  2,  2,  NAN,   0.1f,  0.2f, /* the same: 0.2 is its best score */
        100, 80, 30, 40, 0.01f, 0.02f, 1.0f,
    };
    for (int cf = 0; cf <= 1; cf++) {
        vx_detection d[7];
        int n = yolo_run(boxes, 7, 3, 0, cf, 0.35f, d);
        assert_int_equal(n, 5);
        assert_det(&d[0], 40, 55, 60, 65, 0.9f, 1);
        assert_det(&d[1], 26, 27, 34, 33, 0.35f, 0);
        assert_det(&d[2], 65, 15, 75, 25, 0.6f, 0);
        assert_det(&d[3], 4, 4, 6, 6, 0.8f, 2);
        assert_det(&d[4], 85, 60, 115, 100, 1.0f, 2);
        /* Threshold 0 keeps every box. */
        assert_int_equal(yolo_run(boxes, 7, 3, 0, cf, 0.0f, d), 7);
        assert_det(&d[5], 4, 4, 6, 6, 0.2f, 2);
    }
}

static void test_yolov5_decode(void **state)
{
    (void)state;
    /* cx, cy, w, h, objectness, two class scores. */
    const float boxes[4 * 7] = {
        100, 100, 50, 20, 0.8f, 0.9f, 0.5f, /* 0.72, class 0 */
        200, 200, 10, 10, 0.3f, 1.0f, 1.0f, /* objectness under the threshold */
        300, 300, 10, 10, 0.9f, 0.2f, 0.3f, /* 0.27 */
        400, 100, 20, 20, 1.0f, 0.1f, 0.4f, /* 0.4, class 1 */
    };
    for (int cf = 0; cf <= 1; cf++) {
        vx_detection d[4];
        int n = yolo_run(boxes, 4, 2, 1, cf, 0.35f, d);
        assert_int_equal(n, 2);
        assert_det(&d[0], 75, 90, 125, 110, 0.72f, 0);
        assert_det(&d[1], 390, 90, 410, 110, 0.4f, 1);
        n = yolo_run(boxes, 4, 2, 1, cf, 0.25f, d);
        assert_int_equal(n, 4);
        assert_det(&d[1], 195, 195, 205, 205, 0.3f, 0);
        assert_det(&d[2], 295, 295, 305, 305, 0.27f, 1);
    }
    vx_yolo_output none = {boxes, 0, 2, 1, 7, 1};
    assert_int_equal(vx_yolo_decode(&none, 0.0f, NULL, NULL), 0);
}

/* ---- letterbox ---- */

static void test_letterbox_geometry(void **state)
{
    (void)state;
    vx_letterbox lb;
    assert_int_equal(vx_letterbox_compute(640, 480, 416, 416, &lb), VX_OK);
    assert_int_equal(lb.width, 416);
    assert_int_equal(lb.height, 312);
    assert_int_equal(lb.off_x, 0);
    assert_int_equal(lb.off_y, 52);
    assert_near(lb.scale_x, 0.65, 1e-6);
    assert_near(lb.scale_y, 0.65, 1e-6);

    assert_int_equal(vx_letterbox_compute(300, 600, 416, 416, &lb), VX_OK);
    assert_int_equal(lb.width, 208);
    assert_int_equal(lb.height, 416);
    assert_int_equal(lb.off_x, 104);
    assert_int_equal(lb.off_y, 0);

    /* Upscaling a small image, and an extreme aspect ratio that keeps one
     * pixel. */
    assert_int_equal(vx_letterbox_compute(100, 50, 416, 416, &lb), VX_OK);
    assert_int_equal(lb.width, 416);
    assert_int_equal(lb.height, 208);
    assert_int_equal(lb.off_y, 104);
    assert_int_equal(vx_letterbox_compute(16384, 1, 416, 416, &lb), VX_OK);
    assert_int_equal(lb.height, 1);
    assert_int_equal(lb.off_y, 207);

    /* Rectangular canvases (YOLO imgsz [384, 640]): the limiting side
     * fills, the other is centred; an odd padding pixel goes right. */
    assert_int_equal(vx_letterbox_compute(1280, 720, 640, 384, &lb), VX_OK);
    assert_int_equal(lb.width, 640);
    assert_int_equal(lb.height, 360);
    assert_int_equal(lb.off_x, 0);
    assert_int_equal(lb.off_y, 12);
    assert_int_equal(vx_letterbox_compute(720, 1280, 640, 384, &lb), VX_OK);
    assert_int_equal(lb.width, 216);
    assert_int_equal(lb.height, 384);
    assert_int_equal(lb.off_x, 212);
    assert_int_equal(vx_letterbox_compute(100, 100, 641, 640, &lb), VX_OK);
    assert_int_equal(lb.width, 640);
    assert_int_equal(lb.off_x, 0);
    assert_int_equal(lb.dst_w, 641);

    assert_int_not_equal(vx_letterbox_compute(0, 10, 416, 416, &lb), VX_OK);
    assert_int_not_equal(vx_letterbox_compute(10, 10, 416, 0, &lb), VX_OK);
    assert_int_not_equal(vx_letterbox_compute(10, -1, 416, 416, &lb), VX_OK);
    assert_int_not_equal(vx_letterbox_compute(10, 10, 0, 0, &lb), VX_OK);
}

static void test_letterbox_round_trip(void **state)
{
    (void)state;
    const int sizes[3][2] = {{768, 576}, {500, 375}, {333, 777}};
    for (int k = 0; k < 3; k++) {
        vx_letterbox lb;
        assert_int_equal(vx_letterbox_compute(sizes[k][0], sizes[k][1], 416, 416, &lb), VX_OK);
        /* Forward: v * scale + offset, as the preprocessing places pixels. */
        float x1 = 131, y1 = 208, x2 = 0.4f * sizes[k][0], y2 = 0.9f * sizes[k][1];
        vx_detection d = box(x1 * lb.scale_x + lb.off_x, y1 * lb.scale_y + lb.off_y,
                             x2 * lb.scale_x + lb.off_x, y2 * lb.scale_y + lb.off_y, 0.5f, 0);
        assert_int_equal(vx_letterbox_unmap(&lb, &d, 1), 1);
        assert_near(d.x1, x1, 1e-3);
        assert_near(d.y1, y1, 1e-3);
        assert_near(d.x2, x2, 1e-3);
        assert_near(d.y2, y2, 1e-3);
    }
}

static void test_letterbox_unmap_clip(void **state)
{
    (void)state;
    vx_letterbox lb;
    assert_int_equal(vx_letterbox_compute(640, 480, 416, 416, &lb), VX_OK); /* image rows 52..364 */
    vx_detection d[3] = {
        box(10, 0, 100, 30, 0.9f, 0),   /* entirely in the top padding: dropped */
        box(-5, 40, 420, 400, 0.8f, 1), /* spills over every edge: clipped */
        box(0, 52, 416, 364, 0.7f, 2),  /* exactly the image */
    };
    int n = vx_letterbox_unmap(&lb, d, 3);
    assert_int_equal(n, 2);
    assert_int_equal(d[0].cls, 1);
    assert_near(d[0].x1, 0, 0);
    assert_near(d[0].y1, 0, 0);
    assert_near(d[0].x2, 640, 0);
    assert_near(d[0].y2, 480, 0);
    assert_int_equal(d[1].cls, 2);
    assert_near(d[1].x2, 640, 1e-3);
    assert_near(d[1].y2, 480, 1e-3);
}

static void test_letterbox_drop_padding(void **state)
{
    (void)state;
    vx_letterbox lb;
    assert_int_equal(vx_letterbox_compute(640, 480, 416, 416, &lb), VX_OK); /* image rows 52..364 */
    vx_detection d[5] = {
        box(10, 0, 100, 52, 0.9f, 0),    /* touches the image's top edge only: no area over it */
        box(10, 0, 100, 53, 0.8f, 1),    /* one row over it: kept */
        box(10, 364, 100, 400, 0.7f, 2), /* bottom padding */
        box(NAN, 100, 200, 200, 0.6f, 3),
        box(-50, 300, 5, 380, 0.5f, 4), /* over the bottom-left corner: kept */
    };
    int n = vx_letterbox_drop_padding(&lb, d, 5);
    assert_int_equal(n, 2);
    assert_int_equal(d[0].cls, 1);
    assert_int_equal(d[1].cls, 4);
}

/* ---- resize taps and the canvas ---- */

static void assert_tap(const vx_lerp_tap *t, int i0, int i1, float w1)
{
    if (t->i0 != i0 || t->i1 != i1 || fabsf(t->w1 - w1) > 1e-6f)
        fail_msg("tap {%d, %d, %f}, expected {%d, %d, %f}", t->i0, t->i1, (double)t->w1, i0, i1, (double)w1);
}

static void test_bilinear_taps(void **state)
{
    (void)state;
    vx_lerp_tap t[8];
    /* Halving: each output pixel is the mean of two source pixels. */
    vx_bilinear_taps(4, 2, t);
    assert_tap(&t[0], 0, 1, 0.5f);
    assert_tap(&t[1], 2, 3, 0.5f);
    /* Doubling: half-pixel centres, edges repeated. */
    vx_bilinear_taps(2, 4, t);
    assert_tap(&t[0], 0, 0, 0.0f);
    assert_tap(&t[1], 0, 1, 0.25f);
    assert_tap(&t[2], 0, 1, 0.75f);
    assert_tap(&t[3], 1, 1, 0.0f);
    /* Same size: a copy. */
    vx_bilinear_taps(3, 3, t);
    for (int i = 0; i < 3; i++)
        assert_tap(&t[i], i, i, 0.0f);
    vx_bilinear_taps(1, 5, t);
    for (int i = 0; i < 5; i++)
        assert_tap(&t[i], 0, 0, 0.0f);
    /* Shrinking by 768/416 samples two pixels, never a wider window. */
    vx_lerp_tap big[416];
    vx_bilinear_taps(768, 416, big);
    for (int i = 0; i < 416; i++) {
        assert_in_range(big[i].i0, 0, 767);
        assert_true(big[i].i1 == big[i].i0 || big[i].i1 == big[i].i0 + 1);
        assert_true(big[i].w1 >= 0 && big[i].w1 < 1);
    }
    assert_tap(&big[0], 0, 1, (float)(0.5 * 768 / 416 - 0.5));
}

/* B, G, R planes, with a distinct normalisation per plane so that a plane
 * written from the wrong colour, or normalised with another plane's
 * values, shows. */
static const vx_input_norm fill_norm = {0, {1, 2, 3}, {0.5f, 0.25f, 0.125f}, 0};

static float fill_expect(float v, int c)
{
    return (v - fill_norm.mean[c]) * fill_norm.inv_std[c];
}

/* A 4x2 RGB image onto a 4x4 canvas: rows 1 and 2, exact copies, planes
 * in B, G, R order, black (normalised) above and below. */
static void test_letterbox_fill_copy(void **state)
{
    (void)state;
    uint8_t px[2][4 * 3 + 4]; /* rows padded: stride 16 */
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 4; x++) {
            px[y][x * 3 + 0] = (uint8_t)(40 * x + 100 * y); /* R */
            px[y][x * 3 + 1] = 7;                           /* G */
            px[y][x * 3 + 2] = 200;                         /* B */
        }
    vx_letterbox lb;
    assert_int_equal(vx_letterbox_compute(4, 2, 4, 4, &lb), VX_OK);
    assert_int_equal(lb.off_y, 1);
    vx_lerp_tap xt[4], yt[4];
    vx_bilinear_taps(4, lb.width, xt);
    vx_bilinear_taps(2, lb.height, yt);
    vx_packed_src src = {&px[0][0], 16, 2, 1, 0};
    float dst[3 * 16];
    vx_letterbox_fill(&src, &lb, xt, yt, &fill_norm, 0, dst);
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) {
            int iy = y - 1, in = iy >= 0 && iy < 2;
            float b = in ? 200 : 0, g = in ? 7 : 0, r = in ? (float)(40 * x + 100 * iy) : 0;
            assert_near(dst[0 * 16 + y * 4 + x], fill_expect(b, 0), 1e-5);
            assert_near(dst[1 * 16 + y * 4 + x], fill_expect(g, 1), 1e-5);
            assert_near(dst[2 * 16 + y * 4 + x], fill_expect(r, 2), 1e-5);
        }

    /* The same pixels declared BGR swap the outer planes. */
    vx_packed_src bgr = {&px[0][0], 16, 0, 1, 2};
    vx_letterbox_fill(&bgr, &lb, xt, yt, &fill_norm, 0, dst);
    assert_near(dst[0 * 16 + 1 * 4 + 3], fill_expect(120, 0), 1e-5);
    assert_near(dst[2 * 16 + 1 * 4 + 3], fill_expect(200, 2), 1e-5);

    /* Interleaved layout: pixel (x 2, y 2) is image pixel (2, 1). */
    vx_letterbox_fill(&src, &lb, xt, yt, &fill_norm, 1, dst);
    const float *p = dst + (2 * 4 + 2) * 3;
    assert_near(p[0], fill_expect(200, 0), 1e-5);
    assert_near(p[1], fill_expect(7, 1), 1e-5);
    assert_near(p[2], fill_expect(180, 2), 1e-5);
    for (int c = 0; c < 3; c++) {
        assert_near(dst[c], fill_expect(0, c), 1e-5);                   /* top-left padding */
        assert_near(dst[(3 * 4 + 3) * 3 + c], fill_expect(0, c), 1e-5); /* bottom-right */
    }
}

/* Ultralytics' input: planes in R, G, B order, the border grey 114
 * normalised like the pixels, on a rectangular canvas. */
static void test_letterbox_fill_rgb_grey(void **state)
{
    (void)state;
    const vx_input_norm norm = {1, {1, 2, 3}, {0.5f, 0.25f, 0.125f}, 114};
    const uint8_t px[2 * 2 * 3] = {10, 20, 30, 10, 20, 30, 10, 20, 30, 10, 20, 30}; /* R, G, B */
    vx_letterbox lb;
    assert_int_equal(vx_letterbox_compute(2, 2, 6, 4, &lb), VX_OK); /* 4x4 at column 1 */
    assert_int_equal(lb.off_x, 1);
    vx_lerp_tap xt[4], yt[4];
    vx_bilinear_taps(2, lb.width, xt);
    vx_bilinear_taps(2, lb.height, yt);
    vx_packed_src src = {px, 6, 2, 1, 0};
    float dst[3 * 24];
    vx_letterbox_fill(&src, &lb, xt, yt, &norm, 0, dst);
    const float rgb[3] = {10, 20, 30};
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 6; x++) {
                float v = x >= 1 && x <= 4 ? rgb[c] : 114;
                assert_near(dst[c * 24 + y * 6 + x], (v - norm.mean[c]) * norm.inv_std[c], 1e-5);
            }
    vx_letterbox_fill(&src, &lb, xt, yt, &norm, 1, dst);
    assert_near(dst[(2 * 6 + 0) * 3 + 0], (114 - 1) * 0.5, 1e-5);
    assert_near(dst[(2 * 6 + 2) * 3 + 0], (10 - 1) * 0.5, 1e-5);
    assert_near(dst[(2 * 6 + 2) * 3 + 2], (30 - 3) * 0.125, 1e-5);

    /* The families' tables. */
    const vx_input_norm *y = vx_family_input_norm(VX_FAMILY_YOLOV8);
    assert_ptr_equal(y, vx_family_input_norm(VX_FAMILY_YOLOV5));
    assert_int_equal(y->rgb, 1);
    assert_near(y->pad, 114, 0);
    assert_near(y->mean[0], 0, 0);
    assert_near(y->inv_std[2], 1 / 255.0, 1e-9);
    const vx_input_norm *nd = vx_family_input_norm(VX_FAMILY_NANODET);
    assert_int_equal(nd->rgb, 0);
    assert_near(nd->pad, 0, 0);
    assert_near(nd->mean[0], 103.53, 1e-4);
    assert_near(nd->inv_std[2], 1 / 58.395, 1e-7);
}

/* Shrinking 4x4 to 2x2 averages 2x2 blocks: plain bilinear, no wider
 * (anti-aliasing) window that would mix in the neighbouring blocks. */
static void test_letterbox_fill_shrink(void **state)
{
    (void)state;
    uint8_t px[4 * 4 * 3];
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) {
            uint8_t *q = px + (y * 4 + x) * 3;
            q[0] = (uint8_t)(20 * x + 50 * y);
            q[1] = (uint8_t)(x == 3 ? 255 : 0); /* only the last column */
            q[2] = 0;
        }
    vx_letterbox lb;
    assert_int_equal(vx_letterbox_compute(4, 4, 2, 2, &lb), VX_OK);
    vx_lerp_tap xt[2], yt[2];
    vx_bilinear_taps(4, 2, xt);
    vx_bilinear_taps(4, 2, yt);
    vx_packed_src src = {px, 12, 2, 1, 0};
    float dst[3 * 4];
    vx_letterbox_fill(&src, &lb, xt, yt, &fill_norm, 0, dst);
    /* R plane: block means 35, 75 / 135, 175. */
    assert_near(dst[8 + 0], fill_expect(35, 2), 1e-4);
    assert_near(dst[8 + 1], fill_expect(75, 2), 1e-4);
    assert_near(dst[8 + 2], fill_expect(135, 2), 1e-4);
    assert_near(dst[8 + 3], fill_expect(175, 2), 1e-4);
    /* G plane: column 3 reaches the right blocks at half weight only, and
     * the left blocks not at all. */
    assert_near(dst[4 + 0], fill_expect(0, 1), 1e-4);
    assert_near(dst[4 + 1], fill_expect(127.5f, 1), 1e-4);
}

/* ---- options, names ---- */

static void test_opts(void **state)
{
    (void)state;
    vx_detect_opts o;
    vx_detect_opts_default(&o);
    assert_near(o.conf_threshold, 0.35, 1e-6);
    assert_near(o.nms_iou, 0.5, 1e-6);
    assert_int_equal(o.max_det, 30);
    assert_int_equal(vx_detect_opts_validate(&o), VX_OK);

    const float bad_conf[] = {-0.01f, 1.01f, NAN, INFINITY};
    for (size_t i = 0; i < sizeof bad_conf / sizeof *bad_conf; i++) {
        vx_detect_opts b = o;
        b.conf_threshold = bad_conf[i];
        assert_int_equal(vx_detect_opts_validate(&b), VX_ERR_INVALID);
        assert_non_null(strstr(vx_last_error(), "confidence"));
    }
    const float bad_iou[] = {0.0f, -0.5f, 1.5f, NAN};
    for (size_t i = 0; i < sizeof bad_iou / sizeof *bad_iou; i++) {
        vx_detect_opts b = o;
        b.nms_iou = bad_iou[i];
        assert_int_equal(vx_detect_opts_validate(&b), VX_ERR_INVALID);
        assert_non_null(strstr(vx_last_error(), "IoU"));
    }
    const int bad_max[] = {0, -1, 10001};
    for (size_t i = 0; i < sizeof bad_max / sizeof *bad_max; i++) {
        vx_detect_opts b = o;
        b.max_det = bad_max[i];
        assert_int_equal(vx_detect_opts_validate(&b), VX_ERR_INVALID);
    }
    vx_detect_opts edge = {0.0f, 1.0f, 1};
    assert_int_equal(vx_detect_opts_validate(&edge), VX_OK);
    edge = (vx_detect_opts){1.0f, 0.01f, 10000};
    assert_int_equal(vx_detect_opts_validate(&edge), VX_OK);
}

static void test_coco_names(void **state)
{
    (void)state;
    assert_string_equal(vx_coco80_names[0], "person");
    assert_string_equal(vx_coco80_names[1], "bicycle");
    assert_string_equal(vx_coco80_names[2], "car");
    assert_string_equal(vx_coco80_names[7], "truck");
    assert_string_equal(vx_coco80_names[16], "dog");
    assert_string_equal(vx_coco80_names[17], "horse");
    assert_string_equal(vx_coco80_names[19], "cow");
    assert_string_equal(vx_coco80_names[33], "kite");
    assert_string_equal(vx_coco80_names[79], "toothbrush");
    for (int i = 0; i < 80; i++)
        assert_non_null(vx_coco80_names[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iou),
        cmocka_unit_test(test_nms_class_aware),
        cmocka_unit_test(test_nms_threshold),
        cmocka_unit_test(test_nms_sort_and_cap),
        cmocka_unit_test(test_nms_cap_after_suppression),
        cmocka_unit_test(test_gfl_distance),
        cmocka_unit_test(test_decode_one_cell),
        cmocka_unit_test(test_decode_centres_and_clip),
        cmocka_unit_test(test_decode_row_major),
        cmocka_unit_test(test_decode_topk),
        cmocka_unit_test(test_decode_topk_pairs),
        cmocka_unit_test(test_decode_nan),
        cmocka_unit_test(test_yolov8_decode),
        cmocka_unit_test(test_yolov5_decode),
        cmocka_unit_test(test_letterbox_geometry),
        cmocka_unit_test(test_letterbox_drop_padding),
        cmocka_unit_test(test_letterbox_fill_rgb_grey),
        cmocka_unit_test(test_letterbox_round_trip),
        cmocka_unit_test(test_letterbox_unmap_clip),
        cmocka_unit_test(test_bilinear_taps),
        cmocka_unit_test(test_letterbox_fill_copy),
        cmocka_unit_test(test_letterbox_fill_shrink),
        cmocka_unit_test(test_opts),
        cmocka_unit_test(test_coco_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
