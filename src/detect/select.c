/*
 * Model selection: the load priority of engine files and precisions.  See
 * vx_select.h for the rules; this file builds the candidate list and walks
 * it.  Engine headers are probed first (cheap: version, ISA, size, the
 * precision inside, the source fingerprint), so a file for another machine
 * or a stale one is refused with its real reason before anything large is
 * read; the full checks (checksums, graph) run in the loader the callback
 * calls.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "detect/vx_select.h"

#define MAX_CAND 6

typedef struct {
    char path[4096];
    vx_nn_precision precision; /* what the engine computes */
    int engine;                /* an engine file (its header must say `precision`) */
    const char *label;         /* for the log: "INT8 engine", ... */
} candidate;

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcasecmp(s + a - b, suffix);
}

/* Splits a path into folder and the base name engines are named after:
 * "d/weight.onnx", "d/weight_fp16.engine" -> "d", "weight". */
static void split_base(const char *path, char *dir, size_t dlen, char *base, size_t blen)
{
    const char *slash = strrchr(path, '/');
    if (slash)
        snprintf(dir, dlen, "%.*s", (int)(slash - path) ? (int)(slash - path) : 1, path);
    else
        snprintf(dir, dlen, ".");
    snprintf(base, blen, "%s", slash ? slash + 1 : path);
    static const char *const sfx[] = {"_fp16.engine", "_fp32.engine", ".engine", ".onnx", ".json"};
    for (size_t i = 0; i < sizeof sfx / sizeof *sfx; i++)
        if (ends_with(base, sfx[i]) && strlen(base) > strlen(sfx[i])) {
            base[strlen(base) - strlen(sfx[i])] = 0;
            break;
        }
}

int vx_engine_file_name(const char *model_path, const char *out_dir, vx_nn_precision p, char *buf, size_t len)
{
    char dir[4096], base[1024];
    split_base(model_path, dir, sizeof dir, base, sizeof base);
    const char *sfx = p == VX_NN_INT8 ? ".engine" : p == VX_NN_BF16 ? "_fp16.engine" : "_fp32.engine";
    int n = snprintf(buf, len, "%s/%s%s", out_dir ? out_dir : dir, base, sfx);
    return n > 0 && (size_t)n < len;
}

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* A folder: the one model in it (source models first, else engines of one
 * base name).  Writes the path of a representative file into out. */
static vx_err pick_in_folder(const char *dir, char *out, size_t len)
{
    DIR *d = opendir(dir);
    if (!d)
        return vx_fail(VX_ERR_IO, "%s: %s", dir, strerror(errno));
    char src[4][256], eng[256] = "";
    int nsrc = 0, neng_bases = 0;
    char eng_base[256] = "";
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        if (n[0] == '.')
            continue;
        if (ends_with(n, ".onnx") || ends_with(n, ".json")) {
            if (nsrc < 4)
                snprintf(src[nsrc], sizeof src[nsrc], "%s", n);
            nsrc++;
        } else if (ends_with(n, ".engine")) {
            char dd[8], b[256];
            split_base(n, dd, sizeof dd, b, sizeof b);
            if (!neng_bases || strcmp(b, eng_base)) {
                if (neng_bases && strcmp(b, eng_base))
                    neng_bases++;
                else
                    neng_bases = 1;
                snprintf(eng_base, sizeof eng_base, "%s", b);
            }
            snprintf(eng, sizeof eng, "%s", n);
        }
    }
    closedir(d);
    int n;
    if (nsrc == 1)
        n = snprintf(out, len, "%s/%s", dir, src[0]);
    else if (nsrc > 1)
        return vx_fail(VX_ERR_INVALID, "%s: %d models in the folder (%s, %s%s); name one in MODEL_PATH", dir,
                       nsrc, src[0], src[1], nsrc > 2 ? ", ..." : "");
    else if (neng_bases == 1)
        n = snprintf(out, len, "%s/%s", dir, eng);
    else if (neng_bases > 1)
        return vx_fail(VX_ERR_INVALID, "%s: engine files of several models; name one in MODEL_PATH", dir);
    else
        return vx_fail(VX_ERR_NOT_FOUND,
                       "%s: no model in the folder (expected .onnx, .json or .engine files)", dir);
    return n > 0 && (size_t)n < len ? VX_OK : vx_fail(VX_ERR_INVALID, "%s: path too long", dir);
}

/* The source model beside the engines, if any: base.onnx, else base.json. */
static int find_source(const char *dir, const char *base, char *out, size_t len)
{
    static const char *const ext[] = {".onnx", ".json"};
    for (int i = 0; i < 2; i++) {
        snprintf(out, len, "%s/%s%s", dir, base, ext[i]);
        if (is_file(out))
            return 1;
    }
    out[0] = 0;
    return 0;
}

static void add(candidate *c, int *n, const char *path, vx_nn_precision p, int engine, const char *label)
{
    if (*n >= MAX_CAND || !path[0])
        return;
    for (int i = 0; i < *n; i++) /* the same file in the same precision once */
        if (!strcmp(c[i].path, path) && c[i].precision == p)
            return;
    snprintf(c[*n].path, sizeof c[*n].path, "%s", path);
    c[*n].precision = p;
    c[*n].engine = engine;
    c[*n].label = label;
    (*n)++;
}

/* Header checks an engine candidate must pass before it is loaded: the
 * probe's (format, version, ISA, size), the precision its name promises,
 * and the fingerprint of the source model beside it. */
static vx_err vet_engine(const candidate *c, const char *source)
{
    vx_nn_engine_file_info info;
    vx_err e = vx_nn_engine_file_probe(c->path, &info);
    if (e)
        return e;
    if (info.precision != c->precision)
        return vx_fail(VX_ERR_FORMAT, "%s: holds a %s engine where %s was expected (file renamed?)", c->path,
                       vx_nn_precision_name(info.precision), vx_nn_precision_name(c->precision));
    if (source[0] && info.source_name[0]) {
        uint64_t size;
        uint32_t crc;
        if (vx_nn_source_fingerprint(source, &size, &crc) == VX_OK &&
            (size != info.source_size || crc != info.source_crc))
            return vx_fail(VX_ERR_FORMAT,
                           "%s: stale: built from a different %s than the one beside it now; export again",
                           c->path, info.source_name);
    }
    return VX_OK;
}

vx_err vx_model_select(const vx_model_request *req, vx_model_try_fn try_fn, void *user,
                       vx_model_choice *choice)
{
    memset(choice, 0, sizeof *choice);
    const char *want = req->precision && *req->precision ? req->precision : "auto";
    int p_auto = !strcasecmp(want, "auto"), p_fp32 = !strcasecmp(want, "fp32"),
        p_red = !strcasecmp(want, "fp16") || !strcasecmp(want, "bf16"), p_int8 = !strcasecmp(want, "int8");
    if (!p_auto && !p_fp32 && !p_red && !p_int8)
        return vx_fail(VX_ERR_INVALID, "PRECISION=%s: expected auto, fp32, fp16, bf16 or int8", want);
    int ref = req->backend == VX_NN_BACKEND_REF;
    if (ref && (p_red || p_int8))
        return vx_fail(VX_ERR_INVALID, "PRECISION=%s: the ref device computes fp32 only", want);

    char path[4096], dir[4096], base[1024], source[4200];
    struct stat st;
    if (stat(req->model_path, &st) == 0 && S_ISDIR(st.st_mode)) {
        vx_err e = pick_in_folder(req->model_path, path, sizeof path);
        if (e)
            return e;
    } else {
        snprintf(path, sizeof path, "%s", req->model_path);
    }
    split_base(path, dir, sizeof dir, base, sizeof base);
    int explicit_engine = ends_with(path, ".engine");
    if (!explicit_engine)
        snprintf(source, sizeof source, "%s", path); /* tried even when missing: its error is the answer */
    else
        find_source(dir, base, source, sizeof source);

    char e_int8[4300], e_red[4300], e_fp32[4300];
    snprintf(e_int8, sizeof e_int8, "%s/%s.engine", dir, base);
    snprintf(e_red, sizeof e_red, "%s/%s_fp16.engine", dir, base);
    snprintf(e_fp32, sizeof e_fp32, "%s/%s_fp32.engine", dir, base);
    /* What the reduced precision converted at load starts from. */
    const char *convert_from = source[0] ? source : is_file(e_fp32) ? e_fp32 : "";
    int bf16_native = vx_nn_precision_native(VX_NN_BF16);

    candidate c[MAX_CAND];
    int n = 0;
    if (explicit_engine) {
        vx_nn_engine_file_info info;
        vx_nn_precision p = VX_NN_FP32;
        if (vx_nn_engine_file_probe(path, &info) == VX_OK)
            p = info.precision;
        else if (ends_with(path, "_fp16.engine"))
            p = VX_NN_BF16;
        else if (!ends_with(path, "_fp32.engine"))
            p = VX_NN_INT8;
        int fits = p_auto || (p_fp32 && p == VX_NN_FP32) || (p_red && p == VX_NN_BF16) ||
                   (p_int8 && p == VX_NN_INT8);
        if (ref && p != VX_NN_FP32)
            fits = 0;
        if (!fits)
            VX_WARN("model: %s is a %s engine; PRECISION=%s%s asks otherwise, looking beside it", path,
                    vx_nn_precision_name(p), want, ref ? " on DEVICE=ref" : "");
        else
            add(c, &n, path, p, 1, "engine named in MODEL_PATH");
    }
    if (ref) {
        add(c, &n, e_fp32, VX_NN_FP32, 1, "FP32 engine");
        add(c, &n, source, VX_NN_FP32, 0, "model");
    } else if (p_int8) {
        add(c, &n, e_int8, VX_NN_INT8, 1, "INT8 engine");
    } else if (p_red) {
        add(c, &n, e_red, VX_NN_BF16, 1, "reduced-precision engine");
        add(c, &n, convert_from, VX_NN_BF16, 0, "converted to BF16 at load");
    } else if (p_fp32) {
        add(c, &n, e_fp32, VX_NN_FP32, 1, "FP32 engine");
        add(c, &n, source, VX_NN_FP32, 0, "model");
    } else {
        add(c, &n, e_int8, VX_NN_INT8, 1, "INT8 engine");
        add(c, &n, e_red, VX_NN_BF16, 1, "reduced-precision engine");
        if (bf16_native)
            add(c, &n, convert_from, VX_NN_BF16, 0, "converted to BF16 at load");
        add(c, &n, e_fp32, VX_NN_FP32, 1, "FP32 engine");
        add(c, &n, source, VX_NN_FP32, 0, "model");
    }

    vx_err last = VX_ERR_NOT_FOUND;
    char last_msg[512] = "";
    char bad[4096] = ""; /* a source model that failed to load: no other precision will help */
    int tried = 0;
    for (int i = 0; i < n; i++) {
        const candidate *k = &c[i];
        if (k->engine && !is_file(k->path) && strcmp(k->path, path))
            continue; /* not exported: nothing to say */
        if (!strcmp(k->path, bad))
            continue;
        tried++;
        vx_nn_engine_opts eo;
        vx_nn_engine_opts_default(&eo);
        eo.backend = req->backend;
        eo.threads = req->threads;
        eo.precision = k->precision;
        vx_err e = k->engine ? vet_engine(k, source) : VX_OK;
        if (!e)
            e = try_fn(user, k->path, &eo);
        if (e) {
            last = e;
            snprintf(last_msg, sizeof last_msg, "%s", vx_last_error());
            if (!k->engine && (e == VX_ERR_IO || e == VX_ERR_FORMAT || e == VX_ERR_NOT_FOUND))
                snprintf(bad, sizeof bad, "%s", k->path);
            /* Refusals are worth a line only when something else follows. */
            int more = 0;
            for (int j = i + 1; j < n && !more; j++)
                more = strcmp(c[j].path, bad) && (!c[j].engine || is_file(c[j].path));
            if (more)
                VX_WARN("model: %s refused: %s; trying the next candidate", k->label, last_msg);
            choice->refused++;
            continue;
        }
        snprintf(choice->path, sizeof choice->path, "%s", k->path);
        choice->engine = eo;
        choice->from_engine_file = k->engine;
        const char *reason;
        if (!p_auto && !ref)
            reason = p_int8 ? "PRECISION=int8" : p_red ? "PRECISION=fp16/bf16" : "PRECISION=fp32";
        else if (ref)
            reason = "DEVICE=ref computes FP32 only";
        else if (explicit_engine && i == 0)
            reason = "MODEL_PATH names this engine";
        else if (k->precision == VX_NN_INT8)
            reason = "an INT8 engine comes first in the load priority";
        else if (k->engine && k->precision == VX_NN_BF16)
            reason = "no usable INT8 engine; a reduced-precision engine comes next";
        else if (k->precision == VX_NN_BF16)
            reason = "no usable engine file; this CPU computes BF16 natively";
        else if (k->engine)
            reason = bf16_native ? "no usable INT8 or reduced-precision engine, no source model to convert"
                                 : "no usable INT8 or reduced-precision engine; no native BF16 on this CPU";
        else
            reason = bf16_native ? "no usable engine file and no reduced precision asked"
                                 : "no usable engine file; no native BF16 on this CPU";
        snprintf(choice->why, sizeof choice->why, "%s %s (%s) in %s: %s%s", k->label, k->path,
                 k->engine ? "engine file" : "source model", vx_nn_precision_name(k->precision), reason,
                 choice->refused ? "; earlier candidates refused (see above)" : "");
        vx_log(req->quiet ? VX_LOG_DEBUG : VX_LOG_INFO, "model: loaded %s", choice->why);
        return VX_OK;
    }
    if (!tried) {
        if (p_int8)
            return vx_fail(VX_ERR_NOT_FOUND,
                           "PRECISION=int8: no INT8 engine %s (create it with: verolux export --model MODEL "
                           "--format int8)",
                           e_int8);
        return vx_fail(VX_ERR_NOT_FOUND, "%s: no model to load", req->model_path);
    }
    /* The last refusal is the error; earlier ones were logged. */
    return vx_fail(last, "%s", last_msg);
}

typedef struct {
    const vx_detect_opts *opts;
    vx_detector *det;
} det_try;

static vx_err try_detector(void *user, const char *path, const vx_nn_engine_opts *eo)
{
    det_try *t = user;
    return vx_detector_create(path, eo, t->opts, &t->det);
}

vx_err vx_detector_open(const vx_model_request *req, const vx_detect_opts *opts, vx_detector **out,
                        vx_model_choice *choice)
{
    *out = NULL;
    det_try t = {opts, NULL};
    vx_err e = vx_model_select(req, try_detector, &t, choice);
    if (!e)
        *out = t.det;
    return e;
}
