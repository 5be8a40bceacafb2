/* Settings from defaults, environment and flags.  See vx_config.h. */
#include "core/vx_config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Longest string value accepted: source strings are bounded by the video
 * module's limit, paths by PATH_MAX. */
#define STR_MAX 4096
#define LIST_MAX 64

typedef enum { T_STR, T_INT, T_REAL, T_BOOL, T_ENUM, T_HOST, T_LIST } kind;

typedef struct {
    const char *name;
    kind type;
    double lo, hi;        /* T_INT, T_REAL */
    const char *choices;  /* T_ENUM: '|'-separated */
    const char *describe; /* for the log */
} key_info;

static const key_info keys[VX_CFG_NKEYS] = {
    [VX_CFG_DEVICE] = {"DEVICE", T_ENUM, 0, 0, "auto|cpu|ref|cuda", "inference device"},
    [VX_CFG_BATCH_SIZE] = {"BATCH_SIZE", T_INT, 1, 64, NULL, "frames per inference call"},
    [VX_CFG_SUBSTREAM_SCALE] = {"SUBSTREAM_SCALE", T_REAL, 0.05, 1, NULL, "detection / full resolution"},
    [VX_CFG_MODEL_PATH] = {"MODEL_PATH", T_STR, 0, 0, NULL, "detector model"},
    [VX_CFG_VIDEO_SOURCE] = {"VIDEO_SOURCE", T_STR, 0, 0, NULL, "default source (always running)"},
    [VX_CFG_TARGET_FPS] = {"TARGET_FPS", T_REAL, 0, 1000, NULL, "max processed fps per source (0: no limit)"},
    [VX_CFG_HOST] = {"HOST", T_HOST, 0, 0, NULL, "listen address"},
    [VX_CFG_PORT] = {"PORT", T_INT, 0, 65535, NULL, "listen port (0: any free port)"},
    [VX_CFG_PRECISION] = {"PRECISION", T_ENUM, 0, 0, "auto|fp32|fp16|bf16|int8", "inference arithmetic"},
    [VX_CFG_THREADS] = {"VEROLUX_THREADS", T_INT, 0, 1024, NULL, "inference threads (0: all cores)"},
    [VX_CFG_IDLE_STOP] = {"VEROLUX_IDLE_STOP_S", T_REAL, 0, 86400, NULL,
                          "stop idle client sources after (s)"},
    [VX_CFG_HEARTBEAT] = {"VEROLUX_HEARTBEAT_S", T_REAL, 0.05, 3600, NULL, "WebSocket heartbeat period (s)"},
    [VX_CFG_CLIENT_QUEUE] = {"VEROLUX_CLIENT_QUEUE", T_INT, 1, 1024, NULL, "messages queued per client"},
    [VX_CFG_MAX_SOURCES] = {"VEROLUX_MAX_SOURCES", T_INT, 1, 256, NULL, "pipelines at once"},
    [VX_CFG_MAX_CLIENTS] = {"VEROLUX_MAX_CLIENTS", T_INT, 1, 100000, NULL, "streaming clients at once"},
    [VX_CFG_REALTIME] = {"VEROLUX_REALTIME", T_BOOL, 0, 0, NULL, "pace files at their native rate"},
    [VX_CFG_ASYNC_GRABBER] = {"VEROLUX_ASYNC_GRABBER", T_BOOL, 0, 0, NULL,
                              "decode ahead, keep the newest frame (off: every frame in turn)"},
    [VX_CFG_MEDIA_DIRS] = {"MEDIA_DIRS", T_LIST, 0, 0, NULL, "folders clients may open files from"},
    [VX_CFG_ALLOW_SOURCES] = {"ALLOW_SOURCES", T_LIST, 0, 0, NULL, "URL prefixes clients may open"},
    [VX_CFG_CAMERAS] = {"CAMERAS", T_LIST, 0, 0, NULL, "configured cameras NAME=URL"},
    [VX_CFG_GATE_RULES] = {"GATE_RULES", T_STR, 0, 0, NULL, "gate check rules file (none: no gate check)"},
    [VX_CFG_GATE_DB] = {"GATE_DB", T_STR, 0, 0, NULL, "gate event store (SQLite)"},
    [VX_CFG_MQTT_URL] = {"MQTT_URL", T_STR, 0, 0, NULL, "MQTT broker for gate events (none: off)"},
};

static const char *const origin_names[] = {"default", "environment", "flag"};

const char *vx_config_key_name(vx_config_key key)
{
    return (unsigned)key < VX_CFG_NKEYS ? keys[key].name : NULL;
}

int vx_config_key_find(const char *name)
{
    for (int i = 0; i < VX_CFG_NKEYS; i++)
        if (name && !strcmp(keys[i].name, name))
            return i;
    return -1;
}

static vx_err set_str(char **slot, const char *v)
{
    char *copy = strdup(v);
    if (!copy)
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    free(*slot);
    *slot = copy;
    return VX_OK;
}

static void cache_dir(char *buf, size_t len)
{
    const char *cache = getenv("VEROLUX_CACHE");
    const char *home = getenv("HOME");
    if (cache && *cache)
        snprintf(buf, len, "%s", cache);
    else
        snprintf(buf, len, "%s/.cache/verolux", home && *home ? home : ".");
}

static void free_lists(vx_config *cfg, vx_config_key which)
{
    if (which == VX_CFG_MEDIA_DIRS) {
        for (int i = 0; i < cfg->n_media_dirs; i++)
            free(cfg->media_dirs[i]);
        cfg->n_media_dirs = 0;
    } else if (which == VX_CFG_ALLOW_SOURCES) {
        for (int i = 0; i < cfg->n_allow_sources; i++)
            free(cfg->allow_sources[i]);
        cfg->n_allow_sources = 0;
    } else if (which == VX_CFG_CAMERAS) {
        for (int i = 0; i < cfg->n_cameras; i++) {
            free(cfg->cameras[i].name);
            free(cfg->cameras[i].url);
            free(cfg->cameras[i].substream);
        }
        cfg->n_cameras = 0;
    }
}

vx_err vx_config_init(vx_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->batch_size = 1;
    cfg->substream_scale = 0.6;
    cfg->target_fps = 30;
    cfg->port = 8000;
    cfg->threads = 0;
    cfg->idle_stop_s = 10;
    cfg->heartbeat_s = 30;
    cfg->client_queue = 8;
    cfg->max_sources = 8;
    cfg->max_clients = 256;
    cfg->realtime = 1;
    cfg->async_grabber = 1;
    cfg->media_dirs = calloc(LIST_MAX, sizeof *cfg->media_dirs);
    cfg->allow_sources = calloc(LIST_MAX, sizeof *cfg->allow_sources);
    cfg->cameras = calloc(LIST_MAX, sizeof *cfg->cameras);
    char cache[STR_MAX], path[STR_MAX + 32];
    cache_dir(cache, sizeof cache);
    vx_err err = VX_OK;
    if (!cfg->media_dirs || !cfg->allow_sources || !cfg->cameras)
        err = vx_fail(VX_ERR_NOMEM, "out of memory");
    if (!err)
        err = set_str(&cfg->device, "auto");
    if (!err)
        err = set_str(&cfg->precision, "auto"); /* the load priority of engine files (detect/vx_select.h) */
    if (!err)
        err = set_str(&cfg->host, "127.0.0.1");
    if (!err)
        err = set_str(&cfg->model_path, "");
    if (!err)
        err = set_str(&cfg->gate_rules, "");
    if (!err)
        err = set_str(&cfg->mqtt_url, "");
    const char *data = getenv("VEROLUX_DATA"), *home = getenv("HOME");
    if (data && *data)
        snprintf(path, sizeof path, "%s/gate.db", data);
    else
        snprintf(path, sizeof path, "%s/.local/share/verolux/gate.db", home && *home ? home : ".");
    if (!err)
        err = set_str(&cfg->gate_db, path);
    snprintf(path, sizeof path, "%s/samples/vtest.avi", cache);
    if (!err)
        err = set_str(&cfg->video_source, path);
    snprintf(path, sizeof path, "%s/samples", cache);
    if (!err && !(cfg->media_dirs[0] = strdup(path)))
        err = vx_fail(VX_ERR_NOMEM, "out of memory");
    if (err) {
        vx_config_free(cfg);
        return err;
    }
    cfg->n_media_dirs = 1;
    return VX_OK;
}

void vx_config_free(vx_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->device);
    free(cfg->precision);
    free(cfg->host);
    free(cfg->model_path);
    free(cfg->video_source);
    free(cfg->gate_rules);
    free(cfg->gate_db);
    free(cfg->mqtt_url);
    if (cfg->media_dirs)
        free_lists(cfg, VX_CFG_MEDIA_DIRS);
    if (cfg->allow_sources)
        free_lists(cfg, VX_CFG_ALLOW_SOURCES);
    if (cfg->cameras)
        free_lists(cfg, VX_CFG_CAMERAS);
    free(cfg->media_dirs);
    free(cfg->allow_sources);
    free(cfg->cameras);
    memset(cfg, 0, sizeof *cfg);
}

/* Control characters never belong in a setting; a value with them is a
 * mistake (or an attempt to forge log lines). */
static int has_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

static int parse_long(const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || isspace((unsigned char)*s))
        return -1;
    *out = v;
    return 0;
}

static int parse_real(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(v) || isspace((unsigned char)*s))
        return -1;
    *out = v;
    return 0;
}

static int enum_has(const char *choices, const char *v)
{
    size_t n = strlen(v);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !strncmp(p, v, n))
            return 1;
        p += len + (bar != NULL);
    }
    return 0;
}

static int valid_camera_name(const char *s, size_t len)
{
    if (len == 0 || len > 64)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-' && s[i] != '.')
            return 0;
    return 1;
}

static vx_err list_add(vx_config *cfg, vx_config_key key, const char *v, const char *what)
{
    int *count = key == VX_CFG_MEDIA_DIRS      ? &cfg->n_media_dirs
                 : key == VX_CFG_ALLOW_SOURCES ? &cfg->n_allow_sources
                                               : &cfg->n_cameras;
    if (*count >= LIST_MAX)
        return vx_fail(VX_ERR_INVALID, "%s: more than %d entries", what, LIST_MAX);
    if (key == VX_CFG_MEDIA_DIRS) {
        if (!(cfg->media_dirs[*count] = strdup(v)))
            return vx_fail(VX_ERR_NOMEM, "out of memory");
    } else if (key == VX_CFG_ALLOW_SOURCES) {
        /* A prefix without a scheme would also match local paths, which
         * only media folders may grant. */
        const char *sep = strstr(v, "://");
        if (!sep || sep == v)
            return vx_fail(VX_ERR_INVALID,
                           "%s: expected a URL prefix with a scheme, like rtsp://10.0.0.5/ "
                           "(files are allowed with media folders instead)",
                           what);
        if (!(cfg->allow_sources[*count] = strdup(v)))
            return vx_fail(VX_ERR_NOMEM, "out of memory");
    } else {
        const char *eq = strchr(v, '=');
        if (!eq || !valid_camera_name(v, (size_t)(eq - v)) || !eq[1])
            return vx_fail(VX_ERR_INVALID,
                           "%s: expected NAME=URL with a NAME of 1 to 64 letters, digits, '_', '-' or '.'",
                           what);
        vx_config_camera *c = &cfg->cameras[*count];
        c->name = strndup(v, (size_t)(eq - v));
        c->url = strdup(eq + 1);
        c->substream = NULL;
        if (!c->name || !c->url) {
            free(c->name);
            free(c->url);
            c->name = c->url = NULL;
            return vx_fail(VX_ERR_NOMEM, "out of memory");
        }
    }
    (*count)++;
    return VX_OK;
}

vx_err vx_config_set(vx_config *cfg, vx_config_key key, const char *value, vx_config_origin origin,
                     const char *what)
{
    if ((unsigned)key >= VX_CFG_NKEYS || !value)
        return vx_fail(VX_ERR_INVALID, "unknown setting");
    const key_info *k = &keys[key];
    /* Messages name the setting as the user wrote it, with its value and
     * where it came from: "PORT=99999 (environment): ...". */
    char label[320];
    snprintf(label, sizeof label, "%s=%.200s%s%s", what ? what : k->name, value,
             strlen(value) > 200 ? "..." : "", origin == VX_CFG_ENV ? " (environment)" : "");
    if (strlen(value) >= STR_MAX)
        return vx_fail(VX_ERR_INVALID, "%s: value longer than %d bytes", label, STR_MAX - 1);
    if (has_ctl(value))
        return vx_fail(VX_ERR_INVALID, "%s: value contains control characters", label);

    long l;
    double d;
    vx_err err = VX_OK;
    switch (k->type) {
    case T_INT:
        if (parse_long(value, &l) || l < (long)k->lo || l > (long)k->hi)
            return vx_fail(VX_ERR_INVALID, "%s: expected a whole number from %.0f to %.0f", label, k->lo,
                           k->hi);
        if (key == VX_CFG_BATCH_SIZE)
            cfg->batch_size = (int)l;
        else if (key == VX_CFG_PORT)
            cfg->port = (int)l;
        else if (key == VX_CFG_THREADS)
            cfg->threads = (int)l;
        else if (key == VX_CFG_CLIENT_QUEUE)
            cfg->client_queue = (int)l;
        else if (key == VX_CFG_MAX_SOURCES)
            cfg->max_sources = (int)l;
        else if (key == VX_CFG_MAX_CLIENTS)
            cfg->max_clients = (int)l;
        break;
    case T_REAL:
        /* The substream scale's lower bound is exclusive in spirit: 0 would
         * mean no picture at all. */
        if (parse_real(value, &d) || d < k->lo || d > k->hi)
            return vx_fail(VX_ERR_INVALID, "%s: expected a number from %g to %g", label, k->lo, k->hi);
        if (key == VX_CFG_SUBSTREAM_SCALE)
            cfg->substream_scale = d;
        else if (key == VX_CFG_TARGET_FPS)
            cfg->target_fps = d;
        else if (key == VX_CFG_IDLE_STOP)
            cfg->idle_stop_s = d;
        else if (key == VX_CFG_HEARTBEAT)
            cfg->heartbeat_s = d;
        break;
    case T_BOOL: {
        int *flag = key == VX_CFG_ASYNC_GRABBER ? &cfg->async_grabber : &cfg->realtime;
        if (!strcmp(value, "1") || !strcasecmp(value, "true") || !strcasecmp(value, "yes") ||
            !strcasecmp(value, "on"))
            *flag = 1;
        else if (!strcmp(value, "0") || !strcasecmp(value, "false") || !strcasecmp(value, "no") ||
                 !strcasecmp(value, "off"))
            *flag = 0;
        else
            return vx_fail(VX_ERR_INVALID, "%s: expected true or false (1/0, yes/no, on/off)", label);
        break;
    }
    case T_ENUM: {
        char low[32];
        size_t n = strlen(value);
        if (n >= sizeof low)
            n = sizeof low - 1;
        for (size_t i = 0; i < n; i++)
            low[i] = (char)tolower((unsigned char)value[i]);
        low[n] = 0;
        if (!enum_has(k->choices, low)) {
            return vx_fail(VX_ERR_INVALID, "%s: expected one of %s", label, k->choices);
        }
        err = set_str(key == VX_CFG_DEVICE ? &cfg->device : &cfg->precision, low);
        break;
    }
    case T_HOST: {
        /* An IP literal, a host name or an interface name: letters, digits
         * and . : - _ only (IPv6 literals included), nothing a resolver or
         * a log line could misread. */
        if (!*value || strlen(value) > 255)
            return vx_fail(VX_ERR_INVALID, "%s: expected an IP address or host name", label);
        for (const char *p = value; *p; p++)
            if (!isalnum((unsigned char)*p) && !strchr(".:-_", *p))
                return vx_fail(VX_ERR_INVALID, "%s: expected an IP address or host name", label);
        err = set_str(&cfg->host, value);
        break;
    }
    case T_STR:
        if (!*value)
            return vx_fail(VX_ERR_INVALID, "%s: empty value", label);
        if (key == VX_CFG_MQTT_URL && strncmp(value, "mqtt://", 7))
            return vx_fail(VX_ERR_INVALID, "%s: expected mqtt://[user[:password]@]host[:port]", label);
        err = set_str(key == VX_CFG_MODEL_PATH   ? &cfg->model_path
                      : key == VX_CFG_GATE_RULES ? &cfg->gate_rules
                      : key == VX_CFG_GATE_DB    ? &cfg->gate_db
                      : key == VX_CFG_MQTT_URL   ? &cfg->mqtt_url
                                                 : &cfg->video_source,
                      value);
        break;
    case T_LIST:
        if (!*value)
            return vx_fail(VX_ERR_INVALID, "%s: empty value", label);
        if (origin > cfg->origin[key])
            free_lists(cfg, key);
        err = list_add(cfg, key, value, label);
        break;
    }
    if (!err)
        cfg->origin[key] = origin;
    return err;
}

vx_err vx_config_set_substream(vx_config *cfg, const char *spec, vx_config_origin origin)
{
    (void)origin;
    const char *eq = spec ? strchr(spec, '=') : NULL;
    if (!eq || !eq[1] || has_ctl(spec))
        return vx_fail(VX_ERR_INVALID, "camera substream '%s': expected NAME=URL", spec ? spec : "");
    for (int i = 0; i < cfg->n_cameras; i++) {
        vx_config_camera *c = &cfg->cameras[i];
        if (strlen(c->name) == (size_t)(eq - spec) && !strncmp(c->name, spec, (size_t)(eq - spec)))
            return set_str(&c->substream, eq + 1);
    }
    return vx_fail(VX_ERR_NOT_FOUND, "camera substream '%s': no camera named '%.*s' (give --camera first)",
                   spec, (int)(eq - spec), spec);
}

static const char *real_getenv(const char *name, void *user)
{
    (void)user;
    return getenv(name);
}

/* Splits a list variable into items and sets each. */
static vx_err load_list(vx_config *cfg, vx_config_key key, const char *value)
{
    const char *seps = key == VX_CFG_MEDIA_DIRS ? ":" : " \t\n";
    char *copy = strdup(value);
    if (!copy)
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    vx_err err = VX_OK;
    char *save = NULL;
    for (char *tok = strtok_r(copy, seps, &save); tok && !err; tok = strtok_r(NULL, seps, &save))
        err = vx_config_set(cfg, key, tok, VX_CFG_ENV, NULL);
    free(copy);
    return err;
}

vx_err vx_config_load_env(vx_config *cfg, vx_config_getenv_fn get, void *user)
{
    if (!get)
        get = real_getenv;
    for (int i = 0; i < VX_CFG_NKEYS; i++) {
        const char *v = get(keys[i].name, user);
        if (!v || !*v)
            continue;
        vx_err err;
        if (keys[i].type == T_LIST) {
            err = load_list(cfg, (vx_config_key)i, v);
        } else {
            /* Environment values are often quoted loosely: "PORT= 8000". */
            while (isspace((unsigned char)*v))
                v++;
            size_t n = strlen(v);
            while (n && isspace((unsigned char)v[n - 1]))
                n--;
            char *trim = strndup(v, n);
            if (!trim)
                return vx_fail(VX_ERR_NOMEM, "out of memory");
            err = vx_config_set(cfg, (vx_config_key)i, trim, VX_CFG_ENV, NULL);
            free(trim);
        }
        if (err)
            return err;
    }
    return VX_OK;
}

vx_err vx_config_validate(const vx_config *cfg)
{
    for (int i = 0; i < cfg->n_media_dirs; i++) {
        struct stat st;
        const char *d = cfg->media_dirs[i];
        if (stat(d, &st) != 0)
            return vx_fail(VX_ERR_NOT_FOUND, "media folder %s: %s", d, strerror(errno));
        if (!S_ISDIR(st.st_mode))
            return vx_fail(VX_ERR_INVALID, "media folder %s: not a folder", d);
    }
    for (int i = 0; i < cfg->n_cameras; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(cfg->cameras[i].name, cfg->cameras[j].name))
                return vx_fail(VX_ERR_INVALID, "camera '%s' is configured twice", cfg->cameras[i].name);
    if (!strcmp(cfg->device, "ref") && strcmp(cfg->precision, "fp32") && strcmp(cfg->precision, "auto"))
        return vx_fail(VX_ERR_INVALID, "PRECISION=%s: the ref device computes fp32 only", cfg->precision);
    if (!strcmp(cfg->device, "cuda") && !strcmp(cfg->precision, "bf16"))
        return vx_fail(VX_ERR_UNSUPPORTED,
                       "PRECISION=bf16 is a cpu-backend precision; not available with cuda");
    return VX_OK;
}

void vx_config_redact(const char *url, char *out, size_t len)
{
    if (!len)
        return;
    snprintf(out, len, "%s", url ? url : "");
    const char *scheme = url ? strstr(url, "://") : NULL;
    if (!scheme)
        return;
    const char *auth = scheme + 3;
    size_t host_end = strcspn(auth, "/?#");
    const char *at = memchr(auth, '@', host_end);
    if (!at)
        return;
    /* The last '@' before the path ends the user info (passwords may
     * contain '@' when not escaped). */
    for (const char *p = at; p < auth + host_end; p++)
        if (*p == '@')
            at = p;
    const char *colon = memchr(auth, ':', (size_t)(at - auth));
    if (!colon)
        return;
    snprintf(out, len, "%.*s***%s", (int)(colon + 1 - url), url, at);
}

void vx_config_log(const vx_config *cfg)
{
    char buf[STR_MAX + 64];
    for (int i = 0; i < VX_CFG_NKEYS; i++) {
        const key_info *k = &keys[i];
        const char *origin = origin_names[cfg->origin[i]];
        switch ((vx_config_key)i) {
        case VX_CFG_DEVICE: snprintf(buf, sizeof buf, "%s", cfg->device); break;
        case VX_CFG_BATCH_SIZE: snprintf(buf, sizeof buf, "%d", cfg->batch_size); break;
        case VX_CFG_SUBSTREAM_SCALE: snprintf(buf, sizeof buf, "%g", cfg->substream_scale); break;
        case VX_CFG_MODEL_PATH: snprintf(buf, sizeof buf, "%s", cfg->model_path); break;
        case VX_CFG_VIDEO_SOURCE: vx_config_redact(cfg->video_source, buf, sizeof buf); break;
        case VX_CFG_TARGET_FPS: snprintf(buf, sizeof buf, "%g", cfg->target_fps); break;
        case VX_CFG_HOST: snprintf(buf, sizeof buf, "%s", cfg->host); break;
        case VX_CFG_PORT: snprintf(buf, sizeof buf, "%d", cfg->port); break;
        case VX_CFG_PRECISION: snprintf(buf, sizeof buf, "%s", cfg->precision); break;
        case VX_CFG_THREADS: snprintf(buf, sizeof buf, "%d", cfg->threads); break;
        case VX_CFG_IDLE_STOP: snprintf(buf, sizeof buf, "%g", cfg->idle_stop_s); break;
        case VX_CFG_HEARTBEAT: snprintf(buf, sizeof buf, "%g", cfg->heartbeat_s); break;
        case VX_CFG_CLIENT_QUEUE: snprintf(buf, sizeof buf, "%d", cfg->client_queue); break;
        case VX_CFG_MAX_SOURCES: snprintf(buf, sizeof buf, "%d", cfg->max_sources); break;
        case VX_CFG_MAX_CLIENTS: snprintf(buf, sizeof buf, "%d", cfg->max_clients); break;
        case VX_CFG_REALTIME: snprintf(buf, sizeof buf, "%s", cfg->realtime ? "true" : "false"); break;
        case VX_CFG_ASYNC_GRABBER:
            snprintf(buf, sizeof buf, "%s", cfg->async_grabber ? "true" : "false");
            break;
        case VX_CFG_GATE_RULES:
            snprintf(buf, sizeof buf, "%s", *cfg->gate_rules ? cfg->gate_rules : "(none)");
            break;
        case VX_CFG_GATE_DB: snprintf(buf, sizeof buf, "%s", cfg->gate_db); break;
        case VX_CFG_MQTT_URL:
            if (*cfg->mqtt_url)
                vx_config_redact(cfg->mqtt_url, buf, sizeof buf);
            else
                snprintf(buf, sizeof buf, "(none)");
            break;
        case VX_CFG_MEDIA_DIRS:
        case VX_CFG_ALLOW_SOURCES:
        case VX_CFG_CAMERAS: {
            int n = i == VX_CFG_MEDIA_DIRS      ? cfg->n_media_dirs
                    : i == VX_CFG_ALLOW_SOURCES ? cfg->n_allow_sources
                                                : cfg->n_cameras;
            size_t used = 0;
            buf[0] = 0;
            for (int j = 0; j < n && used < sizeof buf; j++) {
                char item[STR_MAX];
                if (i == VX_CFG_MEDIA_DIRS) {
                    snprintf(item, sizeof item, "%s", cfg->media_dirs[j]);
                } else if (i == VX_CFG_ALLOW_SOURCES) {
                    vx_config_redact(cfg->allow_sources[j], item, sizeof item);
                } else {
                    char url[STR_MAX / 2], sub[STR_MAX / 2];
                    vx_config_redact(cfg->cameras[j].url, url, sizeof url);
                    vx_config_redact(cfg->cameras[j].substream, sub, sizeof sub);
                    snprintf(item, sizeof item, "%s=%s%s%s", cfg->cameras[j].name, url,
                             cfg->cameras[j].substream ? " substream=" : "",
                             cfg->cameras[j].substream ? sub : "");
                }
                int w = snprintf(buf + used, sizeof buf - used, "%s%s", j ? ", " : "", item);
                if (w > 0)
                    used += (size_t)w;
            }
            if (!n)
                snprintf(buf, sizeof buf, "(none)");
            break;
        }
        case VX_CFG_NKEYS: break;
        }
        VX_INFO("config: %-20s = %s  (%s; %s)", k->name, buf, origin, k->describe);
    }
}
