/* The one logger.  Every line goes to stderr prefixed with the time, the
 * role and rank, and the host:
 *
 *   gridrun[0@node7] 12:03:04.123 error: ...
 *
 * The level comes from GRIDRUN_LOG (error, warn, info, debug, trace) or from
 * gr_log_set_level(); the default is warn.
 */
#ifndef GR_COMMON_LOG_H
#define GR_COMMON_LOG_H

#include <stdbool.h>

typedef enum {
    GR_LOG_ERROR = 0,
    GR_LOG_WARN = 1,
    GR_LOG_INFO = 2,
    GR_LOG_DEBUG = 3,
    GR_LOG_TRACE = 4,
} gr_log_level_t;

/* Set the rank shown in every line; -1 shows no rank. Reads GRIDRUN_LOG. */
void gr_log_init (int rank);
void gr_log_set_level (gr_log_level_t level);
gr_log_level_t gr_log_get_level (void);
/* Parse a level name; returns -1 on an unknown name. */
int gr_log_parse_level (const char *name);

void gr_log (gr_log_level_t level, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));
/* Called before every line is written (NULL: nothing): a progress bar
 * drawn in place on the same terminal clears itself there. */
void gr_log_set_hook (void (*before) (void));

extern gr_log_level_t gr__log_level;

#define gr_log_enabled(lvl) ((lvl) <= gr__log_level)
#define GR_ERROR(...) gr_log (GR_LOG_ERROR, __VA_ARGS__)
#define GR_WARN(...) gr_log (GR_LOG_WARN, __VA_ARGS__)
#define GR_INFO(...) \
    do { if (gr_log_enabled (GR_LOG_INFO)) gr_log (GR_LOG_INFO, __VA_ARGS__); } while (0)
#define GR_DEBUG(...) \
    do { if (gr_log_enabled (GR_LOG_DEBUG)) gr_log (GR_LOG_DEBUG, __VA_ARGS__); } while (0)
#define GR_TRACE(...) \
    do { if (gr_log_enabled (GR_LOG_TRACE)) gr_log (GR_LOG_TRACE, __VA_ARGS__); } while (0)

#endif
