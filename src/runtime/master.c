/* Run setup on every rank, and the master loop on rank 0. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mpi.h>

#include "src/ckpt/snapshot.h"
#include "src/common/chaos.h"
#include "src/common/fs.h"
#include "src/common/grow.h"
#include "src/common/gtime.h"
#include "src/common/log.h"
#include "src/common/slurm.h"
#include "src/common/units.h"
#include "src/exec/exec.h"
#include "src/journal/journal.h"
#include "src/proto/proto.h"
#include "src/sched/sched.h"
#include "src/spec/site_load.h"
#include "src/spec/spec.h"
#include "src/topo/topo.h"
#include "group.h"
#include "obs.h"
#include "place.h"
#include "rundir.h"
#include "runtime.h"

void gr_run_opts_init (gr_run_opts_t *o)
{
    memset (o, 0, sizeof (*o));
    o->prefetch_window = 0.05;
    o->max_prefetch = 4096;
    o->flush_interval = 0.02;
    o->heartbeat = 5.0;
    o->commit_interval = 0.05;
    o->grace = -1;
    o->preempt_signal = SIGUSR2;
    o->lost_after = 30;
    o->snapshot_interval = 60;
    o->slurm_reread = 60;
    o->metrics_interval = 10;
    o->events = GR_EVENTS_ON;
    o->progress = GR_PROGRESS_AUTO;
    o->progress_interval = 30;
}

/* Signal handlers only count. */
static volatile sig_atomic_t drain_signals;
static volatile sig_atomic_t last_signal;
static bool finalize_ok = true;

static void on_drain_signal (int sig)
{
    drain_signals++;
    last_signal = sig;
}

int gr_runtime_signals_init (int preempt_signal)
{
    struct sigaction sa;
    memset (&sa, 0, sizeof (sa));
    sa.sa_handler = on_drain_signal;
    sigemptyset (&sa.sa_mask);
    /* SIGUSR2 always drains too: it is what gridrun launch forwards,
     * because mpirun passes it on without killing the ranks. */
    if (sigaction (SIGTERM, &sa, NULL) < 0 || sigaction (SIGINT, &sa, NULL) < 0
        || sigaction (SIGUSR2, &sa, NULL) < 0)
        return -1;
    if (preempt_signal > 0 && sigaction (preempt_signal, &sa, NULL) < 0)
        return -1;
    return 0;
}

int gr__drain_signals (void)
{
    return drain_signals;
}

bool gr_run_should_finalize (void)
{
    return finalize_ok;
}

typedef struct wstate {
    int rank;
    gr_worker_info_t info;
    int64_t want;           /* as of the worker's last READY */
    uint64_t assigned;      /* tasks sent to it */
    uint64_t received;      /* tasks it said it has received */
    bool shutdown_sent;
    bool bye;
    bool lost;
    bool quarantined;       /* its domain takes no new work for now */
    double last_heard;
    double last_sent;       /* anything sent to it: the master's heartbeat */
    int64_t busy_cpus;      /* of the tasks and group processes it holds */
    int64_t busy_gpus;
    uint32_t gprocs;        /* group processes it runs */
    bool reserved;          /* held for a group about to start */
    uint32_t node;          /* its host, numbered */
    double asked;           /* when its credit went from none to some; 0: not
                               waiting (dispatch latency) */
    uint32_t chaos_kills;   /* chaos mode: as its last READY counted them */
    uint32_t chaos_delays;
} wstate_t;

/* A group task's attempt (kind: group), from the moment the scheduler
 * hands it out until every one of its processes has reported. */
enum { G_RESERVE = 0, G_PREP = 1, G_RUN = 2 };

typedef struct gplace {
    int worker;
    uint32_t n;             /* processes on it */
    uint32_t rank0;         /* RANK of the first */
    uint32_t node;          /* GROUP_RANK of its node */
    uint32_t local0;        /* LOCAL_RANK of the first */
    uint32_t ended;
} gplace_t;

typedef struct group {
    gr_assign_rec_t a;
    int state;
    gplace_t *pl;           /* planned places, RANK order */
    uint32_t npl;
    uint32_t nnodes;
    uint32_t ended;         /* processes that reported, or were lost */
    bool failed;            /* one failed: the others were stopped */
    bool preempted;         /* one was stopped by the drain */
    bool returned;          /* one never started (drain) */
    bool completed;         /* the scheduler has its outcome already */
    gr_result_rec_t fail;   /* the first failure */
    gr_result_rec_t sum;    /* wall: the longest; CPU: the sum */
    char addr[64];
    double since;
} group_t;

typedef struct master {
    const gr_run_opts_t *opts;
    const gr_spec_t *spec;
    const char *run_dir;
    int size;
    gr_chan_t *ch;
    gr_sched_t *sched;
    gr_expand_t *x;
    gr_journal_t *journal;
    uint32_t incarnation;
    wstate_t *w;            /* indexed by rank; rank 0 is a worker only alone */
    int nworkers;
    int nbye;
    int nlost;
    uint64_t total_cpus;
    double t_start;
    double cpu_start, cpu_run; /* the master process's CPU seconds: at the
                                  start of the run loop, and in it */
    double started_wall;
    double grace;
    double deadline;        /* monotonic; 0: none */
    bool draining;
    double drain_end;       /* monotonic: running tasks end by then */
    int signals_seen;
    double last_snapshot;
    gr_jend_t ends[GR_PROTO_MAX_BATCH];
    uint32_t nends;
    int ends_worker;
    /* A plain end of jplain_worker (or of none: -1) counts in the batch's
     * last entry: the entries it stands for end at jnext - 1 (its
     * plain_after is set from that when it is written or followed), with
     * its def and maxrss_kb copied here, and jstop is where its
     * plain_after would pass GR_JOURNAL_PLAIN_MAX. */
    int jplain_worker;
    uint32_t jdef;
    int64_t jrss;
    uint64_t jnext, jstop;
    bool jplain;            /* the journal takes plain_after (version 3) */
    bool alone;             /* rank 0 runs the only worker itself */
    gr_exec_t *slurm_ex;    /* re-reading the Slurm job's end time: */
    gr_exec_cmd_t *slurm_q; /* the squeue in flight, if any */
    double slurm_next;      /* monotonic: when to start the next; 0: never */
    bool slurm_failed;      /* one failed (said once) */
    pid_t snap_pid;         /* a snapshot writer in progress */
    double snap_started;
    double snap_seconds;    /* the last writer's time and peak RSS */
    double snap_rss_mib;
    gr_place_t *place;
    uint8_t *elig;          /* scratch: per definition, may this worker run it */
    uint8_t *spill;         /* per definition: its preferred workers are full */
    double stalled_since;   /* nothing runs and nothing can be handed out */
    uint64_t unplaceable;   /* tasks failed because they could not be placed */
    uint64_t quarantines;
    bool any_group;         /* the spec has group tasks */
    uint8_t *gelig;         /* per definition: is it a group */
    group_t **groups;       /* attempts of groups in progress */
    size_t ngroups, capgroups;
    group_t *pending;       /* the one being placed (RESERVE or PREP) */
    gplace_t *gscratch;     /* one per rank */
    gr_obs_t *obs;          /* metrics, events, progress */
    const char *snap_state; /* of the snapshot being written */
    bool io_failed;         /* the run directory cannot be written */
    bool io_stopped;        /* and the run was told to stop for it */
    /* Chaos mode: faults injected, for the summary and the events. */
    uint64_t chaos_task_kills;    /* by workers */
    uint64_t chaos_result_delays; /* by workers */
    uint64_t chaos_assign_delays; /* by the master */
    uint64_t chaos_journal[2];    /* journal writes failed: EIO, ENOSPC */
} master_t;

static const char *task_label (master_t *m, uint32_t def, uint64_t index)
{
    if (def >= m->spec->ntasks || index >= m->spec->tasks[def].count
        || gr_expand_select (m->x, &m->spec->tasks[def], index) < 0)
        return "?";
    return gr_expand_name (m->x);
}

/* The run directory cannot be written (a full disk, an I/O error): what
 * the run did from now on could not be kept.  master_loop stops the run
 * at once (io_stop) and gr_run exits GR_EXIT_IO; the journal up to its
 * last commit is intact, and the same command resumes from it once the
 * directory can be written again.  Said once. */
static void io_fail (master_t *m, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));
static void io_fail (master_t *m, const char *fmt, ...)
{
    char cause[GR_ERROR_TEXT_MAX];
    va_list ap;

    if (m->io_failed)
        return;
    m->io_failed = true;
    va_start (ap, fmt);
    vsnprintf (cause, sizeof (cause), fmt, ap);
    va_end (ap);
    GR_ERROR ("the run directory '%s' cannot be written: %s.  The run stops now (exit %d), "
              "keeping what it committed; free space on its file system, then run the same "
              "command again to resume (or: gridrun run --run-dir %s)",
              m->run_dir, cause, GR_EXIT_IO, m->run_dir);
}

static int journal_put (master_t *m, const gr_jrec_t *rec)
{
    gr_error_t err;
    if (!m->journal)
        return 0;
    if (gr_journal_append (m->journal, rec, &err) < 0) {
        GR_ERROR ("%s", err.text);
        return -1;
    }
    return 0;
}

/* A failed commit is not the caller's error: io_fail stops the run. */
static int journal_sync (master_t *m)
{
    gr_error_t err;
    if (m->journal && gr_journal_sync (m->journal, &err) < 0)
        io_fail (m, "%s", err.text);
    return 0;
}

/* The plain ends counted since the batch's last entry, into its
 * plain_after. */
static inline void close_end_entry (master_t *m)
{
    gr_jend_t *l = &m->ends[m->nends - 1];
    l->plain_after = (uint32_t)(m->jnext - l->index - 1);
}

static int flush_ends (master_t *m)
{
    if (m->nends == 0)
        return 0;
    close_end_entry (m);
    gr_jrec_t rec = {.type = GR_JREC_TASK_END, .time = gr_wallclock ()};
    rec.end.worker = (uint32_t)m->ends_worker;
    rec.end.n = m->nends;
    rec.end.tasks = m->ends;
    m->nends = 0;
    m->jplain_worker = -1;
    return journal_put (m, &rec);
}

static const uint32_t jout_of[] = {
    [GR_OUTCOME_DONE] = GR_JOUT_DONE,
    [GR_OUTCOME_RETRY] = GR_JOUT_RETRY,
    [GR_OUTCOME_FAILED] = GR_JOUT_FAILED,
    [GR_OUTCOME_POISON] = GR_JOUT_POISON,
    [GR_OUTCOME_STALE] = GR_JOUT_REQUEUED,
    [GR_OUTCOME_REQUEUED] = GR_JOUT_REQUEUED,
};

/* An end entry is filled by two block copies (see gr_jend_t): JEND_O
 * bytes of o from kind, and JEND_R bytes of r from wall. */
#define JEND_O (offsetof (gr_jend_t, attempt) + 8)
#define JEND_R (offsetof (gr_jend_t, plain_after) + 4 - offsetof (gr_jend_t, wall))
#define FROM_WALL(type, f) (offsetof (type, f) - offsetof (type, wall))
#define R_AS_JEND(f) (FROM_WALL (gr_result_rec_t, f) == FROM_WALL (gr_jend_t, f))
_Static_assert (offsetof (gr_outcome_t, kind) == 0 && sizeof (gr_outcome_kind_t) == 4
                    && offsetof (gr_outcome_t, def) == offsetof (gr_jend_t, def)
                    && offsetof (gr_outcome_t, index) == offsetof (gr_jend_t, index)
                    && offsetof (gr_outcome_t, key) == offsetof (gr_jend_t, key)
                    && offsetof (gr_outcome_t, attempt) == offsetof (gr_jend_t, attempt)
                    && sizeof (gr_outcome_t) >= JEND_O,
                "gr_jend_t starts as gr_outcome_t does");
_Static_assert (R_AS_JEND (utime) && R_AS_JEND (stime) && R_AS_JEND (maxrss_kb)
                    && R_AS_JEND (exit_code) && R_AS_JEND (signal) && R_AS_JEND (flags)
                    && offsetof (gr_result_rec_t, wall) + JEND_R <= sizeof (gr_result_rec_t),
                "gr_jend_t ends as gr_result_rec_t does");

/* The end entry of o (and r, the worker's record of it, or NULL) at the
 * end of the batch of worker's ends, which has room. */
static inline void put_end_entry (master_t *m, int worker, const gr_outcome_t *o,
                                  const gr_result_rec_t *r)
{
    if (m->nends > 0)
        close_end_entry (m);
    gr_jend_t *e = &m->ends[m->nends++];

    m->ends_worker = worker;
    memcpy (e, o, JEND_O);
    e->outcome = jout_of[o->kind];
    if (r)
        memcpy (&e->wall, &r->wall, JEND_R);
    else {
        e->exit_code = -1;
        e->signal = 0;
        e->flags = o->kind == GR_OUTCOME_FAILED ? GR_RES_UNPLACED : 0;
        e->wall = e->utime = e->stime = 0;
        e->maxrss_kb = 0;
    }
    e->plain_after = 0; /* the copy from r put r->member there */
    m->jplain_worker = m->jplain ? worker : -1;
    m->jnext = e->index + 1;
    m->jstop = m->jnext + GR_JOURNAL_PLAIN_MAX;
    m->jdef = e->def;
    m->jrss = e->maxrss_kb;
}

/* note_end's uncommon case: not inlined, so that the common one saves no
 * registers. */
static __attribute__ ((noinline)) int note_end_entry (master_t *m, int worker,
                                                      const gr_outcome_t *o,
                                                      const gr_result_rec_t *r)
{
    if (m->nends == GR_PROTO_MAX_BATCH || (m->nends && m->ends_worker != worker)) {
        if (flush_ends (m) < 0)
            return -1;
    }
    put_end_entry (m, worker, o, r);
    return 0;
}

/* Journal the end of an attempt: into the batch of its worker's ends,
 * written out when full, when another worker's end comes, or at the end
 * of a message (flush_ends).  A plain end (gr_jend_plain: a no-op task's)
 * after the batch's last entry only counts in that entry (plain_after,
 * format version 3): the common case at full dispatch rate tests the
 * outcome and the worker's record in place and calls nothing. */
static inline int note_end (master_t *m, int worker, const gr_outcome_t *o,
                            const gr_result_rec_t *r)
{
    _Static_assert (GR_OUTCOME_DONE == 0 && GR_JOUT_DONE == 0, "done is 0");
    if (worker == m->jplain_worker && r
        && gr_jend_plain (o, &r->wall, m->jnext, m->jdef, m->jrss)) {
        if (++m->jnext == m->jstop)
            m->jplain_worker = -1;
        return 0;
    }
    return m->journal ? note_end_entry (m, worker, o, r) : 0;
}

/* ------------------------------------------------------------------ */
/* Quarantine. */

static void quarantine_mark (master_t *m, uint32_t dom, bool on)
{
    for (int r = 0; r < m->size; r++) {
        wstate_t *w = &m->w[r];
        if (w->rank < 0 || gr__place_dom (m->place, r, m->place->qlevel) != dom)
            continue;
        w->quarantined = on;
        gr_sched_set_usable (m->sched, r, on ? false : !w->lost);
    }
}

static int quarantine_journal (master_t *m, uint32_t dom, bool on, double until)
{
    gr_jrec_t rec = {.type = GR_JREC_QUARANTINE, .time = gr_wallclock ()};
    rec.quarantine.level = (uint32_t)m->place->qlevel;
    rec.quarantine.on = on;
    rec.quarantine.until = on ? rec.time + (until - gr_now ()) : 0;
    rec.quarantine.failures = m->spec->quarantine.failures;
    gr__place_describe (m->place, m->place->qlevel, dom, rec.quarantine.name,
                        sizeof (rec.quarantine.name));
    if (journal_put (m, &rec) < 0 || journal_sync (m) < 0)
        return -1;
    return 0;
}

/* A task of worker src failed: count it against its domain. */
static int quarantine_fail (master_t *m, int src, double now)
{
    char b[96], d1[32], d2[32];
    if (!m->place || !m->place->quar)
        return 0;
    uint32_t dom = gr__place_dom (m->place, src, m->place->qlevel);
    if (!gr_quar_fail (m->place->quar, dom, now))
        return 0;
    const gr_quarantine_t *q = &m->spec->quarantine;
    m->quarantines++;
    quarantine_mark (m, dom, true);
    GR_WARN ("quarantine: %s: %u task failures within %s; no new work there for %s",
             gr__place_describe (m->place, q->level, dom, b, sizeof (b)), q->failures,
             gr_fmt_duration (q->window, d1, sizeof (d1)),
             gr_fmt_duration (q->cooloff, d2, sizeof (d2)));
    gr_obs_quarantine (m->obs, b, true, q->cooloff);
    return quarantine_journal (m, dom, true, gr_quar_until (m->place->quar, dom));
}

static int quarantine_release (master_t *m, double now)
{
    char b[96];
    size_t dom;
    if (!m->place || !m->place->quar)
        return 0;
    while ((dom = gr_quar_release (m->place->quar, now)) != SIZE_MAX) {
        quarantine_mark (m, (uint32_t)dom, false);
        GR_WARN ("quarantine of %s ends; it takes work again",
                 gr__place_describe (m->place, m->place->qlevel, (uint32_t)dom, b,
                                     sizeof (b)));
        gr_obs_quarantine (m->obs, b, false, 0);
        if (quarantine_journal (m, (uint32_t)dom, false, 0) < 0)
            return -1;
    }
    return 0;
}

/* Journal an attempt's outcome, count a failure against its domain, and
 * say what happened. */
static int report_outcome (master_t *m, int src, const gr_outcome_t *o,
                           const gr_result_rec_t *r, double now)
{
    const gr_taskdef_t *d = &m->spec->tasks[o->def];
    if (note_end (m, src, o, r) < 0)
        return -1;
    if (m->obs)
        gr_obs_result (m->obs, src, o,
                       o->kind != GR_OUTCOME_DONE || m->opts->events == GR_EVENTS_TASKS
                           ? task_label (m, o->def, o->index)
                           : "",
                       d->cpus, r ? r->wall : 0, r ? r->queued : 0, r != NULL);
    if ((o->kind == GR_OUTCOME_RETRY || o->kind == GR_OUTCOME_FAILED
         || o->kind == GR_OUTCOME_POISON)
        && !(r && (r->flags & GR_RES_UNPLACED) == GR_RES_UNPLACED)
        && quarantine_fail (m, src, now) < 0)
        return -1;
    switch (o->kind) {
        case GR_OUTCOME_RETRY:
            if (d->group)
                GR_WARN ("group %s (%016" PRIx64 ") attempt %u: %s; restart %u of %u",
                         task_label (m, o->def, o->index), o->key, o->attempt, o->reason,
                         o->attempt, d->retry.max);
            else
                GR_INFO ("task %s (%016" PRIx64 ") attempt %u: %s; retry in %.1fs",
                         task_label (m, o->def, o->index), o->key, o->attempt,
                         o->reason, o->delay);
            break;
        case GR_OUTCOME_FAILED:
            GR_WARN ("task %s (%016" PRIx64 ") failed: %s after %u attempt%s",
                     task_label (m, o->def, o->index), o->key, o->reason,
                     o->attempt, o->attempt == 1 ? "" : "s");
            break;
        case GR_OUTCOME_POISON:
            GR_WARN ("task %s (%016" PRIx64 ") is poison: %s, crashed %u "
                     "times; not retried",
                     task_label (m, o->def, o->index), o->key, o->reason,
                     d->retry.crash_limit);
            break;
        default:
            break;
    }
    return 0;
}

static bool live (const wstate_t *w)
{
    return w->rank >= 0 && !w->bye && !w->lost;
}

/* What a worker still wants: its last request, less the tasks already on
 * their way to it. */
static int64_t credit (const wstate_t *w)
{
    return w->want - (int64_t)(w->assigned - w->received);
}

static int group_port (master_t *m, int src, const gr_result_rec_t *r, double now);
static int group_member_end (master_t *m, int src, const gr_result_rec_t *r,
                             double now);

/* ------------------------------------------------------------------ */
/* Chaos mode (src/common/chaos.h, doc/hardening.md): the master's own
 * faults, and the count of everyone's. */

/* A worker's READY counts more faults than its last one. */
static void chaos_worker_counts (master_t *m, int src, const gr_ready_hdr_t *h)
{
    wstate_t *w = &m->w[src];
    uint32_t kills = h->chaos_kills - w->chaos_kills;
    uint32_t delays = h->chaos_delays - w->chaos_delays;
    if (kills)
        gr_obs_chaos (m->obs, "kill-task", src, kills);
    if (delays)
        gr_obs_chaos (m->obs, "delay", src, delays);
    m->chaos_task_kills += kills;
    m->chaos_result_delays += delays;
    w->chaos_kills = h->chaos_kills;
    w->chaos_delays = h->chaos_delays;
}

/* Journal writes that failed by chaos since the last look: they happen
 * on the journal's writer thread too, which must not log (the progress
 * bar is this thread's), so this thread says so. */
static void chaos_journal_note (master_t *m)
{
    static const gr_chaos_site_t site[2] = {GR_CHAOS_JOURNAL_EIO, GR_CHAOS_JOURNAL_ENOSPC};
    for (int i = 0; i < 2; i++) {
        uint64_t n = gr_chaos_count (site[i]);
        if (n == m->chaos_journal[i])
            continue;
        GR_WARN ("chaos: %" PRIu64 " journal write%s failed with %s%s", n - m->chaos_journal[i],
                 n - m->chaos_journal[i] == 1 ? "" : "s", i ? "ENOSPC" : "EIO",
                 i ? "; every later journal write fails too, as on a full disk"
                   : "; the journal retries the write");
        gr_obs_chaos (m->obs, gr_chaos_site_name (site[i]), 0, n - m->chaos_journal[i]);
        m->chaos_journal[i] = n;
    }
}

/* Hold an assignment back for the spec's delay. */
static void chaos_delay_assign (master_t *m, const wstate_t *w, uint32_t n)
{
    char b[32];
    double d = gr_chaos_current ()->delay;
    GR_WARN ("chaos: holding %u task%s for worker %d back for %s", n, n == 1 ? "" : "s",
             w->rank, gr_fmt_duration (d, b, sizeof (b)));
    gr_obs_chaos (m->obs, "delay", 0, 1);
    gr_sleep (d);
    m->chaos_assign_delays++;
}

static int handle_ready (master_t *m, int src, const void *buf, size_t len,
                         double now)
{
    gr_ready_hdr_t h;
    wstate_t *w;

    if (src < 0 || src >= m->size || gr_proto_check_ready (buf, len) < 0) {
        GR_ERROR ("malformed message from rank %d (%zu bytes); ignored", src, len);
        return 0;
    }
    w = &m->w[src];
    if (w->lost) {
        /* Its tasks were handed out again; what it says now is stale. */
        GR_DEBUG ("message from lost worker %d ignored", src);
        return 0;
    }
    memcpy (&h, buf, sizeof (h));
    if (h.chaos_kills != w->chaos_kills || h.chaos_delays != w->chaos_delays)
        chaos_worker_counts (m, src, &h);
    const gr_result_rec_t *recs =
        (const gr_result_rec_t *)((const char *)buf + sizeof (h));
    for (uint32_t i = 0; i < h.nresults; i++) {
        gr_result_rec_t r;
        gr_outcome_t o;
        memcpy (&r, &recs[i], sizeof (r));
        if (r.flags & GR_RES_OUTLOST)
            io_fail (m, "worker %d on %s cannot keep task output in '%s/out': %s", src,
                     w->info.host, m->run_dir, strerror (r.exit_code));
        if (r.flags & GR_RES_PORT) {
            if (group_port (m, src, &r, now) < 0)
                return -1;
            continue;
        }
        if (r.member) {
            if (group_member_end (m, src, &r, now) < 0)
                return -1;
            continue;
        }
        if (gr_sched_complete (m->sched, now, &r, &o) < 0)
            return -1;
        if (o.kind == GR_OUTCOME_STALE) {
            GR_DEBUG ("stale result %016" PRIx64 " from rank %d ignored", r.id, src);
            continue;
        }
        const gr_taskdef_t *d = &m->spec->tasks[o.def];
        w->busy_cpus -= d->cpus;
        w->busy_gpus -= d->gpus;
        if (report_outcome (m, src, &o, &r, now) < 0)
            return -1;
    }
    if (flush_ends (m) < 0)
        return -1;
    bool had_credit = credit (w) > 0;
    w->want = h.want;
    w->received = h.received;
    if (!had_credit && credit (w) > 0)
        w->asked = now;
    w->last_heard = now;
    if (h.flags & GR_READY_BYE) {
        w->bye = true;
        m->nbye++;
    }
    return 0;
}

static int send_assign (master_t *m, wstate_t *w, const gr_assign_rec_t *recs,
                        uint32_t n, uint32_t flags, double drain_in)
{
    size_t len = gr_assign_size (n);
    char *buf = malloc (len);
    if (!buf)
        return -1;
    gr_assign_hdr_t h = {.version = GR_PROTO_VERSION, .flags = flags, .ntasks = n,
                         .drain_in = drain_in};
    memcpy (buf, &h, sizeof (h));
    /* An empty ASSIGN (a heartbeat, a shutdown) may come with no records
     * at all, and memcpy must not be given NULL even for 0 bytes. */
    if (n > 0)
        memcpy (buf + sizeof (h), recs, n * sizeof (*recs));
    if (gr_chaos_on () && n > 0 && gr__chaos_hit (GR_CHAOS_DELAY))
        chaos_delay_assign (m, w, n);
    if (gr_chan_send (m->ch, w->rank, GR_TAG_ASSIGN, buf, len) < 0) {
        free (buf);
        return -1;
    }
    w->assigned += n;
    w->last_sent = gr_now ();
    if (n > 0 && w->asked > 0) {
        gr_obs_dispatch (m->obs, w->last_sent - w->asked);
        w->asked = 0;
    }
    return 0;
}

/* Workers that heard nothing from the master for a while get an empty
 * ASSIGN, so that they can tell a quiet master from a dead one. */
static int heartbeats (master_t *m, double now)
{
    for (int r = 1; r < m->size; r++) {
        wstate_t *w = &m->w[r];
        if (live (w) && !w->shutdown_sent && now - w->last_sent >= gr__heartbeat (m->opts)
            && send_assign (m, w, NULL, 0, 0, 0) < 0)
            return -1;
    }
    return 0;
}

/* Which definitions worker r may be given now.  With prefer: or
 * locality:, pass 0 offers a definition only to the workers it prefers;
 * pass 1 also to the others once every preferred worker is full.  NULL
 * when nothing is preferred: the scheduler checks require: itself. */
static const uint8_t *eligible (master_t *m, int r, int pass)
{
    const gr_place_t *p = m->place;
    size_t nt = m->spec->ntasks;
    bool pref = p && p->any_prefer;
    if (!pref && !m->any_group)
        return NULL;
    for (size_t i = 0; i < nt; i++) {
        size_t k = (size_t)r * nt + i;
        /* Groups are placed whole, by group_dispatch. */
        m->elig[i] = !m->gelig[i]
                     && (!pref || (p->req[k] && (p->pref[k] || (pass == 1 && m->spill[i]))));
    }
    return m->elig;
}

/* After pass 0: the definitions none of whose preferred workers has
 * room left. */
static void find_spill (master_t *m)
{
    const gr_place_t *p = m->place;
    size_t nt = m->spec->ntasks;
    memset (m->spill, 1, nt);
    for (int r = 0; r < m->size; r++) {
        const wstate_t *w = &m->w[r];
        if (!live (w) || w->shutdown_sent || w->quarantined || credit (w) <= 0)
            continue;
        for (size_t i = 0; i < nt; i++) {
            if (p->pref[(size_t)r * nt + i] && p->req[(size_t)r * nt + i])
                m->spill[i] = 0;
        }
    }
}

/* ------------------------------------------------------------------ */
/* Group tasks (kind: group): gang placement and the life of an attempt.
 *
 * One group at a time is being placed.  The master plans where all its
 * processes go (on the room the workers have in all, so the plan does not
 * chase momentary gaps), stops giving those workers new tasks, and once
 * their running tasks have left room for the whole group asks the worker
 * of RANK 0 for a port (PREP) and sends every worker its processes
 * (START).  Nothing holds part of a group while waiting for the rest, so
 * groups and tasks cannot deadlock each other.  When one process fails,
 * the others are stopped, and once all have ended the attempt ends with
 * the first failure: a restart (a retry, with max_restarts) or a failure
 * for good. */

/* Processes of d that fit in cpus and gpus. */
static uint32_t fit_procs (const gr_taskdef_t *d, int64_t cpus, int64_t gpus)
{
    if (cpus <= 0 || (d->gpus && gpus <= 0))
        return 0;
    int64_t n = cpus / (d->cpus ? d->cpus : 1);
    if (d->gpus && gpus / d->gpus < n)
        n = gpus / d->gpus;
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

typedef struct gcand {
    int rank;
    uint32_t node;
    uint32_t total;         /* processes it holds when idle */
    uint32_t free;          /* processes it has room for now */
} gcand_t;

static int cand_cmp (const void *a, const void *b)
{
    const gcand_t *x = a, *y = b;
    if (x->free != y->free)
        return x->free > y->free ? -1 : 1;
    return x->rank - y->rank;
}

/* Plan d's ranks over the candidates: whole nodes first, the node with
 * the most room now first, at most ranks_per_node on one.  Returns how
 * many places out[] got (RANK order), or 0 when the ranks do not fit even
 * on idle workers.  nnodesp gets the nodes used. */
static uint32_t plan_over (const gr_taskdef_t *d, gcand_t *c, size_t nc, uint32_t nnodes_all,
                           gplace_t *out, uint32_t *nnodesp)
{
    uint64_t *ntot = calloc (nnodes_all + 1, sizeof (uint64_t));
    uint64_t *nfree = calloc (nnodes_all + 1, sizeof (uint64_t));
    uint8_t *used = calloc (nnodes_all + 1, 1);
    uint64_t rpn = d->ranks_per_node ? d->ranks_per_node : UINT64_MAX, room = 0;
    uint32_t npl = 0, left = d->ranks, nnodes = 0;

    if (!ntot || !nfree || !used)
        goto out;
    for (size_t i = 0; i < nc; i++) {
        ntot[c[i].node] += c[i].total;
        nfree[c[i].node] += c[i].free;
    }
    for (uint32_t n = 0; n < nnodes_all; n++)
        room += ntot[n] < rpn ? ntot[n] : rpn;
    if (room < d->ranks)
        goto out;
    qsort (c, nc, sizeof (*c), cand_cmp);
    while (left > 0) {
        /* The unused node with the most room now, then in all. */
        uint32_t best = UINT32_MAX;
        for (uint32_t n = 0; n < nnodes_all; n++) {
            if (used[n] || ntot[n] == 0)
                continue;
            if (best == UINT32_MAX || nfree[n] > nfree[best]
                || (nfree[n] == nfree[best] && ntot[n] > ntot[best]))
                best = n;
        }
        if (best == UINT32_MAX)
            break;
        used[best] = 1;
        uint64_t take = ntot[best] < rpn ? ntot[best] : rpn;
        uint32_t local = 0;
        for (size_t i = 0; i < nc && take > 0 && left > 0; i++) {
            if (c[i].node != best || c[i].total == 0)
                continue;
            uint32_t n = c[i].total < take ? c[i].total : (uint32_t)take;
            if (n > left)
                n = left;
            out[npl++] = (gplace_t){.worker = c[i].rank, .n = n, .rank0 = d->ranks - left,
                                    .node = nnodes, .local0 = local};
            local += n;
            take -= n;
            left -= n;
        }
        nnodes++;
    }
    if (left > 0)
        npl = 0;
out:
    free (ntot);
    free (nfree);
    free (used);
    *nnodesp = nnodes;
    return npl;
}

/* May worker r hold processes of def? */
static bool group_worker_ok (const master_t *m, int r, uint32_t def, bool quarantined_ok)
{
    const wstate_t *w = &m->w[r];
    const gr_place_t *p = m->place;
    return w->rank >= 0 && !w->bye && !w->lost && !w->shutdown_sent
           && (quarantined_ok || !w->quarantined)
           && (!p || !p->any_require || p->req[(size_t)r * m->spec->ntasks + def]);
}

static uint32_t group_plan (master_t *m, group_t *g, bool quarantined_ok)
{
    const gr_taskdef_t *d = &m->spec->tasks[g->a.def];
    gcand_t *c = calloc ((size_t)m->size, sizeof (*c));
    size_t nc = 0;
    uint32_t nnodes_all = 0, npl;

    if (!c)
        return 0;
    for (int r = 0; r < m->size; r++) {
        const wstate_t *w = &m->w[r];
        if (!group_worker_ok (m, r, g->a.def, quarantined_ok))
            continue;
        c[nc++] = (gcand_t){.rank = r, .node = w->node,
                            .total = fit_procs (d, w->info.cpus, w->info.gpus),
                            .free = fit_procs (d, (int64_t)w->info.cpus - w->busy_cpus,
                                               (int64_t)w->info.gpus - w->busy_gpus)};
        if (w->node + 1 > nnodes_all)
            nnodes_all = w->node + 1;
    }
    npl = plan_over (d, c, nc, nnodes_all, m->gscratch, &g->nnodes);
    free (c);
    if (npl) {
        gplace_t *pl = realloc (g->pl, npl * sizeof (*pl));
        if (!pl)
            return 0;
        memcpy (pl, m->gscratch, npl * sizeof (*pl));
        g->pl = pl;
    }
    g->npl = npl;
    return npl;
}

/* node[r]: the host of rank r, numbered from 0 in order of first rank.
 * Returns how many hosts. */
static uint32_t number_nodes (const gr_worker_info_t *infos, int size, uint32_t *node)
{
    uint32_t n = 0;
    for (int r = 0; r < size; r++) {
        node[r] = n;
        for (int q = 0; q < r; q++) {
            if (strcmp (infos[q].host, infos[r].host) == 0) {
                node[r] = node[q];
                break;
            }
        }
        if (node[r] == n)
            n++;
    }
    return n;
}

/* At start-up: can every group fit the workers at all?  0, or an exit
 * code after saying why not. */
static int group_check_fit (const gr_spec_t *spec, const gr_worker_info_t *infos, int size,
                            const gr_place_t *place)
{
    gcand_t *c = calloc ((size_t)size, sizeof (*c));
    gplace_t *out = calloc ((size_t)size, sizeof (*out));
    uint32_t *node = calloc ((size_t)size, sizeof (uint32_t));
    int code = 0;

    if (!c || !out || !node) {
        code = GR_EXIT_INTERNAL;
        goto done;
    }
    uint32_t nnodes = number_nodes (infos, size, node);
    for (size_t i = 0; i < spec->ntasks && !code; i++) {
        const gr_taskdef_t *d = &spec->tasks[i];
        size_t nc = 0;
        uint32_t used, slots = 0;
        if (!d->group)
            continue;
        for (int r = size == 1 ? 0 : 1; r < size; r++) {
            if (place && place->any_require && !place->req[(size_t)r * spec->ntasks + i])
                continue;
            c[nc] = (gcand_t){.rank = r, .node = node[r],
                              .total = fit_procs (d, infos[r].cpus, infos[r].gpus)};
            slots += c[nc].total;
            nc++;
        }
        if (plan_over (d, c, nc, nnodes, out, &used) == 0) {
            char rpn[48] = "";
            if (d->ranks_per_node)
                snprintf (rpn, sizeof (rpn), ", at most %u a node", d->ranks_per_node);
            fprintf (stderr,
                     "gridrun: %s:%d:%d: group task '%s' needs %u processes of %u cpu%s "
                     "and %u gpu%s%s, but the workers have room for %u (%d worker%s on "
                     "%u node%s); lower ranks: or cpus_per_rank:, or run gridrun with "
                     "more ranks or nodes (see --cpus-per-worker)\n",
                     spec->path, d->group_mark.line, d->group_mark.col, d->name, d->ranks,
                     d->cpus, d->cpus == 1 ? "" : "s", d->gpus, d->gpus == 1 ? "" : "s",
                     rpn, slots, size == 1 ? 1 : size - 1, size == 2 ? "" : "s", nnodes,
                     nnodes == 1 ? "" : "s");
            code = GR_EXIT_USAGE;
        }
    }
done:
    free (c);
    free (out);
    free (node);
    return code;
}

static int send_group (master_t *m, int r, const gr_group_cmd_t *g)
{
    size_t len = sizeof (gr_assign_hdr_t) + sizeof (*g);
    char *buf = malloc (len);
    if (!buf)
        return -1;
    gr_assign_hdr_t h = {.version = GR_PROTO_VERSION, .flags = GR_ASSIGN_GROUP};
    memcpy (buf, &h, sizeof (h));
    memcpy (buf + sizeof (h), g, sizeof (*g));
    if (gr_chan_send (m->ch, r, GR_TAG_ASSIGN, buf, len) < 0) {
        free (buf);
        return -1;
    }
    m->w[r].last_sent = gr_now ();
    return 0;
}

static group_t *group_find (master_t *m, uint64_t id)
{
    for (size_t i = 0; i < m->ngroups; i++) {
        if (m->groups[i]->a.id == id)
            return m->groups[i];
    }
    return NULL;
}

static void group_free (master_t *m, group_t *g)
{
    for (size_t i = 0; i < m->ngroups; i++) {
        if (m->groups[i] == g) {
            m->groups[i] = m->groups[--m->ngroups];
            break;
        }
    }
    if (m->pending == g)
        m->pending = NULL;
    free (g->pl);
    free (g);
}

/* Give the room of g's places back (processes that will not report). */
static void group_release (master_t *m, group_t *g, const gplace_t *p, uint32_t n)
{
    const gr_taskdef_t *d = &m->spec->tasks[g->a.def];
    wstate_t *w = &m->w[p->worker];
    w->busy_cpus -= (int64_t)n * d->cpus;
    w->busy_gpus -= (int64_t)n * d->gpus;
    w->gprocs -= n;
}

/* End g's attempt in the scheduler with result r (flags decide). */
static int group_complete (master_t *m, group_t *g, gr_result_rec_t *r, bool journal,
                           double now)
{
    gr_outcome_t o;
    r->id = g->a.id;
    r->member = 0;
    if (gr_sched_complete (m->sched, now, r, &o) < 0)
        return -1;
    g->completed = true;
    if (o.kind == GR_OUTCOME_STALE)
        return 0;
    int src = g->npl ? g->pl[0].worker : o.worker;
    if (!journal) {
        if (o.kind == GR_OUTCOME_FAILED) {
            GR_WARN ("task %s (%016" PRIx64 ") failed: %s", task_label (m, o.def, o.index),
                     o.key, o.reason);
            m->unplaceable++;
            return note_end (m, src, &o, r) < 0 || flush_ends (m) < 0 ? -1 : 0;
        }
        return 0; /* never started, never journaled */
    }
    if (report_outcome (m, src, &o, r, now) < 0 || flush_ends (m) < 0)
        return -1;
    return 0;
}

/* A group not yet started goes back to the queue (drain), keeping its
 * attempt number. */
static int group_unstart (master_t *m, group_t *g, double now)
{
    if (g->state == G_PREP) {
        for (uint32_t i = 0; i < g->npl; i++)
            group_release (m, g, &g->pl[i], g->pl[i].n);
    }
    gr_result_rec_t r = {.exit_code = -1, .flags = GR_RES_RETURNED};
    if (group_complete (m, g, &r, false, now) < 0)
        return -1;
    group_free (m, g);
    return 0;
}

/* Stop g's processes on every worker of it that still runs some. */
static int group_stop (master_t *m, group_t *g, int sig, double grace)
{
    gr_group_cmd_t c = {.op = GR_GROUP_STOP, .def = g->a.def, .id = g->a.id,
                        .key = g->a.key, .index = g->a.index, .attempt = g->a.attempt,
                        .signal = sig, .grace = grace};
    for (uint32_t i = 0; i < g->npl; i++) {
        const gplace_t *p = &g->pl[i];
        if (p->ended < p->n && !m->w[p->worker].lost && send_group (m, p->worker, &c) < 0)
            return -1;
    }
    return 0;
}

/* Every process of g has ended: its attempt ends. */
static int group_finish (master_t *m, group_t *g, double now)
{
    gr_result_rec_t r = g->sum;
    if (!g->completed) {
        r.exit_code = 0;
        r.signal = 0;
        r.flags = 0;
        if (g->failed) {
            r.exit_code = g->fail.exit_code;
            r.signal = g->fail.signal;
            r.flags = g->fail.flags;
        }
        else if (g->preempted)
            r.flags = GR_RES_KILLED;
        else if (g->returned)
            r.flags = GR_RES_RETURNED;
        if (group_complete (m, g, &r, true, now) < 0)
            return -1;
    }
    group_free (m, g);
    return 0;
}

static int group_member_end (master_t *m, int src, const gr_result_rec_t *r, double now)
{
    group_t *g = group_find (m, r->id);
    gplace_t *p = NULL;
    char sig[32];

    if (g && g->state == G_RUN) {
        for (uint32_t i = 0; i < g->npl && !p; i++) {
            if (g->pl[i].worker == src && r->member > g->pl[i].rank0
                && r->member <= g->pl[i].rank0 + g->pl[i].n)
                p = &g->pl[i];
        }
    }
    if (!p || p->ended >= p->n) {
        GR_DEBUG ("stale group process result %016" PRIx64 " from rank %d", r->id, src);
        return 0;
    }
    const gr_taskdef_t *d = &m->spec->tasks[g->a.def];
    p->ended++;
    g->ended++;
    group_release (m, g, p, 1);
    if (r->wall > g->sum.wall)
        g->sum.wall = r->wall;
    g->sum.utime += r->utime;
    g->sum.stime += r->stime;
    if (r->maxrss_kb > g->sum.maxrss_kb)
        g->sum.maxrss_kb = r->maxrss_kb;
    bool ok = !r->signal && !r->flags && gr_spec_success (d, r->exit_code);
    if (r->flags & GR_RES_KILLED)
        g->preempted = true;
    else if (r->flags & GR_RES_RETURNED)
        g->returned = true;
    else if (!ok && !g->failed && !g->completed) {
        char why[128];
        g->failed = true;
        g->fail = *r;
        gr_sched_describe (d, r->exit_code, r->signal, r->flags, why, sizeof (why));
        GR_WARN ("group %s rank %u on worker %d: %s; stopping its other processes "
                 "(SIGTERM, SIGKILL after %s)",
                 task_label (m, g->a.def, g->a.index), r->member - 1, src, why,
                 gr_fmt_duration (d->kill_grace, sig, sizeof (sig)));
        if (g->ended < d->ranks && group_stop (m, g, SIGTERM, d->kill_grace) < 0)
            return -1;
    }
    if (g->ended == d->ranks)
        return group_finish (m, g, now);
    return 0;
}

/* The worker of RANK 0 found a port: start every process. */
static int group_port (master_t *m, int src, const gr_result_rec_t *r, double now)
{
    group_t *g = group_find (m, r->id);
    if (!g || g->state != G_PREP || g->pl[0].worker != src) {
        GR_DEBUG ("stale port answer from rank %d", src);
        return 0;
    }
    const gr_taskdef_t *d = &m->spec->tasks[g->a.def];
    gr_jstart_t st = {.key = g->a.key, .index = g->a.index, .def = g->a.def,
                      .attempt = g->a.attempt};
    gr_jrec_t rec = {.type = GR_JREC_TASK_START, .time = gr_wallclock ()};
    rec.start.worker = (uint32_t)src;
    rec.start.n = 1;
    rec.start.tasks = &st;
    if (journal_put (m, &rec) < 0)
        return -1;
    if (r->exit_code <= 0) {
        /* No port: the attempt fails like a process that cannot start. */
        gr_result_rec_t f = {.exit_code = EADDRNOTAVAIL, .flags = GR_RES_SPAWN};
        for (uint32_t i = 0; i < g->npl; i++)
            group_release (m, g, &g->pl[i], g->pl[i].n);
        if (group_complete (m, g, &f, true, now) < 0)
            return -1;
        group_free (m, g);
        return 0;
    }
    gr_group_cmd_t c = {.op = GR_GROUP_START, .def = g->a.def, .id = g->a.id,
                        .key = g->a.key, .index = g->a.index, .attempt = g->a.attempt,
                        .world = d->ranks, .nnodes = g->nnodes, .port = (uint32_t)r->exit_code};
    snprintf (c.addr, sizeof (c.addr), "%s", g->addr);
    for (uint32_t i = 0; i < g->npl; i++) {
        const gplace_t *p = &g->pl[i];
        uint32_t lw = 0;
        for (uint32_t k = 0; k < g->npl; k++)
            lw += g->pl[k].node == p->node ? g->pl[k].n : 0;
        c.rank0 = p->rank0;
        c.nranks = p->n;
        c.local0 = p->local0;
        c.local_world = lw;
        c.node_rank = p->node;
        if (send_group (m, p->worker, &c) < 0)
            return -1;
        m->w[p->worker].reserved = false;
    }
    g->state = G_RUN;
    m->pending = NULL;
    GR_INFO ("group %s attempt %u: %u process%s on %u node%s, MASTER_ADDR=%s "
             "MASTER_PORT=%d", task_label (m, g->a.def, g->a.index), g->a.attempt, d->ranks,
             d->ranks == 1 ? "" : "es", g->nnodes, g->nnodes == 1 ? "" : "s", g->addr,
             r->exit_code);
    return 0;
}

/* A worker was lost: the groups it held end (they run again), and the
 * rest of their processes are stopped. */
static int group_lost (master_t *m, int rank, double now)
{
    for (size_t i = 0; i < m->ngroups;) {
        group_t *g = m->groups[i];
        const gr_taskdef_t *d = &m->spec->tasks[g->a.def];
        bool hit = false;
        for (uint32_t k = 0; k < g->npl; k++)
            hit = hit || g->pl[k].worker == rank;
        if (!hit || g->state == G_RESERVE) {
            i++;
            continue;
        }
        if (g->state == G_PREP) {
            if (group_unstart (m, g, now) < 0)
                return -1;
            continue;
        }
        for (uint32_t k = 0; k < g->npl; k++) {
            gplace_t *p = &g->pl[k];
            if (p->worker == rank && p->ended < p->n) {
                g->ended += p->n - p->ended;
                p->ended = p->n;
            }
        }
        if (!g->completed) {
            gr_result_rec_t r = {.exit_code = -1, .flags = GR_RES_KILLED};
            GR_WARN ("group %s lost worker %d: stopping its other processes; it runs "
                     "again", task_label (m, g->a.def, g->a.index), rank);
            if (group_complete (m, g, &r, true, now) < 0
                || group_stop (m, g, SIGTERM, d->kill_grace) < 0)
                return -1;
        }
        if (g->ended == d->ranks) {
            group_free (m, g);
            continue;
        }
        i++;
    }
    return 0;
}

static int group_drain (master_t *m, double now)
{
    return m->pending ? group_unstart (m, m->pending, now) : 0;
}

/* Place the next group: take it from the scheduler, plan, wait for room,
 * then PREP.  Returns 1 if something moved, 0 if not, -1 on error. */
static int group_dispatch (master_t *m, double now)
{
    group_t *g = m->pending;
    if (!g) {
        gr_assign_rec_t rec;
    double max_duration = m->deadline > 0 ? m->deadline - now : HUGE_VAL;
        int rc = gr_sched_next_placed (m->sched, now, -1, UINT32_MAX, UINT32_MAX, 0,
                                       max_duration, m->gelig, &rec);
        if (rc <= 0)
            return rc;
        group_t **ng = gr_grow (m->groups, &m->capgroups, m->ngroups, sizeof (*ng), 8);
        if (!ng)
            return -1;
        m->groups = ng;
        if (!(g = calloc (1, sizeof (*g))))
            return -1;
        g->a = rec;
        g->state = G_RESERVE;
        g->since = now;
        m->groups[m->ngroups++] = g;
        m->pending = g;
    }
    if (g->state != G_RESERVE)
        return 0;
    for (int r = 0; r < m->size; r++)
        m->w[r].reserved = false;
    if (group_plan (m, g, false) == 0) {
        if (group_plan (m, g, true) > 0)
            return 0; /* room once a quarantine ends */
        gr_result_rec_t r = {.exit_code = 0, .flags = GR_RES_UNPLACED};
        if (group_complete (m, g, &r, false, now) < 0)
            return -1;
        group_free (m, g);
        return 1;
    }
    const gr_taskdef_t *d = &m->spec->tasks[g->a.def];
    bool ready = true;
    for (uint32_t i = 0; i < g->npl; i++) {
        wstate_t *w = &m->w[g->pl[i].worker];
        w->reserved = true;
        if (fit_procs (d, (int64_t)w->info.cpus - w->busy_cpus,
                       (int64_t)w->info.gpus - w->busy_gpus) < g->pl[i].n)
            ready = false;
    }
    if (!ready)
        return 0;
    /* Room for all: hold it, and ask RANK 0's worker for a port. */
    int r0 = g->pl[0].worker;
    bool one_host = true;
    for (uint32_t i = 0; i < g->npl; i++) {
        wstate_t *w = &m->w[g->pl[i].worker];
        w->busy_cpus += (int64_t)g->pl[i].n * d->cpus;
        w->busy_gpus += (int64_t)g->pl[i].n * d->gpus;
        w->gprocs += g->pl[i].n;
        one_host = one_host && w->node == m->w[r0].node;
    }
    snprintf (g->addr, sizeof (g->addr), "%s", one_host ? "127.0.0.1" : m->w[r0].info.addr);
    if (gr_sched_set_worker (m->sched, g->a.id, r0) < 0)
        return -1;
    gr_group_cmd_t c = {.op = GR_GROUP_PREP, .def = g->a.def, .id = g->a.id,
                        .key = g->a.key, .index = g->a.index, .attempt = g->a.attempt};
    snprintf (c.addr, sizeof (c.addr), "%s", g->addr);
    if (send_group (m, r0, &c) < 0)
        return -1;
    g->state = G_PREP;
    return 1;
}

/* Journal the starts of the n tasks in recs, handed to worker: a plain
 * start (gr_jstart_plain) counts in the entry before it (plain_after,
 * format version 3) instead of an entry of its own. */
static int journal_starts (master_t *m, int worker, const gr_assign_rec_t *recs, uint32_t n)
{
    _Static_assert (GR_PROTO_MAX_BATCH <= GR_JOURNAL_PLAIN_MAX, "a batch fits plain_after");
    gr_jstart_t starts[GR_PROTO_MAX_BATCH];
    bool plain = m->jplain;
    uint32_t ns = 0;
    for (uint32_t i = 0; i < n;) {
        const gr_assign_rec_t *a = &recs[i++];
        uint64_t next = a->index + 1;
        while (plain && i < n
               && gr_jstart_plain (recs[i].index, recs[i].def, recs[i].attempt, next, a->def)) {
            next++;
            i++;
        }
        starts[ns++] = (gr_jstart_t){.key = a->key, .index = a->index, .def = a->def,
                                     .attempt = a->attempt,
                                     .plain_after = (uint32_t)(next - a->index - 1)};
    }
    gr_jrec_t rec = {.type = GR_JREC_TASK_START, .time = gr_wallclock ()};
    rec.start.worker = (uint32_t)worker;
    rec.start.n = ns;
    rec.start.tasks = starts;
    return journal_put (m, &rec);
}

static int dispatch_pass (master_t *m, double now, int pass)
{
    gr_assign_rec_t recs[GR_PROTO_MAX_BATCH];
    double max_duration = m->deadline > 0 ? m->deadline - now : HUGE_VAL;
    int did = 0;

    for (int r = 0; r < m->size; r++) {
        wstate_t *w = &m->w[r];
        if (!live (w) || w->shutdown_sent || w->quarantined || w->reserved)
            continue;
        const uint8_t *el = eligible (m, r, pass);
        int64_t left = credit (w);
        if (w->gprocs > 0 && left > (int64_t)w->info.cpus - w->busy_cpus) {
            /* A group runs here: no queue of tasks behind it, which other
             * workers could run sooner. */
            left = (int64_t)w->info.cpus - w->busy_cpus;
        }
        while (left > 0) {
            uint32_t n = 0;
            uint32_t max = left < GR_PROTO_MAX_BATCH ? (uint32_t)left
                                                     : GR_PROTO_MAX_BATCH;
            while (n < max) {
                int rc = gr_sched_next_placed (m->sched, now, r, w->info.cpus, w->info.gpus,
                                               w->info.mem, max_duration, el, &recs[n]);
                if (rc < 0)
                    return -1;
                if (rc == 0)
                    break;
                w->busy_cpus += m->spec->tasks[recs[n].def].cpus;
                w->busy_gpus += m->spec->tasks[recs[n].def].gpus;
                n++;
            }
            if (n == 0)
                break;
            if (m->journal && journal_starts (m, r, recs, n) < 0)
                return -1;
            if (send_assign (m, w, recs, n, 0, 0) < 0)
                return -1;
            left -= n;
            did++;
        }
    }
    return did;
}

static int dispatch (master_t *m, double now)
{
    int gdid = m->any_group ? group_dispatch (m, now) : 0;
    if (gdid < 0)
        return -1;
    int did = dispatch_pass (m, now, 0), more;
    if (did >= 0)
        did += gdid;
    if (did < 0 || !m->place || !m->place->any_prefer)
        return did;
    find_spill (m);
    if ((more = dispatch_pass (m, now, 1)) < 0)
        return -1;
    return did + more;
}

/* Fail the tasks no usable worker can take (their spread lost its
 * domains, or the nodes their require: matched are lost) once nothing has
 * run for a moment and every worker asks for work in vain. */
static void journal_unplaceable (const gr_outcome_t *o, void *arg)
{
    master_t *m = arg;
    GR_WARN ("task %s (%016" PRIx64 ") failed: %s", task_label (m, o->def, o->index),
             o->key, o->reason);
    if (note_end (m, o->worker, o, NULL) < 0)
        GR_ERROR ("cannot journal a failed task");
    m->unplaceable++;
}

static int check_stalled (master_t *m, double now, bool idle_now)
{
    const gr_sched_stats_t *st = gr_sched_stats (m->sched);
    double nr = gr_sched_next_retry (m->sched);
    bool hungry = true;

    if (!m->place || m->draining || !idle_now || st->running > 0
        || (nr > 0 && nr > now) || (m->place->quar && gr_quar_count (m->place->quar))) {
        m->stalled_since = 0;
        return 0;
    }
    for (int r = 0; r < m->size && hungry; r++) {
        const wstate_t *w = &m->w[r];
        if (live (w) && !w->shutdown_sent && credit (w) <= 0)
            hungry = false;
    }
    if (!hungry || st->waiting == 0) {
        m->stalled_since = 0;
        return 0;
    }
    if (m->stalled_since == 0) {
        m->stalled_since = now;
        return 0;
    }
    if (now - m->stalled_since < 0.5)
        return 0;
    m->stalled_since = 0;
    if (gr_sched_fail_unplaceable (m->sched, journal_unplaceable, m) < 0
        || flush_ends (m) < 0)
        return -1;
    return 0;
}

/* Whether some worker has asked for work it was not given. */
static bool any_credit (const master_t *m)
{
    for (int r = 0; r < m->size; r++) {
        const wstate_t *w = &m->w[r];
        if (live (w) && !w->shutdown_sent && credit (w) > 0)
            return true;
    }
    return false;
}

static int send_all (master_t *m, uint32_t flags, double drain_in)
{
    for (int r = 0; r < m->size; r++) {
        wstate_t *w = &m->w[r];
        if (!live (w) || w->shutdown_sent)
            continue;
        if (send_assign (m, w, NULL, 0, flags, drain_in) < 0)
            return -1;
        if (flags & GR_ASSIGN_SHUTDOWN)
            w->shutdown_sent = true;
    }
    return 0;
}

static int begin_drain (master_t *m, double now, double drain_in, int reason)
{
    char b[32], d[32];
    if (drain_in < 0)
        drain_in = 0;
    if (!m->draining) {
        gr_jrec_t rec = {.type = GR_JREC_DRAIN, .time = gr_wallclock ()};
        rec.drain.reason = reason;
        rec.drain.deadline = rec.time + drain_in;
        if (journal_put (m, &rec) < 0 || journal_sync (m) < 0)
            return -1;
        if (reason > 0)
            GR_WARN ("%s: draining; running tasks have %s to finish",
                     gr_signal_name (reason, b, sizeof (b)),
                     gr_fmt_duration (drain_in, d, sizeof (d)));
        else
            GR_WARN ("the deadline is near: draining; running tasks have %s",
                     gr_fmt_duration (drain_in, d, sizeof (d)));
        gr_obs_drain (m->obs, reason > 0 ? gr_signal_name (reason, b, sizeof (b)) : "deadline",
                      drain_in);
    }
    else
        GR_WARN ("second signal: running tasks are stopped now");
    m->draining = true;
    m->drain_end = now + drain_in;
    if (group_drain (m, now) < 0)
        return -1;
    return send_all (m, GR_ASSIGN_DRAIN, drain_in);
}

/* The Slurm job's end time, when no --deadline is given.
 *
 * squeue, not `scontrol show job`: it prints the one field asked for,
 * where scontrol prints every field of the job, free text among them
 * (Comment, Command, WorkDir) that can hold " EndTime=" itself; both cost
 * slurmctld the same one job-info request.  SLURM_TIME_FORMAT=standard
 * pins the format: a user's "relative" or strftime format would change
 * what %e prints.  A hung slurmctld must not hang the run: squeue gets
 * SLURM_QUERY_TIMEOUT seconds, then SIGKILL. */
#define SLURM_QUERY_TIMEOUT 10.0

static gr_exec_cmd_t *end_query_start (gr_exec_t *ex, gr_error_t *errp)
{
    const char *job = gr_slurm_job_id ();
    char *argv[] = {"squeue", "--noheader", "--jobs", (char *)(job ? job : "?"),
                    "--format", "%e", NULL};
    char *env[] = {"SLURM_TIME_FORMAT=standard", NULL};
    return gr_exec_cmd_start (ex, argv, env, SLURM_QUERY_TIMEOUT, errp);
}

/* The answer of a query that ended with rc (gr_exec_cmd_poll): 0 and *end
 * (epoch seconds; 0: Slurm sets no end time), or -1 with errp. */
static int end_query_result (gr_exec_cmd_t *q, int rc, double *end, gr_error_t *errp)
{
    char line[128];
    gr_error_t perr;

    *end = 0;
    if (rc < 0)
        return -1;
    /* The last line: where several clusters are asked (SLURM_CLUSTERS),
     * squeue puts a "CLUSTER: name" line before it. */
    gr_exec_cmd_last_line (q, line, sizeof (line));
    if (!*line)
        return gr_errprintf (errp, "squeue printed no end time for the job");
    if (gr_slurm_parse_end_time (line, end, &perr) < 0)
        return gr_errprintf (errp, "squeue's answer: %s", perr.text);
    return 0;
}

/* Epoch seconds as local YYYY-mm-ddTHH:MM:SS, as Slurm shows times. */
static const char *fmt_time (double t, char *buf, size_t len)
{
    return gr_fmt_localtime (t, "%Y-%m-%dT%H:%M:%S", buf, (int)len);
}

/* When the run must end, for opts->slurm_deadline: SLURM_JOB_END_TIME's
 * time, else squeue's answer; 0 for none.  Rank 0 asks once, at the
 * start, while the workers wait for the spec.  Every outcome is logged;
 * a failure is a warning that says what to do (*warned), and the run
 * goes on without a deadline.  *reread: whether asking again later makes
 * sense (not where squeue is missing). */
static double slurm_deadline (const gr_run_opts_t *opts, bool *reread, bool *warned)
{
    const char *job = gr_slurm_job_id ();
    gr_exec_t *ex = NULL;
    gr_exec_cmd_t *q = NULL;
    gr_error_t err;
    double end = 0;
    char b[32], d[32];
    int rc = -1;

    *reread = true;
    *warned = false;
    if (opts->deadline > 0) {
        GR_INFO ("the run ends by %s (in %s): the end time of Slurm job %s, from "
                 "SLURM_JOB_END_TIME", fmt_time (opts->deadline, b, sizeof (b)),
                 gr_fmt_duration (opts->deadline - gr_wallclock (), d, sizeof (d)), job);
        return opts->deadline;
    }
    if ((ex = gr_exec_create (&err)) && (q = end_query_start (ex, &err)))
        rc = end_query_result (q, gr_exec_cmd_wait (q, &err), &end, &err);
    else
        *reread = errno != ENOENT;
    if ((*warned = rc < 0))
        GR_WARN ("cannot learn when Slurm job %s ends: %s.  The run has no walltime "
                 "deadline from Slurm: it will not drain before the job's time limit, "
                 "which may kill tasks mid-run.  Give --deadline (the job's end time, "
                 "or +DURATION) to set one", job, err.text);
    else if (end > 0)
        GR_INFO ("the run ends by %s (in %s): the end time of Slurm job %s, from squeue",
                 fmt_time (end, b, sizeof (b)),
                 gr_fmt_duration (end - gr_wallclock (), d, sizeof (d)), job);
    else
        GR_INFO ("Slurm job %s has no end time (squeue): the run has no walltime deadline",
                 job);
    gr_exec_cmd_destroy (q);
    gr_exec_destroy (ex);
    return end;
}

/* Ask Slurm for the job's end time again, every opts->slurm_reread
 * seconds, so that a changed time limit (scontrol update JobId=...
 * TimeLimit=...) moves the deadline.  Never blocks the loop: squeue runs
 * in the background and each pass only looks whether it has answered.
 * "No end time" and failures leave the deadline as it is; the first
 * failure is a warning (unless the first query at the start already
 * warned), later ones are debug lines. */
static void slurm_reread (master_t *m, double now)
{
    gr_error_t err;
    double end;
    char b[32], d[32];
    int rc;

    if (!m->slurm_q) {
        if (now < m->slurm_next)
            return;
        m->slurm_next = now + m->opts->slurm_reread;
        if (!(m->slurm_q = end_query_start (m->slurm_ex, &err))) {
            if (errno == ENOENT)
                m->slurm_next = 0;
            goto failed;
        }
    }
    if ((rc = gr_exec_cmd_poll (m->slurm_q, &err)) == 0)
        return;
    rc = end_query_result (m->slurm_q, rc, &end, &err);
    gr_exec_cmd_destroy (m->slurm_q);
    m->slurm_q = NULL;
    if (rc < 0)
        goto failed;
    if (end <= 0)
        return;
    double dl = now + (end - gr_wallclock ());
    if (m->deadline > 0 && fabs (dl - m->deadline) < 1)
        return;
    GR_WARN ("Slurm job %s now ends at %s (in %s): the run's deadline moves there",
             gr_slurm_job_id (), fmt_time (end, b, sizeof (b)),
             gr_fmt_duration (end - gr_wallclock (), d, sizeof (d)));
    m->deadline = dl;
    return;
failed:
    if (!m->slurm_failed)
        GR_WARN ("cannot read the end time of Slurm job %s again: %s; the deadline stays "
                 "as it is%s", gr_slurm_job_id (), err.text,
                 m->slurm_next > 0 ? " (asking again later)" : "");
    else
        GR_DEBUG ("cannot read the end time of Slurm job %s again: %s", gr_slurm_job_id (),
                  err.text);
    m->slurm_failed = true;
}

/* Stop the run for io_fail: as a drain with no grace, without journaling
 * it (the journal is what cannot be written). */
static int io_stop (master_t *m, double now)
{
    m->io_stopped = true;
    if (m->draining && m->drain_end <= now)
        return 0;
    m->draining = true;
    m->drain_end = now;
    gr_obs_drain (m->obs, "the run directory cannot be written", 0);
    if (group_drain (m, now) < 0)
        return -1;
    return send_all (m, GR_ASSIGN_DRAIN, 0);
}

static void journal_requeued (const gr_outcome_t *o, void *arg)
{
    master_t *m = arg;
    if (note_end (m, o->worker, o, NULL) < 0)
        GR_ERROR ("cannot journal a requeued task");
}

static int check_lost (master_t *m, double now)
{
    for (int r = 0; r < m->size; r++) {
        wstate_t *w = &m->w[r];
        if (!live (w) || r == 0 || now - w->last_heard < m->opts->lost_after)
            continue;
        w->lost = true;
        m->nlost++;
        gr_sched_set_usable (m->sched, r, false);
        finalize_ok = false;
        gr_chan_cancel_dest (m->ch, r);
        if (group_lost (m, r, now) < 0)
            return -1;
        int n = gr_sched_requeue_worker (m->sched, r, journal_requeued, m);
        if (n < 0 || flush_ends (m) < 0)
            return -1;
        gr_jrec_t rec = {.type = GR_JREC_WORKER_LOST, .time = gr_wallclock ()};
        rec.lost.rank = (uint32_t)r;
        if (journal_put (m, &rec) < 0 || journal_sync (m) < 0)
            return -1;
        GR_WARN ("worker %d on %s is lost (silent for %.0fs); its %d task%s run "
                 "elsewhere", r, w->info.host, now - w->last_heard, n, n == 1 ? "" : "s");
        gr_obs_worker_lost (m->obs, r, (uint64_t)n);
    }
    return 0;
}

/* The name and params of row r, as the spec gives them ("?" and "" for a
 * row the spec does not have), valid until the next expansion. */
static void row_strings (master_t *m, const gr_task_row_t *r, const char **name,
                         const char **params)
{
    *name = "?";
    *params = "";
    if (r->def < m->spec->ntasks && r->index < m->spec->tasks[r->def].count
        && gr_expand_select (m->x, &m->spec->tasks[r->def], r->index) == 0) {
        *name = gr_expand_name (m->x);
        *params = gr_expand_params_string (m->x);
    }
}

/* The snapshot: everything the task table knows, plus counts and metrics. */
static int write_snapshot (master_t *m, const char *state)
{
    char path[PATH_MAX];
    gr_error_t err;
    const gr_task_row_t *rows;
    size_t nrows = gr_sched_rows (m->sched, &rows);
    const gr_sched_stats_t *st = gr_sched_stats (m->sched);
    gr_snap_meta_t meta = {.job = m->spec->name, .spec_hash = m->spec->hash,
                           .spec_path = m->spec->path, .run_dir = m->run_dir,
                           .version = PACKAGE_VERSION, .incarnation = m->incarnation,
                           .started = m->started_wall, .state = state};
    enum { BATCH = 1024 };
    gr_snap_task_t *batch = NULL;
    char *names = NULL;
    size_t namecap = BATCH * 96;
    gr_snap_t *s;

    /* The longest strings first (a second expansion of every row): known,
     * short ones make fixed-length columns, which cost the file no heap
     * object a row.  At 4 million rows that halved the file. */
    meta.sizes_known = true;
    for (size_t i = 0; i < nrows; i++) {
        const char *name, *params;
        row_strings (m, &rows[i], &name, &params);
        size_t nl = strlen (name), pl = strlen (params);
        meta.name_max = nl > meta.name_max ? nl : meta.name_max;
        meta.params_max = pl > meta.params_max ? pl : meta.params_max;
        if (meta.name_max > GR_SNAP_FIXED_MAX && meta.params_max > GR_SNAP_FIXED_MAX)
            break;
    }
    for (int r = 0; r < m->size; r++) {
        size_t hl = strlen (m->w[r].info.host);
        meta.host_max = hl > meta.host_max ? hl : meta.host_max;
    }
    gr_rundir_file (m->run_dir, "run.h5", path, sizeof (path));
    if (!(s = gr_snap_begin (path, &meta, &err)))
        goto error;
    if (!(batch = calloc (BATCH, sizeof (*batch))) || !(names = malloc (namecap))) {
        gr_errprintf (&err, "out of memory writing the snapshot");
        goto error;
    }
    for (size_t i = 0; i < nrows; i += BATCH) {
        size_t n = nrows - i < BATCH ? nrows - i : BATCH;
        size_t used = 0;
        size_t offs[BATCH][2];
        for (size_t k = 0; k < n; k++) {
            const gr_task_row_t *r = &rows[i + k];
            const char *name, *params;
            row_strings (m, r, &name, &params);
            size_t nl = strlen (name) + 1, pl = strlen (params) + 1;
            char *nn = gr_grow_to (names, &namecap, used + nl + pl, 1, BATCH * 96);
            if (!nn) {
                gr_errprintf (&err, "out of memory writing the snapshot");
                goto error;
            }
            names = nn;
            offs[k][0] = used;
            memcpy (names + used, name, nl);
            used += nl;
            offs[k][1] = used;
            memcpy (names + used, params, pl);
            used += pl;
            int wk = r->worker < m->size ? r->worker : 0;
            batch[k] = (gr_snap_task_t){
                .key = r->key, .state = r->state, .attempts = r->attempts,
                .exit_code = gr_task_row_exit (r), .signal = r->signal, .wall = r->wall,
                .maxrss_kb = r->maxrss_kb, .host = m->w[wk].info.host,
                .worker = r->attempts ? r->worker : -1};
        }
        for (size_t k = 0; k < n; k++) {
            batch[k].name = names + offs[k][0];
            batch[k].params = names + offs[k][1];
        }
        if (gr_snap_add_tasks (s, batch, n, &err) < 0)
            goto error;
    }
    gr_snap_worker_t *ws = calloc ((size_t)m->size, sizeof (*ws));
    size_t nw = 0;
    if (!ws) {
        gr_errprintf (&err, "out of memory writing the snapshot");
        goto error;
    }
    for (int r = 0; r < m->size; r++) {
        if (m->w[r].rank < 0)
            continue;
        ws[nw++] = (gr_snap_worker_t){.rank = r, .host = m->w[r].info.host,
                                      .cpus = m->w[r].info.cpus,
                                      .gpus = m->w[r].info.gpus, .lost = m->w[r].lost};
    }
    int rc = gr_snap_set_workers (s, ws, nw, &err);
    free (ws);
    if (rc < 0)
        goto error;
    gr_snap_counts_t c = {.total = st->total, .done = st->done, .failed = st->failed,
                          .poison = st->poison, .skipped = st->skipped,
                          .running = st->running, .waiting = st->waiting,
                          .retries = st->retries, .timeouts = st->timeouts,
                          .crashes = st->crashes, .attempts = st->attempts,
                          .duplicates = st->duplicates};
    double wall = gr_now () - m->t_start;
    if (gr_snap_set_counts (s, &c, &err) < 0
        || gr_snap_add_metric (s, "wall_seconds", wall, &err) < 0
        || gr_snap_add_metric (s, "throughput", wall > 0 ? st->attempts / wall : 0, &err) < 0
        || gr_snap_add_metric (s, "busy_seconds", st->busy_seconds, &err) < 0
        || gr_snap_add_metric (s, "cpu_seconds", st->cpu_seconds, &err) < 0
        || gr_snap_add_metric (s, "utilization",
                               wall > 0 && m->total_cpus
                                   ? st->busy_seconds / (wall * (double)m->total_cpus) : 0,
                               &err) < 0)
        goto error;
    if (m->journal) {
        gr_journal_stats_t js;
        gr_journal_get_stats (m->journal, &js);
        if (gr_snap_add_metric (s, "journal_syncs", (double)js.syncs, &err) < 0
            || gr_snap_add_metric (s, "journal_bytes", (double)js.bytes, &err) < 0)
            goto error;
    }
    free (batch);
    free (names);
    batch = NULL;
    names = NULL;
    if (gr_snap_commit (s, &err) < 0) {
        s = NULL; /* commit frees it either way */
        goto error;
    }
    return 0;
error:
    GR_ERROR ("snapshot not written: %s", err.text);
    gr_snap_abort (s);
    free (batch);
    free (names);
    return -1;
}

/* Collect a finished snapshot writer; with wait, wait for it. */
static void snapshot_reap (master_t *m, bool wait)
{
    int status;
    struct rusage ru;
    if (m->snap_pid <= 0)
        return;
    pid_t p;
    /* The drain signals' handlers interrupt a wait (no SA_RESTART): a
     * signal during the last snapshot must not end the wait for it. */
    while ((p = wait4 (m->snap_pid, &status, wait ? 0 : WNOHANG, &ru)) < 0 && errno == EINTR)
        ;
    if (p == 0)
        return;
    if (p == m->snap_pid) {
        m->snap_seconds = gr_now () - m->snap_started;
        m->snap_rss_mib = (double)ru.ru_maxrss / 1024.0;
        if (WIFEXITED (status) && WEXITSTATUS (status) == 0)
            gr_obs_snapshot (m->obs, m->snap_state, m->snap_seconds);
        if (!WIFEXITED (status) || WEXITSTATUS (status) != 0)
            GR_ERROR ("the run.h5 snapshot writer failed (%s %d); the previous "
                      "snapshot is kept", WIFSIGNALED (status) ? "signal" : "status",
                      WIFSIGNALED (status) ? WTERMSIG (status) : WEXITSTATUS (status));
    }
    m->snap_pid = 0;
}

/* Write run.h5.  A forked child does the writing, from a copy-on-write
 * view of the task table: the master goes on dispatching, and HDF5's
 * memory never lands in the master.  The child never calls MPI.  When the
 * master also runs a worker, whose reaping would take the child, the
 * snapshot is written in place instead.  With wait, return after it is
 * committed. */
static int snapshot (master_t *m, const char *state, bool wait)
{
    if (m->snap_pid > 0) {
        if (!wait)
            return 0; /* the last one is still being written */
        snapshot_reap (m, true);
    }
    m->last_snapshot = gr_now ();
    m->snap_state = state;
    if (m->alone) {
        double t0 = gr_now ();
        int rc = write_snapshot (m, state);
        m->snap_seconds = gr_now () - t0;
        if (rc == 0)
            gr_obs_snapshot (m->obs, state, m->snap_seconds);
        return rc;
    }
    fflush (NULL);
    pid_t pid = fork ();
    if (pid < 0) {
        GR_WARN ("cannot fork the snapshot writer (%s); writing it in place",
                 strerror (errno));
        return write_snapshot (m, state);
    }
    if (pid == 0)
        _exit (write_snapshot (m, state) == 0 ? 0 : 1);
    m->snap_pid = pid;
    m->snap_started = gr_now ();
    if (wait)
        snapshot_reap (m, true);
    return 0;
}

static void summary (master_t *m, double wall, int code, FILE *f)
{
    const gr_sched_stats_t *st = gr_sched_stats (m->sched);
    const gr_slow_task_t *slow;
    const gr_outcome_t *fails;
    char b1[32];
    int nslow = gr_sched_slowest (m->sched, &slow);
    int nfail = gr_sched_failures (m->sched, &fails);
    double util = wall > 0 && m->total_cpus > 0
                      ? 100.0 * st->busy_seconds / (wall * (double)m->total_cpus)
                      : 0;
    const char *how = code == GR_EXIT_RESUMABLE ? "drained (resumable: run it again)"
                      : code == GR_EXIT_IO
                          ? "stopped: its run directory cannot be written (resumable: free "
                            "space, then run it again)"
                      : st->failed || st->skipped ? "finished with failures"
                                                  : "finished";

    fprintf (f, "gridrun: job '%s' %s in %s\n", m->spec->name, how,
             gr_fmt_duration (wall, b1, sizeof (b1)));
    fprintf (f, "  tasks       %" PRIu64 ": %" PRIu64 " done, %" PRIu64 " failed",
             st->total, st->done, st->failed);
    if (st->poison)
        fprintf (f, " (%" PRIu64 " poison)", st->poison);
    fprintf (f, ", %" PRIu64 " skipped", st->skipped);
    if (code == GR_EXIT_RESUMABLE || code == GR_EXIT_IO)
        fprintf (f, ", %" PRIu64 " left", st->total - st->done - st->failed - st->skipped);
    fprintf (f, "\n");
    if (m->incarnation > 1)
        fprintf (f, "  resumed     incarnation %u: %" PRIu64 " done before, %" PRIu64
                 " duplicate completions ignored\n",
                 m->incarnation, st->resumed_done, st->duplicates);
    if (gr_slurm_job_id ())
        fprintf (f, "  slurm       job %s, restart %" PRIu32 ", nodes %s\n", gr_slurm_job_id (),
                 gr_slurm_restart_count (),
                 gr_slurm_nodelist () ? gr_slurm_nodelist () : "?");
    fprintf (f, "  attempts    %" PRIu64 ": %" PRIu64 " retried, %" PRIu64
             " timed out, %" PRIu64 " crashed",
             st->attempts, st->retries, st->timeouts, st->crashes);
    if (st->requeued)
        fprintf (f, ", %" PRIu64 " requeued", st->requeued);
    fprintf (f, "\n");
    fprintf (f, "  throughput  %.1f tasks/s on %d worker%s (%" PRIu64
             " cpus), %.0f%% busy\n",
             wall > 0 ? (double)st->attempts / wall : 0.0, m->nworkers,
             m->nworkers == 1 ? "" : "s", m->total_cpus, util);
    if (m->nlost)
        fprintf (f, "  lost        %d worker%s\n", m->nlost, m->nlost == 1 ? "" : "s");
    if (gr_chaos_on ()) {
        char spec[GR_CHAOS_SPEC_MAX];
        uint64_t held = m->chaos_result_delays + m->chaos_assign_delays;
        uint64_t jf = m->chaos_journal[0] + m->chaos_journal[1];
        if (gr_chaos_format (gr_chaos_current (), spec, sizeof (spec)) < 0)
            snprintf (spec, sizeof (spec), "?");
        fprintf (f, "  chaos       %s\n", spec);
        fprintf (f, "  injected    %" PRIu64 " task%s killed, %" PRIu64 " message%s held back "
                 "(%" PRIu64 " of results, %" PRIu64 " of tasks), %" PRIu64 " journal write%s "
                 "failed; a worker that killed itself counts as lost\n",
                 m->chaos_task_kills, m->chaos_task_kills == 1 ? "" : "s", held,
                 held == 1 ? "" : "s", m->chaos_result_delays, m->chaos_assign_delays, jf,
                 jf == 1 ? "" : "s");
    }
    if (m->place && m->place->cluster) {
        const gr_cluster_t *c = m->place->cluster;
        static const char *const src[] = {"site file", "Slurm topology", "one rack per node"};
        size_t nz = gr_cluster_ndomains (c, GR_DOM_ZONE), nr = gr_cluster_ndomains (c, GR_DOM_RACK),
               nn = gr_cluster_ndomains (c, GR_DOM_NODE);
        fprintf (f, "  domains     %zu zone%s, %zu rack%s, %zu node%s (%s)", nz,
                 nz == 1 ? "" : "s", nr, nr == 1 ? "" : "s", nn, nn == 1 ? "" : "s",
                 src[gr_cluster_source (c)]);
        if (m->quarantines)
            fprintf (f, "; %" PRIu64 " quarantine%s", m->quarantines,
                     m->quarantines == 1 ? "" : "s");
        if (m->unplaceable)
            fprintf (f, "; %" PRIu64 " task%s could not be placed", m->unplaceable,
                     m->unplaceable == 1 ? "" : "s");
        fprintf (f, "\n");
    }
    if (nslow > 0) {
        fprintf (f, "  slowest    ");
        for (int i = 0; i < nslow; i++)
            fprintf (f, " %s %s%s", task_label (m, slow[i].def, slow[i].index),
                     gr_fmt_duration (slow[i].wall, b1, sizeof (b1)),
                     i + 1 < nslow ? "," : "\n");
    }
    for (int i = 0; i < nfail && i < 10; i++)
        fprintf (f, "  failed      %s (%016" PRIx64 "): %s, attempt %u\n",
                 task_label (m, fails[i].def, fails[i].index), fails[i].key,
                 fails[i].reason, fails[i].attempt);
    if (st->failed > 10)
        fprintf (f, "  failed      ... and %" PRIu64 " more\n", st->failed - 10);
    if (m->journal) {
        gr_journal_stats_t js;
        gr_journal_get_stats (m->journal, &js);
        fprintf (f, "  journal     %" PRIu64 " records, %" PRIu64 " syncs (%.1f/s)\n",
                 js.records, js.syncs, wall > 0 ? js.syncs / wall : 0.0);
    }
    struct rusage ru;
    if (getrusage (RUSAGE_SELF, &ru) == 0) {
        fprintf (f, "  master      peak RSS %.1f MiB, CPU %.3f s in the run",
                 (double)ru.ru_maxrss / 1024.0, m->cpu_run);
        if (st->attempts)
            fprintf (f, " (%.0f ns a task)", m->cpu_run / (double)st->attempts * 1e9);
        fprintf (f, "\n");
    }
    if (code == GR_EXIT_IO)
        fprintf (f, "  snapshot    %s/run.h5 (not rewritten at the end)\n", m->run_dir);
    else {
        fprintf (f, "  snapshot    %s/run.h5 (written in %s", m->run_dir,
                 gr_fmt_duration (m->snap_seconds, b1, sizeof (b1)));
        if (m->snap_rss_mib > 0)
            fprintf (f, " by a writer of peak RSS %.1f MiB", m->snap_rss_mib);
        fprintf (f, ")\n");
    }
    fprintf (f, "  output      %s/out  (gridrun output %s TASK)\n", m->run_dir,
             m->run_dir);
}

static int write_summary (master_t *m, double wall, int code)
{
    char path[PATH_MAX];
    char *text = NULL;
    size_t len = 0;
    gr_error_t err;
    FILE *f = open_memstream (&text, &len);
    if (!f)
        return -1;
    summary (m, wall, code, f);
    fclose (f);
    if (gr_write_file_atomic (gr_rundir_file (m->run_dir, "summary.txt", path, sizeof (path)),
                              text, len, 0600, &err) < 0)
        GR_ERROR ("%s", err.text);
    if (!m->opts->quiet)
        fwrite (text, 1, len, stdout);
    fflush (stdout);
    free (text);
    return 0;
}

/* The outcome goes into a file: mpirun's own exit code cannot be trusted
 * (with --enable-recovery it is always 0). */
static int write_exit_status (const char *run_dir, int code)
{
    char path[PATH_MAX], num[16];
    gr_error_t err;
    int n = snprintf (num, sizeof (num), "%d\n", code);
    if (gr_write_file_atomic (gr_rundir_file (run_dir, "exit_status", path, sizeof (path)),
                              num, (size_t)n, 0600, &err) < 0) {
        GR_ERROR ("%s", err.text);
        return -1;
    }
    return 0;
}

/* Rank 0: the failure domains of the workers, and what the spec's
 * placement keys make of them.  Returns 0 or an exit code. */
static int setup_place (const gr_run_opts_t *o, const gr_spec_t *spec,
                        const gr_worker_info_t *infos, int size, gr_place_t **placep)
{
    gr_site_t *site = NULL;
    gr_error_t err;
    const char *path = o->site_path;

    if (!path || !*path)
        path = getenv ("GRIDRUN_SITE");
    if (path && *path && gr_site_load (path, &site, &err) < 0) {
        fprintf (stderr, "gridrun: %s%s\n", err.text,
                 o->site_path ? "" : " (the site file named by GRIDRUN_SITE)");
        return errno == ENOMEM ? GR_EXIT_INTERNAL : GR_EXIT_USAGE;
    }
    *placep = gr__place_create (spec, infos, size, site, &err);
    gr_site_destroy (site);
    if (!*placep) {
        fprintf (stderr, "gridrun: %s\n", err.text);
        return errno == ENOMEM ? GR_EXIT_INTERNAL : GR_EXIT_USAGE;
    }
    return 0;
}

/* Chaos mode: rank 0's spec, with the seed it picked if none was given,
 * goes to every rank (GRIDRUN_CHAOS need not reach other hosts), and
 * each rank draws from the seed and its rank. */
static void chaos_setup (const gr_run_opts_t *o, int rank)
{
    char text[GR_CHAOS_SPEC_MAX] = "off";
    gr_chaos_spec_t s;
    gr_error_t err;

    if (rank == 0 && o->chaos && gr_chaos_parse (o->chaos, &s, &err) == 0
        && gr_chaos_spec_any (&s)) {
        if (!s.seeded) {
            s.seed = (uint64_t)time (NULL) ^ (uint64_t)getpid () << 32;
            s.seeded = true;
        }
        if (gr_chaos_format (&s, text, sizeof (text)) < 0)
            snprintf (text, sizeof (text), "off");
    }
    MPI_Bcast (text, sizeof (text), MPI_CHAR, 0, MPI_COMM_WORLD);
    text[sizeof (text) - 1] = '\0';
    if (gr_chaos_parse (text, &s, &err) < 0) {
        GR_ERROR ("chaos spec from rank 0: %s", err.text);
        MPI_Abort (MPI_COMM_WORLD, GR_EXIT_INTERNAL);
    }
    gr_chaos_enable (&s, rank);
    if (rank == 0 && gr_chaos_on ())
        GR_WARN ("chaos mode: injecting faults on purpose: %s", text);
}

/* Returns the run's exit code, or -1 on an internal error. */
/* The name of rank r's domain at a level, or NULL without a cluster. */
static const char *dom_name (const master_t *m, int r, gr_level_t level)
{
    if (!m->place || !m->place->cluster)
        return NULL;
    return gr_cluster_domain_name (m->place->cluster, (gr_dom_level_t)level,
                                   gr__place_dom (m->place, r, level));
}

/* Metrics, events and progress; a run goes on without them if they
 * cannot be had.  -1 only when the metrics cannot be served where asked. */
static int obs_setup (master_t *m)
{
    gr_obs_opts_t o;
    gr_error_t err;

    gr_obs_opts_init (&o);
    o.run_dir = m->run_dir;
    o.name = m->spec->name;
    o.metrics_file = m->opts->metrics_file;
    o.metrics_interval = m->opts->metrics_interval;
    o.events = m->opts->events;
    o.progress = m->opts->progress;
    o.progress_interval = m->opts->progress_interval;
    if (!(m->obs = gr_obs_create (&o, m->size))) {
        GR_WARN ("out of memory for metrics and events; running without them");
        return 0;
    }
    if (m->opts->metrics_listen && gr_obs_listen (m->obs, m->opts->metrics_listen, &err) < 0) {
        fprintf (stderr, "gridrun: %s\n", err.text);
        return -1;
    }
    for (int r = 0; r < m->size; r++)
        if (m->w[r].rank >= 0)
            gr_obs_worker (m->obs, r, m->w[r].info.host, dom_name (m, r, GR_LEVEL_RACK),
                           dom_name (m, r, GR_LEVEL_ZONE), m->w[r].info.cpus);
    return 0;
}

/* CPU seconds of this process (every thread: the journal's writer too). */
static double process_cpu (void)
{
    struct timespec ts;
    return clock_gettime (CLOCK_PROCESS_CPUTIME_ID, &ts) == 0 ? ts.tv_sec + ts.tv_nsec * 1e-9
                                                              : 0;
}

static int master_loop (master_t *m, gr_worker_t *self)
{
    double idle = 0;
    bool finishing = false;
    double finish_by = 0;
    gr_error_t err;

    m->t_start = gr_now ();
    m->cpu_start = process_cpu ();
    m->last_snapshot = m->t_start;
    for (int r = 0; r < m->size; r++)
        m->w[r].last_heard = m->w[r].last_sent = m->t_start;
    gr_obs_start (m->obs, m->incarnation, gr_sched_stats (m->sched), m->nworkers);
    for (;;) {
        double now = gr_now ();
        int did = 0;
        void *buf;
        size_t len;
        int src;

        for (int k = 0; k < 64; k++) {
            int rc = gr_chan_recv (m->ch, MPI_ANY_SOURCE, GR_TAG_READY, &buf, &len, &src);
            if (rc < 0)
                return -1;
            if (rc == 0)
                break;
            if (handle_ready (m, src, buf, len, now) < 0)
                return -1;
            did++;
        }
        /* A drain signal; a second one cuts the grace to nothing. */
        int sigs = drain_signals;
        if (sigs != m->signals_seen && !finishing) {
            double in = m->signals_seen == 0 ? m->grace : 0;
            m->signals_seen = sigs;
            if (begin_drain (m, now, in, last_signal) < 0)
                return -1;
        }
        if (m->deadline > 0 && !m->draining && !finishing
            && now >= m->deadline - m->grace) {
            if (begin_drain (m, now, m->deadline - now, 0) < 0)
                return -1;
        }
        if (m->slurm_next > 0 && !m->draining && !finishing)
            slurm_reread (m, now);
        if (!self && (check_lost (m, now) < 0 || heartbeats (m, now) < 0))
            return -1;
        if (!finishing && m->nworkers > 0 && m->nlost >= m->nworkers) {
            /* Nothing would ever run what is left. */
            GR_ERROR ("every worker is lost: the run stops here; run the same command "
                      "again to resume it");
            finishing = true;
        }
        if (m->io_failed && !m->io_stopped && !finishing && io_stop (m, now) < 0)
            return -1;
        if (!finishing) {
            if (quarantine_release (m, now) < 0)
                return -1;
            if (!m->draining) {
                int rc = dispatch (m, now);
                if (rc < 0)
                    return -1;
                did += rc;
                /* Nothing to hand out: a worker's wait for work is not the
                 * master's dispatch latency. */
                for (int r = 0; rc == 0 && r < m->size; r++)
                    if (m->w[r].asked > 0)
                        m->w[r].asked = now;
                if (check_stalled (m, now, rc == 0) < 0)
                    return -1;
            }
            const gr_sched_stats_t *st = gr_sched_stats (m->sched);
            double nr = gr_sched_next_retry (m->sched);
            if (gr_sched_finished (m->sched)
                || (m->draining && (st->running == 0 || now > m->drain_end + 10))) {
                finishing = true;
                finish_by = now + (m->opts->lost_after > 10 ? m->opts->lost_after : 10);
                if (send_all (m, GR_ASSIGN_SHUTDOWN, 0) < 0)
                    return -1;
            }
            else if (!m->draining && m->deadline > 0 && st->running == 0 && !did
                     && (nr == 0 || nr <= now) && any_credit (m)) {
                /* Nothing left can finish before the deadline. */
                GR_WARN ("no remaining task can finish before the deadline");
                if (begin_drain (m, now, 0, 0) < 0)
                    return -1;
            }
        }
        if (finishing && m->nbye + m->nlost >= m->nworkers)
            break;
        if (finishing && now > finish_by) {
            GR_WARN ("%d worker%s did not say goodbye; ending without them",
                     m->nworkers - m->nbye - m->nlost,
                     m->nworkers - m->nbye - m->nlost == 1 ? "" : "s");
            finalize_ok = false;
            break;
        }
        /* A failed commit stays buffered; it is tried again once, at the
         * end, when the reserve has made room. */
        if (m->journal && !m->io_failed && gr_journal_maybe_sync (m->journal, now, &err) < 0)
            io_fail (m, "%s", err.text);
        if (m->snap_pid > 0)
            snapshot_reap (m, false);
        gr_obs_tick (m->obs, now, gr_sched_stats (m->sched));
        if (m->opts->snapshot_interval > 0
            && now - m->last_snapshot >= m->opts->snapshot_interval)
            snapshot (m, "running", false);
        if (gr_chan_progress (m->ch) < 0)
            return -1;
        if (self) {
            int rc = gr__worker_step (self);
            if (rc < 0)
                return -1;
            did += rc;
        }
        if (did) {
            idle = 0;
            continue;
        }
        /* Nothing happened: back off from 20us to 5ms so an idle master
         * leaves the cores to the tasks.  Workers hold about
         * prefetch_window (50 ms) of queued work, so a late answer never
         * idles a slot.  Alone, the master also runs a worker and keeps
         * its naps at 1 ms. */
        idle = idle == 0 ? 20e-6 : idle * 2;
        if (idle > (self ? 1e-3 : 5e-3))
            idle = self ? 1e-3 : 5e-3;
        double nap = idle;
        double due = m->journal && !m->io_failed ? gr_journal_due (m->journal) : 0;
        if (due > 0 && due - now < nap)
            nap = due > now ? due - now : 0;
        if (self) {
            int procs;
            double w = gr__worker_idle_wait (self, &procs);
            if (w < nap)
                nap = w;
            if (procs)
                gr_exec_wait (nap);
            else
                gr_sleep (nap);
        }
        else
            gr_sleep (nap);
    }
    const gr_sched_stats_t *st = gr_sched_stats (m->sched);
    if (!gr_sched_finished (m->sched))
        return GR_EXIT_RESUMABLE;
    return (st->failed || st->skipped) ? GR_EXIT_FAILED : GR_EXIT_OK;
}

static int worker_loop (gr_worker_t *w)
{
    double idle = 0;
    while (!gr__worker_done (w)) {
        int rc = gr__worker_step (w);
        if (rc < 0)
            return -1;
        if (rc == 0 && gr__worker_master_lost (w)) {
            finalize_ok = false;
            return -2;
        }
        if (rc > 0) {
            idle = 0;
            continue;
        }
        int procs;
        double wait = gr__worker_idle_wait (w, &procs);
        if (procs) {
            /* Children running: sleep until one exits or 2 ms pass, so
             * new work from the master is still seen promptly. */
            gr_exec_wait (wait < 2e-3 ? wait : 2e-3);
        }
        else {
            idle = idle == 0 ? 20e-6 : idle * 2;
            if (idle > 1e-3)
                idle = 1e-3;
            gr_sleep (wait < idle ? wait : idle);
        }
    }
    return 0;
}

/* Blob shipped from rank 0: run directory, then the packed spec. */
static int pack_setup (const char *run_dir, const gr_spec_t *spec, char **bufp,
                       size_t *lenp)
{
    void *sp;
    size_t splen;
    if (gr_spec_pack (spec, &sp, &splen) < 0)
        return -1;
    uint64_t dl = strlen (run_dir);
    size_t len = 8 + dl + splen;
    char *buf = malloc (len);
    if (!buf) {
        free (sp);
        return -1;
    }
    memcpy (buf, &dl, 8);
    memcpy (buf + 8, run_dir, dl);
    memcpy (buf + 8 + dl, sp, splen);
    free (sp);
    *bufp = buf;
    *lenp = len;
    return 0;
}

/* The node's GPUs (positions in its list) that are this job's: under
 * Slurm those of SLURM_STEP_GPUS, SLURM_JOB_GPUS or the job's
 * CUDA_VISIBLE_DEVICES, matched by GPU index; else all.  malloc'd, *n
 * entries (NULL when none).  say: log what was found (one rank a node). */
static uint32_t *job_gpus (const gr_topo_gpu_t *gpus, size_t ng, bool say, size_t *n)
{
    uint32_t ids[256], *avail = ng ? calloc (ng, sizeof (uint32_t)) : NULL;
    size_t nids = 0;
    const char *from = NULL;
    gr_error_t err;

    *n = 0;
    if (!avail)
        return NULL;
    if (gr_slurm_gpus (ids, sizeof (ids) / sizeof (ids[0]), &nids, &from, &err) < 0) {
        if (say)
            GR_WARN ("%s; using all of this node's GPUs", err.text);
        from = NULL;
    }
    for (size_t g = 0; g < ng; g++) {
        bool mine = !from;
        for (size_t k = 0; k < nids && !mine; k++)
            mine = (int)ids[k] == gpus[g].index;
        if (mine)
            avail[(*n)++] = (uint32_t)g;
    }
    if (from && say) {
        if (*n < nids)
            GR_WARN ("%s names %zu GPU%s, this node has %zu of them; using those", from,
                     nids, nids == 1 ? "" : "s", *n);
        else
            GR_INFO ("Slurm gave this job %zu of this node's %zu GPUs (%s)", *n, ng, from);
    }
    return avail;
}

/* What this rank offers as a worker, and (res) which of the node's cores
 * and GPUs it owns for binding: the cores of its own binding when mpirun
 * bound it, else an equal share of the node's cores by its place among
 * the node's workers; an equal share of the GPUs.  With --cpus-per-worker
 * or --no-bind there is no binding and the counts are just counts. */
static void local_capacity (const gr_run_opts_t *o, int rank, int size,
                            gr_worker_info_t *info, gr_worker_res_t *res)
{
    MPI_Comm local;
    gr_node_caps_t caps;
    gr_error_t err;
    int is_worker = (rank != 0 || size == 1) ? 1 : 0;
    int nlocal = 1, lidx = 0;

    memset (info, 0, sizeof (*info));
    memset (res, 0, sizeof (*res));
    /* Under Slurm the node's Slurm name, so that nodes Slurm tells apart
     * are apart here too. */
    gr_node_name (info->host, sizeof (info->host));
    const char *addr = getenv ("SLURM_TOPOLOGY_ADDR");
    snprintf (info->topo_addr, sizeof (info->topo_addr), "%s", addr ? addr : "");
    gr__host_addr (info->addr, sizeof (info->addr));
    MPI_Comm_split_type (MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank,
                         MPI_INFO_NULL, &local);
    MPI_Allreduce (&is_worker, &nlocal, 1, MPI_INT, MPI_SUM, local);
    MPI_Exscan (&is_worker, &lidx, 1, MPI_INT, MPI_SUM, local);
    int lrank;
    MPI_Comm_rank (local, &lrank);
    if (lrank == 0)
        lidx = 0; /* MPI_Exscan leaves it undefined there */
    MPI_Comm_free (&local);
    if (nlocal < 1)
        nlocal = 1;
    if (gr_topo_local_caps (&caps, &err) < 0) {
        GR_WARN ("%s; assuming 1 cpu", err.text);
        caps.pus = 1;
        caps.mem = 0;
    }
    info->cpus = o->cpus_per_worker ? o->cpus_per_worker
                                    : (caps.pus / (uint32_t)nlocal ? caps.pus / (uint32_t)nlocal : 1);
    info->gpus = o->gpus_per_worker;
    info->mem = o->mem_per_worker ? o->mem_per_worker : caps.mem / (uint64_t)nlocal;
    if (!is_worker || o->no_bind || o->cpus_per_worker)
        return;

    gr_topo_node_t *t = gr_topo_node_load (NULL, &err);
    size_t nc = t ? gr_topo_node_ncores (t) : 0, nb = 0;
    uint32_t *cores = nc ? calloc (nc, sizeof (uint32_t)) : NULL;
    if (!t || !cores || gr_topo_node_bound_cores (t, cores, &nb) < 0 || nb == 0) {
        GR_INFO ("tasks are not bound to cores: %s", t ? "no usable cores" : err.text);
        free (cores);
        gr_topo_node_destroy (t);
        return;
    }
    if (nb == nc) {
        /* Not bound by mpirun: share the node's cores among its workers,
         * taking turns when there are more workers than cores. */
        size_t lo = nlocal <= (int)nc ? (size_t)lidx * nc / (size_t)nlocal : (size_t)lidx % nc;
        size_t hi = nlocal <= (int)nc ? ((size_t)lidx + 1) * nc / (size_t)nlocal : lo + 1;
        nb = 0;
        for (size_t c = lo; c < hi; c++)
            cores[nb++] = (uint32_t)c;
    }
    const gr_topo_gpu_t *gpus;
    size_t ng = gr_topo_node_gpus (t, &gpus), na = 0;
    uint32_t *avail = job_gpus (gpus, ng, lidx == 0, &na);
    size_t glo, ghi;
    if (o->gpus_per_worker) {
        glo = (size_t)lidx * o->gpus_per_worker;
        ghi = glo + o->gpus_per_worker;
    }
    else {
        glo = (size_t)lidx * na / (size_t)nlocal;
        ghi = ((size_t)lidx + 1) * na / (size_t)nlocal;
    }
    if (ghi > na)
        ghi = na;
    if (glo > ghi)
        glo = ghi;
    res->gpus = ghi > glo ? calloc (ghi - glo, sizeof (uint32_t)) : NULL;
    for (size_t g = glo; g < ghi && res->gpus; g++)
        res->gpus[res->ngpus++] = avail[g];
    free (avail);
    res->topo = t;
    res->cores = cores;
    res->ncores = nb;
    info->cpus = (uint32_t)nb;
    if (!o->gpus_per_worker)
        info->gpus = (uint32_t)res->ngpus;
}

typedef struct replay_ctx {
    gr_sched_t *sched;
    uint32_t incarnation;
    int rc;
} replay_ctx_t;

static int replay_cb (const gr_jrec_t *rec, void *arg)
{
    replay_ctx_t *c = arg;
    switch (rec->type) {
        case GR_JREC_RUN_START:
            if (rec->run_start.incarnation > c->incarnation)
                c->incarnation = rec->run_start.incarnation;
            break;
        case GR_JREC_TASK_START:
            for (uint32_t i = 0; i < rec->start.n; i++) {
                if (gr_sched_restore_start (c->sched, &rec->start.tasks[i],
                                            (int)rec->start.worker) < 0)
                    return -1;
            }
            break;
        case GR_JREC_TASK_END:
            for (uint32_t i = 0; i < rec->end.n; i++) {
                if (gr_sched_restore_end (c->sched, &rec->end.tasks[i],
                                          (int)rec->end.worker) < 0)
                    return -1;
            }
            break;
        default:
            break;
    }
    return 0;
}

/* Rank 0 after the workers are known: resume state, journal, info file. */
static int master_open (master_t *m, const gr_rundir_t *rd, gr_error_t *errp)
{
    char path[PATH_MAX];
    gr_journal_opts_t jo;
    uint64_t valid_len = 0;

    m->incarnation = 1;
    gr_rundir_file (m->run_dir, "journal", path, sizeof (path));
    if (rd->resume) {
        gr_journal_info_t info;
        replay_ctx_t c = {.sched = m->sched};
        if (gr_rundir_replay (m->run_dir, m->spec, replay_cb, &c, &info, errp) < 0)
            return -1;
        if (info.damage != GR_JDAMAGE_NONE)
            GR_WARN ("%s", info.damage_text);
        valid_len = info.valid_len;
        m->incarnation = c.incarnation + 1;
        if (gr_sched_restore_finish (m->sched, m->opts->retry_failed) < 0)
            return gr_errprintf (errp, "out of memory restoring the run");
        GR_INFO ("resuming '%s': incarnation %u, %" PRIu64 " journal records",
                 m->run_dir, m->incarnation, info.records);
    }
    if (!m->opts->no_journal) {
        gr_journal_opts_init (&jo);
        jo.commit_interval = m->opts->commit_interval;
        /* The master must not stop dispatching while the disk syncs.
         * In format 3 a no-op task's entries are 2 bytes, so the commit
         * interval, not the entry count, bounds a commit: up to 2^20
         * entries (about 1 MB, GR_JOURNAL_MAX_PENDING) cut fsyncs at the
         * no-op rate from ~160/s (65536 entries) to the interval's 20/s,
         * and the no-op loss against --no-journal from ~11% to ~6%
         * (scripts/bench-journal).  Format 2 made the bytes the cost:
         * 18 a task, and a loss of 10-15% whatever the commit size. */
        jo.background = true;
        jo.commit_records = 1u << 20;
        if (!(m->journal = gr_journal_open (path, valid_len, &jo, errp)))
            return -1;
        m->jplain = gr_journal_version (m->journal) >= 3;
        gr_jrec_t rec = {.type = GR_JREC_RUN_START, .time = gr_wallclock ()};
        rec.run_start.spec_hash = m->spec->hash;
        rec.run_start.incarnation = m->incarnation;
        rec.run_start.nworkers = (uint32_t)m->nworkers;
        if (gr_journal_append (m->journal, &rec, errp) < 0)
            return -1;
        for (int r = 0; r < m->size; r++) {
            if (m->w[r].rank < 0)
                continue;
            gr_jrec_t wr = {.type = GR_JREC_WORKER, .time = rec.time};
            wr.worker.rank = (uint32_t)r;
            wr.worker.cpus = m->w[r].info.cpus;
            wr.worker.gpus = m->w[r].info.gpus;
            snprintf (wr.worker.host, sizeof (wr.worker.host), "%s", m->w[r].info.host);
            if (gr_journal_append (m->journal, &wr, errp) < 0)
                return -1;
        }
        if (gr_journal_sync (m->journal, errp) < 0)
            return -1;
    }
    char info[2048], host[64];
    /* The host name, not the Slurm node name: the launcher and `gridrun
     * status` compare it with their own gethostname(). */
    if (gethostname (host, sizeof (host)) < 0)
        strcpy (host, "?");
    host[sizeof (host) - 1] = '\0';
    int n = snprintf (info, sizeof (info),
                      "pid %ld\nhost %s\nincarnation %u\nstarted %.3f\nworkers %d\n",
                      (long)getpid (), host, m->incarnation, m->started_wall, m->nworkers);
    const char *job = gr_slurm_job_id (), *nodes = gr_slurm_nodelist ();
    if (job && n > 0 && (size_t)n < sizeof (info))
        n += snprintf (info + n, sizeof (info) - (size_t)n,
                       "slurm_job %.64s\nslurm_restart %" PRIu32 "\nslurm_nodes %.1024s\n", job,
                       gr_slurm_restart_count (), nodes ? nodes : "?");
    if (n < 0 || (size_t)n >= sizeof (info))
        return gr_errprintf (errp, "master.info: too long");
    return gr_write_file_atomic (gr_rundir_file (m->run_dir, "master.info", path, sizeof (path)),
                                 info, (size_t)n, 0600, errp);
}

int gr_run (const gr_run_opts_t *opts)
{
    int rank, size;
    gr_rundir_t rd = {0};
    gr_spec_t *spec = NULL;
    char *run_dir = NULL;
    char *blob = NULL;
    size_t bloblen = 0;
    int64_t len64 = -1;
    gr_error_t err = {.text = ""};
    int code = GR_EXIT_INTERNAL;
    gr_chan_t *ch = NULL;
    gr_worker_t *self = NULL;
    gr_worker_info_t info, *infos = NULL;
    gr_worker_res_t res = {0};
    master_t m = {0};
    gr_place_t *place = NULL;
    double deadline = opts->deadline;
    bool slurm_reread_ok = false;

    MPI_Comm_rank (MPI_COMM_WORLD, &rank);
    MPI_Comm_size (MPI_COMM_WORLD, &size);
    m.jplain_worker = -1; /* no end entry yet */
    chaos_setup (opts, rank);

    if (rank == 0) {
        int rc = gr_rundir_prepare (opts, &rd, &err);
        if (rc != 0) {
            fprintf (stderr, "gridrun: %s\n", err.text);
            len64 = -rc;
        }
        else if (pack_setup (rd.path, rd.spec, &blob, &bloblen) < 0) {
            fprintf (stderr, "gridrun: cannot pack the spec: %s\n", strerror (errno));
            len64 = -GR_EXIT_INTERNAL;
        }
        else {
            len64 = (int64_t)bloblen;
            spec = rd.spec;
            run_dir = rd.path;
            if (opts->slurm_deadline)
                deadline = slurm_deadline (opts, &slurm_reread_ok, &m.slurm_failed);
        }
    }
    MPI_Bcast (&len64, 1, MPI_INT64_T, 0, MPI_COMM_WORLD);
    if (len64 < 0) {
        code = (int)-len64;
        goto done;
    }
    if (rank != 0) {
        bloblen = (size_t)len64;
        if (!(blob = malloc (bloblen ? bloblen : 1))) {
            GR_ERROR ("out of memory");
            MPI_Abort (MPI_COMM_WORLD, GR_EXIT_INTERNAL);
        }
    }
    MPI_Bcast (blob, (int)bloblen, MPI_BYTE, 0, MPI_COMM_WORLD);
    if (rank != 0) {
        uint64_t dl;
        memcpy (&dl, blob, 8);
        if (!(run_dir = strndup (blob + 8, dl))
            || gr_spec_unpack (blob + 8 + dl, bloblen - 8 - dl, &spec, &err) < 0) {
            GR_ERROR ("cannot rebuild the spec sent by rank 0: %s", err.text);
            MPI_Abort (MPI_COMM_WORLD, GR_EXIT_INTERNAL);
        }
    }
    free (blob);
    blob = NULL;

    local_capacity (opts, rank, size, &info, &res);
    if (rank == 0 && !(infos = calloc ((size_t)size, sizeof (*infos)))) {
        GR_ERROR ("out of memory");
        MPI_Abort (MPI_COMM_WORLD, GR_EXIT_INTERNAL);
    }
    MPI_Gather (&info, sizeof (info), MPI_BYTE, infos, sizeof (info), MPI_BYTE, 0,
                MPI_COMM_WORLD);

    int verdict = 0;
    if (rank == 0) {
        uint32_t maxc = 0, maxg = 0;
        uint64_t maxm = 0;
        for (int r = size == 1 ? 0 : 1; r < size; r++) {
            if (infos[r].cpus > maxc)
                maxc = infos[r].cpus;
            if (infos[r].gpus > maxg)
                maxg = infos[r].gpus;
            if (infos[r].mem > maxm)
                maxm = infos[r].mem;
        }
        if (gr_spec_check_resources (spec, maxc, maxg, maxm, &err) < 0) {
            fprintf (stderr, "gridrun: %s\n", err.text);
            verdict = GR_EXIT_USAGE;
        }
        else if (!(verdict = setup_place (opts, spec, infos, size, &place)))
            verdict = group_check_fit (spec, infos, size, place);
    }
    MPI_Bcast (&verdict, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (verdict) {
        code = verdict;
        goto done;
    }

    if (!(ch = gr_chan_create (MPI_COMM_WORLD))) {
        GR_ERROR ("out of memory");
        goto done;
    }
    if (rank != 0 || size == 1) {
        if (!(self = gr__worker_create (spec, run_dir, rank, info.cpus, info.gpus,
                                        opts, ch, &res)))
            MPI_Abort (MPI_COMM_WORLD,
                       gr_rundir_io_errno (errno) ? GR_EXIT_IO : GR_EXIT_INTERNAL);
    }
    if (rank != 0) {
        int wl = worker_loop (self);
        if (wl == -2) {
            /* The master is gone: leave without MPI (it could hang). */
            code = GR_EXIT_INTERNAL;
            goto done;
        }
        code = wl < 0 ? GR_EXIT_INTERNAL : GR_EXIT_OK;
        if (code != GR_EXIT_OK)
            MPI_Abort (MPI_COMM_WORLD, GR_EXIT_INTERNAL);
        while (gr_chan_progress (ch) > 0)
            gr_sleep (1e-4);
        goto done;
    }

    m.opts = opts;
    m.spec = spec;
    m.run_dir = run_dir;
    m.size = size;
    m.ch = ch;
    m.started_wall = gr_wallclock ();
    m.alone = self != NULL;
    m.grace = opts->grace >= 0 ? opts->grace : spec->grace;
    if (deadline > 0)
        m.deadline = gr_now () + (deadline - gr_wallclock ());
    if (opts->slurm_deadline && opts->slurm_reread > 0 && slurm_reread_ok) {
        /* Alone, rank 0's worker reaps every child of the process, and
         * would take squeue's exit status. */
        if (m.alone)
            GR_DEBUG ("one rank: the Slurm job's end time is not read again");
        else if (!(m.slurm_ex = gr_exec_create (&err)))
            GR_WARN ("the Slurm job's end time will not be read again: %s", err.text);
        else
            m.slurm_next = gr_now () + opts->slurm_reread;
    }
    m.place = place;
    if (!(m.sched = gr_sched_create (spec, opts->seed ? opts->seed
                                                      : (uint64_t)time (NULL)))
        || !(m.x = gr_expand_create ()) || !(m.w = calloc ((size_t)size, sizeof (wstate_t)))
        || !(m.elig = malloc (spec->ntasks + 1)) || !(m.spill = malloc (spec->ntasks + 1))
        || !(m.gelig = calloc (spec->ntasks + 1, 1))
        || !(m.gscratch = calloc ((size_t)size, sizeof (gplace_t)))
        || (place && gr_sched_set_placement (m.sched, size, place->dom,
                                             place->any_require ? place->req : NULL) < 0)) {
        GR_ERROR ("out of memory");
        MPI_Abort (MPI_COMM_WORLD, GR_EXIT_INTERNAL);
    }
    for (size_t i = 0; i < spec->ntasks; i++) {
        m.gelig[i] = spec->tasks[i].group;
        m.any_group = m.any_group || spec->tasks[i].group;
    }
    uint32_t *node = calloc ((size_t)size, sizeof (uint32_t));
    if (!node) {
        GR_ERROR ("out of memory");
        MPI_Abort (MPI_COMM_WORLD, GR_EXIT_INTERNAL);
    }
    number_nodes (infos, size, node);
    for (int r = 0; r < size; r++) {
        m.w[r].node = node[r];
        m.w[r].rank = (r != 0 || size == 1) ? r : -1;
        m.w[r].info = infos[r];
        if (m.w[r].rank >= 0) {
            m.nworkers++;
            m.total_cpus += infos[r].cpus;
        }
    }
    free (node);
    if (master_open (&m, &rd, &err) < 0) {
        /* A run directory that cannot be written stops the run cleanly,
         * before anything is handed out; anything else is fatal. */
        if (!gr_rundir_io_errno (errno)) {
            fprintf (stderr, "gridrun: %s\n", err.text);
            MPI_Abort (MPI_COMM_WORLD, GR_EXIT_INTERNAL);
        }
        io_fail (&m, "%s", err.text);
    }
    else if (gr_rundir_reserve (run_dir) < 0)
        GR_WARN ("cannot hold back %u KiB in '%s/.reserve' (%s): if the disk fills up, "
                 "the run's last records may not fit", GR_RUNDIR_RESERVE / 1024, run_dir,
                 strerror (errno));
    GR_INFO ("job '%s': %" PRIu64 " tasks, %d worker%s, %" PRIu64 " cpus, run dir %s",
             spec->name, spec->total, m.nworkers, m.nworkers == 1 ? "" : "s",
             m.total_cpus, run_dir);
    if (gr_slurm_job_id ())
        GR_INFO ("Slurm job %s, restart %" PRIu32 ", nodes %s", gr_slurm_job_id (),
                 gr_slurm_restart_count (),
                 gr_slurm_nodelist () ? gr_slurm_nodelist () : "?");
    if (obs_setup (&m) < 0)
        MPI_Abort (MPI_COMM_WORLD, GR_EXIT_USAGE);
    code = master_loop (&m, self);
    if (code < 0 && !m.io_failed) {
        GR_ERROR ("master failed: %s", strerror (errno));
        journal_sync (&m);
        MPI_Abort (MPI_COMM_WORLD, GR_EXIT_INTERNAL);
    }
    double wall = gr_now () - m.t_start;
    m.cpu_run = process_cpu () - m.cpu_start;
    /* The reserve makes room for what follows; without a run directory
     * that can be written, the snapshot (large, and rewritten at the
     * next end) is left as it was. */
    gr_rundir_unreserve (run_dir);
    if (m.io_failed)
        code = GR_EXIT_IO;
    gr_jrec_t rec = {.type = GR_JREC_RUN_END, .time = gr_wallclock ()};
    rec.run_end.exit_code = code;
    if (journal_put (&m, &rec) < 0 || journal_sync (&m) < 0)
        code = GR_EXIT_INTERNAL;
    if (gr_chaos_on ())
        chaos_journal_note (&m);
    if (m.io_failed)
        code = GR_EXIT_IO;
    else
        snapshot (&m, code == GR_EXIT_RESUMABLE ? "drained" : "finished", true);
    gr_obs_close (m.obs, code, gr_sched_stats (m.sched));
    m.obs = NULL;
    if (write_summary (&m, wall, code) < 0)
        code = GR_EXIT_INTERNAL;
    if (m.journal && gr_journal_close (m.journal, &err) < 0) {
        GR_ERROR ("%s", err.text);
        code = m.io_failed ? GR_EXIT_IO : GR_EXIT_INTERNAL;
    }
    else if (!m.journal && m.io_failed && !rd.resume)
        gr_rundir_abandon (&rd); /* no journal: run it again from the start */
    m.journal = NULL;
    /* Last: a supervisor takes this file as the run's committed outcome. */
    if (write_exit_status (run_dir, code) < 0 && code != GR_EXIT_IO)
        code = GR_EXIT_INTERNAL;
    double until = gr_now () + 5;
    while (gr_chan_progress (ch) > 0 && gr_now () < until)
        gr_sleep (1e-4);

done:
    gr_exec_cmd_destroy (m.slurm_q);
    gr_exec_destroy (m.slurm_ex);
    gr_topo_node_destroy (res.topo);
    free (res.cores);
    free (res.gpus);
    gr__worker_destroy (self);
    gr_chan_destroy (ch, finalize_ok);
    gr_sched_destroy (m.sched);
    gr_expand_destroy (m.x);
    gr__place_destroy (place);
    free (m.elig);
    free (m.spill);
    while (m.ngroups > 0)
        group_free (&m, m.groups[0]);
    free (m.groups);
    free (m.gelig);
    free (m.gscratch);
    free (m.w);
    free (infos);
    free (blob);
    if (rank == 0)
        gr_rundir_release (&rd);
    else {
        free (run_dir);
        gr_spec_destroy (spec);
    }
    return code;
}
