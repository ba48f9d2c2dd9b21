#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/common/chaos.h"
#include "src/common/fs.h"
#include "src/common/grow.h"
#include "outlog.h"

struct gr_outlog {
    int log_fd;
    uint64_t log_off;
    int idx_fd;
    uint64_t idx_len;       /* bytes of the index known to be written */
    char *ibuf;             /* index lines not written yet */
    size_t ilen, icap;
    char *buf;              /* fallback copy buffer */
    char path[PATH_MAX];    /* of the log */
};

gr_outlog_t *gr_outlog_open (const char *dir, int rank, gr_error_t *errp)
{
    char path[PATH_MAX];
    struct stat st;
    gr_outlog_t *ol = calloc (1, sizeof (*ol));

    if (!ol) {
        gr_errprintf (errp, "out of memory");
        return NULL;
    }
    ol->log_fd = ol->idx_fd = -1;
    snprintf (ol->path, sizeof (ol->path), "%s/w%04d.log", dir, rank);
    /* Not O_APPEND: copy_file_range cannot write to such a file, and this
     * worker is the only writer, so it keeps the offset itself. */
    if ((ol->log_fd = open (ol->path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)) < 0
        || fstat (ol->log_fd, &st) < 0) {
        gr_errprintf (errp, "cannot open output log '%s': %s", ol->path,
                      strerror (errno));
        goto error;
    }
    ol->log_off = (uint64_t)st.st_size;
    /* Nor the index: a failed write is cut back to idx_len, so it keeps
     * its length itself too. */
    snprintf (path, sizeof (path), "%s/w%04d.idx", dir, rank);
    if ((ol->idx_fd = open (path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)) < 0
        || fstat (ol->idx_fd, &st) < 0) {
        gr_errprintf (errp, "cannot open output index '%s': %s", path,
                      strerror (errno));
        goto error;
    }
    ol->idx_len = (uint64_t)st.st_size;
    return ol;
error:
    gr_outlog_close (ol);
    return NULL;
}

void gr_outlog_close (gr_outlog_t *ol)
{
    if (!ol)
        return;
    int saved = errno;
    if (ol->idx_fd >= 0) {
        (void)gr_outlog_flush (ol);
        close (ol->idx_fd);
    }
    if (ol->log_fd >= 0)
        close (ol->log_fd);
    free (ol->ibuf);
    free (ol->buf);
    free (ol);
    errno = saved;
}

const char *gr_outlog_path (const gr_outlog_t *ol)
{
    return ol->path;
}

int gr_outlog_write (gr_outlog_t *ol, const void *buf, size_t len,
                     uint64_t *offp)
{
    *offp = ol->log_off;
    /* On failure the offset stays, so the next write covers the torn
     * bytes instead of leaving them in the log. */
    if (gr_pwrite_all (ol->log_fd, buf, len, (off_t)ol->log_off) < 0)
        return -1;
    ol->log_off += len;
    return 0;
}

static int copy_range (gr_outlog_t *ol, int fd, uint64_t len)
{
    off_t in_off = 0;
    while (len > 0) {
#if HAVE_COPY_FILE_RANGE
        loff_t out_off = (loff_t)ol->log_off;
        loff_t ioff = in_off;
        ssize_t n = copy_file_range (fd, &ioff, ol->log_fd, &out_off, len, 0);
        if (n > 0) {
            in_off = ioff;
            ol->log_off = (uint64_t)out_off;
            len -= (uint64_t)n;
            continue;
        }
        if (n == 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno != EXDEV && errno != ENOSYS && errno != EINVAL
            && errno != EOPNOTSUPP)
            return -1;
#endif
        /* Fallback: plain read and write. */
        if (!ol->buf && !(ol->buf = malloc (65536)))
            return -1;
        size_t want = len > 65536 ? 65536 : (size_t)len;
        ssize_t r = pread (fd, ol->buf, want, in_off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0)
            break;
        uint64_t off;
        if (gr_outlog_write (ol, ol->buf, (size_t)r, &off) < 0)
            return -1;
        in_off += r;
        len -= (uint64_t)r;
    }
    return 0;
}

uint64_t gr_outlog_trim (int fd, uint64_t cap)
{
    struct stat st;

    if (fstat (fd, &st) < 0)
        return 0;
    /* The part past cap is never kept; cutting it frees its blocks.  The
     * task's next write lands past the new end, leaving a hole.  Should
     * the cut fail, the spool only holds more than it needs to. */
    if ((uint64_t)st.st_size > cap && ftruncate (fd, (off_t)cap) < 0) {
        /* Nothing to do. */
    }
    return (uint64_t)st.st_size;
}

int gr_outlog_take (gr_outlog_t *ol, int fd, uint64_t cap, uint64_t seen,
                    uint64_t *offp, uint64_t *lenp)
{
    struct stat st;
    uint64_t start = ol->log_off;
    int rc = 0, saved = 0;

    *offp = 0;
    *lenp = 0;
    if (fstat (fd, &st) < 0)
        return -1;
    if (st.st_size == 0 && seen == 0)
        return 0;
    uint64_t size = (uint64_t)st.st_size > seen ? (uint64_t)st.st_size : seen;
    uint64_t keep = size > cap ? cap : size;
    if (keep > (uint64_t)st.st_size)
        keep = (uint64_t)st.st_size;
    if (keep > 0) {
        /* Chaos mode (chaos.h): the write fails as a bad or full disk's
         * would, and the spool is emptied all the same (below). */
        rc = gr_chaos_io (GR_CHAOS_IO_OUTPUT);
        if (rc == 0)
            rc = copy_range (ol, fd, keep);
    }
    if (rc == 0 && size > cap) {
        char note[192], last = '\n';
        uint64_t off;
        if (keep > 0 && pread (fd, &last, 1, (off_t)(keep - 1)) != 1)
            last = '\n';
        int n = snprintf (note, sizeof (note),
                          "%s[gridrun: output truncated after %" PRIu64
                          " bytes (the task wrote %" PRIu64 "); raise max_output: or "
                          "--max-output]\n",
                          last == '\n' ? "" : "\n", keep, size);
        rc = gr_outlog_write (ol, note, (size_t)n, &off);
    }
    if (rc < 0) {
        /* Nothing torn stays behind: the log goes back to what it was,
         * and the caller does not report the attempt as done. */
        saved = errno;
        if (ftruncate (ol->log_fd, (off_t)start) < 0) {
            /* The next write covers the bytes anyway: it starts at start. */
        }
        ol->log_off = start;
    }
    else {
        *offp = start;
        *lenp = ol->log_off - start;
    }
    if ((ftruncate (fd, 0) < 0 || lseek (fd, 0, SEEK_SET) < 0) && rc == 0)
        return -1;
    if (rc < 0)
        errno = saved;
    return rc;
}

int gr_outlog_record (gr_outlog_t *ol, const gr_outlog_rec_t *r)
{
    for (;;) {
        size_t room = ol->icap - ol->ilen;
        int n = snprintf (ol->ibuf ? ol->ibuf + ol->ilen : NULL, room,
                          "%016" PRIx64 "\t%u\t%s\t%d\t%u\t%.6f\t%" PRId64 "\t%" PRIu64
                          "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\n",
                          r->key, r->attempt, r->name, r->status, r->flags, r->wall,
                          r->maxrss_kb, r->out_off, r->out_len, r->err_off, r->err_len);
        if (n < 0)
            return -1;
        if ((size_t)n < room) {
            ol->ilen += (size_t)n;
            return 0;
        }
        char *nb = gr_grow_to (ol->ibuf, &ol->icap, ol->ilen + (size_t)n + 1, 1, 4096);
        if (!nb) {
            errno = ENOMEM;
            return -1;
        }
        ol->ibuf = nb;
    }
}

int gr_outlog_flush (gr_outlog_t *ol)
{
    if (ol->ilen == 0)
        return 0;
    if (gr_pwrite_all (ol->idx_fd, ol->ibuf, ol->ilen, (off_t)ol->idx_len) < 0) {
        int saved = errno;
        if (ftruncate (ol->idx_fd, (off_t)ol->idx_len) < 0) {
            /* The next flush writes at idx_len, over the torn line. */
        }
        ol->ilen = 0;
        errno = saved;
        return -1;
    }
    ol->idx_len += ol->ilen;
    ol->ilen = 0;
    return 0;
}

static int parse_line (char *line, gr_outlog_rec_t *r)
{
    char *f[11];
    int n = 0;
    char *save = NULL;
    for (char *t = strtok_r (line, "\t\n", &save); t && n < 11;
         t = strtok_r (NULL, "\t\n", &save))
        f[n++] = t;
    if (n != 11)
        return -1;
    r->key = strtoull (f[0], NULL, 16);
    r->attempt = (uint32_t)strtoul (f[1], NULL, 10);
    r->name = f[2];
    r->status = (int)strtol (f[3], NULL, 10);
    r->flags = (uint32_t)strtoul (f[4], NULL, 10);
    r->wall = strtod (f[5], NULL);
    r->maxrss_kb = strtoll (f[6], NULL, 10);
    r->out_off = strtoull (f[7], NULL, 10);
    r->out_len = strtoull (f[8], NULL, 10);
    r->err_off = strtoull (f[9], NULL, 10);
    r->err_len = strtoull (f[10], NULL, 10);
    return 0;
}

static int name_cmp (const void *a, const void *b)
{
    return strcmp (*(char *const *)a, *(char *const *)b);
}

int gr_outlog_scan (const char *dir, const char *what, gr_outlog_match_f fn,
                    void *arg, gr_error_t *errp)
{
    DIR *d = opendir (dir);
    struct dirent *de;
    char **names = NULL;
    size_t n = 0, cap = 0;
    char *line = NULL;
    size_t linecap = 0;
    int rc = -1;

    if (!d)
        return gr_errprintf (errp, "cannot read '%s': %s", dir, strerror (errno));
    while ((de = readdir (d))) {
        size_t l = strlen (de->d_name);
        if (l < 5 || de->d_name[0] != 'w' || strcmp (de->d_name + l - 4, ".idx"))
            continue;
        char **nn = gr_grow (names, &cap, n, sizeof (char *), 16);
        if (!nn)
            goto nomem;
        names = nn;
        if (!(names[n] = strdup (de->d_name)))
            goto nomem;
        n++;
    }
    qsort (names, n, sizeof (char *), name_cmp);
    for (size_t i = 0; i < n; i++) {
        char path[PATH_MAX], logp[PATH_MAX];
        snprintf (path, sizeof (path), "%s/%s", dir, names[i]);
        snprintf (logp, sizeof (logp), "%s/%.*s.log", dir,
                  (int)(strlen (names[i]) - 4), names[i]);
        FILE *f = fopen (path, "re");
        if (!f) {
            gr_errprintf (errp, "cannot read '%s': %s", path, strerror (errno));
            goto out;
        }
        while (getline (&line, &linecap, f) > 0) {
            gr_outlog_rec_t r;
            char keyhex[17];
            memcpy (keyhex, line, 16);
            keyhex[16] = '\0';
            if (parse_line (line, &r) < 0)
                continue; /* a torn last line from a killed worker */
            if (strcmp (what, keyhex) != 0 && strcmp (what, r.name) != 0)
                continue;
            if (fn (&r, logp, arg) < 0) {
                fclose (f);
                goto out;
            }
        }
        fclose (f);
    }
    rc = 0;
    goto out;
nomem:
    gr_errprintf (errp, "out of memory");
out:
    for (size_t i = 0; i < n; i++)
        free (names[i]);
    free (names);
    free (line);
    closedir (d);
    return rc;
}

int gr_outlog_copy_out (const char *log_path, uint64_t off, uint64_t len,
                        FILE *out)
{
    char buf[65536];
    int fd = open (log_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    while (len > 0) {
        size_t want = len > sizeof (buf) ? sizeof (buf) : (size_t)len;
        ssize_t n = pread (fd, buf, want, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            close (fd);
            return -1;
        }
        if (n == 0)
            break;
        if (fwrite (buf, 1, (size_t)n, out) != (size_t)n) {
            close (fd);
            return -1;
        }
        off += (uint64_t)n;
        len -= (uint64_t)n;
    }
    close (fd);
    return 0;
}
