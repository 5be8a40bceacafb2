/*
 * ONNX loader: a ModelProto (protobuf-c code generated at build time from
 * the system's onnx.proto) mapped into the graph IR.
 *
 * Every node is shape-inferred as soon as it is mapped, and a node whose
 * inputs are all constant is evaluated right away by the reference kernels.
 * So the shape sub-graphs exporters leave behind (Shape -> Gather ->
 * Unsqueeze -> Concat -> Reshape, ...) are constants by the time a consumer
 * needs them, and operators that want constant parameters (Reshape, Slice,
 * Resize, Split, ...) can read them while mapping.  Operators that only
 * ever compute such parameters (Shape, ConstantOfShape, Range, Equal,
 * Where, ...) are evaluated here and have no IR operator.
 *
 * The file is untrusted: protobuf nesting is bounded before parsing (the
 * parser recurses), the parser's allocations are budgeted against the file
 * size, every size is checked against its shape before a copy, external
 * data must stay inside the model's folder, and every failure names the
 * node, its operator and the opset.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/vx_strmap.h"
#include "nn/graph.h"
#include "onnx/onnx.pb-c.h"

#define MAX_MODEL_BYTES ((size_t)2 << 30) /* protobuf's own 2 GiB limit */
#define MAX_NESTING 64                    /* messages inside messages */
#define FOLD_MAX_ELEMS (16 << 20)         /* larger constants are not materialised at load */
/* Kernel steps (about multiply-adds) spent evaluating constants per load:
 * shape arithmetic and weight transposes need a tiny fraction; a file
 * asking for more runs the rest at inference instead of stalling the load. */
#define FOLD_MAX_WORK 5e8
#define MAX_NODE_IN 64 /* what the kernels' argument arrays hold */
#define MAX_NODE_OUT 16
#define OPSET_MIN 11
#define OPSET_MAX 21

/* TensorProto.DataType */
enum {
    DT_FLOAT = 1,
    DT_UINT8 = 2,
    DT_INT8 = 3,
    DT_UINT16 = 4,
    DT_INT16 = 5,
    DT_INT32 = 6,
    DT_INT64 = 7,
    DT_STRING = 8,
    DT_BOOL = 9,
    DT_FLOAT16 = 10,
    DT_DOUBLE = 11,
    DT_UINT32 = 12,
    DT_UINT64 = 13,
    DT_BFLOAT16 = 16,
};

typedef struct {
    const char *path; /* model file, or the caller's name for an in-memory model */
    char *dir;        /* the model's folder (resolved), NULL in memory */
    vx_graph *g;
    vx_strmap *names; /* ONNX value name -> tensor index */
    int opset;
    double fold_work; /* spent so far, see FOLD_MAX_WORK */
} onnx_ctx;

/* One ONNX node being mapped. */
typedef struct {
    onnx_ctx *c;
    const Onnx__NodeProto *np;
    char name[256];
    const char *op;
    int in[MAX_NODE_IN]; /* tensor index, -1 for an absent optional input */
    int n_in;
} nctx;

static const char *dtype_name(int dt)
{
    static const char *const names[] = {"UNDEFINED", "FLOAT",  "UINT8",     "INT8",       "UINT16",  "INT16",
                                        "INT32",     "INT64",  "STRING",    "BOOL",       "FLOAT16", "DOUBLE",
                                        "UINT32",    "UINT64", "COMPLEX64", "COMPLEX128", "BFLOAT16"};
    return dt >= 0 && dt < (int)(sizeof names / sizeof names[0]) ? names[dt] : "unknown";
}

static vx_err nfail(const nctx *n, vx_err code, const char *fmt, ...) VX_PRINTF(3, 4);
static vx_err nfail(const nctx *n, vx_err code, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return vx_fail(code, "%s: node '%s' (%s, opset %d): %s", n->c->path, n->name, n->op, n->c->opset, msg);
}

#define OOM(c) vx_fail(VX_ERR_NOMEM, "%s: out of memory", (c)->path)

/* ---- protobuf parsing --------------------------------------------------- */

/* protobuf-c recurses once per nested message and has no depth limit, so a
 * few KB of nested AttributeProto.g could exhaust the stack: walk the wire
 * format first, following message fields by descriptor, and refuse deep
 * nesting and malformed framing. */
static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = r;
            return 1;
        }
    }
    return 0;
}

static const char *wire_check(const uint8_t *p, size_t len, const ProtobufCMessageDescriptor *desc, int depth)
{
    const uint8_t *end = p + len;
    if (depth > MAX_NESTING)
        return "messages nested too deeply";
    while (p < end) {
        uint64_t tag, v;
        if (!read_varint(&p, end, &tag))
            return "truncated field tag";
        switch (tag & 7) {
        case 0:
            if (!read_varint(&p, end, &v))
                return "truncated varint";
            break;
        case 1:
            if (end - p < 8)
                return "truncated 64-bit field";
            p += 8;
            break;
        case 5:
            if (end - p < 4)
                return "truncated 32-bit field";
            p += 4;
            break;
        case 2: {
            if (!read_varint(&p, end, &v) || v > (uint64_t)(end - p))
                return "length-delimited field runs past its message";
            const ProtobufCFieldDescriptor *f =
                desc && tag >> 3 <= UINT_MAX
                    ? protobuf_c_message_descriptor_get_field(desc, (unsigned)(tag >> 3))
                    : NULL;
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
                const char *why = wire_check(p, (size_t)v, f->descriptor, depth + 1);
                if (why)
                    return why;
            }
            p += v;
            break;
        }
        default: return "unsupported wire type (groups or garbage)";
        }
    }
    return NULL;
}

/* The parser's allocations are budgeted: a few bytes of input can ask for a
 * large message struct, so bound the total instead of trusting the ratio. */
typedef struct {
    size_t left;
} budget;

static void *budget_alloc(void *ud, size_t size)
{
    budget *b = ud;
    if (size > b->left)
        return NULL;
    b->left -= size;
    return malloc(size ? size : 1);
}

static void budget_free(void *ud, void *p)
{
    (void)ud;
    free(p);
}

/* ---- tensors ------------------------------------------------------------ */

/* Bytes per element in raw_data and the IR type a data type maps to;
 * 0 for types this engine does not hold. */
static size_t raw_size(int dt, vx_dtype *ir)
{
    switch (dt) {
    case DT_FLOAT: *ir = VX_DT_F32; return 4;
    case DT_FLOAT16:
    case DT_BFLOAT16: *ir = VX_DT_F32; return 2;
    case DT_DOUBLE: *ir = VX_DT_F32; return 8;
    case DT_UINT8:
    case DT_INT8:
    case DT_BOOL: *ir = VX_DT_I64; return 1;
    case DT_UINT16:
    case DT_INT16: *ir = VX_DT_I64; return 2;
    case DT_INT32:
    case DT_UINT32: *ir = VX_DT_I64; return 4;
    case DT_INT64:
    case DT_UINT64: *ir = VX_DT_I64; return 8;
    }
    return 0;
}

/* One little-endian element of raw data as the IR type. */
static void raw_elem(int dt, const uint8_t *s, void *dst, int64_t i)
{
    float *f = dst;
    int64_t *q = dst;
    switch (dt) {
    case DT_FLOAT: memcpy(&f[i], s, 4); break;
    case DT_FLOAT16: f[i] = vx_half_to_float((uint16_t)(s[0] | s[1] << 8)); break;
    case DT_BFLOAT16: {
        uint32_t b = (uint32_t)(s[0] | s[1] << 8) << 16;
        memcpy(&f[i], &b, 4);
        break;
    }
    case DT_DOUBLE: {
        double d;
        memcpy(&d, s, 8);
        f[i] = (float)d;
        break;
    }
    case DT_UINT8:
    case DT_BOOL: q[i] = s[0]; break;
    case DT_INT8: q[i] = (int8_t)s[0]; break;
    case DT_UINT16: q[i] = (uint16_t)(s[0] | s[1] << 8); break;
    case DT_INT16: q[i] = (int16_t)(uint16_t)(s[0] | s[1] << 8); break;
    case DT_INT32: {
        int32_t v;
        memcpy(&v, s, 4);
        q[i] = v;
        break;
    }
    case DT_UINT32: {
        uint32_t v;
        memcpy(&v, s, 4);
        q[i] = v;
        break;
    }
    default: memcpy(&q[i], s, 8); break; /* INT64, UINT64 (wraps above 2^63) */
    }
}

/* Is `full` inside `dir` (both resolved)? */
static int path_inside(const char *dir, const char *full)
{
    size_t l = strlen(dir);
    return !strncmp(dir, full, l) && (full[l] == '/' || (l == 1 && dir[0] == '/'));
}

/* Reads an external-data tensor's bytes: location relative to the model's
 * folder and resolved inside it, offset/length checked against the file. */
static vx_err read_external(onnx_ctx *c, const Onnx__TensorProto *tp, const char *tname, size_t want,
                            uint8_t **out)
{
    const char *loc = NULL;
    int64_t off = 0, len = -1;
    *out = NULL;
    if (!c->dir)
        return vx_fail(VX_ERR_UNSUPPORTED,
                       "%s: tensor '%s': external data needs a model file (loaded from memory)", c->path,
                       tname);
    for (size_t i = 0; i < tp->n_external_data; i++) {
        const Onnx__StringStringEntryProto *kv = tp->external_data[i];
        if (!kv->key || !kv->value)
            continue;
        char *end;
        if (!strcmp(kv->key, "location")) {
            loc = kv->value;
        } else if (!strcmp(kv->key, "offset") || !strcmp(kv->key, "length")) {
            errno = 0;
            long long v = strtoll(kv->value, &end, 10);
            if (errno || *end || end == kv->value || v < 0)
                return vx_fail(VX_ERR_FORMAT, "%s: tensor '%s': external data %s '%s' is not a byte count",
                               c->path, tname, kv->key, kv->value);
            if (kv->key[0] == 'o')
                off = v;
            else
                len = v;
        }
    }
    if (!loc || !*loc)
        return vx_fail(VX_ERR_FORMAT, "%s: tensor '%s': external data without a location", c->path, tname);
    if (loc[0] == '/')
        return vx_fail(VX_ERR_FORMAT, "%s: tensor '%s': external data location '%s' is absolute", c->path,
                       tname, loc);
    if (len >= 0 && (uint64_t)len != want)
        return vx_fail(VX_ERR_FORMAT, "%s: tensor '%s': external data length %lld, the shape needs %zu bytes",
                       c->path, tname, (long long)len, want);
    char joined[PATH_MAX], full[PATH_MAX];
    if (snprintf(joined, sizeof joined, "%s/%s", c->dir, loc) >= (int)sizeof joined)
        return vx_fail(VX_ERR_FORMAT, "%s: tensor '%s': external data path too long", c->path, tname);
    if (!realpath(joined, full))
        return vx_fail(VX_ERR_IO, "%s: tensor '%s': external data file '%s': %s", c->path, tname, loc,
                       strerror(errno));
    /* Symlinks and ".." are resolved above: what counts is where it lands. */
    if (!path_inside(c->dir, full))
        return vx_fail(VX_ERR_FORMAT,
                       "%s: tensor '%s': external data location '%s' is outside the model's folder", c->path,
                       tname, loc);
    FILE *f = fopen(full, "rb");
    if (!f)
        return vx_fail(VX_ERR_IO, "%s: tensor '%s': cannot open external data '%s': %s", c->path, tname, loc,
                       strerror(errno));
    struct stat st;
    vx_err e = VX_OK;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
        e = vx_fail(VX_ERR_IO, "%s: tensor '%s': external data '%s' is not a regular file", c->path, tname,
                    loc);
    } else if ((uint64_t)off > (uint64_t)st.st_size || want > (uint64_t)st.st_size - (uint64_t)off) {
        e = vx_fail(
            VX_ERR_FORMAT,
            "%s: tensor '%s': external data '%s' holds %lld bytes, the tensor needs %zu at offset %lld",
            c->path, tname, loc, (long long)st.st_size, want, (long long)off);
    } else if (!(*out = malloc(want ? want : 1))) {
        e = OOM(c);
    } else if (fseeko(f, (off_t)off, SEEK_SET) || fread(*out, 1, want, f) != want) {
        e = vx_fail(VX_ERR_IO, "%s: tensor '%s': short read from external data '%s'", c->path, tname, loc);
        free(*out);
        *out = NULL;
    }
    fclose(f);
    return e;
}

/* Converts a TensorProto into a new constant tensor named `name`. */
static vx_err add_tensor_proto(onnx_ctx *c, const Onnx__TensorProto *tp, const char *name, int *id)
{
    int dt = tp->has_data_type ? tp->data_type : 0;
    vx_dtype ir = VX_DT_F32;
    size_t es = raw_size(dt, &ir);
    if (!es)
        return vx_fail(VX_ERR_UNSUPPORTED, "%s: tensor '%s': data type %s (%d) is not supported", c->path,
                       name, dtype_name(dt), dt);
    if (tp->n_dims > VX_NN_MAX_RANK)
        return vx_fail(VX_ERR_UNSUPPORTED, "%s: tensor '%s': rank %zu (at most %d)", c->path, name,
                       tp->n_dims, VX_NN_MAX_RANK);
    if (tp->segment)
        return vx_fail(VX_ERR_UNSUPPORTED, "%s: tensor '%s': segmented tensors are not supported", c->path,
                       name);
    int64_t dims[VX_NN_MAX_RANK], n = 1;
    for (size_t i = 0; i < tp->n_dims; i++) {
        dims[i] = tp->dims[i];
        if (dims[i] < 0)
            return vx_fail(VX_ERR_FORMAT, "%s: tensor '%s': negative dimension %lld", c->path, name,
                           (long long)dims[i]);
        if (dims[i] && n > VX_MAX_ELEMS / dims[i])
            return vx_fail(VX_ERR_FORMAT, "%s: tensor '%s': more than 2^31 elements", c->path, name);
        n *= dims[i];
    }
    size_t want = (size_t)n * es;
    /* raw_data may be present and empty (data NULL): a flag, not the pointer, says which encoding. */
    static const uint8_t none[1];
    const uint8_t *raw = NULL;
    uint8_t *ext = NULL;
    size_t have = 0;
    int external = tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    if (external) {
        vx_err e = read_external(c, tp, name, want, &ext);
        if (e)
            return e;
        raw = ext ? ext : none;
        have = want;
    } else if (tp->has_raw_data) {
        raw = tp->raw_data.data ? tp->raw_data.data : none;
        have = tp->raw_data.len;
    } else {
        /* Typed fields: which one holds this data type, and how many. */
        switch (dt) {
        case DT_FLOAT: have = tp->n_float_data; break;
        case DT_INT64: have = tp->n_int64_data; break;
        case DT_DOUBLE: have = tp->n_double_data; break;
        case DT_UINT32:
        case DT_UINT64: have = tp->n_uint64_data; break;
        default: have = tp->n_int32_data; break;
        }
        if ((int64_t)have != n)
            return vx_fail(VX_ERR_FORMAT, "%s: tensor '%s': %zu values for a shape of %lld elements", c->path,
                           name, have, (long long)n);
    }
    if (raw && have != want) {
        free(ext);
        return vx_fail(VX_ERR_FORMAT, "%s: tensor '%s': %zu data bytes for %lld elements of %s (%zu bytes)",
                       c->path, name, have, (long long)n, dtype_name(dt), want);
    }
    *id = vx_graph_add_const(c->g, name, ir, (int)tp->n_dims, dims, NULL);
    if (*id < 0) {
        free(ext);
        return OOM(c);
    }
    void *dst = c->g->t[*id].data;
    for (int64_t i = 0; i < n; i++) {
        if (raw) {
            raw_elem(dt, raw + (size_t)i * es, dst, i);
            continue;
        }
        switch (dt) {
        case DT_FLOAT: ((float *)dst)[i] = tp->float_data[i]; break;
        case DT_DOUBLE: ((float *)dst)[i] = (float)tp->double_data[i]; break;
        case DT_INT64: ((int64_t *)dst)[i] = tp->int64_data[i]; break;
        case DT_UINT32:
        case DT_UINT64: ((int64_t *)dst)[i] = (int64_t)tp->uint64_data[i]; break;
        case DT_FLOAT16: ((float *)dst)[i] = vx_half_to_float((uint16_t)tp->int32_data[i]); break;
        case DT_BFLOAT16: {
            uint32_t b = (uint32_t)(uint16_t)tp->int32_data[i] << 16;
            memcpy((float *)dst + i, &b, 4);
            break;
        }
        default: ((int64_t *)dst)[i] = tp->int32_data[i]; break;
        }
    }
    free(ext);
    return VX_OK;
}

/* ---- attributes --------------------------------------------------------- */

static const Onnx__AttributeProto *find_attr(const nctx *n, const char *name)
{
    for (size_t i = 0; i < n->np->n_attribute; i++) {
        const Onnx__AttributeProto *a = n->np->attribute[i];
        if (a->name && !strcmp(a->name, name))
            return a;
    }
    return NULL;
}

static int attr_type(const Onnx__AttributeProto *a)
{
    return a->has_type ? (int)a->type : -1;
}

static vx_err attr_int(const nctx *n, const char *name, int64_t dflt, int64_t *out)
{
    const Onnx__AttributeProto *a = find_attr(n, name);
    *out = dflt;
    if (!a)
        return VX_OK;
    if ((attr_type(a) >= 0 && a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT) || !a->has_i)
        return nfail(n, VX_ERR_FORMAT, "attribute '%s' is not an integer", name);
    *out = a->i;
    return VX_OK;
}

static vx_err attr_float(const nctx *n, const char *name, float dflt, float *out)
{
    const Onnx__AttributeProto *a = find_attr(n, name);
    *out = dflt;
    if (!a)
        return VX_OK;
    if ((attr_type(a) >= 0 && a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT) || !a->has_f)
        return nfail(n, VX_ERR_FORMAT, "attribute '%s' is not a float", name);
    *out = a->f;
    return VX_OK;
}

/* *count = -1 when absent. */
static vx_err attr_ints(const nctx *n, const char *name, int64_t *out, int cap, int *count)
{
    const Onnx__AttributeProto *a = find_attr(n, name);
    *count = -1;
    if (!a)
        return VX_OK;
    if (attr_type(a) >= 0 && a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS)
        return nfail(n, VX_ERR_FORMAT, "attribute '%s' is not a list of integers", name);
    if (a->n_ints > (size_t)cap)
        return nfail(n, VX_ERR_UNSUPPORTED, "attribute '%s' has %zu values (at most %d)", name, a->n_ints,
                     cap);
    for (size_t i = 0; i < a->n_ints; i++)
        out[i] = a->ints[i];
    *count = (int)a->n_ints;
    return VX_OK;
}

static vx_err attr_str(const nctx *n, const char *name, const char *dflt, char *buf, size_t cap)
{
    const Onnx__AttributeProto *a = find_attr(n, name);
    snprintf(buf, cap, "%s", dflt);
    if (!a)
        return VX_OK;
    if ((attr_type(a) >= 0 && a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING) || !a->has_s)
        return nfail(n, VX_ERR_FORMAT, "attribute '%s' is not a string", name);
    size_t l = a->s.len < cap - 1 ? a->s.len : cap - 1;
    if (l) /* an empty string may have no data pointer */
        memcpy(buf, a->s.data, l);
    buf[l] = 0;
    return VX_OK;
}

/* ---- emitting IR nodes -------------------------------------------------- */

static vx_tensor *T(const nctx *n, int id)
{
    return &n->c->g->t[id];
}

/* A constant input, or NULL. */
static const vx_tensor *const_in(const nctx *n, int k)
{
    return k < n->n_in && n->in[k] >= 0 && T(n, n->in[k])->data ? T(n, n->in[k]) : NULL;
}

static vx_err need_const(const nctx *n, int k, const char *what, const vx_tensor **t)
{
    *t = const_in(n, k);
    if (!*t)
        return nfail(n, VX_ERR_UNSUPPORTED,
                     "input %d (%s) must be a constant; it depends on the network input", k, what);
    return VX_OK;
}

static int64_t ci64(const vx_tensor *t, int64_t i)
{
    if (t->dtype == VX_DT_I64)
        return ((const int64_t *)t->data)[i];
    float f = ((const float *)t->data)[i];
    return f != f ? 0 : f >= 9.2e18f ? INT64_MAX : f <= -9.2e18f ? INT64_MIN : (int64_t)f;
}

static float cf32(const vx_tensor *t, int64_t i)
{
    return t->dtype == VX_DT_F32 ? ((const float *)t->data)[i] : (float)((const int64_t *)t->data)[i];
}

/* The tensor for output k of the ONNX node: named like the ONNX value
 * (registered so later nodes find it), or anonymous for an unused optional
 * output. */
static vx_err out_tensor(nctx *n, int k, int *id)
{
    onnx_ctx *c = n->c;
    const char *nm = k < (int)n->np->n_output ? n->np->output[k] : NULL;
    char anon[300];
    if (!nm || !*nm) {
        snprintf(anon, sizeof anon, "%s:%d", n->name, k);
        nm = anon;
    } else if (vx_strmap_get(c->names, nm, -1) >= 0) {
        return nfail(n, VX_ERR_FORMAT, "output '%s' is already defined elsewhere", nm);
    }
    *id = vx_graph_add_tensor(c->g, nm);
    if (*id < 0 || (nm != anon && !vx_strmap_put(c->names, nm, *id)))
        return OOM(c);
    return VX_OK;
}

/* A fresh intermediate tensor for lowered operators. */
static vx_err tmp_tensor(nctx *n, const char *suffix, int *id)
{
    char nm[400];
    snprintf(nm, sizeof nm, "%s/%s", n->name, suffix);
    *id = vx_graph_add_tensor(n->c->g, nm);
    return *id < 0 ? OOM(n->c) : VX_OK;
}

static vx_err new_const(nctx *n, const char *suffix, vx_dtype dt, int rank, const int64_t *dims,
                        const void *data, int *id)
{
    char nm[400];
    snprintf(nm, sizeof nm, "%s/%s", n->name, suffix);
    *id = vx_graph_add_const(n->c->g, nm, dt, rank, dims, data);
    return *id < 0 ? OOM(n->c) : VX_OK;
}

/* Adds an IR node (attributes are set by the caller before finish()). */
static vx_err add(nctx *n, vx_op op, const int *in, int n_in, const int *out, int n_out, int *node)
{
    *node = vx_graph_add_node_out(n->c->g, op, n->name, in, n_in, out, n_out);
    return *node < 0 ? OOM(n->c) : VX_OK;
}

/* Infers the node's shapes and evaluates it now when its inputs are all
 * constant: later nodes may need the result as a parameter. */
/* Steps the reference kernel takes for a node: one per element, times the
 * reduction for convolutions, pooling and matmuls. */
static double node_work(const vx_graph *g, const vx_node *nd)
{
    double w = 0;
    for (int j = 0; j < nd->n_out; j++)
        w += (double)vx_tensor_elems(&g->t[nd->out[j]]);
    if (nd->op == VX_OP_CONV) {
        const vx_tensor *k = &g->t[nd->in[1]];
        return w * (double)k->dims[1] * (double)k->dims[2] * (double)k->dims[3];
    }
    if (nd->op == VX_OP_MAXPOOL || nd->op == VX_OP_AVGPOOL)
        return w * nd->a.pool.kh * nd->a.pool.kw;
    if (nd->op == VX_OP_MATMUL) {
        const vx_tensor *a = &g->t[nd->in[0]];
        return w * (double)a->dims[a->rank - 1];
    }
    for (int j = 0; j < nd->n_in; j++)
        if (nd->in[j] >= 0)
            w += (double)vx_tensor_elems(&g->t[nd->in[j]]);
    return w;
}

static vx_err finish(nctx *n, int id)
{
    vx_graph *g = n->c->g;
    vx_node *nd = &g->n[id];
    vx_err e = vx_graph_infer_node(g, nd);
    if (e)
        return vx_fail_prefix(e, "%s: %s (opset %d): ", n->c->path, n->op, n->c->opset);
    for (int j = 0; j < nd->n_in; j++)
        if (nd->in[j] >= 0 && !g->t[nd->in[j]].data)
            return VX_OK;
    for (int j = 0; j < nd->n_out; j++)
        if (vx_tensor_elems(&g->t[nd->out[j]]) > FOLD_MAX_ELEMS)
            return VX_OK;
    double work = node_work(g, nd);
    if (n->c->fold_work + work > FOLD_MAX_WORK)
        return VX_OK;
    n->c->fold_work += work;
    const void *in[MAX_NODE_IN];
    void *out[MAX_NODE_OUT];
    for (int j = 0; j < nd->n_in; j++)
        in[j] = nd->in[j] >= 0 ? g->t[nd->in[j]].data : NULL;
    for (int j = 0; j < nd->n_out; j++) {
        vx_tensor *t = &g->t[nd->out[j]];
        int64_t ne = vx_tensor_elems(t);
        if (!(t->data = calloc((size_t)(ne > 0 ? ne : 1), 8)))
            return OOM(n->c);
        out[j] = t->data;
    }
    e = vx_ref_run_node(g, nd, in, out);
    if (e)
        return vx_fail_prefix(e, "%s: evaluating constant %s (opset %d): ", n->c->path, n->op, n->c->opset);
    nd->dead = 1;
    return VX_OK;
}

/* Single-input, single-output IR node writing the ONNX output. */
static vx_err simple(nctx *n, vx_op op, int x, int *node)
{
    int y;
    vx_err e = out_tensor(n, 0, &y);
    if (!e)
        e = add(n, op, &x, 1, &y, 1, node);
    return e;
}

/* Reshape to a constant shape, into tensor y. */
static vx_err reshape_to(nctx *n, int x, int rank, const int64_t *dims, int y)
{
    int64_t sd[1] = {rank};
    int s, id;
    vx_err e = new_const(n, "shape", VX_DT_I64, 1, sd, dims, &s);
    if (e)
        return e;
    int in[2] = {x, s};
    if ((e = add(n, VX_OP_RESHAPE, in, 2, &y, 1, &id)))
        return e;
    return finish(n, id);
}

/* The ONNX output 0 as a new constant with this payload. */
static vx_err const_output(nctx *n, vx_dtype dt, int rank, const int64_t *dims, const void *data)
{
    const char *nm = n->np->n_output ? n->np->output[0] : NULL;
    if (!nm || !*nm)
        return VX_OK; /* nobody can read it */
    if (vx_strmap_get(n->c->names, nm, -1) >= 0)
        return nfail(n, VX_ERR_FORMAT, "output '%s' is already defined elsewhere", nm);
    int id = vx_graph_add_const(n->c->g, nm, dt, rank, dims, data);
    if (id < 0 || !vx_strmap_put(n->c->names, nm, id))
        return OOM(n->c);
    return VX_OK;
}

/* ---- operators ---------------------------------------------------------- */

static vx_err need_rank(const nctx *n, int k, int rank)
{
    if (T(n, n->in[k])->rank != rank)
        return nfail(n, VX_ERR_UNSUPPORTED, "input %d has rank %d; only rank %d is supported", k,
                     T(n, n->in[k])->rank, rank);
    return VX_OK;
}

static vx_err parse_auto_pad(const nctx *n, vx_pad_mode *pm)
{
    char s[32];
    vx_err e = attr_str(n, "auto_pad", "NOTSET", s, sizeof s);
    if (e)
        return e;
    if (!strcmp(s, "NOTSET"))
        *pm = VX_PAD_EXPLICIT;
    else if (!strcmp(s, "SAME_UPPER"))
        *pm = VX_PAD_SAME_UPPER;
    else if (!strcmp(s, "SAME_LOWER"))
        *pm = VX_PAD_SAME_LOWER;
    else if (!strcmp(s, "VALID"))
        *pm = VX_PAD_VALID;
    else
        return nfail(n, VX_ERR_FORMAT, "unknown auto_pad '%s'", s);
    return VX_OK;
}

/* Reads a 2-D window attribute (kernel/strides/dilations: 2 values in
 * [1, 1024]; pads: 4 values in [0, 65536]). */
static vx_err window_attr(const nctx *n, const char *name, int want, int64_t lo, int64_t hi, int64_t *v)
{
    int cnt;
    vx_err e = attr_ints(n, name, v, 8, &cnt);
    if (e)
        return e;
    if (cnt >= 0 && cnt != want)
        return nfail(n, VX_ERR_UNSUPPORTED, "attribute '%s' has %d values; only 2-D windows are supported",
                     name, cnt);
    for (int i = 0; cnt > 0 && i < want; i++)
        if (v[i] < lo || v[i] > hi)
            return nfail(n, VX_ERR_FORMAT, "attribute '%s' value %lld outside [%lld, %lld]", name,
                         (long long)v[i], (long long)lo, (long long)hi);
    return VX_OK;
}

static vx_err map_conv(nctx *n)
{
    const vx_tensor *w, *b = NULL;
    vx_err e;
    if ((e = need_rank(n, 0, 4)) || (e = need_const(n, 1, "weights", &w)))
        return e;
    if (w->rank != 4 || w->dtype != VX_DT_F32)
        return nfail(n, VX_ERR_UNSUPPORTED, "weights must be a 4-D float tensor");
    if (n->n_in > 2 && n->in[2] >= 0) {
        if ((e = need_const(n, 2, "bias", &b)))
            return e;
        if (b->rank != 1 || b->dtype != VX_DT_F32 || b->dims[0] != w->dims[0])
            return nfail(n, VX_ERR_FORMAT, "bias must be a float vector of %lld values",
                         (long long)w->dims[0]);
    }
    int64_t ks[8] = {w->dims[2], w->dims[3]}, st[8] = {1, 1}, dl[8] = {1, 1}, pads[8] = {0, 0, 0, 0}, group;
    vx_pad_mode pm;
    if ((e = window_attr(n, "kernel_shape", 2, 1, 1024, ks)) ||
        (e = window_attr(n, "strides", 2, 1, 1024, st)) ||
        (e = window_attr(n, "dilations", 2, 1, 1024, dl)) ||
        (e = window_attr(n, "pads", 4, 0, 65536, pads)) || (e = attr_int(n, "group", 1, &group)) ||
        (e = parse_auto_pad(n, &pm)))
        return e;
    if (ks[0] != w->dims[2] || ks[1] != w->dims[3])
        return nfail(n, VX_ERR_FORMAT, "kernel_shape %lldx%lld differs from the weights' %lldx%lld",
                     (long long)ks[0], (long long)ks[1], (long long)w->dims[2], (long long)w->dims[3]);
    if (group < 1 || group > T(n, n->in[0])->dims[1])
        return nfail(n, VX_ERR_FORMAT, "group %lld out of range", (long long)group);
    int in[3] = {n->in[0], n->in[1], b ? n->in[2] : -1}, y, id;
    if ((e = out_tensor(n, 0, &y)) || (e = add(n, VX_OP_CONV, in, 3, &y, 1, &id)))
        return e;
    vx_conv_attr *a = &n->c->g->n[id].a.conv;
    a->sh = (int)st[0], a->sw = (int)st[1], a->dh = (int)dl[0], a->dw = (int)dl[1];
    a->pt = (int)pads[0], a->pl = (int)pads[1], a->pb = (int)pads[2], a->pr = (int)pads[3];
    a->pad_mode = pm;
    a->groups = (int)group;
    return finish(n, id);
}

static vx_err map_pool(nctx *n, vx_op op, int global)
{
    vx_err e = need_rank(n, 0, 4);
    if (e)
        return e;
    if (n->np->n_output > 1 && n->np->output[1] && *n->np->output[1])
        return nfail(n, VX_ERR_UNSUPPORTED, "the Indices output is not supported");
    const vx_tensor *x = T(n, n->in[0]);
    int64_t ks[8] = {0, 0}, st[8] = {1, 1}, dl[8] = {1, 1}, pads[8] = {0, 0, 0, 0}, ceil_mode = 0, cip = 0;
    int cnt = 0;
    vx_pad_mode pm = VX_PAD_EXPLICIT;
    if (global) {
        if (x->dims[2] > 1024 || x->dims[3] > 1024)
            return nfail(n, VX_ERR_UNSUPPORTED, "global pooling over more than 1024x1024");
        ks[0] = x->dims[2], ks[1] = x->dims[3];
    } else {
        if ((e = attr_ints(n, "kernel_shape", ks, 8, &cnt)))
            return e;
        if (cnt != 2)
            return nfail(n, VX_ERR_UNSUPPORTED, "kernel_shape must have 2 values (2-D pooling)");
        if ((e = window_attr(n, "kernel_shape", 2, 1, 1024, ks)) ||
            (e = window_attr(n, "strides", 2, 1, 1024, st)) ||
            (e = window_attr(n, "dilations", 2, 1, 1024, dl)) ||
            (e = window_attr(n, "pads", 4, 0, 65536, pads)) ||
            (e = attr_int(n, "ceil_mode", 0, &ceil_mode)) ||
            (e = attr_int(n, "count_include_pad", 0, &cip)) || (e = parse_auto_pad(n, &pm)))
            return e;
        if (dl[0] != 1 || dl[1] != 1)
            return nfail(n, VX_ERR_UNSUPPORTED, "dilated pooling is not supported");
    }
    if (ceil_mode && pm == VX_PAD_EXPLICIT) {
        /* Ceil mode = extra padding at the end, which max pooling and
         * exclude-pad averaging ignore; the last window must start inside
         * the input or its left padding (PyTorch's and ONNX Runtime's rule). */
        for (int k = 0; k < 2; k++) {
            int64_t in = x->dims[2 + k], p0 = pads[k], p1 = pads[2 + k], span = in + p0 + p1 - ks[k];
            if (span < 0)
                break;
            int64_t fl = span / st[k] + 1, ce = (span + st[k] - 1) / st[k] + 1;
            if ((ce - 1) * st[k] >= in + p0)
                ce--;
            if (ce > fl) {
                if (op == VX_OP_AVGPOOL && cip)
                    return nfail(n, VX_ERR_UNSUPPORTED, "ceil_mode with count_include_pad is not supported");
                pads[2 + k] += (ce - 1) * st[k] + ks[k] - (in + p0 + p1);
            }
        }
    }
    int id;
    if ((e = simple(n, op, n->in[0], &id)))
        return e;
    vx_pool_attr *p = &n->c->g->n[id].a.pool;
    p->kh = (int)ks[0], p->kw = (int)ks[1], p->sh = (int)st[0], p->sw = (int)st[1];
    p->pt = (int)pads[0], p->pl = (int)pads[1], p->pb = (int)pads[2], p->pr = (int)pads[3];
    p->pad_mode = pm;
    p->count_include_pad = (int)cip;
    return finish(n, id);
}

static vx_err map_binary(nctx *n, vx_op op)
{
    int in[2] = {n->in[0], n->in[1]}, y, id;
    vx_err e;
    /* Mixed types only happen for Pow (an integer exponent): compute in float. */
    for (int k = 0; k < 2; k++)
        if (T(n, in[k])->dtype != T(n, in[1 - k])->dtype && T(n, in[k])->dtype == VX_DT_I64) {
            int cst;
            if ((e = tmp_tensor(n, k ? "cast1" : "cast0", &cst)) ||
                (e = add(n, VX_OP_CAST, &in[k], 1, &cst, 1, &id)))
                return e;
            n->c->g->n[id].a.cast.to = VX_DT_F32;
            if ((e = finish(n, id)))
                return e;
            in[k] = cst;
        }
    if ((e = out_tensor(n, 0, &y)) || (e = add(n, op, in, 2, &y, 1, &id)))
        return e;
    return finish(n, id);
}

static vx_err map_unary(nctx *n, vx_op op)
{
    int id;
    vx_err e = simple(n, op, n->in[0], &id);
    if (e)
        return e;
    vx_node *nd = &n->c->g->n[id];
    if (op == VX_OP_LEAKY_RELU)
        e = attr_float(n, "alpha", 0.01f, &nd->a.leaky.alpha);
    else if (op == VX_OP_HARDSIGMOID && !(e = attr_float(n, "alpha", 0.2f, &nd->a.hard.alpha)))
        e = attr_float(n, "beta", 0.5f, &n->c->g->n[id].a.hard.beta);
    return e ? e : finish(n, id);
}

static vx_err map_clip(nctx *n)
{
    float lo = -INFINITY, hi = INFINITY;
    for (int k = 1; k <= 2; k++) {
        if (k >= n->n_in || n->in[k] < 0)
            continue;
        const vx_tensor *t;
        vx_err e = need_const(n, k, k == 1 ? "min" : "max", &t);
        if (e)
            return e;
        if (vx_tensor_elems(t) != 1)
            return nfail(n, VX_ERR_FORMAT, "%s must be a scalar", k == 1 ? "min" : "max");
        *(k == 1 ? &lo : &hi) = cf32(t, 0);
    }
    int id;
    vx_err e = simple(n, VX_OP_CLIP, n->in[0], &id);
    if (e)
        return e;
    n->c->g->n[id].a.clip.lo = lo;
    n->c->g->n[id].a.clip.hi = hi;
    return finish(n, id);
}

static vx_err map_concat(nctx *n)
{
    int64_t axis;
    vx_err e = attr_int(n, "axis", INT64_MIN, &axis);
    if (e)
        return e;
    if (axis == INT64_MIN)
        return nfail(n, VX_ERR_FORMAT, "attribute 'axis' is required");
    if (axis < -VX_NN_MAX_RANK || axis >= VX_NN_MAX_RANK)
        return nfail(n, VX_ERR_FORMAT, "axis %lld out of range", (long long)axis);
    for (int k = 0; k < n->n_in; k++)
        if (n->in[k] < 0)
            return nfail(n, VX_ERR_FORMAT, "input %d is empty", k);
    int y, id;
    if ((e = out_tensor(n, 0, &y)) || (e = add(n, VX_OP_CONCAT, n->in, n->n_in, &y, 1, &id)))
        return e;
    n->c->g->n[id].a.concat.axis = (int)axis;
    return finish(n, id);
}

static vx_err norm_axis(const nctx *n, int64_t axis, int rank, int *out)
{
    *out = 0;
    if (axis < -rank || axis >= rank)
        return nfail(n, VX_ERR_FORMAT, "axis %lld out of range for rank %d", (long long)axis, rank);
    *out = (int)(axis < 0 ? axis + rank : axis);
    return VX_OK;
}

static vx_err map_split(nctx *n)
{
    const vx_tensor *x = T(n, n->in[0]);
    int64_t axis, sizes[MAX_NODE_OUT], num = 0;
    int ax, cnt = -1, nout = (int)n->np->n_output;
    vx_err e = attr_int(n, "axis", 0, &axis);
    if (!e)
        e = norm_axis(n, axis, x->rank, &ax);
    if (e)
        return e;
    if (nout < 1 || nout > MAX_NODE_OUT)
        return nfail(n, VX_ERR_UNSUPPORTED, "%d outputs (1 to %d are supported)", nout, MAX_NODE_OUT);
    if (n->c->opset < 13) {
        if ((e = attr_ints(n, "split", sizes, MAX_NODE_OUT, &cnt)))
            return e;
    } else if (n->n_in > 1 && n->in[1] >= 0) {
        const vx_tensor *s;
        if ((e = need_const(n, 1, "split", &s)))
            return e;
        if (vx_tensor_elems(s) > MAX_NODE_OUT)
            return nfail(n, VX_ERR_FORMAT, "more split sizes than outputs");
        cnt = (int)vx_tensor_elems(s);
        for (int i = 0; i < cnt; i++)
            sizes[i] = ci64(s, i);
    }
    if (n->c->opset >= 18 && (e = attr_int(n, "num_outputs", 0, &num)))
        return e;
    int64_t dim = x->dims[ax];
    if (cnt >= 0) {
        if (cnt != nout)
            return nfail(n, VX_ERR_FORMAT, "%d split sizes for %d outputs", cnt, nout);
    } else if (num) {
        if (num != nout)
            return nfail(n, VX_ERR_FORMAT, "num_outputs %lld but %d outputs", (long long)num, nout);
        /* Opset 18: ceil-sized chunks, the last one smaller. */
        int64_t chunk = (dim + nout - 1) / nout;
        for (int i = 0; i < nout; i++)
            sizes[i] = i < nout - 1 ? chunk : dim - chunk * (nout - 1);
        if (sizes[nout - 1] < 0)
            return nfail(n, VX_ERR_FORMAT, "cannot split %lld into %d parts", (long long)dim, nout);
    } else {
        if (dim % nout)
            return nfail(n, VX_ERR_FORMAT, "axis size %lld does not split into %d equal parts",
                         (long long)dim, nout);
        for (int i = 0; i < nout; i++)
            sizes[i] = dim / nout;
    }
    for (int i = 0; i < nout; i++)
        if (sizes[i] < 0)
            return nfail(n, VX_ERR_FORMAT, "negative split size");
    int outs[MAX_NODE_OUT], id;
    for (int i = 0; i < nout; i++)
        if ((e = out_tensor(n, i, &outs[i])))
            return e;
    if ((e = add(n, VX_OP_SPLIT, n->in, 1, outs, nout, &id)))
        return e;
    vx_node *nd = &n->c->g->n[id];
    nd->a.split.axis = ax;
    nd->a.split.n = nout;
    if (!(nd->a.split.sizes = malloc(sizeof(int64_t) * (size_t)nout)))
        return OOM(n->c);
    memcpy(nd->a.split.sizes, sizes, sizeof(int64_t) * (size_t)nout);
    return finish(n, id);
}

static vx_err map_slice(nctx *n)
{
    const vx_tensor *x = T(n, n->in[0]), *ts, *te, *ta = NULL, *tp = NULL;
    vx_err e;
    if ((e = need_const(n, 1, "starts", &ts)) || (e = need_const(n, 2, "ends", &te)))
        return e;
    if (n->n_in > 3 && n->in[3] >= 0 && (e = need_const(n, 3, "axes", &ta)))
        return e;
    if (n->n_in > 4 && n->in[4] >= 0 && (e = need_const(n, 4, "steps", &tp)))
        return e;
    int64_t k = vx_tensor_elems(ts);
    if (ts->rank != 1 || vx_tensor_elems(te) != k || (ta && vx_tensor_elems(ta) != k) ||
        (tp && vx_tensor_elems(tp) != k) || k > x->rank)
        return nfail(n, VX_ERR_FORMAT, "starts, ends, axes and steps must be vectors of one length <= rank");
    int64_t start[VX_NN_MAX_RANK], end[VX_NN_MAX_RANK], step[VX_NN_MAX_RANK];
    int seen[VX_NN_MAX_RANK] = {0};
    for (int i = 0; i < x->rank; i++)
        start[i] = 0, end[i] = x->dims[i], step[i] = 1;
    for (int64_t i = 0; i < k; i++) {
        int ax;
        if ((e = norm_axis(n, ta ? ci64(ta, i) : i, x->rank, &ax)))
            return e;
        if (seen[ax]++)
            return nfail(n, VX_ERR_FORMAT, "axis %d repeated", ax);
        int64_t dim = x->dims[ax], s = ci64(ts, i), en = ci64(te, i), sp = tp ? ci64(tp, i) : 1;
        if (sp == 0)
            return nfail(n, VX_ERR_FORMAT, "step 0");
        if (s < 0)
            s += dim;
        if (en < 0)
            en += dim;
        if (sp > 0) {
            s = s < 0 ? 0 : s > dim ? dim : s;
            en = en < 0 ? 0 : en > dim ? dim : en;
            if (en < s)
                en = s;
        } else {
            s = s < 0 ? 0 : s > dim - 1 ? dim - 1 : s;
            en = en < -1 ? -1 : en > dim - 1 ? dim - 1 : en;
            if (dim == 0)
                s = en = -1;
            if (en > s)
                en = s;
        }
        start[ax] = s, end[ax] = en, step[ax] = sp;
    }
    int id;
    if ((e = simple(n, VX_OP_SLICE, n->in[0], &id)))
        return e;
    vx_node *nd = &n->c->g->n[id];
    memcpy(nd->a.slice.start, start, sizeof start);
    memcpy(nd->a.slice.end, end, sizeof end);
    memcpy(nd->a.slice.step, step, sizeof step);
    return finish(n, id);
}

static vx_err map_resize(nctx *n, int upsample)
{
    vx_err e = need_rank(n, 0, 4);
    if (e)
        return e;
    const vx_tensor *x = T(n, n->in[0]), *sz = NULL, *sc = NULL;
    char mode[32], coord[40], near[40], kar[32];
    int64_t antialias = 0, axes[8];
    int naxes = -1;
    float scales[4] = {1, 1, 1, 1};
    int64_t sizes[4] = {0};
    vx_resize_attr r = {0};
    if ((e = attr_str(n, "mode", "nearest", mode, sizeof mode)))
        return e;
    if (upsample) {
        /* Upsample (opset <= 9 files): asymmetric, nearest truncates. */
        strcpy(coord, "asymmetric");
        strcpy(near, "floor");
        int cnt = -1;
        const Onnx__AttributeProto *a = find_attr(n, "scales");
        if (a) {
            if (a->n_floats != 4)
                return nfail(n, VX_ERR_FORMAT, "scales must have 4 values");
            memcpy(scales, a->floats, sizeof scales);
            cnt = 4;
        } else if (n->n_in > 1) {
            if ((e = need_const(n, 1, "scales", &sc)))
                return e;
        }
        if (cnt < 0 && !sc)
            return nfail(n, VX_ERR_FORMAT, "no scales");
    } else {
        if ((e = attr_str(n, "coordinate_transformation_mode", "half_pixel", coord, sizeof coord)) ||
            (e = attr_str(n, "nearest_mode", "round_prefer_floor", near, sizeof near)) ||
            (e = attr_int(n, "antialias", 0, &antialias)) || (e = attr_ints(n, "axes", axes, 8, &naxes)) ||
            (e = attr_str(n, "keep_aspect_ratio_policy", "stretch", kar, sizeof kar)))
            return e;
        if (antialias)
            return nfail(n, VX_ERR_UNSUPPORTED, "antialias is not supported");
        if (naxes >= 0 && !(naxes == 4 && axes[0] == 0 && axes[1] == 1 && axes[2] == 2 && axes[3] == 3) &&
            !(naxes == 2 && (axes[0] == 2 || axes[0] == -2) && (axes[1] == 3 || axes[1] == -1)))
            return nfail(n, VX_ERR_UNSUPPORTED, "axes other than the spatial ones are not supported");
        if (n->n_in > 3 && n->in[3] >= 0 && T(n, n->in[3])->rank >= 0 &&
            vx_tensor_elems(T(n, n->in[3])) > 0) {
            if ((e = need_const(n, 3, "sizes", &sz)))
                return e;
            if (strcmp(kar, "stretch"))
                return nfail(n, VX_ERR_UNSUPPORTED, "keep_aspect_ratio_policy '%s' is not supported", kar);
        } else if (n->n_in > 2 && n->in[2] >= 0 && vx_tensor_elems(T(n, n->in[2])) > 0) {
            if ((e = need_const(n, 2, "scales", &sc)))
                return e;
        } else {
            return nfail(n, VX_ERR_FORMAT, "neither scales nor sizes given");
        }
    }
    int nv = naxes == 2 ? 2 : 4, off = 4 - nv;
    if (sc) {
        if (vx_tensor_elems(sc) != nv)
            return nfail(n, VX_ERR_FORMAT, "scales must have %d values", nv);
        for (int i = 0; i < nv; i++)
            scales[off + i] = cf32(sc, i);
    }
    if (sz) {
        if (vx_tensor_elems(sz) != nv)
            return nfail(n, VX_ERR_FORMAT, "sizes must have %d values", nv);
        for (int i = 0; i < 4; i++)
            sizes[i] = i < off ? x->dims[i] : ci64(sz, i - off);
        if (sizes[0] != x->dims[0] || sizes[1] != x->dims[1])
            return nfail(n, VX_ERR_UNSUPPORTED, "only the spatial dimensions can be resized");
        for (int i = 2; i < 4; i++) {
            if (sizes[i] <= 0 || sizes[i] > 65536)
                return nfail(n, VX_ERR_FORMAT, "output size %lld out of range", (long long)sizes[i]);
            scales[i] = (float)sizes[i] / (float)x->dims[i];
        }
    } else {
        if (scales[0] != 1.0f || scales[1] != 1.0f)
            return nfail(n, VX_ERR_UNSUPPORTED, "only the spatial dimensions can be resized (scales %g, %g)",
                         (double)scales[0], (double)scales[1]);
        for (int i = 2; i < 4; i++) {
            if (!(scales[i] > 0) || scales[i] > 65536)
                return nfail(n, VX_ERR_FORMAT, "scale %g out of range", (double)scales[i]);
            /* ONNX Runtime's arithmetic: float product, truncated. */
            float o = scales[i] * (float)x->dims[i];
            if (o > 65536)
                return nfail(n, VX_ERR_FORMAT, "output size above 65536");
            sizes[i] = (int64_t)o;
            if (sizes[i] <= 0)
                return nfail(n, VX_ERR_FORMAT, "output size 0");
        }
    }
    if (!strcmp(mode, "nearest"))
        r.mode = VX_RESIZE_NEAREST;
    else if (!strcmp(mode, "linear") || !strcmp(mode, "bilinear"))
        r.mode = VX_RESIZE_LINEAR;
    else
        return nfail(n, VX_ERR_UNSUPPORTED, "mode '%s' is not supported (nearest and linear are)", mode);
    static const struct {
        const char *name;
        vx_coord_mode m;
    } coords[] = {{"half_pixel", VX_COORD_HALF_PIXEL},
                  {"pytorch_half_pixel", VX_COORD_PYTORCH_HALF_PIXEL},
                  {"align_corners", VX_COORD_ALIGN_CORNERS},
                  {"asymmetric", VX_COORD_ASYMMETRIC},
                  {"tf_half_pixel_for_nn", VX_COORD_TF_HALF_PIXEL_FOR_NN}};
    int found = 0;
    for (size_t i = 0; i < sizeof coords / sizeof coords[0]; i++)
        if (!strcmp(coord, coords[i].name))
            r.coord = coords[i].m, found = 1;
    if (!found)
        return nfail(n, VX_ERR_UNSUPPORTED, "coordinate_transformation_mode '%s' is not supported", coord);
    static const struct {
        const char *name;
        vx_nearest_mode m;
    } nears[] = {{"round_prefer_floor", VX_NEAREST_ROUND_PREFER_FLOOR},
                 {"round_prefer_ceil", VX_NEAREST_ROUND_PREFER_CEIL},
                 {"floor", VX_NEAREST_FLOOR},
                 {"ceil", VX_NEAREST_CEIL}};
    found = 0;
    for (size_t i = 0; i < sizeof nears / sizeof nears[0]; i++)
        if (!strcmp(near, nears[i].name))
            r.nearest = nears[i].m, found = 1;
    if (!found)
        return nfail(n, VX_ERR_UNSUPPORTED, "nearest_mode '%s' is not supported", near);
    r.out_h = (int)sizes[2];
    r.out_w = (int)sizes[3];
    r.scale_h = scales[2];
    r.scale_w = scales[3];
    int id;
    if ((e = simple(n, VX_OP_RESIZE, n->in[0], &id)))
        return e;
    n->c->g->n[id].a.resize = r;
    return finish(n, id);
}

static vx_err map_reshape(nctx *n)
{
    const vx_tensor *s;
    int64_t allowzero = 0;
    vx_err e;
    if ((e = need_const(n, 1, "shape", &s)) || (e = attr_int(n, "allowzero", 0, &allowzero)))
        return e;
    int in[2] = {n->in[0], n->in[1]}, y, id;
    if ((e = out_tensor(n, 0, &y)) || (e = add(n, VX_OP_RESHAPE, in, 2, &y, 1, &id)))
        return e;
    n->c->g->n[id].a.reshape.allowzero = allowzero != 0;
    return finish(n, id);
}

static vx_err map_flatten(nctx *n)
{
    const vx_tensor *x = T(n, n->in[0]);
    int64_t axis;
    vx_err e = attr_int(n, "axis", 1, &axis);
    if (e)
        return e;
    if (axis < -x->rank || axis > x->rank)
        return nfail(n, VX_ERR_FORMAT, "axis %lld out of range", (long long)axis);
    if (axis < 0)
        axis += x->rank;
    int64_t d[2] = {1, 1};
    for (int i = 0; i < x->rank; i++)
        d[i >= axis] *= x->dims[i];
    int y;
    if ((e = out_tensor(n, 0, &y)))
        return e;
    return reshape_to(n, n->in[0], 2, d, y);
}

/* Squeeze / Unsqueeze: axes from the attribute (opset < 13) or input 1. */
static vx_err get_axes(nctx *n, int64_t *axes, int *cnt)
{
    vx_err e;
    *cnt = -1;
    if (n->c->opset < 13)
        return attr_ints(n, "axes", axes, VX_NN_MAX_RANK, cnt);
    if (n->n_in < 2 || n->in[1] < 0)
        return VX_OK;
    const vx_tensor *t;
    if ((e = need_const(n, 1, "axes", &t)))
        return e;
    if (t->rank > 1 || vx_tensor_elems(t) > VX_NN_MAX_RANK)
        return nfail(n, VX_ERR_FORMAT, "axes must be a vector of at most %d values", VX_NN_MAX_RANK);
    *cnt = (int)vx_tensor_elems(t);
    for (int i = 0; i < *cnt; i++)
        axes[i] = ci64(t, i);
    return VX_OK;
}

static vx_err map_squeeze(nctx *n, int unsqueeze)
{
    const vx_tensor *x = T(n, n->in[0]);
    int64_t axes[VX_NN_MAX_RANK], d[VX_NN_MAX_RANK];
    int cnt, r = 0;
    vx_err e = get_axes(n, axes, &cnt);
    if (e)
        return e;
    int mark[VX_NN_MAX_RANK + 1] = {0};
    if (unsqueeze) {
        if (cnt < 0)
            return nfail(n, VX_ERR_FORMAT, "axes are required");
        int orank = x->rank + cnt;
        if (orank > VX_NN_MAX_RANK)
            return nfail(n, VX_ERR_UNSUPPORTED, "output rank %d above %d", orank, VX_NN_MAX_RANK);
        for (int i = 0; i < cnt; i++) {
            int ax;
            if ((e = norm_axis(n, axes[i], orank, &ax)))
                return e;
            if (mark[ax]++)
                return nfail(n, VX_ERR_FORMAT, "axis %d repeated", ax);
        }
        for (int i = 0, k = 0; i < orank; i++)
            d[r++] = mark[i] ? 1 : x->dims[k++];
    } else {
        for (int i = 0; i < cnt; i++) {
            int ax;
            if ((e = norm_axis(n, axes[i], x->rank, &ax)))
                return e;
            if (x->dims[ax] != 1)
                return nfail(n, VX_ERR_FORMAT, "cannot squeeze axis %d of size %lld", ax,
                             (long long)x->dims[ax]);
            mark[ax] = 1;
        }
        for (int i = 0; i < x->rank; i++)
            if (!(cnt < 0 ? x->dims[i] == 1 : mark[i]))
                d[r++] = x->dims[i];
    }
    int y;
    if ((e = out_tensor(n, 0, &y)))
        return e;
    return reshape_to(n, n->in[0], r, d, y);
}

static vx_err map_transpose(nctx *n)
{
    const vx_tensor *x = T(n, n->in[0]);
    int64_t perm[8];
    int cnt;
    vx_err e = attr_ints(n, "perm", perm, 8, &cnt);
    if (e)
        return e;
    if (cnt < 0) {
        cnt = x->rank;
        for (int i = 0; i < cnt; i++)
            perm[i] = cnt - 1 - i;
    }
    if (cnt != x->rank)
        return nfail(n, VX_ERR_FORMAT, "perm has %d values for rank %d", cnt, x->rank);
    int id;
    if ((e = simple(n, VX_OP_TRANSPOSE, n->in[0], &id)))
        return e;
    for (int i = 0; i < cnt; i++)
        n->c->g->n[id].a.transpose.perm[i] = perm[i] < 0 || perm[i] >= cnt ? -1 : (int)perm[i];
    return finish(n, id);
}

static vx_err map_softmax(nctx *n)
{
    const vx_tensor *x = T(n, n->in[0]);
    int64_t axis;
    int old = n->c->opset < 13, ax;
    vx_err e = attr_int(n, "axis", old ? 1 : -1, &axis);
    if (!e)
        e = norm_axis(n, axis, x->rank, &ax);
    int id;
    if (e || (e = simple(n, VX_OP_SOFTMAX, n->in[0], &id)))
        return e;
    n->c->g->n[id].a.softmax.axis = ax;
    n->c->g->n[id].a.softmax.flat = old && ax != x->rank - 1;
    return finish(n, id);
}

/* MatMul with 1-D operands promoted to matrices, the extra dim removed after. */
static vx_err matmul_into(nctx *n, int a, int b, int y)
{
    vx_err e;
    int id, ra = T(n, a)->rank, rb = T(n, b)->rank;
    if (ra < 1 || rb < 1)
        return nfail(n, VX_ERR_FORMAT, "MatMul of a scalar");
    int64_t d[VX_NN_MAX_RANK];
    if (ra == 1) {
        int t;
        d[0] = 1, d[1] = T(n, a)->dims[0];
        if ((e = tmp_tensor(n, "a2d", &t)) || (e = reshape_to(n, a, 2, d, t)))
            return e;
        a = t;
    }
    if (rb == 1) {
        int t;
        d[0] = T(n, b)->dims[0], d[1] = 1;
        if ((e = tmp_tensor(n, "b2d", &t)) || (e = reshape_to(n, b, 2, d, t)))
            return e;
        b = t;
    }
    int in[2] = {a, b}, mm = y;
    if ((ra == 1 || rb == 1) && (e = tmp_tensor(n, "mm", &mm)))
        return e;
    if ((e = add(n, VX_OP_MATMUL, in, 2, &mm, 1, &id)) || (e = finish(n, id)))
        return e;
    if (mm == y)
        return VX_OK;
    const vx_tensor *t = T(n, mm);
    int r = 0;
    for (int i = 0; i < t->rank; i++)
        if (!((ra == 1 && i == t->rank - 2) || (rb == 1 && i == t->rank - 1)))
            d[r++] = t->dims[i];
    return reshape_to(n, mm, r, d, y);
}

static vx_err map_matmul(nctx *n)
{
    int y;
    vx_err e = out_tensor(n, 0, &y);
    return e ? e : matmul_into(n, n->in[0], n->in[1], y);
}

static vx_err map_gemm(nctx *n)
{
    int64_t ta, tb;
    float alpha, beta;
    vx_err e;
    if ((e = attr_int(n, "transA", 0, &ta)) || (e = attr_int(n, "transB", 0, &tb)) ||
        (e = attr_float(n, "alpha", 1.0f, &alpha)) || (e = attr_float(n, "beta", 1.0f, &beta)) ||
        (e = need_rank(n, 0, 2)) || (e = need_rank(n, 1, 2)))
        return e;
    int ab[2] = {n->in[0], n->in[1]}, id;
    for (int k = 0; k < 2; k++) {
        if (!(k ? tb : ta))
            continue;
        int t;
        if ((e = tmp_tensor(n, k ? "bT" : "aT", &t)) || (e = add(n, VX_OP_TRANSPOSE, &ab[k], 1, &t, 1, &id)))
            return e;
        n->c->g->n[id].a.transpose.perm[0] = 1;
        n->c->g->n[id].a.transpose.perm[1] = 0;
        if ((e = finish(n, id)))
            return e;
        ab[k] = t;
    }
    int has_c = n->n_in > 2 && n->in[2] >= 0 && beta != 0.0f;
    int y, cur = -1;
    if ((e = out_tensor(n, 0, &y)))
        return e;
    int last = alpha == 1.0f && !has_c;
    if ((e = last ? VX_OK : tmp_tensor(n, "mm", &cur)))
        return e;
    if ((e = matmul_into(n, ab[0], ab[1], last ? y : cur)) || last)
        return e;
    int64_t one[1] = {1};
    if (alpha != 1.0f) {
        int ca, t = has_c ? -1 : y;
        if ((e = new_const(n, "alpha", VX_DT_F32, 0, one, &alpha, &ca)) ||
            (t < 0 && (e = tmp_tensor(n, "scaled", &t))))
            return e;
        int in[2] = {cur, ca};
        if ((e = add(n, VX_OP_MUL, in, 2, &t, 1, &id)) || (e = finish(n, id)))
            return e;
        cur = t;
    }
    if (has_c) {
        int cc = n->in[2];
        if (beta != 1.0f) {
            int cb, t;
            if ((e = new_const(n, "beta", VX_DT_F32, 0, one, &beta, &cb)) || (e = tmp_tensor(n, "betaC", &t)))
                return e;
            int in[2] = {cc, cb};
            if ((e = add(n, VX_OP_MUL, in, 2, &t, 1, &id)) || (e = finish(n, id)))
                return e;
            cc = t;
        }
        int in[2] = {cur, cc};
        if ((e = add(n, VX_OP_ADD, in, 2, &y, 1, &id)) || (e = finish(n, id)))
            return e;
    }
    return VX_OK;
}

/* Inference-time BatchNormalization: y = x * s + (bias - mean * s),
 * s = scale / sqrt(var + eps), as per-channel constants. */
static vx_err map_batchnorm(nctx *n)
{
    const vx_tensor *x = T(n, n->in[0]), *p[4];
    static const char *const what[4] = {"scale", "bias", "mean", "var"};
    vx_err e;
    float eps;
    if ((e = attr_float(n, "epsilon", 1e-5f, &eps)))
        return e;
    if (x->rank < 2)
        return nfail(n, VX_ERR_FORMAT, "input rank %d below 2", x->rank);
    int64_t C = x->dims[1];
    for (int k = 0; k < 4; k++) {
        if ((e = need_const(n, k + 1, what[k], &p[k])))
            return e;
        if (vx_tensor_elems(p[k]) != C)
            return nfail(n, VX_ERR_FORMAT, "%s has %lld values for %lld channels", what[k],
                         (long long)vx_tensor_elems(p[k]), (long long)C);
    }
    int64_t d[VX_NN_MAX_RANK];
    for (int i = 0; i < x->rank; i++)
        d[i] = i == 1 ? C : 1;
    int s, b, t, y, id;
    if ((e = new_const(n, "bn_scale", VX_DT_F32, x->rank - 1, d + 1, NULL, &s)) ||
        (e = new_const(n, "bn_shift", VX_DT_F32, x->rank - 1, d + 1, NULL, &b)))
        return e;
    for (int k = 0; k < 4; k++)
        p[k] = T(n, n->in[k + 1]); /* the tensor array may have moved */
    float *sv = T(n, s)->data, *bv = T(n, b)->data;
    for (int64_t c = 0; c < C; c++) {
        sv[c] = cf32(p[0], c) / sqrtf(cf32(p[3], c) + eps);
        bv[c] = cf32(p[1], c) - cf32(p[2], c) * sv[c];
    }
    if ((e = tmp_tensor(n, "bn_mul", &t)) || (e = out_tensor(n, 0, &y)))
        return e;
    int in1[2] = {n->in[0], s}, in2[2] = {t, b};
    if ((e = add(n, VX_OP_MUL, in1, 2, &t, 1, &id)) || (e = finish(n, id)) ||
        (e = add(n, VX_OP_ADD, in2, 2, &y, 1, &id)))
        return e;
    return finish(n, id);
}

static vx_err map_gather(nctx *n)
{
    int64_t axis;
    vx_err e = attr_int(n, "axis", 0, &axis);
    if (e)
        return e;
    if (axis < -VX_NN_MAX_RANK || axis >= VX_NN_MAX_RANK)
        return nfail(n, VX_ERR_FORMAT, "axis %lld out of range", (long long)axis);
    int in[2] = {n->in[0], n->in[1]}, y, id;
    if ((e = out_tensor(n, 0, &y)) || (e = add(n, VX_OP_GATHER, in, 2, &y, 1, &id)))
        return e;
    n->c->g->n[id].a.gather.axis = (int)axis;
    return finish(n, id);
}

static int is_float_type(int dt)
{
    return dt == DT_FLOAT || dt == DT_FLOAT16 || dt == DT_DOUBLE || dt == DT_BFLOAT16;
}

static vx_err map_cast(nctx *n)
{
    int64_t to;
    vx_err e = attr_int(n, "to", 0, &to);
    if (e)
        return e;
    vx_dtype ir;
    if (to == DT_STRING || !raw_size((int)to, &ir))
        return nfail(n, VX_ERR_UNSUPPORTED, "cast to %s is not supported", dtype_name((int)to));
    const vx_tensor *x = T(n, n->in[0]);
    if (to == DT_BOOL) {
        /* Booleans are 0/1 integers: only constants (masks in shape code). */
        if (!x->data)
            return nfail(n, VX_ERR_UNSUPPORTED, "cast to BOOL of a computed tensor");
        int64_t ne = vx_tensor_elems(x);
        int64_t *v = malloc(sizeof(int64_t) * (size_t)(ne ? ne : 1));
        if (!v)
            return OOM(n->c);
        for (int64_t i = 0; i < ne; i++)
            v[i] =
                x->dtype == VX_DT_F32 ? ((const float *)x->data)[i] != 0 : ((const int64_t *)x->data)[i] != 0;
        e = const_output(n, VX_DT_I64, x->rank, x->dims, v);
        free(v);
        return e;
    }
    int id;
    if ((e = simple(n, x->dtype == ir ? VX_OP_IDENTITY : VX_OP_CAST, n->in[0], &id)))
        return e;
    n->c->g->n[id].a.cast.to = is_float_type((int)to) ? VX_DT_F32 : VX_DT_I64;
    return finish(n, id);
}

static vx_err map_constant(nctx *n)
{
    if (n->np->n_attribute != 1)
        return nfail(n, VX_ERR_FORMAT, "needs exactly one value attribute, has %zu", n->np->n_attribute);
    const Onnx__AttributeProto *a = n->np->attribute[0];
    const char *an = a->name ? a->name : "";
    const char *nm = n->np->n_output ? n->np->output[0] : NULL;
    if (!nm || !*nm)
        return VX_OK;
    if (vx_strmap_get(n->c->names, nm, -1) >= 0)
        return nfail(n, VX_ERR_FORMAT, "output '%s' is already defined elsewhere", nm);
    int64_t cnt = 0;
    if (!strcmp(an, "value")) {
        if (!a->t)
            return nfail(n, VX_ERR_FORMAT, "attribute 'value' holds no tensor");
        int id;
        vx_err e = add_tensor_proto(n->c, a->t, nm, &id);
        if (e)
            return e;
        return vx_strmap_put(n->c->names, nm, id) ? VX_OK : OOM(n->c);
    }
    if (!strcmp(an, "value_float"))
        return const_output(n, VX_DT_F32, 0, &cnt, &a->f);
    if (!strcmp(an, "value_int"))
        return const_output(n, VX_DT_I64, 0, &cnt, &a->i);
    if (!strcmp(an, "value_floats")) {
        cnt = (int64_t)a->n_floats;
        return const_output(n, VX_DT_F32, 1, &cnt, a->floats);
    }
    if (!strcmp(an, "value_ints")) {
        cnt = (int64_t)a->n_ints;
        return const_output(n, VX_DT_I64, 1, &cnt, a->ints);
    }
    return nfail(n, VX_ERR_UNSUPPORTED, "constant attribute '%s' is not supported", an);
}

static vx_err map_shape(nctx *n)
{
    const vx_tensor *x = T(n, n->in[0]);
    int64_t start, end;
    vx_err e;
    if ((e = attr_int(n, "start", 0, &start)) || (e = attr_int(n, "end", x->rank, &end)))
        return e;
    /* Opset 15 start/end clamp like slice bounds. */
    start = start < 0 ? start + x->rank : start;
    end = end < 0 ? end + x->rank : end;
    start = start < 0 ? 0 : start > x->rank ? x->rank : start;
    end = end < start ? start : end > x->rank ? x->rank : end;
    int64_t d[1] = {end - start}, dims[VX_NN_MAX_RANK];
    /* Copied: adding the output may move the tensor array. */
    memcpy(dims, x->dims, sizeof dims);
    return const_output(n, VX_DT_I64, 1, d, dims + start);
}

/* The elements of a constant shape input (1-D, rank <= 6, each >= 0). */
static vx_err shape_input(nctx *n, int k, int64_t *d, int *rank)
{
    const vx_tensor *s;
    vx_err e = need_const(n, k, "shape", &s);
    if (e)
        return e;
    if (s->rank != 1 || s->dims[0] > VX_NN_MAX_RANK)
        return nfail(n, VX_ERR_UNSUPPORTED, "shape must be a vector of at most %d values", VX_NN_MAX_RANK);
    *rank = (int)s->dims[0];
    for (int i = 0; i < *rank; i++) {
        d[i] = ci64(s, i);
        if (d[i] < 0)
            return nfail(n, VX_ERR_FORMAT, "negative dimension %lld in shape", (long long)d[i]);
    }
    return VX_OK;
}

static vx_err check_materialise(nctx *n, int rank, const int64_t *d, int64_t *elems)
{
    *elems = 0;
    int64_t ne = 1;
    for (int i = 0; i < rank; i++) {
        if (d[i] && ne > FOLD_MAX_ELEMS / d[i])
            return nfail(n, VX_ERR_UNSUPPORTED, "a constant of more than %d elements is not materialised",
                         FOLD_MAX_ELEMS);
        ne *= d[i];
    }
    *elems = ne;
    return VX_OK;
}

static vx_err map_constant_of_shape(nctx *n)
{
    int64_t d[VX_NN_MAX_RANK], ne;
    int rank;
    vx_err e;
    if ((e = shape_input(n, 0, d, &rank)) || (e = check_materialise(n, rank, d, &ne)))
        return e;
    const Onnx__AttributeProto *a = find_attr(n, "value");
    vx_dtype dt = VX_DT_F32;
    uint8_t val[8] = {0};
    if (a) {
        if (!a->t)
            return nfail(n, VX_ERR_FORMAT, "attribute 'value' holds no tensor");
        int id;
        if ((e = add_tensor_proto(n->c, a->t, "value", &id)))
            return e;
        const vx_tensor *t = T(n, id);
        if (vx_tensor_elems(t) != 1)
            return nfail(n, VX_ERR_FORMAT, "value must hold one element");
        dt = t->dtype;
        memcpy(val, t->data, dt == VX_DT_F32 ? 4 : 8);
    }
    size_t es = dt == VX_DT_F32 ? 4 : 8;
    uint8_t *buf = malloc((size_t)(ne ? ne : 1) * es);
    if (!buf)
        return OOM(n->c);
    for (int64_t i = 0; i < ne; i++)
        memcpy(buf + (size_t)i * es, val, es);
    e = const_output(n, dt, rank, d, buf);
    free(buf);
    return e;
}

static vx_err map_range(nctx *n)
{
    const vx_tensor *t[3];
    static const char *const what[3] = {"start", "limit", "delta"};
    vx_err e;
    int is_int = 1;
    for (int k = 0; k < 3; k++) {
        if ((e = need_const(n, k, what[k], &t[k])))
            return e;
        if (vx_tensor_elems(t[k]) != 1)
            return nfail(n, VX_ERR_FORMAT, "%s must be a scalar", what[k]);
        is_int &= t[k]->dtype == VX_DT_I64;
    }
    double s = is_int ? (double)ci64(t[0], 0) : cf32(t[0], 0),
           l = is_int ? (double)ci64(t[1], 0) : cf32(t[1], 0),
           dl = is_int ? (double)ci64(t[2], 0) : cf32(t[2], 0);
    if (dl == 0 || dl != dl || s != s || l != l)
        return nfail(n, VX_ERR_FORMAT, "delta is 0 or a bound is NaN");
    double cnt = ceil((l - s) / dl);
    if (cnt < 0)
        cnt = 0;
    if (cnt > FOLD_MAX_ELEMS)
        return nfail(n, VX_ERR_UNSUPPORTED, "range of more than %d elements", FOLD_MAX_ELEMS);
    int64_t ne = (int64_t)cnt;
    void *buf = malloc((size_t)(ne ? ne : 1) * 8);
    if (!buf)
        return OOM(n->c);
    for (int64_t i = 0; i < ne; i++) {
        if (is_int)
            ((int64_t *)buf)[i] = ci64(t[0], 0) + i * ci64(t[2], 0);
        else
            ((float *)buf)[i] = cf32(t[0], 0) + (float)i * cf32(t[2], 0);
    }
    e = const_output(n, is_int ? VX_DT_I64 : VX_DT_F32, 1, &ne, buf);
    free(buf);
    return e;
}

/* Expand = multiplication by ones of the broadcast shape, which broadcasting
 * already implements; only the dims that grow need ones. */
static vx_err map_expand(nctx *n)
{
    const vx_tensor *x = T(n, n->in[0]);
    int64_t s[VX_NN_MAX_RANK], od[VX_NN_MAX_RANK], ne;
    int rs;
    vx_err e = shape_input(n, 1, s, &rs);
    if (e)
        return e;
    int r = x->rank > rs ? x->rank : rs;
    for (int i = 0; i < r; i++) {
        int ix = i - (r - x->rank), is = i - (r - rs);
        int64_t dx = ix >= 0 ? x->dims[ix] : 1, ds = is >= 0 ? s[is] : 1;
        if (dx != ds && dx != 1 && ds != 1)
            return nfail(n, VX_ERR_FORMAT, "shape does not broadcast (dim %d: %lld vs %lld)", i,
                         (long long)dx, (long long)ds);
        od[i] = dx == 1 ? ds : 1;
    }
    if ((e = check_materialise(n, r, od, &ne)))
        return e;
    int ones, y, id;
    vx_dtype dt = x->dtype;
    if ((e = new_const(n, "ones", dt, r, od, NULL, &ones)))
        return e;
    void *p = T(n, ones)->data;
    for (int64_t i = 0; i < ne; i++) {
        if (dt == VX_DT_F32)
            ((float *)p)[i] = 1.0f;
        else
            ((int64_t *)p)[i] = 1;
    }
    int in[2] = {n->in[0], ones};
    if ((e = out_tensor(n, 0, &y)) || (e = add(n, VX_OP_MUL, in, 2, &y, 1, &id)))
        return e;
    return finish(n, id);
}

/* Comparisons and selection, evaluated here on constants only (masks in
 * shape code); the result is int64 0/1 like the IR's booleans. */
static vx_err map_logic(nctx *n, int kind /* 0 Equal 1 Less 2 Greater 3 Where 4 Not 5 And 6 Or */)
{
    int nin = kind == 3 ? 3 : kind == 4 ? 1 : 2;
    const vx_tensor *t[3];
    vx_err e;
    for (int k = 0; k < nin; k++)
        if ((e = need_const(n, k, "operand", &t[k])))
            return e;
    int r = 0;
    for (int k = 0; k < nin; k++)
        r = t[k]->rank > r ? t[k]->rank : r;
    int64_t d[VX_NN_MAX_RANK], st[3][VX_NN_MAX_RANK], idx[VX_NN_MAX_RANK] = {0}, ne;
    for (int i = 0; i < r; i++) {
        d[i] = 1;
        for (int k = 0; k < nin; k++) {
            int j = i - (r - t[k]->rank);
            int64_t dk = j >= 0 ? t[k]->dims[j] : 1;
            if (dk != 1 && d[i] != 1 && dk != d[i])
                return nfail(n, VX_ERR_FORMAT, "shapes do not broadcast");
            if (dk != 1)
                d[i] = dk;
        }
    }
    for (int k = 0; k < nin; k++) {
        int64_t s = 1;
        for (int i = r - 1; i >= 0; i--) {
            int j = i - (r - t[k]->rank);
            int64_t dk = j >= 0 ? t[k]->dims[j] : 1;
            st[k][i] = dk == 1 ? 0 : s;
            s *= dk;
        }
    }
    if ((e = check_materialise(n, r, d, &ne)))
        return e;
    vx_dtype odt = kind == 3 ? t[1]->dtype : VX_DT_I64;
    if (kind == 3 && t[1]->dtype != t[2]->dtype)
        return nfail(n, VX_ERR_FORMAT, "Where operands differ in type");
    void *buf = malloc((size_t)(ne ? ne : 1) * 8);
    if (!buf)
        return OOM(n->c);
    int64_t off[3] = {0, 0, 0};
    for (int64_t i = 0; i < ne; i++) {
        int64_t v = 0;
        int fl = nin > 1 && (t[0]->dtype == VX_DT_F32 || t[1]->dtype == VX_DT_F32);
        switch (kind) {
        case 0:
            v = fl ? cf32(t[0], off[0]) == cf32(t[1], off[1]) : ci64(t[0], off[0]) == ci64(t[1], off[1]);
            break;
        case 1:
            v = fl ? cf32(t[0], off[0]) < cf32(t[1], off[1]) : ci64(t[0], off[0]) < ci64(t[1], off[1]);
            break;
        case 2:
            v = fl ? cf32(t[0], off[0]) > cf32(t[1], off[1]) : ci64(t[0], off[0]) > ci64(t[1], off[1]);
            break;
        case 4: v = !ci64(t[0], off[0]); break;
        case 5: v = ci64(t[0], off[0]) && ci64(t[1], off[1]); break;
        case 6: v = ci64(t[0], off[0]) || ci64(t[1], off[1]); break;
        default: break;
        }
        if (kind == 3) {
            int k = ci64(t[0], off[0]) ? 1 : 2;
            if (odt == VX_DT_F32)
                ((float *)buf)[i] = cf32(t[k], off[k]);
            else
                ((int64_t *)buf)[i] = ci64(t[k], off[k]);
        } else {
            ((int64_t *)buf)[i] = v;
        }
        for (int a = r - 1; a >= 0; a--) {
            for (int k = 0; k < nin; k++)
                off[k] += st[k][a];
            if (++idx[a] < d[a])
                break;
            for (int k = 0; k < nin; k++)
                off[k] -= st[k][a] * d[a];
            idx[a] = 0;
        }
    }
    e = const_output(n, odt, r, d, buf);
    free(buf);
    return e;
}

static vx_err map_identity(nctx *n)
{
    if (n->np->n_output > 1 && n->np->output[1] && *n->np->output[1])
        return nfail(n, VX_ERR_UNSUPPORTED, "the mask output is not supported");
    int id;
    vx_err e = simple(n, VX_OP_IDENTITY, n->in[0], &id);
    return e ? e : finish(n, id);
}

typedef struct {
    const char *op;
    int min_in, max_in;
    vx_op ir; /* for the plain mappings */
    int kind; /* 0: plain unary, 1: plain binary, 2: custom */
    vx_err (*fn)(nctx *n);
} op_entry;

static vx_err map_maxpool(nctx *n)
{
    return map_pool(n, VX_OP_MAXPOOL, 0);
}
static vx_err map_avgpool(nctx *n)
{
    return map_pool(n, VX_OP_AVGPOOL, 0);
}
static vx_err map_gmaxpool(nctx *n)
{
    return map_pool(n, VX_OP_MAXPOOL, 1);
}
static vx_err map_gavgpool(nctx *n)
{
    return map_pool(n, VX_OP_AVGPOOL, 1);
}
static vx_err map_resize11(nctx *n)
{
    return map_resize(n, 0);
}
static vx_err map_upsample(nctx *n)
{
    return map_resize(n, 1);
}
static vx_err map_squeeze0(nctx *n)
{
    return map_squeeze(n, 0);
}
static vx_err map_unsqueeze(nctx *n)
{
    return map_squeeze(n, 1);
}
static vx_err map_equal(nctx *n)
{
    return map_logic(n, 0);
}
static vx_err map_less(nctx *n)
{
    return map_logic(n, 1);
}
static vx_err map_greater(nctx *n)
{
    return map_logic(n, 2);
}
static vx_err map_where(nctx *n)
{
    return map_logic(n, 3);
}
static vx_err map_not(nctx *n)
{
    return map_logic(n, 4);
}
static vx_err map_and(nctx *n)
{
    return map_logic(n, 5);
}
static vx_err map_or(nctx *n)
{
    return map_logic(n, 6);
}
static vx_err map_size(nctx *n)
{
    int64_t ne = vx_tensor_elems(T(n, n->in[0])), none = 0;
    return const_output(n, VX_DT_I64, 0, &none, &ne);
}

static const op_entry op_table[] = {
    {"Conv", 2, 3, VX_OP_CONV, 2, map_conv},
    {"Relu", 1, 1, VX_OP_RELU, 0, NULL},
    {"LeakyRelu", 1, 1, VX_OP_LEAKY_RELU, 0, NULL},
    {"Sigmoid", 1, 1, VX_OP_SIGMOID, 0, NULL},
    {"HardSwish", 1, 1, VX_OP_HARDSWISH, 0, NULL},
    {"HardSigmoid", 1, 1, VX_OP_HARDSIGMOID, 0, NULL},
    {"Floor", 1, 1, VX_OP_FLOOR, 0, NULL},
    {"Ceil", 1, 1, VX_OP_CEIL, 0, NULL},
    {"Clip", 1, 3, VX_OP_CLIP, 2, map_clip},
    {"Add", 2, 2, VX_OP_ADD, 1, NULL},
    {"Sub", 2, 2, VX_OP_SUB, 1, NULL},
    {"Mul", 2, 2, VX_OP_MUL, 1, NULL},
    {"Div", 2, 2, VX_OP_DIV, 1, NULL},
    {"Pow", 2, 2, VX_OP_POW, 1, NULL},
    {"MaxPool", 1, 1, VX_OP_MAXPOOL, 2, map_maxpool},
    {"AveragePool", 1, 1, VX_OP_AVGPOOL, 2, map_avgpool},
    {"GlobalMaxPool", 1, 1, VX_OP_MAXPOOL, 2, map_gmaxpool},
    {"GlobalAveragePool", 1, 1, VX_OP_AVGPOOL, 2, map_gavgpool},
    {"Concat", 1, MAX_NODE_IN, VX_OP_CONCAT, 2, map_concat},
    {"Split", 1, 2, VX_OP_SPLIT, 2, map_split},
    {"Slice", 3, 5, VX_OP_SLICE, 2, map_slice},
    {"Resize", 1, 4, VX_OP_RESIZE, 2, map_resize11},
    {"Upsample", 1, 2, VX_OP_RESIZE, 2, map_upsample},
    {"Reshape", 2, 2, VX_OP_RESHAPE, 2, map_reshape},
    {"Flatten", 1, 1, VX_OP_RESHAPE, 2, map_flatten},
    {"Squeeze", 1, 2, VX_OP_RESHAPE, 2, map_squeeze0},
    {"Unsqueeze", 1, 2, VX_OP_RESHAPE, 2, map_unsqueeze},
    {"Transpose", 1, 1, VX_OP_TRANSPOSE, 2, map_transpose},
    {"Softmax", 1, 1, VX_OP_SOFTMAX, 2, map_softmax},
    {"MatMul", 2, 2, VX_OP_MATMUL, 2, map_matmul},
    {"Gemm", 2, 3, VX_OP_MATMUL, 2, map_gemm},
    {"BatchNormalization", 5, 5, VX_OP_MUL, 2, map_batchnorm},
    {"Identity", 1, 1, VX_OP_IDENTITY, 2, map_identity},
    {"Dropout", 1, 3, VX_OP_IDENTITY, 2, map_identity},
    {"Gather", 2, 2, VX_OP_GATHER, 2, map_gather},
    {"Cast", 1, 1, VX_OP_CAST, 2, map_cast},
    {"Constant", 0, 0, VX_OP_COUNT, 2, map_constant},
    {"Shape", 1, 1, VX_OP_COUNT, 2, map_shape},
    {"Size", 1, 1, VX_OP_COUNT, 2, map_size},
    {"ConstantOfShape", 1, 1, VX_OP_COUNT, 2, map_constant_of_shape},
    {"Range", 3, 3, VX_OP_COUNT, 2, map_range},
    {"Expand", 2, 2, VX_OP_MUL, 2, map_expand},
    {"Equal", 2, 2, VX_OP_COUNT, 2, map_equal},
    {"Less", 2, 2, VX_OP_COUNT, 2, map_less},
    {"Greater", 2, 2, VX_OP_COUNT, 2, map_greater},
    {"Where", 3, 3, VX_OP_COUNT, 2, map_where},
    {"Not", 1, 1, VX_OP_COUNT, 2, map_not},
    {"And", 2, 2, VX_OP_COUNT, 2, map_and},
    {"Or", 2, 2, VX_OP_COUNT, 2, map_or},
};

static vx_err map_node(onnx_ctx *c, const Onnx__NodeProto *np, int index)
{
    nctx n = {.c = c, .np = np, .op = np->op_type ? np->op_type : ""};
    if (np->name && *np->name)
        snprintf(n.name, sizeof n.name, "%s", np->name);
    else
        snprintf(n.name, sizeof n.name, "%s_%d", n.op, index);
    if (np->domain && *np->domain && strcmp(np->domain, "ai.onnx"))
        return nfail(&n, VX_ERR_UNSUPPORTED,
                     "operator domain '%s' is not supported (only the default domain is)", np->domain);
    const op_entry *ent = NULL;
    for (size_t i = 0; i < sizeof op_table / sizeof op_table[0]; i++)
        if (!strcmp(op_table[i].op, n.op))
            ent = &op_table[i];
    if (!ent)
        return nfail(&n, VX_ERR_UNSUPPORTED, "operator '%s' is not supported", n.op);
    if (np->n_input > MAX_NODE_IN)
        return nfail(&n, VX_ERR_UNSUPPORTED, "%zu inputs (at most %d)", np->n_input, MAX_NODE_IN);
    n.n_in = (int)np->n_input;
    /* Trailing empty names are absent optional inputs. */
    while (n.n_in > 0 && (!np->input[n.n_in - 1] || !*np->input[n.n_in - 1]))
        n.n_in--;
    if (n.n_in < ent->min_in || n.n_in > ent->max_in)
        return nfail(&n, VX_ERR_FORMAT, "%d inputs (expects %d to %d)", n.n_in, ent->min_in, ent->max_in);
    if (np->n_output < 1 && strcmp(n.op, "Constant"))
        return nfail(&n, VX_ERR_FORMAT, "no outputs");
    if (np->n_output > MAX_NODE_OUT)
        return nfail(&n, VX_ERR_UNSUPPORTED, "%zu outputs (at most %d)", np->n_output, MAX_NODE_OUT);
    for (int k = 0; k < n.n_in; k++) {
        const char *nm = np->input[k];
        n.in[k] = nm && *nm ? vx_strmap_get(c->names, nm, -1) : -1;
        if (nm && *nm && n.in[k] < 0)
            return nfail(&n, VX_ERR_FORMAT, "input '%s' is not defined", nm);
        /* Required inputs (the first min_in) must be present. */
        if (k < ent->min_in && n.in[k] < 0)
            return nfail(&n, VX_ERR_FORMAT, "required input %d is empty", k);
        if (n.in[k] >= 0 && c->g->t[n.in[k]].rank < 0)
            return nfail(&n, VX_ERR_FORMAT, "input '%s' has no known shape", nm);
    }
    vx_err e;
    if (ent->kind == 0)
        e = map_unary(&n, ent->ir);
    else if (ent->kind == 1)
        e = map_binary(&n, ent->ir);
    else
        e = ent->fn(&n);
    return e;
}

/* ---- graph -------------------------------------------------------------- */

/* Input shape from its ValueInfo: a symbolic or missing batch dimension
 * becomes 1; other dimensions must be static. */
static vx_err add_input(onnx_ctx *c, const Onnx__ValueInfoProto *vi)
{
    const char *nm = vi->name ? vi->name : "";
    const Onnx__TypeProto *tp = vi->type;
    if (!*nm)
        return vx_fail(VX_ERR_FORMAT, "%s: a graph input has no name", c->path);
    if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
        return vx_fail(VX_ERR_UNSUPPORTED, "%s: input '%s' is not a tensor", c->path, nm);
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    int dt = tt->has_elem_type ? tt->elem_type : 0;
    if (dt != DT_FLOAT)
        return vx_fail(VX_ERR_UNSUPPORTED,
                       "%s: input '%s' has element type %s; only FLOAT inputs are supported", c->path, nm,
                       dtype_name(dt));
    if (!tt->shape)
        return vx_fail(VX_ERR_UNSUPPORTED, "%s: input '%s' has no shape", c->path, nm);
    if (tt->shape->n_dim > VX_NN_MAX_RANK)
        return vx_fail(VX_ERR_UNSUPPORTED, "%s: input '%s' has rank %zu (at most %d)", c->path, nm,
                       tt->shape->n_dim, VX_NN_MAX_RANK);
    int id = vx_graph_add_tensor(c->g, nm);
    if (id < 0)
        return OOM(c);
    vx_tensor *t = &c->g->t[id];
    t->rank = (int)tt->shape->n_dim;
    int64_t total = 1;
    for (int k = 0; k < t->rank; k++) {
        const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[k];
        int isval = d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        if (!isval || d->dim_value < 0) {
            /* TODO: a --shape override will supply symbolic spatial dims. */
            if (k != 0)
                return vx_fail(
                    VX_ERR_UNSUPPORTED,
                    "%s: input '%s' dimension %d is symbolic ('%s'); only the batch dimension may be "
                    "dynamic, export with a fixed image size",
                    c->path, nm, k,
                    d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM && d->dim_param
                        ? d->dim_param
                        : "?");
            t->dims[k] = 1;
        } else if (d->dim_value == 0 || d->dim_value > VX_MAX_ELEMS) {
            return vx_fail(VX_ERR_FORMAT, "%s: input '%s' dimension %d is %lld", c->path, nm, k,
                           (long long)d->dim_value);
        } else {
            t->dims[k] = d->dim_value;
        }
        if (total > VX_MAX_ELEMS / t->dims[k])
            return vx_fail(VX_ERR_FORMAT, "%s: input '%s' has more than 2^31 elements", c->path, nm);
        total *= t->dims[k];
    }
    int *ni = realloc(c->g->inputs, sizeof(int) * (size_t)(c->g->n_inputs + 1));
    if (!ni)
        return OOM(c);
    c->g->inputs = ni;
    ni[c->g->n_inputs++] = id;
    return vx_strmap_put(c->names, nm, id) ? VX_OK : OOM(c);
}

/* Nodes in dependency order (Kahn); files are supposed to be sorted, but
 * the order must not be trusted, and a cycle must be reported, not looped on. */
static vx_err topo_order(onnx_ctx *c, const Onnx__GraphProto *gp, int *order)
{
    size_t nn = gp->n_node, edges = 0;
    vx_err e = VX_OK;
    for (size_t i = 0; i < nn; i++)
        edges += gp->node[i]->n_input;
    vx_strmap *prod = vx_strmap_new();
    int *indeg = calloc(nn + 1, sizeof(int)), *start = calloc(nn + 2, sizeof(int)),
        *adj = malloc((edges + 1) * sizeof(int));
    int *queue = malloc((nn + 1) * sizeof(int));
    if (!prod || !indeg || !start || !adj || !queue) {
        e = OOM(c);
        goto out;
    }
    for (size_t i = 0; i < nn; i++)
        for (size_t k = 0; k < gp->node[i]->n_output; k++) {
            const char *o = gp->node[i]->output[k];
            if (!o || !*o)
                continue;
            if (vx_strmap_get(prod, o, -1) >= 0 || vx_strmap_get(c->names, o, -1) >= 0) {
                e = vx_fail(VX_ERR_FORMAT, "%s: value '%s' is defined twice (node '%s')", c->path, o,
                            gp->node[i]->name ? gp->node[i]->name : "?");
                goto out;
            }
            if (!vx_strmap_put(prod, o, (int)i)) {
                e = OOM(c);
                goto out;
            }
        }
    /* CSR adjacency: producer -> consumers. */
    for (size_t i = 0; i < nn; i++)
        for (size_t k = 0; k < gp->node[i]->n_input; k++) {
            const char *in = gp->node[i]->input[k];
            int p = in && *in ? vx_strmap_get(prod, in, -1) : -1;
            if (p >= 0) {
                start[p + 1]++;
                indeg[i]++;
            } else if (in && *in && vx_strmap_get(c->names, in, -1) < 0) {
                e = vx_fail(
                    VX_ERR_FORMAT,
                    "%s: node '%s' (%s): input '%s' is not produced by any node, initializer or graph input",
                    c->path, gp->node[i]->name ? gp->node[i]->name : "?",
                    gp->node[i]->op_type ? gp->node[i]->op_type : "?", in);
                goto out;
            }
        }
    for (size_t i = 0; i < nn; i++)
        start[i + 1] += start[i];
    int *fill = queue; /* reuse as fill cursor before the queue is needed */
    for (size_t i = 0; i < nn; i++)
        fill[i] = start[i];
    for (size_t i = 0; i < nn; i++)
        for (size_t k = 0; k < gp->node[i]->n_input; k++) {
            const char *in = gp->node[i]->input[k];
            int p = in && *in ? vx_strmap_get(prod, in, -1) : -1;
            if (p >= 0)
                adj[fill[p]++] = (int)i;
        }
    size_t head = 0, tail = 0;
    for (size_t i = 0; i < nn; i++)
        if (!indeg[i])
            queue[tail++] = (int)i;
    while (head < tail) {
        int v = queue[head++];
        order[head - 1] = v;
        for (int k = start[v]; k < start[v + 1]; k++)
            if (--indeg[adj[k]] == 0)
                queue[tail++] = adj[k];
    }
    if (tail != nn) {
        for (size_t i = 0; i < nn; i++)
            if (indeg[i]) {
                e = vx_fail(VX_ERR_FORMAT, "%s: the graph has a cycle through node '%s' (%s)", c->path,
                            gp->node[i]->name ? gp->node[i]->name : "?",
                            gp->node[i]->op_type ? gp->node[i]->op_type : "?");
                break;
            }
    }
out:
    vx_strmap_free(prod);
    free(indeg);
    free(start);
    free(adj);
    free(queue);
    return e;
}

static vx_err check_opset(onnx_ctx *c, const Onnx__ModelProto *m)
{
    c->opset = -1;
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = m->opset_import[i];
        if ((!o->domain || !*o->domain || !strcmp(o->domain, "ai.onnx")) && o->has_version)
            c->opset = o->version > INT_MAX ? INT_MAX : o->version < INT_MIN ? INT_MIN : (int)o->version;
    }
    if (c->opset < 0)
        return vx_fail(VX_ERR_FORMAT, "%s: no opset_import for the default ONNX domain", c->path);
    if (c->opset < OPSET_MIN || c->opset > OPSET_MAX)
        return vx_fail(VX_ERR_UNSUPPORTED,
                       "%s: opset %d is not supported (opsets %d to %d are); re-export the model", c->path,
                       c->opset, OPSET_MIN, OPSET_MAX);
    return VX_OK;
}

static vx_err copy_metadata(onnx_ctx *c, const Onnx__ModelProto *m)
{
    vx_graph *g = c->g;
    size_t n = m->n_metadata_props;
    if (!n)
        return VX_OK;
    if (!(g->meta_keys = calloc(n, sizeof(char *))) || !(g->meta_values = calloc(n, sizeof(char *))))
        return OOM(c);
    for (size_t i = 0; i < n; i++) {
        const Onnx__StringStringEntryProto *kv = m->metadata_props[i];
        g->meta_keys[i] = strdup(kv->key ? kv->key : "");
        g->meta_values[i] = strdup(kv->value ? kv->value : "");
        g->n_meta = (int)i + 1;
        if (!g->meta_keys[i] || !g->meta_values[i])
            return OOM(c);
    }
    return VX_OK;
}

/* Declared static output shapes that differ from what the graph computes
 * point at a mapping problem (or a stale declaration, which ONNX Runtime
 * also only warns about): say so, without refusing the model. */
static void check_output_shape(onnx_ctx *c, const Onnx__ValueInfoProto *vi, const char *name,
                               const vx_tensor *t)
{
    const Onnx__TypeProto *tp = vi->type;
    if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type ||
        !tp->tensor_type->shape)
        return;
    const Onnx__TensorShapeProto *s = tp->tensor_type->shape;
    int bad = s->n_dim != (size_t)t->rank;
    for (int k = 0; !bad && k < t->rank; k++) {
        const Onnx__TensorShapeProto__Dimension *d = s->dim[k];
        bad = d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE && d->dim_value > 0 &&
              d->dim_value != t->dims[k];
    }
    if (bad)
        VX_WARN(
            "%s: output '%s' is declared with another shape than the graph computes (rank %d, last dim %lld)",
            c->path, name, t->rank, (long long)(t->rank > 0 ? t->dims[t->rank - 1] : 0));
}

static vx_err build_graph(onnx_ctx *c, const Onnx__ModelProto *m)
{
    const Onnx__GraphProto *gp = m->graph;
    vx_err e;
    if (!gp)
        return vx_fail(VX_ERR_FORMAT, "%s: the model has no graph", c->path);
    if ((e = check_opset(c, m)) || (e = copy_metadata(c, m)))
        return e;
    c->g->opset = c->opset;
    if (gp->n_sparse_initializer)
        return vx_fail(VX_ERR_UNSUPPORTED, "%s: sparse initializers are not supported", c->path);
    for (size_t i = 0; i < gp->n_initializer; i++) {
        const Onnx__TensorProto *tp = gp->initializer[i];
        const char *nm = tp->name ? tp->name : "";
        if (!*nm)
            return vx_fail(VX_ERR_FORMAT, "%s: initializer %zu has no name", c->path, i);
        if (vx_strmap_get(c->names, nm, -1) >= 0)
            return vx_fail(VX_ERR_FORMAT, "%s: initializer '%s' is defined twice", c->path, nm);
        int id;
        if ((e = add_tensor_proto(c, tp, nm, &id)))
            return e;
        if (!vx_strmap_put(c->names, nm, id))
            return OOM(c);
    }
    for (size_t i = 0; i < gp->n_input; i++) {
        const char *nm = gp->input[i]->name;
        /* Older exporters list initializers among the inputs too. */
        if (nm && vx_strmap_get(c->names, nm, -1) >= 0) {
            if (c->g->t[vx_strmap_get(c->names, nm, -1)].data)
                continue;
            return vx_fail(VX_ERR_FORMAT, "%s: input '%s' is listed twice", c->path, nm);
        }
        if ((e = add_input(c, gp->input[i])))
            return e;
    }
    if (!c->g->n_inputs)
        return vx_fail(VX_ERR_FORMAT, "%s: the graph has no input (only initializers)", c->path);
    int *order = malloc((gp->n_node + 1) * sizeof(int));
    if (!order)
        return OOM(c);
    if (gp->n_node > INT_MAX / 2)
        e = vx_fail(VX_ERR_FORMAT, "%s: too many nodes", c->path);
    else
        e = topo_order(c, gp, order);
    for (size_t i = 0; !e && i < gp->n_node; i++)
        e = map_node(c, gp->node[order[i]], order[i]);
    free(order);
    if (e)
        return e;
    if (!gp->n_output)
        return vx_fail(VX_ERR_FORMAT, "%s: the graph has no outputs", c->path);
    int *ids = malloc(gp->n_output * sizeof(int));
    const char **names = malloc(gp->n_output * sizeof(char *));
    if (!ids || !names) {
        free(ids);
        free(names);
        return OOM(c);
    }
    for (size_t i = 0; i < gp->n_output && !e; i++) {
        names[i] = gp->output[i]->name ? gp->output[i]->name : "";
        ids[i] = vx_strmap_get(c->names, names[i], -1);
        if (ids[i] < 0)
            e = vx_fail(VX_ERR_FORMAT, "%s: output '%s' is not produced by any node", c->path, names[i]);
        else
            check_output_shape(c, gp->output[i], names[i], &c->g->t[ids[i]]);
    }
    if (!e && !vx_graph_set_outputs(c->g, ids, names, (int)gp->n_output))
        e = OOM(c);
    free(ids);
    free(names);
    return e;
}

/* Parses `data` and builds the graph; `dir` is the folder for external data. */
static vx_err load(const char *name, const char *dir, const uint8_t *data, size_t len, vx_graph **out)
{
    *out = NULL;
    if (len > MAX_MODEL_BYTES)
        return vx_fail(VX_ERR_NOMEM, "%s: %zu bytes is above protobuf's 2 GiB limit", name, len);
    const char *why = wire_check(data, len, &onnx__model_proto__descriptor, 0);
    if (why)
        return vx_fail(VX_ERR_FORMAT, "%s: not an ONNX model (protobuf: %s)", name, why);
    budget b = {.left = 2 * len + ((size_t)256 << 20)};
    ProtobufCAllocator alloc = {budget_alloc, budget_free, &b};
    Onnx__ModelProto *m = onnx__model_proto__unpack(&alloc, len, data);
    if (!m)
        return vx_fail(VX_ERR_FORMAT, "%s: not an ONNX model (the protobuf does not parse as a ModelProto)",
                       name);
    onnx_ctx c = {.path = name};
    vx_err e = VX_OK;
    if (dir && !(c.dir = strdup(dir)))
        e = OOM(&c);
    c.g = vx_graph_new();
    c.names = vx_strmap_new();
    if (!e && (!c.g || !c.names))
        e = OOM(&c);
    if (!e) {
        snprintf(c.g->format, sizeof c.g->format, "onnx");
        e = build_graph(&c, m);
    }
    onnx__model_proto__free_unpacked(m, &alloc);
    vx_strmap_free(c.names);
    free(c.dir);
    if (e) {
        vx_graph_free(c.g);
        return e;
    }
    *out = c.g;
    return VX_OK;
}

vx_err vx_load_onnx(const char *path, vx_graph **out)
{
    *out = NULL;
    uint8_t *data;
    size_t len;
    vx_err e = vx_read_file(path, MAX_MODEL_BYTES, &data, &len);
    if (e)
        return e;
    /* The folder, resolved, so external data can be checked to stay in it. */
    char dir[PATH_MAX], resolved[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    if (!realpath(dir, resolved)) {
        e = vx_fail(VX_ERR_IO, "%s: cannot resolve the model's folder: %s", path, strerror(errno));
        free(data);
        return e;
    }
    e = load(path, resolved, data, len, out);
    free(data);
    return e;
}

vx_err vx_load_onnx_mem(const char *name, const uint8_t *data, size_t len, vx_graph **out)
{
    static const uint8_t empty[1];
    return load(name ? name : "<memory>", NULL, len ? data : empty, len, out);
}
