/* Error slot, logging and small OS helpers.  See vx_core.h. */
#include "vx_core.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define VX_ERRMSG_MAX 1024

static _Thread_local char tls_msg[VX_ERRMSG_MAX];
static _Thread_local vx_err tls_code;

const char *vx_strerror(vx_err err)
{
    switch (err) {
    case VX_OK: return "success";
    case VX_ERR_INVALID: return "invalid argument or input";
    case VX_ERR_NOMEM: return "out of memory or size limit exceeded";
    case VX_ERR_IO: return "input/output error";
    case VX_ERR_FORMAT: return "corrupt or unrecognised data";
    case VX_ERR_UNSUPPORTED: return "unsupported";
    case VX_ERR_BACKEND: return "kernel library failure";
    case VX_ERR_NOT_FOUND: return "not found";
    case VX_ERR_UNAVAILABLE: return "not available on this machine";
    case VX_ERR_DENIED: return "refused by policy";
    }
    return "unknown error";
}

vx_err vx_fail(vx_err err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tls_msg, sizeof tls_msg, fmt, ap);
    va_end(ap);
    tls_code = err;
    return err;
}

vx_err vx_fail_prefix(vx_err err, const char *fmt, ...)
{
    char prefix[VX_ERRMSG_MAX], old[VX_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    snprintf(old, sizeof old, "%s", vx_last_error());
    snprintf(tls_msg, sizeof tls_msg, "%s%s", prefix, old);
    tls_code = err;
    return err;
}

const char *vx_last_error(void)
{
    if (tls_msg[0])
        return tls_msg;
    return vx_strerror(tls_code);
}

void vx_clear_error(void)
{
    tls_msg[0] = 0;
    tls_code = VX_OK;
}

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int log_level = -1; /* read by every thread, set lazily */

static vx_log_level level_from_env(void)
{
    const char *s = getenv("VEROLUX_LOG");
    if (!s)
        return VX_LOG_INFO;
    if (!strcmp(s, "debug"))
        return VX_LOG_DEBUG;
    if (!strcmp(s, "warn"))
        return VX_LOG_WARN;
    if (!strcmp(s, "error"))
        return VX_LOG_ERROR;
    if (!strcmp(s, "off"))
        return VX_LOG_OFF;
    return VX_LOG_INFO;
}

void vx_log_set_level(vx_log_level level)
{
    log_level = (int)level;
}

vx_log_level vx_log_get_level(void)
{
    if (log_level < 0)
        log_level = (int)level_from_env();
    return (vx_log_level)log_level;
}

void vx_log(vx_log_level level, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (level < vx_log_get_level() || level >= VX_LOG_OFF)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char line[2048];
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                     names[level]);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line)
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&log_lock);
    fprintf(stderr, "%s\n", line);
    pthread_mutex_unlock(&log_lock);
}

uint64_t vx_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

double vx_now_s(void)
{
    return (double)vx_now_ns() * 1e-9;
}

int vx_mul_size(size_t a, size_t b, size_t *out)
{
    if (a && b > SIZE_MAX / a)
        return 0;
    *out = a * b;
    return 1;
}

vx_err vx_read_file(const char *path, size_t max_bytes, uint8_t **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return vx_fail(VX_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return vx_fail(VX_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        fclose(f);
        return vx_fail(VX_ERR_NOMEM, "%s: file is %lld bytes, limit is %zu", path, (long long)st.st_size,
                       max_bytes);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return vx_fail(VX_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, n);
    }
    size_t got = fread(buf, 1, n, f);
    int err = ferror(f);
    fclose(f);
    if (got != n || err) {
        free(buf);
        return vx_fail(VX_ERR_IO, "%s: short read (%zu of %zu bytes)", path, got, n);
    }
    buf[n] = 0;
    *data = buf;
    *len = n;
    return VX_OK;
}

int vx_cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0)
            return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
