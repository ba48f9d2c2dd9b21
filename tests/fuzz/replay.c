/* Replay fuzz inputs through a harness without libFuzzer: the regression
 * test of tests/fuzz (tests/fuzz/regress_NAME under `make check`).
 *
 *   regress_NAME [DIR|FILE ...]
 *
 * Without arguments it replays the files of tests/fuzz/regress/NAME (the
 * inputs that once crashed the harness) and tests/fuzz/corpus/NAME (its
 * seeds).  Each input runs in a child process with a time limit, so that a
 * crash, an abort or a hang is reported against its file; the output is
 * TAP, one line per input.
 */
#include "config.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fuzz.h"

/* FUZZ_NAME and FUZZ_SRCDIR come from the build. */
#define INPUT_SECONDS 60

typedef struct {
    char **v;
    size_t n, cap;
} paths_t;

static void add (paths_t *p, const char *path)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 64;
        p->v = realloc (p->v, p->cap * sizeof (*p->v));
        GR_FUZZ_ASSERT (p->v != NULL);
    }
    GR_FUZZ_ASSERT ((p->v[p->n++] = strdup (path)) != NULL);
}

static int cmp (const void *a, const void *b)
{
    return strcmp (*(char *const *)a, *(char *const *)b);
}

/* The plain files of dir (not starting with '.'), sorted; a missing
 * directory adds nothing. */
static void add_dir (paths_t *p, const char *dir)
{
    DIR *d = opendir (dir);
    struct dirent *de;
    size_t first = p->n;

    if (!d)
        return;
    while ((de = readdir (d))) {
        char path[4096];
        struct stat st;
        if (de->d_name[0] == '.')
            continue;
        snprintf (path, sizeof (path), "%s/%s", dir, de->d_name);
        if (stat (path, &st) == 0 && S_ISREG (st.st_mode))
            add (p, path);
    }
    closedir (d);
    qsort (p->v + first, p->n - first, sizeof (*p->v), cmp);
}

static int run_one (const char *path)
{
    FILE *f = fopen (path, "rb");
    if (!f) {
        perror (path);
        return -1;
    }
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0, n;
    do {
        if (cap - len < 65536) {
            cap = cap ? 2 * cap : 65536;
            GR_FUZZ_ASSERT ((buf = realloc (buf, cap)) != NULL);
        }
        n = fread (buf + len, 1, cap - len, f);
        len += n;
    } while (n > 0);
    fclose (f);
    /* libFuzzer hands the harness a buffer of exactly the input's size. */
    uint8_t *in = malloc (len ? len : 1);
    GR_FUZZ_ASSERT (in != NULL);
    memcpy (in, buf, len);
    free (buf);
    LLVMFuzzerTestOneInput (in, len);
    free (in);
    return 0;
}

int main (int argc, char **argv)
{
    paths_t p = {0};
    int failed = 0;

    if (argc > 1) {
        for (int i = 1; i < argc; i++) {
            struct stat st;
            if (stat (argv[i], &st) == 0 && S_ISDIR (st.st_mode))
                add_dir (&p, argv[i]);
            else
                add (&p, argv[i]);
        }
    } else {
        add_dir (&p, FUZZ_SRCDIR "/regress/" FUZZ_NAME);
        add_dir (&p, FUZZ_SRCDIR "/corpus/" FUZZ_NAME);
    }
    if (p.n == 0) {
        printf ("1..0 # SKIP no inputs for %s\n", FUZZ_NAME);
        return 0;
    }
    printf ("1..%zu\n", p.n);
    fflush (stdout);
    for (size_t i = 0; i < p.n; i++) {
        const char *name = p.v[i];
        if (strncmp (name, FUZZ_SRCDIR "/", strlen (FUZZ_SRCDIR "/")) == 0)
            name += strlen (FUZZ_SRCDIR "/");
        pid_t pid = fork ();
        GR_FUZZ_ASSERT (pid >= 0);
        if (pid == 0) {
            alarm (INPUT_SECONDS);
            /* exit, not _exit: the harness's atexit handlers clean up, and
             * LeakSanitizer checks, at exit. */
            exit (run_one (p.v[i]) == 0 ? 0 : 1);
        }
        int st;
        while (waitpid (pid, &st, 0) < 0)
            ;
        if (WIFEXITED (st) && WEXITSTATUS (st) == 0)
            printf ("ok %zu - %s\n", i + 1, name);
        else {
            failed++;
            if (WIFSIGNALED (st) && WTERMSIG (st) == SIGALRM)
                printf ("not ok %zu - %s (took over %d s)\n", i + 1, name, INPUT_SECONDS);
            else if (WIFSIGNALED (st))
                printf ("not ok %zu - %s (%s)\n", i + 1, name, strsignal (WTERMSIG (st)));
            else
                printf ("not ok %zu - %s (exit %d)\n", i + 1, name, WEXITSTATUS (st));
        }
        fflush (stdout);
        free (p.v[i]);
    }
    free (p.v);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
