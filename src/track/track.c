/*
 * ByteTrack-style tracker: see vx_track.h for the association order.
 *
 * The Kalman filter follows ByteTrack's (and DeepSORT's) KalmanFilter:
 * state (cx, cy, a, h, vcx, vcy, va, vh), measurement (cx, cy, a, h), noise
 * standard deviations proportional to the height (1/20 for positions, 1/160
 * for velocities), so a near, tall person is allowed to move more pixels
 * than a far one.  Velocities are per "step", the median frame interval;
 * a frame after a gap of k steps predicts k steps ahead with k times the
 * process noise (a random walk's variance grows linearly).
 *
 * Tracks live in one array in creation order; removal keeps that order, so
 * iteration (and with it id assignment and tie-breaking in the assignment)
 * never depends on memory addresses.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "track/vx_track.h"

#define STD_POS (1.0 / 20.0)
#define STD_VEL (1.0 / 160.0)
#define DT_RING 15

typedef struct {
    double x[8];
    double P[64];
    uint32_t id; /* 0 while tentative */
    int confirmed;
    int hits, missed;
    int cls;
    float conf;
    float box[4];  /* last matched detection */
    float pbox[4]; /* prediction for this frame */
    int det_index;
    double t_first, t_last;
    /* the last matched boxes, for vx_tracker_history */
    float hbox[VX_TRACK_HIST][4];
    double ht[VX_TRACK_HIST];
    int nh, hpos;
} trk;

static void hist_push(trk *k, const float b[4], double t)
{
    memcpy(k->hbox[k->hpos], b, sizeof k->hbox[0]);
    k->ht[k->hpos] = t;
    k->hpos = (k->hpos + 1) % VX_TRACK_HIST;
    if (k->nh < VX_TRACK_HIST)
        k->nh++;
}

struct vx_tracker {
    vx_track_opts o;
    trk *t;
    int n, cap;
    uint32_t last_id;
    int have_time;
    double last_t;
    double dts[DT_RING];
    int ndts, dt_pos;
};

void vx_track_opts_default(vx_track_opts *o)
{
    o->high_thresh = 0.5f;
    o->low_thresh = 0.1f;
    o->new_track_thresh = 0.6f;
    o->match_iou_high = 0.2f;
    o->match_iou_low = 0.5f;
    o->match_iou_tentative = 0.3f;
    o->confirm_hits = 3;
    o->max_missed = 30;
    o->class_aware = 1;
}

static int in01(float v)
{
    return v >= 0.0f && v <= 1.0f;
}

vx_err vx_track_opts_validate(const vx_track_opts *o)
{
    if (!o)
        return vx_fail(VX_ERR_INVALID, "tracker options: NULL");
    if (!in01(o->high_thresh) || !in01(o->low_thresh) || !in01(o->new_track_thresh))
        return vx_fail(VX_ERR_INVALID, "tracker options: confidence thresholds must be in [0,1]");
    if (o->low_thresh > o->high_thresh)
        return vx_fail(VX_ERR_INVALID, "tracker options: low_thresh %.3f > high_thresh %.3f", o->low_thresh,
                       o->high_thresh);
    if (!in01(o->match_iou_high) || !in01(o->match_iou_low) || !in01(o->match_iou_tentative))
        return vx_fail(VX_ERR_INVALID, "tracker options: IoU gates must be in [0,1]");
    if (o->confirm_hits < 1 || o->confirm_hits > 100)
        return vx_fail(VX_ERR_INVALID, "tracker options: confirm_hits %d not in [1,100]", o->confirm_hits);
    if (o->max_missed < 0 || o->max_missed > 10000)
        return vx_fail(VX_ERR_INVALID, "tracker options: max_missed %d not in [0,10000]", o->max_missed);
    return VX_OK;
}

float vx_track_iou(const float a[4], const float b[4])
{
    float iw = fminf(a[2], b[2]) - fmaxf(a[0], b[0]);
    float ih = fminf(a[3], b[3]) - fmaxf(a[1], b[1]);
    if (!(iw > 0) || !(ih > 0))
        return 0.0f;
    float inter = iw * ih;
    float ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    return ua > 0 ? inter / ua : 0.0f;
}

/* ---- Kalman filter ----------------------------------------------------------- */

static void kf_init(trk *k, const float b[4])
{
    double w = b[2] - b[0], h = b[3] - b[1];
    double z[4] = {(b[0] + b[2]) * 0.5, (b[1] + b[3]) * 0.5, w / h, h};
    double sd[8] = {2 * STD_POS * h,  2 * STD_POS * h,  1e-2, 2 * STD_POS * h,
                    10 * STD_VEL * h, 10 * STD_VEL * h, 1e-5, 10 * STD_VEL * h};
    memset(k->x, 0, sizeof k->x);
    memcpy(k->x, z, sizeof z);
    memset(k->P, 0, sizeof k->P);
    for (int i = 0; i < 8; i++)
        k->P[i * 8 + i] = sd[i] * sd[i];
}

static void kf_predict(trk *k, double steps)
{
    if (steps <= 0)
        return;
    double *x = k->x, *P = k->P;
    for (int i = 0; i < 4; i++)
        x[i] += steps * x[4 + i];
    /* P = F P F^T with F = [I sI; 0 I] */
    double Q[64];
    memcpy(Q, P, sizeof Q);
    for (int i = 0; i < 4; i++) /* rows: P[i,:] += s P[i+4,:] */
        for (int j = 0; j < 8; j++)
            Q[i * 8 + j] += steps * P[(i + 4) * 8 + j];
    memcpy(P, Q, sizeof Q);
    for (int j = 0; j < 4; j++) /* cols: P[:,j] += s P[:,j+4] */
        for (int i = 0; i < 8; i++)
            P[i * 8 + j] += steps * Q[i * 8 + j + 4];
    double h = x[3] > 1 ? x[3] : 1;
    double sd[8] = {STD_POS * h, STD_POS * h, 1e-2, STD_POS * h, STD_VEL * h, STD_VEL * h, 1e-5, STD_VEL * h};
    for (int i = 0; i < 8; i++)
        P[i * 8 + i] += steps * sd[i] * sd[i];
}

/* Inverts a symmetric positive definite 4x4 matrix via Cholesky; 0 on failure. */
static int spd_inv4(const double *S, double *inv)
{
    double L[16] = {0};
    for (int i = 0; i < 4; i++) {
        for (int j = 0; j <= i; j++) {
            double s = S[i * 4 + j];
            for (int k = 0; k < j; k++)
                s -= L[i * 4 + k] * L[j * 4 + k];
            if (i == j) {
                if (!(s > 0))
                    return 0;
                L[i * 4 + i] = sqrt(s);
            } else {
                L[i * 4 + j] = s / L[j * 4 + j];
            }
        }
    }
    /* inv = (L L^T)^-1: solve for each unit vector */
    for (int c = 0; c < 4; c++) {
        double y[4], xx[4];
        for (int i = 0; i < 4; i++) {
            double s = (i == c);
            for (int k = 0; k < i; k++)
                s -= L[i * 4 + k] * y[k];
            y[i] = s / L[i * 4 + i];
        }
        for (int i = 3; i >= 0; i--) {
            double s = y[i];
            for (int k = i + 1; k < 4; k++)
                s -= L[k * 4 + i] * xx[k];
            xx[i] = s / L[i * 4 + i];
        }
        for (int i = 0; i < 4; i++)
            inv[i * 4 + c] = xx[i];
    }
    return 1;
}

static void kf_update(trk *k, const float b[4])
{
    double w = b[2] - b[0], h = b[3] - b[1];
    double z[4] = {(b[0] + b[2]) * 0.5, (b[1] + b[3]) * 0.5, w / h, h};
    double *x = k->x, *P = k->P;
    double hh = x[3] > 1 ? x[3] : 1;
    double r[4] = {STD_POS * hh, STD_POS * hh, 1e-1, STD_POS * hh};
    double S[16], Si[16];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            S[i * 4 + j] = P[i * 8 + j] + (i == j ? r[i] * r[i] : 0);
    if (!spd_inv4(S, Si)) { /* numerically broken: restart the filter on the measurement */
        kf_init(k, b);
        return;
    }
    double K[32]; /* 8x4 = P[:,0:4] S^-1 */
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++) {
            double s = 0;
            for (int m = 0; m < 4; m++)
                s += P[i * 8 + m] * Si[m * 4 + j];
            K[i * 4 + j] = s;
        }
    double y[4];
    for (int i = 0; i < 4; i++)
        y[i] = z[i] - x[i];
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++)
            x[i] += K[i * 4 + j] * y[j];
    /* P -= K H P  (H P = first four rows of P) */
    double NP[64];
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 8; j++) {
            double s = 0;
            for (int m = 0; m < 4; m++)
                s += K[i * 4 + m] * P[m * 8 + j];
            NP[i * 8 + j] = P[i * 8 + j] - s;
        }
    /* keep it symmetric against rounding drift */
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < i; j++) {
            double m = 0.5 * (NP[i * 8 + j] + NP[j * 8 + i]);
            NP[i * 8 + j] = NP[j * 8 + i] = m;
        }
    memcpy(P, NP, sizeof NP);
}

static void kf_box(const trk *k, float b[4])
{
    double h = k->x[3] > 1 ? k->x[3] : 1;
    double a = k->x[2] > 1e-3 ? k->x[2] : 1e-3;
    double w = a * h;
    b[0] = (float)(k->x[0] - w * 0.5);
    b[1] = (float)(k->x[1] - h * 0.5);
    b[2] = (float)(k->x[0] + w * 0.5);
    b[3] = (float)(k->x[1] + h * 0.5);
}

/* ---- tracker ------------------------------------------------------------------- */

vx_err vx_tracker_create(const vx_track_opts *opts, vx_tracker **out)
{
    *out = NULL;
    vx_tracker *tr = calloc(1, sizeof *tr);
    if (!tr)
        return vx_fail(VX_ERR_NOMEM, "tracker: out of memory");
    if (opts) {
        vx_err e = vx_track_opts_validate(opts);
        if (e) {
            free(tr);
            return e;
        }
        tr->o = *opts;
    } else {
        vx_track_opts_default(&tr->o);
    }
    *out = tr;
    return VX_OK;
}

void vx_tracker_destroy(vx_tracker *tr)
{
    if (!tr)
        return;
    free(tr->t);
    free(tr);
}

void vx_tracker_reset(vx_tracker *tr)
{
    tr->n = 0;
    tr->have_time = 0;
    tr->ndts = tr->dt_pos = 0;
}

int vx_tracker_size(const vx_tracker *tr)
{
    return tr->n;
}

int vx_tracker_history(const vx_tracker *tr, uint32_t id, vx_track_sample *out, int cap)
{
    if (!id || cap <= 0)
        return 0;
    for (int i = 0; i < tr->n; i++) {
        const trk *k = &tr->t[i];
        if (k->id != id)
            continue;
        int n = k->nh < cap ? k->nh : cap;
        for (int j = 0; j < n; j++) { /* oldest first */
            int slot = (k->hpos - n + j + 2 * VX_TRACK_HIST) % VX_TRACK_HIST;
            memcpy(out[j].box, k->hbox[slot], sizeof out[j].box);
            out[j].t = k->ht[slot];
        }
        return n;
    }
    return 0;
}

uint32_t vx_tracker_last_id(const vx_tracker *tr)
{
    return tr->last_id;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Frame interval in steps of the median interval seen so far; records dt. */
static double steps_for(vx_tracker *tr, double dt)
{
    double steps = 1.0;
    if (tr->ndts > 0) {
        double s[DT_RING];
        memcpy(s, tr->dts, sizeof(double) * tr->ndts);
        qsort(s, tr->ndts, sizeof(double), cmp_double);
        double med = s[tr->ndts / 2];
        if (med > 0)
            steps = dt / med;
    }
    if (steps > 1000)
        steps = 1000;
    if (dt > 0) {
        tr->dts[tr->dt_pos] = dt;
        tr->dt_pos = (tr->dt_pos + 1) % DT_RING;
        if (tr->ndts < DT_RING)
            tr->ndts++;
    }
    return steps;
}

static double step_seconds(const vx_tracker *tr)
{
    if (tr->ndts == 0)
        return 0;
    double s[DT_RING];
    memcpy(s, tr->dts, sizeof(double) * tr->ndts);
    qsort(s, tr->ndts, sizeof(double), cmp_double);
    return s[tr->ndts / 2];
}

static int det_valid(const vx_track_det *d)
{
    return isfinite(d->x1) && isfinite(d->y1) && isfinite(d->x2) && isfinite(d->y2) && isfinite(d->conf) &&
           d->x2 > d->x1 && d->y2 > d->y1;
}

/* Associates tracks ti[0..nt) with detections di[0..nd) by IoU; writes
 * track->det matches into tmatch (indices into di, -1) and marks detections
 * taken in dtaken. */
static vx_err associate(vx_tracker *tr, const vx_track_det *dets, const int *ti, int nt, const int *di,
                        int nd, float min_iou, int *tmatch, char *dtaken)
{
    for (int i = 0; i < nt; i++)
        tmatch[i] = -1;
    if (nt == 0 || nd == 0)
        return VX_OK;
    double *cost = malloc(sizeof(double) * (size_t)nt * (size_t)nd);
    int *r2c = malloc(sizeof(int) * (size_t)nt);
    if (!cost || !r2c) {
        free(cost), free(r2c);
        return vx_fail(VX_ERR_NOMEM, "tracker: out of memory");
    }
    for (int i = 0; i < nt; i++) {
        const trk *k = &tr->t[ti[i]];
        for (int j = 0; j < nd; j++) {
            const vx_track_det *d = &dets[di[j]];
            float db[4] = {d->x1, d->y1, d->x2, d->y2};
            /* a lost track may have coasted past someone who stopped
             * behind an occluder: its last seen box counts too */
            float iou = vx_track_iou(k->pbox, db);
            if (k->missed > 0) {
                float last = vx_track_iou(k->box, db);
                if (last > iou)
                    iou = last;
            }
            double c = 1.0 - iou;
            if (tr->o.class_aware && d->cls != k->cls)
                c = INFINITY;
            cost[(size_t)i * nd + j] = c;
        }
    }
    /* cost < 1 - min_iou  <=>  IoU > min_iou; an IoU of 0 never matches */
    double limit = 1.0 - (double)min_iou;
    if (limit > 1.0 - 1e-9)
        limit = 1.0 - 1e-9;
    vx_err e = vx_track_assign(cost, nt, nd, limit, r2c, NULL);
    if (e == VX_OK)
        for (int i = 0; i < nt; i++)
            if (r2c[i] >= 0) {
                tmatch[i] = di[r2c[i]];
                dtaken[r2c[i]] = 1;
            }
    free(cost), free(r2c);
    return e;
}

static void apply_match(vx_tracker *tr, trk *k, const vx_track_det *dets, int di, double t)
{
    const vx_track_det *d = &dets[di];
    float b[4] = {d->x1, d->y1, d->x2, d->y2};
    kf_update(k, b);
    memcpy(k->box, b, sizeof b);
    hist_push(k, b, t);
    k->conf = d->conf;
    k->hits++;
    k->missed = 0;
    k->det_index = di;
    k->t_last = t;
    if (!k->confirmed && k->hits >= tr->o.confirm_hits) {
        k->confirmed = 1;
        k->id = ++tr->last_id;
    }
}

static int cmp_track_id(const void *a, const void *b)
{
    uint32_t x = ((const vx_track *)a)->id, y = ((const vx_track *)b)->id;
    return (x > y) - (x < y);
}

vx_err vx_tracker_update(vx_tracker *tr, const vx_track_det *dets, int ndet, double t, vx_track *out, int cap,
                         int *count)
{
    if (count)
        *count = 0;
    if (!isfinite(t))
        return vx_fail(VX_ERR_INVALID, "tracker: frame time is not a number");
    if (ndet < 0 || (ndet > 0 && !dets))
        return vx_fail(VX_ERR_INVALID, "tracker: bad detection array");
    if (tr->have_time && t < tr->last_t)
        return vx_fail(VX_ERR_INVALID, "tracker: frame time %.3f s is before the previous frame's %.3f s", t,
                       tr->last_t);
    double steps = tr->have_time ? steps_for(tr, t - tr->last_t) : 1.0;
    tr->have_time = 1;
    tr->last_t = t;

    for (int i = 0; i < tr->n; i++) {
        trk *k = &tr->t[i];
        if (k->missed > 0) /* as ByteTrack: a lost box keeps its size */
            k->x[7] = 0;
        kf_predict(k, steps);
        kf_box(k, k->pbox);
        k->det_index = -1;
    }

    vx_err e = VX_OK;
    /* scratch: index lists */
    size_t nscr = (size_t)(ndet + tr->n + 1);
    int *hi = calloc(nscr, sizeof(int)), *lo = calloc(nscr, sizeof(int));
    int *ti = calloc(nscr, sizeof(int)), *tm = calloc(nscr, sizeof(int));
    int *rest = calloc(nscr, sizeof(int)), *left = calloc(nscr, sizeof(int)), *li = calloc(nscr, sizeof(int));
    char *taken = calloc(nscr, 1);
    char *matched = calloc(nscr, 1); /* per track */
    if (!hi || !lo || !ti || !tm || !rest || !left || !li || !taken || !matched) {
        e = vx_fail(VX_ERR_NOMEM, "tracker: out of memory");
        goto done;
    }
    int nhi = 0, nlo = 0;
    for (int j = 0; j < ndet; j++) {
        const vx_track_det *d = &dets[j];
        if (!det_valid(d) || d->conf < tr->o.low_thresh)
            continue;
        if (d->conf >= tr->o.high_thresh)
            hi[nhi++] = j;
        else
            lo[nlo++] = j;
    }

    /* 1a. confirmed tracks matched last frame <- high detections.  Lost
     * tracks come second (DeepSORT's cascade in two steps), so a coasting
     * track never takes the detection of someone being tracked right now */
    int nt = 0;
    for (int i = 0; i < tr->n; i++)
        if (tr->t[i].confirmed && tr->t[i].missed == 0)
            ti[nt++] = i;
    memset(taken, 0, nscr);
    if ((e = associate(tr, dets, ti, nt, hi, nhi, tr->o.match_iou_high, tm, taken)))
        goto done;
    for (int i = 0; i < nt; i++)
        if (tm[i] >= 0) {
            apply_match(tr, &tr->t[ti[i]], dets, tm[i], t);
            matched[ti[i]] = 1;
        }
    int nleft = 0;
    for (int j = 0; j < nhi; j++)
        if (!taken[j])
            left[nleft++] = hi[j];

    /* 1b. lost tracks <- the high detections left */
    int nl = 0;
    for (int i = 0; i < tr->n; i++)
        if (tr->t[i].confirmed && tr->t[i].missed > 0)
            li[nl++] = i;
    memset(taken, 0, nscr);
    if ((e = associate(tr, dets, li, nl, left, nleft, tr->o.match_iou_high, tm, taken)))
        goto done;
    for (int i = 0; i < nl; i++)
        if (tm[i] >= 0) {
            apply_match(tr, &tr->t[li[i]], dets, tm[i], t);
            matched[li[i]] = 1;
        }
    int nrest = 0;
    for (int j = 0; j < nleft; j++)
        if (!taken[j])
            rest[nrest++] = left[j];

    /* 2. confirmed tracks matched last frame, still unmatched <- low detections */
    int nt2 = 0;
    for (int i = 0; i < nt; i++)
        if (!matched[ti[i]])
            ti[nt2++] = ti[i];
    memset(taken, 0, nscr);
    if ((e = associate(tr, dets, ti, nt2, lo, nlo, tr->o.match_iou_low, tm, taken)))
        goto done;
    for (int i = 0; i < nt2; i++)
        if (tm[i] >= 0) {
            apply_match(tr, &tr->t[ti[i]], dets, tm[i], t);
            matched[ti[i]] = 1;
        }

    /* 3. tentative tracks <- high detections left over */
    int nt3 = 0;
    for (int i = 0; i < tr->n; i++)
        if (!tr->t[i].confirmed)
            ti[nt3++] = i;
    memset(taken, 0, nscr);
    if ((e = associate(tr, dets, ti, nt3, rest, nrest, tr->o.match_iou_tentative, tm, taken)))
        goto done;
    for (int i = 0; i < nt3; i++)
        if (tm[i] >= 0) {
            apply_match(tr, &tr->t[ti[i]], dets, tm[i], t);
            matched[ti[i]] = 1;
        }

    /* misses and removals (order kept) */
    int w = 0;
    for (int i = 0; i < tr->n; i++) {
        trk *k = &tr->t[i];
        if (!matched[i]) {
            k->missed++;
            if (!k->confirmed || k->missed > tr->o.max_missed)
                continue;
        }
        if (w != i)
            tr->t[w] = *k;
        w++;
    }
    tr->n = w;

    /* 4. new tentative tracks from unmatched confident detections */
    for (int j = 0; j < nrest; j++) {
        if (taken[j])
            continue;
        const vx_track_det *d = &dets[rest[j]];
        if (d->conf < tr->o.new_track_thresh)
            continue;
        if (tr->n == tr->cap) {
            int nc = tr->cap ? tr->cap * 2 : 32;
            trk *nt_ = realloc(tr->t, sizeof(trk) * (size_t)nc);
            if (!nt_) {
                e = vx_fail(VX_ERR_NOMEM, "tracker: out of memory");
                goto done;
            }
            tr->t = nt_;
            tr->cap = nc;
        }
        trk *k = &tr->t[tr->n++];
        memset(k, 0, sizeof *k);
        float b[4] = {d->x1, d->y1, d->x2, d->y2};
        kf_init(k, b);
        memcpy(k->box, b, sizeof b);
        memcpy(k->pbox, b, sizeof b);
        hist_push(k, b, t);
        k->cls = d->cls;
        k->conf = d->conf;
        k->hits = 1;
        k->det_index = rest[j];
        k->t_first = k->t_last = t;
        if (k->hits >= tr->o.confirm_hits) {
            k->confirmed = 1;
            k->id = ++tr->last_id;
        }
    }

    /* output */
    double sps = step_seconds(tr);
    int c = 0;
    for (int i = 0; i < tr->n && c < cap; i++) {
        const trk *k = &tr->t[i];
        if (!k->confirmed)
            continue;
        vx_track *o = &out[c++];
        o->id = k->id;
        const float *b = k->missed ? k->pbox : k->box;
        o->x1 = b[0], o->y1 = b[1], o->x2 = b[2], o->y2 = b[3];
        o->conf = k->conf;
        o->cls = k->cls;
        o->vx = sps > 0 ? (float)(k->x[4] / sps) : 0;
        o->vy = sps > 0 ? (float)(k->x[5] / sps) : 0;
        o->hits = k->hits;
        o->missed = k->missed;
        o->det_index = k->missed ? -1 : k->det_index;
        o->t_first = k->t_first;
        o->t_last = k->t_last;
    }
    if (c > 1)
        qsort(out, c, sizeof *out, cmp_track_id);
    if (count)
        *count = c;
done:
    free(hi), free(lo), free(ti), free(tm), free(rest), free(left), free(li), free(taken), free(matched);
    return e;
}
