/* Training metrics of libgridrun (doc/observability.md, "Training"):
 * samples a second, time, bytes and bus bandwidth of the collectives,
 * checkpoint latencies, and GPU utilization where NVML is present.  Rank
 * 0 writes them as a Prometheus textfile, replaced atomically, every
 * GRIDRUN_TRAIN_METRICS_INTERVAL (default 10 s) and at gr_finalize, to
 * GRIDRUN_TRAIN_METRICS, else (in a gridrun task) RUN/train-KEY.prom.
 * Counting costs two clock reads a collective; NVML is opened with dlopen,
 * so libgridrun neither links nor needs it. */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib.h"
#include "src/common/gtime.h"
#include "src/common/hist.h"
#include "src/common/log.h"
#include "src/common/prom.h"
#include "src/common/units.h"

static const char *const op_names[GR__OP_N] = {"allreduce", "broadcast", "allgather",
                                              "reduce_scatter", "barrier",
                                              "fusion_allreduce"};
static const char *const ckpt_names[GR__CKPT_N] = {"save", "wait", "load"};

/* NVML, as far as this file uses it (nvml.h's types and signatures). */
typedef struct {
    unsigned int gpu, memory;
} nvml_util_t;
typedef struct {
    unsigned long long total, free, used;
} nvml_mem_t;

static struct {
    bool on;
    char path[PATH_MAX];
    char events[PATH_MAX];  /* RUN/events.jsonl of the gridrun run, or "" */
    char task[128], key[32];
    char label[300];        /* task="NAME", escaped: every sample's label */
    int rank, size, gpu;
    const char *backend;
    double t0, interval, due;
    uint64_t samples, samples_at_last;
    double last_write;
    struct {
        uint64_t calls, bytes;
        double seconds;
    } op[GR__OP_N];
    double ar_bytes_last, ar_seconds_last; /* allreduce at the last write */
    gr_hist_t ckpt[GR__CKPT_N];
    /* NVML */
    void *nvml;
    void *dev;
    int (*get_util) (void *, nvml_util_t *);
    int (*get_mem) (void *, nvml_mem_t *);
} M;

/* The NVML index of CUDA device dev: CUDA_VISIBLE_DEVICES renumbers. */
static int nvml_index (int dev)
{
    const char *v = getenv ("CUDA_VISIBLE_DEVICES");
    int i = 0;

    if (!v || !*v)
        return dev;
    for (const char *p = v; *p; i++) {
        char *end;
        long x = strtol (p, &end, 10);
        if (end == p)
            return dev; /* UUIDs: assume the order is the same */
        if (i == dev)
            return (int)x;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return dev;
    }
    return dev;
}

static void nvml_open (int dev)
{
    int (*init) (void);
    int (*handle) (unsigned int, void **);

    if (dev < 0 || !(M.nvml = dlopen ("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL)))
        return;
    init = (int (*) (void))dlsym (M.nvml, "nvmlInit_v2");
    handle = (int (*) (unsigned int, void **))dlsym (M.nvml, "nvmlDeviceGetHandleByIndex_v2");
    M.get_util = (int (*) (void *, nvml_util_t *))dlsym (M.nvml, "nvmlDeviceGetUtilizationRates");
    M.get_mem = (int (*) (void *, nvml_mem_t *))dlsym (M.nvml, "nvmlDeviceGetMemoryInfo");
    if (!init || !handle || !M.get_util || init () != 0 ||
        handle ((unsigned)nvml_index (dev), &M.dev) != 0) {
        GR_DEBUG ("NVML is here but unusable; no GPU utilization in the metrics");
        dlclose (M.nvml);
        M.nvml = NULL;
        M.dev = NULL;
    }
}

void gr__metrics_init (int rank, int size, int gpu, const char *backend)
{
    const char *path = getenv ("GRIDRUN_TRAIN_METRICS");
    const char *iv = getenv ("GRIDRUN_TRAIN_METRICS_INTERVAL");
    const char *run = getenv ("GRIDRUN_RUN_DIR"), *key = getenv ("GRIDRUN_TASK_KEY");
    const char *name = getenv ("GRIDRUN_TASK_NAME");

    memset (&M, 0, sizeof (M));
    M.rank = rank;
    M.size = size;
    M.gpu = gpu;
    M.backend = backend;
    M.t0 = M.last_write = gr_now ();
    M.interval = 10;
    for (int i = 0; i < GR__CKPT_N; i++)
        gr_hist_init (&M.ckpt[i]);
    if (iv && *iv && (gr_parse_duration (iv, &M.interval) < 0 || M.interval < 0)) {
        if (rank == 0)
            GR_WARN ("GRIDRUN_TRAIN_METRICS_INTERVAL=%s is not a duration; using 10s", iv);
        M.interval = 10;
    }
    char esc[256];
    snprintf (M.task, sizeof (M.task), "%s", name ? name : "");
    snprintf (M.label, sizeof (M.label), "task=\"%s\"",
              gr_prom_escape (M.task, esc, sizeof (esc)));
    snprintf (M.key, sizeof (M.key), "%s", key ? key : "");
    if (rank != 0)
        return;
    if (run && *run)
        snprintf (M.events, sizeof (M.events), "%s/events.jsonl", run);
    if (path && *path)
        snprintf (M.path, sizeof (M.path), "%s", path);
    else if (run && *run && key && *key)
        snprintf (M.path, sizeof (M.path), "%s/train-%s.prom", run, key);
    else
        return;
    M.on = true;
    M.due = M.interval > 0 ? M.t0 + M.interval : INFINITY;
    nvml_open (gpu);
}

static void put (FILE *f, const char *name, const char *labels, double v)
{
    gr_prom_put (f, M.label, name, labels, v);
}

/* Bus bandwidth of an allreduce of bytes in seconds (nccl-tests' busbw). */
static double busbw (double bytes, double seconds)
{
    return seconds > 0 && M.size > 1 ? bytes / seconds * 2.0 * (M.size - 1) / M.size : 0;
}

static void write_file (double now)
{
    char tmp[PATH_MAX + 8], l[128];
    double el = now - M.t0, dt = now - M.last_write;
    FILE *f;

    if (!(f = gr_prom_begin (M.path, tmp, sizeof (tmp)))) {
        GR_WARN ("cannot write the training metrics %s: %s; no more of them", tmp,
                 strerror (errno));
        M.on = false;
        return;
    }
    gr_prom_head (f, "gridrun_train_info", "gauge", "The training program: ranks and backend.");
    snprintf (l, sizeof (l), "backend=\"%s\",ranks=\"%d\"", M.backend, M.size);
    put (f, "gridrun_train_info", l, 1);
    gr_prom_head (f, "gridrun_train_samples_total", "counter",
          "Samples processed (gr_metrics_samples).");
    put (f, "gridrun_train_samples_total", NULL, (double)M.samples);
    gr_prom_head (f, "gridrun_train_samples_per_second", "gauge",
          "Samples a second since the last write (the whole run at the end).");
    put (f, "gridrun_train_samples_per_second", NULL,
         dt > 0 ? (double)(M.samples - M.samples_at_last) / dt : 0);
    gr_prom_head (f, "gridrun_train_collective_calls_total", "counter",
                  "Collective calls by operation.");
    for (int i = 0; i < GR__OP_N; i++) {
        snprintf (l, sizeof (l), "op=\"%s\"", op_names[i]);
        put (f, "gridrun_train_collective_calls_total", l, (double)M.op[i].calls);
    }
    gr_prom_head (f, "gridrun_train_collective_seconds_total", "counter",
          "Time spent in collectives by operation.");
    for (int i = 0; i < GR__OP_N; i++) {
        snprintf (l, sizeof (l), "op=\"%s\"", op_names[i]);
        put (f, "gridrun_train_collective_seconds_total", l, M.op[i].seconds);
    }
    gr_prom_head (f, "gridrun_train_collective_bytes_total", "counter",
          "Bytes of each rank's buffers passed to collectives, by operation.");
    for (int i = 0; i < GR__OP_N; i++) {
        snprintf (l, sizeof (l), "op=\"%s\"", op_names[i]);
        put (f, "gridrun_train_collective_bytes_total", l, (double)M.op[i].bytes);
    }
    double ab = (double)(M.op[GR__OP_ALLREDUCE].bytes + M.op[GR__OP_FUSION].bytes);
    double as = M.op[GR__OP_ALLREDUCE].seconds + M.op[GR__OP_FUSION].seconds;
    gr_prom_head (f, "gridrun_train_allreduce_busbw_bytes_per_second", "gauge",
          "Allreduce bus bandwidth, algbw x 2(n-1)/n as nccl-tests report it: since the "
          "last write (span=\"interval\") and over the run (span=\"run\").");
    put (f, "gridrun_train_allreduce_busbw_bytes_per_second", "span=\"interval\"",
         busbw (ab - M.ar_bytes_last, as - M.ar_seconds_last));
    put (f, "gridrun_train_allreduce_busbw_bytes_per_second", "span=\"run\"", busbw (ab, as));
    gr_prom_head (f, "gridrun_train_checkpoint_seconds", "summary",
          "Checkpoint latency: gr_ckpt_save's return (the stall, when async), gr_ckpt_wait, "
          "gr_ckpt_load.");
    for (int i = 0; i < GR__CKPT_N; i++) {
        static const double qs[] = {0.5, 0.95, 0.99};
        for (int k = 0; k < 3; k++) {
            snprintf (l, sizeof (l), "op=\"%s\",quantile=\"%g\"", ckpt_names[i], qs[k]);
            put (f, "gridrun_train_checkpoint_seconds", l, gr_hist_quantile (&M.ckpt[i], qs[k]));
        }
        snprintf (l, sizeof (l), "op=\"%s\"", ckpt_names[i]);
        put (f, "gridrun_train_checkpoint_seconds_sum", l, M.ckpt[i].sum);
        put (f, "gridrun_train_checkpoint_seconds_count", l, (double)M.ckpt[i].n);
    }
    if (M.dev) {
        nvml_util_t u;
        nvml_mem_t mem;
        snprintf (l, sizeof (l), "gpu=\"%d\"", M.gpu);
        if (M.get_util (M.dev, &u) == 0) {
            gr_prom_head (f, "gridrun_train_gpu_utilization_ratio", "gauge",
                  "NVML: the fraction of time a kernel ran on rank 0's GPU.");
            put (f, "gridrun_train_gpu_utilization_ratio", l, u.gpu / 100.0);
        }
        if (M.get_mem && M.get_mem (M.dev, &mem) == 0) {
            gr_prom_head (f, "gridrun_train_gpu_memory_used_bytes", "gauge",
                  "NVML: memory in use on rank 0's GPU.");
            put (f, "gridrun_train_gpu_memory_used_bytes", l, (double)mem.used);
        }
    }
    gr_prom_head (f, "gridrun_train_elapsed_seconds", "gauge", "Seconds since gr_init.");
    put (f, "gridrun_train_elapsed_seconds", NULL, el);
    gr_prom_head (f, "gridrun_train_last_update_timestamp_seconds", "gauge",
                  "When this was written.");
    put (f, "gridrun_train_last_update_timestamp_seconds", NULL, gr_wallclock ());
    if (gr_prom_commit (f, tmp, M.path) < 0) {
        GR_WARN ("cannot write the training metrics %s: %s; no more of them", M.path,
                 strerror (errno));
        M.on = false;
        return;
    }
    M.samples_at_last = M.samples;
    M.ar_bytes_last = ab;
    M.ar_seconds_last = as;
    M.last_write = now;
}

static void maybe_write (double now)
{
    if (M.on && now >= M.due) {
        write_file (now);
        M.due = now + M.interval;
    }
}

void gr__metrics_coll (gr__op_t op, size_t bytes, double seconds)
{
    if ((unsigned)op >= GR__OP_N)
        return;
    M.op[op].calls++;
    M.op[op].bytes += bytes;
    M.op[op].seconds += seconds;
    if (M.on)
        maybe_write (gr_now ());
}

void gr__metrics_ckpt (gr__ckpt_op_t op, double seconds)
{
    if ((unsigned)op >= GR__CKPT_N)
        return;
    gr_hist_add (&M.ckpt[op], seconds);
    if (M.on)
        maybe_write (gr_now ());
}

void gr_metrics_samples (uint64_t n)
{
    M.samples += n;
    if (M.on)
        maybe_write (gr_now ());
}

void gr__metrics_event (const char *event, int64_t step, double seconds, const char *dir)
{
    json_t *e;
    char *line;
    int fd;

    if (!M.events[0])
        return;
    e = json_pack ("{s:f, s:s, s:s, s:s, s:I, s:f, s:s}", "time", gr_wallclock (), "event",
                   event, "task", M.task, "key", M.key, "step", (json_int_t)step, "seconds",
                   seconds, "dir", dir ? dir : "");
    line = e ? json_dumps (e, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref (e);
    /* One write with O_APPEND: whole lines among the master's. */
    if (line && (fd = open (M.events, O_WRONLY | O_APPEND | O_CLOEXEC)) >= 0) {
        size_t n = strlen (line);
        line[n] = '\n';
        ssize_t w = write (fd, line, n + 1);
        (void)w;
        close (fd);
    }
    free (line);
}

void gr__metrics_fini (void)
{
    if (M.on) {
        /* The run's rate at the end, not the last interval's. */
        M.samples_at_last = 0;
        M.last_write = M.t0;
        write_file (gr_now ());
    }
    if (M.nvml)
        dlclose (M.nvml);
    memset (&M, 0, sizeof (M));
}
