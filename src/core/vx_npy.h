/*
 * core/npy: NumPy .npy files of float32 arrays, the exchange format for raw
 * network inputs and outputs (`verolux models run`, the ONNX Runtime
 * oracle in bench/ort).  Only what those need: little-endian float32
 * ('<f4'), C order, header versions 1.0, 2.0 and 3.0.  Anything else is
 * refused with a message saying what and why, since a silently misread
 * array would make every comparison meaningless.
 *
 * Threading: pure functions.
 */
#ifndef VX_NPY_H
#define VX_NPY_H

#include <stdint.h>

#include "core/vx_core.h"

#define VX_NPY_MAX_RANK 8

typedef struct {
    int rank;
    int64_t dims[VX_NPY_MAX_RANK];
    int64_t count; /* product of dims */
    float *data;   /* owned; free with vx_npy_free */
} vx_npy;

/* Parses an .npy image; `name` stands for it in messages.  Arrays above
 * 2^31 elements are refused. */
vx_err vx_npy_parse(const char *name, const uint8_t *buf, size_t len, vx_npy *out);
vx_err vx_npy_read(const char *path, vx_npy *out);
/* Writes a version 1.0 file (2.0 when the header needs it). */
vx_err vx_npy_write(const char *path, const float *data, const int64_t *dims, int rank);
void vx_npy_free(vx_npy *a);

#endif
