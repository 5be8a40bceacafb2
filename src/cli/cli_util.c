/* Helpers shared by the subcommands.  See cli.h. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"

int vx_cli_default_model(char *buf, size_t len)
{
    const char *env = getenv("MODEL_PATH");
    int n;
    if (env && *env) {
        n = snprintf(buf, len, "%s", env);
    } else {
        const char *cache = getenv("VEROLUX_CACHE");
        if (cache && *cache) {
            n = snprintf(buf, len, "%s/models/nanodet/nanodet.json", cache);
        } else {
            const char *home = getenv("HOME");
            if (!home || !*home)
                return 0;
            n = snprintf(buf, len, "%s/.cache/verolux/models/nanodet/nanodet.json", home);
        }
    }
    return n > 0 && (size_t)n < len;
}

int vx_cli_parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

int vx_cli_parse_float(const char *s, float *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(v))
        return -1;
    *out = (float)v;
    return 0;
}
