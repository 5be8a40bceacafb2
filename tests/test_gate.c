/*
 * gate/: the engine on scripted scenes (people as boxes moving along
 * waypoints at 10 frames/s, through the real tracker), and the rules and
 * zone loaders on good and broken files.
 *
 * Scene geometry (pixels, 1000x600 frame): gate area x 300..700, y 200..500;
 * guard anchor x 720..900, y 200..500.  People are 60x150 boxes placed by
 * their foot point.  Expected times are worked out from the scripts; the
 * engine's estimate lags a moving foot point by the smoothing window
 * ((5-1)/2 frames = 0.2 s) and starts 0.2 s late for tracks confirmed on
 * their third frame, hence the tolerances.
 */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "gate/vx_gate.h"

#define W 1000
#define H 600
#define FPS 10
/* Event times against the script: one frame (0.1 s) of quantisation */
#define TOL 0.12

/* ---- scenes ------------------------------------------------------------------ */

typedef struct {
    double t, x, y; /* foot point at time t */
} wp;

typedef struct {
    int n;
    wp w[16];
    float h; /* box height (default 150) */
} actor;

/* Foot point at t by linear interpolation; 0 when the actor is not in view. */
static int actor_at(const actor *a, double t, double *x, double *y)
{
    if (a->n == 0 || t < a->w[0].t - 1e-9 || t > a->w[a->n - 1].t + 1e-9)
        return 0;
    for (int i = 0; i + 1 < a->n; i++) {
        if (t <= a->w[i + 1].t + 1e-9) {
            double span = a->w[i + 1].t - a->w[i].t;
            double u = span > 0 ? (t - a->w[i].t) / span : 1;
            if (u < 0)
                u = 0;
            if (u > 1)
                u = 1;
            *x = a->w[i].x + u * (a->w[i + 1].x - a->w[i].x);
            *y = a->w[i].y + u * (a->w[i + 1].y - a->w[i].y);
            return 1;
        }
    }
    *x = a->w[a->n - 1].x;
    *y = a->w[a->n - 1].y;
    return 1;
}

#define MAXEV 256

typedef struct {
    vx_gate_event ev[MAXEV];
    int nev;
    struct {
        vx_gate_completion c; /* timeline pointer cleared */
        vx_gate_event_type first, last;
    } comp[16];
    int ncomp;
    vx_gate_counts counts;
    vx_gate_person last_persons[8];
    int nlast_persons;
    vx_gate_guard last_guards[8];
    int nlast_guards;
    uint32_t watch;           /* a track whose states to record (0: none) */
    vx_gate_state states[16]; /* its distinct states in order, from the snapshots */
    int nstates;
    char *json; /* every frame's result JSON, one per line */
    size_t json_len;
} run_out;

static void out_free(run_out *o)
{
    free(o->json);
}

static void run_scene(vx_gate *g, const actor *actors, int nact, double seconds, run_out *o)
{
    uint32_t watch = o->watch;
    memset(o, 0, sizeof *o);
    o->watch = watch;
    vx_gate_result res;
    vx_gate_result_init(&res);
    vx_track_det dets[16];
    for (int k = 0; k <= (int)llround(seconds * FPS); k++) {
        double t = k / (double)FPS;
        int nd = 0;
        for (int a = 0; a < nact; a++) {
            double x, y;
            if (!actor_at(&actors[a], t, &x, &y))
                continue;
            float h = actors[a].h > 0 ? actors[a].h : 150.f;
            float w = h * 0.4f;
            dets[nd++] = (vx_track_det){(float)x - w / 2, (float)y - h, (float)x + w / 2, (float)y, 0.85f, 0};
        }
        vx_gate_frame fr = {dets, nd, W, H, t};
        if (vx_gate_process(g, &fr, &res) != VX_OK)
            fail_msg("t=%.1f: %s", t, vx_last_error());
        for (int i = 0; i < res.nevents && o->nev < MAXEV; i++)
            o->ev[o->nev++] = res.events[i];
        for (int i = 0; i < res.ncompletions && o->ncomp < 16; i++) {
            const vx_gate_completion *c = &res.completions[i];
            assert_true(c->ntimeline >= 2);
            o->comp[o->ncomp].c = *c;
            o->comp[o->ncomp].c.timeline = NULL;
            o->comp[o->ncomp].first = c->timeline[0].type;
            o->comp[o->ncomp].last = c->timeline[c->ntimeline - 1].type;
            /* every timeline event belongs to the session */
            for (int e = 0; e < c->ntimeline; e++)
                assert_string_equal(c->timeline[e].session_id, c->session_id);
            o->ncomp++;
        }
        json_t *j = vx_gate_result_to_json(&res);
        assert_non_null(j);
        char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(j);
        size_t n = strlen(s);
        o->json = realloc(o->json, o->json_len + n + 2);
        memcpy(o->json + o->json_len, s, n);
        o->json_len += n;
        o->json[o->json_len++] = '\n';
        o->json[o->json_len] = 0;
        free(s);
        o->counts = res.counts;
        for (int i = 0; i < res.npersons; i++)
            if (o->watch && res.persons[i].id == o->watch && o->nstates < 16 &&
                (o->nstates == 0 || o->states[o->nstates - 1] != res.persons[i].state))
                o->states[o->nstates++] = res.persons[i].state;
        o->nlast_persons = res.npersons < 8 ? res.npersons : 8;
        if (o->nlast_persons)
            memcpy(o->last_persons, res.persons, sizeof *res.persons * (size_t)o->nlast_persons);
        o->nlast_guards = res.nguards < 8 ? res.nguards : 8;
        if (o->nlast_guards)
            memcpy(o->last_guards, res.guards, sizeof *res.guards * (size_t)o->nlast_guards);
    }
    vx_gate_result_free(&res);
}

static void rect_zone(vx_gate_zone *z, const char *id, vx_gate_zone_type type, double x1, double y1,
                      double x2, double y2)
{
    memset(z, 0, sizeof *z);
    snprintf(z->zone_id, sizeof z->zone_id, "%s", id);
    z->type = type;
    z->normalized = 0;
    z->npoints = 4;
    double p[4][2] = {{x1, y1}, {x2, y1}, {x2, y2}, {x1, y2}};
    memcpy(z->pts, p, sizeof p);
}

static void scene_config(vx_gate_config *c, vx_gate_anchor_mode mode)
{
    vx_gate_config_default(c);
    snprintf(c->gate_id, sizeof c->gate_id, "g1");
    rect_zone(&c->gate_area, "ga", VX_GATE_ZONE_GATE_AREA, 300, 200, 700, 500);
    rect_zone(&c->guard_anchor, "anchor", VX_GATE_ZONE_GUARD_ANCHOR, 720, 200, 900, 500);
    c->has_guard_anchor = mode != VX_GATE_ANCHOR_NONE;
    c->anchor_mode = mode;
}

static vx_gate *make_gate(const vx_gate_config *c)
{
    vx_gate *g;
    vx_gate_opts o;
    vx_gate_opts_default(&o);
    snprintf(o.run_id, sizeof o.run_id, "run1");
    if (vx_gate_create(c, &o, &g) != VX_OK)
        fail_msg("%s", vx_last_error());
    return g;
}

/* The n-th (0-based) event of a type (and track, 0 = any); NULL if none. */
static const vx_gate_event *find_ev(const run_out *o, vx_gate_event_type type, uint32_t track, int nth)
{
    for (int i = 0; i < o->nev; i++)
        if (o->ev[i].type == type && (!track || o->ev[i].track_id == track) && nth-- == 0)
            return &o->ev[i];
    return NULL;
}

static int count_ev(const run_out *o, vx_gate_event_type type, uint32_t track)
{
    int n = 0;
    for (int i = 0; i < o->nev; i++)
        n += o->ev[i].type == type && (!track || o->ev[i].track_id == track);
    return n;
}

static const vx_gate_event *expect_ev(const run_out *o, vx_gate_event_type type, uint32_t track, double t,
                                      double tol)
{
    const vx_gate_event *e = find_ev(o, type, track, 0);
    if (!e)
        fail_msg("no %s event for track %u", vx_gate_event_type_name(type), track);
    if (fabs(e->t - t) > tol)
        fail_msg("%s of track %u at %.3f s, expected %.3f +- %.2f", vx_gate_event_type_name(type), track,
                 e->t, t, tol);
    return e;
}

static void dump_events(const run_out *o)
{
    for (int i = 0; i < o->nev; i++)
        print_message("  #%llu %6.2f %-26s track %u other %u zone %s session %s %s\n",
                      (unsigned long long)o->ev[i].seq, o->ev[i].t, vx_gate_event_type_name(o->ev[i].type),
                      o->ev[i].track_id, o->ev[i].other_id, o->ev[i].zone, o->ev[i].session_id,
                      vx_gate_fail_reason_name(o->ev[i].reason));
}

/* A guard at the post from t=0 walks over to a visitor waiting in the gate
 * area, stays in contact ~2.6 s, walks back; the visitor leaves at 12 s. */
static void scene_checked(actor *a)
{
    /* walking pace: about 125 px/s (0.8 box heights per second) */
    actor guard = {
        .n = 6,
        .w = {
            {0, 800, 400}, {5, 800, 400}, {7.5, 490, 400}, {9.5, 490, 400}, {12, 800, 400}, {18, 800, 400}}};
    actor visitor = {.n = 4, .w = {{0.5, 50, 400}, {2.5, 450, 400}, {13, 450, 400}, {16, 50, 400}}};
    a[0] = guard;
    a[1] = visitor;
}

/* ---- engine tests ----------------------------------------------------------------- */

static void test_check_completed(void **state)
{
    (void)state;
    vx_gate_config c;
    scene_config(&c, VX_GATE_ANCHOR_EITHER);
    vx_gate *g = make_gate(&c);
    actor a[2];
    scene_checked(a);
    run_out o = {.watch = 2};
    run_scene(g, a, 2, 18, &o);
    dump_events(&o);
    const uint32_t G = 1, V = 2;
    /* the visitor's states, frame by frame (on the 20 px between the post
     * and the gate area the guard is in neither zone, so not present) */
    const vx_gate_state want[] = {
        VX_GATE_IDLE,          VX_GATE_PRESENT_IN_GA,      VX_GATE_GUARD_PRESENT,   VX_GATE_PRESENT_IN_GA,
        VX_GATE_GUARD_PRESENT, VX_GATE_INTERACTION_WINDOW, VX_GATE_CHECK_COMPLETED, VX_GATE_IDLE};
    assert_int_equal(o.nstates, 8);
    for (int i = 0; i < 8; i++)
        if (o.states[i] != want[i])
            fail_msg("state %d: %s, expected %s", i, vx_gate_state_name(o.states[i]),
                     vx_gate_state_name(want[i]));
    /* at the post from its first frame (t=0, confirmed at 0.2): 3 s of dwell */
    const vx_gate_event *e = expect_ev(&o, VX_GATE_EV_GUARD_ANCHORED, G, 3.0, 1e-6);
    assert_string_equal(e->zone, "anchor");
    assert_string_equal(e->session_id, "");
    /* visitor's foot crosses x=300 at 1.75 s */
    e = expect_ev(&o, VX_GATE_EV_PERSON_ENTERED, V, 1.75, TOL);
    assert_string_equal(e->zone, "ga");
    char sid[VX_GATE_SESSION_MAX];
    snprintf(sid, sizeof sid, "%s", e->session_id);
    assert_non_null(strstr(sid, "run1-g1-v2-"));
    /* contact while the boxes overlap (IoU >= 0.03): 7.367 .. 9.633 s */
    e = expect_ev(&o, VX_GATE_EV_CONTACT_STARTED, V, 7.367, TOL); /* IoU 0.03 at x = 506.5 */
    assert_int_equal(e->other_id, G);
    assert_string_equal(e->session_id, sid);
    /* completed once 1.2 s of contact are in (the 6 s of dwell were earlier) */
    e = expect_ev(&o, VX_GATE_EV_CHECK_COMPLETED, V, 7.367 + 1.2, TOL);
    assert_int_equal(e->other_id, G);
    assert_float_equal(e->confidence, 1.0, 1e-6);
    /* contact_ended comes after the session closed: not in its timeline */
    e = expect_ev(&o, VX_GATE_EV_CONTACT_ENDED, V, 9.633, TOL);
    assert_string_equal(e->session_id, "");
    expect_ev(&o, VX_GATE_EV_PERSON_LEFT, V, 14.125, TOL);
    /* the guard's own movements */
    expect_ev(&o, VX_GATE_EV_GUARD_LEFT_ANCHOR, G, 5.645, TOL);
    expect_ev(&o, VX_GATE_EV_PERSON_ENTERED, G, 5.81, TOL);
    expect_ev(&o, VX_GATE_EV_PERSON_LEFT, G, 11.19, TOL);
    expect_ev(&o, VX_GATE_EV_GUARD_ANCHORED, G, 3.0, 1e-6);
    assert_non_null(find_ev(&o, VX_GATE_EV_GUARD_ANCHORED, G, 1)); /* back at the post */
    assert_int_equal(count_ev(&o, VX_GATE_EV_CHECK_FAILED, 0), 0);
    assert_int_equal(count_ev(&o, VX_GATE_EV_CHECK_COMPLETED, 0), 1);
    /* guards never get sessions or checks */
    for (int i = 0; i < o.nev; i++)
        if (o.ev[i].track_id == G)
            assert_string_equal(o.ev[i].session_id, "");
    /* events in sequence */
    for (int i = 1; i < o.nev; i++)
        assert_true(o.ev[i].seq == o.ev[i - 1].seq + 1);

    /* the completion record */
    assert_int_equal(o.ncomp, 1);
    const vx_gate_completion *r = &o.comp[0].c;
    assert_string_equal(r->session_id, sid);
    assert_string_equal(r->gate_id, "g1");
    assert_int_equal(r->visitor_id, V);
    assert_int_equal(r->guard_id, G);
    assert_true(r->completed);
    assert_int_equal(r->reason, VX_GATE_FAIL_NONE);
    assert_true(r->visitor_dwell_s >= 6.0 && r->visitor_dwell_s < 7.5);
    assert_true(r->guard_dwell_s >= 3.0);
    if (!(r->interaction_s >= 1.2 - 1e-6 && r->interaction_s < 1.35))
        fail_msg("interaction %.3f s", r->interaction_s);
    assert_true(r->min_center_dist >= 0.2 && r->min_center_dist < 0.35);
    assert_true(r->max_iou > 0.1);
    assert_float_equal(r->score, 1.0, 1e-9);
    assert_float_equal(r->threshold, 0.9, 1e-12);
    assert_true(r->criteria.visitor_dwell && r->criteria.guard_dwell && r->criteria.interaction &&
                r->criteria.score);
    assert_float_equal(r->window_start, find_ev(&o, VX_GATE_EV_PERSON_ENTERED, V, 0)->t, 1e-9);
    assert_int_equal(o.comp[0].first, VX_GATE_EV_PERSON_ENTERED);
    assert_int_equal(o.comp[0].last, VX_GATE_EV_CHECK_COMPLETED);
    assert_int_equal(r->ntimeline, 3); /* entered, contact_started, check_completed */

    /* counts */
    assert_int_equal(o.counts.gate_entries, 2);
    assert_int_equal(o.counts.gate_exits, 2);
    assert_int_equal(o.counts.passed_through, 2);
    assert_int_equal(o.counts.in_gate, 0);
    assert_int_equal(o.counts.anchor_entries, 2);
    assert_int_equal(o.counts.anchor_exits, 1);
    assert_int_equal(o.counts.checks_completed, 1);
    assert_int_equal(o.counts.checks_failed, 0);
    assert_int_equal(o.counts.frames, 181);
    /* decisions at the end: the guard anchored, the visitor idle */
    assert_int_equal(o.nlast_guards, 1);
    assert_int_equal(o.last_guards[0].id, G);
    assert_true(o.last_guards[0].anchored);
    vx_gate_counts cc;
    vx_gate_get_counts(g, &cc);
    assert_int_equal(cc.gate_entries, 2);
    vx_gate_reset_counts(g);
    vx_gate_get_counts(g, &cc);
    assert_int_equal(cc.gate_entries, 0);
    assert_int_equal(cc.checks_completed, 0);
    out_free(&o);
    vx_gate_destroy(g);
}

static void test_fail_no_guard(void **state)
{
    (void)state;
    vx_gate_config c;
    scene_config(&c, VX_GATE_ANCHOR_EITHER);
    vx_gate *g = make_gate(&c);
    actor v = {.n = 2, .w = {{0, 50, 400}, {6, 950, 400}}}; /* 150 px/s: in the gate 1.67 .. 4.33 s */
    run_out o = {0};
    run_scene(g, &v, 1, 8, &o);
    dump_events(&o);
    expect_ev(&o, VX_GATE_EV_PERSON_ENTERED, 1, 1.67, TOL);
    expect_ev(&o, VX_GATE_EV_PERSON_LEFT, 1, 4.33, TOL);
    const vx_gate_event *f = expect_ev(&o, VX_GATE_EV_CHECK_FAILED, 1, 4.33, TOL);
    assert_int_equal(f->reason, VX_GATE_FAIL_NO_GUARD);
    assert_int_equal(f->other_id, 0);
    assert_int_equal(o.ncomp, 1);
    assert_false(o.comp[0].c.completed);
    assert_int_equal(o.comp[0].c.reason, VX_GATE_FAIL_NO_GUARD);
    assert_int_equal(o.comp[0].c.guard_id, 0);
    assert_true(o.comp[0].c.min_center_dist < 0);
    assert_int_equal(o.comp[0].last, VX_GATE_EV_CHECK_FAILED);
    assert_int_equal(o.counts.failed_by_reason[VX_GATE_FAIL_NO_GUARD], 1);
    assert_int_equal(o.counts.passed_through, 1);
    out_free(&o);
    vx_gate_destroy(g);
}

static void test_fail_no_contact(void **state)
{
    (void)state;
    vx_gate_config c;
    scene_config(&c, VX_GATE_ANCHOR_EITHER);
    vx_gate *g = make_gate(&c);
    actor a[2] = {
        {.n = 2, .w = {{0, 850, 300}, {10, 850, 300}}},
        {.n = 4, .w = {{0, 50, 450}, {3, 500, 450}, {5, 500, 450}, {8, 50, 450}}},
    };
    run_out o = {0};
    run_scene(g, a, 2, 10, &o);
    dump_events(&o);
    expect_ev(&o, VX_GATE_EV_GUARD_ANCHORED, 1, 3.0, 1e-6);
    const vx_gate_event *f = expect_ev(&o, VX_GATE_EV_CHECK_FAILED, 2, 6.33, TOL);
    assert_int_equal(f->reason, VX_GATE_FAIL_NO_CONTACT);
    assert_int_equal(count_ev(&o, VX_GATE_EV_CONTACT_STARTED, 0), 0);
    assert_int_equal(o.comp[0].c.guard_id, 1); /* the nearest guard */
    assert_true(o.comp[0].c.min_center_dist > 2.0);
    out_free(&o);
    vx_gate_destroy(g);
}

static void test_fail_too_short(void **state)
{
    (void)state;
    vx_gate_config c;
    scene_config(&c, VX_GATE_ANCHOR_EITHER);
    vx_gate *g = make_gate(&c);
    /* the guard comes over, stays half a second, goes back */
    actor a[2] = {
        {.n = 6,
         .w = {{0, 850, 300},
               {4, 850, 300},
               {6.5, 530, 420},
               {7.0, 530, 420},
               {9.5, 850, 300},
               {16, 850, 300}}},
        {.n = 4, .w = {{0, 50, 450}, {2, 500, 450}, {12, 500, 450}, {14, 50, 450}}},
    };
    run_out o = {.watch = 2};
    run_scene(g, a, 2, 15, &o);
    dump_events(&o);
    expect_ev(&o, VX_GATE_EV_CONTACT_STARTED, 2, 6.30, TOL);
    expect_ev(&o, VX_GATE_EV_CONTACT_ENDED, 2, 7.20, TOL);
    const vx_gate_event *f = expect_ev(&o, VX_GATE_EV_CHECK_FAILED, 2, 12.89, TOL);
    assert_int_equal(f->reason, VX_GATE_FAIL_TOO_SHORT);
    assert_int_equal(f->other_id, 1);
    const vx_gate_state want[] = {VX_GATE_IDLE,          VX_GATE_PRESENT_IN_GA, VX_GATE_GUARD_PRESENT,
                                  VX_GATE_PRESENT_IN_GA, VX_GATE_GUARD_PRESENT, VX_GATE_INTERACTION_WINDOW,
                                  VX_GATE_GUARD_PRESENT, VX_GATE_PRESENT_IN_GA, VX_GATE_GUARD_PRESENT,
                                  VX_GATE_CHECK_FAILED,  VX_GATE_IDLE};
    assert_int_equal(o.nstates, 11);
    for (int i = 0; i < 11; i++)
        if (o.states[i] != want[i])
            fail_msg("state %d: %s, expected %s", i, vx_gate_state_name(o.states[i]),
                     vx_gate_state_name(want[i]));
    const vx_gate_completion *r = &o.comp[0].c;
    assert_true(r->interaction_s > 0.3 && r->interaction_s < 1.2);
    assert_true(r->criteria.visitor_dwell);
    assert_false(r->criteria.interaction);
    assert_false(r->completed);
    out_free(&o);
    vx_gate_destroy(g);
}

static void test_fail_timeout(void **state)
{
    (void)state;
    vx_gate_config c;
    scene_config(&c, VX_GATE_ANCHOR_EITHER);
    vx_gate *g = make_gate(&c);
    /* walks in, then is never seen again after t=5.0 */
    actor v = {.n = 3, .w = {{0, 50, 400}, {2, 450, 400}, {5, 450, 400}}};
    run_out o = {0};
    run_scene(g, &v, 1, 14, &o);
    dump_events(&o);
    const vx_gate_event *l = expect_ev(&o, VX_GATE_EV_PERSON_LEFT, 1, 13.0, 1e-6);
    const vx_gate_event *f = expect_ev(&o, VX_GATE_EV_CHECK_FAILED, 1, 13.0, 1e-6);
    assert_true(l->seq < f->seq);
    assert_int_equal(f->reason, VX_GATE_FAIL_TIMEOUT);
    assert_int_equal(o.counts.gate_exits, 1);
    assert_int_equal(o.counts.passed_through, 0); /* nobody saw them walk out */
    assert_int_equal(o.counts.in_gate, 0);
    assert_int_equal(o.counts.failed_by_reason[VX_GATE_FAIL_TIMEOUT], 1);
    /* persistence < 1 after the loss: score below what a full track gets */
    assert_true(o.comp[0].c.score < 0.76);
    out_free(&o);
    vx_gate_destroy(g);

    /* a short occlusion inside the gate area is no exit at all: the visitor
     * of the checked scene is missed by the detector from 4.1 to 5.4 s (14
     * frames); the tracker keeps the id and the engine the session */
    g = make_gate(&c);
    actor occl[3];
    scene_checked(occl);
    occl[1] = (actor){.n = 3, .w = {{0.5, 50, 400}, {2.5, 450, 400}, {4.0, 450, 400}}};
    occl[2] = (actor){.n = 3, .w = {{5.5, 450, 400}, {13, 450, 400}, {16, 50, 400}}};
    run_scene(g, occl, 3, 18, &o);
    dump_events(&o);
    assert_int_equal(count_ev(&o, VX_GATE_EV_PERSON_ENTERED, 2), 1);
    assert_int_equal(count_ev(&o, VX_GATE_EV_PERSON_LEFT, 2), 1);
    assert_int_equal(count_ev(&o, VX_GATE_EV_CHECK_COMPLETED, 2), 1);
    assert_int_equal(count_ev(&o, VX_GATE_EV_CHECK_FAILED, 0), 0);
    assert_int_equal(o.counts.gate_entries, 2); /* the visitor and the guard, nobody else */
    out_free(&o);
    vx_gate_destroy(g);
}

static void test_hysteresis(void **state)
{
    (void)state;
    vx_gate_config c;
    scene_config(&c, VX_GATE_ANCHOR_EITHER);
    c.jitter_smooth_window = 1; /* the consensus filter alone */
    /* standing outside at x=290 with excursions into the gate area: two
     * frames at 2.0-2.1 s, three frames at 4.0-4.2 s */
    actor v = {.n = 10,
               .w = {{0, 290, 400},
                     {1.95, 290, 400},
                     {1.96, 320, 400},
                     {2.14, 320, 400},
                     {2.15, 290, 400},
                     {3.95, 290, 400},
                     {3.96, 320, 400},
                     {4.24, 320, 400},
                     {4.25, 290, 400},
                     {7, 290, 400}}};
    vx_gate *g = make_gate(&c);
    run_out o = {0};
    run_scene(g, &v, 1, 7, &o);
    dump_events(&o);
    assert_int_equal(count_ev(&o, VX_GATE_EV_PERSON_ENTERED, 0), 1);
    expect_ev(&o, VX_GATE_EV_PERSON_ENTERED, 1, 4.0, 1e-6);
    expect_ev(&o, VX_GATE_EV_PERSON_LEFT, 1, 4.3, 1e-6);
    out_free(&o);
    vx_gate_destroy(g);
    /* without consensus the two-frame excursion counts too: the filter is
     * what removed it */
    c.multi_frame_consensus = 1;
    g = make_gate(&c);
    run_scene(g, &v, 1, 7, &o);
    assert_int_equal(count_ev(&o, VX_GATE_EV_PERSON_ENTERED, 0), 2);
    expect_ev(&o, VX_GATE_EV_PERSON_ENTERED, 1, 2.0, 1e-6);
    out_free(&o);
    vx_gate_destroy(g);
}

/* Someone standing 6 px outside the gate area, their box jittering by
 * sigma 6 px per edge (a detector's frame-to-frame noise): the raw foot
 * point (sigma 4 px) is inside about one frame in twelve.  With the default filters nothing
 * happens; with both filters off the same detections flicker in and out. */
static int jitter_events(int window, int consensus)
{
    vx_gate_config c;
    scene_config(&c, VX_GATE_ANCHOR_EITHER);
    c.jitter_smooth_window = window;
    c.multi_frame_consensus = consensus;
    vx_gate *g = make_gate(&c);
    vx_gate_result res;
    vx_gate_result_init(&res);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    int n = 0;
    for (int k = 0; k < 300; k++) {
        float e[4];
        for (int i = 0; i < 4; i++) { /* sum of 4 uniforms: about normal, sigma 6 px */
            double u = 0;
            for (int j = 0; j < 4; j++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                u += (double)(x >> 11) / 9007199254740992.0 - 0.5;
            }
            e[i] = (float)(u * 6.0 / 0.57735);
        }
        /* feet at x = 294 (gate area starts at 300) */
        vx_track_det d = {264 + e[0], 250 + e[1], 324 + e[2], 400 + e[3], 0.9f, 0};
        vx_gate_frame fr = {&d, 1, W, H, k * 0.1};
        assert_int_equal(vx_gate_process(g, &fr, &res), VX_OK);
        n += res.nevents;
    }
    vx_gate_result_free(&res);
    vx_gate_destroy(g);
    return n;
}

static void test_jitter(void **state)
{
    (void)state;
    int filtered = jitter_events(5, 3), raw = jitter_events(1, 1);
    print_message("  events from 30 s of jitter: %d filtered, %d unfiltered\n", filtered, raw);
    assert_int_equal(filtered, 0);
    assert_true(raw >= 20);
}

static void test_min_box_height(void **state)
{
    (void)state;
    vx_gate_config c;
    scene_config(&c, VX_GATE_ANCHOR_EITHER);
    vx_gate *g = make_gate(&c);
    actor v = {.n = 2, .w = {{0, 50, 400}, {6, 950, 400}}, .h = 30.f}; /* 30 px tall: noise */
    run_out o = {0};
    run_scene(g, &v, 1, 7, &o);
    assert_int_equal(o.nev, 0);
    assert_int_equal(o.counts.gate_entries, 0);
    out_free(&o);
    vx_gate_destroy(g);
}

/* A guard waiting inside the gate area, then a visitor. */
static void waiting_guard_scene(actor *a)
{
    a[0] = (actor){
        .n = 6,
        .w = {{0, 600, 400}, {7, 600, 400}, {7.5, 480, 400}, {13, 480, 400}, {15, 950, 400}, {16, 950, 400}}};
    a[1] = (actor){.n = 4, .w = {{4, 50, 400}, {6, 450, 400}, {13.5, 450, 400}, {15.5, 50, 400}}};
}

static void test_mode_either(void **state)
{
    (void)state;
    vx_gate_config c;
    scene_config(&c, VX_GATE_ANCHOR_EITHER);
    vx_gate *g = make_gate(&c);
    actor a[2];
    waiting_guard_scene(a);
    run_out o = {0};
    run_scene(g, a, 2, 18, &o);
    dump_events(&o);
    /* W had its own session first ... */
    assert_string_not_equal(find_ev(&o, VX_GATE_EV_PERSON_ENTERED, 1, 0)->session_id, "");
    /* ... and became the guard when V walked in (foot at x=300 at 5.25 s) */
    const vx_gate_event *pe = expect_ev(&o, VX_GATE_EV_PERSON_ENTERED, 2, 5.25, TOL);
    const vx_gate_event *ga = expect_ev(&o, VX_GATE_EV_GUARD_ANCHORED, 1, pe->t, 1e-9);
    assert_string_equal(ga->zone, "ga");
    const vx_gate_event *cc = expect_ev(&o, VX_GATE_EV_CHECK_COMPLETED, 2, pe->t + 6, 0.11);
    assert_int_equal(cc->other_id, 1);
    assert_int_equal(count_ev(&o, VX_GATE_EV_CHECK_FAILED, 0), 0);
    assert_int_equal(count_ev(&o, VX_GATE_EV_CHECK_COMPLETED, 1), 0);
    out_free(&o);
    vx_gate_destroy(g);

    /* a guard (from the anchor) who stepped away and walks in later is not
     * the "new person" that turns a waiting visitor into a guard */
    g = make_gate(&c);
    actor b[2] = {
        {.n = 5, .w = {{0, 800, 400}, {4, 800, 400}, {5, 800, 570}, {10, 800, 570}, {12.5, 490, 420}}},
        {.n = 2, .w = {{4, 50, 400}, {6, 450, 400}}},
    };
    b[0].n = 6;
    b[0].w[5] = (wp){18, 490, 420};
    b[1].n = 4;
    b[1].w[2] = (wp){17, 450, 400};
    b[1].w[3] = (wp){19, 50, 400};
    run_scene(g, b, 2, 20, &o);
    dump_events(&o);
    assert_int_equal(count_ev(&o, VX_GATE_EV_GUARD_ANCHORED, 2), 0);
    const vx_gate_event *done = find_ev(&o, VX_GATE_EV_CHECK_COMPLETED, 2, 0);
    assert_non_null(done);
    assert_int_equal(done->other_id, 1);
    out_free(&o);
    vx_gate_destroy(g);
}

static void test_mode_strict_anchor(void **state)
{
    (void)state;
    vx_gate_config c;
    scene_config(&c, VX_GATE_ANCHOR_STRICT);
    vx_gate *g = make_gate(&c);
    actor a[2];
    waiting_guard_scene(a);
    run_out o = {0};
    run_scene(g, a, 2, 18, &o);
    dump_events(&o);
    /* nobody is a guard without the anchor: both are visitors, neither checked */
    assert_int_equal(count_ev(&o, VX_GATE_EV_GUARD_ANCHORED, 0), 0);
    assert_int_equal(count_ev(&o, VX_GATE_EV_CHECK_COMPLETED, 0), 0);
    assert_int_equal(count_ev(&o, VX_GATE_EV_CHECK_FAILED, 0), 2);
    assert_int_equal(find_ev(&o, VX_GATE_EV_CHECK_FAILED, 1, 0)->reason, VX_GATE_FAIL_NO_GUARD);
    assert_int_equal(find_ev(&o, VX_GATE_EV_CHECK_FAILED, 2, 0)->reason, VX_GATE_FAIL_NO_GUARD);
    out_free(&o);
    vx_gate_destroy(g);

    /* an anchor guard is accepted in strict mode */
    g = make_gate(&c);
    scene_checked(a);
    run_scene(g, a, 2, 18, &o);
    assert_int_equal(count_ev(&o, VX_GATE_EV_CHECK_COMPLETED, 2), 1);
    out_free(&o);
    vx_gate_destroy(g);
}

static void test_mode_no_anchor(void **state)
{
    (void)state;
    vx_gate_config c;
    scene_config(&c, VX_GATE_ANCHOR_NONE);
    vx_gate *g = make_gate(&c);
    /* G stands just outside the gate area and steps up to the visitor */
    actor a[2] = {
        {.n = 6,
         .w =
             {{0, 250, 300}, {5, 250, 300}, {5.5, 290, 340}, {8, 290, 340}, {8.5, 250, 300}, {16, 250, 300}}},
        {.n = 5, .w = {{0, 800, 400}, {3, 330, 350}, {11, 330, 350}, {14, 800, 350}, {16, 800, 350}}},
    };
    run_out o = {0};
    run_scene(g, a, 2, 16, &o);
    dump_events(&o);
    const vx_gate_event *pe = find_ev(&o, VX_GATE_EV_PERSON_ENTERED, 2, 0);
    assert_non_null(pe);
    const vx_gate_event *cc = expect_ev(&o, VX_GATE_EV_CHECK_COMPLETED, 2, pe->t + 6, 0.11);
    assert_int_equal(cc->other_id, 1);
    assert_int_equal(count_ev(&o, VX_GATE_EV_CHECK_FAILED, 0), 0);
    assert_int_equal(o.nlast_guards, 1);
    out_free(&o);
    vx_gate_destroy(g);

    /* the same walk in `either` mode with an anchor nobody uses: no guard */
    scene_config(&c, VX_GATE_ANCHOR_EITHER);
    g = make_gate(&c);
    run_scene(g, a, 2, 16, &o);
    dump_events(&o);
    assert_int_equal(count_ev(&o, VX_GATE_EV_CHECK_COMPLETED, 0), 0);
    assert_int_equal(find_ev(&o, VX_GATE_EV_CHECK_FAILED, 2, 0)->reason, VX_GATE_FAIL_NO_GUARD);
    out_free(&o);
    vx_gate_destroy(g);
}

static int pose_value(void *user, uint32_t visitor, uint32_t guard, double t, double *term)
{
    (void)visitor, (void)guard, (void)t;
    *term = *(const double *)user;
    return 1;
}

static void test_pose_hook_and_score(void **state)
{
    (void)state;
    vx_gate_config c;
    scene_config(&c, VX_GATE_ANCHOR_EITHER);
    actor a[2];
    scene_checked(a);
    /* a pose model that says "no check gesture": 0.6 + 0.2 + 0 + 0.05 = 0.85 */
    double zero = 0.0, one = 1.0;
    vx_gate *g = make_gate(&c);
    vx_gate_set_pose_hook(g, pose_value, &zero);
    run_out o = {0};
    run_scene(g, a, 2, 18, &o);
    assert_int_equal(count_ev(&o, VX_GATE_EV_CHECK_COMPLETED, 0), 0);
    const vx_gate_event *f = find_ev(&o, VX_GATE_EV_CHECK_FAILED, 2, 0);
    assert_non_null(f);
    assert_int_equal(f->reason, VX_GATE_FAIL_TOO_SHORT);
    assert_float_equal(f->confidence, 0.85, 1e-5);
    assert_false(o.comp[0].c.criteria.score);
    assert_true(o.comp[0].c.criteria.interaction);
    out_free(&o);
    vx_gate_destroy(g);
    /* a confident pose model: full score */
    g = make_gate(&c);
    vx_gate_set_pose_hook(g, pose_value, &one);
    run_scene(g, a, 2, 18, &o);
    assert_int_equal(count_ev(&o, VX_GATE_EV_CHECK_COMPLETED, 2), 1);
    out_free(&o);
    vx_gate_destroy(g);
    /* a threshold above what contact and persistence can reach without pose
     * renormalisation would be 0.85: with renormalisation 1.0 passes 0.95 */
    c.threshold = 0.95;
    g = make_gate(&c);
    run_scene(g, a, 2, 18, &o);
    assert_int_equal(count_ev(&o, VX_GATE_EV_CHECK_COMPLETED, 2), 1);
    out_free(&o);
    vx_gate_destroy(g);
}

static void test_deterministic_and_json(void **state)
{
    (void)state;
    vx_gate_config c;
    scene_config(&c, VX_GATE_ANCHOR_EITHER);
    actor a[2];
    scene_checked(a);
    run_out o1 = {0}, o2 = {0};
    vx_gate *g = make_gate(&c);
    run_scene(g, a, 2, 18, &o1);
    vx_gate_destroy(g);
    g = make_gate(&c);
    run_scene(g, a, 2, 18, &o2);
    vx_gate_destroy(g);
    assert_int_equal(o1.json_len, o2.json_len);
    assert_memory_equal(o1.json, o2.json, o1.json_len);

    /* the shapes */
    const vx_gate_event *e = find_ev(&o1, VX_GATE_EV_CHECK_COMPLETED, 2, 0);
    char *s = vx_gate_event_json(e);
    json_error_t err;
    json_t *j = json_loads(s, 0, &err);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "type")), "check_completed");
    assert_int_equal(json_integer_value(json_object_get(j, "track_id")), 2);
    assert_int_equal(json_integer_value(json_object_get(j, "other_id")), 1);
    assert_string_equal(json_string_value(json_object_get(j, "zone")), "ga");
    assert_true(json_is_real(json_object_get(j, "t")));
    assert_true(json_is_null(json_object_get(j, "reason")));
    assert_true(json_is_string(json_object_get(j, "session_id")));
    json_decref(j);
    free(s);
    /* a frame with a completion carries it under decisions.completions */
    const char *line = strstr(o1.json, "\"completions\":[{");
    assert_non_null(line);
    const char *start = line;
    while (start > o1.json && start[-1] != '\n')
        start--;
    const char *end = strchr(start, '\n');
    j = json_loadb(start, (size_t)(end - start), 0, &err);
    assert_non_null(j);
    json_t *d = json_object_get(j, "decisions");
    json_t *comp = json_array_get(json_object_get(d, "completions"), 0);
    assert_string_equal(json_string_value(json_object_get(comp, "status")), "completed");
    assert_int_equal(json_array_size(json_object_get(comp, "timeline")), 3);
    assert_true(json_is_true(json_object_get(json_object_get(comp, "criteria"), "score")));
    json_t *p2 = json_object_get(json_object_get(d, "persons"), "2");
    assert_non_null(p2);
    assert_string_equal(json_string_value(json_object_get(p2, "state")), "CHECK_COMPLETED");
    assert_int_equal(json_integer_value(json_object_get(p2, "assigned_guard")),
                     0 * 0 + 0); /* session closed */
    json_t *g1 = json_object_get(json_object_get(d, "guards"), "1");
    assert_non_null(g1);
    assert_true(json_is_boolean(json_object_get(g1, "anchored")));
    json_t *st = json_object_get(j, "stats");
    assert_int_equal(json_integer_value(json_object_get(st, "checks_completed")), 1);
    assert_non_null(json_object_get(json_object_get(st, "failed_by_reason"), "no_guard"));
    json_decref(j);
    out_free(&o1);
    out_free(&o2);
}

static void test_reset_and_discontinuity(void **state)
{
    (void)state;
    vx_gate_config c;
    scene_config(&c, VX_GATE_ANCHOR_EITHER);
    vx_gate *g = make_gate(&c);
    vx_gate_result res;
    vx_gate_result_init(&res);
    vx_track_det d = {400, 250, 460, 400, 0.9f, 0};
    for (int k = 0; k < 10; k++) {
        vx_gate_frame fr = {&d, 1, W, H, 10 + k * 0.1};
        assert_int_equal(vx_gate_process(g, &fr, &res), VX_OK);
    }
    assert_int_equal(res.counts.in_gate, 1);
    assert_int_equal(res.npersons, 1);
    assert_int_equal(res.persons[0].state, VX_GATE_PRESENT_IN_GA);
    /* the file looped: time starts again */
    vx_gate_frame back = {&d, 1, W, H, 0.0};
    assert_int_equal(vx_gate_process(g, &back, &res), VX_OK);
    assert_true(res.discontinuity);
    assert_int_equal(res.counts.in_gate, 0);
    assert_int_equal(res.ntracks, 0); /* tracker restarted: tentative again */
    /* reset: state gone, counts kept, ids continue */
    vx_gate_reset(g);
    for (int k = 0; k < 3; k++) {
        vx_gate_frame fr = {&d, 1, W, H, 1 + k * 0.1};
        assert_int_equal(vx_gate_process(g, &fr, &res), VX_OK);
    }
    assert_int_equal(res.ntracks, 1);
    assert_int_equal(res.tracks[0].id, 2); /* the looped frame's track never got confirmed */
    /* in the gate area from its first detection (t=1.0): the entry is dated
     * there and due at confirmation, with the two earlier boxes as evidence */
    assert_int_equal(res.nevents, 1);
    assert_int_equal(res.events[0].type, VX_GATE_EV_PERSON_ENTERED);
    assert_float_equal(res.events[0].t, 1.0, 1e-9);
    assert_int_equal(res.counts.gate_entries, 2);
    /* bad frames */
    vx_gate_frame bad = {&d, 1, 0, H, 2};
    assert_int_equal(vx_gate_process(g, &bad, &res), VX_ERR_INVALID);
    bad = (vx_gate_frame){NULL, 2, W, H, 2};
    assert_int_equal(vx_gate_process(g, &bad, &res), VX_ERR_INVALID);
    bad = (vx_gate_frame){&d, 1, W, H, NAN};
    assert_int_equal(vx_gate_process(g, &bad, &res), VX_ERR_INVALID);
    vx_gate_result_free(&res);
    vx_gate_destroy(g);
}

/* The running config swapped between frames: the new zones apply from the
 * next frame (someone standing still is suddenly outside), and a reader on
 * another thread always sees one whole config. */
typedef struct {
    vx_gate *g;
    vx_gate_config a, b;
    atomic_int stop, swaps;
    int torn;
} swapper;

static void *swap_thread(void *p)
{
    swapper *w = p;
    while (!atomic_load(&w->stop)) {
        assert_int_equal(vx_gate_set_config(w->g, (w->swaps & 1) ? &w->a : &w->b), VX_OK);
        vx_gate_config now;
        vx_gate_get_config(w->g, &now);
        if (memcmp(&now, &w->a, sizeof now) && memcmp(&now, &w->b, sizeof now))
            w->torn++;
        vx_gate_counts cnt;
        vx_gate_get_counts(w->g, &cnt);
        w->swaps++;
    }
    return NULL;
}

static void test_config_swap_at_run_time(void **state)
{
    (void)state;
    vx_gate_config c;
    scene_config(&c, VX_GATE_ANCHOR_EITHER);
    vx_gate *g = make_gate(&c);
    vx_gate_result res;
    vx_gate_result_init(&res);
    vx_track_det d = {420, 250, 480, 400, 0.9f, 0}; /* feet at (450, 400): in the gate area */
    int k = 0;
    for (; k < 20; k++) {
        vx_gate_frame fr = {&d, 1, W, H, k * 0.1};
        assert_int_equal(vx_gate_process(g, &fr, &res), VX_OK);
    }
    assert_int_equal(res.counts.in_gate, 1);
    /* the gate area moves to the right half: the person is outside now */
    vx_gate_config moved = c;
    rect_zone(&moved.gate_area, "ga2", VX_GATE_ZONE_GATE_AREA, 500, 200, 700, 500);
    assert_int_equal(vx_gate_set_config(g, &moved), VX_OK);
    int left = 0;
    for (; k < 30; k++) {
        vx_gate_frame fr = {&d, 1, W, H, k * 0.1};
        assert_int_equal(vx_gate_process(g, &fr, &res), VX_OK);
        for (int i = 0; i < res.nevents; i++)
            if (res.events[i].type == VX_GATE_EV_PERSON_LEFT) {
                left++;
                assert_float_equal(res.events[i].t, 2.0, 1e-6); /* the first frame under the new zones */
                assert_string_equal(res.events[i].zone, "ga2");
            }
    }
    assert_int_equal(left, 1);
    assert_int_equal(res.counts.in_gate, 0);

    /* swaps and reads from another thread while frames are processed (at
     * least 2000 frames, and on until the thread has swapped a few times:
     * on a busy machine it may not start before 2000 frames are done) */
    swapper w = {.g = g, .a = c, .b = moved};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, swap_thread, &w), 0);
    for (; k < 2030 || atomic_load(&w.swaps) < 10; k++) {
        vx_gate_frame fr = {&d, 1, W, H, k * 0.1};
        assert_int_equal(vx_gate_process(g, &fr, &res), VX_OK);
    }
    atomic_store(&w.stop, 1);
    pthread_join(th, NULL);
    assert_int_equal(w.torn, 0);
    assert_true(w.swaps > 0);
    assert_int_equal(res.counts.gate_entries, res.counts.gate_exits + res.counts.in_gate);
    vx_gate_result_free(&res);
    vx_gate_destroy(g);
}

/* ---- geometry ------------------------------------------------------------------------ */

static void test_polygons(void **state)
{
    (void)state;
    double sq[4][2] = {{0, 0}, {10, 0}, {10, 10}, {0, 10}};
    assert_true(vx_gate_polygon_contains(sq, 4, 5, 5));
    assert_true(vx_gate_polygon_contains(sq, 4, 10, 5)); /* edge */
    assert_false(vx_gate_polygon_contains(sq, 4, 10.01, 5));
    assert_false(vx_gate_polygon_contains(sq, 4, -1, -1));
    assert_false(vx_gate_polygon_self_intersects(sq, 4));
    double bow[4][2] = {{0, 0}, {10, 10}, {10, 0}, {0, 10}};
    assert_true(vx_gate_polygon_self_intersects(bow, 4));
    double concave[6][2] = {{0, 0}, {10, 0}, {10, 10}, {5, 3}, {0, 10}, {0, 5}};
    assert_false(vx_gate_polygon_self_intersects(concave, 6));
    assert_false(vx_gate_polygon_contains(concave, 6, 5, 8)); /* in the notch */
    assert_true(vx_gate_polygon_contains(concave, 6, 5, 1));
    double touch[5][2] = {{0, 0}, {10, 0}, {5, 5}, {10, 10}, {5, 0}}; /* vertex on an edge */
    assert_true(vx_gate_polygon_self_intersects(touch, 5));
    double spike[4][2] = {{0, 0}, {10, 0}, {5, 0}, {5, 5}}; /* folds back on itself */
    assert_true(vx_gate_polygon_self_intersects(spike, 4));
    vx_gate_zone z;
    rect_zone(&z, "z", VX_GATE_ZONE_GATE_AREA, 0.25, 0.5, 0.75, 1.0);
    z.normalized = 1;
    assert_true(vx_gate_zone_contains(&z, 800, 600, 400, 450));
    assert_false(vx_gate_zone_contains(&z, 800, 600, 400, 200));
}

/* ---- config files ----------------------------------------------------------------------- */

static char tmpdir[256];

static void write_file(const char *name, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static const char *tpath(const char *name)
{
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", tmpdir, name);
    return p[k];
}

static const char *GOOD_GA = "{\n"
                             "  \"zone_id\": \"ga\",\n"
                             "  \"zone_type\": \"gate_area\",\n"
                             "  \"polygon\": [[0.1, 0.1], [0.5, 0.1], [0.5, 0.9], [0.1, 0.9]]\n"
                             "}\n";
static const char *GOOD_ANCHOR =
    "{\"zone_id\": \"post\", \"zone_type\": \"guard_anchor\", \"normalized\": false,\n"
    " \"polygon\": [[600, 100], [700, 100], [700, 300]], \"description\": \"post\"}\n";

static int setup_dir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/vx_gate_test_XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    char z[512];
    snprintf(z, sizeof z, "%s/zones", tmpdir);
    mkdir(z, 0755);
    write_file("zones/ga.json", GOOD_GA);
    write_file("zones/anchor.json", GOOD_ANCHOR);
    return 0;
}

static int teardown_dir(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Loads rules text from a file and expects failure naming all parts. */
static void rules_fail(const char *text, const char *p1, const char *p2, const char *p3)
{
    write_file("rules.json", text);
    vx_gate_config cfg;
    vx_gate_config_default(&cfg);
    snprintf(cfg.gate_id, sizeof cfg.gate_id, "untouched");
    vx_gate_diag diag;
    vx_err e = vx_gate_config_load(tpath("rules.json"), &cfg, &diag);
    if (e == VX_OK)
        fail_msg("loaded, expected an error with '%s'", p1 ? p1 : "");
    const char *msg = vx_last_error();
    print_message("  rejected: %s\n", msg);
    const char *parts[3] = {p1, p2, p3};
    for (int i = 0; i < 3; i++)
        if (parts[i] && !strstr(msg, parts[i]))
            fail_msg("'%s' lacks '%s'", msg, parts[i]);
    assert_true(diag.has_error);
    assert_true(diag.error.message[0] != 0);
    assert_string_equal(cfg.gate_id, "untouched");
}

static void test_config_good_and_defaults(void **state)
{
    (void)state;
    write_file("rules.json",
               "{\n"
               "  \"gate_id\": \"main-gate\",\n"
               "  \"zones\": {\"gate_area\": \"zones/ga.json\", \"guard_anchor\": \"zones/anchor.json\"},\n"
               "  \"timers\": {\"person_min_dwell_s\": 4},\n"
               "  \"guard_anchor_logic\": {\"mode\": \"strict_anchor\"}\n"
               "}\n");
    vx_gate_config cfg;
    vx_gate_diag diag;
    if (vx_gate_config_load(tpath("rules.json"), &cfg, &diag) != VX_OK)
        fail_msg("%s", vx_last_error());
    assert_int_equal(diag.nwarnings, 0);
    assert_string_equal(cfg.gate_id, "main-gate");
    assert_string_equal(cfg.gate_area.zone_id, "ga");
    assert_true(cfg.gate_area.normalized);
    assert_int_equal(cfg.gate_area.npoints, 4);
    assert_true(cfg.has_guard_anchor);
    assert_false(cfg.guard_anchor.normalized);
    assert_string_equal(cfg.guard_anchor.description, "post");
    assert_float_equal(cfg.person_min_dwell_s, 4.0, 0);
    assert_int_equal(cfg.anchor_mode, VX_GATE_ANCHOR_STRICT);
    /* defaults for everything absent */
    vx_gate_config def;
    vx_gate_config_default(&def);
    assert_float_equal(cfg.guard_min_dwell_s, def.guard_min_dwell_s, 0);
    assert_float_equal(cfg.guard_min_dwell_s, 3.0, 0);
    assert_float_equal(cfg.interaction_min_overlap_s, 1.2, 0);
    assert_float_equal(cfg.session_timeout_s, 8.0, 0);
    assert_float_equal(cfg.center_dist_scale, 0.35, 0);
    assert_float_equal(cfg.iou_min, 0.03, 0);
    assert_float_equal(cfg.score_base, 0.6, 0);
    assert_float_equal(cfg.contact_bonus, 0.2, 0);
    assert_float_equal(cfg.pose_bonus, 0.15, 0);
    assert_float_equal(cfg.reid_persistence_bonus, 0.05, 0);
    assert_float_equal(cfg.threshold, 0.9, 0);
    assert_float_equal(cfg.min_box_height_px, 40, 0);
    assert_int_equal(cfg.jitter_smooth_window, 5);
    assert_int_equal(cfg.multi_frame_consensus, 3);
    assert_int_equal(cfg.n_person_classes, 1);
    assert_int_equal(cfg.person_classes[0], 0);

    /* round trip through the JSON form (zones inline) */
    char *js = vx_gate_config_json(&cfg);
    assert_non_null(js);
    vx_gate_config back;
    if (vx_gate_config_parse(js, strlen(js), "roundtrip", NULL, &back, NULL) != VX_OK)
        fail_msg("%s\n%s", vx_last_error(), js);
    free(js);
    memset(cfg.gate_area.path, 0, sizeof cfg.gate_area.path);
    memset(cfg.guard_anchor.path, 0, sizeof cfg.guard_anchor.path);
    assert_memory_equal(&cfg, &back, sizeof cfg);
}

static void test_config_repo_example(void **state)
{
    (void)state;
    /* the example shipped in config/gate, found from this source file */
    char p[1024];
    snprintf(p, sizeof p, "%s", __FILE__);
    char *slash = strrchr(p, '/');
    assert_non_null(slash);
    snprintf(slash, sizeof p - (size_t)(slash - p), "/../config/gate/rules.json");
    vx_gate_config cfg;
    vx_gate_diag diag;
    if (vx_gate_config_load(p, &cfg, &diag) != VX_OK)
        fail_msg("%s", vx_last_error());
    assert_int_equal(diag.nwarnings, 0);
    assert_true(cfg.has_guard_anchor);
    assert_int_equal(cfg.gate_area.type, VX_GATE_ZONE_GATE_AREA);
    /* the vtest.avi walkway: a person at (290, 300) px stands in the band */
    assert_true(vx_gate_zone_contains(&cfg.gate_area, 768, 576, 290, 300));
    assert_false(vx_gate_zone_contains(&cfg.gate_area, 768, 576, 600, 330));
}

static void test_config_errors(void **state)
{
    (void)state;
    /* malformed JSON: file and line */
    rules_fail("{\n  \"gate_id\": \"a\",\n  \"zones\": {\n    \"gate_area\": \"zones/ga.json\"\n    \"x\": "
               "1\n  }\n}\n",
               "rules.json:5:", NULL, NULL);
    /* wrong type: file, line, key */
    rules_fail(
        "{\n  \"zones\": {\"gate_area\": \"zones/ga.json\", \"guard_anchor\": \"zones/anchor.json\"},\n"
        "  \"timers\": {\n    \"person_min_dwell_s\": \"six\"\n  }\n}\n",
        "rules.json:4:", "timers.person_min_dwell_s", "must be a number");
    /* out of range */
    rules_fail(
        "{\n  \"zones\": {\"gate_area\": \"zones/ga.json\", \"guard_anchor\": \"zones/anchor.json\"},\n"
        "  \"scoring\": {\"base\": 0.6,\n              \"threshold\": 1.5}\n}\n",
        "rules.json:4:", "scoring.threshold", "out of range");
    rules_fail(
        "{\n  \"zones\": {\"gate_area\": \"zones/ga.json\", \"guard_anchor\": \"zones/anchor.json\"},\n"
        "  \"timers\": {\"session_timeout_s\": 0}\n}\n",
        "rules.json:3:", "timers.session_timeout_s", NULL);
    rules_fail(
        "{\n  \"zones\": {\"gate_area\": \"zones/ga.json\", \"guard_anchor\": \"zones/anchor.json\"},\n"
        "  \"noise_filtering\": {\"multi_frame_consensus\": 2.5}\n}\n",
        "rules.json:3:", "noise_filtering.multi_frame_consensus", "integer");
    rules_fail(
        "{\n  \"zones\": {\"gate_area\": \"zones/ga.json\", \"guard_anchor\": \"zones/anchor.json\"},\n"
        "  \"guard_anchor_logic\": {\"mode\": \"sometimes\"}\n}\n",
        "rules.json:3:", "guard_anchor_logic.mode", NULL);
    rules_fail(
        "{\n  \"zones\": {\"gate_area\": \"zones/ga.json\", \"guard_anchor\": \"zones/anchor.json\"},\n"
        "  \"classes\": {\"person\": [0, -1]}\n}\n",
        "rules.json:3:", "classes.person[1]", NULL);
    /* ids that would end up in SQL, topics and URLs */
    rules_fail(
        "{\n  \"gate_id\": \"x'; DROP TABLE events; --\",\n"
        "  \"zones\": {\"gate_area\": \"zones/ga.json\", \"guard_anchor\": \"zones/anchor.json\"}\n}\n",
        "rules.json:2:", "gate_id", NULL);
    rules_fail("{\n  \"gate_id\": \"a/b\",\n  \"zones\": {\"gate_area\": \"zones/ga.json\"}\n}\n", "gate_id",
               NULL, NULL);
    /* duplicate keys are ambiguous */
    rules_fail("{\n  \"gate_id\": \"a\",\n  \"gate_id\": \"b\",\n  \"zones\": {}\n}\n",
               "rules.json:3:", "duplicate", NULL);
    /* structure */
    rules_fail("[1, 2]\n", "must be an object", NULL, NULL);
    rules_fail("{\n  \"gate_id\": \"a\"\n}\n", "zones", "missing", NULL);
    rules_fail("{\n  \"zones\": {\"gate_area\": \"zones/ga.json\"}\n}\n", "guard_anchor", "either", NULL);
    rules_fail("{\n  \"zones\": {\"gate_area\": \"zones/anchor.json\", \"guard_anchor\": "
               "\"zones/anchor.json\"}\n}\n",
               "rules.json:2:", "zones.gate_area", "expected");
    rules_fail("{\n  \"zones\": {\"gate_area\": \"zones/missing.json\", \"guard_anchor\": "
               "\"zones/anchor.json\"}\n}\n",
               "missing.json", "zones.gate_area", NULL);
    rules_fail("{\n  \"zones\": {\"gate_area\": 7}\n}\n", "rules.json:2:", "zones.gate_area", NULL);
    rules_fail("", "rules.json:", NULL, NULL);

    /* a missing rules file */
    vx_gate_config cfg;
    assert_int_equal(vx_gate_config_load(tpath("nope.json"), &cfg, NULL), VX_ERR_IO);
}

static void test_zone_errors(void **state)
{
    (void)state;
    vx_gate_zone z;
    vx_gate_diag diag;
    /* self-intersecting: file, line, key */
    write_file("zones/bow.json", "{\n  \"zone_id\": \"bow\",\n  \"zone_type\": \"gate_area\",\n"
                                 "  \"polygon\": [[0, 0], [1, 1], [1, 0], [0, 1]]\n}\n");
    assert_int_equal(vx_gate_zone_load(tpath("zones/bow.json"), &z, &diag), VX_ERR_FORMAT);
    assert_non_null(strstr(vx_last_error(), "bow.json:4:"));
    assert_non_null(strstr(vx_last_error(), "polygon"));
    assert_non_null(strstr(vx_last_error(), "intersects itself"));
    assert_int_equal(diag.error.line, 4);
    assert_string_equal(diag.error.key, "polygon");
    /* the same through a rules file: the zone file is named */
    write_file(
        "rules.json",
        "{\n  \"zones\": {\"gate_area\": \"zones/bow.json\", \"guard_anchor\": \"zones/anchor.json\"}\n}\n");
    vx_gate_config cfg;
    assert_int_equal(vx_gate_config_load(tpath("rules.json"), &cfg, &diag), VX_ERR_FORMAT);
    assert_non_null(strstr(vx_last_error(), "bow.json:4:"));
    assert_non_null(strstr(diag.error.file, "bow.json"));
    /* fewer than 3 points */
    const char *two = "{\"zone_id\": \"z\", \"zone_type\": \"gate_area\",\n \"polygon\": [[0, 0], [1, 1]]}";
    assert_int_equal(vx_gate_zone_parse(two, strlen(two), "two.json", &z, &diag), VX_ERR_FORMAT);
    assert_non_null(strstr(vx_last_error(), "two.json:2:"));
    assert_non_null(strstr(vx_last_error(), "at least 3 points"));
    /* normalised coordinates above 1 */
    const char *big =
        "{\"zone_id\": \"z\", \"zone_type\": \"gate_area\",\n \"polygon\": [[0, 0], [1, 0],\n [1.5, 1]]}";
    assert_int_equal(vx_gate_zone_parse(big, strlen(big), "big.json", &z, &diag), VX_ERR_FORMAT);
    assert_non_null(strstr(vx_last_error(), "big.json:3:"));
    assert_non_null(strstr(vx_last_error(), "polygon[2]"));
    /* a point that is not a pair */
    const char *odd =
        "{\"zone_id\": \"z\", \"zone_type\": \"gate_area\", \"polygon\": [[0, 0], [1, 0], [1]]}";
    assert_int_equal(vx_gate_zone_parse(odd, strlen(odd), "odd.json", &z, &diag), VX_ERR_FORMAT);
    assert_non_null(strstr(vx_last_error(), "[x, y]"));
    /* zero area */
    const char *flat =
        "{\"zone_id\": \"z\", \"zone_type\": \"gate_area\", \"polygon\": [[0, 0], [0.5, 0.5], [1, 1]]}";
    assert_int_equal(vx_gate_zone_parse(flat, strlen(flat), "flat.json", &z, &diag), VX_ERR_FORMAT);
    /* wrong types */
    const char *nt = "{\"zone_id\": \"z\",\n \"zone_type\": \"gate_area\",\n \"normalized\": \"yes\",\n"
                     " \"polygon\": [[0, 0], [1, 0], [1, 1]]}";
    assert_int_equal(vx_gate_zone_parse(nt, strlen(nt), "nt.json", &z, &diag), VX_ERR_FORMAT);
    assert_non_null(strstr(vx_last_error(), "nt.json:3: normalized"));
    const char *ty = "{\"zone_id\": \"z\", \"zone_type\": \"door\", \"polygon\": [[0, 0], [1, 0], [1, 1]]}";
    assert_int_equal(vx_gate_zone_parse(ty, strlen(ty), "ty.json", &z, &diag), VX_ERR_FORMAT);
    assert_non_null(strstr(vx_last_error(), "zone_type"));
    /* unknown keys: warned, loaded */
    const char *unk = "{\"zone_id\": \"z\", \"zone_type\": \"gate_area\",\n \"colour\": \"red\",\n"
                      " \"polygon\": [[0, 0], [1, 0], [1, 1]]}";
    assert_int_equal(vx_gate_zone_parse(unk, strlen(unk), "unk.json", &z, &diag), VX_OK);
    assert_int_equal(diag.nwarnings, 1);
    assert_string_equal(diag.warnings[0].key, "colour");
    assert_int_equal(diag.warnings[0].line, 2);
    assert_true(z.normalized);
}

static void test_config_memory_and_swap(void **state)
{
    (void)state;
    /* inline zones, unknown keys at two levels, no_anchor without an anchor */
    const char *txt = "{\n"
                      "  \"gate_id\": \"inline\",\n"
                      "  \"zones\": {\"gate_area\": {\"zone_id\": \"ga\", \"zone_type\": \"gate_area\",\n"
                      "              \"polygon\": [[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]]}},\n"
                      "  \"guard_anchor_logic\": {\"mode\": \"no_anchor\"},\n"
                      "  \"timers\": {\"person_min_dwell_s\": 2, \"coffee_break_s\": 5},\n"
                      "  \"extra\": true\n"
                      "}\n";
    vx_gate_config cfg;
    vx_gate_diag diag;
    if (vx_gate_config_parse(txt, strlen(txt), "POST /gate/config", NULL, &cfg, &diag) != VX_OK)
        fail_msg("%s", vx_last_error());
    assert_int_equal(diag.nwarnings, 2);
    assert_string_equal(diag.warnings[0].key, "extra");
    assert_int_equal(diag.warnings[0].line, 7);
    assert_string_equal(diag.warnings[1].key, "timers.coffee_break_s");
    assert_int_equal(diag.warnings[1].line, 6);
    assert_false(cfg.has_guard_anchor);
    assert_int_equal(cfg.anchor_mode, VX_GATE_ANCHOR_NONE);
    /* an inline zone's error names the key path inside the document */
    const char *bad = "{\n  \"zones\": {\"gate_area\": {\"zone_id\": \"ga\", \"zone_type\": \"gate_area\",\n"
                      "     \"polygon\": [[0, 0], [1, 1], [1, 0], [0, 1]]}},\n"
                      "  \"guard_anchor_logic\": {\"mode\": \"no_anchor\"}\n}\n";
    assert_int_equal(vx_gate_config_parse(bad, strlen(bad), "body", NULL, &cfg, &diag), VX_ERR_FORMAT);
    assert_non_null(strstr(vx_last_error(), "body:3: zones.gate_area.polygon"));
    const char *notjson = "gate_id=1";
    assert_int_equal(vx_gate_config_parse(notjson, strlen(notjson), "body", NULL, &cfg, &diag),
                     VX_ERR_FORMAT);
    assert_int_equal(diag.error.line, 1);

    /* run-time swap: a bad config is refused and the running one stays */
    vx_gate_config run;
    scene_config(&run, VX_GATE_ANCHOR_EITHER);
    vx_gate *g = make_gate(&run);
    vx_gate_config broken = run;
    broken.threshold = 2.0;
    assert_int_equal(vx_gate_set_config(g, &broken), VX_ERR_INVALID);
    assert_non_null(strstr(vx_last_error(), "scoring.threshold"));
    broken = run;
    broken.gate_area.pts[1][0] = 700, broken.gate_area.pts[1][1] = 500; /* bow tie */
    broken.gate_area.pts[2][0] = 700, broken.gate_area.pts[2][1] = 200;
    assert_int_equal(vx_gate_set_config(g, &broken), VX_ERR_INVALID);
    vx_gate_config now;
    vx_gate_get_config(g, &now);
    assert_memory_equal(&now, &run, sizeof run);
    /* a good one is taken whole */
    vx_gate_config next = run;
    next.person_min_dwell_s = 1.0;
    snprintf(next.gate_id, sizeof next.gate_id, "g2");
    assert_int_equal(vx_gate_set_config(g, &next), VX_OK);
    vx_gate_get_config(g, &now);
    assert_memory_equal(&now, &next, sizeof next);
    vx_gate_destroy(g);
}

/* A document from outside (POST /gate/config) may name zone files next to
 * the rules only: an absolute path or a '..' component would let a client
 * probe any file the server can read.  The operator's own rules file may
 * name zones anywhere. */
static void test_config_paths_confined(void **state)
{
    (void)state;
    static const char *const refused[] = {"/etc/passwd", "../ga.json", "zones/../../etc/passwd", "..",
                                          "a/.."};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        char txt[512];
        snprintf(txt, sizeof txt,
                 "{\"zones\": {\"gate_area\": \"%s\"}, \"guard_anchor_logic\": {\"mode\": \"no_anchor\"}}",
                 refused[i]);
        vx_gate_config cfg;
        vx_gate_diag diag;
        assert_int_equal(vx_gate_config_parse(txt, strlen(txt), "body", tmpdir, &cfg, &diag), VX_ERR_FORMAT);
        print_message("  %s: %s\n", refused[i], vx_last_error());
        assert_non_null(strstr(vx_last_error(), "zones.gate_area"));
        assert_non_null(strstr(vx_last_error(), "relative"));
        assert_string_equal(diag.error.key, "zones.gate_area");
    }
    /* next to the rules: fine, and a name that merely starts with ".." too */
    write_file("zones/..ga.json", GOOD_GA);
    static const char *const taken[] = {"zones/ga.json", "./zones/ga.json", "zones/..ga.json"};
    for (size_t i = 0; i < sizeof taken / sizeof *taken; i++) {
        char txt[512];
        snprintf(txt, sizeof txt,
                 "{\"zones\": {\"gate_area\": \"%s\"}, \"guard_anchor_logic\": {\"mode\": \"no_anchor\"}}",
                 taken[i]);
        vx_gate_config cfg;
        if (vx_gate_config_parse(txt, strlen(txt), "body", tmpdir, &cfg, NULL) != VX_OK)
            fail_msg("%s: %s", taken[i], vx_last_error());
        assert_string_equal(cfg.gate_area.zone_id, "ga");
    }
    /* the operator's file: an absolute path is theirs to give */
    char txt[1024];
    snprintf(txt, sizeof txt,
             "{\"zones\": {\"gate_area\": \"%s\"}, \"guard_anchor_logic\": {\"mode\": \"no_anchor\"}}",
             tpath("zones/ga.json"));
    write_file("abs.json", txt);
    vx_gate_config cfg;
    if (vx_gate_config_load(tpath("abs.json"), &cfg, NULL) != VX_OK)
        fail_msg("%s", vx_last_error());
    assert_string_equal(cfg.gate_area.zone_id, "ga");
}

/* The key locator behind "file:line: key" messages reads whatever text
 * jansson accepted: a NUL byte after a number (jansson skips it) and
 * nesting deeper than the locator follows once sent it into an endless
 * loop (found by fuzz_gate; a POST body could hang the server). */
static void test_config_locate_odd_text(void **state)
{
    (void)state;
    vx_gate_config cfg;
    vx_gate_diag diag;
    static const char nul[] =
        "{\n  \"zones\": {\"gate_area\": {\"zone_id\": \"ga\", \"zone_type\": \"gate_area\",\n"
        "     \"polygon\": [[0.1, 0.1\0], [0.9, 0.1], [0.5, 0.9]]}},\n"
        "  \"guard_anchor_logic\": {\"mode\": \"no_anchor\"},\n"
        "  \"timers\": {\"session_timeout_s\": 0}\n}\n";
    assert_int_equal(vx_gate_config_parse(nul, sizeof nul - 1, "nul.json", NULL, &cfg, &diag), VX_ERR_FORMAT);
    assert_non_null(strstr(vx_last_error(), "nul.json:5: timers.session_timeout_s"));
    assert_int_equal(diag.error.line, 5);

    /* 70 levels of arrays under an unknown key, then an error: the line of
     * what follows the nest is not known, the key still is */
    char deep[512];
    int n = snprintf(deep, sizeof deep, "{\n  \"nest\": ");
    for (int i = 0; i < 70; i++)
        deep[n++] = '[';
    for (int i = 0; i < 70; i++)
        deep[n++] = ']';
    snprintf(deep + n, sizeof deep - (size_t)n,
             ",\n  \"zones\": {\"gate_area\": {\"zone_id\": \"ga\", \"zone_type\": \"gate_area\",\n"
             "     \"polygon\": [[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]]}},\n"
             "  \"guard_anchor_logic\": {\"mode\": \"no_anchor\"},\n"
             "  \"timers\": {\"session_timeout_s\": 0}\n}\n");
    assert_int_equal(vx_gate_config_parse(deep, strlen(deep), "deep.json", NULL, &cfg, &diag), VX_ERR_FORMAT);
    assert_non_null(strstr(vx_last_error(), "deep.json: timers.session_timeout_s"));
    assert_int_equal(diag.error.line, 0);
    assert_int_equal(diag.nwarnings, 1);
    assert_string_equal(diag.warnings[0].key, "nest");
    assert_int_equal(diag.warnings[0].line, 2);
}

/* A config read from a document and the config its JSON form reads back to
 * are the same (vx_gate.h's promise, and what POST /gate/config saves): the
 * parsers keep the 15 digits the JSON form writes, and a description too
 * long for the config is cut between characters, not inside one. */
static void round_trip(const char *txt, vx_gate_config *cfg)
{
    if (vx_gate_config_parse(txt, strlen(txt), "doc", NULL, cfg, NULL) != VX_OK)
        fail_msg("%s", vx_last_error());
    char *js = vx_gate_config_json(cfg);
    assert_non_null(js);
    vx_gate_config back;
    if (vx_gate_config_parse(js, strlen(js), "json", NULL, &back, NULL) != VX_OK)
        fail_msg("%s\n%s", vx_last_error(), js);
    free(js);
    assert_memory_equal(cfg, &back, sizeof back);
}

static void test_config_json_round_trip_exact(void **state)
{
    (void)state;
    vx_gate_config cfg;
    /* 17 digits: kept as 15 */
    round_trip("{\"zones\": {\"gate_area\": {\"zone_id\": \"ga\", \"zone_type\": \"gate_area\",\n"
               "  \"polygon\": [[0.1, 0.1], [0.9, 0.1], [0.123456789012345678, 0.9]]}},\n"
               " \"guard_anchor_logic\": {\"mode\": \"no_anchor\"},\n"
               " \"timers\": {\"person_min_dwell_s\": 0.12345678901234567}}",
               &cfg);
    assert_true(cfg.person_min_dwell_s == 0.123456789012346);
    assert_true(cfg.gate_area.pts[2][0] == 0.123456789012346);
    /* two points one ulp apart are one point in the JSON form: refused
     * (accepted, the saved rules would not load again) */
    const char *ulp = "{\"zones\": {\"gate_area\": {\"zone_id\": \"ga\", \"zone_type\": \"gate_area\",\n"
                      "  \"polygon\": [[0, 0], [0.5, 0.5], [0.5000000000000001, 0.5], [1, 0]]}},\n"
                      " \"guard_anchor_logic\": {\"mode\": \"no_anchor\"}}";
    vx_gate_diag diag;
    assert_int_equal(vx_gate_config_parse(ulp, strlen(ulp), "ulp", NULL, &cfg, &diag), VX_ERR_FORMAT);
    assert_string_equal(diag.error.key, "zones.gate_area.polygon");
    /* 250 ASCII bytes and ten 2-byte characters: cut to 250 + 2 of them */
    char doc[1024];
    int n = snprintf(doc, sizeof doc,
                     "{\"zones\": {\"gate_area\": {\"zone_id\": \"ga\", \"zone_type\": "
                     "\"gate_area\", \"description\": \"");
    for (int i = 0; i < 250; i++)
        doc[n++] = 'x';
    for (int i = 0; i < 10; i++)
        doc[n++] = (char)0xc3, doc[n++] = (char)0xa9; /* U+00E9 */
    snprintf(doc + n, sizeof doc - (size_t)n,
             "\", \"polygon\": [[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]]}},"
             " \"guard_anchor_logic\": {\"mode\": \"no_anchor\"}}");
    round_trip(doc, &cfg);
    assert_int_equal(strlen(cfg.gate_area.description), 254);
    assert_memory_equal(cfg.gate_area.description + 250, "\xc3\xa9\xc3\xa9", 4);
}

int main(void)
{
    const struct CMUnitTest engine[] = {
        cmocka_unit_test(test_check_completed),
        cmocka_unit_test(test_fail_no_guard),
        cmocka_unit_test(test_fail_no_contact),
        cmocka_unit_test(test_fail_too_short),
        cmocka_unit_test(test_fail_timeout),
        cmocka_unit_test(test_hysteresis),
        cmocka_unit_test(test_jitter),
        cmocka_unit_test(test_min_box_height),
        cmocka_unit_test(test_mode_either),
        cmocka_unit_test(test_mode_strict_anchor),
        cmocka_unit_test(test_mode_no_anchor),
        cmocka_unit_test(test_pose_hook_and_score),
        cmocka_unit_test(test_deterministic_and_json),
        cmocka_unit_test(test_reset_and_discontinuity),
        cmocka_unit_test(test_config_swap_at_run_time),
        cmocka_unit_test(test_polygons),
    };
    const struct CMUnitTest config[] = {
        cmocka_unit_test(test_config_good_and_defaults),
        cmocka_unit_test(test_config_repo_example),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_zone_errors),
        cmocka_unit_test(test_config_memory_and_swap),
        cmocka_unit_test(test_config_locate_odd_text),
        cmocka_unit_test(test_config_json_round_trip_exact),
        cmocka_unit_test(test_config_paths_confined),
    };
    int fails = cmocka_run_group_tests_name("gate engine", engine, NULL, NULL);
    fails += cmocka_run_group_tests_name("gate config", config, setup_dir, teardown_dir);
    return fails;
}
