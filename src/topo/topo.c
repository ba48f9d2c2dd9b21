#include "config.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <hwloc.h>

#include "topo.h"

int gr_topo_local_caps (gr_node_caps_t *caps, gr_error_t *errp)
{
    hwloc_topology_t topo;
    hwloc_bitmap_t set = NULL;
    int n;

    memset (caps, 0, sizeof (*caps));
    if (hwloc_topology_init (&topo) < 0)
        return gr_errprintf (errp, "hwloc: cannot initialize topology: %s",
                             strerror (errno));
    if (hwloc_topology_load (topo) < 0) {
        gr_errprintf (errp, "hwloc: cannot load topology: %s", strerror (errno));
        goto error;
    }
    /* The cpuset this process is bound to respects cgroups, taskset and
     * the binding mpirun applied, so workers never count PUs they cannot
     * use. */
    if (!(set = hwloc_bitmap_alloc ()))
        goto nomem;
    if (hwloc_get_cpubind (topo, set, HWLOC_CPUBIND_PROCESS) < 0)
        hwloc_bitmap_copy (set, hwloc_topology_get_allowed_cpuset (topo));
    else
        hwloc_bitmap_and (set, set, hwloc_topology_get_allowed_cpuset (topo));
    n = hwloc_bitmap_weight (set);
    caps->pus = n > 0 ? (uint32_t)n : 1;
    n = hwloc_get_nbobjs_inside_cpuset_by_type (topo, set, HWLOC_OBJ_CORE);
    caps->cores = n > 0 ? (uint32_t)n : caps->pus;
    hwloc_obj_t root = hwloc_get_root_obj (topo);
    caps->mem = root->total_memory;
    if (caps->mem == 0) {
        long pages = sysconf (_SC_PHYS_PAGES);
        long psize = sysconf (_SC_PAGESIZE);
        if (pages > 0 && psize > 0)
            caps->mem = (uint64_t)pages * (uint64_t)psize;
    }
    hwloc_bitmap_free (set);
    hwloc_topology_destroy (topo);
    return 0;
nomem:
    errno = ENOMEM;
    gr_errprintf (errp, "hwloc: out of memory");
error:
    hwloc_bitmap_free (set);
    hwloc_topology_destroy (topo);
    return -1;
}
