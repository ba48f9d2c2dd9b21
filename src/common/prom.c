/* Prometheus text format helpers: see prom.h. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "prom.h"

void gr_prom_head (FILE *f, const char *name, const char *type, const char *help)
{
    fprintf (f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void gr_prom_put (FILE *f, const char *base, const char *name, const char *labels,
                  double v)
{
    fprintf (f, "%s{%s%s%s} %.17g\n", name, base, labels && *labels ? "," : "",
             labels ? labels : "", v);
}

const char *gr_prom_escape (const char *s, char *buf, size_t len)
{
    size_t o = 0;

    if (len == 0)
        return buf;
    for (; s && *s && o + 3 < len; s++) {
        if (*s == '\\' || *s == '"') {
            buf[o++] = '\\';
            buf[o++] = *s;
        } else if (*s == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
        } else
            buf[o++] = *s;
    }
    buf[o] = '\0';
    return buf;
}

FILE *gr_prom_begin (const char *path, char *tmp, size_t tmplen)
{
    int n = snprintf (tmp, tmplen, "%s.tmp", path);
    if (n < 0 || (size_t)n >= tmplen) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    return fopen (tmp, "w");
}

int gr_prom_commit (FILE *f, const char *tmp, const char *path)
{
    if (fclose (f) != 0 || rename (tmp, path) < 0) {
        int saved = errno;
        unlink (tmp);
        errno = saved;
        return -1;
    }
    return 0;
}
