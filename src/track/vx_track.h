/*
 * track: multi-object tracker (ByteTrack-style), stable ids for detections.
 *
 * Each track carries a constant-velocity Kalman filter on (centre x, centre
 * y, aspect w/h, height) with ByteTrack's noise model (process and
 * measurement noise proportional to the box height).  Per frame:
 *
 *   1. every track is predicted to the frame's time;
 *   2. detections are split by confidence: high (>= high_thresh) and low
 *      (low_thresh .. high_thresh); lower ones are ignored;
 *   3. high detections are assigned to the confirmed tracks matched in the
 *      previous frame by an optimal linear assignment on 1 - IoU (gated
 *      at match_iou_high); then the ones left to the lost tracks (missed >
 *      0), scored by the better IoU of their prediction and their last
 *      seen box, since someone who stopped behind an occluder is where
 *      they were, not where their old velocity would take them;
 *   4. low detections are assigned to the confirmed tracks matched in the
 *      previous frame and still unmatched (gated at match_iou_low): a
 *      person half hidden behind a pillar keeps its id on a weak box
 *      instead of spawning a new one later;
 *   5. tentative tracks (not yet confirmed) are matched to the high
 *      detections left over (gated at match_iou_tentative);
 *   6. unmatched high detections with conf >= new_track_thresh start
 *      tentative tracks.  A tentative track is confirmed after confirm_hits
 *      matched frames and removed the first frame it misses; a confirmed
 *      track is dropped after max_missed frames in a row without a match.
 *
 * Ids (> 0) are given at confirmation, in order, and never reused within the
 * tracker's life (vx_tracker_reset keeps counting), so a client never sees an
 * id that belonged to someone else and never sees ids of noise that never
 * got confirmed.
 *
 * Time: the filter runs on the stream's own timestamps.  A frame that comes
 * after a gap (the pipeline skipped frames it could not keep up with)
 * predicts proportionally further; the unit step is the median frame
 * interval seen so far.  The missed-frame count counts processed frames.
 *
 * Determinism: no wall clock, no randomness, no hashing; the same detections
 * with the same timestamps give the same tracks and ids.
 *
 * Threading: a tracker belongs to one thread at a time.
 */
#ifndef VX_TRACK_H
#define VX_TRACK_H

#include <stdint.h>

#include "core/vx_core.h"

/* One detection of a frame, in the frame's pixels (same layout as
 * vx_detection, so the pipeline can pass those through unchanged). */
typedef struct {
    float x1, y1, x2, y2;
    float conf; /* 0..1 */
    int cls;    /* class id */
} vx_track_det;

typedef struct {
    float high_thresh;         /* first association (default 0.5) */
    float low_thresh;          /* below: ignored (default 0.1) */
    float new_track_thresh;    /* a new track needs this much (default 0.6) */
    float match_iou_high;      /* min IoU, high detections (default 0.2) */
    float match_iou_low;       /* min IoU, low detections (default 0.5) */
    float match_iou_tentative; /* min IoU, tentative tracks (default 0.3) */
    int confirm_hits;          /* matched frames to confirm (default 3) */
    int max_missed;            /* frames a confirmed track survives unmatched (default 30) */
    int class_aware;           /* 1: a track only matches detections of its class (default 1) */
} vx_track_opts;

void vx_track_opts_default(vx_track_opts *opts);
/* Thresholds in [0,1], low <= high, confirm_hits in [1,100], max_missed in
 * [0,10000]. */
vx_err vx_track_opts_validate(const vx_track_opts *opts);

/* A track as reported after a frame. */
typedef struct {
    uint32_t id;          /* > 0, stable for the track's life */
    float x1, y1, x2, y2; /* the matched detection's box, or the prediction when missed > 0 */
    float conf;           /* the last matched detection's confidence */
    int cls;
    float vx, vy;   /* filtered centre velocity, pixels per second */
    int hits;       /* matched frames so far */
    int missed;     /* frames since the last match (0: matched in this frame) */
    int det_index;  /* index of the matched detection in this frame's input, or -1 */
    double t_first; /* stream time of the first detection of the track */
    double t_last;  /* stream time of the last match */
} vx_track;

typedef struct vx_tracker vx_tracker;

vx_err vx_tracker_create(const vx_track_opts *opts, vx_tracker **out); /* opts NULL: defaults */
void vx_tracker_destroy(vx_tracker *tr);

/* Drops every track; the next id continues from the last one given. */
void vx_tracker_reset(vx_tracker *tr);

/* Feeds one frame taken at stream time t (seconds; must not go backwards:
 * VX_ERR_INVALID, the tracker unchanged).  Writes the confirmed tracks that
 * are alive (matched in this frame or missed <= max_missed), sorted by id,
 * up to cap; *count gets the number written.  Tracks that do not fit are
 * still tracked. */
vx_err vx_tracker_update(vx_tracker *tr, const vx_track_det *dets, int ndet, double t, vx_track *out, int cap,
                         int *count);

/* The last matched boxes of confirmed track `id` (those from before its
 * confirmation included), oldest first, at most min(cap, VX_TRACK_HIST);
 * returns how many were written (0: no such track).  A consumer that first
 * hears of a track at its confirmation can date what it did from its first
 * detection instead of from its confirm_hits-th. */
#define VX_TRACK_HIST 8
typedef struct {
    float box[4];
    double t;
} vx_track_sample;
int vx_tracker_history(const vx_tracker *tr, uint32_t id, vx_track_sample *out, int cap);

/* Number of tracks held (tentative included), and the last id given (0: none). */
int vx_tracker_size(const vx_tracker *tr);
uint32_t vx_tracker_last_id(const vx_tracker *tr);

/* IoU of two boxes (x1,y1,x2,y2); 0 for empty boxes. */
float vx_track_iou(const float a[4], const float b[4]);

/* Optimal rectangular linear assignment (Hungarian / shortest augmenting
 * path), minimising total cost with a rejection cost: row i is assigned to
 * column j only when cost[i*ncols+j] < cost_limit, and leaving a row and a
 * column unmatched costs cost_limit (lapjv's cost_limit semantics).
 * row_to_col[i] gets the column or -1; col_to_row likewise (may be NULL).
 * Returns VX_ERR_NOMEM when scratch memory cannot be allocated. */
vx_err vx_track_assign(const double *cost, int nrows, int ncols, double cost_limit, int *row_to_col,
                       int *col_to_row);

#endif
