/*
 * The ref backend: runs the optimised graph node by node with the reference
 * kernels, single-threaded, on dense NCHW buffers planned by liveness.  It
 * is the oracle the cpu backend is tested against, so it shares no kernel
 * code with it.
 */
#include <stdlib.h>
#include <string.h>

#include "nn/engine_internal.h"

typedef struct {
    uint8_t *arena;
    void **buf; /* per tensor */
} ref_impl;

static vx_err ref_create(vx_nn_engine *e)
{
    const vx_graph *g = e->g;
    ref_impl *r = calloc(1, sizeof *r);
    if (!r)
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    e->impl = r;
    r->buf = calloc((size_t)g->nt + 1, sizeof(void *));
    size_t *bytes = calloc((size_t)g->nt + 1, sizeof(size_t)),
           *off = calloc((size_t)g->nt + 1, sizeof(size_t));
    int *def = calloc((size_t)g->nt + 1, sizeof(int)), *last = calloc((size_t)g->nt + 1, sizeof(int));
    vx_err err = VX_OK;
    if (!r->buf || !bytes || !off || !def || !last) {
        err = vx_fail(VX_ERR_NOMEM, "out of memory");
        goto out;
    }
    vx_tensor_last_use(g, last);
    for (int i = 0; i < g->nt; i++)
        def[i] = g->t[i].producer;
    for (int i = 0; i < g->nt; i++) {
        const vx_tensor *t = &g->t[i];
        if (t->data || t->graph_input >= 0 || t->graph_output >= 0 || t->producer < 0)
            continue;
        bytes[i] = (size_t)vx_tensor_elems(t) * (t->dtype == VX_DT_I64 ? 8 : 4);
        if (last[i] < def[i])
            last[i] = def[i];
    }
    size_t total = vx_plan_memory(g->nt, bytes, def, last, 64, off);
    if (total == (size_t)-1 || !(r->arena = aligned_alloc(64, (total + 64) / 64 * 64))) {
        err = vx_fail(VX_ERR_NOMEM, "ref engine: cannot allocate %zu bytes", total);
        goto out;
    }
    for (int i = 0; i < g->nt; i++) {
        const vx_tensor *t = &g->t[i];
        if (t->data)
            r->buf[i] = t->data;
        else if (t->graph_input >= 0)
            r->buf[i] = e->inputs[t->graph_input];
        else if (t->graph_output >= 0)
            r->buf[i] = e->outputs[t->graph_output];
        else if (bytes[i])
            r->buf[i] = r->arena + off[i];
    }
    snprintf(e->desc, sizeof e->desc, "ref: portable C reference kernels, 1 thread, %.1f MiB activations",
             (double)total / (1 << 20));
    e->threads = 1;
    e->stats.reference_steps = g->nn;
    e->stats.arena_mib = (double)total / (1 << 20);
out:
    free(bytes);
    free(off);
    free(def);
    free(last);
    return err;
}

static vx_err ref_run(vx_nn_engine *e)
{
    const vx_graph *g = e->g;
    ref_impl *r = e->impl;
    /* A tensor that is both a graph output and an input of a later node is
     * fine: outputs live in their own buffers. */
    for (int i = 0; i < g->nn; i++) {
        const vx_node *n = &g->n[i];
        const void *in[64];
        void *out[16];
        for (int j = 0; j < n->n_in && j < 64; j++)
            in[j] = n->in[j] >= 0 ? r->buf[n->in[j]] : NULL;
        for (int j = 0; j < n->n_out && j < 16; j++)
            out[j] = r->buf[n->out[j]];
        vx_err err = vx_ref_run_node(g, n, in, out);
        if (err)
            return err;
    }
    /* An output that is directly a graph input or constant: copy. */
    for (int i = 0; i < g->n_outputs; i++) {
        const vx_tensor *t = &g->t[g->outputs[i]];
        if (r->buf[g->outputs[i]] != e->outputs[i] && r->buf[g->outputs[i]])
            memcpy(e->outputs[i], r->buf[g->outputs[i]], (size_t)vx_tensor_elems(t) * 4);
    }
    return VX_OK;
}

static void ref_destroy(vx_nn_engine *e)
{
    ref_impl *r = e->impl;
    free(r->arena);
    free(r->buf);
    free(r);
    e->impl = NULL;
}

const vx_nn_backend_ops vx_nn_ref_ops = {ref_create, ref_run, ref_destroy};
