/*
 * store: schema creation and migration from older versions, refusal of
 * newer and foreign databases, WAL mode and synchronous=FULL, a reopen after
 * the writing process was killed mid-stream, SQL-looking strings stored and
 * found as plain data, and the REST queries (completions, sessions, stats).
 * Every database lives in a fresh temporary folder.
 */
#include <setjmp.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/vx_store.h"

typedef struct {
    char dir[256];
    char path[300];
} tmpdb;

static void tmp_make(tmpdb *t)
{
    snprintf(t->dir, sizeof t->dir, "/tmp/vx_store_XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->path, sizeof t->path, "%s/gate.db", t->dir);
}

static void tmp_clean(tmpdb *t)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->dir);
    assert_int_equal(system(cmd), 0);
}

static vx_store *must_open(const char *path)
{
    vx_store *s = NULL;
    if (vx_store_open(path, &s) != VX_OK)
        fail_msg("open %s: %s", path, vx_last_error());
    return s;
}

static int64_t sql_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void sql_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("%s: %s", sql, err);
    sqlite3_close(db);
}

static vx_store_event ev(const char *session, const char *type, int64_t track, double t, const char *json)
{
    return (vx_store_event){"gate-1", "cam", session, type, track, t, 1700000000.0 + t, json};
}

/* A fresh database is at the current version, in WAL mode, ours. */
static void test_create(void **state)
{
    tmpdb t;
    tmp_make(&t);
    vx_store *s = must_open(t.path);
    assert_int_equal(sql_int(t.path, "PRAGMA user_version"), VX_STORE_SCHEMA_VERSION);
    assert_int_equal(sql_int(t.path, "PRAGMA application_id"), VX_STORE_APP_ID);
    /* journal_mode is persistent in the file for WAL. */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(t.path, &db), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(db);
    assert_int_equal(vx_store_count(s, "events"), 0);
    assert_int_equal(vx_store_count(s, "completions"), 0);
    assert_int_equal(vx_store_count(s, "sessions"), 0);
    assert_int_equal(vx_store_count(s, "sqlite_schema"), -1);
    vx_store_close(s);
    /* Reopening an up-to-date database changes nothing. */
    s = must_open(t.path);
    assert_int_equal(sql_int(t.path, "PRAGMA user_version"), VX_STORE_SCHEMA_VERSION);
    vx_store_close(s);
    tmp_clean(&t);
}

/* A database as schema version 1 wrote it (the SQL is a literal copy of
 * that release's, so it cannot drift with the code): its rows survive the
 * upgrade and gain the new columns' defaults. */
static void test_migrate_from_v1(void **state)
{
    tmpdb t;
    tmp_make(&t);
    sql_exec(t.path, "PRAGMA journal_mode=WAL;"
                     "CREATE TABLE events(id INTEGER PRIMARY KEY, gate_id TEXT NOT NULL, session_id TEXT,"
                     " type TEXT NOT NULL, track_id INTEGER, stream_ts REAL NOT NULL, wall_ts REAL NOT NULL,"
                     " payload TEXT NOT NULL);"
                     "CREATE TABLE sessions(session_id TEXT PRIMARY KEY, gate_id TEXT NOT NULL,"
                     " visitor_id INTEGER, guard_id INTEGER, state TEXT NOT NULL, reason TEXT,"
                     " started_wall REAL NOT NULL, ended_wall REAL, payload TEXT);"
                     "INSERT INTO events VALUES(1, 'old-gate', 's-old', 'person_entered_gate_area', 4, 1.5,"
                     " 1600000000.0, '{\"type\":\"person_entered_gate_area\",\"old\":true}');"
                     "INSERT INTO sessions VALUES('s-old', 'old-gate', 4, NULL, 'failed', 'no_guard',"
                     " 1600000000.0, 1600000009.0, NULL);"
                     "PRAGMA application_id = 1448234072; PRAGMA user_version = 1;");
    assert_int_equal(sql_int(t.path, "PRAGMA user_version"), 1);
    vx_store *s = must_open(t.path);
    assert_int_equal(sql_int(t.path, "PRAGMA user_version"), VX_STORE_SCHEMA_VERSION);
    assert_int_equal(vx_store_count(s, "events"), 1);
    assert_int_equal(vx_store_count(s, "completions"), 0);
    /* v3's column, with its default, on the old row. */
    assert_int_equal(sql_int(t.path, "SELECT COUNT(*) FROM events WHERE source = ''"), 1);
    json_t *sess = NULL, *evs = NULL;
    assert_int_equal(vx_store_session_get(s, "s-old", &sess, &evs), VX_OK);
    assert_string_equal(json_string_value(json_object_get(sess, "state")), "failed");
    assert_string_equal(json_string_value(json_object_get(sess, "reason")), "no_guard");
    assert_int_equal(json_array_size(evs), 1);
    assert_true(json_is_true(json_object_get(json_array_get(evs, 0), "old")));
    assert_int_equal(json_integer_value(json_object_get(json_array_get(evs, 0), "event_id")), 1);
    json_decref(sess);
    json_decref(evs);
    vx_store_stats st;
    assert_int_equal(vx_store_stats_get(s, 0, 0, &st), VX_OK);
    assert_int_equal(st.failed, 1);
    assert_int_equal(st.total_checks, 1);
    /* New writes work on the migrated schema. */
    vx_store_event e = ev("s-new", "person_entered_gate_area", 9, 2.0, "{}");
    vx_store_batch b = {.events = &e, .n_events = 1};
    int64_t id = 0;
    assert_int_equal(vx_store_write(s, &b, &id), VX_OK);
    assert_int_equal(id, 2);
    vx_store_close(s);
    tmp_clean(&t);
}

/* A migration step that fails leaves the database at its previous version
 * with its data (the step's transaction is rolled back). */
static void test_failed_migration_rolls_back(void **state)
{
    tmpdb t;
    tmp_make(&t);
    /* Version 1 plus a table named like version 2's: step 2 fails. */
    sql_exec(t.path, "CREATE TABLE events(id INTEGER PRIMARY KEY, gate_id TEXT NOT NULL, session_id TEXT,"
                     " type TEXT NOT NULL, track_id INTEGER, stream_ts REAL NOT NULL, wall_ts REAL NOT NULL,"
                     " payload TEXT NOT NULL);"
                     "CREATE TABLE sessions(session_id TEXT PRIMARY KEY, gate_id TEXT NOT NULL,"
                     " visitor_id INTEGER, guard_id INTEGER, state TEXT NOT NULL, reason TEXT,"
                     " started_wall REAL NOT NULL, ended_wall REAL, payload TEXT);"
                     "CREATE TABLE completions(x);"
                     "INSERT INTO events VALUES(1, 'g', NULL, 't', NULL, 0, 0, '{}');"
                     "PRAGMA application_id = 1448234072; PRAGMA user_version = 1;");
    vx_store *s = NULL;
    assert_int_equal(vx_store_open(t.path, &s), VX_ERR_FORMAT);
    assert_null(s);
    assert_non_null(strstr(vx_last_error(), "migration to schema version 2"));
    assert_int_equal(sql_int(t.path, "PRAGMA user_version"), 1);
    assert_int_equal(sql_int(t.path, "SELECT COUNT(*) FROM events"), 1);
    /* Nothing of step 2 stayed behind (its indexes). */
    assert_int_equal(sql_int(t.path, "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'events_wall'"), 0);
    tmp_clean(&t);
}

static void test_refuse_newer_and_foreign(void **state)
{
    tmpdb t;
    tmp_make(&t);
    vx_store *s = must_open(t.path);
    vx_store_close(s);
    sql_exec(t.path, "PRAGMA user_version = 99");
    s = NULL;
    assert_int_equal(vx_store_open(t.path, &s), VX_ERR_UNSUPPORTED);
    assert_null(s);
    assert_non_null(strstr(vx_last_error(), "schema version 99"));
    assert_non_null(strstr(vx_last_error(), "newer"));
    /* Refused, not modified. */
    assert_int_equal(sql_int(t.path, "PRAGMA user_version"), 99);

    /* Another application's database. */
    char other[400];
    snprintf(other, sizeof other, "%s/other.db", t.dir);
    sql_exec(other, "CREATE TABLE accounts(id, balance); INSERT INTO accounts VALUES(1, 100);");
    assert_int_equal(vx_store_open(other, &s), VX_ERR_FORMAT);
    assert_non_null(strstr(vx_last_error(), "not a Verolux event database"));
    assert_int_equal(sql_int(other, "SELECT COUNT(*) FROM sqlite_schema"), 1);

    /* Not a database at all. */
    char junk[400];
    snprintf(junk, sizeof junk, "%s/junk.db", t.dir);
    FILE *f = fopen(junk, "wb");
    assert_non_null(f);
    for (int i = 0; i < 4096; i++)
        fputc("not sqlite "[i % 11], f);
    fclose(f);
    assert_int_not_equal(vx_store_open(junk, &s), VX_OK);
    assert_null(s);
    assert_non_null(strstr(vx_last_error(), junk));
    tmp_clean(&t);
}

/* Ids, gate names and payloads that look like SQL are stored and found
 * byte for byte, and nothing else happens. */
static void test_sql_looking_strings(void **state)
{
    tmpdb t;
    tmp_make(&t);
    vx_store *s = must_open(t.path);
    const char *evil[] = {
        "x'; DROP TABLE events; --",
        "1 OR 1=1",
        "\"); DELETE FROM sessions; --",
        "s1' UNION SELECT payload FROM completions --",
        "%_\\'\"`;",
    };
    for (size_t i = 0; i < sizeof evil / sizeof evil[0]; i++) {
        char json[256];
        snprintf(json, sizeof json, "{\"n\":%zu}", i);
        vx_store_event e = {evil[i], evil[i], evil[i], evil[i], 1, 1.0, 1e9, json};
        vx_store_session x = {evil[i], evil[i], evil[i], 1, -1, VX_SESSION_OPEN, evil[i], 1e9, 0, -1, NULL};
        vx_store_completion c = {evil[i], evil[i], evil[i], 1, 2, 0.9, 0.9, 0, 1, 1, 1e9, json};
        vx_store_batch b = {&e, 1, &x, 1, &c, 1};
        assert_int_equal(vx_store_write(s, &b, NULL), VX_OK);
    }
    assert_int_equal(vx_store_count(s, "events"), 5);
    assert_int_equal(vx_store_count(s, "sessions"), 5);
    assert_int_equal(vx_store_count(s, "completions"), 5);
    for (size_t i = 0; i < sizeof evil / sizeof evil[0]; i++) {
        json_t *sess = NULL, *evs = NULL;
        assert_int_equal(vx_store_session_get(s, evil[i], &sess, &evs), VX_OK);
        assert_string_equal(json_string_value(json_object_get(sess, "session_id")), evil[i]);
        assert_string_equal(json_string_value(json_object_get(sess, "gate_id")), evil[i]);
        assert_string_equal(json_string_value(json_object_get(sess, "reason")), evil[i]);
        assert_int_equal(json_array_size(evs), 1);
        assert_int_equal(json_integer_value(json_object_get(json_array_get(evs, 0), "n")), (json_int_t)i);
        json_decref(sess);
        json_decref(evs);
    }
    /* A near miss finds nothing rather than everything. */
    json_t *sess = NULL, *evs = NULL;
    assert_int_equal(vx_store_session_get(s, "' OR '1'='1", &sess, &evs), VX_ERR_NOT_FOUND);
    assert_null(sess);
    assert_null(evs);
    assert_int_equal(vx_store_count(s, "events"), 5);
    vx_store_close(s);
    tmp_clean(&t);
}

/* The REST queries: newest first, limits, time windows, stats. */
static void test_queries(void **state)
{
    tmpdb t;
    tmp_make(&t);
    vx_store *s = must_open(t.path);
    const double t0 = 1700000000.0;
    /* Three sessions: two completed (scores 0.9, 1.0; durations 2, 4 s), one failed. */
    for (int i = 0; i < 3; i++) {
        char sid[32], ejson[128], cjson[128];
        snprintf(sid, sizeof sid, "sess-%d", i);
        snprintf(ejson, sizeof ejson, "{\"type\":\"person_entered_gate_area\",\"session_id\":\"%s\"}", sid);
        vx_store_event e1 = {"g",    "cam",    sid,         "person_entered_gate_area",
                             10 + i, i * 10.0, t0 + i * 10, ejson};
        vx_store_session open = {sid,  "g",         "cam", 10 + i, -1,  VX_SESSION_OPEN,
                                 NULL, t0 + i * 10, 0,     -1,     NULL};
        vx_store_batch b1 = {.events = &e1, .n_events = 1, .sessions = &open, .n_sessions = 1};
        int64_t id = 0;
        assert_int_equal(vx_store_write(s, &b1, &id), VX_OK);
        assert_true(id > 0);

        int ok = i < 2;
        snprintf(cjson, sizeof cjson, "{\"session_id\":\"%s\",\"score\":%.1f}", sid,
                 ok ? 0.9 + 0.1 * i : 0.0);
        vx_store_event e2 = {"g",
                             "cam",
                             sid,
                             ok ? "check_completed" : "check_failed",
                             10 + i,
                             i * 10.0 + 5,
                             t0 + i * 10 + 5,
                             "{\"type\":\"end\"}"};
        vx_store_session end = {sid,
                                "g",
                                "cam",
                                10 + i,
                                ok ? 99 : -1,
                                ok ? VX_SESSION_COMPLETED : VX_SESSION_FAILED,
                                ok ? NULL : "no_guard",
                                t0 + i * 10,
                                t0 + i * 10 + 5,
                                ok ? 0.9 + 0.1 * i : -1,
                                "{\"summary\":1}"};
        vx_store_completion c = {sid,
                                 "g",
                                 "cam",
                                 10 + i,
                                 99,
                                 0.9 + 0.1 * i,
                                 0.9,
                                 i * 10.0,
                                 i * 10.0 + 2 + 2 * i,
                                 2 + 2 * i,
                                 t0 + i * 10 + 5,
                                 cjson};
        vx_store_batch b2 = {&e2, 1, &end, 1, &c, ok ? 1 : 0};
        assert_int_equal(vx_store_write(s, &b2, NULL), VX_OK);
    }
    /* A completion is unique per session: a duplicate fails the whole
     * batch, including its event. */
    vx_store_event dup_e = ev("sess-0", "check_completed", 10, 100, "{}");
    vx_store_completion dup = {"sess-0", "g", "cam", 10, 99, 1, 0.9, 0, 1, 1, t0 + 100, "{}"};
    vx_store_batch bd = {.events = &dup_e, .n_events = 1, .completions = &dup, .n_completions = 1};
    assert_int_equal(vx_store_write(s, &bd, NULL), VX_ERR_IO);
    assert_int_equal(vx_store_count(s, "events"), 6);

    json_t *arr = NULL;
    assert_int_equal(vx_store_completions(s, 0, 100, &arr), VX_OK);
    assert_int_equal(json_array_size(arr), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 0), "session_id")), "sess-1");
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 1), "session_id")), "sess-0");
    assert_true(json_integer_value(json_object_get(json_array_get(arr, 0), "id")) > 0);
    json_decref(arr);
    assert_int_equal(vx_store_completions(s, 0, 1, &arr), VX_OK);
    assert_int_equal(json_array_size(arr), 1);
    json_decref(arr);
    assert_int_equal(vx_store_completions(s, t0 + 10, 100, &arr), VX_OK);
    assert_int_equal(json_array_size(arr), 1);
    json_decref(arr);

    json_t *sess = NULL, *evs = NULL;
    assert_int_equal(vx_store_session_get(s, "sess-2", &sess, &evs), VX_OK);
    assert_string_equal(json_string_value(json_object_get(sess, "state")), "failed");
    assert_true(json_is_null(json_object_get(sess, "guard_id")));
    assert_int_equal(json_array_size(evs), 2);
    json_decref(sess);
    json_decref(evs);
    assert_int_equal(vx_store_session_get(s, "sess-1", &sess, &evs), VX_OK);
    assert_int_equal(json_integer_value(json_object_get(sess, "guard_id")), 99);
    assert_true(json_real_value(json_object_get(sess, "score")) > 0.99);
    json_decref(sess);
    json_decref(evs);

    vx_store_stats st;
    assert_int_equal(vx_store_stats_get(s, 0, 0, &st), VX_OK);
    assert_int_equal(st.total_checks, 3);
    assert_int_equal(st.completed, 2);
    assert_int_equal(st.failed, 1);
    assert_float_equal(st.success_rate, 2.0 / 3.0, 1e-9);
    assert_float_equal(st.avg_score, 0.95, 1e-9);
    assert_float_equal(st.avg_duration, 3.0, 1e-9);
    assert_int_equal(st.total_events, 6);
    assert_int_equal(st.open_sessions, 0);
    /* Only the first session's window. */
    assert_int_equal(vx_store_stats_get(s, t0, t0 + 9, &st), VX_OK);
    assert_int_equal(st.total_checks, 1);
    assert_int_equal(st.completed, 1);
    assert_int_equal(st.total_events, 2);
    /* An empty window. */
    assert_int_equal(vx_store_stats_get(s, t0 + 1000, 0, &st), VX_OK);
    assert_int_equal(st.total_checks, 0);
    assert_float_equal(st.success_rate, 0, 0);
    vx_store_close(s);
    tmp_clean(&t);
}

/* A child writes batches and reports each acknowledged one through a pipe,
 * then is killed with SIGKILL while writing: every batch it reported is in
 * the database, which opens cleanly and passes integrity_check. */
static void test_reopen_after_kill(void **state)
{
    tmpdb t;
    tmp_make(&t);
    vx_store_close(must_open(t.path));
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        vx_store *s = NULL;
        if (vx_store_open(t.path, &s) != VX_OK)
            _exit(2);
        for (int i = 0;; i++) {
            char sid[32];
            snprintf(sid, sizeof sid, "k-%d", i);
            vx_store_event e[3] = {ev(sid, "person_entered_gate_area", i, i, "{}"),
                                   ev(sid, "contact_started", i, i + 0.5, "{}"),
                                   ev(sid, "check_completed", i, i + 0.9, "{}")};
            vx_store_session x = {sid,  "g", "cam",   i,    1,   VX_SESSION_COMPLETED,
                                  NULL, 1e9, 1e9 + 1, 0.95, NULL};
            vx_store_batch b = {e, 3, &x, 1, NULL, 0};
            if (vx_store_write(s, &b, NULL) != VX_OK)
                _exit(3);
            if (write(fds[1], &i, sizeof i) != sizeof i)
                _exit(4);
        }
    }
    close(fds[1]);
    int last = -1, got;
    /* Let it commit a few dozen batches, then kill it mid-stream. */
    while (last < 40 && read(fds[0], &got, sizeof got) == sizeof got)
        last = got;
    kill(pid, SIGKILL);
    while (read(fds[0], &got, sizeof got) == sizeof got)
        last = got;
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    assert_true(WIFSIGNALED(status));
    assert_true(last >= 40);

    /* The WAL is still there: the child never closed. */
    char wal[400];
    snprintf(wal, sizeof wal, "%s-wal", t.path);
    struct stat sb;
    assert_int_equal(stat(wal, &sb), 0);

    vx_store *s = must_open(t.path);
    assert_true(vx_store_count(s, "sessions") >= last + 1);
    assert_true(vx_store_count(s, "events") >= 3 * (last + 1));
    /* Whole batches only: never an event without its session. */
    assert_int_equal(vx_store_count(s, "events"), 3 * vx_store_count(s, "sessions"));
    for (int i = 0; i <= last; i++) {
        char sid[32];
        snprintf(sid, sizeof sid, "k-%d", i);
        json_t *sess = NULL, *evs = NULL;
        if (vx_store_session_get(s, sid, &sess, &evs) != VX_OK)
            fail_msg("acknowledged session %s lost: %s", sid, vx_last_error());
        assert_int_equal(json_array_size(evs), 3);
        json_decref(sess);
        json_decref(evs);
    }
    vx_store_close(s);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(t.path, &db), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    sqlite3_close(db);
    tmp_clean(&t);
}

/* Readers and a writer at once (WAL): counts only grow, no errors. */
typedef struct {
    vx_store *s;
    int n;
} writer_arg;

#include <pthread.h>
static void *writer_main(void *arg)
{
    writer_arg *w = arg;
    for (int i = 0; i < w->n; i++) {
        char sid[32];
        snprintf(sid, sizeof sid, "c-%d", i);
        vx_store_event e = ev(sid, "person_entered_gate_area", i, i, "{}");
        vx_store_batch b = {.events = &e, .n_events = 1};
        if (vx_store_write(w->s, &b, NULL) != VX_OK)
            return (void *)1;
    }
    return NULL;
}

static void test_concurrent(void **state)
{
    tmpdb t;
    tmp_make(&t);
    vx_store *s = must_open(t.path);
    writer_arg w = {s, 60};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, writer_main, &w), 0);
    int64_t prev = 0;
    for (int i = 0; i < 200; i++) {
        vx_store_stats st;
        assert_int_equal(vx_store_stats_get(s, 0, 0, &st), VX_OK);
        assert_true(st.total_events >= prev);
        prev = st.total_events;
    }
    void *rv = NULL;
    pthread_join(th, &rv);
    assert_null(rv);
    assert_int_equal(vx_store_count(s, "events"), 60);
    vx_store_close(s);
    tmp_clean(&t);
}

/* Sessions no engine will conclude are closed as abandoned, per source
 * or all, and do not count as checks. */
static void test_abandon(void **state)
{
    tmpdb t;
    tmp_make(&t);
    vx_store *s = must_open(t.path);
    vx_store_session x[3] = {
        {"a", "g", "cam1", 1, -1, VX_SESSION_OPEN, NULL, 1e9, 0, -1, NULL},
        {"b", "g", "cam2", 2, -1, VX_SESSION_OPEN, NULL, 1e9, 0, -1, NULL},
        {"c", "g", "cam1", 3, 4, VX_SESSION_COMPLETED, NULL, 1e9, 1e9 + 5, 0.95, NULL},
    };
    vx_store_batch b = {.sessions = x, .n_sessions = 3};
    assert_int_equal(vx_store_write(s, &b, NULL), VX_OK);
    assert_int_equal(vx_store_abandon_sessions(s, "cam1", "stream_restarted", 1e9 + 10), 1);
    assert_int_equal(vx_store_abandon_sessions(s, "cam1", "stream_restarted", 1e9 + 10), 0);
    json_t *sess = NULL, *evs = NULL;
    assert_int_equal(vx_store_session_get(s, "a", &sess, &evs), VX_OK);
    assert_string_equal(json_string_value(json_object_get(sess, "state")), "abandoned");
    assert_string_equal(json_string_value(json_object_get(sess, "reason")), "stream_restarted");
    json_decref(sess);
    json_decref(evs);
    assert_int_equal(vx_store_session_get(s, "c", &sess, &evs), VX_OK);
    assert_string_equal(json_string_value(json_object_get(sess, "state")), "completed");
    json_decref(sess);
    json_decref(evs);
    vx_store_stats st;
    assert_int_equal(vx_store_stats_get(s, 0, 0, &st), VX_OK);
    assert_int_equal(st.open_sessions, 1);
    assert_int_equal(st.total_checks, 1);
    /* One session by id: only while open. */
    assert_int_equal(vx_store_abandon_session(s, "c", "dropped", 1e9 + 15), 0);
    assert_int_equal(vx_store_abandon_session(s, "nope' OR 1=1 --", "dropped", 1e9 + 15), 0);
    assert_int_equal(vx_store_abandon_sessions(s, NULL, "server_restart", 1e9 + 20), 1);
    assert_int_equal(vx_store_abandon_session(s, "b", "dropped", 1e9 + 25), 0);
    assert_int_equal(vx_store_stats_get(s, 0, 0, &st), VX_OK);
    assert_int_equal(st.open_sessions, 0);
    assert_int_equal(st.total_checks, 1);
    /* A verdict that comes after all overwrites the abandonment. */
    vx_store_session late = {"a", "g", "cam1", 1, 2, VX_SESSION_FAILED, "timeout", 1e9, 1e9 + 30, 0.6, NULL};
    vx_store_batch bl = {.sessions = &late, .n_sessions = 1};
    assert_int_equal(vx_store_write(s, &bl, NULL), VX_OK);
    vx_store_session d = {"d", "g", "cam1", 5, -1, VX_SESSION_OPEN, NULL, 1e9, 0, -1, NULL};
    vx_store_batch bd = {.sessions = &d, .n_sessions = 1};
    assert_int_equal(vx_store_write(s, &bd, NULL), VX_OK);
    assert_int_equal(vx_store_abandon_session(s, "d", "dropped", 1e9 + 40), 1);
    assert_int_equal(vx_store_stats_get(s, 0, 0, &st), VX_OK);
    assert_int_equal(st.failed, 1);
    assert_int_equal(st.total_checks, 2);
    assert_int_equal(st.open_sessions, 0);
    vx_store_close(s);
    tmp_clean(&t);
}

static void test_bad_path(void **state)
{
    vx_store *s = NULL;
    assert_int_equal(vx_store_open("", &s), VX_ERR_INVALID);
    /* A folder that cannot be created: its parent is a file. */
    tmpdb t;
    tmp_make(&t);
    char file[400], path[500];
    snprintf(file, sizeof file, "%s/plain", t.dir);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(path, sizeof path, "%s/sub/gate.db", file);
    assert_int_equal(vx_store_open(path, &s), VX_ERR_IO);
    assert_non_null(strstr(vx_last_error(), "cannot create folder"));
    assert_null(s);
    /* Missing parents are created. */
    snprintf(path, sizeof path, "%s/a/b/gate.db", t.dir);
    s = must_open(path);
    vx_store_close(s);
    tmp_clean(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create),
        cmocka_unit_test(test_migrate_from_v1),
        cmocka_unit_test(test_failed_migration_rolls_back),
        cmocka_unit_test(test_refuse_newer_and_foreign),
        cmocka_unit_test(test_sql_looking_strings),
        cmocka_unit_test(test_queries),
        cmocka_unit_test(test_reopen_after_kill),
        cmocka_unit_test(test_concurrent),
        cmocka_unit_test(test_abandon),
        cmocka_unit_test(test_bad_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
