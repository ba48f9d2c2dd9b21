/* gridrun report RUN [-o FILE]: one self-contained HTML page about a run
 * (report_html.c draws it).  This file gathers the data, each piece from
 * the best source the run directory has:
 *
 *   state          exit_status, master.info (as gridrun status)
 *   task table     run.h5 (/tasks, /counts, /workers, /metrics); without
 *                  one (a young run, before its first snapshot) the
 *                  journal, replayed as gridrun status does
 *   time series    events.jsonl; with --events off the journal's task
 *                  ends, which carry the same times, hosts and wall times
 *   domains        metrics.prom: the rack and zone of each node
 *
 * Everything streams: the task table is read in batches (twice: once for
 * the counts, quantiles, the slowest and the failed tasks, once more for
 * the histogram's bins, whose range the first pass finds), and the events
 * twice (the span, then the buckets).  What is kept is bounded: counters
 * per time bucket and node, 20 slowest and 50 failed tasks. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "src/common/fs.h"
#include "src/common/gtime.h"
#include "src/journal/journal.h"
#include "src/runtime/rundir.h"
#include "src/runtime/runtime.h"
#include "src/sched/sched.h"
#include "src/spec/spec.h"
#include "cmd.h"
#include "report.h"

/* Exit code for input the report cannot use (a missing or broken run
 * directory, an unwritable output). */
#define EXIT_BAD_INPUT 1
/* A line of events.jsonl longer than this is not one gridrun wrote. */
#define EVENT_LINE_MAX (1u << 20)
/* Bytes of a name, parameter list or host kept for a table cell. */
#define CELL_MAX 300

/* One point of the time series: attempts that ended at `time` on a
 * worker, and the busy cpu-seconds they used over [time - span, time]. */
typedef struct sample {
    double time;
    const char *host;        /* NULL or "": not placed */
    int worker;              /* -1: unknown */
    double done;             /* tasks that succeeded */
    double failed;           /* failed attempts (retried or not) */
    double busy;             /* cpu-seconds */
    double span;
} sample_t;

/* What the journal fallback needs while it replays. */
typedef struct jctx {
    gr_report_t *r;
    int pass;                /* series: 1 span and nodes, 2 buckets; 0 none */
    gr_spec_t *spec;         /* NULL: cpus of a task unknown (1) */
    gr_sched_t *sched;       /* non-NULL: restore the task table */
    char (*hosts)[64];       /* host of each worker rank, this incarnation */
    uint32_t *cpus;          /* and its cpus */
    size_t nhosts;
} jctx_t;

/* ---- Small helpers ------------------------------------------------------ */

/* A malloc'd copy of s cut to at most max bytes on a UTF-8 boundary, with
 * an ellipsis when cut.  NULL only when out of memory. */
static char *cut (const char *s, size_t max)
{
    size_t n = strlen (s);
    if (n <= max)
        return strdup (s);
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--;
    char *p = malloc (max + 4);
    if (!p)
        return NULL;
    memcpy (p, s, max);
    memcpy (p + max, "\xe2\x80\xa6", 4);   /* U+2026 and the NUL */
    return p;
}

static void task_clear (gr_report_task_t *t)
{
    free (t->name);
    free (t->params);
    free (t->host);
    free (t->reason);
    memset (t, 0, sizeof (*t));
}

static int task_set (gr_report_task_t *t, const gr_snap_task_t *row, const char *reason)
{
    task_clear (t);
    t->wall = row->wall;
    t->key = row->key;
    t->attempts = row->attempts;
    t->state = (int)row->state;
    t->exit_code = row->exit_code;
    t->signal = row->signal;
    if (!(t->name = cut (row->name ? row->name : "", CELL_MAX))
        || !(t->params = cut (row->params ? row->params : "", CELL_MAX))
        || !(t->host = cut (row->host ? row->host : "", CELL_MAX))
        || (reason && !(t->reason = cut (reason, CELL_MAX)))) {
        task_clear (t);
        return -1;
    }
    return 0;
}

/* The node called name, made if new; NULL past GR_REPORT_NODES_MAX or
 * when out of memory. */
static gr_report_node_t *node_get (gr_report_t *r, const char *name)
{
    json_t *ix = json_object_get (r->node_ix, name);
    if (ix)
        return &r->nodes[json_integer_value (ix)];
    if (r->nnodes == GR_REPORT_NODES_MAX)
        return NULL;
    if (!r->nodes && !(r->nodes = calloc (GR_REPORT_NODES_MAX, sizeof (*r->nodes))))
        return NULL;
    gr_report_node_t *n = &r->nodes[r->nnodes];
    memset (n, 0, sizeof (*n));
    if (!(n->name = strdup (name))
        || json_object_set_new (r->node_ix, name, json_integer ((json_int_t)r->nnodes)) < 0) {
        free (n->name);
        n->name = NULL;
        return NULL;
    }
    r->nnodes++;
    return n;
}

static void report_free (gr_report_t *r)
{
    for (size_t i = 0; i < r->nslow; i++)
        task_clear (&r->slow[i]);
    for (size_t i = 0; i < r->nfailed; i++)
        task_clear (&r->failed[i]);
    for (size_t i = 0; i < r->nnodes; i++) {
        free (r->nodes[i].name);
        free (r->nodes[i].rack);
        free (r->nodes[i].zone);
        free (r->nodes[i].busy);
        json_decref (r->nodes[i].seen);
    }
    free (r->nodes);
    json_decref (r->node_ix);
    free (r->rank_cpus);
    free (r->walls);
    free (r->job_name);
    gr_snap_meta_clear (&r->meta);
}

/* ---- State: exit_status and master.info --------------------------------- */

static void read_state (gr_report_t *r)
{
    char path[PATH_MAX], *buf, *line, *save = NULL;
    size_t len;

    r->have_exit = gr_rundir_exit_status (r->run_dir, &r->exit_code);
    if (gr_read_file (gr_rundir_file (r->run_dir, "master.info", path, sizeof (path)), 8192,
                      &buf, &len, NULL) < 0)
        return;
    for (line = strtok_r (buf, "\n", &save); line; line = strtok_r (NULL, "\n", &save)) {
        if (strncmp (line, "pid ", 4) == 0)
            r->master_pid = strtol (line + 4, NULL, 10);
        else if (strncmp (line, "host ", 5) == 0)
            snprintf (r->master_host, sizeof (r->master_host), "%s", line + 5);
        else if (strncmp (line, "slurm_job ", 10) == 0)
            snprintf (r->slurm_job, sizeof (r->slurm_job), "%s", line + 10);
    }
    free (buf);
    if (r->have_exit || r->master_pid <= 0)
        return;
    bool local;
    gr_rundir_master_pid (r->run_dir, &local);
    if (!local) {
        r->remote = true;
        return;
    }
    /* As gridrun status: the pid is alive and is a gridrun. */
    if (kill ((pid_t)r->master_pid, 0) == 0) {
        char cmd[256] = "";
        snprintf (path, sizeof (path), "/proc/%ld/cmdline", r->master_pid);
        FILE *f = fopen (path, "re");
        if (f) {
            size_t n = fread (cmd, 1, sizeof (cmd) - 1, f);
            cmd[n] = '\0';
            fclose (f);
        }
        r->alive = strstr (cmd, "gridrun") != NULL;
    }
}

/* ---- The task table ---------------------------------------------------- */

/* Wall times past this (30 years) are damage, not durations. */
#define WALL_MAX 1e9

static bool has_wall (const gr_snap_task_t *t)
{
    return t->attempts > 0 && t->wall >= 0 && t->wall < WALL_MAX
           && (t->state == GR_TASK_DONE || t->state == GR_TASK_FAILED
               || t->state == GR_TASK_POISON || t->state == GR_TASK_WAITING);
}

static void heap_down (gr_report_task_t *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < n && h[l].wall < h[m].wall)
            m = l;
        if (l + 1 < n && h[l + 1].wall < h[m].wall)
            m = l + 1;
        if (m == i)
            return;
        gr_report_task_t t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static void heap_up (gr_report_task_t *h, size_t i)
{
    while (i > 0 && h[(i - 1) / 2].wall > h[i].wall) {
        gr_report_task_t t = h[i];
        h[i] = h[(i - 1) / 2];
        h[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
}

/* First pass over the table: counts, quantiles, slowest, failed. */
static int collect_task (gr_report_t *r, const gr_snap_task_t *t, const char *reason)
{
    r->rows++;
    if ((unsigned)t->state < 6)
        r->by_state[t->state]++;
    if (t->state == GR_TASK_FAILED || t->state == GR_TASK_POISON) {
        r->failed_total++;
        if (r->nfailed < GR_REPORT_FAILED
            && task_set (&r->failed[r->nfailed++], t, reason) < 0)
            return -1;
    }
    if (!has_wall (t))
        return 0;
    gr_hist_add (&r->wall, t->wall);
    if (r->wall.n <= GR_REPORT_EXACT) {
        if (!r->walls && !(r->walls = malloc (GR_REPORT_EXACT * sizeof (double))))
            return -1;
        r->walls[r->nwalls++] = t->wall;
    }
    if (r->nslow < GR_REPORT_SLOWEST) {
        if (task_set (&r->slow[r->nslow], t, NULL) < 0)
            return -1;
        heap_up (r->slow, r->nslow++);
    }
    else if (t->wall > r->slow[0].wall) {
        if (task_set (&r->slow[0], t, NULL) < 0)
            return -1;
        heap_down (r->slow, r->nslow, 0);
    }
    return 0;
}

static int collect_cb (const gr_snap_task_t *t, void *arg)
{
    return collect_task (arg, t, NULL) < 0 ? 1 : 0;
}

/* Second pass: the histogram's bins. */
static void bin_task (gr_report_t *r, const gr_snap_task_t *t)
{
    double x;
    if (!has_wall (t) || r->nbins == 0)
        return;
    if (r->logx)
        x = (log10 (t->wall > r->xlo ? t->wall : r->xlo) - log10 (r->xlo))
            / (log10 (r->xhi) - log10 (r->xlo));
    else
        x = (t->wall - r->xlo) / (r->xhi - r->xlo);
    long b = (long)floor (x * (double)r->nbins);
    if (b < 0)
        b = 0;
    if (b >= (long)r->nbins)
        b = (long)r->nbins - 1;
    r->bins[b]++;
}

static int bin_cb (const gr_snap_task_t *t, void *arg)
{
    bin_task (arg, t);
    return 0;
}

/* A step of 1, 2 or 5 times a power of ten near range / target. */
static double nice_step (double range, int target)
{
    double raw = range / target, mag = pow (10, floor (log10 (raw))), f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

static int dbl_cmp (const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* P50, P95, P99: the ceil(q n)-th smallest wall time, exactly while the
 * values were all kept, else from the histogram (within about 3%). */
static void quantiles (gr_report_t *r)
{
    static const double qs[3] = {0.5, 0.95, 0.99};
    r->exact = r->wall.n > 0 && r->nwalls == r->wall.n;
    if (r->exact)
        qsort (r->walls, r->nwalls, sizeof (double), dbl_cmp);
    for (int i = 0; i < 3; i++) {
        size_t k = (size_t)ceil (qs[i] * (double)r->nwalls);
        r->q[i] = r->exact ? r->walls[k > 0 ? k - 1 : 0] : gr_hist_quantile (&r->wall, qs[i]);
    }
    free (r->walls);
    r->walls = NULL;
}

/* The histogram's axis: logarithmic when the longest is more than 100
 * times the shortest (above 1 us), ten bins a decade; else linear over
 * rounded bounds, 50 bins. */
static void choose_bins (gr_report_t *r)
{
    const gr_hist_t *h = &r->wall;
    quantiles (r);
    if (h->n == 0)
        return;
    double lo = h->min > 1e-6 ? h->min : 1e-6, hi = h->max > lo ? h->max : lo;
    if (hi / lo > 100) {
        r->logx = true;
        r->xlo = pow (10, floor (log10 (lo)));
        r->xhi = pow (10, ceil (log10 (hi)));
        if (r->xhi <= hi)
            r->xhi *= 10;
        size_t decades = (size_t)lround (log10 (r->xhi / r->xlo));
        size_t per = decades * 10 <= GR_REPORT_BINS_MAX ? 10 : GR_REPORT_BINS_MAX / decades;
        r->nbins = decades * per;
        return;
    }
    lo = h->min;
    hi = h->max;
    if (hi - lo < 1e-9) {
        double pad = hi > 0 ? hi * 0.1 : 1e-3;
        lo = lo - pad > 0 ? lo - pad : 0;
        hi += pad;
    }
    double step = nice_step (hi - lo, 5);
    r->xlo = floor (lo / step) * step;
    r->xhi = ceil (hi / step) * step;
    if (r->xhi <= h->max)
        r->xhi += step;
    r->nbins = 50;
}

/* run.h5: meta, workers, metrics and both passes over /tasks. */
/* A worker of the run (run.h5's /workers, or the journal). */
static int add_worker (gr_report_t *r, const gr_snap_worker_t *w)
{
    r->nworkers++;
    r->ncpus += w->cpus;
    r->nlost += w->lost != 0;
    if (w->rank >= 0 && w->rank < 1 << 24) {
        if ((size_t)w->rank >= r->nrank_cpus) {
            size_t n = (size_t)w->rank + 1;
            uint32_t *p = realloc (r->rank_cpus, n * sizeof (*p));
            if (!p)
                return -1;
            memset (p + r->nrank_cpus, 0, (n - r->nrank_cpus) * sizeof (*p));
            r->rank_cpus = p;
            r->nrank_cpus = n;
        }
        r->rank_cpus[w->rank] = w->cpus;
    }
    gr_report_node_t *n = node_get (r, w->host ? w->host : "");
    if (n) {
        n->cpus += w->cpus;
        n->workers++;
    }
    return 0;
}

static int worker_cb (const gr_snap_worker_t *w, void *arg)
{
    return add_worker (arg, w) < 0 ? 1 : 0;
}

static int metric_cb (const char *name, double value, void *arg)
{
    gr_report_t *r = arg;
    if (strcmp (name, "utilization") == 0 && isfinite (value)) {
        r->h5_utilization = value;
        r->have_h5_util = true;
    }
    return 0;
}

static int read_h5 (gr_report_t *r, const char *path, gr_error_t *errp)
{
    if (gr_snap_read_meta (path, &r->meta, &r->h5_written, errp) < 0
        || gr_snap_read_workers (path, worker_cb, r, errp) < 0
        || gr_snap_read_metrics (path, metric_cb, r, errp) < 0
        || gr_snap_read (path, collect_cb, r, &r->counts, errp) < 0)
        return -1;
    r->have_h5 = true;
    r->have_counts = true;
    r->table_src = "run.h5";
    if (r->meta.job && !(r->job_name = strdup (r->meta.job)))
        return gr_errprintf (errp, "out of memory");
    choose_bins (r);
    if (r->nbins && gr_snap_read (path, bin_cb, r, NULL, errp) < 0)
        return -1;
    return 0;
}

/* ---- The journal: task table and time series --------------------------- */

static void sample (gr_report_t *r, int pass, const sample_t *s);

static const char *jhost (const jctx_t *j, uint32_t rank)
{
    return rank < j->nhosts ? j->hosts[rank] : "";
}

/* Why a task failed for good, from its journaled end, for the failed
 * tasks the table keeps (run.h5 has no flags: a timeout is a signal). */
static void journal_reason (gr_report_t *r, const gr_taskdef_t *d, const gr_jend_t *e)
{
    char why[160];
    for (size_t i = 0; i < r->nfailed; i++) {
        if (r->failed[i].key != e->key)
            continue;
        gr_sched_describe (d, e->signal ? -1 : e->exit_code, e->signal, e->flags, why,
                           sizeof (why));
        free (r->failed[i].reason);
        r->failed[i].reason = cut (why, CELL_MAX);
    }
}

static int journal_cb (const gr_jrec_t *rec, void *arg)
{
    jctx_t *j = arg;
    gr_report_t *r = j->r;
    sample_t s = {.time = rec->time, .worker = -1};

    switch (rec->type) {
        case GR_JREC_RUN_START:
            /* A new incarnation names its workers afresh. */
            for (size_t i = 0; i < j->nhosts; i++) {
                j->hosts[i][0] = '\0';
                j->cpus[i] = 0;
            }
            if (j->pass == 1)
                r->run_starts++;
            break;
        case GR_JREC_WORKER:
            if (rec->worker.rank < 1 << 24 && rec->worker.rank >= j->nhosts) {
                size_t n = (size_t)rec->worker.rank + 1;
                char (*p)[64] = realloc (j->hosts, n * sizeof (*p));
                if (p)
                    j->hosts = p;
                uint32_t *c = realloc (j->cpus, n * sizeof (*c));
                if (c)
                    j->cpus = c;
                if (!p || !c)
                    return -1;
                memset (p + j->nhosts, 0, (n - j->nhosts) * sizeof (*p));
                memset (c + j->nhosts, 0, (n - j->nhosts) * sizeof (*c));
                j->nhosts = n;
            }
            if (rec->worker.rank < j->nhosts) {
                snprintf (j->hosts[rec->worker.rank], sizeof (j->hosts[0]), "%s",
                          rec->worker.host);
                j->cpus[rec->worker.rank] = rec->worker.cpus;
            }
            break;
        case GR_JREC_TASK_START:
            for (uint32_t i = 0; j->sched && i < rec->start.n; i++)
                if (gr_sched_restore_start (j->sched, &rec->start.tasks[i],
                                            (int)rec->start.worker) < 0)
                    return -1;
            break;
        case GR_JREC_TASK_END:
            for (uint32_t i = 0; i < rec->end.n; i++) {
                const gr_jend_t *e = &rec->end.tasks[i];
                if (j->sched && gr_sched_restore_end (j->sched, e, (int)rec->end.worker) < 0)
                    return -1;
                if (!j->pass)
                    continue;
                uint32_t cpus = j->spec && e->def < j->spec->ntasks ? j->spec->tasks[e->def].cpus
                                                                    : 1;
                double wall = e->wall > 0 && e->wall < WALL_MAX ? e->wall : 0;
                sample_t t = {.time = rec->time, .host = jhost (j, rec->end.worker),
                              .worker = (int)rec->end.worker,
                              .done = e->outcome == GR_JOUT_DONE,
                              .failed = e->outcome == GR_JOUT_RETRY
                                        || e->outcome == GR_JOUT_FAILED
                                        || e->outcome == GR_JOUT_POISON,
                              .busy = wall * (cpus ? cpus : 1), .span = wall};
                if (j->pass == 1 && e->outcome == GR_JOUT_REQUEUED)
                    r->ev_requeued++;
                if (j->pass == 1 && j->spec && e->def < j->spec->ntasks
                    && (e->outcome == GR_JOUT_FAILED || e->outcome == GR_JOUT_POISON))
                    journal_reason (r, &j->spec->tasks[e->def], e);
                sample (r, j->pass, &t);
            }
            return 0;
        case GR_JREC_DRAIN:
            if (j->pass == 1)
                r->drains++;
            break;
        case GR_JREC_RUN_END:
            if (j->pass == 1) {
                r->run_ended = true;
                r->end_code = rec->run_end.exit_code;
            }
            break;
        case GR_JREC_WORKER_LOST:
            if (j->pass == 1)
                r->lost++;
            break;
        case GR_JREC_QUARANTINE:
            if (j->pass == 1 && rec->quarantine.on)
                r->quarantines++;
            break;
        default:
            break;
    }
    if (j->pass)
        sample (r, j->pass, &s);
    return 0;
}

/* The stored spec; NULL (with the reason in errp) if it does not load. */
static gr_spec_t *load_spec (const char *run_dir, gr_error_t *errp)
{
    gr_spec_t *spec = NULL;

    return gr_rundir_load_spec (run_dir, &spec, errp) < 0 ? NULL : spec;
}

/* The task table from the journal (no run.h5 yet). */
static int table_from_journal (gr_report_t *r, jctx_t *j, gr_error_t *errp)
{
    gr_journal_info_t info;
    gr_expand_t *x = NULL;
    int rc = -1;

    if (!(j->sched = gr_sched_create (j->spec, 1)) || !(x = gr_expand_create ())) {
        gr_errprintf (errp, "out of memory");
        goto out;
    }
    if (gr_rundir_replay (r->run_dir, j->spec, journal_cb, j, &info, errp) < 0)
        goto out;
    const gr_task_row_t *rows;
    size_t n = gr_sched_rows (j->sched, &rows);
    for (int pass = 1; pass <= 2; pass++) {
        for (size_t i = 0; i < n; i++) {
            const gr_task_row_t *row = &rows[i];
            const gr_taskdef_t *d = row->def < j->spec->ntasks ? &j->spec->tasks[row->def] : NULL;
            const char *name = "?", *params = "";
            char reason[160] = "";
            if (d && row->index < d->count && gr_expand_select (x, d, row->index) == 0) {
                name = gr_expand_name (x);
                params = gr_expand_params_string (x);
            }
            if (d && (row->state == GR_TASK_FAILED || row->state == GR_TASK_POISON))
                gr_sched_describe (d, gr_task_row_exit (row), row->signal, row->flags, reason,
                                   sizeof (reason));
            gr_snap_task_t t = {.key = row->key, .name = name, .params = params,
                                .state = (gr_task_state_t)row->state,
                                .attempts = row->attempts,
                                .exit_code = gr_task_row_exit (row), .signal = row->signal,
                                .wall = row->wall, .maxrss_kb = row->maxrss_kb,
                                .host = row->attempts ? jhost (j, row->worker) : "",
                                .worker = row->attempts ? row->worker : -1};
            if (pass == 1 && collect_task (r, &t, *reason ? reason : NULL) < 0) {
                gr_errprintf (errp, "out of memory");
                goto out;
            }
            if (pass == 2)
                bin_task (r, &t);
        }
        if (pass == 1)
            choose_bins (r);
    }
    r->counts.total = j->spec->total;
    r->counts.done = r->by_state[GR_TASK_DONE];
    r->counts.failed = r->by_state[GR_TASK_FAILED] + r->by_state[GR_TASK_POISON];
    r->counts.poison = r->by_state[GR_TASK_POISON];
    r->counts.running = r->by_state[GR_TASK_RUNNING] + r->by_state[GR_TASK_PENDING];
    r->counts.waiting = r->by_state[GR_TASK_WAITING];
    r->counts.duplicates = gr_sched_stats (j->sched)->duplicates;
    r->have_counts = true;
    for (size_t i = 0; i < j->nhosts; i++) {
        gr_snap_worker_t w = {.rank = (int32_t)i, .host = j->hosts[i], .cpus = j->cpus[i]};
        if (j->hosts[i][0] && add_worker (r, &w) < 0) {
            gr_errprintf (errp, "out of memory");
            goto out;
        }
    }
    r->table_src = "journal";
    snprintf (r->table_note, sizeof (r->table_note),
              "no run.h5 yet: the task table is the journal's%s%s",
              info.damage ? "; " : "", info.damage ? info.damage_text : "");
    rc = 0;
out:
    gr_expand_destroy (x);
    gr_sched_destroy (j->sched);
    j->sched = NULL;
    return rc;
}

/* ---- metrics.prom -------------------------------------------------------- */

/* The value of label key in a Prometheus label set, unescaped into buf. */
static bool prom_label (const char *labels, const char *key, char *buf, size_t len)
{
    size_t kl = strlen (key);
    const char *p = labels;
    while (*p) {
        while (*p == ',' || *p == ' ')
            p++;
        const char *eq = strchr (p, '=');
        if (!eq || eq[1] != '"')
            return false;
        bool match = (size_t)(eq - p) == kl && strncmp (p, key, kl) == 0;
        size_t o = 0;
        for (p = eq + 2; *p && *p != '"'; p++) {
            char c = *p;
            if (c == '\\' && p[1]) {
                c = *++p;
                if (c == 'n')
                    c = '\n';
            }
            if (match && o + 1 < len)
                buf[o++] = c;
        }
        if (*p != '"')
            return false;
        p++;
        if (match) {
            buf[o] = '\0';
            return true;
        }
    }
    return false;
}

static void prom_domain (gr_report_node_t *n, const char *labels)
{
    char v[256];
    if (!n->rack && prom_label (labels, "rack", v, sizeof (v)))
        n->rack = strdup (v);
    if (!n->zone && prom_label (labels, "zone", v, sizeof (v)))
        n->zone = strdup (v);
}

static void read_prom (gr_report_t *r)
{
    char path[PATH_MAX], *line = NULL, node[256];
    size_t cap = 0;
    ssize_t len;
    FILE *f = fopen (gr_rundir_file (r->run_dir, "metrics.prom", path, sizeof (path)), "re");

    if (!f)
        return;
    r->have_prom = true;
    while ((len = getline (&line, &cap, f)) > 0) {
        if (line[len - 1] == '\n')
            line[--len] = '\0';
        if (!*line || *line == '#')
            continue;
        bool fail = strncmp (line, "gridrun_failures_total{", 23) == 0;
        bool util = strncmp (line, "gridrun_node_utilization{", 25) == 0;
        if (!fail && !util)
            continue;
        char *lb = strchr (line, '{'), *end = strrchr (line, '}');
        if (!end || end < lb) {
            r->prom_bad++;
            continue;
        }
        *end = '\0';
        char *vend;
        double v = strtod (end + 1, &vend);
        if (vend == end + 1 || !prom_label (lb + 1, "node", node, sizeof (node))) {
            r->prom_bad++;
            continue;
        }
        gr_report_node_t *n = node_get (r, node);
        if (!n)
            continue;
        prom_domain (n, lb + 1);
        if (fail && isfinite (v) && v > 0)
            n->prom_failures += v;
    }
    free (line);
    fclose (f);
}

/* ---- The time series ------------------------------------------------------ */

static size_t bucket_of (const gr_report_t *r, double t)
{
    double k = floor ((t - r->t0) / r->width);
    if (!(k > 0))
        return 0;
    return k >= (double)r->nb ? r->nb - 1 : (size_t)k;
}

/* Spread busy cpu-seconds evenly over [a, b] across the buckets. */
static void spread (const gr_report_t *r, double *row, double a, double b, double busy)
{
    if (a < r->t0) {
        if (b <= r->t0) {
            row[0] += busy;
            return;
        }
        busy *= (b - r->t0) / (b - a);
        a = r->t0;
    }
    if (b - a <= 0) {
        row[bucket_of (r, b)] += busy;
        return;
    }
    size_t k0 = bucket_of (r, a), k1 = bucket_of (r, b);
    for (size_t k = k0; k <= k1; k++) {
        double lo = r->t0 + (double)k * r->width, hi = lo + r->width;
        if (k == k0)
            lo = a;
        if (k == k1)
            hi = b;
        if (hi > lo)
            row[k] += busy * (hi - lo) / (b - a);
    }
}

static void sample (gr_report_t *r, int pass, const sample_t *s)
{
    bool task = s->done > 0 || s->failed > 0 || s->busy > 0;
    gr_report_node_t *n = NULL;

    if (pass == 1) {
        if (!r->have_span || s->time < r->t0)
            r->t0 = s->time;
        if (!r->have_span || s->time > r->t1)
            r->t1 = s->time;
        r->have_span = true;
        if (!task)
            return;
        r->ev_done += (uint64_t)s->done;
        r->ev_failures += (uint64_t)s->failed;
        if (!s->host || !*s->host) {
            r->failures_unplaced += (uint64_t)s->failed;
            return;
        }
        if (!(n = node_get (r, s->host))) {
            r->nodes_dropped++;
            return;
        }
        n->failures += (uint64_t)s->failed;
        n->busy_total += s->busy;
        if (s->worker >= 0) {
            char w[24];
            snprintf (w, sizeof (w), "%d", s->worker);
            if (!n->seen)
                n->seen = json_object ();
            if (n->seen)
                json_object_set_new (n->seen, w, json_true ());
        }
        return;
    }
    if (!task)
        return;
    size_t b = bucket_of (r, s->time);
    r->done[b] += s->done;
    r->fail[b] += s->failed;
    if (s->busy > 0 && s->host && *s->host && (n = node_get (r, s->host)) && n->busy)
        spread (r, n->busy, s->time - s->span, s->time, s->busy);
}

/* Bucket widths from 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 times a power of
 * ten: the smallest that covers the span in at most the most buckets
 * allowed, so a chart has 80 to 100 of them. */
static int choose_buckets (gr_report_t *r)
{
    static const double m[] = {1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10};
    double span = r->t1 - r->t0;
    if (span < 0.01)
        span = 0.01;
    double raw = span / GR_REPORT_BUCKETS_MAX, mag = pow (10, floor (log10 (raw)));
    size_t i = 0;
    while (i + 1 < sizeof (m) / sizeof (m[0]) && m[i] * mag < raw * (1 - 1e-9))
        i++;
    r->width = m[i] * mag;
    double nb = ceil (span / r->width - 1e-9);
    r->nb = nb < 1 ? 1 : nb > GR_REPORT_BUCKETS_MAX ? GR_REPORT_BUCKETS_MAX : (size_t)nb;
    for (size_t k = 0; k < r->nnodes; k++) {
        if (!(r->nodes[k].busy = calloc (r->nb, sizeof (double))))
            return -1;
    }
    return 0;
}

static bool jnum (json_t *o, const char *k, double *v)
{
    json_t *x = json_object_get (o, k);
    if (!json_is_number (x))
        return false;
    *v = json_number_value (x);
    return isfinite (*v);
}

/* A count or duration from an event, kept to what a run can hold so
 * that a damaged line cannot overflow the sums. */
static double nonneg (double v)
{
    return v > 0 && v < 1e15 ? v : 0;
}

static uint32_t worker_cpus (const gr_report_t *r, int rank)
{
    return rank >= 0 && (size_t)rank < r->nrank_cpus && r->rank_cpus[rank]
               ? r->rank_cpus[rank]
               : 1;
}

/* The reason of a task that failed for good, from its event, for the
 * failed tasks the table keeps. */
static void note_reason (gr_report_t *r, json_t *o)
{
    const char *key = json_string_value (json_object_get (o, "key"));
    const char *why = json_string_value (json_object_get (o, "reason"));
    const char *outcome = json_string_value (json_object_get (o, "outcome"));
    if (!key || !why || (outcome && strcmp (outcome, "failed") != 0
                         && strcmp (outcome, "poison") != 0))
        return;
    char *end;
    uint64_t k = strtoull (key, &end, 16);
    if (*end)
        return;
    for (size_t i = 0; i < r->nfailed; i++) {
        if (r->failed[i].key == k) {
            free (r->failed[i].reason);
            r->failed[i].reason = cut (why, CELL_MAX);
        }
    }
}

static void event (gr_report_t *r, int pass, json_t *o)
{
    double t, v;
    const char *ev = json_string_value (json_object_get (o, "event"));
    json_t *wk = json_object_get (o, "worker");
    sample_t s = {.worker = -1};

    /* A time must be epoch seconds: after 1970, before the year 5000. */
    if (!json_is_object (o) || !ev || !jnum (o, "time", &t) || t <= 0 || t > 1e11) {
        if (pass == 1)
            r->ev_bad++;
        return;
    }
    s.time = t;
    s.host = json_string_value (json_object_get (o, "host"));
    if (json_is_integer (wk) && json_integer_value (wk) >= 0
        && json_integer_value (wk) < INT_MAX)
        s.worker = (int)json_integer_value (wk);
    if (strcmp (ev, "tasks_done") == 0) {
        double n = 0, sum = 0, max = 0, busy;
        jnum (o, "n", &n);
        jnum (o, "wall_sum", &sum);
        jnum (o, "wall_max", &max);
        if (max >= WALL_MAX)
            max = 0;
        /* Files from before "busy" count one cpu a task. */
        busy = jnum (o, "busy", &v) ? v : sum;
        s.done = nonneg (n);
        s.busy = nonneg (busy);
        /* The batch's tasks ran on one worker: at most its cpus at once. */
        s.span = nonneg (max);
        if (s.busy / worker_cpus (r, s.worker) > s.span)
            s.span = s.busy / worker_cpus (r, s.worker);
    }
    else if (strcmp (ev, "task_end") == 0 || strcmp (ev, "task_retry") == 0
             || strcmp (ev, "task_failed") == 0 || strcmp (ev, "task_timeout") == 0
             || strcmp (ev, "task_poison") == 0 || strcmp (ev, "task_requeued") == 0) {
        double wall = jnum (o, "wall", &v) && v < WALL_MAX ? nonneg (v) : 0, cpus = 1;
        if (jnum (o, "cpus", &v) && v >= 1 && v <= 1 << 20)
            cpus = v;
        s.busy = wall * cpus;
        s.span = wall;
        if (strcmp (ev, "task_end") == 0)
            s.done = 1;
        else if (strcmp (ev, "task_requeued") == 0)
            r->ev_requeued += pass == 1;
        else {
            s.failed = 1;
            if (pass == 1)
                note_reason (r, o);
        }
    }
    else if (pass == 1) {
        if (strcmp (ev, "run_start") == 0) {
            r->run_starts++;
            const char *run = json_string_value (json_object_get (o, "run"));
            if (run && !r->job_name)
                r->job_name = strdup (run);
        }
        else if (strcmp (ev, "run_end") == 0) {
            r->run_ended = true;
            r->end_code = jnum (o, "exit_code", &v) && fabs (v) < 1e6 ? (int)v : -1;
        }
        else if (strcmp (ev, "drain") == 0)
            r->drains++;
        else if (strcmp (ev, "worker_lost") == 0)
            r->lost++;
        else if (strcmp (ev, "quarantine") == 0)
            r->quarantines++;
    }
    sample (r, pass, &s);
}

/* One pass over events.jsonl.  A last line without its newline is still
 * being written: it is left for the next report.  Returns 0, 1 if there
 * is no file, -1 (errp set) if it cannot be read. */
static int events_pass (gr_report_t *r, int pass, gr_error_t *errp)
{
    char path[PATH_MAX], *line = NULL;
    size_t cap = 0;
    ssize_t n;
    off_t off = 0;
    FILE *f = fopen (gr_rundir_file (r->run_dir, "events.jsonl", path, sizeof (path)), "re");

    if (!f) {
        if (errno == ENOENT)
            return 1;
        return gr_errprintf (errp, "cannot read %s: %s", path, strerror (errno));
    }
    while ((n = getline (&line, &cap, f)) > 0) {
        if (line[n - 1] != '\n' || (pass == 2 && off + n > r->ev_end))
            break;
        off += n;
        if (pass == 1)
            r->ev_lines++;
        if (n == 1)
            continue;
        json_t *o = NULL;
        if ((size_t)n <= EVENT_LINE_MAX)
            o = json_loadb (line, (size_t)n - 1, 0, NULL);
        if (!o) {
            r->ev_bad += pass == 1;
            continue;
        }
        event (r, pass, o);
        json_decref (o);
    }
    int err = ferror (f);
    free (line);
    fclose (f);
    if (err)
        return gr_errprintf (errp, "cannot read %s: %s", path, strerror (EIO));
    if (pass == 1)
        r->ev_end = off;
    return 0;
}

/* The time series: events.jsonl, else the journal, else none. */
static int read_series (gr_report_t *r, jctx_t *j, gr_error_t *errp)
{
    char path[PATH_MAX];
    int rc = events_pass (r, 1, errp);
    gr_journal_info_t info;

    if (rc < 0)
        return -1;
    if (rc == 0) {
        r->have_events = true;
        r->series_src = "events.jsonl";
        if (!r->have_span)
            return 0;
        if (choose_buckets (r) < 0)
            return gr_errprintf (errp, "out of memory");
        return events_pass (r, 2, errp) < 0 ? -1 : 0;
    }
    gr_rundir_file (r->run_dir, "journal", path, sizeof (path));
    if (access (path, F_OK) != 0) {
        snprintf (r->series_note, sizeof (r->series_note),
                  "the run has no events.jsonl (started with --events off) and no journal "
                  "(--no-journal)");
        return 0;
    }
    j->pass = 1;
    if (gr_rundir_replay (r->run_dir, j->spec, journal_cb, j, &info, errp) < 0)
        return -1;
    r->series_src = "journal";
    snprintf (r->series_note, sizeof (r->series_note),
              "the run has no events.jsonl (started with --events off): the time series "
              "come from the journal");
    if (!r->have_span)
        return 0;
    if (choose_buckets (r) < 0)
        return gr_errprintf (errp, "out of memory");
    j->pass = 2;
    return gr_rundir_replay (r->run_dir, j->spec, journal_cb, j, &info, errp);
}

/* ---- The command ---------------------------------------------------------- */

static const struct option longopts[] = {
    {"output", required_argument, NULL, 'o'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static const char *usage_text =
    "usage: gridrun report [-o FILE] RUN_DIR\n"
    "  Write an HTML report of the run: state and counts, throughput over\n"
    "  time, utilization by node, task durations, failures by failure\n"
    "  domain, the slowest and the failed tasks.  One file, no scripts,\n"
    "  nothing fetched: open it in any browser.\n"
    "  -o, --output FILE  where to write it (default RUN_DIR/report.html;\n"
    "                     - for stdout)\n";

static bool exists (const char *run_dir, const char *name)
{
    char path[PATH_MAX];
    return access (gr_rundir_file (run_dir, name, path, sizeof (path)), F_OK) == 0;
}

int gr_cmd_report (int argc, char **argv)
{
    int c, rc = EXIT_BAD_INPUT;
    const char *out = NULL;
    char path[PATH_MAX], outbuf[PATH_MAX];
    gr_report_t r;
    gr_error_t err;
    jctx_t j = {.r = &r};
    struct stat st;
    char *html = NULL;
    size_t hlen = 0;
    FILE *f = NULL;

    memset (&r, 0, sizeof (r));
    optind = 1;
    while ((c = getopt_long (argc, argv, "o:h", longopts, NULL)) != -1) {
        switch (c) {
            case 'o':
                out = optarg;
                break;
            case 'h':
                fputs (usage_text, stdout);
                return 0;
            default:
                fputs (usage_text, stderr);
                return GR_EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        fprintf (stderr, "gridrun: 'report' takes one run directory\n%s", usage_text);
        return GR_EXIT_USAGE;
    }
    r.run_dir = argv[optind];
    r.now = gr_wallclock ();
    gr_hist_init (&r.wall);
    if (stat (r.run_dir, &st) < 0) {
        fprintf (stderr, "gridrun: cannot read run directory '%s': %s\n", r.run_dir,
                 strerror (errno));
        return EXIT_BAD_INPUT;
    }
    if (!S_ISDIR (st.st_mode)) {
        fprintf (stderr, "gridrun: '%s' is not a directory; give a gridrun run directory\n",
                 r.run_dir);
        return EXIT_BAD_INPUT;
    }
    if (!exists (r.run_dir, "spec.pack") && !exists (r.run_dir, "journal")
        && !exists (r.run_dir, "run.h5") && !exists (r.run_dir, "events.jsonl")) {
        fprintf (stderr, "gridrun: '%s' is not a gridrun run directory: it has no spec.pack, "
                 "journal, run.h5 or events.jsonl\n", r.run_dir);
        return EXIT_BAD_INPUT;
    }
    if (!(r.node_ix = json_object ())) {
        rc = GR_EXIT_INTERNAL;
        goto out;
    }
    read_state (&r);

    /* The stored spec: names the job without run.h5, tells the journal
     * fallbacks each task's cpus; optional. */
    gr_error_t spec_err;
    j.spec = load_spec (r.run_dir, &spec_err);

    gr_rundir_file (r.run_dir, "run.h5", path, sizeof (path));
    if (access (path, F_OK) == 0) {
        if (read_h5 (&r, path, &err) < 0) {
            /* The snapshot's errors name its path. */
            fprintf (stderr, "gridrun: %s\n", err.text);
            goto out;
        }
    }
    else if (!exists (r.run_dir, "journal"))
        snprintf (r.table_note, sizeof (r.table_note),
                  "the run has no run.h5 (no snapshot yet) and no journal");
    else if (!j.spec)
        snprintf (r.table_note, sizeof (r.table_note),
                  "the run has no run.h5 yet, and its journal cannot be read without the "
                  "stored spec (%s)", spec_err.text);
    else if (table_from_journal (&r, &j, &err) < 0) {
        fprintf (stderr, "gridrun: cannot read the journal of '%s': %s\n", r.run_dir,
                 err.text);
        goto out;
    }
    if (!r.job_name && j.spec && !(r.job_name = strdup (j.spec->name))) {
        rc = GR_EXIT_INTERNAL;
        goto out;
    }
    read_prom (&r);
    if (read_series (&r, &j, &err) < 0) {
        fprintf (stderr, "gridrun: %s\n", err.text);
        goto out;
    }

    if (!out)
        out = gr_rundir_file (r.run_dir, "report.html", outbuf, sizeof (outbuf));
    if (!(f = open_memstream (&html, &hlen)) || gr_report_html (&r, f) < 0
        || fclose (f) != 0) {
        f = NULL;
        fprintf (stderr, "gridrun: cannot build the report: %s\n", strerror (errno));
        rc = GR_EXIT_INTERNAL;
        goto out;
    }
    f = NULL;
    if (strcmp (out, "-") == 0) {
        if (fwrite (html, 1, hlen, stdout) != hlen || fflush (stdout) != 0) {
            fprintf (stderr, "gridrun: cannot write the report to stdout: %s\n",
                     strerror (errno));
            goto out;
        }
    }
    else if (gr_write_file_atomic (out, html, hlen, 0644, &err) < 0) {
        fprintf (stderr, "gridrun: cannot write the report to '%s': %s\n", out, err.text);
        goto out;
    }
    else
        printf ("gridrun: report written to %s\n", out);
    rc = 0;
out:
    if (f)
        fclose (f);
    free (html);
    free (j.hosts);
    free (j.cpus);
    gr_spec_destroy (j.spec);
    report_free (&r);
    return rc;
}
