/* gr_world_t (world.h): MPI's blocking calls, or the same operations built
 * from gr_net_exchange.  Over TCP, broadcasts and gathers go straight
 * from or to the root, all messages at once; the all- forms are a gather
 * and a broadcast.  That is meant for the small control traffic this
 * carries (the collectives of gridrun.h have a ring of their own, in
 * coll_tcp.c). */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "world.h"
#include "src/common/gtime.h"

#define WORLD_TAG 0x6777
/* Bytes per MPI call. */
#define MPI_PIECE ((size_t)1 << 30)

typedef struct {
    gr_net_t *net;
    int refs;
} shared_net_t;

struct gr_world {
    MPI_Comm comm;        /* MPI_COMM_NULL over TCP */
    shared_net_t *shared; /* NULL over MPI */
    int rank, size;
    double timeout;
};

static int mpi_error (gr_error_t *errp, int rc, const char *call)
{
    char text[MPI_MAX_ERROR_STRING] = "";
    int n = 0;

    if (MPI_Error_string (rc, text, &n) != MPI_SUCCESS)
        snprintf (text, sizeof (text), "MPI error %d", rc);
    errno = ECOMM;
    return gr_errprintf (errp, "%s failed: %s", call, text);
}

#define MPI_DO(call, errp)                                                               \
    do {                                                                                 \
        int rc_ = (call);                                                                \
        if (rc_ != MPI_SUCCESS)                                                          \
            return mpi_error ((errp), rc_, #call);                                       \
    } while (0)

static int too_big (gr_error_t *errp, size_t len)
{
    errno = EOVERFLOW;
    return gr_errprintf (errp, "%zu bytes are too many for one MPI call", len);
}

static double deadline_of (const gr_world_t *w)
{
    return w->timeout > 0 ? gr_now () + w->timeout : INFINITY;
}

/* ---- Life cycle -------------------------------------------------------- */

gr_world_t *gr_world_mpi (MPI_Comm comm, gr_error_t *errp)
{
    gr_world_t *w = calloc (1, sizeof (*w));
    int rc;

    if (!w) {
        errno = ENOMEM;
        gr_errprintf (errp, "out of memory");
        return NULL;
    }
    w->comm = MPI_COMM_NULL;
    if ((rc = MPI_Comm_dup (comm, &w->comm)) != MPI_SUCCESS ||
        (rc = MPI_Comm_set_errhandler (w->comm, MPI_ERRORS_RETURN)) != MPI_SUCCESS ||
        (rc = MPI_Comm_rank (w->comm, &w->rank)) != MPI_SUCCESS ||
        (rc = MPI_Comm_size (w->comm, &w->size)) != MPI_SUCCESS) {
        mpi_error (errp, rc, "MPI_Comm_dup");
        gr_world_destroy (w);
        errno = ECOMM;
        return NULL;
    }
    return w;
}

gr_world_t *gr_world_net (gr_net_t *net, gr_error_t *errp)
{
    gr_world_t *w = calloc (1, sizeof (*w));

    if (!w || !(w->shared = calloc (1, sizeof (*w->shared)))) {
        free (w);
        gr_net_close (net);
        errno = ENOMEM;
        gr_errprintf (errp, "out of memory");
        return NULL;
    }
    w->comm = MPI_COMM_NULL;
    w->shared->net = net;
    w->shared->refs = 1;
    w->rank = gr_net_rank (net);
    w->size = gr_net_size (net);
    return w;
}

gr_world_t *gr_world_dup (gr_world_t *w, gr_error_t *errp)
{
    gr_world_t *d;

    if (w->comm != MPI_COMM_NULL) {
        if ((d = gr_world_mpi (w->comm, errp)))
            d->timeout = w->timeout;
        return d;
    }
    if (!(d = calloc (1, sizeof (*d)))) {
        errno = ENOMEM;
        gr_errprintf (errp, "out of memory");
        return NULL;
    }
    *d = *w;
    d->shared->refs++;
    return d;
}

void gr_world_destroy (gr_world_t *w)
{
    int saved = errno;

    if (!w)
        return;
    if (w->comm != MPI_COMM_NULL)
        MPI_Comm_free (&w->comm);
    if (w->shared && --w->shared->refs == 0) {
        gr_net_close (w->shared->net);
        free (w->shared);
    }
    free (w);
    errno = saved;
}

int gr_world_rank (const gr_world_t *w)
{
    return w->rank;
}

int gr_world_size (const gr_world_t *w)
{
    return w->size;
}

MPI_Comm gr_world_comm (const gr_world_t *w)
{
    return w->comm;
}

gr_net_t *gr_world_netof (const gr_world_t *w)
{
    return w->shared ? w->shared->net : NULL;
}

void gr_world_set_timeout (gr_world_t *w, double seconds)
{
    w->timeout = isnan (seconds) || seconds < 0 ? 0 : seconds;
}

/* ---- Operations -------------------------------------------------------- */

int gr_world_exchange (gr_world_t *w, const gr_net_msg_t *sends, int nsend,
                       gr_net_msg_t *recvs, int nrecv, gr_error_t *errp)
{
    MPI_Request *req;
    int nr = 0, rc;

    if (w->shared)
        return gr_net_exchange (w->shared->net, sends, nsend, recvs, nrecv, deadline_of (w),
                                errp);
    for (int i = 0; i < nsend + nrecv; i++)
        if ((i < nsend ? sends[i].len : recvs[i - nsend].len) > INT_MAX)
            return too_big (errp, i < nsend ? sends[i].len : recvs[i - nsend].len);
    if (!(req = malloc ((size_t)(nsend + nrecv + 1) * sizeof (*req)))) {
        errno = ENOMEM;
        return gr_errprintf (errp, "out of memory");
    }
    rc = MPI_SUCCESS;
    for (int i = 0; i < nrecv && rc == MPI_SUCCESS; i++)
        rc = MPI_Irecv (recvs[i].buf, (int)recvs[i].len, MPI_BYTE, recvs[i].peer, WORLD_TAG,
                        w->comm, &req[nr++]);
    for (int i = 0; i < nsend && rc == MPI_SUCCESS; i++)
        rc = MPI_Isend (sends[i].buf, (int)sends[i].len, MPI_BYTE, sends[i].peer, WORLD_TAG,
                        w->comm, &req[nr++]);
    if (rc == MPI_SUCCESS)
        rc = MPI_Waitall (nr, req, MPI_STATUSES_IGNORE);
    free (req);
    return rc == MPI_SUCCESS ? 0 : mpi_error (errp, rc, "MPI_Isend/MPI_Irecv");
}

/* Root sends its len bytes at buf to every rank at once; the others
 * receive them into buf. */
/* Root receives lens[r] bytes of each rank r at all + offs; the others
 * send theirs. */
static int net_gatherv (gr_world_t *w, const void *mine, size_t len, void *all,
                        const size_t *lens, int root, gr_error_t *errp)
{
    gr_net_msg_t *m;
    size_t off = 0;
    int k = 0, rc;

    if (w->rank != root) {
        gr_net_msg_t s = {.peer = root, .buf = (void *)mine, .len = len};
        return gr_world_exchange (w, &s, 1, NULL, 0, errp);
    }
    if (!(m = calloc ((size_t)w->size, sizeof (*m)))) {
        errno = ENOMEM;
        return gr_errprintf (errp, "out of memory");
    }
    for (int r = 0; r < w->size; r++) {
        if (r == root)
            memmove ((char *)all + off, mine, len);
        else
            m[k++] = (gr_net_msg_t){.peer = r, .buf = (char *)all + off, .len = lens[r]};
        off += lens[r];
    }
    rc = gr_world_exchange (w, NULL, 0, m, k, errp);
    free (m);
    return rc;
}

int gr_world_bcast (gr_world_t *w, void *buf, size_t len, int root, gr_error_t *errp)
{
    if (w->size == 1 || len == 0)
        return 0;
    if (w->shared)
        return gr_net_bcast (w->shared->net, root, buf, len, deadline_of (w), errp);
    for (size_t off = 0; off < len; off += MPI_PIECE) {
        size_t n = len - off < MPI_PIECE ? len - off : MPI_PIECE;
        MPI_DO (MPI_Bcast ((char *)buf + off, (int)n, MPI_BYTE, root, w->comm), errp);
    }
    return 0;
}

static size_t *equal_lens (const gr_world_t *w, size_t len, gr_error_t *errp)
{
    size_t *lens = malloc ((size_t)w->size * sizeof (*lens));

    if (!lens) {
        errno = ENOMEM;
        gr_errprintf (errp, "out of memory");
        return NULL;
    }
    for (int r = 0; r < w->size; r++)
        lens[r] = len;
    return lens;
}

int gr_world_gather (gr_world_t *w, const void *mine, size_t len, void *all, int root,
                     gr_error_t *errp)
{
    size_t *lens;
    int rc;

    if (!w->shared) {
        if (len > INT_MAX)
            return too_big (errp, len);
        MPI_DO (MPI_Gather (mine, (int)len, MPI_BYTE, all, (int)len, MPI_BYTE, root,
                            w->comm),
                errp);
        return 0;
    }
    if (!(lens = equal_lens (w, len, errp)))
        return -1;
    rc = net_gatherv (w, mine, len, all, lens, root, errp);
    free (lens);
    return rc;
}

int gr_world_allgather (gr_world_t *w, const void *mine, size_t len, void *all,
                        gr_error_t *errp)
{
    if (!w->shared) {
        if (len > INT_MAX)
            return too_big (errp, len);
        MPI_DO (MPI_Allgather (mine, (int)len, MPI_BYTE, all, (int)len, MPI_BYTE, w->comm),
                errp);
        return 0;
    }
    if (gr_world_gather (w, mine, len, all, 0, errp) < 0)
        return -1;
    return gr_world_bcast (w, all, len * (size_t)w->size, 0, errp);
}

/* MPI's int counts and displacements for lens. */
static int mpi_counts (const gr_world_t *w, const size_t *lens, int **counts, int **displs,
                       gr_error_t *errp)
{
    size_t total = 0;

    *counts = malloc ((size_t)w->size * sizeof (int));
    *displs = malloc ((size_t)w->size * sizeof (int));
    if (!*counts || !*displs) {
        free (*counts);
        free (*displs);
        errno = ENOMEM;
        return gr_errprintf (errp, "out of memory");
    }
    for (int r = 0; r < w->size; r++) {
        (*displs)[r] = (int)total;
        (*counts)[r] = (int)lens[r];
        total += lens[r];
        if (lens[r] > INT_MAX || total > INT_MAX) {
            free (*counts);
            free (*displs);
            return too_big (errp, total);
        }
    }
    return 0;
}

int gr_world_gatherv (gr_world_t *w, const void *mine, size_t len, void *all,
                      const size_t *lens, int root, gr_error_t *errp)
{
    int *counts = NULL, *displs = NULL, rc;

    if (w->shared)
        return net_gatherv (w, mine, len, all, lens, root, errp);
    if (len > INT_MAX)
        return too_big (errp, len);
    if (w->rank == root && mpi_counts (w, lens, &counts, &displs, errp) < 0)
        return -1;
    rc = MPI_Gatherv (mine, (int)len, MPI_BYTE, all, counts, displs, MPI_BYTE, root, w->comm);
    free (counts);
    free (displs);
    return rc == MPI_SUCCESS ? 0 : mpi_error (errp, rc, "MPI_Gatherv");
}

int gr_world_allgatherv (gr_world_t *w, const void *mine, size_t len, void *all,
                         const size_t *lens, gr_error_t *errp)
{
    int *counts = NULL, *displs = NULL, rc;
    size_t total = 0;

    if (w->shared) {
        for (int r = 0; r < w->size; r++)
            total += lens[r];
        if (net_gatherv (w, mine, len, all, lens, 0, errp) < 0)
            return -1;
        return gr_world_bcast (w, all, total, 0, errp);
    }
    if (mpi_counts (w, lens, &counts, &displs, errp) < 0)
        return -1;
    rc = MPI_Allgatherv (mine, (int)len, MPI_BYTE, all, counts, displs, MPI_BYTE, w->comm);
    free (counts);
    free (displs);
    return rc == MPI_SUCCESS ? 0 : mpi_error (errp, rc, "MPI_Allgatherv");
}

int gr_world_allreduce_int (gr_world_t *w, const int *in, int *out, int n, gr_op_t op,
                            gr_error_t *errp)
{
    int *all;

    if (!w->shared) {
        MPI_Op mop = op == GR_MIN ? MPI_MIN : op == GR_MAX ? MPI_MAX : MPI_SUM;
        MPI_DO (MPI_Allreduce (in == out ? MPI_IN_PLACE : in, out, n, MPI_INT, mop, w->comm),
                errp);
        return 0;
    }
    if (!(all = malloc ((size_t)w->size * (size_t)(n > 0 ? n : 1) * sizeof (int)))) {
        errno = ENOMEM;
        return gr_errprintf (errp, "out of memory");
    }
    if (gr_world_allgather (w, in, (size_t)n * sizeof (int), all, errp) < 0) {
        free (all);
        return -1;
    }
    /* In rank order on every rank, so all agree. */
    for (int i = 0; i < n; i++) {
        int v = all[i];
        for (int r = 1; r < w->size; r++) {
            int x = all[(size_t)r * (size_t)n + (size_t)i];
            v = op == GR_MIN ? (x < v ? x : v) : op == GR_MAX ? (x > v ? x : v)
                                                             : (int)((unsigned)v + (unsigned)x);
        }
        out[i] = v;
    }
    free (all);
    return 0;
}
