/* gr_hist_t (hist.h).  Bucket i > 0 of octave o = (i - 1) / SUB, sub-bucket
 * s = (i - 1) % SUB holds [2^o (1 + s/SUB), 2^o (1 + (s+1)/SUB)) us;
 * bucket 0 holds everything below 1 us. */
#include "config.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "hist.h"

void gr_hist_init (gr_hist_t *h)
{
    memset (h, 0, sizeof (*h));
}

/* The bounds of bucket i, in seconds. */
static void bounds (size_t i, double *lo, double *hi)
{
    if (i == 0) {
        *lo = 0;
        *hi = 1e-6;
        return;
    }
    size_t o = (i - 1) / GR_HIST_SUB, s = (i - 1) % GR_HIST_SUB;
    double base = ldexp (1.0, (int)o) * 1e-6;
    *lo = base * (1.0 + (double)s / GR_HIST_SUB);
    *hi = base * (1.0 + (double)(s + 1) / GR_HIST_SUB);
}

double gr_hist_quantile (const gr_hist_t *h, double q)
{
    double lo, hi, v;
    uint64_t want, seen = 0;

    if (h->n == 0)
        return 0;
    if (q <= 0)
        return h->min;
    if (q >= 1)
        return h->max;
    want = (uint64_t)ceil (q * (double)h->n);
    if (want == 0)
        want = 1;
    for (size_t i = 0; i < GR_HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen < want)
            continue;
        bounds (i, &lo, &hi);
        v = (lo + hi) / 2;
        return v < h->min ? h->min : v > h->max ? h->max : v;
    }
    return h->max;
}

uint64_t gr_hist_count_le (const gr_hist_t *h, double le)
{
    uint64_t n = 0;
    double lo, hi;

    if (h->n && le >= h->max)
        return h->n;
    for (size_t i = 0; i < GR_HIST_BUCKETS; i++) {
        bounds (i, &lo, &hi);
        if (hi > le)
            break;
        n += h->b[i];
    }
    return n;
}
