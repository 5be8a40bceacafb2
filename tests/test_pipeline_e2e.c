/*
 * The pipelines with the real detector (NanoDet-g, cpu backend) on
 * vtest.avi, in process: shared pipelines, persons on most frames, boxes in
 * full-resolution pixels, JPEG subscribers, a source that cannot be opened,
 * idle stop, the source limit and refusals.  Needs $VEROLUX_CACHE's model
 * and samples (scripts/fetch-models, scripts/fetch-samples); fails without
 * them.
 *
 * Waiting is on subscriber notifications (a condition variable); what can
 * only be seen in the stats (a pipeline stopped) is looked at again after
 * each message of a live subscriber, so the video paces the checks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libswscale/swscale.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "pipeline/vx_pipeline.h"

static char cache[1024], vtest[1200], model[1200], tmpdir[64], notvideo[128], half[128];
static vx_detector *det;

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int ready;
} waiter;

static void on_notify(void *user)
{
    waiter *w = user;
    pthread_mutex_lock(&w->lock);
    w->ready = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

static void waiter_init(waiter *w)
{
    pthread_mutex_init(&w->lock, NULL);
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &a);
    pthread_condattr_destroy(&a);
    w->ready = 0;
}

static void waiter_destroy(waiter *w)
{
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
}

/* The next message of s, waiting up to timeout_s for its notification. */
static vx_pipeline_msg *next_msg(vx_pipeline_sub *s, waiter *w, double timeout_s)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += (time_t)timeout_s;
    for (;;) {
        vx_pipeline_msg *m = vx_pipeline_sub_pop(s, NULL);
        if (m)
            return m;
        pthread_mutex_lock(&w->lock);
        int rc = 0;
        while (!w->ready && rc == 0)
            rc = pthread_cond_timedwait(&w->cond, &w->lock, &deadline);
        w->ready = 0;
        pthread_mutex_unlock(&w->lock);
        if (rc) {
            m = vx_pipeline_sub_pop(s, NULL);
            if (!m)
                fail_msg("no message within %.0f s", timeout_s);
            return m;
        }
    }
}

static vx_pipelines *start(vx_source_policy **policy, int max_sources)
{
    const char *dirs[] = {tmpdir, NULL};
    char samples[1100];
    snprintf(samples, sizeof samples, "%s/samples", cache);
    dirs[1] = samples;
    vx_source_policy_opts po = {
        .default_source = vtest, .media_dirs = dirs, .n_media_dirs = 2, .allow_webcams = 1};
    if (vx_source_policy_create(&po, policy) != VX_OK)
        fail_msg("%s", vx_last_error());
    vx_pipelines_opts o;
    vx_pipelines_opts_default(&o);
    o.detector = det;
    o.policy = *policy;
    o.default_source = vtest;
    o.idle_stop_s = 0;
    o.max_sources = max_sources;
    vx_pipelines *m;
    if (vx_pipelines_create(&o, &m) != VX_OK)
        fail_msg("%s", vx_last_error());
    return m;
}

static vx_pipeline_sub *subscribe(vx_pipelines *m, const char *source, unsigned types, waiter *w)
{
    vx_pipeline_sub_opts so = {source, 1, types, 4, on_notify, w, 0};
    vx_pipeline_sub *s;
    if (vx_pipelines_subscribe(m, &so, &s) != VX_OK)
        fail_msg("%s: %s", source ? source : "(default)", vx_last_error());
    return s;
}

static void test_shared_results(void **state)
{
    (void)state;
    vx_source_policy *policy;
    vx_pipelines *m = start(&policy, 8);
    waiter w[3];
    vx_pipeline_sub *s[3];
    const char *names[3] = {NULL, "vtest.avi", vtest};
    for (int i = 0; i < 3; i++) {
        waiter_init(&w[i]);
        s[i] = subscribe(m, names[i], VX_MSG_RESULT, &w[i]);
    }
    vx_pipeline_sub_info info;
    vx_pipeline_sub_info_get(s[1], &info);
    assert_true(info.async_grabber && info.dual_stream && !info.batch_inference);
    assert_string_equal(info.precision, "FP32");

    int frames = 0, with_person = 0;
    uint64_t last = 0, last_count = 0;
    while (frames < 30) {
        vx_pipeline_msg *msg = next_msg(s[0], &w[0], 30);
        assert_int_equal(msg->type, VX_MSG_RESULT);
        assert_int_equal(msg->width, 768);
        assert_int_equal(msg->height, 576);
        assert_int_equal(msg->det_width, 416);
        assert_int_equal(msg->det_height, 312);
        assert_true(msg->dual_stream);
        assert_true(msg->frame_id > last);
        assert_true(msg->capture_mono_s <= msg->published_mono_s);
        assert_true(msg->fps.inference > 0);
        last = msg->frame_id;
        last_count = msg->frame_count;
        int person = 0;
        for (int i = 0; i < msg->ndet; i++) {
            const vx_pipeline_det *d = &msg->dets[i];
            assert_true(d->x1 >= 0 && d->x2 <= 768 && d->x1 < d->x2);
            assert_true(d->y1 >= 0 && d->y2 <= 576 && d->y1 < d->y2);
            assert_non_null(d->name);
            if (d->cls == 0) {
                assert_string_equal(d->name, "person");
                person = 1;
            }
        }
        with_person += person;
        vx_pipeline_sub_delivered(s[0], msg, vx_now_s());
        vx_pipeline_msg_release(msg);
        frames++;
    }
    if (with_person < 24)
        fail_msg("persons on %d of %d frames", with_person, frames);
    /* The others got the same frames (newest kept), from one pipeline. */
    vx_pipeline_msg *a = next_msg(s[1], &w[1], 10), *b = next_msg(s[2], &w[2], 10);
    assert_true(a->frame_count + 4 > last_count && b->frame_count + 4 > last_count);
    vx_pipeline_msg_release(a);
    vx_pipeline_msg_release(b);

    vx_pipeline_stats *st;
    vx_pipelines_totals t;
    int n = vx_pipelines_stats(m, &st, &t);
    assert_int_equal(n, 1);
    assert_int_equal(t.running, 1);
    assert_int_equal(t.started, 1);
    assert_int_equal(t.subscribers, 3);
    assert_int_equal(st[0].subscribers, 3);
    assert_true(st[0].is_default);
    assert_true(st[0].frames_processed >= 30);
    assert_true(st[0].queue_drops > 0); /* s[1] and s[2] were not read: queues of 4 */
    assert_true(st[0].latency.count == 30);
    assert_true(st[0].stages[VX_STAGE_INFERENCE].count >= 30);
    assert_true(vx_hist_quantile(&st[0].latency, 0.5) > 0);
    free(st);
    for (int i = 0; i < 3; i++) {
        vx_pipelines_unsubscribe(m, s[i]);
        waiter_destroy(&w[i]);
    }
    vx_pipelines_destroy(m);
    vx_source_policy_destroy(policy);
}

static void test_jpeg_errors_idle_limit(void **state)
{
    (void)state;
    vx_source_policy *policy;
    vx_pipelines *m = start(&policy, 2);
    waiter wj, we, wc;
    waiter_init(&wj);
    waiter_init(&we);
    waiter_init(&wc);

    /* JPEG subscribers get full-resolution JPEGs. */
    vx_pipeline_sub *sj = subscribe(m, NULL, VX_MSG_JPEG_OVERLAY, &wj);
    vx_pipeline_msg *msg = next_msg(sj, &wj, 30);
    assert_int_equal(msg->type, VX_MSG_JPEG_OVERLAY);
    assert_true(msg->size > 1000 && msg->data[0] == 0xff && msg->data[1] == 0xd8);
    assert_int_equal(msg->width, 768);
    vx_pipeline_msg_release(msg);

    /* A file that is not a video: an error, to this subscriber and the next. */
    vx_pipeline_sub *se = subscribe(m, "notvideo.avi", VX_MSG_RESULT, &we);
    msg = next_msg(se, &we, 30);
    assert_int_equal(msg->type, VX_MSG_ERROR);
    assert_non_null(strstr(msg->message, "cannot open source 'notvideo.avi'"));
    vx_pipeline_msg_release(msg);
    vx_pipeline_sub *se2 = subscribe(m, "notvideo.avi", VX_MSG_RESULT, &we);
    msg = next_msg(se2, &we, 30);
    assert_int_equal(msg->type, VX_MSG_ERROR);
    vx_pipeline_msg_release(msg);

    /* Two pipelines run: the limit refuses a third source, and counts it. */
    vx_pipeline_sub_opts so = {"webcam:7", 1, VX_MSG_RESULT, 4, NULL, NULL, 0};
    vx_pipeline_sub *s3;
    assert_int_equal(vx_pipelines_subscribe(m, &so, &s3), VX_ERR_UNAVAILABLE);
    assert_non_null(strstr(vx_last_error(), "its limit"));
    so.source = "/etc/passwd";
    assert_int_equal(vx_pipelines_subscribe(m, &so, &s3), VX_ERR_DENIED);
    so.source = "gopher://x";
    assert_int_equal(vx_pipelines_subscribe(m, &so, &s3), VX_ERR_INVALID);
    vx_pipelines_totals t;
    vx_pipeline_stats *st;
    int n = vx_pipelines_stats(m, &st, &t);
    free(st);
    assert_int_equal(n, 2);
    assert_int_equal(t.over_limit, 1);
    assert_int_equal(t.refused, 1);
    assert_int_equal(t.malformed, 1);

    /* The last subscriber leaves: the pipeline stops (idle_stop_s = 0),
     * the default one stays.  The JPEG subscriber's frames pace the look. */
    vx_pipelines_unsubscribe(m, se);
    vx_pipelines_unsubscribe(m, se2);
    int stopped = 0;
    for (int i = 0; i < 100 && !stopped; i++) {
        msg = next_msg(sj, &wj, 30);
        vx_pipeline_msg_release(msg);
        n = vx_pipelines_stats(m, &st, &t);
        free(st);
        stopped = t.stopped == 1 && t.running == 1 && n == 1;
    }
    assert_true(stopped);
    /* And the limit has room again. */
    so.source = "webcam:7";
    so.notify = on_notify;
    so.user = &wc;
    assert_int_equal(vx_pipelines_subscribe(m, &so, &s3), VX_OK);
    msg = next_msg(s3, &wc, 30);
    assert_int_equal(msg->type, VX_MSG_ERROR);
    assert_non_null(strstr(msg->message, "webcam:7"));
    vx_pipeline_msg_release(msg);
    vx_pipelines_unsubscribe(m, s3);
    vx_pipelines_unsubscribe(m, sj);
    vx_pipelines_destroy(m);
    vx_source_policy_destroy(policy);
    waiter_destroy(&wj);
    waiter_destroy(&we);
    waiter_destroy(&wc);
}

/* Writes the first `frames` frames of `in` at half size as MJPEG in AVI:
 * a camera's substream, as far as the pipeline can tell. */
static int write_half_size(const char *in, const char *out, int frames)
{
    AVFormatContext *ic = NULL, *oc = NULL;
    if (avformat_open_input(&ic, in, NULL, NULL) < 0 || avformat_find_stream_info(ic, NULL) < 0)
        return -1;
    int vi = av_find_best_stream(ic, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
    AVStream *ist = ic->streams[vi];
    const AVCodec *dcodec = avcodec_find_decoder(ist->codecpar->codec_id);
    AVCodecContext *dec = avcodec_alloc_context3(dcodec);
    avcodec_parameters_to_context(dec, ist->codecpar);
    if (avcodec_open2(dec, dcodec, NULL) < 0)
        return -1;
    int w = dec->width / 2, h = dec->height / 2;
    avformat_alloc_output_context2(&oc, NULL, "avi", out);
    const AVCodec *ecodec = avcodec_find_encoder(AV_CODEC_ID_MJPEG);
    AVStream *ost = avformat_new_stream(oc, NULL);
    AVCodecContext *enc = avcodec_alloc_context3(ecodec);
    enc->width = w;
    enc->height = h;
    enc->pix_fmt = AV_PIX_FMT_YUVJ420P;
    enc->color_range = AVCOL_RANGE_JPEG;
    enc->time_base = (AVRational){1, 10};
    enc->framerate = (AVRational){10, 1};
    enc->flags |= AV_CODEC_FLAG_QSCALE;
    enc->global_quality = FF_QP2LAMBDA * 3;
    if (avcodec_open2(enc, ecodec, NULL) < 0)
        return -1;
    avcodec_parameters_from_context(ost->codecpar, enc);
    ost->time_base = enc->time_base;
    if (avio_open(&oc->pb, out, AVIO_FLAG_WRITE) < 0 || avformat_write_header(oc, NULL) < 0)
        return -1;
    struct SwsContext *sws = NULL;
    AVPacket *pkt = av_packet_alloc(), *opkt = av_packet_alloc();
    AVFrame *frame = av_frame_alloc(), *small = av_frame_alloc();
    small->format = enc->pix_fmt;
    small->width = w;
    small->height = h;
    av_frame_get_buffer(small, 0);
    int written = 0;
    while (written < frames && av_read_frame(ic, pkt) >= 0) {
        if (pkt->stream_index == vi && avcodec_send_packet(dec, pkt) >= 0) {
            while (written < frames && avcodec_receive_frame(dec, frame) >= 0) {
                sws = sws_getCachedContext(sws, frame->width, frame->height, frame->format, w, h,
                                           enc->pix_fmt, SWS_BILINEAR, NULL, NULL, NULL);
                av_frame_make_writable(small);
                sws_scale(sws, (const uint8_t *const *)frame->data, frame->linesize, 0, frame->height,
                          small->data, small->linesize);
                small->pts = written++;
                small->quality = enc->global_quality;
                avcodec_send_frame(enc, small);
                while (avcodec_receive_packet(enc, opkt) >= 0) {
                    av_packet_rescale_ts(opkt, enc->time_base, ost->time_base);
                    opkt->stream_index = ost->index;
                    av_interleaved_write_frame(oc, opkt);
                }
            }
        }
        av_packet_unref(pkt);
    }
    av_write_trailer(oc);
    avio_closep(&oc->pb);
    sws_freeContext(sws);
    av_frame_free(&frame);
    av_frame_free(&small);
    av_packet_free(&pkt);
    av_packet_free(&opkt);
    avcodec_free_context(&enc);
    avcodec_free_context(&dec);
    avformat_free_context(oc);
    avformat_close_input(&ic);
    return written == frames ? 0 : -1;
}

/* A camera whose substream is half the size: detection runs on the
 * substream, boxes come back in the main stream's pixels. */
static void test_camera_substream(void **state)
{
    (void)state;
    vx_config_camera cam = {"gate", vtest, half};
    vx_source_policy_opts po = {.cameras = &cam, .n_cameras = 1};
    vx_source_policy *policy;
    if (vx_source_policy_create(&po, &policy) != VX_OK)
        fail_msg("%s", vx_last_error());
    vx_pipelines_opts o;
    vx_pipelines_opts_default(&o);
    o.detector = det;
    o.policy = policy;
    vx_pipelines *m;
    assert_int_equal(vx_pipelines_create(&o, &m), VX_OK);
    waiter w, wm;
    waiter_init(&w);
    waiter_init(&wm);
    vx_pipeline_sub *s = subscribe(m, "gate", VX_MSG_RESULT, &w);
    vx_pipeline_sub_info info;
    vx_pipeline_sub_info_get(s, &info);
    assert_string_equal(info.display, "gate");
    assert_true(info.substream && info.dual_stream);
    int with_person = 0, right_half = 0, full = 0;
    for (int i = 0; i < 20; i++) {
        vx_pipeline_msg *msg = next_msg(s, &w, 30);
        assert_int_equal(msg->type, VX_MSG_RESULT);
        /* The main stream's size once it has a frame (the first results may
         * come before it), detection on the 384x288 substream. */
        if (msg->width == 384) {
            assert_true(full == 0 && msg->height == 288);
        } else {
            assert_int_equal(msg->width, 768);
            assert_int_equal(msg->height, 576);
            full++;
        }
        assert_int_equal(msg->det_width, 416);
        assert_true(msg->dual_stream);
        for (int k = 0; k < msg->ndet; k++) {
            const vx_pipeline_det *d = &msg->dets[k];
            assert_true(d->x1 >= 0 && d->x2 <= msg->width && d->y1 >= 0 && d->y2 <= msg->height);
            with_person += d->cls == 0;
            right_half += d->x1 > 384; /* impossible without scaling back */
        }
        vx_pipeline_msg_release(msg);
    }
    assert_true(full >= 15);
    assert_true(with_person >= 20);
    assert_true(right_half > 0);
    /* use_substream=false: detection on the main stream, its own pipeline. */
    vx_pipeline_sub_opts so = {"gate", 0, VX_MSG_RESULT, 4, on_notify, &wm, 0};
    vx_pipeline_sub *sm;
    assert_int_equal(vx_pipelines_subscribe(m, &so, &sm), VX_OK);
    vx_pipeline_msg *msg = next_msg(sm, &wm, 30);
    assert_int_equal(msg->width, 768);
    assert_int_equal(msg->det_height, 312);
    vx_pipeline_msg_release(msg);
    vx_pipeline_stats *st;
    vx_pipelines_totals t;
    int n = vx_pipelines_stats(m, &st, &t);
    assert_int_equal(n, 2);
    int subs = st[0].substream + st[1].substream;
    assert_int_equal(subs, 1);
    free(st);
    vx_pipelines_unsubscribe(m, s);
    vx_pipelines_unsubscribe(m, sm);
    vx_pipelines_destroy(m);
    vx_source_policy_destroy(policy);
    waiter_destroy(&w);
    waiter_destroy(&wm);
}

static int setup(void **state)
{
    (void)state;
    const char *c = getenv("VEROLUX_CACHE"), *home = getenv("HOME");
    if (c && *c)
        snprintf(cache, sizeof cache, "%s", c);
    else
        snprintf(cache, sizeof cache, "%s/.cache/verolux", home ? home : ".");
    snprintf(vtest, sizeof vtest, "%s/samples/vtest.avi", cache);
    snprintf(model, sizeof model, "%s/models/nanodet/nanodet.json", cache);
    if (access(vtest, R_OK) || access(model, R_OK)) {
        fprintf(stderr, "%s or %s missing: run scripts/fetch-models and scripts/fetch-samples\n", vtest,
                model);
        return -1;
    }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/vx_test_pipe_XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(notvideo, sizeof notvideo, "%s/notvideo.avi", tmpdir);
    FILE *f = fopen(notvideo, "w");
    if (!f)
        return -1;
    fputs("not a video\n", f);
    fclose(f);
    vx_video_ffmpeg_quiet();
    snprintf(half, sizeof half, "%s/half.avi", tmpdir);
    if (write_half_size(vtest, half, 100)) {
        fprintf(stderr, "cannot write %s\n", half);
        return -1;
    }
    vx_nn_engine_opts eng;
    vx_nn_engine_opts_default(&eng);
    eng.backend = VX_NN_BACKEND_CPU;
    eng.threads = 0;
    if (vx_detector_create(model, &eng, NULL, &det) != VX_OK) {
        fprintf(stderr, "%s\n", vx_last_error());
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    vx_detector_destroy(det);
    unlink(notvideo);
    unlink(half);
    return rmdir(tmpdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_results),
        cmocka_unit_test(test_jpeg_errors_idle_limit),
        cmocka_unit_test(test_camera_substream),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
