/*
 * The cpu backend: the optimised graph compiled into a fixed list of oneDNN
 * primitives, created once at engine creation (they JIT-compile there).
 *
 * Layout: every 4-D activation uses one blocked layout (nChw16c on AVX-512,
 * nChw8c otherwise), so no reorders run between layers.  Only the graph
 * input is read in its plain NCHW form (the first convolution takes it
 * directly) and outputs are written in the layout the model declares; an
 * output that is Reshape([N,C,H*W]) -> Transpose(0,2,1) of a convolution is
 * that convolution writing NHWC straight into the output buffer.
 *
 * Zero-copy tricks, each with a copying fallback when its conditions fail:
 *  - Concat on channels: producers write into channel slices of the concat
 *    buffer (with batch 1 and block-aligned channel offsets a slice of a
 *    blocked tensor is itself a dense blocked tensor);
 *  - residual Add fused as a `sum` post-op: the convolution writes into the
 *    other operand's buffer when that operand has no later reader;
 *  - plain-layout Concat whose slices are contiguous, and graph outputs
 *    whose plain form is a buffer of its own: producers write straight
 *    into the concat buffer or the caller's output buffer.
 * FP32 3x3 stride-1 convolutions with enough channels run Winograd (see
 * conv_step).
 * Buffers are aliased through (root, offset) chains and packed into one
 * arena by liveness.  Operators oneDNN does not cover run the reference
 * kernels on plain copies, so every graph the loaders accept runs here.
 */
#include <math.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdlib.h>
#include <string.h>

#include "nn/engine_internal.h"

#define MAX_ARGS 8

typedef struct {
    size_t bytes;
    int def, last;
    int root;   /* buffer this one lives inside (itself when not aliased) */
    size_t off; /* byte offset inside root */
    void *user; /* fixed external memory (graph inputs/outputs, weights) */
    int owned;  /* user memory the backend allocated (weights): freed with it */
    void *ptr;  /* resolved address */
} buf_t;

typedef struct {
    int arg;
    dnnl_memory_desc_t md;
    int buf;
} arg_t;

typedef struct {
    dnnl_primitive_t prim; /* NULL: reference kernel step */
    int nargs;
    arg_t args[MAX_ARGS];
    dnnl_exec_arg_t exec[MAX_ARGS + 1];
    dnnl_memory_t mems[MAX_ARGS];
    int is_reorder;
    const vx_node *node; /* reference step */
    int *in_bufs, *out_bufs;
} step_t;

/* Storage types of an activation's blocked form (INT8 engines mix them). */
enum { DT_F32 = 0, DT_S8 = 1, DT_U8 = 2 };

typedef struct {
    int act;   /* buffer of the blocked form, -1 */
    int plain; /* buffer of the dense NCHW form, -1 */
    dnnl_memory_desc_t act_md, plain_md;
    int direct_out; /* graph output slot written as NHWC by the producer, -1 */
    /* INT8 engines: the blocked form stores real value * q in type dt (q = 1
     * for DT_F32); alt[] caches converted copies for readers that need
     * another type. */
    int dt;
    float q;
    int zp; /* u8 zero point of an asymmetric range */
    int alt[3];
    dnnl_memory_desc_t alt_md[3];
} tstate_t;

typedef struct {
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    buf_t *bufs;
    int nbufs, capbufs;
    step_t *steps;
    int nsteps, capsteps;
    tstate_t *ts;
    dnnl_format_tag_t act_tag;
    dnnl_data_type_t act_dt; /* activations and weights: f32 or bf16 */
    int block;
    uint8_t *arena;
    size_t arena_bytes, scratch_bytes;
    int scratch_buf;
    char *skip;       /* nodes folded into others */
    char *out_direct; /* graph outputs written directly by their producer */
    int capture;      /* calibration: every activation kept alive and intact */
    int int8;         /* INT8 engine: calibrated nodes run u8/s8 */
    int conv_int8, conv_fp32;
    char *uns;          /* INT8: tensor stored unsigned (vx_quant_signedness) */
    char conv_impl[64]; /* implementation most convolutions use */
    int conv_impl_count;
} dnnl_impl;

#define DNNL_CHECK(call, what)                                                                               \
    do {                                                                                                     \
        dnnl_status_t st_ = (call);                                                                          \
        if (st_ != dnnl_success)                                                                             \
            return vx_fail(VX_ERR_BACKEND, "oneDNN: %s failed (status %d)", (what), (int)st_);               \
    } while (0)

static int isa_block(void)
{
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return (isa & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core ? 16 : 8;
}

static const char *isa_name(void)
{
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_sse41: return "sse41";
    default: return "other";
    }
}

int vx_nn_precision_native(vx_nn_precision p)
{
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    if (p == VX_NN_BF16)
        return (isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16;
    if (p == VX_NN_INT8)
        return (isa & dnnl_cpu_isa_avx512_core_vnni) == dnnl_cpu_isa_avx512_core_vnni ||
               (isa & dnnl_cpu_isa_avx2_vnni) == dnnl_cpu_isa_avx2_vnni;
    return 1;
}

int vx_nn_dnnl_available(const char **why)
{
    dnnl_engine_t e;
    if (dnnl_engine_create(&e, dnnl_cpu, 0) != dnnl_success) {
        if (why)
            *why = "oneDNN could not create a CPU engine";
        return 0;
    }
    dnnl_engine_destroy(e);
    return 1;
}

static int new_buf(dnnl_impl *d, size_t bytes)
{
    if (d->nbufs == d->capbufs) {
        int nc = d->capbufs ? d->capbufs * 2 : 128;
        buf_t *nb = realloc(d->bufs, sizeof(buf_t) * (size_t)nc);
        if (!nb)
            return -1;
        d->bufs = nb;
        d->capbufs = nc;
    }
    buf_t *b = &d->bufs[d->nbufs];
    memset(b, 0, sizeof *b);
    b->bytes = bytes;
    b->def = 1 << 30;
    b->last = -1;
    b->root = d->nbufs;
    return d->nbufs++;
}

static step_t *new_step(dnnl_impl *d)
{
    if (d->nsteps == d->capsteps) {
        int nc = d->capsteps ? d->capsteps * 2 : 128;
        step_t *ns = realloc(d->steps, sizeof(step_t) * (size_t)nc);
        if (!ns)
            return NULL;
        d->steps = ns;
        d->capsteps = nc;
    }
    step_t *s = &d->steps[d->nsteps++];
    memset(s, 0, sizeof *s);
    return s;
}

static void touch(dnnl_impl *d, int b, int step)
{
    if (b < 0)
        return;
    if (step < d->bufs[b].def)
        d->bufs[b].def = step;
    if (step > d->bufs[b].last)
        d->bufs[b].last = step;
}

static void add_arg(dnnl_impl *d, step_t *s, int arg, const dnnl_memory_desc_t *md, int b)
{
    s->args[s->nargs].arg = arg;
    s->args[s->nargs].md = *md;
    s->args[s->nargs].buf = b;
    s->nargs++;
    touch(d, b, (int)(s - d->steps));
}

/* Creates the primitive for pd and appends it as a step; pd is consumed. */
static vx_err add_prim_step(dnnl_impl *d, const_dnnl_primitive_desc_t pd, step_t **out)
{
    step_t *s = new_step(d);
    if (!s)
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    DNNL_CHECK(dnnl_primitive_create(&s->prim, pd), "primitive creation");
    const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t sb = sp ? dnnl_memory_desc_get_size(sp) : 0;
    if (sb > d->scratch_bytes)
        d->scratch_bytes = sb;
    if (sb) {
        dnnl_memory_desc_t smd;
        dnnl_dims_t dims = {(dnnl_dim_t)sb};
        dnnl_memory_desc_init_by_tag(&smd, 1, dims, dnnl_u8, dnnl_a);
        add_arg(d, s, DNNL_ARG_SCRATCHPAD, &smd, d->scratch_buf);
    }
    *out = s;
    return VX_OK;
}

static dnnl_primitive_attr_t new_attr(void)
{
    dnnl_primitive_attr_t a = NULL;
    if (dnnl_primitive_attr_create(&a) != dnnl_success)
        return NULL;
    dnnl_primitive_attr_set_scratchpad_mode(a, dnnl_scratchpad_mode_user);
    return a;
}

static void dims_of(const vx_tensor *t, dnnl_dims_t dims)
{
    for (int i = 0; i < t->rank; i++)
        dims[i] = t->dims[i];
}

static int is_act_tensor(const vx_tensor *t)
{
    return t->rank == 4 && t->dtype == VX_DT_F32 && !t->data;
}

static dnnl_data_type_t dnnl_dt(int dt)
{
    return dt == DT_S8 ? dnnl_s8 : dt == DT_U8 ? dnnl_u8 : dnnl_f32;
}

/* Reorder that also rescales (scale 1: a plain copy/layout change). */
static vx_err reorder_zp(dnnl_impl *d, const dnnl_memory_desc_t *smd, int sbuf, const dnnl_memory_desc_t *dmd,
                         int dbuf, float scale, int szp, int dzp)
{
    dnnl_primitive_desc_t pd;
    dnnl_primitive_attr_t attr = new_attr();
    if (scale != 1.0f)
        dnnl_primitive_attr_set_output_scales(attr, 1, 0, &scale);
    /* dst = scale * (src - szp) + dzp */
    int32_t sz = szp, dz = dzp;
    if (sz)
        dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_SRC, 1, 0, &sz);
    if (dz)
        dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_DST, 1, 0, &dz);
    dnnl_status_t st = dnnl_reorder_primitive_desc_create(&pd, smd, d->eng, dmd, d->eng, attr);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success)
        return vx_fail(VX_ERR_BACKEND, "oneDNN: reorder creation failed (status %d)", (int)st);
    step_t *s;
    vx_err e = add_prim_step(d, pd, &s);
    dnnl_primitive_desc_destroy(pd);
    if (e)
        return e;
    s->is_reorder = 1;
    add_arg(d, s, DNNL_ARG_FROM, smd, sbuf);
    add_arg(d, s, DNNL_ARG_TO, dmd, dbuf);
    return VX_OK;
}

static vx_err reorder_scaled(dnnl_impl *d, const dnnl_memory_desc_t *smd, int sbuf,
                             const dnnl_memory_desc_t *dmd, int dbuf, float scale)
{
    return reorder_zp(d, smd, sbuf, dmd, dbuf, scale, 0, 0);
}

static vx_err reorder_step(dnnl_impl *d, const dnnl_memory_desc_t *smd, int sbuf,
                           const dnnl_memory_desc_t *dmd, int dbuf)
{
    return reorder_scaled(d, smd, sbuf, dmd, dbuf, 1.0f);
}

/* The blocked form of tensor t, created by a reorder when it only exists plain. */
static vx_err need_act(dnnl_impl *d, const vx_graph *g, int t)
{
    tstate_t *s = &d->ts[t];
    if (s->act >= 0)
        return VX_OK;
    if (s->plain < 0)
        return vx_fail(VX_ERR_BACKEND, "cpu backend: tensor '%s' used before it is computed", g->t[t].name);
    s->act = new_buf(d, dnnl_memory_desc_get_size(&s->act_md));
    if (s->act < 0)
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    return reorder_zp(d, &s->plain_md, s->plain, &s->act_md, s->act, s->q, 0, s->zp);
}

static vx_err need_plain(dnnl_impl *d, const vx_graph *g, int t)
{
    tstate_t *s = &d->ts[t];
    if (s->plain >= 0)
        return VX_OK;
    if (s->act < 0)
        return vx_fail(VX_ERR_BACKEND, "cpu backend: tensor '%s' used before it is computed", g->t[t].name);
    s->plain = new_buf(d, dnnl_memory_desc_get_size(&s->plain_md));
    if (s->plain < 0)
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    return reorder_zp(d, &s->act_md, s->act, &s->plain_md, s->plain, 1.0f / s->q, s->zp, 0);
}

/* Tensor t in blocked layout and storage type dt (INT8 engines): its own
 * blocked form when that has the type, else a converted copy, made once.
 * Conversions to an integer type use the tensor's calibrated range. */
static int need_form(dnnl_impl *d, const vx_graph *g, int t, int dt, dnnl_memory_desc_t *md, vx_err *err)
{
    tstate_t *s = &d->ts[t];
    *err = need_act(d, g, t);
    if (*err)
        return -1;
    if (s->dt == dt) {
        *md = s->act_md;
        return s->act;
    }
    if (s->alt[dt] < 0) {
        /* The tensor's own quantisation when it asks for this type, else
         * the symmetric one of that type. */
        vx_qparam p = {1.0f, 0, 0};
        if (dt != DT_F32) {
            vx_quant_param(&g->t[t], d->uns ? d->uns[t] : 0, &p);
            if ((dt == DT_U8) != p.is_u8) {
                p.q = vx_quant_scale(g->t[t].amax > 0 ? g->t[t].amax : 1.0f, dt == DT_U8);
                p.zp = 0;
            }
        }
        float q = p.q;
        dnnl_memory_desc_t amd = s->act_md;
        amd.data_type = dnnl_dt(dt);
        dnnl_dims_t dims;
        for (int i = 0; i < 4; i++)
            dims[i] = g->t[t].dims[i];
        /* Same layout, another type: recreate from the tag so strides and
         * sizes follow the element size. */
        dnnl_memory_desc_init_by_tag(&amd, 4, dims, dnnl_dt(dt), d->act_tag);
        int b = new_buf(d, dnnl_memory_desc_get_size(&amd));
        if (b < 0) {
            *err = vx_fail(VX_ERR_NOMEM, "out of memory");
            return -1;
        }
        *err = reorder_zp(d, &s->act_md, s->act, &amd, b, q / s->q, s->zp, p.zp);
        if (*err)
            return -1;
        s->alt[dt] = b;
        s->alt_md[dt] = amd;
    }
    *md = s->alt_md[dt];
    return s->alt[dt];
}

/* Buffer for a node's 4-D output in blocked form. */
static int out_act(dnnl_impl *d, int t)
{
    tstate_t *s = &d->ts[t];
    if (s->act < 0)
        s->act = new_buf(d, dnnl_memory_desc_get_size(&s->act_md));
    return s->act;
}

static int resolve_root(const dnnl_impl *d, int b, size_t *off)
{
    *off = 0;
    for (int guard = 0; d->bufs[b].root != b && guard < 1000; guard++) {
        *off += d->bufs[b].off;
        b = d->bufs[b].root;
    }
    return b;
}

/* ---- per-operator compilation ----------------------------------------- */

/* oneDNN eltwise algorithm and alpha for an activation. */
static void act_alg(vx_act a, float alpha_in, dnnl_alg_kind_t *alg, float *alpha)
{
    *alpha = 0.0f;
    switch (a) {
    case VX_ACT_LEAKY_RELU: *alg = dnnl_eltwise_relu, *alpha = alpha_in; break;
    case VX_ACT_SIGMOID: *alg = dnnl_eltwise_logistic; break;
    case VX_ACT_SWISH: *alg = dnnl_eltwise_swish, *alpha = 1.0f; break;
    case VX_ACT_HARDSWISH: *alg = dnnl_eltwise_hardswish; break;
    case VX_ACT_RELU:
    case VX_ACT_NONE:
    default: *alg = dnnl_eltwise_relu; break;
    }
}

/* Primitive attributes of a fused convolution; with_acts = 0 leaves the
 * activations out (they then run as separate eltwise steps). */
static dnnl_primitive_attr_t conv_attr(const vx_conv_attr *c, int with_acts)
{
    dnnl_primitive_attr_t attr = new_attr();
    dnnl_post_ops_t po;
    if (!attr || dnnl_post_ops_create(&po) != dnnl_success)
        return attr;
    for (int k = 0; k < c->n_post; k++) {
        const vx_postop *p = &c->post[k];
        if (p->kind == VX_POST_SUM)
            dnnl_post_ops_append_sum(po, 1.0f);
        else if (!with_acts || p->act == VX_ACT_NONE)
            continue;
        else {
            dnnl_alg_kind_t alg;
            float alpha;
            act_alg(p->act, p->alpha, &alg, &alpha);
            dnnl_post_ops_append_eltwise(po, 1.0f, alg, alpha, 0.0f);
        }
    }
    dnnl_primitive_attr_set_post_ops(attr, po);
    dnnl_post_ops_destroy(po);
    return attr;
}

static vx_err act_step(dnnl_impl *d, const vx_postop *p, const dnnl_memory_desc_t *md, int buf)
{
    dnnl_eltwise_desc_t ed;
    dnnl_alg_kind_t alg;
    float alpha;
    act_alg(p->act, p->alpha, &alg, &alpha);
    DNNL_CHECK(dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_inference, alg, md, alpha, 0.0f),
               "eltwise descriptor");
    dnnl_primitive_attr_t attr = new_attr();
    dnnl_primitive_desc_t pd;
    dnnl_status_t st = dnnl_primitive_desc_create(&pd, &ed, attr, d->eng, NULL);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success)
        return vx_fail(VX_ERR_BACKEND, "oneDNN: eltwise creation failed (status %d)", (int)st);
    step_t *s;
    vx_err e = add_prim_step(d, pd, &s);
    dnnl_primitive_desc_destroy(pd);
    if (e)
        return e;
    /* In place: source and destination are the same buffer. */
    add_arg(d, s, DNNL_ARG_SRC, md, buf);
    add_arg(d, s, DNNL_ARG_DST, md, buf);
    return VX_OK;
}

static void note_impl(dnnl_impl *d, const_dnnl_primitive_desc_t pd);

/* When oneDNN gave pd its reference kernel because no JIT kernel reads the
 * source layout (3 input channels in a 16-channel block, e.g. a BF16 or
 * INT8 first layer): the same convolution with the source layout left to
 * oneDNN, when that gets a JIT kernel; *want is the layout it reads (valid
 * while the returned descriptor lives).  NULL otherwise. */
static dnnl_primitive_desc_t conv_any_source(dnnl_impl *d, const_dnnl_primitive_desc_t pd,
                                             const dnnl_memory_desc_t *src_md, const dnnl_memory_desc_t *w_md,
                                             const dnnl_memory_desc_t *b_md, const dnnl_memory_desc_t *dst_md,
                                             const dnnl_dim_t *strides, const dnnl_dim_t *dil,
                                             const dnnl_dim_t *pl, const dnnl_dim_t *pr,
                                             const_dnnl_primitive_attr_t attr,
                                             const dnnl_memory_desc_t **want)
{
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success || !impl ||
        strncmp(impl, "ref", 3))
        return NULL;
    dnnl_memory_desc_t any_md;
    dnnl_memory_desc_init_by_tag(&any_md, 4, src_md->dims, src_md->data_type, dnnl_format_tag_any);
    dnnl_convolution_desc_t cd;
    dnnl_primitive_desc_t pd2 = NULL;
    if (dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct,
                                                   &any_md, w_md, b_md, dst_md, strides, dil, pl,
                                                   pr) != dnnl_success ||
        dnnl_primitive_desc_create(&pd2, &cd, attr, d->eng, NULL) != dnnl_success)
        return NULL;
    const char *impl2 = NULL;
    dnnl_primitive_desc_query(pd2, dnnl_query_impl_info_str, 0, &impl2);
    if (!impl2 || !strncmp(impl2, "ref", 3)) {
        dnnl_primitive_desc_destroy(pd2);
        return NULL;
    }
    *want = dnnl_primitive_desc_query_md(pd2, dnnl_query_src_md, 0);
    return pd2;
}

static vx_err conv_step(dnnl_impl *d, const vx_graph *g, const vx_node *n)
{
    const vx_conv_attr *c = &n->a.conv;
    int x = n->in[0], y = n->out[0];
    const vx_tensor *tx = &g->t[x], *tw = &g->t[n->in[1]], *ty = &g->t[y];
    int has_bias = n->n_in > 2 && n->in[2] >= 0, sum = n->n_in > 3 && n->in[3] >= 0;
    int G = c->groups;
    dnnl_memory_desc_t src_md, w_md, w_user_md, b_md, dst_md;
    dnnl_dims_t xd, yd, wd, bd = {ty->dims[1]};
    dims_of(tx, xd);
    dims_of(ty, yd);
    int src_plain = d->ts[x].act < 0; /* the graph input: read NCHW directly */
    if (src_plain && (d->block == 0 || d->act_dt != dnnl_f32)) {
        /* No JIT kernel reads NCHW into NHWC, nor converts fp32 input on
         * the fly in BF16: reorder the input once. */
        vx_err e = need_act(d, g, x);
        if (e)
            return e;
        src_plain = 0;
    }
    src_md = src_plain ? d->ts[x].plain_md : d->ts[x].act_md;
    int src_alt = -1;
    if (!src_plain && d->ts[x].dt != DT_F32) {
        /* INT8 engine, a node kept in FP32: read a dequantised copy. */
        vx_err e;
        src_alt = need_form(d, g, x, DT_F32, &src_md, &e);
        if (e)
            return e;
    }
    if (d->ts[y].direct_out >= 0)
        dnnl_memory_desc_init_by_tag(&dst_md, 4, yd, dnnl_f32, dnnl_nhwc);
    else
        dst_md = d->ts[y].act_md;
    if (G == 1) {
        dims_of(tw, wd);
        dnnl_memory_desc_init_by_tag(&w_user_md, 4, wd, dnnl_f32, dnnl_oihw);
        dnnl_memory_desc_init_by_tag(&w_md, 4, wd, d->act_dt, dnnl_format_tag_any);
    } else {
        dnnl_dims_t gd = {G, tw->dims[0] / G, tw->dims[1], tw->dims[2], tw->dims[3]};
        dnnl_memory_desc_init_by_tag(&w_user_md, 5, gd, dnnl_f32, dnnl_goihw);
        dnnl_memory_desc_init_by_tag(&w_md, 5, gd, d->act_dt, dnnl_format_tag_any);
    }
    dnnl_memory_desc_init_by_tag(&b_md, 1, bd, dnnl_f32, dnnl_a);
    dnnl_dims_t strides = {c->sh, c->sw}, dil = {c->dh - 1, c->dw - 1}, pl = {c->pt, c->pl},
                pr = {c->pb, c->pr};
    /* 3x3 stride-1 FP32 convolutions with enough channels run Winograd
     * F(2x2,3x3) where oneDNN has it (AVX-512, blocked layout): 2.25x fewer
     * multiplies, paid for by input/output transforms whose cost grows with
     * ic + oc while the saving grows with ic * oc.  Measured per layer on
     * NanoDet-g at 2 threads (AVX-512 Xeon): 64->64 at 52x52 1.16 -> 0.57 ms,
     * 128->128 at 52x52 3.65 -> 2.37 ms, but 32->16 and 16->16 at 104x104
     * slower (0.62 -> 0.76, 0.33 -> 0.37 ms); hence the rule
     * ic*oc/(ic+oc) >= 16 (32->32 and up).  The kernel takes no LeakyReLU
     * post-op, so an activation-only post-op list becomes an in-place
     * eltwise step after it.  VX_CONV_ALG=direct|wino overrides the rule
     * (experiments). */
    const char *algenv = getenv("VX_CONV_ALG");
    int has_sum = 0;
    for (int k = 0; k < c->n_post; k++)
        has_sum |= c->post[k].kind == VX_POST_SUM;
    long ic = tw->dims[1], oc = tw->dims[0];
    int wino_shape = c->kh == 3 && c->kw == 3 && c->sh == 1 && c->sw == 1 && c->dh == 1 && c->dw == 1 &&
                     G == 1 && d->ts[y].direct_out < 0 && d->act_dt == dnnl_f32 && d->block;
    int wino_rule = ic * oc >= 16 * (ic + oc);
    if (algenv && !strcmp(algenv, "wino"))
        wino_rule = 1;
    else if (algenv && !strcmp(algenv, "direct"))
        wino_rule = 0;
    int try_wino = wino_shape && wino_rule;
    dnnl_primitive_attr_t attrs[2] = {conv_attr(c, 1), conv_attr(c, 0)};
    dnnl_convolution_desc_t cd;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_unimplemented;
    int split_acts = 0;
    for (int pass = try_wino ? 0 : 2; pass < 3 && st != dnnl_success; pass++) {
        /* pass 0: Winograd with all post-ops; 1: Winograd, activations apart; 2: direct */
        if (pass == 1 && (has_sum || !c->n_post))
            continue;
        dnnl_alg_kind_t calg = pass < 2 ? dnnl_convolution_winograd : dnnl_convolution_direct;
        st = dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference, calg, &src_md, &w_md,
                                                        has_bias ? &b_md : NULL, &dst_md, strides, dil, pl,
                                                        pr);
        if (st == dnnl_success)
            st = dnnl_primitive_desc_create(&pd, &cd, attrs[pass == 1], d->eng, NULL);
        split_acts = st == dnnl_success && pass == 1;
    }
    dnnl_primitive_attr_t attr = attrs[0];
    dnnl_primitive_attr_destroy(attrs[1]);
    int src_buf = src_alt >= 0 ? src_alt : src_plain ? d->ts[x].plain : d->ts[x].act;
    const dnnl_memory_desc_t *want = NULL;
    dnnl_primitive_desc_t pd2 = st == dnnl_success
                                    ? conv_any_source(d, pd, &src_md, &w_md, has_bias ? &b_md : NULL, &dst_md,
                                                      strides, dil, pl, pr, attr, &want)
                                    : NULL;
    if (pd2) {
        int tb = new_buf(d, dnnl_memory_desc_get_size(want));
        vx_err e =
            tb < 0 ? vx_fail(VX_ERR_NOMEM, "out of memory") : reorder_step(d, &src_md, src_buf, want, tb);
        if (e) {
            dnnl_primitive_desc_destroy(pd2);
            dnnl_primitive_desc_destroy(pd);
            dnnl_primitive_attr_destroy(attr);
            return e;
        }
        src_md = *want;
        src_buf = tb;
        dnnl_primitive_desc_destroy(pd);
        pd = pd2;
        split_acts = 0;
    }
    int direct = d->ts[y].direct_out >= 0;
    if (st == dnnl_success && direct) {
        /* Writing NHWC from a blocked source only pays when a JIT kernel
         * does it; otherwise produce blocked and reorder into the output. */
        const char *impl = NULL;
        dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
        if (!impl || !strncmp(impl, "ref", 3)) {
            dnnl_primitive_desc_destroy(pd);
            direct = 0;
            dst_md = d->ts[y].act_md;
            st = dnnl_dilated_convolution_forward_desc_init(
                &cd, dnnl_forward_inference, dnnl_convolution_direct, &src_md, &w_md, has_bias ? &b_md : NULL,
                &dst_md, strides, dil, pl, pr);
            if (st == dnnl_success)
                st = dnnl_primitive_desc_create(&pd, &cd, attr, d->eng, NULL);
        }
    }
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success)
        return vx_fail(VX_ERR_BACKEND, "oneDNN: no convolution implementation for node '%s' (status %d)",
                       n->name, (int)st);
    /* Weights are reordered once, now, into the layout the kernel wants. */
    const dnnl_memory_desc_t *wq = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    int wb = new_buf(d, dnnl_memory_desc_get_size(wq));
    if (wb < 0) {
        dnnl_primitive_desc_destroy(pd);
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    }
    d->bufs[wb].user = aligned_alloc(64, (dnnl_memory_desc_get_size(wq) + 63) / 64 * 64);
    d->bufs[wb].owned = 1;
    if (!d->bufs[wb].user) {
        dnnl_primitive_desc_destroy(pd);
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    }
    {
        dnnl_memory_t um, wm;
        dnnl_primitive_desc_t rpd;
        dnnl_primitive_t r;
        dnnl_memory_create(&um, &w_user_md, d->eng, tw->data);
        dnnl_memory_create(&wm, wq, d->eng, d->bufs[wb].user);
        st = dnnl_reorder_primitive_desc_create(&rpd, &w_user_md, d->eng, wq, d->eng, NULL);
        if (st == dnnl_success && dnnl_primitive_create(&r, rpd) == dnnl_success) {
            dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, um}, {DNNL_ARG_TO, wm}};
            st = dnnl_primitive_execute(r, d->stream, 2, a);
            dnnl_stream_wait(d->stream);
            dnnl_primitive_destroy(r);
        }
        if (st == dnnl_success)
            dnnl_primitive_desc_destroy(rpd);
        dnnl_memory_destroy(um);
        dnnl_memory_destroy(wm);
        if (st != dnnl_success) {
            dnnl_primitive_desc_destroy(pd);
            return vx_fail(VX_ERR_BACKEND, "oneDNN: weight reorder failed for node '%s'", n->name);
        }
    }
    /* Output buffer: the graph output itself, the sum operand's buffer, or a new one. */
    int yb;
    if (direct) {
        yb = d->ts[y].plain;
    } else if (sum) {
        int s = n->in[3];
        int last_reader = vx_graph_use_count(g, s) == 1 && g->t[s].graph_output < 0;
        vx_err e = need_act(d, g, s);
        if (e) {
            dnnl_primitive_desc_destroy(pd);
            return e;
        }
        int sb = d->ts[s].act;
        if (last_reader && !d->bufs[sb].user && !d->capture && d->ts[s].dt == d->ts[y].dt && !d->ts[s].zp) {
            yb = new_buf(d, dnnl_memory_desc_get_size(&dst_md));
            d->bufs[yb].root = sb; /* write in place over the operand */
            d->ts[y].act = yb;
        } else {
            yb = out_act(d, y);
            e = reorder_zp(d, &d->ts[s].act_md, sb, &dst_md, yb, 1.0f / d->ts[s].q, d->ts[s].zp, 0);
            if (e) {
                dnnl_primitive_desc_destroy(pd);
                return e;
            }
        }
        touch(d, sb, d->nsteps); /* the conv reads the operand */
    } else {
        yb = out_act(d, y);
    }
    if (yb < 0) {
        dnnl_primitive_desc_destroy(pd);
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    }
    note_impl(d, pd);
    step_t *s;
    vx_err e = add_prim_step(d, pd, &s);
    if (e) {
        dnnl_primitive_desc_destroy(pd);
        return e;
    }
    add_arg(d, s, DNNL_ARG_SRC, &src_md, src_buf);
    add_arg(d, s, DNNL_ARG_WEIGHTS, wq, wb);
    if (has_bias) {
        int bb = new_buf(d, 0);
        d->bufs[bb].user = g->t[n->in[2]].data;
        add_arg(d, s, DNNL_ARG_BIAS, &b_md, bb);
    }
    add_arg(d, s, DNNL_ARG_DST, &dst_md, yb);
    dnnl_primitive_desc_destroy(pd);
    for (int k = 0; split_acts && k < c->n_post; k++) {
        if (c->post[k].act == VX_ACT_NONE)
            continue;
        e = act_step(d, &c->post[k], &dst_md, yb);
        if (e)
            return e;
    }
    if (d->ts[y].direct_out >= 0 && !direct) {
        dnnl_memory_desc_t nhwc;
        dnnl_memory_desc_init_by_tag(&nhwc, 4, yd, dnnl_f32, dnnl_nhwc);
        return reorder_step(d, &d->ts[y].act_md, yb, &nhwc, d->ts[y].plain);
    }
    return VX_OK;
}

/* ---- INT8 convolution ---------------------------------------------------- */

/* Activations that commute with a positive scale: the requantisation can
 * happen before them (in the output scales). */
static int act_homogeneous(vx_act a)
{
    return a == VX_ACT_NONE || a == VX_ACT_RELU || a == VX_ACT_LEAKY_RELU;
}

static int conv_runs_int8(const dnnl_impl *d, const vx_graph *g, const vx_node *n)
{
    return d->int8 && vx_quant_conv_int8(g, n);
}

static void note_impl(dnnl_impl *d, const_dnnl_primitive_desc_t pd)
{
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success || !impl)
        return;
    if (!d->conv_impl_count || !strcmp(d->conv_impl, impl)) {
        snprintf(d->conv_impl, sizeof d->conv_impl, "%s", impl);
        d->conv_impl_count++;
    } else if (--d->conv_impl_count == 0) {
        snprintf(d->conv_impl, sizeof d->conv_impl, "%s", impl);
        d->conv_impl_count = 1;
    }
}

/* Symmetric per-output-channel s8 weights, u8/s8 source, requantisation to
 * the destination's scale fused as output scales; the residual sum reads
 * the operand with its own scale (sum post-op scale).  Bias stays f32,
 * pre-multiplied into the accumulator's scale (oneDNN 2.x adds it before
 * the output scales). */
static vx_err conv_step_int8(dnnl_impl *d, const vx_graph *g, const vx_node *n)
{
    const vx_conv_attr *c = &n->a.conv;
    int x = n->in[0], y = n->out[0];
    const vx_tensor *tx = &g->t[x], *tw = &g->t[n->in[1]], *ty = &g->t[y];
    int has_bias = n->n_in > 2 && n->in[2] >= 0, sum = n->n_in > 3 && n->in[3] >= 0;
    int G = c->groups;
    vx_err e = VX_OK;
    vx_qparam px;
    vx_quant_param(tx, d->uns[x], &px);
    int xdt = px.is_u8 ? DT_U8 : DT_S8;
    float qx = px.q;
    dnnl_memory_desc_t src_md, dst_md, w_user_md, w_md, b_md;
    int src_buf = need_form(d, g, x, xdt, &src_md, &e);
    if (e)
        return e;
    dnnl_dims_t yd, wd, bd = {ty->dims[1]};
    dims_of(ty, yd);
    int direct = d->ts[y].direct_out >= 0;
    if (direct)
        dnnl_memory_desc_init_by_tag(&dst_md, 4, yd, dnnl_f32, dnnl_nhwc);
    else
        dst_md = d->ts[y].act_md;
    float qy = direct ? 1.0f : d->ts[y].q;
    int zpy = direct ? 0 : d->ts[y].zp;
    int64_t OC = tw->dims[0], per = vx_tensor_elems(tw) / (OC ? OC : 1);
    if (G == 1) {
        dims_of(tw, wd);
        dnnl_memory_desc_init_by_tag(&w_user_md, 4, wd, dnnl_s8, dnnl_oihw);
        dnnl_memory_desc_init_by_tag(&w_md, 4, wd, dnnl_s8, dnnl_format_tag_any);
    } else {
        dnnl_dims_t gd = {G, tw->dims[0] / G, tw->dims[1], tw->dims[2], tw->dims[3]};
        dnnl_memory_desc_init_by_tag(&w_user_md, 5, gd, dnnl_s8, dnnl_goihw);
        dnnl_memory_desc_init_by_tag(&w_md, 5, gd, dnnl_s8, dnnl_format_tag_any);
    }
    dnnl_memory_desc_init_by_tag(&b_md, 1, bd, dnnl_f32, dnnl_a);
    float *wsc = malloc(sizeof(float) * (size_t)(OC + 1)), *osc = malloc(sizeof(float) * (size_t)(OC + 1));
    int8_t *w8 = malloc((size_t)vx_tensor_elems(tw) + 1);
    float *bias = has_bias ? aligned_alloc(64, ((size_t)OC * 4 + 63) / 64 * 64) : NULL;
    if (!wsc || !osc || !w8 || (has_bias && !bias)) {
        free(wsc);
        free(osc);
        free(w8);
        free(bias);
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    }
    vx_quant_weights(tw->data, OC, per, wsc, w8);
    /* Last activation does not commute with scaling (sigmoid): dequantise
     * in the output scales, requantise in that eltwise's scale. */
    int late = c->n_post > 0 && c->post[c->n_post - 1].kind == VX_POST_ACT &&
               !act_homogeneous(c->post[c->n_post - 1].act);
    for (int64_t o = 0; o < OC; o++) {
        osc[o] = (late ? 1.0f : qy) / (qx * wsc[o]);
        if (bias)
            bias[o] = ((const float *)g->t[n->in[2]].data)[o] * qx * wsc[o];
    }
    /* Sum operand: in place when it has no later reader and the same type. */
    int yb = -1, sum_inplace = 0;
    float sum_scale = 1.0f;
    if (sum) {
        int s = n->in[3];
        if ((e = need_act(d, g, s)))
            goto out;
        int sb = d->ts[s].act;
        int last_reader = vx_graph_use_count(g, s) == 1 && g->t[s].graph_output < 0;
        if (!direct && last_reader && !d->bufs[sb].user && !d->capture && d->ts[s].dt == d->ts[y].dt &&
            !d->ts[s].zp && !zpy) {
            yb = new_buf(d, dnnl_memory_desc_get_size(&dst_md));
            if (yb >= 0) {
                d->bufs[yb].root = sb;
                d->ts[y].act = yb;
            }
            sum_inplace = 1;
            sum_scale = qy / d->ts[s].q;
        } else {
            yb = direct ? d->ts[y].plain : out_act(d, y);
            if (yb >= 0 &&
                (e = reorder_zp(d, &d->ts[s].act_md, sb, &dst_md, yb, qy / d->ts[s].q, d->ts[s].zp, 0)))
                goto out;
        }
        touch(d, sb, d->nsteps);
    } else {
        yb = direct ? d->ts[y].plain : out_act(d, y);
    }
    (void)sum_inplace;
    if (yb < 0) {
        e = vx_fail(VX_ERR_NOMEM, "out of memory");
        goto out;
    }
    dnnl_primitive_attr_t attr = new_attr();
    dnnl_post_ops_t po;
    if (!attr || dnnl_post_ops_create(&po) != dnnl_success) {
        dnnl_primitive_attr_destroy(attr);
        e = vx_fail(VX_ERR_NOMEM, "out of memory");
        goto out;
    }
    dnnl_primitive_attr_set_output_scales(attr, OC, 1 << 1, osc);
    int32_t zsrc = px.zp, zdst = zpy;
    if (zsrc)
        dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_SRC, 1, 0, &zsrc);
    if (zdst)
        dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_DST, 1, 0, &zdst);
    for (int k = 0; k < c->n_post; k++) {
        const vx_postop *p = &c->post[k];
        if (p->kind == VX_POST_SUM) {
            dnnl_post_ops_append_sum(po, sum_scale);
        } else if (p->act != VX_ACT_NONE) {
            dnnl_alg_kind_t alg;
            float alpha;
            act_alg(p->act, p->alpha, &alg, &alpha);
            dnnl_post_ops_append_eltwise(po, late && k == c->n_post - 1 ? qy : 1.0f, alg, alpha, 0.0f);
        }
    }
    dnnl_primitive_attr_set_post_ops(attr, po);
    dnnl_post_ops_destroy(po);
    dnnl_dims_t strides = {c->sh, c->sw}, dil = {c->dh - 1, c->dw - 1}, pl = {c->pt, c->pl},
                pr = {c->pb, c->pr};
    dnnl_convolution_desc_t cd;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_dilated_convolution_forward_desc_init(
        &cd, dnnl_forward_inference, dnnl_convolution_direct, &src_md, &w_md, has_bias ? &b_md : NULL,
        &dst_md, strides, dil, pl, pr);
    if (st == dnnl_success)
        st = dnnl_primitive_desc_create(&pd, &cd, attr, d->eng, NULL);
    const dnnl_memory_desc_t *want = NULL;
    dnnl_primitive_desc_t pd2 = st == dnnl_success
                                    ? conv_any_source(d, pd, &src_md, &w_md, has_bias ? &b_md : NULL, &dst_md,
                                                      strides, dil, pl, pr, attr, &want)
                                    : NULL;
    if (pd2) {
        int tb = new_buf(d, dnnl_memory_desc_get_size(want));
        /* From the FP32 plain source when there is one: one reorder. */
        if (tb < 0)
            e = vx_fail(VX_ERR_NOMEM, "out of memory");
        else if (d->ts[x].plain >= 0)
            e = reorder_zp(d, &d->ts[x].plain_md, d->ts[x].plain, want, tb, qx, 0, px.zp);
        else
            e = reorder_step(d, &src_md, src_buf, want, tb);
        if (!e) {
            src_md = *want;
            src_buf = tb;
            dnnl_primitive_desc_destroy(pd);
            pd = pd2;
        } else {
            dnnl_primitive_desc_destroy(pd2);
        }
    }
    dnnl_primitive_attr_destroy(attr);
    if (e || st != dnnl_success) {
        if (pd)
            dnnl_primitive_desc_destroy(pd);
        if (!e)
            e = vx_fail(VX_ERR_BACKEND, "oneDNN: no INT8 convolution for node '%s' (status %d)", n->name,
                        (int)st);
        goto out;
    }
    note_impl(d, pd);
    /* Weights: quantised above, reordered once into the kernel's layout
     * (which may add the s8 compensation oneDNN's kernels need). */
    const dnnl_memory_desc_t *wq = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    size_t wbytes = dnnl_memory_desc_get_size(wq);
    int wb = new_buf(d, wbytes);
    void *wmem = wb >= 0 ? aligned_alloc(64, (wbytes + 63) / 64 * 64) : NULL;
    if (!wmem) {
        dnnl_primitive_desc_destroy(pd);
        e = vx_fail(VX_ERR_NOMEM, "out of memory");
        goto out;
    }
    d->bufs[wb].user = wmem;
    d->bufs[wb].owned = 1;
    {
        dnnl_memory_t um, wm;
        dnnl_primitive_desc_t rpd;
        dnnl_primitive_t r;
        dnnl_memory_create(&um, &w_user_md, d->eng, w8);
        dnnl_memory_create(&wm, wq, d->eng, wmem);
        st = dnnl_reorder_primitive_desc_create(&rpd, &w_user_md, d->eng, wq, d->eng, NULL);
        if (st == dnnl_success) {
            if ((st = dnnl_primitive_create(&r, rpd)) == dnnl_success) {
                dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, um}, {DNNL_ARG_TO, wm}};
                st = dnnl_primitive_execute(r, d->stream, 2, a);
                dnnl_stream_wait(d->stream);
                dnnl_primitive_destroy(r);
            }
            dnnl_primitive_desc_destroy(rpd);
        }
        dnnl_memory_destroy(um);
        dnnl_memory_destroy(wm);
        if (st != dnnl_success) {
            dnnl_primitive_desc_destroy(pd);
            e = vx_fail(VX_ERR_BACKEND, "oneDNN: INT8 weight reorder failed for node '%s'", n->name);
            goto out;
        }
    }
    step_t *s;
    e = add_prim_step(d, pd, &s);
    if (e) {
        dnnl_primitive_desc_destroy(pd);
        goto out;
    }
    add_arg(d, s, DNNL_ARG_SRC, &src_md, src_buf);
    add_arg(d, s, DNNL_ARG_WEIGHTS, wq, wb);
    if (bias) {
        int bb = new_buf(d, (size_t)OC * 4);
        if (bb < 0) {
            dnnl_primitive_desc_destroy(pd);
            e = vx_fail(VX_ERR_NOMEM, "out of memory");
            goto out;
        }
        d->bufs[bb].user = bias;
        d->bufs[bb].owned = 1;
        bias = NULL;
        s = &d->steps[d->nsteps - 1];
        add_arg(d, s, DNNL_ARG_BIAS, &b_md, bb);
    }
    add_arg(d, s, DNNL_ARG_DST, &dst_md, yb);
    dnnl_primitive_desc_destroy(pd);
    d->conv_int8++;
out:
    free(wsc);
    free(osc);
    free(w8);
    free(bias);
    return e;
}

static vx_err simple_step(dnnl_impl *d, const vx_graph *g, const vx_node *n, const_dnnl_op_desc_t desc,
                          int n_src, const int *src_bufs, const dnnl_memory_desc_t *src_mds,
                          const int *src_args, const float *src_scales)
{
    dnnl_primitive_attr_t attr = new_attr();
    for (int i = 0; src_scales && i < n_src; i++)
        if (src_scales[i] != 1.0f)
            dnnl_primitive_attr_set_scales(attr, src_args[i], 0, 1, &src_scales[i]);
    dnnl_primitive_desc_t pd;
    dnnl_status_t st = dnnl_primitive_desc_create(&pd, desc, attr, d->eng, NULL);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success)
        return vx_fail(VX_ERR_BACKEND, "oneDNN: no implementation for node '%s' (%s, status %d)", n->name,
                       vx_op_name(n->op), (int)st);
    int yb = out_act(d, n->out[0]);
    step_t *s;
    vx_err e = yb < 0 ? vx_fail(VX_ERR_NOMEM, "out of memory") : add_prim_step(d, pd, &s);
    dnnl_primitive_desc_destroy(pd);
    if (e)
        return e;
    for (int i = 0; i < n_src; i++)
        add_arg(d, s, src_args[i], &src_mds[i], src_bufs[i]);
    add_arg(d, s, DNNL_ARG_DST, &d->ts[n->out[0]].act_md, yb);
    return VX_OK;
}

static vx_err concat_step(dnnl_impl *d, const vx_graph *g, const vx_node *n)
{
    int y = n->out[0];
    const vx_tensor *ty = &g->t[y];
    /* In place when every input can live in a block-aligned channel slice. */
    int inplace = ty->dims[0] == 1 && d->block > 0;
    int64_t off = 0;
    for (int i = 0; i < n->n_in && inplace; i++) {
        int t = n->in[i];
        const vx_tensor *tt = &g->t[t];
        int b = d->ts[t].act;
        if (b < 0 || d->bufs[b].user || d->bufs[b].root != b || tt->dims[1] % d->block || off % d->block ||
            d->ts[t].dt != d->ts[y].dt || d->ts[t].zp != d->ts[y].zp)
            inplace = 0;
        for (int j = 0; j < i; j++)
            if (n->in[j] == t)
                inplace = 0;
        /* A buffer some other tensor already lives inside cannot move. */
        for (int k = 0; k < d->nbufs && inplace && b >= 0; k++)
            if (k != b && d->bufs[k].root == b)
                inplace = 0;
        off += tt->dims[1];
    }
    int yb = out_act(d, y);
    if (yb < 0)
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    if (inplace) {
        size_t esize = d->ts[y].act_md.data_type == dnnl_bf16 ? 2 : d->ts[y].dt != DT_F32 ? 1 : 4;
        size_t plane = (size_t)(ty->dims[2] * ty->dims[3]) * esize;
        off = 0;
        for (int i = 0; i < n->n_in; i++) {
            int b = d->ts[n->in[i]].act;
            d->bufs[b].root = yb;
            d->bufs[b].off = (size_t)off * plane;
            off += g->t[n->in[i]].dims[1];
        }
        touch(d, yb, d->nsteps > 0 ? d->nsteps - 1 : 0);
        return VX_OK;
    }
    dnnl_memory_desc_t mds[64];
    if (n->n_in > 64)
        return vx_fail(VX_ERR_UNSUPPORTED, "node '%s': concat of more than 64 inputs", n->name);
    int bufs[64];
    for (int i = 0; i < n->n_in; i++) {
        vx_err e;
        bufs[i] = need_form(d, g, n->in[i], d->ts[y].dt, &mds[i], &e);
        if (e)
            return e;
    }
    dnnl_primitive_desc_t pd;
    dnnl_primitive_attr_t attr = new_attr();
    dnnl_status_t st = dnnl_concat_primitive_desc_create(&pd, &d->ts[y].act_md, n->n_in, n->a.concat.axis,
                                                         mds, attr, d->eng);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success)
        return vx_fail(VX_ERR_BACKEND, "oneDNN: concat creation failed for '%s'", n->name);
    step_t *s;
    vx_err e = add_prim_step(d, pd, &s);
    dnnl_primitive_desc_destroy(pd);
    if (e)
        return e;
    for (int i = 0; i < n->n_in; i++)
        add_arg(d, s, DNNL_ARG_MULTIPLE_SRC + i, &mds[i], bufs[i]);
    add_arg(d, s, DNNL_ARG_DST, &d->ts[y].act_md, yb);
    return VX_OK;
}

/* Nodes without a oneDNN primitive: reference kernel on plain buffers. */
static vx_err ref_step(dnnl_impl *d, const vx_graph *g, const vx_node *n)
{
    for (int j = 0; j < n->n_in; j++) {
        int t = n->in[j];
        if (t < 0 || g->t[t].data)
            continue;
        vx_err e = need_plain(d, g, t);
        if (e)
            return e;
    }
    step_t *s = new_step(d);
    if (!s)
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    s->node = n;
    s->in_bufs = malloc(sizeof(int) * (size_t)(n->n_in + 1));
    s->out_bufs = malloc(sizeof(int) * (size_t)(n->n_out + 1));
    if (!s->in_bufs || !s->out_bufs)
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    int si = (int)(s - d->steps);
    for (int j = 0; j < n->n_in; j++) {
        int t = n->in[j];
        if (t < 0) {
            s->in_bufs[j] = -1;
        } else if (g->t[t].data) {
            int b = new_buf(d, 0);
            if (b < 0)
                return vx_fail(VX_ERR_NOMEM, "out of memory");
            d->bufs[b].user = g->t[t].data;
            s = &d->steps[si];
            s->in_bufs[j] = b;
        } else {
            s->in_bufs[j] = d->ts[t].plain;
        }
        touch(d, s->in_bufs[j], si);
    }
    for (int j = 0; j < n->n_out; j++) {
        int t = n->out[j];
        if (d->ts[t].plain < 0) {
            int b = new_buf(d, (size_t)vx_tensor_elems(&g->t[t]) * (g->t[t].dtype == VX_DT_I64 ? 8 : 4));
            if (b < 0)
                return vx_fail(VX_ERR_NOMEM, "out of memory");
            d->ts[t].plain = b;
        }
        s = &d->steps[si];
        s->out_bufs[j] = d->ts[t].plain;
        touch(d, s->out_bufs[j], si);
    }
    return VX_OK;
}

/* ---- plain-layout primitives -------------------------------------------
 * Detection heads end in tensors of rank 2 to 5 (YOLOv8's DFL: reshape,
 * transpose, softmax, decode arithmetic with broadcast constants, concat
 * along the anchor axis).  These run as oneDNN primitives on dense
 * row-major buffers, multi-threaded like the rest; reshapes and contiguous
 * splits are views of their input, no copy.  Anything not covered here
 * falls back to the reference kernels. */

/* Buffer wrapping a float32 constant (read-only, owned by the graph). */
static int const_buf(dnnl_impl *d, const vx_tensor *t)
{
    int b = new_buf(d, 0);
    if (b >= 0)
        d->bufs[b].user = t->data;
    return b;
}

/* Plain md of tensor t with its dims right-aligned to `rank` (leading 1s). */
static void plain_md_rank(const vx_tensor *t, int rank, dnnl_memory_desc_t *md)
{
    dnnl_dims_t dims, strides;
    int lead = rank - t->rank;
    for (int i = 0; i < rank; i++)
        dims[i] = i < lead ? 1 : t->dims[i - lead];
    dnnl_dim_t s = 1;
    for (int i = rank - 1; i >= 0; i--) {
        strides[i] = s;
        s *= dims[i];
    }
    dnnl_memory_desc_init_by_strides(md, rank, dims, dnnl_f32, strides);
}

static int is_plain_f32(const vx_tensor *t)
{
    return t->dtype == VX_DT_F32 && t->rank >= (t->data ? 0 : 1) && t->rank <= VX_NN_MAX_RANK;
}

/* Output buffer (plain form) of tensor t. */
static int out_plain(dnnl_impl *d, int t)
{
    tstate_t *s = &d->ts[t];
    if (s->plain < 0)
        s->plain = new_buf(d, dnnl_memory_desc_get_size(&s->plain_md));
    return s->plain;
}

/* Makes the plain form of y a view of x's plain form at byte offset off. */
static vx_err plain_view(dnnl_impl *d, const vx_graph *g, int x, int y, size_t off)
{
    vx_err e = need_plain(d, g, x);
    if (e)
        return e;
    if (d->ts[y].plain >= 0) {
        /* y already has a home (a graph output): copy its window of x */
        const vx_tensor *ty = &g->t[y];
        dnnl_dims_t whole = {(dnnl_dim_t)vx_tensor_elems(&g->t[x])}, w = {(dnnl_dim_t)vx_tensor_elems(ty)},
                    at = {(dnnl_dim_t)(off / 4)};
        dnnl_memory_desc_t xmd, smd, ymd;
        dnnl_memory_desc_init_by_tag(&xmd, 1, whole, dnnl_f32, dnnl_a);
        dnnl_memory_desc_init_by_tag(&ymd, 1, w, dnnl_f32, dnnl_a);
        if (dnnl_memory_desc_init_submemory(&smd, &xmd, w, at) != dnnl_success)
            return vx_fail(VX_ERR_BACKEND, "oneDNN: sub-memory for '%s'", ty->name);
        return reorder_step(d, &smd, d->ts[x].plain, &ymd, d->ts[y].plain);
    }
    int b = new_buf(d, 0);
    if (b < 0)
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    d->bufs[b].root = d->ts[x].plain;
    d->bufs[b].off = off;
    d->ts[y].plain = b;
    touch(d, b, d->nsteps > 0 ? d->nsteps - 1 : 0);
    return VX_OK;
}

/* Adds primitive pd (consumed by the caller) reading srcs, writing y's plain form. */
static vx_err plain_prim(dnnl_impl *d, const_dnnl_op_desc_t desc, int n_src, const int *args,
                         const dnnl_memory_desc_t *mds, const int *bufs, int y, const dnnl_memory_desc_t *ymd)
{
    dnnl_primitive_attr_t attr = new_attr();
    dnnl_primitive_desc_t pd;
    dnnl_status_t st = dnnl_primitive_desc_create(&pd, desc, attr, d->eng, NULL);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success)
        return VX_ERR_UNSUPPORTED; /* quietly: the caller falls back */
    int yb = out_plain(d, y);
    step_t *s;
    vx_err e = yb < 0 ? vx_fail(VX_ERR_NOMEM, "out of memory") : add_prim_step(d, pd, &s);
    dnnl_primitive_desc_destroy(pd);
    if (e)
        return e;
    for (int i = 0; i < n_src; i++)
        add_arg(d, s, args[i], &mds[i], bufs[i]);
    add_arg(d, s, DNNL_ARG_DST, ymd, yb);
    return VX_OK;
}

/* Source buffer (plain form, or the constant itself) of input t. */
static vx_err plain_src(dnnl_impl *d, const vx_graph *g, int t, int *buf)
{
    if (g->t[t].data) {
        *buf = const_buf(d, &g->t[t]);
        return *buf < 0 ? vx_fail(VX_ERR_NOMEM, "out of memory") : VX_OK;
    }
    vx_err e = need_plain(d, g, t);
    *buf = d->ts[t].plain;
    return e;
}

/* VX_OK: compiled; VX_ERR_UNSUPPORTED: not handled here (nothing added);
 * anything else: a real error. */
static vx_err plain_step(dnnl_impl *d, const vx_graph *g, const vx_node *n)
{
    for (int j = 0; j < n->n_out; j++)
        if (!is_plain_f32(&g->t[n->out[j]]) || g->t[n->out[j]].data)
            return VX_ERR_UNSUPPORTED;
    int x = n->n_in > 0 ? n->in[0] : -1;
    if (x < 0 || !is_plain_f32(&g->t[x]))
        return VX_ERR_UNSUPPORTED;
    const vx_tensor *tx = &g->t[x];
    int y = n->out[0];
    const vx_tensor *ty = &g->t[y];
    switch (n->op) {
    case VX_OP_RESHAPE:
    case VX_OP_IDENTITY:
        if (tx->data || vx_tensor_elems(tx) != vx_tensor_elems(ty))
            return VX_ERR_UNSUPPORTED;
        return plain_view(d, g, x, y, 0);
    case VX_OP_SPLIT: {
        if (tx->data)
            return VX_ERR_UNSUPPORTED;
        int ax = n->a.split.axis;
        int64_t outer = 1, inner = 1;
        for (int i = 0; i < ax; i++)
            outer *= tx->dims[i];
        for (int i = ax + 1; i < tx->rank; i++)
            inner *= tx->dims[i];
        int64_t at = 0;
        for (int j = 0; j < n->n_out; j++) {
            int64_t sz = g->t[n->out[j]].dims[ax];
            vx_err e;
            if (outer == 1) {
                e = plain_view(d, g, x, n->out[j], (size_t)(at * inner) * 4);
            } else {
                e = need_plain(d, g, x);
                dnnl_dims_t dims, offs = {0};
                dims_of(&g->t[n->out[j]], dims);
                offs[ax] = at;
                dnnl_memory_desc_t smd;
                if (!e &&
                    dnnl_memory_desc_init_submemory(&smd, &d->ts[x].plain_md, dims, offs) != dnnl_success)
                    e = vx_fail(VX_ERR_BACKEND, "oneDNN: sub-memory for '%s'", n->name);
                int yb = e ? -1 : out_plain(d, n->out[j]);
                if (!e && yb < 0)
                    e = vx_fail(VX_ERR_NOMEM, "out of memory");
                if (!e)
                    e = reorder_step(d, &smd, d->ts[x].plain, &d->ts[n->out[j]].plain_md, yb);
            }
            if (e)
                return e;
            at += sz;
        }
        return VX_OK;
    }
    case VX_OP_TRANSPOSE: {
        if (tx->data)
            return VX_ERR_UNSUPPORTED;
        vx_err e = need_plain(d, g, x);
        if (e)
            return e;
        dnnl_dims_t xs, dims, strides;
        dnnl_dim_t s = 1;
        for (int i = tx->rank - 1; i >= 0; i--) {
            xs[i] = s;
            s *= tx->dims[i];
        }
        for (int i = 0; i < ty->rank; i++) {
            dims[i] = ty->dims[i];
            strides[i] = xs[n->a.transpose.perm[i]];
        }
        dnnl_memory_desc_t smd;
        if (dnnl_memory_desc_init_by_strides(&smd, ty->rank, dims, dnnl_f32, strides) != dnnl_success)
            return VX_ERR_UNSUPPORTED;
        int yb = out_plain(d, y);
        if (yb < 0)
            return vx_fail(VX_ERR_NOMEM, "out of memory");
        return reorder_step(d, &smd, d->ts[x].plain, &d->ts[y].plain_md, yb);
    }
    case VX_OP_SOFTMAX: {
        if (tx->data || n->a.softmax.flat)
            return VX_ERR_UNSUPPORTED;
        int b;
        vx_err e = plain_src(d, g, x, &b);
        if (e)
            return e;
        int ax = n->a.softmax.axis;
        if (ax == tx->rank - 1) {
            dnnl_softmax_desc_t sd;
            if (dnnl_softmax_forward_desc_init(&sd, dnnl_forward_inference, &d->ts[x].plain_md, ax) !=
                dnnl_success)
                return VX_ERR_UNSUPPORTED;
            int a = DNNL_ARG_SRC;
            return plain_prim(d, &sd, 1, &a, &d->ts[x].plain_md, &b, y, &d->ts[y].plain_md);
        }
        /* oneDNN vectorises softmax only along the innermost dimension (on
         * another axis it takes its scalar reference kernel, ~100 ms for
         * YOLOv8's DFL at 640): reorder so that the axis is innermost, run
         * the softmax there in place, reorder back. */
        dnnl_memory_desc_t pm;
        dnnl_dims_t strides;
        dnnl_dim_t st = tx->dims[ax];
        strides[ax] = 1;
        for (int i = tx->rank - 1; i >= 0; i--)
            if (i != ax) {
                strides[i] = st;
                st *= tx->dims[i];
            }
        if (dnnl_memory_desc_init_by_strides(&pm, tx->rank, d->ts[x].plain_md.dims, dnnl_f32, strides) !=
            dnnl_success)
            return VX_ERR_UNSUPPORTED;
        dnnl_softmax_desc_t sd;
        if (dnnl_softmax_forward_desc_init(&sd, dnnl_forward_inference, &pm, ax) != dnnl_success)
            return VX_ERR_UNSUPPORTED;
        dnnl_primitive_attr_t attr = new_attr();
        dnnl_primitive_desc_t pd;
        dnnl_status_t ps = dnnl_primitive_desc_create(&pd, &sd, attr, d->eng, NULL);
        dnnl_primitive_attr_destroy(attr);
        if (ps != dnnl_success)
            return VX_ERR_UNSUPPORTED;
        int tb = new_buf(d, dnnl_memory_desc_get_size(&pm)), yb = out_plain(d, y);
        if (tb < 0 || yb < 0) {
            dnnl_primitive_desc_destroy(pd);
            return vx_fail(VX_ERR_NOMEM, "out of memory");
        }
        e = reorder_step(d, &d->ts[x].plain_md, b, &pm, tb);
        step_t *s;
        if (!e)
            e = add_prim_step(d, pd, &s);
        dnnl_primitive_desc_destroy(pd);
        if (e)
            return e;
        add_arg(d, s, DNNL_ARG_SRC, &pm, tb);
        add_arg(d, s, DNNL_ARG_DST, &pm, tb);
        return reorder_step(d, &pm, tb, &d->ts[y].plain_md, yb);
    }
    case VX_OP_RELU:
    case VX_OP_LEAKY_RELU:
    case VX_OP_SIGMOID:
    case VX_OP_SWISH:
    case VX_OP_HARDSWISH:
    case VX_OP_CLIP: {
        if (tx->data)
            return VX_ERR_UNSUPPORTED;
        int b;
        vx_err e = plain_src(d, g, x, &b);
        if (e)
            return e;
        dnnl_alg_kind_t alg;
        float alpha, beta = 0.0f;
        if (n->op == VX_OP_CLIP) {
            alg = dnnl_eltwise_clip_v2;
            alpha = n->a.clip.lo;
            beta = n->a.clip.hi;
        } else {
            vx_act act = n->op == VX_OP_RELU         ? VX_ACT_RELU
                         : n->op == VX_OP_LEAKY_RELU ? VX_ACT_LEAKY_RELU
                         : n->op == VX_OP_SIGMOID    ? VX_ACT_SIGMOID
                         : n->op == VX_OP_SWISH      ? VX_ACT_SWISH
                                                     : VX_ACT_HARDSWISH;
            act_alg(act, n->op == VX_OP_LEAKY_RELU ? n->a.leaky.alpha : 0.0f, &alg, &alpha);
        }
        dnnl_eltwise_desc_t ed;
        if (dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_inference, alg, &d->ts[x].plain_md, alpha,
                                           beta) != dnnl_success)
            return VX_ERR_UNSUPPORTED;
        int a = DNNL_ARG_SRC;
        return plain_prim(d, &ed, 1, &a, &d->ts[x].plain_md, &b, y, &d->ts[y].plain_md);
    }
    case VX_OP_ADD:
    case VX_OP_SUB:
    case VX_OP_MUL:
    case VX_OP_DIV: {
        if (n->n_in != 2 || n->in[1] < 0 || !is_plain_f32(&g->t[n->in[1]]))
            return VX_ERR_UNSUPPORTED;
        int a0 = n->in[0], a1 = n->in[1];
        /* oneDNN broadcasts only the second source: the first must have the output's shape. */
        int r = ty->rank;
        if (g->t[a0].rank > r || g->t[a1].rank > r)
            return VX_ERR_UNSUPPORTED;
        dnnl_memory_desc_t md0, md1;
        plain_md_rank(&g->t[a0], r, &md0);
        plain_md_rank(&g->t[a1], r, &md1);
        int full0 = 1;
        for (int i = 0; i < r; i++)
            if (md0.dims[i] != ty->dims[i])
                full0 = 0;
        if (!full0) {
            if (n->op == VX_OP_SUB || n->op == VX_OP_DIV)
                return VX_ERR_UNSUPPORTED;
            int tt = a0;
            a0 = a1;
            a1 = tt;
            dnnl_memory_desc_t tm = md0;
            md0 = md1;
            md1 = tm;
            for (int i = 0; i < r; i++)
                if (md0.dims[i] != ty->dims[i])
                    return VX_ERR_UNSUPPORTED;
        }
        for (int i = 0; i < r; i++)
            if (md1.dims[i] != 1 && md1.dims[i] != ty->dims[i])
                return VX_ERR_UNSUPPORTED;
        if (g->t[a0].data && g->t[a1].data)
            return VX_ERR_UNSUPPORTED;
        int bufs[2];
        vx_err e = plain_src(d, g, a0, &bufs[0]);
        if (!e)
            e = plain_src(d, g, a1, &bufs[1]);
        if (e)
            return e;
        dnnl_alg_kind_t alg = n->op == VX_OP_ADD   ? dnnl_binary_add
                              : n->op == VX_OP_SUB ? dnnl_binary_sub
                              : n->op == VX_OP_MUL ? dnnl_binary_mul
                                                   : dnnl_binary_div;
        dnnl_binary_desc_t bd;
        if (dnnl_binary_desc_init(&bd, alg, &md0, &md1, &d->ts[y].plain_md) != dnnl_success)
            return VX_ERR_UNSUPPORTED;
        dnnl_memory_desc_t mds[2] = {md0, md1};
        int args[2] = {DNNL_ARG_SRC_0, DNNL_ARG_SRC_1};
        return plain_prim(d, &bd, 2, args, mds, bufs, y, &d->ts[y].plain_md);
    }
    case VX_OP_POW: {
        /* x ^ constant: eltwise pow (alpha * x ^ beta) */
        const vx_tensor *te = n->n_in == 2 && n->in[1] >= 0 ? &g->t[n->in[1]] : NULL;
        if (tx->data || !te || !te->data || te->dtype != VX_DT_F32 || vx_tensor_elems(te) != 1)
            return VX_ERR_UNSUPPORTED;
        int b;
        vx_err e = plain_src(d, g, x, &b);
        if (e)
            return e;
        dnnl_eltwise_desc_t ed;
        if (dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_inference, dnnl_eltwise_pow, &d->ts[x].plain_md,
                                           1.0f, *(const float *)te->data) != dnnl_success)
            return VX_ERR_UNSUPPORTED;
        int a = DNNL_ARG_SRC;
        return plain_prim(d, &ed, 1, &a, &d->ts[x].plain_md, &b, y, &d->ts[y].plain_md);
    }
    case VX_OP_MATMUL: {
        if (n->n_in != 2 || n->in[1] < 0)
            return VX_ERR_UNSUPPORTED;
        const vx_tensor *tb = &g->t[n->in[1]];
        int r = ty->rank;
        if (!is_plain_f32(tb) || tx->rank < 2 || tb->rank < 2 || r < 2 || r > 6 || tx->rank > r ||
            tb->rank > r || (tx->data && tb->data))
            return VX_ERR_UNSUPPORTED;
        dnnl_memory_desc_t mds[2];
        plain_md_rank(tx, r, &mds[0]);
        plain_md_rank(tb, r, &mds[1]);
        int bufs[2];
        vx_err e = plain_src(d, g, x, &bufs[0]);
        if (!e)
            e = plain_src(d, g, n->in[1], &bufs[1]);
        if (e)
            return e;
        dnnl_matmul_desc_t md;
        if (dnnl_matmul_desc_init(&md, &mds[0], &mds[1], NULL, &d->ts[y].plain_md) != dnnl_success)
            return VX_ERR_UNSUPPORTED;
        int args[2] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS};
        return plain_prim(d, &md, 2, args, mds, bufs, y, &d->ts[y].plain_md);
    }
    case VX_OP_CONCAT: {
        if (n->n_in > 64)
            return VX_ERR_UNSUPPORTED;
        dnnl_memory_desc_t mds[64];
        int bufs[64];
        for (int i = 0; i < n->n_in; i++) {
            const vx_tensor *ti = &g->t[n->in[i]];
            if (!is_plain_f32(ti) || ti->rank != ty->rank)
                return VX_ERR_UNSUPPORTED;
        }
        for (int i = 0; i < n->n_in; i++) {
            vx_err e = plain_src(d, g, n->in[i], &bufs[i]);
            if (e)
                return e;
            plain_md_rank(&g->t[n->in[i]], ty->rank, &mds[i]);
        }
        /* In place when the slices are contiguous (every dimension before
         * the axis is 1) and each input's plain form is a buffer of its own
         * that nothing else lives in: the producers write into the output
         * (YOLOv8's [1, 4, 8400] boxes and [1, 80, 8400] scores). */
        int ax = n->a.concat.axis, inplace = ax >= 0 && ax < ty->rank && d->ts[y].plain < 0 && !d->capture;
        for (int k = 0; k < ax && inplace; k++)
            inplace = ty->dims[k] == 1;
        for (int i = 0; i < n->n_in && inplace; i++) {
            int t = n->in[i], b = bufs[i];
            inplace = !g->t[t].data && g->t[t].graph_output < 0 && b == d->ts[t].plain && !d->bufs[b].user &&
                      d->bufs[b].root == b;
            for (int j = 0; j < i && inplace; j++)
                inplace = bufs[j] != b;
            for (int k = 0; k < d->nbufs && inplace; k++)
                inplace = k == b || d->bufs[k].root != b;
        }
        if (inplace) {
            int yb = out_plain(d, y);
            if (yb < 0)
                return vx_fail(VX_ERR_NOMEM, "out of memory");
            size_t off = 0;
            for (int i = 0; i < n->n_in; i++) {
                d->bufs[bufs[i]].root = yb;
                d->bufs[bufs[i]].off = off;
                off += (size_t)vx_tensor_elems(&g->t[n->in[i]]) * 4;
            }
            touch(d, yb, d->nsteps > 0 ? d->nsteps - 1 : 0);
            return VX_OK;
        }
        dnnl_primitive_desc_t pd;
        dnnl_primitive_attr_t attr = new_attr();
        dnnl_status_t st = dnnl_concat_primitive_desc_create(&pd, &d->ts[y].plain_md, n->n_in,
                                                             n->a.concat.axis, mds, attr, d->eng);
        dnnl_primitive_attr_destroy(attr);
        if (st != dnnl_success)
            return vx_fail(VX_ERR_BACKEND, "oneDNN: concat creation failed for '%s'", n->name);
        int yb = out_plain(d, y);
        step_t *s;
        vx_err e = yb < 0 ? vx_fail(VX_ERR_NOMEM, "out of memory") : add_prim_step(d, pd, &s);
        dnnl_primitive_desc_destroy(pd);
        if (e)
            return e;
        for (int i = 0; i < n->n_in; i++)
            add_arg(d, s, DNNL_ARG_MULTIPLE_SRC + i, &mds[i], bufs[i]);
        add_arg(d, s, DNNL_ARG_DST, &d->ts[y].plain_md, yb);
        return VX_OK;
    }
    default: return VX_ERR_UNSUPPORTED;
    }
}

/* Not a blocked-layout primitive: a plain-layout one, else the reference kernel. */
static vx_err fallback_step(dnnl_impl *d, const vx_graph *g, const vx_node *n)
{
    vx_err e = plain_step(d, g, n);
    return e == VX_ERR_UNSUPPORTED ? ref_step(d, g, n) : e;
}

/* oneDNN's nearest resampling takes round((o + 0.5) * in / out - 0.5) per
 * axis: usable when that picks the same source rows/columns as the node. */
static int nearest_matches(const vx_resize_attr *r, int64_t in, int64_t out, float scale)
{
    for (int64_t o = 0; o < out; o++) {
        double f = ((double)o + 0.5) * (double)in / (double)out - 0.5;
        double fr = f - floor(f);
        if (fabs(fr - 0.5) < 1e-3)
            return 0; /* a tie: rounding direction not guaranteed */
        int64_t i = (int64_t)floor(f + 0.5);
        i = i < 0 ? 0 : i >= in ? in - 1 : i;
        if (i != vx_resize_nearest_src(r, o, in, out, scale))
            return 0;
    }
    return 1;
}

static vx_err compile_node(dnnl_impl *d, const vx_graph *g, const vx_node *n)
{
    int x = n->n_in > 0 ? n->in[0] : -1;
    int all_act = 1;
    for (int j = 0; j < n->n_in; j++)
        if (n->in[j] < 0 || !is_act_tensor(&g->t[n->in[j]]))
            all_act = 0;
    for (int j = 0; j < n->n_out; j++)
        if (!is_act_tensor(&g->t[n->out[j]]))
            all_act = 0;
    if (n->op == VX_OP_CONV && is_act_tensor(&g->t[x]) && is_act_tensor(&g->t[n->out[0]])) {
        if (d->ts[x].act < 0 && g->t[x].graph_input < 0) {
            vx_err e = need_act(d, g, x);
            if (e)
                return e;
        }
        if (n->n_in > 3 && n->in[3] >= 0 && !is_act_tensor(&g->t[n->in[3]]))
            return ref_step(d, g, n);
        if (conv_runs_int8(d, g, n))
            return conv_step_int8(d, g, n);
        d->conv_fp32++;
        return conv_step(d, g, n);
    }
    if (x < 0 || n->n_out < 1)
        return fallback_step(d, g, n);
    const vx_tensor *tx = &g->t[x], *ty = &g->t[n->out[0]];
    /* Which nodes run on the blocked layout. */
    switch (n->op) {
    case VX_OP_MAXPOOL:
    case VX_OP_AVGPOOL: break;
    case VX_OP_RESIZE: {
        const vx_resize_attr *r = &n->a.resize;
        int linear = r->coord == VX_COORD_HALF_PIXEL && r->mode == VX_RESIZE_LINEAR &&
                     r->scale_h == (float)ty->dims[2] / (float)tx->dims[2] &&
                     r->scale_w == (float)ty->dims[3] / (float)tx->dims[3];
        int nearest = all_act && r->mode == VX_RESIZE_NEAREST &&
                      nearest_matches(r, tx->dims[2], ty->dims[2], r->scale_h) &&
                      nearest_matches(r, tx->dims[3], ty->dims[3], r->scale_w);
        if (!linear && !nearest)
            all_act = 0;
        break;
    }
    case VX_OP_ADD:
    case VX_OP_SUB:
    case VX_OP_MUL:
    case VX_OP_DIV:
        if (all_act && memcmp(g->t[n->in[0]].dims, g->t[n->in[1]].dims, sizeof(int64_t) * 4))
            all_act = 0;
        break;
    case VX_OP_RELU:
    case VX_OP_LEAKY_RELU:
    case VX_OP_SIGMOID:
    case VX_OP_SWISH:
    case VX_OP_HARDSWISH:
        /* Stay plain when the input only exists plain (a head's tail). */
        if (all_act && d->ts[x].act < 0 && d->ts[x].plain >= 0 && tx->graph_input < 0)
            all_act = 0;
        break;
    case VX_OP_CONCAT:
        if (n->a.concat.axis != 1)
            all_act = 0;
        break;
    default: all_act = 0;
    }
    if (!all_act)
        return fallback_step(d, g, n);
    /* Sources in the destination's storage type (a no-op in FP32/BF16
     * engines; in INT8 ones pools, resizes and concats keep the type and
     * the calibrator gave them one range). */
    int ydt = d->ts[n->out[0]].dt;
    dnnl_memory_desc_t smd[2];
    int sbuf[2] = {-1, -1};
    for (int j = 0; j < n->n_in; j++) {
        vx_err e = need_act(d, g, n->in[j]);
        if (e)
            return e;
        if (j < 2 && n->op != VX_OP_CONCAT) {
            int want = n->op != VX_OP_ADD ? ydt : d->ts[n->in[j]].zp ? DT_F32 : d->ts[n->in[j]].dt;
            sbuf[j] = need_form(d, g, n->in[j], want, &smd[j], &e);
            if (e)
                return e;
        }
    }
    switch (n->op) {
    case VX_OP_MAXPOOL:
    case VX_OP_AVGPOOL: {
        const vx_pool_attr *p = &n->a.pool;
        dnnl_pooling_v2_desc_t pd;
        dnnl_dims_t st = {p->sh, p->sw}, k = {p->kh, p->kw}, dl = {0, 0}, pl = {p->pt, p->pl},
                    pr = {p->pb, p->pr};
        dnnl_alg_kind_t alg = n->op == VX_OP_MAXPOOL ? dnnl_pooling_max
                              : p->count_include_pad ? dnnl_pooling_avg_include_padding
                                                     : dnnl_pooling_avg_exclude_padding;
        DNNL_CHECK(dnnl_pooling_v2_forward_desc_init(&pd, dnnl_forward_inference, alg, &smd[0],
                                                     &d->ts[n->out[0]].act_md, st, k, dl, pl, pr),
                   "pooling descriptor");
        int a = DNNL_ARG_SRC;
        return simple_step(d, g, n, &pd, 1, sbuf, smd, &a, NULL);
    }
    case VX_OP_RESIZE: {
        const vx_resize_attr *r = &n->a.resize;
        /* oneDNN's resampling: half-pixel linear, or nearest (checked above). */
        dnnl_resampling_desc_t rd;
        DNNL_CHECK(dnnl_resampling_forward_desc_init(&rd, dnnl_forward_inference,
                                                     r->mode == VX_RESIZE_LINEAR ? dnnl_resampling_linear
                                                                                 : dnnl_resampling_nearest,
                                                     NULL, &smd[0], &d->ts[n->out[0]].act_md),
                   "resampling descriptor");
        int a = DNNL_ARG_SRC;
        return simple_step(d, g, n, &rd, 1, sbuf, smd, &a, NULL);
    }
    case VX_OP_ADD:
    case VX_OP_SUB:
    case VX_OP_MUL:
    case VX_OP_DIV: {
        dnnl_alg_kind_t alg = n->op == VX_OP_ADD   ? dnnl_binary_add
                              : n->op == VX_OP_SUB ? dnnl_binary_sub
                              : n->op == VX_OP_MUL ? dnnl_binary_mul
                                                   : dnnl_binary_div;
        dnnl_binary_desc_t bd;
        DNNL_CHECK(dnnl_binary_desc_init(&bd, alg, &smd[0], &smd[1], &d->ts[n->out[0]].act_md),
                   "binary descriptor");
        int args[2] = {DNNL_ARG_SRC_0, DNNL_ARG_SRC_1};
        /* INT8 Add: each source rescaled to the destination's scale. */
        float sc[2] = {d->ts[n->out[0]].q / (d->ts[n->in[0]].zp ? 1.0f : d->ts[n->in[0]].q),
                       d->ts[n->out[0]].q / (d->ts[n->in[1]].zp ? 1.0f : d->ts[n->in[1]].q)};
        return simple_step(d, g, n, &bd, 2, sbuf, smd, args, n->op == VX_OP_ADD ? sc : NULL);
    }
    case VX_OP_RELU:
    case VX_OP_LEAKY_RELU:
    case VX_OP_SIGMOID:
    case VX_OP_SWISH:
    case VX_OP_HARDSWISH: {
        dnnl_eltwise_desc_t ed;
        vx_act act = n->op == VX_OP_RELU         ? VX_ACT_RELU
                     : n->op == VX_OP_LEAKY_RELU ? VX_ACT_LEAKY_RELU
                     : n->op == VX_OP_SIGMOID    ? VX_ACT_SIGMOID
                     : n->op == VX_OP_SWISH      ? VX_ACT_SWISH
                                                 : VX_ACT_HARDSWISH;
        dnnl_alg_kind_t alg;
        float alpha;
        act_alg(act, n->op == VX_OP_LEAKY_RELU ? n->a.leaky.alpha : 0.0f, &alg, &alpha);
        DNNL_CHECK(dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_inference, alg, &smd[0], alpha, 0.0f),
                   "eltwise descriptor");
        int a = DNNL_ARG_SRC;
        return simple_step(d, g, n, &ed, 1, sbuf, smd, &a, NULL);
    }
    case VX_OP_CONCAT: return concat_step(d, g, n);
    default: return fallback_step(d, g, n);
    }
}

/* INT8 engines: the storage type of every activation's blocked form.
 * Outputs of INT8 convolutions, pools, resizes, concats and Adds are
 * u8/s8 with their calibrated scale; graph inputs too (quantised by the
 * reorder that reads them); graph outputs, outputs written straight into
 * the user's buffers and everything else stay f32. */
static vx_err plan_int8(dnnl_impl *d, const vx_graph *g)
{
    d->uns = malloc((size_t)g->nt + 1);
    if (!d->uns)
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    vx_quant_signedness(g, d->uns);
    char *q8 = calloc((size_t)g->nt + 1, 1);
    if (!q8)
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    for (int i = 0; i < g->n_inputs; i++)
        q8[g->inputs[i]] = 1;
    for (int i = 0; i < g->nn; i++) {
        const vx_node *n = &g->n[i];
        if (d->skip[i] || n->n_out < 1)
            continue;
        switch (n->op) {
        case VX_OP_CONV: q8[n->out[0]] = (char)conv_runs_int8(d, g, n); break;
        case VX_OP_MAXPOOL:
        case VX_OP_AVGPOOL:
        case VX_OP_RESIZE:
        case VX_OP_CONCAT:
        case VX_OP_ADD: q8[n->out[0]] = 1; break;
        default: break;
        }
    }
    for (int t = 0; t < g->nt; t++) {
        tstate_t *s = &d->ts[t];
        if (!q8[t] || !is_act_tensor(&g->t[t]) || !(g->t[t].amax > 0.0f) || g->t[t].graph_output >= 0 ||
            s->direct_out >= 0)
            continue;
        vx_qparam p;
        vx_quant_param(&g->t[t], d->uns[t], &p);
        s->dt = p.is_u8 ? DT_U8 : DT_S8;
        s->q = p.q;
        s->zp = p.zp;
        s->act_md.data_type = dnnl_dt(s->dt);
        dnnl_dims_t dims;
        dims_of(&g->t[t], dims);
        dnnl_memory_desc_init_by_tag(&s->act_md, 4, dims, dnnl_dt(s->dt), d->act_tag);
    }
    free(q8);
    return VX_OK;
}

/* Reshape([N,C,H*W]) -> Transpose(0,2,1) feeding a graph output is the
 * NHWC view of a 4-D tensor: mark it so the producer writes it directly. */
static void find_nhwc_outputs(dnnl_impl *d, const vx_graph *g)
{
    for (int i = 0; i < g->nn; i++) {
        const vx_node *tr = &g->n[i];
        if (tr->op != VX_OP_TRANSPOSE || g->t[tr->out[0]].graph_output < 0 || g->t[tr->out[0]].rank != 3)
            continue;
        const int *p = tr->a.transpose.perm;
        if (p[0] != 0 || p[1] != 2 || p[2] != 1)
            continue;
        int r = g->t[tr->in[0]].producer;
        if (r < 0 || g->n[r].op != VX_OP_RESHAPE || vx_graph_single_consumer(g, tr->in[0]) != i)
            continue;
        int x = g->n[r].in[0];
        const vx_tensor *tx = &g->t[x], *tr3 = &g->t[tr->in[0]];
        if (!is_act_tensor(tx) || tr3->dims[0] != tx->dims[0] || tr3->dims[1] != tx->dims[1] ||
            tr3->dims[2] != tx->dims[2] * tx->dims[3])
            continue;
        int prod = tx->producer;
        if (prod < 0 || g->n[prod].op != VX_OP_CONV || vx_graph_single_consumer(g, x) != r ||
            (g->n[prod].n_in > 3 && g->n[prod].in[3] >= 0) || g->t[x].graph_output >= 0)
            continue;
        /* Output slot of the transpose: first matching index. */
        int slot = -1;
        for (int k = 0; k < g->n_outputs; k++)
            if (g->outputs[k] == tr->out[0])
                slot = k;
        if (slot < 0)
            continue;
        d->ts[x].direct_out = slot;
        d->out_direct[slot] = 1;
        d->skip[r] = 1;
        d->skip[i] = 1;
    }
}

static vx_err dnnl_create(vx_nn_engine *e)
{
    const vx_graph *g = e->g;
    dnnl_impl *d = calloc(1, sizeof *d);
    if (!d)
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    e->impl = d;
    omp_set_num_threads(e->threads);
    DNNL_CHECK(dnnl_engine_create(&d->eng, dnnl_cpu, 0), "engine creation");
    DNNL_CHECK(dnnl_stream_create(&d->stream, d->eng, dnnl_stream_default_flags), "stream creation");
    d->act_dt = e->precision == VX_NN_BF16 ? dnnl_bf16 : dnnl_f32;
    d->int8 = e->precision == VX_NN_INT8;
    d->block = isa_block();
    d->act_tag = d->block == 16 ? dnnl_aBcd16b : dnnl_aBcd8b;

    /* Layout per precision.  oneDNN 2.6's INT8 kernels on VNNI/AMX take
     * NHWC only (blocked INT8 falls to reference code), and so do its AMX
     * BF16 kernels (brgconv; blocked BF16 runs the older AVX-512 jit_bf16).
     * Measured at 2 threads on an AMX Xeon (NanoDet-g 416): FP32 blocked
     * 17.0 ms, BF16 blocked 28.6 ms, BF16 NHWC 4.1 ms, INT8 NHWC 3.4 ms.
     * FP32 stays blocked (concats in place, no reorders).
     * VX_CPU_LAYOUT=nhwc|blocked overrides (experiments). */
    const char *lay = getenv("VX_CPU_LAYOUT");
    int amx = (dnnl_get_effective_cpu_isa() & dnnl_cpu_isa_avx512_core_amx) == dnnl_cpu_isa_avx512_core_amx;
    int nhwc = d->int8 || (e->precision == VX_NN_BF16 && amx);
    if (lay && !strcmp(lay, "nhwc"))
        nhwc = 1;
    else if (lay && !strcmp(lay, "blocked"))
        nhwc = 0;
    if (nhwc) {
        d->block = 0;
        d->act_tag = dnnl_acdb;
    }
    d->ts = calloc((size_t)g->nt + 1, sizeof(tstate_t));
    d->skip = calloc((size_t)g->nn + 1, 1);
    d->out_direct = calloc((size_t)g->n_outputs + 1, 1);
    if (!d->ts || !d->skip || !d->out_direct)
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    d->scratch_buf = new_buf(d, 0);
    for (int i = 0; i < g->nt; i++) {
        tstate_t *s = &d->ts[i];
        const vx_tensor *t = &g->t[i];
        s->act = s->plain = s->direct_out = -1;
        s->alt[0] = s->alt[1] = s->alt[2] = -1;
        s->dt = DT_F32;
        s->q = 1.0f;
        if (t->rank < 0 || t->data)
            continue;
        dnnl_dims_t dims;
        dims_of(t, dims);
        static const dnnl_format_tag_t plain_tags[] = {dnnl_a,    dnnl_a,     dnnl_ab,    dnnl_abc,
                                                       dnnl_abcd, dnnl_abcde, dnnl_abcdef};
        if (t->rank == 0) {
            dnnl_dims_t one = {1};
            dnnl_memory_desc_init_by_tag(&s->plain_md, 1, one, dnnl_f32, dnnl_a);
        } else {
            dnnl_memory_desc_init_by_tag(&s->plain_md, t->rank, dims, dnnl_f32, plain_tags[t->rank]);
        }
        if (is_act_tensor(t))
            dnnl_memory_desc_init_by_tag(&s->act_md, 4, dims, d->act_dt, d->act_tag);
    }
    for (int i = 0; i < g->n_inputs; i++) {
        int t = g->inputs[i];
        int b = new_buf(d, 0);
        if (b < 0)
            return vx_fail(VX_ERR_NOMEM, "out of memory");
        d->bufs[b].user = e->inputs[i];
        d->ts[t].plain = b;
    }
    d->capture = e->capture;
    if (!d->capture)
        find_nhwc_outputs(d, g);
    if (d->int8) {
        vx_err err = plan_int8(d, g);
        if (err)
            return err;
    }
    for (int i = 0; i < g->nt; i++)
        if (d->ts[i].direct_out >= 0) {
            int b = new_buf(d, 0);
            if (b < 0)
                return vx_fail(VX_ERR_NOMEM, "out of memory");
            d->bufs[b].user = e->outputs[d->ts[i].direct_out];
            d->ts[i].plain = b;
        }
    for (int i = 0; i < g->nn; i++) {
        if (d->skip[i])
            continue;
        vx_err err = compile_node(d, g, &g->n[i]);
        if (err)
            return vx_fail_prefix(err, "cpu backend, node '%s': ", g->n[i].name);
    }
    /* Graph outputs not written directly: copy into the user's buffers,
     * unless the plain form is a buffer of its own (no view of another
     * one, no user memory): then it simply becomes the user's buffer and
     * its producer writes there (YOLOv8's final [1, 84, 8400] concat). */
    for (int i = 0; i < g->n_outputs; i++) {
        int t = g->outputs[i];
        if (d->out_direct[i])
            continue;
        int pb = d->ts[t].plain;
        if (pb >= 0 && !d->capture && !d->bufs[pb].user && d->bufs[pb].root == pb) {
            d->bufs[pb].user = e->outputs[i];
            continue;
        }
        int ub = new_buf(d, 0);
        if (ub < 0)
            return vx_fail(VX_ERR_NOMEM, "out of memory");
        d->bufs[ub].user = e->outputs[i];
        vx_err err;
        if (d->ts[t].plain >= 0) {
            err = reorder_step(d, &d->ts[t].plain_md, d->ts[t].plain, &d->ts[t].plain_md, ub);
        } else if (d->ts[t].act >= 0) {
            err = reorder_zp(d, &d->ts[t].act_md, d->ts[t].act, &d->ts[t].plain_md, ub, 1.0f / d->ts[t].q,
                             d->ts[t].zp, 0);
        } else if (d->ts[t].direct_out >= 0) {
            /* Same tensor as another output slot written directly. */
            err = reorder_step(d, &d->ts[t].plain_md, d->ts[t].plain, &d->ts[t].plain_md, ub);
        } else {
            err = vx_fail(VX_ERR_BACKEND, "cpu backend: output '%s' is never computed", g->out_names[i]);
        }
        if (err)
            return err;
    }
    /* Plan: aliases extend their root's lifetime, then pack roots by liveness. */
    d->bufs[d->scratch_buf].bytes = d->scratch_bytes;
    int nb = d->nbufs;
    size_t *bytes = calloc((size_t)nb, sizeof(size_t)), *off = calloc((size_t)nb, sizeof(size_t));
    int *def = calloc((size_t)nb, sizeof(int)), *last = calloc((size_t)nb, sizeof(int));
    if (!bytes || !off || !def || !last) {
        free(bytes);
        free(off);
        free(def);
        free(last);
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    }
    for (int b = 0; b < nb; b++) {
        def[b] = d->bufs[b].def;
        last[b] = d->bufs[b].last;
    }
    for (int b = 0; b < nb; b++) {
        size_t o;
        int r = resolve_root(d, b, &o);
        if (r != b) {
            if (d->bufs[b].def < def[r])
                def[r] = d->bufs[b].def;
            if (d->bufs[b].last > last[r])
                last[r] = d->bufs[b].last;
        }
    }
    for (int b = 0; b < nb; b++) {
        size_t o;
        bytes[b] =
            (!d->bufs[b].user && resolve_root(d, b, &o) == b && d->bufs[b].last >= 0) ? d->bufs[b].bytes : 0;
        if (b == d->scratch_buf) {
            /* Scratchpad is shared by all steps: alive throughout. */
            def[b] = 0;
            last[b] = d->nsteps;
        }
        if (d->capture)
            last[b] = d->nsteps;
        if (last[b] < def[b])
            last[b] = def[b];
    }
    size_t total = vx_plan_memory(nb, bytes, def, last, 64, off);
    free(def);
    free(last);
    if (total == (size_t)-1 || !(d->arena = aligned_alloc(64, (total + 64) / 64 * 64))) {
        free(bytes);
        free(off);
        return vx_fail(VX_ERR_NOMEM, "cpu engine: cannot allocate %zu bytes", total);
    }
    d->arena_bytes = total;
    for (int b = 0; b < nb; b++) {
        size_t o;
        int r = resolve_root(d, b, &o);
        uint8_t *base = d->bufs[r].user ? d->bufs[r].user : d->arena + off[r];
        d->bufs[b].ptr = base + o;
    }
    free(bytes);
    free(off);
    /* Memory objects for every primitive argument, pointing into the arena. */
    for (int i = 0; i < d->nsteps; i++) {
        step_t *s = &d->steps[i];
        for (int k = 0; k < s->nargs; k++) {
            DNNL_CHECK(dnnl_memory_create(&s->mems[k], &s->args[k].md, d->eng, d->bufs[s->args[k].buf].ptr),
                       "memory creation");
            s->exec[k].arg = s->args[k].arg;
            s->exec[k].memory = s->mems[k];
        }
    }
    int nprim = 0, nref = 0;
    for (int i = 0; i < d->nsteps; i++) {
        d->steps[i].prim ? nprim++ : nref++;
        e->stats.reorders += d->steps[i].is_reorder;
    }
    e->stats.primitives = nprim;
    e->stats.reference_steps = nref;
    e->stats.arena_mib = (double)total / (1 << 20);
    const dnnl_version_t *v = dnnl_version();
    char mix[64] = "";
    if (d->int8)
        snprintf(mix, sizeof mix, " (%d convs INT8, %d FP32)", d->conv_int8, d->conv_fp32);
    snprintf(
        e->desc, sizeof e->desc,
        "cpu: oneDNN %d.%d.%d, %s, %s%s %s%s, conv impl %s, %d threads, %d primitives + %d reference steps, "
        "%.1f MiB arena",
        v->major, v->minor, v->patch, isa_name(), vx_nn_precision_name(e->precision), mix,
        d->block == 16 ? "nChw16c"
        : d->block     ? "nChw8c"
                       : "nhwc",
        e->precision != VX_NN_FP32 && !vx_nn_precision_native(e->precision)
            ? (e->precision == VX_NN_BF16 ? " (emulated: no native BF16)" : " (no VNNI: slower INT8)")
            : "",
        d->conv_impl[0] ? d->conv_impl : "none", e->threads, nprim, nref, (double)total / (1 << 20));
    return VX_OK;
}

static vx_err dnnl_run(vx_nn_engine *e)
{
    dnnl_impl *d = e->impl;
    const vx_graph *g = e->g;
    omp_set_num_threads(e->threads);
    for (int i = 0; i < d->nsteps; i++) {
        step_t *s = &d->steps[i];
        if (s->prim) {
            dnnl_status_t st = dnnl_primitive_execute(s->prim, d->stream, s->nargs, s->exec);
            if (st != dnnl_success)
                return vx_fail(VX_ERR_BACKEND, "oneDNN: execution failed at step %d (status %d)", i, (int)st);
            continue;
        }
        const vx_node *n = s->node;
        const void *in[64];
        void *out[16];
        for (int j = 0; j < n->n_in && j < 64; j++)
            in[j] = s->in_bufs[j] >= 0 ? d->bufs[s->in_bufs[j]].ptr : NULL;
        for (int j = 0; j < n->n_out && j < 16; j++)
            out[j] = d->bufs[s->out_bufs[j]].ptr;
        vx_err err = vx_ref_run_node(g, n, in, out);
        if (err)
            return err;
    }
    dnnl_stream_wait(d->stream);
    return VX_OK;
}

static void dnnl_destroy(vx_nn_engine *e)
{
    dnnl_impl *d = e->impl;
    for (int i = 0; i < d->nsteps; i++) {
        step_t *s = &d->steps[i];
        for (int k = 0; k < s->nargs; k++)
            if (s->mems[k])
                dnnl_memory_destroy(s->mems[k]);
        if (s->prim)
            dnnl_primitive_destroy(s->prim);
        free(s->in_bufs);
        free(s->out_bufs);
    }
    for (int b = 0; b < d->nbufs; b++)
        if (d->bufs[b].owned)
            free(d->bufs[b].user);
    if (d->stream)
        dnnl_stream_destroy(d->stream);
    if (d->eng)
        dnnl_engine_destroy(d->eng);
    free(d->steps);
    free(d->bufs);
    free(d->ts);
    free(d->skip);
    free(d->out_direct);
    free(d->uns);
    free(d->arena);
    free(d);
    e->impl = NULL;
}

vx_err vx_nn_dnnl_read_tensor(const vx_nn_engine *e, int t, float *dst)
{
    const dnnl_impl *d = e->impl;
    const vx_graph *g = e->g;
    if (e->backend != VX_NN_BACKEND_CPU || !d || t < 0 || t >= g->nt)
        return vx_fail(VX_ERR_INVALID, "read_tensor: not a cpu engine or no such tensor");
    const tstate_t *s = &d->ts[t];
    if (s->act >= 0) {
        dnnl_memory_desc_t dense;
        dnnl_dims_t dims;
        dims_of(&g->t[t], dims);
        dnnl_memory_desc_init_by_tag(&dense, 4, dims, dnnl_f32, dnnl_abcd);
        dnnl_primitive_desc_t pd;
        dnnl_primitive_t r;
        dnnl_memory_t a, b;
        /* oneDNN's primitive cache makes the repeated creation cheap. */
        DNNL_CHECK(dnnl_reorder_primitive_desc_create(&pd, &s->act_md, d->eng, &dense, d->eng, NULL),
                   "read reorder");
        dnnl_status_t st = dnnl_primitive_create(&r, pd);
        dnnl_primitive_desc_destroy(pd);
        DNNL_CHECK(st, "read reorder creation");
        dnnl_memory_create(&a, &s->act_md, d->eng, d->bufs[s->act].ptr);
        dnnl_memory_create(&b, &dense, d->eng, dst);
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, a}, {DNNL_ARG_TO, b}};
        st = dnnl_primitive_execute(r, d->stream, 2, args);
        dnnl_stream_wait(d->stream);
        dnnl_primitive_destroy(r);
        dnnl_memory_destroy(a);
        dnnl_memory_destroy(b);
        DNNL_CHECK(st, "read reorder execution");
        return VX_OK;
    }
    if (s->plain >= 0 && g->t[t].dtype == VX_DT_F32) {
        memcpy(dst, d->bufs[s->plain].ptr, sizeof(float) * (size_t)vx_tensor_elems(&g->t[t]));
        return VX_OK;
    }
    return vx_fail(VX_ERR_NOT_FOUND, "read_tensor: tensor '%s' is not computed by this engine", g->t[t].name);
}

const vx_nn_backend_ops vx_nn_dnnl_ops = {dnnl_create, dnnl_run, dnnl_destroy};
