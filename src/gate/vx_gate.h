/*
 * gate: the gate-security check.  Every visitor who enters the gate area
 * must be checked by a guard (contact, long enough) before leaving.
 *
 * The engine takes each processed frame's detections, tracks them
 * (track/), and runs per track:
 *
 *   - noise filter: person boxes lower than min_box_height_px are dropped
 *     before tracking;
 *   - smoothing: a moving average over jitter_smooth_window frames of the box
 *     centre and of the foot point (bottom centre).  A person stands in a
 *     zone with their feet, so zone membership tests the smoothed FOOT point;
 *     contact tests the smoothed centres;
 *   - hysteresis: zone membership and contact flip only after
 *     multi_frame_consensus consecutive frames agree; the transition is then
 *     dated at the first of those frames, and at the time the smoothed point
 *     stands for (the mean time of its window, (W-1)/2 frames back), so
 *     neither filter delays event times or biases dwell and contact sums;
 *   - roles: a guard is a confirmed track that has dwelt (accumulated) in the
 *     guard anchor for guard_min_dwell_s.  Mode `either` also promotes a
 *     track that has been in the gate area for guard_min_dwell_s, still
 *     without a guard of its own, when a new person enters (a guard waiting
 *     inside the gate; its visitor session is dropped without a verdict).
 *     `strict_anchor` accepts only the anchor.  `no_anchor` takes, for each
 *     visitor, the nearest other confirmed track that is not a visitor as the
 *     guard (its dwell: the time it has been tracked); it keeps the guard
 *     role once it has been in contact.  Only a person who walks into the
 *     gate area (not a guard, not a track merely passing the anchor)
 *     triggers the `either` promotion.  A track in the gate area that is not
 *     a guard is a visitor.  A guard stays a guard; a visitor becomes fixed
 *     once a guard is present for it or its session ends.
 *   - the per-visitor state machine (vx_gate_state) and its events; a
 *     session per visit to the gate area, ended by check_completed or
 *     check_failed (reason), each with a completion record;
 *   - counts.
 *
 * Time: only the frames' stream timestamps (seconds) are used, never the
 * wall clock; the same detections with the same timestamps give the same
 * events, ids and records.  A timestamp that goes backwards (a file source
 * looping) resets the engine, sessions dropped without events, and sets
 * vx_gate_result.discontinuity.
 *
 * Score = base + contact_bonus * min(1, interaction / interaction_min_overlap_s)
 *       + pose_bonus * pose + reid_persistence_bonus * persistence, where
 * persistence is the fraction of the session's frames in which the visitor's
 * track was matched to a detection.  Without a pose hook the pose term is
 * left out and the sum is rescaled by (sum of all weights) / (sum without
 * pose), then capped at 1.
 *
 * Threading: vx_gate_process is called by one thread (the source's
 * pipeline).  vx_gate_set_config, vx_gate_get_config, vx_gate_reset,
 * vx_gate_reset_counts and vx_gate_get_counts may be called from any thread;
 * they take effect between two frames, never in the middle of one.
 */
#ifndef VX_GATE_H
#define VX_GATE_H

#include <jansson.h>
#include <stdint.h>

#include "core/vx_core.h"
#include "track/vx_track.h"

/* ---- configuration -------------------------------------------------------- */

#define VX_GATE_ID_MAX 64
#define VX_GATE_PATH_MAX 512
#define VX_GATE_DESC_MAX 256
#define VX_GATE_POLY_MAX 64 /* points per polygon */
#define VX_GATE_CLASSES_MAX 16

typedef enum { VX_GATE_ZONE_GATE_AREA = 0, VX_GATE_ZONE_GUARD_ANCHOR = 1 } vx_gate_zone_type;

typedef struct {
    char zone_id[VX_GATE_ID_MAX];
    vx_gate_zone_type type;
    int normalized; /* 1: points in 0..1 of the frame; 0: pixels */
    int npoints;    /* >= 3; the polygon is closed implicitly */
    double pts[VX_GATE_POLY_MAX][2];
    char description[VX_GATE_DESC_MAX];
    char path[VX_GATE_PATH_MAX]; /* file it came from, "" when inline */
} vx_gate_zone;

typedef enum {
    VX_GATE_ANCHOR_EITHER = 0, /* "either" */
    VX_GATE_ANCHOR_STRICT,     /* "strict_anchor" */
    VX_GATE_ANCHOR_NONE,       /* "no_anchor" */
} vx_gate_anchor_mode;

typedef struct {
    char gate_id[VX_GATE_ID_MAX]; /* default "gate" */
    vx_gate_zone gate_area;       /* required */
    vx_gate_zone guard_anchor;    /* required unless mode is no_anchor */
    int has_guard_anchor;
    int person_classes[VX_GATE_CLASSES_MAX]; /* default {0} */
    int n_person_classes;
    /* timers (seconds of stream time) */
    double person_min_dwell_s;        /* 6.0 */
    double guard_min_dwell_s;         /* 3.0 */
    double interaction_min_overlap_s; /* 1.2 */
    double session_timeout_s;         /* 8.0 */
    /* proximity */
    double center_dist_scale; /* 0.35: centre distance / mean box height */
    double iou_min;           /* 0.03 */
    vx_gate_anchor_mode anchor_mode;
    /* scoring */
    double score_base;             /* 0.6 */
    double contact_bonus;          /* 0.2 */
    double pose_bonus;             /* 0.15 */
    double reid_persistence_bonus; /* 0.05 */
    double threshold;              /* 0.9 */
    /* noise filtering */
    double min_box_height_px;  /* 40 */
    int jitter_smooth_window;  /* 5 frames */
    int multi_frame_consensus; /* 3 frames */
} vx_gate_config;

/* One problem found in a rules or zone file. */
typedef struct {
    char file[VX_GATE_PATH_MAX]; /* the file (or the name given to a parse-from-memory call) */
    int line;                    /* 1-based; 0 when not known */
    int column;
    char key[128];     /* dotted path of the key ("timers.person_min_dwell_s"), "" for syntax errors */
    char message[256]; /* what is wrong, for a human */
} vx_gate_issue;

#define VX_GATE_WARN_MAX 32

/* What a load found.  On failure `error` says what and where (the same text
 * as vx_last_error(): "rules.json:12: timers.session_timeout_s: must be a
 * number > 0").  Warnings (unknown keys) never fail a load. */
typedef struct {
    int has_error;
    vx_gate_issue error;
    int nwarnings; /* may exceed VX_GATE_WARN_MAX; only the first are kept */
    vx_gate_issue warnings[VX_GATE_WARN_MAX];
} vx_gate_diag;

/* The defaults listed above; gate_area and guard_anchor empty (npoints 0). */
void vx_gate_config_default(vx_gate_config *cfg);

/* Loads a rules file and the zone files it names (paths relative to the
 * rules file).  Absent keys take defaults; unknown keys are warned about
 * (diag and the log); wrong types, out-of-range values, bad polygons and
 * duplicate keys are rejected with VX_ERR_FORMAT naming file, line and key;
 * a missing file is VX_ERR_IO.  cfg is written only on success.  diag may
 * be NULL. */
vx_err vx_gate_config_load(const char *rules_path, vx_gate_config *cfg, vx_gate_diag *diag);

/* The same from memory (a POST body): `name` is used in messages; zone
 * entries may be zone objects inline or file paths relative to base_dir
 * (NULL: the current directory).  Such a document comes from outside, so
 * its paths may not be absolute nor contain a '..' component: it cannot
 * make the server read files elsewhere (vx_gate_config_load, for the
 * operator's own rules file, allows both). */
vx_err vx_gate_config_parse(const char *text, size_t len, const char *name, const char *base_dir,
                            vx_gate_config *cfg, vx_gate_diag *diag);

/* A zone file alone, from a path or from memory. */
vx_err vx_gate_zone_load(const char *path, vx_gate_zone *zone, vx_gate_diag *diag);
vx_err vx_gate_zone_parse(const char *text, size_t len, const char *name, vx_gate_zone *zone,
                          vx_gate_diag *diag);

/* Semantic checks on a config built in code (the loaders run them too):
 * ranges, polygons, anchor presence.  Message names the key. */
vx_err vx_gate_config_validate(const vx_gate_config *cfg);

/* The config as a rules document with the zones inline; parsing it back
 * gives the same config (the parsers keep 15 significant digits of every
 * number, as many as this writes).  New reference / malloc'd string; NULL
 * on OOM. */
json_t *vx_gate_config_to_json(const vx_gate_config *cfg);
char *vx_gate_config_json(const vx_gate_config *cfg);

const char *vx_gate_anchor_mode_name(vx_gate_anchor_mode mode);

/* ---- geometry ------------------------------------------------------------- */

/* Point in polygon (even-odd; points on an edge count as inside).  Points
 * in the polygon's own units. */
int vx_gate_polygon_contains(const double (*pts)[2], int n, double x, double y);
/* 1 when two non-adjacent edges touch or cross, or adjacent edges overlap. */
int vx_gate_polygon_self_intersects(const double (*pts)[2], int n);
/* Whether pixel point (x, y) of a width x height frame is in the zone. */
int vx_gate_zone_contains(const vx_gate_zone *zone, int width, int height, double x, double y);

/* ---- engine ----------------------------------------------------------------- */

typedef enum {
    VX_GATE_IDLE = 0,           /* outside the gate area (or no session) */
    VX_GATE_PRESENT_IN_GA,      /* in the gate area, no guard present */
    VX_GATE_GUARD_PRESENT,      /* a guard is in the anchor or the gate area */
    VX_GATE_INTERACTION_WINDOW, /* in contact with a guard */
    VX_GATE_CHECK_COMPLETED,    /* all criteria met; stays until the visitor leaves */
    VX_GATE_CHECK_FAILED, /* the visit ended without a completed check (in that frame's snapshot only) */
} vx_gate_state;

typedef enum {
    VX_GATE_FAIL_NONE = 0,
    VX_GATE_FAIL_NO_GUARD,   /* no guard was ever present during the visit */
    VX_GATE_FAIL_NO_CONTACT, /* a guard was present, never in contact */
    VX_GATE_FAIL_TOO_SHORT,  /* contact, but dwell / interaction / score fell short */
    VX_GATE_FAIL_TIMEOUT,    /* the visitor was lost for session_timeout_s */
} vx_gate_fail_reason;

typedef enum {
    VX_GATE_EV_PERSON_ENTERED = 0, /* person_entered_gate_area */
    VX_GATE_EV_PERSON_LEFT,        /* person_left_gate_area */
    VX_GATE_EV_GUARD_ANCHORED,    /* guard_anchored: a track became a guard / a guard re-entered the anchor */
    VX_GATE_EV_GUARD_LEFT_ANCHOR, /* guard_left_anchor */
    VX_GATE_EV_CONTACT_STARTED,   /* contact_started */
    VX_GATE_EV_CONTACT_ENDED,     /* contact_ended */
    VX_GATE_EV_CHECK_COMPLETED,   /* check_completed */
    VX_GATE_EV_CHECK_FAILED,      /* check_failed */
} vx_gate_event_type;

typedef enum { VX_GATE_ROLE_NONE = 0, VX_GATE_ROLE_VISITOR, VX_GATE_ROLE_GUARD } vx_gate_role;

#define VX_GATE_SESSION_MAX 96

typedef struct {
    uint64_t seq; /* 1, 2, 3... per engine, never reused (reset keeps counting) */
    vx_gate_event_type type;
    double t;                             /* stream time of the transition (seconds) */
    uint32_t track_id;                    /* the person (visitor for contact/check events) */
    uint32_t other_id;                    /* the guard for contact/check events, else 0 */
    char zone[VX_GATE_ID_MAX];            /* zone id the event is about ("" for none) */
    float x, y;                           /* the track's smoothed foot point, pixels */
    float confidence;                     /* detection confidence; the score for check events */
    char session_id[VX_GATE_SESSION_MAX]; /* visitor's session, "" for guards */
    vx_gate_fail_reason reason;           /* check_failed only */
} vx_gate_event;

typedef struct {
    int visitor_dwell; /* visitor in the gate area >= person_min_dwell_s */
    int guard_dwell;   /* guard's dwell >= guard_min_dwell_s */
    int interaction;   /* contact time >= interaction_min_overlap_s */
    int score;         /* score >= threshold */
} vx_gate_criteria;

/* One ended session (completed or failed). */
typedef struct {
    char session_id[VX_GATE_SESSION_MAX];
    char gate_id[VX_GATE_ID_MAX];
    uint32_t visitor_id;
    uint32_t guard_id; /* the guard with the most contact time (else the nearest seen), 0 when none */
    int completed;     /* 1: check_completed; 0: check_failed */
    vx_gate_fail_reason reason;
    double window_start; /* entry into the gate area */
    double window_end;   /* completion or failure */
    double visitor_dwell_s;
    double guard_dwell_s;
    double interaction_s;
    double min_center_dist; /* centre distance / mean box height, smallest seen; -1: never near a guard */
    double max_iou;
    double score;
    double threshold;
    vx_gate_criteria criteria;
    const vx_gate_event *timeline; /* the session's events in order, the verdict last */
    int ntimeline;
} vx_gate_completion;

/* Decisions snapshot entries. */
typedef struct {
    uint32_t id;
    vx_gate_role role;
    vx_gate_state state;
    int in_gate;          /* filtered membership */
    double dwell_s;       /* visitor: time in the gate area this visit */
    double interaction_s; /* accumulated contact time this visit */
    uint32_t guard_id;    /* assigned guard, 0 none */
    int contact;          /* filtered contact with the assigned guard */
    double score;
    char session_id[VX_GATE_SESSION_MAX];
    float x, y; /* smoothed foot point, pixels */
} vx_gate_person;

typedef struct {
    uint32_t id;
    int anchored;   /* in the anchor now (filtered) */
    double dwell_s; /* accumulated anchor dwell (gate-area dwell for guards promoted there) */
    float x, y;
} vx_gate_guard;

typedef struct {
    uint64_t gate_entries, gate_exits;
    uint64_t anchor_entries, anchor_exits;
    uint64_t in_gate;        /* persons in the gate area now */
    uint64_t passed_through; /* visits that ended with the person walking out of the gate area */
    uint64_t checks_completed, checks_failed;
    uint64_t failed_by_reason[5]; /* indexed by vx_gate_fail_reason */
    uint64_t frames;              /* frames processed since the counts were reset */
} vx_gate_counts;

/* Filled by vx_gate_process; owned by the caller, reused frame after frame
 * (arrays grow as needed, pointers valid until the next process / free). */
typedef struct {
    double t;
    int width, height;
    int discontinuity; /* time went backwards: the engine was reset before this frame */
    vx_gate_event *events;
    int nevents;
    vx_gate_completion *completions;
    int ncompletions;
    vx_gate_person *persons; /* sorted by id */
    int npersons;
    vx_gate_guard *guards; /* sorted by id */
    int nguards;
    vx_track *tracks; /* confirmed tracks alive, sorted by id */
    int ntracks;
    vx_gate_counts counts;
    /* internal storage */
    int cap_events, cap_completions, cap_persons, cap_guards, cap_tracks, cap_timeline;
    vx_gate_event *timeline_store;
    int ntimeline_store;
} vx_gate_result;

void vx_gate_result_init(vx_gate_result *res);
void vx_gate_result_free(vx_gate_result *res);

typedef struct {
    /* Prefix of session ids, so ids stay unique across runs of the same
     * video (the pipeline passes its start time); "" for none.  Session ids
     * read "<run_id>-<gate_id>-<visitor id>-<entry time in ms>". */
    char run_id[48];
    vx_track_opts track; /* vx_track_opts_default unless changed */
} vx_gate_opts;

void vx_gate_opts_default(vx_gate_opts *opts);

typedef struct vx_gate vx_gate;

/* cfg is validated and copied.  opts may be NULL. */
vx_err vx_gate_create(const vx_gate_config *cfg, const vx_gate_opts *opts, vx_gate **out);
void vx_gate_destroy(vx_gate *g);

/* One frame: detections in full-frame pixels (any class: only person
 * classes are tracked), the frame size, and the frame's stream time in
 * seconds (from its pts).  Fills res. */
typedef struct {
    const vx_track_det *dets;
    int ndet;
    int width, height;
    double t;
} vx_gate_frame;

vx_err vx_gate_process(vx_gate *g, const vx_gate_frame *frame, vx_gate_result *res);

/* Swaps the running config atomically (validated first; on error the
 * running one is untouched).  Track roles, timers and sessions carry over;
 * zone membership is re-evaluated on the new polygons from the next frame,
 * and what they change is dated no earlier than that frame. */
vx_err vx_gate_set_config(vx_gate *g, const vx_gate_config *cfg);
void vx_gate_get_config(vx_gate *g, vx_gate_config *cfg);

/* Forgets all tracks, roles and sessions (no events are emitted for them);
 * track ids and event sequence numbers keep counting.  Counts are kept. */
void vx_gate_reset(vx_gate *g);
void vx_gate_reset_counts(vx_gate *g);
void vx_gate_get_counts(vx_gate *g, vx_gate_counts *counts);

/* Pose hook, for when a pose model exists: returns 1 and writes a term in
 * [0,1] (how much the pair's poses look like a check) or returns 0 when it
 * cannot say.  Called from vx_gate_process.  NULL removes the hook. */
typedef int (*vx_gate_pose_fn)(void *user, uint32_t visitor_id, uint32_t guard_id, double t, double *term);
void vx_gate_set_pose_hook(vx_gate *g, vx_gate_pose_fn fn, void *user);

/* ---- names and JSON --------------------------------------------------------- */

const char *vx_gate_state_name(vx_gate_state s);             /* "IDLE", "PRESENT_IN_GA", ... */
const char *vx_gate_fail_reason_name(vx_gate_fail_reason r); /* "no_guard", ..., "" for none */
const char *vx_gate_event_type_name(vx_gate_event_type t);   /* "person_entered_gate_area", ... */
const char *vx_gate_role_name(vx_gate_role r);               /* "none", "visitor", "guard" */

/* One JSON shape for the server, the store and MQTT.  Times are stream
 * seconds rounded to the millisecond.  All return new references (NULL on
 * OOM).
 *   event:      {"seq","type","t","track_id","other_id","zone","x","y",
 *                "confidence","session_id","reason"}
 *   completion: {"session_id","gate_id","visitor_id","guard_id","status"
 *                ("completed"|"failed"),"reason","window_start","window_end",
 *                "visitor_dwell_s","guard_dwell_s","interaction_s",
 *                "min_center_dist","max_iou","score","threshold",
 *                "criteria":{"visitor_dwell","guard_dwell","interaction",
 *                "score"},"timeline":[event...]}
 *   decisions:  {"persons":{"<id>":{"role","state","in_gate","dwell",
 *                "interaction","assigned_guard","contact","score",
 *                "session_id","x","y"}},"guards":{"<id>":{"anchored",
 *                "dwell","x","y"}},"completions":[completion...]}
 *   counts:     {"gate_entries","gate_exits","anchor_entries",
 *                "anchor_exits","in_gate","passed_through",
 *                "checks_completed","checks_failed","failed_by_reason":{...},
 *                "frames"}
 *   result:     {"t","events":[...],"decisions":{...},"stats":counts} */
json_t *vx_gate_event_to_json(const vx_gate_event *ev);
json_t *vx_gate_completion_to_json(const vx_gate_completion *c);
json_t *vx_gate_decisions_to_json(const vx_gate_result *res);
json_t *vx_gate_counts_to_json(const vx_gate_counts *counts);
json_t *vx_gate_result_to_json(const vx_gate_result *res);

/* The same as compact strings (malloc'd, NULL on OOM). */
char *vx_gate_event_json(const vx_gate_event *ev);
char *vx_gate_completion_json(const vx_gate_completion *c);

#endif
