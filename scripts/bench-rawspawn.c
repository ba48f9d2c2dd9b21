/* The baseline for scripts/bench-dispatch: the fastest way to run N
 * commands on this machine with no scheduler at all.  P processes each run
 * their share of N with posix_spawn + waitpid, one at a time.
 *
 *   bench-rawspawn N P COMMAND [ARGS...]
 *
 * Prints "N tasks in S seconds: R tasks/s". */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main (int argc, char **argv)
{
    if (argc < 4) {
        fprintf (stderr, "usage: bench-rawspawn N P COMMAND [ARGS...]\n");
        return 2;
    }
    long n = atol (argv[1]);
    int p = atoi (argv[2]);
    if (n <= 0 || p <= 0) {
        fprintf (stderr, "bench-rawspawn: N and P must be positive\n");
        return 2;
    }
    double t0 = now ();
    for (int i = 0; i < p; i++) {
        pid_t pid = fork ();
        if (pid < 0) {
            perror ("fork");
            return 1;
        }
        if (pid == 0) {
            long share = n / p + (i < n % p ? 1 : 0);
            for (long k = 0; k < share; k++) {
                pid_t c;
                int st;
                if (posix_spawn (&c, argv[3], NULL, NULL, argv + 3, environ) != 0) {
                    perror ("posix_spawn");
                    _exit (1);
                }
                if (waitpid (c, &st, 0) < 0 || !WIFEXITED (st) || WEXITSTATUS (st)) {
                    fprintf (stderr, "bench-rawspawn: task failed\n");
                    _exit (1);
                }
            }
            _exit (0);
        }
    }
    int bad = 0;
    for (int i = 0; i < p; i++) {
        int st;
        if (wait (&st) < 0 || !WIFEXITED (st) || WEXITSTATUS (st))
            bad = 1;
    }
    double t = now () - t0;
    printf ("%ld tasks in %.3f seconds: %.1f tasks/s\n", n, t, (double)n / t);
    return bad;
}
