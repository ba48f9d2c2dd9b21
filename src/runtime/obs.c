/* Metrics, the event log and progress (obs.h, doc/observability.md). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "obs.h"
#include "src/common/gtime.h"
#include "src/common/hist.h"
#include "src/common/log.h"
#include "src/common/prom.h"
#include "src/common/units.h"

#define NAME_MAX_ 64
/* Throughput for progress and ETA: done counts sampled this often, kept
 * for RATE_SAMPLES samples (the last 10 s). */
#define RATE_EVERY 0.5
#define RATE_SAMPLES 20
#define BAR_EVERY 0.25
#define EVENTS_FLUSH 1.0
#define EVENTS_BATCH 0.25

typedef struct {
    char host[NAME_MAX_], rack[NAME_MAX_], zone[NAME_MAX_];
    uint32_t cpus;
    bool known, lost;
    double busy;      /* cpu-seconds of finished attempts */
    uint64_t done, failures;
    uint64_t bn;      /* tasks_done not yet written: count, wall times */
    double bsum, bmax, bbusy;
} wobs_t;

typedef struct {
    int fd;
    double since;
    char in[2048];
    size_t inlen;
    char *out;
    size_t outlen, sent;
} http_conn_t;

struct gr_obs {
    gr_obs_opts_t o;
    char *run_dir, *name, *metrics_path;
    char label[300];        /* run="NAME", escaped: every sample's label */
    int nranks;
    wobs_t *w;
    gr_hist_t wall, queued, dispatch;
    uint64_t outcomes[8];   /* by gr_outcome_kind_t */
    uint64_t timeouts, lost_workers, quarantines, drains, snapshots;
    double t0, wall0;
    /* Events. */
    FILE *ev;
    bool ev_failed;
    double ev_flushed;
    double batch_due;       /* the next tasks_done lines */
    /* Metrics. */
    bool metrics_failed;
    double metrics_due;
    /* Progress. */
    gr_progress_t progress;
    double progress_due;
    bool bar_drawn;
    bool line_printed;      /* lines: one went out (then a last one does too) */
    double rate_t[RATE_SAMPLES];
    uint64_t rate_n[RATE_SAMPLES];
    int rate_i, rate_k;
    double rate_due;
    const gr_sched_stats_t *last;
    int code;               /* the exit code once known; -1 while it runs */
    /* --metrics-listen */
    int listen_fd;
    http_conn_t http[8];
    int nhttp;
};

/* The bar clears itself before a log line (gr_log_set_hook). */
static gr_obs_t *bar_owner;

void gr_obs_opts_init (gr_obs_opts_t *o)
{
    memset (o, 0, sizeof (*o));
    o->metrics_interval = 10;
    o->events = GR_EVENTS_ON;
    o->progress = GR_PROGRESS_AUTO;
    o->progress_interval = 30;
}

int gr_obs_parse_progress (const char *s, gr_progress_t *p)
{
    static const char *const names[] = {"auto", "none", "bar", "lines"};
    for (int i = 0; i < 4; i++)
        if (strcmp (s, names[i]) == 0) {
            *p = (gr_progress_t)i;
            return 0;
        }
    errno = EINVAL;
    return -1;
}

int gr_obs_parse_events (const char *s, gr_events_t *e)
{
    static const char *const names[] = {"off", "on", "tasks"};
    for (int i = 0; i < 3; i++)
        if (strcmp (s, names[i]) == 0) {
            *e = (gr_events_t)i;
            return 0;
        }
    errno = EINVAL;
    return -1;
}

/* ---- Events ------------------------------------------------------------ */

/* Write ev (its reference is taken) as one line, with the time and the
 * event's name first. */
static void emit (gr_obs_t *ob, const char *event, json_t *ev)
{
    json_t *line;

    if (!ob->ev || !ev) {
        json_decref (ev);
        return;
    }
    line = json_pack ("{s:f, s:s}", "time", gr_wallclock (), "event", event);
    if (line && json_object_update (line, ev) == 0 &&
        json_dumpf (line, ob->ev, JSON_COMPACT | JSON_PRESERVE_ORDER) == 0 &&
        fputc ('\n', ob->ev) != EOF) {
        json_decref (line);
        json_decref (ev);
        return;
    }
    json_decref (line);
    json_decref (ev);
    if (!ob->ev_failed)
        GR_WARN ("cannot write the event log %s/events.jsonl: %s; no more events", ob->run_dir,
                 strerror (errno));
    ob->ev_failed = true;
    fclose (ob->ev);
    ob->ev = NULL;
}

static const char *host_of (const gr_obs_t *ob, int rank)
{
    return rank >= 0 && rank < ob->nranks && ob->w[rank].known ? ob->w[rank].host : "";
}

static const char *outcome_name (gr_outcome_kind_t k)
{
    switch (k) {
        case GR_OUTCOME_DONE:
            return "done";
        case GR_OUTCOME_RETRY:
            return "retry";
        case GR_OUTCOME_FAILED:
            return "failed";
        case GR_OUTCOME_POISON:
            return "poison";
        case GR_OUTCOME_REQUEUED:
            return "requeued";
        default:
            return "stale";
    }
}

/* The tasks that succeeded on each worker since the last time: a line a
 * worker.  A line a result message would cost more than the tasks at
 * full dispatch rate (tens of thousands of messages a second). */
static void batches_out (gr_obs_t *ob)
{
    for (int r = 0; r < ob->nranks; r++) {
        wobs_t *w = &ob->w[r];
        if (w->bn == 0)
            continue;
        emit (ob, "tasks_done",
              json_pack ("{s:i, s:s, s:I, s:f, s:f, s:f}", "worker", r, "host", host_of (ob, r),
                         "n", (json_int_t)w->bn, "wall_sum", w->bsum, "wall_max", w->bmax,
                         "busy", w->bbusy));
        w->bn = 0;
        w->bsum = w->bmax = w->bbusy = 0;
    }
}

/* ---- Life cycle -------------------------------------------------------- */

static void bar_clear (void);

gr_obs_t *gr_obs_create (const gr_obs_opts_t *o, int nranks)
{
    gr_obs_t *ob = calloc (1, sizeof (*ob));
    char path[PATH_MAX];

    if (!ob || !(ob->w = calloc ((size_t)(nranks > 0 ? nranks : 1), sizeof (*ob->w))) ||
        !(ob->run_dir = strdup (o->run_dir)) || !(ob->name = strdup (o->name ? o->name : ""))) {
        if (ob) {
            free (ob->w);
            free (ob->run_dir);
            free (ob);
        }
        return NULL;
    }
    /* The run's name is a label of every sample: escaped once. */
    char esc[256];
    snprintf (ob->label, sizeof (ob->label), "run=\"%s\"",
              gr_prom_escape (ob->name, esc, sizeof (esc)));
    ob->o = *o;
    ob->nranks = nranks;
    ob->code = -1;
    ob->listen_fd = -1;
    ob->t0 = gr_now ();
    ob->wall0 = gr_wallclock ();
    gr_hist_init (&ob->wall);
    gr_hist_init (&ob->queued);
    gr_hist_init (&ob->dispatch);
    if (!o->metrics_file)
        snprintf (path, sizeof (path), "%s/metrics.prom", o->run_dir);
    else
        snprintf (path, sizeof (path), "%s", o->metrics_file);
    if (*path && !(ob->metrics_path = strdup (path))) {
        free (ob->w);
        free (ob->run_dir);
        free (ob->name);
        free (ob);
        return NULL;
    }
    if (o->events != GR_EVENTS_OFF) {
        snprintf (path, sizeof (path), "%s/events.jsonl", o->run_dir);
        int fd = open (path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd < 0 || !(ob->ev = fdopen (fd, "a"))) {
            GR_WARN ("cannot open the event log %s: %s; running without it", path,
                     strerror (errno));
            if (fd >= 0)
                close (fd);
        }
    }
    ob->progress = o->progress;
    if (ob->progress == GR_PROGRESS_AUTO) {
        /* Under mpirun stderr is a pipe; gridrun launch says whether its
         * own is a terminal. */
        const char *tty = getenv ("GRIDRUN_TTY");
        ob->progress = isatty (STDERR_FILENO) || (tty && strcmp (tty, "1") == 0)
                           ? GR_PROGRESS_BAR
                           : GR_PROGRESS_LINES;
    }
    if (ob->progress == GR_PROGRESS_BAR) {
        bar_owner = ob;
        gr_log_set_hook (bar_clear);
    }
    ob->progress_due = ob->t0 + (ob->progress == GR_PROGRESS_BAR ? BAR_EVERY
                                                                   : o->progress_interval);
    ob->metrics_due = o->metrics_interval > 0 ? ob->t0 + o->metrics_interval : INFINITY;
    return ob;
}

void gr_obs_worker (gr_obs_t *ob, int rank, const char *host, const char *rack,
                    const char *zone, uint32_t cpus)
{
    if (!ob || rank < 0 || rank >= ob->nranks)
        return;
    wobs_t *w = &ob->w[rank];
    snprintf (w->host, sizeof (w->host), "%s", host ? host : "?");
    snprintf (w->rack, sizeof (w->rack), "%s", rack ? rack : w->host);
    snprintf (w->zone, sizeof (w->zone), "%s", zone ? zone : "default");
    w->cpus = cpus;
    w->known = true;
}

void gr_obs_start (gr_obs_t *ob, uint32_t incarnation, const gr_sched_stats_t *st,
                   int nworkers)
{
    if (!ob)
        return;
    ob->last = st;
    emit (ob, "run_start",
          json_pack ("{s:s, s:s, s:i, s:I, s:I, s:i, s:i}", "run", ob->name, "run_dir",
                     ob->run_dir, "incarnation", (int)incarnation, "tasks",
                     (json_int_t)st->total, "done_before", (json_int_t)st->resumed_done,
                     "workers", nworkers, "pid", (int)getpid ()));
}

/* ---- Results ----------------------------------------------------------- */

void gr_obs_result (gr_obs_t *ob, int worker, const gr_outcome_t *o, const char *label,
                    uint32_t cpus, double wall, double queued, bool has_result)
{
    wobs_t *w;

    if (!ob)
        return;
    /* The common case first, in as few steps as can be: at full dispatch
     * rate this runs millions of times a second. */
    if (o->kind == GR_OUTCOME_DONE && has_result && ob->o.events != GR_EVENTS_TASKS &&
        worker >= 0 && worker < ob->nranks) {
        double b = wall * (double)(cpus ? cpus : 1);
        w = &ob->w[worker];
        ob->outcomes[GR_OUTCOME_DONE]++;
        gr_hist_add (&ob->wall, wall);
        gr_hist_add (&ob->queued, queued);
        w->busy += b;
        w->done++;
        w->bn++;
        w->bsum += wall;
        w->bbusy += b;
        if (wall > w->bmax)
            w->bmax = wall;
        return;
    }
    if ((unsigned)o->kind < sizeof (ob->outcomes) / sizeof (ob->outcomes[0]))
        ob->outcomes[o->kind]++;
    w = worker >= 0 && worker < ob->nranks ? &ob->w[worker] : NULL;
    if (has_result) {
        gr_hist_add (&ob->wall, wall);
        gr_hist_add (&ob->queued, queued);
        if (w)
            w->busy += wall * (double)(cpus ? cpus : 1);
    }
    bool timeout = o->kind != GR_OUTCOME_DONE && strncmp (o->reason, "timeout", 7) == 0;
    char key[17];
    if (timeout)
        ob->timeouts++;
    if (o->kind == GR_OUTCOME_DONE) {
        if (w)
            w->done++;
        if (ob->o.events == GR_EVENTS_TASKS) {
            snprintf (key, sizeof (key), "%016" PRIx64, o->key);
            emit (ob, "task_end",
                  json_pack ("{s:s, s:s, s:i, s:s, s:i, s:s, s:f, s:f, s:i}", "task", label,
                             "key", key, "attempt", (int)o->attempt, "outcome", "done",
                             "worker", worker, "host", host_of (ob, worker), "wall", wall,
                             "queued", queued, "cpus", (int)(cpus ? cpus : 1)));
        }
        else if (w) {
            w->bn++;
            w->bsum += wall;
            w->bbusy += wall * (double)(cpus ? cpus : 1);
            if (wall > w->bmax)
                w->bmax = wall;
        }
        return;
    }
    if ((o->kind == GR_OUTCOME_RETRY || o->kind == GR_OUTCOME_FAILED ||
         o->kind == GR_OUTCOME_POISON) && w)
        w->failures++;
    if (!ob->ev)
        return;
    snprintf (key, sizeof (key), "%016" PRIx64, o->key);
    const char *event = timeout && o->kind != GR_OUTCOME_REQUEUED ? "task_timeout"
                        : o->kind == GR_OUTCOME_RETRY             ? "task_retry"
                        : o->kind == GR_OUTCOME_FAILED            ? "task_failed"
                        : o->kind == GR_OUTCOME_POISON            ? "task_poison"
                                                                  : "task_requeued";
    json_t *ev = json_pack ("{s:s, s:s, s:i, s:s, s:s, s:i, s:s}", "task", label, "key", key,
                            "attempt", (int)o->attempt, "outcome", outcome_name (o->kind),
                            "reason", o->reason, "worker", worker, "host",
                            host_of (ob, worker));
    if (ev && has_result) {
        json_object_set_new (ev, "wall", json_real (wall));
        json_object_set_new (ev, "cpus", json_integer (cpus ? cpus : 1));
    }
    if (ev && o->kind == GR_OUTCOME_RETRY)
        json_object_set_new (ev, "retry_in", json_real (o->delay));
    emit (ob, event, ev);
}

void gr_obs_dispatch (gr_obs_t *ob, double latency)
{
    if (ob)
        gr_hist_add (&ob->dispatch, latency);
}

void gr_obs_worker_lost (gr_obs_t *ob, int rank, uint64_t requeued)
{
    if (!ob)
        return;
    ob->lost_workers++;
    if (rank >= 0 && rank < ob->nranks)
        ob->w[rank].lost = true;
    emit (ob, "worker_lost", json_pack ("{s:i, s:s, s:I}", "worker", rank, "host",
                                        host_of (ob, rank), "requeued", (json_int_t)requeued));
}

void gr_obs_quarantine (gr_obs_t *ob, const char *domain, bool on, double seconds)
{
    if (!ob)
        return;
    ob->quarantines += on;
    emit (ob, on ? "quarantine" : "quarantine_end",
          json_pack ("{s:s, s:f}", "domain", domain, "seconds", seconds));
}

void gr_obs_drain (gr_obs_t *ob, const char *why, double grace)
{
    if (!ob)
        return;
    batches_out (ob);
    ob->drains++;
    emit (ob, "drain", json_pack ("{s:s, s:f}", "reason", why, "grace", grace));
}

void gr_obs_snapshot (gr_obs_t *ob, const char *state, double seconds)
{
    if (!ob)
        return;
    ob->snapshots++;
    emit (ob, "snapshot", json_pack ("{s:s, s:f}", "state", state, "seconds", seconds));
}

void gr_obs_chaos (gr_obs_t *ob, const char *fault, int rank, uint64_t n)
{
    if (!ob)
        return;
    emit (ob, "chaos", json_pack ("{s:s, s:i, s:s, s:I}", "fault", fault, "rank", rank,
                                  "host", host_of (ob, rank), "count", (json_int_t)n));
}

/* ---- Rates and progress ------------------------------------------------ */

static uint64_t finished (const gr_sched_stats_t *st)
{
    return st->done + st->failed + st->skipped;
}

/* Tasks a second over the last samples (since the start before there are
 * two). */
static double rate_now (const gr_obs_t *ob, double now, const gr_sched_stats_t *st)
{
    uint64_t n = finished (st) - st->resumed_done;

    if (ob->rate_k >= 2) {
        int oldest = (ob->rate_i - ob->rate_k + RATE_SAMPLES) % RATE_SAMPLES;
        double dt = now - ob->rate_t[oldest];
        if (dt > 0.2)
            return (double)(n - ob->rate_n[oldest]) / dt;
    }
    return now > ob->t0 ? (double)n / (now - ob->t0) : 0;
}

static void rate_sample (gr_obs_t *ob, double now, const gr_sched_stats_t *st)
{
    if (now < ob->rate_due)
        return;
    ob->rate_t[ob->rate_i] = now;
    ob->rate_n[ob->rate_i] = finished (st) - st->resumed_done;
    ob->rate_i = (ob->rate_i + 1) % RATE_SAMPLES;
    if (ob->rate_k < RATE_SAMPLES)
        ob->rate_k++;
    ob->rate_due = now + RATE_EVERY;
}

static void progress_text (const gr_obs_t *ob, double now, const gr_sched_stats_t *st,
                           char *buf, size_t len)
{
    uint64_t fin = finished (st), left = st->total > fin ? st->total - fin : 0;
    double rate = rate_now (ob, now, st), pct = st->total ? 100.0 * (double)fin / st->total : 100;
    char eta[32] = "?", el[32];

    if (rate > 0)
        gr_fmt_duration ((double)left / rate, eta, sizeof (eta));
    else if (left == 0)
        snprintf (eta, sizeof (eta), "0s");
    gr_fmt_duration (now - ob->t0, el, sizeof (el));
    snprintf (buf, len,
              "%5.1f%% %" PRIu64 "/%" PRIu64 " done, %" PRIu64 " failed, %" PRIu64
              " running, %.1f tasks/s, elapsed %s, ETA %s",
              pct, st->done, st->total, st->failed, st->running, rate, el, eta);
}

static void bar_clear (void)
{
    if (bar_owner && bar_owner->bar_drawn) {
        ssize_t w = write (STDERR_FILENO, "\r\033[K", 4);
        (void)w;
        bar_owner->bar_drawn = false;
    }
}

static void progress (gr_obs_t *ob, double now, const gr_sched_stats_t *st, bool last)
{
    char text[256], line[400];
    int n;

    if (ob->progress == GR_PROGRESS_NONE || (!last && now < ob->progress_due) ||
        (last && ob->progress == GR_PROGRESS_LINES && !ob->line_printed))
        return;
    progress_text (ob, now, st, text, sizeof (text));
    if (ob->progress == GR_PROGRESS_BAR) {
        uint64_t fin = finished (st);
        int width = 24, full = st->total ? (int)((double)width * fin / st->total) : width;
        char bar[32];
        for (int i = 0; i < width; i++)
            bar[i] = i < full ? '#' : '-';
        bar[width] = '\0';
        n = snprintf (line, sizeof (line), "\r[%s] %s\033[K%s", bar, text, last ? "\n" : "");
        ob->bar_drawn = !last;
        ob->progress_due = now + BAR_EVERY;
    } else {
        n = snprintf (line, sizeof (line), "gridrun: %s%s\n", last ? "finished: " : "", text);
        ob->progress_due = now + ob->o.progress_interval;
        ob->line_printed = true;
    }
    if (n > 0) {
        ssize_t w = write (STDERR_FILENO, line, (size_t)n < sizeof (line) ? (size_t)n
                                                                          : sizeof (line) - 1);
        (void)w;
    }
}

/* ---- Metrics ----------------------------------------------------------- */

/* name{labels} value, with the run's label first. */
static void put (FILE *f, const gr_obs_t *ob, const char *name, const char *labels, double v)
{
    gr_prom_put (f, ob->label, name, labels, v);
}


static void summary_of (FILE *f, const gr_obs_t *ob, const char *name, const char *help,
                        const gr_hist_t *h)
{
    static const double qs[] = {0.5, 0.95, 0.99};
    char l[32];

    gr_prom_head (f, name, "summary", help);
    for (int i = 0; i < 3; i++) {
        snprintf (l, sizeof (l), "quantile=\"%g\"", qs[i]);
        put (f, ob, name, l, gr_hist_quantile (h, qs[i]));
    }
    fprintf (f, "%s_sum{%s} %.17g\n%s_count{%s} %" PRIu64 "\n", name, ob->label, h->sum, name,
             ob->label, h->n);
}


/* The metrics in Prometheus's text format, into f. */
static void metrics_text (gr_obs_t *ob, double now, const gr_sched_stats_t *st, int code,
                          FILE *f)
{
    char l[512], a[NAME_MAX_ * 2], b[NAME_MAX_ * 2], c[NAME_MAX_ * 2];
    double el = now - ob->t0;

    gr_prom_head (f, "gridrun_tasks", "gauge", "Tasks of the run by state.");
    put (f, ob, "gridrun_tasks", "state=\"total\"", (double)st->total);
    put (f, ob, "gridrun_tasks", "state=\"done\"", (double)st->done);
    put (f, ob, "gridrun_tasks", "state=\"failed\"", (double)st->failed);
    put (f, ob, "gridrun_tasks", "state=\"skipped\"", (double)st->skipped);
    put (f, ob, "gridrun_tasks", "state=\"running\"", (double)st->running);
    put (f, ob, "gridrun_tasks", "state=\"waiting\"", (double)st->waiting);
    gr_prom_head (f, "gridrun_attempts_total", "counter", "Attempts that ended, by outcome.");
    for (int k = GR_OUTCOME_DONE; k <= GR_OUTCOME_REQUEUED; k++) {
        if (k == GR_OUTCOME_STALE)
            continue;
        snprintf (l, sizeof (l), "outcome=\"%s\"", outcome_name ((gr_outcome_kind_t)k));
        put (f, ob, "gridrun_attempts_total", l, (double)ob->outcomes[k]);
    }
    gr_prom_head (f, "gridrun_timeouts_total", "counter", "Attempts ended by their timeout.");
    put (f, ob, "gridrun_timeouts_total", NULL, (double)ob->timeouts);
    gr_prom_head (f, "gridrun_crashes_total", "counter",
                  "Attempts ended by a signal gridrun did not send.");
    put (f, ob, "gridrun_crashes_total", NULL, (double)st->crashes);
    gr_prom_head (f, "gridrun_retries_total", "counter", "Retries scheduled.");
    put (f, ob, "gridrun_retries_total", NULL, (double)st->retries);
    summary_of (f, ob, "gridrun_task_wall_seconds", "Wall time of attempts that ran.", &ob->wall);
    summary_of (f, ob, "gridrun_queue_wait_seconds",
                "Time an attempt waited on its worker between its assignment and its start.",
                &ob->queued);
    summary_of (f, ob, "gridrun_dispatch_latency_seconds",
                "Time from a worker's request for work to the master's answer.", &ob->dispatch);
    gr_prom_head (f, "gridrun_throughput_tasks_per_second", "gauge",
          "Tasks finished a second, over the last 10 s.");
    put (f, ob, "gridrun_throughput_tasks_per_second", NULL, rate_now (ob, now, st));
    gr_prom_head (f, "gridrun_elapsed_seconds", "gauge", "Seconds since this incarnation started.");
    put (f, ob, "gridrun_elapsed_seconds", NULL, el);
    gr_prom_head (f, "gridrun_worker_utilization", "gauge",
          "Busy cpu-seconds of a worker's finished attempts over its cpus times the elapsed "
          "time.");
    for (int r = 0; r < ob->nranks; r++) {
        const wobs_t *w = &ob->w[r];
        if (!w->known)
            continue;
        snprintf (l, sizeof (l), "worker=\"%d\",node=\"%s\"", r,
                  gr_prom_escape (w->host, a, sizeof (a)));
        put (f, ob, "gridrun_worker_utilization", l,
             el > 0 && w->cpus ? w->busy / ((double)w->cpus * el) : 0);
    }
    gr_prom_head (f, "gridrun_node_utilization", "gauge",
          "Busy cpu-seconds of a node's workers over their cpus times the elapsed time.");
    for (int r = 0; r < ob->nranks; r++) {
        const wobs_t *w = &ob->w[r];
        bool first = w->known;
        for (int q = 0; first && q < r; q++)
            first = !(ob->w[q].known && strcmp (ob->w[q].host, w->host) == 0);
        if (!first)
            continue;
        double busy = 0, cpus = 0;
        for (int q = r; q < ob->nranks; q++)
            if (ob->w[q].known && strcmp (ob->w[q].host, w->host) == 0) {
                busy += ob->w[q].busy;
                cpus += ob->w[q].cpus;
            }
        snprintf (l, sizeof (l), "node=\"%s\",rack=\"%s\",zone=\"%s\"",
                  gr_prom_escape (w->host, a, sizeof (a)), gr_prom_escape (w->rack, b, sizeof (b)),
                  gr_prom_escape (w->zone, c, sizeof (c)));
        put (f, ob, "gridrun_node_utilization", l, el > 0 && cpus > 0 ? busy / (cpus * el) : 0);
    }
    gr_prom_head (f, "gridrun_failures_total", "counter",
          "Failed attempts (retried or not) by the failure domain they ran in.");
    for (int r = 0; r < ob->nranks; r++) {
        const wobs_t *w = &ob->w[r];
        if (!w->known)
            continue;
        snprintf (l, sizeof (l), "worker=\"%d\",node=\"%s\",rack=\"%s\",zone=\"%s\"", r,
                  gr_prom_escape (w->host, a, sizeof (a)), gr_prom_escape (w->rack, b, sizeof (b)),
                  gr_prom_escape (w->zone, c, sizeof (c)));
        put (f, ob, "gridrun_failures_total", l, (double)w->failures);
    }
    gr_prom_head (f, "gridrun_workers", "gauge", "Workers by state.");
    int live = 0;
    for (int r = 0; r < ob->nranks; r++)
        live += ob->w[r].known && !ob->w[r].lost;
    put (f, ob, "gridrun_workers", "state=\"live\"", live);
    put (f, ob, "gridrun_workers", "state=\"lost\"", (double)ob->lost_workers);
    gr_prom_head (f, "gridrun_quarantines_total", "counter", "Failure domains put in quarantine.");
    put (f, ob, "gridrun_quarantines_total", NULL, (double)ob->quarantines);
    gr_prom_head (f, "gridrun_snapshots_total", "counter", "run.h5 snapshots written.");
    put (f, ob, "gridrun_snapshots_total", NULL, (double)ob->snapshots);
    gr_prom_head (f, "gridrun_exit_code", "gauge",
                  "The run's exit code once it ended; -1 while it runs.");
    put (f, ob, "gridrun_exit_code", NULL, code);
    gr_prom_head (f, "gridrun_last_update_timestamp_seconds", "gauge",
                  "When this file was written.");
    put (f, ob, "gridrun_last_update_timestamp_seconds", NULL, gr_wallclock ());
}

static void write_metrics (gr_obs_t *ob, double now, const gr_sched_stats_t *st, int code)
{
    char tmp[PATH_MAX + 8];
    FILE *f;

    ob->code = code;
    if (!ob->metrics_path || ob->metrics_failed)
        return;
    if (!(f = gr_prom_begin (ob->metrics_path, tmp, sizeof (tmp)))) {
        GR_WARN ("cannot write the metrics file %s: %s; no more metrics", tmp, strerror (errno));
        ob->metrics_failed = true;
        return;
    }
    metrics_text (ob, now, st, code, f);
    if (gr_prom_commit (f, tmp, ob->metrics_path) < 0) {
        GR_WARN ("cannot write the metrics file %s: %s; no more metrics", ob->metrics_path,
                 strerror (errno));
        ob->metrics_failed = true;
    }
}

/* ---- Serving the metrics (--metrics-listen) ----------------------------- */

/* An HTTP/1.0 server of one page in the master's loop: nonblocking, a
 * few connections at once, each given HTTP_WAIT to send its request;
 * GET /metrics gets the metrics as they are now, anything else 404. */
#define HTTP_MAX 8
#define HTTP_WAIT 2.0

static void http_drop (gr_obs_t *ob, int i)
{
    close (ob->http[i].fd);
    free (ob->http[i].out);
    ob->http[i] = ob->http[--ob->nhttp];
}

/* 0, or -1 when out of memory (the connection dropped). */
static int http_answer (gr_obs_t *ob, int i, double now)
{
    http_conn_t *h = &ob->http[i];
    char *body = NULL, *out = NULL;
    size_t blen = 0, olen = 0;
    bool metrics = strncmp (h->in, "GET /metrics ", 13) == 0 ||
                   strncmp (h->in, "GET /metrics?", 13) == 0;
    FILE *f = open_memstream (&body, &blen);

    if (!f) {
        http_drop (ob, i);
        return -1;
    }
    if (metrics && ob->last)
        metrics_text (ob, now, ob->last, ob->code, f);
    else
        fprintf (f, "gridrun serves its metrics at /metrics\n");
    fclose (f);
    FILE *o = open_memstream (&out, &olen);
    if (o) {
        fprintf (o,
                 "HTTP/1.0 %s\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                 "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                 metrics && ob->last ? "200 OK" : "404 Not Found", blen);
        fwrite (body, 1, blen, o);
        fclose (o);
    }
    free (body);
    if (!out) {
        http_drop (ob, i);
        return -1;
    }
    h->out = out;
    h->outlen = olen;
    h->sent = 0;
    return 0;
}

int gr_obs_listen (gr_obs_t *ob, const char *spec, gr_error_t *errp)
{
    char host[128] = "127.0.0.1", port[16];
    const char *colon = strrchr (spec, ':');
    struct addrinfo hints, *res = NULL;
    int rc, one = 1;

    if (!colon || !colon[1] || strlen (colon + 1) >= sizeof (port) ||
        (size_t)(colon - spec) >= sizeof (host))
        return gr_errprintf (errp,
                             "--metrics-listen '%s' is not HOST:PORT (like 127.0.0.1:9464 or "
                             ":9464, which is 127.0.0.1)",
                             spec);
    if (colon > spec) {
        size_t n = (size_t)(colon - spec);
        if (spec[0] == '[' && colon[-1] == ']')
            snprintf (host, sizeof (host), "%.*s", (int)n - 2, spec + 1);
        else
            snprintf (host, sizeof (host), "%.*s", (int)n, spec);
    }
    snprintf (port, sizeof (port), "%s", colon + 1);
    memset (&hints, 0, sizeof (hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    if ((rc = getaddrinfo (host, port, &hints, &res)) != 0)
        return gr_errprintf (errp, "--metrics-listen '%s': %s", spec, gai_strerror (rc));
    int fd = socket (res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof (one)) < 0 ||
        bind (fd, res->ai_addr, res->ai_addrlen) < 0 || listen (fd, HTTP_MAX) < 0) {
        int e = errno;
        if (fd >= 0)
            close (fd);
        freeaddrinfo (res);
        return gr_errprintf (errp, "--metrics-listen %s: cannot listen there: %s%s", spec,
                             strerror (e),
                             e == EADDRINUSE ? "; give another port" : "");
    }
    freeaddrinfo (res);
    ob->listen_fd = fd;
    return 0;
}

static void http_serve (gr_obs_t *ob, double now)
{
    for (;;) {
        int fd;
        if (ob->listen_fd < 0 ||
            (fd = accept4 (ob->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) < 0)
            break;
        if (ob->nhttp == HTTP_MAX) {
            close (fd);
            continue;
        }
        ob->http[ob->nhttp++] = (http_conn_t){.fd = fd, .since = now};
    }
    for (int i = 0; i < ob->nhttp;) {
        http_conn_t *h = &ob->http[i];
        if (!h->out) {
            ssize_t k = recv (h->fd, h->in + h->inlen, sizeof (h->in) - 1 - h->inlen, 0);
            if (k > 0) {
                h->inlen += (size_t)k;
                h->in[h->inlen] = '\0';
            }
            if ((k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR)) ||
                now - h->since > HTTP_WAIT) {
                http_drop (ob, i);
                continue;
            }
            if (!strstr (h->in, "\r\n\r\n") && !strstr (h->in, "\n\n") &&
                h->inlen < sizeof (h->in) - 1) {
                i++;
                continue;
            }
            if (http_answer (ob, i, now) < 0)
                continue;
        }
        ssize_t k = send (h->fd, h->out + h->sent, h->outlen - h->sent, MSG_NOSIGNAL);
        if (k > 0)
            h->sent += (size_t)k;
        if (h->sent == h->outlen || (k < 0 && errno != EAGAIN && errno != EINTR) ||
            now - h->since > HTTP_WAIT) {
            http_drop (ob, i);
            continue;
        }
        i++;
    }
}


void gr_obs_tick (gr_obs_t *ob, double now, const gr_sched_stats_t *st)
{
    if (!ob)
        return;
    ob->last = st;
    rate_sample (ob, now, st);
    progress (ob, now, st, false);
    if (now >= ob->metrics_due) {
        write_metrics (ob, now, st, -1);
        ob->metrics_due = now + ob->o.metrics_interval;
    }
    if (ob->listen_fd >= 0)
        http_serve (ob, now);
    if (ob->ev && now >= ob->batch_due) {
        batches_out (ob);
        ob->batch_due = now + EVENTS_BATCH;
    }
    if (ob->ev && now - ob->ev_flushed >= EVENTS_FLUSH) {
        fflush (ob->ev);
        ob->ev_flushed = now;
    }
}

void gr_obs_close (gr_obs_t *ob, int code, const gr_sched_stats_t *st)
{
    double now = gr_now ();

    if (!ob)
        return;
    batches_out (ob);
    if (st) {
        progress (ob, now, st, true);
        write_metrics (ob, now, st, code);
        emit (ob, "run_end",
              json_pack ("{s:i, s:I, s:I, s:I, s:I, s:f}", "exit_code", code, "done",
                         (json_int_t)st->done, "failed", (json_int_t)st->failed, "skipped",
                         (json_int_t)st->skipped, "total", (json_int_t)st->total, "elapsed",
                         now - ob->t0));
    }
    if (ob->ev && fclose (ob->ev) != 0)
        GR_WARN ("cannot write the event log %s/events.jsonl: %s", ob->run_dir,
                 strerror (errno));
    while (ob->nhttp > 0)
        http_drop (ob, 0);
    if (ob->listen_fd >= 0)
        close (ob->listen_fd);
    if (bar_owner == ob) {
        bar_clear ();
        gr_log_set_hook (NULL);
        bar_owner = NULL;
    }
    free (ob->w);
    free (ob->run_dir);
    free (ob->name);
    free (ob->metrics_path);
    free (ob);
}
