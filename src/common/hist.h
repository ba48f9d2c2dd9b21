/* A histogram of durations (seconds) with quantiles: log-linear buckets,
 * 16 to an octave from 1 us up (each at most 6.25% wide), so P50, P95 and
 * P99 come out within a few percent of the true values whatever the
 * spread, in constant memory and a few nanoseconds an observation.
 * Values below 1 us count in the first bucket, above about 50 days in the
 * last; min, max, sum and count are exact.  No allocation, no locking:
 * the caller owns the struct. */
#ifndef GR_COMMON_HIST_H
#define GR_COMMON_HIST_H

#include <stddef.h>
#include <stdint.h>

#define GR_HIST_SUB 16
#define GR_HIST_OCTAVES 42
#define GR_HIST_BUCKETS (GR_HIST_SUB * GR_HIST_OCTAVES + 1)

typedef struct gr_hist {
    uint64_t n;
    double sum, min, max;
    uint64_t b[GR_HIST_BUCKETS];
} gr_hist_t;

void gr_hist_init (gr_hist_t *h);
/* Negative and NaN values are ignored. */
void gr_hist_add (gr_hist_t *h, double v);
/* The q-quantile (0 <= q <= 1): the middle of the bucket holding the
 * ceil(q * n)-th smallest value, kept within [min, max]; 0 when empty. */
double gr_hist_quantile (const gr_hist_t *h, double q);
/* How many values are <= le (to bucket precision), for Prometheus-style
 * cumulative buckets. */
uint64_t gr_hist_count_le (const gr_hist_t *h, double le);

#endif
