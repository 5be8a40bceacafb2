/* core/npy: round trips and every malformed header the reader refuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/vx_npy.h"

static char dir[64];

static void test_round_trip(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "%s/a.npy", dir);
    float v[24];
    for (int i = 0; i < 24; i++)
        v[i] = (float)i * 0.5f - 3;
    int64_t dims[3] = {2, 3, 4};
    assert_int_equal(vx_npy_write(path, v, dims, 3), VX_OK);
    vx_npy a;
    assert_int_equal(vx_npy_read(path, &a), VX_OK);
    assert_int_equal(a.rank, 3);
    assert_int_equal(a.dims[2], 4);
    assert_int_equal(a.count, 24);
    assert_memory_equal(a.data, v, sizeof v);
    vx_npy_free(&a);
    /* The header numpy expects: data 64-byte aligned, '\n' last. */
    FILE *f = fopen(path, "rb");
    uint8_t h[10];
    assert_int_equal(fread(h, 1, 10, f), 10);
    fclose(f);
    assert_int_equal((10 + (h[8] | h[9] << 8)) % 64, 0);
    /* Rank 1 and rank 0. */
    int64_t d1[1] = {5};
    assert_int_equal(vx_npy_write(path, v, d1, 1), VX_OK);
    assert_int_equal(vx_npy_read(path, &a), VX_OK);
    assert_int_equal(a.rank, 1);
    assert_int_equal(a.dims[0], 5);
    vx_npy_free(&a);
    assert_int_equal(vx_npy_write(path, v, d1, 0), VX_OK);
    assert_int_equal(vx_npy_read(path, &a), VX_OK);
    assert_int_equal(a.rank, 0);
    assert_int_equal(a.count, 1);
    vx_npy_free(&a);
}

/* An .npy image with this header (v1) and `data` bytes of payload. */
static vx_err parse(const char *header, size_t data, int version)
{
    size_t hl = strlen(header), off = version == 1 ? 10 : 12;
    uint8_t *buf = calloc(1, off + hl + data + 1);
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (uint8_t)version;
    buf[8] = (uint8_t)hl;
    buf[9] = (uint8_t)(hl >> 8);
    memcpy(buf + off, header, hl);
    vx_npy a;
    vx_err e = vx_npy_parse("t.npy", buf, off + hl + data, &a);
    if (!e)
        vx_npy_free(&a);
    free(buf);
    return e;
}

static void test_headers(void **state)
{
    (void)state;
    const char *ok = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n";
    assert_int_equal(parse(ok, 24, 1), VX_OK);
    assert_int_equal(parse(ok, 24, 2), VX_OK);
    assert_int_equal(parse(ok, 24, 3), VX_OK);
    assert_int_equal(parse(ok, 24, 4), VX_ERR_UNSUPPORTED);
    assert_int_equal(parse(ok, 20, 1), VX_ERR_FORMAT); /* truncated data */
    assert_non_null(strstr(vx_last_error(), "20 data bytes"));
    assert_int_equal(parse(ok, 28, 1), VX_ERR_FORMAT); /* trailing bytes */
    assert_int_equal(parse("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", 16, 1),
                     VX_ERR_UNSUPPORTED);
    assert_non_null(strstr(vx_last_error(), "float32"));
    assert_int_equal(parse("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 8, 1),
                     VX_ERR_UNSUPPORTED);
    assert_int_equal(parse("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16, 1),
                     VX_ERR_UNSUPPORTED);
    assert_non_null(strstr(vx_last_error(), "Fortran"));
    assert_int_equal(parse("{'descr': '<f4', 'fortran_order': False}", 0, 1), VX_ERR_FORMAT);
    assert_int_equal(parse("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -1), }", 0, 1),
                     VX_ERR_FORMAT);
    assert_int_equal(parse("{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }", 0, 1),
                     VX_ERR_FORMAT);
    assert_int_equal(parse("{'descr': '<f4', 'fortran_order': False, 'shape': (65536, 65536), }", 0, 1),
                     VX_ERR_FORMAT);
    assert_non_null(strstr(vx_last_error(), "2^31"));
    vx_npy a;
    assert_int_equal(vx_npy_parse("t", (const uint8_t *)"NUMPY", 5, &a), VX_ERR_FORMAT);
    /* Header length past the end of the file. */
    uint8_t bad[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0xff, 0x7f, '{', '}'};
    assert_int_equal(vx_npy_parse("t", bad, sizeof bad, &a), VX_ERR_FORMAT);
    assert_int_equal(vx_npy_read("/nonexistent/x.npy", &a), VX_ERR_IO);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/vx-test-npy-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int cleanup(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) ? -1 : 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_headers),
    };
    return cmocka_run_group_tests(tests, setup, cleanup);
}
