/* Histograms and rate meters.  See vx_stats.h. */
#include "core/vx_stats.h"

#include <string.h>

const double vx_hist_bounds[VX_HIST_BUCKETS - 1] = {
    0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.007, 0.008, 0.009, 0.010, 0.012, 0.014, 0.016,
    0.018, 0.020, 0.025, 0.030, 0.035, 0.040, 0.045, 0.050, 0.060, 0.070, 0.080, 0.090, 0.100,
    0.125, 0.150, 0.200, 0.250, 0.300, 0.400, 0.500, 0.750, 1.0,   2.0,   3.0,   5.0,   10.0,
};

void vx_hist_init(vx_hist *h)
{
    for (int i = 0; i < VX_HIST_BUCKETS; i++)
        atomic_init(&h->counts[i], 0);
    atomic_init(&h->count, 0);
    atomic_init(&h->sum_ns, 0);
}

void vx_hist_add(vx_hist *h, double seconds)
{
    if (!(seconds > 0))
        seconds = 0;
    /* Binary search: 39 bounds, 6 steps. */
    int lo = 0, hi = VX_HIST_BUCKETS - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (seconds <= vx_hist_bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    atomic_fetch_add_explicit(&h->counts[lo], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    double ns = seconds * 1e9;
    atomic_fetch_add_explicit(&h->sum_ns, ns < 1.8e19 ? (uint64_t)ns : UINT64_MAX / 2, memory_order_relaxed);
}

void vx_hist_read(const vx_hist *h, vx_hist_snap *out)
{
    uint64_t total = 0;
    for (int i = 0; i < VX_HIST_BUCKETS; i++) {
        out->counts[i] = atomic_load_explicit(&h->counts[i], memory_order_relaxed);
        total += out->counts[i];
    }
    /* The bucket counts are what quantiles are computed from: make the total
     * agree with them rather than with a concurrently bumped counter. */
    out->count = total;
    out->sum_s = (double)atomic_load_explicit(&h->sum_ns, memory_order_relaxed) * 1e-9;
}

void vx_hist_snap_add(vx_hist_snap *a, const vx_hist_snap *b)
{
    for (int i = 0; i < VX_HIST_BUCKETS; i++)
        a->counts[i] += b->counts[i];
    a->count += b->count;
    a->sum_s += b->sum_s;
}

void vx_hist_snap_sub(vx_hist_snap *a, const vx_hist_snap *b)
{
    for (int i = 0; i < VX_HIST_BUCKETS; i++)
        a->counts[i] = a->counts[i] >= b->counts[i] ? a->counts[i] - b->counts[i] : 0;
    a->count = a->count >= b->count ? a->count - b->count : 0;
    a->sum_s = a->sum_s >= b->sum_s ? a->sum_s - b->sum_s : 0;
}

double vx_hist_quantile(const vx_hist_snap *s, double q)
{
    if (!s->count)
        return 0;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    double target = q * (double)s->count;
    uint64_t seen = 0;
    for (int i = 0; i < VX_HIST_BUCKETS; i++) {
        if (!s->counts[i])
            continue;
        if ((double)(seen + s->counts[i]) >= target) {
            if (i == VX_HIST_BUCKETS - 1)
                return vx_hist_bounds[VX_HIST_BUCKETS - 2];
            double lo = i ? vx_hist_bounds[i - 1] : 0, hi = vx_hist_bounds[i];
            double frac = (target - (double)seen) / (double)s->counts[i];
            return lo + (hi - lo) * (frac < 0 ? 0 : frac);
        }
        seen += s->counts[i];
    }
    return vx_hist_bounds[VX_HIST_BUCKETS - 2];
}

double vx_hist_mean(const vx_hist_snap *s)
{
    return s->count ? s->sum_s / (double)s->count : 0;
}

void vx_rate_init(vx_rate *r, double window_s)
{
    memset(r, 0, sizeof *r);
    r->window_s = window_s > 0 ? window_s : 2;
}

void vx_rate_add(vx_rate *r, double now_s)
{
    r->t[r->head] = now_s;
    r->head = (r->head + 1) % VX_RATE_RING;
    if (r->n < VX_RATE_RING)
        r->n++;
}

double vx_rate_get(const vx_rate *r, double now_s)
{
    /* Walk back from the newest event while inside the window. */
    int inside = 0;
    double oldest = 0;
    for (int k = 0; k < r->n; k++) {
        double t = r->t[(r->head - 1 - k + VX_RATE_RING) % VX_RATE_RING];
        if (now_s - t > r->window_s)
            break;
        oldest = t;
        inside++;
    }
    if (inside < 2)
        return 0;
    /* n events span n-1 intervals; measuring to now (not to the newest
     * event) makes the rate fall when events stop arriving. */
    double span = now_s - oldest;
    return span > 0 ? (double)(inside - 1) / span : 0;
}
