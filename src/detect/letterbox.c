/*
 * Letterbox geometry and the resize-and-normalise pass.  See
 * detect_internal.h.
 *
 * The resize is our own bilinear rather than libswscale's: swscale widens
 * its bilinear filter when shrinking (an anti-aliasing area filter), while
 * NanoDet was trained on OpenCV's INTER_LINEAR, which samples exactly two
 * source pixels per axis.  The difference is not cosmetic: on darknet's
 * dog.jpg swscale's input moves the dog's top edge by 23 pixels and drops
 * the truck; the plain bilinear reproduces the reference detections in
 * NANODET.md.  Ultralytics' LetterBox resizes with INTER_LINEAR too, so the
 * same pass serves the YOLO families; only the channel order, the
 * normalisation and the border colour differ (vx_input_norm).  Taps are
 * computed once per source size, and the pass writes normalised floats
 * straight into the network input, so there is no intermediate image.
 */
#include <math.h>

#include "detect/detect_internal.h"

vx_err vx_letterbox_compute(int src_w, int src_h, int dst_w, int dst_h, vx_letterbox *lb)
{
    if (src_w <= 0 || src_h <= 0 || dst_w <= 0 || dst_h <= 0)
        return vx_fail(VX_ERR_INVALID, "cannot letterbox a %dx%d image onto %dx%d", src_w, src_h, dst_w,
                       dst_h);
    double scale = fmin((double)dst_w / src_w, (double)dst_h / src_h);
    long w = lround(src_w * scale), h = lround(src_h * scale);
    lb->src_w = src_w;
    lb->src_h = src_h;
    lb->dst_w = dst_w;
    lb->dst_h = dst_h;
    lb->width = (int)(w < 1 ? 1 : w > dst_w ? dst_w : w);
    lb->height = (int)(h < 1 ? 1 : h > dst_h ? dst_h : h);
    lb->off_x = (dst_w - lb->width) / 2;
    lb->off_y = (dst_h - lb->height) / 2;
    lb->scale_x = (float)lb->width / (float)src_w;
    lb->scale_y = (float)lb->height / (float)src_h;
    return VX_OK;
}

static float clampf(float v, float lo, float hi)
{
    return fminf(fmaxf(v, lo), hi); /* NaN becomes lo */
}

int vx_letterbox_unmap(const vx_letterbox *lb, vx_detection *dets, int n)
{
    float w = (float)lb->src_w, h = (float)lb->src_h;
    float ox = (float)lb->off_x, oy = (float)lb->off_y;
    int kept = 0;
    for (int i = 0; i < n; i++) {
        vx_detection d = dets[i];
        d.x1 = clampf((d.x1 - ox) / lb->scale_x, 0.0f, w);
        d.x2 = clampf((d.x2 - ox) / lb->scale_x, 0.0f, w);
        d.y1 = clampf((d.y1 - oy) / lb->scale_y, 0.0f, h);
        d.y2 = clampf((d.y2 - oy) / lb->scale_y, 0.0f, h);
        if (d.x2 > d.x1 && d.y2 > d.y1)
            dets[kept++] = d;
    }
    return kept;
}

int vx_letterbox_drop_padding(const vx_letterbox *lb, vx_detection *dets, int n)
{
    float x0 = (float)lb->off_x, y0 = (float)lb->off_y;
    float x1 = x0 + (float)lb->width, y1 = y0 + (float)lb->height;
    int kept = 0;
    for (int i = 0; i < n; i++) {
        const vx_detection *d = &dets[i];
        if (d->x2 > x0 && d->x1 < x1 && d->y2 > y0 && d->y1 < y1 && d->x2 > d->x1 && d->y2 > d->y1)
            dets[kept++] = *d;
    }
    return kept;
}

void vx_bilinear_taps(int src_n, int dst_n, vx_lerp_tap *taps)
{
    double inv = (double)src_n / dst_n;
    for (int i = 0; i < dst_n; i++) {
        double s = (i + 0.5) * inv - 0.5;
        if (s < 0)
            s = 0;
        int i0 = (int)s;
        double w1 = s - i0;
        if (i0 >= src_n - 1) {
            i0 = src_n - 1;
            w1 = 0;
        }
        taps[i].i0 = i0;
        taps[i].i1 = i0 + (w1 > 0);
        taps[i].w1 = (float)w1;
    }
}

static void fill(float *dst, float v, int n)
{
    for (int i = 0; i < n; i++)
        dst[i] = v;
}

static inline float lerp2(const uint8_t *a0, const uint8_t *a1, const uint8_t *b0, const uint8_t *b1,
                          float wx, float wy)
{
    float top = (float)*a0 + (float)(*a1 - *a0) * wx;
    float bot = (float)*b0 + (float)(*b1 - *b0) * wx;
    return top + (bot - top) * wy;
}

/* NanoDet: B, G, R planes with its mean/std, black border.  Ultralytics:
 * R, G, B planes scaled to 0..1, border grey 114 (LetterBox's fill). */
static const vx_input_norm norm_nanodet = {
    0, {103.53f, 116.28f, 123.675f}, {1.0f / 57.375f, 1.0f / 57.12f, 1.0f / 58.395f}, 0.0f};
static const vx_input_norm norm_ultralytics = {1, {0, 0, 0}, {1.0f / 255, 1.0f / 255, 1.0f / 255}, 114.0f};

const vx_input_norm *vx_family_input_norm(vx_model_family family)
{
    switch (family) {
    case VX_FAMILY_YOLOV5:
    case VX_FAMILY_YOLOV8: return &norm_ultralytics;
    case VX_FAMILY_NANODET:
    case VX_FAMILY_UNKNOWN: break;
    }
    return &norm_nanodet;
}

void vx_letterbox_fill(const vx_packed_src *src, const vx_letterbox *lb, const vx_lerp_tap *xt,
                       const vx_lerp_tap *yt, const vx_input_norm *norm, int nhwc, float *dst)
{
    const int w = lb->dst_w, h = lb->dst_h, x0 = lb->off_x, x1 = lb->off_x + lb->width;
    /* Byte offset inside a source pixel of each output plane's colour. */
    const int o0 = norm->rgb ? src->r : src->b, o1 = src->g, o2 = norm->rgb ? src->b : src->r;
    const float *mean = norm->mean, *inv_std = norm->inv_std;
    float pad[3];
    for (int c = 0; c < 3; c++)
        pad[c] = (norm->pad - mean[c]) * inv_std[c];
    const size_t plane = (size_t)w * (size_t)h;

    for (int y = 0; y < h; y++) {
        int iy = y - lb->off_y;
        int inside = iy >= 0 && iy < lb->height;
        const uint8_t *r0 = NULL, *r1 = NULL;
        float wy = 0;
        if (inside) {
            r0 = src->data + (size_t)yt[iy].i0 * (size_t)src->stride;
            r1 = src->data + (size_t)yt[iy].i1 * (size_t)src->stride;
            wy = yt[iy].w1;
        }
        if (!nhwc) {
            float *p0 = dst + (size_t)y * (size_t)w, *p1 = p0 + plane, *p2 = p1 + plane;
            if (!inside) {
                fill(p0, pad[0], w);
                fill(p1, pad[1], w);
                fill(p2, pad[2], w);
                continue;
            }
            fill(p0, pad[0], x0);
            fill(p1, pad[1], x0);
            fill(p2, pad[2], x0);
            for (int x = x0; x < x1; x++) {
                const vx_lerp_tap *t = &xt[x - x0];
                const uint8_t *a0 = r0 + (size_t)t->i0 * 3, *a1 = r0 + (size_t)t->i1 * 3;
                const uint8_t *b0 = r1 + (size_t)t->i0 * 3, *b1 = r1 + (size_t)t->i1 * 3;
                float wx = t->w1;
                p0[x] = (lerp2(a0 + o0, a1 + o0, b0 + o0, b1 + o0, wx, wy) - mean[0]) * inv_std[0];
                p1[x] = (lerp2(a0 + o1, a1 + o1, b0 + o1, b1 + o1, wx, wy) - mean[1]) * inv_std[1];
                p2[x] = (lerp2(a0 + o2, a1 + o2, b0 + o2, b1 + o2, wx, wy) - mean[2]) * inv_std[2];
            }
            fill(p0 + x1, pad[0], w - x1);
            fill(p1 + x1, pad[1], w - x1);
            fill(p2 + x1, pad[2], w - x1);
        } else {
            float *o = dst + (size_t)y * (size_t)w * 3;
            for (int x = 0; x < w; x++, o += 3) {
                if (!inside || x < x0 || x >= x1) {
                    o[0] = pad[0];
                    o[1] = pad[1];
                    o[2] = pad[2];
                    continue;
                }
                const vx_lerp_tap *t = &xt[x - x0];
                const uint8_t *a0 = r0 + (size_t)t->i0 * 3, *a1 = r0 + (size_t)t->i1 * 3;
                const uint8_t *b0 = r1 + (size_t)t->i0 * 3, *b1 = r1 + (size_t)t->i1 * 3;
                float wx = t->w1;
                o[0] = (lerp2(a0 + o0, a1 + o0, b0 + o0, b1 + o0, wx, wy) - mean[0]) * inv_std[0];
                o[1] = (lerp2(a0 + o1, a1 + o1, b0 + o1, b1 + o1, wx, wy) - mean[1]) * inv_std[1];
                o[2] = (lerp2(a0 + o2, a1 + o2, b0 + o2, b1 + o2, wx, wy) - mean[2]) * inv_std[2];
            }
        }
    }
}
