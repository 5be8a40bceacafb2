/*
 * Post-processing core: options, IoU, NanoDet GFL decoding and class-aware
 * NMS.  See detect_internal.h.
 *
 * The decoder runs on every frame, so it touches the class scores of every
 * cell once (a max over the classes) and does the expensive part, the
 * softmax over 44 regression logits, only for cells that survive the
 * threshold and the per-level top-k.  NMS is greedy over one sorted list:
 * a box is compared only with the boxes already kept (at most max_det), so
 * the cost is O(n log n + n * max_det), never O(n^2) in the candidates.
 */
#include <math.h>
#include <stdlib.h>

#include "detect/detect_internal.h"

void vx_detect_opts_default(vx_detect_opts *opts)
{
    opts->conf_threshold = 0.35f;
    opts->nms_iou = 0.5f;
    opts->max_det = 30;
}

vx_err vx_detect_opts_validate(const vx_detect_opts *opts)
{
    /* Written so that NaN fails every check. */
    if (!(opts->conf_threshold >= 0.0f && opts->conf_threshold <= 1.0f))
        return vx_fail(VX_ERR_INVALID, "confidence threshold %g is outside [0, 1]",
                       (double)opts->conf_threshold);
    if (!(opts->nms_iou > 0.0f && opts->nms_iou <= 1.0f))
        return vx_fail(VX_ERR_INVALID, "NMS IoU threshold %g is outside (0, 1]", (double)opts->nms_iou);
    if (opts->max_det < 1 || opts->max_det > 10000)
        return vx_fail(VX_ERR_INVALID, "max detections %d is outside [1, 10000]", opts->max_det);
    return VX_OK;
}

float vx_box_iou(const vx_detection *a, const vx_detection *b)
{
    float aw = a->x2 - a->x1, ah = a->y2 - a->y1;
    float bw = b->x2 - b->x1, bh = b->y2 - b->y1;
    if (!(aw > 0 && ah > 0 && bw > 0 && bh > 0))
        return 0.0f;
    float iw = fminf(a->x2, b->x2) - fmaxf(a->x1, b->x1);
    float ih = fminf(a->y2, b->y2) - fmaxf(a->y1, b->y1);
    if (iw <= 0 || ih <= 0)
        return 0.0f;
    float inter = iw * ih;
    return inter / (aw * ah + bw * bh - inter);
}

float vx_gfl_distance(const float *logits, int stride)
{
    float m = logits[0];
    for (int i = 1; i <= VX_NANODET_REG_MAX; i++)
        m = fmaxf(m, logits[i]);
    float sum = 0.0f, acc = 0.0f;
    for (int i = 0; i <= VX_NANODET_REG_MAX; i++) {
        float e = expf(logits[i] - m);
        sum += e;
        acc += e * (float)i;
    }
    return acc / sum * (float)stride;
}

static int cmp_cell_desc(const void *pa, const void *pb)
{
    const vx_scored_cell *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}

/* Min-heap on confidence holding the best candidates of one level. */
static void heap_push(vx_detection *heap, int *n, const vx_detection *d)
{
    int i;
    if (*n < VX_NANODET_TOPK) {
        i = (*n)++;
        while (i > 0) {
            int parent = (i - 1) / 2;
            if (heap[parent].conf <= d->conf)
                break;
            heap[i] = heap[parent];
            i = parent;
        }
        heap[i] = *d;
        return;
    }
    if (d->conf <= heap[0].conf)
        return;
    i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && heap[c + 1].conf < heap[c].conf)
            c++;
        if (heap[c].conf >= d->conf)
            break;
        heap[i] = heap[c];
        i = c;
    }
    heap[i] = *d;
}

static float clampf(float v, float lo, float hi)
{
    return fminf(fmaxf(v, lo), hi); /* NaN becomes lo */
}

int vx_nanodet_decode(const vx_nanodet_level *levels, int nlevels, int num_classes, int input_size,
                      float conf, vx_scored_cell *cells, vx_detection *out)
{
    int total = 0;
    float size = (float)input_size;
    for (int l = 0; l < nlevels; l++) {
        const vx_nanodet_level *lv = &levels[l];
        int ncells = lv->grid * lv->grid, n = 0;
        for (int i = 0; i < ncells; i++) {
            const float *s = lv->cls + (size_t)i * (size_t)num_classes;
            float best = s[0];
            for (int c = 1; c < num_classes; c++)
                best = s[c] > best ? s[c] : best;
            if (best >= conf) {
                cells[n].score = best;
                cells[n].index = i;
                n++;
            }
        }
        if (n > VX_NANODET_TOPK) {
            qsort(cells, (size_t)n, sizeof *cells, cmp_cell_desc);
            n = VX_NANODET_TOPK;
        }

        vx_detection *heap = out + total;
        int kept = 0;
        for (int k = 0; k < n; k++) {
            int i = cells[k].index;
            int row = i / lv->grid, col = i % lv->grid;
            const float *r = lv->reg + (size_t)i * VX_NANODET_REG_CH;
            float cx = ((float)col + 0.5f) * (float)lv->stride;
            float cy = ((float)row + 0.5f) * (float)lv->stride;
            vx_detection d;
            d.x1 = clampf(cx - vx_gfl_distance(r, lv->stride), 0.0f, size);
            d.y1 = clampf(cy - vx_gfl_distance(r + 11, lv->stride), 0.0f, size);
            d.x2 = clampf(cx + vx_gfl_distance(r + 22, lv->stride), 0.0f, size);
            d.y2 = clampf(cy + vx_gfl_distance(r + 33, lv->stride), 0.0f, size);
            const float *s = lv->cls + (size_t)i * (size_t)num_classes;
            for (int c = 0; c < num_classes; c++) {
                if (s[c] >= conf) {
                    d.conf = s[c];
                    d.cls = c;
                    heap_push(heap, &kept, &d);
                }
            }
        }
        total += kept;
    }
    return total;
}

static int cmp_det_desc(const void *pa, const void *pb)
{
    const vx_detection *a = pa, *b = pb;
    if (a->conf != b->conf)
        return a->conf > b->conf ? -1 : 1;
    if (a->cls != b->cls)
        return a->cls < b->cls ? -1 : 1;
    if (a->y1 != b->y1)
        return a->y1 < b->y1 ? -1 : 1;
    if (a->x1 != b->x1)
        return a->x1 < b->x1 ? -1 : 1;
    if (a->y2 != b->y2)
        return a->y2 < b->y2 ? -1 : 1;
    return (a->x2 > b->x2) - (a->x2 < b->x2);
}

int vx_nms(vx_detection *dets, int n, float iou, int max_det)
{
    if (n <= 0 || max_det <= 0)
        return 0;
    qsort(dets, (size_t)n, sizeof *dets, cmp_det_desc);
    int kept = 0;
    for (int i = 0; i < n && kept < max_det; i++) {
        vx_detection d = dets[i];
        int keep = 1;
        for (int j = 0; j < kept; j++) {
            if (dets[j].cls == d.cls && vx_box_iou(&dets[j], &d) > iou) {
                keep = 0;
                break;
            }
        }
        if (keep)
            dets[kept++] = d;
    }
    return kept;
}
