/*
 * detect/select: which model file to load and in which precision, in one
 * place for `serve`, `detect` and `bench`.
 *
 * MODEL_PATH names a source model (TFJS model.json or ONNX), an engine file
 * or a folder holding them.  Engine files sit beside the source model and
 * are named after its base name the way `verolux export` writes them:
 * NAME.engine (INT8), NAME_fp16.engine (reduced precision: BF16 on the
 * cpu backend) and NAME_fp32.engine.  With PRECISION=auto the first that
 * loads wins:
 *
 *   INT8 engine > reduced-precision engine > the model converted to BF16 at
 *   load (only where the CPU computes BF16 natively) > FP32 engine > the
 *   source model in FP32.
 *
 * PRECISION=fp32|fp16|bf16|int8 keeps only the candidates of that
 * precision (int8 needs an INT8 engine; fp16/bf16 converts at load when no
 * engine exists), and DEVICE=ref keeps only FP32 ones.  An engine that is
 * refused -- corrupt, another verolux version or CPU ISA, built from a
 * source model that has changed since (stale), or holding another precision
 * than its name says -- is logged with its reason and the next candidate is
 * tried.  One line at the end says what was loaded and why.
 *
 * Threading: call from one thread; the callback runs on it.
 */
#ifndef VX_SELECT_H
#define VX_SELECT_H

#include "detect/vx_detect.h"
#include "nn/vx_nn.h"

typedef struct {
    const char *model_path; /* file or folder */
    const char *precision;  /* auto (NULL), fp32, fp16, bf16, int8 */
    vx_nn_backend backend;
    int threads; /* 0: all cores */
    int quiet;   /* the "loaded" line at debug level (one-shot CLI commands) */
} vx_model_request;

typedef struct {
    char path[4096];          /* the file that loaded */
    vx_nn_engine_opts engine; /* backend, threads, precision it runs in */
    int from_engine_file;     /* 1: a verolux engine file */
    char why[768];            /* one line: what was loaded and why */
    int refused;              /* candidates refused before it */
} vx_model_choice;

/* Tries one candidate: load `path` and build an engine with `eo`.  Returns
 * VX_OK when it is usable (the caller keeps what it built). */
typedef vx_err (*vx_model_try_fn)(void *user, const char *path, const vx_nn_engine_opts *eo);

/* Walks the candidates of req in priority order, calling try_fn until one
 * succeeds; fills *choice and logs the line.  Fails with the last
 * candidate's error when none loads, or VX_ERR_NOT_FOUND / VX_ERR_INVALID
 * when there is no candidate (an empty or ambiguous folder, PRECISION=int8
 * without an INT8 engine). */
vx_err vx_model_select(const vx_model_request *req, vx_model_try_fn try_fn, void *user,
                       vx_model_choice *choice);

/* vx_model_select creating a detector. */
vx_err vx_detector_open(const vx_model_request *req, const vx_detect_opts *opts, vx_detector **out,
                        vx_model_choice *choice);

/* Engine file names for a source model path ("dir/weight.onnx" ->
 * "dir/weight.engine", "dir/weight_fp16.engine", "dir/weight_fp32.engine";
 * out_dir, when not NULL, replaces the folder).  precision: INT8, BF16
 * (the _fp16 file) or FP32.  Returns 0 when the name does not fit. */
int vx_engine_file_name(const char *model_path, const char *out_dir, vx_nn_precision precision, char *buf,
                        size_t len);

#endif
