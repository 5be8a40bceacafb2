/*
 * MJPEG frames: boxes drawn into a copy of the frame, JPEG by libturbojpeg.
 * See pipeline_internal.h.
 *
 * Boxes are drawn in the image's own format (Y, U and V planes for YUV, so
 * no RGB round trip) with a colour per class.  Limited-range YUV (most
 * video) is written as JFIF's full range: the picture loses a little
 * contrast, which a preview can afford, rather than a conversion pass per
 * frame.
 */
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "pipeline/pipeline_internal.h"

struct vx_jpeg_encoder {
    tjhandle tj;
    int quality;
    uint8_t *scratch; /* copy of the frame for drawing or de-interleaving */
    size_t scratch_cap;
    uint8_t *out; /* tjBufSize() bytes: never reallocated by turbojpeg */
    size_t out_cap;
};

vx_err vx_jpeg_encoder_create(int quality, vx_jpeg_encoder **out)
{
    *out = NULL;
    if (quality < 1 || quality > 100)
        return vx_fail(VX_ERR_INVALID, "JPEG quality must be 1..100, got %d", quality);
    vx_jpeg_encoder *e = calloc(1, sizeof *e);
    if (!e)
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    e->tj = tjInitCompress();
    if (!e->tj) {
        free(e);
        return vx_fail(VX_ERR_BACKEND, "libturbojpeg: %s", tjGetErrorStr2(NULL));
    }
    e->quality = quality;
    *out = e;
    return VX_OK;
}

void vx_jpeg_encoder_destroy(vx_jpeg_encoder *e)
{
    if (!e)
        return;
    tjDestroy(e->tj);
    free(e->scratch);
    free(e->out);
    free(e);
}

static int reserve(uint8_t **buf, size_t *cap, size_t need)
{
    if (*cap >= need)
        return 1;
    uint8_t *p = realloc(*buf, need);
    if (!p)
        return 0;
    *buf = p;
    *cap = need;
    return 1;
}

typedef struct {
    uint8_t r, g, b;
} rgb;

/* Green for people (the class that matters at a gate), then a palette. */
static rgb class_colour(int cls)
{
    static const rgb palette[] = {{0, 220, 0},   {255, 64, 64}, {64, 128, 255}, {255, 200, 0},
                                  {255, 0, 255}, {0, 220, 220}, {255, 128, 0},  {160, 96, 255}};
    return palette[(unsigned)cls % (sizeof palette / sizeof palette[0])];
}

static void rgb_to_yuv(rgb c, uint8_t *y, uint8_t *u, uint8_t *v)
{
    /* BT.601 full range, as JFIF. */
    int Y = (77 * c.r + 150 * c.g + 29 * c.b) >> 8;
    int U = ((-43 * c.r - 85 * c.g + 128 * c.b) >> 8) + 128;
    int V = ((128 * c.r - 107 * c.g - 21 * c.b) >> 8) + 128;
    *y = (uint8_t)(Y < 0 ? 0 : Y > 255 ? 255 : Y);
    *u = (uint8_t)(U < 0 ? 0 : U > 255 ? 255 : U);
    *v = (uint8_t)(V < 0 ? 0 : V > 255 ? 255 : V);
}

/* Fills the border of a rectangle, `t` pixels thick, in a plane with `bpp`
 * bytes per pixel (writing `val`). */
static void rect_border(uint8_t *plane, int stride, int w, int h, int bpp, const uint8_t *val, int x1, int y1,
                        int x2, int y2, int t)
{
    if (x1 < 0)
        x1 = 0;
    if (y1 < 0)
        y1 = 0;
    if (x2 > w - 1)
        x2 = w - 1;
    if (y2 > h - 1)
        y2 = h - 1;
    if (x2 < x1 || y2 < y1)
        return;
    for (int y = y1; y <= y2; y++) {
        uint8_t *row = plane + (size_t)y * (size_t)stride;
        int edge_row = y < y1 + t || y > y2 - t;
        for (int x = x1; x <= x2; x++) {
            if (!edge_row && x >= x1 + t && x <= x2 - t) {
                x = x2 - t; /* skip the inside */
                continue;
            }
            memcpy(row + (size_t)x * (size_t)bpp, val, (size_t)bpp);
        }
    }
}

static void draw_yuv(uint8_t *planes[3], const int strides[3], int w, int h, const vx_pipeline_det *d, int n)
{
    int t = w >= 1280 ? 3 : 2;
    int cw = (w + 1) / 2, ch = (h + 1) / 2;
    for (int i = 0; i < n; i++) {
        uint8_t y, u, v;
        rgb_to_yuv(class_colour(d[i].cls), &y, &u, &v);
        int x1 = (int)d[i].x1, y1 = (int)d[i].y1, x2 = (int)d[i].x2, y2 = (int)d[i].y2;
        rect_border(planes[0], strides[0], w, h, 1, &y, x1, y1, x2, y2, t);
        int ct = (t + 1) / 2;
        rect_border(planes[1], strides[1], cw, ch, 1, &u, x1 / 2, y1 / 2, x2 / 2, y2 / 2, ct);
        rect_border(planes[2], strides[2], cw, ch, 1, &v, x1 / 2, y1 / 2, x2 / 2, y2 / 2, ct);
    }
}

static void draw_packed(uint8_t *pix, int stride, int w, int h, int bgr, const vx_pipeline_det *d, int n)
{
    int t = w >= 1280 ? 3 : 2;
    for (int i = 0; i < n; i++) {
        rgb c = class_colour(d[i].cls);
        uint8_t val[3] = {bgr ? c.b : c.r, c.g, bgr ? c.r : c.b};
        rect_border(pix, stride, w, h, 3, val, (int)d[i].x1, (int)d[i].y1, (int)d[i].x2, (int)d[i].y2, t);
    }
}

vx_err vx_jpeg_encode(vx_jpeg_encoder *e, const vx_image *img, const vx_pipeline_det *dets, int n,
                      const uint8_t **jpeg, size_t *size)
{
    *jpeg = NULL;
    *size = 0;
    const int w = img->width, h = img->height;
    if (w <= 0 || h <= 0 || w > VX_IMAGE_MAX_DIM || h > VX_IMAGE_MAX_DIM)
        return vx_fail(VX_ERR_INVALID, "cannot encode a %dx%d image", w, h);
    unsigned long bound = tjBufSize(w, h, TJSAMP_420);
    if (bound == (unsigned long)-1 || !reserve(&e->out, &e->out_cap, bound))
        return vx_fail(VX_ERR_NOMEM, "JPEG buffer for %dx%d", w, h);
    unsigned char *dst = e->out;
    unsigned long dst_size = (unsigned long)e->out_cap;
    const int flags = TJFLAG_NOREALLOC | TJFLAG_FASTDCT;
    int rc;
    const int cw = (w + 1) / 2, ch = (h + 1) / 2;
    const size_t ysize = (size_t)w * (size_t)h, csize = (size_t)cw * (size_t)ch;

    if (img->format == VX_PIX_YUV420P || img->format == VX_PIX_NV12) {
        const unsigned char *planes[3] = {img->planes[0], img->planes[1], img->planes[2]};
        int strides[3] = {img->strides[0], img->strides[1], img->strides[2]};
        if (img->format == VX_PIX_NV12 || dets) {
            /* Copy into I420: drawing must not touch the shared frame, and
             * turbojpeg reads planar chroma only. */
            if (!reserve(&e->scratch, &e->scratch_cap, ysize + 2 * csize))
                return vx_fail(VX_ERR_NOMEM, "out of memory");
            uint8_t *yp = e->scratch, *up = yp + ysize, *vp = up + csize;
            for (int r = 0; r < h; r++)
                memcpy(yp + (size_t)r * (size_t)w, img->planes[0] + (size_t)r * (size_t)img->strides[0],
                       (size_t)w);
            for (int r = 0; r < ch; r++) {
                uint8_t *ur = up + (size_t)r * (size_t)cw, *vr = vp + (size_t)r * (size_t)cw;
                if (img->format == VX_PIX_NV12) {
                    const uint8_t *uv = img->planes[1] + (size_t)r * (size_t)img->strides[1];
                    for (int c = 0; c < cw; c++) {
                        ur[c] = uv[2 * c];
                        vr[c] = uv[2 * c + 1];
                    }
                } else {
                    memcpy(ur, img->planes[1] + (size_t)r * (size_t)img->strides[1], (size_t)cw);
                    memcpy(vr, img->planes[2] + (size_t)r * (size_t)img->strides[2], (size_t)cw);
                }
            }
            uint8_t *wp[3] = {yp, up, vp};
            strides[0] = w;
            strides[1] = strides[2] = cw;
            if (dets)
                draw_yuv(wp, strides, w, h, dets, n);
            planes[0] = yp, planes[1] = up, planes[2] = vp;
        }
        rc = tjCompressFromYUVPlanes(e->tj, planes, w, strides, h, TJSAMP_420, &dst, &dst_size, e->quality,
                                     flags);
    } else {
        const int bgr = img->format == VX_PIX_BGR24;
        const unsigned char *src = img->planes[0];
        int stride = img->strides[0];
        if (dets) {
            size_t row = (size_t)w * 3;
            if (!reserve(&e->scratch, &e->scratch_cap, row * (size_t)h))
                return vx_fail(VX_ERR_NOMEM, "out of memory");
            for (int r = 0; r < h; r++)
                memcpy(e->scratch + (size_t)r * row, src + (size_t)r * (size_t)stride, row);
            draw_packed(e->scratch, (int)row, w, h, bgr, dets, n);
            src = e->scratch;
            stride = (int)row;
        }
        rc = tjCompress2(e->tj, src, w, stride, h, bgr ? TJPF_BGR : TJPF_RGB, &dst, &dst_size, TJSAMP_420,
                         e->quality, flags);
    }
    if (rc != 0)
        return vx_fail(VX_ERR_BACKEND, "JPEG encoding of a %dx%d frame: %s", w, h, tjGetErrorStr2(e->tj));
    *jpeg = dst;
    *size = dst_size;
    return VX_OK;
}
