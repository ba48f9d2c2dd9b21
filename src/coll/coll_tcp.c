/* The TCP backend: host buffers, over the connections of a TCP world
 * (net.h), for programs that run without MPI.
 *
 * Allreduce is the ring of the MPI backend, step for step: the same
 * blocks (gr_coll_block), sent and received in the same order, and each
 * block reduced as "this rank's contribution op what arrived".  So a
 * program gets the same bits from either backend wherever the MPI backend
 * uses its ring (every size on up to four ranks), and a run can move
 * between mpirun and a group task without its results changing.  Each step
 * is one exchange: the block to the next rank and the one from the
 * previous rank at once.  Reduce-scatter and allgather are rings too;
 * broadcast and barrier go straight from and to the root.
 *
 * A failure or a timeout leaves the world's streams out of step, so it
 * breaks the backend (and the world). */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "coll.h"
#include "net.h"

typedef struct {
    gr_coll_backend_t base;
    gr_net_t *net; /* not owned */
    int rank, size;
    void *tmp, *tmp2;
    size_t tmp_size, tmp2_size;
} tcp_backend_t;

static int grow (void **buf, size_t *size, size_t need)
{
    void *p;

    if (need <= *size)
        return 0;
    if (!(p = realloc (*buf, need))) {
        errno = ENOMEM;
        return -1;
    }
    *buf = p;
    *size = need;
    return 0;
}

/* One exchange with the ring's neighbours; a failure breaks the backend. */
static int ring_move (tcp_backend_t *t, const void *sbuf, size_t slen, void *rbuf,
                      size_t rlen, double deadline, gr_error_t *errp)
{
    gr_net_msg_t s = {.peer = (t->rank + 1) % t->size, .buf = (void *)sbuf, .len = slen};
    gr_net_msg_t r = {.peer = (t->rank + t->size - 1) % t->size, .buf = rbuf, .len = rlen};
    gr_error_t e;

    if (gr_net_exchange (t->net, &s, 1, &r, 1, deadline, &e) < 0)
        return gr_coll_break (&t->base, errp, errno, "%s", e.text);
    return 0;
}

static int nomem (gr_error_t *errp, size_t bytes)
{
    errno = ENOMEM;
    return gr_errprintf (errp, "out of memory for a %zu-byte buffer", bytes);
}

static int t_allreduce (gr_coll_backend_t *b, const void *sendbuf, void *recvbuf,
                        size_t count, gr_dtype_t type, gr_op_t op, double deadline,
                        gr_error_t *errp)
{
    tcp_backend_t *t = (tcp_backend_t *)b;
    size_t es = gr_coll_dtype_size (type), off, len;
    const char *send = sendbuf == GR_IN_PLACE ? recvbuf : sendbuf;
    char *recv = recvbuf;
    int p = t->size, me = t->rank;

    if (p == 1) {
        if (send != recv)
            memcpy (recv, send, count * es);
        return 0;
    }
    gr_coll_block (count, p, 0, &off, &len); /* block 0 is the longest */
    if (grow (&t->tmp, &t->tmp_size, len > 0 ? len * es : 1) < 0)
        return nomem (errp, len * es);
    /* Reduce-scatter: rank r ends with the whole of block r + 1. */
    for (int s = 0; s < p - 1; s++) {
        size_t soff, slen, roff, rlen;
        gr_coll_block (count, p, (me - s + p) % p, &soff, &slen);
        gr_coll_block (count, p, (me - s - 1 + p) % p, &roff, &rlen);
        if (ring_move (t, (s == 0 ? send : recv) + soff * es, slen * es, t->tmp, rlen * es,
                       deadline, errp) < 0)
            return -1;
        gr_coll_reduce (type, op, send + roff * es, t->tmp, recv + roff * es, rlen);
        if (s == p - 2 && op == GR_AVG)
            gr_coll_divide (type, recv + roff * es, rlen, p);
    }
    /* Allgather of the finished blocks. */
    for (int s = 0; s < p - 1; s++) {
        size_t soff, slen, roff, rlen;
        gr_coll_block (count, p, (me + 1 - s + p) % p, &soff, &slen);
        gr_coll_block (count, p, (me - s + p) % p, &roff, &rlen);
        if (ring_move (t, recv + soff * es, slen * es, recv + roff * es, rlen * es, deadline,
                       errp) < 0)
            return -1;
    }
    return 0;
}

static int t_bcast (gr_coll_backend_t *b, void *buf, size_t count, gr_dtype_t type,
                    int root, double deadline, gr_error_t *errp)
{
    tcp_backend_t *t = (tcp_backend_t *)b;
    gr_error_t e;

    if (t->size == 1)
        return 0;
    if (gr_net_bcast (t->net, root, buf, count * gr_coll_dtype_size (type), deadline, &e) < 0)
        return gr_coll_break (&t->base, errp, errno, "%s", e.text);
    return 0;
}

static int t_allgather (gr_coll_backend_t *b, const void *sendbuf, void *recvbuf,
                        size_t count, gr_dtype_t type, double deadline, gr_error_t *errp)
{
    tcp_backend_t *t = (tcp_backend_t *)b;
    size_t part = count * gr_coll_dtype_size (type);
    char *recv = recvbuf;
    int p = t->size, me = t->rank;

    if (sendbuf != GR_IN_PLACE)
        memcpy (recv + (size_t)me * part, sendbuf, part);
    for (int s = 0; s < p - 1; s++) {
        size_t sb = (size_t)((me - s + p) % p), rb = (size_t)((me - s - 1 + p) % p);
        if (ring_move (t, recv + sb * part, part, recv + rb * part, part, deadline, errp) < 0)
            return -1;
    }
    return 0;
}

/* A ring whose p - 1 steps leave rank r with the whole of block r: step s
 * sends block r - s - 1 (the contribution at first, then the block
 * reduced in the step before) and reduces block r - s - 2 into tmp2. */
static int t_reduce_scatter (gr_coll_backend_t *b, const void *sendbuf, void *recvbuf,
                             size_t recvcount, gr_dtype_t type, gr_op_t op,
                             double deadline, gr_error_t *errp)
{
    tcp_backend_t *t = (tcp_backend_t *)b;
    size_t es = gr_coll_dtype_size (type), part = recvcount * es;
    const char *in = sendbuf == GR_IN_PLACE ? recvbuf : sendbuf;
    int p = t->size, me = t->rank;

    if (p == 1) {
        if (in != recvbuf)
            memcpy (recvbuf, in, part);
        return 0;
    }
    if (grow (&t->tmp, &t->tmp_size, part > 0 ? part : 1) < 0 ||
        grow (&t->tmp2, &t->tmp2_size, part > 0 ? part : 1) < 0)
        return nomem (errp, part);
    for (int s = 0; s < p - 1; s++) {
        size_t sb = (size_t)((me - s - 1 + 2 * p) % p), rb = (size_t)((me - s - 2 + 2 * p) % p);
        if (ring_move (t, s == 0 ? in + sb * part : t->tmp2, part, t->tmp, part, deadline,
                       errp) < 0)
            return -1;
        gr_coll_reduce (type, op, in + rb * part, t->tmp, t->tmp2, recvcount);
    }
    memcpy (recvbuf, t->tmp2, part);
    if (op == GR_AVG)
        gr_coll_divide (type, recvbuf, recvcount, p);
    return 0;
}

static int t_barrier (gr_coll_backend_t *b, double deadline, gr_error_t *errp)
{
    tcp_backend_t *t = (tcp_backend_t *)b;
    int p = t->size;

    /* An empty message round the ring: the one rank r gets in step s
     * left rank r - s - 1 after it had heard from the s ranks before it,
     * so after p - 1 steps every rank has heard from all. */
    for (int s = 0; s < p - 1; s++)
        if (ring_move (t, NULL, 0, NULL, 0, deadline, errp) < 0)
            return -1;
    return 0;
}

static void t_destroy (gr_coll_backend_t *b)
{
    tcp_backend_t *t = (tcp_backend_t *)b;

    if (!t)
        return;
    free (t->tmp);
    free (t->tmp2);
    free (t);
}

static const gr_coll_ops_t tcp_backend_ops = {
    .name = "tcp",
    .allreduce = t_allreduce,
    .bcast = t_bcast,
    .allgather = t_allgather,
    .reduce_scatter = t_reduce_scatter,
    .barrier = t_barrier,
    .allreduce_many = NULL,
    .destroy = t_destroy,
};

gr_coll_backend_t *gr_coll_tcp_create (gr_net_t *net, gr_error_t *errp)
{
    tcp_backend_t *t = calloc (1, sizeof (*t));

    if (!t) {
        errno = ENOMEM;
        gr_errprintf (errp, "out of memory");
        return NULL;
    }
    t->base.ops = &tcp_backend_ops;
    t->net = net;
    t->rank = gr_net_rank (net);
    t->size = gr_net_size (net);
    return &t->base;
}
