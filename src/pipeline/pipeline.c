/*
 * Pipelines: one worker thread per source, the manager that starts them on
 * demand and a reaper thread that stops idle ones.  See vx_pipeline.h.
 *
 * Locks, in the order they may be taken:
 *   m->lock      the pipeline list, subscriber counts, idle times, totals;
 *   p->lock      a pipeline's state (open failure) and counters;
 *   fan-out      inside vx_fanout (subscriber queues).
 *   m->det_lock  the shared detector; taken by workers with no other lock.
 * Histograms are atomics and need none.
 *
 * A pipeline is destroyed by the reaper (idle) or by vx_pipelines_destroy,
 * always after it left the list and had no subscribers, so nothing else
 * can reach it by then.  Stopping joins the worker first (it notices the
 * stop flag within one frame wait, WAIT_SLICE_S), then destroys the video
 * source, whose grabber callbacks are the last other users of the fan-out.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipeline/pipeline_internal.h"

/* How long the worker waits for a frame before looking at its stop flag. */
#define WAIT_SLICE_S 0.1
/* Weight of the newest detection time in the inference-fps average. */
#define EWMA_ALPHA 0.1

typedef struct vx_pipeline vx_pipeline;

struct vx_pipeline {
    vx_pipelines *m;
    vx_pipeline *next;
    vx_source_resolved src;
    char key[VX_SOURCE_KEY_MAX + 8];
    int use_sub; /* detection on the camera's substream */
    int scaled;  /* else detection on a SUBSTREAM_SCALE copy of the frame (0: on the frame) */
    vx_video_source *video;
    vx_fanout *fanout;
    pthread_t thread;
    int thread_started;
    atomic_int stop;
    double started_s;

    int nsubs;         /* under m->lock */
    double idle_since; /* under m->lock */

    pthread_mutex_t lock;
    pthread_cond_t stop_cond;
    int got_frame, open_failed, error_sent; /* under lock */
    char error[256];
    vx_rate processed_rate;
    double detect_ewma_s;
    uint64_t frames_processed, frames_skipped, detect_errors, jpeg_frames, messages;
    int det_w, det_h, frame_w; /* last detection input and its source width */

    vx_hist stages[VX_STAGE_COUNT];
    vx_hist latency;

    /* NULL: none (no gate rules, or a full-resolution variant no gate-check
     * client asked for yet).  Attached later under the manager's lock;
     * atomic because the worker reads it without that lock. */
    vx_gate_stage *_Atomic gate;
};

struct vx_pipeline_sub {
    vx_pipeline *p;
    vx_sub *sub;
};

struct vx_pipelines {
    vx_pipelines_opts o;
    char *default_source;
    char *precision;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* reaper: a pipeline became idle, or stop */
    vx_pipeline *list;
    vx_pipeline *default_p;
    vx_pipelines_totals totals; /* under lock; running and subscribers kept current */
    int stopping;
    pthread_t reaper;
    int reaper_started;
    pthread_mutex_t det_lock;
    int max_det;
    /* The gate rules new pipelines start with (under lock); NULL: no gate.
     * gate_update_lock serialises whole updates (persist + swap). */
    vx_gate_config *gate_cfg;
    char *rules_path;
    pthread_mutex_t gate_update_lock;
};

static const char *const stage_names[VX_STAGE_COUNT] = {
    "grab_wait", "detector_wait", "preprocess", "inference", "postprocess", "publish", "jpeg", "gate",
};

const char *vx_pipeline_stage_name(vx_pipeline_stage s)
{
    return (unsigned)s < VX_STAGE_COUNT ? stage_names[s] : "unknown";
}

void vx_pipelines_opts_default(vx_pipelines_opts *o)
{
    memset(o, 0, sizeof *o);
    o->idle_stop_s = 10;
    o->max_sources = 8;
    o->target_fps = 30;
    o->realtime = 1;
    o->async_grabber = 1;
    o->decoder_threads = 1;
    o->substream_scale = 0.6;
    o->precision = "FP32";
    o->batch_size = 1;
    o->jpeg_quality = 80;
}

/* ---- one pipeline ---------------------------------------------------------- */

static void publish_error(vx_pipeline *p, const char *text)
{
    vx_pipeline_msg *msg = vx_pipeline_msg_new(VX_MSG_ERROR, 0, 0, text);
    if (!msg)
        return;
    msg->published_mono_s = vx_now_s();
    vx_fanout_publish(p->fanout, msg);
    vx_pipeline_msg_release(msg);
}

/* The video module's messages name the file it opened, a real path on the
 * server; clients get their own name for it instead. */
static void client_text(const vx_pipeline *p, const char *in, char *out, size_t len)
{
    const char *hit = p->src.kind == VX_VIDEO_FILE && p->src.open[0] ? strstr(in, p->src.open) : NULL;
    if (!hit) {
        snprintf(out, len, "%s", in);
        return;
    }
    snprintf(out, len, "%.*s%s%s", (int)(hit - in), in, p->src.display, hit + strlen(p->src.open));
}

/* Grabber thread.  The first failure before any frame means "cannot be
 * opened": subscribers get the error (and the server closes them) instead
 * of waiting through the retries; later subscribers get it from
 * vx_pipelines_subscribe while the source stays unopened.  Failures after
 * frames have flowed are reconnects, which clients ride out. */
static void on_video_event(void *user, vx_video_source *src, vx_video_event event, const char *message)
{
    vx_pipeline *p = user;
    char text[512], why[300];
    int send = 0;
    pthread_mutex_lock(&p->lock);
    switch (event) {
    case VX_VIDEO_EVENT_OPENED:
        VX_INFO("source %s: opened (%s)", vx_video_source_name(src), message ? message : "");
        break;
    case VX_VIDEO_EVENT_FAILED:
        snprintf(p->error, sizeof p->error, "%s", message ? message : "unknown failure");
        if (!p->got_frame && !p->open_failed) {
            p->open_failed = 1;
            client_text(p, p->error, why, sizeof why);
            snprintf(text, sizeof text, "cannot open source '%s': %s", p->src.display, why);
            send = !p->error_sent;
            p->error_sent = 1;
        }
        break; /* the video module logs it */
    case VX_VIDEO_EVENT_DEAD:
        p->open_failed = 1;
        client_text(p, message ? message : p->error, why, sizeof why);
        snprintf(text, sizeof text, "source '%s' failed and will not be retried: %s", p->src.display, why);
        send = 1;
        VX_ERROR("source %s: giving up: %s", vx_video_source_name(src), message ? message : "");
        break;
    case VX_VIDEO_EVENT_ENDED:
        p->open_failed = 1;
        snprintf(text, sizeof text, "source '%s' ended", p->src.display);
        send = 1;
        break;
    }
    pthread_mutex_unlock(&p->lock);
    if (send)
        publish_error(p, text);
}

/* The part of the network input the letterbox fills with a w x h picture. */
static void det_size(const vx_detector *det, int w, int h, int *dw, int *dh)
{
    const vx_family_info *fi = vx_detector_info(det);
    double s = fmin((double)fi->input_w / w, (double)fi->input_h / h);
    *dw = (int)lround(w * s);
    *dh = (int)lround(h * s);
}

static void encode_and_publish(vx_pipeline *p, vx_jpeg_encoder *enc, const vx_pipeline_msg *res,
                               const vx_image *img, vx_msg_type type)
{
    double t0 = vx_now_s();
    const uint8_t *jpeg;
    size_t size;
    const vx_pipeline_det *dets = type == VX_MSG_JPEG_OVERLAY ? res->dets : NULL;
    static const vx_pipeline_det none[1];
    if (type == VX_MSG_JPEG_OVERLAY && !dets)
        dets = none; /* overlay of a frame without detections: still a copy */
    if (vx_jpeg_encode(enc, img, dets, res->ndet, &jpeg, &size) != VX_OK) {
        VX_WARN("source %s: %s", p->src.display, vx_last_error());
        return;
    }
    vx_pipeline_msg *msg = vx_pipeline_msg_new(type, 0, size, NULL);
    if (!msg)
        return;
    memcpy(vx_pipeline_msg_data(msg), jpeg, size);
    msg->frame_id = res->frame_id;
    msg->frame_count = res->frame_count;
    msg->capture_mono_s = res->capture_mono_s;
    msg->capture_wall_s = res->capture_wall_s;
    msg->width = img->width;
    msg->height = img->height;
    msg->published_mono_s = vx_now_s();
    vx_fanout_publish(p->fanout, msg);
    vx_pipeline_msg_release(msg);
    vx_hist_add(&p->stages[VX_STAGE_JPEG], vx_now_s() - t0);
    pthread_mutex_lock(&p->lock);
    p->jpeg_frames++;
    pthread_mutex_unlock(&p->lock);
}

static void *worker_main(void *arg)
{
    vx_pipeline *p = arg;
    vx_pipelines *m = p->m;
    vx_detector *det = m->o.detector;
    vx_video_source *dsrc = p->use_sub ? vx_video_source_substream(p->video) : p->video;
    vx_detection *dets = malloc((size_t)m->max_det * sizeof *dets);
    vx_jpeg_encoder *enc = NULL;
    const vx_family_info *fi = vx_detector_info(det);
    vx_video_scaler *scaler = NULL;
    if (p->scaled && vx_video_scaler_create(&scaler) != VX_OK)
        VX_WARN("source %s: %s; detecting on full frames", p->src.display, vx_last_error());
    uint64_t last = 0;
    double last_capture = -1e300;
    double wait_start = vx_now_s();
    const double min_gap = m->o.target_fps > 0 ? 0.9 / m->o.target_fps : 0;

    while (dets && !atomic_load(&p->stop)) {
        vx_video_frame *f = NULL;
        vx_err err = vx_video_source_wait(dsrc, last, WAIT_SLICE_S, &f);
        if (err) {
            /* Dead or ended: the event already told the subscribers.  Idle
             * until stopped (the reaper stops client sources; the default
             * one waits for the server to shut down). */
            pthread_mutex_lock(&p->lock);
            while (!atomic_load(&p->stop))
                pthread_cond_wait(&p->stop_cond, &p->lock);
            pthread_mutex_unlock(&p->lock);
            break;
        }
        if (!f)
            continue;
        last = f->seq;
        double t_got = vx_now_s();
        if (f->capture_mono_s - last_capture < min_gap) {
            vx_video_frame_release(f);
            pthread_mutex_lock(&p->lock);
            p->frames_skipped++;
            pthread_mutex_unlock(&p->lock);
            continue;
        }
        last_capture = f->capture_mono_s;
        vx_hist_add(&p->stages[VX_STAGE_GRAB_WAIT], t_got - wait_start);

        /* Dual stream without a camera substream: the detector reads a
         * SUBSTREAM_SCALE copy (libswscale), made outside the detector
         * lock so that sources scale in parallel. */
        const vx_image *dimg = &f->image;
        vx_image copy;
        if (scaler) {
            int sw, sh;
            vx_video_scaled_size(f->width, f->height, m->o.substream_scale, fi->input_w, fi->input_h, &sw,
                                 &sh);
            if ((sw != f->width || sh != f->height) &&
                !(err = vx_video_scaler_scale(scaler, &f->image, sw, sh, &copy)))
                dimg = &copy;
        }
        double t_scaled = vx_now_s();

        pthread_mutex_lock(&m->det_lock);
        double t1 = vx_now_s();
        int n = 0;
        if (!err)
            err = vx_detector_preprocess(det, dimg);
        double t2 = vx_now_s();
        if (!err)
            err = vx_detector_infer(det);
        double t3 = vx_now_s();
        if (!err)
            err = vx_detector_postprocess(det, dets, m->max_det, &n);
        double t4 = vx_now_s();
        char errbuf[256] = "";
        if (err)
            snprintf(errbuf, sizeof errbuf, "%s", vx_last_error());
        pthread_mutex_unlock(&m->det_lock);

        vx_hist_add(&p->stages[VX_STAGE_DETECTOR_WAIT], t1 - t_scaled);
        vx_hist_add(&p->stages[VX_STAGE_PREPROCESS], (t2 - t1) + (t_scaled - t_got));
        vx_hist_add(&p->stages[VX_STAGE_INFERENCE], t3 - t2);
        vx_hist_add(&p->stages[VX_STAGE_POSTPROCESS], t4 - t3);

        int dw, dh;
        det_size(det, dimg->width, dimg->height, &dw, &dh);
        vx_video_stats vs;
        vx_video_source_stats(p->video, &vs);
        /* With a substream, the main stream's newest frame (taken after
         * detection, so the closest in time) is what clients see and what
         * boxes are scaled to.  Before its first frame, its size is
         * unknown and results stay in the substream's pixels (the
         * normalised boxes are the same). */
        vx_video_frame *mainf = NULL;
        int full_w = f->width, full_h = f->height;
        if (p->use_sub) {
            vx_video_source_wait(p->video, 0, 0, &mainf);
            if (mainf) {
                full_w = mainf->width;
                full_h = mainf->height;
            } else if (vs.width > 0 && vs.height > 0) {
                full_w = vs.width;
                full_h = vs.height;
            }
        }
        /* MJPEG shows the main stream only. */
        const vx_image *shown = p->use_sub ? (mainf ? &mainf->image : NULL) : &f->image;

        pthread_mutex_lock(&p->lock);
        if (err) {
            p->detect_errors++;
            if (p->detect_errors == 1 || p->detect_errors % 1000 == 0)
                VX_WARN("source %s: detection failed (%llu times): %s", p->src.display,
                        (unsigned long long)p->detect_errors, errbuf);
        }
        p->got_frame = 1;
        p->open_failed = 0;
        p->error_sent = 0;
        p->frames_processed++;
        vx_rate_add(&p->processed_rate, t4);
        double dt = (t4 - t1) + (t_scaled - t_got);
        p->detect_ewma_s =
            p->detect_ewma_s > 0 ? p->detect_ewma_s + EWMA_ALPHA * (dt - p->detect_ewma_s) : dt;
        p->det_w = dimg->width;
        p->det_h = dimg->height;
        p->frame_w = f->width;
        vx_pipeline_fps fps = {p->detect_ewma_s > 0 ? 1.0 / p->detect_ewma_s : 0, vs.capture_fps,
                               vx_rate_get(&p->processed_rate, t4)};
        uint64_t frame_no = p->frames_processed;
        pthread_mutex_unlock(&p->lock);

        vx_pipeline_msg *res = vx_pipeline_msg_new(VX_MSG_RESULT, err ? 0 : n, 0, NULL);
        if (res) {
            res->frame_id = f->seq;
            res->frame_count = frame_no;
            res->capture_mono_s = f->capture_mono_s;
            res->capture_wall_s = f->capture_wall_s;
            res->width = full_w;
            res->height = full_h;
            res->det_width = dw;
            res->det_height = dh;
            res->dual_stream = p->use_sub || dimg->width < f->width;
            res->fps = fps;
            vx_pipeline_det *out = vx_pipeline_msg_dets(res);
            /* Boxes come back in the detection image's pixels (the
             * substream's or the copy's): scale them to the full frame. */
            float sx = (float)full_w / (float)dimg->width, sy = (float)full_h / (float)dimg->height;
            for (int i = 0; i < res->ndet; i++) {
                out[i].x1 = dets[i].x1 * sx;
                out[i].y1 = dets[i].y1 * sy;
                out[i].x2 = dets[i].x2 * sx;
                out[i].y2 = dets[i].y2 * sy;
                out[i].conf = dets[i].conf;
                out[i].cls = dets[i].cls;
                out[i].name = vx_detector_class_name(det, dets[i].cls);
            }
            /* Gate: its events are committed to the store inside, before
             * this message (which carries them) is published. */
            double gate_s = 0;
            if (p->gate && !err) {
                double tg = vx_now_s();
                res->gate_json =
                    vx_gate_stage_run(p->gate, out, res->ndet, full_w, full_h, f->pts_s, f->capture_wall_s);
                gate_s = vx_now_s() - tg;
                vx_hist_add(&p->stages[VX_STAGE_GATE], gate_s);
            }
            res->published_mono_s = vx_now_s();
            vx_fanout_publish(p->fanout, res);
            double t5 = vx_now_s();
            vx_hist_add(&p->stages[VX_STAGE_PUBLISH], t5 - t4 - gate_s);
            pthread_mutex_lock(&p->lock);
            p->messages++;
            pthread_mutex_unlock(&p->lock);

            /* JPEG after the detections went out: MJPEG viewers must not
             * delay the WebSocket clients' results. */
            unsigned wanted = vx_fanout_wanted(p->fanout);
            if (shown && (wanted & (VX_MSG_JPEG | VX_MSG_JPEG_OVERLAY))) {
                if (!enc && vx_jpeg_encoder_create(m->o.jpeg_quality, &enc) != VX_OK)
                    VX_WARN("source %s: %s", p->src.display, vx_last_error());
                if (enc && (wanted & VX_MSG_JPEG))
                    encode_and_publish(p, enc, res, shown, VX_MSG_JPEG);
                if (enc && (wanted & VX_MSG_JPEG_OVERLAY))
                    encode_and_publish(p, enc, res, shown, VX_MSG_JPEG_OVERLAY);
            }
            vx_pipeline_msg_release(res);
        }
        vx_video_frame_release(mainf);
        vx_video_frame_release(f);
        wait_start = vx_now_s();
    }
    vx_jpeg_encoder_destroy(enc);
    vx_video_scaler_destroy(scaler);
    free(dets);
    return NULL;
}

static void pipeline_destroy(vx_pipeline *p)
{
    if (!p)
        return;
    if (p->thread_started) {
        pthread_mutex_lock(&p->lock);
        atomic_store(&p->stop, 1);
        pthread_cond_broadcast(&p->stop_cond);
        pthread_mutex_unlock(&p->lock);
        pthread_join(p->thread, NULL);
    }
    vx_video_source_destroy(p->video);
    vx_fanout_destroy(p->fanout);
    vx_gate_stage_destroy(p->gate);
    pthread_cond_destroy(&p->stop_cond);
    pthread_mutex_destroy(&p->lock);
    VX_INFO("pipeline %s: stopped", p->src.display);
    free(p);
}

/* Called with m->lock held. */
/* Gives p a gate engine (with gate rules; none yet).  A source's variants
 * (full resolution, substream) that both run one say which in their rows.
 * Under m->lock, or before p is listed. */
static vx_err attach_gate(vx_pipelines *m, vx_pipeline *p)
{
    if (!m->gate_cfg || p->gate)
        return VX_OK;
    const char *variant = strchr(p->key + strlen(p->src.key), '#');
    char label[VX_SOURCE_KEY_MAX + 16];
    snprintf(label, sizeof label, "%s%s", p->src.display, variant ? variant : "");
    vx_gate_stage *g;
    vx_err err = vx_gate_stage_create(m->gate_cfg, m->o.store, m->o.mqtt, label, &g);
    if (!err)
        p->gate = g;
    return err;
}

static vx_err pipeline_start(vx_pipelines *m, const vx_source_resolved *r, int use_sub, int scaled, int gated,
                             const char *key, vx_pipeline **out)
{
    vx_pipeline *p = calloc(1, sizeof *p);
    if (!p)
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    p->m = m;
    p->src = *r;
    p->use_sub = use_sub;
    p->scaled = scaled;
    snprintf(p->key, sizeof p->key, "%s", key);
    p->started_s = vx_now_s();
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->stop_cond, NULL);
    vx_rate_init(&p->processed_rate, 2.0);
    for (int i = 0; i < VX_STAGE_COUNT; i++)
        vx_hist_init(&p->stages[i]);
    vx_hist_init(&p->latency);
    vx_err err = vx_fanout_create(&p->fanout);
    if (!err && gated)
        err = attach_gate(m, p);
    if (!err) {
        vx_video_source_opts vo;
        vx_video_source_opts_default(&vo);
        vo.source = r->open;
        vo.substream = use_sub ? r->substream : NULL;
        vo.realtime = m->o.realtime;
        vo.lossless = !m->o.async_grabber;
        vo.decoder_threads = m->o.decoder_threads;
        vo.on_event = on_video_event;
        vo.user = p;
        err = vx_video_source_create(&vo, &p->video);
    }
    if (!err) {
        if (pthread_create(&p->thread, NULL, worker_main, p) != 0)
            err = vx_fail(VX_ERR_NOMEM, "cannot start a pipeline thread");
        else
            p->thread_started = 1;
    }
    if (err) {
        pipeline_destroy(p);
        return err;
    }
    p->next = m->list;
    m->list = p;
    m->totals.running++;
    m->totals.started++;
    char how[64];
    if (use_sub)
        snprintf(how, sizeof how, "detection on the camera's substream");
    else if (scaled)
        snprintf(how, sizeof how, "detection on a %g-scale copy", m->o.substream_scale);
    else
        snprintf(how, sizeof how, "detection at full resolution");
    VX_INFO("pipeline %s: started (%s, %s)", p->src.display, vx_video_kind_name(r->kind), how);
    *out = p;
    return VX_OK;
}

/* ---- the manager ------------------------------------------------------------- */

static void *reaper_main(void *arg)
{
    vx_pipelines *m = arg;
    pthread_mutex_lock(&m->lock);
    while (!m->stopping) {
        double now = vx_now_s(), next = now + 3600;
        vx_pipeline *dead = NULL;
        for (vx_pipeline **pp = &m->list; *pp;) {
            vx_pipeline *p = *pp;
            if (p != m->default_p && p->nsubs == 0) {
                double due = p->idle_since + m->o.idle_stop_s;
                if (due <= now) {
                    *pp = p->next;
                    p->next = dead;
                    dead = p;
                    m->totals.running--;
                    m->totals.stopped++;
                    continue;
                }
                if (due < next)
                    next = due;
            }
            pp = &p->next;
        }
        if (dead) {
            /* Joining threads and closing inputs takes a while: not under
             * the lock that subscribers need. */
            pthread_mutex_unlock(&m->lock);
            while (dead) {
                vx_pipeline *p = dead;
                dead = p->next;
                pipeline_destroy(p);
            }
            pthread_mutex_lock(&m->lock);
            continue;
        }
        double wait = next - now;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        double whole = floor(wait);
        ts.tv_sec += (time_t)whole;
        ts.tv_nsec += (long)((wait - whole) * 1e9);
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&m->cond, &m->lock, &ts);
    }
    pthread_mutex_unlock(&m->lock);
    return NULL;
}

void vx_pipelines_destroy(vx_pipelines *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    m->stopping = 1;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
    if (m->reaper_started)
        pthread_join(m->reaper, NULL);
    while (m->list) {
        vx_pipeline *p = m->list;
        m->list = p->next;
        if (p->nsubs)
            VX_WARN("pipeline %s: destroyed with %d subscribers", p->src.display, p->nsubs);
        pipeline_destroy(p);
    }
    pthread_cond_destroy(&m->cond);
    pthread_mutex_destroy(&m->lock);
    pthread_mutex_destroy(&m->det_lock);
    pthread_mutex_destroy(&m->gate_update_lock);
    free(m->gate_cfg);
    free(m->rules_path);
    free(m->default_source);
    free(m->precision);
    free(m);
}

vx_err vx_pipelines_create(const vx_pipelines_opts *opts, vx_pipelines **out)
{
    *out = NULL;
    if (!opts->detector || !opts->policy)
        return vx_fail(VX_ERR_INVALID, "pipelines need a detector and a source policy");
    if (opts->max_sources < 1 || opts->idle_stop_s < 0 || opts->target_fps < 0 || opts->decoder_threads < 0 ||
        opts->jpeg_quality < 1 || opts->jpeg_quality > 100)
        return vx_fail(VX_ERR_INVALID, "pipeline options out of range");
    vx_pipelines *m = calloc(1, sizeof *m);
    if (!m)
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    m->o = *opts;
    m->precision = strdup(opts->precision ? opts->precision : "FP32");
    m->default_source = opts->default_source ? strdup(opts->default_source) : NULL;
    m->o.precision = m->precision;
    m->o.default_source = m->default_source;
    vx_detect_opts dopts;
    vx_detector_get_opts(opts->detector, &dopts);
    m->max_det = dopts.max_det > 0 ? dopts.max_det : 30;
    pthread_mutex_init(&m->lock, NULL);
    pthread_mutex_init(&m->det_lock, NULL);
    pthread_mutex_init(&m->gate_update_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (!m->precision || (opts->default_source && !m->default_source)) {
        vx_pipelines_destroy(m);
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    }

    vx_err err = VX_OK;
    m->o.gate_rules_path = NULL;
    if (opts->gate_rules_path && *opts->gate_rules_path) {
        m->gate_cfg = malloc(sizeof *m->gate_cfg);
        m->rules_path = strdup(opts->gate_rules_path);
        if (!m->gate_cfg || !m->rules_path)
            err = vx_fail(VX_ERR_NOMEM, "out of memory");
        if (!err)
            err = vx_gate_config_load(opts->gate_rules_path, m->gate_cfg, NULL);
        if (!err)
            m->o.gate_rules_path = m->rules_path;
    }
    if (!err && m->default_source) {
        vx_source_resolved *r = malloc(sizeof *r);
        if (!r)
            err = vx_fail(VX_ERR_NOMEM, "out of memory");
        if (!err)
            err = vx_source_policy_resolve(opts->policy, NULL, r);
        if (!err) {
            pthread_mutex_lock(&m->lock);
            err = pipeline_start(m, r, 0, m->o.substream_scale < 1, 1, r->key, &m->default_p);
            pthread_mutex_unlock(&m->lock);
        }
        free(r);
    }
    if (!err) {
        if (pthread_create(&m->reaper, NULL, reaper_main, m) != 0)
            err = vx_fail(VX_ERR_NOMEM, "cannot start the pipeline reaper thread");
        else
            m->reaper_started = 1;
    }
    if (err) {
        vx_pipelines_destroy(m);
        return err;
    }
    *out = m;
    return VX_OK;
}

vx_err vx_pipelines_subscribe(vx_pipelines *m, const vx_pipeline_sub_opts *o, vx_pipeline_sub **out)
{
    *out = NULL;
    vx_source_resolved *r = malloc(sizeof *r);
    if (!r)
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    vx_err err = vx_source_policy_resolve(m->o.policy, o->source, r);
    if (err) {
        pthread_mutex_lock(&m->lock);
        if (err == VX_ERR_DENIED)
            m->totals.refused++;
        else
            m->totals.malformed++;
        pthread_mutex_unlock(&m->lock);
        free(r);
        return err;
    }
    /* Three ways to detect, three pipelines: on the camera's substream, on
     * a SUBSTREAM_SCALE copy (the default, also of the default source), or
     * at full resolution (use_substream=false). */
    int use_sub = o->use_substream && r->substream[0];
    int scaled = !use_sub && o->use_substream && m->o.substream_scale < 1;
    int full = !use_sub && !scaled && m->o.substream_scale < 1;
    char *key = malloc(VX_SOURCE_KEY_MAX + 8);
    vx_pipeline_sub *s = calloc(1, sizeof *s);
    if (!key || !s) {
        free(key);
        free(s);
        free(r);
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    }
    snprintf(key, VX_SOURCE_KEY_MAX + 8, "%s%s", r->key, use_sub ? "#substream" : full ? "#full" : "");

    pthread_mutex_lock(&m->lock);
    vx_pipeline *p = NULL;
    for (vx_pipeline *q = m->list; q && !p; q = q->next)
        if (!strcmp(q->key, key))
            p = q;
    if (!p) {
        if (m->totals.running >= m->o.max_sources) {
            m->totals.over_limit++;
            err = vx_fail(VX_ERR_UNAVAILABLE,
                          "source '%s' refused: the server already runs %d sources (its limit)", r->display,
                          m->totals.running);
        } else {
            err = pipeline_start(m, r, use_sub, scaled, o->use_substream || o->gate, key, &p);
        }
    } else if (o->gate) {
        err = attach_gate(m, p); /* a gate-check client on a variant that ran without one */
    }
    if (!err)
        err = vx_fanout_add(p->fanout, o->types, o->queue, o->notify, o->user, &s->sub);
    if (!err) {
        s->p = p;
        p->nsubs++;
        m->totals.subscribers++;
        m->totals.subscribes++;
        pthread_mutex_lock(&p->lock);
        char text[512] = "", why[300];
        if (p->open_failed) {
            client_text(p, p->error, why, sizeof why);
            snprintf(text, sizeof text, "cannot open source '%s': %s", p->src.display, why);
        }
        pthread_mutex_unlock(&p->lock);
        if (text[0]) {
            vx_pipeline_msg *msg = vx_pipeline_msg_new(VX_MSG_ERROR, 0, 0, text);
            if (msg) {
                vx_fanout_send(p->fanout, s->sub, msg);
                vx_pipeline_msg_release(msg);
            }
        }
    } else if (p && p->nsubs == 0) {
        /* A fresh pipeline nobody could join: let the reaper take it. */
        p->idle_since = vx_now_s();
        pthread_cond_broadcast(&m->cond);
    }
    pthread_mutex_unlock(&m->lock);
    free(key);
    free(r);
    if (err) {
        free(s);
        return err;
    }
    *out = s;
    return VX_OK;
}

void vx_pipelines_unsubscribe(vx_pipelines *m, vx_pipeline_sub *s)
{
    if (!s)
        return;
    vx_pipeline *p = s->p;
    /* Remove from the fan-out first (no more notifications), outside
     * m->lock: the fan-out lock may be held by a publisher for a while. */
    vx_fanout_remove(p->fanout, s->sub);
    pthread_mutex_lock(&m->lock);
    p->nsubs--;
    m->totals.subscribers--;
    if (p->nsubs == 0) {
        p->idle_since = vx_now_s();
        pthread_cond_broadcast(&m->cond);
    }
    pthread_mutex_unlock(&m->lock);
    free(s);
}

vx_pipeline_msg *vx_pipeline_sub_pop(vx_pipeline_sub *s, int *more)
{
    return vx_sub_pop(s->sub, more);
}

void vx_pipeline_sub_delivered(vx_pipeline_sub *s, const vx_pipeline_msg *msg, double now_mono_s)
{
    if (msg->type != VX_MSG_ERROR && msg->capture_mono_s > 0)
        vx_hist_add(&s->p->latency, now_mono_s - msg->capture_mono_s);
}

uint64_t vx_pipeline_sub_drops(vx_pipeline_sub *s)
{
    return vx_sub_drops(s->sub);
}

int vx_pipeline_sub_pending(vx_pipeline_sub *s)
{
    return vx_sub_pending(s->sub);
}

void vx_pipeline_sub_info_get(vx_pipeline_sub *s, vx_pipeline_sub_info *out)
{
    vx_pipeline *p = s->p;
    memset(out, 0, sizeof *out);
    out->display = p->src.display;
    pthread_mutex_lock(&p->lock);
    /* Before the first frame the sizes are unknown: the mode says it. */
    out->dual_stream = p->use_sub || (p->got_frame ? p->det_w < p->frame_w : p->scaled);
    pthread_mutex_unlock(&p->lock);
    out->substream = p->use_sub;
    out->async_grabber = p->m->o.async_grabber;
    out->batch_inference = p->m->o.batch_size > 1;
    out->precision = p->m->o.precision;
    out->substream_scale = p->m->o.substream_scale;
}

int vx_pipelines_stats(vx_pipelines *m, vx_pipeline_stats **out, vx_pipelines_totals *totals)
{
    *out = NULL;
    pthread_mutex_lock(&m->lock);
    if (totals)
        *totals = m->totals;
    int n = 0;
    for (vx_pipeline *p = m->list; p; p = p->next)
        n++;
    vx_pipeline_stats *arr = n ? calloc((size_t)n, sizeof *arr) : NULL;
    if (!arr) {
        pthread_mutex_unlock(&m->lock);
        return 0;
    }
    int i = 0;
    double now = vx_now_s();
    for (vx_pipeline *p = m->list; p; p = p->next, i++) {
        vx_pipeline_stats *st = &arr[i];
        snprintf(st->display, sizeof st->display, "%s", p->src.display);
        st->kind = p->src.kind;
        st->is_default = p == m->default_p;
        st->substream = p->use_sub;
        st->uptime_s = now - p->started_s;
        st->subscribers = p->nsubs;
        vx_video_source_stats(p->video, &st->video);
        if (p->use_sub)
            vx_video_source_stats(vx_video_source_substream(p->video), &st->detect);
        else
            st->detect = st->video;
        st->queue_drops = vx_fanout_drops(p->fanout);
        pthread_mutex_lock(&p->lock);
        st->fps.inference = p->detect_ewma_s > 0 ? 1.0 / p->detect_ewma_s : 0;
        st->fps.capture = st->video.capture_fps;
        st->fps.processed = vx_rate_get(&p->processed_rate, now);
        st->frames_processed = p->frames_processed;
        st->frames_skipped = p->frames_skipped;
        st->detect_errors = p->detect_errors;
        st->jpeg_frames = p->jpeg_frames;
        st->messages = p->messages;
        st->open_failed = p->open_failed;
        snprintf(st->error, sizeof st->error, "%s", p->error);
        st->det_width = p->det_w;
        st->det_height = p->det_h;
        pthread_mutex_unlock(&p->lock);
        for (int k = 0; k < VX_STAGE_COUNT; k++)
            vx_hist_read(&p->stages[k], &st->stages[k]);
        vx_hist_read(&p->latency, &st->latency);
    }
    pthread_mutex_unlock(&m->lock);
    *out = arr;
    return n;
}

/* ---- the gate, across pipelines ------------------------------------------------ */

int vx_pipelines_gate_enabled(vx_pipelines *m)
{
    return m->gate_cfg != NULL;
}

vx_err vx_pipelines_gate_config(vx_pipelines *m, vx_gate_config *out)
{
    if (!m->gate_cfg)
        return vx_fail(VX_ERR_UNAVAILABLE, "the gate check is not configured (start with --gate-rules FILE)");
    pthread_mutex_lock(&m->lock);
    *out = *m->gate_cfg;
    pthread_mutex_unlock(&m->lock);
    return VX_OK;
}

vx_err vx_pipelines_gate_update(vx_pipelines *m, const char *text, size_t len, vx_gate_diag *diag)
{
    if (!m->gate_cfg)
        return vx_fail(VX_ERR_UNAVAILABLE, "the gate check is not configured (start with --gate-rules FILE)");
    vx_gate_config *cfg = malloc(sizeof *cfg);
    char *dir = strdup(m->rules_path);
    if (!cfg || !dir) {
        free(cfg);
        free(dir);
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    }
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    vx_err err = vx_gate_config_parse(text, len, "POST /gate/config", slash ? dir : ".", cfg, diag);
    char *doc = NULL;
    if (!err) {
        /* Persisted in its normalised form (zones inline): the file then
         * stands alone, and reads back to exactly this config. */
        doc = vx_gate_config_json(cfg);
        if (!doc)
            err = vx_fail(VX_ERR_NOMEM, "out of memory");
    }
    pthread_mutex_lock(&m->gate_update_lock);
    if (!err)
        err = vx_gate_rules_save(m->rules_path, doc, strlen(doc));
    if (!err) {
        pthread_mutex_lock(&m->lock);
        *m->gate_cfg = *cfg;
        for (vx_pipeline *p = m->list; p; p = p->next)
            if (p->gate && vx_gate_set_config(vx_gate_stage_engine(p->gate), cfg) != VX_OK)
                VX_ERROR("pipeline %s: the new gate rules were refused: %s", p->src.display, vx_last_error());
        pthread_mutex_unlock(&m->lock);
        VX_INFO("gate: rules replaced (gate_id %s), saved to %s; the previous file is %s.bak", cfg->gate_id,
                m->rules_path, m->rules_path);
    }
    pthread_mutex_unlock(&m->gate_update_lock);
    free(doc);
    free(dir);
    free(cfg);
    return err;
}

/* Calls fn on every running engine, under m->lock (the engine functions
 * take effect between frames and do not block on the pipeline). */
static vx_err each_gate(vx_pipelines *m, void (*fn)(vx_gate *))
{
    if (!m->gate_cfg)
        return vx_fail(VX_ERR_UNAVAILABLE, "the gate check is not configured (start with --gate-rules FILE)");
    pthread_mutex_lock(&m->lock);
    for (vx_pipeline *p = m->list; p; p = p->next)
        if (p->gate)
            fn(vx_gate_stage_engine(p->gate));
    pthread_mutex_unlock(&m->lock);
    return VX_OK;
}

vx_err vx_pipelines_gate_reset(vx_pipelines *m)
{
    /* The sessions the engines forget can never conclude: closed in the
     * store first (a verdict that still comes before the reset takes
     * effect simply overwrites this). */
    if (m->gate_cfg && m->o.store) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t n =
            vx_store_abandon_sessions(m->o.store, NULL, "reset", (double)ts.tv_sec + ts.tv_nsec * 1e-9);
        if (n < 0)
            VX_WARN("gate: %s", vx_last_error());
    }
    vx_err err = each_gate(m, vx_gate_reset);
    if (!err)
        VX_INFO("gate: reset (tracks, roles and open sessions forgotten)");
    return err;
}

vx_err vx_pipelines_gate_reset_counts(vx_pipelines *m)
{
    vx_err err = each_gate(m, vx_gate_reset_counts);
    if (!err)
        VX_INFO("gate: counts reset");
    return err;
}

static const char *pipeline_label(const vx_pipeline *p, char *buf, size_t len)
{
    const char *variant = strchr(p->key + strlen(p->src.key), '#');
    snprintf(buf, len, "%s%s", p->src.display, variant ? variant : "");
    return buf;
}

json_t *vx_pipelines_gate_counts(vx_pipelines *m)
{
    if (!m->gate_cfg)
        return NULL;
    vx_gate_counts sum;
    memset(&sum, 0, sizeof sum);
    json_t *sources = json_object();
    char label[VX_SOURCE_KEY_MAX + 16];
    pthread_mutex_lock(&m->lock);
    const char *gate_id = m->gate_cfg->gate_id;
    for (vx_pipeline *p = m->list; p; p = p->next) {
        if (!p->gate)
            continue;
        vx_gate_counts c;
        vx_gate_get_counts(vx_gate_stage_engine(p->gate), &c);
        sum.gate_entries += c.gate_entries;
        sum.gate_exits += c.gate_exits;
        sum.anchor_entries += c.anchor_entries;
        sum.anchor_exits += c.anchor_exits;
        sum.in_gate += c.in_gate;
        sum.passed_through += c.passed_through;
        sum.checks_completed += c.checks_completed;
        sum.checks_failed += c.checks_failed;
        for (int k = 0; k < 5; k++)
            sum.failed_by_reason[k] += c.failed_by_reason[k];
        sum.frames += c.frames;
        json_object_set_new(sources, pipeline_label(p, label, sizeof label), vx_gate_counts_to_json(&c));
    }
    json_t *o = vx_gate_counts_to_json(&sum);
    if (o) {
        json_object_set_new(o, "gate_id", json_string(gate_id));
        json_object_set_new(o, "sources", sources);
    } else {
        json_decref(sources);
    }
    pthread_mutex_unlock(&m->lock);
    return o;
}

json_t *vx_pipelines_gate_state(vx_pipelines *m)
{
    if (!m->gate_cfg)
        return NULL;
    json_t *o = json_object();
    json_t *sources = json_object();
    char label[VX_SOURCE_KEY_MAX + 16];
    pthread_mutex_lock(&m->lock);
    json_object_set_new(o, "gate_id", json_string(m->gate_cfg->gate_id));
    for (vx_pipeline *p = m->list; p; p = p->next)
        if (p->gate)
            json_object_set_new(sources, pipeline_label(p, label, sizeof label),
                                vx_gate_stage_state(p->gate));
    pthread_mutex_unlock(&m->lock);
    json_object_set_new(o, "sources", sources);
    return o;
}
