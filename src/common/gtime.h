/* Clocks.  gr_now() is monotonic and is what every deadline uses;
 * gr_wallclock() is for timestamps that people read. */
#ifndef GR_COMMON_GTIME_H
#define GR_COMMON_GTIME_H

#include <time.h>

static inline double gr_now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline double gr_wallclock (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Sleep for the given number of seconds (fractions allowed); EINTR ends it. */
void gr_sleep (double seconds);

#endif
