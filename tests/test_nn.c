/*
 * Engine tests: the cpu backend (oneDNN) against the ref backend (plain C)
 * on synthetic graphs that exercise each operator and fusion, and on the
 * real NanoDet-g model with random and real-image inputs; the optimisation
 * passes against the unoptimised graph; the cpu engine's layout plan.
 *
 * "Relative error" of an output is max|cpu - ref| / max|ref| over the
 * tensor: element-wise ratios are meaningless where values cross zero.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "detect/vx_detect.h"
#include "nn/engine_internal.h"
#include "nn/graph.h"
#include "nn/vx_nn.h"
#include "video/vx_image.h"

#define REL_TOL 1e-4

static char model_path[1200];
/* Sanitizer builds (VX_TEST_LIGHT=1): fewer runs of NanoDet on the
 * single-threaded reference backend, the slowest thing under ASan; the
 * same code paths run, the Release run holds the numbers. */
static int light(void)
{
    const char *l = getenv("VX_TEST_LIGHT");
    return l && *l && strcmp(l, "0");
}

static uint32_t rng = 1;
static float frand(void)
{
    rng = rng * 1664525u + 1013904223u;
    return (float)(rng >> 8) / (float)(1u << 24) * 2.0f - 1.0f;
}

static size_t elems(const vx_nn_tensor_info *t)
{
    size_t n = 1;
    for (int i = 0; i < t->rank; i++)
        n *= (size_t)t->dims[i];
    return n;
}

/* Runs both engines on the same input and returns the worst relative error. */
static double compare_engines(vx_nn_engine *a, vx_nn_engine *b, const vx_nn_model *m)
{
    assert_int_equal(vx_nn_engine_run(a), VX_OK);
    assert_int_equal(vx_nn_engine_run(b), VX_OK);
    double worst = 0;
    for (int k = 0; k < vx_nn_model_output_count(m); k++) {
        vx_nn_tensor_info t;
        vx_nn_model_output_info(m, k, &t);
        const float *x = vx_nn_engine_output(a, k), *y = vx_nn_engine_output(b, k);
        double md = 0, mx = 0;
        for (size_t i = 0; i < elems(&t); i++) {
            assert_false(isnan(x[i]) || isnan(y[i]));
            double d = fabs((double)x[i] - y[i]);
            md = d > md ? d : md;
            mx = fabs(y[i]) > mx ? fabs(y[i]) : mx;
        }
        double rel = mx > 0 ? md / mx : md;
        if (rel > REL_TOL)
            print_error("output %s: max diff %g, max |ref| %g, relative %g\n", t.name, md, mx, rel);
        worst = rel > worst ? rel : worst;
    }
    return worst;
}

static void fill_inputs(vx_nn_engine *a, vx_nn_engine *b, const vx_nn_model *m, float scale)
{
    for (int i = 0; i < vx_nn_model_input_count(m); i++) {
        vx_nn_tensor_info t;
        vx_nn_model_input_info(m, i, &t);
        for (size_t k = 0; k < elems(&t); k++) {
            float v = frand() * scale;
            vx_nn_engine_input(a, i)[k] = v;
            if (b)
                vx_nn_engine_input(b, i)[k] = v;
        }
    }
}

static double cpu_vs_ref(const vx_nn_model *m, int threads)
{
    vx_nn_engine_opts oc = {.backend = VX_NN_BACKEND_CPU, .threads = threads},
                      orf = {.backend = VX_NN_BACKEND_REF, .threads = 1};
    vx_nn_engine *c, *r;
    assert_int_equal(vx_nn_engine_create(m, &oc, &c), VX_OK);
    assert_int_equal(vx_nn_engine_create(m, &orf, &r), VX_OK);
    fill_inputs(c, r, m, 2.0f);
    double e = compare_engines(c, r, m);
    vx_nn_engine_destroy(c);
    vx_nn_engine_destroy(r);
    return e;
}

/* ---- synthetic graphs -------------------------------------------------- */

typedef struct {
    vx_graph *g;
    char name[32];
    int seq;
} gb;

static int g_input(gb *b, int64_t n, int64_t c, int64_t h, int64_t w)
{
    int t = vx_graph_add_tensor(b->g, "input");
    vx_tensor *x = &b->g->t[t];
    x->rank = 4;
    x->dims[0] = n, x->dims[1] = c, x->dims[2] = h, x->dims[3] = w;
    b->g->inputs = realloc(b->g->inputs, sizeof(int) * (size_t)(b->g->n_inputs + 1));
    b->g->inputs[b->g->n_inputs++] = t;
    return t;
}

static int g_const(gb *b, int rank, const int64_t *dims)
{
    char name[32];
    snprintf(name, sizeof name, "w%d", b->seq++);
    int t = vx_graph_add_const(b->g, name, VX_DT_F32, rank, dims, NULL);
    float *p = b->g->t[t].data;
    for (int64_t i = 0; i < vx_tensor_elems(&b->g->t[t]); i++)
        p[i] = frand() * 0.3f;
    return t;
}

static int g_node(gb *b, vx_op op, const int *in, int n_in, int n_out)
{
    char name[32];
    snprintf(name, sizeof name, "n%d", b->seq++);
    return vx_graph_add_node(b->g, op, name, in, n_in, n_out);
}

static int g_conv(gb *b, int x, int64_t cout, int k, int stride, int pad, int groups, int bias)
{
    int64_t cin = b->g->t[x].dims[1];
    int64_t wd[4] = {cout, cin / groups, k, k}, bd[1] = {cout};
    int in[3] = {x, g_const(b, 4, wd), bias ? g_const(b, 1, bd) : -1};
    int n = g_node(b, VX_OP_CONV, in, 3, 1);
    vx_conv_attr *a = &b->g->n[n].a.conv;
    a->sh = a->sw = stride;
    a->pt = a->pl = a->pb = a->pr = pad;
    a->groups = groups;
    assert_int_equal(vx_graph_infer_node(b->g, &b->g->n[n]), VX_OK);
    return b->g->n[n].out[0];
}

static int g_unary(gb *b, vx_op op, int x, float alpha)
{
    int n = g_node(b, op, &x, 1, 1);
    b->g->n[n].a.leaky.alpha = alpha;
    assert_int_equal(vx_graph_infer_node(b->g, &b->g->n[n]), VX_OK);
    return b->g->n[n].out[0];
}

static int g_binary(gb *b, vx_op op, int x, int y)
{
    int in[2] = {x, y};
    int n = g_node(b, op, in, 2, 1);
    assert_int_equal(vx_graph_infer_node(b->g, &b->g->n[n]), VX_OK);
    return b->g->n[n].out[0];
}

static void g_outputs(gb *b, const int *t, int n)
{
    const char *names[8];
    char buf[8][16];
    for (int i = 0; i < n; i++) {
        snprintf(buf[i], sizeof buf[i], "out%d", i);
        names[i] = buf[i];
    }
    assert_true(vx_graph_set_outputs(b->g, t, names, n));
}

/* Builds the model twice (optimised and not) and checks cpu vs ref on the
 * optimised one and optimised vs unoptimised on ref. */
static void check_graph(gb *b, gb *b2)
{
    vx_nn_model *m, *m0;
    assert_int_equal(vx_nn_model_from_graph(b->g, 1, &m), VX_OK);
    assert_int_equal(vx_nn_model_from_graph(b2->g, 0, &m0), VX_OK);
    uint32_t seed = rng;
    assert_true(cpu_vs_ref(m, 2) <= REL_TOL);
    rng = seed;
    assert_true(cpu_vs_ref(m, 1) <= REL_TOL);
    vx_nn_engine_opts o = {.backend = VX_NN_BACKEND_REF, .threads = 1};
    vx_nn_engine *a, *z;
    assert_int_equal(vx_nn_engine_create(m, &o, &a), VX_OK);
    assert_int_equal(vx_nn_engine_create(m0, &o, &z), VX_OK);
    if (!light()) {
        fill_inputs(a, z, m, 2.0f);
        assert_true(compare_engines(a, z, m) <= 1e-5);
    }
    vx_nn_engine_destroy(a);
    vx_nn_engine_destroy(z);
    vx_nn_model_destroy(m);
    vx_nn_model_destroy(m0);
}

/* The same graph built twice (a builder function called on two graphs). */
#define BOTH(fn)                                                                                             \
    do {                                                                                                     \
        gb b1 = {vx_graph_new(), "", 0}, b2 = {vx_graph_new(), "", 0};                                       \
        uint32_t s0 = rng;                                                                                   \
        fn(&b1);                                                                                             \
        rng = s0;                                                                                            \
        fn(&b2);                                                                                             \
        check_graph(&b1, &b2);                                                                               \
    } while (0)

/* Conv chain with every post-op: bias, LeakyReLU, residual sum, sigmoid,
 * stride 2, grouped and depthwise convolutions, pooling and concat. */
static void build_block(gb *b)
{
    int x = g_input(b, 1, 3, 37, 41);
    int c1 = g_unary(b, VX_OP_LEAKY_RELU, g_conv(b, x, 32, 3, 2, 1, 1, 1), 0.1f);
    int c2 = g_unary(b, VX_OP_RELU, g_conv(b, c1, 32, 3, 1, 1, 1, 1), 0);
    int c3 = g_conv(b, c2, 32, 1, 1, 0, 1, 1);
    int sum = g_unary(b, VX_OP_LEAKY_RELU, g_binary(b, VX_OP_ADD, c3, c1), 0.2f);
    int dw = g_conv(b, sum, 32, 3, 1, 1, 32, 1);
    int gr = g_conv(b, dw, 48, 3, 1, 1, 4, 0);
    int cat_in[2] = {gr, sum};
    int cn = g_node(b, VX_OP_CONCAT, cat_in, 2, 1);
    b->g->n[cn].a.concat.axis = 1;
    assert_int_equal(vx_graph_infer_node(b->g, &b->g->n[cn]), VX_OK);
    int pn = g_node(b, VX_OP_MAXPOOL, &b->g->n[cn].out[0], 1, 1);
    vx_pool_attr *p = &b->g->n[pn].a.pool;
    p->kh = p->kw = 3, p->sh = p->sw = 2, p->pt = p->pl = p->pb = p->pr = 1;
    assert_int_equal(vx_graph_infer_node(b->g, &b->g->n[pn]), VX_OK);
    int an = g_node(b, VX_OP_AVGPOOL, &b->g->n[pn].out[0], 1, 1);
    vx_pool_attr *q = &b->g->n[an].a.pool;
    q->kh = q->kw = 2, q->sh = q->sw = 1;
    assert_int_equal(vx_graph_infer_node(b->g, &b->g->n[an]), VX_OK);
    int head = g_unary(b, VX_OP_SIGMOID, g_conv(b, b->g->n[an].out[0], 20, 1, 1, 0, 1, 1), 0);
    int outs[2] = {head, sum};
    g_outputs(b, outs, 2);
}

/* Channel counts that are not block multiples (concat, split, resize and
 * broadcasting add fall back or take the copying paths). */
static void build_odd(gb *b)
{
    int x = g_input(b, 1, 5, 16, 12);
    int a = g_conv(b, x, 24, 3, 1, 1, 1, 1);
    int c = g_conv(b, x, 20, 1, 1, 0, 1, 0);
    int cat_in[2] = {a, c};
    int cn = g_node(b, VX_OP_CONCAT, cat_in, 2, 1);
    b->g->n[cn].a.concat.axis = 1;
    assert_int_equal(vx_graph_infer_node(b->g, &b->g->n[cn]), VX_OK);
    int cat = b->g->n[cn].out[0];
    int rn = g_node(b, VX_OP_RESIZE, &cat, 1, 1);
    vx_resize_attr *r = &b->g->n[rn].a.resize;
    r->mode = VX_RESIZE_LINEAR;
    r->coord = VX_COORD_HALF_PIXEL;
    r->out_h = 32, r->out_w = 24;
    assert_int_equal(vx_graph_infer_node(b->g, &b->g->n[rn]), VX_OK);
    int rn2 = g_node(b, VX_OP_RESIZE, &cat, 1, 1);
    vx_resize_attr *r2 = &b->g->n[rn2].a.resize;
    r2->mode = VX_RESIZE_LINEAR;
    r2->coord = VX_COORD_ALIGN_CORNERS;
    r2->out_h = 32, r2->out_w = 24;
    assert_int_equal(vx_graph_infer_node(b->g, &b->g->n[rn2]), VX_OK);
    int64_t bd[4] = {1, 44, 1, 1};
    int badd = g_binary(b, VX_OP_ADD, b->g->n[rn].out[0], g_const(b, 4, bd));
    int mixed = g_binary(b, VX_OP_MUL, badd, b->g->n[rn2].out[0]);
    int sn = g_node(b, VX_OP_SPLIT, &mixed, 1, 2);
    b->g->n[sn].a.split.axis = 1;
    b->g->n[sn].a.split.n = 2;
    b->g->n[sn].a.split.sizes = malloc(2 * sizeof(int64_t));
    b->g->n[sn].a.split.sizes[0] = 30;
    b->g->n[sn].a.split.sizes[1] = 14;
    assert_int_equal(vx_graph_infer_node(b->g, &b->g->n[sn]), VX_OK);
    int outs[2] = {b->g->n[sn].out[0], b->g->n[sn].out[1]};
    g_outputs(b, outs, 2);
}

static int g_reshape(gb *b, int x, int rank, const int64_t *shape)
{
    char name[32];
    snprintf(name, sizeof name, "shape%d", b->seq++);
    int64_t d1[1] = {rank};
    int in[2] = {x, vx_graph_add_const(b->g, name, VX_DT_I64, 1, d1, shape)};
    int n = g_node(b, VX_OP_RESHAPE, in, 2, 1);
    assert_int_equal(vx_graph_infer_node(b->g, &b->g->n[n]), VX_OK);
    return b->g->n[n].out[0];
}

static int g_split(gb *b, int x, int axis, int64_t s0, int64_t s1, int *outs)
{
    int n = g_node(b, VX_OP_SPLIT, &x, 1, 2);
    b->g->n[n].a.split.axis = axis;
    b->g->n[n].a.split.n = 2;
    b->g->n[n].a.split.sizes = malloc(2 * sizeof(int64_t));
    b->g->n[n].a.split.sizes[0] = s0;
    b->g->n[n].a.split.sizes[1] = s1;
    assert_int_equal(vx_graph_infer_node(b->g, &b->g->n[n]), VX_OK);
    outs[0] = b->g->n[n].out[0];
    outs[1] = b->g->n[n].out[1];
    return n;
}

/* A detection head's tail the way YOLO exporters write it: nearest 2x
 * upsampling, reshape to [N, C, anchors], splits, the DFL transpose and
 * softmax, broadcast arithmetic with constants, Pow, sigmoid on 3-D
 * tensors, MatMul, concat along the anchor axis and a split across the
 * last axis.  The cpu backend runs all of it as oneDNN primitives. */
static void build_head(gb *b)
{
    int x = g_input(b, 1, 8, 10, 12);
    int c = g_conv(b, x, 32, 3, 1, 1, 1, 1);
    int rn = g_node(b, VX_OP_RESIZE, &c, 1, 1);
    vx_resize_attr *r = &b->g->n[rn].a.resize;
    r->mode = VX_RESIZE_NEAREST;
    r->coord = VX_COORD_ASYMMETRIC;
    r->nearest = VX_NEAREST_FLOOR;
    r->scale_h = r->scale_w = 2.0f;
    assert_int_equal(vx_graph_infer_node(b->g, &b->g->n[rn]), VX_OK);
    int c2 = g_conv(b, b->g->n[rn].out[0], 32, 3, 2, 1, 1, 1);
    int64_t s3[3] = {1, 32, 120}, s4[4] = {1, 4, 4, 120};
    int flat = g_reshape(b, c2, 3, s3);
    int parts[2];
    g_split(b, flat, 1, 16, 16, parts);
    int box = g_reshape(b, parts[0], 4, s4);
    int tn = g_node(b, VX_OP_TRANSPOSE, &box, 1, 1);
    int perm[4] = {0, 2, 1, 3};
    memcpy(b->g->n[tn].a.transpose.perm, perm, sizeof perm);
    assert_int_equal(vx_graph_infer_node(b->g, &b->g->n[tn]), VX_OK);
    int sm = g_node(b, VX_OP_SOFTMAX, &b->g->n[tn].out[0], 1, 1);
    b->g->n[sm].a.softmax.axis = 1;
    assert_int_equal(vx_graph_infer_node(b->g, &b->g->n[sm]), VX_OK);
    int64_t anc[4] = {1, 1, 4, 120}, one[1] = {1};
    int sub = g_binary(b, VX_OP_SUB, b->g->n[sm].out[0], g_const(b, 4, anc));
    int two = g_const(b, 0, one);
    ((float *)b->g->t[two].data)[0] = 2.0f;
    int pw = g_binary(b, VX_OP_POW, sub, two);
    int cls = g_unary(b, VX_OP_SIGMOID, parts[1], 0);
    int64_t wd[2] = {120, 8};
    int mm = g_binary(b, VX_OP_MATMUL, cls, g_const(b, 2, wd));
    int cat_in[2] = {cls, mm};
    int cn = g_node(b, VX_OP_CONCAT, cat_in, 2, 1);
    b->g->n[cn].a.concat.axis = 2;
    assert_int_equal(vx_graph_infer_node(b->g, &b->g->n[cn]), VX_OK);
    int tail[2];
    g_split(b, b->g->n[cn].out[0], 2, 100, 28, tail);
    int outs[3] = {pw, tail[0], tail[1]};
    g_outputs(b, outs, 3);
}

static void test_synthetic_block(void **state)
{
    (void)state;
    BOTH(build_block);
}

static void test_synthetic_odd_channels(void **state)
{
    (void)state;
    BOTH(build_odd);
}

static void test_synthetic_head(void **state)
{
    (void)state;
    BOTH(build_head);
    /* ... and it runs without reference kernels on the cpu backend */
    gb b = {vx_graph_new(), "", 0};
    build_head(&b);
    vx_nn_model *m;
    assert_int_equal(vx_nn_model_from_graph(b.g, 1, &m), VX_OK);
    vx_nn_engine_opts o = {.backend = VX_NN_BACKEND_CPU, .threads = 2};
    vx_nn_engine *e;
    assert_int_equal(vx_nn_engine_create(m, &o, &e), VX_OK);
    vx_nn_engine_stats st;
    vx_nn_engine_get_stats(e, &st);
    assert_int_equal(st.reference_steps, 0);
    vx_nn_engine_destroy(e);
    vx_nn_model_destroy(m);
}

/* ---- the real model ---------------------------------------------------- */

static void test_nanodet_cpu_vs_ref_random(void **state)
{
    (void)state;
    vx_nn_model *m;
    assert_int_equal(vx_nn_model_load(model_path, NULL, &m), VX_OK);
    for (int round = 0; round < (light() ? 1 : 2); round++)
        assert_true(cpu_vs_ref(m, 2) <= REL_TOL);
    vx_nn_model_destroy(m);
}

static void test_nanodet_cpu_vs_ref_image(void **state)
{
    (void)state;
    const char *cache = getenv("VEROLUX_CACHE");
    char path[1300];
    snprintf(path, sizeof path, "%s/samples/person.jpg", cache);
    vx_image_buf *img;
    assert_int_equal(vx_image_load(path, &img), VX_OK);
    vx_detector *det;
    assert_int_equal(vx_detector_create(model_path, NULL, NULL, &det), VX_OK);
    assert_int_equal(vx_detector_preprocess(det, vx_image_buf_view(img)), VX_OK);
    const vx_nn_model *m = vx_detector_model(det);
    vx_nn_engine *cpu = vx_detector_engine(det), *ref;
    vx_nn_engine_opts o = {.backend = VX_NN_BACKEND_REF, .threads = 1};
    assert_int_equal(vx_nn_engine_create(m, &o, &ref), VX_OK);
    vx_nn_tensor_info ti;
    vx_nn_model_input_info(m, 0, &ti);
    memcpy(vx_nn_engine_input(ref, 0), vx_nn_engine_input(cpu, 0), elems(&ti) * sizeof(float));
    assert_true(compare_engines(cpu, ref, m) <= REL_TOL);
    vx_nn_engine_destroy(ref);
    vx_detector_destroy(det);
    vx_image_buf_destroy(img);
}

/* The passes change the graph, never its function. */
static void test_nanodet_passes_preserve_outputs(void **state)
{
    (void)state;
    vx_nn_load_opts raw = {0};
    vx_nn_model *m, *m0;
    assert_int_equal(vx_nn_model_load(model_path, NULL, &m), VX_OK);
    assert_int_equal(vx_nn_model_load(model_path, &raw, &m0), VX_OK);
    vx_nn_model_stats s, s0;
    vx_nn_model_get_stats(m, &s);
    vx_nn_model_get_stats(m0, &s0);
    assert_true(s.nodes < s0.nodes / 3); /* ~240 nodes fold down to under 80 */
    assert_true(fabs(s.flops - 4.18e9) < 0.01e9);
    assert_int_equal(vx_nn_model_output_count(m), vx_nn_model_output_count(m0));
    vx_nn_engine_opts o = {.backend = VX_NN_BACKEND_REF, .threads = 1};
    vx_nn_engine *a, *z;
    assert_int_equal(vx_nn_engine_create(m, &o, &a), VX_OK);
    assert_int_equal(vx_nn_engine_create(m0, &o, &z), VX_OK);
    for (int k = 0; k < vx_nn_model_output_count(m); k++) {
        vx_nn_tensor_info x, y;
        vx_nn_model_output_info(m, k, &x);
        vx_nn_model_output_info(m0, k, &y);
        assert_string_equal(x.name, y.name);
        assert_int_equal(elems(&x), elems(&y));
    }
    if (!light()) {
        fill_inputs(a, z, m, 2.0f);
        assert_true(compare_engines(a, z, m) <= 1e-5);
    }
    vx_nn_engine_destroy(a);
    vx_nn_engine_destroy(z);
    vx_nn_model_destroy(m);
    vx_nn_model_destroy(m0);
}

/* One layout through the network: no reorders between layers, no
 * reference-kernel fallbacks, and no leftover transposes in the graph. */
static void test_nanodet_cpu_plan(void **state)
{
    (void)state;
    vx_nn_model *m;
    assert_int_equal(vx_nn_model_load(model_path, NULL, &m), VX_OK);
    const vx_graph *g = m->g;
    int transposes = 0, pads = 0;
    for (int i = 0; i < g->nn; i++) {
        transposes += g->n[i].op == VX_OP_TRANSPOSE;
        pads += g->n[i].op == VX_OP_PAD;
        assert_int_not_equal(g->n[i].op, VX_OP_IDENTITY);
    }
    assert_int_equal(pads, 0);
    assert_true(transposes <= vx_nn_model_output_count(m)); /* only the NHWC output views */
    vx_nn_engine *e;
    vx_nn_engine_opts o = {.backend = VX_NN_BACKEND_CPU, .threads = 2};
    assert_int_equal(vx_nn_engine_create(m, &o, &e), VX_OK);
    vx_nn_engine_stats st;
    vx_nn_engine_get_stats(e, &st);
    print_message("%s\n", vx_nn_engine_describe(e));
    assert_int_equal(st.reference_steps, 0);
    /* Reorders only where outputs leave the blocked layout. */
    assert_true(st.reorders <= vx_nn_model_output_count(m));
    /* On AVX-512 most of NanoDet's 3x3 convolutions run Winograd: the
     * speed it has against ONNX Runtime depends on it. */
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        !getenv("DNNL_MAX_CPU_ISA") && !getenv("ONEDNN_MAX_CPU_ISA") && !getenv("VX_CONV_ALG"))
        assert_non_null(strstr(vx_nn_engine_describe(e), "conv impl jit_fp32_wino"));
    vx_nn_engine_destroy(e);
    vx_nn_model_destroy(m);
}

/* BF16 against FP32 on real images: raw outputs nearly parallel and the
 * same detections. */
static void test_nanodet_bf16(void **state)
{
    (void)state;
    if (!vx_nn_precision_native(VX_NN_BF16)) {
        print_message("this CPU has no native BF16 (avx512_bf16/AMX): nothing to compare\n");
        skip();
    }
    const char *cache = getenv("VEROLUX_CACHE");
    const char *images[] = {"dog.jpg", "person.jpg", "horses.jpg", "kite.jpg", "giraffe.jpg", "eagle.jpg"};
    vx_nn_engine_opts o32 = {.backend = VX_NN_BACKEND_CPU, .threads = 2, .precision = VX_NN_FP32};
    vx_nn_engine_opts o16 = o32;
    o16.precision = VX_NN_BF16;
    vx_detector *d32, *d16;
    assert_int_equal(vx_detector_create(model_path, &o32, NULL, &d32), VX_OK);
    assert_int_equal(vx_detector_create(model_path, &o16, NULL, &d16), VX_OK);
    assert_non_null(strstr(vx_nn_engine_describe(vx_detector_engine(d16)), "BF16"));
    int matched = 0, total32 = 0, total16 = 0;
    for (size_t i = 0; i < sizeof images / sizeof *images; i++) {
        char path[1300];
        snprintf(path, sizeof path, "%s/samples/%s", cache, images[i]);
        vx_image_buf *img;
        assert_int_equal(vx_image_load(path, &img), VX_OK);
        vx_detection a[64], b[64];
        int na, nb;
        assert_int_equal(vx_detector_run(d32, vx_image_buf_view(img), a, 64, &na), VX_OK);
        assert_int_equal(vx_detector_run(d16, vx_image_buf_view(img), b, 64, &nb), VX_OK);
        const vx_nn_model *m = vx_detector_model(d32);
        for (int k = 0; k < vx_nn_model_output_count(m); k++) {
            vx_nn_tensor_info t;
            vx_nn_model_output_info(m, k, &t);
            const float *x = vx_nn_engine_output(vx_detector_engine(d32), k);
            const float *y = vx_nn_engine_output(vx_detector_engine(d16), k);
            double dot = 0, nx = 0, ny = 0;
            for (size_t e = 0; e < elems(&t); e++) {
                dot += (double)x[e] * y[e];
                nx += (double)x[e] * x[e];
                ny += (double)y[e] * y[e];
            }
            double cosv = dot / sqrt(nx * ny);
            if (cosv < 0.999)
                print_error("%s output %s: cosine %f\n", images[i], t.name, cosv);
            assert_true(cosv >= 0.999);
        }
        for (int p = 0; p < na; p++)
            for (int q = 0; q < nb; q++)
                if (a[p].cls == b[q].cls && vx_box_iou(&a[p], &b[q]) >= 0.5f) {
                    matched++;
                    break;
                }
        total32 += na;
        total16 += nb;
        vx_image_buf_destroy(img);
    }
    double f1 = 2.0 * matched / (double)(total32 + total16);
    print_message("BF16 vs FP32 on %zu images: %d/%d detections matched, F1 %.3f\n",
                  sizeof images / sizeof *images, matched, total32, f1);
    assert_true(total32 > 10);
    assert_true(f1 >= 0.98);
    vx_detector_destroy(d32);
    vx_detector_destroy(d16);
}

static void test_engine_errors(void **state)
{
    (void)state;
    vx_nn_model *m;
    assert_int_equal(vx_nn_model_load(model_path, NULL, &m), VX_OK);
    vx_nn_engine *e = NULL;
    vx_nn_engine_opts o = {.backend = VX_NN_BACKEND_CUDA, .threads = 0};
    assert_int_equal(vx_nn_engine_create(m, &o, &e), VX_ERR_UNAVAILABLE);
    assert_non_null(strstr(vx_last_error(), "cuda"));
    o.backend = VX_NN_BACKEND_CPU;
    o.threads = -3;
    assert_int_equal(vx_nn_engine_create(m, &o, &e), VX_ERR_INVALID);
    assert_null(e);
    vx_nn_backend b;
    assert_int_equal(vx_nn_backend_parse("gpu9", &b), VX_ERR_INVALID);
    assert_int_equal(vx_nn_backend_parse("ref", &b), VX_OK);
    assert_int_equal(b, VX_NN_BACKEND_REF);
    vx_nn_model_destroy(m);
}

static int setup(void **state)
{
    (void)state;
    const char *cache = getenv("VEROLUX_CACHE");
    if (!cache || !*cache) {
        print_error("VEROLUX_CACHE is not set\n");
        return -1;
    }
    snprintf(model_path, sizeof model_path, "%s/models/nanodet/nanodet.json", cache);
    if (access(model_path, R_OK)) {
        print_error("%s missing: run scripts/fetch-models (make test does)\n", model_path);
        return -1;
    }
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_synthetic_block),
        cmocka_unit_test(test_synthetic_odd_channels),
        cmocka_unit_test(test_synthetic_head),
        cmocka_unit_test(test_nanodet_cpu_vs_ref_random),
        cmocka_unit_test(test_nanodet_cpu_vs_ref_image),
        cmocka_unit_test(test_nanodet_passes_preserve_outputs),
        cmocka_unit_test(test_nanodet_cpu_plan),
        cmocka_unit_test(test_nanodet_bf16),
        cmocka_unit_test(test_engine_errors),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
