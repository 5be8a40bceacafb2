/*
 * The gate stage of a pipeline: after detection, the gate engine (tracker,
 * zones, state machine) runs on the frame; the events, session changes and
 * completion records it produced are committed to the store, and only then
 * published (MQTT here, the WebSocket clients by the caller through the
 * result message).  A commit that fails means the frame's events are not
 * published at all: a client never sees what the store does not have.
 *
 * Also the gate's run-time control for the server: the running rules
 * (read, replaced and persisted), resets, counts and the current state, over
 * every pipeline that runs a gate.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pipeline/pipeline_internal.h"

struct vx_gate_stage {
    vx_gate *gate;
    vx_gate_result res;
    vx_store *store;
    vx_mqtt *mqtt;
    char source[256];
    vx_track_det *dets;
    int cap_dets;
    /* Scratch for one frame's rows. */
    vx_store_event *ev;
    vx_store_session *sess;
    vx_store_completion *comp;
    char **texts;
    int64_t *ids;
    int cap_ev, cap_ids, cap_sess, cap_comp, cap_texts;
    uint64_t store_errors;
    /* Sessions opened and not concluded yet, with the stream time they
     * were last seen in the engine's persons (pipeline thread only). */
    struct open_session {
        char id[VX_GATE_SESSION_MAX];
        uint32_t track; /* the visitor */
        double last_seen;
    } * open;
    int nopen, cap_open;
    pthread_mutex_t lock; /* last_decisions, t_last */
    char *last_decisions;
    double t_last;
};

static int grow(void **p, int *cap, int need, size_t elem)
{
    if (need <= *cap)
        return 0;
    int n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, (size_t)n * elem);
    if (!q)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

vx_err vx_gate_stage_create(const vx_gate_config *cfg, vx_store *store, vx_mqtt *mqtt, const char *source,
                            vx_gate_stage **out)
{
    *out = NULL;
    vx_gate_stage *g = calloc(1, sizeof *g);
    if (!g)
        return vx_fail(VX_ERR_NOMEM, "out of memory");
    vx_gate_opts go;
    vx_gate_opts_default(&go);
    /* Session ids must stay unique in the store across runs (and across
     * the sources of one run): the start time in milliseconds and a
     * process-wide counter. */
    static atomic_uint counter;
    unsigned n = atomic_fetch_add(&counter, 1);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(go.run_id, sizeof go.run_id, "%llx%x",
             (unsigned long long)ts.tv_sec * 1000ULL + (unsigned long long)(ts.tv_nsec / 1000000), n);
    vx_err err = vx_gate_create(cfg, &go, &g->gate);
    if (err) {
        free(g);
        return err;
    }
    vx_gate_result_init(&g->res);
    g->store = store;
    g->mqtt = mqtt;
    snprintf(g->source, sizeof g->source, "%s", source ? source : "");
    pthread_mutex_init(&g->lock, NULL);
    *out = g;
    return VX_OK;
}

void vx_gate_stage_destroy(vx_gate_stage *g)
{
    if (!g)
        return;
    vx_gate_destroy(g->gate);
    vx_gate_result_free(&g->res);
    for (int i = 0; i < g->cap_texts; i++)
        free(g->texts[i]);
    free(g->texts);
    free(g->dets);
    free(g->ev);
    free(g->sess);
    free(g->comp);
    free(g->ids);
    free(g->last_decisions);
    free(g->open);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

vx_gate *vx_gate_stage_engine(vx_gate_stage *g)
{
    return g->gate;
}

/* Keeps a malloc'ed text alive until the next frame. */
static const char *keep(vx_gate_stage *g, int *nt, char *text)
{
    if (!text)
        return NULL;
    if (*nt >= g->cap_texts) {
        int old = g->cap_texts;
        if (grow((void **)&g->texts, &g->cap_texts, *nt + 1, sizeof *g->texts)) {
            free(text);
            return NULL;
        }
        memset(g->texts + old, 0, (size_t)(g->cap_texts - old) * sizeof *g->texts);
    }
    free(g->texts[*nt]);
    g->texts[(*nt)++] = text;
    return text;
}

/* Keeps the list of open sessions current and closes, as abandoned, the
 * ones the engine dropped without a verdict.  A visitor promoted to guard
 * (a guard who waited inside the gate, or dwelt in the anchor) loses its
 * session in the frame of its guard_anchored event: closed then, reason
 * "promoted_to_guard".  Anything else (a reset): a session the engine
 * still holds shows in its persons; one missing for longer than the
 * session timeout (after which the engine itself would have given a
 * verdict) is gone.  A verdict that still comes later overwrites the
 * abandonment. */
static void follow_sessions(vx_gate_stage *g, const vx_gate_result *r, double timeout_s, double wall_s)
{
    if (r->discontinuity)
        g->nopen = 0;
    for (int i = 0; i < r->nevents; i++) {
        const vx_gate_event *e = &r->events[i];
        if (e->type != VX_GATE_EV_PERSON_ENTERED || !e->session_id[0])
            continue;
        if (grow((void **)&g->open, &g->cap_open, g->nopen + 1, sizeof *g->open))
            return;
        snprintf(g->open[g->nopen].id, sizeof g->open[g->nopen].id, "%s", e->session_id);
        g->open[g->nopen].track = e->track_id;
        g->open[g->nopen++].last_seen = r->t;
    }
    for (int k = 0; k < g->nopen;) {
        struct open_session *o = &g->open[k];
        int done = 0;
        for (int i = 0; i < r->ncompletions && !done; i++)
            done = !strcmp(r->completions[i].session_id, o->id);
        for (int i = 0; i < r->nevents && !done; i++) {
            const vx_gate_event *e = &r->events[i];
            if (e->type != VX_GATE_EV_GUARD_ANCHORED || e->track_id != o->track)
                continue;
            if (g->store && vx_store_abandon_session(g->store, o->id, "promoted_to_guard", wall_s) > 0)
                VX_INFO("gate %s: session %s ended without a verdict (its visitor became a guard)", g->source,
                        o->id);
            done = 1;
        }
        for (int i = 0; i < r->npersons && !done; i++)
            if (!strcmp(r->persons[i].session_id, o->id))
                o->last_seen = r->t;
        if (!done && r->t - o->last_seen > timeout_s + 2.0) {
            if (g->store && vx_store_abandon_session(g->store, o->id, "dropped", wall_s) > 0)
                VX_INFO("gate %s: session %s ended without a verdict (the engine dropped it)", g->source,
                        o->id);
            done = 1;
        }
        if (done)
            g->open[k] = g->open[--g->nopen];
        else
            k++;
    }
}

/* Adds the gate and source to o (kept by the caller) and renders it. */
static char *dump_with(json_t *o, const char *gate_id, const char *source)
{
    if (!o)
        return NULL;
    json_object_set_new(o, "gate_id", json_string(gate_id));
    json_object_set_new(o, "source", json_string(source));
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(13));
    return s;
}

char *vx_gate_stage_run(vx_gate_stage *g, const vx_pipeline_det *dets, int n, int width, int height,
                        double pts_s, double wall_s)
{
    if (grow((void **)&g->dets, &g->cap_dets, n > 0 ? n : 1, sizeof *g->dets))
        return NULL;
    for (int i = 0; i < n; i++)
        g->dets[i] =
            (vx_track_det){dets[i].x1, dets[i].y1, dets[i].x2, dets[i].y2, dets[i].conf, dets[i].cls};
    vx_gate_frame fr = {g->dets, n, width, height, pts_s};
    vx_gate_result *r = &g->res;
    if (vx_gate_process(g->gate, &fr, r) != VX_OK) {
        VX_WARN("gate %s: %s", g->source, vx_last_error());
        return NULL;
    }
    vx_gate_config cfg;
    vx_gate_get_config(g->gate, &cfg);
    const char *gate_id = cfg.gate_id;
    if (r->discontinuity && g->store) {
        /* The engine dropped its sessions (the stream's time went back). */
        int64_t k = vx_store_abandon_sessions(g->store, g->source, "stream_restarted", wall_s);
        if (k > 0)
            VX_INFO("gate %s: stream time went back; %lld open sessions closed as abandoned", g->source,
                    (long long)k);
    }

    /* Rows for the store: every event; a session opened per entry, closed
     * by its verdict; every completed check's record. */
    json_t *events = json_array();
    int nt = 0, ns = 0, nc = 0;
    if (grow((void **)&g->ev, &g->cap_ev, r->nevents + 1, sizeof *g->ev) ||
        grow((void **)&g->ids, &g->cap_ids, r->nevents + 1, sizeof *g->ids) ||
        grow((void **)&g->sess, &g->cap_sess, r->nevents + r->ncompletions + 1, sizeof *g->sess) ||
        grow((void **)&g->comp, &g->cap_comp, r->ncompletions + 1, sizeof *g->comp)) {
        json_decref(events);
        return NULL;
    }
    json_t **evobj = r->nevents ? calloc((size_t)r->nevents, sizeof *evobj) : NULL;
    char **comp_text = r->ncompletions ? calloc((size_t)r->ncompletions, sizeof *comp_text) : NULL;
    if ((r->nevents && !evobj) || (r->ncompletions && !comp_text)) {
        /* Nothing stored, so nothing may be sent: the frame goes out
         * without its gate part. */
        free(evobj);
        free(comp_text);
        json_decref(events);
        VX_ERROR("gate %s: out of memory; %d events of this frame lost", g->source, r->nevents);
        return NULL;
    }
    for (int i = 0; i < r->nevents; i++) {
        const vx_gate_event *e = &r->events[i];
        evobj[i] = vx_gate_event_to_json(e);
        g->ev[i] = (vx_store_event){
            .gate_id = gate_id,
            .source = g->source,
            .session_id = e->session_id[0] ? e->session_id : NULL,
            .type = vx_gate_event_type_name(e->type),
            .track_id = e->track_id,
            .stream_ts = e->t,
            .wall_ts = wall_s,
            .json = keep(g, &nt, dump_with(evobj[i], gate_id, g->source)),
        };
        if (e->type == VX_GATE_EV_PERSON_ENTERED && e->session_id[0])
            g->sess[ns++] =
                (vx_store_session){e->session_id, gate_id, g->source, e->track_id, -1,  VX_SESSION_OPEN,
                                   NULL,          wall_s,  0,         -1,          NULL};
    }
    for (int i = 0; i < r->ncompletions; i++) {
        const vx_gate_completion *c = &r->completions[i];
        json_t *cj = vx_gate_completion_to_json(c);
        comp_text[i] = dump_with(cj, gate_id, g->source);
        json_decref(cj);
        /* The session may have opened before this run's store writes (or
         * in a frame whose commit failed): the upsert creates it then. */
        double started = wall_s - (c->window_end - c->window_start);
        g->sess[ns++] = (vx_store_session){c->session_id,
                                           gate_id,
                                           g->source,
                                           c->visitor_id,
                                           c->guard_id ? (int64_t)c->guard_id : -1,
                                           c->completed ? VX_SESSION_COMPLETED : VX_SESSION_FAILED,
                                           c->completed ? NULL : vx_gate_fail_reason_name(c->reason),
                                           started,
                                           wall_s,
                                           c->score,
                                           comp_text[i]};
        if (c->completed)
            g->comp[nc++] = (vx_store_completion){
                c->session_id, gate_id,      g->source,       c->visitor_id, c->guard_id,
                c->score,      c->threshold, c->window_start, c->window_end, c->window_end - c->window_start,
                wall_s,        comp_text[i]};
    }
    int committed = 1;
    if (g->store && (r->nevents || ns || nc)) {
        vx_store_batch b = {g->ev, r->nevents, g->sess, ns, g->comp, nc};
        if (vx_store_write(g->store, &b, g->ids) != VX_OK) {
            committed = 0;
            g->store_errors++;
            if (g->store_errors == 1 || g->store_errors % 100 == 0)
                VX_ERROR("gate %s: %s; %d events not published (%llu failed writes)", g->source,
                         vx_last_error(), r->nevents, (unsigned long long)g->store_errors);
        }
    } else {
        for (int i = 0; i < r->nevents; i++)
            g->ids[i] = 0;
    }

    /* Published only once committed. */
    for (int i = 0; i < r->nevents && committed; i++) {
        json_t *o = evobj[i];
        if (g->ids[i] > 0)
            json_object_set_new(o, "event_id", json_integer(g->ids[i]));
        json_array_append(events, o);
        if (g->mqtt) {
            char topic[160];
            vx_mqtt_topic(gate_id, "events", topic, sizeof topic);
            char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(13));
            if (text)
                vx_mqtt_publish(g->mqtt, topic, text, strlen(text));
            free(text);
        }
    }
    for (int i = 0; i < r->ncompletions && committed && g->mqtt; i++) {
        char topic[160];
        vx_mqtt_topic(gate_id, "completions", topic, sizeof topic);
        if (comp_text[i])
            vx_mqtt_publish(g->mqtt, topic, comp_text[i], strlen(comp_text[i]));
    }
    for (int i = 0; i < r->nevents; i++)
        json_decref(evobj[i]);
    free(evobj);
    for (int i = 0; i < r->ncompletions; i++)
        free(comp_text[i]);
    free(comp_text);

    follow_sessions(g, r, cfg.session_timeout_s, wall_s);

    json_t *decisions = vx_gate_decisions_to_json(r);
    if (!committed && decisions)
        json_object_set_new(decisions, "completions", json_array());
    json_t *doc = json_object();
    json_object_set_new(doc, "decisions", decisions ? decisions : json_object());
    json_object_set_new(doc, "stats", vx_gate_counts_to_json(&r->counts));
    json_object_set_new(doc, "events", events);
    json_object_set_new(doc, "gate_id", json_string(gate_id));
    json_object_set_new(doc, "stream_time", json_real(r->t));
    char *text = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(13));
    char *dec = decisions
                    ? json_dumps(decisions, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(13))
                    : NULL;
    json_decref(doc);
    pthread_mutex_lock(&g->lock);
    free(g->last_decisions);
    g->last_decisions = dec;
    g->t_last = r->t;
    pthread_mutex_unlock(&g->lock);
    return text;
}

json_t *vx_gate_stage_state(vx_gate_stage *g)
{
    json_t *o = json_object();
    pthread_mutex_lock(&g->lock);
    json_t *dec = g->last_decisions ? json_loads(g->last_decisions, 0, NULL) : NULL;
    double t = g->t_last;
    uint64_t errors = g->store_errors;
    pthread_mutex_unlock(&g->lock);
    vx_gate_counts c;
    vx_gate_get_counts(g->gate, &c);
    json_object_set_new(o, "stream_time", json_real(t));
    json_object_set_new(o, "in_gate", json_integer((json_int_t)c.in_gate));
    json_t *persons = json_object_get(dec, "persons");
    json_t *guards = json_object_get(dec, "guards");
    json_object_set_new(o, "persons", persons ? json_incref(persons) : json_object());
    json_object_set_new(o, "guards", guards ? json_incref(guards) : json_object());
    json_object_set_new(o, "store_errors", json_integer((json_int_t)errors));
    json_decref(dec);
    return o;
}

/* ---- rules files ------------------------------------------------------------------- */

static vx_err write_all_fsync(const char *path, const char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        return vx_fail(VX_ERR_IO, "%s: %s", path, strerror(errno));
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            unlink(path);
            return vx_fail(VX_ERR_IO, "writing %s: %s", path, strerror(e));
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(path);
        return vx_fail(VX_ERR_IO, "fsync %s: %s", path, strerror(e));
    }
    close(fd);
    return VX_OK;
}

static void fsync_dir(const char *path)
{
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* tmp + fsync + rename: readers see the old file or the new one, never a
 * part of either; the folder is synced so the rename itself is durable. */
static vx_err replace_file(const char *path, const char *data, size_t len)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    vx_err err = write_all_fsync(tmp, data, len);
    if (err)
        return err;
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return vx_fail(VX_ERR_IO, "rename %s -> %s: %s", tmp, path, strerror(e));
    }
    fsync_dir(path);
    return VX_OK;
}

vx_err vx_gate_rules_save(const char *path, const char *text, size_t len)
{
    /* The previous version first, as <path>.bak (itself replaced
     * atomically), so that at every moment both the running rules and a
     * backup exist on disk. */
    uint8_t *old = NULL;
    size_t old_len = 0;
    if (vx_read_file(path, 16 << 20, &old, &old_len) == VX_OK) {
        char bak[4200];
        snprintf(bak, sizeof bak, "%s.bak", path);
        vx_err err = replace_file(bak, (const char *)old, old_len);
        free(old);
        if (err)
            return err;
    }
    return replace_file(path, text, len);
}
