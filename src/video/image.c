/*
 * Still-image decoding through FFmpeg.  See vx_image.h.
 *
 * The file is opened with libavformat so that every image format FFmpeg
 * knows is handled by content, not by extension: the *_pipe demuxers probe
 * the bytes (jpeg_pipe, png_pipe, bmp_pipe, ppm_pipe, ...), image2 takes over
 * when only the extension is recognisable.  Other demuxers are refused: a
 * still-image loader has no business following playlists or decoding the
 * first frame of a movie.  Paths are passed with an explicit "file:" prefix
 * and only the file protocol is allowed, so a name containing ':' or '%' is
 * always a plain file name.
 *
 * The decoded frame, whatever its pixel format (YUVJ, PAL8, GRAY, RGBA,
 * 16-bit...), is converted once by libswscale into one owned RGB24 buffer.
 */
#include "video/video_internal.h"
#include "video/vx_image.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/log.h>
#include <libswscale/swscale.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct vx_image_buf {
    vx_image view;
    uint8_t *pixels;
};

static pthread_once_t quiet_once = PTHREAD_ONCE_INIT;

static void quiet_init(void)
{
    av_log_set_level(vx_log_get_level() == VX_LOG_DEBUG ? AV_LOG_VERBOSE : AV_LOG_QUIET);
}

void vx_video_ffmpeg_quiet(void)
{
    pthread_once(&quiet_once, quiet_init);
}

static int is_image_demuxer(const char *name)
{
    size_t n = strlen(name);
    if (n > 5 && !strcmp(name + n - 5, "_pipe"))
        return 1;
    return !strcmp(name, "image2") || !strcmp(name, "gif") || !strcmp(name, "apng");
}

enum AVPixelFormat vx_video_unjpeg_format(enum AVPixelFormat fmt, int *full_range)
{
    switch (fmt) {
    case AV_PIX_FMT_YUVJ420P: *full_range = 1; return AV_PIX_FMT_YUV420P;
    case AV_PIX_FMT_YUVJ422P: *full_range = 1; return AV_PIX_FMT_YUV422P;
    case AV_PIX_FMT_YUVJ444P: *full_range = 1; return AV_PIX_FMT_YUV444P;
    case AV_PIX_FMT_YUVJ440P: *full_range = 1; return AV_PIX_FMT_YUV440P;
    case AV_PIX_FMT_YUVJ411P: *full_range = 1; return AV_PIX_FMT_YUV411P;
    default: return fmt;
    }
}

static vx_err size_error(const char *path, int w, int h)
{
    if (w <= 0 || h <= 0)
        return vx_fail(VX_ERR_FORMAT, "%s: image has zero size (%dx%d)", path, w, h);
    return vx_fail(VX_ERR_UNSUPPORTED, "%s: image is %dx%d, larger than the limit of %dx%d", path, w, h,
                   VX_IMAGE_MAX_DIM, VX_IMAGE_MAX_DIM);
}

static int size_ok(int w, int h)
{
    return w > 0 && h > 0 && w <= VX_IMAGE_MAX_DIM && h <= VX_IMAGE_MAX_DIM;
}

static vx_err convert_frame(const char *path, const AVFrame *frame, vx_image_buf **out)
{
    int w = frame->width, h = frame->height;
    if (!size_ok(w, h))
        return size_error(path, w, h);

    int full_range = frame->color_range == AVCOL_RANGE_JPEG;
    enum AVPixelFormat src_fmt = vx_video_unjpeg_format((enum AVPixelFormat)frame->format, &full_range);
    if (!sws_isSupportedInput(src_fmt)) {
        const char *name = av_get_pix_fmt_name(src_fmt);
        return vx_fail(VX_ERR_UNSUPPORTED, "%s: pixel format %s cannot be converted to RGB", path,
                       name ? name : "(unknown)");
    }

    vx_image_buf *buf = calloc(1, sizeof *buf);
    size_t stride = (size_t)w * 3, bytes = stride * (size_t)h; /* <= 805 MB by the size limit */
    if (buf)
        buf->pixels = malloc(bytes);
    if (!buf || !buf->pixels) {
        free(buf);
        return vx_fail(VX_ERR_NOMEM, "%s: cannot allocate %zu bytes for a %dx%d image", path, bytes, w, h);
    }

    /* Same size, so the filter only matters for chroma upsampling; full
     * chroma interpolation and accurate rounding keep solid colours exact. */
    struct SwsContext *sws = sws_getContext(
        w, h, src_fmt, w, h, AV_PIX_FMT_RGB24,
        SWS_BILINEAR | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT | SWS_FULL_CHR_H_INP, NULL, NULL, NULL);
    if (!sws) {
        free(buf->pixels);
        free(buf);
        return vx_fail(VX_ERR_BACKEND, "%s: cannot set up the conversion from %s to RGB", path,
                       av_get_pix_fmt_name(src_fmt));
    }
    const int *coefs = sws_getCoefficients(SWS_CS_DEFAULT);
    sws_setColorspaceDetails(sws, coefs, full_range, coefs, 1, 0, 1 << 16, 1 << 16);

    uint8_t *dst[4] = {buf->pixels, NULL, NULL, NULL};
    int dst_stride[4] = {(int)stride, 0, 0, 0};
    int rows = sws_scale(sws, (const uint8_t *const *)frame->data, frame->linesize, 0, h, dst, dst_stride);
    sws_freeContext(sws);
    if (rows != h) {
        free(buf->pixels);
        free(buf);
        return vx_fail(VX_ERR_BACKEND, "%s: pixel conversion to RGB failed", path);
    }

    buf->view.width = w;
    buf->view.height = h;
    buf->view.format = VX_PIX_RGB24;
    buf->view.planes[0] = buf->pixels;
    buf->view.strides[0] = (int)stride;
    *out = buf;
    return VX_OK;
}

/* Refuses oversized frames before the decoder allocates them: a 20-byte
 * file can claim 20000x10000 pixels. */
static int limited_get_buffer(AVCodecContext *dec, AVFrame *frame, int flags)
{
    if (!size_ok(dec->width, dec->height))
        return AVERROR(ERANGE);
    return avcodec_default_get_buffer2(dec, frame, flags);
}

/* Reads packets of stream `index` until the decoder gives one frame. */
static int decode_first_frame(AVFormatContext *fmt, AVCodecContext *dec, int index, AVFrame *frame)
{
    AVPacket *pkt = av_packet_alloc();
    if (!pkt)
        return AVERROR(ENOMEM);
    int ret, flushing = 0;
    for (;;) {
        ret = avcodec_receive_frame(dec, frame);
        if (ret != AVERROR(EAGAIN) || flushing)
            break;
        ret = av_read_frame(fmt, pkt);
        if (ret == AVERROR_EOF) {
            flushing = 1;
            ret = avcodec_send_packet(dec, NULL);
        } else if (ret >= 0) {
            if (pkt->stream_index == index)
                ret = avcodec_send_packet(dec, pkt);
            av_packet_unref(pkt);
            /* A broken packet from a multi-frame file (GIF) is worth
             * skipping; for a single image it is the end anyway. */
            if (ret == AVERROR_INVALIDDATA)
                ret = 0;
        }
        if (ret < 0)
            break;
    }
    av_packet_free(&pkt);
    /* Drained without a frame: the file held nothing decodable. */
    if (ret == AVERROR_EOF || (ret == AVERROR(EAGAIN) && flushing))
        ret = AVERROR_INVALIDDATA;
    return ret;
}

vx_err vx_image_load(const char *path, vx_image_buf **out)
{
    *out = NULL;
    vx_video_ffmpeg_quiet();
    if (!path || !*path)
        return vx_fail(VX_ERR_INVALID, "empty image path");

    size_t url_len = strlen(path) + 6;
    char *url = malloc(url_len);
    if (!url)
        return vx_fail(VX_ERR_NOMEM, "%s: out of memory", path);
    snprintf(url, url_len, "file:%s", path);

    AVFormatContext *fmt = NULL;
    AVCodecContext *dec = NULL;
    AVFrame *frame = NULL;
    AVDictionary *dict = NULL;
    vx_err err = VX_OK;
    av_dict_set(&dict, "protocol_whitelist", "file", 0);
    av_dict_set(&dict, "pattern_type", "none", 0); /* image2: the name is not a %d pattern */

    int ret = avformat_open_input(&fmt, url, NULL, &dict);
    av_dict_free(&dict);
    free(url);
    if (ret < 0) {
        if (ret == AVERROR(ENOENT) || ret == AVERROR(EACCES) || ret == AVERROR(EISDIR))
            return vx_fail(VX_ERR_IO, "%s: cannot open (%s)", path, av_err2str(ret));
        return vx_fail(VX_ERR_FORMAT, "%s: not an image (FFmpeg: %s)", path, av_err2str(ret));
    }
    if (!is_image_demuxer(fmt->iformat->name)) {
        err = vx_fail(VX_ERR_FORMAT, "%s: not an image (FFmpeg reads it as '%s')", path, fmt->iformat->name);
        goto done;
    }

    const AVCodec *codec = NULL;
    int index = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (index < 0 || !codec) {
        err = vx_fail(VX_ERR_FORMAT, "%s: not an image (FFmpeg: %s)", path,
                      av_err2str(index < 0 ? index : AVERROR_DECODER_NOT_FOUND));
        goto done;
    }
    const AVCodecParameters *par = fmt->streams[index]->codecpar;
    if ((par->width || par->height) && !size_ok(par->width, par->height)) {
        err = size_error(path, par->width, par->height);
        goto done;
    }

    dec = avcodec_alloc_context3(codec);
    frame = av_frame_alloc();
    if (!dec || !frame) {
        err = vx_fail(VX_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    ret = avcodec_parameters_to_context(dec, par);
    if (ret >= 0) {
        dec->thread_count = 1;
        dec->get_buffer2 = limited_get_buffer;
        ret = avcodec_open2(dec, codec, NULL);
    }
    if (ret < 0) {
        err = vx_fail(VX_ERR_FORMAT, "%s: not an image (FFmpeg: %s)", path, av_err2str(ret));
        goto done;
    }

    ret = decode_first_frame(fmt, dec, index, frame);
    if (ret < 0) {
        /* The header may have been read before the decoder gave up. */
        if ((dec->width || dec->height) && !size_ok(dec->width, dec->height))
            err = size_error(path, dec->width, dec->height);
        else
            err = vx_fail(VX_ERR_FORMAT, "%s: not an image (FFmpeg: %s)", path, av_err2str(ret));
        goto done;
    }
    err = convert_frame(path, frame, out);

done:
    av_frame_free(&frame);
    avcodec_free_context(&dec);
    avformat_close_input(&fmt);
    return err;
}

const vx_image *vx_image_buf_view(const vx_image_buf *buf)
{
    return &buf->view;
}

void vx_image_buf_destroy(vx_image_buf *buf)
{
    if (!buf)
        return;
    free(buf->pixels);
    free(buf);
}
