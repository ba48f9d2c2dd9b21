/* A site topology file, parsed: the zones, racks and nodes of a cluster
 * with their labels, as plain data.  gr_site_load() (src/spec/site_load.h)
 * fills it from YAML; topo reads it (gr_cluster_build) and frees it.
 * Nothing here knows YAML.
 *
 * Every string is owned by the gr_site_t and freed by gr_site_destroy().
 */
#ifndef GR_TOPO_SITE_H
#define GR_TOPO_SITE_H

#include <stddef.h>

typedef struct gr_site_label {
    char *key;
    char *value;
} gr_site_label_t;

typedef struct gr_site_labels {
    gr_site_label_t *v;
    size_t n;
} gr_site_labels_t;

typedef struct gr_site_zone {
    char *name;
    gr_site_labels_t labels;
    int line, col;            /* 1-based position in the file */
} gr_site_zone_t;

typedef struct gr_site_rack {
    char *name;
    size_t zone;              /* index into zones */
    gr_site_labels_t labels;
    int line, col;
} gr_site_rack_t;

typedef struct gr_site_node {
    char *name;               /* one host, ranges already expanded */
    size_t rack;              /* index into racks */
    gr_site_labels_t labels;
    int line, col;            /* of the entry that named it */
} gr_site_node_t;

typedef struct gr_site {
    char *path;               /* the file, for messages */
    gr_site_zone_t *zones;
    size_t nzones;
    gr_site_rack_t *racks;
    size_t nracks;
    gr_site_node_t *nodes;    /* in file order */
    size_t nnodes;
    size_t *byname;           /* node indexes sorted by name (strcmp), so
                                 lookups are binary searches */
} gr_site_t;

/* The node named name, or NULL. */
const gr_site_node_t *gr_site_find_node (const gr_site_t *site, const char *name);

/* Accepts NULL; keeps errno. */
void gr_site_destroy (gr_site_t *site);

#endif
