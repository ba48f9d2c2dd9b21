/* gridrun report: what report.c gathers from a run directory and
 * report_html.c draws.  Internal to src/cmd. */
#ifndef GR_CMD_REPORT_H
#define GR_CMD_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <jansson.h>

#include "src/ckpt/snapshot.h"
#include "src/common/hist.h"

#define GR_REPORT_BUCKETS_MAX 100   /* time buckets of the time charts */
#define GR_REPORT_BINS_MAX 120      /* bins of the duration histogram */
#define GR_REPORT_SLOWEST 20
#define GR_REPORT_FAILED 50
#define GR_REPORT_NODES_MAX 4096    /* nodes tracked; more are counted, not kept */
#define GR_REPORT_EXACT 65536       /* up to this many tasks, exact quantiles */

/* A task kept for one of the tables.  The strings are malloc'd, cut to a
 * length fit for a table cell. */
typedef struct gr_report_task {
    double wall;
    uint64_t key;
    char *name, *params, *host;
    char *reason;            /* why it failed, when known; else NULL */
    uint32_t attempts;
    int state;               /* gr_task_state_t */
    int exit_code, signal;
} gr_report_task_t;

/* A node: a host name as the workers report it. */
typedef struct gr_report_node {
    char *name;
    char *rack, *zone;       /* from metrics.prom's labels; NULL if unknown */
    uint32_t cpus;           /* its workers' cpus (run.h5 or journal); 0: unknown */
    uint32_t workers;        /* its workers (run.h5 or journal) */
    json_t *seen;            /* worker ranks seen in the time series ("3": true) */
    uint64_t failures;       /* failed attempts in the time series */
    double prom_failures;    /* gridrun_failures_total over its workers */
    double busy_total;       /* cpu-seconds in the time series */
    double *busy;            /* cpu-seconds a time bucket, nbuckets of them */
} gr_report_node_t;

typedef struct gr_report {
    const char *run_dir;
    double now;              /* when the report was made (epoch) */

    /* State: exit_status, master.info. */
    bool have_exit;
    int exit_code;
    bool alive;              /* the master runs (only known on its host) */
    bool remote;             /* its master runs on another host */
    long master_pid;
    char master_host[64];
    char slurm_job[72];

    /* run.h5 */
    bool have_h5;
    gr_snap_meta_t meta;
    double h5_written;
    gr_snap_counts_t counts;
    bool have_counts;
    double h5_utilization;
    bool have_h5_util;
    /* The workers: run.h5's /workers, else the journal's WORKER records
     * of the latest incarnation. */
    uint32_t nworkers, ncpus, nlost;
    uint32_t *rank_cpus;     /* cpus of each worker rank */
    size_t nrank_cpus;

    /* The task table (run.h5, else the journal). */
    const char *table_src;   /* "run.h5", "journal" or NULL */
    char table_note[256];    /* why there is none, or a caveat */
    char *job_name;          /* from run.h5, else the stored spec */
    uint64_t rows;
    uint64_t by_state[6];
    gr_hist_t wall;
    double *walls;           /* every wall time while there are at most
                                GR_REPORT_EXACT, for exact quantiles */
    size_t nwalls;
    bool exact;              /* quantiles exact (else from the histogram) */
    double q[3];             /* P50, P95, P99 */
    gr_report_task_t slow[GR_REPORT_SLOWEST];  /* a min-heap on wall */
    size_t nslow;
    gr_report_task_t failed[GR_REPORT_FAILED];
    size_t nfailed;
    uint64_t failed_total;
    bool logx;
    double xlo, xhi;
    size_t nbins;
    uint64_t bins[GR_REPORT_BINS_MAX];

    /* The time series (events.jsonl, else the journal). */
    const char *series_src;  /* "events.jsonl", "journal" or NULL */
    char series_note[256];
    bool have_events;
    uint64_t ev_lines, ev_bad;
    off_t ev_end;            /* pass 2 stops where pass 1 did */
    bool have_span;
    double t0, t1;
    unsigned run_starts;
    bool run_ended;
    int end_code;
    uint64_t ev_done, ev_failures, ev_requeued, drains, lost, quarantines;
    uint64_t failures_unplaced;  /* failed attempts no worker ran */
    size_t nb;
    double width;
    double done[GR_REPORT_BUCKETS_MAX], fail[GR_REPORT_BUCKETS_MAX];

    /* metrics.prom */
    bool have_prom;
    uint64_t prom_bad;

    /* Nodes by name. */
    gr_report_node_t *nodes;
    size_t nnodes;
    json_t *node_ix;         /* name -> index */
    uint64_t nodes_dropped;  /* samples on nodes past GR_REPORT_NODES_MAX */
} gr_report_t;

/* Write the page for r to f.  Returns 0, or -1 if f failed. */
int gr_report_html (const gr_report_t *r, FILE *f);

#endif
