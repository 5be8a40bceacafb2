/*
 * Rules and zone files.
 *
 * jansson parses (with line/column on syntax errors and duplicate keys
 * rejected); a small scanner over the same text then finds the line of any
 * key path, since jansson keeps no positions for values and an operator
 * editing a 60-line file needs "rules.json:14: timers.session_timeout_s",
 * not just the key.  The scanner only runs on text jansson accepted.
 *
 * Ids (gate_id, zone_id) end up in MQTT topics, SQL rows and URLs, so they
 * are restricted to letters, digits, '_', '-' and '.'.
 */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gate/vx_gate.h"

#define CONFIG_MAX_BYTES (1u << 20)

void vx_gate_config_default(vx_gate_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->gate_id, sizeof c->gate_id, "gate");
    c->gate_area.type = VX_GATE_ZONE_GATE_AREA;
    c->gate_area.normalized = 1;
    c->guard_anchor.type = VX_GATE_ZONE_GUARD_ANCHOR;
    c->guard_anchor.normalized = 1;
    c->person_classes[0] = 0;
    c->n_person_classes = 1;
    c->person_min_dwell_s = 6.0;
    c->guard_min_dwell_s = 3.0;
    c->interaction_min_overlap_s = 1.2;
    c->session_timeout_s = 8.0;
    c->center_dist_scale = 0.35;
    c->iou_min = 0.03;
    c->anchor_mode = VX_GATE_ANCHOR_EITHER;
    c->score_base = 0.6;
    c->contact_bonus = 0.2;
    c->pose_bonus = 0.15;
    c->reid_persistence_bonus = 0.05;
    c->threshold = 0.9;
    c->min_box_height_px = 40;
    c->jitter_smooth_window = 5;
    c->multi_frame_consensus = 3;
}

const char *vx_gate_anchor_mode_name(vx_gate_anchor_mode m)
{
    switch (m) {
    case VX_GATE_ANCHOR_EITHER: return "either";
    case VX_GATE_ANCHOR_STRICT: return "strict_anchor";
    case VX_GATE_ANCHOR_NONE: return "no_anchor";
    }
    return "?";
}

/* ---- locating keys in the text ---------------------------------------------- */

typedef struct {
    const char *s;
    size_t n, i;
    int line;
    const char *target;
    int found_line;
} scan;

/* Whitespace, and NUL bytes: jansson drops a NUL that follows a number or
 * a literal (true, 12, ...), so accepted text may hold one between tokens. */
static void sk_ws(scan *c)
{
    while (c->i < c->n && (c->s[c->i] == ' ' || c->s[c->i] == '\t' || c->s[c->i] == '\r' ||
                           c->s[c->i] == '\n' || c->s[c->i] == 0)) {
        if (c->s[c->i] == '\n')
            c->line++;
        c->i++;
    }
}

/* Reads a string token into buf (escapes kept simple: \x -> x). */
static void sk_string(scan *c, char *buf, size_t cap)
{
    size_t o = 0;
    c->i++; /* opening quote */
    while (c->i < c->n && c->s[c->i] != '"') {
        char ch = c->s[c->i];
        if (ch == '\\' && c->i + 1 < c->n) {
            c->i++;
            ch = c->s[c->i];
        }
        if (ch == '\n')
            c->line++;
        if (buf && o + 1 < cap)
            buf[o++] = ch;
        c->i++;
    }
    if (c->i < c->n)
        c->i++;
    if (buf)
        buf[o] = 0;
}

static void sk_value(scan *c, const char *path, int depth);

static void sk_check(scan *c, const char *path, int line)
{
    if (!c->found_line && c->target && !strcmp(path, c->target))
        c->found_line = line;
}

static void sk_value(scan *c, const char *path, int depth)
{
    sk_ws(c);
    if (depth > 64)
        c->i = c->n; /* too deep to follow: stop the scan (the line stays unknown) */
    if (c->i >= c->n)
        return;
    char ch = c->s[c->i];
    if (ch == '{') {
        c->i++;
        for (;;) {
            sk_ws(c);
            if (c->i >= c->n)
                return;
            if (c->s[c->i] == '}') {
                c->i++;
                return;
            }
            if (c->s[c->i] == ',') {
                c->i++;
                continue;
            }
            char key[128], child[512];
            int kline = c->line;
            sk_string(c, key, sizeof key);
            snprintf(child, sizeof child, "%s%s%s", path, *path ? "." : "", key);
            sk_check(c, child, kline);
            sk_ws(c);
            if (c->i < c->n && c->s[c->i] == ':')
                c->i++;
            sk_value(c, child, depth + 1);
            if (c->found_line)
                return;
        }
    } else if (ch == '[') {
        c->i++;
        for (int idx = 0;; idx++) {
            sk_ws(c);
            if (c->i >= c->n)
                return;
            if (c->s[c->i] == ']') {
                c->i++;
                return;
            }
            if (c->s[c->i] == ',') {
                c->i++;
                idx--;
                continue;
            }
            char child[512];
            snprintf(child, sizeof child, "%s[%d]", path, idx);
            sk_check(c, child, c->line);
            sk_value(c, child, depth + 1);
            if (c->found_line)
                return;
        }
    } else if (ch == '"') {
        sk_string(c, NULL, 0);
    } else {
        size_t start = c->i;
        while (c->i < c->n && !strchr(",]} \t\r\n", c->s[c->i]))
            c->i++;
        if (c->i == start)
            c->i = c->n; /* no value here after all: stop rather than loop */
    }
}

/* Line of a key path ("timers.person_min_dwell_s", "polygon[3][0]") in
 * valid JSON text; 0 when absent. */
static int locate(const char *text, size_t len, const char *path)
{
    if (!text || !path || !*path)
        return 0;
    scan c = {text, len, 0, 1, path, 0};
    sk_value(&c, "", 0);
    return c.found_line;
}

/* ---- load context ---------------------------------------------------------------- */

typedef struct {
    const char *file; /* name for messages */
    const char *text;
    size_t len;
    vx_gate_diag *diag;
    const char *prefix; /* key path prefix inside this text ("zones.gate_area" for inline zones) */
    int confined;       /* zone file paths must stay inside base_dir (documents from outside) */
} ctx;

static void path_join(char *out, size_t cap, const char *a, const char *b)
{
    snprintf(out, cap, "%s%s%s", a ? a : "", (a && *a && b && *b && b[0] != '[') ? "." : "", b ? b : "");
}

static vx_err fail_at(ctx *c, vx_err code, const char *key, const char *fmt, ...) VX_PRINTF(4, 5);

static vx_err fail_at(ctx *c, vx_err code, const char *key, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char full[512];
    path_join(full, sizeof full, c->prefix, key);
    int line = locate(c->text, c->len, full);
    if (c->diag && !c->diag->has_error) {
        c->diag->has_error = 1;
        vx_gate_issue *is = &c->diag->error;
        snprintf(is->file, sizeof is->file, "%s", c->file);
        is->line = line;
        is->column = 0;
        snprintf(is->key, sizeof is->key, "%s", full);
        snprintf(is->message, sizeof is->message, "%s", msg);
    }
    if (line > 0)
        return vx_fail(code, "%s:%d: %s: %s", c->file, line, full, msg);
    return vx_fail(code, "%s: %s: %s", c->file, *full ? full : "(document)", msg);
}

static void warn_at(ctx *c, const char *key, const char *fmt, ...) VX_PRINTF(3, 4);

static void warn_at(ctx *c, const char *key, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char full[512];
    path_join(full, sizeof full, c->prefix, key);
    int line = locate(c->text, c->len, full);
    VX_WARN("%s:%d: %s: %s", c->file, line, full, msg);
    if (!c->diag)
        return;
    if (c->diag->nwarnings < VX_GATE_WARN_MAX) {
        vx_gate_issue *is = &c->diag->warnings[c->diag->nwarnings];
        snprintf(is->file, sizeof is->file, "%s", c->file);
        is->line = line;
        is->column = 0;
        snprintf(is->key, sizeof is->key, "%s", full);
        snprintf(is->message, sizeof is->message, "%s", msg);
    }
    c->diag->nwarnings++;
}

static void check_known(ctx *c, json_t *obj, const char *path, const char *const *known)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        int ok = 0;
        for (const char *const *k = known; *k; k++)
            if (!strcmp(*k, key))
                ok = 1;
        if (!ok) {
            char p[256];
            path_join(p, sizeof p, path, key);
            warn_at(c, p, "unknown key, ignored");
        }
    }
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

/* A number as the JSON form keeps it: vx_gate_config_json writes 15
 * significant digits, so the parsers keep no more.  The config they check
 * is then exactly the one its JSON form reads back to (a polygon whose
 * points differ only in the 16th digit would otherwise pass here and
 * collapse into a repeated point there). */
static double json_digits(double v)
{
    char buf[40];
    snprintf(buf, sizeof buf, "%.15g", v);
    return strtod(buf, NULL);
}

/* Copies UTF-8 text, cut at a character boundary when it does not fit: a
 * cut character is invalid UTF-8, which the JSON form cannot hold. */
static void copy_utf8(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, src, n);
    dst[n] = 0;
}

/* Optional number in [lo, hi] (lo exclusive when lo_open). */
static vx_err get_num(ctx *c, json_t *obj, const char *path, const char *key, double lo, int lo_open,
                      double hi, double *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return VX_OK;
    char p[256];
    path_join(p, sizeof p, path, key);
    if (!json_is_number(v))
        return fail_at(c, VX_ERR_FORMAT, p, "must be a number, not %s", type_name(v));
    double d = json_digits(json_number_value(v));
    if (!isfinite(d) || d > hi || (lo_open ? d <= lo : d < lo))
        return fail_at(c, VX_ERR_FORMAT, p, "%g is out of range: must be %s %g and <= %g", d,
                       lo_open ? ">" : ">=", lo, hi);
    *out = d;
    return VX_OK;
}

static vx_err get_int(ctx *c, json_t *obj, const char *path, const char *key, int lo, int hi, int *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return VX_OK;
    char p[256];
    path_join(p, sizeof p, path, key);
    double d;
    if (json_is_integer(v))
        d = (double)json_integer_value(v);
    else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)))
        d = json_real_value(v);
    else
        return fail_at(c, VX_ERR_FORMAT, p, "must be an integer, not %s",
                       json_is_real(v) ? "a fraction" : type_name(v));
    if (d < lo || d > hi)
        return fail_at(c, VX_ERR_FORMAT, p, "%g is out of range: must be in [%d, %d]", d, lo, hi);
    *out = (int)d;
    return VX_OK;
}

static int id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= VX_GATE_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-' && s[i] != '.')
            return 0;
    return 1;
}

static vx_err get_id(ctx *c, json_t *obj, const char *path, const char *key, int required, char *out)
{
    json_t *v = json_object_get(obj, key);
    char p[256];
    path_join(p, sizeof p, path, key);
    if (!v) {
        if (required)
            return fail_at(c, VX_ERR_FORMAT, path, "missing required key '%s'", key);
        return VX_OK;
    }
    if (!json_is_string(v))
        return fail_at(c, VX_ERR_FORMAT, p, "must be a string, not %s", type_name(v));
    if (!id_ok(json_string_value(v)))
        return fail_at(c, VX_ERR_FORMAT, p, "must be 1 to %d characters of letters, digits, '_', '-' and '.'",
                       VX_GATE_ID_MAX - 1);
    snprintf(out, VX_GATE_ID_MAX, "%s", json_string_value(v));
    return VX_OK;
}

static vx_err want_object(ctx *c, json_t *obj, const char *path, const char *key, json_t **out)
{
    *out = NULL;
    json_t *v = json_object_get(obj, key);
    if (!v)
        return VX_OK;
    if (!json_is_object(v)) {
        char p[256];
        path_join(p, sizeof p, path, key);
        return fail_at(c, VX_ERR_FORMAT, p, "must be an object, not %s", type_name(v));
    }
    *out = v;
    return VX_OK;
}

/* ---- zones --------------------------------------------------------------------- */

static vx_err zone_check(ctx *c, const vx_gate_zone *z, const char *path)
{
    char p[256];
    path_join(p, sizeof p, path, "polygon");
    if (z->npoints < 3)
        return fail_at(c, VX_ERR_FORMAT, p, "a polygon needs at least 3 points, has %d", z->npoints);
    if (vx_gate_polygon_self_intersects((const double(*)[2])z->pts, z->npoints))
        return fail_at(c, VX_ERR_FORMAT, p, "the polygon intersects itself (edges cross or touch)");
    double area = 0;
    for (int i = 0, j = z->npoints - 1; i < z->npoints; j = i++)
        area += (z->pts[j][0] + z->pts[i][0]) * (z->pts[j][1] - z->pts[i][1]);
    if (fabs(area) * 0.5 <= (z->normalized ? 1e-6 : 1.0))
        return fail_at(c, VX_ERR_FORMAT, p, "the polygon has no area");
    return VX_OK;
}

/* A zone object at `path` of the current text. */
static vx_err zone_from_json(ctx *c, json_t *o, const char *path, vx_gate_zone *z)
{
    if (!json_is_object(o))
        return fail_at(c, VX_ERR_FORMAT, path, "a zone must be an object, not %s", type_name(o));
    static const char *const known[] = {"zone_id", "zone_type", "polygon", "normalized", "description", NULL};
    check_known(c, o, path, known);
    memset(z, 0, sizeof *z);
    z->normalized = 1;
    vx_err e;
    if ((e = get_id(c, o, path, "zone_id", 1, z->zone_id)))
        return e;
    char p[256];
    json_t *t = json_object_get(o, "zone_type");
    path_join(p, sizeof p, path, "zone_type");
    if (!t)
        return fail_at(c, VX_ERR_FORMAT, path, "missing required key 'zone_type'");
    if (!json_is_string(t))
        return fail_at(c, VX_ERR_FORMAT, p, "must be a string, not %s", type_name(t));
    if (!strcmp(json_string_value(t), "gate_area"))
        z->type = VX_GATE_ZONE_GATE_AREA;
    else if (!strcmp(json_string_value(t), "guard_anchor"))
        z->type = VX_GATE_ZONE_GUARD_ANCHOR;
    else
        return fail_at(c, VX_ERR_FORMAT, p, "must be \"gate_area\" or \"guard_anchor\"");
    json_t *n = json_object_get(o, "normalized");
    if (n) {
        path_join(p, sizeof p, path, "normalized");
        if (!json_is_boolean(n))
            return fail_at(c, VX_ERR_FORMAT, p, "must be true or false, not %s", type_name(n));
        z->normalized = json_is_true(n);
    }
    json_t *d = json_object_get(o, "description");
    if (d) {
        path_join(p, sizeof p, path, "description");
        if (!json_is_string(d))
            return fail_at(c, VX_ERR_FORMAT, p, "must be a string, not %s", type_name(d));
        copy_utf8(z->description, sizeof z->description, json_string_value(d));
    }
    json_t *poly = json_object_get(o, "polygon");
    path_join(p, sizeof p, path, "polygon");
    if (!poly)
        return fail_at(c, VX_ERR_FORMAT, path, "missing required key 'polygon'");
    if (!json_is_array(poly))
        return fail_at(c, VX_ERR_FORMAT, p, "must be an array of [x, y] points, not %s", type_name(poly));
    size_t np = json_array_size(poly);
    if (np < 3)
        return fail_at(c, VX_ERR_FORMAT, p, "a polygon needs at least 3 points, has %zu", np);
    if (np > VX_GATE_POLY_MAX)
        return fail_at(c, VX_ERR_FORMAT, p, "%zu points: at most %d", np, VX_GATE_POLY_MAX);
    for (size_t i = 0; i < np; i++) {
        json_t *pt = json_array_get(poly, i);
        char pp[300];
        snprintf(pp, sizeof pp, "%s[%zu]", p, i);
        if (!json_is_array(pt) || json_array_size(pt) != 2 || !json_is_number(json_array_get(pt, 0)) ||
            !json_is_number(json_array_get(pt, 1)))
            return fail_at(c, VX_ERR_FORMAT, pp, "a point must be [x, y] with two numbers");
        for (int k = 0; k < 2; k++) {
            double v = json_digits(json_number_value(json_array_get(pt, k)));
            double hi = z->normalized ? 1.0 : 100000.0;
            if (!isfinite(v) || v < 0 || v > hi)
                return fail_at(c, VX_ERR_FORMAT, pp, "%s = %g is out of range: must be in [0, %g]%s",
                               k ? "y" : "x", v, hi, z->normalized ? " for a normalized polygon" : "");
            z->pts[i][k] = v;
        }
    }
    z->npoints = (int)np;
    return zone_check(c, z, path);
}

static vx_err parse_text(const char *text, size_t len, const char *name, json_t **root, vx_gate_diag *diag)
{
    json_error_t jerr;
    *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (*root)
        return VX_OK;
    if (diag && !diag->has_error) {
        diag->has_error = 1;
        snprintf(diag->error.file, sizeof diag->error.file, "%s", name);
        diag->error.line = jerr.line;
        diag->error.column = jerr.column;
        diag->error.key[0] = 0;
        snprintf(diag->error.message, sizeof diag->error.message, "%s", jerr.text);
    }
    return vx_fail(VX_ERR_FORMAT, "%s:%d:%d: %s", name, jerr.line, jerr.column, jerr.text);
}

vx_err vx_gate_zone_parse(const char *text, size_t len, const char *name, vx_gate_zone *zone,
                          vx_gate_diag *diag)
{
    if (diag)
        memset(diag, 0, sizeof *diag);
    if (!name)
        name = "(zone)";
    if (!text)
        return vx_fail(VX_ERR_INVALID, "%s: no text", name);
    json_t *root;
    vx_err e = parse_text(text, len, name, &root, diag);
    if (e)
        return e;
    ctx c = {name, text, len, diag, "", 0};
    vx_gate_zone z;
    e = zone_from_json(&c, root, "", &z);
    json_decref(root);
    if (e == VX_OK)
        *zone = z;
    return e;
}

static vx_err zone_load_file(const char *path, const char *shown, vx_gate_zone *zone, vx_gate_diag *diag)
{
    uint8_t *data;
    size_t len;
    vx_err e = vx_read_file(path, CONFIG_MAX_BYTES, &data, &len);
    if (e) {
        if (diag && !diag->has_error) {
            diag->has_error = 1;
            snprintf(diag->error.file, sizeof diag->error.file, "%s", shown);
            snprintf(diag->error.message, sizeof diag->error.message, "%s", vx_last_error());
        }
        return e;
    }
    json_t *root;
    e = parse_text((const char *)data, len, shown, &root, diag);
    if (e == VX_OK) {
        ctx c = {shown, (const char *)data, len, diag, "", 0};
        vx_gate_zone z;
        e = zone_from_json(&c, root, "", &z);
        json_decref(root);
        if (e == VX_OK) {
            *zone = z;
            snprintf(zone->path, sizeof zone->path, "%s", path);
        }
    }
    free(data);
    return e;
}

vx_err vx_gate_zone_load(const char *path, vx_gate_zone *zone, vx_gate_diag *diag)
{
    if (diag)
        memset(diag, 0, sizeof *diag);
    if (!path)
        return vx_fail(VX_ERR_INVALID, "zone file: no path");
    return zone_load_file(path, path, zone, diag);
}

/* ---- rules ---------------------------------------------------------------------- */

static vx_err zone_entry(ctx *c, json_t *zones, const char *slot, vx_gate_zone_type want,
                         const char *base_dir, vx_gate_zone *out, int *present)
{
    json_t *v = json_object_get(zones, slot);
    *present = 0;
    char p[128];
    snprintf(p, sizeof p, "zones.%s", slot);
    if (!v || json_is_null(v))
        return VX_OK;
    vx_gate_zone z;
    vx_err e;
    if (json_is_string(v)) {
        const char *rel = json_string_value(v);
        if (!*rel)
            return fail_at(c, VX_ERR_FORMAT, p, "empty path");
        if (c->confined) {
            /* A document from outside (a POST body) names files next to
             * the rules only: no absolute path, no '..' component.
             * Otherwise it could probe any file the server can read. */
            int up = 0;
            for (const char *q = rel; *q && !up; q = strchr(q, '/') ? strchr(q, '/') + 1 : q + strlen(q))
                up = q[0] == '.' && q[1] == '.' && (q[2] == '/' || q[2] == 0);
            if (rel[0] == '/' || up)
                return fail_at(c, VX_ERR_FORMAT, p,
                               "a zone file path here must be relative to the rules' folder, without "
                               "'..' (or give the zone inline)");
        }
        char full[VX_GATE_PATH_MAX];
        if (rel[0] == '/' || !base_dir || !*base_dir)
            snprintf(full, sizeof full, "%s", rel);
        else
            snprintf(full, sizeof full, "%s/%s", base_dir, rel);
        e = zone_load_file(full, full, &z, c->diag);
        if (e) {
            /* the zone file's own message first, then where it was named */
            int line = locate(c->text, c->len, p);
            return vx_fail_prefix(e, "%s:%d: %s: ", c->file, line, p);
        }
    } else if (json_is_object(v)) {
        const char *saved = c->prefix;
        c->prefix = p;
        e = zone_from_json(c, v, "", &z);
        c->prefix = saved;
        if (e)
            return e;
    } else {
        return fail_at(c, VX_ERR_FORMAT, p, "must be a zone file path or a zone object, not %s",
                       type_name(v));
    }
    if (z.type != want) {
        if (json_is_string(v))
            return fail_at(c, VX_ERR_FORMAT, p, "%s has zone_type \"%s\", expected \"%s\"",
                           json_string_value(v),
                           z.type == VX_GATE_ZONE_GATE_AREA ? "gate_area" : "guard_anchor", slot);
        char pt[160];
        snprintf(pt, sizeof pt, "zone_type");
        const char *saved = c->prefix;
        c->prefix = p;
        e = fail_at(c, VX_ERR_FORMAT, pt, "must be \"%s\" in this slot", slot);
        c->prefix = saved;
        return e;
    }
    *out = z;
    *present = 1;
    return VX_OK;
}

static vx_err rules_from_json(ctx *c, json_t *root, const char *base_dir, vx_gate_config *cfg)
{
    if (!json_is_object(root))
        return fail_at(c, VX_ERR_FORMAT, "", "the rules document must be an object, not %s", type_name(root));
    static const char *const top[] = {
        "gate_id",         "zones",       "classes", "timers", "proximity", "scoring", "guard_anchor_logic",
        "noise_filtering", "description", NULL};
    check_known(c, root, "", top);
    vx_err e;
    if ((e = get_id(c, root, "", "gate_id", 0, cfg->gate_id)))
        return e;

    json_t *o;
    /* zones */
    if ((e = want_object(c, root, "", "zones", &o)))
        return e;
    if (!o)
        return fail_at(c, VX_ERR_FORMAT, "", "missing required key 'zones' (gate_area, guard_anchor)");
    static const char *const kz[] = {"gate_area", "guard_anchor", NULL};
    check_known(c, o, "zones", kz);
    int present = 0;
    if ((e = zone_entry(c, o, "gate_area", VX_GATE_ZONE_GATE_AREA, base_dir, &cfg->gate_area, &present)))
        return e;
    if (!present)
        return fail_at(c, VX_ERR_FORMAT, "zones", "missing required key 'gate_area'");
    if ((e = zone_entry(c, o, "guard_anchor", VX_GATE_ZONE_GUARD_ANCHOR, base_dir, &cfg->guard_anchor,
                        &cfg->has_guard_anchor)))
        return e;

    /* classes */
    if ((e = want_object(c, root, "", "classes", &o)))
        return e;
    if (o) {
        static const char *const kc[] = {"person", NULL};
        check_known(c, o, "classes", kc);
        json_t *pc = json_object_get(o, "person");
        if (pc) {
            if (!json_is_array(pc))
                return fail_at(c, VX_ERR_FORMAT, "classes.person", "must be an array of class ids, not %s",
                               type_name(pc));
            size_t n = json_array_size(pc);
            if (n < 1 || n > VX_GATE_CLASSES_MAX)
                return fail_at(c, VX_ERR_FORMAT, "classes.person", "needs 1 to %d class ids, has %zu",
                               VX_GATE_CLASSES_MAX, n);
            for (size_t i = 0; i < n; i++) {
                json_t *v = json_array_get(pc, i);
                char p[64];
                snprintf(p, sizeof p, "classes.person[%zu]", i);
                if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 100000)
                    return fail_at(c, VX_ERR_FORMAT, p, "a class id must be an integer in [0, 100000]");
                cfg->person_classes[i] = (int)json_integer_value(v);
            }
            cfg->n_person_classes = (int)n;
        }
    }

    /* timers */
    if ((e = want_object(c, root, "", "timers", &o)))
        return e;
    if (o) {
        static const char *const kt[] = {"person_min_dwell_s", "guard_min_dwell_s",
                                         "interaction_min_overlap_s", "session_timeout_s", NULL};
        check_known(c, o, "timers", kt);
        if ((e = get_num(c, o, "timers", "person_min_dwell_s", 0, 0, 86400, &cfg->person_min_dwell_s)) ||
            (e = get_num(c, o, "timers", "guard_min_dwell_s", 0, 0, 86400, &cfg->guard_min_dwell_s)) ||
            (e = get_num(c, o, "timers", "interaction_min_overlap_s", 0, 1, 86400,
                         &cfg->interaction_min_overlap_s)) ||
            (e = get_num(c, o, "timers", "session_timeout_s", 0, 1, 86400, &cfg->session_timeout_s)))
            return e;
    }

    /* proximity */
    if ((e = want_object(c, root, "", "proximity", &o)))
        return e;
    if (o) {
        static const char *const kp[] = {"center_dist_scale", "iou_min", NULL};
        check_known(c, o, "proximity", kp);
        if ((e = get_num(c, o, "proximity", "center_dist_scale", 0, 1, 100, &cfg->center_dist_scale)) ||
            (e = get_num(c, o, "proximity", "iou_min", 0, 0, 1, &cfg->iou_min)))
            return e;
    }

    /* guard_anchor_logic */
    if ((e = want_object(c, root, "", "guard_anchor_logic", &o)))
        return e;
    if (o) {
        static const char *const kg[] = {"mode", NULL};
        check_known(c, o, "guard_anchor_logic", kg);
        json_t *m = json_object_get(o, "mode");
        if (m) {
            if (!json_is_string(m))
                return fail_at(c, VX_ERR_FORMAT, "guard_anchor_logic.mode", "must be a string, not %s",
                               type_name(m));
            const char *s = json_string_value(m);
            if (!strcmp(s, "either"))
                cfg->anchor_mode = VX_GATE_ANCHOR_EITHER;
            else if (!strcmp(s, "strict_anchor"))
                cfg->anchor_mode = VX_GATE_ANCHOR_STRICT;
            else if (!strcmp(s, "no_anchor"))
                cfg->anchor_mode = VX_GATE_ANCHOR_NONE;
            else
                return fail_at(c, VX_ERR_FORMAT, "guard_anchor_logic.mode",
                               "must be \"either\", \"strict_anchor\" or \"no_anchor\"");
        }
    }

    /* scoring */
    if ((e = want_object(c, root, "", "scoring", &o)))
        return e;
    if (o) {
        static const char *const ks[] = {
            "base", "contact_bonus", "pose_bonus", "reid_persistence_bonus", "threshold", NULL};
        check_known(c, o, "scoring", ks);
        if ((e = get_num(c, o, "scoring", "base", 0, 0, 1, &cfg->score_base)) ||
            (e = get_num(c, o, "scoring", "contact_bonus", 0, 0, 1, &cfg->contact_bonus)) ||
            (e = get_num(c, o, "scoring", "pose_bonus", 0, 0, 1, &cfg->pose_bonus)) ||
            (e = get_num(c, o, "scoring", "reid_persistence_bonus", 0, 0, 1, &cfg->reid_persistence_bonus)) ||
            (e = get_num(c, o, "scoring", "threshold", 0, 0, 1, &cfg->threshold)))
            return e;
    }

    /* noise_filtering */
    if ((e = want_object(c, root, "", "noise_filtering", &o)))
        return e;
    if (o) {
        static const char *const kn[] = {"min_box_height_px", "jitter_smooth_window", "multi_frame_consensus",
                                         NULL};
        check_known(c, o, "noise_filtering", kn);
        if ((e = get_num(c, o, "noise_filtering", "min_box_height_px", 0, 0, 10000,
                         &cfg->min_box_height_px)) ||
            (e = get_int(c, o, "noise_filtering", "jitter_smooth_window", 1, 100,
                         &cfg->jitter_smooth_window)) ||
            (e = get_int(c, o, "noise_filtering", "multi_frame_consensus", 1, 100,
                         &cfg->multi_frame_consensus)))
            return e;
    }

    /* cross-field rules */
    if (cfg->anchor_mode != VX_GATE_ANCHOR_NONE && !cfg->has_guard_anchor)
        return fail_at(c, VX_ERR_FORMAT, "zones",
                       "missing 'guard_anchor': mode \"%s\" needs a guard anchor zone",
                       vx_gate_anchor_mode_name(cfg->anchor_mode));
    if (cfg->score_base + cfg->contact_bonus + cfg->reid_persistence_bonus <= 0)
        return fail_at(c, VX_ERR_FORMAT, "scoring",
                       "base + contact_bonus + reid_persistence_bonus must be > 0");
    return VX_OK;
}

static vx_err config_parse(const char *text, size_t len, const char *name, const char *base_dir, int confined,
                           vx_gate_config *cfg, vx_gate_diag *diag)
{
    if (diag)
        memset(diag, 0, sizeof *diag);
    if (!name)
        name = "(rules)";
    if (!text)
        return vx_fail(VX_ERR_INVALID, "%s: no text", name);
    if (len > CONFIG_MAX_BYTES)
        return vx_fail(VX_ERR_NOMEM, "%s: %zu bytes, at most %u", name, len, CONFIG_MAX_BYTES);
    json_t *root;
    vx_err e = parse_text(text, len, name, &root, diag);
    if (e)
        return e;
    ctx c = {name, text, len, diag, "", confined};
    vx_gate_config tmp;
    vx_gate_config_default(&tmp);
    e = rules_from_json(&c, root, base_dir, &tmp);
    json_decref(root);
    if (e == VX_OK && (e = vx_gate_config_validate(&tmp)) != VX_OK)
        vx_fail_prefix(e, "%s: ", name);
    if (e == VX_OK)
        *cfg = tmp;
    return e;
}

vx_err vx_gate_config_parse(const char *text, size_t len, const char *name, const char *base_dir,
                            vx_gate_config *cfg, vx_gate_diag *diag)
{
    return config_parse(text, len, name, base_dir, 1, cfg, diag);
}

vx_err vx_gate_config_load(const char *rules_path, vx_gate_config *cfg, vx_gate_diag *diag)
{
    if (diag)
        memset(diag, 0, sizeof *diag);
    if (!rules_path)
        return vx_fail(VX_ERR_INVALID, "rules file: no path");
    uint8_t *data;
    size_t len;
    vx_err e = vx_read_file(rules_path, CONFIG_MAX_BYTES, &data, &len);
    if (e) {
        if (diag) {
            diag->has_error = 1;
            snprintf(diag->error.file, sizeof diag->error.file, "%s", rules_path);
            snprintf(diag->error.message, sizeof diag->error.message, "%s", vx_last_error());
        }
        return e;
    }
    char dir[VX_GATE_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", rules_path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    else
        snprintf(dir, sizeof dir, ".");
    e = config_parse((const char *)data, len, rules_path, dir, 0, cfg, diag);
    free(data);
    return e;
}

/* ---- semantic validation ----------------------------------------------------------- */

static vx_err zone_valid(const vx_gate_zone *z, const char *slot)
{
    if (!id_ok(z->zone_id))
        return vx_fail(VX_ERR_INVALID,
                       "zones.%s.zone_id: must be 1 to %d characters of letters, digits, '_-.'", slot,
                       VX_GATE_ID_MAX - 1);
    if (z->npoints < 3 || z->npoints > VX_GATE_POLY_MAX)
        return vx_fail(VX_ERR_INVALID, "zones.%s.polygon: needs 3 to %d points, has %d", slot,
                       VX_GATE_POLY_MAX, z->npoints);
    for (int i = 0; i < z->npoints; i++)
        for (int k = 0; k < 2; k++) {
            double v = z->pts[i][k];
            if (!isfinite(v) || v < 0 || v > (z->normalized ? 1.0 : 100000.0))
                return vx_fail(VX_ERR_INVALID, "zones.%s.polygon[%d]: coordinate %g out of range", slot, i,
                               v);
        }
    if (vx_gate_polygon_self_intersects((const double(*)[2])z->pts, z->npoints))
        return vx_fail(VX_ERR_INVALID, "zones.%s.polygon: the polygon intersects itself", slot);
    return VX_OK;
}

static int in_range(double v, double lo, int lo_open, double hi)
{
    return isfinite(v) && v <= hi && (lo_open ? v > lo : v >= lo);
}

vx_err vx_gate_config_validate(const vx_gate_config *c)
{
    if (!c)
        return vx_fail(VX_ERR_INVALID, "gate config: NULL");
    if (!id_ok(c->gate_id))
        return vx_fail(VX_ERR_INVALID, "gate_id: must be 1 to %d characters of letters, digits, '_-.'",
                       VX_GATE_ID_MAX - 1);
    vx_err e;
    if (c->gate_area.type != VX_GATE_ZONE_GATE_AREA)
        return vx_fail(VX_ERR_INVALID, "zones.gate_area.zone_type: must be gate_area");
    if ((e = zone_valid(&c->gate_area, "gate_area")))
        return e;
    if (c->has_guard_anchor) {
        if (c->guard_anchor.type != VX_GATE_ZONE_GUARD_ANCHOR)
            return vx_fail(VX_ERR_INVALID, "zones.guard_anchor.zone_type: must be guard_anchor");
        if ((e = zone_valid(&c->guard_anchor, "guard_anchor")))
            return e;
    } else if (c->anchor_mode != VX_GATE_ANCHOR_NONE) {
        return vx_fail(VX_ERR_INVALID, "zones.guard_anchor: mode \"%s\" needs a guard anchor zone",
                       vx_gate_anchor_mode_name(c->anchor_mode));
    }
    if (c->n_person_classes < 1 || c->n_person_classes > VX_GATE_CLASSES_MAX)
        return vx_fail(VX_ERR_INVALID, "classes.person: needs 1 to %d class ids", VX_GATE_CLASSES_MAX);
    for (int i = 0; i < c->n_person_classes; i++)
        if (c->person_classes[i] < 0)
            return vx_fail(VX_ERR_INVALID, "classes.person[%d]: must be >= 0", i);
    struct {
        const char *name;
        double v, lo;
        int lo_open;
        double hi;
    } nums[] = {
        {"timers.person_min_dwell_s", c->person_min_dwell_s, 0, 0, 86400},
        {"timers.guard_min_dwell_s", c->guard_min_dwell_s, 0, 0, 86400},
        {"timers.interaction_min_overlap_s", c->interaction_min_overlap_s, 0, 1, 86400},
        {"timers.session_timeout_s", c->session_timeout_s, 0, 1, 86400},
        {"proximity.center_dist_scale", c->center_dist_scale, 0, 1, 100},
        {"proximity.iou_min", c->iou_min, 0, 0, 1},
        {"scoring.base", c->score_base, 0, 0, 1},
        {"scoring.contact_bonus", c->contact_bonus, 0, 0, 1},
        {"scoring.pose_bonus", c->pose_bonus, 0, 0, 1},
        {"scoring.reid_persistence_bonus", c->reid_persistence_bonus, 0, 0, 1},
        {"scoring.threshold", c->threshold, 0, 0, 1},
        {"noise_filtering.min_box_height_px", c->min_box_height_px, 0, 0, 10000},
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++)
        if (!in_range(nums[i].v, nums[i].lo, nums[i].lo_open, nums[i].hi))
            return vx_fail(VX_ERR_INVALID, "%s: %g is out of range (%s %g .. %g)", nums[i].name, nums[i].v,
                           nums[i].lo_open ? ">" : ">=", nums[i].lo, nums[i].hi);
    if (c->jitter_smooth_window < 1 || c->jitter_smooth_window > 100)
        return vx_fail(VX_ERR_INVALID, "noise_filtering.jitter_smooth_window: %d not in [1, 100]",
                       c->jitter_smooth_window);
    if (c->multi_frame_consensus < 1 || c->multi_frame_consensus > 100)
        return vx_fail(VX_ERR_INVALID, "noise_filtering.multi_frame_consensus: %d not in [1, 100]",
                       c->multi_frame_consensus);
    if (c->anchor_mode != VX_GATE_ANCHOR_EITHER && c->anchor_mode != VX_GATE_ANCHOR_STRICT &&
        c->anchor_mode != VX_GATE_ANCHOR_NONE)
        return vx_fail(VX_ERR_INVALID, "guard_anchor_logic.mode: unknown mode %d", (int)c->anchor_mode);
    if (c->score_base + c->contact_bonus + c->reid_persistence_bonus <= 0)
        return vx_fail(VX_ERR_INVALID, "scoring: base + contact_bonus + reid_persistence_bonus must be > 0");
    return VX_OK;
}

/* ---- to JSON ------------------------------------------------------------------------- */

static json_t *zone_json(const vx_gate_zone *z)
{
    json_t *o = json_object();
    json_object_set_new(o, "zone_id", json_string(z->zone_id));
    json_object_set_new(o, "zone_type",
                        json_string(z->type == VX_GATE_ZONE_GATE_AREA ? "gate_area" : "guard_anchor"));
    json_t *poly = json_array();
    for (int i = 0; i < z->npoints; i++)
        json_array_append_new(poly, json_pack("[ff]", z->pts[i][0], z->pts[i][1]));
    json_object_set_new(o, "polygon", poly);
    json_object_set_new(o, "normalized", json_boolean(z->normalized));
    json_t *d = json_string(z->description);
    json_object_set_new(o, "description", d ? d : json_string(""));
    return o;
}

json_t *vx_gate_config_to_json(const vx_gate_config *c)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "gate_id", json_string(c->gate_id));
    json_t *zones = json_object();
    json_object_set_new(zones, "gate_area", zone_json(&c->gate_area));
    if (c->has_guard_anchor)
        json_object_set_new(zones, "guard_anchor", zone_json(&c->guard_anchor));
    json_object_set_new(o, "zones", zones);
    json_t *cls = json_array();
    for (int i = 0; i < c->n_person_classes; i++)
        json_array_append_new(cls, json_integer(c->person_classes[i]));
    json_object_set_new(o, "classes", json_pack("{so}", "person", cls));
    json_object_set_new(o, "timers",
                        json_pack("{sfsfsfsf}", "person_min_dwell_s", c->person_min_dwell_s,
                                  "guard_min_dwell_s", c->guard_min_dwell_s, "interaction_min_overlap_s",
                                  c->interaction_min_overlap_s, "session_timeout_s", c->session_timeout_s));
    json_object_set_new(
        o, "proximity",
        json_pack("{sfsf}", "center_dist_scale", c->center_dist_scale, "iou_min", c->iou_min));
    json_object_set_new(o, "guard_anchor_logic",
                        json_pack("{ss}", "mode", vx_gate_anchor_mode_name(c->anchor_mode)));
    json_object_set_new(o, "scoring",
                        json_pack("{sfsfsfsfsf}", "base", c->score_base, "contact_bonus", c->contact_bonus,
                                  "pose_bonus", c->pose_bonus, "reid_persistence_bonus",
                                  c->reid_persistence_bonus, "threshold", c->threshold));
    json_object_set_new(o, "noise_filtering",
                        json_pack("{sfsisi}", "min_box_height_px", c->min_box_height_px,
                                  "jitter_smooth_window", c->jitter_smooth_window, "multi_frame_consensus",
                                  c->multi_frame_consensus));
    return o;
}

char *vx_gate_config_json(const vx_gate_config *c)
{
    json_t *o = vx_gate_config_to_json(c);
    if (!o)
        return NULL;
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    json_decref(o);
    return s;
}
