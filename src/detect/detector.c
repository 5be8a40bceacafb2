/*
 * The detector: model recognition (family.c), preprocessing into the
 * engine's input buffer, and the glue to the decoders (post.c for NanoDet,
 * yolo.c for Ultralytics YOLO) and NMS.
 *
 * Families are recognised by the shapes of their outputs, never by their
 * names (the TFJS NanoDet conversion calls them Identity:0 ...
 * Identity_5:0 in no useful order; exporters of YOLO models anything).
 *
 * Preprocessing reads packed RGB24/BGR24 frames in place; YUV frames are
 * first converted to BGR24 at their own size by libswscale (which owns the
 * colour matrices and ranges).  One pass then resizes, normalises and pads
 * straight into the network input (letterbox.c explains why the resize is
 * not swscale's), in the channel order and normalisation of the family.
 * The SwsContext and the resize taps are cached: a camera sends frames of
 * one size and format, so they are built once and rebuilt only when those
 * change.
 */
#include <libavutil/pixdesc.h>
#include <libavutil/pixfmt.h>
#include <libswscale/swscale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detect/detect_internal.h"

struct vx_detector {
    vx_nn_model *model;
    vx_nn_engine *engine;
    vx_detect_opts opts;
    vx_family_info info;       /* family, input size and layout, outputs */
    const vx_input_norm *norm; /* the family's channel order and scaling */
    char **names;              /* info.num_classes of them */

    struct SwsContext *sws; /* YUV -> BGR24 at the source size */
    uint8_t *conv;          /* its output */
    size_t conv_cap;
    vx_lerp_tap *xt, *yt; /* resize taps, input_w and input_h entries ... */
    int taps_w, taps_h;   /* ... built for a source of this size */
    vx_letterbox lb;      /* geometry of the last preprocessed image */
    int have_input;

    vx_scored_cell *cells; /* NanoDet: largest grid*grid; YOLO: one per box */
    vx_detection *cand;    /* NanoDet: nlevels * VX_NANODET_TOPK; YOLO: one per box */
};

vx_err vx_detector_create(const char *model_path, const vx_nn_engine_opts *engine_opts,
                          const vx_detect_opts *opts, vx_detector **out)
{
    *out = NULL;
    vx_detect_opts o;
    if (opts)
        o = *opts;
    else
        vx_detect_opts_default(&o);
    vx_err err = vx_detect_opts_validate(&o);
    if (err)
        return err;
    vx_video_ffmpeg_quiet();

    vx_detector *det = calloc(1, sizeof *det);
    if (!det)
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    det->opts = o;

    err = vx_nn_model_load(model_path, NULL, &det->model);
    if (err) {
        /* The user needs to know which file; add it unless the loader did. */
        if (!strstr(vx_last_error(), model_path))
            vx_fail_prefix(err, "%s: ", model_path);
        goto fail;
    }
    if (vx_detect_family(det->model, &det->info) != VX_OK) {
        err = vx_fail(VX_ERR_UNSUPPORTED, "%s: %s", model_path, det->info.why);
        goto fail;
    }
    det->norm = vx_family_input_norm(det->info.family);
    vx_names_source src;
    char warn[256];
    if ((err =
             vx_detect_class_names(det->model, det->info.num_classes, &det->names, &src, warn, sizeof warn)))
        goto fail;
    if (warn[0])
        VX_WARN("%s: class names: %s; using %s", model_path, warn,
                src == VX_NAMES_COCO80 ? "the COCO-80 names" : "class0, class1, ...");
    VX_DEBUG("%s: %s", model_path, det->info.why);

    vx_nn_engine_opts eo;
    if (engine_opts) {
        eo = *engine_opts;
    } else {
        vx_nn_engine_opts_default(&eo);
        eo.backend = VX_NN_BACKEND_CPU;
        eo.threads = 0;
    }
    if ((err = vx_nn_engine_create(det->model, &eo, &det->engine)))
        goto fail;

    const vx_family_info *fi = &det->info;
    size_t ncells = 0, ncand = 0;
    if (fi->family == VX_FAMILY_NANODET) {
        for (int l = 0; l < fi->nlevels; l++)
            if ((size_t)fi->levels[l].grid * (size_t)fi->levels[l].grid > ncells)
                ncells = (size_t)fi->levels[l].grid * (size_t)fi->levels[l].grid;
        ncand = (size_t)fi->nlevels * VX_NANODET_TOPK;
    } else {
        ncells = ncand = (size_t)fi->num_anchors;
    }
    det->xt = malloc((size_t)fi->input_w * sizeof *det->xt);
    det->yt = malloc((size_t)fi->input_h * sizeof *det->yt);
    det->cells = malloc(ncells * sizeof *det->cells);
    det->cand = malloc(ncand * sizeof *det->cand);
    if (!det->xt || !det->yt || !det->cells || !det->cand) {
        err = vx_fail(VX_ERR_NOMEM, "out of memory");
        goto fail;
    }

    *out = det;
    return VX_OK;

fail:
    vx_detector_destroy(det);
    return err;
}

void vx_detector_destroy(vx_detector *det)
{
    if (!det)
        return;
    sws_freeContext(det->sws);
    vx_nn_engine_destroy(det->engine);
    vx_nn_model_destroy(det->model);
    vx_detect_free_names(det->names, det->info.num_classes);
    free(det->conv);
    free(det->xt);
    free(det->yt);
    free(det->cells);
    free(det->cand);
    free(det);
}

vx_err vx_detector_set_opts(vx_detector *det, const vx_detect_opts *opts)
{
    vx_err err = vx_detect_opts_validate(opts);
    if (!err)
        det->opts = *opts;
    return err;
}

void vx_detector_get_opts(const vx_detector *det, vx_detect_opts *opts)
{
    *opts = det->opts;
}

/* Checks that the view describes readable planes of a sane size. */
static vx_err check_image(const vx_image *img, enum AVPixelFormat *fmt, int *nplanes)
{
    if (!img)
        return vx_fail(VX_ERR_INVALID, "no image");
    int w = img->width, h = img->height;
    if (w <= 0 || h <= 0 || w > VX_IMAGE_MAX_DIM || h > VX_IMAGE_MAX_DIM)
        return vx_fail(VX_ERR_INVALID, "image size %dx%d is outside 1x1..%dx%d", w, h, VX_IMAGE_MAX_DIM,
                       VX_IMAGE_MAX_DIM);
    int row[3] = {0};
    switch (img->format) {
    case VX_PIX_RGB24:
    case VX_PIX_BGR24:
        *fmt = img->format == VX_PIX_RGB24 ? AV_PIX_FMT_RGB24 : AV_PIX_FMT_BGR24;
        *nplanes = 1;
        row[0] = 3 * w;
        break;
    case VX_PIX_YUV420P:
        *fmt = AV_PIX_FMT_YUV420P;
        *nplanes = 3;
        row[0] = w;
        row[1] = row[2] = (w + 1) / 2;
        break;
    case VX_PIX_NV12:
        *fmt = AV_PIX_FMT_NV12;
        *nplanes = 2;
        row[0] = w;
        row[1] = 2 * ((w + 1) / 2);
        break;
    default: return vx_fail(VX_ERR_INVALID, "unknown pixel format %d", (int)img->format);
    }
    for (int p = 0; p < *nplanes; p++)
        if (!img->planes[p] || img->strides[p] < row[p])
            return vx_fail(VX_ERR_INVALID, "image plane %d: %s (stride %d, row needs %d bytes)", p,
                           img->planes[p] ? "stride too small" : "missing", img->strides[p], row[p]);
    return VX_OK;
}

/* Converts a YUV frame to BGR24 at its own size into det->conv. */
static vx_err convert_to_bgr(vx_detector *det, const vx_image *img, enum AVPixelFormat fmt, int nplanes)
{
    /* libswscale's SIMD YUV->RGB writes whole 16-pixel blocks, past the end
     * of a tightly packed last row when the width is not a multiple of 16
     * (24 bytes measured): the buffer gets that slack. */
    size_t need = (size_t)img->width * (size_t)img->height * 3 + 64;
    if (need > det->conv_cap) {
        uint8_t *p = realloc(det->conv, need);
        if (!p)
            return vx_fail(VX_ERR_NOMEM, "cannot allocate %zu bytes for a %dx%d frame", need, img->width,
                           img->height);
        det->conv = p;
        det->conv_cap = need;
    }
    det->sws = sws_getCachedContext(det->sws, img->width, img->height, fmt, img->width, img->height,
                                    AV_PIX_FMT_BGR24, SWS_BILINEAR, NULL, NULL, NULL);
    if (!det->sws)
        return vx_fail(VX_ERR_BACKEND, "cannot set up the conversion %dx%d %s -> bgr24", img->width,
                       img->height, av_get_pix_fmt_name(fmt));
    const uint8_t *src[4] = {NULL};
    int src_stride[4] = {0};
    for (int p = 0; p < nplanes; p++) {
        src[p] = img->planes[p];
        src_stride[p] = img->strides[p];
    }
    uint8_t *dst[4] = {det->conv, NULL, NULL, NULL};
    int dst_stride[4] = {img->width * 3, 0, 0, 0};
    if (sws_scale(det->sws, src, src_stride, 0, img->height, dst, dst_stride) <= 0)
        return vx_fail(VX_ERR_BACKEND, "conversion %dx%d %s -> bgr24 failed", img->width, img->height,
                       av_get_pix_fmt_name(fmt));
    return VX_OK;
}

vx_err vx_detector_preprocess(vx_detector *det, const vx_image *img)
{
    enum AVPixelFormat fmt = AV_PIX_FMT_NONE;
    int nplanes = 0;
    det->have_input = 0; /* a failed call leaves nothing to post-process */
    vx_err err = check_image(img, &fmt, &nplanes);
    if (err)
        return err;
    vx_letterbox lb;
    if ((err = vx_letterbox_compute(img->width, img->height, det->info.input_w, det->info.input_h, &lb)))
        return err;
    float *in = vx_nn_engine_input(det->engine, 0);
    if (!in)
        return vx_fail(VX_ERR_BACKEND, "the engine has no input buffer");

    vx_packed_src src;
    if (img->format == VX_PIX_RGB24 || img->format == VX_PIX_BGR24) {
        int rgb = img->format == VX_PIX_RGB24;
        src = (vx_packed_src){img->planes[0], img->strides[0], rgb ? 2 : 0, 1, rgb ? 0 : 2};
    } else {
        if ((err = convert_to_bgr(det, img, fmt, nplanes)))
            return err;
        src = (vx_packed_src){det->conv, img->width * 3, 0, 1, 2};
    }
    if (det->taps_w != img->width || det->taps_h != img->height) {
        vx_bilinear_taps(img->width, lb.width, det->xt);
        vx_bilinear_taps(img->height, lb.height, det->yt);
        det->taps_w = img->width;
        det->taps_h = img->height;
    }
    vx_letterbox_fill(&src, &lb, det->xt, det->yt, det->norm, det->info.nhwc, in);
    det->lb = lb;
    det->have_input = 1;
    return VX_OK;
}

vx_err vx_detector_infer(vx_detector *det)
{
    if (!det->have_input)
        return vx_fail(VX_ERR_INVALID, "detector: inference before preprocessing");
    return vx_nn_engine_run(det->engine);
}

static int decode_nanodet(vx_detector *det)
{
    const vx_family_info *fi = &det->info;
    vx_nanodet_level lv[VX_DETECT_MAX_LEVELS];
    for (int l = 0; l < fi->nlevels; l++) {
        const vx_detect_level *li = &fi->levels[l];
        lv[l].cls = vx_nn_engine_output(det->engine, li->cls_out);
        lv[l].reg = vx_nn_engine_output(det->engine, li->reg_out);
        lv[l].stride = li->stride;
        lv[l].grid = li->grid;
        if (!lv[l].cls || !lv[l].reg)
            return -1;
    }
    return vx_nanodet_decode(lv, fi->nlevels, fi->num_classes, fi->input_w, det->opts.conf_threshold,
                             det->cells, det->cand);
}

static int decode_yolo(vx_detector *det)
{
    const vx_family_info *fi = &det->info;
    const float *data = vx_nn_engine_output(det->engine, fi->output);
    if (!data)
        return -1;
    size_t boxes = (size_t)fi->num_anchors;
    size_t channels = (size_t)fi->num_classes + (fi->family == VX_FAMILY_YOLOV5 ? 5 : 4);
    vx_yolo_output o = {data,
                        fi->num_anchors,
                        fi->num_classes,
                        fi->family == VX_FAMILY_YOLOV5,
                        fi->channels_first ? 1 : channels,
                        fi->channels_first ? boxes : 1};
    return vx_yolo_decode(&o, det->opts.conf_threshold, det->cells, det->cand);
}

vx_err vx_detector_postprocess(vx_detector *det, vx_detection *out, int cap, int *count)
{
    *count = 0;
    if (cap > 0 && !out)
        return vx_fail(VX_ERR_INVALID, "detector: no output array");
    if (!det->have_input)
        return vx_fail(VX_ERR_INVALID, "detector: postprocessing before preprocessing");
    int n = det->info.family == VX_FAMILY_NANODET ? decode_nanodet(det) : decode_yolo(det);
    if (n < 0)
        return vx_fail(VX_ERR_INVALID, "detector: the engine has no outputs; run inference first");
    if (cap <= 0)
        return VX_OK;
    n = vx_letterbox_drop_padding(&det->lb, det->cand, n);
    n = vx_nms(det->cand, n, det->opts.nms_iou, cap < det->opts.max_det ? cap : det->opts.max_det);
    n = vx_letterbox_unmap(&det->lb, det->cand, n);
    memcpy(out, det->cand, (size_t)n * sizeof *out);
    *count = n;
    return VX_OK;
}

vx_err vx_detector_run(vx_detector *det, const vx_image *img, vx_detection *out, int cap, int *count)
{
    *count = 0;
    vx_err err = vx_detector_preprocess(det, img);
    if (!err)
        err = vx_detector_infer(det);
    if (!err)
        err = vx_detector_postprocess(det, out, cap, count);
    return err;
}

const char *vx_detector_class_name(const vx_detector *det, int cls)
{
    if (cls < 0 || cls >= det->info.num_classes)
        return "?";
    return det->names[cls];
}

int vx_detector_class_count(const vx_detector *det)
{
    return det->info.num_classes;
}

int vx_detector_input_size(const vx_detector *det)
{
    return det->info.input_w;
}

const vx_family_info *vx_detector_info(const vx_detector *det)
{
    return &det->info;
}

vx_nn_engine *vx_detector_engine(vx_detector *det)
{
    return det->engine;
}

const vx_nn_model *vx_detector_model(const vx_detector *det)
{
    return det->model;
}
