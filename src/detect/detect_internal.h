/*
 * detect internals: the post-processing core on raw arrays.
 *
 * Everything here works on plain arrays and vx_detection lists, with no
 * network and no FFmpeg, so that the unit tests can drive the letterbox,
 * the decoders and NMS with hand-built data.  detector.c is the only other
 * user.  None of these functions allocate; callers pass the scratch space (sized once when
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

/* A cell that passed the threshold, for the per-level top-k (NanoDet); a
 * box's best class and its score (YOLO). */
typedef struct {
    float score; /* best class score */
    int index;   /* NanoDet: cell index; YOLO: class */
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

/* Keep-ratio letterbox of a src_w x src_h image onto a dst_w x dst_h canvas
 * (the network input; rectangular for YOLO exports with imgsz [H, W]): the
 * image is resized to width x height and placed at (off_x, off_y), centred,
 * the odd padding pixel going to the right and bottom as Ultralytics'
 * LetterBox does.  The effective scales are width/src_w and height/src_h
 * (they differ from min(dst_w/src_w, dst_h/src_h) by the rounding to whole
 * pixels). */
typedef struct {
    int src_w, src_h;
    int dst_w, dst_h;
    int width, height;
    int off_x, off_y;
    float scale_x, scale_y;
} vx_letterbox;

/* Fails on sizes <= 0. */
vx_err vx_letterbox_compute(int src_w, int src_h, int dst_w, int dst_h, vx_letterbox *lb);

/* Maps boxes from canvas pixels back to source pixels, (v - off) / scale,
 * clipped to the source image.  Drops boxes left with no area (entirely in
 * the padding); returns how many remain, compacted at the front. */
int vx_letterbox_unmap(const vx_letterbox *lb, vx_detection *dets, int n);

/* Drops boxes in canvas pixels that have no area over the image part of
 * the canvas (lying in the padding, or NaN): unmapping would drop them
 * anyway, and before NMS they would take places of max_det.  Returns how
 * many remain, compacted at the front. */
int vx_letterbox_drop_padding(const vx_letterbox *lb, vx_detection *dets, int n);

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

/* What a model family expects in its input tensor.  Values are written as
 * (pixel - mean[k]) * inv_std[k] for plane k, with pixel in 0..255; the
 * letterbox border is the pixel value `pad` normalised the same way. */
typedef struct {
    int rgb;          /* planes in R, G, B order (Ultralytics), else B, G, R (NanoDet) */
    float mean[3];    /* per plane, in plane order */
    float inv_std[3]; /* per plane, in plane order */
    float pad;        /* 0 (black) for NanoDet, 114 (grey) for Ultralytics */
} vx_input_norm;

/* The normalisation of a family (NanoDet's for VX_FAMILY_UNKNOWN). */
const vx_input_norm *vx_family_input_norm(vx_model_family family);

/* Writes the whole dst_w x dst_h canvas: the image resized by the taps
 * (xt: lb->width entries, yt: lb->height) at the letterbox offsets, the
 * padding around it, every value normalised as `norm` says.  Layout:
 * planar (NCHW) or, with nhwc, interleaved. */
void vx_letterbox_fill(const vx_packed_src *src, const vx_letterbox *lb, const vx_lerp_tap *xt,
                       const vx_lerp_tap *yt, const vx_input_norm *norm, int nhwc, float *dst);

/* One YOLO output tensor: num_boxes boxes of 4 + objectness + num_classes
 * channels, all decoded by the exported graph: (cx, cy, w, h) in
 * network-input pixels, then for YOLOv5 the objectness, then the class
 * scores, sigmoid already applied.  Channel c of box i is at
 * data[i * box_step + c * channel_step]: YOLOv8's [1, 4+nc, N] has
 * box_step 1 and channel_step N, YOLOv5's [1, N, 5+nc] the reverse. */
typedef struct {
    const float *data;
    int num_boxes;
    int num_classes;
    int objectness; /* YOLOv5: channel 4 is the objectness, score = obj * class score */
    size_t box_step, channel_step;
} vx_yolo_output;

/* Decodes into candidates in network-input pixels as Ultralytics'
 * non_max_suppression does by default (multi_label=False): each box with
 * its best class only, kept when its score is >= conf.  `best` is scratch
 * for num_boxes entries, `out` needs room for num_boxes candidates.
 * Returns the number of candidates (unsorted, not clipped). */
int vx_yolo_decode(const vx_yolo_output *o, float conf, vx_scored_cell *best, vx_detection *out);

#endif
