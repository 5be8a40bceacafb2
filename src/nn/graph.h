/*
 * nn/graph: the engine's internal graph IR.
 *
 * Tensors and nodes live in two growable arrays and refer to each other by
 * index, which keeps rewriting passes simple (no pointer fix-ups when arrays
 * grow).  Activations are float32 and use one logical layout, NCHW; loaders
 * of NHWC formats wrap NHWC operators in explicit transposes, and the
 * transpose pass cancels them.  Constants are float32 or int64 (integer
 * shapes/indices), owned by their tensor.
 *
 * A pass marks nodes dead instead of deleting them; vx_graph_compact()
 * removes dead nodes and unreferenced tensors and puts the rest in
 * topological order.
 *
 * Threading: a graph is built and optimised by one thread; once wrapped in a
 * vx_nn_model it is read-only.
 */
#ifndef VX_NN_GRAPH_H
#define VX_NN_GRAPH_H

#include <stdint.h>
#include <stdio.h>

#include "nn/vx_nn.h"

#define VX_MAX_ELEMS (INT64_C(1) << 31) /* per tensor: refuse anything larger */

/* Float to int64 for integer data stored as float (shapes, axes, quantised
 * weights): saturates, NaN gives 0, where a plain cast would be undefined. */
static inline int64_t vx_f2i64(double v)
{
    if (!(v == v))
        return 0;
    if (v >= 9223372036854775807.0)
        return INT64_MAX;
    if (v <= -9223372036854775808.0)
        return INT64_MIN;
    return (int64_t)v;
}

typedef enum { VX_DT_F32 = 0, VX_DT_I64 = 1 } vx_dtype;

typedef struct {
    char *name;
    vx_dtype dtype;
    int rank; /* -1 while unknown */
    int64_t dims[VX_NN_MAX_RANK];
    void *data;       /* constant payload (float or int64), NULL for activations */
    int producer;     /* node index, -1 for inputs and constants */
    int graph_input;  /* index into graph inputs or -1 */
    int graph_output; /* index into graph outputs or -1 */
    /* INT8: calibrated range of this activation (symmetric: max |x| the
     * calibrator chose; 0 when not calibrated).  Set by the calibrator
     * (quant.c), stored in engine files, read by the cpu backend. */
    float amax;
    /* INT8: lower end of an asymmetric range (< 0), for tensors stored u8
     * with a zero point (LeakyReLU outputs: their negative side is small);
     * 0 for symmetric ranges.  Set by the calibrator, stored in engine files
     * (a file without it loses only accuracy: the tensor then runs s8). */
    float amin;
} vx_tensor;

typedef enum {
    VX_OP_CONV = 0,
    VX_OP_ADD,
    VX_OP_SUB,
    VX_OP_MUL,
    VX_OP_DIV,
    VX_OP_RELU,
    VX_OP_LEAKY_RELU,
    VX_OP_SIGMOID,
    VX_OP_MAXPOOL,
    VX_OP_AVGPOOL,
    VX_OP_CONCAT,
    VX_OP_SPLIT,
    VX_OP_RESIZE,
    VX_OP_RESHAPE,
    VX_OP_TRANSPOSE,
    VX_OP_PAD,
    VX_OP_IDENTITY,
    VX_OP_SPARSE_TO_DENSE,
    /* Added for ONNX import. */
    VX_OP_SWISH,       /* x * sigmoid(x) (SiLU) */
    VX_OP_HARDSWISH,   /* x * clamp(x / 6 + 1/2, 0, 1) */
    VX_OP_HARDSIGMOID, /* clamp(alpha * x + beta, 0, 1) */
    VX_OP_CLIP,        /* clamp(x, lo, hi) */
    VX_OP_SOFTMAX,
    VX_OP_MATMUL, /* numpy matmul, batch dims broadcast */
    VX_OP_SLICE,
    VX_OP_GATHER, /* indices: input 1, int64 */
    VX_OP_CAST,
    VX_OP_POW, /* broadcasting like Add */
    VX_OP_FLOOR,
    VX_OP_CEIL,
    VX_OP_COUNT
} vx_op;

/* Element-wise activations that a convolution can apply as a post-op. */
typedef enum {
    VX_ACT_NONE = 0,
    VX_ACT_RELU,
    VX_ACT_LEAKY_RELU, /* alpha */
    VX_ACT_SIGMOID,
    VX_ACT_SWISH,     /* x * sigmoid(x): oneDNN eltwise_swish, alpha 1 */
    VX_ACT_HARDSWISH, /* x * clamp(x / 6 + 1/2, 0, 1): oneDNN eltwise_hardswish */
} vx_act;

typedef enum { VX_POST_ACT = 0, VX_POST_SUM = 1 } vx_post_kind;

/* A fused post-op, applied in order after conv + bias.  SUM adds the
 * convolution's extra input (node input 3) element-wise. */
typedef struct {
    vx_post_kind kind;
    vx_act act;
    float alpha;
} vx_postop;

#define VX_MAX_POSTOPS 4

typedef enum { VX_PAD_EXPLICIT = 0, VX_PAD_SAME_UPPER, VX_PAD_SAME_LOWER, VX_PAD_VALID } vx_pad_mode;

typedef struct {
    int kh, kw, sh, sw, dh, dw;
    int pt, pl, pb, pr; /* resolved by shape inference for SAME modes */
    vx_pad_mode pad_mode;
    int groups;
    int n_post;
    vx_postop post[VX_MAX_POSTOPS];
} vx_conv_attr;

typedef struct {
    int kh, kw, sh, sw;
    int pt, pl, pb, pr;
    vx_pad_mode pad_mode;
    int count_include_pad; /* avg pool */
} vx_pool_attr;

typedef enum { VX_RESIZE_NEAREST = 0, VX_RESIZE_LINEAR } vx_resize_mode;
typedef enum {
    VX_COORD_HALF_PIXEL = 0, /* (x + 0.5) / scale - 0.5 */
    VX_COORD_ALIGN_CORNERS,  /* x * (in - 1) / (out - 1) */
    VX_COORD_ASYMMETRIC,     /* x / scale */
    VX_COORD_PYTORCH_HALF_PIXEL,
    VX_COORD_TF_HALF_PIXEL_FOR_NN, /* (x + 0.5) / scale */
} vx_coord_mode;

/* How nearest-neighbour resizing rounds the source coordinate.  DEFAULT is
 * what the TFJS loader wants: floor for asymmetric, round-half-down else. */
typedef enum {
    VX_NEAREST_DEFAULT = 0,
    VX_NEAREST_ROUND_PREFER_FLOOR,
    VX_NEAREST_ROUND_PREFER_CEIL,
    VX_NEAREST_FLOOR,
    VX_NEAREST_CEIL,
} vx_nearest_mode;

typedef struct {
    vx_resize_mode mode;
    vx_coord_mode coord;
    int out_h, out_w; /* 0: from scale */
    float scale_h, scale_w;
    vx_nearest_mode nearest;
} vx_resize_attr;

typedef struct {
    vx_op op;
    char *name;
    int n_in, n_out;
    int *in; /* tensor indices, -1 for an absent optional input */
    int *out;
    int dead;
    int keep_fp32; /* INT8: the sensitivity check left this node in FP32 */
    /* INT8: relative L2 error the sensitivity check measured (0: not
     * measured; informational, engines do not need it). */
    float quant_err;
    union {
        vx_conv_attr conv;
        vx_pool_attr pool;
        vx_resize_attr resize;
        struct {
            float alpha;
        } leaky;
        struct {
            int axis;
        } concat;
        struct {
            int axis;
            int n;
            int64_t *sizes;
        } split; /* sizes owned */
        struct {
            int perm[VX_NN_MAX_RANK];
        } transpose;
        struct {
            int64_t begin[VX_NN_MAX_RANK], end[VX_NN_MAX_RANK];
            float value;
        } pad;
        struct {
            int allowzero;
        } reshape; /* target shape is input 1 */
        struct {
            float alpha, beta;
        } hard; /* HardSigmoid */
        struct {
            float lo, hi;
        } clip;
        /* flat: ONNX before opset 13, one softmax over all dims from axis on */
        struct {
            int axis;
            int flat;
        } softmax;
        /* Per input dim, normalised for its size: start in [0, dim) (or
         * [0, dim] for an empty slice), end as in Python's range, step != 0. */
        struct {
            int64_t start[VX_NN_MAX_RANK], end[VX_NN_MAX_RANK], step[VX_NN_MAX_RANK];
        } slice;
        struct {
            int axis;
        } gather;
        struct {
            vx_dtype to;
        } cast;
    } a;
} vx_node;

typedef struct {
    vx_tensor *t;
    int nt, capt;
    vx_node *n;
    int nn, capn;
    int *inputs, n_inputs;   /* tensor indices */
    int *outputs, n_outputs; /* tensor indices */
    char **out_names;        /* the model's names for its outputs (stable across rewrites) */
    char format[16];
    int opset; /* ONNX default-domain opset, 0 for other formats */
    /* Model metadata (ONNX metadata_props): n_meta key/value strings, owned. */
    char **meta_keys, **meta_values;
    int n_meta;
} vx_graph;

vx_graph *vx_graph_new(void);
void vx_graph_free(vx_graph *g);

/* Adds a tensor; returns its index or -1 on allocation failure. */
int vx_graph_add_tensor(vx_graph *g, const char *name);
/* Adds a constant with a copy of `data` (or zero-filled when data is NULL). */
int vx_graph_add_const(vx_graph *g, const char *name, vx_dtype dt, int rank, const int64_t *dims,
                       const void *data);
/* Adds a node reading `in` and producing n_out fresh tensors named after the
 * node (name, name:1, ...).  Returns the node index or -1. */
int vx_graph_add_node(vx_graph *g, vx_op op, const char *name, const int *in, int n_in, int n_out);
/* Same, writing into existing tensors. */
int vx_graph_add_node_out(vx_graph *g, vx_op op, const char *name, const int *in, int n_in, const int *out,
                          int n_out);
int vx_graph_find_tensor(const vx_graph *g, const char *name);

int64_t vx_tensor_elems(const vx_tensor *t);
int vx_tensor_is_const(const vx_tensor *t);
const char *vx_op_name(vx_op op);
float vx_half_to_float(uint16_t h);

/* Replaces every use of tensor `from` (node inputs and graph outputs) with
 * `to`.  Graph outputs keep their name: the output slot is re-pointed. */
void vx_graph_replace_uses(vx_graph *g, int from, int to);
/* Number of live nodes reading tensor t (+1 when it is a graph output). */
int vx_graph_use_count(const vx_graph *g, int t);
/* The single live node reading t, or -1 when t has zero or several readers or is a graph output. */
int vx_graph_single_consumer(const vx_graph *g, int t);

/* Shape inference for every node in order; fails on inconsistent shapes,
 * absurd sizes (> 2^31 elements) or unknown ranks. */
vx_err vx_graph_infer_shapes(vx_graph *g);
vx_err vx_graph_infer_node(vx_graph *g, vx_node *n);
/* Sets the graph outputs (copies names); returns 0 on allocation failure. */
int vx_graph_set_outputs(vx_graph *g, const int *tensors, const char *const *names, int n);
/* Removes dead nodes and unused tensors, sorts topologically (fails on a
 * cycle), recomputes producers. */
vx_err vx_graph_compact(vx_graph *g);

/* The passes (passes.c). */
vx_err vx_pass_fold_constants(vx_graph *g);
vx_err vx_pass_simplify_transposes(vx_graph *g);
vx_err vx_pass_fuse(vx_graph *g);
vx_err vx_graph_optimize(vx_graph *g);

/* Reference kernels (ref.c), used by the ref backend and constant folding.
 * `in`/`out` are dense row-major buffers of the node's tensors. */
vx_err vx_ref_run_node(const vx_graph *g, const vx_node *n, const void *const *in, void *const *out);

/* Source row/column that nearest-neighbour Resize reads for output o (ref.c). */
int64_t vx_resize_nearest_src(const vx_resize_attr *r, int64_t o, int64_t in, int64_t out, float scale);

void vx_graph_dump(const vx_graph *g, FILE *f);

/* Loaders. */
vx_err vx_load_tfjs(const char *path, vx_graph **out);
/* ONNX ModelProto: from a file (external data is read relative to its
 * folder), or from memory (`name` stands for the file in messages; external
 * data is refused since there is no folder). */
vx_err vx_load_onnx(const char *path, vx_graph **out);
vx_err vx_load_onnx_mem(const char *name, const uint8_t *data, size_t len, vx_graph **out);
/* The same from memory: `weights` holds every shard of the manifest
 * concatenated in manifest order (shard paths are not opened); `name` stands
 * for the file in messages (NULL: "<memory>"). */
vx_err vx_load_tfjs_mem(const char *name, const char *json, size_t json_len, const uint8_t *weights,
                        size_t weights_len, vx_graph **out);

#endif
