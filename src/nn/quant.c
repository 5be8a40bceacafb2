/*
 * INT8 calibration: activation ranges from FP32 runs, chosen per tensor.
 *
 * The calibrator compiles the model once into a FP32 cpu engine in capture
 * mode (every activation stays alive and readable after a run) and keeps,
 * for every 4-D activation, a histogram of |x| with 2048 bins.  Its range
 * is not known before the first sample, so it starts at the first sample's
 * maximum and doubles when a later sample exceeds it (adjacent bins merge),
 * which keeps at least half of the bins in use without a second pass.
 *
 * finish() picks the symmetric range (amax) per tensor:
 *  - entropy (default): TensorRT's calibrator, the clipping threshold whose
 *    128-level (256 for unsigned tensors) quantised distribution is closest
 *    to the observed one in KL divergence;
 *  - percentile: the smallest range holding that share of |x|;
 *  - minmax: the largest |x| seen.
 * Tensors that the cpu backend keeps in one buffer without a rescale share
 * one range: concat inputs and output (in-place concat), and the input and
 * output of max-pooling and resizing (int8 kernels without scales).
 *
 * Then a sensitivity check: every convolution is recomputed by the
 * reference kernel with its source, weights and destination rounded as the
 * INT8 engine would, on the first calibration sample (a 416x416 input
 * gives every layer 10^5-10^6 outputs: plenty for a relative error; the
 * reference convolutions cost ~2 s per sample), and compared with
 * its FP32 output; where the relative L2 error exceeds a bound the node is
 * kept in FP32 (vx_node.keep_fp32), and the measured error is kept for
 * reports (vx_nn_model_layer_info).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/engine_internal.h"

#define NBINS 2048
#define SENS_SAMPLES 1 /* inputs replayed by the sensitivity check */

typedef struct {
    int t;        /* tensor index */
    int64_t n;    /* elements */
    double range; /* histogram covers [0, range) */
    double amax;  /* largest |x| seen */
    double vmin;  /* smallest x seen */
    double *hist;
} tstat;

struct vx_nn_calibrator {
    const vx_nn_model *model;
    vx_nn_calib_method method;
    double percentile;
    double max_layer_err;
    vx_nn_engine *eng;
    tstat *st;
    int nst;
    int samples;
    float *scratch;
    /* Inputs of the first samples, replayed by the sensitivity check. */
    float **keep[SENS_SAMPLES];
    int nkeep;
};

/* ---- shared planning ---------------------------------------------------- */

static int is_act(const vx_tensor *t)
{
    return t->rank == 4 && t->dtype == VX_DT_F32 && !t->data;
}

static int uf_find(int *p, int i)
{
    while (p[i] != i)
        i = p[i] = p[p[i]];
    return i;
}

static void uf_union(int *p, int a, int b)
{
    a = uf_find(p, a);
    b = uf_find(p, b);
    if (a != b)
        p[b] = a;
}

/* Groups of tensors that must share a range: concat members, pool and
 * resize input/output. */
static int *share_groups(const vx_graph *g)
{
    int *p = malloc(sizeof(int) * (size_t)(g->nt + 1));
    if (!p)
        return NULL;
    for (int i = 0; i < g->nt; i++)
        p[i] = i;
    for (int i = 0; i < g->nn; i++) {
        const vx_node *n = &g->n[i];
        if (n->dead || !is_act(&g->t[n->out[0]]))
            continue;
        if (n->op == VX_OP_CONCAT || n->op == VX_OP_MAXPOOL || n->op == VX_OP_RESIZE)
            for (int j = 0; j < n->n_in; j++)
                if (n->in[j] >= 0 && is_act(&g->t[n->in[j]]))
                    uf_union(p, n->out[0], n->in[j]);
    }
    return p;
}

void vx_quant_signedness(const vx_graph *g, char *uns)
{
    memset(uns, 0, (size_t)g->nt);
    /* Nodes are in topological order: one forward sweep sees producers first. */
    for (int i = 0; i < g->nn; i++) {
        const vx_node *n = &g->n[i];
        if (n->dead || n->n_out < 1)
            continue;
        int y = n->out[0], u = 0;
        switch (n->op) {
        case VX_OP_CONV:
            if (n->a.conv.n_post > 0) {
                const vx_postop *p = &n->a.conv.post[n->a.conv.n_post - 1];
                u = p->kind == VX_POST_ACT && (p->act == VX_ACT_RELU || p->act == VX_ACT_SIGMOID);
            }
            break;
        case VX_OP_RELU:
        case VX_OP_SIGMOID: u = 1; break;
        case VX_OP_MAXPOOL:
        case VX_OP_AVGPOOL:
        case VX_OP_RESIZE:
        case VX_OP_CONCAT:
            u = 1;
            for (int j = 0; j < n->n_in; j++)
                if (n->in[j] < 0 || !uns[n->in[j]])
                    u = 0;
            break;
        default: break;
        }
        uns[y] = (char)u;
    }
    /* One signedness per shared group: signed wins. */
    int *p = share_groups(g);
    if (!p) {
        memset(uns, 0, (size_t)g->nt);
        return;
    }
    char *grp = malloc((size_t)g->nt + 1);
    if (grp) {
        memset(grp, 1, (size_t)g->nt + 1);
        for (int i = 0; i < g->nt; i++)
            if (!uns[i])
                grp[uf_find(p, i)] = 0;
        for (int i = 0; i < g->nt; i++)
            uns[i] = (char)(uns[i] && grp[uf_find(p, i)]);
    } else {
        memset(uns, 0, (size_t)g->nt);
    }
    free(grp);
    free(p);
}

void vx_quant_param(const vx_tensor *t, int is_unsigned, vx_qparam *p)
{
    float amax = t->amax > 0.0f ? t->amax : 1.0f;
    if (t->amin < 0.0f) {
        p->is_u8 = 1;
        p->q = 255.0f / (amax - t->amin);
        float z = nearbyintf(-t->amin * p->q);
        p->zp = (int)(z < 0.0f ? 0.0f : z > 255.0f ? 255.0f : z);
    } else {
        p->is_u8 = is_unsigned != 0;
        p->q = vx_quant_scale(amax, is_unsigned);
        p->zp = 0;
    }
}

/* Tensors that may use an asymmetric u8 range: LeakyReLU outputs of
 * convolutions without a residual sum, and the concats/pools/resizes that
 * share their buffer, when every reader handles a zero point (convolution
 * sources, concat, max-pool, resize; not sums, Adds or FP32 code).  One
 * answer per share group. */
static void asym_candidates(const vx_graph *g, const int *grp, const char *uns, char *ok)
{
    char *bad = calloc((size_t)g->nt + 1, 1);
    if (!bad) {
        memset(ok, 0, (size_t)g->nt);
        return;
    }
    for (int t = 0; t < g->nt; t++) {
        const vx_tensor *tt = &g->t[t];
        int p = tt->producer, good = 0;
        if (is_act(tt) && p >= 0 && !uns[t] && tt->graph_output < 0) {
            const vx_node *n = &g->n[p];
            if (n->op == VX_OP_CONV) {
                const vx_conv_attr *c = &n->a.conv;
                int sum = 0;
                for (int k = 0; k < c->n_post; k++)
                    sum |= c->post[k].kind == VX_POST_SUM;
                good = !sum && c->n_post > 0 && c->post[c->n_post - 1].act == VX_ACT_LEAKY_RELU &&
                       c->post[c->n_post - 1].alpha > 0.0f && c->post[c->n_post - 1].alpha < 1.0f;
            } else {
                good = n->op == VX_OP_CONCAT || n->op == VX_OP_MAXPOOL || n->op == VX_OP_RESIZE;
            }
        }
        if (!good)
            bad[uf_find((int *)grp, t)] = 1;
    }
    for (int i = 0; i < g->nn; i++) {
        const vx_node *n = &g->n[i];
        if (n->dead)
            continue;
        for (int j = 0; j < n->n_in; j++) {
            int t = n->in[j];
            if (t < 0)
                continue;
            int fine = (n->op == VX_OP_CONV && j == 0) || n->op == VX_OP_CONCAT || n->op == VX_OP_MAXPOOL ||
                       n->op == VX_OP_RESIZE;
            if (!fine)
                bad[uf_find((int *)grp, t)] = 1;
        }
    }
    for (int t = 0; t < g->nt; t++)
        ok[t] = (char)!bad[uf_find((int *)grp, t)];
    free(bad);
}

/* Activations that commute with a positive scale: the requantisation can
 * happen before them (in the convolution's output scales). */
static int act_homogeneous(vx_act a)
{
    return a == VX_ACT_NONE || a == VX_ACT_RELU || a == VX_ACT_LEAKY_RELU;
}

int vx_quant_conv_int8(const vx_graph *g, const vx_node *n)
{
    if (n->op != VX_OP_CONV || n->keep_fp32)
        return 0;
    const vx_tensor *x = &g->t[n->in[0]];
    if (!is_act(x) || !(x->amax > 0.0f) || !is_act(&g->t[n->out[0]]))
        return 0;
    if (n->n_in > 3 && n->in[3] >= 0 && (!is_act(&g->t[n->in[3]]) || !(g->t[n->in[3]].amax > 0.0f)))
        return 0;
    /* Post-op chains the INT8 kernels take: scale-commuting activations
     * around at most one sum, or (no sum) a last activation that does not
     * commute (sigmoid heads), computed on dequantised values. */
    const vx_conv_attr *c = &n->a.conv;
    int sums = 0;
    for (int k = 0; k < c->n_post; k++) {
        if (c->post[k].kind == VX_POST_SUM)
            sums++;
        else if (!act_homogeneous(c->post[k].act) && (k != c->n_post - 1 || sums))
            return 0;
    }
    return sums <= 1;
}

void vx_quant_weights(const float *w, int64_t out_ch, int64_t per_ch, float *scale, int8_t *q)
{
    for (int64_t o = 0; o < out_ch; o++) {
        const float *wo = w + o * per_ch;
        float m = 0.0f;
        for (int64_t k = 0; k < per_ch; k++)
            m = fmaxf(m, fabsf(wo[k]));
        float s = m > 0.0f ? 127.0f / m : 1.0f;
        scale[o] = s;
        for (int64_t k = 0; k < per_ch; k++) {
            float v = nearbyintf(wo[k] * s);
            q[o * per_ch + k] = (int8_t)(v > 127.0f ? 127 : v < -127.0f ? -127 : v);
        }
    }
}

/* ---- calibrator --------------------------------------------------------- */

void vx_nn_calibrator_destroy(vx_nn_calibrator *c)
{
    if (!c)
        return;
    vx_nn_engine_destroy(c->eng);
    for (int i = 0; i < c->nst; i++)
        free(c->st[i].hist);
    free(c->st);
    free(c->scratch);
    for (int k = 0; k < c->nkeep; k++) {
        for (int i = 0; c->keep[k] && i < c->model->g->n_inputs; i++)
            free(c->keep[k][i]);
        free(c->keep[k]);
    }
    free(c);
}

/* A FP32 cpu engine in capture mode; mirrors vx_nn_engine_create. */
static vx_err capture_engine(const vx_nn_model *m, vx_nn_engine **out)
{
    *out = NULL;
    const char *why = NULL;
    if (!vx_nn_backend_available(VX_NN_BACKEND_CPU, &why))
        return vx_fail(VX_ERR_UNAVAILABLE, "calibration needs the cpu backend: %s",
                       why ? why : "unavailable");
    vx_nn_engine *e = calloc(1, sizeof *e);
    if (!e)
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    e->model = m;
    e->g = m->g;
    e->backend = VX_NN_BACKEND_CPU;
    e->precision = VX_NN_FP32;
    e->threads = vx_cpu_count();
    e->capture = 1;
    e->inputs = calloc((size_t)e->g->n_inputs + 1, sizeof(float *));
    e->outputs = calloc((size_t)e->g->n_outputs + 1, sizeof(float *));
    int ok = e->inputs && e->outputs;
    for (int i = 0; ok && i < e->g->n_inputs; i++)
        ok = (e->inputs[i] = calloc((size_t)vx_tensor_elems(&e->g->t[e->g->inputs[i]]) + 16, 4)) != NULL;
    for (int i = 0; ok && i < e->g->n_outputs; i++)
        ok = (e->outputs[i] = calloc((size_t)vx_tensor_elems(&e->g->t[e->g->outputs[i]]) + 16, 4)) != NULL;
    if (!ok) {
        vx_nn_engine_destroy(e);
        return vx_fail(VX_ERR_NOMEM, "calibration engine: out of memory");
    }
    e->ops = &vx_nn_dnnl_ops;
    vx_err err = e->ops->create(e);
    if (err) {
        vx_nn_engine_destroy(e);
        return vx_fail_prefix(err, "calibration engine: ");
    }
    *out = e;
    return VX_OK;
}

vx_err vx_nn_calibrator_create(const vx_nn_model *model, vx_nn_calib_method method, double percentile,
                               vx_nn_calibrator **out)
{
    *out = NULL;
    if ((unsigned)method > VX_CALIB_MINMAX)
        return vx_fail(VX_ERR_INVALID, "unknown calibration method %d", (int)method);
    if (method == VX_CALIB_PERCENTILE && !(percentile > 50.0 && percentile <= 100.0))
        return vx_fail(VX_ERR_INVALID, "calibration percentile %g out of range (50, 100]", percentile);
    vx_nn_calibrator *c = calloc(1, sizeof *c);
    if (!c)
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    c->model = model;
    c->method = method;
    c->percentile = percentile;
    c->max_layer_err = 0.10;
    const vx_graph *g = model->g;
    c->st = calloc((size_t)g->nt + 1, sizeof(tstat));
    if (!c->st) {
        vx_nn_calibrator_destroy(c);
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    }
    int64_t biggest = 0;
    for (int t = 0; t < g->nt; t++) {
        if (!is_act(&g->t[t]) || g->t[t].rank < 0)
            continue;
        tstat *s = &c->st[c->nst];
        s->t = t;
        s->n = vx_tensor_elems(&g->t[t]);
        s->vmin = INFINITY;
        if (!(s->hist = calloc(NBINS, sizeof(double)))) {
            vx_nn_calibrator_destroy(c);
            return vx_fail(VX_ERR_NOMEM, "out of memory");
        }
        c->nst++;
        if (s->n > biggest)
            biggest = s->n;
    }
    if (!c->nst) {
        vx_nn_calibrator_destroy(c);
        return vx_fail(VX_ERR_UNSUPPORTED, "model has no 4-D activations to calibrate");
    }
    c->scratch = malloc(sizeof(float) * (size_t)biggest);
    if (!c->scratch) {
        vx_nn_calibrator_destroy(c);
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    }
    vx_err err = capture_engine(model, &c->eng);
    if (err) {
        vx_nn_calibrator_destroy(c);
        return err;
    }
    *out = c;
    return VX_OK;
}

vx_err vx_nn_calibrator_set_method(vx_nn_calibrator *c, vx_nn_calib_method method, double percentile)
{
    if ((unsigned)method > VX_CALIB_MINMAX)
        return vx_fail(VX_ERR_INVALID, "unknown calibration method %d", (int)method);
    if (method == VX_CALIB_PERCENTILE && !(percentile > 50.0 && percentile <= 100.0))
        return vx_fail(VX_ERR_INVALID, "calibration percentile %g out of range (50, 100]", percentile);
    c->method = method;
    c->percentile = percentile;
    return VX_OK;
}

void vx_nn_calibrator_set_max_layer_error(vx_nn_calibrator *c, double rel_err)
{
    c->max_layer_err = rel_err;
}

int vx_nn_calibrator_samples(const vx_nn_calibrator *c)
{
    return c->samples;
}

static void hist_add(tstat *s, const float *x)
{
    double m = 0.0, mn = s->vmin;
    for (int64_t i = 0; i < s->n; i++) {
        double a = fabs((double)x[i]);
        if (a > m)
            m = a;
        if (x[i] < mn)
            mn = x[i];
    }
    if (!(m == m) || isinf(m))
        return; /* a NaN/Inf activation: the sample tells nothing about ranges */
    s->vmin = mn;
    if (m > s->amax)
        s->amax = m;
    if (m == 0.0)
        return;
    if (s->range == 0.0)
        s->range = m * (1.0 + 1e-6);
    while (m >= s->range) {
        for (int k = 0; k < NBINS / 2; k++)
            s->hist[k] = s->hist[2 * k] + s->hist[2 * k + 1];
        memset(s->hist + NBINS / 2, 0, sizeof(double) * NBINS / 2);
        s->range *= 2.0;
    }
    double k = NBINS / s->range;
    for (int64_t i = 0; i < s->n; i++) {
        int b = (int)(fabsf(x[i]) * k);
        s->hist[b < NBINS ? b : NBINS - 1] += 1.0;
    }
}

vx_err vx_nn_calibrator_add(vx_nn_calibrator *c, const float *const *inputs)
{
    const vx_graph *g = c->model->g;
    for (int i = 0; i < g->n_inputs; i++) {
        size_t n = (size_t)vx_tensor_elems(&g->t[g->inputs[i]]);
        for (size_t k = 0; k < n; k++)
            if (!isfinite(inputs[i][k]))
                return vx_fail(VX_ERR_INVALID, "calibration input %d has a non-finite value at %zu", i, k);
        memcpy(vx_nn_engine_input(c->eng, i), inputs[i], n * sizeof(float));
    }
    vx_err err = vx_nn_engine_run(c->eng);
    if (err)
        return err;
    for (int i = 0; i < c->nst; i++) {
        err = vx_nn_dnnl_read_tensor(c->eng, c->st[i].t, c->scratch);
        if (err)
            return err;
        hist_add(&c->st[i], c->scratch);
    }
    if (c->nkeep < SENS_SAMPLES) {
        float **k = calloc((size_t)g->n_inputs + 1, sizeof(float *));
        if (!k)
            return vx_fail(VX_ERR_NOMEM, "out of memory");
        c->keep[c->nkeep++] = k;
        for (int i = 0; i < g->n_inputs; i++) {
            size_t n = (size_t)vx_tensor_elems(&g->t[g->inputs[i]]);
            if (!(k[i] = malloc(n * sizeof(float))))
                return vx_fail(VX_ERR_NOMEM, "out of memory");
            memcpy(k[i], inputs[i], n * sizeof(float));
        }
    }
    c->samples++;
    return VX_OK;
}

/* TensorRT's entropy calibration on one |x| histogram: the clip bin i in
 * [levels, NBINS] minimising KL(P || Q), P the histogram clipped at i (the
 * tail folded into its last bin), Q the same quantised to `levels` levels
 * and expanded back over the non-empty bins. */
static double entropy_amax(const tstat *s, int levels)
{
    const double *h = s->hist;
    double width = s->range / NBINS;
    int last = NBINS - 1;
    while (last > 0 && h[last] == 0.0)
        last--;
    if (last + 1 <= levels)
        return s->amax; /* fewer occupied bins than levels: nothing to clip */
    double total_tail = 0.0;
    for (int k = 0; k < NBINS; k++)
        total_tail += h[k];
    double *p = malloc(sizeof(double) * NBINS), *q = malloc(sizeof(double) * NBINS);
    if (!p || !q) {
        free(p);
        free(q);
        return s->amax;
    }
    double best = INFINITY;
    int best_i = last + 1;
    double tail = 0.0;
    for (int k = levels; k < NBINS; k++)
        tail += h[k];
    for (int i = levels; i <= last + 1; i++) {
        /* tail = sum h[i..] */
        double psum = 0.0;
        for (int k = 0; k < i; k++) {
            p[k] = h[k];
            psum += h[k];
        }
        p[i - 1] += tail;
        psum += tail;
        double merged = (double)i / levels;
        for (int j = 0; j < levels; j++) {
            int a = (int)(j * merged), b = j == levels - 1 ? i : (int)((j + 1) * merged);
            if (b <= a)
                b = a + 1;
            double sum = 0.0;
            int nz = 0;
            for (int k = a; k < b && k < i; k++) {
                sum += h[k];
                nz += h[k] != 0.0;
            }
            for (int k = a; k < b && k < i; k++)
                q[k] = (h[k] != 0.0 && nz) ? sum / nz : 0.0;
        }
        double qsum = 0.0;
        for (int k = 0; k < i; k++)
            qsum += q[k];
        double kl = 0.0;
        for (int k = 0; k < i && psum > 0 && qsum > 0; k++) {
            if (p[k] == 0.0)
                continue;
            double pk = p[k] / psum, qk = q[k] / qsum;
            /* P mass where Q has none (the folded tail): smoothed so the
             * divergence stays finite but costly. */
            if (qk <= 0.0)
                qk = 1e-4 / qsum;
            kl += pk * log(pk / qk);
        }
        if (kl < best) {
            best = kl;
            best_i = i;
        }
        tail -= h[i < NBINS ? i : NBINS - 1] * (i < NBINS);
    }
    free(p);
    free(q);
    (void)total_tail;
    double a = (best_i + 0.5) * width;
    return a < s->amax ? a : s->amax;
}

static double percentile_amax(const tstat *s, double pct)
{
    double total = 0.0;
    for (int k = 0; k < NBINS; k++)
        total += s->hist[k];
    if (total <= 0.0)
        return s->amax;
    double want = total * pct / 100.0, acc = 0.0;
    double width = s->range / NBINS;
    for (int k = 0; k < NBINS; k++) {
        acc += s->hist[k];
        if (acc >= want) {
            double a = (k + 1) * width;
            return a < s->amax ? a : s->amax;
        }
    }
    return s->amax;
}

/* ---- sensitivity check -------------------------------------------------- */

static void fake_quant(const float *x, float *y, int64_t n, const vx_tensor *t, int uns)
{
    vx_qparam p;
    vx_quant_param(t, uns, &p);
    float s = p.q, inv = 1.0f / s, lo = p.is_u8 ? 0.0f : -127.0f, hi = p.is_u8 ? 255.0f : 127.0f;
    for (int64_t i = 0; i < n; i++) {
        float v = nearbyintf(x[i] * s) + (float)p.zp;
        y[i] = ((v < lo ? lo : v > hi ? hi : v) - (float)p.zp) * inv;
    }
}

/* The destination is requantised unless only FP32 code reads it: graph
 * outputs and tensors whose readers are all reshapes/transposes (the head
 * outputs, dequantised into the user's buffers). */
static int dst_quantised(const vx_graph *g, int y)
{
    if (g->t[y].graph_output >= 0)
        return 0;
    for (int i = 0; i < g->nn; i++) {
        const vx_node *n = &g->n[i];
        if (n->dead)
            continue;
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j] == y && n->op != VX_OP_RESHAPE && n->op != VX_OP_TRANSPOSE)
                return 1;
    }
    return 0;
}

static vx_err sensitivity(vx_nn_calibrator *c, vx_graph *g)
{
    float **act = calloc((size_t)g->nt + 1, sizeof(float *));
    double *err2 = calloc((size_t)g->nn + 1, sizeof(double)),
           *ref2 = calloc((size_t)g->nn + 1, sizeof(double));
    char *uns = malloc((size_t)g->nt + 1);
    vx_err err = VX_OK;
    if (!act || !err2 || !ref2 || !uns) {
        err = vx_fail(VX_ERR_NOMEM, "out of memory");
        goto done;
    }
    vx_quant_signedness(g, uns);
    for (int t = 0; t < g->nt; t++)
        if (is_act(&g->t[t]) && !(act[t] = malloc(sizeof(float) * (size_t)vx_tensor_elems(&g->t[t])))) {
            err = vx_fail(VX_ERR_NOMEM, "out of memory");
            goto done;
        }
    for (int k = 0; k < c->nkeep && !err; k++) {
        for (int i = 0; i < g->n_inputs; i++)
            memcpy(vx_nn_engine_input(c->eng, i), c->keep[k][i],
                   sizeof(float) * (size_t)vx_tensor_elems(&g->t[g->inputs[i]]));
        if ((err = vx_nn_engine_run(c->eng)))
            break;
        for (int t = 0; t < g->nt && !err; t++)
            if (act[t])
                err = vx_nn_dnnl_read_tensor(c->eng, t, act[t]);
        for (int i = 0; i < g->nn && !err; i++) {
            vx_node *n = &g->n[i];
            int saved = n->keep_fp32;
            n->keep_fp32 = 0;
            int q8 = vx_quant_conv_int8(g, n);
            n->keep_fp32 = saved;
            if (!q8)
                continue;
            const vx_tensor *tw = &g->t[n->in[1]];
            int x = n->in[0], y = n->out[0], sm = n->n_in > 3 ? n->in[3] : -1;
            int64_t nx = vx_tensor_elems(&g->t[x]), ny = vx_tensor_elems(&g->t[y]);
            int64_t nw = vx_tensor_elems(tw), oc = tw->dims[0], per = oc ? nw / oc : 0;
            int64_t ns = sm >= 0 ? vx_tensor_elems(&g->t[sm]) : 0;
            float *xq = malloc(sizeof(float) * (size_t)nx), *wq = malloc(sizeof(float) * (size_t)nw + 4);
            float *ws = malloc(sizeof(float) * (size_t)oc + 4), *yq = malloc(sizeof(float) * (size_t)ny);
            int8_t *w8 = malloc((size_t)nw + 4);
            float *sq = sm >= 0 ? malloc(sizeof(float) * (size_t)ns) : NULL;
            if (!xq || !wq || !ws || !yq || !w8 || (sm >= 0 && !sq)) {
                err = vx_fail(VX_ERR_NOMEM, "out of memory");
            } else {
                fake_quant(act[x], xq, nx, &g->t[x], uns[x]);
                vx_quant_weights(tw->data, oc, per, ws, w8);
                for (int64_t o = 0; o < oc; o++)
                    for (int64_t j = 0; j < per; j++)
                        wq[o * per + j] = w8[o * per + j] / ws[o];
                if (sm >= 0)
                    fake_quant(act[sm], sq, ns, &g->t[sm], uns[sm]);
                const void *in[4] = {xq, wq, n->n_in > 2 && n->in[2] >= 0 ? g->t[n->in[2]].data : NULL, sq};
                void *out[1] = {yq};
                err = vx_ref_run_node(g, n, in, out);
                if (!err && dst_quantised(g, y) && g->t[y].amax > 0.0f)
                    fake_quant(yq, yq, ny, &g->t[y], uns[y]);
                for (int64_t j = 0; !err && j < ny; j++) {
                    double dlt = (double)yq[j] - act[y][j];
                    err2[i] += dlt * dlt;
                    ref2[i] += (double)act[y][j] * act[y][j];
                }
            }
            free(xq);
            free(wq);
            free(ws);
            free(yq);
            free(w8);
            free(sq);
        }
    }
    for (int i = 0; i < g->nn && !err; i++) {
        vx_node *n = &g->n[i];
        if (n->op != VX_OP_CONV || ref2[i] <= 0.0)
            continue;
        double rel = sqrt(err2[i] / ref2[i]);
        n->quant_err = (float)(rel > 1e-9 ? rel : 1e-9);
        n->keep_fp32 = c->max_layer_err >= 0.0 && rel > c->max_layer_err;
    }
done:
    for (int t = 0; act && t < g->nt; t++)
        free(act[t]);
    free(act);
    free(err2);
    free(ref2);
    free(uns);
    return err;
}

vx_err vx_nn_calibrator_finish(vx_nn_calibrator *c, vx_nn_model *model)
{
    if (model != c->model)
        return vx_fail(VX_ERR_INVALID, "calibrator finished on another model than it was created for");
    if (c->samples < 1)
        return vx_fail(VX_ERR_INVALID, "calibration needs at least one sample (none was added)");
    vx_graph *g = model->g;
    char *uns = malloc((size_t)g->nt + 1);
    int *grp = share_groups(g);
    float *gmax = calloc((size_t)g->nt + 1, sizeof(float));
    if (!uns || !grp || !gmax) {
        free(uns);
        free(grp);
        free(gmax);
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    }
    vx_quant_signedness(g, uns);
    for (int t = 0; t < g->nt; t++)
        g->t[t].amax = g->t[t].amin = 0.0f;
    for (int i = 0; i < g->nn; i++) {
        g->n[i].keep_fp32 = 0;
        g->n[i].quant_err = 0.0f;
    }
    for (int i = 0; i < c->nst; i++) {
        const tstat *s = &c->st[i];
        double a;
        if (s->amax <= 0.0)
            a = 0.0;
        else if (c->method == VX_CALIB_MINMAX)
            a = s->amax;
        else if (c->method == VX_CALIB_PERCENTILE)
            a = percentile_amax(s, c->percentile);
        else
            a = entropy_amax(s, uns[s->t] ? 256 : 128);
        /* An all-zero activation still gets a (tiny) range: it is calibrated. */
        if (!(a > 0.0))
            a = 1e-6;
        g->t[s->t].amax = (float)a;
    }
    for (int t = 0; t < g->nt; t++) {
        int r = uf_find(grp, t);
        if (g->t[t].amax > gmax[r])
            gmax[r] = g->t[t].amax;
    }
    for (int t = 0; t < g->nt; t++)
        if (g->t[t].amax > 0.0f)
            g->t[t].amax = gmax[uf_find(grp, t)];
    /* Asymmetric ranges: the lower end is the smallest value seen (bounded
     * by -amax), one per share group. */
    char *asym = malloc((size_t)g->nt + 1);
    float *gmin = calloc((size_t)g->nt + 1, sizeof(float));
    const char *sym_env = getenv("VX_INT8_SYMMETRIC");
    if (asym && gmin && !(sym_env && *sym_env == '1')) {
        asym_candidates(g, grp, uns, asym);
        for (int i = 0; i < c->nst; i++) {
            const tstat *s = &c->st[i];
            int r = uf_find(grp, s->t);
            if (asym[s->t] && s->vmin < gmin[r])
                gmin[r] = (float)s->vmin;
        }
        for (int t = 0; t < g->nt; t++) {
            float lo = gmin[uf_find(grp, t)];
            if (asym[t] && g->t[t].amax > 0.0f && lo < 0.0f)
                g->t[t].amin = lo > -g->t[t].amax ? lo : -g->t[t].amax;
        }
    }
    free(asym);
    free(gmin);
    free(uns);
    free(grp);
    free(gmax);
    if (c->max_layer_err < 0.0)
        return VX_OK;
    return sensitivity(c, g);
}

int vx_nn_model_is_calibrated(const vx_nn_model *m)
{
    const vx_graph *g = m->g;
    int any = 0;
    for (int i = 0; i < g->nn; i++) {
        const vx_node *n = &g->n[i];
        if (n->op != VX_OP_CONV || !is_act(&g->t[n->in[0]]))
            continue;
        if (!(g->t[n->in[0]].amax > 0.0f) && !n->keep_fp32)
            return 0;
        any = 1;
    }
    return any;
}

int vx_nn_model_layer_count(const vx_nn_model *m)
{
    int k = 0;
    for (int i = 0; i < m->g->nn; i++)
        k += m->g->n[i].op == VX_OP_CONV;
    return k;
}

void vx_nn_model_layer_info(const vx_nn_model *m, int index, vx_nn_layer_info *info)
{
    memset(info, 0, sizeof *info);
    info->error = -1.0f;
    const vx_graph *g = m->g;
    for (int i = 0, k = 0; i < g->nn; i++) {
        const vx_node *n = &g->n[i];
        if (n->op != VX_OP_CONV || k++ != index)
            continue;
        info->name = n->name;
        info->precision = vx_quant_conv_int8(g, n) ? VX_NN_INT8 : VX_NN_FP32;
        info->error = n->quant_err > 0.0f ? n->quant_err : -1.0f;
        info->in_amax = g->t[n->in[0]].amax;
        info->out_amax = g->t[n->out[0]].amax;
        return;
    }
}
