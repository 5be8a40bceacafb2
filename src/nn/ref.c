/*
 * Reference kernels: plain, portable C for every IR operator.  They define
 * what each operator means (the oneDNN backend is tested against them) and
 * also evaluate constant sub-graphs at load time, so integer tensors are
 * handled where shape arithmetic needs them.  Clarity first; the loops are
 * ordered so the compiler can vectorise the innermost one.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/graph.h"

static float act_apply(vx_act a, float alpha, float v)
{
    switch (a) {
    case VX_ACT_NONE: return v;
    case VX_ACT_RELU: return v > 0 ? v : 0;
    case VX_ACT_LEAKY_RELU: return v > 0 ? v : v * alpha;
    case VX_ACT_SIGMOID: return 1.0f / (1.0f + expf(-v));
    }
    return v;
}

static void conv_ref(const vx_graph *g, const vx_node *n, const float *x, const float *w, const float *b,
                     const float *sum, float *y)
{
    const vx_conv_attr *c = &n->a.conv;
    const vx_tensor *ti = &g->t[n->in[0]], *to = &g->t[n->out[0]];
    int64_t N = ti->dims[0], C = ti->dims[1], H = ti->dims[2], W = ti->dims[3];
    int64_t O = to->dims[1], OH = to->dims[2], OW = to->dims[3];
    int64_t G = c->groups, CG = C / G, OG = O / G;
    float *row = malloc(sizeof(float) * (size_t)OW);
    for (int64_t nb = 0; nb < N; nb++)
        for (int64_t o = 0; o < O; o++) {
            int64_t grp = o / OG;
            float *yo = y + (nb * O + o) * OH * OW;
            for (int64_t oy = 0; oy < OH; oy++) {
                for (int64_t ox = 0; ox < OW; ox++)
                    row[ox] = b ? b[o] : 0.0f;
                for (int64_t ci = 0; ci < CG; ci++) {
                    const float *xc = x + (nb * C + grp * CG + ci) * H * W;
                    const float *wc = w + (o * CG + ci) * c->kh * c->kw;
                    for (int ky = 0; ky < c->kh; ky++) {
                        int64_t iy = oy * c->sh - c->pt + (int64_t)ky * c->dh;
                        if (iy < 0 || iy >= H)
                            continue;
                        const float *xr = xc + iy * W;
                        for (int kx = 0; kx < c->kw; kx++) {
                            float wv = wc[ky * c->kw + kx];
                            int64_t off = (int64_t)kx * c->dw - c->pl;
                            /* ox range where ix = ox*sw + off is inside [0, W). */
                            int64_t lo = off < 0 ? (-off + c->sw - 1) / c->sw : 0;
                            int64_t hi = (W - 1 - off) < 0 ? -1 : (W - 1 - off) / c->sw;
                            if (hi > OW - 1)
                                hi = OW - 1;
                            if (c->sw == 1)
                                for (int64_t ox = lo; ox <= hi; ox++)
                                    row[ox] += wv * xr[ox + off];
                            else
                                for (int64_t ox = lo; ox <= hi; ox++)
                                    row[ox] += wv * xr[ox * c->sw + off];
                        }
                    }
                }
                float *yr = yo + oy * OW;
                const float *sr = sum ? sum + (nb * O + o) * OH * OW + oy * OW : NULL;
                for (int64_t ox = 0; ox < OW; ox++) {
                    float v = row[ox];
                    for (int k = 0; k < c->n_post; k++) {
                        if (c->post[k].kind == VX_POST_SUM)
                            v += sr[ox];
                        else
                            v = act_apply(c->post[k].act, c->post[k].alpha, v);
                    }
                    yr[ox] = v;
                }
            }
        }
    free(row);
}

static void pool_ref(const vx_graph *g, const vx_node *n, const float *x, float *y)
{
    const vx_pool_attr *p = &n->a.pool;
    const vx_tensor *ti = &g->t[n->in[0]], *to = &g->t[n->out[0]];
    int64_t NC = ti->dims[0] * ti->dims[1], H = ti->dims[2], W = ti->dims[3], OH = to->dims[2], OW = to->dims[3];
    int is_max = n->op == VX_OP_MAXPOOL;
    for (int64_t c = 0; c < NC; c++)
        for (int64_t oy = 0; oy < OH; oy++)
            for (int64_t ox = 0; ox < OW; ox++) {
                float acc = is_max ? -FLT_MAX : 0.0f;
                int cnt = 0;
                for (int ky = 0; ky < p->kh; ky++)
                    for (int kx = 0; kx < p->kw; kx++) {
                        int64_t iy = oy * p->sh - p->pt + ky, ix = ox * p->sw - p->pl + kx;
                        if (iy < 0 || iy >= H || ix < 0 || ix >= W)
                            continue;
                        float v = x[(c * H + iy) * W + ix];
                        if (is_max)
                            acc = v > acc ? v : acc;
                        else
                            acc += v;
                        cnt++;
                    }
                if (!is_max)
                    acc /= (float)(p->count_include_pad ? p->kh * p->kw : (cnt ? cnt : 1));
                y[(c * OH + oy) * OW + ox] = acc;
            }
}

static float src_coord(const vx_resize_attr *r, int64_t o, int64_t in, int64_t out, float scale)
{
    switch (r->coord) {
    case VX_COORD_ALIGN_CORNERS: return out > 1 ? (float)o * (float)(in - 1) / (float)(out - 1) : 0.0f;
    case VX_COORD_ASYMMETRIC: return (float)o / scale;
    case VX_COORD_PYTORCH_HALF_PIXEL: return out > 1 ? ((float)o + 0.5f) / scale - 0.5f : 0.0f;
    case VX_COORD_HALF_PIXEL: break;
    }
    return ((float)o + 0.5f) / scale - 0.5f;
}

static void resize_ref(const vx_graph *g, const vx_node *n, const float *x, float *y)
{
    const vx_resize_attr *r = &n->a.resize;
    const vx_tensor *ti = &g->t[n->in[0]], *to = &g->t[n->out[0]];
    int64_t NC = ti->dims[0] * ti->dims[1], H = ti->dims[2], W = ti->dims[3], OH = to->dims[2], OW = to->dims[3];
    for (int64_t c = 0; c < NC; c++) {
        const float *xc = x + c * H * W;
        float *yc = y + c * OH * OW;
        for (int64_t oy = 0; oy < OH; oy++) {
            float fy = src_coord(r, oy, H, OH, r->scale_h);
            for (int64_t ox = 0; ox < OW; ox++) {
                float fx = src_coord(r, ox, W, OW, r->scale_w);
                if (r->mode == VX_RESIZE_NEAREST) {
                    /* round_prefer_floor for half_pixel, floor for asymmetric (exporters' defaults) */
                    int64_t iy = r->coord == VX_COORD_ASYMMETRIC ? (int64_t)floorf(fy) : (int64_t)ceilf(fy - 0.5f);
                    int64_t ix = r->coord == VX_COORD_ASYMMETRIC ? (int64_t)floorf(fx) : (int64_t)ceilf(fx - 0.5f);
                    iy = iy < 0 ? 0 : iy >= H ? H - 1 : iy;
                    ix = ix < 0 ? 0 : ix >= W ? W - 1 : ix;
                    yc[oy * OW + ox] = xc[iy * W + ix];
                    continue;
                }
                float cy = fy < 0 ? 0 : fy, cx = fx < 0 ? 0 : fx;
                int64_t y0 = (int64_t)cy, x0 = (int64_t)cx;
                if (y0 > H - 1)
                    y0 = H - 1;
                if (x0 > W - 1)
                    x0 = W - 1;
                int64_t y1 = y0 + 1 < H ? y0 + 1 : H - 1, x1 = x0 + 1 < W ? x0 + 1 : W - 1;
                float ly = cy - (float)y0, lx = cx - (float)x0;
                if (ly > 1)
                    ly = 1;
                if (lx > 1)
                    lx = 1;
                float top = xc[y0 * W + x0] + (xc[y0 * W + x1] - xc[y0 * W + x0]) * lx;
                float bot = xc[y1 * W + x0] + (xc[y1 * W + x1] - xc[y1 * W + x0]) * lx;
                yc[oy * OW + ox] = top + (bot - top) * ly;
            }
        }
    }
}

/* Strides of a dense row-major tensor, broadcast to rank r (0 for size-1 dims). */
static void bstrides(const vx_tensor *t, int r, int64_t *st)
{
    int64_t s = 1;
    for (int i = r - 1; i >= 0; i--) {
        int k = i - (r - t->rank);
        int64_t d = k >= 0 ? t->dims[k] : 1;
        st[i] = d == 1 ? 0 : s;
        s *= d;
    }
}

static void binary_ref(const vx_graph *g, const vx_node *n, const void *a, const void *b, void *y)
{
    const vx_tensor *ta = &g->t[n->in[0]], *tb = &g->t[n->in[1]], *to = &g->t[n->out[0]];
    int r = to->rank;
    int64_t sa[VX_NN_MAX_RANK], sb[VX_NN_MAX_RANK], idx[VX_NN_MAX_RANK] = {0};
    bstrides(ta, r, sa);
    bstrides(tb, r, sb);
    int64_t total = vx_tensor_elems(to), ia = 0, ib = 0;
    int is_int = to->dtype == VX_DT_I64 || (ta->dtype == VX_DT_I64 && tb->dtype == VX_DT_I64);
    for (int64_t i = 0; i < total; i++) {
        if (is_int) {
            int64_t va = ((const int64_t *)a)[ia], vb = ((const int64_t *)b)[ib], v = 0;
            switch (n->op) {
            case VX_OP_ADD: v = va + vb; break;
            case VX_OP_SUB: v = va - vb; break;
            case VX_OP_MUL: v = va * vb; break;
            default: v = vb ? va / vb : 0; break;
            }
            ((int64_t *)y)[i] = v;
        } else {
            float va = ((const float *)a)[ia], vb = ((const float *)b)[ib], v = 0;
            switch (n->op) {
            case VX_OP_ADD: v = va + vb; break;
            case VX_OP_SUB: v = va - vb; break;
            case VX_OP_MUL: v = va * vb; break;
            default: v = va / vb; break;
            }
            ((float *)y)[i] = v;
        }
        for (int k = r - 1; k >= 0; k--) {
            ia += sa[k];
            ib += sb[k];
            if (++idx[k] < to->dims[k])
                break;
            ia -= sa[k] * to->dims[k];
            ib -= sb[k] * to->dims[k];
            idx[k] = 0;
        }
    }
}

static size_t esize(const vx_tensor *t) { return t->dtype == VX_DT_I64 ? 8 : 4; }

static void transpose_ref(const vx_graph *g, const vx_node *n, const void *x, void *y)
{
    const vx_tensor *ti = &g->t[n->in[0]], *to = &g->t[n->out[0]];
    int r = ti->rank;
    size_t es = esize(ti);
    int64_t sin[VX_NN_MAX_RANK], s = 1, st[VX_NN_MAX_RANK], idx[VX_NN_MAX_RANK] = {0};
    for (int i = r - 1; i >= 0; i--) {
        sin[i] = s;
        s *= ti->dims[i];
    }
    for (int i = 0; i < r; i++)
        st[i] = sin[n->a.transpose.perm[i]];
    int64_t total = vx_tensor_elems(to), off = 0;
    for (int64_t i = 0; i < total; i++) {
        memcpy((char *)y + (size_t)i * es, (const char *)x + (size_t)off * es, es);
        for (int k = r - 1; k >= 0; k--) {
            off += st[k];
            if (++idx[k] < to->dims[k])
                break;
            off -= st[k] * to->dims[k];
            idx[k] = 0;
        }
    }
}

/* outer x (axis dim) x inner decomposition around `axis`. */
static void split_dims(const vx_tensor *t, int axis, int64_t *outer, int64_t *inner)
{
    *outer = 1;
    *inner = 1;
    for (int i = 0; i < axis; i++)
        *outer *= t->dims[i];
    for (int i = axis + 1; i < t->rank; i++)
        *inner *= t->dims[i];
}

static void concat_ref(const vx_graph *g, const vx_node *n, const void *const *in, void *y)
{
    const vx_tensor *to = &g->t[n->out[0]];
    int ax = n->a.concat.axis;
    size_t es = esize(to);
    int64_t outer, inner;
    split_dims(to, ax, &outer, &inner);
    int64_t off = 0;
    for (int i = 0; i < n->n_in; i++) {
        const vx_tensor *ti = &g->t[n->in[i]];
        int64_t len = ti->dims[ax] * inner;
        for (int64_t o = 0; o < outer; o++)
            memcpy((char *)y + (size_t)(o * to->dims[ax] * inner + off) * es, (const char *)in[i] + (size_t)(o * len) * es,
                   (size_t)len * es);
        off += len;
    }
}

static void split_ref(const vx_graph *g, const vx_node *n, const void *x, void *const *out)
{
    const vx_tensor *ti = &g->t[n->in[0]];
    int ax = n->a.split.axis;
    size_t es = esize(ti);
    int64_t outer, inner;
    split_dims(ti, ax, &outer, &inner);
    int64_t off = 0;
    for (int i = 0; i < n->n_out; i++) {
        int64_t len = n->a.split.sizes[i] * inner;
        for (int64_t o = 0; o < outer; o++)
            memcpy((char *)out[i] + (size_t)(o * len) * es, (const char *)x + (size_t)(o * ti->dims[ax] * inner + off) * es,
                   (size_t)len * es);
        off += len;
    }
}

static void pad_ref(const vx_graph *g, const vx_node *n, const void *x, void *y)
{
    const vx_tensor *ti = &g->t[n->in[0]], *to = &g->t[n->out[0]];
    int r = ti->rank;
    int64_t total = vx_tensor_elems(to), idx[VX_NN_MAX_RANK] = {0};
    int64_t sin[VX_NN_MAX_RANK], s = 1;
    for (int i = r - 1; i >= 0; i--) {
        sin[i] = s;
        s *= ti->dims[i];
    }
    int is_int = to->dtype == VX_DT_I64;
    for (int64_t i = 0; i < total; i++) {
        int64_t off = 0;
        int inside = 1;
        for (int k = 0; k < r; k++) {
            int64_t c = idx[k] - n->a.pad.begin[k];
            if (c < 0 || c >= ti->dims[k]) {
                inside = 0;
                break;
            }
            off += c * sin[k];
        }
        if (is_int)
            ((int64_t *)y)[i] = inside ? ((const int64_t *)x)[off] : (int64_t)n->a.pad.value;
        else
            ((float *)y)[i] = inside ? ((const float *)x)[off] : n->a.pad.value;
        for (int k = r - 1; k >= 0; k--) {
            if (++idx[k] < to->dims[k])
                break;
            idx[k] = 0;
        }
    }
}

static vx_err sparse_to_dense_ref(const vx_graph *g, const vx_node *n, const void *const *in, void *y)
{
    const vx_tensor *ti = &g->t[n->in[0]], *tv = &g->t[n->in[2]], *td = &g->t[n->in[3]], *to = &g->t[n->out[0]];
    size_t es = esize(to);
    int64_t total = vx_tensor_elems(to);
    for (int64_t i = 0; i < total; i++)
        memcpy((char *)y + (size_t)i * es, in[3], es);
    (void)td;
    int64_t nidx = ti->rank == 0 ? 1 : ti->dims[0], r = ti->rank == 2 ? ti->dims[1] : 1;
    if (r != to->rank && !(to->rank == 0 && nidx == 0))
        return vx_fail(VX_ERR_FORMAT, "node '%s' (SparseToDense): index rank %lld vs output rank %d", n->name,
                       (long long)r, to->rank);
    for (int64_t k = 0; k < nidx; k++) {
        int64_t off = 0;
        for (int64_t d = 0; d < r; d++) {
            int64_t v = ((const int64_t *)in[0])[k * r + d];
            if (v < 0 || v >= to->dims[d])
                return vx_fail(VX_ERR_FORMAT, "node '%s' (SparseToDense): index out of range", n->name);
            off = off * to->dims[d] + v;
        }
        int64_t vi = vx_tensor_elems(tv) == 1 ? 0 : k;
        memcpy((char *)y + (size_t)off * es, (const char *)in[2] + (size_t)vi * es, es);
    }
    return VX_OK;
}

vx_err vx_ref_run_node(const vx_graph *g, const vx_node *n, const void *const *in, void *const *out)
{
    const vx_tensor *to = &g->t[n->out[0]];
    int64_t total = vx_tensor_elems(to);
    switch (n->op) {
    case VX_OP_CONV:
        conv_ref(g, n, in[0], in[1], n->n_in > 2 && n->in[2] >= 0 ? in[2] : NULL,
                 n->n_in > 3 && n->in[3] >= 0 ? in[3] : NULL, out[0]);
        return VX_OK;
    case VX_OP_MAXPOOL:
    case VX_OP_AVGPOOL: pool_ref(g, n, in[0], out[0]); return VX_OK;
    case VX_OP_RESIZE: resize_ref(g, n, in[0], out[0]); return VX_OK;
    case VX_OP_ADD:
    case VX_OP_SUB:
    case VX_OP_MUL:
    case VX_OP_DIV: binary_ref(g, n, in[0], in[1], out[0]); return VX_OK;
    case VX_OP_RELU:
    case VX_OP_LEAKY_RELU:
    case VX_OP_SIGMOID: {
        vx_act a = n->op == VX_OP_RELU ? VX_ACT_RELU : n->op == VX_OP_SIGMOID ? VX_ACT_SIGMOID : VX_ACT_LEAKY_RELU;
        if (g->t[n->in[0]].dtype != VX_DT_F32)
            return vx_fail(VX_ERR_UNSUPPORTED, "node '%s': activation on integers", n->name);
        const float *x = in[0];
        float *y = out[0];
        for (int64_t i = 0; i < total; i++)
            y[i] = act_apply(a, n->a.leaky.alpha, x[i]);
        return VX_OK;
    }
    case VX_OP_IDENTITY:
    case VX_OP_RESHAPE:
        if (in[0] != out[0])
            memcpy(out[0], in[0], (size_t)total * esize(to));
        return VX_OK;
    case VX_OP_TRANSPOSE: transpose_ref(g, n, in[0], out[0]); return VX_OK;
    case VX_OP_CONCAT: concat_ref(g, n, in, out[0]); return VX_OK;
    case VX_OP_SPLIT: split_ref(g, n, in[0], out); return VX_OK;
    case VX_OP_PAD: pad_ref(g, n, in[0], out[0]); return VX_OK;
    case VX_OP_SPARSE_TO_DENSE: return sparse_to_dense_ref(g, n, in, out[0]);
    case VX_OP_COUNT: break;
    }
    return vx_fail(VX_ERR_UNSUPPORTED, "node '%s': no reference kernel for %s", n->name, vx_op_name(n->op));
}
