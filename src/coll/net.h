/* A TCP world: the ranks of a program started without MPI, in the
 * environment torchrun defines (RANK, WORLD_SIZE, MASTER_ADDR,
 * MASTER_PORT), as gridrun's group tasks are.  libgridrun runs its
 * collectives and checkpoint agreement over it where there is no MPI job.
 *
 * Rendezvous: rank 0 listens on MASTER_ADDR:MASTER_PORT (that address
 * only, so a group on one host stays on loopback); every other rank
 * connects to it, opens a listener of its own on the local address of that
 * connection (the interface that reaches rank 0, so the one its peers can
 * reach too), and sends its rank and listener address.  Rank 0 sends every
 * rank the table of addresses, and each rank connects to the ranks below
 * it and accepts those above: a full mesh of connections, one per pair.
 * The listeners close once the mesh stands.  A token (the same on every
 * rank: the run and restart) keeps connections of another run or an
 * earlier restart out.
 *
 * Messages: point-to-point, in order per pair, each framed with its
 * length, which must be the length the receiver expects.  One call,
 * gr_net_exchange, moves any number of them at once through poll(), so
 * that no pair of ranks can block each other with sends in both
 * directions.  A failure (a peer that closed its connection because it
 * exited, a framing mismatch, a deadline) leaves messages half moved, so
 * it marks the world broken: every later call fails with ECOMM and the
 * first failure's text.
 *
 * Nothing here is thread-safe: one thread at a time uses a world.
 * Functions returning int return 0, or -1 with errno set and *errp (may be
 * NULL) saying what failed.  Deadlines are absolute times on gr_now()'s
 * clock; INFINITY means none. */
#ifndef GR_COLL_NET_H
#define GR_COLL_NET_H

#include <stddef.h>

#include "src/common/error.h"

typedef struct gr_net gr_net_t;

typedef struct {
    int rank, size;
    const char *master_addr; /* a name or a numeric address of rank 0's host */
    int master_port;         /* 1..65535 */
    const char *token;       /* equal on every rank; NULL is "" */
} gr_net_opts_t;

/* Join the world (every rank calls it).  Waits for the others until the
 * deadline: rank 0 for all to connect, the others for rank 0 to listen.
 * Errors: EINVAL (bad options), EADDRNOTAVAIL (rank 0 is not on
 * MASTER_ADDR's host), EADDRINUSE (MASTER_PORT is taken), ETIMEDOUT,
 * ECOMM, ENOMEM.  Free with gr_net_close. */
gr_net_t *gr_net_open (const gr_net_opts_t *o, double deadline, gr_error_t *errp);

/* Close every connection and free n.  Accepts NULL; keeps errno. */
void gr_net_close (gr_net_t *n);

int gr_net_rank (const gr_net_t *n);
int gr_net_size (const gr_net_t *n);

/* One message: to or from peer (another rank), len bytes at buf. */
typedef struct {
    int peer;
    void *buf;
    size_t len;
} gr_net_msg_t;

/* Send every message of sends and receive every one of recvs, all at
 * once, until all are done or the deadline passes.  A receive takes the
 * next message its peer sends, which must be len bytes long.  At most one
 * send and one receive per peer.  ECOMM on any failure (and the world is
 * broken), ETIMEDOUT past the deadline (broken too). */
int gr_net_exchange (gr_net_t *n, const gr_net_msg_t *sends, int nsend, gr_net_msg_t *recvs,
                     int nrecv, double deadline, gr_error_t *errp);

/* Root sends the len bytes at buf to every other rank, which receive them
 * there: one exchange, errors as its. */
int gr_net_bcast (gr_net_t *n, int root, void *buf, size_t len, double deadline,
                  gr_error_t *errp);

/* Mark n broken with this text (errno err), as a failed exchange does; for
 * layers above that detect a problem of their own. */
int gr_net_break (gr_net_t *n, gr_error_t *errp, int err, const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));

/* Nonzero once broken; its text. */
int gr_net_broken (const gr_net_t *n);
const char *gr_net_why (const gr_net_t *n);

#endif
