/*
 * Optimal linear assignment with a rejection cost.
 *
 * The rectangular problem with "leave unmatched for cost_limit" is turned
 * into a square one of size nrows + ncols, the way lapjv's cost_limit
 * extension does it:
 *
 *            real columns          dummy columns (one per row)
 *   rows   [ cost or BIG     |  limit/2 on the diagonal, else BIG ]
 *   dummy  [ limit/2 on diag |  0                                 ]
 *
 * Leaving row i and column j both unmatched costs limit/2 + limit/2, so a
 * real pair is chosen only when it is cheaper than cost_limit.  BIG is large
 * enough that no optimum uses it (an assignment without BIG entries always
 * exists: everything to its dummy), yet finite so the potentials stay exact.
 *
 * The square problem is solved by the O(n^3) shortest-augmenting-path
 * Hungarian method with row/column potentials.  n is the number of tracks
 * plus detections of one frame (tens), so the cubic term is microseconds.
 */
#include <math.h>
#include <stdlib.h>

#include "track/vx_track.h"

vx_err vx_track_assign(const double *cost, int nrows, int ncols, double cost_limit, int *row_to_col,
                       int *col_to_row)
{
    for (int i = 0; i < nrows; i++)
        row_to_col[i] = -1;
    if (col_to_row)
        for (int j = 0; j < ncols; j++)
            col_to_row[j] = -1;
    if (nrows <= 0 || ncols <= 0)
        return VX_OK;
    if (!(cost_limit > 0) || !isfinite(cost_limit))
        return vx_fail(VX_ERR_INVALID, "assignment: cost_limit must be a positive number");

    int n = nrows + ncols;
    double maxc = cost_limit;
    for (int k = 0; k < nrows * ncols; k++)
        if (isfinite(cost[k]) && cost[k] < cost_limit && fabs(cost[k]) > maxc)
            maxc = fabs(cost[k]);
    const double big = (double)n * (maxc + cost_limit) * 4.0 + 1.0;
    const double half = cost_limit * 0.5;

    size_t nn = (size_t)n * (size_t)n;
    double *a = malloc(nn * sizeof *a);
    /* 1-based arrays of the classic formulation */
    double *u = calloc((size_t)n + 1, sizeof *u);
    double *v = calloc((size_t)n + 1, sizeof *v);
    double *minv = malloc(((size_t)n + 1) * sizeof *minv);
    int *p = calloc((size_t)n + 1, sizeof *p);
    int *way = calloc((size_t)n + 1, sizeof *way);
    char *used = malloc((size_t)n + 1);
    if (!a || !u || !v || !minv || !p || !way || !used) {
        free(a), free(u), free(v), free(minv), free(p), free(way), free(used);
        return vx_fail(VX_ERR_NOMEM, "assignment: out of memory (%d x %d)", nrows, ncols);
    }
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++) {
            double c;
            if (i < nrows && j < ncols) {
                c = cost[(size_t)i * ncols + j];
                if (!isfinite(c) || c >= cost_limit)
                    c = big;
            } else if (i < nrows) {
                c = (j - ncols == i) ? half : big;
            } else if (j < ncols) {
                c = (i - nrows == j) ? half : big;
            } else {
                c = 0;
            }
            a[(size_t)i * n + j] = c;
        }
    }

    for (int i = 1; i <= n; i++) {
        p[0] = i;
        int j0 = 0;
        for (int j = 0; j <= n; j++) {
            minv[j] = INFINITY;
            used[j] = 0;
        }
        do {
            used[j0] = 1;
            int i0 = p[j0], j1 = 0;
            double delta = INFINITY;
            const double *row = &a[(size_t)(i0 - 1) * n];
            for (int j = 1; j <= n; j++) {
                if (used[j])
                    continue;
                double cur = row[j - 1] - u[i0] - v[j];
                if (cur < minv[j]) {
                    minv[j] = cur;
                    way[j] = j0;
                }
                if (minv[j] < delta) {
                    delta = minv[j];
                    j1 = j;
                }
            }
            for (int j = 0; j <= n; j++) {
                if (used[j]) {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
        } while (p[j0] != 0);
        do {
            int j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
        } while (j0);
    }

    for (int j = 1; j <= ncols; j++) {
        int i = p[j] - 1;
        if (i >= 0 && i < nrows && a[(size_t)i * n + (j - 1)] < big) {
            row_to_col[i] = j - 1;
            if (col_to_row)
                col_to_row[j - 1] = i;
        }
    }
    free(a), free(u), free(v), free(minv), free(p), free(way), free(used);
    return VX_OK;
}
