/*
 * core/stats: the measuring instruments shared by the pipeline and the
 * server: a latency histogram and an event-rate meter.
 *
 * vx_hist has fixed buckets (1 ms steps up to 10 ms, then coarser up to
 * 10 s) so that histograms from different places can be added and exported
 * as Prometheus histograms as they are.  Recording is lock-free (relaxed
 * atomics): any number of threads may add while others take snapshots; a
 * snapshot is consistent per bucket, not across buckets, which is what
 * Prometheus expects of a scrape anyway.
 *
 * vx_rate counts events in a sliding window (events per second over the
 * last `window_s`).  It is plain data: its owner serialises access.
 */
#ifndef VX_STATS_H
#define VX_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#define VX_HIST_BUCKETS 40

/* Upper bounds in seconds of the first VX_HIST_BUCKETS - 1 buckets; the
 * last bucket is +Inf. */
extern const double vx_hist_bounds[VX_HIST_BUCKETS - 1];

typedef struct {
    _Atomic uint64_t counts[VX_HIST_BUCKETS];
    _Atomic uint64_t count;
    _Atomic uint64_t sum_ns;
} vx_hist;

typedef struct {
    uint64_t counts[VX_HIST_BUCKETS];
    uint64_t count;
    double sum_s;
} vx_hist_snap;

void vx_hist_init(vx_hist *h);
/* Negative values count as 0. */
void vx_hist_add(vx_hist *h, double seconds);
void vx_hist_read(const vx_hist *h, vx_hist_snap *out);
/* a += b (merging histograms, or totals over sources). */
void vx_hist_snap_add(vx_hist_snap *a, const vx_hist_snap *b);
/* a - b: what was recorded between two snapshots of one histogram. */
void vx_hist_snap_sub(vx_hist_snap *a, const vx_hist_snap *b);
/* Quantile q in [0,1], interpolated linearly inside its bucket; 0 when
 * empty.  Values in the +Inf bucket report the last finite bound. */
double vx_hist_quantile(const vx_hist_snap *s, double q);
double vx_hist_mean(const vx_hist_snap *s);

#define VX_RATE_RING 512

typedef struct {
    double window_s;
    double t[VX_RATE_RING];
    int head, n;
} vx_rate;

void vx_rate_init(vx_rate *r, double window_s);
void vx_rate_add(vx_rate *r, double now_s);
/* Events per second over the window ending at now_s; 0 with fewer than two
 * events in it. */
double vx_rate_get(const vx_rate *r, double now_s);

#endif
