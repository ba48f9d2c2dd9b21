/* gr-bench-coll: libgridrun's allreduce against the same operation called
 * directly, side by side in one run (scripts/bench-coll runs it).
 *
 *   host:   gr_allreduce vs MPI_Allreduce, f32 sum, out of place, on the
 *           same buffers, sizes --min .. --max bytes (powers of 4)
 *   fusion: 1,000 tensors of 4 KiB: one gr_fusion_allreduce vs 1,000
 *           gr_allreduce calls on the same tensors, for tensors the
 *           fusion owns (gr_fusion_alloc: the target) and for tensors
 *           added with gr_fusion_add (packed)
 *   device: (built with NCCL, a GPU, and the NCCL backend in use)
 *           gr_allreduce vs ncclAllReduce + cudaStreamSynchronize on the
 *           same device buffers
 *
 * The two sides alternate, --reps times each (which goes first alternates
 * too); each timing is the slowest rank's.  Reported: the medians of the
 * bandwidths and the median of the per-pair ratios (pairs run seconds
 * apart see the same machine), algbw = bytes / time and busbw = algbw *
 * 2(n-1)/n as nccl-tests define them.  The last lines say whether each
 * target is met: ratio >= 0.95 from 1 MiB up, fusion >= 5x ("PASS: ..."
 * or "MISS: ..."); the exit code is 0 either way.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#if HAVE_NCCL
#include <cuda_runtime_api.h>
#include <nccl.h>
#endif

#include "gridrun.h"

#define MAX_REPS 64
#define RATIO_TARGET 0.95
#define RATIO_FROM (1u << 20)
#define FUSION_TARGET 5.0
#define FUSION_TENSORS 1000
#define FUSION_BYTES 4096

static int rank, size;
static int misses;

typedef int (*run_f) (void *arg, size_t count);

/* Seconds per call of fn over iters calls, the slowest rank's. */
static double timed (run_f fn, void *arg, size_t count, int iters)
{
    double t, tmax;

    MPI_Barrier (MPI_COMM_WORLD);
    t = MPI_Wtime ();
    for (int i = 0; i < iters; i++) {
        if (fn (arg, count) != 0) {
            fprintf (stderr, "gr-bench-coll: rank %d: %s\n", rank, gr_last_error ());
            MPI_Abort (MPI_COMM_WORLD, 1);
        }
    }
    t = (MPI_Wtime () - t) / iters;
    MPI_Allreduce (&t, &tmax, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return tmax;
}

static int cmp_double (const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median (double *v, int n)
{
    qsort (v, (size_t)n, sizeof (double), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

typedef struct {
    double t_a, t_b; /* medians, seconds per call */
    double ratio;    /* median of t_b / t_a: above 1 means a is faster */
} pair_t;

/* a and b alternately, reps times each; iterations sized so that one
 * timing takes about 50 ms. */
static pair_t compare (run_f a, void *aa, run_f b, void *ba, size_t count, size_t bytes,
                       int reps)
{
    double ta[MAX_REPS], tb[MAX_REPS], r[MAX_REPS];
    int iters = (int)((50u << 20) / (bytes ? bytes : 1));
    pair_t p;

    if (iters < 2)
        iters = 2;
    if (iters > 2000)
        iters = 2000;
    timed (a, aa, count, 1); /* warm up: buffers, connections */
    timed (b, ba, count, 1);
    for (int i = 0; i < reps; i++) {
        if (i % 2) {
            tb[i] = timed (b, ba, count, iters);
            ta[i] = timed (a, aa, count, iters);
        } else {
            ta[i] = timed (a, aa, count, iters);
            tb[i] = timed (b, ba, count, iters);
        }
        r[i] = tb[i] / ta[i];
    }
    p.t_a = median (ta, reps);
    p.t_b = median (tb, reps);
    p.ratio = median (r, reps);
    return p;
}

/* ---- Host ---------------------------------------------------------------- */

typedef struct {
    float *send, *recv;
    MPI_Comm comm;
} host_bufs_t;

static int run_gr (void *arg, size_t count)
{
    host_bufs_t *h = arg;
    return gr_allreduce (h->send, h->recv, count, GR_F32, GR_SUM);
}

static int run_mpi (void *arg, size_t count)
{
    host_bufs_t *h = arg;
    return MPI_Allreduce (h->send, h->recv, (int)count, MPI_FLOAT, MPI_SUM, h->comm) ==
                   MPI_SUCCESS
               ? 0
               : -1;
}

static double busbw (double bytes, double t)
{
    return bytes / t / 1e9 * 2.0 * (size - 1) / size;
}

static void print_header (const char *what, const char *other)
{
    if (rank == 0)
        printf ("%s allreduce, f32 sum, %d ranks: gridrun vs %s, GB/s\n"
                "        %10s  %8s %8s  %8s %8s  %6s\n",
                what, size, other, "bytes", "gr alg", "gr bus", "alg", "bus", "ratio");
}

static void print_row (const char *what, size_t bytes, pair_t p, int check)
{
    const char *verdict = "";

    if (check) {
        verdict = p.ratio >= RATIO_TARGET ? "meets" : "MISSES";
        if (p.ratio < RATIO_TARGET)
            misses++;
    }
    if (rank == 0)
        printf ("%-7s %10zu  %8.3f %8.3f  %8.3f %8.3f  %6.3f  %s\n", what, bytes,
                bytes / p.t_a / 1e9, busbw ((double)bytes, p.t_a), bytes / p.t_b / 1e9,
                busbw ((double)bytes, p.t_b), p.ratio, verdict);
}

static void bench_host (size_t min, size_t max, int reps)
{
    host_bufs_t h;

    h.send = malloc (max);
    h.recv = malloc (max);
    if (!h.send || !h.recv) {
        fprintf (stderr, "gr-bench-coll: out of memory for %zu bytes\n", max);
        MPI_Abort (MPI_COMM_WORLD, 1);
    }
    for (size_t i = 0; i < max / sizeof (float); i++)
        h.send[i] = (float)(i % 1000) * 0.25f;
    memset (h.recv, 0, max);
    MPI_Comm_dup (MPI_COMM_WORLD, &h.comm);
    print_header ("host", "MPI_Allreduce");
    for (size_t bytes = min; bytes <= max; bytes *= 4) {
        pair_t p = compare (run_gr, &h, run_mpi, &h, bytes / sizeof (float), bytes, reps);
        print_row ("host", bytes, p, bytes >= RATIO_FROM);
    }
    MPI_Comm_free (&h.comm);
    free (h.send);
    free (h.recv);
}

/* ---- Fusion ------------------------------------------------------------ */

typedef struct {
    float *t[FUSION_TENSORS];
    gr_fusion_t *f;
    MPI_Comm comm;
} fusion_t;

static int run_fused (void *arg, size_t count)
{
    return gr_fusion_allreduce (((fusion_t *)arg)->f);
}

static int run_separate (void *arg, size_t count)
{
    fusion_t *fu = arg;
    for (int k = 0; k < FUSION_TENSORS; k++) {
        if (gr_allreduce (GR_IN_PLACE, fu->t[k], count, GR_F32, GR_SUM) < 0)
            return -1;
    }
    return 0;
}

/* For scale: the same 1,000 calls straight to MPI. */
static int run_separate_mpi (void *arg, size_t count)
{
    fusion_t *fu = arg;
    for (int k = 0; k < FUSION_TENSORS; k++) {
        if (MPI_Allreduce (MPI_IN_PLACE, fu->t[k], (int)count, MPI_FLOAT, MPI_SUM,
                           fu->comm) != MPI_SUCCESS)
            return -1;
    }
    return 0;
}

/* owned: the tensors come from gr_fusion_alloc (reduced in place); else
 * from calloc, added with gr_fusion_add (packed). */
static void fusion_setup (fusion_t *fu, int owned, size_t n)
{
    fu->f = gr_fusion_create (GR_F32, GR_SUM);
    for (int k = 0; k < FUSION_TENSORS; k++) {
        int rc = 0;
        if (owned)
            fu->t[k] = fu->f ? gr_fusion_alloc (fu->f, n) : NULL;
        else if ((fu->t[k] = calloc (n, sizeof (float))))
            rc = gr_fusion_add (fu->f, fu->t[k], n);
        if (!fu->t[k] || rc < 0) {
            fprintf (stderr, "gr-bench-coll: fusion setup: %s\n", gr_last_error ());
            MPI_Abort (MPI_COMM_WORLD, 1);
        }
    }
    MPI_Comm_dup (MPI_COMM_WORLD, &fu->comm);
}

static void fusion_free (fusion_t *fu, int owned)
{
    MPI_Comm_free (&fu->comm);
    for (int k = 0; k < FUSION_TENSORS && !owned; k++)
        free (fu->t[k]);
    gr_fusion_destroy (fu->f);
}

static void bench_fusion (int reps)
{
    fusion_t fa, fo;
    size_t n = FUSION_BYTES / sizeof (float);
    size_t bytes = (size_t)FUSION_TENSORS * FUSION_BYTES;

    fusion_setup (&fa, 0, n);
    fusion_setup (&fo, 1, n);
    pair_t p = compare (run_fused, &fa, run_separate, &fa, n, bytes, reps);
    pair_t q = compare (run_fused, &fo, run_separate, &fo, n, bytes, reps);
    pair_t m = compare (run_fused, &fo, run_separate_mpi, &fo, n, bytes, reps);
    if (q.ratio < FUSION_TARGET)
        misses++;
    if (rank == 0) {
        printf ("fusion, added tensors (packed): fused %.3f ms, separate %.3f ms: %.1fx\n",
                p.t_a * 1e3, p.t_b * 1e3, p.ratio);
        printf ("fusion (for scale): owned tensors fused %.3f ms, 1000 MPI_Allreduce calls "
                "%.3f ms: %.1fx\n",
                m.t_a * 1e3, m.t_b * 1e3, m.ratio);
        printf ("fusion: %d x %d bytes, owned tensors (gr_fusion_alloc, in place): fused "
                "%.3f ms, separate %.3f ms: %.1fx faster (target >= %.0fx: %s)\n",
                FUSION_TENSORS, FUSION_BYTES, q.t_a * 1e3, q.t_b * 1e3, q.ratio,
                FUSION_TARGET, q.ratio >= FUSION_TARGET ? "meets" : "MISSES");
    }
    fusion_free (&fa, 0);
    fusion_free (&fo, 1);
}

/* ---- Device ------------------------------------------------------------ */

#if HAVE_NCCL
typedef struct {
    void *send, *recv;
    ncclComm_t comm;
    cudaStream_t stream;
} dev_bufs_t;

static int run_nccl (void *arg, size_t count)
{
    dev_bufs_t *d = arg;
    if (ncclAllReduce (d->send, d->recv, count, ncclFloat32, ncclSum, d->comm,
                       d->stream) != ncclSuccess)
        return -1;
    return cudaStreamSynchronize (d->stream) == cudaSuccess ? 0 : -1;
}

static int run_gr_dev (void *arg, size_t count)
{
    dev_bufs_t *d = arg;
    return gr_allreduce (d->send, d->recv, count, GR_F32, GR_SUM);
}

static void bench_device (size_t min, size_t max, int reps)
{
    dev_bufs_t d;
    ncclUniqueId id;
    gr_topo_info_t info;

    gr_topo_info (&info);
    if (rank == 0)
        ncclGetUniqueId (&id);
    MPI_Bcast (&id, (int)sizeof (id), MPI_BYTE, 0, MPI_COMM_WORLD);
    cudaSetDevice (info.gpu);
    if (cudaMalloc (&d.send, max) != cudaSuccess ||
        cudaMalloc (&d.recv, max) != cudaSuccess ||
        cudaStreamCreate (&d.stream) != cudaSuccess ||
        ncclCommInitRank (&d.comm, size, id, rank) != ncclSuccess) {
        fprintf (stderr, "gr-bench-coll: rank %d: device setup failed\n", rank);
        MPI_Abort (MPI_COMM_WORLD, 1);
    }
    cudaMemset (d.send, 0, max);
    print_header ("device", "ncclAllReduce");
    for (size_t bytes = min; bytes <= max; bytes *= 4) {
        pair_t p =
            compare (run_gr_dev, &d, run_nccl, &d, bytes / sizeof (float), bytes, reps);
        print_row ("device", bytes, p, bytes >= RATIO_FROM);
    }
    ncclCommDestroy (d.comm);
    cudaStreamDestroy (d.stream);
    cudaFree (d.send);
    cudaFree (d.recv);
}
#endif

int main (int argc, char **argv)
{
    size_t min = 4096, max = 256u << 20;
    int reps = 5, host = 1, fusion = 1, device = 1;
    struct rusage ru;
    double rss, rss_max;

    for (int i = 1; i < argc; i++) {
        if (strcmp (argv[i], "--min") == 0 && i + 1 < argc)
            min = strtoull (argv[++i], NULL, 0);
        else if (strcmp (argv[i], "--max") == 0 && i + 1 < argc)
            max = strtoull (argv[++i], NULL, 0);
        else if (strcmp (argv[i], "--reps") == 0 && i + 1 < argc)
            reps = atoi (argv[++i]);
        else if (strcmp (argv[i], "--only") == 0 && i + 1 < argc) {
            const char *w = argv[++i];
            host = strcmp (w, "host") == 0;
            fusion = strcmp (w, "fusion") == 0;
            device = strcmp (w, "device") == 0;
        } else {
            fprintf (stderr,
                     "usage: gr-bench-coll [--min BYTES] [--max BYTES] [--reps N] "
                     "[--only host|fusion|device]\n");
            return 2;
        }
    }
    if (reps < 1 || reps > MAX_REPS || min < 4 || max < min) {
        fprintf (stderr, "gr-bench-coll: bad --reps, --min or --max\n");
        return 2;
    }
    if (gr_init (&argc, &argv) < 0) {
        fprintf (stderr, "gr-bench-coll: gr_init: %s\n", gr_last_error ());
        return 1;
    }
    rank = gr_rank ();
    size = gr_size ();
    if (host)
        bench_host (min, max, reps);
    if (fusion)
        bench_fusion (reps);
#if HAVE_NCCL
    if (device && gr_backend () == GR_BACKEND_NCCL)
        bench_device (min, max, reps);
    else if (device && rank == 0)
        printf (
            "device: skipped (backend %s: no GPU on some rank, or GRIDRUN_COLL=mpi)\n",
            gr_backend_name ());
#else
    if (device && rank == 0)
        printf ("device: skipped (built without NCCL)\n");
#endif
    getrusage (RUSAGE_SELF, &ru);
    rss = ru.ru_maxrss / 1024.0;
    MPI_Allreduce (&rss, &rss_max, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0) {
        printf ("peak RSS %.1f MiB (the largest rank)\n", rss_max);
        printf ("%s: %d target%s missed\n", misses ? "MISS" : "PASS", misses,
                misses == 1 ? "" : "s");
    }
    gr_finalize ();
    /* A missed target is a result, not a failure: scripts/bench-coll
     * reads the PASS/MISS line (and mpirun would add a banner). */
    return 0;
}
