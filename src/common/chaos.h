/* Chaos mode: faults injected on purpose, at given rates, to show that a
 * run survives them (doc/hardening.md, "Chaos mode").
 *
 * A spec is a comma-separated list of NAME=VALUE items:
 *
 *   kill-task=RATE       a task that has started: SIGKILL to its process
 *                        group at a random moment of its run
 *   kill-worker=RATE     per task result: the worker rank kills itself
 *                        (never rank 0)
 *   delay=RATE:DURATION  a worker holds a message of results, the master
 *                        a message of assignments, for DURATION
 *   journal-eio=RATE     per journal write: it fails with EIO, that write
 *                        alone
 *   journal-enospc=RATE  per journal write: it fails with ENOSPC, and so
 *                        does every later journal write of the process
 *                        (a full disk stays full)
 *   ckpt-eio=RATE        per checkpoint file a save writes (libgridrun):
 *                        EIO, that save alone
 *   ckpt-enospc=RATE     the same with ENOSPC, and every later checkpoint
 *                        write of the process
 *   output-eio=RATE      per captured stream of a task that ends (a
 *                        worker keeping its stdout or stderr in the run
 *                        directory): EIO, that stream alone
 *   output-enospc=RATE   the same with ENOSPC, and every later stream the
 *                        worker keeps
 *   seed=N               the seed; each process draws from seed and rank
 *
 * RATE is a probability from 0 to 1, per event of that kind; DURATION as
 * gr_parse_duration reads it ("20ms").  "off" (or "") is a spec with
 * every rate 0.
 *
 * This module only decides: the sites that inject (the worker, the
 * master, the journal's writes, checkpoint saves) call it.  With chaos
 * off, gr_chaos_hit and gr_chaos_io cost one load and one predictable
 * branch.  Each site has a random stream of its own (xoshiro256**,
 * hash.h), so a site's decisions repeat with the seed whatever the other
 * sites do, and a site is never drawn from two threads at once (the
 * journal's writes come from its writer thread or, when that is idle,
 * the master's; checkpoint files from the saving thread; task output from
 * the worker's one thread).  No MPI here.
 */
#ifndef GR_COMMON_CHAOS_H
#define GR_COMMON_CHAOS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef enum {
    GR_CHAOS_KILL_TASK = 0,
    GR_CHAOS_KILL_WORKER = 1,
    GR_CHAOS_DELAY = 2,
    GR_CHAOS_JOURNAL_EIO = 3,
    GR_CHAOS_JOURNAL_ENOSPC = 4,
    GR_CHAOS_CKPT_EIO = 5,
    GR_CHAOS_CKPT_ENOSPC = 6,
    GR_CHAOS_OUTPUT_EIO = 7,
    GR_CHAOS_OUTPUT_ENOSPC = 8,
    GR_CHAOS_NSITES = 9,
} gr_chaos_site_t;

/* What a write belongs to, for gr_chaos_io.  Each has an EIO site, and
 * its ENOSPC site right after it. */
typedef enum {
    GR_CHAOS_IO_JOURNAL = 0,
    GR_CHAOS_IO_CKPT = 1,
    GR_CHAOS_IO_OUTPUT = 2,
    GR_CHAOS_NIO = 3,
} gr_chaos_io_t;

/* The longest spec text accepted, and the room gr_chaos_format needs. */
#define GR_CHAOS_SPEC_MAX 512

typedef struct gr_chaos_spec {
    double rate[GR_CHAOS_NSITES]; /* probabilities, 0 to 1 */
    double delay;                 /* seconds held, with GR_CHAOS_DELAY */
    uint64_t seed;
    bool seeded;                  /* seed= was given */
} gr_chaos_spec_t;

/* Parse text into *spec.  On a bad item, -1 with EINVAL and errp saying
 * which item, why, and what is allowed. */
int gr_chaos_parse (const char *text, gr_chaos_spec_t *spec, gr_error_t *errp);

/* Write the spec as text gr_chaos_parse reads back to the same spec: the
 * rates that are not 0, in the order above, then seed= when seeded.
 * "off" when no rate is set.  -1 with ENOSPC when len is too small
 * (GR_CHAOS_SPEC_MAX always does). */
int gr_chaos_format (const gr_chaos_spec_t *spec, char *buf, size_t len);

/* Whether any rate is above 0. */
bool gr_chaos_spec_any (const gr_chaos_spec_t *spec);

/* The item name of a site ("kill-task"). */
const char *gr_chaos_site_name (gr_chaos_site_t site);

/* Turn chaos on in this process with a copy of spec, the streams seeded
 * from spec->seed and rank; counts start at 0.  A spec with no rate set
 * turns it off.  Not thread-safe: call before the threads that inject
 * start (the journal's writer starts with the first commit). */
void gr_chaos_enable (const gr_chaos_spec_t *spec, int rank);
void gr_chaos_disable (void);

/* The spec in force, or NULL when chaos is off. */
const gr_chaos_spec_t *gr_chaos_current (void);

/* Internal: the state, NULL when off; and the slow paths. */
extern struct gr_chaos *gr__chaos;
bool gr__chaos_hit (gr_chaos_site_t site);
int gr__chaos_io (gr_chaos_io_t io);

static inline bool gr_chaos_on (void)
{
    return __builtin_expect (gr__chaos != NULL, 0);
}

/* Whether to inject a fault of this kind now: true with the site's rate,
 * counted.  Always false when chaos is off. */
static inline bool gr_chaos_hit (gr_chaos_site_t site)
{
    return gr_chaos_on () && gr__chaos_hit (site);
}

/* Before a write of io's kind: 0 to go on, or -1 with errno EIO or ENOSPC
 * to fail it as the disk would.  Draws ENOSPC first, then EIO; after an
 * ENOSPC every later call for the same io fails with ENOSPC too, without
 * drawing or counting.  Always 0 when chaos is off. */
static inline int gr_chaos_io (gr_chaos_io_t io)
{
    return gr_chaos_on () ? gr__chaos_io (io) : 0;
}

/* A number uniformly from [0, 1) from the site's stream (where in a
 * task's run to kill it, say); 0 when chaos is off.  Not counted. */
double gr_chaos_uniform (gr_chaos_site_t site);

/* Faults of this kind injected in this process since it was enabled; 0
 * when off.  Safe from any thread. */
uint64_t gr_chaos_count (gr_chaos_site_t site);

#endif
