/*
 * vx_video_source end to end with real FFmpeg and no network: the test writes
 * its own small videos (64x48, 10 fps, frame i painted with luma 16 + 10 * i,
 * so every delivered frame says which one it is), damages some of them, and
 * serves others over HTTP or leaves a loopback socket silent, then checks
 * delivery order, pacing, looping, drops, health, reconnects and shutdown.
 *
 * Synchronisation is by the API itself (vx_video_source_wait) and by the
 * event callback signalling a condition variable; timed waits appear only
 * where the subject is time (health thresholds), and timing assertions are
 * loose (+-40 %).  vtest.avi from $VEROLUX_CACHE/samples must be present
 * (scripts/fetch-samples).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/pixdesc.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "video/vx_video.h"

#define NFRAMES 20

static char tmpdir[256];
static char created[64][512];
static int ncreated;
static char avi_mjpeg[512], mkv_mpeg4[512], short_avi[512], sub_avi[512], slow_mkv[512], mp4_file[512];

static const char *tmp_path(const char *name)
{
    assert_true(ncreated < 64);
    char *p = created[ncreated++];
    snprintf(p, sizeof created[0], "%s/%s", tmpdir, name);
    return p;
}

static int level_of(int index)
{
    return 16 + 10 * (index % NFRAMES);
}

/* ---- writing test videos ------------------------------------------------ */

typedef struct {
    const char *muxer;
    enum AVCodecID codec;
    enum AVPixelFormat pix;
    int w, h;
    AVRational time_base;
    int pts_step; /* in time_base units between frames */
    int frames;
    int b_frames;
    const char *movflags;
} video_desc;

static void encode_and_write(AVFormatContext *oc, AVCodecContext *enc, AVStream *st, AVFrame *frame,
                             AVPacket *pkt)
{
    assert_true(avcodec_send_frame(enc, frame) >= 0);
    while (avcodec_receive_packet(enc, pkt) >= 0) {
        av_packet_rescale_ts(pkt, enc->time_base, st->time_base);
        pkt->stream_index = st->index;
        assert_true(av_interleaved_write_frame(oc, pkt) >= 0);
    }
}

static void write_video(const char *path, const video_desc *d)
{
    AVFormatContext *oc = NULL;
    assert_true(avformat_alloc_output_context2(&oc, NULL, d->muxer, path) >= 0);
    const AVCodec *codec = avcodec_find_encoder(d->codec);
    assert_non_null(codec);
    AVStream *st = avformat_new_stream(oc, NULL);
    AVCodecContext *enc = avcodec_alloc_context3(codec);
    assert_non_null(st);
    assert_non_null(enc);
    enc->width = d->w;
    enc->height = d->h;
    enc->pix_fmt = d->pix;
    enc->time_base = d->time_base;
    enc->framerate = av_inv_q(av_mul_q(d->time_base, (AVRational){d->pts_step, 1}));
    enc->gop_size = 6;
    enc->max_b_frames = d->b_frames;
    enc->flags |= AV_CODEC_FLAG_QSCALE;
    enc->global_quality = FF_QP2LAMBDA * 2;
    if (d->pix == AV_PIX_FMT_YUVJ420P || d->pix == AV_PIX_FMT_YUVJ422P)
        enc->color_range = AVCOL_RANGE_JPEG;
    if (oc->oformat->flags & AVFMT_GLOBALHEADER)
        enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    assert_true(avcodec_open2(enc, codec, NULL) >= 0);
    assert_true(avcodec_parameters_from_context(st->codecpar, enc) >= 0);
    st->time_base = enc->time_base;
    st->avg_frame_rate = enc->framerate;
    assert_true(avio_open(&oc->pb, path, AVIO_FLAG_WRITE) >= 0);
    AVDictionary *opts = NULL;
    if (d->movflags)
        av_dict_set(&opts, "movflags", d->movflags, 0);
    assert_true(avformat_write_header(oc, &opts) >= 0);
    av_dict_free(&opts);

    AVFrame *frame = av_frame_alloc();
    AVPacket *pkt = av_packet_alloc();
    frame->format = d->pix;
    frame->width = d->w;
    frame->height = d->h;
    frame->color_range = enc->color_range;
    assert_true(av_frame_get_buffer(frame, 0) >= 0);
    int chroma_h = d->pix == AV_PIX_FMT_YUVJ422P ? d->h : (d->h + 1) / 2;
    for (int i = 0; i < d->frames; i++) {
        assert_true(av_frame_make_writable(frame) >= 0);
        memset(frame->data[0], level_of(i), (size_t)frame->linesize[0] * (size_t)d->h);
        memset(frame->data[1], 128, (size_t)frame->linesize[1] * (size_t)chroma_h);
        memset(frame->data[2], 128, (size_t)frame->linesize[2] * (size_t)chroma_h);
        frame->pts = (int64_t)i * d->pts_step;
        frame->quality = enc->global_quality;
        encode_and_write(oc, enc, st, frame, pkt);
    }
    encode_and_write(oc, enc, st, NULL, pkt);
    assert_true(av_write_trailer(oc) >= 0);
    avio_closep(&oc->pb);
    av_packet_free(&pkt);
    av_frame_free(&frame);
    avcodec_free_context(&enc);
    avformat_free_context(oc);
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n > 0);
    rewind(f);
    uint8_t *buf = malloc((size_t)n);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void write_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (len)
        assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* Offsets of the AVI video chunks ("00dc" + le32 size + data). */
static int avi_chunks(const uint8_t *buf, size_t len, size_t *offs, int max)
{
    int n = 0;
    for (size_t i = 0; i + 8 <= len && n < max; i++)
        if (!memcmp(buf + i, "00dc", 4)) {
            uint32_t size = (uint32_t)buf[i + 4] | (uint32_t)buf[i + 5] << 8 | (uint32_t)buf[i + 6] << 16 |
                            (uint32_t)buf[i + 7] << 24;
            if (size > 100 && i + 8 + size <= len) { /* a frame, not an index entry */
                offs[n++] = i;
                i += 8 + size - 1;
            }
        }
    return n;
}

static uint32_t avi_chunk_size(const uint8_t *buf, size_t off)
{
    return (uint32_t)buf[off + 4] | (uint32_t)buf[off + 5] << 8 | (uint32_t)buf[off + 6] << 16 |
           (uint32_t)buf[off + 7] << 24;
}

/* ---- consuming ---------------------------------------------------------- */

/* Which test frame this is: mean luma back to the index. */
static int frame_index(const vx_video_frame *f)
{
    const vx_image *img = &f->image;
    assert_int_equal(img->format, VX_PIX_YUV420P);
    uint64_t sum = 0;
    for (int y = 0; y < img->height; y++)
        for (int x = 0; x < img->width; x++)
            sum += img->planes[0][(size_t)y * (size_t)img->strides[0] + (size_t)x];
    double mean = (double)sum / (img->width * img->height);
    int index = (int)lround((mean - 16) / 10);
    if (fabs(mean - level_of(index)) > 3)
        fail_msg("frame #%llu: mean luma %.1f is no test frame", (unsigned long long)f->seq, mean);
    return index;
}

static vx_video_source *start(const vx_video_source_opts *o)
{
    vx_video_source *src = NULL;
    if (vx_video_source_create(o, &src) != VX_OK)
        fail_msg("create %s: %s", o->source, vx_last_error());
    return src;
}

static vx_video_frame *next_frame(vx_video_source *src, uint64_t after, double timeout)
{
    vx_video_frame *f = NULL;
    if (vx_video_source_wait(src, after, timeout, &f) != VX_OK)
        fail_msg("wait after #%llu: %s", (unsigned long long)after, vx_last_error());
    if (!f) {
        vx_video_stats st;
        vx_video_source_stats(src, &st);
        fail_msg("no frame after #%llu within %.0f s (health %s, last error: %s)", (unsigned long long)after,
                 timeout, vx_video_health_name(st.health), st.last_error);
    }
    return f;
}

static vx_video_source_opts fast_opts(const char *source)
{
    vx_video_source_opts o;
    vx_video_source_opts_default(&o);
    o.source = source;
    o.realtime = 0;
    o.lossless = 1;
    return o;
}

/* ---- events --------------------------------------------------------------- */

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int count[4];
    char msg[4][1024];
} events;

static void events_init(events *e)
{
    memset(e, 0, sizeof *e);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->cond, &attr);
    pthread_condattr_destroy(&attr);
}

static void events_destroy(events *e)
{
    pthread_cond_destroy(&e->cond);
    pthread_mutex_destroy(&e->lock);
}

static void on_event(void *user, vx_video_source *src, vx_video_event ev, const char *msg)
{
    events *e = user;
    vx_video_stats st;
    vx_video_source_stats(src, &st); /* allowed from the callback */
    pthread_mutex_lock(&e->lock);
    e->count[ev]++;
    snprintf(e->msg[ev], sizeof e->msg[ev], "%s", msg);
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->lock);
}

/* Waits until event `ev` happened `n` times; fails after `timeout` s. */
static void wait_event(events *e, vx_video_event ev, int n, double timeout)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)timeout;
    pthread_mutex_lock(&e->lock);
    while (e->count[ev] < n)
        if (pthread_cond_timedwait(&e->cond, &e->lock, &ts) == ETIMEDOUT)
            break;
    int got = e->count[ev];
    pthread_mutex_unlock(&e->lock);
    if (got < n)
        fail_msg("event %d seen %d times, expected %d within %.0f s", (int)ev, got, n, timeout);
}

/* ---- tests: files ------------------------------------------------------- */

static void every_frame(const char *path, enum AVPixelFormat decoded)
{
    vx_video_source_opts o = fast_opts(path);
    o.loop = 0;
    events ev;
    events_init(&ev);
    o.on_event = on_event;
    o.user = &ev;
    vx_video_source *src = start(&o);
    uint64_t last = 0;
    int n = 0;
    for (;;) {
        vx_video_frame *f = NULL;
        vx_err err = vx_video_source_wait(src, last, 10, &f);
        if (err == VX_ERR_UNAVAILABLE)
            break;
        if (err || !f)
            fail_msg("frame %d: %s", n, err ? vx_last_error() : "timed out");
        assert_int_equal(f->seq, last + 1);
        assert_int_equal(frame_index(f), n);
        if (fabs(f->pts_s - n * 0.1) > 0.011)
            fail_msg("frame %d: pts %.4f, expected %.1f", n, f->pts_s, n * 0.1);
        assert_int_equal(f->width, 64);
        assert_int_equal(f->height, 48);
        assert_int_equal(f->image.width, 64);
        assert_int_equal(f->loop, 0);
        assert_int_equal(f->decoded_format, decoded);
        /* Zero copy: the view is the decoder's own buffer. */
        assert_ptr_equal(f->image.planes[0], f->av->data[0]);
        assert_true(f->capture_mono_s > 0 && f->capture_mono_s <= vx_now_s());
        assert_true(f->capture_wall_s > 1.6e9);
        last = f->seq;
        n++;
        vx_video_frame_release(f);
    }
    assert_non_null(strstr(vx_last_error(), "end of the file"));
    assert_int_equal(n, NFRAMES);

    vx_video_stats st;
    vx_video_source_stats(src, &st);
    assert_int_equal(st.health, VX_VIDEO_ENDED);
    assert_int_equal(st.frames_decoded, NFRAMES);
    assert_int_equal(st.frames_dropped, 0);
    assert_int_equal(st.frames_taken, NFRAMES);
    assert_int_equal(st.decode_errors, 0);
    assert_int_equal(st.failures, 0);
    assert_int_equal(st.loops, 0);
    assert_int_equal(st.last_seq, NFRAMES);
    assert_int_equal(st.width, 64);
    assert_true(fabs(st.native_fps - 10) < 0.01);
    assert_true(st.capture_fps > 0);
    assert_true(st.last_frame_age_s >= 0);
    wait_event(&ev, VX_VIDEO_EVENT_ENDED, 1, 10);
    assert_int_equal(ev.count[VX_VIDEO_EVENT_OPENED], 1);
    assert_non_null(strstr(ev.msg[VX_VIDEO_EVENT_OPENED], "64x48"));
    assert_non_null(strstr(ev.msg[VX_VIDEO_EVENT_OPENED], st.codec));
    assert_int_equal(ev.count[VX_VIDEO_EVENT_FAILED], 0);
    vx_video_source_destroy(src);
    events_destroy(&ev);
}

static void test_every_frame_avi_mjpeg(void **state)
{
    (void)state;
    every_frame(avi_mjpeg, AV_PIX_FMT_YUVJ420P);
}

/* MPEG-4 with B-frames: decode order differs from display order. */
static void test_every_frame_mkv_mpeg4(void **state)
{
    (void)state;
    every_frame(mkv_mpeg4, AV_PIX_FMT_YUV420P);
}

static void test_loop_pts(void **state)
{
    (void)state;
    vx_video_source_opts o = fast_opts(avi_mjpeg);
    vx_video_source *src = start(&o);
    uint64_t last = 0;
    double prev_pts = -1;
    for (int k = 0; k < 2 * NFRAMES + 10; k++) {
        vx_video_frame *f = next_frame(src, last, 10);
        assert_int_equal(f->seq, (uint64_t)k + 1);
        assert_int_equal(frame_index(f), k % NFRAMES);
        assert_int_equal(f->loop, (uint64_t)(k / NFRAMES));
        assert_true(f->pts_s > prev_pts);
        /* One timeline: the second pass starts a frame after the first ends. */
        if (fabs(f->pts_s - k * 0.1) > 0.011)
            fail_msg("frame %d: pts %.4f, expected %.1f", k, f->pts_s, k * 0.1);
        prev_pts = f->pts_s;
        last = f->seq;
        vx_video_frame_release(f);
    }
    vx_video_stats st;
    vx_video_source_stats(src, &st);
    assert_true(st.loops >= 2);
    assert_int_equal(st.frames_dropped, 0);
    assert_int_equal(st.failures, 0);
    vx_video_source_destroy(src);
}

/* 8 frames at 10 fps, looped: frames arrive at ~10 fps by their capture
 * times, across the loop too, and the consumer waits in real time. */
static void test_realtime_pacing(void **state)
{
    (void)state;
    vx_video_source_opts o;
    vx_video_source_opts_default(&o);
    o.source = short_avi;
    vx_video_source *src = start(&o);
    vx_video_frame *a = next_frame(src, 0, 10);
    double t0 = vx_now_s();
    vx_video_frame *b = vx_video_frame_ref(a);
    while (b->seq < a->seq + 12) {
        vx_video_frame *f = next_frame(src, b->seq, 10);
        vx_video_frame_release(b);
        b = f;
    }
    double waited = vx_now_s() - t0;
    double frames = (double)(b->seq - a->seq);
    double rate = frames / (b->capture_mono_s - a->capture_mono_s);
    if (rate < 6 || rate > 14)
        fail_msg("capture rate %.2f fps, expected 10 +-40%%", rate);
    if (waited < 0.6 * frames * 0.1)
        fail_msg("%.0f frames came in %.2f s, expected about %.1f s", frames, waited, frames * 0.1);
    /* pts grows one nominal frame per frame, through the loop. */
    if (fabs((b->pts_s - a->pts_s) / frames - 0.1) > 0.002)
        fail_msg("pts went from %.3f to %.3f over %.0f frames", a->pts_s, b->pts_s, frames);
    vx_video_stats st;
    vx_video_source_stats(src, &st);
    if (st.capture_fps < 6 || st.capture_fps > 14)
        fail_msg("capture fps %.2f, expected 10 +-40%%", st.capture_fps);
    assert_true(st.loops >= 1);
    assert_int_equal(st.health, VX_VIDEO_HEALTHY);
    vx_video_frame_release(a);
    vx_video_frame_release(b);
    vx_video_source_destroy(src);
}

/* Without realtime, 6 s of video (looped) arrive much faster than 6 s. */
static void test_fast_mode_is_fast(void **state)
{
    (void)state;
    vx_video_source_opts o = fast_opts(short_avi);
    vx_video_source *src = start(&o);
    double t0 = vx_now_s();
    uint64_t last = 0;
    for (int k = 0; k < 60; k++) {
        vx_video_frame *f = next_frame(src, last, 10);
        last = f->seq;
        vx_video_frame_release(f);
    }
    double took = vx_now_s() - t0;
    if (took > 3)
        fail_msg("60 frames at 10 fps took %.2f s without realtime pacing", took);
    vx_video_source_destroy(src);
}

/* A consumer that only wants every 4th frame: the grabber keeps decoding at
 * full speed, the frames in between are dropped and counted, and every frame
 * handed out is the newest one (its content matches its sequence number; the
 * last one is frame 20). */
static void test_slow_consumer(void **state)
{
    (void)state;
    vx_video_source_opts o = fast_opts(avi_mjpeg);
    o.lossless = 0;
    o.loop = 0;
    vx_video_source *src = start(&o);
    uint64_t last = 0;
    int taken = 0;
    for (;;) {
        uint64_t after = taken ? last + 3 : 0;
        vx_video_frame *f = NULL;
        vx_err err = vx_video_source_wait(src, after, 10, &f);
        if (err == VX_ERR_UNAVAILABLE)
            break;
        assert_int_equal(err, VX_OK);
        assert_non_null(f);
        assert_true(f->seq > after);
        assert_int_equal(frame_index(f), (int)f->seq - 1);
        last = f->seq;
        taken++;
        vx_video_frame_release(f);
    }
    if (last < NFRAMES) {
        vx_video_frame *f = next_frame(src, last, 0);
        assert_int_equal(f->seq, NFRAMES);
        assert_int_equal(frame_index(f), NFRAMES - 1);
        last = f->seq;
        taken++;
        vx_video_frame_release(f);
    }
    vx_video_stats st;
    vx_video_source_stats(src, &st);
    assert_int_equal(st.frames_decoded, NFRAMES);
    assert_int_equal(st.frames_taken, (uint64_t)taken);
    assert_int_equal(st.frames_dropped, (uint64_t)(NFRAMES - taken));
    assert_true(taken <= 6);
    assert_true(st.frames_dropped >= 14);
    /* Nothing newer than the newest. */
    vx_video_frame *f = (vx_video_frame *)1;
    assert_int_equal(vx_video_source_wait(src, last, 0, &f), VX_ERR_UNAVAILABLE);
    assert_null(f);
    vx_video_source_destroy(src);
}

/* Frames are references: one kept by the consumer stays intact while the
 * grabber moves on, and after the source is gone. */
static void test_frame_outlives_source(void **state)
{
    (void)state;
    vx_video_source_opts o = fast_opts(avi_mjpeg);
    o.lossless = 0;
    vx_video_source *src = start(&o);
    vx_video_frame *f = next_frame(src, 0, 10);
    int index = frame_index(f);
    vx_video_frame *g = vx_video_frame_ref(f);
    vx_video_frame_release(f);
    vx_video_frame *h = next_frame(src, g->seq + 25, 10); /* the grabber went around the loop */
    vx_video_frame_release(h);
    vx_video_source_destroy(src);
    assert_int_equal(frame_index(g), index);
    vx_video_frame_release(g);
    vx_video_frame_release(NULL);
}

/* ---- tests: failures ---------------------------------------------------- */

static void test_not_a_video(void **state)
{
    (void)state;
    const char *path = tmp_path("notvideo.avi");
    char text[2000] = "";
    for (int i = 0; i < 40; i++)
        strcat(text, "This is not a video file.\n");
    write_bytes(path, text, strlen(text));

    events ev;
    events_init(&ev);
    vx_video_source_opts o;
    vx_video_source_opts_default(&o);
    o.source = path;
    o.backoff_base_s = 0.001;
    o.backoff_max_s = 0.004;
    o.max_attempts = 3;
    o.on_event = on_event;
    o.user = &ev;
    vx_video_source *src = start(&o);
    vx_video_frame *f = NULL;
    assert_int_equal(vx_video_source_wait(src, 0, 20, &f), VX_ERR_UNAVAILABLE);
    assert_null(f);
    const char *msg = vx_last_error();
    if (!strstr(msg, path) || !strstr(msg, "dead") || !strstr(msg, "3 failed") || !strstr(msg, "not a video"))
        fail_msg("unclear message: %s", msg);

    vx_video_stats st;
    vx_video_source_stats(src, &st);
    assert_int_equal(st.health, VX_VIDEO_DEAD);
    assert_int_equal(st.failures, 3);
    assert_int_equal(st.failures_in_row, 3);
    assert_int_equal(st.reconnects, 2);
    assert_int_equal(st.frames_decoded, 0);
    assert_int_equal(st.connected, 0);
    assert_int_equal(st.last_frame_age_s, -1);
    assert_non_null(strstr(st.last_error, path));
    assert_non_null(strstr(st.last_error, "not a video"));
    wait_event(&ev, VX_VIDEO_EVENT_DEAD, 1, 10);
    assert_int_equal(ev.count[VX_VIDEO_EVENT_FAILED], 3);
    assert_int_equal(ev.count[VX_VIDEO_EVENT_OPENED], 0);
    assert_non_null(strstr(ev.msg[VX_VIDEO_EVENT_DEAD], "3 failed attempts"));
    vx_video_source_destroy(src);
    events_destroy(&ev);

    /* A missing file and an empty one, each said so. */
    static const struct {
        const char *name, *expect;
    } cases[] = {{"missing.mp4", "no such file"}, {"empty.mp4", "not a video"}};
    for (int i = 0; i < 2; i++) {
        const char *p = tmp_path(cases[i].name);
        if (i == 1)
            write_bytes(p, "", 0);
        o = fast_opts(p);
        o.backoff_base_s = o.backoff_max_s = 0.001;
        o.max_attempts = 1;
        src = start(&o);
        assert_int_equal(vx_video_source_wait(src, 0, 20, &f), VX_ERR_UNAVAILABLE);
        vx_video_source_stats(src, &st);
        if (!strstr(st.last_error, cases[i].expect) || !strstr(st.last_error, p))
            fail_msg("%s: unclear message: %s", cases[i].name, st.last_error);
        vx_video_source_destroy(src);
    }
}

/* The V4L2 path through libavdevice, on a device that is not there. */
static void test_missing_webcam(void **state)
{
    (void)state;
    int n = 63;
    char dev[32], source[32];
    struct stat sb;
    for (; n >= 0; n--) {
        snprintf(dev, sizeof dev, "/dev/video%d", n);
        if (stat(dev, &sb) != 0)
            break;
    }
    assert_true(n >= 0);
    snprintf(source, sizeof source, "webcam:%d", n);
    vx_video_source_opts o;
    vx_video_source_opts_default(&o);
    o.source = source;
    o.max_attempts = 1;
    vx_video_source *src = start(&o);
    assert_int_equal(vx_video_source_spec(src)->kind, VX_VIDEO_WEBCAM);
    vx_video_frame *f = NULL;
    assert_int_equal(vx_video_source_wait(src, 0, 20, &f), VX_ERR_UNAVAILABLE);
    if (!strstr(vx_last_error(), "no such file or device") || !strstr(vx_last_error(), source))
        fail_msg("unclear message: %s", vx_last_error());
    vx_video_source_destroy(src);
}

/* A camera host name that does not resolve: said so, not "I/O error". */
static void test_unresolvable_host(void **state)
{
    (void)state;
    static const char *const sources[] = {"rtsp://camera.invalid/stream",
                                          "http://camera.invalid:8080/video.mjpg"};
    for (size_t i = 0; i < sizeof sources / sizeof sources[0]; i++) {
        vx_video_source_opts o;
        vx_video_source_opts_default(&o);
        o.source = sources[i];
        o.max_attempts = 1;
        vx_video_source *src = start(&o);
        vx_video_frame *f = NULL;
        assert_int_equal(vx_video_source_wait(src, 0, 60, &f), VX_ERR_UNAVAILABLE);
        if (!strstr(vx_last_error(), "cannot resolve the host name 'camera.invalid'"))
            fail_msg("%s: unclear message: %s", sources[i], vx_last_error());
        /* RTSP does not try UDP with a host it could not find for TCP. */
        if (strstr(vx_last_error(), "; then "))
            fail_msg("%s: tried again over UDP: %s", sources[i], vx_last_error());
        vx_video_stats st;
        vx_video_source_stats(src, &st);
        assert_int_equal(st.health, VX_VIDEO_DEAD);
        assert_non_null(strstr(st.last_error, "camera.invalid"));
        vx_video_source_destroy(src);
    }
}

static void test_destroy_interrupts_waits(void **state)
{
    (void)state;
    /* In a 60 s backoff after a failed open. */
    const char *path = tmp_path("garbage.mkv");
    static const char garbage[] = "\x1a\x45\xdf\xa3 garbage garbage garbage"; /* EBML magic, then junk */
    write_bytes(path, garbage, sizeof garbage - 1);
    events ev;
    events_init(&ev);
    vx_video_source_opts o;
    vx_video_source_opts_default(&o);
    o.source = path;
    o.backoff_base_s = 60;
    o.on_event = on_event;
    o.user = &ev;
    vx_video_source *src = start(&o);
    wait_event(&ev, VX_VIDEO_EVENT_FAILED, 1, 10);
    vx_video_stats st;
    vx_video_source_stats(src, &st);
    assert_int_equal(st.health, VX_VIDEO_DEGRADED); /* failing, not dead yet */
    assert_int_equal(st.failures_in_row, 1);
    assert_true(st.last_error[0]);
    double t0 = vx_now_s();
    vx_video_source_destroy(src);
    double took = vx_now_s() - t0;
    if (took > 1)
        fail_msg("destroy during a 60 s backoff took %.2f s", took);
    events_destroy(&ev);

    /* Pacing a file whose frames are 4 s apart. */
    o = fast_opts(slow_mkv);
    o.realtime = 1;
    o.lossless = 0;
    src = start(&o);
    vx_video_frame *f = next_frame(src, 0, 10);
    vx_video_frame_release(f);
    t0 = vx_now_s();
    vx_video_source_destroy(src);
    took = vx_now_s() - t0;
    if (took > 1)
        fail_msg("destroy during a 4 s pacing wait took %.2f s", took);

    /* Lossless, with the consumer gone. */
    o = fast_opts(avi_mjpeg);
    src = start(&o);
    f = next_frame(src, 0, 10);
    vx_video_frame_release(f);
    f = next_frame(src, 1, 10);
    vx_video_frame_release(f);
    t0 = vx_now_s();
    vx_video_source_destroy(src);
    took = vx_now_s() - t0;
    if (took > 1)
        fail_msg("destroy of a lossless source took %.2f s", took);
}

/* Collects up to `max` frame indices in lossless mode until the source ends
 * or `max` frames arrived. */
static int collect(vx_video_source *src, int *idx, int max)
{
    uint64_t last = 0;
    int n = 0;
    while (n < max) {
        vx_video_frame *f = NULL;
        vx_err err = vx_video_source_wait(src, last, 10, &f);
        if (err == VX_ERR_UNAVAILABLE)
            break;
        if (err || !f)
            fail_msg("frame %d: %s", n, err ? vx_last_error() : "timed out");
        idx[n++] = frame_index(f);
        last = f->seq;
        vx_video_frame_release(f);
    }
    return n;
}

/* The file ends in the middle of frame 10: frames 0..9 come through, the
 * damage is survived (end of file, or the next loop), never a crash. */
static void test_truncated(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = read_all(avi_mjpeg, &len);
    size_t offs[64];
    assert_int_equal(avi_chunks(buf, len, offs, 64), NFRAMES);
    size_t cut = offs[10] + 8 + avi_chunk_size(buf, offs[10]) / 2;
    const char *path = tmp_path("truncated.avi");
    write_bytes(path, buf, cut);
    free(buf);

    vx_video_source_opts o = fast_opts(path);
    o.loop = 0;
    vx_video_source *src = start(&o);
    int idx[64];
    int n = collect(src, idx, 64);
    if (n < 10 || n > 11)
        fail_msg("%d frames from a file cut in frame 10", n);
    for (int i = 0; i < n; i++)
        assert_int_equal(idx[i], i);
    vx_video_stats st;
    vx_video_source_stats(src, &st);
    assert_int_equal(st.health, VX_VIDEO_ENDED);
    /* The half frame was either rejected (counted) or shown partly. */
    assert_true(n == 11 || st.decode_errors >= 1);
    vx_video_source_destroy(src);

    /* Looped, it starts again from frame 0. */
    o.loop = 1;
    src = start(&o);
    n = collect(src, idx, 30);
    assert_int_equal(n, 30);
    int restart = idx[10] == 0 ? 10 : 11;
    for (int i = 0; i < 30; i++)
        assert_int_equal(idx[i], i < restart ? i : (i - restart) % restart);
    vx_video_source_stats(src, &st);
    assert_true(st.loops >= 2);
    assert_int_equal(st.failures, 0);
    vx_video_source_destroy(src);
}

/* Garbage instead of frame 10's JPEG: that frame is lost and counted, the
 * others come through in order. */
static void test_corrupt_frame(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = read_all(avi_mjpeg, &len);
    size_t offs[64];
    assert_int_equal(avi_chunks(buf, len, offs, 64), NFRAMES);
    /* No JPEG marker left in frame 10: nothing there to decode. */
    uint32_t size = avi_chunk_size(buf, offs[10]);
    for (uint32_t i = 0; i < size; i++)
        buf[offs[10] + 8 + i] = (uint8_t)(i * 37 % 251);
    const char *path = tmp_path("corrupt.avi");
    write_bytes(path, buf, len);
    free(buf);

    vx_video_source_opts o = fast_opts(path);
    o.loop = 0;
    vx_video_source *src = start(&o);
    int idx[64];
    int n = collect(src, idx, 64);
    assert_int_equal(n, NFRAMES - 1);
    for (int i = 0; i < n; i++)
        assert_int_equal(idx[i], i < 10 ? i : i + 1);
    vx_video_stats st;
    vx_video_source_stats(src, &st);
    assert_true(st.decode_errors >= 1);
    assert_int_equal(st.failures, 0);
    assert_int_equal(st.frames_decoded, NFRAMES - 1);
    vx_video_source_destroy(src);
}

static void test_health_thresholds(void **state)
{
    (void)state;
    /* Lossless without a consumer: the grabber stops after frame 2, so time
     * since the newest frame grows while we look away. */
    static const struct {
        double degraded, stale;
        vx_video_health expect;
    } cases[] = {{0.05, 100, VX_VIDEO_DEGRADED}, {0.05, 0.1, VX_VIDEO_STALE}};
    for (int i = 0; i < 2; i++) {
        vx_video_source_opts o = fast_opts(avi_mjpeg);
        o.degraded_after_s = cases[i].degraded;
        o.stale_after_s = cases[i].stale;
        vx_video_source *src = start(&o);
        vx_video_frame *f = next_frame(src, 0, 10);
        vx_video_frame_release(f);
        vx_video_frame *none = NULL;
        double t0 = vx_now_s();
        assert_int_equal(vx_video_source_wait(src, 1000, 0.3, &none), VX_OK); /* times out */
        assert_null(none);
        assert_true(vx_now_s() - t0 >= 0.29);
        vx_video_stats st;
        vx_video_source_stats(src, &st);
        if (st.health != cases[i].expect)
            fail_msg("health %s after %.2f s without a frame, expected %s", vx_video_health_name(st.health),
                     st.last_frame_age_s, vx_video_health_name(cases[i].expect));
        assert_true(st.last_frame_age_s >= 0.29);
        vx_video_source_destroy(src);
    }
    /* Default thresholds: a source delivering frames is healthy. */
    vx_video_source_opts o = fast_opts(avi_mjpeg);
    vx_video_source *src = start(&o);
    vx_video_frame *f = next_frame(src, 0, 10);
    vx_video_stats st;
    vx_video_source_stats(src, &st);
    assert_int_equal(st.health, VX_VIDEO_HEALTHY);
    assert_true(st.connected);
    vx_video_frame_release(f);
    vx_video_source_destroy(src);
}

static void test_options(void **state)
{
    (void)state;
    vx_video_source *src = (vx_video_source *)1;
    vx_video_source_opts o;
    unsetenv("VEROLUX_VIDEO_BACKOFF_S");
    vx_video_source_opts_default(&o);
    assert_int_equal(o.realtime, 1);
    assert_int_equal(o.loop, 1);
    assert_int_equal(o.lossless, 0);
    assert_int_equal(o.max_attempts, 10);
    assert_true(o.backoff_base_s == 1 && o.backoff_max_s == 300);
    assert_true(o.degraded_after_s == 10 && o.stale_after_s == 60);

    assert_int_equal(vx_video_source_create(&o, &src), VX_ERR_INVALID); /* no source */
    assert_null(src);
    o.source = "ftp://example.com/a.mp4";
    assert_int_equal(vx_video_source_create(&o, &src), VX_ERR_INVALID);
    assert_non_null(strstr(vx_last_error(), "accepted forms"));
    assert_non_null(strstr(vx_last_error(), "webcam:N"));

    vx_video_source_opts bad;
    bad = o, bad.source = avi_mjpeg, bad.backoff_max_s = 0.5;
    assert_int_equal(vx_video_source_create(&bad, &src), VX_ERR_INVALID);
    assert_non_null(strstr(vx_last_error(), "backoff_max_s"));
    bad = o, bad.source = avi_mjpeg, bad.max_attempts = 0;
    assert_int_equal(vx_video_source_create(&bad, &src), VX_ERR_INVALID);
    bad = o, bad.source = avi_mjpeg, bad.open_timeout_s = 0;
    assert_int_equal(vx_video_source_create(&bad, &src), VX_ERR_INVALID);
    assert_non_null(strstr(vx_last_error(), "open_timeout_s"));
    bad = o, bad.source = avi_mjpeg, bad.read_timeout_s = NAN;
    assert_int_equal(vx_video_source_create(&bad, &src), VX_ERR_INVALID);
    bad = o, bad.source = avi_mjpeg, bad.stale_after_s = 5;
    assert_int_equal(vx_video_source_create(&bad, &src), VX_ERR_INVALID);
    bad = o, bad.source = avi_mjpeg, bad.decoder_threads = -1;
    assert_int_equal(vx_video_source_create(&bad, &src), VX_ERR_INVALID);
    bad = o, bad.source = avi_mjpeg, bad.substream = "rtmp://x/y";
    assert_int_equal(vx_video_source_create(&bad, &src), VX_ERR_INVALID);
    assert_non_null(strstr(vx_last_error(), "substream of"));
    assert_null(src);
    vx_video_source_destroy(NULL);

    /* Tests elsewhere shorten the first retry delay through the
     * environment; the cap stays, and nonsense leaves the default. */
    static const struct {
        const char *value;
        double want;
    } knob[] = {{"0.25", 0.25}, {"300", 300}, {"0", 1},    {"-2", 1},
                {"301", 1},     {"fast", 1},  {"0.5s", 1}, {"", 1}};
    for (size_t i = 0; i < sizeof knob / sizeof knob[0]; i++) {
        setenv("VEROLUX_VIDEO_BACKOFF_S", knob[i].value, 1);
        vx_video_source_opts_default(&o);
        if (o.backoff_base_s != knob[i].want || o.backoff_max_s != 300)
            fail_msg("VEROLUX_VIDEO_BACKOFF_S=%s: base %g, max %g", knob[i].value, o.backoff_base_s,
                     o.backoff_max_s);
    }
    unsetenv("VEROLUX_VIDEO_BACKOFF_S");
}

/* A second decoder on the camera's low-resolution stream. */
static void test_substream(void **state)
{
    (void)state;
    vx_video_source_opts o = fast_opts(avi_mjpeg);
    o.substream = sub_avi;
    vx_video_source *src = start(&o);
    vx_video_source *sub = vx_video_source_substream(src);
    assert_non_null(sub);
    assert_string_equal(vx_video_source_name(sub), sub_avi);
    assert_string_equal(vx_video_source_name(src), avi_mjpeg);
    assert_int_equal(vx_video_source_spec(src)->kind, VX_VIDEO_FILE);
    vx_video_frame *f = next_frame(src, 0, 10), *s = next_frame(sub, 0, 10);
    assert_int_equal(f->width, 64);
    assert_int_equal(s->width, 32);
    assert_int_equal(s->height, 24);
    assert_int_equal(frame_index(s), 0);
    vx_video_frame_release(f);
    vx_video_frame_release(s);
    vx_video_source_destroy(src); /* takes the substream with it (ASan) */

    o.substream = NULL;
    src = start(&o);
    assert_null(vx_video_source_substream(src));
    vx_video_source_destroy(src);
}

/* ---- tests: network on loopback ----------------------------------------- */

static int listen_local(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
    assert_int_equal(listen(fd, 16), 0);
    socklen_t alen = sizeof addr;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &alen), 0);
    *port = ntohs(addr.sin_port);
    return fd;
}

/* A server that accepts (the kernel does, from the backlog) and never says a
 * word: only our timeouts end the open. */
static void test_silent_servers_time_out(void **state)
{
    (void)state;
    int port;
    int fd = listen_local(&port);
    char url[128];
    static const char *forms[] = {"rtsp://127.0.0.1:%d/live", "http://127.0.0.1:%d/video.mjpg"};
    for (int i = 0; i < 2; i++) {
        snprintf(url, sizeof url, forms[i], port);
        events ev;
        events_init(&ev);
        vx_video_source_opts o;
        vx_video_source_opts_default(&o);
        o.source = url;
        o.open_timeout_s = 0.5;
        o.read_timeout_s = 0.5;
        o.backoff_base_s = 60;
        o.on_event = on_event;
        o.user = &ev;
        double t0 = vx_now_s();
        vx_video_source *src = start(&o);
        vx_video_stats st;
        vx_video_source_stats(src, &st);
        assert_int_equal(st.health, VX_VIDEO_STARTING);
        wait_event(&ev, VX_VIDEO_EVENT_FAILED, 1, 15);
        double took = vx_now_s() - t0;
        const char *msg = ev.msg[VX_VIDEO_EVENT_FAILED];
        if (!strstr(msg, "timed out") || !strstr(msg, url))
            fail_msg("unclear message: %s", msg);
        /* RTSP tries TCP, then UDP. */
        if (i == 0 && (!strstr(msg, "over tcp") || !strstr(msg, "over udp")))
            fail_msg("RTSP did not try both transports: %s", msg);
        if (took > 6)
            fail_msg("%s: the open took %.1f s with 0.5 s timeouts", url, took);
        t0 = vx_now_s();
        vx_video_source_destroy(src);
        assert_true(vx_now_s() - t0 < 1);
        events_destroy(&ev);
    }
    close(fd);

    /* Nobody listening: refused at once, and said so. */
    fd = listen_local(&port);
    close(fd);
    snprintf(url, sizeof url, "rtsp://127.0.0.1:%d/live", port);
    vx_video_source_opts o;
    vx_video_source_opts_default(&o);
    o.source = url;
    o.max_attempts = 1;
    vx_video_source *src = start(&o);
    vx_video_frame *f = NULL;
    assert_int_equal(vx_video_source_wait(src, 0, 20, &f), VX_ERR_UNAVAILABLE);
    if (!strstr(vx_last_error(), "refused"))
        fail_msg("unclear message: %s", vx_last_error());
    vx_video_source_destroy(src);
}

/* A small HTTP server: serves a file (with Range support, as FFmpeg may
 * seek), or an MJPEG stream of `parts` JPEGs per connection that then stalls
 * until the client hangs up. */
typedef struct {
    int listen_fd, port;
    int wake[2];
    pthread_t thread;
    const uint8_t *file;
    size_t file_len;
    const char *file_type;
    uint8_t *jpeg[NFRAMES];
    int jpeg_len[NFRAMES];
    int parts;
    atomic_int connections;
} http_server;

static int send_all(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Waits for the client to hang up, or for the test to end. */
static void hold(http_server *s, int fd)
{
    struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = s->wake[0], .events = POLLIN}};
    char junk[256];
    while (poll(p, 2, -1) > 0 && !(p[1].revents & POLLIN))
        if (recv(fd, junk, sizeof junk, 0) <= 0)
            break;
}

static void serve(http_server *s, int fd)
{
    char req[4096];
    size_t got = 0;
    while (got < sizeof req - 1 && !strstr(req, "\r\n\r\n")) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 5000) <= 0)
            return;
        ssize_t n = recv(fd, req + got, sizeof req - 1 - got, 0);
        if (n <= 0)
            return;
        got += (size_t)n;
        req[got] = 0;
    }
    char head[512];
    if (s->file) {
        size_t from = 0;
        const char *range = strstr(req, "Range: bytes=");
        if (range)
            from = strtoull(range + 13, NULL, 10);
        if (from > s->file_len)
            from = s->file_len;
        int n = snprintf(head, sizeof head,
                         "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nAccept-Ranges: bytes\r\n"
                         "Content-Range: bytes %zu-%zu/%zu\r\nConnection: close\r\n\r\n",
                         from ? "206 Partial Content" : "200 OK", s->file_type, s->file_len - from, from,
                         s->file_len - 1, s->file_len);
        if (send_all(fd, head, (size_t)n) == 0)
            send_all(fd, s->file + from, s->file_len - from);
        return;
    }
    int n = snprintf(head, sizeof head,
                     "HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=vxframe\r\n\r\n");
    if (send_all(fd, head, (size_t)n))
        return;
    for (int i = 0; i < s->parts; i++) {
        n = snprintf(head, sizeof head, "--vxframe\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n",
                     s->jpeg_len[i]);
        if (send_all(fd, head, (size_t)n) || send_all(fd, s->jpeg[i], (size_t)s->jpeg_len[i]) ||
            send_all(fd, "\r\n", 2))
            return;
    }
    hold(s, fd); /* stall: the client's read timeout must notice */
}

static void *server_main(void *arg)
{
    http_server *s = arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = s->listen_fd, .events = POLLIN}, {.fd = s->wake[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0 || (p[1].revents & POLLIN))
            break;
        int fd = accept(s->listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        atomic_fetch_add(&s->connections, 1);
        serve(s, fd);
        close(fd);
    }
    return NULL;
}

static void server_start(http_server *s)
{
    s->listen_fd = listen_local(&s->port);
    assert_int_equal(pipe(s->wake), 0);
    assert_int_equal(pthread_create(&s->thread, NULL, server_main, s), 0);
}

static void server_stop(http_server *s)
{
    assert_int_equal(write(s->wake[1], "x", 1), 1);
    pthread_join(s->thread, NULL);
    close(s->wake[0]);
    close(s->wake[1]);
    close(s->listen_fd);
}

/* One JPEG per test frame index, with FFmpeg's encoder. */
static int encode_jpeg(int index, uint8_t **out)
{
    const AVCodec *codec = avcodec_find_encoder(AV_CODEC_ID_MJPEG);
    AVCodecContext *enc = avcodec_alloc_context3(codec);
    enc->width = 64;
    enc->height = 48;
    enc->pix_fmt = AV_PIX_FMT_YUVJ420P;
    enc->color_range = AVCOL_RANGE_JPEG;
    enc->time_base = (AVRational){1, 10};
    enc->flags |= AV_CODEC_FLAG_QSCALE;
    enc->global_quality = FF_QP2LAMBDA * 2;
    assert_true(avcodec_open2(enc, codec, NULL) >= 0);
    AVFrame *frame = av_frame_alloc();
    frame->format = enc->pix_fmt;
    frame->width = 64;
    frame->height = 48;
    frame->color_range = AVCOL_RANGE_JPEG;
    frame->quality = enc->global_quality;
    assert_true(av_frame_get_buffer(frame, 0) >= 0);
    memset(frame->data[0], level_of(index), (size_t)frame->linesize[0] * 48);
    memset(frame->data[1], 128, (size_t)frame->linesize[1] * 24);
    memset(frame->data[2], 128, (size_t)frame->linesize[2] * 24);
    AVPacket *pkt = av_packet_alloc();
    assert_true(avcodec_send_frame(enc, frame) >= 0);
    assert_true(avcodec_receive_packet(enc, pkt) >= 0);
    *out = malloc((size_t)pkt->size);
    memcpy(*out, pkt->data, (size_t)pkt->size);
    int len = pkt->size;
    av_packet_free(&pkt);
    av_frame_free(&frame);
    avcodec_free_context(&enc);
    return len;
}

/* MJPEG over HTTP; each connection stalls after 12 frames, the read timeout
 * notices, the source reconnects and goes on: no frame lost (lossless), none
 * twice. */
static void test_http_mjpeg_reconnects(void **state)
{
    (void)state;
    http_server s = {.parts = 12};
    for (int i = 0; i < s.parts; i++)
        s.jpeg_len[i] = encode_jpeg(i, &s.jpeg[i]);
    server_start(&s);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/video.mjpg", s.port);
    events ev;
    events_init(&ev);
    vx_video_source_opts o = fast_opts(url);
    o.open_timeout_s = 5;
    o.read_timeout_s = 0.5;
    o.backoff_base_s = 0.01;
    o.on_event = on_event;
    o.user = &ev;
    vx_video_source *src = start(&o);
    int idx[30];
    uint64_t last = 0;
    for (int i = 0; i < 30; i++) {
        vx_video_frame *f = next_frame(src, last, 20);
        idx[i] = frame_index(f);
        last = f->seq;
        vx_video_frame_release(f);
    }
    /* Each connection's frames in order, from 0. */
    assert_int_equal(idx[0], 0);
    for (int i = 1; i < 30; i++)
        if (idx[i] != (i % s.parts))
            fail_msg("frame %d is test frame %d after %d", i, idx[i], idx[i - 1]);
    vx_video_stats st;
    vx_video_source_stats(src, &st);
    assert_true(st.reconnects >= 2);
    assert_true(st.failures >= 2);
    assert_true(atomic_load(&s.connections) >= 3);
    assert_int_equal(st.frames_dropped, 0);
    assert_true(ev.count[VX_VIDEO_EVENT_OPENED] >= 3);
    assert_non_null(strstr(ev.msg[VX_VIDEO_EVENT_OPENED], "mpjpeg"));
    if (!strstr(st.last_error, "no data for 0.5 s") && !strstr(st.last_error, "timed out after 0.5 s"))
        fail_msg("unclear message: %s", st.last_error);
    vx_video_source_destroy(src);
    events_destroy(&ev);
    server_stop(&s);
    for (int i = 0; i < s.parts; i++)
        free(s.jpeg[i]);
}

/* Progressive MP4 over HTTP: every frame, then "the stream ended" and a
 * reconnect that plays it again. */
static void test_http_mp4(void **state)
{
    (void)state;
    size_t len;
    uint8_t *mp4 = read_all(mp4_file, &len);
    http_server s = {.file = mp4, .file_len = len, .file_type = "video/mp4"};
    server_start(&s);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/clip.mp4", s.port);
    vx_video_source_opts o = fast_opts(url);
    o.backoff_base_s = 0.01;
    vx_video_source *src = start(&o);
    uint64_t last = 0;
    for (int i = 0; i < NFRAMES + 3; i++) {
        vx_video_frame *f = next_frame(src, last, 20);
        assert_int_equal(frame_index(f), i % NFRAMES);
        last = f->seq;
        vx_video_frame_release(f);
    }
    vx_video_stats st;
    vx_video_source_stats(src, &st);
    assert_true(st.reconnects >= 1);
    assert_non_null(strstr(st.last_error, "ended"));
    vx_video_source_destroy(src);
    server_stop(&s);
    free(mp4);
}

/* ---- the real sample ------------------------------------------------------ */

static void test_vtest_avi(void **state)
{
    (void)state;
    const char *cache = getenv("VEROLUX_CACHE");
    const char *home = getenv("HOME");
    char path[1024];
    if (cache && *cache)
        snprintf(path, sizeof path, "%s/samples/vtest.avi", cache);
    else
        snprintf(path, sizeof path, "%s/.cache/verolux/samples/vtest.avi", home ? home : ".");
    struct stat sb;
    if (stat(path, &sb) != 0)
        fail_msg("%s missing: run scripts/fetch-samples", path);

    vx_video_source_opts o = fast_opts(path);
    o.loop = 0;
    vx_video_source *src = start(&o);
    uint64_t last = 0;
    double first_pts = 0;
    for (int i = 0; i < 300; i++) {
        vx_video_frame *f = next_frame(src, last, 20);
        assert_int_equal(f->seq, last + 1);
        assert_int_equal(f->width, 768);
        assert_int_equal(f->height, 576);
        assert_int_equal(f->image.format, VX_PIX_YUV420P);
        if (i == 0)
            first_pts = f->pts_s;
        else if (fabs(f->pts_s - first_pts - i * 0.1) > 0.011)
            fail_msg("frame %d: pts %.3f, expected %.3f", i, f->pts_s, first_pts + i * 0.1);
        last = f->seq;
        vx_video_frame_release(f);
    }
    vx_video_stats st;
    vx_video_source_stats(src, &st);
    assert_true(fabs(st.native_fps - 10) < 0.01);
    assert_int_equal(st.frames_dropped, 0);
    assert_int_equal(st.failures, 0);
    vx_video_source_destroy(src);
}

/* ---- fixture -------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    vx_video_ffmpeg_quiet(); /* before the muxers talk */
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/vx_test_video_XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir))
        return -1;
    const AVRational tb10 = {1, 10};
    video_desc mjpeg = {.muxer = "avi",
                        .codec = AV_CODEC_ID_MJPEG,
                        .pix = AV_PIX_FMT_YUVJ420P,
                        .w = 64,
                        .h = 48,
                        .time_base = tb10,
                        .pts_step = 1,
                        .frames = NFRAMES};
    snprintf(avi_mjpeg, sizeof avi_mjpeg, "%s", tmp_path("clip.avi"));
    write_video(avi_mjpeg, &mjpeg);

    video_desc d = mjpeg;
    d.frames = 8;
    snprintf(short_avi, sizeof short_avi, "%s", tmp_path("short.avi"));
    write_video(short_avi, &d);

    d = mjpeg;
    d.w = 32, d.h = 24;
    snprintf(sub_avi, sizeof sub_avi, "%s", tmp_path("sub.avi"));
    write_video(sub_avi, &d);

    d = mjpeg; /* frames 4 s apart */
    d.muxer = "matroska", d.time_base = (AVRational){1, 1000}, d.pts_step = 4000, d.frames = 3;
    snprintf(slow_mkv, sizeof slow_mkv, "%s", tmp_path("slow.mkv"));
    write_video(slow_mkv, &d);

    d = mjpeg;
    d.muxer = "matroska", d.codec = AV_CODEC_ID_MPEG4, d.pix = AV_PIX_FMT_YUV420P, d.b_frames = 2;
    snprintf(mkv_mpeg4, sizeof mkv_mpeg4, "%s", tmp_path("clip.mkv"));
    write_video(mkv_mpeg4, &d);

    d.muxer = "mp4", d.b_frames = 0, d.movflags = "+faststart"; /* index first: playable while downloading */
    snprintf(mp4_file, sizeof mp4_file, "%s", tmp_path("clip.mp4"));
    write_video(mp4_file, &d);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < ncreated; i++)
        unlink(created[i]);
    return rmdir(tmpdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_frame_avi_mjpeg),
        cmocka_unit_test(test_every_frame_mkv_mpeg4),
        cmocka_unit_test(test_loop_pts),
        cmocka_unit_test(test_realtime_pacing),
        cmocka_unit_test(test_fast_mode_is_fast),
        cmocka_unit_test(test_slow_consumer),
        cmocka_unit_test(test_frame_outlives_source),
        cmocka_unit_test(test_not_a_video),
        cmocka_unit_test(test_missing_webcam),
        cmocka_unit_test(test_unresolvable_host),
        cmocka_unit_test(test_destroy_interrupts_waits),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_corrupt_frame),
        cmocka_unit_test(test_health_thresholds),
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_substream),
        cmocka_unit_test(test_silent_servers_time_out),
        cmocka_unit_test(test_http_mjpeg_reconnects),
        cmocka_unit_test(test_http_mp4),
        cmocka_unit_test(test_vtest_avi),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
