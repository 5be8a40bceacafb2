/*
 * core: error codes, error messages, logging and clocks shared by every
 * module.
 *
 * Errors follow one code space (vx_err).  A function that fails returns a
 * negative code and records a human-readable message (what, where, why) in a
 * thread-local slot, so the caller can print it with vx_last_error() without
 * threading message buffers through every signature.  The message belongs to
 * the calling thread and is overwritten by the next failure on that thread.
 *
 * Threading: everything here is thread-safe; logging takes a lock per line.
 */
#ifndef VX_CORE_H
#define VX_CORE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    VX_OK = 0,
    VX_ERR_INVALID = -1,     /* bad argument or malformed input */
    VX_ERR_NOMEM = -2,       /* allocation failed or size limit exceeded */
    VX_ERR_IO = -3,          /* file or device could not be read/written */
    VX_ERR_FORMAT = -4,      /* file content is corrupt or not what it claims */
    VX_ERR_UNSUPPORTED = -5, /* valid input that this build cannot handle */
    VX_ERR_BACKEND = -6,     /* a kernel library reported a failure */
    VX_ERR_NOT_FOUND = -7,   /* a named thing does not exist */
    VX_ERR_UNAVAILABLE = -8, /* feature not present on this machine */
    VX_ERR_DENIED = -9,      /* refused by policy (a source a client may not open) */
} vx_err;

#if defined(__GNUC__)
#define VX_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define VX_PRINTF(a, b)
#endif

/* Short generic description of a code ("invalid argument", ...). */
const char *vx_strerror(vx_err err);

/* Records a message for the current thread and returns `err`, so that
 * `return vx_fail(VX_ERR_FORMAT, "%s: ...", path);` reads naturally. */
vx_err vx_fail(vx_err err, const char *fmt, ...) VX_PRINTF(2, 3);

/* Prefixes the current thread's message with more context ("loading X: ").
 * Returns `err` unchanged. */
vx_err vx_fail_prefix(vx_err err, const char *fmt, ...) VX_PRINTF(2, 3);

/* The last message recorded on this thread, or the generic text of the last
 * code when none was recorded.  Never NULL. */
const char *vx_last_error(void);
void vx_clear_error(void);

typedef enum { VX_LOG_DEBUG = 0, VX_LOG_INFO, VX_LOG_WARN, VX_LOG_ERROR, VX_LOG_OFF } vx_log_level;

/* Default level comes from VEROLUX_LOG (debug|info|warn|error|off), else info. */
void vx_log_set_level(vx_log_level level);
vx_log_level vx_log_get_level(void);
void vx_log(vx_log_level level, const char *fmt, ...) VX_PRINTF(2, 3);
#define VX_DEBUG(...) vx_log(VX_LOG_DEBUG, __VA_ARGS__)
#define VX_INFO(...) vx_log(VX_LOG_INFO, __VA_ARGS__)
#define VX_WARN(...) vx_log(VX_LOG_WARN, __VA_ARGS__)
#define VX_ERROR(...) vx_log(VX_LOG_ERROR, __VA_ARGS__)

/* Monotonic clock in seconds / nanoseconds. */
double vx_now_s(void);
uint64_t vx_now_ns(void);

/* Whole file into memory (NUL-terminated for convenience; *len excludes the
 * NUL).  Refuses files larger than max_bytes with VX_ERR_NOMEM. */
vx_err vx_read_file(const char *path, size_t max_bytes, uint8_t **data, size_t *len);

/* Overflow-checked size arithmetic: returns 0 on overflow. */
int vx_mul_size(size_t a, size_t b, size_t *out);

/* Number of CPU cores this process may run on (affinity-aware). */
int vx_cpu_count(void);

#endif
