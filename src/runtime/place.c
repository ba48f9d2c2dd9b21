/* Placement by failure domains: see place.h. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "place.h"

static const gr_dom_level_t topo_level[] = {
    [GR_LEVEL_ZONE] = GR_DOM_ZONE,
    [GR_LEVEL_RACK] = GR_DOM_RACK,
    [GR_LEVEL_NODE] = GR_DOM_NODE,
};

/* The value of label key for host h; zone, rack and node name its domains. */
static const char *label_of (const gr_cluster_t *c, size_t h, const char *key)
{
    for (int l = GR_LEVEL_ZONE; l <= GR_LEVEL_NODE; l++) {
        if (strcmp (key, gr_level_name ((gr_level_t)l)) == 0)
            return gr_cluster_domain_name (c, topo_level[l],
                                           gr_cluster_domain (c, h, topo_level[l]));
    }
    return gr_cluster_label (c, h, key);
}

static bool matches (const gr_cluster_t *c, size_t h, const gr_label_match_t *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *v = label_of (c, h, m[i].key);
        bool any = false;
        for (size_t k = 0; v && k < m[i].nvalues && !any; k++)
            any = strcmp (v, m[i].values[k]) == 0;
        if (!any)
            return false;
    }
    return true;
}

/* Does host h's "data" label (a comma-separated list) name the data set? */
static bool holds_data (const gr_cluster_t *c, size_t h, const char *name)
{
    const char *v = gr_cluster_label (c, h, "data");
    size_t len = strlen (name);
    while (v && *v) {
        while (*v == ' ' || *v == ',')
            v++;
        const char *e = v;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > v && t[-1] == ' ')
            t--;
        if ((size_t)(t - v) == len && memcmp (v, name, len) == 0)
            return true;
        v = e;
    }
    return false;
}

/* "gpu=a100|h100, zone=east" */
static void describe_match (const gr_label_match_t *m, size_t n, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && o < len; i++) {
        o += (size_t)snprintf (buf + o, len - o, "%s%s=", i ? ", " : "", m[i].key);
        for (size_t k = 0; k < m[i].nvalues && o < len; k++)
            o += (size_t)snprintf (buf + o, len - o, "%s%s", k ? "|" : "", m[i].values[k]);
    }
}

static int check_def (gr_place_t *p, const gr_taskdef_t *d, gr_error_t *errp)
{
    const gr_spec_t *s = p->spec;
    size_t nt = s->ntasks;
    size_t ndom = gr_cluster_ndomains (p->cluster, GR_DOM_NODE);
    char what[512], names[512];
    size_t matching = 0;

    for (int r = 0; r < p->nranks; r++)
        matching += p->rank_host[r] >= 0 && p->req[(size_t)r * nt + d->id];
    if (matching == 0) {
        size_t o = 0;
        names[0] = '\0';
        for (size_t h = 0; h < ndom && o < sizeof (names); h++)
            o += (size_t)snprintf (names + o, sizeof (names) - o, "%s%s", h ? ", " : "",
                                   gr_cluster_host (p->cluster, h));
        describe_match (d->require, d->nrequire, what, sizeof (what));
        return gr_errprintf (errp, "%s:%d:%d: task '%s' requires %s, but none of this run's "
                                   "nodes (%s) has it; change require:, or run on nodes that "
                                   "match (labels come from the site file, see gridrun topo)",
                             s->path, d->place_mark.line, d->place_mark.col, d->name, what,
                             names);
    }
    if (d->replicas > 1 && d->spread != GR_LEVEL_NONE) {
        gr_dom_level_t tl = topo_level[d->spread];
        size_t nd = gr_cluster_ndomains (p->cluster, tl), have = 0, o = 0;
        uint8_t *seen = calloc (nd ? nd : 1, 1);
        if (!seen) {
            errno = ENOMEM;
            return gr_errprintf (errp, "out of memory");
        }
        for (int r = 0; r < p->nranks; r++) {
            if (p->rank_host[r] < 0 || !p->req[(size_t)r * nt + d->id])
                continue;
            size_t x = gr_cluster_domain (p->cluster, (size_t)p->rank_host[r], tl);
            if (x < nd && !seen[x]) {
                seen[x] = 1;
                have++;
            }
        }
        names[0] = '\0';
        for (size_t x = 0; x < nd && o < sizeof (names); x++) {
            if (seen[x])
                o += (size_t)snprintf (names + o, sizeof (names) - o, "%s%s", o ? ", " : "",
                                       gr_cluster_domain_name (p->cluster, tl, x));
        }
        free (seen);
        if (have < d->replicas) {
            const char *lv = gr_level_name (d->spread);
            errno = EINVAL;
            return gr_errprintf (errp, "%s:%d:%d: task '%s' wants %u replicas on distinct %ss, "
                                       "but %s %zu %s%s (%s); lower replicas:, spread over a "
                                       "smaller domain, or run on more %ss",
                                 s->path, d->place_mark.line, d->place_mark.col, d->name,
                                 d->replicas, lv,
                                 d->nrequire ? "the nodes it may use are in" : "this run has",
                                 have, lv, have == 1 ? "" : "s", names, lv);
        }
    }
    return 0;
}

gr_place_t *gr__place_create (const gr_spec_t *spec, const gr_worker_info_t *infos,
                              int size, const gr_site_t *site, gr_error_t *errp)
{
    gr_place_t *p = calloc (1, sizeof (*p));
    const char **hosts = NULL, **addrs = NULL;
    size_t nhosts = 0, nt = spec->ntasks;
    int err = ENOMEM;

    if (!p)
        goto nomem;
    p->spec = spec;
    p->nranks = size;
    if (!(p->rank_host = malloc ((size_t)size * sizeof (int)))
        || !(p->dom = malloc ((size_t)size * GR_SCHED_LEVELS * sizeof (uint32_t)))
        || !(p->req = calloc ((size_t)size * nt + 1, 1))
        || !(p->pref = calloc ((size_t)size * nt + 1, 1))
        || !(hosts = calloc ((size_t)size, sizeof (*hosts)))
        || !(addrs = calloc ((size_t)size, sizeof (*addrs))))
        goto nomem;
    /* The distinct hosts of the workers, in rank order. */
    for (int r = 0; r < size; r++) {
        size_t h;
        p->rank_host[r] = -1;
        if (r == 0 && size > 1)
            continue;
        for (h = 0; h < nhosts && strcmp (hosts[h], infos[r].host) != 0; h++)
            ;
        if (h == nhosts) {
            hosts[nhosts] = infos[r].host;
            addrs[nhosts] = infos[r].topo_addr[0] ? infos[r].topo_addr : NULL;
            nhosts++;
        }
        p->rank_host[r] = (int)h;
    }
    if (!(p->cluster = gr_cluster_build (hosts, nhosts, site, addrs,
                                         getenv ("SLURM_TOPOLOGY_ADDR_PATTERN"), errp))) {
        err = errno;
        goto error;
    }
    for (int r = 0; r < size; r++) {
        for (int l = 0; l < GR_SCHED_LEVELS; l++) {
            p->dom[(size_t)r * GR_SCHED_LEVELS + (size_t)l] =
                p->rank_host[r] < 0 ? UINT32_MAX
                                    : (uint32_t)gr_cluster_domain (p->cluster,
                                                                   (size_t)p->rank_host[r],
                                                                   topo_level[l]);
        }
    }
    for (size_t i = 0; i < nt; i++) {
        const gr_taskdef_t *d = &spec->tasks[i];
        p->any_require |= d->nrequire > 0;
        p->any_prefer |= d->nprefer > 0 || d->locality;
        for (int r = 0; r < size; r++) {
            if (p->rank_host[r] < 0)
                continue;
            size_t h = (size_t)p->rank_host[r];
            p->req[(size_t)r * nt + i] = matches (p->cluster, h, d->require, d->nrequire);
            p->pref[(size_t)r * nt + i] =
                matches (p->cluster, h, d->prefer, d->nprefer)
                && (!d->locality || holds_data (p->cluster, h, d->locality));
        }
        if (check_def (p, d, errp) < 0) {
            err = errno == ENOMEM ? ENOMEM : EINVAL;
            goto error;
        }
    }
    if (spec->quarantine.enabled) {
        p->qlevel = spec->quarantine.level;
        if (!(p->quar = gr_quar_create (&spec->quarantine,
                                        gr_cluster_ndomains (p->cluster,
                                                             topo_level[p->qlevel]))))
            goto nomem;
    }
    free (hosts);
    free (addrs);
    return p;
nomem:
    gr_errprintf (errp, "out of memory placing tasks");
error:
    free (hosts);
    free (addrs);
    gr__place_destroy (p);
    errno = err;
    return NULL;
}

void gr__place_destroy (gr_place_t *p)
{
    if (!p)
        return;
    int saved = errno;
    gr_cluster_destroy (p->cluster);
    gr_quar_destroy (p->quar);
    free (p->rank_host);
    free (p->dom);
    free (p->req);
    free (p->pref);
    free (p);
    errno = saved;
}

uint32_t gr__place_dom (const gr_place_t *p, int rank, gr_level_t level)
{
    if (!p || rank < 0 || rank >= p->nranks || level == GR_LEVEL_NONE)
        return UINT32_MAX;
    return p->dom[(size_t)rank * GR_SCHED_LEVELS + (size_t)level];
}

const char *gr__place_describe (const gr_place_t *p, gr_level_t level, uint32_t dom,
                                char *buf, size_t len)
{
    const char *name = level == GR_LEVEL_NONE
                           ? NULL
                           : gr_cluster_domain_name (p->cluster, topo_level[level], dom);
    snprintf (buf, len, "%s %s", gr_level_name (level), name ? name : "?");
    return buf;
}
