/* Model loading (format detection + optimisation) and the engine front-end
 * that dispatches to a backend.  See vx_nn.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "nn/engine_internal.h"

void vx_nn_load_opts_default(vx_nn_load_opts *opts)
{
    opts->optimize = 1;
}

static void compute_stats(vx_nn_model *m)
{
    const vx_graph *g = m->g;
    vx_nn_model_stats *s = &m->stats;
    memset(s, 0, sizeof *s);
    s->format = g->format;
    s->nodes = g->nn;
    for (int i = 0; i < g->nt; i++)
        if (g->t[i].data && g->t[i].dtype == VX_DT_F32)
            s->params += vx_tensor_elems(&g->t[i]);
    s->opset = g->opset;
    for (int i = 0; i < g->nn; i++) {
        const vx_node *n = &g->n[i];
        if (n->op == VX_OP_MATMUL) {
            const vx_tensor *a = &g->t[n->in[0]], *y = &g->t[n->out[0]];
            s->flops += 2.0 * (double)vx_tensor_elems(y) * (double)a->dims[a->rank - 1];
        }
        if (n->op != VX_OP_CONV)
            continue;
        s->convs++;
        const vx_tensor *w = &g->t[n->in[1]], *y = &g->t[n->out[0]];
        double macs = (double)vx_tensor_elems(y) * (double)(w->dims[1] * w->dims[2] * w->dims[3]);
        s->flops += 2.0 * macs;
    }
}

static int looks_like_json(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    int c;
    while ((c = fgetc(f)) == ' ' || c == '\n' || c == '\r' || c == '\t')
        ;
    fclose(f);
    return c == '{';
}

/* ONNX: by extension, or by content: a serialized ModelProto starts with
 * one of its own fields (ir_version first when written by the onnx
 * package; any top-level field is accepted). */
static int looks_like_onnx(const char *path)
{
    size_t l = strlen(path);
    if (l > 5 && !strcasecmp(path + l - 5, ".onnx"))
        return 1;
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    int c = fgetc(f);
    fclose(f);
    static const unsigned char tags[] = {0x08, 0x12, 0x1a, 0x22, 0x28, 0x32, 0x3a, 0x42, 0x72};
    for (size_t i = 0; i < sizeof tags; i++)
        if (c == tags[i])
            return 1;
    return 0;
}

vx_err vx_nn_model_load(const char *path, const vx_nn_load_opts *opts, vx_nn_model **out)
{
    *out = NULL;
    vx_nn_load_opts def;
    if (!opts) {
        vx_nn_load_opts_default(&def);
        opts = &def;
    }
    if (vx_nn_is_engine_file(path) == 1) /* optimised when it was saved */
        return vx_nn_engine_file_load(path, NULL, out);
    int j = looks_like_json(path);
    if (j < 0)
        return vx_fail(VX_ERR_IO, "%s: cannot open model file (%s)", path, strerror(errno));
    vx_graph *g = NULL;
    vx_err e;
    if (j)
        e = vx_load_tfjs(path, &g);
    else if (looks_like_onnx(path))
        e = vx_load_onnx(path, &g);
    else
        e = vx_fail(VX_ERR_FORMAT,
                    "%s: unknown model format (expected an ONNX model or a TensorFlow.js model.json)", path);
    if (e)
        return e;
    e = vx_nn_model_from_graph(g, opts->optimize, out);
    return e ? vx_fail_prefix(e, "%s: ", path) : VX_OK;
}

vx_err vx_nn_model_load_tfjs_mem(const char *json, size_t json_len, const uint8_t *weights,
                                 size_t weights_len, const vx_nn_load_opts *opts, vx_nn_model **out)
{
    static const char name[] = "<memory>";
    *out = NULL;
    vx_nn_load_opts def;
    if (!opts) {
        vx_nn_load_opts_default(&def);
        opts = &def;
    }
    vx_graph *g = NULL;
    vx_err e = vx_load_tfjs_mem(name, json, json_len, weights, weights_len, &g);
    if (e)
        return e;
    e = vx_nn_model_from_graph(g, opts->optimize, out);
    return e ? vx_fail_prefix(e, "%s: ", name) : VX_OK;
}

vx_err vx_nn_model_load_onnx_mem(const uint8_t *data, size_t len, const vx_nn_load_opts *opts,
                                 vx_nn_model **out)
{
    static const char name[] = "<memory>";
    *out = NULL;
    vx_nn_load_opts def;
    if (!opts) {
        vx_nn_load_opts_default(&def);
        opts = &def;
    }
    vx_graph *g = NULL;
    vx_err e = vx_load_onnx_mem(name, data, len, &g);
    if (e)
        return e;
    e = vx_nn_model_from_graph(g, opts->optimize, out);
    return e ? vx_fail_prefix(e, "%s: ", name) : VX_OK;
}

vx_err vx_nn_model_from_graph(vx_graph *g, int optimize, vx_nn_model **out)
{
    *out = NULL;
    /* Constant sub-graphs are folded either way: shapes depend on them. */
    vx_err e = optimize ? vx_graph_optimize(g) : vx_graph_compact(g);
    if (!e && !optimize)
        e = vx_pass_fold_constants(g);
    if (!e)
        e = vx_graph_infer_shapes(g);
    if (!e) {
        for (int i = 0; i < g->n_inputs; i++)
            if (g->t[g->inputs[i]].rank < 0 || vx_tensor_elems(&g->t[g->inputs[i]]) <= 0)
                e = vx_fail(VX_ERR_FORMAT, "input %d has no static shape", i);
            else if (vx_tensor_elems(&g->t[g->inputs[i]]) > VX_MAX_ELEMS) /* engines allocate it */
                e = vx_fail(VX_ERR_FORMAT, "input '%s' has more than 2^31 elements", g->t[g->inputs[i]].name);
        for (int i = 0; i < g->n_outputs && !e; i++)
            if (g->t[g->outputs[i]].dtype != VX_DT_F32)
                e = vx_fail(VX_ERR_UNSUPPORTED, "output '%s' is not float", g->out_names[i]);
    }
    if (e) {
        vx_graph_free(g);
        return e;
    }
    vx_nn_model *m = calloc(1, sizeof *m);
    if (!m) {
        vx_graph_free(g);
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    }
    m->g = g;
    compute_stats(m);
    *out = m;
    return VX_OK;
}

void vx_nn_model_destroy(vx_nn_model *m)
{
    if (!m)
        return;
    vx_graph_free(m->g);
    free(m);
}

int vx_nn_model_input_count(const vx_nn_model *m)
{
    return m->g->n_inputs;
}
int vx_nn_model_output_count(const vx_nn_model *m)
{
    return m->g->n_outputs;
}

static void info_of(const vx_tensor *t, const char *name, vx_nn_tensor_info *info)
{
    info->name = name;
    info->rank = t->rank;
    for (int i = 0; i < VX_NN_MAX_RANK; i++)
        info->dims[i] = i < t->rank ? t->dims[i] : 0;
}

void vx_nn_model_input_info(const vx_nn_model *m, int i, vx_nn_tensor_info *info)
{
    const vx_tensor *t = &m->g->t[m->g->inputs[i]];
    info_of(t, t->name, info);
}

void vx_nn_model_output_info(const vx_nn_model *m, int i, vx_nn_tensor_info *info)
{
    info_of(&m->g->t[m->g->outputs[i]], m->g->out_names[i], info);
}

int vx_nn_model_find_output(const vx_nn_model *m, const char *name)
{
    for (int i = 0; i < m->g->n_outputs; i++)
        if (!strcmp(m->g->out_names[i], name))
            return i;
    return -1;
}

void vx_nn_model_get_stats(const vx_nn_model *m, vx_nn_model_stats *s)
{
    *s = m->stats;
}

const char *vx_nn_model_metadata(const vx_nn_model *m, const char *key)
{
    for (int i = 0; i < m->g->n_meta; i++)
        if (!strcmp(m->g->meta_keys[i], key))
            return m->g->meta_values[i];
    return NULL;
}

int vx_nn_model_metadata_count(const vx_nn_model *m)
{
    return m->g->n_meta;
}

void vx_nn_model_metadata_entry(const vx_nn_model *m, int i, const char **key, const char **value)
{
    int ok = i >= 0 && i < m->g->n_meta;
    *key = ok ? m->g->meta_keys[i] : NULL;
    *value = ok ? m->g->meta_values[i] : NULL;
}
void vx_nn_model_dump(const vx_nn_model *m, void *f)
{
    vx_graph_dump(m->g, f);
}

/* ---- engines ----------------------------------------------------------- */

void vx_nn_engine_opts_default(vx_nn_engine_opts *o)
{
    o->backend = VX_NN_BACKEND_CPU;
    o->threads = 0;
    o->precision = VX_NN_FP32;
}

const char *vx_nn_precision_name(vx_nn_precision p)
{
    switch (p) {
    case VX_NN_FP32: return "FP32";
    case VX_NN_BF16: return "BF16";
    case VX_NN_INT8: return "INT8";
    }
    return "?";
}

vx_err vx_nn_precision_parse(const char *name, vx_nn_precision *out)
{
    if (!strcasecmp(name, "fp32"))
        *out = VX_NN_FP32;
    else if (!strcasecmp(name, "bf16"))
        *out = VX_NN_BF16;
    else if (!strcasecmp(name, "int8"))
        *out = VX_NN_INT8;
    else
        return vx_fail(VX_ERR_INVALID, "unknown precision '%s' (expected fp32, bf16 or int8)", name);
    return VX_OK;
}

const char *vx_nn_backend_name(vx_nn_backend b)
{
    switch (b) {
    case VX_NN_BACKEND_REF: return "ref";
    case VX_NN_BACKEND_CPU: return "cpu";
    case VX_NN_BACKEND_CUDA: return "cuda";
    }
    return "?";
}

vx_err vx_nn_backend_parse(const char *name, vx_nn_backend *out)
{
    if (!strcmp(name, "ref"))
        *out = VX_NN_BACKEND_REF;
    else if (!strcmp(name, "cpu"))
        *out = VX_NN_BACKEND_CPU;
    else if (!strcmp(name, "cuda"))
        *out = VX_NN_BACKEND_CUDA;
    else
        return vx_fail(VX_ERR_INVALID, "unknown backend '%s' (expected ref, cpu or cuda)", name);
    return VX_OK;
}

int vx_nn_backend_available(vx_nn_backend b, const char **why)
{
    switch (b) {
    case VX_NN_BACKEND_REF: return 1;
    case VX_NN_BACKEND_CPU: return vx_nn_dnnl_available(why);
    case VX_NN_BACKEND_CUDA:
        if (why)
            *why = "this build has no CUDA backend";
        return 0;
    }
    return 0;
}

void vx_nn_engine_destroy(vx_nn_engine *e)
{
    if (!e)
        return;
    if (e->ops && e->impl)
        e->ops->destroy(e);
    for (int i = 0; e->inputs && i < e->g->n_inputs; i++)
        free(e->inputs[i]);
    for (int i = 0; e->outputs && i < e->g->n_outputs; i++)
        free(e->outputs[i]);
    free(e->inputs);
    free(e->outputs);
    free(e);
}

vx_err vx_nn_engine_create(const vx_nn_model *m, const vx_nn_engine_opts *opts, vx_nn_engine **out)
{
    *out = NULL;
    vx_nn_engine_opts def;
    if (!opts) {
        vx_nn_engine_opts_default(&def);
        opts = &def;
    }
    const char *why = NULL;
    if (!vx_nn_backend_available(opts->backend, &why))
        return vx_fail(VX_ERR_UNAVAILABLE, "backend '%s' is not available: %s",
                       vx_nn_backend_name(opts->backend), why ? why : "unknown reason");
    if ((unsigned)opts->precision > VX_NN_INT8)
        return vx_fail(VX_ERR_INVALID, "unknown precision %d", (int)opts->precision);
    if (opts->precision == VX_NN_INT8 && opts->backend != VX_NN_BACKEND_REF && !vx_nn_model_is_calibrated(m))
        return vx_fail(VX_ERR_INVALID, "INT8 needs a calibrated model: calibrate it first (verolux export "
                                       "--format int8, or vx_nn_calibrator_*) or load its INT8 engine file");
    if (opts->threads < 0 || opts->threads > 1024)
        return vx_fail(VX_ERR_INVALID, "thread count %d out of range", opts->threads);
    vx_nn_engine *e = calloc(1, sizeof *e);
    if (!e)
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    e->model = m;
    e->g = m->g;
    e->backend = opts->backend;
    e->precision = opts->backend == VX_NN_BACKEND_REF ? VX_NN_FP32 : opts->precision;
    e->threads = opts->threads ? opts->threads : vx_cpu_count();
    e->inputs = calloc((size_t)e->g->n_inputs + 1, sizeof(float *));
    e->outputs = calloc((size_t)e->g->n_outputs + 1, sizeof(float *));
    if (!e->inputs || !e->outputs)
        goto oom;
    for (int i = 0; i < e->g->n_inputs; i++)
        if (!(e->inputs[i] = calloc((size_t)vx_tensor_elems(&e->g->t[e->g->inputs[i]]) + 16, sizeof(float))))
            goto oom;
    for (int i = 0; i < e->g->n_outputs; i++)
        if (!(e->outputs[i] =
                  calloc((size_t)vx_tensor_elems(&e->g->t[e->g->outputs[i]]) + 16, sizeof(float))))
            goto oom;
    e->ops = opts->backend == VX_NN_BACKEND_REF ? &vx_nn_ref_ops : &vx_nn_dnnl_ops;
    vx_err err = e->ops->create(e);
    if (err) {
        vx_nn_engine_destroy(e);
        return err;
    }
    *out = e;
    return VX_OK;
oom:
    vx_nn_engine_destroy(e);
    return vx_fail(VX_ERR_NOMEM, "engine: out of memory");
}

float *vx_nn_engine_input(vx_nn_engine *e, int i)
{
    return i >= 0 && i < e->g->n_inputs ? e->inputs[i] : NULL;
}
const float *vx_nn_engine_output(const vx_nn_engine *e, int i)
{
    return i >= 0 && i < e->g->n_outputs ? e->outputs[i] : NULL;
}
vx_err vx_nn_engine_run(vx_nn_engine *e)
{
    return e->ops->run(e);
}
const char *vx_nn_engine_describe(const vx_nn_engine *e)
{
    return e->desc;
}
void vx_nn_engine_get_stats(const vx_nn_engine *e, vx_nn_engine_stats *s)
{
    *s = e->stats;
}
