/* The dispatcher: backend choice, host or device buffers, staging, fusion.
 *
 * Host buffers always go to the host backend: MPI, or TCP in a program
 * started without MPI (world.h).  Device buffers go to NCCL when it is in
 * use; otherwise (a GPU but GRIDRUN_COLL=mpi, or NCCL not usable on every
 * rank) they are staged: copied into a host buffer kept between calls
 * (pinned when CUDA can pin it), reduced there by the host backend, and
 * copied back.  That costs two copies over PCIe, and is there so that a
 * program works unchanged, not to be fast.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

#include "coll.h"
#include "shm.h"
#include "src/common/gtime.h"
#include "src/common/log.h"

struct gr_coll {
    gr_coll_backend_t *host; /* host buffers: MPI or TCP */
    int tcp;                 /* host is the TCP backend */
    gr_coll_backend_t *dev; /* device buffers: NCCL, or NULL (staged through mpi) */
    int rank, size;
    int device; /* CUDA device of this rank, or -1 */
    int ngpus;
    void *stage; /* host copy of device buffers for the MPI backend */
    size_t stage_size;
    int stage_pinned;
};

/* Tensors start FUSION_ALIGN bytes apart, in chunks of at least
 * FUSION_CHUNK bytes (GRIDRUN_COLL_FUSION_CHUNK for tests; shm.c: mapped,
 * so what is not used costs no memory, and shared by the ranks of a node
 * where the backend can). */
#define FUSION_ALIGN 64
#define FUSION_CHUNK ((size_t)16 << 20)

typedef struct {
    gr_coll_seg_t *seg;
    char *base;       /* its data */
    size_t used, cap; /* bytes */
} fchunk_t;

struct gr_fusion {
    gr_dtype_t type;
    gr_op_t op;
    int kind; /* -1 until the first add, then 0 host, 1 device */
    void **bufs;
    size_t *counts;
    size_t n, cap;
    size_t total; /* elements */
    gr_coll_seg_t *pack; /* host packing buffer, kept between calls */
    size_t pack_size;
    int in_flight; /* an operation on pack or a chunk timed out: keep them */
    /* gr_fusion_alloc's tensors: in chunks the fusion owns and reduces in
     * place, without packing. */
    fchunk_t *chunks;
    size_t nchunks, chunks_cap;
    size_t nowned; /* tensors in the chunks */
    size_t nadded; /* elements of the added tensors: what the pack holds */
};

int gr_coll_break (gr_coll_backend_t *b, gr_error_t *errp, int err, const char *fmt, ...)
{
    va_list ap;

    va_start (ap, fmt);
    vsnprintf (b->why, sizeof (b->why), fmt, ap);
    va_end (ap);
    b->broken = 1;
    errno = err;
    return gr_errprintf (errp, "%s", b->why);
}

void gr_coll_dev_error (gr_error_t *errp, const char *call, const char *name,
                        const char *text, const char *detail)
{
    errno = ECOMM;
    if (detail && *detail)
        gr_errprintf (errp, "%s failed: %s: %s (%s)", call, name, text, detail);
    else
        gr_errprintf (errp, "%s failed: %s: %s", call, name, text);
    errno = ECOMM;
}

int gr_coll_parse_mode (const char *s, gr_coll_mode_t *mode)
{
    if (!s || !*s || strcmp (s, "auto") == 0)
        *mode = GR_COLL_AUTO;
    else if (strcmp (s, "mpi") == 0)
        *mode = GR_COLL_MPI;
    else if (strcmp (s, "nccl") == 0)
        *mode = GR_COLL_NCCL;
    else {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

static double deadline_of (double timeout)
{
    return timeout > 0 ? gr_now () + timeout : INFINITY;
}

/* ---- Creation ---------------------------------------------------------- */

/* GRIDRUN_COLL_MAX_CHUNK: elements per MPI call, so that tests can run
 * the path for counts beyond INT_MAX on small buffers. */
static size_t max_chunk_env (void)
{
    const char *s = getenv ("GRIDRUN_COLL_MAX_CHUNK");
    char *end;
    unsigned long long v;

    if (!s || !*s)
        return INT_MAX;
    errno = 0;
    v = strtoull (s, &end, 10);
    if (errno || *end || v == 0 || v > INT_MAX)
        return INT_MAX;
    return (size_t)v;
}

/* Pick this rank's GPU.  Returns the device or -1, with why saying why
 * not. */
static int pick_device (gr_coll_t *c, int local_rank, int local_size, char *why,
                        size_t len)
{
#if HAVE_CUDA
    int n = 0;
    cudaError_t e = cudaGetDeviceCount (&n);

    if (e != cudaSuccess || n <= 0) {
        snprintf (why, len, "no usable CUDA device (cudaGetDeviceCount: %s)",
                  e != cudaSuccess ? cudaGetErrorString (e) : "0 devices");
        cudaGetLastError (); /* clear the sticky-free error state */
        return -1;
    }
    c->ngpus = n;
    int dev = local_rank % n;
    if ((e = cudaSetDevice (dev)) != cudaSuccess) {
        snprintf (why, len, "cudaSetDevice(%d) failed: %s", dev, cudaGetErrorString (e));
        cudaGetLastError ();
        return -1;
    }
    /* NCCL refuses two ranks of one communicator on one device. */
    if (local_size > n)
        snprintf (why, len,
                  "%d ranks share this node's %d GPU%s (NCCL needs one per rank)",
                  local_size, n, n == 1 ? "" : "s");
    return dev;
#else
    (void)c;
    (void)local_rank;
    (void)local_size;
    snprintf (why, len, "gridrun was built without CUDA");
    return -1;
#endif
}

/* Every rank learns the first rank whose ok is 0 (INT_MAX: none) and that
 * rank's reason. */
static int agree (gr_world_t *w, int rank, int ok, const char *why, char *first_why,
                  size_t len, int *first, gr_error_t *errp)
{
    int mine = ok ? INT_MAX : rank;
    gr_error_t e;

    if (gr_world_allreduce_int (w, &mine, first, 1, GR_MIN, &e) < 0)
        goto error;
    if (*first == INT_MAX)
        return 0;
    if (rank == *first)
        snprintf (first_why, len, "%s", why);
    if (gr_world_bcast (w, first_why, len, *first, &e) < 0)
        goto error;
    first_why[len - 1] = '\0';
    return 0;
error:
    errno = ECOMM;
    return gr_errprintf (errp, "the ranks could not agree on the collectives backend: %s",
                         e.text);
}

gr_coll_t *gr_coll_create (gr_world_t *w, int local_rank, int local_size,
                           gr_coll_mode_t mode, double timeout, gr_error_t *errp)
{
    gr_coll_t *c;
    char why[256] = "", first_why[256] = "";
    int first, can;

    if (!(c = calloc (1, sizeof (*c)))) {
        errno = ENOMEM;
        gr_errprintf (errp, "out of memory");
        return NULL;
    }
    c->tcp = gr_world_netof (w) != NULL;
    if (!(c->host = c->tcp ? gr_coll_tcp_create (gr_world_netof (w), errp)
                           : gr_coll_mpi_create (gr_world_comm (w), max_chunk_env (), errp)))
        goto error;
    c->rank = gr_world_rank (w);
    c->size = gr_world_size (w);
    c->device = pick_device (c, local_rank, local_size, why, sizeof (why));
    if (mode == GR_COLL_MPI)
        return c;

    can = c->device >= 0 && !why[0];
#if !HAVE_NCCL
    if (can) {
        snprintf (why, sizeof (why), "gridrun was built without NCCL");
        can = 0;
    }
#endif
    if (agree (w, c->rank, can, why, first_why, sizeof (first_why), &first, errp) < 0)
        goto error;
    if (first != INT_MAX) {
        if (mode == GR_COLL_NCCL) {
            errno = ENOTSUP;
            gr_errprintf (errp,
                          "GRIDRUN_COLL=nccl, but rank %d cannot use NCCL: %s; "
                          "unset GRIDRUN_COLL (or set it to auto or mpi) to use %s",
                          first, first_why, c->tcp ? "TCP" : "MPI");
            goto error;
        }
        GR_DEBUG ("collectives: %s for device buffers too: rank %d cannot use NCCL: %s",
                  c->host->ops->name, first, first_why);
        return c;
    }
#if HAVE_NCCL
    {
        gr_error_t nerr = {.text = ""};
        c->dev = gr_coll_nccl_create (w, c->device, deadline_of (timeout), &nerr);
        if (agree (w, c->rank, c->dev != NULL, nerr.text, first_why,
                   sizeof (first_why), &first, errp) < 0)
            goto error;
        if (first != INT_MAX) {
            if (c->dev) {
                c->dev->ops->destroy (c->dev);
                c->dev = NULL;
            }
            if (mode == GR_COLL_NCCL) {
                errno = ECOMM;
                gr_errprintf (errp,
                              "GRIDRUN_COLL=nccl, but NCCL could not start on rank "
                              "%d: %s",
                              first, first_why);
                goto error;
            }
            if (c->rank == 0)
                GR_WARN ("collectives: NCCL could not start on rank %d (%s); device "
                         "buffers go through %s, staged in host memory",
                         first, first_why, c->host->ops->name);
        }
    }
#endif
    return c;
error:
    gr_coll_destroy (c);
    return NULL;
}

void gr_coll_destroy (gr_coll_t *c)
{
    int saved = errno;

    if (!c)
        return;
    if (c->dev)
        c->dev->ops->destroy (c->dev);
    if (c->stage && !(c->host && c->host->broken)) {
#if HAVE_CUDA
        if (c->stage_pinned)
            cudaFreeHost (c->stage);
        else
#endif
            free (c->stage);
    }
    if (c->host)
        c->host->ops->destroy (c->host);
    free (c);
    errno = saved;
}

gr_backend_t gr_coll_backend (const gr_coll_t *c)
{
    return c && c->dev ? GR_BACKEND_NCCL : c && c->tcp ? GR_BACKEND_TCP : GR_BACKEND_MPI;
}

int gr_coll_device (const gr_coll_t *c)
{
    return c ? c->device : -1;
}

int gr_coll_ngpus (const gr_coll_t *c)
{
    return c ? c->ngpus : 0;
}

int gr_coll_is_device (const gr_coll_t *c, const void *p)
{
#if HAVE_CUDA
    struct cudaPointerAttributes a;

    if (!c || c->ngpus == 0 || !p || p == GR_IN_PLACE)
        return 0;
    if (cudaPointerGetAttributes (&a, p) != cudaSuccess) {
        cudaGetLastError ();
        return 0;
    }
    /* Managed memory is reachable from the host, so MPI can use it as it
     * is; NCCL takes it too. */
    if (a.type == cudaMemoryTypeDevice)
        return 1;
    if (a.type == cudaMemoryTypeManaged)
        return c->dev != NULL;
    return 0;
#else
    (void)c;
    (void)p;
    return 0;
#endif
}

/* ---- Dispatch ---------------------------------------------------------- */

static int check_broken (gr_coll_backend_t *b, gr_error_t *errp)
{
    if (!b->broken)
        return 0;
    errno = ECOMM;
    return gr_errprintf (errp, "not usable after an earlier failure: %s", b->why);
}

/* Which memory the buffers are in: 0 host, 1 device (the same kind for
 * both, or EINVAL). */
static int kind_of (gr_coll_t *c, const void *sendbuf, const void *recvbuf,
                    gr_error_t *errp)
{
    int r = gr_coll_is_device (c, recvbuf);

    if (sendbuf && sendbuf != GR_IN_PLACE && gr_coll_is_device (c, sendbuf) != r) {
        errno = EINVAL;
        return gr_errprintf (errp,
                             "the send buffer is in %s memory and the receive buffer "
                             "in %s memory; use the same kind for both",
                             r ? "host" : "device", r ? "device" : "host");
    }
    return r;
}

#if HAVE_CUDA
static void *stage_get (gr_coll_t *c, size_t bytes, gr_error_t *errp)
{
    void *p = NULL;
    int pinned = 1;

    if (c->stage_size >= bytes)
        return c->stage;
    if (cudaMallocHost (&p, bytes) != cudaSuccess) {
        cudaGetLastError ();
        pinned = 0;
        if (!(p = malloc (bytes))) {
            errno = ENOMEM;
            gr_errprintf (errp, "out of memory for a %zu-byte staging buffer", bytes);
            return NULL;
        }
    }
    if (c->stage && c->stage_pinned)
        cudaFreeHost (c->stage);
    else
        free (c->stage);
    c->stage = p;
    c->stage_size = bytes;
    c->stage_pinned = pinned;
    return p;
}

static int d2h (void *dst, const void *src, size_t bytes, gr_error_t *errp)
{
    GR_CUDA_CHECK (cudaMemcpy (dst, src, bytes, cudaMemcpyDeviceToHost), errp, error);
    return 0;
error:
    return -1;
}

static int h2d (void *dst, const void *src, size_t bytes, gr_error_t *errp)
{
    GR_CUDA_CHECK (cudaMemcpy (dst, src, bytes, cudaMemcpyHostToDevice), errp, error);
    return 0;
error:
    return -1;
}

/* The staged forms of the collectives: device buffers through MPI. */
static int staged_allreduce (gr_coll_t *c, const void *sendbuf, void *recvbuf,
                             size_t count, gr_dtype_t type, gr_op_t op, double deadline,
                             gr_error_t *errp)
{
    size_t bytes = count * gr_coll_dtype_size (type);
    void *h = stage_get (c, bytes, errp);

    if (!h || d2h (h, sendbuf == GR_IN_PLACE ? recvbuf : sendbuf, bytes, errp) < 0 ||
        c->host->ops->allreduce (c->host, GR_IN_PLACE, h, count, type, op, deadline, errp) <
            0)
        return -1;
    return h2d (recvbuf, h, bytes, errp);
}

static int staged_bcast (gr_coll_t *c, void *buf, size_t count, gr_dtype_t type, int root,
                         double deadline, gr_error_t *errp)
{
    size_t bytes = count * gr_coll_dtype_size (type);
    void *h = stage_get (c, bytes, errp);

    if (!h || (c->rank == root && d2h (h, buf, bytes, errp) < 0) ||
        c->host->ops->bcast (c->host, h, count, type, root, deadline, errp) < 0)
        return -1;
    return c->rank == root ? 0 : h2d (buf, h, bytes, errp);
}

static int staged_allgather (gr_coll_t *c, const void *sendbuf, void *recvbuf,
                             size_t count, gr_dtype_t type, double deadline,
                             gr_error_t *errp)
{
    size_t bytes = count * gr_coll_dtype_size (type);
    char *h = stage_get (c, bytes * (size_t)c->size, errp);
    const char *mine = sendbuf == GR_IN_PLACE
                           ? (const char *)recvbuf + (size_t)c->rank * bytes
                           : sendbuf;

    if (!h || d2h (h + (size_t)c->rank * bytes, mine, bytes, errp) < 0 ||
        c->host->ops->allgather (c->host, GR_IN_PLACE, h, count, type, deadline, errp) < 0)
        return -1;
    return h2d (recvbuf, h, bytes * (size_t)c->size, errp);
}

static int staged_reduce_scatter (gr_coll_t *c, const void *sendbuf, void *recvbuf,
                                  size_t recvcount, gr_dtype_t type, gr_op_t op,
                                  double deadline, gr_error_t *errp)
{
    size_t bytes = recvcount * gr_coll_dtype_size (type);
    void *h = stage_get (c, bytes * (size_t)c->size, errp);

    if (!h ||
        d2h (h, sendbuf == GR_IN_PLACE ? recvbuf : sendbuf, bytes * (size_t)c->size,
             errp) < 0 ||
        c->host->ops->reduce_scatter (c->host, GR_IN_PLACE, h, recvcount, type, op,
                                     deadline, errp) < 0)
        return -1;
    return h2d (recvbuf, h, bytes, errp);
}
#endif

/* The backend for buffers of kind dev, or NULL when they are staged. */
static gr_coll_backend_t *backend_for (gr_coll_t *c, int dev)
{
    return dev ? c->dev : c->host;
}

/* Where a call goes: -1 on error, 0 when there is nothing to do (no
 * elements), else 1 with *bp the backend (NULL: staged through MPI). */
static int route (gr_coll_t *c, const void *sendbuf, const void *recvbuf, size_t count,
                  gr_coll_backend_t **bp, gr_error_t *errp)
{
    int dev = kind_of (c, sendbuf, recvbuf, errp);

    if (dev < 0)
        return -1;
    *bp = backend_for (c, dev);
    if (check_broken (*bp ? *bp : c->host, errp) < 0)
        return -1;
    return count > 0;
}

int gr_coll_allreduce (gr_coll_t *c, const void *sendbuf, void *recvbuf, size_t count,
                       gr_dtype_t type, gr_op_t op, double timeout, gr_error_t *errp)
{
    gr_coll_backend_t *b;
    int r = route (c, sendbuf, recvbuf, count, &b, errp);

    if (r <= 0)
        return r;
#if HAVE_CUDA
    if (!b)
        return staged_allreduce (c, sendbuf, recvbuf, count, type, op,
                                 deadline_of (timeout), errp);
#endif
    return b->ops->allreduce (b, sendbuf, recvbuf, count, type, op, deadline_of (timeout),
                              errp);
}

int gr_coll_bcast (gr_coll_t *c, void *buf, size_t count, gr_dtype_t type, int root,
                   double timeout, gr_error_t *errp)
{
    gr_coll_backend_t *b;
    int r = route (c, NULL, buf, count, &b, errp);

    if (r <= 0)
        return r;
#if HAVE_CUDA
    if (!b)
        return staged_bcast (c, buf, count, type, root, deadline_of (timeout), errp);
#endif
    return b->ops->bcast (b, buf, count, type, root, deadline_of (timeout), errp);
}

int gr_coll_allgather (gr_coll_t *c, const void *sendbuf, void *recvbuf, size_t count,
                       gr_dtype_t type, double timeout, gr_error_t *errp)
{
    gr_coll_backend_t *b;
    int r = route (c, sendbuf, recvbuf, count, &b, errp);

    if (r <= 0)
        return r;
#if HAVE_CUDA
    if (!b)
        return staged_allgather (c, sendbuf, recvbuf, count, type, deadline_of (timeout),
                                 errp);
#endif
    return b->ops->allgather (b, sendbuf, recvbuf, count, type, deadline_of (timeout),
                              errp);
}

int gr_coll_reduce_scatter (gr_coll_t *c, const void *sendbuf, void *recvbuf,
                            size_t recvcount, gr_dtype_t type, gr_op_t op, double timeout,
                            gr_error_t *errp)
{
    gr_coll_backend_t *b;
    int r = route (c, sendbuf, recvbuf, recvcount, &b, errp);

    if (r <= 0)
        return r;
#if HAVE_CUDA
    if (!b)
        return staged_reduce_scatter (c, sendbuf, recvbuf, recvcount, type, op,
                                      deadline_of (timeout), errp);
#endif
    return b->ops->reduce_scatter (b, sendbuf, recvbuf, recvcount, type, op,
                                   deadline_of (timeout), errp);
}

int gr_coll_barrier (gr_coll_t *c, double timeout, gr_error_t *errp)
{
    if (check_broken (c->host, errp) < 0)
        return -1;
    return c->host->ops->barrier (c->host, deadline_of (timeout), errp);
}

/* ---- Fusion ------------------------------------------------------------ */

gr_fusion_t *gr_coll_fusion_create (gr_dtype_t type, gr_op_t op)
{
    gr_fusion_t *f = calloc (1, sizeof (*f));

    if (!f) {
        errno = ENOMEM;
        return NULL;
    }
    f->type = type;
    f->op = op;
    f->kind = -1;
    return f;
}

size_t gr_coll_fusion_bytes (const gr_fusion_t *f)
{
    return f ? f->total * gr_coll_dtype_size (f->type) : 0;
}

void gr_coll_fusion_destroy (gr_fusion_t *f)
{
    int saved = errno;

    if (!f)
        return;
    if (!f->in_flight) {
        gr_coll_seg_destroy (f->pack);
        for (size_t i = 0; i < f->nchunks; i++)
            gr_coll_seg_destroy (f->chunks[i].seg);
    }
    free (f->chunks);
    free (f->bufs);
    free (f->counts);
    free (f);
    errno = saved;
}

int gr_coll_fusion_add (gr_coll_t *c, gr_fusion_t *f, void *buf, size_t count,
                        gr_error_t *errp)
{
    int kind = gr_coll_is_device (c, buf);

    if (f->kind >= 0 && kind != f->kind) {
        errno = EINVAL;
        return gr_errprintf (errp,
                             "tensor %zu is in %s memory but the fusion's first is in "
                             "%s memory; use one fusion per kind of memory",
                             f->n + f->nowned, kind ? "device" : "host",
                             kind ? "host" : "device");
    }
    if (f->total + count < f->total) {
        errno = EINVAL;
        return gr_errprintf (errp, "the fusion's element count overflows");
    }
    if (f->n == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 64;
        void **bufs = realloc (f->bufs, cap * sizeof (*bufs));
        if (bufs)
            f->bufs = bufs;
        size_t *counts = bufs ? realloc (f->counts, cap * sizeof (*counts)) : NULL;
        if (!counts) {
            errno = ENOMEM;
            return gr_errprintf (errp, "out of memory for %zu fusion entries", cap);
        }
        f->counts = counts;
        f->cap = cap;
    }
    f->kind = kind;
    f->bufs[f->n] = buf;
    f->counts[f->n] = count;
    f->n++;
    f->total += count;
    f->nadded += count;
    return 0;
}

void *gr_coll_fusion_alloc (gr_fusion_t *f, size_t count, gr_error_t *errp)
{
    size_t es = gr_coll_dtype_size (f->type);
    fchunk_t *ch = f->nchunks ? &f->chunks[f->nchunks - 1] : NULL;
    size_t bytes;

    if (f->kind == 1) {
        errno = EINVAL;
        gr_errprintf (errp, "the fusion holds device tensors and gives host memory only; "
                            "use one fusion per kind of memory");
        return NULL;
    }
    if (count > (SIZE_MAX - FUSION_ALIGN) / es || f->total + count < f->total) {
        errno = EINVAL;
        gr_errprintf (errp, "%zu elements of %zu bytes are too many for a fusion", count,
                      es);
        return NULL;
    }
    bytes = (count * es + FUSION_ALIGN - 1) / FUSION_ALIGN * FUSION_ALIGN;
    if (!ch || ch->cap - ch->used < bytes) {
        if (f->nchunks == f->chunks_cap) {
            size_t cap = f->chunks_cap ? 2 * f->chunks_cap : 4;
            fchunk_t *chunks = realloc (f->chunks, cap * sizeof (*chunks));
            if (!chunks) {
                errno = ENOMEM;
                gr_errprintf (errp, "out of memory for %zu fusion chunks", cap);
                return NULL;
            }
            f->chunks = chunks;
            f->chunks_cap = cap;
        }
        size_t chunk = FUSION_CHUNK;
        /* Bytes, for tests; gr_init refuses a value that is not a number. */
        const char *env = getenv ("GRIDRUN_COLL_FUSION_CHUNK");
        if (env && strtoull (env, NULL, 10) > 0)
            chunk = (size_t)strtoull (env, NULL, 10);
        size_t cap = bytes > chunk ? bytes : chunk;
        gr_coll_seg_t *seg = gr_coll_seg_create (cap, errp);
        if (!seg)
            return NULL;
        ch = &f->chunks[f->nchunks++];
        *ch = (fchunk_t){.seg = seg, .base = gr_coll_seg_data (seg), .cap = cap};
    }
    void *p = ch->base + ch->used;
    ch->used += bytes;
    f->kind = 0;
    f->nowned++;
    f->total += count;
    return p;
}

/* Reduce the first count elements of seg in place: through the memory
 * the ranks share where the host backend can, else as a buffer.  A
 * timeout leaves f's memory to the operation in flight. */
static int seg_allreduce (gr_coll_t *c, gr_fusion_t *f, gr_coll_seg_t *seg, size_t count,
                          double timeout, gr_error_t *errp)
{
    gr_coll_backend_t *h = c->host;
    int rc;

    f->in_flight = 1;
    if (h->ops->seg_allreduce) {
        rc = check_broken (h, errp);
        if (rc == 0)
            rc = h->ops->seg_allreduce (h, seg, count, f->type, f->op,
                                        deadline_of (timeout), errp);
    } else
        rc = gr_coll_allreduce (c, GR_IN_PLACE, gr_coll_seg_data (seg), count, f->type,
                                f->op, timeout, errp);
    f->in_flight = rc < 0 ? h->broken : 0;
    return rc;
}

int gr_coll_fusion_allreduce (gr_coll_t *c, gr_fusion_t *f, double timeout,
                              gr_error_t *errp)
{
    size_t es = gr_coll_dtype_size (f->type);
    gr_coll_backend_t *b = backend_for (c, f->kind == 1);
    char *p;

    if (f->total == 0)
        return 0;
    /* Device tensors: one grouped operation where the backend has one
     * (NCCL), else staged one by one through the host pack below. */
    if (b && b->ops->allreduce_many) {
        if (check_broken (b, errp) < 0)
            return -1;
        return b->ops->allreduce_many (b, f->bufs, f->counts, f->n, f->type, f->op,
                                       deadline_of (timeout), errp);
    }
    if (f->in_flight)
        return check_broken (c->host, errp);
    /* The padding between tensors holds zeros, and stays zero whatever
     * the operation. */
    for (size_t i = 0; i < f->nchunks; i++) {
        if (seg_allreduce (c, f, f->chunks[i].seg, f->chunks[i].used / es, timeout, errp) < 0)
            return -1;
    }
    if (f->n == 0)
        return 0;
    size_t ext = f->nadded;
    if (f->pack_size < ext * es) {
        gr_coll_seg_t *seg = gr_coll_seg_create (ext * es, errp);
        if (!seg)
            return -1;
        gr_coll_seg_destroy (f->pack);
        f->pack = seg;
        f->pack_size = ext * es;
    }
    p = gr_coll_seg_data (f->pack);
    for (size_t i = 0; i < f->n; i++) {
        if (f->kind == 1) {
#if HAVE_CUDA
            GR_CUDA_CHECK (
                cudaMemcpy (p, f->bufs[i], f->counts[i] * es, cudaMemcpyDeviceToHost),
                errp, error);
#endif
        } else
            memcpy (p, f->bufs[i], f->counts[i] * es);
        p += f->counts[i] * es;
    }
    if (seg_allreduce (c, f, f->pack, ext, timeout, errp) < 0)
        return -1;
    p = gr_coll_seg_data (f->pack);
    for (size_t i = 0; i < f->n; i++) {
        if (f->kind == 1) {
#if HAVE_CUDA
            GR_CUDA_CHECK (
                cudaMemcpy (f->bufs[i], p, f->counts[i] * es, cudaMemcpyHostToDevice),
                errp, error);
#endif
        } else
            memcpy (f->bufs[i], p, f->counts[i] * es);
        p += f->counts[i] * es;
    }
    return 0;
#if HAVE_CUDA
error:
    return -1;
#endif
}
