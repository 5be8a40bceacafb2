/*
 * server internals: the message and document formats (format.c), kept
 * apart from the transport (server.c) so that they read like the protocol
 * they implement.  Every function returns a malloc'ed NUL-terminated
 * string (free()), or NULL when out of memory.
 */
#ifndef VX_SERVER_INTERNAL_H
#define VX_SERVER_INTERNAL_H

#include <stdint.h>

#include "server/vx_server.h"

/* Counters the transport keeps for /metrics (service thread only). */
typedef struct {
    uint64_t connections_ws, connections_stream, http_requests;
    uint64_t http_status[6]; /* by hundreds: [2] 2xx, [4] 4xx, ... */
    int clients_ws, clients_stream;
    uint64_t ws_messages, stream_frames, bytes_sent;
    uint64_t rejected_binary, rejected_oversized, rejected_malformed, rejected_busy;
    uint64_t bad_queries;
} vx_server_counters;

char *vx_fmt_connection_info(const vx_server_model *model, const vx_pipeline_sub_info *info,
                             const char *endpoint, int use_substream);
char *vx_fmt_detections(const vx_pipeline_msg *m);
char *vx_fmt_gate_check(const vx_pipeline_msg *m, const vx_pipeline_sub_info *info);
char *vx_fmt_heartbeat(double uptime_s);
char *vx_fmt_error(const char *message);
char *vx_fmt_pong(void);
char *vx_fmt_detail(const char *detail);
char *vx_fmt_health(vx_pipelines *p, const vx_server_model *model, double uptime_s,
                    const vx_server_counters *c);
char *vx_fmt_model_status(const vx_server_model *model);
char *vx_fmt_info(const vx_server_model *model);
char *vx_fmt_metrics(vx_pipelines *p, const vx_server_counters *c, double uptime_s);
/* The MQTT publisher's metrics ("" without one). */
char *vx_fmt_metrics_mqtt(vx_mqtt *mqtt);

/* ---- REST (rest.c) ------------------------------------------------------------ */

typedef struct {
    vx_pipelines *pipelines; /* may be NULL: no gate */
    vx_store *store;         /* may be NULL */
} vx_rest_ctx;

typedef struct {
    unsigned status;
    char *body;        /* JSON, malloc'ed (NULL: out of memory) */
    const char *allow; /* for 405: the methods allowed */
} vx_rest_reply;

/* Whether a path is one of the REST endpoints (/gate/..., /counts...). */
int vx_rest_is_path(const char *path);
/* Answers one request.  params: decoded "name=value" strings. */
void vx_rest_handle(const vx_rest_ctx *c, const char *method, const char *path, const char *const *params,
                    int nparams, const char *body, size_t body_len, vx_rest_reply *r);
/* Unix seconds or ISO 8601 into Unix seconds; -1 when malformed. */
int vx_rest_parse_time(const char *v, double *out);

#endif
