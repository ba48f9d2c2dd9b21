/* The NCCL backend: device buffers, one communicator over the library's
 * ranks, one CUDA stream.
 *
 * The communicator is nonblocking (ncclConfig_t.blocking = 0), so that no
 * NCCL call can hang the caller: each returns at once, possibly with
 * ncclInProgress, and this module polls ncclCommGetAsyncError until the
 * operation is enqueued, then cudaStreamQuery until it is done, checking
 * the async error and the deadline all along.  Past the deadline, or on an
 * asynchronous error (a peer gone, a network failure), the communicator is
 * aborted (ncclCommAbort) and the backend is broken for good.
 *
 * The stream is created with cudaStreamCreate, so it waits for work
 * queued before on the legacy default stream; work on other streams must
 * be finished by the caller before a collective.  Every call returns only
 * once the operation is complete on the device.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>
#include <nccl.h>

#include "coll.h"
#include "src/common/gtime.h"

#if NCCL_VERSION_CODE < NCCL_VERSION(2, 14, 0)
#error "gridrun needs NCCL 2.14 or newer (nonblocking communicators)"
#endif

/* Collectives per ncclGroupStart/End in a fused operation. */
#define GROUP_MAX 256
/* How long a clean shutdown may wait for the other ranks. */
#define FINALIZE_WAIT 60.0

typedef struct {
    gr_coll_backend_t base;
    ncclComm_t comm; /* NULL once aborted */
    cudaStream_t stream;
    int rank, size, device;
} nccl_backend_t;

static const char *nccl_name (ncclResult_t r)
{
    switch (r) {
        case ncclSuccess:
            return "ncclSuccess";
        case ncclUnhandledCudaError:
            return "ncclUnhandledCudaError";
        case ncclSystemError:
            return "ncclSystemError";
        case ncclInternalError:
            return "ncclInternalError";
        case ncclInvalidArgument:
            return "ncclInvalidArgument";
        case ncclInvalidUsage:
            return "ncclInvalidUsage";
        case ncclRemoteError:
            return "ncclRemoteError";
        case ncclInProgress:
            return "ncclInProgress";
        default:
            return "ncclResult";
    }
}

static void abort_comm (nccl_backend_t *nb)
{
    if (nb->comm) {
        ncclCommAbort (nb->comm);
        nb->comm = NULL;
    }
}

/* A failed NCCL call: the text, then the communicator aborted (NCCL
 * leaves it unusable after an error) and the backend broken. */
static int nccl_error (nccl_backend_t *nb, gr_error_t *errp, const char *call,
                       ncclResult_t r)
{
    gr_error_t e;

    gr_coll_dev_error (&e, call, nccl_name (r), ncclGetErrorString (r),
                       ncclGetLastError (nb->comm));
    abort_comm (nb);
    return gr_coll_break (&nb->base, errp, ECOMM, "rank %d: %s", nb->rank, e.text);
}

/* Every NCCL call goes through this; ncclInProgress is how a nonblocking
 * communicator says "accepted". */
#define GR_NCCL_CHECK(nb, call, errp, label)                                             \
    do {                                                                                 \
        ncclResult_t gr_nr_ = (call);                                                    \
        if (gr_nr_ != ncclSuccess && gr_nr_ != ncclInProgress) {                         \
            nccl_error ((nb), (errp), #call, gr_nr_);                                    \
            goto label;                                                                  \
        }                                                                                \
    } while (0)

static int nccl_timeout (nccl_backend_t *nb, gr_error_t *errp, const char *what)
{
    abort_comm (nb);
    return gr_coll_break (
        &nb->base, errp, ETIMEDOUT,
        "%s passed its deadline on rank %d: some rank did not take part "
        "(stopped, dead, or in another collective); the NCCL communicator "
        "was aborted, so device collectives cannot be used again in this "
        "run: save a checkpoint if you can and exit",
        what, nb->rank);
}

/* Wait until the communicator has taken the last call (no longer
 * ncclInProgress). */
static int settle (nccl_backend_t *nb, const char *what, double deadline,
                   gr_error_t *errp)
{
    for (;;) {
        ncclResult_t st = ncclSuccess;
        GR_NCCL_CHECK (nb, ncclCommGetAsyncError (nb->comm, &st), errp, error);
        if (st == ncclSuccess)
            return 0;
        if (st != ncclInProgress)
            return nccl_error (nb, errp, what, st);
        if (gr_now () >= deadline)
            return nccl_timeout (nb, errp, what);
    }
error:
    return -1;
}

/* Wait until what was enqueued on the stream is done. */
static int finish (nccl_backend_t *nb, const char *what, double deadline,
                   gr_error_t *errp)
{
    if (settle (nb, what, deadline, errp) < 0)
        return -1;
    for (;;) {
        cudaError_t ce = cudaStreamQuery (nb->stream);
        ncclResult_t st = ncclSuccess;
        if (ce == cudaSuccess)
            return 0;
        if (ce != cudaErrorNotReady) {
            gr_error_t e;
            gr_coll_dev_error (&e, "cudaStreamQuery", cudaGetErrorName (ce),
                               cudaGetErrorString (ce), what);
            abort_comm (nb);
            return gr_coll_break (&nb->base, errp, ECOMM, "rank %d: %s", nb->rank,
                                  e.text);
        }
        GR_NCCL_CHECK (nb, ncclCommGetAsyncError (nb->comm, &st), errp, error);
        if (st != ncclSuccess && st != ncclInProgress)
            return nccl_error (nb, errp, what, st);
        if (gr_now () >= deadline)
            return nccl_timeout (nb, errp, what);
    }
error:
    return -1;
}

static ncclDataType_t nccl_type (gr_dtype_t t)
{
    switch (t) {
        case GR_F32:
            return ncclFloat32;
        case GR_F64:
            return ncclFloat64;
        case GR_I32:
            return ncclInt32;
        case GR_I64:
            return ncclInt64;
        case GR_F16:
            return ncclFloat16;
        case GR_BF16:
            return ncclBfloat16;
    }
    return ncclFloat32;
}

static ncclRedOp_t nccl_op (gr_op_t op)
{
    switch (op) {
        case GR_MAX:
            return ncclMax;
        case GR_MIN:
            return ncclMin;
        case GR_AVG:
            return ncclAvg;
        default:
            return ncclSum;
    }
}

static int n_allreduce (gr_coll_backend_t *b, const void *sendbuf, void *recvbuf,
                        size_t count, gr_dtype_t type, gr_op_t op, double deadline,
                        gr_error_t *errp)
{
    nccl_backend_t *nb = (nccl_backend_t *)b;
    const void *s = sendbuf == GR_IN_PLACE ? recvbuf : sendbuf;

    GR_NCCL_CHECK (nb,
                   ncclAllReduce (s, recvbuf, count, nccl_type (type), nccl_op (op),
                                  nb->comm, nb->stream),
                   errp, error);
    return finish (nb, "ncclAllReduce", deadline, errp);
error:
    return -1;
}

static int n_bcast (gr_coll_backend_t *b, void *buf, size_t count, gr_dtype_t type,
                    int root, double deadline, gr_error_t *errp)
{
    nccl_backend_t *nb = (nccl_backend_t *)b;

    GR_NCCL_CHECK (
        nb, ncclBroadcast (buf, buf, count, nccl_type (type), root, nb->comm, nb->stream),
        errp, error);
    return finish (nb, "ncclBroadcast", deadline, errp);
error:
    return -1;
}

static int n_allgather (gr_coll_backend_t *b, const void *sendbuf, void *recvbuf,
                        size_t count, gr_dtype_t type, double deadline, gr_error_t *errp)
{
    nccl_backend_t *nb = (nccl_backend_t *)b;
    size_t bytes = count * gr_coll_dtype_size (type);
    /* NCCL's in place: this rank's part already at its place in recvbuf. */
    const void *s =
        sendbuf == GR_IN_PLACE ? (char *)recvbuf + (size_t)nb->rank * bytes : sendbuf;

    GR_NCCL_CHECK (
        nb, ncclAllGather (s, recvbuf, count, nccl_type (type), nb->comm, nb->stream),
        errp, error);
    return finish (nb, "ncclAllGather", deadline, errp);
error:
    return -1;
}

static int n_reduce_scatter (gr_coll_backend_t *b, const void *sendbuf, void *recvbuf,
                             size_t recvcount, gr_dtype_t type, gr_op_t op,
                             double deadline, gr_error_t *errp)
{
    nccl_backend_t *nb = (nccl_backend_t *)b;
    size_t bytes = recvcount * gr_coll_dtype_size (type);
    int in_place = sendbuf == GR_IN_PLACE;
    /* NCCL's in place leaves the block at rank * recvcount; gridrun's (as
     * MPI's) at the start, so it is moved there on the same stream. */
    void *r = in_place ? (char *)recvbuf + (size_t)nb->rank * bytes : recvbuf;

    GR_NCCL_CHECK (nb,
                   ncclReduceScatter (in_place ? recvbuf : sendbuf, r, recvcount,
                                      nccl_type (type), nccl_op (op), nb->comm,
                                      nb->stream),
                   errp, error);
    if (settle (nb, "ncclReduceScatter", deadline, errp) < 0)
        return -1;
    if (r != recvbuf)
        GR_CUDA_CHECK (
            cudaMemcpyAsync (recvbuf, r, bytes, cudaMemcpyDeviceToDevice, nb->stream),
            errp, cuda_error);
    return finish (nb, "ncclReduceScatter", deadline, errp);
cuda_error:
    abort_comm (nb);
    return gr_coll_break (&nb->base, NULL, ECOMM, "rank %d: %s", nb->rank,
                          errp ? errp->text : "CUDA failed");
error:
    return -1;
}

/* Fusion: the tensors reduced in place in groups, which NCCL runs as few
 * kernels. */
static int n_allreduce_many (gr_coll_backend_t *b, void *const *bufs,
                             const size_t *counts, size_t n, gr_dtype_t type, gr_op_t op,
                             double deadline, gr_error_t *errp)
{
    nccl_backend_t *nb = (nccl_backend_t *)b;

    for (size_t i = 0; i < n; i += GROUP_MAX) {
        size_t end = i + GROUP_MAX < n ? i + GROUP_MAX : n;
        GR_NCCL_CHECK (nb, ncclGroupStart (), errp, error);
        for (size_t k = i; k < end; k++) {
            if (counts[k] == 0)
                continue;
            GR_NCCL_CHECK (nb,
                           ncclAllReduce (bufs[k], bufs[k], counts[k], nccl_type (type),
                                          nccl_op (op), nb->comm, nb->stream),
                           errp, error);
        }
        GR_NCCL_CHECK (nb, ncclGroupEnd (), errp, error);
        if (settle (nb, "ncclGroupEnd", deadline, errp) < 0)
            return -1;
    }
    return finish (nb, "fused ncclAllReduce", deadline, errp);
error:
    return -1;
}

static void n_destroy (gr_coll_backend_t *b)
{
    nccl_backend_t *nb = (nccl_backend_t *)b;

    if (!nb)
        return;
    if (nb->comm && !nb->base.broken) {
        /* A clean end: flush, wait (bounded) for every rank, free. */
        double deadline = gr_now () + FINALIZE_WAIT;
        ncclResult_t r = ncclCommFinalize (nb->comm), st = ncclInProgress;
        while (r == ncclSuccess || r == ncclInProgress) {
            if (ncclCommGetAsyncError (nb->comm, &st) != ncclSuccess ||
                st != ncclInProgress || gr_now () >= deadline)
                break;
        }
        if ((r == ncclSuccess || r == ncclInProgress) && st == ncclSuccess)
            ncclCommDestroy (nb->comm);
        else
            ncclCommAbort (nb->comm);
        nb->comm = NULL;
    }
    abort_comm (nb);
    if (nb->stream)
        cudaStreamDestroy (nb->stream);
    free (nb);
}

static const gr_coll_ops_t nccl_backend_ops = {
    .name = "nccl",
    .allreduce = n_allreduce,
    .bcast = n_bcast,
    .allgather = n_allgather,
    .reduce_scatter = n_reduce_scatter,
    .barrier = NULL, /* barriers are host matters: the dispatcher uses the host backend */
    .allreduce_many = n_allreduce_many,
    .destroy = n_destroy,
};

gr_coll_backend_t *gr_coll_nccl_create (gr_world_t *w, int device, double deadline,
                                        gr_error_t *errp)
{
    nccl_backend_t *nb;
    struct {
        int ok;
        ncclUniqueId id;
        char why[200];
    } hdr;
    int ready, all_ready = 0;
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;

    if (!(nb = calloc (1, sizeof (*nb)))) {
        errno = ENOMEM;
        gr_errprintf (errp, "out of memory");
        return NULL;
    }
    nb->base.ops = &nccl_backend_ops;
    nb->device = device;
    nb->rank = gr_world_rank (w);
    nb->size = gr_world_size (w);

    memset (&hdr, 0, sizeof (hdr));
    if (nb->rank == 0) {
        ncclResult_t r = ncclGetUniqueId (&hdr.id);
        hdr.ok = r == ncclSuccess;
        if (!hdr.ok)
            snprintf (hdr.why, sizeof (hdr.why),
                      "ncclGetUniqueId failed on rank 0: %s: %s", nccl_name (r),
                      ncclGetErrorString (r));
    }
    if (gr_world_bcast (w, &hdr, sizeof (hdr), 0, errp) < 0) {
        errno = ECOMM;
        goto error;
    }
    if (!hdr.ok) {
        errno = ECOMM;
        gr_errprintf (errp, "%s", hdr.why);
        goto error;
    }
    /* Local preparations first, agreed on, so that no rank waits in
     * ncclCommInitRankConfig for one that will never come. */
    ready = cudaSetDevice (device) == cudaSuccess &&
            cudaStreamCreate (&nb->stream) == cudaSuccess;
    if (!ready) {
        cudaError_t ce = cudaGetLastError ();
        gr_coll_dev_error (errp, "cudaStreamCreate", cudaGetErrorName (ce),
                           cudaGetErrorString (ce), NULL);
    }
    if (gr_world_allreduce_int (w, &ready, &all_ready, 1, GR_MIN, errp) < 0) {
        errno = ECOMM;
        goto error;
    }
    if (!all_ready) {
        if (ready) {
            errno = ECOMM;
            gr_errprintf (errp, "another rank could not prepare its CUDA device");
        }
        goto error;
    }
    config.blocking = 0;
    GR_NCCL_CHECK (
        nb, ncclCommInitRankConfig (&nb->comm, nb->size, hdr.id, nb->rank, &config), errp,
        error);
    if (settle (nb, "ncclCommInitRankConfig", deadline, errp) < 0)
        goto error;
    return &nb->base;
error:
    nb->base.broken = 1;
    n_destroy (&nb->base);
    return NULL;
}
