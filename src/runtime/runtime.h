/* The master and worker loops.
 *
 * gr_run() is called by every rank after MPI_Init.  Rank 0 reads the spec,
 * creates the run directory and ships both to the workers; then rank 0
 * runs the master loop and every other rank a worker loop.  With a single
 * rank, rank 0 runs both, interleaved in one loop, talking to itself
 * through the same MPI messages.
 */
#ifndef GR_RUNTIME_RUNTIME_H
#define GR_RUNTIME_RUNTIME_H

#include <stdbool.h>
#include <stdint.h>

/* Exit codes, as documented in gridrun(1). */
enum {
    GR_EXIT_OK = 0,
    GR_EXIT_FAILED = 1,     /* some tasks failed for good */
    GR_EXIT_USAGE = 2,      /* usage or spec error */
    GR_EXIT_INTERNAL = 70,
    GR_EXIT_IO = 74,        /* the run directory cannot be written (a full
                               disk, an I/O error): the run stopped; free
                               space and run again to resume (EX_IOERR) */
    GR_EXIT_RESUMABLE = 75, /* drained; run again to resume */
};

/* Captured output kept per task, stream and attempt when neither the
 * spec's max_output: nor --max-output says. */
#define GR_DEFAULT_MAX_OUTPUT (64ull * 1024 * 1024)

typedef struct gr_run_opts {
    const char *spec_path;
    const char *run_dir;        /* NULL: ./gridrun-NAME-YYYYmmdd-HHMMSS */
    uint32_t cpus_per_worker;   /* 0: the node's PUs shared among its workers */
    uint32_t gpus_per_worker;
    uint64_t mem_per_worker;    /* 0: the node's memory shared likewise */
    double prefetch_window;     /* seconds of work a worker holds queued */
    uint32_t max_prefetch;      /* most tasks a worker holds queued */
    double flush_interval;      /* longest a finished result waits to be sent */
    double heartbeat;           /* seconds between idle worker heartbeats */
    uint64_t max_output;        /* bytes of captured output kept per stream
                                   and attempt (--max-output); 0: not given,
                                   the spec's max_output:, else
                                   GR_DEFAULT_MAX_OUTPUT */
    uint64_t seed;              /* backoff jitter seed */
    int quiet;                  /* no summary on stdout */

    /* Durability and draining. */
    bool force;                 /* resume even though the spec changed */
    bool retry_failed;          /* resume: run tasks that failed for good again */
    bool no_journal;            /* benchmarks only: no journal, no resume */
    double commit_interval;     /* journal group commit, seconds */
    double grace;               /* drain grace; < 0: the spec's grace: */
    int preempt_signal;         /* drains like SIGTERM and SIGINT (SIGUSR2) */
    double deadline;            /* wall clock the run must end by; 0: none */
    bool slurm_deadline;        /* no --deadline was given, and the run is a
                                   Slurm job's: the deadline is the job's end
                                   time, SLURM_JOB_END_TIME's (in deadline)
                                   or, without it, what squeue says; the
                                   master asks squeue again every
                                   slurm_reread seconds (0: never) so that
                                   a changed time limit counts */
    double slurm_reread;
    double lost_after;          /* a silent worker is lost after this long */
    double snapshot_interval;   /* seconds between run.h5 snapshots */
    bool no_bind;               /* do not bind tasks to cores and GPUs */
    const char *site_path;      /* site topology file; NULL: $GRIDRUN_SITE */

    /* What the run shows (obs.h). */
    const char *metrics_file;   /* NULL: RUN/metrics.prom; "": none */
    const char *metrics_listen; /* HOST:PORT to serve /metrics on; NULL: none */
    double metrics_interval;    /* seconds between writes; 0: at the end only */
    int events;                 /* gr_events_t */
    int progress;               /* gr_progress_t */
    double progress_interval;   /* seconds between progress lines */

    /* Chaos mode (src/common/chaos.h): the fault spec, as --chaos or
     * GRIDRUN_CHAOS gave it and gr_chaos_parse accepted it; NULL: off.
     * Rank 0's goes to every rank. */
    const char *chaos;
} gr_run_opts_t;

/* Signal handling: every rank counts drain signals; only the master acts.
 * Install before MPI_Init so MPI's threads inherit nothing odd. */
int gr_runtime_signals_init (int preempt_signal);

/* How many drain signals this process has received. */
int gr__drain_signals (void);

/* False when the master must not call MPI_Finalize (a worker was lost, and
 * Open MPI can hang there); the launcher ends mpirun. */
bool gr_run_should_finalize (void);

void gr_run_opts_init (gr_run_opts_t *o);

/* The heartbeat both sides use: often enough that a peer is never taken
 * for lost while it is alive, whatever --lost-after says. */
static inline double gr__heartbeat (const gr_run_opts_t *o)
{
    double third = o->lost_after / 3;
    return third > 0 && third < o->heartbeat ? third : o->heartbeat;
}

/* Run the job; returns the process exit code. */
int gr_run (const gr_run_opts_t *opts);

/* Internal: the worker state machine, also driven by rank 0 when alone. */
typedef struct gr_worker gr_worker_t;
struct gr_spec;
struct gr_chan;
struct gr_topo_node;

/* What a worker owns on its node, for binding.  topo NULL: no binding. */
typedef struct gr_worker_res {
    struct gr_topo_node *topo; /* owned by the worker once created */
    uint32_t *cores;           /* logical core indexes; malloc'd, owned too */
    size_t ncores;
    uint32_t *gpus;            /* positions in the node's GPU list */
    size_t ngpus;
} gr_worker_res_t;

gr_worker_t *gr__worker_create (const struct gr_spec *spec, const char *run_dir,
                                int rank, uint32_t cpus, uint32_t gpus,
                                const gr_run_opts_t *opts, struct gr_chan *ch,
                                gr_worker_res_t *res);
void gr__worker_destroy (gr_worker_t *w);
/* One pass: receive, reap, start, send.  Returns 1 if it did something,
 * 0 if idle, -1 on a fatal error. */
int gr__worker_step (gr_worker_t *w);
/* True once the worker has said goodbye. */
int gr__worker_done (const gr_worker_t *w);
/* True (and its tasks are killed) when the master has been silent for
 * longer than lost_after: it died, and nothing else would end this rank. */
bool gr__worker_master_lost (gr_worker_t *w);
/* How long the worker may sleep before it has work due (timeouts, noop
 * ends, flush); and whether it has child processes to wait for. */
double gr__worker_idle_wait (const gr_worker_t *w, int *has_procs);

#endif
