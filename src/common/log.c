#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

gr_log_level_t gr__log_level = GR_LOG_WARN;
static int log_rank = -1;
static char log_host[64] = "";

static const char *level_names[] = {"error", "warn", "info", "debug", "trace"};
static void (*log_hook) (void);

void gr_log_set_hook (void (*before) (void))
{
    log_hook = before;
}

int gr_log_parse_level (const char *name)
{
    for (int i = 0; i <= GR_LOG_TRACE; i++) {
        if (strcasecmp (name, level_names[i]) == 0)
            return i;
    }
    if (strcasecmp (name, "warning") == 0)
        return GR_LOG_WARN;
    return -1;
}

void gr_log_init (int rank)
{
    const char *s = getenv ("GRIDRUN_LOG");
    log_rank = rank;
    if (gethostname (log_host, sizeof (log_host)) < 0)
        strcpy (log_host, "?");
    log_host[sizeof (log_host) - 1] = '\0';
    char *dot = strchr (log_host, '.');
    if (dot)
        *dot = '\0';
    if (s && *s) {
        int lvl = gr_log_parse_level (s);
        if (lvl >= 0)
            gr__log_level = lvl;
        else
            fprintf (stderr,
                     "gridrun: GRIDRUN_LOG=%s is not a level; use one of "
                     "error, warn, info, debug, trace\n", s);
    }
}

void gr_log_set_level (gr_log_level_t level)
{
    gr__log_level = level;
}

gr_log_level_t gr_log_get_level (void)
{
    return gr__log_level;
}

void gr_log (gr_log_level_t level, const char *fmt, ...)
{
    int saved = errno;
    if (level > gr__log_level) {
        errno = saved;
        return;
    }
    char buf[2048];
    struct timeval tv;
    struct tm tm;
    int n;

    gettimeofday (&tv, NULL);
    localtime_r (&tv.tv_sec, &tm);
    if (log_rank >= 0)
        n = snprintf (buf, sizeof (buf), "gridrun[%d@%s] %02d:%02d:%02d.%03d %s: ",
                      log_rank, log_host, tm.tm_hour, tm.tm_min, tm.tm_sec,
                      (int)(tv.tv_usec / 1000), level_names[level]);
    else
        n = snprintf (buf, sizeof (buf), "gridrun: %s: ", level_names[level]);
    if (n < 0 || (size_t)n >= sizeof (buf))
        n = 0;
    va_list ap;
    va_start (ap, fmt);
    int m = vsnprintf (buf + n, sizeof (buf) - n - 1, fmt, ap);
    va_end (ap);
    if (m < 0)
        m = 0;
    size_t len = n + (size_t)m;
    if (len > sizeof (buf) - 2)
        len = sizeof (buf) - 2;
    buf[len++] = '\n';
    if (log_hook)
        log_hook ();
    /* One write so that lines from several ranks do not interleave. */
    ssize_t w = write (STDERR_FILENO, buf, len);
    (void)w;
    errno = saved;
}
