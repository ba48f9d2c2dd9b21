/* Topology.  hwloc lives behind this module alone.
 *
 * Three things live here:
 *
 *  - what a worker needs to size itself (gr_topo_local_caps);
 *  - the inside of one node from hwloc (gr_topo_node_t): packages, NUMA
 *    nodes, cores, PUs and GPUs with the cores nearest them, a picker that
 *    chooses cores and GPUs near each other, and binding;
 *  - the failure domains between nodes (gr_cluster_t): zone > rack > node,
 *    from a site file (src/topo/site.h), else SLURM_TOPOLOGY_ADDR, else
 *    one rack per node.
 *
 * Cores, NUMA nodes, packages and GPUs are numbered by hwloc's logical
 * index: 0..n-1 in topology order, so "core 3" means the same thing in a
 * picker's answer, in gr_topo_node_print and in lstopo's "Core L#3".
 */
#ifndef GR_TOPO_TOPO_H
#define GR_TOPO_TOPO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "src/common/error.h"
#include "site.h"

typedef struct gr_node_caps {
    uint32_t pus;     /* processing units this process may use (cpuset) */
    uint32_t cores;   /* physical cores among them */
    uint64_t mem;     /* bytes of memory on the node */
} gr_node_caps_t;

/* Discover the local node.  Returns 0, or -1 with errp set. */
int gr_topo_local_caps (gr_node_caps_t *caps, gr_error_t *errp);

/* ------------------------------------------------------------------ */
/* One node. */

typedef struct gr_topo_node gr_topo_node_t;

typedef struct gr_topo_gpu {
    int index;        /* CUDA/NVML index (cuda2 -> 2), else order of discovery */
    char name[64];    /* OS device name ("cuda0", "nvml0"), or "gpuN" for a
                         bare PCI device */
    char model[64];   /* "NVIDIA A100-SXM4-40GB", or "" when hwloc has none */
    char busid[16];   /* PCI bus id "0000:17:00.0", or "" */
    int package;      /* the package it hangs off, or -1 (the machine) */
    int numa;         /* the NUMA node it is local to, or -1 (several) */
    uint32_t *cores;  /* nearest cores, ascending */
    size_t ncores;
} gr_topo_gpu_t;

/* Load the topology of this machine (xml_path NULL) or of an hwloc XML
 * file (as written by `lstopo --of xml`).  I/O discovery is on, so GPUs
 * are found: hwloc's CUDA OS devices (cuda0 ...), else NVML ones (nvml0
 * ...), else PCI devices of display class 0x03xx from NVIDIA or AMD.  For
 * this machine only the PUs this process is allowed to use (cgroups) are
 * counted.  Returns the topology (free it with gr_topo_node_destroy), or
 * NULL with errno set (ENOENT, EINVAL for a file hwloc cannot read,
 * ENOMEM) and errp naming the file. */
gr_topo_node_t *gr_topo_node_load (const char *xml_path, gr_error_t *errp);
/* Accepts NULL; keeps errno. */
void gr_topo_node_destroy (gr_topo_node_t *t);

size_t gr_topo_node_npackages (const gr_topo_node_t *t);
size_t gr_topo_node_nnumas (const gr_topo_node_t *t);
size_t gr_topo_node_ncores (const gr_topo_node_t *t);
size_t gr_topo_node_npus (const gr_topo_node_t *t);
/* The package and NUMA node of core (a logical index < ncores), or -1 for
 * a core out of range.  A core always sits in exactly one of each. */
int gr_topo_node_core_package (const gr_topo_node_t *t, size_t core);
int gr_topo_node_core_numa (const gr_topo_node_t *t, size_t core);
/* The GPUs, ordered by index; *gpusp points into t (valid until
 * gr_topo_node_destroy) and may be NULL when there are none. */
size_t gr_topo_node_gpus (const gr_topo_node_t *t, const gr_topo_gpu_t **gpusp);

/* Choose gpus free GPUs and cpus free cores for one task.  core_busy and
 * gpu_busy (one byte per core / GPU, nonzero = taken; NULL = all free)
 * say what other tasks hold.  GPUs are taken from one package when
 * possible, preferring one whose nearest cores have room for the task;
 * cores are then the free cores nearest the chosen GPUs, then those in the
 * same NUMA node, then the same package, then any.  Without GPUs the cores
 * come from the one NUMA node, else the one package, with the fewest free
 * cores that still fit (so big holes stay for big tasks), else from the
 * package with the most free cores first.  cores_out (cpus entries) and
 * gpus_out (gpus entries) get logical indexes, ascending.  Returns 0, or
 * -1 with errno EAGAIN when too few are free (outputs untouched) or
 * EINVAL. */
int gr_topo_node_pick (const gr_topo_node_t *t, const uint8_t *core_busy,
                       const uint8_t *gpu_busy, uint32_t cpus, uint32_t gpus,
                       uint32_t *cores_out, uint32_t *gpus_out);

/* The OS numbers of the PUs of n cores as a list for taskset -c or
 * sched_setaffinity: "0-3,16-19".  Returns 0, or -1 with errno ERANGE
 * (buf too small) or EINVAL (a core out of range). */
int gr_topo_node_cpulist (const gr_topo_node_t *t, const uint32_t *cores, size_t n,
                          char *buf, size_t size);
/* Bind the calling process (all its threads) to the PUs of n cores.  Only
 * for a topology of this machine: one loaded from XML fails with ENOSYS.
 * It allocates, so in a child of a threaded process call it before exec
 * only where malloc is safe, or pass gr_topo_node_cpulist's string to the
 * child instead.  Returns 0 or -1 with errno. */
int gr_topo_node_bind_cores (const gr_topo_node_t *t, const uint32_t *cores, size_t n);

/* The cores (logical indexes, ascending) all of whose PUs this process
 * may run on: its binding, e.g. from mpirun --bind-to core.  cores must
 * hold ncores entries; *np gets the count.  For a topology read from XML
 * every core counts.  Returns 0 or -1 with errno. */
int gr_topo_node_bound_cores (const gr_topo_node_t *t, uint32_t *cores, size_t *np);

/* Print the node for people, each line starting with indent:
 *   node: 2 packages, 2 NUMA nodes, 16 cores, 32 PUs, 4 GPUs
 *     package 0: cores 0-7
 *       numa 0: cores 0-7
 *         gpu 0 cuda0 NVIDIA A100-SXM4-40GB (0000:17:00.0): near cores 0-7
 * Consecutive numbers are written as ranges, as in Linux cpulists.
 * Returns 0, or -1 with errno when writing fails. */
int gr_topo_node_print (const gr_topo_node_t *t, FILE *out, const char *indent);

/* ------------------------------------------------------------------ */
/* Failure domains between nodes. */

typedef enum {
    GR_DOM_ZONE = 0,
    GR_DOM_RACK = 1,
    GR_DOM_NODE = 2,
} gr_dom_level_t;

#define GR_DOM_LEVELS 3

typedef enum {
    GR_CLUSTER_SITE = 0,    /* a site topology file */
    GR_CLUSTER_SLURM = 1,   /* SLURM_TOPOLOGY_ADDR (at least one host) */
    GR_CLUSTER_DEFAULT = 2, /* each host its own rack in zone "default" */
} gr_cluster_source_t;

typedef struct gr_cluster gr_cluster_t;

/* Build the tree over the distinct host names of a run (hosts[0..nhosts),
 * host i becomes node domain i).
 *
 *  - With a site file (site not NULL) every host must be in it, under its
 *    full name or its short name (up to the first '.'); zones, racks and
 *    labels come from it.
 *  - Else with Slurm addresses: slurm_addrs[i] (may be NULL, or hold NULL
 *    entries) is host i's SLURM_TOPOLOGY_ADDR, such as "s0.s3.node7",
 *    read with slurm_pattern (SLURM_TOPOLOGY_ADDR_PATTERN, such as
 *    "switch.switch.node"; NULL means as many "switch" as needed before
 *    "node").  The switch right above the node is its rack, the one above
 *    that its zone; with fewer levels the zone is "default" and, with no
 *    switch at all, the rack is the host.  Slurm sets these variables for
 *    the local node only, so a caller gathers them from every rank.
 *  - Hosts that get nothing from either are each their own rack in zone
 *    "default".
 *
 * Domains are numbered from 0 at each level in the order of the site file
 * (zones, racks) or of first appearance among hosts; only domains holding
 * a host of the run are counted.  Returns the tree (free it with
 * gr_cluster_destroy; it copies what it needs from site), or NULL with
 * errno (EINVAL, ENOMEM) and errp saying what is wrong. */
gr_cluster_t *gr_cluster_build (const char *const *hosts, size_t nhosts,
                                const gr_site_t *site, const char *const *slurm_addrs,
                                const char *slurm_pattern, gr_error_t *errp);
/* Accepts NULL; keeps errno. */
void gr_cluster_destroy (gr_cluster_t *c);

gr_cluster_source_t gr_cluster_source (const gr_cluster_t *c);
size_t gr_cluster_nhosts (const gr_cluster_t *c);
/* The name of host i as given to gr_cluster_build. */
const char *gr_cluster_host (const gr_cluster_t *c, size_t host);
/* How many domains of a level hold hosts of the run. */
size_t gr_cluster_ndomains (const gr_cluster_t *c, gr_dom_level_t level);
/* The domain of host i at a level (< ndomains), or SIZE_MAX when host or
 * level is out of range. */
size_t gr_cluster_domain (const gr_cluster_t *c, size_t host, gr_dom_level_t level);
/* The name of domain id at a level, or NULL when out of range.  Valid
 * until gr_cluster_destroy. */
const char *gr_cluster_domain_name (const gr_cluster_t *c, gr_dom_level_t level,
                                    size_t id);
/* The value of label key for host i: the node's own, else its rack's,
 * else its zone's; NULL when none has it.  Valid until
 * gr_cluster_destroy. */
const char *gr_cluster_label (const gr_cluster_t *c, size_t host, const char *key);

/* Print the tree for people:
 *   cluster: 2 zones, 3 racks, 4 nodes (site file FILE)
 *   zone east [cost=standard]
 *     rack r1 [storage=lustre-a]
 *       node n001: ranks 0,1
 * rank_host (nranks entries: the host index of each rank) may be NULL, and
 * then no ranks are shown.  Returns 0, or -1 with errno. */
int gr_cluster_print (const gr_cluster_t *c, const int *rank_host, size_t nranks,
                      FILE *out);

#endif
