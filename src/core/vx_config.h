/*
 * core/config: the server's settings, from defaults, then the environment,
 * then command-line flags, each later layer overriding the earlier one.
 *
 * Every setting has one key, which is also its environment variable: the
 * product spec's names (DEVICE, BATCH_SIZE, SUBSTREAM_SCALE, MODEL_PATH,
 * VIDEO_SOURCE, TARGET_FPS, HOST, PORT, PRECISION) and VEROLUX_-prefixed
 * names for the settings the spec does not have.  Values are checked when
 * they are set, so a bad value is reported with where it came from
 * ("PORT=abc (environment): expected a whole number from 0 to 65535");
 * vx_config_validate then checks what only makes sense as a whole (folders
 * exist, precision fits the device).  The origin of each value is kept so
 * that the start-up log can say which settings an operator changed.
 *
 * HOST defaults to 127.0.0.1, not the spec's 0.0.0.0: the server decodes
 * any source a client names within its policy, so exposing it beyond the
 * machine is a decision an operator makes explicitly (HOST=0.0.0.0).
 *
 * List settings (media folders, allowed URL prefixes, cameras) accumulate
 * within one layer; the first flag of a list replaces what the environment
 * gave.  In the environment, MEDIA_DIRS is ':'-separated, ALLOW_SOURCES and
 * CAMERAS are whitespace-separated.
 *
 * Threading: a vx_config is plain data with one owner; fill it on one
 * thread, then share it read-only.
 */
#ifndef VX_CONFIG_H
#define VX_CONFIG_H

#include "core/vx_core.h"

typedef enum { VX_CFG_DEFAULT = 0, VX_CFG_ENV, VX_CFG_FLAG } vx_config_origin;

typedef enum {
    VX_CFG_DEVICE = 0,
    VX_CFG_BATCH_SIZE,
    VX_CFG_SUBSTREAM_SCALE,
    VX_CFG_MODEL_PATH,
    VX_CFG_VIDEO_SOURCE,
    VX_CFG_TARGET_FPS,
    VX_CFG_HOST,
    VX_CFG_PORT,
    VX_CFG_PRECISION,
    VX_CFG_THREADS,
    VX_CFG_IDLE_STOP,
    VX_CFG_HEARTBEAT,
    VX_CFG_CLIENT_QUEUE,
    VX_CFG_MAX_SOURCES,
    VX_CFG_MAX_CLIENTS,
    VX_CFG_REALTIME,
    VX_CFG_ASYNC_GRABBER,
    VX_CFG_MEDIA_DIRS,
    VX_CFG_ALLOW_SOURCES,
    VX_CFG_CAMERAS,
    VX_CFG_GATE_RULES,
    VX_CFG_GATE_DB,
    VX_CFG_MQTT_URL,
    VX_CFG_NKEYS
} vx_config_key;

typedef struct {
    char *name;      /* [A-Za-z0-9_.-], 1..64 characters */
    char *url;       /* any source string vx_video understands */
    char *substream; /* the camera's low-resolution stream, or NULL */
} vx_config_camera;

typedef struct {
    char *device;           /* auto | cpu | ref | cuda */
    int batch_size;         /* frames per inference call, 1..64 */
    double substream_scale; /* detection resolution / full resolution, (0, 1] */
    char *model_path;       /* "" until set: the caller picks its default */
    char *video_source;     /* the always-running default source */
    double target_fps;      /* most frames processed per second per source; 0: no limit */
    char *host;             /* address (or interface) to listen on */
    int port;               /* 0: any free port */
    char *precision;        /* auto | fp32 | fp16 | bf16 | int8 (detect/vx_select.h) */
    int threads;            /* inference threads; 0: all cores */
    double idle_stop_s;     /* a client-started pipeline stops this long after its last client */
    double heartbeat_s;     /* WebSocket heartbeat period */
    int client_queue;       /* messages queued per client before the oldest is dropped */
    int max_sources;        /* pipelines running at once */
    int max_clients;        /* WebSocket and stream clients at once */
    int realtime;           /* files paced at their native rate */
    int async_grabber;      /* decode runs ahead, newest frame kept (default 1) */
    char **media_dirs;      /* folders whose files clients may open */
    int n_media_dirs;
    char **allow_sources; /* URL prefixes clients may open */
    int n_allow_sources;
    vx_config_camera *cameras;
    int n_cameras;
    char *gate_rules; /* the gate check's rules file; "" (default): no gate check */
    char *gate_db;    /* the gate's event store (default $VEROLUX_DATA/gate.db, VEROLUX_DATA
                         defaulting to ~/.local/share/verolux) */
    char *mqtt_url;   /* mqtt://[user[:password]@]host[:port] to publish gate events to; "": none */
    vx_config_origin origin[VX_CFG_NKEYS];
} vx_config;

/* Defaults.  VIDEO_SOURCE defaults to $VEROLUX_CACHE/samples/vtest.avi and
 * the media folders to $VEROLUX_CACHE/samples (VEROLUX_CACHE defaulting to
 * ~/.cache/verolux), so that a plain start serves the sample video.  Fails
 * only when out of memory. */
vx_err vx_config_init(vx_config *cfg);
void vx_config_free(vx_config *cfg);

/* The key's name (its environment variable), or NULL. */
const char *vx_config_key_name(vx_config_key key);
/* The key for a name, or -1. */
int vx_config_key_find(const char *name);

/* Sets one setting from text.  List keys append one item (for CAMERAS:
 * "NAME=URL"); the first FLAG item of a list replaces ENV and DEFAULT
 * items.  `what` is the setting's name in messages ("--port"; NULL: the
 * key, "PORT"); messages read "--port=abc: expected ..." or
 * "PORT=abc (environment): expected ...". */
vx_err vx_config_set(vx_config *cfg, vx_config_key key, const char *value, vx_config_origin origin,
                     const char *what);

/* Sets a configured camera's substream from "NAME=URL"; the camera must
 * have been given first. */
vx_err vx_config_set_substream(vx_config *cfg, const char *spec, vx_config_origin origin);

/* Reads every key from the environment through `get` (NULL: getenv).
 * Empty values count as unset.  Stops at the first bad value. */
typedef const char *(*vx_config_getenv_fn)(const char *name, void *user);
vx_err vx_config_load_env(vx_config *cfg, vx_config_getenv_fn get, void *user);

/* Whole-configuration checks: media folders exist and are folders, camera
 * names are unique, bf16 only on a backend that computes it. */
vx_err vx_config_validate(const vx_config *cfg);

/* Logs every setting with its origin (passwords in URLs hidden). */
void vx_config_log(const vx_config *cfg);

/* Copies `url` into out with the password of any user:password@ replaced
 * by "***".  Always NUL-terminates. */
void vx_config_redact(const char *url, char *out, size_t len);

#endif
