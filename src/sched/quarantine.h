/* Quarantine of failure domains: a domain in which tasks fail `failures`
 * times within `window` seconds takes no new work for `cooloff` seconds.
 * Pure bookkeeping over domain numbers and times, so it can be tested
 * without a cluster; the master maps workers to domains and acts.
 */
#ifndef GR_SCHED_QUARANTINE_H
#define GR_SCHED_QUARANTINE_H

#include <stdbool.h>
#include <stddef.h>

#include "src/spec/spec.h"

typedef struct gr_quar gr_quar_t;

/* policy must be enabled; ndomains domains numbered from 0. */
gr_quar_t *gr_quar_create (const gr_quarantine_t *policy, size_t ndomains);
/* Accepts NULL; keeps errno. */
void gr_quar_destroy (gr_quar_t *q);

/* A task failed in domain d at now.  Returns true when this failure puts
 * d into quarantine (until now + cooloff).  Failures in a domain already
 * quarantined are not counted; the count starts afresh after a release. */
bool gr_quar_fail (gr_quar_t *q, size_t d, double now);

/* Whether d is quarantined. */
bool gr_quar_active (const gr_quar_t *q, size_t d);

/* When d's quarantine ends (0 when it is not quarantined). */
double gr_quar_until (const gr_quar_t *q, size_t d);

/* How many domains are quarantined. */
size_t gr_quar_count (const gr_quar_t *q);

/* End the quarantines due by now: returns a domain released (and forgets
 * its quarantine), or SIZE_MAX when none is due.  Call until SIZE_MAX. */
size_t gr_quar_release (gr_quar_t *q, double now);

/* How many times d has been quarantined in this run. */
unsigned gr_quar_times (const gr_quar_t *q, size_t d);

#endif
