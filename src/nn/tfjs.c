/*
 * TensorFlow.js graph-model loader: model.json (topology + weights manifest)
 * and its binary weight shards, mapped into the graph IR.
 *
 * TF operators are NHWC.  Each NHWC operator is emitted as
 * Transpose(NHWC->NCHW) -> op in NCHW -> Transpose(NCHW->NHWC); converted
 * graphs (onnx-tf) already surround those ops with the opposite transposes,
 * so the transpose pass cancels nearly all of them.
 *
 * Everything read from the files is untrusted: sizes are checked against
 * the shard length before any copy, names are resolved through a hash map,
 * and every failure names the node or weight it concerns.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/vx_strmap.h"
#include "nn/graph.h"

#define MAX_JSON_BYTES (64u << 20)
#define MAX_WEIGHT_BYTES (1u << 30)
/* Detection networks have a few thousand nodes; the optimisation passes are
 * quadratic in places, so these bound the time a hostile file can take. */
#define MAX_JSON_NODES 65536
#define MAX_GRAPH_NODES 16384

typedef struct {
    const char *path; /* model file, or the caller's name for an in-memory model */
    vx_graph *g;
    vx_strmap *names; /* tensor name -> index */
    int from_files;   /* read the shards named in the manifest (else w/wlen are given) */
    const uint8_t *w; /* concatenated shards: wbuf, or the caller's buffer */
    size_t wlen;
    uint8_t *wbuf; /* shards read from files (owned) */
    json_t *root;
} tfjs_ctx;

/* Never NULL: pointer arithmetic on a NULL base is undefined even for +0. */
static const uint8_t no_weights[1];

static int b64val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* Decodes a base64 attribute string into buf (NUL-terminated, truncated to cap-1). */
static void b64decode(const char *s, char *buf, size_t cap)
{
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (; *s && *s != '='; s++) {
        int v = b64val((unsigned char)*s);
        if (v < 0)
            continue;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o + 1 < cap)
                buf[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    buf[o] = 0;
}

static json_t *attr(json_t *node, const char *name)
{
    return json_object_get(json_object_get(node, "attr"), name);
}

static const char *attr_str(json_t *node, const char *name, char *buf, size_t cap)
{
    json_t *s = json_object_get(attr(node, name), "s");
    if (!json_is_string(s))
        return NULL;
    b64decode(json_string_value(s), buf, cap);
    return buf;
}

static int json_to_i64(json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 1;
    }
    if (json_is_string(v)) {
        char *end;
        long long x = strtoll(json_string_value(v), &end, 10);
        if (*end)
            return 0;
        *out = x;
        return 1;
    }
    return 0;
}

/* Reads attr `name`.list.i into out[0..cap); returns the count or -1. */
static int attr_ints(json_t *node, const char *name, int64_t *out, int cap)
{
    json_t *l = json_object_get(json_object_get(attr(node, name), "list"), "i");
    if (!l)
        return 0;
    if (!json_is_array(l) || json_array_size(l) > (size_t)cap)
        return -1;
    for (size_t i = 0; i < json_array_size(l); i++)
        if (!json_to_i64(json_array_get(l, i), &out[i]))
            return -1;
    return (int)json_array_size(l);
}

static int attr_bool(json_t *node, const char *name, int dflt)
{
    json_t *b = json_object_get(attr(node, name), "b");
    return json_is_boolean(b) ? json_is_true(b) : dflt;
}

static vx_err load_weights(tfjs_ctx *c)
{
    json_t *man = json_object_get(c->root, "weightsManifest");
    if (!json_is_array(man))
        return vx_fail(VX_ERR_FORMAT, "%s: no weightsManifest array", c->path);
    /* Directory of the model file: shard paths are relative to it. */
    const char *slash = strrchr(c->path, '/');
    size_t dirlen = slash ? (size_t)(slash - c->path + 1) : 0;
    size_t off = 0;
    for (size_t gi = 0; gi < json_array_size(man); gi++) {
        json_t *grp = json_array_get(man, gi);
        json_t *paths = json_object_get(grp, "paths");
        json_t *weights = json_object_get(grp, "weights");
        if (!json_is_array(paths) || !json_is_array(weights))
            return vx_fail(VX_ERR_FORMAT, "%s: weightsManifest[%zu] lacks paths/weights", c->path, gi);
        /* In memory the shards arrive as one buffer, so a group's weights
         * start where the previous group's end. */
        size_t group_start = c->from_files ? c->wlen : off;
        for (size_t pi = 0; pi < json_array_size(paths); pi++) {
            const char *p = json_string_value(json_array_get(paths, pi));
            if (!p || strstr(p, "..") || p[0] == '/')
                return vx_fail(VX_ERR_FORMAT, "%s: bad weight shard path", c->path);
            if (!c->from_files)
                continue;
            char full[4096];
            snprintf(full, sizeof full, "%.*s%s", (int)dirlen, c->path, p);
            uint8_t *data;
            size_t len;
            vx_err e = vx_read_file(full, MAX_WEIGHT_BYTES, &data, &len);
            if (e)
                return vx_fail_prefix(e, "%s: weight shard: ", c->path);
            if (c->wlen + len > MAX_WEIGHT_BYTES) {
                free(data);
                return vx_fail(VX_ERR_NOMEM, "%s: weights larger than 1 GiB", c->path);
            }
            uint8_t *nb = realloc(c->wbuf, c->wlen + len + 1);
            if (!nb) {
                free(data);
                return vx_fail(VX_ERR_NOMEM, "%s: out of memory for weights", c->path);
            }
            c->wbuf = nb;
            c->w = nb;
            memcpy(c->wbuf + c->wlen, data, len);
            c->wlen += len;
            free(data);
        }
        off = group_start;
        for (size_t wi = 0; wi < json_array_size(weights); wi++) {
            json_t *w = json_array_get(weights, wi);
            const char *name = json_string_value(json_object_get(w, "name"));
            const char *dtype = json_string_value(json_object_get(w, "dtype"));
            json_t *shape = json_object_get(w, "shape");
            if (!name || !dtype || !json_is_array(shape) || json_array_size(shape) > VX_NN_MAX_RANK)
                return vx_fail(VX_ERR_FORMAT, "%s: weight %zu: missing name/dtype/shape or rank > %d",
                               c->path, wi, VX_NN_MAX_RANK);
            int64_t dims[VX_NN_MAX_RANK], n = 1;
            int rank = (int)json_array_size(shape);
            for (int k = 0; k < rank; k++) {
                if (!json_to_i64(json_array_get(shape, k), &dims[k]) || dims[k] < 0 || dims[k] > VX_MAX_ELEMS)
                    return vx_fail(VX_ERR_FORMAT, "%s: weight '%s': bad dimension", c->path, name);
                if (dims[k] && n > VX_MAX_ELEMS / dims[k])
                    return vx_fail(VX_ERR_FORMAT, "%s: weight '%s': more than 2^31 elements", c->path, name);
                n *= dims[k];
            }
            json_t *q = json_object_get(w, "quantization");
            const char *qd = q ? json_string_value(json_object_get(q, "dtype")) : NULL;
            size_t esz;
            int is_float = !strcmp(dtype, "float32");
            int is_int = !strcmp(dtype, "int32") || !strcmp(dtype, "int64") || !strcmp(dtype, "bool");
            if (!is_float && !is_int)
                return vx_fail(VX_ERR_UNSUPPORTED, "%s: weight '%s': dtype '%s' not supported", c->path, name,
                               dtype);
            if (qd) {
                if (!strcmp(qd, "float16") || !strcmp(qd, "uint16"))
                    esz = 2;
                else if (!strcmp(qd, "uint8"))
                    esz = 1;
                else
                    return vx_fail(VX_ERR_UNSUPPORTED,
                                   "%s: weight '%s': quantization dtype '%s' not supported", c->path, name,
                                   qd);
            } else {
                esz = !strcmp(dtype, "bool") ? 1 : !strcmp(dtype, "int64") ? 8 : 4;
            }
            size_t bytes = (size_t)n * esz;
            if (off > c->wlen || bytes > c->wlen - off)
                return vx_fail(VX_ERR_FORMAT,
                               "%s: weight '%s' needs %zu bytes at offset %zu, shards hold %zu", c->path,
                               name, bytes, off, c->wlen);
            const uint8_t *src = c->w + off;
            off += bytes;
            /* Integers are stored as int64; quantised ones are decoded as floats first, in place. */
            void *vals = malloc((size_t)(n ? n : 1) * (is_float ? 4 : 8));
            if (!vals)
                return vx_fail(VX_ERR_NOMEM, "%s: out of memory", c->path);
            if (qd && !strcmp(qd, "float16")) {
                for (int64_t i = 0; i < n; i++) {
                    uint16_t h;
                    memcpy(&h, src + 2 * i, 2);
                    ((float *)vals)[i] = vx_half_to_float(h);
                }
            } else if (qd) {
                double mn = json_number_value(json_object_get(q, "min"));
                double sc = json_number_value(json_object_get(q, "scale"));
                for (int64_t i = 0; i < n; i++) {
                    uint32_t v = esz == 1 ? src[i] : (uint32_t)(src[2 * i] | (src[2 * i + 1] << 8));
                    ((float *)vals)[i] = (float)(mn + sc * v);
                }
            } else if (is_float) {
                memcpy(vals, src, bytes);
            } else {
                for (int64_t i = 0; i < n; i++) {
                    int64_t v;
                    if (esz == 1)
                        v = src[i];
                    else if (esz == 4) {
                        int32_t x;
                        memcpy(&x, src + 4 * i, 4);
                        v = x;
                    } else
                        memcpy(&v, src + 8 * i, 8);
                    ((int64_t *)vals)[i] = v;
                }
            }
            /* Quantised integer weights decode to floats; store them as ints. */
            vx_dtype dt = is_float ? VX_DT_F32 : VX_DT_I64;
            if (!is_float && qd)
                for (int64_t i = 0; i < n; i++)
                    ((int64_t *)vals)[i] = vx_f2i64(((float *)vals)[i]);
            int id = vx_graph_add_const(c->g, name, dt, rank, dims, vals);
            free(vals);
            if (id < 0 || !vx_strmap_put(c->names, name, id))
                return vx_fail(VX_ERR_NOMEM, "%s: out of memory", c->path);
        }
    }
    return VX_OK;
}

/* Resolves "name", "name:0", "name:k"; ignores "^control" inputs (returns -2). */
static int resolve(tfjs_ctx *c, const char *ref)
{
    if (ref[0] == '^')
        return -2;
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", ref);
    size_t l = strlen(buf);
    if (l > 2 && buf[l - 2] == ':' && buf[l - 1] == '0')
        buf[l - 2] = 0;
    return vx_strmap_get(c->names, buf, -1);
}

static const vx_tensor *const_input(tfjs_ctx *c, int id)
{
    return id >= 0 && c->g->t[id].data ? &c->g->t[id] : NULL;
}

static int64_t ci64(const vx_tensor *t, int64_t i)
{
    return t->dtype == VX_DT_I64 ? ((const int64_t *)t->data)[i] : vx_f2i64(((const float *)t->data)[i]);
}

static const int to_nchw[4] = {0, 3, 1, 2}, to_nhwc[4] = {0, 2, 3, 1};

static int add_transpose(tfjs_ctx *c, const char *base, const char *suffix, int in, const int perm[4])
{
    char name[600];
    snprintf(name, sizeof name, "%s/%s", base, suffix);
    int n = vx_graph_add_node(c->g, VX_OP_TRANSPOSE, name, &in, 1, 1);
    if (n < 0)
        return -1;
    for (int i = 0; i < 4; i++)
        c->g->n[n].a.transpose.perm[i] = perm[i];
    return c->g->n[n].out[0];
}

/* Emits op on NCHW between the two transposes when the TF op is NHWC;
 * returns the node index of the core op and sets *result to the tensor
 * that carries the TF node's name. */
static int emit_layout_op(tfjs_ctx *c, const char *name, vx_op op, int *ins, int n_in, int nhwc, int *result)
{
    if (nhwc) {
        ins[0] = add_transpose(c, name, "to_nchw", ins[0], to_nchw);
        if (ins[0] < 0)
            return -1;
    }
    char core[600];
    snprintf(core, sizeof core, nhwc ? "%s/nchw" : "%s", name);
    int n = vx_graph_add_node(c->g, op, core, ins, n_in, 1);
    if (n < 0)
        return -1;
    *result = c->g->n[n].out[0];
    if (nhwc) {
        *result = add_transpose(c, name, "to_nhwc", *result, to_nhwc);
        if (*result < 0)
            return -1;
    }
    return n;
}

static vx_pad_mode tf_padding(json_t *node, int *ok)
{
    char buf[32];
    const char *p = attr_str(node, "padding", buf, sizeof buf);
    *ok = 1;
    if (!p || !strcmp(p, "VALID"))
        return VX_PAD_VALID;
    if (!strcmp(p, "SAME"))
        return VX_PAD_SAME_UPPER;
    if (!strcmp(p, "EXPLICIT"))
        return VX_PAD_EXPLICIT;
    *ok = 0;
    return VX_PAD_VALID;
}

static int is_nhwc(json_t *node)
{
    char buf[16];
    const char *f = attr_str(node, "data_format", buf, sizeof buf);
    return !f || !strcmp(f, "NHWC");
}

static vx_err map_node(tfjs_ctx *c, json_t *node, const char *name, const char *op)
{
    vx_graph *g = c->g;
    json_t *inputs = json_object_get(node, "input");
    int ins[64], n_in = 0;
    if (inputs && !json_is_array(inputs))
        return vx_fail(VX_ERR_FORMAT, "%s: node '%s': input is not a list", c->path, name);
    for (size_t i = 0; inputs && i < json_array_size(inputs); i++) {
        const char *ref = json_string_value(json_array_get(inputs, i));
        if (!ref)
            return vx_fail(VX_ERR_FORMAT, "%s: node '%s': input %zu is not a string", c->path, name, i);
        int id = resolve(c, ref);
        if (id == -2)
            continue;
        if (id < 0)
            return vx_fail(VX_ERR_FORMAT,
                           "%s: node '%s' (%s): input '%s' is not defined by any node or weight", c->path,
                           name, op, ref);
        if (n_in >= 64)
            return vx_fail(VX_ERR_UNSUPPORTED, "%s: node '%s': more than 64 inputs", c->path, name);
        ins[n_in++] = id;
    }
#define NEED(k)                                                                                              \
    do {                                                                                                     \
        if (n_in < (k))                                                                                      \
            return vx_fail(VX_ERR_FORMAT, "%s: node '%s' (%s): needs %d inputs, has %d", c->path, name, op,  \
                           (k), n_in);                                                                       \
    } while (0)
#define OOM() vx_fail(VX_ERR_NOMEM, "%s: out of memory", c->path)
    int result = -1, nid;

    if (!strcmp(op, "Conv2D") || !strcmp(op, "DepthwiseConv2dNative")) {
        NEED(2);
        const vx_tensor *w = const_input(c, ins[1]);
        if (!w || w->rank != 4 || w->dtype != VX_DT_F32)
            return vx_fail(VX_ERR_UNSUPPORTED,
                           "%s: node '%s' (%s): filter must be a constant 4-D float tensor", c->path, name,
                           op);
        int depthwise = op[0] == 'D';
        int64_t kh = w->dims[0], kw = w->dims[1], ci = w->dims[2], co = w->dims[3];
        int64_t oc = depthwise ? ci * co : co, icg = depthwise ? 1 : ci;
        int64_t od[4] = {oc, icg, kh, kw};
        char wn[600];
        snprintf(wn, sizeof wn, "%s/oihw", name);
        int wid = vx_graph_add_const(g, wn, VX_DT_F32, 4, od, NULL);
        if (wid < 0)
            return OOM();
        w = &g->t[ins[1]]; /* the array may have moved */
        const float *src = w->data;
        float *dst = g->t[wid].data;
        /* HWIO (or HWIM for depthwise: out channel = i*M + m) -> OIHW.  An
         * empty filter can still have 2^31-sized dims: no loop over those. */
        for (int64_t y = 0; y < (vx_tensor_elems(w) > 0 ? kh : 0); y++)
            for (int64_t x = 0; x < kw; x++)
                for (int64_t i = 0; i < ci; i++)
                    for (int64_t o = 0; o < co; o++) {
                        float v = src[((y * kw + x) * ci + i) * co + o];
                        if (depthwise)
                            dst[((i * co + o) * kh + y) * kw + x] = v;
                        else
                            dst[((o * ci + i) * kh + y) * kw + x] = v;
                    }
        int nhwc = is_nhwc(node), ok;
        int64_t st[4] = {1, 1, 1, 1}, dl[4] = {1, 1, 1, 1}, ep[8] = {0};
        if (attr_ints(node, "strides", st, 4) < 0 || attr_ints(node, "dilations", dl, 4) < 0 ||
            attr_ints(node, "explicit_paddings", ep, 8) < 0)
            return vx_fail(VX_ERR_FORMAT, "%s: node '%s': bad strides/dilations/paddings", c->path, name);
        vx_pad_mode pm = tf_padding(node, &ok);
        if (!ok)
            return vx_fail(VX_ERR_UNSUPPORTED, "%s: node '%s': unknown padding", c->path, name);
        int cin[3] = {ins[0], wid, -1};
        nid = emit_layout_op(c, name, VX_OP_CONV, cin, 3, nhwc, &result);
        if (nid < 0)
            return OOM();
        vx_conv_attr *a = &g->n[nid].a.conv;
        int hi = nhwc ? 1 : 2, wi = nhwc ? 2 : 3;
        a->sh = (int)st[hi];
        a->sw = (int)st[wi];
        a->dh = (int)dl[hi];
        a->dw = (int)dl[wi];
        a->pad_mode = pm;
        a->groups = depthwise ? (int)ci : 1;
        if (pm == VX_PAD_EXPLICIT) {
            a->pt = (int)ep[2 * hi];
            a->pb = (int)ep[2 * hi + 1];
            a->pl = (int)ep[2 * wi];
            a->pr = (int)ep[2 * wi + 1];
        }
        /* Checked before narrowing to int, which would wrap 2^32 + 1 to 1. */
        if (st[hi] <= 0 || st[wi] <= 0 || dl[hi] <= 0 || dl[wi] <= 0 || st[hi] > 64 || st[wi] > 64 ||
            dl[hi] > 64 || dl[wi] > 64)
            return vx_fail(VX_ERR_FORMAT, "%s: node '%s': bad stride or dilation", c->path, name);
        for (int k = 0; k < 8 && pm == VX_PAD_EXPLICIT; k++)
            if (ep[k] < 0 || ep[k] > 65536)
                return vx_fail(VX_ERR_FORMAT, "%s: node '%s': explicit padding %lld out of range", c->path,
                               name, (long long)ep[k]);
    } else if (!strcmp(op, "MaxPool") || !strcmp(op, "AvgPool")) {
        NEED(1);
        int64_t ks[4] = {1, 1, 1, 1}, st[4] = {1, 1, 1, 1};
        int ok;
        if (attr_ints(node, "ksize", ks, 4) != 4 || attr_ints(node, "strides", st, 4) != 4)
            return vx_fail(VX_ERR_FORMAT, "%s: node '%s': bad ksize/strides", c->path, name);
        vx_pad_mode pm = tf_padding(node, &ok);
        if (!ok || pm == VX_PAD_EXPLICIT)
            return vx_fail(VX_ERR_UNSUPPORTED, "%s: node '%s': unsupported padding", c->path, name);
        int nhwc = is_nhwc(node), hi = nhwc ? 1 : 2, wi = nhwc ? 2 : 3;
        nid = emit_layout_op(c, name, op[0] == 'M' ? VX_OP_MAXPOOL : VX_OP_AVGPOOL, ins, 1, nhwc, &result);
        if (nid < 0)
            return OOM();
        vx_pool_attr *p = &g->n[nid].a.pool;
        p->kh = (int)ks[hi];
        p->kw = (int)ks[wi];
        p->sh = (int)st[hi];
        p->sw = (int)st[wi];
        p->pad_mode = pm;
        if (ks[hi] <= 0 || ks[wi] <= 0 || st[hi] <= 0 || st[wi] <= 0 || ks[hi] > 1024 || ks[wi] > 1024 ||
            st[hi] > 1024 || st[wi] > 1024)
            return vx_fail(VX_ERR_FORMAT, "%s: node '%s': bad pooling window", c->path, name);
    } else if (!strcmp(op, "ResizeBilinear") || !strcmp(op, "ResizeNearestNeighbor")) {
        NEED(2);
        const vx_tensor *sz = const_input(c, ins[1]);
        if (!sz || vx_tensor_elems(sz) != 2)
            return vx_fail(VX_ERR_UNSUPPORTED, "%s: node '%s': size must be a constant [2]", c->path, name);
        int64_t oh = ci64(sz, 0), ow = ci64(sz, 1);
        nid = emit_layout_op(c, name, VX_OP_RESIZE, ins, 1, 1, &result);
        if (nid < 0)
            return OOM();
        vx_resize_attr *r = &g->n[nid].a.resize;
        r->mode = op[6] == 'B' ? VX_RESIZE_LINEAR : VX_RESIZE_NEAREST;
        r->out_h = oh > 0 && oh <= 65536 ? (int)oh : 0;
        r->out_w = ow > 0 && ow <= 65536 ? (int)ow : 0;
        if (attr_bool(node, "align_corners", 0))
            r->coord = VX_COORD_ALIGN_CORNERS;
        else if (attr_bool(node, "half_pixel_centers", 0))
            r->coord = VX_COORD_HALF_PIXEL;
        else
            r->coord = VX_COORD_ASYMMETRIC;
        if (!r->out_h || !r->out_w)
            return vx_fail(VX_ERR_FORMAT, "%s: node '%s': bad resize size", c->path, name);
    } else {
        vx_op simple = VX_OP_COUNT;
        int arity = 1;
        if (!strcmp(op, "Add") || !strcmp(op, "AddV2") || !strcmp(op, "BiasAdd"))
            simple = VX_OP_ADD, arity = 2;
        else if (!strcmp(op, "Sub"))
            simple = VX_OP_SUB, arity = 2;
        else if (!strcmp(op, "Mul"))
            simple = VX_OP_MUL, arity = 2;
        else if (!strcmp(op, "RealDiv") || !strcmp(op, "Div"))
            simple = VX_OP_DIV, arity = 2;
        else if (!strcmp(op, "Relu"))
            simple = VX_OP_RELU;
        else if (!strcmp(op, "LeakyRelu"))
            simple = VX_OP_LEAKY_RELU;
        else if (!strcmp(op, "Sigmoid"))
            simple = VX_OP_SIGMOID;
        else if (!strcmp(op, "Identity") || !strcmp(op, "StopGradient"))
            simple = VX_OP_IDENTITY;
        if (simple != VX_OP_COUNT) {
            NEED(arity);
            if (simple == VX_OP_ADD && !strcmp(op, "BiasAdd") && !is_nhwc(node))
                return vx_fail(VX_ERR_UNSUPPORTED, "%s: node '%s': BiasAdd NCHW not supported", c->path,
                               name);
            nid = vx_graph_add_node(g, simple, name, ins, arity, 1);
            if (nid < 0)
                return OOM();
            if (simple == VX_OP_LEAKY_RELU) {
                json_t *f = json_object_get(attr(node, "alpha"), "f");
                g->n[nid].a.leaky.alpha = f ? (float)json_number_value(f) : 0.2f;
            }
            result = g->n[nid].out[0];
        } else if (!strcmp(op, "Pad") || !strcmp(op, "PadV2")) {
            NEED(2);
            const vx_tensor *p = const_input(c, ins[1]);
            if (!p || p->rank != 2 || p->dims[1] != 2 || p->dims[0] > VX_NN_MAX_RANK)
                return vx_fail(VX_ERR_UNSUPPORTED, "%s: node '%s': paddings must be a constant [rank,2]",
                               c->path, name);
            float value = 0;
            if (op[3] == 'V' && n_in >= 3) {
                const vx_tensor *v = const_input(c, ins[2]);
                if (!v || vx_tensor_elems(v) != 1)
                    return vx_fail(VX_ERR_UNSUPPORTED,
                                   "%s: node '%s': constant_values must be a scalar constant", c->path, name);
                value = v->dtype == VX_DT_F32 ? ((float *)v->data)[0] : (float)((int64_t *)v->data)[0];
            }
            nid = vx_graph_add_node(g, VX_OP_PAD, name, ins, 1, 1);
            if (nid < 0)
                return OOM();
            p = &g->t[ins[1]];
            for (int i = 0; i < p->dims[0]; i++) {
                g->n[nid].a.pad.begin[i] = ci64(p, 2 * i);
                g->n[nid].a.pad.end[i] = ci64(p, 2 * i + 1);
            }
            g->n[nid].a.pad.value = value;
            result = g->n[nid].out[0];
        } else if (!strcmp(op, "Transpose")) {
            NEED(2);
            const vx_tensor *p = const_input(c, ins[1]);
            if (!p || p->rank != 1 || p->dims[0] > VX_NN_MAX_RANK)
                return vx_fail(VX_ERR_UNSUPPORTED, "%s: node '%s': perm must be a constant vector", c->path,
                               name);
            nid = vx_graph_add_node(g, VX_OP_TRANSPOSE, name, ins, 1, 1);
            if (nid < 0)
                return OOM();
            p = &g->t[ins[1]];
            for (int i = 0; i < p->dims[0]; i++) {
                int64_t v = ci64(p, i);
                g->n[nid].a.transpose.perm[i] =
                    v >= 0 && v < VX_NN_MAX_RANK ? (int)v : -1; /* -1: refused later */
            }
            result = g->n[nid].out[0];
        } else if (!strcmp(op, "ConcatV2")) {
            NEED(2);
            const vx_tensor *ax = const_input(c, ins[n_in - 1]);
            if (!ax || vx_tensor_elems(ax) != 1)
                return vx_fail(VX_ERR_UNSUPPORTED, "%s: node '%s': axis must be a constant scalar", c->path,
                               name);
            int64_t axis = ci64(ax, 0);
            if (axis < -VX_NN_MAX_RANK || axis >= VX_NN_MAX_RANK)
                return vx_fail(VX_ERR_FORMAT, "%s: node '%s': axis %lld out of range", c->path, name,
                               (long long)axis);
            nid = vx_graph_add_node(g, VX_OP_CONCAT, name, ins, n_in - 1, 1);
            if (nid < 0)
                return OOM();
            g->n[nid].a.concat.axis = (int)axis;
            result = g->n[nid].out[0];
        } else if (!strcmp(op, "SplitV") || !strcmp(op, "Split")) {
            int v = op[5] == 'V';
            NEED(2);
            int x = v ? ins[0] : ins[1];
            const vx_tensor *ax = const_input(c, v ? ins[2 < n_in ? 2 : 1] : ins[0]);
            if (v)
                NEED(3);
            const vx_tensor *sz = v ? const_input(c, ins[1]) : NULL;
            int64_t ns = 0;
            json_t *num = json_object_get(attr(node, "num_split"), "i");
            if (!json_to_i64(num, &ns) || ns <= 0 || ns > 16 || !ax || vx_tensor_elems(ax) != 1 ||
                (v && (!sz || vx_tensor_elems(sz) != ns)))
                return vx_fail(VX_ERR_UNSUPPORTED,
                               "%s: node '%s': split needs constant sizes/axis, 1..16 parts", c->path, name);
            int64_t axis = ci64(ax, 0);
            if (axis < -VX_NN_MAX_RANK || axis >= VX_NN_MAX_RANK)
                return vx_fail(VX_ERR_FORMAT, "%s: node '%s': axis %lld out of range", c->path, name,
                               (long long)axis);
            nid = vx_graph_add_node(g, VX_OP_SPLIT, name, &x, 1, (int)ns);
            if (nid < 0)
                return OOM();
            vx_node *nd = &g->n[nid];
            nd->a.split.axis = (int)axis;
            nd->a.split.n = (int)ns;
            nd->a.split.sizes = malloc(sizeof(int64_t) * (size_t)ns);
            if (!nd->a.split.sizes)
                return OOM();
            if (v) {
                for (int i = 0; i < ns; i++)
                    nd->a.split.sizes[i] = ci64(&g->t[ins[1]], i);
            } else {
                /* Equal parts: resolved once the input shape is known. */
                for (int i = 0; i < ns; i++)
                    nd->a.split.sizes[i] = -1000000 - ns;
            }
            for (int i = 0; i < ns; i++)
                if (!vx_strmap_put(c->names, g->t[nd->out[i]].name, nd->out[i]))
                    return OOM();
            return VX_OK;
        } else if (!strcmp(op, "Reshape")) {
            NEED(2);
            nid = vx_graph_add_node(g, VX_OP_RESHAPE, name, ins, 2, 1);
            if (nid < 0)
                return OOM();
            result = g->n[nid].out[0];
        } else if (!strcmp(op, "SparseToDense")) {
            NEED(4);
            nid = vx_graph_add_node(g, VX_OP_SPARSE_TO_DENSE, name, ins, 4, 1);
            if (nid < 0)
                return OOM();
            result = g->n[nid].out[0];
        } else {
            return vx_fail(VX_ERR_UNSUPPORTED, "%s: node '%s': TensorFlow.js operator '%s' is not supported",
                           c->path, name, op);
        }
    }
    if (!vx_strmap_put(c->names, name, result))
        return OOM();
    return VX_OK;
#undef NEED
#undef OOM
}

/* Maps one node of the JSON array into the graph; its inputs are mapped. */
static vx_err map_one(tfjs_ctx *c, json_t *node, size_t i)
{
    const char *name = json_string_value(json_object_get(node, "name"));
    const char *op = json_string_value(json_object_get(node, "op"));
    if (!name || !op)
        return vx_fail(VX_ERR_FORMAT, "%s: node %zu has no name or op", c->path, i);
    if (vx_strmap_get(c->names, name, -1) >= 0 && strcmp(op, "Const"))
        return vx_fail(VX_ERR_FORMAT, "%s: node name '%s' defined twice", c->path, name);
    if (!strcmp(op, "Const")) {
        if (vx_strmap_get(c->names, name, -1) < 0)
            return vx_fail(VX_ERR_FORMAT, "%s: constant '%s' has no entry in the weights manifest", c->path,
                           name);
    } else if (!strcmp(op, "Placeholder")) {
        json_t *dims = json_object_get(json_object_get(attr(node, "shape"), "shape"), "dim");
        int id = vx_graph_add_tensor(c->g, name);
        if (id < 0 || !vx_strmap_put(c->names, name, id))
            return vx_fail(VX_ERR_NOMEM, "out of memory");
        vx_tensor *t = &c->g->t[id];
        if (!json_is_array(dims) || json_array_size(dims) > VX_NN_MAX_RANK)
            return vx_fail(VX_ERR_FORMAT, "%s: input '%s' has no usable shape", c->path, name);
        t->rank = (int)json_array_size(dims);
        for (int k = 0; k < t->rank; k++) {
            int64_t v = -1;
            json_to_i64(json_object_get(json_array_get(dims, (size_t)k), "size"), &v);
            t->dims[k] = v < 0 ? 1 : v; /* unknown batch -> 1 */
            if (v == 0 || v > 65536)
                return vx_fail(VX_ERR_FORMAT, "%s: input '%s' dimension %d is %lld", c->path, name, k,
                               (long long)v);
        }
        int *ni = realloc(c->g->inputs, sizeof(int) * (size_t)(c->g->n_inputs + 1));
        if (!ni)
            return vx_fail(VX_ERR_NOMEM, "out of memory");
        c->g->inputs = ni;
        ni[c->g->n_inputs++] = id;
    } else {
        vx_err e = map_node(c, node, name, op);
        if (e)
            return e;
    }
    /* The passes are superlinear in the node count: refuse giant graphs
     * here rather than spend minutes optimising them. */
    if (c->g->nn > MAX_GRAPH_NODES)
        return vx_fail(VX_ERR_UNSUPPORTED, "%s: more than %d operators", c->path, MAX_GRAPH_NODES);
    return VX_OK;
}

/* The JSON node that produces `ref` ("name", "name:k"), or -1. */
static int producer_node(const vx_strmap *by_name, const char *ref)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", ref);
    char *colon = strrchr(buf, ':');
    if (colon && colon[1] && strspn(colon + 1, "0123456789") == strlen(colon + 1))
        *colon = 0;
    return vx_strmap_get(by_name, buf, -1);
}

static vx_err load_topology(tfjs_ctx *c)
{
    json_t *topo = json_object_get(c->root, "modelTopology");
    json_t *nodes = json_object_get(topo, "node");
    if (!json_is_array(nodes))
        return vx_fail(VX_ERR_FORMAT, "%s: modelTopology.node is missing (not a TFJS graph-model?)", c->path);
    size_t nn = json_array_size(nodes);
    if (nn > MAX_JSON_NODES)
        return vx_fail(VX_ERR_UNSUPPORTED, "%s: %zu nodes, limit is %d", c->path, nn, MAX_JSON_NODES);
    /* TFJS files list nodes in any order: map them in dependency order, by a
     * depth-first walk over the inputs (iterative: graphs can be deep), so
     * the cost stays linear whatever the order. */
    vx_strmap *by_name = vx_strmap_new();
    char *state = calloc(nn + 1, 1); /* 0 new, 1 on the stack, 2 mapped */
    size_t *stack = malloc(sizeof(size_t) * (nn + 1)), *next_in = malloc(sizeof(size_t) * (nn + 1));
    vx_err err = VX_OK;
    if (!by_name || !state || !stack || !next_in) {
        err = vx_fail(VX_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nn; i++) {
        const char *name = json_string_value(json_object_get(json_array_get(nodes, i), "name"));
        if (name && vx_strmap_get(by_name, name, -1) < 0 && !vx_strmap_put(by_name, name, (int)i)) {
            err = vx_fail(VX_ERR_NOMEM, "out of memory");
            goto out;
        }
    }
    for (size_t root = 0; root < nn; root++) {
        if (state[root])
            continue;
        size_t sp = 0;
        stack[sp] = root;
        next_in[sp++] = 0;
        state[root] = 1;
        while (sp) {
            size_t i = stack[sp - 1];
            json_t *node = json_array_get(nodes, i);
            json_t *inputs = json_object_get(node, "input");
            size_t n_in = json_is_array(inputs) ? json_array_size(inputs) : 0;
            int pushed = 0;
            /* Inputs that are already mapped, weights, "^control" or
             * undefined do not hold the node back (map_node reports the
             * undefined ones). */
            while (next_in[sp - 1] < n_in && !pushed) {
                const char *ref = json_string_value(json_array_get(inputs, next_in[sp - 1]++));
                if (!ref || resolve(c, ref) != -1)
                    continue;
                int p = producer_node(by_name, ref);
                if (p < 0 || state[p] == 2)
                    continue;
                if (state[p] == 1) {
                    const char *name = json_string_value(json_object_get(node, "name"));
                    err = vx_fail(VX_ERR_FORMAT, "%s: node '%s': its inputs form a cycle", c->path,
                                  name ? name : "?");
                    goto out;
                }
                state[p] = 1;
                stack[sp] = (size_t)p;
                next_in[sp++] = 0;
                pushed = 1;
            }
            if (pushed)
                continue;
            if ((err = map_one(c, node, i)))
                goto out;
            state[i] = 2;
            sp--;
        }
    }
out:
    vx_strmap_free(by_name);
    free(state);
    free(stack);
    free(next_in);
    return err;
}

static vx_err load_outputs(tfjs_ctx *c)
{
    json_t *outs = json_object_get(json_object_get(c->root, "signature"), "outputs");
    if (!json_is_object(outs) || !json_object_size(outs))
        return vx_fail(VX_ERR_FORMAT, "%s: signature.outputs missing or empty", c->path);
    const char *key;
    json_t *v;
    size_t no = json_object_size(outs);
    int *ids = malloc(sizeof(int) * no);
    const char **names = malloc(sizeof(char *) * no);
    char(*bufs)[256] = malloc(sizeof(*bufs) * no);
    vx_err e = VX_OK;
    size_t k = 0;
    if (!ids || !names || !bufs) {
        e = vx_fail(VX_ERR_NOMEM, "out of memory");
        goto done;
    }
    json_object_foreach(outs, key, v)
    {
        const char *ref = json_string_value(json_object_get(v, "name"));
        int id = resolve(c, ref ? ref : key);
        if (id < 0) {
            e = vx_fail(VX_ERR_FORMAT, "%s: output '%s' is not produced by any node", c->path, key);
            goto done;
        }
        /* "Identity_3:0" -> "Identity_3" */
        snprintf(bufs[k], sizeof bufs[k], "%s", key);
        size_t l = strlen(bufs[k]);
        if (l > 2 && bufs[k][l - 2] == ':' && bufs[k][l - 1] == '0')
            bufs[k][l - 2] = 0;
        names[k] = bufs[k];
        ids[k++] = id;
    }
    if (!vx_graph_set_outputs(c->g, ids, names, (int)k))
        e = vx_fail(VX_ERR_NOMEM, "out of memory");
done:
    free(ids);
    free(names);
    free(bufs);
    if (e)
        return e;
    if (!c->g->n_inputs)
        return vx_fail(VX_ERR_FORMAT, "%s: the graph has no Placeholder input", c->path);
    return VX_OK;
}

/* Parses the model JSON and builds the graph; c->path names the model in
 * messages, and the weights come from c (given, or read per manifest group). */
static vx_err load_model(tfjs_ctx *c, const char *text, size_t len, vx_graph **out)
{
    const char *path = c->path;
    vx_err e;
    json_error_t jerr;
    c->root = json_loadb(text, len, 0, &jerr);
    if (!c->root)
        return vx_fail(VX_ERR_FORMAT, "%s: not valid JSON (line %d, column %d: %s)", path, jerr.line,
                       jerr.column, jerr.text);
    const char *fmt = json_string_value(json_object_get(c->root, "format"));
    if (!json_is_object(c->root) || (fmt && strcmp(fmt, "graph-model"))) {
        /* fmt lives in the tree: format the message before freeing it. */
        e = vx_fail(VX_ERR_FORMAT, "%s: not a TensorFlow.js graph-model (format '%s')", path,
                    fmt ? fmt : "?");
        json_decref(c->root);
        return e;
    }
    c->g = vx_graph_new();
    c->names = vx_strmap_new();
    if (!c->g || !c->names) {
        e = vx_fail(VX_ERR_NOMEM, "out of memory");
        goto fail;
    }
    snprintf(c->g->format, sizeof c->g->format, "tfjs");
    if ((e = load_weights(c)) || (e = load_topology(c)) || (e = load_outputs(c)))
        goto fail;
    json_decref(c->root);
    vx_strmap_free(c->names);
    *out = c->g;
    return VX_OK;
fail:
    json_decref(c->root);
    vx_strmap_free(c->names);
    vx_graph_free(c->g);
    return e;
}

vx_err vx_load_tfjs(const char *path, vx_graph **out)
{
    *out = NULL;
    tfjs_ctx c = {.path = path, .from_files = 1, .w = no_weights};
    uint8_t *text;
    size_t len;
    vx_err e = vx_read_file(path, MAX_JSON_BYTES, &text, &len);
    if (e)
        return e;
    e = load_model(&c, (const char *)text, len, out);
    free(text);
    free(c.wbuf);
    return e;
}

vx_err vx_load_tfjs_mem(const char *name, const char *json, size_t json_len, const uint8_t *weights,
                        size_t weights_len, vx_graph **out)
{
    *out = NULL;
    if (!name)
        name = "<memory>";
    if (json_len > MAX_JSON_BYTES)
        return vx_fail(VX_ERR_NOMEM, "%s: model JSON is %zu bytes, limit is %u", name, json_len,
                       MAX_JSON_BYTES);
    if (weights_len > MAX_WEIGHT_BYTES)
        return vx_fail(VX_ERR_NOMEM, "%s: weights larger than 1 GiB", name);
    tfjs_ctx c = {.path = name, .w = weights_len ? weights : no_weights, .wlen = weights_len};
    return load_model(&c, json_len ? json : "", json_len, out);
}
