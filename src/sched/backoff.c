#include "config.h"

#include <math.h>

#include "sched.h"

double gr_backoff_delay (const gr_retry_t *r, uint32_t retry, double u)
{
    double d;
    if (retry == 0)
        retry = 1;
    /* 2^(retry-1) overflows to inf past ~1024 retries; cap before that. */
    if (retry > 64)
        d = r->backoff_max;
    else
        d = r->backoff * ldexp (1.0, (int)retry - 1);
    if (d > r->backoff_max)
        d = r->backoff_max;
    if (d < 0)
        d = 0;
    double j = r->jitter < 0 ? 0 : r->jitter > 1 ? 1 : r->jitter;
    return d * (1.0 - j * u);
}
