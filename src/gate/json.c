/*
 * The gate's JSON shapes (see vx_gate.h), shared by the WebSocket messages,
 * the store and MQTT so that a client, a database row and a broker message
 * read the same.  Times are stream seconds rounded to the millisecond,
 * positions to 0.1 pixel, scores and ratios to 4 decimals; maps keyed by
 * track id come out in id order, so two replays serialise byte for byte
 * alike.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>

#include "gate/vx_gate.h"

#define JSON_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(13))

static json_t *jnum(double v, double unit)
{
    if (!isfinite(v))
        return json_null();
    return json_real(round(v / unit) * unit);
}

static json_t *jtime(double t)
{
    return jnum(t, 1e-3);
}

/* Ids and zone names are restricted to safe characters by the loader;
 * session ids are built from them.  A NULL from json_string (invalid UTF-8)
 * still must not break the document. */
static json_t *jstr(const char *s)
{
    json_t *j = json_string(s ? s : "");
    return j ? j : json_string("");
}

json_t *vx_gate_event_to_json(const vx_gate_event *ev)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "seq", json_integer((json_int_t)ev->seq));
    json_object_set_new(o, "type", json_string(vx_gate_event_type_name(ev->type)));
    json_object_set_new(o, "t", jtime(ev->t));
    json_object_set_new(o, "track_id", json_integer(ev->track_id));
    json_object_set_new(o, "other_id", ev->other_id ? json_integer(ev->other_id) : json_null());
    json_object_set_new(o, "zone", jstr(ev->zone));
    json_object_set_new(o, "x", jnum(ev->x, 0.1));
    json_object_set_new(o, "y", jnum(ev->y, 0.1));
    json_object_set_new(o, "confidence", jnum(ev->confidence, 1e-4));
    json_object_set_new(o, "session_id", ev->session_id[0] ? jstr(ev->session_id) : json_null());
    json_object_set_new(o, "reason",
                        ev->reason != VX_GATE_FAIL_NONE ? json_string(vx_gate_fail_reason_name(ev->reason))
                                                        : json_null());
    return o;
}

json_t *vx_gate_completion_to_json(const vx_gate_completion *c)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "session_id", jstr(c->session_id));
    json_object_set_new(o, "gate_id", jstr(c->gate_id));
    json_object_set_new(o, "visitor_id", json_integer(c->visitor_id));
    json_object_set_new(o, "guard_id", c->guard_id ? json_integer(c->guard_id) : json_null());
    json_object_set_new(o, "status", json_string(c->completed ? "completed" : "failed"));
    json_object_set_new(o, "reason",
                        c->completed ? json_null() : json_string(vx_gate_fail_reason_name(c->reason)));
    json_object_set_new(o, "window_start", jtime(c->window_start));
    json_object_set_new(o, "window_end", jtime(c->window_end));
    json_object_set_new(o, "visitor_dwell_s", jtime(c->visitor_dwell_s));
    json_object_set_new(o, "guard_dwell_s", jtime(c->guard_dwell_s));
    json_object_set_new(o, "interaction_s", jtime(c->interaction_s));
    json_object_set_new(o, "min_center_dist",
                        c->min_center_dist >= 0 ? jnum(c->min_center_dist, 1e-4) : json_null());
    json_object_set_new(o, "max_iou", jnum(c->max_iou, 1e-4));
    json_object_set_new(o, "score", jnum(c->score, 1e-4));
    json_object_set_new(o, "threshold", jnum(c->threshold, 1e-4));
    json_object_set_new(o, "criteria",
                        json_pack("{sbsbsbsb}", "visitor_dwell", c->criteria.visitor_dwell, "guard_dwell",
                                  c->criteria.guard_dwell, "interaction", c->criteria.interaction, "score",
                                  c->criteria.score));
    json_t *tl = json_array();
    for (int i = 0; i < c->ntimeline; i++)
        json_array_append_new(tl, vx_gate_event_to_json(&c->timeline[i]));
    json_object_set_new(o, "timeline", tl);
    return o;
}

json_t *vx_gate_decisions_to_json(const vx_gate_result *res)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_t *persons = json_object();
    char key[16];
    for (int i = 0; i < res->npersons; i++) {
        const vx_gate_person *p = &res->persons[i];
        json_t *e = json_object();
        json_object_set_new(e, "role", json_string(vx_gate_role_name(p->role)));
        json_object_set_new(e, "state", json_string(vx_gate_state_name(p->state)));
        json_object_set_new(e, "in_gate", json_boolean(p->in_gate));
        json_object_set_new(e, "dwell", jtime(p->dwell_s));
        json_object_set_new(e, "interaction", jtime(p->interaction_s));
        json_object_set_new(e, "assigned_guard", p->guard_id ? json_integer(p->guard_id) : json_null());
        json_object_set_new(e, "contact", json_boolean(p->contact));
        json_object_set_new(e, "score", jnum(p->score, 1e-4));
        json_object_set_new(e, "session_id", p->session_id[0] ? jstr(p->session_id) : json_null());
        json_object_set_new(e, "x", jnum(p->x, 0.1));
        json_object_set_new(e, "y", jnum(p->y, 0.1));
        snprintf(key, sizeof key, "%u", p->id);
        json_object_set_new(persons, key, e);
    }
    json_object_set_new(o, "persons", persons);
    json_t *guards = json_object();
    for (int i = 0; i < res->nguards; i++) {
        const vx_gate_guard *gd = &res->guards[i];
        snprintf(key, sizeof key, "%u", gd->id);
        json_object_set_new(guards, key,
                            json_pack("{sbsososo}", "anchored", gd->anchored, "dwell", jtime(gd->dwell_s),
                                      "x", jnum(gd->x, 0.1), "y", jnum(gd->y, 0.1)));
    }
    json_object_set_new(o, "guards", guards);
    json_t *comps = json_array();
    for (int i = 0; i < res->ncompletions; i++)
        json_array_append_new(comps, vx_gate_completion_to_json(&res->completions[i]));
    json_object_set_new(o, "completions", comps);
    return o;
}

json_t *vx_gate_counts_to_json(const vx_gate_counts *c)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "gate_entries", json_integer((json_int_t)c->gate_entries));
    json_object_set_new(o, "gate_exits", json_integer((json_int_t)c->gate_exits));
    json_object_set_new(o, "anchor_entries", json_integer((json_int_t)c->anchor_entries));
    json_object_set_new(o, "anchor_exits", json_integer((json_int_t)c->anchor_exits));
    json_object_set_new(o, "in_gate", json_integer((json_int_t)c->in_gate));
    json_object_set_new(o, "passed_through", json_integer((json_int_t)c->passed_through));
    json_object_set_new(o, "checks_completed", json_integer((json_int_t)c->checks_completed));
    json_object_set_new(o, "checks_failed", json_integer((json_int_t)c->checks_failed));
    json_t *by = json_object();
    for (int r = VX_GATE_FAIL_NO_GUARD; r <= VX_GATE_FAIL_TIMEOUT; r++)
        json_object_set_new(by, vx_gate_fail_reason_name((vx_gate_fail_reason)r),
                            json_integer((json_int_t)c->failed_by_reason[r]));
    json_object_set_new(o, "failed_by_reason", by);
    json_object_set_new(o, "frames", json_integer((json_int_t)c->frames));
    return o;
}

json_t *vx_gate_result_to_json(const vx_gate_result *res)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "t", jtime(res->t));
    json_t *evs = json_array();
    for (int i = 0; i < res->nevents; i++)
        json_array_append_new(evs, vx_gate_event_to_json(&res->events[i]));
    json_object_set_new(o, "events", evs);
    json_object_set_new(o, "decisions", vx_gate_decisions_to_json(res));
    json_object_set_new(o, "stats", vx_gate_counts_to_json(&res->counts));
    return o;
}

static char *dump(json_t *o)
{
    if (!o)
        return NULL;
    char *s = json_dumps(o, JSON_FLAGS);
    json_decref(o);
    return s;
}

char *vx_gate_event_json(const vx_gate_event *ev)
{
    return dump(vx_gate_event_to_json(ev));
}

char *vx_gate_completion_json(const vx_gate_completion *c)
{
    return dump(vx_gate_completion_to_json(c));
}
