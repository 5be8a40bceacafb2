/*
 * AVFrame -> vx_image: zero-copy views of the formats the detector reads,
 * pooled libswscale conversions of the rest, on frames built in memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libavutil/frame.h>
#include <libavutil/pixdesc.h>

#include "video/vx_video.h"

static AVFrame *make_frame(enum AVPixelFormat fmt, int w, int h)
{
    AVFrame *f = av_frame_alloc();
    assert_non_null(f);
    f->format = fmt;
    f->width = w;
    f->height = h;
    assert_int_equal(av_frame_get_buffer(f, 0), 0);
    return f;
}

/* Sets every byte of plane p to v[p]. */
static void fill_planes(AVFrame *f, const int *v, int nplanes, const int *rows)
{
    for (int p = 0; p < nplanes; p++)
        memset(f->data[p], v[p], (size_t)f->linesize[p] * (size_t)rows[p]);
}

static void test_views(void **state)
{
    (void)state;
    static const struct {
        enum AVPixelFormat av;
        vx_pixfmt vx;
        int planes;
    } cases[] = {
        {AV_PIX_FMT_YUV420P, VX_PIX_YUV420P, 3}, {AV_PIX_FMT_YUVJ420P, VX_PIX_YUV420P, 3},
        {AV_PIX_FMT_NV12, VX_PIX_NV12, 2},       {AV_PIX_FMT_RGB24, VX_PIX_RGB24, 1},
        {AV_PIX_FMT_BGR24, VX_PIX_BGR24, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        AVFrame *f = make_frame(cases[i].av, 38, 22);
        vx_image img;
        if (vx_video_avframe_view(f, &img) != VX_OK)
            fail_msg("%s: %s", av_get_pix_fmt_name(cases[i].av), vx_last_error());
        assert_int_equal(img.format, cases[i].vx);
        assert_int_equal(img.width, 38);
        assert_int_equal(img.height, 22);
        for (int p = 0; p < 3; p++) {
            /* A view: the very same memory, not a copy. */
            assert_ptr_equal(img.planes[p], p < cases[i].planes ? f->data[p] : NULL);
            assert_int_equal(img.strides[p], p < cases[i].planes ? f->linesize[p] : 0);
        }
        av_frame_free(&f);
    }
}

static void test_view_refuses(void **state)
{
    (void)state;
    vx_image img;
    AVFrame *f = make_frame(AV_PIX_FMT_YUYV422, 16, 8);
    assert_int_equal(vx_video_avframe_view(f, &img), VX_ERR_UNSUPPORTED);
    assert_non_null(strstr(vx_last_error(), "yuyv422"));
    av_frame_free(&f);

    /* Bottom-up RGB (negative stride) is left to the converter. */
    f = make_frame(AV_PIX_FMT_RGB24, 16, 8);
    f->data[0] += (size_t)f->linesize[0] * 7;
    f->linesize[0] = -f->linesize[0];
    assert_int_equal(vx_video_avframe_view(f, &img), VX_ERR_UNSUPPORTED);
    f->linesize[0] = -f->linesize[0];
    f->data[0] -= (size_t)f->linesize[0] * 7;
    av_frame_free(&f);

    AVFrame *empty = av_frame_alloc();
    assert_int_equal(vx_video_avframe_view(empty, &img), VX_ERR_INVALID);
    assert_int_equal(vx_video_avframe_view(NULL, &img), VX_ERR_INVALID);
    av_frame_free(&empty);
}

/* Native formats come out as a new reference to the same buffer. */
static void test_convert_native_is_reference(void **state)
{
    (void)state;
    vx_video_converter *conv;
    assert_int_equal(vx_video_converter_create(&conv), VX_OK);
    AVFrame *in = make_frame(AV_PIX_FMT_NV12, 32, 16), *out = av_frame_alloc();
    in->pts = 1234;
    assert_int_equal(vx_video_converter_convert(conv, in, out), VX_OK);
    assert_ptr_equal(out->data[0], in->data[0]);
    assert_ptr_equal(out->buf[0]->buffer, in->buf[0]->buffer);
    assert_int_equal(out->pts, 1234);
    av_frame_free(&out);
    av_frame_free(&in);
    vx_video_converter_destroy(conv);
}

static void check_plane(const vx_image *img, int p, int w, int h, int want, int tol)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int got = img->planes[p][(size_t)y * (size_t)img->strides[p] + (size_t)x];
            if (abs(got - want) > tol)
                fail_msg("plane %d (%d,%d) = %d, expected %d", p, x, y, got, want);
        }
}

static void test_convert_yuv_like(void **state)
{
    (void)state;
    vx_video_converter *conv;
    assert_int_equal(vx_video_converter_create(&conv), VX_OK);
    const int w = 40, h = 20;

    /* Webcam YUYV: Y U Y V byte quads. */
    AVFrame *in = make_frame(AV_PIX_FMT_YUYV422, w, h);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w / 2; x++) {
            uint8_t *q = in->data[0] + (size_t)y * (size_t)in->linesize[0] + (size_t)x * 4;
            q[0] = 90, q[1] = 60, q[2] = 90, q[3] = 200;
        }
    in->pts = 77;
    AVFrame *out = av_frame_alloc();
    assert_int_equal(vx_video_converter_convert(conv, in, out), VX_OK);
    assert_int_equal(out->format, AV_PIX_FMT_YUV420P);
    assert_int_equal(out->pts, 77);
    vx_image img;
    assert_int_equal(vx_video_avframe_view(out, &img), VX_OK);
    assert_int_equal(img.format, VX_PIX_YUV420P);
    check_plane(&img, 0, w, h, 90, 0);
    check_plane(&img, 1, w / 2, h / 2, 60, 1);
    check_plane(&img, 2, w / 2, h / 2, 200, 1);
    /* Planes are aligned for vector loads. */
    for (int p = 0; p < 3; p++) {
        assert_int_equal((uintptr_t)out->data[p] % 32, 0);
        assert_int_equal(out->linesize[p] % 32, 0);
    }
    av_frame_free(&out);
    av_frame_free(&in);

    /* Full-range YUVJ422P stays full-range (like a YUVJ420P view): Y 250
     * and 3 are not squeezed into 16..235. */
    in = make_frame(AV_PIX_FMT_YUVJ422P, w, h);
    in->color_range = AVCOL_RANGE_JPEG;
    for (int y = 0; y < h; y++) {
        memset(in->data[0] + (size_t)y * (size_t)in->linesize[0], y < h / 2 ? 250 : 3, (size_t)w);
        memset(in->data[1] + (size_t)y * (size_t)in->linesize[1], 100, (size_t)w / 2);
        memset(in->data[2] + (size_t)y * (size_t)in->linesize[2], 150, (size_t)w / 2);
    }
    out = av_frame_alloc();
    assert_int_equal(vx_video_converter_convert(conv, in, out), VX_OK);
    assert_int_equal(vx_video_avframe_view(out, &img), VX_OK);
    assert_int_equal(img.format, VX_PIX_YUV420P);
    check_plane(&img, 0, w, 1, 250, 0);
    assert_int_equal(img.planes[0][(size_t)(h - 1) * (size_t)img.strides[0]], 3);
    check_plane(&img, 1, w / 2, h / 2, 100, 1);
    check_plane(&img, 2, w / 2, h / 2, 150, 1);
    av_frame_free(&out);
    av_frame_free(&in);

    /* Grey: Y kept, neutral chroma. */
    in = make_frame(AV_PIX_FMT_GRAY8, w, h);
    fill_planes(in, (const int[]){123}, 1, (const int[]){h});
    out = av_frame_alloc();
    assert_int_equal(vx_video_converter_convert(conv, in, out), VX_OK);
    assert_int_equal(vx_video_avframe_view(out, &img), VX_OK);
    assert_int_equal(img.format, VX_PIX_YUV420P);
    check_plane(&img, 0, w, h, 123, 0);
    check_plane(&img, 1, w / 2, h / 2, 128, 1);
    av_frame_free(&out);
    av_frame_free(&in);
    vx_video_converter_destroy(conv);
}

static void test_convert_rgb_like(void **state)
{
    (void)state;
    vx_video_converter *conv;
    assert_int_equal(vx_video_converter_create(&conv), VX_OK);
    const int w = 17, h = 9; /* odd sizes */
    AVFrame *in = make_frame(AV_PIX_FMT_BGRA, w, h);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *px = in->data[0] + (size_t)y * (size_t)in->linesize[0] + (size_t)x * 4;
            px[0] = (uint8_t)(x * 10), px[1] = (uint8_t)(y * 20), px[2] = 200, px[3] = 255;
        }
    AVFrame *out = av_frame_alloc();
    assert_int_equal(vx_video_converter_convert(conv, in, out), VX_OK);
    vx_image img;
    assert_int_equal(vx_video_avframe_view(out, &img), VX_OK);
    assert_int_equal(img.format, VX_PIX_RGB24);
    assert_int_equal(img.width, w);
    assert_int_equal(img.height, h);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            const uint8_t *px = img.planes[0] + (size_t)y * (size_t)img.strides[0] + (size_t)x * 3;
            if (px[0] != 200 || px[1] != y * 20 || px[2] != x * 10)
                fail_msg("(%d,%d) = %d,%d,%d, expected 200,%d,%d", x, y, px[0], px[1], px[2], y * 20, x * 10);
        }
    av_frame_free(&out);
    av_frame_free(&in);
    vx_video_converter_destroy(conv);
}

/* Buffers cycle through the pool, and converted frames outlive the
 * converter (the pool is freed with its last buffer; ASan checks). */
static void test_convert_pool(void **state)
{
    (void)state;
    vx_video_converter *conv;
    assert_int_equal(vx_video_converter_create(&conv), VX_OK);
    AVFrame *in = make_frame(AV_PIX_FMT_YUV422P, 64, 32);
    fill_planes(in, (const int[]){50, 60, 70}, 3, (const int[]){32, 32, 32});
    AVFrame *a = av_frame_alloc(), *b = av_frame_alloc();
    assert_int_equal(vx_video_converter_convert(conv, in, a), VX_OK);
    assert_int_equal(vx_video_converter_convert(conv, in, b), VX_OK);
    assert_ptr_not_equal(a->data[0], b->data[0]); /* both alive: two buffers */
    uint8_t *first = a->data[0];
    av_frame_unref(a);
    assert_int_equal(vx_video_converter_convert(conv, in, a), VX_OK);
    assert_ptr_equal(a->data[0], first); /* reused, not reallocated */

    /* A size change replaces the pool; frames of the old one stay valid. */
    AVFrame *big = make_frame(AV_PIX_FMT_YUV422P, 96, 48);
    fill_planes(big, (const int[]){9, 9, 9}, 3, (const int[]){48, 48, 48});
    AVFrame *c = av_frame_alloc();
    assert_int_equal(vx_video_converter_convert(conv, big, c), VX_OK);
    assert_int_equal(c->width, 96);
    vx_video_converter_destroy(conv);
    assert_int_equal(a->data[0][0], 50);
    assert_int_equal(b->data[0][63], 50);
    assert_int_equal(c->data[0][95], 9);
    av_frame_free(&a);
    av_frame_free(&b);
    av_frame_free(&c);
    av_frame_free(&big);
    av_frame_free(&in);
}

static void test_convert_refuses(void **state)
{
    (void)state;
    vx_video_converter *conv;
    assert_int_equal(vx_video_converter_create(&conv), VX_OK);
    AVFrame *out = av_frame_alloc();
    AVFrame *wide = make_frame(AV_PIX_FMT_GRAY8, VX_IMAGE_MAX_DIM + 1, 2);
    assert_int_equal(vx_video_converter_convert(conv, wide, out), VX_ERR_UNSUPPORTED);
    assert_non_null(strstr(vx_last_error(), "larger than the limit"));
    av_frame_free(&wide);

    /* Hardware frames carry no pixels swscale can read. */
    AVFrame *hw = make_frame(AV_PIX_FMT_GRAY8, 8, 8);
    hw->format = AV_PIX_FMT_VAAPI;
    assert_int_equal(vx_video_converter_convert(conv, hw, out), VX_ERR_UNSUPPORTED);
    assert_non_null(strstr(vx_last_error(), "vaapi"));
    hw->format = AV_PIX_FMT_GRAY8;
    av_frame_free(&hw);

    AVFrame *empty = av_frame_alloc();
    assert_int_equal(vx_video_converter_convert(conv, empty, out), VX_ERR_INVALID);
    av_frame_free(&empty);
    assert_null(out->buf[0]);
    av_frame_free(&out);
    vx_video_converter_destroy(conv);
    vx_video_converter_destroy(NULL);
}

/* SUBSTREAM_SCALE sizes: the scale, widths in whole 16-pixel blocks,
 * floored at what the letterbox keeps. */
static void test_scaled_size(void **state)
{
    (void)state;
    static const struct {
        int w, h;
        double scale;
        int fit_w, fit_h, want_w, want_h;
    } cases[] = {
        {1920, 1080, 0.6, 416, 416, 1152, 648}, /* the spec's 1080p -> 648p */
        {1280, 720, 0.6, 416, 416, 768, 432},   /* 720p -> 432p */
        {768, 576, 0.6, 416, 416, 464, 348},    /* vtest.avi: 460.8 -> 464 */
        {1536, 1152, 0.6, 416, 416, 928, 696},  /* 921.6 -> 928 */
        {768, 576, 0.3, 416, 416, 416, 312},    /* floored at the letterbox's 416x312 */
        {768, 576, 0.3, 0, 0, 240, 180},        /* no floor: 230.4 -> 240 */
        {320, 240, 0.6, 416, 416, 320, 240},    /* smaller than the network: no copy */
        {1920, 1080, 1.0, 416, 416, 1920, 1080},
        {20, 10, 0.6, 0, 0, 16, 8},  /* 12 -> 16 */
        {16, 10, 0.5, 0, 0, 16, 10}, /* 8 -> 16: not smaller */
        {1, 1, 0.05, 0, 0, 1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int w, h;
        vx_video_scaled_size(cases[i].w, cases[i].h, cases[i].scale, cases[i].fit_w, cases[i].fit_h, &w, &h);
        if (w != cases[i].want_w || h != cases[i].want_h)
            fail_msg("%dx%d at %g (fit %dx%d): %dx%d, expected %dx%d", cases[i].w, cases[i].h, cases[i].scale,
                     cases[i].fit_w, cases[i].fit_h, w, h, cases[i].want_w, cases[i].want_h);
    }
}

/* How red pixel (x, y) of a copy is, 0..255: the red channel of packed
 * RGB/BGR, V of YUV420P (red: V 240, black: 128, so 128..240 -> 0..255). */
static int redness(const vx_image *img, int x, int y)
{
    switch (img->format) {
    case VX_PIX_RGB24:
    case VX_PIX_BGR24:
        return img->planes[0][(size_t)y * (size_t)img->strides[0] + (size_t)x * 3 +
                              (img->format == VX_PIX_RGB24 ? 0 : 2)];
    case VX_PIX_YUV420P: {
        int v = img->planes[2][(size_t)(y / 2) * (size_t)img->strides[2] + (size_t)(x / 2)];
        return (v - 128) * 255 / 112;
    }
    default: fail_msg("unexpected copy format %d", (int)img->format);
    }
    return 0;
}

/* Luma (YUV) or the sum of channels / 3 (packed): distinguishes the block
 * (Y 81, or 85) from the black background (Y 16, or 0) at full resolution. */
static int brightness(const vx_image *img, int x, int y)
{
    const uint8_t *row = img->planes[0] + (size_t)y * (size_t)img->strides[0];
    if (img->format == VX_PIX_YUV420P)
        return row[x];
    return (row[x * 3] + row[x * 3 + 1] + row[x * 3 + 2]) / 3;
}

/* A 200x100 frame, black with a red 40x40 block at (100, 40), in every
 * input format, scaled by 0.6: the copy keeps the format family (YUV as
 * YUV420P, packed as itself) and the block lands at (60, 24)-(84, 48) in
 * its colour. */
static void test_scaler(void **state)
{
    (void)state;
    const int w = 200, h = 100, bx = 100, by = 40, bs = 40, ow = 120, oh = 60;
    vx_video_scaler *sc;
    assert_int_equal(vx_video_scaler_create(&sc), VX_OK);
    static const struct {
        enum AVPixelFormat av;
        vx_pixfmt copy;
        int edge; /* brightness threshold between the block and black */
    } kinds[] = {
        {AV_PIX_FMT_YUV420P, VX_PIX_YUV420P, 48},
        {AV_PIX_FMT_NV12, VX_PIX_YUV420P, 48},
        {AV_PIX_FMT_RGB24, VX_PIX_RGB24, 42},
        {AV_PIX_FMT_BGR24, VX_PIX_BGR24, 42},
    };
    for (int kind = 0; kind < 4; kind++) {
        /* red in BT.601 limited range: Y 81, U 90, V 240 */
        AVFrame *f = make_frame(kinds[kind].av, w, h);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                int in = x >= bx && x < bx + bs && y >= by && y < by + bs;
                uint8_t *row0 = f->data[0] + (size_t)y * (size_t)f->linesize[0];
                if (kind == 0 || kind == 1) {
                    row0[x] = in ? 81 : 16;
                    if (y % 2 || x % 2)
                        continue;
                    uint8_t u = in ? 90 : 128, v = in ? 240 : 128;
                    if (kind == 0) {
                        f->data[1][(size_t)(y / 2) * (size_t)f->linesize[1] + (size_t)(x / 2)] = u;
                        f->data[2][(size_t)(y / 2) * (size_t)f->linesize[2] + (size_t)(x / 2)] = v;
                    } else {
                        uint8_t *uv = f->data[1] + (size_t)(y / 2) * (size_t)f->linesize[1] + (size_t)x;
                        uv[0] = u;
                        uv[1] = v;
                    }
                } else {
                    uint8_t *px = row0 + (size_t)x * 3;
                    px[kind == 2 ? 0 : 2] = in ? 255 : 0; /* red */
                    px[1] = 0;
                    px[kind == 2 ? 2 : 0] = 0;
                }
            }
        vx_image in, out;
        assert_int_equal(vx_video_avframe_view(f, &in), VX_OK);
        if (vx_video_scaler_scale(sc, &in, ow, oh, &out) != VX_OK)
            fail_msg("kind %d: %s", kind, vx_last_error());
        assert_int_equal(out.format, kinds[kind].copy);
        assert_int_equal(out.width, ow);
        assert_int_equal(out.height, oh);
        for (int p = 0; p < (out.format == VX_PIX_YUV420P ? 3 : 1); p++) {
            assert_non_null(out.planes[p]);
            assert_int_equal((uintptr_t)out.planes[p] % 32, 0); /* aligned for vector loads */
        }
        /* The block's centre is red, the background is not. */
        if (redness(&out, 72, 36) < 240 || redness(&out, 10, 10) > 15 || redness(&out, 110, 55) > 15)
            fail_msg("kind %d: redness %d inside, %d and %d outside", kind, redness(&out, 72, 36),
                     redness(&out, 10, 10), redness(&out, 110, 55));
        int first = -1, last = -1, top = -1, bottom = -1;
        for (int x = 0; x < ow; x++)
            if (brightness(&out, x, 36) > kinds[kind].edge) {
                first = first < 0 ? x : first;
                last = x;
            }
        for (int y = 0; y < oh; y++)
            if (brightness(&out, 72, y) > kinds[kind].edge) {
                top = top < 0 ? y : top;
                bottom = y;
            }
        if (abs(first - 60) > 1 || abs(last - 83) > 1 || abs(top - 24) > 1 || abs(bottom - 47) > 1)
            fail_msg("kind %d: block at x %d..%d, y %d..%d, expected 60..83, 24..47", kind, first, last, top,
                     bottom);
        av_frame_free(&f);
    }
    vx_video_scaler_destroy(sc);
    vx_video_scaler_destroy(NULL);
}

static void test_scaler_refuses(void **state)
{
    (void)state;
    vx_video_scaler *sc;
    assert_int_equal(vx_video_scaler_create(&sc), VX_OK);
    AVFrame *f = make_frame(AV_PIX_FMT_YUV420P, 64, 32);
    fill_planes(f, (const int[]){16, 128, 128}, 3, (const int[]){32, 16, 16});
    vx_image in, out;
    assert_int_equal(vx_video_avframe_view(f, &in), VX_OK);
    /* A copy is never larger than its frame, nor empty. */
    assert_int_equal(vx_video_scaler_scale(sc, &in, 65, 32, &out), VX_ERR_INVALID);
    assert_non_null(strstr(vx_last_error(), "65x32"));
    assert_int_equal(vx_video_scaler_scale(sc, &in, 0, 10, &out), VX_ERR_INVALID);
    vx_image bad = in;
    bad.planes[2] = NULL;
    assert_int_equal(vx_video_scaler_scale(sc, &bad, 32, 16, &out), VX_ERR_INVALID);
    bad = in;
    bad.format = (vx_pixfmt)99;
    assert_int_equal(vx_video_scaler_scale(sc, &bad, 32, 16, &out), VX_ERR_INVALID);
    assert_null(out.planes[0]);
    /* Still usable after refusals, also at another size. */
    assert_int_equal(vx_video_scaler_scale(sc, &in, 32, 16, &out), VX_OK);
    assert_int_equal(vx_video_scaler_scale(sc, &in, 64, 32, &out), VX_OK);
    assert_int_equal(out.format, VX_PIX_YUV420P);
    assert_int_equal(out.planes[0][31 * out.strides[0] + 63], 16);
    av_frame_free(&f);
    vx_video_scaler_destroy(sc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_views),
        cmocka_unit_test(test_view_refuses),
        cmocka_unit_test(test_convert_native_is_reference),
        cmocka_unit_test(test_convert_yuv_like),
        cmocka_unit_test(test_convert_rgb_like),
        cmocka_unit_test(test_convert_pool),
        cmocka_unit_test(test_convert_refuses),
        cmocka_unit_test(test_scaled_size),
        cmocka_unit_test(test_scaler),
        cmocka_unit_test(test_scaler_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
