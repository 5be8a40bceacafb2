/*
 * The gate engine: tracker -> per-track zone filters -> roles -> per-visitor
 * sessions -> events, completion records, counts.  See vx_gate.h for the
 * rules; the notes here are about how they are kept exact.
 *
 * Time base.  Zone tests and contact use the smoothed box (a moving average
 * of the last matched boxes), which shows where someone was at the mean
 * time of its window (st), not at the frame's time.  A hysteresis filter
 * flips after K agreeing frames and the flip is dated at the st of the
 * first of them.  Dwell in the anchor and contact time are kept as periods
 * between those dated transitions (finished periods summed, the current
 * one counted up to the evidence time: st, or the start of a pending run
 * that may end it), so neither the smoothing nor the consensus delays an
 * event or inflates a sum, and a contact that is about to end never
 * completes a check.
 *
 * Occlusion.  A track the tracker still reports but did not match this
 * frame (missed > 0) keeps its filtered states frozen: a predicted box is not
 * evidence of where someone's feet are.  A track in the gate area that the
 * tracker drops stays in the engine until session_timeout_s after it was
 * last seen; then it leaves the gate area (and an open session fails with
 * `timeout`) at exactly last_seen + session_timeout_s.
 *
 * Records are kept in one array sorted by track id (ids only grow, so new
 * ones append), and every per-frame pass walks it in that order: events
 * within a frame come out in id order, the same on every replay.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gate/vx_gate.h"

#define SMOOTH_MAX 100
#define GUARD_CREDIT_MAX 8

typedef struct {
    int state;    /* filtered */
    int run;      /* consecutive frames disagreeing with state */
    double run_t; /* stream time of the first of them */
} hyst;

typedef struct {
    uint32_t id;
    double t;
} credit;

typedef struct {
    int open;
    char id[VX_GATE_SESSION_MAX];
    double start;
    int fixed_visitor; /* a guard was present: the role can no longer change */
    int ever_guard, ever_contact;
    double interaction_closed; /* contact time of finished contact periods */
    double contact_on_t;       /* start of the current one */
    double interaction;        /* settled contact time, as of the last evaluation */
    double last_eval;          /* evidence time of the last evaluation that did not complete */
    credit credits[GUARD_CREDIT_MAX];
    int ncredits;
    uint32_t assigned_guard;
    double min_dist, max_iou;
    long frames, matched;
    int pose_known;
    double pose;
    double score;
    vx_gate_event *ev;
    int nev, capev;
} session;

typedef struct {
    uint32_t id;
    int alive;   /* reported by the tracker this frame */
    int visible; /* matched this frame */
    double t_first, t_last_seen;
    float box[4];
    float conf;
    float sm_b[SMOOTH_MAX][4]; /* the last matched boxes */
    double sm_t[SMOOTH_MAX];
    int nsm, smpos;
    float sbox[4];        /* smoothed box */
    float cx, cy, fx, fy; /* its centre and foot point */
    double st;            /* the stream time they stand for: the mean of the window's */
    hyst ga, anchor, contact;
    double ga_enter_t;
    double anchor_closed, anchor_on_t; /* anchor dwell: finished visits, start of the current */
    double zone_dwell;
    vx_gate_role role;
    vx_gate_state state;
    int fixed_visitor;
    uint32_t contact_guard; /* the guard in contact (credited with the contact time) */
    session s;
} rec;

struct vx_gate {
    pthread_mutex_t mu;
    vx_gate_config cfg;
    vx_gate_opts opts;
    vx_tracker *tr;
    vx_gate_pose_fn pose_fn;
    void *pose_user;
    rec *r;
    int n, cap;
    vx_track_det *dets;
    int cap_dets;
    vx_track *tracks;
    int cap_tracks;
    int have_t;
    int cfg_changed;  /* set_config ran since the last frame */
    double cfg_since; /* stream time of the first frame under the current config */
    double prev_t;
    uint64_t seq;
    vx_gate_counts counts;
    uint32_t *entrants;
    int nentrants, cap_entrants;
};

/* ---- names ------------------------------------------------------------------ */

const char *vx_gate_state_name(vx_gate_state s)
{
    switch (s) {
    case VX_GATE_IDLE: return "IDLE";
    case VX_GATE_PRESENT_IN_GA: return "PRESENT_IN_GA";
    case VX_GATE_GUARD_PRESENT: return "GUARD_PRESENT";
    case VX_GATE_INTERACTION_WINDOW: return "INTERACTION_WINDOW";
    case VX_GATE_CHECK_COMPLETED: return "CHECK_COMPLETED";
    case VX_GATE_CHECK_FAILED: return "CHECK_FAILED";
    }
    return "?";
}

const char *vx_gate_fail_reason_name(vx_gate_fail_reason r)
{
    switch (r) {
    case VX_GATE_FAIL_NONE: return "";
    case VX_GATE_FAIL_NO_GUARD: return "no_guard";
    case VX_GATE_FAIL_NO_CONTACT: return "no_contact";
    case VX_GATE_FAIL_TOO_SHORT: return "too_short";
    case VX_GATE_FAIL_TIMEOUT: return "timeout";
    }
    return "?";
}

const char *vx_gate_event_type_name(vx_gate_event_type t)
{
    switch (t) {
    case VX_GATE_EV_PERSON_ENTERED: return "person_entered_gate_area";
    case VX_GATE_EV_PERSON_LEFT: return "person_left_gate_area";
    case VX_GATE_EV_GUARD_ANCHORED: return "guard_anchored";
    case VX_GATE_EV_GUARD_LEFT_ANCHOR: return "guard_left_anchor";
    case VX_GATE_EV_CONTACT_STARTED: return "contact_started";
    case VX_GATE_EV_CONTACT_ENDED: return "contact_ended";
    case VX_GATE_EV_CHECK_COMPLETED: return "check_completed";
    case VX_GATE_EV_CHECK_FAILED: return "check_failed";
    }
    return "?";
}

const char *vx_gate_role_name(vx_gate_role r)
{
    switch (r) {
    case VX_GATE_ROLE_NONE: return "none";
    case VX_GATE_ROLE_VISITOR: return "visitor";
    case VX_GATE_ROLE_GUARD: return "guard";
    }
    return "?";
}

/* ---- result buffers ----------------------------------------------------------- */

void vx_gate_result_init(vx_gate_result *res)
{
    memset(res, 0, sizeof *res);
}

void vx_gate_result_free(vx_gate_result *res)
{
    if (!res)
        return;
    free(res->events);
    free(res->completions);
    free(res->persons);
    free(res->guards);
    free(res->tracks);
    free(res->timeline_store);
    memset(res, 0, sizeof *res);
}

/* Grows *arr (element size sz) to hold need elements. */
static int grow(void **arr, int *cap, int need, size_t sz)
{
    if (need <= *cap)
        return 1;
    int nc = *cap ? *cap : 8;
    while (nc < need)
        nc *= 2;
    void *p = realloc(*arr, (size_t)nc * sz);
    if (!p)
        return 0;
    *arr = p;
    *cap = nc;
    return 1;
}

/* ---- create / destroy / config --------------------------------------------------- */

void vx_gate_opts_default(vx_gate_opts *o)
{
    memset(o, 0, sizeof *o);
    vx_track_opts_default(&o->track);
}

vx_err vx_gate_create(const vx_gate_config *cfg, const vx_gate_opts *opts, vx_gate **out)
{
    *out = NULL;
    vx_err e = vx_gate_config_validate(cfg);
    if (e)
        return e;
    vx_gate *g = calloc(1, sizeof *g);
    if (!g)
        return vx_fail(VX_ERR_NOMEM, "gate: out of memory");
    g->cfg = *cfg;
    if (opts)
        g->opts = *opts;
    else
        vx_gate_opts_default(&g->opts);
    g->opts.run_id[sizeof g->opts.run_id - 1] = 0;
    if ((e = vx_tracker_create(&g->opts.track, &g->tr))) {
        free(g);
        return e;
    }
    g->cfg_since = -INFINITY;
    pthread_mutex_init(&g->mu, NULL);
    *out = g;
    return VX_OK;
}

static void session_clear(session *s)
{
    free(s->ev);
    memset(s, 0, sizeof *s);
}

static void clear_records(vx_gate *g)
{
    for (int i = 0; i < g->n; i++)
        session_clear(&g->r[i].s);
    g->n = 0;
}

void vx_gate_destroy(vx_gate *g)
{
    if (!g)
        return;
    clear_records(g);
    free(g->r);
    free(g->dets);
    free(g->tracks);
    free(g->entrants);
    vx_tracker_destroy(g->tr);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

vx_err vx_gate_set_config(vx_gate *g, const vx_gate_config *cfg)
{
    vx_err e = vx_gate_config_validate(cfg);
    if (e)
        return e;
    pthread_mutex_lock(&g->mu);
    g->cfg = *cfg;
    g->cfg_changed = 1;
    pthread_mutex_unlock(&g->mu);
    return VX_OK;
}

void vx_gate_get_config(vx_gate *g, vx_gate_config *cfg)
{
    pthread_mutex_lock(&g->mu);
    *cfg = g->cfg;
    pthread_mutex_unlock(&g->mu);
}

static void reset_locked(vx_gate *g)
{
    clear_records(g);
    vx_tracker_reset(g->tr);
    g->have_t = 0;
    g->cfg_since = -INFINITY;
}

void vx_gate_reset(vx_gate *g)
{
    pthread_mutex_lock(&g->mu);
    reset_locked(g);
    pthread_mutex_unlock(&g->mu);
}

void vx_gate_reset_counts(vx_gate *g)
{
    pthread_mutex_lock(&g->mu);
    memset(&g->counts, 0, sizeof g->counts);
    pthread_mutex_unlock(&g->mu);
}

static uint64_t count_in_gate(const vx_gate *g)
{
    uint64_t n = 0;
    for (int i = 0; i < g->n; i++)
        n += g->r[i].ga.state != 0;
    return n;
}

void vx_gate_get_counts(vx_gate *g, vx_gate_counts *c)
{
    pthread_mutex_lock(&g->mu);
    *c = g->counts;
    c->in_gate = count_in_gate(g);
    pthread_mutex_unlock(&g->mu);
}

void vx_gate_set_pose_hook(vx_gate *g, vx_gate_pose_fn fn, void *user)
{
    pthread_mutex_lock(&g->mu);
    g->pose_fn = fn;
    g->pose_user = user;
    pthread_mutex_unlock(&g->mu);
}

/* ---- per-frame helpers -------------------------------------------------------------- */

typedef struct {
    vx_gate *g;
    vx_gate_result *res;
    double t, dt;
    int width, height;
    int oom;
} frame_ctx;

static rec *find_rec(vx_gate *g, uint32_t id)
{
    int lo = 0, hi = g->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (g->r[mid].id == id)
            return &g->r[mid];
        if (g->r[mid].id < id)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

static int hyst_step(hyst *h, int raw, double t, int k, double *flip_t)
{
    if (raw == h->state) {
        h->run = 0;
        return 0;
    }
    if (h->run == 0)
        h->run_t = t;
    h->run++;
    if (h->run >= k) {
        h->state = raw;
        h->run = 0;
        *flip_t = h->run_t;
        return 1;
    }
    return 0;
}

static void emit(frame_ctx *f, rec *r, vx_gate_event_type type, double t, uint32_t other, const char *zone,
                 float conf, vx_gate_fail_reason reason)
{
    vx_gate_result *res = f->res;
    if (!grow((void **)&res->events, &res->cap_events, res->nevents + 1, sizeof *res->events)) {
        f->oom = 1;
        return;
    }
    vx_gate_event *ev = &res->events[res->nevents++];
    memset(ev, 0, sizeof *ev);
    ev->seq = ++f->g->seq;
    ev->type = type;
    ev->t = t;
    ev->track_id = r->id;
    ev->other_id = other;
    snprintf(ev->zone, sizeof ev->zone, "%s", zone ? zone : "");
    ev->x = r->fx;
    ev->y = r->fy;
    ev->confidence = conf;
    ev->reason = reason;
    if (r->s.open) {
        snprintf(ev->session_id, sizeof ev->session_id, "%s", r->s.id);
        session *s = &r->s;
        if (!grow((void **)&s->ev, &s->capev, s->nev + 1, sizeof *s->ev)) {
            f->oom = 1;
            return;
        }
        s->ev[s->nev++] = *ev;
    }
}

/* The stream time up to which a filtered state is settled: the smoothed
 * point's time, or the start of a pending run of disagreeing frames (the
 * state may be about to flip back to then; nothing after it counts yet). */
static double evidence_t(const rec *r, const hyst *h)
{
    return h->run > 0 ? h->run_t : r->st;
}

static double anchor_dwell(const rec *r)
{
    double d = r->anchor_closed;
    if (r->anchor.state) {
        double e = evidence_t(r, &r->anchor);
        if (e > r->anchor_on_t)
            d += e - r->anchor_on_t;
    }
    return d;
}

/* Contact time of v's session up to stream time `upto` (and never past the
 * evidence). */
static double interaction_at(const rec *v, double upto)
{
    const session *s = &v->s;
    double x = s->interaction_closed;
    if (v->contact.state) {
        double e = evidence_t(v, &v->contact);
        if (upto < e)
            e = upto;
        if (e > s->contact_on_t)
            x += e - s->contact_on_t;
    }
    return x;
}

static double guard_dwell(const vx_gate *g, const rec *r, double t)
{
    if (g->cfg.anchor_mode == VX_GATE_ANCHOR_NONE)
        return t - r->t_first;
    double a = anchor_dwell(r);
    return r->zone_dwell > a ? r->zone_dwell : a;
}

static void add_credit(session *s, uint32_t id, double dt)
{
    if (!id || dt == 0)
        return;
    for (int i = 0; i < s->ncredits; i++)
        if (s->credits[i].id == id) {
            s->credits[i].t += dt;
            return;
        }
    if (s->ncredits < GUARD_CREDIT_MAX) {
        s->credits[s->ncredits].id = id;
        s->credits[s->ncredits].t = dt;
        s->ncredits++;
    }
}

/* The guard a completion is about: most contact time (the current contact
 * period included); else the assigned one. */
static uint32_t best_guard(const rec *v)
{
    const session *s = &v->s;
    double ongoing = v->contact.state ? interaction_at(v, INFINITY) - s->interaction_closed : 0;
    uint32_t id = 0;
    double best = 0;
    int seen = 0;
    for (int i = 0; i < s->ncredits; i++) {
        double c = s->credits[i].t + (s->credits[i].id == v->contact_guard ? ongoing : 0);
        seen |= s->credits[i].id == v->contact_guard;
        if (c > best) {
            best = c;
            id = s->credits[i].id;
        }
    }
    if (!seen && v->contact.state && v->contact_guard && ongoing > best)
        id = v->contact_guard;
    return id ? id : s->assigned_guard;
}

static double score_of(const vx_gate_config *c, const session *s, double interaction)
{
    double contact = c->interaction_min_overlap_s > 0 ? interaction / c->interaction_min_overlap_s : 0;
    if (contact > 1)
        contact = 1;
    if (contact < 0)
        contact = 0;
    double persist = s->frames > 0 ? (double)s->matched / (double)s->frames : 0;
    double sc = c->score_base + c->contact_bonus * contact + c->reid_persistence_bonus * persist;
    if (s->pose_known) {
        sc += c->pose_bonus * s->pose;
    } else {
        double all = c->score_base + c->contact_bonus + c->pose_bonus + c->reid_persistence_bonus;
        double without = c->score_base + c->contact_bonus + c->reid_persistence_bonus;
        if (without > 0)
            sc *= all / without;
    }
    return sc > 1 ? 1 : sc;
}

/* The criteria as of stream time t; also the guard's dwell and the score. */
static void criteria_of(const vx_gate *g, const rec *v, double t, vx_gate_criteria *cr, double *gdwell,
                        double *score)
{
    const vx_gate_config *c = &g->cfg;
    uint32_t gid = best_guard(v);
    const rec *gr = gid ? find_rec((vx_gate *)g, gid) : NULL;
    double inter = interaction_at(v, t);
    *gdwell = gr ? guard_dwell(g, gr, t) : 0;
    *score = score_of(c, &v->s, inter);
    cr->visitor_dwell = t - v->ga_enter_t >= c->person_min_dwell_s - 1e-9;
    cr->guard_dwell = gr && *gdwell >= c->guard_min_dwell_s - 1e-9;
    cr->interaction = inter >= c->interaction_min_overlap_s - 1e-9;
    cr->score = *score >= c->threshold - 1e-9;
}

/* Ends rec's open session at time t with a verdict, writing the completion. */
static void close_session(frame_ctx *f, rec *v, double t, int completed, vx_gate_fail_reason reason)
{
    vx_gate *g = f->g;
    session *s = &v->s;
    if (!s->open)
        return;
    vx_gate_criteria cr;
    double gdwell, score;
    criteria_of(g, v, t, &cr, &gdwell, &score);
    uint32_t gid = best_guard(v);
    double inter = interaction_at(v, t);
    s->score = score;
    emit(f, v, completed ? VX_GATE_EV_CHECK_COMPLETED : VX_GATE_EV_CHECK_FAILED, t, gid,
         g->cfg.gate_area.zone_id, (float)score, completed ? VX_GATE_FAIL_NONE : reason);
    vx_gate_result *res = f->res;
    if (!grow((void **)&res->completions, &res->cap_completions, res->ncompletions + 1,
              sizeof *res->completions) ||
        !grow((void **)&res->timeline_store, &res->cap_timeline, res->ntimeline_store + s->nev,
              sizeof *res->timeline_store)) {
        f->oom = 1;
    } else {
        vx_gate_completion *c = &res->completions[res->ncompletions++];
        memset(c, 0, sizeof *c);
        snprintf(c->session_id, sizeof c->session_id, "%s", s->id);
        snprintf(c->gate_id, sizeof c->gate_id, "%s", g->cfg.gate_id);
        c->visitor_id = v->id;
        c->guard_id = gid;
        c->completed = completed;
        c->reason = completed ? VX_GATE_FAIL_NONE : reason;
        c->window_start = s->start;
        c->window_end = t;
        c->visitor_dwell_s = t - v->ga_enter_t;
        c->guard_dwell_s = gdwell;
        c->interaction_s = inter;
        c->min_center_dist = s->min_dist;
        c->max_iou = s->max_iou;
        c->score = s->score;
        c->threshold = g->cfg.threshold;
        c->criteria = cr;
        /* timelines are stored back to back in completion order; the
         * pointers are set when the frame is done (the store may still move) */
        c->timeline = NULL;
        c->ntimeline = s->nev;
        if (s->nev > 0)
            memcpy(res->timeline_store + res->ntimeline_store, s->ev, sizeof *s->ev * (size_t)s->nev);
        res->ntimeline_store += s->nev;
    }
    if (completed)
        g->counts.checks_completed++;
    else {
        g->counts.checks_failed++;
        g->counts.failed_by_reason[reason]++;
    }
    session_clear(s);
}

static vx_gate_fail_reason reason_of(const session *s)
{
    if (!s->ever_guard)
        return VX_GATE_FAIL_NO_GUARD;
    if (!s->ever_contact)
        return VX_GATE_FAIL_NO_CONTACT;
    return VX_GATE_FAIL_TOO_SHORT;
}

static void open_session(frame_ctx *f, rec *v, double t0)
{
    vx_gate *g = f->g;
    session *s = &v->s;
    session_clear(s);
    s->open = 1;
    s->start = t0;
    s->last_eval = t0;
    memset(&v->contact, 0, sizeof v->contact);
    s->min_dist = -1;
    long long ms = llround(t0 * 1000.0);
    if (g->opts.run_id[0])
        snprintf(s->id, sizeof s->id, "%s-%s-v%u-%lld", g->opts.run_id, g->cfg.gate_id, v->id, ms);
    else
        snprintf(s->id, sizeof s->id, "%s-v%u-%lld", g->cfg.gate_id, v->id, ms);
}

/* A track becomes a guard (dropping an unconfirmed visitor session). */
static void promote_guard(frame_ctx *f, rec *r, double t, const char *zone)
{
    session_clear(&r->s);
    r->role = VX_GATE_ROLE_GUARD;
    r->state = VX_GATE_IDLE;
    emit(f, r, VX_GATE_EV_GUARD_ANCHORED, t, 0, zone, r->conf, VX_GATE_FAIL_NONE);
}

static void leave_gate(frame_ctx *f, rec *r, double t, int timed_out)
{
    vx_gate *g = f->g;
    if (r->contact.state) { /* contact ends at the gate's edge at the latest */
        if (r->s.open) {
            double x = interaction_at(r, t) - r->s.interaction_closed;
            r->s.interaction_closed += x;
            add_credit(&r->s, r->contact_guard, x);
        }
        r->contact.state = 0;
        emit(f, r, VX_GATE_EV_CONTACT_ENDED, t, r->contact_guard, g->cfg.gate_area.zone_id, r->conf,
             VX_GATE_FAIL_NONE);
    }
    r->ga.state = 0;
    r->ga.run = 0;
    g->counts.gate_exits++;
    if (!timed_out)
        g->counts.passed_through++;
    emit(f, r, VX_GATE_EV_PERSON_LEFT, t, 0, g->cfg.gate_area.zone_id, r->conf, VX_GATE_FAIL_NONE);
    r->state = VX_GATE_IDLE;
    if (r->s.open) {
        close_session(f, r, t, 0, timed_out ? VX_GATE_FAIL_TIMEOUT : reason_of(&r->s));
        r->state = VX_GATE_CHECK_FAILED; /* for this frame's snapshot; IDLE from the next */
    }
    memset(&r->contact, 0, sizeof r->contact);
    if (r->role == VX_GATE_ROLE_VISITOR)
        r->fixed_visitor = 1;
}

/* Zone filters, dwell accounting and the events of zone transitions. */
static void zones_step(frame_ctx *f, rec *r)
{
    vx_gate *g = f->g;
    const vx_gate_config *c = &g->cfg;
    int k = c->multi_frame_consensus;
    double t = f->t, t0;
    int has_anchor = c->has_guard_anchor && c->anchor_mode != VX_GATE_ANCHOR_NONE;

    /* time in either zone (a guard's dwell), per frame interval */
    if (r->anchor.state || r->ga.state)
        r->zone_dwell += f->dt;
    if (!r->visible)
        return;

    int raw_anchor = has_anchor && vx_gate_zone_contains(&c->guard_anchor, f->width, f->height, r->fx, r->fy);
    int raw_ga = vx_gate_zone_contains(&c->gate_area, f->width, f->height, r->fx, r->fy);

    /* nothing is dated before the zones it was judged by existed */
    double ts = r->st < g->cfg_since ? g->cfg_since : r->st;
    if (hyst_step(&r->anchor, raw_anchor, ts, k, &t0)) {
        if (r->anchor.state) {
            r->anchor_on_t = t0;
            g->counts.anchor_entries++;
            if (r->role == VX_GATE_ROLE_GUARD)
                emit(f, r, VX_GATE_EV_GUARD_ANCHORED, t0, 0, c->guard_anchor.zone_id, r->conf,
                     VX_GATE_FAIL_NONE);
        } else {
            if (t0 > r->anchor_on_t)
                r->anchor_closed += t0 - r->anchor_on_t;
            g->counts.anchor_exits++;
            if (r->role == VX_GATE_ROLE_GUARD)
                emit(f, r, VX_GATE_EV_GUARD_LEFT_ANCHOR, t0, 0, c->guard_anchor.zone_id, r->conf,
                     VX_GATE_FAIL_NONE);
        }
    }
    if (hyst_step(&r->ga, raw_ga, ts, k, &t0)) {
        if (r->ga.state) {
            r->ga_enter_t = t0;
            g->counts.gate_entries++;
            if (r->role != VX_GATE_ROLE_GUARD) {
                r->role = VX_GATE_ROLE_VISITOR;
                open_session(f, r, t0);
                r->s.fixed_visitor = r->fixed_visitor;
                r->state = VX_GATE_PRESENT_IN_GA;
            }
            emit(f, r, VX_GATE_EV_PERSON_ENTERED, t0, 0, c->gate_area.zone_id, r->conf, VX_GATE_FAIL_NONE);
            if (grow((void **)&g->entrants, &g->cap_entrants, g->nentrants + 1, sizeof *g->entrants))
                g->entrants[g->nentrants++] = r->id;
        } else {
            r->ga.state = 1; /* leave_gate clears it */
            leave_gate(f, r, t0, 0);
        }
    }

    /* anchor guard: accumulated anchor dwell reaches guard_min_dwell_s */
    double ad = anchor_dwell(r);
    if (has_anchor && r->role != VX_GATE_ROLE_GUARD && !r->fixed_visitor && !r->s.fixed_visitor &&
        ad >= c->guard_min_dwell_s - 1e-9 && ad > 0) {
        /* the moment the dwell reached the minimum */
        double tc = r->anchor.state ? evidence_t(r, &r->anchor) - (ad - c->guard_min_dwell_s) : t;
        promote_guard(f, r, tc, c->guard_anchor.zone_id);
    }
}

/* Mode `either`: someone waiting in the gate area, without a guard, for
 * guard_min_dwell_s when a new person walks in, is the guard. */
static void either_promotions(frame_ctx *f)
{
    vx_gate *g = f->g;
    if (g->cfg.anchor_mode != VX_GATE_ANCHOR_EITHER)
        return;
    for (int e = 0; e < g->nentrants; e++) {
        rec *p = find_rec(g, g->entrants[e]);
        if (!p || !p->ga.state || p->role == VX_GATE_ROLE_GUARD) /* a guard walking in checks nobody's role */
            continue;
        double tin = p->ga_enter_t;
        for (int i = 0; i < g->n; i++) {
            rec *r = &g->r[i];
            if (r == p || !r->ga.state || r->role != VX_GATE_ROLE_VISITOR || r->fixed_visitor ||
                r->s.fixed_visitor || !r->s.open)
                continue;
            if (tin - r->ga_enter_t >= g->cfg.guard_min_dwell_s - 1e-9)
                promote_guard(f, r, tin, g->cfg.gate_area.zone_id);
        }
    }
}

static int guard_present(const vx_gate *g, const rec *gr)
{
    if (gr->role != VX_GATE_ROLE_GUARD || !gr->alive) /* a dropped track is nobody's guard */
        return 0;
    return gr->anchor.state || gr->ga.state;
}

/* Centre distance over mean height, and IoU, of two records' smoothed
 * boxes (the same boxes, and so the same moment, as their zone tests). */
static void proximity(const rec *a, const rec *b, double *dist, double *iou)
{
    double ha = a->sbox[3] - a->sbox[1], hb = b->sbox[3] - b->sbox[1];
    double mh = 0.5 * (ha + hb);
    double dx = a->cx - b->cx, dy = a->cy - b->cy;
    *dist = mh > 0 ? sqrt(dx * dx + dy * dy) / mh : INFINITY;
    *iou = vx_track_iou(a->sbox, b->sbox);
}

static void visitor_step(frame_ctx *f, rec *v)
{
    vx_gate *g = f->g;
    const vx_gate_config *c = &g->cfg;
    session *s = &v->s;
    double t = f->t, t0;
    /* after a completed check the session is closed: contact is still
     * followed (so every contact_started has its contact_ended), nothing
     * else */
    const int open = s->open;

    if (open) {
        s->frames++;
        if (v->visible)
            s->matched++;
    }

    /* candidate guards */
    uint32_t nearest = 0, contact_id = 0;
    double nearest_d = INFINITY, contact_d = INFINITY;
    int any = 0;
    if (c->anchor_mode == VX_GATE_ANCHOR_NONE) {
        rec *best = NULL;
        for (int i = 0; i < g->n; i++) {
            rec *r = &g->r[i];
            if (r == v || !r->alive || r->role == VX_GATE_ROLE_VISITOR)
                continue;
            double d, iou;
            proximity(v, r, &d, &iou);
            if (d < nearest_d) {
                nearest_d = d;
                best = r;
            }
        }
        if (best) {
            any = 1;
            nearest = best->id;
            double iou;
            proximity(v, best, &nearest_d, &iou);
            if (s->min_dist < 0 || nearest_d < s->min_dist)
                s->min_dist = nearest_d;
            if (iou > s->max_iou)
                s->max_iou = iou;
            if (nearest_d <= c->center_dist_scale || iou >= c->iou_min) {
                contact_id = best->id;
                contact_d = nearest_d;
                /* the one who came into contact is the guard from now on
                 * (never a visitor later); the nearest alone is not */
                if (open)
                    best->role = VX_GATE_ROLE_GUARD;
            }
        }
    } else {
        for (int i = 0; i < g->n; i++) {
            rec *r = &g->r[i];
            if (r == v || !guard_present(g, r))
                continue;
            any = 1;
            double d, iou;
            proximity(v, r, &d, &iou);
            if (s->min_dist < 0 || d < s->min_dist)
                s->min_dist = d;
            if (iou > s->max_iou)
                s->max_iou = iou;
            if (d < nearest_d) {
                nearest_d = d;
                nearest = r->id;
            }
            if ((d <= c->center_dist_scale || iou >= c->iou_min) && d < contact_d) {
                contact_d = d;
                contact_id = r->id;
            }
        }
    }
    if (any) {
        s->ever_guard = 1;
        s->fixed_visitor = 1;
        v->fixed_visitor = 1;
    }
    s->assigned_guard = contact_id ? contact_id : nearest;

    /* contact filter; contact time is kept as periods between the
     * (backdated) transitions */
    double ts = v->st < g->cfg_since ? g->cfg_since : v->st;
    if (v->visible && hyst_step(&v->contact, contact_id != 0, ts, c->multi_frame_consensus, &t0)) {
        if (v->contact.state) {
            v->contact_guard = contact_id;
            if (open) {
                s->contact_on_t = t0;
                s->ever_contact = 1;
            }
            emit(f, v, VX_GATE_EV_CONTACT_STARTED, t0, contact_id, c->gate_area.zone_id, v->conf,
                 VX_GATE_FAIL_NONE);
        } else {
            if (open && t0 > s->contact_on_t) {
                s->interaction_closed += t0 - s->contact_on_t;
                add_credit(s, v->contact_guard, t0 - s->contact_on_t);
            }
            emit(f, v, VX_GATE_EV_CONTACT_ENDED, t0, v->contact_guard, c->gate_area.zone_id, v->conf,
                 VX_GATE_FAIL_NONE);
        }
    }
    if (v->contact.state && contact_id)
        v->contact_guard = contact_id;
    if (!open)
        return;

    /* pose hook */
    if (g->pose_fn && v->contact.state && v->contact_guard) {
        double term = 0;
        if (g->pose_fn(g->pose_user, v->id, v->contact_guard, t, &term) && isfinite(term)) {
            term = term < 0 ? 0 : term > 1 ? 1 : term;
            if (!s->pose_known || term > s->pose)
                s->pose = term;
            s->pose_known = 1;
        }
    }
    v->state = v->contact.state ? VX_GATE_INTERACTION_WINDOW
               : any            ? VX_GATE_GUARD_PRESENT
                                : VX_GATE_PRESENT_IN_GA;

    /* Evaluate as of the time the evidence is settled for (presence and
     * contact), and date a completion at the moment its last criterion was
     * met: the later of dwell reached and contact time reached, never
     * before the previous evaluation. */
    double now = evidence_t(v, &v->ga);
    if (v->contact.state && evidence_t(v, &v->contact) < now)
        now = evidence_t(v, &v->contact);
    vx_gate_criteria cr;
    double gd, score;
    criteria_of(g, v, now, &cr, &gd, &score);
    s->score = score;
    s->interaction = interaction_at(v, now);
    if (cr.visitor_dwell && cr.guard_dwell && cr.interaction && cr.score) {
        double tc = v->ga_enter_t + c->person_min_dwell_s;
        if (v->contact.state && s->interaction_closed < c->interaction_min_overlap_s) {
            double ti = s->contact_on_t + (c->interaction_min_overlap_s - s->interaction_closed);
            if (ti > tc)
                tc = ti;
        }
        if (tc < s->last_eval)
            tc = s->last_eval;
        if (tc > now)
            tc = now;
        close_session(f, v, tc, 1, VX_GATE_FAIL_NONE);
        v->state = VX_GATE_CHECK_COMPLETED;
    } else if (now > s->last_eval) {
        s->last_eval = now;
    }
}

/* Moving average over the last jitter_smooth_window matched boxes.  The
 * average of positions sampled at t1..tW is where a steadily moving person
 * was at the average of t1..tW, (W-1)/2 frames ago, not now: transitions
 * found on the smoothed point are dated at that time (st), which removes
 * the filter's lag from event times and dwell sums. */
static void smooth_push(const vx_gate_config *c, rec *r, double t)
{
    memcpy(r->sm_b[r->smpos], r->box, sizeof r->box);
    r->sm_t[r->smpos] = t;
    r->smpos = (r->smpos + 1) % SMOOTH_MAX;
    if (r->nsm < SMOOTH_MAX)
        r->nsm++;
    int w = c->jitter_smooth_window < r->nsm ? c->jitter_smooth_window : r->nsm;
    double b[4] = {0, 0, 0, 0}, st = 0;
    for (int i = 0; i < w; i++) {
        int k = (r->smpos - 1 - i + SMOOTH_MAX) % SMOOTH_MAX;
        for (int e = 0; e < 4; e++)
            b[e] += r->sm_b[k][e];
        st += r->sm_t[k];
    }
    for (int e = 0; e < 4; e++)
        r->sbox[e] = (float)(b[e] / w);
    r->st = st / w;
    r->cx = 0.5f * (r->sbox[0] + r->sbox[2]);
    r->cy = 0.5f * (r->sbox[1] + r->sbox[3]);
    r->fx = r->cx;
    r->fy = r->sbox[3];
}

/* A track reaches the engine at its confirmation, confirm_hits frames after
 * its first detection.  Its earlier boxes go through the smoothing and the
 * zone filters now (up to multi_frame_consensus - 1 of them, so no filter
 * can flip and no event is due yet): a person standing in a zone from
 * their first frame is dated from that frame. */
static void seed_from_history(vx_gate *g, rec *r, int width, int height)
{
    const vx_gate_config *c = &g->cfg;
    vx_track_sample hs[VX_TRACK_HIST];
    int nh = vx_tracker_history(g->tr, r->id, hs, VX_TRACK_HIST);
    int pre = nh - 1; /* the last one is this frame's */
    if (pre > c->multi_frame_consensus - 1)
        pre = c->multi_frame_consensus - 1;
    int has_anchor = c->has_guard_anchor && c->anchor_mode != VX_GATE_ANCHOR_NONE;
    for (int i = nh - 1 - pre; i < nh - 1; i++) {
        if (i < 0)
            continue;
        memcpy(r->box, hs[i].box, sizeof r->box);
        smooth_push(c, r, hs[i].t);
        double ts = r->st < g->cfg_since ? g->cfg_since : r->st, t0;
        int in_anchor = has_anchor && vx_gate_zone_contains(&c->guard_anchor, width, height, r->fx, r->fy);
        int in_ga = vx_gate_zone_contains(&c->gate_area, width, height, r->fx, r->fy);
        hyst_step(&r->anchor, in_anchor, ts, c->multi_frame_consensus, &t0);
        hyst_step(&r->ga, in_ga, ts, c->multi_frame_consensus, &t0);
    }
}

static int is_person(const vx_gate_config *c, int cls)
{
    for (int i = 0; i < c->n_person_classes; i++)
        if (c->person_classes[i] == cls)
            return 1;
    return 0;
}

static void snapshot(frame_ctx *f)
{
    vx_gate *g = f->g;
    vx_gate_result *res = f->res;
    int np = 0, ng = 0;
    for (int i = 0; i < g->n; i++) {
        if (g->r[i].role == VX_GATE_ROLE_GUARD)
            ng++;
        else
            np++;
    }
    if (!grow((void **)&res->persons, &res->cap_persons, np, sizeof *res->persons) ||
        !grow((void **)&res->guards, &res->cap_guards, ng, sizeof *res->guards)) {
        f->oom = 1;
        return;
    }
    for (int i = 0; i < g->n; i++) {
        rec *r = &g->r[i];
        if (r->role == VX_GATE_ROLE_GUARD) {
            vx_gate_guard *o = &res->guards[res->nguards++];
            o->id = r->id;
            o->anchored = r->anchor.state;
            o->dwell_s = guard_dwell(g, r, f->t);
            o->x = r->fx;
            o->y = r->fy;
        } else {
            vx_gate_person *o = &res->persons[res->npersons++];
            memset(o, 0, sizeof *o);
            o->id = r->id;
            o->role = r->role;
            o->state = r->state;
            o->in_gate = r->ga.state;
            o->dwell_s = r->ga.state ? f->t - r->ga_enter_t : 0;
            o->interaction_s = r->s.open ? interaction_at(r, INFINITY) : 0;
            o->guard_id = r->s.open ? r->s.assigned_guard : 0;
            o->contact = r->contact.state;
            o->score = r->s.open ? r->s.score : 0;
            if (r->s.open)
                snprintf(o->session_id, sizeof o->session_id, "%s", r->s.id);
            o->x = r->fx;
            o->y = r->fy;
        }
    }
}

vx_err vx_gate_process(vx_gate *g, const vx_gate_frame *fr, vx_gate_result *res)
{
    if (!g || !fr || !res)
        return vx_fail(VX_ERR_INVALID, "gate: NULL argument");
    if (!isfinite(fr->t))
        return vx_fail(VX_ERR_INVALID, "gate: frame time is not a number");
    if (fr->width <= 0 || fr->height <= 0)
        return vx_fail(VX_ERR_INVALID, "gate: frame size %dx%d", fr->width, fr->height);
    if (fr->ndet < 0 || (fr->ndet > 0 && !fr->dets))
        return vx_fail(VX_ERR_INVALID, "gate: bad detection array");

    pthread_mutex_lock(&g->mu);
    vx_err e = VX_OK;
    res->t = fr->t;
    res->width = fr->width;
    res->height = fr->height;
    res->discontinuity = 0;
    res->nevents = res->ncompletions = res->npersons = res->nguards = res->ntracks = 0;
    res->ntimeline_store = 0;
    if (g->have_t && fr->t < g->prev_t) {
        VX_WARN("gate %s: stream time went back from %.3f s to %.3f s; engine reset", g->cfg.gate_id,
                g->prev_t, fr->t);
        reset_locked(g);
        res->discontinuity = 1;
    }
    if (g->cfg_changed) {
        g->cfg_since = fr->t;
        g->cfg_changed = 0;
    }
    frame_ctx f = {g, res, fr->t, g->have_t ? fr->t - g->prev_t : 0, fr->width, fr->height, 0};
    const vx_gate_config *c = &g->cfg;

    /* person boxes tall enough to be people, not noise */
    if (!grow((void **)&g->dets, &g->cap_dets, fr->ndet + 1, sizeof *g->dets)) {
        e = vx_fail(VX_ERR_NOMEM, "gate: out of memory");
        goto out;
    }
    int nd = 0;
    for (int i = 0; i < fr->ndet; i++) {
        const vx_track_det *d = &fr->dets[i];
        if (!is_person(c, d->cls) || !(d->y2 - d->y1 >= c->min_box_height_px))
            continue;
        g->dets[nd++] = *d;
    }
    int need = nd + vx_tracker_size(g->tr) + 1;
    if (!grow((void **)&g->tracks, &g->cap_tracks, need, sizeof *g->tracks)) {
        e = vx_fail(VX_ERR_NOMEM, "gate: out of memory");
        goto out;
    }
    int nt = 0;
    if ((e = vx_tracker_update(g->tr, g->dets, nd, fr->t, g->tracks, g->cap_tracks, &nt)))
        goto out;

    /* records follow the tracks */
    for (int i = 0; i < g->n; i++)
        if (g->r[i].state == VX_GATE_CHECK_FAILED)
            g->r[i].state = VX_GATE_IDLE;
    for (int i = 0; i < g->n; i++)
        g->r[i].alive = g->r[i].visible = 0;
    for (int i = 0; i < nt; i++) {
        const vx_track *tk = &g->tracks[i];
        rec *r = find_rec(g, tk->id);
        if (!r) {
            if (!grow((void **)&g->r, &g->cap, g->n + 1, sizeof *g->r)) {
                e = vx_fail(VX_ERR_NOMEM, "gate: out of memory");
                goto out;
            }
            r = &g->r[g->n++]; /* ids only grow: the array stays sorted */
            memset(r, 0, sizeof *r);
            r->id = tk->id;
            r->t_first = tk->t_first;
            if (tk->missed == 0)
                seed_from_history(g, r, fr->width, fr->height);
        }
        r->alive = 1;
        r->visible = tk->missed == 0;
        if (r->visible) {
            r->box[0] = tk->x1, r->box[1] = tk->y1, r->box[2] = tk->x2, r->box[3] = tk->y2;
            r->conf = tk->conf;
            r->t_last_seen = fr->t;
            smooth_push(c, r, fr->t);
        }
    }

    /* zones, roles */
    g->nentrants = 0;
    for (int i = 0; i < g->n; i++)
        zones_step(&f, &g->r[i]);
    either_promotions(&f);

    /* visitors */
    for (int i = 0; i < g->n; i++) {
        rec *r = &g->r[i];
        if (r->role == VX_GATE_ROLE_VISITOR && r->ga.state &&
            (r->alive || fr->t - r->t_last_seen < c->session_timeout_s))
            visitor_step(&f, r);
    }

    /* the lost and the dropped */
    int w = 0;
    for (int i = 0; i < g->n; i++) {
        rec *r = &g->r[i];
        int keep = 1;
        if (!r->visible && r->ga.state && fr->t - r->t_last_seen >= c->session_timeout_s - 1e-9) {
            leave_gate(&f, r, r->t_last_seen + c->session_timeout_s, 1);
        }
        if (!r->alive && !r->ga.state) {
            if (r->anchor.state) {
                g->counts.anchor_exits++;
                if (r->role == VX_GATE_ROLE_GUARD)
                    emit(&f, r, VX_GATE_EV_GUARD_LEFT_ANCHOR, fr->t, 0, c->guard_anchor.zone_id, r->conf,
                         VX_GATE_FAIL_NONE);
            }
            session_clear(&r->s);
            keep = 0;
        }
        if (keep) {
            if (w != i)
                g->r[w] = *r;
            w++;
        }
    }
    g->n = w;

    snapshot(&f);
    if (grow((void **)&res->tracks, &res->cap_tracks, nt, sizeof *res->tracks)) {
        if (nt > 0)
            memcpy(res->tracks, g->tracks, sizeof *g->tracks * (size_t)nt);
        res->ntracks = nt;
    } else {
        f.oom = 1;
    }
    for (int i = 0, off = 0; i < res->ncompletions; i++) {
        res->completions[i].timeline = res->timeline_store + off;
        off += res->completions[i].ntimeline;
    }
    g->counts.frames++;
    res->counts = g->counts;
    res->counts.in_gate = count_in_gate(g);
    if (f.oom)
        e = vx_fail(VX_ERR_NOMEM, "gate: out of memory; this frame's output is incomplete");
out:
    g->have_t = 1;
    g->prev_t = fr->t;
    pthread_mutex_unlock(&g->mu);
    return e;
}
