/*
 * server/rest: the gate's REST handlers without sockets: time parsing
 * (Unix seconds, ISO 8601 with offsets), parameter validation (400 naming
 * the parameter), methods (405 with Allow), lookups of SQL-looking ids as
 * plain data, and the answers over a real store.  Without pipelines (no
 * gate rules) the live endpoints answer 503.  The same endpoints are
 * tested over HTTP against the real server in test_gate_rest_e2e.py.
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

#include "server/server_internal.h"

static void test_times(void **state)
{
    double t = 0;
    assert_int_equal(vx_rest_parse_time("1700000000", &t), 0);
    assert_float_equal(t, 1700000000.0, 0);
    assert_int_equal(vx_rest_parse_time("1700000000.25", &t), 0);
    assert_float_equal(t, 1700000000.25, 1e-9);
    assert_int_equal(vx_rest_parse_time("2023-11-14T22:13:20Z", &t), 0);
    assert_float_equal(t, 1700000000.0, 0);
    assert_int_equal(vx_rest_parse_time("2023-11-14T22:13:20", &t), 0); /* no offset: UTC */
    assert_float_equal(t, 1700000000.0, 0);
    assert_int_equal(vx_rest_parse_time("2023-11-14T22:13:20.5Z", &t), 0);
    assert_float_equal(t, 1700000000.5, 1e-9);
    assert_int_equal(vx_rest_parse_time("2023-11-15T00:13:20+02:00", &t), 0);
    assert_float_equal(t, 1700000000.0, 0);
    assert_int_equal(vx_rest_parse_time("2023-11-14T17:13:20-0500", &t), 0);
    assert_float_equal(t, 1700000000.0, 0);
    assert_int_equal(vx_rest_parse_time("2023-11-14 22:13:20", &t), 0);
    assert_int_equal(vx_rest_parse_time("2023-11-14", &t), 0);
    assert_float_equal(t, 1699920000.0, 0);
    const char *bad[] = {"",
                         "now",
                         "-1",
                         "1e400",
                         "nan",
                         "2023-13-01T00:00:00Z",
                         "2023-11-14T25:00:00Z",
                         "2023-11-14T22:13:20+25:00",
                         "2023-11-14T22:13:20Zjunk",
                         "2023-11-14T22:13:20.",
                         "1700000000 ",
                         "0x10"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (vx_rest_parse_time(bad[i], &t) == 0)
            fail_msg("'%s' parsed as %f", bad[i], t);
}

static void test_paths(void **state)
{
    assert_true(vx_rest_is_path("/gate/completions"));
    assert_true(vx_rest_is_path("/gate/session/abc"));
    assert_true(vx_rest_is_path("/gate/session/"));
    assert_true(vx_rest_is_path("/counts/reset"));
    assert_false(vx_rest_is_path("/gate"));
    assert_false(vx_rest_is_path("/gate/completions/x"));
    assert_false(vx_rest_is_path("/health"));
}

typedef struct {
    char dir[64];
    vx_store *store;
    vx_rest_ctx ctx;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/vx_rest_XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    char path[128];
    snprintf(path, sizeof path, "%s/gate.db", f->dir);
    if (vx_store_open(path, &f->store) != VX_OK)
        return -1;
    const char *sid = "s1'; DROP TABLE sessions; --";
    vx_store_event e = {"g", "cam", sid,          "person_entered_gate_area",
                        3,   1.0,   1700000001.0, "{\"type\":\"person_entered_gate_area\",\"seq\":1}"};
    vx_store_session x = {sid,  "g",          "cam",        3,    4,   VX_SESSION_COMPLETED,
                          NULL, 1700000001.0, 1700000009.0, 0.95, NULL};
    vx_store_completion c = {sid, "g",  "cam",        3,
                             4,   0.95, 0.9,          1.0,
                             9.0, 8.0,  1700000009.0, "{\"session_id\":\"s1\",\"score\":0.95}"};
    vx_store_batch b = {&e, 1, &x, 1, &c, 1};
    if (vx_store_write(f->store, &b, NULL) != VX_OK)
        return -1;
    f->ctx.store = f->store;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    vx_store_close(f->store);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f);
    return rc;
}

/* Runs one request; returns the parsed body (the caller frees). */
static json_t *req(fixture *f, const char *method, const char *path, const char *query, unsigned want,
                   vx_rest_reply *out)
{
    const char *params[8] = {NULL};
    int n = 0;
    char buf[512] = "";
    if (query) {
        snprintf(buf, sizeof buf, "%s", query);
        for (char *save = NULL, *tok = strtok_r(buf, "&", &save); tok && n < 8;
             tok = strtok_r(NULL, "&", &save))
            params[n++] = tok;
    }
    vx_rest_reply r;
    vx_rest_handle(&f->ctx, method, path, params, n, NULL, 0, &r);
    if (r.status != want)
        fail_msg("%s %s?%s: %u, expected %u: %s", method, path, query ? query : "", r.status, want,
                 r.body ? r.body : "(null)");
    assert_non_null(r.body);
    json_t *j = json_loads(r.body, 0, NULL);
    assert_non_null(j);
    if (want >= 400)
        assert_true(json_is_string(json_object_get(j, "detail")));
    if (out)
        *out = r;
    free(r.body);
    return j;
}

static void test_store_endpoints(void **state)
{
    fixture *f = *state;
    json_t *j = req(f, "GET", "/gate/completions", NULL, 200, NULL);
    assert_int_equal(json_integer_value(json_object_get(j, "count")), 1);
    json_decref(j);
    j = req(f, "GET", "/gate/completions", "start_time=2023-11-14T22:13:30Z&limit=5&_=cachebuster", 200,
            NULL);
    assert_int_equal(json_integer_value(json_object_get(j, "count")), 0);
    json_decref(j);
    j = req(f, "GET", "/gate/session/s1'; DROP TABLE sessions; --", NULL, 200, NULL);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "session"), "state")),
                        "completed");
    assert_int_equal(json_array_size(json_object_get(j, "events")), 1);
    json_decref(j);
    j = req(f, "GET", "/gate/session/s1' OR '1'='1", NULL, 404, NULL);
    json_decref(j);
    assert_int_equal(vx_store_count(f->store, "sessions"), 1);
    j = req(f, "GET", "/gate/stats", "start_time=1700000000&end_time=1700000010", 200, NULL);
    assert_int_equal(json_integer_value(json_object_get(j, "total_checks")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "completed")), 1);
    assert_float_equal(json_real_value(json_object_get(j, "success_rate")), 1.0, 1e-9);
    assert_float_equal(json_real_value(json_object_get(j, "avg_duration")), 8.0, 1e-9);
    assert_int_equal(json_integer_value(json_object_get(j, "total_events")), 1);
    assert_true(json_is_object(json_object_get(j, "current_state")));
    json_decref(j);
}

static void test_bad_requests(void **state)
{
    fixture *f = *state;
    const char *bad[] = {"limit=0",
                         "limit=1001",
                         "limit=x",
                         "limit=5&limit=5",
                         "start_time=-1",
                         "start_time=soon",
                         "start_time=1&start_time=2",
                         "novalue"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *j = req(f, "GET", "/gate/completions", bad[i], 400, NULL);
        json_decref(j);
    }
    json_decref(req(f, "GET", "/gate/stats", "start_time=5&end_time=5", 400, NULL));
    /* An empty value is no bound (the documented form is ?start_time=&limit=100). */
    json_t *j = req(f, "GET", "/gate/completions", "start_time=&limit=100", 200, NULL);
    assert_int_equal(json_integer_value(json_object_get(j, "count")), 1);
    json_decref(j);
    json_decref(req(f, "GET", "/gate/session/", NULL, 400, NULL));
    char longid[400];
    memset(longid, 'a', sizeof longid - 1);
    longid[sizeof longid - 1] = 0;
    char path[450];
    snprintf(path, sizeof path, "/gate/session/%s", longid);
    json_decref(req(f, "GET", path, NULL, 400, NULL));
    json_decref(req(f, "GET", "/gate/session/a\x01b", NULL, 400, NULL));
    vx_rest_reply r;
    json_decref(req(f, "POST", "/gate/completions", NULL, 405, &r));
    assert_string_equal(r.allow, "GET");
    json_decref(req(f, "GET", "/gate/reset", NULL, 405, &r));
    assert_string_equal(r.allow, "POST");
    json_decref(req(f, "DELETE", "/gate/config", NULL, 405, &r));
    assert_string_equal(r.allow, "GET, POST");
    /* No gate on this server: the live endpoints say so. */
    json_decref(req(f, "GET", "/gate/config", NULL, 503, NULL));
    json_decref(req(f, "POST", "/gate/config", NULL, 503, NULL));
    json_decref(req(f, "POST", "/gate/reset", NULL, 503, NULL));
    json_decref(req(f, "GET", "/counts", NULL, 503, NULL));
    json_decref(req(f, "POST", "/counts/reset", NULL, 503, NULL));
    /* Without a store, history is unavailable, parameters still checked first. */
    vx_store *keep = f->ctx.store;
    f->ctx.store = NULL;
    json_decref(req(f, "GET", "/gate/completions", NULL, 503, NULL));
    json_decref(req(f, "GET", "/gate/completions", "limit=-1", 400, NULL));
    f->ctx.store = keep;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_times),
        cmocka_unit_test(test_paths),
        cmocka_unit_test_setup_teardown(test_store_endpoints, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_requests, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
