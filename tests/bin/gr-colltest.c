/* gr-colltest: checks every collective of libgridrun against a reference
 * computed locally, under mpirun with any number of ranks.
 *
 *   gr-colltest                    all the collectives, every type and op,
 *                                  sizes 0 .. 300007, in place and not,
 *                                  fusion, host buffers and (when a GPU is
 *                                  there) device buffers; the preemption
 *                                  notice (raise SIGUSR2)
 *   gr-colltest --big              also one allreduce of more than INT_MAX
 *                                  elements (f16, 4 GiB a rank)
 *   gr-colltest --preempt SIG      raise SIG (a number) after gr_init and
 *                                  expect the preemption notice
 *   gr-colltest --init-error ERRNO TEXT
 *                                  gr_init must fail with errno ERRNO
 *                                  (EINVAL, ENOTSUP, ECOMM) and a message
 *                                  containing TEXT, on every rank
 *   gr-colltest --timeout [--device]
 *                                  the last rank sleeps 3 s before an
 *                                  allreduce (of a device buffer with
 *                                  --device); with GRIDRUN_COLL_TIMEOUT=1
 *                                  the others must get ETIMEDOUT
 *   gr-colltest --info             print backend, binding and domains
 *   gr-colltest --fusion-mismatch  ranks allocate fusion tensors of
 *                                  different sizes: EINVAL on every rank
 *
 * After the full run rank 0 prints "fusion maps: N", the most mappings of
 * fusion memory a rank had after reducing tensors of its fusion: 1 when
 * not shared, the number of ranks when every rank mapped every other's.
 *
 * Every data value is a small multiple of 1/2, so sums, maxima and minima
 * are exact in every type whatever the order of reduction; averages are
 * compared with a tolerance of a few units in the last place.  Exits 0
 * when everything matched, 1 after printing each mismatch.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

#include "gridrun.h"

static int rank, size;
static int failures;

/* One line per mismatch, written at once so that ranks do not mix. */
#define FAIL(...)                                                                        \
    do {                                                                                 \
        char fail_msg_[512];                                                             \
        snprintf (fail_msg_, sizeof (fail_msg_), __VA_ARGS__);                           \
        fprintf (stderr, "gr-colltest: rank %d: %s\n", rank, fail_msg_);                 \
        failures++;                                                                      \
    } while (0)

static const char *type_names[] = {"f32", "f64", "i32", "i64", "f16", "bf16"};
static const char *op_names[] = {"sum", "max", "min", "avg"};
static const char *kind_names[] = {"host", "device"};

/* ---- Values ------------------------------------------------------------ */

/* f16 for the exactly representable values of the test data (normals and
 * zero): no rounding needed.  Reading back handles everything. */
static uint16_t exact_f16 (float f)
{
    uint32_t x;

    memcpy (&x, &f, sizeof (x));
    uint32_t sign = (x >> 16) & 0x8000u;
    if ((x & 0x7fffffffu) == 0)
        return (uint16_t)sign;
    uint32_t e = ((x >> 23) & 0xffu) - 127 + 15;
    return (uint16_t)(sign | (e << 10) | ((x >> 13) & 0x3ffu));
}

static double read_f16 (uint16_t h)
{
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double v;

    if (e == 0)
        v = ldexp (m, -24);
    else if (e == 31)
        v = m ? NAN : INFINITY;
    else
        v = ldexp (m + 1024, e - 25);
    return (h & 0x8000) ? -v : v;
}

static double get_value (gr_dtype_t t, const void *buf, size_t i)
{
    switch (t) {
        case GR_F32:
            return ((const float *)buf)[i];
        case GR_F64:
            return ((const double *)buf)[i];
        case GR_I32:
            return ((const int32_t *)buf)[i];
        case GR_I64:
            return (double)((const int64_t *)buf)[i];
        case GR_F16:
            return read_f16 (((const uint16_t *)buf)[i]);
        case GR_BF16: {
            uint32_t x = (uint32_t)((const uint16_t *)buf)[i] << 16;
            float f;
            memcpy (&f, &x, sizeof (f));
            return f;
        }
    }
    return NAN;
}

static void set_value (gr_dtype_t t, void *buf, size_t i, double v)
{
    switch (t) {
        case GR_F32:
            ((float *)buf)[i] = (float)v;
            break;
        case GR_F64:
            ((double *)buf)[i] = v;
            break;
        case GR_I32:
            ((int32_t *)buf)[i] = (int32_t)v;
            break;
        case GR_I64:
            ((int64_t *)buf)[i] = (int64_t)v;
            break;
        case GR_F16:
            ((uint16_t *)buf)[i] = exact_f16 ((float)v);
            break;
        case GR_BF16: {
            float f = (float)v;
            uint32_t x;
            memcpy (&x, &f, sizeof (x));
            ((uint16_t *)buf)[i] = (uint16_t)(x >> 16);
            break;
        }
    }
}

/* The value rank r contributes at index i: -7.5 .. 7.5 in steps of 1/2
 * for floats; integers get a large part too, so that 64 bits matter. */
static double value (gr_dtype_t t, int r, size_t i)
{
    int base = (int)((i * 7 + (size_t)r * 13 + 5) % 31) - 15;

    switch (t) {
        case GR_I32:
            return base * 1000 + r;
        case GR_I64:
            return (double)base * 8589934592.0 + r; /* 2^33 */
        default:
            return base * 0.5;
    }
}

static double reference (gr_dtype_t t, gr_op_t op, size_t i)
{
    double acc = value (t, 0, i);

    for (int r = 1; r < size; r++) {
        double v = value (t, r, i);
        if (op == GR_MAX)
            acc = v > acc ? v : acc;
        else if (op == GR_MIN)
            acc = v < acc ? v : acc;
        else
            acc += v;
    }
    if (op == GR_AVG)
        acc = (t == GR_I32 || t == GR_I64) ? trunc (acc / size) : acc / size;
    return acc;
}

static double tolerance (gr_dtype_t t, gr_op_t op, double want)
{
    if (op != GR_AVG || t == GR_I32 || t == GR_I64)
        return 0;
    /* A few units in the last place: NCCL may scale before summing. */
    double rel = t == GR_F16    ? 0x1p-8
                 : t == GR_BF16 ? 0x1p-5
                 : t == GR_F32  ? 0x1p-20
                                : 0x1p-48;
    return fabs (want) * rel;
}

/* ---- Memory of either kind --------------------------------------------- */

static void *mem_alloc (int kind, size_t bytes)
{
    void *p = NULL;

    if (bytes == 0)
        bytes = 1;
#if HAVE_CUDA
    if (kind) {
        if (cudaMalloc (&p, bytes) != cudaSuccess) {
            fprintf (stderr, "gr-colltest: cudaMalloc(%zu) failed\n", bytes);
            exit (1);
        }
        return p;
    }
#endif
    if (!(p = malloc (bytes))) {
        fprintf (stderr, "gr-colltest: out of memory (%zu bytes)\n", bytes);
        exit (1);
    }
    return p;
}

static void mem_free (int kind, void *p)
{
#if HAVE_CUDA
    if (kind) {
        cudaFree (p);
        return;
    }
#endif
    free (p);
}

/* Copy between host memory and memory of kind. */
static void mem_put (int kind, void *dst, const void *src, size_t bytes)
{
#if HAVE_CUDA
    if (kind) {
        cudaMemcpy (dst, src, bytes, cudaMemcpyHostToDevice);
        return;
    }
#endif
    memcpy (dst, src, bytes);
}

static void mem_get (int kind, void *dst, const void *src, size_t bytes)
{
#if HAVE_CUDA
    if (kind) {
        cudaMemcpy (dst, src, bytes, cudaMemcpyDeviceToHost);
        return;
    }
#endif
    memcpy (dst, src, bytes);
}

/* ---- Checks ------------------------------------------------------------ */

/* Compare got[0..n) with want(i); report the first few mismatches. */
static void compare (const char *what, gr_dtype_t t, gr_op_t op, const void *got,
                     size_t n, double (*want) (gr_dtype_t, gr_op_t, size_t, void *),
                     void *arg)
{
    int shown = 0;

    for (size_t i = 0; i < n; i++) {
        double w = want (t, op, i, arg), g = get_value (t, got, i);
        if (fabs (g - w) > tolerance (t, op, w) || isnan (g)) {
            if (shown++ < 3)
                FAIL ("%s: element %zu of %zu: got %.17g, want %.17g", what, i, n, g, w);
        }
    }
    if (shown > 3)
        FAIL ("%s: %d mismatches in all", what, shown);
}

static double want_reduced (gr_dtype_t t, gr_op_t op, size_t i, void *arg)
{
    size_t base = arg ? *(size_t *)arg : 0;
    return reference (t, op, base + i);
}

static double want_gathered (gr_dtype_t t, gr_op_t op, size_t i, void *arg)
{
    size_t n = *(size_t *)arg;
    return value (t, (int)(i / n), i % n);
}

static double want_root (gr_dtype_t t, gr_op_t op, size_t i, void *arg)
{
    return value (t, *(int *)arg, i);
}

static void *filled (gr_dtype_t t, int r, size_t n)
{
    void *h = mem_alloc (0, n * gr_dtype_size (t));
    for (size_t i = 0; i < n; i++)
        set_value (t, h, i, value (t, r, i));
    return h;
}

/* mode 0: separate buffers, 1: GR_IN_PLACE, 2: sendbuf == recvbuf. */
static void check_allreduce (int kind, gr_dtype_t t, gr_op_t op, size_t n, int mode)
{
    size_t bytes = n * gr_dtype_size (t);
    char what[128];
    void *in = filled (t, rank, n), *out = mem_alloc (0, bytes);
    void *send = mem_alloc (kind, bytes), *recv = mem_alloc (kind, bytes);

    snprintf (what, sizeof (what), "allreduce %s %s n=%zu %s %s", type_names[t],
              op_names[op], n,
              mode == 1   ? "GR_IN_PLACE"
              : mode == 2 ? "aliased"
                          : "separate",
              kind_names[kind]);
    mem_put (kind, mode ? recv : send, in, bytes);
    int rc = gr_allreduce (mode == 1   ? GR_IN_PLACE
                           : mode == 2 ? recv
                                       : send,
                           recv, n, t, op);
    if (rc < 0)
        FAIL ("%s: %s", what, gr_last_error ());
    else {
        mem_get (kind, out, recv, bytes);
        compare (what, t, op, out, n, want_reduced, NULL);
    }
    free (in);
    free (out);
    mem_free (kind, send);
    mem_free (kind, recv);
}

static void check_broadcast (int kind, gr_dtype_t t, size_t n, int root)
{
    size_t bytes = n * gr_dtype_size (t);
    char what[128];
    void *in = filled (t, rank == root ? root : rank + 100, n),
         *out = mem_alloc (0, bytes);
    void *buf = mem_alloc (kind, bytes);

    snprintf (what, sizeof (what), "broadcast %s n=%zu root=%d %s", type_names[t], n,
              root, kind_names[kind]);
    mem_put (kind, buf, in, bytes);
    if (gr_broadcast (buf, n, t, root) < 0)
        FAIL ("%s: %s", what, gr_last_error ());
    else {
        mem_get (kind, out, buf, bytes);
        compare (what, t, GR_SUM, out, n, want_root, &root);
    }
    free (in);
    free (out);
    mem_free (kind, buf);
}

static void check_allgather (int kind, gr_dtype_t t, size_t n, int in_place)
{
    size_t es = gr_dtype_size (t), bytes = n * es;
    char what[128];
    void *in = filled (t, rank, n), *out = mem_alloc (0, bytes * (size_t)size);
    void *send = mem_alloc (kind, bytes), *recv = mem_alloc (kind, bytes * (size_t)size);

    snprintf (what, sizeof (what), "allgather %s n=%zu %s %s", type_names[t], n,
              in_place ? "GR_IN_PLACE" : "separate", kind_names[kind]);
    memset (out, 0xee, bytes * (size_t)size);
    mem_put (kind, recv, out, bytes * (size_t)size);
    mem_put (kind, in_place ? (char *)recv + (size_t)rank * bytes : send, in, bytes);
    if (gr_allgather (in_place ? GR_IN_PLACE : send, recv, n, t) < 0)
        FAIL ("%s: %s", what, gr_last_error ());
    else {
        mem_get (kind, out, recv, bytes * (size_t)size);
        compare (what, t, GR_SUM, out, n * (size_t)size, want_gathered, &n);
    }
    free (in);
    free (out);
    mem_free (kind, send);
    mem_free (kind, recv);
}

static void check_reduce_scatter (int kind, gr_dtype_t t, gr_op_t op, size_t n,
                                  int in_place)
{
    size_t es = gr_dtype_size (t), total = n * (size_t)size;
    char what[128];
    void *in = filled (t, rank, total), *out = mem_alloc (0, n * es);
    void *send = mem_alloc (kind, total * es), *recv = mem_alloc (kind, total * es);
    size_t base = (size_t)rank * n;

    snprintf (what, sizeof (what), "reduce_scatter %s %s n=%zu %s %s", type_names[t],
              op_names[op], n, in_place ? "GR_IN_PLACE" : "separate", kind_names[kind]);
    mem_put (kind, in_place ? recv : send, in, total * es);
    if (gr_reduce_scatter (in_place ? GR_IN_PLACE : send, recv, n, t, op) < 0)
        FAIL ("%s: %s", what, gr_last_error ());
    else {
        mem_get (kind, out, recv, n * es);
        compare (what, t, op, out, n, want_reduced, &base);
    }
    free (in);
    free (out);
    mem_free (kind, send);
    mem_free (kind, recv);
}

/* Lines of /proc/self/maps that map fusion memory (memfd
 * "gridrun-fusion"): this rank's chunks, and the other ranks' once they
 * are shared. */
static int fusion_maps (void)
{
    FILE *fp = fopen ("/proc/self/maps", "r");
    char line[512];
    int n = 0;

    while (fp && fgets (line, sizeof (line), fp))
        n += strstr (line, "gridrun-fusion") != NULL;
    if (fp)
        fclose (fp);
    return n;
}

/* The most fusion maps seen right after a fusion of owned tensors. */
static int max_fusion_maps;

enum { FU_ADD, FU_ALLOC, FU_MIXED };
static const char *const fusion_how[] = {"added", "allocated", "added and allocated"};

/* Many tensors of many sizes (some empty) in one fusion, reduced twice so
 * that the kept buffers are reused.  how: tensors added (gr_fusion_add, in
 * kind memory), allocated by the fusion (gr_fusion_alloc, host), or
 * every other one of each. */
static void check_fusion (int kind, gr_dtype_t t, gr_op_t op, size_t ntensors, int how)
{
    size_t es = gr_dtype_size (t);
    gr_fusion_t *f = gr_fusion_create (t, op);
    void **dev = calloc (ntensors, sizeof (void *));
    int *owned = calloc (ntensors, sizeof (int));
    size_t *counts = calloc (ntensors, sizeof (size_t)), total = 0;
    char what[160];

    snprintf (what, sizeof (what), "fusion of %zu %s %s tensors, %s, %s", ntensors,
              fusion_how[how], type_names[t], op_names[op], kind_names[kind]);
    if (!f || !dev || !counts || !owned) {
        FAIL ("%s: %s", what, gr_last_error ());
        return;
    }
    for (size_t k = 0; k < ntensors; k++) {
        counts[k] = (k * 37) % 257;
        owned[k] = how == FU_ALLOC || (how == FU_MIXED && k % 2 == 0);
        if (owned[k]) {
            if (!(dev[k] = gr_fusion_alloc (f, counts[k])))
                FAIL ("%s: gr_fusion_alloc: %s", what, gr_last_error ());
            else if ((uintptr_t)dev[k] % 64 != 0)
                FAIL ("%s: gr_fusion_alloc gave %p, not 64-byte aligned", what, dev[k]);
            for (size_t i = 0; dev[k] && i < counts[k] * es; i++) {
                if (((char *)dev[k])[i] != 0) {
                    FAIL ("%s: gr_fusion_alloc gave memory that is not zeroed", what);
                    break;
                }
            }
        } else {
            dev[k] = mem_alloc (kind, counts[k] * es);
            if (gr_fusion_add (f, dev[k], counts[k]) < 0)
                FAIL ("%s: gr_fusion_add: %s", what, gr_last_error ());
        }
        if (!dev[k])
            goto out;
        total += counts[k];
    }
    for (int round = 0; round < 2; round++) {
        /* Tensor k holds elements [off, off + count) of one long vector,
         * shifted by the round. */
        size_t off = 0;
        for (size_t k = 0; k < ntensors; k++) {
            void *h = mem_alloc (0, counts[k] * es);
            for (size_t i = 0; i < counts[k]; i++)
                set_value (t, h, i, value (t, rank, off + i + (size_t)round));
            mem_put (owned[k] ? 0 : kind, dev[k], h, counts[k] * es);
            free (h);
            off += counts[k];
        }
        if (gr_fusion_allreduce (f) < 0) {
            FAIL ("%s: round %d: %s", what, round, gr_last_error ());
            break;
        }
        if (how == FU_ALLOC) {
            int n = fusion_maps ();
            max_fusion_maps = n > max_fusion_maps ? n : max_fusion_maps;
        }
        off = 0;
        for (size_t k = 0; k < ntensors; k++) {
            void *h = mem_alloc (0, counts[k] * es);
            size_t base = off + (size_t)round;
            mem_get (owned[k] ? 0 : kind, h, dev[k], counts[k] * es);
            compare (what, t, op, h, counts[k], want_reduced, &base);
            free (h);
            off += counts[k];
        }
    }
out:
    for (size_t k = 0; k < ntensors; k++) {
        if (!owned[k])
            mem_free (kind, dev[k]);
    }
    free (dev);
    free (owned);
    free (counts);
    gr_fusion_destroy (f);
}

/* A fusion of device tensors gives no host memory. */
static void check_fusion_kinds (void)
{
    gr_fusion_t *f = gr_fusion_create (GR_F32, GR_SUM);
    void *d = mem_alloc (1, 64);

    if (gr_fusion_add (f, d, 16) < 0)
        FAIL ("fusion kinds: gr_fusion_add: %s", gr_last_error ());
    errno = 0;
    if (gr_fusion_alloc (f, 16) != NULL || errno != EINVAL ||
        !strstr (gr_last_error (), "kind of memory"))
        FAIL ("gr_fusion_alloc on a fusion of device tensors: not EINVAL with a reason "
              "('%s')", gr_last_error ());
    mem_free (1, d);
    gr_fusion_destroy (f);
}

/* Ranks that allocate different tensors: every rank fails with EINVAL
 * (only where the fusion memory is shared: by messages, mismatched
 * counts cannot be told), and the library still works after. */
static void check_fusion_mismatch (void)
{
    gr_fusion_t *f = gr_fusion_create (GR_F32, GR_SUM);
    float *v = f ? gr_fusion_alloc (f, rank == 0 ? 10 : 20) : NULL;

    if (!v) {
        FAIL ("fusion mismatch: %s", gr_last_error ());
        return;
    }
    errno = 0;
    if (gr_fusion_allreduce (f) != -1 || errno != EINVAL ||
        !strstr (gr_last_error (), "same tensors"))
        FAIL ("fusion mismatch: not EINVAL with a reason ('%s')", gr_last_error ());
    gr_fusion_destroy (f);
    f = gr_fusion_create (GR_F32, GR_SUM);
    v = f ? gr_fusion_alloc (f, 20) : NULL;
    for (int i = 0; v && i < 20; i++)
        v[i] = (float)(rank + i);
    if (!v || gr_fusion_allreduce (f) < 0)
        FAIL ("fusion after a mismatch: %s", gr_last_error ());
    else if (v[3] != (float)(size * 3 + size * (size - 1) / 2))
        FAIL ("fusion after a mismatch: element 3 is %g", v[3]);
    gr_fusion_destroy (f);
    if (rank == 0 && !failures)
        printf ("fusion mismatch: EINVAL on every rank, then a fusion works\n");
}

static void check_all (int kind)
{
    static const size_t sizes[] = {0, 1, 2, 3, 7, 17, 1000, 4099, 65537, 300007};
    size_t nsizes = sizeof (sizes) / sizeof (sizes[0]);

    for (int t = GR_F32; t <= GR_BF16; t++) {
        for (size_t s = 0; s < nsizes; s++) {
            size_t n = sizes[s];
            int big = n > 5000;
            for (int op = GR_SUM; op <= GR_AVG; op++) {
                for (int mode = 0; mode < 3; mode++) {
                    if (big && mode == 2)
                        continue;
                    check_allreduce (kind, t, op, n, mode);
                }
                if (!big || op == GR_SUM || op == GR_AVG) {
                    check_reduce_scatter (kind, t, op, n, 0);
                    check_reduce_scatter (kind, t, op, n, 1);
                }
            }
            for (int root = 0; root < size; root++) {
                if (!big || root == size - 1)
                    check_broadcast (kind, t, n, root);
            }
            check_allgather (kind, t, n, 0);
            check_allgather (kind, t, n, 1);
        }
        check_fusion (kind, t, GR_SUM, 300, FU_ADD);
        if (kind == 0) {
            check_fusion (kind, t, GR_SUM, 300, FU_ALLOC);
            check_fusion (kind, t, GR_MIN, 30, FU_ALLOC);
            check_fusion (kind, t, GR_AVG, 30, FU_ALLOC);
        }
    }
    check_fusion (kind, GR_F32, GR_AVG, 1000, FU_ADD);
    check_fusion (kind, GR_I64, GR_MAX, 50, FU_ADD);
    check_fusion (kind, GR_F64, GR_AVG, 1000, FU_MIXED);
    check_fusion (kind, GR_BF16, GR_MAX, 50, FU_MIXED);
    if (kind == 0)
        check_fusion (kind, GR_F32, GR_SUM, 5000, FU_ALLOC);
    else
        check_fusion_kinds ();
    if (gr_barrier () < 0)
        FAIL ("barrier: %s", gr_last_error ());
}

/* ---- Other cases ------------------------------------------------------- */

static void check_errors (void)
{
    float x = 1;

    errno = 0;
    if (gr_allreduce (&x, &x, 1, (gr_dtype_t)42, GR_SUM) != -1 || errno != EINVAL)
        FAIL ("an unknown type was not refused with EINVAL");
    if (gr_allreduce (&x, &x, 1, GR_F32, (gr_op_t)9) != -1 || errno != EINVAL)
        FAIL ("an unknown operation was not refused with EINVAL");
    if (gr_broadcast (&x, 1, GR_F32, size) != -1 || errno != EINVAL)
        FAIL ("a root out of range was not refused with EINVAL");
    if (!strstr (gr_last_error (), "root"))
        FAIL ("gr_last_error does not explain the bad root: '%s'", gr_last_error ());
    if (gr_allreduce (NULL, &x, 1, GR_F32, GR_SUM) != -1 || errno != EINVAL)
        FAIL ("a NULL buffer was not refused with EINVAL");
    if (gr_dtype_size (GR_BF16) != 2 || gr_dtype_size (GR_F64) != 8)
        FAIL ("gr_dtype_size");
}

static void check_info (int print)
{
    gr_topo_info_t info;

    if (gr_topo_info (&info) < 0) {
        FAIL ("gr_topo_info: %s", gr_last_error ());
        return;
    }
    if (info.node < 0 || info.node >= info.nodes || !info.host[0] || !info.rack[0] ||
        info.ncpus < 1)
        FAIL ("gr_topo_info: implausible: node %d of %d, host '%s', rack '%s', %d cpus",
              info.node, info.nodes, info.host, info.rack, info.ncpus);
    if (gr_local_rank () < 0 || gr_local_rank () >= gr_local_size ())
        FAIL ("local rank %d of %d", gr_local_rank (), gr_local_size ());
    const char *b = gr_backend_name ();
    gr_backend_t bk = gr_backend ();
    if (strcmp (b, bk == GR_BACKEND_NCCL ? "nccl" : bk == GR_BACKEND_TCP ? "tcp" : "mpi") != 0)
        FAIL ("gr_backend_name '%s' disagrees with gr_backend", b);
    if (print)
        printf ("rank %d/%d local %d/%d host %s node %d/%d rack %s zone %s cpus %s (%d) "
                "gpu %d of %d backend %s\n",
                rank, size, gr_local_rank (), gr_local_size (), info.host, info.node,
                info.nodes, info.rack, info.zone, info.cpus, info.ncpus, info.gpu,
                info.ngpus_node, b);
}

static void check_preempt (int sig)
{
    if (gr_preempt_requested ())
        FAIL ("preemption requested before any signal");
    raise (sig);
    if (!gr_preempt_requested ())
        FAIL ("no preemption notice after signal %d", sig);
}

/* One allreduce of more than INT_MAX f16 elements (4 GiB a rank), in
 * place: every rank contributes 1, so every element must be size. */
static void check_big (void)
{
    size_t n = (size_t)INT_MAX + 4099;
    uint16_t *v = malloc (n * sizeof (uint16_t)), one = exact_f16 (1.0f);
    uint16_t want = exact_f16 ((float)size);
    size_t bad = 0;

    if (!v) {
        FAIL ("--big: cannot allocate %zu bytes", n * sizeof (uint16_t));
        return;
    }
    for (size_t i = 0; i < n; i++)
        v[i] = one;
    if (gr_allreduce (GR_IN_PLACE, v, n, GR_F16, GR_SUM) < 0)
        FAIL ("--big: allreduce of %zu f16: %s", n, gr_last_error ());
    else {
        for (size_t i = 0; i < n; i++)
            bad += v[i] != want;
        if (bad)
            FAIL ("--big: %zu of %zu elements wrong (first: %g)", bad, n,
                  read_f16 (v[0]));
    }
    free (v);
}

/* The last rank arrives 3 s late; the others must give up at about
 * GRIDRUN_COLL_TIMEOUT (1 s) with ETIMEDOUT, and fail at once afterwards. */
static void check_timeout (int kind)
{
    float one = 1;
    float *x = mem_alloc (kind, sizeof (float));
    struct timespec t0, t1;

    mem_put (kind, x, &one, sizeof (one));
    if (rank == size - 1)
        sleep (3);
    clock_gettime (CLOCK_MONOTONIC, &t0);
    int rc = gr_allreduce (GR_IN_PLACE, x, 1, GR_F32, GR_SUM);
    int err = errno;
    clock_gettime (CLOCK_MONOTONIC, &t1);
    double took = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    if (rank == size - 1) {
        printf ("rank %d (late): rc %d after %.2f s%s%s\n", rank, rc, took,
                rc ? ": " : "", rc ? gr_last_error () : "");
        if (rc == 0)
            mem_free (kind, x);
        return;
    }
    if (rc != -1 || err != ETIMEDOUT)
        FAIL ("timeout: rc %d errno %d (%s), want ETIMEDOUT", rc, err, strerror (err));
    else if (took < 0.9 || took > 2.5)
        FAIL ("timeout: gave up after %.2f s, want about 1 s", took);
    else if (!strstr (gr_last_error (), "deadline"))
        FAIL ("timeout: message does not say so: %s", gr_last_error ());
    else
        printf ("rank %d: ETIMEDOUT after %.2f s: %s\n", rank, took, gr_last_error ());
    if (gr_allreduce (GR_IN_PLACE, x, 1, GR_F32, GR_SUM) != -1 || errno != ECOMM)
        FAIL ("timeout: the next allreduce did not fail with ECOMM");
    /* Over TCP a rank that exits closes its connections, which its peers
     * notice at once: stay until every rank but the late one has met its
     * own deadline. */
    sleep (1);
    /* Memory an aborted operation may still use is not freed. */
}

static int errno_named (const char *name)
{
    static const struct {
        const char *name;
        int value;
    } names[] = {
        {"EINVAL", EINVAL},     {"ENOTSUP", ENOTSUP},     {"ECOMM", ECOMM},
        {"EPROTO", EPROTO},     {"ETIMEDOUT", ETIMEDOUT}, {"EADDRNOTAVAIL", EADDRNOTAVAIL},
        {"EADDRINUSE", EADDRINUSE}};
    for (size_t i = 0; i < sizeof (names) / sizeof (names[0]); i++) {
        if (strcmp (names[i].name, name) == 0)
            return names[i].value;
    }
    return atoi (name);
}

static int init_error (int want_errno, const char *text)
{
    int rc = gr_init (NULL, NULL), err = errno, mpi = 0;

    /* Without MPI (a TCP world), MPI was never started. */
    MPI_Initialized (&mpi);
    if (mpi)
        MPI_Comm_rank (MPI_COMM_WORLD, &rank);
    else
        rank = getenv ("RANK") ? atoi (getenv ("RANK")) : 0;
    if (rc == 0) {
        if (gr_backend () == GR_BACKEND_NCCL && strstr (text, "nccl")) {
            printf ("rank %d: NCCL is usable here; nothing to check\n", rank);
            gr_finalize ();
            return 0;
        }
        FAIL ("gr_init succeeded, want errno %d with '%s'", want_errno, text);
        gr_finalize ();
        return 1;
    }
    if (err != want_errno || !strstr (gr_last_error (), text))
        FAIL ("gr_init: errno %d '%s', want errno %d with '%s'", err, gr_last_error (),
              want_errno, text);
    else if (rank == 0 || !mpi)
        printf ("gr_init failed as expected: %s\n", gr_last_error ());
    if (mpi)
        MPI_Finalize ();
    return failures ? 1 : 0;
}

int main (int argc, char **argv)
{
    int big = 0, timeout = 0, info = 0, preempt = 0, devices = 0, on_device = 0;
    int mismatch = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp (argv[i], "--big") == 0)
            big = 1;
        else if (strcmp (argv[i], "--timeout") == 0)
            timeout = 1;
        else if (strcmp (argv[i], "--device") == 0)
            on_device = 1;
        else if (strcmp (argv[i], "--info") == 0)
            info = 1;
        else if (strcmp (argv[i], "--fusion-mismatch") == 0)
            mismatch = 1;
        else if (strcmp (argv[i], "--preempt") == 0 && i + 1 < argc)
            preempt = atoi (argv[++i]);
        else if (strcmp (argv[i], "--init-error") == 0 && i + 2 < argc)
            return init_error (errno_named (argv[i + 1]), argv[i + 2]);
        else {
            fprintf (stderr, "usage: gr-colltest [--big] [--timeout [--device]] [--info] "
                             "[--fusion-mismatch] [--preempt SIGNUM] [--init-error ERRNO TEXT]\n");
            return 2;
        }
    }
    errno = 0;
    if (gr_allreduce (GR_IN_PLACE, &devices, 1, GR_I32, GR_SUM) != -1 || errno != EPROTO)
        FAIL ("a collective before gr_init did not fail with EPROTO");
    if (gr_init (&argc, &argv) < 0) {
        fprintf (stderr, "gr-colltest: gr_init: %s\n", gr_last_error ());
        return 1;
    }
    rank = gr_rank ();
    size = gr_size ();
    check_info (info);
    if (info)
        goto done;
    if (timeout) {
        check_timeout (on_device);
        goto done;
    }
    if (preempt) {
        check_preempt (preempt);
        goto done;
    }
    if (mismatch) {
        check_fusion_mismatch ();
        goto done;
    }
    check_errors ();
    check_all (0);
    if (rank == 0)
        printf ("fusion maps: %d\n", max_fusion_maps);
#if HAVE_CUDA
    if (cudaGetDeviceCount (&devices) != cudaSuccess)
        devices = 0;
#endif
    if (devices > 0) {
        check_all (1);
        if (rank == 0)
            printf ("device buffers checked (backend %s)\n", gr_backend_name ());
    } else if (rank == 0)
        printf ("device buffers: skipped (no GPU)\n");
    if (big)
        check_big ();
    check_preempt (SIGUSR2);
done:
    /* After a timeout the library's collectives are gone; MPI's own
     * world communicator still works for the final agreement.  Without
     * MPI (a TCP world) each rank answers for itself. */
    {
        int all = failures;
        if (gr_comm () != MPI_COMM_NULL)
            MPI_Allreduce (&failures, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
        if (rank == 0)
            printf ("gr-colltest: %d ranks, backend %s: %s\n", size, gr_backend_name (),
                    all ? "MISMATCHES" : "all matched");
        if (gr_finalize () < 0) {
            fprintf (stderr, "gr-colltest: rank %d: gr_finalize: %s\n", rank,
                     gr_last_error ());
            return 1;
        }
        return all ? 1 : 0;
    }
}
