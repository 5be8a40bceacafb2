/*
 * Engine files: exact round trips (graph, constants, INT8 ranges, FP32-kept
 * nodes, metadata; bitwise-equal outputs on the ref backend) for NanoDet
 * (TFJS) and the ONNX fixtures; weights stored in their run precision; and
 * files that must be refused -- corrupt, truncated, another version or CPU
 * ISA, crafted payloads with valid checksums -- with a clear message and no
 * crash; atomic writes that leave nothing behind.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "nn/engine_internal.h"

static char nanodet_path[1024];
static char fixtures[1024];
static char tmpdir[256];

/* ---- helpers ----------------------------------------------------------- */

static char *dump_of(const vx_nn_model *m)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    vx_nn_model_dump(m, f);
    fclose(f);
    return text;
}

/* Everything the IR holds, field by field. */
static void assert_same_graph(const vx_graph *a, const vx_graph *b, int exact_data)
{
    assert_string_equal(a->format, b->format);
    assert_int_equal(a->opset, b->opset);
    assert_int_equal(a->nt, b->nt);
    assert_int_equal(a->nn, b->nn);
    for (int i = 0; i < a->nt; i++) {
        const vx_tensor *x = &a->t[i], *y = &b->t[i];
        assert_string_equal(x->name, y->name);
        assert_int_equal(x->dtype, y->dtype);
        assert_int_equal(x->rank, y->rank);
        for (int k = 0; k < x->rank; k++)
            assert_true(x->dims[k] == y->dims[k]);
        assert_true(x->amax == y->amax && x->amin == y->amin);
        assert_int_equal(x->producer, y->producer);
        assert_int_equal(x->graph_input, y->graph_input);
        assert_int_equal(x->graph_output, y->graph_output);
        assert_int_equal(!x->data, !y->data);
        if (x->data && exact_data)
            assert_memory_equal(x->data, y->data,
                                (size_t)vx_tensor_elems(x) * (x->dtype == VX_DT_F32 ? 4 : 8));
    }
    for (int i = 0; i < a->nn; i++) {
        const vx_node *x = &a->n[i], *y = &b->n[i];
        assert_int_equal(x->op, y->op);
        assert_string_equal(x->name, y->name);
        assert_int_equal(x->n_in, y->n_in);
        assert_int_equal(x->n_out, y->n_out);
        assert_memory_equal(x->in, y->in, sizeof(int) * (size_t)x->n_in);
        assert_memory_equal(x->out, y->out, sizeof(int) * (size_t)x->n_out);
        assert_int_equal(x->keep_fp32, y->keep_fp32);
        assert_true(x->quant_err == y->quant_err);
        if (x->op == VX_OP_SPLIT) {
            assert_int_equal(x->a.split.axis, y->a.split.axis);
            assert_int_equal(x->a.split.n, y->a.split.n);
            assert_memory_equal(x->a.split.sizes, y->a.split.sizes, sizeof(int64_t) * (size_t)x->a.split.n);
        } else {
            /* Nodes are zeroed when created and the union written field by
             * field, so equal attributes are equal bytes. */
            assert_memory_equal(&x->a, &y->a, sizeof x->a);
        }
    }
    assert_int_equal(a->n_inputs, b->n_inputs);
    assert_memory_equal(a->inputs, b->inputs, sizeof(int) * (size_t)a->n_inputs);
    assert_int_equal(a->n_outputs, b->n_outputs);
    for (int i = 0; i < a->n_outputs; i++) {
        assert_int_equal(a->outputs[i], b->outputs[i]);
        assert_string_equal(a->out_names[i], b->out_names[i]);
    }
    assert_int_equal(a->n_meta, b->n_meta);
    for (int i = 0; i < a->n_meta; i++) {
        assert_string_equal(a->meta_keys[i], b->meta_keys[i]);
        assert_string_equal(a->meta_values[i], b->meta_values[i]);
    }
}

static uint32_t rng = 12345;
static float frand(void)
{
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) & 0xffff) / 65536.0f;
}

/* Same random input into both ref engines; outputs must be bitwise equal. */
static void assert_same_outputs(const vx_nn_model *a, const vx_nn_model *b)
{
    vx_nn_engine_opts o = {.backend = VX_NN_BACKEND_REF, .threads = 1};
    vx_nn_engine *ea, *eb;
    assert_int_equal(vx_nn_engine_create(a, &o, &ea), VX_OK);
    assert_int_equal(vx_nn_engine_create(b, &o, &eb), VX_OK);
    for (int i = 0; i < vx_nn_model_input_count(a); i++) {
        vx_nn_tensor_info ti;
        vx_nn_model_input_info(a, i, &ti);
        size_t n = 1;
        for (int k = 0; k < ti.rank; k++)
            n *= (size_t)ti.dims[k];
        float *x = vx_nn_engine_input(ea, i), *y = vx_nn_engine_input(eb, i);
        for (size_t k = 0; k < n; k++)
            x[k] = y[k] = frand() * 2.0f - 0.5f;
    }
    assert_int_equal(vx_nn_engine_run(ea), VX_OK);
    assert_int_equal(vx_nn_engine_run(eb), VX_OK);
    for (int i = 0; i < vx_nn_model_output_count(a); i++) {
        vx_nn_tensor_info ti;
        vx_nn_model_output_info(a, i, &ti);
        size_t n = 1;
        for (int k = 0; k < ti.rank; k++)
            n *= (size_t)ti.dims[k];
        assert_memory_equal(vx_nn_engine_output(ea, i), vx_nn_engine_output(eb, i), n * sizeof(float));
    }
    vx_nn_engine_destroy(ea);
    vx_nn_engine_destroy(eb);
}

static vx_nn_engine_file_opts fp32_opts(void)
{
    vx_nn_engine_file_opts o = {.backend = VX_NN_BACKEND_CPU,
                                .precision = VX_NN_FP32,
                                .decoder = "nanodet",
                                .input_w = 416,
                                .input_h = 416};
    return o;
}

static void round_trip(const char *path, int run)
{
    vx_nn_model *m, *r;
    assert_int_equal(vx_nn_model_load(path, NULL, &m), VX_OK);
    char file[512];
    snprintf(file, sizeof file, "%s/rt.engine", tmpdir);
    vx_nn_engine_file_opts o = fp32_opts();
    o.source_path = path;
    assert_int_equal(vx_nn_engine_file_save(m, &o, file), VX_OK);
    assert_int_equal(vx_nn_is_engine_file(file), 1);
    /* Through the generic loader, as a server would. */
    assert_int_equal(vx_nn_model_load(file, NULL, &r), VX_OK);
    assert_same_graph(m->g, r->g, 1);
    char *d1 = dump_of(m), *d2 = dump_of(r);
    assert_string_equal(d1, d2);
    free(d1);
    free(d2);
    vx_nn_model_stats s1, s2;
    vx_nn_model_get_stats(m, &s1);
    vx_nn_model_get_stats(r, &s2);
    assert_int_equal(s1.nodes, s2.nodes);
    assert_true(s1.params == s2.params && s1.flops == s2.flops);
    if (run)
        assert_same_outputs(m, r);
    vx_nn_engine_file_info info;
    assert_int_equal(vx_nn_engine_file_probe(file, &info), VX_OK);
    assert_int_equal(info.precision, VX_NN_FP32);
    assert_string_equal(info.version, VX_VERSION);
    assert_string_equal(info.isa_name, vx_nn_cpu_isa_name());
    uint64_t size;
    uint32_t crc;
    assert_int_equal(vx_nn_source_fingerprint(path, &size, &crc), VX_OK);
    assert_true(info.source_size == size && info.source_crc == crc);
    vx_nn_model_destroy(r);
    vx_nn_model_destroy(m);
    unlink(file);
}

/* ---- round trips ------------------------------------------------------- */

static void test_nanodet_round_trip(void **state)
{
    (void)state;
    round_trip(nanodet_path, 1);
}

static void test_onnx_fixtures_round_trip(void **state)
{
    (void)state;
    char list[1200];
    snprintf(list, sizeof list, "%s/fixtures.txt", fixtures);
    FILE *f = fopen(list, "r");
    if (!f)
        fail_msg("%s: %s (run through ctest: the onnx_fixtures test writes it)", list, strerror(errno));
    char line[256];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0] || line[0] == '#')
            continue;
        char path[1600];
        snprintf(path, sizeof path, "%s/%s.onnx", fixtures, line);
        /* Outputs too for the small graphs and one YOLO: the ref backend
         * is slow and the bigger YOLOs add no operator the others lack. */
        int run = !strstr(line, "yolo") || !strcmp(line, "yolov5n-320-opset11");
        print_message("%s%s\n", line, run ? " (+ outputs)" : "");
        round_trip(path, run);
        n++;
    }
    fclose(f);
    assert_true(n >= 10);
}

/* INT8 ranges, FP32-kept nodes and the weight encodings survive; weights
 * come back within half a quantisation step (INT8) or a bf16 rounding. */
static void test_precision_payloads(void **state)
{
    (void)state;
    vx_nn_model *m;
    assert_int_equal(vx_nn_model_load(nanodet_path, NULL, &m), VX_OK);
    vx_graph *g = m->g;
    vx_nn_engine_file_opts o = fp32_opts();
    uint8_t *buf;
    size_t len;
    o.precision = VX_NN_INT8;
    assert_int_equal(vx_nn_engine_file_encode(m, &o, &buf, &len), VX_ERR_INVALID); /* not calibrated */
    assert_non_null(strstr(vx_last_error(), "calibrated"));
    int kept = -1;
    for (int i = 0; i < g->nt; i++)
        if (!g->t[i].data) {
            g->t[i].amax = 0.5f + (float)i / 64.0f;
            g->t[i].amin = i % 3 ? 0.0f : -0.1f * g->t[i].amax;
        }
    for (int i = 0; i < g->nn; i++)
        if (g->n[i].op == VX_OP_CONV) {
            g->n[i].quant_err = 0.001f * (float)i;
            if (kept < 0) {
                g->n[i].keep_fp32 = 1;
                kept = i;
            }
        }
    assert_true(kept >= 0);

    size_t sizes[3];
    for (int p = VX_NN_FP32; p <= VX_NN_INT8; p++) {
        o.precision = (vx_nn_precision)p;
        assert_int_equal(vx_nn_engine_file_encode(m, &o, &buf, &len), VX_OK);
        sizes[p] = len;
        vx_nn_model *r;
        vx_nn_engine_file_info info;
        assert_int_equal(vx_nn_engine_file_decode("mem", buf, len, &info, &r), VX_OK);
        free(buf);
        assert_int_equal(info.precision, p);
        assert_same_graph(g, r->g, p == VX_NN_FP32);
        int quantised = 0;
        for (int i = 0; i < g->nn; i++) {
            const vx_node *n = &g->n[i];
            if (n->op != VX_OP_CONV)
                continue;
            const vx_tensor *w = &g->t[n->in[1]], *v = &r->g->t[n->in[1]];
            int64_t oc = w->dims[0], per = vx_tensor_elems(w) / oc;
            const float *a = w->data, *b = v->data;
            /* INT8: convolutions that stay FP32 keep exact weights; the
             * quantised ones are a subset of vx_quant_conv_int8's. */
            int exact = p == VX_NN_FP32 ||
                        (p == VX_NN_INT8 &&
                         (!vx_quant_conv_int8(g, n) || !memcmp(a, b, sizeof(float) * (size_t)(oc * per))));
            if (exact) {
                assert_memory_equal(a, b, sizeof(float) * (size_t)(oc * per));
                continue;
            }
            quantised++;
            for (int64_t c = 0; c < oc; c++) {
                float amax = 0;
                for (int64_t k = 0; k < per; k++)
                    amax = fmaxf(amax, fabsf(a[c * per + k]));
                for (int64_t k = 0; k < per; k++) {
                    float x = a[c * per + k], y = b[c * per + k];
                    if (p == VX_NN_BF16)
                        assert_true(fabsf(x - y) <= fabsf(x) * (1.0f / 256.0f));
                    else
                        assert_true(fabsf(x - y) <= amax / 127.0f * 0.5f * 1.001f + 1e-30f);
                }
            }
            /* Biases (input 2) always exact. */
            if (n->n_in > 2 && n->in[2] >= 0)
                assert_memory_equal(g->t[n->in[2]].data, r->g->t[n->in[2]].data,
                                    sizeof(float) * (size_t)vx_tensor_elems(&g->t[n->in[2]]));
        }
        print_message("%s: %d convolution weights stored reduced\n", vx_nn_precision_name(o.precision),
                      quantised);
        if (p != VX_NN_FP32)
            assert_true(quantised > 20);
        vx_nn_model_destroy(r);
    }
    print_message("NanoDet engine sizes: FP32 %zu, BF16 %zu, INT8 %zu bytes\n", sizes[0], sizes[1], sizes[2]);
    assert_true(sizes[1] < sizes[0] * 6 / 10);
    assert_true(sizes[2] < sizes[0] * 4 / 10);
    vx_nn_model_destroy(m);
}

/* A calibrated model and its INT8 engine file compute bitwise the same on
 * the cpu backend: the file holds the ranges, the FP32-kept layers and the
 * int8 weights, and loading needs no re-calibration. */
static void test_int8_file_matches_memory(void **state)
{
    (void)state;
    vx_nn_model *m;
    assert_int_equal(vx_nn_model_load(nanodet_path, NULL, &m), VX_OK);
    vx_nn_tensor_info ti;
    vx_nn_model_input_info(m, 0, &ti);
    size_t n = (size_t)(ti.dims[0] * ti.dims[1] * ti.dims[2] * ti.dims[3]);
    float *x = malloc(n * sizeof(float));
    assert_non_null(x);
    vx_nn_calibrator *c;
    assert_int_equal(vx_nn_calibrator_create(m, VX_CALIB_MINMAX, 0, &c), VX_OK);
    for (int s = 0; s < 2; s++) {
        /* Smooth images (a real image's statistics matter less here than
         * exercising every tensor's range). */
        for (size_t i = 0; i < n; i++)
            x[i] = 1.5f * sinf((float)i * (0.001f + 0.0007f * (float)s)) + 0.3f * (frand() - 0.5f);
        const float *in[1] = {x};
        assert_int_equal(vx_nn_calibrator_add(c, in), VX_OK);
    }
    assert_int_equal(vx_nn_calibrator_finish(c, m), VX_OK);
    vx_nn_calibrator_destroy(c);
    assert_true(vx_nn_model_is_calibrated(m));

    vx_nn_engine_file_opts o = fp32_opts();
    o.precision = VX_NN_INT8;
    uint8_t *buf;
    size_t len;
    assert_int_equal(vx_nn_engine_file_encode(m, &o, &buf, &len), VX_OK);
    vx_nn_model *r;
    assert_int_equal(vx_nn_engine_file_decode("int8", buf, len, NULL, &r), VX_OK);
    free(buf);
    assert_same_graph(m->g, r->g, 0);
    int l8 = 0;
    for (int i = 0; i < vx_nn_model_layer_count(r); i++) {
        vx_nn_layer_info a, b;
        vx_nn_model_layer_info(m, i, &a);
        vx_nn_model_layer_info(r, i, &b);
        assert_string_equal(a.name, b.name);
        assert_int_equal(a.precision, b.precision);
        l8 += b.precision == VX_NN_INT8;
    }
    assert_true(l8 > 0);

    vx_nn_engine_opts eo = {.backend = VX_NN_BACKEND_CPU, .threads = 1, .precision = VX_NN_INT8};
    vx_nn_engine *ea, *eb;
    assert_int_equal(vx_nn_engine_create(m, &eo, &ea), VX_OK);
    assert_int_equal(vx_nn_engine_create(r, &eo, &eb), VX_OK);
    for (size_t i = 0; i < n; i++)
        x[i] = 1.2f * cosf((float)i * 0.0013f);
    memcpy(vx_nn_engine_input(ea, 0), x, n * sizeof(float));
    memcpy(vx_nn_engine_input(eb, 0), x, n * sizeof(float));
    assert_int_equal(vx_nn_engine_run(ea), VX_OK);
    assert_int_equal(vx_nn_engine_run(eb), VX_OK);
    for (int k = 0; k < vx_nn_model_output_count(m); k++) {
        vx_nn_model_output_info(m, k, &ti);
        size_t e = 1;
        for (int d = 0; d < ti.rank; d++)
            e *= (size_t)ti.dims[d];
        assert_memory_equal(vx_nn_engine_output(ea, k), vx_nn_engine_output(eb, k), e * sizeof(float));
    }
    print_message("INT8 engine from the file == INT8 engine from the calibrated model (%d INT8 layers)\n",
                  l8);
    vx_nn_engine_destroy(ea);
    vx_nn_engine_destroy(eb);
    vx_nn_model_destroy(r);
    vx_nn_model_destroy(m);
    free(x);
}

/* ---- refusals ---------------------------------------------------------- */

static uint8_t *nanodet_bytes(size_t *len)
{
    vx_nn_model *m;
    assert_int_equal(vx_nn_model_load(nanodet_path, NULL, &m), VX_OK);
    vx_nn_engine_file_opts o = fp32_opts();
    uint8_t *buf;
    assert_int_equal(vx_nn_engine_file_encode(m, &o, &buf, len), VX_OK);
    vx_nn_model_destroy(m);
    return buf;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* An independent CRC-32 (bitwise, zlib's polynomial): the crafted files
 * below carry valid checksums, so what refuses them is the real check. */
static uint32_t crc32_slow(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return ~c;
}

/* Valid checksums after a change (the fast CRC, checked against the slow
 * one in test_refusals). */
static void reseal(uint8_t *buf, size_t len)
{
    put32(buf + 208, vx_nn_crc32(0, buf + 256, len - 256));
    put32(buf + 252, vx_nn_crc32(0, buf, 252));
}

static void write_bytes(const char *path, const uint8_t *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

/* The file is refused through the generic loader with a message holding
 * `want`. */
static void expect_refused(const uint8_t *b, size_t n, const char *want)
{
    char path[512];
    snprintf(path, sizeof path, "%s/bad.engine", tmpdir);
    write_bytes(path, b, n);
    vx_nn_model *m = NULL;
    vx_err e = vx_nn_model_load(path, NULL, &m);
    if (e == VX_OK)
        fail_msg("a file that should say '%s' loaded", want);
    assert_null(m);
    const char *msg = vx_last_error();
    if (!strstr(msg, want))
        fail_msg("expected '%s' in: %s", want, msg);
    assert_non_null(strstr(msg, "bad.engine"));
    unlink(path);
}

static void test_refusals(void **state)
{
    (void)state;
    size_t len;
    uint8_t *good = nanodet_bytes(&len), *b = malloc(len);
    assert_non_null(b);
    uint32_t crc = get32(good + 252);
    assert_int_equal(crc, crc32_slow(good, 252)); /* the writer's CRC is zlib's */
    assert_int_equal(get32(good + 208), crc32_slow(good + 256, len - 256));

    /* Corrupt payload: one bit. */
    memcpy(b, good, len);
    b[len / 2] ^= 0x10;
    expect_refused(b, len, "payload checksum mismatch");
    /* Corrupt header. */
    memcpy(b, good, len);
    b[100] ^= 1;
    expect_refused(b, len, "header checksum mismatch");
    /* Truncated: mid-payload, mid-header, empty. */
    expect_refused(good, len - 1000, "truncated");
    expect_refused(good, 100, "truncated");
    expect_refused(good, 10, "not a verolux engine file");
    /* Longer than its header says. */
    uint8_t *longer = calloc(1, len + 7);
    memcpy(longer, good, len);
    expect_refused(longer, len + 7, "longer than its header says");
    free(longer);
    /* Another verolux version, valid checksums. */
    memcpy(b, good, len);
    memset(b + 16, 0, 32);
    memcpy(b + 16, "0.0.1-old", 9);
    reseal(b, len);
    expect_refused(b, len, "built by verolux 0.0.1-old");
    /* Another CPU ISA. */
    memcpy(b, good, len);
    put32(b + 52, get32(b + 52) == 0x7 ? 0xf : 0x7); /* sse41 or avx2 (dnnl_cpu_isa_t values) */
    reseal(b, len);
    expect_refused(b, len, "engine built for CPU ISA");
    /* Another file format version. */
    memcpy(b, good, len);
    put32(b + 8, 99);
    reseal(b, len);
    expect_refused(b, len, "engine file format 99");
    /* Crafted payloads with valid checksums. */
    memcpy(b, good, len);
    b[len - 1] ^= 0x55; /* inside the last metadata/output string or index */
    reseal(b, len);
    {
        char path[512];
        snprintf(path, sizeof path, "%s/bad.engine", tmpdir);
        write_bytes(path, b, len);
        vx_nn_model *m = NULL;
        if (vx_nn_model_load(path, NULL, &m) == VX_OK) /* a changed name byte is still a valid file */
            vx_nn_model_destroy(m);
        unlink(path);
    }
    memcpy(b, good, len);
    put32(b + 256 + 12, 0x7fffffff); /* tensor count, after format "tfjs" (4+4 bytes) and opset (4) */
    reseal(b, len);
    expect_refused(b, len, "tensor count");
    free(b);
    free(good);
}

/* Random damage with valid checksums: a clean refusal or a valid model,
 * never a crash (the ASan run makes this a memory-safety check). */
static void test_mutations(void **state)
{
    (void)state;
    char path[1200];
    snprintf(path, sizeof path, "%s/ops-opset18.onnx", fixtures);
    vx_nn_model *m;
    assert_int_equal(vx_nn_model_load(path, NULL, &m), VX_OK);
    vx_nn_engine_file_opts o = fp32_opts();
    size_t len;
    uint8_t *good, *b;
    assert_int_equal(vx_nn_engine_file_encode(m, &o, &good, &len), VX_OK);
    vx_nn_model_destroy(m);
    b = malloc(len);
    assert_non_null(b);
    int refused = 0, loaded = 0;
    const char *env = getenv("VX_MUTANTS"); /* more for a longer fuzzing run */
    int count = env && atoi(env) > 0 ? atoi(env) : 2000;
    for (int it = 0; it < count; it++) {
        memcpy(b, good, len);
        int flips = 1 + it % 4;
        for (int k = 0; k < flips; k++) {
            size_t pos = 256 + (size_t)(frand() * (float)(len - 256)) % (len - 256);
            b[pos] = it % 3 ? (uint8_t)(frand() * 256.0f) : b[pos] ^ (uint8_t)(1u << (it % 8));
        }
        size_t n = it % 7 == 6 ? 256 + (size_t)(frand() * (float)(len - 256)) : len;
        if (n != len)
            put32(b + 200, (uint32_t)(n - 256)); /* a consistent but shorter file */
        reseal(b, n);
        vx_nn_model *r = NULL;
        if (vx_nn_engine_file_decode("mutant", b, n, NULL, &r) == VX_OK) {
            loaded++;
            vx_nn_model_destroy(r);
        } else {
            refused++;
            assert_non_null(strstr(vx_last_error(), "mutant"));
        }
    }
    print_message("%d mutants of ops-opset18: %d refused, %d still valid\n", count, refused, loaded);
    assert_true(refused > count / 4);
    free(b);
    free(good);
}

/* ---- atomic writes ----------------------------------------------------- */

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

static void test_write_errors(void **state)
{
    (void)state;
    vx_nn_model *m;
    assert_int_equal(vx_nn_model_load(nanodet_path, NULL, &m), VX_OK);
    vx_nn_engine_file_opts o = fp32_opts();
    char path[512];
    /* Missing folder. */
    snprintf(path, sizeof path, "%s/no-such-dir/x.engine", tmpdir);
    assert_int_equal(vx_nn_engine_file_save(m, &o, path), VX_ERR_IO);
    assert_non_null(strstr(vx_last_error(), "No such file or directory"));
    /* Read-only folder (root ignores permission bits: use a read-only
     * file system then). */
    char ro[512];
    snprintf(ro, sizeof ro, "%s/ro", tmpdir);
    assert_int_equal(mkdir(ro, 0555), 0);
    const char *target = ro;
    if (access(ro, W_OK) == 0)
        target = "/proc/self";
    snprintf(path, sizeof path, "%s/x.engine", target);
    assert_int_equal(vx_nn_engine_file_save(m, &o, path), VX_ERR_IO);
    print_message("read-only: %s\n", vx_last_error());
    assert_non_null(strstr(vx_last_error(), "cannot create a file in"));
    rmdir(ro);
    /* A good save replaces an old file whole, with nothing else left. */
    assert_int_equal(count_entries(tmpdir), 0);
    snprintf(path, sizeof path, "%s/x.engine", tmpdir);
    write_bytes(path, (const uint8_t *)"old", 3);
    assert_int_equal(vx_nn_engine_file_save(m, &o, path), VX_OK);
    assert_int_equal(count_entries(tmpdir), 1);
    assert_int_equal(vx_nn_is_engine_file(path), 1);
    /* A source that cannot be fingerprinted: no file at all. */
    o.source_path = "/nonexistent/model.onnx";
    unlink(path);
    assert_int_not_equal(vx_nn_engine_file_save(m, &o, path), VX_OK);
    assert_int_equal(count_entries(tmpdir), 0);
    vx_nn_model_destroy(m);
}

static int setup(void **state)
{
    (void)state;
    const char *cache = getenv("VEROLUX_CACHE");
    const char *fx = getenv("VX_ONNX_FIXTURES");
    if (!cache || !fx) {
        fprintf(stderr, "VEROLUX_CACHE and VX_ONNX_FIXTURES must be set (run through ctest)\n");
        return -1;
    }
    snprintf(nanodet_path, sizeof nanodet_path, "%s/models/nanodet/nanodet.json", cache);
    snprintf(fixtures, sizeof fixtures, "%s", fx);
    if (access(nanodet_path, R_OK) != 0) {
        fprintf(stderr, "%s: %s (scripts/fetch-models fetches it)\n", nanodet_path, strerror(errno));
        return -1;
    }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/vx-engine-test-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return rmdir(tmpdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nanodet_round_trip), cmocka_unit_test(test_onnx_fixtures_round_trip),
        cmocka_unit_test(test_precision_payloads), cmocka_unit_test(test_int8_file_matches_memory),
        cmocka_unit_test(test_refusals),           cmocka_unit_test(test_mutations),
        cmocka_unit_test(test_write_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
