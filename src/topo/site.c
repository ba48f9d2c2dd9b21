/* The parsed site file: lookup and freeing.  The parser is in src/spec
 * (libyaml lives there), this half has no dependencies so that topo and
 * its tests need no YAML. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "site.h"

const gr_site_node_t *gr_site_find_node (const gr_site_t *site, const char *name)
{
    size_t lo = 0, hi;

    if (!site || !name || !site->byname)
        return NULL;
    hi = site->nnodes;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const gr_site_node_t *n = &site->nodes[site->byname[mid]];
        int r = strcmp (name, n->name);
        if (r == 0)
            return n;
        if (r < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

static void labels_free (gr_site_labels_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free (l->v[i].key);
        free (l->v[i].value);
    }
    free (l->v);
}

void gr_site_destroy (gr_site_t *site)
{
    int saved = errno;

    if (!site)
        return;
    for (size_t i = 0; i < site->nzones; i++) {
        free (site->zones[i].name);
        labels_free (&site->zones[i].labels);
    }
    for (size_t i = 0; i < site->nracks; i++) {
        free (site->racks[i].name);
        labels_free (&site->racks[i].labels);
    }
    for (size_t i = 0; i < site->nnodes; i++) {
        free (site->nodes[i].name);
        labels_free (&site->nodes[i].labels);
    }
    free (site->zones);
    free (site->racks);
    free (site->nodes);
    free (site->byname);
    free (site->path);
    free (site);
    errno = saved;
}
