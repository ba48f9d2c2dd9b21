/* Prometheus's text exposition format, the pieces both metrics writers
 * share: the run's (src/runtime/obs.c) and libgridrun's training metrics
 * (src/lib/metrics.c).  A file is written whole to PATH.tmp and renamed
 * over PATH, so a scraper (node_exporter's textfile collector) never reads
 * half of one. */
#ifndef GR_COMMON_PROM_H
#define GR_COMMON_PROM_H

#include <stddef.h>
#include <stdio.h>

/* "# HELP name help" and "# TYPE name type". */
void gr_prom_head (FILE *f, const char *name, const char *type, const char *help);

/* "name{base,labels} v": base is the label every sample of the file has
 * (run="x"), labels more of them or NULL; both already escaped. */
void gr_prom_put (FILE *f, const char *base, const char *name, const char *labels,
                  double v);

/* s as a label value: backslash, double quote and newline escaped; cut to
 * fit len.  Returns buf. */
const char *gr_prom_escape (const char *s, char *buf, size_t len);

/* Open PATH.tmp (its name into tmp) for a new file.  NULL with errno. */
FILE *gr_prom_begin (const char *path, char *tmp, size_t tmplen);

/* Close f and rename tmp over path.  0, or -1 with errno (tmp removed). */
int gr_prom_commit (FILE *f, const char *tmp, const char *path);

#endif
