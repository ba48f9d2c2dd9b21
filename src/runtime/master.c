/* Run setup on every rank, and the master loop on rank 0. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mpi.h>

#include "src/common/fs.h"
#include "src/common/gtime.h"
#include "src/common/log.h"
#include "src/common/units.h"
#include "src/exec/exec.h"
#include "src/proto/proto.h"
#include "src/sched/sched.h"
#include "src/spec/spec.h"
#include "src/topo/topo.h"
#include "runtime.h"

void gr_run_opts_init (gr_run_opts_t *o)
{
    memset (o, 0, sizeof (*o));
    o->prefetch_window = 0.05;
    o->max_prefetch = 4096;
    o->flush_interval = 0.02;
    o->heartbeat = 5.0;
    o->output_cap = 64ull * 1024 * 1024;
    o->seed = 0;
}

typedef struct wstate {
    int rank;
    gr_worker_info_t info;
    int64_t want;           /* as of the worker's last READY */
    uint64_t assigned;      /* tasks sent to it */
    uint64_t received;      /* tasks it said it has received */
    uint64_t inflight;      /* tasks it holds (assigned, no result yet) */
    bool shutdown_sent;
    bool bye;
    double last_heard;
} wstate_t;

typedef struct master {
    const gr_run_opts_t *opts;
    const gr_spec_t *spec;
    const char *run_dir;
    int size;
    gr_chan_t *ch;
    gr_sched_t *sched;
    gr_expand_t *x;
    wstate_t *w;            /* indexed by rank; rank 0 is a worker only alone */
    int nworkers;
    int nbye;
    uint64_t total_cpus;
    double t_start;
} master_t;

static const char *task_label (master_t *m, uint32_t def, uint64_t index)
{
    if (gr_expand_select (m->x, &m->spec->tasks[def], index) < 0)
        return "?";
    return gr_expand_name (m->x);
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
    memcpy (&h, buf, sizeof (h));
    const gr_result_rec_t *recs =
        (const gr_result_rec_t *)((const char *)buf + sizeof (h));
    for (uint32_t i = 0; i < h.nresults; i++) {
        gr_result_rec_t r;
        gr_outcome_t o;
        memcpy (&r, &recs[i], sizeof (r));
        if (gr_sched_complete (m->sched, now, &r, &o) < 0)
            return -1;
        if (o.kind == GR_OUTCOME_STALE) {
            GR_DEBUG ("stale result %016" PRIx64 " from rank %d ignored", r.id, src);
            continue;
        }
        w->inflight--;
        switch (o.kind) {
            case GR_OUTCOME_RETRY:
                GR_INFO ("task %s (%016" PRIx64 ") attempt %u: %s; retry in %.1fs",
                         task_label (m, o.def, o.index), o.key, o.attempt,
                         o.reason, o.delay);
                break;
            case GR_OUTCOME_FAILED:
                GR_WARN ("task %s (%016" PRIx64 ") failed: %s after %u attempt%s",
                         task_label (m, o.def, o.index), o.key, o.reason,
                         o.attempt, o.attempt == 1 ? "" : "s");
                break;
            case GR_OUTCOME_POISON:
                GR_WARN ("task %s (%016" PRIx64 ") is poison: %s, crashed %u "
                         "times; not retried",
                         task_label (m, o.def, o.index), o.key, o.reason,
                         m->spec->tasks[o.def].retry.crash_limit);
                break;
            default:
                break;
        }
    }
    w->want = h.want;
    w->received = h.received;
    w->last_heard = now;
    if (h.flags & GR_READY_BYE) {
        w->bye = true;
        m->nbye++;
    }
    return 0;
}

static int send_assign (master_t *m, wstate_t *w, const gr_assign_rec_t *recs,
                        uint32_t n, uint32_t flags)
{
    size_t len = gr_assign_size (n);
    char *buf = malloc (len);
    if (!buf)
        return -1;
    gr_assign_hdr_t h = {.version = GR_PROTO_VERSION, .flags = flags, .ntasks = n};
    memcpy (buf, &h, sizeof (h));
    memcpy (buf + sizeof (h), recs, n * sizeof (*recs));
    if (gr_chan_send (m->ch, w->rank, GR_TAG_ASSIGN, buf, len) < 0) {
        free (buf);
        return -1;
    }
    w->assigned += n;
    w->inflight += n;
    return 0;
}

static int dispatch (master_t *m, double now)
{
    gr_assign_rec_t recs[GR_PROTO_MAX_BATCH];
    int did = 0;

    for (int r = 0; r < m->size; r++) {
        wstate_t *w = &m->w[r];
        if (w->rank < 0 || w->bye || w->shutdown_sent)
            continue;
        /* Tasks already on their way count against the worker's credit. */
        int64_t credit = w->want - (int64_t)(w->assigned - w->received);
        while (credit > 0) {
            uint32_t n = 0;
            uint32_t max = credit < GR_PROTO_MAX_BATCH ? (uint32_t)credit
                                                       : GR_PROTO_MAX_BATCH;
            while (n < max) {
                int rc = gr_sched_next (m->sched, now, r, w->info.cpus,
                                        w->info.gpus, w->info.mem, &recs[n]);
                if (rc < 0)
                    return -1;
                if (rc == 0)
                    break;
                n++;
            }
            if (n == 0)
                break;
            if (send_assign (m, w, recs, n, 0) < 0)
                return -1;
            credit -= n;
            did++;
        }
    }
    return did;
}

static int shutdown_workers (master_t *m)
{
    for (int r = 0; r < m->size; r++) {
        wstate_t *w = &m->w[r];
        if (w->rank < 0 || w->shutdown_sent)
            continue;
        if (send_assign (m, w, NULL, 0, GR_ASSIGN_SHUTDOWN) < 0)
            return -1;
        w->shutdown_sent = true;
    }
    return 0;
}

static void summary (master_t *m, double wall, FILE *f)
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

    fprintf (f, "gridrun: job '%s' %s in %s\n", m->spec->name,
             st->failed || st->skipped ? "finished with failures" : "finished",
             gr_fmt_duration (wall, b1, sizeof (b1)));
    fprintf (f, "  tasks       %" PRIu64 ": %" PRIu64 " done, %" PRIu64 " failed",
             st->total, st->done, st->failed);
    if (st->poison)
        fprintf (f, " (%" PRIu64 " poison)", st->poison);
    fprintf (f, ", %" PRIu64 " skipped\n", st->skipped);
    fprintf (f, "  attempts    %" PRIu64 ": %" PRIu64 " retried, %" PRIu64
             " timed out, %" PRIu64 " crashed\n",
             st->attempts, st->retries, st->timeouts, st->crashes);
    fprintf (f, "  throughput  %.1f tasks/s on %d worker%s (%" PRIu64
             " cpus), %.0f%% busy\n",
             wall > 0 ? (double)st->attempts / wall : 0.0, m->nworkers,
             m->nworkers == 1 ? "" : "s", m->total_cpus, util);
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
    struct rusage ru;
    if (getrusage (RUSAGE_SELF, &ru) == 0)
        fprintf (f, "  master      peak RSS %.1f MiB\n", (double)ru.ru_maxrss / 1024.0);
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
    summary (m, wall, f);
    fclose (f);
    snprintf (path, sizeof (path), "%s/summary.txt", m->run_dir);
    if (gr_write_file_atomic (path, text, len, 0600, &err) < 0)
        GR_ERROR ("%s", err.text);
    if (!m->opts->quiet)
        fwrite (text, 1, len, stdout);
    fflush (stdout);
    free (text);
    char num[16];
    int n = snprintf (num, sizeof (num), "%d\n", code);
    snprintf (path, sizeof (path), "%s/exit_status", m->run_dir);
    if (gr_write_file_atomic (path, num, (size_t)n, 0600, &err) < 0) {
        GR_ERROR ("%s", err.text);
        return -1;
    }
    return 0;
}

static int master_loop (master_t *m, gr_worker_t *self)
{
    double idle = 0;
    bool finishing = false;

    m->t_start = gr_now ();
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
        if (!finishing) {
            int rc = dispatch (m, now);
            if (rc < 0)
                return -1;
            did += rc;
            if (gr_sched_finished (m->sched)) {
                finishing = true;
                if (shutdown_workers (m) < 0)
                    return -1;
            }
        }
        if (finishing && m->nbye == m->nworkers)
            break;
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
        if (self) {
            int procs;
            double w = gr__worker_idle_wait (self, &procs);
            if (w > idle)
                w = idle;
            if (procs)
                gr_exec_wait (w);
            else
                gr_sleep (w);
        }
        else
            gr_sleep (idle);
    }
    return 0;
}

static int worker_loop (gr_worker_t *w)
{
    double idle = 0;
    while (!gr__worker_done (w)) {
        int rc = gr__worker_step (w);
        if (rc < 0)
            return -1;
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

static int make_run_dir (const gr_run_opts_t *o, const gr_spec_t *spec,
                         char **dirp, gr_error_t *errp)
{
    char buf[PATH_MAX];
    const char *dir = o->run_dir;
    struct stat st;

    if (!dir) {
        time_t t = time (NULL);
        struct tm tm;
        localtime_r (&t, &tm);
        snprintf (buf, sizeof (buf), "gridrun-%s-%04d%02d%02d-%02d%02d%02d",
                  spec->name, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                  tm.tm_hour, tm.tm_min, tm.tm_sec);
        dir = buf;
    }
    char *abs = gr_abspath (dir);
    if (!abs)
        return gr_errprintf (errp, "cannot resolve run directory '%s': %s", dir,
                             strerror (errno));
    /* Every file of the run lives under it, with names of at most 64
     * bytes, so bounding it here keeps every derived path whole. */
    if (strlen (abs) > PATH_MAX - 128) {
        gr_errprintf (errp, "run directory path is too long (%zu bytes; at most %d)",
                      strlen (abs), PATH_MAX - 128);
        free (abs);
        errno = ENAMETOOLONG;
        return -1;
    }
    char spath[PATH_MAX];
    snprintf (spath, sizeof (spath), "%s/spec.yaml", abs);
    if (stat (spath, &st) == 0) {
        gr_errprintf (errp,
                      "run directory '%s' already holds a run; give a new "
                      "--run-dir (resuming a run is not supported yet)", abs);
        free (abs);
        return -1;
    }
    if (gr_mkdir_p (abs, 0700, errp) < 0 || chmod (abs, 0700) < 0) {
        if (errno && errp && !errp->text[0])
            gr_errprintf (errp, "cannot create '%s': %s", abs, strerror (errno));
        free (abs);
        return -1;
    }
    char odir[PATH_MAX];
    snprintf (odir, sizeof (odir), "%s/out", abs);
    if (gr_mkdir_p (odir, 0700, errp) < 0
        || gr_write_file_atomic (spath, spec->text, spec->textlen, 0600, errp) < 0) {
        free (abs);
        return -1;
    }
    *dirp = abs;
    return 0;
}

static void local_capacity (const gr_run_opts_t *o, int rank, int size,
                            gr_worker_info_t *info)
{
    MPI_Comm local;
    gr_node_caps_t caps;
    gr_error_t err;
    int is_worker = (rank != 0 || size == 1) ? 1 : 0;
    int nlocal = 1;

    memset (info, 0, sizeof (*info));
    if (gethostname (info->host, sizeof (info->host)) < 0)
        strcpy (info->host, "?");
    info->host[sizeof (info->host) - 1] = '\0';
    MPI_Comm_split_type (MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank,
                         MPI_INFO_NULL, &local);
    MPI_Allreduce (&is_worker, &nlocal, 1, MPI_INT, MPI_SUM, local);
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
}

int gr_run (const gr_run_opts_t *opts)
{
    int rank, size;
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
    master_t m = {0};

    MPI_Comm_rank (MPI_COMM_WORLD, &rank);
    MPI_Comm_size (MPI_COMM_WORLD, &size);

    if (rank == 0) {
        if (gr_spec_load (opts->spec_path, &spec, &err) < 0) {
            fprintf (stderr, "gridrun: %s\n", err.text);
            len64 = -GR_EXIT_USAGE;
        }
        else if (make_run_dir (opts, spec, &run_dir, &err) < 0) {
            fprintf (stderr, "gridrun: %s\n", err.text);
            len64 = -GR_EXIT_USAGE;
        }
        else if (pack_setup (run_dir, spec, &blob, &bloblen) < 0) {
            fprintf (stderr, "gridrun: cannot pack the spec: %s\n", strerror (errno));
            len64 = -GR_EXIT_INTERNAL;
        }
        else
            len64 = (int64_t)bloblen;
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

    local_capacity (opts, rank, size, &info);
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
                                        opts, ch)))
            MPI_Abort (MPI_COMM_WORLD, GR_EXIT_INTERNAL);
    }
    if (rank != 0) {
        code = worker_loop (self) < 0 ? GR_EXIT_INTERNAL : GR_EXIT_OK;
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
    if (!(m.sched = gr_sched_create (spec, opts->seed ? opts->seed
                                                      : (uint64_t)time (NULL)))
        || !(m.x = gr_expand_create ()) || !(m.w = calloc ((size_t)size, sizeof (wstate_t)))) {
        GR_ERROR ("out of memory");
        MPI_Abort (MPI_COMM_WORLD, GR_EXIT_INTERNAL);
    }
    for (int r = 0; r < size; r++) {
        m.w[r].rank = (r != 0 || size == 1) ? r : -1;
        m.w[r].info = infos[r];
        if (m.w[r].rank >= 0) {
            m.nworkers++;
            m.total_cpus += infos[r].cpus;
        }
    }
    GR_INFO ("job '%s': %" PRIu64 " tasks, %d worker%s, %" PRIu64 " cpus, run dir %s",
             spec->name, spec->total, m.nworkers, m.nworkers == 1 ? "" : "s",
             m.total_cpus, run_dir);
    if (master_loop (&m, self) < 0) {
        GR_ERROR ("master failed: %s", strerror (errno));
        MPI_Abort (MPI_COMM_WORLD, GR_EXIT_INTERNAL);
    }
    double wall = gr_now () - m.t_start;
    const gr_sched_stats_t *st = gr_sched_stats (m.sched);
    code = (st->failed || st->skipped) ? GR_EXIT_FAILED : GR_EXIT_OK;
    if (write_summary (&m, wall, code) < 0)
        code = GR_EXIT_INTERNAL;
    while (gr_chan_progress (ch) > 0)
        gr_sleep (1e-4);

done:
    gr__worker_destroy (self);
    gr_chan_destroy (ch, 1);
    gr_sched_destroy (m.sched);
    gr_expand_destroy (m.x);
    free (m.w);
    free (infos);
    free (blob);
    free (run_dir);
    gr_spec_destroy (spec);
    return code;
}
