#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "slurm.h"
#include "units.h"

static const char *env (const char *name)
{
    const char *s = getenv (name);
    return s && *s ? s : NULL;
}

void gr_node_name (char *buf, size_t size)
{
    const char *s = env ("SLURMD_NODENAME");

    if (size == 0)
        return;
    if (s)
        snprintf (buf, size, "%s", s);
    else if (gethostname (buf, size) < 0 || buf[0] == '\0')
        snprintf (buf, size, "localhost");
    buf[size - 1] = '\0';
}

const char *gr_slurm_job_id (void)
{
    return env ("SLURM_JOB_ID");
}

uint32_t gr_slurm_restart_count (void)
{
    const char *s = env ("SLURM_RESTART_COUNT");
    uint64_t v;
    if (!s || gr_parse_u64 (s, &v) < 0 || v > UINT32_MAX)
        return 0;
    return (uint32_t)v;
}

const char *gr_slurm_nodelist (void)
{
    const char *s = env ("SLURM_JOB_NODELIST");
    return s ? s : env ("SLURM_NODELIST");
}

int gr_slurm_end_time (double *out, gr_error_t *errp)
{
    const char *s = env ("SLURM_JOB_END_TIME");
    uint64_t v;

    *out = 0;
    if (!s)
        return 0;
    if (gr_parse_u64 (s, &v) < 0)
        return gr_errprintf (errp,
                             "SLURM_JOB_END_TIME='%s' is not epoch seconds; unset it "
                             "or give --deadline",
                             s);
    *out = (double)v;
    return 0;
}

int gr_slurm_parse_end_time (const char *s, double *out, gr_error_t *errp)
{
    static const char *const none[] = {"Unknown", "N/A", "NONE"};
    char buf[64];
    size_t n;

    *out = 0;
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    n = strlen (s);
    while (n > 0 && strchr (" \t\r\n", s[n - 1]))
        n--;
    for (size_t i = 0; i < sizeof (none) / sizeof (none[0]); i++)
        if (n == strlen (none[i]) && strncasecmp (s, none[i], n) == 0)
            return 0;
    if (n >= 19 && n < sizeof (buf)) {
        memcpy (buf, s, n);
        buf[n] = '\0';
        if (gr_parse_localtime (buf, "%Y-%m-%dT%H:%M:%S", out) == 0)
            return 0;
    }
    errno = EINVAL;
    return gr_errprintf (errp,
                         "'%.*s' is not an end time as Slurm prints one (like "
                         "2026-11-22T03:04:05, or Unknown, N/A, NONE)",
                         (int)(n > 64 ? 64 : n), s);
}

/* "0,2-3" into ids (ascending as given); -1 on anything else. */
static int parse_ids (const char *s, uint32_t *ids, size_t max, size_t *n)
{
    *n = 0;
    while (*s) {
        char *end;
        unsigned long lo = strtoul (s, &end, 10), hi = lo;
        if (end == s || lo > 65535)
            return -1;
        s = end;
        if (*s == '-') {
            hi = strtoul (s + 1, &end, 10);
            if (end == s + 1 || hi < lo || hi > 65535)
                return -1;
            s = end;
        }
        for (unsigned long v = lo; v <= hi; v++) {
            if (*n == max)
                return -1;
            ids[(*n)++] = (uint32_t)v;
        }
        if (*s == ',')
            s++;
        else if (*s)
            return -1;
    }
    return 0;
}

int gr_slurm_gpus (uint32_t *ids, size_t max, size_t *n, const char **from, gr_error_t *errp)
{
    static const char *const vars[] = {"SLURM_STEP_GPUS", "SLURM_JOB_GPUS",
                                       "CUDA_VISIBLE_DEVICES"};
    *n = 0;
    *from = NULL;
    if (!gr_slurm_job_id ())
        return 0;
    for (size_t i = 0; i < sizeof (vars) / sizeof (vars[0]); i++) {
        const char *s = env (vars[i]);
        if (!s)
            continue;
        *from = vars[i];
        if (parse_ids (s, ids, max, n) < 0) {
            *n = 0;
            return gr_errprintf (errp,
                                 "%s='%s' is not a list of GPU indexes (like 0,2-3); "
                                 "gridrun cannot tell which GPUs are the job's: give "
                                 "--gpus-per-worker, or --no-bind",
                                 vars[i], s);
        }
        return 0;
    }
    return 0;
}
