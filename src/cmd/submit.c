/* gridrun submit: the Slurm submission script, gridrun-sbatch, under
 * gridrun's name.
 *
 *   gridrun submit [OPTIONS] SPEC [-- RUN-OPTIONS...]
 *
 * runs gridrun-sbatch from the directory this gridrun was installed in,
 * else from PATH, and tells it (GRIDRUN) to have the job run this very
 * gridrun.  The script does the work: see doc/slurm.md. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/runtime/runtime.h"
#include "cmd.h"

#define SBATCH_SCRIPT "gridrun-sbatch"

int gr_cmd_submit (int argc, char **argv)
{
    char self[PATH_MAX], path[PATH_MAX + sizeof (SBATCH_SCRIPT)];
    ssize_t n = readlink ("/proc/self/exe", self, sizeof (self) - 1);
    char **av = calloc ((size_t)argc + 1, sizeof (char *));

    if (!av) {
        fprintf (stderr, "gridrun: out of memory\n");
        return GR_EXIT_INTERNAL;
    }
    av[0] = SBATCH_SCRIPT;
    for (int i = 1; i < argc; i++)
        av[i] = argv[i];
    av[argc] = NULL;
    if (n > 0) {
        self[n] = '\0';
        if (!getenv ("GRIDRUN"))
            setenv ("GRIDRUN", self, 1);
        char *slash = strrchr (self, '/');
        if (slash) {
            snprintf (path, sizeof (path), "%.*s/%s", (int)(slash - self), self,
                      SBATCH_SCRIPT);
            if (access (path, X_OK) == 0)
                execv (path, av);
        }
    }
    execvp (SBATCH_SCRIPT, av);
    fprintf (stderr,
             "gridrun: submit: cannot run %s: %s; it is installed next to gridrun "
             "(or put it on PATH)\n",
             SBATCH_SCRIPT, strerror (errno));
    free (av);
    return GR_EXIT_INTERNAL;
}
