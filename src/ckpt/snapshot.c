/* The run snapshot in HDF5.  This is the only file that includes hdf5.h:
 * every HDF5 failure is turned into gr_error_t text here, naming the file
 * and what was being done, and HDF5's own error printing stays off. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <hdf5.h>

#include "src/common/fs.h"
#include "snapshot.h"

#define SNAP_FORMAT "gridrun-run-1"

/* Rows per chunk of /tasks, and per conversion batch when writing and
 * reading, so memory stays bounded by one batch whatever the row count. */
#define SNAP_BATCH 4096

#define NSTATES 6

/* The names of gr_task_state_t values, as the enum in the file spells
 * them: people see these in h5dump and h5py. */
static const char *const state_names[NSTATES] = {
    "pending", "running", "waiting", "done", "failed", "poison",
};

static const char *const count_names[] = {
    "total",   "done",     "failed",  "poison",   "skipped", "running",
    "waiting", "retries",  "timeouts", "crashes", "attempts", "duplicates",
};
#define NCOUNTS (sizeof (count_names) / sizeof (count_names[0]))

/* The fixed-length string fields of a row: a column of the file is at
 * most GR_SNAP_FIXED_MAX + 1 bytes, and the reader reads it one byte
 * longer, so that it ends in a NUL whatever the file holds. */
#define FIX_BYTES (GR_SNAP_FIXED_MAX + 2)

/* A row of /tasks as HDF5 converts it from and to memory. */
struct task_rec {
    uint64_t key;
    char key_hex[17];       /* fixed length: no heap object a row */
    char *name;
    char *params;
    int32_t state;
    uint32_t attempts;
    int32_t exit_code;
    int32_t signal;
    double wall;
    int64_t maxrss_kb;
    char *host;
    int32_t worker;
    /* name, params and host where they are fixed-length strings in the
     * file (GR_SNAP_FIXED_MAX bytes at most, and a NUL); the memory type
     * then points the field there instead of at the pointer. */
    char name_fix[FIX_BYTES];
    char params_fix[FIX_BYTES];
    char host_fix[FIX_BYTES];
};

/* A row of /workers likewise. */
struct worker_rec {
    int32_t rank;
    char *host;
    uint32_t cpus;
    uint32_t gpus;
    uint8_t lost;
};

/* The datatypes of one snapshot: memory layouts for conversion and packed,
 * little-endian layouts for the file. */
struct types {
    hid_t str;
    hid_t hex;              /* key_hex: 16 hex digits and a NUL */
    hid_t state_mem;
    hid_t state_file;
    hid_t task_mem;
    hid_t task_file;
    hid_t task_read;        /* task_mem without key_hex: reads files whose
                               key_hex is a variable-length string too */
    hid_t worker_mem;
    hid_t worker_file;
};

struct gr_snap {
    char *path;
    char *tmp;
    hid_t file;
    hid_t tasks;
    hid_t metrics;
    struct types t;
    hsize_t ntasks;
    bool have_workers;
    bool failed;            /* a write failed: only abort is left */
    struct vfd_state *disk; /* what the file driver saw go wrong */
    gr_snap_counts_t counts;
    struct task_rec *rec;   /* SNAP_BATCH rows of conversion buffer */
    size_t fixed[3];        /* name, params, host: the size of the column's
                               fixed-length string; 0: variable-length */
};

/* What HDF5 said about its last failure, from the innermost frame of its
 * error stack. */
struct h5why {
    char text[512];
    int err;
};

/* Turn HDF5's automatic error printing off: failures reach people through
 * gr_error_t, not through HDF5's stack dump on stderr.  HDF5 is used by
 * this module alone, so nobody else relies on the printing.  Done on every
 * entry, because HDF5 restores its default when it is shut down (as
 * MPI_Finalize does) and started again. */
static void h5_quiet (void)
{
    H5Eset_auto2 (H5E_DEFAULT, NULL, NULL);
}

static void clean_text (char *s)
{
    for (; *s; s++)
        if (*s == '\n' || *s == '\r' || *s == '\t')
            *s = ' ';
}

static herr_t why_cb (unsigned n, const H5E_error2_t *e, void *arg)
{
    struct h5why *w = arg;
    const char *p, *q;
    char minor[128] = "";

    /* Walking upward, frame 0 is where HDF5 found the problem: the most
     * specific description.  The outer frames only repeat it. */
    if (n > 0)
        return 0;
    /* The sec2 driver reports the system error as "errno = N, error
     * message = '...'": that is what a person needs, and errno too. */
    if (e->desc && (p = strstr (e->desc, "errno = "))) {
        w->err = atoi (p + 8);
        if ((p = strstr (p, "error message = '")) && (q = strchr (p + 17, '\''))) {
            snprintf (w->text, sizeof (w->text), "%.*s", (int)(q - (p + 17)), p + 17);
            clean_text (w->text);
            return 0;
        }
    }
    if (H5Eget_msg (e->min_num, NULL, minor, sizeof (minor)) < 0)
        minor[0] = '\0';
    if (e->desc && e->desc[0] && minor[0])
        snprintf (w->text, sizeof (w->text), "%s (%s)", e->desc, minor);
    else
        snprintf (w->text, sizeof (w->text), "%s",
                  e->desc && e->desc[0] ? e->desc : minor[0] ? minor : "HDF5 error");
    clean_text (w->text);
    return 0;
}

/* Format "WHAT 'PATH': why" from HDF5's error stack into errp, set errno
 * (the system's when HDF5 saw one, else EIO) and return -1. */
static int h5_fail (gr_error_t *errp, const char *what, const char *path)
{
    struct h5why w = {.text = "HDF5 error", .err = 0};

    H5Ewalk2 (H5E_DEFAULT, H5E_WALK_UPWARD, why_cb, &w);
    H5Eclear2 (H5E_DEFAULT);
    errno = w.err > 0 ? w.err : EIO;
    return gr_errprintf (errp, "%s '%s': %s", what, path, w.text);
}

/* Close any HDF5 object and mark it closed.  An error already on HDF5's
 * stack survives the close (which would otherwise clear it), so cleanup
 * paths can close first and report the original failure after. */
static int close_id (hid_t *idp)
{
    int rc = 0;
    hid_t id = *idp;
    hid_t saved;

    if (id < 0)
        return 0;
    *idp = H5I_INVALID_HID;
    /* Checked before the close, so a close with nothing to preserve makes
     * no HDF5 call after it that could clear its own error. */
    saved = H5Eget_current_stack ();
    if (saved >= 0 && H5Eget_num (saved) <= 0) {
        H5Eclose_stack (saved);
        saved = H5I_INVALID_HID;
    }
    switch (H5Iget_type (id)) {
        case H5I_FILE:
            rc = H5Fclose (id);
            break;
        case H5I_GROUP:
            rc = H5Gclose (id);
            break;
        case H5I_DATATYPE:
            rc = H5Tclose (id);
            break;
        case H5I_DATASPACE:
            rc = H5Sclose (id);
            break;
        case H5I_DATASET:
            rc = H5Dclose (id);
            break;
        case H5I_ATTR:
            rc = H5Aclose (id);
            break;
        case H5I_GENPROP_LST:
            rc = H5Pclose (id);
            break;
        default:
            rc = -1;
            break;
    }
    if (saved >= 0)
        H5Eset_current_stack (saved);
    return rc < 0 ? -1 : 0;
}

/* The file driver for writing.
 *
 * It is HDF5's sec2 driver (pread/pwrite on one descriptor) with one
 * difference: a failed write or truncate is not reported to HDF5.  The
 * error goes to the snapshot (struct vfd_state), and from then on writes
 * are kept in memory and read back from there.  HDF5 1.10 cannot survive a
 * failed H5Fclose: it frees the file but keeps its ID, and crashes when the
 * library shuts down at exit or at MPI_Finalize (CVE-2020-10812, HDF5
 * GitHub issue 2257, fixed in later releases).  A full disk while writing
 * a snapshot must not kill the runtime, so HDF5 never sees a write fail
 * and its close always succeeds; this module reports the error and deletes
 * the file instead.  The memory kept is bounded by one batch of rows and
 * HDF5's caches, because the snapshot refuses further rows after an
 * error. */

struct vfd_state {
    int err;                /* errno of the first failed write, or 0 */
};

/* What H5Pset_driver copies into the file access list. */
struct vfd_fapl {
    struct vfd_state *state;
};

/* A write kept in memory after the disk failed. */
struct vfd_block {
    struct vfd_block *next;
    haddr_t addr;
    size_t size;
    unsigned char data[];
};

struct vfd_file {
    H5FD_t pub;             /* first, as HDF5 casts between the two */
    int fd;
    haddr_t eoa;
    haddr_t eof;
    dev_t dev;
    ino_t ino;
    struct vfd_state *state;
    struct vfd_block *kept; /* oldest first */
    struct vfd_block **tail;
};

#define VFD_MAXADDR (((haddr_t)1 << (8 * sizeof (off_t) - 1)) - 1)

static hid_t vfd_id = H5I_INVALID_HID;

/* Put a system error on HDF5's stack in the words of the sec2 driver, so
 * h5_fail() finds the errno in it. */
static void vfd_push (const char *func, const char *what, int err)
{
    H5Epush2 (H5E_DEFAULT, __FILE__, func, __LINE__, H5E_ERR_CLS, H5E_VFL,
              H5E_CANTOPENFILE, "%s, errno = %d, error message = '%s'", what, err,
              strerror (err));
}

static H5FD_t *vfd_open (const char *name, unsigned flags, hid_t fapl, haddr_t maxaddr)
{
    const struct vfd_fapl *fa = H5Pget_driver_info (fapl);
    struct vfd_file *f = NULL;
    struct stat st;
    int o_flags = O_CLOEXEC;

    if (!fa || !fa->state || maxaddr == 0 || maxaddr > VFD_MAXADDR) {
        vfd_push (__func__, "bad file access settings", EINVAL);
        return NULL;
    }
    o_flags |= (flags & H5F_ACC_RDWR) ? O_RDWR : O_RDONLY;
    if (flags & H5F_ACC_TRUNC)
        o_flags |= O_TRUNC;
    if (flags & H5F_ACC_CREAT)
        o_flags |= O_CREAT;
    if (flags & H5F_ACC_EXCL)
        o_flags |= O_EXCL;
    if (!(f = calloc (1, sizeof (*f)))) {
        vfd_push (__func__, "unable to open file", ENOMEM);
        return NULL;
    }
    if ((f->fd = open (name, o_flags, 0666)) < 0 || fstat (f->fd, &st) < 0) {
        vfd_push (__func__, "unable to open file", errno);
        if (f->fd >= 0)
            close (f->fd);
        free (f);
        return NULL;
    }
    f->eof = (haddr_t)st.st_size;
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    f->state = fa->state;
    f->tail = &f->kept;
    return &f->pub;
}

static herr_t vfd_close (H5FD_t *file)
{
    struct vfd_file *f = (struct vfd_file *)file;
    int rc = close (f->fd);
    int err = errno;

    while (f->kept) {
        struct vfd_block *b = f->kept;
        f->kept = b->next;
        free (b);
    }
    struct vfd_state *state = f->state;
    free (f);
    /* Nothing of this file is wanted once a write failed. */
    if (rc < 0 && !state->err) {
        vfd_push (__func__, "unable to close file", err);
        return -1;
    }
    return 0;
}

static int vfd_cmp (const H5FD_t *a, const H5FD_t *b)
{
    const struct vfd_file *x = (const struct vfd_file *)a;
    const struct vfd_file *y = (const struct vfd_file *)b;
    if (x->dev != y->dev)
        return x->dev < y->dev ? -1 : 1;
    if (x->ino != y->ino)
        return x->ino < y->ino ? -1 : 1;
    return 0;
}

static herr_t vfd_query (const H5FD_t *file, unsigned long *flags)
{
    /* What sec2 allows, so HDF5 writes the same files through both. */
    *flags = H5FD_FEAT_AGGREGATE_METADATA | H5FD_FEAT_ACCUMULATE_METADATA
             | H5FD_FEAT_DATA_SIEVE | H5FD_FEAT_AGGREGATE_SMALLDATA;
#ifdef H5FD_FEAT_DEFAULT_VFD_COMPATIBLE
    *flags |= H5FD_FEAT_DEFAULT_VFD_COMPATIBLE;
#endif
    return 0;
}

static haddr_t vfd_get_eoa (const H5FD_t *file, H5FD_mem_t type)
{
    return ((const struct vfd_file *)file)->eoa;
}

static herr_t vfd_set_eoa (H5FD_t *file, H5FD_mem_t type, haddr_t addr)
{
    ((struct vfd_file *)file)->eoa = addr;
    return 0;
}

static haddr_t vfd_get_eof (const H5FD_t *file, H5FD_mem_t type)
{
    return ((const struct vfd_file *)file)->eof;
}

static herr_t vfd_get_handle (H5FD_t *file, hid_t fapl, void **handle)
{
    *handle = &((struct vfd_file *)file)->fd;
    return 0;
}

static herr_t vfd_read (H5FD_t *file, H5FD_mem_t type, hid_t dxpl, haddr_t addr,
                        size_t size, void *buf)
{
    struct vfd_file *f = (struct vfd_file *)file;
    unsigned char *p = buf;
    size_t left = size;
    off_t off = (off_t)addr;

    if (addr > VFD_MAXADDR || size > VFD_MAXADDR - addr) {
        vfd_push (__func__, "read past the end of the address space", EINVAL);
        return -1;
    }
    while (left > 0) {
        ssize_t n = pread (f->fd, p, left, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            vfd_push (__func__, "file read failed", errno);
            return -1;
        }
        if (n == 0) {
            /* Past the end of the file reads as zeros, as in sec2. */
            memset (p, 0, left);
            break;
        }
        p += n;
        left -= (size_t)n;
        off += n;
    }
    /* Writes kept in memory, oldest first, so newer ones win. */
    for (const struct vfd_block *b = f->kept; b; b = b->next) {
        haddr_t lo = addr > b->addr ? addr : b->addr;
        haddr_t hi = addr + size < b->addr + b->size ? addr + size : b->addr + b->size;
        if (lo < hi)
            memcpy ((unsigned char *)buf + (lo - addr), b->data + (lo - b->addr),
                    (size_t)(hi - lo));
    }
    return 0;
}

static void vfd_failed (struct vfd_file *f, int err)
{
    if (!f->state->err)
        f->state->err = err ? err : EIO;
}

static herr_t vfd_write (H5FD_t *file, H5FD_mem_t type, hid_t dxpl, haddr_t addr,
                         size_t size, const void *buf)
{
    struct vfd_file *f = (struct vfd_file *)file;
    const unsigned char *p = buf;
    size_t left = size;
    off_t off = (off_t)addr;

    if (addr > VFD_MAXADDR || size > VFD_MAXADDR - addr) {
        vfd_push (__func__, "write past the end of the address space", EINVAL);
        return -1;
    }
    while (left > 0 && !f->state->err) {
        ssize_t n = pwrite (f->fd, p, left, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            vfd_failed (f, n < 0 ? errno : EIO);
        else {
            p += n;
            left -= (size_t)n;
            off += n;
        }
    }
    if (left > 0) {
        /* The disk failed: keep the rest so HDF5 reads back what it wrote
         * until it closes the file. */
        struct vfd_block *b = malloc (sizeof (*b) + left);
        if (!b) {
            vfd_push (__func__, "out of memory keeping a failed write", ENOMEM);
            return -1;
        }
        b->next = NULL;
        b->addr = (haddr_t)off;
        b->size = left;
        memcpy (b->data, p, left);
        *f->tail = b;
        f->tail = &b->next;
    }
    if (addr + size > f->eof)
        f->eof = addr + size;
    return 0;
}

static herr_t vfd_truncate (H5FD_t *file, hid_t dxpl, hbool_t closing)
{
    struct vfd_file *f = (struct vfd_file *)file;

    if (f->eoa == f->eof)
        return 0;
    if (!f->state->err && ftruncate (f->fd, (off_t)f->eoa) < 0)
        vfd_failed (f, errno);
    f->eof = f->eoa;
    return 0;
}

static const H5FD_class_t vfd_class = {
#ifdef H5FD_CLASS_VERSION
    .version = H5FD_CLASS_VERSION,
    .value = 600, /* in the range HDF5 leaves to applications */
#endif
    .name = "gridrun-sec2",
    .maxaddr = VFD_MAXADDR,
    .fc_degree = H5F_CLOSE_WEAK,
    .fapl_size = sizeof (struct vfd_fapl),
    .open = vfd_open,
    .close = vfd_close,
    .cmp = vfd_cmp,
    .query = vfd_query,
    .get_eoa = vfd_get_eoa,
    .set_eoa = vfd_set_eoa,
    .get_eof = vfd_get_eof,
    .get_handle = vfd_get_handle,
    .read = vfd_read,
    .write = vfd_write,
    .truncate = vfd_truncate,
    .fl_map = H5FD_FLMAP_DICHOTOMY,
};

/* The driver's ID, registered on first use and again after HDF5 was shut
 * down (MPI_Finalize does that) and started again. */
static hid_t vfd_get (void)
{
    if (vfd_id < 0 || H5Iis_valid (vfd_id) <= 0)
        vfd_id = H5FDregister (&vfd_class);
    return vfd_id;
}

static void types_init (struct types *t)
{
    t->str = t->hex = t->state_mem = t->state_file = H5I_INVALID_HID;
    t->task_mem = t->task_file = t->task_read = H5I_INVALID_HID;
    t->worker_mem = t->worker_file = H5I_INVALID_HID;
}

static void types_close (struct types *t)
{
    close_id (&t->str);
    close_id (&t->hex);
    close_id (&t->task_read);
    close_id (&t->state_mem);
    close_id (&t->state_file);
    close_id (&t->task_mem);
    close_id (&t->task_file);
    close_id (&t->worker_mem);
    close_id (&t->worker_file);
}

static hid_t make_state_enum (hid_t base)
{
    hid_t t = H5Tenum_create (base);
    if (t < 0)
        return H5I_INVALID_HID;
    for (int i = 0; i < NSTATES; i++) {
        /* H5Tenum_insert takes the value in the base type's layout. */
        int32_t v32 = i;
        uint8_t v8 = (uint8_t)i;
        void *v = H5Tget_size (base) == 1 ? (void *)&v8 : (void *)&v32;
        if (H5Tenum_insert (t, state_names[i], v) < 0) {
            H5Tclose (t);
            return H5I_INVALID_HID;
        }
    }
    return t;
}

struct field {
    const char *name;
    size_t mem_off;
    hid_t mem;
    hid_t file;
};

/* Build a compound type for memory (at the struct's offsets) and a packed
 * one for the file (fields back to back, in the same order). */
static int make_compound (const struct field *f, size_t n, size_t mem_size,
                          hid_t *memp, hid_t *filep)
{
    size_t fsize = 0, off = 0;
    hid_t mem = H5I_INVALID_HID, file = H5I_INVALID_HID;

    for (size_t i = 0; i < n; i++)
        fsize += H5Tget_size (f[i].file);
    if ((mem = H5Tcreate (H5T_COMPOUND, mem_size)) < 0
        || (file = H5Tcreate (H5T_COMPOUND, fsize)) < 0)
        goto error;
    for (size_t i = 0; i < n; i++) {
        if (H5Tinsert (mem, f[i].name, f[i].mem_off, f[i].mem) < 0
            || H5Tinsert (file, f[i].name, off, f[i].file) < 0)
            goto error;
        off += H5Tget_size (f[i].file);
    }
    *memp = mem;
    *filep = file;
    return 0;
error:
    close_id (&mem);
    close_id (&file);
    return -1;
}

static int types_create (struct types *t)
{
    types_init (t);
    if ((t->str = H5Tcopy (H5T_C_S1)) < 0
        || H5Tset_size (t->str, H5T_VARIABLE) < 0
        || H5Tset_cset (t->str, H5T_CSET_UTF8) < 0
        || (t->hex = H5Tcopy (H5T_C_S1)) < 0
        || H5Tset_size (t->hex, 17) < 0
        || H5Tset_strpad (t->hex, H5T_STR_NULLTERM) < 0
        || (t->state_mem = make_state_enum (H5T_NATIVE_INT32)) < 0
        || (t->state_file = make_state_enum (H5T_STD_U8LE)) < 0)
        goto error;

    const struct field worker_fields[] = {
        {"rank", HOFFSET (struct worker_rec, rank), H5T_NATIVE_INT32, H5T_STD_I32LE},
        {"host", HOFFSET (struct worker_rec, host), t->str, t->str},
        {"cpus", HOFFSET (struct worker_rec, cpus), H5T_NATIVE_UINT32, H5T_STD_U32LE},
        {"gpus", HOFFSET (struct worker_rec, gpus), H5T_NATIVE_UINT32, H5T_STD_U32LE},
        {"lost", HOFFSET (struct worker_rec, lost), H5T_NATIVE_UINT8, H5T_STD_U8LE},
    };
    if (make_compound (worker_fields,
                       sizeof (worker_fields) / sizeof (worker_fields[0]),
                       sizeof (struct worker_rec), &t->worker_mem, &t->worker_file) < 0)
        goto error;
    return 0;
error:
    types_close (t);
    return -1;
}

/* The string columns of /tasks that may be fixed-length, in this order. */
static const char *const str_cols[3] = {"name", "params", "host"};
static const size_t str_ptr_off[3] = {HOFFSET (struct task_rec, name),
                                      HOFFSET (struct task_rec, params),
                                      HOFFSET (struct task_rec, host)};
static const size_t str_fix_off[3] = {HOFFSET (struct task_rec, name_fix),
                                      HOFFSET (struct task_rec, params_fix),
                                      HOFFSET (struct task_rec, host_fix)};

/* A fixed-length, NUL-terminated UTF-8 string type of size bytes. */
static hid_t fixed_str (size_t size)
{
    hid_t t = H5Tcopy (H5T_C_S1);
    if (t >= 0
        && (H5Tset_size (t, size) < 0 || H5Tset_strpad (t, H5T_STR_NULLTERM) < 0
            || H5Tset_cset (t, H5T_CSET_UTF8) < 0))
        close_id (&t);
    return t;
}

/* The fields of /tasks, key_hex left out unless with_hex, for string
 * columns whose memory and file types (and where in struct task_rec they
 * are) the caller picked.  Returns how many. */
static size_t task_fields (const struct types *t, const hid_t str_mem[3],
                           const hid_t str_file[3], const size_t str_off[3],
                           bool with_hex, struct field *f)
{
    size_t n = 0;
    f[n++] = (struct field){"key", HOFFSET (struct task_rec, key), H5T_NATIVE_UINT64,
                            H5T_STD_U64LE};
    if (with_hex)
        f[n++] = (struct field){"key_hex", HOFFSET (struct task_rec, key_hex), t->hex,
                                t->hex};
    f[n++] = (struct field){"name", str_off[0], str_mem[0], str_file[0]};
    f[n++] = (struct field){"params", str_off[1], str_mem[1], str_file[1]};
    f[n++] = (struct field){"state", HOFFSET (struct task_rec, state), t->state_mem,
                            t->state_file};
    f[n++] = (struct field){"attempts", HOFFSET (struct task_rec, attempts),
                            H5T_NATIVE_UINT32, H5T_STD_U32LE};
    f[n++] = (struct field){"exit_code", HOFFSET (struct task_rec, exit_code),
                            H5T_NATIVE_INT32, H5T_STD_I32LE};
    f[n++] = (struct field){"signal", HOFFSET (struct task_rec, signal), H5T_NATIVE_INT32,
                            H5T_STD_I32LE};
    f[n++] = (struct field){"wall", HOFFSET (struct task_rec, wall), H5T_NATIVE_DOUBLE,
                            H5T_IEEE_F64LE};
    f[n++] = (struct field){"maxrss_kb", HOFFSET (struct task_rec, maxrss_kb),
                            H5T_NATIVE_INT64, H5T_STD_I64LE};
    f[n++] = (struct field){"host", str_off[2], str_mem[2], str_file[2]};
    f[n++] = (struct field){"worker", HOFFSET (struct task_rec, worker), H5T_NATIVE_INT32,
                            H5T_STD_I32LE};
    return n;
}

/* Memory and file types of /tasks (key_hex only with with_hex) whose
 * string column i is a fixed-length string of size[i] bytes, or a
 * variable-length one where 0. */
static int task_compound (const struct types *t, const size_t size[3], bool with_hex,
                          hid_t *memp, hid_t *filep)
{
    hid_t fx[3] = {H5I_INVALID_HID, H5I_INVALID_HID, H5I_INVALID_HID};
    hid_t str[3];
    size_t off[3];
    struct field f[16];
    int rc = -1;

    for (int i = 0; i < 3; i++) {
        if (size[i] && (fx[i] = fixed_str (size[i])) < 0)
            goto out;
        str[i] = size[i] ? fx[i] : t->str;
        off[i] = size[i] ? str_fix_off[i] : str_ptr_off[i];
    }
    size_t n = task_fields (t, str, str, off, with_hex, f);
    rc = make_compound (f, n, sizeof (struct task_rec), memp, filep);
out:
    for (int i = 0; i < 3; i++)
        close_id (&fx[i]);
    return rc;
}

/* The reader's memory type of /tasks in the file ftype: every field but
 * key_hex (fields are matched by name; key_hex was a variable-length
 * string in earlier snapshots, and HDF5 converts no variable-length string
 * to a fixed-length one), and each string column as the file has it:
 * fixed[i] gets the size of a fixed-length one (read one byte longer),
 * 0 for a variable-length one or none.  -1 with errno EINVAL: a column
 * that is no string this reader knows. */
static int task_read_type (struct types *t, hid_t ftype, size_t fixed[3])
{
    size_t mem[3];
    hid_t file_unused = H5I_INVALID_HID;

    for (int i = 0; i < 3; i++) {
        int idx = H5Tget_member_index (ftype, str_cols[i]);
        fixed[i] = mem[i] = 0;
        if (idx < 0)
            continue;
        hid_t mt = H5Tget_member_type (ftype, (unsigned)idx);
        htri_t var = mt < 0 ? -1 : H5Tis_variable_str (mt);
        size_t size = mt < 0 ? 0 : H5Tget_size (mt);
        bool is_str = mt >= 0 && H5Tget_class (mt) == H5T_STRING;
        close_id (&mt);
        if (var < 0)
            return -1;
        if (!is_str || (!var && (size == 0 || size > GR_SNAP_FIXED_MAX + 1))) {
            errno = EINVAL;
            return -1;
        }
        fixed[i] = var ? 0 : size;
        mem[i] = var ? 0 : size + 1;
    }
    int rc = task_compound (t, mem, false, &t->task_read, &file_unused);
    close_id (&file_unused);
    return rc;
}

/* Reclaim the strings HDF5 allocated while reading n elements of type
 * into buf. */
static void reclaim (hid_t type, hsize_t n, void *buf)
{
    hid_t space = H5Screate_simple (1, &n, NULL);
    if (space < 0)
        return;
#if H5_VERSION_GE(1, 12, 0)
    H5Treclaim (type, space, H5P_DEFAULT, buf);
#else
    H5Dvlen_reclaim (type, space, H5P_DEFAULT, buf);
#endif
    H5Sclose (space);
}

static double now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Write or overwrite a scalar attribute of loc. */
static int put_attr (hid_t loc, const char *name, hid_t file_type, hid_t mem_type,
                     const void *value)
{
    hid_t space = H5I_INVALID_HID, attr = H5I_INVALID_HID;
    htri_t exists = H5Aexists (loc, name);

    if (exists < 0)
        return -1;
    if (exists)
        attr = H5Aopen (loc, name, H5P_DEFAULT);
    else if ((space = H5Screate (H5S_SCALAR)) >= 0)
        attr = H5Acreate2 (loc, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr < 0 || H5Awrite (attr, mem_type, value) < 0)
        goto error;
    close_id (&space);
    return close_id (&attr);
error:
    close_id (&attr);
    close_id (&space);
    return -1;
}

static int put_str (gr_snap_t *s, hid_t loc, const char *name, const char *value)
{
    const char *v = value ? value : "";
    return put_attr (loc, name, s->t.str, s->t.str, &v);
}

static int put_u64 (hid_t loc, const char *name, uint64_t v)
{
    return put_attr (loc, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v);
}

static int put_u32 (hid_t loc, const char *name, uint32_t v)
{
    return put_attr (loc, name, H5T_STD_U32LE, H5T_NATIVE_UINT32, &v);
}

static int put_f64 (hid_t loc, const char *name, double v)
{
    return put_attr (loc, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}

static int write_meta (gr_snap_t *s, const gr_snap_meta_t *m)
{
    hid_t root = s->file;
    char hash[17];

    snprintf (hash, sizeof (hash), "%016" PRIx64, m->spec_hash);
    if (put_str (s, root, "format", SNAP_FORMAT) < 0
        || put_str (s, root, "job", m->job) < 0
        || put_str (s, root, "spec_hash", hash) < 0
        || put_str (s, root, "spec_path", m->spec_path) < 0
        || put_str (s, root, "run_dir", m->run_dir) < 0
        || put_str (s, root, "gridrun_version", m->version) < 0
        || put_u32 (root, "incarnation", m->incarnation) < 0
        || put_f64 (root, "started", m->started) < 0
        || put_str (s, root, "state", m->state) < 0)
        return -1;
    return 0;
}

static int create_tasks (gr_snap_t *s)
{
    hsize_t dim = 0, maxdim = H5S_UNLIMITED, chunk = SNAP_BATCH;
    hid_t space = H5I_INVALID_HID, dcpl = H5I_INVALID_HID;

    if ((space = H5Screate_simple (1, &dim, &maxdim)) < 0
        || (dcpl = H5Pcreate (H5P_DATASET_CREATE)) < 0
        || H5Pset_chunk (dcpl, 1, &chunk) < 0
        || (s->tasks = H5Dcreate2 (s->file, "tasks", s->t.task_file, space,
                                   H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0)
        goto error;
    close_id (&dcpl);
    close_id (&space);
    return 0;
error:
    close_id (&dcpl);
    close_id (&space);
    return -1;
}

/* A group whose attributes come back in the order they were added, so the
 * metrics read back as the runtime listed them. */
static hid_t create_ordered_group (hid_t loc, const char *name)
{
    hid_t gcpl = H5Pcreate (H5P_GROUP_CREATE);
    hid_t g = H5I_INVALID_HID;

    if (gcpl >= 0
        && H5Pset_attr_creation_order (gcpl, H5P_CRT_ORDER_TRACKED
                                                 | H5P_CRT_ORDER_INDEXED) >= 0)
        g = H5Gcreate2 (loc, name, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    close_id (&gcpl);
    return g;
}

static void snap_close (gr_snap_t *s)
{
    close_id (&s->tasks);
    close_id (&s->metrics);
    types_close (&s->t);
    if (close_id (&s->file) < 0) {
        /* HDF5 still holds the file, and its driver the state: leave the
         * state to it rather than free it under the driver. */
        s->disk = NULL;
    }
    H5Eclear2 (H5E_DEFAULT);
}

static void snap_free (gr_snap_t *s)
{
    int saved = errno;
    snap_close (s);
    free (s->disk);
    free (s->rec);
    free (s->path);
    free (s->tmp);
    free (s);
    errno = saved;
}

/* Release the snapshot and delete its temporary file. */
static void snap_discard (gr_snap_t *s)
{
    int saved = errno;
    snap_close (s);
    if (s->tmp)
        unlink (s->tmp);
    snap_free (s);
    errno = saved;
}

/* After HDF5 calls that write: report a disk error the file driver kept
 * from HDF5.  The snapshot can only be aborted after one. */
static int disk_failed (gr_snap_t *s, const char *what, gr_error_t *errp)
{
    if (!s->disk->err)
        return 0;
    s->failed = true;
    errno = s->disk->err;
    return gr_errprintf (errp, "%s '%s': %s", what, s->tmp, strerror (errno));
}

gr_snap_t *gr_snap_begin (const char *path, const gr_snap_meta_t *meta,
                          gr_error_t *errp)
{
    gr_snap_t *s = NULL;
    hid_t fapl = H5I_INVALID_HID, driver;
    struct vfd_fapl fa;
    bool created = false;

    if (!path || !*path || !meta) {
        errno = EINVAL;
        gr_errprintf (errp, "cannot start a snapshot: no %s given",
                      !meta ? "run description" : "path");
        return NULL;
    }
    h5_quiet ();
    if (!(s = calloc (1, sizeof (*s))))
        goto nomem;
    s->file = s->tasks = s->metrics = H5I_INVALID_HID;
    types_init (&s->t);
    if (!(s->path = strdup (path)) || !(s->tmp = malloc (strlen (path) + 5))
        || !(s->rec = calloc (SNAP_BATCH, sizeof (*s->rec)))
        || !(s->disk = calloc (1, sizeof (*s->disk))))
        goto nomem;
    sprintf (s->tmp, "%s.tmp", path);
    if (meta->sizes_known) {
        size_t longest[3] = {meta->name_max, meta->params_max, meta->host_max};
        for (int i = 0; i < 3; i++)
            s->fixed[i] = longest[i] <= GR_SNAP_FIXED_MAX ? longest[i] + 1 : 0;
    }
    if (types_create (&s->t) < 0
        || task_compound (&s->t, s->fixed, true, &s->t.task_mem, &s->t.task_file) < 0) {
        h5_fail (errp, "cannot set up the datatypes of snapshot", s->tmp);
        goto error;
    }
    /* Semi close: H5Fclose fails rather than leave an object open, so a
     * missed close shows up as an error instead of a half-written file. */
    fa.state = s->disk;
    if ((driver = vfd_get ()) < 0 || (fapl = H5Pcreate (H5P_FILE_ACCESS)) < 0
        || H5Pset_driver (fapl, driver, &fa) < 0
        || H5Pset_fclose_degree (fapl, H5F_CLOSE_SEMI) < 0) {
        h5_fail (errp, "cannot set up file access for snapshot", s->tmp);
        goto error;
    }
    if ((s->file = H5Fcreate (s->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)) < 0) {
        h5_fail (errp, "cannot create snapshot", s->tmp);
        goto error;
    }
    created = true;
    close_id (&fapl);
    if (write_meta (s, meta) < 0) {
        h5_fail (errp, "cannot write the run attributes of snapshot", s->tmp);
        goto error;
    }
    if (create_tasks (s) < 0) {
        h5_fail (errp, "cannot create /tasks in snapshot", s->tmp);
        goto error;
    }
    if ((s->metrics = create_ordered_group (s->file, "metrics")) < 0) {
        h5_fail (errp, "cannot create /metrics in snapshot", s->tmp);
        goto error;
    }
    if (disk_failed (s, "cannot create snapshot", errp) < 0)
        goto error;
    return s;
nomem:
    errno = ENOMEM;
    gr_errprintf (errp, "out of memory starting snapshot '%s'", path);
error:
    close_id (&fapl);
    if (s) {
        if (created)
            snap_discard (s);
        else
            snap_free (s);
    }
    return NULL;
}

/* key as 16 lowercase hex digits and a NUL, as "%016" PRIx64 prints it;
 * at millions of rows snprintf took a twentieth of the snapshot's time. */
static void key_to_hex (uint64_t key, char out[17])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, key >>= 4)
        out[i] = digits[key & 0xf];
    out[16] = '\0';
}

/* Write rows[0..n) (n <= SNAP_BATCH) at the end of /tasks. */
static int append_batch (gr_snap_t *s, const gr_snap_task_t *rows, size_t n,
                         gr_error_t *errp)
{
    hid_t fspace = H5I_INVALID_HID, mspace = H5I_INVALID_HID;
    hsize_t start = s->ntasks, count = n, total = s->ntasks + n;

    for (size_t i = 0; i < n; i++) {
        const gr_snap_task_t *t = &rows[i];
        struct task_rec *r = &s->rec[i];
        key_to_hex (t->key, r->key_hex);
        r->key = t->key;
        /* HDF5 only reads through these pointers when writing. */
        r->name = (char *)(t->name ? t->name : "");
        r->params = (char *)(t->params ? t->params : "");
        r->host = (char *)(t->host ? t->host : "");
        char *fix[3] = {r->name_fix, r->params_fix, r->host_fix};
        const char *str[3] = {r->name, r->params, r->host};
        for (int c = 0; c < 3; c++) {
            if (s->fixed[c]) {
                /* NUL-padded to the column's size, so that no byte of an
                 * earlier row is written with this one. */
                size_t len = strlen (str[c]);
                memcpy (fix[c], str[c], len);
                memset (fix[c] + len, 0, s->fixed[c] - len);
            }
        }
        r->state = (int32_t)t->state;
        r->attempts = t->attempts;
        r->exit_code = t->exit_code;
        r->signal = t->signal;
        r->wall = t->wall;
        r->maxrss_kb = t->maxrss_kb;
        r->worker = t->worker;
    }
    if (H5Dset_extent (s->tasks, &total) < 0
        || (fspace = H5Dget_space (s->tasks)) < 0
        || H5Sselect_hyperslab (fspace, H5S_SELECT_SET, &start, NULL, &count, NULL) < 0
        || (mspace = H5Screate_simple (1, &count, NULL)) < 0
        || H5Dwrite (s->tasks, s->t.task_mem, mspace, fspace, H5P_DEFAULT, s->rec) < 0) {
        s->failed = true;
        h5_fail (errp, "cannot write tasks to snapshot", s->tmp);
        goto error;
    }
    close_id (&mspace);
    close_id (&fspace);
    if (disk_failed (s, "cannot write tasks to snapshot", errp) < 0)
        return -1;
    s->ntasks = total;
    return 0;
error:
    close_id (&mspace);
    close_id (&fspace);
    return -1;
}

int gr_snap_add_tasks (gr_snap_t *s, const gr_snap_task_t *rows, size_t n,
                       gr_error_t *errp)
{
    if (!s || (n > 0 && !rows)) {
        errno = EINVAL;
        return gr_errprintf (errp, "cannot add tasks: no snapshot or rows given");
    }
    if (s->failed) {
        errno = EIO;
        return gr_errprintf (errp, "cannot add tasks to snapshot '%s': an earlier "
                             "write to it failed", s->path);
    }
    /* All checked before any is written, so a refusal adds nothing. */
    for (size_t i = 0; i < n; i++) {
        const char *name = rows[i].name ? rows[i].name : "";
        if ((unsigned)rows[i].state >= NSTATES) {
            errno = EINVAL;
            return gr_errprintf (errp, "cannot add task '%s' to snapshot '%s': "
                                 "unknown state %d",
                                 name, s->tmp, (int)rows[i].state);
        }
        const char *str[3] = {rows[i].name, rows[i].params, rows[i].host};
        for (int c = 0; c < 3; c++) {
            size_t len = str[c] ? strlen (str[c]) : 0;
            if (s->fixed[c] && len >= s->fixed[c]) {
                errno = EINVAL;
                return gr_errprintf (errp, "cannot add task '%s' to snapshot '%s': "
                                     "its %s is %zu bytes long, and the snapshot "
                                     "was begun for %zu at most",
                                     name, s->tmp, str_cols[c], len, s->fixed[c] - 1);
            }
        }
    }
    while (n > 0) {
        size_t k = n > SNAP_BATCH ? SNAP_BATCH : n;
        if (append_batch (s, rows, k, errp) < 0)
            return -1;
        rows += k;
        n -= k;
    }
    return 0;
}

int gr_snap_set_workers (gr_snap_t *s, const gr_snap_worker_t *w, size_t n,
                         gr_error_t *errp)
{
    struct worker_rec *rec = NULL;
    hid_t space = H5I_INVALID_HID, ds = H5I_INVALID_HID;
    hsize_t dim = n;

    if (!s || (n > 0 && !w)) {
        errno = EINVAL;
        return gr_errprintf (errp, "cannot set workers: no snapshot or workers given");
    }
    if (n > 0 && !(rec = calloc (n, sizeof (*rec)))) {
        errno = ENOMEM;
        return gr_errprintf (errp, "out of memory writing workers to snapshot '%s'",
                             s->tmp);
    }
    for (size_t i = 0; i < n; i++) {
        rec[i].rank = w[i].rank;
        rec[i].host = (char *)(w[i].host ? w[i].host : "");
        rec[i].cpus = w[i].cpus;
        rec[i].gpus = w[i].gpus;
        rec[i].lost = w[i].lost;
    }
    /* Setting the workers again replaces them. */
    if ((s->have_workers && H5Ldelete (s->file, "workers", H5P_DEFAULT) < 0)
        || (space = H5Screate_simple (1, &dim, NULL)) < 0
        || (ds = H5Dcreate2 (s->file, "workers", s->t.worker_file, space, H5P_DEFAULT,
                             H5P_DEFAULT, H5P_DEFAULT)) < 0
        || (n > 0
            && H5Dwrite (ds, s->t.worker_mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, rec) < 0)
        || close_id (&ds) < 0) {
        s->failed = true;
        h5_fail (errp, "cannot write /workers to snapshot", s->tmp);
        goto error;
    }
    s->have_workers = true;
    close_id (&space);
    free (rec);
    return disk_failed (s, "cannot write /workers to snapshot", errp);
error:
    close_id (&ds);
    close_id (&space);
    free (rec);
    return -1;
}

int gr_snap_set_counts (gr_snap_t *s, const gr_snap_counts_t *c, gr_error_t *errp)
{
    if (!s || !c) {
        errno = EINVAL;
        return gr_errprintf (errp, "cannot set counts: no snapshot or counts given");
    }
    /* Kept until commit, which writes /counts whether or not this was
     * called, so the layout is always whole. */
    s->counts = *c;
    return 0;
}

int gr_snap_add_metric (gr_snap_t *s, const char *name, double value,
                        gr_error_t *errp)
{
    if (!s || !name || !*name || strchr (name, '/') || strcmp (name, ".") == 0) {
        errno = EINVAL;
        return gr_errprintf (errp, "cannot add metric '%s': not a valid name",
                             name ? name : "");
    }
    if (put_f64 (s->metrics, name, value) < 0) {
        s->failed = true;
        char what[256];
        snprintf (what, sizeof (what), "cannot write metric '%s' to snapshot", name);
        return h5_fail (errp, what, s->tmp);
    }
    return disk_failed (s, "cannot write a metric to snapshot", errp);
}

static int write_counts (gr_snap_t *s)
{
    const uint64_t *v = &s->counts.total;
    hid_t g = H5Gcreate2 (s->file, "counts", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);

    if (g < 0)
        return -1;
    /* gr_snap_counts_t is NCOUNTS uint64_t in the order of count_names. */
    for (size_t i = 0; i < NCOUNTS; i++) {
        if (put_u64 (g, count_names[i], v[i]) < 0) {
            close_id (&g);
            return -1;
        }
    }
    return close_id (&g);
}

/* fsync the file at path through a fresh descriptor: HDF5 does not sync
 * on close. */
static int fsync_path (const char *path)
{
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync (fd);
    int saved = errno;
    close (fd);
    errno = saved;
    return rc;
}

int gr_snap_commit (gr_snap_t *s, gr_error_t *errp)
{
    if (!s) {
        errno = EINVAL;
        return gr_errprintf (errp, "cannot commit: no snapshot given");
    }
    if (s->failed) {
        errno = s->disk && s->disk->err ? s->disk->err : EIO;
        gr_errprintf (errp, "cannot commit snapshot '%s': an earlier write to it "
                      "failed", s->path);
        goto error;
    }
    if (write_counts (s) < 0) {
        h5_fail (errp, "cannot write /counts to snapshot", s->tmp);
        goto error;
    }
    if (!s->have_workers && gr_snap_set_workers (s, NULL, 0, errp) < 0)
        goto error;
    if (put_f64 (s->file, "written", now ()) < 0) {
        h5_fail (errp, "cannot write the run attributes of snapshot", s->tmp);
        goto error;
    }
    /* Every close can be where HDF5 writes, so every one is checked. */
    if (close_id (&s->tasks) < 0 || close_id (&s->metrics) < 0) {
        h5_fail (errp, "cannot write snapshot", s->tmp);
        goto error;
    }
    if (close_id (&s->file) < 0) {
        s->disk = NULL; /* still the driver's: see snap_close() */
        h5_fail (errp, "cannot write snapshot", s->tmp);
        goto error;
    }
    types_close (&s->t);
    if (disk_failed (s, "cannot write snapshot", errp) < 0)
        goto error;
    if (fsync_path (s->tmp) < 0) {
        gr_errprintf (errp, "cannot sync snapshot '%s': %s", s->tmp, strerror (errno));
        goto error;
    }
    if (rename (s->tmp, s->path) < 0) {
        gr_errprintf (errp, "cannot rename '%s' to '%s': %s", s->tmp, s->path,
                      strerror (errno));
        goto error;
    }
    /* From here the new snapshot is in place: a failure to sync the
     * directory is reported, but nothing is left to remove. */
    if (gr_fsync_dir_of (s->path) < 0) {
        gr_errprintf (errp, "cannot sync the directory of snapshot '%s': %s", s->path,
                      strerror (errno));
        snap_free (s);
        return -1;
    }
    snap_free (s);
    return 0;
error:
    snap_discard (s);
    return -1;
}

void gr_snap_abort (gr_snap_t *s)
{
    if (s)
        snap_discard (s);
}

/* Reading. */

struct reader {
    const char *path;
    hid_t file;
    struct types t;
};

static void reader_close (struct reader *r)
{
    int saved = errno;
    types_close (&r->t);
    close_id (&r->file);
    H5Eclear2 (H5E_DEFAULT);
    errno = saved;
}

/* Read a scalar string attribute of loc, variable or fixed length, into a
 * malloc'd string.  Returns 1, 0 when there is no such attribute, or -1:
 * an HDF5 error (*notstr false) or not a string (*notstr true). */
static int get_str (hid_t loc, const char *name, char **out, bool *notstr)
{
    hid_t attr = H5I_INVALID_HID, ftype = H5I_INVALID_HID, mtype = H5I_INVALID_HID;
    hid_t space = H5I_INVALID_HID;
    htri_t exists = H5Aexists (loc, name);
    char *v = NULL;
    int rc = -1;

    *notstr = false;
    *out = NULL;
    if (exists <= 0)
        return exists < 0 ? -1 : 0;
    if ((attr = H5Aopen (loc, name, H5P_DEFAULT)) < 0
        || (ftype = H5Aget_type (attr)) < 0 || (space = H5Aget_space (attr)) < 0)
        goto done;
    if (H5Tget_class (ftype) != H5T_STRING
        || H5Sget_simple_extent_type (space) != H5S_SCALAR) {
        *notstr = true;
        goto done;
    }
    htri_t vl = H5Tis_variable_str (ftype);
    /* HDF5 converts between strings of one character set only. */
    H5T_cset_t cset = H5Tget_cset (ftype);
    if (vl < 0 || cset < 0 || (mtype = H5Tcopy (H5T_C_S1)) < 0
        || H5Tset_cset (mtype, cset) < 0)
        goto done;
    if (vl) {
        char *p = NULL;
        if (H5Tset_size (mtype, H5T_VARIABLE) < 0 || H5Aread (attr, mtype, &p) < 0)
            goto done;
        v = strdup (p ? p : "");
        reclaim (mtype, 1, &p);
    } else {
        size_t size = H5Tget_size (ftype);
        if (!(v = calloc (1, size + 1)) || H5Tset_size (mtype, size + 1) < 0
            || H5Tset_strpad (mtype, H5T_STR_NULLTERM) < 0
            || H5Aread (attr, mtype, v) < 0) {
            free (v);
            v = NULL;
            goto done;
        }
    }
    if (!v) {
        errno = ENOMEM;
        goto done;
    }
    *out = v;
    rc = 1;
done:
    close_id (&mtype);
    close_id (&space);
    close_id (&ftype);
    close_id (&attr);
    return rc;
}

/* Read a scalar numeric attribute as mem_type.  Returns 1, 0 when absent,
 * -1 on error. */
static int get_num (hid_t loc, const char *name, hid_t mem_type, void *out)
{
    htri_t exists = H5Aexists (loc, name);
    hid_t attr;

    if (exists <= 0)
        return exists < 0 ? -1 : 0;
    if ((attr = H5Aopen (loc, name, H5P_DEFAULT)) < 0)
        return -1;
    herr_t rc = H5Aread (attr, mem_type, out);
    close_id (&attr);
    return rc < 0 ? -1 : 1;
}

/* Open path read-only and check that it is a gridrun snapshot. */
static int reader_open (struct reader *r, const char *path, gr_error_t *errp)
{
    char *format = NULL;
    bool notstr;
    struct stat st;
    hid_t fapl = H5I_INVALID_HID;

    r->path = path;
    r->file = H5I_INVALID_HID;
    types_init (&r->t);
    h5_quiet ();
    /* HDF5 reports a missing file as a failure to open, with the system's
     * reason buried in its stack: ask the system first. */
    if (stat (path, &st) < 0)
        return gr_errprintf (errp, "cannot open snapshot '%s': %s", path,
                             strerror (errno));
    if (S_ISDIR (st.st_mode)) {
        errno = EISDIR;
        return gr_errprintf (errp, "'%s' is a directory, not a gridrun snapshot", path);
    }
    htri_t is = H5Fis_hdf5 (path);
    if (is == 0) {
        H5Eclear2 (H5E_DEFAULT);
        errno = EINVAL;
        return gr_errprintf (errp, "'%s' is not a gridrun snapshot: it is not an "
                             "HDF5 file", path);
    }
    if (is < 0 || (fapl = H5Pcreate (H5P_FILE_ACCESS)) < 0
#if H5_VERSION_GE(1, 10, 7)
        /* Lock, but still read where the filesystem has no locks (often
         * the case on parallel filesystems). */
        || H5Pset_file_locking (fapl, true, true) < 0
#endif
        || (r->file = H5Fopen (path, H5F_ACC_RDONLY, fapl)) < 0) {
        h5_fail (errp, "cannot open snapshot", path);
        goto error;
    }
    close_id (&fapl);
    int rc = get_str (r->file, "format", &format, &notstr);
    if (rc < 0 && !notstr) {
        h5_fail (errp, "cannot read the format attribute of snapshot", path);
        goto error;
    }
    if (rc <= 0) {
        errno = EINVAL;
        gr_errprintf (errp, "'%s' is not a gridrun snapshot: %s", path,
                      rc == 0 ? "it has no format attribute"
                              : "its format attribute is not a string");
        goto error;
    }
    if (strcmp (format, SNAP_FORMAT) != 0) {
        errno = EINVAL;
        gr_errprintf (errp, "'%s' is not a gridrun snapshot: its format is '%s', "
                      "not '%s'", path, format, SNAP_FORMAT);
        goto error;
    }
    free (format);
    format = NULL;
    if (types_create (&r->t) < 0) {
        h5_fail (errp, "cannot set up the datatypes for reading snapshot", path);
        goto error;
    }
    return 0;
error:
    close_id (&fapl);
    free (format);
    reader_close (r);
    return -1;
}

/* Open a dataset that must be there and one-dimensional; *np gets its
 * length. */
static hid_t open_rows (struct reader *r, const char *name, hsize_t *np,
                        gr_error_t *errp)
{
    hid_t ds = H5I_INVALID_HID, space = H5I_INVALID_HID;
    htri_t exists = H5Lexists (r->file, name, H5P_DEFAULT);

    if (exists == 0) {
        errno = EINVAL;
        gr_errprintf (errp, "'%s' is not a gridrun snapshot: it has no /%s", r->path,
                      name);
        return H5I_INVALID_HID;
    }
    if (exists < 0 || (ds = H5Dopen2 (r->file, name, H5P_DEFAULT)) < 0
        || (space = H5Dget_space (ds)) < 0)
        goto h5error;
    if (H5Sget_simple_extent_ndims (space) != 1) {
        errno = EINVAL;
        gr_errprintf (errp, "'%s' is not a gridrun snapshot: /%s is not a list of rows",
                      r->path, name);
        goto error;
    }
    if (H5Sget_simple_extent_dims (space, np, NULL) < 0)
        goto h5error;
    close_id (&space);
    return ds;
h5error:;
    char what[128];
    snprintf (what, sizeof (what), "cannot open /%s in snapshot", name);
    h5_fail (errp, what, r->path);
error:
    close_id (&space);
    close_id (&ds);
    return H5I_INVALID_HID;
}

/* Read rows [start, start + n) of ds as mem_type into buf. */
static int read_rows (hid_t ds, hid_t mem_type, hsize_t start, hsize_t n, void *buf)
{
    hid_t fspace = H5Dget_space (ds), mspace = H5I_INVALID_HID;
    int rc = -1;

    if (fspace >= 0
        && H5Sselect_hyperslab (fspace, H5S_SELECT_SET, &start, NULL, &n, NULL) >= 0
        && (mspace = H5Screate_simple (1, &n, NULL)) >= 0
        && H5Dread (ds, mem_type, mspace, fspace, H5P_DEFAULT, buf) >= 0)
        rc = 0;
    close_id (&mspace);
    close_id (&fspace);
    return rc;
}

static int read_counts (struct reader *r, gr_snap_counts_t *c, gr_error_t *errp)
{
    uint64_t *v = &c->total;
    hid_t g = H5I_INVALID_HID;
    htri_t exists = H5Lexists (r->file, "counts", H5P_DEFAULT);

    memset (c, 0, sizeof (*c));
    if (exists == 0) {
        errno = EINVAL;
        return gr_errprintf (errp, "'%s' is not a gridrun snapshot: it has no /counts",
                             r->path);
    }
    if (exists < 0 || (g = H5Gopen2 (r->file, "counts", H5P_DEFAULT)) < 0)
        goto h5error;
    for (size_t i = 0; i < NCOUNTS; i++) {
        /* A count a later version no longer writes reads as zero. */
        if (get_num (g, count_names[i], H5T_NATIVE_UINT64, &v[i]) < 0)
            goto h5error;
    }
    close_id (&g);
    return 0;
h5error:
    h5_fail (errp, "cannot read /counts of snapshot", r->path);
    close_id (&g);
    return -1;
}

int gr_snap_read (const char *path, gr_snap_row_f fn, void *arg,
                  gr_snap_counts_t *counts, gr_error_t *errp)
{
    struct reader r;
    struct task_rec *rec = NULL;
    hid_t ds = H5I_INVALID_HID;
    hsize_t n, off;
    size_t fixed[3];

    if (!path) {
        errno = EINVAL;
        return gr_errprintf (errp, "cannot read a snapshot: no path given");
    }
    if (reader_open (&r, path, errp) < 0)
        return -1;
    if ((ds = open_rows (&r, "tasks", &n, errp)) < 0)
        goto error;
    hid_t ftype = H5Dget_type (ds);
    int trc = ftype < 0 ? -1 : task_read_type (&r.t, ftype, fixed);
    close_id (&ftype);
    if (trc < 0) {
        if (errno == EINVAL)
            gr_errprintf (errp, "'%s' is not a snapshot this gridrun reads: a name, "
                          "params or host column of /tasks is not a string of at "
                          "most %d bytes", path, GR_SNAP_FIXED_MAX + 1);
        else
            h5_fail (errp, "cannot read the row type of /tasks of snapshot", path);
        goto error;
    }
    if (!(rec = calloc (SNAP_BATCH, sizeof (*rec)))) {
        errno = ENOMEM;
        gr_errprintf (errp, "out of memory reading snapshot '%s'", path);
        goto error;
    }
    for (off = 0; off < n && fn; off += SNAP_BATCH) {
        hsize_t k = n - off > SNAP_BATCH ? SNAP_BATCH : n - off;
        int stop = 0;
        /* Fields the file lacks are left as they are: make them zero. */
        memset (rec, 0, (size_t)k * sizeof (*rec));
        if (read_rows (ds, r.t.task_read, off, k, rec) < 0) {
            h5_fail (errp, "cannot read /tasks of snapshot", path);
            /* A read that failed part way may have allocated strings. */
            reclaim (r.t.task_read, k, rec);
            goto error;
        }
        for (hsize_t i = 0; i < k && !stop; i++) {
            const struct task_rec *x = &rec[i];
            gr_snap_task_t row = {
                .key = x->key,
                .name = fixed[0] ? x->name_fix : x->name ? x->name : "",
                .params = fixed[1] ? x->params_fix : x->params ? x->params : "",
                .state = (gr_task_state_t)x->state,
                .attempts = x->attempts,
                .exit_code = x->exit_code,
                .signal = x->signal,
                .wall = x->wall,
                .maxrss_kb = x->maxrss_kb,
                .host = fixed[2] ? x->host_fix : x->host ? x->host : "",
                .worker = x->worker,
            };
            stop = fn (&row, arg);
        }
        reclaim (r.t.task_read, k, rec);
        if (stop) {
            gr_errprintf (errp, "reading snapshot '%s' stopped at a row the caller "
                          "refused", path);
            goto error;
        }
    }
    if (counts && read_counts (&r, counts, errp) < 0)
        goto error;
    free (rec);
    close_id (&ds);
    reader_close (&r);
    return 0;
error:
    free (rec);
    close_id (&ds);
    reader_close (&r);
    return -1;
}

void gr_snap_meta_clear (gr_snap_meta_t *m)
{
    if (!m)
        return;
    /* The strings were malloc'd by gr_snap_read_meta, which the const
     * of the shared struct hides. */
    free ((char *)m->job);
    free ((char *)m->spec_path);
    free ((char *)m->run_dir);
    free ((char *)m->version);
    free ((char *)m->state);
    memset (m, 0, sizeof (*m));
}

int gr_snap_read_meta (const char *path, gr_snap_meta_t *meta, double *writtenp,
                       gr_error_t *errp)
{
    struct reader r;
    gr_snap_meta_t m = {0};
    char *hash = NULL, *end;
    double written = 0;
    struct {
        const char *name;
        const char **dst;
    } strs[] = {
        {"job", &m.job},         {"spec_path", &m.spec_path},
        {"run_dir", &m.run_dir}, {"gridrun_version", &m.version},
        {"state", &m.state},
    };
    bool notstr;

    if (!path || !meta) {
        errno = EINVAL;
        return gr_errprintf (errp, "cannot read a snapshot: no path or meta given");
    }
    if (reader_open (&r, path, errp) < 0)
        return -1;
    for (size_t i = 0; i < sizeof (strs) / sizeof (strs[0]); i++) {
        char *v;
        int rc = get_str (r.file, strs[i].name, &v, &notstr);
        if (rc < 0 && !notstr) {
            h5_fail (errp, "cannot read the run attributes of snapshot", path);
            goto error;
        }
        /* A missing or odd attribute reads as empty rather than hiding the
         * rest from `gridrun status`. */
        *strs[i].dst = v ? v : strdup ("");
        if (!*strs[i].dst)
            goto nomem;
    }
    if (get_str (r.file, "spec_hash", &hash, &notstr) < 0 && !notstr) {
        h5_fail (errp, "cannot read the run attributes of snapshot", path);
        goto error;
    }
    if (hash) {
        m.spec_hash = strtoull (hash, &end, 16);
        free (hash);
    }
    if (get_num (r.file, "incarnation", H5T_NATIVE_UINT32, &m.incarnation) < 0
        || get_num (r.file, "started", H5T_NATIVE_DOUBLE, &m.started) < 0
        || get_num (r.file, "written", H5T_NATIVE_DOUBLE, &written) < 0) {
        h5_fail (errp, "cannot read the run attributes of snapshot", path);
        goto error;
    }
    reader_close (&r);
    *meta = m;
    if (writtenp)
        *writtenp = written;
    return 0;
nomem:
    errno = ENOMEM;
    gr_errprintf (errp, "out of memory reading snapshot '%s'", path);
error:
    gr_snap_meta_clear (&m);
    reader_close (&r);
    return -1;
}

int gr_snap_read_workers (const char *path, gr_snap_worker_f fn, void *arg,
                          gr_error_t *errp)
{
    struct reader r;
    struct worker_rec *rec = NULL;
    hid_t ds = H5I_INVALID_HID;
    hsize_t n;

    if (!path) {
        errno = EINVAL;
        return gr_errprintf (errp, "cannot read a snapshot: no path given");
    }
    if (reader_open (&r, path, errp) < 0)
        return -1;
    if ((ds = open_rows (&r, "workers", &n, errp)) < 0)
        goto error;
    /* One row per rank: small enough to read at once. */
    if (n > 0 && !(rec = calloc ((size_t)n, sizeof (*rec)))) {
        errno = ENOMEM;
        gr_errprintf (errp, "out of memory reading snapshot '%s'", path);
        goto error;
    }
    if (n > 0 && read_rows (ds, r.t.worker_mem, 0, n, rec) < 0) {
        h5_fail (errp, "cannot read /workers of snapshot", path);
        reclaim (r.t.worker_mem, n, rec);
        goto error;
    }
    int stop = 0;
    for (hsize_t i = 0; i < n && fn && !stop; i++) {
        gr_snap_worker_t w = {
            .rank = rec[i].rank,
            .host = rec[i].host ? rec[i].host : "",
            .cpus = rec[i].cpus,
            .gpus = rec[i].gpus,
            .lost = rec[i].lost,
        };
        stop = fn (&w, arg);
    }
    if (n > 0)
        reclaim (r.t.worker_mem, n, rec);
    if (stop) {
        gr_errprintf (errp, "reading snapshot '%s' stopped at a worker the caller "
                      "refused", path);
        goto error;
    }
    free (rec);
    close_id (&ds);
    reader_close (&r);
    return 0;
error:
    free (rec);
    close_id (&ds);
    reader_close (&r);
    return -1;
}

struct metric_walk {
    gr_snap_metric_f fn;
    void *arg;
    bool stopped;
};

static herr_t metric_cb (hid_t loc, const char *name, const H5A_info_t *info, void *arg)
{
    struct metric_walk *mw = arg;
    double v;

    if (get_num (loc, name, H5T_NATIVE_DOUBLE, &v) < 0)
        return -1;
    if (mw->fn (name, v, mw->arg) != 0) {
        mw->stopped = true;
        return 1;
    }
    return 0;
}

int gr_snap_read_metrics (const char *path, gr_snap_metric_f fn, void *arg,
                          gr_error_t *errp)
{
    struct reader r;
    struct metric_walk mw = {.fn = fn, .arg = arg};
    hid_t g = H5I_INVALID_HID;
    hsize_t idx = 0;

    if (!path || !fn) {
        errno = EINVAL;
        return gr_errprintf (errp, "cannot read a snapshot: no path or callback given");
    }
    if (reader_open (&r, path, errp) < 0)
        return -1;
    htri_t exists = H5Lexists (r.file, "metrics", H5P_DEFAULT);
    if (exists == 0) {
        errno = EINVAL;
        gr_errprintf (errp, "'%s' is not a gridrun snapshot: it has no /metrics", path);
        goto error;
    }
    if (exists < 0 || (g = H5Gopen2 (r.file, "metrics", H5P_DEFAULT)) < 0)
        goto h5error;
    /* In the order they were added when the file tracks it. */
    H5_index_t order = H5_INDEX_CRT_ORDER;
    hid_t gcpl = H5Gget_create_plist (g);
    unsigned flags = 0;
    if (gcpl < 0 || H5Pget_attr_creation_order (gcpl, &flags) < 0) {
        close_id (&gcpl);
        goto h5error;
    }
    close_id (&gcpl);
    if (!(flags & H5P_CRT_ORDER_INDEXED))
        order = H5_INDEX_NAME;
    if (H5Aiterate2 (g, order, H5_ITER_INC, &idx, metric_cb, &mw) < 0)
        goto h5error;
    if (mw.stopped) {
        gr_errprintf (errp, "reading snapshot '%s' stopped at a metric the caller "
                      "refused", path);
        goto error;
    }
    close_id (&g);
    reader_close (&r);
    return 0;
h5error:
    h5_fail (errp, "cannot read /metrics of snapshot", path);
error:
    close_id (&g);
    reader_close (&r);
    return -1;
}
