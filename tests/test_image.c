/*
 * vx_image_load on files the test writes itself: PNG and JPEG made with
 * FFmpeg's own encoders, PPM written by hand, and files that are not images
 * (text, empty, truncated, too large) that must be refused with a message
 * naming the file.
 */
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
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>

#include "video/vx_image.h"

static char tmpdir[256];
static char created[32][512];
static int ncreated;

/* Quadrants: top-left red, top-right blue, bottom-left green, bottom-right
 * grey; colours away from 0/255 so JPEG error can't hide behind clipping. */
static const uint8_t quad_rgb[4][3] = {{200, 40, 40}, {40, 60, 200}, {50, 180, 70}, {128, 128, 128}};

static const uint8_t *quad_colour(int x, int y, int w, int h)
{
    return quad_rgb[(y >= h / 2) * 2 + (x >= w / 2)];
}

static uint8_t *make_rgb(int w, int h)
{
    uint8_t *rgb = malloc((size_t)w * (size_t)h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            memcpy(rgb + ((size_t)y * (size_t)w + (size_t)x) * 3, quad_colour(x, y, w, h), 3);
    return rgb;
}

static const char *tmp_path(const char *name)
{
    assert_true(ncreated < 32);
    char *p = created[ncreated++];
    snprintf(p, sizeof created[0], "%s/%s", tmpdir, name);
    return p;
}

static void write_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (len)
        assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* Encodes one RGB24 picture with an FFmpeg image encoder into a file. */
static void write_encoded(const char *path, enum AVCodecID id, enum AVPixelFormat fmt, const uint8_t *rgb,
                          int w, int h)
{
    const AVCodec *codec = avcodec_find_encoder(id);
    assert_non_null(codec);
    AVCodecContext *enc = avcodec_alloc_context3(codec);
    assert_non_null(enc);
    enc->width = w;
    enc->height = h;
    enc->pix_fmt = fmt;
    enc->time_base = (AVRational){1, 25};
    enc->color_range = AVCOL_RANGE_JPEG;
    enc->flags |= AV_CODEC_FLAG_QSCALE;
    enc->global_quality = FF_QP2LAMBDA * 2; /* high-quality JPEG */
    assert_true(avcodec_open2(enc, codec, NULL) >= 0);

    AVFrame *frame = av_frame_alloc();
    frame->width = w;
    frame->height = h;
    frame->format = fmt;
    frame->color_range = AVCOL_RANGE_JPEG;
    frame->quality = enc->global_quality;
    assert_true(av_frame_get_buffer(frame, 0) >= 0);
    struct SwsContext *sws =
        sws_getContext(w, h, AV_PIX_FMT_RGB24, w, h, fmt, SWS_POINT | SWS_ACCURATE_RND, NULL, NULL, NULL);
    assert_non_null(sws);
    const uint8_t *src[1] = {rgb};
    int src_stride[1] = {w * 3};
    sws_scale(sws, src, src_stride, 0, h, frame->data, frame->linesize);
    sws_freeContext(sws);

    AVPacket *pkt = av_packet_alloc();
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_true(avcodec_send_frame(enc, frame) >= 0);
    assert_true(avcodec_send_frame(enc, NULL) >= 0);
    int packets = 0;
    while (avcodec_receive_packet(enc, pkt) >= 0) {
        assert_int_equal(fwrite(pkt->data, 1, (size_t)pkt->size, f), (size_t)pkt->size);
        av_packet_unref(pkt);
        packets++;
    }
    assert_int_equal(packets, 1);
    assert_int_equal(fclose(f), 0);
    av_packet_free(&pkt);
    av_frame_free(&frame);
    avcodec_free_context(&enc);
}

static void write_ppm(const char *path, const uint8_t *rgb, int w, int h)
{
    char header[64];
    int n = snprintf(header, sizeof header, "P6\n%d %d\n255\n", w, h);
    size_t len = (size_t)n + (size_t)w * (size_t)h * 3;
    uint8_t *buf = malloc(len);
    memcpy(buf, header, (size_t)n);
    memcpy(buf + n, rgb, len - (size_t)n);
    write_bytes(path, buf, len);
    free(buf);
}

static const uint8_t *pixel(const vx_image *img, int x, int y)
{
    return img->planes[0] + (size_t)y * (size_t)img->strides[0] + (size_t)x * 3;
}

/* Checks the centre of each quadrant against its colour. */
static void check_quadrants(const vx_image *img, int tol)
{
    int w = img->width, h = img->height;
    const int pts[4][2] = {{w / 4, h / 4}, {3 * w / 4, h / 4}, {w / 4, 3 * h / 4}, {3 * w / 4, 3 * h / 4}};
    for (int q = 0; q < 4; q++) {
        const uint8_t *p = pixel(img, pts[q][0], pts[q][1]);
        const uint8_t *want = quad_colour(pts[q][0], pts[q][1], w, h);
        for (int c = 0; c < 3; c++)
            if (abs((int)p[c] - (int)want[c]) > tol)
                fail_msg("pixel (%d,%d) is %d,%d,%d, expected %d,%d,%d (+-%d)", pts[q][0], pts[q][1], p[0],
                         p[1], p[2], want[0], want[1], want[2], tol);
    }
}

static void load_ok(const char *path, int w, int h, int tol)
{
    vx_image_buf *buf = NULL;
    vx_err err = vx_image_load(path, &buf);
    if (err != VX_OK)
        fail_msg("loading %s failed: %s", path, vx_last_error());
    const vx_image *img = vx_image_buf_view(buf);
    assert_int_equal(img->width, w);
    assert_int_equal(img->height, h);
    assert_int_equal(img->format, VX_PIX_RGB24);
    assert_true(img->strides[0] >= w * 3);
    check_quadrants(img, tol);
    vx_image_buf_destroy(buf);
}

static void load_fails(const char *path, const char *expect)
{
    vx_image_buf *buf = (vx_image_buf *)(uintptr_t)1;
    vx_err err = vx_image_load(path, &buf);
    assert_int_not_equal(err, VX_OK);
    assert_null(buf);
    const char *msg = vx_last_error();
    if (strncmp(msg, path, strlen(path)) != 0)
        fail_msg("message does not start with the path: %s", msg);
    if (strchr(msg, '\n'))
        fail_msg("message is not one line: %s", msg);
    if (expect && !strstr(msg, expect))
        fail_msg("message lacks '%s': %s", expect, msg);
}

static void test_png(void **state)
{
    (void)state;
    uint8_t *rgb = make_rgb(33, 17); /* odd sizes: no row padding assumptions */
    const char *path = tmp_path("quad.png");
    write_encoded(path, AV_CODEC_ID_PNG, AV_PIX_FMT_RGB24, rgb, 33, 17);
    free(rgb);
    load_ok(path, 33, 17, 0);
}

static void test_jpeg(void **state)
{
    (void)state;
    uint8_t *rgb = make_rgb(64, 48);
    const char *path = tmp_path("quad.jpg");
    write_encoded(path, AV_CODEC_ID_MJPEG, AV_PIX_FMT_YUVJ420P, rgb, 64, 48);
    free(rgb);
    load_ok(path, 64, 48, 8);
}

static void test_ppm(void **state)
{
    (void)state;
    uint8_t *rgb = make_rgb(6, 4);
    const char *path = tmp_path("quad.ppm");
    write_ppm(path, rgb, 6, 4);
    free(rgb);
    load_ok(path, 6, 4, 0);

    /* Every pixel, not only the quadrant centres. */
    vx_image_buf *buf;
    assert_int_equal(vx_image_load(path, &buf), VX_OK);
    const vx_image *img = vx_image_buf_view(buf);
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 6; x++)
            assert_memory_equal(pixel(img, x, y), quad_colour(x, y, 6, 4), 3);
    vx_image_buf_destroy(buf);
}

/* Formats are recognised by content: a PNG named .jpg, or with no
 * extension, still loads; ':' and '%' in a name are just characters. */
static void test_content_not_name(void **state)
{
    (void)state;
    uint8_t *rgb = make_rgb(20, 10);
    const char *names[] = {"png-really.jpg", "noext", "odd%d:name.png"};
    for (int i = 0; i < 3; i++) {
        const char *path = tmp_path(names[i]);
        write_encoded(path, AV_CODEC_ID_PNG, AV_PIX_FMT_RGB24, rgb, 20, 10);
        load_ok(path, 20, 10, 0);
    }
    free(rgb);
}

static void test_reject_text(void **state)
{
    (void)state;
    const char *text = "this is not an image, just some words.\nsecond line\n";
    const char *path = tmp_path("notes.txt");
    write_bytes(path, text, strlen(text));
    load_fails(path, "not an image");
    /* A text file wearing an image extension. */
    path = tmp_path("notes.jpg");
    write_bytes(path, text, strlen(text));
    load_fails(path, "not an image");
}

static void test_reject_empty(void **state)
{
    (void)state;
    const char *path = tmp_path("empty.png");
    write_bytes(path, "", 0);
    load_fails(path, NULL);
    path = tmp_path("empty");
    write_bytes(path, "", 0);
    load_fails(path, NULL);
}

static void test_reject_missing(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/does-not-exist.png", tmpdir);
    load_fails(path, NULL);
    load_fails(tmpdir, NULL); /* a directory */
}

static void test_reject_truncated(void **state)
{
    (void)state;
    uint8_t *rgb = make_rgb(64, 48);
    const char *full = tmp_path("full.jpg");
    write_encoded(full, AV_CODEC_ID_MJPEG, AV_PIX_FMT_YUVJ420P, rgb, 64, 48);
    free(rgb);
    FILE *f = fopen(full, "rb");
    assert_non_null(f);
    uint8_t head[24];
    assert_int_equal(fread(head, 1, sizeof head, f), sizeof head);
    fclose(f);
    const char *path = tmp_path("truncated.jpg");
    write_bytes(path, head, sizeof head);
    load_fails(path, "not an image");
}

static void test_reject_sizes(void **state)
{
    (void)state;
    /* Wider than the limit, with all its pixel data present. */
    int w = VX_IMAGE_MAX_DIM + 1;
    uint8_t *rgb = calloc((size_t)w * 3, 1);
    const char *path = tmp_path("wide.ppm");
    write_ppm(path, rgb, w, 1);
    free(rgb);
    load_fails(path, "larger than");

    /* Headers claiming far more pixels than the few bytes behind them:
     * refused before anything that size is allocated. */
    const char *huge = "P6\n20000 10000\n255\n\x01\x02\x03";
    path = tmp_path("huge.ppm");
    write_bytes(path, huge, strlen(huge));
    load_fails(path, "larger than");
    huge = "P6\n100000 100000\n255\n\x01\x02\x03";
    path = tmp_path("huger.ppm");
    write_bytes(path, huge, strlen(huge));
    load_fails(path, NULL);

    const char *zero = "P6\n0 0\n255\n";
    path = tmp_path("zero.ppm");
    write_bytes(path, zero, strlen(zero));
    load_fails(path, NULL);
}

static int setup(void **state)
{
    (void)state;
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/vx_test_image_XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < ncreated; i++)
        unlink(created[i]);
    return rmdir(tmpdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_png),
        cmocka_unit_test(test_jpeg),
        cmocka_unit_test(test_ppm),
        cmocka_unit_test(test_content_not_name),
        cmocka_unit_test(test_reject_text),
        cmocka_unit_test(test_reject_empty),
        cmocka_unit_test(test_reject_missing),
        cmocka_unit_test(test_reject_truncated),
        cmocka_unit_test(test_reject_sizes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
