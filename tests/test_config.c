/*
 * core/config: defaults, environment, flags, their order, and the messages
 * for bad values.  The environment is a table handed to
 * vx_config_load_env, so the tests never touch the process environment.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/vx_config.h"

typedef struct {
    const char *name, *value;
} env_var;

static const char *table_get(const char *name, void *user)
{
    for (const env_var *e = user; e->name; e++)
        if (!strcmp(e->name, name))
            return e->value;
    return NULL;
}

static void load(vx_config *cfg, const env_var *env)
{
    assert_int_equal(vx_config_init(cfg), VX_OK);
    if (vx_config_load_env(cfg, table_get, (void *)env) != VX_OK)
        fail_msg("%s", vx_last_error());
}

/* Loads and expects the failure `code` with all of `parts` in the message. */
static void load_fails(const env_var *env, vx_err code, const char *part1, const char *part2)
{
    vx_config cfg;
    assert_int_equal(vx_config_init(&cfg), VX_OK);
    vx_err err = vx_config_load_env(&cfg, table_get, (void *)env);
    if (err != code)
        fail_msg("%s=%s: expected error %d, got %d (%s)", env[0].name, env[0].value, code, err,
                 vx_last_error());
    if (part1 && !strstr(vx_last_error(), part1))
        fail_msg("'%s' lacks '%s'", vx_last_error(), part1);
    if (part2 && !strstr(vx_last_error(), part2))
        fail_msg("'%s' lacks '%s'", vx_last_error(), part2);
    vx_config_free(&cfg);
}

static void test_defaults(void **state)
{
    (void)state;
    vx_config cfg;
    env_var none[] = {{NULL, NULL}};
    load(&cfg, none);
    assert_string_equal(cfg.device, "auto");
    assert_string_equal(cfg.host, "127.0.0.1");
    assert_int_equal(cfg.port, 8000);
    assert_int_equal(cfg.batch_size, 1);
    assert_true(cfg.substream_scale == 0.6);
    assert_true(cfg.target_fps == 30);
    assert_string_equal(cfg.precision, "auto"); /* the engine-file load priority */
    assert_string_equal(cfg.model_path, "");
    assert_int_equal(cfg.realtime, 1);
    assert_int_equal(cfg.n_media_dirs, 1);
    size_t n = strlen(cfg.media_dirs[0]);
    assert_true(n > 8 && !strcmp(cfg.media_dirs[0] + n - 8, "/samples"));
    n = strlen(cfg.video_source);
    assert_true(n > 18 && !strcmp(cfg.video_source + n - 18, "/samples/vtest.avi"));
    assert_int_equal(cfg.n_allow_sources, 0);
    assert_int_equal(cfg.n_cameras, 0);
    for (int i = 0; i < VX_CFG_NKEYS; i++)
        assert_int_equal(cfg.origin[i], VX_CFG_DEFAULT);
    vx_config_free(&cfg);
}

static void test_environment(void **state)
{
    (void)state;
    env_var env[] = {{"PORT", " 9000 "},
                     {"HOST", "0.0.0.0"},
                     {"SUBSTREAM_SCALE", "0.5"},
                     {"TARGET_FPS", "0"},
                     {"BATCH_SIZE", "4"},
                     {"DEVICE", "CPU"},
                     {"PRECISION", "bf16"},
                     {"MODEL_PATH", "/m/model.onnx"},
                     {"VIDEO_SOURCE", "rtsp://cam/1"},
                     {"MEDIA_DIRS", "/a::/b"},
                     {"ALLOW_SOURCES", "rtsp://10.0.0.5/  http://cams/"},
                     {"CAMERAS", "gate=rtsp://u:p@cam/1 lobby=file:/v/lobby.mp4"},
                     {"VEROLUX_REALTIME", "off"},
                     {"VEROLUX_THREADS", "2"},
                     {"VEROLUX_HEARTBEAT_S", "0.5"},
                     {"IRRELEVANT", "x"},
                     {NULL, NULL}};
    vx_config cfg;
    load(&cfg, env);
    assert_int_equal(cfg.port, 9000);
    assert_string_equal(cfg.host, "0.0.0.0");
    assert_true(cfg.substream_scale == 0.5);
    assert_true(cfg.target_fps == 0);
    assert_int_equal(cfg.batch_size, 4);
    assert_string_equal(cfg.device, "cpu");
    assert_string_equal(cfg.precision, "bf16");
    assert_string_equal(cfg.model_path, "/m/model.onnx");
    assert_string_equal(cfg.video_source, "rtsp://cam/1");
    assert_int_equal(cfg.n_media_dirs, 2); /* the empty item between '::' is skipped */
    assert_string_equal(cfg.media_dirs[0], "/a");
    assert_string_equal(cfg.media_dirs[1], "/b");
    assert_int_equal(cfg.n_allow_sources, 2);
    assert_string_equal(cfg.allow_sources[1], "http://cams/");
    assert_int_equal(cfg.n_cameras, 2);
    assert_string_equal(cfg.cameras[0].name, "gate");
    assert_string_equal(cfg.cameras[0].url, "rtsp://u:p@cam/1");
    assert_null(cfg.cameras[0].substream);
    assert_string_equal(cfg.cameras[1].url, "file:/v/lobby.mp4");
    assert_int_equal(cfg.realtime, 0);
    assert_int_equal(cfg.threads, 2);
    assert_true(cfg.heartbeat_s == 0.5);
    assert_int_equal(cfg.origin[VX_CFG_PORT], VX_CFG_ENV);
    assert_int_equal(cfg.origin[VX_CFG_MAX_CLIENTS], VX_CFG_DEFAULT);
    vx_config_log(&cfg); /* must not crash; hides the camera password */
    vx_config_free(&cfg);
}

static void test_flags_override(void **state)
{
    (void)state;
    env_var env[] = {{"PORT", "9000"}, {"MEDIA_DIRS", "/a:/b"}, {NULL, NULL}};
    vx_config cfg;
    load(&cfg, env);
    assert_int_equal(vx_config_set(&cfg, VX_CFG_PORT, "0", VX_CFG_FLAG, "--port"), VX_OK);
    assert_int_equal(cfg.port, 0);
    assert_int_equal(cfg.origin[VX_CFG_PORT], VX_CFG_FLAG);
    /* The first flag of a list replaces the environment's items ... */
    assert_int_equal(vx_config_set(&cfg, VX_CFG_MEDIA_DIRS, "/c", VX_CFG_FLAG, "--media-dir"), VX_OK);
    assert_int_equal(cfg.n_media_dirs, 1);
    assert_string_equal(cfg.media_dirs[0], "/c");
    /* ... later ones add to it. */
    assert_int_equal(vx_config_set(&cfg, VX_CFG_MEDIA_DIRS, "/d", VX_CFG_FLAG, "--media-dir"), VX_OK);
    assert_int_equal(cfg.n_media_dirs, 2);
    assert_string_equal(cfg.media_dirs[1], "/d");
    /* Cameras and their substreams. */
    assert_int_equal(vx_config_set(&cfg, VX_CFG_CAMERAS, "gate=rtsp://cam/main", VX_CFG_FLAG, "--camera"),
                     VX_OK);
    assert_int_equal(vx_config_set_substream(&cfg, "gate=rtsp://cam/sub", VX_CFG_FLAG), VX_OK);
    assert_string_equal(cfg.cameras[0].substream, "rtsp://cam/sub");
    assert_int_equal(vx_config_set_substream(&cfg, "door=rtsp://cam/sub", VX_CFG_FLAG), VX_ERR_NOT_FOUND);
    assert_non_null(strstr(vx_last_error(), "no camera named 'door'"));
    assert_int_equal(vx_config_set_substream(&cfg, "nonsense", VX_CFG_FLAG), VX_ERR_INVALID);
    /* A rejected value leaves the old one. */
    assert_int_equal(vx_config_set(&cfg, VX_CFG_PORT, "x", VX_CFG_FLAG, "--port"), VX_ERR_INVALID);
    assert_string_equal(vx_last_error(), "--port=x: expected a whole number from 0 to 65535");
    assert_int_equal(cfg.port, 0);
    vx_config_free(&cfg);
}

static void test_bad_values(void **state)
{
    (void)state;
    static const struct {
        const char *name, *value;
        vx_err code;
        const char *part;
    } cases[] = {
        {"PORT", "abc", VX_ERR_INVALID, "PORT=abc (environment): expected a whole number from 0 to 65535"},
        {"PORT", "70000", VX_ERR_INVALID, "0 to 65535"},
        {"PORT", "-1", VX_ERR_INVALID, "0 to 65535"},
        {"PORT", "80 80", VX_ERR_INVALID, "whole number"},
        {"PORT", "0x50", VX_ERR_INVALID, "whole number"},
        {"BATCH_SIZE", "0", VX_ERR_INVALID, "BATCH_SIZE=0"},
        {"SUBSTREAM_SCALE", "0", VX_ERR_INVALID,
         "SUBSTREAM_SCALE=0 (environment): expected a number from 0.05 to 1"},
        {"SUBSTREAM_SCALE", "1.5", VX_ERR_INVALID, "0.05 to 1"},
        {"SUBSTREAM_SCALE", "nan", VX_ERR_INVALID, "SUBSTREAM_SCALE"},
        {"SUBSTREAM_SCALE", "0.6x", VX_ERR_INVALID, "SUBSTREAM_SCALE"},
        {"TARGET_FPS", "-1", VX_ERR_INVALID, "TARGET_FPS"},
        {"TARGET_FPS", "inf", VX_ERR_INVALID, "TARGET_FPS"},
        {"DEVICE", "gpu", VX_ERR_INVALID, "expected one of auto|cpu|ref|cuda"},
        {"PRECISION", "fp8", VX_ERR_INVALID, "PRECISION=fp8 (environment): expected one of"},
        {"PRECISION", "double", VX_ERR_INVALID, "auto|fp32|fp16|bf16|int8"},
        {"HOST", "a b", VX_ERR_INVALID, "expected an IP address or host name"},
        {"HOST", "x;rm", VX_ERR_INVALID, "HOST=x;rm"},
        {"VIDEO_SOURCE", "a\nb", VX_ERR_INVALID, "control characters"},
        {"VEROLUX_REALTIME", "maybe", VX_ERR_INVALID, "true or false"},
        {"VEROLUX_CLIENT_QUEUE", "0", VX_ERR_INVALID, "1 to 1024"},
        {"ALLOW_SOURCES", "10.0.0.5", VX_ERR_INVALID, "with a scheme"},
        {"ALLOW_SOURCES", "://x", VX_ERR_INVALID, "with a scheme"},
        {"CAMERAS", "noequals", VX_ERR_INVALID, "expected NAME=URL"},
        {"CAMERAS", "bad/name=rtsp://x/", VX_ERR_INVALID, "NAME=URL"},
        {"CAMERAS", "gate=", VX_ERR_INVALID, "NAME=URL"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        env_var env[] = {{cases[i].name, cases[i].value}, {NULL, NULL}};
        load_fails(env, cases[i].code, cases[i].part, NULL);
    }
    /* A value longer than any path. */
    char *big = malloc(5000);
    memset(big, 'a', 4999);
    big[4999] = 0;
    env_var env[] = {{"MODEL_PATH", big}, {NULL, NULL}};
    load_fails(env, VX_ERR_INVALID, "longer than", "MODEL_PATH=");
    free(big);
    /* Empty values count as unset. */
    env_var empty[] = {{"PORT", ""}, {NULL, NULL}};
    vx_config cfg;
    load(&cfg, empty);
    assert_int_equal(cfg.port, 8000);
    vx_config_free(&cfg);
}

static void test_validate(void **state)
{
    (void)state;
    char dir[] = "/tmp/vx_test_config_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char file[64];
    snprintf(file, sizeof file, "%s/f", dir);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);

    vx_config cfg;
    env_var none[] = {{NULL, NULL}};
    load(&cfg, none);
    assert_int_equal(vx_config_set(&cfg, VX_CFG_MEDIA_DIRS, dir, VX_CFG_FLAG, NULL), VX_OK);
    assert_int_equal(vx_config_validate(&cfg), VX_OK);
    assert_int_equal(vx_config_set(&cfg, VX_CFG_MEDIA_DIRS, "/nonexistent-vx", VX_CFG_FLAG, NULL), VX_OK);
    assert_int_equal(vx_config_validate(&cfg), VX_ERR_NOT_FOUND);
    assert_non_null(strstr(vx_last_error(), "media folder /nonexistent-vx"));
    vx_config_free(&cfg);

    load(&cfg, none);
    assert_int_equal(vx_config_set(&cfg, VX_CFG_MEDIA_DIRS, file, VX_CFG_FLAG, NULL), VX_OK);
    assert_int_equal(vx_config_validate(&cfg), VX_ERR_INVALID);
    assert_non_null(strstr(vx_last_error(), "not a folder"));
    vx_config_free(&cfg);

    load(&cfg, none);
    assert_int_equal(vx_config_set(&cfg, VX_CFG_MEDIA_DIRS, dir, VX_CFG_FLAG, NULL), VX_OK);
    assert_int_equal(vx_config_set(&cfg, VX_CFG_CAMERAS, "a=rtsp://x/1", VX_CFG_FLAG, NULL), VX_OK);
    assert_int_equal(vx_config_set(&cfg, VX_CFG_CAMERAS, "a=rtsp://x/2", VX_CFG_FLAG, NULL), VX_OK);
    assert_int_equal(vx_config_validate(&cfg), VX_ERR_INVALID);
    assert_non_null(strstr(vx_last_error(), "camera 'a' is configured twice"));
    vx_config_free(&cfg);

    load(&cfg, none);
    assert_int_equal(vx_config_set(&cfg, VX_CFG_MEDIA_DIRS, dir, VX_CFG_FLAG, NULL), VX_OK);
    assert_int_equal(vx_config_set(&cfg, VX_CFG_DEVICE, "ref", VX_CFG_FLAG, NULL), VX_OK);
    assert_int_equal(vx_config_set(&cfg, VX_CFG_PRECISION, "bf16", VX_CFG_FLAG, NULL), VX_OK);
    assert_int_equal(vx_config_validate(&cfg), VX_ERR_INVALID);
    assert_non_null(strstr(vx_last_error(), "fp32 only"));
    /* Every precision name is a valid setting (INT8 in any case); auto and
     * fp32 suit the ref device. */
    assert_int_equal(vx_config_set(&cfg, VX_CFG_PRECISION, "INT8", VX_CFG_FLAG, NULL), VX_OK);
    assert_string_equal(cfg.precision, "int8");
    assert_int_equal(vx_config_validate(&cfg), VX_ERR_INVALID);
    assert_int_equal(vx_config_set(&cfg, VX_CFG_PRECISION, "fp16", VX_CFG_FLAG, NULL), VX_OK);
    assert_int_equal(vx_config_validate(&cfg), VX_ERR_INVALID);
    assert_int_equal(vx_config_set(&cfg, VX_CFG_PRECISION, "auto", VX_CFG_FLAG, NULL), VX_OK);
    assert_int_equal(vx_config_validate(&cfg), VX_OK);
    vx_config_free(&cfg);

    unlink(file);
    rmdir(dir);
}

static void test_redact(void **state)
{
    (void)state;
    char out[256];
    vx_config_redact("rtsp://admin:secret@10.0.0.5:554/live", out, sizeof out);
    assert_string_equal(out, "rtsp://admin:***@10.0.0.5:554/live");
    vx_config_redact("rtsp://admin:p@ss@cam/x", out, sizeof out);
    assert_string_equal(out, "rtsp://admin:***@cam/x");
    vx_config_redact("rtsp://cam/a@b", out, sizeof out);
    assert_string_equal(out, "rtsp://cam/a@b");
    vx_config_redact("rtsp://user@cam/", out, sizeof out);
    assert_string_equal(out, "rtsp://user@cam/");
    vx_config_redact("/plain/path:with@signs", out, sizeof out);
    assert_string_equal(out, "/plain/path:with@signs");
    vx_config_redact(NULL, out, sizeof out);
    assert_string_equal(out, "");
    vx_config_redact("rtsp://a:b@c/", out, 8); /* truncation stays terminated */
    assert_true(strlen(out) < 8);
}

static void test_keys(void **state)
{
    (void)state;
    assert_int_equal(vx_config_key_find("PORT"), VX_CFG_PORT);
    assert_int_equal(vx_config_key_find("SUBSTREAM_SCALE"), VX_CFG_SUBSTREAM_SCALE);
    assert_int_equal(vx_config_key_find("port"), -1);
    assert_int_equal(vx_config_key_find(NULL), -1);
    assert_string_equal(vx_config_key_name(VX_CFG_VIDEO_SOURCE), "VIDEO_SOURCE");
    assert_null(vx_config_key_name(VX_CFG_NKEYS));
    for (int i = 0; i < VX_CFG_NKEYS; i++)
        assert_int_equal(vx_config_key_find(vx_config_key_name((vx_config_key)i)), i);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),       cmocka_unit_test(test_environment),
        cmocka_unit_test(test_flags_override), cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_validate),       cmocka_unit_test(test_redact),
        cmocka_unit_test(test_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
