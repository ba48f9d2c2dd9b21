#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
