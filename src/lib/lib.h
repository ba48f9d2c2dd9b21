/* libgridrun internals shared by its parts (src/lib/gridrun.c, the
 * collectives in src/coll/, the checkpoints in src/ckpt/ckpt.c).  Nothing
 * here is installed or exported. */
#ifndef GR_LIB_LIB_H
#define GR_LIB_LIB_H

#include <stdarg.h>

#include "gridrun.h"
#include "src/coll/world.h"

/* Record the calling thread's error text (what gr_last_error returns), set
 * errno to err and return -1, so a caller writes
 *     return gr__fail (EIO, "cannot write '%s': %s", path, strerror (e));
 * The text is a sentence for a person: what failed, on which rank, and
 * what to do where there is something to do. */
int gr__fail (int err, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));
int gr__vfail (int err, const char *fmt, va_list ap);

/* Nonzero between gr_init and gr_finalize. */
int gr__initialized (void);

/* The failure domain of every rank of the library's communicator, gathered
 * in gr_init: node index (0..nodes-1) and rack index (0..racks-1).  Used
 * to pick partner ranks for checkpoint copies in another domain.  Arrays
 * of gr_size() entries, owned by the library. */
const int *gr__rank_node (void);
const int *gr__rank_rack (void);

/* The library's ranks (an MPI communicator or a TCP world), owned by the
 * library; NULL before gr_init.  Parts with traffic of their own use a
 * gr_world_dup of it. */
gr_world_t *gr__world (void);

/* Training metrics (metrics.c): every public collective and checkpoint
 * call reports what it did; rank 0 writes them out now and then. */
typedef enum {
    GR__OP_ALLREDUCE = 0,
    GR__OP_BCAST,
    GR__OP_ALLGATHER,
    GR__OP_REDUCE_SCATTER,
    GR__OP_BARRIER,
    GR__OP_FUSION,
    GR__OP_N
} gr__op_t;
typedef enum { GR__CKPT_SAVE = 0, GR__CKPT_WAIT, GR__CKPT_LOAD, GR__CKPT_N } gr__ckpt_op_t;

void gr__metrics_init (int rank, int size, int gpu, const char *backend);
/* bytes: of this rank's buffer (count x element size). */
void gr__metrics_coll (gr__op_t op, size_t bytes, double seconds);
void gr__metrics_ckpt (gr__ckpt_op_t op, double seconds);
/* The last write; then nothing is counted until the next init. */
void gr__metrics_fini (void);
/* Rank 0, in a gridrun task: an event ("checkpoint", "checkpoint_load")
 * in the run's event log, RUN/events.jsonl. */
void gr__metrics_event (const char *event, int64_t step, double seconds, const char *dir);

#endif
