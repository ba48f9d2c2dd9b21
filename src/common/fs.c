#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fs.h"
#include "gtime.h"

void gr_sleep (double seconds)
{
    if (seconds <= 0)
        return;
    struct timespec ts;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    nanosleep (&ts, NULL);
}

int gr_mkdir_p (const char *path, mode_t mode, gr_error_t *errp)
{
    char buf[PATH_MAX];
    size_t len = strlen (path);
    struct stat st;

    if (len == 0 || len >= sizeof (buf)) {
        errno = len ? ENAMETOOLONG : EINVAL;
        return gr_errprintf (errp, "cannot create directory '%s': %s", path,
                             strerror (errno));
    }
    memcpy (buf, path, len + 1);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir (buf, mode) < 0 && errno != EEXIST)
                return gr_errprintf (errp, "cannot create directory '%s': %s",
                                     buf, strerror (errno));
            *p = c;
            if (c == '\0')
                break;
        }
    }
    if (stat (path, &st) < 0)
        return gr_errprintf (errp, "cannot create directory '%s': %s", path,
                             strerror (errno));
    if (!S_ISDIR (st.st_mode)) {
        errno = ENOTDIR;
        return gr_errprintf (errp, "'%s' exists and is not a directory", path);
    }
    return 0;
}

/* Write all of buf: at the file offset when off < 0, else at off. */
static int write_all_at (int fd, const void *buf, size_t len, off_t off)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = off < 0 ? write (fd, p, len) : pwrite (fd, p, len, off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
        if (off >= 0)
            off += n;
    }
    return 0;
}

int gr_write_all (int fd, const void *buf, size_t len)
{
    return write_all_at (fd, buf, len, -1);
}

int gr_pwrite_all (int fd, const void *buf, size_t len, off_t off)
{
    if (off < 0) {
        errno = EINVAL;
        return -1;
    }
    return write_all_at (fd, buf, len, off);
}

int gr_fsync_dir_of (const char *path)
{
    char buf[PATH_MAX];
    const char *slash = strrchr (path, '/');
    int fd, rc;

    if (!slash)
        strcpy (buf, ".");
    else if (slash == path)
        strcpy (buf, "/");
    else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof (buf)) {
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy (buf, path, n);
        buf[n] = '\0';
    }
    if ((fd = open (buf, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return -1;
    rc = fsync (fd);
    int saved = errno;
    close (fd);
    errno = saved;
    return rc;
}

int gr_write_file_atomic (const char *path, const void *data, size_t len,
                          mode_t mode, gr_error_t *errp)
{
    char tmp[PATH_MAX];
    int fd = -1;

    if (snprintf (tmp, sizeof (tmp), "%s.tmp.%ld", path, (long)getpid ())
        >= (int)sizeof (tmp)) {
        errno = ENAMETOOLONG;
        return gr_errprintf (errp, "path too long: %s", path);
    }
    if ((fd = open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)) < 0)
        return gr_errprintf (errp, "cannot write '%s': %s", tmp,
                             strerror (errno));
    if (gr_write_all (fd, data, len) < 0 || fsync (fd) < 0) {
        gr_errprintf (errp, "cannot write '%s': %s", tmp, strerror (errno));
        goto error;
    }
    if (close (fd) < 0) {
        fd = -1;
        gr_errprintf (errp, "cannot write '%s': %s", tmp, strerror (errno));
        goto error;
    }
    fd = -1;
    if (rename (tmp, path) < 0) {
        gr_errprintf (errp, "cannot rename '%s' to '%s': %s", tmp, path,
                      strerror (errno));
        goto error;
    }
    if (gr_fsync_dir_of (path) < 0)
        return gr_errprintf (errp, "cannot sync directory of '%s': %s", path,
                             strerror (errno));
    return 0;
error:;
    int saved = errno;
    if (fd >= 0)
        close (fd);
    unlink (tmp);
    errno = saved;
    return -1;
}

int gr_read_file (const char *path, size_t max, char **bufp, size_t *lenp,
                  gr_error_t *errp)
{
    int fd;
    struct stat st;
    char *buf = NULL;
    size_t len = 0, cap;

    if ((fd = open (path, O_RDONLY | O_CLOEXEC)) < 0)
        return gr_errprintf (errp, "cannot open '%s': %s", path,
                             strerror (errno));
    if (fstat (fd, &st) < 0) {
        gr_errprintf (errp, "cannot stat '%s': %s", path, strerror (errno));
        goto error;
    }
    if (S_ISDIR (st.st_mode)) {
        errno = EISDIR;
        gr_errprintf (errp, "'%s' is a directory, not a file", path);
        goto error;
    }
    cap = S_ISREG (st.st_mode) ? (size_t)st.st_size + 1 : 4096;
    if (cap > max + 1)
        cap = max + 1;
    if (!(buf = malloc (cap + 1)))
        goto nomem;
    for (;;) {
        if (len == cap) {
            if (cap > max) {
                errno = EFBIG;
                gr_errprintf (errp, "'%s' is larger than the limit of %zu bytes",
                              path, max);
                goto error;
            }
            size_t ncap = cap * 2 > max + 1 ? max + 1 : cap * 2;
            char *nb = realloc (buf, ncap + 1);
            if (!nb)
                goto nomem;
            buf = nb;
            cap = ncap;
        }
        ssize_t n = read (fd, buf + len, cap - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            gr_errprintf (errp, "cannot read '%s': %s", path, strerror (errno));
            goto error;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (len > max) {
        errno = EFBIG;
        gr_errprintf (errp, "'%s' is larger than the limit of %zu bytes", path,
                      max);
        goto error;
    }
    buf[len] = '\0';
    close (fd);
    *bufp = buf;
    if (lenp)
        *lenp = len;
    return 0;
nomem:
    errno = ENOMEM;
    gr_errprintf (errp, "out of memory reading '%s'", path);
error:;
    int saved = errno;
    free (buf);
    close (fd);
    errno = saved;
    return -1;
}

char *gr_abspath (const char *path)
{
    char cwd[PATH_MAX];
    char *out;
    if (path[0] == '/')
        return strdup (path);
    if (!getcwd (cwd, sizeof (cwd)))
        return NULL;
    if (strcmp (path, ".") == 0)
        return strdup (cwd);
    if (strncmp (path, "./", 2) == 0)
        path += 2;
    if (asprintf (&out, "%s/%s", cwd, path) < 0)
        return NULL;
    return out;
}
