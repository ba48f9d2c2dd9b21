/* gridrun topo: the failure domains as gridrun sees them.  Without
 * mpirun it shows this node (or an hwloc XML file) and the cluster tree of
 * the hosts given; under mpirun (or srun --mpi=pmix) every rank reports
 * its host and rank 0 shows which rank sits where.  MPI stays in this
 * file: the rest of the topology code never starts it. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mpi.h>

#include "src/common/error.h"
#include "src/common/slurm.h"
#include "src/runtime/runtime.h"
#include "src/spec/site_load.h"
#include "src/topo/topo.h"
#include "cmd.h"

#define HOST_MAX 256
#define ADDR_MAX 256

static const char *usage_line =
    "usage: gridrun topo [--xml FILE] [--site FILE] [--hosts LIST]\n";

static const char *help_text =
    "  -x, --xml FILE    show the node of an hwloc XML topology (lstopo --of xml)\n"
    "                    instead of this machine\n"
    "  -s, --site FILE   the site topology file (zones, racks, nodes, labels)\n"
    "  -H, --hosts LIST  the hosts of the cluster tree, like n[001-004],g01\n"
    "                    (default: this host; under mpirun or srun: the ranks'\n"
    "                    hosts, by their Slurm node names under Slurm)\n"
    "Without --site, SLURM_TOPOLOGY_ADDR and SLURM_TOPOLOGY_ADDR_PATTERN place\n"
    "this host; else each host is its own rack.  See doc/topology.md.\n";

static const struct option longopts[] = {
    {"xml", required_argument, NULL, 'x'},
    {"site", required_argument, NULL, 's'},
    {"hosts", required_argument, NULL, 'H'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* This node's name: the Slurm node name under Slurm, as gridrun run names
 * its workers' nodes. */
static void local_host (char *buf, size_t size)
{
    gr_node_name (buf, size);
}

/* Print the cluster of hosts (and the ranks on them) and a node tree.
 * Returns an exit code. */
static int show (const char *xml, const gr_site_t *site, const char *const *hosts,
                 size_t nhosts, const char *const *addrs, const int *rank_host,
                 size_t nranks)
{
    gr_error_t err;
    gr_cluster_t *c;
    gr_topo_node_t *t;
    char here[HOST_MAX];

    if (!(t = gr_topo_node_load (xml, &err))) {
        fprintf (stderr, "gridrun: %s\n", err.text);
        return xml ? GR_EXIT_USAGE : GR_EXIT_INTERNAL;
    }
    if (!(c = gr_cluster_build (hosts, nhosts, site, addrs,
                                getenv ("SLURM_TOPOLOGY_ADDR_PATTERN"), &err))) {
        fprintf (stderr, "gridrun: %s\n", err.text);
        gr_topo_node_destroy (t);
        return errno == ENOMEM ? GR_EXIT_INTERNAL : GR_EXIT_USAGE;
    }
    local_host (here, sizeof (here));
    gr_cluster_print (c, rank_host, nranks, stdout);
    printf ("\n%s%s:\n", xml ? "topology of " : "this node, ", xml ? xml : here);
    gr_topo_node_print (t, stdout, "  ");
    gr_cluster_destroy (c);
    gr_topo_node_destroy (t);
    if (fflush (stdout) != 0) {
        fprintf (stderr, "gridrun: cannot write the output: %s\n", strerror (errno));
        return GR_EXIT_INTERNAL;
    }
    return 0;
}

/* Under mpirun: gather every rank's host name and Slurm address to rank
 * 0, which prints. */
static int topo_mpi (const char *xml, const gr_site_t *site)
{
    char mine[HOST_MAX + ADDR_MAX] = "";
    char *all = NULL, **hosts = NULL;
    const char **addrs = NULL;
    int *rank_host = NULL;
    int rank, size, rc = GR_EXIT_INTERNAL;
    size_t nhosts = 0;
    const char *addr = getenv ("SLURM_TOPOLOGY_ADDR");

    if (MPI_Init (NULL, NULL) != MPI_SUCCESS) {
        fprintf (stderr, "gridrun: MPI_Init failed\n");
        return GR_EXIT_INTERNAL;
    }
    MPI_Comm_rank (MPI_COMM_WORLD, &rank);
    MPI_Comm_size (MPI_COMM_WORLD, &size);
    local_host (mine, HOST_MAX);
    snprintf (mine + HOST_MAX, ADDR_MAX, "%s", addr ? addr : "");
    if (rank == 0 && !(all = malloc ((size_t)size * sizeof (mine)))) {
        fprintf (stderr, "gridrun: out of memory\n");
        MPI_Abort (MPI_COMM_WORLD, GR_EXIT_INTERNAL);
    }
    MPI_Gather (mine, (int)sizeof (mine), MPI_CHAR, all, (int)sizeof (mine), MPI_CHAR, 0,
                MPI_COMM_WORLD);
    if (rank != 0) {
        rc = 0;
        goto out;
    }
    if (!(hosts = calloc ((size_t)size, sizeof (*hosts)))
        || !(addrs = calloc ((size_t)size, sizeof (*addrs)))
        || !(rank_host = calloc ((size_t)size, sizeof (*rank_host)))) {
        fprintf (stderr, "gridrun: out of memory\n");
        goto out;
    }
    /* Distinct hosts in the order of their first rank. */
    for (int r = 0; r < size; r++) {
        char *h = all + (size_t)r * sizeof (mine);
        size_t i;
        h[HOST_MAX - 1] = '\0';
        h[HOST_MAX + ADDR_MAX - 1] = '\0';
        for (i = 0; i < nhosts && strcmp (hosts[i], h) != 0; i++)
            ;
        if (i == nhosts) {
            hosts[nhosts] = h;
            addrs[nhosts] = h[HOST_MAX] ? h + HOST_MAX : NULL;
            nhosts++;
        }
        rank_host[r] = (int)i;
    }
    rc = show (xml, site, (const char *const *)hosts, nhosts, addrs, rank_host,
               (size_t)size);
out:
    free (all);
    free (hosts);
    free (addrs);
    free (rank_host);
    MPI_Finalize ();
    return rc;
}

int gr_cmd_topo (int argc, char **argv)
{
    const char *xml = NULL, *site_path = NULL, *hostlist = NULL;
    gr_site_t *site = NULL;
    gr_error_t err;
    char **hosts = NULL;
    size_t nhosts = 0;
    const char **addrs = NULL;
    char here[HOST_MAX];
    char *one[1];
    int c, rc = GR_EXIT_USAGE;

    optind = 1;
    while ((c = getopt_long (argc, argv, "x:s:H:h", longopts, NULL)) != -1) {
        switch (c) {
            case 'x':
                xml = optarg;
                break;
            case 's':
                site_path = optarg;
                break;
            case 'H':
                hostlist = optarg;
                break;
            case 'h':
                printf ("%s%s", usage_line, help_text);
                return 0;
            default:
                fprintf (stderr, "gridrun: %sRun 'gridrun topo --help' for the options.\n",
                         usage_line);
                return GR_EXIT_USAGE;
        }
    }
    if (optind != argc) {
        fprintf (stderr, "gridrun: topo takes no argument '%s'; %s", argv[optind],
                 usage_line);
        return GR_EXIT_USAGE;
    }
    if (site_path && gr_site_load (site_path, &site, &err) < 0) {
        fprintf (stderr, "gridrun: %s\n", err.text);
        return errno == ENOMEM ? GR_EXIT_INTERNAL : GR_EXIT_USAGE;
    }
    /* mpirun sets the first in every rank, srun --mpi=pmix the second; a
     * plain start never starts MPI. */
    if (getenv ("OMPI_COMM_WORLD_SIZE") || getenv ("PMIX_RANK")) {
        if (hostlist) {
            fprintf (stderr, "gridrun: --hosts is for use without mpirun or srun: there "
                             "the hosts are those of the ranks\n");
            gr_site_destroy (site);
            return GR_EXIT_USAGE;
        }
        rc = topo_mpi (xml, site);
        gr_site_destroy (site);
        return rc;
    }
    if (hostlist) {
        if (gr_hostlist_expand (hostlist, GR_SITE_MAX_NODES, &hosts, &nhosts, &err) < 0) {
            fprintf (stderr, "gridrun: --hosts: %s\n", err.text);
            goto out;
        }
    }
    else {
        local_host (here, sizeof (here));
        one[0] = here;
        hosts = one;
        nhosts = 1;
    }
    /* SLURM_TOPOLOGY_ADDR describes this host: it applies to the host
     * list's entry for this host, or whose name is the address's last
     * part. */
    if (getenv ("SLURM_TOPOLOGY_ADDR") && !site) {
        const char *addr = getenv ("SLURM_TOPOLOGY_ADDR");
        const char *last = strrchr (addr, '.');
        char me[HOST_MAX];

        last = last ? last + 1 : addr;
        local_host (me, sizeof (me));
        if (!(addrs = calloc (nhosts, sizeof (*addrs)))) {
            rc = GR_EXIT_INTERNAL;
            goto out;
        }
        for (size_t i = 0; i < nhosts; i++) {
            if (strcmp (hosts[i], me) == 0 || strcmp (hosts[i], last) == 0)
                addrs[i] = addr;
        }
    }
    rc = show (xml, site, (const char *const *)hosts, nhosts, addrs, NULL, 0);
out:
    if (hosts != one)
        gr_hostlist_free (hosts, nhosts);
    free (addrs);
    gr_site_destroy (site);
    return rc;
}
