/* Training checkpoints on disk: the part that needs no MPI.
 *
 * libgridrun's gr_ckpt_* (src/ckpt/ckpt.c) writes and loads checkpoints
 * collectively; `gridrun ckpt ls|verify|show` (src/cmd/ckpt.c) reads them
 * without starting MPI.  Both go through this module for everything about
 * the files themselves: names, the per-step metadata and the index (a text
 * format with a CRC-32C), writing one rank's HDF5 file, and verifying a
 * file's bytes against its checksums.  doc/checkpoints.md describes the
 * format for people.
 *
 *   DIR/index                   the committed steps (written last, atomically)
 *   DIR/step-00000040/meta      this step's record (written before the rename)
 *   DIR/step-00000040/rank-00000.h5 ...   per-rank layout: one file per rank
 *   DIR/step-00000040/shared.h5           shared layout: one file
 *   DIR/.step-00000050.tmp/     a step being written (never read)
 *
 * A step record lists the arrays (name, type, layout, global shape, and
 * for sharded arrays the rows each saving rank held), the user attributes,
 * and the files: size, CRC-32C of the whole file, and the byte range and
 * CRC-32C of every dataset slab in it ("regions").  A file verifies when
 * its size matches, every region's bytes match their CRC, and the bytes
 * between the regions (HDF5's metadata) make up the file CRC with them.
 *
 * Checksums are of the little-endian bytes on disk; gridrun builds on
 * little-endian hosts only.
 *
 * Functions return 0 (or a pointer) on success and -1 (or NULL) with errno
 * set and, where they take one, errp filled with a sentence naming the
 * file.  Strings and arrays in the structures below belong to the
 * structure and are freed with it.
 */
#ifndef GR_CKPT_CKPTFILE_H
#define GR_CKPT_CKPTFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/common/error.h"

#define GR_CKF_MAX_DIMS 8
#define GR_CKF_NAME_MAX 255        /* bytes of an array or attribute name */
#define GR_CKF_STR_MAX 65536       /* bytes of a string attribute */
#define GR_CKF_MAX_RANKS (1 << 24)
/* The most slabs (one for each saving rank of each sharded array) that
 * the records of one file, an index or a step's meta, may have together:
 * whoever reads the file holds their row counts, 8 bytes a slab, and
 * every rank that loads a checkpoint reads the index.  The limit keeps a
 * short record ("ranks 16777216" and a few "rows NAME even" lines) from
 * making a reader allocate gigabytes.  2^25 slabs (256 MiB of counts)
 * is, for example, 65536 ranks times 512 sharded arrays over the steps
 * an index keeps. */
#define GR_CKF_MAX_SLABS (1 << 25)
#define GR_CKF_META "meta"
#define GR_CKF_INDEX "index"
#define GR_CKF_SHARED_FILE "shared.h5"
#define GR_CKF_FORMAT "gridrun-ckpt-1" /* the gridrun_format attribute */

/* The same values as gridrun.h's gr_dtype_t, gr_ckpt_layout_t and array
 * layouts (ckpt.c checks), so that this module does not need MPI's
 * header. */
enum { GR_CKF_F32, GR_CKF_F64, GR_CKF_I32, GR_CKF_I64, GR_CKF_F16, GR_CKF_BF16,
       GR_CKF_NTYPES };
enum { GR_CKF_PER_RANK = 0, GR_CKF_SHARED = 1 };
enum { GR_CKF_REPLICATED = 0, GR_CKF_SHARDED = 1 };
enum { GR_CKF_ATTR_I64, GR_CKF_ATTR_F64, GR_CKF_ATTR_STR };

typedef struct gr_ckf_array {
    char *name;
    int type;                          /* GR_CKF_F32 ... */
    int sharded;                       /* GR_CKF_REPLICATED or GR_CKF_SHARDED */
    int ndims;                         /* 0 (a scalar) to GR_CKF_MAX_DIMS */
    uint64_t dims[GR_CKF_MAX_DIMS];    /* global: a sharded dim 0 sums the rows */
    uint64_t *rows;                    /* sharded: rows of each saving rank (nranks);
                                          NULL when replicated */
} gr_ckf_array_t;

typedef struct gr_ckf_attr {
    char *name;
    int kind;                          /* GR_CKF_ATTR_I64 ... */
    int64_t i64;
    double f64;
    char *str;
} gr_ckf_attr_t;

/* The bytes of one dataset slab in a file. */
typedef struct gr_ckf_region {
    int array;                         /* index into the step's arrays */
    int slab;                          /* the saving rank of a sharded slab; -1
                                          for a replicated array */
    uint64_t offset;
    uint64_t size;
    uint32_t crc;
} gr_ckf_region_t;

typedef struct gr_ckf_file {
    char *name;                        /* within the step directory */
    uint64_t size;
    uint32_t crc;                      /* CRC-32C of all size bytes */
    size_t nregions;
    gr_ckf_region_t *regions;          /* sorted by offset, not overlapping */
} gr_ckf_file_t;

typedef struct gr_ckf_step {
    int64_t step;
    double time;                       /* epoch seconds of the save */
    int nranks;                        /* ranks that saved it */
    int layout;                        /* GR_CKF_PER_RANK or GR_CKF_SHARED */
    size_t narrays, nattrs, nfiles;
    gr_ckf_array_t *arrays;
    gr_ckf_attr_t *attrs;
    gr_ckf_file_t *files;              /* per-rank: rank-00000.h5 ... in rank order */
} gr_ckf_step_t;

/* ---- Names ----------------------------------------------------------- */

/* DIR/step-%08d and DIR/.step-%08d.tmp; -1 with ENAMETOOLONG if they do
 * not fit. */
int gr_ckf_step_dir (char *buf, size_t size, const char *dir, int64_t step);
int gr_ckf_tmp_dir (char *buf, size_t size, const char *dir, int64_t step);
/* rank-%05d.h5 */
void gr_ckf_rank_file (char *buf, size_t size, int rank);

const char *gr_ckf_type_name (int type);    /* "f32" ...; "?" if unknown */
size_t gr_ckf_type_size (int type);         /* 0 if unknown */
const char *gr_ckf_layout_name (int layout);/* "per-rank", "shared" */

/* An array or attribute name: 1 to GR_CKF_NAME_MAX bytes, no '/', no
 * control characters, not "." or "..".  Returns NULL when fine, else why
 * not (a static string). */
const char *gr_ckf_name_problem (const char *name);

/* ---- Step records ---------------------------------------------------- */

gr_ckf_step_t *gr_ckf_step_new (int64_t step, int nranks, int layout);
void gr_ckf_step_free (gr_ckf_step_t *s);   /* NULL is fine; keeps errno */
/* rows: nranks entries for a sharded array (copied), NULL when replicated;
 * dims[0] of a sharded array is replaced by their sum. */
int gr_ckf_step_add_array (gr_ckf_step_t *s, const char *name, int type, int sharded,
                           int ndims, const uint64_t *dims, const uint64_t *rows);
int gr_ckf_step_add_attr (gr_ckf_step_t *s, const gr_ckf_attr_t *a);
/* Append a file (its name and regions copied); returns its index. */
int gr_ckf_step_add_file (gr_ckf_step_t *s, const gr_ckf_file_t *f);
/* Free what a gr_ckf_file_t holds and zero it. */
void gr_ckf_file_clear (gr_ckf_file_t *f);
int gr_ckf_file_add_region (gr_ckf_file_t *f, int array, int slab, uint64_t offset,
                            uint64_t size, uint32_t crc);

/* Index of the array called name, or -1. */
int gr_ckf_find_array (const gr_ckf_step_t *s, const char *name);
const gr_ckf_attr_t *gr_ckf_find_attr (const gr_ckf_step_t *s, const char *name);
/* Bytes of one row (a scalar's whole size when ndims is 0), of the whole
 * array, and the first global row of a saving rank's slab. */
uint64_t gr_ckf_row_bytes (const gr_ckf_array_t *a);
uint64_t gr_ckf_array_bytes (const gr_ckf_array_t *a);
uint64_t gr_ckf_row_offset (const gr_ckf_array_t *a, int slab);
/* The even split of rows over n ranks (the first rows % n get one more):
 * rank r's first row and count. */
void gr_ckf_split (uint64_t rows, int n, int r, uint64_t *first, uint64_t *count);
/* The total bytes of the step's files. */
uint64_t gr_ckf_step_bytes (const gr_ckf_step_t *s);

/* Check that a record hangs together: names, types, shapes, rows, at most
 * GR_CKF_MAX_SLABS slabs, one region per slab in the file the layout puts
 * it in, with the right size, inside the file, not overlapping.  what
 * names the source in errp ("DIR/index", "DIR/step-00000040/meta").
 * Takes time in proportion to the record's arrays, slabs and regions
 * (times a logarithm). */
int gr_ckf_step_check (const gr_ckf_step_t *s, const char *what, gr_error_t *errp);

/* The record as text (malloc'd, NUL-terminated; *lenp without the NUL),
 * and back.  path and line0 (the record's first line) only place errors. */
char *gr_ckf_step_format (const gr_ckf_step_t *s, size_t *lenp);
gr_ckf_step_t *gr_ckf_step_parse (const char *text, size_t len, const char *path,
                                  int line0, gr_error_t *errp);

/* ---- Metadata file and index ----------------------------------------- */

/* Write stepdir/meta (temporary file, fsync, rename, fsync stepdir), and
 * read it back (EBADMSG when damaged, ENOENT when missing). */
int gr_ckf_meta_write (const char *stepdir, const gr_ckf_step_t *s, gr_error_t *errp);
gr_ckf_step_t *gr_ckf_meta_read (const char *stepdir, gr_error_t *errp);

/* Read DIR/index: the records in it, oldest first (*stepsp malloc'd, free
 * with gr_ckf_steps_free).  ENOENT when there is none, EBADMSG when it is
 * damaged. */
int gr_ckf_index_read (const char *dir, gr_ckf_step_t ***stepsp, size_t *np,
                       gr_error_t *errp);
/* Write DIR/index atomically (temporary file, fsync, rename, fsync DIR)
 * with the records given, in step order.  E2BIG when they have more than
 * GR_CKF_MAX_SLABS slabs together (the index could not be read back). */
int gr_ckf_index_write (const char *dir, gr_ckf_step_t *const *steps, size_t n,
                        gr_error_t *errp);
void gr_ckf_steps_free (gr_ckf_step_t **steps, size_t n);

/* ---- What a directory holds ------------------------------------------ */

typedef struct gr_ckf_entry {
    int64_t step;
    gr_ckf_step_t *rec;        /* from meta, else from the index; NULL when
                                  neither could be read */
    bool in_index;             /* listed in the index */
    bool has_dir;              /* DIR/step-N exists */
    bool from_meta;            /* rec came from the step's meta */
    char problem[512];         /* what is wrong with meta or index for this
                                  step; "" when nothing */
} gr_ckf_entry_t;

typedef struct gr_ckf_catalog {
    gr_ckf_entry_t *entries;   /* newest first */
    size_t n;
    bool have_index;           /* the index exists and parsed */
    char index_problem[GR_ERROR_TEXT_MAX]; /* why not, "" if it did */
    int64_t *tmp_steps;        /* uncommitted .step-N.tmp directories */
    size_t ntmp;
} gr_ckf_catalog_t;

/* The steps of DIR: those the index lists and the step-N directories,
 * each with its record.  Fails only when DIR cannot be read. */
gr_ckf_catalog_t *gr_ckf_catalog_load (const char *dir, gr_error_t *errp);
void gr_ckf_catalog_free (gr_ckf_catalog_t *c);

/* ---- Checksums and verification -------------------------------------- */

/* The CRC-32C of A followed by B, from crc(A), crc(B) and B's length. */
uint32_t gr_ckf_crc32c_combine (uint32_t crc_a, uint32_t crc_b, uint64_t len_b);

/* A file of a step opened for reading.  Mapped read-only where the
 * filesystem allows: checksums are computed on the page cache's own pages,
 * and a copy goes from them straight into the caller's buffer; else read
 * with pread.  Pages are mapped in with MADV_POPULATE_READ, which reports
 * a read error or a file cut short as EIO instead of raising SIGBUS, and
 * dropped from the process's page tables once done with (they stay in the
 * page cache): the resident size grows by a few MiB, not by the file.
 * Files are read in 4 MiB chunks, in order, the kernel's sequential
 * readahead ahead of them. */
typedef struct gr_ckf_reader gr_ckf_reader_t;

/* Open path, which must be a regular file of size bytes, into *rp (free
 * with gr_ckf_reader_close).  Returns 0; 1 when it is missing, not a
 * regular file or of another size (why says so: "missing", "truncated (N
 * of M bytes)", ...); -1 with errno when out of memory. */
int gr_ckf_reader_open (const char *path, uint64_t size, gr_ckf_reader_t **rp, char *why,
                        size_t whylen);
void gr_ckf_reader_close (gr_ckf_reader_t *r);     /* NULL is fine; keeps errno */
/* Read r with pread from now on, as where the file cannot be mapped (the
 * tests use it to reach that path). */
void gr_ckf_reader_unmap (gr_ckf_reader_t *r);

/* Bytes [lo, hi) of a region, to be copied to dst while it is verified. */
typedef struct gr_ckf_copy {
    unsigned char *dst;                /* NULL: none */
    uint64_t lo, hi;
} gr_ckf_copy_t;

/* Verify r, file f of step s.  Reads the regions whose want[] entry is
 * true (all when want is NULL) and checks their CRCs, copying the part
 * copies[k] names of region k (copies may be NULL) as it goes; with gaps, also
 * reads the bytes between regions and checks the whole file's CRC (taking
 * the other regions' CRCs as recorded: their bytes are someone else's to
 * check).  Returns 0 when what was checked is intact, 1 when it is damaged
 * (why says how: "checksum mismatch in dataset 'w1'", "cannot read ...";
 * without the file name), -1 with errno on a failure that says nothing
 * about the file (out of memory). */
int gr_ckf_reader_verify (gr_ckf_reader_t *r, const gr_ckf_step_t *s, const gr_ckf_file_t *f,
                          const bool *want, const gr_ckf_copy_t *copies, bool gaps, char *why,
                          size_t whylen);

/* Copy len bytes at off of r's file into dst: one copy, from the page
 * cache.  -1 with errno: EINVAL (beyond the size r was opened with), EIO
 * (a read error, or the file cut short since), ENOMEM.  Truncating a file
 * while a copy from it runs is not supported: the copy may raise SIGBUS
 * (the checkpoint directory is the job's own, mode 0700). */
int gr_ckf_reader_copy (gr_ckf_reader_t *r, void *dst, uint64_t len, uint64_t off);

/* gr_ckf_reader_open, gr_ckf_reader_verify and close in one: verify file
 * f of step s at path, the size always checked.  Same returns as
 * gr_ckf_reader_verify ("missing", "truncated (N of M bytes)" among the
 * reasons). */
int gr_ckf_verify_file (const char *path, const gr_ckf_step_t *s, const gr_ckf_file_t *f,
                        const bool *want, bool gaps, char *why, size_t whylen);

/* Open the HDF5 file f (file number fi) of step s and check that it holds
 * what the record says: format and step attributes, each dataset with its
 * type, shape, offset and crc32c attribute.  Same returns as
 * gr_ckf_verify_file. */
int gr_ckf_check_h5 (const char *path, const gr_ckf_step_t *s, int fi, char *why,
                     size_t whylen);

/* Remove a directory and the plain files in it (checkpoint directories
 * hold nothing else).  A missing directory is fine. */
int gr_ckf_remove_dir (const char *path);

/* ---- Writing ---------------------------------------------------------- */

/* Write rank's file of the per-rank layout at path and fsync it: the slab
 * of each sharded array (data[i], rows[rank] rows) and, for rank 0, the
 * replicated arrays and the attributes.  data has one entry per array of
 * s (entries this rank does not write are ignored).  HDF5 writes only its
 * metadata, into memory; this module writes every byte to the file
 * itself, so a full disk is an ordinary error.  out gets the file's size,
 * CRC and regions (name left to the caller); err gets a sentence. */
int gr_ckf_write_rank_file (const char *path, const gr_ckf_step_t *s, int rank,
                            const void *const *data, gr_ckf_file_t *out, char *err,
                            size_t errlen);

/* Start the shared layout's file at path, as its rank 0 does: HDF5's
 * metadata (every dataset at its global shape, with its crc32c attribute:
 * one per slab of a sharded array, from crcs[array * nranks + slab], and
 * crcs[array * nranks] for a replicated one), written and fsynced, the
 * file made as long as it will be, the datasets' bytes left as holes for
 * the ranks to write (collectively, with MPI-IO) at offsets[array].  out
 * gets the file's size, CRC and regions (name left to the caller). */
int gr_ckf_write_shared_meta (const char *path, const gr_ckf_step_t *s,
                              const uint32_t *crcs, uint64_t *offsets, gr_ckf_file_t *out,
                              char *err, size_t errlen);

/* Read len bytes at off of path's file into buf (a short file is an
 * error: EIO). */
int gr_ckf_pread (int fd, void *buf, uint64_t len, uint64_t off);

/* HDF5 is used from one thread at a time (Debian's parallel HDF5 is not
 * thread-safe): every use of it, here and in ckpt.c, holds this
 * (recursive) lock. */
void gr_ckf_lock (void);
void gr_ckf_unlock (void);

#ifdef H5_VERS_MAJOR
/* For files that include hdf5.h first (ckpt.c, which writes the shared
 * layout's data with MPI-IO after HDF5 has laid the file out). */

/* The file datatype of a gridrun type (little-endian; f16 and bf16 as
 * 16-bit unsigned integers holding the bits).  Not to be closed. */
hid_t gr_ckf_h5_type (int type);
/* Silence HDF5's error printing (again: it comes back after H5close). */
void gr_ckf_h5_quiet (void);
/* HDF5's innermost error as text; clears the stack. */
void gr_ckf_h5_why (char *buf, size_t len);
/* Close any HDF5 identifier; negative ones are ignored. */
void gr_ckf_h5_close (hid_t id);
#endif

#endif
