/* Task output, kept without one file per task.
 *
 * Each worker appends the stdout and stderr of its tasks to one log,
 * RUN/out/w<RANK>.log, and describes each attempt with one line of
 * RUN/out/w<RANK>.idx (tab-separated):
 *
 *   key attempt name status flags wall maxrss_kb out_off out_len err_off err_len
 *
 * key is 16 hex digits; status is the exit code, or -N for signal N;
 * flags are those of the result (1 timeout, 2 could not start, 4 killed
 * while draining); offsets and lengths are bytes in the log.
 *
 * A task writes into a per-slot spool file while it runs; when it ends the
 * spool is copied to the log (copy_file_range, so in the kernel) and
 * truncated for the next task.  Output beyond the cap (max_output) is
 * cut, and a note line says where and how much the task wrote:
 *
 *   [gridrun: output truncated after N bytes (the task wrote M); raise
 *   max_output: or --max-output]
 *
 * (one line).  While the task runs, the worker keeps the spool from
 * growing on disk with gr_outlog_trim.
 *
 * A write that fails (a full disk) takes nothing back that was written
 * before: the log and index are cut back to their last good length, and
 * the caller reports the attempts concerned as not done.
 */
#ifndef GR_RUNTIME_OUTLOG_H
#define GR_RUNTIME_OUTLOG_H

#include <stdint.h>
#include <stdio.h>

#include "src/common/error.h"

typedef struct gr_outlog gr_outlog_t;

typedef struct gr_outlog_rec {
    uint64_t key;
    uint32_t attempt;
    const char *name;
    int status;
    uint32_t flags;
    double wall;
    int64_t maxrss_kb;
    uint64_t out_off, out_len;
    uint64_t err_off, err_len;
} gr_outlog_rec_t;

/* Open (appending) the log and index of worker `rank` under dir (RUN/out). */
gr_outlog_t *gr_outlog_open (const char *dir, int rank, gr_error_t *errp);
/* Flush what is buffered (errors are lost: flush first to see them) and
 * close.  NULL is fine. */
void gr_outlog_close (gr_outlog_t *ol);

/* The log's path, for messages. */
const char *gr_outlog_path (const gr_outlog_t *ol);

/* Keep a running task's spool from holding more than cap bytes on disk:
 * when it is longer, cut it back to cap (the task writes on past the end,
 * into a hole, so the file's size still grows).  Returns the spool's size
 * before the cut, to pass to gr_outlog_take as seen; 0 when it cannot
 * tell. */
uint64_t gr_outlog_trim (int spool_fd, uint64_t cap);

/* Move what the spool fd holds to the log, keeping its first cap bytes
 * and a note when it held more (its size, or seen if that is more), and
 * reset the spool.  Fills *offp and *lenp (0/0 when the spool was empty).
 * On failure (-1, errno) the log is cut back as it was and the spool is
 * reset all the same. */
int gr_outlog_take (gr_outlog_t *ol, int spool_fd, uint64_t cap, uint64_t seen,
                    uint64_t *offp, uint64_t *lenp);

/* Append bytes (a message from gridrun itself) to the log. */
int gr_outlog_write (gr_outlog_t *ol, const void *buf, size_t len,
                     uint64_t *offp);

/* Add an index line to the buffer (nothing is written yet); -1 with
 * ENOMEM. */
int gr_outlog_record (gr_outlog_t *ol, const gr_outlog_rec_t *rec);

/* Write the buffered index lines.  On failure (-1, errno) the index is
 * cut back to its length before them and they are dropped: the caller
 * must not report their attempts as done. */
int gr_outlog_flush (gr_outlog_t *ol);

/* For `gridrun output`: call fn for every index line in dir whose key (hex)
 * or name equals `what`, with the path of the log that holds the bytes. */
typedef int (*gr_outlog_match_f) (const gr_outlog_rec_t *rec, const char *log_path,
                                  void *arg);
int gr_outlog_scan (const char *dir, const char *what, gr_outlog_match_f fn,
                    void *arg, gr_error_t *errp);

/* Copy len bytes at off of the log at path to out. */
int gr_outlog_copy_out (const char *log_path, uint64_t off, uint64_t len,
                        FILE *out);

#endif
