/*
 * The gate's REST endpoints, apart from the transport: a request (method,
 * path, decoded query parameters, body) in, a status and a JSON document
 * out.  The store answers the history (completions, sessions, stats), the
 * pipelines the live state (rules, counts, engines).
 *
 *   GET  /gate/completions?start_time=T&limit=N   {"count","completions"}
 *   GET  /gate/session/{id}                       {"session","events"}
 *   GET  /gate/stats?start_time=T&end_time=T      {"total_checks","completed",
 *        "failed","success_rate","avg_score","avg_duration","total_events",
 *        "current_state"}
 *   GET  /gate/config                             the running rules
 *   POST /gate/config                             replace them (JSON body)
 *   POST /gate/reset                              forget tracks and open sessions
 *   GET  /counts, POST /counts/reset              the gate's counters
 *
 * Times are Unix seconds or ISO 8601 (2026-11-27T10:00:00Z, with an
 * optional fraction and offset; no offset means UTC).  A parameter given
 * twice, a value that does not parse or is out of range is a 400 naming
 * it; unknown parameters are ignored (cache busters).
 */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/server_internal.h"

#define JSON_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(13))
#define LIMIT_MAX 1000
#define SESSION_ID_MAX 200

static const char *const rest_paths[] = {"/gate/completions", "/gate/stats", "/gate/config",
                                         "/gate/reset",       "/counts",     "/counts/reset"};

int vx_rest_is_path(const char *path)
{
    if (!strncmp(path, "/gate/session/", 14))
        return 1;
    for (size_t i = 0; i < sizeof rest_paths / sizeof rest_paths[0]; i++)
        if (!strcmp(path, rest_paths[i]))
            return 1;
    return 0;
}

static void reply_json(vx_rest_reply *r, unsigned status, json_t *doc)
{
    r->status = status;
    r->body = doc ? json_dumps(doc, JSON_FLAGS) : NULL;
    json_decref(doc);
}

static void reply_detail(vx_rest_reply *r, unsigned status, const char *fmt, ...) VX_PRINTF(3, 4);
static void reply_detail(vx_rest_reply *r, unsigned status, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    r->status = status;
    r->body = vx_fmt_detail(text);
}

/* Unix seconds, or ISO 8601 in UTC or with an offset. */
int vx_rest_parse_time(const char *v, double *out)
{
    if (!*v)
        return -1;
    /* Plain decimal seconds only: no sign, exponent, hex or spaces. */
    size_t digits = strspn(v, "0123456789");
    int numeric =
        digits > 0 &&
        (!v[digits] || (v[digits] == '.' && strspn(v + digits + 1, "0123456789") == strlen(v + digits + 1)));
    char *end;
    double d = numeric ? strtod(v, &end) : 0;
    if (numeric) {
        if (!isfinite(d) || d < 0 || d > 1e11)
            return -1;
        *out = d;
        return 0;
    }
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *p = strptime(v, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        p = strptime(v, "%Y-%m-%d %H:%M:%S", &tm);
    if (!p) {
        memset(&tm, 0, sizeof tm);
        p = strptime(v, "%Y-%m-%d", &tm);
        if (!p || *p)
            return -1;
    }
    double frac = 0;
    if (*p == '.') {
        const char *q = p + 1;
        double scale = 0.1;
        if (!isdigit((unsigned char)*q))
            return -1;
        while (isdigit((unsigned char)*q)) {
            frac += (*q - '0') * scale;
            scale /= 10;
            q++;
        }
        p = q;
    }
    long offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1;
        int hh, mm;
        if (strlen(p) == 6 && sscanf(p + 1, "%2d:%2d", &hh, &mm) == 2 && p[3] == ':')
            p += 6;
        else if (strlen(p) == 5 && sscanf(p + 1, "%2d%2d", &hh, &mm) == 2)
            p += 5;
        else
            return -1;
        if (hh > 23 || mm > 59)
            return -1;
        offset = sign * (hh * 3600L + mm * 60L);
    }
    if (*p)
        return -1;
    time_t t = timegm(&tm);
    if (t == (time_t)-1 || t < 0)
        return -1;
    *out = (double)t - (double)offset + frac;
    return 0;
}

typedef struct {
    const char *name;
    const char *value;
} param;

/* Finds `name` among params: 0 absent, 1 found, -1 given twice. */
static int find_param(const char *const *params, int n, const char *name, const char **value)
{
    size_t nl = strlen(name);
    int found = 0;
    for (int i = 0; i < n; i++) {
        if (!strncmp(params[i], name, nl) && params[i][nl] == '=') {
            if (found)
                return -1;
            *value = params[i] + nl + 1;
            found = 1;
        }
    }
    return found;
}

/* The parameter checks every endpoint shares: name=value form. */
static int check_params(const char *const *params, int n, vx_rest_reply *r)
{
    for (int i = 0; i < n; i++) {
        const char *eq = strchr(params[i], '=');
        if (!eq || eq == params[i]) {
            reply_detail(r, 400, "malformed query parameter '%.64s': expected name=value", params[i]);
            return -1;
        }
    }
    return 0;
}

static int time_param(const char *const *params, int n, const char *name, double *out, vx_rest_reply *r)
{
    const char *v = NULL;
    int f = find_param(params, n, name, &v);
    if (f < 0) {
        reply_detail(r, 400, "query parameter '%s' given twice", name);
        return -1;
    }
    if (f == 0 || !*v)
        return 0; /* absent or empty: no bound */
    if (vx_rest_parse_time(v, out)) {
        reply_detail(r, 400,
                     "query parameter '%s=%.64s': expected Unix seconds or an ISO 8601 time such as "
                     "2026-11-27T10:00:00Z",
                     name, v);
        return -1;
    }
    return 0;
}

static int store_needed(const vx_rest_ctx *c, vx_rest_reply *r)
{
    if (c->store)
        return 0;
    reply_detail(r, 503, "no event store: the gate check is not configured (start with --gate-rules FILE)");
    return -1;
}

static int gate_needed(const vx_rest_ctx *c, vx_rest_reply *r)
{
    if (c->pipelines && vx_pipelines_gate_enabled(c->pipelines))
        return 0;
    reply_detail(r, 503, "the gate check is not configured (start with --gate-rules FILE)");
    return -1;
}

static void get_completions(const vx_rest_ctx *c, const char *const *params, int n, vx_rest_reply *r)
{
    double since = 0;
    long limit = 100;
    const char *v = NULL;
    if (time_param(params, n, "start_time", &since, r))
        return;
    int f = find_param(params, n, "limit", &v);
    if (f < 0) {
        reply_detail(r, 400, "query parameter 'limit' given twice");
        return;
    }
    if (f > 0) {
        char *end;
        limit = strtol(v, &end, 10);
        if (!*v || *end || limit < 1 || limit > LIMIT_MAX) {
            reply_detail(r, 400, "query parameter 'limit=%.32s': expected a whole number from 1 to %d", v,
                         LIMIT_MAX);
            return;
        }
    }
    if (store_needed(c, r))
        return;
    json_t *arr = NULL;
    if (vx_store_completions(c->store, since, (int)limit, &arr) != VX_OK) {
        reply_detail(r, 500, "%s", vx_last_error());
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "count", json_integer((json_int_t)json_array_size(arr)));
    json_object_set_new(o, "completions", arr);
    reply_json(r, 200, o);
}

static void get_session(const vx_rest_ctx *c, const char *id, vx_rest_reply *r)
{
    if (!*id) {
        reply_detail(r, 400, "session id missing: GET /gate/session/{id}");
        return;
    }
    size_t len = strlen(id);
    if (len > SESSION_ID_MAX) {
        reply_detail(r, 400, "session id too long (%zu bytes; at most %d)", len, SESSION_ID_MAX);
        return;
    }
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)id[i] < 0x20) {
            reply_detail(r, 400, "session id contains control characters");
            return;
        }
    if (store_needed(c, r))
        return;
    json_t *sess = NULL, *evs = NULL;
    vx_err err = vx_store_session_get(c->store, id, &sess, &evs);
    if (err == VX_ERR_NOT_FOUND) {
        json_t *o = json_object();
        json_object_set_new(o, "detail", json_string("no session with that id"));
        json_t *jid = json_string(id);
        json_object_set_new(o, "session_id", jid ? jid : json_null());
        reply_json(r, 404, o);
        return;
    }
    if (err) {
        reply_detail(r, 500, "%s", vx_last_error());
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "session", sess);
    json_object_set_new(o, "events", evs);
    reply_json(r, 200, o);
}

static void get_stats(const vx_rest_ctx *c, const char *const *params, int n, vx_rest_reply *r)
{
    double start = 0, end = 0;
    if (time_param(params, n, "start_time", &start, r) || time_param(params, n, "end_time", &end, r))
        return;
    if (end > 0 && end <= start) {
        reply_detail(r, 400, "end_time must be after start_time");
        return;
    }
    if (store_needed(c, r))
        return;
    vx_store_stats st;
    if (vx_store_stats_get(c->store, start, end, &st) != VX_OK) {
        reply_detail(r, 500, "%s", vx_last_error());
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "total_checks", json_integer(st.total_checks));
    json_object_set_new(o, "completed", json_integer(st.completed));
    json_object_set_new(o, "failed", json_integer(st.failed));
    json_object_set_new(o, "success_rate", json_real(round(st.success_rate * 1e4) / 1e4));
    json_object_set_new(o, "avg_score", json_real(round(st.avg_score * 1e4) / 1e4));
    json_object_set_new(o, "avg_duration", json_real(round(st.avg_duration * 1e3) / 1e3));
    json_object_set_new(o, "total_events", json_integer(st.total_events));
    json_t *state = c->pipelines ? vx_pipelines_gate_state(c->pipelines) : NULL;
    if (!state)
        state = json_object();
    json_object_set_new(state, "open_sessions", json_integer(st.open_sessions));
    json_object_set_new(o, "current_state", state);
    reply_json(r, 200, o);
}

static void get_config(const vx_rest_ctx *c, vx_rest_reply *r)
{
    if (gate_needed(c, r))
        return;
    vx_gate_config cfg;
    if (vx_pipelines_gate_config(c->pipelines, &cfg) != VX_OK) {
        reply_detail(r, 503, "%s", vx_last_error());
        return;
    }
    reply_json(r, 200, vx_gate_config_to_json(&cfg));
}

static json_t *issue_json(const vx_gate_issue *is)
{
    json_t *o = json_object();
    json_object_set_new(o, "line", json_integer(is->line));
    json_object_set_new(o, "column", json_integer(is->column));
    json_object_set_new(o, "key", json_string(is->key));
    json_object_set_new(o, "message", json_string(is->message));
    return o;
}

static void post_config(const vx_rest_ctx *c, const char *body, size_t len, vx_rest_reply *r)
{
    if (gate_needed(c, r))
        return;
    if (!body || !len) {
        reply_detail(r, 400, "empty body: POST the rules as a JSON document");
        return;
    }
    vx_gate_diag *diag = calloc(1, sizeof *diag);
    if (!diag) {
        reply_detail(r, 500, "out of memory");
        return;
    }
    vx_err err = vx_pipelines_gate_update(c->pipelines, body, len, diag);
    if (err) {
        /* Syntax errors (no key) are 400; valid JSON with bad rules 422. */
        unsigned status = err == VX_ERR_IO || err == VX_ERR_NOMEM ? 500
                          : diag->has_error && diag->error.key[0] ? 422
                                                                  : 400;
        json_t *o = json_object();
        json_object_set_new(o, "detail", json_string(vx_last_error()));
        if (!json_object_get(o, "detail"))
            json_object_set_new(o, "detail", json_string("invalid rules"));
        if (diag->has_error)
            json_object_set_new(o, "error", issue_json(&diag->error));
        json_object_set_new(o, "config_changed", json_false());
        reply_json(r, status, o);
        free(diag);
        return;
    }
    json_t *warn = json_array();
    for (int i = 0; i < diag->nwarnings && i < VX_GATE_WARN_MAX; i++)
        json_array_append_new(warn, issue_json(&diag->warnings[i]));
    free(diag);
    vx_gate_config cfg;
    vx_pipelines_gate_config(c->pipelines, &cfg);
    json_t *o = json_object();
    json_object_set_new(o, "status", json_string("ok"));
    json_object_set_new(o, "config", vx_gate_config_to_json(&cfg));
    json_object_set_new(o, "warnings", warn);
    reply_json(r, 200, o);
}

static void allow_only(vx_rest_reply *r, const char *path, const char *allow)
{
    reply_detail(r, 405, "method not allowed: %.200s accepts %s only", path, allow);
    r->allow = allow;
}

void vx_rest_handle(const vx_rest_ctx *c, const char *method, const char *path, const char *const *params,
                    int nparams, const char *body, size_t body_len, vx_rest_reply *r)
{
    memset(r, 0, sizeof *r);
    int get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    if (!strncmp(path, "/gate/session/", 14)) {
        if (!get)
            return allow_only(r, "/gate/session/{id}", "GET");
        if (check_params(params, nparams, r))
            return;
        return get_session(c, path + 14, r);
    }
    if (check_params(params, nparams, r))
        return;
    if (!strcmp(path, "/gate/completions")) {
        if (!get)
            return allow_only(r, path, "GET");
        return get_completions(c, params, nparams, r);
    }
    if (!strcmp(path, "/gate/stats")) {
        if (!get)
            return allow_only(r, path, "GET");
        return get_stats(c, params, nparams, r);
    }
    if (!strcmp(path, "/gate/config")) {
        if (get)
            return get_config(c, r);
        if (post)
            return post_config(c, body, body_len, r);
        return allow_only(r, path, "GET, POST");
    }
    if (!strcmp(path, "/gate/reset") || !strcmp(path, "/counts/reset")) {
        if (!post)
            return allow_only(r, path, "POST");
        if (gate_needed(c, r))
            return;
        int counts = !strcmp(path, "/counts/reset");
        vx_err err =
            counts ? vx_pipelines_gate_reset_counts(c->pipelines) : vx_pipelines_gate_reset(c->pipelines);
        if (err)
            return reply_detail(r, 503, "%s", vx_last_error());
        json_t *o = json_object();
        json_object_set_new(o, "status", json_string("ok"));
        json_object_set_new(o, "reset", json_string(counts ? "counts" : "gate"));
        return reply_json(r, 200, o);
    }
    if (!strcmp(path, "/counts")) {
        if (!get)
            return allow_only(r, path, "GET");
        if (gate_needed(c, r))
            return;
        json_t *o = vx_pipelines_gate_counts(c->pipelines);
        if (!o)
            return reply_detail(r, 503, "the gate check is not configured (start with --gate-rules FILE)");
        return reply_json(r, 200, o);
    }
    reply_detail(r, 404, "not found: %.200s", path);
}
