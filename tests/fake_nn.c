/* The fake network of fake_nn.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fake_nn.h"

struct vx_nn_model {
    int unused;
};
struct vx_nn_engine {
    int unused;
};

fake_state fake;
struct vx_nn_model fake_model;
struct vx_nn_engine fake_engine;

size_t fake_numel(const fake_tensor *t)
{
    size_t n = 1;
    for (int i = 0; i < t->rank; i++)
        n *= (size_t)(t->dims[i] > 0 ? t->dims[i] : 1);
    return n;
}

void fake_reset(void)
{
    memset(fake.outputs, 0, sizeof fake.outputs);
    fake.ninputs = 1;
    fake.input = (fake_tensor){"images", 4, {1, 3, 416, 416}};
    fake.noutputs = 0;
    fake.nmeta = 0;
    fake.runs = 0;
}

void fake_add_output(const char *name, int rank, int64_t d0, int64_t d1, int64_t d2, int64_t d3, int64_t d4)
{
    assert_true(fake.noutputs < FAKE_MAX_OUT);
    fake.outputs[fake.noutputs++] = (fake_tensor){name, rank, {d0, d1, d2, d3, d4}};
}

void fake_set_meta(const char *key, const char *value)
{
    assert_true(fake.nmeta < FAKE_MAX_META);
    fake.meta_key[fake.nmeta] = key;
    fake.meta_value[fake.nmeta++] = value;
}

vx_err vx_nn_model_load(const char *path, const vx_nn_load_opts *opts, vx_nn_model **out)
{
    (void)opts;
    *out = NULL;
    if (strstr(path, "missing"))
        return vx_fail(VX_ERR_IO, "cannot open: No such file or directory");
    fake.live_models++;
    *out = &fake_model;
    return VX_OK;
}

void vx_nn_model_destroy(vx_nn_model *model)
{
    if (model)
        fake.live_models--;
}

int vx_nn_model_input_count(const vx_nn_model *model)
{
    (void)model;
    return fake.ninputs;
}

int vx_nn_model_output_count(const vx_nn_model *model)
{
    (void)model;
    return fake.noutputs;
}

static void info_of(const fake_tensor *t, vx_nn_tensor_info *info)
{
    memset(info, 0, sizeof *info);
    info->name = t->name;
    info->rank = t->rank;
    for (int i = 0; i < t->rank; i++)
        info->dims[i] = t->dims[i];
}

void vx_nn_model_input_info(const vx_nn_model *model, int index, vx_nn_tensor_info *info)
{
    (void)model;
    assert_int_equal(index, 0);
    info_of(&fake.input, info);
}

void vx_nn_model_output_info(const vx_nn_model *model, int index, vx_nn_tensor_info *info)
{
    (void)model;
    assert_in_range(index, 0, fake.noutputs - 1);
    info_of(&fake.outputs[index], info);
}

const char *vx_nn_model_metadata(const vx_nn_model *model, const char *key)
{
    (void)model;
    for (int i = 0; i < fake.nmeta; i++)
        if (!strcmp(fake.meta_key[i], key))
            return fake.meta_value[i];
    return NULL;
}

void vx_nn_engine_opts_default(vx_nn_engine_opts *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->backend = VX_NN_BACKEND_REF;
}

vx_err vx_nn_engine_create(const vx_nn_model *model, const vx_nn_engine_opts *opts, vx_nn_engine **out)
{
    (void)model;
    (void)opts;
    fake.in = malloc(fake_numel(&fake.input) * sizeof(float));
    for (int i = 0; i < fake.noutputs; i++)
        fake.out[i] = calloc(fake_numel(&fake.outputs[i]), sizeof(float));
    fake.live_engines++;
    *out = &fake_engine;
    return VX_OK;
}

void vx_nn_engine_destroy(vx_nn_engine *engine)
{
    if (!engine)
        return;
    free(fake.in);
    fake.in = NULL;
    for (int i = 0; i < fake.noutputs; i++) {
        free(fake.out[i]);
        fake.out[i] = NULL;
    }
    fake.live_engines--;
}

float *vx_nn_engine_input(vx_nn_engine *engine, int index)
{
    (void)engine;
    assert_int_equal(index, 0);
    return fake.in;
}

vx_err vx_nn_engine_run(vx_nn_engine *engine)
{
    (void)engine;
    fake.runs++;
    return VX_OK;
}

const float *vx_nn_engine_output(const vx_nn_engine *engine, int index)
{
    (void)engine;
    return fake.out[index];
}
