/* gridrun status RUN: what a run is doing or did, from its journal (the
 * durable truth, up to one group commit behind) and its info files. */
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
#include "src/common/units.h"
#include "src/journal/journal.h"
#include "src/runtime/rundir.h"
#include "src/runtime/runtime.h"
#include "src/sched/sched.h"
#include "src/spec/spec.h"
#include "cmd.h"

#define RATE_WINDOW 60.0
#define QUAR_MAX 64
#define NODES_MAX 1024   /* distinct worker nodes counted */
#define NODES_SHOWN 8    /* ... and listed by name in the text */

/* A failure domain's quarantines, from the journal. */
typedef struct quar {
    char name[64];
    bool on;
    double since, until;
    uint32_t failures;
    unsigned times;
} quar_t;

typedef struct status {
    gr_sched_t *sched;
    uint32_t incarnation;
    double inc_start;       /* wall clock of the current incarnation */
    double first_start;
    double last_time;
    uint64_t started_cur, ended_cur;
    /* Completions over time, for the recent rate. */
    double *done_times;
    size_t ndone, capdone;
    bool ended;
    int exit_code;
    bool drained;
    int lost;
    quar_t quar[QUAR_MAX];
    int nquar;
    /* The workers of the latest incarnation, by node. */
    uint32_t nworkers;
    struct {
        char name[64];
        uint32_t workers;
    } *nodes;
    size_t nnodes;
} status_t;

static void note_worker (status_t *s, const gr_jrec_t *rec)
{
    size_t i;
    s->nworkers++;
    if (!s->nodes && !(s->nodes = calloc (NODES_MAX, sizeof (*s->nodes))))
        return;
    for (i = 0; i < s->nnodes && strcmp (s->nodes[i].name, rec->worker.host) != 0; i++)
        ;
    if (i == s->nnodes) {
        if (s->nnodes == NODES_MAX)
            return;
        snprintf (s->nodes[i].name, sizeof (s->nodes[i].name), "%s", rec->worker.host);
        s->nodes[i].workers = 0;
        s->nnodes++;
    }
    s->nodes[i].workers++;
}

/* The Slurm job of the latest incarnation, from master.info. */
typedef struct slurm_info {
    char job[72];
    unsigned restart;
    char nodes[1040];
} slurm_info_t;

static bool read_slurm_info (const char *run_dir, slurm_info_t *si)
{
    char path[PATH_MAX], *buf, *line, *save = NULL;
    size_t len;
    bool found = false;

    memset (si, 0, sizeof (*si));
    if (gr_read_file (gr_rundir_file (run_dir, "master.info", path, sizeof (path)), 8192,
                      &buf, &len, NULL) < 0)
        return false;
    for (line = strtok_r (buf, "\n", &save); line; line = strtok_r (NULL, "\n", &save)) {
        if (strncmp (line, "slurm_job ", 10) == 0) {
            snprintf (si->job, sizeof (si->job), "%s", line + 10);
            found = true;
        }
        else if (strncmp (line, "slurm_restart ", 14) == 0)
            si->restart = (unsigned)strtoul (line + 14, NULL, 10);
        else if (strncmp (line, "slurm_nodes ", 12) == 0)
            snprintf (si->nodes, sizeof (si->nodes), "%s", line + 12);
    }
    free (buf);
    return found;
}

static void note_quarantine (status_t *s, const gr_jrec_t *rec)
{
    int i;
    for (i = 0; i < s->nquar && strcmp (s->quar[i].name, rec->quarantine.name) != 0; i++)
        ;
    if (i == s->nquar) {
        if (s->nquar == QUAR_MAX)
            return;
        s->nquar++;
        memset (&s->quar[i], 0, sizeof (s->quar[i]));
        snprintf (s->quar[i].name, sizeof (s->quar[i].name), "%s", rec->quarantine.name);
    }
    quar_t *q = &s->quar[i];
    q->on = rec->quarantine.on != 0;
    if (q->on) {
        q->since = rec->time;
        q->until = rec->quarantine.until;
        q->failures = rec->quarantine.failures;
        q->times++;
    }
}

static int status_cb (const gr_jrec_t *rec, void *arg)
{
    status_t *s = arg;
    s->last_time = rec->time;
    switch (rec->type) {
        case GR_JREC_RUN_START:
            s->incarnation = rec->run_start.incarnation;
            s->inc_start = rec->time;
            if (s->first_start == 0)
                s->first_start = rec->time;
            s->started_cur = s->ended_cur = 0;
            for (int i = 0; i < s->nquar; i++)
                s->quar[i].on = false;
            s->ended = false;
            s->drained = false;
            s->nworkers = 0;
            s->nnodes = 0;
            break;
        case GR_JREC_WORKER:
            note_worker (s, rec);
            break;
        case GR_JREC_TASK_START:
            s->started_cur += rec->start.n;
            for (uint32_t i = 0; i < rec->start.n; i++) {
                if (gr_sched_restore_start (s->sched, &rec->start.tasks[i],
                                            (int)rec->start.worker) < 0)
                    return -1;
            }
            break;
        case GR_JREC_TASK_END:
            s->ended_cur += rec->end.n;
            for (uint32_t i = 0; i < rec->end.n; i++) {
                const gr_jend_t *e = &rec->end.tasks[i];
                if (gr_sched_restore_end (s->sched, e, (int)rec->end.worker) < 0)
                    return -1;
                if (e->outcome == GR_JOUT_DONE) {
                    if (s->ndone == s->capdone) {
                        size_t nc = s->capdone ? s->capdone * 2 : 1024;
                        double *p = realloc (s->done_times, nc * sizeof (double));
                        if (!p)
                            return -1;
                        s->done_times = p;
                        s->capdone = nc;
                    }
                    s->done_times[s->ndone++] = rec->time;
                }
            }
            break;
        case GR_JREC_DRAIN:
            s->drained = true;
            break;
        case GR_JREC_RUN_END:
            s->ended = true;
            s->exit_code = rec->run_end.exit_code;
            break;
        case GR_JREC_WORKER_LOST:
            s->lost++;
            break;
        case GR_JREC_QUARANTINE:
            note_quarantine (s, rec);
            break;
        default:
            break;
    }
    return 0;
}

/* Is the master of this run alive?  Only answerable on its own host. */
static const char *liveness (const char *run_dir, bool *alive)
{
    char path[PATH_MAX];
    bool local;
    long pid = gr_rundir_master_pid (run_dir, &local);
    *alive = false;
    if (pid == 0)
        return "unknown";
    if (!local)
        return "unknown (its master runs on another host)";
    if (pid > 0 && kill ((pid_t)pid, 0) == 0) {
        char cmd[256] = "";
        snprintf (path, sizeof (path), "/proc/%ld/cmdline", pid);
        FILE *f = fopen (path, "re");
        if (f) {
            size_t n = fread (cmd, 1, sizeof (cmd) - 1, f);
            cmd[n] = '\0';
            fclose (f);
        }
        if (strstr (cmd, "gridrun")) {
            *alive = true;
            return "running";
        }
    }
    return "stopped";
}

static int parse_state (const char *s)
{
    if (strcmp (s, "done") == 0)
        return GR_TASK_DONE;
    if (strcmp (s, "failed") == 0)
        return GR_TASK_FAILED;
    if (strcmp (s, "poison") == 0)
        return GR_TASK_POISON;
    if (strcmp (s, "pending") == 0)
        return GR_TASK_PENDING;
    return -1;
}

static const struct option longopts[] = {
    {"json", no_argument, NULL, 'j'},
    {"failed", required_argument, NULL, 'f'},
    {"list", required_argument, NULL, 'l'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

int gr_cmd_status (int argc, char **argv)
{
    int c, json = 0, rc = GR_EXIT_USAGE, list_state = -1;
    long max_failed = 20;
    char path[PATH_MAX];
    gr_spec_t *spec = NULL;
    gr_error_t err;
    gr_expand_t *x = NULL;
    status_t s = {0};
    gr_journal_info_t info;

    optind = 1;
    while ((c = getopt_long (argc, argv, "jf:h", longopts, NULL)) != -1) {
        switch (c) {
            case 'j':
                json = 1;
                break;
            case 'f':
                max_failed = strtol (optarg, NULL, 10);
                break;
            case 'l':
                if ((list_state = parse_state (optarg)) < 0) {
                    fprintf (stderr, "gridrun: --list '%s': give done, failed, poison "
                             "or pending\n", optarg);
                    return GR_EXIT_USAGE;
                }
                break;
            case 'h':
                printf ("usage: gridrun status [--json] [--failed N] [--list STATE] RUN_DIR\n"
                        "  --list STATE  print 'name key' of every task in STATE (done,\n"
                        "                failed, poison, pending: started, not finished)\n");
                return 0;
            default:
                fprintf (stderr, "gridrun: usage: gridrun status [--json] RUN_DIR\n");
                return GR_EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        fprintf (stderr, "gridrun: usage: gridrun status [--json] RUN_DIR\n");
        return GR_EXIT_USAGE;
    }
    const char *run_dir = argv[optind];
    if (access (gr_rundir_file (run_dir, "spec.pack", path, sizeof (path)), F_OK) < 0) {
        fprintf (stderr, "gridrun: '%s' is not a gridrun run directory: %s: %s\n", run_dir,
                 path, strerror (errno));
        return GR_EXIT_USAGE;
    }
    if (gr_rundir_load_spec (run_dir, &spec, &err) < 0) {
        fprintf (stderr, "gridrun: %s\n", err.text);
        goto out;
    }
    if (!(s.sched = gr_sched_create (spec, 1)) || !(x = gr_expand_create ())) {
        rc = GR_EXIT_INTERNAL;
        goto out;
    }
    if (gr_rundir_replay (run_dir, spec, status_cb, &s, &info, &err) < 0) {
        fprintf (stderr, "gridrun: %s\n", err.text);
        goto out;
    }

    uint64_t done = 0, failed = 0, poison = 0;
    const gr_task_row_t *rows;
    size_t nrows = gr_sched_rows (s.sched, &rows);
    if (list_state >= 0) {
        for (size_t i = 0; i < nrows; i++) {
            const gr_task_row_t *r = &rows[i];
            if (r->state != list_state)
                continue;
            const char *name = "?";
            if (r->def < spec->ntasks && r->index < spec->tasks[r->def].count
                && gr_expand_select (x, &spec->tasks[r->def], r->index) == 0)
                name = gr_expand_name (x);
            printf ("%s %016" PRIx64 "\n", name, r->key);
        }
        rc = 0;
        goto out;
    }
    for (size_t i = 0; i < nrows; i++) {
        if (rows[i].state == GR_TASK_DONE)
            done++;
        else if (rows[i].state == GR_TASK_FAILED)
            failed++;
        else if (rows[i].state == GR_TASK_POISON)
            poison++;
    }
    int exit_status = -1;
    bool have_exit = gr_rundir_exit_status (run_dir, &exit_status);
    bool alive;
    const char *state = liveness (run_dir, &alive);
    if (have_exit && !alive)
        state = exit_status == GR_EXIT_RESUMABLE ? "drained (resumable)"
                : exit_status == GR_EXIT_OK       ? "finished"
                : exit_status == GR_EXIT_FAILED   ? "finished with failures"
                : exit_status == GR_EXIT_IO
                    ? "stopped: the run directory could not be written (resumable once it can)"
                    : "ended with an error";
    else if (!alive && strcmp (state, "stopped") == 0)
        state = "stopped (not running; resume with gridrun run --run-dir)";
    uint64_t running = alive && s.started_cur > s.ended_cur ? s.started_cur - s.ended_cur : 0;
    uint64_t remaining = spec->total > done + failed + poison
                             ? spec->total - done - failed - poison : 0;
    double now = alive ? gr_wallclock () : s.last_time;
    double recent = 0;
    size_t k = s.ndone;
    while (k > 0 && s.done_times[k - 1] >= now - RATE_WINDOW)
        k--;
    double window = now - s.first_start < RATE_WINDOW ? now - s.first_start : RATE_WINDOW;
    if (window > 0)
        recent = (double)(s.ndone - k) / window;
    double overall = s.last_time > s.first_start ? (double)done / (s.last_time - s.first_start) : 0;
    double eta = recent > 0 ? (double)remaining / recent : -1;
    slurm_info_t si;
    bool have_slurm = read_slurm_info (run_dir, &si);

    if (json) {
        json_t *o = json_object ();
        json_t *t = json_object ();
        json_object_set_new (o, "run_dir", json_string (run_dir));
        json_object_set_new (o, "job", json_string (spec->name));
        json_object_set_new (o, "state", json_string (state));
        json_object_set_new (o, "alive", json_boolean (alive));
        json_object_set_new (o, "exit_status", have_exit ? json_integer (exit_status) : json_null ());
        json_object_set_new (o, "incarnation", json_integer (s.incarnation));
        json_object_set_new (t, "total", json_integer ((json_int_t)spec->total));
        json_object_set_new (t, "done", json_integer ((json_int_t)done));
        json_object_set_new (t, "failed", json_integer ((json_int_t)(failed + poison)));
        json_object_set_new (t, "poison", json_integer ((json_int_t)poison));
        /* Handed to workers, running or queued there. */
        json_object_set_new (t, "in_flight", json_integer ((json_int_t)running));
        json_object_set_new (t, "remaining", json_integer ((json_int_t)remaining));
        json_object_set_new (t, "duplicates",
                             json_integer ((json_int_t)gr_sched_stats (s.sched)->duplicates));
        json_object_set_new (o, "tasks", t);
        json_object_set_new (o, "throughput_recent", json_real (recent));
        json_object_set_new (o, "throughput_overall", json_real (overall));
        json_object_set_new (o, "eta_seconds", eta >= 0 && alive ? json_real (eta) : json_null ());
        json_object_set_new (o, "workers_lost", json_integer (s.lost));
        json_t *wo = json_object (), *wn = json_object ();
        json_object_set_new (wo, "count", json_integer (s.nworkers));
        for (size_t i = 0; i < s.nnodes; i++)
            json_object_set_new (wn, s.nodes[i].name, json_integer (s.nodes[i].workers));
        json_object_set_new (wo, "nodes", wn);
        json_object_set_new (o, "workers", wo);
        if (have_slurm) {
            json_t *so = json_object ();
            json_object_set_new (so, "job_id", json_string (si.job));
            json_object_set_new (so, "restart_count", json_integer (si.restart));
            json_object_set_new (so, "nodes", json_string (si.nodes));
            json_object_set_new (o, "slurm", so);
        }
        else
            json_object_set_new (o, "slurm", json_null ());
        json_t *qa = json_array ();
        for (int i = 0; i < s.nquar; i++) {
            const quar_t *q = &s.quar[i];
            json_t *qo = json_object ();
            json_object_set_new (qo, "domain", json_string (q->name));
            json_object_set_new (qo, "active", json_boolean (q->on && q->until > now));
            json_object_set_new (qo, "times", json_integer (q->times));
            json_object_set_new (qo, "since", json_real (q->since));
            json_object_set_new (qo, "until", json_real (q->until));
            json_object_set_new (qo, "failures", json_integer (q->failures));
            json_array_append_new (qa, qo);
        }
        json_object_set_new (o, "quarantine", qa);
        json_t *jn = json_object ();
        json_object_set_new (jn, "records", json_integer ((json_int_t)info.records));
        json_object_set_new (jn, "damage", info.damage ? json_string (info.damage_text) : json_null ());
        json_object_set_new (o, "journal", jn);
        json_t *fl = json_array ();
        for (size_t i = 0; i < nrows; i++) {
            const gr_task_row_t *r = &rows[i];
            if (r->state != GR_TASK_FAILED && r->state != GR_TASK_POISON)
                continue;
            char reason[160];
            json_t *f = json_object ();
            char key[17];
            snprintf (key, sizeof (key), "%016" PRIx64, r->key);
            json_object_set_new (f, "key", json_string (key));
            if (r->def < spec->ntasks && gr_expand_select (x, &spec->tasks[r->def], r->index) == 0) {
                json_object_set_new (f, "name", json_string (gr_expand_name (x)));
                json_object_set_new (f, "params", json_string (gr_expand_params_string (x)));
                gr_sched_describe (&spec->tasks[r->def], gr_task_row_exit (r), r->signal, r->flags,
                                   reason, sizeof (reason));
                json_object_set_new (f, "reason", json_string (reason));
            }
            json_object_set_new (f, "attempts", json_integer (r->attempts));
            json_object_set_new (f, "poison", json_boolean (r->state == GR_TASK_POISON));
            json_array_append_new (fl, f);
        }
        json_object_set_new (o, "failed_tasks", fl);
        char *text = json_dumps (o, JSON_INDENT (2) | JSON_PRESERVE_ORDER);
        json_decref (o);
        if (!text) {
            rc = GR_EXIT_INTERNAL;
            goto out;
        }
        puts (text);
        free (text);
    }
    else {
        char b1[32], b2[32];
        printf ("run %s: job '%s', %s, incarnation %u\n", run_dir, spec->name, state,
                s.incarnation);
        printf ("  tasks       %" PRIu64 ": %" PRIu64 " done, %" PRIu64 " failed",
                spec->total, done, failed + poison);
        if (poison)
            printf (" (%" PRIu64 " poison)", poison);
        printf (", %" PRIu64 " in flight, %" PRIu64 " left\n", running, remaining);
        printf ("  throughput  %.1f tasks/s over the last %s, %.1f overall\n", recent,
                gr_fmt_duration (window > 0 ? window : 0, b1, sizeof (b1)), overall);
        if (alive && eta >= 0)
            printf ("  eta         %s\n", gr_fmt_duration (eta, b2, sizeof (b2)));
        if (gr_sched_stats (s.sched)->duplicates)
            printf ("  duplicates  %" PRIu64 " completions of finished tasks ignored\n",
                    gr_sched_stats (s.sched)->duplicates);
        if (s.nworkers) {
            printf ("  workers     %" PRIu32 " on %zu node%s:", s.nworkers, s.nnodes,
                    s.nnodes == 1 ? "" : "s");
            for (size_t i = 0; i < s.nnodes && i < NODES_SHOWN; i++)
                printf ("%s %s (%" PRIu32 ")", i ? "," : "", s.nodes[i].name,
                        s.nodes[i].workers);
            printf ("%s\n", s.nnodes > NODES_SHOWN ? ", ..." : "");
        }
        if (have_slurm)
            printf ("  slurm       job %s, restart %u, nodes %s\n", si.job, si.restart,
                    si.nodes);
        if (s.lost)
            printf ("  lost        %d worker%s\n", s.lost, s.lost == 1 ? "" : "s");
        for (int i = 0; i < s.nquar; i++) {
            const quar_t *q = &s.quar[i];
            char when[32];
            time_t t = (time_t)q->until;
            struct tm tm;
            if (q->on && q->until > now) {
                localtime_r (&t, &tm);
                strftime (when, sizeof (when), "%H:%M:%S", &tm);
                printf ("  quarantined %s until %s (%u failures within the window; %u "
                        "time%s)\n", q->name, when, q->failures, q->times,
                        q->times == 1 ? "" : "s");
            }
            else
                printf ("  quarantine  %s: %u time%s, released\n", q->name, q->times,
                        q->times == 1 ? "" : "s");
        }
        if (info.damage)
            printf ("  journal     %s\n", info.damage_text);
        long shown = 0;
        for (size_t i = 0; i < nrows && shown < max_failed; i++) {
            const gr_task_row_t *r = &rows[i];
            if (r->state != GR_TASK_FAILED && r->state != GR_TASK_POISON)
                continue;
            char reason[160] = "?";
            const char *name = "?";
            if (r->def < spec->ntasks && gr_expand_select (x, &spec->tasks[r->def], r->index) == 0) {
                name = gr_expand_name (x);
                gr_sched_describe (&spec->tasks[r->def], gr_task_row_exit (r), r->signal, r->flags,
                                   reason, sizeof (reason));
            }
            printf ("  failed      %s (%016" PRIx64 "): %s, %u attempt%s%s\n", name, r->key,
                    reason, r->attempts, r->attempts == 1 ? "" : "s",
                    r->state == GR_TASK_POISON ? ", poison" : "");
            shown++;
        }
        if ((long)(failed + poison) > shown)
            printf ("  failed      ... and %" PRIu64 " more (--failed N shows more)\n",
                    failed + poison - (uint64_t)shown);
    }
    rc = 0;
out:
    free (s.done_times);
    free (s.nodes);
    gr_expand_destroy (x);
    gr_sched_destroy (s.sched);
    gr_spec_destroy (spec);
    return rc;
}
