/* gridrun: the command.  `run` is the MPI program; the other subcommands
 * work on files and never start MPI. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mpi.h>

#include "src/common/chaos.h"
#include "src/common/error.h"
#include "src/common/log.h"
#include "src/common/slurm.h"
#include "src/common/units.h"
#include "src/exec/exec.h"
#include "src/runtime/outlog.h"
#include "src/runtime/obs.h"
#include "src/runtime/runtime.h"
#include "src/spec/spec.h"
#include "src/topo/topo.h"
#include "cmd.h"

static const char *usage_text =
    "usage: gridrun COMMAND [OPTIONS] ...\n"
    "\n"
    "Commands:\n"
    "  run SPEC        run a job (start it with mpirun -n N; rank 0 is the master);\n"
    "                  with --run-dir of an earlier run, resume it (SPEC optional)\n"
    "  launch MPIRUN-ARGS -- RUN-ARGS\n"
    "                  run under mpirun with supervision: signals drain the run,\n"
    "                  lost ranks are survived, and the exit code is the run's\n"
    "  submit [OPTIONS] SPEC [-- RUN-OPTIONS]\n"
    "                  submit to Slurm (sbatch): drains before the time limit and on\n"
    "                  preemption, requeues itself and resumes until done\n"
    "                  (gridrun-sbatch; see gridrun submit --help, doc/slurm.md)\n"
    "  status RUN      counts, throughput, ETA and failures of a run (--json)\n"
    "  report RUN      an HTML report of a run: throughput, utilization by node,\n"
    "                  task durations, failures by domain, slowest and failed\n"
    "                  tasks (RUN/report.html, or -o FILE)\n"
    "  validate SPEC   check a job spec and show the tasks it expands to\n"
    "  output RUN TASK print the output of a task (name like sim[3], or its key)\n"
    "  topo            show failure domains: zones, racks, nodes, and this node's\n"
    "                  packages, NUMA nodes, cores and GPUs (--xml, --site, --hosts)\n"
    "  ckpt ls|verify|show DIR [STEP]\n"
    "                  training checkpoints (libgridrun's gr_ckpt_*): list the\n"
    "                  steps, check every byte against the checksums, show arrays\n"
    "                  and attributes (--json for ls and show)\n"
    "  help            show this text\n"
    "  version         show the version\n"
    "\n"
    "run options:\n"
    "  -d, --run-dir DIR        where the run keeps its state and output\n"
    "                           (default ./gridrun-NAME-YYYYmmdd-HHMMSS, mode 0700)\n"
    "      --cpus-per-worker N  cpus each worker offers (default: the cores it\n"
    "                           owns, its binding or a share of the node's, with\n"
    "                           tasks bound to them; giving N turns binding off)\n"
    "      --gpus-per-worker N  gpus each worker offers (default: a share of the\n"
    "                           node's GPUs)\n"
    "      --mem-per-worker SZ  memory each worker offers (default: node share)\n"
    "      --prefetch-window T  seconds of work a worker keeps queued (default 0.05)\n"
    "      --max-prefetch N     most tasks a worker keeps queued (default 4096)\n"
    "      --max-output SZ      captured output kept per task, attempt and stream;\n"
    "                           the rest is dropped with a note (default: the\n"
    "                           spec's max_output:, else 64M)\n"
    "      --seed N             seed for retry jitter (default: time)\n"
    "      --force              resume although the spec changed (match by key)\n"
    "      --retry-failed       resume: run tasks that failed for good again\n"
    "      --grace T            drain: how long running tasks may go on (default:\n"
    "                           the spec's grace:, else 60s)\n"
    "      --preempt-signal SIG drains like SIGTERM and SIGINT (default USR2)\n"
    "      --deadline TIME      end by TIME (+DURATION, epoch seconds, or\n"
    "                           YYYY-mm-ddTHH:MM[:SS]); default: the Slurm job's end\n"
    "      --lost-after T       a silent worker is lost after T (default 30s)\n"
    "      --snapshot-interval T  seconds between run.h5 snapshots (default 60)\n"
    "      --commit-interval T  journal group commit (default 50ms)\n"
    "      --no-journal         no journal and no resume (benchmarks only)\n"
    "      --no-bind            do not bind tasks to cores and GPUs\n"
    "      --site FILE          the site topology file: zones, racks, labels for\n"
    "                           placement (default: $GRIDRUN_SITE, else Slurm's\n"
    "                           topology, else each node its own rack)\n"
    "      --metrics-file PATH  Prometheus textfile (default RUN/metrics.prom; \"\"\n"
    "                           for none), rewritten every --metrics-interval T\n"
    "                           (default 10s; 0: at the end only)\n"
    "      --metrics-listen HOST:PORT  also serve them at http://HOST:PORT/metrics\n"
    "                           (\":PORT\" is 127.0.0.1:PORT)\n"
    "      --events on|off|tasks  the event log RUN/events.jsonl (default on:\n"
    "                           finished tasks a line a worker every 0.25s;\n"
    "                           tasks: one a task)\n"
    "      --progress auto|bar|lines|none  progress on stderr (default auto: a bar\n"
    "                           on a terminal, else a line every\n"
    "                           --progress-interval T, default 30s)\n"
    "      --chaos SPEC         chaos mode, for tests: inject faults at these rates\n"
    "                           (per event, 0 to 1), e.g. kill-task=0.01,\n"
    "                           kill-worker=0.002,delay=0.05:20ms,journal-eio=0.001,\n"
    "                           journal-enospc=0.001,seed=42; \"off\" for none\n"
    "                           (default: $GRIDRUN_CHAOS; doc/hardening.md)\n"
    "  -q, --quiet              no summary on stdout\n"
    "  -v, --verbose            more log output (repeat for more)\n"
    "\n"
    "validate options:\n"
    "  -n, --show N             how many tasks to show (default 5)\n"
    "      --cpus-per-worker N, --gpus-per-worker N, --mem-per-worker SZ\n"
    "                           also check that every task fits such a worker\n"
    "\n"
    "output options:\n"
    "  -e, --stderr             print stderr instead of stdout\n"
    "  -a, --attempt N          the output of attempt N (default: the last)\n"
    "\n"
    "Environment: GRIDRUN_LOG=error|warn|info|debug|trace, GRIDRUN_RUN_DIR,\n"
    "GRIDRUN_CPUS_PER_WORKER, GRIDRUN_GPUS_PER_WORKER, GRIDRUN_CHAOS (options\n"
    "override them), GRIDRUN_SLURM_REREAD (how often the master asks Slurm for\n"
    "the job's end time again; default 60s, 0: never).\n"
    "Exit codes: 0 all tasks succeeded, 1 some failed, 2 usage or spec error,\n"
    "70 internal error, 74 the run directory cannot be written (full disk; free\n"
    "space and run again to resume), 75 drained (resumable).  See gridrun(1).\n";

static void usage (FILE *f)
{
    fputs (usage_text, f);
}

static int usage_error (const char *fmt, const char *arg)
{
    fprintf (stderr, "gridrun: ");
    fprintf (stderr, fmt, arg);
    fprintf (stderr, "\nRun 'gridrun help' for usage.\n");
    return GR_EXIT_USAGE;
}

enum {
    OPT_CPUS = 1000,
    OPT_GPUS,
    OPT_MEM,
    OPT_PREFETCH,
    OPT_MAXPF,
    OPT_OUTCAP,
    OPT_SEED,
    OPT_FORCE,
    OPT_RETRY_FAILED,
    OPT_GRACE,
    OPT_PREEMPT,
    OPT_DEADLINE,
    OPT_LOST,
    OPT_SNAP,
    OPT_COMMIT,
    OPT_NOJOURNAL,
    OPT_NOBIND,
    OPT_SITE,
    OPT_METRICS_FILE,
    OPT_METRICS_LISTEN,
    OPT_METRICS_INTERVAL,
    OPT_EVENTS,
    OPT_PROGRESS,
    OPT_PROGRESS_INTERVAL,
    OPT_CHAOS,
};

static int parse_u32 (const char *s, const char *what, uint32_t *out)
{
    uint64_t v;
    if (gr_parse_u64 (s, &v) < 0 || v > UINT32_MAX) {
        fprintf (stderr, "gridrun: %s '%s' is not a whole number\n", what, s);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static int parse_sz (const char *s, const char *what, uint64_t *out)
{
    if (gr_parse_size (s, out) < 0) {
        fprintf (stderr, "gridrun: %s '%s' is not a size (like 512M or 4G)\n", what, s);
        return -1;
    }
    return 0;
}

/* Options shared by run and validate; returns 1 if handled, -1 on error. */
static int worker_opt (int c, const char *arg, gr_run_opts_t *o)
{
    switch (c) {
        case OPT_CPUS:
            if (parse_u32 (arg, "--cpus-per-worker", &o->cpus_per_worker) < 0)
                return -1;
            if (o->cpus_per_worker == 0) {
                fprintf (stderr, "gridrun: --cpus-per-worker must be at least 1\n");
                return -1;
            }
            return 1;
        case OPT_GPUS:
            return parse_u32 (arg, "--gpus-per-worker", &o->gpus_per_worker) < 0 ? -1 : 1;
        case OPT_MEM:
            return parse_sz (arg, "--mem-per-worker", &o->mem_per_worker) < 0 ? -1 : 1;
    }
    return 0;
}

/* A chaos spec (chaos.h) from where: refused with what is wrong. */
static int chaos_opt (const char *spec, const char *where, gr_run_opts_t *o)
{
    gr_chaos_spec_t s;
    gr_error_t err;
    if (gr_chaos_parse (spec, &s, &err) < 0) {
        fprintf (stderr, "gridrun: %s: %s\n", where, err.text);
        return -1;
    }
    o->chaos = gr_chaos_spec_any (&s) ? spec : NULL;
    return 0;
}

static int env_defaults (gr_run_opts_t *o)
{
    const char *s;
    if ((s = getenv ("GRIDRUN_RUN_DIR")) && *s)
        o->run_dir = s;
    /* GRIDRUN_CHAOS is read after the options: --chaos wins, even over a
     * bad value. */
    if ((s = getenv ("GRIDRUN_CPUS_PER_WORKER")) && *s
        && worker_opt (OPT_CPUS, s, o) < 0)
        return -1;
    if ((s = getenv ("GRIDRUN_GPUS_PER_WORKER")) && *s
        && worker_opt (OPT_GPUS, s, o) < 0)
        return -1;
    if ((s = getenv ("GRIDRUN_SLURM_REREAD")) && *s
        && gr_parse_duration (s, &o->slurm_reread) < 0) {
        fprintf (stderr, "gridrun: GRIDRUN_SLURM_REREAD='%s' is not a duration (like 60s; "
                 "0 turns re-reading the Slurm job's end time off)\n", s);
        return -1;
    }
    return 0;
}

static const struct option run_longopts[] = {
    {"run-dir", required_argument, NULL, 'd'},
    {"cpus-per-worker", required_argument, NULL, OPT_CPUS},
    {"gpus-per-worker", required_argument, NULL, OPT_GPUS},
    {"mem-per-worker", required_argument, NULL, OPT_MEM},
    {"prefetch-window", required_argument, NULL, OPT_PREFETCH},
    {"max-prefetch", required_argument, NULL, OPT_MAXPF},
    {"max-output", required_argument, NULL, OPT_OUTCAP},
    {"output-cap", required_argument, NULL, OPT_OUTCAP}, /* its old name */
    {"seed", required_argument, NULL, OPT_SEED},
    {"force", no_argument, NULL, OPT_FORCE},
    {"retry-failed", no_argument, NULL, OPT_RETRY_FAILED},
    {"grace", required_argument, NULL, OPT_GRACE},
    {"preempt-signal", required_argument, NULL, OPT_PREEMPT},
    {"deadline", required_argument, NULL, OPT_DEADLINE},
    {"lost-after", required_argument, NULL, OPT_LOST},
    {"snapshot-interval", required_argument, NULL, OPT_SNAP},
    {"commit-interval", required_argument, NULL, OPT_COMMIT},
    {"no-journal", no_argument, NULL, OPT_NOJOURNAL},
    {"no-bind", no_argument, NULL, OPT_NOBIND},
    {"site", required_argument, NULL, OPT_SITE},
    {"metrics-file", required_argument, NULL, OPT_METRICS_FILE},
    {"metrics-listen", required_argument, NULL, OPT_METRICS_LISTEN},
    {"metrics-interval", required_argument, NULL, OPT_METRICS_INTERVAL},
    {"events", required_argument, NULL, OPT_EVENTS},
    {"progress", required_argument, NULL, OPT_PROGRESS},
    {"progress-interval", required_argument, NULL, OPT_PROGRESS_INTERVAL},
    {"chaos", required_argument, NULL, OPT_CHAOS},
    {"quiet", no_argument, NULL, 'q'},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int cmd_run (int argc, char **argv)
{
    gr_run_opts_t o;
    int c, verbose = 0, rc, provided;
    const char *chaos = NULL;

    gr_run_opts_init (&o);
    if (env_defaults (&o) < 0)
        return GR_EXIT_USAGE;
    optind = 1;
    while ((c = getopt_long (argc, argv, "d:qvh", run_longopts, NULL)) != -1) {
        int w = worker_opt (c, optarg, &o);
        if (w < 0)
            return GR_EXIT_USAGE;
        if (w > 0)
            continue;
        switch (c) {
            case 'd':
                o.run_dir = optarg;
                break;
            case OPT_PREFETCH:
                if (gr_parse_duration (optarg, &o.prefetch_window) < 0)
                    return usage_error ("--prefetch-window '%s' is not a duration", optarg);
                break;
            case OPT_MAXPF:
                if (parse_u32 (optarg, "--max-prefetch", &o.max_prefetch) < 0)
                    return GR_EXIT_USAGE;
                if (o.max_prefetch == 0)
                    o.max_prefetch = 1;
                break;
            case OPT_OUTCAP:
                if (parse_sz (optarg, "--max-output", &o.max_output) < 0)
                    return GR_EXIT_USAGE;
                if (o.max_output == 0)
                    return usage_error ("--max-output '%s': keep at least 1 byte (to keep "
                                        "no output, use stdout: discard in the spec)",
                                        optarg);
                break;
            case OPT_SEED:
                if (gr_parse_u64 (optarg, &o.seed) < 0)
                    return usage_error ("--seed '%s' is not a whole number", optarg);
                break;
            case OPT_FORCE:
                o.force = true;
                break;
            case OPT_RETRY_FAILED:
                o.retry_failed = true;
                break;
            case OPT_NOJOURNAL:
                o.no_journal = true;
                break;
            case OPT_NOBIND:
                o.no_bind = true;
                break;
            case OPT_SITE:
                o.site_path = optarg;
                break;
            case OPT_METRICS_FILE:
                o.metrics_file = optarg;
                break;
            case OPT_METRICS_LISTEN:
                if (!strchr (optarg, ':'))
                    return usage_error ("--metrics-listen '%s' is not HOST:PORT (like "
                                        "127.0.0.1:9464, or :9464 for 127.0.0.1)", optarg);
                o.metrics_listen = optarg;
                break;
            case OPT_METRICS_INTERVAL:
                if (gr_parse_duration (optarg, &o.metrics_interval) < 0)
                    return usage_error ("--metrics-interval '%s' is not a duration (like 10s; "
                                        "0: only at the end)", optarg);
                break;
            case OPT_EVENTS: {
                gr_events_t e;
                if (gr_obs_parse_events (optarg, &e) < 0)
                    return usage_error ("--events '%s': give on, off or tasks", optarg);
                o.events = e;
                break;
            }
            case OPT_PROGRESS: {
                gr_progress_t pr;
                if (gr_obs_parse_progress (optarg, &pr) < 0)
                    return usage_error ("--progress '%s': give auto, bar, lines or none",
                                        optarg);
                o.progress = pr;
                break;
            }
            case OPT_PROGRESS_INTERVAL:
                if (gr_parse_duration (optarg, &o.progress_interval) < 0
                    || o.progress_interval <= 0)
                    return usage_error ("--progress-interval '%s' is not a positive duration",
                                        optarg);
                break;
            case OPT_CHAOS:
                chaos = optarg;
                break;
            case OPT_GRACE:
                if (gr_parse_duration (optarg, &o.grace) < 0)
                    return usage_error ("--grace '%s' is not a duration (like 30s or 2m)", optarg);
                break;
            case OPT_LOST:
                if (gr_parse_duration (optarg, &o.lost_after) < 0 || o.lost_after <= 0)
                    return usage_error ("--lost-after '%s' is not a positive duration", optarg);
                break;
            case OPT_SNAP:
                if (gr_parse_duration (optarg, &o.snapshot_interval) < 0)
                    return usage_error ("--snapshot-interval '%s' is not a duration", optarg);
                break;
            case OPT_COMMIT:
                if (gr_parse_duration (optarg, &o.commit_interval) < 0)
                    return usage_error ("--commit-interval '%s' is not a duration", optarg);
                break;
            case OPT_PREEMPT:
                if ((o.preempt_signal = gr_parse_signal (optarg)) <= 0)
                    return usage_error ("--preempt-signal '%s' is not a signal (like USR2, "
                                        "SIGUSR2 or 12)", optarg);
                break;
            case OPT_DEADLINE:
                if (gr_parse_deadline (optarg, &o.deadline) < 0)
                    return usage_error ("--deadline '%s' is not a time: give +DURATION "
                                        "(+2h), epoch seconds, or YYYY-mm-ddTHH:MM[:SS]",
                                        optarg);
                break;
            case 'q':
                o.quiet = 1;
                break;
            case 'v':
                verbose++;
                break;
            case 'h':
                usage (stdout);
                return 0;
            default:
                return usage_error ("%s", "bad option for 'run'");
        }
    }
    if (chaos ? chaos_opt (chaos, "--chaos", &o) < 0
              : (chaos = getenv ("GRIDRUN_CHAOS")) && *chaos
                    && chaos_opt (chaos, "GRIDRUN_CHAOS", &o) < 0)
        return GR_EXIT_USAGE;
    if (optind == argc - 1)
        o.spec_path = argv[optind];
    else if (!(optind == argc && o.run_dir))
        return usage_error ("%s", "'run' takes one job spec: gridrun run SPEC "
                                  "(or --run-dir DIR alone to resume)");
    /* Slurm tells a job when it ends; drain before it.  --deadline wins;
     * else SLURM_JOB_END_TIME, else the master asks squeue (Slurm before
     * 23.02 exports no end time). */
    if (o.deadline == 0) {
        gr_error_t err;
        if (gr_slurm_end_time (&o.deadline, &err) < 0) {
            fprintf (stderr, "gridrun: %s\n", err.text);
            return GR_EXIT_USAGE;
        }
        o.slurm_deadline = gr_slurm_job_id () != NULL;
    }

    /* SIGCHLD is blocked before MPI starts any thread, so that every thread
     * inherits the mask and only the worker's wait ever takes it.  Drain
     * signals only count, on every rank; the master acts on them. */
    if (gr_exec_init_process () < 0 || gr_runtime_signals_init (o.preempt_signal) < 0) {
        fprintf (stderr, "gridrun: cannot set up signals: %s\n", strerror (errno));
        return GR_EXIT_INTERNAL;
    }
    if (MPI_Init_thread (&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf (stderr, "gridrun: MPI_Init failed\n");
        return GR_EXIT_INTERNAL;
    }
    int rank;
    MPI_Comm_rank (MPI_COMM_WORLD, &rank);
    gr_log_init (rank);
    if (verbose)
        gr_log_set_level (verbose == 1 ? GR_LOG_INFO : verbose == 2 ? GR_LOG_DEBUG
                                                                    : GR_LOG_TRACE);
    rc = gr_run (&o);
    /* With a lost rank Open MPI can hang in MPI_Finalize; the outcome is
     * committed by now, so leave without it. */
    if (!gr_run_should_finalize ()) {
        fflush (NULL);
        _exit (rc);
    }
    MPI_Finalize ();
    return rc;
}

static void print_quoted (const char *s)
{
    bool plain = *s != '\0';
    for (const char *p = s; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9') || strchr ("-_./=:,+@%", *p)))
            plain = false;
    }
    if (plain)
        fputs (s, stdout);
    else {
        char *q = gr_shell_quote (s);
        fputs (q ? q : "?", stdout);
        free (q);
    }
}

static void print_labels (const char *what, const gr_label_match_t *m, size_t n)
{
    printf ("%s", what);
    for (size_t i = 0; i < n; i++) {
        printf ("%s%s=", i ? ", " : " ", m[i].key);
        for (size_t k = 0; k < m[i].nvalues; k++)
            printf ("%s%s", k ? "|" : "", m[i].values[k]);
    }
}

/* One line of the placement keys a definition sets, if any:
 * "    require gpu=a100|h100; locality era5; retry_away node". */
static void print_placement (const gr_taskdef_t *d)
{
    const char *sep = "    ";

    if (d->nrequire) {
        printf ("%s", sep);
        print_labels ("require", d->require, d->nrequire);
        sep = "; ";
    }
    if (d->nprefer) {
        printf ("%s", sep);
        print_labels ("prefer", d->prefer, d->nprefer);
        sep = "; ";
    }
    if (d->locality) {
        printf ("%slocality %s", sep, d->locality);
        sep = "; ";
    }
    if (d->retry_away != GR_LEVEL_NONE) {
        printf ("%sretry_away %s", sep, gr_level_name (d->retry_away));
        sep = "; ";
    }
    if (d->replicas == 1 && d->spread != GR_LEVEL_NONE) {
        printf ("%sspread %s (one replica: no effect)", sep, gr_level_name (d->spread));
        sep = "; ";
    }
    if (sep[0] == ';')
        printf ("\n");
}

static const struct option validate_longopts[] = {
    {"show", required_argument, NULL, 'n'},
    {"cpus-per-worker", required_argument, NULL, OPT_CPUS},
    {"gpus-per-worker", required_argument, NULL, OPT_GPUS},
    {"mem-per-worker", required_argument, NULL, OPT_MEM},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int cmd_validate (int argc, char **argv)
{
    gr_run_opts_t o;
    gr_spec_t *spec = NULL;
    gr_error_t err;
    gr_expand_t *x = NULL;
    uint32_t show = 5;
    int c, rc = GR_EXIT_USAGE;

    gr_run_opts_init (&o);
    optind = 1;
    while ((c = getopt_long (argc, argv, "n:h", validate_longopts, NULL)) != -1) {
        int w = worker_opt (c, optarg, &o);
        if (w < 0)
            return GR_EXIT_USAGE;
        if (w > 0)
            continue;
        switch (c) {
            case 'n':
                if (parse_u32 (optarg, "--show", &show) < 0)
                    return GR_EXIT_USAGE;
                break;
            case 'h':
                usage (stdout);
                return 0;
            default:
                return usage_error ("%s", "bad option for 'validate'");
        }
    }
    if (optind != argc - 1)
        return usage_error ("%s", "'validate' takes one job spec: gridrun validate SPEC");
    if (gr_spec_load (argv[optind], &spec, &err) < 0) {
        fprintf (stderr, "gridrun: %s\n", err.text);
        return GR_EXIT_USAGE;
    }
    if (o.cpus_per_worker || o.gpus_per_worker || o.mem_per_worker) {
        if (gr_spec_check_resources (spec, o.cpus_per_worker ? o.cpus_per_worker : UINT32_MAX,
                                     o.gpus_per_worker, o.mem_per_worker, &err) < 0) {
            fprintf (stderr, "gridrun: %s\n", err.text);
            goto out;
        }
    }
    printf ("%s: job '%s' is valid: %zu task definition%s, %" PRIu64 " task%s\n",
            argv[optind], spec->name, spec->ntasks, spec->ntasks == 1 ? "" : "s",
            spec->total, spec->total == 1 ? "" : "s");
    if (spec->quarantine.enabled) {
        char wb[32], cb[32];
        printf ("  quarantine: a %s where %" PRIu32 " tasks fail within %s gets no work for "
                "%s\n",
                gr_level_name (spec->quarantine.level), spec->quarantine.failures,
                gr_fmt_duration (spec->quarantine.window, wb, sizeof (wb)),
                gr_fmt_duration (spec->quarantine.cooloff, cb, sizeof (cb)));
    }
    if (!(x = gr_expand_create ())) {
        rc = GR_EXIT_INTERNAL;
        goto out;
    }
    uint32_t shown = 0;
    for (size_t i = 0; i < spec->ntasks && shown < show; i++) {
        const gr_taskdef_t *d = &spec->tasks[i];
        printf ("  %s: %" PRIu64 " task%s", d->name, d->count, d->count == 1 ? "" : "s");
        if (d->replicas > 1) {
            uint64_t combos = d->count / d->replicas;
            if (combos > 1)
                printf (" (%" PRIu64 " x %" PRIu32 " replicas", combos, d->replicas);
            else
                printf (" (%" PRIu32 " replicas", d->replicas);
            printf (", spread over %ss)", gr_level_name (d->spread));
        }
        if (d->group) {
            printf (" (group%s of %" PRIu32 " process%s", d->count == 1 ? "" : "s", d->ranks,
                    d->ranks == 1 ? "" : "es");
            if (d->ranks_per_node)
                printf (", at most %" PRIu32 " a node", d->ranks_per_node);
            printf (", %" PRIu32 " cpu%s", d->cpus, d->cpus == 1 ? "" : "s");
            if (d->gpus)
                printf (" and %" PRIu32 " gpu%s", d->gpus, d->gpus == 1 ? "" : "s");
            printf (" each, %" PRIu32 " restart%s)", d->retry.max,
                    d->retry.max == 1 ? "" : "s");
        }
        if (d->nafter) {
            printf (", after");
            for (size_t j = 0; j < d->nafter; j++)
                printf (" %s", spec->tasks[d->after[j]].name);
        }
        printf ("\n");
        print_placement (d);
        for (uint64_t k = 0; k < d->count && shown < show; k++, shown++) {
            gr_render_ctx_t ctx = {.run_dir = "RUN", .attempt = 1};
            gr_task_cmd_t cmd;
            if (gr_expand_select (x, d, k) < 0
                || gr_expand_render (x, &ctx, &cmd, &err) < 0) {
                fprintf (stderr, "gridrun: %s: %s\n", argv[optind], err.text);
                goto out;
            }
            /* The spec is fine, but this task could not start here. */
            if (gr_exec_check_size (cmd.argv, cmd.env, &err) < 0)
                fprintf (stderr, "gridrun: warning: %s: task %s could not start on this host: "
                         "%s\n", argv[optind], gr_expand_name (x), err.text);
            const char *ps = gr_expand_params_string (x);
            printf ("    %016" PRIx64 "  %s%s%s: ", gr_expand_key (x), gr_expand_name (x),
                    *ps ? "  " : "", ps);
            if (!cmd.argv)
                printf ("builtin noop");
            for (char **a = cmd.argv; a && *a; a++) {
                print_quoted (*a);
                if (a[1])
                    putchar (' ');
            }
            putchar ('\n');
        }
    }
    if (shown < spec->total)
        printf ("  ... %" PRIu64 " more\n", spec->total - shown);
    if (!(o.cpus_per_worker || o.gpus_per_worker || o.mem_per_worker))
        printf ("Resources are checked against the workers when the run starts "
                "(or give --cpus-per-worker/--gpus-per-worker here).\n");
    rc = 0;
out:
    gr_expand_destroy (x);
    gr_spec_destroy (spec);
    return rc;
}

typedef struct out_match {
    gr_outlog_rec_t best;
    char name[256];
    char log[PATH_MAX];
    int found;
    uint32_t want_attempt;
} out_match_t;

static int out_cb (const gr_outlog_rec_t *rec, const char *log_path, void *arg)
{
    out_match_t *m = arg;
    if (m->want_attempt ? rec->attempt != m->want_attempt
                        : (m->found && rec->attempt < m->best.attempt))
        return 0;
    m->best = *rec;
    snprintf (m->name, sizeof (m->name), "%s", rec->name);
    m->best.name = m->name;
    snprintf (m->log, sizeof (m->log), "%s", log_path);
    m->found++;
    return 0;
}

static const struct option output_longopts[] = {
    {"stderr", no_argument, NULL, 'e'},
    {"attempt", required_argument, NULL, 'a'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Find the output of one task (or one process of a group, NAME/rankK) in
 * RUN, and print it unless m is only asked whether there is one: 1 found,
 * 0 no such task, -1 failed (said why). */
static int output_one (const char *run, const char *name, uint32_t attempt, int want_err,
                       int print)
{
    out_match_t m;
    gr_error_t err;
    char dir[PATH_MAX];

    memset (&m, 0, sizeof (m));
    m.want_attempt = attempt;
    snprintf (dir, sizeof (dir), "%s/out", run);
    if (gr_outlog_scan (dir, name, out_cb, &m, &err) < 0) {
        fprintf (stderr, "gridrun: %s\n", err.text);
        return -1;
    }
    if (!m.found || !print)
        return m.found ? 1 : 0;
    uint64_t off = want_err ? m.best.err_off : m.best.out_off;
    uint64_t len = want_err ? m.best.err_len : m.best.out_len;
    if (len && gr_outlog_copy_out (m.log, off, len, stdout) < 0) {
        fprintf (stderr, "gridrun: cannot read %s: %s\n", m.log, strerror (errno));
        return -1;
    }
    fflush (stdout);
    return 1;
}

static int cmd_output (int argc, char **argv)
{
    int c, want_err = 0, rc, k;
    uint32_t attempt = 0;
    char part[300];

    optind = 1;
    while ((c = getopt_long (argc, argv, "ea:h", output_longopts, NULL)) != -1) {
        switch (c) {
            case 'e':
                want_err = 1;
                break;
            case 'a':
                if (parse_u32 (optarg, "--attempt", &attempt) < 0)
                    return GR_EXIT_USAGE;
                break;
            case 'h':
                usage (stdout);
                return 0;
            default:
                return usage_error ("%s", "bad option for 'output'");
        }
    }
    if (optind != argc - 2)
        return usage_error ("%s", "usage: gridrun output RUN_DIR TASK (a name like "
                                  "sim[3] or a 16-digit key)");
    const char *run = argv[optind], *name = argv[optind + 1];
    if ((rc = output_one (run, name, attempt, want_err, 1)) != 0)
        return rc < 0 ? GR_EXIT_USAGE : 0;
    /* A group task: the output of each of its processes in turn, each
     * under a header. */
    for (k = 0;; k++) {
        snprintf (part, sizeof (part), "%s/rank%d", name, k);
        if ((rc = output_one (run, part, attempt, want_err, 0)) <= 0)
            break;
        printf ("%s==> %s <==\n", k ? "\n" : "", part);
        if ((rc = output_one (run, part, attempt, want_err, 1)) < 0)
            break;
    }
    if (rc < 0)
        return 1;
    if (k == 0) {
        fprintf (stderr, "gridrun: no task '%s'%s in %s; give a task name such as "
                 "sim[3] or its key (see gridrun validate)\n",
                 name, attempt ? " with that attempt" : "", run);
        return 1;
    }
    return 0;
}

int main (int argc, char **argv)
{
    if (argc < 2) {
        usage (stderr);
        return GR_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp (cmd, "run") == 0)
        return cmd_run (argc - 1, argv + 1);
    gr_log_init (-1);
    if (strcmp (cmd, "validate") == 0)
        return cmd_validate (argc - 1, argv + 1);
    if (strcmp (cmd, "output") == 0)
        return cmd_output (argc - 1, argv + 1);
    if (strcmp (cmd, "status") == 0)
        return gr_cmd_status (argc - 1, argv + 1);
    if (strcmp (cmd, "report") == 0)
        return gr_cmd_report (argc - 1, argv + 1);
    if (strcmp (cmd, "launch") == 0)
        return gr_cmd_launch (argc - 1, argv + 1);
    if (strcmp (cmd, "topo") == 0)
        return gr_cmd_topo (argc - 1, argv + 1);
    if (strcmp (cmd, "ckpt") == 0)
        return gr_cmd_ckpt (argc - 1, argv + 1);
    if (strcmp (cmd, "submit") == 0)
        return gr_cmd_submit (argc - 1, argv + 1);
    if (strcmp (cmd, "help") == 0 || strcmp (cmd, "--help") == 0
        || strcmp (cmd, "-h") == 0) {
        usage (stdout);
        return 0;
    }
    if (strcmp (cmd, "version") == 0 || strcmp (cmd, "--version") == 0) {
        printf ("gridrun %s\n", PACKAGE_VERSION);
        return 0;
    }
    return usage_error ("unknown command '%s'", cmd);
}
