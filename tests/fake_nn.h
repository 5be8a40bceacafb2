/*
 * A fake network for the detector tests: fake_nn.c defines the vx_nn_*
 * calls the detect module makes, so the linker takes them from there and
 * never pulls the real engine out of the library.  That lets a test set any
 * input and output shapes (in any order, under any names) and any
 * metadata, write the raw outputs by hand, and read back exactly what the
 * preprocessing wrote into the input tensor, with no model file.
 *
 * If src/detect/ starts calling another vx_nn_* function, add it to
 * fake_nn.c: the link otherwise pulls the real engine in and fails on
 * duplicate symbols.
 */
#ifndef VX_TEST_FAKE_NN_H
#define VX_TEST_FAKE_NN_H

#include <stddef.h>
#include <stdint.h>

#include "nn/vx_nn.h"

#define FAKE_MAX_OUT 8
#define FAKE_MAX_META 8

typedef struct {
    const char *name;
    int rank;
    int64_t dims[6];
} fake_tensor;

typedef struct {
    int ninputs;
    fake_tensor input;
    fake_tensor outputs[FAKE_MAX_OUT];
    int noutputs;
    const char *meta_key[FAKE_MAX_META], *meta_value[FAKE_MAX_META];
    int nmeta;
    float *in;                /* engine input, allocated by vx_nn_engine_create */
    float *out[FAKE_MAX_OUT]; /* engine outputs, zeroed */
    int runs;
    int live_engines, live_models;
} fake_state;

extern fake_state fake;
/* What vx_nn_model_load and vx_nn_engine_create hand out. */
extern struct vx_nn_model fake_model;
extern struct vx_nn_engine fake_engine;

size_t fake_numel(const fake_tensor *t);
/* One input [1,3,416,416] named "images", no outputs, no metadata. */
void fake_reset(void);
/* Appends an output of the given rank (dims beyond it ignored). */
void fake_add_output(const char *name, int rank, int64_t d0, int64_t d1, int64_t d2, int64_t d3, int64_t d4);
void fake_set_meta(const char *key, const char *value);

#endif
