/*
 * The transport: libwebsockets callbacks, sessions, hand-over from the
 * pipeline threads.  See vx_server.h for the design.
 *
 * Every connection that needs state beyond one callback has a session,
 * allocated by us (libwebsockets' per-session memory only points at it,
 * because lws frees and re-allocates that memory when an HTTP transaction
 * completes and when a connection changes protocol).  Sessions sit in one
 * list that the wake-up handler and the heartbeat tick walk; the list, the
 * counters and the sessions are touched by the service thread only.  The
 * only cross-thread fields are `pending` (set by a pipeline's notify) and
 * the server's `wake` flag, which makes sure one burst of notifications
 * costs one lws_cancel_service, not one per message.
 *
 * A WebSocket client gets, per writable callback, one message: first the
 * server's own (connection_info, heartbeats, pongs, an error), then
 * results from its pipeline queue.  A result becomes one or two texts
 * (detections, then gate_check for /ws/gate-check) in the session's small
 * out-queue; the queue is refilled only when empty, so the bounded
 * pipeline queue stays the one place where messages wait (and are
 * dropped).
 */
#include <arpa/inet.h>
#include <jansson.h>
#include <libwebsockets.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "server/server_internal.h"

#define MJPEG_BOUNDARY "verolux-frame"
/* The server's own messages queued per client (heartbeats, pongs, errors):
 * a client that never reads cannot make these grow. */
#define OWN_MSG_MAX 8
#define MAX_PARAMS 32
#define QUERY_MAX 8192
/* Kernel send buffers.  Linux grows a socket's send buffer up to 4 MiB by
 * itself, which for a client that stopped reading means seconds of stale
 * results parked where they can be neither seen nor dropped.  A fixed
 * buffer keeps the backlog in the client's queue, where the oldest message
 * is dropped and counted.  64 KiB is seconds of detection messages; 512 KiB
 * a couple of 1080p JPEGs. */
#define WS_SNDBUF (64 * 1024)
#define STREAM_SNDBUF (512 * 1024)

typedef enum { SESS_HTTP = 0, SESS_STREAM, SESS_WS } sess_kind;

typedef struct outmsg {
    struct outmsg *next;
    vx_pipeline_msg *result; /* the result this text formats, if any */
    int timed;               /* the detections message: its write ends glass-to-message */
    size_t len;
    unsigned char buf[]; /* LWS_PRE + len */
} outmsg;

typedef struct session session;

struct session {
    vx_server *srv;
    struct lws *wsi;
    sess_kind kind;
    session *prev, *next;
    vx_pipeline_sub *sub;
    vx_pipeline_sub_info info;
    atomic_int pending; /* set by the pipeline's notify */
    int counted;        /* in clients_ws / clients_stream */

    /* WebSocket */
    int gate, use_substream;
    outmsg *oq_head, *oq_tail;
    int own_queued;
    int close_code;  /* != 0: close once the out-queue is written */
    int closing_now; /* the error went out: close on the next writable */
    char close_reason[64];
    double next_heartbeat;
    char *rx;
    size_t rx_len;
    int rx_rejected;

    /* HTTP */
    unsigned char *body; /* LWS_PRE + body_len */
    size_t body_len;
    int defer_status;

    /* REST: a request whose body is being read */
    int rest;
    char *rest_path;
    char *rest_query; /* QUERY_MAX: the decoded parameters */
    const char *rest_params[MAX_PARAMS];
    int rest_nparams;
    char *post;
    size_t post_len;
    int post_too_large;

    /* MJPEG */
    unsigned char *part;
    size_t part_cap;
};

typedef struct {
    session *s;
} pss_t;

struct vx_server {
    vx_server_opts o;
    char host[256];
    struct lws_context *ctx;
    struct lws_vhost *vhost;
    int port;
    atomic_int stop;
    atomic_int wake;
    session *sessions;
    vx_server_counters c;
    double started_s;
    lws_sorted_usec_list_t tick;
    double tick_s;
};

void vx_server_opts_default(vx_server_opts *o)
{
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8000;
    o->heartbeat_s = 30;
    o->client_queue = 8;
    o->max_clients = 256;
    o->max_message = 4096;
    o->max_body = 64 * 1024;
}

/* ---- query strings ------------------------------------------------------------ */

static int parse_bool(const char *v, int *out)
{
    if (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes") || !strcasecmp(v, "on"))
        *out = 1;
    else if (!strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "no") || !strcasecmp(v, "off"))
        *out = 0;
    else
        return -1;
    return 0;
}

vx_err vx_server_parse_args(const char *const *params, int n, vx_server_args *out)
{
    out->source = NULL;
    out->use_substream = 1;
    out->overlay = 0;
    int seen_sub = 0, seen_overlay = 0;
    for (int i = 0; i < n; i++) {
        const char *p = params[i];
        const char *eq = strchr(p, '=');
        if (!eq || eq == p)
            return vx_fail(VX_ERR_INVALID, "malformed query parameter '%.64s': expected name=value", p);
        size_t nl = (size_t)(eq - p);
        const char *v = eq + 1;
        if (nl == 6 && !strncmp(p, "source", 6)) {
            if (out->source)
                return vx_fail(VX_ERR_INVALID, "query parameter 'source' given twice");
            if (!*v)
                return vx_fail(VX_ERR_INVALID, "query parameter 'source' is empty");
            out->source = v;
        } else if ((nl == 13 && !strncmp(p, "use_substream", 13)) || (nl == 7 && !strncmp(p, "overlay", 7))) {
            int is_sub = nl == 13;
            int *seen = is_sub ? &seen_sub : &seen_overlay;
            if (*seen)
                return vx_fail(VX_ERR_INVALID, "query parameter '%s' given twice",
                               is_sub ? "use_substream" : "overlay");
            *seen = 1;
            if (parse_bool(v, is_sub ? &out->use_substream : &out->overlay))
                return vx_fail(VX_ERR_INVALID, "query parameter '%s=%.32s': expected true or false",
                               is_sub ? "use_substream" : "overlay", v);
        }
        /* Other names are ignored: clients add cache busters and the like. */
    }
    return VX_OK;
}

/* Collects the decoded query parameters of the request on wsi into store;
 * params[i] point into it. */
static vx_err collect_params(struct lws *wsi, char *store, size_t cap, const char **params, int *count)
{
    int n = 0;
    size_t used = 0;
    *count = 0;
    int total = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS);
    if (total < 0 || (size_t)total + MAX_PARAMS + 1 > cap)
        return vx_fail(VX_ERR_INVALID, "query string too long");
    for (int idx = 0;; idx++) {
        int len = lws_hdr_copy_fragment(wsi, store + used, (int)(cap - used), WSI_TOKEN_HTTP_URI_ARGS, idx);
        if (len < 0)
            break;
        if (len == 0)
            continue; /* "a=1&&b=2" */
        if (n == MAX_PARAMS)
            return vx_fail(VX_ERR_INVALID, "more than %d query parameters", MAX_PARAMS);
        params[n++] = store + used;
        used += (size_t)len + 1;
        if (used >= cap)
            return vx_fail(VX_ERR_INVALID, "query string too long");
    }
    *count = n;
    return VX_OK;
}

static vx_err read_args(struct lws *wsi, char *store, size_t cap, vx_server_args *out)
{
    const char *params[MAX_PARAMS];
    int n = 0;
    vx_err err = collect_params(wsi, store, cap, params, &n);
    return err ? err : vx_server_parse_args(params, n, out);
}

/* ---- sessions ------------------------------------------------------------------- */

static session *session_new(vx_server *srv, struct lws *wsi, sess_kind kind)
{
    session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->srv = srv;
    s->wsi = wsi;
    s->kind = kind;
    atomic_init(&s->pending, 0);
    s->next = srv->sessions;
    if (srv->sessions)
        srv->sessions->prev = s;
    srv->sessions = s;
    return s;
}

static void session_unsubscribe(session *s)
{
    if (s->sub) {
        vx_pipelines_unsubscribe(s->srv->o.pipelines, s->sub);
        s->sub = NULL;
    }
}

static void session_free(pss_t *pss)
{
    session *s = pss ? pss->s : NULL;
    if (!s)
        return;
    pss->s = NULL;
    vx_server *srv = s->srv;
    if (s->prev)
        s->prev->next = s->next;
    else
        srv->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    session_unsubscribe(s);
    if (s->counted) {
        if (s->kind == SESS_WS)
            srv->c.clients_ws--;
        else
            srv->c.clients_stream--;
    }
    while (s->oq_head) {
        outmsg *m = s->oq_head;
        s->oq_head = m->next;
        vx_pipeline_msg_release(m->result);
        free(m);
    }
    free(s->rx);
    free(s->body);
    free(s->part);
    free(s->rest_path);
    free(s->rest_query);
    free(s->post);
    free(s);
}

/* Pipeline thread: a queue went from empty to non-empty. */
static void on_notify(void *user)
{
    session *s = user;
    vx_server *srv = s->srv;
    atomic_store(&s->pending, 1);
    if (!atomic_exchange(&srv->wake, 1))
        lws_cancel_service(srv->ctx);
}

/* Service thread, after lws_cancel_service. */
static void on_wake(vx_server *srv)
{
    atomic_store(&srv->wake, 0);
    for (session *s = srv->sessions; s; s = s->next)
        if (atomic_exchange(&s->pending, 0))
            lws_callback_on_writable(s->wsi);
}

static void limit_sndbuf(struct lws *wsi, int bytes)
{
    int fd = lws_get_socket_fd(wsi);
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
}

static int clients(const vx_server *srv)
{
    return srv->c.clients_ws + srv->c.clients_stream;
}

/* ---- WebSocket ---------------------------------------------------------------------- */

/* Queues a text (taking ownership of the malloc'ed `text`).  The server's
 * own messages beyond OWN_MSG_MAX are dropped unless `force`d. */
static int ws_queue_ex(session *s, char *text, vx_pipeline_msg *result, int force)
{
    if (!text)
        return -1;
    if (!result && !force && s->own_queued >= OWN_MSG_MAX) {
        free(text);
        return 0;
    }
    size_t len = strlen(text);
    outmsg *m = malloc(sizeof *m + LWS_PRE + len);
    if (!m) {
        free(text);
        return -1;
    }
    m->next = NULL;
    m->result = result ? vx_pipeline_msg_ref(result) : NULL;
    m->timed = 0;
    m->len = len;
    memcpy(m->buf + LWS_PRE, text, len);
    free(text);
    if (s->oq_tail)
        s->oq_tail->next = m;
    else
        s->oq_head = m;
    s->oq_tail = m;
    if (!result)
        s->own_queued++;
    return 0;
}

static int ws_queue(session *s, char *text, vx_pipeline_msg *result)
{
    return ws_queue_ex(s, text, result, 0);
}

/* The client gets {"type":"error"}, then a close with `code`. */
static void ws_fail(session *s, const char *message, int code)
{
    if (s->close_code)
        return;
    /* The error ends the session: results still queued are not sent. */
    outmsg **pp = &s->oq_head;
    s->oq_tail = NULL;
    while (*pp) {
        outmsg *m = *pp;
        if (m->result) {
            *pp = m->next;
            vx_pipeline_msg_release(m->result);
            free(m);
        } else {
            s->oq_tail = m;
            pp = &m->next;
        }
    }
    ws_queue_ex(s, vx_fmt_error(message), NULL, 1);
    s->close_code = code;
    snprintf(s->close_reason, sizeof s->close_reason, "%s",
             code == LWS_CLOSE_STATUS_POLICY_VIOLATION      ? "refused"
             : code == LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE   ? "message too large"
             : code == LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE ? "binary messages not accepted"
                                                            : "source failed");
    lws_callback_on_writable(s->wsi);
}

static int ws_filter(struct lws *wsi)
{
    char path[64];
    if (lws_hdr_copy(wsi, path, sizeof path, WSI_TOKEN_GET_URI) < 0)
        return 1;
    if (strcmp(path, "/ws/detections") && strcmp(path, "/ws/gate-check")) {
        VX_DEBUG("server: WebSocket upgrade refused for %s", path);
        return 1;
    }
    return 0;
}

static int ws_open(vx_server *srv, struct lws *wsi, pss_t *pss)
{
    session *s = session_new(srv, wsi, SESS_WS);
    if (!s)
        return -1;
    pss->s = s;
    srv->c.connections_ws++;
    char path[64] = "";
    lws_hdr_copy(wsi, path, sizeof path, WSI_TOKEN_GET_URI);
    s->gate = !strcmp(path, "/ws/gate-check");

    char *store = malloc(QUERY_MAX);
    vx_server_args args;
    if (!store)
        return -1;
    vx_err err = read_args(wsi, store, QUERY_MAX, &args);
    if (err) {
        srv->c.bad_queries++;
        ws_fail(s, vx_last_error(), LWS_CLOSE_STATUS_POLICY_VIOLATION);
        free(store);
        return 0;
    }
    if (clients(srv) >= srv->o.max_clients) {
        srv->c.rejected_busy++;
        char msg[128];
        snprintf(msg, sizeof msg, "server busy: %d clients connected (its limit); try again later",
                 clients(srv));
        ws_fail(s, msg, LWS_CLOSE_STATUS_POLICY_VIOLATION);
        free(store);
        return 0;
    }
    s->counted = 1;
    srv->c.clients_ws++;
    limit_sndbuf(wsi, WS_SNDBUF);
    s->use_substream = args.use_substream;
    vx_pipeline_sub_opts so = {
        args.source, args.use_substream, VX_MSG_RESULT, srv->o.client_queue, on_notify, s, s->gate};
    err = vx_pipelines_subscribe(srv->o.pipelines, &so, &s->sub);
    free(store);
    if (err) {
        VX_INFO("server: %s: %s", path, vx_last_error());
        ws_fail(s, vx_last_error(),
                err == VX_ERR_UNAVAILABLE ? LWS_CLOSE_STATUS_UNEXPECTED_CONDITION
                                          : LWS_CLOSE_STATUS_POLICY_VIOLATION);
        return 0;
    }
    vx_pipeline_sub_info_get(s->sub, &s->info);
    ws_queue(s, vx_fmt_connection_info(&srv->o.model, &s->info, path, args.use_substream), NULL);
    s->next_heartbeat = vx_now_s() + srv->o.heartbeat_s;
    lws_callback_on_writable(wsi);
    return 0;
}

static int ws_writable(session *s)
{
    vx_server *srv = s->srv;
    struct lws *wsi = s->wsi;
    if (s->closing_now) {
        lws_close_reason(wsi, (enum lws_close_status)s->close_code, (unsigned char *)s->close_reason,
                         strlen(s->close_reason));
        return -1;
    }
    int more = 0;
    if (!s->oq_head && s->sub && !s->close_code) {
        vx_pipeline_msg *m = vx_pipeline_sub_pop(s->sub, &more);
        if (m && m->type == VX_MSG_ERROR) {
            ws_fail(s, m->message, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION);
        } else if (m) {
            if (ws_queue(s, vx_fmt_detections(m), m) == 0)
                s->oq_tail->timed = 1;
            if (s->gate)
                ws_queue(s, vx_fmt_gate_check(m, &s->info), m);
        }
        vx_pipeline_msg_release(m);
    }
    if (s->oq_head) {
        outmsg *m = s->oq_head;
        s->oq_head = m->next;
        if (!s->oq_head)
            s->oq_tail = NULL;
        if (!m->result && s->own_queued > 0)
            s->own_queued--;
        if (m->timed && s->sub)
            vx_pipeline_sub_delivered(s->sub, m->result, vx_now_s());
        int n = lws_write(wsi, m->buf + LWS_PRE, m->len, LWS_WRITE_TEXT);
        vx_pipeline_msg_release(m->result);
        free(m);
        if (n < 0)
            return -1;
        srv->c.ws_messages++;
        srv->c.bytes_sent += (uint64_t)n;
    }
    /* Writable requests coalesce: a notification that arrived while this
     * callback was already due asked for no extra one, so look at the
     * queue rather than trusting `more` alone. */
    if (!s->oq_head && s->close_code) {
        s->closing_now = 1;
        lws_callback_on_writable(wsi);
    } else if (s->oq_head || more || (s->sub && !s->close_code && vx_pipeline_sub_pending(s->sub))) {
        lws_callback_on_writable(wsi);
    }
    return 0;
}

static void ws_receive(session *s, const void *in, size_t len)
{
    vx_server *srv = s->srv;
    struct lws *wsi = s->wsi;
    if (s->rx_rejected || s->close_code)
        return;
    if (lws_frame_is_binary(wsi)) {
        srv->c.rejected_binary++;
        s->rx_rejected = 1;
        ws_fail(s, "binary messages are not accepted; send JSON text such as {\"type\":\"ping\"}",
                LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE);
        return;
    }
    if (s->rx_len + len > srv->o.max_message) {
        srv->c.rejected_oversized++;
        s->rx_rejected = 1;
        char msg[128];
        snprintf(msg, sizeof msg, "message too large: the limit is %zu bytes", srv->o.max_message);
        ws_fail(s, msg, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE);
        return;
    }
    if (!s->rx && !(s->rx = malloc(srv->o.max_message + 1)))
        return;
    memcpy(s->rx + s->rx_len, in, len);
    s->rx_len += len;
    if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi))
        return;
    json_error_t jerr;
    json_t *msg = json_loadb(s->rx, s->rx_len, 0, &jerr);
    s->rx_len = 0;
    const char *type = json_string_value(json_object_get(msg, "type"));
    if (!msg || !type) {
        srv->c.rejected_malformed++;
        char text[256];
        if (!msg)
            snprintf(text, sizeof text, "could not parse the message (line %d, column %d): %s", jerr.line,
                     jerr.column, jerr.text);
        else
            snprintf(text, sizeof text, "messages must be JSON objects with a \"type\"");
        ws_queue(s, vx_fmt_error(text), NULL);
    } else if (!strcmp(type, "ping")) {
        ws_queue(s, vx_fmt_pong(), NULL);
    }
    /* Other types are for later protocol versions: ignored. */
    json_decref(msg);
    lws_callback_on_writable(wsi);
}

/* ---- HTTP ----------------------------------------------------------------------------- */

typedef enum { R_NONE = 0, R_DETECTIONS, R_GATE, R_STREAM, R_HEALTH, R_MODEL, R_INFO, R_METRICS } route;

static route route_of(const char *path)
{
    static const struct {
        const char *path;
        route r;
    } table[] = {
        {"/ws/detections", R_DETECTIONS},
        {"/ws/gate-check", R_GATE},
        {"/stream", R_STREAM},
        {"/health", R_HEALTH},
        {"/model-status", R_MODEL},
        {"/info", R_INFO},
        {"/metrics", R_METRICS},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(path, table[i].path))
            return table[i].r;
    return R_NONE;
}

/* Sends the headers now and the body on the next writable callback (taking
 * ownership of the malloc'ed body). */
static int http_respond(session *s, unsigned status, const char *ctype, char *body, const char *allow)
{
    vx_server *srv = s->srv;
    struct lws *wsi = s->wsi;
    if (!body) {
        status = 500;
        ctype = "application/json";
        body = strdup("{\"detail\":\"out of memory\"}");
        if (!body)
            return -1;
    }
    size_t len = strlen(body);
    s->body = malloc(LWS_PRE + len);
    if (!s->body) {
        free(body);
        return -1;
    }
    memcpy(s->body + LWS_PRE, body, len);
    s->body_len = len;
    free(body);
    unsigned char hdr[LWS_PRE + 1024];
    unsigned char *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof hdr - 1;
    if (lws_add_http_common_headers(wsi, status, ctype, len, &p, end) ||
        lws_add_http_header_by_name(
            wsi, (const unsigned char *)"cache-control:", (const unsigned char *)"no-store", 8, &p, end) ||
        (allow && lws_add_http_header_by_name(wsi, (const unsigned char *)"allow:",
                                              (const unsigned char *)allow, (int)strlen(allow), &p, end)) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    srv->c.http_status[status / 100 < 6 ? status / 100 : 5]++;
    lws_callback_on_writable(wsi);
    return 0;
}

static int http_detail(session *s, unsigned status, const char *fmt, ...) VX_PRINTF(3, 4);
static int http_detail(session *s, unsigned status, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    return http_respond(s, status, "application/json", vx_fmt_detail(text), status == 405 ? "GET" : NULL);
}

static int stream_start(session *s)
{
    vx_server *srv = s->srv;
    struct lws *wsi = s->wsi;
    char *store = malloc(QUERY_MAX);
    if (!store)
        return -1;
    vx_server_args args;
    vx_err err = read_args(wsi, store, QUERY_MAX, &args);
    if (err) {
        srv->c.bad_queries++;
        int rc = http_detail(s, 400, "%s", vx_last_error());
        free(store);
        return rc;
    }
    if (clients(srv) >= srv->o.max_clients) {
        srv->c.rejected_busy++;
        free(store);
        return http_detail(s, 503, "server busy: %d clients connected (its limit); try again later",
                           clients(srv));
    }
    vx_pipeline_sub_opts so = {args.source,
                               args.use_substream,
                               args.overlay ? VX_MSG_JPEG_OVERLAY : VX_MSG_JPEG,
                               srv->o.client_queue,
                               on_notify,
                               s,
                               0};
    err = vx_pipelines_subscribe(srv->o.pipelines, &so, &s->sub);
    free(store);
    if (err) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", vx_last_error());
        return http_detail(s, err == VX_ERR_DENIED ? 403 : err == VX_ERR_UNAVAILABLE ? 503 : 400, "%s", msg);
    }
    s->kind = SESS_STREAM;
    s->counted = 1;
    srv->c.clients_stream++;
    srv->c.connections_stream++;
    srv->c.http_status[2]++;
    unsigned char hdr[LWS_PRE + 1024];
    unsigned char *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof hdr - 1;
    /* No length: the stream lasts as long as the connection ("connection:
     * close" follows from that). */
    if (lws_add_http_common_headers(wsi, 200, "multipart/x-mixed-replace; boundary=" MJPEG_BOUNDARY,
                                    LWS_ILLEGAL_HTTP_CONTENT_LEN, &p, end) ||
        lws_add_http_header_by_name(
            wsi, (const unsigned char *)"cache-control:", (const unsigned char *)"no-store", 8, &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    /* A viewer may watch for hours: no transaction timeout. */
    lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
    limit_sndbuf(wsi, STREAM_SNDBUF);
    return 0;
}

static int stream_writable(session *s)
{
    vx_server *srv = s->srv;
    int more = 0;
    vx_pipeline_msg *m = s->sub ? vx_pipeline_sub_pop(s->sub, &more) : NULL;
    if (!m)
        return 0;
    if (m->type == VX_MSG_ERROR) {
        VX_INFO("server: /stream: %s", m->message);
        vx_pipeline_msg_release(m);
        return -1; /* the viewer sees the stream end */
    }
    char head[256];
    int hl = snprintf(head, sizeof head,
                      "--" MJPEG_BOUNDARY "\r\nContent-Type: image/jpeg\r\nContent-Length: %zu\r\n"
                      "X-Frame-Id: %llu\r\nX-Timestamp: %.3f\r\n\r\n",
                      m->size, (unsigned long long)m->frame_id, m->capture_wall_s);
    size_t need = LWS_PRE + (size_t)hl + m->size + 2;
    if (need > s->part_cap) {
        unsigned char *p = realloc(s->part, need);
        if (!p) {
            vx_pipeline_msg_release(m);
            return -1;
        }
        s->part = p;
        s->part_cap = need;
    }
    unsigned char *b = s->part + LWS_PRE;
    memcpy(b, head, (size_t)hl);
    memcpy(b + hl, m->data, m->size);
    memcpy(b + hl + m->size, "\r\n", 2);
    size_t len = (size_t)hl + m->size + 2;
    vx_pipeline_msg_release(m);
    int n = lws_write(s->wsi, b, len, LWS_WRITE_HTTP);
    if (n < 0)
        return -1;
    srv->c.stream_frames++;
    srv->c.bytes_sent += (uint64_t)n;
    if (more || vx_pipeline_sub_pending(s->sub))
        lws_callback_on_writable(s->wsi);
    return 0;
}

/* ---- REST ------------------------------------------------------------------------------ */

static int rest_answer(session *s, const char *method)
{
    vx_server *srv = s->srv;
    vx_rest_ctx ctx = {srv->o.pipelines, srv->o.store};
    vx_rest_reply r;
    if (s->post_too_large) {
        srv->c.rejected_oversized++;
        return http_detail(s, 413, "request body too large: the limit is %zu bytes", srv->o.max_body);
    }
    vx_rest_handle(&ctx, method, s->rest_path, s->rest_params, s->rest_nparams, s->post, s->post_len, &r);
    if (r.status == 400)
        srv->c.bad_queries++;
    return http_respond(s, r.status, "application/json", r.body, r.allow);
}

static int rest_request(session *s, int method, const char *path)
{
    vx_server *srv = s->srv;
    struct lws *wsi = s->wsi;
    s->rest = 1;
    s->rest_path = strdup(path);
    s->rest_query = malloc(QUERY_MAX);
    if (!s->rest_path || !s->rest_query)
        return -1;
    if (collect_params(wsi, s->rest_query, QUERY_MAX, s->rest_params, &s->rest_nparams) != VX_OK) {
        srv->c.bad_queries++;
        return http_detail(s, 400, "%s", vx_last_error());
    }
    const char *name = method == LWSHUMETH_GET      ? "GET"
                       : method == LWSHUMETH_POST   ? "POST"
                       : method == LWSHUMETH_PUT    ? "PUT"
                       : method == LWSHUMETH_DELETE ? "DELETE"
                       : method == LWSHUMETH_PATCH  ? "PATCH"
                                                    : "OTHER";
    int has_length = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0;
    if (!has_length && lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0) {
        /* libwebsockets (4.1) does not decode chunked request bodies: say
         * so rather than wait for a body that never completes.  The
         * connection stays open: libwebsockets reads the chunks as the
         * next request, finds none and closes it, having drained the input
         * (closing with unread input would reset it under the answer). */
        return http_detail(s, 411, "request bodies need a Content-Length (chunked uploads are not accepted)");
    }
    int has_body = has_length;
    if ((method == LWSHUMETH_POST || method == LWSHUMETH_PUT || method == LWSHUMETH_PATCH) && has_body) {
        /* Answer once the body has been read (see the 405 case below).  A
         * declared length over the limit is refused without reading it. */
        char cl[32] = "";
        if (lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0 &&
            strtoull(cl, NULL, 10) > (unsigned long long)srv->o.max_body)
            s->post_too_large = 1;
        s->defer_status = method == LWSHUMETH_POST ? 1 : 2;
        return 0;
    }
    return rest_answer(s, name);
}

static void rest_body(session *s, const void *in, size_t len)
{
    size_t limit = s->srv->o.max_body;
    if (s->post_too_large)
        return;
    if (s->post_len + len > limit) {
        s->post_too_large = 1;
        free(s->post);
        s->post = NULL;
        s->post_len = 0;
        return;
    }
    if (!s->post && !(s->post = malloc(limit + 1))) {
        s->post_too_large = 1;
        return;
    }
    memcpy(s->post + s->post_len, in, len);
    s->post_len += len;
    s->post[s->post_len] = 0;
}

static int http_request(vx_server *srv, struct lws *wsi, pss_t *pss, const char *path)
{
    srv->c.http_requests++;
    session_free(pss); /* a previous transaction's, on a kept-alive connection */
    session *s = session_new(srv, wsi, SESS_HTTP);
    if (!s)
        return -1;
    pss->s = s;
    char *uri;
    int ulen;
    int method = lws_http_get_uri_and_method(wsi, &uri, &ulen);
    if (vx_rest_is_path(path))
        return rest_request(s, method, path);
    route r = route_of(path);
    if (r == R_NONE)
        return http_detail(s, 404,
                           "not found: %.200s (endpoints: /ws/detections, /ws/gate-check, /stream, "
                           "/health, /model-status, /info, /metrics, /gate/completions, /gate/session/{id}, "
                           "/gate/stats, /gate/config, /gate/reset, /counts, /counts/reset)",
                           path);
    if (method != LWSHUMETH_GET) {
        /* With a body, answer once it has been read: closing with unread
         * input would reset the connection under the answer. */
        if ((method == LWSHUMETH_POST || method == LWSHUMETH_PUT || method == LWSHUMETH_PATCH) &&
            lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0) {
            s->defer_status = 405;
            return 0;
        }
        return http_detail(s, 405, "method not allowed: %.200s accepts GET only", path);
    }
    double up = vx_now_s() - srv->started_s;
    switch (r) {
    case R_DETECTIONS:
    case R_GATE:
        return http_detail(s, 400, "%s is a WebSocket endpoint: connect with a WebSocket client", path);
    case R_STREAM: return stream_start(s);
    case R_HEALTH:
        return http_respond(s, 200, "application/json",
                            vx_fmt_health(srv->o.pipelines, &srv->o.model, up, &srv->c), NULL);
    case R_MODEL: return http_respond(s, 200, "application/json", vx_fmt_model_status(&srv->o.model), NULL);
    case R_INFO: return http_respond(s, 200, "application/json", vx_fmt_info(&srv->o.model), NULL);
    case R_METRICS: {
        char *text = vx_fmt_metrics(srv->o.pipelines, &srv->c, up);
        char *more = vx_fmt_metrics_mqtt(srv->o.mqtt);
        char *all = text && more ? malloc(strlen(text) + strlen(more) + 1) : NULL;
        if (all)
            strcat(strcpy(all, text), more);
        free(text);
        free(more);
        return http_respond(s, 200, "text/plain; version=0.0.4; charset=utf-8", all, NULL);
    }
    case R_NONE: break;
    }
    return -1;
}

static int http_writable(pss_t *pss)
{
    session *s = pss->s;
    if (!s)
        return 0;
    if (s->kind == SESS_STREAM)
        return stream_writable(s);
    if (!s->body)
        return 0;
    struct lws *wsi = s->wsi;
    int n = lws_write(wsi, s->body + LWS_PRE, s->body_len, LWS_WRITE_HTTP_FINAL);
    s->srv->c.bytes_sent += n > 0 ? (uint64_t)n : 0;
    session_free(pss);
    if (n < 0)
        return -1;
    if (lws_http_transaction_completed(wsi))
        return -1;
    return 0;
}

/* ---- libwebsockets glue ------------------------------------------------------------------ */

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    struct lws_context *ctx = wsi ? lws_get_context(wsi) : NULL;
    vx_server *srv = ctx ? lws_context_user(ctx) : NULL;
    pss_t *pss = user;
    if (!srv)
        return 0;
    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED: on_wake(srv); return 0;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: return ws_filter(wsi);
    case LWS_CALLBACK_ESTABLISHED: return pss ? ws_open(srv, wsi, pss) : -1;
    case LWS_CALLBACK_SERVER_WRITEABLE: return pss && pss->s ? ws_writable(pss->s) : 0;
    case LWS_CALLBACK_RECEIVE:
        if (pss && pss->s)
            ws_receive(pss->s, in, len);
        return 0;
    case LWS_CALLBACK_CLOSED: session_free(pss); return 0;
    case LWS_CALLBACK_HTTP: return pss ? http_request(srv, wsi, pss, in ? (const char *)in : "") : -1;
    case LWS_CALLBACK_HTTP_BODY:
        /* Only REST requests use bodies; others are read and forgotten. */
        if (pss && pss->s && pss->s->rest && in)
            rest_body(pss->s, in, len);
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (pss && pss->s && pss->s->rest && pss->s->defer_status) {
            const char *m = pss->s->defer_status == 1 ? "POST" : "PUT";
            pss->s->defer_status = 0;
            return rest_answer(pss->s, m);
        }
        if (pss && pss->s && pss->s->defer_status) {
            pss->s->defer_status = 0;
            return http_detail(pss->s, 405, "method not allowed: this endpoint accepts GET only");
        }
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE: return pss ? http_writable(pss) : 0;
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL: session_free(pss); return 0;
    default: return 0;
    }
}

static const struct lws_protocols protocols[] = {
    {"verolux", callback, sizeof(pss_t), 4096, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void log_emit(int level, const char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    if (level & LLL_ERR)
        VX_WARN("libwebsockets: %.*s", (int)n, line);
    else
        VX_DEBUG("libwebsockets: %.*s", (int)n, line);
}

static void tick(lws_sorted_usec_list_t *sul)
{
    vx_server *srv = lws_container_of(sul, vx_server, tick);
    double now = vx_now_s();
    for (session *s = srv->sessions; s; s = s->next) {
        if (s->kind != SESS_WS || !s->sub || s->close_code || now < s->next_heartbeat)
            continue;
        ws_queue(s, vx_fmt_heartbeat(now - srv->started_s), NULL);
        s->next_heartbeat = now + srv->o.heartbeat_s;
        lws_callback_on_writable(s->wsi);
    }
    lws_sul_schedule(srv->ctx, 0, &srv->tick, tick, (lws_usec_t)(srv->tick_s * 1e6));
}

vx_err vx_server_create(const vx_server_opts *opts, vx_server **out)
{
    *out = NULL;
    if (!opts->pipelines)
        return vx_fail(VX_ERR_INVALID, "server: no pipelines");
    if (opts->port < 0 || opts->port > 65535)
        return vx_fail(VX_ERR_INVALID, "server: port %d out of range 0..65535", opts->port);
    if (!(opts->heartbeat_s > 0) || opts->client_queue < 1 || opts->max_clients < 1 || opts->max_message < 2)
        return vx_fail(VX_ERR_INVALID, "server: options out of range");
    vx_server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    srv->o = *opts;
    const char *host = opts->host && *opts->host ? opts->host : "127.0.0.1";
    /* libwebsockets takes an interface name or an address; "localhost" is
     * neither, and the wildcard addresses mean "no interface". */
    if (!strcmp(host, "localhost"))
        host = "127.0.0.1";
    snprintf(srv->host, sizeof srv->host, "%s", host);
    int any = !strcmp(host, "0.0.0.0") || !strcmp(host, "::");
    struct in_addr v4;
    int ipv4 = inet_pton(AF_INET, host, &v4) == 1;
    srv->o.host = srv->host;
    srv->started_s = vx_now_s();
    atomic_init(&srv->stop, 0);
    atomic_init(&srv->wake, 0);
    srv->tick_s = opts->heartbeat_s < 2 ? opts->heartbeat_s / 4 : 0.5;

    lws_set_log_level(LLL_ERR | LLL_WARN, log_emit);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = opts->port;
    info.iface = any ? NULL : srv->host;
    info.protocols = protocols;
    info.user = srv;
    info.vhost_name = "verolux";
    info.server_string = "verolux/" VX_VERSION;
    info.options = LWS_SERVER_OPTION_VALIDATE_UTF8 |
                   (ipv4 || !strcmp(host, "0.0.0.0") ? LWS_SERVER_OPTION_DISABLE_IPV6 : 0);
    info.max_http_header_data = 8192;
    int pool = opts->max_clients + 64;
    info.max_http_header_pool = (unsigned short)(pool > 65535 ? 65535 : pool);
    info.timeout_secs = 10;
    srv->ctx = lws_create_context(&info);
    if (!srv->ctx) {
        free(srv);
        return vx_fail(VX_ERR_IO,
                       "cannot listen on %s port %d (address in use, or not an address of this host)", host,
                       opts->port);
    }
    srv->vhost = lws_get_vhost_by_name(srv->ctx, "verolux");
    srv->port = srv->vhost ? lws_get_vhost_listen_port(srv->vhost) : -1;
    if (srv->port <= 0) {
        lws_context_destroy(srv->ctx);
        free(srv);
        return vx_fail(VX_ERR_IO, "cannot listen on %s port %d", host, opts->port);
    }
    *out = srv;
    return VX_OK;
}

int vx_server_port(const vx_server *s)
{
    return s->port;
}

vx_err vx_server_run(vx_server *srv)
{
    lws_sul_schedule(srv->ctx, 0, &srv->tick, tick, (lws_usec_t)(srv->tick_s * 1e6));
    while (!atomic_load(&srv->stop))
        if (lws_service(srv->ctx, 0) < 0)
            return vx_fail(VX_ERR_IO, "the server's event loop failed");
    return VX_OK;
}

void vx_server_stop(vx_server *srv)
{
    atomic_store(&srv->stop, 1);
    lws_cancel_service(srv->ctx);
}

void vx_server_destroy(vx_server *srv)
{
    if (!srv)
        return;
    /* Unsubscribe first: no pipeline may call lws_cancel_service on a
     * context being destroyed. */
    for (session *s = srv->sessions; s; s = s->next)
        session_unsubscribe(s);
    lws_sul_cancel(&srv->tick);
    lws_context_destroy(srv->ctx);
    /* Connections close (and free their sessions) inside the destroy. */
    while (srv->sessions) {
        pss_t fake = {srv->sessions};
        session_free(&fake);
    }
    free(srv);
}
