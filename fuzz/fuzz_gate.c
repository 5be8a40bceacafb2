/*
 * libFuzzer target for the gate-security rules and zone parsers
 * (vx_gate_config_parse, vx_gate_zone_parse) and the gate engine behind
 * them: `POST /gate/config` hands an untrusted body to the parser and the
 * config it returns to the running engines.
 *
 * Each input is parsed as a rules document and, separately, as a zone file.
 * Zone entries that name files resolve against an empty private directory,
 * so relative names find nothing.  (The parser opens absolute paths and
 * "../" names as given, as it must for a rules file on disk; an input that
 * names a real file of the machine only gets it parsed as a zone.)
 *
 * A rules document that parses must validate, and its JSON form
 * (vx_gate_config_json) must parse back to the same config, whose JSON is
 * byte-identical.
 * It then runs in an engine for 30 frames (640x480, 10 fps stream time) of
 * synthetic people whose paths come from a PRNG seeded by a hash of the
 * input: they walk towards the zones, stand, jitter, drop out for a few
 * frames, some too small to count, so the filters, roles and sessions all
 * get exercised.  The engine must accept every frame and produce consistent
 * events and records.  A zone that parses must validate as the zone of its
 * slot in a config.  Every failure must name the document.
 *
 * The seeds in fuzz/corpus/gate are vx_gate_config_json output: the rules
 * of config/gate with the zones inline, variants of them, and the two zone
 * files.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/vx_core.h"
#include "gate/vx_gate.h"

#define NAME "fuzz.json"
#define FRAME_W 640
#define FRAME_H 480
#define FPS 10
#define FRAMES 30
#define PEOPLE_MAX 6

/* VX_FUZZ_VERBOSE=1: one line per input saying whether it loaded (run-fuzzers
 * checks that the seeds are valid rules or zone files). */
static int verbose;
static char base_dir[64];

static void cleanup(void)
{
    if (base_dir[0])
        rmdir(base_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    vx_log_set_level(VX_LOG_OFF);
    const char *v = getenv("VX_FUZZ_VERBOSE");
    verbose = v && *v == '1';
    const char *tmp = getenv("TMPDIR");
    snprintf(base_dir, sizeof base_dir, "%s/fuzz_gate.XXXXXX",
             tmp && *tmp && strlen(tmp) < 40 ? tmp : "/tmp");
    if (!mkdtemp(base_dir)) {
        perror("fuzz_gate: mkdtemp");
        abort();
    }
    atexit(cleanup);
    return 0;
}

/* ---- deterministic scene ------------------------------------------------------ */

static uint64_t hash_bytes(const uint8_t *d, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ d[i]) * 1099511628211ull;
    return h;
}

static uint64_t next(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double uni(uint64_t *s, double lo, double hi) /* [lo, hi) */
{
    return lo + (hi - lo) * (double)(next(s) >> 11) * 0x1.0p-53;
}

/* A point of the zone, in pixels of the frame: a vertex or the vertex mean. */
static void zone_point(const vx_gate_zone *z, uint64_t *s, double *x, double *y)
{
    double px = 0, py = 0;
    int k = (int)(next(s) % (uint64_t)(z->npoints + 1));
    if (k == z->npoints) {
        for (int i = 0; i < z->npoints; i++)
            px += z->pts[i][0], py += z->pts[i][1];
        px /= z->npoints, py /= z->npoints;
    } else {
        px = z->pts[k][0], py = z->pts[k][1];
    }
    if (z->normalized)
        px *= FRAME_W, py *= FRAME_H;
    *x = px;
    *y = py;
}

typedef struct {
    /* foot point: (x0, y0) at frame start, walks to (x1, y1) by frame arrive,
     * stands until frame leave, then walks to (x2, y2) by frame gone */
    double x0, y0, x1, y1, x2, y2;
    int start, arrive, leave, gone;
    int hide_from, hide_to; /* frames without a detection (occlusion) */
    double h;               /* box height, pixels */
    float conf;
    int cls;
} person;

static int walk_frames(double xa, double ya, double xb, double yb, double speed)
{
    return 1 + (int)(hypot(xb - xa, yb - ya) / speed);
}

/* Where a walk goes: 0 anywhere, 1 the gate area, 2 the guard anchor (the
 * gate area without one), 3 a frame edge. */
static void place(const vx_gate_config *cfg, uint64_t *s, int where, double *x, double *y)
{
    if (where == 1 || (where == 2 && !cfg->has_guard_anchor)) {
        zone_point(&cfg->gate_area, s, x, y);
    } else if (where == 2) {
        zone_point(&cfg->guard_anchor, s, x, y);
    } else if (where == 3) {
        *x = next(s) % 2 ? 0 : FRAME_W;
        *y = uni(s, 0, FRAME_H);
    } else {
        *x = uni(s, 0, FRAME_W);
        *y = uni(s, 0, FRAME_H);
    }
}

static void make_people(const vx_gate_config *cfg, uint64_t *s, person *p, int n)
{
    for (int i = 0; i < n; i++) {
        person *q = &p[i];
        /* most walk into a zone from close by, at 5 to 30 px a frame (a
         * tracker keeps them), and stand; some walk out again */
        place(cfg, s, (int)(next(s) % 4) == 0 ? 0 : 1 + (int)(next(s) % 2), &q->x1, &q->y1);
        double r = uni(s, 0, 200), a = uni(s, 0, 6.283185307179586);
        q->x0 = q->x1 + r * cos(a);
        q->y0 = q->y1 + r * sin(a);
        place(cfg, s, (int)(next(s) % 4), &q->x2, &q->y2);
        double speed = uni(s, 5, 30);
        q->start = next(s) % 2 ? 0 : (int)(next(s) % 10);
        q->arrive = q->start + walk_frames(q->x0, q->y0, q->x1, q->y1, speed);
        q->leave = q->arrive + (int)(next(s) % FRAMES);
        q->gone = q->leave + walk_frames(q->x1, q->y1, q->x2, q->y2, speed);
        q->hide_from = q->hide_to = -1;
        if (next(s) % 4 == 0) {
            q->hide_from = (int)(next(s) % FRAMES);
            q->hide_to = q->hide_from + 1 + (int)(next(s) % 8);
        }
        q->h = next(s) % 8 ? uni(s, 60, 260) : uni(s, 5, 80); /* some below min_box_height_px */
        q->conf = (float)(next(s) % 6 ? uni(s, 0.6, 1.0) : uni(s, 0.05, 0.6));
        int c = (int)(next(s) % 8);
        q->cls = c < 7 ? cfg->person_classes[c % cfg->n_person_classes] : (int)(next(s) % 100);
    }
}

static int person_at(const person *q, int k, uint64_t *s, vx_track_det *d)
{
    if (k < q->start || (k >= q->hide_from && k < q->hide_to))
        return 0;
    double x, y;
    if (k < q->arrive) {
        double u = (double)(k - q->start) / (q->arrive - q->start);
        x = q->x0 + u * (q->x1 - q->x0), y = q->y0 + u * (q->y1 - q->y0);
    } else if (k < q->leave) {
        x = q->x1, y = q->y1;
    } else {
        double u = k < q->gone ? (double)(k - q->leave) / (q->gone - q->leave) : 1;
        x = q->x1 + u * (q->x2 - q->x1), y = q->y1 + u * (q->y2 - q->y1);
    }
    x += uni(s, -2, 2); /* detector jitter */
    y += uni(s, -2, 2);
    double w = q->h * 0.4;
    *d = (vx_track_det){(float)(x - w / 2), (float)(y - q->h), (float)(x + w / 2), (float)y, q->conf, q->cls};
    return 1;
}

static int pose(void *user, uint32_t visitor_id, uint32_t guard_id, double t, double *term)
{
    (void)user;
    uint64_t h = visitor_id * 2654435761u ^ guard_id * 40503u ^ (uint64_t)llround(t * 10);
    if (h % 3 == 0)
        return 0;
    *term = (double)(h % 101) / 100.0;
    return 1;
}

static void check_event(const vx_gate_event *ev, double t, uint64_t *last_seq)
{
    if (ev->seq <= *last_seq || !isfinite(ev->t) || ev->t > t + 1e-6 ||
        (unsigned)ev->type > VX_GATE_EV_CHECK_FAILED)
        abort();
    *last_seq = ev->seq;
}

static void check_result(const vx_gate_result *r, uint64_t *last_seq)
{
    for (int i = 0; i < r->nevents; i++)
        check_event(&r->events[i], r->t, last_seq);
    for (int i = 0; i < r->ncompletions; i++) {
        const vx_gate_completion *c = &r->completions[i];
        if (c->ntimeline < 1 || !c->timeline || !(c->score >= 0 && c->score <= 1) || !(c->interaction_s >= 0))
            abort();
        const vx_gate_event *last = &c->timeline[c->ntimeline - 1];
        if (last->type != (c->completed ? VX_GATE_EV_CHECK_COMPLETED : VX_GATE_EV_CHECK_FAILED))
            abort();
        for (int e = 0; e < c->ntimeline; e++)
            if (strcmp(c->timeline[e].session_id, c->session_id))
                abort();
    }
    for (int i = 0; i < r->npersons; i++)
        if (!(r->persons[i].score >= 0 && r->persons[i].score <= 1) || !(r->persons[i].interaction_s >= 0) ||
            (i && r->persons[i].id <= r->persons[i - 1].id))
            abort();
    for (int i = 1; i < r->nguards; i++)
        if (r->guards[i].id <= r->guards[i - 1].id)
            abort();
}

/* Runs cfg over the scene; returns how many events and completions came out. */
static void run_engine(const vx_gate_config *cfg, const vx_gate_config *swap, uint64_t seed, int *nev,
                       int *ncomp)
{
    vx_gate *g;
    vx_gate_opts o;
    vx_gate_opts_default(&o);
    snprintf(o.run_id, sizeof o.run_id, "fuzz");
    if (vx_gate_create(cfg, &o, &g) != VX_OK)
        abort(); /* the config validated */
    uint64_t s = seed;
    if (next(&s) % 2)
        vx_gate_set_pose_hook(g, pose, NULL);
    person people[PEOPLE_MAX];
    int np = 1 + (int)(next(&s) % PEOPLE_MAX);
    make_people(cfg, &s, people, np);
    vx_gate_result res;
    vx_gate_result_init(&res);
    uint64_t last_seq = 0;
    *nev = *ncomp = 0;
    for (int k = 0; k < FRAMES; k++) {
        if (k == FRAMES / 2 && vx_gate_set_config(g, swap) != VX_OK)
            abort(); /* the same rules, read back from their JSON */
        vx_track_det dets[PEOPLE_MAX];
        int nd = 0;
        for (int i = 0; i < np; i++)
            nd += person_at(&people[i], k, &s, &dets[nd]);
        vx_gate_frame fr = {dets, nd, FRAME_W, FRAME_H, (double)k / FPS};
        if (vx_gate_process(g, &fr, &res) != VX_OK)
            abort();
        check_result(&res, &last_seq);
        *nev += res.nevents;
        *ncomp += res.ncompletions;
        if (res.nevents || res.ncompletions || k == FRAMES - 1) {
            json_t *j = vx_gate_result_to_json(&res);
            char *txt = j ? json_dumps(j, JSON_COMPACT) : NULL;
            if (!txt)
                abort();
            free(txt);
            json_decref(j);
        }
    }
    vx_gate_counts counts;
    vx_gate_get_counts(g, &counts);
    if (counts.frames != FRAMES || counts.checks_completed + counts.checks_failed != (uint64_t)*ncomp)
        abort();
    vx_gate_result_free(&res);
    vx_gate_destroy(g);
}

/* ---- the target ----------------------------------------------------------------- */

static int same_zone(const vx_gate_zone *a, const vx_gate_zone *b)
{
    return !strcmp(a->zone_id, b->zone_id) && a->type == b->type && a->normalized == b->normalized &&
           a->npoints == b->npoints && !memcmp(a->pts, b->pts, sizeof a->pts[0] * (size_t)a->npoints) &&
           !strcmp(a->description, b->description);
}

/* The same rules, bit for bit (the zones' file paths aside). */
static int same_config(const vx_gate_config *a, const vx_gate_config *b)
{
    const double da[] = {a->person_min_dwell_s,
                         a->guard_min_dwell_s,
                         a->interaction_min_overlap_s,
                         a->session_timeout_s,
                         a->center_dist_scale,
                         a->iou_min,
                         a->score_base,
                         a->contact_bonus,
                         a->pose_bonus,
                         a->reid_persistence_bonus,
                         a->threshold,
                         a->min_box_height_px};
    const double db[] = {b->person_min_dwell_s,
                         b->guard_min_dwell_s,
                         b->interaction_min_overlap_s,
                         b->session_timeout_s,
                         b->center_dist_scale,
                         b->iou_min,
                         b->score_base,
                         b->contact_bonus,
                         b->pose_bonus,
                         b->reid_persistence_bonus,
                         b->threshold,
                         b->min_box_height_px};
    return !strcmp(a->gate_id, b->gate_id) && same_zone(&a->gate_area, &b->gate_area) &&
           a->has_guard_anchor == b->has_guard_anchor &&
           (!a->has_guard_anchor || same_zone(&a->guard_anchor, &b->guard_anchor)) &&
           a->n_person_classes == b->n_person_classes &&
           !memcmp(a->person_classes, b->person_classes,
                   sizeof a->person_classes[0] * (size_t)a->n_person_classes) &&
           !memcmp(da, db, sizeof da) && a->anchor_mode == b->anchor_mode &&
           a->jitter_smooth_window == b->jitter_smooth_window &&
           a->multi_frame_consensus == b->multi_frame_consensus;
}

/* A failure must name the document and say what is wrong (in diag too,
 * which the server's reply quotes, except for the size limit). */
static void check_failure(vx_err e, const vx_gate_diag *diag)
{
    if (e >= 0 || !strstr(vx_last_error(), NAME))
        abort();
    if (e != VX_ERR_NOMEM && (!diag->has_error || !diag->error.message[0]))
        abort();
}

static int rules(const char *text, size_t size, uint64_t seed)
{
    vx_gate_config cfg;
    vx_gate_diag diag;
    vx_clear_error();
    vx_err e = vx_gate_config_parse(text, size, NAME, base_dir, &cfg, &diag);
    if (e != VX_OK) {
        check_failure(e, &diag);
        return 0;
    }
    if (vx_gate_config_validate(&cfg) != VX_OK)
        abort();
    /* the JSON form parses back to the same config */
    char *js = vx_gate_config_json(&cfg);
    if (!js)
        abort();
    vx_gate_config back;
    vx_gate_diag diag2;
    if (vx_gate_config_parse(js, strlen(js), NAME, base_dir, &back, &diag2) != VX_OK) {
        fprintf(stderr, "fuzz_gate: the JSON form does not parse back: %s\n%s\n", vx_last_error(), js);
        abort();
    }
    char *js2 = vx_gate_config_json(&back);
    if (!js2 || strcmp(js, js2)) {
        fprintf(stderr, "fuzz_gate: the JSON form changes when read back:\n%s\n---\n%s\n", js,
                js2 ? js2 : "(null)");
        abort();
    }
    if (diag2.nwarnings)
        abort(); /* the JSON form has no unknown keys */
    if (!same_config(&cfg, &back)) {
        fprintf(stderr, "fuzz_gate: the JSON form reads back to a different config:\n%s\n", js);
        abort();
    }
    free(js2);
    free(js);
    int nev, ncomp;
    run_engine(&cfg, &back, seed, &nev, &ncomp);
    if (verbose)
        fprintf(stderr,
                "fuzz_gate: loaded: rules, gate_id %s, mode %s, gate_area %d points (%s)%s, %d warnings; "
                "%d events, %d completions\n",
                cfg.gate_id, vx_gate_anchor_mode_name(cfg.anchor_mode), cfg.gate_area.npoints,
                cfg.gate_area.normalized ? "normalised" : "pixels",
                cfg.has_guard_anchor ? ", guard_anchor" : "", diag.nwarnings, nev, ncomp);
    return 1;
}

static int zone(const char *text, size_t size)
{
    vx_gate_zone z;
    vx_gate_diag diag;
    vx_clear_error();
    vx_err e = vx_gate_zone_parse(text, size, NAME, &z, &diag);
    if (e != VX_OK) {
        check_failure(e, &diag);
        return 0;
    }
    /* a zone that loads is a valid zone for its slot */
    vx_gate_config cfg;
    vx_gate_config_default(&cfg);
    cfg.gate_area.npoints = 3;
    double tri[3][2] = {{0.1, 0.1}, {0.9, 0.1}, {0.5, 0.9}};
    memcpy(cfg.gate_area.pts, tri, sizeof tri);
    snprintf(cfg.gate_area.zone_id, sizeof cfg.gate_area.zone_id, "ga");
    if (z.type == VX_GATE_ZONE_GATE_AREA) {
        cfg.gate_area = z;
        cfg.anchor_mode = VX_GATE_ANCHOR_NONE;
    } else {
        cfg.guard_anchor = z;
        cfg.has_guard_anchor = 1;
    }
    if (vx_gate_config_validate(&cfg) != VX_OK) {
        fprintf(stderr, "fuzz_gate: a zone that parsed does not validate: %s\n", vx_last_error());
        abort();
    }
    if (verbose)
        fprintf(stderr, "fuzz_gate: loaded: zone %s, %s, %d points (%s), %d warnings\n", z.zone_id,
                z.type == VX_GATE_ZONE_GATE_AREA ? "gate_area" : "guard_anchor", z.npoints,
                z.normalized ? "normalised" : "pixels", diag.nwarnings);
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    int ok_rules = rules(text, size, hash_bytes(data, size));
    char why[512];
    snprintf(why, sizeof why, "%s", vx_last_error());
    int ok_zone = zone(text, size);
    if (verbose && !ok_rules && !ok_zone)
        fprintf(stderr, "fuzz_gate: refused: %s\n", why);
    return 0;
}
