/* The master's task state: which task goes next, what happened to each
 * attempt, and what the run adds up to.  No MPI here, so the decisions can
 * be unit-tested.
 *
 * Tasks are never materialized up front.  Each task definition has a
 * cursor into its sweep; a task exists in memory only while an attempt is
 * in flight or waiting for a retry, so a 10,000,000-task sweep costs the
 * same as a 10-task one until it runs.
 *
 * Order: retries whose backoff has passed come first, then fresh tasks of
 * runnable definitions in spec order.  A definition is runnable when every
 * definition it is `after` has ended; if any of those had a task fail for
 * good, its tasks are skipped instead (like make).
 */
#ifndef GR_SCHED_SCHED_H
#define GR_SCHED_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "src/ckpt/snapshot.h"
#include "src/journal/journal.h"
#include "src/proto/proto.h"
#include "src/spec/spec.h"

/* Delay before retry number `retry` (1 for the first retry) under policy
 * r: min(backoff_max, backoff * 2^(retry-1)), of which the fraction
 * `jitter` is randomized ("equal jitter"), so the result lies in
 * [d * (1 - jitter), d].  u is a uniform random number in [0, 1). */
double gr_backoff_delay (const gr_retry_t *r, uint32_t retry, double u);

typedef enum {
    GR_OUTCOME_DONE = 0,    /* succeeded */
    GR_OUTCOME_RETRY = 1,   /* failed; will run again after delay */
    GR_OUTCOME_FAILED = 2,  /* failed for good: retries exhausted */
    GR_OUTCOME_POISON = 3,  /* crashed crash_limit times: never retried */
    GR_OUTCOME_STALE = 4,   /* unknown or already-finished attempt id */
    GR_OUTCOME_REQUEUED = 5,/* not a failure (drain, lost worker): runs again */
} gr_outcome_kind_t;

typedef struct gr_outcome {
    gr_outcome_kind_t kind;
    uint32_t def;
    uint64_t index;
    uint64_t key;
    uint32_t attempt;
    uint32_t row;           /* the task's row in the task table */
    double delay;           /* RETRY: seconds until it may run again */
    int worker;
    char reason[128];       /* failures: "exit 3", "SIGSEGV", "timeout after 5s" */
} gr_outcome_t;

typedef struct gr_sched_stats {
    uint64_t total;         /* tasks in the spec */
    uint64_t done;
    uint64_t failed;        /* for good, including poison */
    uint64_t poison;
    uint64_t skipped;       /* not run because an `after` dependency failed */
    uint64_t retries;       /* retry attempts scheduled */
    uint64_t timeouts;
    uint64_t crashes;       /* attempts ended by a signal gridrun did not send */
    uint64_t attempts;      /* attempts that reported back */
    uint64_t running;       /* attempts in flight */
    uint64_t waiting;       /* waiting out a retry backoff, or requeued */
    uint64_t requeued;      /* attempts given back (drain, lost worker) */
    uint64_t duplicates;    /* extra successful ends found in the journal */
    uint64_t resumed_done;  /* of done: completed by an earlier incarnation */
    double busy_seconds;    /* sum of attempt wall times */
    double cpu_seconds;     /* sum of user + system time */
} gr_sched_stats_t;

/* One of the slowest tasks. */
typedef struct gr_slow_task {
    double wall;
    uint32_t def;
    uint64_t index;
    uint64_t key;
    int64_t maxrss_kb;
} gr_slow_task_t;

#define GR_SCHED_SLOWEST 5
#define GR_SCHED_FAILED_KEPT 100

typedef struct gr_sched gr_sched_t;

typedef void (*gr_outcome_f) (const gr_outcome_t *o, void *arg);

/* The spec must outlive the scheduler.  seed drives the backoff jitter. */
gr_sched_t *gr_sched_create (const gr_spec_t *spec, uint64_t seed);
void gr_sched_destroy (gr_sched_t *s);

/* Pick the next task that fits a worker offering cpus/gpus/mem (mem 0:
 * unknown, not checked) and whose expected duration (the mean wall time of
 * its definition's finished tasks, else its timeout, else unknown and
 * assumed to fit) is at most max_duration (pass a huge value for no
 * limit), and record it as in flight on `worker`.  Returns 1 with rec
 * filled, 0 if nothing can run now, -1 on error. */
int gr_sched_next (gr_sched_t *s, double now, int worker, uint32_t cpus,
                   uint32_t gpus, uint64_t mem, double max_duration,
                   gr_assign_rec_t *rec);

/* ------------------------------------------------------------------ */
/* Placement by failure domains.
 *
 * gr_sched_set_placement tells the scheduler where each worker rank sits:
 * dom[rank * GR_SCHED_LEVELS + level] is its zone, rack and node id
 * (levels numbered as gr_level_t), and req[rank * ntasks + def] is 1 when
 * the rank's node meets the definition's require: (req NULL: every rank
 * meets every require).  Without it, spread, retry_away and require are
 * ignored, as on a single node.
 *
 * Then:
 *  - The replicas of a task (replicas: N, spread: LEVEL) are created
 *    together and handed out one by one, never to a worker in the domain
 *    of a sibling replica that is running or done in this incarnation.
 *  - A retry (retry_away: LEVEL) avoids the domain of its failed attempt
 *    while some usable worker elsewhere may run the task.
 *  - gr_sched_next_placed takes, per definition, whether this worker may
 *    be given its tasks now (require: and the prefer: policy the caller
 *    applies); NULL allows every definition.
 */
#define GR_SCHED_LEVELS 3

int gr_sched_set_placement (gr_sched_t *s, int nranks, const uint32_t *dom,
                            const uint8_t *req);

/* A rank that may take no new work (lost, or in a quarantined domain), or
 * may again.  Retries only avoid a domain while a usable rank elsewhere
 * could take them. */
void gr_sched_set_usable (gr_sched_t *s, int rank, bool usable);

int gr_sched_next_placed (gr_sched_t *s, double now, int worker, uint32_t cpus,
                          uint32_t gpus, uint64_t mem, double max_duration,
                          const uint8_t *eligible, gr_assign_rec_t *rec);

/* Tasks waiting to be placed that no usable rank can take (a spread that
 * lost its domains, a require: only lost nodes met): fail them for good,
 * each with a reason saying why.  The caller calls this only when nothing
 * runs and every usable worker asked for work in vain.  fn sees each
 * failure.  Returns how many failed, or -1. */
int gr_sched_fail_unplaceable (gr_sched_t *s, gr_outcome_f fn, void *arg);

/* Move the attempt `id`, just handed out, to another worker: a group's
 * attempt is taken with worker -1 (no worker: lost workers never take it
 * with them) before its processes have a place, and then lives on the
 * worker of its RANK 0.  0, or -1 with ENOENT. */
int gr_sched_set_worker (gr_sched_t *s, uint64_t id, int worker);

/* Account the result of an attempt and decide what follows.  A result
 * whose flags hold GR_RES_UNPLACED fails the task for good. */
int gr_sched_complete (gr_sched_t *s, double now, const gr_result_rec_t *res,
                       gr_outcome_t *out);

/* Give back every attempt in flight on `worker` (it was lost): each runs
 * again, not counted as a failure.  fn, if not NULL, sees each outcome. */
int gr_sched_requeue_worker (gr_sched_t *s, int worker, gr_outcome_f fn,
                             void *arg);

/* True when every task has ended (done, failed or skipped). */
bool gr_sched_finished (const gr_sched_t *s);

/* Resume.  Before the first gr_sched_next, feed the task records of the
 * journal of earlier incarnations, in order, then call
 * gr_sched_restore_finish.  Per key, the first successful end wins and
 * later successful ends count as duplicates, never as completions;
 * attempts continue from the highest one seen; a task that was in flight
 * or waiting for a retry runs again; one that failed for good stays failed
 * unless retry_failed.  Keys the current spec does not produce are kept
 * in the table but not counted. */
int gr_sched_restore_start (gr_sched_t *s, const gr_jstart_t *t, int worker);
int gr_sched_restore_end (gr_sched_t *s, const gr_jend_t *t, int worker);
int gr_sched_restore_finish (gr_sched_t *s, bool retry_failed);

/* The task table: one row per task that has had an attempt (or that the
 * journal knows), 32 bytes each; tasks not yet started cost nothing.
 * Rows stay valid and in place until the scheduler is destroyed. */
typedef struct gr_task_row {
    uint64_t key;
    uint64_t index : 40;    /* at most 2^40 tasks per definition */
    uint64_t def : 24;      /* more than GR_SPEC_MAX_TASKDEFS */
    float wall;             /* seconds, last attempt */
    uint32_t maxrss_kb;
    uint16_t worker;        /* rank of the last attempt */
    uint16_t attempts;
    uint8_t exit_code;      /* last attempt's exit status (errno if it could
                               not start); meaningless with a signal */
    uint8_t signal;
    uint8_t state : 4;      /* gr_task_state_t */
    uint8_t flags : 4;      /* GR_RES_* of the last attempt */
    uint8_t crashes;        /* crashes; for a group, its failures */
} gr_task_row_t;

/* The exit code as people read it: -1 for a signal or no attempt yet. */
static inline int gr_task_row_exit (const gr_task_row_t *r)
{
    return r->signal || r->attempts == 0 ? -1 : r->exit_code;
}

size_t gr_sched_rows (const gr_sched_t *s, const gr_task_row_t **rows);

/* Describe why an attempt failed ("exit 3", "killed by SIGSEGV", ...). */
void gr_sched_describe (const gr_taskdef_t *d, int exit_code, int signal,
                        uint32_t flags, char *buf, size_t len);

/* The earliest time a waiting retry becomes ready; 0 if none waits. */
double gr_sched_next_retry (const gr_sched_t *s);

const gr_sched_stats_t *gr_sched_stats (const gr_sched_t *s);

/* The slowest tasks so far, slowest first; returns how many. */
int gr_sched_slowest (const gr_sched_t *s, const gr_slow_task_t **out);

/* The first GR_SCHED_FAILED_KEPT failures for good, in order. */
int gr_sched_failures (const gr_sched_t *s, const gr_outcome_t **out);

#endif
