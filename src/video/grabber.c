/*
 * Grabber threads: open, demux, decode, pace, publish the newest frame,
 * reconnect.  See vx_video.h.
 *
 * One mutex per source guards everything consumers can see (the newest
 * frame, counters, state); two condition variables hang off it:
 *   frame_cond  consumers wait for a newer frame, the end or death;
 *   ctl_cond    the grabber waits for a pacing deadline, a backoff delay or
 *               (lossless mode) for the previous frame to be taken; destroy
 *               and consumers taking frames signal it.
 * Both use CLOCK_MONOTONIC, like vx_now_s, so wall-clock jumps change no
 * wait.  FFmpeg's own blocking calls (open, probe, read) are bounded by an
 * interrupt callback that checks the stop flag and a per-call deadline, on
 * top of the protocols' socket timeouts, which do not cover every stage
 * (an RTSP server that accepts and then says nothing, a stalled HLS
 * playlist, a V4L2 device without frames).
 *
 * Timestamps: a frame's pts is its stream time rebased into one timeline per
 * source.  Each "segment" (a connection, a pass through a looped file, a
 * backwards jump in the stream) starts one nominal frame after the previous
 * segment's last frame, so pts only grows, and pacing, which compares that
 * timeline with the monotonic clock, runs straight through a loop.
 *
 * All FFmpeg state below the "grabber thread only" line is touched by the
 * grabber thread alone and needs no lock.
 */
#include "video/vx_video.h"

#include <libavcodec/avcodec.h>
#include <libavdevice/avdevice.h>
#include <libavformat/avformat.h>
#include <libavutil/avstring.h>
#include <libavutil/pixdesc.h>
#include <math.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Capture timestamps kept for the fps window: 2 s at 240 fps.  At higher
 * rates the window simply covers less time. */
#define FPS_RING 512

/* Pacing gives up on catching up after this much lag (a slow decoder or a
 * consumer blocking lossless mode) and starts again from now rather than
 * bursting frames; and ignores pts jumps further ahead than LEAD. */
#define PACE_MAX_LAG_S 1.0
#define PACE_MAX_LEAD_S 5.0

/* How often a non-blocking device (V4L2) is polled while it has no frame. */
#define DEVICE_POLL_S 0.005

typedef struct {
    vx_video_frame pub; /* first: the public pointer is the frame */
    atomic_int refs;
    AVFrame *av;
} frame_impl;

/* What a step of the read loop tells its caller: carry on, or why to stop. */
typedef enum { RUN_GO_ON, RUN_STOPPED, RUN_FAILED, RUN_ENDED, RUN_REOPEN } run_result;

struct vx_video_source {
    vx_video_source_opts opts; /* string fields point at the copies below */
    char *source_copy, *substream_copy;
    vx_video_spec spec;
    vx_video_source *sub;
    pthread_t thread;
    int thread_started;

    pthread_mutex_t lock;
    pthread_cond_t frame_cond;
    pthread_cond_t ctl_cond;
    atomic_int stop;
    _Atomic uint64_t io_deadline_ns; /* 0: none */

    /* under lock */
    frame_impl *latest;
    int latest_taken;
    vx_video_stats st; /* counters and fields set by the grabber */
    int dead, ended;
    double created_mono, last_frame_mono;
    double ring[FPS_RING];
    uint64_t ring_count;

    /* grabber thread only */
    AVFormatContext *fmt;
    AVCodecContext *dec;
    int index;
    AVPacket *pkt;
    AVFrame *dframe;
    vx_video_converter *conv;
    int pace;
    double frame_dur;
    double conn_last_good; /* last frame published, or connection open */
    uint64_t pass_frames;
    uint64_t loop_index;
    int unresolved; /* the last open failed on the host name */
    int segment_start;
    int have_last, have_prev_raw, anchored;
    double due_mono; /* when the frame being published was due (paced files), 0 if not paced */
    double last_out, prev_raw, seg_raw, seg_out, anchor_mono, anchor_out;
};

/* ---- small helpers ------------------------------------------------------ */

const char *vx_video_health_name(vx_video_health h)
{
    switch (h) {
    case VX_VIDEO_STARTING: return "starting";
    case VX_VIDEO_HEALTHY: return "healthy";
    case VX_VIDEO_DEGRADED: return "degraded";
    case VX_VIDEO_STALE: return "stale";
    case VX_VIDEO_DEAD: return "dead";
    case VX_VIDEO_ENDED: return "ended";
    }
    return "unknown";
}

void vx_video_source_opts_default(vx_video_source_opts *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->realtime = 1;
    opts->loop = 1;
    opts->open_timeout_s = 10;
    opts->read_timeout_s = 10;
    opts->backoff_base_s = 1;
    opts->backoff_max_s = 300;
    /* Tests of reconnection would otherwise sit through whole seconds of
     * backoff; the schedule's shape (doubling, capped) stays the same. */
    const char *env = getenv("VEROLUX_VIDEO_BACKOFF_S");
    if (env && *env) {
        char *end;
        double base = strtod(env, &end);
        if (!*end && base > 0 && base <= opts->backoff_max_s)
            opts->backoff_base_s = base;
        else
            VX_WARN("video: ignoring VEROLUX_VIDEO_BACKOFF_S=%s (expected seconds in (0, %g])", env,
                    opts->backoff_max_s);
    }
    opts->max_attempts = 10;
    opts->degraded_after_s = 10;
    opts->stale_after_s = 60;
    opts->fps_window_s = 2;
}

static double wall_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Waits on `cond` until the monotonic time `deadline` (seconds, vx_now_s
 * clock) or a signal; callers loop on their own predicate. */
static void cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *lock, double deadline)
{
    double now = vx_now_s();
    if (deadline > now + 1e6) /* "forever" without overflowing time_t */
        deadline = now + 1e6;
    struct timespec ts;
    double sec = floor(deadline);
    ts.tv_sec = (time_t)sec;
    ts.tv_nsec = (long)((deadline - sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L)
        ts.tv_nsec = 999999999L;
    pthread_cond_timedwait(cond, lock, &ts);
}

static int stopping(vx_video_source *src)
{
    return atomic_load(&src->stop);
}

/* Sleeps the grabber until `deadline` unless destroy comes first; returns 1
 * when stopping. */
static int grabber_wait_until(vx_video_source *src, double deadline)
{
    pthread_mutex_lock(&src->lock);
    while (!stopping(src) && vx_now_s() < deadline)
        cond_wait_until(&src->ctl_cond, &src->lock, deadline);
    pthread_mutex_unlock(&src->lock);
    return stopping(src);
}

static void emit(vx_video_source *src, vx_video_event ev, const char *msg)
{
    if (src->opts.on_event)
        src->opts.on_event(src->opts.user, src, ev, msg);
}

/* ---- frames ------------------------------------------------------------- */

vx_video_frame *vx_video_frame_ref(vx_video_frame *frame)
{
    if (frame)
        atomic_fetch_add(&((frame_impl *)frame)->refs, 1);
    return frame;
}

void vx_video_frame_release(vx_video_frame *frame)
{
    if (!frame)
        return;
    frame_impl *fi = (frame_impl *)frame;
    if (atomic_fetch_sub(&fi->refs, 1) == 1) {
        av_frame_free(&fi->av);
        free(fi);
    }
}

/* ---- FFmpeg plumbing ---------------------------------------------------- */

static int interrupt_cb(void *opaque)
{
    vx_video_source *src = opaque;
    if (atomic_load(&src->stop))
        return 1;
    uint64_t deadline = atomic_load(&src->io_deadline_ns);
    return deadline && vx_now_ns() > deadline;
}

static void set_io_deadline(vx_video_source *src, double seconds)
{
    atomic_store(&src->io_deadline_ns, vx_now_ns() + (uint64_t)(seconds * 1e9));
}

static int io_timed_out(vx_video_source *src)
{
    uint64_t deadline = atomic_load(&src->io_deadline_ns);
    return deadline && vx_now_ns() > deadline;
}

/* A corrupt header can claim a huge picture; refuse before allocating. */
static int limited_get_buffer(AVCodecContext *dec, AVFrame *frame, int flags)
{
    if (dec->width <= 0 || dec->height <= 0 || dec->width > VX_IMAGE_MAX_DIM ||
        dec->height > VX_IMAGE_MAX_DIM)
        return AVERROR(ERANGE);
    return avcodec_default_get_buffer2(dec, frame, flags);
}

static void conn_close(vx_video_source *src)
{
    avcodec_free_context(&src->dec);
    avformat_close_input(&src->fmt);
    atomic_store(&src->io_deadline_ns, 0);
    pthread_mutex_lock(&src->lock);
    src->st.connected = 0;
    pthread_mutex_unlock(&src->lock);
}

/* FFmpeg reports a host name that does not resolve as a bare EIO (the
 * reason goes to its log, which is off): after such a failure to open,
 * look the name up once more to say what went wrong.  1 and the resolver's
 * reason when it does not resolve. */
static int host_unresolvable(const vx_video_spec *sp, char *host, size_t size, const char **why)
{
    char proto[16], auth[8], path[8];
    int port = -1;
    av_url_split(proto, sizeof proto, auth, sizeof auth, host, (int)size, &port, path, sizeof path,
                 sp->target);
    if (!*host)
        return 0;
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc == 0) {
        freeaddrinfo(res);
        return 0;
    }
    *why = gai_strerror(rc);
    return 1;
}

/* Turns an FFmpeg failure while `doing` something into our message. */
static vx_err ffmpeg_fail(vx_video_source *src, int ret, const char *doing, const char *transport,
                          double timeout_s)
{
    char via[16] = "";
    if (transport)
        snprintf(via, sizeof via, " over %s", transport);
    const char *name = src->spec.display;
    if (io_timed_out(src))
        return vx_fail(VX_ERR_IO, "%s: timed out%s after %.1f s %s", name, via, timeout_s, doing);
    if (ret == AVERROR(ETIMEDOUT)) /* the protocol's own socket timeout */
        return vx_fail(VX_ERR_IO, "%s: no data%s for %.1f s while %s", name, via, src->opts.read_timeout_s,
                       doing);
    if (ret == AVERROR(ENOENT) && src->spec.kind == VX_VIDEO_WEBCAM)
        return vx_fail(VX_ERR_IO, "%s: no such file or device (%s)", name, src->spec.target);
    if (ret == AVERROR(ENOENT))
        return vx_fail(VX_ERR_IO, "%s: no such file or device", name);
    if (ret == AVERROR(EACCES))
        return vx_fail(VX_ERR_IO, "%s: permission denied", name);
    if (ret == AVERROR_INVALIDDATA)
        return vx_fail(VX_ERR_FORMAT, "%s: not a video FFmpeg can read (%s while %s)", name, av_err2str(ret),
                       doing);
    char host[256];
    const char *why = NULL;
    if (ret == AVERROR(EIO) && (src->spec.kind == VX_VIDEO_RTSP || src->spec.kind == VX_VIDEO_HTTP) &&
        !strcmp(doing, "opening") && host_unresolvable(&src->spec, host, sizeof host, &why)) {
        src->unresolved = 1;
        return vx_fail(VX_ERR_IO, "%s: cannot resolve the host name '%s' (%s)", name, host, why);
    }
    return vx_fail(VX_ERR_IO, "%s: failed%s while %s (%s)", name, via, doing, av_err2str(ret));
}

static vx_err open_input(vx_video_source *src, const char *transport)
{
    const vx_video_spec *sp = &src->spec;
    double timeout = src->opts.open_timeout_s;
    char io_timeout[32];
    snprintf(io_timeout, sizeof io_timeout, "%lld", (long long)(src->opts.read_timeout_s * 1e6));

    AVFormatContext *fmt = avformat_alloc_context();
    if (!fmt)
        return vx_fail(VX_ERR_NOMEM, "%s: out of memory", sp->display);
    fmt->interrupt_callback.callback = interrupt_cb;
    fmt->interrupt_callback.opaque = src;

    const AVInputFormat *ifmt = NULL;
    AVDictionary *opt = NULL;
    char *url = NULL;
    switch (sp->kind) {
    case VX_VIDEO_FILE:
        /* "file:" and the whitelist make any name a plain file name and keep
         * playlists in a file from reaching out to the network. */
        url = av_asprintf("file:%s", sp->target);
        av_dict_set(&opt, "protocol_whitelist", "file", 0);
        av_dict_set(&opt, "pattern_type", "none", 0); /* image2: not a %d pattern */
        break;
    case VX_VIDEO_WEBCAM:
        ifmt = av_find_input_format("v4l2");
        if (!ifmt) {
            avformat_free_context(fmt);
            return vx_fail(VX_ERR_UNSUPPORTED, "%s: this FFmpeg has no V4L2 input", sp->display);
        }
        /* Non-blocking, so that a camera that stops sending cannot hang the
         * thread in an ioctl that no interrupt callback reaches. */
        fmt->flags |= AVFMT_FLAG_NONBLOCK;
        url = av_strdup(sp->target);
        break;
    case VX_VIDEO_RTSP:
        url = av_strdup(sp->target);
        av_dict_set(&opt, "rtsp_transport", transport, 0);
        av_dict_set(&opt, "timeout", io_timeout, 0); /* socket I/O, microseconds */
        av_dict_set(&opt, "protocol_whitelist", "rtsp,rtsps,rtp,srtp,udp,tcp,tls", 0);
        break;
    case VX_VIDEO_HTTP:
        url = av_strdup(sp->target);
        av_dict_set(&opt, "rw_timeout", io_timeout, 0);
        av_dict_set(&opt, "timeout", io_timeout, 0);
        /* HLS segments and keys come over these too; never file:. */
        av_dict_set(&opt, "protocol_whitelist", "http,https,tls,tcp,crypto,data,httpproxy", 0);
        break;
    }
    if (!url) {
        av_dict_free(&opt);
        avformat_free_context(fmt);
        return vx_fail(VX_ERR_NOMEM, "%s: out of memory", sp->display);
    }

    set_io_deadline(src, timeout);
    int ret = avformat_open_input(&fmt, url, ifmt, &opt); /* frees fmt on failure */
    av_dict_free(&opt);
    av_free(url);
    if (ret < 0)
        return ffmpeg_fail(src, ret, "opening", transport, timeout);
    src->fmt = fmt;

    ret = avformat_find_stream_info(fmt, NULL);
    if (ret < 0)
        return ffmpeg_fail(src, ret, "reading the stream info", transport, timeout);

    const AVCodec *codec = NULL;
    int index = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (index == AVERROR_STREAM_NOT_FOUND)
        return vx_fail(VX_ERR_FORMAT, "%s: not a video (FFmpeg reads it as '%s' without a video stream)",
                       sp->display, fmt->iformat->name);
    if (index < 0 || !codec) {
        enum AVCodecID id = index >= 0 ? fmt->streams[index]->codecpar->codec_id : AV_CODEC_ID_NONE;
        return vx_fail(VX_ERR_UNSUPPORTED, "%s: no decoder for the video codec %s", sp->display,
                       avcodec_get_name(id));
    }
    AVStream *st = fmt->streams[index];
    const AVCodecParameters *par = st->codecpar;
    if (par->width > VX_IMAGE_MAX_DIM || par->height > VX_IMAGE_MAX_DIM)
        return vx_fail(VX_ERR_UNSUPPORTED, "%s: video is %dx%d, larger than the limit of %dx%d", sp->display,
                       par->width, par->height, VX_IMAGE_MAX_DIM, VX_IMAGE_MAX_DIM);

    src->dec = avcodec_alloc_context3(codec);
    if (!src->dec)
        return vx_fail(VX_ERR_NOMEM, "%s: out of memory", sp->display);
    ret = avcodec_parameters_to_context(src->dec, par);
    if (ret >= 0) {
        src->dec->pkt_timebase = st->time_base;
        src->dec->thread_count = src->opts.decoder_threads;
        src->dec->get_buffer2 = limited_get_buffer;
        ret = avcodec_open2(src->dec, codec, NULL);
    }
    if (ret < 0)
        return vx_fail(VX_ERR_UNSUPPORTED, "%s: cannot open the %s decoder (%s)", sp->display, codec->name,
                       av_err2str(ret));
    atomic_store(&src->io_deadline_ns, 0);

    src->index = index;
    AVRational rate = av_guess_frame_rate(fmt, st, NULL);
    double fps = rate.num > 0 && rate.den > 0 ? av_q2d(rate) : 0;
    if (!(fps > 0 && fps <= 1000))
        fps = 0;
    src->frame_dur = fps > 0 ? 1.0 / fps : 0.04;
    /* Pace what is a recording: files, and HTTP content with a known length
     * (progressive MP4, HLS VOD).  Live inputs arrive at their own rate. */
    src->pace = src->opts.realtime &&
                (sp->kind == VX_VIDEO_FILE ||
                 (sp->kind == VX_VIDEO_HTTP && fmt->duration != AV_NOPTS_VALUE && fmt->duration > 0));
    src->anchored = 0;
    src->segment_start = 1;
    src->pass_frames = 0;
    src->conn_last_good = vx_now_s();

    pthread_mutex_lock(&src->lock);
    src->st.connected = 1;
    src->st.native_fps = fps;
    snprintf(src->st.codec, sizeof src->st.codec, "%s", codec->name);
    snprintf(src->st.transport, sizeof src->st.transport, "%s", transport ? transport : "");
    pthread_mutex_unlock(&src->lock);
    return VX_OK;
}

/* RTSP: TCP first (works through NAT and firewalls, no loss), then UDP for
 * servers that offer nothing else. */
static vx_err conn_open(vx_video_source *src)
{
    src->unresolved = 0;
    if (src->spec.kind != VX_VIDEO_RTSP)
        return open_input(src, NULL);
    vx_err err = open_input(src, "tcp");
    if (err == VX_OK || stopping(src) || src->unresolved) /* UDP needs the same host */
        return err;
    conn_close(src);
    char tcp_msg[512];
    snprintf(tcp_msg, sizeof tcp_msg, "%s", vx_last_error());
    err = open_input(src, "udp");
    if (err && !stopping(src)) {
        const char *udp_msg = vx_last_error();
        size_t skip = strlen(src->spec.display);
        if (!strncmp(udp_msg, src->spec.display, skip) && !strncmp(udp_msg + skip, ": ", 2))
            udp_msg += skip + 2; /* the name is in the first half already */
        char both[1024];
        snprintf(both, sizeof both, "%s; then %s", tcp_msg, udp_msg);
        return vx_fail(err, "%s", both);
    }
    return err;
}

/* ---- publishing --------------------------------------------------------- */

static double raw_time(vx_video_source *src, const AVFrame *f)
{
    int64_t ts = f->best_effort_timestamp;
    if (ts == AV_NOPTS_VALUE)
        ts = f->pts;
    if (ts == AV_NOPTS_VALUE)
        return NAN;
    return (double)ts * av_q2d(src->fmt->streams[src->index]->time_base);
}

/* Maps the frame's stream time into the source's timeline (see the top). */
static double timeline_pts(vx_video_source *src, const AVFrame *f)
{
    double raw = raw_time(src, f);
    if (isnan(raw))
        raw = src->have_prev_raw ? src->prev_raw + src->frame_dur : 0;
    src->prev_raw = raw;
    src->have_prev_raw = 1;
    if (src->segment_start) {
        src->seg_raw = raw;
        src->seg_out = src->have_last ? src->last_out + src->frame_dur : 0;
        src->segment_start = 0;
    }
    double out = src->seg_out + (raw - src->seg_raw);
    if (src->have_last && out <= src->last_out) {
        src->seg_raw = raw;
        src->seg_out = src->last_out + src->frame_dur;
        out = src->seg_out;
    }
    src->last_out = out;
    src->have_last = 1;
    return out;
}

/* Holds the frame until its due time on the monotonic clock. */
static int pace_frame(vx_video_source *src, double pts)
{
    double now = vx_now_s();
    if (!src->anchored) {
        src->anchor_mono = now;
        src->anchor_out = pts;
        src->anchored = 1;
    }
    double due = src->anchor_mono + (pts - src->anchor_out);
    if (due < now - PACE_MAX_LAG_S || due > now + PACE_MAX_LEAD_S) {
        src->anchor_mono = now;
        src->anchor_out = pts;
        due = now;
    }
    src->due_mono = due;
    return grabber_wait_until(src, due);
}

static void fps_push(vx_video_source *src, double t)
{
    src->ring[src->ring_count % FPS_RING] = t;
    src->ring_count++;
}

/* Capture rate over the frames of the last window: (n - 1) intervals over
 * the time they span.  Zero once frames stop for a whole window. */
static double fps_compute(const vx_video_source *src, double now)
{
    uint64_t n = src->ring_count < FPS_RING ? src->ring_count : FPS_RING;
    if (n < 2)
        return 0;
    double newest = src->ring[(src->ring_count - 1) % FPS_RING];
    double from = now - src->opts.fps_window_s, oldest = newest;
    uint64_t used = 0;
    for (uint64_t i = 0; i < n; i++) {
        double t = src->ring[(src->ring_count - 1 - i) % FPS_RING];
        if (t < from)
            break;
        oldest = t;
        used++;
    }
    if (used < 2 || newest <= oldest)
        return 0;
    return (double)(used - 1) / (newest - oldest);
}

/* Converts, then publishes `f` as the newest frame.  Takes f's content. */
static run_result publish(vx_video_source *src, AVFrame *f, double pts)
{
    frame_impl *fi = calloc(1, sizeof *fi);
    AVFrame *img = av_frame_alloc();
    if (!fi || !img) {
        free(fi);
        av_frame_free(&img);
        av_frame_unref(f);
        vx_fail(VX_ERR_NOMEM, "%s: out of memory for a frame", src->spec.display);
        return RUN_FAILED;
    }
    int decoded_format = f->format;
    vx_err err = vx_video_converter_convert(src->conv, f, img);
    av_frame_unref(f);
    if (err == VX_OK)
        err = vx_video_avframe_view(img, &fi->pub.image);
    if (err) {
        av_frame_free(&img);
        free(fi);
        vx_fail_prefix(err, "%s: ", src->spec.display);
        return RUN_FAILED;
    }
    atomic_init(&fi->refs, 1);
    fi->av = img;
    fi->pub.av = img;
    fi->pub.width = img->width;
    fi->pub.height = img->height;
    fi->pub.decoded_format = decoded_format;
    fi->pub.pts_s = pts;
    fi->pub.loop = src->loop_index;

    frame_impl *old;
    pthread_mutex_lock(&src->lock);
    if (src->opts.lossless)
        while (src->latest && !src->latest_taken && !stopping(src))
            pthread_cond_wait(&src->ctl_cond, &src->lock);
    if (stopping(src)) {
        pthread_mutex_unlock(&src->lock);
        vx_video_frame_release(&fi->pub);
        return RUN_STOPPED;
    }
    double mono = vx_now_s();
    /* A paced frame's moment is when it was due, as a camera would have
     * delivered it; later when the consumer held the grabber back
     * (lossless), so that latency counts the wait. */
    double glass = src->pace && src->due_mono > 0 && src->due_mono < mono ? src->due_mono : mono;
    src->due_mono = 0;
    fi->pub.capture_mono_s = glass;
    fi->pub.capture_wall_s = wall_now_s() - (mono - glass);
    fi->pub.seq = ++src->st.last_seq;
    if (src->latest && !src->latest_taken)
        src->st.frames_dropped++;
    old = src->latest;
    src->latest = fi;
    src->latest_taken = 0;
    src->st.frames_decoded++;
    src->st.failures_in_row = 0;
    src->st.width = img->width;
    src->st.height = img->height;
    src->last_frame_mono = mono;
    fps_push(src, mono);
    pthread_cond_broadcast(&src->frame_cond);
    pthread_mutex_unlock(&src->lock);
    vx_video_frame_release(old ? &old->pub : NULL);

    src->pass_frames++;
    src->conn_last_good = vx_now_s();
    return RUN_GO_ON;
}

static void count_decode_error(vx_video_source *src)
{
    pthread_mutex_lock(&src->lock);
    src->st.decode_errors++;
    pthread_mutex_unlock(&src->lock);
}

/* Sends one packet (NULL: drain) and publishes every frame that comes out.
 * Broken packets are counted and skipped: one bad frame must not cost a
 * reconnect. */
static run_result decode(vx_video_source *src, const AVPacket *pkt)
{
    int ret = avcodec_send_packet(src->dec, pkt);
    if (ret < 0 && ret != AVERROR(EAGAIN) && ret != AVERROR_EOF) {
        if (ret == AVERROR(ENOMEM)) {
            vx_fail(VX_ERR_NOMEM, "%s: out of memory decoding", src->spec.display);
            return RUN_FAILED;
        }
        count_decode_error(src);
    }
    for (;;) {
        ret = avcodec_receive_frame(src->dec, src->dframe);
        if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF)
            return RUN_GO_ON;
        if (ret < 0) {
            count_decode_error(src);
            if (ret == AVERROR_INVALIDDATA)
                continue;
            return RUN_GO_ON;
        }
        if (src->dframe->decode_error_flags || (src->dframe->flags & AV_FRAME_FLAG_CORRUPT))
            count_decode_error(src);
        double pts = timeline_pts(src, src->dframe);
        if (src->pace && pace_frame(src, pts)) {
            av_frame_unref(src->dframe);
            return RUN_STOPPED;
        }
        run_result r = publish(src, src->dframe, pts);
        if (r != RUN_GO_ON)
            return r;
    }
}

/* End of a file: drain, then loop (seek back, or reopen when the demuxer
 * cannot seek) or end. */
static run_result end_of_file(vx_video_source *src)
{
    run_result r = decode(src, NULL);
    if (r != RUN_GO_ON)
        return r;
    if (src->pass_frames == 0) {
        vx_fail(VX_ERR_FORMAT, "%s: no decodable video frame in the whole file", src->spec.display);
        return RUN_FAILED;
    }
    if (!src->opts.loop)
        return RUN_ENDED;
    AVStream *st = src->fmt->streams[src->index];
    int64_t start = st->start_time != AV_NOPTS_VALUE ? st->start_time : 0;
    if (av_seek_frame(src->fmt, src->index, start, AVSEEK_FLAG_BACKWARD) < 0)
        return RUN_REOPEN;
    avcodec_flush_buffers(src->dec);
    src->pass_frames = 0;
    src->segment_start = 1;
    src->loop_index++;
    pthread_mutex_lock(&src->lock);
    src->st.loops++;
    pthread_mutex_unlock(&src->lock);
    return RUN_GO_ON;
}

static run_result conn_run(vx_video_source *src)
{
    double read_timeout = src->opts.read_timeout_s;
    double last_packet = vx_now_s();
    for (;;) {
        if (stopping(src))
            return RUN_STOPPED;
        set_io_deadline(src, read_timeout);
        int ret = av_read_frame(src->fmt, src->pkt);
        if (stopping(src)) {
            av_packet_unref(src->pkt);
            return RUN_STOPPED;
        }
        double now = vx_now_s();
        if (ret == AVERROR(EAGAIN)) { /* non-blocking device without a frame */
            if (now - last_packet > read_timeout) {
                vx_fail(VX_ERR_IO, "%s: no data for %.1f s", src->spec.display, read_timeout);
                return RUN_FAILED;
            }
            if (grabber_wait_until(src, now + DEVICE_POLL_S))
                return RUN_STOPPED;
            continue;
        }
        if (ret == AVERROR_EOF) {
            if (src->spec.kind != VX_VIDEO_FILE) {
                run_result r = decode(src, NULL);
                if (r != RUN_GO_ON)
                    return r;
                vx_fail(VX_ERR_IO, "%s: the stream ended", src->spec.display);
                return RUN_FAILED;
            }
            run_result r = end_of_file(src);
            if (r != RUN_GO_ON)
                return r;
            last_packet = vx_now_s();
            continue;
        }
        if (ret < 0) {
            ffmpeg_fail(src, ret, "reading", NULL, read_timeout);
            return RUN_FAILED;
        }
        last_packet = now;
        if (src->pkt->stream_index == src->index) {
            run_result r = decode(src, src->pkt);
            av_packet_unref(src->pkt);
            if (r != RUN_GO_ON)
                return r;
        } else {
            av_packet_unref(src->pkt);
        }
        /* Packets keep coming but nothing decodes: as good as no data. */
        if (vx_now_s() - src->conn_last_good > read_timeout) {
            vx_fail(VX_ERR_FORMAT, "%s: no decodable frame for %.1f s", src->spec.display, read_timeout);
            return RUN_FAILED;
        }
    }
}

/* ---- the grabber thread ------------------------------------------------- */

static void opened_message(vx_video_source *src, char *buf, size_t size)
{
    const AVCodecContext *d = src->dec;
    const char *pix = av_get_pix_fmt_name(d->pix_fmt);
    double fps;
    char transport[8];
    pthread_mutex_lock(&src->lock);
    fps = src->st.native_fps;
    snprintf(transport, sizeof transport, "%s", src->st.transport);
    pthread_mutex_unlock(&src->lock);
    snprintf(buf, size, "%s: %s%s%s, %s %dx%d %s, %.3g fps", src->spec.display, src->fmt->iformat->name,
             *transport ? " over " : "", transport, d->codec->name, d->width, d->height, pix ? pix : "?",
             fps);
}

static void *grab_main(void *arg)
{
    vx_video_source *src = arg;
    int first = 1, reopen = 0;
    while (!stopping(src)) {
        if (!first && !reopen) {
            pthread_mutex_lock(&src->lock);
            src->st.reconnects++;
            pthread_mutex_unlock(&src->lock);
        }
        first = 0;
        int was_reopen = reopen;
        reopen = 0;

        run_result r = RUN_FAILED;
        vx_err err = conn_open(src);
        if (stopping(src)) {
            r = RUN_STOPPED;
        } else if (err == VX_OK) {
            if (was_reopen) {
                src->loop_index++;
                src->segment_start = 1;
                pthread_mutex_lock(&src->lock);
                src->st.loops++;
                pthread_mutex_unlock(&src->lock);
            } else {
                char msg[512];
                opened_message(src, msg, sizeof msg);
                VX_DEBUG("video: opened %s", msg);
                emit(src, VX_VIDEO_EVENT_OPENED, msg);
            }
            r = conn_run(src);
        }
        conn_close(src);
        if (r == RUN_STOPPED)
            break;
        if (r == RUN_REOPEN) {
            reopen = 1;
            continue;
        }
        if (r == RUN_ENDED) {
            pthread_mutex_lock(&src->lock);
            src->ended = 1;
            pthread_cond_broadcast(&src->frame_cond);
            pthread_mutex_unlock(&src->lock);
            emit(src, VX_VIDEO_EVENT_ENDED, src->spec.display);
            break;
        }

        char msg[512];
        snprintf(msg, sizeof msg, "%s", vx_last_error());
        pthread_mutex_lock(&src->lock);
        snprintf(src->st.last_error, sizeof src->st.last_error, "%s", msg);
        src->st.failures++;
        int n = ++src->st.failures_in_row;
        src->dead = n >= src->opts.max_attempts;
        if (src->dead)
            pthread_cond_broadcast(&src->frame_cond);
        pthread_mutex_unlock(&src->lock);
        VX_WARN("video: %s", msg);
        emit(src, VX_VIDEO_EVENT_FAILED, msg);
        if (n >= src->opts.max_attempts) {
            char dead[640];
            snprintf(dead, sizeof dead, "%s: giving up after %d failed attempt%s in a row", src->spec.display,
                     n, n == 1 ? "" : "s");
            VX_ERROR("video: %s", dead);
            emit(src, VX_VIDEO_EVENT_DEAD, dead);
            break;
        }
        double delay = src->opts.backoff_base_s * ldexp(1.0, n - 1 < 60 ? n - 1 : 60);
        if (delay > src->opts.backoff_max_s)
            delay = src->opts.backoff_max_s;
        if (grabber_wait_until(src, vx_now_s() + delay))
            break;
    }
    return NULL;
}

/* ---- public API --------------------------------------------------------- */

static vx_err check_opts(const vx_video_source_opts *o)
{
    if (!o || !o->source)
        return vx_fail(VX_ERR_INVALID, "video source options: no source given");
#define POSITIVE(field)                                                                                      \
    if (!(o->field > 0) || !isfinite(o->field))                                                              \
        return vx_fail(VX_ERR_INVALID,                                                                       \
                       "video source options: " #field " must be a positive number of seconds, "             \
                       "got %g",                                                                             \
                       o->field);
    POSITIVE(open_timeout_s)
    POSITIVE(read_timeout_s)
    POSITIVE(backoff_base_s)
    POSITIVE(backoff_max_s)
    POSITIVE(degraded_after_s)
    POSITIVE(stale_after_s)
    POSITIVE(fps_window_s)
#undef POSITIVE
    if (o->backoff_max_s < o->backoff_base_s)
        return vx_fail(VX_ERR_INVALID,
                       "video source options: backoff_max_s (%g) is below backoff_base_s (%g)",
                       o->backoff_max_s, o->backoff_base_s);
    if (o->stale_after_s < o->degraded_after_s)
        return vx_fail(VX_ERR_INVALID,
                       "video source options: stale_after_s (%g) is below degraded_after_s (%g)",
                       o->stale_after_s, o->degraded_after_s);
    if (o->max_attempts < 1)
        return vx_fail(VX_ERR_INVALID, "video source options: max_attempts must be at least 1, got %d",
                       o->max_attempts);
    if (o->decoder_threads < 0 || o->decoder_threads > 64)
        return vx_fail(VX_ERR_INVALID, "video source options: decoder_threads must be in 0..64, got %d",
                       o->decoder_threads);
    return VX_OK;
}

static pthread_once_t devices_once = PTHREAD_ONCE_INIT;

static void devices_init(void)
{
    avdevice_register_all();
}

static void source_free(vx_video_source *src)
{
    vx_video_frame_release(src->latest ? &src->latest->pub : NULL);
    av_packet_free(&src->pkt);
    av_frame_free(&src->dframe);
    vx_video_converter_destroy(src->conv);
    pthread_cond_destroy(&src->frame_cond);
    pthread_cond_destroy(&src->ctl_cond);
    pthread_mutex_destroy(&src->lock);
    free(src->source_copy);
    free(src->substream_copy);
    free(src);
}

vx_err vx_video_source_create(const vx_video_source_opts *opts, vx_video_source **out)
{
    *out = NULL;
    vx_err err = check_opts(opts);
    if (err)
        return err;
    vx_video_spec spec;
    err = vx_video_source_parse(opts->source, &spec);
    if (err)
        return err;
    if (opts->substream) {
        vx_video_spec sub_spec;
        err = vx_video_source_parse(opts->substream, &sub_spec);
        if (err)
            return vx_fail_prefix(err, "substream of %s: ", spec.display);
    }
    vx_video_ffmpeg_quiet();
    pthread_once(&devices_once, devices_init);

    vx_video_source *src = calloc(1, sizeof *src);
    if (!src)
        return vx_fail(VX_ERR_NOMEM, "%s: out of memory", spec.display);
    src->spec = spec;
    src->opts = *opts;
    src->source_copy = strdup(opts->source);
    src->substream_copy = opts->substream ? strdup(opts->substream) : NULL;
    src->opts.source = src->source_copy;
    src->opts.substream = src->substream_copy;
    src->pkt = av_packet_alloc();
    src->dframe = av_frame_alloc();
    vx_video_converter_create(&src->conv);

    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_mutex_init(&src->lock, NULL);
    pthread_cond_init(&src->frame_cond, &attr);
    pthread_cond_init(&src->ctl_cond, &attr);
    pthread_condattr_destroy(&attr);
    src->created_mono = vx_now_s();
    if (!src->source_copy || (opts->substream && !src->substream_copy) || !src->pkt || !src->dframe ||
        !src->conv) {
        source_free(src);
        return vx_fail(VX_ERR_NOMEM, "%s: out of memory", spec.display);
    }

    if (opts->substream) {
        vx_video_source_opts sub_opts = src->opts;
        sub_opts.source = src->substream_copy;
        sub_opts.substream = NULL;
        err = vx_video_source_create(&sub_opts, &src->sub);
        if (err) {
            source_free(src);
            return vx_fail_prefix(err, "substream of %s: ", spec.display);
        }
    }

    int ret = pthread_create(&src->thread, NULL, grab_main, src);
    if (ret) {
        vx_video_source_destroy(src->sub);
        source_free(src);
        return vx_fail(VX_ERR_NOMEM, "%s: cannot start the grabber thread (%s)", spec.display, strerror(ret));
    }
    src->thread_started = 1;
    *out = src;
    return VX_OK;
}

void vx_video_source_destroy(vx_video_source *src)
{
    if (!src)
        return;
    vx_video_source_destroy(src->sub);
    pthread_mutex_lock(&src->lock);
    atomic_store(&src->stop, 1);
    pthread_cond_broadcast(&src->ctl_cond);
    pthread_cond_broadcast(&src->frame_cond);
    pthread_mutex_unlock(&src->lock);
    if (src->thread_started)
        pthread_join(src->thread, NULL);
    source_free(src);
}

vx_err vx_video_source_wait(vx_video_source *src, uint64_t after_seq, double timeout_s, vx_video_frame **out)
{
    *out = NULL;
    double deadline = vx_now_s() + (timeout_s > 0 ? timeout_s : 0);
    pthread_mutex_lock(&src->lock);
    for (;;) {
        if (src->latest && src->latest->pub.seq > after_seq) {
            frame_impl *fi = src->latest;
            atomic_fetch_add(&fi->refs, 1);
            if (!src->latest_taken) {
                src->latest_taken = 1;
                src->st.frames_taken++;
                if (src->opts.lossless)
                    pthread_cond_broadcast(&src->ctl_cond);
            }
            pthread_mutex_unlock(&src->lock);
            *out = &fi->pub;
            return VX_OK;
        }
        if (src->dead || src->ended) {
            char why[300];
            if (src->dead)
                snprintf(why, sizeof why, "dead after %d failed attempt%s in a row: %s",
                         src->st.failures_in_row, src->st.failures_in_row == 1 ? "" : "s",
                         src->st.last_error);
            else
                snprintf(why, sizeof why, "end of the file, no frame after #%llu",
                         (unsigned long long)after_seq);
            pthread_mutex_unlock(&src->lock);
            return vx_fail(VX_ERR_UNAVAILABLE, "video source %s: %s", src->spec.display, why);
        }
        if (stopping(src) || vx_now_s() >= deadline)
            break;
        cond_wait_until(&src->frame_cond, &src->lock, deadline);
    }
    pthread_mutex_unlock(&src->lock);
    return VX_OK;
}

void vx_video_source_stats(const vx_video_source *csrc, vx_video_stats *out)
{
    vx_video_source *src = (vx_video_source *)csrc; /* the lock is not part of the value */
    pthread_mutex_lock(&src->lock);
    *out = src->st;
    double now = vx_now_s();
    int have_frame = src->last_frame_mono > 0;
    double age = now - (have_frame ? src->last_frame_mono : src->created_mono);
    out->last_frame_age_s = have_frame ? age : -1;
    out->capture_fps = fps_compute(src, now);
    if (src->dead)
        out->health = VX_VIDEO_DEAD;
    else if (src->ended)
        out->health = VX_VIDEO_ENDED;
    else if (age > src->opts.stale_after_s)
        out->health = VX_VIDEO_STALE;
    else if (age > src->opts.degraded_after_s || src->st.failures_in_row > 0)
        out->health = VX_VIDEO_DEGRADED;
    else
        out->health = have_frame ? VX_VIDEO_HEALTHY : VX_VIDEO_STARTING;
    pthread_mutex_unlock(&src->lock);
}

const char *vx_video_source_name(const vx_video_source *src)
{
    return src->spec.display;
}

const vx_video_spec *vx_video_source_spec(const vx_video_source *src)
{
    return &src->spec;
}

vx_video_source *vx_video_source_substream(vx_video_source *src)
{
    return src->sub;
}
