#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "quarantine.h"

/* Per domain, the times of its last `failures` failures in a ring. */
typedef struct qdom {
    double until;           /* quarantined until; 0: not */
    uint32_t head;          /* next slot of the ring */
    uint32_t n;             /* failures in the ring */
    unsigned times;
} qdom_t;

struct gr_quar {
    gr_quarantine_t p;
    size_t ndoms;
    size_t nactive;
    qdom_t *doms;
    double *ring;           /* ndoms * p.failures */
};

gr_quar_t *gr_quar_create (const gr_quarantine_t *policy, size_t ndomains)
{
    gr_quar_t *q;
    if (!policy || !policy->enabled || policy->failures == 0) {
        errno = EINVAL;
        return NULL;
    }
    if (!(q = calloc (1, sizeof (*q))))
        return NULL;
    q->p = *policy;
    q->ndoms = ndomains;
    if (!(q->doms = calloc (ndomains ? ndomains : 1, sizeof (*q->doms)))
        || !(q->ring = calloc ((ndomains ? ndomains : 1) * policy->failures, sizeof (double)))) {
        gr_quar_destroy (q);
        errno = ENOMEM;
        return NULL;
    }
    return q;
}

void gr_quar_destroy (gr_quar_t *q)
{
    if (!q)
        return;
    int saved = errno;
    free (q->doms);
    free (q->ring);
    free (q);
    errno = saved;
}

bool gr_quar_fail (gr_quar_t *q, size_t d, double now)
{
    if (!q || d >= q->ndoms)
        return false;
    qdom_t *x = &q->doms[d];
    double *ring = &q->ring[d * q->p.failures];
    if (x->until > 0)
        return false;
    ring[x->head] = now;
    x->head = (x->head + 1) % q->p.failures;
    if (x->n < q->p.failures)
        x->n++;
    if (x->n < q->p.failures)
        return false;
    /* The ring is full: head is now its oldest entry. */
    if (now - ring[x->head] > q->p.window)
        return false;
    x->until = now + q->p.cooloff;
    x->n = 0;
    x->head = 0;
    x->times++;
    q->nactive++;
    return true;
}

bool gr_quar_active (const gr_quar_t *q, size_t d)
{
    return q && d < q->ndoms && q->doms[d].until > 0;
}

double gr_quar_until (const gr_quar_t *q, size_t d)
{
    return q && d < q->ndoms ? q->doms[d].until : 0;
}

size_t gr_quar_count (const gr_quar_t *q)
{
    return q ? q->nactive : 0;
}

size_t gr_quar_release (gr_quar_t *q, double now)
{
    if (!q || q->nactive == 0)
        return SIZE_MAX;
    for (size_t d = 0; d < q->ndoms; d++) {
        if (q->doms[d].until > 0 && q->doms[d].until <= now) {
            q->doms[d].until = 0;
            q->nactive--;
            return d;
        }
    }
    return SIZE_MAX;
}

unsigned gr_quar_times (const gr_quar_t *q, size_t d)
{
    return q && d < q->ndoms ? q->doms[d].times : 0;
}
