/* Small behaviours the integration tests run as tasks. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int usage (void)
{
    fprintf (stderr,
             "usage: gr-tool argv ARGS...        print each argument as hex, one a line\n"
             "       gr-tool fail-until N FILE   exit 3 until run N times (counts in FILE)\n"
             "       gr-tool segv                die of SIGSEGV\n"
             "       gr-tool exit N              exit with status N\n"
             "       gr-tool tree PIDFILE SECS   start a grandchild sleep, record pids, sleep\n");
    return 2;
}

int main (int argc, char **argv)
{
    if (argc < 2)
        return usage ();
    if (strcmp (argv[1], "argv") == 0) {
        for (int i = 2; i < argc; i++) {
            for (const unsigned char *p = (const unsigned char *)argv[i]; *p; p++)
                printf ("%02x", *p);
            printf ("\n");
        }
        return 0;
    }
    if (strcmp (argv[1], "fail-until") == 0 && argc == 4) {
        int n = atoi (argv[2]);
        int fd = open (argv[3], O_RDWR | O_CREAT, 0600);
        char buf[32] = "";
        if (fd < 0)
            return 100;
        ssize_t r = read (fd, buf, sizeof (buf) - 1);
        int count = r > 0 ? atoi (buf) + 1 : 1;
        int len = snprintf (buf, sizeof (buf), "%d\n", count);
        if (pwrite (fd, buf, (size_t)len, 0) != len)
            return 101;
        close (fd);
        printf ("run %d of %d\n", count, n);
        return count >= n ? 0 : 3;
    }
    if (strcmp (argv[1], "segv") == 0) {
        fflush (stdout);
        raise (SIGSEGV);
        return 1;
    }
    if (strcmp (argv[1], "exit") == 0 && argc == 3)
        return atoi (argv[2]);
    if (strcmp (argv[1], "tree") == 0 && argc == 4) {
        pid_t pid = fork ();
        if (pid < 0)
            return 102;
        if (pid == 0) {
            /* The grandchild: a plain sleep that knows nothing of gridrun. */
            execlp ("sleep", "sleep", argv[3], (char *)NULL);
            _exit (127);
        }
        FILE *f = fopen (argv[2], "w");
        if (!f)
            return 103;
        fprintf (f, "%d %d\n", (int)getpid (), (int)pid);
        fclose (f);
        sleep ((unsigned)atoi (argv[3]));
        return 0;
    }
    return usage ();
}
