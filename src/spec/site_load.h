/* Reading a site topology file (YAML) into gr_site_t, and host lists.
 * libyaml lives in src/spec alone, so the parser is here while the data
 * types and gr_site_destroy() are in src/topo/site.h.  The format is
 * described in doc/topology.md; share/gridrun/topology.yaml is an
 * example.
 */
#ifndef GR_SPEC_SITE_LOAD_H
#define GR_SPEC_SITE_LOAD_H

#include <stddef.h>

#include "src/common/error.h"
#include "src/topo/site.h"

/* A site file holds at most this many nodes once host lists are
 * expanded, and at most this many bytes. */
#define GR_SITE_MAX_NODES 1000000
#define GR_SITE_MAX_BYTES (16u * 1024 * 1024)

/* Parse the site file at path.  Every error names FILE:LINE:COL, says
 * what is wrong and what to do: YAML syntax, unknown keys (with "did you
 * mean"), wrong types, missing names, duplicate zone or rack names, a node
 * listed twice, malformed host ranges.  Returns 0 and *sitep (free it
 * with gr_site_destroy), or -1 with errno (ENOENT, EINVAL, EFBIG, ENOMEM)
 * and errp set; *sitep is then untouched. */
int gr_site_load (const char *path, gr_site_t **sitep, gr_error_t *errp);
/* The same from text in memory; name is used in messages. */
int gr_site_parse (const char *text, size_t len, const char *name, gr_site_t **sitep,
                   gr_error_t *errp);

/* Expand a host list: names separated by commas, each with any number of
 * bracketed ranges, "n[003-005,9],login1" -> n003 n004 n005 n009 login1.
 * Leading zeros set the width ("n[08-10]" -> n08 n09 n10).  Names may hold
 * letters, digits, '-', '.' and '_'.  More than max names fail with E2BIG.
 * Returns 0 with *namesp (free with gr_hostlist_free) and *np, or -1 with
 * errno (EINVAL, E2BIG, ENOMEM) and errp saying what is wrong. */
int gr_hostlist_expand (const char *list, size_t max, char ***namesp, size_t *np,
                        gr_error_t *errp);
/* Accepts NULL. */
void gr_hostlist_free (char **names, size_t n);

#endif
