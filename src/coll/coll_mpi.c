/* The MPI backend: host buffers, over a private duplicate of the library's
 * communicator.
 *
 * Every operation is nonblocking underneath and waited for by polling
 * MPI_Testall in a tight loop against the deadline, because a blocking MPI
 * collective cannot be left once entered.  A collective cannot be
 * cancelled either, so a timed-out operation stays in flight and marks the
 * backend broken.
 *
 * Allreduce runs a ring (reduce-scatter, then allgather) over nonblocking
 * point-to-point messages, cut into segments so that reducing one
 * overlaps receiving the next: Open MPI's MPI_Iallreduce is markedly
 * slower than its blocking MPI_Allreduce (0.5x at 4 KiB, 0.65-0.8x at 1-4
 * MiB), the ring is not (doc/collectives.md has the figures).  Only small
 * allreduces on more than RING_ALWAYS ranks, and the other collectives,
 * use MPI's nonblocking collectives (MPI_Iallreduce, MPI_Ibcast ...).
 *
 * Reductions use this module's kernels (half.c) everywhere, through
 * commutative user MPI_Ops where MPI reduces: f16 and bf16 have no MPI
 * type, and MAX/MIN then treat NaN alike whatever the path.
 *
 * No MPI call gets more than max_chunk elements (INT_MAX, or lower for
 * tests): larger counts are cut into pieces; allgather places a piece of
 * each rank with a resized datatype, and reduce_scatter reduces a piece of
 * every block to its owner with one MPI_Ireduce per rank.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coll.h"
#include "shm.h"
#include "src/common/gtime.h"
#include "src/common/log.h"

/* Defaults: 1 MiB segments; the ring at every size on up to RING_ALWAYS
 * ranks, where its 2(p-1) steps cost less than one round of Open MPI's
 * MPI_Iallreduce, and from 64 KiB on more.  GRIDRUN_COLL_RING_MIN and
 * GRIDRUN_COLL_SEGMENT (bytes) override them. */
#define RING_ALWAYS 4
#define RING_MIN_DEFAULT (64u * 1024)
#define SEGMENT_DEFAULT (1024u * 1024)
#define RING_TAG 0x6772
/* Waiting longer than this, the poll loop yields the CPU between tests,
 * which matters when ranks outnumber cores. */
#define YIELD_AFTER 0.005

typedef struct {
    gr_coll_backend_t base;
    MPI_Comm comm;
    int rank, size;
    size_t max_chunk; /* elements per MPI call */
    size_t ring_min;  /* bytes */
    size_t segment;   /* bytes */
    void *tmp;        /* the ring's receive buffer */
    size_t tmp_size;
    MPI_Request *reqs;
    size_t reqs_cap;
    /* Fusion chunks (shm.c): SHM_NONE reduces them by messages;
     * SHM_NODE: every rank is on this node and shares them; SHM_NODES:
     * the ranks of each node share them, and the nodes' first ranks
     * reduce between nodes through `leaders`, an MPI backend of their own
     * (NULL on the other ranks). */
    int shm;
    MPI_Comm node; /* SHM_NODES: this node's ranks */
    int lrank, lsize;
    gr_coll_backend_t *leaders;
} mpi_backend_t;

enum { SHM_NONE, SHM_NODE, SHM_NODES };

/* Created once per process and never freed (MPI_Finalize does): the two
 * 2-byte types get handles of their own so that the MPI_Op functions can
 * tell f16 from bf16. */
static MPI_Datatype f16_type = MPI_DATATYPE_NULL, bf16_type = MPI_DATATYPE_NULL;
static MPI_Op mpi_ops[3] = {MPI_OP_NULL, MPI_OP_NULL, MPI_OP_NULL};

static gr_dtype_t dtype_of (MPI_Datatype dt)
{
    if (dt == MPI_FLOAT)
        return GR_F32;
    if (dt == MPI_DOUBLE)
        return GR_F64;
    if (dt == MPI_INT32_T)
        return GR_I32;
    if (dt == MPI_INT64_T)
        return GR_I64;
    return dt == f16_type ? GR_F16 : GR_BF16;
}

static MPI_Datatype mpi_type (gr_dtype_t t)
{
    switch (t) {
        case GR_F32:
            return MPI_FLOAT;
        case GR_F64:
            return MPI_DOUBLE;
        case GR_I32:
            return MPI_INT32_T;
        case GR_I64:
            return MPI_INT64_T;
        case GR_F16:
            return f16_type;
        case GR_BF16:
            return bf16_type;
    }
    return MPI_DATATYPE_NULL;
}

static void op_sum (void *in, void *inout, int *len, MPI_Datatype *dt)
{
    gr_coll_reduce (dtype_of (*dt), GR_SUM, inout, in, inout, (size_t)*len);
}

static void op_max (void *in, void *inout, int *len, MPI_Datatype *dt)
{
    gr_coll_reduce (dtype_of (*dt), GR_MAX, inout, in, inout, (size_t)*len);
}

static void op_min (void *in, void *inout, int *len, MPI_Datatype *dt)
{
    gr_coll_reduce (dtype_of (*dt), GR_MIN, inout, in, inout, (size_t)*len);
}

static MPI_Op mpi_op (gr_op_t op)
{
    return op == GR_MAX ? mpi_ops[1] : op == GR_MIN ? mpi_ops[2] : mpi_ops[0];
}

static int mpi_fail (mpi_backend_t *m, gr_error_t *errp, int rc, const char *call)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;

    if (MPI_Error_string (rc, text, &len) != MPI_SUCCESS)
        snprintf (text, sizeof (text), "MPI error %d", rc);
    return gr_coll_break (&m->base, errp, ECOMM, "%s failed on rank %d: %s", call,
                          m->rank, text);
}

#define MPI_TRY(m, errp, call)                                                           \
    do {                                                                                 \
        int gr_rc_ = (call);                                                             \
        if (gr_rc_ != MPI_SUCCESS)                                                       \
            return mpi_fail ((m), (errp), gr_rc_, #call);                                \
    } while (0)

static int grow (void **buf, size_t *size, size_t need)
{
    void *p;

    if (*size >= need)
        return 0;
    if (!(p = malloc (need))) {
        errno = ENOMEM;
        return -1;
    }
    free (*buf);
    *buf = p;
    *size = need;
    return 0;
}

static MPI_Request *reqs_get (mpi_backend_t *m, size_t n, gr_error_t *errp)
{
    if (n > m->reqs_cap) {
        MPI_Request *r = realloc (m->reqs, n * sizeof (*r));
        if (!r) {
            errno = ENOMEM;
            gr_errprintf (errp, "out of memory for %zu MPI requests", n);
            return NULL;
        }
        m->reqs = r;
        m->reqs_cap = n;
    }
    for (size_t i = 0; i < n; i++)
        m->reqs[i] = MPI_REQUEST_NULL;
    return m->reqs;
}

static int timed_out (mpi_backend_t *m, gr_error_t *errp, const char *what)
{
    return gr_coll_break (
        &m->base, errp, ETIMEDOUT,
        "%s passed its deadline on rank %d: some rank did not take part "
        "(stopped, dead, or in another collective); the operation "
        "cannot be cancelled, so the library's collectives cannot be "
        "used again in this run: save a checkpoint if you can and exit",
        what, m->rank);
}

/* Poll the deadline every so many tests: reading the clock costs more
 * than a test of a request that is not done. */
#define POLL_CLOCK_EVERY 32
/* At most this many pieces of one operation in flight: posting thousands
 * of nonblocking operations at once makes every test walk them all. */
#define WINDOW 16

typedef struct {
    unsigned spins;
    double start;
} poll_t;

/* Called after each test that found nothing done: -1 past the deadline
 * (the backend is then broken), else 0 (yielding the CPU once the wait
 * is long). */
static int poll_idle (mpi_backend_t *m, poll_t *p, double deadline, const char *what,
                      gr_error_t *errp)
{
    if (++p->spins % POLL_CLOCK_EVERY == 0) {
        double now = gr_now ();
        if (p->start == 0)
            p->start = now;
        if (now >= deadline)
            return timed_out (m, errp, what);
        if (now - p->start > YIELD_AFTER)
            sched_yield ();
    }
    return 0;
}

/* Wait for reqs[0..n) by polling. */
static int wait_all (mpi_backend_t *m, int n, MPI_Request *reqs, double deadline,
                     const char *what, gr_error_t *errp)
{
    poll_t p = {0, 0};

    for (;;) {
        int done = 0;
        MPI_TRY (m, errp, MPI_Testall (n, reqs, &done, MPI_STATUSES_IGNORE));
        if (done)
            return 0;
        if (poll_idle (m, &p, deadline, what, errp) < 0)
            return -1;
    }
}

/* An operation cut into pieces of at most max_chunk elements: post (i,
 * off, len, reqs) starts piece i with per requests; at most WINDOW pieces
 * are in flight. */
typedef int (*post_f) (mpi_backend_t *m, void *arg, size_t off, size_t len,
                       MPI_Request *reqs, gr_error_t *errp);

static int in_pieces (mpi_backend_t *m, size_t count, size_t per, post_f post, void *arg,
                      const char *what, double deadline, gr_error_t *errp)
{
    size_t n = gr_coll_nchunks (count, m->max_chunk);

    for (size_t b0 = 0; b0 < n; b0 += WINDOW) {
        size_t b1 = b0 + WINDOW < n ? b0 + WINDOW : n;
        MPI_Request *reqs = reqs_get (m, (b1 - b0) * per, errp);
        if (!reqs)
            return -1;
        for (size_t i = b0; i < b1; i++) {
            size_t off = i * m->max_chunk;
            size_t len = i + 1 < n ? m->max_chunk : count - off;
            if (post (m, arg, off, len, reqs + (i - b0) * per, errp) < 0)
                return -1;
        }
        if (wait_all (m, (int)((b1 - b0) * per), reqs, deadline, what, errp) < 0)
            return -1;
    }
    return 0;
}

/* ---- Allreduce --------------------------------------------------------- */

typedef struct {
    const char *send; /* this rank's contribution */
    char *recv;       /* the result */
    gr_dtype_t type;
    gr_op_t op;
    size_t es; /* element size */
    size_t count;
    size_t seg; /* elements per message */
} ring_t;

/* One step of the ring: send block sblk (from the result buffer, or from
 * the contribution in the first reduce-scatter step) to the next rank,
 * receive block rblk from the previous one, in segments, WINDOW at a
 * time.  Reducing (reduce-scatter), segments arrive in tmp (WINDOW
 * segments long) and the contribution is added to each as it arrives,
 * while later ones are still on the way; otherwise (allgather) segments
 * land in the result directly.  finish: the last reduce-scatter step,
 * where GR_AVG divides. */
static int ring_step (mpi_backend_t *m, const ring_t *r, int sblk, int rblk, int first,
                      int reduce, int finish, double deadline, gr_error_t *errp)
{
    size_t soff, slen, roff, rlen, seg = r->seg;
    int next = (m->rank + 1) % m->size, prev = (m->rank + m->size - 1) % m->size;
    MPI_Datatype dt = mpi_type (r->type);
    const char *sbase;
    char *rbase;

    gr_coll_block (r->count, m->size, sblk, &soff, &slen);
    gr_coll_block (r->count, m->size, rblk, &roff, &rlen);
    sbase = (first ? r->send : r->recv) + soff * r->es;
    rbase = reduce ? m->tmp : r->recv + roff * r->es;

    size_t nr = gr_coll_nchunks (rlen, seg), ns = gr_coll_nchunks (slen, seg);
    size_t nmax = nr > ns ? nr : ns;
    for (size_t b0 = 0; b0 < nmax; b0 += WINDOW) {
        size_t r1 = b0 + WINDOW < nr ? b0 + WINDOW : nr;
        size_t s1 = b0 + WINDOW < ns ? b0 + WINDOW : ns;
        size_t kr = r1 > b0 ? r1 - b0 : 0, ks = s1 > b0 ? s1 - b0 : 0;
        MPI_Request *reqs = reqs_get (m, kr + ks, errp);
        poll_t p = {0, 0};

        if (!reqs)
            return -1;
        for (size_t i = b0; i < r1; i++) {
            size_t len = i + 1 < nr ? seg : rlen - i * seg;
            size_t at = reduce ? i - b0 : i;
            MPI_TRY (m, errp,
                     MPI_Irecv (rbase + at * seg * r->es, (int)len, dt, prev, RING_TAG,
                                m->comm, &reqs[i - b0]));
        }
        for (size_t i = b0; i < s1; i++) {
            size_t len = i + 1 < ns ? seg : slen - i * seg;
            MPI_TRY (m, errp,
                     MPI_Isend (sbase + i * seg * r->es, (int)len, dt, next, RING_TAG,
                                m->comm, &reqs[kr + i - b0]));
        }
        if (!reduce) {
            if (wait_all (m, (int)(kr + ks), reqs, deadline, "allreduce", errp) < 0)
                return -1;
            continue;
        }
        /* Segments arrive in order: MPI does not overtake. */
        for (size_t i = b0; i < r1;) {
            int flag = 0;
            MPI_TRY (m, errp, MPI_Test (&reqs[i - b0], &flag, MPI_STATUS_IGNORE));
            if (!flag) {
                if (poll_idle (m, &p, deadline, "allreduce", errp) < 0)
                    return -1;
                continue;
            }
            size_t off = roff + i * seg;
            size_t len = i + 1 < nr ? seg : rlen - i * seg;
            char *dst = r->recv + off * r->es;
            gr_coll_reduce (r->type, r->op, r->send + off * r->es,
                            (char *)m->tmp + (i - b0) * seg * r->es, dst, len);
            if (finish && r->op == GR_AVG)
                gr_coll_divide (r->type, dst, len, m->size);
            i++;
        }
        if (wait_all (m, (int)ks, reqs + kr, deadline, "allreduce", errp) < 0)
            return -1;
    }
    return 0;
}

/* Ring allreduce: p - 1 reduce-scatter steps leave rank r with the whole
 * reduction of block r + 1, p - 1 allgather steps pass the blocks round.
 * The contribution is only read, so in place works unchanged. */
static int ring_allreduce (mpi_backend_t *m, const void *sendbuf, void *recvbuf,
                           size_t count, gr_dtype_t type, gr_op_t op, double deadline,
                           gr_error_t *errp)
{
    int p = m->size, me = m->rank;
    ring_t r = {.send = sendbuf,
                .recv = recvbuf,
                .type = type,
                .op = op,
                .es = gr_coll_dtype_size (type),
                .count = count,
                .seg = m->segment / gr_coll_dtype_size (type)};
    size_t off, len;

    if (r.seg > m->max_chunk)
        r.seg = m->max_chunk;
    if (r.seg == 0)
        r.seg = 1;
    gr_coll_block (count, p, 0, &off, &len); /* block 0 is the longest */
    if (len > WINDOW * r.seg)
        len = WINDOW * r.seg;
    if (grow (&m->tmp, &m->tmp_size, len * r.es) < 0)
        return gr_errprintf (errp, "out of memory for a %zu-byte allreduce buffer",
                             len * r.es);
    for (int s = 0; s < p - 1; s++) {
        if (ring_step (m, &r, (me - s + p) % p, (me - s - 1 + p) % p, s == 0, 1,
                       s == p - 2, deadline, errp) < 0)
            return -1;
    }
    for (int s = 0; s < p - 1; s++) {
        if (ring_step (m, &r, (me + 1 - s + p) % p, (me - s + p) % p, 0, 0, 0, deadline,
                       errp) < 0)
            return -1;
    }
    return 0;
}

/* What the pieces of one operation share. */
typedef struct {
    const char *send; /* NULL: in place */
    char *recv;
    gr_dtype_t type;
    gr_op_t op;
    size_t es;
    size_t count; /* elements of a rank's part (allgather, reduce_scatter) */
    int root;
} piece_args_t;

static int post_allreduce (mpi_backend_t *m, void *arg, size_t off, size_t len,
                           MPI_Request *reqs, gr_error_t *errp)
{
    piece_args_t *a = arg;

    MPI_TRY (m, errp,
             MPI_Iallreduce (a->send ? a->send + off * a->es : MPI_IN_PLACE,
                             a->recv + off * a->es, (int)len, mpi_type (a->type),
                             mpi_op (a->op), m->comm, reqs));
    return 0;
}

static int m_allreduce (gr_coll_backend_t *b, const void *sendbuf, void *recvbuf,
                        size_t count, gr_dtype_t type, gr_op_t op, double deadline,
                        gr_error_t *errp)
{
    mpi_backend_t *m = (mpi_backend_t *)b;
    piece_args_t a = {.send = sendbuf == GR_IN_PLACE ? NULL : sendbuf,
                      .recv = recvbuf,
                      .type = type,
                      .op = op,
                      .es = gr_coll_dtype_size (type)};

    if (m->size == 1) {
        if (a.send)
            memcpy (recvbuf, sendbuf, count * a.es);
        return 0;
    }
    if (count * a.es >= m->ring_min)
        return ring_allreduce (m, a.send ? a.send : recvbuf, recvbuf, count, type, op,
                               deadline, errp);
    if (in_pieces (m, count, 1, post_allreduce, &a, "allreduce", deadline, errp) < 0)
        return -1;
    if (op == GR_AVG)
        gr_coll_divide (type, recvbuf, count, m->size);
    return 0;
}

/* ---- Broadcast, allgather, reduce-scatter, barrier --------------------- */

static int post_bcast (mpi_backend_t *m, void *arg, size_t off, size_t len,
                       MPI_Request *reqs, gr_error_t *errp)
{
    piece_args_t *a = arg;

    MPI_TRY (m, errp,
             MPI_Ibcast (a->recv + off * a->es, (int)len, mpi_type (a->type), a->root,
                         m->comm, reqs));
    return 0;
}

static int m_bcast (gr_coll_backend_t *b, void *buf, size_t count, gr_dtype_t type,
                    int root, double deadline, gr_error_t *errp)
{
    mpi_backend_t *m = (mpi_backend_t *)b;
    piece_args_t a = {
        .recv = buf, .type = type, .es = gr_coll_dtype_size (type), .root = root};

    if (m->size == 1)
        return 0;
    return in_pieces (m, count, 1, post_bcast, &a, "broadcast", deadline, errp);
}

/* Piece [off, off + len) of every rank's part, received through a type
 * whose extent is a whole part, so that rank r's piece lands at
 * r * count + off. */
static int post_allgather (mpi_backend_t *m, void *arg, size_t off, size_t len,
                           MPI_Request *reqs, gr_error_t *errp)
{
    piece_args_t *a = arg;
    MPI_Datatype dt = mpi_type (a->type), piece, placed;
    int rc;

    MPI_TRY (m, errp, MPI_Type_contiguous ((int)len, dt, &piece));
    rc = MPI_Type_create_resized (piece, 0, (MPI_Aint)(a->count * a->es), &placed);
    MPI_Type_free (&piece);
    if (rc != MPI_SUCCESS)
        return mpi_fail (m, errp, rc, "MPI_Type_create_resized");
    if ((rc = MPI_Type_commit (&placed)) == MPI_SUCCESS)
        rc = MPI_Iallgather (a->send ? a->send + off * a->es : MPI_IN_PLACE, (int)len, dt,
                             a->recv + off * a->es, 1, placed, m->comm, reqs);
    MPI_Type_free (&placed); /* the operation keeps its own reference */
    if (rc != MPI_SUCCESS)
        return mpi_fail (m, errp, rc, "MPI_Iallgather");
    return 0;
}

static int m_allgather (gr_coll_backend_t *b, const void *sendbuf, void *recvbuf,
                        size_t count, gr_dtype_t type, double deadline, gr_error_t *errp)
{
    mpi_backend_t *m = (mpi_backend_t *)b;
    piece_args_t a = {.send = sendbuf == GR_IN_PLACE ? NULL : sendbuf,
                      .recv = recvbuf,
                      .type = type,
                      .es = gr_coll_dtype_size (type),
                      .count = count};
    MPI_Datatype dt = mpi_type (type);
    MPI_Request *reqs;

    if (m->size == 1) {
        if (a.send)
            memcpy (recvbuf, sendbuf, count * a.es);
        return 0;
    }
    if (count > m->max_chunk)
        return in_pieces (m, count, 1, post_allgather, &a, "allgather", deadline, errp);
    if (!(reqs = reqs_get (m, 1, errp)))
        return -1;
    MPI_TRY (m, errp,
             MPI_Iallgather (a.send ? (const void *)a.send : MPI_IN_PLACE, (int)count, dt,
                             recvbuf, (int)count, dt, m->comm, &reqs[0]));
    return wait_all (m, 1, reqs, deadline, "allgather", errp);
}

/* Piece [off, off + len) of every block, reduced to the block's owner.
 * In place, each rank reduces into its own block, moved to the front
 * once every piece of the others has been read. */
static int post_reduce_scatter (mpi_backend_t *m, void *arg, size_t off, size_t len,
                                MPI_Request *reqs, gr_error_t *errp)
{
    piece_args_t *a = arg;
    const char *in = a->send ? a->send : a->recv;
    MPI_Datatype dt = mpi_type (a->type);
    MPI_Op op = mpi_op (a->op);

    for (int q = 0; q < m->size; q++) {
        const char *src = in + ((size_t)q * a->count + off) * a->es;
        if (q != m->rank)
            MPI_TRY (m, errp,
                     MPI_Ireduce (src, NULL, (int)len, dt, op, q, m->comm, &reqs[q]));
        else if (!a->send)
            MPI_TRY (m, errp,
                     MPI_Ireduce (MPI_IN_PLACE, (char *)src, (int)len, dt, op, q, m->comm,
                                  &reqs[q]));
        else
            MPI_TRY (m, errp,
                     MPI_Ireduce (src, a->recv + off * a->es, (int)len, dt, op, q,
                                  m->comm, &reqs[q]));
    }
    return 0;
}

static int m_reduce_scatter (gr_coll_backend_t *b, const void *sendbuf, void *recvbuf,
                             size_t recvcount, gr_dtype_t type, gr_op_t op,
                             double deadline, gr_error_t *errp)
{
    mpi_backend_t *m = (mpi_backend_t *)b;
    piece_args_t a = {.send = sendbuf == GR_IN_PLACE ? NULL : sendbuf,
                      .recv = recvbuf,
                      .type = type,
                      .op = op,
                      .es = gr_coll_dtype_size (type),
                      .count = recvcount};
    MPI_Request *reqs;

    if (m->size == 1) {
        if (a.send)
            memcpy (recvbuf, sendbuf, recvcount * a.es);
        return 0;
    }
    if (recvcount > m->max_chunk) {
        if (in_pieces (m, recvcount, (size_t)m->size, post_reduce_scatter, &a,
                       "reduce_scatter", deadline, errp) < 0)
            return -1;
        if (!a.send && m->rank > 0)
            memmove (recvbuf, (char *)recvbuf + (size_t)m->rank * recvcount * a.es,
                     recvcount * a.es);
    } else {
        if (!(reqs = reqs_get (m, 1, errp)))
            return -1;
        MPI_TRY (m, errp,
                 MPI_Ireduce_scatter_block (a.send ? (const void *)a.send : MPI_IN_PLACE,
                                            recvbuf, (int)recvcount, mpi_type (type),
                                            mpi_op (op), m->comm, &reqs[0]));
        if (wait_all (m, 1, reqs, deadline, "reduce_scatter", errp) < 0)
            return -1;
    }
    if (op == GR_AVG)
        gr_coll_divide (type, recvbuf, recvcount, m->size);
    return 0;
}

static int m_barrier (gr_coll_backend_t *b, double deadline, gr_error_t *errp)
{
    mpi_backend_t *m = (mpi_backend_t *)b;
    MPI_Request *reqs;

    if (m->size == 1)
        return 0;
    if (!(reqs = reqs_get (m, 1, errp)))
        return -1;
    MPI_TRY (m, errp, MPI_Ibarrier (m->comm, &reqs[0]));
    return wait_all (m, 1, reqs, deadline, "barrier", errp);
}

/* ---- Fusion chunks in shared memory ------------------------------------ */

/* Wait until every rank arrived at s, against the deadline. */
static int seg_wait (mpi_backend_t *m, gr_coll_seg_t *s, double deadline, gr_error_t *errp)
{
    poll_t p = {0, 0};

    while (!gr_coll_seg_all_arrived (s)) {
        if (poll_idle (m, &p, deadline, "fusion allreduce", errp) < 0)
            return -1;
    }
    return 0;
}

/* The first allreduce of a chunk: every rank of the node maps every
 * other's, and all ranks agree whether all could (else the chunk goes by
 * messages, on every rank alike).  A failure to map is not an error: a
 * warning says so on the rank where it happened. */
static int seg_link (mpi_backend_t *m, gr_coll_seg_t *s, double deadline, gr_error_t *errp)
{
    MPI_Comm node = m->shm == SHM_NODES ? m->node : m->comm;
    int64_t id[3], *ids = calloc ((size_t)m->lsize * 3, sizeof (*ids));
    MPI_Request *reqs;
    int ok = 1, all = 0, rc;
    gr_error_t why;

    if (!ids) {
        errno = ENOMEM;
        return gr_errprintf (errp, "out of memory");
    }
    gr_coll_seg_id (s, id);
    if (!(reqs = reqs_get (m, 1, errp)))
        goto error;
    rc = MPI_Iallgather (id, 3, MPI_INT64_T, ids, 3, MPI_INT64_T, node, &reqs[0]);
    if (rc != MPI_SUCCESS) {
        mpi_fail (m, errp, rc, "MPI_Iallgather");
        goto error;
    }
    if (wait_all (m, 1, reqs, deadline, "fusion allreduce", errp) < 0)
        goto error;
    if (gr_coll_seg_map (s, m->lsize, m->lrank, ids, &why) < 0) {
        ok = 0;
        GR_WARN ("rank %d: fusion memory is not shared (%s); it is reduced by messages",
                 m->rank, why.text);
    }
    rc = MPI_Iallreduce (&ok, &all, 1, MPI_INT, MPI_MIN, m->comm, &reqs[0]);
    if (rc != MPI_SUCCESS) {
        mpi_fail (m, errp, rc, "MPI_Iallreduce");
        goto error;
    }
    if (wait_all (m, 1, reqs, deadline, "fusion allreduce", errp) < 0)
        goto error;
    gr_coll_seg_linked (s, all);
    free (ids);
    return 0;
error:
    free (ids);
    return -1;
}

/* Arrive at s and wait for the node's other ranks. */
static int seg_sync (mpi_backend_t *m, gr_coll_seg_t *s, size_t count, double deadline,
                     gr_error_t *errp)
{
    gr_coll_seg_arrive (s, count);
    return seg_wait (m, s, deadline, errp);
}

/* Between nodes (SHM_NODES): the node's sum is in its first rank's copy;
 * the first ranks reduce it between them, and every other rank of the
 * node copies the result. */
static int seg_between_nodes (mpi_backend_t *m, gr_coll_seg_t *s, size_t count,
                              gr_dtype_t type, gr_op_t op, double deadline, gr_error_t *errp)
{
    if (m->leaders) {
        gr_error_t e;
        void *data = gr_coll_seg_data (s);
        if (m->leaders->ops->allreduce (m->leaders, GR_IN_PLACE, data, count, type,
                                        op == GR_AVG ? GR_SUM : op, deadline, &e) < 0)
            return gr_coll_break (&m->base, errp, errno, "%s", e.text);
        if (op == GR_AVG)
            gr_coll_divide (type, data, count, m->size);
    }
    if (seg_sync (m, s, count, deadline, errp) < 0)
        return -1;
    if (!m->leaders)
        gr_coll_seg_take_first (s, count * gr_coll_dtype_size (type));
    /* The first rank's copy is read until here. */
    return seg_sync (m, s, count, deadline, errp);
}

static int m_seg_allreduce (gr_coll_backend_t *b, gr_coll_seg_t *s, size_t count,
                            gr_dtype_t type, gr_op_t op, double deadline, gr_error_t *errp)
{
    mpi_backend_t *m = (mpi_backend_t *)b;

    if (m->shm != SHM_NONE && gr_coll_seg_state (s) == 0 &&
        seg_link (m, s, deadline, errp) < 0)
        return -1;
    if (m->shm == SHM_NONE || gr_coll_seg_state (s) != 1)
        return m_allreduce (b, GR_IN_PLACE, gr_coll_seg_data (s), count, type, op,
                            deadline, errp);
    if (seg_sync (m, s, count, deadline, errp) < 0)
        return -1;
    if (!gr_coll_seg_counts_agree (s, count)) {
        /* Every rank of the node sees the same counts, so each fails here. */
        if (seg_sync (m, s, count, deadline, errp) < 0)
            return -1;
        errno = EINVAL;
        return gr_errprintf (errp, "the ranks' fusions differ in size: every rank must "
                                   "allocate the same tensors in the same order");
    }
    if (m->shm == SHM_NODE) {
        gr_coll_seg_reduce (s, count, type, op, m->size, 1);
        return seg_sync (m, s, count, deadline, errp);
    }
    gr_coll_seg_reduce (s, count, type, op, 1, 0);
    if (seg_sync (m, s, count, deadline, errp) < 0)
        return -1;
    return seg_between_nodes (m, s, count, type, op, deadline, errp);
}

/* ---- Life cycle -------------------------------------------------------- */

static void m_destroy (gr_coll_backend_t *b)
{
    mpi_backend_t *m = (mpi_backend_t *)b;

    if (!m)
        return;
    /* Operations left in flight by a timeout may still write tmp and
     * hold the communicator: leave both. */
    if (!m->base.broken) {
        free (m->tmp);
        free (m->reqs);
        if (m->comm != MPI_COMM_NULL)
            MPI_Comm_free (&m->comm);
        if (m->node != MPI_COMM_NULL)
            MPI_Comm_free (&m->node);
        if (m->leaders)
            m->leaders->ops->destroy (m->leaders);
    }
    free (m);
}

static const gr_coll_ops_t mpi_backend_ops = {
    .name = "mpi",
    .allreduce = m_allreduce,
    .bcast = m_bcast,
    .allgather = m_allgather,
    .reduce_scatter = m_reduce_scatter,
    .barrier = m_barrier,
    .allreduce_many = NULL,
    .seg_allreduce = m_seg_allreduce,
    .destroy = m_destroy,
};

static int types_init (gr_error_t *errp)
{
    static int done;
    int rc = MPI_SUCCESS;

    if (done)
        return 0;
    if ((rc = MPI_Type_contiguous (1, MPI_UINT16_T, &f16_type)) != MPI_SUCCESS ||
        (rc = MPI_Type_commit (&f16_type)) != MPI_SUCCESS ||
        (rc = MPI_Type_contiguous (1, MPI_UINT16_T, &bf16_type)) != MPI_SUCCESS ||
        (rc = MPI_Type_commit (&bf16_type)) != MPI_SUCCESS ||
        (rc = MPI_Op_create (op_sum, 1, &mpi_ops[0])) != MPI_SUCCESS ||
        (rc = MPI_Op_create (op_max, 1, &mpi_ops[1])) != MPI_SUCCESS ||
        (rc = MPI_Op_create (op_min, 1, &mpi_ops[2])) != MPI_SUCCESS) {
        errno = ECOMM;
        return gr_errprintf (errp,
                             "cannot create the MPI types and operations of the "
                             "collectives (MPI error %d)",
                             rc);
    }
    done = 1;
    return 0;
}

/* A positive byte count from the environment, or dflt. */
static size_t env_bytes (const char *name, size_t dflt)
{
    const char *s = getenv (name);
    char *end;
    unsigned long long v;

    if (!s || !*s)
        return dflt;
    errno = 0;
    v = strtoull (s, &end, 10);
    return (errno || *end || v == 0) ? dflt : (size_t)v;
}

/* How fusion chunks are shared (mpi_backend_t.shm), agreed by all ranks:
 * not at all where some rank has GRIDRUN_COLL_SHM=0 (gr_init refuses
 * values other than 0 and 1) or every node has one rank; else within the
 * node, and between nodes by the nodes' first ranks. */
static int shm_setup (mpi_backend_t *m, gr_error_t *errp)
{
    const char *env = getenv ("GRIDRUN_COLL_SHM");
    int rc, v[3], all[3];
    MPI_Comm lead = MPI_COMM_NULL;

    m->lrank = m->rank;
    m->lsize = m->size;
    if ((rc = MPI_Comm_split_type (m->comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL,
                                   &m->node)) != MPI_SUCCESS ||
        (rc = MPI_Comm_rank (m->node, &m->lrank)) != MPI_SUCCESS ||
        (rc = MPI_Comm_size (m->node, &m->lsize)) != MPI_SUCCESS)
        goto mpi_error;
    v[0] = !(env && strcmp (env, "0") == 0);
    v[1] = m->lsize == m->size;
    v[2] = -m->lsize;
    if ((rc = MPI_Allreduce (v, all, 3, MPI_INT, MPI_MIN, m->comm)) != MPI_SUCCESS)
        goto mpi_error;
    m->shm = !all[0] || m->size == 1 || -all[2] == 1 ? SHM_NONE
             : all[1]                               ? SHM_NODE
                                                    : SHM_NODES;
    if (m->shm != SHM_NODES) {
        MPI_Comm_free (&m->node);
        m->lrank = m->rank;
        m->lsize = m->size;
        return 0;
    }
    if ((rc = MPI_Comm_split (m->comm, m->lrank == 0 ? 0 : MPI_UNDEFINED, m->rank, &lead)) !=
        MPI_SUCCESS)
        goto mpi_error;
    if (lead != MPI_COMM_NULL) {
        m->leaders = gr_coll_mpi_create (lead, m->max_chunk, errp);
        MPI_Comm_free (&lead);
        if (!m->leaders)
            return -1;
    }
    return 0;
mpi_error:
    mpi_fail (m, errp, rc, "the split of the ranks by node");
    m->base.broken = 0;
    errno = ECOMM;
    return -1;
}

gr_coll_backend_t *gr_coll_mpi_create (MPI_Comm comm, size_t max_chunk, gr_error_t *errp)
{
    mpi_backend_t *m;
    int rc;

    if (types_init (errp) < 0)
        return NULL;
    if (!(m = calloc (1, sizeof (*m)))) {
        errno = ENOMEM;
        gr_errprintf (errp, "out of memory");
        return NULL;
    }
    m->base.ops = &mpi_backend_ops;
    m->comm = MPI_COMM_NULL;
    m->node = MPI_COMM_NULL;
    m->max_chunk = max_chunk == 0 || max_chunk > INT_MAX ? INT_MAX : max_chunk;
    m->segment = env_bytes ("GRIDRUN_COLL_SEGMENT", SEGMENT_DEFAULT);
    if ((rc = MPI_Comm_dup (comm, &m->comm)) != MPI_SUCCESS ||
        (rc = MPI_Comm_set_errhandler (m->comm, MPI_ERRORS_RETURN)) != MPI_SUCCESS ||
        (rc = MPI_Comm_rank (m->comm, &m->rank)) != MPI_SUCCESS ||
        (rc = MPI_Comm_size (m->comm, &m->size)) != MPI_SUCCESS) {
        mpi_fail (m, errp, rc, "MPI_Comm_dup");
        m->base.broken = 0;
        m_destroy (&m->base);
        errno = ECOMM;
        return NULL;
    }
    if (shm_setup (m, errp) < 0) {
        m_destroy (&m->base);
        return NULL;
    }
    m->ring_min = env_bytes ("GRIDRUN_COLL_RING_MIN",
                             m->size <= RING_ALWAYS ? 1 : RING_MIN_DEFAULT);
    return &m->base;
}
