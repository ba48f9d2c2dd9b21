/* The run directory: creating it, recognizing a run to resume, and the
 * files the master keeps there.
 *
 *   RUN/ (0700)  spec.yaml  spec.pack  spec-HASH.pack  journal  run.h5
 *                master.info  summary.txt  exit_status  out/  .reserve
 *
 * spec-HASH.pack keeps every spec the run has run (one per --force
 * change): the journal names tasks by their place in them.
 */
#ifndef GR_RUNTIME_RUNDIR_H
#define GR_RUNTIME_RUNDIR_H

#include <stdbool.h>

#include "src/common/error.h"
#include "src/journal/journal.h"
#include "src/spec/spec.h"
#include "runtime.h"

typedef struct gr_rundir {
    char *path;          /* absolute */
    gr_spec_t *spec;     /* the spec this incarnation runs */
    bool resume;         /* the directory holds a run to continue */
    bool spec_changed;   /* resuming with --force and a different spec */
} gr_rundir_t;

/* Prepare the run directory for opts: create it for a new run, or check
 * that a resume may go on (same spec, unless opts->force).  opts->spec_path
 * may be NULL when resuming: the stored spec is used.  Returns 0, or the
 * exit code of the error, which errp tells people about: GR_EXIT_USAGE,
 * or GR_EXIT_IO when the directory cannot be written (a full disk). */
int gr_rundir_prepare (const gr_run_opts_t *opts, gr_rundir_t *rd, gr_error_t *errp);
void gr_rundir_release (gr_rundir_t *rd);

/* Whether errno e says a file system is full or failing (ENOSPC, EDQUOT,
 * EIO, EROFS, EFBIG) rather than that a path or the input is wrong. */
bool gr_rundir_io_errno (int e);

/* A new run that could not start because its directory could not be
 * written: remove the spec copies prepare stored, so that the same
 * command can be run again once it can.  Only when there is no journal. */
void gr_rundir_abandon (const gr_rundir_t *rd);

/* Space held back for the end of a run: RUN/.reserve, GR_RUNDIR_RESERVE
 * bytes allocated on disk.  When the run directory fills up, the master
 * stops the run and drops the reserve, so that its last journal records,
 * summary and exit_status still fit.  Making it is best effort (0, or -1
 * with errno when the file system has no room or cannot allocate);
 * dropping it never fails. */
#define GR_RUNDIR_RESERVE (512u * 1024)
int gr_rundir_reserve (const char *run_dir);
void gr_rundir_unreserve (const char *run_dir);

/* Write spec.yaml, spec.pack and spec-HASH.pack for rd->spec. */
int gr_rundir_store_spec (const gr_rundir_t *rd, gr_error_t *errp);

/* RUN/spec.pack, the spec of the run's latest incarnation, into *specp.
 * Errors name the file (unreadable, or a spec that does not load). */
int gr_rundir_load_spec (const char *run_dir, gr_spec_t **specp, gr_error_t *errp);

/* gr_journal_replay of RUN/journal, with every task entry's key filled in:
 * a version 3 journal leaves keys out, and they are found again in the
 * spec of the entry's incarnation (by the hash in the RUN_START before
 * it): spec, the one the caller holds (NULL: none), when it has that
 * hash, else RUN/spec-HASH.pack.  A task the spec does not have, or a
 * spec the run directory does not hold, stops the replay with an error
 * that says so. */
int gr_rundir_replay (const char *run_dir, const gr_spec_t *spec, gr_journal_rec_f fn,
                      void *arg, gr_journal_info_t *info, gr_error_t *errp);

/* "RUN/name" into buf. */
const char *gr_rundir_file (const char *run_dir, const char *name, char *buf,
                            size_t len);

/* The default run directory for spec, absolute and malloc'd:
 * ./gridrun-NAME-YYYYmmdd-HHMMSS.  NULL with errno on failure. */
char *gr_rundir_default (const gr_spec_t *spec);

/* The run's committed exit code from RUN/exit_status.  False while there
 * is none (the file is written whole, with a newline, last of all). */
bool gr_rundir_exit_status (const char *run_dir, int *code);

/* The master's pid from RUN/master.info, 0 if there is none yet; *local
 * says whether it runs on this host (only then can it be looked at). */
long gr_rundir_master_pid (const char *run_dir, bool *local);

/* Describe how spec b differs from spec a, in a few short lines. */
void gr_spec_describe_changes (const gr_spec_t *a, const gr_spec_t *b, char *buf,
                               size_t len);

#endif
