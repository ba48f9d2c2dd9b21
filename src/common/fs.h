/* Filesystem helpers that keep data safe across crashes. */
#ifndef GR_COMMON_FS_H
#define GR_COMMON_FS_H

#include <stddef.h>
#include <sys/types.h>

#include "error.h"

/* Create path and its missing parents with mode (like mkdir -p).  An
 * existing directory is fine.  Returns 0, or -1 with errno and errp set. */
int gr_mkdir_p (const char *path, mode_t mode, gr_error_t *errp);

/* Write len bytes to path atomically: a temporary file in the same
 * directory, fsync, rename over path, fsync the directory. */
int gr_write_file_atomic (const char *path, const void *data, size_t len,
                          mode_t mode, gr_error_t *errp);

/* Read a whole file into a NUL-terminated malloc'd buffer (*lenp excludes
 * the NUL).  The caller frees *bufp.  Files over max bytes fail with EFBIG. */
int gr_read_file (const char *path, size_t max, char **bufp, size_t *lenp,
                  gr_error_t *errp);

/* fsync the directory that holds path. */
int gr_fsync_dir_of (const char *path);

/* Write all of buf to fd, retrying short writes and EINTR. */
int gr_write_all (int fd, const void *buf, size_t len);
/* The same at offset off (pwrite), leaving the file offset alone. */
int gr_pwrite_all (int fd, const void *buf, size_t len, off_t off);

/* Return a malloc'd absolute, normalized-enough form of path (cwd joined
 * when relative); NULL with errno on failure. */
char *gr_abspath (const char *path);

#endif
