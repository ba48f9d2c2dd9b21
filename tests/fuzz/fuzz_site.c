/* Fuzz the site topology file: gr_site_parse on any bytes and, for a file
 * that parses, what the master does with it: find nodes by name and build
 * the cluster tree over some of them (labels, domain names, the printed
 * tree).  The same bytes also go to gr_hostlist_expand as one host list.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "src/spec/site_load.h"
#include "src/topo/site.h"
#include "src/topo/topo.h"
#include "fuzz.h"

#define NAME "/fuzz/site.yaml"
#define MAX_HOSTS 8

static FILE *devnull;

static void check_site (const gr_site_t *site)
{
    const char *hosts[MAX_HOSTS];
    size_t nhosts = 0;
    gr_error_t e;

    for (size_t i = 0; i < site->nnodes; i++) {
        const gr_site_node_t *n = &site->nodes[i];
        GR_FUZZ_ASSERT (gr_site_find_node (site, n->name) == n);
        GR_FUZZ_ASSERT (n->rack < site->nracks);
        GR_FUZZ_ASSERT (site->racks[n->rack].zone < site->nzones);
        if (nhosts < MAX_HOSTS)
            hosts[nhosts++] = n->name;
    }
    if (nhosts == 0)
        return;
    gr_cluster_t *c = gr_cluster_build (hosts, nhosts, site, NULL, NULL, &e);
    if (!c) {
        fprintf (stderr, "cluster: %s\n", e.text);
        GR_FUZZ_ASSERT (!"the nodes of a site file do not make a cluster");
    }
    GR_FUZZ_ASSERT (gr_cluster_nhosts (c) == nhosts);
    for (size_t h = 0; h < nhosts; h++) {
        const gr_site_node_t *n = gr_site_find_node (site, hosts[h]);
        for (int l = 0; l < GR_DOM_LEVELS; l++) {
            size_t id = gr_cluster_domain (c, h, (gr_dom_level_t)l);
            GR_FUZZ_ASSERT (id < gr_cluster_ndomains (c, (gr_dom_level_t)l));
            GR_FUZZ_ASSERT (gr_cluster_domain_name (c, (gr_dom_level_t)l, id) != NULL);
        }
        for (size_t k = 0; k < n->labels.n; k++) {
            const char *v = gr_cluster_label (c, h, n->labels.v[k].key);
            GR_FUZZ_ASSERT (v != NULL);
        }
        (void)gr_cluster_label (c, h, "zone");
    }
    int rank_host[2 * MAX_HOSTS];
    for (size_t r = 0; r < 2 * nhosts; r++)
        rank_host[r] = (int)(r % nhosts);
    GR_FUZZ_ASSERT (gr_cluster_print (c, rank_host, 2 * nhosts, devnull) == 0);
    gr_cluster_destroy (c);
}

static void check_hostlist (const uint8_t *data, size_t size)
{
    char *list = malloc (size + 1);
    char **names = NULL;
    size_t n = 0;
    gr_error_t e;

    GR_FUZZ_ASSERT (list != NULL);
    memcpy (list, data, size);
    list[size] = '\0';
    if (gr_hostlist_expand (list, 4096, &names, &n, &e) == 0) {
        GR_FUZZ_ASSERT (n <= 4096);
        for (size_t i = 0; i < n; i++)
            GR_FUZZ_ASSERT (names[i][0] != '\0');
        gr_hostlist_free (names, n);
    } else {
        GR_FUZZ_ASSERT (e.text[0] != '\0');
    }
    free (list);
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    gr_site_t *site = NULL;
    gr_error_t e;

    if (!devnull)
        GR_FUZZ_ASSERT ((devnull = fopen ("/dev/null", "w")) != NULL);
    if (gr_site_parse ((const char *)data, size, NAME, &site, &e) == 0) {
        check_site (site);
        gr_site_destroy (site);
    } else if (strncmp (e.text, NAME ":", sizeof (NAME)) != 0) {
        fprintf (stderr, "error without a place: %s\n", e.text);
        GR_FUZZ_ASSERT (!"an error that does not name the site file");
    }
    check_hostlist (data, size);
    return 0;
}
