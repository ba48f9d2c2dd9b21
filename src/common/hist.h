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
#include <string.h>

#define GR_HIST_SUB 16
#define GR_HIST_OCTAVES 42
#define GR_HIST_BUCKETS (GR_HIST_SUB * GR_HIST_OCTAVES + 1)

typedef struct gr_hist {
    uint64_t n;
    double sum, min, max;
    uint64_t b[GR_HIST_BUCKETS];
} gr_hist_t;

void gr_hist_init (gr_hist_t *h);

/* The bucket of v: the exponent and the top 4 bits of the mantissa of an
 * IEEE double are its octave and sub-bucket (GR_HIST_SUB is 16): no log,
 * no division. */
static inline size_t gr_hist_bucket (double v)
{
    double us = v * 1e6;
    uint64_t bits;

    if (!(us >= 1.0))
        return 0;
    memcpy (&bits, &us, sizeof (bits));
    uint64_t i = (bits >> 48) - ((uint64_t)1023 << 4) + 1;
    return i < GR_HIST_BUCKETS ? (size_t)i : GR_HIST_BUCKETS - 1;
}

/* Negative and NaN values are ignored.  Inline: it is on hot paths. */
static inline void gr_hist_add (gr_hist_t *h, double v)
{
    if (!(v >= 0))
        return;
    if (h->n == 0 || v < h->min)
        h->min = v;
    if (h->n == 0 || v > h->max)
        h->max = v;
    h->n++;
    h->sum += v;
    h->b[gr_hist_bucket (v)]++;
}
/* The q-quantile (0 <= q <= 1): the middle of the bucket holding the
 * ceil(q * n)-th smallest value, kept within [min, max]; 0 when empty. */
double gr_hist_quantile (const gr_hist_t *h, double q);
/* How many values are <= le (to bucket precision), for Prometheus-style
 * cumulative buckets. */
uint64_t gr_hist_count_le (const gr_hist_t *h, double le);

#endif
