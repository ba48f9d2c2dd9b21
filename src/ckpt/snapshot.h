/* The run snapshot, run.h5: the state of a run in one HDF5 file that
 * people open with h5py or h5dump.  HDF5 lives behind this module (src/ckpt)
 * alone.
 *
 * Layout (documented for users in doc/run-snapshot.md):
 *
 *   /                        attributes: format ("gridrun-run-1"), job, spec_hash
 *                            (16 hex digits), spec_path, run_dir, gridrun_version,
 *                            incarnation, started (epoch s), written (epoch s),
 *                            state ("running", "drained", "finished")
 *   /tasks                   1-D compound dataset, one row per task that has had
 *                            at least one attempt (chunked, gzip-free):
 *                              key        uint64
 *                              key_hex    string (16 hex digits)
 *                              name       string  (e.g. "sim[3]")
 *                              params     string  ("x=1 y=foo")
 *                              state      enum gr_task_state: pending, running,
 *                                         waiting, done, failed, poison
 *                              attempts   uint32
 *                              exit_code  int32  (of the last attempt; -1 if
 *                                         killed by a signal or never ended)
 *                              signal     int32
 *                              wall       float64 seconds (last attempt)
 *                              maxrss_kb  int64
 *                              host       string
 *                              worker     int32 (MPI rank)
 *   /counts                  attributes: total, done, failed, poison, skipped,
 *                            running, waiting, retries, timeouts, crashes,
 *                            attempts, duplicates (uint64)
 *   /metrics                 one scalar float64 attribute per metric
 *                            (wall_seconds, throughput, busy_seconds, ...)
 *   /workers                 compound dataset: rank int32, host string,
 *                            cpus uint32, gpus uint32, lost uint8
 *
 * Strings are UTF-8; name, params and host are fixed-length (NUL-padded,
 * as long as the longest of the snapshot and a NUL) where the writer knows
 * their longest and it is short (gr_snap_meta_t), else variable-length, as
 * are all the others but key_hex.  The file is written to
 * "<path>.tmp", fsynced, renamed over path, and the directory fsynced, so a
 * reader only ever sees a whole snapshot.
 */
#ifndef GR_CKPT_SNAPSHOT_H
#define GR_CKPT_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/common/error.h"

/* Task states, shared with the scheduler's task table. */
typedef enum {
    GR_TASK_PENDING = 0,    /* known (from a journal) but not yet running */
    GR_TASK_RUNNING = 1,
    GR_TASK_WAITING = 2,    /* waiting out a retry backoff */
    GR_TASK_DONE = 3,
    GR_TASK_FAILED = 4,
    GR_TASK_POISON = 5,
} gr_task_state_t;

typedef struct gr_snap_task {
    uint64_t key;
    const char *name;
    const char *params;
    gr_task_state_t state;
    uint32_t attempts;
    int32_t exit_code;
    int32_t signal;
    double wall;
    int64_t maxrss_kb;
    const char *host;
    int32_t worker;
} gr_snap_task_t;

typedef struct gr_snap_worker {
    int32_t rank;
    const char *host;
    uint32_t cpus;
    uint32_t gpus;
    uint8_t lost;
} gr_snap_worker_t;

typedef struct gr_snap_meta {
    const char *job;
    uint64_t spec_hash;
    const char *spec_path;
    const char *run_dir;
    const char *version;
    uint32_t incarnation;
    double started;          /* epoch seconds */
    const char *state;       /* "running", "drained", "finished" */
    /* sizes_known: name_max, params_max and host_max are the longest
     * name, params and host the rows will hold, in bytes without the NUL.
     * A column whose longest is GR_SNAP_FIXED_MAX bytes or less is then a
     * fixed-length string of one byte more, which costs no heap object a
     * row; a longer one, or any column when sizes_known is false, a
     * variable-length string.  A row whose string is longer than said is
     * refused. */
    bool sizes_known;
    size_t name_max, params_max, host_max;
} gr_snap_meta_t;

/* The longest string a /tasks column holds as a fixed-length string. */
#define GR_SNAP_FIXED_MAX 255

typedef struct gr_snap_counts {
    uint64_t total, done, failed, poison, skipped, running, waiting;
    uint64_t retries, timeouts, crashes, attempts, duplicates;
} gr_snap_counts_t;

typedef struct gr_snap gr_snap_t;

/* Start a snapshot that will replace path on commit.  The writer streams:
 * rows can be added in any number of calls without holding them all. */
gr_snap_t *gr_snap_begin (const char *path, const gr_snap_meta_t *meta,
                          gr_error_t *errp);
int gr_snap_add_tasks (gr_snap_t *s, const gr_snap_task_t *rows, size_t n,
                       gr_error_t *errp);
int gr_snap_set_workers (gr_snap_t *s, const gr_snap_worker_t *w, size_t n,
                         gr_error_t *errp);
int gr_snap_set_counts (gr_snap_t *s, const gr_snap_counts_t *c, gr_error_t *errp);
int gr_snap_add_metric (gr_snap_t *s, const char *name, double value,
                        gr_error_t *errp);
/* Close, fsync, rename into place, fsync the directory.  The snapshot is
 * freed whether or not this succeeds. */
int gr_snap_commit (gr_snap_t *s, gr_error_t *errp);
/* Drop an unfinished snapshot and its temporary file.  NULL is fine. */
void gr_snap_abort (gr_snap_t *s);

/* Reading (for `gridrun status` and tests): call fn for each row of
 * /tasks, then fill counts and meta strings (owned by the caller's buffers
 * through the callback's lifetime only). */
typedef int (*gr_snap_row_f) (const gr_snap_task_t *row, void *arg);
int gr_snap_read (const char *path, gr_snap_row_f fn, void *arg,
                  gr_snap_counts_t *counts, gr_error_t *errp);

/* Additions for `gridrun status` and tests.  In all the readers, a
 * callback that returns nonzero stops the read, which then returns -1 with
 * errp set; strings given to a callback live until it returns; fn and
 * counts may be NULL in gr_snap_read. */

/* The root attributes of the snapshot at path.  The strings in *meta are
 * malloc'd and the caller's: release them with gr_snap_meta_clear().
 * writtenp, if not NULL, gets the "written" attribute (epoch seconds). */
int gr_snap_read_meta (const char *path, gr_snap_meta_t *meta, double *writtenp,
                       gr_error_t *errp);
/* Free the strings gr_snap_read_meta() put in meta and zero it. */
void gr_snap_meta_clear (gr_snap_meta_t *meta);

/* Call fn for each row of /workers. */
typedef int (*gr_snap_worker_f) (const gr_snap_worker_t *w, void *arg);
int gr_snap_read_workers (const char *path, gr_snap_worker_f fn, void *arg,
                          gr_error_t *errp);

/* Call fn for each metric in /metrics, in the order they were added. */
typedef int (*gr_snap_metric_f) (const char *name, double value, void *arg);
int gr_snap_read_metrics (const char *path, gr_snap_metric_f fn, void *arg,
                          gr_error_t *errp);

#endif
