/*
 * video: camera and file input, one newest frame at a time.
 *
 * A source string says where frames come from: `webcam:N` (V4L2 /dev/videoN),
 * `file:PATH` or a bare path (looped at the end), `rtsp://` / `rtsps://`, or
 * `http://` / `https://` (MJPEG, HLS, progressive MP4).
 * vx_video_source_parse turns one into a spec without touching the disk or
 * the network.
 *
 * A vx_video_source runs one grabber thread that opens the input with FFmpeg,
 * demuxes and decodes it, and keeps only the newest frame.  Consumers ask for
 * "a frame newer than sequence number N" and get a reference to the newest
 * one; pixels are never copied (the frame holds a reference to the decoder's
 * buffer), except for pixel formats the detector cannot read, which are
 * converted once, into pooled buffers, before the frame is published.  A
 * frame that was replaced before any consumer took it counts as dropped.
 * Lossless mode makes the grabber wait until the previous frame was taken,
 * so a benchmark sees every frame.  Files are paced at their native rate
 * (realtime, the default) or read as fast as the consumer allows.
 *
 * When opening or reading fails the grabber closes the input, waits
 * min(backoff_base_s * 2^(failures in a row - 1), backoff_max_s) and tries
 * again; after max_attempts failures in a row the source is dead.  No call
 * blocks forever: opening and reading run under timeouts, and destroy
 * interrupts any wait of the grabber at once.
 *
 * Threading: vx_video_source_wait, _stats, _name and _substream may be called
 * from any number of threads at once.  vx_video_source_destroy must not race
 * with other calls on the same source (stop consumers first).  Frames are
 * ref-counted and independent of their source: they may be released on any
 * thread, also after the source was destroyed.  The event callback runs on
 * the grabber thread, with no lock held.
 */
#ifndef VX_VIDEO_H
#define VX_VIDEO_H

#include <stdint.h>

#include "core/vx_core.h"
#include "video/vx_image.h"

struct AVFrame;

/* ---- source strings ---------------------------------------------------- */

/* Longest source string accepted, in bytes. */
#define VX_VIDEO_SOURCE_MAX 2048

typedef enum {
    VX_VIDEO_FILE = 0, /* local file; looped at the end by default */
    VX_VIDEO_WEBCAM,   /* V4L2 device through libavdevice */
    VX_VIDEO_RTSP,     /* rtsp:// or rtsps:// */
    VX_VIDEO_HTTP,     /* http:// or https:// */
} vx_video_kind;

typedef struct {
    vx_video_kind kind;
    int webcam_index; /* N of webcam:N, else -1 */
    /* What FFmpeg opens: the file path (file: and file:// prefixes removed),
     * /dev/videoN, or the URL as given. */
    char target[VX_VIDEO_SOURCE_MAX];
    /* The source for messages and logs: the string as given, with any URL
     * password replaced by "***". */
    char display[VX_VIDEO_SOURCE_MAX + 8];
} vx_video_spec;

/* Parses a source string.  Pure: no I/O.  An unknown scheme, a malformed
 * URL or webcam number, control characters or an oversized string fail with
 * VX_ERR_INVALID and a message that names the accepted forms. */
vx_err vx_video_source_parse(const char *str, vx_video_spec *out);
const char *vx_video_kind_name(vx_video_kind kind); /* "file", "webcam", ... */

/* ---- frames ------------------------------------------------------------ */

typedef struct {
    uint64_t seq;          /* 1, 2, ... per source; never reused, across loops and reconnects */
    double pts_s;          /* seconds on the source's timeline: 0 at its first frame, then the stream's own
                              timestamps; strictly increasing across loops and reconnects */
    double capture_mono_s; /* vx_now_s() when the frame became available (decoded, or due when paced) */
    double capture_wall_s; /* the same moment as Unix time */
    uint64_t loop;         /* pass through a looped file, 0 first */
    int width, height;
    int decoded_format; /* AVPixelFormat the decoder produced */
    vx_image image;     /* view of `av`: valid until the frame is released */
    /* The frame `image` views: the decoder's frame itself for YUV420P
     * (YUVJ420P), NV12, RGB24 and BGR24, else its conversion.  Read-only. */
    const struct AVFrame *av;
} vx_video_frame;

/* Another reference to the same frame (for handing it to a second thread). */
vx_video_frame *vx_video_frame_ref(vx_video_frame *frame);
/* Drops one reference; the last frees the pixels.  NULL is ignored. */
void vx_video_frame_release(vx_video_frame *frame);

/* ---- AVFrame -> vx_image ----------------------------------------------- */

/* Fills a view of an AVFrame without copying: YUV420P (and its full-range
 * twin YUVJ420P), NV12, RGB24, BGR24 with positive strides.  Other formats
 * fail with VX_ERR_UNSUPPORTED (use a converter). */
vx_err vx_video_avframe_view(const struct AVFrame *frame, vx_image *out);

/* Converts frames in any other pixel format with libswscale into buffers from
 * a pool (reused once their frames are freed): RGB-like formats to RGB24,
 * everything else to YUV420P, same size, no range conversion (YUVJ stays
 * full-range, like YUVJ420P's view).  One converter per thread. */
typedef struct vx_video_converter vx_video_converter;
vx_err vx_video_converter_create(vx_video_converter **out);
void vx_video_converter_destroy(vx_video_converter *conv);
/* `out` (an unreferenced AVFrame) gets a new reference to `in` when
 * vx_video_avframe_view accepts it, else the converted picture with `in`'s
 * properties (pts, ...).  Frames above VX_IMAGE_MAX_DIM are refused. */
vx_err vx_video_converter_convert(vx_video_converter *conv, const struct AVFrame *in, struct AVFrame *out);

/* ---- detection copies ---------------------------------------------------- */

/* Dual stream: detection reads a smaller copy of each frame while display
 * and MJPEG keep the original.  A scaler makes that copy with libswscale
 * (bilinear, anti-aliased when shrinking): YUV frames as YUV420P, packed RGB
 * and BGR as themselves, so the detector converts the copy's colours exactly
 * as it would the frame's.  The copy lives in the scaler's buffer until the
 * next call.  One scaler per thread. */
typedef struct vx_video_scaler vx_video_scaler;
vx_err vx_video_scaler_create(vx_video_scaler **out);
void vx_video_scaler_destroy(vx_video_scaler *s);
/* Scales `in` (any vx_pixfmt) to w x h, at most the input's size. */
vx_err vx_video_scaler_scale(vx_video_scaler *s, const vx_image *in, int w, int h, vx_image *out);
/* The size of the copy of a w x h frame at about `scale` (SUBSTREAM_SCALE):
 * the width a multiple of 16 (rounded up), the height at the same scale,
 * not smaller than what a letterbox onto fit_w x fit_h keeps of the frame
 * (0, 0: no such floor).  w x h itself when no reduction remains. */
void vx_video_scaled_size(int w, int h, double scale, int fit_w, int fit_h, int *out_w, int *out_h);

/* ---- sources ----------------------------------------------------------- */

typedef enum {
    VX_VIDEO_STARTING = 0, /* no frame yet, no failure yet, within degraded_after_s */
    VX_VIDEO_HEALTHY,      /* frames arriving */
    VX_VIDEO_DEGRADED,     /* no frame for > degraded_after_s, or reconnecting after a failure */
    VX_VIDEO_STALE,        /* no frame for > stale_after_s */
    VX_VIDEO_DEAD,         /* gave up after max_attempts failures in a row */
    VX_VIDEO_ENDED,        /* a file without looping reached its end */
} vx_video_health;

const char *vx_video_health_name(vx_video_health h); /* "healthy", ... */

typedef enum {
    VX_VIDEO_EVENT_OPENED = 0, /* input opened (message: demuxer, codec, size) */
    VX_VIDEO_EVENT_FAILED,     /* open or read failed; a retry follows unless DEAD follows */
    VX_VIDEO_EVENT_DEAD,       /* no more retries */
    VX_VIDEO_EVENT_ENDED,      /* end of a file that is not looped */
} vx_video_event;

typedef struct vx_video_source vx_video_source;

/* Called on the grabber thread with no lock held; may call _stats and
 * _name, must not destroy the source.  `message` is valid during the call. */
typedef void (*vx_video_event_fn)(void *user, vx_video_source *src, vx_video_event event,
                                  const char *message);

typedef struct {
    const char *source;         /* required; copied */
    const char *substream;      /* optional second source (the camera's low-resolution
                                   stream), decoded by its own grabber; NULL: none */
    int realtime;               /* files: pace at the native frame rate (default 1) */
    int lossless;               /* wait until the previous frame was taken: no drops (default 0) */
    int loop;                   /* files: start again at the end (default 1) */
    double open_timeout_s;      /* connecting, opening, probing (default 10; RTSP: per transport tried) */
    double read_timeout_s;      /* no packet or no decodable frame for this long: reconnect (default 10) */
    double backoff_base_s;      /* first retry delay, doubled per failure in a row (default 1;
                                   the environment's VEROLUX_VIDEO_BACKOFF_S, for tests) */
    double backoff_max_s;       /* cap of the retry delay (default 300) */
    int max_attempts;           /* failures in a row before the source is dead (default 10) */
    double degraded_after_s;    /* default 10 */
    double stale_after_s;       /* default 60 */
    double fps_window_s;        /* capture fps window (default 2) */
    int decoder_threads;        /* 0: FFmpeg's choice (default 0) */
    vx_video_event_fn on_event; /* optional */
    void *user;                 /* passed to on_event */
} vx_video_source_opts;

void vx_video_source_opts_default(vx_video_source_opts *opts);

/* Parses opts->source (and opts->substream), checks the options and starts
 * the grabber thread(s).  Does not wait for the input to open: open failures
 * show up in the stats, the events and vx_video_source_wait. */
vx_err vx_video_source_create(const vx_video_source_opts *opts, vx_video_source **out);
/* Stops the grabber(s) at once and frees the source.  NULL is ignored. */
void vx_video_source_destroy(vx_video_source *src);

/* Waits up to timeout_s (0: just look) for a frame with seq > after_seq and
 * returns a new reference to the newest frame in *out.  A timeout returns
 * VX_OK with *out = NULL.  VX_ERR_UNAVAILABLE (with a message) means no such
 * frame will ever come: the source is dead, or a non-looped file ended. */
vx_err vx_video_source_wait(vx_video_source *src, uint64_t after_seq, double timeout_s, vx_video_frame **out);

typedef struct {
    vx_video_health health;
    char last_error[256];    /* last open/read failure, "" if none */
    uint64_t last_seq;       /* seq of the newest frame, 0 if none */
    uint64_t frames_decoded; /* frames published */
    uint64_t frames_dropped; /* replaced before any consumer took them */
    uint64_t frames_taken;   /* distinct frames handed to consumers */
    uint64_t decode_errors;  /* packets or frames the decoder rejected (stream kept going) */
    uint64_t failures;       /* failed opens and reads, in total */
    int failures_in_row;     /* since the last decoded frame */
    uint64_t reconnects;     /* opens after the first */
    uint64_t loops;          /* times a file started again */
    int connected;           /* input open now */
    double capture_fps;      /* over the last fps_window_s */
    double native_fps;       /* the stream's nominal rate, 0 if unknown */
    double last_frame_age_s; /* seconds since the newest frame, -1 if none */
    int width, height;       /* of the newest frame */
    char codec[32];          /* decoder name, "" before the first open */
    char transport[8];       /* rtsp: "tcp" or "udp"; else "" */
} vx_video_stats;

/* Consistent snapshot; any thread. */
void vx_video_source_stats(const vx_video_source *src, vx_video_stats *out);
/* The source string for display (password hidden). */
const char *vx_video_source_name(const vx_video_source *src);
const vx_video_spec *vx_video_source_spec(const vx_video_source *src);
/* The substream's own source (same API, owned by and destroyed with `src`),
 * or NULL when none was configured. */
vx_video_source *vx_video_source_substream(vx_video_source *src);

#endif
