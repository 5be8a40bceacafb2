/*
 * ONNX loader tests on models built here with protobuf-c: mapping (shape
 * sub-graphs folded at load, SiLU fused, metadata and output names kept,
 * initializer encodings, external data, dynamic batch, opset range) and bad
 * input (truncated files, wrong magic, cycles, data sizes that disagree
 * with shapes, absurd dimensions, unknown operators, deep nesting, paths
 * escaping the model's folder): a clear error, never a crash.  Numerical
 * agreement with ONNX Runtime is tests/onnx_oracle.py's job.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "nn/engine_internal.h"
#include "nn/graph.h"
#include "nn/vx_nn.h"
#include "onnx/onnx.pb-c.h"

/* ---- a tiny model builder ------------------------------------------------ */

/* Everything the builder allocates lives until arena_free() (per test). */
static void **arena;
static size_t n_arena, cap_arena;

static void *A(size_t n)
{
    if (n_arena == cap_arena) {
        cap_arena = cap_arena ? 2 * cap_arena : 256;
        arena = realloc(arena, cap_arena * sizeof *arena);
        assert_non_null(arena);
    }
    void *p = calloc(1, n ? n : 1);
    assert_non_null(p);
    return arena[n_arena++] = p;
}

static char *S(const char *s)
{
    return strcpy(A(strlen(s) + 1), s);
}

static void arena_free(void)
{
    for (size_t i = 0; i < n_arena; i++)
        free(arena[i]);
    n_arena = 0;
}

typedef struct {
    Onnx__ModelProto m;
    Onnx__GraphProto g;
    Onnx__OperatorSetIdProto op;
    Onnx__OperatorSetIdProto *ops[1];
    Onnx__NodeProto *nodes[64];
    Onnx__TensorProto *inits[64];
    Onnx__ValueInfoProto *ins[8], *outs[8];
    Onnx__StringStringEntryProto *meta[8];
} mb;

static mb *mb_new(int opset)
{
    mb *b = A(sizeof *b);
    onnx__model_proto__init(&b->m);
    onnx__graph_proto__init(&b->g);
    onnx__operator_set_id_proto__init(&b->op);
    b->op.domain = S("");
    b->op.has_version = 1;
    b->op.version = opset;
    b->ops[0] = &b->op;
    b->m.n_opset_import = 1;
    b->m.opset_import = b->ops;
    b->m.has_ir_version = 1;
    b->m.ir_version = 8;
    b->m.graph = &b->g;
    b->g.name = S("test");
    b->g.node = b->nodes;
    b->g.initializer = b->inits;
    b->g.input = b->ins;
    b->g.output = b->outs;
    b->m.metadata_props = b->meta;
    return b;
}

/* "a,b,,c" -> array of names ("" for an absent optional input). */
static char **names(const char *list, size_t *n)
{
    *n = 0;
    if (!list)
        return NULL;
    char **v = A(sizeof(char *) * 16);
    const char *p = list;
    for (;;) {
        const char *c = strchr(p, ',');
        size_t l = c ? (size_t)(c - p) : strlen(p);
        char *s = A(l + 1);
        memcpy(s, p, l);
        v[(*n)++] = s;
        if (!c)
            break;
        p = c + 1;
    }
    return v;
}

static Onnx__NodeProto *mb_node(mb *b, const char *op, const char *name, const char *ins, const char *outs)
{
    Onnx__NodeProto *n = A(sizeof *n);
    onnx__node_proto__init(n);
    n->op_type = S(op);
    n->name = S(name);
    n->input = names(ins, &n->n_input);
    n->output = names(outs, &n->n_output);
    n->attribute = A(sizeof(Onnx__AttributeProto *) * 8);
    b->nodes[b->g.n_node++] = n;
    return n;
}

static Onnx__AttributeProto *attr(Onnx__NodeProto *n, const char *name, Onnx__AttributeProto__AttributeType t)
{
    Onnx__AttributeProto *a = A(sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = S(name);
    a->has_type = 1;
    a->type = t;
    n->attribute[n->n_attribute++] = a;
    return a;
}

static void attr_i(Onnx__NodeProto *n, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = attr(n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    a->has_i = 1;
    a->i = v;
}

static void attr_f(Onnx__NodeProto *n, const char *name, float v)
{
    Onnx__AttributeProto *a = attr(n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    a->has_f = 1;
    a->f = v;
}

static void attr_ints(Onnx__NodeProto *n, const char *name, int cnt, const int64_t *v)
{
    Onnx__AttributeProto *a = attr(n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    a->n_ints = (size_t)cnt;
    a->ints = A(sizeof(int64_t) * (size_t)cnt);
    memcpy(a->ints, v, sizeof(int64_t) * (size_t)cnt);
}

static void attr_s(Onnx__NodeProto *n, const char *name, const char *v)
{
    Onnx__AttributeProto *a = attr(n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
    a->has_s = 1;
    a->s.data = (uint8_t *)S(v);
    a->s.len = strlen(v);
}

/* A tensor with raw little-endian data (nbytes of it). */
static Onnx__TensorProto *tensor(const char *name, int dt, int rank, const int64_t *dims, const void *data,
                                 size_t nbytes)
{
    Onnx__TensorProto *t = A(sizeof *t);
    onnx__tensor_proto__init(t);
    t->name = S(name);
    t->has_data_type = 1;
    t->data_type = dt;
    t->n_dims = (size_t)rank;
    t->dims = A(sizeof(int64_t) * (size_t)(rank ? rank : 1));
    if (rank)
        memcpy(t->dims, dims, sizeof(int64_t) * (size_t)rank);
    if (data) {
        t->has_raw_data = 1;
        t->raw_data.len = nbytes;
        t->raw_data.data = A(nbytes);
        memcpy(t->raw_data.data, data, nbytes);
    }
    return t;
}

static Onnx__TensorProto *mb_init(mb *b, Onnx__TensorProto *t)
{
    b->inits[b->g.n_initializer++] = t;
    return t;
}

static Onnx__TensorProto *mb_f32(mb *b, const char *name, int rank, const int64_t *dims, const float *v)
{
    size_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= (size_t)dims[i];
    return mb_init(b, tensor(name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, rank, dims, v, n * 4));
}

static Onnx__TensorProto *mb_i64(mb *b, const char *name, int n, const int64_t *v)
{
    int64_t d[1] = {n};
    return mb_init(b, tensor(name, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 1, d, v, (size_t)n * 8));
}

/* Value info; a negative dim is symbolic ("batch" for dim 0, else "size"). */
static Onnx__ValueInfoProto *value_info(const char *name, int elem, int rank, const int64_t *dims)
{
    Onnx__ValueInfoProto *vi = A(sizeof *vi);
    onnx__value_info_proto__init(vi);
    vi->name = S(name);
    Onnx__TypeProto *tp = A(sizeof *tp);
    onnx__type_proto__init(tp);
    Onnx__TypeProto__Tensor *tt = A(sizeof *tt);
    onnx__type_proto__tensor__init(tt);
    tt->has_elem_type = 1;
    tt->elem_type = elem;
    if (rank >= 0) {
        Onnx__TensorShapeProto *sh = A(sizeof *sh);
        onnx__tensor_shape_proto__init(sh);
        sh->n_dim = (size_t)rank;
        sh->dim = A(sizeof(void *) * (size_t)(rank ? rank : 1));
        for (int i = 0; i < rank; i++) {
            Onnx__TensorShapeProto__Dimension *d = A(sizeof *d);
            onnx__tensor_shape_proto__dimension__init(d);
            if (dims[i] >= 0) {
                d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
                d->dim_value = dims[i];
            } else {
                d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
                d->dim_param = S(i == 0 ? "batch" : "size");
            }
            sh->dim[i] = d;
        }
        tt->shape = sh;
    }
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    vi->type = tp;
    return vi;
}

static void mb_input(mb *b, const char *name, int rank, const int64_t *dims)
{
    b->ins[b->g.n_input++] = value_info(name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, rank, dims);
}

static void mb_output(mb *b, const char *name)
{
    b->outs[b->g.n_output++] = value_info(name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, -1, NULL);
}

static void mb_meta(mb *b, const char *k, const char *v)
{
    Onnx__StringStringEntryProto *e = A(sizeof *e);
    onnx__string_string_entry_proto__init(e);
    e->key = S(k);
    e->value = S(v);
    b->meta[b->m.n_metadata_props++] = e;
}

/* Serialised model (malloc'd). */
static uint8_t *mb_pack(mb *b, size_t *len)
{
    *len = onnx__model_proto__get_packed_size(&b->m);
    uint8_t *buf = malloc(*len + 1);
    assert_non_null(buf);
    assert_int_equal(onnx__model_proto__pack(&b->m, buf), *len);
    return buf;
}

/* Loads the builder's model from memory; returns the error code. */
static vx_err load_mb(mb *b, int optimize, vx_nn_model **m)
{
    size_t len;
    uint8_t *buf = mb_pack(b, &len);
    vx_nn_load_opts o = {optimize};
    vx_err e = vx_nn_model_load_onnx_mem(buf, len, &o, m);
    free(buf);
    return e;
}

/* Expects the load to fail with `code` and a message containing each of
 * the NULL-terminated strings. */
static void expect_fail(mb *b, vx_err code, ...)
{
    vx_nn_model *m = NULL;
    vx_err e = load_mb(b, 1, &m);
    if (e != code)
        print_error("expected error %d, got %d: %s\n", code, e, e ? vx_last_error() : "(loaded)");
    assert_int_equal(e, code);
    assert_null(m);
    va_list ap;
    va_start(ap, code);
    for (const char *s; (s = va_arg(ap, const char *));) {
        if (!strstr(vx_last_error(), s))
            print_error("message '%s' lacks '%s'\n", vx_last_error(), s);
        assert_non_null(strstr(vx_last_error(), s));
    }
    va_end(ap);
}

static const int64_t d_x[4] = {1, 2, 5, 5};

/* x [1,2,5,5] -> Conv 3x3 (3 channels, pads 1, bias) -> y */
static mb *conv_model(int opset)
{
    mb *b = mb_new(opset);
    mb_input(b, "x", 4, d_x);
    float w[3 * 2 * 9], bias[3] = {0.5f, -0.25f, 0.125f};
    for (int i = 0; i < 54; i++)
        w[i] = (float)((i * 7) % 11 - 5) / 8.0f;
    int64_t wd[4] = {3, 2, 3, 3}, bd[1] = {3}, pads[4] = {1, 1, 1, 1};
    mb_f32(b, "w", 4, wd, w);
    mb_f32(b, "b", 1, bd, bias);
    Onnx__NodeProto *n = mb_node(b, "Conv", "conv0", "x,w,b", "y");
    attr_ints(n, "pads", 4, pads);
    mb_output(b, "y");
    return b;
}

static double run_rel(const vx_nn_model *a, const vx_nn_model *b, vx_nn_backend ba, vx_nn_backend bb)
{
    vx_nn_engine_opts oa = {.backend = ba, .threads = 1}, ob = {.backend = bb, .threads = 1};
    vx_nn_engine *ea, *eb;
    assert_int_equal(vx_nn_engine_create(a, &oa, &ea), VX_OK);
    assert_int_equal(vx_nn_engine_create(b, &ob, &eb), VX_OK);
    for (int i = 0; i < vx_nn_model_input_count(a); i++) {
        vx_nn_tensor_info t;
        vx_nn_model_input_info(a, i, &t);
        size_t n = 1;
        for (int k = 0; k < t.rank; k++)
            n *= (size_t)t.dims[k];
        for (size_t k = 0; k < n; k++)
            vx_nn_engine_input(ea, i)[k] = vx_nn_engine_input(eb, i)[k] =
                (float)((k * 37) % 19) / 9.0f - 1.0f;
    }
    assert_int_equal(vx_nn_engine_run(ea), VX_OK);
    assert_int_equal(vx_nn_engine_run(eb), VX_OK);
    double worst = 0;
    for (int o = 0; o < vx_nn_model_output_count(a); o++) {
        vx_nn_tensor_info t;
        vx_nn_model_output_info(a, o, &t);
        size_t n = 1;
        for (int k = 0; k < t.rank; k++)
            n *= (size_t)t.dims[k];
        double md = 0, mx = 0;
        for (size_t k = 0; k < n; k++) {
            double x = vx_nn_engine_output(ea, o)[k], y = vx_nn_engine_output(eb, o)[k];
            md = fmax(md, fabs(x - y));
            mx = fmax(mx, fabs(y));
        }
        worst = fmax(worst, mx > 0 ? md / mx : md);
    }
    vx_nn_engine_destroy(ea);
    vx_nn_engine_destroy(eb);
    return worst;
}

static int count_op(const vx_nn_model *m, vx_op op)
{
    int c = 0;
    for (int i = 0; i < m->g->nn; i++)
        c += m->g->n[i].op == op;
    return c;
}

static int teardown(void **state)
{
    (void)state;
    arena_free();
    return 0;
}

/* ---- mapping ------------------------------------------------------------ */

static void test_conv_loads(void **state)
{
    (void)state;
    vx_nn_model *m;
    assert_int_equal(load_mb(conv_model(13), 1, &m), VX_OK);
    vx_nn_model_stats s;
    vx_nn_model_get_stats(m, &s);
    assert_string_equal(s.format, "onnx");
    assert_int_equal(s.opset, 13);
    assert_int_equal(s.convs, 1);
    assert_int_equal(s.params, 3 * 2 * 9 + 3);
    vx_nn_tensor_info t;
    vx_nn_model_output_info(m, 0, &t);
    assert_string_equal(t.name, "y");
    assert_int_equal(t.rank, 4);
    assert_int_equal(t.dims[1], 3);
    assert_int_equal(t.dims[2], 5);
    /* Spot value: output (0, 0, 0, 0) by hand. */
    vx_nn_engine_opts o = {.backend = VX_NN_BACKEND_REF, .threads = 1};
    vx_nn_engine *e;
    assert_int_equal(vx_nn_engine_create(m, &o, &e), VX_OK);
    for (int i = 0; i < 50; i++)
        vx_nn_engine_input(e, 0)[i] = (float)i / 10.0f;
    assert_int_equal(vx_nn_engine_run(e), VX_OK);
    double want = 0.5;
    for (int c = 0; c < 2; c++)
        for (int ky = 1; ky < 3; ky++)
            for (int kx = 1; kx < 3; kx++) {
                int wi = ((0 * 2 + c) * 3 + ky) * 3 + kx;
                want +=
                    (double)((wi * 7) % 11 - 5) / 8.0 * (double)((c * 25 + (ky - 1) * 5 + (kx - 1)) / 10.0);
            }
    assert_true(fabs(vx_nn_engine_output(e, 0)[0] - want) < 1e-5);
    vx_nn_engine_destroy(e);
    assert_true(run_rel(m, m, VX_NN_BACKEND_CPU, VX_NN_BACKEND_REF) < 1e-5);
    vx_nn_model_destroy(m);
}

/* What torch leaves for x.view(x.shape[0], -1): folded at load, whatever
 * the optimisation level. */
static void test_shape_subgraph_folded(void **state)
{
    (void)state;
    mb *b = mb_new(13);
    int64_t d[4] = {-1, 3, 4, 4}, zero = 0, ax[1] = {0}, minus1[1] = {-1};
    mb_input(b, "x", 4, d);
    mb_init(b, tensor("i0", ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 0, NULL, &zero, 8));
    mb_i64(b, "axes", 1, ax);
    mb_i64(b, "m1", 1, minus1);
    mb_node(b, "Shape", "shape", "x", "s");
    mb_node(b, "Gather", "gather", "s,i0", "b0");
    mb_node(b, "Unsqueeze", "unsq", "b0,axes", "b1");
    attr_i(mb_node(b, "Concat", "cat", "b1,m1", "target"), "axis", 0);
    mb_node(b, "Reshape", "reshape", "x,target", "flat");
    mb_node(b, "Relu", "relu", "flat", "y");
    mb_output(b, "y");
    vx_nn_model *m;
    assert_int_equal(load_mb(b, 0, &m), VX_OK);
    for (int i = 0; i < m->g->nn; i++)
        assert_true(m->g->n[i].op == VX_OP_RESHAPE || m->g->n[i].op == VX_OP_RELU);
    vx_nn_tensor_info t;
    vx_nn_model_input_info(m, 0, &t);
    assert_int_equal(t.dims[0], 1); /* dynamic batch -> 1 */
    vx_nn_model_output_info(m, 0, &t);
    assert_int_equal(t.rank, 2);
    assert_int_equal(t.dims[1], 48);
    vx_nn_model_destroy(m);
}

/* SiLU (Sigmoid * Mul) and HardSwish become convolution post-ops; the
 * optimised graph computes what the unoptimised one does, on both backends. */
static mb *silu_model(void)
{
    mb *b = conv_model(17);
    b->nodes[0]->output[0] = S("c");
    mb_node(b, "Sigmoid", "sig", "c", "s");
    mb_node(b, "Mul", "silu", "c,s", "h");
    float w2[3 * 3] = {0.5f, -1, 0.25f, 1, 0.75f, -0.5f, 0.1f, 0.2f, -0.3f};
    int64_t wd[4] = {3, 3, 1, 1};
    mb_f32(b, "w2", 4, wd, w2);
    mb_node(b, "Conv", "conv1", "h,w2", "c2");
    mb_node(b, "HardSwish", "hsw", "c2", "y");
    return b;
}

static void test_silu_fused(void **state)
{
    (void)state;
    vx_nn_model *m, *m0;
    assert_int_equal(load_mb(silu_model(), 1, &m), VX_OK);
    assert_int_equal(load_mb(silu_model(), 0, &m0), VX_OK);
    assert_int_equal(m->g->nn, 2);
    assert_int_equal(count_op(m, VX_OP_CONV), 2);
    const vx_conv_attr *c0 = &m->g->n[0].a.conv, *c1 = &m->g->n[1].a.conv;
    assert_int_equal(c0->n_post, 1);
    assert_int_equal(c0->post[0].act, VX_ACT_SWISH);
    assert_int_equal(c1->n_post, 1);
    assert_int_equal(c1->post[0].act, VX_ACT_HARDSWISH);
    assert_true(run_rel(m, m0, VX_NN_BACKEND_REF, VX_NN_BACKEND_REF) < 1e-6);
    /* The cpu backend must map both activations (oneDNN swish, hardswish). */
    assert_true(run_rel(m, m0, VX_NN_BACKEND_CPU, VX_NN_BACKEND_REF) < 1e-5);
    vx_nn_model_destroy(m);
    vx_nn_model_destroy(m0);
}

static void test_metadata_and_names(void **state)
{
    (void)state;
    mb *b = conv_model(17);
    b->nodes[0]->output[0] = S("c");
    mb_node(b, "Identity", "id", "c", "output0");
    b->outs[0]->name = S("output0");
    mb_meta(b, "names", "{0: 'person', 1: 'bicycle', 2: 'car'}");
    mb_meta(b, "stride", "32");
    mb_meta(b, "task", "detect");
    vx_nn_model *m;
    assert_int_equal(load_mb(b, 1, &m), VX_OK);
    assert_string_equal(vx_nn_model_metadata(m, "stride"), "32");
    assert_string_equal(vx_nn_model_metadata(m, "names"), "{0: 'person', 1: 'bicycle', 2: 'car'}");
    assert_null(vx_nn_model_metadata(m, "imgsz"));
    assert_int_equal(vx_nn_model_metadata_count(m), 3);
    const char *k, *v;
    vx_nn_model_metadata_entry(m, 2, &k, &v);
    assert_string_equal(k, "task");
    assert_string_equal(v, "detect");
    vx_nn_model_metadata_entry(m, 3, &k, &v);
    assert_null(k);
    assert_int_equal(vx_nn_model_find_output(m, "output0"), 0);
    vx_nn_model_destroy(m);
}

static void test_opset_range(void **state)
{
    (void)state;
    vx_nn_model *m;
    expect_fail(conv_model(10), VX_ERR_UNSUPPORTED, "opset 10", "11 to 21", NULL);
    expect_fail(conv_model(22), VX_ERR_UNSUPPORTED, "opset 22", NULL);
    assert_int_equal(load_mb(conv_model(11), 1, &m), VX_OK);
    vx_nn_model_destroy(m);
    assert_int_equal(load_mb(conv_model(21), 1, &m), VX_OK);
    vx_nn_model_destroy(m);
    mb *b = conv_model(13);
    b->m.n_opset_import = 0;
    expect_fail(b, VX_ERR_FORMAT, "opset_import", NULL);
}

static void test_dynamic_dims(void **state)
{
    (void)state;
    mb *b = conv_model(13);
    int64_t sym[4] = {1, 2, -1, 5};
    b->ins[0] = value_info("x", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 4, sym);
    expect_fail(b, VX_ERR_UNSUPPORTED, "'x' dimension 2 is symbolic", "'size'", NULL);
    b = conv_model(13);
    b->ins[0] = value_info("x", ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 4, d_x);
    expect_fail(b, VX_ERR_UNSUPPORTED, "INT64", NULL);
}

/* The same values through every initializer encoding: raw float16, typed
 * float16 (int32_data), raw int32 and typed int64 (through Cast), typed
 * float and double. */
static void test_initializer_encodings(void **state)
{
    (void)state;
    mb *b = mb_new(13);
    int64_t d[2] = {1, 4}, d4[1] = {4};
    mb_input(b, "x", 2, d);
    const float vals[4] = {1.5f, -2.0f, 0.25f, 3.0f};
    uint16_t h[4] = {0x3e00, 0xc000, 0x3400, 0x4200}; /* the same in IEEE half */
    mb_init(b, tensor("h_raw", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16, 1, d4, h, 8));
    Onnx__TensorProto *ht =
        mb_init(b, tensor("h_typed", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16, 1, d4, NULL, 0));
    ht->n_int32_data = 4;
    ht->int32_data = A(16);
    for (int i = 0; i < 4; i++)
        ht->int32_data[i] = h[i];
    int32_t i32[4] = {3, -4, 5, 6};
    mb_init(b, tensor("i32", ONNX__TENSOR_PROTO__DATA_TYPE__INT32, 1, d4, i32, 16));
    Onnx__TensorProto *it = mb_init(b, tensor("i64", ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 1, d4, NULL, 0));
    it->n_int64_data = 4;
    it->int64_data = A(32);
    for (int i = 0; i < 4; i++)
        it->int64_data[i] = -i32[i];
    Onnx__TensorProto *ft = mb_init(b, tensor("f", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 1, d4, NULL, 0));
    ft->n_float_data = 4;
    ft->float_data = A(16);
    memcpy(ft->float_data, vals, 16);
    Onnx__TensorProto *dt = mb_init(b, tensor("d", ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE, 1, d4, NULL, 0));
    dt->n_double_data = 4;
    dt->double_data = A(32);
    for (int i = 0; i < 4; i++)
        dt->double_data[i] = vals[i];
    attr_i(mb_node(b, "Cast", "c32", "i32", "i32f"), "to", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
    attr_i(mb_node(b, "Cast", "c64", "i64", "i64f"), "to", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
    /* y = x*h_raw + h_typed + i32 + i64 (= 0) + f - d (= 0) */
    mb_node(b, "Mul", "m", "x,h_raw", "a");
    mb_node(b, "Add", "a1", "a,h_typed", "a2");
    mb_node(b, "Add", "a2", "a2,i32f", "a3");
    mb_node(b, "Add", "a3", "a3,i64f", "a4");
    mb_node(b, "Add", "a4", "a4,f", "a5");
    mb_node(b, "Sub", "a5", "a5,d", "y");
    mb_output(b, "y");
    vx_nn_model *m;
    assert_int_equal(load_mb(b, 1, &m), VX_OK);
    vx_nn_engine *e;
    vx_nn_engine_opts o = {.backend = VX_NN_BACKEND_REF, .threads = 1};
    assert_int_equal(vx_nn_engine_create(m, &o, &e), VX_OK);
    const float x[4] = {2, 3, -4, 0.5f};
    memcpy(vx_nn_engine_input(e, 0), x, sizeof x);
    assert_int_equal(vx_nn_engine_run(e), VX_OK);
    for (int i = 0; i < 4; i++)
        assert_true(fabsf(vx_nn_engine_output(e, 0)[i] - (x[i] * vals[i] + vals[i])) < 1e-6f);
    vx_nn_engine_destroy(e);
    vx_nn_model_destroy(m);
}

/* ---- external data ------------------------------------------------------ */

static char tmpdir[256];

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void set_external(Onnx__TensorProto *t, const char *loc, const char *off, const char *len)
{
    t->has_raw_data = 0;
    t->has_data_location = 1;
    t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    t->external_data = A(sizeof(void *) * 3);
    const char *keys[3] = {"location", "offset", "length"}, *vals[3] = {loc, off, len};
    for (int i = 0; i < 3; i++) {
        if (!vals[i])
            continue;
        Onnx__StringStringEntryProto *e = A(sizeof *e);
        onnx__string_string_entry_proto__init(e);
        e->key = S(keys[i]);
        e->value = S(vals[i]);
        t->external_data[t->n_external_data++] = e;
    }
}

/* Writes conv_model with its weights external (at `loc`, `off`, `len`)
 * into tmpdir/sub/model.onnx and loads it. */
static vx_err load_external(const char *loc, const char *off, const char *len, vx_nn_model **m)
{
    mb *b = conv_model(13);
    set_external(b->inits[0], loc, off, len);
    size_t n;
    uint8_t *buf = mb_pack(b, &n);
    char path[512];
    snprintf(path, sizeof path, "%s/sub/model.onnx", tmpdir);
    write_file(path, buf, n);
    free(buf);
    return vx_nn_model_load(path, NULL, m);
}

static void test_external_data(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/sub", tmpdir);
    mkdir(path, 0700);
    /* 100 bytes of padding, then the weights. */
    mb *ref = conv_model(13);
    uint8_t blob[100 + 216] = {0};
    memcpy(blob + 100, ref->inits[0]->raw_data.data, 216);
    snprintf(path, sizeof path, "%s/sub/w.bin", tmpdir);
    write_file(path, blob, sizeof blob);
    snprintf(path, sizeof path, "%s/outside.bin", tmpdir);
    write_file(path, blob, sizeof blob);

    vx_nn_model *m, *m0;
    assert_int_equal(load_external("w.bin", "100", "216", &m), VX_OK);
    assert_int_equal(load_mb(conv_model(13), 1, &m0), VX_OK);
    assert_true(run_rel(m, m0, VX_NN_BACKEND_REF, VX_NN_BACKEND_REF) == 0);
    vx_nn_model_destroy(m);
    vx_nn_model_destroy(m0);
    assert_int_equal(load_external("./w.bin", "100", NULL, &m), VX_OK);
    vx_nn_model_destroy(m);

    assert_int_equal(load_external("../outside.bin", "100", "216", &m), VX_ERR_FORMAT);
    assert_non_null(strstr(vx_last_error(), "outside the model's folder"));
    assert_int_equal(load_external("/etc/passwd", NULL, NULL, &m), VX_ERR_FORMAT);
    assert_non_null(strstr(vx_last_error(), "absolute"));
    assert_int_equal(load_external("w.bin", "200", "216", &m), VX_ERR_FORMAT);
    assert_non_null(strstr(vx_last_error(), "holds 316 bytes"));
    assert_int_equal(load_external("w.bin", "0", "200", &m), VX_ERR_FORMAT);
    assert_non_null(strstr(vx_last_error(), "length 200"));
    assert_int_equal(load_external("w.bin", "-5", NULL, &m), VX_ERR_FORMAT);
    assert_int_equal(load_external("missing.bin", NULL, NULL, &m), VX_ERR_IO);
    assert_non_null(strstr(vx_last_error(), "missing.bin"));
    assert_int_equal(load_external("", NULL, NULL, &m), VX_ERR_FORMAT);
    /* From memory there is no folder to read from. */
    mb *b = conv_model(13);
    set_external(b->inits[0], "w.bin", NULL, NULL);
    expect_fail(b, VX_ERR_UNSUPPORTED, "external data needs a model file", NULL);
}

/* ---- bad input ---------------------------------------------------------- */

static void test_truncated(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = mb_pack(silu_model(), &len);
    int failed = 0;
    for (size_t n = 0; n < len; n++) {
        /* A copy of exactly n bytes, so ASan sees any read past it. */
        uint8_t *p = malloc(n ? n : 1);
        memcpy(p, buf, n);
        vx_nn_model *m = NULL;
        vx_err e = vx_nn_model_load_onnx_mem(p, n, NULL, &m);
        if (e) {
            failed++;
            assert_true(strlen(vx_last_error()) > 10);
        }
        vx_nn_model_destroy(m);
        free(p);
    }
    /* Nearly every prefix cuts a field or loses the graph's outputs. */
    assert_true(failed > (int)len * 9 / 10);
    /* The same through a file. */
    char path[512];
    snprintf(path, sizeof path, "%s/trunc.onnx", tmpdir);
    write_file(path, buf, len / 2);
    vx_nn_model *m;
    assert_int_not_equal(vx_nn_model_load(path, NULL, &m), VX_OK);
    assert_non_null(strstr(vx_last_error(), "trunc.onnx"));
    free(buf);
}

static void test_wrong_magic(void **state)
{
    (void)state;
    static const char *const junk[] = {"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "GIF89a", "\xff\xd8\xff\xe0",
                                       "PK\x03\x04",
                                       "\x7f"
                                       "ELF\x02\x01\x01"};
    vx_nn_model *m;
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        assert_int_equal(vx_nn_model_load_onnx_mem((const uint8_t *)junk[i], strlen(junk[i]) + 1, NULL, &m),
                         VX_ERR_FORMAT);
        assert_non_null(strstr(vx_last_error(), "not an ONNX model"));
    }
    /* Valid protobuf, but not a model: no graph. */
    const uint8_t noise[] = {0x08, 0x07, 0x12, 0x03, 'a', 'b', 'c'};
    assert_int_equal(vx_nn_model_load_onnx_mem(noise, sizeof noise, NULL, &m), VX_ERR_FORMAT);
    assert_non_null(strstr(vx_last_error(), "no graph"));
    assert_int_equal(vx_nn_model_load_onnx_mem(noise, 0, NULL, &m), VX_ERR_FORMAT);
    /* Files: by extension to the ONNX loader, else an unknown format. */
    char path[512];
    snprintf(path, sizeof path, "%s/junk.onnx", tmpdir);
    write_file(path, junk[0], 16);
    assert_int_equal(vx_nn_model_load(path, NULL, &m), VX_ERR_FORMAT);
    assert_non_null(strstr(vx_last_error(), "not an ONNX model"));
    snprintf(path, sizeof path, "%s/junk.bin", tmpdir);
    write_file(path, junk[0], 16);
    assert_int_equal(vx_nn_model_load(path, NULL, &m), VX_ERR_FORMAT);
    assert_non_null(strstr(vx_last_error(), "unknown model format"));
    /* Content detection without the extension. */
    size_t len;
    uint8_t *buf = mb_pack(conv_model(13), &len);
    snprintf(path, sizeof path, "%s/model.pb", tmpdir);
    write_file(path, buf, len);
    free(buf);
    assert_int_equal(vx_nn_model_load(path, NULL, &m), VX_OK);
    vx_nn_model_destroy(m);
}

static void test_cycle(void **state)
{
    (void)state;
    mb *b = mb_new(13);
    int64_t d[2] = {1, 4};
    mb_input(b, "x", 2, d);
    mb_node(b, "Add", "first", "x,b", "a");
    mb_node(b, "Relu", "second", "a", "b");
    mb_output(b, "b");
    expect_fail(b, VX_ERR_FORMAT, "cycle", NULL);
    b = mb_new(13);
    mb_input(b, "x", 2, d);
    mb_node(b, "Relu", "self", "y", "y");
    mb_output(b, "y");
    expect_fail(b, VX_ERR_FORMAT, "cycle", "self", NULL);
    /* Nodes out of order are fine. */
    b = mb_new(13);
    mb_input(b, "x", 2, d);
    mb_node(b, "Relu", "late", "a", "y");
    mb_node(b, "Sigmoid", "early", "x", "a");
    mb_output(b, "y");
    vx_nn_model *m;
    assert_int_equal(load_mb(b, 1, &m), VX_OK);
    vx_nn_model_destroy(m);
}

static void test_bad_references(void **state)
{
    (void)state;
    mb *b = conv_model(13);
    mb_node(b, "Relu", "r", "nope", "z");
    expect_fail(b, VX_ERR_FORMAT, "'nope'", "not produced", NULL);
    b = conv_model(13);
    mb_node(b, "Relu", "again", "x", "y");
    expect_fail(b, VX_ERR_FORMAT, "'y'", "defined twice", NULL);
    b = conv_model(13);
    b->outs[0]->name = S("ghost");
    expect_fail(b, VX_ERR_FORMAT, "'ghost'", NULL);
    b = conv_model(13);
    b->nodes[0]->n_input = 1; /* Conv without weights */
    expect_fail(b, VX_ERR_FORMAT, "conv0", "1 inputs", NULL);
    b = conv_model(13);
    mb_f32(b, "w", 0, NULL, (const float[]){1});
    expect_fail(b, VX_ERR_FORMAT, "initializer 'w' is defined twice", NULL);
}

static void test_data_size_mismatch(void **state)
{
    (void)state;
    mb *b = conv_model(13);
    b->inits[0]->raw_data.len = 100;
    expect_fail(b, VX_ERR_FORMAT, "tensor 'w'", "100 data bytes", "216 bytes", NULL);
    b = conv_model(13);
    Onnx__TensorProto *t = b->inits[1];
    t->has_raw_data = 0;
    t->n_float_data = 2;
    t->float_data = A(8);
    expect_fail(b, VX_ERR_FORMAT, "tensor 'b'", "2 values for a shape of 3 elements", NULL);
    b = conv_model(13);
    b->inits[1]->raw_data.len = 0; /* raw_data present but empty: not the typed fields either */
    b->inits[1]->raw_data.data = NULL;
    expect_fail(b, VX_ERR_FORMAT, "tensor 'b'", "0 data bytes", NULL);
    b = conv_model(13);
    b->inits[1]->has_raw_data = 0; /* no data at all */
    expect_fail(b, VX_ERR_FORMAT, "tensor 'b'", "0 values", NULL);
    b = conv_model(13);
    b->inits[1]->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__STRING;
    expect_fail(b, VX_ERR_UNSUPPORTED, "STRING", NULL);
    /* Weights of the wrong shape for the convolution. */
    b = conv_model(13);
    b->inits[1]->dims[0] = 2;
    b->inits[1]->raw_data.len = 8;
    expect_fail(b, VX_ERR_FORMAT, "bias", NULL);
}

static void test_absurd_dims(void **state)
{
    (void)state;
    mb *b = conv_model(13);
    int64_t huge[3] = {1 << 20, 1 << 20, 4};
    mb_init(b, tensor("big", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 3, huge, "", 0));
    expect_fail(b, VX_ERR_FORMAT, "'big'", "2^31", NULL);
    b = conv_model(13);
    int64_t neg[1] = {-3};
    mb_init(b, tensor("neg", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 1, neg, "", 0));
    expect_fail(b, VX_ERR_FORMAT, "negative dimension", NULL);
    b = conv_model(13);
    int64_t in[4] = {1, 2, 1 << 17, 1 << 17};
    b->ins[0] = value_info("x", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 4, in);
    expect_fail(b, VX_ERR_FORMAT, "2^31", NULL);
    b = conv_model(13);
    int64_t rank9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    b->ins[0] = value_info("x", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 9, rank9);
    expect_fail(b, VX_ERR_UNSUPPORTED, "rank 9", NULL);
    /* A small file asking for a huge constant. */
    b = conv_model(13);
    int64_t shp[3] = {1 << 16, 1 << 16, 1 << 10};
    mb_i64(b, "shape", 3, shp);
    mb_node(b, "ConstantOfShape", "cos", "shape", "z");
    expect_fail(b, VX_ERR_UNSUPPORTED, "cos", "not materialised", NULL);
    /* ... or a huge activation. */
    b = conv_model(13);
    b->nodes[0]->output[0] = S("c");
    float sc[4] = {1, 1, 40000, 40000};
    int64_t d4[1] = {4};
    mb_f32(b, "scales", 1, d4, sc);
    mb_node(b, "Resize", "up", "c,,scales", "y");
    expect_fail(b, VX_ERR_FORMAT, "up", NULL);
    b = conv_model(13);
    b->nodes[0]->output[0] = S("c");
    int64_t tgt[4] = {1 << 15, 1 << 15, 1 << 15, 0};
    mb_i64(b, "tgt", 4, tgt);
    mb_node(b, "Reshape", "rs", "c,tgt", "y");
    expect_fail(b, VX_ERR_FORMAT, "rs", NULL);
}

/* Constants are evaluated at load only up to a work budget: a small file
 * asking for a 2048^3 constant matmul must not stall the load. */
static void test_fold_budget(void **state)
{
    (void)state;
    mb *b = mb_new(13);
    int64_t d[2] = {2048, 2048};
    mb_input(b, "x", 2, d);
    mb_i64(b, "shape", 2, d);
    mb_node(b, "ConstantOfShape", "ones", "shape", "c");
    mb_node(b, "MatMul", "square", "c,c", "cc");
    mb_node(b, "Add", "add", "x,cc", "y");
    mb_output(b, "y");
    vx_nn_model *m;
    assert_int_equal(load_mb(b, 1, &m), VX_OK);
    assert_int_equal(count_op(m, VX_OP_MATMUL), 1); /* left for inference */
    vx_nn_model_destroy(m);
}

static void test_unknown_op(void **state)
{
    (void)state;
    mb *b = conv_model(17);
    b->nodes[0]->output[0] = S("c");
    mb_node(b, "FooBar", "mystery_node", "c", "y");
    expect_fail(b, VX_ERR_UNSUPPORTED, "FooBar", "mystery_node", "opset 17", NULL);
    b = conv_model(17);
    b->nodes[0]->output[0] = S("c");
    mb_node(b, "Relu", "ms_node", "c", "y")->domain = S("com.microsoft");
    expect_fail(b, VX_ERR_UNSUPPORTED, "com.microsoft", "ms_node", NULL);
    /* Unsupported attribute values name the node too. */
    b = conv_model(17);
    b->nodes[0]->output[0] = S("c");
    attr_s(mb_node(b, "Resize", "cubic_up", "c,,sc", "y"), "mode", "cubic");
    float sc[4] = {1, 1, 2, 2};
    int64_t d4[1] = {4};
    mb_f32(b, "sc", 1, d4, sc);
    expect_fail(b, VX_ERR_UNSUPPORTED, "cubic_up", "cubic", NULL);
    b = conv_model(17);
    attr_s(b->nodes[0], "auto_pad", "SIDEWAYS");
    expect_fail(b, VX_ERR_FORMAT, "conv0", "SIDEWAYS", NULL);
    b = conv_model(17);
    attr_f(b->nodes[0], "group", 2.0f); /* wrong attribute type */
    expect_fail(b, VX_ERR_FORMAT, "'group'", NULL);
}

/* Graph -> node -> attribute -> graph -> ... nested 2000 deep: refused
 * before the parser recurses into it. */
static void test_deep_nesting(void **state)
{
    (void)state;
    size_t cap = 1 << 16, len = 0;
    uint8_t *buf = malloc(cap), *tmp = malloc(cap);
    for (int level = 0; level < 2000; level++) {
        /* Wrap buf: GraphProto{node: NodeProto{attribute: AttributeProto{g: buf}}} */
        static const uint8_t tags[3] = {0x32 /* Attribute.g (6) */, 0x2a /* Node.attribute (5) */,
                                        0x0a /* Graph.node (1) */};
        for (int k = 0; k < 3; k++) {
            size_t o = 0;
            tmp[o++] = tags[k];
            size_t v = len;
            do {
                tmp[o++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
                v >>= 7;
            } while (v);
            assert_true(o + len <= cap);
            memcpy(tmp + o, buf, len);
            memcpy(buf, tmp, o + len);
            len += o;
        }
    }
    /* ModelProto.graph (7) */
    memmove(buf + 4, buf, len);
    buf[0] = 0x3a;
    buf[1] = (uint8_t)((len & 0x7f) | 0x80);
    buf[2] = (uint8_t)(((len >> 7) & 0x7f) | 0x80);
    buf[3] = (uint8_t)(len >> 14);
    vx_nn_model *m;
    assert_int_equal(vx_nn_model_load_onnx_mem(buf, len + 4, NULL, &m), VX_ERR_FORMAT);
    assert_non_null(strstr(vx_last_error(), "nested too deeply"));
    /* A length prefix claiming more than the file holds. */
    const uint8_t lie[] = {0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x0a, 0x00};
    assert_int_equal(vx_nn_model_load_onnx_mem(lie, sizeof lie, NULL, &m), VX_ERR_FORMAT);
    assert_non_null(strstr(vx_last_error(), "runs past"));
    free(buf);
    free(tmp);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/vx-test-onnx-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        print_error("mkdtemp failed\n");
        return -1;
    }
    return 0;
}

static int cleanup(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd))
        print_error("could not remove %s\n", tmpdir);
    free(arena);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_conv_loads, teardown),
        cmocka_unit_test_teardown(test_shape_subgraph_folded, teardown),
        cmocka_unit_test_teardown(test_silu_fused, teardown),
        cmocka_unit_test_teardown(test_metadata_and_names, teardown),
        cmocka_unit_test_teardown(test_opset_range, teardown),
        cmocka_unit_test_teardown(test_dynamic_dims, teardown),
        cmocka_unit_test_teardown(test_initializer_encodings, teardown),
        cmocka_unit_test_teardown(test_external_data, teardown),
        cmocka_unit_test_teardown(test_truncated, teardown),
        cmocka_unit_test_teardown(test_wrong_magic, teardown),
        cmocka_unit_test_teardown(test_cycle, teardown),
        cmocka_unit_test_teardown(test_bad_references, teardown),
        cmocka_unit_test_teardown(test_data_size_mismatch, teardown),
        cmocka_unit_test_teardown(test_absurd_dims, teardown),
        cmocka_unit_test_teardown(test_fold_budget, teardown),
        cmocka_unit_test_teardown(test_unknown_op, teardown),
        cmocka_unit_test_teardown(test_deep_nesting, teardown),
    };
    return cmocka_run_group_tests(tests, setup, cleanup);
}
