/*
 * pipeline/gate_stage: the pipeline's gate step without video.  A person's
 * boxes walk across a frame through a gate band (no guard anywhere), frame
 * by frame on a 10 fps stream clock.  The stage must return, per frame, the
 * gate part of the gate_check message, with every event it carries already
 * in the store (its event_id is the row id), the session opened on entry
 * and closed by the verdict (no_guard), and nothing sent that is not
 * stored.  A stream clock that jumps back (a looped file) closes the open
 * session as abandoned, and so does a visitor's promotion to guard (mode
 * `either`), in the frame it happens.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "pipeline/pipeline_internal.h"

#define W 768
#define H 576

/* A normalised axis-aligned rectangle [x0, x1] x [y0, y1] as a zone. */
static void rect_zone(vx_gate_zone *z, const char *id, vx_gate_zone_type type, double x0, double x1,
                      double y0, double y1)
{
    snprintf(z->zone_id, sizeof z->zone_id, "%s", id);
    z->type = type;
    z->normalized = 1;
    z->npoints = 4;
    double pts[4][2] = {{x0, y0}, {x1, y0}, {x1, y1}, {x0, y1}};
    memcpy(z->pts, pts, sizeof pts);
}

static void config(vx_gate_config *cfg)
{
    vx_gate_config_default(cfg);
    snprintf(cfg->gate_id, sizeof cfg->gate_id, "test-gate");
    rect_zone(&cfg->gate_area, "band", VX_GATE_ZONE_GATE_AREA, 0.4, 0.6, 0.0, 1.0);
    cfg->anchor_mode = VX_GATE_ANCHOR_NONE;
    cfg->has_guard_anchor = 0;
    if (vx_gate_config_validate(cfg) != VX_OK)
        fail_msg("%s", vx_last_error());
}

/* The person at frame i: 120 px tall, walking right at 60 px/s from x=100. */
static vx_pipeline_det person(int i)
{
    float x = 100.0f + 6.0f * (float)i;
    return (vx_pipeline_det){x, 300.0f, x + 50.0f, 420.0f, 0.9f, 0, "person"};
}

typedef struct {
    char dir[64];
    vx_store *store;
    vx_gate_stage *stage;
} fixture;

static int setup_mode(void **state, int either)
{
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/vx_gstage_XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    char path[128];
    snprintf(path, sizeof path, "%s/gate.db", f->dir);
    if (vx_store_open(path, &f->store) != VX_OK)
        return -1;
    vx_gate_config cfg;
    config(&cfg);
    if (either) {
        /* A guard anchor in the top-left corner, away from everyone's path. */
        rect_zone(&cfg.guard_anchor, "post", VX_GATE_ZONE_GUARD_ANCHOR, 0.0, 0.1, 0.0, 0.1);
        cfg.has_guard_anchor = 1;
        cfg.anchor_mode = VX_GATE_ANCHOR_EITHER;
        if (vx_gate_config_validate(&cfg) != VX_OK)
            fail_msg("%s", vx_last_error());
    }
    if (vx_gate_stage_create(&cfg, f->store, NULL, "cam-1", &f->stage) != VX_OK)
        return -1;
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_mode(state, 0);
}

static int setup_either(void **state)
{
    return setup_mode(state, 1);
}

static int teardown(void **state)
{
    fixture *f = *state;
    vx_gate_stage_destroy(f->stage);
    vx_store_close(f->store);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f);
    return rc;
}

/* Runs frame i at stream time t; returns the parsed gate part. */
static json_t *frame(fixture *f, int i, double t, int with_person)
{
    vx_pipeline_det d = person(i);
    char *text = vx_gate_stage_run(f->stage, &d, with_person ? 1 : 0, W, H, t, 1.8e9 + t);
    assert_non_null(text);
    json_t *j = json_loads(text, 0, NULL);
    free(text);
    assert_non_null(j);
    for (const char *k = "decisions\0stats\0events\0gate_id\0stream_time\0"; *k; k += strlen(k) + 1)
        if (!json_object_get(j, k))
            fail_msg("gate part without '%s'", k);
    assert_string_equal(json_string_value(json_object_get(j, "gate_id")), "test-gate");
    return j;
}

static void test_walk_through(void **state)
{
    fixture *f = *state;
    json_t *seen = json_array();
    /* 130 frames: in the band (x 307..461 for the feet) from about frame 26
     * to 52, then out; the engine's verdict comes on leaving. */
    for (int i = 0; i < 130; i++) {
        json_t *j = frame(f, i, i * 0.1, 1);
        json_t *evs = json_object_get(j, "events");
        size_t k;
        json_t *e;
        json_array_foreach(evs, k, e)
        {
            json_int_t id = json_integer_value(json_object_get(e, "event_id"));
            assert_true(id > 0);
            /* Stored before it was returned: its session lists it. */
            const char *sid = json_string_value(json_object_get(e, "session_id"));
            if (sid && *sid) {
                json_t *sess = NULL, *stored = NULL;
                assert_int_equal(vx_store_session_get(f->store, sid, &sess, &stored), VX_OK);
                int found = 0;
                size_t m;
                json_t *x;
                json_array_foreach(stored, m, x) found |=
                    json_integer_value(json_object_get(x, "event_id")) == id;
                assert_true(found);
                json_decref(sess);
                json_decref(stored);
            }
            json_array_append(seen, e);
        }
        json_decref(j);
    }
    /* entered, left, check_failed (no_guard), in that order. */
    const char *want[] = {"person_entered_gate_area", "person_left_gate_area", "check_failed"};
    size_t n = json_array_size(seen);
    if (n != 3) {
        char *dump = json_dumps(seen, JSON_COMPACT);
        fail_msg("expected 3 events, got %zu: %s", n, dump);
    }
    int has_failed = 0;
    for (size_t i = 0; i < n; i++) {
        const char *type = json_string_value(json_object_get(json_array_get(seen, i), "type"));
        assert_string_equal(type, want[i]);
        has_failed |= !strcmp(type, "check_failed");
    }
    assert_true(has_failed);
    assert_int_equal(vx_store_count(f->store, "events"), 3);
    assert_int_equal(vx_store_count(f->store, "completions"), 0); /* failures are sessions, not completions */
    const char *sid = json_string_value(json_object_get(json_array_get(seen, 0), "session_id"));
    json_t *sess = NULL, *evs = NULL;
    assert_int_equal(vx_store_session_get(f->store, sid, &sess, &evs), VX_OK);
    assert_string_equal(json_string_value(json_object_get(sess, "state")), "failed");
    assert_string_equal(json_string_value(json_object_get(sess, "reason")), "no_guard");
    assert_string_equal(json_string_value(json_object_get(sess, "source")), "cam-1");
    assert_int_equal(json_array_size(evs), 3);
    /* The completion record (the verdict's timeline) is the session's summary. */
    assert_true(json_is_array(json_object_get(json_object_get(sess, "summary"), "timeline")));
    json_decref(sess);
    json_decref(evs);
    vx_store_stats st;
    assert_int_equal(vx_store_stats_get(f->store, 0, 0, &st), VX_OK);
    assert_int_equal(st.failed, 1);
    assert_int_equal(st.open_sessions, 0);
    json_t *state_j = vx_gate_stage_state(f->stage);
    assert_non_null(json_object_get(state_j, "persons"));
    json_decref(state_j);
    json_decref(seen);
}

/* Inside the band, then the clock jumps back: the open session is closed. */
static void test_clock_jumps_back(void **state)
{
    fixture *f = *state;
    int opened = 0;
    for (int i = 0; i < 45; i++) {
        json_t *j = frame(f, i, 100 + i * 0.1, 1);
        opened += (int)json_array_size(json_object_get(j, "events"));
        json_decref(j);
    }
    assert_int_equal(opened, 1); /* entered */
    vx_store_stats st;
    assert_int_equal(vx_store_stats_get(f->store, 0, 0, &st), VX_OK);
    assert_int_equal(st.open_sessions, 1);
    json_decref(frame(f, 0, 1.0, 1));
    assert_int_equal(vx_store_stats_get(f->store, 0, 0, &st), VX_OK);
    assert_int_equal(st.open_sessions, 0);
    assert_int_equal(st.total_checks, 0); /* abandoned is not a check */
}

/* Mode `either`: A walks into the band and waits there; when B walks in
 * 8 s later, A is the guard.  A's visitor session ends in that very frame
 * (abandoned, promoted_to_guard), not a session timeout later. */
static void test_promoted_visitor_closed(void **state)
{
    fixture *f = *state;
    const char *a_sid = NULL;
    json_t *a_entered = NULL;
    int promoted_at = -1;
    for (int i = 0; i < 140 && promoted_at < 0; i++) {
        float ax = 100.0f + 6.0f * (float)(i < 40 ? i : 40); /* stops at x = 340, feet in the band */
        vx_pipeline_det d[2] = {{ax, 300.0f, ax + 50.0f, 420.0f, 0.9f, 0, "person"}};
        int n = 1;
        if (i >= 80) {
            float bx = 100.0f + 6.0f * (float)(i - 80);
            d[n++] = (vx_pipeline_det){bx, 60.0f, bx + 50.0f, 180.0f, 0.9f, 0, "person"};
        }
        char *text = vx_gate_stage_run(f->stage, d, n, W, H, i * 0.1, 1.8e9 + i * 0.1);
        assert_non_null(text);
        json_t *j = json_loads(text, 0, NULL);
        free(text);
        assert_non_null(j);
        size_t k;
        json_t *e;
        json_array_foreach(json_object_get(j, "events"), k, e)
        {
            const char *type = json_string_value(json_object_get(e, "type"));
            if (!a_entered && !strcmp(type, "person_entered_gate_area")) {
                a_entered = json_incref(e);
                a_sid = json_string_value(json_object_get(e, "session_id"));
            } else if (a_entered && !strcmp(type, "guard_anchored") &&
                       json_integer_value(json_object_get(e, "track_id")) ==
                           json_integer_value(json_object_get(a_entered, "track_id"))) {
                promoted_at = i;
            }
        }
        json_decref(j);
    }
    assert_non_null(a_sid);
    if (promoted_at < 0)
        fail_msg("A was never promoted to guard");
    assert_true(promoted_at >= 110); /* when B walked into the band */
    json_t *sess = NULL, *evs = NULL;
    assert_int_equal(vx_store_session_get(f->store, a_sid, &sess, &evs), VX_OK);
    assert_string_equal(json_string_value(json_object_get(sess, "state")), "abandoned");
    assert_string_equal(json_string_value(json_object_get(sess, "reason")), "promoted_to_guard");
    json_decref(sess);
    json_decref(evs);
    json_decref(a_entered);
    vx_store_stats st;
    assert_int_equal(vx_store_stats_get(f->store, 0, 0, &st), VX_OK);
    assert_int_equal(st.open_sessions, 1); /* B's */
    assert_int_equal(st.total_checks, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_walk_through, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clock_jumps_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_promoted_visitor_closed, setup_either, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
