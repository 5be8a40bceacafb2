/*
 * server: HTTP and WebSocket on one port (libwebsockets), a protocol
 * adapter over the pipelines and nothing more.
 *
 *   GET /ws/detections?source=S               WebSocket: connection_info,
 *                                             then one detections message
 *                                             per processed frame, heartbeats
 *   GET /ws/gate-check?source=S&use_substream=B  the same, each followed by
 *                                             a gate_check message
 *   GET /stream?source=S&overlay=B            MJPEG (multipart/x-mixed-replace)
 *   GET /health, /model-status, /info         JSON
 *   GET /metrics                              Prometheus text format
 *   GET /gate/completions, /gate/session/{id}, /gate/stats, GET/POST
 *   /gate/config, POST /gate/reset, GET /counts, POST /counts/reset
 *                                             the gate's REST API (rest.c)
 * Anything else is 404 with a JSON {"detail": ...}; other methods on known
 * paths 405.  A source the policy refuses, or that cannot be opened, gets a
 * WebSocket {"type":"error"} message and a close (HTTP: 403 / 400 / 503).
 *
 * libwebsockets is single-threaded: every callback runs on the thread in
 * vx_server_run.  Pipelines hand messages over through each client's
 * bounded queue; the queue's notify callback marks the client and wakes the
 * service loop with lws_cancel_service, and the loop asks for a writable
 * callback for each marked client.  A client is written one message per
 * writable callback, so a client that stops reading stops being written to
 * (its kernel buffer full, lws holds the rest of one message) while its
 * queue drops the oldest messages; nobody else waits for it.
 *
 * Threading: create, run and destroy on one thread; vx_server_stop from any
 * thread or a signal handler; vx_server_port from any thread after create.
 */
#ifndef VX_SERVER_H
#define VX_SERVER_H

#include <stddef.h>

#include "core/vx_core.h"
#include "pipeline/vx_pipeline.h"

/* What /info, /model-status and connection_info report about the model. */
typedef struct {
    const char *path;
    const char *name;   /* short name for /info ("nanodet") */
    const char *family; /* "nanodet", "yolov8", ... */
    int input_w, input_h;
    int classes;
    const char *device;    /* "cpu", "cuda" */
    const char *backend;   /* "cpu", "ref", "cuda" */
    const char *precision; /* "FP32", "BF16" */
    int threads;           /* inference threads */
    const char *engine;    /* one line from the engine */
    int batch_size;
} vx_server_model;

typedef struct {
    const char *host;        /* default "127.0.0.1" */
    int port;                /* 0: any free port (see vx_server_port) */
    vx_pipelines *pipelines; /* not owned; must outlive the server */
    vx_server_model model;
    double heartbeat_s; /* default 30 */
    int client_queue;   /* messages per client before dropping (default 8) */
    int max_clients;    /* WebSocket + stream clients (default 256) */
    size_t max_message; /* largest message a client may send (default 4096 bytes) */
    vx_store *store;    /* the gate's event store for REST queries (NULL: none); not owned */
    size_t max_body;    /* largest POST body (default 64 KiB; larger: 413) */
    vx_mqtt *mqtt;      /* the gate's MQTT publisher, for /metrics (NULL: none); not owned */
} vx_server_opts;

void vx_server_opts_default(vx_server_opts *o);

typedef struct vx_server vx_server;

/* Binds the listening socket: a port in use fails here, with a message. */
vx_err vx_server_create(const vx_server_opts *opts, vx_server **out);
/* The port actually listened on. */
int vx_server_port(const vx_server *s);
/* Serves until vx_server_stop. */
vx_err vx_server_run(vx_server *s);
/* Async-signal-safe. */
void vx_server_stop(vx_server *s);
/* Closes every connection (unsubscribing its client) and frees. */
void vx_server_destroy(vx_server *s);

/* ---- helpers exposed for tests --------------------------------------------- */

typedef struct {
    const char *source; /* NULL: not given */
    int use_substream;  /* default 1 */
    int overlay;        /* default 0 */
} vx_server_args;

/* Parses decoded query parameters ("name=value" each, as libwebsockets
 * hands them over).  Known names: source, use_substream, overlay; others
 * are ignored.  A parameter without '=', with an empty name, given twice,
 * or a boolean that is not true/false/1/0/yes/no fails with VX_ERR_INVALID
 * and a message.  `source` points into params. */
vx_err vx_server_parse_args(const char *const *params, int n, vx_server_args *out);

/* Escapes a Prometheus label value (\\, \" and \n) into out; truncates
 * cleanly.  Returns out. */
char *vx_server_prom_escape(const char *in, char *out, size_t len);

#endif
