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
 * NANODET.md.  Taps are computed once per source size, and the pass writes
 * normalised floats straight into the network input, so there is no
 * intermediate image.
 */
#include <math.h>

#include "detect/detect_internal.h"

vx_err vx_letterbox_compute(int src_w, int src_h, int size, vx_letterbox *lb)
{
    if (src_w <= 0 || src_h <= 0 || size <= 0)
        return vx_fail(VX_ERR_INVALID, "cannot letterbox a %dx%d image onto %dx%d", src_w, src_h, size, size);
    double scale = fmin((double)size / src_w, (double)size / src_h);
    long w = lround(src_w * scale), h = lround(src_h * scale);
    lb->src_w = src_w;
    lb->src_h = src_h;
    lb->size = size;
    lb->width = (int)(w < 1 ? 1 : w > size ? size : w);
    lb->height = (int)(h < 1 ? 1 : h > size ? size : h);
    lb->off_x = (size - lb->width) / 2;
    lb->off_y = (size - lb->height) / 2;
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

void vx_letterbox_fill(const vx_packed_src *src, const vx_letterbox *lb, const vx_lerp_tap *xt,
                       const vx_lerp_tap *yt, const float mean[3], const float inv_std[3], int nhwc,
                       float *dst)
{
    const int s = lb->size, x0 = lb->off_x, x1 = lb->off_x + lb->width;
    const int ob = src->b, og = src->g, orr = src->r;
    const float pad[3] = {-mean[0] * inv_std[0], -mean[1] * inv_std[1], -mean[2] * inv_std[2]};
    const size_t plane = (size_t)s * (size_t)s;

    for (int y = 0; y < s; y++) {
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
            float *b = dst + (size_t)y * (size_t)s, *g = b + plane, *r = g + plane;
            if (!inside) {
                fill(b, pad[0], s);
                fill(g, pad[1], s);
                fill(r, pad[2], s);
                continue;
            }
            fill(b, pad[0], x0);
            fill(g, pad[1], x0);
            fill(r, pad[2], x0);
            for (int x = x0; x < x1; x++) {
                const vx_lerp_tap *t = &xt[x - x0];
                const uint8_t *a0 = r0 + (size_t)t->i0 * 3, *a1 = r0 + (size_t)t->i1 * 3;
                const uint8_t *b0 = r1 + (size_t)t->i0 * 3, *b1 = r1 + (size_t)t->i1 * 3;
                float wx = t->w1;
                b[x] = (lerp2(a0 + ob, a1 + ob, b0 + ob, b1 + ob, wx, wy) - mean[0]) * inv_std[0];
                g[x] = (lerp2(a0 + og, a1 + og, b0 + og, b1 + og, wx, wy) - mean[1]) * inv_std[1];
                r[x] = (lerp2(a0 + orr, a1 + orr, b0 + orr, b1 + orr, wx, wy) - mean[2]) * inv_std[2];
            }
            fill(b + x1, pad[0], s - x1);
            fill(g + x1, pad[1], s - x1);
            fill(r + x1, pad[2], s - x1);
        } else {
            float *o = dst + (size_t)y * (size_t)s * 3;
            for (int x = 0; x < s; x++, o += 3) {
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
                o[0] = (lerp2(a0 + ob, a1 + ob, b0 + ob, b1 + ob, wx, wy) - mean[0]) * inv_std[0];
                o[1] = (lerp2(a0 + og, a1 + og, b0 + og, b1 + og, wx, wy) - mean[1]) * inv_std[1];
                o[2] = (lerp2(a0 + orr, a1 + orr, b0 + orr, b1 + orr, wx, wy) - mean[2]) * inv_std[2];
            }
        }
    }
}
