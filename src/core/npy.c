/* NumPy .npy reader/writer for float32 arrays.  See vx_npy.h.
 * Format: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html */
#include "core/vx_npy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NPY_BYTES ((size_t)8 << 30)

static const uint8_t magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

/* The value text after 'key': in the header dict, or NULL. */
static const char *find_key(const char *h, const char *key)
{
    char q1[40], q2[40];
    snprintf(q1, sizeof q1, "'%s'", key);
    snprintf(q2, sizeof q2, "\"%s\"", key);
    const char *p = strstr(h, q1);
    if (!p)
        p = strstr(h, q2);
    if (!p)
        return NULL;
    p += strlen(q1);
    while (*p == ' ')
        p++;
    if (*p != ':')
        return NULL;
    p++;
    while (*p == ' ')
        p++;
    return p;
}

vx_err vx_npy_parse(const char *name, const uint8_t *buf, size_t len, vx_npy *out)
{
    memset(out, 0, sizeof *out);
    if (len < 10 || memcmp(buf, magic, 6))
        return vx_fail(VX_ERR_FORMAT, "%s: not an .npy file (no \\x93NUMPY magic)", name);
    int major = buf[6];
    size_t hlen, hoff;
    if (major == 1) {
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8;
        hoff = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12)
            return vx_fail(VX_ERR_FORMAT, "%s: truncated header", name);
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
        hoff = 12;
    } else {
        return vx_fail(VX_ERR_UNSUPPORTED, "%s: .npy format version %d.%d is not supported (1.0 to 3.0 are)",
                       name, major, buf[7]);
    }
    if (hlen > len - hoff || hlen > 1 << 20)
        return vx_fail(VX_ERR_FORMAT, "%s: header length %zu runs past the file (%zu bytes)", name, hlen,
                       len);
    char *h = malloc(hlen + 1);
    if (!h)
        return vx_fail(VX_ERR_NOMEM, "%s: out of memory", name);
    memcpy(h, buf + hoff, hlen);
    h[hlen] = 0;
    vx_err e = VX_OK;
    const char *descr = find_key(h, "descr"), *fo = find_key(h, "fortran_order"),
               *shape = find_key(h, "shape");
    if (!descr || !fo || !shape || *shape != '(') {
        e = vx_fail(VX_ERR_FORMAT, "%s: malformed header (needs descr, fortran_order and shape): %.80s", name,
                    h);
        goto out;
    }
    if (strncmp(descr, "'<f4'", 5) && strncmp(descr, "\"<f4\"", 5)) {
        e = vx_fail(VX_ERR_UNSUPPORTED, "%s: dtype %.12s; only little-endian float32 ('<f4') is supported",
                    name, descr);
        goto out;
    }
    if (strncmp(fo, "False", 5)) {
        e = vx_fail(VX_ERR_UNSUPPORTED, "%s: Fortran-order arrays are not supported", name);
        goto out;
    }
    /* shape: "()", "(5,)", "(1, 3, 416, 416)" */
    const char *p = shape + 1;
    int64_t count = 1;
    for (;;) {
        while (*p == ' ')
            p++;
        if (*p == ')')
            break;
        char *end;
        errno = 0;
        long long d = strtoll(p, &end, 10);
        if (end == p || errno || d < 0) {
            e = vx_fail(VX_ERR_FORMAT, "%s: bad dimension in shape %.40s", name, shape);
            goto out;
        }
        if (out->rank >= VX_NPY_MAX_RANK) {
            e = vx_fail(VX_ERR_UNSUPPORTED, "%s: rank above %d", name, VX_NPY_MAX_RANK);
            goto out;
        }
        if (d && count > (INT64_C(1) << 31) / d) {
            e = vx_fail(VX_ERR_FORMAT, "%s: more than 2^31 elements", name);
            goto out;
        }
        out->dims[out->rank++] = d;
        count *= d;
        p = end;
        while (*p == ' ')
            p++;
        if (*p == ',')
            p++;
        else if (*p != ')') {
            e = vx_fail(VX_ERR_FORMAT, "%s: bad shape %.40s", name, shape);
            goto out;
        }
    }
    size_t bytes = (size_t)count * 4, have = len - hoff - hlen;
    if (have != bytes) {
        e = vx_fail(VX_ERR_FORMAT, "%s: %zu data bytes, the shape needs %zu", name, have, bytes);
        goto out;
    }
    out->count = count;
    out->data = malloc(bytes ? bytes : 4);
    if (!out->data) {
        e = vx_fail(VX_ERR_NOMEM, "%s: out of memory for %zu bytes", name, bytes);
        goto out;
    }
    memcpy(out->data, buf + hoff + hlen, bytes);
out:
    free(h);
    if (e)
        vx_npy_free(out);
    return e;
}

vx_err vx_npy_read(const char *path, vx_npy *out)
{
    uint8_t *buf;
    size_t len;
    memset(out, 0, sizeof *out);
    vx_err e = vx_read_file(path, MAX_NPY_BYTES, &buf, &len);
    if (e)
        return e;
    e = vx_npy_parse(path, buf, len, out);
    free(buf);
    return e;
}

vx_err vx_npy_write(const char *path, const float *data, const int64_t *dims, int rank)
{
    char h[512];
    int n = snprintf(h, sizeof h, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    int64_t count = 1;
    if (rank < 0 || rank > VX_NPY_MAX_RANK)
        return vx_fail(VX_ERR_INVALID, "%s: rank %d", path, rank);
    for (int i = 0; i < rank; i++) {
        n += snprintf(h + n, sizeof h - (size_t)n, "%lld%s", (long long)dims[i],
                      rank == 1      ? ","
                      : i + 1 < rank ? ", "
                                     : "");
        count *= dims[i];
    }
    n += snprintf(h + n, sizeof h - (size_t)n, "), }");
    /* Pad with spaces and a newline so the data starts 64-byte aligned, as numpy does. */
    int total = (10 + n + 1 + 63) / 64 * 64;
    while (10 + n + 1 < total)
        h[n++] = ' ';
    h[n++] = '\n';
    uint8_t pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (uint8_t)(n & 0xff), (uint8_t)(n >> 8)};
    FILE *f = fopen(path, "wb");
    if (!f)
        return vx_fail(VX_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(h, 1, (size_t)n, f) == (size_t)n &&
             fwrite(data, 4, (size_t)count, f) == (size_t)count;
    ok = (fclose(f) == 0) && ok;
    return ok ? VX_OK : vx_fail(VX_ERR_IO, "%s: write failed: %s", path, strerror(errno));
}

void vx_npy_free(vx_npy *a)
{
    free(a->data);
    a->data = NULL;
}
