/*
 * The NanoDet detector: model inspection, preprocessing into the engine's
 * input buffer, and the glue to the post-processing core (post.c).
 *
 * NanoDet is recognised by the shapes of its outputs, never by their names
 * (the TFJS conversion calls them Identity:0 ... Identity_5:0 in no useful
 * order; the ONNX one cls_8, reg_8, ...): every output is [1, N, C]; C == 44
 * (4 sides x 11 bins) is a regression head, any other C is a class head with
 * C classes; the two heads of one level share N = (S / stride)^2.
 *
 * Preprocessing reads packed RGB24/BGR24 frames in place; YUV frames are
 * first converted to BGR24 at their own size by libswscale (which owns the
 * colour matrices and ranges).  One pass then resizes, normalises and pads
 * straight into the network input (letterbox.c explains why the resize is
 * not swscale's).  The SwsContext and the resize taps are cached: a camera
 * sends frames of one size and format, so they are built once and rebuilt
 * only when those change.
 */
#include <libavutil/pixdesc.h>
#include <libavutil/pixfmt.h>
#include <libswscale/swscale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detect/detect_internal.h"

#define MAX_LEVELS 8

/* NanoDet's normalisation, in B, G, R order (the planes' order). */
static const float nanodet_mean[3] = {103.53f, 116.28f, 123.675f};
static const float nanodet_std[3] = {57.375f, 57.12f, 58.395f};

typedef struct {
    int cls_out, reg_out; /* engine output indices */
    int stride, grid;
} level_info;

struct vx_detector {
    vx_nn_model *model;
    vx_nn_engine *engine;
    vx_detect_opts opts;

    int size; /* network input is size x size */
    int nhwc; /* input layout: 0 NCHW (NanoDet), 1 NHWC */
    int num_classes;
    int nlevels;
    level_info levels[MAX_LEVELS];
    const char *const *names;
    char **own_names; /* generated "class N" names when not COCO-80 */

    struct SwsContext *sws; /* YUV -> BGR24 at the source size */
    uint8_t *conv;          /* its output */
    size_t conv_cap;
    vx_lerp_tap *xt, *yt; /* resize taps, `size` entries each ... */
    int taps_w, taps_h;   /* ... built for a source of this size */
    float inv_std[3];
    vx_letterbox lb; /* geometry of the last preprocessed image */
    int have_input;

    vx_scored_cell *cells; /* largest grid*grid */
    vx_detection *cand;    /* nlevels * VX_NANODET_TOPK */
};

static void format_shape(const vx_nn_tensor_info *t, char *buf, size_t len)
{
    size_t n = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < t->rank && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%lld", i ? "," : "", (long long)t->dims[i]);
    if (n < len)
        snprintf(buf + n, len - n, "]");
}

static int isqrt_exact(int64_t n)
{
    if (n <= 0 || n > (int64_t)1 << 40)
        return -1;
    int64_t r = 0;
    while ((r + 1) * (r + 1) <= n)
        r++;
    return r * r == n ? (int)r : -1;
}

static int cmp_level_stride(const void *pa, const void *pb)
{
    const level_info *a = pa, *b = pb;
    return (a->stride > b->stride) - (a->stride < b->stride);
}

/* Works out input size, layout, levels and class count from the shapes. */
static vx_err inspect_model(vx_detector *det, const char *path)
{
    const vx_nn_model *m = det->model;
    char shape[128];
    if (vx_nn_model_input_count(m) != 1)
        return vx_fail(VX_ERR_UNSUPPORTED, "%s: not a NanoDet detector: it has %d inputs, expected 1", path,
                       vx_nn_model_input_count(m));
    vx_nn_tensor_info in;
    vx_nn_model_input_info(m, 0, &in);
    format_shape(&in, shape, sizeof shape);
    const int64_t *d = in.dims;
    int batch_ok = in.rank == 4 && (d[0] == 1 || d[0] <= 0);
    if (batch_ok && d[1] == 3 && d[2] == d[3] && d[2] > 0) {
        det->nhwc = 0;
        det->size = (int)d[2];
    } else if (batch_ok && d[3] == 3 && d[1] == d[2] && d[1] > 0) {
        det->nhwc = 1;
        det->size = (int)d[1];
    } else {
        return vx_fail(VX_ERR_UNSUPPORTED,
                       "%s: not a NanoDet detector: input '%s' has shape %s, expected [1,3,S,S]", path,
                       in.name ? in.name : "?", shape);
    }
    if (det->size > 4096)
        return vx_fail(VX_ERR_UNSUPPORTED, "%s: input size %d is larger than 4096", path, det->size);

    int nout = vx_nn_model_output_count(m);
    int cls[MAX_LEVELS], reg[MAX_LEVELS], ncls = 0, nreg = 0;
    for (int i = 0; i < nout; i++) {
        vx_nn_tensor_info t;
        vx_nn_model_output_info(m, i, &t);
        format_shape(&t, shape, sizeof shape);
        if (t.rank != 3 || t.dims[0] != 1 || t.dims[1] <= 0 || t.dims[2] <= 0)
            return vx_fail(VX_ERR_UNSUPPORTED,
                           "%s: not a NanoDet detector: output %d '%s' has shape %s, expected [1,N,C]", path,
                           i, t.name ? t.name : "?", shape);
        int is_reg = t.dims[2] == VX_NANODET_REG_CH;
        if ((is_reg ? nreg : ncls) == MAX_LEVELS)
            return vx_fail(VX_ERR_UNSUPPORTED, "%s: not a NanoDet detector: more than %d output levels", path,
                           MAX_LEVELS);
        if (is_reg) {
            reg[nreg++] = i;
        } else {
            if (ncls && t.dims[2] != det->num_classes)
                return vx_fail(
                    VX_ERR_UNSUPPORTED,
                    "%s: not a NanoDet detector: class outputs disagree on the class count (%d vs %lld)",
                    path, det->num_classes, (long long)t.dims[2]);
            if (t.dims[2] > 100000)
                return vx_fail(VX_ERR_UNSUPPORTED, "%s: output %d has %lld classes", path, i,
                               (long long)t.dims[2]);
            det->num_classes = (int)t.dims[2];
            cls[ncls++] = i;
        }
    }
    if (ncls == 0 || ncls != nreg)
        return vx_fail(VX_ERR_UNSUPPORTED,
                       "%s: not a NanoDet detector: %d class-score outputs and %d box outputs ([1,N,%d]); "
                       "expected one of each per level",
                       path, ncls, nreg, VX_NANODET_REG_CH);

    int used_reg[MAX_LEVELS] = {0};
    for (int l = 0; l < ncls; l++) {
        vx_nn_tensor_info t;
        vx_nn_model_output_info(m, cls[l], &t);
        int64_t n = t.dims[1];
        int grid = isqrt_exact(n);
        if (grid <= 0 || det->size % grid != 0)
            return vx_fail(VX_ERR_UNSUPPORTED,
                           "%s: not a NanoDet detector: output '%s' has %lld cells, not the square grid of a "
                           "stride that divides the input size %d",
                           path, t.name ? t.name : "?", (long long)n, det->size);
        int match = -1;
        for (int r = 0; r < nreg; r++) {
            vx_nn_tensor_info u;
            vx_nn_model_output_info(m, reg[r], &u);
            if (u.dims[1] == n) {
                if (match >= 0 || used_reg[r])
                    return vx_fail(VX_ERR_UNSUPPORTED,
                                   "%s: not a NanoDet detector: several outputs have %lld cells", path,
                                   (long long)n);
                match = r;
            }
        }
        if (match < 0)
            return vx_fail(VX_ERR_UNSUPPORTED,
                           "%s: not a NanoDet detector: no box output with %lld cells for '%s'", path,
                           (long long)n, t.name ? t.name : "?");
        used_reg[match] = 1;
        det->levels[l] = (level_info){cls[l], reg[match], det->size / grid, grid};
    }
    det->nlevels = ncls;
    qsort(det->levels, (size_t)ncls, sizeof det->levels[0], cmp_level_stride);
    return VX_OK;
}

static vx_err make_names(vx_detector *det)
{
    if (det->num_classes == 80) {
        det->names = vx_coco80_names;
        return VX_OK;
    }
    det->own_names = calloc((size_t)det->num_classes, sizeof *det->own_names);
    if (!det->own_names)
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    for (int i = 0; i < det->num_classes; i++) {
        det->own_names[i] = malloc(24);
        if (!det->own_names[i])
            return vx_fail(VX_ERR_NOMEM, "out of memory");
        snprintf(det->own_names[i], 24, "class%d", i);
    }
    det->names = (const char *const *)det->own_names;
    return VX_OK;
}

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
    if ((err = inspect_model(det, model_path)) || (err = make_names(det)))
        goto fail;

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

    int max_cells = 0;
    for (int l = 0; l < det->nlevels; l++)
        if (det->levels[l].grid * det->levels[l].grid > max_cells)
            max_cells = det->levels[l].grid * det->levels[l].grid;
    det->xt = malloc((size_t)det->size * sizeof *det->xt);
    det->yt = malloc((size_t)det->size * sizeof *det->yt);
    det->cells = malloc((size_t)max_cells * sizeof *det->cells);
    det->cand = malloc((size_t)det->nlevels * VX_NANODET_TOPK * sizeof *det->cand);
    if (!det->xt || !det->yt || !det->cells || !det->cand) {
        err = vx_fail(VX_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int c = 0; c < 3; c++)
        det->inv_std[c] = 1.0f / nanodet_std[c];

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
    if (det->own_names)
        for (int i = 0; i < det->num_classes; i++)
            free(det->own_names[i]);
    free(det->own_names);
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
    size_t need = (size_t)img->width * (size_t)img->height * 3;
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
    if ((err = vx_letterbox_compute(img->width, img->height, det->size, &lb)))
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
    vx_letterbox_fill(&src, &lb, det->xt, det->yt, nanodet_mean, det->inv_std, det->nhwc, in);
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

vx_err vx_detector_postprocess(vx_detector *det, vx_detection *out, int cap, int *count)
{
    *count = 0;
    if (cap > 0 && !out)
        return vx_fail(VX_ERR_INVALID, "detector: no output array");
    if (!det->have_input)
        return vx_fail(VX_ERR_INVALID, "detector: postprocessing before preprocessing");
    vx_nanodet_level lv[MAX_LEVELS];
    for (int l = 0; l < det->nlevels; l++) {
        const level_info *li = &det->levels[l];
        lv[l].cls = vx_nn_engine_output(det->engine, li->cls_out);
        lv[l].reg = vx_nn_engine_output(det->engine, li->reg_out);
        lv[l].stride = li->stride;
        lv[l].grid = li->grid;
        if (!lv[l].cls || !lv[l].reg)
            return vx_fail(VX_ERR_INVALID, "detector: the engine has no outputs; run inference first");
    }
    if (cap <= 0)
        return VX_OK;
    int n = vx_nanodet_decode(lv, det->nlevels, det->num_classes, det->size, det->opts.conf_threshold,
                              det->cells, det->cand);
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
    if (cls < 0 || cls >= det->num_classes)
        return "?";
    return det->names[cls];
}

int vx_detector_class_count(const vx_detector *det)
{
    return det->num_classes;
}

int vx_detector_input_size(const vx_detector *det)
{
    return det->size;
}

vx_nn_engine *vx_detector_engine(vx_detector *det)
{
    return det->engine;
}

const vx_nn_model *vx_detector_model(const vx_detector *det)
{
    return det->model;
}
