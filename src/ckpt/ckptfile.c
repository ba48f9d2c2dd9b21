/* Training checkpoints on disk: names, step records, the index, writing
 * one rank's HDF5 file, and verification.  No MPI here: `gridrun ckpt`
 * uses this without starting it.  See ckptfile.h and doc/checkpoints.md. */
#include "config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__x86_64__) && defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <hdf5.h>

#include "src/common/fs.h"
#include "src/common/grow.h"
#include "src/common/hash.h"
#include "ckptfile.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoint checksums are of little-endian bytes: gridrun needs a little-endian host"
#endif

#define META_HEADER "gridrun-ckpt-meta 1"
#define INDEX_HEADER "gridrun-ckpt-index 1"
#define FILE_MAX ((size_t)1 << 30)     /* the most an index or meta may hold */
#define IO_CHUNK ((size_t)4 << 20)     /* bytes per read or write call */

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22          /* Linux 5.14; older C libraries lack the name */
#endif

/* ---- The HDF5 lock ---------------------------------------------------- */

static pthread_mutex_t h5_mutex;
static pthread_once_t h5_once = PTHREAD_ONCE_INIT;

static void h5_mutex_init (void)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init (&a);
    pthread_mutexattr_settype (&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init (&h5_mutex, &a);
    pthread_mutexattr_destroy (&a);
}

void gr_ckf_lock (void)
{
    pthread_once (&h5_once, h5_mutex_init);
    pthread_mutex_lock (&h5_mutex);
}

void gr_ckf_unlock (void)
{
    pthread_mutex_unlock (&h5_mutex);
}

/* ---- Names and types -------------------------------------------------- */

static const char *const type_names[GR_CKF_NTYPES] = {"f32", "f64", "i32",
                                                      "i64", "f16", "bf16"};
static const size_t type_sizes[GR_CKF_NTYPES] = {4, 8, 4, 8, 2, 2};

const char *gr_ckf_type_name (int type)
{
    return type >= 0 && type < GR_CKF_NTYPES ? type_names[type] : "?";
}

size_t gr_ckf_type_size (int type)
{
    return type >= 0 && type < GR_CKF_NTYPES ? type_sizes[type] : 0;
}

const char *gr_ckf_layout_name (int layout)
{
    return layout == GR_CKF_SHARED ? "shared" : "per-rank";
}

static int type_parse (const char *s)
{
    for (int i = 0; i < GR_CKF_NTYPES; i++)
        if (strcmp (s, type_names[i]) == 0)
            return i;
    return -1;
}

int gr_ckf_step_dir (char *buf, size_t size, const char *dir, int64_t step)
{
    if (snprintf (buf, size, "%s/step-%08" PRId64, dir, step) >= (int)size) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

int gr_ckf_tmp_dir (char *buf, size_t size, const char *dir, int64_t step)
{
    if (snprintf (buf, size, "%s/.step-%08" PRId64 ".tmp", dir, step) >= (int)size) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

void gr_ckf_rank_file (char *buf, size_t size, int rank)
{
    snprintf (buf, size, "rank-%05d.h5", rank);
}

const char *gr_ckf_name_problem (const char *name)
{
    size_t len;

    if (!name || !*name)
        return "it is empty";
    if ((len = strlen (name)) > GR_CKF_NAME_MAX)
        return "it is longer than 255 bytes";
    if (strcmp (name, ".") == 0 || strcmp (name, "..") == 0)
        return "'.' and '..' are not names";
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        if (*p == '/')
            return "it contains '/'";
        if (*p < 0x20 || *p == 0x7f)
            return "it contains a control character";
    }
    return NULL;
}

/* ---- Step records ----------------------------------------------------- */

gr_ckf_step_t *gr_ckf_step_new (int64_t step, int nranks, int layout)
{
    gr_ckf_step_t *s = calloc (1, sizeof (*s));
    if (!s)
        return NULL;
    s->step = step;
    s->nranks = nranks;
    s->layout = layout;
    return s;
}

void gr_ckf_file_clear (gr_ckf_file_t *f)
{
    if (!f)
        return;
    free (f->name);
    free (f->regions);
    memset (f, 0, sizeof (*f));
}

void gr_ckf_step_free (gr_ckf_step_t *s)
{
    int saved = errno;

    if (!s)
        return;
    for (size_t i = 0; i < s->narrays; i++) {
        free (s->arrays[i].name);
        free (s->arrays[i].rows);
    }
    for (size_t i = 0; i < s->nattrs; i++) {
        free (s->attrs[i].name);
        free (s->attrs[i].str);
    }
    for (size_t i = 0; i < s->nfiles; i++)
        gr_ckf_file_clear (&s->files[i]);
    free (s->arrays);
    free (s->attrs);
    free (s->files);
    free (s);
    errno = saved;
}

void gr_ckf_steps_free (gr_ckf_step_t **steps, size_t n)
{
    for (size_t i = 0; i < n; i++)
        gr_ckf_step_free (steps[i]);
    free (steps);
}

/* The capacity of an array of n elements grown by grow(): 4, then powers
 * of two. */
static size_t cap_for (size_t n)
{
    size_t cap = 4;
    while (cap < n)
        cap *= 2;
    return cap;
}

/* Make room for one more element in *arr (n in use, capacity
 * cap_for (n)). */
static int grow (void *arrp, size_t n, size_t elsize)
{
    void **arr = arrp;
    if (*arr && n + 1 <= cap_for (n))
        return 0;
    void *p = realloc (*arr, cap_for (n + 1) * elsize);
    if (!p) {
        errno = ENOMEM;
        return -1;
    }
    *arr = p;
    return 0;
}

int gr_ckf_step_add_array (gr_ckf_step_t *s, const char *name, int type, int sharded,
                           int ndims, const uint64_t *dims, const uint64_t *rows)
{
    gr_ckf_array_t a = {.type = type, .sharded = sharded, .ndims = ndims};

    if (ndims < 0 || ndims > GR_CKF_MAX_DIMS || (sharded && (ndims < 1 || !rows))) {
        errno = EINVAL;
        return -1;
    }
    if (grow (&s->arrays, s->narrays, sizeof (*s->arrays)) < 0)
        return -1;
    for (int d = 0; d < ndims; d++)
        a.dims[d] = dims[d];
    if (!(a.name = strdup (name)))
        return -1;
    if (sharded) {
        if (!(a.rows = malloc ((size_t)s->nranks * sizeof (*a.rows)))) {
            free (a.name);
            return -1;
        }
        memcpy (a.rows, rows, (size_t)s->nranks * sizeof (*a.rows));
        a.dims[0] = 0;
        for (int r = 0; r < s->nranks; r++)
            a.dims[0] += rows[r];
    }
    s->arrays[s->narrays++] = a;
    return 0;
}

int gr_ckf_step_add_attr (gr_ckf_step_t *s, const gr_ckf_attr_t *in)
{
    gr_ckf_attr_t a = *in;

    if (grow (&s->attrs, s->nattrs, sizeof (*s->attrs)) < 0)
        return -1;
    a.str = NULL;
    if (!(a.name = strdup (in->name))
        || (in->kind == GR_CKF_ATTR_STR && !(a.str = strdup (in->str ? in->str : "")))) {
        free (a.name);
        return -1;
    }
    s->attrs[s->nattrs++] = a;
    return 0;
}

int gr_ckf_step_add_file (gr_ckf_step_t *s, const gr_ckf_file_t *in)
{
    gr_ckf_file_t f = *in;

    if (grow (&s->files, s->nfiles, sizeof (*s->files)) < 0)
        return -1;
    f.regions = NULL;
    if (!(f.name = strdup (in->name ? in->name : "")))
        return -1;
    if (in->nregions) {
        if (!(f.regions = malloc (cap_for (in->nregions) * sizeof (*f.regions)))) {
            free (f.name);
            return -1;
        }
        memcpy (f.regions, in->regions, in->nregions * sizeof (*f.regions));
    }
    s->files[s->nfiles] = f;
    return (int)s->nfiles++;
}

int gr_ckf_file_add_region (gr_ckf_file_t *f, int array, int slab, uint64_t offset,
                            uint64_t size, uint32_t crc)
{
    if (grow (&f->regions, f->nregions, sizeof (*f->regions)) < 0)
        return -1;
    f->regions[f->nregions++] = (gr_ckf_region_t){
        .array = array, .slab = slab, .offset = offset, .size = size, .crc = crc};
    return 0;
}

static int region_cmp (const void *a, const void *b)
{
    const gr_ckf_region_t *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static void file_sort (gr_ckf_file_t *f)
{
    if (f->nregions > 1)
        qsort (f->regions, f->nregions, sizeof (*f->regions), region_cmp);
}

int gr_ckf_find_array (const gr_ckf_step_t *s, const char *name)
{
    for (size_t i = 0; i < s->narrays; i++)
        if (strcmp (s->arrays[i].name, name) == 0)
            return (int)i;
    return -1;
}

const gr_ckf_attr_t *gr_ckf_find_attr (const gr_ckf_step_t *s, const char *name)
{
    for (size_t i = 0; i < s->nattrs; i++)
        if (strcmp (s->attrs[i].name, name) == 0)
            return &s->attrs[i];
    return NULL;
}

/* Products saturate at UINT64_MAX, which gr_ckf_step_check refuses. */
static uint64_t mul_sat (uint64_t a, uint64_t b)
{
    if (a && b > UINT64_MAX / a)
        return UINT64_MAX;
    return a * b;
}

uint64_t gr_ckf_row_bytes (const gr_ckf_array_t *a)
{
    uint64_t n = gr_ckf_type_size (a->type);
    for (int d = 1; d < a->ndims; d++)
        n = mul_sat (n, a->dims[d]);
    return n;
}

uint64_t gr_ckf_array_bytes (const gr_ckf_array_t *a)
{
    return a->ndims == 0 ? gr_ckf_type_size (a->type)
                         : mul_sat (a->dims[0], gr_ckf_row_bytes (a));
}

uint64_t gr_ckf_row_offset (const gr_ckf_array_t *a, int slab)
{
    uint64_t off = 0;
    for (int r = 0; r < slab; r++)
        off += a->rows[r];
    return off;
}

void gr_ckf_split (uint64_t rows, int n, int r, uint64_t *first, uint64_t *count)
{
    uint64_t base = rows / (uint64_t)n, extra = rows % (uint64_t)n;
    uint64_t ur = (uint64_t)r;
    *first = ur * base + (ur < extra ? ur : extra);
    *count = base + (ur < extra ? 1 : 0);
}

uint64_t gr_ckf_step_bytes (const gr_ckf_step_t *s)
{
    uint64_t n = 0;
    for (size_t i = 0; i < s->nfiles; i++)
        n += s->files[i].size;
    return n;
}

/* ---- Consistency ------------------------------------------------------ */

#define BYTES_MAX ((uint64_t)1 << 62)

/* What region size array a's slab (or -1: the whole array) must have. */
static uint64_t slab_bytes (const gr_ckf_array_t *a, int slab)
{
    return slab < 0 ? gr_ckf_array_bytes (a) : mul_sat (a->rows[slab], gr_ckf_row_bytes (a));
}

/* A name and the index of what bears it, to sort by name. */
typedef struct named {
    const char *name;
    int index;
} named_t;

static int named_cmp (const void *a, const void *b)
{
    return strcmp (((const named_t *)a)->name, ((const named_t *)b)->name);
}

/* n names (from the structures at base, stride bytes apart, each a char *
 * at its start) sorted, or NULL with ENOMEM. */
static named_t *sort_names (const void *base, size_t n, size_t stride)
{
    named_t *v = malloc ((n ? n : 1) * sizeof (*v));
    if (!v)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        v[i].name = *(char *const *)((const char *)base + i * stride);
        v[i].index = (int)i;
    }
    if (n > 1)
        qsort (v, n, sizeof (*v), named_cmp);
    return v;
}

/* The index of name in v (n sorted names), or -1. */
static int find_named (const named_t *v, size_t n, const char *name)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp (name, v[mid].name);
        if (c == 0)
            return v[mid].index;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -1;
}

/* A name that the n structures at base hold twice, or NULL; -1 in *rc on
 * ENOMEM.  Sorted, not compared pair by pair: a record may hold very
 * many arrays. */
static const char *twice (const void *base, size_t n, size_t stride, int *rc)
{
    const char *dup = NULL;
    named_t *v = sort_names (base, n, stride);

    *rc = 0;
    if (!v) {
        *rc = -1;
        return NULL;
    }
    for (size_t i = 1; i < n && !dup; i++)
        if (strcmp (v[i - 1].name, v[i].name) == 0)
            dup = v[i].name;
    free (v);
    return dup;
}

static int check_arrays (const gr_ckf_step_t *s, const char *what, gr_error_t *errp)
{
    uint64_t slabs = 0;

    for (size_t i = 0; i < s->narrays; i++) {
        const gr_ckf_array_t *a = &s->arrays[i];
        const char *why = gr_ckf_name_problem (a->name);
        if (why)
            return gr_errprintf (errp, "%s: bad array name '%s': %s", what, a->name, why);
        if (a->type < 0 || a->type >= GR_CKF_NTYPES)
            return gr_errprintf (errp, "%s: array '%s' has an unknown type", what,
                                 a->name);
        if (a->ndims < 0 || a->ndims > GR_CKF_MAX_DIMS
            || (a->sharded == GR_CKF_SHARDED && a->ndims < 1)
            || (a->sharded != GR_CKF_SHARDED && a->sharded != GR_CKF_REPLICATED))
            return gr_errprintf (errp, "%s: array '%s' has a bad layout or rank", what,
                                 a->name);
        if (gr_ckf_array_bytes (a) >= BYTES_MAX)
            return gr_errprintf (errp, "%s: array '%s' is impossibly large", what, a->name);
        if (a->sharded == GR_CKF_SHARDED)
            slabs += (uint64_t)s->nranks;
    }
    if (slabs > GR_CKF_MAX_SLABS)
        return gr_errprintf (errp, "%s: step %" PRId64 " has %" PRIu64 " slabs (its "
                             "sharded arrays times %d ranks), more than the %d a step "
                             "may have", what, s->step, slabs, s->nranks,
                             GR_CKF_MAX_SLABS);
    int rc;
    const char *dup = twice (s->arrays, s->narrays, sizeof (*s->arrays), &rc);
    if (rc < 0) {
        errno = ENOMEM;
        return gr_errprintf (errp, "%s: out of memory", what);
    }
    if (dup)
        return gr_errprintf (errp, "%s: array '%s' is listed twice", what, dup);
    for (size_t i = 0; i < s->narrays; i++) {
        const gr_ckf_array_t *a = &s->arrays[i];
        if (a->sharded == GR_CKF_SHARDED) {
            uint64_t sum = 0;
            if (!a->rows)
                return gr_errprintf (errp, "%s: sharded array '%s' has no rows line",
                                     what, a->name);
            for (int r = 0; r < s->nranks; r++) {
                if (a->rows[r] > UINT64_MAX - sum)
                    return gr_errprintf (errp, "%s: the rows of array '%s' add up to "
                                         "more than 2^64", what, a->name);
                sum += a->rows[r];
            }
            if (sum != a->dims[0])
                return gr_errprintf (errp, "%s: the rows of array '%s' add up to %" PRIu64
                                     ", not its first dimension %" PRIu64,
                                     what, a->name, sum, a->dims[0]);
        }
    }
    return 0;
}

static int check_attrs (const gr_ckf_step_t *s, const char *what, gr_error_t *errp)
{
    for (size_t i = 0; i < s->nattrs; i++) {
        const gr_ckf_attr_t *a = &s->attrs[i];
        const char *why = gr_ckf_name_problem (a->name);
        if (why)
            return gr_errprintf (errp, "%s: bad attribute name '%s': %s", what, a->name,
                                 why);
        if (a->kind == GR_CKF_ATTR_STR
            && (!a->str || strlen (a->str) > GR_CKF_STR_MAX))
            return gr_errprintf (errp, "%s: attribute '%s' is too long", what, a->name);
        if (a->kind < GR_CKF_ATTR_I64 || a->kind > GR_CKF_ATTR_STR)
            return gr_errprintf (errp, "%s: attribute '%s' has an unknown kind", what,
                                 a->name);
    }
    int rc;
    const char *dup = twice (s->attrs, s->nattrs, sizeof (*s->attrs), &rc);
    if (rc < 0) {
        errno = ENOMEM;
        return gr_errprintf (errp, "%s: out of memory", what);
    }
    if (dup)
        return gr_errprintf (errp, "%s: attribute '%s' is listed twice", what, dup);
    return 0;
}

/* The regions file fi must have: which (array, slab) and how many. */
static bool region_expected (const gr_ckf_step_t *s, size_t fi, const gr_ckf_region_t *g)
{
    const gr_ckf_array_t *a = &s->arrays[g->array];
    if (a->sharded == GR_CKF_SHARDED) {
        if (g->slab < 0 || g->slab >= s->nranks)
            return false;
        if (s->layout == GR_CKF_PER_RANK && (size_t)g->slab != fi)
            return false;
    } else if (g->slab != -1 || (s->layout == GR_CKF_PER_RANK && fi != 0)) {
        return false;
    }
    return true;
}

/* In the per-rank layout file fi holds slab fi of each sharded array and
 * nothing else of it: looking at that slab alone keeps the check of a
 * step linear in its slabs (not in ranks times slabs). */
static size_t regions_expected (const gr_ckf_step_t *s, size_t fi)
{
    size_t n = 0;
    for (size_t i = 0; i < s->narrays; i++) {
        const gr_ckf_array_t *a = &s->arrays[i];
        if (a->sharded == GR_CKF_SHARDED) {
            if (gr_ckf_row_bytes (a) == 0)
                continue;
            if (s->layout == GR_CKF_SHARED) {
                for (int r = 0; r < s->nranks; r++)
                    n += a->rows[r] > 0;
            } else if (fi < (size_t)s->nranks) {
                n += a->rows[fi] > 0;
            }
        } else if ((s->layout == GR_CKF_SHARED || fi == 0) && gr_ckf_array_bytes (a) > 0) {
            n++;
        }
    }
    return n;
}

/* Whether a file lists a slab twice is kept in a bit per slab: slab r of
 * array i is bit base[i] + r (a replicated array has one bit).  In the
 * per-rank layout a file holds at most one slab of an array, so there
 * the bit is the array's own and the bits are cleared for each file. */
static int check_files (const gr_ckf_step_t *s, const char *what, gr_error_t *errp)
{
    char want[64];
    size_t nfiles = s->layout == GR_CKF_SHARED ? 1 : (size_t)s->nranks;
    bool per_rank = s->layout == GR_CKF_PER_RANK;
    uint64_t *base = NULL, nbits = 0;
    unsigned char *seen = NULL;
    int rc = -1;

    if (s->nfiles != nfiles)
        return gr_errprintf (errp, "%s: step %" PRId64 " lists %zu files; the %s layout "
                             "on %d ranks has %zu", what, s->step, s->nfiles,
                             gr_ckf_layout_name (s->layout), s->nranks, nfiles);
    if (!(base = malloc ((s->narrays ? s->narrays : 1) * sizeof (*base))))
        goto nomem;
    for (size_t i = 0; i < s->narrays; i++) {
        base[i] = nbits;
        nbits += per_rank || s->arrays[i].sharded != GR_CKF_SHARDED ? 1
                                                                   : (uint64_t)s->nranks;
    }
    if (!(seen = calloc ((size_t)(nbits / 8 + 1), 1)))
        goto nomem;
    for (size_t fi = 0; fi < s->nfiles; fi++) {
        const gr_ckf_file_t *f = &s->files[fi];
        if (s->layout == GR_CKF_SHARED)
            snprintf (want, sizeof (want), "%s", GR_CKF_SHARED_FILE);
        else
            gr_ckf_rank_file (want, sizeof (want), (int)fi);
        if (strcmp (f->name, want) != 0) {
            gr_errprintf (errp, "%s: file %zu of step %" PRId64 " is '%s', not '%s'", what,
                          fi, s->step, f->name, want);
            goto out;
        }
        if (f->size >= BYTES_MAX) {
            gr_errprintf (errp, "%s: file '%s' is impossibly large", what, f->name);
            goto out;
        }
        if (per_rank && fi > 0)
            memset (seen, 0, (size_t)(nbits / 8 + 1));
        for (size_t k = 0; k < f->nregions; k++) {
            const gr_ckf_region_t *g = &f->regions[k];
            if (g->array < 0 || (size_t)g->array >= s->narrays
                || !region_expected (s, fi, g)) {
                gr_errprintf (errp, "%s: file '%s' has a region that does not belong "
                              "there", what, f->name);
                goto out;
            }
            const gr_ckf_array_t *a = &s->arrays[g->array];
            if (g->size == 0 || g->size != slab_bytes (a, g->slab)) {
                gr_errprintf (errp, "%s: dataset '%s' in file '%s' has %" PRIu64 " bytes, "
                              "not the %" PRIu64 " its shape needs", what, a->name,
                              f->name, g->size, slab_bytes (a, g->slab));
                goto out;
            }
            if (g->offset > f->size || g->size > f->size - g->offset) {
                gr_errprintf (errp, "%s: dataset '%s' runs past the end of file '%s'",
                              what, a->name, f->name);
                goto out;
            }
            if (k > 0 && f->regions[k - 1].offset + f->regions[k - 1].size > g->offset) {
                gr_errprintf (errp, "%s: datasets overlap in file '%s'", what, f->name);
                goto out;
            }
            uint64_t bit = base[g->array] + (per_rank || g->slab < 0 ? 0 : (uint64_t)g->slab);
            if (seen[bit / 8] & (1u << (bit % 8))) {
                gr_errprintf (errp, "%s: dataset '%s' is listed twice in file '%s'", what,
                              a->name, f->name);
                goto out;
            }
            seen[bit / 8] |= (unsigned char)(1u << (bit % 8));
        }
        if (f->nregions != regions_expected (s, fi)) {
            gr_errprintf (errp, "%s: file '%s' lists %zu datasets; it should have %zu",
                          what, f->name, f->nregions, regions_expected (s, fi));
            goto out;
        }
    }
    rc = 0;
    goto out;
nomem:
    errno = ENOMEM;
    gr_errprintf (errp, "%s: out of memory", what);
out:
    free (base);
    free (seen);
    return rc;
}

int gr_ckf_step_check (const gr_ckf_step_t *s, const char *what, gr_error_t *errp)
{
    errno = EBADMSG;
    if (s->step < 0 || s->nranks < 1 || s->nranks > GR_CKF_MAX_RANKS
        || (s->layout != GR_CKF_PER_RANK && s->layout != GR_CKF_SHARED)
        || !isfinite (s->time))
        return gr_errprintf (errp, "%s: step %" PRId64 " has a bad step number, rank "
                             "count, layout or time", what, s->step);
    errno = 0;
    if (check_arrays (s, what, errp) < 0 || check_attrs (s, what, errp) < 0
        || check_files (s, what, errp) < 0) {
        errno = errno == ENOMEM ? ENOMEM : EBADMSG;
        return -1;
    }
    return 0;
}

/* ---- Text ------------------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf_t;

static void sb_put (sbuf_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    char *p = gr_grow_to (b->p, &b->cap, b->len + n + 1, 1, 4096);
    if (!p) {
        b->oom = true;
        return;
    }
    b->p = p;
    memcpy (b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

__attribute__ ((format (printf, 2, 3)))
static void sb_printf (sbuf_t *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    int n;

    va_start (ap, fmt);
    n = vsnprintf (small, sizeof (small), fmt, ap);
    va_end (ap);
    if (n < 0) {
        b->oom = true;
        return;
    }
    if ((size_t)n < sizeof (small)) {
        sb_put (b, small, (size_t)n);
        return;
    }
    char *big = malloc ((size_t)n + 1);
    if (!big) {
        b->oom = true;
        return;
    }
    va_start (ap, fmt);
    vsnprintf (big, (size_t)n + 1, fmt, ap);
    va_end (ap);
    sb_put (b, big, (size_t)n);
    free (big);
}

/* Names and strings go into the text percent-encoded, so that a token
 * never holds a space, a newline or a '%' of its own. */
static bool plain_char (unsigned char c)
{
    return isalnum (c) || (c && strchr ("._-:+=@,[]()/", c));
}

static void sb_enc (sbuf_t *b, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (plain_char (*p))
            sb_put (b, (const char *)p, 1);
        else
            sb_printf (b, "%%%02X", *p);
    }
}

static int hexval (int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode in place; -1 on a bad escape or an encoded NUL. */
static int dec (char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (*p != '%') {
            *o++ = *p;
            continue;
        }
        int hi = hexval (p[1]), lo = hi < 0 ? -1 : hexval (p[2]);
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
            return -1;
        *o++ = (char)(hi * 16 + lo);
        p += 2;
    }
    *o = '\0';
    return 0;
}

static void format_record (sbuf_t *b, const gr_ckf_step_t *s)
{
    sb_printf (b, "step %" PRId64 "\ntime %.6f\nranks %d\nlayout %s\n", s->step, s->time,
               s->nranks, gr_ckf_layout_name (s->layout));
    for (size_t i = 0; i < s->narrays; i++) {
        const gr_ckf_array_t *a = &s->arrays[i];
        sb_put (b, "array ", 6);
        sb_enc (b, a->name);
        sb_printf (b, " %s %s %d", gr_ckf_type_name (a->type),
                   a->sharded == GR_CKF_SHARDED ? "sharded" : "replicated", a->ndims);
        for (int d = 0; d < a->ndims; d++)
            sb_printf (b, " %" PRIu64, a->dims[d]);
        sb_put (b, "\n", 1);
        if (a->sharded != GR_CKF_SHARDED)
            continue;
        /* The even split, the usual case, is one word, not nranks. */
        bool even = true;
        for (int r = 0; r < s->nranks && even; r++) {
            uint64_t first, count;
            gr_ckf_split (a->dims[0], s->nranks, r, &first, &count);
            even = a->rows[r] == count;
        }
        sb_put (b, "rows ", 5);
        sb_enc (b, a->name);
        if (even)
            sb_put (b, " even", 5);
        else
            for (int r = 0; r < s->nranks; r++)
                sb_printf (b, " %" PRIu64, a->rows[r]);
        sb_put (b, "\n", 1);
    }
    for (size_t i = 0; i < s->nattrs; i++) {
        const gr_ckf_attr_t *a = &s->attrs[i];
        sb_put (b, "attr ", 5);
        sb_enc (b, a->name);
        if (a->kind == GR_CKF_ATTR_I64)
            sb_printf (b, " i64 %" PRId64 "\n", a->i64);
        else if (a->kind == GR_CKF_ATTR_F64)
            sb_printf (b, " f64 %.17g\n", a->f64);
        else {
            /* A leading quote, so that "" is a token too. */
            sb_put (b, " str \"", 6);
            sb_enc (b, a->str);
            sb_put (b, "\n", 1);
        }
    }
    for (size_t i = 0; i < s->nfiles; i++) {
        const gr_ckf_file_t *f = &s->files[i];
        sb_put (b, "file ", 5);
        sb_enc (b, f->name);
        sb_printf (b, " %" PRIu64 " %08" PRIx32 "\n", f->size, f->crc);
        for (size_t k = 0; k < f->nregions; k++) {
            const gr_ckf_region_t *g = &f->regions[k];
            sb_put (b, "data ", 5);
            sb_enc (b, s->arrays[g->array].name);
            if (g->slab < 0)
                sb_put (b, " -", 2);
            else
                sb_printf (b, " %d", g->slab);
            sb_printf (b, " %" PRIu64 " %" PRIu64 " %08" PRIx32 "\n", g->offset, g->size,
                       g->crc);
        }
    }
    sb_put (b, "end\n", 4);
}

char *gr_ckf_step_format (const gr_ckf_step_t *s, size_t *lenp)
{
    sbuf_t b = {0};

    format_record (&b, s);
    if (b.oom) {
        free (b.p);
        errno = ENOMEM;
        return NULL;
    }
    if (lenp)
        *lenp = b.len;
    return b.p;
}

/* A parser over lines, each split into space-separated tokens in place. */
typedef struct lines {
    char *p, *end;
    const char *path;
    int lineno;
    char **tok;
    size_t ntok, captok;
} lines_t;

/* The next line's tokens; 0 at the end, -1 on ENOMEM. */
static int next_line (lines_t *L)
{
    if (L->p >= L->end)
        return 0;
    char *nl = memchr (L->p, '\n', (size_t)(L->end - L->p));
    char *line = L->p;
    if (!nl)
        nl = L->end;
    *nl = '\0';
    L->p = nl + 1;
    L->lineno++;
    L->ntok = 0;
    for (char *t = line; *t;) {
        while (*t == ' ')
            t++;
        if (!*t)
            break;
        char **n = gr_grow (L->tok, &L->captok, L->ntok, sizeof (*n), 16);
        if (!n)
            return -1;
        L->tok = n;
        L->tok[L->ntok++] = t;
        while (*t && *t != ' ')
            t++;
        if (*t)
            *t++ = '\0';
    }
    return 1;
}

static int bad_line (lines_t *L, gr_error_t *errp, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));
static int bad_line (lines_t *L, gr_error_t *errp, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (msg, sizeof (msg), fmt, ap);
    va_end (ap);
    gr_errprintf_at (errp, L->path, L->lineno, 0, "%s", msg);
    errno = EBADMSG;
    return -1;
}

static int parse_u64 (const char *s, uint64_t *out)
{
    char *e;
    if (!isdigit ((unsigned char)*s))
        return -1;
    errno = 0;
    unsigned long long v = strtoull (s, &e, 10);
    if (errno || *e)
        return -1;
    *out = v;
    return 0;
}

static int parse_i64 (const char *s, int64_t *out)
{
    char *e;
    errno = 0;
    long long v = strtoll (s, &e, 10);
    if (errno || *e || e == s)
        return -1;
    *out = v;
    return 0;
}

static int parse_crc (const char *s, uint32_t *out)
{
    char *e;
    if (strlen (s) != 8)
        return -1;
    unsigned long v = strtoul (s, &e, 16);
    if (*e)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int parse_int_field (lines_t *L, const char *key, int64_t lo, int64_t hi,
                            int64_t *out, gr_error_t *errp)
{
    if (next_line (L) <= 0 || L->ntok != 2 || strcmp (L->tok[0], key) != 0)
        return bad_line (L, errp, "expected '%s N'", key);
    if (parse_i64 (L->tok[1], out) < 0 || *out < lo || *out > hi)
        return bad_line (L, errp, "bad %s '%s'", key, L->tok[1]);
    return 0;
}

/* *slabs is what is left of the GR_CKF_MAX_SLABS slabs the records of
 * one file may have: a sharded array takes one a rank, and its row counts
 * are allocated here, before any later line could show the record to be
 * nonsense. */
static int parse_array (lines_t *L, gr_ckf_step_t *s, uint64_t *slabs, gr_error_t *errp)
{
    uint64_t dims[GR_CKF_MAX_DIMS], nd;
    int type, sharded;

    if (L->ntok < 5 || dec (L->tok[1]) < 0)
        return bad_line (L, errp, "expected 'array NAME TYPE LAYOUT NDIMS DIMS...'");
    if ((type = type_parse (L->tok[2])) < 0)
        return bad_line (L, errp, "unknown array type '%s'", L->tok[2]);
    if (strcmp (L->tok[3], "sharded") == 0)
        sharded = GR_CKF_SHARDED;
    else if (strcmp (L->tok[3], "replicated") == 0)
        sharded = GR_CKF_REPLICATED;
    else
        return bad_line (L, errp, "unknown array layout '%s'", L->tok[3]);
    if (parse_u64 (L->tok[4], &nd) < 0 || nd > GR_CKF_MAX_DIMS || L->ntok != 5 + nd
        || (sharded && nd < 1))
        return bad_line (L, errp, "bad number of dimensions for array '%s'", L->tok[1]);
    for (uint64_t d = 0; d < nd; d++)
        if (parse_u64 (L->tok[5 + d], &dims[d]) < 0)
            return bad_line (L, errp, "bad dimension '%s'", L->tok[5 + d]);
    if (sharded) {
        if (*slabs < (uint64_t)s->nranks)
            return bad_line (L, errp, "array '%s': more than %d slabs (sharded arrays "
                             "times ranks) in one file", L->tok[1], GR_CKF_MAX_SLABS);
        *slabs -= (uint64_t)s->nranks;
    }
    /* A sharded array's rows come on the next line: add it with zero rows
     * for now. */
    uint64_t *rows = NULL;
    if (sharded && !(rows = calloc ((size_t)s->nranks, sizeof (*rows))))
        return -1;
    int rc = gr_ckf_step_add_array (s, L->tok[1], type, sharded, (int)nd, dims, rows);
    free (rows);
    if (rc == 0 && sharded)
        s->arrays[s->narrays - 1].dims[0] = dims[0];
    return rc;
}

static int parse_rows (lines_t *L, gr_ckf_step_t *s, bool *pending, gr_error_t *errp)
{
    gr_ckf_array_t *a = s->narrays ? &s->arrays[s->narrays - 1] : NULL;

    if (!*pending || L->ntok < 3 || dec (L->tok[1]) < 0 || strcmp (L->tok[1], a->name) != 0)
        return bad_line (L, errp, "a 'rows' line must follow its sharded array");
    *pending = false;
    if (L->ntok == 3 && strcmp (L->tok[2], "even") == 0) {
        for (int r = 0; r < s->nranks; r++) {
            uint64_t first;
            gr_ckf_split (a->dims[0], s->nranks, r, &first, &a->rows[r]);
        }
        return 0;
    }
    if (L->ntok != 2 + (size_t)s->nranks)
        return bad_line (L, errp, "array '%s' needs %d row counts", a->name, s->nranks);
    for (int r = 0; r < s->nranks; r++)
        if (parse_u64 (L->tok[2 + r], &a->rows[r]) < 0)
            return bad_line (L, errp, "bad row count '%s'", L->tok[2 + r]);
    return 0;
}

static int parse_attr (lines_t *L, gr_ckf_step_t *s, gr_error_t *errp)
{
    gr_ckf_attr_t a = {0};

    if (L->ntok != 4 || dec (L->tok[1]) < 0)
        return bad_line (L, errp, "expected 'attr NAME KIND VALUE'");
    a.name = L->tok[1];
    if (strcmp (L->tok[2], "i64") == 0) {
        a.kind = GR_CKF_ATTR_I64;
        if (parse_i64 (L->tok[3], &a.i64) < 0)
            return bad_line (L, errp, "bad i64 value '%s'", L->tok[3]);
    } else if (strcmp (L->tok[2], "f64") == 0) {
        char *e;
        a.kind = GR_CKF_ATTR_F64;
        a.f64 = strtod (L->tok[3], &e);
        if (*e || e == L->tok[3])
            return bad_line (L, errp, "bad f64 value '%s'", L->tok[3]);
    } else if (strcmp (L->tok[2], "str") == 0) {
        a.kind = GR_CKF_ATTR_STR;
        if (L->tok[3][0] != '"' || dec (L->tok[3] + 1) < 0)
            return bad_line (L, errp, "bad string value");
        a.str = L->tok[3] + 1;
    } else {
        return bad_line (L, errp, "unknown attribute kind '%s'", L->tok[2]);
    }
    return gr_ckf_step_add_attr (s, &a);
}

static int parse_file (lines_t *L, gr_ckf_step_t *s, gr_error_t *errp)
{
    gr_ckf_file_t f = {0};

    if (L->ntok != 4 || dec (L->tok[1]) < 0)
        return bad_line (L, errp, "expected 'file NAME SIZE CRC32C'");
    f.name = L->tok[1];
    if (parse_u64 (L->tok[2], &f.size) < 0 || parse_crc (L->tok[3], &f.crc) < 0)
        return bad_line (L, errp, "bad size or checksum for file '%s'", f.name);
    return gr_ckf_step_add_file (s, &f) < 0 ? -1 : 0;
}

/* byname: the step's arrays sorted by name (data lines are many). */
static int parse_data (lines_t *L, gr_ckf_step_t *s, const named_t *byname,
                       gr_error_t *errp)
{
    uint64_t off, size, slab = 0;
    uint32_t crc;
    int ai;

    if (s->nfiles == 0)
        return bad_line (L, errp, "a 'data' line must follow its file");
    if (L->ntok != 6 || dec (L->tok[1]) < 0)
        return bad_line (L, errp, "expected 'data ARRAY SLAB OFFSET SIZE CRC32C'");
    if ((ai = find_named (byname, s->narrays, L->tok[1])) < 0)
        return bad_line (L, errp, "data of unknown array '%s'", L->tok[1]);
    if ((strcmp (L->tok[2], "-") != 0
         && (parse_u64 (L->tok[2], &slab) < 0 || slab >= (uint64_t)s->nranks))
        || parse_u64 (L->tok[3], &off) < 0 || parse_u64 (L->tok[4], &size) < 0
        || parse_crc (L->tok[5], &crc) < 0)
        return bad_line (L, errp, "bad slab, offset, size or checksum");
    int sl = strcmp (L->tok[2], "-") == 0 ? -1 : (int)slab;
    return gr_ckf_file_add_region (&s->files[s->nfiles - 1], ai, sl, off, size, crc);
}

/* Parse one record from L (its "step" line next), taking its sharded
 * arrays' slabs from *slabs.  Returns the step, or NULL with errp set.
 * Arrays and attributes come before the files, as gr_ckf_step_format
 * writes them, so that the data lines can find their arrays by name in a
 * sorted table made once. */
static gr_ckf_step_t *parse_record (lines_t *L, uint64_t *slabs, gr_error_t *errp)
{
    gr_ckf_step_t *s = NULL;
    int64_t step, nranks;
    double t;
    bool rows_pending = false;
    named_t *byname = NULL;
    int rc;

    if (parse_int_field (L, "step", 0, INT64_MAX, &step, errp) < 0)
        return NULL;
    if (next_line (L) <= 0 || L->ntok != 2 || strcmp (L->tok[0], "time") != 0) {
        bad_line (L, errp, "expected 'time SECONDS'");
        return NULL;
    }
    char *e;
    t = strtod (L->tok[1], &e);
    if (*e || !isfinite (t)) {
        bad_line (L, errp, "bad time '%s'", L->tok[1]);
        return NULL;
    }
    if (parse_int_field (L, "ranks", 1, GR_CKF_MAX_RANKS, &nranks, errp) < 0)
        return NULL;
    if (next_line (L) <= 0 || L->ntok != 2 || strcmp (L->tok[0], "layout") != 0
        || (strcmp (L->tok[1], "per-rank") != 0 && strcmp (L->tok[1], "shared") != 0)) {
        bad_line (L, errp, "expected 'layout per-rank' or 'layout shared'");
        return NULL;
    }
    if (!(s = gr_ckf_step_new (step, (int)nranks,
                               strcmp (L->tok[1], "shared") == 0 ? GR_CKF_SHARED
                                                                 : GR_CKF_PER_RANK)))
        goto nomem;
    s->time = t;
    while ((rc = next_line (L)) > 0) {
        const char *k = L->ntok ? L->tok[0] : "";
        if (rows_pending && strcmp (k, "rows") != 0) {
            bad_line (L, errp, "sharded array '%s' needs a 'rows' line next",
                      s->arrays[s->narrays - 1].name);
            goto error;
        }
        if (strcmp (k, "end") == 0 && L->ntok == 1) {
            free (byname);
            return s;
        }
        bool head = strcmp (k, "array") == 0 || strcmp (k, "rows") == 0
                    || strcmp (k, "attr") == 0;
        if (head && byname)
            rc = bad_line (L, errp, "'%s' after the first 'file' line: a record lists "
                           "its arrays and attributes first", k);
        else if (strcmp (k, "array") == 0)
            rc = parse_array (L, s, slabs, errp);
        else if (strcmp (k, "rows") == 0)
            rc = parse_rows (L, s, &rows_pending, errp);
        else if (strcmp (k, "attr") == 0)
            rc = parse_attr (L, s, errp);
        else if (strcmp (k, "file") == 0) {
            rc = 0;
            if (!byname && !(byname = sort_names (s->arrays, s->narrays, sizeof (*s->arrays))))
                rc = -1;
            if (rc == 0)
                rc = parse_file (L, s, errp);
        }
        else if (strcmp (k, "data") == 0)
            rc = parse_data (L, s, byname, errp);
        else
            rc = bad_line (L, errp, "unknown line '%.40s'", k);
        if (rc < 0) {
            if (errno == ENOMEM)
                goto nomem;
            goto error;
        }
        if (strcmp (k, "array") == 0)
            rows_pending = s->arrays[s->narrays - 1].sharded == GR_CKF_SHARDED;
    }
    if (rc < 0)
        goto nomem;
    bad_line (L, errp, "the record of step %" PRId64 " has no 'end' line", step);
    goto error;
nomem:
    errno = ENOMEM;
    gr_errprintf (errp, "%s: out of memory", L->path);
error:
    free (byname);
    gr_ckf_step_free (s);
    return NULL;
}

gr_ckf_step_t *gr_ckf_step_parse (const char *text, size_t len, const char *path,
                                  int line0, gr_error_t *errp)
{
    char *copy = malloc (len + 1);
    lines_t L = {.path = path, .lineno = line0 - 1};
    gr_ckf_step_t *s = NULL;

    if (!copy) {
        errno = ENOMEM;
        gr_errprintf (errp, "%s: out of memory", path);
        return NULL;
    }
    memcpy (copy, text, len);
    copy[len] = '\0';
    L.p = copy;
    L.end = copy + len;
    uint64_t slabs = GR_CKF_MAX_SLABS;
    if ((s = parse_record (&L, &slabs, errp)) && gr_ckf_step_check (s, path, errp) < 0) {
        gr_ckf_step_free (s);
        s = NULL;
    }
    if (s && L.p < L.end) {
        gr_ckf_step_free (s);
        s = NULL;
        bad_line (&L, errp, "text after the record's end");
    }
    free (L.tok);
    free (copy);
    return s;
}

/* ---- Metadata files and the index ------------------------------------- */

/* HEADER\n, the records, then "checksum XXXXXXXX\n" over everything
 * before it. */
static char *format_file (const char *header, gr_ckf_step_t *const *steps, size_t n,
                          size_t *lenp)
{
    sbuf_t b = {0};

    sb_printf (&b, "%s\n", header);
    for (size_t i = 0; i < n; i++)
        format_record (&b, steps[i]);
    if (!b.oom) {
        uint32_t crc = gr_crc32c (0, b.p, b.len);
        sb_printf (&b, "checksum %08" PRIx32 "\n", crc);
    }
    if (b.oom) {
        free (b.p);
        errno = ENOMEM;
        return NULL;
    }
    *lenp = b.len;
    return b.p;
}

/* Read and check a file written by format_file: its records into
 * *stepsp.  ENOENT when missing, EBADMSG when damaged. */
static int read_file (const char *path, const char *header, gr_ckf_step_t ***stepsp,
                      size_t *np, gr_error_t *errp)
{
    char *text = NULL;
    size_t len, hlen = strlen (header);
    gr_ckf_step_t **steps = NULL;
    size_t n = 0;
    lines_t L = {.path = path};

    *stepsp = NULL;
    *np = 0;
    if (gr_read_file (path, FILE_MAX, &text, &len, NULL) < 0) {
        int e = errno;
        gr_errprintf (errp, "cannot read '%s': %s", path,
                      e == ENOENT ? "no such file" : strerror (e));
        errno = e;
        return -1;
    }
    /* The last line is the checksum of everything before it. */
    const char *last = len ? (const char *)memrchr (text, '\n', len - 1) : NULL;
    size_t body = last ? (size_t)(last - text) + 1 : 0;
    uint32_t want, got;
    if (len < hlen + 1 || text[len - 1] != '\n' || strncmp (text + body, "checksum ", 9) != 0) {
        gr_errprintf (errp, "%s: damaged: no checksum line at the end (cut short?)", path);
        goto bad;
    }
    text[len - 1] = '\0';
    if (parse_crc (text + body + 9, &want) < 0) {
        gr_errprintf (errp, "%s: damaged: bad checksum line", path);
        goto bad;
    }
    if ((got = gr_crc32c (0, text, body)) != want) {
        gr_errprintf (errp, "%s: damaged: checksum mismatch (%08" PRIx32 " recorded, %08"
                      PRIx32 " computed)", path, want, got);
        goto bad;
    }
    if (strncmp (text, header, hlen) != 0 || text[hlen] != '\n') {
        gr_errprintf (errp, "%s:1: not a gridrun checkpoint file (expected '%s')", path,
                      header);
        goto bad;
    }
    L.p = text + hlen + 1;
    L.end = text + body;
    L.lineno = 1;
    uint64_t slabs = GR_CKF_MAX_SLABS;
    while (L.p < L.end) {
        gr_ckf_step_t *s = parse_record (&L, &slabs, errp);
        if (!s)
            goto error;
        if (gr_ckf_step_check (s, path, errp) < 0
            || (n > 0 && steps[n - 1]->step >= s->step)) {
            if (n > 0 && steps[n - 1]->step >= s->step)
                gr_errprintf (errp, "%s:%d: step %" PRId64 " is out of order", path,
                              L.lineno, s->step);
            gr_ckf_step_free (s);
            goto bad;
        }
        if (grow (&steps, n, sizeof (*steps)) < 0) {
            gr_ckf_step_free (s);
            gr_errprintf (errp, "%s: out of memory", path);
            goto error;
        }
        steps[n++] = s;
    }
    free (L.tok);
    free (text);
    *stepsp = steps;
    *np = n;
    return 0;
bad:
    errno = EBADMSG;
error:;
    int e = errno;
    free (L.tok);
    free (text);
    gr_ckf_steps_free (steps, n);
    errno = e == ENOMEM ? ENOMEM : EBADMSG;
    return -1;
}

int gr_ckf_meta_write (const char *stepdir, const gr_ckf_step_t *s, gr_error_t *errp)
{
    char path[PATH_MAX];
    size_t len;
    char *text;
    gr_ckf_step_t *one = (gr_ckf_step_t *)s;

    if (snprintf (path, sizeof (path), "%s/%s", stepdir, GR_CKF_META) >= (int)sizeof (path)) {
        errno = ENAMETOOLONG;
        return gr_errprintf (errp, "path too long: %s/%s", stepdir, GR_CKF_META);
    }
    if (!(text = format_file (META_HEADER, &one, 1, &len)))
        return gr_errprintf (errp, "out of memory writing '%s'", path);
    int rc = gr_write_file_atomic (path, text, len, 0600, errp);
    free (text);
    return rc;
}

gr_ckf_step_t *gr_ckf_meta_read (const char *stepdir, gr_error_t *errp)
{
    char path[PATH_MAX];
    gr_ckf_step_t **steps;
    size_t n;

    if (snprintf (path, sizeof (path), "%s/%s", stepdir, GR_CKF_META) >= (int)sizeof (path)) {
        errno = ENAMETOOLONG;
        gr_errprintf (errp, "path too long: %s/%s", stepdir, GR_CKF_META);
        return NULL;
    }
    if (read_file (path, META_HEADER, &steps, &n, errp) < 0)
        return NULL;
    if (n != 1) {
        gr_ckf_steps_free (steps, n);
        errno = EBADMSG;
        gr_errprintf (errp, "%s: holds %zu records, not one", path, n);
        return NULL;
    }
    gr_ckf_step_t *s = steps[0];
    free (steps);
    return s;
}

int gr_ckf_index_read (const char *dir, gr_ckf_step_t ***stepsp, size_t *np,
                       gr_error_t *errp)
{
    char path[PATH_MAX];

    if (snprintf (path, sizeof (path), "%s/%s", dir, GR_CKF_INDEX) >= (int)sizeof (path)) {
        errno = ENAMETOOLONG;
        return gr_errprintf (errp, "path too long: %s/%s", dir, GR_CKF_INDEX);
    }
    return read_file (path, INDEX_HEADER, stepsp, np, errp);
}

int gr_ckf_index_write (const char *dir, gr_ckf_step_t *const *steps, size_t n,
                        gr_error_t *errp)
{
    char path[PATH_MAX];
    size_t len;
    char *text;

    if (snprintf (path, sizeof (path), "%s/%s", dir, GR_CKF_INDEX) >= (int)sizeof (path)) {
        errno = ENAMETOOLONG;
        return gr_errprintf (errp, "path too long: %s/%s", dir, GR_CKF_INDEX);
    }
    uint64_t slabs = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t a = 0; a < steps[i]->narrays; a++)
            if (steps[i]->arrays[a].sharded == GR_CKF_SHARDED)
                slabs += (uint64_t)steps[i]->nranks;
    if (slabs > GR_CKF_MAX_SLABS) {
        errno = E2BIG;
        return gr_errprintf (errp, "cannot write '%s': its %zu steps have %" PRIu64
                             " slabs (sharded arrays times ranks) together, more than "
                             "the %d a reader takes; keep fewer steps", path, n, slabs,
                             GR_CKF_MAX_SLABS);
    }
    if (!(text = format_file (INDEX_HEADER, steps, n, &len)))
        return gr_errprintf (errp, "out of memory writing '%s'", path);
    int rc = gr_write_file_atomic (path, text, len, 0600, errp);
    free (text);
    return rc;
}

/* ---- What a directory holds ------------------------------------------- */

/* "step-N" (dir) or ".step-N.tmp" (tmp): 1 and *step, else 0. */
static int step_name (const char *name, bool tmp, int64_t *step)
{
    const char *p = name + (tmp ? 6 : 5);
    uint64_t v = 0;
    size_t nd = 0;

    if (strncmp (name, tmp ? ".step-" : "step-", tmp ? 6 : 5) != 0)
        return 0;
    for (; isdigit ((unsigned char)*p); p++, nd++) {
        if (nd >= 18)
            return 0;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (nd == 0 || strcmp (p, tmp ? ".tmp" : "") != 0)
        return 0;
    *step = (int64_t)v;
    return 1;
}

static gr_ckf_entry_t *catalog_entry (gr_ckf_catalog_t *c, int64_t step)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->entries[i].step == step)
            return &c->entries[i];
    if (grow (&c->entries, c->n, sizeof (*c->entries)) < 0)
        return NULL;
    gr_ckf_entry_t *e = &c->entries[c->n++];
    memset (e, 0, sizeof (*e));
    e->step = step;
    return e;
}

static int entry_cmp (const void *a, const void *b)
{
    const gr_ckf_entry_t *x = a, *y = b;
    return x->step > y->step ? -1 : x->step < y->step;
}

/* Whether two records say the same. */
static bool same_record (const gr_ckf_step_t *a, const gr_ckf_step_t *b)
{
    char *x = gr_ckf_step_format (a, NULL), *y = gr_ckf_step_format (b, NULL);
    bool same = x && y && strcmp (x, y) == 0;
    free (x);
    free (y);
    return same;
}

static int scan_dir (const char *dir, gr_ckf_catalog_t *c, gr_error_t *errp)
{
    DIR *d = opendir (dir);
    struct dirent *de;
    int64_t step;

    if (!d)
        return gr_errprintf (errp, "cannot read checkpoint directory '%s': %s", dir,
                             strerror (errno));
    while ((de = readdir (d))) {
        bool tmp = de->d_name[0] == '.';
        if (!step_name (de->d_name, tmp, &step))
            continue;
        char path[PATH_MAX];
        struct stat st;
        if (snprintf (path, sizeof (path), "%s/%s", dir, de->d_name) >= (int)sizeof (path)
            || stat (path, &st) < 0 || !S_ISDIR (st.st_mode))
            continue;
        if (tmp) {
            if (grow (&c->tmp_steps, c->ntmp, sizeof (*c->tmp_steps)) < 0)
                goto nomem;
            c->tmp_steps[c->ntmp++] = step;
            continue;
        }
        gr_ckf_entry_t *e = catalog_entry (c, step);
        if (!e)
            goto nomem;
        e->has_dir = true;
    }
    closedir (d);
    return 0;
nomem:
    closedir (d);
    errno = ENOMEM;
    return gr_errprintf (errp, "out of memory reading '%s'", dir);
}

gr_ckf_catalog_t *gr_ckf_catalog_load (const char *dir, gr_error_t *errp)
{
    gr_ckf_catalog_t *c = calloc (1, sizeof (*c));
    gr_ckf_step_t **idx = NULL;
    size_t nidx = 0;
    gr_error_t err;

    if (!c) {
        errno = ENOMEM;
        gr_errprintf (errp, "out of memory");
        return NULL;
    }
    if (scan_dir (dir, c, errp) < 0)
        goto error;
    if (gr_ckf_index_read (dir, &idx, &nidx, &err) == 0)
        c->have_index = true;
    else
        snprintf (c->index_problem, sizeof (c->index_problem), "%s", err.text);
    for (size_t i = 0; i < nidx; i++) {
        gr_ckf_entry_t *e = catalog_entry (c, idx[i]->step);
        if (!e)
            goto nomem;
        e->in_index = true;
        e->rec = idx[i];
        idx[i] = NULL;
    }
    for (size_t i = 0; i < c->n; i++) {
        gr_ckf_entry_t *e = &c->entries[i];
        char sd[PATH_MAX];
        if (!e->has_dir) {
            snprintf (e->problem, sizeof (e->problem), "listed in the index, but its "
                      "directory step-%08" PRId64 " is missing", e->step);
            continue;
        }
        if (gr_ckf_step_dir (sd, sizeof (sd), dir, e->step) < 0)
            continue;
        gr_ckf_step_t *m = gr_ckf_meta_read (sd, &err);
        if (!m) {
            if (errno == ENOMEM)
                goto nomem;
            snprintf (e->problem, sizeof (e->problem), "%s%s", err.text,
                      e->rec ? "; using the index's record" : "");
            continue;
        }
        if (m->step != e->step) {
            snprintf (e->problem, sizeof (e->problem), "%s/meta is the record of step %"
                      PRId64, sd, m->step);
            gr_ckf_step_free (m);
            continue;
        }
        if (e->rec && !same_record (e->rec, m))
            snprintf (e->problem, sizeof (e->problem), "the index and %s/meta disagree; "
                      "using meta", sd);
        gr_ckf_step_free (e->rec);
        e->rec = m;
        e->from_meta = true;
    }
    if (c->n > 1)
        qsort (c->entries, c->n, sizeof (*c->entries), entry_cmp);
    gr_ckf_steps_free (idx, nidx);
    return c;
nomem:
    errno = ENOMEM;
    gr_errprintf (errp, "out of memory reading '%s'", dir);
error:
    gr_ckf_steps_free (idx, nidx);
    gr_ckf_catalog_free (c);
    return NULL;
}

void gr_ckf_catalog_free (gr_ckf_catalog_t *c)
{
    int saved = errno;

    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        gr_ckf_step_free (c->entries[i].rec);
    free (c->entries);
    free (c->tmp_steps);
    free (c);
    errno = saved;
}

int gr_ckf_remove_dir (const char *path)
{
    DIR *d = opendir (path);
    struct dirent *de;
    int rc = 0;

    if (!d)
        return errno == ENOENT ? 0 : -1;
    while ((de = readdir (d))) {
        char p[PATH_MAX];
        if (strcmp (de->d_name, ".") == 0 || strcmp (de->d_name, "..") == 0)
            continue;
        if (snprintf (p, sizeof (p), "%s/%s", path, de->d_name) >= (int)sizeof (p)
            || (unlink (p) < 0 && errno != ENOENT))
            rc = -1;
    }
    closedir (d);
    if (rmdir (path) < 0 && errno != ENOENT)
        rc = -1;
    return rc;
}

/* ---- Checksums and verification --------------------------------------- */

/* CRC combination as in zlib's crc32_combine: multiplying by powers of x
 * in GF(2), with CRC-32C's (reflected) polynomial. */
static uint32_t gf2_times (const uint32_t *mat, uint32_t vec)
{
    uint32_t sum = 0;
    for (; vec; vec >>= 1, mat++)
        if (vec & 1)
            sum ^= *mat;
    return sum;
}

static void gf2_square (uint32_t *sq, const uint32_t *mat)
{
    for (int n = 0; n < 32; n++)
        sq[n] = gf2_times (mat, mat[n]);
}

uint32_t gr_ckf_crc32c_combine (uint32_t crc_a, uint32_t crc_b, uint64_t len_b)
{
    uint32_t even[32], odd[32], row = 1;

    if (len_b == 0)
        return crc_a;
    /* odd: the operator for one zero bit; then two, then four. */
    odd[0] = 0x82f63b78u;
    for (int n = 1; n < 32; n++, row <<= 1)
        odd[n] = row;
    gf2_square (even, odd);
    gf2_square (odd, even);
    /* Apply len_b zero bytes to crc_a, a power of two at a time. */
    do {
        gf2_square (even, odd);
        if (len_b & 1)
            crc_a = gf2_times (even, crc_a);
        len_b >>= 1;
        if (!len_b)
            break;
        gf2_square (odd, even);
        if (len_b & 1)
            crc_a = gf2_times (odd, crc_a);
        len_b >>= 1;
    } while (len_b);
    return crc_a ^ crc_b;
}

int gr_ckf_pread (int fd, void *buf, uint64_t len, uint64_t off)
{
    unsigned char *p = buf;

    while (len > 0) {
        ssize_t n = pread (fd, p, len > ((size_t)1 << 30) ? (size_t)1 << 30 : (size_t)len,
                           (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return -1;
        }
        p += n;
        len -= (uint64_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* Append "; "-separated text to why. */
__attribute__ ((format (printf, 3, 4)))
static void why_add (char *why, size_t len, const char *fmt, ...)
{
    size_t used = strlen (why);
    va_list ap;

    if (used + 3 >= len)
        return;
    if (used) {
        strcpy (why + used, "; ");
        used += 2;
    }
    va_start (ap, fmt);
    vsnprintf (why + used, len - used, fmt, ap);
    va_end (ap);
}

static void region_label (char *buf, size_t len, const gr_ckf_step_t *s,
                          const gr_ckf_region_t *g)
{
    const gr_ckf_array_t *a = &s->arrays[g->array];
    if (s->layout == GR_CKF_SHARED && g->slab >= 0) {
        uint64_t first = gr_ckf_row_offset (a, g->slab);
        snprintf (buf, len, "dataset '%s' (rows %" PRIu64 "-%" PRIu64 ", saved by rank %d)",
                  a->name, first, first + a->rows[g->slab] - 1, g->slab);
    } else {
        snprintf (buf, len, "dataset '%s'", a->name);
    }
}

/* ---- Reading a file: verification and copies ----------------------------- */

struct gr_ckf_reader {
    int fd;
    uint64_t size;
    unsigned char *map;     /* the whole file, read-only; NULL: read with pread */
    unsigned char *buf;     /* IO_CHUNK bytes for pread, allocated when needed */
    size_t page;
};

int gr_ckf_reader_open (const char *path, uint64_t size, gr_ckf_reader_t **rp, char *why,
                        size_t whylen)
{
    gr_ckf_reader_t *r;
    struct stat st;

    *rp = NULL;
    why[0] = '\0';
    if (!(r = calloc (1, sizeof (*r))))
        return -1;
    r->size = size;
    r->page = (size_t)sysconf (_SC_PAGESIZE);
    if ((r->fd = open (path, O_RDONLY | O_CLOEXEC)) < 0) {
        why_add (why, whylen, "%s", errno == ENOENT ? "missing" : strerror (errno));
        goto damaged;
    }
    if (fstat (r->fd, &st) < 0) {
        why_add (why, whylen, "%s", strerror (errno));
        goto damaged;
    }
    if (!S_ISREG (st.st_mode)) {
        why_add (why, whylen, "not a regular file");
        goto damaged;
    }
    if ((uint64_t)st.st_size != size) {
        if ((uint64_t)st.st_size < size)
            why_add (why, whylen, "truncated (%" PRIu64 " of %" PRIu64 " bytes)",
                     (uint64_t)st.st_size, size);
        else
            why_add (why, whylen, "%" PRIu64 " bytes, %" PRIu64 " expected",
                     (uint64_t)st.st_size, size);
        goto damaged;
    }
    /* Mapped, the checksums are computed on the page cache's own pages and
     * a read copies each byte once, from the page cache into the caller's
     * array (pread would copy twice, and the kernel's copy is the slower
     * one).  Where a filesystem cannot map files, pread does the work.
     *
     * The pages are read in by the kernel's readahead for page faults: a
     * window of the device's readahead size around the first fault (twice
     * that for a file advised sequential), then asynchronously ahead of the
     * pages as they are mapped in.  On the benchmark VM that was the
     * fastest and steadiest of what was measured: MADV_SEQUENTIAL on the
     * mapping was as fast on average but varied more, and took a start in
     * the middle of a file (a shared file's slab) for random access, read
     * at half the speed; asking for readahead (WILLNEED, 16 MiB ahead)
     * took 1.1 s where this takes 0.6 s for two files of 512 MiB. */
    if (size > 0 && size <= SIZE_MAX) {
        void *m = mmap (NULL, (size_t)size, PROT_READ, MAP_SHARED, r->fd, 0);
        if (m != MAP_FAILED)
            r->map = m;
    }
    posix_fadvise (r->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    *rp = r;
    return 0;
damaged:
    gr_ckf_reader_close (r);
    return 1;
}

void gr_ckf_reader_unmap (gr_ckf_reader_t *r)
{
    if (r && r->map) {
        munmap (r->map, (size_t)r->size);
        r->map = NULL;
    }
}

void gr_ckf_reader_close (gr_ckf_reader_t *r)
{
    int saved = errno;

    if (!r)
        return;
    gr_ckf_reader_unmap (r);
    if (r->fd >= 0)
        close (r->fd);
    free (r->buf);
    free (r);
    errno = saved;
}

/* Drop this process's view of the mapped pages that hold [lo, hi): they
 * stay in the page cache, but no longer count in the process's resident
 * size (a load would otherwise show the checkpoint twice, the caller's
 * arrays and the mapping).  A page shared with bytes still to come is
 * mapped again when they are: a page fault, no I/O. */
static void release (gr_ckf_reader_t *r, uint64_t lo, uint64_t hi)
{
    uint64_t p = r->page;

    lo = lo / p * p;
    hi = (hi + p - 1) / p * p;
    if (r->map && hi > lo)
        madvise (r->map + lo, (size_t)(hi - lo), MADV_DONTNEED);
}

/* Map in the pages that hold n bytes at pos before they are touched:
 * MADV_POPULATE_READ reports a read error or a file cut short as an error,
 * where touching the pages would raise SIGBUS.  Returns 1 when the kernel
 * cannot (before Linux 5.14): the reader falls back to pread. */
static int populate (gr_ckf_reader_t *r, uint64_t pos, size_t n)
{
    uint64_t lo = pos / r->page * r->page;

    if (madvise (r->map + lo, (size_t)(pos + n - lo), MADV_POPULATE_READ) == 0)
        return 0;
    if (errno == EINVAL) {
        gr_ckf_reader_unmap (r);
        return 1;
    }
    if (errno != ENOMEM)
        errno = EIO;
    return -1;
}

/* Copy n bytes out of the page cache into the caller's array.  Large
 * copies bypass the cache with streaming stores where the processor has
 * them (SSE2: every x86-64): the array is far larger than the cache, and
 * an ordinary store first reads each line of it from memory, a third more
 * traffic for nothing. */
static void copy_out (unsigned char *dst, const unsigned char *src, size_t n)
{
#if defined(__x86_64__) && defined(__SSE2__)
    if (n >= ((size_t)64 << 10)) {
        size_t head = (16 - ((uintptr_t)dst & 15)) & 15, k;
        memcpy (dst, src, head);
        dst += head;
        src += head;
        n -= head;
        k = n / 64 * 64;
        for (size_t i = 0; i < k; i += 64) {
            __m128i a = _mm_loadu_si128 ((const __m128i *)(const void *)(src + i));
            __m128i b = _mm_loadu_si128 ((const __m128i *)(const void *)(src + i + 16));
            __m128i c = _mm_loadu_si128 ((const __m128i *)(const void *)(src + i + 32));
            __m128i d = _mm_loadu_si128 ((const __m128i *)(const void *)(src + i + 48));
            _mm_stream_si128 ((__m128i *)(void *)(dst + i), a);
            _mm_stream_si128 ((__m128i *)(void *)(dst + i + 16), b);
            _mm_stream_si128 ((__m128i *)(void *)(dst + i + 32), c);
            _mm_stream_si128 ((__m128i *)(void *)(dst + i + 48), d);
        }
        memcpy (dst + k, src + k, n - k);
        _mm_sfence ();      /* streaming stores are weakly ordered */
        return;
    }
#endif
    memcpy (dst, src, n);
}

/* Go through len bytes at off a chunk at a time: with crc, chain their
 * CRC-32C onto *crc; with dst, copy the bytes [lo, hi) of them (counted
 * from off) to dst.  Both at once go through each chunk in blocks small
 * enough to stay in the core's cache between the CRC and the copy, so
 * that the copy costs a cache read, not a second trip to memory. */
#define PASS_BLOCK ((size_t)256 << 10)
static int pass (gr_ckf_reader_t *r, uint64_t off, uint64_t len, uint32_t *crc,
                 unsigned char *dst, uint64_t lo, uint64_t hi)
{
    uint64_t end = off + len, clo = off + lo, chi = off + hi;

    if (!dst)
        clo = chi = end;
    for (uint64_t pos = off; pos < end;) {
        size_t n = end - pos > IO_CHUNK ? IO_CHUNK : (size_t)(end - pos);
        const unsigned char *p;
        /* populate may give the mapping up (a kernel that cannot): pread. */
        if (r->map && populate (r, pos, n) < 0)
            return -1;
        if (r->map) {
            p = r->map + pos;
        } else if (!crc && clo <= pos && pos + n <= chi) {
            /* All of it wanted and nothing to check: straight into dst. */
            if (gr_ckf_pread (r->fd, dst + (pos - clo), n, pos) < 0)
                return -1;
            pos += n;
            continue;
        } else {
            if (!r->buf && !(r->buf = malloc (IO_CHUNK)))
                return -1;
            if (gr_ckf_pread (r->fd, r->buf, n, pos) < 0)
                return -1;
            p = r->buf;
        }
        for (size_t b = 0; b < n; b += PASS_BLOCK) {
            size_t m = n - b > PASS_BLOCK ? PASS_BLOCK : n - b;
            uint64_t a = pos + b, z = a + m;
            if (crc)
                *crc = gr_crc32c (*crc, p + b, m);
            a = a > clo ? a : clo;
            z = z < chi ? z : chi;
            if (a < z)
                copy_out (dst + (a - clo), p + (a - pos), (size_t)(z - a));
        }
        if (r->map)
            release (r, pos, pos + n);
        pos += n;
    }
    return 0;
}

int gr_ckf_reader_copy (gr_ckf_reader_t *r, void *dst, uint64_t len, uint64_t off)
{
    if (off > r->size || len > r->size - off) {
        errno = EINVAL;
        return -1;
    }
    return pass (r, off, len, NULL, dst, 0, len);
}

int gr_ckf_reader_verify (gr_ckf_reader_t *r, const gr_ckf_step_t *s, const gr_ckf_file_t *f,
                          const bool *want, const gr_ckf_copy_t *copies, bool gaps, char *why,
                          size_t whylen)
{
    char label[GR_CKF_NAME_MAX + 96];
    uint64_t pos = 0;
    uint32_t fcrc = 0;

    why[0] = '\0';
    for (size_t k = 0; k <= f->nregions; k++) {
        const gr_ckf_region_t *g = k < f->nregions ? &f->regions[k] : NULL;
        uint64_t end = g ? g->offset : f->size;
        if (gaps && pass (r, pos, end - pos, &fcrc, NULL, 0, 0) < 0) {
            if (errno == ENOMEM)
                return -1;
            why_add (why, whylen, "cannot read bytes %" PRIu64 "-%" PRIu64 ": %s", pos,
                     end, strerror (errno));
            return 1;
        }
        if (!g)
            break;
        if (!want || want[k]) {
            uint32_t crc = 0;
            region_label (label, sizeof (label), s, g);
            const gr_ckf_copy_t *cp = copies && copies[k].dst ? &copies[k] : NULL;
            if (pass (r, g->offset, g->size, &crc, cp ? cp->dst : NULL, cp ? cp->lo : 0,
                      cp ? cp->hi : 0) < 0) {
                if (errno == ENOMEM)
                    return -1;
                why_add (why, whylen, "cannot read %s: %s", label, strerror (errno));
            } else if (crc != g->crc) {
                why_add (why, whylen, "checksum mismatch in %s", label);
            }
        }
        fcrc = gr_ckf_crc32c_combine (fcrc, g->crc, g->size);
        pos = g->offset + g->size;
    }
    if (gaps && fcrc != f->crc)
        why_add (why, whylen, "checksum mismatch in the HDF5 metadata (outside the "
                 "datasets)");
    return why[0] ? 1 : 0;
}

int gr_ckf_verify_file (const char *path, const gr_ckf_step_t *s, const gr_ckf_file_t *f,
                        const bool *want, bool gaps, char *why, size_t whylen)
{
    gr_ckf_reader_t *r;
    int rc = gr_ckf_reader_open (path, f->size, &r, why, whylen);

    if (rc != 0)
        return rc;
    rc = gr_ckf_reader_verify (r, s, f, want, NULL, gaps, why, whylen);
    gr_ckf_reader_close (r);
    return rc;
}

/* ---- HDF5 ------------------------------------------------------------- */

void gr_ckf_h5_quiet (void)
{
    H5Eset_auto2 (H5E_DEFAULT, NULL, NULL);
}

static herr_t why_frame (unsigned n, const H5E_error2_t *e, void *arg)
{
    char *buf = arg;
    char minor[128] = "";

    /* Frame 0 is where HDF5 found the problem; the outer ones repeat it. */
    if (n > 0)
        return 0;
    if (H5Eget_msg (e->min_num, NULL, minor, sizeof (minor)) < 0)
        minor[0] = '\0';
    snprintf (buf, 256, "%s%s%s%s", e->desc ? e->desc : "", minor[0] ? " (" : "", minor,
              minor[0] ? ")" : "");
    for (char *p = buf; *p; p++)
        if (*p == '\n' || *p == '\t')
            *p = ' ';
    return 0;
}

void gr_ckf_h5_why (char *buf, size_t len)
{
    char text[256] = "";
    H5Ewalk2 (H5E_DEFAULT, H5E_WALK_UPWARD, why_frame, text);
    H5Eclear2 (H5E_DEFAULT);
    snprintf (buf, len, "%s", text[0] ? text : "HDF5 error");
}

void gr_ckf_h5_close (hid_t id)
{
    if (id < 0)
        return;
    switch (H5Iget_type (id)) {
        case H5I_FILE:
            H5Fclose (id);
            break;
        case H5I_GROUP:
            H5Gclose (id);
            break;
        case H5I_DATATYPE:
            H5Tclose (id);
            break;
        case H5I_DATASPACE:
            H5Sclose (id);
            break;
        case H5I_DATASET:
            H5Dclose (id);
            break;
        case H5I_ATTR:
            H5Aclose (id);
            break;
        case H5I_GENPROP_LST:
            H5Pclose (id);
            break;
        default:
            break;
    }
}

hid_t gr_ckf_h5_type (int type)
{
    switch (type) {
        case GR_CKF_F32:
            return H5T_IEEE_F32LE;
        case GR_CKF_F64:
            return H5T_IEEE_F64LE;
        case GR_CKF_I32:
            return H5T_STD_I32LE;
        case GR_CKF_I64:
            return H5T_STD_I64LE;
        default:
            return H5T_STD_U16LE;
    }
}

static hid_t h5_dcpl (void)
{
    hid_t dcpl = H5Pcreate (H5P_DATASET_CREATE);
    /* Contiguous and allocated at creation, so every dataset has its
     * offset at once; never filled, so nothing is written twice. */
    if (dcpl < 0 || H5Pset_layout (dcpl, H5D_CONTIGUOUS) < 0
        || H5Pset_alloc_time (dcpl, H5D_ALLOC_TIME_EARLY) < 0
        || H5Pset_fill_time (dcpl, H5D_FILL_TIME_NEVER) < 0) {
        gr_ckf_h5_close (dcpl);
        return H5I_INVALID_HID;
    }
    return dcpl;
}

static int h5_put (hid_t loc, const char *name, hid_t ftype, hid_t mtype, size_t n,
                   const void *mem)
{
    hsize_t dim = n;
    hid_t space = n ? H5Screate_simple (1, &dim, NULL) : H5Screate (H5S_SCALAR);
    hid_t attr = H5I_INVALID_HID;
    int rc = -1;

    if (space >= 0
        && (attr = H5Acreate2 (loc, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT)) >= 0
        && H5Awrite (attr, mtype, mem) >= 0)
        rc = 0;
    gr_ckf_h5_close (attr);
    gr_ckf_h5_close (space);
    return rc;
}

static int put_str (hid_t loc, const char *name, const char *value)
{
    hid_t t = H5Tcopy (H5T_C_S1);
    int rc = -1;

    if (t >= 0 && H5Tset_size (t, H5T_VARIABLE) >= 0 && H5Tset_cset (t, H5T_CSET_UTF8) >= 0)
        rc = h5_put (loc, name, t, t, 0, &value);
    gr_ckf_h5_close (t);
    return rc;
}

static int put_i64 (hid_t loc, const char *name, int64_t v)
{
    return h5_put (loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, 0, &v);
}

static int put_u64 (hid_t loc, const char *name, uint64_t v)
{
    return h5_put (loc, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, 0, &v);
}

static int put_f64 (hid_t loc, const char *name, double v)
{
    return h5_put (loc, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 0, &v);
}

static int h5_root_attrs (hid_t file, const gr_ckf_step_t *s, int rank, bool user)
{
    if (put_str (file, "gridrun_format", GR_CKF_FORMAT) < 0
        || put_i64 (file, "gridrun_step", s->step) < 0
        || put_i64 (file, "gridrun_rank", rank) < 0
        || put_i64 (file, "gridrun_nranks", s->nranks) < 0
        || put_str (file, "gridrun_layout", gr_ckf_layout_name (s->layout)) < 0
        || put_f64 (file, "gridrun_time", s->time) < 0)
        return -1;
    for (size_t i = 0; user && i < s->nattrs; i++) {
        const gr_ckf_attr_t *a = &s->attrs[i];
        int rc = a->kind == GR_CKF_ATTR_I64   ? put_i64 (file, a->name, a->i64)
                 : a->kind == GR_CKF_ATTR_F64 ? put_f64 (file, a->name, a->f64)
                                              : put_str (file, a->name, a->str);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int h5_dset_attrs (hid_t ds, const gr_ckf_step_t *s, int array, int slab)
{
    const gr_ckf_array_t *a = &s->arrays[array];

    if (put_str (ds, "dtype", gr_ckf_type_name (a->type)) < 0
        || put_str (ds, "layout", a->sharded == GR_CKF_SHARDED ? "sharded" : "replicated") < 0)
        return -1;
    if (a->sharded == GR_CKF_SHARDED && s->layout == GR_CKF_PER_RANK && slab >= 0
        && (put_u64 (ds, "row_offset", gr_ckf_row_offset (a, slab)) < 0
            || put_u64 (ds, "global_rows", a->dims[0]) < 0))
        return -1;
    return 0;
}

/* ---- Writing a rank's file -------------------------------------------- */

/* A file driver that keeps what HDF5 writes in memory.  gridrun writes
 * the datasets' bytes itself (at the offsets HDF5 gave them), so HDF5 only
 * ever writes its metadata: a few kilobytes, collected here and written
 * out with the data.  HDF5 then never sees a write fail: a full disk is
 * an error this module reports, instead of a failed H5Fclose, which HDF5
 * 1.10 does not survive (see the driver in snapshot.c). */

struct mem_block {
    struct mem_block *next;
    haddr_t addr;
    size_t size;
    unsigned char data[];
};

struct mem_state {
    struct mem_block *head, **tail;   /* oldest first */
    haddr_t eoa;                      /* the file's final size */
};

struct mem_fapl {
    struct mem_state *state;
};

struct mem_file {
    H5FD_t pub;                       /* first: HDF5 casts between the two */
    struct mem_state *st;
    haddr_t eoa, eof;
};

#define MEM_MAXADDR (((haddr_t)1 << 62) - 1)

static void mem_push (const char *func, const char *what)
{
    H5Epush2 (H5E_DEFAULT, __FILE__, func, __LINE__, H5E_ERR_CLS, H5E_VFL, H5E_CANTOPENFILE,
              "%s", what);
}

static H5FD_t *mem_open (const char *name, unsigned flags, hid_t fapl, haddr_t maxaddr)
{
    const struct mem_fapl *fa = H5Pget_driver_info (fapl);
    struct mem_file *f;

    /* Only ever a new file: an open without create is a file that does
     * not exist (HDF5 tries one first, to see whether it does). */
    if (!fa || !fa->state || !(flags & H5F_ACC_CREAT)) {
        mem_push (__func__, "no such file");
        return NULL;
    }
    if (!(f = calloc (1, sizeof (*f)))) {
        mem_push (__func__, "out of memory");
        return NULL;
    }
    f->st = fa->state;
    return &f->pub;
}

static herr_t mem_close (H5FD_t *file)
{
    free (file);
    return 0;
}

static int mem_cmp (const H5FD_t *a, const H5FD_t *b)
{
    const struct mem_file *x = (const struct mem_file *)a, *y = (const struct mem_file *)b;
    return x->st < y->st ? -1 : x->st > y->st;
}

static herr_t mem_query (const H5FD_t *file, unsigned long *flags)
{
    *flags = H5FD_FEAT_AGGREGATE_METADATA | H5FD_FEAT_ACCUMULATE_METADATA
             | H5FD_FEAT_AGGREGATE_SMALLDATA;
    return 0;
}

static haddr_t mem_get_eoa (const H5FD_t *file, H5FD_mem_t type)
{
    return ((const struct mem_file *)file)->eoa;
}

static herr_t mem_set_eoa (H5FD_t *file, H5FD_mem_t type, haddr_t addr)
{
    struct mem_file *f = (struct mem_file *)file;
    f->eoa = addr;
    f->st->eoa = addr;
    return 0;
}

static haddr_t mem_get_eof (const H5FD_t *file, H5FD_mem_t type)
{
    return ((const struct mem_file *)file)->eof;
}

static herr_t mem_get_handle (H5FD_t *file, hid_t fapl, void **handle)
{
    *handle = file;
    return 0;
}

static herr_t mem_read (H5FD_t *file, H5FD_mem_t type, hid_t dxpl, haddr_t addr,
                        size_t size, void *buf)
{
    struct mem_file *f = (struct mem_file *)file;

    memset (buf, 0, size);
    for (const struct mem_block *b = f->st->head; b; b = b->next) {
        haddr_t lo = addr > b->addr ? addr : b->addr;
        haddr_t hi = addr + size < b->addr + b->size ? addr + size : b->addr + b->size;
        if (lo < hi)
            memcpy ((unsigned char *)buf + (lo - addr), b->data + (lo - b->addr),
                    (size_t)(hi - lo));
    }
    return 0;
}

static herr_t mem_write (H5FD_t *file, H5FD_mem_t type, hid_t dxpl, haddr_t addr,
                         size_t size, const void *buf)
{
    struct mem_file *f = (struct mem_file *)file;
    struct mem_block *b;

    if (addr > MEM_MAXADDR || size > MEM_MAXADDR - addr
        || !(b = malloc (sizeof (*b) + size))) {
        mem_push (__func__, "cannot keep HDF5 metadata in memory");
        return -1;
    }
    b->next = NULL;
    b->addr = addr;
    b->size = size;
    memcpy (b->data, buf, size);
    *f->st->tail = b;
    f->st->tail = &b->next;
    if (addr + size > f->eof)
        f->eof = addr + size;
    return 0;
}

static herr_t mem_truncate (H5FD_t *file, hid_t dxpl, hbool_t closing)
{
    struct mem_file *f = (struct mem_file *)file;
    f->eof = f->eoa;
    return 0;
}

static const H5FD_class_t mem_class = {
#ifdef H5FD_CLASS_VERSION
    .version = H5FD_CLASS_VERSION,
    .value = 601, /* in the range HDF5 leaves to applications */
#endif
    .name = "gridrun-ckpt-meta",
    .maxaddr = MEM_MAXADDR,
    .fc_degree = H5F_CLOSE_WEAK,
    .fapl_size = sizeof (struct mem_fapl),
    .open = mem_open,
    .close = mem_close,
    .cmp = mem_cmp,
    .query = mem_query,
    .get_eoa = mem_get_eoa,
    .set_eoa = mem_set_eoa,
    .get_eof = mem_get_eof,
    .get_handle = mem_get_handle,
    .read = mem_read,
    .write = mem_write,
    .truncate = mem_truncate,
    .fl_map = H5FD_FLMAP_DICHOTOMY,
};

static hid_t mem_driver_id = H5I_INVALID_HID;

static void mem_state_free (struct mem_state *st)
{
    while (st->head) {
        struct mem_block *b = st->head;
        st->head = b->next;
        free (b);
    }
    st->tail = &st->head;
}

/* One dataset of the file being written. */
struct wds {
    int array;
    int slab;            /* the rank's slab, -1 replicated */
    hid_t ds;
    const unsigned char *data;
    uint64_t size;
    uint64_t offset;
    uint32_t crc;
};

static int wds_cmp (const void *a, const void *b)
{
    const struct wds *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* The crc32c and slab_rows attributes of a shared file's dataset, from
 * crcs[array * nranks + slab] (replicated: crcs[array * nranks]). */
static int shared_crc_attrs (hid_t ds, const gr_ckf_step_t *s, int ai, const uint32_t *crcs)
{
    const gr_ckf_array_t *a = &s->arrays[ai];
    const uint32_t *c = crcs + (size_t)ai * (size_t)s->nranks;

    if (a->sharded != GR_CKF_SHARDED)
        return h5_put (ds, "crc32c", H5T_STD_U32LE, H5T_NATIVE_UINT32, 0, c);
    if (h5_put (ds, "crc32c", H5T_STD_U32LE, H5T_NATIVE_UINT32, (size_t)s->nranks, c) < 0
        || h5_put (ds, "slab_rows", H5T_STD_U64LE, H5T_NATIVE_UINT64, (size_t)s->nranks,
                          a->rows) < 0)
        return -1;
    return 0;
}

/* Create the file's metadata in memory: attributes and datasets (rank -1:
 * the shared layout's file, whose checksums crcs gives). */
static int create_meta (const char *path, const gr_ckf_step_t *s, int rank,
                        struct mem_state *st, struct wds *w, size_t nw, const uint32_t *crcs,
                        hid_t *filep, char *err, size_t errlen)
{
    hid_t fapl = H5I_INVALID_HID, dcpl = H5I_INVALID_HID, space = H5I_INVALID_HID;
    hid_t file = H5I_INVALID_HID;
    struct mem_fapl fa = {.state = st};
    char what[GR_CKF_NAME_MAX + 64], why[256];
    const char *doing = "set up";

    if (mem_driver_id < 0 || H5Iis_valid (mem_driver_id) <= 0)
        mem_driver_id = H5FDregister (&mem_class);
    /* Datasets of 64 KiB and more start on a 4 KiB boundary: whole pages
     * for the page cache. */
    if (mem_driver_id < 0 || (fapl = H5Pcreate (H5P_FILE_ACCESS)) < 0
        || H5Pset_driver (fapl, mem_driver_id, &fa) < 0
        || H5Pset_fclose_degree (fapl, H5F_CLOSE_SEMI) < 0
        || H5Pset_alignment (fapl, 65536, 4096) < 0 || (dcpl = h5_dcpl ()) < 0)
        goto error;
    doing = "create";
    if ((file = H5Fcreate (path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)) < 0)
        goto error;
    doing = "write the attributes of";
    if (h5_root_attrs (file, s, rank, rank <= 0) < 0)
        goto error;
    for (size_t i = 0; i < nw; i++) {
        const gr_ckf_array_t *a = &s->arrays[w[i].array];
        hsize_t dims[GR_CKF_MAX_DIMS];
        for (int d = 0; d < a->ndims; d++)
            dims[d] = a->dims[d];
        if (w[i].slab >= 0)
            dims[0] = a->rows[w[i].slab];
        snprintf (what, sizeof (what), "create dataset '%s' in", a->name);
        doing = what;
        space = a->ndims ? H5Screate_simple (a->ndims, dims, NULL) : H5Screate (H5S_SCALAR);
        if (space < 0
            || (w[i].ds = H5Dcreate2 (file, a->name, gr_ckf_h5_type (a->type), space,
                                      H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0
            || h5_dset_attrs (w[i].ds, s, w[i].array, w[i].slab) < 0
            || (crcs && shared_crc_attrs (w[i].ds, s, w[i].array, crcs) < 0))
            goto error;
        gr_ckf_h5_close (space);
        space = H5I_INVALID_HID;
        if (w[i].size > 0 && (w[i].offset = H5Dget_offset (w[i].ds)) == HADDR_UNDEF) {
            H5Epush2 (H5E_DEFAULT, __FILE__, __func__, __LINE__, H5E_ERR_CLS, H5E_DATASET,
                      H5E_CANTGET, "no storage allocated");
            goto error;
        }
    }
    gr_ckf_h5_close (dcpl);
    gr_ckf_h5_close (fapl);
    *filep = file;
    return 0;
error:
    gr_ckf_h5_why (why, sizeof (why));
    snprintf (err, errlen, "cannot %s '%s': %s", doing, path, why);
    gr_ckf_h5_close (space);
    gr_ckf_h5_close (dcpl);
    gr_ckf_h5_close (fapl);
    for (size_t i = 0; i < nw; i++) {
        gr_ckf_h5_close (w[i].ds);
        w[i].ds = H5I_INVALID_HID;
    }
    gr_ckf_h5_close (file);
    H5Eclear2 (H5E_DEFAULT);
    errno = EIO;
    return -1;
}

/* Write len bytes of data at off, in chunks, with their CRC. */
static int write_crc (int fd, const unsigned char *data, uint64_t len, uint64_t off,
                      uint32_t *crc)
{
    /* Checksummed right after the write copied it: still in the cache. */
    while (len > 0) {
        size_t n = len > ((size_t)1 << 20) ? (size_t)1 << 20 : (size_t)len;
        if (gr_pwrite_all (fd, data, n, (off_t)off) < 0)
            return -1;
        *crc = gr_crc32c (*crc, data, n);
        data += n;
        off += n;
        len -= n;
    }
    return 0;
}

/* Write HDF5's metadata: the bytes of [lo, hi) not in any dataset, from
 * the blocks (newer over older, zeros where none), chained onto *crc. */
static int write_gap (int fd, const struct mem_state *st, uint64_t lo, uint64_t hi,
                      unsigned char *buf, uint32_t *crc)
{
    while (lo < hi) {
        size_t n = hi - lo > IO_CHUNK ? IO_CHUNK : (size_t)(hi - lo);
        memset (buf, 0, n);
        for (const struct mem_block *b = st->head; b; b = b->next) {
            uint64_t a = lo > b->addr ? lo : b->addr;
            uint64_t z = lo + n < b->addr + b->size ? lo + n : b->addr + b->size;
            if (a < z)
                memcpy (buf + (a - lo), b->data + (a - b->addr), (size_t)(z - a));
        }
        if (gr_pwrite_all (fd, buf, n, (off_t)lo) < 0)
            return -1;
        *crc = gr_crc32c (*crc, buf, n);
        lo += n;
    }
    return 0;
}

/* Write the bytes of file f outside its regions (sorted) from the
 * metadata blocks, and compute the whole file's CRC from them and the
 * regions' CRCs. */
static int write_meta_bytes (int fd, const struct mem_state *st, const gr_ckf_file_t *f,
                             unsigned char *buf, uint32_t *crcp)
{
    uint64_t pos = 0;
    uint32_t crc = 0;

    for (size_t k = 0; k <= f->nregions; k++) {
        const gr_ckf_region_t *g = k < f->nregions ? &f->regions[k] : NULL;
        if (write_gap (fd, st, pos, g ? g->offset : st->eoa, buf, &crc) < 0)
            return -1;
        if (!g)
            break;
        crc = gr_ckf_crc32c_combine (crc, g->crc, g->size);
        pos = g->offset + g->size;
    }
    *crcp = crc;
    return 0;
}

/* HDF5's blocks must lie outside the datasets and below the end. */
static bool blocks_fit (const struct mem_state *st, const struct wds *w, size_t nw)
{
    for (const struct mem_block *b = st->head; b; b = b->next) {
        if (b->addr >= st->eoa)
            continue;
        for (size_t i = 0; i < nw; i++)
            if (w[i].size && b->addr < w[i].offset + w[i].size
                && w[i].offset < b->addr + b->size)
                return false;
    }
    return true;
}

int gr_ckf_write_rank_file (const char *path, const gr_ckf_step_t *s, int rank,
                            const void *const *data, gr_ckf_file_t *out, char *err,
                            size_t errlen)
{
    struct mem_state st = {.head = NULL};
    struct wds *w = calloc (s->narrays ? s->narrays : 1, sizeof (*w));
    unsigned char *buf = malloc (IO_CHUNK);
    hid_t file = H5I_INVALID_HID;
    size_t nw = 0;
    int fd = -1, e;
    uint32_t crc = 0;

    st.tail = &st.head;
    memset (out, 0, sizeof (*out));
    if (!w || !buf) {
        snprintf (err, errlen, "out of memory writing '%s'", path);
        errno = ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < s->narrays; i++) {
        const gr_ckf_array_t *a = &s->arrays[i];
        if (a->sharded != GR_CKF_SHARDED && rank != 0)
            continue;
        w[nw] = (struct wds){.array = (int)i, .slab = a->sharded == GR_CKF_SHARDED ? rank : -1,
                             .ds = H5I_INVALID_HID, .data = data[i]};
        w[nw].size = slab_bytes (a, w[nw].slab);
        nw++;
    }
    gr_ckf_lock ();
    gr_ckf_h5_quiet ();
    int rc = create_meta (path, s, rank, &st, w, nw, NULL, &file, err, errlen);
    gr_ckf_unlock ();
    if (rc < 0)
        goto fail;
    /* The data go straight from the caller's memory to the file, without
     * HDF5 (and without its lock: another thread may use HDF5 now). */
    if ((fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0) {
        snprintf (err, errlen, "cannot create '%s': %s", path, strerror (errno));
        goto fail;
    }
    qsort (w, nw, sizeof (*w), wds_cmp);
    for (size_t i = 0; i < nw; i++) {
        if (w[i].size && write_crc (fd, w[i].data, w[i].size, w[i].offset, &w[i].crc) < 0) {
            snprintf (err, errlen, "cannot write '%s': %s", path, strerror (errno));
            goto fail;
        }
    }
    gr_ckf_lock ();
    rc = 0;
    for (size_t i = 0; i < nw; i++) {
        if (rc == 0 && h5_put (w[i].ds, "crc32c", H5T_STD_U32LE, H5T_NATIVE_UINT32,
                                      0, &w[i].crc) < 0) {
            char why[256];
            gr_ckf_h5_why (why, sizeof (why));
            snprintf (err, errlen, "cannot write the checksum of dataset '%s' in '%s': %s",
                      s->arrays[w[i].array].name, path, why);
            rc = -1;
        }
        gr_ckf_h5_close (w[i].ds);
        w[i].ds = H5I_INVALID_HID;
    }
    if (H5Fclose (file) < 0 && rc == 0) {
        char why[256];
        gr_ckf_h5_why (why, sizeof (why));
        snprintf (err, errlen, "cannot finish '%s': %s", path, why);
        rc = -1;
    }
    file = H5I_INVALID_HID;
    gr_ckf_unlock ();
    if (rc < 0) {
        errno = EIO;
        goto fail;
    }
    if (!blocks_fit (&st, w, nw)) {
        snprintf (err, errlen, "cannot write '%s': HDF5 put metadata inside a dataset "
                  "(a gridrun bug)", path);
        errno = EIO;
        goto fail;
    }
    for (size_t i = 0; i < nw; i++) {
        if (w[i].size && gr_ckf_file_add_region (out, w[i].array, w[i].slab, w[i].offset,
                                                 w[i].size, w[i].crc) < 0) {
            snprintf (err, errlen, "out of memory writing '%s'", path);
            goto fail;
        }
    }
    /* The rest of the file: the metadata around the datasets. */
    if (write_meta_bytes (fd, &st, out, buf, &crc) < 0) {
        snprintf (err, errlen, "cannot write '%s': %s", path, strerror (errno));
        goto fail;
    }
    if (fsync (fd) < 0 || close (fd) < 0) {
        fd = -1;
        snprintf (err, errlen, "cannot write '%s': %s", path, strerror (errno));
        goto fail;
    }
    out->size = st.eoa;
    out->crc = crc;
    mem_state_free (&st);
    free (buf);
    free (w);
    return 0;
fail:
    e = errno;
    if (file >= 0 || (w && nw)) {
        gr_ckf_lock ();
        for (size_t i = 0; i < nw; i++)
            gr_ckf_h5_close (w[i].ds);
        gr_ckf_h5_close (file);
        H5Eclear2 (H5E_DEFAULT);
        gr_ckf_unlock ();
    }
    if (fd >= 0)
        close (fd);
    unlink (path);
    mem_state_free (&st);
    gr_ckf_file_clear (out);
    free (buf);
    free (w);
    errno = e ? e : EIO;
    return -1;
}

int gr_ckf_write_shared_meta (const char *path, const gr_ckf_step_t *s,
                              const uint32_t *crcs, uint64_t *offsets, gr_ckf_file_t *out,
                              char *err, size_t errlen)
{
    struct mem_state st = {.head = NULL};
    struct wds *w = calloc (s->narrays + 1, sizeof (*w));
    unsigned char *buf = malloc (IO_CHUNK);
    hid_t file = H5I_INVALID_HID;
    int fd = -1, rc = -1, e;
    uint32_t crc;
    char why[256];

    st.tail = &st.head;
    memset (out, 0, sizeof (*out));
    if (!w || !buf) {
        snprintf (err, errlen, "out of memory writing '%s'", path);
        errno = ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < s->narrays; i++)
        w[i] = (struct wds){.array = (int)i, .slab = -1, .ds = H5I_INVALID_HID,
                            .size = gr_ckf_array_bytes (&s->arrays[i])};
    gr_ckf_lock ();
    gr_ckf_h5_quiet ();
    rc = create_meta (path, s, -1, &st, w, s->narrays, crcs, &file, err, errlen);
    for (size_t i = 0; rc == 0 && i < s->narrays; i++)
        gr_ckf_h5_close (w[i].ds);
    if (rc == 0 && H5Fclose (file) < 0) {
        gr_ckf_h5_why (why, sizeof (why));
        snprintf (err, errlen, "cannot finish '%s': %s", path, why);
        errno = EIO;
        rc = -1;
    }
    gr_ckf_unlock ();
    if (rc < 0)
        goto out;
    rc = -1;
    for (size_t i = 0; i < s->narrays; i++) {
        const gr_ckf_array_t *a = &s->arrays[i];
        const uint32_t *c = crcs + i * (size_t)s->nranks;
        uint64_t rb = gr_ckf_row_bytes (a);
        offsets[i] = w[i].offset;
        if (!w[i].size)
            continue;
        if (a->sharded != GR_CKF_SHARDED) {
            if (gr_ckf_file_add_region (out, (int)i, -1, w[i].offset, w[i].size, c[0]) < 0)
                goto nomem;
            continue;
        }
        for (int r = 0; r < s->nranks; r++)
            if (a->rows[r]
                && gr_ckf_file_add_region (out, (int)i, r,
                                           w[i].offset + gr_ckf_row_offset (a, r) * rb,
                                           a->rows[r] * rb, c[r]) < 0)
                goto nomem;
    }
    file_sort (out);
    if (!blocks_fit (&st, w, s->narrays)) {
        snprintf (err, errlen, "cannot write '%s': HDF5 put metadata inside a dataset "
                  "(a gridrun bug)", path);
        errno = EIO;
        goto out;
    }
    /* The whole length at once: the datasets are holes until the ranks
     * write them. */
    if ((fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0
        || write_meta_bytes (fd, &st, out, buf, &crc) < 0 || ftruncate (fd, (off_t)st.eoa) < 0
        || fsync (fd) < 0) {
        snprintf (err, errlen, "cannot write '%s': %s", path, strerror (errno));
        goto out;
    }
    out->size = st.eoa;
    out->crc = crc;
    rc = 0;
    goto out;
nomem:
    snprintf (err, errlen, "out of memory writing '%s'", path);
    errno = ENOMEM;
out:
    e = errno;
    if (fd >= 0 && close (fd) < 0 && rc == 0) {
        e = errno;
        snprintf (err, errlen, "cannot write '%s': %s", path, strerror (e));
        rc = -1;
    }
    if (rc < 0) {
        if (fd >= 0)
            unlink (path);
        gr_ckf_file_clear (out);
    }
    mem_state_free (&st);
    free (buf);
    free (w);
    errno = e;
    return rc;
}

/* ---- Checking a file's HDF5 structure --------------------------------- */

static int get_i64_attr (hid_t loc, const char *name, int64_t *v)
{
    hid_t a;
    if (H5Aexists (loc, name) <= 0 || (a = H5Aopen (loc, name, H5P_DEFAULT)) < 0)
        return -1;
    herr_t rc = H5Aread (a, H5T_NATIVE_INT64, v);
    H5Aclose (a);
    return rc < 0 ? -1 : 0;
}

/* The crc32c attribute of a dataset: n values (n 0: a scalar). */
static int get_crcs (hid_t ds, uint32_t *v, size_t n)
{
    hid_t a, space;
    hssize_t np;
    if (H5Aexists (ds, "crc32c") <= 0 || (a = H5Aopen (ds, "crc32c", H5P_DEFAULT)) < 0)
        return -1;
    space = H5Aget_space (a);
    np = space >= 0 ? H5Sget_simple_extent_npoints (space) : -1;
    gr_ckf_h5_close (space);
    herr_t rc = np == (hssize_t)(n ? n : 1) ? H5Aread (a, H5T_NATIVE_UINT32, v) : -1;
    H5Aclose (a);
    return rc < 0 ? -1 : 0;
}

static void check_dataset (hid_t file, const gr_ckf_step_t *s, int fi, int ai,
                           char *why, size_t whylen)
{
    const gr_ckf_array_t *a = &s->arrays[ai];
    const gr_ckf_file_t *f = &s->files[fi];
    bool shared = s->layout == GR_CKF_SHARED;
    int slab = a->sharded == GR_CKF_SHARDED && !shared ? fi : -1;
    hsize_t dims[GR_CKF_MAX_DIMS];
    hid_t ds = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    uint32_t *crcs = NULL;

    if (H5Lexists (file, a->name, H5P_DEFAULT) <= 0
        || (ds = H5Dopen2 (file, a->name, H5P_DEFAULT)) < 0) {
        why_add (why, whylen, "dataset '%s' is missing", a->name);
        goto out;
    }
    if ((type = H5Dget_type (ds)) < 0 || H5Tequal (type, gr_ckf_h5_type (a->type)) <= 0)
        why_add (why, whylen, "dataset '%s' is not of type %s", a->name,
                 gr_ckf_type_name (a->type));
    int nd = (space = H5Dget_space (ds)) >= 0 ? H5Sget_simple_extent_ndims (space) : -1;
    bool shape_ok = nd == a->ndims && H5Sget_simple_extent_dims (space, dims, NULL) >= 0;
    for (int d = 0; shape_ok && d < a->ndims; d++)
        shape_ok = dims[d] == (d == 0 && slab >= 0 ? a->rows[slab] : a->dims[d]);
    if (!shape_ok)
        why_add (why, whylen, "dataset '%s' has the wrong shape", a->name);
    /* Where the data are, and the checksums HDF5 readers see. */
    size_t ncrc = a->sharded == GR_CKF_SHARDED && shared ? (size_t)s->nranks : 0;
    if (!(crcs = calloc (ncrc ? ncrc : 1, sizeof (*crcs))))
        goto out;
    bool crc_ok = get_crcs (ds, crcs, ncrc) == 0, off_ok = true;
    haddr_t base = H5Dget_offset (ds);
    for (size_t k = 0; k < f->nregions; k++) {
        const gr_ckf_region_t *g = &f->regions[k];
        if (g->array != ai)
            continue;
        uint64_t rel = g->slab >= 0 && shared ? gr_ckf_row_offset (a, g->slab)
                                                    * gr_ckf_row_bytes (a)
                                              : 0;
        off_ok = off_ok && base != HADDR_UNDEF && base + rel == g->offset;
        crc_ok = crc_ok && crcs[ncrc ? (size_t)g->slab : 0] == g->crc;
    }
    if (!off_ok)
        why_add (why, whylen, "dataset '%s' is not where the record says", a->name);
    if (!crc_ok)
        why_add (why, whylen, "the crc32c attribute of dataset '%s' does not match the "
                 "record", a->name);
out:
    free (crcs);
    gr_ckf_h5_close (space);
    gr_ckf_h5_close (type);
    gr_ckf_h5_close (ds);
    H5Eclear2 (H5E_DEFAULT);
}

int gr_ckf_check_h5 (const char *path, const gr_ckf_step_t *s, int fi, char *why,
                     size_t whylen)
{
    hid_t file = H5I_INVALID_HID;
    struct stat st;
    int64_t v;
    char h5why[256];

    why[0] = '\0';
    if (stat (path, &st) < 0) {
        why_add (why, whylen, "%s", errno == ENOENT ? "missing" : strerror (errno));
        return 1;
    }
    gr_ckf_lock ();
    gr_ckf_h5_quiet ();
    if (H5Fis_hdf5 (path) <= 0) {
        H5Eclear2 (H5E_DEFAULT);
        why_add (why, whylen, "not an HDF5 file");
        goto out;
    }
    if ((file = H5Fopen (path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0) {
        gr_ckf_h5_why (h5why, sizeof (h5why));
        why_add (why, whylen, "HDF5 cannot open it: %s", h5why);
        goto out;
    }
    if (get_i64_attr (file, "gridrun_step", &v) < 0 || v != s->step)
        why_add (why, whylen, "its gridrun_step attribute is not %" PRId64, s->step);
    for (size_t i = 0; i < s->narrays; i++) {
        const gr_ckf_array_t *a = &s->arrays[i];
        if (a->sharded == GR_CKF_SHARDED || s->layout == GR_CKF_SHARED || fi == 0)
            check_dataset (file, s, fi, (int)i, why, whylen);
    }
out:
    gr_ckf_h5_close (file);
    H5Eclear2 (H5E_DEFAULT);
    gr_ckf_unlock ();
    return why[0] ? 1 : 0;
}
