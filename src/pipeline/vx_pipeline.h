/*
 * pipeline: one detection pipeline per video source, shared by all of its
 * subscribers.
 *
 *   grabber thread (video/)  decodes, keeps only the newest frame
 *   pipeline thread          waits for a newer frame, runs the detector,
 *                            publishes one result message; encodes JPEGs
 *                            only while someone watches the MJPEG stream
 *   fan-out                  hands each message to every subscriber's
 *                            bounded queue (oldest dropped when full)
 *
 * One decode and one inference per source however many clients watch it.
 * Publishing never waits for a subscriber: a subscriber that does not drain
 * its queue loses its oldest messages (counted), never the pipeline's time.
 *
 * Pipelines are started by the first subscriber of a source and stopped
 * idle_stop_s after the last one leaves; the default source runs from
 * create to destroy.  Which sources a client may name is decided by a
 * vx_source_policy (configured cameras, webcams, files under the media
 * folders, URLs under allowed prefixes); a refusal is VX_ERR_DENIED with a
 * message for the client, and counted.
 *
 * Detection and substreams (dual stream): with use_substream (the default)
 * detection runs on the camera's own substream when one is configured, else
 * on a copy of each frame at substream_scale (SUBSTREAM_SCALE, 0.6: 1080p is
 * detected at 1152x648, scaled by libswscale with an anti-aliasing filter
 * before the letterbox's plain bilinear), never smaller than the letterbox
 * keeps of the frame.  On a CPU the copy is not free: the network input is
 * fixed, and at 1080p the copy costs more than the detector's colour
 * conversion of the full frame saves (see the video module's scaler).  use_substream=false detects on the
 * frame itself.  Boxes are scaled from the detection image to the main stream's pixels; the MJPEG stream and
 * frame_size always refer to the main stream.  Each of the three ways is its own pipeline (and decode) of a
 * source.
 *
 * Inference is serialised across sources: all pipelines share one detector
 * (one engine, its OpenMP threads sized to the cores) behind a lock, so two
 * sources never run two thread teams on the same cores at once.  The time a
 * pipeline waits for that lock is its "detector_wait" stage.
 *
 * Threading: vx_pipelines_* may be called from any thread.  A subscription
 * (vx_pipeline_sub) belongs to the thread that subscribed: pop, delivered
 * and unsubscribe are called by its owner only; the notify callback runs on
 * a pipeline or grabber thread, must not block and must not call back into
 * this module.  Messages are immutable, ref-counted and may be released on
 * any thread.
 */
#ifndef VX_PIPELINE_H
#define VX_PIPELINE_H

#include <stdint.h>

#include "core/vx_config.h"
#include "core/vx_core.h"
#include "core/vx_stats.h"
#include "detect/vx_detect.h"
#include "gate/vx_gate.h"
#include "store/vx_store.h"
#include "video/vx_video.h"

/* ---- messages ------------------------------------------------------------ */

typedef enum {
    VX_MSG_RESULT = 1,       /* detections of one processed frame */
    VX_MSG_JPEG = 2,         /* the full-resolution frame as JPEG */
    VX_MSG_JPEG_OVERLAY = 4, /* the same with the boxes drawn */
    VX_MSG_ERROR = 8,        /* the source cannot be opened or died; every subscriber gets it */
} vx_msg_type;

typedef struct {
    float x1, y1, x2, y2; /* full-resolution pixels */
    float conf;
    int cls;
    const char *name; /* class name; valid as long as the detector */
} vx_pipeline_det;

typedef struct {
    double inference; /* frames/s the detector sustains: 1 / mean detection time */
    double capture;   /* frames/s the grabber decodes */
    double processed; /* frames/s that went through the detector */
} vx_pipeline_fps;

typedef struct {
    vx_msg_type type;
    uint64_t frame_id;         /* the source's frame number (gaps: frames not processed) */
    uint64_t frame_count;      /* frames this pipeline processed so far, this one included */
    double capture_mono_s;     /* when the frame was decoded (vx_now_s clock) */
    double capture_wall_s;     /* the same as Unix time */
    double published_mono_s;   /* when the message was handed to the subscribers */
    int width, height;         /* full resolution (main stream) */
    int det_width, det_height; /* the network input's picture area (letterbox of the detection image) */
    int dual_stream;           /* detection ran on a reduced copy or a substream */
    vx_pipeline_fps fps;
    int ndet;
    const vx_pipeline_det *dets;
    const uint8_t *data; /* JPEG */
    size_t size;
    const char *message; /* ERROR: for the client, names the source */
    /* RESULT with a gate: {"decisions","stats","events","gate_id",
     * "stream_time"} as JSON text, owned by the message (freed with it);
     * NULL without a gate.  Its events are already in the store. */
    char *gate_json;
} vx_pipeline_msg;

/* Allocates a message with room for ndet detections, data_size bytes of
 * data and a copy of `message` (may be NULL), one reference held. */
vx_pipeline_msg *vx_pipeline_msg_new(vx_msg_type type, int ndet, size_t data_size, const char *message);
/* Writable views of a new message's arrays (before it is published). */
vx_pipeline_det *vx_pipeline_msg_dets(vx_pipeline_msg *m);
uint8_t *vx_pipeline_msg_data(vx_pipeline_msg *m);
vx_pipeline_msg *vx_pipeline_msg_ref(vx_pipeline_msg *m);
void vx_pipeline_msg_release(vx_pipeline_msg *m); /* NULL is ignored */

/* ---- fan-out ------------------------------------------------------------- */

/* Subscribers with bounded FIFO queues.  vx_fanout_publish gives every
 * subscriber that wants the message's type a reference; a full queue drops
 * its oldest message first.  Errors go to everyone.  Thread-safe; notify is
 * called (without the subscriber's lock, with the fan-out's lock held) when
 * a queue goes from empty to non-empty. */
typedef struct vx_fanout vx_fanout;
typedef struct vx_sub vx_sub;
typedef void (*vx_sub_notify_fn)(void *user);

vx_err vx_fanout_create(vx_fanout **out);
/* Frees remaining subscribers and their queued messages. */
void vx_fanout_destroy(vx_fanout *f);
/* types: OR of vx_msg_type; capacity: 1..4096 messages. */
vx_err vx_fanout_add(vx_fanout *f, unsigned types, int capacity, vx_sub_notify_fn notify, void *user,
                     vx_sub **out);
/* Unlinks and frees the subscriber and what it had queued.  Its drops are
 * kept in the fan-out's total. */
void vx_fanout_remove(vx_fanout *f, vx_sub *s);
/* Returns how many subscribers took the message.  The caller keeps its own
 * reference. */
int vx_fanout_publish(vx_fanout *f, vx_pipeline_msg *m);
/* Queues a message for one subscriber (same dropping rule). */
void vx_fanout_send(vx_fanout *f, vx_sub *s, vx_pipeline_msg *m);
unsigned vx_fanout_wanted(vx_fanout *f); /* OR of the current subscribers' types */
int vx_fanout_count(vx_fanout *f);
uint64_t vx_fanout_drops(vx_fanout *f); /* all drops, removed subscribers included */

/* Oldest queued message (the caller owns the reference), or NULL.  *more
 * (may be NULL) says whether more are queued. */
vx_pipeline_msg *vx_sub_pop(vx_sub *s, int *more);
uint64_t vx_sub_drops(vx_sub *s);
int vx_sub_pending(vx_sub *s);

/* ---- source policy ------------------------------------------------------- */

/* What a client may open.  In order: no source (the default one); the
 * default source's own string; a configured camera by name or by its exact
 * URL; webcam:N (when webcams are allowed); a file (file:PATH, a plain path,
 * absolute or relative to a media folder) whose real path (symbolic links
 * and '..' resolved) is a regular file inside a media folder; a URL that
 * starts with an allowed prefix.  Everything else is refused.
 *
 * Prefixes are compared as text: end one with '/' ("rtsp://10.0.0.5/") so
 * that it cannot match "rtsp://10.0.0.50" or "rtsp://10.0.0.5.evil.net".
 * Thread-safe after creation (read-only). */
typedef struct vx_source_policy vx_source_policy;

typedef struct {
    const char *default_source; /* may be NULL */
    const char *const *media_dirs;
    int n_media_dirs;
    const char *const *allow_prefixes;
    int n_allow_prefixes;
    const vx_config_camera *cameras;
    int n_cameras;
    int allow_webcams;
} vx_source_policy_opts;

#define VX_SOURCE_KEY_MAX 4200

typedef struct {
    char key[VX_SOURCE_KEY_MAX];       /* identity: one pipeline per key */
    char open[VX_SOURCE_KEY_MAX];      /* what the grabber opens */
    char substream[VX_SOURCE_KEY_MAX]; /* the camera's substream, "" if none */
    char display[VX_SOURCE_KEY_MAX];   /* for clients and logs: camera name or source, password hidden */
    vx_video_kind kind;
    int is_default;
} vx_source_resolved;

/* Media folders must exist (they are resolved to real paths now). */
vx_err vx_source_policy_create(const vx_source_policy_opts *opts, vx_source_policy **out);
void vx_source_policy_destroy(vx_source_policy *p);
/* VX_ERR_INVALID: malformed (the video module's message, naming the
 * accepted forms); VX_ERR_DENIED: well-formed but not allowed.  Messages
 * never reveal whether a refused file exists. */
vx_err vx_source_policy_resolve(const vx_source_policy *p, const char *requested, vx_source_resolved *out);

/* ---- pipelines ----------------------------------------------------------- */

typedef enum {
    VX_STAGE_GRAB_WAIT = 0, /* waiting for a newer frame than the last one processed */
    VX_STAGE_DETECTOR_WAIT, /* waiting for the shared detector */
    VX_STAGE_PREPROCESS,    /* letterbox + normalise */
    VX_STAGE_INFERENCE,     /* the network */
    VX_STAGE_POSTPROCESS,   /* decode + NMS */
    VX_STAGE_PUBLISH,       /* building the message and queueing it for every subscriber */
    VX_STAGE_JPEG,          /* MJPEG encoding (only while someone watches) */
    VX_STAGE_GATE,          /* tracker + gate engine + store commit + MQTT queueing (with gate rules) */
    VX_STAGE_COUNT
} vx_pipeline_stage;

const char *vx_pipeline_stage_name(vx_pipeline_stage s); /* "grab_wait", ... */

typedef struct vx_pipelines vx_pipelines;
typedef struct vx_pipeline_sub vx_pipeline_sub;

typedef struct {
    vx_detector *detector;      /* shared by all pipelines; not owned, must outlive the manager */
    vx_source_policy *policy;   /* not owned, must outlive the manager */
    const char *default_source; /* always running; NULL: none */
    double idle_stop_s;         /* default 10 */
    int max_sources;            /* default 8 */
    double target_fps;          /* most frames processed per second per source; 0: no limit (default 30) */
    int realtime;               /* pace files at their native rate (default 1) */
    int async_grabber;          /* 0: the grabber waits until each frame was taken (default 1) */
    int decoder_threads;        /* per source (default 1: see cmd_serve's thread budget) */
    double substream_scale;     /* detection copy / frame size, (0, 1]; 1: none (default 0.6) */
    const char *precision;      /* reported: "FP32", "BF16" (default "FP32") */
    int batch_size;             /* reported; frames per inference call (default 1) */
    int jpeg_quality;           /* MJPEG quality 1..100 (default 80) */
    /* The gate check (NULL: none).  A source's default detection stream
     * (use_substream=true) runs an engine (tracker + gate) on these rules,
     * loaded from gate_rules_path at create; its full-resolution variant
     * runs one only once a gate-check subscriber asks for it (rows
     * labelled SOURCE#full), so clients that only watch detections at full
     * resolution record nothing.  Events are committed to `store` (may be
     * NULL: not kept) before anyone sees them, then published to `mqtt`
     * (may be NULL). */
    const char *gate_rules_path;
    vx_store *store; /* not owned */
    vx_mqtt *mqtt;   /* not owned */
} vx_pipelines_opts;

void vx_pipelines_opts_default(vx_pipelines_opts *o);
/* Starts the default source's pipeline (which may fail to open later:
 * that shows in its stats and in errors to its subscribers). */
vx_err vx_pipelines_create(const vx_pipelines_opts *opts, vx_pipelines **out);
/* Stops every pipeline.  All subscriptions must have been unsubscribed. */
void vx_pipelines_destroy(vx_pipelines *m);

typedef struct {
    const char *source;      /* NULL or "": the default source */
    int use_substream;       /* detect on the camera's substream when it has one */
    unsigned types;          /* OR of VX_MSG_RESULT, VX_MSG_JPEG, VX_MSG_JPEG_OVERLAY */
    int queue;               /* messages queued before the oldest is dropped (1..4096) */
    vx_sub_notify_fn notify; /* see the threading rules above */
    void *user;
    int gate; /* reads the gate check: its pipeline runs a gate engine (with gate rules) */
} vx_pipeline_sub_opts;

/* Resolves the source, starts its pipeline if needed and subscribes.  A
 * source that already failed to open gets its error queued at once. */
vx_err vx_pipelines_subscribe(vx_pipelines *m, const vx_pipeline_sub_opts *opts, vx_pipeline_sub **out);
void vx_pipelines_unsubscribe(vx_pipelines *m, vx_pipeline_sub *s);

vx_pipeline_msg *vx_pipeline_sub_pop(vx_pipeline_sub *s, int *more);
/* Records that `m` reached the socket now: glass-to-message latency is
 * now - m->capture_mono_s. */
void vx_pipeline_sub_delivered(vx_pipeline_sub *s, const vx_pipeline_msg *m, double now_mono_s);
uint64_t vx_pipeline_sub_drops(vx_pipeline_sub *s);
int vx_pipeline_sub_pending(vx_pipeline_sub *s); /* messages queued now */

typedef struct {
    const char *display; /* the source for clients */
    int dual_stream;     /* detection on a reduced copy or the camera's substream */
    int substream;       /* ... on the camera's own substream */
    int async_grabber;   /* frames decoded on their own thread (always) */
    int batch_inference; /* more than one frame per inference call */
    const char *precision;
    double substream_scale;
} vx_pipeline_sub_info;

/* Valid until unsubscribe. */
void vx_pipeline_sub_info_get(vx_pipeline_sub *s, vx_pipeline_sub_info *out);

typedef struct {
    char display[VX_SOURCE_KEY_MAX];
    vx_video_kind kind;
    int is_default;
    int substream;
    double uptime_s;
    vx_video_stats video;  /* main stream */
    vx_video_stats detect; /* the stream detection runs on (= video without substream) */
    vx_pipeline_fps fps;
    uint64_t frames_processed;
    uint64_t frames_skipped; /* newer frames skipped to stay under TARGET_FPS */
    uint64_t detect_errors;
    uint64_t jpeg_frames;
    uint64_t messages;    /* published */
    uint64_t queue_drops; /* summed over all its subscribers, past ones included */
    int subscribers;
    int open_failed;           /* the source could not be opened (yet) */
    char error[256];           /* why, or the last failure */
    int det_width, det_height; /* the image detection last ran on (substream, copy or frame) */
    vx_hist_snap stages[VX_STAGE_COUNT];
    vx_hist_snap latency; /* glass to message, per delivered message */
} vx_pipeline_stats;

typedef struct {
    int running;      /* pipelines now */
    uint64_t started; /* pipelines started since create */
    uint64_t stopped;
    uint64_t subscribes; /* successful subscriptions */
    int subscribers;     /* now */
    uint64_t refused;    /* refused sources (policy) */
    uint64_t malformed;  /* malformed source strings */
    uint64_t over_limit; /* refused because max_sources pipelines were running */
} vx_pipelines_totals;

/* ---- the gate, across pipelines ------------------------------------------------ */

/* Whether the pipelines run a gate (gate_rules_path was given). */
int vx_pipelines_gate_enabled(vx_pipelines *m);
/* The running rules.  VX_ERR_UNAVAILABLE without a gate. */
vx_err vx_pipelines_gate_config(vx_pipelines *m, vx_gate_config *out);
/* Validates a rules document (JSON text; zone entries may be inline
 * objects or paths relative to the rules file's folder), writes it to the
 * rules file atomically (the previous file kept as <rules>.bak), then swaps
 * it into every running engine and uses it for pipelines started later.
 * On any failure nothing changes (VX_ERR_FORMAT for bad rules, with diag
 * naming line and key; VX_ERR_IO when it cannot be persisted).  diag may be
 * NULL. */
vx_err vx_pipelines_gate_update(vx_pipelines *m, const char *text, size_t len, vx_gate_diag *diag);
/* Forgets tracks, roles and open sessions in every engine (counts kept). */
vx_err vx_pipelines_gate_reset(vx_pipelines *m);
/* Zeroes the counts of every engine. */
vx_err vx_pipelines_gate_reset_counts(vx_pipelines *m);
/* {"gate_id", counts summed over the sources..., "sources":{display:counts}}
 * (new reference), or NULL without a gate. */
json_t *vx_pipelines_gate_counts(vx_pipelines *m);
/* {"gate_id","sources":{display:{"stream_time","in_gate","persons",
 * "guards","store_errors"}}} (new reference), or NULL without a gate. */
json_t *vx_pipelines_gate_state(vx_pipelines *m);

/* Snapshot of every running pipeline: *out gets a malloc'ed array (free()
 * it), the return value its length.  totals may be NULL. */
int vx_pipelines_stats(vx_pipelines *m, vx_pipeline_stats **out, vx_pipelines_totals *totals);

#endif
