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
    case VX_ACT_SWISH: return v / (1.0f + expf(-v));
    case VX_ACT_HARDSWISH: return v * fmaxf(0.0f, fminf(1.0f, v * (1.0f / 6.0f) + 0.5f));
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
    int64_t NC = ti->dims[0] * ti->dims[1], H = ti->dims[2], W = ti->dims[3], OH = to->dims[2],
            OW = to->dims[3];
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
    case VX_COORD_TF_HALF_PIXEL_FOR_NN: return ((float)o + 0.5f) / scale;
    case VX_COORD_HALF_PIXEL: break;
    }
    return ((float)o + 0.5f) / scale - 0.5f;
}

static int64_t nearest_index(const vx_resize_attr *r, float f)
{
    switch (r->nearest) {
    case VX_NEAREST_ROUND_PREFER_FLOOR: return (int64_t)ceilf(f - 0.5f);
    case VX_NEAREST_ROUND_PREFER_CEIL: return (int64_t)floorf(f + 0.5f);
    case VX_NEAREST_FLOOR: return (int64_t)floorf(f);
    case VX_NEAREST_CEIL: return (int64_t)ceilf(f);
    case VX_NEAREST_DEFAULT: break;
    }
    /* round_prefer_floor for half_pixel, floor for asymmetric (exporters' defaults) */
    return r->coord == VX_COORD_ASYMMETRIC ? (int64_t)floorf(f) : (int64_t)ceilf(f - 0.5f);
}

int64_t vx_resize_nearest_src(const vx_resize_attr *r, int64_t o, int64_t in, int64_t out, float scale)
{
    int64_t i = nearest_index(r, src_coord(r, o, in, out, scale));
    return i < 0 ? 0 : i >= in ? in - 1 : i;
}

/* Source positions of each output row or column, and the linear weight:
 * the same float arithmetic as per pixel, done once per axis. */
typedef struct {
    int64_t i0, i1;
    float l;
} rs_tap;

static void axis_taps(const vx_resize_attr *r, int64_t in, int64_t out, float scale, rs_tap *t)
{
    for (int64_t o = 0; o < out; o++) {
        float f = src_coord(r, o, in, out, scale);
        if (r->mode == VX_RESIZE_NEAREST) {
            int64_t i = nearest_index(r, f);
            i = i < 0 ? 0 : i >= in ? in - 1 : i;
            t[o] = (rs_tap){i, i, 0.0f};
            continue;
        }
        float c = f < 0 ? 0 : f;
        int64_t i0 = (int64_t)c;
        if (i0 > in - 1)
            i0 = in - 1;
        float l = c - (float)i0;
        t[o] = (rs_tap){i0, i0 + 1 < in ? i0 + 1 : in - 1, l > 1 ? 1 : l};
    }
}

static vx_err resize_ref(const vx_graph *g, const vx_node *n, const float *x, float *y)
{
    const vx_resize_attr *r = &n->a.resize;
    const vx_tensor *ti = &g->t[n->in[0]], *to = &g->t[n->out[0]];
    int64_t NC = ti->dims[0] * ti->dims[1], H = ti->dims[2], W = ti->dims[3], OH = to->dims[2],
            OW = to->dims[3];
    rs_tap *ty = malloc(sizeof(rs_tap) * (size_t)(OH + OW));
    if (!ty)
        return vx_fail(VX_ERR_NOMEM, "node '%s' (Resize): out of memory", n->name);
    rs_tap *tx = ty + OH;
    axis_taps(r, H, OH, r->scale_h, ty);
    axis_taps(r, W, OW, r->scale_w, tx);
    for (int64_t c = 0; c < NC; c++) {
        const float *xc = x + c * H * W;
        float *yc = y + c * OH * OW;
        for (int64_t oy = 0; oy < OH; oy++) {
            const float *r0 = xc + ty[oy].i0 * W, *r1 = xc + ty[oy].i1 * W;
            float ly = ty[oy].l, *yr = yc + oy * OW;
            if (r->mode == VX_RESIZE_NEAREST) {
                for (int64_t ox = 0; ox < OW; ox++)
                    yr[ox] = r0[tx[ox].i0];
                continue;
            }
            for (int64_t ox = 0; ox < OW; ox++) {
                int64_t x0 = tx[ox].i0, x1 = tx[ox].i1;
                float lx = tx[ox].l;
                float top = r0[x0] + (r0[x1] - r0[x0]) * lx;
                float bot = r1[x0] + (r1[x1] - r1[x0]) * lx;
                yr[ox] = top + (bot - top) * ly;
            }
        }
    }
    free(ty);
    return VX_OK;
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

/* Integer power by squaring; negative exponents give 0 except for |base| 1
 * (what truncating integer division of 1 / base^-e gives). */
static int64_t ipow(int64_t b, int64_t e)
{
    if (e < 0)
        return b == 1 ? 1 : b == -1 ? (e % 2 ? -1 : 1) : 0;
    uint64_t r = 1, x = (uint64_t)b; /* unsigned: overflow wraps instead of being undefined */
    for (; e; e >>= 1, x *= x)
        if (e & 1)
            r *= x;
    return (int64_t)r;
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
    int a_int = ta->dtype == VX_DT_I64, b_int = tb->dtype == VX_DT_I64; /* float op with an int operand */
    for (int64_t i = 0; i < total; i++) {
        if (is_int) {
            /* Wrapping arithmetic: overflowing int64 is undefined in C, and
             * shape arithmetic on hostile constants can overflow. */
            int64_t va = ((const int64_t *)a)[ia], vb = ((const int64_t *)b)[ib], v = 0;
            switch (n->op) {
            case VX_OP_ADD: v = (int64_t)((uint64_t)va + (uint64_t)vb); break;
            case VX_OP_SUB: v = (int64_t)((uint64_t)va - (uint64_t)vb); break;
            case VX_OP_MUL: v = (int64_t)((uint64_t)va * (uint64_t)vb); break;
            case VX_OP_POW: v = ipow(va, vb); break;
            default: v = !vb ? 0 : vb == -1 ? (int64_t)(0 - (uint64_t)va) : va / vb; break;
            }
            ((int64_t *)y)[i] = v;
        } else {
            float va = a_int ? (float)((const int64_t *)a)[ia] : ((const float *)a)[ia];
            float vb = b_int ? (float)((const int64_t *)b)[ib] : ((const float *)b)[ib], v = 0;
            switch (n->op) {
            case VX_OP_ADD: v = va + vb; break;
            case VX_OP_SUB: v = va - vb; break;
            case VX_OP_MUL: v = va * vb; break;
            case VX_OP_POW: v = vb == 2.0f ? va * va : powf(va, vb); break;
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

static size_t esize(const vx_tensor *t)
{
    return t->dtype == VX_DT_I64 ? 8 : 4;
}

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
            memcpy((char *)y + (size_t)(o * to->dims[ax] * inner + off) * es,
                   (const char *)in[i] + (size_t)(o * len) * es, (size_t)len * es);
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
            memcpy((char *)out[i] + (size_t)(o * len) * es,
                   (const char *)x + (size_t)(o * ti->dims[ax] * inner + off) * es, (size_t)len * es);
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
            ((int64_t *)y)[i] = inside ? ((const int64_t *)x)[off] : vx_f2i64(n->a.pad.value);
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
    const vx_tensor *ti = &g->t[n->in[0]], *tv = &g->t[n->in[2]], *td = &g->t[n->in[3]],
                    *to = &g->t[n->out[0]];
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

static void softmax_ref(const vx_graph *g, const vx_node *n, const float *x, float *y)
{
    const vx_tensor *t = &g->t[n->in[0]];
    int ax = n->a.softmax.axis;
    int64_t outer, len, inner;
    split_dims(t, ax, &outer, &inner);
    len = t->dims[ax];
    if (n->a.softmax.flat) { /* everything from axis on is one row */
        len *= inner;
        inner = 1;
    }
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            const float *xs = x + o * len * inner + i;
            float *ys = y + o * len * inner + i;
            float mx = -INFINITY, sum = 0;
            for (int64_t k = 0; k < len; k++)
                mx = xs[k * inner] > mx ? xs[k * inner] : mx;
            for (int64_t k = 0; k < len; k++) {
                float e = expf(xs[k * inner] - mx);
                ys[k * inner] = e;
                sum += e;
            }
            for (int64_t k = 0; k < len; k++)
                ys[k * inner] /= sum;
        }
}

static void matmul_ref(const vx_graph *g, const vx_node *n, const float *a, const float *b, float *y)
{
    const vx_tensor *ta = &g->t[n->in[0]], *tb = &g->t[n->in[1]], *to = &g->t[n->out[0]];
    int r = to->rank;
    int64_t M = ta->dims[ta->rank - 2], K = ta->dims[ta->rank - 1], N = tb->dims[tb->rank - 1];
    /* Batch strides in whole matrices, 0 where a side is broadcast. */
    int64_t sa[VX_NN_MAX_RANK], sb[VX_NN_MAX_RANK], batch = 1, idx[VX_NN_MAX_RANK] = {0};
    int64_t ma = 1, mb = 1;
    for (int i = r - 3; i >= 0; i--) {
        int ia = i - (r - ta->rank), ib = i - (r - tb->rank);
        int64_t da = ia >= 0 ? ta->dims[ia] : 1, db = ib >= 0 ? tb->dims[ib] : 1;
        sa[i] = da == 1 ? 0 : ma;
        sb[i] = db == 1 ? 0 : mb;
        ma *= da;
        mb *= db;
        batch *= to->dims[i];
    }
    int64_t oa = 0, ob = 0;
    for (int64_t bi = 0; bi < batch; bi++) {
        const float *A = a + oa * M * K, *B = b + ob * K * N;
        float *Y = y + bi * M * N;
        for (int64_t i = 0; i < M; i++) {
            float *yr = Y + i * N;
            for (int64_t j = 0; j < N; j++)
                yr[j] = 0;
            for (int64_t k = 0; k < K; k++) {
                float av = A[i * K + k];
                const float *br = B + k * N;
                for (int64_t j = 0; j < N; j++)
                    yr[j] += av * br[j];
            }
        }
        for (int k = r - 3; k >= 0; k--) {
            oa += sa[k];
            ob += sb[k];
            if (++idx[k] < to->dims[k])
                break;
            oa -= sa[k] * to->dims[k];
            ob -= sb[k] * to->dims[k];
            idx[k] = 0;
        }
    }
}

static void slice_ref(const vx_graph *g, const vx_node *n, const void *x, void *y)
{
    const vx_tensor *ti = &g->t[n->in[0]], *to = &g->t[n->out[0]];
    int r = ti->rank;
    size_t es = esize(ti);
    int64_t total = vx_tensor_elems(to);
    if (total <= 0)
        return;
    if (r == 0) {
        memcpy(y, x, es);
        return;
    }
    int64_t sin[VX_NN_MAX_RANK], s = 1, idx[VX_NN_MAX_RANK] = {0};
    for (int i = r - 1; i >= 0; i--) {
        sin[i] = s;
        s *= ti->dims[i];
    }
    const int64_t *st = n->a.slice.start, *sp = n->a.slice.step;
    int64_t row = to->dims[r - 1];
    for (int64_t i = 0; i < total; i += row) {
        int64_t off = 0;
        for (int k = 0; k < r - 1; k++)
            off += (st[k] + idx[k] * sp[k]) * sin[k];
        off += st[r - 1];
        if (sp[r - 1] == 1) {
            memcpy((char *)y + (size_t)i * es, (const char *)x + (size_t)off * es, (size_t)row * es);
        } else {
            for (int64_t j = 0; j < row; j++)
                memcpy((char *)y + (size_t)(i + j) * es, (const char *)x + (size_t)(off + j * sp[r - 1]) * es,
                       es);
        }
        for (int k = r - 2; k >= 0; k--) {
            if (++idx[k] < to->dims[k])
                break;
            idx[k] = 0;
        }
    }
}

static vx_err gather_ref(const vx_graph *g, const vx_node *n, const void *x, const int64_t *ix, void *y)
{
    const vx_tensor *tx = &g->t[n->in[0]], *ti = &g->t[n->in[1]];
    int ax = n->a.gather.axis;
    size_t es = esize(tx);
    int64_t outer, inner, dim = tx->dims[ax], ni = vx_tensor_elems(ti);
    split_dims(tx, ax, &outer, &inner);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t k = 0; k < ni; k++) {
            int64_t v = ix[k] < 0 ? ix[k] + dim : ix[k];
            if (v < 0 || v >= dim)
                return vx_fail(VX_ERR_FORMAT, "node '%s' (Gather): index %lld out of range for size %lld",
                               n->name, (long long)ix[k], (long long)dim);
            memcpy((char *)y + (size_t)((o * ni + k) * inner) * es,
                   (const char *)x + (size_t)((o * dim + v) * inner) * es, (size_t)inner * es);
        }
    return VX_OK;
}

static void cast_ref(const vx_graph *g, const vx_node *n, const void *x, void *y)
{
    const vx_tensor *ti = &g->t[n->in[0]];
    int64_t total = vx_tensor_elems(ti);
    vx_dtype from = ti->dtype, to = n->a.cast.to;
    if (from == to) {
        memcpy(y, x, (size_t)total * esize(ti));
    } else if (to == VX_DT_F32) {
        for (int64_t i = 0; i < total; i++)
            ((float *)y)[i] = (float)((const int64_t *)x)[i];
    } else {
        /* Truncation toward zero like C; out-of-range and NaN saturate instead of being undefined. */
        for (int64_t i = 0; i < total; i++) {
            float v = ((const float *)x)[i];
            ((int64_t *)y)[i] = v != v          ? 0
                                : v >= 9.2e18f  ? INT64_MAX
                                : v <= -9.2e18f ? INT64_MIN
                                                : (int64_t)v;
        }
    }
}

static void unary_ref(const vx_node *n, vx_dtype dt, int64_t total, const void *xv, void *yv)
{
    if (dt == VX_DT_I64) {
        const int64_t *x = xv;
        int64_t *y = yv;
        int64_t lo = (int64_t)n->a.clip.lo, hi = (int64_t)n->a.clip.hi;
        if (n->op != VX_OP_CLIP)
            memcpy(y, x, (size_t)total * 8); /* floor and ceil of integers */
        else
            for (int64_t i = 0; i < total; i++)
                y[i] = x[i] < lo ? lo : x[i] > hi ? hi : x[i];
        return;
    }
    const float *x = xv;
    float *y = yv;
    switch (n->op) {
    case VX_OP_SWISH:
        for (int64_t i = 0; i < total; i++)
            y[i] = act_apply(VX_ACT_SWISH, 0, x[i]);
        break;
    case VX_OP_HARDSWISH:
        for (int64_t i = 0; i < total; i++)
            y[i] = act_apply(VX_ACT_HARDSWISH, 0, x[i]);
        break;
    case VX_OP_HARDSIGMOID:
        for (int64_t i = 0; i < total; i++)
            y[i] = fmaxf(0.0f, fminf(1.0f, n->a.hard.alpha * x[i] + n->a.hard.beta));
        break;
    case VX_OP_CLIP:
        for (int64_t i = 0; i < total; i++)
            y[i] = x[i] < n->a.clip.lo ? n->a.clip.lo : x[i] > n->a.clip.hi ? n->a.clip.hi : x[i];
        break;
    case VX_OP_FLOOR:
        for (int64_t i = 0; i < total; i++)
            y[i] = floorf(x[i]);
        break;
    default:
        for (int64_t i = 0; i < total; i++)
            y[i] = ceilf(x[i]);
        break;
    }
}

vx_err vx_ref_run_node(const vx_graph *g, const vx_node *n, const void *const *in, void *const *out)
{
    const vx_tensor *to = &g->t[n->out[0]];
    int64_t total = vx_tensor_elems(to);
    /* Nothing to compute, and the kernels' outer loops over the other dims
     * (up to 2^31 each when one dim is 0) would spin for nothing. */
    int64_t any = 0;
    for (int j = 0; j < n->n_out; j++)
        any |= vx_tensor_elems(&g->t[n->out[j]]);
    if (!any)
        return VX_OK;
    switch (n->op) {
    case VX_OP_CONV:
        conv_ref(g, n, in[0], in[1], n->n_in > 2 && n->in[2] >= 0 ? in[2] : NULL,
                 n->n_in > 3 && n->in[3] >= 0 ? in[3] : NULL, out[0]);
        return VX_OK;
    case VX_OP_MAXPOOL:
    case VX_OP_AVGPOOL: pool_ref(g, n, in[0], out[0]); return VX_OK;
    case VX_OP_RESIZE: return resize_ref(g, n, in[0], out[0]);
    case VX_OP_ADD:
    case VX_OP_SUB:
    case VX_OP_MUL:
    case VX_OP_DIV: binary_ref(g, n, in[0], in[1], out[0]); return VX_OK;
    case VX_OP_RELU:
    case VX_OP_LEAKY_RELU:
    case VX_OP_SIGMOID: {
        vx_act a = n->op == VX_OP_RELU      ? VX_ACT_RELU
                   : n->op == VX_OP_SIGMOID ? VX_ACT_SIGMOID
                                            : VX_ACT_LEAKY_RELU;
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
    case VX_OP_POW: binary_ref(g, n, in[0], in[1], out[0]); return VX_OK;
    case VX_OP_SWISH:
    case VX_OP_HARDSWISH:
    case VX_OP_HARDSIGMOID:
    case VX_OP_CLIP:
    case VX_OP_FLOOR:
    case VX_OP_CEIL: unary_ref(n, g->t[n->in[0]].dtype, total, in[0], out[0]); return VX_OK;
    case VX_OP_SOFTMAX: softmax_ref(g, n, in[0], out[0]); return VX_OK;
    case VX_OP_MATMUL: matmul_ref(g, n, in[0], in[1], out[0]); return VX_OK;
    case VX_OP_SLICE: slice_ref(g, n, in[0], out[0]); return VX_OK;
    case VX_OP_GATHER: return gather_ref(g, n, in[0], in[1], out[0]);
    case VX_OP_CAST: cast_ref(g, n, in[0], out[0]); return VX_OK;
    case VX_OP_COUNT: break;
    }
    return vx_fail(VX_ERR_UNSUPPORTED, "node '%s': no reference kernel for %s", n->name, vx_op_name(n->op));
}
