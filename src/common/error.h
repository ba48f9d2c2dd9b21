/* Error text for people.
 *
 * Functions that a person's input can make fail (spec, command line, config)
 * take an optional gr_error_t pointer and fill it with a sentence that says
 * what went wrong, where, and what to do.  gr_errprintf() always returns -1,
 * so a caller can write `return gr_errprintf (errp, "...")`.
 */
#ifndef GR_COMMON_ERROR_H
#define GR_COMMON_ERROR_H

#include <stddef.h>

#define GR_ERROR_TEXT_MAX 1024

typedef struct gr_error {
    char text[GR_ERROR_TEXT_MAX];
} gr_error_t;

/* Format into errp (which may be NULL) and return -1.  errno is preserved. */
int gr_errprintf (gr_error_t *errp, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));

/* Like gr_errprintf, prefixed with "FILE:LINE:COL: ".  line and col are
 * 1-based; a col of 0 leaves the column out. */
int gr_errprintf_at (gr_error_t *errp, const char *file, int line, int col,
                     const char *fmt, ...)
    __attribute__ ((format (printf, 5, 6)));

#endif
