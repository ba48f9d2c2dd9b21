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

#endif
