/* Starting and reaping task processes on a worker.
 *
 * Tasks start with posix_spawn (vfork semantics: cost does not grow with
 * the worker's memory, unlike fork), each as the leader of its own process
 * group so that a timeout or a drain can signal the task and everything it
 * started.  The worker becomes a child subreaper, so descendants a task
 * orphans are reparented to it and can be reaped and killed too.
 *
 * SIGCHLD is blocked in the worker and waited for with gr_exec_wait(); the
 * spawned processes get an empty signal mask, default dispositions, and no
 * file descriptors but 0, 1 and 2.
 */
#ifndef GR_EXEC_EXEC_H
#define GR_EXEC_EXEC_H

#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "src/common/error.h"

typedef struct gr_exec gr_exec_t;

/* Create the spawner.  The base environment is the current one without
 * the variables of the MPI job that runs gridrun (OMPI_*, PMIX_*, OPAL_*,
 * PMI_*), so a task that is itself an MPI program starts clean. */
gr_exec_t *gr_exec_create (gr_error_t *errp);
void gr_exec_destroy (gr_exec_t *ex);

typedef struct gr_spawn_req {
    char *const *argv;     /* argv[0] is looked up in PATH when it has no '/' */
    char *const *env;      /* NULL-terminated "KEY=value" added to (and
                              overriding) the base environment; may be NULL */
    const char *cwd;       /* NULL: the worker's cwd */
    int stdin_fd;          /* -1: /dev/null */
    int stdout_fd;         /* -1: /dev/null */
    int stderr_fd;         /* -1: /dev/null; may equal stdout_fd */
    const cpu_set_t *cpus; /* bind the task to these CPUs; NULL: inherit */
} gr_spawn_req_t;

/* Start a process for req.  Returns 0 and its pid (which is also its
 * process group id), or -1 with errno (ENOENT, EACCES, ... when exec
 * failed) and errp set.  A command that exec could not take (one
 * argument or environment string over gr_exec_arg_strlen_max(), or all
 * of them over gr_exec_arg_max()) fails with E2BIG and the sizes in
 * errp, before anything is started. */
int gr_exec_spawn (gr_exec_t *ex, const gr_spawn_req_t *req, pid_t *pidp,
                   gr_error_t *errp);

/* The most bytes exec takes for a program's arguments and environment
 * (strings with their NULs, and a pointer each): sysconf's ARG_MAX, held
 * to what Linux allows whatever the stack limit. */
#define GR_EXEC_ARG_MAX_MIN (128u * 1024)
#define GR_EXEC_ARG_MAX_CAP (6u * 1024 * 1024)
size_t gr_exec_arg_max (void);

/* The most bytes of one argument or environment string, its NUL
 * included (the kernel's MAX_ARG_STRLEN: 32 pages). */
size_t gr_exec_arg_strlen_max (void);

/* Whether argv, with env (may be NULL) added to this process's
 * environment, fits those limits: 0, or -1 with E2BIG and errp saying
 * which limit and the sizes (as gr_exec_spawn would fail). */
int gr_exec_check_size (char *const *argv, char *const *env, gr_error_t *errp);

/* A short command whose output gridrun reads (squeue, for the Slurm
 * job's end time): started as gr_exec_spawn starts a task (its own process
 * group, the base environment with env added), its stdout and stderr into
 * pipes, and killed (the whole process group, SIGKILL) once it runs past
 * its timeout.  Only its own pid is waited for, so it must not run in a
 * process whose other children are reaped with gr_exec_reap (a worker):
 * that would take its exit status. */
typedef struct gr_exec_cmd gr_exec_cmd_t;

/* Start argv (argv[0] looked up in PATH) with env (may be NULL) added to
 * ex's base environment, to end within timeout seconds.  Returns the
 * command, to be freed with gr_exec_cmd_destroy, or NULL with errno and
 * errp set (ENOENT: the program is not in PATH). */
gr_exec_cmd_t *gr_exec_cmd_start (gr_exec_t *ex, char *const *argv, char *const *env,
                                  double timeout, gr_error_t *errp);

/* Without blocking: reads what the command wrote and looks whether it
 * ended.  Returns 0 while it runs, 1 once it has exited with status 0,
 * and -1 with errp set once it failed: it exited with another status or
 * died by a signal (errp names it and quotes the last line it wrote to
 * stderr), or it ran past its timeout (it is killed first).  Call again
 * after 1 or -1 and it says the same. */
int gr_exec_cmd_poll (gr_exec_cmd_t *c, gr_error_t *errp);

/* Block until the command has ended (at most its timeout, and a moment
 * to reap it); returns as gr_exec_cmd_poll. */
int gr_exec_cmd_wait (gr_exec_cmd_t *c, gr_error_t *errp);

/* The last line that is not blank of what the command wrote to stdout
 * (of its first 4 KiB; the rest is read and dropped), without blanks
 * around it, into buf (truncated to size - 1); returns buf. */
const char *gr_exec_cmd_last_line (const gr_exec_cmd_t *c, char *buf, size_t size);

/* Kill the command if it still runs, reap it, close and free.  NULL is
 * fine; errno is kept. */
void gr_exec_cmd_destroy (gr_exec_cmd_t *c);

/* Reap one exited child without blocking.  Returns 1 with *pidp, *statusp
 * and *ru filled, 0 when no child has exited, -1 with ECHILD when there
 * are no children at all. */
int gr_exec_reap (pid_t *pidp, int *statusp, struct rusage *ru);

/* Signal the process group pgid; ESRCH (nothing left) is not an error. */
int gr_exec_kill_group (pid_t pgid, int sig);

/* Wait up to timeout seconds for a child to change state (SIGCHLD).
 * Returns 1 if one did, 0 on timeout. */
int gr_exec_wait (double timeout);

/* Block SIGCHLD in the calling thread and make it a child subreaper.  Call
 * once before any gr_exec_spawn. */
int gr_exec_init_process (void);

/* The name of a signal ("SIGSEGV"), or "signal N". */
const char *gr_signal_name (int sig, char *buf, int len);

/* A signal from "USR2", "SIGUSR2", "usr2" or "12"; -1 if none. */
int gr_parse_signal (const char *s);

/* Parse a Linux cpulist ("0-3,8,10-11") into set.  0, or -1 with EINVAL. */
int gr_cpulist_parse (const char *list, cpu_set_t *set);

#endif
