/* What Slurm tells a job through the environment.  Only getenv: gridrun
 * links no Slurm library, so one binary runs under any Slurm version, and
 * outside Slurm these report nothing.
 *
 * Variables read: SLURM_JOB_ID, SLURM_RESTART_COUNT (how often the job was
 * requeued), SLURM_JOB_NODELIST, SLURMD_NODENAME (the Slurm node a process
 * runs on), SLURM_JOB_END_TIME (Slurm 23.02 and later; for older ones the
 * master asks squeue, and gr_slurm_parse_end_time reads its answer).
 * SLURM_TOPOLOGY_ADDR and _PATTERN are the topology module's. */
#ifndef GR_COMMON_SLURM_H
#define GR_COMMON_SLURM_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* The name of the node this process runs on, into buf (always terminated,
 * truncated to size - 1): the Slurm node name (SLURMD_NODENAME) under
 * Slurm, else gethostname(), else "localhost".  Failure domains, binding
 * shares and `gridrun topo` name nodes by it, so that nodes Slurm tells
 * apart stay apart even where they share a host name (several slurmd on
 * one machine). */
void gr_node_name (char *buf, size_t size);

/* The Slurm job this process belongs to, or NULL outside Slurm.  The
 * string is the environment's: do not free it. */
const char *gr_slurm_job_id (void);

/* How many times Slurm has requeued the job (0 on its first run and
 * outside Slurm). */
uint32_t gr_slurm_restart_count (void);

/* The job's nodes in Slurm's hostlist form (n[01-04],g1), or NULL.  The
 * environment's string: do not free it. */
const char *gr_slurm_nodelist (void);

/* The job's end time (epoch seconds) into *out, 0 if Slurm does not say.
 * Returns -1 with errp filled when SLURM_JOB_END_TIME is set but not epoch
 * seconds. */
int gr_slurm_end_time (double *out, gr_error_t *errp);

/* A job's end time as `squeue -o %e` prints it with
 * SLURM_TIME_FORMAT=standard (and scontrol as EndTime=): local time
 * YYYY-mm-ddTHH:MM:SS, blanks around it ignored.  Into *out as epoch
 * seconds; "Unknown", "N/A", "NONE" and "None" (no end time, or none known
 * yet) give 0.  Returns -1 with errp naming the value for anything else,
 * including a date that does not exist (2026-02-30). */
int gr_slurm_parse_end_time (const char *s, double *out, gr_error_t *errp);

/* The GPUs Slurm gave this job on this node, as node GPU indexes, into
 * ids (at most max; *n of them), and the variable they came from into
 * *from: SLURM_STEP_GPUS, else SLURM_JOB_GPUS, else the job's
 * CUDA_VISIBLE_DEVICES.  Outside Slurm, or when none is set, *n is 0 and
 * *from NULL: the node's GPUs are all the job's.  Returns -1 with errp
 * (naming the variable) when the value is not a list like "0,2-3" (a
 * UUID list, for one). */
int gr_slurm_gpus (uint32_t *ids, size_t max, size_t *n, const char **from,
                   gr_error_t *errp);

#endif
