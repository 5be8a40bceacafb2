/*
 * nn: the neural-network engine.
 *
 * A model file (TensorFlow.js graph-model or ONNX) is loaded into a
 * backend-independent graph IR, checked, shape-inferred and optimised once
 * (constant folding, transpose/identity removal, Pad folded into Conv, bias,
 * activation and residual Add fused into the convolution).  The optimised
 * model (vx_nn_model) is immutable and can be compiled any number of times
 * into engines (vx_nn_engine), one per backend and thread count:
 *
 *   ref  plain portable C, one thread: the correctness oracle for the tests;
 *   cpu  oneDNN primitives created once at engine creation, one blocked
 *        memory layout through the whole network, post-ops fusion;
 *   cuda cuDNN/cuBLAS, where the build and the machine have it.
 *
 * Inputs and outputs are exchanged as dense row-major float32 arrays in the
 * shapes the model file declares (NCHW input for NanoDet).  Engines reorder
 * internally.
 *
 * Threading: a model may be shared read-only by any number of threads and
 * engines.  An engine is used by one thread at a time (its buffers are its
 * own).  The model must outlive every engine made from it.
 */
#ifndef VX_NN_H
#define VX_NN_H

#include <stdint.h>

#include "core/vx_core.h"

#define VX_NN_MAX_RANK 6

typedef struct vx_nn_model vx_nn_model;
typedef struct vx_nn_engine vx_nn_engine;

typedef enum {
    VX_NN_BACKEND_REF = 0,
    VX_NN_BACKEND_CPU = 1,
    VX_NN_BACKEND_CUDA = 2,
} vx_nn_backend;

typedef struct {
    const char *name;
    int rank;
    int64_t dims[VX_NN_MAX_RANK];
} vx_nn_tensor_info;

typedef struct {
    const char *format; /* "tfjs", "onnx" */
    int nodes;          /* nodes after optimisation */
    int convs;          /* convolutions */
    int64_t params;     /* number of weight values */
    double flops;       /* 2 * MACs of convolutions and matmuls, one image */
    int opset;          /* ONNX default-domain opset, 0 for other formats */
} vx_nn_model_stats;

typedef struct {
    int optimize; /* 1 (default): run the optimisation passes; 0: as loaded (constants folded) */
} vx_nn_load_opts;

void vx_nn_load_opts_default(vx_nn_load_opts *opts);

/* Loads a model file.  The format is detected from the content (a TFJS
 * model.json with its weight files beside it, or an ONNX ModelProto, also
 * recognised by a .onnx extension).  opts may be NULL. */
vx_err vx_nn_model_load(const char *path, const vx_nn_load_opts *opts, vx_nn_model **out);
/* Loads a TFJS graph-model from memory: `json` is the model.json text and
 * `weights` every weight shard concatenated in manifest order.  Checked and
 * optimised like vx_nn_model_load; messages name the model "<memory>". */
vx_err vx_nn_model_load_tfjs_mem(const char *json, size_t json_len, const uint8_t *weights,
                                 size_t weights_len, const vx_nn_load_opts *opts, vx_nn_model **out);
/* Loads an ONNX model from memory (external-data tensors are refused: there
 * is no folder to read them from).  Messages name the model "<memory>". */
vx_err vx_nn_model_load_onnx_mem(const uint8_t *data, size_t len, const vx_nn_load_opts *opts,
                                 vx_nn_model **out);
void vx_nn_model_destroy(vx_nn_model *model);

int vx_nn_model_input_count(const vx_nn_model *model);
int vx_nn_model_output_count(const vx_nn_model *model);
void vx_nn_model_input_info(const vx_nn_model *model, int index, vx_nn_tensor_info *info);
void vx_nn_model_output_info(const vx_nn_model *model, int index, vx_nn_tensor_info *info);
/* Index of the output with that name, or -1. */
int vx_nn_model_find_output(const vx_nn_model *model, const char *name);
void vx_nn_model_get_stats(const vx_nn_model *model, vx_nn_model_stats *stats);
/* Model metadata (ONNX metadata_props; Ultralytics writes names, stride,
 * imgsz, task there): the value for key, or NULL.  Valid as long as the model. */
const char *vx_nn_model_metadata(const vx_nn_model *model, const char *key);
int vx_nn_model_metadata_count(const vx_nn_model *model);
/* Entry i in file order (NULLs when i is out of range). */
void vx_nn_model_metadata_entry(const vx_nn_model *model, int i, const char **key, const char **value);
/* Human-readable listing of the optimised graph (one node per line). */
void vx_nn_model_dump(const vx_nn_model *model, void *file /* FILE* */);

/* Arithmetic the cpu backend computes in.  FP32 is exact to the reference;
 * BF16 keeps activations and weights in bfloat16 (fp32 accumulation), twice
 * as fast where the CPU has AVX-512 BF16 or AMX. */
typedef enum {
    VX_NN_FP32 = 0,
    VX_NN_BF16 = 1,
    VX_NN_INT8 = 2, /* needs a calibrated model (vx_nn_model_is_calibrated) */
} vx_nn_precision;

typedef struct {
    vx_nn_backend backend;
    int threads;               /* 0: all cores this process may use */
    vx_nn_precision precision; /* cpu backend; ref always computes FP32 */
} vx_nn_engine_opts;

const char *vx_nn_precision_name(vx_nn_precision p);
vx_err vx_nn_precision_parse(const char *name, vx_nn_precision *out);
/* 1 when the cpu backend runs this precision natively on this CPU. */
int vx_nn_precision_native(vx_nn_precision p);

void vx_nn_engine_opts_default(vx_nn_engine_opts *opts);

const char *vx_nn_backend_name(vx_nn_backend backend);
vx_err vx_nn_backend_parse(const char *name, vx_nn_backend *out);
/* 1 when the backend was built in and can run on this machine; otherwise 0
 * and, when why is not NULL, *why says why. */
int vx_nn_backend_available(vx_nn_backend backend, const char **why);

vx_err vx_nn_engine_create(const vx_nn_model *model, const vx_nn_engine_opts *opts, vx_nn_engine **out);
void vx_nn_engine_destroy(vx_nn_engine *engine);

/* Dense float32 buffer for input `index`; fill it before vx_nn_engine_run. */
float *vx_nn_engine_input(vx_nn_engine *engine, int index);
vx_err vx_nn_engine_run(vx_nn_engine *engine);
/* Dense float32 buffer holding output `index` after a run; valid until the
 * next run or destroy. */
const float *vx_nn_engine_output(const vx_nn_engine *engine, int index);
typedef struct {
    int primitives;      /* kernel-library calls per run (cpu backend) */
    int reorders;        /* of which layout conversions */
    int reference_steps; /* nodes run by the portable C kernels */
    double arena_mib;    /* activation memory after liveness planning */
} vx_nn_engine_stats;

void vx_nn_engine_get_stats(const vx_nn_engine *engine, vx_nn_engine_stats *stats);

/* One line on what the engine runs ("cpu: oneDNN 2.6.3, avx512_core_bf16, 2 threads"). */
const char *vx_nn_engine_describe(const vx_nn_engine *engine);

/* INT8 calibration (quant.c).  Feed FP32 runs of representative inputs;
 * finish() chooses a range per activation (entropy/KL like TensorRT's
 * calibrator, or a percentile, or min/max) and stores it in the model,
 * which must not be shared with running engines meanwhile.  LeakyReLU
 * outputs get asymmetric ranges (u8 with a zero point).  For detectors
 * prefer MINMAX: clipping outliers costs boxes (NanoDet-g, F1 against FP32
 * detections: minmax 0.97, percentile 99.999 0.96, entropy 0.90). */
typedef enum {
    VX_CALIB_ENTROPY = 0,
    VX_CALIB_PERCENTILE = 1,
    VX_CALIB_MINMAX = 2,
} vx_nn_calib_method;

typedef struct vx_nn_calibrator vx_nn_calibrator;
vx_err vx_nn_calibrator_create(const vx_nn_model *model, vx_nn_calib_method method, double percentile,
                               vx_nn_calibrator **out);
/* One sample: a dense float32 buffer per model input. */
vx_err vx_nn_calibrator_add(vx_nn_calibrator *c, const float *const *inputs);
int vx_nn_calibrator_samples(const vx_nn_calibrator *c);
vx_err vx_nn_calibrator_finish(vx_nn_calibrator *c, vx_nn_model *model);
void vx_nn_calibrator_destroy(vx_nn_calibrator *c);
/* Sensitivity check run by finish(): a convolution whose output, computed
 * with INT8 inputs and weights on the first calibration sample, differs
 * from FP32 by more than this relative L2 error stays FP32 (keep_fp32).
 * Default 0.10 (with u8/s8 rounding of source and destination
 * a healthy layer shows 2-7%); a negative value disables the check. */
void vx_nn_calibrator_set_max_layer_error(vx_nn_calibrator *c, double rel_err);
/* Changes the range choice; finish() may run again with the same samples
 * (to compare methods without collecting the histograms twice). */
vx_err vx_nn_calibrator_set_method(vx_nn_calibrator *c, vx_nn_calib_method method, double percentile);
int vx_nn_model_is_calibrated(const vx_nn_model *model);

/* Precision per layer (convolutions, in graph order) of an INT8 engine made
 * from this model, for reports. */
typedef struct {
    const char *name;          /* node name, valid as long as the model */
    vx_nn_precision precision; /* VX_NN_INT8 or VX_NN_FP32 */
    float error;               /* INT8 relative L2 error measured by the sensitivity check, -1 unknown */
    float in_amax, out_amax;   /* calibrated ranges of source and destination (0: none) */
} vx_nn_layer_info;
int vx_nn_model_layer_count(const vx_nn_model *model);
void vx_nn_model_layer_info(const vx_nn_model *model, int index, vx_nn_layer_info *info);

/* Engine files (engine_file.c): an optimised, possibly calibrated model
 * saved with everything needed to run it again without the source model or
 * re-calibration: the graph (every node and attribute, constants, INT8
 * activation ranges, the nodes left in FP32), inputs, outputs, metadata
 * (class names), and the weights in the precision they run in (int8 with a
 * scale per output channel for INT8 convolutions, bfloat16 for BF16 ones).
 *
 * Layout (little-endian): a 256-byte header -- magic "VXENGINE", format
 * version (u32 @8), header size (u32 @12), verolux version (char[32] @16),
 * backend (u32 @48), oneDNN effective ISA (u32 @52, name char[32] @56),
 * precision (u32 @88), decoder (char[16] @96), input w/h (u32 @112/116),
 * source fingerprint (size u64 @120, CRC-32 u32 @128, base name char[64]
 * @136), payload size (u64 @200) and CRC-32 (u32 @208), calibration frames
 * (u32 @212) and method (char[16] @216), CRC-32 of bytes 0..251 (u32 @252)
 * -- then the payload.  CRC-32 is zlib's (IEEE 802.3, reflected).
 *
 * A loader trusts nothing: magic, format version, header checksum, verolux
 * version and, for the cpu backend, the CPU ISA must match this build and
 * machine; sizes, counts, indices, attributes and payload checksum are
 * checked, and the restored shapes must agree with shape inference. */
#define VX_NN_ENGINE_MAGIC "VXENGINE"
#define VX_NN_ENGINE_FORMAT 2 /* 2: asymmetric activation ranges (amin) */
#define VX_NN_ENGINE_HEADER 256

typedef struct {
    vx_nn_backend backend;     /* what the file is built for (cpu) */
    vx_nn_precision precision; /* what its engines compute */
    const char *decoder;       /* detector family for humans/checks ("nanodet"); NULL: "" */
    int input_w, input_h;      /* network input size */
    const char *source_path;   /* model it was built from (fingerprinted); NULL: none */
    const char *calib_method;  /* INT8: "entropy", ...; NULL: "" */
    int calib_frames;          /* INT8: samples the ranges came from */
} vx_nn_engine_file_opts;

typedef struct {
    int format_version;
    char version[32]; /* verolux version that wrote it */
    vx_nn_backend backend;
    unsigned isa; /* dnnl_cpu_isa_t */
    char isa_name[32];
    vx_nn_precision precision;
    char decoder[16];
    int input_w, input_h;
    char source_name[64]; /* base name of the source model, "" if none */
    uint64_t source_size;
    uint32_t source_crc;
    uint64_t payload_size;
    int calib_frames;
    char calib_method[16];
} vx_nn_engine_file_info;

/* 1 when the file starts with the engine magic, 0 when not, -1 when it
 * cannot be read. */
int vx_nn_is_engine_file(const char *path);
/* Serialises the model (in memory / to a file).  Saving writes a temporary
 * file in the same folder, fsyncs it and renames it over `path`: readers
 * see the old file or the whole new one, and nothing is left behind on
 * failure. */
vx_err vx_nn_engine_file_encode(const vx_nn_model *model, const vx_nn_engine_file_opts *opts, uint8_t **buf,
                                size_t *len);
vx_err vx_nn_engine_file_save(const vx_nn_model *model, const vx_nn_engine_file_opts *opts, const char *path);
/* The atomic write behind vx_nn_engine_file_save, for any bytes. */
vx_err vx_nn_write_file_atomic(const char *path, const uint8_t *buf, size_t len);
/* Reads and checks the header only (magic, versions, checksum, ISA, file
 * size); info may be NULL.  Cheap: for choosing among candidates. */
vx_err vx_nn_engine_file_probe(const char *path, vx_nn_engine_file_info *info);
/* Loads and checks a whole engine file; info may be NULL.  vx_nn_model_load
 * calls this for files with the engine magic. */
vx_err vx_nn_engine_file_load(const char *path, vx_nn_engine_file_info *info, vx_nn_model **out);
vx_err vx_nn_engine_file_decode(const char *name, const uint8_t *buf, size_t len,
                                vx_nn_engine_file_info *info, vx_nn_model **out);
/* Fingerprint of a source model: size and CRC-32 of the file and, for a
 * TFJS model.json, of its weight shards too. */
vx_err vx_nn_source_fingerprint(const char *model_path, uint64_t *size, uint32_t *crc);
/* This machine's effective oneDNN ISA (what engine files record). */
unsigned vx_nn_cpu_isa(void);
const char *vx_nn_cpu_isa_name(void);
/* CRC-32 (zlib's) of buf, continuing from crc (0 to start). */
uint32_t vx_nn_crc32(uint32_t crc, const void *buf, size_t len);

#endif
