/* What the master shows of a run while it goes (doc/observability.md):
 *
 *  - metrics: counters, gauges and duration summaries (P50/P95/P99 of task
 *    wall time, queue wait and dispatch latency), utilization per worker
 *    and per node, throughput, failures by failure domain; written as a
 *    Prometheus textfile (node_exporter's textfile collector format,
 *    replaced atomically) every interval and at the end;
 *  - the event log RUN/events.jsonl, one JSON object a line (jansson):
 *    run start and end, retries, timeouts, failures, lost workers,
 *    quarantines, drains, snapshots, and finished tasks, one line a
 *    worker every 0.25 s (or one a task with events = every task);
 *  - progress on the terminal: a bar redrawn in place, or plain lines.
 *
 * The master calls these from its one thread.  Costs on the hot path
 * (gr_obs_result) are a few additions and a histogram bucket; the JSON is
 * made per worker and quarter second, not per task, unless asked.  Nothing here
 * fails the run: an event log or metrics file that cannot be written is
 * reported once and left alone. */
#ifndef GR_RUNTIME_OBS_H
#define GR_RUNTIME_OBS_H

#include <stdbool.h>
#include <stdint.h>

#include "src/common/error.h"
#include "src/sched/sched.h"

typedef enum {
    GR_PROGRESS_AUTO = 0, /* a bar on a terminal, else lines */
    GR_PROGRESS_NONE = 1,
    GR_PROGRESS_BAR = 2,
    GR_PROGRESS_LINES = 3,
} gr_progress_t;

typedef enum {
    GR_EVENTS_OFF = 0,
    GR_EVENTS_ON = 1,    /* finished tasks one line a worker every 0.25 s */
    GR_EVENTS_TASKS = 2, /* one line a finished task */
} gr_events_t;

typedef struct gr_obs_opts {
    const char *run_dir;
    const char *name;          /* the spec's name: the run label */
    const char *metrics_file;  /* NULL: RUN/metrics.prom; "" none */
    double metrics_interval;   /* seconds; 0: only at the end */
    gr_events_t events;
    gr_progress_t progress;
    double progress_interval;  /* lines: seconds between them */
} gr_obs_opts_t;

void gr_obs_opts_init (gr_obs_opts_t *o);

/* Parse --progress and --events values; -1 with EINVAL. */
int gr_obs_parse_progress (const char *s, gr_progress_t *p);
int gr_obs_parse_events (const char *s, gr_events_t *e);

typedef struct gr_obs gr_obs_t;

/* nranks: ranks of the run (workers are 1..nranks-1, or 0 alone).  NULL
 * only when out of memory.  Free with gr_obs_close. */
gr_obs_t *gr_obs_create (const gr_obs_opts_t *o, int nranks);

/* Serve the metrics over HTTP on spec, "HOST:PORT" (":PORT" is
 * 127.0.0.1:PORT), at /metrics, from gr_obs_tick.  -1 with errp naming
 * spec when it is malformed or the address cannot be listened on. */
int gr_obs_listen (gr_obs_t *ob, const char *spec, gr_error_t *errp);

/* A worker: its host, rack and zone names, and cpus. */
void gr_obs_worker (gr_obs_t *ob, int rank, const char *host, const char *rack,
                    const char *zone, uint32_t cpus);

/* The run starts (incarnation > 1: a resume). */
void gr_obs_start (gr_obs_t *ob, uint32_t incarnation, const gr_sched_stats_t *st,
                   int nworkers);

/* An attempt ended on worker (-1: never placed): its outcome, the task's
 * name (label) and cpus, the result (NULL when there is none), and how
 * long it waited on the worker before it started. */
void gr_obs_result (gr_obs_t *ob, int worker, const gr_outcome_t *o, const char *label,
                    uint32_t cpus, double wall, double queued, bool has_result);

/* A worker asked for work and waited this long for it. */
void gr_obs_dispatch (gr_obs_t *ob, double latency);

/* Events of their own. */
void gr_obs_worker_lost (gr_obs_t *ob, int rank, uint64_t requeued);
void gr_obs_quarantine (gr_obs_t *ob, const char *domain, bool on, double seconds);
void gr_obs_drain (gr_obs_t *ob, const char *why, double grace);
void gr_obs_snapshot (gr_obs_t *ob, const char *state, double seconds);
/* Chaos mode injected n faults of a kind ("kill-task", chaos.h's names)
 * on rank. */
void gr_obs_chaos (gr_obs_t *ob, const char *fault, int rank, uint64_t n);

/* Now and then (every loop of the master is fine): metrics file,
 * progress, flushing the event log, when due. */
void gr_obs_tick (gr_obs_t *ob, double now, const gr_sched_stats_t *st);

/* The run ends with this exit code: final metrics, the last event, the
 * progress line finished.  Then free.  Accepts NULL. */
void gr_obs_close (gr_obs_t *ob, int code, const gr_sched_stats_t *st);

#endif
