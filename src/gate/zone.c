/*
 * Zone geometry: point in polygon and the simple-polygon check the loaders
 * run.  Polygons are small (<= VX_GATE_POLY_MAX points), so the O(n^2) edge
 * test is fine and has no special cases to get wrong.
 */
#include <math.h>

#include "gate/vx_gate.h"

static int on_segment(double ax, double ay, double bx, double by, double px, double py)
{
    double cross = (bx - ax) * (py - ay) - (by - ay) * (px - ax);
    double len = fabs(bx - ax) + fabs(by - ay);
    if (fabs(cross) > 1e-9 * (len + 1) * (len + 1))
        return 0;
    return px >= fmin(ax, bx) - 1e-12 && px <= fmax(ax, bx) + 1e-12 && py >= fmin(ay, by) - 1e-12 &&
           py <= fmax(ay, by) + 1e-12;
}

int vx_gate_polygon_contains(const double (*pts)[2], int n, double x, double y)
{
    if (n < 3 || !isfinite(x) || !isfinite(y))
        return 0;
    int inside = 0;
    for (int i = 0, j = n - 1; i < n; j = i++) {
        double xi = pts[i][0], yi = pts[i][1], xj = pts[j][0], yj = pts[j][1];
        if (on_segment(xi, yi, xj, yj, x, y))
            return 1;
        if ((yi > y) != (yj > y)) {
            double xc = xj + (y - yj) * (xi - xj) / (yi - yj);
            if (x < xc)
                inside = !inside;
        }
    }
    return inside;
}

/* Orientation of (a, b, c): +1 counter-clockwise, -1 clockwise, 0 collinear. */
static int orient(const double *a, const double *b, const double *c)
{
    double v = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]);
    double scale = fabs(b[0] - a[0]) + fabs(b[1] - a[1]) + fabs(c[0] - a[0]) + fabs(c[1] - a[1]);
    if (fabs(v) <= 1e-12 * (scale * scale + 1e-300))
        return 0;
    return v > 0 ? 1 : -1;
}

static int within(const double *a, const double *b, const double *p)
{
    return p[0] >= fmin(a[0], b[0]) && p[0] <= fmax(a[0], b[0]) && p[1] >= fmin(a[1], b[1]) &&
           p[1] <= fmax(a[1], b[1]);
}

static int segments_touch(const double *a, const double *b, const double *c, const double *d)
{
    int o1 = orient(a, b, c), o2 = orient(a, b, d), o3 = orient(c, d, a), o4 = orient(c, d, b);
    if (o1 != o2 && o3 != o4 && o1 && o2 && o3 && o4)
        return 1;
    if (o1 == 0 && within(a, b, c))
        return 1;
    if (o2 == 0 && within(a, b, d))
        return 1;
    if (o3 == 0 && within(c, d, a))
        return 1;
    if (o4 == 0 && within(c, d, b))
        return 1;
    return 0;
}

int vx_gate_polygon_self_intersects(const double (*pts)[2], int n)
{
    if (n < 3)
        return 0;
    for (int i = 0; i < n; i++) {
        const double *a = pts[i], *b = pts[(i + 1) % n];
        if (a[0] == b[0] && a[1] == b[1])
            return 1; /* repeated point: a degenerate edge */
        for (int j = i + 1; j < n; j++) {
            const double *c = pts[j], *d = pts[(j + 1) % n];
            int adjacent = (j == i + 1) || (i == 0 && j == n - 1);
            if (adjacent) {
                /* adjacent edges share one vertex; they must not fold back
                 * over each other (collinear with overlap) */
                const double *shared = (j == i + 1) ? b : a;
                const double *p = (j == i + 1) ? a : b; /* far end of edge i */
                const double *q = (j == i + 1) ? d : c; /* far end of edge j */
                if (orient(p, shared, q) == 0) {
                    double d1x = p[0] - shared[0], d1y = p[1] - shared[1];
                    double d2x = q[0] - shared[0], d2y = q[1] - shared[1];
                    if (d1x * d2x + d1y * d2y > 0)
                        return 1;
                }
                continue;
            }
            if (segments_touch(a, b, c, d))
                return 1;
        }
    }
    return 0;
}

int vx_gate_zone_contains(const vx_gate_zone *zone, int width, int height, double x, double y)
{
    if (!zone || zone->npoints < 3)
        return 0;
    if (zone->normalized) {
        if (width <= 0 || height <= 0)
            return 0;
        x /= width;
        y /= height;
    }
    return vx_gate_polygon_contains((const double(*)[2])zone->pts, zone->npoints, x, y);
}
