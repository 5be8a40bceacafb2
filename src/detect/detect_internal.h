/*
 * detect internals: the post-processing core on raw arrays.
 *
 * Everything here works on plain arrays and vx_detection lists, with no
 * network and no FFmpeg, so that the unit tests can drive the letterbox,
 * the decoder and NMS with hand-built data.  detector.c is the only other user.  None of
 * these functions allocate; callers pass the scratch space (sized once when
 * the detector is created, since they run on every frame).
 *
 * Threading: pure functions on caller-owned memory.
 */
#ifndef VX_DETECT_INTERNAL_H
#define VX_DETECT_INTERNAL_H

#include "detect/vx_detect.h"

/* NanoDet's GFL head: 11 bins per side, 4 sides (left, top, right, bottom). */
#define VX_NANODET_REG_MAX 10
#define VX_NANODET_REG_CH (4 * (VX_NANODET_REG_MAX + 1))
/* Best cells kept per level before NMS (NanoDet's nms_pre), and the cap on
 * (cell, class) candidates per level that bounds the NMS work. */
#define VX_NANODET_TOPK 1000

/* One output level of the head: row-major grid, index = row * grid + col. */
typedef struct {
    const float *cls; /* [grid*grid][num_classes], sigmoid already applied */
    const float *reg; /* [grid*grid][44], logits, side-major */
    int stride;       /* input pixels per cell */
    int grid;         /* cells per row and per column */
} vx_nanodet_level;

/* A cell that passed the threshold, for the per-level top-k. */
typedef struct {
    float score; /* best class score */
    int index;
} vx_scored_cell;

/* Decodes the levels into candidates in network-input pixels, clipped to
 * [0, input_size], as NanoDet's own post-processing does: a cell is
 * considered when its best class score is >= conf; the best
 * VX_NANODET_TOPK such cells per level are box-decoded, and each gives one
 * candidate per class whose score is >= conf (multi-label: one box can be
 * both "cow" and "horse"; the reference detections in NANODET.md need it,
 * e.g. dog.jpg's truck and person.jpg's horse).  At most VX_NANODET_TOPK
 * candidates per level, the best ones, are kept.  `cells` needs room for
 * the largest grid*grid, `out` for nlevels * VX_NANODET_TOPK entries.
 * Returns the number of candidates (unsorted). */
int vx_nanodet_decode(const vx_nanodet_level *levels, int nlevels, int num_classes, int input_size,
                      float conf, vx_scored_cell *cells, vx_detection *out);

/* Distance of one side from its 11 logits: stride * sum_i softmax_i * i. */
float vx_gfl_distance(const float *logits, int stride);

/* Class-aware greedy NMS in place: sorts by descending confidence (ties by
 * class, then position, so the result is deterministic), drops every box
 * whose IoU with a kept box of the same class is > iou, stops after max_det
 * kept boxes.  Returns the number kept, which are dets[0..n). */
int vx_nms(vx_detection *dets, int n, float iou, int max_det);

/* Keep-ratio letterbox of a src_w x src_h image onto a size x size canvas:
 * the image is resized to width x height and placed at (off_x, off_y).
 * The effective scales are width/src_w and height/src_h (they differ from
 * min(size/src_w, size/src_h) by the rounding to whole pixels). */
typedef struct {
    int src_w, src_h;
    int size;
    int width, height;
    int off_x, off_y;
    float scale_x, scale_y;
} vx_letterbox;

/* Fails on sizes <= 0 or an input size <= 0. */
vx_err vx_letterbox_compute(int src_w, int src_h, int size, vx_letterbox *lb);

/* Maps boxes from canvas pixels back to source pixels, (v - off) / scale,
 * clipped to the source image.  Drops boxes left with no area (entirely in
 * the padding); returns how many remain, compacted at the front. */
int vx_letterbox_unmap(const vx_letterbox *lb, vx_detection *dets, int n);

/* One output pixel's two source pixels along an axis and the weight of the
 * second. */
typedef struct {
    int i0, i1;
    float w1;
} vx_lerp_tap;

/* Bilinear taps from src_n to dst_n pixels with half-pixel centres and the
 * edge pixel repeated, as OpenCV's INTER_LINEAR resize (which NanoDet was
 * trained with): no widening of the filter when shrinking. */
void vx_bilinear_taps(int src_n, int dst_n, vx_lerp_tap *taps);

/* The source of vx_letterbox_fill: packed 3 bytes per pixel, with the byte
 * offsets of blue, green and red inside a pixel. */
typedef struct {
    const uint8_t *data;
    int stride;
    int b, g, r;
} vx_packed_src;

/* Writes the whole size x size canvas: the image resized by the taps
 * (xt: lb->width entries, yt: lb->height) at the letterbox offsets, black
 * around it, every value as (v - mean[c]) * inv_std[c] with c in B, G, R
 * order.  Layout: planar B, G, R (NCHW) or, with nhwc, interleaved. */
void vx_letterbox_fill(const vx_packed_src *src, const vx_letterbox *lb, const vx_lerp_tap *xt,
                       const vx_lerp_tap *yt, const float mean[3], const float inv_std[3], int nhwc,
                       float *dst);

#endif
