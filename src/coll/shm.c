/* Fusion chunks in memory that the ranks of one node share.
 *
 * A chunk is a memfd: its creator maps it, and the other ranks of the node
 * open it through /proc/PID/fd/FD once they have exchanged (pid, fd) in a
 * collective (coll_mpi.c does the exchange, this file the mapping).  No
 * name is ever made, so nothing is left behind when a rank dies: the
 * memory goes with the last mapping.
 *
 * Layout of each rank's segment: one page of header (the rank's arrival
 * count and the element count of the operation it arrived for), then the
 * data.  An allreduce of the chunk is
 *
 *   arrive, wait for every rank's arrival       (every rank's data ready)
 *   reduce block `me` of the chunk across the ranks into rank 0's copy,
 *   in rank order, and copy the result into every other rank's copy
 *   arrive, wait for every rank's arrival       (every block reduced)
 *
 * Where the ranks span nodes, the node's ranks reduce into rank 0's copy
 * only, the nodes' first ranks reduce those between nodes (by messages,
 * coll_mpi.c), and the others take the result from rank 0's copy.
 * Blocks are whole cache lines, so no two ranks write one line.  The
 * result is the same bits on every rank (one rank computes each element,
 * always in the order rank 0, 1, ...).  Waiting is coll_mpi.c's (against
 * the deadline): this file only says whether everyone has arrived.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shm.h"

#define HEADER 4096
#define LINE 64

typedef struct {
    _Atomic uint64_t arrived; /* arrivals so far */
    _Atomic uint64_t count;   /* elements of the operation arrived for */
} header_t;

struct gr_coll_seg {
    char *mine; /* this rank's mapping: header, then data */
    size_t cap; /* data bytes */
    int fd;     /* the memfd, open until the peers mapped it (-1 then) */
    int shared; /* 1 memfd, 0 private memory (no memfd here) */
    int state;  /* 0 not linked yet, 1 linked, -1 never (ring instead) */
    int n, me;  /* ranks linked, this one's index */
    char **peer; /* every rank's mapping, peer[me] == mine */
    uint64_t gen;
};

static header_t *hdr (char *base)
{
    return (header_t *)base;
}

gr_coll_seg_t *gr_coll_seg_create (size_t cap, gr_error_t *errp)
{
    gr_coll_seg_t *s = calloc (1, sizeof (*s));
    size_t len = HEADER + cap;

    if (!s || cap > SIZE_MAX - HEADER) {
        free (s);
        errno = s ? EINVAL : ENOMEM;
        gr_errprintf (errp, "cannot make a fusion chunk of %zu bytes", cap);
        return NULL;
    }
    s->cap = cap;
    s->fd = memfd_create ("gridrun-fusion", MFD_CLOEXEC);
    if (s->fd >= 0 && ftruncate (s->fd, (off_t)len) == 0) {
        s->mine = mmap (NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
        s->shared = s->mine != MAP_FAILED;
    }
    if (!s->shared) {
        /* No memfd (or no room for it): private memory, reduced by
         * messages like any buffer. */
        if (s->fd >= 0)
            close (s->fd);
        s->fd = -1;
        s->mine = mmap (NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                        0);
        if (s->mine == MAP_FAILED) {
            gr_errprintf (errp, "cannot map %zu bytes for fusion tensors: %s", len,
                          strerror (errno));
            free (s);
            return NULL;
        }
        s->state = -1;
    }
    return s;
}

void *gr_coll_seg_data (const gr_coll_seg_t *s)
{
    return s->mine + HEADER;
}

int gr_coll_seg_state (const gr_coll_seg_t *s)
{
    return s->state;
}

void gr_coll_seg_id (const gr_coll_seg_t *s, int64_t id[3])
{
    id[0] = s->shared ? (int64_t)getpid () : -1;
    id[1] = s->fd;
    id[2] = (int64_t)s->cap;
}

int gr_coll_seg_map (gr_coll_seg_t *s, int n, int me, const int64_t *ids, gr_error_t *errp)
{
    size_t len = HEADER + s->cap;

    if (!(s->peer = calloc ((size_t)n, sizeof (*s->peer)))) {
        errno = ENOMEM;
        return gr_errprintf (errp, "out of memory");
    }
    s->n = n;
    s->me = me;
    for (int k = 0; k < n; k++) {
        const int64_t *id = ids + 3 * k;
        char path[64];
        int fd;

        if (k == me) {
            s->peer[k] = s->mine;
            continue;
        }
        if (id[0] < 0 || (uint64_t)id[2] != s->cap) {
            errno = id[0] < 0 ? ENOTSUP : EINVAL;
            return gr_errprintf (errp,
                                 id[0] < 0 ? "rank %d has no shared fusion memory"
                                           : "rank %d's fusion chunk differs in size: "
                                             "the ranks allocated different tensors",
                                 k);
        }
        snprintf (path, sizeof (path), "/proc/%lld/fd/%lld", (long long)id[0],
                  (long long)id[1]);
        if ((fd = open (path, O_RDWR | O_CLOEXEC)) < 0)
            return gr_errprintf (errp, "cannot open %s: %s", path, strerror (errno));
        s->peer[k] = mmap (NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close (fd);
        if (s->peer[k] == MAP_FAILED) {
            s->peer[k] = NULL;
            return gr_errprintf (errp, "cannot map %s: %s", path, strerror (errno));
        }
    }
    return 0;
}

static void unmap_peers (gr_coll_seg_t *s)
{
    for (int k = 0; s->peer && k < s->n; k++) {
        if (k != s->me && s->peer[k])
            munmap (s->peer[k], HEADER + s->cap);
    }
    free (s->peer);
    s->peer = NULL;
}

void gr_coll_seg_linked (gr_coll_seg_t *s, int ok)
{
    if (!ok)
        unmap_peers (s);
    s->state = ok ? 1 : -1;
    if (s->fd >= 0)
        close (s->fd);
    s->fd = -1;
}

void gr_coll_seg_arrive (gr_coll_seg_t *s, size_t count)
{
    header_t *h = hdr (s->mine);

    atomic_store_explicit (&h->count, count, memory_order_relaxed);
    atomic_store_explicit (&h->arrived, ++s->gen, memory_order_release);
}

int gr_coll_seg_all_arrived (const gr_coll_seg_t *s)
{
    for (int k = 0; k < s->n; k++) {
        if (atomic_load_explicit (&hdr (s->peer[k])->arrived, memory_order_acquire) <
            s->gen)
            return 0;
    }
    return 1;
}

int gr_coll_seg_counts_agree (const gr_coll_seg_t *s, size_t count)
{
    for (int k = 0; k < s->n; k++) {
        if (atomic_load_explicit (&hdr (s->peer[k])->count, memory_order_relaxed) != count)
            return 0;
    }
    return 1;
}

void gr_coll_seg_reduce (gr_coll_seg_t *s, size_t count, gr_dtype_t type, gr_op_t op,
                         int divisor, int spread)
{
    size_t es = gr_coll_dtype_size (type);
    size_t lines = (count * es + LINE - 1) / LINE, off, len;

    gr_coll_block (lines, s->n, s->me, &off, &len);
    off *= LINE;
    len *= LINE;
    if (off >= count * es)
        return;
    if (off + len > count * es)
        len = count * es - off;
    char *acc = s->peer[0] + HEADER + off;
    for (int k = 1; k < s->n; k++)
        gr_coll_reduce (type, op, acc, s->peer[k] + HEADER + off, acc, len / es);
    if (op == GR_AVG && divisor > 1)
        gr_coll_divide (type, acc, len / es, divisor);
    for (int k = 1; spread && k < s->n; k++)
        memcpy (s->peer[k] + HEADER + off, acc, len);
}

void gr_coll_seg_take_first (gr_coll_seg_t *s, size_t bytes)
{
    if (s->me != 0)
        memcpy (s->mine + HEADER, s->peer[0] + HEADER, bytes);
}

void gr_coll_seg_destroy (gr_coll_seg_t *s)
{
    if (!s)
        return;
    unmap_peers (s);
    munmap (s->mine, HEADER + s->cap);
    if (s->fd >= 0)
        close (s->fd);
    free (s);
}
