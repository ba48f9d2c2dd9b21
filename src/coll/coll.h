/* Collectives inside libgridrun.  CUDA and NCCL live behind this module
 * alone; MPI, CUDA and NCCL errors become errno values and sentences in a
 * gr_error_t here, and src/lib/gridrun.c turns those into gr_last_error().
 *
 * Three layers:
 *
 *  - element arithmetic (half.c): f16/bf16 <-> float and the reduce
 *    kernels; pure functions, no MPI;
 *  - backends behind one vtable (gr_coll_ops_t): MPI (coll_mpi.c) for host
 *    buffers, NCCL (coll_nccl.c, only when built with it) for device
 *    buffers.  A backend works on buffers of its own kind only;
 *  - the dispatcher (coll.c, gr_coll_t): picks the backend in
 *    gr_coll_create, tells host from device buffers, stages device buffers
 *    through host memory when NCCL is not in use, and owns the fusion
 *    buffers.
 *
 * Every function returning int returns 0, or -1 with errno set and *errp
 * (which may be NULL) saying what failed.  Deadlines are absolute times on
 * gr_now()'s clock; INFINITY means none.
 */
#ifndef GR_COLL_COLL_H
#define GR_COLL_COLL_H

#include <stddef.h>
#include <stdint.h>

#include <mpi.h>

#include "src/common/error.h"
#include "src/include/gridrun.h"
#include "world.h"

/* ---- Element arithmetic (half.c) --------------------------------------- */

/* IEEE half and bfloat16 to float (exact) and back (round to nearest, ties
 * to even; overflow gives infinity; NaN stays NaN, quiet). */
float gr_coll_f16_to_float (uint16_t h);
uint16_t gr_coll_float_to_f16 (float f);
float gr_coll_bf16_to_float (uint16_t h);
uint16_t gr_coll_float_to_bf16 (float f);

/* out[i] = a[i] op b[i] for n elements of type t.  out may be a or b, but
 * may not overlap them otherwise.  GR_AVG reduces as GR_SUM (the division
 * is gr_coll_divide's).  MAX and MIN return NaN when either side is NaN.
 * f16 and bf16 are computed in float and rounded once per element;
 * integers wrap on overflow as unsigned arithmetic does. */
void gr_coll_reduce (gr_dtype_t t, gr_op_t op, const void *a, const void *b, void *out,
                     size_t n);
/* buf[i] /= divisor: the second half of GR_AVG.  Integers truncate toward
 * zero; f16/bf16 divide in float. */
void gr_coll_divide (gr_dtype_t t, void *buf, size_t n, int divisor);

/* Size of one element, 0 for an unknown type. */
size_t gr_coll_dtype_size (gr_dtype_t t);

/* ---- Splitting counts (pure) ------------------------------------------- */

/* How many pieces of at most max elements count splits into (0 for 0). */
static inline size_t gr_coll_nchunks (size_t count, size_t max)
{
    return max ? count / max + (count % max != 0) : 0;
}

/* Block i of count elements cut into nblocks blocks as evenly as possible,
 * the first count % nblocks blocks one element longer. */
static inline void gr_coll_block (size_t count, int nblocks, int i, size_t *off,
                                  size_t *len)
{
    size_t base = count / (size_t)nblocks, rem = count % (size_t)nblocks;
    size_t ui = (size_t)i;

    *off = ui * base + (ui < rem ? ui : rem);
    *len = base + (ui < rem);
}

/* ---- Backends ---------------------------------------------------------- */

typedef struct gr_coll_backend gr_coll_backend_t;

/* A fusion chunk (shm.c): memory every rank allocates alike, which the
 * ranks of a node may share. */
typedef struct gr_coll_seg gr_coll_seg_t;

/* sendbuf may be GR_IN_PLACE: allreduce reduces recvbuf in place;
 * allgather takes this rank's part from recvbuf + rank * count;
 * reduce_scatter reduces the size * recvcount elements of recvbuf and
 * leaves this rank's block at its start (MPI's conventions). */
typedef struct gr_coll_ops {
    const char *name;
    int (*allreduce) (gr_coll_backend_t *b, const void *sendbuf, void *recvbuf,
                      size_t count, gr_dtype_t type, gr_op_t op, double deadline,
                      gr_error_t *errp);
    int (*bcast) (gr_coll_backend_t *b, void *buf, size_t count, gr_dtype_t type,
                  int root, double deadline, gr_error_t *errp);
    int (*allgather) (gr_coll_backend_t *b, const void *sendbuf, void *recvbuf,
                      size_t count, gr_dtype_t type, double deadline, gr_error_t *errp);
    int (*reduce_scatter) (gr_coll_backend_t *b, const void *sendbuf, void *recvbuf,
                           size_t recvcount, gr_dtype_t type, gr_op_t op, double deadline,
                           gr_error_t *errp);
    int (*barrier) (gr_coll_backend_t *b, double deadline, gr_error_t *errp);
    /* Reduce n buffers in place in one operation, or NULL when the
     * dispatcher should pack them into one buffer instead. */
    int (*allreduce_many) (gr_coll_backend_t *b, void *const *bufs, const size_t *counts,
                           size_t n, gr_dtype_t type, gr_op_t op, double deadline,
                           gr_error_t *errp);
    /* Reduce the first count elements of a fusion chunk in place, through
     * the memory the ranks share where they can (all on one node), else
     * like any buffer; NULL: reduce it with allreduce. */
    int (*seg_allreduce) (gr_coll_backend_t *b, gr_coll_seg_t *s, size_t count,
                          gr_dtype_t type, gr_op_t op, double deadline, gr_error_t *errp);
    /* Frees b.  A broken backend keeps the memory its unfinished
     * operations may still touch. */
    void (*destroy) (gr_coll_backend_t *b);
} gr_coll_ops_t;

/* Every backend's state starts with this. */
struct gr_coll_backend {
    const gr_coll_ops_t *ops;
    /* Set once an operation timed out or the transport failed: what is in
     * flight cannot be cancelled, so every later call fails with ECOMM
     * and this text. */
    int broken;
    char why[256];
};

/* Mark b broken and fail: errno err, errp and b->why get the text. */
int gr_coll_break (gr_coll_backend_t *b, gr_error_t *errp, int err, const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));

/* The MPI backend over a communicator it duplicates (collective).
 * max_chunk caps the elements of one MPI call (INT_MAX at most). */
gr_coll_backend_t *gr_coll_mpi_create (MPI_Comm comm, size_t max_chunk, gr_error_t *errp);

/* The TCP backend (coll_tcp.c) over net's connections, which it uses but
 * does not own.  Not collective. */
gr_coll_backend_t *gr_coll_tcp_create (gr_net_t *net, gr_error_t *errp);

#if HAVE_NCCL
/* The NCCL backend over w's ranks on CUDA device `device` (collective
 * over w, which it uses only during creation).  Every rank must call it
 * or none. */
gr_coll_backend_t *gr_coll_nccl_create (gr_world_t *w, int device, double deadline,
                                        gr_error_t *errp);
#endif

#if HAVE_CUDA
/* Every CUDA runtime call goes through this: on failure it records the
 * call and CUDA's error name and text in errp, sets errno to ECOMM and
 * jumps to label.  Files using it include <cuda_runtime_api.h>: this
 * header does not, so that the rest of libgridrun builds without CUDA's
 * include path. */
#define GR_CUDA_CHECK(call, errp, label)                                                 \
    do {                                                                                 \
        cudaError_t gr_ce_ = (call);                                                     \
        if (gr_ce_ != cudaSuccess) {                                                     \
            gr_coll_dev_error ((errp), #call, cudaGetErrorName (gr_ce_),                 \
                               cudaGetErrorString (gr_ce_), NULL);                       \
            goto label;                                                                  \
        }                                                                                \
    } while (0)
#endif

/* Record a failed CUDA or NCCL call (errno ECOMM): "CALL failed: NAME:
 * TEXT (DETAIL)". */
void gr_coll_dev_error (gr_error_t *errp, const char *call, const char *name,
                        const char *text, const char *detail);

/* ---- The dispatcher ---------------------------------------------------- */

typedef struct gr_coll gr_coll_t;

typedef enum {
    GR_COLL_AUTO = 0,
    GR_COLL_MPI = 1,
    GR_COLL_NCCL = 2,
} gr_coll_mode_t;

/* Parse "mpi", "nccl" or "auto" (NULL or "" is auto).  -1 with EINVAL. */
int gr_coll_parse_mode (const char *s, gr_coll_mode_t *mode);

/* Collective over w's ranks.  Host buffers go through MPI over an MPI
 * world (a duplicate of its communicator), through TCP over a TCP world
 * (sharing its connections: w must outlive the result).  Picks this rank's CUDA
 * device (local_rank % devices) when there is one, then the backend for
 * device buffers: NCCL when every rank can use it (a GPU of its own: no
 * more ranks on the node, local_size, than GPUs) and mode allows, agreed
 * by an allreduce so that every rank decides the same; else MPI.  With
 * mode GR_COLL_NCCL and some rank unable, every rank fails with ENOTSUP
 * and a text naming that rank and why.  timeout bounds NCCL's start (0:
 * none).  Free the result with gr_coll_destroy. */
gr_coll_t *gr_coll_create (gr_world_t *w, int local_rank, int local_size,
                           gr_coll_mode_t mode, double timeout, gr_error_t *errp);
/* Accepts NULL; keeps errno. */
void gr_coll_destroy (gr_coll_t *c);

gr_backend_t gr_coll_backend (const gr_coll_t *c);
/* The CUDA device this rank uses (-1: none) and how many it sees. */
int gr_coll_device (const gr_coll_t *c);
int gr_coll_ngpus (const gr_coll_t *c);

/* 1 when p is device memory (not host-accessible), 0 otherwise. */
int gr_coll_is_device (const gr_coll_t *c, const void *p);

/* The collectives of gridrun.h; timeout in seconds, 0 for none.
 * Arguments are checked by the caller, except the kinds of memory. */
int gr_coll_allreduce (gr_coll_t *c, const void *sendbuf, void *recvbuf, size_t count,
                       gr_dtype_t type, gr_op_t op, double timeout, gr_error_t *errp);
int gr_coll_bcast (gr_coll_t *c, void *buf, size_t count, gr_dtype_t type, int root,
                   double timeout, gr_error_t *errp);
int gr_coll_allgather (gr_coll_t *c, const void *sendbuf, void *recvbuf, size_t count,
                       gr_dtype_t type, double timeout, gr_error_t *errp);
int gr_coll_reduce_scatter (gr_coll_t *c, const void *sendbuf, void *recvbuf,
                            size_t recvcount, gr_dtype_t type, gr_op_t op, double timeout,
                            gr_error_t *errp);
int gr_coll_barrier (gr_coll_t *c, double timeout, gr_error_t *errp);

/* Fusion (struct gr_fusion of gridrun.h).  create and add are local; the
 * kind of memory is fixed by the first add. */
gr_fusion_t *gr_coll_fusion_create (gr_dtype_t type, gr_op_t op);
int gr_coll_fusion_add (gr_coll_t *c, gr_fusion_t *f, void *buf, size_t count,
                        gr_error_t *errp);
/* count zeroed host elements that f owns and reduces in place (NULL with
 * errno: EINVAL for a device fusion, ENOMEM). */
void *gr_coll_fusion_alloc (gr_fusion_t *f, size_t count, gr_error_t *errp);
int gr_coll_fusion_allreduce (gr_coll_t *c, gr_fusion_t *f, double timeout,
                              gr_error_t *errp);
/* Accepts NULL. */
void gr_coll_fusion_destroy (gr_fusion_t *f);
/* The bytes of the buffers added so far. */
size_t gr_coll_fusion_bytes (const gr_fusion_t *f);

#endif
