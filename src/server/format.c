/*
 * The server's message and document formats.  See server_internal.h and
 * the endpoint list in vx_server.h.
 *
 * Numbers are rounded before they are encoded (confidences to 4 decimals,
 * normalised boxes to 5, about 0.02 pixel at 4K, timestamps to the
 * millisecond) and printed with 13 significant digits: enough for a Unix
 * time in milliseconds, few enough that a rounded value reads as written
 * (0.9123, not 0.91230000000000011).  Strings that may come from outside
 * (source names, FFmpeg's error texts) are made valid UTF-8 first, since
 * JSON cannot carry anything else.
 */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_internal.h"

#define JSON_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(13))

static double round_to(double v, double unit)
{
    if (!isfinite(v))
        return 0;
    return round(v / unit) * unit;
}

/* A JSON string from arbitrary bytes: bytes that are not valid UTF-8 become
 * '?'. */
static json_t *jstr(const char *s)
{
    if (!s)
        s = "";
    json_t *j = json_string(s);
    if (j)
        return j;
    size_t n = strlen(s);
    char *copy = malloc(n + 1);
    if (!copy)
        return NULL;
    for (size_t i = 0; i < n; i++)
        copy[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
    copy[n] = 0;
    j = json_string(copy);
    free(copy);
    return j;
}

static char *dump(json_t *obj)
{
    char *s = obj ? json_dumps(obj, JSON_FLAGS) : NULL;
    json_decref(obj);
    return s;
}

char *vx_fmt_connection_info(const vx_server_model *model, const vx_pipeline_sub_info *info,
                             const char *endpoint, int use_substream)
{
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string("connection_info"));
    json_object_set_new(o, "framework", json_string("verolux"));
    json_object_set_new(o, "model_loaded", json_true());
    json_object_set_new(o, "device", jstr(model->device));
    json_object_set_new(o, "source", jstr(info->display));
    json_object_set_new(o, "endpoint", jstr(endpoint));
    json_object_set_new(o, "model", jstr(model->name));
    json_object_set_new(o, "precision", jstr(model->precision));
    json_object_set_new(o, "use_substream", json_boolean(use_substream));
    return dump(o);
}

char *vx_fmt_detections(const vx_pipeline_msg *m)
{
    json_t *arr = json_array();
    double w = m->width > 0 ? m->width : 1, h = m->height > 0 ? m->height : 1;
    for (int i = 0; i < m->ndet; i++) {
        const vx_pipeline_det *d = &m->dets[i];
        json_t *box = json_pack("[ffff]", round_to(d->x1 / w, 1e-5), round_to(d->y1 / h, 1e-5),
                                round_to(d->x2 / w, 1e-5), round_to(d->y2 / h, 1e-5));
        json_t *det = json_object();
        json_object_set_new(det, "cls", jstr(d->name ? d->name : "?"));
        json_object_set_new(det, "cls_id", json_integer(d->cls));
        json_object_set_new(det, "conf", json_real(round_to(d->conf, 1e-4)));
        json_object_set_new(det, "bbox", box);
        json_array_append_new(arr, det);
    }
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string("detections"));
    json_object_set_new(o, "ts", json_real(round_to(m->capture_wall_s, 1e-3)));
    json_object_set_new(o, "frame_id", json_integer((json_int_t)m->frame_id));
    json_object_set_new(o, "fps", json_real(round_to(m->fps.processed, 0.01)));
    json_object_set_new(o, "frame_size", json_pack("[ii]", m->width, m->height));
    json_object_set_new(o, "detections", arr);
    return dump(o);
}

char *vx_fmt_gate_check(const vx_pipeline_msg *m, const vx_pipeline_sub_info *info)
{
    json_t *opt = json_object();
    json_object_set_new(opt, "dual_stream", json_boolean(m->dual_stream));
    json_object_set_new(opt, "async_grabber", json_boolean(info->async_grabber));
    json_object_set_new(opt, "batch_inference", json_boolean(info->batch_inference));
    json_object_set_new(opt, "precision", jstr(info->precision));
    json_object_set_new(opt, "substream_scale", json_real(round_to(info->substream_scale, 1e-4)));
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string("gate_check"));
    json_object_set_new(o, "fps",
                        json_pack("{s:f, s:f}", "inference", round_to(m->fps.inference, 0.01), "capture",
                                  round_to(m->fps.capture, 0.01)));
    json_object_set_new(o, "frame_count", json_integer((json_int_t)m->frame_count));
    json_object_set_new(o, "optimizations", opt);
    if (!m->gate_json || m->gate_json[0] != '{' || m->gate_json[1] == '}') {
        /* No gate rules on this server: present and empty. */
        json_object_set_new(o, "decisions", json_object());
        json_object_set_new(o, "stats", json_object());
        return dump(o);
    }
    /* The gate's part ({"decisions","stats","events",...}) was rendered
     * once by the pipeline for every client: spliced in as text rather
     * than parsed again per client. */
    char *head = dump(o);
    if (!head)
        return NULL;
    size_t hl = strlen(head), gl = strlen(m->gate_json);
    char *out = malloc(hl + gl + 1);
    if (out) {
        memcpy(out, head, hl - 1); /* without the closing brace */
        out[hl - 1] = ',';
        memcpy(out + hl, m->gate_json + 1, gl); /* its members and closing brace, NUL */
    }
    free(head);
    return out;
}

char *vx_fmt_heartbeat(double uptime_s)
{
    return dump(json_pack("{s:s, s:f}", "type", "heartbeat", "uptime_s", round_to(uptime_s, 1e-3)));
}

char *vx_fmt_error(const char *message)
{
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string("error"));
    json_object_set_new(o, "message", jstr(message));
    return dump(o);
}

char *vx_fmt_pong(void)
{
    return dump(json_pack("{s:s}", "type", "pong"));
}

char *vx_fmt_detail(const char *detail)
{
    json_t *o = json_object();
    json_object_set_new(o, "detail", jstr(detail));
    return dump(o);
}

static json_t *model_json(const vx_server_model *m)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", jstr(m->name));
    json_object_set_new(o, "path", jstr(m->path));
    json_object_set_new(o, "family", jstr(m->family));
    json_object_set_new(o, "input_size", json_pack("[ii]", m->input_w, m->input_h));
    json_object_set_new(o, "classes", json_integer(m->classes));
    json_object_set_new(o, "device", jstr(m->device));
    json_object_set_new(o, "backend", jstr(m->backend));
    json_object_set_new(o, "precision", jstr(m->precision));
    json_object_set_new(o, "threads", json_integer(m->threads));
    json_object_set_new(o, "batch_size", json_integer(m->batch_size));
    json_object_set_new(o, "engine", jstr(m->engine));
    return o;
}

char *vx_fmt_health(vx_pipelines *p, const vx_server_model *model, double uptime_s,
                    const vx_server_counters *c)
{
    vx_pipeline_stats *st = NULL;
    vx_pipelines_totals tot;
    int n = vx_pipelines_stats(p, &st, &tot);
    int bad = 0;
    json_t *sources = json_array();
    for (int i = 0; i < n; i++) {
        const vx_pipeline_stats *s = &st[i];
        vx_video_health h = s->video.health;
        if (h != VX_VIDEO_HEALTHY && h != VX_VIDEO_STARTING)
            bad++;
        json_t *o = json_object();
        json_object_set_new(o, "source", jstr(s->display));
        json_object_set_new(o, "kind", json_string(vx_video_kind_name(s->kind)));
        json_object_set_new(o, "default", json_boolean(s->is_default));
        json_object_set_new(o, "health", json_string(vx_video_health_name(h)));
        json_object_set_new(o, "connected", json_boolean(s->video.connected));
        json_object_set_new(o, "last_error", jstr(s->error[0] ? s->error : s->video.last_error));
        json_object_set_new(o, "clients", json_integer(s->subscribers));
        json_object_set_new(o, "frame_size", json_pack("[ii]", s->video.width, s->video.height));
        json_object_set_new(o, "detection_size", json_pack("[ii]", s->det_width, s->det_height));
        json_object_set_new(o, "capture_fps", json_real(round_to(s->fps.capture, 0.01)));
        json_object_set_new(o, "inference_fps", json_real(round_to(s->fps.inference, 0.01)));
        json_object_set_new(o, "processed_fps", json_real(round_to(s->fps.processed, 0.01)));
        json_object_set_new(o, "frames_decoded", json_integer((json_int_t)s->video.frames_decoded));
        json_object_set_new(o, "frames_processed", json_integer((json_int_t)s->frames_processed));
        json_object_set_new(o, "frames_dropped", json_integer((json_int_t)s->video.frames_dropped));
        json_object_set_new(o, "reconnects", json_integer((json_int_t)s->video.reconnects));
        json_object_set_new(o, "last_frame_age_s", json_real(round_to(s->video.last_frame_age_s, 1e-3)));
        json_object_set_new(o, "uptime_s", json_real(round_to(s->uptime_s, 1e-3)));
        json_array_append_new(sources, o);
    }
    free(st);
    json_t *o = json_object();
    json_object_set_new(o, "status", json_string(bad ? "degraded" : "ok"));
    json_object_set_new(o, "uptime_seconds", json_real(round_to(uptime_s, 1e-3)));
    json_object_set_new(o, "model_loaded", json_true());
    json_object_set_new(o, "model", model_json(model));
    json_object_set_new(o, "clients", json_integer(c->clients_ws + c->clients_stream));
    json_object_set_new(o, "sources", sources);
    return dump(o);
}

char *vx_fmt_model_status(const vx_server_model *model)
{
    json_t *o = model_json(model);
    json_object_set_new(o, "model_loaded", json_true());
    return dump(o);
}

char *vx_fmt_info(const vx_server_model *model)
{
    json_t *o = json_object();
    json_object_set_new(o, "model", jstr(model->name));
    json_object_set_new(o, "device", jstr(model->device));
    json_object_set_new(o, "framework", json_string("verolux"));
    json_object_set_new(o, "version", json_string(VX_VERSION));
    json_object_set_new(o, "precision", jstr(model->precision));
    json_object_set_new(o, "endpoints",
                        json_pack("[sssssss]", "/ws/detections", "/ws/gate-check", "/stream", "/health",
                                  "/model-status", "/info", "/metrics"));
    return dump(o);
}

/* ---- Prometheus text ------------------------------------------------------- */

typedef struct {
    char *data;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) VX_PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->data ? b->data + b->len : NULL, b->data ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if (b->data && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 16384;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->data = p;
        b->cap = cap;
    }
}

char *vx_server_prom_escape(const char *in, char *out, size_t len)
{
    size_t o = 0;
    if (!len)
        return out;
    for (const char *p = in ? in : ""; *p && o + 2 < len; p++) {
        if (*p == '\\' || *p == '"') {
            out[o++] = '\\';
            out[o++] = *p;
        } else if (*p == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *p;
        }
    }
    out[o] = 0;
    return out;
}

static void help(sbuf *b, const char *name, const char *type, const char *text)
{
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

static void hist(sbuf *b, const char *name, const char *labels, const vx_hist_snap *h)
{
    uint64_t cum = 0;
    for (int i = 0; i < VX_HIST_BUCKETS - 1; i++) {
        cum += h->counts[i];
        sb_printf(b, "%s_bucket{%s,le=\"%g\"} %llu\n", name, labels, vx_hist_bounds[i],
                  (unsigned long long)cum);
    }
    cum += h->counts[VX_HIST_BUCKETS - 1];
    sb_printf(b, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels, (unsigned long long)cum);
    sb_printf(b, "%s_sum{%s} %.9g\n", name, labels, h->sum_s);
    sb_printf(b, "%s_count{%s} %llu\n", name, labels, (unsigned long long)h->count);
}

char *vx_fmt_metrics(vx_pipelines *p, const vx_server_counters *c, double uptime_s)
{
    vx_pipeline_stats *st = NULL;
    vx_pipelines_totals t;
    int n = vx_pipelines_stats(p, &st, &t);
    sbuf b = {0};

    help(&b, "verolux_uptime_seconds", "gauge", "Seconds since the server started.");
    sb_printf(&b, "verolux_uptime_seconds %.3f\n", uptime_s);
    help(&b, "verolux_pipelines_running", "gauge", "Pipelines (one per source) running now.");
    sb_printf(&b, "verolux_pipelines_running %d\n", t.running);
    int decoders = 0;
    for (int i = 0; i < n; i++)
        decoders += 1 + st[i].substream;
    help(&b, "verolux_decoders_running", "gauge",
         "Video decoders running now (one per source, plus substreams).");
    sb_printf(&b, "verolux_decoders_running %d\n", decoders);
    help(&b, "verolux_pipelines_started_total", "counter", "Pipelines started.");
    sb_printf(&b, "verolux_pipelines_started_total %llu\n", (unsigned long long)t.started);
    help(&b, "verolux_pipelines_stopped_total", "counter", "Pipelines stopped after their last client left.");
    sb_printf(&b, "verolux_pipelines_stopped_total %llu\n", (unsigned long long)t.stopped);
    help(&b, "verolux_source_refusals_total", "counter", "Sources refused to clients, by reason.");
    sb_printf(&b, "verolux_source_refusals_total{reason=\"denied\"} %llu\n", (unsigned long long)t.refused);
    sb_printf(&b, "verolux_source_refusals_total{reason=\"malformed\"} %llu\n",
              (unsigned long long)t.malformed);
    sb_printf(&b, "verolux_source_refusals_total{reason=\"limit\"} %llu\n", (unsigned long long)t.over_limit);
    help(&b, "verolux_subscriptions_total", "counter", "Clients subscribed to a pipeline.");
    sb_printf(&b, "verolux_subscriptions_total %llu\n", (unsigned long long)t.subscribes);
    help(&b, "verolux_clients", "gauge", "Connected streaming clients, by kind.");
    sb_printf(&b, "verolux_clients{kind=\"websocket\"} %d\n", c->clients_ws);
    sb_printf(&b, "verolux_clients{kind=\"mjpeg\"} %d\n", c->clients_stream);
    help(&b, "verolux_connections_total", "counter", "Streaming connections accepted, by kind.");
    sb_printf(&b, "verolux_connections_total{kind=\"websocket\"} %llu\n",
              (unsigned long long)c->connections_ws);
    sb_printf(&b, "verolux_connections_total{kind=\"mjpeg\"} %llu\n",
              (unsigned long long)c->connections_stream);
    help(&b, "verolux_http_requests_total", "counter", "Plain HTTP requests answered, by status class.");
    for (int k = 2; k <= 5; k++)
        sb_printf(&b, "verolux_http_requests_total{code=\"%dxx\"} %llu\n", k,
                  (unsigned long long)c->http_status[k]);
    help(&b, "verolux_ws_messages_sent_total", "counter", "WebSocket messages written.");
    sb_printf(&b, "verolux_ws_messages_sent_total %llu\n", (unsigned long long)c->ws_messages);
    help(&b, "verolux_mjpeg_frames_sent_total", "counter", "MJPEG frames written.");
    sb_printf(&b, "verolux_mjpeg_frames_sent_total %llu\n", (unsigned long long)c->stream_frames);
    help(&b, "verolux_client_messages_rejected_total", "counter",
         "Client WebSocket messages refused, by reason.");
    sb_printf(&b, "verolux_client_messages_rejected_total{reason=\"binary\"} %llu\n",
              (unsigned long long)c->rejected_binary);
    sb_printf(&b, "verolux_client_messages_rejected_total{reason=\"oversized\"} %llu\n",
              (unsigned long long)c->rejected_oversized);
    sb_printf(&b, "verolux_client_messages_rejected_total{reason=\"malformed\"} %llu\n",
              (unsigned long long)c->rejected_malformed);
    help(&b, "verolux_bad_requests_total", "counter", "Requests with malformed query strings.");
    sb_printf(&b, "verolux_bad_requests_total %llu\n", (unsigned long long)c->bad_queries);
    help(&b, "verolux_clients_refused_total", "counter",
         "Clients refused because max_clients were connected.");
    sb_printf(&b, "verolux_clients_refused_total %llu\n", (unsigned long long)c->rejected_busy);

    /* Per source.  Labels: source (display name), and the stage. */
    char(*lab)[VX_SOURCE_KEY_MAX * 2 + 16] = n ? malloc((size_t)n * sizeof *lab) : NULL;
    for (int i = 0; i < n && lab; i++) {
        char esc[VX_SOURCE_KEY_MAX * 2];
        snprintf(lab[i], sizeof lab[i], "source=\"%s\"",
                 vx_server_prom_escape(st[i].display, esc, sizeof esc));
    }
#define PER_SOURCE(name, type, text, fmt, expr)                                                              \
    do {                                                                                                     \
        help(&b, name, type, text);                                                                          \
        for (int i = 0; i < n && lab; i++)                                                                   \
            sb_printf(&b, "%s{%s} " fmt "\n", name, lab[i], expr);                                           \
    } while (0)
    PER_SOURCE("verolux_source_up", "gauge", "1 while the source's input is open.", "%d",
               st[i].video.connected);
    PER_SOURCE("verolux_source_healthy", "gauge", "1 while the source delivers frames (healthy).", "%d",
               st[i].video.health == VX_VIDEO_HEALTHY);
    PER_SOURCE("verolux_source_clients", "gauge", "Clients subscribed to the source.", "%d",
               st[i].subscribers);
    PER_SOURCE("verolux_capture_fps", "gauge", "Frames decoded per second (2 s window).", "%.3f",
               st[i].fps.capture);
    PER_SOURCE("verolux_inference_fps", "gauge",
               "Frames per second the detector sustains (1 / mean detection time).", "%.3f",
               st[i].fps.inference);
    PER_SOURCE("verolux_processed_fps", "gauge", "Frames through the detector per second (2 s window).",
               "%.3f", st[i].fps.processed);
    PER_SOURCE("verolux_frames_decoded_total", "counter", "Frames decoded.", "%llu",
               (unsigned long long)st[i].video.frames_decoded);
    PER_SOURCE("verolux_frames_processed_total", "counter", "Frames through the detector.", "%llu",
               (unsigned long long)st[i].frames_processed);
    PER_SOURCE("verolux_frames_dropped_total", "counter",
               "Decoded frames replaced by a newer one before detection.", "%llu",
               (unsigned long long)st[i].detect.frames_dropped);
    PER_SOURCE("verolux_frames_skipped_total", "counter", "Frames skipped to stay under TARGET_FPS.", "%llu",
               (unsigned long long)st[i].frames_skipped);
    PER_SOURCE("verolux_decode_errors_total", "counter", "Packets or frames the decoder rejected.", "%llu",
               (unsigned long long)st[i].video.decode_errors);
    PER_SOURCE("verolux_source_reconnects_total", "counter", "Reopens of the source after a failure.", "%llu",
               (unsigned long long)st[i].video.reconnects);
    PER_SOURCE("verolux_source_failures_total", "counter", "Failed opens and reads.", "%llu",
               (unsigned long long)st[i].video.failures);
    PER_SOURCE("verolux_detect_errors_total", "counter", "Frames the detector failed on.", "%llu",
               (unsigned long long)st[i].detect_errors);
    PER_SOURCE("verolux_messages_published_total", "counter", "Result messages handed to the subscribers.",
               "%llu", (unsigned long long)st[i].messages);
    PER_SOURCE("verolux_jpeg_frames_total", "counter", "Frames encoded for MJPEG.", "%llu",
               (unsigned long long)st[i].jpeg_frames);
    PER_SOURCE("verolux_queue_drops_total", "counter",
               "Messages dropped from full client queues (oldest first).", "%llu",
               (unsigned long long)st[i].queue_drops);
#undef PER_SOURCE

    help(&b, "verolux_stage_seconds", "histogram", "Time per frame in each pipeline stage.");
    for (int i = 0; i < n && lab; i++) {
        for (int k = 0; k < VX_STAGE_COUNT; k++) {
            char labels[VX_SOURCE_KEY_MAX * 2 + 64];
            snprintf(labels, sizeof labels, "%s,stage=\"%s\"", lab[i],
                     vx_pipeline_stage_name((vx_pipeline_stage)k));
            hist(&b, "verolux_stage_seconds", labels, &st[i].stages[k]);
        }
    }
    help(&b, "verolux_glass_to_message_seconds", "histogram",
         "From frame decode to the WebSocket write of its detections, per message.");
    for (int i = 0; i < n && lab; i++)
        hist(&b, "verolux_glass_to_message_seconds", lab[i], &st[i].latency);
    free(lab);
    free(st);
    if (b.oom || (n && !lab)) {
        free(b.data);
        return NULL;
    }
    return b.data;
}

char *vx_fmt_metrics_mqtt(vx_mqtt *mqtt)
{
    sbuf b = {0};
    sb_printf(&b, "%s", "");
    if (mqtt) {
        vx_mqtt_stats st;
        vx_mqtt_stats_get(mqtt, &st);
        help(&b, "verolux_mqtt_connected", "gauge", "1 while connected to the MQTT broker.");
        sb_printf(&b, "verolux_mqtt_connected %d\n", st.connected);
        help(&b, "verolux_mqtt_messages_total", "counter",
             "Gate messages for MQTT: queued, acknowledged by the broker, dropped from a full buffer.");
        sb_printf(&b, "verolux_mqtt_messages_total{state=\"queued\"} %llu\n", (unsigned long long)st.queued);
        sb_printf(&b, "verolux_mqtt_messages_total{state=\"published\"} %llu\n",
                  (unsigned long long)st.published);
        sb_printf(&b, "verolux_mqtt_messages_total{state=\"dropped\"} %llu\n",
                  (unsigned long long)st.dropped);
        help(&b, "verolux_mqtt_pending", "gauge", "Messages buffered or in flight, not yet acknowledged.");
        sb_printf(&b, "verolux_mqtt_pending %d\n", st.pending);
        help(&b, "verolux_mqtt_reconnects_total", "counter", "Connections to the broker after the first.");
        sb_printf(&b, "verolux_mqtt_reconnects_total %llu\n",
                  (unsigned long long)(st.connects > 0 ? st.connects - 1 : 0));
    }
    if (b.oom) {
        free(b.data);
        return NULL;
    }
    return b.data;
}
