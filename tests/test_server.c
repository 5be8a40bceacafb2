/*
 * server without sockets: query parameters, Prometheus label escaping and
 * the JSON messages, parsed back with jansson and checked field by field
 * against the protocol (see vx_server.h).  The transport itself is tested
 * end to end by test_server_e2e.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <jansson.h>
#include <math.h>

#include "server/server_internal.h"

static void args_ok(const char *const *params, int n, const char *source, int sub, int overlay)
{
    vx_server_args a;
    if (vx_server_parse_args(params, n, &a) != VX_OK)
        fail_msg("%s", vx_last_error());
    if (source)
        assert_string_equal(a.source, source);
    else
        assert_null(a.source);
    assert_int_equal(a.use_substream, sub);
    assert_int_equal(a.overlay, overlay);
}

static void args_bad(const char *const *params, int n, const char *part)
{
    vx_server_args a;
    assert_int_equal(vx_server_parse_args(params, n, &a), VX_ERR_INVALID);
    if (!strstr(vx_last_error(), part))
        fail_msg("'%s' lacks '%s'", vx_last_error(), part);
}

static void test_args(void **state)
{
    (void)state;
    args_ok(NULL, 0, NULL, 1, 0);
    const char *a1[] = {"source=webcam:0", "use_substream=false"};
    args_ok(a1, 2, "webcam:0", 0, 0);
    const char *a2[] = {"overlay=TRUE", "source=rtsp://x/y?a=b=c", "t=12345", "x="};
    args_ok(a2, 4, "rtsp://x/y?a=b=c", 1, 1);
    const char *a3[] = {"use_substream=0", "overlay=yes"};
    args_ok(a3, 2, NULL, 0, 1);

    const char *b1[] = {"source"};
    args_bad(b1, 1, "expected name=value");
    const char *b2[] = {"=x"};
    args_bad(b2, 1, "expected name=value");
    const char *b3[] = {"source=a", "source=b"};
    args_bad(b3, 2, "'source' given twice");
    const char *b4[] = {"source="};
    args_bad(b4, 1, "empty");
    const char *b5[] = {"use_substream=maybe"};
    args_bad(b5, 1, "use_substream=maybe': expected true or false");
    const char *b6[] = {"overlay=1", "overlay=1"};
    args_bad(b6, 2, "'overlay' given twice");
    const char *b7[] = {"use_substream="};
    args_bad(b7, 1, "true or false");
    /* Names are compared whole: these are unknown, hence ignored. */
    const char *a4[] = {"sourcex=1", "sourc=2", "overlay_x=q"};
    args_ok(a4, 3, NULL, 1, 0);
}

static void test_prom_escape(void **state)
{
    (void)state;
    char out[64];
    assert_string_equal(vx_server_prom_escape("a\"b\\c\nd", out, sizeof out), "a\\\"b\\\\c\\nd");
    assert_string_equal(vx_server_prom_escape(NULL, out, sizeof out), "");
    /* Truncation never splits an escape. */
    vx_server_prom_escape("\"\"\"\"\"\"", out, 6);
    assert_string_equal(out, "\\\"\\\"");
}

static json_t *parse(char *text)
{
    assert_non_null(text);
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    if (!j)
        fail_msg("not JSON (%s): %s", err.text, text);
    free(text);
    return j;
}

static void test_detections(void **state)
{
    (void)state;
    vx_pipeline_msg *m = vx_pipeline_msg_new(VX_MSG_RESULT, 2, 0, NULL);
    m->frame_id = 1234;
    m->frame_count = 99;
    m->capture_wall_s = 1795770000.123456;
    m->width = 1920;
    m->height = 1080;
    m->fps = (vx_pipeline_fps){28.456, 30.0, 27.99};
    m->dual_stream = 1;
    vx_pipeline_det *d = vx_pipeline_msg_dets(m);
    d[0] = (vx_pipeline_det){192, 108, 960, 540, 0.912345f, 0, "person"};
    d[1] = (vx_pipeline_det){0, 0, 1920, 1080, 0.5f, 2, "car"};
    json_t *j = parse(vx_fmt_detections(m));
    assert_string_equal(json_string_value(json_object_get(j, "type")), "detections");
    assert_true(fabs(json_real_value(json_object_get(j, "ts")) - 1795770000.123) < 1e-6);
    assert_int_equal(json_integer_value(json_object_get(j, "frame_id")), 1234);
    assert_true(fabs(json_number_value(json_object_get(j, "fps")) - 27.99) < 1e-9);
    json_t *fs = json_object_get(j, "frame_size");
    assert_int_equal(json_integer_value(json_array_get(fs, 0)), 1920);
    assert_int_equal(json_integer_value(json_array_get(fs, 1)), 1080);
    json_t *dets = json_object_get(j, "detections");
    assert_int_equal(json_array_size(dets), 2);
    json_t *p = json_array_get(dets, 0);
    assert_int_equal(json_object_size(p), 4);
    assert_string_equal(json_string_value(json_object_get(p, "cls")), "person");
    assert_int_equal(json_integer_value(json_object_get(p, "cls_id")), 0);
    assert_true(fabs(json_real_value(json_object_get(p, "conf")) - 0.9123) < 1e-9);
    json_t *box = json_object_get(p, "bbox");
    const double want[4] = {0.1, 0.1, 0.5, 0.5};
    for (int i = 0; i < 4; i++)
        assert_true(fabs(json_number_value(json_array_get(box, (size_t)i)) - want[i]) < 1e-9);
    json_decref(j);

    /* Short numbers: rounded values print as written. */
    char *text = vx_fmt_detections(m);
    assert_non_null(strstr(text, "\"conf\":0.9123,"));
    assert_non_null(strstr(text, "\"bbox\":[0.1,0.1,0.5,0.5]"));
    assert_non_null(strstr(text, "\"ts\":1795770000.123,"));
    free(text);

    vx_pipeline_sub_info info = {"cam", 1, 0, 1, 0, "BF16", 0.6};
    j = parse(vx_fmt_gate_check(m, &info));
    assert_string_equal(json_string_value(json_object_get(j, "type")), "gate_check");
    assert_int_equal(json_object_size(j), 6);
    json_t *fps = json_object_get(j, "fps");
    assert_true(fabs(json_number_value(json_object_get(fps, "inference")) - 28.46) < 1e-9);
    assert_true(fabs(json_number_value(json_object_get(fps, "capture")) - 30) < 1e-9);
    assert_int_equal(json_integer_value(json_object_get(j, "frame_count")), 99);
    json_t *o = json_object_get(j, "optimizations");
    assert_int_equal(json_object_size(o), 5);
    assert_true(json_is_true(json_object_get(o, "dual_stream")));
    assert_true(json_is_true(json_object_get(o, "async_grabber")));
    assert_true(json_is_false(json_object_get(o, "batch_inference")));
    assert_string_equal(json_string_value(json_object_get(o, "precision")), "BF16");
    assert_true(fabs(json_number_value(json_object_get(o, "substream_scale")) - 0.6) < 1e-12);
    assert_true(json_is_object(json_object_get(j, "decisions")) &&
                !json_object_size(json_object_get(j, "decisions")));
    assert_true(json_is_object(json_object_get(j, "stats")) &&
                !json_object_size(json_object_get(j, "stats")));
    json_decref(j);
    vx_pipeline_msg_release(m);

    /* No detections, unknown size: still well-formed. */
    m = vx_pipeline_msg_new(VX_MSG_RESULT, 0, 0, NULL);
    j = parse(vx_fmt_detections(m));
    assert_int_equal(json_array_size(json_object_get(j, "detections")), 0);
    json_decref(j);
    vx_pipeline_msg_release(m);
}

static void test_other_messages(void **state)
{
    (void)state;
    json_t *j = parse(vx_fmt_heartbeat(12.3456));
    assert_string_equal(json_string_value(json_object_get(j, "type")), "heartbeat");
    assert_true(fabs(json_number_value(json_object_get(j, "uptime_s")) - 12.346) < 1e-9);
    json_decref(j);

    /* Messages that are not UTF-8 (a file name, an FFmpeg text) still make
     * valid JSON. */
    j = parse(vx_fmt_error("cannot open 'caf\xe9.avi': \"bad\"\n"));
    assert_string_equal(json_string_value(json_object_get(j, "type")), "error");
    assert_string_equal(json_string_value(json_object_get(j, "message")),
                        "cannot open 'caf?.avi': \"bad\"\n");
    json_decref(j);
    j = parse(vx_fmt_detail("not found: /\xff\xfe"));
    assert_string_equal(json_string_value(json_object_get(j, "detail")), "not found: /??");
    json_decref(j);
    j = parse(vx_fmt_pong());
    assert_string_equal(json_string_value(json_object_get(j, "type")), "pong");
    json_decref(j);

    vx_server_model model = {"/m/nanodet.json", "nanodet", "nanodet", 416, 416, 80, "cpu", "cpu", "FP32", 2,
                             "cpu: oneDNN",     1};
    vx_pipeline_sub_info info = {"vtest.avi", 1, 0, 1, 0, "FP32", 0.6};
    j = parse(vx_fmt_connection_info(&model, &info, "/ws/detections", 1));
    assert_string_equal(json_string_value(json_object_get(j, "type")), "connection_info");
    assert_string_equal(json_string_value(json_object_get(j, "framework")), "verolux");
    assert_true(json_is_true(json_object_get(j, "model_loaded")));
    assert_string_equal(json_string_value(json_object_get(j, "device")), "cpu");
    assert_string_equal(json_string_value(json_object_get(j, "source")), "vtest.avi");
    json_decref(j);
    j = parse(vx_fmt_info(&model));
    assert_string_equal(json_string_value(json_object_get(j, "model")), "nanodet");
    assert_string_equal(json_string_value(json_object_get(j, "device")), "cpu");
    assert_string_equal(json_string_value(json_object_get(j, "framework")), "verolux");
    assert_int_equal(json_array_size(json_object_get(j, "endpoints")), 7);
    json_decref(j);
    j = parse(vx_fmt_model_status(&model));
    assert_true(json_is_true(json_object_get(j, "model_loaded")));
    assert_int_equal(json_integer_value(json_object_get(j, "classes")), 80);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_args),
        cmocka_unit_test(test_prom_escape),
        cmocka_unit_test(test_detections),
        cmocka_unit_test(test_other_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
