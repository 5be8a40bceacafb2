/*
 * AVFrame -> vx_image: zero-copy views and pooled conversions.  See
 * vx_video.h.
 *
 * Decoders mostly produce YUV420P (H.264, HEVC, MPEG-4), YUVJ420P (MJPEG
 * cameras) or NV12 (hardware decoders); the detector reads those directly, so
 * the common path is a view of the decoder's own buffer.  The rest (YUYV422
 * from webcams, YUVJ422P from some MJPEG cameras, RGBA, GRAY8, 10-bit...) is
 * converted once by libswscale into a buffer from an AVBufferPool: frames are
 * published at camera rate and freed soon after, so the same few buffers
 * cycle instead of hitting malloc for megabytes per frame.  The pool is
 * ref-counted by FFmpeg, so converted frames may outlive the converter.
 */
#include "video/video_internal.h"
#include "video/vx_video.h"

#include <libavutil/buffer.h>
#include <libavutil/frame.h>
#include <libavutil/imgutils.h>
#include <libavutil/mem.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Plane alignment of converted frames: AVX-512 loads. */
#define CONV_ALIGN 64

struct vx_video_converter {
    struct SwsContext *sws;
    enum AVPixelFormat sws_src, sws_dst;
    int sws_w, sws_h, sws_full_range;
    AVBufferPool *pool;
    size_t pool_size;
};

vx_err vx_video_avframe_view(const AVFrame *frame, vx_image *out)
{
    memset(out, 0, sizeof *out);
    if (!frame || frame->width <= 0 || frame->height <= 0 || !frame->data[0])
        return vx_fail(VX_ERR_INVALID, "video frame is empty");
    int planes;
    switch (frame->format) {
    case AV_PIX_FMT_YUV420P:
    case AV_PIX_FMT_YUVJ420P:
        out->format = VX_PIX_YUV420P;
        planes = 3;
        break;
    case AV_PIX_FMT_NV12:
        out->format = VX_PIX_NV12;
        planes = 2;
        break;
    case AV_PIX_FMT_RGB24:
        out->format = VX_PIX_RGB24;
        planes = 1;
        break;
    case AV_PIX_FMT_BGR24:
        out->format = VX_PIX_BGR24;
        planes = 1;
        break;
    default: {
        const char *name = av_get_pix_fmt_name((enum AVPixelFormat)frame->format);
        return vx_fail(VX_ERR_UNSUPPORTED, "video frame: pixel format %s needs a conversion",
                       name ? name : "(unknown)");
    }
    }
    for (int i = 0; i < planes; i++) {
        /* Bottom-up frames (negative strides) go through the converter. */
        if (!frame->data[i] || frame->linesize[i] <= 0)
            return vx_fail(VX_ERR_UNSUPPORTED, "video frame: plane %d has a negative or zero stride", i);
        out->planes[i] = frame->data[i];
        out->strides[i] = frame->linesize[i];
    }
    out->width = frame->width;
    out->height = frame->height;
    return VX_OK;
}

vx_err vx_video_converter_create(vx_video_converter **out)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return vx_fail(VX_ERR_NOMEM, "out of memory creating a video converter");
    vx_video_ffmpeg_quiet();
    return VX_OK;
}

void vx_video_converter_destroy(vx_video_converter *conv)
{
    if (!conv)
        return;
    sws_freeContext(conv->sws);
    /* Buffers still held by frames keep the pool alive until they return. */
    av_buffer_pool_uninit(&conv->pool);
    free(conv);
}

static vx_err setup_sws(vx_video_converter *conv, enum AVPixelFormat src, enum AVPixelFormat dst, int w,
                        int h, int full_range)
{
    if (conv->sws && conv->sws_src == src && conv->sws_dst == dst && conv->sws_w == w && conv->sws_h == h &&
        conv->sws_full_range == full_range)
        return VX_OK;
    sws_freeContext(conv->sws);
    /* Same size: the filter only shapes chroma resampling. */
    conv->sws = sws_getContext(w, h, src, w, h, dst, SWS_BILINEAR | SWS_ACCURATE_RND, NULL, NULL, NULL);
    if (!conv->sws)
        return vx_fail(VX_ERR_BACKEND, "video frame: cannot set up the conversion from %s to %s",
                       av_get_pix_fmt_name(src), av_get_pix_fmt_name(dst));
    /* Keep the range: YUVJ420P frames are viewed as they are, so a
     * converted YUVJ422P frame must not look different. */
    const int *coefs = sws_getCoefficients(SWS_CS_DEFAULT);
    sws_setColorspaceDetails(conv->sws, coefs, full_range, coefs, full_range, 0, 1 << 16, 1 << 16);
    conv->sws_src = src;
    conv->sws_dst = dst;
    conv->sws_w = w;
    conv->sws_h = h;
    conv->sws_full_range = full_range;
    return VX_OK;
}

vx_err vx_video_converter_convert(vx_video_converter *conv, const AVFrame *in, AVFrame *out)
{
    vx_image view;
    if (!in || in->width <= 0 || in->height <= 0 || !in->data[0])
        return vx_fail(VX_ERR_INVALID, "video frame is empty");
    int w = in->width, h = in->height;
    if (w > VX_IMAGE_MAX_DIM || h > VX_IMAGE_MAX_DIM)
        return vx_fail(VX_ERR_UNSUPPORTED, "video frame is %dx%d, larger than the limit of %dx%d", w, h,
                       VX_IMAGE_MAX_DIM, VX_IMAGE_MAX_DIM);
    if (vx_video_avframe_view(in, &view) == VX_OK) {
        vx_clear_error();
        int ret = av_frame_ref(out, in);
        return ret < 0 ? vx_fail(VX_ERR_NOMEM, "video frame: cannot reference (%s)", av_err2str(ret)) : VX_OK;
    }
    vx_clear_error();

    int full_range = in->color_range == AVCOL_RANGE_JPEG;
    enum AVPixelFormat src = vx_video_unjpeg_format((enum AVPixelFormat)in->format, &full_range);
    const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get(src);
    if (!desc || !sws_isSupportedInput(src))
        return vx_fail(VX_ERR_UNSUPPORTED, "video frame: pixel format %s cannot be converted",
                       desc ? desc->name : "(unknown)");
    /* RGB stays RGB (no chroma loss); YUV, grey and the rest become the
     * detector's cheapest input. */
    enum AVPixelFormat dst =
        (desc->flags & (AV_PIX_FMT_FLAG_RGB | AV_PIX_FMT_FLAG_PAL)) ? AV_PIX_FMT_RGB24 : AV_PIX_FMT_YUV420P;
    vx_err err = setup_sws(conv, src, dst, w, h, full_range);
    if (err)
        return err;

    int size = av_image_get_buffer_size(dst, w, h, CONV_ALIGN);
    if (size <= 0)
        return vx_fail(VX_ERR_INVALID, "video frame: bad size %dx%d", w, h);
    if (!conv->pool || conv->pool_size != (size_t)size) {
        av_buffer_pool_uninit(&conv->pool);
        conv->pool = av_buffer_pool_init((size_t)size, NULL);
        conv->pool_size = (size_t)size;
        if (!conv->pool)
            return vx_fail(VX_ERR_NOMEM, "video frame: cannot create a buffer pool of %d bytes", size);
    }
    AVBufferRef *buf = av_buffer_pool_get(conv->pool);
    if (!buf)
        return vx_fail(VX_ERR_NOMEM, "video frame: cannot allocate %d bytes", size);

    int ret = av_frame_copy_props(out, in);
    if (ret < 0) {
        av_buffer_unref(&buf);
        return vx_fail(VX_ERR_NOMEM, "video frame: cannot copy properties (%s)", av_err2str(ret));
    }
    out->buf[0] = buf;
    out->format = dst;
    out->width = w;
    out->height = h;
    ret = av_image_fill_arrays(out->data, out->linesize, buf->data, dst, w, h, CONV_ALIGN);
    if (ret >= 0)
        ret = sws_scale(conv->sws, (const uint8_t *const *)in->data, in->linesize, 0, h, out->data,
                        out->linesize);
    if (ret != h) {
        av_frame_unref(out);
        return vx_fail(VX_ERR_BACKEND, "video frame: conversion from %s to %s failed", desc->name,
                       av_get_pix_fmt_name(dst));
    }
    return VX_OK;
}

/* ---- detection copies ---------------------------------------------------- */

/* Plane alignment of detection copies, like converted frames, and the
 * multiple their widths are made of. */
#define SCALER_ALIGN CONV_ALIGN
#define COPY_BLOCK 16

struct vx_video_scaler {
    struct SwsContext *sws;
    uint8_t *buf;
    size_t cap;
};

vx_err vx_video_scaler_create(vx_video_scaler **out)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return vx_fail(VX_ERR_NOMEM, "out of memory creating a video scaler");
    vx_video_ffmpeg_quiet();
    return VX_OK;
}

void vx_video_scaler_destroy(vx_video_scaler *s)
{
    if (!s)
        return;
    sws_freeContext(s->sws);
    av_free(s->buf);
    free(s);
}

void vx_video_scaled_size(int w, int h, double scale, int fit_w, int fit_h, int *out_w, int *out_h)
{
    *out_w = w;
    *out_h = h;
    if (w <= 0 || h <= 0 || !(scale > 0 && scale < 1))
        return;
    /* The letterbox shrinks the picture to fit_w x fit_h anyway; a copy
     * below that size would lose detail and save nothing (the network's
     * cost is fixed by its input). */
    double floor_scale = 0;
    if (fit_w > 0 && fit_h > 0)
        floor_scale = fmin((double)fit_w / w, (double)fit_h / h);
    if (scale < floor_scale)
        scale = floor_scale;
    if (scale >= 1)
        return;
    /* The width is rounded up to whole 16-pixel blocks: libswscale's
     * vectorised YUV -> RGB conversion (which the detector runs on the
     * copy) writes whole blocks, past the end of a tightly packed last row
     * otherwise; the height follows the rounded width's scale. */
    long sw = (long)ceil(w * scale / COPY_BLOCK) * COPY_BLOCK;
    if (sw >= w)
        return;
    long sh = lround((double)h * (double)sw / w);
    *out_w = (int)sw;
    *out_h = (int)(sh < 1 ? 1 : sh);
}

vx_err vx_video_scaler_scale(vx_video_scaler *s, const vx_image *in, int w, int h, vx_image *out)
{
    memset(out, 0, sizeof *out);
    if (!in || in->width <= 0 || in->height <= 0 || in->width > VX_IMAGE_MAX_DIM ||
        in->height > VX_IMAGE_MAX_DIM)
        return vx_fail(VX_ERR_INVALID, "cannot scale an image of %dx%d", in ? in->width : 0,
                       in ? in->height : 0);
    if (w <= 0 || h <= 0 || w > in->width || h > in->height)
        return vx_fail(VX_ERR_INVALID, "a scaled copy of a %dx%d image must be 1x1..%dx%d, not %dx%d",
                       in->width, in->height, in->width, in->height, w, h);
    static const struct {
        enum AVPixelFormat av;
        int planes;
    } formats[] = {
        [VX_PIX_RGB24] = {AV_PIX_FMT_RGB24, 1},
        [VX_PIX_BGR24] = {AV_PIX_FMT_BGR24, 1},
        [VX_PIX_YUV420P] = {AV_PIX_FMT_YUV420P, 3},
        [VX_PIX_NV12] = {AV_PIX_FMT_NV12, 2},
    };
    if ((unsigned)in->format >= sizeof formats / sizeof formats[0])
        return vx_fail(VX_ERR_INVALID, "cannot scale an image in pixel format %d", (int)in->format);
    enum AVPixelFormat fmt = formats[in->format].av;
    int nplanes = formats[in->format].planes;
    for (int p = 0; p < nplanes; p++)
        if (!in->planes[p] || in->strides[p] <= 0)
            return vx_fail(VX_ERR_INVALID, "cannot scale an image: plane %d is missing", p);

    /* YUV stays planar YUV: swscale's planar 8-bit scaler is vectorised,
     * its scaled RGB output is not (1080p at 0.6: about 2.4 ms to YUV, then
     * 0.7 ms for the detector's unscaled conversion of the copy, against
     * 6 ms straight to BGR on this machine).  Packed RGB stays packed RGB,
     * which the detector reads in place. */
    int packed = in->format == VX_PIX_RGB24 || in->format == VX_PIX_BGR24;
    enum AVPixelFormat dst_fmt = packed ? fmt : AV_PIX_FMT_YUV420P;
    int size = av_image_get_buffer_size(dst_fmt, w, h, SCALER_ALIGN);
    if (size <= 0)
        return vx_fail(VX_ERR_INVALID, "cannot size a %dx%d copy", w, h);
    if ((size_t)size > s->cap) {
        av_freep(&s->buf);
        s->cap = 0;
        s->buf = av_malloc((size_t)size);
        if (!s->buf)
            return vx_fail(VX_ERR_NOMEM, "cannot allocate %d bytes for a %dx%d copy", size, w, h);
        s->cap = (size_t)size;
    }
    uint8_t *dst[4] = {NULL};
    int dst_stride[4] = {0};
    if (av_image_fill_arrays(dst, dst_stride, s->buf, dst_fmt, w, h, SCALER_ALIGN) < 0)
        return vx_fail(VX_ERR_INVALID, "cannot lay out a %dx%d copy", w, h);
    /* No colour conversion here: the detector converts the copy as it
     * would the frame (same matrix and range). */
    s->sws = sws_getCachedContext(s->sws, in->width, in->height, fmt, w, h, dst_fmt, SWS_BILINEAR, NULL, NULL,
                                  NULL);
    if (!s->sws)
        return vx_fail(VX_ERR_BACKEND, "cannot set up scaling %dx%d %s -> %dx%d %s", in->width, in->height,
                       av_get_pix_fmt_name(fmt), w, h, av_get_pix_fmt_name(dst_fmt));
    const uint8_t *src[4] = {NULL};
    int src_stride[4] = {0};
    for (int p = 0; p < nplanes; p++) {
        src[p] = in->planes[p];
        src_stride[p] = in->strides[p];
    }
    if (sws_scale(s->sws, src, src_stride, 0, in->height, dst, dst_stride) != h)
        return vx_fail(VX_ERR_BACKEND, "scaling %dx%d %s -> %dx%d %s failed", in->width, in->height,
                       av_get_pix_fmt_name(fmt), w, h, av_get_pix_fmt_name(dst_fmt));
    out->width = w;
    out->height = h;
    out->format = packed ? in->format : VX_PIX_YUV420P;
    for (int p = 0; p < (packed ? 1 : 3); p++) {
        out->planes[p] = dst[p];
        out->strides[p] = dst_stride[p];
    }
    return VX_OK;
}
