#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_main.h"
#include "src/common/gtime.h"
#include "src/exec/exec.h"

static char tmpdir[64];

static void setup (void)
{
    strcpy (tmpdir, "/tmp/gr-exec-XXXXXX");
    ck_assert_ptr_nonnull (mkdtemp (tmpdir));
    ck_assert_int_eq (gr_exec_init_process (), 0);
}

static void teardown (void)
{
    char cmd[128];
    snprintf (cmd, sizeof (cmd), "rm -rf '%s'", tmpdir);
    if (system (cmd) != 0)
        fprintf (stderr, "cleanup failed\n");
}

/* Wait (bounded) for pid to exit and return its status. */
static int wait_for (pid_t pid, struct rusage *ru)
{
    double end = gr_now () + 10;
    while (gr_now () < end) {
        pid_t got;
        int status;
        struct rusage r;
        int rc = gr_exec_reap (&got, &status, &r);
        ck_assert_int_ge (rc, 0);
        if (rc == 1 && got == pid) {
            if (ru)
                *ru = r;
            return status;
        }
        if (rc == 0)
            gr_exec_wait (0.05);
    }
    ck_abort_msg ("child %d did not exit", (int)pid);
    return -1;
}

static char *slurp (const char *path)
{
    static char buf[8192];
    int fd = open (path, O_RDONLY);
    ck_assert_int_ge (fd, 0);
    ssize_t n = read (fd, buf, sizeof (buf) - 1);
    ck_assert_int_ge (n, 0);
    buf[n] = '\0';
    close (fd);
    return buf;
}

START_TEST (test_spawn_output_env_cwd)
{
    gr_error_t e;
    gr_exec_t *ex;
    char out[128];
    pid_t pid;

    setenv ("OMPI_COMM_WORLD_RANK", "3", 1);
    setenv ("PMIX_RANK", "3", 1);
    setenv ("GR_KEEP_ME", "kept", 1);
    setenv ("GR_OVERRIDE", "old", 1);
    ck_assert_ptr_nonnull ((ex = gr_exec_create (&e)));
    snprintf (out, sizeof (out), "%s/out", tmpdir);
    int fd = open (out, O_RDWR | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge (fd, 0);
    char *argv[] = {"sh", "-c",
                    "pwd; echo \"$GR_KEEP_ME $GR_OVERRIDE $GR_NEW\"; "
                    "echo \"[${OMPI_COMM_WORLD_RANK}${PMIX_RANK}]\"; echo err >&2",
                    NULL};
    char *env[] = {"GR_OVERRIDE=new", "GR_NEW=added", NULL};
    gr_spawn_req_t req = {.argv = argv, .env = env, .cwd = tmpdir,
                          .stdin_fd = -1, .stdout_fd = fd, .stderr_fd = fd};
    ck_assert_int_eq (gr_exec_spawn (ex, &req, &pid, &e), 0);
    int status = wait_for (pid, NULL);
    ck_assert (WIFEXITED (status) && WEXITSTATUS (status) == 0);
    close (fd);
    char expect[512];
    char real[256];
    ck_assert_ptr_nonnull (realpath (tmpdir, real));
    snprintf (expect, sizeof (expect), "%s\nkept new added\n[]\nerr\n", real);
    ck_assert_str_eq (slurp (out), expect);
    gr_exec_destroy (ex);
}
END_TEST

START_TEST (test_no_inherited_fds)
{
    gr_error_t e;
    gr_exec_t *ex = gr_exec_create (&e);
    char out[128];
    pid_t pid;
    ck_assert_ptr_nonnull (ex);

    /* An fd without close-on-exec, as MPI leaves its sockets. */
    int leak = dup2 (STDERR_FILENO, 100);
    ck_assert_int_eq (leak, 100);
    snprintf (out, sizeof (out), "%s/fds", tmpdir);
    int fd = open (out, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge (fd, 0);
    char *argv[] = {"/bin/sh", "-c", "cd /proc/$$/fd && echo *", NULL};
    gr_spawn_req_t req = {.argv = argv, .stdin_fd = -1, .stdout_fd = fd, .stderr_fd = fd};
    ck_assert_int_eq (gr_exec_spawn (ex, &req, &pid, &e), 0);
    int status = wait_for (pid, NULL);
    ck_assert (WIFEXITED (status) && WEXITSTATUS (status) == 0);
    close (fd);
    close (leak);
    /* The shell lists 0-2, plus the fd it reads the directory with. */
    const char *fds = slurp (out);
    ck_assert_msg (strncmp (fds, "0 1 2", 5) == 0, "fds: %s", fds);
    ck_assert_msg (strstr (fds, "100") == NULL, "fd 100 was inherited: %s", fds);
    gr_exec_destroy (ex);
}
END_TEST

START_TEST (test_spawn_errors)
{
    gr_error_t e;
    gr_exec_t *ex = gr_exec_create (&e);
    pid_t pid;
    ck_assert_ptr_nonnull (ex);

    char *argv[] = {"gr-no-such-command-xyz", NULL};
    gr_spawn_req_t req = {.argv = argv, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1};
    char *argv2[] = {"true", NULL};
    gr_spawn_req_t req2 = {.argv = argv2, .cwd = "/nonexistent-dir-xyz",
                           .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1};
    if (getenv ("GR_TEST_VALGRIND")) {
        /* Under valgrind posix_spawn's child (a vfork) runs as a fork,
         * whose failed exec never reaches the parent: it exits 127. */
        ck_assert_int_eq (gr_exec_spawn (ex, &req, &pid, &e), 0);
        ck_assert_int_eq (WEXITSTATUS (wait_for (pid, NULL)), 127);
        ck_assert_int_eq (gr_exec_spawn (ex, &req2, &pid, &e), 0);
        ck_assert_int_eq (WEXITSTATUS (wait_for (pid, NULL)), 127);
    }
    else {
        errno = 0;
        ck_assert_int_eq (gr_exec_spawn (ex, &req, &pid, &e), -1);
        ck_assert_int_eq (errno, ENOENT);
        ck_assert_ptr_nonnull (strstr (e.text, "gr-no-such-command-xyz"));
        ck_assert_int_eq (gr_exec_spawn (ex, &req2, &pid, &e), -1);
        ck_assert_ptr_nonnull (strstr (e.text, "/nonexistent-dir-xyz"));
    }

    char *argv3[] = {NULL};
    gr_spawn_req_t req3 = {.argv = argv3, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1};
    ck_assert_int_eq (gr_exec_spawn (ex, &req3, &pid, &e), -1);
    gr_exec_destroy (ex);
}
END_TEST

/* Commands exec cannot take fail before anything starts, with E2BIG and
 * the sizes, not with posix_spawn's bare E2BIG. */
START_TEST (test_spawn_too_long)
{
    gr_error_t e;
    gr_exec_t *ex;
    pid_t pid = 0;
    size_t strmax = gr_exec_arg_strlen_max ();
    char *big = malloc (strmax + 1);
    char *argv[64] = {(char *)"/bin/true", big, NULL};
    char *env[] = {NULL, NULL};
    struct rlimit rl;

    ck_assert_ptr_nonnull (big);
    ck_assert_uint_ge (strmax, 32 * 4096);
    ck_assert_uint_ge (gr_exec_arg_max (), GR_EXEC_ARG_MAX_MIN);
    ck_assert_uint_le (gr_exec_arg_max (), GR_EXEC_ARG_MAX_CAP);
    ck_assert_ptr_nonnull ((ex = gr_exec_create (&e)));

    /* One argument of MAX_ARG_STRLEN bytes, NUL not counted: one too many. */
    memset (big, 'a', strmax);
    big[strmax] = '\0';
    gr_spawn_req_t req = {.argv = argv, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1};
    ck_assert_int_eq (gr_exec_spawn (ex, &req, &pid, &e), -1);
    ck_assert_int_eq (errno, E2BIG);
    ck_assert_msg (strstr (e.text, "argument 1 of the command") && strstr (e.text, "MAX_ARG_STRLEN"),
                   "%s", e.text);
    ck_assert_int_eq (gr_exec_check_size (argv, NULL, &e), -1);

    /* One less runs. */
    big[strmax - 1] = '\0';
    ck_assert_int_eq (gr_exec_spawn (ex, &req, &pid, &e), 0);
    ck_assert_int_eq (WEXITSTATUS (wait_for (pid, NULL)), 0);

    /* An environment variable. */
    argv[1] = NULL;
    memcpy (big, "BIG=", 4);
    big[strmax - 1] = 'b';
    env[0] = big;
    req.env = env;
    ck_assert_int_eq (gr_exec_spawn (ex, &req, &pid, &e), -1);
    ck_assert_int_eq (errno, E2BIG);
    ck_assert_msg (strstr (e.text, "environment variable BIG is"), "%s", e.text);
    req.env = NULL;

    /* All of them over ARG_MAX: a 1 MiB stack makes it 256 KiB. */
    ck_assert_int_eq (getrlimit (RLIMIT_STACK, &rl), 0);
    rl.rlim_cur = 1024 * 1024;
    ck_assert_int_eq (setrlimit (RLIMIT_STACK, &rl), 0);
    ck_assert_uint_eq (gr_exec_arg_max (), 256 * 1024);
    big[20000] = '\0';
    for (int i = 1; i < 20; i++)
        argv[i] = big;
    argv[20] = NULL;
    ck_assert_int_eq (gr_exec_spawn (ex, &req, &pid, &e), -1);
    ck_assert_int_eq (errno, E2BIG);
    ck_assert_msg (strstr (e.text, "the command and its environment take")
                       && strstr (e.text, "over this system's limit of 262144 bytes (ARG_MAX"),
                   "%s", e.text);
    argv[12] = NULL;
    ck_assert_int_eq (gr_exec_check_size (argv, NULL, &e), 0);
    ck_assert_int_eq (gr_exec_spawn (ex, &req, &pid, &e), 0);
    ck_assert_int_eq (WEXITSTATUS (wait_for (pid, NULL)), 0);
    gr_exec_destroy (ex);
    free (big);
}
END_TEST

START_TEST (test_group_kill_and_status)
{
    gr_error_t e;
    gr_exec_t *ex = gr_exec_create (&e);
    char pidfile[128], script[512];
    pid_t pid;
    ck_assert_ptr_nonnull (ex);

    /* The task starts a grandchild and both sleep; killing the group must
     * take both. */
    snprintf (pidfile, sizeof (pidfile), "%s/pids", tmpdir);
    snprintf (script, sizeof (script), "sleep 60 & echo $! > %s; wait", pidfile);
    char *argv[] = {"sh", "-c", script, NULL};
    gr_spawn_req_t req = {.argv = argv, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1};
    ck_assert_int_eq (gr_exec_spawn (ex, &req, &pid, &e), 0);
    ck_assert_int_eq (getpgid (pid), pid);
    double end = gr_now () + 10;
    struct stat st;
    while ((stat (pidfile, &st) < 0 || st.st_size == 0) && gr_now () < end)
        gr_sleep (0.01);
    int gpid = atoi (slurp (pidfile));
    ck_assert_int_gt (gpid, 0);
    ck_assert_int_eq (getpgid (gpid), pid);
    ck_assert_int_eq (gr_exec_kill_group (pid, SIGKILL), 0);
    int status = wait_for (pid, NULL);
    ck_assert (WIFSIGNALED (status) && WTERMSIG (status) == SIGKILL);
    /* The grandchild is gone too (reaped by us as subreaper, or by init). */
    end = gr_now () + 10;
    while (kill (gpid, 0) == 0 && gr_now () < end) {
        pid_t got;
        int st2;
        struct rusage ru;
        gr_exec_reap (&got, &st2, &ru);
        gr_sleep (0.01);
    }
    ck_assert_int_eq (kill (gpid, 0), -1);
    ck_assert_int_eq (gr_exec_kill_group (pid, SIGKILL), 0); /* ESRCH is fine */

    /* Exit codes, signals and rusage come back. */
    char *argv2[] = {"sh", "-c", "exit 7", NULL};
    req.argv = argv2;
    ck_assert_int_eq (gr_exec_spawn (ex, &req, &pid, &e), 0);
    status = wait_for (pid, NULL);
    ck_assert (WIFEXITED (status) && WEXITSTATUS (status) == 7);
    char *argv3[] = {"sh", "-c", "kill -SEGV $$", NULL};
    req.argv = argv3;
    struct rusage ru;
    ck_assert_int_eq (gr_exec_spawn (ex, &req, &pid, &e), 0);
    status = wait_for (pid, &ru);
    ck_assert (WIFSIGNALED (status) && WTERMSIG (status) == SIGSEGV);
    ck_assert_int_gt (ru.ru_maxrss, 0);
    char name[32];
    ck_assert_str_eq (gr_signal_name (SIGSEGV, name, sizeof (name)), "SIGSEGV");
    ck_assert_int_eq (gr_parse_signal ("USR2"), SIGUSR2);
    ck_assert_int_eq (gr_parse_signal ("SIGusr1"), SIGUSR1);
    ck_assert_int_eq (gr_parse_signal ("15"), SIGTERM);
    ck_assert_int_eq (gr_parse_signal ("SIGNOPE"), -1);
    ck_assert_int_eq (gr_parse_signal ("0"), -1);
    ck_assert_int_eq (gr_parse_signal (""), -1);
    gr_exec_destroy (ex);
}
END_TEST

START_TEST (test_wait_wakes)
{
    gr_error_t e;
    gr_exec_t *ex = gr_exec_create (&e);
    pid_t pid;
    char *argv[] = {"true", NULL};
    gr_spawn_req_t req = {.argv = argv, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1};
    ck_assert_ptr_nonnull (ex);
    ck_assert_int_eq (gr_exec_spawn (ex, &req, &pid, &e), 0);
    double t0 = gr_now ();
    ck_assert_int_eq (gr_exec_wait (5.0), 1);
    ck_assert (gr_now () - t0 < 4.0 * gr_test_time_scale ());
    wait_for (pid, NULL);
    /* With no child changing state it times out. */
    ck_assert_int_eq (gr_exec_wait (0.05), 0);
    gr_exec_destroy (ex);
}
END_TEST

/* A short command read through pipes (squeue, for the Slurm end time):
 * its last stdout line, its status and stderr in the error, a program
 * that is not there, and a command that runs past its time. */
START_TEST (test_cmd)
{
    gr_error_t e;
    gr_exec_t *ex = gr_exec_create (&e);
    gr_exec_cmd_t *c;
    char line[64];
    ck_assert_ptr_nonnull (ex);

    char *ok[] = {"sh", "-c", "echo 'CLUSTER: x'; echo \"  $GR_X  \"; echo note >&2", NULL};
    char *env[] = {"GR_X=2026-11-22T03:04:05", NULL};
    ck_assert_ptr_nonnull (c = gr_exec_cmd_start (ex, ok, env, 10, &e));
    ck_assert_int_eq (gr_exec_cmd_wait (c, &e), 1);
    ck_assert_str_eq (gr_exec_cmd_last_line (c, line, sizeof (line)), "2026-11-22T03:04:05");
    /* Asked again, it says the same. */
    ck_assert_int_eq (gr_exec_cmd_poll (c, &e), 1);
    gr_exec_cmd_last_line (c, line, 5);
    ck_assert_str_eq (line, "2026");
    gr_exec_cmd_destroy (c);

    char *fails[] = {"sh", "-c", "echo out; printf 'first\\nslurm_load_jobs error: "
                                 "Invalid job id specified\\n\\n' >&2; exit 3", NULL};
    ck_assert_ptr_nonnull (c = gr_exec_cmd_start (ex, fails, NULL, 10, &e));
    ck_assert_int_eq (gr_exec_cmd_wait (c, &e), -1);
    ck_assert_str_eq (e.text, "'sh' exited with status 3: slurm_load_jobs error: Invalid "
                              "job id specified");
    ck_assert_int_eq (gr_exec_cmd_poll (c, &e), -1);
    gr_exec_cmd_destroy (c);

    char *killed[] = {"sh", "-c", "kill -TERM $$", NULL};
    ck_assert_ptr_nonnull (c = gr_exec_cmd_start (ex, killed, NULL, 10, &e));
    ck_assert_int_eq (gr_exec_cmd_wait (c, &e), -1);
    ck_assert_str_eq (e.text, "'sh' was killed by SIGTERM");
    gr_exec_cmd_destroy (c);

    char *missing[] = {"gr-no-such-program", NULL};
    errno = 0;
    ck_assert_ptr_null (gr_exec_cmd_start (ex, missing, NULL, 10, &e));
    ck_assert_int_eq (errno, ENOENT);
    ck_assert_ptr_nonnull (strstr (e.text, "cannot run 'gr-no-such-program'"));

    /* Polling does not block; past its time the command is killed, its
     * whole process group with it. */
    char *hangs[] = {"sh", "-c", "sleep 30 & sleep 30", NULL};
    double t0 = gr_now ();
    ck_assert_ptr_nonnull (c = gr_exec_cmd_start (ex, hangs, NULL, 0.3, &e));
    ck_assert_int_eq (gr_exec_cmd_poll (c, &e), 0);
    ck_assert (gr_now () - t0 < 0.25);
    ck_assert_int_eq (gr_exec_cmd_wait (c, &e), -1);
    ck_assert_int_eq (errno, ETIMEDOUT);
    ck_assert_str_eq (e.text, "'sh' did not answer within 0.3 s and was killed");
    ck_assert (gr_now () - t0 < 5.0 * gr_test_time_scale ());
    gr_exec_cmd_destroy (c);

    /* Destroyed while it runs: killed and reaped, no child left. */
    char *sleeps[] = {"sleep", "30", NULL};
    ck_assert_ptr_nonnull (c = gr_exec_cmd_start (ex, sleeps, NULL, 60, &e));
    gr_exec_cmd_destroy (c);
    gr_exec_cmd_destroy (NULL);
    /* The background sleep of "hangs" died with its group and came to
     * us (subreaper); once it is reaped, no child is left. */
    pid_t got;
    int status, rc = 0;
    struct rusage ru;
    for (int i = 0; i < 200 && (rc = gr_exec_reap (&got, &status, &ru)) >= 0; i++)
        if (rc == 0)
            gr_exec_wait (0.05);
    ck_assert_int_eq (rc, -1);
    ck_assert_int_eq (errno, ECHILD);
    gr_exec_destroy (ex);
}
END_TEST

int main (void)
{
    Suite *s = suite_create ("exec");
    TCase *tc = tcase_create ("exec");
    tcase_add_checked_fixture (tc, setup, teardown);
    tcase_set_timeout (tc, 30);
    tcase_add_test (tc, test_spawn_output_env_cwd);
    tcase_add_test (tc, test_no_inherited_fds);
    tcase_add_test (tc, test_spawn_errors);
    tcase_add_test (tc, test_spawn_too_long);
    tcase_add_test (tc, test_group_kill_and_status);
    tcase_add_test (tc, test_wait_wakes);
    tcase_add_test (tc, test_cmd);
    suite_add_tcase (s, tc);
    return gr_check_main (s);
}
