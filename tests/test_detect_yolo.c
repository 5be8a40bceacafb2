/*
 * Ultralytics YOLO models around a fake network (fake_nn.h): family
 * recognition from shapes and metadata (including the ambiguous ones),
 * the class names from the metadata, the YOLO preprocessing (RGB / 255,
 * grey letterbox, rectangular inputs) and the whole chain on hand-written
 * raw outputs: boxes placed in the network input must come back at the
 * right pixels of the original image.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "detect/detect_internal.h"
#include "fake_nn.h"

static void assert_near(double a, double b, double tol)
{
    if (!(fabs(a - b) <= tol))
        fail_msg("%.6f is not within %g of %.6f", a, tol, b);
}

static void assert_contains(const char *text, const char *part)
{
    if (!strstr(text, part))
        fail_msg("'%s' lacks '%s'", text, part);
}

/* Boxes per image for a w x h input with strides 8, 16, 32 (YOLOv8; YOLOv5
 * has three per cell). */
static int64_t cells(int w, int h)
{
    int64_t n = 0;
    for (int s = 8; s <= 32; s *= 2)
        n += (int64_t)((w + s - 1) / s) * ((h + s - 1) / s);
    return n;
}

static void fake_input(int w, int h)
{
    fake_reset();
    fake.input.dims[2] = h;
    fake.input.dims[3] = w;
}

static void out3(int64_t a, int64_t b)
{
    fake_add_output("output0", 3, 1, a, b, 0, 0);
}

static vx_family_info recognise_ok(vx_model_family want)
{
    vx_family_info info;
    vx_err err = vx_detect_family(&fake_model, &info);
    if (err != VX_OK)
        fail_msg("not recognised: %s", info.why);
    if (info.family != want)
        fail_msg("recognised as %s, expected %s: %s", vx_model_family_name(info.family),
                 vx_model_family_name(want), info.why);
    return info;
}

static void recognise_fails(const char *expect)
{
    vx_family_info info;
    assert_int_equal(vx_detect_family(&fake_model, &info), VX_ERR_UNSUPPORTED);
    assert_int_equal(info.family, VX_FAMILY_UNKNOWN);
    assert_contains(info.why, expect);
    assert_contains(vx_last_error(), expect);
}

/* ---- recognition ---- */

static void test_family_yolov8(void **state)
{
    (void)state;
    fake_input(640, 640);
    out3(84, 8400);
    vx_family_info i = recognise_ok(VX_FAMILY_YOLOV8);
    assert_int_equal(i.num_classes, 80);
    assert_int_equal(i.num_anchors, 8400);
    assert_int_equal(i.input_w, 640);
    assert_int_equal(i.input_h, 640);
    assert_int_equal(i.nhwc, 0);
    assert_int_equal(i.output, 0);
    assert_int_equal(i.channels_first, 1);
    assert_int_equal(i.nstrides, 3);
    assert_int_equal(i.strides[0], 8);
    assert_int_equal(i.strides[2], 32);
    assert_contains(i.why, "YOLOv8/YOLO11");
    assert_string_equal(vx_model_family_name(i.family), "yolov8");

    /* 416, a custom class count. */
    fake_input(416, 416);
    out3(4 + 3, 3549);
    i = recognise_ok(VX_FAMILY_YOLOV8);
    assert_int_equal(i.num_classes, 3);
    assert_int_equal(i.num_anchors, 3549);

    /* Interleaved input. */
    fake_input(640, 640);
    fake.input = (fake_tensor){"images", 4, {1, 640, 640, 3}};
    out3(84, 8400);
    i = recognise_ok(VX_FAMILY_YOLOV8);
    assert_int_equal(i.nhwc, 1);
    assert_int_equal(i.input_w, 640);
}

static void test_family_yolov5(void **state)
{
    (void)state;
    fake_input(640, 640);
    out3(25200, 85);
    vx_family_info i = recognise_ok(VX_FAMILY_YOLOV5);
    assert_int_equal(i.num_classes, 80);
    assert_int_equal(i.num_anchors, 25200);
    assert_int_equal(i.channels_first, 0);
    assert_int_equal(i.nstrides, 3);
    assert_contains(i.why, "YOLOv5");
    assert_string_equal(vx_model_family_name(i.family), "yolov5");

    fake_input(416, 416);
    out3(10647, 5 + 1);
    i = recognise_ok(VX_FAMILY_YOLOV5);
    assert_int_equal(i.num_classes, 1);

    /* Older YOLOv5 exports list the raw per-level tensors beside the
     * decoded one; the decoded one is found wherever it is. */
    fake_input(640, 640);
    fake_add_output("p3", 5, 1, 3, 80, 80, 85);
    fake_add_output("p4", 5, 1, 3, 40, 40, 85);
    fake_add_output("p5", 5, 1, 3, 20, 20, 85);
    out3(25200, 85);
    i = recognise_ok(VX_FAMILY_YOLOV5);
    assert_int_equal(i.output, 3);
}

/* The two dimensions read either way; the box count for the input size
 * decides, then the metadata's class count. */
static void test_family_ambiguous(void **state)
{
    (void)state;
    /* A YOLOv8 export transposed for another runtime: [1, N, 4+nc] would
     * read as YOLOv5 with 79 classes, but 8400 boxes is YOLOv8's count. */
    fake_input(640, 640);
    out3(8400, 84);
    vx_family_info i = recognise_ok(VX_FAMILY_YOLOV8);
    assert_int_equal(i.num_classes, 80);
    assert_int_equal(i.channels_first, 0);
    assert_contains(i.why, "transposed");

    /* Many classes at a small input: more channels than boxes, still
     * YOLOv8's [1, 4+nc, N]. */
    fake_input(160, 160);
    assert_int_equal(cells(160, 160), 525);
    out3(4 + 600, 525);
    i = recognise_ok(VX_FAMILY_YOLOV8);
    assert_int_equal(i.num_classes, 600);
    assert_int_equal(i.channels_first, 1);

    /* YOLOv5 transposed, [1, 5+nc, N]. */
    fake_input(160, 160);
    out3(5 + 600, 3 * 525);
    i = recognise_ok(VX_FAMILY_YOLOV5);
    assert_int_equal(i.num_classes, 600);
    assert_int_equal(i.channels_first, 1);

    /* [1, 8400, 85] at 640: the box count says YOLOv8 transposed with 81
     * classes ... */
    fake_input(640, 640);
    out3(8400, 85);
    i = recognise_ok(VX_FAMILY_YOLOV8);
    assert_int_equal(i.num_classes, 81);
    /* ... unless the exporter's own class list says 80: objectness layout. */
    fake_set_meta("names",
                  "{0: 'a', 1: 'b', 2: 'c', 3: 'd', 4: 'e', 5: 'f', 6: 'g', 7: 'h', 8: 'i', 9: 'j', "
                  "10: 'k', 11: 'l', 12: 'm', 13: 'n', 14: 'o', 15: 'p', 16: 'q', 17: 'r', 18: 's', "
                  "19: 't', 20: 'u', 21: 'v', 22: 'w', 23: 'x', 24: 'y', 25: 'z', 26: 'aa', 27: 'ab', "
                  "28: 'ac', 29: 'ad', 30: 'ae', 31: 'af', 32: 'ag', 33: 'ah', 34: 'ai', 35: 'aj', "
                  "36: 'ak', 37: 'al', 38: 'am', 39: 'an', 40: 'ao', 41: 'ap', 42: 'aq', 43: 'ar', "
                  "44: 'as', 45: 'at', 46: 'au', 47: 'av', 48: 'aw', 49: 'ax', 50: 'ay', 51: 'az', "
                  "52: 'ba', 53: 'bb', 54: 'bc', 55: 'bd', 56: 'be', 57: 'bf', 58: 'bg', 59: 'bh', "
                  "60: 'bi', 61: 'bj', 62: 'bk', 63: 'bl', 64: 'bm', 65: 'bn', 66: 'bo', 67: 'bp', "
                  "68: 'bq', 69: 'br', 70: 'bs', 71: 'bt', 72: 'bu', 73: 'bv', 74: 'bw', 75: 'bx', "
                  "76: 'by', 77: 'bz', 78: 'ca', 79: 'cb'}");
    i = recognise_ok(VX_FAMILY_YOLOV5);
    assert_int_equal(i.num_classes, 80);
    assert_int_equal(i.nstrides, 0); /* 8400 is not YOLOv5's box count */

    /* A box count that fits no head, with metadata naming the classes:
     * accepted in the family's own orientation, strides unknown. */
    fake_input(640, 640);
    fake_set_meta("names", "{0: 'cat', 1: 'dog'}");
    out3(4 + 2, 1234);
    i = recognise_ok(VX_FAMILY_YOLOV8);
    assert_int_equal(i.num_classes, 2);
    assert_int_equal(i.nstrides, 0);
    assert_contains(i.why, "metadata");

    /* Metadata that fits both readings, no box count: refused. */
    fake_input(640, 640);
    fake_set_meta("names", "{0: 'cat', 1: 'dog'}");
    out3(4 + 2, 5 + 2);
    recognise_fails("ambiguous");

    /* And without metadata the unmatched count is refused, saying what
     * would have fitted. */
    fake_input(640, 640);
    out3(84, 8000);
    recognise_fails("[1,4+nc,8400]");
    assert_contains(vx_last_error(), "[1,25200,5+nc]");
}

static void test_family_strides(void **state)
{
    (void)state;
    /* P6 models go to stride 64: 8400 + 10 * 10 boxes at 640 ... */
    fake_input(640, 640);
    fake_set_meta("stride", "64");
    out3(84, 8500);
    vx_family_info i = recognise_ok(VX_FAMILY_YOLOV8);
    assert_int_equal(i.nstrides, 4);
    assert_int_equal(i.strides[3], 64);
    /* ... which without the metadata fits nothing. */
    fake_input(640, 640);
    out3(84, 8500);
    recognise_fails("fits no YOLO head");

    /* P2 models start at 4: 160^2 more boxes at 640. */
    fake_input(640, 640);
    fake_set_meta("stride", "32");
    out3(84, 8400 + 25600);
    i = recognise_ok(VX_FAMILY_YOLOV8);
    assert_int_equal(i.strides[0], 4);

    /* A stride list; garbage falls back to 8/16/32. */
    fake_input(640, 640);
    fake_set_meta("stride", "[16, 32]");
    out3(84, 1600 + 400);
    i = recognise_ok(VX_FAMILY_YOLOV8);
    assert_int_equal(i.nstrides, 2);
    fake_input(640, 640);
    fake_set_meta("stride", "tensor([ 8., 16., 32.])");
    out3(84, 8400);
    i = recognise_ok(VX_FAMILY_YOLOV8);
    assert_int_equal(i.nstrides, 3);
}

static void test_family_rectangular(void **state)
{
    (void)state;
    /* imgsz [384, 640]: 48x80 + 24x40 + 12x20 cells. */
    fake_input(640, 384);
    out3(84, cells(640, 384));
    assert_int_equal(cells(640, 384), 5040);
    vx_family_info i = recognise_ok(VX_FAMILY_YOLOV8);
    assert_int_equal(i.input_w, 640);
    assert_int_equal(i.input_h, 384);
    fake_input(384, 640);
    out3(3 * 5040, 85);
    i = recognise_ok(VX_FAMILY_YOLOV5);
    assert_int_equal(i.input_w, 384);
    assert_int_equal(i.input_h, 640);
}

static void test_family_metadata_refusals(void **state)
{
    (void)state;
    fake_input(640, 640);
    fake_set_meta("task", "pose");
    out3(56, 8400); /* would read as YOLOv8 with 52 classes */
    recognise_fails("task 'pose'");

    fake_input(640, 640);
    fake_set_meta("task", "detect");
    out3(84, 8400);
    recognise_ok(VX_FAMILY_YOLOV8);

    fake_input(640, 640);
    fake_set_meta("end2end", "True");
    out3(300, 6);
    recognise_fails("end-to-end");

    /* Without the metadata the [1, K, 6] shape is named. */
    fake_input(640, 640);
    out3(300, 6);
    recognise_fails("end-to-end export");
}

static void test_family_not_detectors(void **state)
{
    (void)state;
    fake_input(224, 224);
    fake_add_output("logits", 2, 1, 1000, 0, 0, 0);
    recognise_fails("[1,1000]");
    assert_contains(vx_last_error(), "not a YOLOv8/YOLO11");

    fake_input(640, 640);
    fake.ninputs = 2;
    out3(84, 8400);
    recognise_fails("2 inputs");

    fake_input(640, 640);
    fake.input.dims[1] = 1; /* greyscale */
    out3(84, 8400);
    recognise_fails("[1,1,640,640]");

    fake_input(640, 8192);
    out3(84, 8400);
    recognise_fails("larger than 4096");

    fake_input(640, 640);
    recognise_fails("no outputs");

    fake_input(640, 640);
    fake_add_output("output0", 3, 2, 84, 8400, 0, 0); /* batch 2 */
    recognise_fails("[2,84,8400]");

    /* Two rank-3 outputs are not a YOLO head: NanoDet is tried and says
     * why not. */
    fake_input(640, 640);
    out3(84, 8400);
    out3(84, 8400);
    recognise_fails("not a NanoDet detector");

    /* A segmentation model without its metadata: the mask prototypes are
     * rank 4. */
    fake_input(640, 640);
    out3(116, 8400);
    fake_add_output("output1", 4, 1, 32, 160, 160, 0);
    recognise_fails("not a NanoDet");
}

static void test_family_nanodet(void **state)
{
    (void)state;
    fake_input(416, 416);
    const int64_t n[3] = {169, 2704, 676};
    for (int l = 0; l < 3; l++) {
        fake_add_output("cls", 3, 1, n[l], 80, 0, 0);
        fake_add_output("reg", 3, 1, n[2 - l], 44, 0, 0);
    }
    vx_family_info i = recognise_ok(VX_FAMILY_NANODET);
    assert_int_equal(i.num_classes, 80);
    assert_int_equal(i.nlevels, 3);
    assert_int_equal(i.num_anchors, 3549);
    /* Sorted by stride; each class head paired with the box head of its
     * cell count. */
    assert_int_equal(i.levels[0].stride, 8);
    assert_int_equal(i.levels[0].grid, 52);
    assert_int_equal(i.levels[0].cls_out, 2);
    assert_int_equal(i.levels[0].reg_out, 3);
    assert_int_equal(i.levels[2].stride, 32);
    assert_int_equal(i.levels[2].cls_out, 0);
    assert_int_equal(i.levels[2].reg_out, 5);
    assert_int_equal(i.strides[1], 16);
    assert_contains(i.why, "NanoDet");
}

/* ---- class names ---- */

static char **parse_ok(const char *text, int want)
{
    char **names = NULL;
    int n = -1;
    if (vx_detect_parse_names(text, &names, &n) != VX_OK)
        fail_msg("'%s': %s", text, vx_last_error());
    assert_int_equal(n, want);
    assert_non_null(names);
    return names;
}

static void test_names_parse(void **state)
{
    (void)state;
    char **v = parse_ok("{0: 'person', 1: 'bicycle', 2: 'traffic light'}", 3);
    assert_string_equal(v[0], "person");
    assert_string_equal(v[1], "bicycle");
    assert_string_equal(v[2], "traffic light");
    vx_detect_free_names(v, 3);

    /* Python's repr quoting: double quotes around a name with an
     * apostrophe, escapes inside single quotes, non-ASCII as is or
     * escaped. */
    v = parse_ok(" {0: \"it's\", 1: 'say \"hi\"', 2: 'don\\'t', 3: 'back\\\\slash', 4: 'caf\\xe9', "
                 "5: '\\u4eba', 6: 'caf\xc3\xa9', 7: 'tab\\there', 8: '\\U0001f600', 9: 'odd\\d'} ",
                 10);
    assert_string_equal(v[0], "it's");
    assert_string_equal(v[1], "say \"hi\"");
    assert_string_equal(v[2], "don't");
    assert_string_equal(v[3], "back\\slash");
    assert_string_equal(v[4], "caf\xc3\xa9");
    assert_string_equal(v[5], "\xe4\xba\xba");
    assert_string_equal(v[6], "caf\xc3\xa9");
    assert_string_equal(v[7], "tab\there");
    assert_string_equal(v[8], "\xf0\x9f\x98\x80");
    assert_string_equal(v[9], "odd\\d");
    vx_detect_free_names(v, 10);

    /* Spacing, line breaks, a trailing comma, ids out of order, JSON-style
     * keys, and the list form of older YOLOv5 exports. */
    v = parse_ok("{\n  1:'b' ,\n  0 :  'a',\n}", 2);
    assert_string_equal(v[0], "a");
    assert_string_equal(v[1], "b");
    vx_detect_free_names(v, 2);
    v = parse_ok("{\"0\": \"a\", \"1\": \"b\"}", 2);
    assert_string_equal(v[1], "b");
    vx_detect_free_names(v, 2);
    v = parse_ok("['person', \"bicycle\"]", 2);
    assert_string_equal(v[0], "person");
    assert_string_equal(v[1], "bicycle");
    vx_detect_free_names(v, 2);
    v = parse_ok("{0: ''}", 1);
    assert_string_equal(v[0], "");
    vx_detect_free_names(v, 1);
}

static void test_names_malformed(void **state)
{
    (void)state;
    static const struct {
        const char *text, *expect;
    } bad[] = {
        {"", "expected {id"},
        {"person, bicycle", "expected {id"},
        {"{}", "empty"},
        {"[]", "empty"},
        {"{0: 'a', 2: 'b'}", "id 2 is out of range"},
        {"{0: 'a', 0: 'b'}", "id 0 is repeated"},
        {"{0: 'a', 1: 'b'", "expected ',' or '}'"},
        {"{0: 'a}", "no closing '"},
        {"{0: \"a'}", "no closing \""},
        {"{0 'a'}", "expected ':'"},
        {"{a: 'b'}", "expected a class id"},
        {"{-1: 'a'}", "expected a class id"},
        {"{'0: 'a'}", "expected a class id"},
        {"{0: a}", "expected a quoted name"},
        {"{0: 'a' 1: 'b'}", "expected ',' or '}'"},
        {"{0: 'a'} extra", "text after"},
        {"['a': 'b']", "expected ',' or ']'"},
        {"{0: '\\x4'}", "bad escape"},
        {"{0: '\\ud800'}", "bad escape"},
        {"{0: '\\x00'}", "bad escape"},
        {"{99999999999999999999: 'a'}", "expected a class id"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        char **names = (char **)(uintptr_t)1;
        int n = -1;
        if (vx_detect_parse_names(bad[k].text, &names, &n) != VX_ERR_FORMAT)
            fail_msg("'%s' was accepted", bad[k].text);
        assert_null(names);
        assert_int_equal(n, 0);
        if (!strstr(vx_last_error(), "class names") || !strstr(vx_last_error(), bad[k].expect))
            fail_msg("'%s': message '%s' lacks '%s'", bad[k].text, vx_last_error(), bad[k].expect);
    }
    char **names;
    int n;
    assert_int_equal(vx_detect_parse_names(NULL, &names, &n), VX_ERR_INVALID);
}

/* Metadata comes from user files: mutated and truncated variants of valid
 * lists must give a clean result either way (under ASan in CI, any read
 * past the text fails the test).  Fixed seed, so a failure reproduces. */
static void test_names_mutations(void **state)
{
    (void)state;
    static const char *const seeds[] = {
        "{0: 'person', 1: \"it's\", 2: 'caf\\xe9', 3: '\\u4eba'}",
        "['a', 'b\\'c', \"d\"]",
        "{\"0\": \"x\", \"1\": \"y\"}",
    };
    static const char alphabet[] = "{}[]:,'\"\\ 0123456789xuU";
    uint32_t rng = 12345;
    char buf[96];
    for (int iter = 0; iter < 30000; iter++) {
        const char *seed = seeds[iter % 3];
        size_t len = strlen(seed);
        memcpy(buf, seed, len + 1);
        for (int k = 0; k < 1 + iter % 4; k++) {
            rng = rng * 1664525u + 1013904223u;
            size_t at = (rng >> 8) % len;
            buf[at] = alphabet[(rng >> 20) % (sizeof alphabet - 1)];
        }
        rng = rng * 1664525u + 1013904223u;
        if (iter % 5 == 0)
            buf[(rng >> 8) % (len + 1)] = 0; /* truncated */
        char **names = (char **)(uintptr_t)1;
        int n = -1;
        vx_err err = vx_detect_parse_names(buf, &names, &n);
        if (err == VX_OK) {
            assert_true(n > 0);
            for (int i = 0; i < n; i++)
                assert_non_null(names[i]);
            vx_detect_free_names(names, n);
        } else {
            assert_int_equal(err, VX_ERR_FORMAT);
            assert_null(names);
            assert_int_equal(n, 0);
        }
    }
}

static void test_class_names_fallbacks(void **state)
{
    (void)state;
    char **v;
    vx_names_source src;
    char warn[256];

    fake_reset();
    fake_set_meta("names", "{0: 'cat', 1: 'dog', 2: 'bird'}");
    assert_int_equal(vx_detect_class_names(&fake_model, 3, &v, &src, warn, sizeof warn), VX_OK);
    assert_int_equal(src, VX_NAMES_METADATA);
    assert_string_equal(v[2], "bird");
    assert_string_equal(warn, "");
    vx_detect_free_names(v, 3);

    /* Count mismatch: not the metadata's names. */
    assert_int_equal(vx_detect_class_names(&fake_model, 4, &v, &src, warn, sizeof warn), VX_OK);
    assert_int_equal(src, VX_NAMES_GENERIC);
    assert_string_equal(v[3], "class3");
    assert_contains(warn, "names 3 classes but the model has 4");
    vx_detect_free_names(v, 4);

    /* Garbage with 80 classes: COCO, and the parser's reason. */
    fake_reset();
    fake_set_meta("names", "{0: 'person', 1: bicycle}");
    assert_int_equal(vx_detect_class_names(&fake_model, 80, &v, &src, warn, sizeof warn), VX_OK);
    assert_int_equal(src, VX_NAMES_COCO80);
    assert_string_equal(v[16], "dog");
    assert_contains(warn, "expected a quoted name");
    vx_detect_free_names(v, 80);

    /* No metadata: no warning. */
    fake_reset();
    assert_int_equal(vx_detect_class_names(&fake_model, 80, &v, &src, warn, sizeof warn), VX_OK);
    assert_int_equal(src, VX_NAMES_COCO80);
    assert_string_equal(warn, "");
    vx_detect_free_names(v, 80);
    assert_int_equal(vx_detect_class_names(&fake_model, 2, &v, &src, NULL, 0), VX_OK);
    assert_int_equal(src, VX_NAMES_GENERIC);
    assert_string_equal(v[1], "class1");
    vx_detect_free_names(v, 2);
    assert_int_equal(vx_detect_class_names(&fake_model, 0, &v, &src, NULL, 0), VX_ERR_INVALID);
}

/* ---- the detector: preprocessing ---- */

static vx_detector *create_ok(void)
{
    vx_detector *det = NULL;
    if (vx_detector_create("fake-yolo.onnx", NULL, NULL, &det) != VX_OK)
        fail_msg("create failed: %s", vx_last_error());
    return det;
}

static void fake_yolov8(int w, int h, int nc)
{
    fake_input(w, h);
    out3(4 + nc, cells(w, h));
}

static void fake_yolov5(int w, int h, int nc)
{
    fake_input(w, h);
    out3(3 * cells(w, h), 5 + nc);
}

/* Input tensor value of plane c at (y, x), NCHW. */
static float in_at(int c, int y, int x)
{
    int h = (int)fake.input.dims[2], w = (int)fake.input.dims[3];
    return fake.in[((size_t)c * (size_t)h + (size_t)y) * (size_t)w + (size_t)x];
}

static void assert_rgb_at(int y, int x, int r, int g, int b)
{
    const int rgb[3] = {r, g, b};
    for (int c = 0; c < 3; c++)
        if (!(fabsf(in_at(c, y, x) - (float)rgb[c] / 255.0f) <= 1e-5f))
            fail_msg("input (%d,%d) plane %d is %f, expected %d/255", y, x, c, (double)in_at(c, y, x),
                     rgb[c]);
}

static void nan_fill(void)
{
    size_t n = fake_numel(&fake.input);
    for (size_t i = 0; i < n; i++)
        fake.in[i] = NAN;
}

static void assert_no_nan(void)
{
    size_t n = fake_numel(&fake.input);
    for (size_t i = 0; i < n; i++)
        if (isnan(fake.in[i]))
            fail_msg("input element %zu was not written", i);
}

static void test_preprocess_yolo(void **state)
{
    (void)state;
    fake_yolov8(640, 640, 80);
    vx_detector *det = create_ok();
    assert_int_equal(vx_detector_info(det)->family, VX_FAMILY_YOLOV8);
    assert_int_equal(vx_detector_input_size(det), 640);
    /* 8x4 solid (10, 20, 30): 640x320 at rows 160..479. */
    uint8_t px[8 * 4 * 3];
    for (int i = 0; i < 8 * 4; i++)
        px[i * 3] = 10, px[i * 3 + 1] = 20, px[i * 3 + 2] = 30;
    vx_image img = {8, 4, VX_PIX_RGB24, {px, NULL, NULL}, {24, 0, 0}};
    nan_fill();
    assert_int_equal(vx_detector_preprocess(det, &img), VX_OK);
    assert_no_nan();
    /* Plane 0 is red: RGB, as Ultralytics models are trained. */
    assert_rgb_at(160, 0, 10, 20, 30);
    assert_rgb_at(320, 320, 10, 20, 30);
    assert_rgb_at(479, 639, 10, 20, 30);
    /* Grey 114 padding, divided like the pixels: not black, not 0.447 of
     * something else. */
    assert_rgb_at(0, 0, 114, 114, 114);
    assert_rgb_at(159, 320, 114, 114, 114);
    assert_rgb_at(480, 5, 114, 114, 114);
    assert_rgb_at(639, 639, 114, 114, 114);
    assert_near(in_at(0, 0, 0), 114.0 / 255.0, 1e-6);

    /* The same picture as BGR24 gives the same tensor. */
    for (int i = 0; i < 8 * 4; i++)
        px[i * 3] = 30, px[i * 3 + 2] = 10;
    img.format = VX_PIX_BGR24;
    nan_fill();
    assert_int_equal(vx_detector_preprocess(det, &img), VX_OK);
    assert_no_nan();
    assert_rgb_at(320, 320, 10, 20, 30);

    /* A YUV frame goes through the BGR conversion, then RGB planes:
     * limited-range grey Y 128 is RGB 130. */
    uint8_t y[16 * 16], uv[16 * 8];
    memset(y, 128, sizeof y);
    memset(uv, 128, sizeof uv);
    vx_image nv12 = {16, 16, VX_PIX_NV12, {y, uv, NULL}, {16, 16, 0}};
    assert_int_equal(vx_detector_preprocess(det, &nv12), VX_OK);
    for (int c = 0; c < 3; c++)
        assert_near(in_at(c, 320, 320), 130.0 / 255.0, 2.0 / 255.0);
    vx_detector_destroy(det);
}

/* A rectangular imgsz [384, 640]: the letterbox fills W x H, and an image
 * of another aspect ratio is padded along the other axis. */
static void test_preprocess_rectangular(void **state)
{
    (void)state;
    fake_yolov8(640, 384, 80);
    vx_detector *det = create_ok();
    assert_int_equal(vx_detector_info(det)->input_h, 384);
    /* 40x40 red: scaled to 384x384, columns 128..511. */
    uint8_t px[40 * 40 * 3] = {0};
    for (int i = 0; i < 40 * 40; i++)
        px[i * 3] = 255;
    vx_image img = {40, 40, VX_PIX_RGB24, {px, NULL, NULL}, {120, 0, 0}};
    nan_fill();
    assert_int_equal(vx_detector_preprocess(det, &img), VX_OK);
    assert_no_nan();
    assert_rgb_at(0, 128, 255, 0, 0);
    assert_rgb_at(383, 511, 255, 0, 0);
    assert_rgb_at(200, 127, 114, 114, 114);
    assert_rgb_at(200, 512, 114, 114, 114);
    assert_rgb_at(0, 0, 114, 114, 114);
    vx_detector_destroy(det);
}

static void test_preprocess_yolo_nhwc(void **state)
{
    (void)state;
    fake_input(320, 320);
    fake.input = (fake_tensor){"images", 4, {1, 320, 320, 3}};
    out3(84, cells(320, 320));
    vx_detector *det = create_ok();
    uint8_t px[2 * 3] = {10, 20, 30, 10, 20, 30};
    vx_image img = {2, 1, VX_PIX_RGB24, {px, NULL, NULL}, {6, 0, 0}};
    nan_fill();
    assert_int_equal(vx_detector_preprocess(det, &img), VX_OK);
    assert_no_nan();
    const float *p = fake.in + ((size_t)160 * 320 + 100) * 3; /* inside rows 80..239 */
    assert_near(p[0], 10 / 255.0, 1e-6);
    assert_near(p[1], 20 / 255.0, 1e-6);
    assert_near(p[2], 30 / 255.0, 1e-6);
    p = fake.in + ((size_t)10 * 320 + 100) * 3;
    assert_near(p[0], 114 / 255.0, 1e-6);
    assert_near(p[2], 114 / 255.0, 1e-6);
    vx_detector_destroy(det);
}

/* ---- the detector: decoding on raw outputs ---- */

/* Writes box i of the fake's output 0 in whatever orientation the fake
 * declared: (cx, cy, w, h), [objectness,] then one class score. */
static void put_box(const vx_family_info *fi, int i, float cx, float cy, float w, float h, float obj, int cls,
                    float score)
{
    float *o = fake.out[fi->output];
    int yolov5 = fi->family == VX_FAMILY_YOLOV5;
    size_t channels = (size_t)fi->num_classes + (yolov5 ? 5 : 4), n = (size_t)fi->num_anchors;
    size_t bs = fi->channels_first ? 1 : channels, cs = fi->channels_first ? n : 1;
    float *p = o + (size_t)i * bs;
    p[0] = cx;
    p[cs] = cy;
    p[2 * cs] = w;
    p[3 * cs] = h;
    if (yolov5)
        p[4 * cs] = obj;
    p[(size_t)((yolov5 ? 5 : 4) + cls) * cs] = score;
}

static void assert_box(const vx_detection *d, float x1, float y1, float x2, float y2, int cls, float conf)
{
    if (d->cls != cls || fabsf(d->conf - conf) > 1e-5f || fabsf(d->x1 - x1) > 0.01f ||
        fabsf(d->y1 - y1) > 0.01f || fabsf(d->x2 - x2) > 0.01f || fabsf(d->y2 - y2) > 0.01f)
        fail_msg("got class %d %.4f [%.2f %.2f %.2f %.2f], expected class %d %.4f [%.2f %.2f %.2f %.2f]",
                 d->cls, (double)d->conf, (double)d->x1, (double)d->y1, (double)d->x2, (double)d->y2, cls,
                 (double)conf, (double)x1, (double)y1, (double)x2, (double)y2);
}

/* 1280x720 onto 640x640: scale 0.5, image rows 140..499 of the input. */
static vx_image wide_image(uint8_t **px)
{
    *px = calloc(1280 * 720 * 3, 1);
    return (vx_image){1280, 720, VX_PIX_RGB24, {*px, NULL, NULL}, {1280 * 3, 0, 0}};
}

static void run_yolov8(int transposed)
{
    fake_input(640, 640);
    if (transposed)
        out3(8400, 84);
    else
        out3(84, 8400);
    vx_detector *det = create_ok();
    const vx_family_info *fi = vx_detector_info(det);
    assert_int_equal(fi->channels_first, !transposed);
    /* Input box centred (320, 320), 100x50 -> [270, 295, 370, 345] ->
     * image [540, 310, 740, 410]. */
    put_box(fi, 1234, 320, 320, 100, 50, 0, 16, 0.9f);
    put_box(fi, 1234, 320, 320, 100, 50, 0, 17, 0.6f); /* second class of the same box: dropped */
    /* Overlapping the first, same class, weaker: suppressed; the same box
     * with another class: kept. */
    put_box(fi, 1235, 324, 320, 100, 50, 0, 16, 0.8f);
    put_box(fi, 5000, 322, 322, 100, 50, 0, 2, 0.7f);
    /* Below the threshold, and exactly on it. */
    put_box(fi, 7000, 100, 200, 20, 20, 0, 0, 0.3f);
    put_box(fi, 8399, 600, 490, 40, 40, 0, 79, 0.35f);
    /* Entirely in the top padding, and the strongest: dropped, and
     * without taking one of max_det's places (see max_det 2 below). */
    put_box(fi, 0, 100, 50, 40, 40, 0, 5, 0.95f);

    uint8_t *px;
    vx_image img = wide_image(&px);
    vx_detection out[8];
    int n = -1;
    assert_int_equal(vx_detector_run(det, &img, out, 8, &n), VX_OK);
    assert_int_equal(n, 3);
    assert_box(&out[0], 540, 310, 740, 410, 16, 0.9f);
    assert_box(&out[1], 544, 314, 744, 414, 2, 0.7f);
    /* (600, 490) 40x40 -> [580, 470, 620, 510] -> y2 740, past the
     * image's bottom: clipped to 720. */
    assert_box(&out[2], 1160, 660, 1240, 720, 79, 0.35f);
    assert_string_equal(vx_detector_class_name(det, out[0].cls), "dog");

    /* Thresholds between frames. */
    vx_detect_opts o;
    vx_detector_get_opts(det, &o);
    o.conf_threshold = 0.25f;
    assert_int_equal(vx_detector_set_opts(det, &o), VX_OK);
    assert_int_equal(vx_detector_postprocess(det, out, 8, &n), VX_OK);
    assert_int_equal(n, 4);
    o.nms_iou = 0.99f;
    assert_int_equal(vx_detector_set_opts(det, &o), VX_OK);
    assert_int_equal(vx_detector_postprocess(det, out, 8, &n), VX_OK);
    assert_int_equal(n, 5);
    o.max_det = 2;
    assert_int_equal(vx_detector_set_opts(det, &o), VX_OK);
    assert_int_equal(vx_detector_postprocess(det, out, 8, &n), VX_OK);
    assert_int_equal(n, 2);
    free(px);
    vx_detector_destroy(det);
    assert_int_equal(fake.live_models, 0);
    assert_int_equal(fake.live_engines, 0);
}

static void test_run_yolov8(void **state)
{
    (void)state;
    run_yolov8(0);
}

static void test_run_yolov8_transposed(void **state)
{
    (void)state;
    run_yolov8(1);
}

static void test_run_yolov5(void **state)
{
    (void)state;
    fake_yolov5(416, 416, 3);
    fake_set_meta("names", "{0: 'helmet', 1: 'head', 2: 'vest'}");
    vx_detector *det = create_ok();
    const vx_family_info *fi = vx_detector_info(det);
    assert_int_equal(fi->family, VX_FAMILY_YOLOV5);
    assert_int_equal(fi->num_anchors, 10647);
    /* Score = objectness x class score: 0.8 * 0.9. */
    put_box(fi, 10, 208, 208, 40, 80, 0.8f, 1, 0.9f);
    put_box(fi, 10, 208, 208, 40, 80, 0.8f, 2, 0.5f); /* not the best class */
    /* High class score, low objectness, and the reverse: both under 0.35. */
    put_box(fi, 20, 100, 100, 10, 10, 0.3f, 0, 1.0f);
    put_box(fi, 30, 300, 300, 10, 10, 1.0f, 0, 0.3f);
    /* The same object from a neighbouring anchor, weaker: suppressed. */
    put_box(fi, 11, 210, 208, 40, 80, 0.7f, 1, 0.9f);
    /* 832x416 -> scale 0.5, input rows 104..311. */
    uint8_t *px = calloc(832 * 416 * 3, 1);
    vx_image img = {832, 416, VX_PIX_RGB24, {px, NULL, NULL}, {832 * 3, 0, 0}};
    vx_detection out[8];
    int n = -1;
    assert_int_equal(vx_detector_run(det, &img, out, 8, &n), VX_OK);
    assert_int_equal(n, 1);
    /* [188, 168, 228, 248] in the input -> x / 0.5, (y - 104) / 0.5. */
    assert_box(&out[0], 376, 128, 456, 288, 1, 0.72f);
    assert_string_equal(vx_detector_class_name(det, 1), "head");
    assert_int_equal(vx_detector_class_count(det), 3);
    free(px);
    vx_detector_destroy(det);
}

/* imgsz [384, 640] and a 1280x720 frame: scale 0.5, rows 12..371. */
static void test_run_rectangular(void **state)
{
    (void)state;
    fake_yolov8(640, 384, 80);
    vx_detector *det = create_ok();
    const vx_family_info *fi = vx_detector_info(det);
    put_box(fi, 77, 320, 192, 64, 32, 0, 0, 0.5f);
    uint8_t *px;
    vx_image img = wide_image(&px);
    vx_detection out[4];
    int n = -1;
    assert_int_equal(vx_detector_run(det, &img, out, 4, &n), VX_OK);
    assert_int_equal(n, 1);
    /* [288, 176, 352, 208] -> [576, 328, 704, 392]. */
    assert_box(&out[0], 576, 328, 704, 392, 0, 0.5f);
    free(px);
    vx_detector_destroy(det);
}

static void test_create_rejects(void **state)
{
    (void)state;
    vx_detector *det = (vx_detector *)(uintptr_t)1;
    fake_input(640, 640);
    out3(84, 8000);
    assert_int_equal(vx_detector_create("odd.onnx", NULL, NULL, &det), VX_ERR_UNSUPPORTED);
    assert_null(det);
    assert_contains(vx_last_error(), "odd.onnx: ");
    assert_contains(vx_last_error(), "fits no YOLO head");
    assert_int_equal(fake.live_models, 0);
    assert_int_equal(fake.live_engines, 0);

    fake_input(640, 640);
    fake_set_meta("task", "segment");
    out3(116, 8400);
    assert_int_equal(vx_detector_create("seg.onnx", NULL, NULL, &det), VX_ERR_UNSUPPORTED);
    assert_contains(vx_last_error(), "seg.onnx: ");
    assert_contains(vx_last_error(), "task 'segment'");
    assert_int_equal(fake.live_models, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_family_yolov8),         cmocka_unit_test(test_family_yolov5),
        cmocka_unit_test(test_family_ambiguous),      cmocka_unit_test(test_family_strides),
        cmocka_unit_test(test_family_rectangular),    cmocka_unit_test(test_family_metadata_refusals),
        cmocka_unit_test(test_family_not_detectors),  cmocka_unit_test(test_family_nanodet),
        cmocka_unit_test(test_names_parse),           cmocka_unit_test(test_names_malformed),
        cmocka_unit_test(test_names_mutations),       cmocka_unit_test(test_class_names_fallbacks),
        cmocka_unit_test(test_preprocess_yolo),       cmocka_unit_test(test_preprocess_rectangular),
        cmocka_unit_test(test_preprocess_yolo_nhwc),  cmocka_unit_test(test_run_yolov8),
        cmocka_unit_test(test_run_yolov8_transposed), cmocka_unit_test(test_run_yolov5),
        cmocka_unit_test(test_run_rectangular),       cmocka_unit_test(test_create_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
