/*
 * The SQLite store.  See vx_store.h for the durability and threading
 * design.
 *
 * Migrations are a list of SQL scripts, one per schema version; the
 * database's user_version says how many have run.  Each step runs inside
 * BEGIN IMMEDIATE ... COMMIT together with the user_version bump, so a
 * database is always exactly at one version.  Steps are never edited once
 * released: a change is a new step.
 */
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/vx_store.h"

/* Busy waits: another process holding the write lock (a second server on
 * the same file, a backup tool) is waited for this long before failing. */
#define BUSY_TIMEOUT_MS 5000

static const char *const migrations[VX_STORE_SCHEMA_VERSION] = {
    /* 1: events and sessions. */
    "CREATE TABLE events("
    "  id INTEGER PRIMARY KEY,"
    "  gate_id TEXT NOT NULL,"
    "  session_id TEXT,"
    "  type TEXT NOT NULL,"
    "  track_id INTEGER,"
    "  stream_ts REAL NOT NULL,"
    "  wall_ts REAL NOT NULL,"
    "  payload TEXT NOT NULL);"
    "CREATE TABLE sessions("
    "  session_id TEXT PRIMARY KEY,"
    "  gate_id TEXT NOT NULL,"
    "  visitor_id INTEGER,"
    "  guard_id INTEGER,"
    "  state TEXT NOT NULL,"
    "  reason TEXT,"
    "  started_wall REAL NOT NULL,"
    "  ended_wall REAL,"
    "  payload TEXT);",
    /* 2: completion records, and the indexes the REST queries need. */
    "CREATE TABLE completions("
    "  id INTEGER PRIMARY KEY,"
    "  session_id TEXT NOT NULL UNIQUE,"
    "  gate_id TEXT NOT NULL,"
    "  visitor_id INTEGER,"
    "  guard_id INTEGER,"
    "  score REAL,"
    "  threshold REAL,"
    "  window_start REAL,"
    "  window_end REAL,"
    "  duration_s REAL,"
    "  wall_ts REAL NOT NULL,"
    "  payload TEXT NOT NULL);"
    "CREATE INDEX events_session ON events(session_id, id);"
    "CREATE INDEX events_wall ON events(wall_ts);"
    "CREATE INDEX completions_wall ON completions(wall_ts);",
    /* 3: several sources per server: the source on every row; session scores. */
    "ALTER TABLE events ADD COLUMN source TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE sessions ADD COLUMN source TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE sessions ADD COLUMN score REAL;"
    "ALTER TABLE completions ADD COLUMN source TEXT NOT NULL DEFAULT '';"
    "CREATE INDEX sessions_ended ON sessions(ended_wall);",
};

enum {
    ST_INS_EVENT = 0,
    ST_UPS_SESSION,
    ST_INS_COMPLETION,
    ST_ABANDON,
    ST_ABANDON_ONE,
    ST_W_COUNT,
};

enum {
    SQ_COMPLETIONS = 0,
    SQ_SESSION,
    SQ_SESSION_EVENTS,
    SQ_STATS_SESSIONS,
    SQ_STATS_COMPLETIONS,
    SQ_STATS_EVENTS,
    SQ_OPEN_SESSIONS,
    SQ_COUNT,
};

static const char *const write_sql[ST_W_COUNT] = {
    "INSERT INTO events(gate_id, source, session_id, type, track_id, stream_ts, wall_ts, payload) "
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    "INSERT INTO sessions(session_id, gate_id, source, visitor_id, guard_id, state, reason, started_wall, "
    "ended_wall, score, payload) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) "
    "ON CONFLICT(session_id) DO UPDATE SET guard_id = COALESCE(excluded.guard_id, guard_id), "
    "state = excluded.state, reason = excluded.reason, ended_wall = excluded.ended_wall, "
    "score = COALESCE(excluded.score, score), payload = COALESCE(excluded.payload, payload)",
    "INSERT INTO completions(session_id, gate_id, source, visitor_id, guard_id, score, threshold, "
    "window_start, window_end, duration_s, wall_ts, payload) "
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    "UPDATE sessions SET state = 'abandoned', reason = ?2, ended_wall = ?3 "
    "WHERE state = 'open' AND (?1 IS NULL OR source = ?1)",
    "UPDATE sessions SET state = 'abandoned', reason = ?2, ended_wall = ?3 WHERE state = 'open' AND "
    "session_id = ?1",
};

static const char *const read_sql[SQ_COUNT] = {
    "SELECT id, wall_ts, payload FROM completions WHERE wall_ts >= ?1 ORDER BY wall_ts DESC, id DESC "
    "LIMIT ?2",
    "SELECT session_id, gate_id, source, visitor_id, guard_id, state, reason, started_wall, ended_wall, "
    "score, payload FROM sessions WHERE session_id = ?1",
    "SELECT id, payload FROM events WHERE session_id = ?1 ORDER BY id",
    "SELECT state, COUNT(*) FROM sessions WHERE ended_wall IS NOT NULL AND ended_wall >= ?1 AND "
    "ended_wall < ?2 AND state IN ('completed', 'failed') GROUP BY state",
    "SELECT COUNT(*), AVG(score), AVG(duration_s) FROM completions WHERE wall_ts >= ?1 AND wall_ts < ?2",
    "SELECT COUNT(*) FROM events WHERE wall_ts >= ?1 AND wall_ts < ?2",
    "SELECT COUNT(*) FROM sessions WHERE state = 'open'",
};

struct vx_store {
    char *path;
    pthread_mutex_t wlock, rlock;
    sqlite3 *w, *r;
    sqlite3_stmt *ws[ST_W_COUNT];
    sqlite3_stmt *rs[SQ_COUNT];
};

static vx_err db_fail(sqlite3 *db, vx_err code, const char *what, const char *path)
{
    return vx_fail(code, "store %s: %s: %s", path, what, db ? sqlite3_errmsg(db) : "out of memory");
}

static int exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

static int pragma_int(sqlite3 *db, const char *sql, int64_t *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

static vx_err open_conn(const char *path, int create, sqlite3 **out)
{
    *out = NULL;
    sqlite3 *db = NULL;
    int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0) | SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(path, &db, flags, NULL);
    if (rc != SQLITE_OK) {
        vx_err e = db_fail(db, VX_ERR_IO, "cannot open", path);
        sqlite3_close(db);
        return e;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
    /* A database is data from outside: no code from it (triggers calling
     * application functions, views) and no ATTACH of other files. */
    sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
    sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
    sqlite3_limit(db, SQLITE_LIMIT_ATTACHED, 0);
    *out = db;
    return VX_OK;
}

/* Brings the schema to VX_STORE_SCHEMA_VERSION, one step per transaction. */
static vx_err migrate(sqlite3 *db, const char *path)
{
    /* The version check and the steps happen under the write lock, so two
     * servers starting on one file cannot both run a step. */
    for (;;) {
        if (exec(db, "BEGIN IMMEDIATE") != SQLITE_OK)
            return db_fail(db, VX_ERR_IO, "cannot start the schema check", path);
        int64_t version = 0, app = 0, tables = 0;
        if (pragma_int(db, "PRAGMA user_version", &version) != SQLITE_OK ||
            pragma_int(db, "PRAGMA application_id", &app) != SQLITE_OK ||
            pragma_int(db, "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table'", &tables) != SQLITE_OK) {
            vx_err e = db_fail(db, VX_ERR_FORMAT, "not a readable SQLite database", path);
            exec(db, "ROLLBACK");
            return e;
        }
        if ((app != 0 && app != VX_STORE_APP_ID) || (app == 0 && version == 0 && tables > 0)) {
            exec(db, "ROLLBACK");
            return vx_fail(VX_ERR_FORMAT,
                           "store %s: not a Verolux event database (application_id %#llx, %lld tables); "
                           "refusing to modify it",
                           path, (unsigned long long)app, (long long)tables);
        }
        if (version > VX_STORE_SCHEMA_VERSION) {
            exec(db, "ROLLBACK");
            return vx_fail(VX_ERR_UNSUPPORTED,
                           "store %s: schema version %lld was written by a newer Verolux; this build "
                           "knows versions up to %d (upgrade Verolux, or use another GATE_DB)",
                           path, (long long)version, VX_STORE_SCHEMA_VERSION);
        }
        if (version < 0) {
            exec(db, "ROLLBACK");
            return vx_fail(VX_ERR_FORMAT, "store %s: invalid schema version %lld", path, (long long)version);
        }
        if (version == VX_STORE_SCHEMA_VERSION) {
            exec(db, "COMMIT");
            return VX_OK;
        }
        char bump[96];
        snprintf(bump, sizeof bump, "PRAGMA application_id = %d; PRAGMA user_version = %lld;",
                 VX_STORE_APP_ID, (long long)version + 1);
        if (exec(db, migrations[version]) != SQLITE_OK || exec(db, bump) != SQLITE_OK) {
            char what[64];
            snprintf(what, sizeof what, "migration to schema version %lld failed", (long long)version + 1);
            vx_err e = db_fail(db, VX_ERR_FORMAT, what, path);
            exec(db, "ROLLBACK");
            return e;
        }
        if (exec(db, "COMMIT") != SQLITE_OK) {
            vx_err e = db_fail(db, VX_ERR_IO, "cannot commit a migration", path);
            exec(db, "ROLLBACK");
            return e;
        }
        VX_INFO("store %s: schema migrated to version %lld", path, (long long)version + 1);
    }
}

void vx_store_close(vx_store *s)
{
    if (!s)
        return;
    for (int i = 0; i < ST_W_COUNT; i++)
        sqlite3_finalize(s->ws[i]);
    for (int i = 0; i < SQ_COUNT; i++)
        sqlite3_finalize(s->rs[i]);
    sqlite3_close(s->r);
    /* The writer last: closing the last connection checkpoints the WAL
     * into the database and removes it. */
    sqlite3_close(s->w);
    pthread_mutex_destroy(&s->wlock);
    pthread_mutex_destroy(&s->rlock);
    free(s->path);
    free(s);
}

const char *vx_store_path(const vx_store *s)
{
    return s->path;
}

vx_err vx_store_open(const char *path, vx_store **out)
{
    *out = NULL;
    if (!path || !*path)
        return vx_fail(VX_ERR_INVALID, "store: no database path");
    /* The data folder is created (with its parents) on first use. */
    const char *slash = strrchr(path, '/');
    if (slash && slash != path) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
        for (char *p = dir + 1;; p++) {
            if (*p && *p != '/')
                continue;
            char c = *p;
            *p = 0;
            if (mkdir(dir, 0750) != 0 && errno != EEXIST)
                return vx_fail(VX_ERR_IO, "store %s: cannot create folder %s: %s", path, dir,
                               strerror(errno));
            *p = c;
            if (!c)
                break;
        }
    }
    vx_store *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        free(s);
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    }
    pthread_mutex_init(&s->wlock, NULL);
    pthread_mutex_init(&s->rlock, NULL);
    vx_err err = open_conn(path, 1, &s->w);
    if (err)
        goto fail;
    /* WAL: readers never block the writer.  synchronous=FULL: see the
     * header; every commit is on disk before vx_store_write returns. */
    char mode[16] = "";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->w, "PRAGMA journal_mode=WAL", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        snprintf(mode, sizeof mode, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    if (strcmp(mode, "wal")) {
        err = db_fail(s->w, VX_ERR_FORMAT, "cannot switch to WAL mode (not a database, or read-only)", path);
        goto fail;
    }
    if (exec(s->w, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON") != SQLITE_OK) {
        err = db_fail(s->w, VX_ERR_IO, "cannot configure", path);
        goto fail;
    }
    err = migrate(s->w, path);
    if (err)
        goto fail;
    err = open_conn(path, 0, &s->r);
    if (err)
        goto fail;
    for (int i = 0; i < ST_W_COUNT; i++)
        if (sqlite3_prepare_v3(s->w, write_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->ws[i], NULL) !=
            SQLITE_OK) {
            err = db_fail(s->w, VX_ERR_FORMAT, "cannot prepare a statement", path);
            goto fail;
        }
    for (int i = 0; i < SQ_COUNT; i++)
        if (sqlite3_prepare_v3(s->r, read_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->rs[i], NULL) !=
            SQLITE_OK) {
            err = db_fail(s->r, VX_ERR_FORMAT, "cannot prepare a query", path);
            goto fail;
        }
    *out = s;
    return VX_OK;
fail:
    vx_store_close(s);
    return err;
}

/* ---- writing ---------------------------------------------------------------------- */

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

static void bind_id(sqlite3_stmt *st, int i, int64_t v)
{
    if (v >= 0)
        sqlite3_bind_int64(st, i, v);
    else
        sqlite3_bind_null(st, i);
}

static int run(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static const char *state_name(vx_session_state st)
{
    return st == VX_SESSION_COMPLETED ? "completed" : st == VX_SESSION_FAILED ? "failed" : "open";
}

static int write_batch(vx_store *s, const vx_store_batch *b, int64_t *event_ids)
{
    int rc = SQLITE_OK;
    for (int i = 0; i < b->n_events && rc == SQLITE_OK; i++) {
        const vx_store_event *e = &b->events[i];
        sqlite3_stmt *st = s->ws[ST_INS_EVENT];
        bind_text(st, 1, e->gate_id ? e->gate_id : "");
        bind_text(st, 2, e->source ? e->source : "");
        bind_text(st, 3, e->session_id);
        bind_text(st, 4, e->type ? e->type : "");
        bind_id(st, 5, e->track_id);
        sqlite3_bind_double(st, 6, e->stream_ts);
        sqlite3_bind_double(st, 7, e->wall_ts);
        bind_text(st, 8, e->json ? e->json : "{}");
        rc = run(st);
        if (rc == SQLITE_OK && event_ids)
            event_ids[i] = sqlite3_last_insert_rowid(s->w);
    }
    for (int i = 0; i < b->n_sessions && rc == SQLITE_OK; i++) {
        const vx_store_session *x = &b->sessions[i];
        sqlite3_stmt *st = s->ws[ST_UPS_SESSION];
        bind_text(st, 1, x->session_id ? x->session_id : "");
        bind_text(st, 2, x->gate_id ? x->gate_id : "");
        bind_text(st, 3, x->source ? x->source : "");
        bind_id(st, 4, x->visitor_id);
        bind_id(st, 5, x->guard_id);
        bind_text(st, 6, state_name(x->state));
        bind_text(st, 7, x->reason);
        sqlite3_bind_double(st, 8, x->started_wall);
        if (x->ended_wall > 0)
            sqlite3_bind_double(st, 9, x->ended_wall);
        else
            sqlite3_bind_null(st, 9);
        if (x->score >= 0)
            sqlite3_bind_double(st, 10, x->score);
        else
            sqlite3_bind_null(st, 10);
        bind_text(st, 11, x->json);
        rc = run(st);
    }
    for (int i = 0; i < b->n_completions && rc == SQLITE_OK; i++) {
        const vx_store_completion *c = &b->completions[i];
        sqlite3_stmt *st = s->ws[ST_INS_COMPLETION];
        bind_text(st, 1, c->session_id ? c->session_id : "");
        bind_text(st, 2, c->gate_id ? c->gate_id : "");
        bind_text(st, 3, c->source ? c->source : "");
        bind_id(st, 4, c->visitor_id);
        bind_id(st, 5, c->guard_id);
        sqlite3_bind_double(st, 6, c->score);
        sqlite3_bind_double(st, 7, c->threshold);
        sqlite3_bind_double(st, 8, c->window_start);
        sqlite3_bind_double(st, 9, c->window_end);
        sqlite3_bind_double(st, 10, c->duration_s);
        sqlite3_bind_double(st, 11, c->wall_ts);
        bind_text(st, 12, c->json ? c->json : "{}");
        rc = run(st);
    }
    return rc;
}

vx_err vx_store_write(vx_store *s, const vx_store_batch *b, int64_t *event_ids)
{
    if (!b->n_events && !b->n_sessions && !b->n_completions)
        return VX_OK;
    pthread_mutex_lock(&s->wlock);
    vx_err err = VX_OK;
    if (exec(s->w, "BEGIN IMMEDIATE") != SQLITE_OK) {
        err = db_fail(s->w, VX_ERR_IO, "cannot begin a write", s->path);
    } else if (write_batch(s, b, event_ids) != SQLITE_OK) {
        err = db_fail(s->w, VX_ERR_IO, "write failed", s->path);
        exec(s->w, "ROLLBACK");
    } else if (exec(s->w, "COMMIT") != SQLITE_OK) {
        err = db_fail(s->w, VX_ERR_IO, "commit failed", s->path);
        exec(s->w, "ROLLBACK");
    }
    pthread_mutex_unlock(&s->wlock);
    return err;
}

static int64_t abandon(vx_store *s, int which, const char *key, const char *reason, double wall_ts)
{
    pthread_mutex_lock(&s->wlock);
    sqlite3_stmt *st = s->ws[which];
    bind_text(st, 1, key);
    bind_text(st, 2, reason ? reason : "abandoned");
    sqlite3_bind_double(st, 3, wall_ts);
    int64_t n = -1;
    /* One statement is its own transaction (autocommit), synced like the rest. */
    if (run(st) == SQLITE_OK)
        n = sqlite3_changes64(s->w);
    else
        db_fail(s->w, VX_ERR_IO, "cannot close open sessions", s->path);
    pthread_mutex_unlock(&s->wlock);
    return n;
}

int64_t vx_store_abandon_sessions(vx_store *s, const char *source, const char *reason, double wall_ts)
{
    return abandon(s, ST_ABANDON, source, reason, wall_ts);
}

int64_t vx_store_abandon_session(vx_store *s, const char *session_id, const char *reason, double wall_ts)
{
    if (!session_id)
        return 0;
    return abandon(s, ST_ABANDON_ONE, session_id, reason, wall_ts);
}

/* ---- queries ------------------------------------------------------------------------ */

/* A stored payload as JSON; one that does not parse (written by hand, or
 * damaged) is returned as a string rather than failing the whole query. */
static json_t *payload_json(sqlite3_stmt *st, int col)
{
    const char *text = (const char *)sqlite3_column_text(st, col);
    if (!text)
        return json_null();
    json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    return j ? j : json_string(text);
}

static void end_query(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

vx_err vx_store_completions(vx_store *s, double since, int limit, json_t **out)
{
    *out = NULL;
    json_t *arr = json_array();
    if (!arr)
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    pthread_mutex_lock(&s->rlock);
    sqlite3_stmt *st = s->rs[SQ_COMPLETIONS];
    sqlite3_bind_double(st, 1, since);
    sqlite3_bind_int(st, 2, limit);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *rec = payload_json(st, 2);
        if (!json_is_object(rec)) {
            json_t *wrap = json_object();
            json_object_set_new(wrap, "record", rec);
            rec = wrap;
        }
        json_object_set_new(rec, "id", json_integer(sqlite3_column_int64(st, 0)));
        json_object_set_new(rec, "stored_at", json_real(sqlite3_column_double(st, 1)));
        json_array_append_new(arr, rec);
    }
    vx_err err = rc == SQLITE_DONE ? VX_OK : db_fail(s->r, VX_ERR_IO, "completions query failed", s->path);
    end_query(st);
    pthread_mutex_unlock(&s->rlock);
    if (err) {
        json_decref(arr);
        return err;
    }
    *out = arr;
    return VX_OK;
}

static json_t *col_id(sqlite3_stmt *st, int col)
{
    return sqlite3_column_type(st, col) == SQLITE_NULL ? json_null()
                                                       : json_integer(sqlite3_column_int64(st, col));
}

static json_t *col_real(sqlite3_stmt *st, int col)
{
    return sqlite3_column_type(st, col) == SQLITE_NULL ? json_null()
                                                       : json_real(sqlite3_column_double(st, col));
}

static json_t *col_text(sqlite3_stmt *st, int col)
{
    const char *t = (const char *)sqlite3_column_text(st, col);
    return t ? json_string(t) : json_null();
}

vx_err vx_store_session_get(vx_store *s, const char *session_id, json_t **session, json_t **events)
{
    *session = *events = NULL;
    pthread_mutex_lock(&s->rlock);
    sqlite3_stmt *st = s->rs[SQ_SESSION];
    bind_text(st, 1, session_id);
    json_t *sess = NULL;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        sess = json_object();
        json_object_set_new(sess, "session_id", col_text(st, 0));
        json_object_set_new(sess, "gate_id", col_text(st, 1));
        json_object_set_new(sess, "source", col_text(st, 2));
        json_object_set_new(sess, "visitor_id", col_id(st, 3));
        json_object_set_new(sess, "guard_id", col_id(st, 4));
        json_object_set_new(sess, "state", col_text(st, 5));
        json_object_set_new(sess, "reason", col_text(st, 6));
        json_object_set_new(sess, "started_at", col_real(st, 7));
        json_object_set_new(sess, "ended_at", col_real(st, 8));
        json_object_set_new(sess, "score", col_real(st, 9));
        json_object_set_new(sess, "summary", payload_json(st, 10));
    }
    vx_err err = VX_OK;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        err = db_fail(s->r, VX_ERR_IO, "session query failed", s->path);
    end_query(st);
    json_t *evs = NULL;
    if (!err && sess) {
        evs = json_array();
        st = s->rs[SQ_SESSION_EVENTS];
        bind_text(st, 1, session_id);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            json_t *ev = payload_json(st, 1);
            if (json_is_object(ev))
                json_object_set_new(ev, "event_id", json_integer(sqlite3_column_int64(st, 0)));
            json_array_append_new(evs, ev);
        }
        if (rc != SQLITE_DONE)
            err = db_fail(s->r, VX_ERR_IO, "session events query failed", s->path);
        end_query(st);
    }
    pthread_mutex_unlock(&s->rlock);
    if (!err && !sess)
        err = vx_fail(VX_ERR_NOT_FOUND, "no session with that id");
    if (err) {
        json_decref(sess);
        json_decref(evs);
        return err;
    }
    *session = sess;
    *events = evs;
    return VX_OK;
}

vx_err vx_store_stats_get(vx_store *s, double start, double end, vx_store_stats *out)
{
    memset(out, 0, sizeof *out);
    if (end <= 0)
        end = 1e300;
    pthread_mutex_lock(&s->rlock);
    vx_err err = VX_OK;
    int rc;
    sqlite3_stmt *st = s->rs[SQ_STATS_SESSIONS];
    sqlite3_bind_double(st, 1, start);
    sqlite3_bind_double(st, 2, end);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *state = (const char *)sqlite3_column_text(st, 0);
        int64_t n = sqlite3_column_int64(st, 1);
        if (state && !strcmp(state, "completed"))
            out->completed = n;
        else
            out->failed = n;
    }
    if (rc != SQLITE_DONE)
        err = db_fail(s->r, VX_ERR_IO, "stats query failed", s->path);
    end_query(st);

    st = s->rs[SQ_STATS_COMPLETIONS];
    sqlite3_bind_double(st, 1, start);
    sqlite3_bind_double(st, 2, end);
    if (!err && sqlite3_step(st) == SQLITE_ROW) {
        out->avg_score = sqlite3_column_double(st, 1);
        out->avg_duration = sqlite3_column_double(st, 2);
    } else if (!err) {
        err = db_fail(s->r, VX_ERR_IO, "stats query failed", s->path);
    }
    end_query(st);

    st = s->rs[SQ_STATS_EVENTS];
    sqlite3_bind_double(st, 1, start);
    sqlite3_bind_double(st, 2, end);
    if (!err && sqlite3_step(st) == SQLITE_ROW)
        out->total_events = sqlite3_column_int64(st, 0);
    else if (!err)
        err = db_fail(s->r, VX_ERR_IO, "stats query failed", s->path);
    end_query(st);

    st = s->rs[SQ_OPEN_SESSIONS];
    if (!err && sqlite3_step(st) == SQLITE_ROW)
        out->open_sessions = sqlite3_column_int64(st, 0);
    else if (!err)
        err = db_fail(s->r, VX_ERR_IO, "stats query failed", s->path);
    end_query(st);
    pthread_mutex_unlock(&s->rlock);

    out->total_checks = out->completed + out->failed;
    out->success_rate = out->total_checks ? (double)out->completed / (double)out->total_checks : 0;
    return err;
}

int64_t vx_store_count(vx_store *s, const char *table)
{
    /* Table names cannot be bound: only the known ones are accepted. */
    const char *sql = !strcmp(table, "events")        ? "SELECT COUNT(*) FROM events"
                      : !strcmp(table, "sessions")    ? "SELECT COUNT(*) FROM sessions"
                      : !strcmp(table, "completions") ? "SELECT COUNT(*) FROM completions"
                                                      : NULL;
    if (!sql)
        return -1;
    int64_t n = -1;
    pthread_mutex_lock(&s->rlock);
    if (pragma_int(s->r, sql, &n) != SQLITE_OK)
        n = -1;
    pthread_mutex_unlock(&s->rlock);
    return n;
}
