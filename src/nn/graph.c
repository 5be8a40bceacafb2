/* Graph IR construction, shape inference and compaction.  See graph.h. */
#include "nn/graph.h"

#include <stdlib.h>
#include <string.h>

static const char *const op_names[VX_OP_COUNT] = {
    [VX_OP_CONV] = "Conv",
    [VX_OP_ADD] = "Add",
    [VX_OP_SUB] = "Sub",
    [VX_OP_MUL] = "Mul",
    [VX_OP_DIV] = "Div",
    [VX_OP_RELU] = "Relu",
    [VX_OP_LEAKY_RELU] = "LeakyRelu",
    [VX_OP_SIGMOID] = "Sigmoid",
    [VX_OP_MAXPOOL] = "MaxPool",
    [VX_OP_AVGPOOL] = "AveragePool",
    [VX_OP_CONCAT] = "Concat",
    [VX_OP_SPLIT] = "Split",
    [VX_OP_RESIZE] = "Resize",
    [VX_OP_RESHAPE] = "Reshape",
    [VX_OP_TRANSPOSE] = "Transpose",
    [VX_OP_PAD] = "Pad",
    [VX_OP_IDENTITY] = "Identity",
    [VX_OP_SPARSE_TO_DENSE] = "SparseToDense",
    [VX_OP_SWISH] = "Swish",
    [VX_OP_HARDSWISH] = "HardSwish",
    [VX_OP_HARDSIGMOID] = "HardSigmoid",
    [VX_OP_CLIP] = "Clip",
    [VX_OP_SOFTMAX] = "Softmax",
    [VX_OP_MATMUL] = "MatMul",
    [VX_OP_SLICE] = "Slice",
    [VX_OP_GATHER] = "Gather",
    [VX_OP_CAST] = "Cast",
    [VX_OP_POW] = "Pow",
    [VX_OP_FLOOR] = "Floor",
    [VX_OP_CEIL] = "Ceil",
};

/* IEEE half -> float, subnormals, infinities and NaNs included (weights of
 * both loaders come as float16). */
float vx_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: renormalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) {
                man <<= 1;
                exp--;
            }
            man &= 0x3ff;
            bits = sign | (exp << 23) | (man << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp - 15 + 127) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

const char *vx_op_name(vx_op op)
{
    return (unsigned)op < VX_OP_COUNT ? op_names[op] : "?";
}

vx_graph *vx_graph_new(void)
{
    vx_graph *g = calloc(1, sizeof *g);
    return g;
}

static void free_node(vx_node *n)
{
    free(n->name);
    free(n->in);
    free(n->out);
    if (n->op == VX_OP_SPLIT)
        free(n->a.split.sizes);
}

void vx_graph_free(vx_graph *g)
{
    if (!g)
        return;
    for (int i = 0; i < g->nt; i++) {
        free(g->t[i].name);
        free(g->t[i].data);
    }
    for (int i = 0; i < g->nn; i++)
        free_node(&g->n[i]);
    free(g->t);
    free(g->n);
    free(g->inputs);
    free(g->outputs);
    for (int i = 0; g->out_names && i < g->n_outputs; i++)
        free(g->out_names[i]);
    free(g->out_names);
    for (int i = 0; i < g->n_meta; i++) {
        free(g->meta_keys[i]);
        free(g->meta_values[i]);
    }
    free(g->meta_keys);
    free(g->meta_values);
    free(g);
}

static int grow(void **arr, int *cap, int need, size_t elem)
{
    if (need <= *cap)
        return 1;
    int nc = *cap ? *cap * 2 : 64;
    while (nc < need)
        nc *= 2;
    void *p = realloc(*arr, (size_t)nc * elem);
    if (!p)
        return 0;
    *arr = p;
    *cap = nc;
    return 1;
}

int vx_graph_add_tensor(vx_graph *g, const char *name)
{
    if (!grow((void **)&g->t, &g->capt, g->nt + 1, sizeof(vx_tensor)))
        return -1;
    vx_tensor *t = &g->t[g->nt];
    memset(t, 0, sizeof *t);
    t->name = strdup(name ? name : "");
    if (!t->name)
        return -1;
    t->rank = -1;
    t->producer = -1;
    t->graph_input = -1;
    t->graph_output = -1;
    return g->nt++;
}

int64_t vx_tensor_elems(const vx_tensor *t)
{
    if (t->rank < 0)
        return -1;
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++) {
        if (t->dims[i] < 0)
            return -1;
        if (t->dims[i] && n > VX_MAX_ELEMS / t->dims[i])
            return VX_MAX_ELEMS + 1;
        n *= t->dims[i];
    }
    return n;
}

int vx_tensor_is_const(const vx_tensor *t)
{
    return t->data != NULL;
}

int vx_graph_add_const(vx_graph *g, const char *name, vx_dtype dt, int rank, const int64_t *dims,
                       const void *data)
{
    if (rank < 0 || rank > VX_NN_MAX_RANK)
        return -1;
    int id = vx_graph_add_tensor(g, name);
    if (id < 0)
        return -1;
    vx_tensor *t = &g->t[id];
    t->dtype = dt;
    t->rank = rank;
    for (int i = 0; i < rank; i++)
        t->dims[i] = dims[i];
    int64_t n = vx_tensor_elems(t);
    if (n < 0 || n > VX_MAX_ELEMS)
        return -1;
    size_t bytes = (size_t)n * (dt == VX_DT_F32 ? 4 : 8);
    /* Zero-element constants still get a non-NULL payload: data != NULL is
     * what marks a tensor as constant. */
    t->data = calloc(1, bytes ? bytes : 8);
    if (!t->data)
        return -1;
    if (data && bytes)
        memcpy(t->data, data, bytes);
    return id;
}

int vx_graph_add_node_out(vx_graph *g, vx_op op, const char *name, const int *in, int n_in, const int *out,
                          int n_out)
{
    if (!grow((void **)&g->n, &g->capn, g->nn + 1, sizeof(vx_node)))
        return -1;
    vx_node *n = &g->n[g->nn];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->name = strdup(name ? name : "");
    n->in = malloc(sizeof(int) * (size_t)(n_in > 0 ? n_in : 1));
    n->out = malloc(sizeof(int) * (size_t)(n_out > 0 ? n_out : 1));
    if (!n->name || !n->in || !n->out) {
        free_node(n);
        return -1;
    }
    n->n_in = n_in;
    n->n_out = n_out;
    memcpy(n->in, in, sizeof(int) * (size_t)n_in);
    memcpy(n->out, out, sizeof(int) * (size_t)n_out);
    for (int i = 0; i < n_out; i++)
        g->t[out[i]].producer = g->nn;
    if (op == VX_OP_CONV) {
        n->a.conv.groups = 1;
        n->a.conv.sh = n->a.conv.sw = n->a.conv.dh = n->a.conv.dw = 1;
    }
    return g->nn++;
}

int vx_graph_add_node(vx_graph *g, vx_op op, const char *name, const int *in, int n_in, int n_out)
{
    int outs[16];
    if (n_out > 16)
        return -1;
    for (int i = 0; i < n_out; i++) {
        char buf[512];
        if (i == 0)
            snprintf(buf, sizeof buf, "%s", name);
        else
            snprintf(buf, sizeof buf, "%s:%d", name, i);
        outs[i] = vx_graph_add_tensor(g, buf);
        if (outs[i] < 0)
            return -1;
    }
    return vx_graph_add_node_out(g, op, name, in, n_in, outs, n_out);
}

int vx_graph_set_outputs(vx_graph *g, const int *tensors, const char *const *names, int n)
{
    g->outputs = malloc(sizeof(int) * (size_t)(n ? n : 1));
    g->out_names = calloc((size_t)(n ? n : 1), sizeof(char *));
    if (!g->outputs || !g->out_names)
        return 0;
    for (int i = 0; i < n; i++) {
        g->outputs[i] = tensors[i];
        g->out_names[i] = strdup(names[i]);
        g->n_outputs = i + 1;
        if (!g->out_names[i])
            return 0;
    }
    return 1;
}

int vx_graph_find_tensor(const vx_graph *g, const char *name)
{
    for (int i = g->nt - 1; i >= 0; i--)
        if (!strcmp(g->t[i].name, name))
            return i;
    return -1;
}

void vx_graph_replace_uses(vx_graph *g, int from, int to)
{
    for (int i = 0; i < g->nn; i++) {
        vx_node *n = &g->n[i];
        if (n->dead)
            continue;
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j] == from)
                n->in[j] = to;
    }
    for (int i = 0; i < g->n_outputs; i++)
        if (g->outputs[i] == from)
            g->outputs[i] = to;
}

int vx_graph_use_count(const vx_graph *g, int t)
{
    int c = 0;
    for (int i = 0; i < g->nn; i++) {
        const vx_node *n = &g->n[i];
        if (n->dead)
            continue;
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j] == t)
                c++;
    }
    for (int i = 0; i < g->n_outputs; i++)
        if (g->outputs[i] == t)
            c++;
    return c;
}

int vx_graph_single_consumer(const vx_graph *g, int t)
{
    int who = -1;
    for (int i = 0; i < g->n_outputs; i++)
        if (g->outputs[i] == t)
            return -1;
    for (int i = 0; i < g->nn; i++) {
        const vx_node *n = &g->n[i];
        if (n->dead)
            continue;
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j] == t) {
                if (who >= 0)
                    return -1;
                who = i;
            }
    }
    return who;
}

/* ---- shape inference ---------------------------------------------------- */

static vx_err set_shape(vx_graph *g, const vx_node *n, int t, int rank, const int64_t *dims)
{
    vx_tensor *o = &g->t[t];
    o->rank = rank;
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0)
            return vx_fail(VX_ERR_FORMAT, "node '%s' (%s): negative output dimension", n->name,
                           vx_op_name(n->op));
        o->dims[i] = dims[i];
    }
    int64_t e = vx_tensor_elems(o);
    if (e > VX_MAX_ELEMS)
        return vx_fail(VX_ERR_FORMAT, "node '%s' (%s): output has more than 2^31 elements", n->name,
                       vx_op_name(n->op));
    return VX_OK;
}

static int64_t const_i64(const vx_tensor *t, int64_t i)
{
    return t->dtype == VX_DT_I64 ? ((const int64_t *)t->data)[i] : vx_f2i64(((const float *)t->data)[i]);
}

static vx_err resolve_pads(const vx_node *n, vx_pad_mode mode, int64_t h, int64_t w, int kh, int kw, int sh,
                           int sw, int dh, int dw, int *pt, int *pl, int *pb, int *pr)
{
    if (mode == VX_PAD_VALID) {
        *pt = *pl = *pb = *pr = 0;
    } else if (mode == VX_PAD_SAME_UPPER || mode == VX_PAD_SAME_LOWER) {
        int64_t oh = (h + sh - 1) / sh, ow = (w + sw - 1) / sw;
        int64_t th = (oh - 1) * sh + (int64_t)(kh - 1) * dh + 1 - h;
        int64_t tw = (ow - 1) * sw + (int64_t)(kw - 1) * dw + 1 - w;
        if (th < 0)
            th = 0;
        if (tw < 0)
            tw = 0;
        if (mode == VX_PAD_SAME_UPPER) {
            *pt = (int)(th / 2);
            *pl = (int)(tw / 2);
        } else {
            *pt = (int)(th - th / 2);
            *pl = (int)(tw - tw / 2);
        }
        *pb = (int)th - *pt;
        *pr = (int)tw - *pl;
    }
    if (*pt < 0 || *pl < 0 || *pb < 0 || *pr < 0)
        return vx_fail(VX_ERR_FORMAT, "node '%s': negative padding", n->name);
    return VX_OK;
}

static vx_err window_out(const vx_node *n, int64_t in, int k, int s, int d, int p0, int p1, int64_t *out)
{
    if (k <= 0 || s <= 0 || d <= 0 || k > 1024 || s > 1024 || d > 1024)
        return vx_fail(VX_ERR_FORMAT, "node '%s' (%s): bad kernel/stride/dilation %d/%d/%d", n->name,
                       vx_op_name(n->op), k, s, d);
    int64_t span = in + p0 + p1 - (int64_t)d * (k - 1) - 1;
    if (span < 0)
        return vx_fail(VX_ERR_FORMAT, "node '%s' (%s): window %d larger than padded input %lld", n->name,
                       vx_op_name(n->op), k, (long long)(in + p0 + p1));
    *out = span / s + 1;
    return VX_OK;
}

static vx_err infer_broadcast(vx_graph *g, vx_node *n)
{
    const vx_tensor *a = &g->t[n->in[0]], *b = &g->t[n->in[1]];
    g->t[n->out[0]].dtype = a->dtype == VX_DT_I64 && b->dtype == VX_DT_I64 ? VX_DT_I64 : VX_DT_F32;
    int r = a->rank > b->rank ? a->rank : b->rank;
    int64_t d[VX_NN_MAX_RANK];
    for (int i = 0; i < r; i++) {
        int ia = i - (r - a->rank), ib = i - (r - b->rank);
        int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return vx_fail(VX_ERR_FORMAT, "node '%s' (%s): shapes cannot broadcast (dim %d: %lld vs %lld)",
                           n->name, vx_op_name(n->op), i, (long long)da, (long long)db);
        d[i] = da == 1 ? db : da;
    }
    return set_shape(g, n, n->out[0], r, d);
}

/* numpy matmul for ranks >= 2 (loaders turn 1-D operands into 2-D ones):
 * [..., M, K] x [..., K, N] -> [..., M, N], batch dims broadcast. */
static vx_err infer_matmul(vx_graph *g, vx_node *n)
{
    const vx_tensor *a = &g->t[n->in[0]], *b = &g->t[n->in[1]];
    if (a->rank < 2 || b->rank < 2)
        return vx_fail(VX_ERR_UNSUPPORTED, "node '%s' (MatMul): operands must have rank >= 2 (%d, %d)",
                       n->name, a->rank, b->rank);
    if (a->dtype != VX_DT_F32 || b->dtype != VX_DT_F32)
        return vx_fail(VX_ERR_UNSUPPORTED, "node '%s' (MatMul): integer operands", n->name);
    if (a->dims[a->rank - 1] != b->dims[b->rank - 2])
        return vx_fail(VX_ERR_FORMAT, "node '%s' (MatMul): inner dimensions differ (%lld vs %lld)", n->name,
                       (long long)a->dims[a->rank - 1], (long long)b->dims[b->rank - 2]);
    int r = a->rank > b->rank ? a->rank : b->rank;
    int64_t d[VX_NN_MAX_RANK];
    for (int i = 0; i < r - 2; i++) {
        int ia = i - (r - a->rank), ib = i - (r - b->rank);
        int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return vx_fail(VX_ERR_FORMAT, "node '%s' (MatMul): batch dims cannot broadcast (%lld vs %lld)",
                           n->name, (long long)da, (long long)db);
        d[i] = da == 1 ? db : da;
    }
    d[r - 2] = a->dims[a->rank - 2];
    d[r - 1] = b->dims[b->rank - 1];
    g->t[n->out[0]].dtype = VX_DT_F32;
    return set_shape(g, n, n->out[0], r, d);
}

static vx_err infer_slice(vx_graph *g, vx_node *n)
{
    const vx_tensor *x = &g->t[n->in[0]];
    int64_t d[VX_NN_MAX_RANK];
    for (int i = 0; i < x->rank; i++) {
        int64_t s = n->a.slice.start[i], e = n->a.slice.end[i], st = n->a.slice.step[i], dim = x->dims[i];
        /* The loader normalised these for this dim; re-check, the kernel trusts them. */
        int ok = st > 0   ? (s >= 0 && s <= dim && e >= s && e <= dim)
                 : st < 0 ? (s >= -1 && s < dim && e >= -1 && e <= s)
                          : 0;
        if (!ok || st > VX_MAX_ELEMS || st < -VX_MAX_ELEMS)
            return vx_fail(VX_ERR_FORMAT,
                           "node '%s' (Slice): bad range %lld:%lld:%lld for dim %d of size %lld", n->name,
                           (long long)s, (long long)e, (long long)st, i, (long long)dim);
        d[i] = st > 0 ? (e - s + st - 1) / st : (s - e + (-st) - 1) / (-st);
    }
    g->t[n->out[0]].dtype = x->dtype;
    return set_shape(g, n, n->out[0], x->rank, d);
}

static vx_err infer_gather(vx_graph *g, vx_node *n)
{
    const vx_tensor *x = &g->t[n->in[0]], *ix = &g->t[n->in[1]];
    int ax = n->a.gather.axis;
    if (ax < 0)
        ax += x->rank;
    if (ax < 0 || ax >= x->rank)
        return vx_fail(VX_ERR_FORMAT, "node '%s' (Gather): axis %d out of range for rank %d", n->name,
                       n->a.gather.axis, x->rank);
    if (ix->dtype != VX_DT_I64)
        return vx_fail(VX_ERR_FORMAT, "node '%s' (Gather): indices must be integers", n->name);
    if (x->rank - 1 + ix->rank > VX_NN_MAX_RANK)
        return vx_fail(VX_ERR_UNSUPPORTED, "node '%s' (Gather): output rank above %d", n->name,
                       VX_NN_MAX_RANK);
    n->a.gather.axis = ax;
    int64_t d[VX_NN_MAX_RANK];
    int r = 0;
    for (int i = 0; i < ax; i++)
        d[r++] = x->dims[i];
    for (int i = 0; i < ix->rank; i++)
        d[r++] = ix->dims[i];
    for (int i = ax + 1; i < x->rank; i++)
        d[r++] = x->dims[i];
    g->t[n->out[0]].dtype = x->dtype;
    return set_shape(g, n, n->out[0], r, d);
}

vx_err vx_graph_infer_node(vx_graph *g, vx_node *n)
{
    for (int i = 0; i < n->n_in; i++) {
        if (n->in[i] < 0)
            continue;
        if (g->t[n->in[i]].rank < 0)
            return vx_fail(VX_ERR_FORMAT, "node '%s' (%s): input '%s' has no known shape", n->name,
                           vx_op_name(n->op), g->t[n->in[i]].name);
    }
    const vx_tensor *x = n->n_in > 0 && n->in[0] >= 0 ? &g->t[n->in[0]] : NULL;
    int64_t d[VX_NN_MAX_RANK];
    switch (n->op) {
    case VX_OP_CONV: {
        vx_conv_attr *c = &n->a.conv;
        const vx_tensor *w = &g->t[n->in[1]];
        if (x->rank != 4 || w->rank != 4)
            return vx_fail(VX_ERR_FORMAT, "node '%s' (Conv): only 2-D convolutions are supported (rank %d)",
                           n->name, x->rank);
        if (c->groups <= 0 || x->dims[1] != w->dims[1] * c->groups || w->dims[0] % c->groups)
            return vx_fail(
                VX_ERR_FORMAT,
                "node '%s' (Conv): weights [%lld,%lld,...] do not fit input channels %lld, groups %d",
                n->name, (long long)w->dims[0], (long long)w->dims[1], (long long)x->dims[1], c->groups);
        if (w->dims[2] < 1 || w->dims[2] > 1024 || w->dims[3] < 1 || w->dims[3] > 1024) /* before narrowing */
            return vx_fail(VX_ERR_FORMAT, "node '%s' (Conv): kernel %lldx%lld out of range", n->name,
                           (long long)w->dims[2], (long long)w->dims[3]);
        c->kh = (int)w->dims[2];
        c->kw = (int)w->dims[3];
        if (n->n_in > 2 && n->in[2] >= 0 && vx_tensor_elems(&g->t[n->in[2]]) != w->dims[0])
            return vx_fail(VX_ERR_FORMAT, "node '%s' (Conv): bias size does not match %lld output channels",
                           n->name, (long long)w->dims[0]);
        vx_err e = resolve_pads(n, c->pad_mode, x->dims[2], x->dims[3], c->kh, c->kw, c->sh, c->sw, c->dh,
                                c->dw, &c->pt, &c->pl, &c->pb, &c->pr);
        if (e)
            return e;
        d[0] = x->dims[0];
        d[1] = w->dims[0];
        if ((e = window_out(n, x->dims[2], c->kh, c->sh, c->dh, c->pt, c->pb, &d[2])) ||
            (e = window_out(n, x->dims[3], c->kw, c->sw, c->dw, c->pl, c->pr, &d[3])))
            return e;
        e = set_shape(g, n, n->out[0], 4, d);
        if (e)
            return e;
        if (n->n_in > 3 && n->in[3] >= 0) {
            const vx_tensor *s = &g->t[n->in[3]];
            for (int i = 0; i < 4; i++)
                if (s->rank != 4 || s->dims[i] != d[i])
                    return vx_fail(VX_ERR_FORMAT, "node '%s' (Conv): fused sum operand shape differs",
                                   n->name);
        }
        return VX_OK;
    }
    case VX_OP_MAXPOOL:
    case VX_OP_AVGPOOL: {
        vx_pool_attr *p = &n->a.pool;
        if (x->rank != 4)
            return vx_fail(VX_ERR_FORMAT, "node '%s' (%s): only 2-D pooling is supported", n->name,
                           vx_op_name(n->op));
        vx_err e = resolve_pads(n, p->pad_mode, x->dims[2], x->dims[3], p->kh, p->kw, p->sh, p->sw, 1, 1,
                                &p->pt, &p->pl, &p->pb, &p->pr);
        if (e)
            return e;
        d[0] = x->dims[0];
        d[1] = x->dims[1];
        if ((e = window_out(n, x->dims[2], p->kh, p->sh, 1, p->pt, p->pb, &d[2])) ||
            (e = window_out(n, x->dims[3], p->kw, p->sw, 1, p->pl, p->pr, &d[3])))
            return e;
        return set_shape(g, n, n->out[0], 4, d);
    }
    case VX_OP_ADD:
    case VX_OP_SUB:
    case VX_OP_MUL:
    case VX_OP_DIV:
    case VX_OP_POW: return infer_broadcast(g, n);
    case VX_OP_SWISH:
    case VX_OP_HARDSWISH:
    case VX_OP_HARDSIGMOID:
    case VX_OP_CLIP:
    case VX_OP_FLOOR:
    case VX_OP_CEIL:
        if (x->dtype != VX_DT_F32 && n->op != VX_OP_CLIP && n->op != VX_OP_FLOOR && n->op != VX_OP_CEIL)
            return vx_fail(VX_ERR_UNSUPPORTED, "node '%s' (%s): integer input", n->name, vx_op_name(n->op));
        g->t[n->out[0]].dtype = x->dtype;
        return set_shape(g, n, n->out[0], x->rank, x->dims);
    case VX_OP_SOFTMAX: {
        int ax = n->a.softmax.axis;
        if (ax < 0)
            ax += x->rank;
        if (ax < 0 || ax >= x->rank)
            return vx_fail(VX_ERR_FORMAT, "node '%s' (Softmax): axis %d out of range for rank %d", n->name,
                           n->a.softmax.axis, x->rank);
        if (x->dtype != VX_DT_F32)
            return vx_fail(VX_ERR_UNSUPPORTED, "node '%s' (Softmax): integer input", n->name);
        n->a.softmax.axis = ax;
        g->t[n->out[0]].dtype = VX_DT_F32;
        return set_shape(g, n, n->out[0], x->rank, x->dims);
    }
    case VX_OP_MATMUL: return infer_matmul(g, n);
    case VX_OP_SLICE: return infer_slice(g, n);
    case VX_OP_GATHER: return infer_gather(g, n);
    case VX_OP_CAST:
        g->t[n->out[0]].dtype = n->a.cast.to;
        return set_shape(g, n, n->out[0], x->rank, x->dims);
    case VX_OP_RELU:
    case VX_OP_LEAKY_RELU:
    case VX_OP_SIGMOID:
    case VX_OP_IDENTITY:
        g->t[n->out[0]].dtype = x->dtype;
        return set_shape(g, n, n->out[0], x->rank, x->dims);
    case VX_OP_CONCAT: {
        int ax = n->a.concat.axis;
        if (ax < 0)
            ax += x->rank;
        if (ax < 0 || ax >= x->rank)
            return vx_fail(VX_ERR_FORMAT, "node '%s' (Concat): axis %d out of range", n->name,
                           n->a.concat.axis);
        n->a.concat.axis = ax;
        memcpy(d, x->dims, sizeof d);
        d[ax] = 0;
        for (int i = 0; i < n->n_in; i++) {
            const vx_tensor *t = &g->t[n->in[i]];
            if (t->rank != x->rank)
                return vx_fail(VX_ERR_FORMAT, "node '%s' (Concat): inputs differ in rank", n->name);
            if (t->dtype != x->dtype) /* the kernel copies elements of the first input's size */
                return vx_fail(VX_ERR_FORMAT, "node '%s' (Concat): inputs differ in type", n->name);
            for (int k = 0; k < t->rank; k++)
                if (k != ax && t->dims[k] != x->dims[k])
                    return vx_fail(VX_ERR_FORMAT, "node '%s' (Concat): input %d differs in dim %d", n->name,
                                   i, k);
            d[ax] += t->dims[ax];
        }
        g->t[n->out[0]].dtype = x->dtype;
        return set_shape(g, n, n->out[0], x->rank, d);
    }
    case VX_OP_SPLIT: {
        int ax = n->a.split.axis;
        if (ax < 0)
            ax += x->rank;
        if (ax < 0 || ax >= x->rank)
            return vx_fail(VX_ERR_FORMAT, "node '%s' (Split): axis out of range", n->name);
        n->a.split.axis = ax;
        if (n->a.split.n != n->n_out)
            return vx_fail(VX_ERR_FORMAT, "node '%s' (Split): %d sizes for %d outputs", n->name, n->a.split.n,
                           n->n_out);
        if (n->a.split.sizes[0] <= -1000000) { /* equal parts (TF Split) */
            if (x->dims[ax] % n->a.split.n)
                return vx_fail(VX_ERR_FORMAT, "node '%s' (Split): %lld not divisible into %d parts", n->name,
                               (long long)x->dims[ax], n->a.split.n);
            for (int i = 0; i < n->a.split.n; i++)
                n->a.split.sizes[i] = x->dims[ax] / n->a.split.n;
        }
        int64_t sum = 0;
        int neg = -1;
        for (int i = 0; i < n->a.split.n; i++) {
            if (n->a.split.sizes[i] < 0) {
                if (neg >= 0)
                    return vx_fail(VX_ERR_FORMAT, "node '%s' (Split): more than one -1 size", n->name);
                neg = i;
            } else if (n->a.split.sizes[i] > x->dims[ax]) { /* also keeps the sum from overflowing */
                return vx_fail(VX_ERR_FORMAT, "node '%s' (Split): part %d is larger than the axis (%lld)",
                               n->name, i, (long long)x->dims[ax]);
            } else
                sum += n->a.split.sizes[i];
        }
        if (neg >= 0)
            n->a.split.sizes[neg] = x->dims[ax] - sum, sum = x->dims[ax];
        if (sum != x->dims[ax])
            return vx_fail(VX_ERR_FORMAT, "node '%s' (Split): sizes add up to %lld, axis has %lld", n->name,
                           (long long)sum, (long long)x->dims[ax]);
        for (int i = 0; i < n->n_out; i++) {
            memcpy(d, x->dims, sizeof d);
            d[ax] = n->a.split.sizes[i];
            g->t[n->out[i]].dtype = x->dtype;
            vx_err e = set_shape(g, n, n->out[i], x->rank, d);
            if (e)
                return e;
        }
        return VX_OK;
    }
    case VX_OP_RESIZE: {
        vx_resize_attr *r = &n->a.resize;
        if (x->rank != 4)
            return vx_fail(VX_ERR_FORMAT, "node '%s' (Resize): only 4-D NCHW input is supported", n->name);
        if (r->out_h <= 0 || r->out_w <= 0) {
            if (!(r->scale_h > 0) || !(r->scale_w > 0))
                return vx_fail(VX_ERR_FORMAT, "node '%s' (Resize): neither sizes nor positive scales",
                               n->name);
            r->out_h = (int)((double)x->dims[2] * r->scale_h);
            r->out_w = (int)((double)x->dims[3] * r->scale_w);
        }
        if (r->out_h <= 0 || r->out_w <= 0 || r->out_h > 65536 || r->out_w > 65536)
            return vx_fail(VX_ERR_FORMAT, "node '%s' (Resize): bad output size %dx%d", n->name, r->out_w,
                           r->out_h);
        if (!(r->scale_h > 0))
            r->scale_h = (float)r->out_h / (float)x->dims[2];
        if (!(r->scale_w > 0))
            r->scale_w = (float)r->out_w / (float)x->dims[3];
        d[0] = x->dims[0];
        d[1] = x->dims[1];
        d[2] = r->out_h;
        d[3] = r->out_w;
        return set_shape(g, n, n->out[0], 4, d);
    }
    case VX_OP_RESHAPE: {
        const vx_tensor *s = &g->t[n->in[1]];
        if (!s->data || s->rank != 1 || s->dims[0] > VX_NN_MAX_RANK)
            return vx_fail(VX_ERR_FORMAT,
                           "node '%s' (Reshape): target shape must be a constant 1-D tensor of rank <= %d",
                           n->name, VX_NN_MAX_RANK);
        int r = (int)s->dims[0], neg = -1;
        int64_t known = 1, total = vx_tensor_elems(x);
        for (int i = 0; i < r; i++) {
            d[i] = const_i64(s, i);
            if (d[i] == 0 && !n->a.reshape.allowzero) {
                if (i >= x->rank)
                    return vx_fail(VX_ERR_FORMAT, "node '%s' (Reshape): 0 refers to missing dim %d", n->name,
                                   i);
                d[i] = x->dims[i];
            }
            if (d[i] == -1) {
                if (neg >= 0)
                    return vx_fail(VX_ERR_FORMAT, "node '%s' (Reshape): more than one -1", n->name);
                neg = i;
            } else if (d[i] < 0) {
                return vx_fail(VX_ERR_FORMAT, "node '%s' (Reshape): negative dimension", n->name);
            } else {
                if (d[i] && known > VX_MAX_ELEMS / d[i])
                    return vx_fail(VX_ERR_FORMAT, "node '%s' (Reshape): target too large", n->name);
                known *= d[i];
            }
        }
        if (neg >= 0) {
            if (known == 0 || total % known)
                return vx_fail(VX_ERR_FORMAT, "node '%s' (Reshape): cannot infer -1", n->name);
            d[neg] = total / known;
            known = total;
        }
        if (known != total)
            return vx_fail(VX_ERR_FORMAT, "node '%s' (Reshape): %lld elements into shape of %lld", n->name,
                           (long long)total, (long long)known);
        g->t[n->out[0]].dtype = x->dtype;
        return set_shape(g, n, n->out[0], r, d);
    }
    case VX_OP_TRANSPOSE: {
        int seen[VX_NN_MAX_RANK] = {0};
        for (int i = 0; i < x->rank; i++) {
            int p = n->a.transpose.perm[i];
            if (p < 0 || p >= x->rank || seen[p]++)
                return vx_fail(VX_ERR_FORMAT, "node '%s' (Transpose): bad permutation", n->name);
            d[i] = x->dims[p];
        }
        g->t[n->out[0]].dtype = x->dtype;
        return set_shape(g, n, n->out[0], x->rank, d);
    }
    case VX_OP_PAD:
        g->t[n->out[0]].dtype = x->dtype;
        for (int i = 0; i < x->rank; i++) {
            /* Range first: the sum of unchecked pads can overflow. */
            if (n->a.pad.begin[i] < 0 || n->a.pad.end[i] < 0 || n->a.pad.begin[i] > 65536 ||
                n->a.pad.end[i] > 65536)
                return vx_fail(VX_ERR_UNSUPPORTED, "node '%s' (Pad): pads must be in 0..65536", n->name);
            d[i] = x->dims[i] + n->a.pad.begin[i] + n->a.pad.end[i];
        }
        return set_shape(g, n, n->out[0], x->rank, d);
    case VX_OP_SPARSE_TO_DENSE: {
        const vx_tensor *shp = &g->t[n->in[1]];
        if (!shp->data || shp->rank > 1 || vx_tensor_elems(shp) > VX_NN_MAX_RANK)
            return vx_fail(VX_ERR_FORMAT, "node '%s' (SparseToDense): output shape must be constant",
                           n->name);
        /* The kernel reads int64 indices ([N] or [N, rank]), N values or one,
         * and one default of the values' type. */
        const vx_tensor *ix = &g->t[n->in[0]], *val = &g->t[n->in[2]], *def = &g->t[n->in[3]];
        int64_t nidx = ix->rank == 0 ? 1 : ix->dims[0];
        if (ix->dtype != VX_DT_I64 || ix->rank > 2 || val->dtype != def->dtype || vx_tensor_elems(def) != 1 ||
            (vx_tensor_elems(val) != 1 && vx_tensor_elems(val) != nidx))
            return vx_fail(VX_ERR_FORMAT, "node '%s' (SparseToDense): indices, values and default do not fit",
                           n->name);
        int r = (int)vx_tensor_elems(shp);
        for (int i = 0; i < r; i++)
            d[i] = const_i64(shp, i);
        g->t[n->out[0]].dtype = g->t[n->in[2]].dtype;
        return set_shape(g, n, n->out[0], r, d);
    }
    case VX_OP_COUNT: break;
    }
    return vx_fail(VX_ERR_UNSUPPORTED, "node '%s': operator %d has no shape function", n->name, (int)n->op);
}

vx_err vx_graph_infer_shapes(vx_graph *g)
{
    for (int i = 0; i < g->nn; i++) {
        vx_node *n = &g->n[i];
        if (n->dead)
            continue;
        vx_err e = vx_graph_infer_node(g, n);
        if (e)
            return e;
    }
    return VX_OK;
}

/* ---- compaction and topological order ---------------------------------- */

vx_err vx_graph_compact(vx_graph *g)
{
    /* Liveness: walk back from outputs. */
    char *live_t = calloc((size_t)g->nt + 1, 1), *live_n = calloc((size_t)g->nn + 1, 1);
    int *stack = malloc(sizeof(int) * ((size_t)g->nt + 1));
    int *map_t = malloc(sizeof(int) * ((size_t)g->nt + 1));
    int *order = malloc(sizeof(int) * ((size_t)g->nn + 1));
    char *state = calloc((size_t)g->nn + 1, 1);
    vx_err err = VX_OK;
    if (!live_t || !live_n || !stack || !map_t || !order || !state) {
        err = vx_fail(VX_ERR_NOMEM, "graph compaction: out of memory");
        goto out;
    }
    for (int i = 0; i < g->nt; i++)
        g->t[i].producer = -1;
    for (int i = 0; i < g->nn; i++)
        if (!g->n[i].dead)
            for (int j = 0; j < g->n[i].n_out; j++)
                g->t[g->n[i].out[j]].producer = i;

    /* Iterative DFS post-order from the outputs gives a topological order
     * of the live nodes and detects cycles (state 1 = on the stack). */
    int sp = 0, no = 0;
    for (int oi = 0; oi < g->n_outputs; oi++) {
        int t = g->outputs[oi];
        live_t[t] = 1;
        int p = g->t[t].producer;
        if (p < 0 || state[p])
            continue;
        stack[sp++] = p;
        state[p] = 1;
        while (sp) {
            int cur = stack[sp - 1];
            vx_node *n = &g->n[cur];
            int pushed = 0;
            for (int j = 0; j < n->n_in; j++) {
                int ti = n->in[j];
                if (ti < 0)
                    continue;
                live_t[ti] = 1;
                int q = g->t[ti].producer;
                if (q < 0)
                    continue;
                if (state[q] == 1) {
                    err = vx_fail(VX_ERR_FORMAT, "graph has a cycle through node '%s'", g->n[q].name);
                    goto out;
                }
                if (state[q] == 0) {
                    state[q] = 1;
                    if (sp >= g->nt) {
                        err = vx_fail(VX_ERR_FORMAT, "graph too deep");
                        goto out;
                    }
                    stack[sp++] = q;
                    pushed = 1;
                    break;
                }
            }
            if (!pushed) {
                state[cur] = 2;
                live_n[cur] = 1;
                order[no++] = cur;
                for (int j = 0; j < n->n_out; j++)
                    live_t[n->out[j]] = 1;
                sp--;
            }
        }
    }
    for (int i = 0; i < g->n_inputs; i++)
        live_t[g->inputs[i]] = 1;

    /* Renumber tensors. */
    int ntn = 0;
    for (int i = 0; i < g->nt; i++) {
        if (live_t[i]) {
            map_t[i] = ntn;
            g->t[ntn++] = g->t[i];
        } else {
            map_t[i] = -1;
            free(g->t[i].name);
            free(g->t[i].data);
        }
    }
    g->nt = ntn;
    vx_node *nn = malloc(sizeof(vx_node) * ((size_t)no + 1));
    if (!nn) {
        err = vx_fail(VX_ERR_NOMEM, "graph compaction: out of memory");
        goto out;
    }
    for (int i = 0; i < no; i++) {
        nn[i] = g->n[order[i]];
        for (int j = 0; j < nn[i].n_in; j++)
            if (nn[i].in[j] >= 0)
                nn[i].in[j] = map_t[nn[i].in[j]];
        for (int j = 0; j < nn[i].n_out; j++)
            nn[i].out[j] = map_t[nn[i].out[j]];
        live_n[order[i]] = 2;
    }
    for (int i = 0; i < g->nn; i++)
        if (live_n[i] != 2)
            free_node(&g->n[i]);
    free(g->n);
    g->n = nn;
    g->nn = no;
    g->capn = no + 1;
    g->capt = g->nt > g->capt ? g->nt : g->capt;
    for (int i = 0; i < g->n_inputs; i++)
        g->inputs[i] = map_t[g->inputs[i]];
    for (int i = 0; i < g->n_outputs; i++)
        g->outputs[i] = map_t[g->outputs[i]];
    for (int i = 0; i < g->nt; i++) {
        g->t[i].producer = -1;
        g->t[i].graph_input = -1;
        g->t[i].graph_output = -1;
    }
    for (int i = 0; i < g->nn; i++)
        for (int j = 0; j < g->n[i].n_out; j++)
            g->t[g->n[i].out[j]].producer = i;
    for (int i = 0; i < g->n_inputs; i++)
        g->t[g->inputs[i]].graph_input = i;
    for (int i = 0; i < g->n_outputs; i++)
        g->t[g->outputs[i]].graph_output = i;
out:
    free(live_t);
    free(live_n);
    free(stack);
    free(map_t);
    free(order);
    free(state);
    return err;
}

void vx_graph_dump(const vx_graph *g, FILE *f)
{
    for (int i = 0; i < g->nn; i++) {
        const vx_node *n = &g->n[i];
        fprintf(f, "%3d %-10s %-40s (", i, vx_op_name(n->op), n->name);
        for (int j = 0; j < n->n_in; j++) {
            if (n->in[j] < 0) {
                fprintf(f, "%s-", j ? ", " : "");
                continue;
            }
            const vx_tensor *t = &g->t[n->in[j]];
            fprintf(f, "%s%s%s", j ? ", " : "", t->data ? "#" : "", t->name);
        }
        fprintf(f, ") -> [");
        const vx_tensor *o = &g->t[n->out[0]];
        for (int k = 0; k < o->rank; k++)
            fprintf(f, "%s%lld", k ? "," : "", (long long)o->dims[k]);
        fprintf(f, "]");
        if (n->op == VX_OP_CONV) {
            const vx_conv_attr *c = &n->a.conv;
            fprintf(f, " k%dx%d s%d p%d,%d,%d,%d g%d", c->kh, c->kw, c->sh, c->pt, c->pl, c->pb, c->pr,
                    c->groups);
            for (int k = 0; k < c->n_post; k++)
                fprintf(f, c->post[k].kind == VX_POST_SUM ? " +sum" : " +act%d", (int)c->post[k].act);
        }
        fprintf(f, "\n");
    }
}
