/* libgridrun: what gridrun gives MPI programs, training codes above all.
 *
 *   gr_init / gr_finalize      MPI (initialized here or attached to), rank,
 *                              size, local rank, binding, backend choice
 *   gr_allreduce ...           collectives: host buffers through MPI,
 *                              device buffers through NCCL
 *   gr_fusion_*                many small tensors reduced in one operation
 *   gr_ckpt_*                  HDF5 checkpoints: atomic commit, checksums,
 *                              keep K, async save, partner copies
 *   gr_preempt_requested       the preemption notice gridrun's signals raise
 *
 * Build against it with pkg-config:  mpicc prog.c $(pkg-config --cflags
 * --libs gridrun).  See libgridrun(3) and doc/training.md.
 *
 * Every function that can fail returns 0 (or a pointer) on success, and -1
 * (or NULL) with errno set on failure; gr_last_error() then says what went
 * wrong, in words, for the calling thread.  The errno values:
 *
 *   EINVAL     a bad argument (NULL, unknown type, count mismatch)
 *   EPROTO     called out of order (before gr_init, twice, ...)
 *   ECOMM      an MPI, NCCL or CUDA call failed
 *   ETIMEDOUT  a collective passed its deadline and was aborted
 *   EIO        a file could not be read or written (or the errno of the
 *              failing system call: ENOSPC, EACCES, ...)
 *   ENOENT     no such checkpoint step, array or attribute
 *   EBADMSG    a checkpoint failed its checksums or its metadata is damaged
 *   ENOTSUP    not built in (no CUDA/NCCL), or a layout that cannot be
 *              restored on this number of ranks
 *   ENOMEM
 *
 * Every call is collective over the library's communicator unless its
 * comment says otherwise. */
#ifndef GRIDRUN_H
#define GRIDRUN_H

#include <stddef.h>
#include <stdint.h>

#include <mpi.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GRIDRUN_VERSION_MAJOR 0
#define GRIDRUN_VERSION_MINOR 1

/* The last error of the calling thread, in words (never NULL; "" if none).
 * Not collective. */
const char *gr_last_error (void);

/* ---- Start and stop --------------------------------------------------- */

/* Initialize MPI (MPI_THREAD_MULTIPLE requested) unless it already is, and
 * the library over a duplicate of MPI_COMM_WORLD.  argc/argv may be NULL.
 * A program started without MPI in torchrun's environment (RANK,
 * WORLD_SIZE, MASTER_ADDR and MASTER_PORT set, no MPI launcher's
 * variables, MPI not initialized), as gridrun's group tasks are, gets a
 * TCP world instead: rank 0 listens on MASTER_ADDR:MASTER_PORT, the others
 * connect, and the collectives and checkpoints run over TCP (backend
 * "tcp"; gr_comm is MPI_COMM_NULL; the shared checkpoint layout, which is
 * MPI-IO, is refused).  GRIDRUN_BOOTSTRAP=mpi|tcp|auto overrides the
 * choice.  In that world a rank that exits is noticed by the others at
 * once (their operations fail with ECOMM), and gr_finalize waits at a
 * barrier for all (at most GRIDRUN_COLL_TIMEOUT). 
 * Reads GRIDRUN_COLL (mpi|nccl|auto), GRIDRUN_COLL_TIMEOUT (seconds or a
 * duration like "10m"; 0 for none), GRIDRUN_BIND (none|core|auto),
 * GRIDRUN_PREEMPT_SIGNAL and GRIDRUN_SITE (racks for gr_topo_info).
 * Binds this rank to its even share of the node's cores (GRIDRUN_BIND=auto,
 * the default, only when nothing bound it to fewer than all of them
 * already; core: always), picks a GPU (local rank modulo the node's
 * GPUs), chooses the backend (see gr_backend) and installs the preemption
 * notice.  A malformed GRIDRUN_* variable fails with EINVAL; GRIDRUN_COLL=
 * nccl where some rank cannot use NCCL fails on every rank with ENOTSUP.
 * If gr_init started MPI and then fails, MPI stays initialized (it cannot
 * be started twice): call MPI_Finalize, or exit. */
int gr_init (int *argc, char ***argv);
/* The same over a communicator the program already has (MPI initialized). */
int gr_init_comm (MPI_Comm comm);
/* Tear down; finalizes MPI only if gr_init initialized it.  Restores the
 * signal handlers gr_init replaced. */
int gr_finalize (void);

/* Not collective.  Before gr_init: -1 (gr_comm: MPI_COMM_NULL). */
int gr_rank (void);
int gr_size (void);
int gr_local_rank (void);  /* among the ranks of this node */
int gr_local_size (void);
MPI_Comm gr_comm (void);   /* the library's communicator (a duplicate) */

/* ---- Topology and binding (not collective) ---------------------------- */

typedef struct {
    char host[64];         /* this rank's host name */
    int node;              /* node index, 0..nodes-1, ordered by first rank */
    int nodes;             /* nodes in the communicator */
    char rack[64];         /* from the site file or Slurm, else the host */
    char zone[64];
    int ncpus;             /* cpus this rank is bound to (or may use) */
    char cpus[256];        /* the whole cores among them, as a list of OS
                              cpu numbers: "0-3,8" ("" if unknown) */
    int gpu;               /* CUDA device this rank uses, -1 for none */
    int ngpus_node;        /* GPUs visible on this node */
} gr_topo_info_t;

int gr_topo_info (gr_topo_info_t *info);

/* ---- Collectives ------------------------------------------------------ */

typedef enum {
    GR_F32 = 0,
    GR_F64 = 1,
    GR_I32 = 2,
    GR_I64 = 3,
    GR_F16 = 4,   /* IEEE half */
    GR_BF16 = 5,  /* bfloat16 */
} gr_dtype_t;

typedef enum {
    GR_SUM = 0,
    GR_MAX = 1,
    GR_MIN = 2,
    GR_AVG = 3,   /* sum / size */
} gr_op_t;

typedef enum {
    GR_BACKEND_MPI = 0,
    GR_BACKEND_NCCL = 1,
    GR_BACKEND_TCP = 2,
} gr_backend_t;

/* The backend device buffers use: NCCL when every rank has a usable GPU
 * of its own (agreed collectively in gr_init), or as GRIDRUN_COLL says;
 * else the host backend, which stages device buffers through host memory.
 * Host buffers always go through the host backend: MPI, or TCP when the
 * program runs without MPI (see gr_init).  Not collective. */
gr_backend_t gr_backend (void);
const char *gr_backend_name (void);

size_t gr_dtype_size (gr_dtype_t t);

/* Pass as sendbuf for an in-place operation, as MPI_IN_PLACE: allreduce
 * reduces recvbuf in place (sendbuf == recvbuf means the same there);
 * allgather takes this rank's part from recvbuf + rank * count;
 * reduce_scatter reduces the size * recvcount elements of recvbuf and
 * leaves this rank's block at its start. */
#define GR_IN_PLACE ((const void *)1)

/* count is in elements.  Buffers are host or device memory (the same kind
 * for send and receive); counts beyond INT_MAX are handled.  Every call
 * returns once the operation is complete on this rank, device buffers
 * included.  Device work queued on the legacy default stream is waited
 * for; work on other streams must be synchronized by the caller first.
 * Like MPI on one communicator, collectives must not be called from two
 * threads at once.
 *
 * Reductions: f16 and bf16 are computed in float and rounded to nearest
 * even; MAX and MIN return NaN if any input is NaN (on the MPI backend;
 * NCCL's rules on device); GR_AVG sums, then divides by size (integers
 * truncate toward zero).
 *
 * A collective that passes its deadline (gr_set_timeout) fails with
 * ETIMEDOUT.  It cannot be cancelled (the NCCL communicator is aborted),
 * so every later collective of that backend fails with ECOMM: save what
 * you can and exit. */
int gr_allreduce (const void *sendbuf, void *recvbuf, size_t count,
                  gr_dtype_t type, gr_op_t op);
int gr_broadcast (void *buf, size_t count, gr_dtype_t type, int root);
/* recvbuf holds size * count elements, rank r's at r * count. */
int gr_allgather (const void *sendbuf, void *recvbuf, size_t count,
                  gr_dtype_t type);
/* sendbuf holds size * recvcount elements; rank r receives the reduction
 * of block r. */
int gr_reduce_scatter (const void *sendbuf, void *recvbuf, size_t recvcount,
                       gr_dtype_t type, gr_op_t op);
int gr_barrier (void);

/* Deadline for one collective, in seconds (0, or negative: none).
 * Default from GRIDRUN_COLL_TIMEOUT, else 600.  May be called before
 * gr_init, which then leaves it alone.  Not collective. */
void gr_set_timeout (double seconds);

/* Fusion: register many small tensors once, reduce them all in one
 * operation (packed into one buffer kept between calls, one allreduce,
 * unpacked; on the NCCL backend, grouped NCCL calls instead).  Tensors of
 * one fusion share a type and live in the same kind of memory (EINVAL
 * otherwise); they must stay allocated until gr_fusion_destroy.
 *
 * gr_fusion_alloc gives a tensor of count elements (zeroed, host memory,
 * 64-byte aligned) that the fusion owns: such tensors lie side by side in
 * the fusion's own buffers, which it reduces in place, with no copies, so
 * a fusion of them costs about one allreduce of their total size (like
 * PyTorch DDP's gradient_as_bucket_view).  They are valid until
 * gr_fusion_destroy.  Every rank adds and allocates the same tensors in
 * the same order; both can be mixed in one fusion.  add and alloc require
 * gr_init; destroy accepts NULL. */
typedef struct gr_fusion gr_fusion_t;

gr_fusion_t *gr_fusion_create (gr_dtype_t type, gr_op_t op);  /* not collective */
int gr_fusion_add (gr_fusion_t *f, void *buf, size_t count);  /* not collective */
void *gr_fusion_alloc (gr_fusion_t *f, size_t count);         /* not collective */
int gr_fusion_allreduce (gr_fusion_t *f);                      /* in place */
void gr_fusion_destroy (gr_fusion_t *f);

/* ---- Checkpoints ------------------------------------------------------ */

typedef struct gr_ckpt gr_ckpt_t;

typedef enum {
    GR_CKPT_PER_RANK = 0,  /* one HDF5 file per rank (default) */
    GR_CKPT_SHARED = 1,    /* one HDF5 file written by all ranks via MPI-IO */
} gr_ckpt_layout_t;

typedef struct {
    gr_ckpt_layout_t layout;
    int keep;                 /* committed steps to keep (default 3; 0 = all) */
    int async;                /* 1: gr_ckpt_save stages and returns; the write
                                 happens in a background thread */
    const char *partner_dir;  /* node-local directory for partner copies
                                 (NULL: no partner copies); see below */
} gr_ckpt_opts_t;

#define GR_CKPT_MAX_DIMS 8

/* Array layouts. */
#define GR_CKPT_REPLICATED 0  /* every rank holds the whole array; rank 0's
                                 copy is saved; every rank gets it on load */
#define GR_CKPT_SHARDED 1     /* each rank holds a slab of the first dimension,
                                 in rank order; dims are the local slab's */

/* Open (collective) a checkpoint directory; created if missing, 0700.
 * opts may be NULL for the defaults. */
gr_ckpt_t *gr_ckpt_open (const char *dir, const gr_ckpt_opts_t *opts);

/* Describe one step: arrays and attributes, then gr_ckpt_save.  Not
 * collective until gr_ckpt_save.  In async mode the data are copied when
 * gr_ckpt_save is called, so the caller may change them afterwards. */
int gr_ckpt_begin (gr_ckpt_t *c, int64_t step);
int gr_ckpt_add (gr_ckpt_t *c, const char *name, gr_dtype_t type, int ndims,
                 const uint64_t *dims, const void *data, int layout);
int gr_ckpt_attr_i64 (gr_ckpt_t *c, const char *name, int64_t value);
int gr_ckpt_attr_f64 (gr_ckpt_t *c, const char *name, double value);
int gr_ckpt_attr_str (gr_ckpt_t *c, const char *name, const char *value);
/* Write and commit: every rank written and fsynced, the step directory
 * renamed into place, the index written last, old steps pruned to keep.
 * In async mode: stage and return; the commit completes in the background
 * and gr_ckpt_wait (or the next save, or close) collects it. */
int gr_ckpt_save (gr_ckpt_t *c);
int gr_ckpt_wait (gr_ckpt_t *c);

/* Load the newest step whose checksums verify on every rank, falling back
 * to older ones (and to partner copies); *step is set, or -1 with ENOENT
 * when there is no valid step.  Then read its arrays and attributes. */
int gr_ckpt_load (gr_ckpt_t *c, int64_t *step);
/* Name an array the next gr_ckpt_load fills, as gr_ckpt_read would (same
 * part, same bytes rule), but while it verifies the step: each byte is
 * read from the file once, checked and copied in one pass, where a load
 * and then gr_ckpt_read go through the bytes twice.  Not collective; every
 * rank names the same arrays in the same order before the load, and the
 * targets are forgotten after it.  The load fails (EINVAL, ENOENT) when
 * the step it picks lacks a target or a target is too small.  A target's
 * contents are undefined after a load that failed, or that found a newer
 * step damaged: initialize the arrays after a failed load, not before. */
int gr_ckpt_target (gr_ckpt_t *c, const char *name, void *data, size_t bytes);
/* Read array name into data (bytes: its size).  A replicated array whole;
 * a sharded one: this rank's slab under the current size, the first
 * dimension split as evenly as possible in rank order (the first
 * dim % size ranks get one row more).  Collective; bytes may be larger
 * than this rank's part, not smaller (EINVAL).  The loaded step's files
 * stay open (mapped) until the next load or close; a file changed after
 * the load fails the read with EIO. */
int gr_ckpt_read (gr_ckpt_t *c, const char *name, void *data, size_t bytes);
/* The shape of an array as this rank reads it: ndims and dims[0..ndims),
 * at most GR_CKPT_MAX_DIMS. */
int gr_ckpt_shape (gr_ckpt_t *c, const char *name, gr_dtype_t *type,
                   int *ndims, uint64_t dims[GR_CKPT_MAX_DIMS]);
int gr_ckpt_get_i64 (gr_ckpt_t *c, const char *name, int64_t *value);
int gr_ckpt_get_f64 (gr_ckpt_t *c, const char *name, double *value);
/* Copies at most len bytes, NUL-terminated. */
int gr_ckpt_get_str (gr_ckpt_t *c, const char *name, char *value, size_t len);
/* Why the steps newer than the loaded one were skipped, or "" (not
 * collective). */
const char *gr_ckpt_load_report (gr_ckpt_t *c);

int gr_ckpt_close (gr_ckpt_t *c);

/* ---- Preemption (not collective) -------------------------------------- */

/* Nonzero once SIGTERM, SIGINT, SIGUSR2 or the signal named by
 * GRIDRUN_PREEMPT_SIGNAL arrived: save a checkpoint and leave.  The
 * handler only sets a flag. */
int gr_preempt_requested (void);

/* ---- Training metrics ------------------------------------------------- */

/* Count n samples as processed (the whole world's, as rank 0 knows them:
 * call it on rank 0 at least, once a step).  Rank 0 writes the training
 * metrics (samples a second; time, bytes and bus bandwidth of the
 * collectives; checkpoint latencies; GPU utilization where NVML is) as a
 * Prometheus textfile every GRIDRUN_TRAIN_METRICS_INTERVAL (default 10s)
 * and at gr_finalize: to GRIDRUN_TRAIN_METRICS, else, in a gridrun task,
 * to RUN/train-KEY.prom; else nowhere.  Not collective; never fails. */
void gr_metrics_samples (uint64_t n);

#ifdef __cplusplus
}
#endif

#endif /* GRIDRUN_H */
