/*
 * store: the gate's durable record (SQLite) and its MQTT publisher.
 *
 * Events, completions and sessions are committed to the database BEFORE
 * they are published to anyone (WebSocket clients, MQTT): the pipeline
 * calls vx_store_write synchronously and only publishes what it returned
 * VX_OK for, so a crash (kill -9, power loss) never loses something a
 * client has already seen.  A write is one transaction: a frame's events,
 * session updates and completions become visible together or not at all.
 *
 * Durability: journal_mode=WAL with synchronous=FULL.  In WAL mode NORMAL
 * only syncs at checkpoints, so a commit survives a process crash but not
 * an OS crash or power cut; FULL syncs the WAL on every commit.  Gate
 * events are rare (a few per visitor), so an fsync per event-carrying frame
 * costs little, and "committed" then means "on disk".
 *
 * Schema: versioned with PRAGMA user_version; each migration step runs in
 * its own transaction (DDL is transactional in SQLite), so a crash during
 * an upgrade leaves the previous version intact.  A database written by a
 * newer build (user_version above VX_STORE_SCHEMA_VERSION) or a file that
 * belongs to another application (application_id) is refused.  All SQL uses
 * prepared statements with bound parameters: ids, gate names and payloads
 * are data, whatever they look like.
 *
 * Threading: a vx_store may be used from any number of threads.  Writers
 * share one connection behind a mutex; readers (REST queries) use a second
 * connection behind another, so a query never waits for a writer's fsync
 * (WAL lets readers and one writer run at once).
 */
#ifndef VX_STORE_H
#define VX_STORE_H

#include <jansson.h>
#include <stdint.h>

#include "core/vx_core.h"

#define VX_STORE_SCHEMA_VERSION 3
/* PRAGMA application_id: "VRLX". */
#define VX_STORE_APP_ID 0x56524c58

typedef struct vx_store vx_store;

/* Opens (creating it and its folder's last component if needed) and
 * migrates the database at path.  VX_ERR_UNSUPPORTED: written by a newer
 * schema; VX_ERR_FORMAT: not a Verolux database, or corrupt. */
vx_err vx_store_open(const char *path, vx_store **out);
void vx_store_close(vx_store *s); /* NULL is ignored */
const char *vx_store_path(const vx_store *s);

/* ---- writing ----------------------------------------------------------------- */

typedef struct {
    const char *gate_id;
    const char *source;     /* the camera / source display name */
    const char *session_id; /* NULL: not tied to a session */
    const char *type;       /* "person_entered_gate_area", ... */
    int64_t track_id;       /* -1: none */
    double stream_ts;       /* seconds on the source's own clock */
    double wall_ts;         /* Unix time of the frame */
    const char *json;       /* the event as clients see it (a JSON object) */
} vx_store_event;

typedef enum { VX_SESSION_OPEN = 0, VX_SESSION_COMPLETED, VX_SESSION_FAILED } vx_session_state;

/* Upserted by session_id: later writes update state, guard, end, score. */
typedef struct {
    const char *session_id;
    const char *gate_id;
    const char *source;
    int64_t visitor_id;
    int64_t guard_id; /* -1: none (yet) */
    vx_session_state state;
    const char *reason; /* failure reason, or NULL */
    double started_wall;
    double ended_wall; /* 0: still open */
    double score;      /* < 0: not scored */
    const char *json;  /* summary object (may be NULL) */
} vx_store_session;

typedef struct {
    const char *session_id; /* unique: one completion per session */
    const char *gate_id;
    const char *source;
    int64_t visitor_id, guard_id;
    double score, threshold;
    double window_start, window_end; /* stream seconds */
    double duration_s;               /* the check's duration (window length) */
    double wall_ts;
    const char *json; /* the completion record (a JSON object) */
} vx_store_completion;

typedef struct {
    const vx_store_event *events;
    int n_events;
    const vx_store_session *sessions;
    int n_sessions;
    const vx_store_completion *completions;
    int n_completions;
} vx_store_batch;

/* One transaction; on success the rows are on disk.  event_ids (may be
 * NULL) receives each event's row id, which clients see as "event_id".
 * On failure nothing of the batch is stored. */
vx_err vx_store_write(vx_store *s, const vx_store_batch *b, int64_t *event_ids);

/* Ends the open sessions (of one source, or all when source is NULL) that
 * no engine will ever conclude: a restart (the engines that held them are
 * gone), a reset, a stream that jumped back.  They get state "abandoned"
 * with `reason` and ended_wall = wall_ts, and do not count as checks.
 * Returns how many, or -1 on error (message set). */
int64_t vx_store_abandon_sessions(vx_store *s, const char *source, const char *reason, double wall_ts);
/* The same for one session (if it is still open): 1, 0, or -1 on error. */
int64_t vx_store_abandon_session(vx_store *s, const char *session_id, const char *reason, double wall_ts);

/* ---- queries (for REST) --------------------------------------------------------- */

/* Completions with wall time >= since (0: all), newest first, at most
 * limit: a JSON array of the completion records, each with "id" and
 * "stored_at" added. */
vx_err vx_store_completions(vx_store *s, double since, int limit, json_t **out);

/* A session and its events in order.  VX_ERR_NOT_FOUND when unknown. */
vx_err vx_store_session_get(vx_store *s, const char *session_id, json_t **session, json_t **events);

typedef struct {
    int64_t total_checks; /* sessions that ended (completed + failed) */
    int64_t completed, failed;
    double success_rate; /* completed / total_checks, 0 when none */
    double avg_score;    /* over completions */
    double avg_duration; /* over completions, seconds */
    int64_t total_events;
    int64_t open_sessions;
} vx_store_stats;

/* Over [start, end) in wall time; end <= 0: no upper bound. */
vx_err vx_store_stats_get(vx_store *s, double start, double end, vx_store_stats *out);

/* Rows in a table ("events", "sessions", "completions"); -1 on error. */
int64_t vx_store_count(vx_store *s, const char *table);

/* ---- MQTT publisher ------------------------------------------------------------- */

/* Publishes to a broker from its own thread: QoS 1, messages kept until
 * the broker acknowledged them (PUBACK).  While the broker is away,
 * messages wait in a bounded buffer (the oldest dropped first when full,
 * counted) and go out in order once it is back; unacknowledged messages
 * are sent again after a reconnect (at least once).  Reconnects back off
 * exponentially from 0.5 s to 30 s.  vx_mqtt_publish never blocks on the
 * network.  Thread-safe. */
typedef struct vx_mqtt vx_mqtt;

typedef struct {
    const char *url;       /* mqtt://[user[:password]@]host[:port] (port 1883) */
    const char *client_id; /* NULL: "verolux-<pid>" */
    int buffer;            /* messages buffered while away (default 10000) */
    int keepalive_s;       /* default 30 */
    double backoff_min_s;  /* default 0.5 */
    double backoff_max_s;  /* default 30 */
} vx_mqtt_opts;

void vx_mqtt_opts_default(vx_mqtt_opts *o);
/* Parses the URL and starts the thread; the broker may be down (it is
 * retried).  VX_ERR_INVALID for a malformed URL. */
vx_err vx_mqtt_create(const vx_mqtt_opts *o, vx_mqtt **out);
/* Stops, giving in-flight messages up to timeout_s to be acknowledged. */
void vx_mqtt_destroy(vx_mqtt *m, double timeout_s);
/* Queues a copy of payload for topic. */
vx_err vx_mqtt_publish(vx_mqtt *m, const char *topic, const char *payload, size_t len);

typedef struct {
    int connected;
    uint64_t queued;    /* accepted by vx_mqtt_publish */
    uint64_t published; /* acknowledged by the broker */
    uint64_t dropped;   /* dropped from a full buffer */
    uint64_t connects, disconnects;
    int pending; /* waiting in the buffer or in flight */
    char last_error[160];
} vx_mqtt_stats;

void vx_mqtt_stats_get(vx_mqtt *m, vx_mqtt_stats *out);

/* "verolux/<gate_id>/<kind>" with characters MQTT gives meaning to in
 * topics ('+', '#', '/', NUL) in gate_id replaced by '_'. */
void vx_mqtt_topic(const char *gate_id, const char *kind, char *out, size_t len);

/* Parses an MQTT URL (for config validation). host/user/pass may be NULL. */
vx_err vx_mqtt_parse_url(const char *url, char *host, size_t host_len, int *port, char *user, size_t user_len,
                         char *pass, size_t pass_len);

#endif
