/*
 * The whole detector on real data: NanoDet-g from $VEROLUX_CACHE/models
 * (scripts/fetch-models) on darknet's sample images from
 * $VEROLUX_CACHE/samples (scripts/fetch-samples), against the reference
 * detections in NANODET.md.  Skipped when those files are absent.
 *
 * Unlike the other detect tests this one runs the real engine (cpu
 * backend).
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
#include <libswscale/swscale.h>

#include "detect/vx_detect.h"

static char cache[1024];
static vx_detector *det;

typedef struct {
    const char *cls;
    float conf;
    float box[4]; /* all zero: box not given in NANODET.md */
} expected;

static int path_in_cache(char *buf, size_t len, const char *rel)
{
    int n = snprintf(buf, len, "%s/%s", cache, rel);
    return n > 0 && (size_t)n < len && access(buf, R_OK) == 0;
}

static void run_file(const char *name, vx_image_buf **buf, vx_detection *out, int *n)
{
    char path[1200];
    if (!det || !path_in_cache(path, sizeof path, name))
        fail_msg("%s missing from %s: run scripts/fetch-samples", name, cache);
    if (vx_image_load(path, buf) != VX_OK)
        fail_msg("%s", vx_last_error());
    if (vx_detector_run(det, vx_image_buf_view(*buf), out, 100, n) != VX_OK)
        fail_msg("%s: %s", name, vx_last_error());
}

/* Each expected detection must be found: same class, confidence within
 * 0.03 and, where NANODET.md gives a box, IoU > 0.9 with it. */
static void check(const char *image, const vx_detection *d, int n, const expected *want, int nwant)
{
    for (int w = 0; w < nwant; w++) {
        int has_box = want[w].box[2] > 0, found = 0;
        vx_detection ref = {want[w].box[0], want[w].box[1], want[w].box[2], want[w].box[3], want[w].conf, 0};
        for (int i = 0; i < n && !found; i++) {
            if (strcmp(vx_detector_class_name(det, d[i].cls), want[w].cls))
                continue;
            if (fabsf(d[i].conf - want[w].conf) > 0.03f)
                continue;
            if (has_box && vx_box_iou(&d[i], &ref) <= 0.9f)
                continue;
            found = 1;
        }
        if (!found) {
            for (int i = 0; i < n; i++)
                print_message("  got %s %.3f [%.0f %.0f %.0f %.0f]\n", vx_detector_class_name(det, d[i].cls),
                              (double)d[i].conf, (double)d[i].x1, (double)d[i].y1, (double)d[i].x2,
                              (double)d[i].y2);
            fail_msg("%s: no %s %.2f [%.0f %.0f %.0f %.0f]", image, want[w].cls, (double)want[w].conf,
                     (double)want[w].box[0], (double)want[w].box[1], (double)want[w].box[2],
                     (double)want[w].box[3]);
        }
    }
}

static void test_dog(void **state)
{
    (void)state;
    vx_image_buf *buf = NULL;
    vx_detection d[100];
    int n;
    run_file("samples/dog.jpg", &buf, d, &n);
    const expected want[] = {
        {"dog", 0.68f, {131, 208, 335, 543}},
        {"bicycle", 0.57f, {112, 119, 572, 458}},
        {"car", 0.53f, {472, 83, 700, 170}},
        {"truck", 0.37f, {0}},
    };
    check("dog.jpg", d, n, want, 4);
    for (int i = 1; i < n; i++)
        assert_true(d[i - 1].conf >= d[i].conf);
    vx_image_buf_destroy(buf);
}

static void test_person(void **state)
{
    (void)state;
    vx_image_buf *buf = NULL;
    vx_detection d[100];
    int n;
    run_file("samples/person.jpg", &buf, d, &n);
    const expected want[] = {
        {"dog", 0.59f, {0}},
        {"cow", 0.46f, {0}},
        {"horse", 0.38f, {0}},
        {"person", 0.44f, {188, 99, 276, 372}},
    };
    check("person.jpg", d, n, want, 4);
    vx_image_buf_destroy(buf);
}

static void test_horses(void **state)
{
    (void)state;
    vx_image_buf *buf = NULL;
    vx_detection d[100];
    int n;
    run_file("samples/horses.jpg", &buf, d, &n);
    const expected want[] = {
        {"cow", 0.68f, {0}},
        {"horse", 0.62f, {0}},
        {"cow", 0.56f, {0}},
        {"horse", 0.47f, {0}},
    };
    check("horses.jpg", d, n, want, 4);
    vx_image_buf_destroy(buf);
}

/* A camera frame arrives as YUV: the same picture in YUV420P and NV12 must
 * give the same detections as RGB, up to colour rounding. */
static void test_yuv_frames(void **state)
{
    (void)state;
    vx_image_buf *buf = NULL;
    vx_detection rgb[100], yuv[100];
    int nrgb, nyuv;
    run_file("samples/dog.jpg", &buf, rgb, &nrgb);
    const vx_image *img = vx_image_buf_view(buf);
    int w = img->width, h = img->height, cw = (w + 1) / 2, ch = (h + 1) / 2;
    uint8_t *y = malloc((size_t)w * h), *u = malloc((size_t)cw * ch), *v = malloc((size_t)cw * ch);
    uint8_t *uv = malloc((size_t)cw * 2 * ch);
    struct SwsContext *sws =
        sws_getContext(w, h, AV_PIX_FMT_RGB24, w, h, AV_PIX_FMT_YUV420P, SWS_BILINEAR, NULL, NULL, NULL);
    assert_non_null(sws);
    uint8_t *dst[4] = {y, u, v, NULL};
    int dst_stride[4] = {w, cw, cw, 0};
    sws_scale(sws, img->planes, img->strides, 0, h, dst, dst_stride);
    sws_freeContext(sws);
    for (int i = 0; i < cw * ch; i++) {
        uv[2 * i] = u[i];
        uv[2 * i + 1] = v[i];
    }

    vx_image frames[2] = {
        {w, h, VX_PIX_YUV420P, {y, u, v}, {w, cw, cw}},
        {w, h, VX_PIX_NV12, {y, uv, NULL}, {w, 2 * cw, 0}},
    };
    for (int f = 0; f < 2; f++) {
        assert_int_equal(vx_detector_run(det, &frames[f], yuv, 100, &nyuv), VX_OK);
        /* Every strong RGB detection is there, nearly the same. */
        for (int i = 0; i < nrgb; i++) {
            if (rgb[i].conf < 0.45f)
                continue;
            int found = 0;
            for (int j = 0; j < nyuv && !found; j++)
                found = yuv[j].cls == rgb[i].cls && fabsf(yuv[j].conf - rgb[i].conf) < 0.05f &&
                        vx_box_iou(&yuv[j], &rgb[i]) > 0.9f;
            if (!found)
                fail_msg("frame %d lost %s %.2f", f, vx_detector_class_name(det, rgb[i].cls),
                         (double)rgb[i].conf);
        }
    }
    free(y);
    free(u);
    free(v);
    free(uv);
    vx_image_buf_destroy(buf);
}

static int setup(void **state)
{
    (void)state;
    const char *env = getenv("VEROLUX_CACHE");
    const char *home = getenv("HOME");
    if (env && *env)
        snprintf(cache, sizeof cache, "%s", env);
    else
        snprintf(cache, sizeof cache, "%s/.cache/verolux", home ? home : ".");
    char model[1200];
    if (!path_in_cache(model, sizeof model, "models/nanodet/nanodet.json")) {
        /* `make test` fetches the model first; its absence is a failure. */
        print_error("no model in %s/models/nanodet: run scripts/fetch-models\n", cache);
        return -1;
    }
    if (vx_detector_create(model, NULL, NULL, &det) != VX_OK) {
        print_error("%s\n", vx_last_error());
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    vx_detector_destroy(det);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dog),
        cmocka_unit_test(test_person),
        cmocka_unit_test(test_horses),
        cmocka_unit_test(test_yuv_frames),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
