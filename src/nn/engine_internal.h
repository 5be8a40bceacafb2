/*
 * nn/engine_internal: what backends share.  A backend fills in a vtable and
 * owns engine->impl; the user-facing input/output buffers are dense and
 * owned by the engine itself.
 */
#ifndef VX_NN_ENGINE_INTERNAL_H
#define VX_NN_ENGINE_INTERNAL_H

#include "nn/graph.h"
#include "nn/vx_nn.h"

struct vx_nn_model {
    vx_graph *g;
    vx_nn_model_stats stats;
};

typedef struct vx_nn_backend_ops {
    vx_err (*create)(vx_nn_engine *e);
    vx_err (*run)(vx_nn_engine *e);
    void (*destroy)(vx_nn_engine *e);
} vx_nn_backend_ops;

struct vx_nn_engine {
    const vx_nn_model *model;
    const vx_graph *g;
    vx_nn_backend backend;
    vx_nn_precision precision;
    int threads;
    float **inputs;  /* dense, one per graph input */
    float **outputs; /* dense, one per graph output */
    const vx_nn_backend_ops *ops;
    void *impl;
    char desc[256];
    vx_nn_engine_stats stats;
    /* Calibration (quant.c): a FP32 cpu engine that keeps every activation
     * alive and unmodified until the next run, readable through
     * vx_nn_dnnl_read_tensor. */
    int capture;
};

/* Wraps a graph built in memory (tests, loaders) into a model: optimises
 * it when asked, checks it and takes ownership (freed on failure too). */
vx_err vx_nn_model_from_graph(vx_graph *g, int optimize, vx_nn_model **out);

extern const vx_nn_backend_ops vx_nn_ref_ops;
extern const vx_nn_backend_ops vx_nn_dnnl_ops;
int vx_nn_dnnl_available(const char **why);

/* Dense NCHW float32 copy of activation tensor t after a run of a capture
 * engine (engine->capture set before creation). */
vx_err vx_nn_dnnl_read_tensor(const vx_nn_engine *e, int t, float *dst);

/* INT8 planning shared by the calibrator and the cpu backend (quant.c).
 * A tensor is stored unsigned (u8, scale 255/amax) when every value it can
 * hold is >= 0 by construction (ReLU/sigmoid outputs, pools, resizes and
 * concats of such); otherwise signed (s8, 127/amax).  Tensors that share a
 * buffer in place (concat inputs and output) get one signedness.  uns has
 * g->nt entries. */
void vx_quant_signedness(const vx_graph *g, char *uns);
static inline float vx_quant_scale(float amax, int is_unsigned)
{
    return (is_unsigned ? 255.0f : 127.0f) / amax;
}
/* How the cpu backend stores a calibrated tensor: code = round(x * q) + zp
 * in u8 (unsigned or asymmetric range) or s8 (symmetric, zp 0). */
typedef struct {
    float q;
    int zp;
    int is_u8;
} vx_qparam;
void vx_quant_param(const vx_tensor *t, int is_unsigned, vx_qparam *p);

/* 1 when the convolution n runs in INT8 in an INT8 cpu engine: its source
 * (and residual operand) are calibrated, the sensitivity check did not keep
 * it in FP32, and its post-op chain is one the INT8 kernels take (see
 * quant.c).  The one definition the backend, the layer report and engine
 * files share. */
int vx_quant_conv_int8(const vx_graph *g, const vx_node *n);
/* Symmetric per-output-channel weight quantisation: scale[o] = 127 /
 * max|w[o,...]| (1 for an all-zero channel) and the rounded int8 weights. */
void vx_quant_weights(const float *w, int64_t out_ch, int64_t per_ch, float *scale, int8_t *q);

/* Liveness-based buffer planning (memplan.c).  Tensor k lives from step
 * def[k] to step last[k] inclusive and needs bytes[k]; tensors with
 * bytes[k] == 0 are skipped.  Writes a byte offset per tensor (aligned to
 * `align`) and returns the arena size. */
size_t vx_plan_memory(int n, const size_t *bytes, const int *def, const int *last, size_t align,
                      size_t *offset);

/* Step (node index) of the last read of every tensor; graph outputs count as
 * read at step nn.  last[] has g->nt entries, -1 for unread tensors. */
void vx_tensor_last_use(const vx_graph *g, int *last);

#endif
