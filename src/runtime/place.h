/* The master's view of the failure domains of its workers: which zone,
 * rack and node each rank sits in (from a site file, Slurm's topology
 * address, or one rack per node), which task definitions each rank may
 * run (require:) and prefers (prefer:, locality:), and the quarantine of
 * domains whose tasks keep failing.  Internal to src/runtime.
 */
#ifndef GR_RUNTIME_PLACE_H
#define GR_RUNTIME_PLACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/common/error.h"
#include "src/proto/proto.h"
#include "src/sched/quarantine.h"
#include "src/sched/sched.h"
#include "src/spec/spec.h"
#include "src/topo/site.h"
#include "src/topo/topo.h"

typedef struct gr_place {
    const gr_spec_t *spec;
    gr_cluster_t *cluster;
    int nranks;
    int *rank_host;         /* host index of each rank; -1 for no worker */
    uint32_t *dom;          /* nranks * GR_SCHED_LEVELS */
    uint8_t *req;           /* nranks * ntasks: meets require: */
    uint8_t *pref;          /* nranks * ntasks: meets prefer: and locality: */
    bool any_require;
    bool any_prefer;
    gr_quar_t *quar;        /* NULL unless the spec asks for quarantine */
    gr_level_t qlevel;
} gr_place_t;

/* Build the placement of a run: infos[r] is what rank r reported (rank 0
 * is no worker unless size is 1), site the parsed site file or NULL.
 * Checks what can be known before any task runs: every host in the site
 * file, a require: some node meets, enough domains for every spread.
 * Returns NULL with errp ("SPEC:LINE:COL: ...; what to do") on a user
 * error (errno EINVAL) or ENOMEM. */
gr_place_t *gr__place_create (const gr_spec_t *spec, const gr_worker_info_t *infos,
                              int size, const gr_site_t *site, gr_error_t *errp);
void gr__place_destroy (gr_place_t *p);

/* The domain of rank at level, UINT32_MAX for none. */
uint32_t gr__place_dom (const gr_place_t *p, int rank, gr_level_t level);

/* "node h2 (rack r1, zone default)" for messages. */
const char *gr__place_describe (const gr_place_t *p, gr_level_t level, uint32_t dom,
                                char *buf, size_t len);

#endif
