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
};

/* Wraps a graph built in memory (tests, loaders) into a model: optimises
 * it when asked, checks it and takes ownership (freed on failure too). */
vx_err vx_nn_model_from_graph(vx_graph *g, int optimize, vx_nn_model **out);

extern const vx_nn_backend_ops vx_nn_ref_ops;
extern const vx_nn_backend_ops vx_nn_dnnl_ops;
int vx_nn_dnnl_available(const char **why);

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
