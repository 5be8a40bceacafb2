/*
 * track/: the linear assignment against brute force, and the tracker on
 * synthetic trajectories with known identities: crossing paths, occlusion
 * gaps up to and past max_missed, noisy boxes, low-confidence stretches,
 * skipped frames, many short-lived objects.  Every reported track that is
 * matched to a detection is mapped back to the ground-truth object that
 * produced it, so id switches and id reuse are counted, not guessed.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "track/vx_track.h"

/* ---- deterministic noise ---------------------------------------------------- */

static uint64_t rng_state = 88172645463325252ull;

static double urand(void) /* [0,1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static double nrand(void)
{
    double u1 = urand() + 1e-12, u2 = urand();
    return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

/* ---- assignment -------------------------------------------------------------- */

/* Best total over all partial matchings of rows to columns, with unmatched
 * rows and columns costing limit/2 each, pairs allowed only below limit. */
static double brute(const double *c, int nr, int nc, double limit, int row, unsigned used)
{
    if (row == nr) {
        int unused = nc - __builtin_popcount(used);
        return unused * limit * 0.5;
    }
    double best = limit * 0.5 + brute(c, nr, nc, limit, row + 1, used);
    for (int j = 0; j < nc; j++) {
        if (used & (1u << j))
            continue;
        double v = c[row * nc + j];
        if (!(v < limit))
            continue;
        double r = v + brute(c, nr, nc, limit, row + 1, used | (1u << j));
        if (r < best)
            best = r;
    }
    return best;
}

static double total(const double *c, int nr, int nc, double limit, const int *r2c)
{
    double s = 0;
    int matched_cols = 0;
    for (int i = 0; i < nr; i++) {
        if (r2c[i] < 0) {
            s += limit * 0.5;
        } else {
            s += c[i * nc + r2c[i]];
            matched_cols++;
        }
    }
    return s + (nc - matched_cols) * limit * 0.5;
}

static void test_assign_matches_brute_force(void **state)
{
    (void)state;
    for (int trial = 0; trial < 400; trial++) {
        int nr = 1 + (int)(urand() * 6), nc = 1 + (int)(urand() * 6);
        double c[36];
        for (int k = 0; k < nr * nc; k++)
            c[k] = urand() < 0.15 ? INFINITY : urand();
        double limit = 0.2 + urand() * 0.9;
        int r2c[6], c2r[6];
        assert_int_equal(vx_track_assign(c, nr, nc, limit, r2c, c2r), VX_OK);
        /* consistency */
        for (int i = 0; i < nr; i++) {
            if (r2c[i] >= 0) {
                assert_true(r2c[i] < nc);
                assert_int_equal(c2r[r2c[i]], i);
                assert_true(c[i * nc + r2c[i]] < limit);
            }
        }
        for (int j = 0; j < nc; j++)
            if (c2r[j] >= 0)
                assert_int_equal(r2c[c2r[j]], j);
        double got = total(c, nr, nc, limit, r2c), want = brute(c, nr, nc, limit, 0, 0);
        if (fabs(got - want) > 1e-9)
            fail_msg("trial %d (%dx%d, limit %.3f): total %.6f, optimum %.6f", trial, nr, nc, limit, got,
                     want);
    }
}

static void test_assign_prefers_global_optimum(void **state)
{
    (void)state;
    /* greedy would take (0,0)=0.1 and leave row 1 with 0.95 (rejected at 0.8);
     * the optimum matches both rows crosswise */
    double c[4] = {0.1, 0.3, 0.35, 0.95};
    int r2c[2];
    assert_int_equal(vx_track_assign(c, 2, 2, 0.8, r2c, NULL), VX_OK);
    assert_int_equal(r2c[0], 1);
    assert_int_equal(r2c[1], 0);
    /* nothing below the limit: nothing matched */
    double d[2] = {0.9, 0.99};
    assert_int_equal(vx_track_assign(d, 1, 2, 0.8, r2c, NULL), VX_OK);
    assert_int_equal(r2c[0], -1);
    /* empty sides */
    assert_int_equal(vx_track_assign(NULL, 0, 3, 0.8, r2c, NULL), VX_OK);
}

/* ---- simulation -------------------------------------------------------------- */

#define MAXOBJ 64
#define MAXID 4096

typedef struct {
    int start, end; /* frames [start, end) */
    double x0, y0;  /* centre at start */
    double vx, vy;  /* pixels per frame */
    double w, h;
    int hide_from, hide_to; /* frames [from, to) without detection */
    int lowconf_from, lowconf_to;
    int cls;
} gt_obj;

typedef struct {
    int nobj;
    gt_obj obj[MAXOBJ];
    double noise;   /* sigma of box edge noise, pixels */
    double dt;      /* seconds per frame */
    int skip_every; /* drop every n-th frame entirely (0: none) */
} scenario;

typedef struct {
    int frames_with_output[MAXOBJ]; /* frames where the object's detection was tracked */
    uint32_t first_id[MAXOBJ];
    int id_switches;           /* object seen with an id different from its previous one */
    int id_reuse;              /* an id seen on two different objects */
    int owner[MAXID];          /* id -> object + 1 */
    int confirm_frame[MAXOBJ]; /* index within the object's life when it was first reported */
    uint32_t last_id[MAXOBJ];
    uint32_t max_id;
} sim_result;

static void run_scenario(const scenario *s, const vx_track_opts *opts, int nframes, sim_result *r)
{
    memset(r, 0, sizeof *r);
    for (int i = 0; i < MAXOBJ; i++)
        r->confirm_frame[i] = -1;
    vx_tracker *tr;
    assert_int_equal(vx_tracker_create(opts, &tr), VX_OK);
    vx_track_det dets[MAXOBJ];
    int det_obj[MAXOBJ];
    vx_track out[MAXOBJ];
    for (int f = 0; f < nframes; f++) {
        if (s->skip_every && f % s->skip_every == s->skip_every - 1)
            continue;
        int nd = 0;
        for (int o = 0; o < s->nobj; o++) {
            const gt_obj *g = &s->obj[o];
            if (f < g->start || f >= g->end)
                continue;
            if (f >= g->hide_from && f < g->hide_to)
                continue;
            double k = f - g->start;
            double cx = g->x0 + g->vx * k, cy = g->y0 + g->vy * k;
            vx_track_det *d = &dets[nd];
            d->x1 = (float)(cx - g->w / 2 + s->noise * nrand());
            d->x2 = (float)(cx + g->w / 2 + s->noise * nrand());
            d->y1 = (float)(cy - g->h / 2 + s->noise * nrand());
            d->y2 = (float)(cy + g->h / 2 + s->noise * nrand());
            d->conf = (f >= g->lowconf_from && f < g->lowconf_to) ? 0.3f : (float)(0.75 + 0.2 * urand());
            d->cls = g->cls;
            det_obj[nd] = o;
            nd++;
        }
        /* present detections in a scrambled order: the tracker must not care */
        for (int i = nd - 1; i > 0; i--) {
            int j = (int)(urand() * (i + 1));
            vx_track_det td = dets[i];
            dets[i] = dets[j];
            dets[j] = td;
            int to = det_obj[i];
            det_obj[i] = det_obj[j];
            det_obj[j] = to;
        }
        int n = 0;
        assert_int_equal(vx_tracker_update(tr, dets, nd, f * s->dt, out, MAXOBJ, &n), VX_OK);
        for (int i = 0; i < n; i++) {
            assert_true(out[i].id > 0 && out[i].id < MAXID);
            if (i > 0)
                assert_true(out[i].id > out[i - 1].id);
            if (out[i].id > r->max_id)
                r->max_id = out[i].id;
            if (out[i].det_index < 0) {
                assert_true(out[i].missed > 0);
                continue;
            }
            assert_int_equal(out[i].missed, 0);
            assert_true(out[i].det_index < nd);
            int o = det_obj[out[i].det_index];
            uint32_t id = out[i].id;
            if (r->owner[id] == 0)
                r->owner[id] = o + 1;
            else if (r->owner[id] != o + 1)
                r->id_reuse++;
            if (r->last_id[o] && r->last_id[o] != id)
                r->id_switches++;
            if (!r->first_id[o]) {
                r->first_id[o] = id;
                r->confirm_frame[o] = f - s->obj[o].start;
            }
            r->last_id[o] = id;
            r->frames_with_output[o]++;
        }
    }
    vx_tracker_destroy(tr);
}

static gt_obj walker(int start, int end, double x0, double y0, double vx, double vy)
{
    gt_obj g = {start, end, x0, y0, vx, vy, 60, 150, -1, -1, -1, -1, 0};
    return g;
}

static void test_confirmed_after_three_hits(void **state)
{
    (void)state;
    vx_tracker *tr;
    assert_int_equal(vx_tracker_create(NULL, &tr), VX_OK);
    vx_track out[4];
    int n;
    for (int f = 0; f < 5; f++) {
        vx_track_det d = {100.f + 4 * f, 100, 160.f + 4 * f, 250, 0.9f, 0};
        assert_int_equal(vx_tracker_update(tr, &d, 1, f * 0.1, out, 4, &n), VX_OK);
        if (f < 2) {
            assert_int_equal(n, 0); /* tentative tracks are not reported */
        } else {
            assert_int_equal(n, 1);
            assert_int_equal(out[0].id, 1);
            assert_int_equal(out[0].hits, f + 1);
            assert_int_equal(out[0].det_index, 0);
            assert_float_equal(out[0].x1, 100.f + 4 * f, 1e-4);
        }
    }
    /* the boxes from before the confirmation are kept: oldest first */
    vx_track_sample hs[VX_TRACK_HIST];
    int nh = vx_tracker_history(tr, 1, hs, VX_TRACK_HIST);
    assert_int_equal(nh, 5);
    for (int f = 0; f < 5; f++) {
        assert_float_equal(hs[f].t, f * 0.1, 1e-12);
        assert_float_equal(hs[f].box[0], 100.f + 4 * f, 1e-4);
    }
    assert_int_equal(vx_tracker_history(tr, 1, hs, 2), 2);
    assert_float_equal(hs[1].t, 0.4, 1e-12); /* the two newest */
    assert_int_equal(vx_tracker_history(tr, 7, hs, VX_TRACK_HIST), 0);
    /* velocity estimate: 4 px per 0.1 s = 40 px/s */
    assert_true(out[0].vx > 20 && out[0].vx < 60);
    assert_int_equal(vx_tracker_last_id(tr), 1);
    /* a tentative track that misses a frame is gone: a one-frame blip
     * twice never becomes a track */
    vx_track_det blip = {500, 100, 560, 250, 0.9f, 0};
    vx_track_det both[2] = {{120, 100, 180, 250, 0.9f, 0}, blip};
    assert_int_equal(vx_tracker_update(tr, both, 2, 0.5, out, 4, &n), VX_OK);
    vx_track_det one = {124, 100, 184, 250, 0.9f, 0};
    assert_int_equal(vx_tracker_update(tr, &one, 1, 0.6, out, 4, &n), VX_OK);
    assert_int_equal(vx_tracker_update(tr, both, 2, 0.7, out, 4, &n), VX_OK);
    assert_int_equal(vx_tracker_update(tr, &one, 1, 0.8, out, 4, &n), VX_OK);
    assert_int_equal(n, 1);
    assert_int_equal(vx_tracker_last_id(tr), 1);
    /* time must not go backwards */
    assert_int_equal(vx_tracker_update(tr, &one, 1, 0.7, out, 4, &n), VX_ERR_INVALID);
    assert_non_null(strstr(vx_last_error(), "before"));
    vx_tracker_destroy(tr);
}

static void test_crossing_paths_keep_ids(void **state)
{
    (void)state;
    scenario s = {.nobj = 2, .noise = 1.0, .dt = 0.1};
    /* two people walking towards each other, one slightly lower in the image:
     * their boxes overlap almost fully when they pass */
    s.obj[0] = walker(0, 80, 100, 300, 6, 0);
    s.obj[1] = walker(0, 80, 580, 315, -6, 0);
    sim_result r;
    run_scenario(&s, NULL, 80, &r);
    assert_int_equal(r.id_switches, 0);
    assert_int_equal(r.id_reuse, 0);
    assert_int_not_equal(r.first_id[0], r.first_id[1]);
    assert_int_equal(r.max_id, 2);
    /* confirmed at the third frame, tracked on every frame after */
    assert_int_equal(r.confirm_frame[0], 2);
    assert_int_equal(r.frames_with_output[0], 78);
    assert_int_equal(r.frames_with_output[1], 78);

    /* diagonal crossing, also with skipped frames */
    scenario d = {.nobj = 2, .noise = 1.5, .dt = 0.1, .skip_every = 4};
    d.obj[0] = walker(0, 90, 100, 150, 5, 3);
    d.obj[1] = walker(0, 90, 550, 160, -5, 3.2);
    run_scenario(&d, NULL, 90, &r);
    assert_int_equal(r.id_switches, 0);
    assert_int_equal(r.id_reuse, 0);
    assert_int_equal(r.max_id, 2);
}

static void test_occlusion_gaps(void **state)
{
    (void)state;
    /* hidden for exactly max_missed (30) frames: same id afterwards */
    for (int gap = 1; gap <= 30; gap += 29) {
        scenario s = {.nobj = 1, .noise = 0.5, .dt = 0.1};
        s.obj[0] = walker(0, 120, 80, 300, 3, 0);
        s.obj[0].hide_from = 40;
        s.obj[0].hide_to = 40 + gap;
        sim_result r;
        run_scenario(&s, NULL, 120, &r);
        if (r.id_switches != 0 || r.max_id != 1)
            fail_msg("gap %d: %d id switches, %u ids", gap, r.id_switches, r.max_id);
        assert_int_equal(r.frames_with_output[0], 120 - 2 - gap);
    }
    /* hidden for 31 frames: the track was dropped, the object gets a new id
     * (and the old id is never given to anyone) */
    scenario s = {.nobj = 1, .noise = 0.5, .dt = 0.1};
    s.obj[0] = walker(0, 120, 80, 300, 3, 0);
    s.obj[0].hide_from = 40;
    s.obj[0].hide_to = 71;
    sim_result r;
    run_scenario(&s, NULL, 120, &r);
    assert_int_equal(r.id_switches, 1);
    assert_int_equal(r.max_id, 2);
    assert_int_equal(r.id_reuse, 0);

    /* someone walks up, stops behind an occluder for 25 frames and steps
     * out where they stood: the filter's velocity still says "walking",
     * the last seen box says "here" */
    scenario st = {.nobj = 2, .noise = 0.5, .dt = 0.1};
    st.obj[0] = walker(0, 30, 80, 300, 8, 0);    /* walks to x = 312 ... */
    st.obj[1] = walker(30, 100, 320, 300, 0, 0); /* ... and stands there */
    st.obj[1].hide_from = 30;
    st.obj[1].hide_to = 55;
    run_scenario(&st, NULL, 100, &r);
    assert_int_equal(r.max_id, 1);
    assert_int_equal(r.first_id[1], r.first_id[0]);

    /* an occlusion while another person walks past the hidden one */
    scenario t = {.nobj = 2, .noise = 1.0, .dt = 0.1};
    t.obj[0] = walker(0, 100, 300, 300, 1, 0); /* slow */
    t.obj[0].hide_from = 30;
    t.obj[0].hide_to = 55;
    t.obj[1] = walker(0, 100, 40, 330, 6, 0);
    run_scenario(&t, NULL, 100, &r);
    assert_int_equal(r.id_switches, 0);
    assert_int_equal(r.id_reuse, 0);
    assert_int_equal(r.max_id, 2);
}

static void test_noisy_boxes(void **state)
{
    (void)state;
    scenario s = {.nobj = 4, .noise = 4.0, .dt = 0.1};
    s.obj[0] = walker(0, 200, 60, 200, 2.5, 0.3);
    s.obj[1] = walker(10, 200, 700, 300, -2.0, 0.2); /* passes obj 0, 80 px lower */
    s.obj[2] = walker(20, 180, 300, 420, 0.5, -0.5);
    s.obj[3] = walker(0, 200, 450, 100, 0, 0); /* standing */
    sim_result r;
    run_scenario(&s, NULL, 200, &r);
    if (r.id_switches || r.id_reuse || r.max_id != 4)
        fail_msg("%d switches, %d reused, %u ids for 4 objects", r.id_switches, r.id_reuse, r.max_id);
    for (int o = 0; o < 4; o++)
        assert_true(r.frames_with_output[o] >= (s.obj[o].end - s.obj[o].start) - 2 - 3);
}

static void test_low_confidence_frames(void **state)
{
    (void)state;
    /* a person whose detection confidence drops to 0.3 for 15 frames: the
     * second association keeps the track matched, nothing new starts */
    scenario s = {.nobj = 1, .noise = 1.0, .dt = 0.1};
    s.obj[0] = walker(0, 80, 100, 300, 3, 0);
    s.obj[0].lowconf_from = 20;
    s.obj[0].lowconf_to = 35;
    sim_result r;
    run_scenario(&s, NULL, 80, &r);
    assert_int_equal(r.id_switches, 0);
    assert_int_equal(r.max_id, 1);
    assert_int_equal(r.frames_with_output[0], 78); /* matched on the low frames too */

    /* an object that only ever has low-confidence boxes never becomes a track */
    scenario l = {.nobj = 1, .noise = 1.0, .dt = 0.1};
    l.obj[0] = walker(0, 50, 100, 300, 3, 0);
    l.obj[0].lowconf_from = 0;
    l.obj[0].lowconf_to = 50;
    run_scenario(&l, NULL, 50, &r);
    assert_int_equal(r.max_id, 0);
}

static void test_ids_never_reused(void **state)
{
    (void)state;
    /* 60 short-lived walkers in four lanes, 8 to 12 at a time, each lane
     * reusing the same ground every 24 frames while the tracks of earlier
     * walkers are still alive or coasting: every id belongs to exactly one
     * object */
    scenario s = {.nobj = 60, .noise = 1.5, .dt = 0.04};
    for (int i = 0; i < 60; i++) {
        int start = i * 6;
        double y = 90 + (i % 4) * 160;
        s.obj[i] = walker(start, start + 40 + (i % 7) * 3, 60, y, 7, 0);
    }
    sim_result r;
    run_scenario(&s, NULL, 420, &r);
    assert_int_equal(r.id_reuse, 0);
    assert_int_equal(r.id_switches, 0);
    assert_int_equal(r.max_id, 60);

    /* reset keeps counting */
    vx_tracker *tr;
    assert_int_equal(vx_tracker_create(NULL, &tr), VX_OK);
    vx_track out[2];
    int n = 0;
    for (int round = 0; round < 2; round++) {
        for (int f = 0; f < 3; f++) {
            vx_track_det d = {100, 100, 150, 220, 0.9f, 0};
            assert_int_equal(vx_tracker_update(tr, &d, 1, f * 0.1, out, 2, &n), VX_OK);
        }
        assert_int_equal(n, 1);
        assert_int_equal(out[0].id, (uint32_t)(round + 1));
        vx_tracker_reset(tr);
        assert_int_equal(vx_tracker_size(tr), 0);
    }
    vx_tracker_destroy(tr);
}

static void test_class_aware_and_bad_input(void **state)
{
    (void)state;
    vx_tracker *tr;
    assert_int_equal(vx_tracker_create(NULL, &tr), VX_OK);
    vx_track out[4];
    int n;
    for (int f = 0; f < 4; f++) {
        vx_track_det d = {100, 100, 150, 220, 0.9f, 0};
        assert_int_equal(vx_tracker_update(tr, &d, 1, f * 0.1, out, 4, &n), VX_OK);
    }
    /* the same box as another class: not the same track */
    vx_track_det other = {100, 100, 150, 220, 0.9f, 2};
    assert_int_equal(vx_tracker_update(tr, &other, 1, 0.4, out, 4, &n), VX_OK);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].missed, 1);
    assert_int_equal(out[0].det_index, -1);
    /* garbage boxes are ignored, not tracked, not crashing */
    vx_track_det bad[3] = {
        {NAN, 0, 10, 10, 0.9f, 0}, {50, 50, 40, 60, 0.9f, 0}, {0, 0, 10, INFINITY, 0.9f, 0}};
    assert_int_equal(vx_tracker_update(tr, bad, 3, 0.5, out, 4, &n), VX_OK);
    assert_int_equal(vx_tracker_size(tr), 1); /* the tentative class-2 track missed: gone */
    assert_int_equal(vx_tracker_update(tr, NULL, -1, 0.6, out, 4, &n), VX_ERR_INVALID);
    assert_int_equal(vx_tracker_update(tr, NULL, 0, NAN, out, 4, &n), VX_ERR_INVALID);
    vx_tracker_destroy(tr);

    vx_track_opts o;
    vx_track_opts_default(&o);
    o.low_thresh = 0.8f;
    assert_int_equal(vx_track_opts_validate(&o), VX_ERR_INVALID);
    assert_int_equal(vx_tracker_create(&o, &tr), VX_ERR_INVALID);
    vx_track_opts_default(&o);
    o.confirm_hits = 0;
    assert_int_equal(vx_track_opts_validate(&o), VX_ERR_INVALID);
}

static void test_deterministic(void **state)
{
    (void)state;
    scenario s = {.nobj = 6, .noise = 3.0, .dt = 0.1};
    for (int i = 0; i < 6; i++)
        s.obj[i] = walker(i * 5, 150, 60 + i * 110, 100 + i * 60, (i % 2 ? -3 : 3), 1);
    sim_result a, b;
    uint64_t seed = rng_state;
    run_scenario(&s, NULL, 150, &a);
    rng_state = seed;
    run_scenario(&s, NULL, 150, &b);
    assert_memory_equal(&a, &b, sizeof a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_assign_matches_brute_force),
        cmocka_unit_test(test_assign_prefers_global_optimum),
        cmocka_unit_test(test_confirmed_after_three_hits),
        cmocka_unit_test(test_crossing_paths_keep_ids),
        cmocka_unit_test(test_occlusion_gaps),
        cmocka_unit_test(test_noisy_boxes),
        cmocka_unit_test(test_low_confidence_frames),
        cmocka_unit_test(test_ids_never_reused),
        cmocka_unit_test(test_class_aware_and_bad_input),
        cmocka_unit_test(test_deterministic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
