/*
 * Detector family recognition and class names.  See vx_detect.h.
 *
 * The shapes decide, because user exports do not always carry metadata
 * (YOLOv5's own exporter writes only stride and names, other tools strip
 * it) and tensor names mean nothing.  A single YOLO output is ambiguous on
 * its face: [1, 84, 8400] is YOLOv8 with 80 classes, but a YOLOv8 export
 * transposed for another runtime is [1, 8400, 84], which reads as YOLOv5
 * with 79 classes, and a model with many classes at a small input has more
 * channels than boxes.  The box count settles it: the heads emit one box
 * per cell (YOLOv8) or three (YOLOv5) on the grids of strides 8, 16, 32,
 * so only one reading of the two dimensions fits the input size.
 * Ultralytics' metadata narrows the strides (P6 models go to 64, P2 ones
 * start at 4) and its class count confirms a head whose box count fits no
 * stride set; without metadata only the standard strides are tried, since
 * guessing wider would take NanoDet-Plus's single [1, N, nc+32] output for
 * a transposed YOLOv8.
 *
 * Class names are parsed from the metadata's Python literal by hand: it is
 * repr() output, not JSON, and a small strict parser that says where it
 * stopped beats a regex that half-matches.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detect/detect_internal.h"

#define MAX_CLASSES 100000
#define MAX_INPUT 4096
#define MAX_SETS 4

const char *vx_model_family_name(vx_model_family f)
{
    switch (f) {
    case VX_FAMILY_NANODET: return "nanodet";
    case VX_FAMILY_YOLOV5: return "yolov5";
    case VX_FAMILY_YOLOV8: return "yolov8";
    case VX_FAMILY_UNKNOWN: break;
    }
    return "unknown";
}

static void format_shape(const vx_nn_tensor_info *t, char *buf, size_t len)
{
    size_t n = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < t->rank && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%lld", i ? "," : "", (long long)t->dims[i]);
    if (n < len)
        snprintf(buf + n, len - n, "]");
}

static const char *name_of(const vx_nn_tensor_info *t)
{
    return t->name ? t->name : "?";
}

static vx_err unrecognised(vx_family_info *info, const char *fmt, ...) VX_PRINTF(2, 3);
static vx_err unrecognised(vx_family_info *info, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(info->why, sizeof info->why, fmt, ap);
    va_end(ap);
    info->family = VX_FAMILY_UNKNOWN;
    return vx_fail(VX_ERR_UNSUPPORTED, "%s", info->why);
}

static void format_strides(const int *s, int n, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = 0;
    for (int i = 0; i < n && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%d", i ? "/" : "", s[i]);
}

/* ---- NanoDet ---- */

static int isqrt_exact(int64_t n)
{
    if (n <= 0 || n > (int64_t)1 << 40)
        return -1;
    int64_t r = 0;
    while ((r + 1) * (r + 1) <= n)
        r++;
    return r * r == n ? (int)r : -1;
}

static int cmp_level_stride(const void *pa, const void *pb)
{
    const vx_detect_level *a = pa, *b = pb;
    return (a->stride > b->stride) - (a->stride < b->stride);
}

static vx_err recognise_nanodet(const vx_nn_model *m, const vx_nn_tensor_info *in, vx_family_info *info)
{
    char shape[128];
    if (info->input_w != info->input_h) {
        format_shape(in, shape, sizeof shape);
        return unrecognised(info, "not a NanoDet detector: input '%s' has shape %s, expected [1,3,S,S]",
                            name_of(in), shape);
    }
    const int size = info->input_w;
    int nout = vx_nn_model_output_count(m);
    int cls[VX_DETECT_MAX_LEVELS], reg[VX_DETECT_MAX_LEVELS], ncls = 0, nreg = 0, nc = 0;
    for (int i = 0; i < nout; i++) {
        vx_nn_tensor_info t;
        vx_nn_model_output_info(m, i, &t);
        format_shape(&t, shape, sizeof shape);
        if (t.rank != 3 || !(t.dims[0] == 1 || t.dims[0] <= 0) || t.dims[1] <= 0 || t.dims[2] <= 0)
            return unrecognised(info, "not a NanoDet detector: output %d '%s' has shape %s, expected [1,N,C]",
                                i, name_of(&t), shape);
        int is_reg = t.dims[2] == VX_NANODET_REG_CH;
        if ((is_reg ? nreg : ncls) == VX_DETECT_MAX_LEVELS)
            return unrecognised(info, "not a NanoDet detector: more than %d output levels",
                                VX_DETECT_MAX_LEVELS);
        if (is_reg) {
            reg[nreg++] = i;
            continue;
        }
        if (ncls && t.dims[2] != nc)
            return unrecognised(
                info, "not a NanoDet detector: class outputs disagree on the class count (%d vs %lld)", nc,
                (long long)t.dims[2]);
        if (t.dims[2] > MAX_CLASSES)
            return unrecognised(info, "not a NanoDet detector: output %d has %lld classes", i,
                                (long long)t.dims[2]);
        nc = (int)t.dims[2];
        cls[ncls++] = i;
    }
    if (ncls == 0 || ncls != nreg)
        return unrecognised(info,
                            "not a NanoDet detector: %d class-score outputs and %d box outputs ([1,N,%d]); "
                            "expected one of each per level",
                            ncls, nreg, VX_NANODET_REG_CH);

    int used_reg[VX_DETECT_MAX_LEVELS] = {0};
    int64_t cells = 0;
    for (int l = 0; l < ncls; l++) {
        vx_nn_tensor_info t;
        vx_nn_model_output_info(m, cls[l], &t);
        int64_t n = t.dims[1];
        int grid = isqrt_exact(n);
        if (grid <= 0 || size % grid != 0)
            return unrecognised(
                info,
                "not a NanoDet detector: output '%s' has %lld cells, not the square grid of a "
                "stride that divides the input size %d",
                name_of(&t), (long long)n, size);
        int match = -1;
        for (int r = 0; r < nreg; r++) {
            vx_nn_tensor_info u;
            vx_nn_model_output_info(m, reg[r], &u);
            if (u.dims[1] != n)
                continue;
            if (match >= 0 || used_reg[r])
                return unrecognised(info, "not a NanoDet detector: several outputs have %lld cells",
                                    (long long)n);
            match = r;
        }
        if (match < 0)
            return unrecognised(info, "not a NanoDet detector: no box output with %lld cells for '%s'",
                                (long long)n, name_of(&t));
        used_reg[match] = 1;
        info->levels[l] = (vx_detect_level){cls[l], reg[match], size / grid, grid};
        cells += n;
    }
    qsort(info->levels, (size_t)ncls, sizeof info->levels[0], cmp_level_stride);
    info->family = VX_FAMILY_NANODET;
    info->num_classes = nc;
    info->num_anchors = (int)cells;
    info->nlevels = info->nstrides = ncls;
    for (int l = 0; l < ncls; l++)
        info->strides[l] = info->levels[l].stride;
    char st[64];
    format_strides(info->strides, ncls, st, sizeof st);
    snprintf(info->why, sizeof info->why,
             "NanoDet heads: %d levels of class/box outputs [1,N,%d] + [1,N,%d], strides %s", ncls, nc,
             VX_NANODET_REG_CH, st);
    return VX_OK;
}

/* ---- YOLO ---- */

typedef struct {
    int n;
    int s[VX_DETECT_MAX_LEVELS];
} stride_set;

static int power_of_two(long v)
{
    return v > 0 && (v & (v - 1)) == 0;
}

/* The stride sets to try.  Ultralytics writes `stride` as the largest
 * stride ("32", "64" for P6 models); a list is taken as it is. */
static int stride_sets(const char *meta, stride_set *sets)
{
    if (meta) {
        const char *p = meta;
        while (*p == ' ')
            p++;
        if (*p == '[') {
            stride_set one = {0};
            p++;
            for (;;) {
                char *end;
                long v = strtol(p, &end, 10);
                if (end == p || !power_of_two(v) || v > 1024 || one.n == VX_DETECT_MAX_LEVELS ||
                    (one.n && v <= one.s[one.n - 1]))
                    break;
                one.s[one.n++] = (int)v;
                p = end;
                while (*p == ' ' || *p == ',')
                    p++;
                if (*p == ']') {
                    sets[0] = one;
                    return 1;
                }
            }
        } else {
            char *end;
            long top = strtol(p, &end, 10);
            while (*end == ' ')
                end++;
            if (end != p && !*end && power_of_two(top) && top >= 8 && top <= 1024) {
                int k = 0;
                for (int lo = 8; lo >= 4; lo /= 2) {
                    sets[k].n = 0;
                    for (long s = lo; s <= top && sets[k].n < VX_DETECT_MAX_LEVELS; s *= 2)
                        sets[k].s[sets[k].n++] = (int)s;
                    k++;
                }
                return k;
            }
        }
    }
    sets[0] = (stride_set){3, {8, 16, 32}};
    return 1;
}

static int64_t grid_cells(int w, int h, const stride_set *set)
{
    int64_t n = 0;
    for (int i = 0; i < set->n; i++) {
        int s = set->s[i];
        n += (int64_t)((w + s - 1) / s) * ((h + s - 1) / s);
    }
    return n;
}

static int is_true(const char *v)
{
    return v && (!strcmp(v, "True") || !strcmp(v, "true") || !strcmp(v, "1"));
}

typedef struct {
    vx_model_family family;
    int channels_first;
    int64_t boxes;
    int nc;
    int set; /* matching stride set, or -1 */
    int names_ok, canonical, score;
} hypothesis;

static vx_err recognise_yolo(const vx_nn_model *m, int index, vx_family_info *info)
{
    vx_nn_tensor_info t;
    char shape[128];
    vx_nn_model_output_info(m, index, &t);
    format_shape(&t, shape, sizeof shape);
    if (t.rank != 3 || !(t.dims[0] == 1 || t.dims[0] <= 0) || t.dims[1] <= 0 || t.dims[2] <= 0)
        return unrecognised(info,
                            "output '%s' has shape %s: not a YOLOv8/YOLO11 [1,4+nc,N], YOLOv5 [1,N,5+nc] "
                            "or NanoDet head",
                            name_of(&t), shape);
    const int64_t a = t.dims[1], b = t.dims[2];
    if (a > (1 << 26) || b > (1 << 26))
        return unrecognised(info, "output '%s' has shape %s: too large for a detector head", name_of(&t),
                            shape);

    stride_set sets[MAX_SETS];
    int nsets = stride_sets(vx_nn_model_metadata(m, "stride"), sets);
    int meta_nc = 0;
    const char *names = vx_nn_model_metadata(m, "names");
    char **nv;
    if (names && vx_detect_parse_names(names, &nv, &meta_nc) == VX_OK)
        vx_detect_free_names(nv, meta_nc);
    else
        meta_nc = 0;

    hypothesis best = {.score = -1}, tie = {.score = -1};
    for (int f = 0; f < 2; f++) {
        vx_model_family fam = f ? VX_FAMILY_YOLOV5 : VX_FAMILY_YOLOV8;
        int fixed = f ? 5 : 4, per_cell = f ? 3 : 1;
        for (int cf = 1; cf >= 0; cf--) {
            int64_t nc = (cf ? a : b) - fixed;
            if (nc < 1 || nc > MAX_CLASSES)
                continue;
            hypothesis h = {fam, cf, cf ? b : a, (int)nc, -1, 0, 0, 0};
            for (int s = 0; s < nsets && h.set < 0; s++)
                if (h.boxes == per_cell * grid_cells(info->input_w, info->input_h, &sets[s]))
                    h.set = s;
            h.names_ok = meta_nc > 0 && h.nc == meta_nc;
            h.canonical = (fam == VX_FAMILY_YOLOV8) == cf;
            if (h.set < 0 && !(h.names_ok && h.canonical))
                continue;
            /* The box count and the exporter's own class count weigh the
             * same: when they disagree the metadata, written from the
             * model itself, is the better witness. */
            h.score = (h.set >= 0) * 4 + h.names_ok * 4 + h.canonical;
            if (h.score > best.score) {
                best = h;
                tie.score = -1;
            } else if (h.score == best.score) {
                tie = h;
            }
        }
    }
    if (best.score < 0) {
        char st[64];
        format_strides(sets[0].s, sets[0].n, st, sizeof st);
        int64_t cells = grid_cells(info->input_w, info->input_h, &sets[0]);
        return unrecognised(
            info,
            "output '%s' %s fits no YOLO head for a %dx%d input: YOLOv8/YOLO11 would be "
            "[1,4+nc,%lld], YOLOv5 [1,%lld,5+nc] (strides %s)%s",
            name_of(&t), shape, info->input_w, info->input_h, (long long)cells, (long long)(3 * cells), st,
            b == 6 ? "; [1,K,6] is an end-to-end export (NMS in the graph), not supported" : "");
    }
    if (tie.score == best.score)
        return unrecognised(info, "output '%s' %s is ambiguous: %s with %d classes or %s with %d classes",
                            name_of(&t), shape, vx_model_family_name(best.family), best.nc,
                            vx_model_family_name(tie.family), tie.nc);

    info->family = best.family;
    info->num_classes = best.nc;
    info->num_anchors = (int)best.boxes;
    info->output = index;
    info->channels_first = best.channels_first;
    char how[96];
    if (best.set >= 0) {
        info->nstrides = sets[best.set].n;
        memcpy(info->strides, sets[best.set].s, sizeof(int) * (size_t)sets[best.set].n);
        char st[64];
        format_strides(info->strides, info->nstrides, st, sizeof st);
        snprintf(how, sizeof how, "%sstrides %s at %dx%d",
                 best.family == VX_FAMILY_YOLOV5 ? "3 anchors x " : "", st, info->input_w, info->input_h);
    } else {
        snprintf(how, sizeof how, "a box count no stride set gives; the metadata names %d classes", meta_nc);
    }
    snprintf(info->why, sizeof info->why, "output '%s' %s: %s head%s, %d classes, %d boxes: %s", name_of(&t),
             shape, best.family == VX_FAMILY_YOLOV8 ? "YOLOv8/YOLO11" : "YOLOv5 (objectness)",
             best.canonical ? "" : ", transposed", best.nc, info->num_anchors, how);
    return VX_OK;
}

/* ---- entry ---- */

vx_err vx_detect_family(const vx_nn_model *m, vx_family_info *info)
{
    memset(info, 0, sizeof *info);
    info->family = VX_FAMILY_UNKNOWN;
    int nin = vx_nn_model_input_count(m);
    if (nin != 1)
        return unrecognised(info, "not a detector: it has %d inputs, expected 1 (the image)", nin);
    vx_nn_tensor_info in;
    char shape[128];
    vx_nn_model_input_info(m, 0, &in);
    format_shape(&in, shape, sizeof shape);
    const int64_t *d = in.dims;
    int batch_ok = in.rank == 4 && (d[0] == 1 || d[0] <= 0);
    int64_t h, w;
    if (batch_ok && d[1] == 3 && d[2] > 0 && d[3] > 0) {
        h = d[2], w = d[3];
    } else if (batch_ok && d[3] == 3 && d[1] > 0 && d[2] > 0) {
        h = d[1], w = d[2];
        info->nhwc = 1;
    } else {
        return unrecognised(info, "not a detector: input '%s' has shape %s, expected [1,3,H,W]", name_of(&in),
                            shape);
    }
    if (w > MAX_INPUT || h > MAX_INPUT)
        return unrecognised(info, "input '%s' %s is larger than %dx%d", name_of(&in), shape, MAX_INPUT,
                            MAX_INPUT);
    info->input_w = (int)w;
    info->input_h = (int)h;

    const char *task = vx_nn_model_metadata(m, "task");
    if (task && strcmp(task, "detect"))
        return unrecognised(info, "the metadata says task '%.40s': only 'detect' models are decoded", task);
    if (is_true(vx_nn_model_metadata(m, "end2end")) || is_true(vx_nn_model_metadata(m, "nms")))
        return unrecognised(info, "an end-to-end export (NMS inside the graph): export with end2end=False "
                                  "and nms=False");

    /* One rank-3 output is a YOLO head; older YOLOv5 exports add the raw
     * per-level tensors [1,3,H,W,5+nc] beside it, which are ignored. */
    int nout = vx_nn_model_output_count(m), rank3 = 0, rank5 = 0, yolo = -1;
    for (int i = 0; i < nout; i++) {
        vx_nn_tensor_info t;
        vx_nn_model_output_info(m, i, &t);
        if (t.rank == 3) {
            rank3++;
            yolo = i;
        }
        rank5 += t.rank == 5;
    }
    if (nout < 1)
        return unrecognised(info, "not a detector: it has no outputs");
    if (nout == 1)
        return recognise_yolo(m, 0, info);
    if (rank3 == 1 && rank3 + rank5 == nout)
        return recognise_yolo(m, yolo, info);
    return recognise_nanodet(m, &in, info);
}

/* ---- class names ---- */

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

static int hex_value(const char *p, int digits, unsigned long *out)
{
    unsigned long v = 0;
    for (int i = 0; i < digits; i++) {
        char c = p[i];
        int x = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (x < 0)
            return 0;
        v = v * 16 + (unsigned long)x;
    }
    *out = v;
    return 1;
}

static size_t put_utf8(char *o, unsigned long cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A Python string literal at *pp ('...' or "..."), with repr()'s escapes.
 * The decoded text is never longer than the literal, so one allocation of
 * the literal's length holds it. */
static vx_err parse_string(const char *text, const char **pp, char **out)
{
    const char *p = *pp;
    char q = *p;
    if (q != '\'' && q != '"')
        return vx_fail(VX_ERR_FORMAT, "class names: expected a quoted name at offset %d, near '%.20s'",
                       (int)(p - text), p);
    const char *b = ++p;
    while (*p && *p != q)
        p += p[0] == '\\' && p[1] ? 2 : 1;
    if (*p != q)
        return vx_fail(VX_ERR_FORMAT, "class names: the name at offset %d has no closing %c",
                       (int)(b - 1 - text), q);
    char *s = malloc((size_t)(p - b) + 1), *o = s;
    if (!s)
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    for (const char *c = b; c < p; c++) {
        if (*c != '\\') {
            *o++ = *c;
            continue;
        }
        c++;
        unsigned long cp;
        switch (*c) {
        case 'n': *o++ = '\n'; break;
        case 't': *o++ = '\t'; break;
        case 'r': *o++ = '\r'; break;
        case '\\':
        case '\'':
        case '"': *o++ = *c; break;
        case 'x':
        case 'u':
        case 'U': {
            int digits = *c == 'x' ? 2 : *c == 'u' ? 4 : 8;
            if (c + digits >= p || !hex_value(c + 1, digits, &cp) || cp == 0 || cp > 0x10FFFF ||
                (cp >= 0xD800 && cp <= 0xDFFF)) {
                free(s);
                return vx_fail(VX_ERR_FORMAT, "class names: bad escape '\\%.*s' at offset %d",
                               digits + 1 > 9 ? 9 : digits + 1, c, (int)(c - 1 - text));
            }
            o += put_utf8(o, cp);
            c += digits;
            break;
        }
        default: /* Python keeps unknown escapes as written */ *o++ = '\\'; *o++ = *c;
        }
    }
    *o = 0;
    *pp = p + 1;
    *out = s;
    return VX_OK;
}

vx_err vx_detect_parse_names(const char *text, char ***names, int *count)
{
    *names = NULL;
    *count = 0;
    if (!text)
        return vx_fail(VX_ERR_INVALID, "class names: no text");
    const char *p = skip_ws(text);
    char open = *p, close = open == '{' ? '}' : ']';
    if (open != '{' && open != '[')
        return vx_fail(VX_ERR_FORMAT, "class names: expected {id: 'name', ...} or ['name', ...], not '%.20s'",
                       p);
    p = skip_ws(p + 1);

    char **v = NULL;
    int *ids = NULL;
    int n = 0, cap = 0;
    vx_err e = VX_OK;
    while (*p != close) {
        if (n == MAX_CLASSES) {
            e = vx_fail(VX_ERR_FORMAT, "class names: more than %d", MAX_CLASSES);
            goto out;
        }
        long id = n;
        if (open == '{') {
            /* Keys are ints; JSON-style quoted ints are accepted too. */
            char kq = *p == '\'' || *p == '"' ? *p : 0;
            const char *k = kq ? p + 1 : p;
            char *end = (char *)k;
            id = k[0] >= '0' && k[0] <= '9' ? strtol(k, &end, 10) : -1;
            if (id < 0 || id >= MAX_CLASSES || (kq && *end != kq)) {
                e = vx_fail(VX_ERR_FORMAT, "class names: expected a class id at offset %d, near '%.20s'",
                            (int)(p - text), p);
                goto out;
            }
            p = skip_ws(kq ? end + 1 : end);
            if (*p != ':') {
                e = vx_fail(VX_ERR_FORMAT, "class names: expected ':' after id %ld at offset %d", id,
                            (int)(p - text));
                goto out;
            }
            p = skip_ws(p + 1);
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 128;
            char **nv = realloc(v, sizeof *v * (size_t)cap);
            int *ni = nv ? realloc(ids, sizeof *ids * (size_t)cap) : NULL;
            if (nv)
                v = nv;
            if (ni)
                ids = ni;
            if (!nv || !ni) {
                e = vx_fail(VX_ERR_NOMEM, "out of memory");
                goto out;
            }
        }
        if ((e = parse_string(text, &p, &v[n])))
            goto out;
        ids[n++] = (int)id;
        p = skip_ws(p);
        if (*p == ',')
            p = skip_ws(p + 1);
        else if (*p != close) {
            e = vx_fail(VX_ERR_FORMAT, "class names: expected ',' or '%c' at offset %d, near '%.20s'", close,
                        (int)(p - text), p);
            goto out;
        }
    }
    if (*skip_ws(p + 1)) {
        e = vx_fail(VX_ERR_FORMAT, "class names: text after the closing '%c' at offset %d", close,
                    (int)(p - text));
        goto out;
    }
    if (n == 0) {
        e = vx_fail(VX_ERR_FORMAT, "class names: empty");
        goto out;
    }
    /* Place each name at its id: every id of 0..n-1 exactly once. */
    char **byid = calloc((size_t)n, sizeof *byid);
    if (!byid) {
        e = vx_fail(VX_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        if (ids[i] >= n || byid[ids[i]]) {
            e = vx_fail(VX_ERR_FORMAT, "class names: id %d is %s among %d names", ids[i],
                        ids[i] >= n ? "out of range" : "repeated", n);
            free(byid);
            goto out;
        }
        byid[ids[i]] = v[i];
    }
    free(v);
    free(ids);
    *names = byid;
    *count = n;
    return VX_OK;

out:
    vx_detect_free_names(v, n);
    free(ids);
    return e;
}

void vx_detect_free_names(char **names, int count)
{
    if (!names)
        return;
    for (int i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

vx_err vx_detect_class_names(const vx_nn_model *m, int num_classes, char ***names, vx_names_source *source,
                             char *warning, size_t warning_len)
{
    *names = NULL;
    if (warning && warning_len)
        warning[0] = 0;
    if (num_classes <= 0 || num_classes > MAX_CLASSES)
        return vx_fail(VX_ERR_INVALID, "class names: %d classes", num_classes);
    const char *meta = vx_nn_model_metadata(m, "names");
    char **parsed = NULL;
    int n = 0;
    if (meta) {
        if (vx_detect_parse_names(meta, &parsed, &n) == VX_OK && n == num_classes) {
            *names = parsed;
            *source = VX_NAMES_METADATA;
            return VX_OK;
        }
        if (warning && warning_len) {
            if (parsed)
                snprintf(warning, warning_len, "the metadata names %d classes but the model has %d", n,
                         num_classes);
            else
                snprintf(warning, warning_len, "%s", vx_last_error());
        }
        vx_detect_free_names(parsed, n);
    }
    char **v = calloc((size_t)num_classes, sizeof *v);
    if (!v)
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    *source = num_classes == 80 ? VX_NAMES_COCO80 : VX_NAMES_GENERIC;
    for (int i = 0; i < num_classes; i++) {
        char buf[24];
        if (num_classes != 80)
            snprintf(buf, sizeof buf, "class%d", i);
        v[i] = strdup(num_classes == 80 ? vx_coco80_names[i] : buf);
        if (!v[i]) {
            vx_detect_free_names(v, num_classes);
            return vx_fail(VX_ERR_NOMEM, "out of memory");
        }
    }
    *names = v;
    return VX_OK;
}
