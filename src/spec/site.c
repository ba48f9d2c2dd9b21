/* The site topology file: YAML through libyaml into gr_site_t.
 *
 * As for job specs, the YAML becomes a parse tree of our own (ytree.h)
 * that refuses aliases, caps depth and size, finds duplicate keys and
 * keeps each value's position.  The tree is then checked and turned into
 * gr_site_t.  Every error names FILE:LINE:COL (1-based), says what is
 * wrong and, after a semicolon, what to do.
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/common/error.h"
#include "src/common/fs.h"
#include "src/common/grow.h"
#include "src/common/hash.h"
#include "site_load.h"
#include "ytree.h"

/* A site file never nests deeper than zones > racks > nodes > labels. */
#define MAX_DEPTH 16
#define MAX_YAML_NODES 1000000
#define MAX_STRING 1024

/* ------------------------------------------------------------------ */
/* Host lists. */

typedef struct range {
    unsigned long lo, hi;
    int width;
} range_t;

/* One bracket group of a name: its ranges. */
typedef struct group {
    range_t *r;
    size_t n;
    unsigned long count;
} group_t;

static bool host_char (char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')
           || ch == '-' || ch == '.' || ch == '_';
}

static int hl_err (gr_error_t *errp, const char *list, const char *why)
{
    errno = EINVAL;
    return gr_errprintf (errp, "host list '%.200s': %s; write names like n001 or ranges "
                               "like n[001-008,012]",
                         list, why);
}

/* Parse the digits at *p (at most 9) into *v and their count into *len. */
static int parse_num (const char **p, unsigned long *v, int *len)
{
    const char *s = *p;
    unsigned long x = 0;
    int k = 0;

    while (*s >= '0' && *s <= '9') {
        if (++k > 9)
            return -1;
        x = x * 10 + (unsigned long)(*s - '0');
        s++;
    }
    if (k == 0)
        return -1;
    *p = s;
    *v = x;
    *len = k;
    return 0;
}

/* Parse the group that starts after '[' at *p up to and past ']'. */
static int parse_group (const char *list, const char **p, group_t *g, gr_error_t *errp)
{
    const char *s = *p;
    size_t cap = 0;

    g->r = NULL;
    g->n = 0;
    g->count = 0;
    for (;;) {
        range_t r;
        int llo, lhi;

        if (*s == ']' || *s == ',' || *s == '\0')
            return hl_err (errp, list, *s == '\0' ? "a '[' has no matching ']'"
                                                  : "an empty range inside [...]");
        if (parse_num (&s, &r.lo, &llo) < 0)
            return hl_err (errp, list, "a range inside [...] must be numbers of at most "
                                       "9 digits, like 1-4 or 007");
        r.hi = r.lo;
        r.width = llo > 1 && s[-llo] == '0' ? llo : 0;
        if (*s == '-') {
            s++;
            if (parse_num (&s, &r.hi, &lhi) < 0)
                return hl_err (errp, list, "a range 'a-b' needs a number after '-'");
            if (r.hi < r.lo)
                return hl_err (errp, list, "a range goes down (the end is below the "
                                           "start)");
        }
        range_t *nr = gr_grow (g->r, &cap, g->n, sizeof (*nr), 4);
        if (!nr) {
            errno = ENOMEM;
            return gr_errprintf (errp, "out of memory");
        }
        g->r = nr;
        g->r[g->n++] = r;
        g->count += r.hi - r.lo + 1;
        if (g->count > 1000000000UL)
            g->count = 1000000000UL;
        if (*s == ',') {
            s++;
            continue;
        }
        if (*s == ']') {
            *p = s + 1;
            return 0;
        }
        return hl_err (errp, list, *s == '\0' ? "a '[' has no matching ']'"
                                              : "inside [...] only numbers, '-' and ',' "
                                                "may appear");
    }
}

typedef struct hl {
    char **names;
    size_t n, cap, max;
} hl_t;

static int hl_push (hl_t *h, char *name)
{
    char **nn = gr_grow (h->names, &h->cap, h->n, sizeof (*nn), 16);
    if (!nn) {
        free (name);
        errno = ENOMEM;
        return -1;
    }
    h->names = nn;
    h->names[h->n++] = name;
    return 0;
}

/* Expand one name (no top-level commas) of len bytes at item. */
static int expand_item (const char *list, const char *item, size_t len, hl_t *h,
                        gr_error_t *errp)
{
    /* Segments alternate: literal text, then a group, ... */
    const char *lit[64];
    size_t litlen[64];
    group_t groups[63];
    size_t ngroups = 0, total = 1, outlen = 0;
    const char *s = item, *end = item + len;
    size_t *idx = NULL;
    unsigned long *cur = NULL;
    char *buf = NULL;
    int rc = -1;

    if (len == 0)
        return hl_err (errp, list, "an empty name (two commas in a row, or one at an end)");
    for (;;) {
        const char *start = s;
        while (s < end && *s != '[') {
            if (*s == ']') {
                rc = hl_err (errp, list, "a ']' without '['");
                goto out;
            }
            if (!host_char (*s)) {
                char why[96];
                snprintf (why, sizeof (why), "'%c' cannot appear in a host name",
                          *s);
                rc = hl_err (errp, list, why);
                goto out;
            }
            s++;
        }
        lit[ngroups] = start;
        litlen[ngroups] = (size_t)(s - start);
        outlen += litlen[ngroups];
        if (s == end)
            break;
        if (ngroups == 63) {
            rc = hl_err (errp, list, "too many [...] groups in one name");
            goto out;
        }
        s++;
        if (parse_group (list, &s, &groups[ngroups], errp) < 0) {
            ngroups++;
            goto out;
        }
        if (s > end) {
            ngroups++;
            rc = hl_err (errp, list, "a '[' has no matching ']'");
            goto out;
        }
        outlen += 10;
        if (groups[ngroups].count > h->max || total > h->max / groups[ngroups].count) {
            ngroups++;
            goto toomany;
        }
        total *= groups[ngroups].count;
        ngroups++;
    }
    if (total > h->max - h->n)
        goto toomany;
    if (!(idx = calloc (ngroups + 1, sizeof (*idx)))
        || !(cur = calloc (ngroups + 1, sizeof (*cur))) || !(buf = malloc (outlen + 1)))
        goto nomem;
    for (size_t g = 0; g < ngroups; g++)
        cur[g] = groups[g].r[0].lo;
    for (;;) {
        size_t o = 0;
        char *name;

        for (size_t g = 0; g <= ngroups; g++) {
            memcpy (buf + o, lit[g], litlen[g]);
            o += litlen[g];
            if (g < ngroups)
                o += (size_t)sprintf (buf + o, "%0*lu", groups[g].r[idx[g]].width, cur[g]);
        }
        buf[o] = '\0';
        if (!(name = strdup (buf)) || hl_push (h, name) < 0)
            goto nomem;
        /* Advance the odometer, the last group fastest. */
        size_t g = ngroups;
        while (g > 0) {
            group_t *gr = &groups[g - 1];
            if (cur[g - 1] < gr->r[idx[g - 1]].hi) {
                cur[g - 1]++;
                break;
            }
            if (idx[g - 1] + 1 < gr->n) {
                idx[g - 1]++;
                cur[g - 1] = gr->r[idx[g - 1]].lo;
                break;
            }
            idx[g - 1] = 0;
            cur[g - 1] = gr->r[0].lo;
            g--;
        }
        if (g == 0)
            break;
    }
    rc = 0;
    goto out;
toomany:
    errno = E2BIG;
    rc = gr_errprintf (errp, "host list '%.200s' expands to more than %zu names; split "
                             "it, or list fewer nodes",
                       list, h->max);
    goto out;
nomem:
    errno = ENOMEM;
    rc = gr_errprintf (errp, "out of memory");
out:
    for (size_t g = 0; g < ngroups; g++)
        free (groups[g].r);
    free (idx);
    free (cur);
    free (buf);
    return rc;
}

void gr_hostlist_free (char **names, size_t n)
{
    int saved = errno;

    if (names) {
        for (size_t i = 0; i < n; i++)
            free (names[i]);
        free (names);
    }
    errno = saved;
}

int gr_hostlist_expand (const char *list, size_t max, char ***namesp, size_t *np,
                        gr_error_t *errp)
{
    hl_t h = {.max = max};
    const char *s = list;

    if (!list || !namesp || !np) {
        errno = EINVAL;
        return gr_errprintf (errp, "gr_hostlist_expand: invalid arguments");
    }
    for (;;) {
        const char *start = s;
        int depth = 0;

        /* Commas inside brackets separate ranges, not names. */
        while (*s && (depth > 0 || *s != ',')) {
            if (*s == '[')
                depth++;
            else if (*s == ']' && depth > 0)
                depth--;
            s++;
        }
        if (expand_item (list, start, (size_t)(s - start), &h, errp) < 0)
            goto error;
        if (*s == '\0')
            break;
        s++;
    }
    *namesp = h.names;
    *np = h.n;
    return 0;
error:
    gr_hostlist_free (h.names, h.n);
    return -1;
}

/* ------------------------------------------------------------------ */
/* The parse. */

static const gr__ydoc_t site_doc = {
    .noun = "site file",
    .max_depth = MAX_DEPTH,
    .max_nodes = MAX_YAML_NODES,
    .nodes_hint = "use host ranges like n[0001-4096] for long lists of nodes",
    .alias_hint = "",
    .tab_hint = "YAML does not allow tabs for indentation; indent with spaces, not tabs",
    .max_string = MAX_STRING,
    .max_string_name = "",
};

/* A set of names (zone or rack names: indexes into the site's zones or
 * racks), an open-addressing hash table, so that a file of very many
 * racks is checked for duplicates in time that grows with its size, not
 * with its square. */
typedef struct nameset {
    size_t *slot;          /* index + 1; 0 is empty */
    size_t cap;            /* a power of two, or 0 */
    size_t n;
} nameset_t;

typedef struct pctx {
    gr__yparse_t y;        /* the tree, and where errors go */
    gr_site_t *site;
    size_t zcap, rcap, ncap;
    nameset_t zone_names, rack_names;
} pctx_t;

/* The name of entry i of a set: a zone's or a rack's. */
typedef const char *(*name_of_f) (const gr_site_t *s, size_t i);

static const char *zone_name (const gr_site_t *s, size_t i)
{
    return s->zones[i].name;
}

static const char *rack_name (const gr_site_t *s, size_t i)
{
    return s->racks[i].name;
}

/* Add entry i to set.  Returns the index of the entry already there with
 * the same name, SIZE_MAX when there was none, or SIZE_MAX - 1 when out of
 * memory. */
static size_t nameset_add (nameset_t *set, const gr_site_t *s, name_of_f name_of, size_t i)
{
    if (2 * (set->n + 1) > set->cap) {
        size_t cap = set->cap ? 2 * set->cap : 64;
        size_t *slot = calloc (cap, sizeof (*slot));
        if (!slot)
            return SIZE_MAX - 1;
        for (size_t k = 0; k < set->cap; k++) {
            if (!set->slot[k])
                continue;
            const char *nm = name_of (s, set->slot[k] - 1);
            size_t h = (size_t)gr_hash64 (nm, strlen (nm)) & (cap - 1);
            while (slot[h])
                h = (h + 1) & (cap - 1);
            slot[h] = set->slot[k];
        }
        free (set->slot);
        set->slot = slot;
        set->cap = cap;
    }
    const char *name = name_of (s, i);
    size_t h = (size_t)gr_hash64 (name, strlen (name)) & (set->cap - 1);
    for (; set->slot[h]; h = (h + 1) & (set->cap - 1)) {
        if (strcmp (name_of (s, set->slot[h] - 1), name) == 0)
            return set->slot[h] - 1;
    }
    set->slot[h] = i + 1;
    set->n++;
    return SIZE_MAX;
}

/* ------------------------------------------------------------------ */
/* Helpers over the tree. */

/* Zone, rack and label names: letters, digits, '-', '.' and '_'. */
static int check_name (pctx_t *c, const gr__ynode_t *n, const char *what)
{
    if (gr__ywant_string (&c->y, n, what) < 0)
        return -1;
    for (const char *s = n->str; *s; s++) {
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9')
              || *s == '-' || *s == '.' || *s == '_'))
            return gr__yerr (&c->y, n, "%s '%s' may only hold letters, digits, '-', '.' and '_'; "
                                       "rename it",
                              what, n->str);
    }
    return 0;
}

/* The name: of a zone or rack mapping m; `what` is "zone 2" and the like. */
static int get_name (pctx_t *c, const gr__ynode_t *m, const char *what, const char *kindname,
                     char **out)
{
    gr__ynode_t *v = gr__ymap_get (m, "name", NULL);
    char buf[64];

    if (!v)
        return gr__yerr (&c->y, m, "%s has no 'name:'; add 'name: ...' to it", what);
    snprintf (buf, sizeof (buf), "%s name", kindname);
    if (check_name (c, v, buf) < 0)
        return -1;
    if (!(*out = strdup (v->str)))
        return gr__ynomem (&c->y);
    return 0;
}

static int parse_labels (pctx_t *c, const gr__ynode_t *m, gr_site_labels_t *l)
{
    gr__ynode_t *key = NULL, *v = gr__ymap_get (m, "labels", &key);

    if (!v)
        return 0;
    if (gr__ywant (&c->y, v, GR__YMAP, "labels", "{cost: low, gpu: a100}") < 0)
        return -1;
    if (v->n == 0)
        return 0;
    if (!(l->v = calloc (v->n / 2, sizeof (*l->v))))
        return gr__ynomem (&c->y);
    for (gr__ynode_t *k = v->first; k; k = k->next->next) {
        char what[MAX_STRING + 16];
        gr_site_label_t *lab = &l->v[l->n];

        if (check_name (c, k, "label") < 0)
            return -1;
        snprintf (what, sizeof (what), "label %s", k->str);
        if (gr__ywant_string (&c->y, k->next, what) < 0)
            return -1;
        l->n++;
        if (!(lab->key = strdup (k->str)) || !(lab->value = strdup (k->next->str)))
            return gr__ynomem (&c->y);
    }
    return 0;
}

static int add_node (pctx_t *c, const char *name, size_t rack, const gr__ynode_t *at,
                     gr_site_node_t **np)
{
    gr_site_t *s = c->site;
    gr_site_node_t *n;

    gr_site_node_t *nn = gr_grow (s->nodes, &c->ncap, s->nnodes, sizeof (*nn), 64);
    if (!nn)
        return gr__ynomem (&c->y);
    s->nodes = nn;
    n = &s->nodes[s->nnodes];
    memset (n, 0, sizeof (*n));
    if (!(n->name = strdup (name)))
        return gr__ynomem (&c->y);
    s->nnodes++;
    n->rack = rack;
    n->line = at->mark.line;
    n->col = at->mark.col;
    *np = n;
    return 0;
}

static const char *const top_keys[] = {"zones", NULL};
static const char *const zone_keys[] = {"name", "labels", "racks", NULL};
static const char *const rack_keys[] = {"name", "labels", "nodes", NULL};
static const char *const node_keys[] = {"name", "labels", NULL};

/* One entry of a rack's nodes: a host list, or {name: HOSTLIST, labels}. */
static int parse_node_entry (pctx_t *c, const gr__ynode_t *e, size_t rack)
{
    const gr__ynode_t *namen = e;
    const gr__ynode_t *m = NULL;
    char **names = NULL;
    size_t nnames = 0, first = c->site->nnodes;
    gr_error_t herr;
    gr_site_labels_t labels = {0};

    if (e->type == GR__YMAP) {
        m = e;
        if (gr__ycheck_keys (&c->y, m, node_keys, "a node") < 0)
            return -1;
        if (!(namen = gr__ymap_get (m, "name", NULL)))
            return gr__yerr (&c->y, m, "a node has no 'name:'; add 'name: HOST' (a host list like "
                                       "n[01-04] names several)");
    }
    else if (e->type != GR__YSCALAR)
        return gr__yerr (&c->y, e, "a node: expected a host name or a mapping with name: and "
                                   "labels:, got a list; list the nodes directly under nodes:");
    if (gr__ywant_string (&c->y, namen, "node name") < 0)
        return -1;
    if (gr_hostlist_expand (namen->str, GR_SITE_MAX_NODES - c->site->nnodes, &names,
                            &nnames, &herr) < 0) {
        if (errno == ENOMEM)
            return gr__ynomem (&c->y);
        return gr__yerr (&c->y, namen, "%s", herr.text);
    }
    for (size_t i = 0; i < nnames; i++) {
        gr_site_node_t *n;
        if (add_node (c, names[i], rack, namen, &n) < 0)
            goto error;
    }
    gr_hostlist_free (names, nnames);
    names = NULL;
    if (m) {
        /* Each node of a range gets its own copy of the labels, so the
         * data stays plain (one owner per string). */
        if (parse_labels (c, m, &labels) < 0)
            goto error;
        for (size_t i = first; i < c->site->nnodes && labels.n; i++) {
            gr_site_labels_t *l = &c->site->nodes[i].labels;
            if (!(l->v = calloc (labels.n, sizeof (*l->v))))
                goto nomem;
            for (size_t j = 0; j < labels.n; j++) {
                l->n++;
                if (!(l->v[j].key = strdup (labels.v[j].key))
                    || !(l->v[j].value = strdup (labels.v[j].value)))
                    goto nomem;
            }
        }
    }
    for (size_t j = 0; j < labels.n; j++) {
        free (labels.v[j].key);
        free (labels.v[j].value);
    }
    free (labels.v);
    return 0;
nomem:
    gr__ynomem (&c->y);
error:
    gr_hostlist_free (names, nnames);
    for (size_t j = 0; j < labels.n; j++) {
        free (labels.v[j].key);
        free (labels.v[j].value);
    }
    free (labels.v);
    return -1;
}

static int parse_rack (pctx_t *c, const gr__ynode_t *m, size_t zone, size_t index)
{
    gr_site_t *s = c->site;
    gr_site_rack_t *r;
    gr__ynode_t *nodes, *key = NULL;
    char what[64];
    size_t self;

    snprintf (what, sizeof (what), "rack %zu of zone '%s'", index + 1, s->zones[zone].name);
    if (gr__ywant (&c->y, m, GR__YMAP, what, "{name: r1, nodes: [n001, n002]}") < 0
             || gr__ycheck_keys (&c->y, m, rack_keys, "a rack") < 0)
        return -1;
    gr_site_rack_t *nr = gr_grow (s->racks, &c->rcap, s->nracks, sizeof (*nr), 16);
    if (!nr)
        return gr__ynomem (&c->y);
    s->racks = nr;
    self = s->nracks;
    r = &s->racks[self];
    memset (r, 0, sizeof (*r));
    s->nracks++;
    r->zone = zone;
    r->line = m->mark.line;
    r->col = m->mark.col;
    if (get_name (c, m, what, "rack", &r->name) < 0)
        return -1;
    size_t first = nameset_add (&c->rack_names, s, rack_name, self);
    if (first == SIZE_MAX - 1)
        return gr__ynomem (&c->y);
    if (first != SIZE_MAX)
        return gr__yerr (&c->y, gr__ymap_get (m, "name", NULL),
                          "duplicate rack name '%s' (first at line %d); rack names must be "
                          "unique in the file, so rename one",
                          r->name, s->racks[first].line);
    if (parse_labels (c, m, &r->labels) < 0)
        return -1;
    if (!(nodes = gr__ymap_get (m, "nodes", &key)))
        return gr__yerr (&c->y, m, "rack '%s' has no 'nodes:'; add 'nodes: [HOST, ...]'", r->name);
    if (gr__ywant (&c->y, nodes, GR__YSEQ, "nodes", "[n001, n002, \"n[003-008]\"]") < 0)
        return -1;
    for (const gr__ynode_t *e = nodes->first; e; e = e->next) {
        if (parse_node_entry (c, e, self) < 0)
            return -1;
    }
    return 0;
}

static int parse_zone (pctx_t *c, const gr__ynode_t *m, size_t index)
{
    gr_site_t *s = c->site;
    gr_site_zone_t *z;
    gr__ynode_t *racks, *key = NULL;
    char what[64];
    size_t self, nr = 0;

    snprintf (what, sizeof (what), "zone %zu", index + 1);
    if (gr__ywant (&c->y, m, GR__YMAP, what, "{name: east, racks: [...]}") < 0
             || gr__ycheck_keys (&c->y, m, zone_keys, "a zone") < 0)
        return -1;
    gr_site_zone_t *nz = gr_grow (s->zones, &c->zcap, s->nzones, sizeof (*nz), 8);
    if (!nz)
        return gr__ynomem (&c->y);
    s->zones = nz;
    self = s->nzones;
    z = &s->zones[self];
    memset (z, 0, sizeof (*z));
    s->nzones++;
    z->line = m->mark.line;
    z->col = m->mark.col;
    if (get_name (c, m, what, "zone", &z->name) < 0)
        return -1;
    size_t first = nameset_add (&c->zone_names, s, zone_name, self);
    if (first == SIZE_MAX - 1)
        return gr__ynomem (&c->y);
    if (first != SIZE_MAX)
        return gr__yerr (&c->y, gr__ymap_get (m, "name", NULL),
                          "duplicate zone name '%s' (first at line %d); rename one or merge "
                          "their racks",
                          z->name, s->zones[first].line);
    if (parse_labels (c, m, &z->labels) < 0)
        return -1;
    if (!(racks = gr__ymap_get (m, "racks", &key)))
        return gr__yerr (&c->y, m, "zone '%s' has no 'racks:'; add 'racks:' with a list of racks",
                          z->name);
    if (gr__ywant (&c->y, racks, GR__YSEQ, "racks", "[{name: r1, nodes: [n001]}]") < 0)
        return -1;
    for (const gr__ynode_t *r = racks->first; r; r = r->next) {
        if (parse_rack (c, r, self, nr++) < 0)
            return -1;
    }
    return 0;
}

typedef struct byname {
    const char *name;
    size_t idx;
} byname_t;

static int byname_cmp (const void *a, const void *b)
{
    const byname_t *x = a, *y = b;
    int r = strcmp (x->name, y->name);

    if (r)
        return r;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Sort the nodes by name for lookups; a name twice is an error at the
 * later entry. */
static int index_nodes (pctx_t *c)
{
    gr_site_t *s = c->site;
    byname_t *v;
    int rc = 0;

    if (s->nnodes == 0)
        return 0;
    if (!(v = malloc (s->nnodes * sizeof (*v)))
        || !(s->byname = malloc (s->nnodes * sizeof (*s->byname)))) {
        free (v);
        return gr__ynomem (&c->y);
    }
    for (size_t i = 0; i < s->nnodes; i++) {
        v[i].name = s->nodes[i].name;
        v[i].idx = i;
    }
    qsort (v, s->nnodes, sizeof (*v), byname_cmp);
    for (size_t i = 0; i < s->nnodes; i++) {
        s->byname[i] = v[i].idx;
        if (i > 0 && strcmp (v[i].name, v[i - 1].name) == 0) {
            const gr_site_node_t *a = &s->nodes[v[i - 1].idx], *b = &s->nodes[v[i].idx];
            if (a->rack == b->rack)
                rc = gr__yerr_at (&c->y, b->line, b->col,
                                   "node '%s' is listed twice in rack '%s' (first at line %d); "
                                   "remove one",
                                   b->name, s->racks[b->rack].name, a->line);
            else
                rc = gr__yerr_at (&c->y, b->line, b->col,
                                   "node '%s' is in rack '%s' and in rack '%s' (line %d); a "
                                   "node belongs to one rack, so remove it from one of them",
                                   b->name, s->racks[b->rack].name, s->racks[a->rack].name,
                                   a->line);
            break;
        }
    }
    free (v);
    return rc;
}

static int parse_top (pctx_t *c)
{
    gr__ynode_t *zones, *key = NULL;
    size_t i = 0;

    if (!c->y.root || gr__yis_null (c->y.root))
        return gr__yerr_at (&c->y, 1, 1, "the site file is empty; it needs 'zones:' with a list of "
                                         "zones (see share/gridrun/topology.yaml)");
    if (gr__ywant (&c->y, c->y.root, GR__YMAP, "the site file", "'zones: [...]' at the top") < 0
             || gr__ycheck_keys (&c->y, c->y.root, top_keys, "the site file") < 0)
        return -1;
    if (!(zones = gr__ymap_get (c->y.root, "zones", &key)))
        return gr__yerr (&c->y, c->y.root,
                         "the site file has no 'zones:'; add 'zones:' with a list of "
                         "zones (see share/gridrun/topology.yaml)");
    if (gr__ywant (&c->y, zones, GR__YSEQ, "zones", "[{name: east, racks: [...]}]") < 0)
        return -1;
    if (zones->n == 0)
        return gr__yerr (&c->y, zones, "zones: is empty; list at least one zone");
    for (const gr__ynode_t *z = zones->first; z; z = z->next) {
        if (parse_zone (c, z, i++) < 0)
            return -1;
    }
    return index_nodes (c);
}

/* Free a partly built site.  gr_site_destroy() lives in src/topo, which
 * libspec does not link against, so this mirror of it stays here. */
static void site_free (gr_site_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nzones; i++) {
        free (s->zones[i].name);
        for (size_t j = 0; j < s->zones[i].labels.n; j++) {
            free (s->zones[i].labels.v[j].key);
            free (s->zones[i].labels.v[j].value);
        }
        free (s->zones[i].labels.v);
    }
    for (size_t i = 0; i < s->nracks; i++) {
        free (s->racks[i].name);
        for (size_t j = 0; j < s->racks[i].labels.n; j++) {
            free (s->racks[i].labels.v[j].key);
            free (s->racks[i].labels.v[j].value);
        }
        free (s->racks[i].labels.v);
    }
    for (size_t i = 0; i < s->nnodes; i++) {
        free (s->nodes[i].name);
        for (size_t j = 0; j < s->nodes[i].labels.n; j++) {
            free (s->nodes[i].labels.v[j].key);
            free (s->nodes[i].labels.v[j].value);
        }
        free (s->nodes[i].labels.v);
    }
    free (s->zones);
    free (s->racks);
    free (s->nodes);
    free (s->byname);
    free (s->path);
    free (s);
}

int gr_site_parse (const char *text, size_t len, const char *name, gr_site_t **sitep,
                   gr_error_t *errp)
{
    pctx_t c = {0};
    int saved;

    if (!text || !name || !sitep) {
        errno = EINVAL;
        return gr_errprintf (errp, "gr_site_parse: invalid arguments");
    }
    c.y.doc = &site_doc;
    c.y.file = name;
    c.y.errp = errp;
    if (len > GR_SITE_MAX_BYTES) {
        errno = EFBIG;
        return gr_errprintf_at (errp, name, 1, 1, "the site file is %zu bytes, over the "
                                "limit of %u; use host ranges like n[0001-4096]",
                                len, GR_SITE_MAX_BYTES);
    }
    if (!(c.site = calloc (1, sizeof (*c.site))) || !(c.site->path = strdup (name))) {
        gr__ynomem (&c.y);
        goto error;
    }
    if (gr__ybuild (&c.y, text, len) < 0 || parse_top (&c) < 0)
        goto error;
    gr__yfree (&c.y);
    free (c.zone_names.slot);
    free (c.rack_names.slot);
    *sitep = c.site;
    return 0;
error:
    saved = errno ? errno : EINVAL;
    gr__yfree (&c.y);
    free (c.zone_names.slot);
    free (c.rack_names.slot);
    site_free (c.site);
    errno = saved;
    return -1;
}

int gr_site_load (const char *path, gr_site_t **sitep, gr_error_t *errp)
{
    char *text = NULL;
    size_t len = 0;
    gr_error_t ferr;
    int rc;

    if (!path || !sitep) {
        errno = EINVAL;
        return gr_errprintf (errp, "gr_site_load: invalid arguments");
    }
    if (gr_read_file (path, GR_SITE_MAX_BYTES, &text, &len, &ferr) < 0) {
        if (errno == EFBIG)
            return gr_errprintf (errp, "%s: the site file is larger than %u bytes; use "
                                       "host ranges like n[0001-4096]",
                                 path, GR_SITE_MAX_BYTES);
        return gr_errprintf (errp, "%s: cannot read the site file: %s", path, ferr.text);
    }
    rc = gr_site_parse (text, len, path, sitep, errp);
    free (text);
    return rc;
}
