/*
 * libFuzzer target for the ONNX loader and the optimisation passes behind
 * it (vx_nn_model_load_onnx_mem): the input is a serialized ModelProto.
 *
 * A model that loads is also run once on the ref backend when it is small,
 * so the reference kernels meet the odd shapes and attributes the fuzzer
 * invents (everything the loader accepts must run without crashing).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/vx_core.h"
#include "nn/vx_nn.h"

/* VX_FUZZ_VERBOSE=1: one line per input saying whether it loaded (run-fuzzers
 * checks that the seeds are valid models). */
static int verbose;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    vx_log_set_level(VX_LOG_OFF);
    const char *v = getenv("VX_FUZZ_VERBOSE");
    verbose = v && *v == '1';
    return 0;
}

/* Small enough to run at fuzzing speed. */
static int small(const vx_nn_model *m)
{
    vx_nn_model_stats st;
    vx_nn_model_get_stats(m, &st);
    double elems = 0;
    for (int i = 0; i < vx_nn_model_output_count(m); i++) {
        vx_nn_tensor_info t;
        vx_nn_model_output_info(m, i, &t);
        double n = 1;
        for (int k = 0; k < t.rank; k++)
            n *= (double)t.dims[k];
        elems += n;
    }
    return st.flops < 2e7 && elems < 1e6 && st.nodes < 200;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vx_nn_model *m = NULL;
    vx_clear_error();
    vx_err e = vx_nn_model_load_onnx_mem(data, size, NULL, &m);
    if (verbose) {
        if (e == VX_OK) {
            vx_nn_model_stats st;
            vx_nn_model_get_stats(m, &st);
            fprintf(stderr, "fuzz_onnx: loaded: opset %d, %d nodes, %d convs, %lld params\n", st.opset,
                    st.nodes, st.convs, (long long)st.params);
        } else {
            fprintf(stderr, "fuzz_onnx: refused: %s\n", vx_last_error());
        }
    }
    if (e != VX_OK) {
        /* Every failure must leave a message that names the model. */
        if (m || e > 0 || !strncmp(vx_last_error(), vx_strerror(e), 64) ||
            !strstr(vx_last_error(), "<memory>"))
            abort();
        return 0;
    }
    if (!m || vx_nn_model_input_count(m) < 1 || vx_nn_model_output_count(m) < 1)
        abort(); /* success must mean a usable model */
    if (small(m)) {
        vx_nn_engine_opts o = {.backend = VX_NN_BACKEND_REF, .threads = 1};
        vx_nn_engine *eng;
        if (vx_nn_engine_create(m, &o, &eng) == VX_OK) {
            for (int i = 0; i < vx_nn_model_input_count(m); i++) {
                vx_nn_tensor_info t;
                vx_nn_model_input_info(m, i, &t);
                size_t n = 1;
                for (int k = 0; k < t.rank; k++)
                    n *= (size_t)t.dims[k];
                float *x = vx_nn_engine_input(eng, i);
                for (size_t k = 0; k < n; k++)
                    x[k] = (float)(k % 7) - 3.0f;
            }
            vx_nn_engine_run(eng); /* may refuse (e.g. a Gather index out of range), must not crash */
            vx_nn_engine_destroy(eng);
        }
    }
    vx_nn_model_destroy(m);
    return 0;
}
