#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
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
#include "src/common/gtime.h"

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

#define CMD_OUT_MAX 4096
#define CMD_ERR_MAX 1024

struct gr_exec_cmd {
    pid_t pid;          /* 0 once reaped */
    int status;         /* wait status, once reaped */
    bool timed_out;
    bool lost;          /* waitpid failed: someone else reaped it */
    double end;         /* gr_now () by which it must have ended */
    double timeout;
    int fd[2];          /* read ends of its stdout and stderr; -1 at EOF */
    char *buf[2];       /* what came through each, NUL-terminated */
    size_t len[2], max[2];
    char name[64];      /* argv[0], for messages */
};

gr_exec_cmd_t *gr_exec_cmd_start (gr_exec_t *ex, char *const *argv, char *const *env,
                                  double timeout, gr_error_t *errp)
{
    gr_exec_cmd_t *c = calloc (1, sizeof (*c));
    int wr[2] = {-1, -1};

    if (!c) {
        gr_errprintf (errp, "out of memory");
        return NULL;
    }
    c->fd[0] = c->fd[1] = -1;
    c->max[0] = CMD_OUT_MAX;
    c->max[1] = CMD_ERR_MAX;
    c->timeout = timeout;
    snprintf (c->name, sizeof (c->name), "%s", argv && argv[0] ? argv[0] : "");
    for (int i = 0; i < 2; i++) {
        int p[2];
        if (!(c->buf[i] = calloc (1, c->max[i] + 1))) {
            errno = ENOMEM;
            gr_errprintf (errp, "out of memory");
            goto error;
        }
        if (pipe2 (p, O_CLOEXEC) < 0) {
            gr_errprintf (errp, "cannot run '%s': pipe: %s", c->name, strerror (errno));
            goto error;
        }
        /* Only gridrun's end reads without blocking; the command writes
         * to a plain pipe. */
        c->fd[i] = p[0];
        wr[i] = p[1];
        if (fcntl (p[0], F_SETFL, O_NONBLOCK) < 0) {
            gr_errprintf (errp, "cannot run '%s': fcntl: %s", c->name, strerror (errno));
            goto error;
        }
    }
    gr_spawn_req_t req = {.argv = argv, .env = env, .stdin_fd = -1, .stdout_fd = wr[0],
                          .stderr_fd = wr[1]};
    if (gr_exec_spawn (ex, &req, &c->pid, errp) < 0)
        goto error;
    close (wr[0]);
    close (wr[1]);
    c->end = gr_now () + timeout;
    return c;
error:
    for (int i = 0; i < 2; i++)
        if (wr[i] >= 0)
            close (wr[i]);
    c->pid = 0;
    gr_exec_cmd_destroy (c); /* keeps errno */
    return NULL;
}

/* Read what is there; close a pipe at its end. */
static void cmd_read (gr_exec_cmd_t *c)
{
    char tmp[512];

    for (int i = 0; i < 2; i++) {
        while (c->fd[i] >= 0) {
            ssize_t n = read (c->fd[i], tmp, sizeof (tmp));
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && errno == EAGAIN)
                break;
            if (n <= 0) {
                close (c->fd[i]);
                c->fd[i] = -1;
                break;
            }
            size_t take = c->max[i] - c->len[i];
            if (take > (size_t)n)
                take = (size_t)n;
            memcpy (c->buf[i] + c->len[i], tmp, take);
            c->len[i] += take;
            c->buf[i][c->len[i]] = '\0';
        }
    }
}

/* The last line of s that is not blank, without blanks around it. */
static const char *last_line (const char *s, char *buf, size_t size)
{
    const char *end = s + strlen (s);
    while (end > s && strchr (" \t\r\n", end[-1]))
        end--;
    const char *start = end;
    while (start > s && start[-1] != '\n')
        start--;
    while (start < end && (*start == ' ' || *start == '\t'))
        start++;
    snprintf (buf, size, "%.*s", (int)(end - start), start);
    return buf;
}

int gr_exec_cmd_poll (gr_exec_cmd_t *c, gr_error_t *errp)
{
    char sig[32], line[256];

    if (c->pid > 0) {
        int status;
        pid_t p = waitpid (c->pid, &status, WNOHANG);
        if (p == c->pid) {
            c->pid = 0;
            c->status = status;
        }
        else if (p < 0 && errno != EINTR) {
            c->pid = 0;
            c->lost = true;
        }
    }
    cmd_read (c);
    if (c->pid > 0 && gr_now () >= c->end) {
        kill (-c->pid, SIGKILL);
        while (waitpid (c->pid, &c->status, 0) < 0 && errno == EINTR)
            ;
        c->pid = 0;
        c->timed_out = true;
    }
    if (c->pid > 0)
        return 0;
    if (c->lost) {
        errno = ECHILD;
        return gr_errprintf (errp, "'%s' was reaped elsewhere: its exit status is lost",
                             c->name);
    }
    if (c->timed_out) {
        errno = ETIMEDOUT;
        return gr_errprintf (errp, "'%s' did not answer within %g s and was killed",
                             c->name, c->timeout);
    }
    if (WIFEXITED (c->status) && WEXITSTATUS (c->status) == 0)
        return 1;
    last_line (c->buf[1], line, sizeof (line));
    errno = EIO;
    if (WIFSIGNALED (c->status))
        return gr_errprintf (errp, "'%s' was killed by %s%s%s", c->name,
                             gr_signal_name (WTERMSIG (c->status), sig, sizeof (sig)),
                             *line ? ": " : "", line);
    return gr_errprintf (errp, "'%s' exited with status %d%s%s", c->name,
                         WEXITSTATUS (c->status), *line ? ": " : "", line);
}

int gr_exec_cmd_wait (gr_exec_cmd_t *c, gr_error_t *errp)
{
    for (;;) {
        int rc = gr_exec_cmd_poll (c, errp);
        if (rc != 0)
            return rc;
        /* Woken by output or by the pipes' end at its exit; the reap
         * itself can lag the end of the pipes by a moment. */
        struct pollfd p[2];
        nfds_t n = 0;
        for (int i = 0; i < 2; i++)
            if (c->fd[i] >= 0)
                p[n++] = (struct pollfd){.fd = c->fd[i], .events = POLLIN};
        double left = c->end - gr_now ();
        int ms = left > 0.1 ? 100 : left > 0 ? (int)(left * 1000) + 1 : 0;
        if (n > 0)
            (void)poll (p, n, ms);
        else
            gr_sleep (ms < 10 ? ms / 1000.0 : 0.01);
    }
}

const char *gr_exec_cmd_last_line (const gr_exec_cmd_t *c, char *buf, size_t size)
{
    return last_line (c->buf[0], buf, size);
}

void gr_exec_cmd_destroy (gr_exec_cmd_t *c)
{
    if (!c)
        return;
    int saved = errno;
    if (c->pid > 0) {
        kill (-c->pid, SIGKILL);
        while (waitpid (c->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    for (int i = 0; i < 2; i++) {
        if (c->fd[i] >= 0)
            close (c->fd[i]);
        free (c->buf[i]);
    }
    free (c);
    errno = saved;
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
