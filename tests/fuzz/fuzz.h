/* What the fuzz harnesses of tests/fuzz share.
 *
 * Each harness defines LLVMFuzzerTestOneInput.  Built with --enable-fuzzers
 * it is linked with libFuzzer (tests/fuzz/fuzz_NAME); built normally it is
 * linked with replay.c (tests/fuzz/regress_NAME), which feeds it the files
 * of tests/fuzz/regress/NAME and tests/fuzz/corpus/NAME under `make
 * check`.  A harness returns 0 for every input the library handles, with
 * or without an error; it calls abort() when the library breaks a promise
 * (a round trip that does not give back what went in), so that both
 * libFuzzer and the replay count it as a crash.
 *
 * Harnesses that read files write the input into a directory of their
 * own, made once per process and removed at exit.
 */
#ifndef GR_TESTS_FUZZ_H
#define GR_TESTS_FUZZ_H

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* Stop with a message: a broken promise of the library, or a harness that
 * cannot set itself up (no temporary directory). */
#define GR_FUZZ_ASSERT(cond)                                                             \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf (stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__,       \
                     #cond);                                                             \
            abort ();                                                                    \
        }                                                                                \
    } while (0)

static char gr_fuzz_tmp[4096];

static void gr_fuzz_cleanup (void)
{
    char cmd[4200];
    if (!gr_fuzz_tmp[0])
        return;
    snprintf (cmd, sizeof (cmd), "rm -rf '%s'", gr_fuzz_tmp);
    if (system (cmd) != 0)
        fprintf (stderr, "cannot remove %s\n", gr_fuzz_tmp);
}

/* The harness's own directory, made on first use. */
static inline const char *gr_fuzz_dir (void)
{
    if (!gr_fuzz_tmp[0]) {
        const char *t = getenv ("TMPDIR");
        snprintf (gr_fuzz_tmp, sizeof (gr_fuzz_tmp), "%s/gr-fuzz-XXXXXX",
                  t && *t ? t : "/tmp");
        GR_FUZZ_ASSERT (mkdtemp (gr_fuzz_tmp) != NULL);
        atexit (gr_fuzz_cleanup);
    }
    return gr_fuzz_tmp;
}

/* Write len bytes to path (replacing it). */
static inline void gr_fuzz_write (const char *path, const void *data, size_t len)
{
    int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    GR_FUZZ_ASSERT (fd >= 0);
    const char *p = data;
    while (len > 0) {
        ssize_t n = write (fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        GR_FUZZ_ASSERT (n > 0);
        p += n;
        len -= (size_t)n;
    }
    GR_FUZZ_ASSERT (close (fd) == 0);
}

#endif
