/*
 * libFuzzer target for the TensorFlow.js graph-model loader and the
 * optimisation passes behind it (vx_nn_model_load_tfjs_mem).
 *
 * Input: a 4-byte little-endian JSON length, the model.json text, then the
 * weight bytes (all shards concatenated).  A length past the end means
 * "everything is JSON".
 *
 * Mutating such an input byte-wise mostly breaks it at the seam: one byte
 * inserted into the JSON pushes its closing brace into the weights.  The
 * custom mutator therefore mutates the JSON or the weights on their own and
 * rewrites the length, so the dictionary's keys and operator names land
 * inside parseable JSON.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/vx_core.h"
#include "nn/vx_nn.h"

size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);

typedef struct {
    const uint8_t *json, *weights;
    size_t json_len, weights_len;
} parts;

static parts split_input(const uint8_t *data, size_t size)
{
    parts p = {data, data, 0, 0};
    if (size < 4)
        return p;
    uint32_t jl =
        (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 | (uint32_t)data[3] << 24;
    size -= 4;
    p.json = data + 4;
    p.json_len = jl < size ? jl : size;
    p.weights = p.json + p.json_len;
    p.weights_len = size - p.json_len;
    return p;
}

/* VX_FUZZ_VERBOSE=1: one line per input saying whether it loaded, so
 * run-fuzzers can check that the seeds are valid models and people can see
 * why an input was refused. */
static int verbose;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    vx_log_set_level(VX_LOG_OFF);
    const char *v = getenv("VX_FUZZ_VERBOSE");
    verbose = v && *v == '1';
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    parts p = split_input(data, size);
    vx_nn_model *m = NULL;
    vx_clear_error();
    vx_err e =
        vx_nn_model_load_tfjs_mem((const char *)p.json, p.json_len, p.weights, p.weights_len, NULL, &m);
    if (verbose) {
        if (e == VX_OK) {
            vx_nn_model_stats st;
            vx_nn_model_get_stats(m, &st);
            fprintf(stderr, "fuzz_tfjs: loaded: %d nodes, %d convs, %lld params\n", st.nodes, st.convs,
                    (long long)st.params);
        } else {
            fprintf(stderr, "fuzz_tfjs: refused: %s\n", vx_last_error());
        }
    }
    if (e == VX_OK) {
        if (!m || vx_nn_model_input_count(m) < 1 || vx_nn_model_output_count(m) < 1)
            abort(); /* success must mean a usable model */
        vx_nn_model_destroy(m);
    } else if (m || e > 0 || !strncmp(vx_last_error(), vx_strerror(e), 64) ||
               !strstr(vx_last_error(), "<memory>")) {
        /* Every failure must leave a message that names the model. */
        abort();
    }
    return 0;
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    if (size < 4 || max_size < 8)
        return LLVMFuzzerMutate(data, size, max_size);
    parts p = split_input(data, size);
    size_t room = max_size - 4;
    uint8_t *buf = malloc(room);
    if (!buf)
        return size;
    size_t jl = p.json_len, wl = p.weights_len;
    /* Mostly the JSON: the weights are plain numbers with little structure. */
    if (seed % 8 && wl < room) {
        memcpy(buf, p.json, jl);
        jl = LLVMFuzzerMutate(buf, jl, room - wl);
        memcpy(buf + jl, p.weights, wl);
    } else {
        memcpy(buf, p.json, jl);
        memcpy(buf + jl, p.weights, wl);
        wl = LLVMFuzzerMutate(buf + jl, wl, room - jl);
    }
    data[0] = (uint8_t)jl;
    data[1] = (uint8_t)(jl >> 8);
    data[2] = (uint8_t)(jl >> 16);
    data[3] = (uint8_t)(jl >> 24);
    memcpy(data + 4, buf, jl + wl);
    free(buf);
    return 4 + jl + wl;
}
