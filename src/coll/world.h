/* The ranks libgridrun works among: an MPI communicator, or the TCP world
 * of net.h when the program runs without MPI (a gridrun group task, or
 * anything giving torchrun's environment).  Everything in libgridrun that
 * is not a collective of gridrun.h (the choice of backend, the nodes and
 * failure domains, the checkpoints' agreement and partner copies) talks
 * through this, so that it works the same over both.
 *
 * The operations move bytes and block until done: every rank calls them
 * in the same order, as with MPI.  Over MPI they are MPI's blocking calls
 * on a duplicate of the communicator (errors returned, not fatal).  Over
 * TCP they wait at most the world's timeout (gr_world_set_timeout), and a
 * failure breaks the world for good (net.h).  Each returns 0, or -1 with
 * errno set and *errp (may be NULL) saying what failed. */
#ifndef GR_COLL_WORLD_H
#define GR_COLL_WORLD_H

#include <stddef.h>

#include <mpi.h>

#include "net.h"
#include "src/common/error.h"
#include "src/include/gridrun.h"

typedef struct gr_world gr_world_t;

/* Over a duplicate of comm (collective over comm). */
gr_world_t *gr_world_mpi (MPI_Comm comm, gr_error_t *errp);
/* Over net, which the world owns from then on (also when this fails). */
gr_world_t *gr_world_net (gr_net_t *net, gr_error_t *errp);
/* Another world over the same ranks, for a part of the library with
 * traffic of its own: over MPI a new duplicate (collective); over TCP the
 * same connections, shared (the messages of the two stay in order because
 * one thread uses them).  Free each with gr_world_destroy. */
gr_world_t *gr_world_dup (gr_world_t *w, gr_error_t *errp);
/* Accepts NULL; keeps errno. */
void gr_world_destroy (gr_world_t *w);

int gr_world_rank (const gr_world_t *w);
int gr_world_size (const gr_world_t *w);
/* The communicator (MPI_COMM_NULL over TCP), or the TCP world (NULL over
 * MPI); both still owned by w. */
MPI_Comm gr_world_comm (const gr_world_t *w);
gr_net_t *gr_world_netof (const gr_world_t *w);

/* How long one operation may wait over TCP, in seconds; 0: no limit (the
 * default). */
void gr_world_set_timeout (gr_world_t *w, double seconds);

/* root's len bytes at buf to every rank. */
int gr_world_bcast (gr_world_t *w, void *buf, size_t len, int root, gr_error_t *errp);
/* Every rank's len bytes, in rank order, into all (size * len bytes; used
 * at root only for gather). */
int gr_world_gather (gr_world_t *w, const void *mine, size_t len, void *all, int root,
                     gr_error_t *errp);
int gr_world_allgather (gr_world_t *w, const void *mine, size_t len, void *all,
                        gr_error_t *errp);
/* The same with len bytes from each rank, lens[r] of rank r, placed one
 * after the other in rank order: gatherv needs lens at root only,
 * allgatherv on every rank. */
int gr_world_gatherv (gr_world_t *w, const void *mine, size_t len, void *all,
                      const size_t *lens, int root, gr_error_t *errp);
int gr_world_allgatherv (gr_world_t *w, const void *mine, size_t len, void *all,
                         const size_t *lens, gr_error_t *errp);
/* out[i] = in[i] of every rank reduced with op (GR_SUM, GR_MIN or GR_MAX);
 * out and in may be the same. */
int gr_world_allreduce_int (gr_world_t *w, const int *in, int *out, int n, gr_op_t op,
                            gr_error_t *errp);
/* Point-to-point messages, all moved at once (net.h's gr_net_exchange). */
int gr_world_exchange (gr_world_t *w, const gr_net_msg_t *sends, int nsend,
                       gr_net_msg_t *recvs, int nrecv, gr_error_t *errp);

#endif
