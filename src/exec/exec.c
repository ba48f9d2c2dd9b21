#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#if HAVE_SYS_PRCTL_H
#include <sys/prctl.h>
#endif

#include "exec.h"

extern char **environ;

struct gr_exec {
    char **base;        /* the filtered base environment (borrowed strings) */
    size_t nbase;
    char **envp;        /* scratch: the environment of one spawn */
    size_t envcap;
    int devnull;
    posix_spawnattr_t attr;
};

static bool env_is_mpi (const char *e)
{
    return strncmp (e, "OMPI_", 5) == 0 || strncmp (e, "PMIX_", 5) == 0
        || strncmp (e, "OPAL_", 5) == 0 || strncmp (e, "PMI_", 4) == 0
        || strncmp (e, "ORTE_", 5) == 0;
}

gr_exec_t *gr_exec_create (gr_error_t *errp)
{
    gr_exec_t *ex = calloc (1, sizeof (*ex));
    sigset_t empty, def;
    size_t n = 0;

    if (!ex)
        goto nomem;
    ex->devnull = -1;
    for (char **e = environ; *e; e++)
        n++;
    if (!(ex->base = calloc (n + 1, sizeof (char *))))
        goto nomem;
    for (char **e = environ; *e; e++) {
        if (!env_is_mpi (*e))
            ex->base[ex->nbase++] = *e;
    }
    if ((ex->devnull = open ("/dev/null", O_RDWR | O_CLOEXEC)) < 0) {
        gr_errprintf (errp, "cannot open /dev/null: %s", strerror (errno));
        goto error;
    }
    /* A new process group led by the child, default signal dispositions
     * for the signals gridrun handles, and nothing blocked. */
    posix_spawnattr_init (&ex->attr);
    sigemptyset (&empty);
    sigemptyset (&def);
    sigaddset (&def, SIGTERM);
    sigaddset (&def, SIGINT);
    sigaddset (&def, SIGHUP);
    sigaddset (&def, SIGPIPE);
    sigaddset (&def, SIGCHLD);
    sigaddset (&def, SIGUSR1);
    sigaddset (&def, SIGUSR2);
    sigaddset (&def, SIGQUIT);
    posix_spawnattr_setsigmask (&ex->attr, &empty);
    posix_spawnattr_setsigdefault (&ex->attr, &def);
    posix_spawnattr_setpgroup (&ex->attr, 0);
    posix_spawnattr_setflags (&ex->attr, POSIX_SPAWN_SETPGROUP
                                             | POSIX_SPAWN_SETSIGMASK
                                             | POSIX_SPAWN_SETSIGDEF);
    return ex;
nomem:
    errno = ENOMEM;
    gr_errprintf (errp, "out of memory");
error:
    gr_exec_destroy (ex);
    return NULL;
}

void gr_exec_destroy (gr_exec_t *ex)
{
    if (!ex)
        return;
    int saved = errno;
    if (ex->devnull >= 0) {
        close (ex->devnull);
        posix_spawnattr_destroy (&ex->attr);
    }
    free (ex->base);
    free (ex->envp);
    free (ex);
    errno = saved;
}

static size_t env_keylen (const char *e)
{
    const char *eq = strchr (e, '=');
    return eq ? (size_t)(eq - e) : strlen (e);
}

/* The task's additions first, then every base entry they do not override. */
static char **build_env (gr_exec_t *ex, char *const *add)
{
    size_t nadd = 0;
    if (add)
        while (add[nadd])
            nadd++;
    if (nadd == 0)
        return ex->base;
    size_t need = nadd + ex->nbase + 1;
    if (need > ex->envcap) {
        char **p = realloc (ex->envp, need * sizeof (char *));
        if (!p)
            return NULL;
        ex->envp = p;
        ex->envcap = need;
    }
    size_t n = 0;
    for (size_t i = 0; i < nadd; i++)
        ex->envp[n++] = add[i];
    for (size_t i = 0; i < ex->nbase; i++) {
        const char *b = ex->base[i];
        size_t bl = env_keylen (b);
        bool overridden = false;
        for (size_t j = 0; j < nadd; j++) {
            if (env_keylen (add[j]) == bl && memcmp (add[j], b, bl) == 0) {
                overridden = true;
                break;
            }
        }
        if (!overridden)
            ex->envp[n++] = (char *)b;
    }
    ex->envp[n] = NULL;
    return ex->envp;
}

size_t gr_exec_arg_max (void)
{
    long argmax = sysconf (_SC_ARG_MAX);
    size_t limit = argmax > 0 ? (size_t)argmax : GR_EXEC_ARG_MAX_MIN;

    /* glibc says a quarter of the stack limit, which may be unlimited;
     * the kernel also holds it to 3/4 of _STK_LIM (8 MiB) and to at
     * least 32 pages. */
    if (limit > GR_EXEC_ARG_MAX_CAP)
        limit = GR_EXEC_ARG_MAX_CAP;
    if (limit < GR_EXEC_ARG_MAX_MIN)
        limit = GR_EXEC_ARG_MAX_MIN;
    return limit;
}

size_t gr_exec_arg_strlen_max (void)
{
    long page = sysconf (_SC_PAGESIZE);

    /* MAX_ARG_STRLEN: 32 pages, the NUL included. */
    return (size_t)(page > 0 ? page : 4096) * 32;
}

/* What execve counts against its limits: each argument and environment
 * string with its NUL, a pointer for each, and the program's path.  A
 * command too long to run fails here with the sizes said, rather than
 * with posix_spawn's bare E2BIG.  envp2 (may be NULL) is more of the
 * environment. */
static int check_exec_size (const char *path, char *const *argv, char *const *envp,
                            char *const *envp2, gr_error_t *errp)
{
    size_t strmax = gr_exec_arg_strlen_max (), limit = gr_exec_arg_max ();
    size_t total = strlen (path) + 1, nargs = 0, nenv = 0, l;
    static char *const none[] = {NULL};

    for (; argv[nargs]; nargs++) {
        if ((l = strlen (argv[nargs]) + 1) > strmax) {
            errno = E2BIG;
            return gr_errprintf (errp, "argument %zu of the command (the program is 0) is %zu "
                                       "bytes, over the %zu bytes one argument may have "
                                       "(MAX_ARG_STRLEN, less 1); pass long values through a "
                                       "file",
                                 nargs, l - 1, strmax - 1);
        }
        total += l + sizeof (char *);
    }
    for (int k = 0; k < 2; k++) {
        char *const *e = k == 0 ? envp : envp2 ? envp2 : none;
        for (; *e; e++, nenv++) {
            if ((l = strlen (*e) + 1) > strmax) {
                errno = E2BIG;
                return gr_errprintf (errp, "environment variable %.*s is %zu bytes, over the "
                                           "%zu bytes one variable may have (MAX_ARG_STRLEN, "
                                           "less 1); pass long values through a file",
                                     (int)strcspn (*e, "="), *e, l - 1, strmax - 1);
            }
            total += l + sizeof (char *);
        }
    }
    total += 2 * sizeof (char *);
    if (total > limit) {
        errno = E2BIG;
        return gr_errprintf (errp, "the command and its environment take %zu bytes (%zu "
                                   "arguments, %zu environment variables), over this system's "
                                   "limit of %zu bytes (ARG_MAX, a quarter of the stack size "
                                   "limit: ulimit -s); pass long lists through a file",
                             total, nargs, nenv, limit);
    }
    return 0;
}

int gr_exec_check_size (char *const *argv, char *const *env, gr_error_t *errp)
{
    static char *const none[] = {NULL};

    if (!argv || !argv[0])
        return 0;
    return check_exec_size (argv[0], argv, environ, env ? env : none, errp);
}

int gr_exec_spawn (gr_exec_t *ex, const gr_spawn_req_t *req, pid_t *pidp,
                   gr_error_t *errp)
{
    posix_spawn_file_actions_t fa;
    char **envp;
    int rc;
    int in = req->stdin_fd >= 0 ? req->stdin_fd : ex->devnull;
    int out = req->stdout_fd >= 0 ? req->stdout_fd : ex->devnull;
    int err = req->stderr_fd >= 0 ? req->stderr_fd : ex->devnull;

    if (!req->argv || !req->argv[0]) {
        errno = EINVAL;
        return gr_errprintf (errp, "empty command");
    }
    if (!(envp = build_env (ex, req->env))) {
        errno = ENOMEM;
        return gr_errprintf (errp, "out of memory");
    }
    if (check_exec_size (req->argv[0], req->argv, envp, NULL, errp) < 0)
        return -1;
    posix_spawn_file_actions_init (&fa);
    /* dup2 clears close-on-exec on the target, so the task sees exactly
     * fds 0-2; everything gridrun opens is O_CLOEXEC. */
    posix_spawn_file_actions_adddup2 (&fa, in, 0);
    posix_spawn_file_actions_adddup2 (&fa, out, 1);
    posix_spawn_file_actions_adddup2 (&fa, err, 2);
#if HAVE_POSIX_SPAWN_FILE_ACTIONS_ADDCLOSEFROM_NP
    /* MPI opens sockets and shared-memory files without close-on-exec; a
     * task must not inherit them (it would keep the worker's listening
     * sockets open), so the task starts with fds 0-2 only. */
    posix_spawn_file_actions_addclosefrom_np (&fa, 3);
#endif
#if HAVE_POSIX_SPAWN_FILE_ACTIONS_ADDCHDIR_NP
    if (req->cwd)
        posix_spawn_file_actions_addchdir_np (&fa, req->cwd);
#else
    if (req->cwd) {
        posix_spawn_file_actions_destroy (&fa);
        errno = ENOSYS;
        return gr_errprintf (errp, "cwd is not supported on this system");
    }
#endif
    /* The child is cloned from this thread and keeps its CPU mask, so the
     * thread takes the task's mask for the spawn and gives it back. */
    cpu_set_t saved;
    bool bound = false;
    if (req->cpus) {
        if (sched_getaffinity (0, sizeof (saved), &saved) == 0
            && sched_setaffinity (0, sizeof (*req->cpus), req->cpus) == 0)
            bound = true;
        else {
            int e = errno;
            posix_spawn_file_actions_destroy (&fa);
            errno = e;
            return gr_errprintf (errp, "cannot bind the task to its cpus: %s",
                                 strerror (e));
        }
    }
    if (strchr (req->argv[0], '/'))
        rc = posix_spawn (pidp, req->argv[0], &fa, &ex->attr, req->argv, envp);
    else
        rc = posix_spawnp (pidp, req->argv[0], &fa, &ex->attr, req->argv, envp);
    if (bound)
        sched_setaffinity (0, sizeof (saved), &saved);
    posix_spawn_file_actions_destroy (&fa);
    if (rc != 0) {
        errno = rc;
        if (req->cwd && (rc == ENOENT || rc == ENOTDIR)
            && access (req->cwd, X_OK) < 0)
            return gr_errprintf (errp, "cannot enter cwd '%s': %s", req->cwd,
                                 strerror (rc));
        return gr_errprintf (errp, "cannot run '%s': %s", req->argv[0],
                             strerror (rc));
    }
    return 0;
}

int gr_exec_reap (pid_t *pidp, int *statusp, struct rusage *ru)
{
    for (;;) {
        pid_t pid = wait4 (-1, statusp, WNOHANG, ru);
        if (pid > 0) {
            *pidp = pid;
            return 1;
        }
        if (pid == 0)
            return 0;
        if (errno == EINTR)
            continue;
        return -1;
    }
}

int gr_exec_kill_group (pid_t pgid, int sig)
{
    if (pgid <= 1) {
        errno = EINVAL;
        return -1;
    }
    if (kill (-pgid, sig) < 0 && errno != ESRCH)
        return -1;
    return 0;
}

int gr_exec_init_process (void)
{
    sigset_t set;
    sigemptyset (&set);
    sigaddset (&set, SIGCHLD);
    if (sigprocmask (SIG_BLOCK, &set, NULL) < 0)
        return -1;
#if HAVE_SYS_PRCTL_H && defined(PR_SET_CHILD_SUBREAPER)
    (void)prctl (PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
#endif
    return 0;
}

int gr_exec_wait (double timeout)
{
    sigset_t set;
    struct timespec ts;
    if (timeout < 0)
        timeout = 0;
    ts.tv_sec = (time_t)timeout;
    ts.tv_nsec = (long)((timeout - (double)ts.tv_sec) * 1e9);
    sigemptyset (&set);
    sigaddset (&set, SIGCHLD);
    for (;;) {
        int rc = sigtimedwait (&set, NULL, &ts);
        if (rc == SIGCHLD)
            return 1;
        if (rc < 0 && errno == EINTR)
            return 0;
        return 0;
    }
}

const char *gr_signal_name (int sig, char *buf, int len)
{
    const char *abbrev = sigabbrev_np (sig);
    if (abbrev)
        snprintf (buf, len, "SIG%s", abbrev);
    else
        snprintf (buf, len, "signal %d", sig);
    return buf;
}

int gr_parse_signal (const char *s)
{
    char *end;
    if (!s || !*s)
        return -1;
    long n = strtol (s, &end, 10);
    if (*end == '\0')
        return n > 0 && n < NSIG ? (int)n : -1;
    if (strncasecmp (s, "SIG", 3) == 0)
        s += 3;
    for (int sig = 1; sig < NSIG; sig++) {
        const char *abbrev = sigabbrev_np (sig);
        if (abbrev && strcasecmp (abbrev, s) == 0)
            return sig;
    }
    return -1;
}

int gr_cpulist_parse (const char *list, cpu_set_t *set)
{
    const char *p = list;
    CPU_ZERO (set);
    if (!p || !*p)
        goto inval;
    while (*p) {
        char *end;
        long a = strtol (p, &end, 10), b;
        if (end == p || a < 0 || a >= CPU_SETSIZE)
            goto inval;
        b = a;
        p = end;
        if (*p == '-') {
            b = strtol (p + 1, &end, 10);
            if (end == p + 1 || b < a || b >= CPU_SETSIZE)
                goto inval;
            p = end;
        }
        for (long c = a; c <= b; c++)
            CPU_SET ((int)c, set);
        if (*p == ',')
            p++;
        else if (*p)
            goto inval;
    }
    return 0;
inval:
    errno = EINVAL;
    return -1;
}
