#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "error.h"

int gr_errprintf (gr_error_t *errp, const char *fmt, ...)
{
    int saved = errno;
    if (errp) {
        va_list ap;
        va_start (ap, fmt);
        vsnprintf (errp->text, sizeof (errp->text), fmt, ap);
        va_end (ap);
    }
    errno = saved;
    return -1;
}

int gr_errprintf_at (gr_error_t *errp, const char *file, int line, int col,
                     const char *fmt, ...)
{
    int saved = errno;
    if (errp) {
        int n;
        if (col > 0)
            n = snprintf (errp->text, sizeof (errp->text), "%s:%d:%d: ",
                          file, line, col);
        else
            n = snprintf (errp->text, sizeof (errp->text), "%s:%d: ", file,
                          line);
        if (n < 0)
            n = 0;
        if ((size_t)n < sizeof (errp->text)) {
            va_list ap;
            va_start (ap, fmt);
            vsnprintf (errp->text + n, sizeof (errp->text) - n, fmt, ap);
            va_end (ap);
        }
    }
    errno = saved;
    return -1;
}
