/* gr-bench-ckpt: timings of libgridrun checkpoints, for scripts/bench-ckpt
 * (which runs the dd baselines beside it).
 *
 *   gr-bench-ckpt DIR save MIB [--layout per-rank|shared]
 *       a sync save of MIB mebibytes in all (a sharded f32 array, MIB/size
 *       per rank, and a small replicated one); then, per-rank layout only,
 *       two async saves: what the caller waits for in gr_ckpt_save (the
 *       first with a fresh staging buffer, the second reusing it) and the
 *       commit in gr_ckpt_wait.
 *   gr-bench-ckpt DIR load MIB [--layout ...] [--into] [--go FILE]
 *       gr_ckpt_load (which verifies every byte) and gr_ckpt_read of
 *       everything; with --into, gr_ckpt_target for everything and
 *       gr_ckpt_load, which fills the arrays as it verifies.  With --go,
 *       once set up (MPI, HDF5, the arrays) rank 0 prints "ready" and
 *       the timing starts when FILE exists: the script
 *       drops the page cache in between, right before the timed reads, as
 *       it does right before dd's.
 *
 * Prints key=value lines on rank 0: seconds are the slowest rank's, from a
 * barrier before to the call's return; rss_mib is the largest peak RSS of
 * any rank. */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gridrun.h"

static int rank, size;

static double now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The slowest rank's time since t0 (collective). */
static double slowest (double t0)
{
    double dt = now () - t0, max;
    MPI_Allreduce (&dt, &max, 1, MPI_DOUBLE, MPI_MAX, gr_comm ());
    return max;
}

static double start (void)
{
    MPI_Barrier (gr_comm ());
    return now ();
}

static void die (const char *what)
{
    fprintf (stderr, "gr-bench-ckpt: rank %d: %s: %s\n", rank, what, gr_last_error ());
    MPI_Abort (MPI_COMM_WORLD, 1);
}

static void report_rss (void)
{
    struct rusage ru;
    long mine, max;
    getrusage (RUSAGE_SELF, &ru);
    mine = ru.ru_maxrss;
    MPI_Reduce (&mine, &max, 1, MPI_LONG, MPI_MAX, 0, gr_comm ());
    if (rank == 0)
        printf ("rss_mib=%.1f\n", (double)max / 1024.0);
}

/* Rank 0 says it is ready and waits for the file go to appear. */
static void wait_for (const char *go)
{
    struct stat st;

    if (!go)
        return;
    if (rank == 0) {
        printf ("ready\n");
        fflush (stdout);
        while (stat (go, &st) < 0)
            usleep (1000);
    }
    MPI_Barrier (gr_comm ());
}

static void describe (gr_ckpt_t *c, int64_t step, float *w, uint64_t rows, double *bias)
{
    uint64_t dims[2] = {rows, 1024}, bdims[1] = {1024};
    if (gr_ckpt_begin (c, step) < 0
        || gr_ckpt_add (c, "w", GR_F32, 2, dims, w, GR_CKPT_SHARDED) < 0
        || gr_ckpt_add (c, "bias", GR_F64, 1, bdims, bias, GR_CKPT_REPLICATED) < 0
        || gr_ckpt_attr_i64 (c, "step", step) < 0)
        die ("describe");
}

int main (int argc, char **argv)
{
    gr_ckpt_opts_t o = {.layout = GR_CKPT_PER_RANK, .keep = 1};

    if (gr_init (&argc, &argv) < 0) {
        fprintf (stderr, "gr-bench-ckpt: %s\n", gr_last_error ());
        return 1;
    }
    rank = gr_rank ();
    size = gr_size ();
    if (argc < 4) {
        fprintf (stderr, "usage: gr-bench-ckpt DIR save|load MIB [--layout L] [--into] "
                 "[--go FILE]\n");
        return 2;
    }
    const char *dir = argv[1], *mode = argv[2], *go = NULL;
    uint64_t mib = strtoull (argv[3], NULL, 10);
    int into = 0;
    for (int i = 4; i < argc; i++) {
        if (strcmp (argv[i], "--into") == 0)
            into = 1;
        else if (i + 1 < argc && strcmp (argv[i], "--layout") == 0)
            o.layout = strcmp (argv[++i], "shared") == 0 ? GR_CKPT_SHARED : GR_CKPT_PER_RANK;
        else if (i + 1 < argc && strcmp (argv[i], "--go") == 0)
            go = argv[++i];
        else {
            fprintf (stderr, "gr-bench-ckpt: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    /* Rows of 4 KiB (1024 f32), split evenly over the ranks. */
    uint64_t total = mib * 256, rows = total / (uint64_t)size + (rank < (int)(total % size));
    size_t bytes = rows * 4096;
    float *w = malloc (bytes ? bytes : 1);
    double bias[1024];
    if (!w)
        die ("malloc");
    for (uint64_t i = 0; i < rows * 1024; i++)
        w[i] = (float)(i * 0.5 + rank);
    for (int i = 0; i < 1024; i++)
        bias[i] = i;

    if (strcmp (mode, "save") == 0) {
        gr_ckpt_t *c = gr_ckpt_open (dir, &o);
        if (!c)
            die ("open");
        describe (c, 1, w, rows, bias);
        double t0 = start ();
        if (gr_ckpt_save (c) < 0)
            die ("save");
        double sync_s = slowest (t0);
        if (gr_ckpt_close (c) < 0)
            die ("close");
        if (rank == 0)
            printf ("save_s=%.3f\n", sync_s);
        if (o.layout == GR_CKPT_PER_RANK) {
            o.async = 1;
            if (!(c = gr_ckpt_open (dir, &o)))
                die ("open async");
            for (int64_t step = 2; step <= 3; step++) {
                describe (c, step, w, rows, bias);
                t0 = start ();
                if (gr_ckpt_save (c) < 0)
                    die ("async save");
                double stall = slowest (t0);
                t0 = start ();
                if (gr_ckpt_wait (c) < 0)
                    die ("wait");
                double commit = slowest (t0);
                if (rank == 0)
                    printf ("async%s_stall_s=%.3f\nasync%s_wait_s=%.3f\n",
                            step == 2 ? "_first" : "", stall, step == 2 ? "_first" : "",
                            commit);
            }
            if (gr_ckpt_close (c) < 0)
                die ("close");
        }
    } else {
        gr_ckpt_t *c = gr_ckpt_open (dir, &o);
        int64_t step;
        if (!c)
            die ("open");
        /* Something else than what the load must bring back. */
        memset (w, 0xff, bytes);
        memset (bias, 0xff, sizeof (bias));
        wait_for (go);
        double t0 = start ();
        if (into && (gr_ckpt_target (c, "w", w, bytes) < 0
                     || gr_ckpt_target (c, "bias", bias, sizeof (bias)) < 0))
            die ("target");
        if (gr_ckpt_load (c, &step) < 0)
            die ("load");
        double verify_s = slowest (t0);
        if (!into && (gr_ckpt_read (c, "w", w, bytes) < 0
                      || gr_ckpt_read (c, "bias", bias, sizeof (bias)) < 0))
            die ("read");
        double load_s = slowest (t0);
        /* The values must be what the save wrote. */
        int bad = 0;
        for (uint64_t i = 0; i < rows * 1024 && !bad; i += 4099)
            bad = w[i] != (float)(i * 0.5 + rank);
        for (int i = 0; i < 1024 && !bad; i++)
            bad = bias[i] != i;
        if (bad)
            die ("the data read back differ");
        if (gr_ckpt_close (c) < 0)
            die ("close");
        if (rank == 0)
            printf ("%s=%.3f\nverify_s=%.3f\nstep=%" PRId64 "\n", into ? "into_s" : "load_s",
                    load_s, verify_s, step);
    }
    report_rss ();
    free (w);
    gr_finalize ();
    return 0;
}
