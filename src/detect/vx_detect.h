/*
 * detect: frame in, boxes out.
 *
 * A detector owns a compiled network (vx_nn_engine) and knows its model
 * family's pre- and post-processing; the family (NanoDet, YOLOv8/YOLO11,
 * YOLOv5) is recognised from the model, see vx_detect_family.  For NanoDet
 * (the default model): letterbox to the network size keeping the aspect
 * ratio (centred, black padding), BGR planes normalised with NanoDet's
 * mean/std, GFL decoding (reg_max 10, strides 8/16/32, centres at
 * (col+0.5)*stride).  For Ultralytics YOLO exports: the same letterbox with
 * grey padding, RGB / 255, the best class of each decoded box.  Then
 * class-aware NMS, boxes mapped back to the original image's pixel
 * coordinates.
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
/* Network input width (416 for NanoDet-g); the height differs only for
 * rectangular YOLO exports (vx_detector_info). */
int vx_detector_input_size(const vx_detector *det);
vx_nn_engine *vx_detector_engine(vx_detector *det);
const vx_nn_model *vx_detector_model(const vx_detector *det);

/* Detector families, recognised from a model's input and output shapes,
 * never from tensor names (exporters name them anything):
 *   nanodet  class/box output pairs [1,N,nc] + [1,N,44] per level (GFL,
 *            reg_max 10), square input; BGR, mean/std, black border;
 *   yolov8   one output [1, 4+nc, N]: YOLOv8 and YOLO11 (anchor-free, boxes
 *            decoded in the graph as cx,cy,w,h in input pixels, class
 *            scores through the sigmoid, no objectness);
 *   yolov5   one output [1, N, 5+nc]: cx,cy,w,h, objectness, class scores,
 *            all decoded in the graph; score = objectness * class score.
 * Both YOLO families take RGB / 255 with a grey (114) letterbox, any H x W.
 * The box count decides the reading: N = sum (H/s)(W/s) over the strides
 * (8, 16, 32 unless Ultralytics' `stride` metadata says otherwise) for
 * yolov8, 3x that for yolov5, in either orientation ([1, N, 4+nc] is a
 * transposed YOLOv8 export).  The class count of the `names` metadata
 * weighs as much: a reading must fit the box count or, in the family's own
 * orientation, the metadata's class count; one that fits both wins, a tie
 * is refused as ambiguous.  Ultralytics' `task` must be 'detect' when
 * given; end-to-end exports (NMS in the graph) are refused. */
typedef enum { VX_FAMILY_UNKNOWN = 0, VX_FAMILY_NANODET, VX_FAMILY_YOLOV5, VX_FAMILY_YOLOV8 } vx_model_family;

#define VX_DETECT_MAX_LEVELS 8

typedef struct {
    int cls_out, reg_out; /* output indices */
    int stride, grid;     /* input pixels per cell, cells per side */
} vx_detect_level;

typedef struct {
    vx_model_family family;
    int num_classes;
    int num_anchors;      /* candidate boxes per image: YOLO's N, NanoDet's cells */
    int input_w, input_h; /* network input in pixels */
    int nhwc;             /* input [1,H,W,3] rather than [1,3,H,W] */
    int nstrides;         /* 0: a YOLO head recognised by its metadata alone */
    int strides[VX_DETECT_MAX_LEVELS];
    /* YOLO: the output decoded and its orientation. */
    int output;
    int channels_first; /* [1, C, N] (YOLOv8's own) rather than [1, N, C] */
    /* NanoDet: the levels, by ascending stride. */
    int nlevels;
    vx_detect_level levels[VX_DETECT_MAX_LEVELS];
    char why[256]; /* what was recognised, or why nothing was, for humans */
} vx_family_info;

const char *vx_model_family_name(vx_model_family family);
/* Recognises the family.  VX_OK when it is one this module decodes;
 * otherwise VX_ERR_UNSUPPORTED, family VX_FAMILY_UNKNOWN and the reason in
 * info->why (and as the error message). */
vx_err vx_detect_family(const vx_nn_model *model, vx_family_info *info);

/* Parses Ultralytics' `names` metadata, a Python literal: a dict
 * "{0: 'person', 1: \"it's\"}" (Python's repr quoting and escapes, ids in
 * any order but each of 0..count-1 once) or a list "['person', ...]" (older
 * YOLOv5 exports).  *names gets count strings, freed with
 * vx_detect_free_names.  Fails with VX_ERR_FORMAT, saying where, on
 * anything else. */
vx_err vx_detect_parse_names(const char *text, char ***names, int *count);
void vx_detect_free_names(char **names, int count);

typedef enum { VX_NAMES_METADATA = 0, VX_NAMES_COCO80, VX_NAMES_GENERIC } vx_names_source;

/* The class names for a model with num_classes classes: the `names`
 * metadata when it parses and has num_classes entries, else COCO-80 when
 * num_classes is 80, else "class0", "class1", ...  When metadata names were
 * present but unusable, `warning` (may be NULL) says why, else it is "".
 * *names gets num_classes strings (vx_detect_free_names). */
vx_err vx_detect_class_names(const vx_nn_model *model, int num_classes, char ***names,
                             vx_names_source *source, char *warning, size_t warning_len);

/* What the detector recognised (family, input size, layout). */
const vx_family_info *vx_detector_info(const vx_detector *det);

/* COCO-80 class names in the usual order. */
extern const char *const vx_coco80_names[80];

/* Intersection over union of two boxes (0 when either is empty). */
float vx_box_iou(const vx_detection *a, const vx_detection *b);

#endif
