/*
 * YOLO decoding for Ultralytics exports.  See detect_internal.h.
 *
 * The exported graphs already decode the boxes (grid, anchors or DFL,
 * strides) and apply the sigmoid, so what is left is the part of
 * Ultralytics' non_max_suppression before the NMS itself: the best class
 * of each box and the confidence threshold.  With N = 8400 boxes at 640
 * and 80 classes that is 672,000 scores per frame, so the loop is shaped
 * by the layout: YOLOv8's [1, 4+nc, N] keeps one class's scores for all
 * boxes contiguous, and a running max over those rows reads the 2.7 MB
 * tensor once, in order, vectorisably, where a per-box gather would jump
 * N floats per class.  YOLOv5's [1, N, 5+nc] is box-major already, and its
 * objectness bounds the score (class scores are sigmoids, <= 1), so a box
 * whose objectness is under the threshold is skipped without reading its
 * classes, as Ultralytics does.
 */
#include <math.h>

#include "detect/detect_internal.h"

static void emit(const vx_yolo_output *o, int i, int cls, float score, vx_detection *out)
{
    const float *p = o->data + (size_t)i * o->box_step;
    size_t cs = o->channel_step;
    float cx = p[0], cy = p[cs], hw = 0.5f * p[2 * cs], hh = 0.5f * p[3 * cs];
    *out = (vx_detection){cx - hw, cy - hh, cx + hw, cy + hh, score, cls};
}

/* Boxes contiguous per channel: running max over the class rows. */
static int decode_channel_rows(const vx_yolo_output *o, float conf, vx_scored_cell *best, vx_detection *out)
{
    const int n = o->num_boxes, first = o->objectness ? 5 : 4;
    const size_t cs = o->channel_step;
    /* From -inf, so that a NaN score is never the best (NaN > x is false). */
    for (int i = 0; i < n; i++)
        best[i] = (vx_scored_cell){-INFINITY, 0};
    for (int c = 0; c < o->num_classes; c++) {
        const float *row = o->data + (size_t)(first + c) * cs;
        for (int i = 0; i < n; i++)
            if (row[i] > best[i].score)
                best[i] = (vx_scored_cell){row[i], c};
    }
    const float *obj = o->objectness ? o->data + 4 * cs : NULL;
    int count = 0;
    for (int i = 0; i < n; i++) {
        float score = obj ? obj[i] * best[i].score : best[i].score;
        if (score >= conf) /* false for NaN */
            emit(o, i, best[i].index, score, &out[count++]);
    }
    return count;
}

/* Boxes contiguous per box (or any other strides). */
static int decode_box_rows(const vx_yolo_output *o, float conf, vx_detection *out)
{
    const int first = o->objectness ? 5 : 4;
    const size_t cs = o->channel_step;
    int count = 0;
    for (int i = 0; i < o->num_boxes; i++) {
        const float *p = o->data + (size_t)i * o->box_step;
        float obj = 1.0f;
        if (o->objectness) {
            obj = p[4 * cs];
            if (!(obj >= conf))
                continue;
        }
        const float *s = p + (size_t)first * cs;
        float best = -INFINITY;
        int cls = 0;
        for (int c = 0; c < o->num_classes; c++) {
            float v = s[(size_t)c * cs];
            if (v > best) {
                best = v;
                cls = c;
            }
        }
        float score = obj * best;
        if (score >= conf)
            emit(o, i, cls, score, &out[count++]);
    }
    return count;
}

int vx_yolo_decode(const vx_yolo_output *o, float conf, vx_scored_cell *best, vx_detection *out)
{
    if (o->num_boxes <= 0 || o->num_classes <= 0)
        return 0;
    if (o->box_step == 1 && o->channel_step != 1)
        return decode_channel_rows(o, conf, best, out);
    return decode_box_rows(o, conf, out);
}
