/*
 * detect: frame in, boxes out.
 *
 * A detector owns a compiled network (vx_nn_engine) and knows its model
 * family's pre- and post-processing.  For NanoDet (the default model):
 * letterbox to the network size keeping the aspect ratio (centred, black
 * padding), BGR planes normalised with NanoDet's mean/std, GFL decoding
 * (reg_max 10, strides 8/16/32, centres at (col+0.5)*stride), class-aware
 * NMS, boxes mapped back to the original image's pixel coordinates.
 *
 * Threading: a detector is used by one thread at a time; create one per
 * thread or serialise calls.
 */
#ifndef VX_DETECT_H
#define VX_DETECT_H

#include "core/vx_core.h"
#include "nn/vx_nn.h"
#include "video/vx_image.h"

typedef struct {
    float x1, y1, x2, y2; /* pixels of the image given to vx_detector_run */
    float conf;           /* 0..1 */
    int cls;              /* class id, index into the class names */
} vx_detection;

typedef struct {
    float conf_threshold; /* default 0.35 */
    float nms_iou;        /* default 0.5 */
    int max_det;          /* default 30 */
} vx_detect_opts;

void vx_detect_opts_default(vx_detect_opts *opts);
/* Checks ranges: conf in [0,1], iou in (0,1], max_det in [1, 10000]. */
vx_err vx_detect_opts_validate(const vx_detect_opts *opts);

typedef struct vx_detector vx_detector;

/* Loads the model at model_path and compiles it with engine_opts (NULL: cpu
 * backend, all cores).  Fails with a clear message when the model is not a
 * detector this module knows how to decode. */
vx_err vx_detector_create(const char *model_path, const vx_nn_engine_opts *engine_opts,
                          const vx_detect_opts *opts, vx_detector **out);
void vx_detector_destroy(vx_detector *det);

/* Changes the thresholds between frames (validated as above). */
vx_err vx_detector_set_opts(vx_detector *det, const vx_detect_opts *opts);
void vx_detector_get_opts(const vx_detector *det, vx_detect_opts *opts);

/* Runs the whole chain on one image.  Writes at most `cap` detections sorted
 * by descending confidence; *count gets how many were written. */
vx_err vx_detector_run(vx_detector *det, const vx_image *img, vx_detection *out, int cap, int *count);

/* The steps of vx_detector_run, exposed for benchmarks and tests. */
vx_err vx_detector_preprocess(vx_detector *det, const vx_image *img);
vx_err vx_detector_infer(vx_detector *det);
vx_err vx_detector_postprocess(vx_detector *det, vx_detection *out, int cap, int *count);

const char *vx_detector_class_name(const vx_detector *det, int cls);
int vx_detector_class_count(const vx_detector *det);
int vx_detector_input_size(const vx_detector *det); /* 416 for NanoDet-g */
vx_nn_engine *vx_detector_engine(vx_detector *det);
const vx_nn_model *vx_detector_model(const vx_detector *det);

/* COCO-80 class names in the usual order. */
extern const char *const vx_coco80_names[80];

/* Intersection over union of two boxes (0 when either is empty). */
float vx_box_iou(const vx_detection *a, const vx_detection *b);

#endif
