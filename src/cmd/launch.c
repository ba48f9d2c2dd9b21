/* gridrun launch: mpirun under supervision.
 *
 *   gridrun launch MPIRUN-ARGS... -- RUN-ARGS...
 *
 * runs `mpirun MPIRUN-ARGS --enable-recovery gridrun run RUN-ARGS` and
 * makes up for three facts of Open MPI 4.1, measured:
 *
 * - A SIGTERM to mpirun kills every rank about 2 s later, too soon for a
 *   drain.  SIGUSR1 and SIGUSR2 are forwarded to the ranks and kill
 *   nothing.  So mpirun runs in a process group of its own (a Ctrl-C at
 *   the terminal reaches only this launcher), and SIGTERM, SIGINT and
 *   SIGUSR2 sent here are passed on to mpirun as SIGUSR2, which every rank
 *   treats as a drain signal.
 * - With --enable-recovery (so the run survives a lost rank) mpirun's exit
 *   code is always 0.  The master writes the outcome to RUN/exit_status
 *   once everything is committed; the launcher exits with that code.
 * - After a rank is lost, mpirun or MPI_Finalize can hang.  Once
 *   exit_status exists, mpirun gets GRIDRUN_FINALIZE_GRACE seconds
 *   (default 10) to end, then SIGTERM, then SIGKILL.
 *
 * GRIDRUN_MPIRUN names the mpirun to use (default "mpirun").
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "src/common/fs.h"
#include "src/common/gtime.h"
#include "src/common/units.h"
#include "src/runtime/rundir.h"
#include "src/runtime/runtime.h"
#include "src/spec/spec.h"
#include "cmd.h"

extern char **environ;

static int usage (void)
{
    fprintf (stderr,
             "usage: gridrun launch MPIRUN-ARGS... -- RUN-ARGS...\n"
             "  e.g. gridrun launch -n 9 --hostfile hosts -- jobs/sweep.yaml --run-dir runs/s1\n"
             "Runs 'mpirun MPIRUN-ARGS --enable-recovery gridrun run RUN-ARGS', drains the\n"
             "run on SIGTERM, SIGINT or SIGUSR2, and exits with the run's exit code.\n");
    return GR_EXIT_USAGE;
}

/* The run directory RUN-ARGS name, or the default one for their spec (then
 * added to the arguments, so launcher and master agree). */
static char *find_run_dir (char **args, int n, bool *added)
{
    const char *spec_path = NULL;
    *added = false;
    for (int i = 0; i < n; i++) {
        if ((strcmp (args[i], "--run-dir") == 0 || strcmp (args[i], "-d") == 0) && i + 1 < n)
            return gr_abspath (args[i + 1]);
        if (strncmp (args[i], "--run-dir=", 10) == 0)
            return gr_abspath (args[i] + 10);
        if (args[i][0] != '-' && !spec_path && (i == 0 || args[i - 1][0] != '-'
                                                || strchr (args[i - 1], '=')))
            spec_path = args[i];
    }
    if (!spec_path)
        return NULL;
    gr_spec_t *spec;
    gr_error_t err;
    if (gr_spec_load (spec_path, &spec, &err) < 0) {
        fprintf (stderr, "gridrun: %s\n", err.text);
        return NULL;
    }
    char *dir = gr_rundir_default (spec);
    gr_spec_destroy (spec);
    *added = dir != NULL;
    return dir;
}

/* The master's pid, when master.info says it runs on this host; 0 if
 * unknown (not written yet, or another host). */
static pid_t master_pid (const char *run_dir)
{
    bool local;
    long pid = gr_rundir_master_pid (run_dir, &local);
    return local ? (pid_t)pid : 0;
}

int gr_cmd_launch (int argc, char **argv)
{
    int sep = -1;
    for (int i = 1; i < argc; i++) {
        if (strcmp (argv[i], "--") == 0) {
            sep = i;
            break;
        }
    }
    if (sep < 0 || sep == argc - 1)
        return usage ();
    char **run_args = argv + sep + 1;
    int nrun = argc - sep - 1;
    bool added;
    char *run_dir = find_run_dir (run_args, nrun, &added);
    if (!run_dir) {
        fprintf (stderr, "gridrun: launch needs a job spec or --run-dir after '--'\n");
        return GR_EXIT_USAGE;
    }
    const char *mpirun = getenv ("GRIDRUN_MPIRUN");
    if (!mpirun || !*mpirun)
        mpirun = "mpirun";
    double finalize_grace = 10;
    const char *fg = getenv ("GRIDRUN_FINALIZE_GRACE");
    if (fg && *fg && gr_parse_duration (fg, &finalize_grace) < 0) {
        fprintf (stderr, "gridrun: GRIDRUN_FINALIZE_GRACE='%s' is not a duration\n", fg);
        free (run_dir);
        return GR_EXIT_USAGE;
    }
    char self[PATH_MAX];
    ssize_t sl = readlink ("/proc/self/exe", self, sizeof (self) - 1);
    if (sl <= 0) {
        fprintf (stderr, "gridrun: cannot find the gridrun executable: %s\n",
                 strerror (errno));
        free (run_dir);
        return GR_EXIT_INTERNAL;
    }
    self[sl] = '\0';

    /* mpirun MPIRUN-ARGS --enable-recovery SELF run RUN-ARGS [--run-dir D] */
    int nargv = 0;
    char **av = calloc ((size_t)argc + 8, sizeof (char *));
    if (!av) {
        free (run_dir);
        return GR_EXIT_INTERNAL;
    }
    av[nargv++] = (char *)mpirun;
    for (int i = 1; i < sep; i++)
        av[nargv++] = argv[i];
    av[nargv++] = "--enable-recovery";
    av[nargv++] = self;
    av[nargv++] = "run";
    for (int i = 0; i < nrun; i++)
        av[nargv++] = run_args[i];
    if (added) {
        av[nargv++] = "--run-dir";
        av[nargv++] = run_dir;
    }
    av[nargv] = NULL;

    /* A stale outcome from an earlier incarnation must not end this one. */
    char path[PATH_MAX];
    unlink (gr_rundir_file (run_dir, "exit_status", path, sizeof (path)));

    sigset_t set, old;
    sigemptyset (&set);
    sigaddset (&set, SIGCHLD);
    sigaddset (&set, SIGTERM);
    sigaddset (&set, SIGINT);
    sigaddset (&set, SIGUSR2);
    sigaddset (&set, SIGHUP);
    sigprocmask (SIG_BLOCK, &set, &old);

    posix_spawnattr_t attr;
    /* The ranks write to mpirun's pipes, never to a terminal: tell the
     * master that its progress may be drawn in place (--progress auto). */
    if (isatty (STDERR_FILENO))
        setenv ("GRIDRUN_TTY", "1", 1);
    sigset_t empty;
    sigemptyset (&empty);
    posix_spawnattr_init (&attr);
    posix_spawnattr_setsigmask (&attr, &empty);
    posix_spawnattr_setpgroup (&attr, 0);
    posix_spawnattr_setflags (&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);
    pid_t pid;
    int rc = strchr (mpirun, '/') ? posix_spawn (&pid, mpirun, NULL, &attr, av, environ)
                                  : posix_spawnp (&pid, mpirun, NULL, &attr, av, environ);
    posix_spawnattr_destroy (&attr);
    free (av);
    if (rc != 0) {
        fprintf (stderr, "gridrun: cannot run '%s': %s\n", mpirun, strerror (rc));
        free (run_dir);
        return GR_EXIT_INTERNAL;
    }

    int status = 0, code = -1;
    bool exited = false, have_code = false, master_died = false;
    double committed_at = 0, termed_at = 0;
    pid_t mpid = 0;
    /* master.info is from this incarnation only once the master rewrote
     * it: remember the old one's pid to tell them apart. */
    pid_t stale = master_pid (run_dir);
    while (!exited) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 200 * 1000 * 1000};
        int sig = sigtimedwait (&set, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT || sig == SIGUSR2 || sig == SIGHUP) {
            fprintf (stderr, "gridrun: launch: signal %d: draining the run\n", sig);
            kill (pid, SIGUSR2);
        }
        pid_t w;
        while ((w = waitpid (pid, &status, WNOHANG)) < 0 && errno == EINTR)
            ;
        if (w == pid)
            exited = true;
        if (!have_code && gr_rundir_exit_status (run_dir, &code)) {
            have_code = true;
            committed_at = gr_now ();
        }
        /* With --enable-recovery nothing ends the job when the master dies:
         * the workers wait for it forever.  Notice it here. */
        if (!have_code && !master_died) {
            if (mpid <= 0) {
                pid_t p = master_pid (run_dir);
                if (p > 0 && p != stale)
                    mpid = p;
            }
            else if (kill (mpid, 0) < 0 && errno == ESRCH
                     && !gr_rundir_exit_status (run_dir, &code)) {
                fprintf (stderr, "gridrun: launch: the master (pid %d) died before "
                         "committing an outcome; stopping mpirun.  Run the same "
                         "command again to resume.\n", (int)mpid);
                master_died = true;
                have_code = true;
                code = GR_EXIT_INTERNAL;
                committed_at = gr_now () - finalize_grace + 2;
            }
        }
        if (!exited && have_code) {
            double now = gr_now ();
            if (termed_at == 0 && now - committed_at > finalize_grace) {
                fprintf (stderr, "gridrun: launch: the run has committed but mpirun "
                         "has not ended after %.0fs; stopping it\n", finalize_grace);
                kill (-pid, SIGTERM);
                termed_at = now;
            }
            else if (termed_at > 0 && now - termed_at > 5)
                kill (-pid, SIGKILL);
        }
    }
    sigprocmask (SIG_SETMASK, &old, NULL);
    if (!have_code && gr_rundir_exit_status (run_dir, &code))
        have_code = true;
    free (run_dir);
    if (have_code)
        return code;
    if (WIFEXITED (status) && WEXITSTATUS (status) != 0)
        return WEXITSTATUS (status);
    fprintf (stderr, "gridrun: launch: mpirun ended (%s %d) but the run wrote no "
             "outcome; run the same command again to resume\n",
             WIFSIGNALED (status) ? "signal" : "status",
             WIFSIGNALED (status) ? WTERMSIG (status) : WEXITSTATUS (status));
    return GR_EXIT_INTERNAL;
}
