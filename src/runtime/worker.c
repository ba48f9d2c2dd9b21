/* The worker: holds a small queue of assigned tasks, runs them as child
 * processes in its cpu slots, and reports results in batches piggybacked
 * on its requests for more work. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "src/common/chaos.h"
#include "src/common/fs.h"
#include "src/common/gtime.h"
#include "src/common/log.h"
#include "src/common/units.h"
#include "src/exec/exec.h"
#include "src/proto/proto.h"
#include "src/spec/spec.h"
#include "src/topo/topo.h"
#include "group.h"
#include "outlog.h"
#include "runtime.h"

#define GR_EXTRA_ENV 32

typedef struct run {
    bool used;
    bool timed_out;
    bool killed;
    bool drain_termed;      /* SIGTERM sent because the run is draining */
    gr_assign_rec_t a;
    pid_t pid;              /* 0 for a builtin */
    double start;
    double queued;          /* seconds it waited in the queue before */
    double deadline;        /* 0: no timeout */
    double kill_at;         /* SIGKILL time once SIGTERM was sent */
    double noop_end;
    int out_spool, err_spool;
    bool out_captured, err_captured;
    uint64_t max_output;    /* bytes of each captured stream kept */
    uint64_t out_seen, err_seen; /* the spools' largest sizes seen */
    bool lost;              /* its output could not be kept */
    uint32_t cpus, gpus;
    uint32_t *cores;        /* bound: the cores and GPUs it holds */
    uint32_t *gpu_ids;
    uint32_t nbound_gpus;   /* of gpus, those bound to node GPUs */
    bool bound;
    /* A process of a group task (kind: group). */
    int64_t member;         /* its RANK; -1 for a plain task */
    uint32_t local_rank;
    gr_group_cmd_t gc;      /* the START that made it */
    bool preempted;         /* got the preemption signal: runs again */
    double term_at;         /* SIGTERM then (0: not planned) */
    double stop_kill_at;    /* STOP: SIGKILL then (0: not planned) */
    double chaos_kill_at;   /* chaos mode: SIGKILL then (0: not planned) */
} run_t;

struct gr_worker {
    const gr_spec_t *spec;
    const char *run_dir;
    int rank;
    uint32_t cpus, gpus;
    uint32_t free_cpus, free_gpus;
    const gr_run_opts_t *opts;
    gr_chan_t *ch;
    gr_exec_t *ex;
    gr_expand_t *x;
    gr_outlog_t *ol;
    char out_dir[PATH_MAX];

    run_t *runs;            /* cpus entries */
    uint32_t nrunning;
    uint32_t nprocs;        /* of nrunning, those that are processes */

    gr_assign_rec_t *q;     /* ring of assigned tasks not yet started */
    double *qtime;          /* when each arrived (same ring) */
    size_t qhead, qlen, qcap;

    gr_result_rec_t res[GR_PROTO_MAX_BATCH];
    uint32_t nres;
    double oldest_res;

    uint64_t received;
    double last_from_master;
    double avg_wall;        /* EWMA of task wall time, sizes the prefetch */
    bool have_avg;
    double last_send;
    bool started;
    bool shutdown;
    bool bye;
    bool draining;
    int drain_signals;      /* drain signals this process had seen */
    double drain_signal_at; /* when it saw the last new one */
    double drain_term_at;   /* when running tasks get SIGTERM */
    double drain_kill_at;   /* and SIGKILL */
    uint32_t chaos_kills;   /* chaos mode: tasks killed, results held */
    uint32_t chaos_delays;
    uint64_t chaos_outfails; /* chaos mode: output writes failed so far */

    double next_trim;       /* when running tasks' spools are next cut back */
    int outlost;            /* errno of the last failed write of output or
                               its index, 0 while none failed */
    uint64_t idx_lost;      /* index flushes that failed */

    char extra[GR_EXTRA_ENV][PATH_MAX + 32];
    char ckpt_dir[PATH_MAX]; /* GRIDRUN_CKPT_DIR of the process starting */
    char **envp;
    size_t envcap;

    /* Binding: the node, and which of its cores and GPUs are taken (the
     * ones this worker does not own count as taken forever). */
    gr_topo_node_t *topo;
    uint8_t *core_busy;
    uint8_t *gpu_busy;
    size_t node_cores, node_gpus;
    const gr_topo_gpu_t *node_gpu_list;
};

static int spool_open (gr_worker_t *w, uint32_t slot, const char *stream)
{
    char path[PATH_MAX];
    snprintf (path, sizeof (path), "%s/.spool/w%04d-%u.%s", w->out_dir, w->rank,
              slot, stream);
    return open (path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
}

/* Take over res: the node and what of it this worker may hand out. */
static int setup_binding (gr_worker_t *w, gr_worker_res_t *res)
{
    w->topo = res->topo;
    res->topo = NULL;
    w->node_cores = gr_topo_node_ncores (w->topo);
    w->node_gpus = gr_topo_node_gpus (w->topo, &w->node_gpu_list);
    if (!(w->core_busy = malloc (w->node_cores ? w->node_cores : 1))
        || !(w->gpu_busy = malloc (w->node_gpus ? w->node_gpus : 1)))
        return -1;
    memset (w->core_busy, 1, w->node_cores);
    memset (w->gpu_busy, 1, w->node_gpus);
    for (size_t i = 0; i < res->ncores; i++)
        w->core_busy[res->cores[i]] = 0;
    for (size_t i = 0; i < res->ngpus; i++)
        w->gpu_busy[res->gpus[i]] = 0;
    for (uint32_t i = 0; i < w->cpus; i++) {
        if (!(w->runs[i].cores = calloc (w->node_cores ? w->node_cores : 1, sizeof (uint32_t)))
            || !(w->runs[i].gpu_ids = calloc (w->node_gpus ? w->node_gpus : 1, sizeof (uint32_t))))
            return -1;
    }
    return 0;
}

gr_worker_t *gr__worker_create (const gr_spec_t *spec, const char *run_dir,
                                int rank, uint32_t cpus, uint32_t gpus,
                                const gr_run_opts_t *opts, gr_chan_t *ch,
                                gr_worker_res_t *res)
{
    gr_error_t err;
    char path[PATH_MAX];
    gr_worker_t *w = calloc (1, sizeof (*w));

    if (!w)
        return NULL;
    w->spec = spec;
    w->run_dir = run_dir;
    w->rank = rank;
    w->cpus = w->free_cpus = cpus ? cpus : 1;
    w->gpus = w->free_gpus = gpus;
    w->opts = opts;
    w->ch = ch;
    w->last_from_master = gr_now ();
    snprintf (w->out_dir, sizeof (w->out_dir), "%s/out", run_dir);
    snprintf (path, sizeof (path), "%s/.spool", w->out_dir);
    if (gr_mkdir_p (path, 0700, &err) < 0) {
        GR_ERROR ("%s", err.text);
        goto error;
    }
    if (!(w->runs = calloc (w->cpus, sizeof (run_t))))
        goto error;
    for (uint32_t i = 0; i < w->cpus; i++)
        w->runs[i].out_spool = w->runs[i].err_spool = -1;
    if (!(w->ex = gr_exec_create (&err))) {
        GR_ERROR ("%s", err.text);
        goto error;
    }
    if (!(w->x = gr_expand_create ()))
        goto error;
    if (!(w->ol = gr_outlog_open (w->out_dir, rank, &err))) {
        GR_ERROR ("%s", err.text);
        goto error;
    }
    if (res && res->topo && setup_binding (w, res) < 0)
        goto error;
    return w;
error:
    gr__worker_destroy (w);
    return NULL;
}

void gr__worker_destroy (gr_worker_t *w)
{
    if (!w)
        return;
    int saved = errno;
    if (w->runs) {
        for (uint32_t i = 0; i < w->cpus; i++) {
            if (w->runs[i].used && w->runs[i].pid > 0)
                gr_exec_kill_group (w->runs[i].pid, SIGKILL);
            if (w->runs[i].out_spool >= 0)
                close (w->runs[i].out_spool);
            if (w->runs[i].err_spool >= 0)
                close (w->runs[i].err_spool);
            free (w->runs[i].cores);
            free (w->runs[i].gpu_ids);
        }
    }
    free (w->runs);
    free (w->core_busy);
    free (w->gpu_busy);
    gr_topo_node_destroy (w->topo);
    free (w->q);
    free (w->qtime);
    free (w->envp);
    gr_outlog_close (w->ol);
    gr_expand_destroy (w->x);
    gr_exec_destroy (w->ex);
    free (w);
    errno = saved;
}

static int queue_push (gr_worker_t *w, const gr_assign_rec_t *a, double now)
{
    if (w->qlen == w->qcap) {
        size_t ncap = w->qcap ? w->qcap * 2 : 256;
        gr_assign_rec_t *nq = malloc (ncap * sizeof (*nq));
        double *nt = malloc (ncap * sizeof (*nt));
        if (!nq || !nt) {
            free (nq);
            free (nt);
            return -1;
        }
        for (size_t i = 0; i < w->qlen; i++) {
            nq[i] = w->q[(w->qhead + i) % w->qcap];
            nt[i] = w->qtime[(w->qhead + i) % w->qcap];
        }
        free (w->q);
        free (w->qtime);
        w->q = nq;
        w->qtime = nt;
        w->qcap = ncap;
        w->qhead = 0;
    }
    w->q[(w->qhead + w->qlen) % w->qcap] = *a;
    w->qtime[(w->qhead + w->qlen) % w->qcap] = now;
    w->qlen++;
    return 0;
}

/* Chaos mode (src/common/chaos.h; doc/hardening.md). */

/* Hold a message of results back for the spec's delay. */
static void chaos_delay (gr_worker_t *w)
{
    char b[32];
    double d = gr_chaos_current ()->delay;
    GR_WARN ("chaos: holding %u result%s back for %s", w->nres, w->nres == 1 ? "" : "s",
             gr_fmt_duration (d, b, sizeof (b)));
    gr_sleep (d);
    w->chaos_delays++;
}

/* Die as a crashed rank does, with the tasks (as when its node fails):
 * the master hears nothing more, declares this worker lost after
 * --lost-after and runs its tasks elsewhere. */
static void chaos_kill_worker (gr_worker_t *w)
{
    GR_WARN ("chaos: killing this worker (rank %d) and its %u running task%s", w->rank,
             w->nrunning, w->nrunning == 1 ? "" : "s");
    for (uint32_t i = 0; i < w->cpus; i++)
        if (w->runs[i].used && w->runs[i].pid > 0)
            gr_exec_kill_group (w->runs[i].pid, SIGKILL);
    fflush (NULL);
    raise (SIGKILL);
}

/* A task that has just started: plan its SIGKILL for a random moment
 * within the time tasks here take (their running average), so that it
 * dies mid-run. */
static void chaos_plan_kill (gr_worker_t *w, run_t *r, double now)
{
    double span = w->have_avg && w->avg_wall > 1e-3 ? w->avg_wall : 0.1;
    r->chaos_kill_at = now + gr_chaos_uniform (GR_CHAOS_KILL_TASK) * span;
}

/* Its moment came while it still runs: the master sees a crash (a signal
 * gridrun did not send) and applies the task's retry policy. */
static void chaos_kill_task (gr_worker_t *w, run_t *r, double now)
{
    char b[32];
    const gr_taskdef_t *d = &w->spec->tasks[r->a.def];
    r->chaos_kill_at = 0;
    GR_WARN ("chaos: killed task %s (%016" PRIx64 ") attempt %u after %s",
             gr_expand_select (w->x, d, r->a.index) == 0 ? gr_expand_name (w->x) : "?",
             r->a.key, r->a.attempt, gr_fmt_duration (now - r->start, b, sizeof (b)));
    gr_exec_kill_group (r->pid, SIGKILL);
    w->chaos_kills++;
}

/* An attempt whose output (or its index line) could not be kept is not
 * done: it goes back as requeued (never started, if it did not start),
 * with GR_RES_OUTLOST and the errno, which also tell the master that the
 * run directory cannot be written. */
static void mark_outlost (const gr_worker_t *w, gr_result_rec_t *r)
{
    if (r->flags & (GR_RES_PORT | GR_RES_RETURNED))
        return; /* not an attempt that ran */
    r->flags = ((r->flags & GR_RES_SPAWN) ? GR_RES_RETURNED : GR_RES_KILLED) | GR_RES_OUTLOST;
    r->exit_code = w->outlost;
    r->signal = 0;
}

/* A write of task output, or of its index, failed (what: which); the
 * caller marks the attempts concerned with mark_outlost.  Said once. */
static void output_lost (gr_worker_t *w, int err, const char *what)
{
    if (gr_chaos_on ()) {
        uint64_t n = gr_chaos_count (GR_CHAOS_OUTPUT_EIO) + gr_chaos_count (GR_CHAOS_OUTPUT_ENOSPC);
        if (n != w->chaos_outfails)
            GR_WARN ("chaos: keeping task output (%s) failed with %s", what,
                     err == ENOSPC ? "ENOSPC" : "EIO");
        w->chaos_outfails = n;
    }
    if (!w->outlost)
        GR_ERROR ("cannot keep task output in '%s' (%s): %s; the tasks concerned will run "
                  "again when the run is resumed", gr_outlog_path (w->ol), what,
                  strerror (err));
    else
        GR_DEBUG ("cannot keep task output (%s): %s", what, strerror (err));
    w->outlost = err ? err : EIO;
}

static int send_ready (gr_worker_t *w, double now)
{
    uint32_t depth, want;
    double avg = w->have_avg ? w->avg_wall : 0.1;
    double pf;

    if (gr_chaos_on () && w->nres > 0 && gr__chaos_hit (GR_CHAOS_DELAY))
        chaos_delay (w);

    /* Hold enough queued work to cover prefetch_window of running, so a
     * slot never idles waiting for the master, but no more: a long queue on
     * one worker is a straggler at the end of the run. */
    pf = ceil (w->opts->prefetch_window * (double)w->cpus / (avg > 1e-6 ? avg : 1e-6));
    if (pf < 1)
        pf = 1;
    if (pf > w->opts->max_prefetch)
        pf = w->opts->max_prefetch;
    depth = w->cpus + (uint32_t)pf;
    want = depth > w->nrunning + w->qlen ? depth - w->nrunning - (uint32_t)w->qlen : 0;
    if (w->shutdown || w->draining)
        want = 0;

    size_t len = gr_ready_size (w->nres);
    char *buf = malloc (len);
    if (!buf)
        return -1;
    /* Output and its index reach the disk before the master hears that
     * the task ended; when they cannot, the tasks are not done. */
    if (w->nres > 0 && gr_outlog_flush (w->ol) < 0) {
        /* The index lines of every result waiting here are gone. */
        output_lost (w, errno, "its index");
        for (uint32_t i = 0; i < w->nres; i++)
            mark_outlost (w, &w->res[i]);
        w->idx_lost++;
    }
    gr_ready_hdr_t h = {.version = GR_PROTO_VERSION,
                        .flags = 0,
                        .nresults = w->nres,
                        .want = want,
                        .received = w->received,
                        .running = w->nrunning,
                        .queued = (uint32_t)w->qlen,
                        .chaos_kills = w->chaos_kills,
                        .chaos_delays = w->chaos_delays};
    if (w->shutdown && w->qlen == 0 && w->nrunning == 0)
        h.flags |= GR_READY_BYE;
    memcpy (buf, &h, sizeof (h));
    memcpy (buf + sizeof (h), w->res, w->nres * sizeof (gr_result_rec_t));
    if (gr_chan_send (w->ch, 0, GR_TAG_READY, buf, len) < 0) {
        free (buf);
        return -1;
    }
    w->nres = 0;
    w->last_send = now;
    if (h.flags & GR_READY_BYE)
        w->bye = true;
    return 0;
}

static int push_result (gr_worker_t *w, const gr_result_rec_t *r, double now)
{
    /* A task's result (not a port, not a task given back): chaos mode may
     * kill this worker, never rank 0, before the result goes anywhere. */
    if (gr_chaos_on () && w->rank != 0 && !(r->flags & (GR_RES_PORT | GR_RES_RETURNED))
        && gr__chaos_hit (GR_CHAOS_KILL_WORKER))
        chaos_kill_worker (w);
    uint64_t idx_lost = w->idx_lost;

    if (w->nres == GR_PROTO_MAX_BATCH && send_ready (w, now) < 0)
        return -1;
    if (w->nres == 0)
        w->oldest_res = now;
    w->res[w->nres++] = *r;
    /* Its index line went with that flush. */
    if (w->idx_lost != idx_lost)
        mark_outlost (w, &w->res[w->nres - 1]);
    if (r->member || (r->flags & GR_RES_PORT))
        return 0; /* not a task: says nothing of how long tasks take */
    double a = r->wall;
    if (!w->have_avg) {
        w->avg_wall = a;
        w->have_avg = true;
    }
    else
        w->avg_wall = 0.9 * w->avg_wall + 0.1 * a;
    return 0;
}

static void index_record (gr_worker_t *w, const run_t *r, const gr_result_rec_t *res,
                          uint64_t out_off, uint64_t out_len, uint64_t err_off,
                          uint64_t err_len)
{
    const gr_taskdef_t *d = &w->spec->tasks[r->a.def];
    gr_outlog_rec_t rec = {
        .key = r->a.key,
        .attempt = r->a.attempt,
        .name = "?",
        .status = res->signal ? -res->signal : res->exit_code,
        .flags = res->flags,
        .wall = res->wall,
        .maxrss_kb = res->maxrss_kb,
        .out_off = out_off, .out_len = out_len,
        .err_off = err_off, .err_len = err_len,
    };
    char name[256];
    if (gr_expand_select (w->x, d, r->a.index) == 0) {
        rec.name = gr_expand_name (w->x);
        if (r->member >= 0) {
            /* Each process of a group has output of its own. */
            snprintf (name, sizeof (name), "%s/rank%" PRId64, rec.name, r->member);
            rec.name = name;
        }
    }
    if (gr_outlog_record (w->ol, &rec) < 0)
        output_lost (w, errno, "its index");
}

static void release (gr_worker_t *w, run_t *r)
{
    if (r->bound) {
        for (uint32_t i = 0; i < r->cpus; i++)
            w->core_busy[r->cores[i]] = 0;
        for (uint32_t i = 0; i < r->nbound_gpus; i++)
            w->gpu_busy[r->gpu_ids[i]] = 0;
        r->bound = false;
    }
    w->free_cpus += r->cpus;
    w->free_gpus += r->gpus;
    if (r->pid > 0)
        w->nprocs--;
    w->nrunning--;
    r->used = false;
}

/* Whether a task's exit counts as success (drained tasks that still
 * finish cleanly are done, not requeued). */
static bool exit_ok (const gr_worker_t *w, const run_t *r, const gr_result_rec_t *res)
{
    return !res->signal && gr_spec_success (&w->spec->tasks[r->a.def], res->exit_code);
}

/* Whether a task that failed now was most likely stopped by a drain: the
 * worker drains, or it got a drain signal itself a moment ago.  Under
 * Slurm the signal that starts a drain (preemption, the time limit, an
 * srun passing one on) reaches every process of the job step, tasks
 * included, often before the master's DRAIN reaches this worker.  Such a
 * task is requeued, not failed.  The window bounds what a stray signal to
 * a worker alone can do. */
#define DRAIN_SIGNAL_WINDOW 30.0
static bool drain_stopped (gr_worker_t *w, double now)
{
    int sigs = gr__drain_signals ();
    if (sigs != w->drain_signals) {
        w->drain_signals = sigs;
        w->drain_signal_at = now;
    }
    return w->draining
           || (w->drain_signal_at > 0 && now - w->drain_signal_at < DRAIN_SIGNAL_WINDOW);
}

/* Whether a task died of a drain signal: killed by one, or exited with
 * 128 + its number, as a shell does whose child it killed. */
static bool died_of_drain_signal (const gr_worker_t *w, const gr_result_rec_t *res)
{
    int sig = res->signal ? res->signal : res->exit_code > 128 ? res->exit_code - 128 : 0;
    return sig == SIGTERM || sig == SIGINT || sig == SIGUSR2
           || (sig > 0 && sig == w->opts->preempt_signal);
}

/* A task that a drain signal killed before this worker got the signal
 * itself: when Slurm signals every process of a step, the order is its
 * own.  Wait up to 200 ms for the worker's signal (its handler interrupts
 * the sleep) before taking the death for the task's own failure. */
static void await_drain_signal (gr_worker_t *w)
{
    for (int i = 0; i < 20 && gr__drain_signals () == w->drain_signals; i++) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 10 * 1000 * 1000};
        nanosleep (&ts, NULL);
    }
}

/* Less room than this on the file system of a task's spools, when the
 * task has failed, counts as full: its writes most likely failed. */
#define SPOOL_FULL_BYTES (64 * 1024)

static bool spool_full (const run_t *r)
{
    struct statvfs sv;
    int fd = r->out_captured ? r->out_spool : r->err_spool;

    return fstatvfs (fd, &sv) == 0
           && (uint64_t)sv.f_bfree * (uint64_t)sv.f_frsize < SPOOL_FULL_BYTES;
}

static int finish (gr_worker_t *w, run_t *r, int status, const struct rusage *ru,
                   double now)
{
    gr_result_rec_t res = {.id = r->a.id, .wall = now - r->start, .queued = r->queued,
                           .member = r->member >= 0 ? (uint32_t)r->member + 1 : 0};
    uint64_t oo = 0, ol = 0, eo = 0, el = 0;

    if (ru) {
        res.utime = (double)ru->ru_utime.tv_sec + ru->ru_utime.tv_usec * 1e-6;
        res.stime = (double)ru->ru_stime.tv_sec + ru->ru_stime.tv_usec * 1e-6;
        res.maxrss_kb = ru->ru_maxrss;
    }
    if (r->pid > 0) {
        if (WIFEXITED (status))
            res.exit_code = WEXITSTATUS (status);
        else if (WIFSIGNALED (status)) {
            res.exit_code = -1;
            res.signal = WTERMSIG (status);
        }
        /* Whatever the task left running in its group goes with it. */
        gr_exec_kill_group (r->pid, SIGKILL);
        if (!r->timed_out && !r->drain_termed && !exit_ok (w, r, &res)
            && died_of_drain_signal (w, &res) && !drain_stopped (w, now))
            await_drain_signal (w);
        if (r->timed_out)
            res.flags |= GR_RES_TIMEOUT;
        else if ((r->drain_termed || drain_stopped (w, gr_now ())) && !exit_ok (w, r, &res))
            res.flags |= GR_RES_KILLED;
        /* A group told to stop for preemption has not finished, however
         * it exits: it resumes from its checkpoint. */
        if (r->preempted)
            res.flags |= GR_RES_KILLED;
        /* A task that failed writing its captured output to a full run
         * directory failed for want of room, not for itself.  Looked at
         * before the spools are emptied. */
        bool full = (r->out_captured || r->err_captured) && !res.flags && !exit_ok (w, r, &res)
                    && spool_full (r);
        if (r->out_captured
            && gr_outlog_take (w->ol, r->out_spool, r->max_output, r->out_seen, &oo, &ol) < 0) {
            output_lost (w, errno, "stdout");
            r->lost = true;
        }
        if (r->err_captured
            && gr_outlog_take (w->ol, r->err_spool, r->max_output, r->err_seen, &eo, &el) < 0) {
            output_lost (w, errno, "stderr");
            r->lost = true;
        }
        if (!r->lost && full) {
            output_lost (w, ENOSPC, "its spool was full when the task failed");
            r->lost = true;
        }
        if (r->lost)
            mark_outlost (w, &res);
    }
    index_record (w, r, &res, oo, ol, eo, el);
    release (w, r);
    return push_result (w, &res, now);
}

/* Report a task that could not start: its message goes to its stderr. */
static int fail_start (gr_worker_t *w, run_t *r, int errnum, const char *msg,
                       double now)
{
    gr_result_rec_t res = {.id = r->a.id, .exit_code = errnum, .flags = GR_RES_SPAWN,
                           .member = r->member >= 0 ? (uint32_t)r->member + 1 : 0};
    char line[GR_ERROR_TEXT_MAX + 16];
    uint64_t eo = 0, el;
    int n = snprintf (line, sizeof (line), "gridrun: %s\n", msg);
    if (n > (int)sizeof (line) - 1)
        n = (int)sizeof (line) - 1;
    el = (uint64_t)n;
    if (gr_outlog_write (w->ol, line, (size_t)n, &eo) < 0) {
        output_lost (w, errno, "a message");
        r->lost = true;
        el = 0;
    }
    /* Why it did not start could not be kept, or the cause was the run
     * directory itself (a spool file): it is not the task's failure. */
    if (r->lost)
        mark_outlost (w, &res);
    GR_INFO ("task %016" PRIx64 ": %s", r->a.key, msg);
    index_record (w, r, &res, 0, 0, eo, el);
    release (w, r);
    return push_result (w, &res, now);
}

static int open_target (const char *path, const char *cwd, gr_error_t *errp)
{
    char buf[PATH_MAX];
    const char *p = path;
    if (path[0] != '/' && cwd) {
        if (snprintf (buf, sizeof (buf), "%s/%s", cwd, path) >= (int)sizeof (buf)) {
            errno = ENAMETOOLONG;
            return gr_errprintf (errp, "output path too long: %s", path);
        }
        p = buf;
    }
    int fd = open (p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0 && errno == ENOENT) {
        /* Like GNU Parallel's --results: make the directories the path
         * names, so "results/{x}/out" works without a setup step. */
        char dir[PATH_MAX];
        snprintf (dir, sizeof (dir), "%s", p);
        char *slash = strrchr (dir, '/');
        if (slash && slash != dir) {
            *slash = '\0';
            if (gr_mkdir_p (dir, 0777, errp) < 0)
                return -1;
            fd = open (p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
        }
    }
    if (fd < 0)
        return gr_errprintf (errp, "cannot open output file '%s': %s", p,
                             strerror (errno));
    return fd;
}

/* The torchrun environment of a group's process (and gridrun's own). */
static int group_env (gr_worker_t *w, const gr_taskdef_t *d, const run_t *r, int n)
{
    const gr_group_cmd_t *g = &r->gc;
    char sig[32];
    size_t sz = sizeof (w->extra[0]);
#define GENV(...) snprintf (w->extra[n++], sz, __VA_ARGS__)
    GENV ("RANK=%" PRId64, r->member);
    GENV ("LOCAL_RANK=%u", r->local_rank);
    GENV ("WORLD_SIZE=%u", g->world);
    GENV ("LOCAL_WORLD_SIZE=%u", g->local_world);
    GENV ("GROUP_RANK=%u", g->node_rank);
    GENV ("GROUP_WORLD_SIZE=%u", g->nnodes);
    GENV ("ROLE_RANK=%" PRId64, r->member);
    GENV ("ROLE_WORLD_SIZE=%u", g->world);
    GENV ("ROLE_NAME=default");
    GENV ("MASTER_ADDR=%s", g->addr);
    GENV ("MASTER_PORT=%u", g->port);
    GENV ("TORCHELASTIC_RESTART_COUNT=%u", r->a.attempt - 1);
    GENV ("TORCHELASTIC_MAX_RESTARTS=%u", d->retry.max);
    GENV ("TORCHELASTIC_RUN_ID=%016" PRIx64, r->a.key);
    GENV ("OMP_NUM_THREADS=%u", d->cpus);
    GENV ("GRIDRUN_RESTART_COUNT=%u", r->a.attempt - 1);
    GENV ("GRIDRUN_MAX_RESTARTS=%u", d->retry.max);
    GENV ("GRIDRUN_PREEMPT_SIGNAL=%s",
          gr_signal_name (w->opts->preempt_signal, sig, sizeof (sig)));
    GENV ("GRIDRUN_CKPT_DIR=%s", w->ckpt_dir);
    /* Gloo, PyTorch's CPU backend, listens on what the host name resolves
     * to, or on 127.0.0.1 when that is no address of this host's; either
     * can be out of the other hosts' reach.  Point it at the interface
     * that reaches MASTER_ADDR, the network the group meets on (lo for a
     * group on one host), unless the user named one. */
    const char *user_if = getenv ("GLOO_SOCKET_IFNAME");
    char ifname[IF_NAMESIZE];
    if (!user_if || !*user_if) {
        if (gr__ifname_toward (g->addr, ifname, sizeof (ifname)) == 0)
            GENV ("GLOO_SOCKET_IFNAME=%s", ifname);
        else
            GR_DEBUG ("GLOO_SOCKET_IFNAME not set: no interface toward %s: %s", g->addr,
                      strerror (errno));
    }
#undef GENV
    return n;
}

static char **task_env (gr_worker_t *w, const gr_taskdef_t *d, const run_t *r,
                        char **spec_env, const char *cpulist)
{
    size_t n = 0;
    if (spec_env)
        while (spec_env[n])
            n++;
    size_t need = n + GR_EXTRA_ENV + 1;
    if (need > w->envcap) {
        char **p = realloc (w->envp, need * sizeof (char *));
        if (!p)
            return NULL;
        w->envp = p;
        w->envcap = need;
    }
    size_t k = 0;
    /* The spec's entries come first so they override these. */
    for (size_t i = 0; i < n; i++)
        w->envp[k++] = spec_env[i];
    snprintf (w->extra[0], sizeof (w->extra[0]), "GRIDRUN_TASK_KEY=%016" PRIx64,
              r->a.key);
    snprintf (w->extra[1], sizeof (w->extra[1]), "GRIDRUN_TASK_NAME=%s",
              gr_expand_name (w->x));
    snprintf (w->extra[2], sizeof (w->extra[2]), "GRIDRUN_TASK_INDEX=%" PRIu64,
              r->a.index);
    snprintf (w->extra[3], sizeof (w->extra[3]), "GRIDRUN_ATTEMPT=%u", r->a.attempt);
    snprintf (w->extra[4], sizeof (w->extra[4]), "GRIDRUN_RUN_DIR=%s", w->run_dir);
    snprintf (w->extra[5], sizeof (w->extra[5]), "GRIDRUN_WORKER=%d", w->rank);
    snprintf (w->extra[6], sizeof (w->extra[6]), "GRIDRUN_CPUS=%u", d->cpus);
    int nextra = 7;
    if (d->replicas > 1) {
        snprintf (w->extra[nextra++], sizeof (w->extra[0]), "GRIDRUN_REPLICA=%" PRIu32,
                  gr_expand_replica (w->x));
        snprintf (w->extra[nextra++], sizeof (w->extra[0]), "GRIDRUN_REPLICAS=%" PRIu32,
                  d->replicas);
    }
    if (cpulist) {
        snprintf (w->extra[nextra++], sizeof (w->extra[0]), "GRIDRUN_CPU_LIST=%s", cpulist);
        if (r->nbound_gpus > 0) {
            /* CUDA numbers devices as hwloc's cudaN names say. */
            char *p = w->extra[nextra];
            size_t left = sizeof (w->extra[0]);
            int n = snprintf (p, left, "CUDA_VISIBLE_DEVICES=");
            for (uint32_t i = 0; i < r->nbound_gpus && n > 0 && (size_t)n < left; i++) {
                const gr_topo_gpu_t *g = &w->node_gpu_list[r->gpu_ids[i]];
                int ord = strncmp (g->name, "cuda", 4) == 0 ? atoi (g->name + 4) : g->index;
                n += snprintf (p + n, left - (size_t)n, "%s%d", i ? "," : "", ord);
            }
            nextra++;
        }
    }
    if (r->member >= 0)
        nextra = group_env (w, d, r, nextra);
    for (int i = 0; i < nextra; i++) {
        bool dup = false;
        size_t kl = strchr (w->extra[i], '=') - w->extra[i];
        for (size_t j = 0; j < n; j++) {
            if (strncmp (spec_env[j], w->extra[i], kl + 1) == 0)
                dup = true;
        }
        if (!dup)
            w->envp[k++] = w->extra[i];
    }
    w->envp[k] = NULL;
    return w->envp;
}

/* A group's checkpoint directory: checkpoint_dir (relative to the task's
 * cwd), else RUN/ckpt/NAME; made if missing (0700, like the run dir). */
static int group_ckpt_dir (gr_worker_t *w, const gr_task_cmd_t *cmd, gr_error_t *errp)
{
    char path[PATH_MAX];
    int n;
    if (cmd->ckpt_dir)
        n = snprintf (w->ckpt_dir, sizeof (w->ckpt_dir), "%s", cmd->ckpt_dir);
    else
        n = snprintf (w->ckpt_dir, sizeof (w->ckpt_dir), "%s/ckpt/%s", w->run_dir,
                      gr_expand_name (w->x));
    if (n < 0 || (size_t)n >= sizeof (w->ckpt_dir)) {
        errno = ENAMETOOLONG;
        return gr_errprintf (errp, "checkpoint_dir is too long: %s", w->ckpt_dir);
    }
    const char *mk = w->ckpt_dir;
    if (w->ckpt_dir[0] != '/' && cmd->cwd) {
        if (snprintf (path, sizeof (path), "%s/%s", cmd->cwd, w->ckpt_dir)
            >= (int)sizeof (path)) {
            errno = ENAMETOOLONG;
            return gr_errprintf (errp, "checkpoint_dir is too long: %s", w->ckpt_dir);
        }
        mk = path;
    }
    return gr_mkdir_p (mk, 0700, errp);
}

static int start (gr_worker_t *w, run_t *r, uint32_t slot, double now)
{
    const gr_taskdef_t *d = &w->spec->tasks[r->a.def];
    gr_render_ctx_t ctx = {.run_dir = w->run_dir, .attempt = r->a.attempt};
    gr_task_cmd_t cmd;
    gr_error_t err;
    int outfd = -1, errfd = -1, own_out = -1, own_err = -1;
    int rc;

    r->start = now;
    r->timed_out = r->killed = r->drain_termed = false;
    r->out_captured = r->err_captured = false;
    r->out_seen = r->err_seen = 0;
    r->lost = false;
    r->max_output = w->opts->max_output ? w->opts->max_output
                    : d->max_output     ? d->max_output
                                        : GR_DEFAULT_MAX_OUTPUT;
    r->deadline = d->timeout > 0 ? now + d->timeout : 0;
    if (gr_expand_select (w->x, d, r->a.index) < 0
        || gr_expand_render (w->x, &ctx, &cmd, &err) < 0)
        return fail_start (w, r, errno ? errno : EINVAL, err.text, now);
    if (r->member >= 0 && group_ckpt_dir (w, &cmd, &err) < 0)
        return fail_start (w, r, errno ? errno : EINVAL, err.text, now);

    switch (d->out_mode) {
        case GR_OUT_CAPTURE:
            if (r->out_spool < 0 && (r->out_spool = spool_open (w, slot, "out")) < 0) {
                int e = errno;
                output_lost (w, e, "a spool file");
                r->lost = true;
                return fail_start (w, r, e, "cannot create output spool", now);
            }
            outfd = r->out_spool;
            r->out_captured = true;
            break;
        case GR_OUT_FILE:
            if ((own_out = open_target (cmd.out_path, cmd.cwd, &err)) < 0)
                return fail_start (w, r, errno, err.text, now);
            outfd = own_out;
            break;
        default:
            break;
    }
    switch (d->err_mode) {
        case GR_OUT_CAPTURE:
            if (r->err_spool < 0 && (r->err_spool = spool_open (w, slot, "err")) < 0) {
                int e = errno;
                output_lost (w, e, "a spool file");
                r->lost = true;
                rc = fail_start (w, r, e, "cannot create output spool", now);
                goto out;
            }
            errfd = r->err_spool;
            r->err_captured = true;
            break;
        case GR_OUT_FILE:
            if ((own_err = open_target (cmd.err_path, cmd.cwd, &err)) < 0) {
                rc = fail_start (w, r, errno, err.text, now);
                goto out;
            }
            errfd = own_err;
            break;
        case GR_OUT_STDOUT:
            errfd = outfd;
            break;
        default:
            break;
    }
    /* Bind to the free cores nearest the GPUs it gets (see
     * gr_topo_node_pick); the counts were already accounted. */
    char cpulist[256];
    cpu_set_t cpuset;
    bool bind = false;
    if (w->topo && gr_topo_node_pick (w->topo, w->core_busy, w->gpu_busy, d->cpus,
                                      w->node_gpus ? d->gpus : 0, r->cores,
                                      r->gpu_ids) == 0
        && gr_topo_node_cpulist (w->topo, r->cores, d->cpus, cpulist, sizeof (cpulist)) == 0
        && gr_cpulist_parse (cpulist, &cpuset) == 0) {
        for (uint32_t i = 0; i < d->cpus; i++)
            w->core_busy[r->cores[i]] = 1;
        r->nbound_gpus = w->node_gpus ? d->gpus : 0;
        for (uint32_t i = 0; i < r->nbound_gpus; i++)
            w->gpu_busy[r->gpu_ids[i]] = 1;
        r->bound = bind = true;
    }
    else if (w->topo)
        GR_DEBUG ("task %016" PRIx64 ": no cores to bind to; not bound", r->a.key);
    char **envp = task_env (w, d, r, cmd.env, bind ? cpulist : NULL);
    if (!envp) {
        rc = fail_start (w, r, ENOMEM, "out of memory", now);
        goto out;
    }
    gr_spawn_req_t req = {.argv = cmd.argv, .env = envp, .cwd = cmd.cwd,
                          .stdin_fd = -1, .stdout_fd = outfd, .stderr_fd = errfd,
                          .cpus = bind ? &cpuset : NULL};
    if (gr_exec_spawn (w->ex, &req, &r->pid, &err) < 0) {
        r->pid = 0;
        rc = fail_start (w, r, errno, err.text, now);
        goto out;
    }
    w->nprocs++;
    if (gr_chaos_hit (GR_CHAOS_KILL_TASK))
        chaos_plan_kill (w, r, now);
    GR_TRACE ("started %016" PRIx64 " pid %d", r->a.key, (int)r->pid);
    rc = 0;
out:
    if (own_out >= 0)
        close (own_out);
    if (own_err >= 0)
        close (own_err);
    return rc;
}

static int start_ready (gr_worker_t *w, double now)
{
    int did = 0;
    while (w->qlen > 0 && !w->draining) {
        gr_assign_rec_t *a = &w->q[w->qhead];
        const gr_taskdef_t *d = &w->spec->tasks[a->def];
        if (d->builtin == GR_BUILTIN_NOOP && d->noop_duration <= 0) {
            /* A no-op of no duration needs no slot: it is done now. */
            gr_result_rec_t res = {.id = a->id, .queued = now - w->qtime[w->qhead]};
            w->qhead = (w->qhead + 1) % w->qcap;
            w->qlen--;
            if (push_result (w, &res, now) < 0)
                return -1;
            did++;
            continue;
        }
        if (d->cpus > w->free_cpus || d->gpus > w->free_gpus)
            break;
        uint32_t slot = 0;
        while (slot < w->cpus && w->runs[slot].used)
            slot++;
        if (slot == w->cpus)
            break;
        run_t *r = &w->runs[slot];
        r->a = *a;
        r->queued = now - w->qtime[w->qhead];
        w->qhead = (w->qhead + 1) % w->qcap;
        w->qlen--;
        r->used = true;
        r->pid = 0;
        r->member = -1;
        r->preempted = false;
        r->term_at = r->stop_kill_at = r->chaos_kill_at = 0;
        r->cpus = d->cpus;
        r->gpus = d->gpus;
        w->free_cpus -= d->cpus;
        w->free_gpus -= d->gpus;
        w->nrunning++;
        did++;
        if (d->builtin == GR_BUILTIN_NOOP) {
            r->start = now;
            r->noop_end = now + d->noop_duration;
            r->deadline = 0;
            continue;
        }
        if (start (w, r, slot, now) < 0)
            return -1;
    }
    return did;
}

/* The master drains the run: give back what has not started, and let what
 * runs finish until drain_in seconds from now (a second drain may shorten
 * it), sending SIGTERM shortly before and SIGKILL at the end. */
static int drain (gr_worker_t *w, double drain_in)
{
    double now = gr_now ();
    double deadline = now + (drain_in > 0 ? drain_in : 0);
    double term_at = deadline - (drain_in >= 2 ? 1.0 : drain_in / 2);

    if (!w->draining || deadline < w->drain_kill_at) {
        w->drain_kill_at = deadline;
        w->drain_term_at = term_at;
    }
    w->draining = true;
    while (w->qlen > 0) {
        gr_result_rec_t res = {.id = w->q[w->qhead].id, .exit_code = -1,
                               .flags = GR_RES_RETURNED};
        w->qhead = (w->qhead + 1) % w->qcap;
        w->qlen--;
        if (push_result (w, &res, now) < 0)
            return -1;
    }
    /* Groups get the preemption signal now, so that they checkpoint, and
     * SIGTERM after their grace: (at the latest when other tasks get it). */
    for (uint32_t i = 0; i < w->cpus; i++) {
        run_t *r = &w->runs[i];
        if (!r->used || r->member < 0 || r->pid <= 0 || r->preempted)
            continue;
        const gr_taskdef_t *d = &w->spec->tasks[r->a.def];
        gr_exec_kill_group (r->pid, w->opts->preempt_signal);
        r->preempted = true;
        r->term_at = d->group_grace >= 0 && now + d->group_grace < w->drain_term_at
                         ? now + d->group_grace
                         : w->drain_term_at;
    }
    GR_DEBUG ("draining: %u running tasks have %.1fs", w->nrunning, drain_in);
    return 0;
}

/* Start the processes of a group this worker holds: they fit, since the
 * master reserved the room before it sent START. */
static int group_start (gr_worker_t *w, const gr_group_cmd_t *g, double now)
{
    const gr_taskdef_t *d = &w->spec->tasks[g->def];
    for (uint32_t i = 0; i < g->nranks; i++) {
        uint32_t slot = 0;
        while (slot < w->cpus && w->runs[slot].used)
            slot++;
        run_t tmp, *r = slot < w->cpus ? &w->runs[slot] : &tmp;
        memset (&r->a, 0, sizeof (r->a));
        r->a = (gr_assign_rec_t){.id = g->id, .key = g->key, .index = g->index,
                                 .def = g->def, .attempt = g->attempt};
        r->member = (int64_t)g->rank0 + i;
        r->queued = 0;
        r->local_rank = g->local0 + i;
        r->gc = *g;
        r->preempted = false;
        r->term_at = r->stop_kill_at = r->chaos_kill_at = 0;
        if (slot == w->cpus || d->cpus > w->free_cpus || d->gpus > w->free_gpus) {
            /* Not expected: the master counts what runs here. */
            gr_result_rec_t res = {.id = g->id, .exit_code = EBUSY, .flags = GR_RES_SPAWN,
                                   .member = (uint32_t)r->member + 1};
            GR_WARN ("no room for rank %" PRId64 " of group %016" PRIx64, r->member, g->key);
            if (push_result (w, &res, now) < 0)
                return -1;
            continue;
        }
        r->used = true;
        r->pid = 0;
        r->cpus = d->cpus;
        r->gpus = d->gpus;
        w->free_cpus -= d->cpus;
        w->free_gpus -= d->gpus;
        w->nrunning++;
        if (start (w, r, slot, now) < 0)
            return -1;
    }
    return 0;
}

static int group_cmd (gr_worker_t *w, const gr_group_cmd_t *g)
{
    double now = gr_now ();
    if (g->def >= w->spec->ntasks || !w->spec->tasks[g->def].group) {
        GR_ERROR ("master sent a group command for task definition %u, not a group", g->def);
        return -1;
    }
    switch (g->op) {
        case GR_GROUP_PREP: {
            int port = gr__free_port (g->addr);
            gr_result_rec_t res = {.id = g->id, .flags = GR_RES_PORT,
                                   .exit_code = port > 0 ? port : 0};
            if (port <= 0)
                GR_WARN ("no free port on %s: %s", g->addr, strerror (errno));
            return push_result (w, &res, now);
        }
        case GR_GROUP_START:
            if (w->draining) {
                /* Too late: every process reports as never started. */
                for (uint32_t i = 0; i < g->nranks; i++) {
                    gr_result_rec_t res = {.id = g->id, .exit_code = -1,
                                           .flags = GR_RES_RETURNED,
                                           .member = g->rank0 + i + 1};
                    if (push_result (w, &res, now) < 0)
                        return -1;
                }
                return 0;
            }
            return group_start (w, g, now);
        case GR_GROUP_STOP:
            for (uint32_t i = 0; i < w->cpus; i++) {
                run_t *r = &w->runs[i];
                if (!r->used || r->member < 0 || r->a.id != g->id || r->pid <= 0)
                    continue;
                gr_exec_kill_group (r->pid, g->signal);
                if (g->signal == SIGTERM)
                    r->drain_termed = true;
                if (!r->stop_kill_at || now + g->grace < r->stop_kill_at)
                    r->stop_kill_at = now + g->grace;
            }
            return 0;
        default:
            GR_ERROR ("master sent an unknown group command %u", g->op);
            return -1;
    }
}

static int recv_assign (gr_worker_t *w)
{
    void *buf;
    size_t len;
    int did = 0;
    for (;;) {
        int rc = gr_chan_recv (w->ch, 0, GR_TAG_ASSIGN, &buf, &len, NULL);
        if (rc < 0)
            return -1;
        if (rc == 0)
            break;
        if (gr_proto_check_assign (buf, len) < 0) {
            GR_ERROR ("malformed message from master (%zu bytes)", len);
            return -1;
        }
        gr_assign_hdr_t h;
        memcpy (&h, buf, sizeof (h));
        if ((h.flags & GR_ASSIGN_GROUP) && h.ntasks == 0) {
            gr_group_cmd_t g;
            memcpy (&g, (char *)buf + sizeof (h), sizeof (g));
            g.addr[sizeof (g.addr) - 1] = '\0';
            w->last_from_master = gr_now ();
            if (group_cmd (w, &g) < 0)
                return -1;
            did++;
            continue;
        }
        const gr_assign_rec_t *recs =
            (const gr_assign_rec_t *)((char *)buf + sizeof (h));
        double now = h.ntasks ? gr_now () : 0;
        for (uint32_t i = 0; i < h.ntasks; i++) {
            gr_assign_rec_t a;
            memcpy (&a, &recs[i], sizeof (a));
            if (a.def >= w->spec->ntasks) {
                GR_ERROR ("master sent an unknown task definition %u", a.def);
                return -1;
            }
            if (queue_push (w, &a, now) < 0)
                return -1;
        }
        w->received += h.ntasks;
        w->last_from_master = gr_now ();
        if (h.flags & GR_ASSIGN_SHUTDOWN)
            w->shutdown = true;
        if ((h.flags & GR_ASSIGN_DRAIN) && drain (w, h.drain_in) < 0)
            return -1;
        did++;
    }
    return did;
}

static int reap (gr_worker_t *w, double now)
{
    pid_t pid;
    int status;
    struct rusage ru;
    int did = 0;

    for (;;) {
        int rc = gr_exec_reap (&pid, &status, &ru);
        if (rc <= 0)
            break;
        did++;
        for (uint32_t i = 0; i < w->cpus; i++) {
            run_t *r = &w->runs[i];
            if (r->used && r->pid == pid) {
                if (finish (w, r, status, &ru, now) < 0)
                    return -1;
                break;
            }
        }
        /* A pid not in the table is a descendant a task orphaned; as
         * subreaper we only had to collect it. */
    }
    return did;
}

static int enforce (gr_worker_t *w, double now)
{
    for (uint32_t i = 0; i < w->cpus; i++) {
        run_t *r = &w->runs[i];
        if (!r->used)
            continue;
        if (r->pid == 0) {
            bool cut = w->draining && now >= w->drain_kill_at && now < r->noop_end;
            if (now >= r->noop_end || cut) {
                gr_result_rec_t res = {.id = r->a.id, .wall = now - r->start,
                                       .queued = r->queued,
                                       .flags = cut ? GR_RES_KILLED : 0};
                index_record (w, r, &res, 0, 0, 0, 0);
                release (w, r);
                if (push_result (w, &res, now) < 0)
                    return -1;
            }
            continue;
        }
        if (r->chaos_kill_at > 0 && now >= r->chaos_kill_at)
            chaos_kill_task (w, r, now);
        if (r->deadline > 0 && !r->timed_out && now >= r->deadline) {
            const gr_taskdef_t *d = &w->spec->tasks[r->a.def];
            GR_INFO ("task %016" PRIx64 " timed out after %gs: SIGTERM to its group",
                     r->a.key, d->timeout);
            gr_exec_kill_group (r->pid, SIGTERM);
            r->timed_out = true;
            r->kill_at = now + d->kill_grace;
        }
        if (r->timed_out && !r->killed && now >= r->kill_at) {
            gr_exec_kill_group (r->pid, SIGKILL);
            r->killed = true;
        }
        if (r->term_at > 0 && !r->drain_termed && !r->timed_out && now >= r->term_at) {
            gr_exec_kill_group (r->pid, SIGTERM);
            r->drain_termed = true;
        }
        if (r->stop_kill_at > 0 && !r->killed && now >= r->stop_kill_at) {
            gr_exec_kill_group (r->pid, SIGKILL);
            r->killed = true;
        }
        if (w->draining && !r->drain_termed && !r->timed_out && now >= w->drain_term_at) {
            gr_exec_kill_group (r->pid, SIGTERM);
            r->drain_termed = true;
        }
        if (w->draining && !r->killed && now >= w->drain_kill_at) {
            gr_exec_kill_group (r->pid, SIGKILL);
            r->killed = true;
            r->drain_termed = true;
        }
    }
    return 0;
}

/* How often running tasks' spools are cut back to their max_output: a
 * task writing faster than the disk keeps more than that on disk for at
 * most this long. */
#define SPOOL_TRIM_INTERVAL 0.25

static void trim_spools (gr_worker_t *w, double now)
{
    w->next_trim = now + SPOOL_TRIM_INTERVAL;
    for (uint32_t i = 0; i < w->cpus; i++) {
        run_t *r = &w->runs[i];
        uint64_t n;
        if (!r->used || r->pid <= 0)
            continue;
        if (r->out_captured && (n = gr_outlog_trim (r->out_spool, r->max_output)) > r->out_seen)
            r->out_seen = n;
        if (r->err_captured && (n = gr_outlog_trim (r->err_spool, r->max_output)) > r->err_seen)
            r->err_seen = n;
    }
}

int gr__worker_step (gr_worker_t *w)
{
    double now = gr_now ();
    int did = 0, rc;

    if (w->bye)
        return 0;
    if (!w->started) {
        w->started = true;
        if (send_ready (w, now) < 0)
            return -1;
        did++;
    }
    if ((rc = recv_assign (w)) < 0)
        return -1;
    did += rc;
    if (w->nprocs > 0) {
        if ((rc = reap (w, now)) < 0)
            return -1;
        did += rc;
    }
    if (w->nrunning > 0 && enforce (w, now) < 0)
        return -1;
    if (w->nprocs > 0 && now >= w->next_trim)
        trim_spools (w, now);
    if ((rc = start_ready (w, now)) < 0)
        return -1;
    did += rc;

    bool idle = w->qlen == 0 && w->nrunning == 0;
    if (w->nres >= GR_PROTO_MAX_BATCH
        || (w->nres > 0 && (w->qlen < w->cpus || idle
                            || now - w->oldest_res >= w->opts->flush_interval))
        || (w->shutdown && idle)
        || now - w->last_send >= gr__heartbeat (w->opts)) {
        if (send_ready (w, now) < 0)
            return -1;
        did++;
    }
    if (gr_chan_progress (w->ch) < 0)
        return -1;
    return did > 0;
}

int gr__worker_done (const gr_worker_t *w)
{
    return w->bye;
}

bool gr__worker_master_lost (gr_worker_t *w)
{
    /* The master writes at least every heartbeat; rank 0 is its own. */
    if (w->rank == 0 || gr_now () - w->last_from_master < w->opts->lost_after)
        return false;
    GR_ERROR ("no word from the master for %.0fs: it is lost; stopping this "
              "worker's %u task%s (run the same command again to resume)",
              gr_now () - w->last_from_master, w->nrunning, w->nrunning == 1 ? "" : "s");
    for (uint32_t i = 0; i < w->cpus; i++) {
        if (w->runs[i].used && w->runs[i].pid > 0)
            gr_exec_kill_group (w->runs[i].pid, SIGKILL);
    }
    return true;
}

double gr__worker_idle_wait (const gr_worker_t *w, int *has_procs)
{
    double now = gr_now ();
    double next = w->last_send + gr__heartbeat (w->opts);
    if (w->nres > 0 && w->oldest_res + w->opts->flush_interval < next)
        next = w->oldest_res + w->opts->flush_interval;
    for (uint32_t i = 0; i < w->cpus; i++) {
        const run_t *r = &w->runs[i];
        if (!r->used)
            continue;
        if (r->pid == 0 && r->noop_end < next)
            next = r->noop_end;
        if (r->deadline > 0 && !r->timed_out && r->deadline < next)
            next = r->deadline;
        if (r->timed_out && !r->killed && r->kill_at < next)
            next = r->kill_at;
        if (r->term_at > 0 && !r->drain_termed && r->term_at < next)
            next = r->term_at;
        if (r->stop_kill_at > 0 && !r->killed && r->stop_kill_at < next)
            next = r->stop_kill_at;
        if (r->pid > 0 && r->chaos_kill_at > 0 && r->chaos_kill_at < next)
            next = r->chaos_kill_at;
        if (w->draining) {
            double t = r->drain_termed ? w->drain_kill_at : w->drain_term_at;
            if (!r->killed && t < next)
                next = t;
        }
    }
    if (w->nprocs > 0 && w->next_trim < next)
        next = w->next_trim;
    *has_procs = w->nprocs > 0;
    return next > now ? next - now : 0;
}
