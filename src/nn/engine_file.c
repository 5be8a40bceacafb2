/*
 * Engine files: an optimised (and, for INT8, calibrated) model saved so that
 * a server starts from it without the source model, the optimisation passes
 * or re-calibration.  The header layout is documented in vx_nn.h; the
 * payload is a field-by-field little-endian serialisation of the graph IR
 * (never a memcpy of C structs, so padding, enum sizes and pointer fields
 * never reach the file and the reader checks every value it takes).
 *
 * Weights are stored in the precision they run in: INT8 convolutions as
 * int8 with one scale per output channel (vx_quant_weights: symmetric,
 * 127 / max |w|, what the INT8 kernels use), BF16 convolution weights as bfloat16 (round to
 * nearest even, what a float -> bf16 reorder gives).  Loading expands them
 * back into the float constants of the IR; re-quantising those gives the
 * stored values again, so the engine computes with exactly the weights the
 * export checked.  oneDNN's blocked weight layouts are not stored: they
 * depend on the primitive oneDNN picks at engine creation, which takes
 * milliseconds, and the ISA check keeps a file to machines of its kind.
 *
 * Reading trusts nothing: checksums first (header and payload, CRC-32),
 * then bounds on every count and size against the bytes that remain (no
 * allocation larger than the file can justify), indices, enums and
 * attributes, and finally shape inference, whose shapes must equal the
 * stored ones.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nn/engine_internal.h"

#define HDR VX_NN_ENGINE_HEADER
#define MAX_FILE ((size_t)1 << 32) /* 4 GiB: far above any detector */
#define MAX_STR ((uint32_t)1 << 20)
#define MAX_IO 4096 /* inputs/outputs of one node */

enum { ENC_NONE = 0, ENC_F32 = 1, ENC_I64 = 2, ENC_BF16 = 3, ENC_S8 = 4 };

/* ---- CRC-32 ------------------------------------------------------------ */

static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

/* Slicing-by-8: ~2 GB/s, so a 4 MB model costs about 2 ms. */
uint32_t vx_nn_crc32(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&crc_once, crc_init);
    const uint8_t *p = buf;
    crc = ~crc;
    while (len >= 8) {
        uint32_t a =
            crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        crc = crc_table[7][a & 0xff] ^ crc_table[6][(a >> 8) & 0xff] ^ crc_table[5][(a >> 16) & 0xff] ^
              crc_table[4][a >> 24] ^ crc_table[3][p[4]] ^ crc_table[2][p[5]] ^ crc_table[1][p[6]] ^
              crc_table[0][p[7]];
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* ---- ISA --------------------------------------------------------------- */

unsigned vx_nn_cpu_isa(void)
{
    return (unsigned)dnnl_get_effective_cpu_isa();
}

static const char *isa_name_of(unsigned isa)
{
    switch ((dnnl_cpu_isa_t)isa) {
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_sse41: return "sse41";
    default: return "unknown";
    }
}

const char *vx_nn_cpu_isa_name(void)
{
    return isa_name_of(vx_nn_cpu_isa());
}

/* ---- little-endian writer ---------------------------------------------- */

typedef struct {
    uint8_t *p;
    size_t len, cap;
    int oom;
} wbuf;

static void w_bytes(wbuf *w, const void *src, size_t n)
{
    if (w->oom)
        return;
    if (w->len + n > w->cap) {
        size_t nc = w->cap ? w->cap : 1 << 16;
        while (nc < w->len + n)
            nc *= 2;
        uint8_t *q = realloc(w->p, nc);
        if (!q) {
            w->oom = 1;
            return;
        }
        w->p = q;
        w->cap = nc;
    }
    if (n)
        memcpy(w->p + w->len, src, n);
    w->len += n;
}

static void put_u32(uint8_t *d, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        d[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *d, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        d[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *d)
{
    return (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
}
static uint64_t get_u64(const uint8_t *d)
{
    return (uint64_t)get_u32(d) | (uint64_t)get_u32(d + 4) << 32;
}

static void w_u8(wbuf *w, unsigned v)
{
    uint8_t b = (uint8_t)v;
    w_bytes(w, &b, 1);
}
static void w_u32(wbuf *w, uint32_t v)
{
    uint8_t b[4];
    put_u32(b, v);
    w_bytes(w, b, 4);
}
static void w_i32(wbuf *w, int v)
{
    w_u32(w, (uint32_t)v);
}
static void w_i64(wbuf *w, int64_t v)
{
    uint8_t b[8];
    put_u64(b, (uint64_t)v);
    w_bytes(w, b, 8);
}
static void w_f32(wbuf *w, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    w_u32(w, u);
}
static void w_str(wbuf *w, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    w_u32(w, (uint32_t)n);
    w_bytes(w, s, n);
}

/* ---- bounded reader ---------------------------------------------------- */

typedef struct {
    const uint8_t *p;
    size_t len, off;
    const char *name;
    char err[160]; /* first problem, with its payload offset */
} rbuf;

VX_PRINTF(2, 3) static void r_fail(rbuf *r, const char *fmt, ...)
{
    if (r->err[0])
        return;
    char what[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(r->err, sizeof r->err, "%s (payload byte %zu)", what, r->off);
    r->off = r->len; /* every later read fails quietly */
}

static const uint8_t *r_take(rbuf *r, size_t n)
{
    if (r->err[0])
        return NULL;
    if (n > r->len - r->off) {
        r_fail(r, "truncated: %zu bytes needed, %zu left", n, r->len - r->off);
        return NULL;
    }
    const uint8_t *q = r->p + r->off;
    r->off += n;
    return q;
}
static unsigned r_u8(rbuf *r)
{
    const uint8_t *q = r_take(r, 1);
    return q ? q[0] : 0;
}
static uint32_t r_u32(rbuf *r)
{
    const uint8_t *q = r_take(r, 4);
    return q ? get_u32(q) : 0;
}
static int r_i32(rbuf *r)
{
    return (int)r_u32(r);
}
static int64_t r_i64(rbuf *r)
{
    const uint8_t *q = r_take(r, 8);
    return q ? (int64_t)get_u64(q) : 0;
}
static float r_f32(rbuf *r)
{
    uint32_t u = r_u32(r);
    float f;
    memcpy(&f, &u, 4);
    return f;
}
/* A finite float, else a failure naming `what`. */
static float r_fin(rbuf *r, const char *what)
{
    float f = r_f32(r);
    if (!isfinite(f))
        r_fail(r, "%s is not a finite number", what);
    return f;
}
/* Non-negative int no larger than max. */
static int r_count(rbuf *r, int max, const char *what)
{
    int v = r_i32(r);
    if (v < 0 || v > max) {
        r_fail(r, "%s %d out of range 0..%d", what, v, max);
        return 0;
    }
    return v;
}
static int r_range(rbuf *r, int lo, int hi, const char *what)
{
    int v = r_i32(r);
    if (v < lo || v > hi) {
        r_fail(r, "%s %d out of range %d..%d", what, v, lo, hi);
        return lo;
    }
    return v;
}
/* Length-prefixed string without NULs; malloc'd (never NULL unless failed). */
static char *r_str(rbuf *r)
{
    uint32_t n = r_u32(r);
    if (n > MAX_STR) {
        r_fail(r, "string of %u bytes", n);
        return NULL;
    }
    const uint8_t *q = r_take(r, n);
    if (!q)
        return NULL;
    if (memchr(q, 0, n)) {
        r_fail(r, "string with a NUL byte");
        return NULL;
    }
    char *s = malloc((size_t)n + 1);
    if (!s) {
        r_fail(r, "out of memory");
        return NULL;
    }
    memcpy(s, q, n);
    s[n] = 0;
    return s;
}

/* ---- weight encodings -------------------------------------------------- */

static uint16_t f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it quiet, keep the sign */
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1); /* round to nearest even */
    return (uint16_t)(u >> 16);
}
static float bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* The convolutions whose weights the cpu backend quantises (its
 * conv_runs_int8): vx_quant_conv_int8, and a post-op chain its INT8 kernel
 * takes -- activations that commute with a positive scale around at most
 * one sum, or a last non-commuting one (sigmoid heads) without a sum -- and
 * an activation as the sum operand.  Others run in FP32 and keep exact
 * weights.  test_int8_file_matches_memory fails when the two disagree. */
static int homogeneous(vx_act a)
{
    return a == VX_ACT_NONE || a == VX_ACT_RELU || a == VX_ACT_LEAKY_RELU;
}

static int runs_int8(const vx_graph *g, const vx_node *n)
{
    if (!vx_quant_conv_int8(g, n))
        return 0;
    const vx_conv_attr *c = &n->a.conv;
    int sums = 0;
    for (int k = 0; k < c->n_post; k++) {
        if (c->post[k].kind == VX_POST_SUM)
            sums++;
        else if (!homogeneous(c->post[k].act) && (k != c->n_post - 1 || sums))
            return 0;
    }
    if (sums > 1)
        return 0;
    if (n->n_in > 3 && n->in[3] >= 0) {
        const vx_tensor *t = &g->t[n->in[3]];
        if (t->rank != 4 || t->dtype != VX_DT_F32 || t->data)
            return 0;
    }
    return 1;
}

/* How each constant is stored: INT8 convolutions get s8 weights, BF16 ones
 * bf16 weights; everything else (biases, FP32-kept layers, shapes, other
 * constants) stays exact.  A weight shared with another reader stays exact
 * too: that reader may need full precision. */
static int *plan_encodings(const vx_graph *g, vx_nn_precision prec)
{
    int *enc = malloc(sizeof(int) * ((size_t)g->nt + 1));
    if (!enc)
        return NULL;
    for (int i = 0; i < g->nt; i++)
        enc[i] = !g->t[i].data ? ENC_NONE : g->t[i].dtype == VX_DT_I64 ? ENC_I64 : ENC_F32;
    if (prec == VX_NN_FP32)
        return enc;
    for (int i = 0; i < g->nn; i++) {
        const vx_node *n = &g->n[i];
        if (n->op != VX_OP_CONV || n->n_in < 2 || n->in[1] < 0)
            continue;
        int w = n->in[1];
        const vx_tensor *t = &g->t[w];
        if (!t->data || t->dtype != VX_DT_F32 || t->rank != 4 || t->dims[0] <= 0 ||
            vx_graph_use_count(g, w) != 1)
            continue;
        if (prec == VX_NN_BF16)
            enc[w] = ENC_BF16;
        else if (prec == VX_NN_INT8 && runs_int8(g, n))
            enc[w] = ENC_S8;
    }
    return enc;
}

static void write_tensor(wbuf *w, const vx_tensor *t, int enc)
{
    w_str(w, t->name);
    w_u8(w, t->dtype);
    w_i32(w, t->rank);
    for (int k = 0; k < t->rank; k++)
        w_i64(w, t->dims[k]);
    w_f32(w, t->amax);
    w_f32(w, t->amin);
    w_u8(w, (unsigned)enc);
    int64_t n = enc == ENC_NONE ? 0 : vx_tensor_elems(t);
    const float *f = t->data;
    switch (enc) {
    case ENC_NONE: break;
    case ENC_F32:
        for (int64_t i = 0; i < n; i++)
            w_f32(w, f[i]);
        break;
    case ENC_I64:
        for (int64_t i = 0; i < n; i++)
            w_i64(w, ((const int64_t *)t->data)[i]);
        break;
    case ENC_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = f32_to_bf16(f[i]);
            uint8_t b[2] = {(uint8_t)h, (uint8_t)(h >> 8)};
            w_bytes(w, b, 2);
        }
        break;
    case ENC_S8: {
        /* The backend's own quantiser, so that the engine re-derives
         * exactly these int8 values from the expanded weights. */
        int64_t oc = t->dims[0], per = n / oc;
        float *scale = malloc(sizeof(float) * (size_t)oc);
        int8_t *q = malloc((size_t)(n ? n : 1));
        if (!scale || !q) {
            free(scale);
            free(q);
            w->oom = 1;
            return;
        }
        vx_quant_weights(f, oc, per, scale, q);
        for (int64_t c = 0; c < oc; c++)
            w_f32(w, scale[c]);
        w_bytes(w, q, (size_t)n);
        free(scale);
        free(q);
        break;
    }
    }
}

static void write_node(wbuf *w, const vx_node *n)
{
    w_u8(w, n->op);
    w_str(w, n->name);
    w_i32(w, n->n_in);
    for (int j = 0; j < n->n_in; j++)
        w_i32(w, n->in[j]);
    w_i32(w, n->n_out);
    for (int j = 0; j < n->n_out; j++)
        w_i32(w, n->out[j]);
    w_u8(w, n->keep_fp32 ? 1 : 0);
    w_f32(w, n->quant_err);
    switch (n->op) {
    case VX_OP_CONV: {
        const vx_conv_attr *c = &n->a.conv;
        int v[] = {c->kh,    c->kw, c->sh, c->sw, c->dh, c->dw, c->pt, c->pl, c->pb, c->pr, (int)c->pad_mode,
                   c->groups};
        for (size_t k = 0; k < sizeof v / sizeof *v; k++)
            w_i32(w, v[k]);
        w_i32(w, c->n_post);
        for (int k = 0; k < c->n_post; k++) {
            w_i32(w, (int)c->post[k].kind);
            w_i32(w, (int)c->post[k].act);
            w_f32(w, c->post[k].alpha);
        }
        break;
    }
    case VX_OP_MAXPOOL:
    case VX_OP_AVGPOOL: {
        const vx_pool_attr *p = &n->a.pool;
        int v[] = {
            p->kh, p->kw, p->sh, p->sw, p->pt, p->pl, p->pb, p->pr, (int)p->pad_mode, p->count_include_pad};
        for (size_t k = 0; k < sizeof v / sizeof *v; k++)
            w_i32(w, v[k]);
        break;
    }
    case VX_OP_RESIZE: {
        const vx_resize_attr *r = &n->a.resize;
        w_i32(w, (int)r->mode);
        w_i32(w, (int)r->coord);
        w_i32(w, r->out_h);
        w_i32(w, r->out_w);
        w_f32(w, r->scale_h);
        w_f32(w, r->scale_w);
        w_i32(w, (int)r->nearest);
        break;
    }
    case VX_OP_LEAKY_RELU: w_f32(w, n->a.leaky.alpha); break;
    case VX_OP_CONCAT: w_i32(w, n->a.concat.axis); break;
    case VX_OP_SPLIT:
        w_i32(w, n->a.split.axis);
        w_i32(w, n->a.split.n);
        for (int k = 0; k < n->a.split.n; k++)
            w_i64(w, n->a.split.sizes ? n->a.split.sizes[k] : 0);
        break;
    case VX_OP_TRANSPOSE:
        for (int k = 0; k < VX_NN_MAX_RANK; k++)
            w_i32(w, n->a.transpose.perm[k]);
        break;
    case VX_OP_PAD:
        for (int k = 0; k < VX_NN_MAX_RANK; k++) {
            w_i64(w, n->a.pad.begin[k]);
            w_i64(w, n->a.pad.end[k]);
        }
        w_f32(w, n->a.pad.value);
        break;
    case VX_OP_RESHAPE: w_i32(w, n->a.reshape.allowzero); break;
    case VX_OP_HARDSIGMOID:
        w_f32(w, n->a.hard.alpha);
        w_f32(w, n->a.hard.beta);
        break;
    case VX_OP_CLIP:
        w_f32(w, n->a.clip.lo);
        w_f32(w, n->a.clip.hi);
        break;
    case VX_OP_SOFTMAX:
        w_i32(w, n->a.softmax.axis);
        w_i32(w, n->a.softmax.flat);
        break;
    case VX_OP_SLICE:
        for (int k = 0; k < VX_NN_MAX_RANK; k++) {
            w_i64(w, n->a.slice.start[k]);
            w_i64(w, n->a.slice.end[k]);
            w_i64(w, n->a.slice.step[k]);
        }
        break;
    case VX_OP_GATHER: w_i32(w, n->a.gather.axis); break;
    case VX_OP_CAST: w_i32(w, (int)n->a.cast.to); break;
    default: break;
    }
}

static void copy_field(char *dst, size_t cap, const char *src)
{
    memset(dst, 0, cap);
    if (src)
        strncpy(dst, src, cap - 1);
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

vx_err vx_nn_engine_file_encode(const vx_nn_model *m, const vx_nn_engine_file_opts *o, uint8_t **out,
                                size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if ((unsigned)o->precision > VX_NN_INT8)
        return vx_fail(VX_ERR_INVALID, "engine file: unknown precision %d", (int)o->precision);
    if ((unsigned)o->backend > VX_NN_BACKEND_CUDA)
        return vx_fail(VX_ERR_INVALID, "engine file: unknown backend %d", (int)o->backend);
    const vx_graph *g = m->g;
    if (o->precision == VX_NN_INT8 && !vx_nn_model_is_calibrated(m))
        return vx_fail(VX_ERR_INVALID, "an INT8 engine needs a calibrated model (no activation ranges)");
    uint64_t src_size = 0;
    uint32_t src_crc = 0;
    if (o->source_path) {
        vx_err e = vx_nn_source_fingerprint(o->source_path, &src_size, &src_crc);
        if (e)
            return e;
    }
    int *enc = plan_encodings(g, o->precision);
    if (!enc)
        return vx_fail(VX_ERR_NOMEM, "engine file: out of memory");

    wbuf w = {0};
    uint8_t zero[HDR] = {0};
    w_bytes(&w, zero, HDR);
    w_str(&w, g->format);
    w_i32(&w, g->opset);
    w_i32(&w, g->nt);
    for (int i = 0; i < g->nt; i++)
        write_tensor(&w, &g->t[i], enc[i]);
    w_i32(&w, g->nn);
    for (int i = 0; i < g->nn; i++)
        write_node(&w, &g->n[i]);
    w_i32(&w, g->n_inputs);
    for (int i = 0; i < g->n_inputs; i++)
        w_i32(&w, g->inputs[i]);
    w_i32(&w, g->n_outputs);
    for (int i = 0; i < g->n_outputs; i++) {
        w_i32(&w, g->outputs[i]);
        w_str(&w, g->out_names[i]);
    }
    w_i32(&w, g->n_meta);
    for (int i = 0; i < g->n_meta; i++) {
        w_str(&w, g->meta_keys[i]);
        w_str(&w, g->meta_values[i]);
    }
    free(enc);
    if (w.oom || w.len > MAX_FILE) {
        free(w.p);
        return vx_fail(VX_ERR_NOMEM, "engine file: out of memory or larger than 4 GiB");
    }

    uint8_t *h = w.p;
    memcpy(h, VX_NN_ENGINE_MAGIC, 8);
    put_u32(h + 8, VX_NN_ENGINE_FORMAT);
    put_u32(h + 12, HDR);
    copy_field((char *)h + 16, 32, VX_VERSION);
    put_u32(h + 48, (uint32_t)o->backend);
    unsigned isa = o->backend == VX_NN_BACKEND_CPU ? vx_nn_cpu_isa() : 0;
    put_u32(h + 52, isa);
    copy_field((char *)h + 56, 32, o->backend == VX_NN_BACKEND_CPU ? isa_name_of(isa) : "");
    put_u32(h + 88, (uint32_t)o->precision);
    copy_field((char *)h + 96, 16, o->decoder);
    put_u32(h + 112, (uint32_t)(o->input_w > 0 ? o->input_w : 0));
    put_u32(h + 116, (uint32_t)(o->input_h > 0 ? o->input_h : 0));
    put_u64(h + 120, src_size);
    put_u32(h + 128, src_crc);
    copy_field((char *)h + 136, 64, o->source_path ? base_name(o->source_path) : "");
    put_u64(h + 200, (uint64_t)(w.len - HDR));
    put_u32(h + 208, vx_nn_crc32(0, h + HDR, w.len - HDR));
    put_u32(h + 212, (uint32_t)(o->calib_frames > 0 ? o->calib_frames : 0));
    copy_field((char *)h + 216, 16, o->calib_method);
    put_u32(h + 252, vx_nn_crc32(0, h, 252));
    *out = w.p;
    *out_len = w.len;
    return VX_OK;
}

/* ---- atomic write ------------------------------------------------------ */

vx_err vx_nn_write_file_atomic(const char *path, const uint8_t *buf, size_t len)
{
    char dir[4096], tmp[4200];
    if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir)
        return vx_fail(VX_ERR_INVALID, "%s: path too long", path);
    char *d = dirname(dir);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp-XXXXXX", d, base_name(path));
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return vx_fail(VX_ERR_IO, "%s: cannot create a file in %s: %s", path, d, strerror(errno));
    vx_err err = VX_OK;
    size_t done = 0;
    while (done < len) {
        ssize_t k = write(fd, buf + done, len - done);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            err = vx_fail(VX_ERR_IO, "%s: write failed: %s", path, k < 0 ? strerror(errno) : "no progress");
            break;
        }
        done += (size_t)k;
    }
    /* The data must be on disk before the rename makes it visible, or a
     * crash could leave a complete-looking name with missing blocks. */
    if (!err && fsync(fd) != 0)
        err = vx_fail(VX_ERR_IO, "%s: fsync failed: %s", path, strerror(errno));
    if (!err && fchmod(fd, 0644) != 0)
        err = vx_fail(VX_ERR_IO, "%s: chmod failed: %s", path, strerror(errno));
    if (close(fd) != 0 && !err)
        err = vx_fail(VX_ERR_IO, "%s: close failed: %s", path, strerror(errno));
    if (!err && rename(tmp, path) != 0)
        err = vx_fail(VX_ERR_IO, "%s: rename failed: %s", path, strerror(errno));
    if (err) {
        unlink(tmp);
        return err;
    }
    int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) { /* the rename itself durable; best effort on odd filesystems */
        fsync(dfd);
        close(dfd);
    }
    return VX_OK;
}

vx_err vx_nn_engine_file_save(const vx_nn_model *m, const vx_nn_engine_file_opts *o, const char *path)
{
    uint8_t *buf;
    size_t len;
    vx_err e = vx_nn_engine_file_encode(m, o, &buf, &len);
    if (e)
        return vx_fail_prefix(e, "%s: ", path);
    e = vx_nn_write_file_atomic(path, buf, len);
    free(buf);
    return e;
}

/* ---- header ------------------------------------------------------------ */

static void field(char *dst, size_t cap, const uint8_t *src, size_t n)
{
    size_t k = 0;
    while (k < n && k + 1 < cap && src[k])
        k++;
    memcpy(dst, src, k);
    dst[k] = 0;
}

/* Checks the header of a file of `file_len` bytes (0: unknown yet). */
static vx_err check_header(const char *name, const uint8_t *h, size_t have, uint64_t file_len,
                           vx_nn_engine_file_info *info)
{
    if (have < 16 || memcmp(h, VX_NN_ENGINE_MAGIC, 8))
        return vx_fail(VX_ERR_FORMAT, "%s: not a verolux engine file", name);
    uint32_t ver = get_u32(h + 8), hsize = get_u32(h + 12);
    if (ver != VX_NN_ENGINE_FORMAT)
        return vx_fail(VX_ERR_UNSUPPORTED,
                       "%s: engine file format %u, this verolux reads format %d; export the model again",
                       name, ver, VX_NN_ENGINE_FORMAT);
    if (hsize != HDR || have < HDR)
        return vx_fail(VX_ERR_FORMAT, "%s: truncated or corrupt engine header (%zu of %d bytes)", name, have,
                       HDR);
    if (get_u32(h + 252) != vx_nn_crc32(0, h, 252))
        return vx_fail(VX_ERR_FORMAT, "%s: engine header checksum mismatch (corrupt file)", name);
    vx_nn_engine_file_info in;
    memset(&in, 0, sizeof in);
    in.format_version = (int)ver;
    field(in.version, sizeof in.version, h + 16, 32);
    uint32_t backend = get_u32(h + 48), prec = get_u32(h + 88);
    in.isa = get_u32(h + 52);
    field(in.isa_name, sizeof in.isa_name, h + 56, 32);
    field(in.decoder, sizeof in.decoder, h + 96, 16);
    uint32_t iw = get_u32(h + 112), ih = get_u32(h + 116);
    in.source_size = get_u64(h + 120);
    in.source_crc = get_u32(h + 128);
    field(in.source_name, sizeof in.source_name, h + 136, 64);
    in.payload_size = get_u64(h + 200);
    uint32_t frames = get_u32(h + 212);
    field(in.calib_method, sizeof in.calib_method, h + 216, 16);
    if (backend > VX_NN_BACKEND_CUDA || prec > VX_NN_INT8 || iw > 65536 || ih > 65536 || frames > (1u << 30))
        return vx_fail(VX_ERR_FORMAT, "%s: engine header has out-of-range fields", name);
    in.backend = (vx_nn_backend)backend;
    in.precision = (vx_nn_precision)prec;
    in.input_w = (int)iw;
    in.input_h = (int)ih;
    in.calib_frames = (int)frames;
    if (strcmp(in.version, VX_VERSION))
        return vx_fail(VX_ERR_UNSUPPORTED,
                       "%s: engine built by verolux %s, this is verolux %s; export the model again", name,
                       in.version, VX_VERSION);
    if (in.backend == VX_NN_BACKEND_CPU && in.isa != vx_nn_cpu_isa())
        return vx_fail(
            VX_ERR_UNSUPPORTED,
            "%s: engine built for CPU ISA %s, this machine runs %s; export the model on this machine", name,
            isa_name_of(in.isa), vx_nn_cpu_isa_name());
    if (in.payload_size > MAX_FILE)
        return vx_fail(VX_ERR_FORMAT, "%s: engine payload of %llu bytes is absurd", name,
                       (unsigned long long)in.payload_size);
    if (file_len && file_len != HDR + in.payload_size)
        return vx_fail(VX_ERR_FORMAT, "%s: engine file is %s: %llu bytes, the header says %llu", name,
                       file_len < HDR + in.payload_size ? "truncated" : "longer than its header says",
                       (unsigned long long)file_len, (unsigned long long)(HDR + in.payload_size));
    if (info)
        *info = in;
    return VX_OK;
}

int vx_nn_is_engine_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    char m[8];
    size_t n = fread(m, 1, 8, f);
    fclose(f);
    return n == 8 && !memcmp(m, VX_NN_ENGINE_MAGIC, 8);
}

vx_err vx_nn_engine_file_probe(const char *path, vx_nn_engine_file_info *info)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return vx_fail(errno == ENOENT ? VX_ERR_NOT_FOUND : VX_ERR_IO, "%s: %s", path, strerror(errno));
    uint8_t h[HDR];
    size_t n = fread(h, 1, HDR, f);
    struct stat st;
    int ok = fstat(fileno(f), &st) == 0;
    fclose(f);
    if (!ok)
        return vx_fail(VX_ERR_IO, "%s: cannot stat", path);
    return check_header(path, h, n, (uint64_t)st.st_size ? (uint64_t)st.st_size : 1, info);
}

/* ---- payload ----------------------------------------------------------- */

static void read_tensor(rbuf *r, vx_graph *g)
{
    char *name = r_str(r);
    if (!name)
        return;
    int id = vx_graph_add_tensor(g, name);
    free(name);
    if (id < 0) {
        r_fail(r, "out of memory");
        return;
    }
    vx_tensor *t = &g->t[id];
    unsigned dt = r_u8(r);
    int rank = r_range(r, -1, VX_NN_MAX_RANK, "tensor rank");
    if (dt > VX_DT_I64)
        r_fail(r, "tensor '%s': unknown data type %u", t->name, dt);
    t->dtype = (vx_dtype)dt;
    t->rank = rank;
    for (int k = 0; k < rank; k++) {
        t->dims[k] = r_i64(r);
        if (t->dims[k] < 0 || t->dims[k] > VX_MAX_ELEMS)
            r_fail(r, "tensor '%s': dimension %d is %lld", t->name, k, (long long)t->dims[k]);
    }
    t->amax = r_fin(r, "activation range");
    t->amin = r_fin(r, "activation range");
    if (t->amax < 0 || t->amin > 0 || (t->amin < 0 && -t->amin > t->amax))
        r_fail(r, "tensor '%s': activation range [%g, %g] is not a calibrated one", t->name, (double)t->amin,
               (double)t->amax);
    unsigned enc = r_u8(r);
    if (r->err[0] || enc == ENC_NONE)
        return;
    int64_t n = vx_tensor_elems(t);
    if (n < 0 || n > VX_MAX_ELEMS) {
        r_fail(r, "constant '%s' has no valid shape", t->name);
        return;
    }
    int ok_enc = (dt == VX_DT_I64 && enc == ENC_I64) ||
                 (dt == VX_DT_F32 &&
                  (enc == ENC_F32 || enc == ENC_BF16 || (enc == ENC_S8 && rank >= 1 && t->dims[0] > 0)));
    if (!ok_enc) {
        r_fail(r, "constant '%s': encoding %u does not fit its type", t->name, enc);
        return;
    }
    /* The bytes must be there before anything that size is allocated. */
    size_t need = enc == ENC_F32    ? (size_t)n * 4
                  : enc == ENC_I64  ? (size_t)n * 8
                  : enc == ENC_BF16 ? (size_t)n * 2
                                    : (size_t)n + 4 * (size_t)t->dims[0];
    if (need > r->len - r->off) {
        r_fail(r, "constant '%s' needs %zu bytes, %zu left", t->name, need, r->len - r->off);
        return;
    }
    t->data = calloc(1, n ? (size_t)n * (dt == VX_DT_I64 ? 8 : 4) : 8);
    if (!t->data) {
        r_fail(r, "out of memory");
        return;
    }
    float *f = t->data;
    switch (enc) {
    case ENC_F32:
        for (int64_t i = 0; i < n; i++)
            f[i] = r_f32(r);
        break;
    case ENC_I64:
        for (int64_t i = 0; i < n; i++)
            ((int64_t *)t->data)[i] = r_i64(r);
        break;
    case ENC_BF16: {
        const uint8_t *q = r_take(r, (size_t)n * 2);
        for (int64_t i = 0; q && i < n; i++)
            f[i] = bf16_to_f32((uint16_t)(q[2 * i] | q[2 * i + 1] << 8));
        break;
    }
    case ENC_S8: {
        int64_t oc = t->dims[0], per = n / oc;
        float *scale = malloc(sizeof(float) * (size_t)oc);
        if (!scale) {
            r_fail(r, "out of memory");
            return;
        }
        for (int64_t c = 0; c < oc; c++) {
            scale[c] = r_fin(r, "weight scale");
            if (!(scale[c] > 0))
                r_fail(r, "constant '%s': weight scale %g", t->name, (double)scale[c]);
        }
        const int8_t *q = (const int8_t *)r_take(r, (size_t)n);
        for (int64_t c = 0; q && c < oc; c++) {
            /* scale: int8 steps per unit.  The channel's largest weight
             * (q = +-127) gets the float whose re-quantisation gives back
             * exactly this scale (127 / max|w| in vx_quant_weights), so the
             * engine requantises to the same weights AND the same output
             * scales: bitwise the engine the export checked. */
            float top = 127.0f / scale[c];
            for (int k = 0; k < 8 && 127.0f / top != scale[c]; k++)
                top = nextafterf(top, 127.0f / top > scale[c] ? INFINITY : 0.0f);
            for (int64_t i = 0; i < per; i++) {
                int v = q[c * per + i];
                f[c * per + i] = v == 127 ? top : v == -127 ? -top : (float)v / scale[c];
            }
        }
        free(scale);
        break;
    }
    }
}

static int tensor_ok(rbuf *r, const vx_graph *g, int t, int optional, const char *node)
{
    if ((optional && t == -1) || (t >= 0 && t < g->nt))
        return 1;
    r_fail(r, "node '%s': tensor index %d out of range", node, t);
    return 0;
}

static int enum_ok(rbuf *r, int v, int hi, const char *what, const char *node)
{
    if (v >= 0 && v <= hi)
        return 1;
    r_fail(r, "node '%s': %s %d out of range", node, what, v);
    return 0;
}

static void read_node(rbuf *r, vx_graph *g, char *produced)
{
    unsigned op = r_u8(r);
    char *name = r_str(r);
    if (!name)
        return;
    if (op >= VX_OP_COUNT) {
        r_fail(r, "node '%s': unknown operator %u", name, op);
        free(name);
        return;
    }
    int n_in = r_count(r, MAX_IO, "input count");
    int in[MAX_IO + 1], out[MAX_IO + 1];
    for (int j = 0; j < n_in; j++)
        in[j] = r_i32(r);
    int n_out = r_count(r, MAX_IO, "output count");
    for (int j = 0; j < n_out; j++)
        out[j] = r_i32(r);
    for (int j = 0; j < n_in && !r->err[0]; j++)
        tensor_ok(r, g, in[j], 1, name);
    if (!r->err[0] && n_out < 1)
        r_fail(r, "node '%s' has no outputs", name);
    for (int j = 0; j < n_out && !r->err[0]; j++) {
        if (!tensor_ok(r, g, out[j], 0, name))
            break;
        if (produced[out[j]] || g->t[out[j]].data)
            r_fail(r, "node '%s': tensor '%s' has two producers or is a constant", name, g->t[out[j]].name);
        produced[out[j]] = 1;
    }
    if (r->err[0]) {
        free(name);
        return;
    }
    int id = vx_graph_add_node_out(g, (vx_op)op, name, in, n_in, out, n_out);
    free(name);
    if (id < 0) {
        r_fail(r, "out of memory");
        return;
    }
    vx_node *n = &g->n[id];
    n->keep_fp32 = r_u8(r) ? 1 : 0;
    n->quant_err = r_fin(r, "layer error");
    switch (n->op) {
    case VX_OP_CONV: {
        vx_conv_attr *c = &n->a.conv;
        int *v[] = {&c->kh, &c->kw, &c->sh, &c->sw, &c->dh, &c->dw, &c->pt, &c->pl, &c->pb, &c->pr};
        for (size_t k = 0; k < sizeof v / sizeof *v; k++)
            *v[k] = r_range(r, k < 6 ? 1 : 0, 1 << 16, "convolution geometry");
        int pm = r_i32(r);
        enum_ok(r, pm, VX_PAD_VALID, "padding mode", n->name);
        c->pad_mode = (vx_pad_mode)pm;
        c->groups = r_range(r, 1, 1 << 20, "convolution groups");
        c->n_post = r_count(r, VX_MAX_POSTOPS, "post-op count");
        for (int k = 0; k < c->n_post; k++) {
            int kind = r_i32(r), act = r_i32(r);
            enum_ok(r, kind, VX_POST_SUM, "post-op kind", n->name);
            enum_ok(r, act, VX_ACT_HARDSWISH, "activation", n->name);
            c->post[k].kind = (vx_post_kind)kind;
            c->post[k].act = (vx_act)act;
            c->post[k].alpha = r_fin(r, "post-op alpha");
        }
        if (n->n_in < 2 || n->in[0] < 0 || n->in[1] < 0)
            r_fail(r, "convolution '%s' needs an input and weights", n->name);
        break;
    }
    case VX_OP_MAXPOOL:
    case VX_OP_AVGPOOL: {
        vx_pool_attr *p = &n->a.pool;
        int *v[] = {&p->kh, &p->kw, &p->sh, &p->sw, &p->pt, &p->pl, &p->pb, &p->pr};
        for (size_t k = 0; k < sizeof v / sizeof *v; k++)
            *v[k] = r_range(r, k < 4 ? 1 : 0, 1 << 16, "pooling geometry");
        int pm = r_i32(r);
        enum_ok(r, pm, VX_PAD_VALID, "padding mode", n->name);
        p->pad_mode = (vx_pad_mode)pm;
        p->count_include_pad = r_range(r, 0, 1, "count_include_pad");
        break;
    }
    case VX_OP_RESIZE: {
        vx_resize_attr *z = &n->a.resize;
        int mode = r_i32(r), coord = r_i32(r);
        enum_ok(r, mode, VX_RESIZE_LINEAR, "resize mode", n->name);
        enum_ok(r, coord, VX_COORD_TF_HALF_PIXEL_FOR_NN, "coordinate mode", n->name);
        z->mode = (vx_resize_mode)mode;
        z->coord = (vx_coord_mode)coord;
        z->out_h = r_range(r, 0, 1 << 20, "resize height");
        z->out_w = r_range(r, 0, 1 << 20, "resize width");
        z->scale_h = r_fin(r, "resize scale");
        z->scale_w = r_fin(r, "resize scale");
        int nm = r_i32(r);
        enum_ok(r, nm, VX_NEAREST_CEIL, "nearest mode", n->name);
        z->nearest = (vx_nearest_mode)nm;
        break;
    }
    case VX_OP_LEAKY_RELU: n->a.leaky.alpha = r_fin(r, "leaky alpha"); break;
    case VX_OP_CONCAT:
        n->a.concat.axis = r_range(r, -VX_NN_MAX_RANK, VX_NN_MAX_RANK - 1, "concat axis");
        break;
    case VX_OP_SPLIT: {
        n->a.split.axis = r_range(r, -VX_NN_MAX_RANK, VX_NN_MAX_RANK - 1, "split axis");
        int k = r_count(r, MAX_IO, "split count");
        if (!r->err[0] && k != n->n_out)
            r_fail(r, "split '%s': %d sizes for %d outputs", n->name, k, n->n_out);
        if (r->err[0])
            break;
        n->a.split.sizes = calloc((size_t)(k ? k : 1), sizeof(int64_t));
        if (!n->a.split.sizes) {
            r_fail(r, "out of memory");
            break;
        }
        n->a.split.n = k;
        for (int q = 0; q < k; q++) {
            n->a.split.sizes[q] = r_i64(r);
            if (n->a.split.sizes[q] < 0 || n->a.split.sizes[q] > VX_MAX_ELEMS)
                r_fail(r, "split '%s': size %lld", n->name, (long long)n->a.split.sizes[q]);
        }
        break;
    }
    case VX_OP_TRANSPOSE:
        for (int k = 0; k < VX_NN_MAX_RANK; k++)
            n->a.transpose.perm[k] = r_range(r, 0, VX_NN_MAX_RANK - 1, "transpose axis");
        break;
    case VX_OP_PAD:
        for (int k = 0; k < VX_NN_MAX_RANK; k++) {
            n->a.pad.begin[k] = r_i64(r);
            n->a.pad.end[k] = r_i64(r);
            if (llabs(n->a.pad.begin[k]) > VX_MAX_ELEMS || llabs(n->a.pad.end[k]) > VX_MAX_ELEMS)
                r_fail(r, "pad '%s': absurd padding", n->name);
        }
        n->a.pad.value = r_f32(r); /* may be any float, -inf included */
        break;
    case VX_OP_RESHAPE: n->a.reshape.allowzero = r_range(r, 0, 1, "allowzero"); break;
    case VX_OP_HARDSIGMOID:
        n->a.hard.alpha = r_fin(r, "hardsigmoid alpha");
        n->a.hard.beta = r_fin(r, "hardsigmoid beta");
        break;
    case VX_OP_CLIP: /* bounds may be infinite (one-sided clip) */
        n->a.clip.lo = r_f32(r);
        n->a.clip.hi = r_f32(r);
        if (isnan(n->a.clip.lo) || isnan(n->a.clip.hi))
            r_fail(r, "clip '%s': NaN bound", n->name);
        break;
    case VX_OP_SOFTMAX:
        n->a.softmax.axis = r_range(r, -VX_NN_MAX_RANK, VX_NN_MAX_RANK - 1, "softmax axis");
        n->a.softmax.flat = r_range(r, 0, 1, "softmax flat");
        break;
    case VX_OP_SLICE:
        for (int k = 0; k < VX_NN_MAX_RANK; k++) {
            n->a.slice.start[k] = r_i64(r);
            n->a.slice.end[k] = r_i64(r);
            n->a.slice.step[k] = r_i64(r);
        }
        break;
    case VX_OP_GATHER:
        n->a.gather.axis = r_range(r, -VX_NN_MAX_RANK, VX_NN_MAX_RANK - 1, "gather axis");
        break;
    case VX_OP_CAST: {
        int to = r_i32(r);
        enum_ok(r, to, VX_DT_I64, "cast type", n->name);
        n->a.cast.to = (vx_dtype)to;
        break;
    }
    default: break;
    }
}

/* The inputs each operator's shape function and kernels read without
 * looking: loaders guarantee them, so a file must too. */
static void check_arity(rbuf *r, const vx_graph *g, const vx_node *n)
{
    int need;
    switch (n->op) {
    case VX_OP_SPARSE_TO_DENSE: need = 4; break;
    case VX_OP_CONV:
    case VX_OP_ADD:
    case VX_OP_SUB:
    case VX_OP_MUL:
    case VX_OP_DIV:
    case VX_OP_POW:
    case VX_OP_MATMUL:
    case VX_OP_GATHER:
    case VX_OP_RESHAPE: need = 2; break;
    case VX_OP_CONCAT: need = n->n_in; break; /* every input */
    default: need = 1; break;
    }
    if (n->n_in < need || n->n_in < 1) {
        r_fail(r, "node '%s' (%s): %d inputs, needs %d", n->name, vx_op_name(n->op), n->n_in, need);
        return;
    }
    for (int j = 0; j < need; j++)
        if (n->in[j] < 0) {
            r_fail(r, "node '%s' (%s): input %d missing", n->name, vx_op_name(n->op), j);
            return;
        }
    if (n->op != VX_OP_CONV)
        return;
    /* Weights and bias are float constants, the fused sum operand and the
     * data float activations. */
    const vx_tensor *w = &g->t[n->in[1]], *b = n->n_in > 2 && n->in[2] >= 0 ? &g->t[n->in[2]] : NULL;
    if (n->n_in > 4 || !w->data || w->dtype != VX_DT_F32 || (b && (!b->data || b->dtype != VX_DT_F32)) ||
        g->t[n->in[0]].dtype != VX_DT_F32 || g->t[n->out[0]].dtype != VX_DT_F32 ||
        (n->n_in > 3 && n->in[3] >= 0 && g->t[n->in[3]].dtype != VX_DT_F32))
        r_fail(r, "convolution '%s': inputs are not float weights/bias/activations", n->name);
}

/* Parses the payload into g; returns 0 with r->err set on failure. */
static int read_graph(rbuf *r, vx_graph *g)
{
    char *fmt = r_str(r);
    if (fmt) {
        snprintf(g->format, sizeof g->format, "%s", fmt);
        free(fmt);
    }
    g->opset = r_range(r, 0, 1 << 16, "opset");
    /* Every tensor takes at least 18 bytes and every node 18: counts above
     * what the payload could hold are refused before any allocation. */
    int nt = r_count(r, (int)((r->len - r->off) / 18 < (1 << 24) ? (r->len - r->off) / 18 : (1 << 24)),
                     "tensor count");
    for (int i = 0; i < nt && !r->err[0]; i++)
        read_tensor(r, g);
    char *produced = calloc((size_t)g->nt + 1, 1);
    if (!produced) {
        r_fail(r, "out of memory");
        return 0;
    }
    int nn = r_count(r, (int)((r->len - r->off) / 18 < (1 << 24) ? (r->len - r->off) / 18 : (1 << 24)),
                     "node count");
    for (int i = 0; i < nn && !r->err[0]; i++)
        read_node(r, g, produced);
    int ni = r_count(r, MAX_IO, "graph input count");
    if (!r->err[0] && ni < 1)
        r_fail(r, "the graph has no inputs");
    if (!r->err[0] && !(g->inputs = malloc(sizeof(int) * (size_t)(ni ? ni : 1))))
        r_fail(r, "out of memory");
    for (int i = 0; i < ni && !r->err[0]; i++) {
        int t = r_i32(r);
        if (t < 0 || t >= g->nt || produced[t] || g->t[t].data)
            r_fail(r, "graph input %d: tensor %d is not a free activation", i, t);
        else
            g->inputs[g->n_inputs++] = t;
    }
    /* Every activation a node reads must come from somewhere. */
    for (int i = 0; i < g->n_inputs; i++)
        produced[g->inputs[i]] = 1;
    for (int i = 0; i < g->nn && !r->err[0]; i++)
        check_arity(r, g, &g->n[i]);
    for (int i = 0; i < g->nn && !r->err[0]; i++)
        for (int j = 0; j < g->n[i].n_in; j++) {
            int t = g->n[i].in[j];
            if (t >= 0 && !produced[t] && !g->t[t].data) {
                r_fail(r, "node '%s' reads '%s', which nothing produces", g->n[i].name, g->t[t].name);
                break;
            }
        }
    free(produced);
    int no = r_count(r, MAX_IO, "graph output count");
    if (!r->err[0] && no < 1)
        r_fail(r, "the graph has no outputs");
    int outs[MAX_IO + 1];
    char *names[MAX_IO + 1];
    int got = 0;
    for (int i = 0; i < no && !r->err[0]; i++) {
        outs[i] = r_i32(r);
        if (outs[i] < 0 || outs[i] >= g->nt)
            r_fail(r, "graph output %d: tensor index %d out of range", i, outs[i]);
        names[i] = r_str(r);
        if (!names[i])
            break;
        got = i + 1;
    }
    if (!r->err[0] && !vx_graph_set_outputs(g, outs, (const char *const *)names, no))
        r_fail(r, "out of memory");
    for (int i = 0; i < got; i++)
        free(names[i]);
    int nm = r_count(r, 1 << 16, "metadata count");
    if (!r->err[0] && nm) {
        g->meta_keys = calloc((size_t)nm, sizeof(char *));
        g->meta_values = calloc((size_t)nm, sizeof(char *));
        if (!g->meta_keys || !g->meta_values)
            r_fail(r, "out of memory");
        for (int i = 0; i < nm && !r->err[0]; i++) {
            char *k = r_str(r), *v = r_str(r);
            if (!k || !v) {
                free(k);
                free(v);
                break;
            }
            g->meta_keys[i] = k;
            g->meta_values[i] = v;
            g->n_meta = i + 1;
        }
    }
    if (!r->err[0] && r->off != r->len)
        r_fail(r, "%zu bytes after the end of the graph", r->len - r->off);
    return !r->err[0];
}

vx_err vx_nn_engine_file_decode(const char *name, const uint8_t *buf, size_t len,
                                vx_nn_engine_file_info *info, vx_nn_model **out)
{
    *out = NULL;
    if (!name)
        name = "<memory>";
    vx_nn_engine_file_info in;
    vx_err e = check_header(name, buf, len, (uint64_t)len, &in);
    if (e)
        return e;
    const uint8_t *payload = buf + HDR;
    if (get_u32(buf + 208) != vx_nn_crc32(0, payload, (size_t)in.payload_size))
        return vx_fail(VX_ERR_FORMAT, "%s: engine payload checksum mismatch (corrupt file)", name);

    vx_graph *g = vx_graph_new();
    if (!g)
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    rbuf r = {payload, (size_t)in.payload_size, 0, name, ""};
    if (!read_graph(&r, g)) {
        vx_graph_free(g);
        return vx_fail(VX_ERR_FORMAT, "%s: corrupt engine graph: %s", name, r.err);
    }
    /* Shapes as saved: inference must reproduce them, or the file does not
     * describe a graph this build computes the same way. */
    int nt = g->nt;
    int *rank = malloc(sizeof(int) * ((size_t)nt + 1));
    int64_t(*dims)[VX_NN_MAX_RANK] = malloc(sizeof *dims * ((size_t)nt + 1));
    if (!rank || !dims) {
        free(rank);
        free(dims);
        vx_graph_free(g);
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < nt; i++) {
        rank[i] = g->t[i].rank;
        memcpy(dims[i], g->t[i].dims, sizeof dims[i]);
        if (!g->t[i].data && g->t[i].producer >= 0) /* activations are re-inferred */
            g->t[i].rank = -1;
    }
    vx_nn_model *m = NULL;
    e = vx_nn_model_from_graph(g, 0, &m); /* compacts (a no-op on a saved graph), folds nothing, infers */
    if (e) {
        free(rank);
        free(dims);
        return vx_fail_prefix(e, "%s: engine graph does not check: ", name);
    }
    const vx_graph *mg = m->g;
    int same = mg->nt == nt;
    for (int i = 0; same && i < nt; i++)
        same = mg->t[i].rank == rank[i] &&
               !memcmp(mg->t[i].dims, dims[i], sizeof(int64_t) * (size_t)(rank[i] > 0 ? rank[i] : 0));
    free(rank);
    free(dims);
    if (!same) {
        vx_nn_model_destroy(m);
        return vx_fail(VX_ERR_FORMAT, "%s: engine graph shapes differ from what this build infers", name);
    }
    if (in.precision == VX_NN_INT8 && !vx_nn_model_is_calibrated(m)) {
        vx_nn_model_destroy(m);
        return vx_fail(VX_ERR_FORMAT, "%s: INT8 engine without activation ranges", name);
    }
    if (info)
        *info = in;
    *out = m;
    return VX_OK;
}

vx_err vx_nn_engine_file_load(const char *path, vx_nn_engine_file_info *info, vx_nn_model **out)
{
    *out = NULL;
    /* The header first: a file for another machine is refused with its
     * real reason before megabytes are read. */
    vx_err e = vx_nn_engine_file_probe(path, NULL);
    if (e)
        return e;
    uint8_t *buf;
    size_t len;
    if ((e = vx_read_file(path, MAX_FILE, &buf, &len)))
        return e;
    e = vx_nn_engine_file_decode(path, buf, len, info, out);
    free(buf);
    return e;
}

/* ---- source fingerprint ------------------------------------------------ */

static vx_err crc_file(const char *path, uint64_t *size, uint32_t *crc)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return vx_fail(VX_ERR_IO, "%s: %s", path, strerror(errno));
    uint8_t *b = malloc(1 << 20);
    if (!b) {
        fclose(f);
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    }
    size_t n;
    while ((n = fread(b, 1, 1 << 20, f)) > 0) {
        *crc = vx_nn_crc32(*crc, b, n);
        *size += n;
    }
    int bad = ferror(f);
    fclose(f);
    free(b);
    return bad ? vx_fail(VX_ERR_IO, "%s: read error", path) : VX_OK;
}

vx_err vx_nn_source_fingerprint(const char *path, uint64_t *size, uint32_t *crc)
{
    *size = 0;
    *crc = 0;
    vx_err e = crc_file(path, size, crc);
    if (e)
        return e;
    size_t l = strlen(path);
    if (l < 5 || strcmp(path + l - 5, ".json"))
        return VX_OK;
    /* TFJS: the weights live in the shards the manifest names. */
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root)
        return VX_OK; /* not JSON after all: the file alone identifies it */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *d = dirname(dir);
    json_t *man = json_object_get(root, "weightsManifest");
    size_t i, j;
    json_t *grp, *p;
    json_array_foreach(man, i, grp)
    {
        json_array_foreach(json_object_get(grp, "paths"), j, p)
        {
            if (!json_is_string(p) || strchr(json_string_value(p), '/'))
                continue;
            char shard[8192];
            snprintf(shard, sizeof shard, "%s/%s", d, json_string_value(p));
            if ((e = crc_file(shard, size, crc))) {
                json_decref(root);
                return e;
            }
        }
    }
    json_decref(root);
    return VX_OK;
}
