/* Topology.  hwloc lives behind this module alone.
 *
 * For now this answers what a worker needs to size itself: how many
 * processing units this process may run on and how much memory the node
 * has.  The failure-domain tree (zone > rack > node > socket > GPU) grows
 * here too.
 */
#ifndef GR_TOPO_TOPO_H
#define GR_TOPO_TOPO_H

#include <stdint.h>

#include "src/common/error.h"

typedef struct gr_node_caps {
    uint32_t pus;     /* processing units this process may use (cpuset) */
    uint32_t cores;   /* physical cores among them */
    uint64_t mem;     /* bytes of memory on the node */
} gr_node_caps_t;

/* Discover the local node.  Returns 0, or -1 with errp set. */
int gr_topo_local_caps (gr_node_caps_t *caps, gr_error_t *errp);

#endif
